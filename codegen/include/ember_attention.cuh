// Scaled dot-product attention (ember.attention), flash style: one block per (query row block,
// head, batch) walks the keys a tile at a time with an online softmax in f32 (f64 has no kernel).
//
// Per query row i of head h (batch b, key head g = h / (Hq / Hkv)), key j:
//   s = scale * q.k;  s = softcap * tanh(s / softcap) (softcap > 0);
//   s += float mask; s = -inf where j is not admitted (bool mask, causal, window, kv_lens)
// and y = softmax(s) v, where a row whose scores are all -inf (no admitted key) gives 0 * v. As in
// the reference, NaN propagates and keys that are not admitted still contribute 0 * v.
//
// Threads: TPR = NT / BQ consecutive lanes share a query row; lane l of a row holds the scores of keys
// l, l + TPR, ... of the tile and the output columns l, l + TPR, ... (DVPT of them, in registers).
// Dynamic shared memory: Q [BQ][D+1], K [BKV][D+1], V [BKV][Dv], P [BQ][BKV] as floats.
//
// meta: B, Hq, Hkv, Sq, Skv, D, Dv, causal, window left, window right, bottom_right, q_offset,
// then the mask's strides over (b, h, i, j) (0 where it broadcasts).
#pragma once
#include "ember_prelude.cuh"
#include "ember_gemm.cuh"

namespace ember {
namespace attention {

enum MaskKind { NO_MASK = 0, BOOL_MASK = 1, FLOAT_MASK = 2 };

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000u); }

struct Params {
  int B, Hq, Hkv, Sq, Skv, D, Dv;
  bool causal, bottom_right;
  int left, right;
  i64 q_offset;
  i64 ms[4];

  __device__ __forceinline__ static Params load(const i64* __restrict__ m) {
    Params p;
    p.B = static_cast<int>(m[0]); p.Hq = static_cast<int>(m[1]); p.Hkv = static_cast<int>(m[2]);
    p.Sq = static_cast<int>(m[3]); p.Skv = static_cast<int>(m[4]); p.D = static_cast<int>(m[5]);
    p.Dv = static_cast<int>(m[6]);
    p.causal = m[7] != 0; p.left = static_cast<int>(m[8]); p.right = static_cast<int>(m[9]);
    p.bottom_right = m[10] != 0; p.q_offset = m[11];
    for (int i = 0; i < 4; ++i) p.ms[i] = m[12 + i];
    return p;
  }
};

// The position offset of batch b's queries and its number of valid keys.
template <typename L>
__device__ __forceinline__ void row_origin(const Params& p, const L* __restrict__ kv_lens, int b, i64& offset,
                                           i64& valid) {
  valid = kv_lens != nullptr ? static_cast<i64>(kv_lens[b]) : static_cast<i64>(p.Skv);
  offset = p.bottom_right ? valid - p.Sq : p.q_offset;
}

// Score of key j for query i after the bias stage, from the soft-capped score: -inf unless j passes
// the masks (bool mask, causal, window, kv_lens), plus the float mask. `open`: j passes and its float
// mask is not -inf (a row with no open key has zero probabilities).
template <int MASK, typename M>
__device__ __forceinline__ float bias_score(const Params& p, const M* __restrict__ mask, int b, int h, int i, int j,
                                            i64 offset, i64 valid, bool has_lens, float capped, bool& open) {
  const i64 pos = i + offset;
  bool ok = true;
  if (p.causal) ok = ok && j <= pos;
  if (p.left >= 0) ok = ok && pos - j <= p.left;
  if (p.right >= 0) ok = ok && j - pos <= p.right;
  if (has_lens) ok = ok && j < valid;
  float added = 0.f;
  if (MASK != NO_MASK) {
    const i64 at = b * p.ms[0] + h * p.ms[1] + i * p.ms[2] + j * p.ms[3];
    if (MASK == BOOL_MASK) ok = ok && static_cast<bool>(mask[at]);
    else added = static_cast<float>(to_compute(mask[at]));
  }
  open = ok && added != neg_inf();
  return ok ? capped + added : neg_inf();
}

__device__ __forceinline__ float cap(float raw, float softcap) {
  return softcap > 0.f ? softcap * tanhf(raw / softcap) : raw;
}

