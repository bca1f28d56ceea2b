/* splice, utf8_length and utf8_encode: string assembly for the rewriters (included by _speedups.c only).
 *
 *   splice(source, edits) -> str or None
 *       mailtrack.core.rewrite.splice.splice for edits already sorted by start, in one allocation and one copy,
 *       or None (the caller then runs the pure splice) for what that function does not do in a straight line:
 *       overlapping or out-of-range spans, and a removed span holding the source's widest characters (the output's
 *       width would then need a scan: a str must be stored at the narrowest width its characters allow).
 *   utf8_length(text) -> int
 *       len(text.encode("utf-8", "surrogatepass")), without encoding.
 *   utf8_encode(text) -> bytes | None
 *       text.encode("utf-8"), or None where that raises (a surrogate): a MIME part written back, in one pass.
 */

/* Whether the 32 bytes at chars hold no character past ASCII: four 8-byte words ORed and masked with each
 * character's bits above 0x7f (MT_ASCII_HIGH_BITS of its width), with no branch per character. utf8_length and
 * utf8_encode go block by block with it, and character by character only through a block that holds one. */
#define MT_ASCII_HIGH_BITS(CHAR_T)                                                                                  \
    (sizeof(CHAR_T) == 1 ? UINT64_C(0x8080808080808080)                                                             \
     : sizeof(CHAR_T) == 2 ? UINT64_C(0xFF80FF80FF80FF80) : UINT64_C(0xFFFFFF80FFFFFF80))

static inline int
ascii_block(const void *chars, uint64_t high_bits)
{
    uint64_t words[4];
    memcpy(words, chars, 32);
    return ((words[0] | words[1] | words[2] | words[3]) & high_bits) == 0;
}

/* The widest width class of text (PyUnicode_MAX_CHAR_VALUE: 127, 255, 65535, 1114111) below which every character
 * of text[start:end] is: 1 if all are, 0 if one is at text's own width. */
static int
span_is_narrower(PyObject *text, Py_ssize_t start, Py_ssize_t end)
{
    Py_UCS4 level = PyUnicode_MAX_CHAR_VALUE(text), floor;
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t i;
    floor = level == 127 ? 0x80 : level == 255 ? 0x80 : level == 65535 ? 0x100 : 0x10000;
    if (level == 127) {
        return 1;
    }
    for (i = start; i < end; i++) {
        if (PyUnicode_READ(kind, data, i) >= floor) {
            return 0;
        }
    }
    return 1;
}

PyDoc_STRVAR(splice_doc,
"splice(source, edits, /)\n--\n\n"
"mailtrack.core.rewrite.splice.splice(source, edits) for edits sorted by start, or None where the\n"
"spans overlap, fall outside source, or remove its widest characters (the pure function then runs).");

static PyObject *
speedups_splice(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *source, *edits, *result;
    Py_ssize_t length, count, i, pos = 0, total = 0, at = 0;
    Py_UCS4 maxchar;
    (void)module;

    if (nargs != 2 || !PyUnicode_Check(args[0]) || !PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "splice() takes a str and a list of (start, end, str) edits");
        return NULL;
    }
    source = args[0], edits = args[1];
    length = PyUnicode_GET_LENGTH(source);
    count = PyList_GET_SIZE(edits);
    maxchar = PyUnicode_MAX_CHAR_VALUE(source);
    for (i = 0; i < count; i++) {
        PyObject *edit = PyList_GET_ITEM(edits, i), *replacement;
        Py_ssize_t start, end;
        if (!PyTuple_Check(edit) || PyTuple_GET_SIZE(edit) != 3 || !PyLong_CheckExact(PyTuple_GET_ITEM(edit, 0)) ||
            !PyLong_CheckExact(PyTuple_GET_ITEM(edit, 1)) || !PyUnicode_Check(PyTuple_GET_ITEM(edit, 2))) {
            Py_RETURN_NONE;
        }
        start = PyLong_AsSsize_t(PyTuple_GET_ITEM(edit, 0));
        end = PyLong_AsSsize_t(PyTuple_GET_ITEM(edit, 1));
        if ((start == -1 || end == -1) && PyErr_Occurred()) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        if (start < pos || end < start || end > length || !span_is_narrower(source, start, end)) {
            Py_RETURN_NONE;
        }
        replacement = PyTuple_GET_ITEM(edit, 2);
        if (PyUnicode_MAX_CHAR_VALUE(replacement) > maxchar) {
            maxchar = PyUnicode_MAX_CHAR_VALUE(replacement);
        }
        total += (start - pos) + PyUnicode_GET_LENGTH(replacement);
        pos = end;
    }
    total += length - pos;
    result = PyUnicode_New(total, maxchar);
    if (result == NULL) {
        return NULL;
    }
    pos = 0;
    for (i = 0; i < count; i++) {
        PyObject *edit = PyList_GET_ITEM(edits, i), *replacement = PyTuple_GET_ITEM(edit, 2);
        Py_ssize_t start = PyLong_AsSsize_t(PyTuple_GET_ITEM(edit, 0)), end = PyLong_AsSsize_t(PyTuple_GET_ITEM(edit, 1));
        if (PyUnicode_CopyCharacters(result, at, source, pos, start - pos) < 0 ||
            PyUnicode_CopyCharacters(result, at + start - pos, replacement, 0, PyUnicode_GET_LENGTH(replacement)) < 0) {
            Py_DECREF(result);
            return NULL;
        }
        at += start - pos + PyUnicode_GET_LENGTH(replacement);
        pos = end;
    }
    if (PyUnicode_CopyCharacters(result, at, source, pos, length - pos) < 0) {
        Py_DECREF(result);
        return NULL;
    }
    return result;
}

