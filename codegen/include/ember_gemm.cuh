// The tiled shared-memory GEMM core that matmul, gemm, einsum, convolution (as an implicit
// GEMM) and the recurrent ops' input projections share.
//
// A block computes a BM x BN tile of C = A (M x K) * B (K x N); each thread a TM x TN micro-tile
// (rows ty*4 .. ty*4+3 in each of TM/4 bands of the tile, columns likewise), in registers of the
// compute type C (float for f32/f16/bf16/fp8, double for f64, an unsigned integer for integers, so
// that sums wrap as the reference's do). K advances BK at a time through two shared-memory stages:
// while the block multiplies one stage, each thread holds the next tile's elements in registers.
//
// Operands are read through loaders, so the same core serves strided matrices and the im2col view
// of a convolution. A loader gives a `Line` for one row of A (or one column of B), computed once
// per thread before the K loop, and the element at (line, k); the core checks m < M, n < N, k < K
// and never asks outside them. `A_KMAJOR` (B_KMAJOR) says that consecutive k are adjacent in memory,
// so consecutive threads load consecutive k; otherwise they load consecutive m (n).
// The epilogue gets (m, n, acc) for each element inside the matrix.
#pragma once
#include "ember_prelude.cuh"

namespace ember {
namespace gemm {

template <typename A, typename B> struct same_type { static constexpr bool value = false; };
template <typename A> struct same_type<A, A> { static constexpr bool value = true; };

template <int BM_, int BN_, int BK_, int TM_, int TN_>
struct Tile {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, TM = TM_, TN = TN_;
  static constexpr int THREADS = (BM / TM) * (BN / TN);
  static constexpr int LDA = BM + 4, LDB = BN + 4;  // shared pitch: conflict-free stores, 16-byte rows
  static constexpr int A_PER = BM * BK / THREADS, B_PER = BK * BN / THREADS;
  static constexpr int STAGE = BK * (LDA + LDB);
  static constexpr bool MMA = false, WGMMA = false;
  template <typename C> static constexpr int bytes() { return 2 * STAGE * static_cast<int>(sizeof(C)); }
  template <typename C> static constexpr int dynamic_bytes() { return 0; }
  static_assert(TM % 4 == 0 && TN % 4 == 0, "micro-tiles are made of 4-wide bands");
  static_assert(THREADS % BK == 0 && THREADS % BM == 0 && THREADS % BN == 0, "loads must tile evenly");
  static_assert(A_PER * THREADS == BM * BK && B_PER * THREADS == BK * BN, "loads must tile evenly");
};

// Row (column) of a tile that micro-tile entry i of thread coordinate t covers.
template <int B, int T> __device__ __forceinline__ int micro(int t, int i) {
  return (i / 4) * (B / (T / 4)) + t * 4 + (i % 4);
}

template <int T, int B, typename C>
__device__ __forceinline__ void fragment(C (&f)[T], const C* __restrict__ row, int t) {
#pragma unroll
  for (int g = 0; g < T / 4; ++g) {
    const C* p = row + g * (B / (T / 4)) + t * 4;
    if constexpr (same_type<C, float>::value) {
      const float4 v = *reinterpret_cast<const float4*>(p);
      f[g * 4 + 0] = v.x; f[g * 4 + 1] = v.y; f[g * 4 + 2] = v.z; f[g * 4 + 3] = v.w;
    } else {
#pragma unroll
      for (int q = 0; q < 4; ++q) f[g * 4 + q] = p[q];
    }
  }
}

// One block's tile: rows m0.., columns n0.. of an M x N x K product; calls epi(m, n, acc) per element.
template <class T, bool A_KMAJOR, bool B_KMAJOR, typename C, class LA, class LB, class Epi>
__device__ __forceinline__ void tile(const LA& la, const LB& lb, int M, int N, int K, int m0, int n0,
                                     const Epi& epi, C* __restrict__ smem) {
  constexpr int BM = T::BM, BN = T::BN, BK = T::BK, TM = T::TM, TN = T::TN, NT = T::THREADS;
  constexpr int NLA = A_KMAJOR ? T::A_PER : 1;
  constexpr int NLB = B_KMAJOR ? T::B_PER : 1;
  const int tid = threadIdx.x;

  // Where this thread's loads fall in a tile: fixed rows (columns) and a k offset.
  typename LA::Line a_line[NLA];
  bool a_ok[NLA];
#pragma unroll
  for (int e = 0; e < NLA; ++e) {
    const int m = m0 + (A_KMAJOR ? tid / BK + e * (NT / BK) : tid % BM);
    a_ok[e] = m < M;
    a_line[e] = la.line(a_ok[e] ? m : m0);
  }
  typename LB::Line b_line[NLB];
  bool b_ok[NLB];
#pragma unroll
  for (int e = 0; e < NLB; ++e) {
    const int n = n0 + (B_KMAJOR ? tid / BK + e * (NT / BK) : tid % BN);
    b_ok[e] = n < N;
    b_line[e] = lb.line(b_ok[e] ? n : n0);
  }

  C ra[T::A_PER], rb[T::B_PER];
  auto fetch = [&](int k0) {
#pragma unroll
    for (int e = 0; e < T::A_PER; ++e) {
      const int k = k0 + (A_KMAJOR ? tid % BK : tid / BM + e * (NT / BM));
      const int l = A_KMAJOR ? e : 0;
      ra[e] = (a_ok[l] && k < K) ? la.at(a_line[l], k) : C(0);
    }
#pragma unroll
    for (int e = 0; e < T::B_PER; ++e) {
      const int k = k0 + (B_KMAJOR ? tid % BK : tid / BN + e * (NT / BN));
      const int l = B_KMAJOR ? e : 0;
      rb[e] = (b_ok[l] && k < K) ? lb.at(b_line[l], k) : C(0);
    }
  };
  auto stash = [&](C* __restrict__ s) {
    C* As = s;
    C* Bs = s + BK * T::LDA;
#pragma unroll
    for (int e = 0; e < T::A_PER; ++e) {
      const int kk = A_KMAJOR ? tid % BK : tid / BM + e * (NT / BM);
      const int mm = A_KMAJOR ? tid / BK + e * (NT / BK) : tid % BM;
      As[kk * T::LDA + mm] = ra[e];
    }
#pragma unroll
    for (int e = 0; e < T::B_PER; ++e) {
      const int kk = B_KMAJOR ? tid % BK : tid / BN + e * (NT / BN);
      const int nn = B_KMAJOR ? tid / BK + e * (NT / BK) : tid % BN;
      Bs[kk * T::LDB + nn] = rb[e];
    }
  };

  C acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = C(0);

  const int tx = tid % (BN / TN), ty = tid / (BN / TN);
  fetch(0);
  stash(smem);
  __syncthreads();
  int stage = 0;
  for (int k0 = 0; k0 < K; k0 += BK) {
    const bool more = k0 + BK < K;
    if (more) fetch(k0 + BK);
    const C* As = smem + stage * T::STAGE;
    const C* Bs = As + BK * T::LDA;
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      C a[TM], b[TN];
      fragment<TM, BM>(a, As + kk * T::LDA, ty);
      fragment<TN, BN>(b, Bs + kk * T::LDB, tx);
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] += a[i] * b[j];
    }
    if (more) stash(smem + (stage ^ 1) * T::STAGE);
    __syncthreads();
    stage ^= 1;
  }

#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int m = m0 + micro<BM, TM>(ty, i);
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int n = n0 + micro<BN, TN>(tx, j);
      if (n < N) epi(m, n, acc[i][j]);
    }
  }
}

