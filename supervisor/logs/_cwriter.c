/* A POSIX thread that writes batches of bytes to file descriptors, in order.
 *
 * The file sink's twin of supervisor/logs/_writer.py:PyThreadWriter. The thread
 * never takes the GIL: it only reads the buffers of bytes objects that the
 * caller keeps alive for it (bytes are immutable), and the references are
 * dropped later by the next call that holds the GIL (reap). So the copy into
 * the page cache runs on another core while the event loop reads and renders.
 *
 * The thread is woken once `wake` bytes wait, or `delay` seconds after the
 * first of them, not for every batch: on 2 vCPUs a wake-up per 64 KiB chunk
 * cost more in preemptions than the thread saved. It runs SCHED_BATCH for the
 * same reason: a batch thread does not preempt the event loop when woken.
 * The delay is short (0.2 ms) because it is paid in full by the last lines of
 * every burst: at 1 ms, 200,000 lines landed 1.5 ms later (of 17 ms).
 *
 * On ext4 each batch's blocks are allocated (fallocate, the file size kept)
 * just before it is written: ext4's per-block bookkeeping of delayed
 * allocation then drops out of the copy, which took a third less time for
 * 42 MB of JSON lines in 1 MiB batches. Exactly the batch is allocated, so
 * nothing is left past the end of the file to release later.
 *
 * Memory is bounded: submit() waits, with the GIL released, while `limit`
 * bytes are queued or being written. A failed write is kept with its errno and
 * the bytes that reached the file; take_failures() turns them into
 * (errno, lines lost), exactly. A line cut short by the failure (a full disk)
 * is cut from the file too: every line in it stays whole.
 */
#define PY_SSIZE_T_CLEAN
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* fallocate */
#endif
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/falloc.h>
#include <sys/vfs.h>
#endif

#define MAX_IOV 1024
#define PREALLOCATE_MIN (64 * 1024) /* smaller batches: one more syscall for no gain */
#define EXT4_MAGIC 0xEF53            /* statfs f_type of ext2/3/4 */

typedef struct Entry {
    struct Entry *next;
    int fd;
    PyObject *pieces; /* tuple of bytes; owned, released under the GIL */
    Py_ssize_t size;
    Py_ssize_t written;
    int error; /* errno of the failed write; 0 if all was written */
} Entry;

typedef struct {
    PyObject_HEAD
    pthread_mutex_t lock;
    pthread_cond_t work; /* the thread waits here */
    pthread_cond_t room; /* callers wait here for room, or for the queue to drain */
    Entry *queue, *queue_tail;
    Entry *done, *done_tail;
    Py_ssize_t pending; /* bytes queued or being written */
    Py_ssize_t limit, wake;
    double delay;
    int urgent; /* drain() or close() is waiting: write now */
    int stop;
    int running;
    pthread_t thread;
    PyObject *failures; /* list of (errno, lines lost) */
} Writer;

/* --- the thread (no GIL) ------------------------------------------------- */

/* Allocate the `size` bytes about to be appended to fd, if it is on ext4.
 * Best effort: a failure here (a full disk) shows in the write itself. */
static void
preallocate(int fd, Py_ssize_t size)
{
#if defined(__linux__) && defined(FALLOC_FL_KEEP_SIZE)
    struct statfs fs;
    struct stat st;
    if (size < PREALLOCATE_MIN || fstatfs(fd, &fs) != 0 || fs.f_type != EXT4_MAGIC || fstat(fd, &st) != 0 ||
        !S_ISREG(st.st_mode))
        return;
    (void)fallocate(fd, FALLOC_FL_KEEP_SIZE, st.st_size, size);
#else
    (void)fd;
    (void)size;
#endif
}

/* A write that stopped inside a line left part of it in the file: cut the
 * file back to the end of the last whole line, so that the next write starts
 * a line of its own (the cut line is among the lines counted as lost). Not a
 * regular file (a pipe): nothing can be cut. */
static void
cut_partial_line(const Entry *e)
{
    Py_ssize_t left = e->written, partial = 0; /* bytes after the last newline written */
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(e->pieces) && left > 0; i++) {
        PyObject *piece = PyTuple_GET_ITEM(e->pieces, i);
        Py_ssize_t len = PyBytes_GET_SIZE(piece) < left ? PyBytes_GET_SIZE(piece) : left;
        const char *nl = memrchr(PyBytes_AS_STRING(piece), '\n', (size_t)len);
        partial = nl != NULL ? len - (nl - PyBytes_AS_STRING(piece)) - 1 : partial + len;
        left -= len;
    }
    struct stat st;
    if (partial > 0 && fstat(e->fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= partial)
        (void)ftruncate(e->fd, st.st_size - partial);
}

