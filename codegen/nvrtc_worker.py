"""Compile one kernel with NVRTC in a process of its own, PTX first.

Why: NVRTC 13.0's PTX for a large kernel depends on where the process's
memory happens to lie (NVVM orders something by pointer value). With address
space randomization on, one compile in three to eight of the tiled GEMMs comes
out with other register numbers and another schedule; with it off (Linux's
ADDR_NO_RANDOMIZE personality, as `setarch -R` sets), the same source gives the
same PTX every time. Cubins are stable either way. Engines must be
byte-identical across rebuilds, so `Compiler` runs this file for whatever is
not cached: it turns randomization off and re-executes itself, then compiles.
Where the personality cannot be set (another OS, a seccomp filter) it compiles
anyway and says so in its reply ("fixed_layout": false).

The file imports nothing from Ember (it runs as a script, whatever the install
is). Protocol: stdin holds one JSON object {"source", "name", "options",
"builds": [[kind, arch], ...]}; stdout gets one JSON line {"ok", "sizes", "fixed_layout"} or
{"ok": false, "arch", "log", "failed"} followed by the outputs' bytes, concatenated.
"""

from __future__ import annotations

import json
import sys


def _compile(nvrtc, source: bytes, name: bytes, options: list[bytes], kind: str, arch: str):  # type: ignore[no-untyped-def]
    err, prog = nvrtc.nvrtcCreateProgram(source, name, 0, [], [])
    if int(err) != 0:
        return None, f"nvrtcCreateProgram failed: {err}", True
    try:
        opts = options + [f"--gpu-architecture={arch}".encode()]
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        _, size = nvrtc.nvrtcGetProgramLogSize(prog)
        log = b" " * size
        nvrtc.nvrtcGetProgramLog(prog, log)
        text = log.rstrip(b"\0 ").decode(errors="replace")
        if int(err) != 0:
            return None, text, True
        if text.strip():
            return None, text, False
        get_size, get = ((nvrtc.nvrtcGetPTXSize, nvrtc.nvrtcGetPTX) if kind == "ptx"
                         else (nvrtc.nvrtcGetCUBINSize, nvrtc.nvrtcGetCUBIN))
        _, size = get_size(prog)
        out = b" " * size
        (err,) = get(prog, out)
        if int(err) != 0:
            return None, f"reading the {kind} failed: {err}", True
        return bytes(out), "", False
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


ADDR_NO_RANDOMIZE = 0x0040000
_REEXEC = "EMBER_NVRTC_WORKER_REEXEC"


def _fix_layout() -> bool:
    """Turn address-space randomization off and re-exec (does not return), or say it is off or can't be."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import os
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        current = libc.personality(0xFFFFFFFF)
    except (OSError, AttributeError):
        return False
    if current != -1 and current & ADDR_NO_RANDOMIZE:
        return True
    if current == -1 or os.environ.get(_REEXEC) or libc.personality(current | ADDR_NO_RANDOMIZE) == -1:
        return False
    os.environ[_REEXEC] = "1"
    os.execv(sys.executable, [sys.executable, os.path.abspath(__file__)])
    return False  # not reached


def main() -> int:
    fixed = _fix_layout()
    request = json.loads(sys.stdin.buffer.read())
    try:
        from cuda.bindings import nvrtc
    except ImportError as err:
        sys.stdout.write(json.dumps({"ok": False, "arch": "", "log": f"cuda-python is not importable: {err}",
                                     "failed": True}) + "\n")
        return 0
    source, name = request["source"].encode(), request["name"].encode()
    options = [o.encode() for o in request["options"]]
    outputs: list[bytes] = []
    for kind, arch in request["builds"]:
        data, log, failed = _compile(nvrtc, source, name, options, kind, arch)
        if data is None:
            sys.stdout.write(json.dumps({"ok": False, "arch": arch, "log": log, "failed": failed}) + "\n")
            return 0
        outputs.append(data)
    sys.stdout.write(json.dumps({"ok": True, "sizes": [len(o) for o in outputs], "fixed_layout": fixed}) + "\n")
    sys.stdout.flush()
    for data in outputs:
        sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
