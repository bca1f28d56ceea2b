/* JSON string values as UTF-8 bytes, without a str in between (included by _speedups.c only).
 *
 * A campaign batch's JSON lines record carries a whole message (30-50 KB) in one string value. The stdlib way
 * (json.loads the line, str.encode the message, rewrite, bytes.decode, json.dumps, str.encode) builds three
 * big strs per record, four bytes a character as soon as the message holds one emoji. These three functions
 * let the batch keep the message as bytes from the input line to the output line; each gives up (returns
 * None) wherever the stdlib's answer could differ, and the caller then takes the stdlib way. The pure
 * references, byte for byte, are in mailtrack/batch/jsonbytes.py.
 *
 *   json_long_values(data, min_length) -> list[tuple[int, int]] | None
 *       The (start, end) spans (inside the quotes) of the string values of the top-level object's members
 *       that are at least min_length bytes long, in order. None when data holds an unterminated string or a
 *       NaN / Infinity literal outside strings (the caller stands NaN in for the long values).
 *   json_unescape(data, start, end) -> bytes | None
 *       The UTF-8 bytes of the JSON string whose escaped content is data[start:end]: what
 *       json.loads('"' + content + '"').encode("utf-8") gives. None where that str would hold a surrogate (an
 *       escaped lone half, or UTF-8-encoded surrogates, which json.loads lets through) or where json.loads
 *       fails (invalid UTF-8, a raw control character, a bad escape).
 *   json_escape(data, head=b"", tail=b"") -> bytes | None
 *       head + data (UTF-8) as a JSON string, quotes included + tail: json.dumps(data.decode("utf-8"),
 *       ensure_ascii=False).encode("utf-8") between them, in one buffer. None when data is not valid UTF-8.
 */

#include <stdint.h>

/* A block at a time: how many of the JSON_STEP bytes at p, from the first, are neither a quote, a backslash, a
 * control character nor non-ASCII (what both directions copy as they are): JSON_STEP when none is. A run of
 * plain bytes is copied in whole blocks, up to the first special byte, which is never re-tested byte by byte.
 * With SSE2 (every x86-64) a block is 16 bytes: a signed compare below 0x20 also flags every byte from 0x80.
 * Elsewhere it is an 8-byte word, read with memcpy (alignment does not matter): each test's lowest flagged byte
 * is exact (a borrow only runs upwards from a byte flagged rightly), so the lowest flag of their union is the
 * first special byte. */
#if MT_SSE2
#define JSON_STEP 16

static inline int
json_plain_prefix(const unsigned char *p)
{
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i special = _mm_or_si128(_mm_cmplt_epi8(v, _mm_set1_epi8(0x20)),
                                   _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                                                _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))));
    unsigned mask = (unsigned)_mm_movemask_epi8(special);
    return mask == 0 ? JSON_STEP : __builtin_ctz(mask);
}
#else
#define JSON_STEP 8
#define JSON_ONES 0x0101010101010101ULL
#define JSON_HIGHS 0x8080808080808080ULL
#define JSON_HAS_ZERO(v) (((v) - JSON_ONES) & ~(v) & JSON_HIGHS)

static inline int
json_plain_prefix(const unsigned char *p)
{
    uint64_t w, flags;
    memcpy(&w, p, 8);
    flags = (w & JSON_HIGHS) | (((w) - JSON_ONES * 0x20) & ~(w) & JSON_HIGHS) | JSON_HAS_ZERO(w ^ (JSON_ONES * '"')) |
        JSON_HAS_ZERO(w ^ (JSON_ONES * '\\'));
    if (flags == 0) {
        return JSON_STEP;
    }
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return __builtin_ctzll(flags) >> 3; /* the lowest address is the lowest byte */
#else
    {
        int k = 0;
        while (p[k] >= 0x20 && p[k] < 0x80 && p[k] != '"' && p[k] != '\\') {
            k++;
        }
        return k;
    }
#endif
}
#endif

