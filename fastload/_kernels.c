/* fastload._kernels: the CPU kernels of the torch backend, each one pass, GIL released.
 *
 * resample(src, height, width, channels, full_h, full_w, top, left, out, out_h, out_w, flip
 *          [, origin_y, origin_x, image_h, image_w])
 *   Antialiased bilinear resize of an 8-bit RGB or RGBX image (height, width, channels) to
 *   (full_h, full_w), of which only the window of rows [top, top + out_h) and columns
 *   [left, left + out_w) is computed (outside the resized image: zeros) and written as
 *   channels-first uint8 (3, out_h, out_w), mirrored left-right when flip. The arithmetic is
 *   torch's uint8 antialiased bilinear kernel (Pillow-SIMD's scheme: double weights rounded to
 *   int16 at a precision chosen from the largest weight, a horizontal pass to 8 bits, then a
 *   vertical pass), so the pixels are identical to F.interpolate(..., antialias=True) of the
 *   whole image followed by the crop, without the work outside the window. With the four
 *   optional arguments, src is only the region of rows [origin_y, origin_y + height) and
 *   columns [origin_x, ...) of an image_h x image_w image, and the resize is of the whole
 *   image (ValueError when the window reads outside the region): a decoder need only decode
 *   the rows and columns the window reads.
 *
 * normalize_erase(images, out, batch, height, width, scale, bias, boxes, fill)
 *   images: uint8 (batch, 3, height, width), contiguous; out: float32, same shape, writable;
 *   scale, bias: 3 float32 each, out = float(pixel) * scale[c] + bias[c] (two float32
 *   roundings, as numpy's multiply-then-add gives); boxes: int32 (batch, 4) = top, left,
 *   height, width of the erased rectangle in output pixels (height 0: none), or None; fill: 3
 *   float32 written into the rectangles, or None to leave them for the caller (random noise).
 *
 * affine_nearest(src, out, height, width, m0, m1, c0, m3, m4, c1)
 *   Nearest-neighbour inverse affine map of a uint8 (3, height, width) image, fill 0: the
 *   geometric ops of TrivialAugment / RandAugment.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_AVX2_PATH 1 /* compiled for AVX2 as well, chosen at run time */
#endif

/* ---- resample ------------------------------------------------------------------------------ */

typedef struct {
    int *start, *size; /* per window output index: first source index and tap count */
    int16_t *weights;  /* per window output index: ksize weights */
    int ksize, precision;
} filter;

static void free_filter(filter *f) {
    free(f->start);
    free(f->size);
    free(f->weights);
}

static double triangle(double x) {
    x = x < 0 ? -x : x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Weights of output indices [first, first + count) of an in -> out resize, all clipped to
 * [0, out) by the caller. The precision comes from the largest weight over all out indices. */
static int make_filter(int in, int out, int first, int count, filter *f) {
    double scale = (double)in / out;
    double support = scale >= 1.0 ? scale : 1.0;
    double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
    int ksize = (int)ceil(support) * 2 + 1;
    double *w = malloc(sizeof(double) * ksize);
    f->start = malloc(sizeof(int) * (count > 0 ? count : 1));
    f->size = malloc(sizeof(int) * (count > 0 ? count : 1));
    f->weights = malloc(sizeof(int16_t) * ksize * (count > 0 ? count : 1));
    f->ksize = ksize;
    if (!w || !f->start || !f->size || !f->weights) {
        free(w);
        free_filter(f);
        return 0;
    }
    double w_max = 0.0;
    for (int pass = 0; pass < 2; pass++) {
        int lo = pass == 0 ? 0 : first, hi = pass == 0 ? out : first + count;
        for (int i = lo; i < hi; i++) {
            double center = scale * (i + 0.5), total = 0.0;
            int64_t xmin = (int64_t)(center - support + 0.5);
            int64_t xmax = (int64_t)(center + support + 0.5);
            if (xmin < 0)
                xmin = 0;
            if (xmax > in)
                xmax = in;
            int n = (int)(xmax - xmin);
            for (int j = 0; j < n; j++) {
                w[j] = triangle((j + xmin - center + 0.5) * invscale);
                total += w[j];
            }
            for (int j = 0; j < n; j++) {
                if (total != 0.0)
                    w[j] /= total;
                if (pass == 0 && w[j] > w_max)
                    w_max = w[j];
            }
            if (pass == 1) {
                int16_t *k = f->weights + (size_t)(i - first) * ksize;
                double unit = (double)(1 << f->precision);
                for (int j = 0; j < ksize; j++)
                    k[j] = j >= n ? 0 : (int16_t)(w[j] < 0 ? (int)(-0.5 + w[j] * unit)
                                                           : (int)(0.5 + w[j] * unit));
                f->start[i - first] = (int)xmin;
                f->size[i - first] = n;
            }
        }
        if (pass == 0) {
            int p = 0;
            for (; p < 22; p++)
                if ((int)(0.5 + w_max * (1 << (p + 1))) >= (1 << 15))
                    break;
            f->precision = p;
        }
    }
    free(w);
    return 1;
}

static inline uint8_t clip8(int32_t v) { return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v; }

/* One output pixel of the horizontal pass: 4 channels (RGBX) of n taps from p. */
static inline void horizontal_pixel(const uint8_t *p, const int16_t *k, int n, int precision,
                                    uint8_t *dst) {
#ifdef __SSE2__
    const __m128i zero = _mm_setzero_si128();
    __m128i acc = _mm_set1_epi32(1 << (precision - 1));
    int j = 0;
    for (; j + 1 < n; j += 2) {
        __m128i px = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)(p + 4 * j)), zero);
        px = _mm_unpacklo_epi16(px, _mm_srli_si128(px, 8)); /* r0 r1 g0 g1 b0 b1 x0 x1 */
        uint32_t pair = (uint32_t)(uint16_t)k[j] | ((uint32_t)(uint16_t)k[j + 1] << 16);
        acc = _mm_add_epi32(acc, _mm_madd_epi16(px, _mm_set1_epi32((int32_t)pair)));
    }
    if (j < n) {
        int32_t one;
        memcpy(&one, p + 4 * j, 4);
        __m128i px = _mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128(one), zero), zero);
        acc = _mm_add_epi32(acc, _mm_madd_epi16(px, _mm_set1_epi32((uint16_t)k[j])));
    }
    acc = _mm_srai_epi32(acc, precision);
    acc = _mm_packus_epi16(_mm_packs_epi32(acc, acc), zero);
    int32_t packed = _mm_cvtsi128_si32(acc);
    memcpy(dst, &packed, 4);
