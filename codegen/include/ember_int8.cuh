// The int8 kernels: ember.int8_matmul and ember.int8_conv (ir/ops/int8.py defines what they compute).
//
// Products of s8 operands accumulate exactly in s32: on tensor cores with
// mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 (sm_80 and newer), or one thread per output element
// (`*_direct`, for the shapes the tiles do not take). Both end in the same epilogue, in registers
// (`Rescale`): the activation zero point's correction, the scales, the bias, relu, and the
// requantization to s8 or the float value, which the wrapper's functor `epi(index, channel, value)`
// stores (after the elementwise ops fused after the op, if any). An op with no fused ops stores
// through `Store`, which writes the two adjacent channels a tile's thread holds with one store
// where the result is channels-last and the address is aligned.
//
// The tensor-core tiles read both operands k-major, 16 bytes (16 values of k) at a time: a row-major
// [rows][K] matrix (a linear layer's input rows, batch dims folded into the rows, and its [N][K]
// weight), or a channels-last activation as im2col patches (16 channels of one tap, C_in a multiple
// of 16) against an OHWI filter. Each operand keeps that order in shared memory, rows padded by 16
// bytes so that ldmatrix's eight 16-byte rows fall in distinct banks; the s8 fragments of m16n8k32
// are the b16 fragments of m16n8k16 byte for byte, so ldmatrix (b16) loads them. cp.async fills
// STAGES stages ahead of the math when the operands are 16-byte aligned (checked per call; the
// others stage through registers). Taps in a convolution's padding read the zero point zx, so the
// sum over every tap minus zx times the filter's sum (which each block adds up from the B tiles it
// stages, with dp4a) is the sum over the taps inside, of (x - zx) * w: exactly the reference.
#pragma once
#include "ember_conv.cuh"

namespace ember {
namespace int8 {

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

// The epilogue of ir/ops/int8.py `int8_epilogue`, step for step, every operation rounded once (no
// contraction into fused multiply-adds): scale = sx * sw[n]; v = f32(acc) * scale + bias[n];
// relu; then the float v, or rint(v / sy) + zy clipped to [-128, 127] (NaN: zy).
template <bool REQUANT, bool RELU, bool PER_CHANNEL>
struct Rescale {
  const float* __restrict__ w_scale;
  const float* __restrict__ bias;
  float sx, sy, zy;

