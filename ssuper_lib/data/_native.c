/* ssuper_lib.data._native: the two hot loops of the panel loader in C. Built at install time
   where a C compiler and libjpeg-turbo's headers are there (setup.py marks it optional); without it the
   loader takes its pure-Python paths, with the same results (tests/test_datasets.py compares them).

   decode_roi: decode a rectangle of a JPEG with the system's libjpeg-turbo. A panel crop covers about 70%
   of the panel on the synthetic set. Instead of decoding the whole panel, this decodes only the rows of the
   rectangle (rows above it are skipped with jpeg_skip_scanlines, which still entropy-decodes them but does
   no inverse DCT, upsampling or colour conversion; decoding stops after its last row) and only the iMCU
   columns that hold it (jpeg_crop_scanline). Pixels: the settings of simplejpeg's and torchvision's
   decoders (ISLOW inverse DCT, fancy upsampling, block smoothing), so the same pixels, except in the first
   column of column-cropped output, where fancy upsampling has no left neighbour and repeats the edge: the
   caller asks for one pixel more on each side than it reads, so it never reads that column. Warnings
   (corrupt or truncated data) are errors, as in simplejpeg's strict default; the caller then falls back to
   its whole-image decoder, which reports the file.

   hwc_to_unit_chw: uint8 RGB pixels (HWC) -> float32 planes (CHW) in [-1, 1], x / 127.5f - 1.0f, the same
   float32 arithmetic as torch's x.float().div_(127.5).sub_(1.0) (IEEE division is exact-rounded in SIMD
   and scalar code alike). torch's strided HWC -> CHW conversion is the slow part; compiled for AVX2 where
   the CPU has it (a runtime-dispatched clone), this loop takes about a quarter of the time. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <setjmp.h>
#include <stdio.h>
#include <jpeglib.h>

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} roi_error;

static void roi_error_exit(j_common_ptr cinfo) {
    roi_error *err = (roi_error *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->jump, 1);
}

static void roi_emit_message(j_common_ptr cinfo, int level) {
    if (level < 0) { /* a warning: corrupt or truncated data */
        roi_error *err = (roi_error *)cinfo->err;
        (*cinfo->err->format_message)(cinfo, err->message);
        longjmp(err->jump, 1);
    }
}

static PyObject *decode_roi(PyObject *self, PyObject *args) {
    Py_buffer data;
    int x1, y1, x2, y2;
    PyObject *scratch = Py_None;
    if (!PyArg_ParseTuple(args, "y*iiii|O", &data, &x1, &y1, &x2, &y2, &scratch)) return NULL;
    if (scratch != Py_None && !PyByteArray_Check(scratch)) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_TypeError, "decode_roi: scratch must be a bytearray or None");
        return NULL;
    }
    struct jpeg_decompress_struct cinfo;
    roi_error err;
    PyObject *volatile out = NULL;
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = roi_error_exit;
    err.pub.emit_message = roi_emit_message;
    err.message[0] = 0;
    jpeg_create_decompress(&cinfo);
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        Py_XDECREF(out);
        PyBuffer_Release(&data);
        PyErr_Format(PyExc_ValueError, "JPEG: %s", err.message);
        return NULL;
    }
    jpeg_mem_src(&cinfo, (const unsigned char *)data.buf, (unsigned long)data.len);
    jpeg_read_header(&cinfo, TRUE);
    cinfo.out_color_space = JCS_RGB;
    cinfo.dct_method = JDCT_ISLOW;
    cinfo.do_fancy_upsampling = TRUE;
    cinfo.do_block_smoothing = TRUE;
    jpeg_start_decompress(&cinfo);
    const int W = (int)cinfo.output_width, H = (int)cinfo.output_height;
    if (x1 < 0) x1 = 0;
    if (y1 < 0) y1 = 0;
    if (x2 > W) x2 = W;
    if (y2 > H) y2 = H;
    if (x2 <= x1 || y2 <= y1) { /* nothing of the image asked for: the whole image */
        x1 = 0;
        y1 = 0;
        x2 = W;
        y2 = H;
    }
    JDIMENSION xoff = (JDIMENSION)x1, width = (JDIMENSION)(x2 - x1);
    if (xoff > 0 || width < (JDIMENSION)W) jpeg_crop_scanline(&cinfo, &xoff, &width); /* widens to iMCUs */
    const int rows = y2 - y1;
    const size_t stride = (size_t)width * 3;
    const size_t need = stride * (size_t)rows;
    if (scratch != Py_None && (size_t)PyByteArray_GET_SIZE(scratch) >= need) { /* reuse: no page faults */
        Py_INCREF(scratch);
        out = scratch;
    } else {
        out = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)need);
    }
    if (out == NULL) {
        jpeg_destroy_decompress(&cinfo);
        PyBuffer_Release(&data);
        return NULL;
    }
    unsigned char *base = (unsigned char *)PyByteArray_AS_STRING(out);
    if (y1 > 0) jpeg_skip_scanlines(&cinfo, (JDIMENSION)y1);
    JSAMPROW rowptr[32];
    while ((int)cinfo.output_scanline < y2) {
        int n = y2 - (int)cinfo.output_scanline;
        if (n > 32) n = 32;
        for (int i = 0; i < n; i++) rowptr[i] = base + stride * (size_t)((int)cinfo.output_scanline - y1 + i);
        jpeg_read_scanlines(&cinfo, rowptr, (JDIMENSION)n);
    }
    jpeg_abort_decompress(&cinfo); /* the rows below the rectangle are never decoded */
    jpeg_destroy_decompress(&cinfo);
    PyBuffer_Release(&data);
    return Py_BuildValue("Niiiiii", out, (int)xoff, y1, (int)width, rows, W, H);
}

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__)
__attribute__((target_clones("avx2", "default")))
#endif
static void unit_planes(const unsigned char *src, float *d0, float *d1, float *d2, size_t n) {
    for (size_t i = 0; i < n; i++) {
        d0[i] = (float)src[3 * i] / 127.5f - 1.0f;
        d1[i] = (float)src[3 * i + 1] / 127.5f - 1.0f;
        d2[i] = (float)src[3 * i + 2] / 127.5f - 1.0f;
    }
}