#else
    int32_t acc[4];
    for (int c = 0; c < 4; c++)
        acc[c] = 1 << (precision - 1);
    for (int j = 0; j < n; j++)
        for (int c = 0; c < 4; c++)
            acc[c] += (int32_t)p[4 * j + c] * k[j];
    for (int c = 0; c < 4; c++)
        dst[c] = clip8(acc[c] >> precision);
#endif
}

#ifdef __SSE2__
/* The horizontal pass of four rows at once (they share the weights). */
static void horizontal_rows4(const uint8_t *const *src, uint8_t *const *dst, const filter *f,
                             Py_ssize_t count, Py_ssize_t c0) {
    const __m128i zero = _mm_setzero_si128();
    const __m128i initial = _mm_set1_epi32(1 << (f->precision - 1));
    for (Py_ssize_t i = 0; i < count; i++) {
        const int16_t *k = f->weights + i * f->ksize;
        Py_ssize_t offset = 4 * (f->start[i] - c0);
        int n = f->size[i], j = 0;
        __m128i acc[4] = {initial, initial, initial, initial};
        for (; j + 1 < n; j += 2) {
            uint32_t pair = (uint32_t)(uint16_t)k[j] | ((uint32_t)(uint16_t)k[j + 1] << 16);
            __m128i kk = _mm_set1_epi32((int32_t)pair);
            for (int r = 0; r < 4; r++) {
                __m128i px = _mm_loadl_epi64((const __m128i *)(src[r] + offset + 4 * j));
                px = _mm_unpacklo_epi8(px, zero);
                px = _mm_unpacklo_epi16(px, _mm_srli_si128(px, 8));
                acc[r] = _mm_add_epi32(acc[r], _mm_madd_epi16(px, kk));
            }
        }
        if (j < n) {
            __m128i kk = _mm_set1_epi32((uint16_t)k[j]);
            for (int r = 0; r < 4; r++) {
                int32_t one;
                memcpy(&one, src[r] + offset + 4 * j, 4);
                __m128i px = _mm_unpacklo_epi8(_mm_cvtsi32_si128(one), zero);
                acc[r] = _mm_add_epi32(acc[r], _mm_madd_epi16(_mm_unpacklo_epi16(px, zero), kk));
            }
        }
        for (int r = 0; r < 4; r++) {
            __m128i v = _mm_srai_epi32(acc[r], f->precision);
            v = _mm_packus_epi16(_mm_packs_epi32(v, v), zero);
            int32_t packed = _mm_cvtsi128_si32(v);
            memcpy(dst[r] + 4 * i, &packed, 4);
        }
    }
}
#endif

/* The vertical pass over bytes [j, bytes) of one output row, plain C (what SIMD leaves). */
static void vertical_rest(const uint8_t *const *rows, const int16_t *k, int n, int precision,
                          Py_ssize_t j, Py_ssize_t bytes, int32_t *restrict acc,
                          uint8_t *restrict dst) {
    for (Py_ssize_t i = j; i < bytes; i++)
        acc[i] = 1 << (precision - 1);
    for (int t = 0; t < n; t++) {
        const uint8_t *restrict r = rows[t];
        int32_t w = k[t];
        for (Py_ssize_t i = j; i < bytes; i++)
            acc[i] += (int32_t)r[i] * w;
    }
    for (Py_ssize_t i = j; i < bytes; i++)
        dst[i] = clip8(acc[i] >> precision);
}

