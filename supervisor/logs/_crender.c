/* Render a chunk of a child's raw output lines as JSON-lines events.
 *
 * The C twin of supervisor/logs/_render.py:render_lines_py, byte for byte:
 * each line of `body` becomes
 *
 *     head + seq + mid + seq + event + escape(line) + tail
 *
 * with seq counting up from `first_seq`. `escape` is JSON string escaping of
 * '"', '\\' and tab, the only characters of a plain line that need it. The
 * whole chunk is declined (None is returned) if a line
 *   - holds any other control character (it needs a \u escape, and a
 *     trailing \r is dropped: the per-line path in Python does that),
 *   - is not valid UTF-8 (the per-line path escapes the bad bytes), or
 *   - ends in "Traceback (most recent call last):" (a traceback starts: the
 *     per-line path groups it into one event).
 * Otherwise the result is (number of lines, list of bytes pieces of about
 * `piece` bytes each): no single allocation goes past glibc's mmap
 * threshold, whose fresh pages would cost more than the rendering.
 *
 * One pass over the input checks and measures a piece's lines; a second fills
 * the piece. C99 plus the CPython API; the GIL is held throughout.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static const char TB_MARK[] = "Traceback (most recent call last):";
#define TB_LEN ((Py_ssize_t)(sizeof(TB_MARK) - 1))
#define MAX_LINES 4096 /* lines measured per piece before it is filled */

/* The first byte in [p, end) that is below 0x20, '"', '\\' or above 0x7f,
 * else end: where a line ends, or needs an escape or a UTF-8 check.
 *
 * Three versions; SCAN names the one built. CRENDER_SCAN_SWAR (or
 * CRENDER_SCAN_BYTES) forces a slower one on x86-64, so that CI tests the
 * path an arm64 (or big-endian) build takes: tests/test_logs_render.py
 * compiles them. */
#if defined(__SSE2__) && !defined(CRENDER_SCAN_SWAR) && !defined(CRENDER_SCAN_BYTES)
#define SCAN "sse2"
#include <emmintrin.h>
/* Sixteen bytes a step (SSE2 is part of x86-64): the scan was half the
 * renderer's time with eight-byte words. */
static inline const char *
next_special(const char *p, const char *end)
{
    const __m128i space = _mm_set1_epi8(0x20), quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\');
    while (end - p >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)p);
        /* Signed: bytes above 0x7f are negative, so "less than 0x20" catches them too. */
        __m128i hit = _mm_or_si128(_mm_cmplt_epi8(x, space),
                                   _mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, backslash)));
        int mask = _mm_movemask_epi8(hit);
        if (mask)
            return p + __builtin_ctz((unsigned)mask);
        p += 16;
    }
    while (p < end && (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x80 && *p != '"' && *p != '\\')
        p++;
    return p;
}
#elif defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && !defined(CRENDER_SCAN_BYTES)
#define SCAN "swar"
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Eight bytes a step: each test flags its first match exactly (later flags
 * may be false positives, so only the lowest one is used). */
