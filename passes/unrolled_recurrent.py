"""Unrolled recurrent layers as one ember.lstm, ember.gru or ember.rnn (run by recognize-recurrent).

Exporters unroll a recurrent layer over a sequence of known length: Keras' `unroll=True`
layers, and a Python loop over torch's LSTMCell/GRUCell/RNNCell exported to ONNX, become one
cell per step, each reading its step's slice of the sequence (`squeeze(split(x))`,
`squeeze(slice(x, t:t+1))` or `gather(x, t)`, on the time axis 0, or 1 for batch-first
sequences) and the previous step's states, with the same weights every step.

Contract. The rule roots at the last step's hidden state h_T and fires only when all of this
holds, so that the op computes what the chain did, up to float rounding:
- the steps read slices 0..S-1 of one rank-3 sequence of S steps, S >= 2;
- each step is the last one again, op for op: same ops, attributes and result types, its
  operands wired alike, and every constant the same value or an equal one (so every step
  uses the same weights);
- step t reads the hidden state h_{t-1} of step t-1 (found as the value multiplied by a
  constant matrix whose producer depends on x_{t-1}) and the other states (an LSTM's c) that
  step t-1 computes where the last step computes its own; step 0 reads initial states that do
  not depend on the sequence;
- the cell is the op's: its gate pre-activations (the values affine in x_t and h_{t-1} that
  feed something that is not) are read off as matrices by probing a float64 copy of the
  cell with unit vectors, assembled into W, R and B in a gate order, and the resulting
  one-step op must reproduce the float64 cell on random inputs to 1e-9 (relative). The
  op's default activations are tried (and tanh, relu or sigmoid for a simple RNN), so a
  cell with other activations, other gate wiring or extra terms does not fire;
- the cells' values are used only by the cells, except the hidden states (the op's output
  sequence supplies them: a stack of all of them in order is the sequence itself, another
  use a slice of it) and the last step's other states (the op's final states). A use that
  precedes h_T in the block keeps the chain.

Not recognized: reversed or bidirectional unrolls (reverse the sequence first: the pass
then sees a forward chain), peepholes, clipping, masks and sequence lengths, a cell whose
states are not plain values of [batch, hidden], and cells not in float32.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ember.ir.builder import Builder
from ember.ir.core import Module, Operation, Value
from ember.ir.interpret import interpret
from ember.ir.opdef import Commutative, Op
from ember.ir.types import TensorType
from ember.passes.rewrite import Match, P, Rule, RuleSet, erase_if_dead, known_value

MAX_CONE_OPS = 100_000  # the most ops one candidate's analysis visits
PREFILTER_OPS = 64  # how far back from a candidate root a last-step slice must lie
AGREEMENT = 1e-9  # max |op - cell| <= AGREEMENT * max(1, max |cell|), both in float64
PROBE_BATCH = 3
INLINE_LIMIT = 64  # the most elements an emitted constant holds inline (fold-constants' default)
LEAVES = ("ember.constant", "ember.weight")
LINEAR = ("ember.slice", "ember.split", "ember.squeeze", "ember.unsqueeze", "ember.reshape", "ember.transpose")
RNN_ACTIVATIONS = ("tanh", "relu", "sigmoid")


# -- the steps' slices ---------------------------------------------------------------------------------
def step_slice(v: Value | None) -> tuple[Value, int, int] | None:
    """(sequence, time axis, step) when `v` is one step of a rank-3 sequence: squeeze(split(x)),
    squeeze(slice(x, t:t+1)) or gather(x, t), on axis 0 or 1."""
    op = v.defining_op if v is not None else None
    if op is None:
        return None
    if op.name == "ember.gather":
        x, idx = op.operands[0], known_value(op.operands[1])
        if idx is None or idx.ndim != 0 or not _sequence(x):
            return None
        axis = op.attributes["axis"] % 3
        return _checked(x, axis, int(idx))
    if op.name != "ember.squeeze" or op.attributes["axes"] is None or len(op.attributes["axes"]) != 1:
        return None
    inner = op.operands[0].defining_op
    if inner is None or not _sequence(inner.operands[0]):
        return None
    x, axis = inner.operands[0], op.attributes["axes"][0] % 3
    if inner.name == "ember.split":
        if inner.attributes["axis"] % 3 != axis or any(_tensor(r).shape[axis] != 1 for r in inner.results):
            return None
        return _checked(x, axis, op.operands[0].index)
    if inner.name == "ember.slice":
        a = inner.attributes
        if list(a["axes"] or [0]) != [axis] or list(a["steps"] or [1]) != [1]:
            return None
        start, end = a["starts"][0], a["ends"][0]
        if not isinstance(start, int) or not isinstance(end, int) or end - start != 1 or start < 0:
            return None
        return _checked(x, axis, start)
    return None


def _sequence(x: Value | None) -> bool:
    t = _tensor(x)
    return t is not None and t.rank == 3


def _checked(x: Value, axis: int, t: int) -> tuple[Value, int, int] | None:
    if axis not in (0, 1):
        return None
    n = _tensor(x).shape[axis]  # type: ignore[union-attr]
    if not isinstance(n, int) or not -n <= t < n:
        return None
    return x, axis, t % n


def _tensor(v: Value | None) -> TensorType | None:
    return v.type if v is not None and isinstance(v.type, TensorType) and v.type.rank is not None else None


# -- levels: which step each value depends on last -----------------------------------------------------
@dataclass
class Chain:
    """What the analysis of one candidate finds."""

    x: Value
    axis: int
    steps: int
    level: dict[Value, int] = field(default_factory=dict)  # the last step a value depends on (-1: none)
    static: dict[Value, bool] = field(default_factory=dict)  # depends on constants only


def _levels(root: Value, x: Value, axis: int, steps: int) -> Chain | None:
    chain = Chain(x, axis, steps)
    level, static = chain.level, chain.static
    stack, seen = [root], 0
    while stack:
        v = stack[-1]
        if v in level:
            stack.pop()
            continue
        s = step_slice(v)
        if s is not None and s[0] is x and s[1] == axis:
            level[v], static[v] = s[2], False
            stack.pop()
            continue
        op = v.defining_op
        if op is None or op.regions:
            level[v], static[v] = -1, False
            stack.pop()
            continue
        if op.name in LEAVES:
            level[v], static[v] = -1, True
            stack.pop()
            continue
        pending = [o for o in op.operands if o is not None and o not in level]
        if pending:
            seen += 1
            if seen > MAX_CONE_OPS:
                return None
            stack.extend(pending)
            continue
        ins = [o for o in op.operands if o is not None]
        for r in op.results:
            level[r] = max((level[o] for o in ins), default=-1)
            static[r] = all(static[o] for o in ins)
        stack.pop()
    return chain


def _depends(v: Value, on: Value, chain: Chain, memo: dict[Value, bool]) -> bool:
    """Whether `v` depends on `on` (through values of `on`'s level or later); `memo` is for `on` only."""
    floor = chain.level[on]
    stack = [v]
    while stack:
        u = stack[-1]
        if u in memo:
            stack.pop()
            continue
        op = u.defining_op
        if u is on or op is None or chain.level.get(u, -1) < floor or chain.static.get(u, True) \
                or step_slice(u) is not None:
            memo[u] = u is on
            stack.pop()
            continue
        pending = [o for o in op.operands if o is not None and o not in memo]
        if pending:
            stack.extend(pending)
            continue
        memo[u] = any(memo[o] for o in op.operands if o is not None)
        stack.pop()
    return memo[v]


def _recurrent_operand(op: Operation) -> Value | None:
    """The left operand of a product by a constant matrix (matmul, or gemm without transposed a)."""
    if op.name == "ember.matmul":
        return op.operands[0]
    if op.name == "ember.gemm" and not op.attributes["trans_a"]:
        return op.operands[0]
    return None


def _hidden_states(chain: Chain, last: int) -> list[Value] | None:
    """h_0 .. h_{last-1}: per step, the value multiplied by a constant matrix that depends on
    the others of its step (a GRU also multiplies r * h by one)."""
    anchors: dict[int, list[Value]] = {}
    for v, lv in chain.level.items():
        op = v.defining_op
        if op is None or v.index != 0 or lv < 0:
            continue
        left = _recurrent_operand(op)
        if left is None or not chain.static.get(op.operands[1], False) or step_slice(left) is not None:
            continue
        if chain.level[left] == lv and not chain.static[left] and left not in anchors.get(lv, []):
            anchors.setdefault(lv, []).append(left)
    states = []
    for t in range(last):
        found = anchors.get(t, [])
        latest = [a for a in found if all(b is a or _depends(a, b, chain, {}) for b in found)]
        if len(latest) != 1:
            return None
        states.append(latest[0])
    return states


# -- the last step as a template; the others aligned with it -------------------------------------------
@dataclass
class Template:
    root: Value
    x_t: Value
    h_prev: Value
    extras: list[Value]  # the other states it reads (an LSTM's c_{T-1})
    ops: list[Operation]  # its ops (static ones included), in block order


def _template(chain: Chain, root: Value, h_prev: Value) -> Template | None:
    last = chain.steps - 1
    memo: dict[Value, bool] = {}
    x_t: Value | None = None
    extras: list[Value] = []
    ops: dict[Operation, None] = {}
    stack, seen = [root], set()
    while stack:
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        s = step_slice(v)
        if v is h_prev:
            continue
        if s is not None and s[0] is chain.x and s[1] == chain.axis:
            if s[2] != last or (x_t is not None and x_t is not v):
                return None
            x_t = v
            continue
        op = v.defining_op
        if op is None or op.regions:
            return None
        if not chain.static[v] and chain.level[v] < last and not _depends(v, h_prev, chain, memo):
            if chain.level[v] != last - 1:
                return None  # a value from before the previous step, or from outside the chain
            extras.append(v)
            continue
        ops[op] = None
        stack.extend(o for o in op.operands if o is not None)
    if x_t is None:
        return None
    block = root.defining_op.parent  # type: ignore[union-attr]
    if any(op.parent is not block for op in ops):
        return None
    position = {op: i for i, op in enumerate(block.ops)}
    return Template(root, x_t, h_prev, extras, sorted(ops, key=position.__getitem__))


@dataclass
class Alignment:
    """One step matched against the template: template value -> this step's value."""

    step: int
    map: dict[Value, Value] = field(default_factory=dict)
    reads: dict[Value, Value] = field(default_factory=dict)  # template state inputs -> what this step reads


def _align(chain: Chain, tpl: Template, step: int, h_t: Value, h_prev: Value | None) -> Alignment | None:
    al = Alignment(step)
    return al if _same(chain, tpl, al, tpl.root, h_t, h_prev) else None


def _same(chain: Chain, tpl: Template, al: Alignment, tv: Value, sv: Value, h_prev: Value | None) -> bool:
    if tv in al.map:
        return al.map[tv] is sv
    if tv is tpl.x_t:
        s = step_slice(sv)
        ok = s is not None and s[0] is chain.x and s[1] == chain.axis and s[2] == al.step
    elif tv is tpl.h_prev or tv in tpl.extras:
        if sv.type != tv.type:
            return False
        if al.step == 0:
            ok = chain.level.get(sv) == -1  # an initial state: no step's value
        else:
            ok = tv is not tpl.h_prev or sv is h_prev
        al.reads[tv] = sv
    elif chain.static[tv]:
        ok = _static_equal(tv, sv)
    else:
        ok = _same_op(chain, tpl, al, tv, sv, h_prev)
    if ok:
        al.map[tv] = sv
    return ok


def _same_op(chain: Chain, tpl: Template, al: Alignment, tv: Value, sv: Value, h_prev: Value | None) -> bool:
    top, sop = tv.defining_op, sv.defining_op
    if top is None or sop is None or top.name != sop.name or tv.index != sv.index or tv.type != sv.type \
            or len(top.operands) != len(sop.operands) or dict(top.attributes) != dict(sop.attributes):
        return False
    orders = [list(sop.operands)]
    if isinstance(sop, Op) and Commutative in sop.traits and len(orders[0]) == 2:
        orders.append(orders[0][::-1])
    for order in orders:
        trial = Alignment(al.step, dict(al.map), dict(al.reads))
        if all((a is None) == (b is None) and (a is None or _same(chain, tpl, trial, a, b, h_prev))
               for a, b in zip(top.operands, order)):
            al.map, al.reads = trial.map, trial.reads
            return True
    return False


def _static_equal(a: Value, b: Value, depth: int = 16) -> bool:
    """The same value, equal constants, or the same ops on such."""
    if a is b:
        return True
    ka, kb = known_value(a), known_value(b)
    if ka is not None or kb is not None:
        return ka is not None and kb is not None and ka.dtype == kb.dtype and ka.shape == kb.shape \
            and bool(np.array_equal(ka, kb))
    oa, ob = a.defining_op, b.defining_op
    if depth == 0 or oa is None or ob is None or oa.name != ob.name or a.index != b.index \
            or len(oa.operands) != len(ob.operands) or dict(oa.attributes) != dict(ob.attributes):
        return False
    return all((x is None) == (y is None) and (x is None or _static_equal(x, y, depth - 1))
               for x, y in zip(oa.operands, ob.operands))


# -- the cell's weights, read off a float64 copy ---------------------------------------------------------
def _clone(tpl: Template, chain: Chain, outputs: list[Value], module: Module | None) -> Module | None:
    """The template as a float64 function of x, h and the other states, returning `outputs`."""
    b = Builder("cell")
    if module is not None:
        b.module.symbols.update(module.symbols)
    mapping: dict[Value, Value] = {}
    for name, v in (("x", tpl.x_t), ("h", tpl.h_prev), *((f"s{k}", e) for k, e in enumerate(tpl.extras))):
        t = _tensor(v)
        if t is None or t.rank != 2 or t.dtype.np_dtype != np.float32:
            return None
        mapping[v] = b.input(name, _f64(t))
    for op in tpl.ops:
        if op.name in LEAVES:
            data = known_value(op.results[0])
            if data is None:
                return None
            mapping[op.results[0]] = b.constant(data.astype(np.float64) if data.dtype.kind == "f" else data)
            continue
        made = b.op(op.name, *(None if o is None else mapping[o] for o in op.operands), **dict(op.attributes))
        for r, n in zip(op.results, [made] if isinstance(made, Value) else list(made)):
            mapping[r] = n
    for k, v in enumerate(outputs):
        b.output(f"o{k}", mapping[v])
    return b.build()


def _f64(t: TensorType) -> TensorType:
    from ember.ir.types import f64
    return TensorType(f64, t.shape)


def _affine(tpl: Template, chain: Chain) -> dict[Value, bool]:
    """Which template values are affine in (x_t, h_{t-1}) (constants count)."""
    aff: dict[Value, bool] = {tpl.x_t: True, tpl.h_prev: True}
    for e in tpl.extras:
        aff[e] = False
    for op in tpl.ops:
        ins = [o for o in op.operands if o is not None]
        if all(chain.static[r] for r in op.results):
            ok = True
        elif op.name in ("ember.add", "ember.sub"):
            ok = all(aff.get(o, chain.static.get(o, False)) for o in ins)
        elif op.name in LINEAR or op.name == "ember.matmul" or (op.name == "ember.gemm" and not op.attributes["trans_a"]
                                            and op.attributes["alpha"] == 1.0 and op.attributes["beta"] == 1.0):
            ok = aff.get(ins[0], False) and all(chain.static.get(o, False) for o in ins[1:])
        else:
            ok = False
        for r in op.results:
            aff[r] = ok
    return aff


def _pre_activations(tpl: Template, chain: Chain, aff: dict[Value, bool]) -> tuple[list[Value], list[Value]]:
    """(the affine values that feed a non-affine one, the constant matrices that multiply a
    non-affine value: a GRU's (r * h) @ R_h)."""
    inside = set(tpl.ops)
    pre: list[Value] = []
    mats: list[Value] = []
    for op in tpl.ops:
        left = _recurrent_operand(op)
        if left is not None and not aff.get(left, False) and not chain.static[left]:
            mats.append(op.results[0])
        for r in op.results:
            if chain.static[r] or not aff[r]:
                continue
            if any(u in inside and not any(aff[q] for q in u.results) for u in r.users):
                pre.append(r)
    return pre, mats


def _unit_rows(cell: Module, batch: Any, n_in: int, n_hid: int, widths: list[int]) -> list[np.ndarray] | None:
    """Each output of `cell` on the rows 0, e_1.., e_{n_in+n_hid} of (x, h) (other states 0)."""
    eye = np.vstack([np.zeros((1, n_in + n_hid)), np.eye(n_in + n_hid)])
    chunk = batch if isinstance(batch, int) else len(eye)
    parts: list[list[np.ndarray]] = []
    for start in range(0, len(eye), chunk):
        rows = eye[start:start + chunk]
        pad = np.vstack([rows, np.zeros((chunk - len(rows), rows.shape[1]))])
        feeds = {"x": pad[:, :n_in], "h": pad[:, n_in:]}
        feeds.update({f"s{k}": np.zeros((chunk, w)) for k, w in enumerate(widths)})
        try:
            out = interpret(cell, feeds)
        except Exception:  # noqa: BLE001  (a cell the probe cannot run: no match)
            return None
        parts.append([np.asarray(out[k], np.float64)[:len(rows)] for k in sorted(out, key=lambda n: int(n[1:]))])
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]