/* Vertical pass of one output row over `bytes` bytes of rows[0..n). */
static void vertical_row(const uint8_t *const *rows, const int16_t *k, int n, int precision,
                         Py_ssize_t bytes, int32_t *restrict acc, uint8_t *restrict dst) {
    Py_ssize_t j = 0;
#ifdef __SSE2__
    const __m128i zero = _mm_setzero_si128(), initial = _mm_set1_epi32(1 << (precision - 1));
    for (; j + 16 <= bytes; j += 16) {
        __m128i a0 = initial, a1 = initial, a2 = initial, a3 = initial;
        int t = 0;
        for (; t + 1 < n; t += 2) {
            __m128i p = _mm_loadu_si128((const __m128i *)(rows[t] + j));
            __m128i q = _mm_loadu_si128((const __m128i *)(rows[t + 1] + j));
            uint32_t pair = (uint32_t)(uint16_t)k[t] | ((uint32_t)(uint16_t)k[t + 1] << 16);
            __m128i kk = _mm_set1_epi32((int32_t)pair);
            __m128i pl = _mm_unpacklo_epi8(p, zero), ph = _mm_unpackhi_epi8(p, zero);
            __m128i ql = _mm_unpacklo_epi8(q, zero), qh = _mm_unpackhi_epi8(q, zero);
            a0 = _mm_add_epi32(a0, _mm_madd_epi16(_mm_unpacklo_epi16(pl, ql), kk));
            a1 = _mm_add_epi32(a1, _mm_madd_epi16(_mm_unpackhi_epi16(pl, ql), kk));
            a2 = _mm_add_epi32(a2, _mm_madd_epi16(_mm_unpacklo_epi16(ph, qh), kk));
            a3 = _mm_add_epi32(a3, _mm_madd_epi16(_mm_unpackhi_epi16(ph, qh), kk));
        }
        if (t < n) {
            __m128i p = _mm_loadu_si128((const __m128i *)(rows[t] + j));
            __m128i kk = _mm_set1_epi32((uint16_t)k[t]);
            __m128i pl = _mm_unpacklo_epi8(p, zero), ph = _mm_unpackhi_epi8(p, zero);
            a0 = _mm_add_epi32(a0, _mm_madd_epi16(_mm_unpacklo_epi16(pl, zero), kk));
            a1 = _mm_add_epi32(a1, _mm_madd_epi16(_mm_unpackhi_epi16(pl, zero), kk));
            a2 = _mm_add_epi32(a2, _mm_madd_epi16(_mm_unpacklo_epi16(ph, zero), kk));
            a3 = _mm_add_epi32(a3, _mm_madd_epi16(_mm_unpackhi_epi16(ph, zero), kk));
        }
        a0 = _mm_srai_epi32(a0, precision);
        a1 = _mm_srai_epi32(a1, precision);
        a2 = _mm_srai_epi32(a2, precision);
        a3 = _mm_srai_epi32(a3, precision);
        __m128i packed = _mm_packus_epi16(_mm_packs_epi32(a0, a1), _mm_packs_epi32(a2, a3));
        _mm_storeu_si128((__m128i *)(dst + j), packed);
    }
#endif
    vertical_rest(rows, k, n, precision, j, bytes, acc, dst);
}

#ifdef HAVE_AVX2_PATH
/* vertical_row, 32 bytes per step: each 128-bit lane does what the SSE2 loop does for its 16
 * bytes (unpack, madd and pack all work within lanes), so the bytes are the same. */
__attribute__((target("avx2"))) static void vertical_row_avx2(
    const uint8_t *const *rows, const int16_t *k, int n, int precision, Py_ssize_t bytes,
    int32_t *restrict acc, uint8_t *restrict dst) {
    const __m256i zero = _mm256_setzero_si256(),
                  initial = _mm256_set1_epi32(1 << (precision - 1));
    Py_ssize_t j = 0;
    for (; j + 32 <= bytes; j += 32) {
        __m256i a0 = initial, a1 = initial, a2 = initial, a3 = initial;
        int t = 0;
        for (; t < n; t += 2) {
            __m256i p = _mm256_loadu_si256((const __m256i *)(rows[t] + j));
            __m256i q = t + 1 < n ? _mm256_loadu_si256((const __m256i *)(rows[t + 1] + j)) : zero;
            uint32_t pair = (uint32_t)(uint16_t)k[t] |
                            (t + 1 < n ? (uint32_t)(uint16_t)k[t + 1] << 16 : 0);
            __m256i kk = _mm256_set1_epi32((int32_t)pair);
            __m256i pl = _mm256_unpacklo_epi8(p, zero), ph = _mm256_unpackhi_epi8(p, zero);
            __m256i ql = _mm256_unpacklo_epi8(q, zero), qh = _mm256_unpackhi_epi8(q, zero);
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_unpacklo_epi16(pl, ql), kk));
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_unpackhi_epi16(pl, ql), kk));
            a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(_mm256_unpacklo_epi16(ph, qh), kk));
            a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(_mm256_unpackhi_epi16(ph, qh), kk));
        }
        a0 = _mm256_srai_epi32(a0, precision);
        a1 = _mm256_srai_epi32(a1, precision);
        a2 = _mm256_srai_epi32(a2, precision);
        a3 = _mm256_srai_epi32(a3, precision);
        __m256i packed = _mm256_packus_epi16(_mm256_packs_epi32(a0, a1), _mm256_packs_epi32(a2, a3));
        _mm256_storeu_si256((__m256i *)(dst + j), packed);
    }
    vertical_rest(rows, k, n, precision, j, bytes, acc, dst);
}

static int use_avx2(void) {
    static int known = -1;
    if (known < 0)
        known = __builtin_cpu_supports("avx2") ? 1 : 0;
    return known;
}
#endif

typedef struct {
    const uint8_t *src;
    Py_ssize_t height, width, channels, full_h, full_w, top, left, out_h, out_w;
    int flip;
    uint8_t *out;
    /* src is rows [origin_y, origin_y + height) and columns [origin_x, origin_x + width) of
     * an image_h x image_w image (a decoded region): the resize is of the whole image */
    Py_ssize_t origin_y, origin_x, image_h, image_w;
} resample_job;

