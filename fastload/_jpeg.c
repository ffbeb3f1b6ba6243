/* fastload._jpeg: decode only the part of a JPEG a crop needs (libjpeg-turbo).
 *
 * decode_region(data, reduce, top, left, height, width, channels) -> bytearray | None
 *
 * Returns the RGB (channels 3) or RGBX (channels 4: what fastload's resampler reads fastest)
 * pixels (height x width x channels, row-major) of the box (top, left, height,
 * width), given in the coordinates of the image decoded at 1/reduce scale (reduce in 1, 2,
 * 4, 8: JPEG DCT scaling). Rows above the box are skipped without inverse DCT
 * (jpeg_skip_scanlines), rows below it are never decoded, columns outside it (rounded to
 * whole iMCUs) are not transformed or colour-converted (jpeg_crop_scanline). The pixels are
 * the same as a full decode cropped afterwards: the decoded region keeps a margin of a few
 * pixels around the box so that chroma upsampling at its edges sees the same neighbours.
 *
 * Restart markers make the entropy-coded data seekable: a sequential JPEG whose restart
 * interval lines up with its MCU rows (``add_restarts`` writes one every few MCUs, losslessly)
 * is cut, before libjpeg sees it, to the restart segments the box needs: a smaller JPEG of
 * those MCU rows and columns (its frame's size patched, its markers renumbered), so rows above
 * the box and columns beside it are not even Huffman-decoded. The same pixels again: every
 * segment restarts its DC prediction, and the margin keeps the cut edges out of the box.
 *
 * Returns None (the caller then decodes the whole image by other means, which reports errors
 * properly) when the data is not a JPEG libjpeg can turn into RGB (CMYK, for one), when
 * libjpeg warns (corrupt data), or on any libjpeg error. Raises EOFError when the data ends
 * before the rows the box needs (the other decoders would fill them with grey silently). The
 * GIL is released while libjpeg works.
 *
 * add_restarts(data, interval) -> bytes | None: the same JPEG with a restart marker every
 * `interval` MCUs or fewer, lined up with the MCU grid (a divisor of the MCUs per row, or a
 * multiple of it when `interval` is a row or more),
 * its DCT coefficients untouched (what ``jpegtran -restart`` does; a progressive JPEG becomes
 * sequential), Huffman tables optimized, APPn/COM markers kept. None when libjpeg cannot
 * read the data cleanly (the caller keeps the original bytes).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#ifndef LIBJPEG_TURBO_VERSION
#error "fastload._jpeg needs libjpeg-turbo (jpeg_crop_scanline, jpeg_skip_scanlines)"
#endif

#define BLOCK 32 /* rows per jpeg_read_scanlines call */
#define MARGIN 4 /* pixels decoded beyond each side of the box (chroma upsampling context) */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int warned;
    int ended; /* JWRN_JPEG_EOF: the data ran out before the image did */
} error_state;

static void on_error(j_common_ptr cinfo) {
    longjmp(((error_state *)cinfo->err)->jump, 1);
}

static void on_message(j_common_ptr cinfo, int level) {
    if (level < 0) { /* a warning: corrupt data; let the caller's full decoder judge the file */
        ((error_state *)cinfo->err)->warned = 1;
        if (cinfo->err->msg_code == JWRN_JPEG_EOF) /* ...unless the file ends early: the full */
            ((error_state *)cinfo->err)->ended = 1; /* decoders would fill the rest with grey */
    }
}

enum { OK = 0, FALLBACK = 1, NO_MEMORY = 2, ENDED = 3 };

/* ---- seeking by restart markers ---- */

typedef struct {
    size_t sof;          /* offset of the frame marker (0xFF 0xC0/0xC1) */
    size_t scan;         /* first byte of the entropy-coded data */
    unsigned width, height, restart, mcu_w, mcu_h, per_row, rows;
} layout;

/* The frame and scan of a baseline/extended sequential Huffman JPEG whose first scan holds
 * every component and which has a restart interval; 0 for anything else. */