@dataclass(frozen=True)
class Candidate:
    name: str
    w: np.ndarray  # [1, G*H, I], float64 (the op's constants are these, rounded to float32)
    r: np.ndarray  # [1, G*H, H]
    b: np.ndarray  # [1, 2*G*H]
    attrs: tuple[tuple[str, Any], ...]


def _candidates(blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]], mats: list[np.ndarray], n_extra: int,
                hidden: int) -> Iterator[Candidate]:
    """The ops whose gates the blocks (A [I,H], B [H,H], c [H]: pre = x A + h B + c) may be."""
    def make(name: str, gates: list[tuple[np.ndarray, np.ndarray, np.ndarray]], rb: list[np.ndarray] | None = None,
             r_last: np.ndarray | None = None, **attrs: Any) -> Candidate:
        w = np.concatenate([a.T for a, _, _ in gates])[None]
        rs = [bb.T for _, bb, _ in gates]
        if r_last is not None:
            rs[-1] = r_last
        wb = np.concatenate([c for _, _, c in gates])
        rbias = np.concatenate(rb) if rb is not None else np.zeros_like(wb)
        return Candidate(name, w, np.concatenate(rs)[None], np.concatenate([wb, rbias])[None],
                         tuple(sorted(attrs.items())))

    if n_extra == 1 and len(blocks) == 4:
        for order in itertools.permutations(range(4)):  # ember.lstm's i, o, f, c
            yield make("ember.lstm", [blocks[k] for k in order])
        return
    if n_extra != 0:
        return
    if len(blocks) == 1:
        for act in RNN_ACTIVATIONS:
            yield make("ember.rnn", blocks, **({} if act == "tanh" else {"activations": (act,)}))
        return
    both = [k for k, (a, bb, _) in enumerate(blocks) if a.any() and bb.any()]
    x_only = [k for k, (a, bb, _) in enumerate(blocks) if a.any() and not bb.any()]
    h_only = [k for k, (a, bb, _) in enumerate(blocks) if bb.any() and not a.any()]
    if len(both) != 2 or len(x_only) != 1 or len(h_only) > 1 or len(blocks) != 3 + len(h_only):
        return
    zero = np.zeros(hidden)
    for z, r in (both, both[::-1]):  # ember.gru's z, r, h
        xn = blocks[x_only[0]]
        if h_only:
            _, bn, cn = blocks[h_only[0]]
            yield make("ember.gru", [blocks[z], blocks[r], (xn[0], bn, xn[2])], rb=[zero, zero, cn],
                       linear_before_reset=True)
        for m in mats:
            if m.shape == (hidden, hidden):
                yield make("ember.gru", [blocks[z], blocks[r], xn], r_last=m.T, linear_before_reset=False)


