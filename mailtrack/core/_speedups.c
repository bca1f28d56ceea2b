/* mailtrack.core._speedups: compiled versions of pure-Python core functions.
 *
 * Optional: setup.py builds it where a C compiler exists, and the package
 * works the same without it (mailtrack/core/speedups.py decides which path
 * runs; MAILTRACK_PURE=1 forces the pure one). Each function returns exactly
 * what its pure-Python reference returns, for every input; the differential
 * tests (tests/unit/core/test_speedups.py) compare both.
 *
 *   scan(text, LinkTag) -> (links, body_start_end, body_end, html_end, truncated_at)
 *       mailtrack.core.scanner.scan_pure's ScanResult fields, as a tuple.
 *   ClickSigner(key, head, tail, stamp, size, *, sealed=False)(link_index, url) -> token
 *       the click signer mailtrack.core.tokens.TokenCodec builds per message (_speedups_sign.h); sealed: the
 *       opaque format's AES-256-SIV token (OpenSSL's AES; SIV_AVAILABLE says whether this build has it).
 *   SivKey(key).seal(plaintext) -> token; .open(sealed) -> plaintext or None
 *       one purpose's AES-256-SIV key, keyed once: what a codec seals and opens opaque tokens with.
 *   track_links(...)
 *       the common link of mailtrack.core.rewrite.links.track_html_links's loop (_speedups_links.h).
 *   splice(source, edits) -> str or None; utf8_length(text) -> int; utf8_encode(text) -> bytes or None
 *       string assembly for the rewriters (_speedups_splice.h).
 *   sign_value(key, data, stamp, size) -> token
 *       the pure signer's token for one payload (open and unsubscribe tokens; _speedups_sign.h).
 *   qp_lines(data, eol) -> bytes
 *       quoted-printable for touched MIME lines (_speedups_qp.h).
 *   split_lines, line_starts, qp_encoded_break, qp_encode_lines, max_line_length, qp_decode, header_block
 *       a MIME part's line map and its touched lines written back (_speedups_lines.h).
 *   b64_lines, b64_decode
 *       base64 bodies written in lines and read (_speedups_base64.h).
 *   find_urls(text) -> [(start, end), ...]
 *       the http(s) URLs of a plain-text body, as mailtrack.core.urlfinder finds them (_speedups_urls.h).
 *   sha256(data) -> digest
 *       the SHA-256 ClickSigner uses (OpenSSL's where setup.py found it, else _speedups_sha256.h's).
 *   json_long_values(data, min_length), json_unescape(data, start, end), json_escape(data, head, tail)
 *       a batch's JSON lines records, message kept as bytes (_speedups_json.h; pure references in
 *       mailtrack.batch.jsonbytes).
 *
 * Plain CPython C API; OpenSSL's libcrypto (CPython's hashlib links it too) when found at build time.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include <stdint.h>

/* SSE2 (every x86-64), through GCC's and Clang's intrinsics: the block loops of _speedups_json.h and
 * _speedups_splice.h use it, and fall back to 8-byte words elsewhere. */
#if defined(__SSE2__) && defined(__GNUC__)
#define MT_SSE2 1
#include <emmintrin.h>
#else
#define MT_SSE2 0
#endif

#if PY_VERSION_HEX < 0x030A0000
#error "mailtrack needs Python 3.10 or later"
#endif

/* The tokenizer's whitespace after input preprocessing (CR counts: it becomes LF). */
#define IS_WS(c) ((c) == ' ' || (c) == '\t' || (c) == '\n' || (c) == '\f' || (c) == '\r')
/* What ends a tag or attribute name: whitespace, "/" or ">". */
#define IS_NAME_END(c) (IS_WS(c) || (c) == '/' || (c) == '>')
#define IS_ALPHA(c) (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z'))

