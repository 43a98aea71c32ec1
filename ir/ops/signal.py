"""Signal processing: discrete Fourier transforms, the short-time transform, window
functions and mel filter banks.

Complex values are real tensors with a trailing axis of 2 (real, imaginary), as ONNX
has them; a real signal may come with a trailing axis of 1. Transforms compute in the
input's precision (complex64 for f32, f16 and bf16; complex128 for f64) and round once
to the result type.
"""

from __future__ import annotations

import math

import numpy as np

from ember.ir import attrs as A
from ember.ir.dims import floordiv
from ember.ir.opdef import Attr, FloatTensor, NumericTensor, Op, Operand, Pure, Result, register_op
from ember.ir.ops import rules
from ember.ir.ops.shape import provably_different
from ember.ir.types import TensorType, Type, f32


def _complex_input(op: Op, x: Type | None, what: str = "x", min_rank: int = 2) -> TensorType:
    t = rules.ranked(op, x, what)
    if t.rank < min_rank:
        raise op.error(f"{what} must have rank >= {min_rank} (signal axes, then 1 or 2 for real or complex), got {t}")
    if provably_different(t.shape[-1], 1) and provably_different(t.shape[-1], 2):  # type: ignore[index]
        raise op.error(f"{what}'s last axis must be 1 (real) or 2 (complex), got {t}")
    return t


def _as_complex(x: np.ndarray) -> np.ndarray:
    """[..., 1|2] real pairs -> complex [...]: complex128 for f64, complex64 otherwise."""
    ct = np.complex128 if x.dtype == np.float64 else np.complex64
    x = x.astype(rules.compute_dtype(x.dtype))
    z = x[..., 0].astype(ct)
    if x.shape[-1] == 2:
        z.imag = x[..., 1]
    return z


def _as_pairs(z: np.ndarray) -> np.ndarray:
    return np.stack([z.real, z.imag], axis=-1)


