"""A module on disk: its text (`model.ir`) and its weights beside it (`model.weights`).

The text declares every weight (name and type); the weights file holds the
bytes. A module read from text alone keeps its declarations with no data, so
`ember opt` can rewrite a graph whose weights it never touches; reading the
pair back gives every weight bit for bit.

**The pair is saved as one.** `save_module(module, "m.ir")` replaces both
files (the Python API replaces existing files; the command line refuses unless
told `--force`). The text's first line records which weights it goes with,
`// weights: <size> bytes, sha256 <digest of the content>` (or
`// weights: none`; a comment, so older readers ignore it), and loading checks
it: a `m.weights` that is not the one saved with `m.ir` is refused with a
`WeightsFileError` naming both files instead of running with the wrong bytes.

Only a rename is atomic, and there are two files, so a save goes:

1. write the new weights and the new text to temporaries, fsynced;
2. rename the old `m.weights` aside, to `m.weights.ember-<pid>-...old`;
3. rename the new weights to `m.weights`;
4. rename the new text to `m.ir` (the save takes effect here);
5. remove the old weights.

A kill after any step leaves a pair that loads as exactly the old module or
exactly the new one: until step 4, `m.ir` is the old text, and when
`m.weights` is missing or is not the one it records, `load_module` takes the
kept old weights whose digest matches; from step 4 on, `m.ir` is the new text
and `m.weights` its weights. A failure that raises (a full disk) rolls back to
the old pair. The next save of the pair first puts back the old weights of a
save that was killed midway and removes what that save left behind (its
temporaries and kept weights, only those whose writer process is gone). Saves into one folder hold
an exclusive lock on it and loads a shared one (`folder_lock`), so two saves at
once end with one whole pair, never a text from one and weights from the
other, and a load never sees half a save.

A module whose weights have no data (read from text alone), or that has no
weights, is saved as text that records `none`; an existing `m.weights` is
removed (in step 5, having been renamed aside in step 2), because it belongs to
the replaced module, and loading such a text never reads a `m.weights`.

Texts without the record (written by hand, by `ember opt` to standard output,
or by an older Ember) load with whatever `m.weights` is beside them, checked
only against the declared names, types and shapes; the guarantees above hold
for pairs that a save wrote.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ember.errors import EmberError, ModelFormatError, ModelNotFoundError, ParseError, WeightsFileError
from ember.ir.atomic_file import (BACKUP, TEMP, FileWriteError, TempFile, folder_lock, remove_stale, sibling_path,
                                  siblings, sync_folder)
from ember.ir.core import Module
from ember.ir.parser import parse
from ember.ir.regular_files import open_regular, read_regular
from ember.ir.types import dtype_of
from ember.ir.weights_file import (MappedWeights, WeightsDigest, WeightsMismatchError, map_weights, read_header,
                                   write_weights_to)

NO_WEIGHTS = "none"
_RECORD = re.compile(r"// weights: (?:(none)|(\d+) bytes, sha256 ([0-9a-f]{64}))[ \t]*\r?")


def weights_path(path: str | os.PathLike) -> Path:
    """Where the weights of the module text at `path` live."""
    return Path(path).with_suffix(".weights")


def weights_record(digest: WeightsDigest | None) -> str:
    """The first line of a saved module's text: which weights file goes with it."""
    if digest is None:
        return f"// weights: {NO_WEIGHTS}"
    return f"// weights: {digest.size} bytes, sha256 {digest.sha256}"


def read_record(text: str) -> WeightsDigest | str | None:
    """The weights a saved text records: a digest, NO_WEIGHTS, or None when it records nothing."""
    first = text.split("\n", 1)[0]
    m = _RECORD.fullmatch(first)
    if m is None:
        return None
    if m.group(1):
        return NO_WEIGHTS
    return WeightsDigest(int(m.group(2)), m.group(3))


def save_module(module: Module, path: str | os.PathLike) -> None:
    """Write `path` (text) and `path` with the suffix .weights (its weights), replacing both as
    one pair (see the module docstring); the weights file exists only when some weight has data."""
    path = Path(path)
    if path.suffix == ".weights":
        raise ModelFormatError(f"{path}: the module text needs another suffix than .weights (use .ir)")
    wpath = weights_path(path)
    if wpath.is_dir():
        raise FileWriteError(f"cannot write {wpath}: it is a folder")
    text = str(module)
    with_data = {n: w.data for n, w in module.weights.items() if w.data is not None}
    with folder_lock(path.parent):
        try:
            _recover(path, wpath)
            _save_pair(path, wpath, text, with_data)
        except FileWriteError:
            raise
        except OSError as err:  # a full disk, a folder that became read-only: one line, naming the file
            raise FileWriteError(f"cannot write {path}: {err.strerror or err}") from err


def _save_pair(path: Path, wpath: Path, text: str, tensors: dict[str, np.ndarray]) -> None:
    new_weights = new_text = None
    backup = None
    try:
        digest = None
        if tensors:
            new_weights = TempFile(wpath)
            digest = write_weights_to(new_weights.file, tensors)
            new_weights.finish()
        new_text = TempFile(path)
        new_text.file.write((weights_record(digest) + "\n" + text).encode("utf-8"))
        new_text.finish()
        if os.path.lexists(wpath):
            backup = sibling_path(wpath, BACKUP)
            os.replace(wpath, backup)
            sync_folder(wpath.parent)
        if new_weights is not None:
            new_weights.rename()
            sync_folder(wpath.parent)
        new_text.rename()
        sync_folder(path.parent)
        if backup is not None:
            os.unlink(backup)
            sync_folder(path.parent)
    except BaseException:
        if _moved(new_text):  # the save took effect; only the kept old weights may be left
            _remove_quietly(backup)
        else:
            _roll_back(wpath, backup, _moved(new_weights))
        for temp in (new_weights, new_text):
            if temp is not None:
                temp.discard()
        raise


