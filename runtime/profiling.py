"""Per-layer times: what each launch step takes, for `ember bench --layer-times`.

While a context has a `LayerTimes` attached (`context.layer_times = LayerTimes()`), its
runs record each launch step's time: on the GPU, a pair of CUDA events around the launch,
with CUDA graphs set aside (kernels are launched one by one, so the figures include no
graph replay but each kernel's own time); on the host arena, the wall clock around the
step's reference op. Steps are keyed by their index in the program bound at the run's
shape and carry the kernel's name; `per_kernel()` adds a kernel's steps up, per run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass
class LayerTimes:
    runs: int = 0
    steps: dict[int, list[float]] = field(default_factory=dict)    # step -> ms, one per run
    kernels: dict[int, str] = field(default_factory=dict)          # step -> kernel name
    pending: list[tuple[int, Callable[[], float]]] = field(default_factory=list)

    def record(self, step: int, kernel: str, elapsed: Callable[[], float]) -> None:
        """A step's time, read when `collect` runs (a GPU event pair resolves later)."""
        self.kernels[step] = kernel
        self.pending.append((step, elapsed))

    def end_run(self) -> None:
        self.runs += 1

    def collect(self) -> None:
        for step, elapsed in self.pending:
            self.steps.setdefault(step, []).append(float(elapsed()))
        self.pending.clear()

    def per_step(self) -> dict[int, float]:
        """Mean ms per run of each step."""
        self.collect()
        return {t: sum(ms) / max(self.runs, 1) for t, ms in sorted(self.steps.items())}

    def per_kernel(self) -> dict[str, float]:
        """Mean ms per run of each kernel (its steps added up), the slowest first."""
        out: dict[str, float] = {}
        for t, ms in self.per_step().items():
            out[self.kernels[t]] = out.get(self.kernels[t], 0.0) + ms
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))


__all__ = ["LayerTimes"]