def _step_op(cell: Module, cand: Candidate, module: Module | None) -> Module:
    """The candidate op for one step, as a float64 function of the cell's inputs."""
    fn = cell.functions["main"]
    b = Builder("candidate")
    if module is not None:
        b.module.symbols.update(module.symbols)
    ins = [b.input(n, a.type) for n, a in zip(fn.input_names, fn.body.args)]
    consts = [b.constant(a.astype(np.float64)) for a in (cand.w, cand.r, cand.b)]
    states = [b.unsqueeze(v, axes=(0,)) for v in ins[1:]]
    results = b.op(cand.name, b.unsqueeze(ins[0], axes=(0,)), *consts, None, *states, **dict(cand.attrs))
    b.output("o0", b.squeeze(results[1], axes=(0,)))
    for k, v in enumerate(results[2:]):
        b.output(f"o{k + 1}", b.squeeze(v, axes=(0,)))
    return b.build()


def _agrees(cell: Module, step: Module, batch: Any, widths: list[int], n_out: int) -> bool:
    rng = np.random.default_rng(0)
    n = batch if isinstance(batch, int) else PROBE_BATCH
    fn = cell.functions["main"]
    for _ in range(2):
        feeds = {name: rng.standard_normal((n, int(a.type.shape[1]))) for name, a in zip(fn.input_names, fn.body.args)}
        try:
            want, got = interpret(cell, feeds), interpret(step, feeds)
        except Exception:  # noqa: BLE001
            return False
        for k in range(n_out):
            a, c = np.asarray(want[f"o{k}"], np.float64), np.asarray(got[f"o{k}"], np.float64)
            if a.shape != c.shape or not np.all(np.isfinite(a)) \
                    or np.max(np.abs(a - c)) > AGREEMENT * max(1.0, float(np.max(np.abs(a)))):
                return False
    return True


