/* track_links: the common case of mailtrack.core.rewrite.links.track_html_links in C (included by _speedups.c).
 *
 * For each scanned link tag, in source order, the loop settles here only the
 * link every newsletter is made of: a quoted href of printable ASCII whose
 * only character references are "&amp;" (decoding turns each into "&",
 * trimming changes nothing), no opt-out name in its tag,
 * a destination the placeholder rules' one-match test (``plain``, run here
 * for the default patterns) accepts or, failing that, that ``classify`` (the
 * rest of the rules, in Python) tracks, not under our base URL, within max_links. It signs
 * that link (once: a click URL longer than max_length is recorded here as skipped for "too-long", as LinkBook.decide
 * does) (through ClickSigner without a Python call, or the book's signer),
 * appends its TrackedLink to book.links and its edit to ``edits``, and counts
 * it. Every other link goes, in its turn, to ``slow(tag)``: the pure-Python
 * loop body, which decides it exactly as the pure path does (book.counted is
 * written back before and read again after). So the output is the pure
 * path's, by construction, for every input; the differential tests check it.
 */

/* True if text[start:end].lower() holds `needle` (lower-case ASCII): -1 (undecided) if the span holds one of the two
 * characters whose lower case has an ASCII letter in it (U+0130 and the Kelvin sign U+212A: checked for every
 * code point by the tests); other characters lower-case to non-ASCII ones, which an ASCII needle never matches, and
 * ASCII ones as ASCII_LOWER does. */
#define SPAN_HOLDS(CHAR)                                                                                        \
    do {                                                                                                        \
        const CHAR *data = (const CHAR *)PyUnicode_DATA(text);                                                   \
        for (i = start; i < end; i++) {                                                                         \
            Py_UCS4 c = data[i];                                                                                \
            if (c >= 0x80) {                                                                                    \
                if (c == 0x130 || c == 0x212a) {                                                                \
                    return -1;                                                                                  \
                }                                                                                               \
            }                                                                                                   \
            else if (!found && ASCII_LOWER(c) == first && i + needle_len <= end) {                              \
                for (j = 1; j < needle_len && ASCII_LOWER(data[i + j]) == (Py_UCS4)(unsigned char)needle[j]; j++) { \
                }                                                                                               \
                found = j == needle_len;                                                                        \
            }                                                                                                   \
        }                                                                                                       \
    } while (0)

static int
span_holds(PyObject *text, Py_ssize_t start, Py_ssize_t end, const char *needle, Py_ssize_t needle_len)
{
    Py_ssize_t i, j;
    int found = 0;
    Py_UCS4 first = (unsigned char)needle[0];
    switch (PyUnicode_KIND(text)) {
    case PyUnicode_1BYTE_KIND: { /* no U+0130 or U+212A here: stop at the first match */
        const Py_UCS1 *data = PyUnicode_1BYTE_DATA(text);
        for (i = start; i + needle_len <= end; i++) {
            if (ASCII_LOWER(data[i]) == first) {
                for (j = 1; j < needle_len && ASCII_LOWER(data[i + j]) == (Py_UCS1)needle[j]; j++) {
                }
                if (j == needle_len) {
                    return 1;
                }
            }
        }
        return 0;
    }
    case PyUnicode_2BYTE_KIND:
        SPAN_HOLDS(Py_UCS2);
        break;
    default:
        SPAN_HOLDS(Py_UCS4);
        break;
    }
    return found;
}
#undef SPAN_HOLDS

/* True if url (printable ASCII) starts with base (lower-case) without regard to ASCII case, followed by its end or /?# */
static int
is_ours(const Py_UCS1 *url, Py_ssize_t url_len, const char *base, Py_ssize_t base_len)
{
    Py_ssize_t i;
    if (url_len < base_len) {
        return 0;
    }
    for (i = 0; i < base_len; i++) {
        if (ASCII_LOWER(url[i]) != (Py_UCS1)base[i]) {
            return 0;
        }
    }
    return url_len == base_len || url[base_len] == '/' || url[base_len] == '?' || url[base_len] == '#';
}

