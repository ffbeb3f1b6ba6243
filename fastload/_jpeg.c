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
 * Returns None (the caller then decodes the whole image by other means, which reports errors
 * properly) when the data is not a JPEG libjpeg can turn into RGB (CMYK, for one), when
 * libjpeg warns (corrupt data), or on any libjpeg error. Raises EOFError when the data ends
 * before the rows the box needs (the other decoders would fill them with grey silently). The
 * GIL is released while libjpeg works.
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

/* Decode the box into out (height * width * channels bytes). Runs without the GIL. */
static int decode(const unsigned char *data, size_t size, int reduce, JDIMENSION top,
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
