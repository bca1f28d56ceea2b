/* The line map of a 7bit/8bit/quoted-printable MIME part, and its touched lines written back (included by
 * _speedups.c only, after _speedups_qp.h).
 *
 *   split_lines(body, qp) -> list[bytes]
 *       mailtrack.core.mime.transfer._split_lines_pure(body, qp): the body's lines, each with its "\n"; with qp,
 *       a line ending in "=", then blanks, then an optional CR (a soft line break) joined to the next one (what
 *       transfer._QP_LINE.findall finds, without the empty match at the end).
 *   line_starts(text) -> list[int]
 *       transfer._line_starts_pure(text): 0, then one past each "\n" of text.
 *   qp_encoded_break(body) -> bool
 *       transfer._ENCODED_BREAK.search(body) is not None: an encoded CR or LF ("=0A", "=0d" ...).
 *   qp_encode_lines(lines, offsets, size, changes, intended, codec, rest_codec, errors, eol, body, decoded, mode,
 *                   text) -> (bytes, exact) or None
 *       transfer._encode_lines_pure for a quoted-printable part: its group loop and assembly in one call. Each
 *       group's text is encoded with str.encode(codec or rest_codec, errors) (the codec's own errors propagate),
 *       then written as qp_lines writes it. None when an argument is not what that function is given (then the
 *       pure function runs and decides): the bytes are its result whenever this one returns them. exact: the
 *       body reads back as intended by construction (see LinesCheck), so the caller's read-back check can go.
 *   qp_decode(data) -> bytes
 *       binascii.a2b_qp(data), the decoder that certificate relies on (exposed for the differential tests).
 *   max_line_length(data) -> int
 *       transfer._max_line_length_pure(data): the longest line, CR, LF and CRLF all ending one.
 *   header_block(raw, start, end) -> (list[tuple[str, int, int]], int, int)
 *       tree._header_block_pure(raw, start, end), each Field as a (name, start, end) tuple.
 */

/* CPython's bisect_right / bisect_left over a[0:n] (the same probes, so the same answer on any list). */
static Py_ssize_t
lines_bisect_right(const Py_ssize_t *a, Py_ssize_t n, Py_ssize_t x)
{
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (x < a[mid]) {
            hi = mid;
        }
        else {
            lo = mid + 1;
        }
    }
    return lo;
}

static Py_ssize_t
lines_bisect_left(const Py_ssize_t *a, Py_ssize_t n, Py_ssize_t x)
{
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (a[mid] < x) {
            lo = mid + 1;
        }
        else {
            hi = mid;
        }
    }
    return lo;
}

/* Whether line[0:n] (no "\n" in it) is a soft-broken quoted-printable line: "=", then blanks, then an optional CR,
 * at its end (transfer._QP_LINE's "[^\n]*=[ \t]*\r?\n" without the "\n"). */
static int
lines_soft_break(const unsigned char *line, Py_ssize_t n)
{
    if (n > 0 && line[n - 1] == '\r') {
        n--;
    }
    while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t')) {
        n--;
    }
    return n > 0 && line[n - 1] == '=';
}

PyDoc_STRVAR(split_lines_doc,
"split_lines(body, qp, /)\n--\n\n"
"The lines of body, each with its LF; with qp, soft-broken lines joined to the next:\n"
"mailtrack.core.mime.transfer._split_lines_pure, in one call.");

static PyObject *
speedups_split_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    const unsigned char *in;
    Py_ssize_t n, start = 0;
    int qp;
    PyObject *lines;
    (void)module;
    if (nargs != 2 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "split_lines() takes bytes and a bool");
        return NULL;
    }
    qp = PyObject_IsTrue(args[1]);
    if (qp < 0) {
        return NULL;
    }
    in = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    n = PyBytes_GET_SIZE(args[0]);
    lines = PyList_New(0);
    if (lines == NULL) {
        return NULL;
    }
    while (start < n) {
        Py_ssize_t stop = start;
        PyObject *line;
        int status;
        for (;;) {
            const unsigned char *newline = memchr(in + stop, '\n', (size_t)(n - stop));
            if (newline == NULL) {
                stop = n; /* the last line, without a line break */
                break;
            }
            {
                Py_ssize_t at = (Py_ssize_t)(newline - in);
                int soft = qp && lines_soft_break(in + stop, at - stop);
                stop = at + 1;
                if (!soft || stop >= n) {
                    break; /* a soft-broken last line ends the body: the line is complete */
                }
            }
        }
        line = PyBytes_FromStringAndSize((const char *)in + start, stop - start);
        if (line == NULL) {
            Py_DECREF(lines);
            return NULL;
        }
        status = PyList_Append(lines, line);
        Py_DECREF(line);
        if (status < 0) {
            Py_DECREF(lines);
            return NULL;
        }
        start = stop;
    }
    return lines;
}

