// Device templates for data movement: strided copies (transpose, slice, concat, split, expand,
// tile, depth/space rearrangements), a tiled transpose, padding, gathers and scatters, resize,
// and generators (trilu, range, one_hot, shape constants).
//
// Conventions: `Index` is int or long long (chosen by the generator from the tensor sizes);
// every kernel is a grid-stride loop over `n` work items; shapes and strides come in the
// read-only int64 `meta` array, sizes as kernel parameters. Pure copies move raw bits: their
// element type is the unsigned integer of the element's width. Data-dependent indices are
// wrapped (negative counts from the end) and clamped into range, so a bad index reads a wrong
// element instead of memory outside the tensor (the reference raises on such indices).
#pragma once
#include "ember_prelude.cuh"

namespace ember {

template <typename Index> __device__ __forceinline__ Index grid_first() {
  return (Index)blockIdx.x * (Index)blockDim.x + (Index)threadIdx.x;
}
template <typename Index> __device__ __forceinline__ Index grid_step() {
  return (Index)gridDim.x * (Index)blockDim.x;
}

// The compute type of a storage type (low-precision floats compute in float).
template <typename T> struct ComputeOf { typedef T type; };
template <> struct ComputeOf<__half> { typedef float type; };
template <> struct ComputeOf<__nv_bfloat16> { typedef float type; };
template <> struct ComputeOf<__nv_fp8_e4m3> { typedef float type; };
template <> struct ComputeOf<__nv_fp8_e5m2> { typedef float type; };

// A data-dependent index in [-d, d-1] as a position in [0, d-1] (clamped when outside).
template <typename I> __device__ __forceinline__ long long wrap_index(I value, long long d) {
  long long g = (long long)value;
  if (g < 0) g += d;
  return g < 0 ? 0 : (g >= d ? d - 1 : g);
}

__device__ __forceinline__ double meta_f64(const i64* __restrict__ meta, int k) {
  return __longlong_as_double(meta[k]);
}

// -- strided copies ------------------------------------------------------------------------------
// out[dst(i)] = in[src(i)] over the iteration dims: meta = dims[RANK], in strides[RANK],
// out strides[RANK], in base, out base. Strides may be negative (slices with negative steps)
// or zero (broadcasts). With OUT_CONTIG the output is written at i.
template <typename T, typename Index, int RANK, bool OUT_CONTIG>
__device__ __forceinline__ void strided_copy(T* __restrict__ out, const T* __restrict__ in,
                                             const i64* __restrict__ meta, Index n) {
  const i64* dims = meta;
  const i64* in_strides = meta + RANK;
  const i64* out_strides = meta + 2 * RANK;
  const Index in_base = (Index)meta[3 * RANK];
  const Index out_base = (Index)meta[3 * RANK + 1];
  for (Index i = grid_first<Index>(); i < n; i += grid_step<Index>()) {
    Index rest = i, src = in_base, dst = out_base;
#pragma unroll
    for (int d = RANK - 1; d >= 0; --d) {
      const Index size = (Index)dims[d];
      const Index k = rest % size;
      rest /= size;
      src += k * (Index)in_strides[d];
      dst += k * (Index)out_strides[d];
    }
    out[OUT_CONTIG ? i : dst] = in[src];
  }
}

// Concat of PIECES inputs in one launch. The output is [outer][row] with row = total * inner;
// piece k fills columns [start_k, start_k+1) of each row from its own [outer][start_k+1 - start_k]
// (meta: row, then PIECES + 1 column starts). Each output element finds its piece by a scan.
template <typename T, typename Index, int PIECES>
__device__ __forceinline__ void concat_pieces(T* __restrict__ out, const T* const (&in)[PIECES],
                                              const i64* __restrict__ meta, Index n) {
  const Index row = (Index)meta[0];
  const i64* start = meta + 1;
  for (Index i = grid_first<Index>(); i < n; i += grid_step<Index>()) {
    const Index o = i / row, c = i - o * row;
    int k = 0;
#pragma unroll
    for (int j = 1; j < PIECES; ++j) k += c >= (Index)start[j];
    const Index width = (Index)start[k + 1] - (Index)start[k];
    out[i] = in[k][o * width + (c - (Index)start[k])];
  }
}

// Batched transpose of the last two axes, [batches][rows][cols] -> [batches][cols][rows], by
// 32x32 tiles staged in shared memory (block 32x8): reads and writes are both coalesced.
template <typename T, typename Index>
__device__ __forceinline__ void transpose_tiled(T* __restrict__ out, const T* __restrict__ in, Index rows,
                                                Index cols, Index tiles) {
  __shared__ T tile[32][33];
  const Index tile_rows = (rows + 31) / 32, tile_cols = (cols + 31) / 32;
  const int tx = (int)threadIdx.x, ty = (int)threadIdx.y;
  for (Index t = (Index)blockIdx.x; t < tiles; t += (Index)gridDim.x) {
    const Index per_matrix = tile_rows * tile_cols;
    const Index b = t / per_matrix, rem = t % per_matrix;
    const Index r0 = (rem / tile_cols) * 32, c0 = (rem % tile_cols) * 32;
    const T* src = in + b * rows * cols;
    T* dst = out + b * rows * cols;
    for (int k = ty; k < 32; k += 8) {
      const Index r = r0 + k, c = c0 + tx;
      if (r < rows && c < cols) tile[k][tx] = src[r * cols + c];
    }
    __syncthreads();
    for (int k = ty; k < 32; k += 8) {
      const Index c = c0 + k, r = r0 + tx;
      if (r < rows && c < cols) dst[c * rows + r] = tile[tx][k];
    }
    __syncthreads();
  }
}

// -- pad -------------------------------------------------------------------------------------------
// MODE 0 constant, 1 reflect, 2 edge, 3 wrap. meta = out dims[RANK], in dims[RANK] (after
// cropping), in strides[RANK], pads at the beginnings[RANK], in base (the crop's offset).
// Reflect and wrap repeat their pattern for pads longer than the dim, as numpy's np.pad.
template <typename T, typename Index, int RANK, int MODE>
__device__ __forceinline__ void pad(T* __restrict__ out, const T* __restrict__ in, const T* __restrict__ value,
                                    const i64* __restrict__ meta, Index n) {
  const i64* out_dims = meta;
  const i64* in_dims = meta + RANK;
  const i64* in_strides = meta + 2 * RANK;
  const i64* begins = meta + 3 * RANK;
  const Index in_base = (Index)meta[4 * RANK];
  const T fill = value != nullptr ? value[0] : T(0);
  for (Index i = grid_first<Index>(); i < n; i += grid_step<Index>()) {
    Index rest = i, src = in_base;
    bool inside = true;
#pragma unroll
    for (int d = RANK - 1; d >= 0; --d) {
      const Index size = (Index)out_dims[d];
      Index j = rest % size - (Index)begins[d];
      rest /= size;
      const Index m = (Index)in_dims[d];
      if (MODE == 0) {
        inside = inside && j >= 0 && j < m;
      } else if (MODE == 1) {
        if (m == 1) {
          j = 0;
        } else {
          const Index period = 2 * (m - 1);
          j %= period;
          if (j < 0) j += period;
          if (j >= m) j = period - j;
        }
      } else if (MODE == 2) {
        j = j < 0 ? 0 : (j >= m ? m - 1 : j);
      } else {
        j %= m;
        if (j < 0) j += m;
      }
      src += j * (Index)in_strides[d];
    }
    out[i] = inside ? in[src] : fill;
  }
}

// -- gathers ---------------------------------------------------------------------------------------
// np.take along an axis: data [outer][axis_dim][inner], indices [count], out [outer][count][inner].
template <typename T, typename I, typename Index>
__device__ __forceinline__ void gather(T* __restrict__ out, const T* __restrict__ data, const I* __restrict__ indices,
                                       Index n, Index count, Index inner, Index axis_dim) {
  for (Index i = grid_first<Index>(); i < n; i += grid_step<Index>()) {
    const Index k = i % inner, q = i / inner;
    const Index j = q % count, o = q / count;
    const Index g = (Index)wrap_index(indices[j], (long long)axis_dim);
    out[i] = data[(o * axis_dim + g) * inner + k];
  }
}

// out[i] = data[i's coordinates with the one on AXIS replaced by indices[i]]:
// meta = indices dims[RANK], data strides[RANK], data's dim on AXIS.
template <typename T, typename I, typename Index, int RANK, int AXIS>
__device__ __forceinline__ void gather_elements(T* __restrict__ out, const T* __restrict__ data,
                                                const I* __restrict__ indices, const i64* __restrict__ meta, Index n) {
  const i64* dims = meta;
  const i64* strides = meta + RANK;
  const long long axis_dim = meta[2 * RANK];
  for (Index i = grid_first<Index>(); i < n; i += grid_step<Index>()) {
    Index rest = i, src = 0;
#pragma unroll
    for (int d = RANK - 1; d >= 0; --d) {
      const Index size = (Index)dims[d];
      const Index k = rest % size;
      rest /= size;
      if (d != AXIS) src += k * (Index)strides[d];
    }
    src += (Index)wrap_index(indices[i], axis_dim) * (Index)strides[AXIS];
    out[i] = data[src];
  }
}

// Tuples of M indices address slices of data: out [batch][count][inner] reads
// data[b, i0, ..., i(M-1), inner...]. meta = the M indexed dims, then their strides.
template <typename T, typename I, typename Index, int M>
__device__ __forceinline__ void gather_nd(T* __restrict__ out, const T* __restrict__ data,
                                          const I* __restrict__ indices, const i64* __restrict__ meta, Index n,
                                          Index count, Index inner, Index batch_stride) {
  for (Index i = grid_first<Index>(); i < n; i += grid_step<Index>()) {
    const Index k = i % inner, row = i / inner;
    Index src = (row / count) * batch_stride + k;
#pragma unroll
    for (int m = 0; m < M; ++m)
      src += (Index)wrap_index(indices[row * M + m], (long long)meta[m]) * (Index)meta[M + m];
    out[i] = data[src];
  }
}

// -- scatters -----------------------------------------------------------------------------------------
// Arithmetic on integers that wraps (two's complement), as the reference's; floats as they are.
template <typename A> struct Wrapping { typedef A type; };
template <> struct Wrapping<signed char> { typedef unsigned int type; };
template <> struct Wrapping<unsigned char> { typedef unsigned int type; };
template <> struct Wrapping<short> { typedef unsigned int type; };
template <> struct Wrapping<unsigned short> { typedef unsigned int type; };
template <> struct Wrapping<int> { typedef unsigned int type; };
template <> struct Wrapping<long long> { typedef unsigned long long type; };
template <typename A> __device__ __forceinline__ A add_wrap(A a, A b) {
  typedef typename Wrapping<A>::type W;
  return (A)((W)a + (W)b);
}
template <typename A> __device__ __forceinline__ A mul_wrap(A a, A b) {
  typedef typename Wrapping<A>::type W;
  return (A)((W)a * (W)b);
}
template <typename A> __device__ __forceinline__ A abs_wrap(A a) {
  typedef typename Wrapping<A>::type W;
  return a < A(0) ? (A)((W)0 - (W)a) : a;
}

// RED: 0 none (assign), 1 add, 2 mul, 3 max, 4 min.
template <int RED, typename C> __device__ __forceinline__ C scatter_combine(C a, C b) {
  if (RED == 1) return add_wrap<C>(a, b);
  if (RED == 2) return mul_wrap<C>(a, b);
  if (RED == 3) return max_nan<C>(a, b);
  return min_nan<C>(a, b);
}

// Runs after `out` holds a copy of data. Updates that hit one position are applied in
// row-major order of the indices, as the reference does: with RED == 0 only the last one is
// written; otherwise the first one's thread folds all of them, in order, into the value there
// (accumulating in C, rounding once). Duplicates can only differ along AXIS, so each thread
// scans its line of indices along AXIS. meta = indices dims[RANK], data strides[RANK], data's
// dim on AXIS, the indices' stride along AXIS.
template <typename T, typename C, typename I, typename Index, int RANK, int AXIS, int RED>
__device__ __forceinline__ void scatter_elements(T* __restrict__ out, const T* __restrict__ updates,
                                                 const I* __restrict__ indices, const i64* __restrict__ meta,
                                                 Index n) {
  const i64* dims = meta;
  const i64* strides = meta + RANK;
  const long long axis_dim = meta[2 * RANK];
  const Index step = (Index)meta[2 * RANK + 1];
  const Index line = (Index)dims[AXIS];
  for (Index e = grid_first<Index>(); e < n; e += grid_step<Index>()) {
    Index rest = e, base = 0, j = 0;
#pragma unroll
    for (int d = RANK - 1; d >= 0; --d) {
      const Index size = (Index)dims[d];
      const Index k = rest % size;
      rest /= size;
      if (d == AXIS) j = k; else base += k * (Index)strides[d];
    }
    const long long target = wrap_index(indices[e], axis_dim);
    const Index dst = base + (Index)target * (Index)strides[AXIS];
    const Index first = e - j * step;
    bool mine = true;
    if constexpr (RED == 0) {
      for (Index jj = j + 1; jj < line && mine; ++jj) mine = wrap_index(indices[first + jj * step], axis_dim) != target;
      if (mine) out[dst] = updates[e];
    } else {
      for (Index jj = 0; jj < j && mine; ++jj) mine = wrap_index(indices[first + jj * step], axis_dim) != target;
      if (!mine) continue;
      C acc = (C)to_compute(out[dst]);
      for (Index jj = j; jj < line; ++jj)
        if (wrap_index(indices[first + jj * step], axis_dim) == target)
          acc = scatter_combine<RED, C>(acc, (C)to_compute(updates[first + jj * step]));
      out[dst] = store<T>(acc);
    }
  }
}

// Rows of updates [rows][inner] land on data rows addressed by tuples of K indices (data viewed
// as [lead...][inner]); the same ordering rule as scatter_elements, scanning all rows.
// meta = the K lead dims of data.
template <typename I, int K>
__device__ __forceinline__ long long scatter_row(const I* __restrict__ indices, const i64* __restrict__ meta,
                                                 long long row) {
  long long target = 0;
#pragma unroll
  for (int m = 0; m < K; ++m) target = target * meta[m] + wrap_index(indices[row * K + m], meta[m]);
  return target;
}

template <typename T, typename C, typename I, typename Index, int K, int RED>
__device__ __forceinline__ void scatter_nd(T* __restrict__ out, const T* __restrict__ updates,
                                           const I* __restrict__ indices, const i64* __restrict__ meta, Index n,
                                           Index rows, Index inner) {
  for (Index e = grid_first<Index>(); e < n; e += grid_step<Index>()) {
    const Index r = e / inner, k = e % inner;
    const long long target = scatter_row<I, K>(indices, meta, r);
    const Index dst = (Index)target * inner + k;
    bool mine = true;
    if constexpr (RED == 0) {
      for (Index rr = r + 1; rr < rows && mine; ++rr) mine = scatter_row<I, K>(indices, meta, rr) != target;
      if (mine) out[dst] = updates[e];
    } else {
      for (Index rr = 0; rr < r && mine; ++rr) mine = scatter_row<I, K>(indices, meta, rr) != target;
      if (!mine) continue;
      C acc = (C)to_compute(out[dst]);
      for (Index rr = r; rr < rows; ++rr)
        if (scatter_row<I, K>(indices, meta, rr) == target)
          acc = scatter_combine<RED, C>(acc, (C)to_compute(updates[rr * inner + k]));
      out[dst] = store<T>(acc);
    }
  }
}

// -- generators ----------------------------------------------------------------------------------------
// The upper (j - i >= k) or lower (j - i <= k) triangle of the last two axes; zeros elsewhere.
template <typename T, typename Index, bool UPPER>
__device__ __forceinline__ void trilu(T* __restrict__ out, const T* __restrict__ in, Index n, Index rows, Index cols,
                                      Index k) {
  for (Index i = grid_first<Index>(); i < n; i += grid_step<Index>()) {
    const Index c = i % cols, r = (i / cols) % rows;
    const bool keep = UPPER ? (c - r >= k) : (c - r <= k);
    out[i] = keep ? in[i] : T(0);
  }
}

// NonZero: the coordinates of x's nonzero elements in row-major order, coordinate d of the j-th
// at out[d * count + j]. One block walks x in chunks of blockDim.x; a block-wide scan of the
// chunk's flags gives each nonzero its place, so the order is kept without a second pass.
// `count` (bound before the launch from the same data) caps the writes. Returns the number of
// nonzero elements (every thread the same).
template <typename T, typename Index, int RANK>
__device__ __forceinline__ Index nonzero(long long* __restrict__ out, const T* __restrict__ x,
                                        const long long* __restrict__ dims, Index numel, Index count) {
  __shared__ int warp_sums[32];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, warps = (blockDim.x + 31) >> 5;
  Index base = 0;
  for (Index start = 0; start < numel; start += blockDim.x) {
    const Index i = start + tid;
    const int flag = (i < numel && to_compute(x[i]) != 0) ? 1 : 0;
    int v = flag;  // inclusive scan within the warp
    for (int o = 1; o < 32; o <<= 1) {
      const int u = __shfl_up_sync(0xffffffffu, v, o);
      if (lane >= o) v += u;
    }
    if (lane == 31) warp_sums[warp] = v;
    __syncthreads();
    if (warp == 0) {  // inclusive scan of the warps' sums
      int w = lane < warps ? warp_sums[lane] : 0;
      for (int o = 1; o < 32; o <<= 1) {
        const int u = __shfl_up_sync(0xffffffffu, w, o);
        if (lane >= o) w += u;
      }
      if (lane < warps) warp_sums[lane] = w;
    }
    __syncthreads();
    if (flag) {
      const Index j = base + (warp > 0 ? warp_sums[warp - 1] : 0) + v - 1;
      if (j < count) {
        Index r = i;
        for (int d = RANK - 1; d >= 0; --d) {
          const Index dim = (Index)dims[d];
          out[(Index)d * count + j] = (long long)(r % dim);
          r /= dim;
        }
      }
    }
    base += warp_sums[warps - 1];
    __syncthreads();  // warp_sums is rewritten by the next chunk
  }
  return base;
}

// NonZero at its bound (ember.nonzero_padded): the coordinates as `nonzero` lays them out with
// `numel` as the column stride, -1 in the columns after the real ones, and their count.
template <typename T, typename Index, int RANK>
__device__ __forceinline__ void nonzero_padded(long long* __restrict__ out, long long* __restrict__ count,
                                               const T* __restrict__ x, const long long* __restrict__ dims,
                                               Index numel) {
  const Index total = nonzero<T, Index, RANK>(out, x, dims, numel, numel);
  for (int d = 0; d < RANK; ++d)
    for (Index j = total + threadIdx.x; j < numel; j += blockDim.x) out[(Index)d * numel + j] = -1;
  if (threadIdx.x == 0) *count = (long long)total;
}

// Every element the same bit pattern (ConstantOfShape's value, as the element type's bits).
template <typename Bits, typename Index>
__device__ __forceinline__ void fill(Bits* __restrict__ out, Bits value, Index n) {
  for (Index i = grid_first<Index>(); i < n; i += grid_step<Index>()) out[i] = value;
}

// start + i * delta, in int64 (wrapping) for integers and in double for floats, rounded once.
template <typename T, typename Index, bool INTEGER>
__device__ __forceinline__ void range(T* __restrict__ out, const T* __restrict__ start, const T* __restrict__ delta,
                                      Index n) {
  for (Index i = grid_first<Index>(); i < n; i += grid_step<Index>()) {
    if (INTEGER) {
      const unsigned long long s = (unsigned long long)(long long)start[0];
      const unsigned long long d = (unsigned long long)(long long)delta[0];
      out[i] = (T)(long long)(s + (unsigned long long)i * d);
    } else {
      const double s = (double)to_compute(start[0]), d = (double)to_compute(delta[0]);
      out[i] = store<T>(s + (double)i * d);
    }
  }
}

// out [outer][depth][inner] is values[1] where indices[outer][inner] (negatives + depth; float
// indices truncated) equals the position along depth, else values[0].
template <typename TI, typename T, typename Index, bool FLOAT_INDEX>
__device__ __forceinline__ void one_hot(T* __restrict__ out, const TI* __restrict__ indices,
                                        const T* __restrict__ values, Index n, Index depth, Index inner) {
  for (Index i = grid_first<Index>(); i < n; i += grid_step<Index>()) {
    const Index k = i % inner, q = i / inner;
    const Index d = q % depth, o = q / depth;
    bool hot;
    if (FLOAT_INDEX) {
      double f = trunc((double)to_compute(indices[o * inner + k]));
      if (f < 0) f += (double)depth;
      hot = f == (double)d;
    } else {
      long long g = (long long)indices[o * inner + k];
      if (g < 0) g += (long long)depth;
      hot = g == (long long)d;
    }
    out[i] = hot ? values[1] : values[0];
  }
}

// Values known when the kernel was generated (ember.shape, ember.size): out[i] = meta[i].
template <typename Index>
__device__ __forceinline__ void fill_from_meta(long long* __restrict__ out, const i64* __restrict__ meta, Index n) {
  for (Index i = grid_first<Index>(); i < n; i += grid_step<Index>()) out[i] = meta[i];
}

// -- resize ---------------------------------------------------------------------------------------------------
// Per axis, meta holds 7 entries: in dim, out dim, in stride, then as double bits: the scale,
// the unrounded output length L (NaN for both: computed from the dims), the roi start and end. After them: cubic_coeff_a (double bits)
// and the extrapolation value as the output's bits. See ember.resize for every formula.
enum { CTM_HALF_PIXEL, CTM_HALF_PIXEL_SYMMETRIC, CTM_PYTORCH_HALF_PIXEL, CTM_ALIGN_CORNERS, CTM_ASYMMETRIC,
       CTM_TF_CROP_AND_RESIZE, CTM_TF_HALF_PIXEL_FOR_NN };
enum { NEAREST_ROUND_PREFER_FLOOR, NEAREST_ROUND_PREFER_CEIL, NEAREST_FLOOR, NEAREST_CEIL };
enum { RESIZE_NEAREST, RESIZE_LINEAR, RESIZE_CUBIC };

template <int CTM>
__device__ __forceinline__ double resize_coordinate(double y, long long n_in, long long n_out, double scale,
                                                    double length, double start, double end) {
  if (CTM == CTM_HALF_PIXEL) return (y + 0.5) / scale - 0.5;
  if (CTM == CTM_HALF_PIXEL_SYMMETRIC) {
    const double adjustment = n_in != 0 ? (double)n_out / (scale * (double)n_in) : 1.0;
    const double offset = (double)n_in / 2.0 * (1.0 - adjustment);
    return offset + (y + 0.5) / scale - 0.5;
  }
  if (CTM == CTM_PYTORCH_HALF_PIXEL) return n_out > 1 ? (y + 0.5) / scale - 0.5 : 0.0;
  if (CTM == CTM_ALIGN_CORNERS) return length != 1.0 ? y * (double)(n_in - 1) / (length - 1.0) : 0.0;
  if (CTM == CTM_ASYMMETRIC) return y / scale;
  if (CTM == CTM_TF_HALF_PIXEL_FOR_NN) return (y + 0.5) / scale;
  if (length != 1.0) return y * (end - start) * (double)(n_in - 1) / (length - 1.0) + start * (double)(n_in - 1);
  return (start + end) / 2.0 * (double)(n_in - 1);
}

template <int NEAREST>
__device__ __forceinline__ long long nearest_index(double x, long long n_in) {
  const double lo = floor(x), frac = x - lo;
  double idx;
  if (NEAREST == NEAREST_ROUND_PREFER_FLOOR) idx = frac > 0.5 ? lo + 1.0 : lo;
  else if (NEAREST == NEAREST_ROUND_PREFER_CEIL) idx = frac >= 0.5 ? lo + 1.0 : lo;
  else if (NEAREST == NEAREST_FLOOR) idx = lo;
  else idx = ceil(x);
  const double top = n_in > 0 ? (double)(n_in - 1) : 0.0;
  idx = idx < 0.0 ? 0.0 : (idx > top ? top : idx);
  return (long long)idx;
}

template <int MODE> __device__ __forceinline__ double resize_kernel(double t, double a) {
  t = fabs(t);
  if (MODE == RESIZE_LINEAR) return t >= 1.0 ? 0.0 : 1.0 - t;
  if (t <= 1.0) return ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0;
  if (t < 2.0) return ((a * t - 5.0 * a) * t + 8.0 * a) * t - 4.0 * a;
  return 0.0;
}

template <typename W, typename Index, int TAPS> struct ResizeTaps {
  int count;
  Index offset[TAPS];
  W weight[TAPS];
};

// acc + x * w, rounded twice as numpy does: no fused multiply-add, which NVRTC would otherwise
// contract to (an integer result rounded half to even then differs from the reference at ties).
__device__ __forceinline__ float resize_mul_add(float acc, float x, float w) {
  return __fadd_rn(acc, __fmul_rn(x, w));
}
__device__ __forceinline__ double resize_mul_add(double acc, double x, double w) {
  return __dadd_rn(acc, __dmul_rn(x, w));
}

// Sum over the taps of axis D (the last axis outermost, as the reference resamples axis 0
// first), skipping zero weights so a NaN neighbour with no weight does not leak.
template <int D, typename T, typename W, typename Index, int TAPS>
__device__ __forceinline__ W resize_sum(const T* __restrict__ in, const ResizeTaps<W, Index, TAPS>* taps, Index at) {
  if constexpr (D < 0) {
    return (W)to_compute(in[at]);
  } else {
    W acc = W(0);
    for (int t = 0; t < taps[D].count; ++t)
      if (taps[D].weight[t] != W(0))
        acc = resize_mul_add(acc, resize_sum<D - 1, T, W, Index, TAPS>(in, taps, at + taps[D].offset[t]),
                             taps[D].weight[t]);
    return acc;
  }
}

// An axis's scale and unrounded output length; NaN in the meta means "from the sizes": out / in
// (1 for an empty input) and out, as ember.resize defines them when it is given sizes. An engine
// that serves a range of shapes cannot hold them as constants.
__device__ __forceinline__ double resize_scale(const i64* __restrict__ m) {
  const double s = meta_f64(m, 3);
  return s == s ? s : (m[0] != 0 ? (double)m[1] / (double)m[0] : 1.0);
}
__device__ __forceinline__ double resize_length(const i64* __restrict__ m) {
  const double l = meta_f64(m, 4);
  return l == l ? l : (double)m[1];
}

// The source coordinate of output index y on the axis described by m (7 meta entries).
template <int CTM>
__device__ __forceinline__ double resize_axis_coordinate(const i64* __restrict__ m, long long y) {
  return resize_coordinate<CTM>((double)y, m[0], m[1], resize_scale(m), resize_length(m), meta_f64(m, 5),
                                meta_f64(m, 6));
}

template <typename T> __device__ __forceinline__ T bits_as(long long bits) {
  T v;
  memcpy(&v, &bits, sizeof(T));
  return v;
}

// Nearest: a gather (T may be raw bits). meta: 7 per axis, then cubic_coeff_a, the
// extrapolation value's bits.
template <typename T, typename Index, int RANK, int CTM, int NEAREST>
__device__ __forceinline__ void resize_nearest(T* __restrict__ out, const T* __restrict__ in,
                                               const i64* __restrict__ meta, Index n) {
  const T fill = bits_as<T>(meta[7 * RANK + 1]);
  for (Index i = grid_first<Index>(); i < n; i += grid_step<Index>()) {
    Index rest = i, src = 0;
    bool outside = false;
#pragma unroll
    for (int d = RANK - 1; d >= 0; --d) {
      const i64* m = meta + 7 * d;
      const Index y = rest % (Index)m[1];
      rest /= (Index)m[1];
      const double x = resize_axis_coordinate<CTM>(m, (long long)y);
      if (CTM == CTM_TF_CROP_AND_RESIZE && (x < 0.0 || x > (double)(m[0] - 1))) outside = true;
      src += (Index)nearest_index<NEAREST>(x, m[0]) * (Index)m[2];
    }
    out[i] = outside ? fill : in[src];
  }
}

// Linear and cubic: taps and weights per axis in double (as the reference), weights rounded to
// W (float, or double for f64 and integers), summed in W. Integers round half to even and
// saturate to [lo, hi] (meta entries 7*RANK+2 and +3, double bits).
template <typename T, typename W, typename Index, int RANK, int MODE, int CTM, int TAPS, bool ANTIALIAS,
          bool EXCLUDE_OUTSIDE, bool INTEGER>
__device__ __forceinline__ void resize_interpolate(T* __restrict__ out, const T* __restrict__ in,
                                                   const i64* __restrict__ meta, Index n) {
  const double a = meta_f64(meta, 7 * RANK);
  const T fill = bits_as<T>(meta[7 * RANK + 1]);
  const double lo = meta_f64(meta, 7 * RANK + 2), hi = meta_f64(meta, 7 * RANK + 3);
  const double support = MODE == RESIZE_LINEAR ? 1.0 : 2.0;
  for (Index i = grid_first<Index>(); i < n; i += grid_step<Index>()) {
    ResizeTaps<W, Index, TAPS> taps[RANK];
    Index rest = i;
    bool outside = false;
#pragma unroll
    for (int d = RANK - 1; d >= 0; --d) {
      const i64* m = meta + 7 * d;
      const long long n_in = m[0];
      const Index y = rest % (Index)m[1];
      rest /= (Index)m[1];
      const double x = resize_axis_coordinate<CTM>(m, (long long)y);
      if (CTM == CTM_TF_CROP_AND_RESIZE && (x < 0.0 || x > (double)(n_in - 1))) outside = true;
      const double scale = resize_scale(m);
      const double stretch = (ANTIALIAS && scale < 1.0) ? scale : 1.0;
      int count = 2 * (int)ceil(support / stretch);
      count = count > TAPS ? TAPS : count;
      const long long first = (long long)floor(x) + 1 - count / 2;
      double total = 0.0;
      for (int t = 0; t < count; ++t) {
        const long long tap = first + t;
        double w = resize_kernel<MODE>(((double)tap - x) * stretch, a);
        if (EXCLUDE_OUTSIDE && (tap < 0 || tap >= n_in)) w = 0.0;
        total += w;
      }
      taps[d].count = count;
      for (int t = 0; t < count; ++t) {
        long long tap = first + t;
        double w = resize_kernel<MODE>(((double)tap - x) * stretch, a);
        if (EXCLUDE_OUTSIDE && (tap < 0 || tap >= n_in)) w = 0.0;
        if (ANTIALIAS || EXCLUDE_OUTSIDE) w = w / (total == 0.0 ? 1.0 : total);
        taps[d].weight[t] = (W)w;
        tap = tap < 0 ? 0 : (tap > n_in - 1 ? n_in - 1 : tap);
        taps[d].offset[t] = (Index)tap * (Index)m[2];
      }
    }
    if (CTM == CTM_TF_CROP_AND_RESIZE && outside) {
      out[i] = fill;
      continue;
    }
    const W v = resize_sum<RANK - 1, T, W, Index, TAPS>(in, taps, 0);
    if (INTEGER) {
      double r = rint((double)v);
      r = r < lo ? lo : (r > hi ? hi : r);
      out[i] = (T)r;
    } else {
      out[i] = store<T>(v);
    }
  }
}

}  // namespace ember