template <int TPR> __device__ __forceinline__ float row_max(float v) {
#pragma unroll
  for (int o = TPR / 2; o > 0; o /= 2) v = max_nan(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
template <int TPR> __device__ __forceinline__ float row_sum(float v) {
#pragma unroll
  for (int o = TPR / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Grid (query blocks, Hq, B), NT threads; epi(index of y, column, value) for each output element.
template <int BQ, int BKV, int NT, int DVPT, int MASK, typename S, typename M, typename L, class Epi>
__device__ __forceinline__ void flash(const S* __restrict__ q, const S* __restrict__ k, const S* __restrict__ v,
                                      const M* __restrict__ mask, const L* __restrict__ kv_lens,
                                      const i64* __restrict__ meta, float scale, float softcap, const Epi& epi) {
  constexpr int TPR = NT / BQ;
  constexpr int SPT = BKV / TPR;
  static_assert(NT % BQ == 0 && TPR <= 32 && (TPR & (TPR - 1)) == 0 && BKV % TPR == 0, "thread layout");
  extern __shared__ __align__(16) float shared[];
  const Params p = Params::load(meta);
  const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * BQ;
  const int g = h / (p.Hq / p.Hkv);
  const int D = p.D, Dv = p.Dv;
  float* Qs = shared;
  float* Ks = Qs + BQ * (D + 1);
  float* Vs = Ks + BKV * (D + 1);
  float* Ps = Vs + BKV * Dv;

  const int tid = threadIdx.x, r = tid / TPR, lane = tid % TPR;
  const int i = q0 + r;
  const bool row_ok = i < p.Sq;
  i64 offset, valid;
  row_origin(p, kv_lens, b, offset, valid);

  const i64 qbase = ((static_cast<i64>(b) * p.Hq + h) * p.Sq + q0) * D;
  for (int e = tid; e < BQ * D; e += NT) {
    const int rr = e / D, d = e % D;
    Qs[rr * (D + 1) + d] = q0 + rr < p.Sq ? static_cast<float>(to_compute(q[qbase + e])) : 0.f;
  }
  const i64 kbase = (static_cast<i64>(b) * p.Hkv + g) * p.Skv * D;
  const i64 vbase = (static_cast<i64>(b) * p.Hkv + g) * p.Skv * Dv;

  float m_i = neg_inf(), l_i = 0.f;
  float o[DVPT];
#pragma unroll
  for (int u = 0; u < DVPT; ++u) o[u] = 0.f;

  for (int kv0 = 0; kv0 < p.Skv; kv0 += BKV) {
    __syncthreads();
    for (int e = tid; e < BKV * D; e += NT) {
      const int c = e / D, d = e % D;
      Ks[c * (D + 1) + d] = kv0 + c < p.Skv ? static_cast<float>(to_compute(k[kbase + static_cast<i64>(kv0) * D + e])) : 0.f;
    }
    for (int e = tid; e < BKV * Dv; e += NT) {
      const int c = e / Dv;
      Vs[e] = kv0 + c < p.Skv ? static_cast<float>(to_compute(v[vbase + static_cast<i64>(kv0) * Dv + e])) : 0.f;
    }
    __syncthreads();

    float s[SPT];
    float top = neg_inf();
#pragma unroll
    for (int u = 0; u < SPT; ++u) {
      const int c = lane + u * TPR, j = kv0 + c;
      float x = neg_inf();
      if (row_ok && j < p.Skv) {
        float dot = 0.f;
        const float* qr = Qs + r * (D + 1);
        const float* kr = Ks + c * (D + 1);
        for (int d = 0; d < D; ++d) dot += qr[d] * kr[d];
        bool open;
        x = bias_score<MASK>(p, mask, b, h, i, j, offset, valid, kv_lens != nullptr, cap(dot * scale, softcap), open);
      }
      s[u] = x;
      top = max_nan(top, x);
    }
    top = row_max<TPR>(top);
    const float m_new = max_nan(m_i, top);
    const bool none = m_new == neg_inf();
    const float alpha = none ? 1.f : expf(m_i - m_new);
    float sum = 0.f;
#pragma unroll
    for (int u = 0; u < SPT; ++u) {
      const float e = none ? 0.f : expf(s[u] - m_new);
      Ps[r * BKV + lane + u * TPR] = e;
      sum += e;
    }
    sum = row_sum<TPR>(sum);
    l_i = l_i * alpha + sum;
    m_i = m_new;
    __syncwarp();
    const float* pr = Ps + r * BKV;
#pragma unroll
    for (int u = 0; u < DVPT; ++u) {
      const int jj = lane + u * TPR;
      if (jj >= Dv) break;
      float accv = 0.f;
      for (int c = 0; c < BKV; ++c) accv += pr[c] * Vs[c * Dv + jj];
      o[u] = o[u] * alpha + accv;
    }
  }
  if (!row_ok) return;
  const i64 ybase = ((static_cast<i64>(b) * p.Hq + h) * p.Sq + i) * Dv;
#pragma unroll
  for (int u = 0; u < DVPT; ++u) {
    const int jj = lane + u * TPR;
    if (jj >= Dv) break;
    epi(ybase + jj, jj, l_i == 0.f ? o[u] : o[u] / l_i);
  }
}

// Tensor-core flash attention (sm_80 and newer) for f16 and bf16 with D == Dv a multiple of 16 up
// to 128: the same contract as `flash` (masks, causal, window, kv_lens, softcap, grouped heads,
// NaN propagation, a row with no admitted key giving 0 * v), computed with mma.sync m16n8k16 and
// f32 accumulation. NW warps, each 16 query rows (BQ = 16 NW); keys BKV = 64 at a time.
// Q passes once through shared memory into registers (A fragments); K and V tiles sit in shared
// memory as [key][d] (rows padded by 8 elements against bank conflicts), read with ldmatrix (K as
// the column-major B of Q K^T, V with .trans as the B of P V). Each thread holds the scores of two
// rows (lane / 4 and lane / 4 + 8) in the mma accumulator layout; a row's max and sum reduce over
// its quad; the probabilities are rounded to the storage type to become P's A fragments in place.
// Dynamic shared memory: 2 * BKV * (D + 8) elements.
template <typename S> __device__ __forceinline__ unsigned pack2(float lo, float hi);
template <> __device__ __forceinline__ unsigned pack2<__half>(float lo, float hi) {
  __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<unsigned*>(&h);
}
template <> __device__ __forceinline__ unsigned pack2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<unsigned*>(&h);
}

template <int NW, int D, int MASK, typename S, typename M, typename L, class Epi>
__device__ __forceinline__ void flash_mma(const S* __restrict__ q, const S* __restrict__ k, const S* __restrict__ v,
                                          const M* __restrict__ mask, const L* __restrict__ kv_lens,
                                          const i64* __restrict__ meta, float scale, float softcap, const Epi& epi) {
  constexpr int BQ = 16 * NW, BKV = 64, LD = D + 8, NT = 32 * NW;
  constexpr int KT = D / 16, SN = BKV / 8, ON = D / 8, CH = D / 8;
  static_assert(sizeof(S) == 2 && D % 16 == 0 && D <= 128 && BQ <= BKV, "f16/bf16, head size a multiple of 16");
#if __CUDA_ARCH__ < 800
  __trap();  // the planner takes this kernel only for sm_80 and newer
#else
  extern __shared__ __align__(16) float shared[];
  S* Ks = reinterpret_cast<S*>(shared);
  S* Vs = Ks + BKV * LD;
  const Params p = Params::load(meta);
  const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * BQ;
  const int g = h / (p.Hq / p.Hkv);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  i64 offset, valid;
  row_origin(p, kv_lens, b, offset, valid);
  const bool has_lens = kv_lens != nullptr;
  const bool vec = ((reinterpret_cast<unsigned long long>(q) | reinterpret_cast<unsigned long long>(k) |
                     reinterpret_cast<unsigned long long>(v)) & 15) == 0;

  // rows x D elements of a [row][D] tensor into shared [row][LD], zeros from row `limit` on
  auto load = [&](S* __restrict__ dst, const S* __restrict__ src, int rows, int limit) {
    for (int e = tid; e < rows * CH; e += NT) {
      const int r = e / CH, c = (e % CH) * 8;
      union { uint4 u; unsigned short h[8]; } w;
      w.u = make_uint4(0u, 0u, 0u, 0u);
      if (r < limit) {
        const S* at = src + static_cast<i64>(r) * D + c;
        if (vec) {
          w.u = *reinterpret_cast<const uint4*>(at);
        } else {
#pragma unroll
          for (int u = 0; u < 8; ++u) w.h[u] = reinterpret_cast<const unsigned short*>(at)[u];
        }
      }
      *reinterpret_cast<uint4*>(dst + r * LD + c) = w.u;
    }
  };

  load(Ks, q + ((static_cast<i64>(b) * p.Hq + h) * p.Sq + q0) * D, BQ, p.Sq - q0);
  __syncthreads();
  unsigned qf[KT][4];
#pragma unroll
  for (int kt = 0; kt < KT; ++kt)
    gemm::mma::ldmatrix_x4<false>(qf[kt], Ks + (warp * 16 + (lane & 15)) * LD + kt * 16 + (lane >> 4) * 8);

  const int i0 = q0 + warp * 16 + (lane >> 2), i1 = i0 + 8;
  float o[ON][4];
#pragma unroll
  for (int t = 0; t < ON; ++t) o[t][0] = o[t][1] = o[t][2] = o[t][3] = 0.f;
  float m_r[2] = {neg_inf(), neg_inf()}, l_r[2] = {0.f, 0.f};
  const i64 kvbase = (static_cast<i64>(b) * p.Hkv + g) * p.Skv * D;

  for (int kv0 = 0; kv0 < p.Skv; kv0 += BKV) {
    __syncthreads();  // the previous tile (or Q's staging) is read
    load(Ks, k + kvbase + static_cast<i64>(kv0) * D, BKV, p.Skv - kv0);
    load(Vs, v + kvbase + static_cast<i64>(kv0) * D, BKV, p.Skv - kv0);
    __syncthreads();

    float s[SN][4];
#pragma unroll
    for (int j = 0; j < SN; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
    for (int kt = 0; kt < KT; ++kt)
#pragma unroll
      for (int j = 0; j < SN; j += 2) {
        unsigned r[4];
        gemm::mma::ldmatrix_x4<false>(r, Ks + (j * 8 + (lane & 7) + ((lane >> 4) << 3)) * LD + kt * 16 +
                                       ((lane >> 3) & 1) * 8);
        gemm::mma::m16n8k16(s[j], qf[kt], r[0], r[1], S());
        gemm::mma::m16n8k16(s[j + 1], qf[kt], r[2], r[3], S());
      }

    float top[2] = {neg_inf(), neg_inf()};
#pragma unroll
    for (int j = 0; j < SN; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = e < 2 ? i0 : i1, key = kv0 + j * 8 + (lane & 3) * 2 + (e & 1);
        float x = neg_inf();
        if (i < p.Sq && key < p.Skv) {
          bool open;
          x = bias_score<MASK>(p, mask, b, h, i, key, offset, valid, has_lens, cap(s[j][e] * scale, softcap), open);
        }
        s[j][e] = x;
        top[e >> 1] = max_nan(top[e >> 1], x);
      }
    float alpha[2], sum[2] = {0.f, 0.f};
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      top[r] = max_nan(top[r], __shfl_xor_sync(0xffffffffu, top[r], 1));
      top[r] = max_nan(top[r], __shfl_xor_sync(0xffffffffu, top[r], 2));
      const float m_new = max_nan(m_r[r], top[r]);
      alpha[r] = m_new == neg_inf() ? 1.f : expf(m_r[r] - m_new);
      m_r[r] = m_new;
    }
#pragma unroll
    for (int j = 0; j < SN; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e >> 1;
        const float pe = m_r[r] == neg_inf() ? 0.f : expf(s[j][e] - m_r[r]);
        s[j][e] = pe;
        sum[r] += pe;
      }
#pragma unroll
    for (int r = 0; r < 2; ++r) l_r[r] = l_r[r] * alpha[r] + sum[r];
#pragma unroll
    for (int t = 0; t < ON; ++t) {
      o[t][0] *= alpha[0]; o[t][1] *= alpha[0]; o[t][2] *= alpha[1]; o[t][3] *= alpha[1];
    }

#pragma unroll
    for (int kk = 0; kk < BKV / 16; ++kk) {
      unsigned a[4];
      a[0] = pack2<S>(s[2 * kk][0], s[2 * kk][1]);
      a[1] = pack2<S>(s[2 * kk][2], s[2 * kk][3]);
      a[2] = pack2<S>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      a[3] = pack2<S>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
      for (int t = 0; t < ON; t += 2) {
        unsigned r[4];
        gemm::mma::ldmatrix_x4<true>(r, Vs + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + t * 8 +
                                      ((lane >> 4) << 3));
        gemm::mma::m16n8k16(o[t], a, r[0], r[1], S());
        gemm::mma::m16n8k16(o[t + 1], a, r[2], r[3], S());
      }
    }
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l_r[r] += __shfl_xor_sync(0xffffffffu, l_r[r], 1);
    l_r[r] += __shfl_xor_sync(0xffffffffu, l_r[r], 2);
  }
#pragma unroll
  for (int t = 0; t < ON; ++t)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int r = e >> 1, i = r ? i1 : i0;
      if (i >= p.Sq) continue;
      const int col = t * 8 + (lane & 3) * 2 + (e & 1);
      const i64 ybase = ((static_cast<i64>(b) * p.Hq + h) * p.Sq + i) * D;
      epi(ybase + col, col, l_r[r] == 0.f ? o[t][e] : o[t][e] / l_r[r]);
    }
#endif
}

// The score matrix at one stage (0 raw, 1 softcap, 2 biased, 3 probs), one block per row (i, h, b);
// probabilities take a max pass and a sum pass first (scores are recomputed, not stored).
// Dynamic shared memory: q's row (D floats) and NT floats for block reductions.
template <int NT, int STAGE, int MASK, typename S, typename M, typename L, typename O>
__device__ __forceinline__ void scores(O* __restrict__ out, const S* __restrict__ q, const S* __restrict__ k,
                                       const M* __restrict__ mask, const L* __restrict__ kv_lens,
                                       const i64* __restrict__ meta, float scale, float softcap) {
  extern __shared__ __align__(16) float shared[];
  const Params p = Params::load(meta);
  const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int g = h / (p.Hq / p.Hkv);
  const int D = p.D;
  float* qs = shared;
  float* red = shared + D;
  const i64 qbase = ((static_cast<i64>(b) * p.Hq + h) * p.Sq + i) * D;
  for (int d = threadIdx.x; d < D; d += NT) qs[d] = static_cast<float>(to_compute(q[qbase + d]));
  __syncthreads();
  i64 offset, valid;
  row_origin(p, kv_lens, b, offset, valid);
  const i64 kbase = (static_cast<i64>(b) * p.Hkv + g) * p.Skv * D;
  const i64 obase = ((static_cast<i64>(b) * p.Hq + h) * p.Sq + i) * p.Skv;

  auto score = [&](int j, int stage, bool& open) -> float {
    float dot = 0.f;
    for (int d = 0; d < D; ++d) dot += qs[d] * static_cast<float>(to_compute(k[kbase + static_cast<i64>(j) * D + d]));
    const float raw = dot * scale;
    const float capped = cap(raw, softcap);
    const float biased = bias_score<MASK>(p, mask, b, h, i, j, offset, valid, kv_lens != nullptr, capped, open);
    return stage == 0 ? raw : (stage == 1 ? capped : biased);
  };
  auto reduce = [&](float x, bool is_max) -> float {
    red[threadIdx.x] = x;
    __syncthreads();
    for (int s = NT / 2; s > 0; s /= 2) {
      if (threadIdx.x < s) red[threadIdx.x] = is_max ? max_nan(red[threadIdx.x], red[threadIdx.x + s])
                                                     : red[threadIdx.x] + red[threadIdx.x + s];
      __syncthreads();
    }
    const float r = red[0];
    __syncthreads();
    return r;
  };

  if (STAGE < 3) {
    for (int j = threadIdx.x; j < p.Skv; j += NT) {
      bool open;
      out[obase + j] = store<O>(score(j, STAGE, open));
    }
    return;
  }
  float top = neg_inf(), any_open = 0.f;
  for (int j = threadIdx.x; j < p.Skv; j += NT) {
    bool open;
    top = max_nan(top, score(j, 2, open));
    any_open = open ? 1.f : any_open;
  }
  top = reduce(top, true);
  const bool empty = reduce(any_open, true) == 0.f;
  if (top == neg_inf()) top = 0.f;
  float total = 0.f;
  for (int j = threadIdx.x; j < p.Skv; j += NT) {
    bool open;
    total += expf(score(j, 2, open) - top);
  }
  total = reduce(total, false);
  if (total == 0.f) total = 1.f;
  for (int j = threadIdx.x; j < p.Skv; j += NT) {
    bool open;
    const float e = expf(score(j, 2, open) - top) / total;
    out[obase + j] = store<O>(empty ? 0.f : e);
  }
}

}  // namespace attention
}  // namespace ember
