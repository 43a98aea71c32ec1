"""Engines forged with valid checksums: every section's contents checked at load.

Each case edits the sections of a real engine (the tiny model of
tests/support/engine_forgery.py, or the runtime tests' synthetic engine with
scratch buffers), recomputes the checksums, and expects `Engine.load` to refuse
the file with an `EngineFormatError` whose one-line message names the file, the
section and what is wrong: never a traceback from numpy, ctypes or the driver
later, never a write outside the host arena.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from engine_forgery import forge, tiny_engine

import ember
from ember.errors import EmberError
from ember.ir.sizes import MAX_BYTES
from ember.runtime import Engine, EngineFormatError
from ember.runtime import engine_format as fmt
from ember.runtime.memory_plan import Buffer, MemoryPlan


@pytest.fixture(scope="module")
def tiny(built, tmp_path_factory) -> tuple[Any, bytes]:
    engine = tiny_engine(built.cache_dir)
    return engine, engine.to_bytes()


@pytest.fixture(scope="module")
def synthetic_bytes(synthetic) -> bytes:
    return synthetic.to_bytes()


def refused(data: bytes, tmp_path: Path, section: str) -> str:
    path = tmp_path / "forged.engine"
    path.write_bytes(data)
    with pytest.raises(EngineFormatError) as info:
        Engine.load(path)
    message = str(info.value)
    assert isinstance(info.value, EmberError) and isinstance(info.value, ValueError)
    assert "\n" not in message, message
    assert message.startswith(f"{path}: section {section!r}: "), message
    assert "malformed engine contents" not in message, message  # the catch-all never fires
    with pytest.raises(EngineFormatError) as again:
        Engine.from_bytes(data, source="forged")
    assert str(again.value) == message.replace(str(path), "forged", 1)
    return message


def buf(s: dict[str, Any], key: str) -> list[Any]:
    return next(b for b in s["plan"]["memory"]["buffers"] if b[0] == key)


def step(s: dict[str, Any], kernel_prefix: str) -> dict[str, Any]:
    return next(t for t in s["plan"]["program"]["steps"] if t.get("kernel", "").startswith(kernel_prefix))


def program(s: dict[str, Any]) -> dict[str, Any]:
    return s["plan"]["program"]


def setitem(obj: Any, key: Any, value: Any) -> None:
    obj[key] = value


def the_gemm_kernel(s: dict[str, Any]) -> str:
    return next(k for k in s["kernels"] if k.startswith("gemm"))


# The tiny engine: x (0, input), w, b, zero (1..3, weights), r (4, the GEMM's output), flat (5, a view
# of r), y (6), pos (7), idx (8, sized at run time by _rt0, which the nonzero step binds). Steps: gemm, softmax,
# greater (launches), nonzero (host).
TINY_FORGERIES: dict[str, tuple[str, Callable[[dict[str, Any]], Any], str]] = {
    "huge offset": ("plan", lambda s: setitem(buf(s, "v4"), 1, 1 << 50), "offset 1125899906842624 is outside"),
    "negative offset": ("plan", lambda s: setitem(buf(s, "v4"), 1, -256), "offset -256 is outside"),
    "offset past the arena": ("plan", lambda s: setitem(buf(s, "v4"), 1, s["plan"]["memory"]["arena_bytes"]),
                              "lie past the end"),
    "misaligned offset": ("plan", lambda s: setitem(buf(s, "v4"), 1, 8), "not a multiple of the alignment 256"),
    "overlaps the input": ("plan", lambda s: setitem(buf(s, "v4"), 1, buf(s, "v0")[1]), "share bytes"),
    "buffer smaller than its value": ("plan", lambda s: setitem(buf(s, "v4"), 2, 16),
                                      "buffer v4: 16 bytes live at steps 0..1; the steps use 32 bytes"),
    "lifetime cut short": ("plan", lambda s: setitem(buf(s, "v0"), 4, 0), "the steps use 64 bytes at -1..2"),
    "buffer missing": ("plan", lambda s: s["plan"]["memory"]["buffers"].remove(buf(s, "v6")),
                       "no buffer for value 6 (y, an activation)"),
    "buffer for a weight": ("plan", lambda s: s["plan"]["memory"]["buffers"].append(["v1", 0, 128, 0, 0]),
                            "value 1 is not an input or activation"),
    "buffer listed twice": ("plan", lambda s: s["plan"]["memory"]["buffers"].append(list(buf(s, "v4"))),
                            "buffer v4 is listed twice"),
    "bad buffer key": ("plan", lambda s: setitem(buf(s, "v4"), 0, "x4"), "neither v<value> nor s<step>.<slot>"),
    "arena past the limit": ("plan", lambda s: setitem(s["plan"]["memory"], "arena_bytes", MAX_BYTES * 2),
                             f"arena size {MAX_BYTES * 2} is outside 0..{MAX_BYTES}"),
    "arena larger than its buffers": ("plan", lambda s: setitem(s["plan"]["memory"], "arena_bytes", 1 << 30),
                                      "the arena is 1073741824 bytes; its buffers end at"),
    "odd alignment": ("plan", lambda s: setitem(s["plan"]["memory"], "alignment", 100),
                      "alignment 100 is not a power of two"),
    "forged extra reads": ("plan", lambda s: setitem(s["plan"]["memory"], "extra_reads", [[0, [6]]]),
                           "are not the reads the IR's ops add"),
    "value size not its type's": ("plan", lambda s: setitem(program(s)["values"][4], "nbytes", 64),
                                  "64 bytes for f32[2, 4], which has 32"),
    "value of a huge shape": ("plan", lambda s: setitem(program(s)["values"][4], "shape", [10 ** 12, 10 ** 12]),
                              "more than the limit"),
    "negative dim": ("plan", lambda s: setitem(program(s)["values"][4], "shape", [-2, -4]), "dim -2 is outside"),
    "unknown element type": ("plan", lambda s: setitem(program(s)["values"][4], "dtype", "f33"),
                             "element type 'f33' is not an Ember element type"),
    "unknown value kind": ("plan", lambda s: setitem(program(s)["values"][4], "kind", "magic"),
                           "kind 'magic' is not one of"),
    "ids out of order": ("plan", lambda s: setitem(program(s)["values"][3], "id", 7), "value 3 has id 7"),
    "values missing": ("plan", lambda s: program(s).pop("values"), "missing 'values'"),
    "view of itself": ("plan", lambda s: setitem(program(s)["values"][5], "alias", 5), "not another value"),
    "view of a host value": ("plan", lambda s: (program(s)["values"][8].update(kind="host", shape=[], nbytes=0),
                                                program(s)["steps"][3].pop("binds"),
                                                setitem(program(s)["values"][5], "alias", 8)),
                             "a view of value 8, a host value"),
    "view of a value sized at run time, of other bytes": (
        "plan", lambda s: (program(s)["values"][5].update(dtype="i64", shape=[2, "_rt0"], nbytes="8*_rt0"),
                           setitem(program(s)["values"][5], "alias", 8)), "a view has its source's bytes"),
    "run-time symbol bound twice": ("plan", lambda s: program(s)["steps"][3]["binds"].append(["_rt0", 8, 1]),
                                    "run-time symbol _rt0 is bound twice"),
    "run-time symbol bound from a value of static size": (
        "plan", lambda s: setitem(program(s)["steps"][3]["binds"], 0, ["_rt0", 6, 0]),
        "value 6 is not a value sized by _rt0"),
    "run-time symbol not an identifier": ("plan", lambda s: setitem(program(s)["steps"][3]["binds"][0], 0, "2+x"),
                                          "a run-time symbol is an identifier"),
    "value sized by a symbol no step binds": ("plan", lambda s: setitem(program(s)["values"][8]["shape"], 0, "_rt9"),
                                              "'_rt9' names _rt9, which no step before binds"),
    "activation sized at run time": ("plan", lambda s: setitem(program(s)["values"][4]["shape"], 0, "_rt0"),
                                     "dim: expected an integer, got str"),
    "launch sized by a symbol bound after it": ("plan", lambda s: setitem(step(s, "gemm")["grid"], 0, "_rt0"),
                                                "grid dim '_rt0' names _rt0, which no step before binds"),
    "launch sized by an expression that does not parse": (
        "plan", lambda s: setitem(step(s, "gemm")["grid"], 0, "_rt0+"), "grid dim: shape expression '_rt0+'"),
    "run-time guard with no comparison": ("plan", lambda s: setitem(step(s, "gemm"), "guards", [[1, "<=>", 2, ""]]),
                                          "a run-time guard is [lhs, comparison, rhs, origin]"),
    "size step that writes": ("plan", lambda s: setitem(program(s)["steps"][3], "writes", program(s)["steps"][4]["writes"]),
                              "a size step has one op, binds run-time symbols and writes nothing"),
    "size step of an op with no size rule": ("plan", lambda s: setitem(program(s)["steps"][3], "ops", [5]),
                                             "has no rule for its sizes at run time"),
    "window past its source": ("plan", lambda s: setitem(program(s)["values"][5], "offset", 4),
                               "a window of 32 bytes at byte 4 runs past the 32 bytes of value 4"),
    "window at a negative offset": ("plan", lambda s: setitem(program(s)["values"][5], "offset", -4),
                                    "window offset -4 is outside"),
    "window of an input": ("plan", lambda s: program(s)["values"][5].update(alias=0, offset=0),
                           "value 5 is a window of value 0, an input value; a window reads an activation's buffer"),
    "window of another element type": ("plan", lambda s: program(s)["values"][5].update(dtype="i32", offset=0),
                                       "value 5 (i32) is a window of value 4 (f32)"),
    "view of nothing": ("plan", lambda s: setitem(program(s)["values"][5], "alias", 999), "not another value"),
    "step reads nothing": ("plan", lambda s: step(s, "gemm")["reads"].append(99),
                           "value 99 is not a value of the program (0..8)"),
    "argument points nowhere": ("plan", lambda s: setitem(step(s, "gemm")["args"], 1, {"value": -1}),
                                "value -1 is not a value of the program"),
    "argument not among the reads": ("plan", lambda s: setitem(step(s, "gemm")["args"], 1, {"value": 7}),
                                     "value 7 is an argument but not among the step's reads and writes"),
    "kernel writes a weight": ("plan", lambda s: (setitem(step(s, "gemm")["args"], 0, {"value": 1}),
                                                 setitem(step(s, "gemm"), "writes", [1])),
                               "the step writes value 1 (w), which is a weight value"),
    "kernel writes the input": ("plan", lambda s: (setitem(step(s, "gemm")["args"], 0, {"value": 0}),
                                                  setitem(step(s, "gemm"), "writes", [0])),
                                "which is an input value"),
    "op index past the IR": ("plan", lambda s: setitem(program(s)["steps"][3], "ops", [8]),
                             "op 8 is not an op of @main (it has 8)"),
    "host step reads what it does not list": ("plan", lambda s: setitem(program(s)["steps"][3], "reads", []),
                                              "op 7 (ember.nonzero) reads value 7, which the step does not list"),
    "op index negative": ("plan", lambda s: setitem(program(s)["steps"][3], "ops", [-1]), "op index -1 is outside"),
    "step of another kind": ("plan", lambda s: setitem(program(s)["steps"][3], "kind", "jump"),
                             "step kind 'jump' is not 'launch'"),
    "unknown kernel": ("plan", lambda s: setitem(step(s, "gemm"), "kernel", "nope"),
                       "kernel 'nope' is not among the program's kernels"),
    "too few arguments": ("plan", lambda s: step(s, "gemm")["args"].pop(), "8 arguments for the 9 parameters"),
    "scalar past int32": ("plan", lambda s: setitem(step(s, "gemm")["args"], 5, {"i32": 1 << 40}),
                          "outside -2147483648..2147483647"),
    "argument of the wrong kind": ("plan", lambda s: setitem(step(s, "gemm")["args"], 5, {"f32": 1.5}),
                                   "a f32 argument for parameter 'M' of kind i32"),
    "two keys in an argument": ("plan", lambda s: setitem(step(s, "gemm")["args"], 5, {"i32": 1, "i64": 2}),
                                "expected one of value, scratch"),
    "metadata past int64": ("plan", lambda s: setitem(step(s, "gemm")["args"], 4, {"meta": [1 << 64]}),
                            "metadata 18446744073709551616 is outside"),
    "empty grid": ("plan", lambda s: setitem(step(s, "gemm"), "grid", [0, 1, 1]), "grid dim 0 is outside"),
    "grid of two dims": ("plan", lambda s: setitem(step(s, "gemm"), "grid", [1, 1]), "expected 3 entries"),
    "block too large": ("plan", lambda s: setitem(step(s, "gemm"), "block", [64, 64, 1]),
                        "4096 threads a block, more than 1024"),
    "parameter of an unknown kind": ("plan", lambda s: setitem(program(s)["kernels"][0]["params"][0], "kind", "u8"),
                                     "parameter kind 'u8' is not one of"),
    "input of another kind": ("plan", lambda s: setitem(program(s)["inputs"][0], "value", 4),
                              "an activation value, not an input"),
    "symbol not a number": ("plan", lambda s: setitem(s["plan"], "symbols", {"N": "many"}),
                            "symbol value: expected an integer"),
    "kernel missing": ("kernels", lambda s: s["kernels"].pop(the_gemm_kernel(s)), "of the plan has no binaries"),
    "kernel not in the plan": ("kernels", lambda s: setitem(s["kernels"], "extra", s["kernels"][the_gemm_kernel(s)]),
                               "kernel extra is not a kernel of the plan"),
    "cubin past the binaries": ("kernels", lambda s: setitem(s["kernels"][the_gemm_kernel(s)]["cubins"], "sm_90",
                                                             [0, 1 << 30]), "lie past the end"),
    "negative PTX offset": ("kernels", lambda s: setitem(s["kernels"][the_gemm_kernel(s)], "ptx", [-64, 8]),
                            "offset -64 is outside"),
    "empty cubin": ("kernels", lambda s: setitem(s["kernels"][the_gemm_kernel(s)]["cubins"], "sm_90", [0, 0]),
                    "the sm_90 cubin of"),
    "cubin that is not ELF": ("kernels", lambda s: setitem(s["kernels"][the_gemm_kernel(s)]["cubins"], "sm_90",
                                                           list(s["kernels"][the_gemm_kernel(s)]["ptx"])),
                              "is not an ELF image"),
    "PTX that is a cubin": ("kernels", lambda s: setitem(s["kernels"][the_gemm_kernel(s)], "ptx",
                                                         list(s["kernels"][the_gemm_kernel(s)]["cubins"]["sm_90"])),
                            "is not PTX text"),
    "not an architecture": ("kernels", lambda s: setitem(s["kernels"][the_gemm_kernel(s)], "cubins", {"volta": [0, 8]}),
                            "'volta' is not a CUDA architecture"),
    "weight past the section": ("weights.index", lambda s: setitem(s["weights.index"]["w"], "offset",
                                                                    -(-len(s["weights"]) // 256) * 256),
                                "lie past the end"),
    "weight offset huge": ("weights.index", lambda s: setitem(s["weights.index"]["w"], "offset", 1 << 62),
                           "offset 4611686018427387904 is outside"),
    "weight misaligned": ("weights.index", lambda s: setitem(s["weights.index"]["w"], "offset", 4),
                          "offset 4 is not a multiple of 256"),
    "weight bytes not its shape's": ("weights.index", lambda s: setitem(s["weights.index"]["w"], "nbytes", 100),
                                     "100 bytes for f32[8, 4], which has 128"),
    "weight of another shape": ("plan", lambda s: setitem(s["weights.index"]["w"], "shape", [4, 8]),
                                "its weight 'w' f32[4, 8]"),
    "weight missing": ("plan", lambda s: s["weights.index"].pop("b"), "weight 'b' is not in the weights index"),
    "float weight as JSON": ("weights.index", lambda s: setitem(s["weights.index"]["w"], "encoding", "json"),
                             "a f32 weight stored as JSON"),
    "output of another shape": ("io", lambda s: setitem(s["io"]["outputs"][0], "shape", [9]),
                                "'y' is f32[9], its value 6 f32[8]"),
    "input names another value": ("io", lambda s: setitem(s["io"]["inputs"][0], "value", 4),
                                  "is input 0 of the program"),
    "an output too many": ("io", lambda s: s["io"]["outputs"].append(s["io"]["outputs"][0]),
                           "3 outputs, the program has 2"),
    "IR of another model": ("ir", lambda s: setitem(s, "ir", s["ir"].replace(
        "    return", "    %extra = ember.relu %x : f32[2,8]\n    return")), "the sections do not belong together"),
    "IR syntax error": ("ir", lambda s: setitem(s, "ir", s["ir"].replace("ember.softmax %flat",
                                                                         "ember.softmax %flat)")), "line 17"),
    "program value of another type than the IR's": ("ir", lambda s: setitem(program(s)["values"][7], "dtype", "u8"),
                                                    "value 7 (%pos) is bool[2,8], the program has u8[2, 8]"),
    "IR op that does not verify": ("ir", lambda s: setitem(s, "ir", s["ir"].replace("ember.add %m, %b_1",
                                                                                   "ember.add %m, %x_1")),
                                   "ember.add"),
    "IR weight of another shape": ("ir", lambda s: setitem(s, "ir", s["ir"].replace(
        'weight "zero" : f32[]', 'weight "zero" : f32[1,1]').replace('name = "zero"} : f32[]',
                                                                     'name = "zero"} : f32[1,1]')),
        "weight 'zero' is declared f32[1,1], stored as f32[]"),
}


@pytest.mark.parametrize("name", sorted(TINY_FORGERIES))
def test_forged_tiny_engine_is_refused(tiny, tmp_path, name):
    section, edit, expected = TINY_FORGERIES[name]
    message = refused(forge(tiny[1], edit), tmp_path, section)
    assert expected in message, message


def test_the_unforged_engine_loads_and_runs(tiny, tmp_path):
    engine, data = tiny
    path = tmp_path / "tiny.engine"
    path.write_bytes(data)
    loaded = Engine.load(path)
    x = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
    got = loaded.run({"x": x}, device="cpu")
    want = ember.interpret(loaded.module, {"x": x})
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-6)
    np.testing.assert_array_equal(got["idx"], want["idx"])
    # forge() with no edit gives the same bytes: the forgeries differ only where they say.
    assert forge(data, lambda s: None) == data


SYNTHETIC_FORGERIES: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "scratch offset not its slot's": (lambda s: s["plan"]["memory"]["scratch"][0].__setitem__(2, 256),
                                      "but its buffer s0.0 is at"),
    "scratch offset missing": (lambda s: s["plan"]["memory"]["scratch"].pop(0), "no offset for the scratch argument"),
    "scratch for a scalar": (lambda s: s["plan"]["memory"]["scratch"].append([0, 3, 0]),
                             "step 0 argument 3 is not a scratch argument"),
    "scratch larger than its slot": (lambda s: program(s)["steps"][1]["args"][1].__setitem__("scratch", 1 << 20),
                                     "the steps use 1048576 bytes"),
    "scratch buffer of a step that is not there": (
        lambda s: s["plan"]["memory"]["buffers"].append(["s9.0", 0, 4, 0, 0]), "neither v<value> nor s<step>.<slot>"),
}


@pytest.mark.parametrize("name", sorted(SYNTHETIC_FORGERIES))
def test_forged_scratch_is_refused(synthetic_bytes, tmp_path, name):
    edit, expected = SYNTHETIC_FORGERIES[name]
    message = refused(forge(synthetic_bytes, edit), tmp_path, "plan")
    assert expected in message, message


def _raw_engine(header: Any, body: bytes = b"") -> bytes:
    """A file whose header is `header` (any JSON) with valid prefix CRC and header hash."""
    text = json.dumps(header).encode()
    start = struct.pack("<8sIIQII", fmt.MAGIC, fmt.FORMAT_VERSION, 0, len(text), 0, 0)
    prefix = struct.pack("<8sIIQII", fmt.MAGIC, fmt.FORMAT_VERSION, 0, len(text), zlib.crc32(start[:24]), 0)
    data = prefix + text + hashlib.sha256(prefix + text).digest() + body
    return data + b"\0" * (-len(data) % 64)


@pytest.mark.parametrize("header, expected", [
    ([1, 2], "a JSON list, not an object"),
    ({"sections": 5, "file_size": 0}, "sections int is not a list"),
    ({"sections": [7], "file_size": 0}, "section entry 0 lacks a name"),
    ({"sections": [{"name": "ir", "sha256": "", "offset": "0", "size": 1}], "file_size": 0},
     "offset '0' is not a size"),
    ({"sections": [{"name": "ir", "sha256": "", "offset": -5, "size": 1}], "file_size": 0}, "offset -5 is not a size"),
    ({"sections": [], "file_size": "big"}, "file_size 'big' is not a size"),
    ({"sections": [{"name": "a", "sha256": "", "offset": 0, "size": 0}] * 2, "file_size": 0}, "listed twice"),
])
def test_forged_headers_are_refused(header, expected, tmp_path):
    data = _raw_engine(header)
    path = tmp_path / "header.engine"
    path.write_bytes(data)
    with pytest.raises(EngineFormatError) as info:
        Engine.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: the header is not a valid engine header") and expected in message, message


def test_deeply_nested_json_is_refused(tiny, tmp_path):
    def nest(s: dict[str, Any]) -> None:
        s["io"] = b"[" * 100_000 + b"]" * 100_000  # raw bytes: json.loads recurses past its limit
    path = tmp_path / "nested.engine"
    path.write_bytes(forge(tiny[1], nest))
    with pytest.raises(EngineFormatError, match=r"section 'io' is not valid JSON"):
        Engine.load(path)


def test_a_folder_or_fifo_is_not_an_engine(tmp_path):
    import os
    with pytest.raises(EngineFormatError, match="the engine file is a folder"):
        Engine.load(tmp_path)
    fifo = tmp_path / "pipe.engine"
    os.mkfifo(fifo)
    with pytest.raises(EngineFormatError, match="not a regular file"):
        Engine.load(fifo)  # open() would wait for a writer forever


def _pairwise(plan: MemoryPlan) -> set[tuple[str, str]]:
    bs = [b for b in plan.buffers if b.nbytes > 0]
    return {tuple(sorted((a.key, b.key))) for i, a in enumerate(bs) for b in bs[i + 1:]
            if a.overlaps(b) and a.offset < b.offset + b.nbytes and b.offset < a.offset + a.nbytes}


def test_the_overlap_sweep_agrees_with_the_pairwise_definition():
    """MemoryPlan.check finds a conflict exactly when some pair of live buffers shares bytes."""
    rng = random.Random(11)
    for trial in range(400):
        n = rng.randint(1, 12)
        buffers = []
        for i in range(n):
            start = rng.randint(-1, 6)
            buffers.append(Buffer(f"v{i}", rng.choice([0, 1, 100, 256, 300, 512]), start, rng.randint(start, 7), i,
                                  256 * rng.randint(0, 6)))
        plan = MemoryPlan(256 * 10, 0, 0, buffers)
        problems = plan.check()
        assert bool(problems) == bool(_pairwise(plan)), (trial, problems, _pairwise(plan))
        for p in problems:
            if "share bytes" in p:
                a, b = p.split(" ")[0], p.split(" and ")[1].split(" ")[0]
                assert tuple(sorted((a, b))) in _pairwise(plan), p