PyDoc_STRVAR(line_starts_doc,
"line_starts(text, /)\n--\n\n"
"0, then one past each LF of text: mailtrack.core.mime.transfer._line_starts_pure.");

/* Appends i + 1 for each LF at data[i], i < length (one str kind). */
#define LINES_SCAN_LF(TYPE)                                                    \
    do {                                                                       \
        const TYPE *chars = (const TYPE *)data;                                \
        for (i = 0; i < length; i++) {                                         \
            if (chars[i] == '\n') {                                            \
                PyObject *value = PyLong_FromSsize_t(i + 1);                   \
                if (value == NULL || PyList_Append(starts, value) < 0) {       \
                    Py_XDECREF(value);                                         \
                    Py_DECREF(starts);                                         \
                    return NULL;                                               \
                }                                                              \
                Py_DECREF(value);                                              \
            }                                                                  \
        }                                                                      \
    } while (0)

static PyObject *
speedups_line_starts(PyObject *module, PyObject *text)
{
    PyObject *starts, *zero;
    Py_ssize_t length, i;
    const void *data;
    (void)module;
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "line_starts() takes a str");
        return NULL;
    }
    length = PyUnicode_GET_LENGTH(text);
    data = PyUnicode_DATA(text);
    starts = PyList_New(0);
    zero = PyLong_FromSsize_t(0);
    if (starts == NULL || zero == NULL || PyList_Append(starts, zero) < 0) {
        Py_XDECREF(starts);
        Py_XDECREF(zero);
        return NULL;
    }
    Py_DECREF(zero);
    switch (PyUnicode_KIND(text)) {
    case PyUnicode_1BYTE_KIND: {
        const Py_UCS1 *chars = (const Py_UCS1 *)data;
        const Py_UCS1 *at = chars, *stop = chars + length;
        while (at < stop) { /* memchr: LFs are a few per line */
            const Py_UCS1 *found = memchr(at, '\n', (size_t)(stop - at));
            PyObject *value;
            if (found == NULL) {
                break;
            }
            value = PyLong_FromSsize_t((Py_ssize_t)(found - chars) + 1);
            if (value == NULL || PyList_Append(starts, value) < 0) {
                Py_XDECREF(value);
                Py_DECREF(starts);
                return NULL;
            }
            Py_DECREF(value);
            at = found + 1;
        }
        break;
    }
    case PyUnicode_2BYTE_KIND:
        LINES_SCAN_LF(Py_UCS2);
        break;
    default:
        LINES_SCAN_LF(Py_UCS4);
        break;
    }
    return starts;
}

#undef LINES_SCAN_LF

PyDoc_STRVAR(qp_encoded_break_doc,
"qp_encoded_break(body, /)\n--\n\n"
"Whether body holds \"=0A\" or \"=0D\" (either case): mailtrack.core.mime.transfer._ENCODED_BREAK.search, as a bool.");

static PyObject *
speedups_qp_encoded_break(PyObject *module, PyObject *body)
{
    const unsigned char *in, *at, *stop;
    (void)module;
    if (!PyBytes_Check(body)) {
        PyErr_SetString(PyExc_TypeError, "qp_encoded_break() takes bytes");
        return NULL;
    }
    in = (const unsigned char *)PyBytes_AS_STRING(body);
    at = in;
    stop = in + PyBytes_GET_SIZE(body);
    while (at < stop) {
        const unsigned char *found = memchr(at, '=', (size_t)(stop - at));
        if (found == NULL || stop - found < 3) {
            break;
        }
        if (found[1] == '0' && (found[2] == 'a' || found[2] == 'A' || found[2] == 'd' || found[2] == 'D')) {
            Py_RETURN_TRUE;
        }
        at = found + 1;
    }
    Py_RETURN_FALSE;
}

/* One group of touched lines: [first, last] (last = first - 1: between lines), the growth of the changes before it
 * and of its own. */
typedef struct {
    Py_ssize_t first, last, before, growth;
} LinesGroup;