static void
write_entry(Entry *e)
{
    struct iovec iov[MAX_IOV];
    Py_ssize_t n = PyTuple_GET_SIZE(e->pieces);
    Py_ssize_t i = 0, offset = 0; /* first unwritten piece, and how much of it is written */
    while (i < n) {
        int count = 0;
        for (Py_ssize_t j = i; j < n && count < MAX_IOV; j++, count++) {
            PyObject *piece = PyTuple_GET_ITEM(e->pieces, j);
            Py_ssize_t skip = j == i ? offset : 0;
            iov[count].iov_base = PyBytes_AS_STRING(piece) + skip;
            iov[count].iov_len = (size_t)(PyBytes_GET_SIZE(piece) - skip);
        }
        ssize_t w = writev(e->fd, iov, count);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            e->error = w < 0 ? errno : EIO;
            cut_partial_line(e);
            return;
        }
        e->written += w;
        while (w > 0) {
            Py_ssize_t left = PyBytes_GET_SIZE(PyTuple_GET_ITEM(e->pieces, i)) - offset;
            if (w < left) {
                offset += w;
                break;
            }
            w -= left;
            i++;
            offset = 0;
        }
    }
}

/* On CLOCK_MONOTONIC (the `work` condition is set up so, in Writer_init): a
 * step of the wall clock must not delay queued lines. */
static void
deadline_after(struct timespec *ts, double seconds)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    long ns = ts->tv_nsec + (long)(seconds * 1e9);
    ts->tv_sec += ns / 1000000000L;
    ts->tv_nsec = ns % 1000000000L;
}

static void *
run(void *arg)
{
    Writer *self = arg;
    /* Signals are for the event loop's thread (Python runs its handlers there anyway). */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
#ifdef SCHED_BATCH
    struct sched_param param = {0};
    pthread_setschedparam(pthread_self(), SCHED_BATCH, &param); /* best effort */
#endif
    pthread_mutex_lock(&self->lock);
    for (;;) {
        while (self->queue == NULL && !self->stop)
            pthread_cond_wait(&self->work, &self->lock);
        if (self->queue == NULL)
            break; /* stopped, and nothing left */
        if (self->pending < self->wake && !self->urgent && !self->stop) {
            /* A little: wait for more, but not long. */
            struct timespec until;
            deadline_after(&until, self->delay);
            while (self->pending < self->wake && !self->urgent && !self->stop)
                if (pthread_cond_timedwait(&self->work, &self->lock, &until) == ETIMEDOUT)
                    break;
        }
        /* Write everything queued now, in order, without the lock. */
        Entry *first = self->queue, *last = self->queue_tail;
        self->queue = self->queue_tail = NULL;
        pthread_mutex_unlock(&self->lock);
        Py_ssize_t size = 0;
        for (Entry *e = first;; e = e->next) {
            /* A run of entries for one fd is allocated at once. */
            Py_ssize_t run = e->size;
            Entry *end = e;
            while (end != last && end->next->fd == e->fd) {
                end = end->next;
                run += end->size;
            }
            preallocate(e->fd, run);
            for (;; e = e->next) {
                write_entry(e);
                size += e->size;
                if (e == end)
                    break;
            }
            if (e == last)
                break;
        }
        pthread_mutex_lock(&self->lock);
        if (self->done_tail)
            self->done_tail->next = first;
        else
            self->done = first;
        self->done_tail = last;
        self->pending -= size;
        pthread_cond_broadcast(&self->room);
    }
    pthread_mutex_unlock(&self->lock);
    return NULL;
}

/* --- the caller's side (GIL held unless noted) ---------------------------- */

static Py_ssize_t
lost_lines(Entry *e)
{
    Py_ssize_t lost = 0, skip = e->written;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(e->pieces); i++) {
        PyObject *piece = PyTuple_GET_ITEM(e->pieces, i);
        Py_ssize_t len = PyBytes_GET_SIZE(piece);
        if (skip >= len) {
            skip -= len;
            continue;
        }
        const char *p = PyBytes_AS_STRING(piece) + skip, *end = PyBytes_AS_STRING(piece) + len;
        while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
            lost++;
            p++;
        }
        skip = 0;
    }
    return lost;
}