/* Per-thread scratch memory, kept between calls: fresh multi-100-kB buffers per image cost
 * more in page faults than the arithmetic. */
typedef struct {
    void *data;
    size_t size;
} scratch;

static _Thread_local scratch scratch_mid, scratch_row, scratch_acc, scratch_line, scratch_ptrs,
    scratch_flip;

/* dst[x] = src[n - 1 - x] for n RGBX pixels (four at a time: a dword shuffle). */
static void reverse_pixels(const uint32_t *restrict src, uint32_t *restrict dst, Py_ssize_t n) {
    Py_ssize_t x = 0;
#ifdef __SSE2__
    for (; x + 4 <= n; x += 4) {
        __m128i v = _mm_loadu_si128((const __m128i *)(src + n - 4 - x));
        _mm_storeu_si128((__m128i *)(dst + x), _mm_shuffle_epi32(v, 0x1B));
    }
#endif
    for (; x < n; x++)
        dst[x] = src[n - 1 - x];
}

static void *reserve(scratch *s, size_t size) {
    if (size > s->size) {
        void *grown = realloc(s->data, size);
        if (grown == NULL)
            return NULL;
        s->data = grown;
        s->size = size;
    }
    return s->data;
}

/* Returns 0 on success, -1 when out of memory, -2 when the window reads outside src. */
static int run_resample(const resample_job *job) {
    Py_ssize_t oh = job->out_h, ow = job->out_w;
    /* the window clipped to the resized image; everything else is zero */
    Py_ssize_t y0 = job->top < 0 ? 0 : job->top;
    Py_ssize_t y1 = job->top + oh > job->full_h ? job->full_h : job->top + oh;
    Py_ssize_t x0 = job->left < 0 ? 0 : job->left;
    Py_ssize_t x1 = job->left + ow > job->full_w ? job->full_w : job->left + ow;
    if (y0 != job->top || x0 != job->left || y1 != job->top + oh || x1 != job->left + ow)
        memset(job->out, 0, (size_t)(3 * oh * ow));
    if (y1 <= y0 || x1 <= x0)
        return 0;
    Py_ssize_t wn = x1 - x0, hn = y1 - y0, row_bytes = wn * 4;
    int horizontal = job->full_w != job->image_w, vertical = job->full_h != job->image_h;
    filter fx = {0}, fy = {0};
    int status = -1;
    if ((horizontal && !make_filter((int)job->image_w, (int)job->full_w, (int)x0, (int)wn, &fx)) ||
        (vertical && !make_filter((int)job->image_h, (int)job->full_h, (int)y0, (int)hn, &fy)))
        goto done;
    /* the source rows and columns the window reads */
    Py_ssize_t s0 = vertical ? fy.start[0] : y0, s1 = vertical ? s0 : y1;
    for (Py_ssize_t i = 0; vertical && i < hn; i++)
        if (fy.start[i] + fy.size[i] > s1)
            s1 = fy.start[i] + fy.size[i];
    Py_ssize_t c0 = horizontal ? fx.start[0] : x0, c1 = horizontal ? c0 : x1;
    for (Py_ssize_t i = 0; horizontal && i < wn; i++)
        if (fx.start[i] + fx.size[i] > c1)
            c1 = fx.start[i] + fx.size[i];
    Py_ssize_t count = s1 - s0, cols = c1 - c0;
    if (s0 < job->origin_y || s1 > job->origin_y + job->height || c0 < job->origin_x ||
        c1 > job->origin_x + job->width) {
        status = -2; /* the region given does not hold what the window reads */
        goto done;
    }
    /* RGB input: an RGBX copy of the rows and columns read, then as for RGBX */
    const uint8_t *src = job->src + (s0 - job->origin_y) * job->width * job->channels +
                         (c0 - job->origin_x) * job->channels;
    Py_ssize_t src_row = job->width * job->channels;
    if (job->channels == 3) {
        uint8_t *rgbx = reserve(&scratch_row, (size_t)(count * cols * 4));
        if (rgbx == NULL)
            goto done;
        for (Py_ssize_t r = 0; r < count; r++) {
            const uint8_t *s = src + r * src_row;
            uint8_t *d = rgbx + r * cols * 4;
            for (Py_ssize_t x = 0; x < cols; x++) {
                d[4 * x] = s[3 * x];
                d[4 * x + 1] = s[3 * x + 1];
                d[4 * x + 2] = s[3 * x + 2];
                d[4 * x + 3] = 0;
            }
        }
        src = rgbx;
        src_row = cols * 4;
    }
    /* rows[r]: source row s0 + r after the horizontal pass (RGBX, the window's columns) */
    const uint8_t **rows = reserve(&scratch_ptrs, sizeof(*rows) * (size_t)count);
    uint8_t *mid = reserve(&scratch_mid, (size_t)(count * row_bytes));
    int32_t *acc = reserve(&scratch_acc, sizeof(int32_t) * (size_t)row_bytes);
    uint8_t *line = reserve(&scratch_line, (size_t)row_bytes);
    uint8_t *flipped = reserve(&scratch_flip, (size_t)row_bytes);
    if (!rows || !mid || !acc || !line || !flipped)
        goto done;
    Py_ssize_t r = 0;
    if (horizontal) {
#ifdef __SSE2__
        for (; r + 4 <= count; r += 4) {
            const uint8_t *s4[4];
            uint8_t *m4[4];
            for (int q = 0; q < 4; q++) {
                s4[q] = src + (r + q) * src_row;
                rows[r + q] = m4[q] = mid + (r + q) * row_bytes;
            }
            horizontal_rows4(s4, m4, &fx, wn, c0);
        }
#endif
        for (; r < count; r++) {
            uint8_t *m = mid + r * row_bytes;
            for (Py_ssize_t i = 0; i < wn; i++)
                horizontal_pixel(src + r * src_row + 4 * (fx.start[i] - c0),
                                 fx.weights + i * fx.ksize, fx.size[i], fx.precision, m + 4 * i);
            rows[r] = m;
        }
    } else {
        for (; r < count; r++)
            rows[r] = src + r * src_row;
    }
    Py_ssize_t plane = oh * ow;
    for (Py_ssize_t i = 0; i < hn; i++) {
        const uint8_t *src_line;
        if (vertical) {
            void (*pass)(const uint8_t *const *, const int16_t *, int, int, Py_ssize_t,
                         int32_t *restrict, uint8_t *restrict) = vertical_row;
#ifdef HAVE_AVX2_PATH
            if (use_avx2())
                pass = vertical_row_avx2;
#endif
            pass(rows + (fy.start[i] - s0), fy.weights + i * fy.ksize, fy.size[i],
                 fy.precision, row_bytes, acc, line);
            src_line = line;
        } else {
            src_line = rows[y0 + i - s0];
        }
        uint8_t *o = job->out + (y0 + i - job->top) * ow;
        Py_ssize_t col = x0 - job->left;
        if (job->flip) { /* the row's pixels reversed first: the planes are then written forward */
            reverse_pixels((const uint32_t *)src_line, (uint32_t *)flipped, wn);
            src_line = flipped;
            col = ow - col - wn;
        }
        for (Py_ssize_t x = 0; x < wn; x++, col++) { /* vectorized by the compiler */
            o[col] = src_line[4 * x];
            o[plane + col] = src_line[4 * x + 1];
            o[2 * plane + col] = src_line[4 * x + 2];
        }
    }
    status = 0;
done:
    if (horizontal)
        free_filter(&fx);
    if (vertical)
        free_filter(&fy);
    return status;
}