static PyObject *hwc_to_unit_chw(PyObject *self, PyObject *args) {
    Py_buffer src, dst;
    if (!PyArg_ParseTuple(args, "y*w*", &src, &dst)) return NULL;
    const size_t n = (size_t)src.len / 3;
    if ((size_t)src.len != 3 * n || (size_t)dst.len != 3 * n * sizeof(float)) {
        PyBuffer_Release(&src);
        PyBuffer_Release(&dst);
        PyErr_SetString(PyExc_ValueError, "hwc_to_unit_chw: expected 3*n uint8 in and 3*n float32 out");
        return NULL;
    }
    float *d = (float *)dst.buf;
    Py_BEGIN_ALLOW_THREADS
    unit_planes((const unsigned char *)src.buf, d, d + n, d + 2 * n, n);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    Py_RETURN_NONE;
}

static PyMethodDef native_methods[] = {
    {"decode_roi", decode_roi, METH_VARARGS,
     "decode_roi(data, x1, y1, x2, y2, scratch=None) -> (buffer, x0, y0, width, height, W, H)\n\n"
     "Decode the rectangle [x1, x2) x [y1, y2) (clamped to the image; the whole image when nothing of it\n"
     "is inside) of the JPEG bytes ``data``. ``buffer`` starts with ``height`` rows of ``width`` RGB pixels\n"
     "from image pixel (x0, y0): x0 <= x1 and width >= x2 - x0, widened to the JPEG's iMCU columns; it is\n"
     "the bytearray ``scratch`` when that is large enough (reused: freshly allocated megabytes cost page\n"
     "faults on every call), else a new bytearray. (W, H) is the image size. ValueError on anything\n"
     "libjpeg-turbo reports."},
    {"hwc_to_unit_chw", hwc_to_unit_chw, METH_VARARGS,
     "hwc_to_unit_chw(src, dst) -> None\n\n"
     "``src``: n RGB pixels, uint8, HWC order (C-contiguous); ``dst``: writable C-contiguous float32 of 3 * n,\n"
     "filled with the R, G, B planes as x / 127.5 - 1."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef native_module = {PyModuleDef_HEAD_INIT, "_native",
                                           "The panel loader's hot loops in C (see _native.c).", -1,
                                           native_methods};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&native_module); }
