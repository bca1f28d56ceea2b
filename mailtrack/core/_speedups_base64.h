/* Base64 bodies of MIME parts (included by _speedups.c only).
 *
 *   b64_lines(data, eol, width) -> bytes or None
 *       mailtrack.core.mime.transfer._base64_pure(data, eol, width): base64.b64encode(data) in lines of width
 *       characters, each ending in eol (b"" for no data); None for a width under 1 (the pure function decides).
 *   b64_decode(body) -> bytes or None
 *       base64.b64decode(body) (binascii.a2b_base64, not strict) for a body of the usual shape: alphabet
 *       characters and line breaks, a complete last quad or one padded with the "=" it needs, then only line
 *       breaks. None for anything else, which binascii reads (or refuses) instead: what this returns, binascii
 *       returns for the same bytes.
 */

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

PyDoc_STRVAR(b64_lines_doc,
"b64_lines(data, eol, width, /)\n--\n\n"
"Base64 of data in lines of width characters, each ending in eol; None for a width under 1:\n"
"mailtrack.core.mime.transfer._base64_pure, in one call.");

static PyObject *
speedups_b64_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    const unsigned char *in;
    const char *eol;
    Py_ssize_t n, eol_size, width, encoded_size, lines, total, i, o = 0, column = 0;
    PyObject *result;
    char *out;
    (void)module;
    if (nargs != 3 || !PyBytes_Check(args[0]) || !PyBytes_Check(args[1]) || !PyLong_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "b64_lines() takes bytes, bytes and an int");
        return NULL;
    }
    width = PyLong_AsSsize_t(args[2]);
    if (width == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (width < 1) {
        Py_RETURN_NONE;
    }
    in = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    n = PyBytes_GET_SIZE(args[0]);
    eol = PyBytes_AS_STRING(args[1]);
    eol_size = PyBytes_GET_SIZE(args[1]);
    if (n > (PY_SSIZE_T_MAX / 4 - 4) || eol_size > 16) {
        PyErr_SetString(PyExc_OverflowError, "b64_lines() input too large");
        return NULL;
    }
    encoded_size = (n + 2) / 3 * 4;
    lines = encoded_size / width + (encoded_size % width != 0); /* (not + width - 1: width may be PY_SSIZE_T_MAX) */
    if (lines > (PY_SSIZE_T_MAX - encoded_size) / (eol_size + 1)) {
        PyErr_SetString(PyExc_OverflowError, "b64_lines() input too large");
        return NULL;
    }
    total = encoded_size + lines * eol_size;
    result = PyBytes_FromStringAndSize(NULL, total);
    if (result == NULL) {
        return NULL;
    }
    out = PyBytes_AS_STRING(result);
#define B64_PUT(c)                                        \
    do {                                                  \
        out[o++] = (c);                                   \
        if (++column == width) {                          \
            memcpy(out + o, eol, (size_t)eol_size);       \
            o += eol_size;                                \
            column = 0;                                   \
        }                                                 \
    } while (0)
    for (i = 0; i + 3 <= n; i += 3) {
        unsigned int triple = ((unsigned int)in[i] << 16) | ((unsigned int)in[i + 1] << 8) | in[i + 2];
        B64_PUT(b64_alphabet[(triple >> 18) & 63]);
        B64_PUT(b64_alphabet[(triple >> 12) & 63]);
        B64_PUT(b64_alphabet[(triple >> 6) & 63]);
        B64_PUT(b64_alphabet[triple & 63]);
    }
    if (n - i == 1) {
        unsigned int triple = (unsigned int)in[i] << 16;
        B64_PUT(b64_alphabet[(triple >> 18) & 63]);
        B64_PUT(b64_alphabet[(triple >> 12) & 63]);
        B64_PUT('=');
        B64_PUT('=');
    }
    else if (n - i == 2) {
        unsigned int triple = ((unsigned int)in[i] << 16) | ((unsigned int)in[i + 1] << 8);
        B64_PUT(b64_alphabet[(triple >> 18) & 63]);
        B64_PUT(b64_alphabet[(triple >> 12) & 63]);
        B64_PUT(b64_alphabet[(triple >> 6) & 63]);
        B64_PUT('=');
    }
#undef B64_PUT
    if (column > 0) { /* the last, short line ends too */
        memcpy(out + o, eol, (size_t)eol_size);
        o += eol_size;
    }
    if (o != total) { /* cannot happen: the size above is exact */
        Py_DECREF(result);
        PyErr_SetString(PyExc_SystemError, "b64_lines(): size mismatch");
        return NULL;
    }
    return result;
}

