// CUDA kernels of rtseg, compiled at run time by NVRTC (rtseg/kernels/cuda.py) with --fmad=false, so every
// rounding is the one written in rtseg_pixel.h and the CPU twins in cpu_kernels.cpp agree bit for bit.
//
// All kernels take element strides (64-bit) for their inputs, write C-contiguous outputs, use one thread per
// output pixel and never synchronise with the host. Entry points are extern "C" so their names are stable.
#include "rtseg_pixel.h"

using rtseg::i64;
using rtseg::u16;
using rtseg::u8;

// ---------------------------------------------------------------------------------------------------------------
// upsample_argmax, pass 1: argmax of every low-resolution pixel, ties to the lowest class.

template <class T>
__device__ void lowres_argmax(const T* __restrict__ logits, i64 sN, i64 sC, i64 sY, i64 sX, int N, int C, int h,
                              int w, int* __restrict__ lowarg) {
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (i64)N * h * w) return;
    const int x = (int)(i % w);
    const int y = (int)((i / w) % h);
    const int n = (int)(i / ((i64)w * h));
    const T* p = logits + n * sN + y * sY + x * sX;
    float best = rtseg::load_logit(p);
    int arg = 0;
    for (int c = 1; c < C; ++c) {
        const float v = rtseg::load_logit(p + c * sC);
        if (v > best) { best = v; arg = c; }
    }
    lowarg[i] = arg;
}

// ---------------------------------------------------------------------------------------------------------------
// upsample_argmax, pass 2: one thread per output pixel. Where the four source pixels share their argmax, that
// class wins (bilinear weights are convex); elsewhere all C channels are interpolated, ties to the lowest class.

template <class T, class L>
__device__ void upsample_argmax(const T* __restrict__ logits, i64 sN, i64 sC, i64 sY, i64 sX, int N, int C, int h,
                                int w, int H, int W, int align_corners, const int* __restrict__ lowarg,
                                L* __restrict__ labels, float* __restrict__ score) {
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (i64)N * H * W) return;
    const int X = (int)(i % W);
    const int Y = (int)((i / W) % H);
    const int n = (int)(i / ((i64)W * H));
    const bool ac = align_corners != 0;
    const rtseg::LinearTap ty = rtseg::torch_linear_tap(Y, h, H, rtseg::torch_area_scale(h, H, ac), ac);
    const rtseg::LinearTap tx = rtseg::torch_linear_tap(X, w, W, rtseg::torch_area_scale(w, W, ac), ac);
    const int* a0 = lowarg + ((i64)n * h + ty.i0) * w;
    const int* a1 = lowarg + ((i64)n * h + ty.i1) * w;
    const int k = a0[tx.i0];
    const T* base = logits + n * sN;
    const i64 o00 = ty.i0 * sY + tx.i0 * sX, o01 = ty.i0 * sY + tx.i1 * sX;
    const i64 o10 = ty.i1 * sY + tx.i0 * sX, o11 = ty.i1 * sY + tx.i1 * sX;
    if (k == a0[tx.i1] && k == a1[tx.i0] && k == a1[tx.i1]) {
        labels[i] = (L)k;
        if (score) {
            const T* p = base + k * sC;
            score[i] = rtseg::bilerp(rtseg::load_logit(p + o00), rtseg::load_logit(p + o01),
                                     rtseg::load_logit(p + o10), rtseg::load_logit(p + o11), tx.l0, tx.l1, ty.l0,
                                     ty.l1);
        }
        return;
    }
    float best = 0.0f;
    int arg = 0;
    for (int c = 0; c < C; ++c) {
        const T* p = base + c * sC;
        const float v = rtseg::bilerp(rtseg::load_logit(p + o00), rtseg::load_logit(p + o01),
                                      rtseg::load_logit(p + o10), rtseg::load_logit(p + o11), tx.l0, tx.l1, ty.l0,
                                      ty.l1);
        if (c == 0 || v > best) { best = v; arg = c; }
    }
    labels[i] = (L)arg;
    if (score) score[i] = best;
}

// ---------------------------------------------------------------------------------------------------------------
// preprocess: BGR uint8 (h, w, 3), byte strides -> OpenCV INTER_LINEAR -> channel order -> normalise -> (1, 3, H, W)

struct Normalisation {
    float mean[3];   // in output channel order
    float stdv[3];
    float pixel_range;
    int rgb;         // 1: output channel 0 is the frame's channel 2
};

