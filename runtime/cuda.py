"""The CUDA execution context, on the driver API through cuda-python (`cuda.bindings.driver`).

Per engine and GPU, once (`DeviceEngine`, shared by every context): the primary
context is retained, each kernel's cubin for the device's architecture is loaded
(or its PTX, JIT-compiled by the driver), and the weights, constants and the
launches' metadata arrays are uploaded. Per context (`CudaContext`): one arena of
the planned size and a stream (the caller's, or its own).

`run` is asynchronous on the context's stream. numpy inputs are copied into their
arena slots; device arrays (torch, CuPy, anything with DLPack or the CUDA array
interface) are read where they are, after their producer's pending work. Launch
steps launch their kernel with arguments packed by parameter kind (pointers to the
value's buffer, its arena slot, a metadata array or a scratch slot; i64, i32, f32
scalars). Host steps copy what they read to the host, run the op on the reference
interpreter (runtime/host.py) and copy what they write back. The stretches of
launches between host steps are captured as CUDA graphs on the first run and
replayed after, as long as the device pointers of the inputs read in place are the
same (an engine's shapes are fixed when it is built). Outputs come back as numpy
arrays (the stream is synchronized), or, when the inputs were device arrays, as
device arrays of the same library (torch tensors for torch inputs, CuPy arrays for
CuPy) or as `DeviceArray`s, ordered after the run on the library's current stream,
with no host synchronization.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any, Mapping, Sequence

import numpy as np

from ember.errors import EmberError
from ember.runtime.specs import EngineInputError, arch_number, cubin_runs_on, ptx_runs_on, view_of
from ember.runtime.engine_format import EngineFormatError
from ember.runtime.host import HostOps, check_result, detach
from ember.runtime.profiling import LayerTimes
from ember.ir.program import BranchStep, HostStep, LaunchStep, SizeStep, ValueSpec, YieldStep, tensormap_layout

_CTYPES = {"ptr": ctypes.c_void_p, "i64": ctypes.c_longlong, "i32": ctypes.c_int, "f32": ctypes.c_float,
           "tensormap": None}   # a CUtensorMap, passed by value through its getPtr()
TENSOR_MAPS = 512   # encoded tensor maps a context keeps (per buffer address and layout)
_TORCH_DTYPES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16", "f64": "float64", "i64": "int64",
                 "i32": "int32", "i16": "int16", "i8": "int8", "u8": "uint8", "u16": "uint16", "u32": "uint32",
                 "u64": "uint64", "bool": "bool", "c64": "complex64", "c128": "complex128",
                 "f8e4m3fn": "float8_e4m3fn", "f8e5m2": "float8_e5m2", "f8e4m3fnuz": "float8_e4m3fnuz",
                 "f8e5m2fnuz": "float8_e5m2fnuz"}
GRAPH_CACHE = 8  # executable graphs kept per segment (one per set of in-place input pointers)


class CudaError(EmberError, RuntimeError):
    """A CUDA driver call that failed: the call and its CUresult."""

    def __init__(self, call: str, result: Any = None, detail: str = "") -> None:
        self.call, self.result = call, result
        name = _error_name(result) if result is not None else ""
        text = f"{call} failed"
        if name:
            text += f": {name}"
        if detail:
            text += f" ({detail})"
        super().__init__(text)


_driver: Any = None
_state_lock = threading.Lock()
_available: tuple[bool, str] | None = None


def _drv() -> Any:
    global _driver
    if _driver is None:
        from cuda.bindings import driver
        _driver = driver
    return _driver


def _error_name(err: Any) -> str:
    try:
        d = _drv()
        e1, name = d.cuGetErrorName(err)
        e2, text = d.cuGetErrorString(err)
        name = name.decode() if isinstance(name, bytes) else str(name)
        text = text.decode() if isinstance(text, bytes) else str(text)
        return f"{name} ({text})" if int(e2) == 0 and text else name
    except Exception:
        return str(err)


def _call(name: str, *args: Any, detail: str = "") -> Any:
    """Call driver.<name>; raise CudaError unless CUDA_SUCCESS; return the results after the status."""
    out = getattr(_drv(), name)(*args)
    err = out[0] if isinstance(out, tuple) else out
    if int(err) != 0:
        raise CudaError(name, err, detail)
    if not isinstance(out, tuple) or len(out) == 1:
        return None
    return out[1] if len(out) == 2 else out[1:]


def encode_tensor_map(ptr: int, value: Sequence[Any]) -> Any:
    """A CUtensorMap for a tensormap argument (ir/program.py) at device address `ptr`: tiled, the
    box of the argument, 128-byte swizzle, out-of-bounds elements read as zeros. An address that is
    not 16-byte aligned (a caller's array at an odd offset) gets an empty map: the kernel checks
    the alignment itself and takes its unaligned form, which reads no map."""
    d = _drv()
    _, rank, element, dims, strides, box = tensormap_layout(value)
    if ptr % 16 or not ptr or any(int(x) <= 0 for x in dims):
        return d.CUtensorMap()
    kinds = {"f16": d.CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
             "bf16": d.CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_BFLOAT16}
    return _call("cuTensorMapEncodeTiled", kinds[element], rank, ptr, [d.cuuint64_t(int(x)) for x in dims],
                 [d.cuuint64_t(int(x)) for x in strides], [d.cuuint32_t(int(x)) for x in box],
                 [d.cuuint32_t(1)] * rank, d.CUtensorMapInterleave.CU_TENSOR_MAP_INTERLEAVE_NONE,
                 d.CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_128B,
                 d.CUtensorMapL2promotion.CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                 d.CUtensorMapFloatOOBfill.CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
                 detail=f"a tensor map of {element}{list(dims)} at {ptr:#x}")


def available() -> tuple[bool, str]:
    """(True, "") when a CUDA GPU can be used here, else (False, why not)."""
    global _available
    with _state_lock:
        if _available is not None:
            return _available
        try:
            d = _drv()
        except ImportError as err:
            _available = (False, f"cuda-python is not installed: {err}")
            return _available
        try:
            (err,) = d.cuInit(0)
        except RuntimeError as err:  # the bindings could not load libcuda
            _available = (False, f"no CUDA driver: {err}")
            return _available
        if int(err) != 0:
            _available = (False, f"cuInit: {_error_name(err)}")
            return _available
        err, count = d.cuDeviceGetCount()
        if int(err) != 0 or count == 0:
            _available = (False, "no CUDA device")
            return _available
        _available = (True, "")
        return _available


def device_count() -> int:
    """How many CUDA GPUs this process sees (0 without a driver or a GPU)."""
    ok, _ = available()
    return int(_call("cuDeviceGetCount")) if ok else 0


def device_info(index: int = 0) -> dict[str, Any] | None:
    """The GPU's architecture ("sm_90"), name and driver version (13000 for 13.0), or None without one."""
    ok, _ = available()
    if not ok:
        return None
    d = _drv()
    dev = _call("cuDeviceGet", index)
    attr = d.CUdevice_attribute
    major = _call("cuDeviceGetAttribute", attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev)
    minor = _call("cuDeviceGetAttribute", attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev)
    name = _call("cuDeviceGetName", 256, dev)
    name = name.split(b"\0", 1)[0].decode(errors="replace") if isinstance(name, bytes) else str(name)
    return {"arch": f"sm_{major}{minor}", "driver": int(_call("cuDriverGetVersion")), "name": name,
            "index": index}


def multiprocessor_count(index: int = 0) -> int:
    """The streaming multiprocessors of GPU `index` (a timing cache keys on it)."""
    d = _drv()
    dev = _call("cuDeviceGet", index)
    return int(_call("cuDeviceGetAttribute", d.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev))


def stream_handle(stream: Any) -> int:
    """A CUstream handle (int) from an int, a driver.CUstream, a torch or CuPy stream, or a `__cuda_stream__`."""
    if stream is None:
        return 0
    if isinstance(stream, int):
        return stream
    if hasattr(stream, "__cuda_stream__"):
        return int(stream.__cuda_stream__()[1])
    if hasattr(stream, "cuda_stream"):  # torch.cuda.Stream
        return int(stream.cuda_stream)
    if hasattr(stream, "ptr") and not hasattr(stream, "getPtr"):  # cupy.cuda.Stream
        return int(stream.ptr)
    try:
        return int(stream)  # driver.CUstream
    except (TypeError, ValueError):
        raise EngineInputError(f"stream {stream!r}: expected a CUDA stream handle, a driver.CUstream, or a "
                               "torch/CuPy stream") from None


def _align(n: int, a: int = 256) -> int:
    return (n + a - 1) // a * a


class DeviceEngine:
    """An engine's state on one GPU: kernels loaded, weights, constants and metadata uploaded.
    Made once per engine and device (Engine.device_state) and shared by its contexts."""

    def __init__(self, engine: Any, index: int = 0) -> None:
        ok, reason = available()
        if not ok:
            raise CudaError("cuInit", None, f"no CUDA GPU here: {reason}")
        self.engine, self.index = engine, index
        self.device = _call("cuDeviceGet", index)
        self.context = _call("cuDevicePrimaryCtxRetain", self.device)
        # The primary context is released only when this state is unreachable *and* no context
        # on it is open: the collector finalizes an engine, this state and its contexts (one
        # cycle) in any order, and the driver may hang destroying a context's graphs after the
        # release has reset the primary context (seen on an H100).
        self._open_contexts = 0
        self._unreachable = False
        self.released = False
        self.activate()
        info = device_info(index)
        assert info is not None
        self.arch, self.driver_version, self.name = info["arch"], info["driver"], info["name"]
        engine.check_arch(self.arch, self.driver_version)
        self._allocations: list[int] = []
        self.modules: list[Any] = []
        self.functions: dict[str, Any] = {}
        self._shared_opt_in: dict[str, int] = {}
        self._load_kernels()
        self.weight_ptr: dict[str, int] = {}
        self._upload_weights()
        self._host_ops: HostOps | None = None

    def context_opened(self) -> None:
        self._open_contexts += 1

    def context_closed(self) -> None:
        self._open_contexts -= 1
        self._release_if_done()

    def _release_if_done(self) -> None:
        if self.released or not self._unreachable or self._open_contexts > 0:
            return
        self.released = True
        try:
            self.close()
            _drv().cuDevicePrimaryCtxRelease(self.device)
        except Exception:
            pass

    @property
    def host_ops(self) -> HostOps:
        if self._host_ops is None:
            self._host_ops = HostOps(self.engine)
        return self._host_ops

    def allow_shared(self, name: str, nbytes: int) -> None:
        """Let kernel `name` take `nbytes` of dynamic shared memory (above 48 KB needs an opt-in)."""
        if nbytes <= max(48 * 1024, self._shared_opt_in.get(name, 0)):
            return
        d = _drv()
        _call("cuFuncSetAttribute", self.functions[name],
              d.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, nbytes,
              detail=f"kernel {name}: {nbytes} bytes of dynamic shared memory")
        self._shared_opt_in[name] = nbytes

    def activate(self) -> None:
        """Make the engine's (primary) context current on this thread."""
        _call("cuCtxSetCurrent", self.context)

    def _image(self, k: Any) -> tuple[bytes, str]:
        # The newest cubin that runs here; of sm_90 and sm_90a on an sm_90 GPU, sm_90a's (wgmma).
        fits = [a for a in k.cubins if cubin_runs_on(a, self.arch)]
        if fits:
            best = max(fits, key=arch_number)
            return k.cubins[best], best
        if k.ptx and k.ptx_arch and ptx_runs_on(k.ptx_arch, self.arch):
            ptx = bytes(k.ptx)
            return (ptx if ptx.endswith(b"\0") else ptx + b"\0"), k.ptx_arch
        raise EngineFormatError(f"{self.engine.source}: kernel {k.name} has no cubin or PTX for {self.arch}")

    def _load_kernels(self) -> None:
        for name in sorted(self.engine.kernels):
            k = self.engine.kernels[name]
            image, form = self._image(k)
            module = _call("cuModuleLoadData", image, detail=f"kernel {name} ({form})")
            self.modules.append(module)
            fn = _call("cuModuleGetFunction", module, name.encode(), detail=f"kernel {name}")
            self.functions[name] = fn

    def alloc(self, nbytes: int) -> int:
        if nbytes <= 0:
            return 0
        ptr = int(_call("cuMemAlloc", nbytes, detail=f"{nbytes} bytes"))
        return ptr

    def free(self, ptr: int) -> None:
        if ptr and not self.released:   # after the release, the memory went with the context
            try:
                self.activate()
                _call("cuMemFree", ptr)
            except Exception:
                pass

    def _upload_weights(self) -> None:
        placed = []
        total = 0
        for name in sorted(self.engine.weights):
            arr = self.engine.weights[name]
            if arr.dtype == object or arr.nbytes == 0:
                continue
            placed.append((name, total, arr))
            total += _align(arr.nbytes)
        base = self.alloc(total)
        if base:
            self._allocations.append(base)
        for name, off, arr in placed:
            host = np.asarray(arr, order="C")
            _call("cuMemcpyHtoD", base + off, host.ctypes.data, host.nbytes, detail=f"weight {name}")
            self.weight_ptr[name] = base + off

    def close(self) -> None:
        try:
            self.activate()
        except Exception:
            return
        for ptr in self._allocations:
            self.free(ptr)
        self._allocations = []
        for m in self.modules:
            try:
                _call("cuModuleUnload", m)
            except Exception:
                pass
        self.modules = []

    def __del__(self) -> None:
        if not hasattr(self, "_open_contexts"):   # __init__ failed before the primary context was retained
            return
        self._unreachable = True
        self._release_if_done()


class _ShapeState:
    """What a context keeps for one shape: the bound program (runtime/binding.py), its launch
    segments and packed arguments, its metadata arrays on the device and its CUDA graphs."""

    def __init__(self, ctx: "CudaContext", b: Any) -> None:
        self.b = b
        steps = b.steps
        self.segments: list[tuple[int, int]] = []
        for t, st in enumerate(steps):
            if not isinstance(st, LaunchStep):
                continue
            if self.segments and self.segments[-1][1] == t - 1:
                self.segments[-1] = (self.segments[-1][0], t)
            else:
                self.segments.append((t, t))
        self.segment_at = {first: (first, last) for first, last in self.segments}
        self.scratch_first = {first for first, _ in b.groups}
        self.group_of = {t: (first, last) for first, last in b.groups for t in range(first, last + 1)}
        # Launches sized over run-time symbols, or reading or writing a value sized at run time
        # (its buffer is allocated per run), are packed and launched when reached, not captured.
        self.dynamic_steps = {t for t, st in enumerate(steps) if isinstance(st, LaunchStep) and not self._static(st)}
        self.dynamic = {seg for seg in self.segments if any(t in self.dynamic_steps for t in range(seg[0], seg[1] + 1))}
        self.kernel_params = b.program.kernel_params
        self.meta_ptr: dict[tuple[int, ...], int] = {}
        self.meta_block = 0
        self.graphs: dict[tuple[int, tuple], Any] = {}
        self.graph_order: dict[int, list[tuple]] = {}
        self._upload_meta(ctx)
        for t, st in enumerate(steps):
            if isinstance(st, LaunchStep) and t not in self.dynamic_steps:
                ctx.dev.allow_shared(st.kernel, int(st.shared))
        self.params = [ctx._static_params(self, t, st) if isinstance(st, LaunchStep) and t not in self.dynamic_steps
                       else None for t, st in enumerate(steps)]
        self.reads_inputs = {seg: tuple(sorted(self._inputs_read(seg))) for seg in self.segments}

    def _static(self, step: LaunchStep) -> bool:
        """Whether a launch step is the same at every run of this shape (sizes bound, no value
        sized at run time among its arguments)."""
        if not step.is_bound:
            return False
        return not any(self.b.values[self.b.root(int(a.value))].kind == "dynamic"
                       for a in step.args if a.kind == "value")

    def _upload_meta(self, ctx: "CudaContext") -> None:
        metas: list[tuple[int, ...]] = []
        for t, step in enumerate(self.b.steps):
            if not isinstance(step, LaunchStep) or t in self.dynamic_steps:
                continue
            for arg in step.args:
                if arg.kind == "meta":
                    key = tuple(int(x) for x in arg.value)
                    if key not in self.meta_ptr:
                        self.meta_ptr[key] = -1
                        metas.append(key)
        offsets, total = [], 0
        for key in metas:
            offsets.append(total)
            total += _align(max(8 * len(key), 8), 16)
        blob = np.zeros(total // 8, dtype=np.int64)
        for key, off in zip(metas, offsets):
            blob[off // 8:off // 8 + len(key)] = key
        self.meta_block = ctx.dev.alloc(total)
        if self.meta_block:
            _call("cuMemcpyHtoD", self.meta_block, blob.ctypes.data, blob.nbytes, detail="kernel metadata")
        for key, off in zip(metas, offsets):
            self.meta_ptr[key] = self.meta_block + off

    def _inputs_read(self, seg: tuple[int, int]) -> set[int]:
        found = set()
        for t in range(seg[0], seg[1] + 1):
            for kind, vid, _ in self.params[t] or []:
                if kind == "input":
                    found.add(vid)
        return found

    def release(self, dev: "DeviceEngine") -> None:
        d = _drv()
        for exe in self.graphs.values():
            try:
                d.cuGraphExecDestroy(exe)
            except Exception:
                pass
        self.graphs = {}
        if self.meta_block:
            dev.free(self.meta_block)
            self.meta_block = 0


class CudaContext:
    """An execution context: an arena and a stream on one GPU; see the module docstring.

    Each run binds the engine's program at the input shapes; per shape the context keeps its
    packed arguments, metadata and CUDA graphs, for the `graph_cache` shapes used last (the
    least recently used goes). The arena is sized for the largest plan of the profiles'
    MAX shapes and grows if a shape needs more (its graphs are then captured again)."""

    device = "cuda"

    def __init__(self, engine: Any, stream: Any = None, graphs: bool = True, device_index: int = 0,
                 graph_cache: int = 8, poison: bool = False) -> None:
        from collections import OrderedDict
        self.engine = engine
        self.dev: DeviceEngine = engine.device_state(device_index)
        self.dev.context_opened()
        self._open = True
        self.dev.activate()
        self._own_stream = stream is None
        if stream is None:
            flags = _drv().CUstream_flags.CU_STREAM_NON_BLOCKING
            self.stream = int(_call("cuStreamCreate", int(flags)))
        else:
            self.stream = stream_handle(stream)
        self.graphs = graphs and self.stream not in (0, 1)  # the legacy stream cannot be captured
        self.layer_times: LayerTimes | None = None   # set to time each launch (runtime/profiling.py)
        self._out: dict[str, Any] = {}   # this run's out= arrays (run sets it under the lock)
        self._event: Any = None          # for ordering streams (made once)
        if graph_cache < 1:
            raise EngineInputError(f"graph_cache must be at least 1, got {graph_cache}")
        self.graph_cache = graph_cache
        self.arena_bytes = engine.max_arena_bytes()
        self.arena = self.dev.alloc(self.arena_bytes)
        # Debugging and the GPU tests: fill the arena with 0xFF (NaN in every float type) before
        # each run, so a kernel that leaves an output element unwritten cannot pass by luck.
        self.poison = poison
        self._lock = threading.Lock()
        self._states: OrderedDict[tuple, _ShapeState] = OrderedDict()
        self._tensor_maps: OrderedDict[tuple, Any] = OrderedDict()   # (address, layout) -> CUtensorMap
        self.graph_launches = 0
        self.captures = 0
        self.fallbacks = 0       # last run: launch groups whose run-time guards failed, run on the host
        self.run_symbols: dict[str, int] = {}  # last run: the run-time symbols' values

    @property
    def segments(self) -> list[tuple[int, int]]:
        """The launch segments of the shape run last."""
        return next(reversed(self._states.values())).segments if self._states else []

    @property
    def graph_segments(self) -> list[tuple[int, int]]:
        """The segments of the shape run last that replay as CUDA graphs (the rest are sized at run
        time and launched kernel by kernel)."""
        if not self._states:
            return []
        state = next(reversed(self._states.values()))
        return [seg for seg in state.segments if seg not in state.dynamic]

    def _state(self, b: Any) -> _ShapeState:
        state = self._states.get(b.key)
        if state is not None and state.b is b:
            self._states.move_to_end(b.key)
            return state
        if state is not None:
            self._drop(b.key)
        if b.plan.arena_bytes > self.arena_bytes:
            _call("cuStreamSynchronize", self.stream, detail="before growing the arena")
            for key in list(self._states):
                self._drop(key)
            self.dev.free(self.arena)
            self.arena_bytes = b.plan.arena_bytes
            self.arena = self.dev.alloc(self.arena_bytes)
        state = _ShapeState(self, b)
        self._states[b.key] = state
        while len(self._states) > self.graph_cache:
            self._drop(next(iter(self._states)))
        return state

    def _drop(self, key: tuple) -> None:
        state = self._states.pop(key)
        _call("cuStreamSynchronize", self.stream, detail="before releasing a shape's graphs")
        state.release(self.dev)

    # -- launch arguments ------------------------------------------------------------------
    def _static_params(self, state: _ShapeState, t: int, step: LaunchStep) -> list[tuple[str, Any, Any]]:
        """Per argument: ("ptr", value) fixed, ("input", value id, fallback pointer), or a scalar."""
        b = state.b
        params = state.kernel_params[step.kernel]
        if len(params) != len(step.args):
            raise EngineFormatError(f"{self.engine.source}: step {t}: {len(step.args)} arguments for "
                                    f"{len(params)} parameters of {step.kernel}")
        out: list[tuple[str, Any, Any]] = []
        for a, (p, arg) in enumerate(zip(params, step.args)):
            kind = p.kind
            ctype = _CTYPES[kind]
            if arg.kind == "value":
                vid = b.root(int(arg.value))
                info = b.values[vid]
                if info.kind == "input" and info.in_arena and info.nbytes:
                    out.append(("input", vid, ctype))
                else:
                    out.append(("ptr", self._value_ptr(b, int(arg.value)), ctype))
            elif arg.kind == "scratch":
                out.append(("ptr", self.arena + b.plan.scratch[(t, a)], ctype))
            elif arg.kind == "meta":
                out.append(("ptr", state.meta_ptr[tuple(int(x) for x in arg.value)], ctype))
            elif arg.kind == "tensormap":   # encoded per address at launch: the layout's key once here
                out.append(("tmap", (tensormap_layout(arg.value)[0], tuple(int(x) for x in arg.value)), ctype))
            else:
                out.append(("scalar", float(arg.value) if kind == "f32" else int(arg.value), ctype))
        return out

    def _tensor_map(self, b: Any, vid: int, layout: tuple[int, ...], overrides: Mapping[int, int] | None) -> Any:
        """The TMA descriptor of a tensormap argument (its value and bound `layout`) for the buffer
        it describes now (arena, weight or the caller's array): encoded once per address and
        layout, so a new arena or new input pointers (and the CUDA graphs captured for them) get
        their own."""
        ptr = int(self._value_ptr(b, vid, overrides))
        key = (ptr, layout)
        found = self._tensor_maps.get(key)
        if found is None:
            found = encode_tensor_map(ptr, layout)
            self._tensor_maps[key] = found
            while len(self._tensor_maps) > TENSOR_MAPS:   # (captured graphs hold their own copies)
                self._tensor_maps.popitem(last=False)
        return found

    def _value_ptr(self, b: Any, vid: int, overrides: Mapping[int, int] | None = None) -> int:
        """The device address of value `vid`'s buffer (views: their source's, windows where they
        start in it)."""
        base = self._root_ptr(b, b.root(vid), overrides)
        offset = b.offset(vid)
        return base + offset if base and offset else base

    def _root_ptr(self, b: Any, root: int, overrides: Mapping[int, int] | None = None) -> int:
        engine = self.engine
        if overrides and root in overrides:
            return overrides[root]
        info = b.values[root]
        if info.is_data:
            name = info.weight
            if name not in self.dev.weight_ptr:
                if engine.weights[name].nbytes == 0:
                    return 0
                raise EngineFormatError(f"{engine.source}: weight {name!r} has no device copy (element type "
                                        f"{info.dtype})")
            return self.dev.weight_ptr[name]
        if info.in_arena:
            return self.arena + b.plan.offsets[root] if info.nbytes else 0
        if info.kind == "dynamic":
            if overrides is None or root not in overrides:
                raise EngineFormatError(f"{engine.source}: value {info.name} is read before any step computed it")
            return overrides[root]
        raise EngineFormatError(f"{engine.source}: value {info.name} lives on the host; a kernel cannot read it")

    def _kernel_params(self, state: _ShapeState, t: int, overrides: Mapping[int, int]) -> tuple[tuple, tuple]:
        values, types = [], []
        for kind, v, ctype in state.params[t]:  # type: ignore[union-attr]
            if kind == "input":
                values.append(overrides.get(v) or (self.arena + state.b.plan.offsets[v]))
            elif kind == "tmap":
                values.append(self._tensor_map(state.b, v[0], v[1], overrides))
            else:
                values.append(v)
            types.append(ctype)
        return tuple(values), tuple(types)

    # -- running ---------------------------------------------------------------------------
    def _enqueue(self, state: _ShapeState, seg: tuple[int, int], overrides: Mapping[int, int]) -> None:
        steps = state.b.steps
        profile = self.layer_times
        for t in range(seg[0], seg[1] + 1):
            step = steps[t]
            if t in state.scratch_first:
                for off, nbytes in state.b.plan.scratch_slots.get(t, []):
                    _call("cuMemsetD8Async", self.arena + off, 0, nbytes, self.stream)
            grid, block = step.grid, step.block
            timer = StreamTimer(self.stream, self.dev) if profile is not None else None
            if timer is not None:
                timer.start()
            _call("cuLaunchKernel", self.dev.functions[step.kernel], int(grid[0]), int(grid[1]), int(grid[2]),
                  int(block[0]), int(block[1]), int(block[2]), int(step.shared), self.stream,
                  self._kernel_params(state, t, overrides), 0, detail=f"step {t}: kernel {step.kernel}")
            if timer is not None and profile is not None:
                timer.stop()
                profile.record(t, step.kernel, timer.elapsed_ms)

    def _capturing(self) -> bool:
        d = _drv()
        status = _call("cuStreamIsCapturing", self.stream)
        return status != d.CUstreamCaptureStatus.CU_STREAM_CAPTURE_STATUS_NONE

    def _run_segment(self, state: _ShapeState, seg: tuple[int, int], overrides: Mapping[int, int],
                     capturing: bool) -> None:
        if not self.graphs or capturing or self.layer_times is not None:
            self._enqueue(state, seg, overrides)
            return
        key = tuple((vid, overrides.get(vid, 0)) for vid in state.reads_inputs[seg])
        exe = state.graphs.get((seg[0], key))
        if exe is None:
            d = _drv()
            _call("cuStreamBeginCapture", self.stream, d.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            try:
                self._enqueue(state, seg, overrides)
            except BaseException:
                d.cuStreamEndCapture(self.stream)
                raise
            graph = _call("cuStreamEndCapture", self.stream)
            try:
                exe = _call("cuGraphInstantiate", graph, 0)
            finally:
                d.cuGraphDestroy(graph)
            self.captures += 1
            order = state.graph_order.setdefault(seg[0], [])
            if len(order) >= GRAPH_CACHE:
                old = state.graphs.pop((seg[0], order.pop(0)))
                d.cuGraphExecDestroy(old)
            order.append(key)
            state.graphs[(seg[0], key)] = exe
        _call("cuGraphLaunch", exe, self.stream)
        self.graph_launches += 1

    def _wait_on(self, streams: Sequence[int]) -> None:
        """Order our stream after the work already queued on `streams`."""
        for s in streams:
            self._order(after=s, waiter=self.stream)

    def _signal(self, streams: Sequence[int]) -> None:
        """Order `streams` after the work queued on ours so far."""
        for s in streams:
            self._order(after=self.stream, waiter=s)

    def _order(self, after: int, waiter: int) -> None:
        """`_order` with this context's one event, made once (no event created per run)."""
        if after != waiter and self._event is None:
            self._event = _call("cuEventCreate", int(_drv().CUevent_flags.CU_EVENT_DISABLE_TIMING))
        _order(after, waiter, self._event)

    def synchronize(self) -> None:
        self.dev.activate()
        _call("cuStreamSynchronize", self.stream)

    def run(self, inputs: Mapping[str, Any], out: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Run the engine once on this context's stream (see the module docstring); outputs go into
        `out`'s arrays where given (numpy or device arrays: see Engine.run)."""
        from ember.runtime import dlpack
        engine = self.engine
        engine.check_inputs(inputs)
        given_out = engine.check_out(out)
        with self._lock:
            self._out = given_out   # read by _outputs, under the same lock
            self.dev.activate()
            views: dict[str, Any] = {}
            given: dict[str, Any] = {}
            for spec in engine.inputs:
                x = inputs[spec.name]
                view = dlpack.device_view(x, self.stream) if dlpack.is_device_array(x) else None
                if view is not None:
                    engine.check_input(spec, view.dtype, view.shape)
                    views[spec.name] = view
                else:
                    given[spec.name] = engine.host_input(spec, x)
            b = engine.bind({**{n: v.shape for n, v in views.items()},
                             **{n: np.shape(x) for n, x in given.items() if hasattr(x, "shape")}})
            state = self._state(b)
            if self.poison and b.plan.arena_bytes:
                _call("cuMemsetD8Async", self.arena, 0xFF, b.plan.arena_bytes, self.stream)
            overrides: dict[int, int] = {}
            keep: list[Any] = []
            host: dict[int, Any] = {}
            producers: set[int] = set()
            frameworks: list[str] = []
            device_mode = False
            for spec in engine.inputs:
                info = b.values[spec.value]
                view = views.get(spec.name)
                if view is not None:
                    device_mode = True
                    if not view.contiguous:
                        raise EngineInputError(f"input {spec.name!r}: a strided device array; pass a contiguous one "
                                               "(.contiguous() in torch, cupy.ascontiguousarray)")
                    if view.device_id is not None and view.device_id != self.dev.index:
                        raise EngineInputError(f"input {spec.name!r} is on cuda:{view.device_id}; this context runs "
                                               f"on cuda:{self.dev.index}")
                    if not info.in_arena:
                        raise EngineInputError(f"input {spec.name!r} ({spec.dtype}) must be given as a host array")
                    overrides[spec.value] = view.ptr
                    keep.append(view)
                    if view.stream is not None:
                        producers.add(view.stream)
                    frameworks.append(view.framework)
                    continue
                x = given[spec.name]
                if info.in_arena:
                    arr = np.asarray(x, order="C")
                    keep.append(arr)
                    if arr.nbytes:
                        _call("cuMemcpyHtoDAsync", self._value_ptr(b, spec.value), arr.ctypes.data, arr.nbytes,
                              self.stream, detail=f"input {spec.name}")
                else:
                    host[spec.value] = x
            self._wait_on(sorted(producers))
            capturing = self._capturing()
            steps = b.steps
            run = _Run(engine.run_sizes(b), overrides, host, keep)
            self.fallbacks = 0
            try:
                t = 0
                while t < len(steps):
                    if isinstance(steps[t], LaunchStep):
                        seg = state.segment_at[t]
                        if seg in state.dynamic:
                            self._run_dynamic(state, seg, run)
                        else:
                            self._run_segment(state, seg, overrides, capturing)
                        t = seg[1] + 1
                        continue
                    if capturing:
                        raise CudaError("cuStreamBeginCapture", None, "the stream is being captured, and this engine "
                                        "has host steps, which cannot be captured")
                    if isinstance(steps[t], BranchStep):
                        t = t + 1 if self._condition(b, t, run) else steps[t].else_at
                        continue
                    if isinstance(steps[t], YieldStep):
                        self._yield(b, t, run)
                        t = steps[t].next
                        continue
                    if isinstance(steps[t], SizeStep):
                        self._size_step(b, t, run)
                    else:
                        step = steps[t]
                        self._on_host(b, t, step.ops, step.reads, run)
                    t += 1
                self.run_symbols = {k: v for k, v in run.sizes.env.items() if k in b.runtime}
                if self.layer_times is not None:
                    self.layer_times.end_run()
                return self._outputs(b, overrides, host, device_mode, frameworks, run)
            finally:
                run.free(self)

    def _fetch(self, b: Any, vid: int, overrides: Mapping[int, int], host: Mapping[int, Any],
               run: "_Run | None" = None) -> tuple[Any, bool]:
        """A value on the host: (array, whether a copy was queued that the stream must finish first)."""
        engine = self.engine
        info = b.values[vid] if run is None else run.sizes.value(vid)
        if info.kind == "view":
            base, pending = self._fetch(b, b.root(vid), overrides, host, run)
            return view_of(base, info.shape, info.dtype, info.offset), pending
        if info.is_data:
            return engine.weights[info.weight], False
        if not _on_device(info):
            if vid not in host:
                raise EngineFormatError(f"{engine.source}: value {info.name} is read before any step computed it")
            return host[vid], False
        from ember.ir.types import DTYPES
        arr = np.empty(info.shape, DTYPES[info.dtype].np_dtype)
        if arr.nbytes:
            _call("cuMemcpyDtoHAsync", arr.ctypes.data, self._value_ptr(b, vid, overrides), arr.nbytes, self.stream)
            return arr, True
        return arr, False

    def _on_host(self, b: Any, t: int, ops: Sequence[int], reads: Sequence[int], run: "_Run") -> None:
        """Run `ops` on the reference interpreter: a host step, or a launch group whose run-time
        guards failed. What they read is copied to the host (the stream synchronized first),
        run-time symbols bound from what they give, and results on the device copied back."""
        overrides, host, keep = run.overrides, run.host, run.keep
        fetched: dict[int, Any] = {}
        pending = False
        for vid in reads:
            fetched[vid], p = self._fetch(b, int(vid), overrides, host, run)
            pending = pending or p
        if pending:
            _call("cuStreamSynchronize", self.stream, detail=f"before host step {t}")

        def fetch(vid: int) -> Any:
            if vid not in fetched:
                fetched[vid], p = self._fetch(b, vid, overrides, host, run)
                if p:
                    _call("cuStreamSynchronize", self.stream)
            return fetched[vid]

        runner = self.dev.host_ops
        binds = b.steps[t].binds if isinstance(b.steps[t], HostStep) else ()  # (a launch's op when a guard fails)
        for index in ops:
            results = runner.run(int(index), fetch, run.sizes.env)
            if binds:
                run.sizes.bind(t, {vid: np.shape(out) for vid, out in results})
            for vid, out in results:
                info = b.values[vid]
                if not _on_device(info):
                    host[vid] = detach(out)
                    continue
                arr = np.asarray(check_result(b, vid, out, run.sizes.value(vid)), order="C")
                keep.append(arr)
                if info.kind == "dynamic":
                    run.allocate(self, vid, arr.nbytes)
                if arr.nbytes:
                    _call("cuMemcpyHtoDAsync", self._value_ptr(b, vid, overrides), arr.ctypes.data, arr.nbytes,
                          self.stream, detail=f"host step {t}")

    def _condition(self, b: Any, t: int, run: "_Run") -> bool:
        """A branch step's condition, read back (the stream synchronized first)."""
        flag, pending = self._fetch(b, int(b.steps[t].reads[0]), run.overrides, run.host, run)
        if pending:
            _call("cuStreamSynchronize", self.stream, detail=f"before branch step {t}")
        return bool(np.asarray(flag).reshape(-1)[0])

    def _yield(self, b: Any, t: int, run: "_Run") -> None:
        """A yield step: the ember.if's results become the branch's values (sizes bound from
        theirs, buffers of run-time size allocated), copied on the stream."""
        step = b.steps[t]
        run.sizes.bind(t, {int(w): run.sizes.value(int(r)).shape for r, w in zip(step.reads, step.writes)})
        for r, w in zip(step.reads, step.writes):
            r, w = int(r), int(w)
            nbytes = int(run.sizes.value(w).nbytes)
            if b.values[b.root(w)].kind == "dynamic" and b.root(w) not in run.overrides:
                run.allocate(self, b.root(w), nbytes)
            if not nbytes:
                continue
            dst = self._value_ptr(b, w, run.overrides)
            source = b.values[b.root(r)]
            if _on_device(source) or source.is_data:
                _call("cuMemcpyDtoDAsync", dst, self._value_ptr(b, r, run.overrides), nbytes, self.stream,
                      detail=f"yield step {t}")
            else:  # kept on the host (a host step's result)
                arr, _ = self._fetch(b, r, run.overrides, run.host, run)
                arr = np.ascontiguousarray(arr)
                run.keep.append(arr)
                _call("cuMemcpyHtoDAsync", dst, arr.ctypes.data, nbytes, self.stream, detail=f"yield step {t}")

    def _size_step(self, b: Any, t: int, run: "_Run") -> None:
        """Read the operands of a size step's op back (a few scalars), and bind its sizes (or,
        for sizes that follow from shapes, run the op's type rule on this run's shapes)."""
        step = b.steps[t]
        if step.source == "shapes":
            shapes = self.dev.host_ops.sizes_from_shapes(step.ops[0], lambda vid: run.sizes.value(vid).shape)
            run.sizes.bind(t, shapes)
            return
        fetched: dict[int, Any] = {}
        pending = False
        for vid in step.reads:
            fetched[vid], p = self._fetch(b, int(vid), run.overrides, run.host, run)
            pending = pending or p
        if pending:
            _call("cuStreamSynchronize", self.stream, detail=f"before size step {t}")

        def fetch(vid: int) -> Any:
            if vid not in fetched:
                fetched[vid], p = self._fetch(b, vid, run.overrides, run.host, run)
                if p:
                    _call("cuStreamSynchronize", self.stream)
            return fetched[vid]
        run.sizes.bind(t, self.dev.host_ops.sizes(step.ops[0], fetch, lambda vid: run.sizes.value(vid).shape,
                                                  run.sizes.env))

    def _run_dynamic(self, state: _ShapeState, seg: tuple[int, int], run: "_Run") -> None:
        """Launch a segment whose sizes are known only now, kernel by kernel (no CUDA graph):
        each launch's sizes evaluated and checked, its outputs sized at run time allocated, its
        metadata uploaded; an op whose run-time guards fail runs on the host instead."""
        b = state.b
        ops = self.dev.host_ops
        for t in range(seg[0], seg[1] + 1):
            if t not in state.dynamic_steps:
                self._enqueue(state, (t, t), run.overrides)
                continue
            first, last = state.group_of[t]
            if not run.sizes.runs_on_device(t):
                if t == last:
                    self.fallbacks += 1
                    index = b.steps[t].ops[0]
                    reads = sorted({ops.ids[v] for v in ops.ops[index].reads() if v in ops.ids})
                    self._on_host(b, t, b.steps[t].ops, reads, run)
                continue
            step = run.sizes.step(t)
            for vid in step.writes:
                root = b.root(int(vid))
                if b.values[root].kind == "dynamic" and root not in run.overrides:
                    run.allocate(self, root, int(run.sizes.value(root).nbytes))
            if t == first:
                for off, nbytes in b.plan.scratch_slots.get(t, []):
                    _call("cuMemsetD8Async", self.arena + off, 0, nbytes, self.stream)
            values, types = [], []
            params = state.kernel_params[step.kernel]
            j = 0
            for a, (p, arg) in enumerate(zip(params, step.args)):
                types.append(_CTYPES[p.kind])
                if arg.kind == "value":
                    vid = b.root(int(arg.value))
                    info = b.values[vid]
                    if info.kind == "input" and info.in_arena and info.nbytes:
                        values.append(run.overrides.get(vid) or (self.arena + b.plan.offsets[vid]))
                    else:
                        values.append(self._value_ptr(b, int(arg.value), run.overrides))
                elif arg.kind == "scratch":
                    if not isinstance(b.steps[t].args[a].value, int):  # sized at run time
                        values.append(run.scratch(self, (first, j), _scratch_sizes(run.sizes, first, last, j)))
                    else:
                        values.append(self.arena + b.plan.scratch[(t, a)])
                    j += 1
                elif arg.kind == "meta":
                    values.append(run.meta(self, [int(x) for x in arg.value]))
                elif arg.kind == "tensormap":
                    layout = tuple(int(x) for x in arg.value)
                    values.append(self._tensor_map(b, tensormap_layout(layout)[0], layout, run.overrides))
                else:
                    values.append(float(arg.value) if p.kind == "f32" else int(arg.value))
            self.dev.allow_shared(step.kernel, int(step.shared))
            grid, block = step.grid, step.block
            _call("cuLaunchKernel", self.dev.functions[step.kernel], int(grid[0]), int(grid[1]), int(grid[2]),
                  int(block[0]), int(block[1]), int(block[2]), int(step.shared), self.stream,
                  (tuple(values), tuple(types)), 0, detail=f"step {t}: kernel {step.kernel}")

    def _outputs(self, b: Any, overrides: Mapping[int, int], host: Mapping[int, Any], device_mode: bool,
                 frameworks: Sequence[str], run: "_Run") -> dict[str, Any]:
        engine = self.engine
        from ember.ir.types import DTYPES
        results: dict[str, Any] = {}
        framework = frameworks[0] if frameworks and all(f == frameworks[0] for f in frameworks) else ""
        given = getattr(self, "_out", {})
        targets = {spec.name: self._out_target(spec.name, given[spec.name], run.sizes.value(spec.value))
                   for spec in engine.outputs if spec.name in given}   # all checked before any copy
        if targets:
            for spec in engine.outputs:
                target = targets.get(spec.name)
                if target is None:
                    continue
                info = run.sizes.value(spec.value)
                root = b.values[b.root(spec.value)]
                if root.is_data or not _on_device(root):
                    src = view_of(engine.weights[root.weight], info.shape, info.dtype) if root.is_data else \
                        np.asarray(host.get(b.root(spec.value)))
                    _call("cuStreamSynchronize", self.stream)
                    if target[1] is None:
                        from ember.runtime.host import write_into
                        write_into(target[0], src, spec.name)
                    else:
                        arr = np.ascontiguousarray(src)
                        _call("cuMemcpyHtoD", target[1], arr.ctypes.data, arr.nbytes)
                elif int(info.nbytes):
                    if target[1] is None:
                        _call("cuMemcpyDtoHAsync", target[0].ctypes.data, self._value_ptr(b, spec.value, overrides),
                              int(info.nbytes), self.stream, detail=f"output {spec.name}")
                    else:
                        _call("cuMemcpyDtoDAsync", target[1], self._value_ptr(b, spec.value, overrides),
                              int(info.nbytes), self.stream, detail=f"output {spec.name}")
                results[spec.name] = target[0]
            # The caller reads its arrays on its own streams: let the copies finish first.
            _call("cuStreamSynchronize", self.stream, detail="after the run")
        if not device_mode:
            for spec in engine.outputs:
                if spec.name in results:
                    continue
                info = run.sizes.value(spec.value)
                root = b.values[b.root(spec.value)]
                if root.is_data:
                    results[spec.name] = np.array(view_of(engine.weights[root.weight], info.shape, info.dtype))
                elif not _on_device(root):
                    results[spec.name] = detach(host.get(b.root(spec.value)))
                else:
                    out = np.empty(info.shape, DTYPES[info.dtype].np_dtype)
                    if out.nbytes:
                        _call("cuMemcpyDtoHAsync", out.ctypes.data, self._value_ptr(b, spec.value, overrides),
                              out.nbytes, self.stream, detail=f"output {spec.name}")
                    results[spec.name] = out
            _call("cuStreamSynchronize", self.stream, detail="after the run")
            return results
        consumer: list[int] = []
        for spec in engine.outputs:
            if spec.name in results:
                continue
            info = run.sizes.value(spec.value)
            root = b.values[b.root(spec.value)]
            if not root.is_data and not _on_device(root):
                results[spec.name] = detach(host.get(b.root(spec.value)))
                continue
            shape, dtype = info.shape, info.dtype
            nbytes = int(info.nbytes)
            array, ptr = self._new_device_array(shape, dtype, nbytes, framework, consumer)
            if nbytes:
                _call("cuMemcpyDtoDAsync", ptr, self._value_ptr(b, spec.value, overrides), nbytes, self.stream,
                      detail=f"output {spec.name}")
            results[spec.name] = array
        self._signal(sorted(set(consumer)))
        return results

    def _out_target(self, name: str, x: Any, info: Any) -> tuple[Any, int | None]:
        """(the caller's array, its device pointer or None for a numpy array), checked against the
        output's shape and type at this run."""
        from ember.ir.types import DTYPES
        from ember.runtime import dlpack
        want = f"{info.dtype}{list(info.shape)}"
        if isinstance(x, np.ndarray):
            if tuple(x.shape) != tuple(info.shape) or x.dtype != DTYPES[info.dtype].np_dtype:
                raise EngineInputError(f"out= {name!r}: {x.dtype}{list(x.shape)}, the output is {want}")
            if not x.flags.c_contiguous or not x.flags.writeable:
                raise EngineInputError(f"out= {name!r}: must be C-contiguous and writable")
            return x, None
        view = dlpack.device_view(x, self.stream)
        if view is None:
            raise EngineInputError(f"out= {name!r}: a {type(x).__name__}; give a numpy or a device array")
        if tuple(view.shape) != tuple(info.shape) or view.dtype != info.dtype:
            raise EngineInputError(f"out= {name!r}: {view.dtype}{list(view.shape)}, the output is {want}")
        if not view.contiguous:
            raise EngineInputError(f"out= {name!r}: a strided device array; give a contiguous one")
        if view.device_id is not None and view.device_id != self.dev.index:
            raise EngineInputError(f"out= {name!r} is on cuda:{view.device_id}; this context runs on "
                                   f"cuda:{self.dev.index}")
        return x, int(view.ptr)

    def _new_device_array(self, shape: tuple[int, ...], dtype: str, nbytes: int, framework: str,
                          consumer: list[int]) -> tuple[Any, int]:
        """An output buffer from the inputs' library (its current stream will wait on ours), or our own."""
        if framework == "torch" and dtype in _TORCH_DTYPES:
            import torch
            tdtype = getattr(torch, _TORCH_DTYPES[dtype], None)
            if tdtype is not None:
                device = torch.device("cuda", self.dev.index)
                out = torch.empty(shape, dtype=tdtype, device=device)
                consumer.append(int(torch.cuda.current_stream(device).cuda_stream))
                return out, int(out.data_ptr())
        if framework == "cupy":
            import cupy
            from ember.ir.types import DTYPES
            np_dtype = DTYPES[dtype].np_dtype
            if np_dtype.kind in "biufc":
                with cupy.cuda.Device(self.dev.index):
                    out = cupy.empty(shape, dtype=np_dtype)
                    consumer.append(int(cupy.cuda.get_current_stream().ptr))
                return out, int(out.data.ptr)
        from ember.runtime.dlpack import DeviceArray
        ptr = self.dev.alloc(nbytes)
        return DeviceArray(shape, dtype, ptr, nbytes, self.stream, self.dev.free, self.dev.index), ptr

    def upload(self, array: Any) -> Any:
        """A device copy of a host array on this context's GPU (a DeviceArray written on its
        stream), for run() to take without a host-to-device copy: what `ember bench` feeds."""
        from ember.ir.types import dtype_of
        from ember.runtime.dlpack import DeviceArray
        arr = np.ascontiguousarray(array)
        self.dev.activate()
        nbytes = max(arr.nbytes, 1)
        ptr = self.dev.alloc(nbytes)
        out = DeviceArray(arr.shape, dtype_of(arr).name, ptr, arr.nbytes, self.stream, self.dev.free, self.dev.index)
        if arr.nbytes:
            _call("cuMemcpyHtoDAsync", ptr, arr.ctypes.data, arr.nbytes, self.stream, detail="upload")
        _call("cuStreamSynchronize", self.stream)   # `arr` may go as soon as this returns
        return out

    def timer(self) -> "StreamTimer":
        """GPU time on this context's stream between start() and stop(), from CUDA events."""
        self.dev.activate()
        return StreamTimer(self.stream, self.dev)

    def close(self) -> None:
        """Free the arena, the graphs and the stream (also done when the context is collected)."""
        if not getattr(self, "_open", False):
            return
        self._open = False
        try:
            self._free_all()
        finally:
            self.dev.context_closed()

    def _free_all(self) -> None:
        d = _drv()
        try:
            self.dev.activate()
            for state in self._states.values():
                state.release(self.dev)
            self._states.clear()
            if self.arena:
                self.dev.free(self.arena)
                self.arena = 0
            if getattr(self, "_event", None) is not None:
                d.cuEventDestroy(self._event)
                self._event = None
            if self._own_stream and self.stream:
                d.cuStreamDestroy(self.stream)
                self.stream = 0
        except Exception:
            pass

    def __del__(self) -> None:
        self.close()


def _scratch_sizes(sizes: Any, first: int, last: int, j: int) -> list[int]:
    """The bytes each launch of the op (steps first..last) asks for its j-th scratch argument."""
    out = []
    for u in range(first, last + 1):
        found = [x.value for x in sizes.step(u).args if x.kind == "scratch"]
        if j < len(found):
            out.append(int(found[j]))
    return out


def _on_device(info: ValueSpec) -> bool:
    """Whether a (non-view) value has a device buffer: an arena slot, or one of its own per run."""
    return info.in_arena or info.kind == "dynamic"


class _Run:
    """What one run of a CUDA context holds beyond its arena: the sizes found as it goes
    (runtime/binding.py `RunSizes`), the device buffers of the values, scratch buffers and
    metadata sized at run time (allocated on the stream, `cuMemAllocAsync`, and freed on it when
    the run ends), the host copies the stream's pending copies read from."""

    def __init__(self, sizes: Any, overrides: dict[int, int], host: dict[int, Any], keep: list[Any]) -> None:
        self.sizes, self.overrides, self.host, self.keep = sizes, overrides, host, keep
        self.buffers: list[int] = []
        self._scratch: dict[tuple[int, int], int] = {}

    def _alloc(self, ctx: "CudaContext", nbytes: int, what: str) -> int:
        if nbytes <= 0:
            return 0
        ptr = int(_call("cuMemAllocAsync", nbytes, ctx.stream, detail=f"{nbytes} bytes for {what}"))
        self.buffers.append(ptr)
        return ptr

    def allocate(self, ctx: "CudaContext", vid: int, nbytes: int) -> int:
        """A buffer for value `vid`, sized at run time (poisoned like the arena when asked)."""
        ptr = self._alloc(ctx, nbytes, f"value {vid}")
        if ptr and ctx.poison:
            _call("cuMemsetD8Async", ptr, 0xFF, nbytes, ctx.stream)
        self.overrides[vid] = ptr
        return ptr

    def scratch(self, ctx: "CudaContext", key: tuple[int, int], sizes: Sequence[int]) -> int:
        """Slot j of the op whose launches start at step key[0], zeroed, shared by its launches."""
        if key not in self._scratch:
            nbytes = max(sizes, default=0)
            ptr = self._alloc(ctx, nbytes, f"scratch s{key[0]}.{key[1]}")
            if ptr:
                _call("cuMemsetD8Async", ptr, 0, nbytes, ctx.stream)
            self._scratch[key] = ptr
        return self._scratch[key]

    def meta(self, ctx: "CudaContext", values: Sequence[int]) -> int:
        blob = np.asarray(values or [0], dtype=np.int64)
        self.keep.append(blob)
        ptr = self._alloc(ctx, blob.nbytes, "kernel metadata")
        _call("cuMemcpyHtoDAsync", ptr, blob.ctypes.data, blob.nbytes, ctx.stream, detail="kernel metadata")
        return ptr

    def free(self, ctx: "CudaContext") -> None:
        for ptr in self.buffers:
            _call("cuMemFreeAsync", ptr, ctx.stream)
        self.buffers = []


def _order(after: int, waiter: int, event: Any = None) -> None:
    """Make stream `waiter` wait for the work queued on stream `after` so far, through `event`
    (one made for the purpose when none is given)."""
    if after == waiter:
        return
    d = _drv()
    own = event is None
    if own:
        event = _call("cuEventCreate", int(d.CUevent_flags.CU_EVENT_DISABLE_TIMING))
    try:
        _call("cuEventRecord", event, after)
        _call("cuStreamWaitEvent", waiter, event, 0)
    finally:
        if own:
            d.cuEventDestroy(event)


def order_streams(after: int, waiter: int) -> None:
    """Stream `waiter` waits for the work queued on `after` so far (a DLPack consumer's stream)."""
    _order(after, waiter)


def copy_to_host(ptr: int, shape: Sequence[int], dtype: np.dtype, stream: int | None, device_index: int = 0
                 ) -> np.ndarray:
    """Copy device memory to a new numpy array, after the work queued on `stream`."""
    dev = _call("cuDeviceGet", device_index)
    ctx = _call("cuDevicePrimaryCtxRetain", dev)
    try:
        _call("cuCtxSetCurrent", ctx)
        out = np.empty(tuple(shape), dtype)
        if stream:
            _call("cuStreamSynchronize", stream)
        if out.nbytes:
            _call("cuMemcpyDtoH", out.ctypes.data, ptr, out.nbytes)
        return out
    finally:
        _drv().cuDevicePrimaryCtxRelease(dev)


__all__ = ["CudaContext", "DeviceEngine", "CudaError", "available", "device_info", "stream_handle", "copy_to_host"]


class StreamTimer:
    """Two timing events on a stream: start() and stop() record them, elapsed_ms() waits for the
    second and gives the GPU time between (what ran on the stream, not the host's work)."""

    def __init__(self, stream: Any, dev: "DeviceEngine | None" = None) -> None:
        d = _drv()
        self.stream, self.dev = stream, dev   # (its events go with the primary context's release)
        self.begin = _call("cuEventCreate", int(d.CUevent_flags.CU_EVENT_DEFAULT))
        self.end = _call("cuEventCreate", int(d.CUevent_flags.CU_EVENT_DEFAULT))

    def start(self) -> None:
        _call("cuEventRecord", self.begin, self.stream)

    def stop(self) -> None:
        _call("cuEventRecord", self.end, self.stream)

    def elapsed_ms(self) -> float:
        _call("cuEventSynchronize", self.end)
        return float(_call("cuEventElapsedTime", self.begin, self.end))

    def __del__(self) -> None:
        if getattr(self, "dev", None) is not None and self.dev.released:
            return
        for ev in (getattr(self, "begin", None), getattr(self, "end", None)):
            if ev is not None:
                try:
                    _drv().cuEventDestroy(ev)
                except Exception:
                    pass