/* Reads list[i] (an int) into *value; 0 if it is not an int in range (no exception left set). */
static int
lines_ssize(PyObject *list, Py_ssize_t i, Py_ssize_t *value)
{
    PyObject *item = PyList_GET_ITEM(list, i);
    if (!PyLong_CheckExact(item)) {
        return 0;
    }
    *value = PyLong_AsSsize_t(item);
    if (*value == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

static inline int
qp_is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
}

static inline unsigned char
qp_hex_value(unsigned char c)
{
    return (unsigned char)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
}

/* binascii.a2b_qp(in[0:n]) (header=False), CPython's Modules/binascii.c rules: written at out (room for n bytes,
 * the most it writes) or, when out is NULL, only counted. Returns the decoded length. */
static Py_ssize_t
qp_decode_write(const unsigned char *in, Py_ssize_t n, unsigned char *out)
{
    Py_ssize_t i = 0, o = 0;
    while (i < n) {
        if (in[i] != '=') {
            /* a run of plain bytes, copied as they are */
            const unsigned char *next = memchr(in + i, '=', (size_t)(n - i));
            Py_ssize_t stop = next != NULL ? (Py_ssize_t)(next - in) : n;
            if (out != NULL) {
                memcpy(out + o, in + i, (size_t)(stop - i));
            }
            o += stop - i;
            i = stop;
            continue;
        }
        i++;
        if (i >= n) {
            break; /* a lone "=" at the end is dropped */
        }
        if (in[i] == '\n' || in[i] == '\r') { /* a soft line break; after "=\r", everything up to the next LF */
            if (in[i] != '\n') {
                while (i < n && in[i] != '\n') {
                    i++;
                }
            }
            if (i < n) {
                i++;
            }
        }
        else if (in[i] == '=') { /* "==": one "=" (binascii: "broken case from broken python qp") */
            if (out != NULL) {
                out[o] = '=';
            }
            o++;
            i++;
        }
        else if (i + 1 < n && qp_is_hex(in[i]) && qp_is_hex(in[i + 1])) {
            if (out != NULL) {
                out[o] = (unsigned char)((qp_hex_value(in[i]) << 4) | qp_hex_value(in[i + 1]));
            }
            o++;
            i += 2;
        }
        else { /* not an escape: the "=" stays, the next byte is read again */
            if (out != NULL) {
                out[o] = '=';
            }
            o++;
        }
    }
    return o;
}

PyDoc_STRVAR(qp_decode_doc,
"qp_decode(data, /)\n--\n\n"
"binascii.a2b_qp(data): the decoder qp_encode_lines checks its lines with, exposed for the differential tests.");

static PyObject *
speedups_qp_decode(PyObject *module, PyObject *data)
{
    PyObject *result;
    Py_ssize_t n;
    (void)module;
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "qp_decode() takes bytes");
        return NULL;
    }
    n = PyBytes_GET_SIZE(data);
    result = PyBytes_FromStringAndSize(NULL, n);
    if (result == NULL) {
        return NULL;
    }
    n = qp_decode_write((const unsigned char *)PyBytes_AS_STRING(data), n, (unsigned char *)PyBytes_AS_STRING(result));
    if (_PyBytes_Resize(&result, n) < 0) {
        return NULL;
    }
    return result;
}

/* The certificate qp_encode_lines gives with its body: 1 when the body reads back (a2b_qp, then the codec) as
 * intended, by construction. It holds when
 *   - the lines are the body's, in order, each but the last ending in LF (split_lines made them): a2b_qp reads
 *     each piece ending in LF on its own (every step it takes ends at or before the piece's LF), so the decoded
 *     body is the pieces decoded, one after another, for the old body and for the new one;
 *   - where each group starts and ends, the old decoded bytes and the text agree: the same number of characters
 *     before it (UTF-8: the bytes that start one; ASCII and Latin-1: the bytes), at a character's first byte;
 *     then every untouched run of lines decodes to its own span of the text;
 *   - the text between the groups is in intended, where the growth before it puts it, and intended is as long
 *     as the text and the changes' growth: intended is those runs and the groups' slices, one after another
 *     (and the changes are in order, apart, each within its group's span, as the slices assume);
 *   - each group's bytes came from a strict encode (they decode back to its slice), and its written lines
 *     a2b_qp-decode back to those bytes, and end in LF unless the body ends with them.
 * Given: decoded is binascii.a2b_qp(body), and the text (size characters) is decoded read in the codec, as
 * transfer.decode_part made them; their lengths are checked (all of decoded is walked, to the text's end).
 * The codec being stateless with one spelling per character (mode 1: UTF-8, 2: ASCII or Latin-1), what decodes
 * piece by piece decodes whole. */
typedef struct {
    const unsigned char *body, *decoded;
    Py_ssize_t body_size, decoded_size;
    int mode;
    Py_ssize_t line; /* the next line to walk to */
    Py_ssize_t raw_at, decoded_at, chars_at; /* where that line starts: in the body, decoded, in characters */
    Py_ssize_t last_offset;
} LinesCheck;

