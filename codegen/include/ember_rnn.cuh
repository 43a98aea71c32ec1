// Recurrent layers (ember.rnn, ember.gru, ember.lstm): the whole time loop in one kernel.
//
// One block per (batch element, direction) runs the steps in order. The block holds the state h
// (and LSTM's c) and the step's input x_t in shared memory; per step each warp takes gate rows and
// dots W's row with x_t and R's row with h (lanes along the row, so reads coalesce), then each
// thread finishes the gates of its hidden units and writes y. __syncthreads separates the phases,
// so no step goes back to the host. States stay in the compute type (f32 for f16/bf16) and are
// rounded only when stored, as the reference does.
//
// Gate order (ONNX): LSTM i, o, f, c; GRU z, r, h; bias [D][2 G H] = input biases then recurrence
// biases; LSTM peepholes [D][3H] = i, o, f. Activations come from `Acts` (generated per op):
// act(slot, x) with slot = direction * (activations per direction) + k, and clamp(x) (clip).
#pragma once
#include "ember_prelude.cuh"

namespace ember {
namespace rnn {

enum Kind { RNN = 0, GRU = 1, LSTM = 2 };

__device__ __forceinline__ float ex(float x) { return expf(x); }
__device__ __forceinline__ double ex(double x) { return exp(x); }
__device__ __forceinline__ float th(float x) { return tanhf(x); }
__device__ __forceinline__ double th(double x) { return tanh(x); }
__device__ __forceinline__ float lg1p(float x) { return log1pf(x); }
__device__ __forceinline__ double lg1p(double x) { return log1p(x); }
__device__ __forceinline__ float ab(float x) { return fabsf(x); }
__device__ __forceinline__ double ab(double x) { return fabs(x); }

// The activations of ir/ops/recurrent.py's ACTIVATIONS, with their NaN behaviour.
template <typename C> __device__ __forceinline__ C sigmoid(C x, C, C) { return C(1) / (C(1) + ex(-x)); }
template <typename C> __device__ __forceinline__ C tanh_(C x, C, C) { return th(x); }
template <typename C> __device__ __forceinline__ C relu_(C x, C, C) { return relu<C>(x); }
template <typename C> __device__ __forceinline__ C affine(C x, C a, C b) { return a * x + b; }
template <typename C> __device__ __forceinline__ C leaky_relu(C x, C a, C) { return x >= C(0) ? x : a * x; }
template <typename C> __device__ __forceinline__ C thresholded_relu(C x, C a, C) { return x > a ? x : C(0); }
template <typename C> __device__ __forceinline__ C scaled_tanh(C x, C a, C b) { return a * th(b * x); }
template <typename C> __device__ __forceinline__ C hard_sigmoid(C x, C a, C b) {
  return min_nan<C>(max_nan<C>(a * x + b, C(0)), C(1));
}
template <typename C> __device__ __forceinline__ C elu(C x, C a, C) { return x >= C(0) ? x : a * (ex(x) - C(1)); }
template <typename C> __device__ __forceinline__ C softsign(C x, C, C) { return x / (C(1) + ab(x)); }
template <typename C> __device__ __forceinline__ C softplus_(C x, C, C) {
  return is_nan(x) ? x : (x > C(0) ? x : C(0)) + lg1p(ex(-ab(x)));
}

struct Shape {
  int S, B, I, H, D;
  int direction;             // 0 forward, 1 reverse, 2 bidirectional
  bool linear_before_reset, input_forget;
  i64 xt, xb;                // x strides (t, batch); x's last axis is the input feature
  i64 yt, yd, yb;            // y strides (t, direction, batch); y's last axis is the hidden unit
  i64 sd, sb;                // state strides (direction, batch)