PyDoc_STRVAR(utf8_length_doc,
"utf8_length(text, /)\n--\n\n"
"len(text.encode(\"utf-8\", \"surrogatepass\")), counted without encoding.");

static PyObject *
speedups_utf8_length(PyObject *module, PyObject *text)
{
    Py_ssize_t i, n, size;
    int kind;
    const void *data;
    (void)module;
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "utf8_length() argument must be str, not %.100s", Py_TYPE(text)->tp_name);
        return NULL;
    }
    n = size = PyUnicode_GET_LENGTH(text);
    if (PyUnicode_IS_ASCII(text)) {
        return PyLong_FromSsize_t(n);
    }
    kind = PyUnicode_KIND(text);
    data = PyUnicode_DATA(text);
    /* 32 bytes at a time where no character is past ASCII (most of any body: ascii_block); a block holding one is
     * counted character by character. */
#define MT_UTF8_EXTRA(c) (((c) >= 0x80) + ((c) >= 0x800) + ((c) >= 0x10000))
#define MT_UTF8_COUNT(CHAR_T)                                                                                       \
    do {                                                                                                            \
        const CHAR_T *chars = (const CHAR_T *)data;                                                                 \
        const Py_ssize_t per_block = 32 / (Py_ssize_t)sizeof(CHAR_T);                                               \
        for (i = 0; i + per_block <= n; i += per_block) {                                                           \
            if (!ascii_block(chars + i, MT_ASCII_HIGH_BITS(CHAR_T))) {                                              \
                Py_ssize_t j;                                                                                       \
                for (j = i; j < i + per_block; j++) {                                                               \
                    size += MT_UTF8_EXTRA((Py_UCS4)chars[j]);                                                       \
                }                                                                                                   \
            }                                                                                                       \
        }                                                                                                           \
        for (; i < n; i++) {                                                                                        \
            size += MT_UTF8_EXTRA((Py_UCS4)chars[i]);                                                               \
        }                                                                                                           \
    } while (0)
    if (kind == PyUnicode_1BYTE_KIND) {
        MT_UTF8_COUNT(Py_UCS1);
    }
    else if (kind == PyUnicode_2BYTE_KIND) {
        MT_UTF8_COUNT(Py_UCS2);
    }
    else {
        MT_UTF8_COUNT(Py_UCS4);
    }
#undef MT_UTF8_COUNT
#undef MT_UTF8_EXTRA
    return PyLong_FromSsize_t(size);
}

PyDoc_STRVAR(utf8_encode_doc,
"utf8_encode(text, /)\n--\n\n"
"text.encode(\"utf-8\"), or None where that raises (text holds a surrogate).");

/* CPython's UTF-8 encoder takes a branch per character, ~15 instructions a character of a 4-byte-wide str (one
 * emoji makes a whole body that wide); a MIME part written back is encoded whole. Here a block of 32 bytes with no
 * character past ASCII (ascii_block, as utf8_length reads it) is narrowed without a branch per character, and
 * only the blocks holding one go character by character. */
static PyObject *
speedups_utf8_encode(PyObject *module, PyObject *text)
{
    Py_ssize_t i, n, o = 0, width;
    int kind;
    const void *data;
    unsigned char *out;
    PyObject *result;
    (void)module;
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "utf8_encode() argument must be str, not %.100s", Py_TYPE(text)->tp_name);
        return NULL;
    }
    n = PyUnicode_GET_LENGTH(text);
    data = PyUnicode_DATA(text);
    if (PyUnicode_IS_ASCII(text)) {
        return PyBytes_FromStringAndSize((const char *)data, n);
    }
    kind = PyUnicode_KIND(text);
    width = kind == PyUnicode_1BYTE_KIND ? 2 : kind == PyUnicode_2BYTE_KIND ? 3 : 4;
    if (n > PY_SSIZE_T_MAX / width) {
        return PyErr_NoMemory();
    }
    result = PyBytes_FromStringAndSize(NULL, n * width);
    if (result == NULL) {
        return NULL;
    }
    out = (unsigned char *)PyBytes_AS_STRING(result);