static int read_layout(const unsigned char *d, size_t n, layout *L) {
    size_t p = 2;
    unsigned ncomp = 0, maxh = 1, maxv = 1;
    memset(L, 0, sizeof *L);
    while (p + 4 <= n) {
        if (d[p] != 0xFF)
            return 0;
        unsigned m = d[p + 1];
        if (m == 0xFF) { /* fill byte */
            p++;
            continue;
        }
        size_t len = ((size_t)d[p + 2] << 8) | d[p + 3];
        if (len < 2 || p + 2 + len > n)
            return 0;
        const unsigned char *s = d + p + 4;
        if (m == 0xC0 || m == 0xC1) {
            if (len < 8 || s[0] != 8 || L->sof)
                return 0;
            L->height = (unsigned)s[1] << 8 | s[2];
            L->width = (unsigned)s[3] << 8 | s[4];
            ncomp = s[5];
            if (ncomp == 0 || len < 8 + 3 * (size_t)ncomp)
                return 0;
            for (unsigned i = 0; i < ncomp; i++) {
                unsigned h = s[7 + 3 * i] >> 4, v = s[7 + 3 * i] & 15;
                if (h == 0 || v == 0)
                    return 0;
                maxh = h > maxh ? h : maxh;
                maxv = v > maxv ? v : maxv;
            }
            L->sof = p;
        } else if (m >= 0xC2 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
            return 0; /* progressive, lossless, arithmetic coding: no seeking */
        } else if (m == 0xDD) {
            if (len < 4)
                return 0;
            L->restart = (unsigned)s[0] << 8 | s[1];
        } else if (m == 0xDA) {
            if (len < 8 || !L->sof || s[0] != ncomp || L->restart == 0 || L->height == 0 || L->width == 0)
                return 0;
            L->scan = p + 2 + len;
            L->mcu_w = ncomp == 1 ? 8 : 8 * maxh;
            L->mcu_h = ncomp == 1 ? 8 : 8 * maxv;
            L->per_row = (L->width + L->mcu_w - 1) / L->mcu_w;
            L->rows = (L->height + L->mcu_h - 1) / L->mcu_h;
            return L->per_row % L->restart == 0 || L->restart % L->per_row == 0;
        } else if (m == 0xD8 || m == 0xD9 || (m >= 0xD0 && m <= 0xD7)) {
            return 0;
        }
        p += 2 + len;
    }
    return 0;
}

/* The first `need` restart segments of the scan: start[k], end[k] (exclusive: the marker that
 * ends segment k is not included). Returns how many were found (fewer: the data ends), or 0
 * when a restart marker is out of sequence (segment k must end with RST(k mod 8)): libjpeg
 * places segments by marker number, so a dropped, skipped, swapped or repeated marker makes
 * the count and the numbers disagree, and only the whole data gives the whole decode's pixels. */
static size_t find_segments(const unsigned char *d, size_t n, size_t scan, size_t *start,
                            size_t *end, size_t need) {
    size_t k = 0, p = scan;
    start[0] = scan;
    while (k < need) {
        const unsigned char *f = p < n ? memchr(d + p, 0xFF, n - p) : NULL;
        if (f == NULL)
            return k;
        size_t q = (size_t)(f - d);
        if (q + 1 >= n)
            return k;
        unsigned b = d[q + 1];
        if (b == 0x00) { /* a stuffed 0xFF data byte */
            p = q + 2;
            continue;
        }
        if (b == 0xFF) { /* fill before a marker */
            p = q + 1;
            continue;
        }
        end[k++] = q;
        if (b < 0xD0 || b > 0xD7) /* EOI or another marker: the scan ends here */
            return k;
        if (b != 0xD0 + ((k - 1) & 7))
            return 0;
        if (k < need)
            start[k] = q + 2;
        p = q + 2;
    }
    return k;
}

/* A JPEG of the MCU rows and columns that the (scaled) box plus MARGIN needs, cut from `d` by
 * its restart segments; *dy, *dx: where it starts in the scaled image. NULL when the data
 * cannot be cut that way or the cut would keep everything (decode `d` itself). */