static PyObject *resample(PyObject *self, PyObject *args) {
    Py_buffer src, out;
    resample_job job;
    job.origin_y = job.origin_x = 0;
    job.image_h = job.image_w = -1;
    if (!PyArg_ParseTuple(args, "y*nnnnnnnw*nnp|nnnn:resample", &src, &job.height, &job.width,
                          &job.channels, &job.full_h, &job.full_w, &job.top, &job.left, &out,
                          &job.out_h, &job.out_w, &job.flip, &job.origin_y, &job.origin_x,
                          &job.image_h, &job.image_w))
        return NULL;
    if (job.image_h < 0)
        job.image_h = job.height;
    if (job.image_w < 0)
        job.image_w = job.width;
    PyObject *result = NULL;
    if (job.height <= 0 || job.width <= 0 || (job.channels != 3 && job.channels != 4) ||
        job.full_h <= 0 || job.full_w <= 0 || job.out_h <= 0 || job.out_w <= 0 ||
        job.full_h > 1 << 20 || job.full_w > 1 << 20 || job.origin_y < 0 || job.origin_x < 0 ||
        job.origin_y + job.height > job.image_h || job.origin_x + job.width > job.image_w) {
        PyErr_SetString(PyExc_ValueError, "resample: sizes must be positive, channels 3 or 4, "
                        "and the region inside the image");
        goto release;
    }
    if (src.len != job.height * job.width * job.channels || out.len != 3 * job.out_h * job.out_w) {
        PyErr_Format(PyExc_ValueError, "resample: src has %zd bytes (expected %zd), out %zd "
                     "(expected %zd)", src.len, job.height * job.width * job.channels, out.len,
                     3 * job.out_h * job.out_w);
        goto release;
    }
    job.src = src.buf;
    job.out = out.buf;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = run_resample(&job);
    Py_END_ALLOW_THREADS
    if (status == -2) {
        PyErr_SetString(PyExc_ValueError, "resample: the window reads source pixels outside "
                        "the region given; decode a larger region");
        goto release;
    }
    if (status < 0) {
        PyErr_NoMemory();
        goto release;
    }
    result = Py_None;
    Py_INCREF(result);
release:
    PyBuffer_Release(&src);
    PyBuffer_Release(&out);
    return result;
}

/* ---- normalize_erase ------------------------------------------------------------------------ */

#ifdef __SSE2__
/* 16 bytes at src as four vectors of four int32 each, in order. */
static inline void bytes_to_int32(const uint8_t *src, __m128i q[4]) {
    const __m128i zero = _mm_setzero_si128();
    __m128i v = _mm_loadu_si128((const __m128i *)src);
    __m128i lo = _mm_unpacklo_epi8(v, zero), hi = _mm_unpackhi_epi8(v, zero);
    q[0] = _mm_unpacklo_epi16(lo, zero);
    q[1] = _mm_unpackhi_epi16(lo, zero);
    q[2] = _mm_unpacklo_epi16(hi, zero);
    q[3] = _mm_unpackhi_epi16(hi, zero);
}
#endif