/* Walks to line index i (a group's first line or one past its last) and checks that the text offset there
 * (offsets[i], or size at the end) is where the decoded bytes say it is. */
static int
lines_check_boundary(LinesCheck *check, PyObject *lines, const Py_ssize_t *offsets, Py_ssize_t count, Py_ssize_t size,
                     Py_ssize_t i)
{
    Py_ssize_t raw_to = check->raw_at, decoded_to, offset = i < count ? offsets[i] : size;
    if (i < check->line || offset < check->last_offset) {
        return 0;
    }
    for (; check->line < i; check->line++) {
        raw_to += PyBytes_GET_SIZE(PyList_GET_ITEM(lines, check->line));
    }
    decoded_to = check->decoded_at + qp_decode_write(check->body + check->raw_at, raw_to - check->raw_at, NULL);
    if (decoded_to > check->decoded_size) {
        return 0;
    }
    if (check->mode == 1) {
        Py_ssize_t k, starts = 0;
        for (k = check->decoded_at; k < decoded_to; k++) {
            starts += (check->decoded[k] & 0xC0) != 0x80;
        }
        check->chars_at += starts;
        if (decoded_to < check->decoded_size && (check->decoded[decoded_to] & 0xC0) == 0x80) {
            return 0; /* inside a character */
        }
    }
    else {
        check->chars_at = decoded_to;
    }
    check->raw_at = raw_to;
    check->decoded_at = decoded_to;
    check->last_offset = offset;
    return check->chars_at == offset;
}

PyDoc_STRVAR(qp_encode_lines_doc,
"qp_encode_lines(lines, offsets, size, changes, intended, codec, rest_codec, errors, eol, body, decoded, mode,\n"
"                text, /)\n"
"--\n\n"
"(body, exact): the quoted-printable body with only the touched lines written again, and whether it reads back\n"
"as intended by construction; or None to let the pure function decide. The body is\n"
"mailtrack.core.mime.transfer._encode_lines_pure's for a quoted-printable part.");