// -- the tensor-core core (mma.sync, sm_80 and newer) -----------------------------------------
// A block of (BM / WM) x (BN / WN) warps computes a BM x BN tile of an f16 or bf16 product with f32
// accumulation, each warp a WM x WN piece as (WM / 16) x (WN / 8) mma.sync m16n8k16 tiles. Operands
// pass through shared memory in their storage type E (the products are exact in f32). Each operand
// keeps its memory order there: a k-major operand as [row][k], the other as [k][row] (read with
// ldmatrix .trans), rows padded by 8 elements so that ldmatrix's eight 16-byte rows fall in distinct
// banks. As in the SIMT core, K advances BK at a time through two stages while each thread holds the
// next tile's elements in registers. With VA (VB) the operand is read 8 elements (16 bytes) at a
// time along its contiguous direction (the planner checks that strides and the contiguous extent
// are multiples of 8; the kernel checks the pointers' alignment and takes the scalar form when one
// is not); the loaders' `raw` and `raw8` give stored elements. Architectures before sm_80 run the
// SIMT tile `Fallback` with the same block, so one kernel serves every target of an engine.
template <int BM_, int BN_, int BK_, int WM_, int WN_, typename E_, class Fallback_, bool VA_ = false,
          bool VB_ = false, bool ASYNC_ = false, int DSTAGES_ = 0>
struct MmaTile {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, WM = WM_, WN = WN_;
  using E = E_;
  using Fallback = Fallback_;
  using Scalar = MmaTile<BM_, BN_, BK_, WM_, WN_, E_, Fallback_, false, false>;
  static constexpr bool VA = VA_, VB = VB_;
  static constexpr int WARPS_N = BN / WN, THREADS = (BM / WM) * WARPS_N * 32;
  static constexpr int MI = WM / 16, NI = WN / 8;
  static constexpr bool MMA = true, WGMMA = false;
  // Elements of one stage, the larger of the two orders per operand.
  static constexpr int side(int r) { return r * (BK + 8) > BK * (r + 8) ? r * (BK + 8) : BK * (r + 8); }
  static constexpr int STAGE = side(BM) + side(BN);
  // ASYNC_, with 16-byte reads on both operands: cp.async fills STAGES shared stages ahead of the
  // math (as many as 44 KB of static shared memory hold, 2 to 4); otherwise two, through registers.
  // (The planners ask for it through heavy.MMA_PIPELINED.) With DSTAGES_, DSTAGES_ stages in the
  // launch's dynamic shared memory instead (a 128 x 128 tile's stage is 20 KB: two static stages
  // would leave no load in flight during the math), sized by the planner as dynamic_bytes().
  static constexpr bool ASYNC = ASYNC_ && VA && VB;
  static constexpr bool DYNAMIC = ASYNC && DSTAGES_ > 0;
  static constexpr int FIT = 45056 / (STAGE * 2);
  static constexpr int STAGES = !ASYNC ? 2 : DYNAMIC ? DSTAGES_ : FIT > 4 ? 4 : FIT < 2 ? 2 : FIT;
  template <typename C> static constexpr int needed() {
    return STAGES * STAGE * 2 > Fallback::template bytes<C>() ? STAGES * STAGE * 2 : Fallback::template bytes<C>();
  }
  template <typename C> static constexpr int bytes() { return DYNAMIC ? 16 : needed<C>(); }
  template <typename C> static constexpr int dynamic_bytes() { return DYNAMIC ? needed<C>() : 0; }
  static_assert(sizeof(E) == 2, "the mma core multiplies 16-bit floats");
  static_assert(THREADS == Fallback::THREADS, "the fallback tile runs with the same block");
  static_assert(WM % 16 == 0 && WN % 16 == 0 && BK % 16 == 0, "whole mma tiles; fragments load in pairs");
};

namespace mma {
template <bool TRANS> __device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const void* p) {
#if __CUDA_ARCH__ >= 800
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(p));
  if constexpr (TRANS)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
