"""A Triton model repository for Ember engines (`ember export-triton`, and what `ember serve` serves).

    REPO/<model>/config.pbtxt       inputs, outputs, max batch size, dynamic batching, instance groups
    REPO/<model>/1/model.py         the Python-backend model (serve/triton_model.py)
    REPO/<model>/1/<model>.engine   the engine file, copied

The model is named after the engine file. Nothing the user had is overwritten: a model folder
that already exists is refused unless `force` is given, and then only that folder is replaced.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from ember.ir.atomic_file import atomic_write
from ember.runtime.engine import Engine
from ember.serve.model_config import ModelConfig, ServeError, ServeOptions, check_unique_names, model_config, model_name_of

MODEL_PY = Path(__file__).with_name("triton_model.py")


def build_id(path: Path) -> str:
    """The engine file's identity in metrics and configs: the first 16 hex digits of its SHA-256."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _copy(source: Path, target: Path) -> None:
    with open(source, "rb") as src, atomic_write(target) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def export_repository(engine_paths: Sequence[str | Path], repo: str | Path, options: ServeOptions,
                      force: bool = False, link: bool = False) -> list[ModelConfig]:
    """Write one model per engine under `repo` (see the module docstring); returns their configs.

    Every engine is loaded (and so checked) and every config made before anything is written.
    `link` symlinks the engine file instead of copying it (ember serve's own temporary repository)."""
    paths = [Path(p) for p in engine_paths]
    if not paths:
        raise ServeError("no engine given")
    names = [model_name_of(p.name[:-len(".engine")] if p.name.endswith(".engine") else p.stem) for p in paths]
    check_unique_names(names)
    repo = Path(repo)
    planned = []
    for path, name in zip(paths, names):
        engine = Engine.load(path)
        params = {**options.parameters, "ember_engine": f"{name}.engine", "ember_build_id": build_id(path)}
        config = model_config(engine, name, replace(options, parameters=params))
        target = repo / name
        if target.exists() and not force:
            raise ServeError(f"{target} already exists: pass --force to replace that model folder")
        if repo.exists() and not repo.is_dir():
            raise ServeError(f"{repo} is a file, not a model repository folder")
        planned.append((path, config, target))
    for path, config, target in planned:
        if target.exists():
            shutil.rmtree(target)
        version = target / "1"
        version.mkdir(parents=True)
        with atomic_write(target / "config.pbtxt") as f:
            f.write(config.to_pbtxt().encode())
        _copy(MODEL_PY, version / "model.py")
        engine_file = version / f"{config.name}.engine"
        if link:
            engine_file.symlink_to(path.resolve())
        else:
            _copy(path, engine_file)
    return [config for _, config, _ in planned]