static inline const char *
next_special(const char *p, const char *end)
{
    while (end - p >= 8) {
        uint64_t x;
        memcpy(&x, p, 8);
        uint64_t q = x ^ (ONES * '"'), b = x ^ (ONES * '\\');
        uint64_t mask = ((x - ONES * 0x20) & ~x) | ((q - ONES) & ~q) | ((b - ONES) & ~b) | x;
        mask &= HIGHS;
        if (mask)
            return p + (__builtin_ctzll(mask) >> 3);
        p += 8;
    }
    while (p < end && (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x80 && *p != '"' && *p != '\\')
        p++;
    return p;
}
#else
#define SCAN "bytes"
static inline const char *
next_special(const char *p, const char *end)
{
    while (p < end && (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x80 && *p != '"' && *p != '\\')
        p++;
    return p;
}
#endif

/* Length of the valid UTF-8 sequence at p (lead byte >= 0x80), or 0 if it is
 * not one: the well-formed sequences of Unicode's table 3-7, which are what
 * Python's strict decoder accepts (no overlongs, surrogates or > U+10FFFF). */
static Py_ssize_t
utf8_sequence(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    Py_ssize_t n;
    unsigned char lo = 0x80, hi = 0xBF; /* bounds of the second byte */
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (end - p < n || p[1] < lo || p[1] > hi)
        return 0;
    for (Py_ssize_t i = 2; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

/* A decimal counter kept as ASCII, right-aligned in buf: incrementing it
 * costs a carry or two, not a division per digit. */
typedef struct {
    char buf[24];
    Py_ssize_t len;
} Counter;

static void
counter_set(Counter *c, unsigned long long v)
{
    char *p = c->buf + sizeof(c->buf);
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    c->len = c->buf + sizeof(c->buf) - p;
}

/* Count one up; returns how many trailing digits changed, or -1 if the
 * number grew a digit (99 -> 100). */
static inline int
counter_next(Counter *c)
{
    char *p = c->buf + sizeof(c->buf) - 1;
    int changed = 1;
    while (*p == '9') {
        *p-- = '0';
        changed++;
        if (p < c->buf + sizeof(c->buf) - c->len) { /* 99 -> 100: one digit more */
            *p = '1';
            c->len++;
            return -1;
        }
    }
    ++*p;
    return changed;
}

static inline const char *
counter_digits(const Counter *c)
{
    return c->buf + sizeof(c->buf) - c->len;
}

typedef struct {
    const char *data;
    Py_ssize_t len;
} Part;

typedef struct {
    const char *start;
    Py_ssize_t len;    /* without the newline */
    Py_ssize_t extra;  /* escape characters to add */
} Line;

/* Measure the line at *pos: its length and escapes. 0 if it is fine, -1 if
 * the chunk must be declined. *pos moves past the newline. */
static inline int
measure(const char **pos, const char *end, Line *line)
{
    const char *p = *pos;
    Py_ssize_t extra = 0;
    line->start = p;
    for (;;) {
        p = next_special(p, end); /* the body ends in '\n', so p < end */
        unsigned char c = (unsigned char)*p;
        if (c == '\n')
            break;
        if (c == '"' || c == '\\' || c == '\t') {
            extra++;
            p++;
        } else if (c >= 0x80) {
            Py_ssize_t n = utf8_sequence((const unsigned char *)p, (const unsigned char *)end);
            if (n == 0)
                return -1;
            p += n;
        } else
            return -1; /* another control character */
    }
    line->len = p - line->start;
    line->extra = extra;
    if (line->len >= TB_LEN && memcmp(p - TB_LEN, TB_MARK, TB_LEN) == 0)
        return -1;
    *pos = p + 1;
    return 0;
}

/* The bytes between two lines' texts, kept current as seq counts up:
 *
 *     tail + head + seq + mid + seq + event
 *
 * so a line costs two copies (its text and this), not six. A new seq
 * rewrites only the digits that changed, in both places. The first line of
 * a piece starts at head; the last one ends with tail alone. */
typedef struct {
    char *buf;
    Py_ssize_t len, tail_len;
    Py_ssize_t seq1, seq2; /* where the two seqs' digits start */
} Between;

static void
between_build(Between *b, const Part parts[4], const Counter *c)
{
    char *w = b->buf;
    memcpy(w, parts[3].data, (size_t)parts[3].len);
    w += parts[3].len;
    b->tail_len = parts[3].len;
    memcpy(w, parts[0].data, (size_t)parts[0].len);
    w += parts[0].len;
    b->seq1 = w - b->buf;
    memcpy(w, counter_digits(c), (size_t)c->len);
    w += c->len;
    memcpy(w, parts[1].data, (size_t)parts[1].len);
    w += parts[1].len;
    b->seq2 = w - b->buf;
    memcpy(w, counter_digits(c), (size_t)c->len);
    w += c->len;
    memcpy(w, parts[2].data, (size_t)parts[2].len);
    b->len = w + parts[2].len - b->buf;
}

/* Count seq one up, in the counter and in b. */
static inline void
between_next(Between *b, const Part parts[4], Counter *c)
{
    int changed = counter_next(c);
    if (changed < 0) { /* a digit more: everything after the first seq moves */
        between_build(b, parts, c);
        return;
    }
    const char *digits = counter_digits(c) + c->len - changed;
    char *one = b->buf + b->seq1 + c->len - changed, *two = b->buf + b->seq2 + c->len - changed;
    for (int i = 0; i < changed; i++)
        one[i] = two[i] = digits[i];
}

static char *
put_line(char *w, const Line *line)
{
    if (line->extra == 0) {
        memcpy(w, line->start, (size_t)line->len);
        return w + line->len;
    }
    const char *p = line->start, *nl = line->start + line->len;
    for (;;) {
        const char *e = next_special(p, nl + 1);
        while (e < nl && (unsigned char)*e >= 0x80) /* UTF-8: copied as is */
            e = next_special(e + 1, nl + 1);
        memcpy(w, p, (size_t)(e - p));
        w += e - p;
        if (e == nl)
            return w;
        *w++ = '\\';
        *w++ = *e == '\t' ? 't' : *e;
        p = e + 1;
    }
}

static PyObject *
render_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_Format(PyExc_TypeError,
                     "render_lines(body, first_seq, head, mid, event, tail, piece) takes 7 arguments (got %zd)",
                     nargs);
        return NULL;
    }
    Part parts[4];
    for (int i = 0; i < 4; i++) {
        PyObject *arg = args[i + 2];
        if (!PyBytes_Check(arg)) {
            PyErr_Format(PyExc_TypeError, "render_lines: argument %d must be bytes (got %.100s)", i + 3,
                         Py_TYPE(arg)->tp_name);
            return NULL;
        }
        parts[i] = (Part){PyBytes_AS_STRING(arg), PyBytes_GET_SIZE(arg)};
    }
    unsigned long long seq = PyLong_AsUnsignedLongLong(args[1]);
    if (seq == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t piece = PyLong_AsSsize_t(args[6]);
    if (piece == -1 && PyErr_Occurred())
        return NULL;
    if (piece < 1) {
        PyErr_Format(PyExc_ValueError, "piece must be >= 1 (got %zd)", piece);
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const char *body = view.buf;
    const char *end = body + view.len;
    PyObject *result = NULL, *pieces = NULL;
    Line *lines = NULL; /* per call: an allocation may run the GC, and a finalizer may render too */
    Between between = {NULL, 0, 0, 0, 0};
    if (end == body || end[-1] != '\n') {
        PyErr_SetString(PyExc_ValueError, "body must be complete lines, each ending in a newline");
        goto done;
    }
    lines = PyMem_Malloc(MAX_LINES * sizeof(Line));
    if (lines == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    pieces = PyList_New(0);
    if (pieces == NULL)
        goto done;
    const Py_ssize_t fixed = parts[0].len + parts[1].len + parts[2].len + parts[3].len;
    Counter counter, next;
    counter_set(&counter, seq);
    between.buf = PyMem_Malloc((size_t)fixed + 2 * sizeof(counter.buf)); /* room for the longest seqs */
    if (between.buf == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    between_build(&between, parts, &counter);
    const unsigned long long first_seq = seq;
    const char *pos = body;
    while (pos < end) {
        /* Pass 1: which lines fit this piece, and its exact size. */
        Py_ssize_t size = 0, count = 0;
        next = counter;
        while (pos < end && size < piece && count < MAX_LINES) {
            Line *line = &lines[count++];
            if (measure(&pos, end, line) < 0) {
                Py_CLEAR(pieces);
                result = Py_NewRef(Py_None);
                goto done;
            }
            size += fixed + 2 * next.len + line->len + line->extra;
            counter_next(&next);
        }
        seq += (unsigned long long)count;
        /* Pass 2: fill it. */
        PyObject *out = PyBytes_FromStringAndSize(NULL, size);
        if (out == NULL)
            goto done;
        char *w = PyBytes_AS_STRING(out);
        memcpy(w, between.buf + between.tail_len, (size_t)(between.len - between.tail_len));
        w += between.len - between.tail_len;
        for (Py_ssize_t i = 0; i < count; i++) {
            w = put_line(w, &lines[i]);
            between_next(&between, parts, &counter);
            if (i + 1 < count) {
                memcpy(w, between.buf, (size_t)between.len);
                w += between.len;
            } else {
                memcpy(w, parts[3].data, (size_t)parts[3].len);
                w += parts[3].len;
            }
        }
        if (w != PyBytes_AS_STRING(out) + size) {
            Py_DECREF(out);
            PyErr_SetString(PyExc_SystemError, "render_lines: size mismatch (a bug)");
            goto done;
        }
        int failed = PyList_Append(pieces, out);
        Py_DECREF(out);
        if (failed)
            goto done;
    }
    result = Py_BuildValue("(KO)", seq - first_seq, pieces);
done:
    Py_XDECREF(pieces);
    PyMem_Free(lines);
    PyMem_Free(between.buf);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"render_lines", (PyCFunction)(void (*)(void))render_lines, METH_FASTCALL,
     "render_lines(body, first_seq, head, mid, event, tail, piece) -> (count, list[bytes]) | None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_crender", "C renderer of plain output lines as JSON events.", -1, methods,
};

PyMODINIT_FUNC
PyInit__crender(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddStringConstant(m, "SCAN", SCAN) < 0)
        Py_CLEAR(m);
    return m;
}