__device__ __forceinline__ void store_out(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_out(u16* p, float v) { *p = rtseg::float_to_half(v); }

template <class T>
__device__ void preprocess(const u8* __restrict__ frame, i64 sY, i64 sX, i64 sC, int h, int w, int H, int W,
                           Normalisation norm, T* __restrict__ out) {
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (i64)H * W) return;
    const int X = (int)(i % W);
    const int Y = (int)(i / W);
    const rtseg::CvTap tx = rtseg::cv_linear_tap(X, w, rtseg::cv_scale(w, W), true);
    const rtseg::CvTap ty = rtseg::cv_linear_tap(Y, h, rtseg::cv_scale(h, H), false);
    const u8* r0 = frame + ty.i0 * sY;
    const u8* r1 = frame + ty.i1 * sY;
    const i64 plane = (i64)H * W;
    for (int c = 0; c < 3; ++c) {
        const int s0 = rtseg::cv_horizontal(r0[tx.i0 * sX + c * sC], r0[tx.i1 * sX + c * sC], tx);
        const int s1 = rtseg::cv_horizontal(r1[tx.i0 * sX + c * sC], r1[tx.i1 * sX + c * sC], tx);
        const u8 v = rtseg::cv_vertical(s0, s1, ty);
        const int oc = norm.rgb ? 2 - c : c;
        store_out(out + oc * plane + i, rtseg::normalize_pixel(v, norm.pixel_range, norm.mean[oc], norm.stdv[oc]));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// overlay / colorize. The palette (at most 256 colours, in the frame's channel order) travels by value.
// overlay may write over its own frame (out == frame): those two pointers are not __restrict__, and each thread
// reads its pixel's three channels before writing them.

struct Palette {
    u8 colour[256 * 3];
    int count;
};

template <class L>
__device__ void overlay(const u8* frame, i64 fY, i64 fX, i64 fC, const L* __restrict__ labels, i64 lY, i64 lX, int h,
                        int w, int H, int W, Palette palette, int alpha256, u8* out) {
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (i64)H * W) return;
    const int X = (int)(i % W);
    const int Y = (int)(i / W);
    const i64 l = (i64)labels[rtseg::nearest_index(Y, h, H) * lY + rtseg::nearest_index(X, w, W) * lX];
    const u8* f = frame + Y * fY + X * fX;
    const bool paint = l >= 0 && l < palette.count;
    const int fv[3] = {f[0], f[fC], f[2 * fC]};
    for (int c = 0; c < 3; ++c)
        out[i * 3 + c] = paint ? rtseg::blend_u8(fv[c], palette.colour[l * 3 + c], alpha256) : (u8)fv[c];
}

template <class L>
__device__ void colorize(const L* __restrict__ labels, i64 lY, i64 lX, int H, int W, Palette palette,
                         u8* __restrict__ out) {
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (i64)H * W) return;
    const int X = (int)(i % W);
    const int Y = (int)(i / W);
    const i64 l = (i64)labels[Y * lY + X * lX];
    const bool paint = l >= 0 && l < palette.count;
    for (int c = 0; c < 3; ++c) out[i * 3 + c] = paint ? palette.colour[l * 3 + c] : (u8)0;
}

// ---------------------------------------------------------------------------------------------------------------
// Entry points. Suffixes: f32/f16 = logits or output float type; u8/i32/i64/u16 = label type.

#define RTSEG_LOWRES(SUFFIX, T)                                                                                     \
    extern "C" __global__ void rtseg_lowres_argmax_##SUFFIX(const T* logits, i64 sN, i64 sC, i64 sY, i64 sX, int N, \
                                                            int C, int h, int w, int* lowarg) {                     \
        lowres_argmax<T>(logits, sN, sC, sY, sX, N, C, h, w, lowarg);                                               \
    }
RTSEG_LOWRES(f32, float)
RTSEG_LOWRES(f16, u16)

#define RTSEG_UPSAMPLE(SUFFIX, T, L)                                                                                \
    extern "C" __global__ void rtseg_upsample_argmax_##SUFFIX(const T* logits, i64 sN, i64 sC, i64 sY, i64 sX,      \
                                                              int N, int C, int h, int w, int H, int W,             \
                                                              int align_corners, const int* lowarg, L* labels,      \
                                                              float* score) {                                       \
        upsample_argmax<T, L>(logits, sN, sC, sY, sX, N, C, h, w, H, W, align_corners, lowarg, labels, score);      \
    }
RTSEG_UPSAMPLE(f32_u8, float, u8)
RTSEG_UPSAMPLE(f32_i32, float, int)
RTSEG_UPSAMPLE(f16_u8, u16, u8)
RTSEG_UPSAMPLE(f16_i32, u16, int)

#define RTSEG_PREPROCESS(SUFFIX, T)                                                                                 \
    extern "C" __global__ void rtseg_preprocess_##SUFFIX(const u8* frame, i64 sY, i64 sX, i64 sC, int h, int w,     \
                                                         int H, int W, Normalisation norm, T* out) {                \
        preprocess<T>(frame, sY, sX, sC, h, w, H, W, norm, out);                                                    \
    }
RTSEG_PREPROCESS(f32, float)
RTSEG_PREPROCESS(f16, u16)

#define RTSEG_OVERLAY(SUFFIX, L)                                                                                    \
    extern "C" __global__ void rtseg_overlay_##SUFFIX(const u8* frame, i64 fY, i64 fX, i64 fC, const L* labels,     \
                                                      i64 lY, i64 lX, int h, int w, int H, int W, Palette palette,  \
                                                      int alpha256, u8* out) {                                      \
        overlay<L>(frame, fY, fX, fC, labels, lY, lX, h, w, H, W, palette, alpha256, out);                          \
    }                                                                                                               \
    extern "C" __global__ void rtseg_colorize_##SUFFIX(const L* labels, i64 lY, i64 lX, int H, int W,               \
                                                       Palette palette, u8* out) {                                  \
        colorize<L>(labels, lY, lX, H, W, palette, out);                                                            \
    }
RTSEG_OVERLAY(u8, u8)
RTSEG_OVERLAY(u16, u16)
RTSEG_OVERLAY(i32, int)
RTSEG_OVERLAY(i64, long long)
