"""The memory planner: one arena for every activation, laid out from value lifetimes.

Time is the program's step index. A buffer lives from the step that first writes it
to the last step that reads it, both included: a step's reads and writes are live at
once, so a step never writes over what it reads. Inputs are written before step 0
(time -1), outputs are read after the last step (time S, S steps in all), and a view
(kind "view", reshape and friends) has no buffer of its own: it reads its source's,
so its reads extend the source's life. Scratch buffers belong to an op: the j-th
scratch argument of every launch of one op (consecutive launch steps with the same
`ops`) names the op's j-th scratch buffer, sized for the largest request and live
from its first launch to its last.

Placement is greedy by size with best fit (as TFLite's arena planner): buffers are
taken largest first, and each goes into the smallest gap, among the buffers already
placed whose lifetimes overlap its own, that holds it, or above them all. A few
orders are tried and the smallest arena kept; every size and offset is a multiple of
`alignment` (256 bytes). The peak of live bytes (the most bytes live at one time,
aligned sizes) is the lower bound any placement must reach; the sum of all
activations is what an arena with no reuse would need.

Weights, constants and values that live on the host (sequences, strings) take no arena
space, nor do values and scratch buffers sized at run time (kind "dynamic": their sizes
depend on run-time symbols, such as NonZero's count); the executors allocate those per run.
"""

from __future__ import annotations

import bisect
import heapq
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from ember.ir.program import ARENA_KINDS, Program, op_groups, root_of

ALIGNMENT = 256


def align(n: int, alignment: int = ALIGNMENT) -> int:
    return (int(n) + alignment - 1) // alignment * alignment


@dataclass
class Buffer:
    """One arena allocation: a value (`value` = its id) or an op's scratch slot."""

    key: str                 # "v12" for value 12, "s7.0" for scratch slot 0 of the op whose launches start at step 7
    nbytes: int              # bytes asked for
    start: int               # first step it is live at (-1: before the first step)
    end: int                 # last step it is live at (S: after the last step)
    value: int | None = None
    offset: int = 0

    @property
    def size(self) -> int:
        return align(self.nbytes)

    def overlaps(self, other: "Buffer") -> bool:
        return self.start <= other.end and other.start <= self.end

    def to_json(self) -> list[Any]:
        return [self.key, self.offset, self.nbytes, self.start, self.end]