/* The URL a browser reads from a quoted value the fast path can take: a new reference, or NULL (no error) when
 * the value is not one (empty, not printable ASCII, or an "&" that does not start "&amp;"), NULL + error.
 * decode_attribute(raw).strip(ASCII_WHITESPACE) for such a value is the value with each "&amp;" made "&". */
/* A str of printable ASCII, not empty: a text part's URL the fast path can take as written. */
static int
printable_ascii(PyObject *text)
{
    const Py_UCS1 *data;
    Py_ssize_t i, n = PyUnicode_GET_LENGTH(text);
    if (n == 0 || !PyUnicode_IS_ASCII(text)) {
        return 0;
    }
    data = PyUnicode_1BYTE_DATA(text);
    for (i = 0; i < n; i++) {
        if (data[i] < 0x21 || data[i] == 0x7f) {
            return 0;
        }
    }
    return 1;
}

static PyObject *
plain_url(PyObject *raw)
{
    const Py_UCS1 *data, *amp, *from;
    Py_UCS1 *out;
    PyObject *url;
    Py_ssize_t i, n = PyUnicode_GET_LENGTH(raw), ampersands = 0;
    if (n == 0 || !PyUnicode_IS_ASCII(raw)) {
        return NULL;
    }
    data = PyUnicode_1BYTE_DATA(raw);
    for (i = 0; i < n; i++) {
        if (data[i] < 0x21 || data[i] == 0x7f) {
            return NULL;
        }
        if (data[i] == '&') {
            if (n - i < 5 || memcmp(data + i + 1, "amp;", 4) != 0) {
                return NULL;
            }
            ampersands++;
            i += 4;
        }
    }
    if (ampersands == 0) {
        return Py_NewRef(raw);
    }
    url = PyUnicode_New(n - 4 * ampersands, 127);
    if (url == NULL) {
        return NULL;
    }
    out = PyUnicode_1BYTE_DATA(url);
    from = data;
    while ((amp = memchr(from, '&', (size_t)(data + n - from))) != NULL) { /* each one starts "&amp;" (checked) */
        memcpy(out, from, (size_t)(amp + 1 - from));
        out += amp + 1 - from;
        from = amp + 5;
    }
    memcpy(out, from, (size_t)(data + n - from));
    return url;
}

/* plain_authority(u, n, 0) is mailtrack.core.urls.plain_destination("{%|<[$")(url): the rewriter's one-match test for the default placeholder
 * patterns, for a printable-ASCII url (what plain_url returns). The expression it mirrors,
 *     [hH][tT][tT][pP][sS]?://((?:[A-Za-z0-9_-]{1,63}\.)*[A-Za-z][A-Za-z0-9_-]{0,62}\.?)(:[0-9]{1,5})?(?=[/?#]|\Z)
 * then printable ASCII without "{%|<[$" to the end, matches exactly when: the host is the longest run of
 * [A-Za-z0-9_.-] after "://" (none of the characters that may follow it can be in it), that run is labels of 1-63
 * characters joined by single dots with at most one dot after the last, whose first character is a letter; a port
 * is 1-5 digits, all of the digits before the next character; "/", "?", "#" or the end comes next. Then
 * _plain_authority: a host of at most 253 characters, no A-label ("xn--" in any case), a port of at most 65535.
 * plain_authority(u, n, 1) lets "%" through: check_destination's own fast path (_PLAIN then _plain_authority). */
/* What each byte is to plain_authority, one lookup a character (eight comparisons were a tenth of a message's
 * link work): MT_URL_REFUSED never in a plain URL, MT_URL_PERCENT "%", MT_URL_HOST in a host run. */
#define MT_URL_REFUSED 1
#define MT_URL_PERCENT 2
#define MT_URL_HOST 4
#define MT_URL_CLASS(c)                                                                                             \
    (((c) < 0x21 || (c) > 0x7e || (c) == '{' || (c) == '|' || (c) == '<' || (c) == '[' || (c) == '$' ? MT_URL_REFUSED : 0) | \
     ((c) == '%' ? MT_URL_PERCENT : 0) |                                                                            \
     (((c) >= 'A' && (c) <= 'Z') || ((c) >= 'a' && (c) <= 'z') || ((c) >= '0' && (c) <= '9') || (c) == '_' ||      \
      (c) == '-' || (c) == '.' ? MT_URL_HOST : 0))
