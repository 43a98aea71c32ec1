// Convolution: an implicit GEMM on the shared GEMM core (ember_gemm.cuh), a direct kernel for
// grouped convolutions with few channels per group (depthwise), and a direct transposed convolution.
//
// Shapes, windows and the strides of every operand come from `meta` (Geom below), so one kernel
// serves any layout: activations NCHW or NHWC (any channels-first or -last order, 1 to 3 spatial
// dims padded to 3 with size 1), filters in any order of O, I and the spatial letters.
//
// The implicit GEMM of group g: rows m = (batch, output position), M = N * OD * OH * OW; columns
// n = output channel within the group; k = (input channel within the group, tap), with the channel
// fastest when CK (channels-last input: consecutive k are adjacent in memory) and the tap fastest
// otherwise. Taps outside the input read 0.
#pragma once
#include "ember_gemm.cuh"

namespace ember {
namespace conv {

template <typename Index>
struct Geom {
  int n, c, d, h, w;            // input: batch, channels, spatial
  int k, od, oh, ow;            // output channels and spatial
  int kd, kh, kw;               // taps
  int sd, sh, sw, dd, dh, dw;   // strides, dilations
  int pd, ph, pw;               // pads at the beginning
  int groups;
  Index xs[5], ws[5], ys[5];    // strides: x (n, c, d, h, w), w (o, i, d, h, w), y (n, c, d, h, w)