static unsigned char *cut_to_box(const unsigned char *d, size_t n, int reduce, JDIMENSION top,
                                 JDIMENSION left, JDIMENSION height, JDIMENSION width,
                                 size_t *cut_size, JDIMENSION *dy, JDIMENSION *dx) {
    layout L;
    if (!read_layout(d, n, &L))
        return NULL;
    unsigned smh = L.mcu_h / (unsigned)reduce, smw = L.mcu_w / (unsigned)reduce;
    unsigned y_lo = top > MARGIN ? top - MARGIN : 0, x_lo = left > MARGIN ? left - MARGIN : 0;
    unsigned r0 = y_lo / smh, r1 = (top + height + MARGIN + smh - 1) / smh;
    unsigned c0 = x_lo / smw, c1 = (left + width + MARGIN + smw - 1) / smw;
    unsigned R = L.restart, per_seg_row; /* segments per MCU row (0: one spans rows) */
    if (L.per_row % R == 0) {
        per_seg_row = L.per_row / R;
        c0 = c0 / R * R;
        c1 = (c1 + R - 1) / R * R;
    } else { /* a segment is K whole rows */
        unsigned K = R / L.per_row;
        per_seg_row = 0;
        r0 = r0 / K * K;
        r1 = (r1 + K - 1) / K * K;
        c0 = 0;
        c1 = L.per_row;
    }
    r1 = r1 < L.rows ? r1 : L.rows;
    c1 = c1 < L.per_row ? c1 : L.per_row;
    if (r0 == 0 && r1 == L.rows && c0 == 0 && c1 == L.per_row)
        return NULL;
    size_t total = ((size_t)L.rows * L.per_row + R - 1) / R;
    size_t first = ((size_t)r0 * L.per_row + c0) / R;
    size_t last = r1 == L.rows && c1 == L.per_row ? total
                                                 : ((size_t)(r1 - 1) * L.per_row + c1) / R;
    size_t *start = malloc(2 * last * sizeof(size_t));
    if (start == NULL)
        return NULL;
    size_t *end = start + last;
    unsigned char *out = NULL;
    if (find_segments(d, n, L.scan, start, end, last) < last)
        goto done; /* the data ends early or is out of sequence: the usual path judges it */
    /* each segment kept, with the marker written after it, fits in the bytes from the first
     * kept segment's start to the last one's end (the markers between them included), + 2 */
    out = malloc(L.scan + end[last - 1] - start[first] + 2);
    if (out == NULL)
        goto done;
    memcpy(out, d, L.scan);
    unsigned new_h = (r1 * L.mcu_h < L.height ? r1 * L.mcu_h : L.height) - r0 * L.mcu_h;
    unsigned new_w = (c1 * L.mcu_w < L.width ? c1 * L.mcu_w : L.width) - c0 * L.mcu_w;
    out[L.sof + 5] = (unsigned char)(new_h >> 8);
    out[L.sof + 6] = (unsigned char)new_h;
    out[L.sof + 7] = (unsigned char)(new_w >> 8);
    out[L.sof + 8] = (unsigned char)new_w;
    size_t o = L.scan;
    unsigned k = 0;
    for (unsigned r = r0; r < r1; r++) { /* segments that span rows: all of them at once */
        size_t a = per_seg_row ? ((size_t)r * L.per_row + c0) / R : first;
        size_t b = per_seg_row ? ((size_t)r * L.per_row + c1) / R : last;
        for (size_t s = a; s < b; s++) {
            memcpy(out + o, d + start[s], end[s] - start[s]);
            o += end[s] - start[s];
            out[o++] = 0xFF;
            out[o++] = (unsigned char)(0xD0 + (k++ & 7));
        }
        if (!per_seg_row)
            break;
    }
    out[o - 1] = 0xD9; /* the last segment ends the image */
    *cut_size = o;
    *dy = r0 * smh;
    *dx = c0 * smw;
done:
    free(start);
    return out;
}