#endif
}
// c += a (16 x 16, row) * b (16 x 8, column), f32 accumulators.
__device__ __forceinline__ void m16n8k16(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1, __half) {
#if __CUDA_ARCH__ >= 800
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
               "{%8, %9}, {%0, %1, %2, %3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}
__device__ __forceinline__ void m16n8k16(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1,
                                         __nv_bfloat16) {
#if __CUDA_ARCH__ >= 800
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
               "{%8, %9}, {%0, %1, %2, %3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// 16 bytes from global to shared memory, asynchronously; `bytes` 0 fills the 16 with zeros.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int bytes) {
#if __CUDA_ARCH__ >= 800
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(addr), "l"(src), "r"(bytes));
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
template <int N> __device__ __forceinline__ void cp_async_wait() {
#if __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

template <bool C, class X, class Y> struct pick { using type = X; };
template <class X, class Y> struct pick<false, X, Y> { using type = Y; };

// One operand's way from memory to shared memory: R rows (of A: m; of B: n) by BK of k, read by NT
// threads, `SPAN` elements per read along the operand's contiguous direction (k when KMAJOR, the
// rows otherwise). Thread t reads at `along` (fixed) and `first + e * STEP` across, for e < PER;
// the shared index is the same (across) * LD + along in either order.
template <int R, int BK, int NT, bool KMAJOR, bool VEC, typename E, class L>
struct Stager {
  static constexpr int SPAN = VEC ? 8 : 1;
  static constexpr int LD = KMAJOR ? BK + 8 : R + 8;
  static constexpr int ACROSS = (KMAJOR ? BK : R) / SPAN;   // reads per contiguous line of the tile
  static constexpr int STEP = NT / ACROSS;
  static constexpr int PER = R * BK / (SPAN * NT);
  static constexpr int NL = KMAJOR ? PER : 1;              // rows a thread reads
  static_assert(PER >= 1 && PER * NT * SPAN == R * BK && NT % ACROSS == 0, "reads must tile evenly");
  using Reg = typename pick<VEC, uint4, E>::type;

  typename L::Line line[NL];
  bool ok[NL];
  int along, first;
  Reg reg[PER];

  __device__ __forceinline__ void init(const L& l, int rows, int r0, int tid) {
    along = (tid % ACROSS) * SPAN;
    first = tid / ACROSS;
#pragma unroll
    for (int e = 0; e < NL; ++e) {
      const int r = r0 + (KMAJOR ? first + e * STEP : along);
      ok[e] = r < rows;
      line[e] = l.line(ok[e] ? r : r0);
    }
  }
  __device__ __forceinline__ void fetch(const L& l, int k0, int K) {
#pragma unroll
    for (int e = 0; e < PER; ++e) {
      const int k = k0 + (KMAJOR ? along : first + e * STEP);
      const int n = KMAJOR ? e : 0;
      const bool in = ok[n] && k < K;
      if constexpr (VEC) reg[e] = in ? l.raw8(line[n], k) : make_uint4(0u, 0u, 0u, 0u);
      else reg[e] = in ? l.raw(line[n], k) : static_cast<E>(0.0f);
    }
  }
  __device__ __forceinline__ void stash(E* __restrict__ s) const {
#pragma unroll
    for (int e = 0; e < PER; ++e) *reinterpret_cast<Reg*>(s + (first + e * STEP) * LD + along) = reg[e];
  }
  // The reads of fetch + stash as cp.async copies straight into stage `s` (VEC only): elements
  // outside the matrix (or in a convolution's padding) arrive as zeros.
  __device__ __forceinline__ void issue(const L& l, int k0, int K, E* __restrict__ s) const {
    static_assert(VEC, "cp.async moves 16 bytes");
#pragma unroll
    for (int e = 0; e < PER; ++e) {
      const int k = k0 + (KMAJOR ? along : first + e * STEP);
      const int n = KMAJOR ? e : 0;
      bool in = ok[n] && k < K;
      const void* src = l.addr8(line[n], k, in);
      cp_async16(s + (first + e * STEP) * LD + along, src, in ? 16 : 0);
    }
  }
};
}  // namespace mma

// One block's tile on tensor cores: the contract of `tile` above (epi(m, n, acc) per element inside).
template <class T, bool A_KMAJOR, bool B_KMAJOR, typename C, class LA, class LB, class Epi>
__device__ __forceinline__ void mma_tile(const LA& la, const LB& lb, int M, int N, int K, int m0, int n0,
                                         const Epi& epi, unsigned char* __restrict__ raw_smem) {
#if __CUDA_ARCH__ < 800
  tile<typename T::Fallback, A_KMAJOR, B_KMAJOR, C>(la, lb, M, N, K, m0, n0, epi, reinterpret_cast<C*>(raw_smem));
#else
  using E = typename T::E;
  constexpr int BM = T::BM, BN = T::BN, BK = T::BK, NT = T::THREADS, MI = T::MI, NI = T::NI;
  using SA = mma::Stager<BM, BK, NT, A_KMAJOR, T::VA, E, LA>;
  using SB = mma::Stager<BN, BK, NT, B_KMAJOR, T::VB, E, LB>;
  constexpr int LA_ = SA::LD, LB_ = SB::LD;
  E* smem = reinterpret_cast<E*>(raw_smem);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = (warp / T::WARPS_N) * T::WM, wn = (warp % T::WARPS_N) * T::WN;
  SA sa;
  SB sb;
  sa.init(la, M, m0, tid);
  sb.init(lb, N, n0, tid);

  float acc[MI][NI][4];
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NI; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[i][j][q] = 0.0f;

  // One BK slab of the product from shared stage (As, Bs) into the accumulators.
  auto slab = [&](const E* __restrict__ As, const E* __restrict__ Bs) {
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      unsigned af[MI][4], bf[NI][2];
#pragma unroll
      for (int i = 0; i < MI; ++i) {
        if constexpr (A_KMAJOR)
          mma::ldmatrix_x4<false>(af[i], As + (wm + i * 16 + (lane & 15)) * LA_ + kk + (lane >> 4) * 8);
        else
          mma::ldmatrix_x4<true>(af[i], As + (kk + (lane & 7) + ((lane >> 4) << 3)) * LA_ + wm + i * 16 +
                                            ((lane >> 3) & 1) * 8);
      }
#pragma unroll
      for (int j = 0; j < NI; j += 2) {
        unsigned r[4];
        if constexpr (B_KMAJOR)
          mma::ldmatrix_x4<false>(r, Bs + (wn + j * 8 + (lane & 7) + ((lane >> 4) << 3)) * LB_ + kk +
                                         ((lane >> 3) & 1) * 8);
        else
          mma::ldmatrix_x4<true>(r, Bs + (kk + (lane & 7) + ((lane >> 3) & 1) * 8) * LB_ + wn + j * 8 +
                                        ((lane >> 4) << 3));
        bf[j][0] = r[0]; bf[j][1] = r[1]; bf[j + 1][0] = r[2]; bf[j + 1][1] = r[3];
      }
#pragma unroll
      for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j) mma::m16n8k16(acc[i][j], af[i], bf[j][0], bf[j][1], E());
    }
  };

  if constexpr (T::ASYNC) {
    // STAGES - 1 slabs in flight while one is multiplied; a stage is refilled only after every
    // thread has passed the barrier that follows its last use.
    constexpr int S = T::STAGES;
    const int KT = (K + BK - 1) / BK;
#pragma unroll
    for (int st = 0; st < S - 1; ++st) {
      if (st < KT) {
        sa.issue(la, st * BK, K, smem + st * T::STAGE);
        sb.issue(lb, st * BK, K, smem + st * T::STAGE + T::side(BM));
      }
      mma::cp_async_commit();
    }
    for (int kt = 0; kt < KT; ++kt) {
      mma::cp_async_wait<S - 2>();
      __syncthreads();
      const E* As = smem + (kt % S) * T::STAGE;
      slab(As, As + T::side(BM));
      const int next = kt + S - 1;
      if (next < KT) {
        E* dst = smem + (next % S) * T::STAGE;
        sa.issue(la, next * BK, K, dst);
        sb.issue(lb, next * BK, K, dst + T::side(BM));
      }
      mma::cp_async_commit();
    }
    mma::cp_async_wait<0>();
  } else {
    sa.fetch(la, 0, K);
    sb.fetch(lb, 0, K);
    sa.stash(smem);
    sb.stash(smem + T::side(BM));
    __syncthreads();
    int stage = 0;
    for (int k0 = 0; k0 < K; k0 += BK) {
      const bool more = k0 + BK < K;
      if (more) {
        sa.fetch(la, k0 + BK, K);
        sb.fetch(lb, k0 + BK, K);
      }
      const E* As = smem + stage * T::STAGE;
      slab(As, As + T::side(BM));
      if (more) {
        E* next = smem + (stage ^ 1) * T::STAGE;
        sa.stash(next);
        sb.stash(next + T::side(BM));
      }
      __syncthreads();
      stage ^= 1;
    }
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
      for (int j = 0; j < NI; ++j)
#pragma unroll
        for (int q = 0; q < 2; ++q) {
          const int n = n0 + wn + j * 8 + 2 * t + q;
          if (n < N) epi(m, n, static_cast<C>(acc[i][j][h * 2 + q]));
        }
    }
#endif
}

// -- the Hopper core (wgmma, sm_90a) ------------------------------------------------------------
// A block of BM / 64 warpgroups computes a BM x BN tile of an f16 or bf16 product with f32
// accumulation, each warpgroup 64 rows by all BN columns as wgmma m64nBNk16 instructions, which
// read both operands from shared memory through matrix descriptors. K advances BK = 64 (128 bytes)
// at a time through STAGES stages of dynamic shared memory that cp.async fills STAGES - 2 slabs
// ahead, while each warpgroup keeps the previous slab's wgmma in flight as it issues the next.
// Shared memory holds each operand in its memory order, in the 128-byte swizzle wgmma reads: a
// k-major operand as rows of 64 k, a row-major one as 64-line blocks of k-rows; in either, the
// 16-byte chunk c of 128-byte row r sits at chunk c ^ (r % 8) of a 1024-byte aligned atom, and
// wgmma's transpose bit takes the second order. Only sm_90a has wgmma: the same kernel runs
// `Fallback` (the mma.sync tile, same block) on every other architecture, so an engine built for
// sm_80, sm_90 and sm_90a is portable; where an operand is not 16-byte aligned in the call, sm_90a
// runs the block as 64 x 64 `Piece`s (the Piece needs less shared memory than the stages).
//
// PERSISTENT: the warp-specialized form. One block per multiprocessor walks the output tiles (grouped
// by 8 row tiles, so that neighbouring blocks share operands in L2); a producer warpgroup fills the
// stages with cp.async while the BM / 64 consumer warpgroups multiply, the two sides handing stages
// over through mbarriers (full: a slab has landed; empty: its wgmma have read it), so loads run ahead
// across tile boundaries and one tile's epilogue overlaps the next tile's loads. The block has a
// warpgroup more than the consumers; elsewhere the Fallback (of fewer threads and registers) runs
// each tile in pieces and the extra threads leave at once.
//
// TMA (with PERSISTENT): the producer is one thread that moves each slab as 64 x 64 boxes by
// cp.async.bulk.tensor from the operands' tensor maps (strided_tma) into the same swizzled
// layout, the full mbarrier counting the bytes (expect_tx / complete_tx) instead of arrivals.
template <int BM_, int BN_, int BK_, typename E_, class Fallback_, int STAGES_, bool PERSISTENT_ = false,
          bool TMA_ = false>