/* The length of the UTF-8 sequence at in[i] (1-4), or 0 when it is invalid or encodes a surrogate. */
static inline Py_ssize_t
json_utf8_sequence(const unsigned char *in, Py_ssize_t i, Py_ssize_t n)
{
    unsigned char c = in[i], lo = 0x80, hi = 0xBF;
    Py_ssize_t size, k;
    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        size = 2;
    }
    else if (c >= 0xE0 && c <= 0xEF) {
        size = 3;
        if (c == 0xE0) {
            lo = 0xA0;
        }
        else if (c == 0xED) {
            hi = 0x9F; /* ED A0..BF: a surrogate */
        }
    }
    else if (c >= 0xF0 && c <= 0xF4) {
        size = 4;
        if (c == 0xF0) {
            lo = 0x90;
        }
        else if (c == 0xF4) {
            hi = 0x8F;
        }
    }
    else {
        return 0;
    }
    if (i + size > n || in[i + 1] < lo || in[i + 1] > hi) {
        return 0;
    }
    for (k = 2; k < size; k++) {
        if ((in[i + k] & 0xC0) != 0x80) {
            return 0;
        }
    }
    return size;
}

static inline int
json_hex4(const unsigned char *in, Py_ssize_t i, Py_ssize_t n)
{
    int value = 0, k;
    if (i + 4 > n) {
        return -1;
    }
    for (k = 0; k < 4; k++) {
        unsigned char c = in[i + k];
        value <<= 4;
        if (c >= '0' && c <= '9') {
            value |= c - '0';
        }
        else if (c >= 'a' && c <= 'f') {
            value |= c - 'a' + 10;
        }
        else if (c >= 'A' && c <= 'F') {
            value |= c - 'A' + 10;
        }
        else {
            return -1;
        }
    }
    return value;
}

PyDoc_STRVAR(json_long_values_doc,
"json_long_values(data, min_length, /)\n--\n\n"
"The (start, end) spans inside the quotes of the top-level object's string values of at least min_length\n"
"bytes, or None (an unterminated string, a NaN or Infinity literal): mailtrack.batch.jsonbytes.long_values_pure.");

static PyObject *
speedups_json_long_values(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    const unsigned char *in;
    Py_ssize_t n, i = 0, min_length, depth = 0;
    unsigned char last = 0;
    PyObject *spans;
    (void)module;
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyLong_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "json_long_values() takes bytes and an int");
        return NULL;
    }
    min_length = PyLong_AsSsize_t(args[1]);
    if (min_length == -1 && PyErr_Occurred()) {
        return NULL;
    }
    in = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    n = PyBytes_GET_SIZE(args[0]);
    spans = PyList_New(0);
    if (spans == NULL) {
        return NULL;
    }
    while (i < n) {
        unsigned char c = in[i];
        if (c == '"') {
            Py_ssize_t start = i + 1, j = start;
            const unsigned char *quote;
            for (;;) {
                quote = memchr(in + j, '"', (size_t)(n - j));
                if (quote == NULL) {
                    Py_DECREF(spans);
                    Py_RETURN_NONE; /* unterminated */
                }
                j = quote - in;
                {
                    Py_ssize_t back = j;
                    while (back > start && in[back - 1] == '\\') {
                        back--;
                    }
                    if (((j - back) & 1) == 0) {
                        break; /* an even run of backslashes before it: the closing quote */
                    }
                }
                j++;
            }
            if (depth == 1 && last == ':' && j - start >= min_length) {
                if (append_span(spans, start, j) < 0) {
                    Py_DECREF(spans);
                    return NULL;
                }
            }
            last = '"';
            i = j + 1;
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
        }
        else if (c == '}' || c == ']') {
            depth--;
        }
        else if (c == 'N' || c == 'I') {
            Py_DECREF(spans);
            Py_RETURN_NONE; /* NaN, Infinity (or invalid JSON): NaN would not stand for our values alone */
        }
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            last = c;
        }
        i++;
    }
    return spans;
}