static PyObject *
speedups_qp_encode_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *lines, *offsets_list, *changes, *intended, *encoded = NULL, *result = NULL;
    const char *codec, *rest_codec, *errors, *eol;
    Py_ssize_t count, size, n_changes, n_groups = 0, i, g, shift = 0, total = 0, done = 0, o = 0, eol_size;
    Py_ssize_t *offsets = NULL, *owner = NULL;
    LinesGroup *groups = NULL;
    unsigned char *scratch = NULL;
    int ends_with_break, exact, strict_errors;
    long mode;
    char *out;
    (void)module;
    if (nargs != 13 || !PyList_CheckExact(args[0]) || !PyList_CheckExact(args[1]) || !PyLong_CheckExact(args[2]) ||
        !PyList_CheckExact(args[3]) || !PyUnicode_CheckExact(args[4]) || !PyUnicode_Check(args[5]) ||
        !PyUnicode_Check(args[6]) || !PyUnicode_Check(args[7]) || !PyBytes_Check(args[8]) || !PyLong_Check(args[11])) {
        Py_RETURN_NONE;
    }
    lines = args[0];
    offsets_list = args[1];
    changes = args[3];
    intended = args[4];
    size = PyLong_AsSsize_t(args[2]);
    mode = PyLong_AsLong(args[11]);
    if ((size == -1 || mode == -1) && PyErr_Occurred()) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    exact = (mode == 1 || mode == 2) && PyBytes_Check(args[9]) && PyBytes_Check(args[10]) &&
        PyUnicode_Check(args[12]) && PyUnicode_GET_LENGTH(args[12]) == size;
    codec = PyUnicode_AsUTF8(args[5]);
    rest_codec = PyUnicode_AsUTF8(args[6]);
    errors = PyUnicode_AsUTF8(args[7]);
    if (codec == NULL || rest_codec == NULL || errors == NULL) {
        return NULL;
    }
    strict_errors = strcmp(errors, "strict") == 0;
    eol = PyBytes_AS_STRING(args[8]);
    eol_size = PyBytes_GET_SIZE(args[8]);
    count = PyList_GET_SIZE(lines);
    n_changes = PyList_GET_SIZE(changes);
    if (PyList_GET_SIZE(offsets_list) != count || eol_size > 16 || size < 0 || size > PY_SSIZE_T_MAX / 4) {
        Py_RETURN_NONE;
    }
    for (i = 0; i < count; i++) {
        if (!PyBytes_CheckExact(PyList_GET_ITEM(lines, i))) {
            Py_RETURN_NONE;
        }
    }
    offsets = PyMem_New(Py_ssize_t, count > 0 ? count : 1);
    owner = PyMem_New(Py_ssize_t, n_changes > 0 ? n_changes : 1);
    groups = PyMem_New(LinesGroup, n_changes > 0 ? n_changes : 1);
    encoded = PyList_New(0);
    if (offsets == NULL || owner == NULL || groups == NULL || encoded == NULL) {
        if (encoded != NULL) {
            PyErr_NoMemory();
        }
        goto done;
    }
    for (i = 0; i < count; i++) {
        if (!lines_ssize(offsets_list, i, &offsets[i]) || offsets[i] < 0 || offsets[i] > size) {
            goto fallback; /* (line starts are in the text: outside it, begin + before below could overflow) */
        }
    }
    {
        PyObject *last_line = count > 0 ? PyList_GET_ITEM(lines, count - 1) : NULL;
        ends_with_break = last_line == NULL ||
            (PyBytes_GET_SIZE(last_line) > 0 && PyBytes_AS_STRING(last_line)[PyBytes_GET_SIZE(last_line) - 1] == '\n');
    }
    /* The groups, as the pure loop forms them. */
    for (i = 0; i < n_changes; i++) {
        PyObject *change = PyList_GET_ITEM(changes, i), *replacement;
        Py_ssize_t start, end, growth, first, last, replacement_length;
        int ends_with_newline;
        if (!PyTuple_CheckExact(change) || PyTuple_GET_SIZE(change) != 3 ||
            !PyLong_CheckExact(PyTuple_GET_ITEM(change, 0)) || !PyLong_CheckExact(PyTuple_GET_ITEM(change, 1)) ||
            !PyUnicode_CheckExact(PyTuple_GET_ITEM(change, 2))) {
            goto fallback;
        }
        start = PyLong_AsSsize_t(PyTuple_GET_ITEM(change, 0));
        end = PyLong_AsSsize_t(PyTuple_GET_ITEM(change, 1));
        if ((start == -1 || end == -1) && PyErr_Occurred()) {
            PyErr_Clear();
            goto fallback;
        }
        if (start < 0 || end < 0 || start > size || end > size) {
            goto fallback; /* never given: a pure slice would count from the end */
        }
        replacement = PyTuple_GET_ITEM(change, 2);
        replacement_length = PyUnicode_GET_LENGTH(replacement);
        ends_with_newline = replacement_length > 0 &&
            PyUnicode_READ_CHAR(replacement, replacement_length - 1) == '\n';
        growth = replacement_length - (end - start);
        first = lines_bisect_right(offsets, count, start) - 1;
        if (start == end && ((start == size && ends_with_break) ||
                             (first >= 0 && offsets[first] == start && ends_with_newline))) {
            first = (start == size && ends_with_break) ? count : lines_bisect_left(offsets, count, start);
            last = first - 1;
        }
        else {
            if (first < 0) {
                first = 0;
            }
            last = (first + 1 >= count || end <= offsets[first + 1]) ? first
                : lines_bisect_right(offsets, count, end - 1) - 1;
        }
        if (n_groups > 0 && (first <= groups[n_groups - 1].last ||
                             (groups[n_groups - 1].last < groups[n_groups - 1].first &&
                              groups[n_groups - 1].first == first))) {
            LinesGroup *previous = &groups[n_groups - 1];
            if (last > previous->last) {
                previous->last = last;
            }
            previous->growth += growth;
        }
        else {
            groups[n_groups].first = first;
            groups[n_groups].last = last;
            groups[n_groups].before = shift;
            groups[n_groups].growth = growth;
            n_groups++;
        }
        owner[i] = n_groups - 1;
        shift += growth;
    }
    /* Each group's text encoded in the part's charset (what may raise, raises here, in the pure loop's order). */
    for (g = 0; g < n_groups; g++) {
        LinesGroup *group = &groups[g];
        Py_ssize_t begin, stop, from, to;
        const char *group_codec = group->first > 0 ? rest_codec : codec;
        PyObject *piece, *data = NULL;
        int status;
        if (group->first < 0 || group->first > count || group->last < -1 || group->last >= count) {
            goto fallback;
        }
        begin = group->first < count ? offsets[group->first] : size;
        stop = group->last + 1 < count ? offsets[group->last + 1] : size;
        from = begin + group->before;
        to = stop + group->before + group->growth;
        if (from < 0 || to < 0) {
            goto fallback; /* a pure slice would count from the end */
        }
        piece = PyUnicode_Substring(intended, from, to < from ? from : to);
        if (piece == NULL) {
            goto done;
        }
        if (exact && !strict_errors) {
            /* Strict first: the same bytes when it succeeds (an error handler only runs on a failure), and then
             * they decode back; when a character needs the handler, the body is written as the pure loop writes
             * it, but not certified. */
            data = PyUnicode_AsEncodedString(piece, group_codec, "strict");
            if (data == NULL) {
                PyErr_Clear(); /* encoded again below, with errors: what that raises, the pure loop raises */
                exact = 0;
            }
        }
        if (data == NULL) {
            data = PyUnicode_AsEncodedString(piece, group_codec, errors);
        }
        Py_DECREF(piece);
        if (data == NULL) {
            goto done;
        }
        if (!PyBytes_Check(data)) {
            Py_DECREF(data);
            goto fallback;
        }
        status = PyList_Append(encoded, data);
        Py_DECREF(data);
        if (status < 0) {
            goto done;
        }
    }
    /* The size: untouched lines as they are, each group's lines at most qp_bound of its bytes. */
    for (g = 0, done = 0; g <= n_groups; g++) {
        Py_ssize_t upto = g < n_groups ? groups[g].first : count, bound;
        for (i = done; i < upto; i++) {
            Py_ssize_t line_size = PyBytes_GET_SIZE(PyList_GET_ITEM(lines, i));
            if (total > PY_SSIZE_T_MAX - line_size) {
                goto too_large;
            }
            total += line_size;
        }
        if (g == n_groups) {
            break;
        }
        bound = qp_bound(PyBytes_GET_SIZE(PyList_GET_ITEM(encoded, g)), eol_size);
        if (bound < 0 || total > PY_SSIZE_T_MAX - bound) {
            goto too_large;
        }
        total += bound;
        if (groups[g].last + 1 > done) {
            done = groups[g].last + 1;
        }
    }
    result = PyBytes_FromStringAndSize(NULL, total);
    if (result == NULL) {
        goto done;
    }
    out = PyBytes_AS_STRING(result);
    for (g = 0, done = 0; g <= n_groups; g++) {
        Py_ssize_t upto = g < n_groups ? groups[g].first : count, written;
        PyObject *data;
        for (i = done; i < upto; i++) {
            PyObject *line = PyList_GET_ITEM(lines, i);
            memcpy(out + o, PyBytes_AS_STRING(line), (size_t)PyBytes_GET_SIZE(line));
            o += PyBytes_GET_SIZE(line);
        }
        if (g == n_groups) {
            break;
        }
        data = PyList_GET_ITEM(encoded, g);
        written = qp_write((const unsigned char *)PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), eol, eol_size, out + o);
        if (exact) {
            /* The group's lines decode back to its bytes, and end in LF unless nothing follows them. */
            Py_ssize_t back;
            PyMem_Free(scratch);
            scratch = PyMem_Malloc(written > 0 ? (size_t)written : 1);
            if (scratch == NULL) {
                PyErr_NoMemory();
                Py_CLEAR(result);
                goto done;
            }
            back = qp_decode_write((const unsigned char *)out + o, written, scratch);
            if (back != PyBytes_GET_SIZE(data) || memcmp(scratch, PyBytes_AS_STRING(data), (size_t)back) != 0 ||
                (groups[g].last + 1 < count && (written == 0 || out[o + written - 1] != '\n'))) {
                exact = 0;
            }
        }
        o += written;
        if (groups[g].last + 1 > done) {
            done = groups[g].last + 1;
        }
    }
    if (_PyBytes_Resize(&result, o) < 0) {
        result = NULL;
        goto done;
    }
    if (exact) {
        /* The lines are the body's, each but the last ending in LF. */
        const char *body = PyBytes_AS_STRING(args[9]);
        Py_ssize_t at = 0, body_size = PyBytes_GET_SIZE(args[9]);
        for (i = 0; i < count && exact; i++) {
            PyObject *line = PyList_GET_ITEM(lines, i);
            Py_ssize_t line_size = PyBytes_GET_SIZE(line);
            if (line_size > body_size - at || memcmp(body + at, PyBytes_AS_STRING(line), (size_t)line_size) != 0 ||
                (i + 1 < count && (line_size == 0 || PyBytes_AS_STRING(line)[line_size - 1] != '\n'))) {
                exact = 0;
            }
            at += line_size;
        }
        exact = exact && at == body_size;
    }
    if (exact) {
        /* intended is the text with each group's span replaced by its slice: the text between the groups is in
         * intended, moved by the growth before it (compared in place: both strs of one kind, else no certificate),
         * and intended is as long as the text and every change's growth. */
        PyObject *text = args[12];
        int kind = PyUnicode_KIND(text);
        const char *text_data = (const char *)PyUnicode_DATA(text);
        const char *intended_data = (const char *)PyUnicode_DATA(intended);
        Py_ssize_t from = 0;
        exact = kind == (int)PyUnicode_KIND(intended) && PyUnicode_GET_LENGTH(intended) == size + shift;
        for (g = 0; g <= n_groups && exact; g++) {
            Py_ssize_t upto = g < n_groups ? (groups[g].first < count ? offsets[groups[g].first] : size) : size;
            Py_ssize_t moved = g < n_groups ? groups[g].before : shift;
            exact = from <= upto && upto <= size && from + moved >= 0 && upto + moved <= size + shift &&
                memcmp(text_data + from * kind, intended_data + (from + moved) * kind, (size_t)((upto - from) * kind)) == 0;
            if (g < n_groups) {
                from = groups[g].last + 1 < count ? offsets[groups[g].last + 1] : size;
            }
        }
    }
    if (exact) {
        /* The changes in order, apart, each within its group's span. */
        Py_ssize_t previous_end = 0;
        for (i = 0; i < n_changes && exact; i++) {
            PyObject *change = PyList_GET_ITEM(changes, i);
            Py_ssize_t start = PyLong_AsSsize_t(PyTuple_GET_ITEM(change, 0));
            Py_ssize_t end = PyLong_AsSsize_t(PyTuple_GET_ITEM(change, 1));
            const LinesGroup *group = &groups[owner[i]];
            Py_ssize_t begin = group->first < count ? offsets[group->first] : size;
            Py_ssize_t stop = group->last + 1 < count ? offsets[group->last + 1] : size;
            exact = start >= previous_end && end >= start && start >= begin && end <= stop;
            previous_end = end;
        }
    }
    if (exact) {
        /* Where each group starts and ends, the decoded bytes and the text agree. */
        LinesCheck check;
        check.body = (const unsigned char *)PyBytes_AS_STRING(args[9]);
        check.body_size = PyBytes_GET_SIZE(args[9]);
        check.decoded = (const unsigned char *)PyBytes_AS_STRING(args[10]);
        check.decoded_size = PyBytes_GET_SIZE(args[10]);
        check.mode = (int)mode;
        check.line = check.raw_at = check.decoded_at = check.chars_at = check.last_offset = 0;
        for (g = 0; g < n_groups && exact; g++) {
            exact = lines_check_boundary(&check, lines, offsets, count, size, groups[g].first) &&
                lines_check_boundary(&check, lines, offsets, count, size, groups[g].last + 1);
        }
        /* and at the end: all of the decoded bytes, all of the text (decoded is the body's, read as the text) */
        exact = exact && lines_check_boundary(&check, lines, offsets, count, size, count) &&
            check.decoded_at == check.decoded_size;
    }
    {
        PyObject *pair = Py_BuildValue("(NO)", result, exact ? Py_True : Py_False);
        result = pair; /* Py_BuildValue took the body ("N"), even on failure */
    }
    goto done;