struct WgmmaTile {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, STAGES = STAGES_;
  using E = E_;
  using Fallback = Fallback_;
  static constexpr bool MMA = true, WGMMA = true, VA = true, VB = true, PERSISTENT = PERSISTENT_, TMA = TMA_;
  static_assert(!TMA || PERSISTENT, "TMA loads are the persistent tile's producer");
  static constexpr int CONSUMERS = BM / 64;
  static constexpr int THREADS = (CONSUMERS + (PERSISTENT ? 1 : 0)) * 128;
  static constexpr int A_BYTES = BM * BK * 2, B_BYTES = BN * BK * 2, STAGE = A_BYTES + B_BYTES;
  // The persistent form's producer signals a slab LAG slabs after issuing it (cp.async.wait_group
  // LAG, then the proxy fence and the arrive): at most STAGES - 2, or it would wait for a stage
  // whose consumers wait for a slab it has not signalled.
  static constexpr int LAG = STAGES - 2;
  // Registers per thread of the producer and of each consumer (setmaxnreg): a block of 384 threads
  // launches with 168 each, and the producer's 128 give up what the consumers' 256 take.
  static constexpr int PRODUCER_REGISTERS = 56, CONSUMER_REGISTERS = 224;
  static_assert(!PERSISTENT || CONSUMERS != 2 || PRODUCER_REGISTERS + 2 * CONSUMER_REGISTERS == 3 * 168,
                "the block's registers stay as launched");
  // sm_90a's form for unaligned operands: 64 x 64 pieces, register-staged, of the same block size.
  using Piece = MmaTile<64, 64, 32, 32, 16, E, Tile<64, 64, 16, 4, 4>>;
  static constexpr int max2(int a, int b) { return a > b ? a : b; }
  template <typename C> static constexpr int needed() {
    return max2(max2(STAGES * STAGE + 1024, Fallback::template needed<C>()), Piece::template needed<C>());
  }
  template <typename C> static constexpr int bytes() { return 16; }
  template <typename C> static constexpr int dynamic_bytes() { return needed<C>(); }
  static_assert(sizeof(E) == 2 && BK == 64, "a slab row is one 128-byte swizzle atom of 16-bit k");
  static_assert(BM % 64 == 0 && (BN == 128 || BN == 256 || (BN == 192 && TMA)),
                "m64nNk16 with N of 128 or 256 (192: TMA boxes, whose loads need no thread split)");
  static_assert(STAGES >= 3, "two slabs in flight at the least: one loading, one multiplying");
  static_assert(PERSISTENT ? Piece::THREADS <= THREADS && Fallback::THREADS <= THREADS && BN % Fallback::BN == 0 &&
                                 BM % Fallback::BM == 0
                           : THREADS == Fallback::THREADS && THREADS == Piece::THREADS,
                "the fallback tile and the pieces run within the same block");
};
template <class T> struct is_persistent { static constexpr bool value = false; };
template <int BM, int BN, int BK, typename E, class F, int S, bool TMA>
struct is_persistent<WgmmaTile<BM, BN, BK, E, F, S, true, TMA>> { static constexpr bool value = true; };

namespace wg {
// The shared-memory matrix descriptor of an operand at `p`: 128-byte swizzle, `lead` bytes between
// 64-line blocks (row-major operands), `stride` bytes between groups of 8 rows (k-rows).
__device__ __forceinline__ unsigned long long descriptor(const void* p, unsigned lead, unsigned stride) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(p));
  return static_cast<unsigned long long>((addr & 0x3FFFF) >> 4) |
         static_cast<unsigned long long>((lead >> 4) & 0x3FFF) << 16 |
         static_cast<unsigned long long>((stride >> 4) & 0x3FFF) << 32 | 1ull << 62;
}
__device__ __forceinline__ void fence() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void commit() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int N> __device__ __forceinline__ void wait() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
// cp.async's writes (the generic proxy) made visible to wgmma's reads (the async proxy).
__device__ __forceinline__ void proxy_fence() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}
// Keeps the compiler from moving reads of an accumulator across wgmma.wait_group.
__device__ __forceinline__ void pin(float& r) { asm volatile("" : "+f"(r)::"memory"); }

// d (64 x 128, f32, the D fragment) += a (64 x 16, descriptor) * b (16 x 128, descriptor).
#define EMBER_WGMMA_N128(TYPE)                                                                     \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                         \
               "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE " {"                     \
               "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
               "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
               "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
               "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63" \
               "}, %64, %65, p, 1, 1, %67, %68;\n}\n" \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
                 "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
                 "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), \
                 "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), \
                 "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), \
                 "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
                 "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]) \
               : "l"(a), "l"(b), "r"(1), "n"(TA ? 1 : 0), "n"(TB ? 1 : 0))
template <bool TA, bool TB, typename E>
__device__ __forceinline__ void m64n128k16(float (&d)[64], unsigned long long a, unsigned long long b) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  if constexpr (same_type<E, __half>::value) {
    EMBER_WGMMA_N128("f16");
  } else {
    EMBER_WGMMA_N128("bf16");
  }
#endif
}
#undef EMBER_WGMMA_N128

// d (64 x 192, f32, the D fragment) += a (64 x 16, descriptor) * b (16 x 192, descriptor).
#define EMBER_WGMMA_N192(TYPE) \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %98, 0;\n" \
               "wgmma.mma_async.sync.aligned.m64n192k16.f32." TYPE "." TYPE " {" \
               "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95" \
               "}, %96, %97, p, 1, 1, %99, %100;\n}\n" \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]) \
               : "l"(a), "l"(b), "r"(1), "n"(TA ? 1 : 0), "n"(TB ? 1 : 0))
template <bool TA, bool TB, typename E>
__device__ __forceinline__ void m64n192k16(float (&d)[96], unsigned long long a, unsigned long long b) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  if constexpr (same_type<E, __half>::value) {
    EMBER_WGMMA_N192("f16");
  } else {
    EMBER_WGMMA_N192("bf16");
  }
#endif
}
#undef EMBER_WGMMA_N192

// d (64 x 256, f32, the D fragment) += a (64 x 16, descriptor) * b (16 x 256, descriptor).
#define EMBER_WGMMA_N256(TYPE)                                                                     \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"                                         \
               "wgmma.mma_async.sync.aligned.m64n256k16.f32." TYPE "." TYPE " {"                     \
               "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
               "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
               "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
               "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, " \
               "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, " \
               "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, " \
               "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, " \
               "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127" \
               "}, %128, %129, p, 1, 1, %131, %132;\n}\n" \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
                 "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
                 "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), \
                 "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), \
                 "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), \
                 "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
                 "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), \
                 "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), \
                 "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), \
                 "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), \
                 "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), \
                 "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), \
                 "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), \
                 "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), \
                 "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127]) \
               : "l"(a), "l"(b), "r"(1), "n"(TA ? 1 : 0), "n"(TB ? 1 : 0))
template <bool TA, bool TB, typename E>
__device__ __forceinline__ void m64n256k16(float (&d)[128], unsigned long long a, unsigned long long b) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  if constexpr (same_type<E, __half>::value) {
    EMBER_WGMMA_N256("f16");
  } else {
    EMBER_WGMMA_N256("bf16");
  }
#endif
}
#undef EMBER_WGMMA_N256

template <int N, bool TA, bool TB, typename E>
__device__ __forceinline__ void mma(float (&d)[N / 2], unsigned long long a, unsigned long long b) {
  if constexpr (N == 128) m64n128k16<TA, TB, E>(d, a, b);
  else if constexpr (N == 192) m64n192k16<TA, TB, E>(d, a, b);
  else m64n256k16<TA, TB, E>(d, a, b);
}