def _identify(tpl: Template, chain: Chain, finals: list[Value], module: Module | None) -> Candidate | None:
    """The op whose one step computes the template's h_T and other states."""
    hidden_t, x_t = _tensor(tpl.root), _tensor(tpl.x_t)
    if hidden_t is None or x_t is None or hidden_t.rank != 2 or not isinstance(hidden_t.shape[1], int) \
            or not isinstance(x_t.shape[1], int):
        return None
    hidden, n_in, batch = hidden_t.shape[1], x_t.shape[1], hidden_t.shape[0]
    widths = [_tensor(e).shape[1] for e in tpl.extras]  # type: ignore[union-attr]
    if any(w != hidden for w in widths):
        return None
    aff = _affine(tpl, chain)
    pre, mat_values = _pre_activations(tpl, chain, aff)
    mat_ops = [v.defining_op.operands[1] for v in mat_values]  # type: ignore[union-attr]
    outputs = [tpl.root, *finals, *pre]
    cell = _clone(tpl, chain, outputs, module)
    if cell is None:
        return None
    rows = _unit_rows(cell, batch, n_in, hidden, widths)
    if rows is None:
        return None
    blocks = []
    for k in range(len(pre)):
        got = rows[1 + len(finals) + k]
        if got.ndim != 2 or got.shape[1] % hidden:
            return None
        c = got[0]
        a, bb = got[1:1 + n_in] - c, got[1 + n_in:] - c
        for j in range(0, got.shape[1], hidden):
            blocks.append((a[:, j:j + hidden], bb[:, j:j + hidden], c[j:j + hidden]))
    mats = []
    for m in mat_ops:
        data = _evaluate_static(m)
        if data is not None and data.ndim == 2:
            mats.append(data.astype(np.float64))
    for cand in _candidates(blocks, mats, len(tpl.extras), hidden):
        if _agrees(cell, _step_op(cell, cand, module), batch, widths, 1 + len(finals)):
            return cand
    return None


