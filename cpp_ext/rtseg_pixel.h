// Per-pixel arithmetic shared by the CUDA kernels (kernels.cu, compiled at run time by NVRTC) and their CPU twins
// (cpu_kernels.cpp, built by setup.py). Both sides include this one header, so a CUDA kernel and its twin compute
// the same float and integer operations in the same order and agree bit for bit.
//
// Rules that keep the two sides identical:
//   * no implicit FMA contraction: NVRTC gets --fmad=false, the host compiler -ffp-contract=off; where PyTorch's
//     own arithmetic is fused, the fusion is written out with fma32();
//   * float division is IEEE (NVRTC's default -prec-div=true; the host never uses -ffast-math);
//   * no standard headers: NVRTC has none, so the few helpers needed are written here.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define RTSEG_HD __host__ __device__ __forceinline__
#else
#define RTSEG_HD inline
#endif

namespace rtseg {

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef long long i64;

// ---------------------------------------------------------------------------------------------------------------
// Scalars

// a * b + c rounded once, as PyTorch's CPU build (compiled with FMA contraction) computes it.
RTSEG_HD float fma32(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
    return __fmaf_rn(a, b, c);
#elif defined(_MSC_VER)
    return fmaf(a, b, c);
#else
    return __builtin_fmaf(a, b, c);
#endif
}

RTSEG_HD u32 float_bits(float f) {
#if defined(__CUDA_ARCH__)
    return (u32)__float_as_uint(f);
#else
    union { float f; u32 u; } v;
    v.f = f;
    return v.u;
#endif
}

RTSEG_HD float bits_float(u32 u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    union { float f; u32 u; } v;
    v.u = u;
    return v.f;
#endif
}

// IEEE binary16 -> binary32 (exact).
RTSEG_HD float half_to_float(u16 h) {
#if defined(__CUDA_ARCH__)
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
#else
    u32 sign = (u32)(h & 0x8000u) << 16;
    u32 e = (h >> 10) & 0x1fu;
    u32 m = h & 0x3ffu;
    if (e == 0) {
        if (m == 0) return bits_float(sign);
        e = 113;  // subnormal: normalise the mantissa
        while (!(m & 0x400u)) { m <<= 1; --e; }
        return bits_float(sign | (e << 23) | ((m & 0x3ffu) << 13));
    }
    if (e == 31) return bits_float(sign | 0x7f800000u | (m << 13));
    return bits_float(sign | ((e + 112) << 23) | (m << 13));
#endif
}

// IEEE binary32 -> binary16, round to nearest even (what numpy's astype(float16) and CUDA's cvt.rn do).
RTSEG_HD u16 float_to_half(float f) {
#if defined(__CUDA_ARCH__)
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
#else
    u32 x = float_bits(f);
    u32 sign = (x >> 16) & 0x8000u;
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) return (u16)(sign | (x > 0x7f800000u ? 0x7e00u : 0x7c00u));  // NaN, inf
    if (x >= 0x47800000u) return (u16)(sign | 0x7c00u);                                 // overflows to inf
    if (x < 0x38800000u) {                                                               // half subnormal or 0
        if (x < 0x33000000u) return (u16)sign;
        u32 e = x >> 23;
        u32 m = (x & 0x7fffffu) | 0x800000u;
        u32 shift = 126 - e;
        u32 q = m >> shift, rem = m & ((1u << shift) - 1), halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (q & 1u))) ++q;
        return (u16)(sign | q);
    }
    u32 r = x - 0x38000000u;  // rebias the exponent from 127 to 15
    u32 q = r >> 13, rem = r & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) ++q;  // a carry into the exponent is still correct
    return (u16)(sign | q);
#endif
}

RTSEG_HD float load_logit(const float* p) { return *p; }
RTSEG_HD float load_logit(const u16* p) { return half_to_float(*p); }

// Round half to even for 0 <= v < 2^30, independent of the FPU rounding mode (OpenCV's cvRound on x86).
RTSEG_HD int round_half_even(float v) {
    float fl = floorf(v);
    float d = v - fl;
    int i = (int)fl;
    if (d > 0.5f || (d == 0.5f && (i & 1))) ++i;
    return i;
}

// ---------------------------------------------------------------------------------------------------------------
// Bilinear taps as PyTorch's upsample_bilinear2d computes them (ATen area_pixel_compute_scale /
// area_pixel_compute_source_index / guard_index_and_lambda, float32 opmath, sizes given so no scale factor).

struct LinearTap {
    int i0, i1;      // the two source indices (equal at the border)
    float l0, l1;    // their weights, l0 = 1 - l1
};

RTSEG_HD float torch_area_scale(int in_size, int out_size, bool align_corners) {
    if (align_corners) return out_size > 1 ? (float)(in_size - 1) / (float)(out_size - 1) : 0.0f;
    return (float)in_size / (float)out_size;
}