// One operand's way from memory into a swizzled slab: R lines (of A: m; of B: n) by 64 k, read by
// NT threads 16 bytes at a time. Thread t reads chunk `along` of its lines: a k-major operand k
// along * 8.. of lines first + e * STEP; a row-major one lines along * 8.. of k-rows first + e * STEP.
template <int R, int NT, bool KMAJOR, typename E, class L>
struct Stager {
  static constexpr int ACROSS = KMAJOR ? 8 : R / 8;  // 16-byte chunks per 128-byte row (k-row)
  static constexpr int STEP = NT / ACROSS;
  static constexpr int PER = R * 8 / NT;
  static constexpr int NL = KMAJOR ? PER : 1;
  static_assert(PER >= 1 && PER * NT == R * 8 && NT % ACROSS == 0, "reads must tile evenly");

  typename L::Line line[NL];
  bool ok[NL];
  int along, first;

  __device__ __forceinline__ void init(const L& l, int rows, int r0, int tid) {
    along = tid % ACROSS;
    first = tid / ACROSS;
#pragma unroll
    for (int e = 0; e < NL; ++e) {
      const int r = r0 + (KMAJOR ? first + e * STEP : along * 8);
      ok[e] = r < rows;
      line[e] = l.line(ok[e] ? r : r0);
    }
  }
  // Byte offset in the slab of chunk c of row (k-row) r.
  static __device__ __forceinline__ int at(int r, int c) {
    if constexpr (KMAJOR) return r * 128 + ((c ^ (r & 7)) << 4);
    else return (c >> 3) * (64 * 128) + r * 128 + (((c & 7) ^ (r & 7)) << 4);
  }
  __device__ __forceinline__ void issue(const L& l, int k0, int K, unsigned char* __restrict__ s) const {
#pragma unroll
    for (int e = 0; e < PER; ++e) {
      const int r = first + e * STEP;
      const int k = k0 + (KMAJOR ? along * 8 : r);
      const int n = KMAJOR ? e : 0;
      bool in = ok[n] && k < K;
      const void* src = l.addr8(line[n], k, in);
      mma::cp_async16(s + at(r, along), src, in ? 16 : 0);
    }
  }
};
// One slab's wgmma (BK / 16 of them) of a warpgroup's 64 rows at As by the BN columns at Bs,
// committed as one group. A k-major operand steps 32 bytes along its rows; a row-major one 16 k-rows.
template <class T, bool A_KMAJOR, bool B_KMAJOR>
__device__ __forceinline__ void slab(float (&acc)[T::BN / 2], const unsigned char* As, const unsigned char* Bs) {
  using E = typename T::E;
  constexpr int BK = T::BK;
  fence();
#pragma unroll
  for (int kk = 0; kk < BK / 16; ++kk) {
    const unsigned long long da =
        A_KMAJOR ? descriptor(As + kk * 32, 16, 1024) : descriptor(As + kk * 2048, BK * 128, 1024);
    const unsigned long long db =
        B_KMAJOR ? descriptor(Bs + kk * 32, 16, 1024) : descriptor(Bs + kk * 2048, BK * 128, 1024);
    mma<T::BN, !A_KMAJOR, !B_KMAJOR, E>(acc, da, db);
  }
  commit();
}

// A warpgroup's finished accumulators to the epilogue: acc[j * 4 + q] is row g (+ 8 for q >= 2) of
// the warp's 16, column j * 8 + 2t + (q & 1); rows from m0 (the warpgroup's first), columns from n0.
template <int BN, typename C, class Epi>
__device__ __forceinline__ void store(float (&acc)[BN / 2], int M, int N, int m0, int n0, const Epi& epi) {
#pragma unroll
  for (int i = 0; i < BN / 2; ++i) pin(acc[i]);
  const int lane = threadIdx.x & 31, warp = (threadIdx.x >> 5) & 3, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int m = m0 + warp * 16 + g + h * 8;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < BN / 8; ++j)
#pragma unroll
      for (int q = 0; q < 2; ++q) {
        const int n = n0 + j * 8 + 2 * t + q;
        if (n < N) epi(m, n, static_cast<C>(acc[j * 4 + h * 2 + q]));
      }
  }
}
}  // namespace wg

// One block's tile on sm_90a's wgmma: the contract of `tile` above (epi(m, n, acc) per element).
template <class T, bool A_KMAJOR, bool B_KMAJOR, typename C, class LA, class LB, class Epi>
__device__ __forceinline__ void wgmma_tile(const LA& la, const LB& lb, int M, int N, int K, int m0, int n0,
                                           const Epi& epi, unsigned char* __restrict__ raw_smem) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using E = typename T::E;
  constexpr int BM = T::BM, BN = T::BN, BK = T::BK, NT = T::THREADS, S = T::STAGES;
  // The swizzle is of address bits: stages start on 1024-byte boundaries.
  const unsigned base = static_cast<unsigned>(__cvta_generic_to_shared(raw_smem));
  unsigned char* smem = raw_smem + ((1024 - (base & 1023)) & 1023);
  const int tid = threadIdx.x, group = tid >> 7;
  wg::Stager<BM, NT, A_KMAJOR, E, LA> sa;
  wg::Stager<BN, NT, B_KMAJOR, E, LB> sb;
  sa.init(la, M, m0, tid);
  sb.init(lb, N, n0, tid);

  float acc[BN / 2];
#pragma unroll
  for (int i = 0; i < BN / 2; ++i) acc[i] = 0.0f;

  auto load = [&](int slab) {
    unsigned char* s = smem + (slab % S) * T::STAGE;
    sa.issue(la, slab * BK, K, s);
    sb.issue(lb, slab * BK, K, s + T::A_BYTES);
  };
  const int KT = (K + BK - 1) / BK;
#pragma unroll
  for (int st = 0; st < S - 2; ++st) {
    if (st < KT) load(st);
    mma::cp_async_commit();
  }
  for (int kt = 0; kt < KT; ++kt) {
    // Slab kt has landed for every thread and is visible to wgmma; every warpgroup has waited
    // for its wgmma of slab kt - 2, whose stage the load below refills.
    mma::cp_async_wait<S - 3>();
    wg::proxy_fence();
    __syncthreads();
    if (kt + S - 2 < KT) load(kt + S - 2);
    mma::cp_async_commit();
    wg::slab<T, A_KMAJOR, B_KMAJOR>(acc, smem + (kt % S) * T::STAGE + group * (64 * 128),
                                    smem + (kt % S) * T::STAGE + T::A_BYTES);
    wg::wait<1>();
  }
  wg::wait<0>();
  mma::cp_async_wait<0>();
  wg::store<BN, C>(acc, M, N, m0 + group * 64, n0, epi);
#endif
}

