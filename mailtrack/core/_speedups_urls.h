/* find_urls: the compiled twin of mailtrack.core.urlfinder.find_urls_pure (included by _speedups.c only).
 *
 * The pure finder runs the regular expression
 *
 *     [hH](?<![A-Za-z0-9].)[tT][tT][pP][sS]?://[^\s<>"]+
 *
 * with finditer (leftmost, non-overlapping: the next search starts where the
 * match ended, before any trimming), then trims each match as a reader would
 * (_trim: trailing punctuation and closing quotes, except the "*" of a
 * Mailchimp "|*", and a closing bracket with no opening partner left in the
 * URL). This is that loop, character by character over the str's own kind:
 * the regex engine tested each position for the "h" and built a match object
 * per URL, and _trim ran in Python; on a newsletter's text part that was a
 * sixth of rewrite_message. \s is the regex engine's Unicode whitespace
 * (Py_UNICODE_ISSPACE, what sre's category test calls); the look-behind needs
 * two characters before the one after the "h", so an "h" at the start is
 * never glued, and "." there is any character but a newline (the "h" itself).
 * The differential tests compare both on generated texts.
 */

/* _TRAILING, as code points: sentence punctuation, closing quotes, an emphasis mark. */
static int
url_trailing(Py_UCS4 c)
{
    switch (c) {
    case '.': case ',': case ';': case ':': case '!': case '?': case '\'': case '*':
    case 0x2019: case 0x201d: case 0x00bb:
        return 1;
    default:
        return 0;
    }
}

/* _trim(text, start, end): where a reader would say the URL ends. */
static Py_ssize_t
url_trim(int kind, const void *data, Py_ssize_t start, Py_ssize_t end)
{
    static const Py_UCS4 closers[3] = {')', ']', '}'}, openers[3] = {'(', '[', '{'};
    Py_ssize_t surplus[3];
    int known[3] = {0, 0, 0};
    while (end > start) {
        Py_UCS4 last = PyUnicode_READ(kind, data, end - 1);
        int which;
        if (url_trailing(last)) {
            if (last == '*' && end - 2 >= 0 && PyUnicode_READ(kind, data, end - 2) == '|') {
                break; /* the end of a Mailchimp merge tag *|X|*, not emphasis */
            }
            end -= 1;
            continue;
        }
        which = last == ')' ? 0 : last == ']' ? 1 : last == '}' ? 2 : -1;
        if (which >= 0) {
            if (!known[which]) { /* its count minus its partner's in text[start:end], once; kept up to date */
                Py_ssize_t i, excess = 0;
                for (i = start; i < end; i++) {
                    Py_UCS4 c = PyUnicode_READ(kind, data, i);
                    excess += (c == closers[which]) - (c == openers[which]);
                }
                surplus[which] = excess;
                known[which] = 1;
            }
            if (surplus[which] > 0) {
                surplus[which] -= 1;
                end -= 1;
                continue;
            }
        }
        break;
    }
    return end;
}

#define URL_LOWER(c) ((c) >= 'A' && (c) <= 'Z' ? (c) + 32 : (c))
#define URL_ALNUM(c) (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z') || ((c) >= '0' && (c) <= '9'))

PyDoc_STRVAR(find_urls_doc,
"find_urls(text, /)\n--\n\n"
"[(start, end), ...] of every http(s) URL in text, in order: what\n"
"mailtrack.core.urlfinder.find_urls_pure yields.");

static PyObject *
speedups_find_urls(PyObject *module, PyObject *text)
{
    int kind;
    const void *data;
    Py_ssize_t n, i = 0;
    PyObject *spans;
    (void)module;
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "find_urls() takes a str, not %.80s", Py_TYPE(text)->tp_name);
        return NULL;
    }
    kind = PyUnicode_KIND(text);
    data = PyUnicode_DATA(text);
    n = PyUnicode_GET_LENGTH(text);
    spans = PyList_New(0);
    if (spans == NULL) {
        return NULL;
    }
    /* the shortest match is "http://" and one character: 8 */
    while (i + 8 <= n) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        Py_ssize_t j, end;
        if ((c != 'h' && c != 'H') || (i >= 1 && URL_ALNUM(PyUnicode_READ(kind, data, i - 1))) ||
            URL_LOWER(PyUnicode_READ(kind, data, i + 1)) != 't' || URL_LOWER(PyUnicode_READ(kind, data, i + 2)) != 't' ||
            URL_LOWER(PyUnicode_READ(kind, data, i + 3)) != 'p') {
            i++;
            continue;
        }
        j = i + 4;
        if (URL_LOWER(PyUnicode_READ(kind, data, j)) == 's') {
            j++;
        }
        if (j + 4 > n || PyUnicode_READ(kind, data, j) != ':' || PyUnicode_READ(kind, data, j + 1) != '/' ||
            PyUnicode_READ(kind, data, j + 2) != '/') {
            i++;
            continue;
        }
        end = j + 3;
        while (end < n) {
            Py_UCS4 d = PyUnicode_READ(kind, data, end);
            if (d == '<' || d == '>' || d == '"' || Py_UNICODE_ISSPACE(d)) {
                break;
            }
            end++;
        }
        if (end == j + 3) { /* "[^\s<>\"]+" needs one character */
            i++;
            continue;
        }
        {
            Py_ssize_t trimmed = url_trim(kind, data, i, end);
            if (trimmed > i && append_span(spans, i, trimmed) < 0) {
                Py_DECREF(spans);
                return NULL;
            }
        }
        i = end; /* finditer: the next search starts where this match ended */
    }
    return spans;
}

#undef URL_LOWER
#undef URL_ALNUM