static void normalize_plane(const uint8_t *restrict src, float *restrict dst, Py_ssize_t n,
                            float scale, float bias) {
    Py_ssize_t i = 0;
#ifdef __SSE2__
    /* The float32 batch is 4x the bytes of its uint8 source and is read next by another
     * process: streaming stores write it without first reading each line into the cache. */
    for (; i < n && ((uintptr_t)(dst + i) & 15); i++) {
        float x = (float)src[i] * scale;
        dst[i] = x + bias;
    }
    const __m128 s4 = _mm_set1_ps(scale), b4 = _mm_set1_ps(bias);
    for (; i + 16 <= n; i += 16) {
        __m128i q[4];
        bytes_to_int32(src + i, q);
        for (int k = 0; k < 4; k++) /* a multiply, then an add: what the scalar loop rounds */
            _mm_stream_ps(dst + i + 4 * k, _mm_add_ps(_mm_mul_ps(_mm_cvtepi32_ps(q[k]), s4), b4));
    }
#endif
    for (; i < n; i++) {
        float x = (float)src[i] * scale; /* two statements: no fused multiply-add */
        dst[i] = x + bias;
    }
}

static void fill_box(float *plane, Py_ssize_t height, Py_ssize_t width, const int32_t *box,
                     float value) {
    Py_ssize_t top = box[0], left = box[1], h = box[2], w = box[3];
    if (top < 0 || left < 0 || h <= 0 || w <= 0 || top + h > height || left + w > width)
        return; /* checked by the caller; never write outside the plane */
    for (Py_ssize_t y = top; y < top + h; y++)
        for (Py_ssize_t x = left; x < left + w; x++)
            plane[y * width + x] = value;
}

static int need(Py_buffer *view, Py_ssize_t bytes, const char *name) {
    if (view->len != bytes) {
        PyErr_Format(PyExc_ValueError, "normalize_erase: %s has %zd bytes, expected %zd", name,
                     view->len, bytes);
        return 0;
    }
    return 1;
}

static PyObject *normalize_erase(PyObject *self, PyObject *args) {
    Py_buffer images, out, scale, bias, boxes = {0}, fill = {0};
    Py_ssize_t batch, height, width;
    PyObject *boxes_obj, *fill_obj, *result = NULL;
    if (!PyArg_ParseTuple(args, "y*w*nnny*y*OO:normalize_erase", &images, &out, &batch, &height,
                          &width, &scale, &bias, &boxes_obj, &fill_obj))
        return NULL;
    Py_ssize_t plane = height * width;
    if (boxes_obj != Py_None && PyObject_GetBuffer(boxes_obj, &boxes, PyBUF_SIMPLE) < 0)
        goto release;
    if (fill_obj != Py_None && PyObject_GetBuffer(fill_obj, &fill, PyBUF_SIMPLE) < 0)
        goto release;
    if (batch < 0 || height <= 0 || width <= 0 ||
        !need(&images, batch * 3 * plane, "images") ||
        !need(&out, batch * 3 * plane * (Py_ssize_t)sizeof(float), "out") ||
        !need(&scale, 3 * sizeof(float), "scale") || !need(&bias, 3 * sizeof(float), "bias") ||
        (boxes.obj && !need(&boxes, batch * 4 * (Py_ssize_t)sizeof(int32_t), "boxes")) ||
        (fill.obj && !need(&fill, 3 * sizeof(float), "fill")))
        goto release;
    {
        const uint8_t *src = images.buf;
        float *dst = out.buf;
        const float *s = scale.buf, *b = bias.buf, *f = fill.obj ? fill.buf : NULL;
        const int32_t *box = boxes.obj ? boxes.buf : NULL;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < batch; i++) {
            for (int c = 0; c < 3; c++) {
                Py_ssize_t offset = (i * 3 + c) * plane;
                normalize_plane(src + offset, dst + offset, plane, s[c], b[c]);
                if (box && f) {
#ifdef __SSE2__
                    _mm_sfence(); /* the streamed plane lands before the box is painted */
#endif
                    fill_box(dst + offset, height, width, box + 4 * i, f[c]);
                }
            }
        }
#ifdef __SSE2__
        _mm_sfence(); /* the streamed stores are visible before the batch is handed on */
#endif
        Py_END_ALLOW_THREADS
    }
    result = Py_None;
    Py_INCREF(result);
release:
    PyBuffer_Release(&images);
    PyBuffer_Release(&out);
    PyBuffer_Release(&scale);
    PyBuffer_Release(&bias);
    if (boxes.obj)
        PyBuffer_Release(&boxes);
    if (fill.obj)
        PyBuffer_Release(&fill);
    return result;
}

/* affine_nearest: out[c, y, x] = src[c, sy, sx] with sx = nearbyint(m0 * x + (m1 * y + c0)),
 * sy = nearbyint(m3 * x + (m4 * y + c1)) (round half to even, as grid_sample's nearest), 0
 * where (sx, sy) falls outside the image. */