def _moved(temp: TempFile | None) -> bool:
    """Whether `temp` was renamed onto its target (it is finished and its temporary name is gone)."""
    return temp is not None and temp.file.closed and not os.path.lexists(temp.path)


def _roll_back(wpath: Path, backup: Path | None, weights_placed: bool) -> None:
    """Put the old weights back after a save failed before its text was in place. If this fails
    too, the old text still loads: `load_module` finds the kept weights by their digest."""
    try:
        if backup is not None and os.path.lexists(backup):
            os.replace(backup, wpath)
        elif weights_placed:  # there were no old weights: remove the new ones
            os.unlink(wpath)
        sync_folder(wpath.parent)
    except OSError:
        pass


def _remove_quietly(p: Path | None) -> None:
    if p is None:
        return
    try:
        os.unlink(p)
    except OSError:
        pass


def _recover(path: Path, wpath: Path) -> None:
    """Finish off saves of this pair that were killed: put back the old weights the text still
    needs, then remove their kept weights and temporaries. Only files whose writer is gone."""
    stale = [s.path for s in siblings(wpath, BACKUP) if s.writer_gone]
    if stale:
        record = _record_of(path)
        if isinstance(record, WeightsDigest) and not _holds(wpath, record):
            for candidate in stale:
                if _holds(candidate, record):
                    os.replace(candidate, wpath)
                    sync_folder(wpath.parent)
                    break
        for p in stale:
            _remove_quietly(p)
    remove_stale(wpath, TEMP)  # the text's own are removed when its temporary is made


def _record_of(path: Path) -> WeightsDigest | str | None:
    try:
        with open_regular(path, "the module text", ModelFormatError) as f:
            first = f.readline(512)
    except (OSError, EmberError):
        return None
    return read_record(first.decode("utf-8", "replace"))


def _holds(wpath: Path, digest: WeightsDigest) -> bool:
    """Whether `wpath` is a weights file with exactly this content (header only)."""
    try:
        head = read_header(wpath)
    except WeightsFileError:
        return False
    return head.digest == digest


def _map_pair_weights(path: Path, record: WeightsDigest) -> MappedWeights | None:
    """The weights file that holds what the text at `path` records: `m.weights`, or else the old
    weights kept by a save that is under way or was killed. None when neither exists (the
    text alone: declarations without data)."""
    wpath = weights_path(path)
    try:
        return map_weights(wpath, digest=record)
    except WeightsFileError as err:
        problem = err
    for kept in siblings(wpath, BACKUP):
        try:
            return map_weights(kept.path, digest=record)
        except WeightsFileError:
            continue
    if not os.path.lexists(wpath):
        return None
    if isinstance(problem, WeightsMismatchError):
        raise WeightsMismatchError(
            f"{path}: its weights file {wpath} is not the one it was saved with ({path.name} records "
            f"{record.size} bytes, sha256 {record.sha256[:16]}...; {wpath.name} has {problem.header.size} bytes, "
            f"{_holds_text(problem.header.sha256)}); it was replaced, or a save was interrupted. Save the module "
            f"again, or delete the first line of {path.name} to take {wpath.name} as it is", problem.header)
    raise problem


def _holds_text(sha256: str | None) -> str:
    return f"sha256 {sha256[:16]}..." if sha256 else "no content digest"


def load_module(path: str | os.PathLike, *, verify: bool = True, weights: bool = True) -> Module:
    """Read a `.ir` file and the weights that go with it (see the module docstring)."""
    path = Path(path)
    mapped = None
    with folder_lock(path.parent, shared=True):  # the text and its weights from one moment, not mid-save
        text = _read_text(path)
        record = read_record(text)
        if weights and isinstance(record, WeightsDigest):
            mapped = _map_pair_weights(path, record)
    module = parse(text, source=str(path), verify=False)
    if weights and module.weights and record is None and weights_path(path).exists():
        mapped = map_weights(weights_path(path))  # a text that records nothing: whatever is beside it
    if mapped is not None and module.weights:
        source = mapped.header.path
        arrays = mapped.arrays(names=module.weights)
        for name, w in module.weights.items():
            if name not in arrays:
                continue  # declared without data, as a text-only module may be
            arr = arrays[name]
            try:
                w.check(arr)
            except ValueError as err:
                raise WeightsFileError(f"{source}: {err}") from None
            dtype_of(arr)
            w.data = arr
    if verify:
        from ember.ir.verify import verify as run_verify
        run_verify(module)
    return module


def _read_text(path: Path) -> str:
    if not os.path.lexists(path):
        raise ModelNotFoundError(f"no such IR file: {path}")
    try:
        return read_regular(path, "the module text", ModelFormatError).decode("utf-8")
    except UnicodeDecodeError as err:
        raise ParseError(f"not UTF-8 text ({err.reason} at byte {err.start})", source=str(path)) from None
