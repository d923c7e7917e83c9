// CPU twins of the CUDA kernels in kernels.cu: rtseg._cpu_kernels, a pybind11 extension built by setup.py.
//
// The Python face (rtseg/kernels/cpu.py) validates arguments and allocates outputs with NumPy; these functions
// take buffers (any strides for inputs, C-contiguous outputs), release the GIL and split the work across rows
// with std::thread. No torch dependency: a CPU tensor arrives here through .numpy().
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "rtseg_pixel.h"

namespace py = pybind11;
using rtseg::i64;
using rtseg::u16;
using rtseg::u8;

// Hot loops get an AVX2+FMA clone picked at load time (same results: every operation is IEEE and fma32 is a
// correctly rounded fused multiply-add on either path, just a library call without hardware FMA).
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && !defined(__clang__) && defined(__linux__)
#define RTSEG_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define RTSEG_CLONES
#endif

namespace {

// ------------------------------------------------------------------------------------------------------------
// Buffers

struct View {
    char* ptr = nullptr;
    std::vector<i64> shape;    // elements
    std::vector<i64> strides;  // bytes
    std::string format;
    i64 itemsize = 0;
};

View view_of(const py::buffer& obj, bool writable, const char* name) {
    py::buffer_info info = obj.request(writable);
    View v;
    v.ptr = static_cast<char*>(info.ptr);
    v.shape.assign(info.shape.begin(), info.shape.end());
    v.strides.assign(info.strides.begin(), info.strides.end());
    v.format = info.format;
    v.itemsize = info.itemsize;
    if (v.format.size() > 1 && (v.format[0] == '<' || v.format[0] == '=' || v.format[0] == '@'))
        v.format = v.format.substr(1);
    (void)name;
    return v;
}

void require(bool ok, const std::string& message) {
    if (!ok) throw std::invalid_argument(message);
}

void require_c_contiguous(const View& v, const char* name) {
    i64 expected = v.itemsize;
    for (int d = (int)v.shape.size() - 1; d >= 0; --d) {
        if (v.shape[d] > 1) require(v.strides[d] == expected, std::string(name) + " must be C-contiguous");
        expected *= v.shape[d];
    }
}

// Integer kinds accepted for labels; the format characters NumPy's buffer protocol uses.
enum class IntKind { U8, U16, I32, I64 };

IntKind int_kind(const View& v, const char* name) {
    const std::string& f = v.format;
    if (f == "B") return IntKind::U8;
    if (f == "H") return IntKind::U16;
    if ((f == "i" || f == "l") && v.itemsize == 4) return IntKind::I32;
    if ((f == "l" || f == "q") && v.itemsize == 8) return IntKind::I64;
    throw std::invalid_argument(std::string(name) + " must be uint8, uint16, int32 or int64, got format '" + f + "'");
}

i64 load_label(const char* p, IntKind k) {
    switch (k) {
        case IntKind::U8: return *reinterpret_cast<const u8*>(p);
        case IntKind::U16: return *reinterpret_cast<const u16*>(p);
        case IntKind::I32: return *reinterpret_cast<const int32_t*>(p);
        default: return *reinterpret_cast<const int64_t*>(p);
    }
}

// Run fn(begin, end) over [0, n) in contiguous chunks, one per thread; the calling thread takes the first chunk.
template <class Fn>
void parallel_rows(i64 n, int threads, i64 work_per_row, Fn fn) {
    // Thread start-up costs ~20 us: small jobs stay on one thread.
    const i64 min_work_per_thread = 1 << 15;
    i64 useful = std::max<i64>(1, (n * std::max<i64>(work_per_row, 1)) / min_work_per_thread);
    int t = (int)std::max<i64>(1, std::min<i64>({(i64)threads, n, useful}));
    if (t <= 1) {
        fn(0, n);
        return;
    }
    std::vector<std::thread> pool;
    pool.reserve(t - 1);
    i64 chunk = (n + t - 1) / t;
    for (int k = 1; k < t; ++k) {
        i64 b = k * chunk, e = std::min(n, b + chunk);
        if (b < e) pool.emplace_back([=] { fn(b, e); });
    }
    fn(0, std::min(n, chunk));
    for (auto& th : pool) th.join();
}

// ------------------------------------------------------------------------------------------------------------
// upsample_argmax

// Pass 1: copy the low-resolution logits into a channel-last float32 block (N, h, w, C) and take the argmax of
// every low-resolution pixel (ties to the lowest class). h*w*C reads, once.
template <class T>
void gather_lowres(const View& in, float* lowf, int32_t* lowarg, int threads) {
    const i64 N = in.shape[0], C = in.shape[1], h = in.shape[2], w = in.shape[3];
    const i64 sN = in.strides[0], sC = in.strides[1], sY = in.strides[2], sX = in.strides[3];
    parallel_rows(N * h, threads, w * C, [&](i64 b, i64 e) {
        for (i64 r = b; r < e; ++r) {
            const i64 n = r / h, y = r % h;
            const char* row = in.ptr + n * sN + y * sY;
            float* dst = lowf + r * w * C;
            for (i64 x = 0; x < w; ++x)
                for (i64 c = 0; c < C; ++c)
                    dst[x * C + c] = rtseg::load_logit(reinterpret_cast<const T*>(row + c * sC + x * sX));
            for (i64 x = 0; x < w; ++x) {
                const float* v = dst + x * C;
                float best = v[0];
                int32_t arg = 0;
                for (i64 c = 1; c < C; ++c)
                    if (v[c] > best) { best = v[c]; arg = (int32_t)c; }
                lowarg[r * w + x] = arg;
            }
        }
    });
}

// Pass 2 over one output row: where the four source pixels share one argmax the answer is that class (bilinear
// weights are a convex combination, so no other class can win in exact arithmetic); elsewhere all C channels
// are interpolated and compared, ties to the lowest class.
template <class L>
RTSEG_CLONES void upsample_argmax_rows(i64 row_begin, i64 row_end, i64 H, i64 W, i64 C, i64 h, i64 w,
                                       const rtseg::LinearTap* ty, const rtseg::LinearTap* tx, const float* lowf,
                                       const int32_t* lowarg, L* labels, float* score) {
    for (i64 r = row_begin; r < row_end; ++r) {
        const i64 n = r / H, Y = r % H;
        const rtseg::LinearTap t = ty[Y];
        const int32_t* a0 = lowarg + (n * h + t.i0) * w;
        const int32_t* a1 = lowarg + (n * h + t.i1) * w;
        const float* f0 = lowf + (n * h + t.i0) * w * C;
        const float* f1 = lowf + (n * h + t.i1) * w * C;
        L* out = labels + r * W;
        float* sc = score ? score + r * W : nullptr;
        for (i64 X = 0; X < W; ++X) {
            const rtseg::LinearTap u = tx[X];
            const int32_t k = a0[u.i0];
            if (k == a0[u.i1] && k == a1[u.i0] && k == a1[u.i1]) {
                out[X] = (L)k;
                if (sc) sc[X] = rtseg::bilerp(f0[u.i0 * C + k], f0[u.i1 * C + k], f1[u.i0 * C + k],
                                              f1[u.i1 * C + k], u.l0, u.l1, t.l0, t.l1);
                continue;
            }
            const float* p00 = f0 + u.i0 * C;
            const float* p01 = f0 + u.i1 * C;
            const float* p10 = f1 + u.i0 * C;
            const float* p11 = f1 + u.i1 * C;
            float best = rtseg::bilerp(p00[0], p01[0], p10[0], p11[0], u.l0, u.l1, t.l0, t.l1);
            int32_t arg = 0;
            for (i64 c = 1; c < C; ++c) {
                const float v = rtseg::bilerp(p00[c], p01[c], p10[c], p11[c], u.l0, u.l1, t.l0, t.l1);
                if (v > best) { best = v; arg = (int32_t)c; }
            }
            out[X] = (L)arg;
            if (sc) sc[X] = best;
        }
    }
}

void upsample_argmax(const py::buffer& logits_obj, const py::buffer& labels_obj, const py::object& score_obj,
                     bool align_corners, int threads) {
    View in = view_of(logits_obj, false, "logits");
    View lab = view_of(labels_obj, true, "labels");
    require(in.shape.size() == 4, "logits must be (N, C, h, w)");
    require(in.format == "f" || in.format == "e", "logits must be float32 or float16, got format '" + in.format + "'");
    require(lab.shape.size() == 3, "labels must be (N, H, W)");
    require_c_contiguous(lab, "labels");
    const i64 N = in.shape[0], C = in.shape[1], h = in.shape[2], w = in.shape[3];
    const i64 H = lab.shape[1], W = lab.shape[2];
    require(lab.shape[0] == N, "labels batch size differs from logits");
    require(C >= 1 && h >= 1 && w >= 1 && H >= 1 && W >= 1, "empty logits or output size");
    require(H < (1 << 24) && W < (1 << 24) && h < (1 << 24) && w < (1 << 24), "sizes must be below 2^24");
    const bool wide = lab.format == "i" || (lab.format == "l" && lab.itemsize == 4);
    require(lab.format == "B" || wide, "labels must be uint8 or int32");
    require(wide || C <= 255 + 1, "uint8 labels hold at most 256 classes");
    float* score = nullptr;
    if (!score_obj.is_none()) {
        View s = view_of(score_obj.cast<py::buffer>(), true, "score");
        require(s.format == "f" && s.shape == lab.shape, "score must be float32 of the labels' shape");
        require_c_contiguous(s, "score");
        score = reinterpret_cast<float*>(s.ptr);
    }

    std::vector<rtseg::LinearTap> ty(H), tx(W);
    const float sy = rtseg::torch_area_scale((int)h, (int)H, align_corners);
    const float sx = rtseg::torch_area_scale((int)w, (int)W, align_corners);
    for (i64 Y = 0; Y < H; ++Y) ty[Y] = rtseg::torch_linear_tap((int)Y, (int)h, (int)H, sy, align_corners);
    for (i64 X = 0; X < W; ++X) tx[X] = rtseg::torch_linear_tap((int)X, (int)w, (int)W, sx, align_corners);

    py::gil_scoped_release release;
    std::vector<float> lowf((size_t)(N * h * w * C));
    std::vector<int32_t> lowarg((size_t)(N * h * w));
    if (in.format == "f")
        gather_lowres<float>(in, lowf.data(), lowarg.data(), threads);
    else
        gather_lowres<u16>(in, lowf.data(), lowarg.data(), threads);
    parallel_rows(N * H, threads, W * 4, [&](i64 b, i64 e) {
        if (wide)
            upsample_argmax_rows<int32_t>(b, e, H, W, C, h, w, ty.data(), tx.data(), lowf.data(), lowarg.data(),
                                          reinterpret_cast<int32_t*>(lab.ptr), score);
        else
            upsample_argmax_rows<u8>(b, e, H, W, C, h, w, ty.data(), tx.data(), lowf.data(), lowarg.data(),
                                     reinterpret_cast<u8*>(lab.ptr), score);
    });
}

// ------------------------------------------------------------------------------------------------------------
// preprocess: BGR uint8 (h, w, 3) -> OpenCV INTER_LINEAR resize -> channel order -> normalise -> (1, 3, H, W)

template <class T>
T from_float(float v);
template <>
float from_float<float>(float v) { return v; }
template <>
u16 from_float<u16>(float v) { return rtseg::float_to_half(v); }

// Horizontal pass of one source row whose pixels are packed (3 bytes apart, channels adjacent): the common case,
// with constant strides so the compiler keeps everything in registers.
RTSEG_CLONES void horizontal_packed(const u8* src, const rtseg::CvTap* tx, i64 W, int* dst) {
    for (i64 X = 0; X < W; ++X) {
        const rtseg::CvTap u = tx[X];
        const u8* p0 = src + u.i0 * 3;
        const u8* p1 = src + u.i1 * 3;
        dst[X * 3] = rtseg::cv_horizontal(p0[0], p1[0], u);
        dst[X * 3 + 1] = rtseg::cv_horizontal(p0[1], p1[1], u);
        dst[X * 3 + 2] = rtseg::cv_horizontal(p0[2], p1[2], u);
    }
}

// Vertical pass of one output row, all channels at once (a loop without lookups, which the compiler vectorises).
RTSEG_CLONES void vertical_row(const int* s0, const int* s1, const rtseg::CvTap t, i64 n, u8* out) {
    for (i64 i = 0; i < n; ++i) out[i] = rtseg::cv_vertical(s0[i], s1[i], t);
}

template <class T>
void preprocess_impl(const View& in, T* out, i64 H, i64 W, const float* mean, const float* stdv, float pixel_range,
                     bool rgb, int threads) {
    const i64 h = in.shape[0], w = in.shape[1];
    const i64 sY = in.strides[0], sX = in.strides[1], sC = in.strides[2];
    const bool packed = sX == 3 && sC == 1;
    const double scx = rtseg::cv_scale((int)w, (int)W), scy = rtseg::cv_scale((int)h, (int)H);
    std::vector<rtseg::CvTap> tx(W), ty(H);
    for (i64 X = 0; X < W; ++X) tx[X] = rtseg::cv_linear_tap((int)X, (int)w, scx, true);
    for (i64 Y = 0; Y < H; ++Y) ty[Y] = rtseg::cv_linear_tap((int)Y, (int)h, scy, false);
    // The normalised value depends only on the 8-bit resized value: a 256-entry table per output channel, filled
    // with the shared formula, so it equals the CUDA kernel's per-pixel computation.
    T lut[3][256];
    for (int c = 0; c < 3; ++c)
        for (int v = 0; v < 256; ++v)
            lut[c][v] = from_float<T>(rtseg::normalize_pixel((u8)v, pixel_range, mean[c], stdv[c]));
    const i64 plane = H * W;

    parallel_rows(H, threads, W * 3 * 4, [&](i64 b, i64 e) {
        // Horizontal pass of the two source rows an output row needs, cached as OpenCV does: consecutive output
        // rows mostly share their source rows.
        std::vector<int> rows[2] = {std::vector<int>(W * 3), std::vector<int>(W * 3)};
        std::vector<u8> resized(W * 3);  // one output row, channels interleaved as in the frame
        i64 cached[2] = {-1, -1};
        auto horizontal = [&](i64 sy, std::vector<int>& dst) {
            const char* src = in.ptr + sy * sY;
            if (packed) {
                horizontal_packed(reinterpret_cast<const u8*>(src), tx.data(), W, dst.data());
                return;
            }
            for (i64 X = 0; X < W; ++X) {
                const rtseg::CvTap u = tx[X];
                const char* p0 = src + u.i0 * sX;
                const char* p1 = src + u.i1 * sX;
                for (int c = 0; c < 3; ++c)
                    dst[X * 3 + c] = rtseg::cv_horizontal(*(const u8*)(p0 + c * sC), *(const u8*)(p1 + c * sC), u);
            }
        };
        // Fetch source row sy, never evicting `keep` (the other row the current output row needs).
        auto fetch = [&](i64 sy, i64 keep) -> const int* {
            for (int k = 0; k < 2; ++k)
                if (cached[k] == sy) return rows[k].data();
            const int k = cached[0] == keep ? 1 : 0;
            horizontal(sy, rows[k]);
            cached[k] = sy;
            return rows[k].data();
        };
        for (i64 Y = b; Y < e; ++Y) {
            const rtseg::CvTap t = ty[Y];
            const int* s0 = fetch(t.i0, t.i1);
            const int* s1 = fetch(t.i1, t.i0);
            vertical_row(s0, s1, t, W * 3, resized.data());
            for (int c = 0; c < 3; ++c) {
                const int oc = rgb ? 2 - c : c;
                T* dst = out + oc * plane + Y * W;
                const T* table = lut[oc];
                const u8* v = resized.data() + c;
                for (i64 X = 0; X < W; ++X) dst[X] = table[v[X * 3]];
            }
        }
    });
}

void preprocess(const py::buffer& frame_obj, const py::buffer& out_obj, py::sequence mean_seq, py::sequence std_seq,
                float pixel_range, bool rgb, int threads) {
    View in = view_of(frame_obj, false, "frame");
    View out = view_of(out_obj, true, "out");
    require(in.shape.size() == 3 && in.shape[2] == 3 && in.format == "B", "frame must be uint8 (H, W, 3)");
    require(in.shape[0] >= 1 && in.shape[1] >= 1, "empty frame");
    require(out.shape.size() == 4 && out.shape[0] == 1 && out.shape[1] == 3, "out must be (1, 3, H, W)");
    require(out.format == "f" || out.format == "e", "out must be float32 or float16");
    require_c_contiguous(out, "out");
    require(py::len(mean_seq) == 3 && py::len(std_seq) == 3, "mean and std need 3 values");
    float mean[3], stdv[3];
    for (int c = 0; c < 3; ++c) {
        mean[c] = mean_seq[c].cast<float>();
        stdv[c] = std_seq[c].cast<float>();
    }
    const i64 H = out.shape[2], W = out.shape[3];
    require(H >= 1 && W >= 1, "empty output size");
    py::gil_scoped_release release;
    if (out.format == "f")
        preprocess_impl<float>(in, reinterpret_cast<float*>(out.ptr), H, W, mean, stdv, pixel_range, rgb, threads);
    else
        preprocess_impl<u16>(in, reinterpret_cast<u16*>(out.ptr), H, W, mean, stdv, pixel_range, rgb, threads);
}

// ------------------------------------------------------------------------------------------------------------
// overlay and colorize

struct Palette {
    const u8* rgb;  // (K, 3) rows, in the frame's channel order
    i64 count;
};

Palette palette_of(const View& p) {
    require(p.shape.size() == 2 && p.shape[1] == 3 && p.format == "B", "palette must be uint8 (K, 3)");
    require_c_contiguous(p, "palette");
    return Palette{reinterpret_cast<const u8*>(p.ptr), p.shape[0]};
}

// Pass 1 over one output row: the colour each pixel blends towards, its class colour, or the pixel itself where
// its label has no colour (blending a value with itself gives it back exactly: (f * (256 - a) + f * a + 128) >> 8
// is f). Pass 2 blends the whole row in one loop without branches or lookups, which the compiler vectorises;
// the sum fits 16 bits (at most 255 * 256 + 128).
template <class L>
RTSEG_CLONES void overlay_rows(i64 row_begin, i64 row_end, const View& fr, const View& lab, const i64* xs,
                               bool same_columns, i64 h, i64 W, const Palette& p, int alpha256, u8* out) {
    const i64 H = fr.shape[0];
    const bool packed = fr.strides[1] == 3 && fr.strides[2] == 1;
    std::vector<u8> target((size_t)(W * 3)), unpacked(packed ? 0 : (size_t)(W * 3));
    u8* tgt = target.data();
    const uint16_t wc = (uint16_t)alpha256, wf = (uint16_t)(256 - alpha256);
    for (i64 Y = row_begin; Y < row_end; ++Y) {
        const L* lrow = reinterpret_cast<const L*>(lab.ptr + rtseg::nearest_index((int)Y, (int)h, (int)H) * lab.strides[0]);
        const u8* src = reinterpret_cast<const u8*>(fr.ptr + Y * fr.strides[0]);
        if (!packed) {  // any strides: gather the row's pixels first
            for (i64 X = 0; X < W; ++X)
                for (int c = 0; c < 3; ++c)
                    unpacked[X * 3 + c] = *(src + X * fr.strides[1] + c * fr.strides[2]);
            src = unpacked.data();
        }
        for (i64 X = 0; X < W; ++X) {
            const i64 l = (i64)lrow[same_columns ? X : xs[X]];
            const u8* colour = (l >= 0 && l < p.count) ? p.rgb + l * 3 : src + X * 3;
            tgt[X * 3] = colour[0];
            tgt[X * 3 + 1] = colour[1];
            tgt[X * 3 + 2] = colour[2];
        }
        u8* orow = out + Y * W * 3;
        for (i64 i = 0; i < W * 3; ++i)
            orow[i] = (u8)((uint16_t)(src[i] * wf + tgt[i] * wc + 128) >> 8);
    }
}

void overlay(const py::buffer& frame_obj, const py::buffer& labels_obj, const py::buffer& palette_obj,
             int alpha256, const py::buffer& out_obj, int threads) {
    View fr = view_of(frame_obj, false, "frame");
    View lab = view_of(labels_obj, false, "labels");
    View pal = view_of(palette_obj, false, "palette");
    View out = view_of(out_obj, true, "out");
    require(fr.shape.size() == 3 && fr.shape[2] == 3 && fr.format == "B", "frame must be uint8 (H, W, 3)");
    require(lab.shape.size() == 2, "labels must be (h, w)");
    require(out.shape == fr.shape && out.format == "B", "out must be uint8 of the frame's shape");
    require_c_contiguous(out, "out");
    require(alpha256 >= 0 && alpha256 <= 256, "alpha must be in [0, 1]");
    const IntKind kind = int_kind(lab, "labels");
    const Palette p = palette_of(pal);
    const i64 H = fr.shape[0], W = fr.shape[1], h = lab.shape[0], w = lab.shape[1];
    require(h >= 1 && w >= 1, "empty labels");
    const i64 itemsize = lab.itemsize;
    require(lab.strides[1] % itemsize == 0, "labels' column stride must be a whole number of elements");
    py::gil_scoped_release release;
    std::vector<i64> xs(W);  // label column of each output column, in elements
    for (i64 X = 0; X < W; ++X) xs[X] = rtseg::nearest_index((int)X, (int)w, (int)W) * (lab.strides[1] / itemsize);
    const bool same_columns = w == W && lab.strides[1] == itemsize;
    u8* dst = reinterpret_cast<u8*>(out.ptr);
    parallel_rows(H, threads, W * 3, [&](i64 b, i64 e) {
        switch (kind) {
            case IntKind::U8: overlay_rows<u8>(b, e, fr, lab, xs.data(), same_columns, h, W, p, alpha256, dst); break;
            case IntKind::U16: overlay_rows<u16>(b, e, fr, lab, xs.data(), same_columns, h, W, p, alpha256, dst); break;
            case IntKind::I32:
                overlay_rows<int32_t>(b, e, fr, lab, xs.data(), same_columns, h, W, p, alpha256, dst);
                break;
            default: overlay_rows<int64_t>(b, e, fr, lab, xs.data(), same_columns, h, W, p, alpha256, dst);
        }
    });
}

void colorize(const py::buffer& labels_obj, const py::buffer& palette_obj, const py::buffer& out_obj, int threads) {
    View lab = view_of(labels_obj, false, "labels");
    View pal = view_of(palette_obj, false, "palette");
    View out = view_of(out_obj, true, "out");
    require(lab.shape.size() == 2, "labels must be (H, W)");
    require(out.shape.size() == 3 && out.shape[0] == lab.shape[0] && out.shape[1] == lab.shape[1] &&
                out.shape[2] == 3 && out.format == "B",
            "out must be uint8 (H, W, 3)");
    require_c_contiguous(out, "out");
    const IntKind kind = int_kind(lab, "labels");
    const Palette p = palette_of(pal);
    const i64 H = lab.shape[0], W = lab.shape[1];
    py::gil_scoped_release release;
    parallel_rows(H, threads, W * 3, [&](i64 b, i64 e) {
        for (i64 Y = b; Y < e; ++Y) {
            const char* lrow = lab.ptr + Y * lab.strides[0];
            u8* orow = reinterpret_cast<u8*>(out.ptr) + Y * W * 3;
            for (i64 X = 0; X < W; ++X) {
                const i64 l = load_label(lrow + X * lab.strides[1], kind);
                for (int c = 0; c < 3; ++c) orow[X * 3 + c] = (l >= 0 && l < p.count) ? p.rgb[l * 3 + c] : 0;
            }
        }
    });
}

// Half-precision conversions of the shared header, exposed so tests can check them against NumPy.
py::bytes half_roundtrip(const py::buffer& floats_obj) {
    View v = view_of(floats_obj, false, "floats");
    require(v.shape.size() == 1 && v.format == "f", "floats must be a 1-D float32 array");
    std::string out((size_t)v.shape[0] * 6, '\0');
    for (i64 i = 0; i < v.shape[0]; ++i) {
        const float f = *reinterpret_cast<const float*>(v.ptr + i * v.strides[0]);
        const u16 h = rtseg::float_to_half(f);
        const float back = rtseg::half_to_float(h);
        std::memcpy(&out[(size_t)i * 2], &h, 2);
        std::memcpy(&out[(size_t)v.shape[0] * 2 + (size_t)i * 4], &back, 4);
    }
    return py::bytes(out);
}

}  // namespace

PYBIND11_MODULE(_cpu_kernels, m) {
    m.doc() = "CPU twins of rtseg's CUDA kernels (see rtseg.kernels for the Python face).";
    m.def("upsample_argmax", &upsample_argmax, py::arg("logits"), py::arg("labels"), py::arg("score"),
          py::arg("align_corners"), py::arg("threads"));
    m.def("preprocess", &preprocess, py::arg("frame"), py::arg("out"), py::arg("mean"), py::arg("std"),
          py::arg("pixel_range"), py::arg("rgb"), py::arg("threads"));
    m.def("overlay", &overlay, py::arg("frame"), py::arg("labels"), py::arg("palette"), py::arg("alpha256"),
          py::arg("out"), py::arg("threads"));
    m.def("colorize", &colorize, py::arg("labels"), py::arg("palette"), py::arg("out"), py::arg("threads"));
    m.def("half_roundtrip", &half_roundtrip, py::arg("floats"));
}
