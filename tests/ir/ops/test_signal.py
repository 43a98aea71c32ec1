"""ember.dft, ember.stft, ember.window, ember.mel_weight_matrix: against onnx.reference (DFT
opset 20, STFT, the window ops and MelWeightMatrix of opset 17), by hand, symbolic shapes,
errors."""

import math

import numpy as np
import pytest
from oracle import assert_close, ember_op, onnx_op, rand

from ember import ir
from ember.errors import ShapeError, VerifyError
from ember.ir.dims import sym


def onnx_dft(x, axis, inverse=False, onesided=False, length=None):
    ins = [x, None if length is None else np.array(length, np.int64), np.array(axis, np.int64)]
    return onnx_op("DFT", ins, {"inverse": int(inverse), "onesided": int(onesided)}, opset=20)[0]


# -- dft ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("last", [1, 2])
@pytest.mark.parametrize("axis", [0, 1, -2])
@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("length", [None, 5, 12])
def test_dft_vs_onnx(last, axis, inverse, length):
    x = rand((2, 8, 3, last))
    ember_axis = axis if axis >= 0 else axis + 4  # ONNX's negative axes count the real/imaginary axis
    got = ember_op("ember.dft", [x], {"axis": ember_axis, "inverse": inverse, "length": length})[0]
    assert_close(got, onnx_dft(x, axis, inverse, length=length), what=f"dft axis={axis} inverse={inverse}")


@pytest.mark.parametrize("length", [None, 7, 8])
def test_rfft_and_irfft_vs_onnx(length):
    x = rand((2, 8, 1))
    spec = ember_op("ember.dft", [x], {"axis": 1, "onesided": True, "length": length})[0]
    assert_close(spec, onnx_dft(x, 1, onesided=True, length=length), what="rfft")
    back = ember_op("ember.dft", [spec], {"axis": 1, "onesided": True, "inverse": True, "length": length or 8})[0]
    assert_close(back, onnx_dft(spec, 1, inverse=True, onesided=True, length=length or 8), what="irfft")
    if length in (None, 8):
        assert_close(back, x, what="irfft(rfft(x)) == x")


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_dft_dtypes(dtype):
    x = rand((4, 6, 2), dtype)
    got = ember_op("ember.dft", [x], {"axis": 1})[0]
    assert got.dtype == dtype
    want = np.fft.fft(x[..., 0].astype(np.complex128) + 1j * x[..., 1], axis=1)
    assert_close(got, np.stack([want.real, want.imag], -1).astype(dtype), what=f"dft {dtype}")


def test_dft_by_hand():
    x = np.array([1.0, 2.0, 3.0, 4.0], np.float32).reshape(1, 4, 1)
    y = ember_op("ember.dft", [x])[0]
    assert_close(y[0], np.array([[10, 0], [-2, 2], [-2, 0], [-2, -2]], np.float32))
    half = ember_op("ember.dft", [x], {"onesided": True})[0]
    assert_close(half[0], np.array([[10, 0], [-2, 2], [-2, 0]], np.float32))
    padded = ember_op("ember.dft", [x], {"length": 2})[0]  # cut to [1, 2]
    assert_close(padded[0], np.array([[3, 0], [-1, 0]], np.float32))
    back = ember_op("ember.dft", [y], {"inverse": True})[0]
    assert_close(back[0], np.array([[1, 0], [2, 0], [3, 0], [4, 0]], np.float32))


def test_dft_symbolic_and_errors():
    b = ir.Builder()
    x = b.input("x", ir.f32["N", "L", 1])
    assert str(b.op("ember.dft", x, onesided=True).type) == "f32[N,L//2+1,2]"
    assert str(b.op("ember.dft", x, length=64).type) == "f32[N,64,2]"
    c = b.input("c", ir.f32["N", "K", 2])
    assert str(b.op("ember.dft", c, onesided=True, inverse=True).type) == "f32[N,2*K-2,1]"
    with pytest.raises(ShapeError, match="last axis must be 1"):
        b.op("ember.dft", b.input("bad", ir.f32[4, 3]))
    with pytest.raises(ShapeError, match="out of range"):
        b.op("ember.dft", x, axis=2)
    with pytest.raises(ShapeError, match="length must be"):
        b.op("ember.dft", x, length=0)
    with pytest.raises(VerifyError, match="inverse"):
        b.op("ember.dft", x, inverse="yes")