  // The geometry from meta; a kernel built for one shape defines EMBER_CONV_GEOM as meta's first
  // 37 entries (codegen/ops/heavy.py `plan_conv`), which makes every field a constant, and every
  // division of the im2col and tap arithmetic a division by a constant.
  __device__ __forceinline__ static Geom load(const i64* __restrict__ meta) {
#ifdef EMBER_CONV_GEOM
    (void)meta;
    constexpr i64 m[37] = {EMBER_CONV_GEOM};
#else
    const i64* __restrict__ m = meta;
#endif
    Geom g;
    int v[22];
#pragma unroll
    for (int i = 0; i < 22; ++i) v[i] = static_cast<int>(m[i]);
    g.n = v[0]; g.c = v[1]; g.d = v[2]; g.h = v[3]; g.w = v[4];
    g.k = v[5]; g.od = v[6]; g.oh = v[7]; g.ow = v[8];
    g.kd = v[9]; g.kh = v[10]; g.kw = v[11];
    g.sd = v[12]; g.sh = v[13]; g.sw = v[14]; g.dd = v[15]; g.dh = v[16]; g.dw = v[17];
    g.pd = v[18]; g.ph = v[19]; g.pw = v[20];
    g.groups = v[21];
#pragma unroll
    for (int i = 0; i < 5; ++i) {
      g.xs[i] = static_cast<Index>(m[22 + i]);
      g.ws[i] = static_cast<Index>(m[27 + i]);
      g.ys[i] = static_cast<Index>(m[32 + i]);
    }
    return g;
  }
  __device__ __forceinline__ int taps() const { return kd * kh * kw; }
  __device__ __forceinline__ int positions() const { return od * oh * ow; }
  __device__ __forceinline__ int cg() const { return c / groups; }
  __device__ __forceinline__ int kg() const { return k / groups; }
};

// k -> (channel within the group, tap d, h, w).
template <bool CK, typename Index>
__device__ __forceinline__ void split_k(const Geom<Index>& g, int k, int& c, int& td, int& th, int& tw) {
  int tap;
  if (CK) { c = k % g.cg(); tap = k / g.cg(); }
  else { tap = k % g.taps(); c = k / g.taps(); }
  tw = tap % g.kw;
  tap /= g.kw;
  th = tap % g.kh;
  td = tap / g.kh;
}

// The im2col view of x for group `grp`.
template <bool CK, typename S, typename C, typename Index>
struct Im2col {
  const S* __restrict__ x;
  Geom<Index> g;
  int grp;
  struct Line { Index base; int z0, y0, x0; };
  __device__ __forceinline__ Line line(int m) const {
    const int P = g.positions();
    const int nb = m / P;
    int p = m % P;
    const int ox = p % g.ow; p /= g.ow;
    const int oy = p % g.oh;
    const int oz = p / g.oh;
    return Line{static_cast<Index>(nb) * g.xs[0] + static_cast<Index>(grp) * g.cg() * g.xs[1],
                oz * g.sd - g.pd, oy * g.sh - g.ph, ox * g.sw - g.pw};
  }
  // Where element (line, k) is in x; false for a tap in the padding (which reads 0).
  __device__ __forceinline__ bool offset(const Line& l, int k, Index& off) const {
    int c, td, th, tw;
    split_k<CK>(g, k, c, td, th, tw);
    const int iz = l.z0 + td * g.dd, iy = l.y0 + th * g.dh, ix = l.x0 + tw * g.dw;
    if (iz < 0 || iz >= g.d || iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) return false;
    off = l.base + static_cast<Index>(c) * g.xs[1] + static_cast<Index>(iz) * g.xs[2] +
          static_cast<Index>(iy) * g.xs[3] + static_cast<Index>(ix) * g.xs[4];
    return true;
  }
  __device__ __forceinline__ C at(const Line& l, int k) const {
    Index off;
    return offset(l, k, off) ? static_cast<C>(to_compute(x[off])) : C(0);
  }
  __device__ __forceinline__ S raw(const Line& l, int k) const {
    Index off;
    return offset(l, k, off) ? x[off] : static_cast<S>(0.0f);
  }
  // Channels c .. c + 7 of one tap (CK, channels adjacent in memory, 8 | channels per group).
  __device__ __forceinline__ uint4 raw8(const Line& l, int k) const {
    Index off;
    return offset(l, k, off) ? *reinterpret_cast<const uint4*>(x + off) : make_uint4(0u, 0u, 0u, 0u);
  }
  __device__ __forceinline__ bool aligned() const { return (reinterpret_cast<unsigned long long>(x) & 15) == 0; }
  __device__ __forceinline__ const void* addr8(const Line& l, int k, bool& in) const {
    Index off = 0;
    in = in && offset(l, k, off);
    return x + off;
  }
};

// The filter of group `grp` as the K x N matrix B(k, n).
template <bool CK, typename S, typename C, typename Index>
struct Filter {
  const S* __restrict__ w;
  Geom<Index> g;
  int grp;
  struct Line { Index off; };
  __device__ __forceinline__ Line line(int n) const {
    return Line{static_cast<Index>(grp * g.kg() + n) * g.ws[0]};
  }
  __device__ __forceinline__ Index offset(const Line& l, int k) const {
    int c, td, th, tw;
    split_k<CK>(g, k, c, td, th, tw);
    return l.off + static_cast<Index>(c) * g.ws[1] + static_cast<Index>(td) * g.ws[2] +
           static_cast<Index>(th) * g.ws[3] + static_cast<Index>(tw) * g.ws[4];
  }
  __device__ __forceinline__ C at(const Line& l, int k) const { return static_cast<C>(to_compute(w[offset(l, k)])); }
  __device__ __forceinline__ S raw(const Line& l, int k) const { return w[offset(l, k)]; }
  __device__ __forceinline__ uint4 raw8(const Line& l, int k) const {
    return *reinterpret_cast<const uint4*>(w + offset(l, k));
  }
  __device__ __forceinline__ bool aligned() const { return (reinterpret_cast<unsigned long long>(w) & 15) == 0; }
  __device__ __forceinline__ const void* addr8(const Line& l, int k, bool& in) const {
    return in ? static_cast<const void*>(w + offset(l, k)) : static_cast<const void*>(w);
  }
};

// Grid (M tiles, N tiles, groups); epi(index of y, output channel, acc). Split along k (SPLITS > 1:
// one group, grid z the parts, `work` and `counters` as gemm::split_block says).
template <class T, bool CK, typename C, typename Index, int SPLITS = 1, typename SX, typename SW, class Epi>
__device__ __forceinline__ void implicit_gemm(const SX* __restrict__ x, const SW* __restrict__ w,
                                              const i64* __restrict__ meta, const Epi& epi,
                                              float* __restrict__ work = nullptr,
                                              unsigned int* __restrict__ counters = nullptr) {
  __shared__ __align__(16) unsigned char smem_static[T::template bytes<C>()];
  extern __shared__ __align__(16) unsigned char smem_dynamic[];
  unsigned char* smem = T::template dynamic_bytes<C>() > 0 ? smem_dynamic : smem_static;
  const Geom<Index> g = Geom<Index>::load(meta);
  const int P = g.positions();
  const int M = g.n * P, N = g.kg(), K = g.cg() * g.taps();
  const int m0 = blockIdx.x * T::BM, n0 = blockIdx.y * T::BN;
  if constexpr (SPLITS > 1) {
    const Im2col<CK, SX, C, Index> la{x, g, 0};
    const Filter<CK, SW, C, Index> lb{w, g, 0};
    auto store = [&](int m, int n, C acc) {
      const Index at = static_cast<Index>(m / P) * g.ys[0] + static_cast<Index>(m % P) * g.ys[4] +
                       static_cast<Index>(n) * g.ys[1];
      epi(at, n, acc);
    };
    gemm::split_block<T, CK, true, C, SPLITS>(la, lb, M, N, K, m0, n0, store, smem, work, counters);
  } else if constexpr (gemm::is_persistent<T>::value) {
    const Index y_n = g.ys[0], y_p = g.ys[4], y_c = g.ys[1];
    auto operands = [&](i64 z) {
      const int grp = static_cast<int>(z);
      return gemm::operands_of(Im2col<CK, SX, C, Index>{x, g, grp}, Filter<CK, SW, C, Index>{w, g, grp},
                               [=](int m, int n, C acc) {
                                 const int ch = grp * N + n;
                                 epi(static_cast<Index>(m / P) * y_n + static_cast<Index>(m % P) * y_p +
                                         static_cast<Index>(ch) * y_c,
                                     ch, acc);
                               });
    };
    gemm::persistent<T, CK, true, C>(M, N, K, g.groups, operands, smem);
  } else {
    for (int grp = blockIdx.z; grp < g.groups; grp += gridDim.z) {
      const Im2col<CK, SX, C, Index> la{x, g, grp};
      const Filter<CK, SW, C, Index> lb{w, g, grp};
      auto store = [&](int m, int n, C acc) {
        const int ch = grp * N + n;
        const Index at = static_cast<Index>(m / P) * g.ys[0] + static_cast<Index>(m % P) * g.ys[4] +
                         static_cast<Index>(ch) * g.ys[1];
        epi(at, ch, acc);
      };
      gemm::block<T, CK, true, C>(la, lb, M, N, K, m0, n0, store, smem);
      __syncthreads();
    }
  }
}

// y's element i (y dense in its own layout: channels last when CL) as (batch, channel, z, y, x).
template <bool CL, typename Index>
__device__ __forceinline__ void split_out(const Geom<Index>& g, Index i, int& nb, int& ch, int& oz, int& oy, int& ox) {
  if (CL) { ch = static_cast<int>(i % g.k); i /= g.k; }
  ox = static_cast<int>(i % g.ow); i /= g.ow;
  oy = static_cast<int>(i % g.oh); i /= g.oh;
  oz = static_cast<int>(i % g.od); i /= g.od;
  if (!CL) { ch = static_cast<int>(i % g.k); i /= g.k; }
  nb = static_cast<int>(i);
}

// The window of output (oz, oy, ox): `tap(xo, wo)` for each filter tap inside the input (padding
// adds nothing), xo and wo the offsets of its first channel in x and w (from the bases xb and wb).
template <typename Index, class Tap>
__device__ __forceinline__ void for_each_tap(const Geom<Index>& g, Index xb, Index wb, int oz, int oy, int ox,
                                     const Tap& tap) {
  for (int td = 0; td < g.kd; ++td) {
    const int iz = oz * g.sd - g.pd + td * g.dd;
    if (iz < 0 || iz >= g.d) continue;
    for (int th = 0; th < g.kh; ++th) {
      const int iy = oy * g.sh - g.ph + th * g.dh;
      if (iy < 0 || iy >= g.h) continue;
      for (int tw = 0; tw < g.kw; ++tw) {
        const int ix = ox * g.sw - g.pw + tw * g.dw;
        if (ix < 0 || ix >= g.w) continue;
        tap(xb + static_cast<Index>(iz) * g.xs[2] + static_cast<Index>(iy) * g.xs[3] + static_cast<Index>(ix) * g.xs[4],
            wb + static_cast<Index>(td) * g.ws[2] + static_cast<Index>(th) * g.ws[3] + static_cast<Index>(tw) * g.ws[4]);
      }
    }
  }
}

// One thread per output element (grid-stride): for depthwise and other thin groups.
template <bool CL, typename C, typename Index, typename SX, typename SW, class Epi>
__device__ __forceinline__ void direct(const SX* __restrict__ x, const SW* __restrict__ w, const i64* __restrict__ meta,
                                       Index total, const Epi& epi) {
  const Geom<Index> g = Geom<Index>::load(meta);
  const int cg = g.cg(), kg = g.kg();
  for (Index i = blockIdx.x * static_cast<Index>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<Index>(gridDim.x) * blockDim.x) {
    int nb, ch, oz, oy, ox;
    split_out<CL>(g, i, nb, ch, oz, oy, ox);
    const int grp = ch / kg;
    const Index xb = static_cast<Index>(nb) * g.xs[0] + static_cast<Index>(grp) * cg * g.xs[1];
    const Index wb = static_cast<Index>(ch) * g.ws[0];
    C acc = C(0);
    for_each_tap(g, xb, wb, oz, oy, ox, [&](Index xo, Index wo) {
      for (int c = 0; c < cg; ++c)
        acc += static_cast<C>(to_compute(x[xo + static_cast<Index>(c) * g.xs[1]])) *
               static_cast<C>(to_compute(w[wo + static_cast<Index>(c) * g.ws[1]]));
    });
    epi(i, ch, acc);
  }
}

// Depthwise convolution channels last (one channel a group, channels a multiple of 8, 16-bit
// storage): one thread per 8 channels of an output position, x read 16 bytes a tap and the index
// math done once for the 8; each channel's sum is the one `direct` forms, term for term. Where x
// is not 16-byte aligned (a window of another buffer, say) it runs `direct`.
template <typename C, typename Index, typename SX, typename SW, class Epi>
__device__ __forceinline__ void depthwise8(const SX* __restrict__ x, const SW* __restrict__ w,
                                           const i64* __restrict__ meta, Index total, const Epi& epi) {
  static_assert(sizeof(SX) == 2, "8 channels are 16 bytes");
  if ((reinterpret_cast<unsigned long long>(x) & 15) != 0) {
    direct<true, C, Index>(x, w, meta, total, epi);
    return;
  }
  const Geom<Index> g = Geom<Index>::load(meta);
  const Index vectors = total / 8;
  for (Index v = blockIdx.x * static_cast<Index>(blockDim.x) + threadIdx.x; v < vectors;
       v += static_cast<Index>(gridDim.x) * blockDim.x) {
    const Index i = v * 8;
    int nb, ch, oz, oy, ox;
    split_out<true>(g, i, nb, ch, oz, oy, ox);
    const Index xb = static_cast<Index>(nb) * g.xs[0] + static_cast<Index>(ch) * g.xs[1];
    const Index wb = static_cast<Index>(ch) * g.ws[0];
    C acc[8];
#pragma unroll
    for (int q = 0; q < 8; ++q) acc[q] = C(0);
    for_each_tap(g, xb, wb, oz, oy, ox, [&](Index xo, Index wo) {
      const uint4 raw = *reinterpret_cast<const uint4*>(x + xo);
      const SX* e = reinterpret_cast<const SX*>(&raw);
#pragma unroll
      for (int q = 0; q < 8; ++q)
        acc[q] += static_cast<C>(to_compute(e[q])) * static_cast<C>(to_compute(w[wo + static_cast<Index>(q) * g.ws[0]]));
    });
#pragma unroll
    for (int q = 0; q < 8; ++q) epi(i + q, ch + q, acc[q]);
  }
}

// Transposed convolution, one thread per output element: y[f] gathers x[i] * w[tap] over the taps with
// f + pad = i * stride + tap * dilation. `g` describes x as the input and y as the output; the filter
// strides are (o: output channel within the group, i: input channel, taps). Output positions past
// the full result (output_padding, negative pads) get no terms.
template <bool CL, typename C, typename Index, typename SX, typename SW, class Epi>
__device__ __forceinline__ void transposed(const SX* __restrict__ x, const SW* __restrict__ w,
                                           const i64* __restrict__ meta, Index total, const Epi& epi) {
  const Geom<Index> g = Geom<Index>::load(meta);
  const int cg = g.cg(), kg = g.kg();
  for (Index i = blockIdx.x * static_cast<Index>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<Index>(gridDim.x) * blockDim.x) {
    int nb, ch, oz, oy, ox;
    split_out<CL>(g, i, nb, ch, oz, oy, ox);
    const int grp = ch / kg, oc = ch % kg;
    const Index xb = static_cast<Index>(nb) * g.xs[0] + static_cast<Index>(grp) * cg * g.xs[1];
    const Index wb = static_cast<Index>(oc) * g.ws[0] + static_cast<Index>(grp) * cg * g.ws[1];
    C acc = C(0);
    for (int td = 0; td < g.kd; ++td) {
      int iz = oz + g.pd - td * g.dd;
      if (iz < 0 || iz % g.sd) continue;
      iz /= g.sd;
      if (iz >= g.d) continue;
      for (int th = 0; th < g.kh; ++th) {
        int iy = oy + g.ph - th * g.dh;
        if (iy < 0 || iy % g.sh) continue;
        iy /= g.sh;
        if (iy >= g.h) continue;
        for (int tw = 0; tw < g.kw; ++tw) {
          int ix = ox + g.pw - tw * g.dw;
          if (ix < 0 || ix % g.sw) continue;
          ix /= g.sw;
          if (ix >= g.w) continue;
          const Index xo = xb + static_cast<Index>(iz) * g.xs[2] + static_cast<Index>(iy) * g.xs[3] +
                           static_cast<Index>(ix) * g.xs[4];
          const Index wo = wb + static_cast<Index>(td) * g.ws[2] + static_cast<Index>(th) * g.ws[3] +
                           static_cast<Index>(tw) * g.ws[4];
          for (int c = 0; c < cg; ++c)
            acc += static_cast<C>(to_compute(x[xo + static_cast<Index>(c) * g.xs[1]])) *
                   static_cast<C>(to_compute(w[wo + static_cast<Index>(c) * g.ws[1]]));
        }
      }
    }
    epi(i, ch, acc);
  }
}

}  // namespace conv
}  // namespace ember
