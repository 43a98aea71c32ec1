"""Classical-ML ops (ONNX's ai.onnx.ml domain) that no composition of other ops says well.

`ember.label_encoder` maps values through a key/value table; `ember.tree_ensemble`
evaluates decision trees. Both are table walks with data-dependent control
flow. (ai.onnx.ml's Binarizer and ArrayFeatureExtractor need no op: the
frontend writes them as greater + cast and as a gather.)
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ember.ir import attrs as A
from ember.ir.opdef import AnyTensor, Attr, Op, Operand, Pure, Result, register_op
from ember.ir.ops import rules
from ember.ir.types import TensorType, Type


@register_op("ember.label_encoder", traits={Pure})
class LabelEncoder(Op):
    """Map each element of x through a table: keys[k] -> values[k], anything else -> default
    (ONNX LabelEncoder). keys have x's element type, values and default the result's; keys
    and values are 1-D of one length, default one element. A key listed twice maps to its
    last value; a NaN key matches every NaN (float keys compare by value otherwise).
    %y = ember.label_encoder %x {keys = dense<str[2]: ["a", "b"]>, values = dense<i64[2]: [0, 1]>, default = dense<i64[]: -1>} : i64[N]"""

    x = Operand(AnyTensor)
    keys = Attr(A.TensorAttr)
    values = Attr(A.TensorAttr)
    default = Attr(A.TensorAttr)
    out = Result(AnyTensor)

    def infer(self, x: Type) -> TensorType:
        t = rules.tensor(self, x, "x")
        keys, values, default = self.keys, self.values, self.default
        if keys.array.ndim != 1 or values.array.ndim != 1 or keys.array.size != values.array.size:
            raise self.error(f"keys and values must be 1-D of one length, got {keys.type} and {values.type}")
        if keys.dtype != t.dtype:
            raise self.error(f"keys are {keys.dtype}; they must have x's element type {t.dtype}")
        if default.array.size != 1 or default.dtype != values.dtype:
            raise self.error(f"default must be one {values.dtype} element, got {default.type}")
        return t.with_dtype(values.dtype)

    @staticmethod
    def reference(x: np.ndarray, *, keys: np.ndarray, values: np.ndarray, default: np.ndarray) -> np.ndarray:
        fill = np.asarray(default).reshape(-1).tolist()[0]  # a Python value: str for str tensors
        is_float = keys.dtype.kind == "f"
        table: dict[Any, Any] = {}
        nan_value = None
        for k, v in zip(keys.tolist(), values.tolist()):
            if is_float and math.isnan(k):
                nan_value = v
            else:
                table[k] = v
        out = np.empty(x.shape, dtype=values.dtype)
        flat = out.reshape(-1)
        for i, item in enumerate(np.asarray(x).reshape(-1).tolist()):
            if is_float and math.isnan(item):
                flat[i] = nan_value if nan_value is not None else fill
            else:
                flat[i] = table.get(item, fill)
        return out


MODES = ("leq", "lt", "gte", "gt", "eq", "neq", "member")


@register_op("ember.tree_ensemble", traits={Pure})
class TreeEnsemble(Op):
    """Decision trees over the features of x [N, F], summed into [N, n_targets]
    (ONNX ai.onnx.ml TreeEnsemble, opset 5).

    Interior nodes are the positions of the `nodes_*` lists: node k compares
    feature `nodes_featureids[k]` with `nodes_splits[k]` by `nodes_modes[k]`
    (0 <=, 1 <, 2 >=, 3 >, 4 ==, 5 !=, 6 member of a set); then it goes to
    `nodes_truenodeids[k]` or `nodes_falsenodeids[k]`, a leaf index when
    `nodes_trueleafs[k]` / `nodes_falseleafs[k]` is 1, a node index otherwise.
    A NaN feature compares as IEEE says (false, except for !=), and takes the
    true branch at nodes whose `nodes_missing_value_tracks_true` is 1. The
    member sets are `membership_values` in the order of the member nodes, each
    closed by a NaN. Each tree starts at its root (`tree_roots`) and ends in
    one leaf, which adds `leaf_weights[l]` to target `leaf_targetids[l]`.

    Per target, `aggregate_function` sums the leaves reached, averages them
    over the number of trees, or takes their min or max (0 where no leaf of
    any tree reaches the target, as onnxruntime does). `post_transform` then
    maps each row: softmax, logistic, or softmax_zero (a softmax that leaves
    zero scores at zero). f16 accumulates in f32.
    %y = ember.tree_ensemble %x {...} : f32[N,2]"""

    x = Operand(AnyTensor)
    nodes_featureids = Attr(A.Ints)
    nodes_splits = Attr(A.TensorAttr)
    nodes_modes = Attr(A.Ints)
    nodes_truenodeids = Attr(A.Ints)
    nodes_trueleafs = Attr(A.Ints)
    nodes_falsenodeids = Attr(A.Ints)
    nodes_falseleafs = Attr(A.Ints)
    nodes_missing_value_tracks_true = Attr(A.Optional(A.Ints), default=None)
    membership_values = Attr(A.Optional(A.TensorAttr), default=None)
    tree_roots = Attr(A.Ints)
    leaf_targetids = Attr(A.Ints)
    leaf_weights = Attr(A.TensorAttr)
    n_targets = Attr(A.Int)
    aggregate_function = Attr(A.OneOf("average", "sum", "min", "max"), default="sum")
    post_transform = Attr(A.OneOf("none", "softmax", "logistic", "softmax_zero"), default="none")
    out = Result(AnyTensor)

    def infer(self, x: Type) -> TensorType:
        t = rules.ranked(self, x, "x")
        if t.rank != 2 or not t.dtype.is_float:
            raise self.error(f"x must be a float [N, F] tensor, got {t}")
        n = len(self.nodes_featureids)
        lists = {"nodes_splits": self.nodes_splits.array.size, "nodes_modes": len(self.nodes_modes),
                 "nodes_truenodeids": len(self.nodes_truenodeids), "nodes_trueleafs": len(self.nodes_trueleafs),
                 "nodes_falsenodeids": len(self.nodes_falsenodeids), "nodes_falseleafs": len(self.nodes_falseleafs)}
        if self.nodes_missing_value_tracks_true is not None:
            lists["nodes_missing_value_tracks_true"] = len(self.nodes_missing_value_tracks_true)
        wrong = {k: v for k, v in lists.items() if v != n}
        if wrong:
            raise self.error(f"every nodes_* list needs {n} entries (one per node), got "
                             + ", ".join(f"{k}: {v}" for k, v in wrong.items()))
        n_leaves = len(self.leaf_targetids)
        if self.leaf_weights.array.size != n_leaves:
            raise self.error(f"leaf_weights has {self.leaf_weights.array.size} entries for {n_leaves} leaves")
        for name in ("nodes_splits", "leaf_weights", "membership_values"):
            dense = getattr(self, name)
            if dense is not None and dense.dtype != t.dtype:
                raise self.error(f"{name} is {dense.dtype}; it must have x's element type {t.dtype}")
        bad_modes = [m for m in self.nodes_modes if not 0 <= m < len(MODES)]
        if bad_modes:
            raise self.error(f"nodes_modes must be in 0..6, got {bad_modes}")
        for side, ids, leafs in (("true", self.nodes_truenodeids, self.nodes_trueleafs),
                                 ("false", self.nodes_falsenodeids, self.nodes_falseleafs)):
            for k, (i, is_leaf) in enumerate(zip(ids, leafs)):
                limit = n_leaves if is_leaf else n
                if not 0 <= i < limit:
                    raise self.error(f"node {k}'s {side} branch {'leaf' if is_leaf else 'node'} {i} is out of "
                                     f"range 0..{limit - 1}")
        if any(not 0 <= r < n for r in self.tree_roots) or not self.tree_roots:
            raise self.error(f"tree_roots {list(self.tree_roots)} must be node indices in 0..{n - 1}")
        if self.n_targets < 1 or any(not 0 <= i < self.n_targets for i in self.leaf_targetids):
            raise self.error(f"leaf_targetids must lie in 0..n_targets-1 = {self.n_targets - 1}")
        n_sets = sum(m == 6 for m in self.nodes_modes)
        members = self.membership_values
        given = 0 if members is None else int(np.isnan(members.array.astype(np.float64)).sum())
        if given != n_sets:
            raise self.error(f"membership_values closes {given} sets with NaN; the {n_sets} member nodes need "
                             f"{n_sets}")
        features = t.shape[1]  # type: ignore[index]
        if isinstance(features, int) and any(not 0 <= f < features for f in self.nodes_featureids):
            raise self.error(f"nodes_featureids must lie in 0..{features - 1}")
        return t.with_shape((t.shape[0], self.n_targets))  # type: ignore[index]

    @staticmethod
    def reference(x: np.ndarray, *, nodes_featureids: Sequence[int], nodes_splits: np.ndarray,
                  nodes_modes: Sequence[int], nodes_truenodeids: Sequence[int], nodes_trueleafs: Sequence[int],
                  nodes_falsenodeids: Sequence[int], nodes_falseleafs: Sequence[int],
                  nodes_missing_value_tracks_true: Sequence[int] | None, membership_values: np.ndarray | None,
                  tree_roots: Sequence[int], leaf_targetids: Sequence[int], leaf_weights: np.ndarray,
                  n_targets: int, aggregate_function: str, post_transform: str) -> np.ndarray:
        acc = rules.accumulate_dtype(x.dtype)
        xs = x.astype(acc)
        n_nodes = len(nodes_featureids)
        splits = nodes_splits.astype(acc).reshape(-1)
        tracks = np.asarray(nodes_missing_value_tracks_true or [0] * n_nodes, dtype=bool)
        sets: dict[int, set[float]] = {}
        members = iter(() if membership_values is None else membership_values.astype(np.float64).reshape(-1))
        for k, mode in enumerate(nodes_modes):
            if mode == 6:
                sets[k] = set()
                for value in members:
                    if math.isnan(value):
                        break
                    sets[k].add(float(value))
        weights = leaf_weights.astype(acc).reshape(-1)
        rows = np.arange(x.shape[0])
        leaves = []
        for root in tree_roots:
            node = np.full(x.shape[0], root, dtype=np.int64)
            leaf = np.full(x.shape[0], -1, dtype=np.int64)
            for _ in range(n_nodes + 1):
                active = leaf < 0
                if not active.any():
                    break
                r, k = rows[active], node[active]
                v = xs[r, np.asarray(nodes_featureids)[k]]
                cond = _compare(v, k, nodes_modes, splits, sets) | (np.isnan(v) & tracks[k])
                nxt = np.where(cond, np.asarray(nodes_truenodeids)[k], np.asarray(nodes_falsenodeids)[k])
                is_leaf = np.where(cond, np.asarray(nodes_trueleafs)[k], np.asarray(nodes_falseleafs)[k]) != 0
                node[r] = nxt
                leaf[r[is_leaf]] = nxt[is_leaf]
            else:
                raise ValueError(f"the tree at root {root} has a cycle")
            leaves.append(leaf)
        targets = np.asarray(leaf_targetids, dtype=np.int64)
        out = np.zeros((x.shape[0], n_targets), dtype=acc)
        hit = np.zeros((x.shape[0], n_targets), dtype=bool)
        for leaf in leaves:
            tid, w = targets[leaf], weights[leaf]
            if aggregate_function in ("sum", "average"):
                np.add.at(out, (rows, tid), w)
            else:
                pick = np.minimum if aggregate_function == "min" else np.maximum
                current = out[rows, tid]
                out[rows, tid] = np.where(hit[rows, tid], pick(current, w), w)
            hit[rows, tid] = True
        if aggregate_function == "average":
            out = out / acc.type(len(tree_roots))
        return _post(out, post_transform).astype(x.dtype)


def _compare(v: np.ndarray, k: np.ndarray, modes: Sequence[int], splits: np.ndarray,
             sets: dict[int, set[float]]) -> np.ndarray:
    mode = np.asarray(modes)[k]
    s = splits[k]
    cond = np.select([mode == 0, mode == 1, mode == 2, mode == 3, mode == 4, mode == 5],
                     [v <= s, v < s, v >= s, v > s, v == s, v != s], default=False)
    for i in np.nonzero(mode == 6)[0]:
        cond[i] = float(v[i]) in sets[int(k[i])]
    return cond


def _post(scores: np.ndarray, transform: str) -> np.ndarray:
    if transform == "none":
        return scores
    if transform == "logistic":
        return 1 / (1 + np.exp(-scores))
    if transform == "softmax":
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    # softmax_zero: zeros stay zero, the rest share a softmax.
    nonzero = scores != 0
    masked = np.where(nonzero, scores, -np.inf)
    top = np.max(masked, axis=1, keepdims=True)
    e = np.where(nonzero, np.exp(scores - np.where(np.isfinite(top), top, 0)), 0)
    total = e.sum(axis=1, keepdims=True)
    return np.where(total > 0, e / np.where(total > 0, total, 1), 0)


__all__ = ["LabelEncoder", "TreeEnsemble"]
