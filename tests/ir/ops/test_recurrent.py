"""ember.lstm, ember.gru, ember.rnn: against onnx.reference (directions, layouts, biases,
initial states, peepholes), against onnxruntime where onnx.reference ignores attributes
(sequence lengths, activations, clip, input_forget), by hand, symbolic shapes, errors."""

import numpy as np
import pytest
from onnx import helper
from oracle import assert_close, ember_op, onnx_op, rand

from ember import ir
from ember.errors import ShapeError, VerifyError

GATES = {"ember.rnn": ("RNN", 1), "ember.gru": ("GRU", 3), "ember.lstm": ("LSTM", 4)}
ONNX_ACT = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "leaky_relu": "LeakyRelu", "elu": "Elu",
            "hard_sigmoid": "HardSigmoid", "softsign": "Softsign", "softplus": "Softplus", "affine": "Affine",
            "scaled_tanh": "ScaledTanh", "thresholded_relu": "ThresholdedRelu"}


def make_inputs(op, direction="forward", batch_first=False, seq=4, batch=3, inp=2, hidden=5, bias=True,
                states=True, peep=False, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    g = GATES[op][1]
    d = 2 if direction == "bidirectional" else 1

    def r(*shape):
        return rand(shape, dtype, rng, -1, 1)

    x = r(batch, seq, inp) if batch_first else r(seq, batch, inp)
    state_shape = (batch, d, hidden) if batch_first else (d, batch, hidden)
    ins = [x, r(d, g * hidden, inp), r(d, g * hidden, hidden), r(d, 2 * g * hidden) if bias else None, None,
           r(*state_shape) if states else None]
    if op == "ember.lstm":
        ins += [r(*state_shape) if states else None, r(d, 3 * hidden) if peep else None]
    return ins


def run_ort(op_type, inputs, attrs, n_out):
    import onnxruntime as ort
    names = [f"in{i}" if a is not None else "" for i, a in enumerate(inputs)]
    while names and not names[-1]:
        names.pop()
    outs = [f"out{i}" for i in range(n_out)]
    feeds = {n: a for n, a in zip(names, inputs) if n}
    node = helper.make_node(op_type, names, outs, **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(
        n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in feeds.items()],
        [helper.make_empty_tensor_value_info(o) for o in outs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def compare(got, want, what):
    for i, (g, w) in enumerate(zip(got, want)):
        assert_close(g, np.asarray(w), what=f"{what} output {i}")


# -- against onnx.reference -------------------------------------------------------------------------
@pytest.mark.parametrize("op", list(GATES))
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_vs_onnx(op, direction, batch_first):
    ins = make_inputs(op, direction, batch_first, peep=True)
    onnx_type, _ = GATES[op]
    attrs = {"direction": direction, "batch_first": batch_first}
    got = ember_op(op, ins, attrs)
    onnx_attrs = {"direction": direction, "hidden_size": 5, "layout": int(batch_first)}
    want = onnx_op(onnx_type, ins, onnx_attrs, n_outputs=len(got), opset=22)
    compare(got, want, f"{op} {attrs}")


@pytest.mark.parametrize("op", list(GATES))
def test_defaults_vs_onnx(op):
    """No bias, no initial states: zeros."""
    ins = make_inputs(op, bias=False, states=False)
    got = ember_op(op, ins)
    compare(got, onnx_op(GATES[op][0], ins, {"hidden_size": 5}, n_outputs=len(got), opset=22), op)


def test_gru_linear_before_reset_vs_onnx():
    ins = make_inputs("ember.gru", "bidirectional")
    got = ember_op("ember.gru", ins, {"direction": "bidirectional", "linear_before_reset": True})
    want = onnx_op("GRU", ins, {"direction": "bidirectional", "hidden_size": 5, "linear_before_reset": 1},
                   n_outputs=2, opset=22)
    compare(got, want, "gru linear_before_reset")


@pytest.mark.parametrize("op", ["ember.gru", "ember.lstm"])
def test_f16_vs_onnx(op):
    ins = make_inputs(op, dtype=np.float16)
    got = ember_op(op, ins)
    assert got[0].dtype == np.float16
    compare(got, onnx_op(GATES[op][0], ins, {"hidden_size": 5}, n_outputs=len(got), opset=22), op)


# -- against onnxruntime (attributes onnx.reference ignores) ----------------------------------------------
@pytest.mark.parametrize("op", list(GATES))
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_sequence_lens_and_clip_vs_onnxruntime(op, direction):
    ins = make_inputs(op, direction, peep=True)
    ins[4] = np.array([4, 2, 0], np.int32)
    got = ember_op(op, ins, {"direction": direction, "clip": 0.6})
    want = run_ort(GATES[op][0], ins, {"direction": direction, "hidden_size": 5, "clip": 0.6}, len(got))
    compare(got, want, f"{op} {direction} sequence_lens, clip")


@pytest.mark.parametrize("op,acts,alpha,beta", [
    ("ember.rnn", ("relu",), (), ()),
    ("ember.rnn", ("leaky_relu", "thresholded_relu"), (0.3, 0.1), (0.0, 0.0)),
    ("ember.gru", ("hard_sigmoid", "elu"), (0.3, 0.7), (0.4, 0.0)),
    ("ember.lstm", ("sigmoid", "softsign", "softplus"), (), ()),
    ("ember.lstm", ("hard_sigmoid", "scaled_tanh", "affine"), (0.1, 0.2, 0.3), (0.4, 0.5, 0.6)),
])
def test_activations_vs_onnxruntime(op, acts, alpha, beta):
    n = {"ember.rnn": 1, "ember.gru": 2, "ember.lstm": 3}[op]
    direction = "bidirectional" if len(acts) > n else "forward"
    ins = make_inputs(op, direction)
    attrs = {"direction": direction, "activations": acts, "activation_alpha": alpha, "activation_beta": beta}
    got = ember_op(op, ins, attrs)
    onnx_attrs = {"direction": direction, "hidden_size": 5, "activations": [ONNX_ACT[a] for a in acts]}
    takes = {"leaky_relu": "a", "thresholded_relu": "a", "elu": "a", "hard_sigmoid": "ab", "scaled_tanh": "ab",
             "affine": "ab"}
    onnx_alpha = [a for a, name in zip(alpha, acts) if "a" in takes.get(name, "")]
    onnx_beta = [b for b, name in zip(beta, acts) if "b" in takes.get(name, "")]
    if onnx_alpha:
        onnx_attrs["activation_alpha"] = onnx_alpha
    if onnx_beta:
        onnx_attrs["activation_beta"] = onnx_beta
    compare(got, run_ort(GATES[op][0], ins, onnx_attrs, len(got)), f"{op} {acts}")


def test_lstm_input_forget_vs_onnxruntime():
    ins = make_inputs("ember.lstm", "bidirectional", peep=True)
    got = ember_op("ember.lstm", ins, {"direction": "bidirectional", "input_forget": True})
    want = run_ort("LSTM", ins, {"direction": "bidirectional", "hidden_size": 5, "input_forget": 1}, 3)
    compare(got, want, "lstm input_forget")


# -- by hand ------------------------------------------------------------------------------------------
def test_rnn_by_hand():
    """Identity-ish weights and relu: H_t = relu(x_t + H_{t-1}), a running sum."""
    x = np.array([1.0, 2.0, -5.0], np.float32).reshape(3, 1, 1)
    w, r = np.ones((1, 1, 1), np.float32), np.ones((1, 1, 1), np.float32)
    y, y_h = ember_op("ember.rnn", [x, w, r], {"activations": ("relu",)})
    assert y.ravel().tolist() == [1.0, 3.0, 0.0] and y_h.ravel().tolist() == [0.0]
    y, y_h = ember_op("ember.rnn", [x, w, r], {"activations": ("relu",), "direction": "reverse"})
    assert y.ravel().tolist() == [3.0, 2.0, 0.0] and y_h.ravel().tolist() == [3.0]
    y, y_h = ember_op("ember.rnn", [x, w, r], {"activations": ("affine",), "activation_alpha": (2.0,),
                                               "activation_beta": (1.0,)})
    assert y.ravel().tolist() == [3.0, 11.0, 13.0]  # 2*(x + h) + 1
    lens = np.array([2], np.int64)
    y, y_h = ember_op("ember.rnn", [x, w, r, None, lens], {"activations": ("relu",)})
    assert y.ravel().tolist() == [1.0, 3.0, 0.0] and y_h.ravel().tolist() == [3.0]
    y, y_h = ember_op("ember.rnn", [x, w, r, None, lens], {"activations": ("relu",), "direction": "reverse"})
    assert y.ravel().tolist() == [3.0, 2.0, 0.0] and y_h.ravel().tolist() == [3.0]
    y, _ = ember_op("ember.rnn", [x, w, r], {"activations": ("affine",), "clip": 1.5})
    assert y.ravel().tolist() == [1.0, 1.5, -1.5]  # the activation's input is clipped


def test_lstm_gru_by_hand():
    """Zero weights: every gate sees only its bias."""
    x = np.zeros((1, 1, 1), np.float32)
    w4, r4 = np.zeros((1, 4, 1), np.float32), np.zeros((1, 4, 1), np.float32)
    big = 50.0  # sigmoid(50) = 1 in f32
    # gates i, o, f, c: i = o = 1, f = 1, c = tanh(1); C = C0 + tanh(1); H = tanh(C)
    b = np.array([[big, big, big, 1.0, 0, 0, 0, 0]], np.float32)
    c0 = np.array([[[0.5]]], np.float32)
    _, y_h, y_c = ember_op("ember.lstm", [x, w4, r4, b, None, None, c0])
    assert_close(y_c.ravel(), np.array([0.5 + np.tanh(1.0)], np.float32))
    assert_close(y_h.ravel(), np.tanh(np.array([0.5 + np.tanh(1.0)], np.float32)))
    # gru: z = sigmoid(-50) = 0 so H = candidate = tanh(bias_h)
    w3, r3 = np.zeros((1, 3, 1), np.float32), np.zeros((1, 3, 1), np.float32)
    bg = np.array([[-big, 0.0, 0.25, 0, 0, 0]], np.float32)
    _, y_h = ember_op("ember.gru", [x, w3, r3, bg, None, np.array([[[0.9]]], np.float32)])
    assert_close(y_h.ravel(), np.array([np.tanh(0.25)], np.float32))


# -- shapes and errors -----------------------------------------------------------------------------
def test_symbolic_shapes():
    b = ir.Builder()
    x = b.input("x", ir.f32["S", "N", 16])
    w, r = b.input("w", ir.f32[2, 128, 16]), b.input("r", ir.f32[2, 128, 32])
    y, y_h, y_c = b.op("ember.lstm", x, w, r, direction="bidirectional")
    assert (str(y.type), str(y_h.type), str(y_c.type)) == ("f32[S,2,N,32]", "f32[2,N,32]", "f32[2,N,32]")
    xb = b.input("xb", ir.f32["N", "S", 16])
    y, y_h = b.op("ember.gru", xb, b.input("w3", ir.f32[1, 96, 16]), b.input("r3", ir.f32[1, 96, 32]),
                  batch_first=True)
    assert (str(y.type), str(y_h.type)) == ("f32[N,S,1,32]", "f32[N,1,32]")


@pytest.mark.parametrize("op,shapes,attrs,match", [
    ("ember.rnn", [(3, 2, 4), (2, 5, 4), (2, 5, 5)], {}, "needs 1 weight sets"),
    ("ember.gru", [(3, 2, 4), (1, 14, 4), (1, 14, 5)], {}, "3\\*hidden"),
    ("ember.lstm", [(3, 2, 4), (1, 20, 3), (1, 20, 5)], {}, "input size"),
    ("ember.rnn", [(3, 2), (1, 5, 4), (1, 5, 5)], {}, "rank 3"),
    ("ember.rnn", [(3, 2, 4), (1, 5, 4), (1, 5, 5)], {"activations": ("tanh", "tanh")}, "1 per direction"),
    ("ember.rnn", [(3, 2, 4), (1, 5, 4), (1, 5, 5)], {"activations": ("gelu",)}, "unknown activations"),
    ("ember.rnn", [(3, 2, 4), (1, 5, 4), (1, 5, 5)], {"activation_alpha": (1.0, 2.0)}, "one value per"),
    ("ember.rnn", [(3, 2, 4), (1, 5, 4), (1, 5, 5)], {"clip": -1.0}, "clip"),
])
def test_errors(op, shapes, attrs, match):
    b = ir.Builder()
    args = [b.input(f"x{i}", ir.f32[s]) for i, s in enumerate(shapes)]
    with pytest.raises(ShapeError, match=match):
        b.op(op, *args, **attrs)


def test_operand_errors():
    b = ir.Builder()
    x, w, r = b.input("x", ir.f32[3, 2, 4]), b.input("w", ir.f32[1, 20, 4]), b.input("r", ir.f32[1, 20, 5])
    with pytest.raises(ShapeError, match="b must be"):
        b.op("ember.lstm", x, w, r, b.input("b", ir.f32[1, 20]))
    with pytest.raises(ShapeError, match="sequence_lens"):
        b.op("ember.lstm", x, w, r, None, b.input("l", ir.i32[3]))
    with pytest.raises(ShapeError, match="initial_c"):
        b.op("ember.lstm", x, w, r, None, None, None, b.input("c", ir.f32[1, 3, 5]))
    with pytest.raises(ShapeError, match="peepholes"):
        b.op("ember.lstm", x, w, r, None, None, None, None, b.input("p", ir.f32[1, 20]))
    with pytest.raises(ShapeError, match="element type"):
        b.op("ember.lstm", x, w, b.input("rh", ir.f16[1, 20, 5]))
    with pytest.raises(VerifyError, match="direction"):
        b.op("ember.lstm", x, w, r, direction="sideways")