/* Decode the box into out (height * width * channels bytes). Runs without the GIL. */
static int decode_stream(const unsigned char *data, size_t size, int reduce, JDIMENSION top,
                  JDIMENSION left, JDIMENSION height, JDIMENSION width, int channels,
                  unsigned char *out) {
    struct jpeg_decompress_struct cinfo;
    error_state err;
    unsigned char *volatile row = NULL;
    volatile int status = FALLBACK;

    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = on_error;
    err.pub.emit_message = on_message;
    err.warned = err.ended = 0;
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(row);
        return status == NO_MEMORY ? NO_MEMORY : FALLBACK;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.jpeg_color_space != JCS_YCbCr && cinfo.jpeg_color_space != JCS_GRAYSCALE &&
        cinfo.jpeg_color_space != JCS_RGB)
        goto done; /* CMYK / YCCK: not convertible to RGB by libjpeg */
    cinfo.out_color_space = channels == 4 ? JCS_EXT_RGBX : JCS_RGB;
    cinfo.scale_num = 1;
    cinfo.scale_denom = (unsigned int)reduce;
    jpeg_start_decompress(&cinfo);
    if (top + height > cinfo.output_height || left + width > cinfo.output_width)
        goto done; /* the caller's idea of the image size disagrees with libjpeg's */

    JDIMENSION x0 = left > MARGIN ? left - MARGIN : 0;
    JDIMENSION x1 = left + width + MARGIN < cinfo.output_width ? left + width + MARGIN
                                                               : cinfo.output_width;
    JDIMENSION crop_x = x0, crop_w = x1 - x0;
    if (crop_x > 0 || crop_w < cinfo.output_width)
        jpeg_crop_scanline(&cinfo, &crop_x, &crop_w); /* widened to whole iMCUs */
    JDIMENSION skip = top > MARGIN ? top - MARGIN : 0;
    if (skip > 0 && jpeg_skip_scanlines(&cinfo, skip) != skip)
        goto done;

    /* many rows per jpeg_read_scanlines call: one row per call cost ~20% more per image.
     * Rows that are the output's exactly (no column crop) are decoded in place; otherwise
     * into a block of BLOCK rows, from which the box's columns are copied. */
    JDIMENSION shift = (left - crop_x) * channels;
    int in_place = shift == 0 && crop_w == (JDIMENSION)width;
    if (!in_place) {
        row = malloc((size_t)BLOCK * cinfo.output_width * channels);
        if (row == NULL) {
            status = NO_MEMORY;
            goto done;
        }
    }
    JSAMPROW rows[BLOCK];
    while (cinfo.output_scanline < top + height) {
        JDIMENSION y = cinfo.output_scanline, n = top + height - y;
        if (n > BLOCK)
            n = BLOCK;
        if (in_place && y < top)
            n = top - y < n ? top - y : n; /* margin rows above the box: into `out` as well */
        for (JDIMENSION i = 0; i < n; i++) {
            if (!in_place)
                rows[i] = row + (size_t)i * cinfo.output_width * channels;
            else if (y >= top)
                rows[i] = out + (size_t)(y - top + i) * width * channels;
            else
                rows[i] = out; /* a margin row above the box: the box's first row replaces it */
        }
        JDIMENSION got = jpeg_read_scanlines(&cinfo, rows, n);
        if (got == 0)
            goto done;
        if (!in_place)
            for (JDIMENSION i = 0; i < got; i++)
                if (y + i >= top)
                    memcpy(out + (size_t)(y + i - top) * width * channels,
                           row + (size_t)i * cinfo.output_width * channels + shift,
                           (size_t)width * channels);
    }
    status = err.ended ? ENDED : err.warned ? FALLBACK : OK;
done:
    jpeg_destroy_decompress(&cinfo); /* also aborts a decompression left midway */
    free(row);
    return status;
}

/* decode_stream on the restart segments the box needs when the JPEG has them, else (or when
 * that fails: then the whole data judges) on the whole data. */
static int decode(const unsigned char *data, size_t size, int reduce, JDIMENSION top,
                  JDIMENSION left, JDIMENSION height, JDIMENSION width, int channels,
                  unsigned char *out) {
    size_t cut_size;
    JDIMENSION dy, dx;
    unsigned char *cut = cut_to_box(data, size, reduce, top, left, height, width, &cut_size,
                                    &dy, &dx);
    if (cut != NULL) {
        int status = decode_stream(cut, cut_size, reduce, top - dy, left - dx, height, width,
                                   channels, out);
        free(cut);
        if (status == OK)
            return OK;
    }
    return decode_stream(data, size, reduce, top, left, height, width, channels, out);
}

