/* The scanner of mailtrack/core/scanner.py, for one character width.
 *
 * Included by _speedups.c once per str kind (UCS1, UCS2, UCS4) with CHAR (the
 * code unit type), SUFFIX (appended to every function name) and CHAR_IS_UCS1
 * defined. Every function reads s[pos] only for pos < end, and end never
 * exceeds the length of the str: nothing is read past the buffer. Every loop
 * moves forward, and each character is visited a bounded number of times (a
 * tag's attributes twice at most, a conditional comment's content twice), so
 * the scan is linear in the input.
 *
 * The comments name the alternative of the Python master expression each
 * branch stands for; the Python module is the reference.
 */

#define SCAN_CAT_(a, b) a##_##b
#define SCAN_CAT(a, b) SCAN_CAT_(a, b)
#define FN(name) SCAN_CAT(name, SUFFIX)

/* The first ch in s[pos:end], or -1. */
static inline Py_ssize_t
FN(find_char)(const CHAR *s, Py_ssize_t pos, Py_ssize_t end, Py_UCS4 ch)
{
    if (pos >= end) {
        return -1;
    }
#if CHAR_IS_UCS1
    {
        const void *hit = memchr(s + pos, (int)ch, (size_t)(end - pos));
        return hit == NULL ? -1 : (Py_ssize_t)((const CHAR *)hit - s);
    }
#else
    for (; pos < end; pos++) {
        if (s[pos] == ch) {
            return pos;
        }
    }
    return -1;
#endif
}

/* Does s[at:at+len(lit)] equal lit (lower-case ASCII), ASCII case-insensitively? */
static inline int
FN(match_ci)(const CHAR *s, Py_ssize_t at, Py_ssize_t end, const char *lit, Py_ssize_t len)
{
    Py_ssize_t i;
    if (at < 0 || len > end - at) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        if (ASCII_LOWER(s[at + i]) != (Py_UCS4)(unsigned char)lit[i]) {
            return 0;
        }
    }
    return 1;
}

/* After "-->" or "--!>", the first one at or after pos (".*?--!?>"), or -1. */
static Py_ssize_t
FN(comment_end)(const CHAR *s, Py_ssize_t pos, Py_ssize_t end)
{
    for (;;) {
        Py_ssize_t q = FN(find_char)(s, pos, end, '-');
        if (q < 0 || end - q < 3) {
            return -1;
        }
        if (s[q + 1] == '-') {
            if (s[q + 2] == '>') {
                return q + 3;
            }
            if (s[q + 2] == '!' && end - q >= 4 && s[q + 3] == '>') {
                return q + 4;
            }
        }
        pos = q + 1;
    }
}

/* _TAG_TAIL: separators and attributes from pos up to the ">" of the tag.
 * Returns the offset after ">", or -1 when the input (s[:end]) ends first.
 * When href is not NULL, the first attribute named "href" is recorded in it
 * (_HREF: the value without quotes, or an empty value where it would start). */
static Py_ssize_t
FN(tag_tail)(const CHAR *s, Py_ssize_t pos, Py_ssize_t end, Href *href)
{
    for (;;) {
        Py_UCS4 c;
        Py_ssize_t name_start, name_end, q, value_start, value_end;
        int quote = QUOTE_NONE;

        if (pos >= end) {
            return -1;
        }
        c = s[pos];
        if (IS_WS(c) || c == '/') {
            pos++;
            continue;
        }
        if (c == '>') {
            return pos + 1;
        }
        /* _ATTR name: any first character but separators and ">" (so "=" too), then up to "=" */
        name_start = pos++;
        while (pos < end && !IS_NAME_END(s[pos]) && s[pos] != '=') {
            pos++;
        }
        name_end = pos;
        q = pos;
        while (q < end && IS_WS(s[q])) {
            q++;
        }
        if (q < end && s[q] == '=') {
            q++;
            while (q < end && IS_WS(s[q])) {
                q++;
            }
            if (q >= end) {
                return -1;
            }
            c = s[q];
            if (c == '"' || c == '\'') {
                Py_ssize_t close = FN(find_char)(s, q + 1, end, c);
                if (close < 0) {
                    return -1;
                }
                value_start = q + 1;
                value_end = close;
                pos = close + 1;
                quote = c == '"' ? QUOTE_DOUBLE : QUOTE_SINGLE;
            }
            else if (c == '>') { /* "(?=>)": an empty value where it would start */
                value_start = value_end = q;
                pos = q;
            }
            else { /* unquoted: up to whitespace or ">" */
                value_start = q++;
                while (q < end && !IS_WS(s[q]) && s[q] != '>') {
                    q++;
                }
                value_end = pos = q;
            }
        }
        else { /* no value: "(?![WS]*=)" */
            value_start = value_end = name_end;
        }
        if (href != NULL && !href->found && FN(match_ci)(s, name_start, name_end, "href", 4) &&
            name_end - name_start == 4) {
            href->found = 1;
            href->start = value_start;
            href->stop = value_end;
            href->quote = quote;
        }
    }
}