#define MT_URL4(c) MT_URL_CLASS(c), MT_URL_CLASS((c) + 1), MT_URL_CLASS((c) + 2), MT_URL_CLASS((c) + 3)
#define MT_URL16(c) MT_URL4(c), MT_URL4((c) + 4), MT_URL4((c) + 8), MT_URL4((c) + 12)
#define MT_URL64(c) MT_URL16(c), MT_URL16((c) + 16), MT_URL16((c) + 32), MT_URL16((c) + 48)
static const unsigned char URL_CLASS[256] = {MT_URL64(0), MT_URL64(64), MT_URL64(128), MT_URL64(192)};
#undef MT_URL64
#undef MT_URL16
#undef MT_URL4
#undef MT_URL_CLASS

static int
plain_authority(const Py_UCS1 *u, Py_ssize_t n, int percent_ok)
{
    Py_ssize_t i, host_start, host_end, label_start, last_label, digits;
    int dashes = 0;
    long port = 0;
    const unsigned char refused = percent_ok ? MT_URL_REFUSED : MT_URL_REFUSED | MT_URL_PERCENT;

    for (i = 0; i < n; i++) {
        if (URL_CLASS[u[i]] & refused) {
            return 0;
        }
    }
    if (n < 7 || (u[0] | 32) != 'h' || (u[1] | 32) != 't' || (u[2] | 32) != 't' || (u[3] | 32) != 'p') {
        return 0;
    }
    i = (u[4] | 32) == 's' ? 5 : 4;
    if (i + 3 > n || u[i] != ':' || u[i + 1] != '/' || u[i + 2] != '/') {
        return 0;
    }
    host_start = i + 3;
    for (host_end = host_start; host_end < n; host_end++) {
        Py_UCS1 c = u[host_end];
        if (!(URL_CLASS[c] & MT_URL_HOST)) {
            break;
        }
        if (c == '-' && host_end > host_start && u[host_end - 1] == '-') {
            dashes = 1;
        }
    }
    if (host_end - host_start > 253) {
        return 0;
    }
    /* labels: [host_start, end) without one final dot */
    {
        Py_ssize_t end = host_end;
        if (end > host_start && u[end - 1] == '.') {
            end--;
        }
        if (end == host_start) {
            return 0;
        }
        label_start = last_label = host_start;
        for (i = host_start; i <= end; i++) {
            if (i == end || u[i] == '.') {
                if (i == label_start || i - label_start > 63) {
                    return 0;
                }
                last_label = label_start;
                label_start = i + 1;
            }
        }
        if (!IS_ALPHA(u[last_label])) {
            return 0;
        }
    }
    if (dashes) { /* "xn--" anywhere in the host, in any case: an A-label, which the full check must see */
        for (i = host_start; i + 4 <= host_end; i++) {
            if ((u[i] | 32) == 'x' && (u[i + 1] | 32) == 'n' && u[i + 2] == '-' && u[i + 3] == '-') {
                return 0;
            }
        }
    }
    i = host_end;
    if (i < n && u[i] == ':') {
        for (digits = 0; i + 1 + digits < n && u[i + 1 + digits] >= '0' && u[i + 1 + digits] <= '9'; digits++) {
            if (digits < 6) {
                port = port * 10 + (u[i + 1 + digits] - '0');
            }
        }
        if (digits < 1 || digits > 5 || port > 65535) {
            return 0;
        }
        i += 1 + digits;
    }
    return i == n || u[i] == '/' || u[i] == '?' || u[i] == '#';
}

/* True if url does not start as mailtrack.core.urls.HTTP_PREFIX says, "http://" or "https://" in any case then a
 * character other than "/", "?", "#" or "\\": check_destination's "scheme" problem. */