  __device__ __forceinline__ static Shape load(const i64* __restrict__ m) {
    Shape s;
    s.S = static_cast<int>(m[0]); s.B = static_cast<int>(m[1]); s.I = static_cast<int>(m[2]);
    s.H = static_cast<int>(m[3]); s.D = static_cast<int>(m[4]); s.direction = static_cast<int>(m[5]);
    s.linear_before_reset = m[6] != 0; s.input_forget = m[7] != 0;
    s.xt = m[8]; s.xb = m[9]; s.yt = m[10]; s.yd = m[11]; s.yb = m[12]; s.sd = m[13]; s.sb = m[14];
    return s;
  }
};

// out[row] = w[row, :n] . v for rows [r0, r1), one warp per row.
template <int NT, typename C, typename S>
__device__ __forceinline__ void dots(C* __restrict__ out, const S* __restrict__ w, const C* __restrict__ v, int n,
                                     int r0, int r1) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int row = r0 + warp; row < r1; row += NT / 32) {
    const S* wr = w + static_cast<i64>(row) * n;
    C sum = C(0);
    for (int k = lane; k < n; k += 32) sum += static_cast<C>(to_compute(wr[k])) * v[k];
#pragma unroll
    for (int o = 16; o > 0; o /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) out[row] = sum;
  }
}

// Shared values of C the kernel needs: h, h', x_t, x_t W^T, h R^T, c, r * h.
__host__ __device__ constexpr int shared_values(int G, int I, int H) { return 4 * H + I + 2 * G * H; }

