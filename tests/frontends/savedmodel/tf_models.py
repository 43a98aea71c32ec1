"""SavedModels built with TensorFlow for the frontend's tests (TensorFlow is a test-only extra).

Each builder writes a SavedModel folder and returns the inputs it was fed and
TensorFlow's own outputs for them, per signature, so tests compare Ember's
interpreter with TensorFlow. Weights are random (batch-norm statistics
included, variances positive) so that no output is trivially constant.

Run as a script to write them all under a folder (for a look with `ember import`):
    python tests/frontends/savedmodel/tf_models.py OUT_DIR
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

Reference = dict[str, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]  # signature -> (inputs, outputs)


def _tf() -> Any:
    import tensorflow as tf
    return tf


def _randomize(model: Any, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        if "variance" in w.path:
            value = rng.uniform(0.5, 1.5, shape)
        elif "gamma" in w.path:
            value = rng.uniform(0.5, 1.5, shape)
        else:
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
            value = rng.standard_normal(shape) / np.sqrt(max(fan_in, 1))
        w.assign(value.astype(w.dtype))


def _run(path: Path, feeds_by_sig: dict[str, dict[str, np.ndarray]]) -> Reference:
    tf = _tf()
    loaded = tf.saved_model.load(str(path))
    out: Reference = {}
    for sig, feeds in feeds_by_sig.items():
        fn = loaded.signatures[sig]
        result = fn(**{k: tf.constant(v) for k, v in feeds.items()})
        out[sig] = (feeds, {k: v.numpy() for k, v in result.items()})
    return out


def _export_keras(model: Any, path: Path, batch: int = 2, seed: int = 0) -> Reference:
    model.export(str(path), verbose=False)
    tf = _tf()
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    (name, spec), = fn.structured_input_signature[1].items()
    rng = np.random.default_rng(seed)
    shape = [batch if d is None else d for d in spec.shape]
    return _run(path, {"serving_default": {name: rng.standard_normal(shape).astype(np.float32)}})


# -- the models ---------------------------------------------------------------------------------
def mobilenet_v2(path: Path) -> Reference:
    import keras
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10,
                                           classifier_activation=None)
    _randomize(model, 1)
    return _export_keras(model, path)


def small_resnet(path: Path) -> Reference:
    import keras
    from keras import layers

    def block(x: Any, filters: int, stride: int) -> Any:
        shortcut = x
        y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        y = layers.BatchNormalization()(y)
        y = layers.ReLU()(y)
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
        y = layers.BatchNormalization()(y)
        if stride != 1 or x.shape[-1] != filters:
            shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False)(x)
            shortcut = layers.BatchNormalization()(shortcut)
        return layers.ReLU()(layers.Add()([y, shortcut]))

    inp = keras.Input((32, 32, 3))
    x = layers.Conv2D(16, 7, strides=2, padding="same", use_bias=False)(inp)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = block(x, 16, 1)
    x = block(x, 32, 2)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(10)(x)
    model = keras.Model(inp, out)
    _randomize(model, 2)
    return _export_keras(model, path)


def transformer_block(path: Path) -> Reference:
    import keras
    from keras import layers
    inp = keras.Input((16, 32))
    att = layers.MultiHeadAttention(num_heads=4, key_dim=8)(inp, inp)
    x = layers.LayerNormalization(epsilon=1e-6)(layers.Add()([inp, att]))
    h = layers.Dense(64, activation="gelu")(x)  # the exact (erf) GELU
    h = layers.Dense(32)(h)
    x = layers.LayerNormalization(epsilon=1e-6)(layers.Add()([x, h]))
    h = layers.Dense(48)(x)
    h = layers.Activation(lambda t: keras.activations.gelu(t, approximate=True))(h)  # the tanh form
    out = layers.Dense(32)(h)
    model = keras.Model(inp, out)
    _randomize(model, 3)
    return _export_keras(model, path)


def causal_attention(path: Path) -> Reference:
    """Keras MultiHeadAttention with use_causal_mask (the mask made from cumsums of ones)."""
    import keras
    from keras import layers as L
    inp = keras.Input((12, 16))
    x = L.MultiHeadAttention(num_heads=2, key_dim=8)(inp, inp, use_causal_mask=True)
    model = keras.Model(inp, L.LayerNormalization()(L.Add()([x, inp])))
    _randomize(model, 18)
    return _export_keras(model, path)


def keras_layers(path: Path) -> Reference:
    """Many Keras 3 layers in one model with three inputs (image, sequence, token ids):
    Rescaling, SeparableConv2D (swish), Conv2DTranspose, Cropping2D, ZeroPadding2D, bilinear and
    nearest UpSampling2D, AveragePooling2D, GroupNormalization, DepthwiseConv2D (hard_sigmoid),
    Dropout, GlobalMaxPooling2D, dilated causal Conv1D (SpaceToBatchND/BatchToSpaceND), MaxPooling1D,
    LayerNormalization, Embedding, Attention, Concatenate, GlobalAveragePooling1D, Dense with
    leaky_relu/selu/mish, softmax, PReLU, ELU, BatchNormalization."""
    import keras
    from keras import layers as L
    img = keras.Input((16, 16, 3), name="img")
    seq = keras.Input((10, 8), name="seq")
    tok = keras.Input((10,), dtype="int32", name="tok")
    x = L.Rescaling(1 / 127.5, offset=-1)(img)
    x = L.SeparableConv2D(8, 3, padding="same", activation="swish")(x)
    x = L.Conv2DTranspose(6, 3, strides=2, padding="same")(x)
    x = L.Cropping2D(((1, 2), (2, 1)))(x)
    x = L.ZeroPadding2D(1)(x)
    x = L.UpSampling2D(2, interpolation="bilinear")(x)
    x = L.AveragePooling2D(4)(x)
    x = L.GroupNormalization(groups=3)(x)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, activation="hard_sigmoid")(x)
    x = L.UpSampling2D(2)(x)
    x = L.Dropout(0.3)(x)
    x = L.GlobalMaxPooling2D()(x)
    s = L.Conv1D(12, 3, padding="causal", dilation_rate=2, activation="gelu")(seq)
    s = L.MaxPooling1D(2)(s)
    s = L.LayerNormalization()(s)
    e = L.Embedding(50, 12)(tok)
    e = L.Attention()([e, e])
    s2 = L.GlobalAveragePooling1D()(L.Concatenate(axis=1)([s, e]))
    heads = [x, s2, L.Activation("softmax")(L.Dense(4, activation="leaky_relu")(s2)), L.PReLU()(L.Dense(3)(s2)),
             L.ELU()(L.Dense(2, activation="selu")(s2))]
    out = L.BatchNormalization()(L.Dense(5, activation="mish")(L.Concatenate()(heads)))
    model = keras.Model([img, seq, tok], out)
    _randomize(model, 12)
    model.export(str(path), verbose=False)
    rng = np.random.default_rng(13)
    feeds = {"img": rng.uniform(0, 255, (2, 16, 16, 3)).astype(np.float32),
             "seq": rng.standard_normal((2, 10, 8)).astype(np.float32),
             "tok": rng.integers(0, 50, (2, 10)).astype(np.int32)}
    return _run(path, {"serving_default": feeds})


def keras_rnn(path: Path) -> Reference:
    """Keras recurrent layers: While loops over TensorLists, with a trip count known at build
    time (the sequence length), which the importer unrolls."""
    import keras
    from keras import layers as L
    inp = keras.Input((7, 5))
    x = L.LSTM(8, return_sequences=True)(inp)
    x = L.Bidirectional(L.GRU(6, return_sequences=True))(x)
    x = L.SimpleRNN(4, go_backwards=True)(x)
    out = L.Dense(3)(x)
    model = keras.Model(inp, out)
    _randomize(model, 14)
    return _export_keras(model, path, batch=3)


def keras_rnn_variants(path: Path) -> Reference:
    """Recurrent layers off the defaults: a GRU without reset_after (one bias), a SimpleRNN
    with relu running backwards, and an LSTM behind a Masking layer (its loop also reads the
    mask: not a plain cell, so it is unrolled)."""
    import keras
    from keras import layers as L
    inp = keras.Input((6, 4))
    x = L.GRU(5, return_sequences=True, reset_after=False)(inp)
    x = L.SimpleRNN(3, activation="relu", go_backwards=True, return_sequences=True)(x)
    y = L.LSTM(2)(L.Masking(mask_value=0.0)(x))
    model = keras.Model(inp, [L.Flatten()(x), y])
    _randomize(model, 16)
    return _export_keras(model, path, batch=2)


def keras_rnn_unrolled(path: Path) -> Reference:
    """Keras recurrent layers with unroll=True: no While loop, one cell per step (4 steps), the
    same weights each step, for recognize-recurrent to make one op per layer again."""
    import keras
    from keras import layers as L
    inp = keras.Input((4, 3))
    x = L.LSTM(5, return_sequences=True, unroll=True)(inp)
    x = L.GRU(4, return_sequences=True, unroll=True)(x)
    x = L.SimpleRNN(3, unroll=True)(x)
    model = keras.Model(inp, x)
    _randomize(model, 17)
    return _export_keras(model, path, batch=2)


def dilated_convs(path: Path) -> Reference:
    """Dilated convolutions that TensorFlow writes as SpaceToBatchND -> conv -> BatchToSpaceND,
    with odd sizes so that paddings and crops are not zero."""
    tf = _tf()
    rng = np.random.default_rng(15)
    dw = rng.standard_normal((3, 3, 4, 2)).astype(np.float32)
    k2 = rng.standard_normal((3, 3, 4, 5)).astype(np.float32)
    k1 = rng.standard_normal((3, 5, 6)).astype(np.float32)

    class Dilated(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 13, 11, 4], tf.float32, name="image"),
                                      tf.TensorSpec([None, 17, 5], tf.float32, name="signal")])
        def __call__(self, image: Any, signal: Any) -> Any:
            return {"depthwise_rate": tf.nn.depthwise_conv2d(image, dw, [1, 1, 1, 1], "SAME", dilations=[2, 3]),
                    "atrous_valid": tf.nn.atrous_conv2d(image, k2, rate=2, padding="VALID"),
                    "atrous_same": tf.nn.atrous_conv2d(image, k2, rate=3, padding="SAME"),
                    "conv1d_dilated": tf.nn.convolution(signal, k1, padding="SAME", dilations=[3])}

    m = Dilated()
    tf.saved_model.save(m, str(path), signatures={"serving_default": m.__call__})
    feeds = {"image": rng.standard_normal((2, 13, 11, 4)).astype(np.float32),
             "signal": rng.standard_normal((2, 17, 5)).astype(np.float32)}
    return _run(path, {"serving_default": feeds})


def keras_tf_save(path: Path) -> Reference:
    """A Keras 3 model written by tf.saved_model.save (not model.export): its serving function
    captures variables that only TF2's object graph binds to checkpoint keys (the restore op
    writes other handles)."""
    import keras
    tf = _tf()
    inp = keras.Input((8,))
    x = keras.layers.Dense(16, activation="relu")(inp)
    out = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inp, out)
    _randomize(model, 16)
    tf.saved_model.save(model, str(path))
    x = np.random.default_rng(17).standard_normal((4, 8)).astype(np.float32)
    return _run(path, {"serving_default": {"inputs": x}})


def two_signatures(path: Path) -> Reference:
    tf = _tf()

    class Scorer(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            rng = np.random.default_rng(4)
            self.w = tf.Variable(rng.standard_normal((8, 4)).astype(np.float32), name="w")
            self.b = tf.Variable(rng.standard_normal((4,)).astype(np.float32), name="b")

        @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32, name="features")])
        def logits(self, features: Any) -> Any:
            return {"logits": tf.matmul(features, self.w) + self.b}

        @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32, name="features"),
                                      tf.TensorSpec([None, 4], tf.float32, name="prior")])
        def scores(self, features: Any, prior: Any) -> Any:
            z = tf.matmul(features, self.w) + self.b + prior
            return {"probabilities": tf.nn.softmax(z), "best": tf.argmax(z, axis=-1, output_type=tf.int32)}

    m = Scorer()
    tf.saved_model.save(m, str(path), signatures={"serving_default": m.logits, "scores": m.scores})
    rng = np.random.default_rng(5)
    f = rng.standard_normal((3, 8)).astype(np.float32)
    return _run(path, {"serving_default": {"features": f},
                       "scores": {"features": f, "prior": rng.standard_normal((3, 4)).astype(np.float32)}})


def dynamic_batch(path: Path) -> Reference:
    """A Keras model whose batch is None, fed a batch of 5 (its graph computes shapes from it)."""
    import keras
    from keras import layers
    inp = keras.Input((6, 6, 4))
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = layers.Reshape((36, 8))(x)
    x = layers.Dense(5)(x)
    out = layers.Flatten()(x)
    model = keras.Model(inp, out)
    _randomize(model, 6)
    return _export_keras(model, path, batch=5)


def op_zoo(path: Path) -> Reference:
    """One tf.function using TensorFlow ops Keras layers produce, each result a signature output."""
    tf = _tf()
    rng = np.random.default_rng(7)
    conv_w = rng.standard_normal((3, 3, 4, 6)).astype(np.float32)
    dw_w = rng.standard_normal((3, 3, 4, 2)).astype(np.float32)
    tconv_w = rng.standard_normal((3, 3, 5, 4)).astype(np.float32)
    bn = [rng.uniform(0.5, 1.5, 4).astype(np.float32) for _ in range(4)]
    table = rng.standard_normal((10, 3)).astype(np.float32)

    class Zoo(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv_w = tf.Variable(conv_w)
            self.dw_w = tf.Variable(dw_w)
            self.tconv_w = tf.Variable(tconv_w)
            self.table = tf.Variable(table)

        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 4], tf.float32, name="image"),
                                      tf.TensorSpec([None, 5, 6], tf.float32, name="seq"),
                                      tf.TensorSpec([None, 3], tf.int32, name="ids")])
        def __call__(self, image: Any, seq: Any, ids: Any) -> Any:
            o: dict[str, Any] = {}
            o["conv_same"] = tf.nn.conv2d(image, self.conv_w, strides=2, padding="SAME")
            o["conv_valid_dilated"] = tf.nn.conv2d(image, self.conv_w, strides=1, padding="VALID", dilations=2)
            o["conv_explicit"] = tf.nn.conv2d(image, self.conv_w, strides=1, padding=[[0, 0], [1, 2], [0, 1], [0, 0]])
            o["depthwise"] = tf.nn.depthwise_conv2d(image, self.dw_w, strides=[1, 1, 1, 1], padding="SAME")
            o["conv_transpose"] = tf.nn.conv2d_transpose(
                tf.nn.relu(image), self.tconv_w, output_shape=tf.stack([tf.shape(image)[0], 16, 16, 5]),
                strides=2, padding="SAME")
            o["max_pool"] = tf.nn.max_pool2d(image, 3, 2, "SAME")
            o["avg_pool"] = tf.nn.avg_pool2d(image, 3, 2, "SAME")
            o["avg_pool_valid"] = tf.nn.avg_pool2d(image, 2, 2, "VALID")
            o["fused_bn"] = tf.compat.v1.nn.fused_batch_norm(image, bn[0], bn[1], bn[2], bn[3], epsilon=1e-3,
                                                            is_training=False)[0]
            o["bias_relu6"] = tf.nn.relu6(tf.nn.bias_add(image, bn[1]) * 3.0)
            o["elu_selu"] = tf.nn.elu(image) + tf.nn.selu(image) + tf.nn.softplus(image) + tf.nn.leaky_relu(image)
            o["resize_bilinear"] = tf.image.resize(image, [11, 13], method="bilinear")
            o["resize_nearest"] = tf.image.resize(image, [16, 12], method="nearest")
            o["resize_v1_align"] = tf.compat.v1.image.resize_bilinear(image, [15, 15], align_corners=True)
            o["pad"] = tf.pad(image, [[0, 0], [1, 2], [2, 1], [0, 0]], constant_values=0.5)
            o["mirror_reflect"] = tf.pad(image, [[0, 0], [2, 1], [1, 2], [0, 0]], mode="REFLECT")
            o["mirror_symmetric"] = tf.pad(image, [[0, 0], [2, 1], [1, 3], [0, 0]], mode="SYMMETRIC")
            o["strided"] = image[:, 1:-1:2, ::-1, 2]
            o["strided_ellipsis"] = image[..., tf.newaxis, 1:3]
            o["strided_shrink_neg"] = seq[:, -1]
            o["slice"] = tf.slice(seq, [0, 1, 2], [-1, 3, 3])
            o["tile"] = tf.tile(seq[:, :2], [1, 2, 3])
            o["gather"] = tf.gather(self.table, ids)
            o["gather_axis1"] = tf.gather(seq, [4, 0, 2], axis=1)
            parts = tf.split(seq, [2, -1, 1], axis=2)
            o["split_v"] = parts[1] * parts[0][..., :1] + parts[2]
            a, b = tf.split(seq, 2, axis=2)
            o["split"] = a - b
            u = tf.unstack(seq, axis=1)
            o["unstack_stack"] = tf.stack([u[4], u[0] * u[1]], axis=2)
            o["concat_expand_squeeze"] = tf.squeeze(tf.concat([tf.expand_dims(seq, 1), tf.expand_dims(seq, 1)],
                                                              axis=1)[:, :1], axis=1)
            o["transpose_reshape"] = tf.reshape(tf.transpose(seq, [0, 2, 1]), [-1, 30])
            o["reductions"] = (tf.reduce_mean(seq, axis=[1]) + tf.reduce_sum(seq, axis=-1, keepdims=True)[:, 0] +
                               tf.reduce_max(seq, axis=1) - tf.reduce_min(seq, axis=1) +
                               tf.reduce_prod(seq * 0.5 + 1.0, axis=1))
            o["argmax"] = tf.argmax(seq, axis=2)
            o["argmin"] = tf.argmin(seq, axis=1, output_type=tf.int32)
            o["softmax"] = tf.nn.softmax(seq) + tf.nn.log_softmax(seq, axis=-1)
            o["matmul"] = tf.matmul(seq, seq, transpose_b=True) + tf.linalg.matmul(seq, seq, adjoint_a=True)[:, :1, :1]
            o["einsum"] = tf.einsum("bij,bkj->bik", seq, seq * 2.0)
            o["math"] = (tf.math.erf(seq) + tf.math.erfc(seq) + tf.square(seq) + tf.math.squared_difference(seq, 0.3)
                         + tf.math.rsqrt(tf.abs(seq) + 1.0) + tf.add_n([seq, seq, seq]) + tf.sigmoid(seq)
                         + tf.tanh(seq) + tf.exp(-tf.abs(seq)) + tf.math.log1p(tf.abs(seq)) + tf.sign(seq)
                         + tf.floor(seq) + tf.math.reciprocal(tf.abs(seq) + 1.0) + tf.maximum(seq, 0.1)
                         + tf.minimum(seq, 0.2) + tf.pow(tf.abs(seq), 1.5) + tf.clip_by_value(seq, -0.5, 0.5))
            o["select"] = tf.where(seq > 0.0, seq, -seq * 2.0) + tf.cast(tf.logical_and(seq > -1.0, seq < 1.0),
                                                                         tf.float32)
            o["int_math"] = (ids // 3) * 7 + ids % 4 - tf.math.floordiv(-ids, 2) + tf.cast(tf.range(3), tf.int32)
            o["fill_like"] = tf.fill(tf.shape(seq)[:2], 2.5) + tf.ones_like(seq)[..., 0] + tf.zeros_like(seq)[..., 1]
            o["shape_math"] = tf.reshape(seq, tf.concat([tf.shape(seq)[:1], [-1]], axis=0)) * tf.cast(
                tf.shape(seq)[1], tf.float32)
            o["broadcast"] = tf.broadcast_to(seq[:, :1, :], tf.shape(seq)) + tf.cast(tf.size(seq), tf.float32)
            o["select_v1_rows"] = tf.raw_ops.Select(condition=seq[:, 0, 0] > 0.0, x=seq, y=-seq)
            o["range_dynamic"] = tf.cast(tf.range(tf.shape(seq)[0] * 2), tf.float32) * 0.5
            o["one_hot"] = tf.one_hot(ids, 10, on_value=2.0, off_value=-1.0)
            top_values, top_indices = tf.math.top_k(seq, k=3)
            o["top_k_values"], o["top_k_indices"] = top_values, top_indices
            o["cumsum"] = tf.cumsum(seq, axis=1) + tf.cumsum(seq, axis=2, exclusive=True, reverse=True)
            o["band_part"] = tf.linalg.band_part(seq, 1, 2) + tf.linalg.band_part(seq, -1, 0)
            o["where_coordinates"] = tf.where(seq > 0.5)
            return o

    zoo = Zoo()
    tf.saved_model.save(zoo, str(path), signatures={"serving_default": zoo.__call__})
    rng = np.random.default_rng(8)
    feeds = {"image": rng.standard_normal((2, 8, 8, 4)).astype(np.float32),
             "seq": rng.standard_normal((2, 5, 6)).astype(np.float32),
             "ids": rng.integers(0, 10, (2, 3)).astype(np.int32)}
    return _run(path, {"serving_default": feeds})


def keras2_layer_norm(path: Path) -> Reference:
    """tf.keras 2's fused LayerNormalization: the input reshaped to [1, rows, D, 1] (NCHW),
    FusedBatchNormV3 with is_training=True and unit scale, reshaped back, * gamma + beta."""
    tf = _tf()
    rng = np.random.default_rng(10)
    gamma = rng.uniform(0.5, 1.5, 16).astype(np.float32)
    beta = rng.standard_normal(16).astype(np.float32)

    class Keras2LayerNorm(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gamma = tf.Variable(gamma)
            self.beta = tf.Variable(beta)

        @tf.function(input_signature=[tf.TensorSpec([None, 6, 16], tf.float32, name="x")])
        def __call__(self, x: Any) -> Any:
            shape = tf.shape(x)
            rows = shape[0] * shape[1]
            y = tf.reshape(x, tf.stack([1, rows, 16, 1]))
            ones = tf.fill(tf.stack([rows]), 1.0)
            zeros = tf.fill(tf.stack([rows]), 0.0)
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(y, ones, zeros, epsilon=1e-3, data_format="NCHW")
            y = tf.reshape(y, shape)
            return {"y": y * self.gamma + self.beta}

    m = Keras2LayerNorm()
    tf.saved_model.save(m, str(path), signatures={"serving_default": m.__call__})
    x = rng.standard_normal((3, 6, 16)).astype(np.float32) * 2 + 1
    return _run(path, {"serving_default": {"x": x}})


def tf1_graph(use_resource: bool) -> Callable[[Path], Reference]:
    """A TF1 SavedModel (Builder, Session, placeholders), with resource or reference
    (VariableV2) variables: no functions; the restore op assigns in the graph itself."""
    def build(path: Path) -> Reference:
        tf = _tf()
        tf1 = tf.compat.v1
        rng = np.random.default_rng(11)
        graph = tf.Graph()
        with graph.as_default():
            x = tf1.placeholder(tf.float32, [None, 4], name="x")
            w = tf1.get_variable("w", initializer=rng.standard_normal((4, 3)).astype(np.float32),
                                 use_resource=use_resource)
            b = tf1.get_variable("b", initializer=rng.standard_normal(3).astype(np.float32), use_resource=use_resource)
            y = tf.nn.relu(tf.matmul(x, w) + b, name="y")
            with tf1.Session(graph=graph) as sess:
                sess.run(tf1.global_variables_initializer())
                builder = tf1.saved_model.Builder(str(path))
                signature = tf1.saved_model.predict_signature_def({"x": x}, {"y": y})
                builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": signature})
                builder.save()
                feed = rng.standard_normal((5, 4)).astype(np.float32)
                return {"serving_default": ({"x": feed}, {"y": sess.run(y, {x: feed})})}
    return build


def data_dependent_loop(path: Path) -> Reference:
    """A While loop whose trip count depends on the input: not unrollable at build time."""
    tf = _tf()

    class Doubler(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([4], tf.float32, name="x")])
        def __call__(self, x: Any) -> Any:
            y = tf.while_loop(lambda v: tf.reduce_sum(tf.abs(v)) < 100.0, lambda v: (v * 2.0,), (x,))[0]
            return {"y": y}

    m = Doubler()
    tf.saved_model.save(m, str(path), signatures={"serving_default": m.__call__})
    x = np.array([0.5, -1.0, 2.0, 0.25], np.float32)
    return _run(path, {"serving_default": {"x": x}})


def unsupported_ops(path: Path) -> Reference:
    """Ops Ember does not import (RFFT, ComplexAbs, Svd), in a called function: one error lists all."""
    tf = _tf()

    class Odd(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([4, 8], tf.float32, name="x")])
        def __call__(self, x: Any) -> Any:
            spectrum = tf.abs(tf.signal.rfft(x))
            s = tf.linalg.svd(x, compute_uv=False)
            return {"y": tf.reduce_sum(spectrum, axis=-1) + s}

    odd = Odd()
    tf.saved_model.save(odd, str(path), signatures={"serving_default": odd.__call__})
    x = np.random.default_rng(9).standard_normal((4, 8)).astype(np.float32)
    return _run(path, {"serving_default": {"x": x}})


BUILDERS: dict[str, Callable[[Path], Reference]] = {
    "mobilenet_v2": mobilenet_v2, "small_resnet": small_resnet, "transformer_block": transformer_block,
    "keras_layers": keras_layers, "keras_rnn": keras_rnn, "keras_rnn_variants": keras_rnn_variants,
    "keras_rnn_unrolled": keras_rnn_unrolled,
    "dilated_convs": dilated_convs,
    "keras_tf_save": keras_tf_save, "causal_attention": causal_attention,
    "two_signatures": two_signatures,
    "dynamic_batch": dynamic_batch,
    "op_zoo": op_zoo,
    "keras2_layer_norm": keras2_layer_norm, "tf1_resource_variables": tf1_graph(True),
    "tf1_ref_variables": tf1_graph(False), "data_dependent_loop": data_dependent_loop,
    "unsupported_ops": unsupported_ops,
}


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "savedmodels")
    for name, build in BUILDERS.items():
        ref = build(out / name)
        np.savez(out / f"{name}.reference.npz", **{f"{sig}/{kind}/{k}": v for sig, (i, o) in ref.items()
                                                   for kind, d in (("in", i), ("out", o)) for k, v in d.items()})
        print(name, "->", out / name)