PyDoc_STRVAR(json_unescape_doc,
"json_unescape(data, start, end, /)\n--\n\n"
"The UTF-8 bytes of the JSON string whose escaped content is data[start:end], or None where json.loads would\n"
"fail or give a str holding a surrogate: mailtrack.batch.jsonbytes.unescape_pure.");

static PyObject *
speedups_json_unescape(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    const unsigned char *in;
    unsigned char *out;
    Py_ssize_t start, end, i, o = 0;
    PyObject *result;
    (void)module;
    if (bytes_span_args(args, nargs, "json_unescape", "data", &start, &end) < 0) {
        return NULL;
    }
    in = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    result = PyBytes_FromStringAndSize(NULL, end - start); /* escapes only shrink */
    if (result == NULL) {
        return NULL;
    }
    out = (unsigned char *)PyBytes_AS_STRING(result);
    i = start;
    while (i < end) {
        unsigned char c;
        if (i + JSON_STEP <= end) {
            int plain = json_plain_prefix(in + i);
            memcpy(out + o, in + i, JSON_STEP); /* (room: escapes only shrink, and a block is left to read) */
            o += plain;
            i += plain;
            if (plain == JSON_STEP) {
                continue;
            }
        }
        c = in[i];
        if (c >= 0x20 && c < 0x80 && c != '\\' && c != '"') {
            out[o++] = c;
            i++;
            continue;
        }
        if (c >= 0x80) {
            Py_ssize_t size = json_utf8_sequence(in, i, end);
            if (size == 0) {
                goto give_up;
            }
            memcpy(out + o, in + i, (size_t)size);
            o += size;
            i += size;
            continue;
        }
        if (c != '\\' || i + 1 >= end) {
            goto give_up; /* a raw control character or quote, or a lone backslash at the end */
        }
        c = in[i + 1];
        i += 2;
        switch (c) {
        case '"': out[o++] = '"'; break;
        case '\\': out[o++] = '\\'; break;
        case '/': out[o++] = '/'; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u': {
            long code = json_hex4(in, i, end);
            if (code < 0) {
                goto give_up;
            }
            i += 4;
            if (code >= 0xD800 && code <= 0xDBFF) {
                long low;
                if (i + 6 > end || in[i] != '\\' || in[i + 1] != 'u') {
                    goto give_up; /* a lone high surrogate */
                }
                low = json_hex4(in, i + 2, end);
                if (low < 0xDC00 || low > 0xDFFF) {
                    goto give_up;
                }
                i += 6;
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
            }
            else if (code >= 0xDC00 && code <= 0xDFFF) {
                goto give_up; /* a lone low surrogate */
            }
            if (code < 0x80) {
                out[o++] = (unsigned char)code;
            }
            else if (code < 0x800) {
                out[o++] = (unsigned char)(0xC0 | (code >> 6));
                out[o++] = (unsigned char)(0x80 | (code & 0x3F));
            }
            else if (code < 0x10000) {
                out[o++] = (unsigned char)(0xE0 | (code >> 12));
                out[o++] = (unsigned char)(0x80 | ((code >> 6) & 0x3F));
                out[o++] = (unsigned char)(0x80 | (code & 0x3F));
            }
            else {
                out[o++] = (unsigned char)(0xF0 | (code >> 18));
                out[o++] = (unsigned char)(0x80 | ((code >> 12) & 0x3F));
                out[o++] = (unsigned char)(0x80 | ((code >> 6) & 0x3F));
                out[o++] = (unsigned char)(0x80 | (code & 0x3F));
            }
            break;
        }
        default:
            goto give_up;
        }
    }
    if (_PyBytes_Resize(&result, o) < 0) {
        return NULL;
    }
    return result;
give_up:
    Py_DECREF(result);
    Py_RETURN_NONE;
}