too_large:
    PyErr_SetString(PyExc_OverflowError, "qp_encode_lines() output too large");
    goto done;
fallback:
    result = Py_None;
    Py_INCREF(result);
done:
    PyMem_Free(offsets);
    PyMem_Free(owner);
    PyMem_Free(groups);
    PyMem_Free(scratch);
    Py_XDECREF(encoded);
    return result;
}

PyDoc_STRVAR(max_line_length_doc,
"max_line_length(data, /)\n--\n\n"
"The length of the longest line of data, CR, LF and CRLF all ending one (0 for no data):\n"
"mailtrack.core.mime.transfer._max_line_length_pure, without the copies.");

static PyObject *
speedups_max_line_length(PyObject *module, PyObject *data)
{
    const unsigned char *at, *stop;
    Py_ssize_t longest = 0;
    (void)module;
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "max_line_length() takes bytes");
        return NULL;
    }
    at = (const unsigned char *)PyBytes_AS_STRING(data);
    stop = at + PyBytes_GET_SIZE(data);
    /* LF by LF with memchr (a line is tens of bytes: a byte loop took 13 instructions a byte); a CR can only cut
     * a stretch between LFs shorter, so only a stretch longer than the longest line so far is looked into. */
    for (;;) {
        const unsigned char *newline = memchr(at, '\n', (size_t)(stop - at));
        const unsigned char *end = newline != NULL ? newline : stop;
        if (end - at > longest) {
            const unsigned char *from = at;
            for (;;) {
                const unsigned char *cr = memchr(from, '\r', (size_t)(end - from));
                const unsigned char *line_end = cr != NULL ? cr : end;
                if (line_end - from > longest) {
                    longest = line_end - from;
                }
                if (cr == NULL) {
                    break;
                }
                from = cr + 1;
            }
        }
        if (newline == NULL) {
            break;
        }
        at = newline + 1;
    }
    return PyLong_FromSsize_t(longest);
}