static int
not_http(const Py_UCS1 *u, Py_ssize_t n)
{
    Py_ssize_t i;
    if (n < 4 || (u[0] | 32) != 'h' || (u[1] | 32) != 't' || (u[2] | 32) != 't' || (u[3] | 32) != 'p') {
        return 1;
    }
    i = n > 4 && (u[4] | 32) == 's' ? 5 : 4;
    if (i + 3 >= n || u[i] != ':' || u[i + 1] != '/' || u[i + 2] != '/') {
        return 1;
    }
    return u[i + 3] == '/' || u[i + 3] == '?' || u[i + 3] == '#' || u[i + 3] == '\\';
}

/* True if u holds a %tag% placeholder: rules.DEFAULT_PLACEHOLDERS' %[A-Za-z_][A-Za-z0-9_.-]*%(?![0-9A-Fa-f]{2}).
 * The run after the first letter cannot hold "%", so each "%" starts at most one candidate, which ends at the
 * first character outside the run: one pass. */
#define IS_HEX(c) (((c) >= '0' && (c) <= '9') || ((c) >= 'a' && (c) <= 'f') || ((c) >= 'A' && (c) <= 'F'))

static int
percent_tag(const Py_UCS1 *u, Py_ssize_t n)
{
    Py_ssize_t i, k;
    for (i = 0; i + 2 < n; i++) {
        if (u[i] != '%' || !(IS_ALPHA(u[i + 1]) || u[i + 1] == '_')) {
            continue;
        }
        for (k = i + 2; k < n && (IS_ALPHA(u[k]) || (u[k] >= '0' && u[k] <= '9') || u[k] == '_' || u[k] == '.' || u[k] == '-'); k++) {
        }
        if (k < n && u[k] == '%' && !(k + 2 < n && IS_HEX(u[k + 1]) && IS_HEX(u[k + 2]))) {
            return 1;
        }
    }
    return 0;
}

enum { RULES_TRACK = 0, RULES_SCHEME = 1, RULES_PLACEHOLDER = 2, RULES_ASK = -1 };

/* links.classify_unplain(url) for the default placeholder patterns, where it can be told here (url: printable
 * ASCII that plain_authority(u, n, 0) refused, not under our base URL): track it, "scheme", "placeholder", or ask
 * classify. With no trigger character but "%" in it, only the %tag% pattern can match (every other default pattern
 * needs "{", "|", "<", "[" or "$"); then the destination check's fast path or its scheme test settles most URLs. */
static int
default_rules(const Py_UCS1 *u, Py_ssize_t n)
{
    Py_ssize_t i;
    int percent = 0;
    for (i = 0; i < n; i++) {
        if (u[i] == '{' || u[i] == '|' || u[i] == '<' || u[i] == '[' || u[i] == '$') {
            return RULES_ASK;
        }
        percent |= u[i] == '%';
    }
    if (percent && percent_tag(u, n)) {
        return RULES_PLACEHOLDER;
    }
    if (percent && plain_authority(u, n, 1)) {
        return RULES_TRACK;
    }
    return not_http(u, n) ? RULES_SCHEME : RULES_ASK;
}

PyDoc_STRVAR(default_rules_doc,
"default_rules(url, /)\n--\n\n"
"What track_links decides itself for a URL the default placeholders' one-match test refused: None (track it),\n"
"\"scheme\", \"placeholder\", or False (classify_unplain must say); exposed for the differential tests.");

static PyObject *
speedups_default_rules(PyObject *module, PyObject *url)
{
    (void)module;
    if (!PyUnicode_Check(url) || !PyUnicode_IS_ASCII(url)) {
        PyErr_SetString(PyExc_TypeError, "default_rules() takes an ASCII str");
        return NULL;
    }
    switch (default_rules(PyUnicode_1BYTE_DATA(url), PyUnicode_GET_LENGTH(url))) {
    case RULES_TRACK:
        Py_RETURN_NONE;
    case RULES_SCHEME:
        return PyUnicode_FromString("scheme");
    case RULES_PLACEHOLDER:
        return PyUnicode_FromString("placeholder");
    default:
        Py_RETURN_FALSE;
    }
}

PyDoc_STRVAR(plain_destination_doc,
"plain_destination(url, /)\n--\n\n"
"mailtrack.core.urls.plain_destination(\"{%|<[$\")(url), the test track_links runs for the default\n"
"placeholder patterns (exposed for the differential tests).");