static PyObject *decode_region(PyObject *self, PyObject *args) {
    Py_buffer data;
    int reduce, top, left, height, width, channels;
    if (!PyArg_ParseTuple(args, "y*iiiiii:decode_region", &data, &reduce, &top, &left, &height,
                          &width, &channels))
        return NULL;
    if ((reduce != 1 && reduce != 2 && reduce != 4 && reduce != 8) || top < 0 || left < 0 ||
        height <= 0 || width <= 0 || (channels != 3 && channels != 4)) {
        PyBuffer_Release(&data);
        return PyErr_Format(PyExc_ValueError,
                            "decode_region: reduce=%d must be 1, 2, 4 or 8, channels=%d 3 or 4, "
                            "and the box (%d, %d, %d, %d) non-empty inside the image", reduce,
                            channels, top, left, height, width);
    }
    PyObject *out = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)height * width * channels);
    if (out == NULL) {
        PyBuffer_Release(&data);
        return NULL;
    }
    unsigned char *pixels = (unsigned char *)PyByteArray_AS_STRING(out);
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = decode((const unsigned char *)data.buf, (size_t)data.len, reduce, (JDIMENSION)top,
                    (JDIMENSION)left, (JDIMENSION)height, (JDIMENSION)width, channels, pixels);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    if (status == OK)
        return out;
    Py_DECREF(out);
    if (status == NO_MEMORY)
        return PyErr_NoMemory();
    if (status == ENDED)
        return PyErr_Format(PyExc_EOFError, "the JPEG data ends before the image does "
                            "(truncated, or a header that declares more rows than the data holds)");
    Py_RETURN_NONE;
}

/* The same coefficients, written with a restart marker every R MCUs: R <= interval, the largest
 * divisor of the MCUs per row or the largest multiple of it. Runs without the GIL; *out is
 * malloc'd by libjpeg. */
static int transcode(const unsigned char *data, size_t size, int interval, unsigned char **out,
                     unsigned long *out_size) {
    struct jpeg_decompress_struct src;
    struct jpeg_compress_struct dst;
    error_state src_err, dst_err;
    volatile int made_dst = 0;
    src.err = jpeg_std_error(&src_err.pub);
    src_err.pub.error_exit = on_error;
    src_err.pub.emit_message = on_message;
    src_err.warned = src_err.ended = 0;
    dst.err = jpeg_std_error(&dst_err.pub);
    dst_err.pub.error_exit = on_error;
    dst_err.pub.emit_message = on_message;
    dst_err.warned = dst_err.ended = 0;
    if (setjmp(src_err.jump) || setjmp(dst_err.jump)) {
        if (made_dst)
            jpeg_destroy_compress(&dst);
        jpeg_destroy_decompress(&src);
        free(*out);
        *out = NULL;
        return FALLBACK;
    }
    jpeg_create_decompress(&src);
    jpeg_mem_src(&src, data, (unsigned long)size);
    for (int m = 0; m < 16; m++)
        jpeg_save_markers(&src, JPEG_APP0 + m, 0xFFFF);
    jpeg_save_markers(&src, JPEG_COM, 0xFFFF);
    jpeg_read_header(&src, TRUE);
    jvirt_barray_ptr *coefficients = jpeg_read_coefficients(&src);
    if (src_err.warned)
        longjmp(src_err.jump, 1); /* corrupt data: keep the original bytes */
    jpeg_create_compress(&dst);
    made_dst = 1;
    jpeg_mem_dest(&dst, out, out_size);
    jpeg_copy_critical_parameters(&src, &dst);
    dst.optimize_coding = TRUE;
    unsigned maxh = 1;
    for (int i = 0; i < src.num_components; i++)
        maxh = (unsigned)src.comp_info[i].h_samp_factor > maxh ? (unsigned)src.comp_info[i].h_samp_factor : maxh;
    unsigned mcu_w = src.num_components == 1 ? 8 : 8 * maxh;
    unsigned per_row = (src.image_width + mcu_w - 1) / mcu_w, R = 1;
    if ((unsigned)interval >= per_row) /* whole rows: a multiple of the row */
        R = (unsigned)interval / per_row * per_row;
    else /* part of a row: a divisor of it, so segments line up with columns */
        for (unsigned r = (unsigned)interval; r >= 1; r--)
            if (per_row % r == 0) {
                R = r;
                break;
            }
    dst.restart_interval = R;
    jpeg_write_coefficients(&dst, coefficients);
    for (jpeg_saved_marker_ptr m = src.marker_list; m != NULL; m = m->next) {
        if (dst.write_JFIF_header && m->marker == JPEG_APP0 && m->data_length >= 5 &&
            memcmp(m->data, "JFIF", 5) == 0)
            continue; /* libjpeg writes its own */
        if (dst.write_Adobe_marker && m->marker == JPEG_APP0 + 14 && m->data_length >= 5 &&
            memcmp(m->data, "Adobe", 5) == 0)
            continue;
        jpeg_write_marker(&dst, m->marker, m->data, m->data_length);
    }
    jpeg_finish_compress(&dst);
    jpeg_finish_decompress(&src);
    jpeg_destroy_compress(&dst);
    jpeg_destroy_decompress(&src);
    return dst_err.warned ? FALLBACK : OK;
}