/* ASCII-only lower-casing, as the tokenizer does for names (and re.IGNORECASE | re.ASCII). */
static inline Py_UCS4
ASCII_LOWER(Py_UCS4 c)
{
    return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

enum { QUOTE_NONE = 0, QUOTE_DOUBLE = 1, QUOTE_SINGLE = 2 };
enum { KIND_OTHER = 0, KIND_LINK = 1, KIND_BODY = 2, KIND_RAW = 3 };

/* scanner._RAW_TEXT, in its order. */
#define N_RAW_TEXT 9
#define RAW_PLAINTEXT 8
static const char *const RAW_TEXT[N_RAW_TEXT] = {
    "script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes", "plaintext",
};
static const Py_ssize_t RAW_TEXT_LEN[N_RAW_TEXT] = {6, 5, 8, 5, 3, 6, 7, 8, 9};

typedef struct {
    PyTypeObject *click_signer_type;
    PyTypeObject *siv_key_type; /* NULL in a build without OpenSSL */
    PyObject *str_counted, *str_sign, *str_prefix, *str_links, *str_max_links, *str_skipped; /* LinkBook's attributes */
    PyObject *str_scheme, *str_placeholder; /* skip reasons */
    PyObject *str_a;     /* "a" */
    PyObject *str_area;  /* "area" */
    PyObject *quotes[3]; /* "", '"', "'" by QUOTE_* */
} ModuleState;

typedef struct {
    int found;
    Py_ssize_t start, stop;
    int quote;
} Href;

/* One scan in progress: what ScanResult will hold (-1 for None). */
typedef struct {
    ModuleState *state;
    PyObject *text;
    PyObject *link_tag; /* the LinkTag class: a tuple subclass */
    PyObject *links;    /* list */
    Py_ssize_t body_start_end, body_end, html_end, truncated_at;
} Scan;

/* tuple.__new__(LinkTag, items[0:n]): the named tuple without its Python-level __new__. What CPython's
 * tuple_subtype_new does, without the argument tuple: the subtype's tp_alloc, then each field (borrowed: each gets
 * a new reference). No fields tuple is built first: Py_BuildValue's format parsing was a tenth of a link's cost. */
static PyObject *
new_link_tag(PyObject *link_tag, PyObject *const *items, Py_ssize_t n)
{
    PyTypeObject *type = (PyTypeObject *)link_tag;
    Py_ssize_t i;
    PyObject *link = type->tp_alloc(type, n);
    if (link == NULL) {
        return NULL;
    }
    for (i = 0; i < n; i++) {
        PyTuple_SET_ITEM(link, i, Py_NewRef(items[i]));
    }
    return link;
}

#define CHAR Py_UCS1
#define SUFFIX ucs1
#define CHAR_IS_UCS1 1
#include "_speedups_scan.h"
#undef CHAR
#undef SUFFIX
#undef CHAR_IS_UCS1

#define CHAR Py_UCS2
#define SUFFIX ucs2
#define CHAR_IS_UCS1 0
#include "_speedups_scan.h"
#undef CHAR
#undef SUFFIX
#undef CHAR_IS_UCS1

#define CHAR Py_UCS4
#define SUFFIX ucs4
#define CHAR_IS_UCS1 0
#include "_speedups_scan.h"
#undef CHAR
#undef SUFFIX
#undef CHAR_IS_UCS1

/* The arguments (bytes, start, end) of a function reading bytes[start:end]: 0 with *start and *end set, or -1
 * with TypeError (other types) or ValueError (not 0 <= start <= end <= len(bytes)) naming function and argument. */
static int
bytes_span_args(PyObject *const *args, Py_ssize_t nargs, const char *function, const char *argument,
                Py_ssize_t *start, Py_ssize_t *end)
{
    if (nargs != 3 || !PyBytes_Check(args[0]) || !PyLong_Check(args[1]) || !PyLong_Check(args[2])) {
        PyErr_Format(PyExc_TypeError, "%s() takes bytes, an int and an int", function);
        return -1;
    }
    *start = PyLong_AsSsize_t(args[1]);
    *end = PyLong_AsSsize_t(args[2]);
    if (PyErr_Occurred()) {
        return -1;
    }
    if (*start < 0 || *end < *start || *end > PyBytes_GET_SIZE(args[0])) {
        PyErr_Format(PyExc_ValueError, "%s(): start and end must be 0 <= start <= end <= len(%s)", function, argument);
        return -1;
    }
    return 0;
}

/* Append (start, end) to the list spans; -1 with an exception set when it cannot (the caller drops spans). */
static int
append_span(PyObject *spans, Py_ssize_t start, Py_ssize_t end)
{
    int failed;
    PyObject *span = Py_BuildValue("(nn)", start, end);
    if (span == NULL) {
        return -1;
    }
    failed = PyList_Append(spans, span);
    Py_DECREF(span);
    return failed;
}

#include "_speedups_sign.h"
#include "_speedups_links.h"
#include "_speedups_splice.h"
#include "_speedups_qp.h"
#include "_speedups_lines.h" /* after _speedups_qp.h: writes with qp_write */
#include "_speedups_base64.h"
#include "_speedups_json.h"
#include "_speedups_urls.h"

static PyObject *
optional_offset(Py_ssize_t offset)
{
    return offset < 0 ? Py_NewRef(Py_None) : PyLong_FromSsize_t(offset);
}

PyDoc_STRVAR(scan_doc,
"scan(text, LinkTag, /)\n--\n\n"
"mailtrack.core.scanner.scan_pure(text), as the tuple (links, body_start_end, body_end,\n"
"html_end, truncated_at) of its ScanResult fields; LinkTag is the class of the links.");

static PyObject *
speedups_scan(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Scan st;
    Py_ssize_t length;
    int status;
    PyObject *text;

    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "scan() takes 2 positional arguments (%zd given)", nargs);
        return NULL;
    }
    text = args[0];
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "scan() argument 1 must be str, not %.100s", Py_TYPE(text)->tp_name);
        return NULL;
    }
    if (!PyType_Check(args[1]) || !PyType_IsSubtype((PyTypeObject *)args[1], &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "scan() argument 2 must be a tuple subclass");
        return NULL;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0) {
        return NULL;
    }
