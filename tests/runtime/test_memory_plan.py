"""The memory planner: lifetimes (views, inputs, outputs, scratch), soundness on random
programs, and the arena against the peak of live bytes on every fixture."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ember.ir.program import Program
from ember.runtime.memory_plan import MemoryPlan, lifetimes, peak_live_bytes, plan_memory

MODELS = sorted(p.stem for p in (Path(__file__).parent.parent / "fixtures" / "onnx").glob("*.onnx"))


def program(values, steps, inputs=(), outputs=(), strings=()):
    vals = []
    for i, (kind, nbytes, *alias) in enumerate(values):
        v = {"id": i, "name": f"v{i}", "dtype": "str" if i in strings else "u8", "shape": [nbytes], "kind": kind,
             "nbytes": nbytes}
        if alias:
            v["alias"] = alias[0]
        vals.append(v)
    out_steps = []
    for s in steps:
        kind, reads, writes, *rest = s
        step = {"kind": kind, "reads": list(reads), "writes": list(writes), "ops": [rest[0] if rest else len(out_steps)]}
        if kind == "launch":
            step.update(kernel="k", grid=[1, 1, 1], block=[1, 1, 1], shared=0,
                        args=[{"value": v} for v in [*writes, *reads]] + [{"scratch": n} for n in (rest[1:] or [])])
        out_steps.append(step)
    return Program.from_json({"values": vals, "steps": out_steps, "kernels": [],
                              "inputs": [{"name": f"in{i}", "value": v} for i, v in enumerate(inputs)],
                              "outputs": [{"name": f"out{i}", "value": v} for i, v in enumerate(outputs)]})


def buffers_by_key(plan: MemoryPlan):
    return {b.key: b for b in plan.buffers}


def test_a_chain_reuses_memory_and_meets_the_peak():
    # x -> a -> b -> c -> y: at most two neighbours live at once.
    p = program([("input", 1000), ("activation", 1000), ("activation", 1000), ("activation", 1000),
                 ("activation", 1000)],
                [("host", [0], [1]), ("host", [1], [2]), ("host", [2], [3]), ("host", [3], [4])],
                inputs=[0], outputs=[4])
    plan = plan_memory(p)
    assert plan.peak_live_bytes == 2 * 1024
    assert plan.arena_bytes == plan.peak_live_bytes
    assert plan.sum_bytes == 4000  # activations only, unaligned
    assert plan.check() == []
    assert all(b.offset % 256 == 0 for b in plan.buffers)


def test_lifetimes_inputs_from_the_start_outputs_to_the_end():
    p = program([("input", 10), ("activation", 10), ("activation", 10)],
                [("host", [0], [1]), ("host", [1], [2])], inputs=[0], outputs=[1, 2])
    b = buffers_by_key(plan_memory(p))
    assert (b["v0"].start, b["v0"].end) == (-1, 0)
    assert (b["v1"].start, b["v1"].end) == (0, 2)  # an output, read after the last step
    assert (b["v2"].start, b["v2"].end) == (1, 2)


def test_a_view_keeps_its_source_alive():
    # v2 is a view of v1 read at step 3: v1 must survive steps 1..3, so v3 (written at step 2) cannot take its place.
    p = program([("input", 512), ("activation", 512), ("view", 512, 1), ("activation", 512), ("activation", 512)],
                [("host", [0], [1]), ("host", [0], [3]), ("host", [3], [4]), ("host", [2, 4], [])],
                inputs=[0], outputs=[4])
    plan = plan_memory(p)
    b = buffers_by_key(plan)
    assert "v2" not in b  # views take no space
    assert b["v1"].end == 3
    assert plan.check() == []
    assert not (b["v1"].offset == b["v3"].offset)


def test_scratch_is_shared_by_the_launches_of_one_op_and_sized_for_the_largest():
    # One op (index 7) with two launches: scratch 300 then 900 bytes; another op's launch after it.
    p = program([("input", 256), ("activation", 256), ("activation", 256)],
                [("launch", [0], [], 7, 300), ("launch", [0], [1], 7, 900), ("launch", [1], [2], 8, 100)],
                inputs=[0], outputs=[2])
    plan = plan_memory(p)
    b = buffers_by_key(plan)
    assert b["s0.0"].nbytes == 900 and (b["s0.0"].start, b["s0.0"].end) == (0, 1)
    assert plan.scratch[(0, 1)] == plan.scratch[(1, 2)] == b["s0.0"].offset
    assert plan.scratch[(2, 2)] == b["s2.0"].offset
    assert plan.scratch_slots[0] == [(b["s0.0"].offset, 900)]
    assert plan.check() == []


def test_host_values_strings_weights_take_no_arena_space():
    p = program([("input", 64), ("weight", 4096), ("host", 8), ("activation", 64)],
                [("host", [0, 1], [2]), ("host", [2], [3])], inputs=[0], outputs=[3], strings=[3])
    keys = {b.key for b in lifetimes(p)}
    assert keys == {"v0"}


def test_plan_json_round_trip():
    p = program([("input", 100), ("activation", 3000), ("activation", 50)],
                [("launch", [0], [1], 0, 77), ("host", [1], [2])], inputs=[0], outputs=[2])
    plan = plan_memory(p)
    again = MemoryPlan.from_json(plan.to_json())
    assert again.to_json() == plan.to_json()
    assert again.offsets == plan.offsets and again.scratch == plan.scratch
    assert again.scratch_slots == plan.scratch_slots


@pytest.mark.parametrize("seed", range(40))
def test_random_programs_get_sound_plans_near_the_peak(seed):
    rng = random.Random(seed)
    n_inputs = rng.randint(1, 3)
    values: list[tuple] = [("input", rng.choice([4, 300, 5000, 70000])) for _ in range(n_inputs)]
    steps = []
    for _ in range(rng.randint(3, 40)):
        live = list(range(len(values)))
        reads = rng.sample(live, k=min(len(live), rng.randint(1, 3)))
        if rng.random() < 0.2:
            src = rng.choice(live)
            root = values[src][2] if values[src][0] == "view" else src
            values.append(("view", values[root][1], root))
            continue
        out = len(values)
        values.append(("activation", rng.choice([4, 256, 257, 1000, 65536, 300000])))
        scratch = [rng.choice([16, 4096])] if rng.random() < 0.3 else []
        steps.append(("launch" if scratch else "host", reads, [out], len(steps), *scratch))
    outputs = rng.sample(range(n_inputs, len(values)), k=min(2, len(values) - n_inputs))
    plan = plan_memory(program(values, steps, inputs=range(n_inputs), outputs=outputs))
    assert plan.check() == []
    assert plan.peak_live_bytes <= plan.arena_bytes <= sum(b.size for b in plan.buffers)
    assert peak_live_bytes(plan.buffers) == plan.peak_live_bytes


@pytest.mark.parametrize("name", MODELS)
def test_fixture_arena_is_within_15_percent_of_the_peak(built, name):
    engine = built.engine(name)
    report = engine.memory_report()
    assert engine.plan.check() == []
    assert report["arena_bytes"] <= 1.15 * report["peak_live_bytes"], report
    assert report["arena_bytes"] <= report["sum_bytes"] + 256 * report["buffers"]


def test_extra_reads_extend_lifetimes():
    """What a launch's IR op reads beyond its kernel (the host arena runs the op) stays live."""
    p = program([("input", 512), ("activation", 8), ("activation", 512), ("activation", 512)],
                [("host", [0], [1]), ("host", [0], [2]), ("launch", [2], [3], 9)], inputs=[0], outputs=[3])
    assert buffers_by_key(plan_memory(p))["v1"].end == 0
    plan = plan_memory(p, extra_reads={2: [1]})
    assert buffers_by_key(plan)["v1"].end == 2 and plan.check() == []
    assert MemoryPlan.from_json(plan.to_json()).extra_reads == {2: [1]}
