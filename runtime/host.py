"""The host-arena executor: an engine's own plan run on the CPU, for machines with no GPU.

It allocates one numpy byte arena of the planned size and places every input,
activation and scratch buffer at its planned offset (views at their source's), as
the CUDA context does in device memory. Launch steps run the IR op they compute on
the reference interpreter (each op once, at its last launch), host steps likewise,
reading their operands as views of the arena and writing results into it. So the
planner's offsets and aliasing are checked without a GPU: two buffers that are live
at once and overlap would corrupt the results. The arena starts filled with 0xFF
bytes (NaN for floats), so a read of memory no step wrote shows.

`HostOps` (running one top-level op of the engine's IR on given operand arrays) is
shared with the CUDA context, whose host steps use it too.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from ember.errors import InterpretError, OutOfMemoryError
from ember.ir.interpret import _run_block
from ember.ir.opdef import EvalContext
from ember.ir.program import BranchStep, HostStep, LaunchStep, SizeStep, ValueSpec, YieldStep
from ember.runtime.profiling import LayerTimes
from ember.runtime.specs import view_of


class _Outer(Mapping):
    """Values of the entry function, by IR value, fetched on demand (what regions read from outside)."""

    def __init__(self, ids: Mapping[Any, int], fetch: Callable[[int], Any]) -> None:
        self.ids, self.fetch = ids, fetch

    def __getitem__(self, v: Any) -> Any:
        if v not in self.ids:
            raise KeyError(v)
        return self.fetch(self.ids[v])

    def __iter__(self) -> Iterator[Any]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)


class HostOps:
    """Runs top-level ops of an engine's IR on the reference interpreter."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.module = engine.module
        self.ids = engine.value_ids
        self.ops = engine.ops
        self.env = engine.symbols

    def run(self, index: int, fetch: Callable[[int], Any], env: Mapping[str, int] | None = None
            ) -> list[tuple[int, Any]]:
        """Evaluate op `index` with operands from `fetch(value id)` (symbols bound by `env`, else the
        engine's default shape); returns (value id, result) pairs."""
        op = self.ops[index]
        operands = [fetch(self.ids[v]) if v is not None else None for v in op.operands]
        outer = _Outer(self.ids, fetch)
        ctx = EvalContext(env=dict(self.env if env is None else env), module=self.module,
                          run_block=lambda block, xs: _run_block(block, xs, ctx, outer))
        where = f"{op.loc}: " if op.loc else ""
        try:
            with np.errstate(all="ignore"):
                results = op.evaluate(operands, ctx)
        except InterpretError:
            raise
        except Exception as err:
            raise InterpretError(f"{where}{op.name}: {type(err).__name__}: {err}") from err
        if len(results) != len(op.results):
            raise InterpretError(f"{where}{op.name}: reference gave {len(results)} results for {len(op.results)}")
        return [(self.ids[r], out) for r, out in zip(op.results, results)]

    def sizes(self, index: int, fetch: Callable[[int], Any], shape_of: Callable[[int], Any],
              env: Mapping[str, int] | None = None) -> dict[int, tuple[int, ...]]:
        """A size step: the result shapes of op `index` from its operands (the op's
        `run_time_sizes`: the values of the operands it reads, fetched; the shapes of the
        others), by value id, without computing the results."""
        op = self.ops[index]
        where = f"{op.loc}: " if op.loc else ""
        if getattr(type(op), "run_time_sizes", None) is None:
            raise InterpretError(f"{where}{op.name} has no rule for its sizes at run time")
        try:
            shapes = op.sizes_at_run_time(lambda v: fetch(self.ids[v]), lambda v: shape_of(self.ids[v]),
                                          dict(self.env if env is None else env))
        except Exception as err:
            raise InterpretError(f"{where}{op.name}: {type(err).__name__}: {err}") from err
        return {self.ids[r]: tuple(int(d) for d in shape) for r, shape in zip(op.results, shapes)}

    def sizes_from_shapes(self, index: int, shape_of: Callable[[int], Any]) -> dict[int, tuple[int, ...]]:
        """A size step of an op whose result sizes follow from its operands' shapes (a slice of a
        value sized at run time): its type rule on the operands' shapes of this run."""
        op = self.ops[index]
        where = f"{op.loc}: " if op.loc else ""
        try:
            types = [v.type.with_shape(tuple(int(d) for d in shape_of(self.ids[v]))) if v is not None else None
                     for v in op.operands]
            out = op.infer_types(types)
        except Exception as err:
            raise InterpretError(f"{where}{op.name}: {type(err).__name__}: {err}") from err
        shapes = {}
        for r, t in zip(op.results, out):
            shape = getattr(t, "shape", None)
            if shape is None or not all(isinstance(d, int) for d in shape):
                raise InterpretError(f"{where}{op.name}: its type rule gives {t} at these shapes, not a size")
            shapes[self.ids[r]] = tuple(shape)
        return shapes