#define MT_UTF8_PUT(c)                                                                                              \
    do {                                                                                                            \
        Py_UCS4 ch = (c);                                                                                           \
        if (ch < 0x80) {                                                                                            \
            out[o++] = (unsigned char)ch;                                                                           \
        }                                                                                                           \
        else if (ch < 0x800) {                                                                                      \
            out[o++] = (unsigned char)(0xC0 | (ch >> 6));                                                           \
            out[o++] = (unsigned char)(0x80 | (ch & 0x3F));                                                         \
        }                                                                                                           \
        else if (ch < 0x10000) {                                                                                    \
            if (ch >= 0xD800 && ch <= 0xDFFF) {                                                                     \
                goto surrogate;                                                                                     \
            }                                                                                                       \
            out[o++] = (unsigned char)(0xE0 | (ch >> 12));                                                          \
            out[o++] = (unsigned char)(0x80 | ((ch >> 6) & 0x3F));                                                  \
            out[o++] = (unsigned char)(0x80 | (ch & 0x3F));                                                         \
        }                                                                                                           \
        else {                                                                                                      \
            out[o++] = (unsigned char)(0xF0 | (ch >> 18));                                                          \
            out[o++] = (unsigned char)(0x80 | ((ch >> 12) & 0x3F));                                                 \
            out[o++] = (unsigned char)(0x80 | ((ch >> 6) & 0x3F));                                                  \
            out[o++] = (unsigned char)(0x80 | (ch & 0x3F));                                                         \
        }                                                                                                           \
    } while (0)
#define MT_UTF8_ENCODE(CHAR_T)                                                                                      \
    do {                                                                                                            \
        const CHAR_T *chars = (const CHAR_T *)data;                                                                 \
        const Py_ssize_t per_block = 32 / (Py_ssize_t)sizeof(CHAR_T);                                               \
        for (i = 0; i + per_block <= n; i += per_block) {                                                           \
            Py_ssize_t j;                                                                                           \
            if (ascii_block(chars + i, MT_ASCII_HIGH_BITS(CHAR_T))) {                                               \
                MT_UTF8_NARROW(CHAR_T);                                                                             \
                o += per_block;                                                                                     \
            }                                                                                                       \
            else {                                                                                                  \
                for (j = i; j < i + per_block; j++) {                                                               \
                    MT_UTF8_PUT((Py_UCS4)chars[j]);                                                                 \
                }                                                                                                   \
            }                                                                                                       \
        }                                                                                                           \
        for (; i < n; i++) {                                                                                        \
            MT_UTF8_PUT((Py_UCS4)chars[i]);                                                                         \
        }                                                                                                           \
    } while (0)
/* A block of ASCII characters (32 bytes) written as bytes: with SSE2, its two 16-byte halves packed to bytes
 * (every value is below 0x80, so the saturating packs keep it); elsewhere one character at a time. */
#if MT_SSE2
#define MT_UTF8_NARROW(CHAR_T)                                                                                      \
    do {                                                                                                            \
        const __m128i *in = (const __m128i *)(const void *)(chars + i);                                             \
        if (sizeof(CHAR_T) == 1) {                                                                                  \
            memcpy(out + o, chars + i, 32);                                                                         \
        }                                                                                                           \
        else if (sizeof(CHAR_T) == 2) {                                                                             \
            _mm_storeu_si128((__m128i *)(void *)(out + o),                                                          \
                             _mm_packus_epi16(_mm_loadu_si128(in), _mm_loadu_si128(in + 1)));                       \
        }                                                                                                           \
        else {                                                                                                      \
            __m128i shorts = _mm_packs_epi32(_mm_loadu_si128(in), _mm_loadu_si128(in + 1));                         \
            _mm_storel_epi64((__m128i *)(void *)(out + o), _mm_packus_epi16(shorts, shorts));                       \
        }                                                                                                           \
    } while (0)
#else
#define MT_UTF8_NARROW(CHAR_T)                                                                                      \
    do {                                                                                                            \
        Py_ssize_t k;                                                                                               \
        for (k = 0; k < per_block; k++) {                                                                           \
            out[o + k] = (unsigned char)chars[i + k];                                                               \
        }                                                                                                           \
    } while (0)
#endif
    if (kind == PyUnicode_1BYTE_KIND) {
        MT_UTF8_ENCODE(Py_UCS1);
    }
    else if (kind == PyUnicode_2BYTE_KIND) {
        MT_UTF8_ENCODE(Py_UCS2);
    }
    else {
        MT_UTF8_ENCODE(Py_UCS4);
    }
#undef MT_UTF8_NARROW
#undef MT_UTF8_ENCODE
#undef MT_UTF8_PUT
    if (_PyBytes_Resize(&result, o) < 0) {
        return NULL;
    }
    return result;
surrogate:
    Py_DECREF(result);
    Py_RETURN_NONE;
}
