"""The engine: everything needed to run a compiled model, in one file.

An engine holds the optimized IR (host steps run its ops on the reference
interpreter), the program codegen lowered it to (values, launch and host steps,
kernels and their parameters), the memory plan (runtime/memory_plan.py), every
kernel's CUDA C source, cubins and PTX, and the weights. `Engine.build` makes one
from the compiler's products (build.py calls it); `save` writes it as one
self-describing file (runtime/engine_format.py, docs/engine-format.md) and `load`
reads it back, refusing, in one line, a file that is truncated, corrupted, too new
or built for another GPU.

Running: `engine.run({name: array})` executes on the GPU when there is one and on
a host arena otherwise; `engine.create_context(...)` makes an execution context
(runtime/cuda.py on a GPU, runtime/host.py on the host) with its own arena and
stream; contexts of one engine share its uploaded weights.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import replace
from typing import Any, Mapping, Sequence

import numpy as np

from ember.version import __version__
from ember.errors import EmberError
from ember.ir.types import DTYPES, dtype_of, string
from ember.runtime import engine_format as fmt
from ember.runtime import validate
from ember.runtime.engine_format import EngineFormatError, Section
from ember.runtime.specs import (EngineInputError, KernelImage, TensorSpec, arch_number, cubin_runs_on,
                                  ptx_runs_on, version_number)
from ember.ir.profiles import Profile, Specialization
from ember.ir.program import HostStep, Program, Step, ValueSpec, step_tables
from ember.runtime import binding as B
from ember.runtime.memory_plan import MemoryPlan, op_groups, plan_memory

WEIGHT_ALIGN = 256
BINARY_ALIGN = 256
REQUIRED_SECTIONS = ("ir", "io", "plan", "kernels", "weights.index", "binaries", "weights")
BINDING_CACHE = 64  # shapes whose bound program and memory plan an engine keeps
DEVICES = ("auto", "cpu", "cuda")


def _le(array: np.ndarray) -> np.ndarray:
    arr = np.asarray(array, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return arr


def _weight_bytes(array: np.ndarray) -> tuple[bytes | memoryview, str]:
    if array.dtype == object or dtype_of(array) is string:
        return json.dumps([str(x) for x in array.ravel().tolist()], ensure_ascii=False).encode("utf-8"), "json"
    arr = _le(array)
    return memoryview(arr.reshape(-1).view(np.uint8)) if arr.size else b"", "raw"


def _aligned(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


class Engine:
    """A compiled model: IR, program, memory plan, kernels and weights (see the module docstring)."""

    def __init__(self, *, ir_text: str, program: Program, plan: MemoryPlan, weights: dict[str, np.ndarray],
                 kernels: dict[str, KernelImage], info: dict[str, Any], inputs: Sequence[TensorSpec],
                 outputs: Sequence[TensorSpec], source: str = "<built>", container: Any = None,
                 profiles: Sequence[Profile] = (), specializations: Sequence[Specialization] = ()) -> None:
        self.ir_text = ir_text
        self.program = program
        self.plan = plan
        self.weights = weights
        self.kernels = kernels
        self.info = info
        self.inputs: list[TensorSpec] = list(inputs)
        self.outputs: list[TensorSpec] = list(outputs)
        self.source = source
        self.report: Any = None  # the BuildReport, set by ember.compile
        self._container = container  # keeps the mapped file alive under the weights
        self._module: Any = None
        self._value_ids: Any = None
        self._ops: Any = None
        self._contexts: dict[str, Any] = {}
        self._devices: dict[int, Any] = {}
        self._lock = threading.RLock()
        self._noticed = False
        self.profiles: list[Profile] = list(profiles)
        self.specializations: list[Specialization] = list(specializations)
        # the stored program: the first profile's first variant, bound at its OPT shape
        self.default = B.Binding(self.symbols, 0 if self.specializations else -1, program, plan)
        self.bindings = B.Bindings(BINDING_CACHE)
        self._binding_lock = threading.Lock()
        self.bindings.put(self.default)
        self._extra_reads: dict[int, dict[int, list[int]]] = {}
        if self.profiles:
            self.inputs = [_with_ranges(t, self.profiles) for t in self.inputs]

    @property
    def is_dynamic(self) -> bool:
        """Whether the engine serves more than one shape (a profile with a range, or several profiles)."""
        return len(self.profiles) > 1 or any(p.points > 1 for p in self.profiles)

    def bind(self, shapes: Mapping[str, Sequence[int]]) -> B.Binding:
        """The engine's program at these input shapes (name -> shape): the profile and kernel
        variant that cover them, sizes evaluated, memory planned (cached per shape)."""
        given = {k: tuple(v) for k, v in shapes.items()}
        env = B.symbols_of(self.inputs, given, EngineInputError)
        if not self.is_dynamic:
            return self.default  # check_input has named any shape the engine was not built for
        with self._binding_lock:
            return self.bindings.get(env, lambda: self._make_binding_of(
                B.choose(self.profiles, self.specializations, env, given, EngineInputError), env))

    def run_sizes(self, b: B.Binding) -> B.RunSizes:
        """The sizes of one run of binding `b` (runtime/binding.py `RunSizes`): run-time symbols
        bound as host and size steps find them, launches sized and checked when reached."""
        return B.RunSizes(b, lambda step, t: validate.check_launch(self.source, step, t), EngineFormatError)

    def _make_binding_of(self, index: int, env: dict[str, int]) -> B.Binding:
        spec = self.specializations[index]

        def check(program: Program) -> dict[int, list[int]]:
            validate.check_bound(self.source, program)
            if index not in self._extra_reads:  # the same for every shape of a specialization
                self._extra_reads[index] = _op_reads_beyond_kernels(self.module, program)
            return self._extra_reads[index]
        return B.bind(index, spec, env, check, EngineInputError)

    # -- what it is (the stored program: the default shape's binding) ------------------------
    @property
    def values(self) -> tuple[ValueSpec, ...]:
        return self.default.values

    @property
    def groups(self) -> list[tuple[int, int]]:
        return self.default.groups

    @property
    def steps(self) -> tuple[Step, ...]:
        return self.default.steps

    @property
    def symbols(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in (self.info.get("symbols") or {}).items()}

    @property
    def host_steps(self) -> int:
        return sum(1 for s in self.steps if isinstance(s, HostStep))

    def root(self, vid: int) -> int:
        return self.default.root(vid)

    def offset(self, vid: int) -> int:
        return self.default.offset(vid)

    def memory_report(self) -> dict[str, Any]:
        return self.plan.report()

    def __repr__(self) -> str:
        ins = ", ".join(map(str, self.inputs))
        outs = ", ".join(map(str, self.outputs))
        return (f"<Engine ({ins}) -> ({outs}): {len(self.kernels)} kernels, {len(self.steps)} steps "
                f"({self.host_steps} on the host), arena {self.plan.arena_bytes} bytes>")

    @property
    def module(self) -> Any:
        """The optimized IR, parsed, with the engine's weights attached (host steps run its ops)."""
        with self._lock:
            if self._module is None:
                from ember.ir.parser import parse
                self._module = parse(self.ir_text, source=f"{self.source}:ir", verify=False)
            for name, w in self._module.weights.items():
                if w.data is None and name in self.weights:
                    w.data = self.weights[name]
            return self._module

    @property
    def ops(self) -> list[Any]:
        """The IR ops that steps name by index (the entry function's, then those of the branches
        the program runs on the device: ir/program.py `op_table`)."""
        return self._tables()[0]

    @property
    def value_ids(self) -> dict[Any, int]:
        """The IR values of the entry function by program value id (inputs, then each op's results)."""
        return self._tables()[1]

    def _tables(self) -> tuple[list[Any], dict[Any, int]]:
        with self._lock:
            if self._ops is None:
                ops, ids = step_tables(self.module.main, self.steps)
                if len(ids) != len(self.values):
                    raise EngineFormatError(f"{self.source}: the plan has {len(self.values)} values, the IR's entry "
                                            f"function {len(ids)}: the sections do not belong together")
                self._ops, self._value_ids = ops, ids
            return self._ops, self._value_ids

    # -- building --------------------------------------------------------------------------
    @classmethod
    def build(cls, *, ir_text: str, program: Program, weights: Mapping[str, np.ndarray],
              binaries: Mapping[str, Mapping[str, Any]], sources: Mapping[str, str],
              info: Mapping[str, Any], profiles: Sequence[Profile] = (),
              specializations: Sequence[Specialization] = (),
              declared: Mapping[str, Sequence[str]] | None = None) -> "Engine":
        """An engine from the compiler's products (see build.py): plans the memory, keeps the
        weights the IR uses, and pairs each kernel with its binaries and source. `declared`
        gives the inputs' and outputs' dims as the model declared them (symbols kept) where the
        IR was built for one shape, whose types are static."""
        from ember.ir.parser import parse
        module = parse(ir_text, verify=False)
        programs = [program, *(sp.program for sp in specializations)]
        used = sorted({n for pr in programs for n in _weights_used(module, pr)})
        missing = [n for n in used if n not in weights]
        if missing:
            raise EngineFormatError(f"engine build: no data for weight{'s' if len(missing) > 1 else ''} "
                                    f"{', '.join(map(repr, missing[:5]))}{' ...' if len(missing) > 5 else ''}")
        store = {n: _le(np.asarray(weights[n])) for n in sorted(used)}
        kernels: dict[str, KernelImage] = {}
        for k in {k.name: k for pr in programs for k in pr.kernels}.values():
            name = k.name
            if name not in binaries:
                raise EngineFormatError(f"engine build: kernel {name} has no compiled binaries")
            b = binaries[name]
            ptx = bytes(b.get("ptx") or b"")
            kernels[name] = KernelImage(name, tuple(k.ops), str(sources.get(name, "")),
                                        {str(a): bytes(c) for a, c in dict(b.get("cubins") or {}).items()},
                                        ptx, str(b.get("ptx_arch") or ""))
        clean_info = json.loads(fmt.canonical_json({
            "targets": list(info.get("targets") or []), "nvrtc": str(info.get("nvrtc") or ""),
            "precision": str(info.get("precision") or ""), "pipeline": str(info.get("pipeline") or ""),
            "symbols": {str(k): int(v) for k, v in dict(info.get("symbols") or {}).items()},
            "plugins": {str(k): str(v) for k, v in dict(info.get("plugins") or {}).items()},
            **({"quantization": dict(info["quantization"])} if info.get("quantization") else {})}))
        plan = plan_memory(program, extra_reads=_op_reads_beyond_kernels(module, program))
        inputs, outputs = _signature(module, program)
        if declared:
            inputs, outputs = ([_declared(t, declared) for t in ts] for ts in (inputs, outputs))
        specs = [Specialization.from_json(json.loads(fmt.canonical_json(sp.to_json()))) for sp in specializations]
        engine = cls(ir_text=ir_text, program=program, plan=plan, weights=store, kernels=kernels, info=clean_info,
                     inputs=inputs, outputs=outputs, profiles=profiles, specializations=specs)
        engine._module = module
        return engine

    # -- refit -----------------------------------------------------------------------------
    def refit(self, weights: Mapping[str, Any]) -> "Engine":
        """A copy of this engine with weights replaced, kernels and plan as they are (no rebuild).

        Names are the engine's own weights (those of its optimized IR, `engine.weights`), or a
        source weight that the build only converted to the engine's precision (`w` for the
        engine's `w/f16` or `w/bf16`: converted here as convert-precision does). Each array must
        have the weight's shape and dtype (float32 for a converted one). Weights the passes computed from several sources (a batch norm folded into
        a conv, a transposed filter) have other names: refit those from the model
        (`ember.build.refit_from_model`, `ember refit ENGINE --weights MODEL.onnx`), which
        reruns the engine's passes on the new weights. Every problem is named before anything
        changes."""
        from ember.ir.ops.core import cast_array
        from ember.ir.types import dtype as ir_dtype
        new = dict(self.weights)
        problems: list[str] = []
        for name, value in weights.items():
            target, convert = name, None
            if name not in self.weights:
                for suffix in ("/f16", "/bf16"):
                    if f"{name}{suffix}" in self.weights:
                        target, convert = f"{name}{suffix}", suffix[1:]
                if convert is None:
                    problems.append(f"{name!r}: not a weight of this engine's optimized graph (passes folded or "
                                    "transformed it, or the model has no such weight); refit from the model file, "
                                    "which reruns the passes: ember refit ENGINE --weights MODEL.onnx")
                    continue
            old = self.weights[target]
            arr = np.asarray(value)
            if tuple(arr.shape) != tuple(old.shape):
                problems.append(f"{name!r}: shape {list(arr.shape)}, the engine's weight {target!r} is {list(old.shape)}")
                continue
            if convert is not None:
                if arr.dtype != np.float32:
                    problems.append(f"{name!r}: dtype {arr.dtype}; the model's weight is float32 (the engine "
                                    f"holds it as {convert})")
                    continue
                arr = cast_array(arr, ir_dtype(convert))
            if arr.dtype != old.dtype:
                problems.append(f"{name!r}: dtype {arr.dtype}, the engine's weight {target!r} is {old.dtype} "
                                "(convert it first: a refit never changes a weight's type)")
                continue
            new[target] = _le(np.array(arr, copy=True))
        if problems:
            raise EngineInputError("refit: " + "; ".join(problems))
        engine = Engine(ir_text=self.ir_text, program=self.program, plan=self.plan, weights=new, kernels=self.kernels,
                        info=dict(self.info), inputs=self.inputs, outputs=self.outputs, source=self.source,
                        profiles=self.profiles, specializations=self.specializations)
        engine._module, engine._ops, engine._value_ids = self._module, self._ops, self._value_ids
        engine.report = self.report
        return engine

    # -- the file --------------------------------------------------------------------------
    def _sections(self) -> tuple[dict[str, Any], list[Section]]:
        blobs = bytearray()
        kernels_json: dict[str, Any] = {}
        for name in sorted(self.kernels):
            k = self.kernels[name]
            entry: dict[str, Any] = {"ops": list(k.ops), "source": k.source, "cubins": {}, "ptx_arch": k.ptx_arch}
            for arch in sorted(k.cubins):
                blobs.extend(b"\0" * (_aligned(len(blobs), BINARY_ALIGN) - len(blobs)))
                entry["cubins"][arch] = [len(blobs), len(k.cubins[arch])]
                blobs.extend(k.cubins[arch])
            blobs.extend(b"\0" * (_aligned(len(blobs), BINARY_ALIGN) - len(blobs)))
            entry["ptx"] = [len(blobs), len(k.ptx)]
            blobs.extend(k.ptx)
            kernels_json[name] = entry
        index: dict[str, Any] = {}
        chunks: list[tuple[int, bytes | memoryview]] = []
        offset = 0
        for name in sorted(self.weights):
            arr = self.weights[name]
            data, encoding = _weight_bytes(arr)
            offset = _aligned(offset, WEIGHT_ALIGN)
            index[name] = {"dtype": dtype_of(arr).name, "shape": [int(d) for d in arr.shape], "offset": offset,
                           "nbytes": len(data), "encoding": encoding}
            chunks.append((offset, data))
            offset += len(data)
        weights_blob = bytearray(offset)
        for off, data in chunks:
            weights_blob[off:off + len(data)] = data
        io = {"inputs": [t.to_json() for t in self.inputs], "outputs": [t.to_json() for t in self.outputs]}
        plan = {"program": self.program.to_json(), "memory": self.plan.to_json(), "symbols": self.symbols}
        ptx_arches = sorted({k.ptx_arch for k in self.kernels.values() if k.ptx_arch})
        header = {
            "ember_version": __version__, "nvrtc": self.info.get("nvrtc", ""),
            "targets": list(self.info.get("targets", [])), "ptx_arch": ptx_arches,
            "precision": self.info.get("precision", ""), "pipeline": self.info.get("pipeline", ""),
            "symbols": self.symbols, "plugins": dict(self.info.get("plugins") or {}),
            **({"quantization": self.info["quantization"]} if self.info.get("quantization") else {}),
            "counts": {"kernels": len(self.kernels), "steps": len(self.steps), "host_steps": self.host_steps,
                       "weights": len(self.weights), "weight_bytes": len(weights_blob),
                       "arena_bytes": self.plan.arena_bytes},
        }
        sections = [
            Section("ir", self.ir_text.encode("utf-8")),
            Section("io", fmt.canonical_json(io)),
            Section("plan", fmt.canonical_json(plan)),
            Section("kernels", fmt.canonical_json(kernels_json)),
            Section("weights.index", fmt.canonical_json(index)),
            Section("binaries", bytes(blobs), BINARY_ALIGN),
            Section("weights", memoryview(weights_blob), fmt.PAGE),
        ]
        if self.profiles:
            sections.insert(3, Section("profiles", fmt.canonical_json({
                "profiles": [p.to_json() for p in self.profiles],
                "specializations": [sp.to_json() for sp in self.specializations]})))
        return header, sections

    def to_bytes(self) -> bytes:
        """The engine file's bytes (what `save` writes)."""
        header, sections = self._sections()
        return fmt.to_bytes(header, sections)

    def save(self, path: str | os.PathLike) -> int:
        """Write the engine to `path` atomically; returns the file's size in bytes."""
        header, sections = self._sections()
        return fmt.write(path, header, sections)

    @classmethod
    def load(cls, path: str | os.PathLike, arch: str | None = None) -> "Engine":
        """Read and check an engine file. `arch` ("sm_80") checks it can run on that GPU; by default
        the GPU of this machine is checked when there is one (on none, the host arena runs anything)."""
        container = fmt.read(path)
        return cls._from_container(container, str(path), arch)

    @classmethod
    def from_bytes(cls, data: bytes, arch: str | None = None, source: str = "<bytes>") -> "Engine":
        return cls._from_container(fmt.parse(memoryview(data), source, data), source, arch)

    @classmethod
    def _from_container(cls, c: fmt.Container, source: str, arch: str | None) -> "Engine":
        header = c.header
        if header.get("format") != "ember-engine":
            raise EngineFormatError(f"{source}: the header does not describe an Ember engine")
        missing = [s for s in REQUIRED_SECTIONS if s not in c.sections]
        if missing:
            raise EngineFormatError(f"{source}: the engine lacks section{'s' if len(missing) > 1 else ''} "
                                    f"{', '.join(map(repr, missing))}")
        try:
            engine = cls._decode(c, source)
        except EngineFormatError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, UnicodeDecodeError) as err:
            raise EngineFormatError(f"{source}: malformed engine contents: {type(err).__name__}: {err}") from None
        engine.check_arch(arch)
        return engine

    @classmethod
    def _decode(cls, c: fmt.Container, source: str) -> "Engine":
        """The engine in `c`, every section checked against the others first (runtime/validate.py):
        nothing below indexes, slices or sizes anything the checks have not vouched for."""
        header = c.header
        try:
            ir_text = bytes(c["ir"]).decode("utf-8")
        except UnicodeDecodeError as err:
            raise EngineFormatError(f"{source}: section 'ir': not UTF-8 text ({err.reason} at byte {err.start})") \
                from None
        io, plan_json, kernels_json, index = c.json("io"), c.json("plan"), c.json("kernels"), c.json("weights.index")
        binaries, blob = c["binaries"], c["weights"]
        profiles_json, unreadable = None, None
        if "profiles" in c.sections:
            try:
                profiles_json = c.json("profiles")
            except EngineFormatError as err:  # refused after the other sections' checks, as before
                unreadable = err
        validate.check_engine(source, io=io, plan=plan_json, kernels=kernels_json, weights_index=index,
                              binaries=binaries, weights_size=len(blob),
                              more_kernels=validate.profile_kernels(profiles_json),
                              weight_data=lambda name, off, n: _json_or_none(blob[off:off + n]))
        program = Program.from_json(plan_json["program"])  # checked above
        kernels: dict[str, KernelImage] = {}
        for name, k in kernels_json.items():
            cubins = {arch: bytes(binaries[off:off + size]) for arch, (off, size) in k["cubins"].items()}
            off, size = k["ptx"]
            kernels[name] = KernelImage(name, tuple(k["ops"]), k["source"], cubins, bytes(binaries[off:off + size]),
                                        k["ptx_arch"])
        weights: dict[str, np.ndarray] = {}
        for name, w in index.items():
            off, nbytes, shape = w["offset"], w["nbytes"], tuple(w["shape"])
            if w.get("encoding") == "json":
                items = _json_or_none(blob[off:off + nbytes])
                arr = np.empty(len(items), dtype=object)
                arr[:] = items
                weights[name] = arr.reshape(shape)
                continue
            dt = DTYPES[w["dtype"]].np_dtype
            count = nbytes // dt.itemsize
            arr = np.frombuffer(blob, dtype=dt, count=count, offset=off) if count else np.zeros(shape, dt)
            weights[name] = arr.reshape(shape)
        symbols = {str(k): v for k, v in plan_json.get("symbols", {}).items()}
        plugins = header.get("plugins") or {}
        if not isinstance(plugins, dict) or not all(isinstance(k, str) and isinstance(v, str) and "." in k
                                                    and not k.startswith("ember.") for k, v in plugins.items()):
            raise EngineFormatError(f"{source}: header 'plugins': not a map of plugin op names to versions")
        quantization = header.get("quantization") or {}
        if not isinstance(quantization, dict) or not all(
                isinstance(k, str) and (isinstance(v, (str, int, float, bool)) or
                                        isinstance(v, list) and all(isinstance(x, str) for x in v))
                for k, v in quantization.items()):
            raise EngineFormatError(f"{source}: header 'quantization': not a map of names to plain values")
        from ember.ir import placeholder
        placeholder.ensure(plugins)   # plugin ops this process has not imported parse as placeholders
        module = _parse_ir(ir_text, source)
        ops, ids = validate.check_ir(source, module, program, symbols, weights)
        plan = validate.check_memory(source, program, plan_json["memory"], _op_reads_beyond_kernels(module, program))
        info = {"targets": header.get("targets", []), "nvrtc": header.get("nvrtc", ""),
                "precision": header.get("precision", ""), "pipeline": header.get("pipeline", ""),
                "symbols": symbols, "plugins": dict(plugins),
                **({"quantization": dict(quantization)} if quantization else {}),
                "ember_version": header.get("ember_version", ""), "format_version": header.get("format_version")}
        inputs = [TensorSpec.from_json(t) for t in io["inputs"]]
        outputs = [TensorSpec.from_json(t) for t in io["outputs"]]
        if unreadable is not None:
            raise unreadable
        profiles, specs = _profiles(profiles_json, source, inputs, kernels) if "profiles" in c.sections else ([], [])
        engine = cls(ir_text=ir_text, program=program, plan=plan, weights=weights, kernels=kernels, info=info,
                     inputs=inputs, outputs=outputs, source=source, container=c, profiles=profiles,
                     specializations=specs)
        engine._module, engine._ops, engine._value_ids = module, ops, ids
        for i, spec in enumerate(specs):  # each variant, bound where it was traced, checked as the stored program
            try:
                engine._make_binding_of(i, dict(spec.witness))
            except EngineInputError as err:
                raise EngineFormatError(f"{source}: section 'profiles': specialization {i}: {err}") from None
        return engine

    def check_arch(self, arch: str | None = None, driver_version: int | None = None) -> None:
        """Refuse (EngineFormatError) when no kernel image runs on `arch`: no cubin for it and no PTX its
        driver can JIT. With arch=None, the GPU of this machine (if any) is checked."""
        if not self.kernels:
            return
        if arch is None:
            from ember.runtime import cuda
            found = cuda.device_info()
            if found is None:
                return  # no GPU: the host arena runs any engine
            arch, driver_version = found["arch"], found["driver"]
        arch_number(arch)
        nvrtc = version_number(str(self.info.get("nvrtc", "")))
        unusable = []
        for k in self.kernels.values():
            if any(cubin_runs_on(a, arch) for a in k.cubins):
                continue
            if k.ptx and k.ptx_arch and ptx_runs_on(k.ptx_arch, arch):
                if driver_version is None or not nvrtc or driver_version >= nvrtc:
                    continue
            unusable.append(k.name)
        if not unusable:
            return
        cubins = sorted({a for k in self.kernels.values() for a in k.cubins}, key=lambda a: arch_number(a))
        ptx = sorted({k.ptx_arch for k in self.kernels.values() if k.ptx and k.ptx_arch})
        driver = ""
        if driver_version is not None and nvrtc and driver_version < nvrtc and any(ptx_runs_on(p, arch) for p in ptx):
            driver = (f"; its PTX needs a CUDA {self.info.get('nvrtc')} driver and this one is "
                      f"{driver_version // 1000}.{driver_version % 1000 // 10}")
        raise EngineFormatError(
            f"{self.source}: built for {', '.join(cubins) or 'no cubin'} (PTX {', '.join(ptx) or 'none'}); "
            f"this GPU is {arch} and can run none of {len(unusable)} kernel{'s' if len(unusable) > 1 else ''}"
            f"{driver}: rebuild with --target {arch}")

    # -- running ---------------------------------------------------------------------------
    def pick_device(self, device: str = "auto") -> str:
        if device not in DEVICES:
            raise EngineInputError(f"device {device!r}: choose one of {', '.join(DEVICES)}")
        if device != "auto":
            return device
        from ember.runtime import cuda
        ok, reason = cuda.available()
        if ok:
            return "cuda"
        if not self._noticed:
            self._noticed = True
            print(f"ember: no CUDA GPU ({reason}); running the engine on the host arena", file=sys.stderr)
        return "cpu"

    poison_arena = False
    """Fill a CUDA context's arena with 0xFF bytes (NaN in every float type) before each run, so an
    output a kernel fails to write reads as poison (the GPU tests turn it on; the host arena
    always does it)."""

    def create_context(self, device: str = "cuda", stream: Any = None, *, graphs: bool = True,
                       device_index: int = 0, graph_cache: int = 8, poison: bool | None = None) -> Any:
        """A new execution context: its own arena (and, on CUDA, stream); the weights are shared.
        On CUDA it keeps the launch state and CUDA graphs of the `graph_cache` shapes used last."""
        device = self.pick_device(device)
        if device == "cpu":
            from ember.runtime.host import HostContext
            return HostContext(self)
        from ember.runtime.cuda import CudaContext
        return CudaContext(self, stream=stream, graphs=graphs, device_index=device_index, graph_cache=graph_cache,
                           poison=self.poison_arena if poison is None else poison)

    def max_arena_bytes(self) -> int:
        """The largest arena of the profiles' MAX shapes (the default shape's for a fixed engine)."""
        if not self.is_dynamic:
            return self.default.plan.arena_bytes
        sizes = [self.default.plan.arena_bytes]
        for p in self.profiles:
            try:
                sizes.append(self.bind({r.name: r.max for r in p.inputs}).plan.arena_bytes)
            except EngineInputError:
                pass  # MAX not covered (a sampled profile): the arena grows if that shape ever runs
        return max(sizes)

    def device_state(self, device_index: int = 0) -> Any:
        """The engine's per-GPU state (kernels loaded, weights and metadata uploaded), made once."""
        with self._lock:
            if device_index not in self._devices:
                from ember.runtime.cuda import DeviceEngine
                self._devices[device_index] = DeviceEngine(self, device_index)
            return self._devices[device_index]

    def run(self, inputs: Mapping[str, Any], device: str = "auto",
            outputs: Sequence[str] | None = None, out: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Run once. numpy in, numpy out; on CUDA, device arrays in (torch, CuPy: DLPack or
        __cuda_array_interface__) give device arrays out. `outputs` names the ones to return
        (default: all), in that order. `out` gives arrays to write outputs into, as onnxruntime's
        IO binding does (numpy, or on CUDA device arrays too): each of the output's shape and
        element type, contiguous and writable; they are returned for those names."""
        wanted = self.check_outputs(outputs)
        device = self.pick_device(device)
        with self._lock:
            ctx = self._contexts.get(device)
            if ctx is None:
                ctx = self._contexts[device] = self.create_context(device)
        results = ctx.run(inputs, out=out)
        return results if wanted is None else {name: results[name] for name in wanted}

    def check_out(self, out: Mapping[str, Any] | None) -> dict[str, Any]:
        """The `out=` arrays, checked for what can be checked before the run: outputs of this
        engine, each an array with a shape and an element type."""
        if not out:
            return {}
        names = {spec.name for spec in self.outputs}
        problems = [f"{name!r} is not an output (the outputs: {', '.join(sorted(names))})"
                    for name in out if name not in names]
        from ember.runtime.dlpack import is_device_array
        problems += [f"{name!r}: {type(x).__name__} is not an array" for name, x in out.items()
                     if name in names and not (isinstance(x, np.ndarray) or is_device_array(x))]
        if problems:
            raise EngineInputError("out=: " + "; ".join(problems))
        return dict(out)

    def check_outputs(self, outputs: Sequence[str] | None) -> list[str] | None:
        """The output names asked for, checked: each one of the engine's, once."""
        if outputs is None:
            return None
        if isinstance(outputs, str):
            outputs = [outputs]
        names = [t.name for t in self.outputs]
        unknown = [o for o in outputs if o not in names]
        if unknown:
            raise EngineInputError(f"outputs {unknown!r}: the engine's outputs are {', '.join(map(repr, names))}")
        if len(set(outputs)) != len(outputs):
            raise EngineInputError(f"outputs {list(outputs)!r} names one twice")
        return list(outputs)

    def check_inputs(self, inputs: Mapping[str, Any]) -> None:
        """Names first: every input given, nothing else."""
        if not isinstance(inputs, Mapping):
            raise EngineInputError(f"inputs must be a mapping from input name to array, got {type(inputs).__name__}")
        from ember.ir.interpret import input_names_mismatch
        names = [t.name for t in self.inputs]
        mismatch = input_names_mismatch(names, inputs)
        if mismatch:
            raise EngineInputError(f"{mismatch} (the engine's inputs: {', '.join(map(repr, names))})")

    def host_input(self, spec: TensorSpec, x: Any) -> Any:
        """A host input checked against its spec (as the interpreter checks): element type and shape."""
        if spec.dtype == "str" or spec.value >= len(self.values) or self.values[spec.value].kind == "host":
            return x
        if not isinstance(x, np.ndarray):
            if hasattr(x, "__array__") or isinstance(x, (list, tuple, int, float, bool)):
                x = np.asarray(x, dtype=spec.np_dtype if not hasattr(x, "dtype") else None)
            else:
                raise EngineInputError(f"input {spec.name!r}: expected an array of {spec}, got {type(x).__name__}")
        try:
            got = dtype_of(x).name
        except ValueError:
            raise EngineInputError(f"input {spec.name!r}: numpy dtype {x.dtype} is not an Ember element type") from None
        self.check_input(spec, got, tuple(x.shape))
        return x

    def check_input(self, spec: TensorSpec, dtype: str, shape: tuple[int, ...]) -> None:
        if dtype != spec.dtype:
            raise EngineInputError(f"input {spec.name!r}: expected element type {spec.dtype}, got {dtype}")
        if self.is_dynamic:
            return  # `bind` checks the shape against the profiles
        want = spec.shape
        if len(shape) != len(want) or any(w is not None and w != g for w, g in zip(want, shape)):
            raise EngineInputError(f"input {spec.name!r}: the engine was built for shape "
                                   f"{['?' if w is None else w for w in want]}, got {list(shape)}")


def _json_or_none(data: memoryview) -> Any:
    """A JSON-encoded weight (str tensors), or None when its bytes are not JSON."""
    try:
        return json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None


def _parse_ir(text: str, source: str) -> Any:
    """The engine's IR, parsed and verified; a syntax error or an op that does not verify is the
    file's, in the section 'ir'."""
    from ember.errors import ParseError, VerifyError
    from ember.ir.parser import parse
    try:
        return parse(text, source="ir")
    except VerifyError as err:  # ops whose types do not follow (host steps would run them on the interpreter)
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise EngineFormatError(f"{source}: section 'ir': {first}") from None
    except ParseError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        where = f"ir:{err.line}:{err.column}: " if err.line is not None else "ir: "
        what = first[len(where):] if first.startswith(where) else first
        line = f"line {err.line}, column {err.column}: " if err.line is not None else ""
        raise EngineFormatError(f"{source}: section 'ir': {line}{what}") from None


def _weights_used(module: Any, program: Program) -> list[str]:
    names = {v.weight for v in program.values if v.is_data and v.weight is not None}
    for fn in module.functions.values():
        for op in fn.walk():
            if op.name == "ember.weight":
                names.add(op.attributes["name"])
    return sorted(names)


def _op_reads_beyond_kernels(module: Any, program: Program) -> dict[int, list[int]]:
    """Per launch group's last step, the values its IR ops read that its kernels do not (the
    host-arena executor runs the op there, so they must still be live)."""
    ops, ids = step_tables(module.main, program.steps)
    if len(ids) != len(program.values):
        raise EngineFormatError(f"engine build: the program has {len(program.values)} values, the IR's entry "
                                f"function {len(ids)}")
    steps = program.steps
    extra: dict[int, list[int]] = {}
    for first, last in op_groups(steps):
        listed = {v for t in range(first, last + 1) for v in steps[t].reads}
        listed |= {v for t in range(first, last + 1) for v in steps[t].writes}
        wanted = {ids[v] for index in steps[first].ops for v in ops[index].reads() if v in ids}
        if wanted - listed:
            extra[last] = sorted(wanted - listed)
    return extra


def _with_ranges(t: TensorSpec, profiles: Sequence[Profile]) -> TensorSpec:
    """The spec with each dim's (MIN, MAX) over the profiles."""
    found = [r for p in profiles for r in p.inputs if r.name == t.name]
    if not found or any(len(r.min) != len(t.shape) for r in found):
        return t
    ranges = tuple((min(r.min[d] for r in found), max(r.max[d] for r in found)) for d in range(len(t.shape)))
    return TensorSpec(t.name, t.dtype, t.shape, t.dims, t.value, ranges)


def _profiles(data: Any, source: str, inputs: Sequence[TensorSpec], kernels: Mapping[str, Any]
              ) -> tuple[list[Profile], list[Specialization]]:
    """The optimization profiles and the programs for them (section 'profiles'), checked."""
    try:
        profiles = [Profile.from_json(p) for p in data["profiles"]]
        specs = [Specialization.from_json(sp) for sp in data["specializations"]]
    except (EmberError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise EngineFormatError(f"{source}: section 'profiles': {type(err).__name__}: {err}") from None
    names = {t.name for t in inputs}
    for p, profile in enumerate(profiles):
        if not profile.inputs or any(r.name not in names for r in profile.inputs):
            raise EngineFormatError(f"{source}: section 'profiles': profile {p} does not name the engine's inputs")
        if not any(sp.profile == p for sp in specs):
            raise EngineFormatError(f"{source}: section 'profiles': profile {p} has no program")
    for i, sp in enumerate(specs):
        if not 0 <= sp.profile < len(profiles) or not profiles[sp.profile].contains(sp.witness) \
                or not sp.holds(sp.witness):
            raise EngineFormatError(f"{source}: section 'profiles': specialization {i} does not hold where it "
                                    "says it was traced")
        unknown = {s.kernel for s in sp.program.launches} - set(kernels)
        if unknown:
            raise EngineFormatError(f"{source}: section 'profiles': specialization {i} launches kernel "
                                    f"{sorted(unknown)[0]!r}, which the engine lacks")
    return profiles, specs


def _declared(t: TensorSpec, declared: Mapping[str, Sequence[str]]) -> TensorSpec:
    dims = tuple(str(d) for d in declared.get(t.name, ()))
    return replace(t, dims=dims) if len(dims) == len(t.dims) else t


def _signature(module: Any, program: Program) -> tuple[list[TensorSpec], list[TensorSpec]]:
    fn = module.main
    values = program.values

    def spec(name: str, v: Any, vid: int) -> TensorSpec:
        info = values[vid]
        t = v.type
        declared = getattr(t, "shape", None)
        dims = tuple(str(d) for d in declared) if declared is not None else ()
        dtype = getattr(getattr(t, "dtype", None), "name", None) or info.dtype
        if info.kind == "host":
            shape = tuple(d if isinstance(d, int) else None for d in declared) if declared is not None else ()
        else:  # a size known only when the model runs (a run-time symbol's expression) is None
            shape = tuple(int(d) if isinstance(d, int) else None for d in info.shape)
        return TensorSpec(name, dtype, shape, dims, vid)

    inputs = [spec(port.name, v, port.value) for port, v in zip(program.inputs, fn.inputs)]
    outputs = [spec(port.name, v, port.value) for port, v in zip(program.outputs, fn.outputs)]
    return inputs, outputs


__all__ = ["Engine", "EngineFormatError", "EngineInputError", "TensorSpec", "KernelImage", "cubin_runs_on",
           "ptx_runs_on"]