def detach(x: Any) -> Any:
    """A copy that shares no memory with the arena (arrays copied, sequences walked)."""
    if isinstance(x, np.ndarray):
        return np.array(x, copy=True)
    if isinstance(x, list):
        return [detach(e) for e in x]
    if isinstance(x, tuple):
        return tuple(detach(e) for e in x)
    return x


def check_result(binding: Any, vid: int, out: Any, info: ValueSpec | None = None) -> np.ndarray:
    """A result bound for an arena slot (or, sized at run time, a buffer of its own), checked
    against the plan's dtype and shape (`info`: the value with its run-time sizes evaluated)."""
    info = binding.values[vid] if info is None else info
    want_dtype = np.dtype(_np_dtype(info.dtype))
    arr = np.asarray(out)
    if arr.dtype != want_dtype or tuple(arr.shape) != info.shape:
        raise InterpretError(f"value {info.name}: the op gave {arr.dtype}{list(arr.shape)}, the plan has "
                             f"{info.dtype}{list(info.shape)}")
    return arr


def _np_dtype(name: str) -> np.dtype:
    from ember.ir.types import DTYPES
    return DTYPES[name].np_dtype


class WallTimer:
    """The host context's StreamTimer (runtime/cuda.py): wall-clock time between start and stop."""

    def start(self) -> None:
        self.begin = time.perf_counter()

    def stop(self) -> None:
        self.end = time.perf_counter()

    def elapsed_ms(self) -> float:
        return (self.end - self.begin) * 1000.0


