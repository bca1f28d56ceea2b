/* qp_lines: quoted-printable for whole lines of a rewritten MIME part (included by _speedups.c only).
 *
 *   qp_lines(data, eol) -> bytes
 *       mailtrack.core.mime.transfer._qp_lines_pure(data, eol), byte for byte: each line of data (only LF ends
 *       one; its "\n" or "\r\n" is kept as it was) written as binascii.b2a_qp(content, quotetabs=False,
 *       istext=False, header=False) writes it, every soft line break ending in eol. The rules below are
 *       binascii's for those arguments (CPython's Modules/binascii.c); here they run over all the lines of a
 *       group of touched lines in one call and one allocation, where the pure function splits the lines with a
 *       regular expression and calls b2a_qp once per line.
 */

#define QP_MAX_LINE 76 /* binascii's MAXLINESIZE: a soft break keeps every written line under it */

static const char qp_hex[] = "0123456789ABCDEF";

/* A byte b2a_qp always writes as it is, wherever it is: printable ASCII but "=" and "." (which it escapes at the
 * start of a line holding nothing else). Spaces and tabs are not: it escapes them at the end of a line. */
#define QP_PLAIN(c) ((c) > 32 && (c) < 127 && (c) != '=' && (c) != '.')

/* Whether b2a_qp(content, quotetabs=False, istext=False, header=False) writes line[i] as "=XX" (n: the content's
 * length, column: the written line's length so far). */
static inline int
qp_must_encode(const unsigned char *line, Py_ssize_t n, Py_ssize_t i, Py_ssize_t column)
{
    unsigned char c = line[i];
    if (c > 126 || c == '=' || c == '\r' || c == '\n') {
        return 1;
    }
    if (c == '.' && column == 0 && (i + 1 == n || line[i + 1] == '\n' || line[i + 1] == '\r' || line[i + 1] == 0)) {
        return 1; /* a lone "." on a line: SMTP would read it as the end of the message */
    }
    if (c == '\t' || c == ' ') {
        return i + 1 == n; /* trailing white space (a transport may strip it) */
    }
    return c < 33;
}

/* The most bytes qp_write writes for n input bytes (3 per byte, and a soft break, "=" + eol, per 25 of them: 25
 * escapes fill a line); -1 when that does not fit a Py_ssize_t. */
static Py_ssize_t
qp_bound(Py_ssize_t n, Py_ssize_t eol_size)
{
    if (n < 0 || eol_size < 0 || eol_size > 16 || n > (PY_SSIZE_T_MAX - 64) / 4 / (2 + eol_size)) {
        return -1;
    }
    return 3 * n + (n / 25 + 2) * (1 + eol_size);
}

/* Writes the quoted-printable lines of in[0:n] at out (room for qp_bound(n, eol_size) bytes); returns how many. */
static Py_ssize_t
qp_write(const unsigned char *in, Py_ssize_t n, const char *eol, Py_ssize_t eol_size, char *out)
{
    Py_ssize_t o = 0, start = 0;
    while (start < n) {
        const unsigned char *newline = memchr(in + start, '\n', (size_t)(n - start));
        Py_ssize_t stop = newline != NULL ? (Py_ssize_t)(newline - in) + 1 : n; /* the line, its ending included */
        Py_ssize_t end = stop, i, column = 0, size;
        const unsigned char *line = in + start;
        if (newline != NULL) {
            end = stop - 1;
            if (end > start && in[end - 1] == '\r') {
                end--;
            }
        }
        size = end - start;
        for (i = 0; i < size; i++) {
            unsigned char c = line[i];
            if (QP_PLAIN(c)) {
                /* A run of bytes always written as they are: copied a stretch at a time, soft-breaking where the
                 * byte by byte rule below would (before a byte at column 75, unless it ends the line). */
                Py_ssize_t run = i + 1;
                while (run < size && QP_PLAIN(line[run])) {
                    run++;
                }
                while (i < run) {
                    Py_ssize_t room;
                    if (column >= QP_MAX_LINE - 1) {
                        if (i + 1 == size) {
                            out[o++] = (char)line[i++];
                            column++;
                            continue;
                        }
                        out[o++] = '=';
                        memcpy(out + o, eol, (size_t)eol_size);
                        o += eol_size;
                        column = 0;
                    }
                    room = QP_MAX_LINE - 1 - column;
                    if (room > run - i) {
                        room = run - i;
                    }
                    memcpy(out + o, line + i, (size_t)room);
                    o += room;
                    i += room;
                    column += room;
                }
                i--; /* the for loop's i++ */
                continue;
            }
            if (qp_must_encode(line, size, i, column)) {
                if (column + 3 >= QP_MAX_LINE) {
                    out[o++] = '=';
                    memcpy(out + o, eol, (size_t)eol_size);
                    o += eol_size;
                    column = 0;
                }
                out[o++] = '=';
                out[o++] = qp_hex[c >> 4];
                out[o++] = qp_hex[c & 15];
                column += 3;
            }
            else {
                if (i + 1 != size && column + 1 >= QP_MAX_LINE) {
                    out[o++] = '=';
                    memcpy(out + o, eol, (size_t)eol_size);
                    o += eol_size;
                    column = 0;
                }
                out[o++] = (char)c;
                column++;
            }
        }
        memcpy(out + o, in + end, (size_t)(stop - end)); /* the line's own ending, as it was */
        o += stop - end;
        start = stop;
    }
    return o;
}

PyDoc_STRVAR(qp_lines_doc,
"qp_lines(data, eol, /)\n--\n\n"
"Quoted-printable for the whole lines of data, each ending as it did, soft breaks ending in eol:\n"
"mailtrack.core.mime.transfer._qp_lines_pure, in one call.");

static PyObject *
speedups_qp_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    const unsigned char *in;
    const char *eol;
    Py_ssize_t n, eol_size, bound, o;
    PyObject *result;
    (void)module;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "qp_lines() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (!PyBytes_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "qp_lines() takes bytes and bytes");
        return NULL;
    }
    in = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    n = PyBytes_GET_SIZE(args[0]);
    eol = PyBytes_AS_STRING(args[1]);
    eol_size = PyBytes_GET_SIZE(args[1]);
    bound = qp_bound(n, eol_size);
    if (bound < 0) {
        PyErr_SetString(PyExc_OverflowError, "qp_lines() input too large");
        return NULL;
    }
    result = PyBytes_FromStringAndSize(NULL, bound);
    if (result == NULL) {
        return NULL;
    }
    o = qp_write(in, n, eol, eol_size, PyBytes_AS_STRING(result));
    if (_PyBytes_Resize(&result, o) < 0) {
        return NULL;
    }
    return result;
}
