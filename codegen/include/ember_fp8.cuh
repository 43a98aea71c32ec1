// The fp8 kernels: ember.fp8_matmul and ember.fp8_conv (ir/ops/fp8.py defines what they compute).
//
// Operands are f8e4m3fn or f8e5m2 (`__nv_fp8_e4m3` / `__nv_fp8_e5m2`, each operand its own type);
// their products are exact and are added in f32. Where they are added depends on the target the
// kernel was compiled for (one kernel serves every target of an engine):
//   sm_89 and newer: mma.sync.aligned.m16n8k32.row.col.f32.<x>.<w>.f32 on fp8 tensor cores;
//   sm_80 .. sm_88:  the same tiles, the fp8 fragments widened in registers to f16 (exactly: every
//                    e4m3 and e5m2 value is an f16 value) and multiplied with two
//                    mma.sync.m16n8k16.f32.f16.f16.f32, f32 accumulation;
//   older:           the same tile, one element per thread, in f32 (`simt_tile`).
// Both ends then run one epilogue in registers (`Rescale`: scales, bias, relu, then the value as
// the result type) and hand the op's value to the wrapper's functor `epi(index, channel, value)`,
// which stores it after the elementwise ops fused after the op, if any; an op with nothing fused
// stores through int8::Store (two adjacent channels per store where aligned).
//
// The tiles read both operands k-major, 16 bytes (16 values of k) at a time, as the int8 tiles
// do: a row-major [rows][K] matrix (a linear layer's input rows, batch dims folded into the rows,
// and its [N][K] weight), or a channels-last activation as im2col patches (16 channels of one tap,
// C_in a multiple of 16) against an OHWI filter; shared rows are padded by 16 bytes so that
// ldmatrix's eight 16-byte rows fall in distinct banks. The fp8 fragments of m16n8k32 are the b16
// fragments of m16n8k16 byte for byte (the s8 layout), so ldmatrix (b16) loads them. Taps in a
// convolution's padding and rows or columns past the matrix read +0.0 (byte 0).
//
// The f16 widening of the sm_80 path: thread t of a group holds k = 4t .. 4t + 3 (and 16 + 4t ..)
// of the fp8 fragment and k = 2t, 2t + 1, 2t + 8, 2t + 9 of an f16 one. Bytes (0, 1) of an fp8
// register become the f16 pair at 2t, bytes (2, 3) the pair at 2t + 8, in A's and B's fragments
// alike: one permutation of k in both operands, so each m16n8k16 adds the same products. e5m2 is
// the high byte of an f16; an e4m3 byte b becomes the f16 (b & 0x80) << 8 | (b & 0x7f) << 7, which
// is its value times 2^-8 (normal and subnormal alike; 0x7f, NaN, becomes an f16 NaN), so the
// accumulators are scaled back by 2^8 per e4m3 operand at the end, exactly.
#pragma once
#include "ember_int8.cuh"