def _evaluate_static(v: Value) -> np.ndarray | None:
    """A constant matrix a product reads (a weight, or a transpose of one)."""
    data = known_value(v)
    if data is not None:
        return data
    op = v.defining_op
    if op is not None and op.name == "ember.transpose" and list(op.attributes["perm"]) == [1, 0]:
        inner = known_value(op.operands[0])
        return None if inner is None else inner.T
    return None


# -- the rule ------------------------------------------------------------------------------------------
def _last_slices(root: Value) -> list[tuple[Value, int, int]]:
    """The sequences of which a last step's slice lies close behind `root`."""
    found: list[tuple[Value, int, int]] = []
    queue, seen = deque([root]), set()
    while queue and len(seen) < PREFILTER_OPS:
        v = queue.popleft()
        if v in seen:
            continue
        seen.add(v)
        s = step_slice(v)
        if s is not None:
            if s[2] == _tensor(s[0]).shape[s[1]] - 1 and s not in found:  # type: ignore[union-attr,operator]
                found.append(s)
            continue
        op = v.defining_op
        if op is not None and op.name not in LEAVES:
            queue.extend(o for o in op.operands if o is not None)
    return found


def unrolled(m: Match, b: Builder) -> Value | None:
    root = m.root.results[0]
    t = _tensor(root)
    if len(m.root.results) != 1 or t is None or t.rank != 2 or t.dtype.np_dtype != np.float32:
        return None
    for x, axis, last in _last_slices(root):
        if last < 1:
            continue
        chain = _levels(root, x, axis, last + 1)
        if chain is None or chain.level[root] != last:
            continue
        built = _rewrite(chain, root, b)
        if built is not None:
            return built
    return None