#endif
    st.state = (ModuleState *)PyModule_GetState(module);
    st.text = text;
    st.link_tag = args[1];
    st.body_start_end = st.body_end = st.html_end = st.truncated_at = -1;
    st.links = PyList_New(0);
    if (st.links == NULL) {
        return NULL;
    }
    length = PyUnicode_GET_LENGTH(text);
    switch (PyUnicode_KIND(text)) {
    case PyUnicode_1BYTE_KIND:
        status = scan_range_ucs1(&st, PyUnicode_1BYTE_DATA(text), 0, length, 0);
        break;
    case PyUnicode_2BYTE_KIND:
        status = scan_range_ucs2(&st, PyUnicode_2BYTE_DATA(text), 0, length, 0);
        break;
    default:
        status = scan_range_ucs4(&st, PyUnicode_4BYTE_DATA(text), 0, length, 0);
        break;
    }
    if (status < 0) {
        Py_DECREF(st.links);
        return NULL;
    }
    return Py_BuildValue("(NNNNN)", st.links, optional_offset(st.body_start_end), optional_offset(st.body_end),
                         optional_offset(st.html_end), optional_offset(st.truncated_at));
}

static PyMethodDef speedups_methods[] = {
    {"scan", (PyCFunction)(void (*)(void))speedups_scan, METH_FASTCALL, scan_doc},
    {"track_links", (PyCFunction)(void (*)(void))speedups_track_links, METH_FASTCALL, track_links_doc},
    {"sha256", (PyCFunction)speedups_sha256, METH_O, sha256_doc},
    {"sign_value", (PyCFunction)(void (*)(void))speedups_sign_value, METH_FASTCALL, sign_value_doc},
    {"plain_destination", (PyCFunction)speedups_plain_destination, METH_O, plain_destination_doc},
    {"default_rules", (PyCFunction)speedups_default_rules, METH_O, default_rules_doc},
    {"splice", (PyCFunction)(void (*)(void))speedups_splice, METH_FASTCALL, splice_doc},
    {"utf8_length", (PyCFunction)speedups_utf8_length, METH_O, utf8_length_doc},
    {"utf8_encode", (PyCFunction)speedups_utf8_encode, METH_O, utf8_encode_doc},
    {"qp_lines", (PyCFunction)(void (*)(void))speedups_qp_lines, METH_FASTCALL, qp_lines_doc},
    {"find_urls", (PyCFunction)speedups_find_urls, METH_O, find_urls_doc},
    /* the line map of a MIME part and its touched lines written back (_speedups_lines.h) */
    {"split_lines", (PyCFunction)(void (*)(void))speedups_split_lines, METH_FASTCALL, split_lines_doc},
    {"line_starts", (PyCFunction)speedups_line_starts, METH_O, line_starts_doc},
    {"qp_encoded_break", (PyCFunction)speedups_qp_encoded_break, METH_O, qp_encoded_break_doc},
    {"qp_encode_lines", (PyCFunction)(void (*)(void))speedups_qp_encode_lines, METH_FASTCALL, qp_encode_lines_doc},
    {"max_line_length", (PyCFunction)speedups_max_line_length, METH_O, max_line_length_doc},
    {"header_block", (PyCFunction)(void (*)(void))speedups_header_block, METH_FASTCALL, header_block_doc},
    {"qp_decode", (PyCFunction)speedups_qp_decode, METH_O, qp_decode_doc},
    /* base64 bodies (_speedups_base64.h) */
    {"b64_lines", (PyCFunction)(void (*)(void))speedups_b64_lines, METH_FASTCALL, b64_lines_doc},
    {"b64_decode", (PyCFunction)speedups_b64_decode, METH_O, b64_decode_doc},
    {"json_long_values", (PyCFunction)(void (*)(void))speedups_json_long_values, METH_FASTCALL, json_long_values_doc},
    {"json_unescape", (PyCFunction)(void (*)(void))speedups_json_unescape, METH_FASTCALL, json_unescape_doc},
    {"json_escape", (PyCFunction)(void (*)(void))speedups_json_escape, METH_FASTCALL, json_escape_doc},
    {NULL, NULL, 0, NULL},
};