/* _RAW_END: the first "</name" followed by whitespace, "/" or ">" in s[pos:end], or -1. */
static Py_ssize_t
FN(raw_end)(const CHAR *s, Py_ssize_t pos, Py_ssize_t end, const char *name, Py_ssize_t len)
{
    for (;;) {
        Py_ssize_t p = FN(find_char)(s, pos, end, '<');
        if (p < 0) {
            return -1;
        }
        if (p + 2 + len < end && s[p + 1] == '/' && FN(match_ci)(s, p + 2, end, name, len) &&
            IS_NAME_END(s[p + 2 + len])) {
            return p;
        }
        pos = p + 1;
    }
}

/* What a start tag named s[start:stop] is to the scanner. */
static int
FN(classify)(const CHAR *s, Py_ssize_t start, Py_ssize_t stop, int conditional)
{
    Py_ssize_t len = stop - start, i;
    if (FN(match_ci)(s, start, stop, "a", 1) && len == 1) {
        return KIND_LINK;
    }
    if (len == 4 && FN(match_ci)(s, start, stop, "area", 4)) {
        return KIND_LINK;
    }
    if (conditional && len >= 3 && FN(match_ci)(s, start, stop, "v:", 2)) {
        return KIND_LINK; /* "v:[^WS/>]+" inside a conditional comment */
    }
    if (len == 4 && FN(match_ci)(s, start, stop, "body", 4)) {
        return KIND_BODY;
    }
    for (i = 0; i < N_RAW_TEXT; i++) {
        if (len == RAW_TEXT_LEN[i] && FN(match_ci)(s, start, stop, RAW_TEXT[i], len)) {
            return KIND_RAW + (int)i;
        }
    }
    return KIND_OTHER;
}

/* Append LinkTag(name, start, stop, href, conditional) for the tag s[start:stop] named s[n:name_end]. */
static int
FN(add_link)(Scan *st, const CHAR *s, Py_ssize_t n, Py_ssize_t name_end, Py_ssize_t start, Py_ssize_t stop,
             const Href *href, int conditional)
{
    /* Every object made here is held in one of these and released once, at the end, whatever happened. */
    PyObject *name = NULL, *start_obj = NULL, *stop_obj = NULL, *value = NULL, *value_start = NULL,
             *value_stop = NULL, *href_obj = NULL, *link = NULL;
    Py_ssize_t len = name_end - n, i;
    int status = -1;
    if (len == 1) {
        name = Py_NewRef(st->state->str_a);
    }
    else if (len == 4 && FN(match_ci)(s, n, name_end, "area", 4)) {
        name = Py_NewRef(st->state->str_area);
    }
    else {
        /* "v:..." lower-cased, ASCII only (other characters stay as they are) */
        Py_UCS4 maxchar = 0;
        int kind;
        void *data;
        for (i = n; i < name_end; i++) {
            Py_UCS4 c = ASCII_LOWER(s[i]);
            if (c > maxchar) {
                maxchar = c;
            }
        }
        name = PyUnicode_New(len, maxchar);
        if (name == NULL) {
            goto done;
        }
        kind = PyUnicode_KIND(name);
        data = PyUnicode_DATA(name);
        for (i = 0; i < len; i++) {
            PyUnicode_WRITE(kind, data, i, ASCII_LOWER(s[n + i]));
        }
    }
    if ((start_obj = PyLong_FromSsize_t(start)) == NULL || (stop_obj = PyLong_FromSsize_t(stop)) == NULL) {
        goto done;
    }
    if (href->found) { /* (value, start, stop, quote) */
        if ((value = PyUnicode_Substring(st->text, href->start, href->stop)) == NULL ||
            (value_start = PyLong_FromSsize_t(href->start)) == NULL ||
            (value_stop = PyLong_FromSsize_t(href->stop)) == NULL ||
            (href_obj = PyTuple_Pack(4, value, value_start, value_stop, st->state->quotes[href->quote])) == NULL) {
            goto done;
        }
    }
    else {
        href_obj = Py_NewRef(Py_None);
    }
    {
        PyObject *items[] = {name, start_obj, stop_obj, href_obj, conditional ? Py_True : Py_False};
        link = new_link_tag(st->link_tag, items, 5);
    }
    if (link != NULL && PyList_Append(st->links, link) == 0) {
        status = 0;
    }
done:
    Py_XDECREF(name);
    Py_XDECREF(start_obj);
    Py_XDECREF(stop_obj);
    Py_XDECREF(value);
    Py_XDECREF(value_start);
    Py_XDECREF(value_stop);
    Py_XDECREF(href_obj);
    Py_XDECREF(link);
    return status;
}