def _rewrite(chain: Chain, root: Value, b: Builder) -> Value | None:
    last = chain.steps - 1
    hs = _hidden_states(chain, last)
    if hs is None:
        return None
    tpl = _template(chain, root, hs[-1])
    if tpl is None:
        return None
    aligned = []
    for t in range(last):
        al = _align(chain, tpl, t, hs[t], hs[t - 1] if t else None)
        if al is None:
            return None
        aligned.append(al)
    aligned.append(Alignment(last, {}, {v: v for v in (tpl.h_prev, *tpl.extras)}))
    # the other states: what step T-1 computes where the template reads it, fed step to step
    finals = []
    for e in tpl.extras:
        inner = [tv for tv, sv in aligned[last - 1].map.items() if sv is e and tv not in (tpl.h_prev, *tpl.extras)]
        if len(inner) != 1:
            return None
        finals.append(inner[0])
        for t in range(1, last):
            if aligned[t].reads.get(e) is not aligned[t - 1].map.get(inner[0]):
                return None
    hs = hs + [root]
    cells = _cell_ops(chain, tpl, aligned)
    if cells is None:
        return None
    uses = _outside_uses(cells, hs, finals, root)
    if uses is None:
        return None
    cand = _identify(tpl, chain, finals, b.module)
    if cand is None:
        return None
    return _emit(chain, tpl, aligned[0], cand, hs, finals, uses, b)