PyDoc_STRVAR(header_block_doc,
"header_block(raw, start, end, /)\n--\n\n"
"The header fields of raw[start:end] as (name, start, end) tuples, where the last one ends and where the body\n"
"starts: mailtrack.core.mime.tree._header_block_pure, in one call.");

/* A header block is read line by line, three times a message (the message and each part); in Python each line
 * cost a regular-expression search, a match, a slice, a split and a decode: 18 microseconds a block of 8 fields
 * (4.5 here, most of it the Field objects), about 5 % of a batch worker's time on a 33 KB newsletter. The
 * rules are _header_block_pure's, character for character: a line ends at CRLF, CR or LF (a CR at the end of
 * the span is a line end of its own); a blank line ends the block (the body starts after it);
 * a line that is none of "From " (an envelope line, kept under no name), a blank-led continuation or a name of
 * printable characters but ":" then ":", starts the body; a continuation extends the field before it, if any. */
static PyObject *
speedups_header_block(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    const unsigned char *raw;
    Py_ssize_t start, end, pos, header_end, body_start;
    PyObject *fields, *result;
    (void)module;
    if (bytes_span_args(args, nargs, "header_block", "raw", &start, &end) < 0) {
        return NULL;
    }
    raw = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    fields = PyList_New(0);
    if (fields == NULL) {
        return NULL;
    }
    pos = start;
    header_end = body_start = end;
    while (pos < end) {
        const unsigned char *line = raw + pos;
        Py_ssize_t stop = pos, line_end, size, k;
        while (stop < end && raw[stop] != '\n' && raw[stop] != '\r') {
            stop++;
        }
        line_end = stop == end ? end : (raw[stop] == '\r' && stop + 1 < end && raw[stop + 1] == '\n') ? stop + 2 : stop + 1;
        size = line_end - pos;
        if ((size == 1 && (line[0] == '\n' || line[0] == '\r')) || (size == 2 && line[0] == '\r' && line[1] == '\n')) {
            header_end = pos;
            body_start = line_end;
            break;
        }
        if (line[0] == ' ' || line[0] == '\t') {
            Py_ssize_t count = PyList_GET_SIZE(fields);
            if (count > 0) {
                PyObject *previous = PyList_GET_ITEM(fields, count - 1), *span_end = PyLong_FromSsize_t(line_end);
                if (span_end == NULL) {
                    Py_DECREF(fields);
                    return NULL;
                }
                Py_SETREF(((PyTupleObject *)previous)->ob_item[2], span_end); /* our own tuple, not shared yet */
            }
        }
        else {
            PyObject *name, *field;
            int status;
            if (size >= 5 && memcmp(line, "From ", 5) == 0) {
                name = PyUnicode_New(0, 127);
            }
            else {
                for (k = 0; k < size && line[k] >= 0x21 && line[k] <= 0x7e && line[k] != ':'; k++) {
                }
                if (k == size || line[k] != ':') {
                    header_end = body_start = pos; /* not a header line: the body starts here */
                    break;
                }
                name = PyUnicode_New(k, 127);
                if (name != NULL) {
                    Py_UCS1 *chars = PyUnicode_1BYTE_DATA(name);
                    Py_ssize_t j;
                    for (j = 0; j < k; j++) {
                        chars[j] = (Py_UCS1)(line[j] >= 'A' && line[j] <= 'Z' ? line[j] + 32 : line[j]);
                    }
                }
            }
            if (name == NULL) {
                Py_DECREF(fields);
                return NULL;
            }
            field = Py_BuildValue("(Nnn)", name, pos, line_end);
            if (field == NULL) {
                Py_DECREF(fields);
                return NULL;
            }
            status = PyList_Append(fields, field);
            Py_DECREF(field);
            if (status < 0) {
                Py_DECREF(fields);
                return NULL;
            }
        }
        pos = line_end;
    }
    result = Py_BuildValue("(Nnn)", fields, header_end, body_start);
    return result;
}
