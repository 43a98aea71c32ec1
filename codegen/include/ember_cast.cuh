// Conversions to and from the narrow element types, bit for bit as the reference interpreter's
// ember.cast (ir/ops/core.py `cast_array`, through ml_dtypes):
//   - fp8 (e4m3fn, e4m3fnuz, e5m2, e5m2fnuz), fp6 (e2m3, e3m2) and fp4 (e2m1): round to nearest
//     even from f32, or from f64 when the source is f64 or a 64-bit integer; `saturate` clamps to
//     +-max (infinities too), else a rounded value past the range is inf (e5m2) or NaN (e4m3fn,
//     the fnuz types). fp6 and fp4 always saturate and turn NaN into a zero of the opposite sign.
//     NaN keeps its sign where the format has one (e4m3fn S.1111.111, e5m2 S.11111.10); the fnuz
//     types have one NaN, 0x80, and no negative zero (decoded, their NaN is negative, as ml_dtypes).
//   - e8m0 (powers of two 2^-127..2^127, 0xFF NaN) with round_mode up, down or nearest.
//   - sub-byte integers (i4, u4, i2, u2), one byte per element holding the value's low bits
//     (as ml_dtypes stores them): integers wrap; floats truncate toward zero, and one outside the
//     type's range (NaN and infinities too) is 0.
// A narrow float computes in float, a narrow integer in int. Everything here is integer and bit
// work, no library calls, so the same text compiles for the host too (tests/codegen/test_casts.py
// checks it there against the interpreter, exhaustively where the inputs are few).
#pragma once

