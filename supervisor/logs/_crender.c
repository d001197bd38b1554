/* Render a chunk of a child's raw output lines as JSON-lines events.
 *
 * The C twin of supervisor/logs/_render.py:render_lines_py, byte for byte:
 * each line of `body` becomes
 *
 *     head + seq + mid + seq + event + escape(line) + tail
 *
 * with seq counting up from `first_seq`. `escape` is JSON string escaping
 * for the only characters a plain line may hold that need it: '"', '\\' and
 * tab. A chunk with a line holding any other control character is declined
 * (None is returned, nothing is consumed): the per-line path in Python
 * handles it.
 * The output comes as a list of bytes pieces of about `piece` bytes each,
 * so that no single allocation goes past glibc's mmap threshold.
 *
 * Pure C99 plus the CPython API; the GIL is held throughout (a 64 KiB chunk
 * renders in tens of microseconds).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Byte classes: 0 = copied as is, 1 = two-character escape, 2 = decline. */
static unsigned char byte_class[256];

static void
init_classes(void)
{
    for (int c = 0; c < 0x20; c++)
        byte_class[c] = 2;
    byte_class['\t'] = 1;
    byte_class['"'] = 1;
    byte_class['\\'] = 1;
    byte_class['\n'] = 0; /* only ever seen as a line end */
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* The first byte in [p, end) below 0x20 or equal to '"' or '\\', else end.
 * Eight bytes a step: each test flags its first match exactly (later flags
 * may be false positives, which is why only the lowest one is used). */
static const char *
next_special(const char *p, const char *end)
{
    while (end - p >= 8) {
        uint64_t x;
        memcpy(&x, p, 8);
        uint64_t q = x ^ (ONES * '"'), b = x ^ (ONES * '\\');
        uint64_t mask = ((x - ONES * 0x20) & ~x) | ((q - ONES) & ~q) | ((b - ONES) & ~b);
        mask &= HIGHS;
        if (mask)
            return p + (__builtin_ctzll(mask) >> 3);
        p += 8;
    }
    while (p < end && (unsigned char)*p >= 0x20 && *p != '"' && *p != '\\')
        p++;
    return p;
}
#else
static const char *
next_special(const char *p, const char *end)
{
    while (p < end && (unsigned char)*p >= 0x20 && *p != '"' && *p != '\\')
        p++;
    return p;
}
#endif

static Py_ssize_t
digits(unsigned long long v)
{
    Py_ssize_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

static char *
put_seq(char *out, unsigned long long v, Py_ssize_t n)
{
    char *p = out + n;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return out + n;
}

typedef struct {
    const char *data;
    Py_ssize_t len;
} Part;

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
    for (int i = 0; i < 5; i++) {
        PyObject *arg = args[i == 0 ? 0 : i + 1];
        if (!PyBytes_Check(arg)) {
            PyErr_Format(PyExc_TypeError, "render_lines: argument %d must be bytes (got %.100s)",
                         i == 0 ? 1 : i + 2, Py_TYPE(arg)->tp_name);
            return NULL;
        }
        if (i)
            parts[i - 1] = (Part){PyBytes_AS_STRING(arg), PyBytes_GET_SIZE(arg)};
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
    const char *body = PyBytes_AS_STRING(args[0]);
    const char *end = body + PyBytes_GET_SIZE(args[0]);
    if (end == body || end[-1] != '\n') {
        PyErr_SetString(PyExc_ValueError, "body must be complete lines, each ending in a newline");
        return NULL;
    }
    const Py_ssize_t fixed = parts[0].len + parts[1].len + parts[2].len + parts[3].len;

    PyObject *pieces = PyList_New(0);
    if (pieces == NULL)
        return NULL;
    const char *pos = body;
    while (pos < end) {
        /* Pass 1: which lines fit this piece, and its exact size. */
        const char *start = pos;
        unsigned long long first = seq;
        Py_ssize_t size = 0, escapes = 0;
        while (pos < end && size < piece) {
            const char *line = pos;
            Py_ssize_t extra = 0;
            for (;;) {
                const char *s = next_special(pos, end);  /* body ends in '\n': s < end */
                unsigned char c = (unsigned char)*s;
                if (c == '\n') {
                    pos = s + 1;
                    break;
                }
                if (byte_class[c] == 2) {
                    Py_DECREF(pieces);
                    Py_RETURN_NONE;
                }
                extra++;
                pos = s + 1;
            }
            size += fixed + 2 * digits(seq) + (pos - 1 - line) + extra;
            escapes += extra;
            seq++;
        }
        /* Pass 2: fill it. */
        PyObject *out = PyBytes_FromStringAndSize(NULL, size);
        if (out == NULL) {
            Py_DECREF(pieces);
            return NULL;
        }
        char *w = PyBytes_AS_STRING(out);
        for (unsigned long long s = first; s < seq; s++) {
            Py_ssize_t n = digits(s);
            memcpy(w, parts[0].data, parts[0].len);
            w = put_seq(w + parts[0].len, s, n);
            memcpy(w, parts[1].data, parts[1].len);
            w = put_seq(w + parts[1].len, s, n);
            memcpy(w, parts[2].data, parts[2].len);
            w += parts[2].len;
            const char *nl = memchr(start, '\n', (size_t)(pos - start));
            if (escapes == 0) {
                memcpy(w, start, (size_t)(nl - start));
                w += nl - start;
            } else {
                const char *p = start;
                for (;;) {
                    const char *e = next_special(p, nl + 1);
                    memcpy(w, p, (size_t)(e - p));
                    w += e - p;
                    if (e == nl)
                        break;
                    *w++ = '\\';
                    *w++ = *e == '\t' ? 't' : *e;
                    p = e + 1;
                }
            }
            memcpy(w, parts[3].data, parts[3].len);
            w += parts[3].len;
            start = nl + 1;
        }
        if (w != PyBytes_AS_STRING(out) + size) {
            Py_DECREF(out);
            Py_DECREF(pieces);
            PyErr_SetString(PyExc_SystemError, "render_lines: size mismatch (a bug)");
            return NULL;
        }
        int failed = PyList_Append(pieces, out);
        Py_DECREF(out);
        if (failed) {
            Py_DECREF(pieces);
            return NULL;
        }
    }
    return pieces;
}

static PyMethodDef methods[] = {
    {"render_lines", (PyCFunction)(void (*)(void))render_lines, METH_FASTCALL,
     "render_lines(body, first_seq, head, mid, event, tail, piece) -> list[bytes] | None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_crender", "C renderer of plain output lines as JSON events.", -1, methods,
};

PyMODINIT_FUNC
PyInit__crender(void)
{
    init_classes();
    return PyModule_Create(&module);
}