@register_op("ember.dft", traits={Pure})
class DFT(Op):
    """Discrete Fourier transform along `axis` of a signal x [..., 1|2] (real or complex):
        y[k] = sum_n x[n] e^(-2 pi i k n / L)             (inverse: (1/L) sum_k y[k] e^(+2 pi i k n / L))
    over L = `length` points (default: the axis' size; the signal is cut or zero-padded).
    `onesided`: a forward transform keeps bins 0..L//2 (a real signal's spectrum is
    conjugate-symmetric); an inverse one reads those bins and returns the real signal of
    L points (default L = 2*(n-1)) with a trailing axis of 1. `axis` counts the signal
    axes (the trailing real/imaginary axis is not one).
    %y = ember.dft %x {axis = 1, onesided = true} : f32[N,257,2]"""

    x = Operand(FloatTensor)
    axis = Attr(A.Int, default=1)
    inverse = Attr(A.Bool, default=False)
    onesided = Attr(A.Bool, default=False)
    length = Attr(A.Optional(A.Dim), default=None)
    out = Result(FloatTensor)

    def infer(self, x: Type) -> TensorType:
        t = _complex_input(self, x)
        shape = list(t.shape)  # type: ignore[arg-type]
        ax = rules.axis(self, self.axis, len(shape) - 1)
        n = shape[ax]
        if self.length is not None and isinstance(self.length, int) and self.length < 1:
            raise self.error(f"length must be >= 1, got {self.length}")
        if self.onesided and self.inverse:
            length = self.length if self.length is not None else 2 * (n - 1)
            if isinstance(length, int) and length < 1:
                raise self.error(f"an inverse one-sided transform of {n} bins needs length >= 1; got {length}")
            shape[ax], shape[-1] = length, 1
        else:
            length = self.length if self.length is not None else n
            shape[ax] = floordiv(length, 2) + 1 if self.onesided else length
            shape[-1] = 2
        return t.with_shape(shape)

    @staticmethod
    def reference(x: np.ndarray, *, axis: int, inverse: bool, onesided: bool, length: int | None) -> np.ndarray:
        ax = axis % (x.ndim - 1)
        z = _as_complex(x)
        n = z.shape[ax]
        if inverse and onesided:
            out = np.fft.irfft(z, n=length if length is not None else 2 * (n - 1), axis=ax)[..., None]
        elif inverse:
            out = _as_pairs(np.fft.ifft(z, n=length if length is not None else n, axis=ax))
        else:
            full = np.fft.fft(z, n=length if length is not None else n, axis=ax)
            if onesided:
                full = np.take(full, np.arange(full.shape[ax] // 2 + 1), axis=ax)
            out = _as_pairs(full)
        return out.astype(x.dtype)


@register_op("ember.stft", traits={Pure})
class STFT(Op):
    """Short-time Fourier transform of signal [B, L, 1|2]: frames of `frame_length` every
    `frame_step` samples (frames = (L - frame_length) // frame_step + 1), each multiplied
    by `window` [frame_length] (absent: ones) and transformed (a frame_length-point DFT).
    Result [B, frames, bins, 2]; bins = frame_length // 2 + 1 when `onesided`, else
    frame_length.
    %y = ember.stft %signal, %window {frame_step = 8, frame_length = 16} : f32[1,15,9,2]"""

    signal = Operand(FloatTensor)
    window = Operand(FloatTensor, optional=True)
    frame_step = Attr(A.Dim)
    frame_length = Attr(A.Dim)
    onesided = Attr(A.Bool, default=True)
    out = Result(FloatTensor)

    def infer(self, signal: Type, window: Type | None) -> TensorType:
        t = _complex_input(self, signal, "signal", 3)
        if t.rank != 3:
            raise self.error(f"signal must be [batch, length, 1|2], got {t}")
        batch, length = t.shape[0], t.shape[1]  # type: ignore[index]
        step, frame = self.frame_step, self.frame_length
        if isinstance(step, int) and step < 1:
            raise self.error(f"frame_step must be >= 1, got {step}")
        if isinstance(frame, int) and frame < 1:
            raise self.error(f"frame_length must be >= 1, got {frame}")
        if window is not None:
            wt = rules.ranked(self, window, "window")
            if wt.rank != 1 or provably_different(wt.shape[0], frame):  # type: ignore[index]
                raise self.error(f"window must be a vector of frame_length {frame}, got {wt}")
        frames = floordiv(length - frame, step) + 1
        if isinstance(frames, int) and frames < 1:
            raise self.error(f"a signal of {length} samples has no frame of {frame}")
        bins = floordiv(frame, 2) + 1 if self.onesided else frame
        return t.with_shape((batch, frames, bins, 2))

    @staticmethod
    def reference(signal: np.ndarray, window: np.ndarray | None, *, frame_step: int, frame_length: int,
                  onesided: bool) -> np.ndarray:
        z = _as_complex(signal)  # [B, L]
        frames = (z.shape[1] - frame_length) // frame_step + 1
        starts = np.arange(frames) * frame_step
        idx = starts[:, None] + np.arange(frame_length)[None, :]
        chunks = z[:, idx]  # [B, frames, frame_length]
        if window is not None:
            chunks = chunks * window.astype(chunks.real.dtype)
        spec = np.fft.fft(chunks, n=frame_length, axis=-1)
        if onesided:
            spec = spec[..., : frame_length // 2 + 1]
        return _as_pairs(spec).astype(signal.dtype)


@register_op("ember.window", traits={Pure})
class Window(Op):
    """A window function of `size` points, w[n] for n = 0..size-1 with N = size
    (`periodic`) or size - 1 (symmetric):
        hann:     sin^2(pi n / N)
        hamming:  a - (1 - a) cos(2 pi n / N), a = 25/46
        blackman: 0.42 - 0.5 cos(2 pi n / N) + 0.08 cos(4 pi n / N)
    computed in f64 and rounded to `dtype` (a symmetric window of 1 point is [1]).
    %w = ember.window {kind = "hann", size = 400} : f32[400]"""

    kind = Attr(A.OneOf("hann", "hamming", "blackman"))
    size = Attr(A.Dim)
    periodic = Attr(A.Bool, default=True)
    dtype = Attr(A.DTypeAttr, default=f32)
    out = Result(NumericTensor)

    def infer(self) -> TensorType:
        if isinstance(self.size, int) and self.size < 0:
            raise self.error(f"size must be >= 0, got {self.size}")
        if not self.dtype.is_numeric:
            raise self.error(f"dtype must be numeric, got {self.dtype}")
        return TensorType(self.dtype, (self.size,))

    @staticmethod
    def reference(*, kind: str, size: int, periodic: bool, dtype: object) -> np.ndarray:
        if size == 1 and not periodic:
            return np.ones((1,), dtype.np_dtype)  # type: ignore[attr-defined]
        n = np.arange(size, dtype=np.float64)
        angle = 2 * math.pi * n / (size if periodic else size - 1)
        if kind == "hann":
            w = np.sin(angle / 2) ** 2
        elif kind == "hamming":
            a = 25.0 / 46.0
            w = a - (1 - a) * np.cos(angle)
        else:
            w = 0.42 - 0.5 * np.cos(angle) + 0.08 * np.cos(2 * angle)
        return w.astype(dtype.np_dtype)  # type: ignore[attr-defined]


@register_op("ember.mel_weight_matrix", traits={Pure})
class MelWeightMatrix(Op):
    """Triangular mel filter banks: a [dft_length//2 + 1, num_mel_bins] matrix that maps a
    one-sided linear spectrum to `num_mel_bins` mel bands (mel(f) = 2595 log10(1 + f/700))
    spanning [lower_edge_hertz, upper_edge_hertz], each triangle peaking at 1. The band
    edges are num_mel_bins + 2 points equally spaced in mel, mapped to spectrum bins
    floor((dft_length + 1) * f / sample_rate), as ONNX defines it.
    %m = ember.mel_weight_matrix {num_mel_bins = 80, dft_length = 512, sample_rate = 16000,
        lower_edge_hertz = 0.0, upper_edge_hertz = 8000.0} : f32[257,80]"""

    num_mel_bins = Attr(A.Int)
    dft_length = Attr(A.Int)
    sample_rate = Attr(A.Int)
    lower_edge_hertz = Attr(A.Float)
    upper_edge_hertz = Attr(A.Float)
    dtype = Attr(A.DTypeAttr, default=f32)
    out = Result(NumericTensor)

    def infer(self) -> TensorType:
        if self.num_mel_bins < 1 or self.dft_length < 1 or self.sample_rate < 1:
            raise self.error(f"num_mel_bins, dft_length and sample_rate must be >= 1, got {self.num_mel_bins}, "
                             f"{self.dft_length}, {self.sample_rate}")
        if not 0 <= self.lower_edge_hertz < self.upper_edge_hertz:
            raise self.error(f"need 0 <= lower_edge_hertz < upper_edge_hertz, got {self.lower_edge_hertz}, "
                             f"{self.upper_edge_hertz}")
        if not self.dtype.is_numeric:
            raise self.error(f"dtype must be numeric, got {self.dtype}")
        bins = self.dft_length // 2 + 1
        edges = _mel_edges(self.num_mel_bins, self.dft_length, self.sample_rate, self.lower_edge_hertz,
                           self.upper_edge_hertz)
        if edges.max() >= bins:
            raise self.error(f"upper_edge_hertz {self.upper_edge_hertz} maps past the {bins} spectrum bins "
                             f"(sample_rate {self.sample_rate})")
        return TensorType(self.dtype, (bins, self.num_mel_bins))

    @staticmethod
    def reference(*, num_mel_bins: int, dft_length: int, sample_rate: int, lower_edge_hertz: float,
                  upper_edge_hertz: float, dtype: object) -> np.ndarray:
        edges = _mel_edges(num_mel_bins, dft_length, sample_rate, lower_edge_hertz, upper_edge_hertz)
        out = np.zeros((dft_length // 2 + 1, num_mel_bins))
        for m in range(num_mel_bins):
            lo, mid, hi = (int(e) for e in edges[m:m + 3])
            if mid == lo:
                out[mid, m] = 1
            else:
                j = np.arange(lo, mid + 1)
                out[j, m] = (j - lo) / (mid - lo)
            if hi > mid:
                j = np.arange(mid, hi)
                out[j, m] = (hi - j) / (hi - mid)
        return out.astype(dtype.np_dtype)  # type: ignore[attr-defined]


def _mel_edges(num_mel_bins: int, dft_length: int, sample_rate: int, low: float, high: float) -> np.ndarray:
    """The num_mel_bins + 2 band edges as spectrum bin indices."""
    lo_mel = 2595 * math.log10(1 + low / 700)
    hi_mel = 2595 * math.log10(1 + high / 700)
    step = (hi_mel - lo_mel) / (num_mel_bins + 2)
    mels = np.arange(num_mel_bins + 2) * step + lo_mel
    hz = 700 * np.expm1(mels / 2595 * math.log(10))
    return (((dft_length + 1) * hz) // sample_rate).astype(np.int64)


__all__ = ["DFT", "STFT", "Window", "MelWeightMatrix"]