# -- stft -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("window", [False, True])
@pytest.mark.parametrize("onesided", [True, False])
@pytest.mark.parametrize("step,frame", [(4, 8), (3, 5), (16, 16)])
def test_stft_vs_onnx(window, onesided, step, frame):
    rng = np.random.default_rng(0)
    signal = rand((2, 40, 1), np.float32, rng)
    win = rand((frame,), np.float32, rng, 0, 1) if window else None
    attrs = {"frame_step": step, "frame_length": frame, "onesided": onesided}
    got = ember_op("ember.stft", [signal, win], attrs)[0]
    want = onnx_op("STFT", [signal, np.array(step, np.int64), win, np.array(frame, np.int64)],
                   {"onesided": int(onesided)}, opset=17)[0]
    assert_close(got, want, what=f"stft {attrs}")


def test_stft_complex_and_by_hand():
    signal = np.array([1.0, 2.0, 3.0, 4.0, 5.0], np.float32).reshape(1, 5, 1)
    y = ember_op("ember.stft", [signal], {"frame_step": 2, "frame_length": 2, "onesided": False})[0]
    # frames [1,2] and [3,4]: DFTs [3, -1] and [7, -1]
    assert_close(y[0, :, :, 0], np.array([[3, -1], [7, -1]], np.float32))
    assert (y[..., 1] == 0).all()
    cplx = rand((1, 12, 2))
    got = ember_op("ember.stft", [cplx], {"frame_step": 4, "frame_length": 4, "onesided": False})[0]
    z = cplx[0, :, 0] + 1j * cplx[0, :, 1]
    want = np.fft.fft(z.reshape(3, 4), axis=-1)
    assert_close(got[0], np.stack([want.real, want.imag], -1).astype(np.float32), what="complex stft")


def test_stft_symbolic_and_errors():
    b = ir.Builder()
    s = b.input("s", ir.f32["N", "L", 1])
    y = b.op("ember.stft", s, frame_step=160, frame_length=400)
    assert str(y.type) == "f32[N,(L+80)//160-2,201,2]"  # (L-400)//160 + 1, canonicalized
    with pytest.raises(ShapeError, match="window must be"):
        b.op("ember.stft", s, b.input("w", ir.f32[300]), frame_step=160, frame_length=400)
    with pytest.raises(ShapeError, match="no frame"):
        b.op("ember.stft", b.input("short", ir.f32[1, 100, 1]), frame_step=10, frame_length=400)
    with pytest.raises(ShapeError, match="frame_step"):
        b.op("ember.stft", s, frame_step=0, frame_length=400)
    with pytest.raises(ShapeError, match="batch, length"):
        b.op("ember.stft", b.input("r4", ir.f32[1, 2, 100, 1]), frame_step=10, frame_length=40)


# -- windows --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,onnx_type", [("hann", "HannWindow"), ("hamming", "HammingWindow"),
                                            ("blackman", "BlackmanWindow")])
@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("size", [1, 2, 10])
def test_window_vs_onnx(kind, onnx_type, periodic, size):
    got = ember_op("ember.window", [], {"kind": kind, "size": size, "periodic": periodic})[0]
    if size == 1 and not periodic:
        assert got.tolist() == [1.0]  # ONNX's formula divides by zero here
        return
    want = onnx_op(onnx_type, [np.array(size, np.int64)], {"periodic": int(periodic)}, opset=17)[0]
    assert_close(got, want, what=f"{kind} periodic={periodic}")