/* Release what the thread has finished with; keep its failures. */
static int
reap(Writer *self)
{
    pthread_mutex_lock(&self->lock);
    Entry *e = self->done;
    self->done = self->done_tail = NULL;
    pthread_mutex_unlock(&self->lock);
    int status = 0;
    while (e != NULL) {
        Entry *next = e->next;
        if (e->error && status == 0) {
            PyObject *item = Py_BuildValue("(in)", e->error, lost_lines(e));
            if (item == NULL || PyList_Append(self->failures, item) < 0)
                status = -1;
            Py_XDECREF(item);
        }
        Py_DECREF(e->pieces);
        PyMem_RawFree(e);
        e = next;
    }
    return status;
}

static int
Writer_init(Writer *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"limit", "wake", "delay", NULL};
    Py_ssize_t limit = 8 << 20, wake = 1 << 20;
    double delay = 0.0002;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|nnd:Writer", keywords, &limit, &wake, &delay))
        return -1;
    if (limit < 1 || wake < 1 || wake > limit) {
        PyErr_Format(PyExc_ValueError, "need 1 <= wake <= limit (got wake=%zd, limit=%zd)", wake, limit);
        return -1;
    }
    if (!(delay >= 0 && delay <= 1)) {
        PyObject *value = PyFloat_FromDouble(delay);
        if (value != NULL)
            PyErr_Format(PyExc_ValueError, "delay must be between 0 and 1 second (got %R)", value);
        Py_XDECREF(value);
        return -1;
    }
    if (self->failures != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Writer is already initialised");
        return -1;
    }
    self->limit = limit;
    self->wake = wake;
    self->delay = delay;
    pthread_mutex_init(&self->lock, NULL);
    pthread_condattr_t monotonic;
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
    pthread_cond_init(&self->work, &monotonic);
    pthread_condattr_destroy(&monotonic);
    pthread_cond_init(&self->room, NULL);
    self->failures = PyList_New(0);
    if (self->failures == NULL)
        return -1;
    int rc = pthread_create(&self->thread, NULL, run, self);
    if (rc != 0) {
        errno = rc;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->running = 1;
    return 0;
}

static PyObject *
Writer_submit(Writer *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "submit(fd, pieces) takes 2 arguments (got %zd)", nargs);
        return NULL;
    }
    if (!self->running) {
        PyErr_SetString(PyExc_ValueError, "submit() on a closed Writer");
        return NULL;
    }
    long fd = PyLong_AsLong(args[0]);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (fd < 0 || fd > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "fd must be a file descriptor (got %ld)", fd);
        return NULL;
    }
    PyObject *pieces = PySequence_Tuple(args[1]);
    if (pieces == NULL)
        return NULL;
    Py_ssize_t size = 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(pieces); i++) {
        PyObject *piece = PyTuple_GET_ITEM(pieces, i);
        if (!PyBytes_CheckExact(piece)) {
            PyErr_Format(PyExc_TypeError, "pieces must be bytes (got %.100s)", Py_TYPE(piece)->tp_name);
            Py_DECREF(pieces);
            return NULL;
        }
        size += PyBytes_GET_SIZE(piece);
    }
    if (reap(self) < 0) {
        Py_DECREF(pieces);
        return NULL;
    }
    Entry *e = PyMem_RawCalloc(1, sizeof(Entry));
    if (e == NULL) {
        Py_DECREF(pieces);
        return PyErr_NoMemory();
    }
    e->fd = (int)fd;
    e->pieces = pieces;
    e->size = size;
    /* The GIL is released around the lock: a caller never holds one while waiting for the other. */
    int closed;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&self->lock);
    while (self->pending >= self->limit && !self->stop)
        pthread_cond_wait(&self->room, &self->lock);
    closed = self->stop; /* close() from another thread meanwhile */
    if (!closed) {
        Py_ssize_t before = self->pending;
        if (self->queue_tail)
            self->queue_tail->next = e;
        else
            self->queue = e;
        self->queue_tail = e;
        self->pending += size;
        /* Wake the thread for the first bytes (it starts its delay) and when wake is reached. */
        if (before == 0 || (before < self->wake && self->pending >= self->wake))
            pthread_cond_signal(&self->work);
    }
    pthread_mutex_unlock(&self->lock);
    Py_END_ALLOW_THREADS
    if (closed) {
        Py_DECREF(e->pieces);
        PyMem_RawFree(e);
        PyErr_SetString(PyExc_ValueError, "submit() on a closed Writer");
        return NULL;
    }
    Py_RETURN_NONE;
}