/* The value of each base64 alphabet byte; 64: a line break (skipped), 65: "=", 255: anything else. */
static unsigned char b64_values[256];
static int b64_values_ready = 0;

static void
b64_fill_values(void)
{
    int i;
    memset(b64_values, 255, sizeof b64_values);
    for (i = 0; i < 64; i++) {
        b64_values[(unsigned char)b64_alphabet[i]] = (unsigned char)i;
    }
    b64_values['\r'] = 64;
    b64_values['\n'] = 64;
    b64_values['='] = 65;
    b64_values_ready = 1;
}

PyDoc_STRVAR(b64_decode_doc,
"b64_decode(body, /)\n--\n\n"
"base64.b64decode(body) for a body of the usual shape (alphabet, line breaks, the padding its last quad needs);\n"
"None for any other, which the caller hands to base64.b64decode.");

static PyObject *
speedups_b64_decode(PyObject *module, PyObject *body)
{
    const unsigned char *in;
    Py_ssize_t n, i, o = 0, quad_pos = 0, pads = 0;
    unsigned int quad = 0;
    PyObject *result;
    unsigned char *out;
    (void)module;
    if (!PyBytes_Check(body)) {
        PyErr_SetString(PyExc_TypeError, "b64_decode() takes bytes");
        return NULL;
    }
    if (!b64_values_ready) {
        b64_fill_values();
    }
    in = (const unsigned char *)PyBytes_AS_STRING(body);
    n = PyBytes_GET_SIZE(body);
    result = PyBytes_FromStringAndSize(NULL, n / 4 * 3 + 3); /* at most 3 bytes per 4 characters */
    if (result == NULL) {
        return NULL;
    }
    out = (unsigned char *)PyBytes_AS_STRING(result);
    for (i = 0; i < n; i++) {
        unsigned char value = b64_values[in[i]];
        if (value < 64) {
            quad = (quad << 6) | value;
            if (++quad_pos == 4) {
                out[o++] = (unsigned char)(quad >> 16);
                out[o++] = (unsigned char)(quad >> 8);
                out[o++] = (unsigned char)quad;
                quad = 0;
                quad_pos = 0;
            }
        }
        else if (value == 65) {
            break; /* the padding: only "=" and line breaks may follow */
        }
        else if (value != 64) {
            goto other_shape;
        }
    }
    for (; i < n; i++) {
        unsigned char value = b64_values[in[i]];
        if (value == 65) {
            pads++;
        }
        else if (value != 64) {
            goto other_shape;
        }
    }
    if (quad_pos == 2 && pads == 2) {
        out[o++] = (unsigned char)(quad >> 4); /* 12 bits: one byte, the last 4 bits dropped */
    }
    else if (quad_pos == 3 && pads == 1) {
        out[o++] = (unsigned char)(quad >> 10); /* 18 bits: two bytes, the last 2 bits dropped */
        out[o++] = (unsigned char)(quad >> 2);
    }
    else if (quad_pos != 0 || pads != 0) {
        goto other_shape;
    }
    if (_PyBytes_Resize(&result, o) < 0) {
        return NULL;
    }
    return result;
other_shape:
    Py_DECREF(result);
    Py_RETURN_NONE;
}