static PyObject *
speedups_plain_destination(PyObject *module, PyObject *url)
{
    (void)module;
    if (!PyUnicode_Check(url)) {
        PyErr_Format(PyExc_TypeError, "plain_destination() argument must be str, not %.100s", Py_TYPE(url)->tp_name);
        return NULL;
    }
    if (PyUnicode_KIND(url) != PyUnicode_1BYTE_KIND) {
        Py_RETURN_FALSE;
    }
    return PyBool_FromLong(plain_authority(PyUnicode_1BYTE_DATA(url), PyUnicode_GET_LENGTH(url), 0));
}

/* book.counted, held here while the loop runs; `loaded` says whether `counted` is the book's current count. */
typedef struct {
    PyObject *book, *counted_name;
    Py_ssize_t counted;
    int loaded;
} Counter;

static int
counter_store(Counter *c)
{
    PyObject *value = PyLong_FromSsize_t(c->counted);
    int status;
    if (value == NULL) {
        return -1;
    }
    status = PyObject_SetAttr(c->book, c->counted_name, value);
    Py_DECREF(value);
    return status;
}

static int
counter_load(Counter *c)
{
    PyObject *value = PyObject_GetAttr(c->book, c->counted_name);
    if (value == NULL) {
        return -1;
    }
    c->counted = PyLong_AsSsize_t(value);
    Py_DECREF(value);
    c->loaded = !(c->counted == -1 && PyErr_Occurred());
    return c->loaded ? 0 : -1;
}

/* The fast path's click URL for this link (a new reference), or NULL: with an error set, or (no error) when it is
 * longer than max_length, which LinkBook.decide records as skipped for "too-long". prefix + token as the pure
 * path writes it: with "+", so a signer of a TokenCodec subclass that returns something else than a str fails, or
 * gives what it gives, as it does there. */
static PyObject *
fast_click_url(PyObject *sign, PyTypeObject *signer_type, PyObject *prefix, Py_ssize_t counted, PyObject *url,
               Py_ssize_t max_length)
{
    PyObject *index = PyLong_FromSsize_t(counted), *token, *tracking_url;
    Py_ssize_t length;
    if (index == NULL) {
        return NULL;
    }
    if (Py_TYPE(sign) == signer_type) {
        token = click_sign((ClickSigner *)sign, index, url);
    }
    else {
        token = PyObject_CallFunctionObjArgs(sign, index, url, NULL);
    }
    Py_DECREF(index);
    if (token == NULL) {
        return NULL;
    }
    tracking_url = PyUnicode_CheckExact(token) ? PyUnicode_Concat(prefix, token) : PyNumber_Add(prefix, token);
    Py_DECREF(token);
    if (tracking_url == NULL) {
        return NULL;
    }
    length = PyObject_Length(tracking_url);
    if (length < 0) {
        Py_DECREF(tracking_url);
        return NULL;
    }
    if (length > max_length) {
        Py_CLEAR(tracking_url); /* too long */
    }
    return tracking_url;
}

/* LinkBook.decide's record of a skipped link: SkippedLink(raw, reason, start, end, url, tag) appended to skipped.
 * Takes the references to reason and url, whatever happens; -1 with an error set on failure. */
static int
append_skipped(PyObject *skipped, PyObject *skipped_link, PyObject *raw, PyObject *reason, PyObject *href, PyObject *url,
               PyObject *tag_name)
{
    PyObject *items[] = {raw, reason, PyTuple_GET_ITEM(href, 1), PyTuple_GET_ITEM(href, 2), url, tag_name};
    PyObject *link = new_link_tag(skipped_link, items, 6);
    int status = link == NULL ? -1 : PyList_Append(skipped, link);
    Py_DECREF(reason);
    Py_DECREF(url);
    Py_XDECREF(link);
    return status;
}