// Grid (B, D), NT threads, dynamic shared memory shared_values(G, I, H) values of C.
template <int KIND, int NT, typename C, typename S, typename L, class Acts>
__device__ __forceinline__ void recur(const S* __restrict__ x, const S* __restrict__ w, const S* __restrict__ r,
                                      const S* __restrict__ bias, const L* __restrict__ lens, const S* __restrict__ h0,
                                      const S* __restrict__ c0, const S* __restrict__ peep, S* __restrict__ y,
                                      S* __restrict__ yh, S* __restrict__ yc, const i64* __restrict__ meta,
                                      const Acts& act) {
  constexpr int G = KIND == LSTM ? 4 : (KIND == GRU ? 3 : 1);
  constexpr int NA = KIND == LSTM ? 3 : (KIND == GRU ? 2 : 1);
  extern __shared__ __align__(16) unsigned char raw_shared[];
  const Shape s = Shape::load(meta);
  const int b = blockIdx.x, d = blockIdx.y, H = s.H, I = s.I, GH = G * H;
  C* h = reinterpret_cast<C*>(raw_shared);
  C* hn = h + H;
  C* cell = hn + H;        // LSTM: c
  C* rh = cell + H;        // GRU: r * h
  C* xs = rh + H;          // x_t
  C* xw = xs + I;          // x_t W^T
  C* pre = xw + GH;        // h R^T (GRU without linear_before_reset: (r * h) R_h^T for the h gate)
  const S* wd = w + static_cast<i64>(d) * GH * I;
  const S* rd = r + static_cast<i64>(d) * GH * H;
  const i64 st = static_cast<i64>(d) * s.sd + static_cast<i64>(b) * s.sb;
  for (int j = threadIdx.x; j < H; j += NT) {
    h[j] = h0 != nullptr ? static_cast<C>(to_compute(h0[st + j])) : C(0);
    cell[j] = (KIND == LSTM && c0 != nullptr) ? static_cast<C>(to_compute(c0[st + j])) : C(0);
  }
  const i64 len = lens != nullptr ? static_cast<i64>(lens[b]) : static_cast<i64>(s.S);
  const bool backward = s.direction == 1 || d == 1;
  const S* bd = bias != nullptr ? bias + static_cast<i64>(d) * 2 * GH : nullptr;
  auto wb = [&](int k) -> C { return bd != nullptr ? static_cast<C>(to_compute(bd[k])) : C(0); };
  auto rb = [&](int k) -> C { return bd != nullptr ? static_cast<C>(to_compute(bd[GH + k])) : C(0); };
  auto peephole = [&](int k) -> C {
    return peep != nullptr ? static_cast<C>(to_compute(peep[static_cast<i64>(d) * 3 * H + k])) : C(0);
  };
  __syncthreads();

  for (int step = 0; step < s.S; ++step) {
    const int t = backward ? s.S - 1 - step : step;
    const i64 yo = static_cast<i64>(t) * s.yt + static_cast<i64>(d) * s.yd + static_cast<i64>(b) * s.yb;
    if (!(t < len)) {  // the same for the whole block: past this batch element's length
      for (int j = threadIdx.x; j < H; j += NT) y[yo + j] = store<S>(C(0));
      continue;
    }
    const i64 xo = static_cast<i64>(t) * s.xt + static_cast<i64>(b) * s.xb;
    for (int k = threadIdx.x; k < I; k += NT) xs[k] = static_cast<C>(to_compute(x[xo + k]));
    __syncthreads();
    const bool reset_first = KIND == GRU && !s.linear_before_reset;
    dots<NT>(xw, wd, xs, I, 0, GH);
    dots<NT>(pre, rd, h, H, 0, reset_first ? 2 * H : GH);
    __syncthreads();
    if (reset_first) {
      for (int j = threadIdx.x; j < H; j += NT) {
        const C rg = act(d * NA, act.clamp(xw[H + j] + wb(H + j) + pre[H + j] + rb(H + j)));
        rh[j] = rg * h[j];
      }
      __syncthreads();
      dots<NT>(pre, rd, rh, H, 2 * H, 3 * H);
      __syncthreads();
    }
    for (int j = threadIdx.x; j < H; j += NT) {
      C out;
      if (KIND == RNN) {
        out = act(d * NA, act.clamp(xw[j] + wb(j) + pre[j] + rb(j)));
      } else if (KIND == GRU) {
        const C z = act(d * NA, act.clamp(xw[j] + wb(j) + pre[j] + rb(j)));
        C cand;
        if (s.linear_before_reset) {
          const C rg = act(d * NA, act.clamp(xw[H + j] + wb(H + j) + pre[H + j] + rb(H + j)));
          cand = act(d * NA + 1, act.clamp(xw[2 * H + j] + wb(2 * H + j) + rg * (pre[2 * H + j] + rb(2 * H + j))));
        } else {
          cand = act(d * NA + 1, act.clamp(xw[2 * H + j] + wb(2 * H + j) + pre[2 * H + j] + rb(2 * H + j)));
        }
        out = (C(1) - z) * cand + z * h[j];
      } else {
        const C cp = cell[j];
        const C ig = act(d * NA, act.clamp(xw[j] + wb(j) + pre[j] + rb(j) + peephole(j) * cp));
        const C fg = s.input_forget ? C(1) - ig
            : act(d * NA, act.clamp(xw[2 * H + j] + wb(2 * H + j) + pre[2 * H + j] + rb(2 * H + j) + peephole(2 * H + j) * cp));
        const C cc = act(d * NA + 1, act.clamp(xw[3 * H + j] + wb(3 * H + j) + pre[3 * H + j] + rb(3 * H + j)));
        const C cn = fg * cp + ig * cc;
        const C og = act(d * NA, act.clamp(xw[H + j] + wb(H + j) + pre[H + j] + rb(H + j) + peephole(H + j) * cn));
        out = og * act(d * NA + 2, cn);
        cell[j] = cn;
      }
      hn[j] = out;
      y[yo + j] = store<S>(out);
    }
    __syncthreads();
    C* tmp = h; h = hn; hn = tmp;
  }
  for (int j = threadIdx.x; j < H; j += NT) {
    yh[st + j] = store<S>(len == 0 ? C(0) : h[j]);
    if (KIND == LSTM) yc[st + j] = store<S>(len == 0 ? C(0) : cell[j]);
  }
}

}  // namespace rnn
}  // namespace ember