/* _scan: s[pos:end] into st; conditional inside an Outlook conditional comment. 0, or -1 with an exception set. */
static int
FN(scan_range)(Scan *st, const CHAR *s, Py_ssize_t pos, Py_ssize_t end, int conditional)
{
    for (;;) {
        Py_ssize_t p, n, t;
        p = FN(find_char)(s, pos, end, '<'); /* "[^<]*": text */
        if (p < 0) {
            return 0; /* eof */
        }
        n = p + 1;
        if (n < end && IS_ALPHA(s[n])) { /* a start tag */
            Py_ssize_t name_end = n + 1;
            int kind;
            while (name_end < end && !IS_NAME_END(s[name_end])) {
                name_end++;
            }
            kind = FN(classify)(s, n, name_end, conditional);
            if (kind == KIND_LINK) {
                Href href = {0, 0, 0, QUOTE_NONE};
                t = FN(tag_tail)(s, name_end, end, &href);
                if (t < 0) {
                    goto dead;
                }
                if (FN(add_link)(st, s, n, name_end, p, t, &href, conditional) < 0) {
                    return -1;
                }
                pos = t;
                continue;
            }
            t = FN(tag_tail)(s, name_end, end, NULL);
            if (t < 0) {
                goto dead;
            }
            if (kind == KIND_BODY) {
                if (!conditional && st->body_start_end < 0) {
                    st->body_start_end = t;
                }
            }
            else if (kind >= KIND_RAW) { /* raw text up to its appropriate end tag */
                int raw = kind - KIND_RAW;
                Py_ssize_t closing;
                if (raw == RAW_PLAINTEXT) {
                    goto truncated;
                }
                closing = FN(raw_end)(s, t, end, RAW_TEXT[raw], RAW_TEXT_LEN[raw]);
                if (closing < 0) {
                    goto truncated;
                }
                t = FN(tag_tail)(s, closing + 2 + RAW_TEXT_LEN[raw], end, NULL);
                if (t < 0) {
                    goto truncated;
                }
            }
            pos = t;
            continue;
        }
        if (n < end && s[n] == '/') {
            if (n + 1 < end && IS_ALPHA(s[n + 1])) { /* an end tag */
                Py_ssize_t name_end = n + 2;
                while (name_end < end && !IS_NAME_END(s[name_end])) {
                    name_end++;
                }
                t = FN(tag_tail)(s, name_end, end, NULL);
                if (t < 0) {
                    goto dead;
                }
                if (!conditional && name_end - n == 5 && FN(match_ci)(s, n + 1, end, "body", 4)) {
                    st->body_end = p;
                }
                else if (!conditional && name_end - n == 5 && FN(match_ci)(s, n + 1, end, "html", 4)) {
                    st->html_end = p;
                }
                pos = t;
                continue;
            }
            t = FN(find_char)(s, n + 1, end, '>'); /* "</>" or a bogus comment */
            if (t < 0) {
                goto dead;
            }
            pos = t + 1;
            continue;
        }
        if (n < end && s[n] == '!') {
            if (FN(match_ci)(s, n + 1, end, "--", 2)) {
                Py_ssize_t b = p + 4; /* after "<!--" */
                if (FN(match_ci)(s, b, end, "[if", 3)) { /* a conditional comment */
                    Py_ssize_t stop = FN(comment_end)(s, b + 3, end), j;
                    if (stop < 0) {
                        goto dead;
                    }
                    /* _CONDITIONAL_COMMENT: "[^\]]*\]>" after "<!--[if", inside the comment */
                    j = b + 3;
                    while (j < stop && s[j] != ']') {
                        j++;
                    }
                    if (j + 1 < stop && s[j + 1] == '>') {
                        Py_ssize_t open_end = j + 2, closing = -1;
                        /* _ENDIF: "<![endif]" then "--!?>" at the end of the comment */
                        if (stop - 13 >= open_end && FN(match_ci)(s, stop - 13, end, "<![endif]--!>", 13)) {
                            closing = stop - 13;
                        }
                        else if (stop - 12 >= open_end && FN(match_ci)(s, stop - 12, end, "<![endif]-->", 12)) {
                            closing = stop - 12;
                        }
                        if (closing >= 0 && FN(scan_range)(st, s, open_end, closing, 1) < 0) {
                            return -1;
                        }
                    }
                    pos = stop;
                    continue;
                }
                if (b < end && s[b] == '>') { /* "<!-->" */
                    pos = b + 1;
                    continue;
                }
                if (b + 1 < end && s[b] == '-' && s[b + 1] == '>') { /* "<!--->" */
                    pos = b + 2;
                    continue;
                }
                t = FN(comment_end)(s, b, end);
                if (t < 0) {
                    goto dead;
                }
                pos = t;
                continue;
            }
            t = FN(find_char)(s, n + 1, end, '>'); /* doctype, CDATA, other bogus comments */
            if (t < 0) {
                goto dead;
            }
            pos = t + 1;
            continue;
        }
        if (n < end && s[n] == '?') { /* processing-instruction-like bogus comment */
            t = FN(find_char)(s, n + 1, end, '>');
            if (t < 0) {
                goto dead;
            }
            pos = t + 1;
            continue;
        }
        pos = n; /* a lone "<" is text */
        continue;
    dead:      /* a tag, comment or bogus comment cut off by the end of the input */
    truncated: /* or a raw-text element left open */
        if (!conditional && st->truncated_at < 0) {
            st->truncated_at = p;
        }
        return 0;
    }
}

#undef FN
#undef SCAN_CAT
#undef SCAN_CAT_