def _cell_ops(chain: Chain, tpl: Template, aligned: list[Alignment]) -> set[Operation] | None:
    """Every step's ops (not the constants): each belongs to one step."""
    owner: dict[Operation, int] = {}
    for al in aligned:
        for tv, sv in al.map.items():
            op = sv.defining_op
            if op is None or chain.static.get(sv, False) or tv is tpl.x_t or tv in al.reads:
                continue
            if owner.setdefault(op, al.step) != al.step:
                return None
    for op in tpl.ops:
        if not all(chain.static.get(r, False) for r in op.results) \
                and owner.setdefault(op, len(aligned) - 1) != len(aligned) - 1:
            return None
    return set(owner)


def _outside_uses(cells: set[Operation], hs: list[Value], finals: list[Value], root: Value
                  ) -> list[tuple[Value, list[Any]]] | None:
    """Per hidden state and other final state, its uses outside the cells; None when another
    value is used outside, or a use precedes the root (other than the stack's unsqueezes)."""
    block = root.defining_op.parent  # type: ignore[union-attr]
    position = {op: i for i, op in enumerate(block.ops)}
    at_root = position[root.defining_op]
    keep = {*hs, *finals}
    out: dict[Value, list[Any]] = {}
    for op in cells:
        for r in op.results:
            for use in r.uses:
                if isinstance(use.user, Operation) and use.user in cells:
                    continue
                if r not in keep:
                    return None
                out.setdefault(r, []).append(use)
    stacked = _stack_of(hs, out)
    for v, vs in out.items():
        if stacked is not None and v in hs:
            continue  # (the stack's unsqueezes go with it; the concat reads h_T, so it follows the root)
        if any(isinstance(u.user, Operation) and (u.user.parent is not block or position[u.user] < at_root)
               for u in vs):
            return None
    return [(v, out.get(v, [])) for v in (*hs, *finals)]


def _is_zero(v: Value, chain: Chain) -> bool:
    if not chain.static.get(v, False):
        return False
    data = known_value(v)
    op = v.defining_op
    if data is None and op is not None and op.name in ("ember.expand", "ember.broadcast_to"):
        data = known_value(op.operands[0])
    return data is not None and data.size > 0 and not np.any(data)


