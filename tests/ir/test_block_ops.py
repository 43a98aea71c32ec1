"""A block's ops: a linked list edited in O(1), read through `block.ops` as a list is read."""

import pytest

from ember import ir
from ember.ir.core import Block
from tests.support.work_meter import growth, work


def chain(n: int) -> ir.Module:
    b = ir.Builder()
    v = b.input("x", ir.f32[4])
    for i in range(n):
        v = b.relu(v, loc=f"r{i}")
    b.output("y", v)
    return b.build()


def names(block: Block) -> list[str]:
    return [str(op.loc) for op in block.ops]


def test_block_ops_reads_as_a_list():
    body = chain(5).main.body
    ops = list(body.ops)
    assert len(body.ops) == 5 and body.ops[0] is ops[0] and body.ops[-1] is ops[-1]
    assert body.ops[1:3] == ops[1:3] and list(reversed(body.ops)) == ops[::-1]
    assert body.ops.index(ops[3]) == 3 and ops[2] in body.ops and body.ops == ops
    assert "r4" in repr(body.ops)


def test_inserting_and_erasing_keep_the_order():
    m = chain(4)
    body = m.main.body
    r1, r2 = body.ops[1], body.ops[2]
    new = ir.lookup("ember.neg").create([r1.result], loc="n")
    body.insert_before(r2, new)
    assert names(body) == ["r0", "r1", "n", "r2", "r3"]
    r2.set_operand(0, new.result)
    r1_users = list(r1.result.users)
    assert r1_users == [new]
    body.ops[3].result.replace_all_uses_with(new.result)
    body.ops[3].erase()
    assert names(body) == ["r0", "r1", "n", "r3"] and r2 not in body.ops and r2.parent is None
    ir.verify(m)
    with pytest.raises(ValueError, match="not an op of this block"):
        body.insert_before(r2, ir.lookup("ember.neg").create([new.result]))


def test_the_list_methods_edit_the_block():
    body = chain(4).main.body
    r0, r1, r2, r3 = body.ops
    body.ops.remove(r2)  # taken out of the order (its parent is the caller's business, as with a list)
    assert names(body) == ["r0", "r1", "r3"] and r2 not in body.ops
    body.ops.insert(0, r2)
    assert names(body) == ["r2", "r0", "r1", "r3"]
    del body.ops[0]
    body.ops.insert(len(body.ops), r2)
    assert names(body) == ["r0", "r1", "r3", "r2"]
    body.ops = [r0, r1, r2, r3]  # assignment replaces the order
    assert names(body) == ["r0", "r1", "r2", "r3"]
    body.ops[1:3] = [r2, r1]
    assert names(body) == ["r0", "r2", "r1", "r3"]
    with pytest.raises(ValueError, match="already in a block"):
        body.ops.append(r0)


def test_walk_sees_the_ops_there_when_it_started():
    m = chain(3)
    body = m.main.body
    seen = []
    for op in body.walk():
        seen.append(str(op.loc))
        if op is body.ops[0]:
            body.insert_before(body.ops[1], ir.lookup("ember.neg").create([op.result], loc="early"))
            body.append(ir.lookup("ember.neg").create([op.result], loc="late"))
    assert seen == ["r0", "r1", "r2"]
    assert names(body) == ["r0", "early", "r1", "r2", "late"]


def test_iterating_while_erasing_visits_every_op_once():
    """Iteration reads the order as it was when it began (a list skipped the op after
    each one erased)."""
    m = chain(6)
    body = m.main.body
    body.set_outputs([body.args[0]])
    visited = []
    for op in reversed(body.ops):
        visited.append(str(op.loc))
        op.erase()
    assert visited == ["r5", "r4", "r3", "r2", "r1", "r0"] and len(body.ops) == 0


def test_uses_keep_their_order_and_drop_in_constant_time():
    b = ir.Builder()
    x = b.input("x", ir.f32[4])
    outs = [b.relu(x, loc=f"u{i}") for i in range(3)]
    b.output("y", b.add(outs[0], outs[1]))
    b.output("z", outs[2])
    m = b.build()
    assert [str(u.user.loc) for u in x.uses] == ["u0", "u1", "u2"]
    first = m.main.body.ops[0]
    first.set_operand(0, first.result)  # (not valid IR; only the use list matters here)
    first.set_operand(0, x)
    assert [str(u.user.loc) for u in x.uses] == ["u1", "u2", "u0"]


def test_edits_cost_the_same_in_a_block_of_any_size():
    """Insertions and erasures in the middle of a block whose ops were just read: past a
    bounded first cost (the order list is updated in place up to 16 times, then dropped
    until the next read), each edit costs the same at 2k and 8k ops."""
    def edits(n: int, k: int) -> int:
        body = chain(n).main.body
        middle = body.ops[n // 2]
        neg = ir.lookup("ember.neg")

        def go() -> None:
            for _ in range(k):
                op = neg.create([middle.result])
                body.insert_before(middle, op)
                op.erase()
        assert len(body.ops) == n
        return work(go)

    def per_edit(n: int) -> float:
        return (edits(n, 1_000) - edits(n, 500)) / 500

    edits(100, 10)
    assert growth(per_edit(2_000), per_edit(8_000)) < 1.1
    assert edits(8_000, 500) < 40 * 8_000 + 500 * per_edit(8_000)  # the first cost is O(n), once