static PyObject *add_restarts(PyObject *self, PyObject *args) {
    Py_buffer data;
    int interval;
    if (!PyArg_ParseTuple(args, "y*i:add_restarts", &data, &interval))
        return NULL;
    if (interval < 1 || interval > 65535) {
        PyBuffer_Release(&data);
        return PyErr_Format(PyExc_ValueError, "add_restarts: interval=%d must be in [1, 65535]",
                            interval);
    }
    unsigned char *out = NULL;
    unsigned long out_size = 0;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = data.len >= 2 && ((unsigned char *)data.buf)[0] == 0xFF &&
                     ((unsigned char *)data.buf)[1] == 0xD8
                 ? transcode((const unsigned char *)data.buf, (size_t)data.len, interval, &out,
                             &out_size)
                 : FALLBACK;
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    if (status != OK) {
        free(out);
        Py_RETURN_NONE;
    }
    PyObject *result = PyBytes_FromStringAndSize((const char *)out, (Py_ssize_t)out_size);
    free(out);
    return result;
}

/* check_header(data) -> None; ValueError with libjpeg's message when the markers up to the
 * first scan (tables, frame) are malformed: what a decoder would stop on before any pixel. */
static PyObject *check_header(PyObject *self, PyObject *args) {
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "y*:check_header", &data))
        return NULL;
    struct jpeg_decompress_struct cinfo;
    error_state err;
    char message[JMSG_LENGTH_MAX] = "";
    volatile int failed = 0;
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = on_error;
    err.pub.emit_message = on_message;
    err.warned = err.ended = 0;
    if (setjmp(err.jump)) {
        err.pub.format_message((j_common_ptr)&cinfo, message);
        failed = 1;
    } else {
        jpeg_create_decompress(&cinfo);
        jpeg_mem_src(&cinfo, (const unsigned char *)data.buf, (unsigned long)data.len);
        jpeg_read_header(&cinfo, TRUE);
    }
    jpeg_destroy_decompress(&cinfo);
    PyBuffer_Release(&data);
    if (failed)
        return PyErr_Format(PyExc_ValueError, "%s", message);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"check_header", check_header, METH_VARARGS,
     "check_header(data) -> None\n\nValueError naming libjpeg's complaint when the JPEG's "
     "markers before the first scan are malformed."},
    {"add_restarts", add_restarts, METH_VARARGS,
     "add_restarts(data, interval) -> bytes | None\n\nThe same JPEG, losslessly, with a restart "
     "marker every `interval` MCUs or fewer (lined up with the MCU grid): what lets "
     "decode_region skip the entropy-coded data outside a box. None when libjpeg cannot read "
     "the data cleanly."},
    {"decode_region", decode_region, METH_VARARGS,
     "decode_region(data, reduce, top, left, height, width, channels) -> bytearray | None\n\n"
     "RGB(X) pixels of a box of the JPEG decoded at 1/reduce scale, decoding only what the box "
     "needs; None when the caller should decode the whole image another way."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "fastload._jpeg",
    "Region-of-interest JPEG decoding with libjpeg-turbo (see decode_region).", -1, methods,
};

PyMODINIT_FUNC PyInit__jpeg(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddStringConstant(m, "LIBJPEG_TURBO_VERSION",
                                                 Py_STRINGIFY(LIBJPEG_TURBO_VERSION)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