def _emit(chain: Chain, tpl: Template, first: Alignment, cand: Candidate, hs: list[Value], finals: list[Value],
          uses: list[tuple[Value, list[Any]]], b: Builder) -> Value:
    axis, bf = chain.axis, chain.axis == 1  # batch-first: x [B, S, I], states [B, 1, H]
    consts = [_constant(b, f"{cand.name[6:]}_{part}", a.astype(np.float32))
              for part, a in (("w", cand.w), ("r", cand.r), ("b", cand.b))]
    initial = []
    for tv in (tpl.h_prev, *tpl.extras):
        v = first.reads[tv]
        initial.append(None if _is_zero(v, chain) else b.op("ember.unsqueeze", v, axes=(1 if bf else 0,)))
    results = b.op(cand.name, chain.x, *consts, None, *initial, batch_first=bf, **dict(cand.attrs))
    y = b.op("ember.squeeze", results[0], axes=(2 if bf else 1,))  # [S, B, H] or [B, S, H]
    finals_out = [b.op("ember.squeeze", r, axes=(1 if bf else 0,)) for r in results[1:]]
    by_value = dict(uses)
    stacked = _stack_of(hs, by_value)
    if stacked is not None:
        concat, cat_axis = stacked
        seq = y if cat_axis == axis else b.op("ember.transpose", y, perm=(1, 0, 2))
        concat.results[0].replace_all_uses_with(seq)
        erase_if_dead(concat)
    for t, h in enumerate(hs[:-1]):
        live = [u for u in h.uses if u in set(by_value.get(h, []))]
        if not live:
            continue
        step = b.op("ember.slice", y, starts=(t,), ends=(t + 1,), axes=(axis,))
        value = b.op("ember.squeeze", step, axes=(axis,))
        for use in live:
            use.user.set_operand(use.index, value) if isinstance(use.user, Operation) \
                else use.user.set_output(use.index, value)
    for v, out in zip(finals, finals_out[1:]):
        for use in list(by_value.get(v, [])):
            use.user.set_operand(use.index, out) if isinstance(use.user, Operation) \
                else use.user.set_output(use.index, out)
    return finals_out[0]


def _constant(b: Builder, name: str, data: np.ndarray) -> Value:
    """A small array inline, a larger one as a new weight (`unrolled_lstm_w`, `..._1`...)."""
    if data.size <= INLINE_LIMIT:
        return b.constant(data)
    base, k = f"unrolled_{name}", 0
    while (f"{base}_{k}" if k else base) in b.module.weights:
        k += 1
    return b.weight(f"{base}_{k}" if k else base, data)


def _stack_of(hs: list[Value], uses: dict[Value, list[Any]]) -> tuple[Operation, int] | None:
    """The concat of unsqueeze(h_t) for every step in order, when that is all that reads them."""
    concat: Operation | None = None
    cat_axis = -1
    for t, h in enumerate(hs):
        users = uses.get(h, [])
        if len(users) != 1 or not isinstance(users[0].user, Operation):
            return None
        sq = users[0].user
        if sq.name != "ember.unsqueeze" or sq.attributes["axes"] is None or len(sq.attributes["axes"]) != 1 \
                or len(sq.results[0].uses) != 1:
            return None
        cat = sq.results[0].uses[0]
        if not isinstance(cat.user, Operation) or cat.user.name != "ember.concat" or cat.index != t:
            return None
        if concat is None:
            concat, cat_axis = cat.user, sq.attributes["axes"][0] % 3
        if cat.user is not concat or sq.attributes["axes"][0] % 3 != cat_axis:
            return None
    if concat is None or len(concat.operands) != len(hs) or concat.attributes["axis"] % 3 != cat_axis \
            or cat_axis not in (0, 1):
        return None
    return concat, cat_axis


FINAL_STATE_OPS = ("ember.mul", "ember.add", "ember.sub", "ember.tanh", "ember.relu", "ember.sigmoid")
UNROLLED = RuleSet("unrolled-recurrent", [
    Rule("unrolled-recurrent", P.op(FINAL_STATE_OPS, any_operands=True), unrolled,
         doc="a recurrent cell unrolled over every step of a sequence, the same weights each step = "
             "one ember.lstm, ember.gru or ember.rnn"),
])

__all__ = ["UNROLLED", "step_slice", "unrolled"]