@dataclass
class MemoryPlan:
    """Where each buffer sits in the arena, and the figures to judge the layout by."""

    arena_bytes: int
    peak_live_bytes: int
    sum_bytes: int
    buffers: list[Buffer]
    alignment: int = ALIGNMENT
    order: str = ""
    offsets: dict[int, int] = field(default_factory=dict)           # value id -> byte offset
    scratch: dict[tuple[int, int], int] = field(default_factory=dict)  # (step, arg index) -> byte offset
    scratch_slots: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # first step -> [(offset, nbytes)]
    extra_reads: dict[int, list[int]] = field(default_factory=dict)  # step -> values its IR op reads beyond its kernel

    def report(self) -> dict[str, Any]:
        ratio = self.arena_bytes / self.peak_live_bytes if self.peak_live_bytes else 1.0
        return {"arena_bytes": self.arena_bytes, "peak_live_bytes": self.peak_live_bytes,
                "sum_bytes": self.sum_bytes, "buffers": len(self.buffers), "arena_over_peak": round(ratio, 4)}

    def to_json(self) -> dict[str, Any]:
        return {
            "alignment": self.alignment, "arena_bytes": self.arena_bytes, "peak_live_bytes": self.peak_live_bytes,
            "sum_bytes": self.sum_bytes, "order": self.order,
            "buffers": [b.to_json() for b in self.buffers],
            "scratch": [[step, arg, off] for (step, arg), off in sorted(self.scratch.items())],
            "extra_reads": [[step, vids] for step, vids in sorted(self.extra_reads.items())],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "MemoryPlan":
        buffers = []
        for key, offset, nbytes, start, end in data["buffers"]:
            value = int(key[1:]) if key.startswith("v") else None
            buffers.append(Buffer(key, int(nbytes), int(start), int(end), value, int(offset)))
        plan = cls(int(data["arena_bytes"]), int(data["peak_live_bytes"]), int(data["sum_bytes"]), buffers,
                   int(data.get("alignment", ALIGNMENT)), str(data.get("order", "")))
        plan.offsets = {b.value: b.offset for b in buffers if b.value is not None}
        plan.scratch = {(int(s), int(a)): int(o) for s, a, o in data.get("scratch", [])}
        plan.extra_reads = {int(t): [int(v) for v in vids] for t, vids in data.get("extra_reads", [])}
        plan._index_scratch()
        return plan

    def _index_scratch(self) -> None:
        slots: dict[int, list[tuple[int, int]]] = {}
        for b in self.buffers:
            if b.value is None:
                first = int(b.key[1:].split(".")[0])
                slots.setdefault(first, []).append((b.offset, b.nbytes))
        self.scratch_slots = slots

    def check(self) -> list[str]:
        """Buffers outside the arena or misaligned, and pairs of buffers that are live at once and
        share bytes (none, for a sound plan; for an unsound one, each buffer's first conflict).

        A sweep over the steps, keeping the live buffers ordered by offset: a buffer conflicts
        with a live one only if it overlaps one of its two neighbours there, since the live ones
        are disjoint. O(n log n), so an engine's load can afford it on plans of any size."""
        problems = []
        bs = sorted((b for b in self.buffers if b.nbytes > 0), key=lambda b: (b.start, b.offset, b.key))
        live: list[tuple[int, int, int]] = []      # (offset, end byte, index into bs), by offset
        expiry: list[tuple[int, int, int]] = []    # (last step, offset, index) of the live ones
        for i, b in enumerate(bs):
            if b.offset < 0 or b.offset % self.alignment or b.offset + b.nbytes > self.arena_bytes:
                problems.append(f"{b.key} at {b.offset} (+{b.nbytes}) is misaligned or outside the arena")
                continue
            while expiry and expiry[0][0] < b.start:
                _, offset, j = heapq.heappop(expiry)
                del live[bisect.bisect_left(live, (offset, offset + bs[j].nbytes, j))]
            entry = (b.offset, b.offset + b.nbytes, i)
            at = bisect.bisect_left(live, entry)
            neighbours = [live[at - 1]] if at else []
            if at < len(live):
                neighbours.append(live[at])
            clash = [bs[j] for start, end, j in neighbours if start < entry[1] and entry[0] < end]
            if clash:
                a = clash[0]
                problems.append(f"{a.key} [{a.start},{a.end}] and {b.key} [{b.start},{b.end}] share bytes")
                continue
            live.insert(at, entry)
            heapq.heappush(expiry, (b.end, b.offset, i))
        return problems


def lifetimes(program: Program, extra_reads: Mapping[int, Iterable[int]] | None = None) -> list[Buffer]:
    """Every arena buffer of the program with its lifetime (offsets not yet chosen).

    `extra_reads` ({step: value ids}) adds reads the steps do not list: the host-arena
    executor runs a launch's IR op, which may read operands its kernel does not (the
    shape operand of ember.shape, the static bounds of ember.range)."""
    values, steps = program.values, program.steps
    end_of_time = len(steps)
    start: dict[int, int] = {}
    end: dict[int, int] = {}

    def touch(vid: int, t: int) -> None:
        r = root_of(values, vid)
        start[r] = min(start.get(r, t), t)
        end[r] = max(end.get(r, t), t)

    for port in program.inputs:
        touch(port.value, -1)
    for t, step in enumerate(steps):
        for vid in step.writes:
            touch(vid, t)
        for vid in step.reads:
            touch(vid, t)
    for t, vids in (extra_reads or {}).items():
        for vid in vids:
            touch(int(vid), int(t))
    for port in program.outputs:
        touch(port.value, end_of_time)

    buffers = []
    for vid in sorted(start):
        info = values[vid]
        if not info.in_arena or int(info.nbytes) == 0:
            continue
        buffers.append(Buffer(f"v{vid}", int(info.nbytes), start[vid], end[vid], vid))

    for first, last in op_groups(steps):
        sizes: list[int] = []
        for t in range(first, last + 1):
            j = 0
            for arg in steps[t].args:  # type: ignore[union-attr]
                if arg.kind == "scratch":
                    if j == len(sizes):
                        sizes.append(0)
                    if isinstance(arg.value, int):  # (sized at run time: allocated per run)
                        sizes[j] = max(sizes[j], arg.value)
                    j += 1
        for j, nbytes in enumerate(sizes):
            if nbytes > 0:
                buffers.append(Buffer(f"s{first}.{j}", nbytes, first, last))
    return buffers


def peak_live_bytes(buffers: Iterable[Buffer], alignment: int = ALIGNMENT) -> int:
    """The most (aligned) bytes live at one time: no placement can use less."""
    events: dict[int, int] = {}
    for b in buffers:
        size = align(b.nbytes, alignment)
        events[b.start] = events.get(b.start, 0) + size
        events[b.end + 1] = events.get(b.end + 1, 0) - size
    live = peak = 0
    for t in sorted(events):
        live += events[t]
        peak = max(peak, live)
    return peak


ORDERS: dict[str, Callable[[Buffer], tuple]] = {
    "size": lambda b: (-b.size, b.start, b.end, b.key),
    "area": lambda b: (-b.size * (b.end - b.start + 1), -b.size, b.start, b.key),
    "long-first": lambda b: (-(b.end - b.start), -b.size, b.start, b.key),
    "start": lambda b: (b.start, -b.size, b.key),
}


JITTERED = 12   # size orders with seeded noise, tried after ORDERS while the arena is above the peak


def _orders(buffers: Sequence[Buffer]) -> Iterator[tuple[str, Callable[[Buffer], tuple]]]:
    """ORDERS, then sizes scaled by up to 1.5x of seeded noise: greedy best fit misses the peak
    on chains of equal buffers that a slightly different order packs (a window keeping its
    source alive, say); the seeds make the plan the same on every build."""
    yield from ORDERS.items()
    for seed in range(JITTERED):
        rng = random.Random(seed)
        noise = {b.key: 1.0 + 0.5 * rng.random() for b in buffers}
        yield f"jitter-{seed}", lambda b, noise=noise: (-b.size * noise[b.key], b.key)


def _place(buffers: Sequence[Buffer], key: Callable[[Buffer], tuple], alignment: int) -> tuple[int, dict[str, int]]:
    order = sorted(buffers, key=key)
    n = len(order)
    starts = np.empty(n, np.int64)
    ends = np.empty(n, np.int64)
    offs = np.empty(n, np.int64)
    sizes = np.empty(n, np.int64)
    placed = 0
    top = 0
    out: dict[str, int] = {}
    for b in order:
        size = align(b.nbytes, alignment)
        live = (starts[:placed] <= b.end) & (b.start <= ends[:placed])
        idx = np.nonzero(live)[0]
        best, best_gap = None, None
        cursor = 0
        if len(idx):
            by_offset = idx[np.argsort(offs[idx], kind="stable")]
            for o, s in zip(offs[by_offset].tolist(), sizes[by_offset].tolist()):
                gap = o - cursor
                if gap >= size and (best_gap is None or gap < best_gap):
                    best, best_gap = cursor, gap
                cursor = max(cursor, o + s)
        offset = cursor if best is None else best
        starts[placed], ends[placed], offs[placed], sizes[placed] = b.start, b.end, offset, size
        placed += 1
        out[b.key] = offset
        top = max(top, offset + size)
    return top, out


def plan_memory(program: Program, alignment: int = ALIGNMENT,
                extra_reads: Mapping[int, Iterable[int]] | None = None) -> MemoryPlan:
    """Lay out the arena of a concrete program (ir/program.py; see `lifetimes` for `extra_reads`)."""
    buffers = lifetimes(program, extra_reads)
    peak = peak_live_bytes(buffers, alignment)
    total = sum(int(v.nbytes) for v in program.values if v.kind == "activation" and v.dtype != "str")
    best: tuple[int, str, dict[str, int]] | None = None
    for name, key in _orders(buffers):
        arena, offsets = _place(buffers, key, alignment)
        if best is None or arena < best[0]:
            best = (arena, name, offsets)
        if arena == peak:
            break
    arena, order, offsets = best if best is not None else (0, "", {})
    for b in buffers:
        b.offset = offsets[b.key]
    plan = MemoryPlan(arena, peak, total, buffers, alignment, order)
    plan.extra_reads = {int(t): sorted({int(v) for v in vids}) for t, vids in (extra_reads or {}).items() if vids}
    plan.offsets = {b.value: b.offset for b in buffers if b.value is not None}
    steps = program.steps
    for first, last in op_groups(steps):
        slots = {int(b.key.split(".")[1]): b.offset for b in buffers
                 if b.value is None and b.key.startswith(f"s{first}.")}
        for t in range(first, last + 1):
            j = 0
            for a, arg in enumerate(steps[t].args):  # type: ignore[union-attr]
                if arg.kind == "scratch" and isinstance(arg.value, int):
                    plan.scratch[(t, a)] = slots.get(j, 0)
                if arg.kind == "scratch":
                    j += 1
    plan._index_scratch()
    return plan


__all__ = ["ALIGNMENT", "ARENA_KINDS", "Buffer", "MemoryPlan", "plan_memory", "lifetimes", "peak_live_bytes",
           "op_groups", "root_of", "align"]