namespace ember {

// -- the formats --------------------------------------------------------------------------------
enum Specials {
  IEEE = 0,    // e5m2: an exponent of all ones is inf (mantissa 0) or NaN
  FN = 1,      // e4m3fn: S.1111.111 is NaN, no inf
  FNUZ = 2,    // 0x80 is NaN, no inf, no negative zero
  FINITE = 3,  // fp6, fp4: every code is a number
};

// A small float of E exponent bits, M mantissa bits and bias B; Code is how a tensor stores it.
template <int E, int M, int B, int KIND> struct SmallFloat {
  unsigned char bits;
  static constexpr int kE = E, kM = M, kBias = B, kKind = KIND;
  static constexpr unsigned kSign = 1u << (E + M);
  // The largest finite magnitude's code.
  static constexpr unsigned kMax = KIND == IEEE ? ((((1u << E) - 2u) << M) | ((1u << M) - 1u))
                                 : KIND == FN   ? ((((1u << E) - 1u) << M) | ((1u << M) - 2u))
                                                : (kSign - 1u);
  static constexpr int kEmin = 1 - B;                       // the smallest normal exponent
  static constexpr int kEmax = int(kMax >> M) - B;          // the largest finite exponent
};
typedef SmallFloat<4, 3, 7, FN> f8e4m3fn;
typedef SmallFloat<4, 3, 8, FNUZ> f8e4m3fnuz;
typedef SmallFloat<5, 2, 15, IEEE> f8e5m2;
typedef SmallFloat<5, 2, 16, FNUZ> f8e5m2fnuz;
typedef SmallFloat<2, 3, 1, FINITE> f6e2m3;
typedef SmallFloat<3, 2, 3, FINITE> f6e3m2;
typedef SmallFloat<2, 1, 1, FINITE> f4e2m1;

struct f8e8m0 { unsigned char bits; };
enum E8m0Round { E8M0_UP = 0, E8M0_DOWN = 1, E8M0_NEAREST = 2 };

template <int BITS, bool SIGNED> struct NarrowInt { unsigned char bits; };
typedef NarrowInt<4, true> i4;
typedef NarrowInt<4, false> u4;
typedef NarrowInt<2, true> i2;
typedef NarrowInt<2, false> u2;

// -- IEEE sources, by their bits ------------------------------------------------------------------
template <typename F> struct Ieee;
template <> struct Ieee<float> {
  typedef unsigned int U;
  static constexpr int kM = 23, kBias = 127, kWidth = 32;
  __device__ __forceinline__ static U bits(float x) { return __float_as_uint(x); }
};
template <> struct Ieee<double> {
  typedef unsigned long long U;
  static constexpr int kM = 52, kBias = 1023, kWidth = 64;
  __device__ __forceinline__ static U bits(double x) { return static_cast<U>(__double_as_longlong(x)); }
};

// |x| (finite) rounded to nearest even in format F, as the code of its exponent and mantissa
// fields; a code above F::kMax means past the largest finite value (kMax + 1 when far past).
template <typename F, typename S> __device__ __forceinline__ unsigned round_magnitude(S x) {
  typedef Ieee<S> I;
  typedef typename I::U U;
  const U mag = I::bits(x) & ((U(1) << (I::kWidth - 1)) - 1u);
  const int field = static_cast<int>(mag >> I::kM);
  U m = mag & ((U(1) << I::kM) - 1u);
  if (field != 0) m |= U(1) << I::kM;
  const int e = (field == 0 ? 1 : field) - I::kBias;  // |x| = m * 2^(e - I::kM)
  if (e > F::kEmax + 1) return F::kMax + 1u;
  const int et = e < F::kEmin ? F::kEmin : e;         // the exponent of the result's quantum
  const int shift = I::kM - F::kM + (et - e);
  if (shift > I::kM + 1) return 0u;                  // below half the smallest subnormal
  U q = m >> shift;
  const U rem = m & ((U(1) << shift) - 1u), half = U(1) << (shift - 1);
  if (rem > half || (rem == half && (q & 1u))) ++q;
  return (static_cast<unsigned>(et - F::kEmin) << F::kM) + static_cast<unsigned>(q);
}

template <typename F> __device__ __forceinline__ unsigned nan_code(bool negative) {
  if (F::kKind == FNUZ) return F::kSign;
  if (F::kKind == FINITE) return negative ? 0u : F::kSign;  // a zero of the opposite sign
  const unsigned quiet = F::kKind == FN ? F::kSign - 1u : F::kSign - (1u << (F::kM - 1));
  return (negative ? F::kSign : 0u) | quiet;
}

// x (float or double) in format F.
template <typename F, typename S> __device__ __forceinline__ unsigned char encode(S x, bool saturate) {
  typedef Ieee<S> I;
  const typename I::U u = I::bits(x);
  const bool negative = (u >> (I::kWidth - 1)) != 0;
  const typename I::U inf = ((typename I::U(1) << (I::kWidth - I::kM - 1)) - 1u) << I::kM;
  const typename I::U mag = u & ((typename I::U(1) << (I::kWidth - 1)) - 1u);
  if (mag > inf) return static_cast<unsigned char>(nan_code<F>(negative));
  unsigned code = mag == inf ? F::kMax + 1u : round_magnitude<F>(x);
  if (code > F::kMax) {
    if (saturate || F::kKind == FINITE) code = F::kMax;
    else if (F::kKind == IEEE) code = F::kMax + 1u;  // inf
    else return static_cast<unsigned char>(nan_code<F>(negative));
  }
  if (F::kKind == FNUZ && code == 0u) return 0u;
  return static_cast<unsigned char>((negative ? F::kSign : 0u) | code);
}

// The float a code of format F stands for.
template <typename F> __device__ __forceinline__ float decode(unsigned code) {
  const bool negative = (code & F::kSign) != 0;
  const unsigned mag = code & (F::kSign - 1u);
  const unsigned sign = negative ? 0x80000000u : 0u;
  if (F::kKind == FNUZ && code == F::kSign) return __uint_as_float(0xffc00000u);
  if (F::kKind == FN && mag == F::kSign - 1u) return __uint_as_float(sign | 0x7fc00000u);
  const unsigned field = mag >> F::kM, mant = mag & ((1u << F::kM) - 1u);
  if (F::kKind == IEEE && field == (1u << F::kE) - 1u)
    return __uint_as_float(sign | (mant ? 0x7fc00000u : 0x7f800000u));
  const int exponent = (field == 0 ? 1 : static_cast<int>(field)) - F::kBias - F::kM;
  const float value = static_cast<float>(field == 0 ? mant : (mant | (1u << F::kM))) *
                      __uint_as_float(static_cast<unsigned>(exponent + 127) << 23);
  return __uint_as_float(__float_as_uint(value) | sign);
}

// What a cast to F makes of x: the nearest value of F (saturate as the cast says), as a float.
template <typename F, bool SATURATE, typename S> __device__ __forceinline__ float to_small(S x) {
  return decode<F>(encode<F>(x, SATURATE));
}

// -- e8m0 ---------------------------------------------------------------------------------------------
// The power of two 2^(code - 127) at or above |x| (up), at or below it (down) or nearest (ties up);
// past 2^127 (or inf) it is 2^127 when saturating, else NaN; below 2^-127 (or zero) 2^-127 when
// saturating, else NaN (up never goes below 2^-127). NaN is 0xFF; the sign is dropped.
template <bool SATURATE, int ROUND> __device__ __forceinline__ unsigned char encode_e8m0(double x) {
  const unsigned long long mag = static_cast<unsigned long long>(__double_as_longlong(x)) & 0x7fffffffffffffffull;
  const unsigned long long inf = 0x7ff0000000000000ull;
  if (mag > inf) return 0xFF;
  if (mag == inf) return SATURATE ? 0xFE : 0xFF;
  if (mag == 0) return SATURATE ? 0x00 : 0xFF;
  const int field = static_cast<int>(mag >> 52);
  const unsigned long long frac = mag & 0xfffffffffffffull;
  int e = field == 0 ? -1075 : field - 1023;  // floor(log2 |x|); a subnormal double is far below 2^-127
  if (ROUND == E8M0_UP) {
    e += (field == 0 || frac != 0) ? 1 : 0;
    e = e < -127 ? -127 : e;
  } else if (ROUND == E8M0_NEAREST) {
    e += (field != 0 && (frac >> 51) != 0) ? 1 : 0;
  } else {
    e = e > 127 ? 127 : e;
  }
  if (e > 127) return SATURATE ? 0xFE : 0xFF;
  if (e < -127) return SATURATE ? 0x00 : 0xFF;
  return static_cast<unsigned char>(e + 127);
}

__device__ __forceinline__ float decode_e8m0(unsigned code) {
  if (code == 0xFFu) return __uint_as_float(0x7fc00000u);
  return code == 0u ? __uint_as_float(0x00400000u) : __uint_as_float(code << 23);  // 2^-127 is subnormal
}

template <bool SATURATE, int ROUND> __device__ __forceinline__ float to_e8m0(double x) {
  return decode_e8m0(encode_e8m0<SATURATE, ROUND>(x));
}

// -- sub-byte integers --------------------------------------------------------------------------------
template <int BITS, bool SIGNED> __device__ __forceinline__ int from_low_bits(unsigned bits) {
  const int v = static_cast<int>(bits & ((1u << BITS) - 1u));
  return SIGNED && (v & (1 << (BITS - 1))) ? v - (1 << BITS) : v;
}

// An integer's low bits, two's complement (as numpy's int64 -> int4 through ml_dtypes).
template <int BITS, bool SIGNED> __device__ __forceinline__ int wrap_int(long long x) {
  return from_low_bits<BITS, SIGNED>(static_cast<unsigned>(static_cast<unsigned long long>(x) & 0xFFull));
}

// A float truncated toward zero; outside the type's range (NaN, inf) 0, as ml_dtypes.
template <int BITS, bool SIGNED, typename S> __device__ __forceinline__ int float_to_int(S x) {
  const S lo = SIGNED ? -S(1 << (BITS - 1)) : S(0);
  const S hi = SIGNED ? S((1 << (BITS - 1)) - 1) : S((1 << BITS) - 1);
  // x in [lo, hi + 1) truncates into range, and so does x in (lo - 1, lo); NaN fails both tests.
  if (!(x > lo - S(1) && x < hi + S(1))) return 0;
  return static_cast<int>(x);
}

// -- storage: reading a value into its compute type, writing one back -----------------------------
// Storing rounds without saturating, as numpy's astype through ml_dtypes (a cast's result is a value
// of the type already, so it is stored exactly).
// What a value is encoded from: double stays double, anything else goes through float.
template <typename C> struct Wide { typedef float type; };
template <> struct Wide<double> { typedef double type; };

template <int E, int M, int B, int K>
__device__ __forceinline__ float to_compute(SmallFloat<E, M, B, K> x) { return decode<SmallFloat<E, M, B, K> >(x.bits); }
__device__ __forceinline__ float to_compute(f8e8m0 x) { return decode_e8m0(x.bits); }
template <int BITS, bool SIGNED>
__device__ __forceinline__ int to_compute(NarrowInt<BITS, SIGNED> x) { return from_low_bits<BITS, SIGNED>(x.bits); }

template <typename T> struct Store;
template <int E, int M, int B, int K> struct Store<SmallFloat<E, M, B, K> > {
  template <typename C> __device__ __forceinline__ static SmallFloat<E, M, B, K> from(C x) {
    SmallFloat<E, M, B, K> r;
    r.bits = encode<SmallFloat<E, M, B, K> >(static_cast<typename Wide<C>::type>(x), false);
    return r;
  }
};
template <> struct Store<f8e8m0> {
  template <typename C> __device__ __forceinline__ static f8e8m0 from(C x) {
    f8e8m0 r;
    r.bits = encode_e8m0<true, E8M0_NEAREST>(static_cast<double>(x));
    return r;
  }
};
template <int BITS, bool SIGNED> struct Store<NarrowInt<BITS, SIGNED> > {
  template <typename C> __device__ __forceinline__ static NarrowInt<BITS, SIGNED> from(C x) {
    NarrowInt<BITS, SIGNED> r;
    r.bits = static_cast<unsigned char>(static_cast<unsigned>(static_cast<int>(x)) & ((1u << BITS) - 1u));
    return r;
  }
};

}  // namespace ember