static void
wait_drained(Writer *self)
{
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&self->lock);
    self->urgent++;
    pthread_cond_signal(&self->work);
    while (self->pending)
        pthread_cond_wait(&self->room, &self->lock);
    self->urgent--;
    pthread_mutex_unlock(&self->lock);
    Py_END_ALLOW_THREADS
}

static PyObject *
Writer_drain(Writer *self, PyObject *unused)
{
    if (self->running)
        wait_drained(self);
    if (self->failures != NULL && reap(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Writer_take_failures(Writer *self, PyObject *unused)
{
    if (self->failures == NULL)
        return PyList_New(0);
    if (reap(self) < 0)
        return NULL;
    PyObject *failures = self->failures;
    if (PyList_GET_SIZE(failures) == 0)
        return PyList_New(0);
    self->failures = PyList_New(0);
    if (self->failures == NULL) {
        self->failures = failures;
        return NULL;
    }
    return failures;
}

/* The thread writes what is queued, then ends. It never takes the GIL, so
 * joining it with the GIL held is safe (dealloc); close() lets go of the GIL,
 * so that other threads run while a slow disk takes the last bytes. */
static void
stop_thread(Writer *self, int release_gil)
{
    if (!self->running)
        return;
    pthread_mutex_lock(&self->lock);
    self->stop = 1;
    pthread_cond_signal(&self->work);
    pthread_mutex_unlock(&self->lock);
    if (release_gil) {
        Py_BEGIN_ALLOW_THREADS
        pthread_join(self->thread, NULL);
        Py_END_ALLOW_THREADS
    } else
        pthread_join(self->thread, NULL);
    self->running = 0;
}

static PyObject *
Writer_close(Writer *self, PyObject *unused)
{
    stop_thread(self, 1);
    if (self->failures != NULL && reap(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Writer_pending(Writer *self, void *closure)
{
    if (self->failures == NULL)
        return PyLong_FromLong(0);
    pthread_mutex_lock(&self->lock);
    Py_ssize_t pending = self->pending;
    pthread_mutex_unlock(&self->lock);
    return PyLong_FromSsize_t(pending);
}

static void
Writer_dealloc(Writer *self)
{
    stop_thread(self, 0);
    if (self->failures != NULL) {
        reap(self);
        pthread_cond_destroy(&self->work);
        pthread_cond_destroy(&self->room);
        pthread_mutex_destroy(&self->lock);
        Py_DECREF(self->failures);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Writer_methods[] = {
    {"submit", (PyCFunction)(void (*)(void))Writer_submit, METH_FASTCALL,
     "submit(fd, pieces): queue the bytes pieces for fd; waits while `limit` bytes are pending."},
    {"drain", (PyCFunction)Writer_drain, METH_NOARGS, "Return once everything submitted is written or failed."},
    {"take_failures", (PyCFunction)Writer_take_failures, METH_NOARGS,
     "The failures since the last call, as (errno, lines lost), oldest first."},
    {"close", (PyCFunction)Writer_close, METH_NOARGS, "Write what is queued, then end the thread."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Writer_getset[] = {
    {"pending", (getter)Writer_pending, NULL, "Bytes queued or being written.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject WriterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "supervisor.logs._cwriter.Writer",
    .tp_basicsize = sizeof(Writer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Writer(limit=8 MiB, wake=1 MiB, delay=0.0002): writes bytes to fds on a thread of its own.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Writer_init,
    .tp_dealloc = (destructor)Writer_dealloc,
    .tp_methods = Writer_methods,
    .tp_getset = Writer_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_cwriter", "A thread that writes batches of bytes without the GIL.", -1, NULL,
};

PyMODINIT_FUNC
PyInit__cwriter(void)
{
    if (PyType_Ready(&WriterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&WriterType);
    if (PyModule_AddObject(m, "Writer", (PyObject *)&WriterType) < 0) {
        Py_DECREF(&WriterType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