class HostContext:
    """Runs an engine on a host-memory arena laid out by its memory plan (see the module docstring).

    Each run binds the engine's program at the input shapes (runtime/binding.py); the arena
    is allocated for the largest plan met so far and grows when a shape needs more."""

    device = "cpu"

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.arena = self._allocate(engine.default.plan.arena_bytes)
        self.fallbacks = 0       # last run: launch groups whose run-time guards failed (on a GPU: run on the host)
        self.run_symbols: dict[str, int] = {}  # last run: the run-time symbols' values
        self.ops = HostOps(engine)
        self._lock = threading.Lock()
        self._run_at: dict[tuple, dict[int, list[int]]] = {}
        self.layer_times: LayerTimes | None = None   # set to time each step (runtime/profiling.py)

    @staticmethod
    def _allocate(nbytes: int) -> np.ndarray:
        try:
            return np.full(nbytes, 0xFF, dtype=np.uint8)
        except MemoryError:
            raise OutOfMemoryError(f"the host has not the {nbytes} bytes of this engine's activation arena") from None

    def _slot(self, b: Any, vid: int, writable: bool = False) -> np.ndarray:
        info = b.values[vid]
        dt = _np_dtype(info.dtype) if info.dtype in _dtype_names() else None
        shape = info.shape
        nbytes = info.nbytes
        if nbytes == 0:
            return np.zeros(shape, dt)
        off = b.plan.offsets[vid]
        view = self.arena[off:off + nbytes].view(dt).reshape(shape)
        if not writable:
            view.flags.writeable = False
        return view

    def _read(self, b: Any, vid: int, host: Mapping[int, Any], sizes: Any = None) -> Any:
        info = b.values[vid] if sizes is None else sizes.value(vid)
        if info.kind == "view":
            base = self._read(b, b.root(vid), host, sizes)
            return view_of(base, info.shape, info.dtype, info.offset)
        if info.is_data:
            return self.engine.weights[info.weight]
        if info.in_arena:
            return self._slot(b, vid)
        if vid not in host:
            raise InterpretError(f"value {info.name} is read before any step computed it")
        return host[vid]

    def upload(self, array: Any) -> np.ndarray:
        """The host context's "device" copy of an input (the CUDA context's upload, for one bench loop)."""
        return np.array(array, copy=True)

    def timer(self) -> "WallTimer":
        return WallTimer()

    def synchronize(self) -> None:
        """Nothing runs behind the host's back."""

    def run(self, inputs: Mapping[str, Any], out: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Run the engine's steps on the arena; numpy arrays in, numpy arrays out (written into
        `out`'s arrays where given: see Engine.run)."""
        engine = self.engine
        engine.check_inputs(inputs)
        given_out = engine.check_out(out)
        with self._lock:
            given = {spec.name: engine.host_input(spec, _to_host(inputs[spec.name])) for spec in engine.inputs}
            b = engine.bind({n: np.shape(x) for n, x in given.items() if hasattr(x, "shape")})
            sizes = engine.run_sizes(b)
            if b.plan.arena_bytes > self.arena.size:
                self.arena = self._allocate(b.plan.arena_bytes)
            else:
                self.arena[:b.plan.arena_bytes] = 0xFF
            host: dict[int, Any] = {}
            for spec in engine.inputs:
                x = given[spec.name]
                info = b.values[spec.value]
                if info.in_arena:
                    if info.nbytes:
                        np.copyto(self._slot(b, spec.value, writable=True), x)
                else:
                    host[spec.value] = x
            run_at = self._run_at.get(b.key)
            if run_at is None:
                run_at = {last: list(b.steps[first].ops) for first, last in b.groups}
                self._run_at[b.key] = run_at
            done: set[int] = set()
            fetch = lambda vid: self._read(b, vid, host, sizes)  # noqa: E731
            self.fallbacks = 0
            firsts = {first for first, _ in b.groups}
            t = -1
            while t + 1 < len(b.steps):
                t += 1
                step = b.steps[t]
                if isinstance(step, BranchStep):  # the condition decides which branch's steps run
                    if not bool(np.asarray(fetch(int(step.reads[0]))).reshape(-1)[0]):
                        t = step.else_at - 1
                    continue
                if isinstance(step, YieldStep):  # the branch's values become the ember.if's results
                    sizes.bind(t, {int(w): sizes.value(int(r)).shape for r, w in zip(step.reads, step.writes)})
                    for r, w in zip(step.reads, step.writes):
                        self._write(b, int(w), np.array(fetch(int(r)), copy=True), host, sizes)
                    t = step.next - 1
                    continue
                if isinstance(step, SizeStep):  # bind the sizes its op's kernels are launched with
                    index = step.ops[0]
                    sizes.bind(t, self.ops.sizes_from_shapes(index, lambda vid: sizes.value(vid).shape)
                               if step.source == "shapes" else
                               self.ops.sizes(index, fetch, lambda vid: sizes.value(vid).shape, sizes.env))
                    continue
                if isinstance(step, LaunchStep):
                    # As on the GPU: its sizes evaluated and checked, its run-time guards decided (where
                    # one fails, the CUDA context runs the op on the host); here the op runs on the
                    # interpreter either way, once, at its last launch.
                    if not sizes.runs_on_device(t) and t in firsts:
                        self.fallbacks += 1
                    ops = run_at.get(t, [])
                else:
                    ops = list(step.ops)
                began = time.perf_counter()
                for index in ops:
                    if index in done:
                        continue
                    done.add(index)
                    results = self.ops.run(index, fetch, sizes.env)
                    if isinstance(step, HostStep) and step.binds:
                        sizes.bind(t, {vid: np.shape(out) for vid, out in results})
                    for vid, out in results:
                        self._write(b, vid, out, host, sizes)
                if self.layer_times is not None and isinstance(step, LaunchStep):
                    ms = (time.perf_counter() - began) * 1000.0
                    self.layer_times.record(t, step.kernel, lambda ms=ms: ms)
            if self.layer_times is not None:
                self.layer_times.end_run()
            self.run_symbols = {k: v for k, v in sizes.env.items() if k in b.runtime}
            results = {spec.name: detach(np.asarray(self._read(b, spec.value, host, sizes))
                                         if b.values[spec.value].kind != "host" else host.get(spec.value))
                       for spec in engine.outputs}
            for name, target in given_out.items():
                value = np.asarray(results[name])
                write_into(target, value, name)
                results[name] = target
            return results

    def _write(self, b: Any, vid: int, out: Any, host: dict[int, Any], sizes: Any) -> None:
        info = b.values[vid]
        if info.in_arena:
            arr = check_result(b, vid, out)
            if arr.size:
                np.copyto(self._slot(b, vid, writable=True), arr)
        elif info.kind == "dynamic":  # sized at run time: a buffer of its own for this run
            host[vid] = detach(check_result(b, vid, out, sizes.value(vid)))
        else:
            host[vid] = detach(out)


def write_into(target: Any, value: np.ndarray, name: str) -> None:
    """Copy an output into the caller's numpy array (`out=`), which must fit it exactly."""
    from ember.runtime.specs import EngineInputError
    if not isinstance(target, np.ndarray):
        raise EngineInputError(f"out= {name!r}: a {type(target).__name__} on the host arena; give a numpy array")
    if tuple(target.shape) != tuple(value.shape) or target.dtype != value.dtype:
        raise EngineInputError(f"out= {name!r}: {target.dtype}{list(target.shape)}, the output is "
                               f"{value.dtype}{list(value.shape)}")
    if not target.flags.c_contiguous or not target.flags.writeable:
        raise EngineInputError(f"out= {name!r}: must be C-contiguous and writable")
    np.copyto(target, value)


def _to_host(x: Any) -> Any:
    if hasattr(x, "__cuda_array_interface__") or (hasattr(x, "__dlpack_device__") and not isinstance(x, np.ndarray)
                                                  and _dlpack_device_type(x) not in (1, 3)):
        from ember.runtime.specs import EngineInputError
        raise EngineInputError("a device array was given to the host-arena executor; pass a numpy array "
                               "(or run with device='cuda')")
    return x


def _dlpack_device_type(x: Any) -> int:
    try:
        return int(x.__dlpack_device__()[0])
    except Exception:
        return 1


_DTYPE_NAMES: set[str] = set()


def _dtype_names() -> set[str]:
    if not _DTYPE_NAMES:
        from ember.ir.types import DTYPES
        _DTYPE_NAMES.update(DTYPES)
    return _DTYPE_NAMES


__all__ = ["HostContext", "HostOps", "detach", "check_result"]