// A block's tile on the core its tile type names (SIMT Tile, tensor-core MmaTile or WgmmaTile); a vector
// tile whose operands are not 16-byte aligned in this call runs its scalar form.
template <class T, bool A_KMAJOR, bool B_KMAJOR, typename C, class LA, class LB, class Epi>
__device__ __forceinline__ void block(const LA& la, const LB& lb, int M, int N, int K, int m0, int n0,
                                      const Epi& epi, unsigned char* __restrict__ smem) {
  if constexpr (!T::MMA) {
    tile<T, A_KMAJOR, B_KMAJOR, C>(la, lb, M, N, K, m0, n0, epi, reinterpret_cast<C*>(smem));
  } else if constexpr (T::WGMMA) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    // Unaligned operands on sm_90a: the block in 64 x 64 pieces of the scalar mma.sync tile, whose
    // few registers keep the kernel's count at the wgmma path's.
    if (la.aligned() && lb.aligned()) {
      wgmma_tile<T, A_KMAJOR, B_KMAJOR, C>(la, lb, M, N, K, m0, n0, epi, smem);
    } else {
      using Piece = typename T::Piece;
      for (int pm = 0; pm < T::BM; pm += Piece::BM)
        for (int pn = 0; pn < T::BN; pn += Piece::BN) {
          if (m0 + pm < M && n0 + pn < N)
            mma_tile<Piece, A_KMAJOR, B_KMAJOR, C>(la, lb, M, N, K, m0 + pm, n0 + pn, epi, smem);
          __syncthreads();
        }
    }
#else
    block<typename T::Fallback, A_KMAJOR, B_KMAJOR, C>(la, lb, M, N, K, m0, n0, epi, smem);
#endif
  } else if constexpr (T::VA || T::VB) {
    if ((!T::VA || la.aligned()) && (!T::VB || lb.aligned()))
      mma_tile<T, A_KMAJOR, B_KMAJOR, C>(la, lb, M, N, K, m0, n0, epi, smem);
    else
      mma_tile<typename T::Scalar, A_KMAJOR, B_KMAJOR, C>(la, lb, M, N, K, m0, n0, epi, smem);
  } else {
    mma_tile<T, A_KMAJOR, B_KMAJOR, C>(la, lb, M, N, K, m0, n0, epi, smem);
  }
}

// -- the persistent, warp-specialized Hopper tile -------------------------------------------------
namespace ws {
__device__ __forceinline__ unsigned shared_address(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void init(unsigned long long* bar, unsigned count) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(shared_address(bar)), "r"(count) : "memory");
#endif
}
__device__ __forceinline__ void arrive(unsigned long long* bar) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("{\n.reg .b64 state;\nmbarrier.arrive.shared::cta.b64 state, [%0];\n}\n" ::"r"(shared_address(bar))
               : "memory");
#endif
}
// Until the phase of `bar` with this parity has completed.
__device__ __forceinline__ void wait(unsigned long long* bar, unsigned parity) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  unsigned done = 0;
  do {
    asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                 : "=r"(done)
                 : "r"(shared_address(bar)), "r"(parity)
                 : "memory");
  } while (!done);
#endif
}
// A warpgroup's registers per thread: the producer gives up what the consumers take.
template <int N> __device__ __forceinline__ void registers_down() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}
template <int N> __device__ __forceinline__ void registers_up() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}

// The full barrier of a TMA stage expects this many bytes (and one arrival, the producer's).
__device__ __forceinline__ void expect_bytes(unsigned long long* bar, unsigned bytes) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("{\n.reg .b64 state;\nmbarrier.arrive.expect_tx.shared::cta.b64 state, [%0], %1;\n}\n"
               ::"r"(shared_address(bar)), "r"(bytes)
               : "memory");
#endif
}
// The box of `map` at coordinates (c0 innermost, c1, c2) into shared memory at `dst`, its bytes
// counted on `bar` as they land.
__device__ __forceinline__ void tma_load(void* dst, const TensorMap* map, int c0, int c1, int c2,
                                         unsigned long long* bar) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\n"
      ::"r"(shared_address(dst)), "l"(reinterpret_cast<unsigned long long>(map)), "r"(c0), "r"(c1), "r"(c2),
      "r"(shared_address(bar))
      : "memory");
#endif
}
// One slab's R lines of an operand as 64 x 64 boxes (k-major: 64 k by 64 lines, coordinates
// (k, line, batch); row-major: 64 lines by 64 k-rows, (line, k, batch)), box j at j * 8 KB: the
// Stager's swizzled layout, which TMA's 128-byte swizzle writes.
template <int R, bool KMAJOR>
__device__ __forceinline__ void tma_stage(const TensorMap* map, int r0, int k0, int z, unsigned char* s,
                                          unsigned long long* bar) {
#pragma unroll
  for (int j = 0; j < R / 64; ++j) {
    if (KMAJOR) tma_load(s + j * 8192, map, k0, r0 + j * 64, z, bar);
    else tma_load(s + j * 8192, map, r0 + j * 64, k0, z, bar);
  }
}

// Output tile t of a product of `batches` matrices of TM x TN tiles: batch z, tile row tm and column
// tn, walking bands of 8 tile rows column by column.
__device__ __forceinline__ void place(i64 t, int TM, int TN, i64& z, int& tm, int& tn) {
  constexpr int BAND = 8;
  const i64 per = static_cast<i64>(TM) * TN;
  z = t / per;
  const int r = static_cast<int>(t - z * per);
  const int band = r / (BAND * TN), first = band * BAND;
  const int rows = TM - first < BAND ? TM - first : BAND;
  const int in = r - band * BAND * TN;
  tm = first + in % rows;
  tn = in / rows;
}

// One slab (64 k) of one operand's R lines into its swizzled stage, by the producer's 128 threads
// (wg::Stager's layout; addresses worked out per read, to keep the producer's registers few).
template <int R, bool KMAJOR, class L>
__device__ __forceinline__ void stage(const L& l, int rows, int r0, int k0, int K, unsigned char* __restrict__ s,
                                      int tid) {
  using S = wg::Stager<R, 128, KMAJOR, void, L>;
  const int along = tid % S::ACROSS, first = tid / S::ACROSS;
#pragma unroll
  for (int e = 0; e < S::PER; ++e) {
    const int r = first + e * S::STEP;
    const int line = r0 + (KMAJOR ? r : along * 8);
    const int k = k0 + (KMAJOR ? along * 8 : r);
    bool in = line < rows && k < K;
    const void* src = l.addr8(l.line(in ? line : r0), k, in);
    mma::cp_async16(s + S::at(r, along), src, in ? 16 : 0);
  }
}
}  // namespace ws

// Batch z of a product: its loaders and its epilogue, store(m, n, acc) per element.
template <class A, class B, class S> struct Operands {
  A a;
  B b;
  S store;
};
template <class A, class B, class S>
__device__ __forceinline__ Operands<A, B, S> operands_of(const A& a, const B& b, const S& store) {
  return Operands<A, B, S>{a, b, store};
}

