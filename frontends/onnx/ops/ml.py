"""ai.onnx.ml ops: LabelEncoder and TreeEnsemble onto their Ember ops (ir/ops/ml.py);
Binarizer and ArrayFeatureExtractor written with ops Ember has (greater + cast, gather)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ember.frontends.onnx.importer import NodeContext
from ember.frontends.onnx.registry import converter
from ember.ir.types import TensorType

ML = "ai.onnx.ml"


@converter("Binarizer", domain=ML)
def binarizer(ctx: NodeContext) -> Any:
    """x > threshold as 1 or 0 in x's type (NaN gives 0)."""
    t = ctx.tensor_type(0)
    threshold = ctx.constant(np.array(ctx.attr("threshold", 0.0), dtype=t.dtype.np_dtype))
    above = ctx.op("ember.greater", ctx.input(0), threshold)
    return ctx.op("ember.cast", above, to=t.dtype)


@converter("ArrayFeatureExtractor", domain=ML)
def array_feature_extractor(ctx: NodeContext) -> Any:
    """x[..., indices] with the indices flattened; a 1-D x gives one row [1, k], as onnxruntime does."""
    t, it = ctx.tensor_type(0), ctx.tensor_type(1)
    if t.shape is None or it.shape is None or not t.shape:
        raise ctx.fail(f"ArrayFeatureExtractor needs ranked x (rank >= 1) and indices, got {t} and {it}")
    indices = ctx.input(1)
    if len(it.shape) != 1:
        indices = ctx.op("ember.reshape", indices, shape=(-1,))
    out = ctx.op("ember.gather", ctx.input(0), indices, axis=-1)
    return ctx.op("ember.reshape", out, shape=(1, -1)) if len(t.shape) == 1 else out


# -- LabelEncoder ----------------------------------------------------------------------------------
DEFAULTS = {"float": ("default_float", -0.0), "int": ("default_int64", -1), "string": ("default_string", "_Unused")}


@converter("LabelEncoder", since=1, domain=ML)
def label_encoder_v1(ctx: NodeContext) -> Any:
    """Opset 1: strings to their index in classes_strings, or integers to the string at that index."""
    classes = np.array(list(ctx.attr("classes_strings", ())), dtype=object)
    index = np.arange(classes.size, dtype=np.int64)
    t = ctx.tensor_type(0)
    if t.dtype.kind == "string":
        return _encode(ctx, classes, index, np.array(ctx.attr("default_int64", -1), np.int64))
    return _encode(ctx, index, classes, np.array(ctx.attr("default_string", "_Unused"), dtype=object))


@converter("LabelEncoder", since=2, domain=ML)
def label_encoder(ctx: NodeContext) -> Any:
    keys = _table(ctx, "keys")
    values = _table(ctx, "values")
    if ctx.has_attr("default_tensor"):
        default = np.asarray(ctx.attr("default_tensor"))
        if default.size != 1:
            raise ctx.fail(f"default_tensor must hold one value, got shape {list(default.shape)}")
        default = default.reshape(())
    else:
        kind = "string" if values.dtype == object else "float" if values.dtype.kind == "f" else "int"
        name, fallback = DEFAULTS[kind]
        default = np.array(ctx.attr(name, fallback), dtype=values.dtype)
    return _encode(ctx, keys, values, default)


def _table(ctx: NodeContext, what: str) -> np.ndarray:
    given = [(n, dt) for n, dt in ((f"{what}_tensor", None), (f"{what}_strings", object), (f"{what}_int64s", np.int64),
                                   (f"{what}_floats", np.float32)) if ctx.has_attr(n)]
    if len(given) != 1:
        raise ctx.fail(f"give exactly one of {what}_tensor, {what}_strings, {what}_int64s, {what}_floats; "
                       f"got {[n for n, _ in given] or 'none'}")
    name, dt = given[0]
    value = ctx.attr(name)
    return np.asarray(value).reshape(-1) if dt is None else np.array(list(value), dtype=dt)


def _encode(ctx: NodeContext, keys: np.ndarray, values: np.ndarray, default: np.ndarray) -> Any:
    t = ctx.tensor_type(0)
    if keys.dtype != t.dtype.np_dtype:
        both_numeric = keys.dtype != object and t.dtype.kind not in ("string", "bool")
        if not both_numeric:
            raise ctx.fail(f"the keys are {'strings' if keys.dtype == object else keys.dtype}; the input is {t}")
        keys = keys.astype(t.dtype.np_dtype)  # keys_int64s for an i32 input, keys_floats for f64
    if values.size != keys.size:
        raise ctx.fail(f"{keys.size} keys and {values.size} values: they must pair up")
    return ctx.op("ember.label_encoder", ctx.input(0), keys=keys, values=values,
                  default=default.astype(values.dtype))


# -- TreeEnsemble ----------------------------------------------------------------------------------
AGGREGATES = {0: "average", 1: "sum", 2: "min", 3: "max"}
TRANSFORMS = {0: "none", 1: "softmax", 2: "logistic", 3: "softmax_zero"}


@converter("TreeEnsemble", since=5, domain=ML)
def tree_ensemble(ctx: NodeContext) -> Any:
    t = ctx.tensor_type(0)
    if not isinstance(t, TensorType) or not t.dtype.is_float:
        raise ctx.fail(f"TreeEnsemble takes a float tensor, got {t}")
    aggregate, transform = ctx.attr("aggregate_function", 1), ctx.attr("post_transform", 0)
    if aggregate not in AGGREGATES:
        raise ctx.fail(f"aggregate_function must be 0..3, got {aggregate}")
    if transform == 4:
        raise ctx.unsupported("post_transform PROBIT is not supported")
    if transform not in TRANSFORMS:
        raise ctx.fail(f"post_transform must be 0..4, got {transform}")
    required = ("nodes_featureids", "nodes_splits", "nodes_modes", "nodes_truenodeids", "nodes_trueleafs",
                "nodes_falsenodeids", "nodes_falseleafs", "tree_roots", "leaf_targetids", "leaf_weights", "n_targets")
    missing = [n for n in required if not ctx.has_attr(n)]
    if missing:
        raise ctx.fail(f"TreeEnsemble needs the attributes {', '.join(missing)}")
    dt = t.dtype.np_dtype
    attrs: dict[str, Any] = {n: tuple(int(v) for v in ctx.attr(n)) for n in
                             ("nodes_featureids", "nodes_truenodeids", "nodes_trueleafs", "nodes_falsenodeids",
                              "nodes_falseleafs", "tree_roots", "leaf_targetids")}
    attrs["nodes_modes"] = tuple(int(v) for v in np.asarray(ctx.attr("nodes_modes")).reshape(-1))
    attrs["nodes_splits"] = np.asarray(ctx.attr("nodes_splits")).reshape(-1).astype(dt)
    attrs["leaf_weights"] = np.asarray(ctx.attr("leaf_weights")).reshape(-1).astype(dt)
    if ctx.has_attr("membership_values"):
        attrs["membership_values"] = np.asarray(ctx.attr("membership_values")).reshape(-1).astype(dt)
    if ctx.has_attr("nodes_missing_value_tracks_true"):
        attrs["nodes_missing_value_tracks_true"] = tuple(int(v) for v in ctx.attr("nodes_missing_value_tracks_true"))
    return ctx.op("ember.tree_ensemble", ctx.input(0), n_targets=ctx.attr("n_targets"),
                  aggregate_function=AGGREGATES[aggregate], post_transform=TRANSFORMS[transform], **attrs)