static PyObject *affine_nearest(PyObject *self, PyObject *args) {
    Py_buffer src, out;
    Py_ssize_t height, width;
    double m0, m1, c0, m3, m4, c1;
    if (!PyArg_ParseTuple(args, "y*w*nndddddd:affine_nearest", &src, &out, &height, &width, &m0,
                          &m1, &c0, &m3, &m4, &c1))
        return NULL;
    Py_ssize_t plane = height * width;
    if (height <= 0 || width <= 0 || src.len != 3 * plane || out.len != 3 * plane) {
        PyErr_SetString(PyExc_ValueError, "affine_nearest: src and out must be uint8 (3, H, W)");
        PyBuffer_Release(&src);
        PyBuffer_Release(&out);
        return NULL;
    }
    const uint8_t *in = src.buf;
    uint8_t *dst = out.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t y = 0; y < height; y++) {
        double rx = m1 * (double)y + c0, ry = m4 * (double)y + c1;
        for (Py_ssize_t x = 0; x < width; x++) {
            double fx = nearbyint(m0 * (double)x + rx), fy = nearbyint(m3 * (double)x + ry);
            Py_ssize_t at = y * width + x;
            if (fx >= 0 && fx < width && fy >= 0 && fy < height) {
                Py_ssize_t from = (Py_ssize_t)fy * width + (Py_ssize_t)fx;
                dst[at] = in[from];
                dst[plane + at] = in[plane + from];
                dst[2 * plane + at] = in[2 * plane + from];
            } else {
                dst[at] = dst[plane + at] = dst[2 * plane + at] = 0;
            }
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&src);
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}


/* png_unfilter: the first `rows` scanlines of an 8-bit, one-byte-a-pixel PNG image (grey or
 * palette), inflated: each `1 + width` bytes (a filter type, then the filtered bytes) -> out,
 * `rows * width` pixels. Filters None, Sub, Up, Average, Paeth (PNG spec 9.2-9.4); a row
 * above the first is zeros. -1 when a filter type is not 0-4 (a damaged file). */
static int unfilter_rows(const uint8_t *in, uint8_t *out, Py_ssize_t rows, Py_ssize_t width) {
    for (Py_ssize_t y = 0; y < rows; y++) {
        const uint8_t *line = in + y * (width + 1) + 1;
        uint8_t kind = in[y * (width + 1)];
        uint8_t *cur = out + y * width;
        const uint8_t *up = y ? cur - width : NULL;
        if (!up && kind == 2)
            kind = 0; /* no row above (zeros): Up is None */
        if (!up && kind == 4)
            kind = 1; /* and Paeth predicts the left pixel: Sub */
        switch (kind) {
        case 0:
            memcpy(cur, line, (size_t)width);
            break;
        case 1:
            cur[0] = line[0];
            for (Py_ssize_t x = 1; x < width; x++) cur[x] = (uint8_t)(line[x] + cur[x - 1]);
            break;
        case 2:
            for (Py_ssize_t x = 0; x < width; x++) cur[x] = (uint8_t)(line[x] + up[x]);
            break;
        case 3:
            for (Py_ssize_t x = 0; x < width; x++) {
                int a = x ? cur[x - 1] : 0, b = up ? up[x] : 0;
                cur[x] = (uint8_t)(line[x] + ((a + b) >> 1));
            }
            break;
        case 4:
            {
                /* branch-free selects where the row above changes: the choice is unpredictable there */
                int a = 0, c = 0;
                for (Py_ssize_t x = 0; x < width; x++) {
                    int b = up[x];
                    if (b == c) {  /* flat above (most of a mask): pa = 0 picks the left pixel */
                        a = (uint8_t)(line[x] + a);
                    } else {
                        int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
                        int pred = pb <= pc ? b : c;
                        pred = (pa <= pb && pa <= pc) ? a : pred;
                        a = (uint8_t)(line[x] + pred);
                    }
                    cur[x] = (uint8_t)a;
                    c = b;
                }
            }
            break;
        default:
            return -1;
        }
    }
    return 0;
}

static PyObject *png_unfilter(PyObject *self, PyObject *args) {
    Py_buffer src, out;
    Py_ssize_t rows, width;
    if (!PyArg_ParseTuple(args, "y*w*nn:png_unfilter", &src, &out, &rows, &width))
        return NULL;
    int failed = 0;
    if (rows < 0 || width <= 0 || src.len < rows * (width + 1) || out.len < rows * width) {
        PyErr_SetString(PyExc_ValueError, "png_unfilter: src needs rows * (width + 1) bytes, "
                                          "out rows * width");
        failed = 1;
    } else {
        int bad;
        Py_BEGIN_ALLOW_THREADS
        bad = unfilter_rows(src.buf, out.buf, rows, width);
        Py_END_ALLOW_THREADS
        if (bad) {
            PyErr_SetString(PyExc_ValueError, "png_unfilter: a scanline's filter type is not 0-4");
            failed = 1;
        }
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&out);
    if (failed)
        return NULL;
    Py_RETURN_NONE;
}

/* dst[j] = src[j] for n bytes widened to int64; the int64 batch (8x the bytes) is read next by
 * another process, so it is written with streaming stores (no read of each line first). */
static void widen_stream(const uint8_t *restrict src, int64_t *restrict dst, Py_ssize_t n) {
    Py_ssize_t j = 0;
#ifdef __SSE2__
    for (; j < n && ((uintptr_t)(dst + j) & 15); j++)
        dst[j] = src[j];
    const __m128i zero = _mm_setzero_si128();
    for (; j + 16 <= n; j += 16) {
        __m128i q[4];
        bytes_to_int32(src + j, q);
        for (int k = 0; k < 4; k++) {
            _mm_stream_si128((__m128i *)(dst + j + 4 * k), _mm_unpacklo_epi32(q[k], zero));
            _mm_stream_si128((__m128i *)(dst + j + 4 * k + 2), _mm_unpackhi_epi32(q[k], zero));
        }
    }
#endif
    for (; j < n; j++)
        dst[j] = src[j];
}