namespace ember {
namespace fp8 {

// A BM x BN tile of the product per block, BK (bytes, = values of k) per stage, WM x WN per warp.
template <int BM_, int BN_, int BK_, int WM_, int WN_>
struct Mma {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, WM = WM_, WN = WN_;
  static constexpr int WARPS_N = BN / WN, THREADS = (BM / WM) * (BN / WN) * 32;
  static constexpr int MI = WM / 16, NI = WN / 8;
  static constexpr int LD = BK + 16;                      // shared pitch of a row, bytes
  static constexpr int CHUNKS = BK / 16;                  // 16-byte reads per row and stage
  static constexpr int A_PER = BM * CHUNKS / THREADS, B_PER = BN * CHUNKS / THREADS;
  static constexpr int STAGE = (BM + BN) * LD;
  static constexpr int FIT = 45056 / STAGE;
  static constexpr int STAGES = FIT > 4 ? 4 : FIT < 2 ? 2 : FIT;
  static_assert(BK % 32 == 0 && WM % 16 == 0 && WN % 16 == 0, "whole m16n8k32 tiles; B fragments load in pairs");
  static_assert(A_PER >= 1 && A_PER * THREADS == BM * CHUNKS, "A's reads must tile evenly");
  static_assert(B_PER >= 1 && B_PER * THREADS == BN * CHUNKS, "B's reads must tile evenly");
  static_assert(THREADS % CHUNKS == 0, "a thread keeps its k offset");
};

// The fp8 formats by their CUDA storage type: the PTX type name's role is played by `E4M3`.
template <typename F> struct Format;
template <> struct Format<__nv_fp8_e4m3> {
  static constexpr bool E4M3 = true;
  __device__ __forceinline__ static float value(unsigned char b) { return decode<f8e4m3fn>(b); }
};
template <> struct Format<__nv_fp8_e5m2> {
  static constexpr bool E4M3 = false;
  __device__ __forceinline__ static float value(unsigned char b) { return decode<f8e5m2>(b); }
};

// The epilogue of ir/ops/fp8.py `fp8_epilogue`, step for step, every operation rounded once (no
// contraction into fused multiply-adds): scale = sx * sw[n]; v = acc * scale + bias[n]; relu.
template <bool RELU, bool PER_CHANNEL>
struct Rescale {
  const float* __restrict__ w_scale;
  const float* __restrict__ bias;
  float sx;

