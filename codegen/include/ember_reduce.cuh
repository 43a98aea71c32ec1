// Device templates for reductions, softmax, normalizations, scans, top-k and pooling.
//
// A reduction's input is seen as rows: output row o reduces the elements at
// geo.at(geo.base(o), r) for r in [0, R). A team of threads reduces one row:
//   TEAM_WARP   each warp of the block takes a row (short rows),
//   TEAM_BLOCK  the whole block takes a row (long rows),
//   TEAM_COLUMN a 32x8 block takes 32 adjacent rows whose elements interleave (rows that are
//               inner-kept axes: [outer][R][inner] with inner >= 16), lanes coalesced on inner.
// `team.reduce(v, f)` combines the team's values in a fixed order and gives every member the
// result, so several passes (max, then a sum of exponentials) chain in one kernel.
//
// Inputs are read through loaders: `lx(i)` is element i of x (flat, row-major) in its compute
// type; a fused region's elementwise prologue is a generated loader that computes x there.
// Low-precision floats accumulate in float, f64 in double; integer sums and products wrap in
// their own type (Wrapping); max and min propagate NaN.
#pragma once
#include "ember_movement.cuh"

namespace ember {

enum { TEAM_WARP, TEAM_BLOCK, TEAM_COLUMN };
enum { GEO_ROWS, GEO_COLUMNS, GEO_GENERIC };

// -- shuffles for every accumulator type ----------------------------------------------------------
// Native overloads for the types the intrinsics take; smaller integers and bool go through int.
#define EMBER_SHUFFLES(T)                                                                                 \
  __device__ __forceinline__ T shfl_xor(T v, int m) { return __shfl_xor_sync(0xffffffffu, v, m); }       \
  __device__ __forceinline__ T shfl_up(T v, int d) { return __shfl_up_sync(0xffffffffu, v, d); }         \
  __device__ __forceinline__ T shfl_from(T v, int lane) { return __shfl_sync(0xffffffffu, v, lane); }
EMBER_SHUFFLES(float)
EMBER_SHUFFLES(double)
EMBER_SHUFFLES(int)
EMBER_SHUFFLES(unsigned int)
EMBER_SHUFFLES(long long)
EMBER_SHUFFLES(unsigned long long)
#undef EMBER_SHUFFLES
template <typename A> __device__ __forceinline__ A shfl_xor(A v, int m) {
  return (A)__shfl_xor_sync(0xffffffffu, (int)v, m);
}
template <typename A> __device__ __forceinline__ A shfl_up(A v, int d) {
  return (A)__shfl_up_sync(0xffffffffu, (int)v, d);
}
template <typename A> __device__ __forceinline__ A shfl_from(A v, int lane) {
  return (A)__shfl_sync(0xffffffffu, (int)v, lane);
}

// A value and where it is (argmax, argmin, hardmax); index < 0 means "none yet".
template <typename C> struct Located {
  C value;
  long long index;
};
template <typename C> __device__ __forceinline__ Located<C> shfl_xor(Located<C> v, int m) {
  return Located<C>{shfl_xor(v.value, m), shfl_xor(v.index, m)};
}

// Identities of max and min.
template <typename A> struct Limits;
template <> struct Limits<float> {
  __device__ static float lowest() { return -__int_as_float(0x7f800000); }
  __device__ static float highest() { return __int_as_float(0x7f800000); }
};
template <> struct Limits<double> {
  __device__ static double lowest() { return -__longlong_as_double(0x7ff0000000000000LL); }
  __device__ static double highest() { return __longlong_as_double(0x7ff0000000000000LL); }
};
template <> struct Limits<bool> {
  __device__ static bool lowest() { return false; }
  __device__ static bool highest() { return true; }
};
template <> struct Limits<signed char> {
  __device__ static signed char lowest() { return -128; }
  __device__ static signed char highest() { return 127; }
};
template <> struct Limits<unsigned char> {
  __device__ static unsigned char lowest() { return 0; }
  __device__ static unsigned char highest() { return 255; }
};
template <> struct Limits<short> {
  __device__ static short lowest() { return -32768; }
  __device__ static short highest() { return 32767; }
};
template <> struct Limits<unsigned short> {
  __device__ static unsigned short lowest() { return 0; }
  __device__ static unsigned short highest() { return 65535; }
};
template <> struct Limits<int> {
  __device__ static int lowest() { return -2147483647 - 1; }
  __device__ static int highest() { return 2147483647; }
};
template <> struct Limits<unsigned int> {
  __device__ static unsigned int lowest() { return 0u; }
  __device__ static unsigned int highest() { return 4294967295u; }
};
template <> struct Limits<long long> {
  __device__ static long long lowest() { return -9223372036854775807LL - 1; }
  __device__ static long long highest() { return 9223372036854775807LL; }
};
template <> struct Limits<unsigned long long> {
  __device__ static unsigned long long lowest() { return 0ull; }
  __device__ static unsigned long long highest() { return 18446744073709551615ull; }
};

// Scratch for team reductions: 8 x 32 slots of up to 16 bytes.
__device__ __forceinline__ unsigned char* team_scratch() {
  __shared__ __align__(16) unsigned char scratch[8 * 32 * 16];
  return scratch;
}

// -- row geometry ----------------------------------------------------------------------------------------
// GEO_ROWS: x is [rows][R]. GEO_COLUMNS: x is [outer][R][inner], row o = (outer, inner).
// GEO_GENERIC: meta = KR kept dims, their strides, RR reduced dims, their strides.
template <typename Index, int GEO, int KR, int RR> struct Geometry {
  Index R, inner;
  const i64* __restrict__ meta;

  __device__ __forceinline__ Index base(Index o) const {
    if (GEO == GEO_ROWS) return o * R;
    if (GEO == GEO_COLUMNS) return (o / inner) * R * inner + o % inner;
    Index off = 0;
#pragma unroll
    for (int d = KR - 1; d >= 0; --d) {
      const Index size = (Index)meta[d];
      off += (o % size) * (Index)meta[KR + d];
      o /= size;
    }
    return off;
  }
  __device__ __forceinline__ Index at(Index b, Index r) const {
    if (GEO == GEO_ROWS) return b + r;
    if (GEO == GEO_COLUMNS) return b + r * inner;
    Index off = b;
    const i64* rm = meta + 2 * KR;
#pragma unroll
    for (int d = RR - 1; d >= 0; --d) {
      const Index size = (Index)rm[d];
      off += (r % size) * (Index)rm[RR + d];
      r /= size;
    }
    return off;
  }
};

// -- teams --------------------------------------------------------------------------------------------------
// for (Team t(rows, inner); t.more(); t.next()) { ... } visits every row; within an iteration,
// members with `active` false still take part in reduce().
template <typename Index, int TEAM> struct Team {
  Index rows, inner, task, step;
  Index o, r0, rstep;
  bool active;

  __device__ __forceinline__ Team(Index rows_, Index inner_) : rows(rows_), inner(inner_) {
    if (TEAM == TEAM_WARP) {
      const Index warps = (Index)(blockDim.x / 32);
      task = (Index)blockIdx.x * warps + (Index)(threadIdx.x / 32);
      step = (Index)gridDim.x * warps;
      r0 = (Index)(threadIdx.x % 32);
      rstep = 32;
    } else if (TEAM == TEAM_BLOCK) {
      task = (Index)blockIdx.x;
      step = (Index)gridDim.x;
      r0 = (Index)threadIdx.x;
      rstep = (Index)blockDim.x;
    } else {
      task = (Index)blockIdx.x;
      step = (Index)gridDim.x;
      r0 = (Index)threadIdx.y;
      rstep = 8;
    }
    locate();
  }
  __device__ __forceinline__ Index tasks() const {
    return TEAM == TEAM_COLUMN ? (rows / inner) * ((inner + 31) / 32) : rows;
  }
  __device__ __forceinline__ void locate() {
    if (TEAM == TEAM_COLUMN) {
      const Index chunks = (inner + 31) / 32;
      const Index i = (task % chunks) * 32 + (Index)threadIdx.x;
      o = (task / chunks) * inner + i;
      active = i < inner;
    } else {
      o = task;
      active = true;
    }
  }
  __device__ __forceinline__ bool more() const { return task < tasks(); }
  __device__ __forceinline__ void next() {
    task += step;
    locate();
  }
  // The one member that writes a row's single result.
  __device__ __forceinline__ bool leader() const {
    if (TEAM == TEAM_WARP) return threadIdx.x % 32 == 0;
    if (TEAM == TEAM_BLOCK) return threadIdx.x == 0;
    return threadIdx.y == 0 && active;
  }

  template <typename A, typename F> __device__ __forceinline__ A reduce(A v, F f) const {
    if constexpr (TEAM == TEAM_COLUMN) {
      A* slots = reinterpret_cast<A*>(team_scratch());
      __syncthreads();
      slots[threadIdx.y * 32 + threadIdx.x] = v;
      __syncthreads();
      A acc = slots[threadIdx.x];
      for (int y = 1; y < 8; ++y) acc = f(acc, slots[y * 32 + threadIdx.x]);
      return acc;
    } else {
#pragma unroll
      for (int m = 16; m > 0; m >>= 1) v = f(v, shfl_xor(v, m));
      if constexpr (TEAM == TEAM_WARP) {
        return v;
      } else {
        A* slots = reinterpret_cast<A*>(team_scratch());
        __syncthreads();
        if (threadIdx.x % 32 == 0) slots[threadIdx.x / 32] = v;
        __syncthreads();
        A acc = slots[0];
        const int warps = (int)(blockDim.x / 32);
        for (int w = 1; w < warps; ++w) acc = f(acc, slots[w]);
        return acc;
      }
    }
  }
};

// -- loaders ---------------------------------------------------------------------------------------------------
template <typename T, typename Index> struct Load {
  const T* __restrict__ p;
  __device__ __forceinline__ typename ComputeOf<T>::type operator()(Index i) const { return to_compute(p[i]); }
};

// A loader read at an index mapped from another (a parameter broadcast over the normalized axes).
template <typename L, typename M> struct Mapped {
  L load;
  M map;
  template <typename Index> __device__ __forceinline__ auto operator()(Index i) const { return load(map(i)); }
};
template <typename L, typename M> __device__ __forceinline__ Mapped<L, M> mapped(L load, M map) {
  return Mapped<L, M>{load, map};
}
// Flat index in a shape -> flat index in a tensor broadcast to it (prelude's broadcast_offset).
template <typename Index> struct BroadcastMap {
  const i64* __restrict__ dims;
  const i64* __restrict__ strides;
  int rank;
  __device__ __forceinline__ Index operator()(Index i) const { return broadcast_offset<Index>(i, rank, dims, strides); }
};
// Flat index -> the channel it is in (per-channel parameters).
template <typename Index> struct ChannelMap {
  Index stride, channels;
  __device__ __forceinline__ Index operator()(Index i) const { return (i / stride) % channels; }
};

// -- reduction policies --------------------------------------------------------------------------------------
template <typename A> struct IsFloat { static constexpr bool value = false; };
template <> struct IsFloat<float> { static constexpr bool value = true; };
template <> struct IsFloat<double> { static constexpr bool value = true; };

// a / n: floats divide (0/0 is NaN), integers truncate towards zero (0 over nothing).
template <typename A> __device__ __forceinline__ A div_count(A a, long long n) {
  if constexpr (IsFloat<A>::value) {
    return a / (A)n;
  } else if constexpr (A(-1) < A(0)) {
    return n == 0 ? A(0) : (A)((long long)a / n);
  } else {
    return n == 0 ? A(0) : (A)((unsigned long long)a / (unsigned long long)n);
  }
}

// identity(), map(x) (what is combined), combine (operator()), finish(a, count).
enum { RED_SUM, RED_MEAN, RED_MAX, RED_MIN, RED_PROD, RED_L1, RED_L2, RED_SUM_SQUARE, RED_LOG_SUM, RED_LP };

template <typename A, int KIND> struct Policy {
  int p;  // RED_LP's exponent
  __device__ __forceinline__ A identity() const {
    if constexpr (KIND == RED_MAX) return Limits<A>::lowest();
    else if constexpr (KIND == RED_MIN) return Limits<A>::highest();
    else if constexpr (KIND == RED_PROD) return A(1);
    else return A(0);
  }
  __device__ __forceinline__ A map(A x) const {
    if constexpr (KIND == RED_L1) {
      return abs_wrap<A>(x);
    } else if constexpr (KIND == RED_SUM_SQUARE || KIND == RED_L2) {
      return mul_wrap<A>(x, x);
    } else if constexpr (KIND == RED_LP && IsFloat<A>::value) {
      const A ax = x < A(0) ? -x : x;
      return p == 1 ? ax : (p == 2 ? ax * ax : pow(ax, (A)p));
    } else {
      return x;
    }
  }
  __device__ __forceinline__ A operator()(A a, A b) const {
    if constexpr (KIND == RED_MAX) return max_nan<A>(a, b);
    else if constexpr (KIND == RED_MIN) return min_nan<A>(a, b);
    else if constexpr (KIND == RED_PROD) return mul_wrap<A>(a, b);
    else return add_wrap<A>(a, b);
  }
  __device__ __forceinline__ A finish(A a, long long n) const {
    if constexpr (KIND == RED_MEAN) {
      return div_count<A>(a, n);
    } else if constexpr (IsFloat<A>::value && KIND == RED_L2) {
      return sqrt(a);
    } else if constexpr (IsFloat<A>::value && KIND == RED_LOG_SUM) {
      return log(a);
    } else if constexpr (IsFloat<A>::value && KIND == RED_LP) {
      return p == 1 ? a : (p == 2 ? sqrt(a) : pow(a, (A)(1.0 / p)));
    } else {
      return a;
    }
  }
};

// out[o] = finish(combine over the row of map(x)).
template <typename Out, typename A, typename Index, int TEAM, typename Geo, typename LX, typename P>
__device__ __forceinline__ void reduce_rows(Out* __restrict__ out, LX lx, Geo geo, Index rows, P policy) {
  for (Team<Index, TEAM> t(rows, geo.inner); t.more(); t.next()) {
    A acc = policy.identity();
    if (t.active) {
      const Index b = geo.base(t.o);
      for (Index r = t.r0; r < geo.R; r += t.rstep) acc = policy(acc, policy.map((A)lx(geo.at(b, r))));
    }
    acc = t.reduce(acc, policy);
    if (t.leader()) out[t.o] = store<Out>(policy.finish(acc, (long long)geo.R));
  }
}

template <typename A> struct MaxOp {
  __device__ __forceinline__ A operator()(A a, A b) const { return max_nan<A>(a, b); }
};
template <typename A> struct SumOp {
  __device__ __forceinline__ A operator()(A a, A b) const { return a + b; }
};

// log(sum(exp(x - shift))) + shift, shift the row's maximum when finite, else 0.
template <typename Out, typename A, typename Index, int TEAM, typename Geo, typename LX>
__device__ __forceinline__ void log_sum_exp_rows(Out* __restrict__ out, LX lx, Geo geo, Index rows) {
  for (Team<Index, TEAM> t(rows, geo.inner); t.more(); t.next()) {
    const Index b = t.active ? geo.base(t.o) : 0;
    A m = Limits<A>::lowest();
    if (t.active)
      for (Index r = t.r0; r < geo.R; r += t.rstep) m = max_nan<A>(m, (A)lx(geo.at(b, r)));
    m = t.reduce(m, MaxOp<A>());
    const A shift = isfinite(m) ? m : A(0);
    A s = A(0);
    if (t.active)
      for (Index r = t.r0; r < geo.R; r += t.rstep) s += exp((A)lx(geo.at(b, r)) - shift);
    s = t.reduce(s, SumOp<A>());
    if (t.leader()) out[t.o] = store<Out>(log(s) + shift);
  }
}

// -- argmax, argmin, hardmax -------------------------------------------------------------------------
// Prefer the larger (MAX) or smaller value, a NaN over any number, then the first index (or the
// last with LAST).
template <typename C, bool MAX, bool LAST> struct Pick {
  __device__ __forceinline__ Located<C> operator()(Located<C> a, Located<C> b) const {
    if (b.index < 0) return a;
    if (a.index < 0) return b;
    const bool an = is_nan(a.value), bn = is_nan(b.value);
    bool take_a;
    if (an || bn) take_a = (an && bn) ? (LAST ? a.index > b.index : a.index < b.index) : an;
    else if (a.value != b.value) take_a = MAX ? a.value > b.value : a.value < b.value;
    else take_a = LAST ? a.index > b.index : a.index < b.index;
    return take_a ? a : b;
  }
};

template <typename C, bool MAX, bool LAST, typename Index, int TEAM, typename Geo, typename LX>
__device__ __forceinline__ long long pick_row(const Team<Index, TEAM>& t, LX lx, Geo geo, Index b) {
  Located<C> best{C(0), -1};
  const Pick<C, MAX, LAST> pick;
  if (t.active)
    for (Index r = t.r0; r < geo.R; r += t.rstep) best = pick(best, Located<C>{(C)lx(geo.at(b, r)), (long long)r});
  return t.reduce(best, pick).index;
}

template <typename C, bool MAX, bool LAST, typename Index, int TEAM, typename Geo, typename LX>
__device__ __forceinline__ void arg_rows(long long* __restrict__ out, LX lx, Geo geo, Index rows) {
  for (Team<Index, TEAM> t(rows, geo.inner); t.more(); t.next()) {
    const long long k = pick_row<C, MAX, LAST>(t, lx, geo, t.active ? geo.base(t.o) : Index(0));
    if (t.leader()) out[t.o] = k;
  }
}

template <typename Out, typename C, typename Index, int TEAM, typename Geo, typename LX>
__device__ __forceinline__ void hardmax_rows(Out* __restrict__ out, LX lx, Geo geo, Index rows) {
  for (Team<Index, TEAM> t(rows, geo.inner); t.more(); t.next()) {
    const Index b = t.active ? geo.base(t.o) : Index(0);
    const long long k = pick_row<C, true, false>(t, lx, geo, b);
    if (t.active)
      for (Index r = t.r0; r < geo.R; r += t.rstep) out[geo.at(b, r)] = store<Out>((C)((long long)r == k ? 1 : 0));
  }
}

// -- softmax, log_softmax ---------------------------------------------------------------------------------
template <typename Out, typename C, typename Index, int TEAM, bool LOG, typename Geo, typename LX>
__device__ __forceinline__ void softmax_rows(Out* __restrict__ out, LX lx, Geo geo, Index rows) {
  for (Team<Index, TEAM> t(rows, geo.inner); t.more(); t.next()) {
    const Index b = t.active ? geo.base(t.o) : Index(0);
    C m = Limits<C>::lowest();
    if (t.active)
      for (Index r = t.r0; r < geo.R; r += t.rstep) m = max_nan<C>(m, (C)lx(geo.at(b, r)));
    m = t.reduce(m, MaxOp<C>());
    C s = C(0);
    if (t.active)
      for (Index r = t.r0; r < geo.R; r += t.rstep) s += exp((C)lx(geo.at(b, r)) - m);
    s = t.reduce(s, SumOp<C>());
    if (!t.active) continue;
    const C log_s = LOG ? log(s) : C(0);
    for (Index r = t.r0; r < geo.R; r += t.rstep) {
      const Index at = geo.at(b, r);
      const C shifted = (C)lx(at) - m;
      out[at] = store<Out>(LOG ? shifted - log_s : exp(shifted) / s);
    }
  }
}

// -- layer, instance, group and rms norms ----------------------------------------------------------------
// Each row is standardized with its mean and biased variance (two passes), then
// y = d / sqrt(var + eps) * scale + bias, scale and bias read at map(flat index, r): MAP_R uses
// r (layer norm: parameters over the normalized axes), otherwise the flat index (channels).
// RMS: y = x / sqrt(mean(x^2) + eps) * scale, no bias.
// CACHE > 0 (the planner checks R <= CACHE x the team's members): each member reads its CACHE
// elements of the row once into registers and both passes and the store use them, in the same
// order and with the same arithmetic as the form that reads the row three times.
enum { NORM_STANDARD, NORM_RMS };
template <typename Out, typename C, typename Index, int TEAM, int KIND, bool MAP_R, bool BIAS, int CACHE = 0,
          typename Geo, typename LX, typename LS, typename LB>
__device__ __forceinline__ void norm_rows(Out* __restrict__ out, LX lx, LS scale, LB bias, Geo geo, Index rows,
                                          C epsilon) {
  const C count = (C)(geo.R > 0 ? geo.R : 1);
  if constexpr (CACHE > 0) {
    for (Team<Index, TEAM> t(rows, geo.inner); t.more(); t.next()) {
      const Index b = t.active ? geo.base(t.o) : Index(0);
      C v[CACHE];
#pragma unroll
      for (int i = 0; i < CACHE; ++i) {
        const Index r = t.r0 + (Index)i * t.rstep;
        v[i] = (t.active && r < geo.R) ? (C)lx(geo.at(b, r)) : C(0);
      }
      C mean = C(0);
      if (KIND == NORM_STANDARD) {
        C s = C(0);
#pragma unroll
        for (int i = 0; i < CACHE; ++i)
          if (t.active && t.r0 + (Index)i * t.rstep < geo.R) s += v[i];
        mean = t.reduce(s, SumOp<C>()) / count;
      }
      C q = C(0);
#pragma unroll
      for (int i = 0; i < CACHE; ++i)
        if (t.active && t.r0 + (Index)i * t.rstep < geo.R) {
          const C d = v[i] - mean;
          q += d * d;
        }
      const C denom = sqrt(t.reduce(q, SumOp<C>()) / count + epsilon);
      if (!t.active) continue;
#pragma unroll
      for (int i = 0; i < CACHE; ++i) {
        const Index r = t.r0 + (Index)i * t.rstep;
        if (r >= geo.R) break;
        const Index at = geo.at(b, r);
        const Index p = MAP_R ? r : at;
        C y = (v[i] - mean) / denom * (C)scale(p);
        if (BIAS) y = y + (C)bias(p);
        out[at] = store<Out>(y);
      }
    }
  } else {
    for (Team<Index, TEAM> t(rows, geo.inner); t.more(); t.next()) {
      const Index b = t.active ? geo.base(t.o) : Index(0);
      C mean = C(0);
      if (KIND == NORM_STANDARD) {
        C s = C(0);
        if (t.active)
          for (Index r = t.r0; r < geo.R; r += t.rstep) s += (C)lx(geo.at(b, r));
        mean = t.reduce(s, SumOp<C>()) / count;
      }
      C q = C(0);
      if (t.active)
        for (Index r = t.r0; r < geo.R; r += t.rstep) {
          const C d = (C)lx(geo.at(b, r)) - mean;
          q += d * d;
        }
      const C denom = sqrt(t.reduce(q, SumOp<C>()) / count + epsilon);
      if (!t.active) continue;
      for (Index r = t.r0; r < geo.R; r += t.rstep) {
        const Index at = geo.at(b, r);
        const Index p = MAP_R ? r : at;
        C y = ((C)lx(at) - mean) / denom * (C)scale(p);
        if (BIAS) y = y + (C)bias(p);
        out[at] = store<Out>(y);
      }
    }
  }
}

// y = scale * (x - mean) / sqrt(var + eps) + bias per channel (inference batch norm).
template <typename Out, typename C, typename Index, typename LX, typename LS, typename LB, typename LM, typename LV>
__device__ __forceinline__ void batch_norm(Out* __restrict__ out, LX lx, LS scale, LB bias, LM mean, LV var,
                                           ChannelMap<Index> channel, Index n, C epsilon) {
  for (Index i = grid_first<Index>(); i < n; i += grid_step<Index>()) {
    const Index c = channel(i);
    const C y = (C)scale(c) * ((C)lx(i) - (C)mean(c)) / sqrt((C)var(c) + epsilon) + (C)bias(c);
    out[i] = store<Out>(y);
  }
}

// y = x / (bias + alpha/size * sum of x^2 over the channel window)^beta.
template <typename Out, typename C, typename Index, typename LX>
__device__ __forceinline__ void lrn(Out* __restrict__ out, LX lx, ChannelMap<Index> channel, Index n, int before,
                                    int after, C bias, C alpha_over_size, C beta) {
  for (Index i = grid_first<Index>(); i < n; i += grid_step<Index>()) {
    const Index c = channel(i);
    C window = C(0);
    for (Index k = c - before; k <= c + after; ++k) {
      if (k < 0 || k >= channel.channels) continue;
      const C v = (C)lx(i + (k - c) * channel.stride);
      window += v * v;
    }
    out[i] = store<Out>((C)lx(i) / pow(bias + alpha_over_size * window, beta));
  }
}

// -- cumsum, cumprod ---------------------------------------------------------------------------------------
// One warp per line [outer][L][inner]: chunks of 32 scanned with shuffles, a running carry.
template <typename T, typename A, typename Index, bool PROD, bool EXCLUSIVE, bool REVERSE>
__device__ __forceinline__ void scan_lines(T* __restrict__ out, const T* __restrict__ in, Index lines, Index L,
                                           Index inner) {
  const Index warps = (Index)(blockDim.x / 32);
  const int lane = (int)(threadIdx.x % 32);
  const A identity = PROD ? A(1) : A(0);
  for (Index line = (Index)blockIdx.x * warps + (Index)(threadIdx.x / 32); line < lines;
       line += (Index)gridDim.x * warps) {
    const Index base = (line / inner) * L * inner + line % inner;
    A carry = identity;
    for (Index k0 = 0; k0 < L; k0 += 32) {
      const Index k = k0 + lane;
      const Index at = base + (REVERSE ? (L - 1 - k) : k) * inner;
      A v = k < L ? (A)to_compute(in[at]) : identity;
#pragma unroll
      for (int d = 1; d < 32; d <<= 1) {
        const A u = shfl_up(v, d);
        if (lane >= d) v = PROD ? mul_wrap<A>(u, v) : add_wrap<A>(u, v);
      }
      A before = shfl_up(v, 1);
      if (lane == 0) before = identity;
      const A mine = EXCLUSIVE ? before : v;
      if (k < L) out[at] = store<T>(PROD ? mul_wrap<A>(carry, mine) : add_wrap<A>(carry, mine));
      const A total = shfl_from(v, 31);
      carry = PROD ? mul_wrap<A>(carry, total) : add_wrap<A>(carry, total);
    }
  }
}

// -- top-k ---------------------------------------------------------------------------------------------------
// One block per line [outer][L][inner]: element j goes to position rank(j) = how many elements
// come before it (larger, or smaller; NaN counts largest; ties by lower index) when rank < k.
template <typename C, bool LARGEST> __device__ __forceinline__ bool topk_before(C a, long long ia, C b, long long ib) {
  const bool an = is_nan(a), bn = is_nan(b);
  if (an || bn) {
    if (an && bn) return ia < ib;
    return LARGEST ? an : bn;
  }
  if (a != b) return LARGEST ? a > b : a < b;
  return ia < ib;
}

template <typename T, typename C, typename Index, bool LARGEST, bool STAGE>
__device__ __forceinline__ void topk(T* __restrict__ values, long long* __restrict__ indices, const T* __restrict__ in,
                                     Index lines, Index L, Index inner, Index k) {
  extern __shared__ __align__(16) unsigned char topk_stage[];
  C* staged = reinterpret_cast<C*>(topk_stage);
  for (Index line = (Index)blockIdx.x; line < lines; line += (Index)gridDim.x) {
    const Index o = line / inner, i = line % inner;
    const Index base = o * L * inner + i;
    if (STAGE) {
      __syncthreads();
      for (Index j = (Index)threadIdx.x; j < L; j += (Index)blockDim.x) staged[j] = (C)to_compute(in[base + j * inner]);
      __syncthreads();
    }
    for (Index j = (Index)threadIdx.x; j < L; j += (Index)blockDim.x) {
      const C v = STAGE ? staged[j] : (C)to_compute(in[base + j * inner]);
      Index rank = 0;
      for (Index q = 0; q < L && rank < k; ++q) {
        const C u = STAGE ? staged[q] : (C)to_compute(in[base + q * inner]);
        rank += topk_before<C, LARGEST>(u, (long long)q, v, (long long)j) ? 1 : 0;
      }
      if (rank < k) {
        const Index at = (o * k + rank) * inner + i;
        values[at] = in[base + j * inner];
        indices[at] = (long long)j;
      }
    }
  }
}

// -- windowed pooling ----------------------------------------------------------------------------------------
// One thread per output element. Every axis has a window (non-spatial axes: kernel 1, stride 1,
// dilation 1, no pads), so layouts need no special case. meta per axis (8 entries): out dim,
// in dim, in stride, kernel, stride, dilation, pad begin, pad end.
enum { POOL_MAX, POOL_AVG, POOL_LP };

// What an average pool makes of its sum and count: the float mean, or (Int8Mean) ember.int8_avg_pool's
// and ember.int8_global_avg_pool's `int8_mean` (ir/ops/int8.py): the sum of x - zx over the taps
// inside, exact in int (wrapping), then f32(acc) * sx / f32(count) requantized to (sy, zy).
struct FloatMean {
  template <typename A> __device__ __forceinline__ A map(A v) const { return v; }
  template <typename A> __device__ __forceinline__ A finish(A total, long long count) const {
    return total / (A)count;
  }
};
struct Int8Mean {
  const float* __restrict__ x_scale;
  const signed char* __restrict__ x_zero;  // nullptr: 0
  const float* __restrict__ y_scale;
  const signed char* __restrict__ y_zero;  // nullptr: 0
  __device__ __forceinline__ int map(int v) const { return x_zero != nullptr ? v - (int)x_zero[0] : v; }
  __device__ __forceinline__ int finish(int acc, long long count) const {
    const float v = __fdiv_rn(__fmul_rn(__int2float_rn(acc), x_scale[0]), (float)count);
    return int8_requantize(v, y_scale[0], y_zero != nullptr ? (int)y_zero[0] : 0);
  }
  // as a reduction policy (reduce_rows): a wrapping int sum of map(x), finished as above
  __device__ __forceinline__ int identity() const { return 0; }
  __device__ __forceinline__ int operator()(int a, int b) const { return add_wrap<int>(a, b); }
};

template <typename T, typename A, typename Index, int RANK, int KIND, bool COUNT_PAD, class Mean = FloatMean>
__device__ __forceinline__ void pool(T* __restrict__ out, const T* __restrict__ in, const i64* __restrict__ meta,
                                     Index n, Index taps, int p, Mean mean = Mean()) {
  for (Index i = grid_first<Index>(); i < n; i += grid_step<Index>()) {
    Index start[RANK];
    Index rest = i;
#pragma unroll
    for (int d = RANK - 1; d >= 0; --d) {
      const i64* m = meta + 8 * d;
      const Index size = (Index)m[0];
      start[d] = (rest % size) * (Index)m[4] - (Index)m[6];
      rest /= size;
    }
    A best = Limits<A>::lowest(), total = A(0);
    bool seen = false;
    Index count = 0;
    for (Index t = 0; t < taps; ++t) {
      Index tr = t, src = 0;
      bool inside = true, counted = true;
#pragma unroll
      for (int d = RANK - 1; d >= 0; --d) {
        const i64* m = meta + 8 * d;
        const Index k = (Index)m[3];
        const Index pos = start[d] + (tr % k) * (Index)m[5];
        tr /= k;
        const Index size = (Index)m[1];
        inside = inside && pos >= 0 && pos < size;
        counted = counted && pos < size + (Index)m[7];
        src += pos * (Index)m[2];
      }
      if (COUNT_PAD ? counted : inside) ++count;
      if (!inside) continue;
      const A v = (A)to_compute(in[src]);
      if (KIND == POOL_MAX) {
        if ((!seen || v > best || is_nan(v)) && !is_nan(best)) best = v;
        seen = true;
      } else if (KIND == POOL_AVG) {
        total = add_wrap<A>(total, mean.map(v));
      } else {
        total = total + Policy<A, RED_LP>{p}.map(v);
      }
    }
    if (KIND == POOL_MAX) {
      out[i] = store<T>(best);
    } else if (KIND == POOL_AVG) {
      out[i] = store<T>(mean.finish(total, (long long)count));
    } else {
      out[i] = store<T>(Policy<A, RED_LP>{p}.finish(total, 0));
    }
  }
}

}  // namespace ember
