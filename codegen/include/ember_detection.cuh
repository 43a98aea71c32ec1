// Device templates for detectors' post-processing: non-max suppression with a fixed-size result
// and a count (ember.nms_padded), computed exactly as the interpreter's ember.nms.
//
// Positions, areas and IoU are computed in P (float, or double when the boxes or scores are
// f64) with products and sums rounded one at a time (no FMA contraction), NaN propagating
// through min and max as numpy's minimum and maximum do, so each suppression decision is the
// reference's bit for bit.
#pragma once
#include "ember_prelude.cuh"

namespace ember {

template <typename P> __device__ __forceinline__ P nms_mul(P a, P b);
template <> __device__ __forceinline__ float nms_mul(float a, float b) { return __fmul_rn(a, b); }
template <> __device__ __forceinline__ double nms_mul(double a, double b) { return __dmul_rn(a, b); }
template <typename P> __device__ __forceinline__ P nms_add(P a, P b);
template <> __device__ __forceinline__ float nms_add(float a, float b) { return __fadd_rn(a, b); }
template <> __device__ __forceinline__ double nms_add(double a, double b) { return __dadd_rn(a, b); }
template <typename P> __device__ __forceinline__ P nms_sub(P a, P b);
template <> __device__ __forceinline__ float nms_sub(float a, float b) { return __fsub_rn(a, b); }
template <> __device__ __forceinline__ double nms_sub(double a, double b) { return __dsub_rn(a, b); }
template <typename P> __device__ __forceinline__ P nan_min(P a, P b) { return (a != a || a < b) ? a : b; }
template <typename P> __device__ __forceinline__ P nan_max(P a, P b) { return (a != a || a > b) ? a : b; }

// One box as corners (x1, y1, x2, y2) and its area.
template <typename P> struct NmsBox { P x1, y1, x2, y2, area; };

template <typename T, typename P, bool CENTER>
__device__ __forceinline__ NmsBox<P> nms_box(const T* __restrict__ b) {
  const P v0 = (P)to_compute(b[0]), v1 = (P)to_compute(b[1]), v2 = (P)to_compute(b[2]), v3 = (P)to_compute(b[3]);
  NmsBox<P> r;
  if (CENTER) {  // [x_center, y_center, width, height]
    const P hw = v2 / (P)2, hh = v3 / (P)2;
    r.x1 = nms_sub(v0, hw); r.x2 = nms_add(v0, hw); r.y1 = nms_sub(v1, hh); r.y2 = nms_add(v1, hh);
  } else {       // [y1, x1, y2, x2], either diagonal
    r.y1 = nan_min(v0, v2); r.x1 = nan_min(v1, v3); r.y2 = nan_max(v0, v2); r.x2 = nan_max(v1, v3);
  }
  r.area = nms_mul(nms_sub(r.x2, r.x1), nms_sub(r.y2, r.y1));
  return r;
}

// Whether a suppresses b (symmetric): both have a positive area and overlap, and IoU > limit.
template <typename P>
__device__ __forceinline__ bool nms_overlaps(const NmsBox<P>& a, const NmsBox<P>& b, P limit) {
  const P ix = nms_sub(nan_min(a.x2, b.x2), nan_max(a.x1, b.x1));
  const P iy = nms_sub(nan_min(a.y2, b.y2), nan_max(a.y1, b.y1));
  const P inter = nms_mul(ix, iy);
  const P uni = nms_sub(nms_add(a.area, b.area), inter);
  if (!(ix > (P)0 && iy > (P)0 && a.area > (P)0 && b.area > (P)0 && uni > (P)0)) return false;
  return inter / uni > limit;
}

// Score order of the reference's stable argsort of -score: higher first, NaN last, ties by index.
template <typename P> __device__ __forceinline__ bool nms_before(P a, long long ia, P b, long long ib) {
  if (ib < 0) return ia >= 0;
  if (ia < 0) return false;
  const bool na = a != a, nb = b != b;
  if (na || nb) return na && nb ? ia < ib : nb;
  return a > b || (a == b && ia < ib);
}

// Per (image, class): greedy selection, one block each (grid-stride over the n = B*C pairs).
// Each round finds the best live candidate by a block-wide arg-max, keeps it and retires every
// live box it suppresses, until `limit` are kept or none is live. Writes the kept box indices
// at picks[pair * limit ...] and their count at counts[pair]. `live` is scratch, a byte per box.
template <typename T, typename S, typename P, bool CENTER, bool SCORE_LIMIT>
__device__ __forceinline__ void nms_select(long long* __restrict__ counts, long long* __restrict__ picks,
                                           unsigned char* __restrict__ live, const T* __restrict__ boxes,
                                           const S* __restrict__ scores, long long classes, long long m,
                                           long long limit, P iou_limit, P score_limit, long long n) {
  __shared__ P best_score[32];
  __shared__ long long best_index[32];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, warps = (blockDim.x + 31) >> 5;
  for (long long pair = blockIdx.x; pair < n; pair += gridDim.x) {
    const long long image = pair / classes;
    const T* bx = boxes + image * m * 4;
    const S* sc = scores + pair * m;
    unsigned char* alive = live + pair * m;
    for (long long j = tid; j < m; j += blockDim.x) {
      const P s = (P)to_compute(sc[j]);
      alive[j] = SCORE_LIMIT ? (s > score_limit) : 1;
    }
    __syncthreads();
    long long kept = 0;
    while (kept < limit) {
      P bs = (P)0;
      long long bi = -1;
      for (long long j = tid; j < m; j += blockDim.x) {
        if (!alive[j]) continue;
        const P s = (P)to_compute(sc[j]);
        if (nms_before(s, j, bs, bi)) { bs = s; bi = j; }
      }
      for (int o = 16; o > 0; o >>= 1) {
        const P os = __shfl_down_sync(0xffffffffu, bs, o);
        const long long oi = __shfl_down_sync(0xffffffffu, bi, o);
        if (nms_before(os, oi, bs, bi)) { bs = os; bi = oi; }
      }
      if (lane == 0) { best_score[warp] = bs; best_index[warp] = bi; }
      __syncthreads();
      if (warp == 0) {
        bs = lane < warps ? best_score[lane] : (P)0;
        bi = lane < warps ? best_index[lane] : -1;
        for (int o = 16; o > 0; o >>= 1) {
          const P os = __shfl_down_sync(0xffffffffu, bs, o);
          const long long oi = __shfl_down_sync(0xffffffffu, bi, o);
          if (nms_before(os, oi, bs, bi)) { bs = os; bi = oi; }
        }
        if (lane == 0) best_index[0] = bi;
      }
      __syncthreads();
      const long long pick = best_index[0];
      if (pick < 0) break;  // (every thread reads the same pick: the loop ends together)
      const NmsBox<P> chosen = nms_box<T, P, CENTER>(bx + pick * 4);
      for (long long j = tid; j < m; j += blockDim.x) {
        if (alive[j] && (j == pick || nms_overlaps(chosen, nms_box<T, P, CENTER>(bx + j * 4), iou_limit))) alive[j] = 0;
      }
      if (tid == 0) picks[pair * limit + kept] = pick;
      ++kept;
      __syncthreads();  // alive and best_index are read and rewritten by the next round
    }
    if (tid == 0) counts[pair] = kept;
    __syncthreads();
  }
}

// One block: the kept rows [image, class, box] of every pair, in order, then -1 rows up to
// `rows` (the bound), and their number in *count. offsets is scratch, one per pair.
__device__ __forceinline__ void nms_gather(long long* __restrict__ out, long long* __restrict__ count,
                                           long long* __restrict__ offsets, const long long* __restrict__ counts,
                                           const long long* __restrict__ picks, long long classes, long long pairs,
                                           long long limit, long long rows) {
  __shared__ long long total;
  if (threadIdx.x == 0) {
    long long at = 0;
    for (long long p = 0; p < pairs; ++p) { offsets[p] = at; at += counts[p]; }
    total = at;
    *count = at;
  }
  __syncthreads();
  for (long long i = threadIdx.x; i < pairs * limit; i += blockDim.x) {
    const long long p = i / limit, r = i % limit;
    if (r < counts[p]) {
      long long* row = out + (offsets[p] + r) * 3;
      row[0] = p / classes; row[1] = p % classes; row[2] = picks[i];
    }
  }
  for (long long i = total + threadIdx.x; i < rows; i += blockDim.x) {
    out[i * 3] = -1; out[i * 3 + 1] = -1; out[i * 3 + 2] = -1;
  }
}

}  // namespace ember