RTSEG_HD LinearTap torch_linear_tap(int dst, int in_size, int out_size, float scale, bool align_corners) {
    LinearTap t;
    if (in_size == out_size) {  // PyTorch copies in this case
        t.i0 = t.i1 = dst;
        t.l0 = 1.0f;
        t.l1 = 0.0f;
        return t;
    }
    float src;
    if (align_corners) {
        src = scale * (float)dst;
    } else {
        // PyTorch's CPU build contracts scale * (dst + 0.5) - 0.5 into one FMA; measured bit for bit.
        src = fma32(scale, (float)dst + 0.5f, -0.5f);
        if (src < 0.0f) src = 0.0f;
    }
    int i0 = (int)src;  // src >= 0, so truncation is floor
    if (i0 > in_size - 1) i0 = in_size - 1;
    float l1 = src - (float)i0;
    l1 = l1 < 0.0f ? 0.0f : (l1 > 1.0f ? 1.0f : l1);
    t.i0 = i0;
    t.i1 = i0 + (i0 < in_size - 1 ? 1 : 0);
    t.l1 = l1;
    t.l0 = 1.0f - l1;
    return t;
}

// One interpolated value: rows first (x), then the two rows (y), each as fma(a, w_a, b * w_b). This is the order
// and fusion of PyTorch's vectorised CPU kernel (bit-identical on outputs at least 64 wide; PyTorch's own scalar
// path for very narrow outputs rounds differently and is not reproduced).
RTSEG_HD float bilerp(float v00, float v01, float v10, float v11, float lx0, float lx1, float ly0, float ly1) {
    float top = fma32(v00, lx0, v01 * lx1);
    float bot = fma32(v10, lx0, v11 * lx1);
    return fma32(top, ly0, bot * ly1);
}

// ---------------------------------------------------------------------------------------------------------------
// OpenCV cv::resize(INTER_LINEAR) on 8-bit images: 11-bit fixed-point weights, horizontal pass into int, then the
// SIMD vertical pass (>> 4, 16-bit multiply-high, rounding shift by 2). Matches OpenCV 4.x/5.x bit for bit.

struct CvTap {
    int i0, i1;   // source indices, already clipped to the image
    int w0, w1;   // fixed-point weights, w0 + w1 ~= 2048
};

// scale = 1.0 / ((double)out_size / in_size), exactly as cv::resize derives it.
RTSEG_HD double cv_scale(int in_size, int out_size) { return 1.0 / ((double)out_size / (double)in_size); }

// clamp_edges: OpenCV clamps the horizontal taps (weight 0 outside) but not the vertical ones, whose rows are
// clipped to the image while keeping the fractional weight.
RTSEG_HD CvTap cv_linear_tap(int dst, int in_size, double scale, bool clamp_edges) {
    float f = (float)(((double)dst + 0.5) * scale - 0.5);
    int s = (int)floorf(f);
    f -= (float)s;
    if (clamp_edges) {
        if (s < 0) { f = 0.0f; s = 0; }
        if (s >= in_size - 1) { f = 0.0f; s = in_size - 1; }
    }
    CvTap t;
    t.w0 = round_half_even((1.0f - f) * 2048.0f);
    t.w1 = round_half_even(f * 2048.0f);
    int s1 = s + 1;
    t.i0 = s < 0 ? 0 : (s > in_size - 1 ? in_size - 1 : s);
    t.i1 = s1 < 0 ? 0 : (s1 > in_size - 1 ? in_size - 1 : s1);
    return t;
}

// Horizontal pass: one channel of one source row, weights summing to 2048.
RTSEG_HD int cv_horizontal(int p0, int p1, const CvTap& tx) { return p0 * tx.w0 + p1 * tx.w1; }

// Vertical pass of OpenCV's VResizeLinearVec_32s8u: ((S0 >> 4) * b0 >> 16) + ((S1 >> 4) * b1 >> 16), rounded >> 2.
RTSEG_HD u8 cv_vertical(int s0, int s1, const CvTap& ty) {
    int v = (((s0 >> 4) * ty.w0) >> 16) + (((s1 >> 4) * ty.w1) >> 16);
    v = (v + 2) >> 2;
    return (u8)(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// Normalisation of a resized 8-bit value, in float32 and in this order: (v / pixel_range - mean) / std.
RTSEG_HD float normalize_pixel(u8 v, float pixel_range, float mean, float stdv) {
    return ((float)v / pixel_range - mean) / stdv;
}

// ---------------------------------------------------------------------------------------------------------------
// Overlay

// Nearest source index, centre-aligned, in integers: floor((dst + 0.5) * in / out).
RTSEG_HD int nearest_index(int dst, int in_size, int out_size) {
    return (int)(((i64)(2 * dst + 1) * in_size) / (2 * (i64)out_size));
}

// (frame * (256 - a) + colour * a + 128) >> 8, with a = round(alpha * 256) in [0, 256].
RTSEG_HD u8 blend_u8(int frame, int colour, int alpha256) {
    return (u8)((frame * (256 - alpha256) + colour * alpha256 + 128) >> 8);
}

}  // namespace rtseg