  __device__ __forceinline__ static Rescale load(const float* __restrict__ x_scale, const float* __restrict__ w_scale,
                                                 const float* __restrict__ bias, const float* __restrict__ y_scale,
                                                 const signed char* __restrict__ y_zero) {
    Rescale r;
    r.w_scale = w_scale;
    r.bias = bias;
    r.sx = x_scale[0];
    r.sy = y_scale != nullptr ? y_scale[0] : 1.0f;
    r.zy = y_zero != nullptr ? static_cast<float>(y_zero[0]) : 0.0f;
    return r;
  }
  __device__ __forceinline__ float value(int acc, int n) const {
    const float s = __fmul_rn(sx, PER_CHANNEL ? w_scale[n] : w_scale[0]);
    float v = __fmul_rn(__int2float_rn(acc), s);
    if (bias != nullptr) v = __fadd_rn(v, bias[n]);
    if (RELU) v = v < 0.0f ? 0.0f : v;
    return v;
  }
  __device__ __forceinline__ int requantize(float v) const { return int8_requantize(v, sy, static_cast<int>(zy)); }
  // The op's value at output `index` (channel n) from the corrected accumulator, to the functor.
  template <typename Index, class Epi>
  __device__ __forceinline__ void store(const Epi& epi, Index index, int n, int acc) const {
    const float v = value(acc, n);
    if constexpr (REQUANT) epi(index, n, requantize(v));
    else epi(index, n, v);
  }
  // Channels n and n + 1 at `index` and `index + 1`, with one store where the functor can.
  template <typename Index, class Epi>
  __device__ __forceinline__ void store2(const Epi& epi, Index index, int n, int acc0, int acc1) const {
    const float v0 = value(acc0, n), v1 = value(acc1, n + 1);
    bool done;
    if constexpr (REQUANT) done = epi.pair(index, requantize(v0), requantize(v1));
    else done = epi.pair(index, v0, v1);
    if (done) return;
    if constexpr (REQUANT) {
      epi(index, n, requantize(v0));
      epi(index + 1, n + 1, requantize(v1));
    } else {
      epi(index, n, v0);
      epi(index + 1, n + 1, v1);
    }
  }
};

// The store of an int8 op with no fused epilogue ops: out[index] = value, and two adjacent
// channels with one store where that address is aligned for both (the tiles hold columns 2t
// and 2t + 1 of each fragment).
template <typename T>
struct Store {
  T* __restrict__ out;
  template <typename Index, typename V>
  __device__ __forceinline__ void operator()(Index index, int, V v) const { out[index] = ember::store<T>(v); }
  template <typename Index, typename V>
  __device__ __forceinline__ bool pair(Index index, V v0, V v1) const {
    struct alignas(2 * sizeof(T)) Two { T a, b; };
    T* p = out + index;
    if (reinterpret_cast<unsigned long long>(p) % sizeof(Two)) return false;
    *reinterpret_cast<Two*>(p) = Two{ember::store<T>(v0), ember::store<T>(v1)};
    return true;
  }
};

// acc - zx * wsum in s32, wrapping as the reference's i32 does.
__device__ __forceinline__ int corrected(int acc, int zx, int wsum) {
  return static_cast<int>(static_cast<unsigned>(acc) - static_cast<unsigned>(zx) * static_cast<unsigned>(wsum));
}

__device__ __forceinline__ unsigned splat(signed char b) { return 0x01010101u * static_cast<unsigned char>(b); }

// -- operands, k-major, 16 values of k per read ----------------------------------------------------
// (Bytes B: s8 here, fp8 codes in ember_fp8.cuh, which uses these with B = unsigned char.)
// A row-major matrix: element (r, k) at p[r * ld + k].
template <typename Index, typename B = signed char>
struct Rows {
  const B* __restrict__ p;
  Index ld;
  struct Line { Index off; };
  __device__ __forceinline__ Line line(int r) const { return Line{static_cast<Index>(r) * ld}; }
  // Where the 16 values from (line, k) are; false where they are padding (never, here).
  __device__ __forceinline__ bool at(const Line& l, int k, const B*& src) const {
    src = p + l.off + k;
    return true;
  }
  __device__ __forceinline__ bool aligned() const { return (reinterpret_cast<unsigned long long>(p) & 15) == 0; }
};

// A channels-last activation as im2col rows: m = (batch, output position), k = (tap, channel), the
// channel fastest (conv::Im2col with CK); taps in the padding are padding.
template <typename Index, typename B = signed char, typename C = int>
struct Patches {
  conv::Im2col<true, B, C, Index> im;
  using Line = typename conv::Im2col<true, B, C, Index>::Line;
  __device__ __forceinline__ Line line(int m) const { return im.line(m); }
  __device__ __forceinline__ bool at(const Line& l, int k, const B*& src) const {
    Index off;
    if (!im.offset(l, k, off)) return false;
    src = im.x + off;
    return true;
  }
  __device__ __forceinline__ bool aligned() const { return (reinterpret_cast<unsigned long long>(im.x) & 15) == 0; }
};

// 16 bytes into shared memory: from `src` (cp.async when VEC, else through a register), or `pad` x 16.
template <bool VEC, typename B>
__device__ __forceinline__ void fill16(B* __restrict__ dst, const B* src, bool in, unsigned pad) {
  if (!in) {
    *reinterpret_cast<uint4*>(dst) = make_uint4(pad, pad, pad, pad);
    return;
  }
  if constexpr (VEC) {
    gemm::mma::cp_async16(dst, src, 16);
  } else {
    unsigned w[4];
#pragma unroll
    for (int q = 0; q < 4; ++q)
      w[q] = static_cast<unsigned char>(src[4 * q]) | (static_cast<unsigned char>(src[4 * q + 1]) << 8) |
             (static_cast<unsigned char>(src[4 * q + 2]) << 16) |
             (static_cast<unsigned>(static_cast<unsigned char>(src[4 * q + 3])) << 24);
    *reinterpret_cast<uint4*>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
  }
}

__device__ __forceinline__ void mma_s8(int (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
#if __CUDA_ARCH__ >= 800
  asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
               "{%8, %9}, {%0, %1, %2, %3};\n"
               : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// One block's BM x BN tile of acc(m, n) = sum_k A(m, k) * B(n, k) on tensor cores; with ZX the tile's
// filter sums are added up too and each accumulator corrected by zx * wsum[n] (taps in A's padding
// read zx). Calls out(m, n, acc) for each element inside M x N, or with PAIR out.pair(m, n, acc,
// acc') for columns n and n + 1 both inside.
template <class T, bool VEC, bool ZX, bool PAIR, class LA, class LB, class Out>
__device__ __forceinline__ void mma_tile(const LA& la, const LB& lb, int M, int N, int K, int m0, int n0, int zx,
                                         const Out& out, signed char* __restrict__ smem, int* __restrict__ wsum) {
  constexpr int BM = T::BM, BN = T::BN, BK = T::BK, NT = T::THREADS, MI = T::MI, NI = T::NI, LD = T::LD;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = (warp / T::WARPS_N) * T::WM, wn = (warp % T::WARPS_N) * T::WN;
  const unsigned pad = splat(static_cast<signed char>(zx));

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
  int part[T::B_PER];
#pragma unroll
  for (int e = 0; e < T::B_PER; ++e) part[e] = 0;
  if (ZX) {
    for (int i = tid; i < BN; i += NT) wsum[i] = 0;
  }

  auto issue = [&](int k0, signed char* __restrict__ s) {
    const int k = k0 + kc;
#pragma unroll
    for (int e = 0; e < T::A_PER; ++e) {
      const signed char* src = nullptr;
      const bool inside = a_ok[e] && k < K;
      const bool data = inside && la.at(a_line[e], k, src);
      fill16<VEC>(s + (first + e * STEP) * LD + kc, src, data, inside ? pad : 0u);
    }
    signed char* bs = s + BM * LD;
#pragma unroll
    for (int e = 0; e < T::B_PER; ++e) {
      const signed char* src = nullptr;
      const bool data = b_ok[e] && k < K && lb.at(b_line[e], k, src);
      fill16<VEC>(bs + (first + e * STEP) * LD + kc, src, data, 0u);
    }
  };

  int acc[MI][NI][4];
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NI; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[i][j][q] = 0;

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
    const signed char* As = smem + (kt % S) * T::STAGE;
    const signed char* Bs = As + BM * LD;
    if (ZX) {
#pragma unroll
      for (int e = 0; e < T::B_PER; ++e) {
        const uint4 v = *reinterpret_cast<const uint4*>(Bs + (first + e * STEP) * LD + kc);
        part[e] = __dp4a(static_cast<int>(v.x), 0x01010101, part[e]);
        part[e] = __dp4a(static_cast<int>(v.y), 0x01010101, part[e]);
        part[e] = __dp4a(static_cast<int>(v.z), 0x01010101, part[e]);
        part[e] = __dp4a(static_cast<int>(v.w), 0x01010101, part[e]);
      }
    }
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
        for (int j = 0; j < NI; ++j) mma_s8(acc[i][j], af[i], bf[j][0], bf[j][1]);
    }
    const int next = kt + S - 1;
    if (next < KT) issue(next * BK, smem + (next % S) * T::STAGE);
    gemm::mma::cp_async_commit();
  }
  gemm::mma::cp_async_wait<0>();
  if (ZX) {
#pragma unroll
    for (int e = 0; e < T::B_PER; ++e) atomicAdd(&wsum[first + e * STEP], part[e]);
    __syncthreads();
  }

  // Fragment (i, j) holds rows g and g + 8, columns 2t and 2t + 1 of its 16 x 8 tile.
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int m = m0 + wm + i * 16 + g + h * 8;
      if (m >= M) continue;
#pragma unroll
      for (int j = 0; j < NI; ++j) {
        const int nl = wn + j * 8 + 2 * t, n = n0 + nl;
        int a0 = acc[i][j][h * 2], a1 = acc[i][j][h * 2 + 1];
        if (ZX) {
          a0 = corrected(a0, zx, wsum[nl]);
          a1 = corrected(a1, zx, wsum[nl + 1]);
        }
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

// The same tile one element per thread at a time, for architectures without s8 tensor cores
// (the kernel of an engine serves every target it was built for).
template <class T, bool ZX, class LA, class LB, class Out>
__device__ __forceinline__ void simt_tile(const LA& la, const LB& lb, int M, int N, int K, int m0, int n0, int zx,
                                          const Out& out) {
  for (int e = threadIdx.x; e < T::BM * T::BN; e += T::THREADS) {
    const int m = m0 + e / T::BN, n = n0 + e % T::BN;
    if (m >= M || n >= N) continue;
    const typename LA::Line a = la.line(m);
    const typename LB::Line b = lb.line(n);
    unsigned acc = 0;
    for (int k = 0; k < K; k += 16) {
      const signed char *pa = nullptr, *pb = nullptr;
      const bool in = la.at(a, k, pa);
      lb.at(b, k, pb);
#pragma unroll
      for (int q = 0; q < 16; ++q) {
        const int xv = in ? static_cast<int>(pa[q]) : zx;
        acc += static_cast<unsigned>((xv - zx) * static_cast<int>(pb[q]));
      }
    }
    out(m, n, static_cast<int>(acc));
  }
}

template <class T, bool ZX, bool PAIR, class LA, class LB, class Out>
__device__ __forceinline__ void tile(const LA& la, const LB& lb, int M, int N, int K, int m0, int n0, int zx,
                                     const Out& out) {
#if __CUDA_ARCH__ >= 800
  __shared__ __align__(16) signed char smem[T::STAGES * T::STAGE];
  __shared__ int wsum[ZX ? T::BN : 1];
  if (la.aligned() && lb.aligned())
    mma_tile<T, true, ZX, PAIR>(la, lb, M, N, K, m0, n0, zx, out, smem, wsum);
  else
    mma_tile<T, false, ZX, PAIR>(la, lb, M, N, K, m0, n0, zx, out, smem, wsum);
#else
  simt_tile<T, ZX>(la, lb, M, N, K, m0, n0, zx, out);
#endif
}

// Where element (m, n) of the product goes, and its epilogue: a row-major [M][N] result, or a
// convolution's output through conv::Geom's strides. `pair` stores channels n and n + 1 (the
// planner asks for it only where they are adjacent in memory). A: the accumulator (s32 here,
// f32 for fp8).
template <class R, class Epi, typename Index, typename A = int>
struct RowsOut {
  const R& r;
  const Epi& epi;
  int N;
  __device__ __forceinline__ Index at(int m, int n) const { return static_cast<Index>(m) * N + n; }
  __device__ __forceinline__ void operator()(int m, int n, A acc) const { r.store(epi, at(m, n), n, acc); }
  __device__ __forceinline__ void pair(int m, int n, A a0, A a1) const { r.store2(epi, at(m, n), n, a0, a1); }
};

template <class R, class Epi, typename Index, typename A = int>
struct ConvOut {
  const R& r;
  const Epi& epi;
  const conv::Geom<Index>& g;
  int P;
  __device__ __forceinline__ Index at(int m, int n) const {
    return static_cast<Index>(m / P) * g.ys[0] + static_cast<Index>(m % P) * g.ys[4] + static_cast<Index>(n) * g.ys[1];
  }
  __device__ __forceinline__ void operator()(int m, int n, A acc) const { r.store(epi, at(m, n), n, acc); }
  __device__ __forceinline__ void pair(int m, int n, A a0, A a1) const { r.store2(epi, at(m, n), n, a0, a1); }
};

// -- ember.int8_matmul ------------------------------------------------------------------------------
// x [M][K] (batch dims folded into M) times w [N][K]; grid (M tiles, N tiles); K a multiple of 16.
template <class T, bool REQUANT, bool RELU, bool PER_CHANNEL, bool ZX, bool PAIR, typename Index, class Epi>
__device__ __forceinline__ void matmul(const signed char* __restrict__ x, const signed char* __restrict__ w,
                                       const float* __restrict__ x_scale, const float* __restrict__ w_scale,
                                       const float* __restrict__ bias, const signed char* __restrict__ x_zero,
                                       const float* __restrict__ y_scale, const signed char* __restrict__ y_zero,
                                       int M, int N, int K, const Epi& epi) {
  const Rescale<REQUANT, RELU, PER_CHANNEL> r = Rescale<REQUANT, RELU, PER_CHANNEL>::load(x_scale, w_scale, bias,
                                                                                          y_scale, y_zero);
  const int zx = ZX ? static_cast<int>(x_zero[0]) : 0;
  const Rows<Index> la{x, static_cast<Index>(K)};
  const Rows<Index> lb{w, static_cast<Index>(K)};
  const RowsOut<Rescale<REQUANT, RELU, PER_CHANNEL>, Epi, Index> out{r, epi, N};
  tile<T, ZX, PAIR>(la, lb, M, N, K, static_cast<int>(blockIdx.x) * T::BM, static_cast<int>(blockIdx.y) * T::BN, zx,
                    out);
}

// One thread per output element (grid-stride), any K.
template <bool REQUANT, bool RELU, bool PER_CHANNEL, typename Index, class Epi>
__device__ __forceinline__ void matmul_direct(const signed char* __restrict__ x, const signed char* __restrict__ w,
                                              const float* __restrict__ x_scale, const float* __restrict__ w_scale,
                                              const float* __restrict__ bias, const signed char* __restrict__ x_zero,
                                              const float* __restrict__ y_scale,
                                              const signed char* __restrict__ y_zero, int N, int K, Index total,
                                              const Epi& epi) {
  const Rescale<REQUANT, RELU, PER_CHANNEL> r = Rescale<REQUANT, RELU, PER_CHANNEL>::load(x_scale, w_scale, bias,
                                                                                          y_scale, y_zero);
  const int zx = x_zero != nullptr ? static_cast<int>(x_zero[0]) : 0;
  for (Index i = blockIdx.x * static_cast<Index>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<Index>(gridDim.x) * blockDim.x) {
    const Index m = i / N;
    const int n = static_cast<int>(i % N);
    const signed char* a = x + m * K;
    const signed char* b = w + static_cast<Index>(n) * K;
    unsigned acc = 0;
    for (int k = 0; k < K; ++k) acc += static_cast<unsigned>((static_cast<int>(a[k]) - zx) * static_cast<int>(b[k]));
    r.store(epi, i, n, static_cast<int>(acc));
  }
}

// -- ember.int8_conv --------------------------------------------------------------------------------
// Channels-last x, OHWI w (C_in a multiple of 16, one group): the implicit GEMM of conv::Geom's
// M = batch x positions, N = C_out, K = taps x C_in; grid (M tiles, N tiles).
template <class T, bool REQUANT, bool RELU, bool PER_CHANNEL, bool ZX, bool PAIR, typename Index, class Epi>
__device__ __forceinline__ void conv(const signed char* __restrict__ x, const signed char* __restrict__ w,
                                     const float* __restrict__ x_scale, const float* __restrict__ w_scale,
                                     const float* __restrict__ bias, const signed char* __restrict__ x_zero,
                                     const float* __restrict__ y_scale, const signed char* __restrict__ y_zero,
                                     const i64* __restrict__ meta, const Epi& epi) {
  const Rescale<REQUANT, RELU, PER_CHANNEL> r = Rescale<REQUANT, RELU, PER_CHANNEL>::load(x_scale, w_scale, bias,
                                                                                          y_scale, y_zero);
  const int zx = ZX ? static_cast<int>(x_zero[0]) : 0;
  const conv::Geom<Index> g = conv::Geom<Index>::load(meta);
  const int P = g.positions();
  const int M = g.n * P, N = g.k, K = g.c * g.taps();
  const Patches<Index> la{conv::Im2col<true, signed char, int, Index>{x, g, 0}};
  const Rows<Index> lb{w, g.ws[0]};
  const ConvOut<Rescale<REQUANT, RELU, PER_CHANNEL>, Epi, Index> out{r, epi, g, P};
  tile<T, ZX, PAIR>(la, lb, M, N, K, static_cast<int>(blockIdx.x) * T::BM, static_cast<int>(blockIdx.y) * T::BN, zx,
                    out);
}

// One thread per output element (grid-stride): any layout, groups, channel count. Taps in the
// padding add nothing.
template <bool CL, bool REQUANT, bool RELU, bool PER_CHANNEL, typename Index, class Epi>
__device__ __forceinline__ void conv_direct(const signed char* __restrict__ x, const signed char* __restrict__ w,
                                            const float* __restrict__ x_scale, const float* __restrict__ w_scale,
                                            const float* __restrict__ bias, const signed char* __restrict__ x_zero,
                                            const float* __restrict__ y_scale, const signed char* __restrict__ y_zero,
                                            const i64* __restrict__ meta, Index total, const Epi& epi) {
  const Rescale<REQUANT, RELU, PER_CHANNEL> r = Rescale<REQUANT, RELU, PER_CHANNEL>::load(x_scale, w_scale, bias,
                                                                                          y_scale, y_zero);
  const int zx = x_zero != nullptr ? static_cast<int>(x_zero[0]) : 0;
  const conv::Geom<Index> g = conv::Geom<Index>::load(meta);
  const int cg = g.cg(), kg = g.kg();
  for (Index i = blockIdx.x * static_cast<Index>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<Index>(gridDim.x) * blockDim.x) {
    int nb, ch, oz, oy, ox;
    conv::split_out<CL>(g, i, nb, ch, oz, oy, ox);
    const int grp = ch / kg;
    const Index xb = static_cast<Index>(nb) * g.xs[0] + static_cast<Index>(grp) * cg * g.xs[1];
    const Index wb = static_cast<Index>(ch) * g.ws[0];
    unsigned acc = 0;
    conv::for_each_tap(g, xb, wb, oz, oy, ox, [&](Index xo, Index wo) {
      for (int c = 0; c < cg; ++c)
        acc += static_cast<unsigned>((static_cast<int>(x[xo + static_cast<Index>(c) * g.xs[1]]) - zx) *
                                     static_cast<int>(w[wo + static_cast<Index>(c) * g.ws[1]]));
    });
    r.store(epi, i, ch, static_cast<int>(acc));
  }
}

}  // namespace int8
}  // namespace ember