// A product of `batches` M x N x K matrices on a persistent tile T, `operands(z)` giving batch z's
// Operands. Grid: any number of blocks (one per multiprocessor), of T::THREADS threads.
template <class T, bool A_KMAJOR, bool B_KMAJOR, typename C, class Ops>
__device__ __forceinline__ void persistent(int M, int N, int K, i64 batches, const Ops& operands,
                                           unsigned char* __restrict__ raw_smem, const TensorMap* ta = nullptr,
                                           const TensorMap* tb = nullptr) {
  const int TM = (M + T::BM - 1) / T::BM, TN = (N + T::BN - 1) / T::BN;
  const i64 total = static_cast<i64>(TM) * TN * batches;
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int BM = T::BM, BN = T::BN, BK = T::BK, S = T::STAGES, LAG = T::LAG;
  const int tid = threadIdx.x;
  const auto first_ops = operands(0);
  if (!(first_ops.a.aligned() && first_ops.b.aligned())) {
    // Unaligned operands: every tile in 64 x 64 pieces of the scalar mma.sync tile.
    using Piece = typename T::Piece;
    if (tid >= Piece::THREADS) return;
    for (i64 t = blockIdx.x; t < total; t += gridDim.x) {
      i64 z;
      int tm, tn;
      ws::place(t, TM, TN, z, tm, tn);
      const auto ops = operands(z);
      for (int pm = 0; pm < BM; pm += Piece::BM)
        for (int pn = 0; pn < BN; pn += Piece::BN) {
          if (tm * BM + pm < M && tn * BN + pn < N)
            mma_tile<Piece, A_KMAJOR, B_KMAJOR, C>(ops.a, ops.b, M, N, K, tm * BM + pm, tn * BN + pn, ops.store,
                                                   raw_smem);
          __syncthreads();
        }
    }
    return;
  }
  __shared__ __align__(8) unsigned long long full[S], empty[S];
  const unsigned base = static_cast<unsigned>(__cvta_generic_to_shared(raw_smem));
  unsigned char* smem = raw_smem + ((1024 - (base & 1023)) & 1023);
  if (tid == 0) {
    for (int s = 0; s < S; ++s) {
      ws::init(&full[s], T::TMA ? 1 : 128);     // every producer thread, once its reads have landed
                                                // (TMA: the producer's expect_tx, then the bytes)
      ws::init(&empty[s], T::CONSUMERS * 4);    // every consumer warp, once its wgmma have read the stage
    }
  }
  __syncthreads();
  const int KT = (K + BK - 1) / BK;
  const int group = tid >> 7;
  if (group == 0) {
    // The producer: slab after slab of every tile this block owns, LAG slabs signalled behind.
    ws::registers_down<T::PRODUCER_REGISTERS>();
    if (T::TMA && tid != 0) return;   // TMA: one thread issues the copies
    int it = 0;
    for (i64 t = blockIdx.x; t < total; t += gridDim.x) {
      i64 z;
      int tm, tn;
      ws::place(t, TM, TN, z, tm, tn);
      const auto ops = operands(z);
      for (int kt = 0; kt < KT; ++kt, ++it) {
        const int s = it % S;
        if (it >= S) ws::wait(&empty[s], ((it / S) & 1) ^ 1);
        unsigned char* st = smem + s * T::STAGE;
        if constexpr (T::TMA) {
          ws::expect_bytes(&full[s], T::STAGE);
          ws::tma_stage<BM, A_KMAJOR>(ta, tm * BM, kt * BK, static_cast<int>(z), st, &full[s]);
          ws::tma_stage<BN, B_KMAJOR>(tb, tn * BN, kt * BK, static_cast<int>(z), st + T::A_BYTES, &full[s]);
        } else {
          ws::stage<BM, A_KMAJOR>(ops.a, M, tm * BM, kt * BK, K, st, tid);
          ws::stage<BN, B_KMAJOR>(ops.b, N, tn * BN, kt * BK, K, st + T::A_BYTES, tid);
          mma::cp_async_commit();
          if (it >= LAG) {
            mma::cp_async_wait<LAG>();
            wg::proxy_fence();
            ws::arrive(&full[(it - LAG) % S]);
          }
        }
      }
    }
    if constexpr (!T::TMA) {
      mma::cp_async_wait<0>();
      wg::proxy_fence();
      for (int j = it - LAG < 0 ? 0 : it - LAG; j < it; ++j) ws::arrive(&full[j % S]);
    }
    return;
  }
  // The consumers: warpgroup c multiplies rows c * 64 .. + 63 of each tile.
  ws::registers_up<T::CONSUMER_REGISTERS>();
  const int c = group - 1, lane = tid & 31;
  int it = 0;
  for (i64 t = blockIdx.x; t < total; t += gridDim.x) {
    i64 z;
    int tm, tn;
    ws::place(t, TM, TN, z, tm, tn);
    const auto ops = operands(z);
    float acc[BN / 2];
#pragma unroll
    for (int i = 0; i < BN / 2; ++i) acc[i] = 0.0f;
    for (int kt = 0; kt < KT; ++kt, ++it) {
      const int s = it % S;
      ws::wait(&full[s], (it / S) & 1);
      wg::slab<T, A_KMAJOR, B_KMAJOR>(acc, smem + s * T::STAGE + c * (64 * 128), smem + s * T::STAGE + T::A_BYTES);
      // The slab before this one has been read: its stage goes back to the producer.
      wg::wait<1>();
      if (kt > 0 && lane == 0) ws::arrive(&empty[(it - 1) % S]);
    }
    wg::wait<0>();
    if (KT > 0 && lane == 0) ws::arrive(&empty[(it - 1) % S]);
    wg::store<BN, C>(acc, M, N, tm * BM + c * 64, tn * BN, ops.store);
  }
#else
  // Other architectures: each tile in pieces of the fallback tile, by its threads.
  using F = typename T::Fallback;
  if (threadIdx.x >= F::THREADS) return;
  for (i64 t = blockIdx.x; t < total; t += gridDim.x) {
    i64 z;
    int tm, tn;
    ws::place(t, TM, TN, z, tm, tn);
    const auto ops = operands(z);
    for (int pm = 0; pm < T::BM; pm += F::BM)
      for (int pn = 0; pn < T::BN; pn += F::BN) {
        const int m0 = tm * T::BM + pm, n0 = tn * T::BN + pn;
        if (m0 < M && n0 < N) block<F, A_KMAJOR, B_KMAJOR, C>(ops.a, ops.b, M, N, K, m0, n0, ops.store, raw_smem);
        __syncthreads();
      }
  }
#endif
}

// -- split-K ------------------------------------------------------------------------------------------
// A loader whose k starts at k0: one part of a product split along k reads its own slice.
template <class L> struct Shifted {
  L l;
  int k0;
  using Line = typename L::Line;
  __device__ __forceinline__ Line line(int r) const { return l.line(r); }
  __device__ __forceinline__ auto at(const Line& x, int k) const { return l.at(x, k + k0); }
  __device__ __forceinline__ auto raw(const Line& x, int k) const { return l.raw(x, k + k0); }
  __device__ __forceinline__ uint4 raw8(const Line& x, int k) const { return l.raw8(x, k + k0); }
  __device__ __forceinline__ bool aligned() const { return l.aligned(); }
  __device__ __forceinline__ const void* addr8(const Line& x, int k, bool& in) const { return l.addr8(x, k + k0, in); }
};

// A block's tile of a product split along k into SPLITS parts (blockIdx.z is the part; slices of
// whole BK slabs). Each part stores its partial sums in `work` ([SPLITS][tiles][BM * BN] floats),
// then counts itself in on the tile's counter (zeroed before the launch); the part that arrives
// last adds the parts in order 0..SPLITS-1 and runs the epilogue on the sums, so the result is
// the same whichever part finishes last. Small products fill the GPU this way (BERT's [128, 768]
// layers at batch 1 are 24 tiles of 64 x 64 on 132 multiprocessors).
template <class T, bool A_KMAJOR, bool B_KMAJOR, typename C, int SPLITS, class LA, class LB, class Epi>
__device__ __forceinline__ void split_block(const LA& la, const LB& lb, int M, int N, int K, int m0, int n0,
                                            const Epi& epi, unsigned char* __restrict__ smem,
                                            float* __restrict__ work, unsigned int* __restrict__ counters) {
  constexpr int BM = T::BM, BN = T::BN, AREA = BM * BN;
  const int part = static_cast<int>(blockIdx.z);
  const int slabs = (K + T::BK - 1) / T::BK, per = (slabs + SPLITS - 1) / SPLITS;
  const int kb = min(K, part * per * T::BK), ke = min(K, (part + 1) * per * T::BK);
  const long long tile = static_cast<long long>(blockIdx.y) * gridDim.x + blockIdx.x;
  const long long tiles = static_cast<long long>(gridDim.x) * gridDim.y;
  float* __restrict__ mine = work + (part * tiles + tile) * AREA;
  auto partial = [&](int m, int n, C acc) { mine[(m - m0) * BN + (n - n0)] = static_cast<float>(acc); };
  const Shifted<LA> sa{la, kb};
  const Shifted<LB> sb{lb, kb};
  block<T, A_KMAJOR, B_KMAJOR, C>(sa, sb, M, N, ke - kb, m0, n0, partial, smem);
  __shared__ unsigned int arrived;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) arrived = atomicAdd(counters + tile, 1u);
  __syncthreads();
  if (arrived != SPLITS - 1) return;
  __threadfence();
  for (int e = threadIdx.x; e < AREA; e += T::THREADS) {
    const int m = m0 + e / BN, n = n0 + e % BN;
    if (m >= M || n >= N) continue;
    float sum = 0.0f;
#pragma unroll
    for (int p = 0; p < SPLITS; ++p) sum += __ldcg(work + (p * tiles + tile) * AREA + e);
    epi(m, n, static_cast<C>(sum));
  }
}