def test_window_by_hand_and_dtypes():
    hann = ember_op("ember.window", [], {"kind": "hann", "size": 4})[0]
    assert_close(hann, np.array([0.0, 0.5, 1.0, 0.5], np.float32))
    sym = ember_op("ember.window", [], {"kind": "hann", "size": 3, "periodic": False})[0]
    assert_close(sym, np.array([0.0, 1.0, 0.0], np.float32))
    black = ember_op("ember.window", [], {"kind": "blackman", "size": 2, "periodic": False, "dtype": ir.f64})[0]
    assert black.dtype == np.float64 and abs(black[0]) < 1e-12
    ham = ember_op("ember.window", [], {"kind": "hamming", "size": 2, "dtype": ir.f16})[0]
    assert ham.dtype == np.float16
    assert_close(ham, np.array([4 / 46, 1.0], np.float16))


def test_window_symbolic_and_errors():
    b = ir.Builder()
    w = b.op("ember.window", kind="hamming", size=sym("L"))
    assert str(w.type) == "f32[L]"
    with pytest.raises(VerifyError, match="kind"):
        b.op("ember.window", kind="kaiser", size=4)
    with pytest.raises(ShapeError, match="size"):
        b.op("ember.window", kind="hann", size=-1)
    with pytest.raises(ShapeError, match="numeric"):
        b.op("ember.window", kind="hann", size=4, dtype=ir.boolean)


# -- mel weight matrix ------------------------------------------------------------------------------------
@pytest.mark.parametrize("bins,dft,rate,low,high", [(8, 16, 8192, 0.0, 4096.0), (10, 64, 16000, 20.0, 7600.0),
                                                    (4, 512, 22050, 300.0, 3000.0)])
def test_mel_weight_matrix_vs_onnx(bins, dft, rate, low, high):
    attrs = {"num_mel_bins": bins, "dft_length": dft, "sample_rate": rate, "lower_edge_hertz": low,
             "upper_edge_hertz": high}
    got = ember_op("ember.mel_weight_matrix", [], attrs)[0]
    ins = [np.array(bins, np.int64), np.array(dft, np.int64), np.array(rate, np.int64), np.array(low, np.float32),
           np.array(high, np.float32)]
    assert_close(got, onnx_op("MelWeightMatrix", ins, {}, opset=17)[0], what=f"mel {attrs}")


def test_mel_weight_matrix_by_hand():
    """Edges at mel-spaced bins; each triangle rises to 1 at its centre."""
    m = ember_op("ember.mel_weight_matrix", [], {"num_mel_bins": 2, "dft_length": 8, "sample_rate": 8,
                                                 "lower_edge_hertz": 0.0, "upper_edge_hertz": 4.0,
                                                 "dtype": ir.f64})[0]
    assert m.shape == (5, 2) and m.dtype == np.float64
    step = 2595 * math.log10(1 + 4.0 / 700) / 4
    edges = [int(9 * 700 * (10 ** (k * step / 2595) - 1) // 8) for k in range(4)]
    assert edges == [0, 1, 2, 3]
    assert m[:, 0].tolist() == [0.0, 1.0, 0.0, 0.0, 0.0] and m[:, 1].tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]


def test_mel_weight_matrix_errors():
    b = ir.Builder()
    base = {"num_mel_bins": 8, "dft_length": 16, "sample_rate": 8000, "lower_edge_hertz": 0.0,
            "upper_edge_hertz": 4000.0}
    assert str(b.op("ember.mel_weight_matrix", **base).type) == "f32[9,8]"
    with pytest.raises(ShapeError, match="lower_edge_hertz"):
        b.op("ember.mel_weight_matrix", **(base | {"lower_edge_hertz": 5000.0}))
    with pytest.raises(ShapeError, match=">= 1"):
        b.op("ember.mel_weight_matrix", **(base | {"num_mel_bins": 0}))
    with pytest.raises(ShapeError, match="maps past"):
        b.op("ember.mel_weight_matrix", **(base | {"upper_edge_hertz": 9000.0}))