  __device__ __forceinline__ static Rescale load(const float* __restrict__ x_scale, const float* __restrict__ w_scale,
                                                 const float* __restrict__ bias) {
    Rescale r;
    r.w_scale = w_scale;
    r.bias = bias;
    r.sx = x_scale[0];
    return r;
  }
  __device__ __forceinline__ float value(float acc, int n) const {
    const float s = __fmul_rn(sx, PER_CHANNEL ? w_scale[n] : w_scale[0]);
    float v = __fmul_rn(acc, s);
    if (bias != nullptr) v = __fadd_rn(v, bias[n]);
    if (RELU) v = v < 0.0f ? 0.0f : v;
    return v;
  }
  template <typename Index, class Epi>
  __device__ __forceinline__ void store(const Epi& epi, Index index, int n, float acc) const {
    epi(index, n, value(acc, n));
  }
  // Channels n and n + 1 at `index` and `index + 1`, with one store where the functor can.
  template <typename Index, class Epi>
  __device__ __forceinline__ void store2(const Epi& epi, Index index, int n, float acc0, float acc1) const {
    const float v0 = value(acc0, n), v1 = value(acc1, n + 1);
    if (epi.pair(index, v0, v1)) return;
    epi(index, n, v0);
    epi(index + 1, n + 1, v1);
  }
};

// -- operands, k-major, 16 values of k per read ----------------------------------------------------
// int8's loaders on fp8 bytes; a tap in the padding reads +0.0 (zero bytes).
template <typename Index> using Rows = int8::Rows<Index, unsigned char>;
template <typename Index> using Patches = int8::Patches<Index, unsigned char, float>;
template <bool VEC>
__device__ __forceinline__ void fill16(unsigned char* __restrict__ dst, const unsigned char* src, bool in) {
  int8::fill16<VEC>(dst, src, in, 0u);
}

// Two fp8 codes (bits 0-7 and 8-15 of `two`) as an f16 pair, the first in the low half: e5m2
// exactly, e4m3 times 2^-8 (see the header's comment).
template <typename F>
__device__ __forceinline__ unsigned widen2(unsigned two) {
  const unsigned b0 = two & 0xffu, b1 = (two >> 8) & 0xffu;
  if constexpr (Format<F>::E4M3) {
    unsigned h0 = ((b0 & 0x80u) << 8) | ((b0 & 0x7fu) << 7);
    unsigned h1 = ((b1 & 0x80u) << 8) | ((b1 & 0x7fu) << 7);
    if ((b0 & 0x7fu) == 0x7fu) h0 |= 0x7e00u;
    if ((b1 & 0x7fu) == 0x7fu) h1 |= 0x7e00u;
    return h0 | (h1 << 16);
  } else {
    return (b0 << 8) | (b1 << 24);
  }
}

// c += a (16 x 32 fp8, row) * b (32 x 8 fp8, column), f32 accumulators.
template <typename FA, typename FB>
__device__ __forceinline__ void mma_fp8(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
#if __CUDA_ARCH__ >= 890
  if constexpr (Format<FA>::E4M3 && Format<FB>::E4M3)
    asm volatile("mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else if constexpr (Format<FA>::E4M3)
    asm volatile("mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e5m2.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else if constexpr (Format<FB>::E4M3)
    asm volatile("mma.sync.aligned.m16n8k32.row.col.f32.e5m2.e4m3.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm volatile("mma.sync.aligned.m16n8k32.row.col.f32.e5m2.e5m2.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#elif __CUDA_ARCH__ >= 800
  const unsigned lo[4] = {widen2<FA>(a[0]), widen2<FA>(a[1]), widen2<FA>(a[0] >> 16), widen2<FA>(a[1] >> 16)};
  const unsigned hi[4] = {widen2<FA>(a[2]), widen2<FA>(a[3]), widen2<FA>(a[2] >> 16), widen2<FA>(a[3] >> 16)};
  gemm::mma::m16n8k16(c, lo, widen2<FB>(b0), widen2<FB>(b0 >> 16), __half());
  gemm::mma::m16n8k16(c, hi, widen2<FB>(b1), widen2<FB>(b1 >> 16), __half());
#endif
}

// What the accumulators of the tile's mma path are multiplied by at the end: 1 on fp8 tensor
// cores, 2^8 per e4m3 operand where the fragments were widened to f16 (an exact scaling).
template <typename FA, typename FB>
__device__ __forceinline__ float unscale() {
#if __CUDA_ARCH__ >= 890
  return 1.0f;
#else
  return (Format<FA>::E4M3 ? 256.0f : 1.0f) * (Format<FB>::E4M3 ? 256.0f : 1.0f);
#endif
}

// One block's BM x BN tile of acc(m, n) = sum_k A(m, k) * B(n, k) on tensor cores. Calls
// out(m, n, acc) for each element inside M x N, or with PAIR out.pair(m, n, acc, acc') for columns
// n and n + 1 both inside.
template <class T, typename FA, typename FB, bool VEC, bool PAIR, class LA, class LB, class Out>
__device__ __forceinline__ void mma_tile(const LA& la, const LB& lb, int M, int N, int K, int m0, int n0,
                                         const Out& out, unsigned char* __restrict__ smem) {
  constexpr int BM = T::BM, BK = T::BK, NT = T::THREADS, MI = T::MI, NI = T::NI, LD = T::LD;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = (warp / T::WARPS_N) * T::WM, wn = (warp % T::WARPS_N) * T::WN;

  // This thread's reads: rows first + e * STEP of each operand, at k offset kc (fixed).
  constexpr int STEP = NT / T::CHUNKS;
  const int kc = (tid % T::CHUNKS) * 16, first = tid / T::CHUNKS;
  typename LA::Line a_line[T::A_PER];
  bool a_ok[T::A_PER];
#pragma unroll
  for (int e = 0; e < T::A_PER; ++e) {
    const int m = m0 + first + e * STEP;
    a_ok[e] = m < M;
    a_line[e] = la.line(a_ok[e] ? m : m0);
  }
  typename LB::Line b_line[T::B_PER];
  bool b_ok[T::B_PER];
#pragma unroll
  for (int e = 0; e < T::B_PER; ++e) {
    const int n = n0 + first + e * STEP;
    b_ok[e] = n < N;
    b_line[e] = lb.line(b_ok[e] ? n : n0);
  }

  auto issue = [&](int k0, unsigned char* __restrict__ s) {
    const int k = k0 + kc;
#pragma unroll
    for (int e = 0; e < T::A_PER; ++e) {
      const unsigned char* src = nullptr;
      const bool data = a_ok[e] && k < K && la.at(a_line[e], k, src);
      fill16<VEC>(s + (first + e * STEP) * LD + kc, src, data);
    }
    unsigned char* bs = s + BM * LD;
#pragma unroll
    for (int e = 0; e < T::B_PER; ++e) {
      const unsigned char* src = nullptr;
      const bool data = b_ok[e] && k < K && lb.at(b_line[e], k, src);
      fill16<VEC>(bs + (first + e * STEP) * LD + kc, src, data);
    }
  };

  float acc[MI][NI][4];
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NI; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[i][j][q] = 0.0f;

  constexpr int S = T::STAGES;
  const int KT = (K + BK - 1) / BK;
#pragma unroll
  for (int st = 0; st < S - 1; ++st) {
    if (st < KT) issue(st * BK, smem + st * T::STAGE);
    gemm::mma::cp_async_commit();
  }
  for (int kt = 0; kt < KT; ++kt) {
    gemm::mma::cp_async_wait<S - 2>();
    __syncthreads();
    // Stage kt + S - 1 goes where stage kt - 1 was, which every warp is done with (the barrier
    // above): issued before the math on stage kt, so that even two stages overlap.
    const int next = kt + S - 1;
    if (next < KT) issue(next * BK, smem + (next % S) * T::STAGE);
    gemm::mma::cp_async_commit();
    const unsigned char* As = smem + (kt % S) * T::STAGE;
    const unsigned char* Bs = As + BM * LD;
#pragma unroll
    for (int kk = 0; kk < BK; kk += 32) {
      unsigned af[MI][4], bf[NI][2];
#pragma unroll
      for (int i = 0; i < MI; ++i)
        gemm::mma::ldmatrix_x4<false>(af[i], As + (wm + i * 16 + (lane & 15)) * LD + kk + (lane >> 4) * 16);
#pragma unroll
      for (int j = 0; j < NI; j += 2) {
        unsigned r[4];
        gemm::mma::ldmatrix_x4<false>(r, Bs + (wn + j * 8 + (lane & 7) + ((lane >> 4) << 3)) * LD + kk +
                                             ((lane >> 3) & 1) * 16);
        bf[j][0] = r[0]; bf[j][1] = r[1]; bf[j + 1][0] = r[2]; bf[j + 1][1] = r[3];
      }
#pragma unroll
      for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j) mma_fp8<FA, FB>(acc[i][j], af[i], bf[j][0], bf[j][1]);
    }
  }
  gemm::mma::cp_async_wait<0>();

  // Fragment (i, j) holds rows g and g + 8, columns 2t and 2t + 1 of its 16 x 8 tile.
  const float back = unscale<FA, FB>();
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int m = m0 + wm + i * 16 + g + h * 8;
      if (m >= M) continue;
#pragma unroll
      for (int j = 0; j < NI; ++j) {
        const int n = n0 + wn + j * 8 + 2 * t;
        const float a0 = __fmul_rn(acc[i][j][h * 2], back), a1 = __fmul_rn(acc[i][j][h * 2 + 1], back);
        if constexpr (PAIR) {
          if (n + 1 < N) {
            out.pair(m, n, a0, a1);
            continue;
          }
        }
        if (n < N) out(m, n, a0);
        if (n + 1 < N) out(m, n + 1, a1);
      }
    }
}

// The same tile one element per thread at a time, in f32, for architectures without the
// instructions above (the kernel of an engine serves every target it was built for).
template <class T, typename FA, typename FB, class LA, class LB, class Out>
__device__ __forceinline__ void simt_tile(const LA& la, const LB& lb, int M, int N, int K, int m0, int n0,
                                          const Out& out) {
  for (int e = threadIdx.x; e < T::BM * T::BN; e += T::THREADS) {
    const int m = m0 + e / T::BN, n = n0 + e % T::BN;
    if (m >= M || n >= N) continue;
    const typename LA::Line a = la.line(m);
    const typename LB::Line b = lb.line(n);
    float acc = 0.0f;
    for (int k = 0; k < K; k += 16) {
      const unsigned char *pa = nullptr, *pb = nullptr;
      if (!la.at(a, k, pa)) continue;   // a tap in the padding adds nothing
      lb.at(b, k, pb);
#pragma unroll
      for (int q = 0; q < 16; ++q)
        acc = __fadd_rn(acc, __fmul_rn(Format<FA>::value(pa[q]), Format<FB>::value(pb[q])));
    }
    out(m, n, acc);
  }
}

template <class T, typename FA, typename FB, bool PAIR, class LA, class LB, class Out>
__device__ __forceinline__ void tile(const LA& la, const LB& lb, int M, int N, int K, int m0, int n0,
                                     const Out& out) {
#if __CUDA_ARCH__ >= 800
  __shared__ __align__(16) unsigned char smem[T::STAGES * T::STAGE];
  if (la.aligned() && lb.aligned())
    mma_tile<T, FA, FB, true, PAIR>(la, lb, M, N, K, m0, n0, out, smem);
  else
    mma_tile<T, FA, FB, false, PAIR>(la, lb, M, N, K, m0, n0, out, smem);
#else
  simt_tile<T, FA, FB>(la, lb, M, N, K, m0, n0, out);
#endif
}

// Where element (m, n) of the product goes, and its epilogue: int8's, with f32 accumulators.
template <class R, class Epi, typename Index> using RowsOut = int8::RowsOut<R, Epi, Index, float>;
template <class R, class Epi, typename Index> using ConvOut = int8::ConvOut<R, Epi, Index, float>;

template <typename F>
__device__ __forceinline__ const unsigned char* bytes(const F* p) { return reinterpret_cast<const unsigned char*>(p); }

// -- ember.fp8_matmul -------------------------------------------------------------------------------
// x [M][K] (batch dims folded into M) times w [N][K]; grid (M tiles, N tiles); K a multiple of 16.
template <class T, bool RELU, bool PER_CHANNEL, bool PAIR, typename Index, typename FA, typename FB, class Epi>
__device__ __forceinline__ void matmul(const FA* __restrict__ x, const FB* __restrict__ w,
                                       const float* __restrict__ x_scale, const float* __restrict__ w_scale,
                                       const float* __restrict__ bias, int M, int N, int K, const Epi& epi) {
  const Rescale<RELU, PER_CHANNEL> r = Rescale<RELU, PER_CHANNEL>::load(x_scale, w_scale, bias);
  const Rows<Index> la{bytes(x), static_cast<Index>(K)};
  const Rows<Index> lb{bytes(w), static_cast<Index>(K)};
  const RowsOut<Rescale<RELU, PER_CHANNEL>, Epi, Index> out{r, epi, N};
  tile<T, FA, FB, PAIR>(la, lb, M, N, K, static_cast<int>(blockIdx.x) * T::BM, static_cast<int>(blockIdx.y) * T::BN,
                        out);
}

// One thread per output element (grid-stride), any K: products in f32 in order of k.
template <bool RELU, bool PER_CHANNEL, typename Index, typename FA, typename FB, class Epi>
__device__ __forceinline__ void matmul_direct(const FA* __restrict__ x, const FB* __restrict__ w,
                                              const float* __restrict__ x_scale, const float* __restrict__ w_scale,
                                              const float* __restrict__ bias, int N, int K, Index total,
                                              const Epi& epi) {
  const Rescale<RELU, PER_CHANNEL> r = Rescale<RELU, PER_CHANNEL>::load(x_scale, w_scale, bias);
  const unsigned char* xb = bytes(x);
  const unsigned char* wb = bytes(w);
  for (Index i = blockIdx.x * static_cast<Index>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<Index>(gridDim.x) * blockDim.x) {
    const Index m = i / N;
    const int n = static_cast<int>(i % N);
    const unsigned char* a = xb + m * K;
    const unsigned char* b = wb + static_cast<Index>(n) * K;
    float acc = 0.0f;
    for (int k = 0; k < K; ++k) acc = __fadd_rn(acc, __fmul_rn(Format<FA>::value(a[k]), Format<FB>::value(b[k])));
    r.store(epi, i, n, acc);
  }
}

// -- ember.fp8_conv ---------------------------------------------------------------------------------
// Channels-last x, OHWI w (C_in a multiple of 16, one group): the implicit GEMM of conv::Geom's
// M = batch x positions, N = C_out, K = taps x C_in; grid (M tiles, N tiles).
template <class T, bool RELU, bool PER_CHANNEL, bool PAIR, typename Index, typename FA, typename FB, class Epi>
__device__ __forceinline__ void conv(const FA* __restrict__ x, const FB* __restrict__ w,
                                     const float* __restrict__ x_scale, const float* __restrict__ w_scale,
                                     const float* __restrict__ bias, const i64* __restrict__ meta, const Epi& epi) {
  const Rescale<RELU, PER_CHANNEL> r = Rescale<RELU, PER_CHANNEL>::load(x_scale, w_scale, bias);
  const conv::Geom<Index> g = conv::Geom<Index>::load(meta);
  const int P = g.positions();
  const int M = g.n * P, N = g.k, K = g.c * g.taps();
  const Patches<Index> la{conv::Im2col<true, unsigned char, float, Index>{bytes(x), g, 0}};
  const Rows<Index> lb{bytes(w), g.ws[0]};
  const ConvOut<Rescale<RELU, PER_CHANNEL>, Epi, Index> out{r, epi, g, P};
  tile<T, FA, FB, PAIR>(la, lb, M, N, K, static_cast<int>(blockIdx.x) * T::BM, static_cast<int>(blockIdx.y) * T::BN,
                        out);
}

// One thread per output element (grid-stride): any layout, groups, channel count. Taps in the
// padding add nothing.
template <bool CL, bool RELU, bool PER_CHANNEL, typename Index, typename FA, typename FB, class Epi>
__device__ __forceinline__ void conv_direct(const FA* __restrict__ x, const FB* __restrict__ w,
                                            const float* __restrict__ x_scale, const float* __restrict__ w_scale,
                                            const float* __restrict__ bias, const i64* __restrict__ meta, Index total,
                                            const Epi& epi) {
  const Rescale<RELU, PER_CHANNEL> r = Rescale<RELU, PER_CHANNEL>::load(x_scale, w_scale, bias);
  const conv::Geom<Index> g = conv::Geom<Index>::load(meta);
  const unsigned char* xb = bytes(x);
  const unsigned char* wb = bytes(w);
  const int cg = g.cg(), kg = g.kg();
  for (Index i = blockIdx.x * static_cast<Index>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<Index>(gridDim.x) * blockDim.x) {
    int nb, ch, oz, oy, ox;
    conv::split_out<CL>(g, i, nb, ch, oz, oy, ox);
    const int grp = ch / kg;
    const Index xbase = static_cast<Index>(nb) * g.xs[0] + static_cast<Index>(grp) * cg * g.xs[1];
    const Index wbase = static_cast<Index>(ch) * g.ws[0];
    float acc = 0.0f;
    conv::for_each_tap(g, xbase, wbase, oz, oy, ox, [&](Index xo, Index wo) {
      for (int c = 0; c < cg; ++c)
        acc = __fadd_rn(acc, __fmul_rn(Format<FA>::value(xb[xo + static_cast<Index>(c) * g.xs[1]]),
                                       Format<FB>::value(wb[wo + static_cast<Index>(c) * g.ws[1]])));
    });
    r.store(epi, i, ch, acc);
  }
}

}  // namespace fp8
}  // namespace ember