static int
speedups_exec(PyObject *module)
{
    ModuleState *state = (ModuleState *)PyModule_GetState(module);
    state->click_signer_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &click_signer_spec, NULL);
    if (state->click_signer_type == NULL || PyModule_AddObjectRef(module, "ClickSigner", (PyObject *)state->click_signer_type) < 0 ||
        PyModule_AddStringConstant(module, "SHA256_BACKEND", MT_SHA256_BACKEND) < 0) {
        return -1;
    }
#ifdef MT_SIV
    state->siv_key_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &siv_key_spec, NULL);
    if (state->siv_key_type == NULL || PyModule_AddObjectRef(module, "SivKey", (PyObject *)state->siv_key_type) < 0) {
        return -1;
    }
#endif
    if (PyModule_AddIntConstant(module, "SIV_AVAILABLE", siv_available()) < 0) {
        return -1;
    }
    state->str_counted = PyUnicode_InternFromString("counted");
    state->str_sign = PyUnicode_InternFromString("sign");
    state->str_prefix = PyUnicode_InternFromString("prefix");
    state->str_links = PyUnicode_InternFromString("links");
    state->str_max_links = PyUnicode_InternFromString("max_links");
    state->str_skipped = PyUnicode_InternFromString("skipped");
    state->str_scheme = PyUnicode_InternFromString("scheme");
    state->str_placeholder = PyUnicode_InternFromString("placeholder");
    if (state->str_counted == NULL || state->str_sign == NULL || state->str_prefix == NULL || state->str_links == NULL ||
        state->str_max_links == NULL || state->str_skipped == NULL || state->str_scheme == NULL ||
        state->str_placeholder == NULL) {
        return -1;
    }
    state->str_a = PyUnicode_InternFromString("a");
    state->str_area = PyUnicode_InternFromString("area");
    state->quotes[QUOTE_NONE] = PyUnicode_InternFromString("");
    state->quotes[QUOTE_DOUBLE] = PyUnicode_InternFromString("\"");
    state->quotes[QUOTE_SINGLE] = PyUnicode_InternFromString("'");
    if (state->str_a == NULL || state->str_area == NULL || state->quotes[0] == NULL || state->quotes[1] == NULL ||
        state->quotes[2] == NULL) {
        return -1;
    }
    return 0;
}

static int
speedups_traverse(PyObject *module, visitproc visit, void *arg)
{
    ModuleState *state = (ModuleState *)PyModule_GetState(module);
    if (state != NULL) {
        Py_VISIT(state->click_signer_type);
        Py_VISIT(state->siv_key_type);
        Py_VISIT(state->str_counted);
        Py_VISIT(state->str_sign);
        Py_VISIT(state->str_prefix);
        Py_VISIT(state->str_links);
        Py_VISIT(state->str_max_links);
        Py_VISIT(state->str_skipped);
        Py_VISIT(state->str_scheme);
        Py_VISIT(state->str_placeholder);
        Py_VISIT(state->str_a);
        Py_VISIT(state->str_area);
        Py_VISIT(state->quotes[0]);
        Py_VISIT(state->quotes[1]);
        Py_VISIT(state->quotes[2]);
    }
    return 0;
}

static int
speedups_clear(PyObject *module)
{
    ModuleState *state = (ModuleState *)PyModule_GetState(module);
    if (state != NULL) {
        Py_CLEAR(state->click_signer_type);
        Py_CLEAR(state->siv_key_type);
        Py_CLEAR(state->str_counted);
        Py_CLEAR(state->str_sign);
        Py_CLEAR(state->str_prefix);
        Py_CLEAR(state->str_links);
        Py_CLEAR(state->str_max_links);
        Py_CLEAR(state->str_skipped);
        Py_CLEAR(state->str_scheme);
        Py_CLEAR(state->str_placeholder);
        Py_CLEAR(state->str_a);
        Py_CLEAR(state->str_area);
        Py_CLEAR(state->quotes[0]);
        Py_CLEAR(state->quotes[1]);
        Py_CLEAR(state->quotes[2]);
    }
    return 0;
}

static void
speedups_free(void *module)
{
    speedups_clear((PyObject *)module);
}

static PyModuleDef_Slot speedups_slots[] = {
    {Py_mod_exec, (void *)speedups_exec},
    {0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    "mailtrack.core._speedups",
    "Compiled versions of mailtrack's pure-Python core functions (optional; see mailtrack/core/speedups.py).",
    sizeof(ModuleState),
    speedups_methods,
    speedups_slots,
    speedups_traverse,
    speedups_clear,
    speedups_free,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}