/* What c_encode_basestring (ensure_ascii=False) writes for the ASCII byte c: 0 (itself), or the letter after
 * the backslash ('u' for \u00XX). */
static const char json_escape_letter[128] = {
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r', 'u', 'u',
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
    0, 0, '"', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '\\', 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

PyDoc_STRVAR(json_escape_doc,
"json_escape(data, head=b'', tail=b'', /)\n--\n\n"
"head, then the UTF-8 bytes data as a JSON string, quotes included, as json.dumps(ensure_ascii=False) writes\n"
"it, then tail; None when data is not valid UTF-8: mailtrack.batch.jsonbytes.escape_pure.");

static PyObject *
speedups_json_escape(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *in;
    unsigned char *out;
    const char *head = "", *tail = "";
    Py_ssize_t n, i = 0, o, capacity, head_size = 0, tail_size = 0;
    PyObject *result;
    (void)module;
    if (nargs < 1 || nargs > 3 || !PyBytes_Check(args[0]) || (nargs > 1 && !PyBytes_Check(args[1])) ||
        (nargs > 2 && !PyBytes_Check(args[2]))) {
        PyErr_SetString(PyExc_TypeError, "json_escape() takes bytes, and optionally bytes to write before and after");
        return NULL;
    }
    in = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    n = PyBytes_GET_SIZE(args[0]);
    if (nargs > 1) {
        head = PyBytes_AS_STRING(args[1]);
        head_size = PyBytes_GET_SIZE(args[1]);
    }
    if (nargs > 2) {
        tail = PyBytes_AS_STRING(args[2]);
        tail_size = PyBytes_GET_SIZE(args[2]);
    }
    /* One pass into room for an escape every eight bytes (a message has one every thirty or so); more room when
     * that runs out. The quote and the tail always fit after what is written. */
    capacity = head_size + n + n / 8 + 16 + tail_size;
    result = PyBytes_FromStringAndSize(NULL, capacity);
    if (result == NULL) {
        return NULL;
    }
    out = (unsigned char *)PyBytes_AS_STRING(result);
    memcpy(out, head, (size_t)head_size);
    o = head_size;
    out[o++] = '"';
    while (i < n) {
        unsigned char c;
        if (capacity - o < JSON_STEP + 6 + 1 + tail_size) {
            /* Room for one more step and the end: at most a block copied, then 6 bytes written, per step. */
            capacity += capacity / 2 + 16;
            if (_PyBytes_Resize(&result, capacity) < 0) {
                return NULL;
            }
            out = (unsigned char *)PyBytes_AS_STRING(result);
        }
        if (i + JSON_STEP <= n) {
            int plain = json_plain_prefix(in + i);
            memcpy(out + o, in + i, JSON_STEP); /* (room for a block: see above) */
            o += plain;
            i += plain;
            if (plain == JSON_STEP) {
                continue;
            }
        }
        c = in[i];
        if (c < 0x80) {
            char letter = json_escape_letter[c];
            if (letter == 0) {
                out[o++] = c;
            }
            else {
                out[o++] = '\\';
                out[o++] = (unsigned char)letter;
                if (letter == 'u') {
                    out[o++] = '0';
                    out[o++] = '0';
                    out[o++] = (unsigned char)hex[c >> 4];
                    out[o++] = (unsigned char)hex[c & 0xF];
                }
            }
            i++;
        }
        else {
            Py_ssize_t size = json_utf8_sequence(in, i, n);
            if (size == 0) {
                Py_DECREF(result);
                Py_RETURN_NONE;
            }
            memcpy(out + o, in + i, (size_t)size);
            o += size;
            i += size;
        }
    }
    out[o++] = '"';
    memcpy(out + o, tail, (size_t)tail_size);
    o += tail_size;
    if (_PyBytes_Resize(&result, o) < 0) {
        return NULL;
    }
    return result;
}