/* mask_crop_nearest: out[i, j] = src[top + ri(i), left + ci(j')] with j' = out_w - 1 - j when
 * flip, ri(i) = min(floor(i * (float)h / out_h), h - 1) (torch's "nearest" in float32, what
 * torchvision v2 does to a Mask after cropping), ci likewise over w. src: uint8 rows of
 * `width` pixels (at least top + h of them); out: uint8 or int64 (out_h, out_w). */
static PyObject *mask_crop_nearest(PyObject *self, PyObject *args) {
    Py_buffer src, out;
    Py_ssize_t rows, width, top, left, h, w, out_h, out_w, itemsize;
    int flip;
    if (!PyArg_ParseTuple(args, "y*nnnnnnw*nnpn:mask_crop_nearest", &src, &rows, &width, &top,
                          &left, &h, &w, &out, &out_h, &out_w, &flip, &itemsize))
        return NULL;
    int bad = rows < 0 || width <= 0 || src.len < rows * width || top < 0 || left < 0 ||
              h <= 0 || w <= 0 || top + h > rows || left + w > width || out_h <= 0 ||
              out_w <= 0 || (itemsize != 1 && itemsize != 8) || out.len < out_h * out_w * itemsize;
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "mask_crop_nearest: the box must lie in src's rows and "
                                          "out must hold out_h * out_w uint8 or int64 values");
        PyBuffer_Release(&src);
        PyBuffer_Release(&out);
        return NULL;
    }
    Py_ssize_t *cols = PyMem_Malloc((size_t)out_w * (sizeof(Py_ssize_t) + 1));
    if (!cols) {
        PyBuffer_Release(&src);
        PyBuffer_Release(&out);
        return PyErr_NoMemory();
    }
    uint8_t *narrow = (uint8_t *)(cols + out_w); /* an int64 row, gathered as bytes first */
    const uint8_t *in = src.buf;
    Py_BEGIN_ALLOW_THREADS
    float sx = (float)w / (float)out_w, sy = (float)h / (float)out_h;
    for (Py_ssize_t j = 0; j < out_w; j++) {
        Py_ssize_t c = w == out_w ? j : (Py_ssize_t)floorf((float)j * sx);
        if (c > w - 1) c = w - 1;
        cols[flip ? out_w - 1 - j : j] = left + c;
    }
    Py_ssize_t prev = -1;
    for (Py_ssize_t i = 0; i < out_h; i++) {
        Py_ssize_t r = h == out_h ? i : (Py_ssize_t)floorf((float)i * sy);
        if (r > h - 1) r = h - 1;
        const uint8_t *line = in + (top + r) * width;
        if (itemsize == 1) {
            uint8_t *dst = (uint8_t *)out.buf + i * out_w;
            if (r == prev) /* an enlarged crop repeats rows: copy the row just written */
                memcpy(dst, dst - out_w, (size_t)out_w);
            else
                for (Py_ssize_t j = 0; j < out_w; j++) dst[j] = line[cols[j]];
        } else {
            if (r != prev) /* a repeated row widens the bytes gathered for the last one */
                for (Py_ssize_t j = 0; j < out_w; j++) narrow[j] = line[cols[j]];
            widen_stream(narrow, (int64_t *)out.buf + i * out_w, out_w);
        }
        prev = r;
    }
#ifdef __SSE2__
    _mm_sfence(); /* the streamed rows are visible before the batch is handed on */
#endif
    Py_END_ALLOW_THREADS
    PyMem_Free(cols);
    PyBuffer_Release(&src);
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"affine_nearest", affine_nearest, METH_VARARGS,
     "affine_nearest(src, out, height, width, m0, m1, c0, m3, m4, c1) -> None\n\n"
     "uint8 (3, H, W) -> out[c, y, x] = src[c, rint(m3 x + (m4 y + c1)), rint(m0 x + (m1 y + c0))]"
     ", 0 outside the image."},
    {"resample", resample, METH_VARARGS,
     "resample(src, height, width, channels, full_h, full_w, top, left, out, out_h, out_w, flip)"
     "\n\nAntialiased bilinear resize (torch's uint8 arithmetic) of an RGB/RGBX image to "
     "(full_h, full_w), computing only the (out_h, out_w) window at (top, left), written "
     "channels-first into out, mirrored when flip."},
    {"normalize_erase", normalize_erase, METH_VARARGS,
     "normalize_erase(images, out, batch, height, width, scale, bias, boxes, fill) -> None\n\n"
     "uint8 (B, 3, H, W) -> float32 x * scale[c] + bias[c], then fill each image's erasing "
     "box (int32 top, left, height, width; height 0: none) with fill[c]. One pass, no GIL."},
    {"png_unfilter", png_unfilter, METH_VARARGS,
     "png_unfilter(src, out, rows, width) -> None\n\n"
     "The first rows scanlines of an inflated 8-bit one-channel PNG (filter byte + width bytes "
     "each) unfiltered into out (rows * width bytes). ValueError on a filter type past 4."},
    {"mask_crop_nearest", mask_crop_nearest, METH_VARARGS,
     "mask_crop_nearest(src, rows, width, top, left, h, w, out, out_h, out_w, flip, itemsize)"
     "\n\nA mask's (top, left, h, w) box resized nearest (torch's float32 arithmetic) to "
     "(out_h, out_w), mirrored when flip, into out (uint8: itemsize 1, int64: 8)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "fastload._kernels",
    "CPU kernels of the torch backend: resample, normalize_erase, affine_nearest, png_unfilter, "
    "mask_crop_nearest.", -1, methods,
};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
