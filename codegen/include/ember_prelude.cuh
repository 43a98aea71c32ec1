// Device helpers every generated kernel includes. Kernels compute low-precision floats
// (f16, bf16, fp8) in f32 and round once per op result, as the reference interpreter does
// (ir/ops/rules.py); NaN propagates through max, min and relu.
#pragma once
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include "ember_cast.cuh"

namespace ember {

typedef long long i64;

// A TMA descriptor (the driver's CUtensorMap, encoded by the runtime for the buffer it describes:
// ir/program.py `tensormap`), passed by value as a __grid_constant__ kernel parameter.
struct alignas(64) TensorMap {
  unsigned long long opaque[16];
};

// -- conversions between storage types and compute types -------------------------------------
__device__ __forceinline__ float to_compute(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_compute(__nv_bfloat16 x) { return __bfloat162float(x); }
// fp8 tensors keep CUDA's types; their conversions are ember_cast.cuh's (bit for bit the interpreter's).
__device__ __forceinline__ float to_compute(__nv_fp8_e4m3 x) { return decode<f8e4m3fn>(x.__x); }
__device__ __forceinline__ float to_compute(__nv_fp8_e5m2 x) { return decode<f8e5m2>(x.__x); }
template <typename T> __device__ __forceinline__ T to_compute(T x) { return x; }

// to_compute, keeping a NaN's sign (and payload, as numpy's f16 -> f32) where the hardware's f16 and
// bf16 conversions make every NaN the canonical one. Elementwise kernels read with it, so a cast of
// NaN to fp8, fp6 or fp4 (whose NaN, or zero, has a sign) matches the interpreter.
__device__ __forceinline__ float to_compute_exact(__half x) {
  const unsigned h = __half_raw(x).x;
  const float f = __half2float(x);
  return f == f ? f : __uint_as_float(((h & 0x8000u) << 16) | 0x7f800000u | ((h & 0x3ffu) << 13));
}
__device__ __forceinline__ float to_compute_exact(__nv_bfloat16 x) {
  return __uint_as_float(static_cast<unsigned>(__nv_bfloat16_raw(x).x) << 16);
}
template <typename T> __device__ __forceinline__ auto to_compute_exact(T x) -> decltype(to_compute(x)) {
  return to_compute(x);
}

template <typename T> struct Store {
  template <typename C> __device__ __forceinline__ static T from(C x) { return static_cast<T>(x); }
};
template <> struct Store<__half> {
  __device__ __forceinline__ static __half from(float x) { return __float2half_rn(x); }
  __device__ __forceinline__ static __half from(double x) { return __double2half(x); }
};
template <> struct Store<__nv_bfloat16> {
  __device__ __forceinline__ static __nv_bfloat16 from(float x) { return __float2bfloat16_rn(x); }
  __device__ __forceinline__ static __nv_bfloat16 from(double x) { return __double2bfloat16(x); }
};
// A value stored to fp8 rounds as the interpreter's astype does (ir/ops/rules.py `in_f32`): past the
// range it is NaN (e4m3fn) or inf (e5m2); a cast has saturated already where its `saturate` says.
template <> struct Store<__nv_fp8_e4m3> {
  template <typename C> __device__ __forceinline__ static __nv_fp8_e4m3 from(C x) {
    __nv_fp8_e4m3 r; r.__x = encode<f8e4m3fn>(static_cast<typename Wide<C>::type>(x), false); return r; }
};
template <> struct Store<__nv_fp8_e5m2> {
  template <typename C> __device__ __forceinline__ static __nv_fp8_e5m2 from(C x) {
    __nv_fp8_e5m2 r; r.__x = encode<f8e5m2>(static_cast<typename Wide<C>::type>(x), false); return r; }
};
template <typename T, typename C> __device__ __forceinline__ T store(C x) { return Store<T>::from(x); }

// Round a compute value to what storage type T can hold (per-op rounding of low precision).
template <typename T, typename C> __device__ __forceinline__ C round_to(C x) {
  return static_cast<C>(to_compute(store<T>(x)));
}

// -- float semantics where C and numpy differ ------------------------------------------------------
template <typename C> __device__ __forceinline__ bool is_nan(C x) { return x != x; }
template <typename C> __device__ __forceinline__ C max_nan(C a, C b) {
  return is_nan(a) ? a : (is_nan(b) ? b : (a > b ? a : b));
}
template <typename C> __device__ __forceinline__ C min_nan(C a, C b) {
  return is_nan(a) ? a : (is_nan(b) ? b : (a < b ? a : b));
}
template <typename C> __device__ __forceinline__ C relu(C a) { return is_nan(a) ? a : (a > C(0) ? a : C(0)); }
template <typename C> __device__ __forceinline__ C sign(C a) {
  return is_nan(a) ? a : (a > C(0) ? C(1) : (a < C(0) ? C(-1) : C(0)));
}

// Integer division truncating towards zero (C's), 0 where the divisor is 0 (undefined in ONNX).
template <typename C> __device__ __forceinline__ C div_int(C a, C b) { return b == C(0) ? C(0) : a / b; }
// Python's %: the result takes the divisor's sign.
template <typename C> __device__ __forceinline__ C floor_mod_int(C a, C b) {
  if (b == C(0)) return C(0);
  C r = a % b;
  return (r != C(0) && ((r < C(0)) != (b < C(0)))) ? r + b : r;
}
__device__ __forceinline__ float floor_mod(float a, float b) {
  float r = fmodf(a, b);
  return (r != 0.f && ((r < 0.f) != (b < 0.f))) ? r + b : r;
}
__device__ __forceinline__ double floor_mod(double a, double b) {
  double r = fmod(a, b);
  return (r != 0.0 && ((r < 0.0) != (b < 0.0))) ? r + b : r;
}
template <typename C> __device__ __forceinline__ C ipow(C base, C e) {
  if (e < C(0)) return C(0);
  C r = C(1);
  while (e > C(0)) { if (e & C(1)) r *= base; base *= base; e >>= 1; }
  return r;
}

// -- activations (float and double) ---------------------------------------------------------------
__device__ __forceinline__ float sigmoid(float x) { return 1.f / (1.f + expf(-x)); }
__device__ __forceinline__ double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
__device__ __forceinline__ float softplus(float x) { return x > 20.f ? x + log1pf(expf(-x)) : log1pf(expf(x)); }
__device__ __forceinline__ double softplus(double x) { return x > 40.0 ? x + log1p(exp(-x)) : log1p(exp(x)); }
__device__ __forceinline__ float gelu_erf(float x) { return 0.5f * x * (1.f + erff(x * 0.70710678118654752f)); }
__device__ __forceinline__ double gelu_erf(double x) { return 0.5 * x * (1.0 + erf(x * 0.70710678118654752)); }
__device__ __forceinline__ float gelu_tanh(float x) {
  return 0.5f * x * (1.f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}
__device__ __forceinline__ double gelu_tanh(double x) {
  return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
}
__device__ __forceinline__ float hardswish(float x) { return x * fminf(fmaxf(x / 6.f + 0.5f, 0.f), 1.f); }
__device__ __forceinline__ double hardswish(double x) { return x * fmin(fmax(x / 6.0 + 0.5, 0.0), 1.0); }

// -- int8 between the heavy ops (ir/ops/int8.py) ---------------------------------------------------
// dequantized(q, s, z) = f32(q - z) * s and requantize(v, sy, zy) = clip(rint(v / sy) + zy, -128, 127)
// (NaN: zy), every step one f32 operation rounded to nearest even, as the interpreter's.
__device__ __forceinline__ float int8_dequantized(int q, float s, int z) { return __fmul_rn((float)(q - z), s); }
__device__ __forceinline__ int int8_requantize(float v, float sy, int zy) {
  float q = __fadd_rn(rintf(__fdiv_rn(v, sy)), (float)zy);
  if (q != q) q = (float)zy;
  return (int)fminf(fmaxf(q, -128.0f), 127.0f);
}
// ember.int8_add: requantize([relu](dequantized(a) + dequantized(b))).
template <bool RELU>
__device__ __forceinline__ int int8_add(int a, float sa, int za, int b, float sb, int zb, float sy, int zy) {
  float v = __fadd_rn(int8_dequantized(a, sa, za), int8_dequantized(b, sb, zb));
  if (RELU) v = v < 0.0f ? 0.0f : v;
  return int8_requantize(v, sy, zy);
}

// -- indexing -------------------------------------------------------------------------------------------
// The offset of output element `i` in an input broadcast to the output: `meta` holds the
// output dims then the input's strides (0 along broadcast axes), `rank` of each.
template <typename Index>
__device__ __forceinline__ Index broadcast_offset(Index i, int rank, const i64* __restrict__ dims,
                                                  const i64* __restrict__ strides) {
  Index off = 0;
  for (int d = rank - 1; d >= 0; --d) {
    const Index size = static_cast<Index>(dims[d]);
    off += (i % size) * static_cast<Index>(strides[d]);
    i /= size;
  }
  return off;
}


// broadcast_offset for 32-bit indices (0 <= i < 2^31) over RANK dims, each division by a dim a
// multiply-high and a shift by the dim's magic numbers (`magic`: per dim m and l, with
// q = (umulhi(i, m) + i) >> l; codegen/kernel_spec.py division_magic), the loop unrolled.
__device__ __forceinline__ unsigned umulhi(unsigned a, unsigned b) {
#ifdef __CUDA_ARCH__
  return __umulhi(a, b);
#else  // the host compile of the prelude (tests/codegen/test_casts.py)
  return static_cast<unsigned>((static_cast<unsigned long long>(a) * b) >> 32);
#endif
}
template <int RANK>
__device__ __forceinline__ int fast_offset(int i, const i64* __restrict__ dims, const i64* __restrict__ magic,
                                           const i64* __restrict__ strides) {
  unsigned u = static_cast<unsigned>(i);
  int off = 0;
#pragma unroll
  for (int d = RANK - 1; d >= 0; --d) {
    const unsigned q = (umulhi(u, static_cast<unsigned>(magic[2 * d])) + u) >> static_cast<unsigned>(magic[2 * d + 1]);
    off += static_cast<int>(u - q * static_cast<unsigned>(dims[d])) * static_cast<int>(strides[d]);
    u = q;
  }
  return off;
}

// -- packs: V consecutive elements moved as one aligned load or store (16 bytes of the widest
// operand of an elementwise kernel; ld.global.v4 and friends) ------------------------------------
template <typename T, int V> struct alignas(sizeof(T) * V) Pack { T v[V]; };
template <int V, typename T> __device__ __forceinline__ bool aligned_to(const T* p) {
  return (reinterpret_cast<unsigned long long>(p) % (sizeof(T) * V)) == 0;
}
template <int V, typename T> __device__ __forceinline__ Pack<T, V> load_pack(const T* __restrict__ p) {
  return *reinterpret_cast<const Pack<T, V>*>(p);
}
template <typename T, int V> __device__ __forceinline__ void store_pack(T* __restrict__ p, const Pack<T, V>& q) {
  *reinterpret_cast<Pack<T, V>*>(p) = q;
}

}  // namespace ember