// -- strided (batched) matrices -------------------------------------------------------------------
// A(m, k) = a[base + m * sm + k * sk]: matmul, gemm (transposes are strides), einsum.
template <typename S, typename C, typename Index>
struct Strided {
  const S* __restrict__ p;
  Index sm, sk;
  struct Line { Index off; };
  __device__ __forceinline__ Line line(int m) const { return Line{static_cast<Index>(m) * sm}; }
  __device__ __forceinline__ C at(const Line& l, int k) const {
    return static_cast<C>(to_compute(p[l.off + static_cast<Index>(k) * sk]));
  }
  __device__ __forceinline__ S raw(const Line& l, int k) const { return p[l.off + static_cast<Index>(k) * sk]; }
  // 8 elements from (line, k) on: k .. k + 7 when sk is 1, else lines .. + 7 (sm is 1).
  __device__ __forceinline__ uint4 raw8(const Line& l, int k) const {
    return *reinterpret_cast<const uint4*>(p + l.off + static_cast<Index>(k) * sk);
  }
  __device__ __forceinline__ bool aligned() const { return (reinterpret_cast<unsigned long long>(p) & 15) == 0; }
  // Where raw8's 16 bytes are (any valid address when !in).
  __device__ __forceinline__ const void* addr8(const Line& l, int k, bool& in) const {
    return in ? static_cast<const void*>(p + l.off + static_cast<Index>(k) * sk) : static_cast<const void*>(p);
  }
};

// The batch layout of a strided product, from `meta`: the batch rank r, the batch dims, then the
// strides of A, B and C along each (0 where an operand broadcasts), then sam, sak, sbk, sbn, scm, scn.
template <typename Index>
struct Batched {
  const i64* __restrict__ meta;
  __device__ __forceinline__ int rank() const { return static_cast<int>(meta[0]); }
  __device__ __forceinline__ void offsets(i64 z, Index& a, Index& b, Index& c) const {
    const int r = rank();
    a = b = c = 0;
    for (int d = r - 1; d >= 0; --d) {
      const i64 size = meta[1 + d];
      const Index i = static_cast<Index>(z % size);
      z /= size;
      a += i * static_cast<Index>(meta[1 + r + d]);
      b += i * static_cast<Index>(meta[1 + 2 * r + d]);
      c += i * static_cast<Index>(meta[1 + 3 * r + d]);
    }
  }
  __device__ __forceinline__ Index stride(int which) const { return static_cast<Index>(meta[1 + 4 * rank() + which]); }
};

// A batched strided product: grid (M tiles, N tiles, batches); epi(index of C, n, acc). Split along
// k (SPLITS > 1: one batch, grid z the parts, `work` and `counters` as split_block says).
template <class T, bool A_KMAJOR, bool B_KMAJOR, typename C, typename Index, int SPLITS = 1, typename SA, typename SB,
          class Epi>
__device__ __forceinline__ void strided(const SA* __restrict__ a, const SB* __restrict__ b, const i64* __restrict__ meta,
                                        int M, int N, int K, i64 batches, const Epi& epi,
                                        float* __restrict__ work = nullptr, unsigned int* __restrict__ counters = nullptr) {
  __shared__ __align__(16) unsigned char smem_static[T::template bytes<C>()];
  extern __shared__ __align__(16) unsigned char smem_dynamic[];
  unsigned char* smem = T::template dynamic_bytes<C>() > 0 ? smem_dynamic : smem_static;
  const Batched<Index> bl{meta};
  const Index sam = bl.stride(0), sak = bl.stride(1), sbk = bl.stride(2), sbn = bl.stride(3);
  const Index scm = bl.stride(4), scn = bl.stride(5);
  const int m0 = blockIdx.x * T::BM, n0 = blockIdx.y * T::BN;
  if constexpr (SPLITS > 1) {
    Index ao, bo, co;
    bl.offsets(0, ao, bo, co);
    const Strided<SA, C, Index> la{a + ao, sam, sak};
    const Strided<SB, C, Index> lb{b + bo, sbn, sbk};
    auto store = [&](int m, int n, C acc) {
      epi(co + static_cast<Index>(m) * scm + static_cast<Index>(n) * scn, n, acc);
    };
    split_block<T, A_KMAJOR, B_KMAJOR, C, SPLITS>(la, lb, M, N, K, m0, n0, store, smem, work, counters);
  } else if constexpr (is_persistent<T>::value) {
    auto operands = [&](i64 z) {
      Index ao, bo, co;
      bl.offsets(z, ao, bo, co);
      return operands_of(Strided<SA, C, Index>{a + ao, sam, sak}, Strided<SB, C, Index>{b + bo, sbn, sbk},
                         [=](int m, int n, C acc) {
                           epi(co + static_cast<Index>(m) * scm + static_cast<Index>(n) * scn, n, acc);
                         });
    };
    persistent<T, A_KMAJOR, B_KMAJOR, C>(M, N, K, batches, operands, smem);
  } else {
    for (i64 z = blockIdx.z; z < batches; z += gridDim.z) {
      Index ao, bo, co;
      bl.offsets(z, ao, bo, co);
      const Strided<SA, C, Index> la{a + ao, sam, sak};
      const Strided<SB, C, Index> lb{b + bo, sbn, sbk};
      auto store = [&](int m, int n, C acc) {
        epi(co + static_cast<Index>(m) * scm + static_cast<Index>(n) * scn, n, acc);
      };
      block<T, A_KMAJOR, B_KMAJOR, C>(la, lb, M, N, K, m0, n0, store, smem);
      __syncthreads();
    }
  }
}

// `strided` on a persistent TMA tile: `ta` and `tb` the operands' tensor maps (ir/program.py
// tensormap; A: (k, m, batch) k-major or (m, k, batch), B likewise with n), one batch dim at most.
// Unaligned operands (the maps then hold nothing) take the pieces, as in `persistent`.
template <class T, bool A_KMAJOR, bool B_KMAJOR, typename C, typename Index, typename SA, typename SB, class Epi>
__device__ __forceinline__ void strided_tma(const TensorMap& ta, const TensorMap& tb, const SA* __restrict__ a,
                                            const SB* __restrict__ b, const i64* __restrict__ meta, int M, int N,
                                            int K, i64 batches, const Epi& epi) {
  static_assert(T::TMA, "a tile whose producer loads by TMA");
  extern __shared__ __align__(16) unsigned char smem_dynamic[];
  const Batched<Index> bl{meta};
  const Index sam = bl.stride(0), sak = bl.stride(1), sbk = bl.stride(2), sbn = bl.stride(3);
  const Index scm = bl.stride(4), scn = bl.stride(5);
  auto operands = [&](i64 z) {
    Index ao, bo, co;
    bl.offsets(z, ao, bo, co);
    return operands_of(Strided<SA, C, Index>{a + ao, sam, sak}, Strided<SB, C, Index>{b + bo, sbn, sbk},
                       [=](int m, int n, C acc) {
                         epi(co + static_cast<Index>(m) * scm + static_cast<Index>(n) * scn, n, acc);
                       });
  };
  persistent<T, A_KMAJOR, B_KMAJOR, C>(M, N, K, batches, operands, smem_dynamic, &ta, &tb);
}

}  // namespace gemm
}  // namespace ember