PyDoc_STRVAR(track_links_doc,
"track_links(html, links, book, plain, classify, base, common, slow, edits, TrackedLink, SkippedLink, max_length,\n"
"            exclude, /)\n--\n\n"
"track_html_links' loop for a quoted-as-is click prefix, no UTM and click tracking on: the common\n"
"link decided here (tracked, or skipped for a reason classify gives), every other one by slow(tag). plain is the placeholder rules' one-match test\n"
"(None: the default patterns', run here); classify(url) the rules for a URL it does not settle\n"
"(None: track it). base is the lower-cased base URL; common the opt-out names' common substring\n"
"(None: no opt-out names; \"\" or non-ASCII: every link is slow). exclude is None for HTML; for a text\n"
"part, the set of URLs opted out in the HTML part, and links are (\"text\", start, end, (url, start, end, \"\"), False):\n"
"the URL is taken as written, and an excluded one goes to slow(tag).");

static PyObject *
speedups_track_links(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *html, *links, *plain, *classify, *base, *common, *slow, *edits, *tracked_link, *skipped_link, *exclude, *sign = NULL,
        *prefix = NULL, *book_links = NULL, *book_skipped = NULL, *max_links_obj = NULL, *result = NULL,
        *held = NULL; /* the tag in hand: a callback may empty `links`, and its href's items are borrowed from it */
    const char *base_text, *common_text = NULL;
    Py_ssize_t base_len, common_len = 0, max_links, max_length, i;
    int common_mode; /* 0: no opt-out names; 1: search common_text; 2: every link to slow */
    Counter counter;
    ModuleState *state = (ModuleState *)PyModule_GetState(module);

    if (nargs != 13) {
        PyErr_Format(PyExc_TypeError, "track_links() takes 13 positional arguments (%zd given)", nargs);
        return NULL;
    }
    html = args[0], links = args[1], plain = args[3], classify = args[4], base = args[5], common = args[6];
    slow = args[7], edits = args[8], tracked_link = args[9], skipped_link = args[10], exclude = args[12];
    counter.book = args[2];
    counter.counted_name = state->str_counted;
    counter.counted = 0;
    counter.loaded = 0;
    if (!PyUnicode_Check(html) || !PyList_Check(links) || !PyUnicode_Check(base) || !PyList_Check(edits) ||
        !PyType_Check(tracked_link) || !PyType_IsSubtype((PyTypeObject *)tracked_link, &PyTuple_Type) ||
        !PyType_Check(skipped_link) || !PyType_IsSubtype((PyTypeObject *)skipped_link, &PyTuple_Type) ||
        (exclude != Py_None && !PyAnySet_Check(exclude))) {
        PyErr_SetString(PyExc_TypeError, "track_links(): wrong argument types");
        return NULL;
    }
    max_length = PyLong_AsSsize_t(args[11]);
    if (max_length == -1 && PyErr_Occurred()) {
        return NULL;
    }
    base_text = PyUnicode_AsUTF8AndSize(base, &base_len);
    if (base_text == NULL) {
        return NULL;
    }
    if (common == Py_None) {
        common_mode = 0;
    }
    else if (!PyUnicode_Check(common) || PyUnicode_GET_LENGTH(common) == 0 || !PyUnicode_IS_ASCII(common)) {
        common_mode = 2;
    }
    else {
        common_mode = 1;
        common_text = PyUnicode_AsUTF8AndSize(common, &common_len);
        if (common_text == NULL) {
            return NULL;
        }
    }
    sign = PyObject_GetAttr(counter.book, state->str_sign);
    prefix = sign == NULL ? NULL : PyObject_GetAttr(counter.book, state->str_prefix);
    book_links = prefix == NULL ? NULL : PyObject_GetAttr(counter.book, state->str_links);
    book_skipped = book_links == NULL ? NULL : PyObject_GetAttr(counter.book, state->str_skipped);
    max_links_obj = book_skipped == NULL ? NULL : PyObject_GetAttr(counter.book, state->str_max_links);
    if (max_links_obj == NULL) {
        goto done;
    }
    if (!PyList_Check(book_links) || !PyList_Check(book_skipped) || !PyUnicode_Check(prefix)) {
        PyErr_SetString(PyExc_TypeError, "track_links(): book.links and book.skipped must be lists, book.prefix a str");
        goto done;
    }
    if (!PyLong_Check(max_links_obj)) {
        PyErr_SetString(PyExc_TypeError, "track_links(): book.max_links must be an int");
        goto done;
    }
    { /* An int past Py_ssize_t (max_links=10**20 is a valid option): no count reaches it, or every count does. */
        int overflow;
        long long limit = PyLong_AsLongLongAndOverflow(max_links_obj, &overflow);
        if (limit == -1 && PyErr_Occurred()) {
            goto done;
        }
        max_links = overflow > 0 || limit > PY_SSIZE_T_MAX   ? PY_SSIZE_T_MAX
                    : overflow < 0 || limit < PY_SSIZE_T_MIN ? PY_SSIZE_T_MIN
                                                             : (Py_ssize_t)limit;
    }
    if (counter_load(&counter) < 0) {
        goto done;
    }
    for (i = 0; i < PyList_GET_SIZE(links); i++) {
        PyObject *tag = PyList_GET_ITEM(links, i), *href, *raw, *quote, *url = NULL, *tracking_url = NULL, *link,
                 *edit;
        Py_ssize_t tag_start, tag_end;
        int fast;

        if (!PyTuple_Check(tag) || PyTuple_GET_SIZE(tag) < 4) {
            PyErr_SetString(PyExc_TypeError, "track_links(): links must be LinkTag tuples");
            goto done;
        }
        Py_XSETREF(held, Py_NewRef(tag));
        href = PyTuple_GET_ITEM(tag, 3);
        if (href == Py_None) {
            continue;
        }
        if (!PyTuple_Check(href) || PyTuple_GET_SIZE(href) != 4 || !PyUnicode_Check(PyTuple_GET_ITEM(href, 0)) ||
            !PyUnicode_Check(PyTuple_GET_ITEM(href, 3))) {
            PyErr_SetString(PyExc_TypeError, "track_links(): an href must be (raw, start, end, quote)");
            goto done;
        }
        raw = PyTuple_GET_ITEM(href, 0);
        quote = PyTuple_GET_ITEM(href, 3);
        if (exclude != Py_None) { /* text: the URL as written; opted out in the HTML part: the body records it */
            fast = counter.counted < max_links && printable_ascii(raw);
            if (fast) {
                int excluded = PySet_Contains(exclude, raw);
                if (excluded < 0) {
                    goto done;
                }
                fast = !excluded;
                url = fast ? Py_NewRef(raw) : NULL;
            }
        }
        else {
            fast = counter.counted < max_links && PyUnicode_GET_LENGTH(quote) > 0 && common_mode != 2;
            url = fast ? plain_url(raw) : NULL;
        }
        if (fast) {
            if (url == NULL && PyErr_Occurred()) {
                goto done;
            }
            fast = url != NULL && !is_ours(PyUnicode_1BYTE_DATA(url), PyUnicode_GET_LENGTH(url), base_text, base_len);
        }
        if (fast && common_mode == 1) {
            int held;
            tag_start = PyLong_AsSsize_t(PyTuple_GET_ITEM(tag, 1));
            tag_end = PyLong_AsSsize_t(PyTuple_GET_ITEM(tag, 2));
            if ((tag_start == -1 || tag_end == -1) && PyErr_Occurred()) {
                Py_XDECREF(url);
                goto done;
            }
            if (tag_start < 0 || tag_end > PyUnicode_GET_LENGTH(html) || tag_start > tag_end) {
                PyErr_SetString(PyExc_ValueError, "track_links(): a tag's span is outside the document");
                Py_XDECREF(url);
                goto done;
            }
            held = span_holds(html, tag_start, tag_end, common_text, common_len);
            fast = held == 0;
        }
        if (fast) { /* the rules: plain (one test), else default_rules or classify (None: track it) */
            PyObject *reason = NULL; /* why the link is skipped (a new reference), or NULL to track it */
            int settled;
            if (plain == Py_None) {
                settled = plain_authority(PyUnicode_1BYTE_DATA(url), PyUnicode_GET_LENGTH(url), 0);
            }
            else {
                PyObject *answer = PyObject_CallOneArg(plain, url);
                settled = answer == NULL ? -1 : PyObject_IsTrue(answer);
                Py_XDECREF(answer);
            }
            if (settled == 0) {
                int rule = plain == Py_None ? default_rules(PyUnicode_1BYTE_DATA(url), PyUnicode_GET_LENGTH(url)) : RULES_ASK;
                if (rule == RULES_TRACK) {
                    settled = 1;
                }
                else if (rule == RULES_SCHEME) {
                    reason = Py_NewRef(state->str_scheme);
                }
                else if (rule == RULES_PLACEHOLDER) {
                    reason = Py_NewRef(state->str_placeholder);
                }
                else {
                    reason = PyObject_CallOneArg(classify, url);
                    if (reason == NULL) {
                        settled = -1;
                    }
                    else if (reason == Py_None) {
                        Py_CLEAR(reason);
                        settled = 1;
                    }
                    else if (!PyUnicode_Check(reason)) {
                        PyErr_SetString(PyExc_TypeError, "track_links(): classify() must return a reason (str) or None");
                        Py_CLEAR(reason);
                        settled = -1;
                    }
                }
            }
            if (settled < 0) {
                Py_DECREF(url);
                goto done;
            }
            if (reason != NULL) {
                if (append_skipped(book_skipped, skipped_link, raw, reason, href, url, PyTuple_GET_ITEM(tag, 0)) < 0) {
                    goto done;
                }
                continue;
            }
            fast = settled;
        }
        if (fast) {
            tracking_url = fast_click_url(sign, state->click_signer_type, prefix, counter.counted, url, max_length);
            if (tracking_url == NULL && PyErr_Occurred()) {
                Py_DECREF(url);
                goto done;
            }
            if (tracking_url == NULL) { /* signed once, too long: LinkBook.decide's record, without signing again */
                PyObject *reason = PyUnicode_FromString("too-long");
                if (reason == NULL) {
                    Py_DECREF(url);
                    goto done;
                }
                if (append_skipped(book_skipped, skipped_link, raw, reason, href, url, PyTuple_GET_ITEM(tag, 0)) < 0) {
                    goto done;
                }
                continue;
            }
        }
        if (tracking_url == NULL) { /* the pure-Python body decides this link */
            PyObject *answer;
            Py_XDECREF(url);
            if (counter_store(&counter) < 0) {
                goto done;
            }
            counter.loaded = 0; /* the slow body may count too */
            answer = PyObject_CallOneArg(slow, tag);
            if (answer == NULL) {
                goto done;
            }
            Py_DECREF(answer);
            if (counter_load(&counter) < 0) {
                goto done;
            }
            continue;
        }
        /* TrackedLink(index, url, tracking_url, start, end, raw, quote, tag) and the edit (start, end, tracking_url) */
        {
            PyObject *index = PyLong_FromSsize_t(counter.counted);
            PyObject *items[] = {index, url, tracking_url, PyTuple_GET_ITEM(href, 1), PyTuple_GET_ITEM(href, 2), raw,
                                 quote, PyTuple_GET_ITEM(tag, 0)};
            link = index == NULL ? NULL : new_link_tag(tracked_link, items, 8);
            Py_XDECREF(index);
            Py_DECREF(url); /* the link holds its own reference */
        }
        edit = link == NULL ? NULL : PyTuple_Pack(3, PyTuple_GET_ITEM(href, 1), PyTuple_GET_ITEM(href, 2), tracking_url);
        Py_DECREF(tracking_url);
        if (edit == NULL || PyList_Append(book_links, link) < 0 || PyList_Append(edits, edit) < 0) {
            Py_XDECREF(link);
            Py_XDECREF(edit);
            goto done;
        }
        Py_DECREF(link);
        Py_DECREF(edit);
        counter.counted++;
    }
    if (counter_store(&counter) == 0) {
        result = Py_NewRef(Py_None);
    }
done:
    if (result == NULL && counter.loaded) { /* keep the book's count right for whatever the caller does next */
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        if (counter_store(&counter) < 0) {
            PyErr_Clear();
        }
        PyErr_Restore(type, value, traceback);
    }
    Py_XDECREF(sign);
    Py_XDECREF(prefix);
    Py_XDECREF(book_links);
    Py_XDECREF(book_skipped);
    Py_XDECREF(max_links_obj);
    Py_XDECREF(held);
    return result;
}