namespace ember {

// RoiAlign: out[r, c, ph, pw] pools a sampling grid of bilinear samples of image
// batch_indices[r] inside RoI r's bin (ph, pw), as the interpreter's ember.roi_align does (its
// positions computed in P, term by term; samples outside [-1, size] count 0; max takes, per
// sample, the largest weighted corner). One thread per output element (grid-stride); the
// strides in meta give x's and out's layouts: x (n, c, h, w) strides, out (r, c, ph, pw)
// strides, then N, C, H, W, R, output height, output width.
template <typename P> struct RoiAxis { long long low, high; P w_low, w_high; bool inside; };

template <typename P>
__device__ __forceinline__ RoiAxis<P> roi_axis(P start, P bin, long long b, long long i, long long grid, long long size) {
  const P c0 = nms_add(nms_add(start, nms_mul((P)b, bin)), nms_mul(nms_add((P)i, (P)0.5), bin) / (P)grid);
  RoiAxis<P> a;
  a.inside = c0 >= (P)-1 && c0 <= (P)size;
  const P c = c0 < (P)0 ? (P)0 : c0;
  long long low = (long long)floor((double)c);
  P frac;
  if (low >= size - 1) { low = size - 1; a.high = size - 1; frac = (P)0; }
  else { a.high = low + 1; frac = nms_sub(c, (P)low); }
  a.low = low;
  a.w_low = nms_sub((P)1, frac);
  a.w_high = frac;
  return a;
}

template <typename T, typename C, typename I, typename P, bool HALF, bool MAX>
__device__ __forceinline__ void roi_align(T* __restrict__ out, const T* __restrict__ x, const T* __restrict__ rois,
                                          const I* __restrict__ batch_indices, const i64* __restrict__ meta,
                                          P scale, long long sampling_ratio, long long n) {
  const i64* xs = meta;
  const i64* os = meta + 4;
  const long long N = meta[8], channels = meta[9], H = meta[10], W = meta[11], OH = meta[13], OW = meta[14];
  for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (long long)gridDim.x * blockDim.x) {
    long long rest = e;
    const long long pw = rest % OW; rest /= OW;
    const long long ph = rest % OH; rest /= OH;
    const long long c = rest % channels;
    const long long r = rest / channels;
    long long b = (long long)batch_indices[r];
    b = b < 0 ? 0 : (b >= N ? N - 1 : b);  // (the interpreter refuses such an index)
    const P offset = HALF ? (P)0.5 : (P)0;
    const P start_w = nms_sub(nms_mul((P)to_compute(rois[r * 4 + 0]), scale), offset);
    const P start_h = nms_sub(nms_mul((P)to_compute(rois[r * 4 + 1]), scale), offset);
    const P end_w = nms_sub(nms_mul((P)to_compute(rois[r * 4 + 2]), scale), offset);
    const P end_h = nms_sub(nms_mul((P)to_compute(rois[r * 4 + 3]), scale), offset);
    P roi_w = nms_sub(end_w, start_w), roi_h = nms_sub(end_h, start_h);
    if (!HALF) { roi_w = roi_w > (P)1 ? roi_w : (P)1; roi_h = roi_h > (P)1 ? roi_h : (P)1; }
    const P bin_h = roi_h / (P)OH, bin_w = roi_w / (P)OW;
    const long long grid_h = sampling_ratio > 0 ? sampling_ratio : (long long)ceil((double)(roi_h / (P)OH));
    const long long grid_w = sampling_ratio > 0 ? sampling_ratio : (long long)ceil((double)(roi_w / (P)OW));
    C acc = (C)0;
    bool any = false;
    if (grid_h > 0 && grid_w > 0) {
      const T* image = x + b * xs[0] + c * xs[1];
      for (long long iy = 0; iy < grid_h; ++iy) {
        const RoiAxis<P> ay = roi_axis<P>(start_h, bin_h, ph, iy, grid_h, H);
        for (long long ix = 0; ix < grid_w; ++ix) {
          const RoiAxis<P> ax = roi_axis<P>(start_w, bin_w, pw, ix, grid_w, W);
          const bool inside = ay.inside && ax.inside;
          const C w00 = (C)nms_mul(ay.w_low, ax.w_low), w01 = (C)nms_mul(ay.w_low, ax.w_high);
          const C w10 = (C)nms_mul(ay.w_high, ax.w_low), w11 = (C)nms_mul(ay.w_high, ax.w_high);
          const C v00 = inside ? w00 * (C)to_compute(image[ay.low * xs[2] + ax.low * xs[3]]) : (C)0;
          const C v01 = inside ? w01 * (C)to_compute(image[ay.low * xs[2] + ax.high * xs[3]]) : (C)0;
          const C v10 = inside ? w10 * (C)to_compute(image[ay.high * xs[2] + ax.low * xs[3]]) : (C)0;
          const C v11 = inside ? w11 * (C)to_compute(image[ay.high * xs[2] + ax.high * xs[3]]) : (C)0;
          if (MAX) {
            C m = nan_max(nan_max(v00, v01), nan_max(v10, v11));
            acc = any ? nan_max(acc, m) : m;
          } else {
            acc += ((v00 + v01) + v10) + v11;
          }
          any = true;
        }
      }
      if (!MAX) acc = acc / (C)(grid_h * grid_w);
    }
    out[r * os[0] + c * os[1] + ph * os[2] + pw * os[3]] = store<T>(acc);
  }
}

}  // namespace ember
