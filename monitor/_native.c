/* Compiled kernels of the join's pending table and owner index (monitor/core/join.py,
 * PendingTable and OwnerIndex), of the scatter of a poll's terms into open panes
 * (monitor/core/layout.py, scatter_panes), of many models' numeric features binned over
 * their own references at once (monitor/core/layout.py, feature_terms_many), of the
 * numeric features read from the decoded events (monitor/core/fastpath.py), of a window
 * set's pane close (monitor/core/windows.py, WindowSet.close), of a delta's row blocks
 * taken out of stage 1's ledger and added into stage 2's open panes (monitor/core/partials.py,
 * DeltaLedger.take; WindowSet.add_rows), of the replay's reading of kcat -J lines
 * (monitor/replay.py), of the chi-square p-value of the drift statistics and a CUSUM's
 * average run length (monitor/core/drift.py, detectors.py), of the planner's reads of a
 * segment's decoded events (monitor/core/fastpath.py, engine.py), of the confluent source's
 * reading of a consume's records (monitor/kafka/confluent_source.py) and of a poll's
 * longest value (monitor/gc_policy.py): each in its own section below.
 *
 * The pending table keeps its index as numpy columns: an open-addressing table of int32
 * row numbers (linear probing, -1 for an empty slot) over rows that hold the CRC-32 of
 * their id (uint32), their event time (float64, NaN for a dead row) and the end offset of
 * their id's UTF-8 bytes (int64) in one byte buffer. These functions probe and fill that
 * index exactly as join.py's numpy code does, one id at a time in C instead of a few dozen
 * numpy calls per poll: they read the columns through the buffer protocol, or an exact
 * ndarray's leading fields (np_view; no numpy C API, no build dependency besides Python's
 * headers) and change nothing but the slots
 * (place) or the output rows (lookup); pending_add and pending_pop append and remove a
 * group's rows, columns, index and byte buffer together (pending_add_groups and
 * pending_pop_groups: many tables' groups in one call), and pending_compact moves a
 * table's live rows to fresh columns. join.py falls back to its numpy code when this
 * module is not built; tests/core/test_native.py checks that both agree.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define GOLDEN 0x9E3779B1u /* join._GOLDEN: the home slot is the top bits of crc * this */

/* A buffer argument: the object, the item size and access it must have, its name in
 * errors, and the view taken of it. */
typedef struct {
    PyObject *obj;
    Py_ssize_t itemsize;
    int writable;
    const char *what;
    Py_buffer buf;
} arg_t;

/* ------------------------------------------------------------- views of numpy arrays
 * A kernel call of a poll with many models takes thousands of small arrays' buffers (a
 * (model, partition) group's table columns, a pane's blocks), and numpy's getbuffer builds
 * and compares a fresh description of the array for each (5 % of a hundred models' poll,
 * sampled). np_view() gives the same Py_buffer for an exact numpy.ndarray read
 * from the array object's leading fields (data, nd, dimensions, strides, base, descr,
 * flags: the layout numpy's ABI keeps, PyArrayObject_fields) when the request needs no
 * format string and the array meets it (contiguous, writeable when asked); anything else
 * goes to PyObject_GetBuffer. The item size of each dtype is learnt once from numpy's own
 * buffer, which also checks the fields read here (data, shape, strides, flags, descr)
 * against numpy's answers: any mismatch turns the shortcut off for good. Release with PyBuffer_Release as usual (the view holds
 * a reference to the array; numpy's arrays have no release hook, which is checked). */

typedef struct {
    PyObject_HEAD
    char *data;
    int nd;
    Py_ssize_t *dimensions;
    Py_ssize_t *strides;
    PyObject *base;
    PyObject *descr;
    int flags;
} np_fields_t;

#define NP_C_CONTIGUOUS 0x0001
#define NP_WRITEABLE 0x0400
#define NP_WARN_ON_WRITE ((int)(1u << 31))
#define VIEW_DESCRS 16

static PyTypeObject *view_type;            /* numpy.ndarray, once met */
static int view_off;                       /* the shortcut found unsafe: never again */
static PyObject *view_descr[VIEW_DESCRS];  /* dtypes met (held), with their item sizes */
static Py_ssize_t view_size[VIEW_DESCRS];
static int view_descrs;
static int view_direct;                   /* whether the last np_view took the shortcut */

/* Learn ``descr``'s item size from numpy's own view of o, checking the fields read here
 * against it; the size, or -1 (shortcut off, or the cache full: numpy's getbuffer then). */
static Py_ssize_t
view_learn(PyObject *o, const np_fields_t *f)
{
    Py_buffer b;
    if (view_descrs >= VIEW_DESCRS)
        return -1;
    if (PyObject_GetBuffer(o, &b, PyBUF_STRIDES) < 0) {
        PyErr_Clear();
        return -1;
    }
    int same = b.buf == (void *)f->data && b.ndim == f->nd && b.itemsize > 0;
    Py_ssize_t cells = 1;
    for (int d = 0; same && d < b.ndim; d++) {
        /* (numpy packs a C-contiguous array's strides: only others are its own) */
        same = b.shape[d] == f->dimensions[d]
               && (b.strides[d] == f->strides[d] || (f->flags & NP_C_CONTIGUOUS));
        cells *= f->dimensions[d];
    }
    same = same && b.len == cells * b.itemsize;
    Py_ssize_t size = b.itemsize;
    int readonly = b.readonly;
    PyBuffer_Release(&b);
    /* the flags and descr read here against numpy's answers too: a C-contiguous request
     * granted exactly when the flag says so, the same readonly, a dtype for the descr */
    int c_contiguous = PyObject_GetBuffer(o, &b, PyBUF_C_CONTIGUOUS) == 0;
    if (c_contiguous)
        PyBuffer_Release(&b);
    else
        PyErr_Clear();
    same = same && c_contiguous == ((f->flags & NP_C_CONTIGUOUS) != 0)
           && readonly == (!(f->flags & NP_WRITEABLE) || (f->flags & NP_WARN_ON_WRITE))
           && f->descr != NULL && strstr(Py_TYPE(f->descr)->tp_name, "dtype") != NULL;
    if (!same) {
        view_off = 1;
        return -1;
    }
    view_descr[view_descrs] = Py_NewRef(f->descr);
    view_size[view_descrs++] = size;
    return size;
}

/* PyObject_GetBuffer(o, b, flags), by the array's fields when o is an exact ndarray that
 * meets a request without PyBUF_FORMAT (see above). */
static int
np_view(PyObject *o, Py_buffer *b, int flags)
{
    PyTypeObject *type = Py_TYPE(o);
    view_direct = 0;
    if (view_off || (flags & PyBUF_FORMAT) == PyBUF_FORMAT)
        return PyObject_GetBuffer(o, b, flags);
    if (type != view_type) {
        if (view_type != NULL || strcmp(type->tp_name, "numpy.ndarray") != 0)
            return PyObject_GetBuffer(o, b, flags);
        if (type->tp_as_buffer == NULL || type->tp_as_buffer->bf_releasebuffer != NULL) {
            view_off = 1;
            return PyObject_GetBuffer(o, b, flags);
        }
        view_type = type;
    }
    const np_fields_t *f = (const np_fields_t *)o;
    int fl = f->flags;
    int strided = (flags & PyBUF_STRIDES) == PyBUF_STRIDES;
    int contiguous = (fl & NP_C_CONTIGUOUS) != 0;
    /* numpy's checks, in its order (anything it would refuse is left to it, to say why):
     * a Fortran-order request, a contiguous one or one without strides of an array that
     * is not C-contiguous, a writable one of an array that cannot be written */
    if ((flags & PyBUF_F_CONTIGUOUS) == PyBUF_F_CONTIGUOUS
        || (!contiguous && (!strided || (flags & PyBUF_C_CONTIGUOUS) == PyBUF_C_CONTIGUOUS
                            || (flags & PyBUF_ANY_CONTIGUOUS) == PyBUF_ANY_CONTIGUOUS))
        || ((flags & PyBUF_WRITABLE) && (!(fl & NP_WRITEABLE) || (fl & NP_WARN_ON_WRITE))))
        return PyObject_GetBuffer(o, b, flags);
    Py_ssize_t size = -1;
    for (int i = 0; i < view_descrs; i++)
        if (view_descr[i] == f->descr) {
            size = view_size[i];
            break;
        }
    if (size < 0 && (size = view_learn(o, f)) < 0)
        return PyObject_GetBuffer(o, b, flags);
    Py_ssize_t cells = 1;
    for (int d = 0; d < f->nd; d++)
        cells *= f->dimensions[d];
    if (strided && contiguous) {
        /* numpy gives a C-contiguous array's strides as the packed ones (an axis of one
         * may hold any stride): an array whose own differ is left to it */
        Py_ssize_t packed = size;
        for (int d = f->nd - 1; d >= 0; d--) {
            if (f->strides[d] != packed)
                return PyObject_GetBuffer(o, b, flags);
            packed *= f->dimensions[d];
        }
    }
    b->buf = f->data;
    b->obj = Py_NewRef(o);
    b->len = cells * size;
    b->itemsize = size;
    b->readonly = !(fl & NP_WRITEABLE) || (fl & NP_WARN_ON_WRITE);
    b->ndim = (flags & PyBUF_ND) == PyBUF_ND ? f->nd : 0;
    b->format = NULL;
    b->shape = (flags & PyBUF_ND) == PyBUF_ND ? f->dimensions : NULL;
    b->strides = strided ? f->strides : NULL;
    b->suboffsets = NULL;
    b->internal = NULL;
    view_direct = 1;
    return 0;
}

PyDoc_STRVAR(array_view_doc,
"array_view(obj, flags) -> (direct, address, len, itemsize, readonly, ndim, shape, strides)\n\n"
"The buffer the kernels take of obj for the request flags (the PyBUF_* bits): whether it\n"
"was read from an ndarray's fields (np_view's shortcut) rather than numpy's getbuffer,\n"
"the address of its first item, its length in bytes, item size, readonly, ndim, and its\n"
"shape and strides (None when the request leaves them out). For the tests, which compare\n"
"it with numpy's own view.");

/* The n sizes as a tuple of ints (NULL with an error set). */
static PyObject *
view_tuple(const Py_ssize_t *sizes, int n)
{
    PyObject *out = PyTuple_New(n);
    for (int d = 0; out != NULL && d < n; d++) {
        PyObject *item = PyLong_FromSsize_t(sizes[d]);
        if (item == NULL)
            Py_CLEAR(out);
        else
            PyTuple_SET_ITEM(out, d, item);
    }
    return out;
}

static PyObject *
array_view(PyObject *self, PyObject *args)
{
    PyObject *o;
    int flags;
    (void)self;
    if (!PyArg_ParseTuple(args, "Oi", &o, &flags))
        return NULL;
    Py_buffer b;
    if (np_view(o, &b, flags) < 0)
        return NULL;
    int direct = view_direct;
    PyObject *shape = b.shape != NULL ? view_tuple(b.shape, b.ndim) : Py_NewRef(Py_None);
    PyObject *strides = b.strides != NULL ? view_tuple(b.strides, b.ndim) : Py_NewRef(Py_None);
    PyObject *out = NULL;
    if (shape != NULL && strides != NULL)
        out = Py_BuildValue("(iKnniiOO)", direct, (unsigned long long)(uintptr_t)b.buf, b.len,
                            b.itemsize, b.readonly, b.ndim, shape, strides);
    Py_XDECREF(shape);
    Py_XDECREF(strides);
    PyBuffer_Release(&b);
    return out;
}

static void
release(arg_t *args, int n)
{
    while (n-- > 0)
        PyBuffer_Release(&args[n].buf);
}

/* Views of the n buffer arguments (C-contiguous, of their item size), or -1 with an error
 * set and none held. */
static int
acquire(arg_t *args, int n)
{
    for (int i = 0; i < n; i++) {
        arg_t *a = &args[i];
        int flags = PyBUF_C_CONTIGUOUS | (a->writable ? PyBUF_WRITABLE : 0);
        if (np_view(a->obj, &a->buf, flags) < 0) {
            release(args, i);
            return -1;
        }
        if (a->buf.itemsize != a->itemsize) {
            PyErr_Format(PyExc_TypeError, "%s: items of %zd bytes expected, got %zd", a->what,
                         a->itemsize, a->buf.itemsize);
            release(args, i + 1);
            return -1;
        }
    }
    return 0;
}

static inline Py_ssize_t
home(uint32_t crc, int shift)
{
    return (Py_ssize_t)(((uint32_t)(crc * GOLDEN)) >> shift);
}

/* Whether sizes[0:groups] (none negative) add up to n: a split of n ids into consecutive
 * groups, as the *_groups kernels take them; 0 with ValueError set when not. */
static int
split_ok(const int64_t *sizes, Py_ssize_t groups, Py_ssize_t n)
{
    Py_ssize_t total = 0;
    for (Py_ssize_t g = 0; g < groups; g++) {
        if (sizes[g] < 0 || sizes[g] > n - total) {
            PyErr_SetString(PyExc_ValueError, "sizes: not a split of the ids");
            return 0;
        }
        total += (Py_ssize_t)sizes[g];
    }
    if (total != n) {
        PyErr_SetString(PyExc_ValueError, "sizes: not a split of the ids");
        return 0;
    }
    return 1;
}

/* The probe of a pending table (lookup's, pending_pop's): the row of its columns that
   holds the live id key (size bytes, CRC-32 crc), or -1 when none does (dead rows, NaN
   time, are passed over; an empty slot ends the probe); -2 with ValueError set when a
   slot names a row past the columns. */
static int64_t
probe_row(const int32_t *slots, Py_ssize_t nslots, int shift, const uint32_t *hashes,
          const double *ts, const int64_t *ends, Py_ssize_t rows, const char *blob,
          Py_ssize_t blob_len, const char *key, Py_ssize_t size, uint32_t crc)
{
    Py_ssize_t mask = nslots - 1, pos = home(crc, shift);
    for (Py_ssize_t probes = 0; probes < nslots; probes++) {
        int32_t row = slots[pos];
        if (row < 0)
            return -1;
        if (row >= rows) {
            PyErr_SetString(PyExc_ValueError, "slots: a row beyond the columns");
            return -2;
        }
        double t = ts[row];
        if (t == t && hashes[row] == crc) {
            int64_t end = ends[row], start = row ? ends[row - 1] : 0;
            if (end - start == size && start >= 0 && end <= blob_len &&
                memcmp(blob + start, key, (size_t)size) == 0)
                return row;
        }
        pos = (pos + 1) & mask;
    }
    return -1;
}

/* ---- a probe loop's memory read ahead
 * A probe of a table larger than the cache misses it at each of three dependent reads: the
 * home slot, then the row's time, CRC-32 and end offsets, then the id's bytes (and, for a
 * pop, the row's prediction, score and slice ids). A loop over many ids asks for these
 * lines for the ids ahead of the one it probes, each read AHEAD_* ids ahead of it and one
 * stage after the read it depends on, so that the misses of several ids overlap instead
 * of following one another. A prefetch is a hint: no result depends on it. */

#define AHEAD_SLOT 16 /* the home slot of the id this many ahead */
#define AHEAD_ROW 8   /* the row's columns of the id this many ahead (its slot read) */
#define AHEAD_KEY 3   /* the bytes of the id this many ahead (its end offsets read) */
/* Rows from which a table's columns are read ahead: below, they are about a MB or less and
 * stay in the cache between polls, where the reads ahead cost more than they save (timed:
 * a tenth more for a table of 20,000 rows, a fifth less for one of 600,000). */
#define AHEAD_FROM_ROWS 65536

#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(addr) __builtin_prefetch((const void *)(addr))
#else
#define PREFETCH(addr) ((void)(addr))
#endif

/* The columns a probe reads; pred, score and slices are NULL where the loop does not
 * read them. */
typedef struct {
    const int32_t *slots;
    int shift;
    const uint32_t *hashes;
    const double *ts;
    const int64_t *ends;
    Py_ssize_t rows;
    const char *blob;
    Py_ssize_t blob_len;
    const double *pred, *score;
    const int32_t *slices;
    Py_ssize_t k;
} probe_cols_t;

/* The row the home slot of crc names, -1 for none (or one past the columns). */
static inline int32_t
home_row(const probe_cols_t *c, uint32_t crc)
{
    int32_t row = c->slots[home(crc, c->shift)];
    return row < c->rows ? row : -1;
}

/* The reads ahead of the probe of crcs[i] (crcs[0:n] the loop's ids' CRC-32s). */
static inline void
probe_ahead(const probe_cols_t *c, const uint32_t *crcs, Py_ssize_t i, Py_ssize_t n)
{
    if (c->rows < AHEAD_FROM_ROWS)
        return;
    if (i + AHEAD_SLOT < n)
        PREFETCH(c->slots + home(crcs[i + AHEAD_SLOT], c->shift));
    if (i + AHEAD_ROW < n) {
        int32_t row = home_row(c, crcs[i + AHEAD_ROW]);
        if (row >= 0) {
            PREFETCH(c->ts + row);
            PREFETCH(c->hashes + row);
            PREFETCH(c->ends + row);
            if (row > 0)
                PREFETCH(c->ends + row - 1);
            if (c->pred != NULL) {
                PREFETCH(c->pred + row);
                PREFETCH(c->score + row);
                if (c->k > 0)
                    PREFETCH(c->slices + row * c->k);
            }
        }
    }
    if (i + AHEAD_KEY < n) {
        int32_t row = home_row(c, crcs[i + AHEAD_KEY]);
        if (row >= 0) {
            int64_t start = row ? c->ends[row - 1] : 0;
            if (start >= 0 && start < c->blob_len)
                PREFETCH(c->blob + start);
        }
    }
}

PyDoc_STRVAR(lookup_doc,
"lookup(slots, hashes, ts, ends, blob, shift, keys, crcs, out)\n\n"
"Write into out[i] the row of the live id keys[i] (bytes, CRC-32 crcs[i]), -1 when the\n"
"index holds none: a row matches when its hash, length and bytes equal the key's; dead\n"
"rows (NaN time) are passed over, an empty slot ends the probe.");

static PyObject *
lookup(PyObject *self, PyObject *args)
{
    PyObject *o_slots, *o_hash, *o_ts, *o_ends, *o_blob, *keys, *o_crcs, *o_out;
    int shift;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOiO!OO", &o_slots, &o_hash, &o_ts, &o_ends, &o_blob,
                          &shift, &PyList_Type, &keys, &o_crcs, &o_out))
        return NULL;
    arg_t a[] = {
        {o_slots, 4, 0, "slots"}, {o_hash, 4, 0, "hashes"}, {o_ts, 8, 0, "ts"},
        {o_ends, 8, 0, "ends"},   {o_blob, 1, 0, "blob"},   {o_crcs, 4, 0, "crcs"},
        {o_out, 8, 1, "out"},
    };
    const int nargs = (int)(sizeof a / sizeof a[0]);
    if (acquire(a, nargs) < 0)
        return NULL;
    const int32_t *slots = (const int32_t *)a[0].buf.buf;
    const uint32_t *hashes = (const uint32_t *)a[1].buf.buf;
    const double *ts = (const double *)a[2].buf.buf;
    const int64_t *ends = (const int64_t *)a[3].buf.buf;
    const char *blob = (const char *)a[4].buf.buf;
    const uint32_t *crcs = (const uint32_t *)a[5].buf.buf;
    int64_t *out = (int64_t *)a[6].buf.buf;
    Py_ssize_t nslots = a[0].buf.len / 4, rows = a[1].buf.len / 4, blob_len = a[4].buf.len;
    Py_ssize_t n = PyList_GET_SIZE(keys);
    PyObject *result = NULL;
    if (nslots == 0 || shift < 0 || shift > 31 || ((Py_ssize_t)1 << (32 - shift)) != nslots) {
        PyErr_SetString(PyExc_ValueError, "slots: a power of two matching shift expected");
        goto done;
    }
    if (a[5].buf.len / 4 < n || a[6].buf.len / 8 < n || a[2].buf.len / 8 < rows ||
        a[3].buf.len / 8 < rows) {
        PyErr_SetString(PyExc_ValueError, "columns shorter than the keys or rows");
        goto done;
    }
    probe_cols_t cols = {slots, shift, hashes, ts, ends, rows, blob, blob_len, NULL, NULL,
                         NULL, 0};
    for (Py_ssize_t i = 0; i < n; i++) {
        probe_ahead(&cols, crcs, i, n);
        PyObject *key = PyList_GET_ITEM(keys, i);
        if (!PyBytes_Check(key)) {
            PyErr_SetString(PyExc_TypeError, "keys: bytes expected");
            goto done;
        }
        const char *k = PyBytes_AS_STRING(key);
        Py_ssize_t size = PyBytes_GET_SIZE(key);
        int64_t found = probe_row(slots, nslots, shift, hashes, ts, ends, rows, blob, blob_len,
                                  k, size, crcs[i]);
        if (found == -2)
            goto done;
        out[i] = found;
    }
    result = Py_NewRef(Py_None);
done:
    release(a, nargs);
    return result;
}

PyDoc_STRVAR(place_doc,
"place(slots, hashes, ts, shift, rows)\n\n"
"Put each of rows (int64, live rows not in the index) in order into the first slot from\n"
"its home that is empty or holds a dead row (NaN time).");

static PyObject *
place(PyObject *self, PyObject *args)
{
    PyObject *o_slots, *o_hash, *o_ts, *o_rows;
    int shift;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOiO", &o_slots, &o_hash, &o_ts, &shift, &o_rows))
        return NULL;
    arg_t a[] = {
        {o_slots, 4, 1, "slots"}, {o_hash, 4, 0, "hashes"}, {o_ts, 8, 0, "ts"},
        {o_rows, 8, 0, "rows"},
    };
    const int nargs = (int)(sizeof a / sizeof a[0]);
    if (acquire(a, nargs) < 0)
        return NULL;
    int32_t *slots = (int32_t *)a[0].buf.buf;
    const uint32_t *hashes = (const uint32_t *)a[1].buf.buf;
    const double *ts = (const double *)a[2].buf.buf;
    const int64_t *todo = (const int64_t *)a[3].buf.buf;
    Py_ssize_t nslots = a[0].buf.len / 4, rows = a[1].buf.len / 4, n = a[3].buf.len / 8;
    PyObject *result = NULL;
    if (nslots == 0 || shift < 0 || shift > 31 || ((Py_ssize_t)1 << (32 - shift)) != nslots ||
        a[2].buf.len / 8 < rows) {
        PyErr_SetString(PyExc_ValueError, "slots: a power of two matching shift expected");
        goto done;
    }
    Py_ssize_t mask = nslots - 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t row = todo[i];
        if (row < 0 || row >= rows || row > INT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "rows: a row beyond the columns");
            goto done;
        }
        Py_ssize_t pos = home(hashes[row], shift);
        Py_ssize_t probes = 0;
        for (;;) {
            int32_t here = slots[pos];
            if (here < 0 || (here < rows && ts[here] != ts[here]))
                break;
            if (++probes == nslots) {
                PyErr_SetString(PyExc_ValueError, "slots: the index is full");
                goto done;
            }
            pos = (pos + 1) & mask;
        }
        slots[pos] = (int32_t)row;
    }
    result = Py_NewRef(Py_None);
done:
    release(a, nargs);
    return result;
}

/* crc_table[0]: the CRC-32 of each byte; crc_table[k][b]: the CRC of byte b followed by k
 * zero bytes, so that eight bytes are folded in with eight look-ups ("slicing by 8"). */
static uint32_t crc_table[8][256];

static void
crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (int k = 1; k < 8; k++)
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = crc_table[k - 1][i];
            crc_table[k][i] = (c >> 8) ^ crc_table[0][c & 0xFF];
        }
}

/* CRC-32 as zlib.crc32 computes it (IEEE 802.3, reflected): eight bytes at a time by the
 * tables above (an id of a dozen bytes takes a third of the steps of a byte at a time),
 * then the rest byte by byte. */
static uint32_t
crc32_of(const unsigned char *p, Py_ssize_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (; n >= 8; p += 8, n -= 8) {
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                           (uint32_t)p[3] << 24);
        c = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^
            crc_table[5][(lo >> 16) & 0xFF] ^ crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^
            crc_table[2][p[5]] ^ crc_table[1][p[6]] ^ crc_table[0][p[7]];
    }
    for (Py_ssize_t i = 0; i < n; i++)
        c = crc_table[0][(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

PyDoc_STRVAR(id_keys_doc,
"id_keys(pids, crcs) -> list[bytes]\n\n"
"The UTF-8 bytes of each id of pids (lone surrogates passed through, as the\n"
"'surrogatepass' error handler does) and, into crcs (uint32, at least len(pids)),\n"
"the CRC-32 of each, equal to zlib.crc32 of those bytes.");

static PyObject *
id_keys(PyObject *self, PyObject *args)
{
    PyObject *pids, *o_crcs;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O", &PyList_Type, &pids, &o_crcs))
        return NULL;
    arg_t a[] = {{o_crcs, 4, 1, "crcs"}};
    if (acquire(a, 1) < 0)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(pids);
    PyObject *out = NULL;
    if (a[0].buf.len / 4 < n) {
        PyErr_SetString(PyExc_ValueError, "crcs: shorter than the ids");
        goto done;
    }
    out = PyList_New(n);
    if (out == NULL)
        goto done;
    uint32_t *crcs = (uint32_t *)a[0].buf.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pid = PyList_GET_ITEM(pids, i);
        if (!PyUnicode_Check(pid)) {
            PyErr_SetString(PyExc_TypeError, "pids: str expected");
            Py_CLEAR(out);
            goto done;
        }
        /* A new bytes object (the str keeps no UTF-8 copy); a lone surrogate fails the
         * strict codec and is encoded again as 'surrogatepass' does. */
        PyObject *key = PyUnicode_AsUTF8String(pid);
        if (key == NULL && PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            PyErr_Clear();
            key = PyUnicode_AsEncodedString(pid, "utf-8", "surrogatepass");
        }
        if (key == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        crcs[i] = crc32_of((const unsigned char *)PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key));
        PyList_SET_ITEM(out, i, key);
    }
done:
    release(a, 1);
    return out;
}

/* The owner index (join.py, OwnerIndex): an open-addressing table of (CRC-32, model) pairs
 * with a count each, in three columns of one size (crc uint32, model int32 with -1 for an
 * empty slot, count int32 with 0 for a tombstone), probed linearly from the same home slot
 * as the pending table's index. */

/* Check the three columns of the owner index: one power-of-two size matching shift. */
static int
owner_table_ok(const arg_t *crc, const arg_t *model, const arg_t *count, int shift)
{
    Py_ssize_t n = crc->buf.len / 4;
    if (n == 0 || shift < 0 || shift > 31 || ((Py_ssize_t)1 << (32 - shift)) != n ||
        model->buf.len / 4 != n || (count != NULL && count->buf.len / 4 != n)) {
        PyErr_SetString(PyExc_ValueError, "owner table: columns of one power-of-two size "
                                          "matching shift expected");
        return 0;
    }
    return 1;
}

PyDoc_STRVAR(owner_find_doc,
"owner_find(crc, model, shift, crcs, models, out)\n\n"
"Write into out[i] the slot of the pair (crcs[i], models[i]), live or tombstone, -1 when\n"
"the table holds none (an empty slot ends the probe).");

static PyObject *
owner_find(PyObject *self, PyObject *args)
{
    PyObject *o_crc, *o_model, *o_crcs, *o_models, *o_out;
    int shift;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOiOOO", &o_crc, &o_model, &shift, &o_crcs, &o_models, &o_out))
        return NULL;
    arg_t a[] = {
        {o_crc, 4, 0, "crc"},       {o_model, 4, 0, "model"}, {o_crcs, 4, 0, "crcs"},
        {o_models, 4, 0, "models"}, {o_out, 8, 1, "out"},
    };
    const int nargs = (int)(sizeof a / sizeof a[0]);
    if (acquire(a, nargs) < 0)
        return NULL;
    PyObject *result = NULL;
    if (!owner_table_ok(&a[0], &a[1], NULL, shift))
        goto done;
    const uint32_t *crc = (const uint32_t *)a[0].buf.buf;
    const int32_t *model = (const int32_t *)a[1].buf.buf;
    const uint32_t *crcs = (const uint32_t *)a[2].buf.buf;
    const int32_t *models = (const int32_t *)a[3].buf.buf;
    int64_t *out = (int64_t *)a[4].buf.buf;
    Py_ssize_t nslots = a[0].buf.len / 4, n = a[2].buf.len / 4;
    if (a[3].buf.len / 4 < n || a[4].buf.len / 8 < n) {
        PyErr_SetString(PyExc_ValueError, "models, out: shorter than crcs");
        goto done;
    }
    Py_ssize_t mask = nslots - 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t pos = home(crcs[i], shift);
        int64_t found = -1;
        for (Py_ssize_t probes = 0; probes < nslots && model[pos] >= 0; probes++) {
            if (model[pos] == models[i] && crc[pos] == crcs[i]) {
                found = pos;
                break;
            }
            pos = (pos + 1) & mask;
        }
        out[i] = found;
    }
    result = Py_NewRef(Py_None);
done:
    release(a, nargs);
    return result;
}

PyDoc_STRVAR(owner_put_doc,
"owner_put(crc, model, count, shift, crcs, models, counts) -> int\n\n"
"Put each pair (crcs[i], models[i]), absent from the table, in order into the first slot\n"
"from its home that is empty or a tombstone, with its count (int64 counts[i]); return\n"
"how many empty slots they took.");

static PyObject *
owner_put(PyObject *self, PyObject *args)
{
    PyObject *o_crc, *o_model, *o_count, *o_crcs, *o_models, *o_counts;
    int shift;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOiOOO", &o_crc, &o_model, &o_count, &shift, &o_crcs,
                          &o_models, &o_counts))
        return NULL;
    arg_t a[] = {
        {o_crc, 4, 1, "crc"},   {o_model, 4, 1, "model"},   {o_count, 4, 1, "count"},
        {o_crcs, 4, 0, "crcs"}, {o_models, 4, 0, "models"}, {o_counts, 8, 0, "counts"},
    };
    const int nargs = (int)(sizeof a / sizeof a[0]);
    if (acquire(a, nargs) < 0)
        return NULL;
    PyObject *result = NULL;
    if (!owner_table_ok(&a[0], &a[1], &a[2], shift))
        goto done;
    uint32_t *crc = (uint32_t *)a[0].buf.buf;
    int32_t *model = (int32_t *)a[1].buf.buf;
    int32_t *count = (int32_t *)a[2].buf.buf;
    const uint32_t *crcs = (const uint32_t *)a[3].buf.buf;
    const int32_t *models = (const int32_t *)a[4].buf.buf;
    const int64_t *counts = (const int64_t *)a[5].buf.buf;
    Py_ssize_t nslots = a[0].buf.len / 4, n = a[3].buf.len / 4;
    if (a[4].buf.len / 4 < n || a[5].buf.len / 8 < n) {
        PyErr_SetString(PyExc_ValueError, "models, counts: shorter than crcs");
        goto done;
    }
    Py_ssize_t mask = nslots - 1;
    long filled = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (counts[i] < INT32_MIN || counts[i] > INT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "counts: beyond int32");
            goto done;
        }
        Py_ssize_t pos = home(crcs[i], shift);
        Py_ssize_t probes = 0;
        while (model[pos] >= 0 && count[pos] != 0) {
            if (++probes == nslots) {
                PyErr_SetString(PyExc_ValueError, "owner table: full");
                goto done;
            }
            pos = (pos + 1) & mask;
        }
        filled += model[pos] < 0;
        crc[pos] = crcs[i];
        model[pos] = models[i];
        count[pos] = (int32_t)counts[i];
    }
    result = PyLong_FromLong(filled);
done:
    release(a, nargs);
    return result;
}

PyDoc_STRVAR(owner_candidates_doc,
"owner_candidates(crc, model, count, shift, crcs, first, many)\n\n"
"For each crcs[i]: into first[i] the smallest model of a live pair with that CRC-32 (-1:\n"
"none) and into many[i] how many live pairs have it (an empty slot ends the probe).");

static PyObject *
owner_candidates(PyObject *self, PyObject *args)
{
    PyObject *o_crc, *o_model, *o_count, *o_crcs, *o_first, *o_many;
    int shift;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOiOOO", &o_crc, &o_model, &o_count, &shift, &o_crcs,
                          &o_first, &o_many))
        return NULL;
    arg_t a[] = {
        {o_crc, 4, 0, "crc"},   {o_model, 4, 0, "model"}, {o_count, 4, 0, "count"},
        {o_crcs, 4, 0, "crcs"}, {o_first, 8, 1, "first"}, {o_many, 8, 1, "many"},
    };
    const int nargs = (int)(sizeof a / sizeof a[0]);
    if (acquire(a, nargs) < 0)
        return NULL;
    PyObject *result = NULL;
    if (!owner_table_ok(&a[0], &a[1], &a[2], shift))
        goto done;
    const uint32_t *crc = (const uint32_t *)a[0].buf.buf;
    const int32_t *model = (const int32_t *)a[1].buf.buf;
    const int32_t *count = (const int32_t *)a[2].buf.buf;
    const uint32_t *crcs = (const uint32_t *)a[3].buf.buf;
    int64_t *first = (int64_t *)a[4].buf.buf;
    int64_t *many = (int64_t *)a[5].buf.buf;
    Py_ssize_t nslots = a[0].buf.len / 4, n = a[3].buf.len / 4;
    if (a[4].buf.len / 8 < n || a[5].buf.len / 8 < n) {
        PyErr_SetString(PyExc_ValueError, "first, many: shorter than crcs");
        goto done;
    }
    Py_ssize_t mask = nslots - 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t pos = home(crcs[i], shift);
        int64_t low = -1, hits = 0;
        for (Py_ssize_t probes = 0; probes < nslots && model[pos] >= 0; probes++) {
            if (count[pos] > 0 && crc[pos] == crcs[i]) {
                hits++;
                if (low < 0 || model[pos] < low)
                    low = model[pos];
            }
            pos = (pos + 1) & mask;
        }
        first[i] = low;
        many[i] = hits;
    }
    result = Py_NewRef(Py_None);
done:
    release(a, nargs);
    return result;
}

/* names[0:n] as str objects in out, made (interned) at the first call only: a str made at
 * each read of a table's attribute costs more than the read. -1 with an error set. */
static int
names_interned(PyObject **out, const char *const *names, int n)
{
    for (int j = 0; j < n; j++)
        if (out[j] == NULL && (out[j] = PyUnicode_InternFromString(names[j])) == NULL)
            return -1;
    return 0;
}

/* A pending table's columns as lookup reads them, taken from the PendingTable itself
 * (its _slots, _hash, _ts, _ends, _blob and _shift) when a probe first needs them. */
typedef struct {
    int taken; /* 1: views held; -1: the table failed its checks */
    arg_t a[5]; /* slots, hashes, ts, ends, blob */
    int shift;
} table_view_t;

static const char *table_column[6] = {"_slots", "_hash", "_ts", "_ends", "_blob", "_shift"};
static PyObject *table_column_name[6];

/* Views of table's columns into v (once per call), or -1 with an error set. */
static int
table_view(table_view_t *v, PyObject *table)
{
    static const Py_ssize_t sizes[5] = {4, 4, 8, 8, 1};
    PyObject *cols[5] = {NULL, NULL, NULL, NULL, NULL}, *o_shift = NULL;
    int ok = -1;
    if (names_interned(table_column_name, table_column, 6) < 0)
        return -1;
    for (int j = 0; j < 5; j++)
        if ((cols[j] = PyObject_GetAttr(table, table_column_name[j])) == NULL)
            goto out;
    if ((o_shift = PyObject_GetAttr(table, table_column_name[5])) == NULL)
        goto out;
    long shift = PyLong_AsLong(o_shift);
    if (shift == -1 && PyErr_Occurred())
        goto out;
    for (int j = 0; j < 5; j++) {
        v->a[j].obj = cols[j];
        v->a[j].itemsize = sizes[j];
        v->a[j].writable = 0;
        v->a[j].what = table_column[j];
    }
    if (acquire(v->a, 5) < 0)
        goto out;
    Py_ssize_t nslots = v->a[0].buf.len / 4, rows = v->a[1].buf.len / 4;
    if (nslots == 0 || shift < 0 || shift > 31 || ((Py_ssize_t)1 << (32 - shift)) != nslots ||
        v->a[2].buf.len / 8 < rows || v->a[3].buf.len / 8 < rows) {
        release(v->a, 5);
        PyErr_SetString(PyExc_ValueError, "a pending table's slots or columns do not fit");
        goto out;
    }
    v->shift = (int)shift;
    v->taken = 1;
    ok = 0;
out:
    /* the views hold the columns' buffers; the table holds the columns */
    for (int j = 0; j < 5; j++)
        Py_XDECREF(cols[j]);
    Py_XDECREF(o_shift);
    return ok;
}

/* Whether the table of v holds the live id key (size bytes, CRC-32 crc): lookup's probe. */
static int
table_holds(const table_view_t *v, const char *key, Py_ssize_t size, uint32_t crc)
{
    const int32_t *slots = (const int32_t *)v->a[0].buf.buf;
    const uint32_t *hashes = (const uint32_t *)v->a[1].buf.buf;
    const double *ts = (const double *)v->a[2].buf.buf;
    const int64_t *ends = (const int64_t *)v->a[3].buf.buf;
    const char *blob = (const char *)v->a[4].buf.buf;
    Py_ssize_t nslots = v->a[0].buf.len / 4, rows = v->a[1].buf.len / 4;
    Py_ssize_t blob_len = v->a[4].buf.len, mask = nslots - 1, pos = home(crc, v->shift);
    for (Py_ssize_t probes = 0; probes < nslots; probes++) {
        int32_t row = slots[pos];
        if (row < 0 || row >= rows)
            return 0;
        double t = ts[row];
        if (t == t && hashes[row] == crc) {
            int64_t end = ends[row], start = row ? ends[row - 1] : 0;
            if (end - start == size && start >= 0 && end <= blob_len &&
                memcmp(blob + start, key, (size_t)size) == 0)
                return 1;
        }
        pos = (pos + 1) & mask;
    }
    return 0;
}

static int utf8_view(PyObject *pid, const char **p, Py_ssize_t *n, PyObject **owned);

/* The owner index's columns as owner_first reads them. */
typedef struct {
    const uint32_t *crc;
    const int32_t *model;
    const int32_t *count;
    Py_ssize_t nslots;
    int shift;
} owner_index_t;

/* The smallest model m whose pending table tables[m] holds the id (k, size bytes, CRC-32
 * c) live, among the owner index's candidates for c (an empty slot ends the probe); -1
 * for none, -2 with an error set. A table's view is taken when a probe first needs it. */
static int64_t
owner_probe(const owner_index_t *o, PyObject *tables, table_view_t *views, const char *k,
            Py_ssize_t size, uint32_t c)
{
    Py_ssize_t ntables = PyList_GET_SIZE(tables), mask = o->nslots - 1;
    Py_ssize_t pos = home(c, o->shift);
    int64_t best = -1;
    for (Py_ssize_t probes = 0; probes < o->nslots && o->model[pos] >= 0; probes++) {
        int32_t m = o->model[pos];
        if (o->count[pos] > 0 && o->crc[pos] == c && (best < 0 || m < best)) {
            if (m >= ntables) {
                PyErr_SetString(PyExc_ValueError, "owner table: a model beyond the tables");
                return -2;
            }
            if (!views[m].taken && table_view(&views[m], PyList_GET_ITEM(tables, m)) < 0)
                return -2;
            if (table_holds(&views[m], k, size, c))
                best = m;
        }
        pos = (pos + 1) & mask;
    }
    return best;
}

PyDoc_STRVAR(owner_first_doc,
"owner_first(crc, model, count, shift, tables, keys, crcs, out)\n\n"
"For each id keys[i] (bytes, CRC-32 crcs[i]): into out[i] the smallest model m whose\n"
"pending table tables[m] holds it live, -1 for none. The candidates are the models of\n"
"the owner table's live pairs with the id's CRC-32 (an empty slot ends the probe); each\n"
"is confirmed as lookup finds an id, in the table's own columns (_slots, _hash, _ts,\n"
"_ends, _blob, _shift), read when a probe first needs them. With crcs None, keys are the\n"
"ids as str: each one's UTF-8 bytes (lone surrogates passed through) and CRC-32 found\n"
"here, as id_keys finds them, with no bytes object made (a poll of many models asks the\n"
"owner index of every label naming no model and of every plain prediction).");

static PyObject *
owner_first(PyObject *self, PyObject *args)
{
    PyObject *o_crc, *o_model, *o_count, *tables, *keys, *o_crcs, *o_out;
    int shift;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOiO!O!OO", &o_crc, &o_model, &o_count, &shift, &PyList_Type,
                          &tables, &PyList_Type, &keys, &o_crcs, &o_out))
        return NULL;
    const int ids = o_crcs == Py_None; /* keys: str ids, their CRC-32s found here */
    arg_t a[] = {
        {o_crc, 4, 0, "crc"}, {o_model, 4, 0, "model"}, {o_count, 4, 0, "count"},
        {o_out, 8, 1, "out"}, {o_crcs, 4, 0, "crcs"},
    };
    const int nargs = (int)(sizeof a / sizeof a[0]) - ids;
    if (acquire(a, nargs) < 0)
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t ntables = PyList_GET_SIZE(tables);
    table_view_t *views = PyMem_Calloc((size_t)(ntables ? ntables : 1), sizeof *views);
    if (views == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (!owner_table_ok(&a[0], &a[1], &a[2], shift))
        goto done;
    const owner_index_t o = {(const uint32_t *)a[0].buf.buf, (const int32_t *)a[1].buf.buf,
                             (const int32_t *)a[2].buf.buf, a[0].buf.len / 4, shift};
    int64_t *out = (int64_t *)a[3].buf.buf;
    const uint32_t *crcs = ids ? NULL : (const uint32_t *)a[4].buf.buf;
    Py_ssize_t n = PyList_GET_SIZE(keys);
    if (a[3].buf.len / 8 < n || (!ids && a[4].buf.len / 4 < n)) {
        PyErr_SetString(PyExc_ValueError, "crcs, out: shorter than keys");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = PyList_GET_ITEM(keys, i), *owned = NULL;
        const char *k;
        Py_ssize_t size;
        if (ids) {
            if (utf8_view(key, &k, &size, &owned) < 0)
                goto done;
        } else if (PyBytes_Check(key)) {
            k = PyBytes_AS_STRING(key);
            size = PyBytes_GET_SIZE(key);
        } else {
            PyErr_SetString(PyExc_TypeError, "keys: bytes expected");
            goto done;
        }
        int64_t best = owner_probe(&o, tables, views, k, size,
                                   ids ? crc32_of((const unsigned char *)k, size) : crcs[i]);
        Py_XDECREF(owned);
        if (best == -2)
            goto done;
        out[i] = best;
    }
    result = Py_NewRef(Py_None);
done:
    if (views != NULL) {
        for (Py_ssize_t m = 0; m < ntables; m++)
            if (views[m].taken == 1)
                release(views[m].a, 5);
        PyMem_Free(views);
    }
    release(a, nargs);
    return result;
}

/* ------------------------------------------------------------- a group's append and pop
 * PendingTable.add_many and pop_many in one call each (with 100 models a poll has
 * thousands of small (model, partition) groups, and the numpy code's some thirty calls
 * per group cost more than its rows): the same columns, index and byte buffer, changed
 * exactly as the numpy code changes them; and the owner index's counts changed as they
 * come (owner_change) instead of queued and netted with numpy (OwnerIndex._apply). */

static double quiet_nan(void);

/* The UTF-8 bytes of the str pid (lone surrogates passed through): *p and *n, with the
 * bytes object that holds them in *owned (NULL for an ASCII str, whose own data are its
 * UTF-8 bytes); -1 with an error set. */
static int
utf8_view(PyObject *pid, const char **p, Py_ssize_t *n, PyObject **owned)
{
    *owned = NULL;
    if (!PyUnicode_Check(pid)) {
        PyErr_SetString(PyExc_TypeError, "pids: str expected");
        return -1;
    }
    if (PyUnicode_IS_ASCII(pid)) {
        *p = (const char *)PyUnicode_DATA(pid);
        *n = PyUnicode_GET_LENGTH(pid);
        return 0;
    }
    PyObject *key = PyUnicode_AsUTF8String(pid);
    if (key == NULL && PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
        PyErr_Clear();
        key = PyUnicode_AsEncodedString(pid, "utf-8", "surrogatepass");
    }
    if (key == NULL)
        return -1;
    *owned = key;
    *p = PyBytes_AS_STRING(key);
    *n = PyBytes_GET_SIZE(key);
    return 0;
}

/* The CRC-32 of each id of pids[first:first + n] (str) into crcs[0:n]; -1 with an error
 * set. */
static int
crcs_of(PyObject *pids, Py_ssize_t first, Py_ssize_t n, uint32_t *crcs)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *p;
        Py_ssize_t size;
        PyObject *owned;
        if (utf8_view(PyList_GET_ITEM(pids, first + i), &p, &size, &owned) < 0)
            return -1;
        crcs[i] = crc32_of((const unsigned char *)p, size);
        Py_XDECREF(owned);
    }
    return 0;
}

/* pending_add's step: the n ids pids[first:first + n] appended as rows at, at + 1, ... of
 * a table's columns (rows of them, room checked by the caller; k slice ids a row, nslots
 * slots matching shift), with the new columns' values nts[0:n] ... (nslices: k a row);
 * returns the bytes appended to blob, -1 with an error set (blob as it was). */
static Py_ssize_t
append_rows(PyObject *blob, double *ts, double *pred, double *score, int32_t *slices,
            uint32_t *hashes, int64_t *ends, int32_t *slots, Py_ssize_t rows, Py_ssize_t nslots,
            Py_ssize_t k, int shift, Py_ssize_t at, PyObject *pids, Py_ssize_t first,
            Py_ssize_t n, const double *nts, const double *npred, const double *nscore,
            const int64_t *nslices)
{
    /* the ids' lengths, end offsets and CRC-32s, then their bytes once the buffer has grown */
    Py_ssize_t start = PyByteArray_GET_SIZE(blob), end = start;
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *p;
        Py_ssize_t size;
        PyObject *owned;
        if (utf8_view(PyList_GET_ITEM(pids, first + i), &p, &size, &owned) < 0)
            return -1;
        hashes[at + i] = crc32_of((const unsigned char *)p, size);
        end += size;
        ends[at + i] = end;
        Py_XDECREF(owned);
    }
    if (PyByteArray_Resize(blob, end) < 0)
        return -1;
    char *to = PyByteArray_AS_STRING(blob) + start;
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *p;
        Py_ssize_t size;
        PyObject *owned;
        if (utf8_view(PyList_GET_ITEM(pids, first + i), &p, &size, &owned) < 0) {
            PyObject *type, *value, *trace; /* the buffer as it was, the error kept */
            PyErr_Fetch(&type, &value, &trace);
            if (PyByteArray_Resize(blob, start) < 0)
                PyErr_Clear();
            PyErr_Restore(type, value, trace);
            return -1;
        }
        memcpy(to, p, (size_t)size);
        to += size;
        Py_XDECREF(owned);
    }
    Py_ssize_t mask = nslots - 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t row = at + i;
        ts[row] = nts[i];
        pred[row] = npred[i];
        score[row] = nscore[i];
        for (Py_ssize_t j = 0; j < k; j++)
            slices[row * k + j] = (int32_t)nslices[i * k + j];
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t row = at + i, pos = home(hashes[row], shift), probes = 0;
        if (rows >= AHEAD_FROM_ROWS) { /* the slots read ahead (see probe_ahead) */
            if (i + AHEAD_SLOT < n)
                PREFETCH(slots + home(hashes[row + AHEAD_SLOT], shift));
            if (i + AHEAD_ROW < n) {
                int32_t ahead = slots[home(hashes[row + AHEAD_ROW], shift)];
                if (ahead >= 0 && ahead < rows)
                    PREFETCH(ts + ahead);
            }
        }
        for (;;) {
            int32_t here = slots[pos];
            if (here < 0 || (here < rows && ts[here] != ts[here]))
                break;
            if (++probes == nslots) {
                PyErr_SetString(PyExc_ValueError, "slots: the index is full");
                return -1;
            }
            pos = (pos + 1) & mask;
        }
        slots[pos] = (int32_t)row;
    }
    return end - start;
}

PyDoc_STRVAR(pending_add_doc,
"pending_add(blob, ts, pred, score, slices, hashes, ends, slots, shift, at, pids,\n"
"            new_ts, new_pred, new_score, new_slices) -> int\n\n"
"Append the ids pids (new and distinct) as rows at, at + 1, ... of the columns (room\n"
"reserved): their UTF-8 bytes to the bytearray blob, their end offsets to ends, their\n"
"CRC-32s to hashes, new_ts, new_pred, new_score (float64) and new_slices (int64, k a\n"
"row, k the columns' slice ids a row) to the columns; then put each row in order into\n"
"the first slot from its home that is empty or holds a dead row. Returns the bytes\n"
"appended.");

static PyObject *
pending_add(PyObject *self, PyObject *args)
{
    PyObject *blob, *o_ts, *o_pred, *o_score, *o_slices, *o_hash, *o_ends, *o_slots, *pids;
    PyObject *o_nts, *o_npred, *o_nscore, *o_nslices;
    int shift;
    Py_ssize_t at;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!OOOOOOOinO!OOOO", &PyByteArray_Type, &blob, &o_ts, &o_pred,
                          &o_score, &o_slices, &o_hash, &o_ends, &o_slots, &shift, &at,
                          &PyList_Type, &pids, &o_nts, &o_npred, &o_nscore, &o_nslices))
        return NULL;
    arg_t a[] = {
        {o_ts, 8, 1, "ts"},          {o_pred, 8, 1, "pred"},       {o_score, 8, 1, "score"},
        {o_slices, 4, 1, "slices"},  {o_hash, 4, 1, "hashes"},     {o_ends, 8, 1, "ends"},
        {o_slots, 4, 1, "slots"},    {o_nts, 8, 0, "new_ts"},      {o_npred, 8, 0, "new_pred"},
        {o_nscore, 8, 0, "new_score"}, {o_nslices, 8, 0, "new_slices"},
    };
    const int nargs = (int)(sizeof a / sizeof a[0]);
    if (acquire(a, nargs) < 0)
        return NULL;
    double *ts = (double *)a[0].buf.buf, *pred = (double *)a[1].buf.buf;
    double *score = (double *)a[2].buf.buf;
    int32_t *slices = (int32_t *)a[3].buf.buf;
    uint32_t *hashes = (uint32_t *)a[4].buf.buf;
    int64_t *ends = (int64_t *)a[5].buf.buf;
    int32_t *slots = (int32_t *)a[6].buf.buf;
    const double *nts = (const double *)a[7].buf.buf, *npred = (const double *)a[8].buf.buf;
    const double *nscore = (const double *)a[9].buf.buf;
    const int64_t *nslices = (const int64_t *)a[10].buf.buf;
    Py_ssize_t rows = a[0].buf.len / 8, nslots = a[6].buf.len / 4;
    Py_ssize_t n = PyList_GET_SIZE(pids);
    Py_ssize_t k = rows ? a[3].buf.len / 4 / rows : 0;
    PyObject *result = NULL;
    if (nslots == 0 || shift < 0 || shift > 31 || ((Py_ssize_t)1 << (32 - shift)) != nslots) {
        PyErr_SetString(PyExc_ValueError, "slots: a power of two matching shift expected");
        goto done;
    }
    if (at < 0 || at + n > rows || at + n > INT32_MAX || a[1].buf.len / 8 != rows ||
        a[2].buf.len / 8 != rows || a[3].buf.len != rows * k * 4 || a[4].buf.len / 4 != rows ||
        a[5].buf.len / 8 != rows || a[7].buf.len / 8 != n || a[8].buf.len / 8 != n ||
        a[9].buf.len / 8 != n || a[10].buf.len / 8 != n * k) {
        PyErr_SetString(PyExc_ValueError, "columns without room for the rows, or new columns "
                                          "not of one row per id");
        goto done;
    }
    Py_ssize_t added = append_rows(blob, ts, pred, score, slices, hashes, ends, slots, rows,
                                   nslots, k, shift, at, pids, 0, n, nts, npred, nscore, nslices);
    if (added < 0)
        goto done;
    result = PyLong_FromSsize_t(added);
done:
    release(a, nargs);
    return result;
}

static int owner_count(uint32_t *crc, int32_t *model, int32_t *count, Py_ssize_t nslots,
                       int shift, const uint32_t *crcs, Py_ssize_t n, int m, int sign,
                       long *filled);
static int owner_table_ok(const arg_t *crc, const arg_t *model, const arg_t *count, int shift);

/* The attribute names pending_add_groups reads and sets, interned at the module's init
 * (a str made per read would cost more than the read). */
enum {
    A_TS, A_PRED, A_SCORE, A_SLICES, A_HASH, A_ENDS, A_SLOTS, A_BLOB, A_K, A_USED, A_LIVE,
    A_ID_BYTES, A_MEMO, A_OWNER, A_SHIFT, A_QUEUED, A_FILLED, A_CRC, A_MODEL, A_COUNT, A_HEAD,
    A_FRONT, A_NAMES
};
static const char *attr_text[A_NAMES] = {
    "_ts", "_pred", "_score", "_slices", "_hash", "_ends", "_slots", "_blob", "_k", "_used",
    "_live", "_id_bytes", "_memo", "_owner", "_shift", "_queued", "_filled", "_crc", "_model",
    "_count", "_head", "front_ts",
};
static PyObject *attr_name[A_NAMES];

/* The int attribute name of obj into *out; -1 with an error set. */
static int
get_int(PyObject *obj, int name, Py_ssize_t *out)
{
    PyObject *v = PyObject_GetAttr(obj, attr_name[name]);
    if (v == NULL)
        return -1;
    *out = PyLong_AsSsize_t(v);
    Py_DECREF(v);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

/* The attribute name of obj set to the int value; -1 with an error set. */
static int
set_int(PyObject *obj, int name, Py_ssize_t value)
{
    PyObject *v = PyLong_FromSsize_t(value);
    if (v == NULL)
        return -1;
    int r = PyObject_SetAttr(obj, attr_name[name], v);
    Py_DECREF(v);
    return r;
}

/* The length (first dimension) of the attribute name of obj into *out; -1 with an error. */
static int
get_len(PyObject *obj, int name, Py_ssize_t *out)
{
    PyObject *v = PyObject_GetAttr(obj, attr_name[name]);
    if (v == NULL)
        return -1;
    *out = PyObject_Length(v);
    Py_DECREF(v);
    return *out < 0 ? -1 : 0;
}

/* OwnerIndex.add(crcs[0:n], m) of the owner index index: its queued changes applied and
 * room made (_apply, _rebuild) as _enqueue does, then the ids counted by owner_count and
 * its _filled updated; -1 with an error set. */
static int
owner_add(PyObject *index, const uint32_t *crcs, Py_ssize_t n, int m)
{
    static const int names[3] = {A_CRC, A_MODEL, A_COUNT};
    Py_ssize_t queued, filled, size, shift;
    if (get_int(index, A_QUEUED, &queued) < 0)
        return -1;
    if (queued) {
        PyObject *r = PyObject_CallMethod(index, "_apply", NULL);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    if (get_int(index, A_FILLED, &filled) < 0 || get_len(index, A_MODEL, &size) < 0)
        return -1;
    if (5 * (filled + n) > 3 * size) {
        PyObject *r = PyObject_CallMethod(index, "_rebuild", "n", filled + n);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
        if (get_int(index, A_FILLED, &filled) < 0)
            return -1;
    }
    if (get_int(index, A_SHIFT, &shift) < 0)
        return -1;
    PyObject *cols[3] = {NULL, NULL, NULL};
    arg_t o[3];
    int ok = -1, held = 0;
    long newly = 0;
    for (int j = 0; j < 3; j++) {
        if ((cols[j] = PyObject_GetAttr(index, attr_name[names[j]])) == NULL)
            goto out;
        o[j].obj = cols[j];
        o[j].itemsize = 4;
        o[j].writable = 1;
        o[j].what = attr_text[names[j]];
    }
    if (acquire(o, 3) < 0)
        goto out;
    held = 1;
    if (shift < 0 || shift > 31 || !owner_table_ok(&o[0], &o[1], &o[2], (int)shift))
        goto out;
    if (owner_count((uint32_t *)o[0].buf.buf, (int32_t *)o[1].buf.buf, (int32_t *)o[2].buf.buf,
                    o[0].buf.len / 4, (int)shift, crcs, n, m, 1, &newly) < 0)
        goto out;
    ok = set_int(index, A_FILLED, filled + newly);
out:
    if (held)
        release(o, 3);
    for (int j = 0; j < 3; j++)
        Py_XDECREF(cols[j]);
    return ok;
}

/* add_many's step of pending_add_groups: the n ids pids[first:first + n] with their rows
 * of the new columns appended to table (a PendingTable); -1 with an error set. */
static int
table_add(PyObject *table, PyObject *pids, Py_ssize_t first, Py_ssize_t n, Py_ssize_t k,
          const double *nts, const double *npred, const double *nscore, const int64_t *nslices)
{
    static const Py_ssize_t sizes_of[7] = {8, 8, 8, 4, 4, 8, 4}; /* A_TS ... A_SLOTS */
    Py_ssize_t tk, used, rows, nslots;
    if (get_int(table, A_K, &tk) < 0 || get_int(table, A_USED, &used) < 0 ||
        get_len(table, A_TS, &rows) < 0 || get_len(table, A_SLOTS, &nslots) < 0)
        return -1;
    if (tk != k || used + n > rows || 5 * (used + n) > 3 * nslots) { /* what _reserve changes */
        PyObject *r = PyObject_CallMethod(table, "_reserve", "nn", n, k);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    PyObject *cols[7] = {NULL}, *blob = NULL, *owner = NULL;
    arg_t t[7];
    int ok = -1, held = 0;
    Py_ssize_t shift, live, id_bytes;
    for (int j = 0; j < 7; j++) {
        if ((cols[j] = PyObject_GetAttr(table, attr_name[A_TS + j])) == NULL)
            goto out;
        t[j].obj = cols[j];
        t[j].itemsize = sizes_of[j];
        t[j].writable = 1;
        t[j].what = attr_text[A_TS + j];
    }
    if ((blob = PyObject_GetAttr(table, attr_name[A_BLOB])) == NULL ||
        get_int(table, A_SHIFT, &shift) < 0 || get_int(table, A_USED, &used) < 0 ||
        get_int(table, A_LIVE, &live) < 0 ||
        get_int(table, A_ID_BYTES, &id_bytes) < 0)
        goto out;
    if (!PyByteArray_Check(blob)) {
        PyErr_SetString(PyExc_TypeError, "_blob: a bytearray expected");
        goto out;
    }
    if (acquire(t, 7) < 0)
        goto out;
    held = 1;
    rows = t[0].buf.len / 8;
    nslots = t[6].buf.len / 4;
    if (nslots == 0 || shift < 0 || shift > 31 || ((Py_ssize_t)1 << (32 - shift)) != nslots) {
        PyErr_SetString(PyExc_ValueError, "slots: a power of two matching shift expected");
        goto out;
    }
    if (used < 0 || used + n > rows || used + n > INT32_MAX || t[1].buf.len / 8 != rows ||
        t[2].buf.len / 8 != rows || t[3].buf.len != rows * k * 4 || t[4].buf.len / 4 != rows ||
        t[5].buf.len / 8 != rows) {
        PyErr_SetString(PyExc_ValueError, "a table's columns without room for the rows, or of "
                                          "other slice ids a row");
        goto out;
    }
    uint32_t *hashes = (uint32_t *)t[4].buf.buf;
    Py_ssize_t added = append_rows(blob, (double *)t[0].buf.buf, (double *)t[1].buf.buf,
                                   (double *)t[2].buf.buf, (int32_t *)t[3].buf.buf, hashes,
                                   (int64_t *)t[5].buf.buf, (int32_t *)t[6].buf.buf, rows, nslots,
                                   k, (int)shift, used, pids, first, n, nts, npred, nscore,
                                   nslices);
    if (added < 0)
        goto out;
    if (set_int(table, A_USED, used + n) < 0 || set_int(table, A_LIVE, live + n) < 0 ||
        set_int(table, A_ID_BYTES, id_bytes + added) < 0 ||
        PyObject_SetAttr(table, attr_name[A_MEMO], Py_None) < 0)
        goto out;
    if ((owner = PyObject_GetAttr(table, attr_name[A_OWNER])) == NULL)
        goto out;
    if (owner != Py_None) { /* (the partition's owner index, this table's model) */
        long m;
        if (!PyTuple_Check(owner) || PyTuple_GET_SIZE(owner) != 2 ||
            ((m = PyLong_AsLong(PyTuple_GET_ITEM(owner, 1))) == -1 && PyErr_Occurred())) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "_owner: (index, model) expected");
            goto out;
        }
        if (m < 0 || m > INT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "_owner: a model >= 0 expected");
            goto out;
        }
        if (owner_add(PyTuple_GET_ITEM(owner, 0), hashes + used, n, (int)m) < 0)
            goto out;
    }
    ok = 0;
out:
    if (held)
        release(t, 7);
    for (int j = 0; j < 7; j++)
        Py_XDECREF(cols[j]);
    Py_XDECREF(blob);
    Py_XDECREF(owner);
    return ok;
}

PyDoc_STRVAR(pending_add_groups_doc,
"pending_add_groups(tables, sizes, pids, ts, pred, score, slices)\n\n"
"PendingTable.add_many of checked ids (new and distinct) for many tables in one call:\n"
"group g, the next sizes[g] (int64) of pids with their rows of ts, pred, score (float64)\n"
"and slices (int64, k a row), is appended to tables[g] exactly as add_many appends it:\n"
"room made by the table's _reserve first when it has too little, the rows, ids and index\n"
"slots written as pending_add writes them, the table's _used, _live, _id_bytes and _memo\n"
"updated, and the ids counted for the table's model in the owner index it is bound to\n"
"(_owner: index, model) as OwnerIndex.add counts them (its queued changes applied, or it\n"
"rebuilt, first when that would). A table may be in several groups.");

static PyObject *
pending_add_groups(PyObject *self, PyObject *args)
{
    PyObject *tables, *o_sizes, *pids, *o_ts, *o_pred, *o_score, *o_slices;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!OO!OOOO", &PyList_Type, &tables, &o_sizes, &PyList_Type, &pids,
                          &o_ts, &o_pred, &o_score, &o_slices))
        return NULL;
    arg_t a[] = {
        {o_sizes, 8, 0, "sizes"}, {o_ts, 8, 0, "ts"},         {o_pred, 8, 0, "pred"},
        {o_score, 8, 0, "score"}, {o_slices, 8, 0, "slices"},
    };
    const int nargs = (int)(sizeof a / sizeof a[0]);
    if (acquire(a, nargs) < 0)
        return NULL;
    PyObject *result = NULL;
    const int64_t *sizes = (const int64_t *)a[0].buf.buf;
    const double *ts = (const double *)a[1].buf.buf, *pred = (const double *)a[2].buf.buf;
    const double *score = (const double *)a[3].buf.buf;
    const int64_t *slices = (const int64_t *)a[4].buf.buf;
    Py_ssize_t groups = PyList_GET_SIZE(tables), n = PyList_GET_SIZE(pids);
    Py_ssize_t k = n ? a[4].buf.len / 8 / n : 0;
    if (a[0].buf.len / 8 != groups || a[1].buf.len / 8 != n || a[2].buf.len / 8 != n ||
        a[3].buf.len / 8 != n || a[4].buf.len != n * k * 8) {
        PyErr_SetString(PyExc_ValueError, "sizes: one per table; columns: one row per id");
        goto done;
    }
    if (!split_ok(sizes, groups, n))
        goto done;
    Py_ssize_t first = 0;
    for (Py_ssize_t g = 0; g < groups; g++) {
        Py_ssize_t size_g = (Py_ssize_t)sizes[g];
        if (size_g && table_add(PyList_GET_ITEM(tables, g), pids, first, size_g, k, ts + first,
                                pred + first, score + first, slices + first * k) < 0)
            goto done;
        first += size_g;
    }
    result = Py_NewRef(Py_None);
done:
    release(a, nargs);
    return result;
}

PyDoc_STRVAR(pending_compact_doc,
"pending_compact(ts, pred, score, slices, hashes, ends, blob, used, new_ts, new_pred,\n"
"                new_score, new_slices, new_hashes, new_ends, new_slots, shift) -> bytearray\n\n"
"A pending table's compaction: the live rows (time not NaN) among the first used rows\n"
"of the columns, copied in order to rows 0, 1, ... of the new columns (room for them);\n"
"their ids' bytes, in order, returned as a new byte buffer, with their end offsets in it\n"
"in new_ends; and each new row put in order into the first empty slot from its home of\n"
"new_slots (every slot empty, -1). The rows, ids and slots PendingTable._maybe_compact's\n"
"numpy code keeps (its slots may be in another order: they find the same rows).");

static PyObject *
pending_compact(PyObject *self, PyObject *args)
{
    PyObject *o_ts, *o_pred, *o_score, *o_slices, *o_hash, *o_ends, *o_blob;
    PyObject *o_nts, *o_npred, *o_nscore, *o_nslices, *o_nhash, *o_nends, *o_nslots;
    Py_ssize_t used;
    int shift;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOOOnOOOOOOOi", &o_ts, &o_pred, &o_score, &o_slices,
                          &o_hash, &o_ends, &o_blob, &used, &o_nts, &o_npred, &o_nscore,
                          &o_nslices, &o_nhash, &o_nends, &o_nslots, &shift))
        return NULL;
    arg_t a[] = {
        {o_ts, 8, 0, "ts"},             {o_pred, 8, 0, "pred"},
        {o_score, 8, 0, "score"},       {o_slices, 4, 0, "slices"},
        {o_hash, 4, 0, "hashes"},       {o_ends, 8, 0, "ends"},
        {o_blob, 1, 0, "blob"},         {o_nts, 8, 1, "new_ts"},
        {o_npred, 8, 1, "new_pred"},    {o_nscore, 8, 1, "new_score"},
        {o_nslices, 4, 1, "new_slices"}, {o_nhash, 4, 1, "new_hashes"},
        {o_nends, 8, 1, "new_ends"},    {o_nslots, 4, 1, "new_slots"},
    };
    const int nargs = (int)(sizeof a / sizeof a[0]);
    if (acquire(a, nargs) < 0)
        return NULL;
    PyObject *result = NULL;
    const double *ts = (const double *)a[0].buf.buf, *pred = (const double *)a[1].buf.buf;
    const double *score = (const double *)a[2].buf.buf;
    const int32_t *slices = (const int32_t *)a[3].buf.buf;
    const uint32_t *hashes = (const uint32_t *)a[4].buf.buf;
    const int64_t *ends = (const int64_t *)a[5].buf.buf;
    const char *blob = (const char *)a[6].buf.buf;
    double *nts = (double *)a[7].buf.buf, *npred = (double *)a[8].buf.buf;
    double *nscore = (double *)a[9].buf.buf;
    int32_t *nslices = (int32_t *)a[10].buf.buf;
    uint32_t *nhashes = (uint32_t *)a[11].buf.buf;
    int64_t *nends = (int64_t *)a[12].buf.buf;
    int32_t *slots = (int32_t *)a[13].buf.buf;
    Py_ssize_t rows = a[0].buf.len / 8, room = a[7].buf.len / 8, nslots = a[13].buf.len / 4;
    Py_ssize_t k = rows ? a[3].buf.len / 4 / rows : 0, blob_len = a[6].buf.len;
    if (nslots == 0 || shift < 0 || shift > 31 || ((Py_ssize_t)1 << (32 - shift)) != nslots) {
        PyErr_SetString(PyExc_ValueError, "new_slots: a power of two matching shift expected");
        goto done;
    }
    if (used < 0 || used > rows || a[1].buf.len / 8 != rows || a[2].buf.len / 8 != rows ||
        a[3].buf.len != rows * k * 4 || a[4].buf.len / 4 != rows || a[5].buf.len / 8 != rows ||
        a[8].buf.len / 8 != room || a[9].buf.len / 8 != room || a[10].buf.len != room * k * 4 ||
        a[11].buf.len / 4 != room || a[12].buf.len / 8 != room) {
        PyErr_SetString(PyExc_ValueError, "columns of other lengths, or of other slice ids a "
                                          "row");
        goto done;
    }
    /* the live rows and their ids' bytes, all checked before anything is written */
    Py_ssize_t live = 0, bytes = 0;
    for (Py_ssize_t row = 0; row < used; row++) {
        if (ts[row] != ts[row])
            continue;
        int64_t start = row ? ends[row - 1] : 0, end = ends[row];
        if (start < 0 || end < start || end > blob_len) {
            PyErr_SetString(PyExc_ValueError, "ends: an id beyond the byte buffer");
            goto done;
        }
        live++;
        bytes += (Py_ssize_t)(end - start);
    }
    if (live > room || live >= nslots || live > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "new columns or slots without room for the live rows");
        goto done;
    }
    for (Py_ssize_t s = 0; s < nslots; s++) {
        if (slots[s] != -1) {
            PyErr_SetString(PyExc_ValueError, "new_slots: every slot empty (-1) expected");
            goto done;
        }
    }
    result = PyByteArray_FromStringAndSize(NULL, bytes);
    if (result == NULL)
        goto done;
    char *to = PyByteArray_AS_STRING(result);
    Py_ssize_t mask = nslots - 1, at = 0, offset = 0;
    for (Py_ssize_t row = 0; row < used; row++) {
        if (ts[row] != ts[row])
            continue;
        int64_t start = row ? ends[row - 1] : 0, size = ends[row] - start;
        memcpy(to + offset, blob + start, (size_t)size);
        offset += (Py_ssize_t)size;
        nends[at] = offset;
        nts[at] = ts[row];
        npred[at] = pred[row];
        nscore[at] = score[row];
        nhashes[at] = hashes[row];
        memcpy(nslices + at * k, slices + row * k, (size_t)k * sizeof *slices);
        Py_ssize_t pos = home(hashes[row], shift);
        while (slots[pos] >= 0) /* room checked: live < nslots */
            pos = (pos + 1) & mask;
        slots[pos] = (int32_t)at;
        at++;
    }
done:
    release(a, nargs);
    return result;
}

/* One id taken from a pending table (pending_pop's step): its live row found by probe_row,
   its time, prediction, score and k slice ids written at index i of the outputs (NaN and
   -1 when none holds it) and its row made dead (NaN time). Returns the row, -1 when none
   holds the id, -2 with ValueError set (see probe_row). */
static int64_t
pop_row(const int32_t *slots, Py_ssize_t nslots, int shift, const uint32_t *hashes, double *ts,
        const double *pred, const double *score, const int32_t *slices, Py_ssize_t k,
        const int64_t *ends, Py_ssize_t rows, const char *blob, Py_ssize_t blob_len,
        const char *key, Py_ssize_t size, uint32_t crc, Py_ssize_t i, char *found,
        double *ots, double *opred, double *oscore, int64_t *oslices)
{
    int64_t hit = probe_row(slots, nslots, shift, hashes, ts, ends, rows, blob, blob_len, key,
                            size, crc);
    if (hit < 0) {
        found[i] = 0;
        ots[i] = opred[i] = oscore[i] = quiet_nan();
        for (Py_ssize_t j = 0; j < k; j++)
            oslices[i * k + j] = -1;
        return hit;
    }
    found[i] = 1;
    ots[i] = ts[hit];
    opred[i] = pred[hit];
    oscore[i] = score[hit];
    for (Py_ssize_t j = 0; j < k; j++)
        oslices[i * k + j] = slices[hit * k + j];
    ts[hit] = quiet_nan();
    return hit;
}

PyDoc_STRVAR(pending_pop_doc,
"pending_pop(slots, hashes, ts, pred, score, slices, ends, blob, shift, pids,\n"
"            found, out_ts, out_pred, out_score, out_slices, gone) -> (int, int)\n\n"
"Remove the live ids pids, each found as lookup finds it and made dead (NaN time) at\n"
"once, so that an id listed twice is found at its first occurrence only. Writes found\n"
"(bool), out_ts, out_pred, out_score (float64, NaN where not found) and out_slices\n"
"(int64, k a row, -1 where not found) for each id, and the CRC-32s of the ids found, in\n"
"order, into gone[0:count]. Returns (count, their ids' bytes).");

static PyObject *
pending_pop(PyObject *self, PyObject *args)
{
    PyObject *o_slots, *o_hash, *o_ts, *o_pred, *o_score, *o_slices, *o_ends, *o_blob, *pids;
    PyObject *o_found, *o_ots, *o_opred, *o_oscore, *o_oslices, *o_gone;
    int shift;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOOOOiO!OOOOOO", &o_slots, &o_hash, &o_ts, &o_pred,
                          &o_score, &o_slices, &o_ends, &o_blob, &shift, &PyList_Type, &pids,
                          &o_found, &o_ots, &o_opred, &o_oscore, &o_oslices, &o_gone))
        return NULL;
    arg_t a[] = {
        {o_slots, 4, 0, "slots"},       {o_hash, 4, 0, "hashes"},     {o_ts, 8, 1, "ts"},
        {o_pred, 8, 0, "pred"},         {o_score, 8, 0, "score"},     {o_slices, 4, 0, "slices"},
        {o_ends, 8, 0, "ends"},         {o_blob, 1, 0, "blob"},       {o_found, 1, 1, "found"},
        {o_ots, 8, 1, "out_ts"},        {o_opred, 8, 1, "out_pred"},  {o_oscore, 8, 1, "out_score"},
        {o_oslices, 8, 1, "out_slices"}, {o_gone, 4, 1, "gone"},
    };
    const int nargs = (int)(sizeof a / sizeof a[0]);
    if (acquire(a, nargs) < 0)
        return NULL;
    const int32_t *slots = (const int32_t *)a[0].buf.buf;
    const uint32_t *hashes = (const uint32_t *)a[1].buf.buf;
    double *ts = (double *)a[2].buf.buf;
    const double *pred = (const double *)a[3].buf.buf, *score = (const double *)a[4].buf.buf;
    const int32_t *slices = (const int32_t *)a[5].buf.buf;
    const int64_t *ends = (const int64_t *)a[6].buf.buf;
    const char *blob = (const char *)a[7].buf.buf;
    char *found = (char *)a[8].buf.buf;
    double *ots = (double *)a[9].buf.buf, *opred = (double *)a[10].buf.buf;
    double *oscore = (double *)a[11].buf.buf;
    int64_t *oslices = (int64_t *)a[12].buf.buf;
    uint32_t *gone = (uint32_t *)a[13].buf.buf;
    Py_ssize_t nslots = a[0].buf.len / 4, rows = a[1].buf.len / 4, blob_len = a[7].buf.len;
    Py_ssize_t n = PyList_GET_SIZE(pids);
    Py_ssize_t k = n ? a[12].buf.len / 8 / n : 0;
    PyObject *result = NULL;
    if (nslots == 0 || shift < 0 || shift > 31 || ((Py_ssize_t)1 << (32 - shift)) != nslots) {
        PyErr_SetString(PyExc_ValueError, "slots: a power of two matching shift expected");
        goto done;
    }
    if (a[2].buf.len / 8 < rows || a[3].buf.len / 8 < rows || a[4].buf.len / 8 < rows ||
        a[5].buf.len / 4 < rows * k || a[6].buf.len / 8 < rows || a[8].buf.len != n ||
        a[9].buf.len / 8 != n || a[10].buf.len / 8 != n || a[11].buf.len / 8 != n ||
        a[12].buf.len != n * k * 8 || a[13].buf.len / 4 < n ||
        (rows && a[5].buf.len != rows * k * 4)) {
        PyErr_SetString(PyExc_ValueError, "columns shorter than the rows, or outputs not of "
                                          "one row per id");
        goto done;
    }
    Py_ssize_t count = 0, bytes = 0;
    /* a large table's ids' CRC-32s first, for the reads ahead of the probes; into gone,
     * whose first count items (the ids found, an id's CRC-32 written over its own or a
     * later one's) are the output */
    int ahead = rows >= AHEAD_FROM_ROWS;
    if (ahead && crcs_of(pids, 0, n, gone) < 0)
        goto done;
    probe_cols_t cols = {slots, shift, hashes, ts, ends, rows, blob, blob_len,
                         pred, score, slices, k};
    for (Py_ssize_t i = 0; i < n; i++) {
        probe_ahead(&cols, gone, i, n);
        const char *p;
        Py_ssize_t size;
        PyObject *owned;
        if (utf8_view(PyList_GET_ITEM(pids, i), &p, &size, &owned) < 0)
            goto done;
        uint32_t crc = ahead ? gone[i] : crc32_of((const unsigned char *)p, size);
        int64_t hit = pop_row(slots, nslots, shift, hashes, ts, pred, score, slices, k, ends,
                              rows, blob, blob_len, p, size, crc, i, found, ots, opred, oscore,
                              oslices);
        Py_XDECREF(owned);
        if (hit == -2)
            goto done;
        if (hit < 0)
            continue;
        gone[count++] = crc;
        bytes += size;
    }
    result = Py_BuildValue("nn", count, bytes);
done:
    release(a, nargs);
    return result;
}

PyDoc_STRVAR(pending_pop_groups_doc,
"pending_pop_groups(tables, sizes, pids, found, out_ts, out_pred, out_score, out_slices,\n"
"                   gone, counts, bytes)\n\n"
"pending_pop of many tables in one call: group g, the next sizes[g] (int64) of pids, is\n"
"removed from tables[g] (a PendingTable, its columns _slots, _hash, _ts, _pred, _score,\n"
"_slices, _ends, _blob and _shift read from it), exactly as pending_pop removes them;\n"
"found, out_ts, out_pred, out_score and out_slices (k a row, every table's k or an empty\n"
"table) are written for every id in order, the CRC-32s of a group's ids found into gone\n"
"from the group's first row on, and into counts[g] and bytes[g] (int64) how many of the\n"
"group's ids were found and their ids' bytes.");

static PyObject *
pending_pop_groups(PyObject *self, PyObject *args)
{
    static const char *names[9] = {"_slots", "_hash", "_ts",   "_pred", "_score",
                                   "_slices", "_ends", "_blob", "_shift"};
    static PyObject *name_of[9];
    static const Py_ssize_t sizes_of[8] = {4, 4, 8, 8, 8, 4, 8, 1};
    PyObject *tables, *o_sizes, *pids, *o_found, *o_ots, *o_opred, *o_oscore, *o_oslices;
    PyObject *o_gone, *o_counts, *o_bytes;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!OO!OOOOOOOO", &PyList_Type, &tables, &o_sizes, &PyList_Type,
                          &pids, &o_found, &o_ots, &o_opred, &o_oscore, &o_oslices, &o_gone,
                          &o_counts, &o_bytes))
        return NULL;
    arg_t a[] = {
        {o_sizes, 8, 0, "sizes"},        {o_found, 1, 1, "found"},     {o_ots, 8, 1, "out_ts"},
        {o_opred, 8, 1, "out_pred"},     {o_oscore, 8, 1, "out_score"},
        {o_oslices, 8, 1, "out_slices"}, {o_gone, 4, 1, "gone"},       {o_counts, 8, 1, "counts"},
        {o_bytes, 8, 1, "bytes"},
    };
    const int nargs = (int)(sizeof a / sizeof a[0]);
    if (acquire(a, nargs) < 0)
        return NULL;
    PyObject *result = NULL;
    const int64_t *sizes = (const int64_t *)a[0].buf.buf;
    char *found = (char *)a[1].buf.buf;
    double *ots = (double *)a[2].buf.buf, *opred = (double *)a[3].buf.buf;
    double *oscore = (double *)a[4].buf.buf;
    int64_t *oslices = (int64_t *)a[5].buf.buf;
    uint32_t *gone = (uint32_t *)a[6].buf.buf;
    int64_t *counts = (int64_t *)a[7].buf.buf, *bytes_out = (int64_t *)a[8].buf.buf;
    Py_ssize_t groups = PyList_GET_SIZE(tables), n = PyList_GET_SIZE(pids);
    Py_ssize_t k = n ? a[5].buf.len / 8 / n : 0;
    if (a[0].buf.len / 8 != groups || a[7].buf.len / 8 != groups || a[8].buf.len / 8 != groups ||
        a[1].buf.len != n || a[2].buf.len / 8 != n || a[3].buf.len / 8 != n ||
        a[4].buf.len / 8 != n || a[5].buf.len != n * k * 8 || a[6].buf.len / 4 < n) {
        PyErr_SetString(PyExc_ValueError, "sizes, counts, bytes: one per table; outputs: one "
                                          "row per id");
        goto done;
    }
    if (!split_ok(sizes, groups, n))
        goto done;
    Py_ssize_t first = 0;
    for (Py_ssize_t g = 0; g < groups; g++) {
        Py_ssize_t size_g = (Py_ssize_t)sizes[g];
        counts[g] = bytes_out[g] = 0;
        if (size_g == 0)
            continue;
        PyObject *table = PyList_GET_ITEM(tables, g), *cols[9] = {NULL};
        arg_t t[8];
        int held = 0, failed = 1;
        long shift = -1;
        if (names_interned(name_of, names, 9) < 0)
            goto table_done;
        for (int j = 0; j < 9; j++)
            if ((cols[j] = PyObject_GetAttr(table, name_of[j])) == NULL)
                goto table_done;
        shift = PyLong_AsLong(cols[8]);
        if (shift == -1 && PyErr_Occurred())
            goto table_done;
        for (int j = 0; j < 8; j++) {
            t[j].obj = cols[j];
            t[j].itemsize = sizes_of[j];
            t[j].writable = j == 2; /* _ts: a removed row is made dead */
            t[j].what = names[j];
        }
        if (acquire(t, 8) < 0)
            goto table_done;
        held = 1;
        {
            const int32_t *slots = (const int32_t *)t[0].buf.buf;
            const uint32_t *hashes = (const uint32_t *)t[1].buf.buf;
            double *ts = (double *)t[2].buf.buf;
            const double *pred = (const double *)t[3].buf.buf;
            const double *score = (const double *)t[4].buf.buf;
            const int32_t *slices = (const int32_t *)t[5].buf.buf;
            const int64_t *ends = (const int64_t *)t[6].buf.buf;
            const char *blob = (const char *)t[7].buf.buf;
            Py_ssize_t nslots = t[0].buf.len / 4, rows = t[1].buf.len / 4;
            Py_ssize_t blob_len = t[7].buf.len, count = 0, bytes = 0;
            if (nslots == 0 || shift < 0 || shift > 31 ||
                ((Py_ssize_t)1 << (32 - shift)) != nslots) {
                PyErr_SetString(PyExc_ValueError, "slots: a power of two matching shift "
                                                  "expected");
                goto table_done;
            }
            if (t[2].buf.len / 8 < rows || t[3].buf.len / 8 < rows || t[4].buf.len / 8 < rows ||
                t[6].buf.len / 8 < rows || (rows && t[5].buf.len != rows * k * 4)) {
                PyErr_SetString(PyExc_ValueError, "a table's columns shorter than its rows, "
                                                  "or of other slice ids a row");
                goto table_done;
            }
            /* a large table's group's CRC-32s first, for the reads ahead of the probes:
             * into gone from the group's first row (an id found writes its own there, or a
             * later one's) */
            uint32_t *crcs = gone + first;
            int ahead = rows >= AHEAD_FROM_ROWS;
            if (ahead && crcs_of(pids, first, size_g, crcs) < 0)
                goto table_done;
            probe_cols_t pc = {slots, (int)shift, hashes, ts, ends, rows, blob, blob_len,
                               pred, score, slices, k};
            for (Py_ssize_t i = first; i < first + size_g; i++) {
                probe_ahead(&pc, crcs, i - first, size_g);
                const char *p;
                Py_ssize_t size;
                PyObject *owned;
                if (utf8_view(PyList_GET_ITEM(pids, i), &p, &size, &owned) < 0)
                    goto table_done;
                uint32_t crc = ahead ? crcs[i - first] : crc32_of((const unsigned char *)p, size);
                int64_t hit = pop_row(slots, nslots, (int)shift, hashes, ts, pred, score, slices,
                                      k, ends, rows, blob, blob_len, p, size, crc, i, found, ots,
                                      opred, oscore, oslices);
                Py_XDECREF(owned);
                if (hit == -2)
                    goto table_done;
                if (hit < 0)
                    continue;
                gone[first + count++] = crc;
                bytes += size;
            }
            counts[g] = count;
            bytes_out[g] = bytes;
        }
        failed = 0;
    table_done:
        if (held)
            release(t, 8);
        for (int j = 0; j < 9; j++)
            Py_XDECREF(cols[j]);
        if (failed)
            goto done;
        first += size_g;
    }
    result = Py_NewRef(Py_None);
done:
    release(a, nargs);
    return result;
}

/* ------------------------------------------------------------- numeric features' bins
 * StackedBins (reference.py) of many models' numeric features at once
 * (layout.feature_terms_many): each value's histogram column over its own (model, feature)
 * edges, a count of edges at or below it, compared, never computed. */

PyDoc_STRVAR(bin_rows_doc,
"bin_rows(edges, offsets, slots, x, out)\n\n"
"For the (features, events) float64 block x, into out (int64, the same shape) the\n"
"histogram column of each value: with r = slots[e] * features + f, the edges of row r\n"
"are edges[offsets[r]:offsets[r + 1]] (ascending), and the column is how many of them\n"
"are at or below the value, less one when there are two or more and the value equals the\n"
"last (reference.bin_numeric's columns); a NaN is above every edge, as numpy sorts it.\n"
"Many models' events (layout.feature_terms_many: slots their models), or one model's\n"
"(reference.StackedBins: every slot 0).");

static PyObject *
bin_rows(PyObject *self, PyObject *args)
{
    PyObject *o_edges, *o_offsets, *o_slots, *o_x, *o_out;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOO", &o_edges, &o_offsets, &o_slots, &o_x, &o_out))
        return NULL;
    arg_t a[] = {
        {o_edges, 8, 0, "edges"}, {o_offsets, 8, 0, "offsets"}, {o_slots, 8, 0, "slots"},
        {o_x, 8, 0, "x"},         {o_out, 8, 1, "out"},
    };
    const int nargs = (int)(sizeof a / sizeof a[0]);
    if (acquire(a, nargs) < 0)
        return NULL;
    PyObject *result = NULL;
    const double *edges = (const double *)a[0].buf.buf;
    const int64_t *offsets = (const int64_t *)a[1].buf.buf;
    const int64_t *slots = (const int64_t *)a[2].buf.buf;
    const double *x = (const double *)a[3].buf.buf;
    int64_t *out = (int64_t *)a[4].buf.buf;
    Py_ssize_t nedges = a[0].buf.len / 8, nrows = a[1].buf.len / 8 - 1;
    Py_ssize_t events = a[2].buf.len / 8, cells = a[3].buf.len / 8;
    if (nrows < 0 || a[4].buf.len / 8 != cells || (events ? cells % events : cells) != 0) {
        PyErr_SetString(PyExc_ValueError, "x, out: (features, events) blocks of one size, "
                                          "offsets: one more than the rows expected");
        goto done;
    }
    Py_ssize_t features = events ? cells / events : 0;
    for (Py_ssize_t r = 0; r < nrows; r++)
        if (offsets[r] < 0 || offsets[r] > offsets[r + 1] || offsets[r + 1] > nedges) {
            PyErr_SetString(PyExc_ValueError, "offsets: ascending, within the edges expected");
            goto done;
        }
    for (Py_ssize_t e = 0; e < events; e++)
        if (slots[e] < 0 || (slots[e] + 1) * features > nrows) {
            PyErr_SetString(PyExc_ValueError, "slots: a model beyond the offsets");
            goto done;
        }
    for (Py_ssize_t f = 0; f < features; f++) {
        const double *row_x = x + f * events;
        int64_t *row_out = out + f * events;
        for (Py_ssize_t e = 0; e < events; e++) {
            Py_ssize_t r = (Py_ssize_t)slots[e] * features + f;
            const double *first = edges + offsets[r];
            Py_ssize_t n = (Py_ssize_t)(offsets[r + 1] - offsets[r]), len = n;
            const double *base = first;
            double v = row_x[e];
            if (v != v) { /* NaN: above every edge, as numpy's searchsorted sorts it */
                row_out[e] = n;
                continue;
            }
            /* the first edge above v: the window [base, base + len] that holds it halved
             * with no branch on the values (a value's bin is as unpredictable as the value) */
            while (len > 1) {
                Py_ssize_t half = len / 2;
                base = base[half] <= v ? base + half : base;
                len -= half;
            }
            Py_ssize_t lo = (base - first) + (len == 1 && base[0] <= v);
            row_out[e] = lo - (n > 1 && v == first[n - 1]);
        }
    }
    result = Py_NewRef(Py_None);
done:
    release(a, nargs);
    return result;
}

/* owner_change's step: count (sign 1) or uncount (sign -1) one id of model m for each of
 * the n CRC-32s crcs, in order, in the owner table of nslots slots; the empty slots filled
 * added to *filled. -1 with an error set (the ids before it changed). */
static int
owner_count(uint32_t *crc, int32_t *model, int32_t *count, Py_ssize_t nslots, int shift,
            const uint32_t *crcs, Py_ssize_t n, int m, int sign, long *filled)
{
    Py_ssize_t mask = nslots - 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t c = crcs[i];
        Py_ssize_t pos = home(c, shift), free = -1, probes = 0;
        while (model[pos] >= 0 && !(model[pos] == m && crc[pos] == c)) {
            if (free < 0 && count[pos] == 0)
                free = pos;
            if (++probes == nslots)
                break;
            pos = (pos + 1) & mask;
        }
        if (probes < nslots && model[pos] >= 0) { /* the pair */
            if (count[pos] + sign < 0) {
                PyErr_SetString(PyExc_KeyError, "OwnerIndex.remove: an id that was not counted");
                return -1;
            }
            if (sign > 0 && count[pos] == INT32_MAX) {
                PyErr_SetString(PyExc_OverflowError, "owner table: a count beyond int32");
                return -1;
            }
            count[pos] += sign;
            continue;
        }
        if (sign < 0) {
            PyErr_SetString(PyExc_KeyError, "OwnerIndex.remove: an id that was not counted");
            return -1;
        }
        if (free < 0) {
            if (probes == nslots) {
                PyErr_SetString(PyExc_ValueError, "owner table: full");
                return -1;
            }
            free = pos;
            (*filled)++;
        }
        crc[free] = c;
        model[free] = m;
        count[free] = 1;
    }
    return 0;
}

PyDoc_STRVAR(owner_change_doc,
"owner_change(crc, model, count, shift, crcs, m, sign) -> int\n\n"
"Count (sign 1) or uncount (sign -1) one id of model m for each CRC-32 of crcs, in\n"
"order, straight into the owner table: a pair found (live or tombstone) has its count\n"
"changed; a new pair (sign 1 only) goes into the first free slot (empty or tombstone)\n"
"on its probe. Returns the empty slots it filled. KeyError when an id that was not\n"
"counted is uncounted (the ids before it changed).");

static PyObject *
owner_change(PyObject *self, PyObject *args)
{
    PyObject *o_crc, *o_model, *o_count, *o_crcs;
    int shift, m, sign;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOiOii", &o_crc, &o_model, &o_count, &shift, &o_crcs, &m,
                          &sign))
        return NULL;
    arg_t a[] = {
        {o_crc, 4, 1, "crc"}, {o_model, 4, 1, "model"}, {o_count, 4, 1, "count"},
        {o_crcs, 4, 0, "crcs"},
    };
    const int nargs = (int)(sizeof a / sizeof a[0]);
    if (acquire(a, nargs) < 0)
        return NULL;
    PyObject *result = NULL;
    if (!owner_table_ok(&a[0], &a[1], &a[2], shift))
        goto done;
    if (m < 0 || (sign != 1 && sign != -1)) {
        PyErr_SetString(PyExc_ValueError, "a model >= 0 and a sign of 1 or -1 expected");
        goto done;
    }
    long filled = 0;
    if (owner_count((uint32_t *)a[0].buf.buf, (int32_t *)a[1].buf.buf, (int32_t *)a[2].buf.buf,
                    a[0].buf.len / 4, shift, (const uint32_t *)a[3].buf.buf, a[3].buf.len / 4,
                    m, sign, &filled) < 0)
        goto done;
    result = PyLong_FromLong(filled);
done:
    release(a, nargs);
    return result;
}

/* The pane scatter (layout.py, scatter_panes): the open-pane sums of many (partition,
 * pane) groups of a poll's events, into one block per call. The events come in sets
 * (layout.Terms tuples: group (events,), slices (events, k) with -1 where an event has no
 * slice, cols and vals (events, terms)); a block holds the groups first to last - 1, a
 * row for each (group, slice) pair its events touch, in ascending order. pane_rows numbers
 * those rows, pane_sums adds the terms into them exactly as numpy's bincount does: term by
 * term, event-major over a set, then slice position, then term, from 0.0. */

/* A set's columns and their shape. */
typedef struct {
    arg_t a[4]; /* group, slices, cols, vals */
    Py_ssize_t events, k, terms;
} terms_t;

static void
terms_release(terms_t *sets, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++)
        release(sets[i].a, 4);
    PyMem_Free(sets);
}

/* Views of a sequence of Terms tuples (C-contiguous, of 8-byte items, group 1-D and the
 * others 2-D with one row per event, cols and vals of one shape), or NULL with an error
 * set and none held. */
static terms_t *
terms_acquire(PyObject *seq, Py_ssize_t *count)
{
    PyObject *fast = PySequence_Fast(seq, "sets: a sequence of Terms expected");
    if (fast == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    terms_t *sets = PyMem_Calloc(n ? (size_t)n : 1, sizeof(terms_t));
    if (sets == NULL) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return NULL;
    }
    static const char *names[4] = {"group", "slices", "cols", "vals"};
    Py_ssize_t held = 0;
    for (; held < n; held++) {
        PyObject *t = PySequence_Fast_GET_ITEM(fast, held);
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) < 4) {
            PyErr_SetString(PyExc_TypeError, "sets: Terms tuples expected");
            goto fail;
        }
        terms_t *s = &sets[held];
        for (int i = 0; i < 4; i++)
            s->a[i] = (arg_t){PyTuple_GET_ITEM(t, i), 8, 0, names[i], {0}};
        if (acquire(s->a, 4) < 0)
            goto fail;
        Py_buffer *g = &s->a[0].buf, *sl = &s->a[1].buf, *c = &s->a[2].buf, *v = &s->a[3].buf;
        if (g->ndim != 1 || sl->ndim != 2 || c->ndim != 2 || v->ndim != 2 ||
            sl->shape[0] != g->shape[0] || c->shape[0] != g->shape[0] ||
            v->shape[0] != g->shape[0] || v->shape[1] != c->shape[1]) {
            release(s->a, 4);
            PyErr_SetString(PyExc_ValueError, "sets: group (events,), slices (events, k), "
                                              "cols and vals (events, terms) expected");
            goto fail;
        }
        s->events = g->shape[0];
        s->k = sl->shape[1];
        s->terms = c->shape[1];
    }
    Py_DECREF(fast);
    *count = n;
    return sets;
fail:
    Py_DECREF(fast);
    terms_release(sets, held);
    return NULL;
}

PyDoc_STRVAR(pane_rows_doc,
"pane_rows(sets, rows, first, last, number, row, cuts) -> int\n\n"
"Number the (group, slice) pairs that the events of groups first to last - 1 of sets\n"
"touch, in ascending order: number[(g - first) * rows + s] gets the pair's block row (-1\n"
"where no event touches it), row[i] the slice of block row i, cuts[g - first] the first\n"
"block row of group g (cuts[last - first]: all of them); return how many there are.");

static PyObject *
pane_rows(PyObject *self, PyObject *args)
{
    PyObject *seq, *o_number, *o_row, *o_cuts;
    Py_ssize_t rows, first, last, nsets;
    (void)self;
    if (!PyArg_ParseTuple(args, "OnnnOOO", &seq, &rows, &first, &last, &o_number, &o_row,
                          &o_cuts))
        return NULL;
    arg_t a[] = {{o_number, 8, 1, "number"}, {o_row, 8, 1, "row"}, {o_cuts, 8, 1, "cuts"}};
    const int nargs = (int)(sizeof a / sizeof a[0]);
    terms_t *sets = terms_acquire(seq, &nsets);
    if (sets == NULL)
        return NULL;
    if (acquire(a, nargs) < 0) {
        terms_release(sets, nsets);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t count = last - first;
    if (rows < 0 || first < 0 || count < 0 || (rows && count > PY_SSIZE_T_MAX / 8 / rows) ||
        a[0].buf.len / 8 < count * rows || a[1].buf.len / 8 < count * rows ||
        a[2].buf.len / 8 < count + 1) {
        PyErr_SetString(PyExc_ValueError, "number, row: count * rows and cuts: count + 1 "
                                          "items expected");
        goto done;
    }
    int64_t *number = (int64_t *)a[0].buf.buf;
    int64_t *row = (int64_t *)a[1].buf.buf;
    int64_t *cuts = (int64_t *)a[2].buf.buf;
    memset(number, 0, (size_t)(count * rows) * sizeof(int64_t));
    for (Py_ssize_t i = 0; i < nsets; i++) {
        const terms_t *s = &sets[i];
        const int64_t *group = (const int64_t *)s->a[0].buf.buf;
        const int64_t *slices = (const int64_t *)s->a[1].buf.buf;
        for (Py_ssize_t e = 0; e < s->events; e++) {
            int64_t g = group[e];
            if (g < first || g >= last)
                continue;
            int64_t *cell = number + (g - first) * rows;
            const int64_t *sl = slices + e * s->k;
            for (Py_ssize_t p = 0; p < s->k; p++) {
                if (sl[p] >= rows) {
                    PyErr_SetString(PyExc_ValueError, "slices: a slice beyond the rows");
                    goto done;
                }
                if (sl[p] >= 0)
                    cell[sl[p]] = 1;
            }
        }
    }
    int64_t n = 0;
    for (Py_ssize_t g = 0; g < count; g++) {
        cuts[g] = n;
        int64_t *cell = number + g * rows;
        for (Py_ssize_t r = 0; r < rows; r++) {
            if (cell[r]) {
                cell[r] = n;
                row[n++] = r;
            } else
                cell[r] = -1;
        }
    }
    cuts[count] = n;
    result = PyLong_FromLongLong((long long)n);
done:
    release(a, nargs);
    terms_release(sets, nsets);
    return result;
}

/* Where block row r's cells are: its plain sums at row[r] (width[r] cells: its group's
 * columns), the sums of rate q at row[r] + (q + 1) * step[r]. */
typedef struct {
    double **row;
    Py_ssize_t *step;
    Py_ssize_t *width;
} rows_t;

/* Add the terms of event e of set s (of the group whose block rows number_g numbers, each
 * term at the place local gives it among its group's columns) into the n block rows: the
 * plain sums, then per rate q the values times factors[q * stride + at + e] (at: the set's
 * first event among all the sets'). Returns 0, or -1 with an error set. */
static int
add_event(const terms_t *s, Py_ssize_t e, const int64_t *local, const int64_t *number_g,
          Py_ssize_t rows, Py_ssize_t n, const double *factors, Py_ssize_t nrates,
          Py_ssize_t stride, Py_ssize_t at, rows_t into)
{
    const int64_t *slices = (const int64_t *)s->a[1].buf.buf;
    const double *vals = (const double *)s->a[3].buf.buf;
    const int64_t *sl = slices + e * s->k;
    const int64_t *c = local + e * s->terms;
    const double *v = vals + e * s->terms;
    for (Py_ssize_t p = 0; p < s->k; p++) {
        if (sl[p] < 0)
            continue;
        int64_t r = sl[p] < rows ? number_g[sl[p]] : -1;
        if (r < 0 || r >= n) {
            PyErr_SetString(PyExc_ValueError, "number: a touched slice without its row");
            return -1;
        }
        double *dst = into.row[r];
        Py_ssize_t width = into.width[r];
        if (nrates == 1) { /* the usual one rate: both sums of a term in one pass */
            double f = factors[at + e];
            double *dq = dst + into.step[r];
            for (Py_ssize_t j = 0; j < s->terms; j++) {
                int64_t cj = c[j];
                if ((uint64_t)cj >= (uint64_t)width) {
                    PyErr_SetString(PyExc_ValueError, "local: a column beyond its group's");
                    return -1;
                }
                dst[cj] += v[j];
                dq[cj] += v[j] * f;
            }
            continue;
        }
        for (Py_ssize_t j = 0; j < s->terms; j++) {
            if (c[j] < 0 || c[j] >= width) {
                PyErr_SetString(PyExc_ValueError, "local: a column beyond its group's");
                return -1;
            }
            dst[c[j]] += v[j];
        }
        for (Py_ssize_t q = 0; q < nrates; q++) {
            double f = factors[q * stride + at + e];
            double *dq = dst + (q + 1) * into.step[r];
            for (Py_ssize_t j = 0; j < s->terms; j++)
                dq[c[j]] += v[j] * f;
        }
    }
    return 0;
}

/* t = +0.0 in every cell of a group's block, right before its terms are added (the block
 * is then in the cache while they are; kept a loop: the compiler is told not to make a
 * memset call of it) */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-loop-distribute-patterns")))
#endif
static void
block_zero(double *restrict t, Py_ssize_t n)
{
    Py_ssize_t c = 0;
    for (; c + 8 <= n; c += 8) /* (eight cells a step: stored as vectors) */
        for (int i = 0; i < 8; i++)
            t[c + i] = 0.0;
    for (; c < n; c++)
        t[c] = 0.0;
}

/* Whether two of the sets share a column among their events of groups first to last - 1
 * (columns beyond the width are left to pane_columns), or -1 with an error set. */
static int
shared_columns(const terms_t *sets, Py_ssize_t nsets, Py_ssize_t width, Py_ssize_t first,
               Py_ssize_t last)
{
    if (nsets < 2)
        return 0;
    if (nsets > 255)
        return 1;
    unsigned char *owner = PyMem_Calloc((size_t)width, 1);
    if (owner == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    int shared = 0;
    for (Py_ssize_t i = 0; i < nsets && !shared; i++) {
        const terms_t *s = &sets[i];
        const int64_t *group = (const int64_t *)s->a[0].buf.buf;
        const int64_t *cols = (const int64_t *)s->a[2].buf.buf;
        const unsigned char mark = (unsigned char)(i + 1);
        /* in locals: a store through owner (a char) may alias anything the loop reads */
        const Py_ssize_t events = s->events, terms = s->terms;
        const uint64_t cap = (uint64_t)width;
        for (Py_ssize_t e = 0; e < events && !shared; e++) {
            if (group[e] < first || group[e] >= last)
                continue;
            const int64_t *ce = cols + e * terms;
            for (Py_ssize_t j = 0; j < terms; j++) {
                uint64_t c = (uint64_t)ce[j];
                if (c >= cap)
                    continue;
                unsigned char was = owner[c];
                if (was != mark) {
                    if (was) {
                        shared = 1;
                        break;
                    }
                    owner[c] = mark;
                }
            }
        }
    }
    PyMem_Free(owner);
    return shared;
}

/* Views of the int64 arrays of the sequence o_local, one per set of as many items as the
 * set's cols (writable when asked), or NULL with an error set and none held. */
static arg_t *
locals_acquire(PyObject *o_local, const terms_t *sets, Py_ssize_t nsets, int writable)
{
    PyObject *fast = PySequence_Fast(o_local, "local: a sequence of arrays expected");
    if (fast == NULL)
        return NULL;
    if (PySequence_Fast_GET_SIZE(fast) != nsets) {
        Py_DECREF(fast);
        PyErr_SetString(PyExc_ValueError, "local: one array per set expected");
        return NULL;
    }
    arg_t *l = PyMem_Calloc(nsets ? (size_t)nsets : 1, sizeof(arg_t));
    if (l == NULL) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nsets; i++) {
        l[i] = (arg_t){PySequence_Fast_GET_ITEM(fast, i), 8, writable, "local", {0}};
        if (acquire(&l[i], 1) < 0) {
            release(l, (int)i);
            goto fail;
        }
        if (l[i].buf.len / 8 != sets[i].events * sets[i].terms) {
            release(l, (int)(i + 1));
            PyErr_SetString(PyExc_ValueError, "local: as many items as the set's cols expected");
            goto fail;
        }
    }
    Py_DECREF(fast);
    return l;
fail:
    Py_DECREF(fast);
    PyMem_Free(l);
    return NULL;
}

/* The place of the lowest bit set in b (b not 0). */
static inline int
lowest_bit(uint64_t b)
{
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_ctzll(b);
#else
    int k = 0;
    while (!(b & 1)) {
        b >>= 1;
        k++;
    }
    return k;
#endif
}

/* The events of groups first to last - 1 of sets in group order, each group's set by set
 * and each set's in their order (a counting sort): start (count + 2 items, zeros, count =
 * last - first) ends with start[g + 1] the place of group first + g's first event and
 * start[count + 1] how many in all, which it returns; *set_of and *event_of (PyMem, the
 * caller frees them) the set and event at each place. -1 with MemoryError set. */
static Py_ssize_t
events_by_group(const terms_t *sets, Py_ssize_t nsets, Py_ssize_t first, Py_ssize_t last,
                Py_ssize_t *start, Py_ssize_t **set_of, Py_ssize_t **event_of)
{
    Py_ssize_t count = last - first;
    for (Py_ssize_t i = 0; i < nsets; i++) {
        const int64_t *group = (const int64_t *)sets[i].a[0].buf.buf;
        for (Py_ssize_t e = 0; e < sets[i].events; e++)
            if (group[e] >= first && group[e] < last)
                start[group[e] - first + 2]++;
    }
    for (Py_ssize_t g = 0; g < count; g++)
        start[g + 2] += start[g + 1];
    Py_ssize_t total = start[count + 1];
    *set_of = PyMem_Malloc((total ? (size_t)total : 1) * sizeof(Py_ssize_t));
    *event_of = PyMem_Malloc((total ? (size_t)total : 1) * sizeof(Py_ssize_t));
    if (*set_of == NULL || *event_of == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t *next = start + 1; /* next[g]: where group g's next event goes, then its end */
    for (Py_ssize_t i = 0; i < nsets; i++) {
        const int64_t *group = (const int64_t *)sets[i].a[0].buf.buf;
        for (Py_ssize_t e = 0; e < sets[i].events; e++)
            if (group[e] >= first && group[e] < last) {
                Py_ssize_t k = next[group[e] - first]++;
                (*set_of)[k] = i;
                (*event_of)[k] = e;
            }
    }
    return total;
}

PyDoc_STRVAR(pane_columns_doc,
"pane_columns(sets, width, first, last, local, cols, cuts) -> int\n\n"
"The columns the events of groups first to last - 1 of sets touch, per group: cols gets\n"
"each group's distinct columns, ascending, one group after the other, cuts[g - first] the\n"
"place of group g's first (cuts[last - first]: how many in all, which it returns), and\n"
"local[i] (int64, as many items as set i's cols) the place of each term's column among its\n"
"group's (the terms of other groups' events are left as they are).");

static PyObject *
pane_columns(PyObject *self, PyObject *args)
{
    PyObject *seq, *o_local, *o_cols, *o_cuts;
    Py_ssize_t width, first, last, nsets;
    (void)self;
    if (!PyArg_ParseTuple(args, "OnnnOOO", &seq, &width, &first, &last, &o_local, &o_cols,
                          &o_cuts))
        return NULL;
    arg_t a[] = {{o_cols, 8, 1, "cols"}, {o_cuts, 8, 1, "cuts"}};
    const int nargs = (int)(sizeof a / sizeof a[0]);
    terms_t *sets = terms_acquire(seq, &nsets);
    if (sets == NULL)
        return NULL;
    arg_t *l = locals_acquire(o_local, sets, nsets, 1);
    if (l == NULL) {
        terms_release(sets, nsets);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t *start = NULL, *at = NULL, *set_of = NULL, *event_of = NULL;
    int64_t *mark = NULL, *pos = NULL;
    uint64_t *bits = NULL; /* the group's columns, a bit each (all 0 between groups) */
    int held = 0;
    if (acquire(a, nargs) < 0)
        goto done;
    held = 1;
    Py_ssize_t count = last - first;
    if (width < 1 || first < 0 || count < 0 || a[1].buf.len / 8 < count + 1) {
        PyErr_SetString(PyExc_ValueError, "width > 0, first <= last, cuts: count + 1 items");
        goto done;
    }
    int64_t *cols = (int64_t *)a[0].buf.buf;
    int64_t *cuts = (int64_t *)a[1].buf.buf;
    Py_ssize_t room = a[0].buf.len / 8;
    /* each group's events, (set, event) in order: a counting sort by group */
    Py_ssize_t words = (width + 63) / 64;
    start = PyMem_Calloc((size_t)count + 2, sizeof(Py_ssize_t));
    mark = PyMem_Malloc((size_t)width * sizeof(int64_t));
    pos = PyMem_Malloc((size_t)width * sizeof(int64_t));
    bits = PyMem_Calloc((size_t)words, sizeof(uint64_t));
    if (start == NULL || mark == NULL || pos == NULL || bits == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (events_by_group(sets, nsets, first, last, start, &set_of, &event_of) < 0)
        goto done;
    at = start + 1; /* at[g]: where group g's events end */
    for (Py_ssize_t c = 0; c < width; c++)
        mark[c] = -1;
    Py_ssize_t n = 0;
    for (Py_ssize_t g = 0; g < count; g++) {
        Py_ssize_t from = g ? at[g - 1] : 0, to = at[g], fresh = 0;
        cuts[g] = n;
        for (Py_ssize_t k = from; k < to; k++) {
            const terms_t *s = &sets[set_of[k]];
            const int64_t *c = (const int64_t *)s->a[2].buf.buf + event_of[k] * s->terms;
            for (Py_ssize_t j = 0; j < s->terms; j++) {
                if ((uint64_t)c[j] >= (uint64_t)width) { /* (negative ones too) */
                    PyErr_SetString(PyExc_ValueError, "cols: a column beyond the width");
                    goto done;
                }
                if (mark[c[j]] != g) {
                    mark[c[j]] = g;
                    bits[c[j] >> 6] |= (uint64_t)1 << (c[j] & 63);
                    fresh++;
                }
            }
        }
        if (fresh > room - n) {
            PyErr_SetString(PyExc_ValueError, "cols: too short for the columns");
            goto done;
        }
        /* ascending: read off the bits, word by word (each cleared for the next group),
         * each column's place among the group's kept as it is read */
        int64_t *mine = cols + n;
        for (Py_ssize_t i = 0, w = 0; i < fresh; w++) {
            uint64_t b = bits[w];
            bits[w] = 0;
            for (; b; b &= b - 1) {
                int64_t column = (int64_t)(w * 64 + lowest_bit(b));
                pos[column] = i;
                mine[i++] = column;
            }
        }
        n += fresh;
        for (Py_ssize_t k = from; k < to; k++) {
            const terms_t *s = &sets[set_of[k]];
            Py_ssize_t off = event_of[k] * s->terms;
            const int64_t *c = (const int64_t *)s->a[2].buf.buf + off;
            int64_t *out = (int64_t *)l[set_of[k]].buf.buf + off;
            for (Py_ssize_t j = 0; j < s->terms; j++)
                out[j] = pos[c[j]];
        }
    }
    cuts[count] = n;
    result = PyLong_FromSsize_t(n);
done:
    PyMem_Free(start);
    PyMem_Free(mark);
    PyMem_Free(pos);
    PyMem_Free(bits);
    PyMem_Free(set_of);
    PyMem_Free(event_of);
    if (held)
        release(a, nargs);
    release(l, (int)nsets);
    PyMem_Free(l);
    terms_release(sets, nsets);
    return result;
}

PyDoc_STRVAR(pane_sums_doc,
"pane_sums(sets, local, factors, number, cuts, ccuts, rows, width, first, last, outs,\n"
"          clear=True)\n\n"
"Sum the terms of the events of groups first to last - 1 of sets into outs, float64 arrays\n"
"(pieces, each small enough to be allocated without fresh pages; with clear, what they hold\n"
"is written over, else they are zeros) holding each group's block after the previous\n"
"one's, a block in one piece: (1 + rates, its rows, its columns), its\n"
"rows cuts[g - first] to cuts[g + 1 - first] - 1 of the block rows number gives (see\n"
"pane_rows), its columns ccuts[g - first] to ccuts[g + 1 - first] - 1 of those\n"
"pane_columns gives, a term at the place local gives it there. Block 0 gets the values,\n"
"block 1 + r their values times factors[r, i] (float64 (rates, events of all the sets), i\n"
"an event's place among them). A cell's terms are added as bincount adds them, from 0.0\n"
"in their order; when two sets share a column (of the width, in sets' cols) each set is\n"
"summed on its own and the sums added in set order.");

static PyObject *
pane_sums(PyObject *self, PyObject *args)
{
    PyObject *seq, *o_local, *o_factors, *o_number, *o_cuts, *o_ccuts, *o_outs;
    Py_ssize_t rows, width, first, last, nsets, nouts = 0;
    (void)self;
    int clear = 1;
    if (!PyArg_ParseTuple(args, "OOOOOOnnnnO|p", &seq, &o_local, &o_factors, &o_number, &o_cuts,
                          &o_ccuts, &rows, &width, &first, &last, &o_outs, &clear))
        return NULL;
    arg_t a[] = {{o_factors, 8, 0, "factors"}, {o_number, 8, 0, "number"},
                 {o_cuts, 8, 0, "cuts"}, {o_ccuts, 8, 0, "ccuts"}};
    const int nargs = (int)(sizeof a / sizeof a[0]);
    PyObject *outs = PySequence_Fast(o_outs, "outs: a sequence of arrays expected");
    if (outs == NULL)
        return NULL;
    terms_t *sets = terms_acquire(seq, &nsets);
    if (sets == NULL) {
        Py_DECREF(outs);
        return NULL;
    }
    arg_t *l = locals_acquire(o_local, sets, nsets, 0);
    if (l == NULL) {
        terms_release(sets, nsets);
        Py_DECREF(outs);
        return NULL;
    }
    PyObject *result = NULL;
    arg_t *o = NULL;
    rows_t into = {NULL, NULL, NULL}, part = {NULL, NULL, NULL};
    double **block = NULL; /* each group's block (NULL: no cells) */
    Py_ssize_t *set_at = NULL, *start = NULL, *set_of = NULL, *event_of = NULL;
    double *scratch = NULL;
    int held = 0;
    if (acquire(a, nargs) < 0)
        goto done;
    held = 1;
    Py_ssize_t count = last - first, events = 0;
    for (Py_ssize_t i = 0; i < nsets; i++)
        events += sets[i].events;
    Py_buffer *fb = &a[0].buf;
    Py_ssize_t nrates = fb->ndim == 2 ? fb->shape[0] : -1;
    if (nrates < 0 || (nrates > 0 && fb->shape[1] != events)) {
        PyErr_SetString(PyExc_ValueError, "factors: (rates, events of all the sets) expected");
        goto done;
    }
    if (rows < 0 || first < 0 || count < 0 || (rows && count > PY_SSIZE_T_MAX / 8 / rows) ||
        a[1].buf.len / 8 < count * rows || a[2].buf.len / 8 < count + 1 ||
        a[3].buf.len / 8 < count + 1 || width < 1) {
        PyErr_SetString(PyExc_ValueError, "number: count * rows items, cuts and ccuts: "
                                          "count + 1 expected");
        goto done;
    }
    const int64_t *cuts = (const int64_t *)a[2].buf.buf;
    const int64_t *ccuts = (const int64_t *)a[3].buf.buf;
    Py_ssize_t n = (Py_ssize_t)cuts[count], cells = 0;
    int ok = cuts[0] == 0 && ccuts[0] == 0 && n >= 0 && n <= count * rows;
    for (Py_ssize_t g = 0; ok && g < count; g++) {
        int64_t h = cuts[g + 1] - cuts[g], w = ccuts[g + 1] - ccuts[g];
        ok = h >= 0 && w >= 0 && h <= rows && w <= width;
    }
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "cuts, ccuts: ascending from 0, of rows and width");
        goto done;
    }
    Py_ssize_t want = PySequence_Fast_GET_SIZE(outs);
    o = PyMem_Calloc(want ? (size_t)want : 1, sizeof(arg_t));
    if (o == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < want; i++) {
        o[i] = (arg_t){PySequence_Fast_GET_ITEM(outs, i), 8, 1, "outs", {0}};
        if (acquire(&o[i], 1) < 0)
            goto done;
        nouts = i + 1;
    }
    into.row = PyMem_Malloc((n ? (size_t)n : 1) * sizeof(double *));
    into.step = PyMem_Malloc((n ? (size_t)n : 1) * sizeof(Py_ssize_t));
    into.width = PyMem_Malloc((n ? (size_t)n : 1) * sizeof(Py_ssize_t));
    block = PyMem_Malloc((count ? (size_t)count : 1) * sizeof(double *));
    set_at = PyMem_Malloc((nsets ? (size_t)nsets : 1) * sizeof(Py_ssize_t));
    start = PyMem_Calloc((size_t)count + 2, sizeof(Py_ssize_t));
    if (into.row == NULL || into.step == NULL || into.width == NULL || block == NULL ||
        set_at == NULL || start == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* each group's block in the pieces, one after the other, each piece filled whole */
    Py_ssize_t piece = 0, off = 0, most = 0;
    for (Py_ssize_t g = 0; g < count; g++) {
        Py_ssize_t h = (Py_ssize_t)(cuts[g + 1] - cuts[g]);
        Py_ssize_t w = (Py_ssize_t)(ccuts[g + 1] - ccuts[g]);
        Py_ssize_t size = h * w * (1 + nrates);
        while (piece < nouts && off == o[piece].buf.len / 8 && size > 0) {
            piece++;
            off = 0;
        }
        if (size > 0 && (piece >= nouts || off + size > o[piece].buf.len / 8)) {
            PyErr_SetString(PyExc_ValueError, "outs: the groups' blocks, (1 + rates) * rows * "
                                              "columns each, whole in a piece");
            goto done;
        }
        /* (a block of no cells is never written: its rows have no column) */
        block[g] = size > 0 ? (double *)o[piece].buf.buf + off : NULL;
        for (Py_ssize_t j = 0; j < h; j++) {
            Py_ssize_t r = (Py_ssize_t)cuts[g] + j;
            into.row[r] = size > 0 ? block[g] + j * w : NULL;
            into.step[r] = h * w;
            into.width[r] = w;
        }
        if (size > most)
            most = size;
        off += size;
        cells += size;
    }
    Py_ssize_t room = 0;
    for (Py_ssize_t i = 0; i < nouts; i++)
        room += o[i].buf.len / 8;
    if (room != cells) {
        PyErr_SetString(PyExc_ValueError, "outs: as many cells as the groups' blocks");
        goto done;
    }
    const int64_t *number = (const int64_t *)a[1].buf.buf;
    const double *factors = (const double *)fb->buf;
    int shared = shared_columns(sets, nsets, width, first, last);
    if (shared < 0)
        goto done;
    if (shared) { /* the sets after the first are summed apart, in a scratch block */
        scratch = PyMem_Malloc((most ? (size_t)most : 1) * sizeof(double));
        part.row = PyMem_Malloc((n ? (size_t)n : 1) * sizeof(double *));
        if (scratch == NULL || part.row == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        for (Py_ssize_t g = 0; g < count; g++) /* every group's block rows in the scratch */
            for (int64_t r = cuts[g]; r < cuts[g + 1]; r++)
                part.row[r] = scratch + (r - cuts[g]) * (ccuts[g + 1] - ccuts[g]);
        part.step = into.step;
        part.width = into.width;
    }
    /* Group by group, each block zeroed and filled while it is in the cache (a poll's
     * events come in no group order: event by event, each wrote to a block anywhere in
     * the MB of all of them): each group's events, set by set and each set's in their
     * order, found by a counting sort. A cell is one group's, so its terms are added in
     * the order they were over all the groups at once. */
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < nsets; i++) { /* each set's first event among all sets' */
        set_at[i] = total;
        total += sets[i].events;
    }
    if (events_by_group(sets, nsets, first, last, start, &set_of, &event_of) < 0)
        goto done;
    const Py_ssize_t *next = start + 1; /* next[g]: where group g's events end */
    for (Py_ssize_t g = 0, k = 0; g < count; g++) {
        Py_ssize_t to = next[g];
        Py_ssize_t size = (cuts[g + 1] - cuts[g]) * (ccuts[g + 1] - ccuts[g]) * (1 + nrates);
        if (size > 0 && clear)
            block_zero(block[g], size);
        const int64_t *number_g = number + g * rows;
        while (k < to) {
            Py_ssize_t i = set_of[k];
            const terms_t *s = &sets[i];
            const int64_t *local = (const int64_t *)l[i].buf.buf;
            int apart = shared && i > 0;
            if (apart && size > 0)
                block_zero(scratch, size);
            for (; k < to && set_of[k] == i; k++)
                if (add_event(s, event_of[k], local, number_g, rows, n, factors, nrates,
                              events, set_at[i], apart ? part : into) < 0)
                    goto done;
            if (apart)
                for (Py_ssize_t c = 0; c < size; c++)
                    block[g][c] += scratch[c];
        }
    }
    result = Py_NewRef(Py_None);
done:
    PyMem_Free(scratch);
    PyMem_Free(part.row);
    PyMem_Free(block);
    PyMem_Free(set_at);
    PyMem_Free(start);
    PyMem_Free(set_of);
    PyMem_Free(event_of);
    PyMem_Free(into.row);
    PyMem_Free(into.step);
    PyMem_Free(into.width);
    if (o != NULL)
        release(o, (int)nouts);
    PyMem_Free(o);
    if (held)
        release(a, nargs);
    release(l, (int)nsets);
    PyMem_Free(l);
    terms_release(sets, nsets);
    Py_DECREF(outs);
    return result;
}

/* The batch decode of monitor/events/codec.py's decode_all: each value of a poll given to
 * a msgspec decoder's decode from one C loop, None for a tombstone (None), a value longer
 * than the cap and a value the decoder refuses (one of the exceptions given), so that
 * neither a map resumed after each failure nor a Python pass to find the tombstones runs. */

/* decode(v) as decode_each gives it: the object; NULL with no error set where v is None,
 * is longer than cap or raises one of errors; NULL with an error set for any other failure. */
static PyObject *
decode_one(PyObject *decode, PyObject *v, Py_ssize_t cap, PyObject *errors)
{
    if (v == Py_None)
        return NULL;
    Py_ssize_t len = PyBytes_CheckExact(v) ? PyBytes_GET_SIZE(v) : PyObject_Length(v);
    if (len < 0 || len > cap)
        return NULL;
    PyObject *got = PyObject_CallOneArg(decode, v);
    if (got == NULL && PyErr_ExceptionMatches(errors))
        PyErr_Clear();
    return got;
}

PyDoc_STRVAR(decode_each_doc,
"decode_each(decode, values, cap, errors) -> list\n\n"
"decode(v) of each v of the list values; None where v is None, len(v) > cap (cap an\n"
"int, or None for no cap) or decode raises an exception matching errors (an exception\n"
"type or a tuple of them). Any other exception propagates.");

static PyObject *
decode_each(PyObject *self, PyObject *args)
{
    PyObject *decode, *values, *o_cap, *errors;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO!OO", &decode, &PyList_Type, &values, &o_cap, &errors))
        return NULL;
    Py_ssize_t cap = PY_SSIZE_T_MAX;
    if (o_cap != Py_None) {
        cap = PyLong_AsSsize_t(o_cap);
        if (cap == -1 && PyErr_Occurred())
            return NULL;
    }
    /* a copy of the list: a decoder may run Python code, which may change it */
    PyObject *items = PyList_GetSlice(values, 0, PyList_GET_SIZE(values));
    if (items == NULL)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(items);
    PyObject *out = PyList_New(n);
    if (out == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *got = decode_one(decode, PyList_GET_ITEM(items, i), cap, errors);
        if (got == NULL && PyErr_Occurred())
            goto fail;
        PyList_SET_ITEM(out, i, got != NULL ? got : Py_NewRef(Py_None));
    }
    Py_DECREF(items);
    return out;
fail:
    Py_XDECREF(out); /* its items not set yet are NULL, which a list's dealloc passes over */
    Py_DECREF(items);
    return NULL;
}

PyDoc_STRVAR(longest_doc,
"longest(values) -> int\n\n"
"The size of the longest bytes object of values (a list or tuple of bytes or None; None\n"
"skipped), 0 when there is none: whether a poll held a large message (monitor/gc_policy.py,\n"
"holds_large).");

static PyObject *
longest(PyObject *self, PyObject *args)
{
    PyObject *values;
    (void)self;
    if (!PyArg_ParseTuple(args, "O", &values))
        return NULL;
    PyObject *items = PySequence_Fast(values, "values must be a sequence");
    if (items == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(items), most = 0;
    PyObject **v = PySequence_Fast_ITEMS(items);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (v[i] == Py_None)
            continue;
        if (!PyBytes_Check(v[i])) {
            Py_DECREF(items);
            PyErr_SetString(PyExc_TypeError, "values must be bytes or None");
            return NULL;
        }
        if (PyBytes_GET_SIZE(v[i]) > most)
            most = PyBytes_GET_SIZE(v[i]);
    }
    Py_DECREF(items);
    return PyLong_FromSsize_t(most);
}

/* Numbers read straight from the decoded events (monitor/core/fastpath.py): the numeric
 * features of a batch of predictions from their features structs (_feature_columns, into
 * the (features, events) float64 block and int8 codes of monitor/core/layout.py's
 * _numeric_block: 0 a number, 1 missing), and the events' times and scores (_times,
 * _predictions), slot by slot, in place of a Python list per attribute converted by numpy.
 * Only the common values are taken: a float, an int that converts exactly (|v| <= 2**53),
 * None; anything else (a bool, a string, a larger int, an object of another type) declines
 * the whole batch, which the caller then reads in Python; or, when asked to mark them, is
 * marked (code 2) for the caller to read alone, the others taken (the times of a poll
 * holding a few strings: those are parsed, not every time). */

#define EXACT_INT (1LL << 53) /* ints up to this magnitude convert to float64 exactly */

/* float('nan')'s bits (math.nan and numpy's conversions of it) */
static double
quiet_nan(void)
{
    const uint64_t bits = 0x7FF8000000000000ull;
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

PyDoc_STRVAR(read_numbers_doc,
"read_numbers(objs, kind, names, codes, x, mark=False) -> bool\n\n"
"Read the attributes names (a tuple of str, slots of the type kind) of each of objs\n"
"(a list of instances of exactly kind, or None) into x[j, i] (float64, C order\n"
"(len(names), len(objs)), NaN where no number) and codes[j, i] (int8: 0 a number, 1 None\n"
"or no object). Return False, with the outputs partly written, when an attribute is not\n"
"a slot, or (unless mark) when a value is not a float, an int of magnitude at most 2**53\n"
"or None, or an item is neither a kind nor None. With mark, such a value (each value of\n"
"such an item) is marked instead: codes 2, x NaN.");

static PyObject *
read_numbers(PyObject *self, PyObject *args)
{
    PyObject *objs, *names, *o_codes, *o_x;
    PyTypeObject *kind;
    int mark = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!O!OO|p", &PyList_Type, &objs, &PyType_Type, &kind,
                          &PyTuple_Type, &names, &o_codes, &o_x, &mark))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(objs), nf = PyTuple_GET_SIZE(names);
    PyMemberDef **members = PyMem_Malloc(sizeof(PyMemberDef *) * (size_t)(nf ? nf : 1));
    if (members == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t j = 0; j < nf; j++) {
        /* the slot's descriptor (the type holds it, and kind is held by the call); no
         * such attribute of the type, or one of another kind (a property, a method, an
         * instance's own) declines */
        PyObject *d = PyObject_GetAttr((PyObject *)kind, PyTuple_GET_ITEM(names, j));
        if (d == NULL) {
            PyMem_Free(members);
            if (!PyErr_ExceptionMatches(PyExc_AttributeError))
                return NULL;
            PyErr_Clear();
            return Py_NewRef(Py_False);
        }
        int slot = Py_IS_TYPE(d, &PyMemberDescr_Type) && PyType_IsSubtype(kind, PyDescr_TYPE(d));
        if (slot)
            members[j] = ((PyMemberDescrObject *)d)->d_member;
        Py_DECREF(d);
        if (!slot) {
            PyMem_Free(members);
            return Py_NewRef(Py_False);
        }
    }
    arg_t a[] = {{o_codes, 1, 1, "codes"}, {o_x, 8, 1, "x"}};
    if (acquire(a, 2) < 0) {
        PyMem_Free(members);
        return NULL;
    }
    PyObject *result = NULL;
    if (a[0].buf.len != nf * n || a[1].buf.len / 8 != nf * n) {
        PyErr_SetString(PyExc_ValueError, "codes, x: len(names) * len(objs) items expected");
        goto done;
    }
    int8_t *codes = (int8_t *)a[0].buf.buf;
    double *x = (double *)a[1].buf.buf;
    const double nan = quiet_nan();
    int ok = 1;
    for (Py_ssize_t i = 0; i < n && ok; i++) {
        PyObject *f = PyList_GET_ITEM(objs, i);
        if (f == Py_None) {
            for (Py_ssize_t j = 0; j < nf; j++) {
                codes[j * n + i] = 1;
                x[j * n + i] = nan;
            }
            continue;
        }
        if (Py_TYPE(f) != kind) {
            if (!mark) {
                ok = 0;
                break;
            }
            for (Py_ssize_t j = 0; j < nf; j++) {
                codes[j * n + i] = 2;
                x[j * n + i] = nan;
            }
            continue;
        }
        for (Py_ssize_t j = 0; j < nf; j++) {
            PyObject *v = PyMember_GetOne((const char *)f, members[j]);
            if (v == NULL)
                goto done;
            int taken = 1;
            if (PyFloat_CheckExact(v)) {
                codes[j * n + i] = 0;
                x[j * n + i] = PyFloat_AS_DOUBLE(v);
            } else if (v == Py_None) {
                codes[j * n + i] = 1;
                x[j * n + i] = nan;
            } else if (PyLong_CheckExact(v)) {
                int overflow;
                long long w = PyLong_AsLongLongAndOverflow(v, &overflow);
                if (overflow || w > EXACT_INT || w < -EXACT_INT) {
                    taken = 0;
                } else {
                    codes[j * n + i] = 0;
                    x[j * n + i] = (double)w;
                }
            } else {
                taken = 0;
            }
            Py_DECREF(v);
            if (!taken) {
                if (!mark) {
                    ok = 0;
                    break;
                }
                codes[j * n + i] = 2;
                x[j * n + i] = nan;
            }
        }
    }
    result = Py_NewRef(ok ? Py_True : Py_False);
done:
    release(a, 2);
    PyMem_Free(members);
    return result;
}

/* ------------------------------------------------------------------------------------
 * A pane close of monitor/core/windows.py's WindowSet (WindowSet.close): the closed pane's
 * sums into the cumulative sums, the decay windows' decay and their share of the pane,
 * the sliding windows' running sums and per-cell counts of non-zero terms, with the pane
 * that leaves each, in one pass per window over the cells instead of a dozen numpy passes.
 * Each cell goes through the operations the numpy code applies to it, in its order (the
 * numpy passes are element-wise), so the sums are the same bit for bit. */

/* ``cells`` float64 items of o, C-contiguous (writable when asked), into b; -1 with an
 * error set and nothing held when it is not that. cells < 0: as many as it holds. */
static int
doubles(PyObject *o, Py_buffer *b, int writable, Py_ssize_t cells, const char *what)
{
    if (np_view(o, b, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    if (b->itemsize != 8 || (cells >= 0 && b->len != cells * 8)) {
        PyErr_Format(PyExc_ValueError, "%s: %zd float64 items expected", what, cells);
        PyBuffer_Release(b);
        return -1;
    }
    return 0;
}

/* The first n items of the list o (floats, or what converts to one) into out: -1 with
 * the error set when one does not convert. */
static int
list_floats(PyObject *o, Py_ssize_t n, double *out)
{
    for (Py_ssize_t j = 0; j < n; j++) {
        out[j] = PyFloat_AsDouble(PyList_GET_ITEM(o, j));
        if (out[j] == -1.0 && PyErr_Occurred())
            return -1;
    }
    return 0;
}

PyDoc_STRVAR(window_close_doc,
"window_close(cum, acc, decay, factors, decayed, sliding, nz, leaving) -> int\n\n"
"Close a pane of a WindowSet, all arrays float64 of cum's size: cum += acc (acc None: no\n"
"pane); each decay[j] *= factors[j], then += decayed[j] (decayed None: none); each\n"
"sliding[i] += acc and nz[i] += (acc != 0), then, where leaving[i] (the pane that leaves\n"
"it) is not None, sliding[i] -= leaving[i], nz[i] -= (leaving[i] != 0), sliding[i] = 0.0\n"
"where nz[i] is 0. Returns the mask of the windows (bit i) where a cell's |leaving| is\n"
"above 4096 times what is left of its sum there (nz not 0): the caller sums those again.");

#define CANCEL 4096.0 /* windows._CANCEL */

/* The loops of window_close, each cell on its own (element-wise: the compiler may run
 * several cells in one vector instruction, each with the same IEEE operations; with no
 * traps assumed it may compute both sides of a select, whose values do not change). On
 * x86-64 glibc each is built twice, for AVX2 (4 cells a vector, without FMA: no product
 * is fused with a sum) and for the base SSE2, the processor picking one at load. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__)
#define CELLS                                                                               \
    __attribute__((optimize("tree-vectorize", "no-trapping-math"),                        \
                   target_clones("avx2", "default")))
#elif defined(__GNUC__) && !defined(__clang__)
#define CELLS __attribute__((optimize("tree-vectorize", "no-trapping-math")))
#else
#define CELLS
#endif

/* t += a */
static CELLS void
add_cells(double *restrict t, const double *restrict a, Py_ssize_t n)
{
    for (Py_ssize_t c = 0; c < n; c++)
        t[c] += a[c];
}

/* t *= f, then t += d (d NULL: none) */
static CELLS void
decay_cells(double *restrict t, const double *restrict d, double f, Py_ssize_t n)
{
    if (d != NULL) {
        for (Py_ssize_t c = 0; c < n; c++) {
            double x = t[c] * f;
            t[c] = x + d[c];
        }
    } else {
        for (Py_ssize_t c = 0; c < n; c++)
            t[c] *= f;
    }
}

/* A sliding window's sums t and counts of non-zero terms k: the arriving pane a (NULL:
 * none) added, then the leaving pane out (NULL: none) taken away, each cell whose last
 * term left set to exactly 0. Whether a cell lost more than log2(CANCEL) bits to the
 * subtraction (its |out| above CANCEL times what is left, where terms are left). */
static CELLS int
slide_cells(double *restrict t, double *restrict k, const double *restrict a,
            const double *restrict out, Py_ssize_t n)
{
    double lost = 0.0; /* cells that lost bits: a double, so that the loop runs in vectors */
    if (a != NULL) {
        for (Py_ssize_t c = 0; c < n; c++) {
            t[c] += a[c];
            k[c] += a[c] != 0.0 ? 1.0 : 0.0;
        }
    }
    if (out != NULL) {
        for (Py_ssize_t c = 0; c < n; c++) {
            double x = t[c] - out[c], m = k[c] - (out[c] != 0.0 ? 1.0 : 0.0);
            double left = m == 0.0 ? 0.0 : x; /* its last term left: exactly nothing */
            double scaled = fabs(left) * CANCEL;
            double bound = m == 0.0 ? INFINITY : scaled; /* nothing left to lose there */
            lost += fabs(out[c]) > bound ? 1.0 : 0.0;
            t[c] = left;
            k[c] = m;
        }
    }
    return lost != 0.0;
}

static PyObject *
window_close(PyObject *self, PyObject *args)
{
    PyObject *o_cum, *o_acc, *decay, *factors, *decayed, *sliding, *nz, *leaving;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOO!O!OO!O!O!", &o_cum, &o_acc, &PyList_Type, &decay,
                          &PyList_Type, &factors, &decayed, &PyList_Type, &sliding,
                          &PyList_Type, &nz, &PyList_Type, &leaving))
        return NULL;
    Py_ssize_t nd = PyList_GET_SIZE(decay), ns = PyList_GET_SIZE(sliding);
    if (PyList_GET_SIZE(factors) != nd || PyList_GET_SIZE(nz) != ns ||
        PyList_GET_SIZE(leaving) != ns ||
        (decayed != Py_None && (!PyList_Check(decayed) || PyList_GET_SIZE(decayed) != nd))) {
        PyErr_SetString(PyExc_ValueError,
                        "factors, decayed: one per decay window; nz, leaving: one per sliding");
        return NULL;
    }
    if (ns > 63) {
        PyErr_SetString(PyExc_ValueError, "at most 63 sliding windows");
        return NULL;
    }
    /* every view is taken before anything is written: an error leaves the arrays as they
     * were. views: cum, acc, decay..., decayed..., sliding..., nz..., leaving... */
    Py_ssize_t most = 2 + 2 * nd + 3 * ns;
    Py_buffer *v = PyMem_Calloc((size_t)most, sizeof(Py_buffer));
    double *f = PyMem_Malloc(sizeof(double) * (size_t)(nd ? nd : 1));
    const double **l = PyMem_Malloc(sizeof(double *) * (size_t)(ns ? ns : 1));
    PyObject *result = NULL;
    if (v == NULL || f == NULL || l == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (list_floats(factors, nd, f) < 0)
        goto done;
    if (doubles(o_cum, &v[0], 1, -1, "cum") < 0)
        goto done;
    Py_ssize_t n = v[0].len / 8;
    int with_acc = o_acc != Py_None;
    if (with_acc) {
        if (doubles(o_acc, &v[1], 0, n, "acc") < 0)
            goto done;
    }
    Py_buffer *vd = v + 2, *vp = vd + nd, *vs = vp + nd, *vz = vs + ns, *vl = vz + ns;
    for (Py_ssize_t j = 0; j < nd; j++) {
        if (doubles(PyList_GET_ITEM(decay, j), &vd[j], 1, n, "decay") < 0)
            goto done;
    }
    for (Py_ssize_t j = 0; j < nd && decayed != Py_None; j++) {
        if (doubles(PyList_GET_ITEM(decayed, j), &vp[j], 0, n, "decayed") < 0)
            goto done;
    }
    for (Py_ssize_t i = 0; i < ns; i++) {
        if (doubles(PyList_GET_ITEM(sliding, i), &vs[i], 1, n, "sliding") < 0)
            goto done;
    }
    for (Py_ssize_t i = 0; i < ns; i++) {
        if (doubles(PyList_GET_ITEM(nz, i), &vz[i], 1, n, "nz") < 0)
            goto done;
    }
    for (Py_ssize_t i = 0; i < ns; i++) {
        PyObject *o = PyList_GET_ITEM(leaving, i);
        l[i] = NULL;
        if (o != Py_None) {
            if (doubles(o, &vl[i], 0, n, "leaving") < 0)
                goto done;
            l[i] = (const double *)vl[i].buf;
        }
    }
    double *cum = (double *)v[0].buf;
    const double *acc = with_acc ? (const double *)v[1].buf : NULL;
    if (acc != NULL)
        add_cells(cum, acc, n);
    for (Py_ssize_t j = 0; j < nd; j++)
        decay_cells((double *)vd[j].buf, decayed != Py_None ? (const double *)vp[j].buf : NULL,
                    f[j], n);
    unsigned long long mask = 0;
    for (Py_ssize_t i = 0; i < ns; i++)
        if (slide_cells((double *)vs[i].buf, (double *)vz[i].buf, acc, l[i], n))
            mask |= 1ull << i;
    result = PyLong_FromUnsignedLongLong(mask);
done:
    if (v != NULL) /* the views held (those not taken are zeroed) */
        for (Py_ssize_t h = 0; h < most; h++)
            if (v[h].obj != NULL)
                PyBuffer_Release(&v[h]);
    PyMem_Free(v);
    PyMem_Free(f);
    PyMem_Free(l);
    return result;
}

/* ---------------------------------------------------------------- stage 2 pane rows
 * A delta's row blocks of a pane into the model's open pane (monitor/core/windows.py,
 * WindowSet.add_rows): each block row written into, added to or taken from its row of the
 * pane's arrays, one pass over the cells, where numpy gathers the rows, adds and scatters
 * them back. One IEEE operation per cell, as numpy's: the same values bit for bit. */

/* t -= a */
static CELLS void
sub_cells(double *restrict t, const double *restrict a, Py_ssize_t n)
{
    for (Py_ssize_t c = 0; c < n; c++)
        t[c] -= a[c];
}

/* t[cols[c]] += a[c] for the n distinct columns cols, four a step (a block of the columns
 * a hand-over's pane touched: a sparse stream's poll adds a few MB of them) */
static void
cols_add(double *restrict t, const double *restrict a, const int64_t *restrict cols,
         Py_ssize_t n)
{
    Py_ssize_t c = 0;
    for (; c + 4 <= n; c += 4) {
        t[cols[c]] += a[c];
        t[cols[c + 1]] += a[c + 1];
        t[cols[c + 2]] += a[c + 2];
        t[cols[c + 3]] += a[c + 3];
    }
    for (; c < n; c++)
        t[cols[c]] += a[c];
}

/* t[cols[c]] = a[c] for the n distinct columns cols, four a step (as cols_add) */
static void
cols_set(double *restrict t, const double *restrict a, const int64_t *restrict cols,
         Py_ssize_t n)
{
    Py_ssize_t c = 0;
    for (; c + 4 <= n; c += 4) {
        t[cols[c]] = a[c];
        t[cols[c + 1]] = a[c + 1];
        t[cols[c + 2]] = a[c + 2];
        t[cols[c + 3]] = a[c + 3];
    }
    for (; c < n; c++)
        t[cols[c]] = a[c];
}

PyDoc_STRVAR(rows_add_doc,
"rows_add(targets, blocks, rows, width, mode)\n\n"
"Block row i into row rows[i] of its target, for each target (float64, C-contiguous, a\n"
"multiple of width cells) and block (float64, C-contiguous, k rows of width): rows is an\n"
"int64 array of k distinct rows, or an int, the first of k consecutive ones. mode 0\n"
"writes the rows (target[rows] = block), 1 adds them (+=), -1 takes them away (-=).");

/* Block row i of blocks[j] into row rows[i] of targets[j], for each of the nt (target,
 * block) pairs (see rows_add); 0, or -1 with an error set and nothing written. */
static int
rows_apply(Py_ssize_t nt, PyObject *const *targets, PyObject *const *blocks, PyObject *o_rows,
           Py_ssize_t width, int mode, PyObject *o_cols)
{
    if (width <= 0 || mode < -1 || mode > 1) {
        PyErr_SetString(PyExc_ValueError, "width > 0, mode -1, 0 or 1");
        return -1;
    }
    Py_ssize_t first = -1;
    Py_buffer vr = {0};
    if (PyLong_Check(o_rows)) {
        first = PyLong_AsSsize_t(o_rows);
        if (first == -1 && PyErr_Occurred())
            return -1;
        if (first < 0) {
            PyErr_SetString(PyExc_ValueError, "rows: a first row >= 0");
            return -1;
        }
    } else {
        if (np_view(o_rows, &vr, PyBUF_C_CONTIGUOUS) < 0)
            return -1;
        if (vr.itemsize != 8) {
            PyErr_SetString(PyExc_ValueError, "rows: int64 items expected");
            PyBuffer_Release(&vr);
            return -1;
        }
    }
    /* the block's columns (None: all of the width), as the block's rows: distinct */
    Py_buffer vc = {0};
    const int64_t *cols = NULL;
    Py_ssize_t bw = width; /* a block row's cells */
    if (o_cols != NULL && o_cols != Py_None) {
        if (np_view(o_cols, &vc, PyBUF_C_CONTIGUOUS) < 0) {
            if (vr.obj != NULL)
                PyBuffer_Release(&vr);
            return -1;
        }
        cols = (const int64_t *)vc.buf;
        bw = vc.len / 8;
        uint64_t top = 0; /* the largest column (a negative one as a huge one) */
        for (Py_ssize_t j = 0; vc.itemsize == 8 && j < bw; j++)
            top = (uint64_t)cols[j] > top ? (uint64_t)cols[j] : top;
        if (vc.itemsize != 8 || bw <= 0 || top >= (uint64_t)width) {
            PyErr_SetString(PyExc_ValueError, "cols: int64 columns of the width expected");
            PyBuffer_Release(&vc);
            if (vr.obj != NULL)
                PyBuffer_Release(&vr);
            return -1;
        }
    }
    /* every view is taken, and every row checked, before anything is written */
    Py_buffer held[2 * 8];
    Py_buffer *v = held;
    int status = -1;
    if (nt > 8) {
        v = PyMem_Calloc((size_t)(2 * nt), sizeof(Py_buffer));
        if (v == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    } else {
        memset(held, 0, sizeof(held));
    }
    Py_ssize_t k = first >= 0 ? -1 : vr.len / 8, height = -1;
    for (Py_ssize_t j = 0; j < nt; j++) {
        if (doubles(targets[j], &v[2 * j], 1, -1, "targets") < 0)
            goto done;
        if (doubles(blocks[j], &v[2 * j + 1], 0, -1, "blocks") < 0)
            goto done;
        Py_ssize_t cells = v[2 * j].len / 8, given = v[2 * j + 1].len / 8;
        if (k < 0 && given % bw == 0)
            k = given / bw;
        if (cells % width != 0 || given != k * bw || (height >= 0 && cells != height * width)) {
            PyErr_SetString(PyExc_ValueError,
                            "targets of one shape, blocks of as many rows as rows, of width");
            goto done;
        }
        height = cells / width;
    }
    const int64_t *rows = first >= 0 ? NULL : (const int64_t *)vr.buf;
    if (nt && (first >= 0 ? first + k > height : 0)) {
        PyErr_SetString(PyExc_IndexError, "rows: past the targets' rows");
        goto done;
    }
    for (Py_ssize_t i = 0; nt && rows != NULL && i < k; i++) {
        if (rows[i] < 0 || rows[i] >= height) {
            PyErr_SetString(PyExc_IndexError, "rows: a row outside the targets");
            goto done;
        }
    }
    for (Py_ssize_t j = 0; j < nt; j++) {
        double *t = (double *)v[2 * j].buf;
        const double *b = (const double *)v[2 * j + 1].buf;
        for (Py_ssize_t i = 0; i < k; i++) {
            double *row = t + (rows != NULL ? (Py_ssize_t)rows[i] : first + i) * width;
            const double *add = b + i * bw;
            if (cols != NULL) {
                if (mode == 0)
                    cols_set(row, add, cols, bw);
                else if (mode > 0)
                    cols_add(row, add, cols, bw);
                else
                    for (Py_ssize_t c = 0; c < bw; c++)
                        row[cols[c]] -= add[c];
            } else if (mode == 0)
                memcpy(row, add, (size_t)width * sizeof(double));
            else if (mode > 0)
                add_cells(row, add, width);
            else
                sub_cells(row, add, width);
        }
    }
    status = 0;
done:
    if (vc.obj != NULL)
        PyBuffer_Release(&vc);
    if (v != NULL)
        for (Py_ssize_t h = 0; h < 2 * nt; h++)
            if (v[h].obj != NULL)
                PyBuffer_Release(&v[h]);
    if (v != held)
        PyMem_Free(v);
    if (vr.obj != NULL)
        PyBuffer_Release(&vr);
    return status;
}

static PyObject *
rows_add(PyObject *self, PyObject *args)
{
    PyObject *targets, *blocks, *o_rows;
    Py_ssize_t width;
    int mode;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!Oni", &PyList_Type, &targets, &PyList_Type, &blocks,
                          &o_rows, &width, &mode))
        return NULL;
    Py_ssize_t nt = PyList_GET_SIZE(targets);
    if (PyList_GET_SIZE(blocks) != nt) {
        PyErr_SetString(PyExc_ValueError, "one block per target, width > 0, mode -1, 0 or 1");
        return NULL;
    }
    if (rows_apply(nt, PySequence_Fast_ITEMS(targets), PySequence_Fast_ITEMS(blocks), o_rows,
                   width, mode, NULL) < 0)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(rows_add_many_doc,
"rows_add_many(ops)\n\n"
"rows_add of each op of the list ops, in order: an op is a tuple (target, targets, block,\n"
"blocks, rows, width, mode[, cols]), for rows_add([target, *targets], [block, *blocks],\n"
"rows, width, mode) (targets and blocks: lists of as many arrays); with cols (int64\n"
"distinct columns of the width, or None: all), a block row holds the cells of those\n"
"columns of its row only, and the other cells of the row are left as they are. The ops\n"
"before one that is not valid are applied; that one and those after it are not.");

static PyObject *
rows_add_many(PyObject *self, PyObject *args)
{
    PyObject *ops;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!", &PyList_Type, &ops))
        return NULL;
    PyObject *held[2 * 8];
    for (Py_ssize_t o = 0; o < PyList_GET_SIZE(ops); o++) {
        PyObject *op = PyList_GET_ITEM(ops, o);
        PyObject *target, *targets, *block, *blocks, *o_rows, *o_cols = NULL;
        Py_ssize_t width;
        int mode;
        /* the op's items read in place (a format parsed per op costs more than the
         * adding of a small op's cells): what "OO!OO!Oni|O" takes, and no more */
        Py_ssize_t size = PyTuple_Check(op) ? PyTuple_GET_SIZE(op) : -1;
        if (size != 7 && size != 8) {
            PyErr_SetString(PyExc_TypeError, "ops: tuples of 7 or 8 items");
            return NULL;
        }
        target = PyTuple_GET_ITEM(op, 0);
        targets = PyTuple_GET_ITEM(op, 1);
        block = PyTuple_GET_ITEM(op, 2);
        blocks = PyTuple_GET_ITEM(op, 3);
        o_rows = PyTuple_GET_ITEM(op, 4);
        if (size == 8)
            o_cols = PyTuple_GET_ITEM(op, 7);
        if (!PyList_Check(targets) || !PyList_Check(blocks)) {
            PyErr_SetString(PyExc_TypeError, "ops: targets and blocks: lists");
            return NULL;
        }
        width = PyNumber_AsSsize_t(PyTuple_GET_ITEM(op, 5), PyExc_OverflowError);
        if (width == -1 && PyErr_Occurred())
            return NULL;
        long lmode = PyLong_AsLong(PyTuple_GET_ITEM(op, 6));
        if (lmode == -1 && PyErr_Occurred())
            return NULL;
        if (lmode < INT_MIN || lmode > INT_MAX) {
            PyErr_SetString(PyExc_OverflowError, "ops: mode out of range");
            return NULL;
        }
        mode = (int)lmode;
        Py_ssize_t nt = PyList_GET_SIZE(targets) + 1;
        if (PyList_GET_SIZE(blocks) + 1 != nt) {
            PyErr_SetString(PyExc_ValueError, "ops: one block per target");
            return NULL;
        }
        PyObject **both = held;
        if (nt > 8) {
            both = PyMem_Malloc(sizeof(PyObject *) * (size_t)(2 * nt));
            if (both == NULL)
                return PyErr_NoMemory();
        }
        both[0] = target;
        both[nt] = block;
        for (Py_ssize_t j = 1; j < nt; j++) {
            both[j] = PyList_GET_ITEM(targets, j - 1);
            both[nt + j] = PyList_GET_ITEM(blocks, j - 1);
        }
        int status = rows_apply(nt, both, both + nt, o_rows, width, mode, o_cols);
        if (both != held)
            PyMem_Free(both);
        if (status < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(nonzero_rows_doc,
"nonzero_rows(blocks, width) -> list\n\n"
"For each float64 block (C-contiguous, rows of width cells; width an int, or a list of\n"
"one per block), what (block != 0).any(axis=1) tells: None when every row holds a cell\n"
"that is not 0 (NaN is not 0, -0.0 is), else the list of the rows that hold one,\n"
"ascending (monitor/core/partials.py, DeltaLedger.take).");

static PyObject *
nonzero_rows(PyObject *self, PyObject *args)
{
    PyObject *blocks, *o_width;
    Py_ssize_t width = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O", &PyList_Type, &blocks, &o_width))
        return NULL;
    Py_ssize_t nb = PyList_GET_SIZE(blocks);
    int widths = PyList_Check(o_width); /* one width per block */
    if (widths) {
        if (PyList_GET_SIZE(o_width) != nb) {
            PyErr_SetString(PyExc_ValueError, "one width per block");
            return NULL;
        }
    } else {
        width = PyLong_AsSsize_t(o_width);
        if (width == -1 && PyErr_Occurred())
            return NULL;
        if (width <= 0) {
            PyErr_SetString(PyExc_ValueError, "width > 0");
            return NULL;
        }
    }
    PyObject *out = PyList_New(nb);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t j = 0; j < nb; j++) {
        if (widths) {
            width = PyLong_AsSsize_t(PyList_GET_ITEM(o_width, j));
            if (width == -1 && PyErr_Occurred())
                goto fail;
            if (width <= 0) {
                PyErr_SetString(PyExc_ValueError, "width > 0");
                goto fail;
            }
        }
        Py_buffer b;
        if (doubles(PyList_GET_ITEM(blocks, j), &b, 0, -1, "blocks") < 0)
            goto fail;
        Py_ssize_t cells = b.len / 8, rows = cells / width;
        if (cells % width != 0) {
            PyBuffer_Release(&b);
            PyErr_SetString(PyExc_ValueError, "blocks: rows of width cells");
            goto fail;
        }
        const double *x = (const double *)b.buf;
        PyObject *kept = NULL; /* the rows that hold a value, once one is found empty */
        for (Py_ssize_t r = 0; r < rows; r++) {
            const double *row = x + r * width;
            Py_ssize_t c = 0;
            while (c < width && row[c] == 0.0) /* NaN ends it: not 0 */
                c++;
            int held = c < width;
            if (!held && kept == NULL) { /* the rows before it all hold values */
                kept = PyList_New(0);
                for (Py_ssize_t q = 0; kept != NULL && q < r; q++) {
                    PyObject *n = PyLong_FromSsize_t(q);
                    if (n == NULL || PyList_Append(kept, n) < 0) {
                        Py_XDECREF(n);
                        Py_CLEAR(kept);
                        break;
                    }
                    Py_DECREF(n);
                }
                if (kept == NULL) {
                    PyBuffer_Release(&b);
                    goto fail;
                }
            } else if (held && kept != NULL) {
                PyObject *n = PyLong_FromSsize_t(r);
                if (n == NULL || PyList_Append(kept, n) < 0) {
                    Py_XDECREF(n);
                    Py_DECREF(kept);
                    PyBuffer_Release(&b);
                    goto fail;
                }
                Py_DECREF(n);
            }
        }
        PyBuffer_Release(&b);
        if (kept == NULL) {
            Py_INCREF(Py_None);
            kept = Py_None;
        }
        PyList_SET_ITEM(out, j, kept);
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* ---------------------------------------------------------------- kcat -J lines
 * The replay's reading of a kcat -J capture (monitor/replay.py, read_batches): each line
 * is a flat JSON object ({"topic":"...","partition":0,"offset":42,...,"payload":"..."});
 * this reads the fields replay keeps (topic, partition, offset, ts, payload) straight into
 * columns, the payload unescaped into bytes, without a str or a struct per line. It reads
 * only the plainest form of a line: compact, ASCII strings, integers that fit 18 digits,
 * every key once and "headers" absent; any other line (valid or not) is left to msgspec,
 * which replay.py runs on it, so that every line reads as msgspec reads it. */

static int
hex4(const unsigned char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int c = p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Bytes a JSON string's plain run stops at: the quote, the backslash, control bytes
 * (NUL among them: a bytes object's terminator ends a scan without a bounds check) and
 * every byte outside ASCII. */
static unsigned char string_stop[256];

static void
string_stop_init(void)
{
    for (int c = 0; c < 256; c++)
        string_stop[c] = c == '"' || c == '\\' || c < 0x20 || c >= 0x80;
}

#if defined(__SSE2__)
#include <emmintrin.h>

/* The bytes string_stop marks among the 16 at p, as a bit mask (bit i: p[i]): a quote, a
 * backslash, or below 0x20 as a signed byte (control bytes and every byte from 0x80). */
static inline int
stops16(__m128i v)
{
    __m128i quote = _mm_cmpeq_epi8(v, _mm_set1_epi8('"'));
    __m128i backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'));
    __m128i low = _mm_cmplt_epi8(v, _mm_set1_epi8(0x20));
    return _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), low));
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <tmmintrin.h>
#define QUOTES_COMPACT 1
/* A payload's block of 16 bytes whose every stop byte is the backslash of an escaped quote
 * (a JSON text inside a string: a dozen per prediction) copied out without its
 * backslashes by two byte shuffles (SSSE3, when the processor has it), in place of a
 * return to the block's loop per escape. compact_at[m]: the places of the bytes that a
 * half of 8 bytes keeps when mask m drops some (0x80, a zero, past them); compact_n[m]:
 * how many. */
static unsigned char compact_at[256][8];
static unsigned char compact_n[256];
static int has_ssse3;

static void
compact_init(void)
{
    for (int m = 0; m < 256; m++) {
        int k = 0;
        for (int i = 0; i < 8; i++)
            if (!(m >> i & 1))
                compact_at[m][k++] = (unsigned char)i;
        compact_n[m] = (unsigned char)k;
        while (k < 8)
            compact_at[m][k++] = 0x80;
    }
    __builtin_cpu_init();
    has_ssse3 = __builtin_cpu_supports("ssse3");
}

/* The bytes of v but those of drop's bits, to out (16 bytes of room); past them. */
__attribute__((target("ssse3"))) static char *
compact16(__m128i v, unsigned drop, char *out)
{
    __m128i lo = _mm_shuffle_epi8(v, _mm_loadl_epi64((const __m128i *)compact_at[drop & 0xFF]));
    _mm_storel_epi64((__m128i *)out, lo);
    out += compact_n[drop & 0xFF];
    __m128i hi = _mm_shuffle_epi8(_mm_srli_si128(v, 8),
                                  _mm_loadl_epi64((const __m128i *)compact_at[drop >> 8]));
    _mm_storel_epi64((__m128i *)out, hi);
    return out + compact_n[drop >> 8];
}
#endif
#endif

/* The first byte from p that string_stop marks, reading 16 bytes at a time while at least
 * 16 are left before end (the scalar loop reads the rest up to a stop byte: a NUL or a
 * newline ends every buffer this scans). With out, the bytes passed over are copied to
 * *out, which moves past them, and an escaped quote among them is unescaped on the way
 * (the caller sees no escape then: only a string copied to out may have one); whole
 * blocks of 16 are stored, so out must have room for 16 bytes more than are passed over. */
static inline const unsigned char *
plain_run(const unsigned char *p, const unsigned char *end, char **out)
{
#if defined(__SSE2__)
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        int mask = stops16(v);
#if defined(QUOTES_COMPACT)
        if (mask && out != NULL && has_ssse3) {
            /* every stop an escaped quote's backslash, each quote escaped, none of them
             * cut by the block's end: the block unescaped at once */
            int bs = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('\\')));
            int q = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')));
            if (mask == (bs | q) && q == bs << 1) {
                *out = compact16(v, (unsigned)bs, *out);
                p += 16;
                continue;
            }
        }
#endif
        int n = mask ? __builtin_ctz((unsigned)mask) : 16;
        if (out != NULL) {
            _mm_storeu_si128((__m128i *)*out, v);
            *out += n;
        }
        p += n;
        if (!mask)
            continue;
        /* \" (a payload's most common escape: every quote of the JSON inside) is
         * unescaped here, without a return to scan_string; p[1] is at most end, a stop byte */
        if (out == NULL || p[0] != '\\' || p[1] != '"')
            return p;
        *(*out)++ = '"';
        p += 2;
    }
#endif
    if (out != NULL) {
        char *o = *out;
        while (!string_stop[*p])
            *o++ = (char)*p++;
        *out = o;
    } else {
        while (!string_stop[*p])
            p++;
    }
    return p;
}

/* The JSON string whose opening quote is at p, in a NUL-terminated buffer that ends at
 * end: the byte after its closing quote, or NULL when it is not one this reads (a byte
 * outside ASCII, a control byte, an escape of a surrogate, an invalid escape, no closing
 * quote). Its unescaped UTF-8 bytes are written to out (when not NULL; at most as many as
 * the string's) and their number to *size; *plain says whether it has no escape. */
static const unsigned char *
scan_string(const unsigned char *p, const unsigned char *end, char *out, Py_ssize_t *size,
            int *plain)
{
    char *o = out;
    int escapes = 0;
    const unsigned char *start = ++p;
    for (;;) {
        p = plain_run(p, end, out != NULL ? &o : NULL);
        if (p >= end)
            return NULL;
        if (*p == '"')
            break;
        if (*p != '\\' || end - p < 2)
            return NULL;
        escapes = 1;
        char c;
        switch (p[1]) {
        case '"': c = '"'; break;
        case '\\': c = '\\'; break;
        case '/': c = '/'; break;
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'n': c = '\n'; break;
        case 'r': c = '\r'; break;
        case 't': c = '\t'; break;
        case 'u': {
            int v = end - p < 6 ? -1 : hex4(p + 2);
            if (v < 0 || (v >= 0xD800 && v <= 0xDFFF))
                return NULL;
            p += 6;
            if (out == NULL)
                continue;
            if (v < 0x80) {
                *o++ = (char)v;
            } else if (v < 0x800) {
                *o++ = (char)(0xC0 | (v >> 6));
                *o++ = (char)(0x80 | (v & 0x3F));
            } else {
                *o++ = (char)(0xE0 | (v >> 12));
                *o++ = (char)(0x80 | ((v >> 6) & 0x3F));
                *o++ = (char)(0x80 | (v & 0x3F));
            }
            continue;
        }
        default:
            return NULL;
        }
        p += 2;
        if (out != NULL)
            *o++ = c;
    }
    *size = out != NULL ? o - out : p - start;
    *plain = !escapes;
    return p + 1;
}

/* The JSON integer at p (at most 18 digits, no leading zero, not "-0", not followed by a
 * fraction or an exponent): the byte after it, or NULL. The line ends at a newline or a
 * NUL (see kcat_line): no digit lies at or past end. */
static const unsigned char *
scan_int(const unsigned char *p, const unsigned char *end, long long *out)
{
    int negative = p < end && *p == '-';
    p += negative;
    const unsigned char *start = p;
    unsigned long long v = 0;
    while ((unsigned)(*p - '0') < 10u) /* more than 18 digits wrap v: rejected below */
        v = v * 10 + (unsigned long long)(*p++ - '0');
    Py_ssize_t digits = p - start;
    if (digits == 0 || digits > 18 || (digits > 1 && *start == '0') || (negative && v == 0))
        return NULL;
    if (p < end && (*p == '.' || *p == 'e' || *p == 'E' || (*p >= '0' && *p <= '9')))
        return NULL;
    *out = negative ? -(long long)v : (long long)v;
    return p;
}

enum { K_OTHER, K_TOPIC, K_PARTITION, K_OFFSET, K_TS, K_PAYLOAD, K_KEY, K_HEADERS };

static int
key_of(const unsigned char *k, Py_ssize_t n)
{
#define IS(word) (n == (Py_ssize_t)sizeof(word) - 1 && memcmp(k, word, sizeof(word) - 1) == 0)
    if (IS("topic")) return K_TOPIC;
    if (IS("partition")) return K_PARTITION;
    if (IS("offset")) return K_OFFSET;
    if (IS("ts")) return K_TS;
    if (IS("payload")) return K_PAYLOAD;
    if (IS("key")) return K_KEY;
    if (IS("headers")) return K_HEADERS;
    return K_OTHER;
#undef IS
}

/* One line's fields: where the topic's bytes and the payload's string are, the numbers. */
typedef struct {
    const unsigned char *topic;
    const char *payload; /* its unescaped bytes (NULL: null) */
    Py_ssize_t topic_size, payload_size;
    long long partition, offset, ts;
} kcat_t;

/* Read the line [p, end) (NUL-terminated) into *f, its payload unescaped into scratch (16
 * bytes longer than the line): 1 when it is an envelope in the form this reads, else 0. */
static int
kcat_line(const unsigned char *p, const unsigned char *end, char *scratch, kcat_t *f)
{
    unsigned seen = 0;
    f->offset = -1;
    f->ts = -1;
    if (p >= end || *p++ != '{')
        return 0;
    for (;;) {
        if (p >= end || *p != '"')
            return 0;
        const unsigned char *name = p + 1, *q = plain_run(name, end, NULL);
        if (q + 1 >= end || q[0] != '"' || q[1] != ':')
            return 0;
        int key = key_of(name, q - name);
        p = q + 2;
        if (key != K_OTHER) {
            if (key == K_HEADERS || (seen & (1u << key)))
                return 0;
            seen |= 1u << key;
        }
        if (p >= end)
            return 0;
        if (*p == '"') {
            Py_ssize_t size;
            int plain;
            char *out = key == K_PAYLOAD ? scratch : NULL;
            const unsigned char *next = scan_string(p, end, out, &size, &plain);
            if (next == NULL)
                return 0;
            if (key == K_TOPIC) {
                if (!plain)
                    return 0;
                f->topic = p + 1;
                f->topic_size = size;
            } else if (key == K_PAYLOAD) {
                f->payload = out;
                f->payload_size = size;
            } else if (key != K_KEY && key != K_OTHER) {
                return 0;
            }
            p = next;
        } else if (*p == 'n') {
            if (end - p < 4 || memcmp(p, "null", 4) != 0)
                return 0;
            if (key == K_PAYLOAD)
                f->payload = NULL;
            else if (key != K_KEY && key != K_OTHER)
                return 0;
            p += 4;
        } else {
            long long v;
            const unsigned char *next = scan_int(p, end, &v);
            if (next == NULL)
                return 0;
            if (key == K_PARTITION)
                f->partition = v;
            else if (key == K_OFFSET)
                f->offset = v;
            else if (key == K_TS)
                f->ts = v;
            else if (key != K_OTHER)
                return 0;
            p = next;
        }
        if (p >= end)
            return 0;
        if (*p == '}')
            break;
        if (*p++ != ',')
            return 0;
    }
    for (p++; p < end; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
            return 0;
    unsigned need = (1u << K_TOPIC) | (1u << K_PARTITION) | (1u << K_PAYLOAD);
    return (seen & need) == need;
}

/* The topic str of bytes [p, p + n): one of the (at most 8) made in this call, or a new one. */
typedef struct {
    const unsigned char *bytes;
    Py_ssize_t size;
    PyObject *str;
} topic_t;

static PyObject *
topic_str(topic_t *seen, int *count, const unsigned char *p, Py_ssize_t n)
{
    for (int i = 0; i < *count; i++)
        if (seen[i].size == n && memcmp(seen[i].bytes, p, (size_t)n) == 0) {
            Py_INCREF(seen[i].str);
            return seen[i].str;
        }
    PyObject *s = PyUnicode_DecodeASCII((const char *)p, n, NULL);
    if (s != NULL && *count < 8) {
        seen[*count].bytes = p;
        seen[*count].size = n;
        seen[*count].str = s;
        Py_INCREF(s);
        (*count)++;
    }
    return s;
}

PyDoc_STRVAR(kcat_lines_doc,
"kcat_lines(lines) -> (topics, partitions, offsets, timestamps, payloads, others)\n\n"
"The fields of kcat -J lines (a list of bytes) as columns: topic (str), partition,\n"
"offset and ts (int, -1 where absent) and payload (its unescaped UTF-8 bytes, or None),\n"
"None in every column at the lines this does not read (listed in others, in order):\n"
"any line not compact, not ASCII, with \"headers\", a repeated key, a number beyond 18\n"
"digits or a surrogate escape, and every line that is not an envelope.");

static PyObject *
kcat_lines(PyObject *self, PyObject *args)
{
    PyObject *lines;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!", &PyList_Type, &lines))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(lines);
    PyObject *cols[5] = {NULL, NULL, NULL, NULL, NULL};
    PyObject *others = PyList_New(0), *result = NULL;
    topic_t seen[8];
    int topics = 0;
    char *scratch = NULL;
    Py_ssize_t room = 0;
    if (others == NULL)
        return NULL;
    for (int c = 0; c < 5; c++)
        if ((cols[c] = PyList_New(n)) == NULL)
            goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *line = PyList_GET_ITEM(lines, i);
        if (!PyBytes_Check(line)) {
            PyErr_SetString(PyExc_TypeError, "lines: a list of bytes expected");
            goto done;
        }
        const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(line);
        Py_ssize_t size = PyBytes_GET_SIZE(line);
        if (size + 16 > room) { /* plain_run's last block may store 16 bytes */
            char *more = PyMem_Realloc(scratch, (size_t)size + 16);
            if (more == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            scratch = more;
            room = size + 16;
        }
        kcat_t f = {NULL, NULL, 0, 0, 0, 0, 0};
        PyObject *v[5];
        if (!kcat_line(p, p + size, scratch, &f)) {
            for (int c = 0; c < 5; c++) {
                Py_INCREF(Py_None);
                PyList_SET_ITEM(cols[c], i, Py_None);
            }
            PyObject *at = PyLong_FromSsize_t(i);
            if (at == NULL || PyList_Append(others, at) < 0) {
                Py_XDECREF(at);
                goto done;
            }
            Py_DECREF(at);
            continue;
        }
        v[0] = topic_str(seen, &topics, f.topic, f.topic_size);
        v[1] = PyLong_FromLongLong(f.partition);
        v[2] = PyLong_FromLongLong(f.offset);
        v[3] = PyLong_FromLongLong(f.ts);
        if (f.payload == NULL) {
            Py_INCREF(Py_None);
            v[4] = Py_None;
        } else {
            v[4] = PyBytes_FromStringAndSize(f.payload, f.payload_size);
        }
        for (int c = 0; c < 5; c++)
            PyList_SET_ITEM(cols[c], i, v[c]); /* a NULL is an error: the list is dropped */
        for (int c = 0; c < 5; c++)
            if (v[c] == NULL)
                goto done;
    }
    result = Py_BuildValue("(NNNNNN)", cols[0], cols[1], cols[2], cols[3], cols[4], others);
    for (int c = 0; c < 5; c++)
        cols[c] = NULL;
    others = NULL;
done:
    PyMem_Free(scratch);
    for (int i = 0; i < topics; i++)
        Py_DECREF(seen[i].str);
    for (int c = 0; c < 5; c++)
        Py_XDECREF(cols[c]);
    Py_XDECREF(others);
    return result;
}

PyDoc_STRVAR(kcat_chunk_doc,
"kcat_chunk(chunk, start, stop) -> (topics, partitions, offsets, timestamps, payloads,\n"
"                                   others, starts)\n\n"
"kcat_lines of the lines of chunk[start:stop] (bytes, each line ended by a newline; the\n"
"last may end at the end of chunk instead) without a bytes object per line: starts holds\n"
"where each line starts in chunk and, last, stop (int64s, as bytes).");

static PyObject *
kcat_chunk(PyObject *self, PyObject *args)
{
    PyObject *chunk;
    Py_ssize_t start, stop;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!nn", &PyBytes_Type, &chunk, &start, &stop))
        return NULL;
    const unsigned char *base = (const unsigned char *)PyBytes_AS_STRING(chunk);
    Py_ssize_t len = PyBytes_GET_SIZE(chunk);
    if (start < 0 || stop > len || start > stop ||
        (stop > start && stop < len && base[stop - 1] != '\n')) {
        PyErr_SetString(PyExc_ValueError,
                        "start, stop: a range of chunk that ends a line, or ends chunk");
        return NULL;
    }
    /* each line's start, found once (the lines are read from them below) */
    Py_ssize_t n = 0, room = 256;
    int64_t *found = PyMem_Malloc((size_t)room * sizeof(int64_t));
    if (found == NULL)
        return PyErr_NoMemory();
    for (const unsigned char *p = base + start, *end = base + stop; p < end; n++) {
        if (n + 1 >= room) {
            int64_t *more = PyMem_Realloc(found, (size_t)room * 2 * sizeof(int64_t));
            if (more == NULL) {
                PyMem_Free(found);
                return PyErr_NoMemory();
            }
            found = more;
            room *= 2;
        }
        found[n] = (int64_t)(p - base);
        const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
        p = nl != NULL ? nl + 1 : end;
    }
    found[n] = (int64_t)stop;
    PyObject *cols[5] = {NULL, NULL, NULL, NULL, NULL};
    PyObject *others = PyList_New(0), *result = NULL;
    PyObject *starts = PyBytes_FromStringAndSize(NULL, (n + 1) * (Py_ssize_t)sizeof(int64_t));
    char *scratch = PyMem_Malloc((size_t)(stop - start) + 16); /* plain_run's last block */
    topic_t seen[8];
    int topics = 0;
    if (others == NULL || starts == NULL || scratch == NULL) {
        if (scratch == NULL)
            PyErr_NoMemory();
        goto done;
    }
    for (int c = 0; c < 5; c++)
        if ((cols[c] = PyList_New(n)) == NULL)
            goto done;
    int64_t *at = (int64_t *)PyBytes_AS_STRING(starts);
    memcpy(at, found, (size_t)(n + 1) * sizeof(int64_t));
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char *p = base + at[i];
        /* a line ends at its newline, the byte before the next line's start; the last one
         * at stop without one: chunk's NUL */
        const unsigned char *end = base + at[i + 1];
        if (end[-1] == '\n')
            end--;
        kcat_t f = {NULL, NULL, 0, 0, 0, 0, 0};
        PyObject *v[5];
        if (!kcat_line(p, end, scratch, &f)) {
            for (int c = 0; c < 5; c++) {
                Py_INCREF(Py_None);
                PyList_SET_ITEM(cols[c], i, Py_None);
            }
            PyObject *where = PyLong_FromSsize_t(i);
            if (where == NULL || PyList_Append(others, where) < 0) {
                Py_XDECREF(where);
                goto done;
            }
            Py_DECREF(where);
        } else {
            v[0] = topic_str(seen, &topics, f.topic, f.topic_size);
            v[1] = PyLong_FromLongLong(f.partition);
            v[2] = PyLong_FromLongLong(f.offset);
            v[3] = PyLong_FromLongLong(f.ts);
            if (f.payload == NULL) {
                Py_INCREF(Py_None);
                v[4] = Py_None;
            } else {
                v[4] = PyBytes_FromStringAndSize(f.payload, f.payload_size);
            }
            for (int c = 0; c < 5; c++)
                PyList_SET_ITEM(cols[c], i, v[c]); /* a NULL is an error: the list is dropped */
            for (int c = 0; c < 5; c++)
                if (v[c] == NULL)
                    goto done;
        }
    }
    result = Py_BuildValue("(NNNNNNN)", cols[0], cols[1], cols[2], cols[3], cols[4], others,
                           starts);
    for (int c = 0; c < 5; c++)
        cols[c] = NULL;
    others = starts = NULL;
done:
    PyMem_Free(found);
    PyMem_Free(scratch);
    for (int i = 0; i < topics; i++)
        Py_DECREF(seen[i].str);
    for (int c = 0; c < 5; c++)
        Py_XDECREF(cols[c]);
    Py_XDECREF(others);
    Py_XDECREF(starts);
    return result;
}

PyDoc_STRVAR(kcat_unknown_doc,
"kcat_unknown(chunk, start, stop, known) -> list[int]\n\n"
"Where the lines of chunk[start:stop] (each ended by a newline) start that do not start\n"
"with any of the bytes in the tuple known: the lines of a capture's prescan that may\n"
"hold a (topic, partition) pair not found yet (monitor/replay.py, _kcat_partitions).");

static PyObject *
kcat_unknown(PyObject *self, PyObject *args)
{
    Py_buffer chunk;
    Py_ssize_t start, stop;
    PyObject *known, *out = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*nnO!", &chunk, &start, &stop, &PyTuple_Type, &known))
        return NULL;
    Py_ssize_t k = PyTuple_GET_SIZE(known), last = -1;
    if (start < 0 || stop > chunk.len || start > stop) {
        PyErr_SetString(PyExc_ValueError, "start, stop: a range of chunk");
        goto done;
    }
    for (Py_ssize_t j = 0; j < k; j++)
        if (!PyBytes_Check(PyTuple_GET_ITEM(known, j))) {
            PyErr_SetString(PyExc_TypeError, "known: a tuple of bytes expected");
            goto done;
        }
    if ((out = PyList_New(0)) == NULL)
        goto done;
    const char *buf = (const char *)chunk.buf;
    Py_ssize_t at = start;
    while (at < stop) {
        const char *nl = memchr(buf + at, '\n', (size_t)(stop - at));
        Py_ssize_t end = nl != NULL ? nl - buf : stop, size = end - at;
        int found = 0;
        for (Py_ssize_t t = 0; t <= k && !found; t++) {
            /* the prefix the last line matched first, then each in turn */
            Py_ssize_t j = t == 0 ? last : t - 1;
            if (j < 0 || (t > 0 && j == last))
                continue;
            PyObject *prefix = PyTuple_GET_ITEM(known, j);
            Py_ssize_t n = PyBytes_GET_SIZE(prefix);
            if (n <= size && memcmp(buf + at, PyBytes_AS_STRING(prefix), (size_t)n) == 0) {
                found = 1;
                last = j;
            }
        }
        if (!found) {
            PyObject *where = PyLong_FromSsize_t(at);
            if (where == NULL || PyList_Append(out, where) < 0) {
                Py_XDECREF(where);
                Py_CLEAR(out);
                goto done;
            }
            Py_DECREF(where);
        }
        at = end + 1;
    }
done:
    PyBuffer_Release(&chunk);
    return out;
}

/* ---------------------------------------------------------------------------------------
 * A batch of panes' signals.jsonl lines (monitor/outputs/signals.py, signal_lines): the
 * numbers of the lines, written once by msgspec as one JSON array (its float formatting,
 * null for a NaN or an infinity), cut at its commas and laid between the lines' fixed
 * pieces (the model and "ts" head, each signal's key, the closing braces), in one pass and
 * one bytes object, in place of a msgspec encode of a dict per pane, which writes every
 * key again. tests/outputs/test_signal_lines.py holds it to the Python code beside its
 * caller and to one msgspec encode per pane. */

PyDoc_STRVAR(signal_lines_doc,
"signal_lines(pieces, numbers, rows) -> bytes\n\n"
"For the list of bytes pieces (m + 1 of them) and the bytes numbers, a JSON array of\n"
"rows * m numbers or nulls (no nesting, no strings), rows lines, each\n"
"pieces[0] n0 pieces[1] n1 ... pieces[m-1] n(m-1) pieces[m] with the array's next m\n"
"items. ValueError when numbers is not such an array of rows * m items.");

static PyObject *
signal_lines(PyObject *self, PyObject *args)
{
    PyObject *pieces, *numbers;
    Py_ssize_t rows;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!n", &PyList_Type, &pieces, &PyBytes_Type, &numbers,
                          &rows))
        return NULL;
    Py_ssize_t m = PyList_GET_SIZE(pieces) - 1;
    if (m < 1 || rows < 0) {
        PyErr_SetString(PyExc_ValueError, "pieces: at least two expected, rows >= 0");
        return NULL;
    }
    Py_ssize_t fixed = 0;
    for (Py_ssize_t i = 0; i <= m; i++) {
        PyObject *p = PyList_GET_ITEM(pieces, i);
        if (!PyBytes_CheckExact(p)) {
            PyErr_SetString(PyExc_TypeError, "pieces: bytes expected");
            return NULL;
        }
        fixed += PyBytes_GET_SIZE(p);
    }
    const char *src = PyBytes_AS_STRING(numbers);
    Py_ssize_t n = PyBytes_GET_SIZE(numbers);
    if (n < 2 || src[0] != '[' || src[n - 1] != ']') {
        PyErr_SetString(PyExc_ValueError, "numbers: a JSON array expected");
        return NULL;
    }
    if (rows == 0) {
        if (n != 2) {
            PyErr_SetString(PyExc_ValueError, "numbers: more items than rows * m");
            return NULL;
        }
        return PyBytes_FromStringAndSize(NULL, 0);
    }
    if (fixed > (PY_SSIZE_T_MAX - n) / rows) {
        PyErr_NoMemory();
        return NULL;
    }
    /* each comma of the array gives way to a piece: the lines' length is known */
    PyObject *out = PyBytes_FromStringAndSize(NULL, fixed * rows + n - 2 - (rows * m - 1));
    if (out == NULL)
        return NULL;
    char *dst = PyBytes_AS_STRING(out);
    const char *end = dst + PyBytes_GET_SIZE(out);
    const char *at = src + 1, *stop = src + n - 1;
    for (Py_ssize_t r = 0; r < rows; r++) {
        for (Py_ssize_t i = 0; i < m; i++) {
            PyObject *p = PyList_GET_ITEM(pieces, i);
            Py_ssize_t len = PyBytes_GET_SIZE(p);
            const char *comma = memchr(at, ',', (size_t)(stop - at));
            const char *item_end = comma != NULL ? comma : stop;
            Py_ssize_t item = item_end - at;
            int last = r == rows - 1 && i == m - 1;
            if (item == 0 || (comma == NULL) != last || dst + len + item > end)
                goto bad;
            memcpy(dst, PyBytes_AS_STRING(p), (size_t)len);
            dst += len;
            memcpy(dst, at, (size_t)item);
            dst += item;
            at = item_end + 1;
        }
        PyObject *p = PyList_GET_ITEM(pieces, m);
        Py_ssize_t len = PyBytes_GET_SIZE(p);
        if (dst + len > end)
            goto bad;
        memcpy(dst, PyBytes_AS_STRING(p), (size_t)len);
        dst += len;
    }
    if (dst != end)
        goto bad;
    return out;
bad:
    Py_DECREF(out);
    PyErr_SetString(PyExc_ValueError, "numbers: not an array of rows * m numbers");
    return NULL;
}

/* ---------------------------------------------------------------- a pane close's errors in order
 * Each closed pane's buffered errors in the stable order of their event times (monitor/core/
 * model.py, ordered_errors, for every pane of a batch closed together): the permutation
 * numpy's stable argsort gives (ties kept in input order, NaN times last), found by an
 * insertion sort of a pane's few errors or a merge sort of many, in one call for the
 * panes of a batch (a sparse stream's backlog of ~90 panes a poll; a poll of 100 models,
 * one pane each of 100 models), not a sort with a Python key per pane. */

/* numpy's order of float keys: a NaN after every number, NaNs equal. */
static inline int
time_before(double a, double b)
{
    return a < b || (b != b && a == a);
}

/* Sort idx[0..n) stably by key[idx[i]] (tmp: n items of room). */
static void
stable_order(Py_ssize_t *idx, Py_ssize_t *tmp, Py_ssize_t n, const double *key)
{
    if (n <= 16) {
        for (Py_ssize_t i = 1; i < n; i++) {
            Py_ssize_t v = idx[i], j = i;
            for (; j > 0 && time_before(key[v], key[idx[j - 1]]); j--)
                idx[j] = idx[j - 1];
            idx[j] = v;
        }
        return;
    }
    Py_ssize_t half = n / 2;
    stable_order(idx, tmp, half, key);
    stable_order(idx + half, tmp, n - half, key);
    if (!time_before(key[idx[half]], key[idx[half - 1]]))
        return; /* already in order */
    memcpy(tmp, idx, (size_t)half * sizeof(Py_ssize_t));
    Py_ssize_t i = 0, j = half, k = 0;
    while (i < half && j < n) /* a right one first only when strictly before */
        idx[k++] = time_before(key[idx[j]], key[tmp[i]]) ? idx[j++] : tmp[i++];
    while (i < half)
        idx[k++] = tmp[i++];
}

PyDoc_STRVAR(ordered_errors_doc,
"ordered_errors(taken) -> list | None\n\n"
"For each (times, errors) pair of lists of taken, model.ordered_errors(times, errors): the\n"
"errors (their objects) in the stable order of their times (float objects; numpy's\n"
"stable argsort's order, NaN last), the errors list itself when there are fewer than two\n"
"times. None, with nothing done, when taken is not a list of (times, errors) tuples of\n"
"lists, a time is not a float or an errors list is shorter than its times (the Python\n"
"code takes those).");

static PyObject *
ordered_errors(PyObject *self, PyObject *args)
{
    PyObject *taken;
    (void)self;
    if (!PyArg_ParseTuple(args, "O", &taken))
        return NULL;
    if (!PyList_Check(taken))
        Py_RETURN_NONE;
    Py_ssize_t panes = PyList_GET_SIZE(taken), most = 0;
    for (Py_ssize_t p = 0; p < panes; p++) {
        PyObject *pair = PyList_GET_ITEM(taken, p);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 ||
            !PyList_Check(PyTuple_GET_ITEM(pair, 0)) || !PyList_Check(PyTuple_GET_ITEM(pair, 1)))
            Py_RETURN_NONE;
        PyObject *ts = PyTuple_GET_ITEM(pair, 0), *errors = PyTuple_GET_ITEM(pair, 1);
        Py_ssize_t n = PyList_GET_SIZE(ts);
        if (n < 2)
            continue;
        if (PyList_GET_SIZE(errors) < n)
            Py_RETURN_NONE;
        for (Py_ssize_t i = 0; i < n; i++)
            if (!PyFloat_CheckExact(PyList_GET_ITEM(ts, i)))
                Py_RETURN_NONE;
        if (n > most)
            most = n;
    }
    double *key = PyMem_Malloc((most ? (size_t)most : 1) * sizeof(double));
    Py_ssize_t *idx = PyMem_Malloc((most ? (size_t)most : 1) * sizeof(Py_ssize_t));
    Py_ssize_t *tmp = PyMem_Malloc((most ? (size_t)most : 1) * sizeof(Py_ssize_t));
    PyObject *out = PyList_New(panes);
    if (key == NULL || idx == NULL || tmp == NULL || out == NULL) {
        if (out != NULL)
            PyErr_NoMemory();
        Py_CLEAR(out);
        goto done;
    }
    for (Py_ssize_t p = 0; p < panes; p++) {
        PyObject *pair = PyList_GET_ITEM(taken, p);
        PyObject *ts = PyTuple_GET_ITEM(pair, 0), *errors = PyTuple_GET_ITEM(pair, 1);
        Py_ssize_t n = PyList_GET_SIZE(ts);
        if (n < 2) {
            PyList_SET_ITEM(out, p, Py_NewRef(errors));
            continue;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            key[i] = PyFloat_AS_DOUBLE(PyList_GET_ITEM(ts, i));
            idx[i] = i;
        }
        stable_order(idx, tmp, n, key);
        PyObject *mine = PyList_New(n);
        if (mine == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        for (Py_ssize_t i = 0; i < n; i++)
            PyList_SET_ITEM(mine, i, Py_NewRef(PyList_GET_ITEM(errors, idx[i])));
        PyList_SET_ITEM(out, p, mine);
    }
done:
    PyMem_Free(key);
    PyMem_Free(idx);
    PyMem_Free(tmp);
    return out;
}

/* ---------------------------------------------------------------- a CUSUM fed panes
 * The integer CUSUM of monitor/core/detectors.py (CalibratedCusum._fed) fed each pane's
 * errors in turn, past its warmup: S += (m if x > cut else 0) - r, an alarm (S back to 0)
 * when S > h, else S at least 0. Python ints there, int64 here (the calibrated numbers are
 * small: S stays within h + m), the same comparisons of the same doubles: the same counts
 * and state, without a bytecode loop over every error of every pane. */

#define CUSUM_BOUND ((long long)1 << 60) /* m, r, h and S beyond it: the Python loop */

PyDoc_STRVAR(cusum_panes_doc,
"cusum_panes(panes, cut, m, r, h, s, detected) -> (alarms, s, detected) | None\n\n"
"CalibratedCusum._fed: feed the errors of each list of panes (float objects) in turn to\n"
"the integer CUSUM of state s (an int) and detected (a bool), with its cut (a float) and\n"
"its m, r and h (ints); the alarms of each pane (a list of ints), and the state after.\n"
"None, with nothing done, when panes is not a list of lists of floats or a number is not\n"
"an int within 2**60 (the Python loop takes those).");

static PyObject *
cusum_panes(PyObject *self, PyObject *args)
{
    PyObject *panes, *o_m, *o_r, *o_h, *o_s;
    double cut;
    int detected;
    (void)self;
    if (!PyArg_ParseTuple(args, "OdOOOOp", &panes, &cut, &o_m, &o_r, &o_h, &o_s, &detected))
        return NULL;
    if (!PyList_Check(panes))
        Py_RETURN_NONE;
    PyObject *ints[4] = {o_m, o_r, o_h, o_s};
    long long v[4];
    for (int i = 0; i < 4; i++) {
        if (!PyLong_CheckExact(ints[i]))
            Py_RETURN_NONE;
        int over = 0;
        v[i] = PyLong_AsLongLongAndOverflow(ints[i], &over);
        if (v[i] == -1 && PyErr_Occurred())
            return NULL;
        if (over || v[i] > CUSUM_BOUND || v[i] < -CUSUM_BOUND)
            Py_RETURN_NONE;
    }
    long long m = v[0], r = v[1], h = v[2], s = v[3];
    Py_ssize_t n = PyList_GET_SIZE(panes);
    for (Py_ssize_t p = 0; p < n; p++) {
        PyObject *values = PyList_GET_ITEM(panes, p);
        if (!PyList_Check(values))
            Py_RETURN_NONE;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(values); i++)
            if (!PyFloat_CheckExact(PyList_GET_ITEM(values, i)))
                Py_RETURN_NONE;
    }
    PyObject *alarms = PyList_New(n);
    if (alarms == NULL)
        return NULL;
    for (Py_ssize_t p = 0; p < n; p++) {
        PyObject *values = PyList_GET_ITEM(panes, p);
        long found = 0;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(values); i++) {
            s += (PyFloat_AS_DOUBLE(PyList_GET_ITEM(values, i)) > cut ? m : 0) - r;
            if (s > h) {
                s = 0;
                detected = 1;
                found++;
            } else {
                if (s < 0)
                    s = 0;
                detected = 0;
            }
        }
        PyObject *count = PyLong_FromLong(found);
        if (count == NULL) {
            Py_DECREF(alarms);
            return NULL;
        }
        PyList_SET_ITEM(alarms, p, count);
    }
    return Py_BuildValue("(NLO)", alarms, s, detected ? Py_True : Py_False);
}

/* ---------------------------------------------------------------- drift and detector numbers
 * The chi-square survival function of monitor/core/drift.py (chi2_sf) and the exact average
 * run length of an integer CUSUM of monitor/core/detectors.py (bernoulli_cusum_arl), which
 * stand in for scipy's special functions and sparse solver so that a replay does not load
 * scipy. Each is the Python code beside its caller written again operation for operation
 * (the same libm functions, no product fused with a sum: -std=c99), so both give the same
 * bits; tests/core/test_drift.py and tests/core/test_detectors.py check that they do. */

/* ln G(a + 1) - (a + 1/2) ln a + a - ln sqrt(2 pi) at a = 0, 1/2, 1, ..., 15 (drift.py,
 * _STIRLING_HALVES). */
static const double stirling_halves[31] = {
    0.0, 0.15342640972002736, 0.08106146679532726, 0.05481412105191765,
    0.0413406959554093, 0.03316287351993629, 0.02767792568499834, 0.023746163656297496,
    0.020790672103765093, 0.018488450532673187, 0.016644691189821193, 0.015134973221917378,
    0.013876128823070748, 0.012810465242920227, 0.01189670994589177, 0.011104559758206917,
    0.010411265261972096, 0.009799416126158804, 0.009255462182712733, 0.008768700134139386,
    0.00833056343336287, 0.00793411456431402, 0.007573675487951841, 0.007244554301320383,
    0.00694284010720953, 0.006665247032707682, 0.006408994188004207, 0.006171712263039458,
    0.0059513701127588475, 0.0057462165130101155, 0.005554733551962801};

#define CHI2_EPS 1.1102230246251565e-16 /* 2**-53 */
#define CHI2_TINY 1e-300
#define TWO_PI 6.283185307179586

static double
stirling_error(double a)
{
    if (a <= 15.0)
        return stirling_halves[(int)(a + a)];
    double s0 = 1.0 / 12.0, s1 = 1.0 / 360.0, s2 = 1.0 / 1260.0, s3 = 1.0 / 1680.0,
           s4 = 1.0 / 1188.0, aa = a * a;
    if (a > 500.0)
        return (s0 - s1 / aa) / a;
    if (a > 80.0)
        return (s0 - (s1 - s2 / aa) / aa) / a;
    if (a > 35.0)
        return (s0 - (s1 - (s2 - s3 / aa) / aa) / aa) / a;
    return (s0 - (s1 - (s2 - (s3 - s4 / aa) / aa) / aa) / aa) / a;
}

static double
deviance(double a, double y)
{
    double d = a - y;
    if (fabs(d) < 0.1 * (a + y)) {
        double v = d / (a + y), s = d * v, term = 2.0 * a * v, v2 = v * v, j = 1.0;
        for (;;) {
            term *= v2;
            double next = s + term / (2.0 * j + 1.0);
            if (next == s)
                return next;
            s = next;
            j += 1.0;
        }
    }
    return a * log(a / y) + y - a;
}

static double
chi2_sf_one(double k, double x)
{
    if (!(k >= 1.0 && k == floor(k) && k <= 1e15) || x != x)
        return NAN;
    if (x <= 0.0)
        return 1.0;
    if (x == INFINITY)
        return 0.0;
    double a = 0.5 * k, y = 0.5 * x;
    double d = exp(-stirling_error(a) - deviance(a, y)) / sqrt(TWO_PI * a);
    if (y < a + 1.0) {
        double t = 1.0, s = 1.0, n = 1.0;
        while (t > s * CHI2_EPS) {
            t *= y / (a + n);
            s += t;
            n += 1.0;
        }
        double p = d * s;
        return p < 1.0 ? 1.0 - p : 0.0;
    }
    double b = y + 1.0 - a, c = 1.0 / CHI2_TINY, e = 1.0 / b, h = e, i = 1.0;
    for (;;) {
        double an = -i * (i - a);
        b += 2.0;
        e = an * e + b;
        if (fabs(e) < CHI2_TINY)
            e = CHI2_TINY;
        c = b + an / c;
        if (fabs(c) < CHI2_TINY)
            c = CHI2_TINY;
        e = 1.0 / e;
        double step = e * c;
        h *= step;
        if (fabs(step - 1.0) <= CHI2_EPS)
            break;
        i += 1.0;
    }
    return a * d * h;
}

PyDoc_STRVAR(chi2_sf_doc,
"chi2_sf(dof, x, out)\n\n"
"Write into out[i] the chi-square survival function of x[i] with dof[i] degrees of\n"
"freedom (float64 arrays of one length, or dof of one value for every x):\n"
"monitor/core/drift.py's _chi2_sf_one.");

static PyObject *
chi2_sf(PyObject *self, PyObject *args)
{
    arg_t a[3] = {{NULL, 8, 0, "dof", {0}}, {NULL, 8, 0, "x", {0}}, {NULL, 8, 1, "out", {0}}};
    (void)self;
    if (!PyArg_ParseTuple(args, "OOO", &a[0].obj, &a[1].obj, &a[2].obj))
        return NULL;
    if (acquire(a, 3) < 0)
        return NULL;
    Py_ssize_t n = a[2].buf.len / 8, k = a[0].buf.len / 8;
    if ((k != n && k != 1) || a[1].buf.len / 8 != n) {
        release(a, 3);
        PyErr_SetString(PyExc_ValueError, "dof, x, out: arrays of one length (dof: or 1)");
        return NULL;
    }
    const double *dof = a[0].buf.buf, *x = a[1].buf.buf;
    double *out = a[2].buf.buf;
    for (Py_ssize_t i = 0; i < n; i++)
        out[i] = chi2_sf_one(dof[k == 1 ? 0 : i], x[i]);
    release(a, 3);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(cusum_arl_doc,
"cusum_arl(p, r, m, h) -> float\n\n"
"The expected events to an alarm of the integer CUSUM S = max(0, S + m x - r), from 0,\n"
"alarm when S > h, x 0/1 with P(x = 1) = p: monitor/core/detectors.py's\n"
"_cusum_arl_numpy, the same band elimination in the same order.");

static PyObject *
cusum_arl(PyObject *self, PyObject *args)
{
    double p;
    Py_ssize_t r, m, h;
    (void)self;
    if (!PyArg_ParseTuple(args, "dnnn", &p, &r, &m, &h))
        return NULL;
    if (!(r > 0 && m > r && h >= 0)) {
        PyErr_SetString(PyExc_ValueError, "need 0 < r < m and h >= 0");
        return NULL;
    }
    Py_ssize_t n = h + 1, up = m - r, w = r + up + 1;
    /* Row i of I - P in band form: band[i * w + (c - i + r)] is column c, for c in
     * [i - r, i + up]; b is the right-hand side, then the solution. */
    double *band = PyMem_Calloc((size_t)n * (size_t)w, sizeof(double));
    double *b = PyMem_Malloc((size_t)n * sizeof(double));
    if (band == NULL || b == NULL) {
        PyMem_Free(band);
        PyMem_Free(b);
        return PyErr_NoMemory();
    }
    double *absorb = PyMem_Malloc((size_t)n * sizeof(double));
    if (absorb == NULL) {
        PyMem_Free(band);
        PyMem_Free(b);
        return PyErr_NoMemory();
    }
    double q = 1.0 - p;
    for (Py_ssize_t i = 0; i < n; i++) {
        double *row = band + i * w;
        row[r] = 1.0;
        if (i + up <= h)
            row[r + up] = -p;
        Py_ssize_t down = i - r > 0 ? i - r : 0;
        row[down - i + r] -= q;
        b[i] = 1.0;
        absorb[i] = i + up <= h ? 0.0 : p;
    }
    for (Py_ssize_t i = 0; i < n; i++) { /* eliminate column i below the diagonal */
        double *pivot = band + i * w + r;
        double diag = absorb[i]; /* the row's sum: its probability of leaving, no cancellation */
        for (Py_ssize_t c = 1; c <= up; c++)
            diag += -pivot[c];
        pivot[0] = diag;
        Py_ssize_t last = i + r < n - 1 ? i + r : n - 1;
        for (Py_ssize_t j = i + 1; j <= last; j++) {
            double *row = band + j * w + (i - j + r); /* row j from column i on */
            double f = row[0] / diag;
            for (Py_ssize_t c = 1; c <= up; c++)
                row[c] -= f * pivot[c];
            b[j] -= f * b[i];
            absorb[j] -= f * absorb[i];
        }
    }
    for (Py_ssize_t i = n - 1; i >= 0; i--) { /* back substitution, column by column */
        b[i] /= band[i * w + r];
        Py_ssize_t first = i - up > 0 ? i - up : 0;
        for (Py_ssize_t k = first; k < i; k++)
            b[k] -= band[k * w + (i - k + r)] * b[i];
    }
    double arl = b[0];
    PyMem_Free(band);
    PyMem_Free(b);
    PyMem_Free(absorb);
    return PyFloat_FromDouble(arl);
}

/* ---------------------------------------------------------------- a consume's records
 * The confluent source's reading of one Consumer.consume (monitor/kafka/confluent_source.py,
 * _record_columns): each record's error(), topic(), partition(), offset(), value() and
 * timestamp()[1] into columns, and the row of each (topic, partition)'s last record, in
 * one pass instead of six list comprehensions and a set built per message. When a record's
 * type looks its methods up the generic way (no instance dict, the default getattr) and they
 * are C methods, the descriptors are found once and called straight; any other object
 * through an ordinary method call.
 *
 * confluent_kafka.Message keeps what those methods return in its C struct, and six calls a
 * record (timestamp() builds a tuple through Py_BuildValue) cost more than the rest of the
 * reading together. Its fields are read straight from the struct instead (cfl_message_t,
 * the layout of confluent-kafka 2.x's src/confluent_kafka/src/confluent_kafka.h), but only
 * for a type named confluent_kafka.cimpl.Message, as large as that layout, whose methods
 * gave, on a record of the same call, exactly what the fields hold (the very topic, value
 * and error objects, the same partition, offset and timestamp): a layout that differs
 * fails that check, and the methods are called. No field is followed before the check.
 * A consumed record's error field holds None when it has no error (the constructor's
 * leaves it NULL): both read as no error. */

enum { R_ERROR, R_TOPIC, R_PARTITION, R_OFFSET, R_VALUE, R_TIMESTAMP, R_METHODS };
static const char *record_method[R_METHODS] = {"error", "topic", "partition", "offset",
                                               "value", "timestamp"};
static PyObject *record_name[R_METHODS]; /* interned at the module's init */
static PyObject *one;                    /* the int 1: timestamp()'s item that is kept */

/* The methods of the records of one type, looked up once per call of record_columns, and
 * whether their fields are read straight from the struct (see cfl_message_t). */
typedef struct {
    PyTypeObject *type;           /* NULL: none looked up yet */
    PyObject *descr[R_METHODS];   /* held; NULL: call by name */
    int direct;                   /* DIRECT_*: the fields read from the struct, or not */
} methods_t;

enum { DIRECT_UNKNOWN, DIRECT_YES, DIRECT_NO };

/* confluent_kafka.Message's struct (confluent-kafka 2.x): the fields up to tstype. */
typedef struct {
    PyObject_HEAD
    PyObject *topic;
    PyObject *value;
    PyObject *key;
    PyObject *headers;
    void *c_headers;
    PyObject *error;
    int32_t partition;
    int64_t offset;
    int32_t leader_epoch;
    int64_t timestamp;
    int tstype;
} cfl_message_t;

static void
methods_clear(methods_t *m)
{
    for (int k = 0; k < R_METHODS; k++)
        Py_CLEAR(m->descr[k]);
    m->type = NULL;
    m->direct = DIRECT_UNKNOWN;
}

static void
methods_of(methods_t *m, PyTypeObject *type)
{
    int plain = type->tp_getattro == PyObject_GenericGetAttr && type->tp_dictoffset == 0;
#ifdef Py_TPFLAGS_MANAGED_DICT
    plain = plain && !(type->tp_flags & Py_TPFLAGS_MANAGED_DICT);
#endif
    methods_clear(m);
    m->type = type;
    for (int k = 0; k < R_METHODS; k++) {
        PyObject *d = plain ? _PyType_Lookup(type, record_name[k]) : NULL;
        if (d != NULL && Py_IS_TYPE(d, &PyMethodDescr_Type)) {
            Py_INCREF(d);
            m->descr[k] = d;
        }
    }
    int candidate = strcmp(type->tp_name, "confluent_kafka.cimpl.Message") == 0
                    && type->tp_basicsize >= (Py_ssize_t)sizeof(cfl_message_t);
    for (int k = 0; k < R_METHODS; k++)
        candidate = candidate && m->descr[k] != NULL;
    m->direct = candidate ? DIRECT_UNKNOWN : DIRECT_NO;
}

static PyObject *
call_method(methods_t *m, PyObject *record, int k)
{
    if (Py_TYPE(record) != m->type)
        methods_of(m, Py_TYPE(record));
    PyObject *args[1] = {record};
    if (m->descr[k] != NULL)
        return PyObject_Vectorcall(m->descr[k], args, 1, NULL);
    return PyObject_VectorcallMethod(record_name[k], args, 1, NULL);
}

/* Whether an int object holds v (0 for any other object). */
static int
int_is(PyObject *o, long long v)
{
    if (!PyLong_CheckExact(o))
        return 0;
    int overflow;
    long long got = PyLong_AsLongLongAndOverflow(o, &overflow);
    return !overflow && got == v;
}

/* Check the struct's fields against the methods on one record of m's type: m->direct set
 * to DIRECT_YES when every method returned what its field holds, DIRECT_NO when one did
 * not; left unknown when the record cannot tell (no topic, no partition or offset). 0, or
 * -1 with an error set (a method raised). */
static int
check_direct(methods_t *m, PyObject *record)
{
    const cfl_message_t *f = (const cfl_message_t *)record;
    if (f->topic == NULL || f->partition < 0 || f->offset < 0)
        return 0;
    PyObject *got[R_METHODS] = {NULL};
    for (int k = 0; k < R_METHODS; k++)
        if ((got[k] = call_method(m, record, k)) == NULL) {
            for (int j = 0; j < k; j++)
                Py_DECREF(got[j]);
            return -1;
        }
    PyObject *stamp = got[R_TIMESTAMP];
    int same = got[R_ERROR] == (f->error != NULL ? f->error : Py_None)
               && got[R_TOPIC] == f->topic
               && got[R_VALUE] == (f->value != NULL ? f->value : Py_None)
               && int_is(got[R_PARTITION], f->partition)
               && int_is(got[R_OFFSET], f->offset)
               && PyTuple_CheckExact(stamp) && PyTuple_GET_SIZE(stamp) == 2
               && int_is(PyTuple_GET_ITEM(stamp, 0), f->tstype)
               && int_is(PyTuple_GET_ITEM(stamp, 1), f->timestamp);
    for (int k = 0; k < R_METHODS; k++)
        Py_DECREF(got[k]);
    m->direct = same ? DIRECT_YES : DIRECT_NO;
    return 0;
}

/* A record's error() (a new reference); with no error, its topic(), partition(), offset(),
 * value() and timestamp()[1] into v[0:5] (new references). -1 with an error set and none
 * held. */
static int
record_values(methods_t *m, PyObject *record, PyObject **error, PyObject **v)
{
    if (Py_TYPE(record) != m->type)
        methods_of(m, Py_TYPE(record));
    if (m->direct == DIRECT_UNKNOWN && check_direct(m, record) < 0)
        return -1;
    const cfl_message_t *f = (const cfl_message_t *)record;
    if (m->direct == DIRECT_YES && f->topic != NULL && f->partition >= 0 && f->offset >= 0) {
        if (f->error != NULL && f->error != Py_None) { /* consume's records hold None */
            Py_INCREF(f->error);
            *error = f->error;
            return 0;
        }
        *error = Py_None;
        Py_INCREF(Py_None);
        v[0] = f->topic;
        Py_INCREF(v[0]);
        v[3] = f->value != NULL ? f->value : Py_None;
        Py_INCREF(v[3]);
        v[1] = PyLong_FromLong(f->partition);
        v[2] = v[1] != NULL ? PyLong_FromLongLong(f->offset) : NULL;
        v[4] = v[2] != NULL ? PyLong_FromLongLong(f->timestamp) : NULL;
        if (v[4] == NULL) {
            for (int c = 0; c < 5; c++)
                Py_CLEAR(v[c]);
            Py_CLEAR(*error);
            return -1;
        }
        return 0;
    }
    if ((*error = call_method(m, record, R_ERROR)) == NULL)
        return -1;
    if (*error != Py_None)
        return 0;
    for (int c = 0; c < 5; c++)
        if ((v[c] = call_method(m, record, R_TOPIC + c)) == NULL)
            break;
    if (v[4] != NULL) { /* timestamp() -> (type, ms): the ms */
        PyObject *stamp;
        if (PyTuple_CheckExact(v[4]) && PyTuple_GET_SIZE(v[4]) == 2) {
            stamp = PyTuple_GET_ITEM(v[4], 1);
            Py_INCREF(stamp);
        } else {
            stamp = PyObject_GetItem(v[4], one);
        }
        Py_SETREF(v[4], stamp);
    }
    if (v[4] == NULL) {
        for (int c = 0; c < 5; c++)
            Py_CLEAR(v[c]);
        Py_CLEAR(*error);
        return -1;
    }
    return 0;
}

/* A (topic, partition) pair met in the records, its first topic and partition objects and
 * the row of its last record. */
typedef struct {
    PyObject *topic;
    PyObject *partition;
    Py_ssize_t last;
} pair_t;

/* The index of the pair (topic, partition) in pairs[0:*count], added when new (the
 * previous record's pair tried first); -1 with an error set. */
static Py_ssize_t
pair_of(pair_t **pairs, Py_ssize_t *count, Py_ssize_t *room, Py_ssize_t previous,
        PyObject *topic, PyObject *partition)
{
    for (Py_ssize_t t = -1; t < *count; t++) {
        Py_ssize_t j = t < 0 ? previous : t;
        if (j < 0 || (t >= 0 && j == previous))
            continue;
        pair_t *p = &(*pairs)[j];
        int same = PyObject_RichCompareBool(p->partition, partition, Py_EQ);
        if (same > 0)
            same = PyObject_RichCompareBool(p->topic, topic, Py_EQ);
        if (same < 0)
            return -1;
        if (same)
            return j;
    }
    if (*count == *room) {
        Py_ssize_t more = *room * 2;
        pair_t *grown = PyMem_Realloc(*pairs, (size_t)more * sizeof(pair_t));
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        *pairs = grown;
        *room = more;
    }
    pair_t *p = &(*pairs)[*count];
    Py_INCREF(topic);
    Py_INCREF(partition);
    p->topic = topic;
    p->partition = partition;
    p->last = -1;
    return (*count)++;
}

PyDoc_STRVAR(record_columns_doc,
"record_columns(records) -> (topics, partitions, offsets, values, timestamps, kept,\n"
"                            errors, last)\n\n"
"One consume's records (a list of objects with the methods of confluent_kafka.Message)\n"
"as columns: of each record whose error() is None (kept: those records, a copy of the\n"
"list when every one is), its topic(), partition(), offset(), value() and timestamp()[1];\n"
"errors: the records with an error, in order; last: {(topic, partition): row of its\n"
"last kept record}, the pairs in order of first appearance. A pair's topic and\n"
"partition objects are its first record's, in the columns too.");

static PyObject *
record_columns(PyObject *self, PyObject *args)
{
    PyObject *records;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!", &PyList_Type, &records))
        return NULL;
    /* A copy: a record's method could change the list. */
    PyObject *items = PyList_GetSlice(records, 0, PyList_GET_SIZE(records));
    if (items == NULL)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(items), kept = 0, count = 0, room = 16, previous = -1;
    PyObject *cols[5] = {NULL, NULL, NULL, NULL, NULL};
    PyObject *errors = NULL, *rows = NULL, *last = NULL, *result = NULL;
    methods_t methods = {NULL, {NULL}, DIRECT_UNKNOWN};
    pair_t *pairs = PyMem_Malloc((size_t)room * sizeof(pair_t));
    char *failed = PyMem_Calloc((size_t)n + 1, 1); /* the records with an error */
    if (pairs == NULL || failed == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if ((errors = PyList_New(0)) == NULL)
        goto done;
    for (int c = 0; c < 5; c++)
        if ((cols[c] = PyList_New(n)) == NULL)
            goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *record = PyList_GET_ITEM(items, i);
        PyObject *error, *v[5] = {NULL, NULL, NULL, NULL, NULL};
        if (record_values(&methods, record, &error, v) < 0)
            goto done;
        Py_DECREF(error);
        if (error != Py_None) {
            failed[i] = 1;
            if (PyList_Append(errors, record) < 0)
                goto done;
            continue;
        }
        Py_ssize_t j = pair_of(&pairs, &count, &room, previous, v[0], v[1]);
        if (j >= 0) { /* the pair's own objects in the columns */
            Py_INCREF(pairs[j].topic);
            Py_SETREF(v[0], pairs[j].topic);
            Py_INCREF(pairs[j].partition);
            Py_SETREF(v[1], pairs[j].partition);
        }
        if (j < 0) {
            for (int c = 0; c < 5; c++)
                Py_XDECREF(v[c]);
            goto done;
        }
        pairs[j].last = kept;
        previous = j;
        for (int c = 0; c < 5; c++)
            PyList_SET_ITEM(cols[c], kept, v[c]);
        kept++;
    }
    if (kept == n) {
        rows = items;
        Py_INCREF(rows);
    } else {
        if ((rows = PyList_New(kept)) == NULL)
            goto done;
        for (Py_ssize_t i = 0, r = 0; i < n; i++)
            if (!failed[i]) {
                PyObject *record = PyList_GET_ITEM(items, i);
                Py_INCREF(record);
                PyList_SET_ITEM(rows, r++, record);
            }
        for (int c = 0; c < 5; c++) {
            PyObject *full = PyList_GetSlice(cols[c], 0, kept);
            if (full == NULL)
                goto done;
            Py_SETREF(cols[c], full);
        }
    }
    if ((last = PyDict_New()) == NULL)
        goto done;
    for (Py_ssize_t j = 0; j < count; j++) {
        PyObject *key = PyTuple_Pack(2, pairs[j].topic, pairs[j].partition);
        PyObject *row = key != NULL ? PyLong_FromSsize_t(pairs[j].last) : NULL;
        int set = row != NULL && PyDict_SetItem(last, key, row) == 0;
        Py_XDECREF(key);
        Py_XDECREF(row);
        if (!set)
            goto done;
    }
    result = Py_BuildValue("(NNNNNNNN)", cols[0], cols[1], cols[2], cols[3], cols[4], rows,
                           errors, last);
    for (int c = 0; c < 5; c++)
        cols[c] = NULL;
    rows = errors = last = NULL;
done:
    methods_clear(&methods);
    for (Py_ssize_t j = 0; j < count; j++) {
        Py_DECREF(pairs[j].topic);
        Py_DECREF(pairs[j].partition);
    }
    PyMem_Free(pairs);
    PyMem_Free(failed);
    for (int c = 0; c < 5; c++)
        Py_XDECREF(cols[c]);
    Py_XDECREF(rows);
    Py_XDECREF(errors);
    Py_XDECREF(last);
    Py_DECREF(items);
    return result;
}

PyDoc_STRVAR(record_direct_doc,
"record_direct(record) -> bool\n\n"
"Whether record_columns reads the records of record's type from their struct (a\n"
"confluent_kafka.Message whose fields agree with its methods on this record), not\n"
"through their methods.");

static PyObject *
record_direct(PyObject *self, PyObject *record)
{
    (void)self;
    methods_t methods = {NULL, {NULL}, DIRECT_UNKNOWN};
    methods_of(&methods, Py_TYPE(record));
    int failed = methods.direct == DIRECT_UNKNOWN && check_direct(&methods, record) < 0;
    int direct = methods.direct == DIRECT_YES;
    methods_clear(&methods);
    if (failed)
        return NULL;
    return PyBool_FromLong(direct);
}

/* ------------------------------------------------------------- spent pane arrays cleared
 * The arrays of the panes stage 2's closes let go of (windows.py, WindowSet.recycle: an
 * open pane's decay sums, a pane that left the longest sliding window) cleared when the
 * panes opened next take them, in one call for those a hand-over takes (RowMerges.run),
 * instead of a new array each (numpy's zeros: an allocation and a memset per array). */

/* t = +0.0 in every cell, a few cells a vector store (kept a loop: the compiler is told
 * not to make a memset call of it) */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-loop-distribute-patterns")))
#endif
static CELLS void
zero_cells(double *restrict t, Py_ssize_t n)
{
    for (Py_ssize_t c = 0; c < n; c++)
        t[c] = 0.0;
}

PyDoc_STRVAR(clear_arrays_doc,
"clear_arrays(arrays) -> None\n\n"
"Set every item of each array of the list to +0.0 (as arr.fill(0.0)): each a C-contiguous\n"
"writable float64 array. ValueError or TypeError, with nothing written, for any other\n"
"item (another type, not contiguous, read-only).");

static PyObject *
clear_arrays(PyObject *self, PyObject *args)
{
    PyObject *arrays;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!", &PyList_Type, &arrays))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(arrays);
    PyObject *result = NULL;
    Py_buffer *v = PyMem_Calloc((size_t)(n ? n : 1), sizeof(Py_buffer));
    if (v == NULL)
        return PyErr_NoMemory();
    Py_ssize_t held = 0;
    for (; held < n; held++) {
        if (np_view(PyList_GET_ITEM(arrays, held), &v[held],
                               PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE | PyBUF_FORMAT) < 0)
            goto done;
        if (v[held].itemsize != 8 || v[held].format == NULL || strcmp(v[held].format, "d")) {
            PyBuffer_Release(&v[held]);
            PyErr_SetString(PyExc_ValueError, "arrays: float64 arrays expected");
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++)
        zero_cells((double *)v[i].buf, v[i].len / 8);
    result = Py_NewRef(Py_None);
done:
    while (held-- > 0)
        PyBuffer_Release(&v[held]);
    PyMem_Free(v);
    return result;
}

/* ------------------------------------------------------------- per-pane copies and closes
 * Per pane copies of stage 2 (monitor/core/model_stage.py, ModelStage._take): the
 * whole-model row (row 0) of each window's sums into the next rows of a batch, in one call
 * per pane instead of a numpy view and assignment per window. */

PyDoc_STRVAR(first_rows_doc,
"first_rows(dst, at, sources) -> None\n\n"
"dst[at + i] = sources[i][0] for each i: dst a C-contiguous writable (rows, width)\n"
"float64 array, each source a C-contiguous float64 buffer of at least width items whose\n"
"first width items are copied (the first row of a (slices, width) array). ValueError,\n"
"with nothing written, for rows past dst's or a source too short.");

static PyObject *
first_rows(PyObject *self, PyObject *args)
{
    PyObject *o_dst, *sources;
    Py_ssize_t at;
    (void)self;
    if (!PyArg_ParseTuple(args, "OnO!", &o_dst, &at, &PyList_Type, &sources))
        return NULL;
    Py_buffer dst;
    if (np_view(o_dst, &dst, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE | PyBUF_ND) < 0)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(sources);
    PyObject *result = NULL;
    Py_buffer *v = PyMem_Calloc((size_t)(n ? n : 1), sizeof(Py_buffer));
    if (v == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (dst.itemsize != 8 || dst.ndim != 2) {
        PyErr_SetString(PyExc_ValueError, "dst: a 2-D float64 array expected");
        goto done;
    }
    Py_ssize_t rows = dst.shape[0], width = dst.shape[1];
    if (at < 0 || at + n > rows) {
        PyErr_SetString(PyExc_ValueError, "dst: too few rows");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (np_view(PyList_GET_ITEM(sources, i), &v[i], PyBUF_C_CONTIGUOUS) < 0)
            goto done;
        if (v[i].itemsize != 8 || v[i].len < width * 8) {
            PyErr_SetString(PyExc_ValueError, "sources: float64 rows of dst's width expected");
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++)
        memcpy((double *)dst.buf + (at + i) * width, v[i].buf, (size_t)width * 8);
    result = Py_NewRef(Py_None);
done:
    if (v != NULL)
        for (Py_ssize_t i = 0; i < n; i++)
            if (v[i].obj != NULL)
                PyBuffer_Release(&v[i]);
    PyMem_Free(v);
    PyBuffer_Release(&dst);
    return result;
}

/* A pane close of a WindowSet with one decay window and one sliding window, the pane's sums
 * and its decay sums there and a pane leaving the sliding window (the usual close of a
 * stream's windows all, one sliding and one decay): window_close's passes (cum += acc;
 * decay = decay * f + decayed; the sliding sums and counts of add_cells, slide_cells) in
 * one pass over the cells, each cell through the same operations in the same order (the
 * sums are the same bit for bit), each array read and written once. */
static CELLS int
close_cells(double *restrict cum, const double *restrict a, double *restrict dec,
            const double *restrict d, double f, double *restrict t, double *restrict k,
            const double *restrict out, Py_ssize_t n)
{
    /* cells that lost bits: an integer OR, which the vector loop may take in any order
     * (a sum of doubles must be taken cell after cell) */
    uint64_t lost = 0;
    for (Py_ssize_t c = 0; c < n; c++) {
        double ac = a[c], oc = out[c];
        cum[c] += ac;
        double y = dec[c] * f;
        dec[c] = y + d[c];
        double s = t[c] + ac, m = k[c] + (ac != 0.0 ? 1.0 : 0.0);
        double x = s - oc;
        m = m - (oc != 0.0 ? 1.0 : 0.0);
        double left = m == 0.0 ? 0.0 : x;
        double scaled = fabs(left) * CANCEL;
        double bound = m == 0.0 ? INFINITY : scaled;
        lost |= fabs(oc) > bound ? 1u : 0u;
        t[c] = left;
        k[c] = m;
    }
    return lost != 0;
}

PyDoc_STRVAR(window_close1_doc,
"window_close1(cum, acc, decay, factor, decayed, sliding, nz, leaving) -> int\n\n"
"window_close(cum, acc, [decay], [factor], [decayed], [sliding], [nz], [leaving]) of\n"
"arrays (none None) in one pass over the cells, with the same results: 1 where a cell's\n"
"|leaving| is above 4096 times what is left of the sliding sum there, else 0.");

static PyObject *
window_close1(PyObject *self, PyObject *args)
{
    PyObject *o[7];
    double f;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOdOOOO", &o[0], &o[1], &o[2], &f, &o[3], &o[4], &o[5],
                          &o[6]))
        return NULL;
    static const char *what[7] = {"cum", "acc", "decay", "decayed", "sliding", "nz",
                                  "leaving"};
    static const int writable[7] = {1, 0, 1, 0, 1, 1, 0};
    Py_buffer v[7];
    int held = 0;
    PyObject *result = NULL;
    for (; held < 7; held++) {
        if (doubles(o[held], &v[held], writable[held], held ? v[0].len / 8 : -1,
                    what[held]) < 0)
            goto done;
    }
    int lost = close_cells((double *)v[0].buf, (const double *)v[1].buf, (double *)v[2].buf,
                           (const double *)v[3].buf, f, (double *)v[4].buf,
                           (double *)v[5].buf, (const double *)v[6].buf, v[0].len / 8);
    result = PyLong_FromLong(lost);
done:
    while (held-- > 0)
        PyBuffer_Release(&v[held]);
    return result;
}

/* close_cells with no pane leaving (0.0 in every cell): what it does to a cell that no
 * leaving value reaches, x - 0.0 being x. */
static CELLS void
close_cells_open(double *restrict cum, const double *restrict a, double *restrict dec,
                 const double *restrict d, double f, double *restrict t, double *restrict k,
                 Py_ssize_t n)
{
    for (Py_ssize_t c = 0; c < n; c++) {
        double ac = a[c];
        cum[c] += ac;
        double y = dec[c] * f;
        dec[c] = y + d[c];
        double s = t[c] + ac, m = k[c] + (ac != 0.0 ? 1.0 : 0.0);
        t[c] = m == 0.0 ? 0.0 : s;
        k[c] = m;
    }
}

/* Then each cell of the pane that leaves (index, value), as close_cells takes its leaving
 * value after the pane's: the cell's sum and count as close_cells_open left them are
 * its s and its count before the leaving term (where that count is 0 the leaving value
 * is a -0.0, which leaves 0.0 either way). Returns -1 (error set) for an index out of
 * range, else whether a cell lost bits. */
static int
leave_cells(double *restrict t, double *restrict k, const char *index, Py_ssize_t isize,
            const double *restrict val, Py_ssize_t count, Py_ssize_t n)
{
    uint64_t lost = 0;
    for (Py_ssize_t j = 0; j < count; j++) {
        Py_ssize_t c = isize == 4 ? (Py_ssize_t)((const int32_t *)index)[j]
                                  : (Py_ssize_t)((const int64_t *)index)[j];
        if (c < 0 || c >= n) {
            PyErr_Format(PyExc_IndexError, "leaving cell %zd out of %zd", c, n);
            return -1;
        }
        double oc = val[j];
        double x = t[c] - oc;
        double m = k[c] - (oc != 0.0 ? 1.0 : 0.0);
        double left = m == 0.0 ? 0.0 : x;
        double bound = m == 0.0 ? INFINITY : fabs(left) * CANCEL;
        lost |= fabs(oc) > bound ? 1u : 0u;
        t[c] = left;
        k[c] = m;
    }
    return lost != 0;
}

/* An index buffer of int32 or int64 items, writable or not; -1 (error set) else. */
static int
cell_index(PyObject *o, Py_buffer *b, int writable)
{
    if (np_view(o, b, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    if (b->itemsize != 4 && b->itemsize != 8) {
        PyErr_SetString(PyExc_ValueError, "index: int32 or int64 items expected");
        PyBuffer_Release(b);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(window_close1_cells_doc,
"window_close1_cells(cum, acc, decay, factor, decayed, sliding, nz, index, values) -> int\n\n"
"window_close1 with the leaving pane given as its cells: flat indices (int32 or int64)\n"
"into the arrays and their values, every other cell of it 0.0; the same results.");

static PyObject *
window_close1_cells(PyObject *self, PyObject *args)
{
    PyObject *o[8];
    double f;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOdOOOOO", &o[0], &o[1], &o[2], &f, &o[3], &o[4], &o[5],
                          &o[6], &o[7]))
        return NULL;
    static const char *what[6] = {"cum", "acc", "decay", "decayed", "sliding", "nz"};
    static const int writable[6] = {1, 0, 1, 0, 1, 1};
    Py_buffer v[6], vi, vv;
    int held = 0, index_held = 0, values_held = 0;
    PyObject *result = NULL;
    for (; held < 6; held++) {
        if (doubles(o[held], &v[held], writable[held], held ? v[0].len / 8 : -1,
                    what[held]) < 0)
            goto done;
    }
    if (cell_index(o[6], &vi, 0) < 0)
        goto done;
    index_held = 1;
    Py_ssize_t count = vi.len / vi.itemsize;
    if (doubles(o[7], &vv, 0, count, "values") < 0)
        goto done;
    values_held = 1;
    Py_ssize_t n = v[0].len / 8;
    close_cells_open((double *)v[0].buf, (const double *)v[1].buf, (double *)v[2].buf,
                     (const double *)v[3].buf, f, (double *)v[4].buf, (double *)v[5].buf, n);
    int lost = leave_cells((double *)v[4].buf, (double *)v[5].buf, (const char *)vi.buf,
                           vi.itemsize, (const double *)vv.buf, count, n);
    if (lost >= 0)
        result = PyLong_FromLong(lost);
done:
    if (values_held)
        PyBuffer_Release(&vv);
    if (index_held)
        PyBuffer_Release(&vi);
    while (held-- > 0)
        PyBuffer_Release(&v[held]);
    return result;
}

/* A ring pane's cells (windows.ring_cells): those of a float64 array whose bits are not
 * all zero (a -0.0 too), counted, then their flat indices and values written. */

static Py_ssize_t
count_cells(const uint64_t *restrict a, Py_ssize_t n)
{
    Py_ssize_t k = 0;
    for (Py_ssize_t c = 0; c < n; c++)
        k += a[c] != 0;
    return k;
}

PyDoc_STRVAR(cells_count_doc,
"cells_count(acc) -> int\n\n"
"How many items of the float64 array acc have bits that are not all zero (-0.0 counts).");

static PyObject *
cells_count(PyObject *self, PyObject *arg)
{
    Py_buffer v;
    (void)self;
    if (doubles(arg, &v, 0, -1, "acc") < 0)
        return NULL;
    Py_ssize_t k = count_cells((const uint64_t *)v.buf, v.len / 8);
    PyBuffer_Release(&v);
    return PyLong_FromSsize_t(k);
}

PyDoc_STRVAR(cells_fill_doc,
"cells_fill(acc, index, values) -> None\n\n"
"Write the flat index (int32 or int64) and the value of each item of the float64 array acc\n"
"whose bits are not all zero, in order, into the first items of index and values, which\n"
"hold one item more than cells_count(acc) gives (each cell is written, and the next one\n"
"goes over it unless its bits are not zero: no branch per cell).");

static PyObject *
cells_fill(PyObject *self, PyObject *args)
{
    PyObject *o_acc, *o_index, *o_values;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOO", &o_acc, &o_index, &o_values))
        return NULL;
    Py_buffer va, vi, vv;
    if (doubles(o_acc, &va, 0, -1, "acc") < 0)
        return NULL;
    if (cell_index(o_index, &vi, 1) < 0) {
        PyBuffer_Release(&va);
        return NULL;
    }
    Py_ssize_t count = vi.len / vi.itemsize;
    if (doubles(o_values, &vv, 1, count, "values") < 0) {
        PyBuffer_Release(&vi);
        PyBuffer_Release(&va);
        return NULL;
    }
    const uint64_t *bits = (const uint64_t *)va.buf;
    const double *a = (const double *)va.buf;
    double *val = (double *)vv.buf;
    Py_ssize_t n = va.len / 8, k = 0;
    PyObject *result = NULL;
    if (count_cells(bits, n) + 1 != count) {
        PyErr_SetString(PyExc_ValueError, "index, values: not one item more than acc's cells");
        goto done;
    }
    if (vi.itemsize == 4) {
        if (n - 1 > INT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "index: int32 cannot number acc's cells");
            goto done;
        }
        int32_t *idx = (int32_t *)vi.buf;
        for (Py_ssize_t c = 0; c < n; c++) {
            idx[k] = (int32_t)c;
            val[k] = a[c];
            k += bits[c] != 0;
        }
    } else {
        int64_t *idx = (int64_t *)vi.buf;
        for (Py_ssize_t c = 0; c < n; c++) {
            idx[k] = (int64_t)c;
            val[k] = a[c];
            k += bits[c] != 0;
        }
    }
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&vv);
    PyBuffer_Release(&vi);
    PyBuffer_Release(&va);
    return result;
}

PyDoc_STRVAR(cells_add_doc,
"cells_add(total, index, values) -> None\n\n"
"total[index[j]] += values[j] for each j in order (total a float64 array, index int32 or\n"
"int64 in its range, every index checked before anything is written).");

static PyObject *
cells_add(PyObject *self, PyObject *args)
{
    PyObject *o_total, *o_index, *o_values;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOO", &o_total, &o_index, &o_values))
        return NULL;
    Py_buffer vt, vi, vv;
    if (doubles(o_total, &vt, 1, -1, "total") < 0)
        return NULL;
    if (cell_index(o_index, &vi, 0) < 0) {
        PyBuffer_Release(&vt);
        return NULL;
    }
    Py_ssize_t count = vi.len / vi.itemsize, n = vt.len / 8;
    PyObject *result = NULL;
    if (doubles(o_values, &vv, 0, count, "values") < 0)
        goto released;
    for (Py_ssize_t j = 0; j < count; j++) {
        Py_ssize_t c = vi.itemsize == 4 ? (Py_ssize_t)((const int32_t *)vi.buf)[j]
                                        : (Py_ssize_t)((const int64_t *)vi.buf)[j];
        if (c < 0 || c >= n) {
            PyErr_Format(PyExc_IndexError, "cell %zd out of %zd", c, n);
            goto done;
        }
    }
    double *t = (double *)vt.buf;
    const double *val = (const double *)vv.buf;
    if (vi.itemsize == 4) {
        const int32_t *idx = (const int32_t *)vi.buf;
        for (Py_ssize_t j = 0; j < count; j++)
            t[idx[j]] += val[j];
    } else {
        const int64_t *idx = (const int64_t *)vi.buf;
        for (Py_ssize_t j = 0; j < count; j++)
            t[idx[j]] += val[j];
    }
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&vv);
released:
    PyBuffer_Release(&vi);
    PyBuffer_Release(&vt);
    return result;
}

/* ---------------------------------------------------------------- stage 2 window roll
 * A run of a WindowSet's pane closes (monitor/core/windows.py, WindowSet.roll, for
 * ModelStage.close_through): pane after pane, its queued row blocks added into the scratch
 * arrays, the close (window_close's operations on each cell, in its order: the same sums
 * bit for bit), the ring's cells of the pane taken, the scratch cleared, the pane that
 * leaves the ring let go of, and the whole-model row of each window copied into the batch
 * of signals to compute: one call for the panes of a poll of a sparse stream instead of a
 * dozen calls per pane. A pane of a sparse stream holds values in few of its cells: they
 * are marked in a bit map in one pass of vectors, and only they are read again and
 * cleared. */

/* The bits of a[c] (the cell read as an integer, without aliasing it) */
static inline uint64_t
roll_bits(const double *a, Py_ssize_t c)
{
    uint64_t bits;
    memcpy(&bits, a + c, sizeof bits);
    return bits;
}

/* Marks the cells of a (n cells) whose bits are not all zero (a -0.0 too) in the bit map m
 * (bit c % 64 of m[c / 64] for cell c), in vectors of 4 cells where the processor has AVX2;
 * returns how many there are (what cells_count gives). */
static Py_ssize_t
roll_marks_plain(const double *restrict a, uint64_t *restrict m, Py_ssize_t n)
{
    Py_ssize_t k = 0;
    for (Py_ssize_t w = 0; w * 64 < n; w++) {
        uint64_t word = 0;
        for (Py_ssize_t i = 0; i < 64 && w * 64 + i < n; i++) {
            uint64_t on = roll_bits(a, w * 64 + i) != 0;
            word |= on << i;
            k += (Py_ssize_t)on;
        }
        m[w] = word;
    }
    return k;
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#include <immintrin.h>
#define ROLL_AVX2 1
static int roll_avx2 = -1; /* whether the processor has AVX2 and POPCNT (-1: not asked yet) */

__attribute__((target("avx2,popcnt"))) static Py_ssize_t
roll_marks_avx2(const double *restrict a, uint64_t *restrict m, Py_ssize_t n)
{
    Py_ssize_t k = 0, w = 0;
    const __m256i zero = _mm256_setzero_si256();
    for (; (w + 1) * 64 <= n; w++) {
        uint64_t word = 0;
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) { /* 4 cells: the bits of those that are all zero */
            __m256i x = _mm256_loadu_si256((const __m256i *)(a + w * 64 + 4 * i));
            unsigned zeros = (unsigned)_mm256_movemask_pd(
                _mm256_castsi256_pd(_mm256_cmpeq_epi64(x, zero)));
            word |= (uint64_t)(~zeros & 15u) << (4 * i);
        }
        m[w] = word;
        k += __builtin_popcountll(word);
    }
    if (w * 64 < n)
        k += roll_marks_plain(a + w * 64, m + w, n - w * 64);
    return k;
}
#endif

static Py_ssize_t
roll_marks(const double *restrict a, uint64_t *restrict m, Py_ssize_t n)
{
#if defined(ROLL_AVX2)
    if (roll_avx2 < 0) {
        __builtin_cpu_init();
        roll_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
    }
    if (roll_avx2)
        return roll_marks_avx2(a, m, n);
#endif
    return roll_marks_plain(a, m, n);
}

/* The flat index and value of each cell marked in m (see roll_marks), in order, into idx
 * and val (NULL: not wanted), and (clear) each of those cells of a set to +0.0 (all of a
 * is then: its other cells are). */
static void
roll_take(double *restrict a, const uint64_t *restrict m, Py_ssize_t n, int32_t *restrict idx,
          double *restrict val, int clear)
{
    Py_ssize_t k = 0;
    for (Py_ssize_t w = 0; w * 64 < n; w++) {
        for (uint64_t word = m[w]; word != 0; word &= word - 1) {
#if defined(__GNUC__)
            Py_ssize_t c = w * 64 + __builtin_ctzll(word);
#else
            Py_ssize_t c = w * 64;
            for (uint64_t low = word & (~word + 1); low > 1; low >>= 1)
                c++;
#endif
            if (idx != NULL) {
                idx[k] = (int32_t)c;
                val[k] = a[c];
            }
            k++;
            if (clear)
                a[c] = 0.0;
        }
    }
}

/* A sliding window's sums t and counts k with the arriving pane a (NULL: none) added, each
 * cell no term is left in set to exactly 0: what slide_cells does to the cells the leaving
 * pane leaves as they are (its 0.0 cells) */
static CELLS void
roll_slide_open(double *restrict t, double *restrict k, const double *restrict a, Py_ssize_t n)
{
    if (a != NULL) {
        for (Py_ssize_t c = 0; c < n; c++) {
            double s = t[c] + a[c], m = k[c] + (a[c] != 0.0 ? 1.0 : 0.0);
            t[c] = m == 0.0 ? 0.0 : s;
            k[c] = m;
        }
    } else {
        for (Py_ssize_t c = 0; c < n; c++)
            t[c] = k[c] == 0.0 ? 0.0 : t[c];
    }
}

/* A ring pane leaving a sliding window: its array (dense) or its cells (index, values) */
typedef struct {
    PyObject *pane; /* held; NULL: no pane leaves */
    int cells;
    Py_buffer v, vi;
} roll_leaving_t;

static void
roll_leaving_release(roll_leaving_t *l)
{
    if (l->pane == NULL)
        return;
    if (l->v.obj != NULL)
        PyBuffer_Release(&l->v);
    if (l->vi.obj != NULL)
        PyBuffer_Release(&l->vi);
    Py_CLEAR(l->pane);
}

/* The ring's pane key, or none (l->pane NULL): its views taken; -1 with an error set */
static int
roll_leaving(PyObject *ring, Py_ssize_t key, Py_ssize_t n, roll_leaving_t *l)
{
    memset(l, 0, sizeof *l);
    PyObject *k = PyLong_FromSsize_t(key);
    if (k == NULL)
        return -1;
    PyObject *pane = PyDict_GetItemWithError(ring, k);
    Py_DECREF(k);
    if (pane == NULL)
        return PyErr_Occurred() ? -1 : 0;
    l->pane = Py_NewRef(pane);
    if (PyTuple_Check(pane)) { /* Cells(at, values) */
        l->cells = 1;
        if (PyTuple_GET_SIZE(pane) != 2) {
            PyErr_SetString(PyExc_ValueError, "ring: Cells of (at, values) expected");
            goto fail;
        }
        if (cell_index(PyTuple_GET_ITEM(pane, 0), &l->vi, 0) < 0)
            goto fail;
        if (doubles(PyTuple_GET_ITEM(pane, 1), &l->v, 0, l->vi.len / l->vi.itemsize,
                    "ring values") < 0)
            goto fail;
        return 0;
    }
    if (doubles(pane, &l->v, 0, n, "ring pane") < 0)
        goto fail;
    return 0;
fail:
    roll_leaving_release(l);
    return -1;
}

PyDoc_STRVAR(window_roll_doc,
"window_roll(ring, queued, held, held_decay, cum, decay, factors, sliding, nz, spans,\n"
"            ring_len, spare, spent, empty, index_dtype, cells_type, first, last, sums, at,\n"
"            sources, panes, seen, seen_col) -> (closed, taken, lost)\n\n"
"Close the panes first, first + 1, ... below last of a WindowSet (its attributes given;\n"
"every array float64 of cum's n cells, n < 2**31), as WindowSet.close of each in turn\n"
"with the compiled kernels does, bit for bit, and copy after each close the first row\n"
"(sums' width items) of each window's sums (sources: 0 cum, 1 + i sliding[i], 1 + len(\n"
"sliding) + j decay[j]) into the next rows of sums from row at, the pane into panes and\n"
"cum[seen_col] into seen. A pane held as arrays (held[pane], held_decay[pane]) is taken\n"
"out of them (its decay arrays into spent); else its queued ops (queued[pane], see\n"
"rows_add_many; their first arrays the scratch) are added into the scratch; a pane with\n"
"neither is closed empty. The ring keeps the pane's cells whose bits are not all zero as\n"
"cells_type(index, values) (index_dtype: int32; each made by empty) when they take less\n"
"memory than the array (a held array then into spent), else the held array, or a copy of\n"
"the scratch (spare's last array, else a new one); the scratch is cleared. It stops\n"
"before a pane at which the windows are summed again (a multiple of ring_len), once the\n"
"ring is empty, and after a close that leaves a sliding window's cell with less than\n"
"1/4096 of the magnitude that left it, before the ring lets go of a pane and before the\n"
"copies: taken is then closed - 1, and the caller sums again the sliding windows of\n"
"lost's bits (bit i: sliding[i]), as after window_close.");

static PyObject *
window_roll(PyObject *self, PyObject *args)
{
    PyObject *ring, *queued, *held, *held_decay, *o_cum, *decay, *factors, *sliding, *nz, *spans, *spare,
        *spent, *empty, *index_dtype, *o_cells_type, *o_sums, *sources, *panes, *seen;
    Py_ssize_t ring_len, first, last, at, seen_col;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!O!O!OO!O!O!O!O!nO!O!OOO!nnOnO!O!O!n", &PyDict_Type,
                          &ring, &PyDict_Type, &queued, &PyDict_Type, &held, &PyDict_Type,
                          &held_decay, &o_cum, &PyList_Type,
                          &decay, &PyList_Type, &factors, &PyList_Type, &sliding,
                          &PyList_Type, &nz, &PyList_Type, &spans, &ring_len, &PyList_Type,
                          &spare, &PyList_Type, &spent, &empty, &index_dtype, &PyType_Type,
                          &o_cells_type, &first, &last, &o_sums, &at, &PyList_Type, &sources,
                          &PyList_Type, &panes, &PyList_Type, &seen, &seen_col))
        return NULL;
    PyTypeObject *cells_type = (PyTypeObject *)o_cells_type;
    Py_ssize_t nd = PyList_GET_SIZE(decay), ns = PyList_GET_SIZE(sliding);
    Py_ssize_t windows = PyList_GET_SIZE(sources);
    if (PyList_GET_SIZE(factors) != nd || PyList_GET_SIZE(nz) != ns ||
        PyList_GET_SIZE(spans) != ns || ns > 63 || ring_len < 1 ||
        !PyType_IsSubtype(cells_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_ValueError, "window_roll: factors one per decay window, nz and "
                        "spans one per sliding window (at most 63), ring_len >= 1, cells_type "
                        "a tuple");
        return NULL;
    }
    /* views held for the call: cum, sums, decay..., sliding..., nz...; then per pane the
     * scratch (acc, decayed...) */
    Py_ssize_t most = 2 + nd + 2 * ns;
    Py_buffer *v = PyMem_Calloc((size_t)most, sizeof(Py_buffer));
    Py_buffer *vp = PyMem_Calloc((size_t)(1 + nd), sizeof(Py_buffer));
    double *f = PyMem_Malloc(sizeof(double) * (size_t)(nd ? nd : 1));
    Py_ssize_t *n_i = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(ns ? ns : 1));
    const double **src = PyMem_Malloc(sizeof(double *) * (size_t)(windows ? windows : 1));
    roll_leaving_t *lv = PyMem_Calloc((size_t)(ns ? ns : 1), sizeof(roll_leaving_t));
    uint64_t *marks = NULL;
    PyObject *result = NULL, *key = NULL, *ops = NULL, *kept = NULL, *held_acc = NULL,
             *held_dec = NULL;
    Py_ssize_t closed = 0, taken = 0;
    unsigned long long lost = 0;
    if (v == NULL || vp == NULL || f == NULL || n_i == NULL || src == NULL || lv == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (list_floats(factors, nd, f) < 0)
        goto done;
    for (Py_ssize_t i = 0; i < ns; i++) {
        n_i[i] = PyLong_AsSsize_t(PyList_GET_ITEM(spans, i));
        if (n_i[i] == -1 && PyErr_Occurred())
            goto done;
        if (n_i[i] < 1) {
            PyErr_SetString(PyExc_ValueError, "spans: >= 1 pane");
            goto done;
        }
    }
    if (doubles(o_cum, &v[0], 1, -1, "cum") < 0)
        goto done;
    Py_ssize_t n = v[0].len / 8;
    if (np_view(o_sums, &v[1], PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE | PyBUF_ND) < 0)
        goto done;
    if (v[1].itemsize != 8 || v[1].ndim != 2) {
        PyErr_SetString(PyExc_ValueError, "sums: a 2-D float64 array expected");
        goto done;
    }
    Py_ssize_t width = v[1].shape[1];
    Py_buffer *vd = v + 2, *vs = vd + nd, *vz = vs + ns;
    for (Py_ssize_t j = 0; j < nd; j++)
        if (doubles(PyList_GET_ITEM(decay, j), &vd[j], 1, n, "decay") < 0)
            goto done;
    for (Py_ssize_t i = 0; i < ns; i++)
        if (doubles(PyList_GET_ITEM(sliding, i), &vs[i], 1, n, "sliding") < 0 ||
            doubles(PyList_GET_ITEM(nz, i), &vz[i], 1, n, "nz") < 0)
            goto done;
    if (n > INT32_MAX || width > n || seen_col < 0 || seen_col >= width || at < 0 ||
        (last > first && at + (last - first) * windows > v[1].shape[0])) {
        PyErr_SetString(PyExc_ValueError, "window_roll: n < 2**31 cells, the sums' width "
                        "at most n, seen_col in it, rows for the panes from at");
        goto done;
    }
    for (Py_ssize_t j = 0; j < windows; j++) {
        Py_ssize_t code = PyLong_AsSsize_t(PyList_GET_ITEM(sources, j));
        if (code == -1 && PyErr_Occurred())
            goto done;
        if (code < 0 || code > ns + nd) {
            PyErr_SetString(PyExc_ValueError, "sources: 0, 1 + a sliding or decay window");
            goto done;
        }
        src[j] = code == 0 ? (const double *)v[0].buf
                 : code <= ns ? (const double *)vs[code - 1].buf
                              : (const double *)vd[code - 1 - ns].buf;
    }
    marks = PyMem_Malloc(sizeof(uint64_t) * (size_t)(n / 64 + 1));
    if (marks == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    double *cum = (double *)v[0].buf, *out = (double *)v[1].buf;
    for (Py_ssize_t p = first; p < last; p++) {
        if (p % ring_len == 0 || PyDict_GET_SIZE(ring) == 0)
            break;
        if ((key = PyLong_FromSsize_t(p)) == NULL)
            goto done;
        const double *a = NULL;
        int scratch = 0; /* a is the scratch (else the pane's own array: kept, not cleared) */
        held_acc = Py_XNewRef(PyDict_GetItemWithError(held, key));
        if (held_acc == NULL && PyErr_Occurred())
            goto done;
        if (held_acc != NULL) { /* held as arrays: taken out; its decay sums read no more */
            PyObject *dec = PyDict_GetItemWithError(held_decay, key);
            if (dec == NULL && PyErr_Occurred())
                goto done;
            if (dec == NULL || !PyList_Check(dec) || PyList_GET_SIZE(dec) != nd) {
                Py_CLEAR(held_acc); /* (not as a close takes them: the caller's close) */
                Py_CLEAR(key);
                break;
            }
            held_dec = Py_NewRef(dec);
            if (doubles(held_acc, &vp[0], 0, n, "held") < 0)
                goto done;
            for (Py_ssize_t j = 0; j < nd; j++)
                if (doubles(PyList_GET_ITEM(held_dec, j), &vp[1 + j], 0, n, "held") < 0)
                    goto done;
            if (PyDict_DelItem(held, key) < 0 || PyDict_DelItem(held_decay, key) < 0)
                goto done;
            for (Py_ssize_t j = 0; j < nd; j++)
                if (PyList_Append(spent, PyList_GET_ITEM(held_dec, j)) < 0)
                    goto done;
            a = (const double *)vp[0].buf;
        }
        if (held_acc == NULL)
            ops = Py_XNewRef(PyDict_GetItemWithError(queued, key));
        if (ops == NULL && PyErr_Occurred())
            goto done;
        if (ops != NULL) { /* its blocks added into the scratch, then the pane unqueued */
            PyObject *op = PyList_Check(ops) && PyList_GET_SIZE(ops) ? PyList_GET_ITEM(ops, 0)
                                                                     : NULL;
            if (op == NULL || !PyTuple_Check(op) || PyTuple_GET_SIZE(op) < 2 ||
                !PyList_Check(PyTuple_GET_ITEM(op, 1)) ||
                PyList_GET_SIZE(PyTuple_GET_ITEM(op, 1)) != nd) {
                PyErr_SetString(PyExc_ValueError, "queued: lists of ops into the scratch");
                goto done;
            }
            if (doubles(PyTuple_GET_ITEM(op, 0), &vp[0], 1, n, "scratch") < 0)
                goto done;
            for (Py_ssize_t j = 0; j < nd; j++)
                if (doubles(PyList_GET_ITEM(PyTuple_GET_ITEM(op, 1), j), &vp[1 + j], 1, n,
                            "scratch") < 0)
                    goto done;
            PyObject *pack = PyTuple_Pack(1, ops), *added = NULL;
            if (pack != NULL)
                added = rows_add_many(NULL, pack);
            Py_XDECREF(pack);
            if (added == NULL)
                goto done;
            Py_DECREF(added);
            if (PyDict_DelItem(queued, key) < 0)
                goto done;
            a = (const double *)vp[0].buf;
            scratch = 1;
        }
        for (Py_ssize_t i = 0; i < ns; i++)
            if (roll_leaving(ring, p - n_i[i], n, &lv[i]) < 0)
                goto done;
        /* the close: window_close's passes, or close_cells' in one pass for the usual
         * windows all, one sliding and one decay (the same operations on each cell) */
        if (a != NULL && nd == 1 && ns == 1 && lv[0].pane != NULL) {
            double *t = (double *)vs[0].buf, *k = (double *)vz[0].buf;
            const double *d = (const double *)vp[1].buf;
            if (lv[0].cells) {
                close_cells_open(cum, a, (double *)vd[0].buf, d, f[0], t, k, n);
                int gone = leave_cells(t, k, (const char *)lv[0].vi.buf, lv[0].vi.itemsize,
                                       (const double *)lv[0].v.buf,
                                       lv[0].vi.len / lv[0].vi.itemsize, n);
                if (gone < 0)
                    goto done;
                lost = (unsigned long long)gone;
            } else {
                lost = (unsigned long long)close_cells(cum, a, (double *)vd[0].buf, d, f[0], t,
                                                       k, (const double *)lv[0].v.buf, n);
            }
        } else {
            if (a != NULL)
                add_cells(cum, a, n);
            for (Py_ssize_t j = 0; j < nd; j++)
                decay_cells((double *)vd[j].buf, a != NULL ? (const double *)vp[1 + j].buf
                                                           : NULL, f[j], n);
            for (Py_ssize_t i = 0; i < ns; i++) {
                double *t = (double *)vs[i].buf, *k = (double *)vz[i].buf;
                if (lv[i].pane == NULL || !lv[i].cells) {
                    if (slide_cells(t, k, a, lv[i].pane ? (const double *)lv[i].v.buf : NULL,
                                    n))
                        lost |= 1ull << i;
                    continue;
                }
                roll_slide_open(t, k, a, n);
                int gone = leave_cells(t, k, (const char *)lv[i].vi.buf, lv[i].vi.itemsize,
                                       (const double *)lv[i].v.buf,
                                       lv[i].vi.len / lv[i].vi.itemsize, n);
                if (gone < 0)
                    goto done;
                if (gone)
                    lost |= 1ull << i;
            }
        }
        for (Py_ssize_t i = 0; i < ns; i++)
            roll_leaving_release(&lv[i]);
        if (a != NULL) { /* the ring keeps the pane (WindowSet._keep); the scratch is cleared */
            double *acc = (double *)vp[0].buf;
            Py_ssize_t count = roll_marks(acc, marks, n);
            if (3 * count < 2 * n) { /* its cells (windows._cells_smaller) */
                PyObject *size = PyLong_FromSsize_t(count), *idx = NULL, *val = NULL;
                if (size != NULL) {
                    PyObject *call[2] = {size, index_dtype};
                    idx = PyObject_Vectorcall(empty, call, 2, NULL);
                    if (idx != NULL)
                        val = PyObject_Vectorcall(empty, call, 1, NULL);
                    Py_DECREF(size);
                }
                if (val != NULL && (kept = cells_type->tp_alloc(cells_type, 2)) != NULL) {
                    PyTuple_SET_ITEM(kept, 0, idx);
                    PyTuple_SET_ITEM(kept, 1, val);
                    idx = val = NULL;
                }
                Py_XDECREF(idx);
                Py_XDECREF(val);
                if (kept == NULL)
                    goto done;
                Py_buffer bi, bv;
                if (cell_index(PyTuple_GET_ITEM(kept, 0), &bi, 1) < 0)
                    goto done;
                if (bi.itemsize != 4 || bi.len != count * 4 ||
                    doubles(PyTuple_GET_ITEM(kept, 1), &bv, 1, count, "values") < 0) {
                    if (!PyErr_Occurred())
                        PyErr_SetString(PyExc_ValueError, "index_dtype: int32 expected");
                    PyBuffer_Release(&bi);
                    goto done;
                }
                roll_take(acc, marks, n, (int32_t *)bi.buf, (double *)bv.buf, scratch);
                PyBuffer_Release(&bv);
                PyBuffer_Release(&bi);
                if (!scratch && PyList_Append(spent, held_acc) < 0)
                    goto done;
            } else if (!scratch) { /* the array itself */
                kept = Py_NewRef(held_acc);
            } else { /* a copy: a spare array, else a new one */
                Py_ssize_t left = PyList_GET_SIZE(spare);
                if (left) {
                    kept = Py_NewRef(PyList_GET_ITEM(spare, left - 1));
                    if (PyList_SetSlice(spare, left - 1, left, NULL) < 0)
                        goto done;
                    Py_buffer bk;
                    if (doubles(kept, &bk, 1, n, "spare") < 0)
                        goto done;
                    memcpy(bk.buf, acc, (size_t)n * 8);
                    PyBuffer_Release(&bk);
                    roll_take(acc, marks, n, NULL, NULL, 1);
                } else if ((kept = PyObject_CallMethod(PyTuple_GET_ITEM(
                                PyList_GET_ITEM(ops, 0), 0), "copy", NULL)) == NULL) {
                    goto done;
                } else {
                    roll_take(acc, marks, n, NULL, NULL, 1);
                }
            }
            if (PyDict_SetItem(ring, key, kept) < 0)
                goto done;
            Py_CLEAR(kept);
            for (Py_ssize_t j = 0; j < nd && scratch; j++)
                zero_cells((double *)vp[1 + j].buf, n);
            for (Py_ssize_t j = 0; j <= nd; j++)
                PyBuffer_Release(&vp[j]);
            Py_CLEAR(ops);
            Py_CLEAR(held_acc);
            Py_CLEAR(held_dec);
        }
        Py_CLEAR(key);
        closed++;
        if (lost) /* the caller sums the windows again, then lets the ring go of a pane */
            break;
        /* the ring lets go of the pane no window holds any more (WindowSet._closed) */
        if ((key = PyLong_FromSsize_t(p - ring_len)) == NULL)
            goto done;
        PyObject *gone = PyDict_GetItemWithError(ring, key);
        if (gone == NULL && PyErr_Occurred())
            goto done;
        if (gone != NULL) {
            if (!PyTuple_Check(gone) && PyList_Append(spent, gone) < 0)
                goto done;
            if (PyDict_DelItem(ring, key) < 0)
                goto done;
        }
        Py_CLEAR(key);
        /* the batch's copies (ModelStage._take) */
        double *row = out + (at + taken * windows) * width;
        for (Py_ssize_t j = 0; j < windows; j++)
            memcpy(row + j * width, src[j], (size_t)width * 8);
        PyObject *pane = PyLong_FromSsize_t(p), *value = PyFloat_FromDouble(cum[seen_col]);
        int appended = pane != NULL && value != NULL && PyList_Append(panes, pane) == 0 &&
                       PyList_Append(seen, value) == 0;
        Py_XDECREF(pane);
        Py_XDECREF(value);
        if (!appended)
            goto done;
        taken++;
    }
    result = Py_BuildValue("nnK", closed, taken, lost);
done:
    Py_XDECREF(key);
    Py_XDECREF(ops);
    Py_XDECREF(kept);
    Py_XDECREF(held_acc);
    Py_XDECREF(held_dec);
    if (lv != NULL)
        for (Py_ssize_t i = 0; i < ns; i++)
            roll_leaving_release(&lv[i]);
    if (vp != NULL)
        for (Py_ssize_t j = 0; j <= nd; j++)
            if (vp[j].obj != NULL)
                PyBuffer_Release(&vp[j]);
    if (v != NULL)
        for (Py_ssize_t h = 0; h < most; h++)
            if (v[h].obj != NULL)
                PyBuffer_Release(&v[h]);
    PyMem_Free(v);
    PyMem_Free(vp);
    PyMem_Free(f);
    PyMem_Free(n_i);
    PyMem_Free(src);
    PyMem_Free(lv);
    PyMem_Free(marks);
    return result;
}

/* ------------------------------------------------------------- a join table's expired front
 * JoinBuffer.expire's scan (join.py): the keys of the entries at the front of a matched
 * ids' or early labels' dict (arrival order) whose event time is below a bound, in C (a
 * poll's pane closes expire thousands of matched ids). */

PyDoc_STRVAR(expired_front_doc,
"expired_front(table, before) -> list\n\n"
"The keys of table (a dict, or a subclass not overriding its iteration), from the first\n"
"in order, up to the first entry whose time is >= before: an entry's time is the value\n"
"when it is a float, else its ts attribute (as JoinBuffer.expire reads it; NaN times\n"
"are below any bound). Nothing is removed.");

static PyObject *expired_ts_name = NULL;

static PyObject *
expired_front(PyObject *self, PyObject *args)
{
    PyObject *table, *before;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O", &PyDict_Type, &table, &before))
        return NULL;
    if (expired_ts_name == NULL && (expired_ts_name = PyUnicode_InternFromString("ts")) == NULL)
        return NULL;
    int fast = PyFloat_Check(before);
    double bound = fast ? PyFloat_AS_DOUBLE(before) : 0.0;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(table, &pos, &key, &value)) {
        int later;
        if (fast && PyFloat_Check(value)) {
            later = PyFloat_AS_DOUBLE(value) >= bound;
        } else {
            Py_INCREF(key);
            PyObject *ts;
            if (PyFloat_Check(value)) {
                ts = Py_NewRef(value);
            } else {
                ts = PyObject_GetAttr(value, expired_ts_name);
            }
            if (ts == NULL) {
                Py_DECREF(key);
                Py_DECREF(out);
                return NULL;
            }
            if (fast && PyFloat_Check(ts))
                later = PyFloat_AS_DOUBLE(ts) >= bound;
            else
                later = PyObject_RichCompareBool(ts, before, Py_GE);
            Py_DECREF(ts);
            Py_DECREF(key);
            if (later < 0) {
                Py_DECREF(out);
                return NULL;
            }
        }
        if (later)
            break;
        if (PyList_Append(out, key) < 0) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

/* ------------------------------------------------------------- a matched table's inserts
 * MatchedTable.add_many (join.py) of every (model, partition) table a segment enters ids
 * into, in one call (with 100 models a poll has thousands of groups of a few ids): each id
 * probed in its table's index (as lookup probes) and, when new, appended as pending_add
 * appends a row (its bytes to the byte buffer, its end offset, CRC-32 and time to the
 * columns, its row into the first free slot from its home); and a table's ids as str for
 * the stored record (MatchedTable.ids: a checkpoint lists hundreds of thousands). */

/* The n ids pids[first:first + n] with times nts[0:n] entered into a matched table's
 * columns (rows of them, nslots slots matching shift; the first at rows used, room for n
 * more checked here): held ones take their time, others are appended. *added: rows
 * appended, *size_out: their ids' bytes; -1 with an error set (blob as it was). */
static int
matched_rows(PyObject *blob, double *ts, uint32_t *hashes, int64_t *ends, int32_t *slots,
             Py_ssize_t rows, Py_ssize_t nslots, int shift, Py_ssize_t at, PyObject *pids,
             Py_ssize_t first, Py_ssize_t n, const double *nts, Py_ssize_t *added,
             Py_ssize_t *size_out)
{
    Py_ssize_t start = PyByteArray_GET_SIZE(blob), total = 0;
    if (nslots == 0 || shift < 0 || shift > 31 || ((Py_ssize_t)1 << (32 - shift)) != nslots) {
        PyErr_SetString(PyExc_ValueError, "slots: a power of two matching shift expected");
        return -1;
    }
    if (at < 0 || at + n > rows || at + n > INT32_MAX || 5 * (at + n) > 3 * nslots ||
        (at ? ends[at - 1] : 0) != start) {
        PyErr_SetString(PyExc_ValueError, "columns or slots without room for the ids, new_ts "
                                          "not one per id, or ends not those of blob");
        return -1;
    }
    /* every id a str and every time a number before anything is written, each id's
     * CRC-32 (for the reads ahead of its probe); the room the bytes may take made at once */
    uint32_t *crcs = PyMem_Malloc((size_t)(n ? n : 1) * sizeof *crcs);
    if (crcs == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *p;
        Py_ssize_t size;
        PyObject *owned;
        if (nts[i] != nts[i]) {
            PyErr_SetString(PyExc_ValueError,
                            "a matched id needs its label's event time (NaN given)");
            PyMem_Free(crcs);
            return -1;
        }
        if (utf8_view(PyList_GET_ITEM(pids, first + i), &p, &size, &owned) < 0) {
            PyMem_Free(crcs);
            return -1;
        }
        crcs[i] = crc32_of((const unsigned char *)p, size);
        total += size;
        Py_XDECREF(owned);
    }
    if (PyByteArray_Resize(blob, start + total) < 0) {
        PyMem_Free(crcs);
        return -1;
    }
    /* (rows past the ones written hold no id yet: a read ahead of them only wastes a
     * prefetch) */
    probe_cols_t cols = {slots, shift, hashes, ts, ends, rows, PyByteArray_AS_STRING(blob),
                         start + total, NULL, NULL, NULL, 0};
    Py_ssize_t row = at, end = start, mask = nslots - 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        probe_ahead(&cols, crcs, i, n);
        const char *p;
        Py_ssize_t size;
        PyObject *owned;
        if (utf8_view(PyList_GET_ITEM(pids, first + i), &p, &size, &owned) < 0)
            goto shrink;
        uint32_t crc = crcs[i];
        const char *bytes = PyByteArray_AS_STRING(blob);
        /* the live row holding the id, else the first free slot: a dead row's, or the
         * empty one that ends the probe */
        Py_ssize_t pos = home(crc, shift), free = -1, probes = 0;
        int64_t found = -1;
        for (; probes < nslots; probes++) {
            int32_t r = slots[pos];
            if (r < 0)
                break;
            if (r >= row) {
                Py_XDECREF(owned);
                PyErr_SetString(PyExc_ValueError, "slots: a row beyond the rows used");
                goto shrink;
            }
            double t = ts[r];
            if (t != t) {
                if (free < 0)
                    free = pos;
            } else if (hashes[r] == crc) {
                int64_t e = ends[r], s = r ? ends[r - 1] : 0;
                if (e - s == size && memcmp(bytes + s, p, (size_t)size) == 0) {
                    found = r;
                    break;
                }
            }
            pos = (pos + 1) & mask;
        }
        if (found >= 0) {
            ts[found] = nts[i];
            Py_XDECREF(owned);
            continue;
        }
        if (free < 0) {
            if (probes == nslots) { /* (the 60 % bound checked above keeps an empty slot) */
                Py_XDECREF(owned);
                PyErr_SetString(PyExc_ValueError, "slots: the index is full");
                goto shrink;
            }
            free = pos;
        }
        memcpy(PyByteArray_AS_STRING(blob) + end, p, (size_t)size);
        Py_XDECREF(owned);
        end += size;
        ends[row] = end;
        hashes[row] = crc;
        ts[row] = nts[i];
        slots[free] = (int32_t)row;
        row++;
    }
    PyMem_Free(crcs);
    if (PyByteArray_Resize(blob, end) < 0)
        return -1;
    *added = row - at;
    *size_out = end - start;
    return 0;
shrink: /* the bytes as they were (the rows written past at are not counted as used) */
    PyMem_Free(crcs);
    {
        PyObject *type, *value, *trace;
        PyErr_Fetch(&type, &value, &trace);
        if (PyByteArray_Resize(blob, start) < 0)
            PyErr_Clear();
        PyErr_Restore(type, value, trace);
    }
    return -1;
}

PyDoc_STRVAR(matched_add_groups_doc,
"matched_add_groups(tables, sizes, pids, new_ts)\n\n"
"MatchedTable.add_many for many tables in one call: group g, the next sizes[g] (sizes: a\n"
"list of ints) of pids with their times of new_ts (float64), entered into tables[g] as\n"
"dict.update enters them (a held id, or one listed again, takes its new time in place;\n"
"each other is appended as a row, into the first slot from its home that is empty or\n"
"holds a dead row; room made by the table's _room first when it has too little), and\n"
"the table's _used, _live, _id_bytes, _memo and front_ts (the time of its row _head)\n"
"updated. A table may be in several groups. ValueError for a NaN time (the groups\n"
"before it entered).");

/* matched_add_groups's step: pids[first:first + n], times nts[0:n], into table. */
static int
matched_table_add(PyObject *table, PyObject *pids, Py_ssize_t first, Py_ssize_t n,
                  const double *nts)
{
    static const Py_ssize_t sizes_of[4] = {8, 4, 8, 4};
    static const int names[4] = {A_TS, A_HASH, A_ENDS, A_SLOTS};
    Py_ssize_t used, rows, nslots, shift, live, id_bytes, head, added, size;
    if (get_int(table, A_USED, &used) < 0 || get_len(table, A_TS, &rows) < 0 ||
        get_len(table, A_SLOTS, &nslots) < 0)
        return -1;
    if (used + n > rows || 5 * (used + n) > 3 * nslots) { /* what _room changes */
        PyObject *r = PyObject_CallMethod(table, "_room", "n", n);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    PyObject *cols[4] = {NULL}, *blob = NULL, *front = NULL;
    arg_t t[4];
    int ok = -1, held = 0;
    for (int j = 0; j < 4; j++) {
        if ((cols[j] = PyObject_GetAttr(table, attr_name[names[j]])) == NULL)
            goto out;
        t[j].obj = cols[j];
        t[j].itemsize = sizes_of[j];
        t[j].writable = 1;
        t[j].what = attr_text[names[j]];
    }
    if ((blob = PyObject_GetAttr(table, attr_name[A_BLOB])) == NULL ||
        get_int(table, A_SHIFT, &shift) < 0 || get_int(table, A_LIVE, &live) < 0 ||
        get_int(table, A_ID_BYTES, &id_bytes) < 0 || get_int(table, A_HEAD, &head) < 0)
        goto out;
    if (!PyByteArray_Check(blob)) {
        PyErr_SetString(PyExc_TypeError, "_blob: a bytearray expected");
        goto out;
    }
    if (acquire(t, 4) < 0)
        goto out;
    held = 1;
    rows = t[0].buf.len / 8;
    if (t[1].buf.len / 4 != rows || t[2].buf.len / 8 != rows || head < 0 || head > used) {
        PyErr_SetString(PyExc_ValueError, "a matched table's columns do not fit");
        goto out;
    }
    if (shift < 0 || shift > 31) {
        PyErr_SetString(PyExc_ValueError, "slots: a power of two matching shift expected");
        goto out;
    }
    double *ts = (double *)t[0].buf.buf;
    if (matched_rows(blob, ts, (uint32_t *)t[1].buf.buf, (int64_t *)t[2].buf.buf,
                     (int32_t *)t[3].buf.buf, rows, t[3].buf.len / 4, (int)shift, used, pids,
                     first, n, nts, &added, &size) < 0)
        goto out;
    if ((front = PyFloat_FromDouble(ts[head])) == NULL)
        goto out;
    if (set_int(table, A_USED, used + added) < 0 || set_int(table, A_LIVE, live + added) < 0 ||
        set_int(table, A_ID_BYTES, id_bytes + size) < 0 ||
        PyObject_SetAttr(table, attr_name[A_MEMO], Py_None) < 0 ||
        PyObject_SetAttr(table, attr_name[A_FRONT], front) < 0)
        goto out;
    ok = 0;
out:
    if (held)
        release(t, 4);
    for (int j = 0; j < 4; j++)
        Py_XDECREF(cols[j]);
    Py_XDECREF(blob);
    Py_XDECREF(front);
    return ok;
}

static PyObject *
matched_add_groups(PyObject *self, PyObject *args)
{
    PyObject *tables, *o_sizes, *pids, *o_ts;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!O!O", &PyList_Type, &tables, &PyList_Type, &o_sizes,
                          &PyList_Type, &pids, &o_ts))
        return NULL;
    arg_t a[] = {{o_ts, 8, 0, "new_ts"}};
    if (acquire(a, 1) < 0)
        return NULL;
    PyObject *result = NULL;
    const double *ts = (const double *)a[0].buf.buf;
    Py_ssize_t groups = PyList_GET_SIZE(tables), n = PyList_GET_SIZE(pids);
    int64_t *sizes = PyMem_Malloc((size_t)(groups ? groups : 1) * sizeof *sizes);
    if (sizes == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (PyList_GET_SIZE(o_sizes) != groups || a[0].buf.len / 8 != n) {
        PyErr_SetString(PyExc_ValueError, "sizes: one per table; new_ts: one per id");
        goto done;
    }
    for (Py_ssize_t g = 0; g < groups; g++) {
        sizes[g] = PyLong_AsLongLong(PyList_GET_ITEM(o_sizes, g));
        if (sizes[g] == -1 && PyErr_Occurred())
            goto done;
    }
    if (!split_ok(sizes, groups, n))
        goto done;
    Py_ssize_t first = 0;
    for (Py_ssize_t g = 0; g < groups; g++) {
        if (sizes[g] && matched_table_add(PyList_GET_ITEM(tables, g), pids, first, sizes[g],
                                          ts + first) < 0)
            goto done;
        first += sizes[g];
    }
    result = Py_NewRef(Py_None);
done:
    PyMem_Free(sizes);
    release(a, 1);
    return result;
}

PyDoc_STRVAR(matched_ids_doc,
"matched_ids(blob, ends, start, stop) -> list[str]\n\n"
"The ids of rows start, start + 1, ..., stop - 1 (all live, as a matched table's are),\n"
"each decoded from its UTF-8 bytes in blob (ends: int64 end offsets; lone surrogates\n"
"passed through, as the 'surrogatepass' error handler does).");

static PyObject *
matched_ids(PyObject *self, PyObject *args)
{
    PyObject *o_blob, *o_ends;
    Py_ssize_t start, stop;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOnn", &o_blob, &o_ends, &start, &stop))
        return NULL;
    arg_t a[] = {{o_blob, 1, 0, "blob"}, {o_ends, 8, 0, "ends"}};
    if (acquire(a, 2) < 0)
        return NULL;
    const char *blob = (const char *)a[0].buf.buf;
    const int64_t *ends = (const int64_t *)a[1].buf.buf;
    Py_ssize_t blob_len = a[0].buf.len, rows = a[1].buf.len / 8;
    PyObject *out = NULL;
    if (start < 0 || stop < start || stop > rows) {
        PyErr_SetString(PyExc_ValueError, "rows beyond the columns");
        goto done;
    }
    out = PyList_New(stop - start);
    if (out == NULL)
        goto done;
    for (Py_ssize_t row = start; row < stop; row++) {
        int64_t s = row ? ends[row - 1] : 0, e = ends[row];
        if (s < 0 || e < s || e > blob_len) {
            PyErr_SetString(PyExc_ValueError, "ends: an id beyond the byte buffer");
            Py_CLEAR(out);
            goto done;
        }
        PyObject *pid = PyUnicode_DecodeUTF8(blob + s, (Py_ssize_t)(e - s), "surrogatepass");
        if (pid == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, row - start, pid);
    }
done:
    release(a, 2);
    return out;
}

/* ------------------------------------------------------------- owner removals of many tables
 * OwnerIndex.remove of the ids many pending tables of one partition gave up (join.py,
 * pop_groups): one call for the partition instead of one per (model) table. */

PyDoc_STRVAR(owner_remove_groups_doc,
"owner_remove_groups(crc, model, count, shift, crcs, starts, sizes, models)\n\n"
"Uncount, group after group, the ids crcs[starts[g]:starts[g] + sizes[g]] (uint32 CRC-32s)\n"
"of model models[g] (starts, sizes, models: int64) in the owner table, as owner_change\n"
"with sign -1 does for each group in turn. KeyError when an id that was not counted is\n"
"uncounted (the groups before it, and its ids before it, changed).");

static PyObject *
owner_remove_groups(PyObject *self, PyObject *args)
{
    PyObject *o_crc, *o_model, *o_count, *o_crcs, *o_starts, *o_sizes, *o_models;
    int shift;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOiOOOO", &o_crc, &o_model, &o_count, &shift, &o_crcs,
                          &o_starts, &o_sizes, &o_models))
        return NULL;
    arg_t a[] = {
        {o_crc, 4, 1, "crc"},       {o_model, 4, 1, "model"}, {o_count, 4, 1, "count"},
        {o_crcs, 4, 0, "crcs"},     {o_starts, 8, 0, "starts"}, {o_sizes, 8, 0, "sizes"},
        {o_models, 8, 0, "models"},
    };
    const int nargs = (int)(sizeof a / sizeof a[0]);
    if (acquire(a, nargs) < 0)
        return NULL;
    PyObject *result = NULL;
    if (!owner_table_ok(&a[0], &a[1], &a[2], shift))
        goto done;
    Py_ssize_t groups = a[4].buf.len / 8, ncrcs = a[3].buf.len / 4;
    const int64_t *starts = (const int64_t *)a[4].buf.buf;
    const int64_t *sizes = (const int64_t *)a[5].buf.buf;
    const int64_t *models = (const int64_t *)a[6].buf.buf;
    if (a[5].buf.len / 8 != groups || a[6].buf.len / 8 != groups) {
        PyErr_SetString(PyExc_ValueError, "starts, sizes, models: one length expected");
        goto done;
    }
    for (Py_ssize_t g = 0; g < groups; g++)
        if (starts[g] < 0 || sizes[g] < 0 || starts[g] > ncrcs || sizes[g] > ncrcs - starts[g] ||
            models[g] < 0 || models[g] > INT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "a group beyond the crcs, or a model < 0");
            goto done;
        }
    const uint32_t *crcs = (const uint32_t *)a[3].buf.buf;
    long filled = 0; /* (removals fill no slot) */
    for (Py_ssize_t g = 0; g < groups; g++)
        if (owner_count((uint32_t *)a[0].buf.buf, (int32_t *)a[1].buf.buf,
                        (int32_t *)a[2].buf.buf, a[0].buf.len / 4, shift, crcs + starts[g],
                        (Py_ssize_t)sizes[g], (int)models[g], -1, &filled) < 0)
            goto done;
    result = Py_NewRef(Py_None);
done:
    release(a, nargs);
    return result;
}

/* ---------------------------------------------------------------- a poll's event columns
 * The per-message reads of stage 1's planner (fastpath.py, _segment and the plans) and of
 * Engine.process, each one C loop in place of Python bytecode (or a rich comparison) per
 * message: the attributes of a segment's decoded events as lists (attr_lists: ids, models,
 * values), the failed decodes (none_at), each input topic's messages (topic_at) and the
 * record timestamps as float64 (as_floats). Each declines (or its caller checks) what the
 * Python code beside its caller would read otherwise; tests/core/test_native_planner.py
 * holds them to that code. */

PyDoc_STRVAR(attr_lists_doc,
"attr_lists(objs, names) -> tuple of lists, or None\n\n"
"For the list objs and the tuple of str names, a list per name of that attribute of each\n"
"item, in order (a slot of the items' type read directly). None, with nothing made, when\n"
"an item is None or lacks an attribute (the caller reads them in Python).");

static PyObject *
attr_lists(PyObject *self, PyObject *args)
{
    PyObject *objs, *names;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!", &PyList_Type, &objs, &PyTuple_Type, &names))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(objs), nf = PyTuple_GET_SIZE(names);
    PyObject *out = PyTuple_New(nf);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t j = 0; j < nf; j++) {
        PyObject *col = PyList_New(n);
        if (col == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, j, col);
    }
    if (n == 0)
        return out;
    PyMemberDef **members = PyMem_Calloc((size_t)nf, sizeof(PyMemberDef *));
    if (members == NULL && nf) {
        Py_DECREF(out);
        return PyErr_NoMemory();
    }
    /* The slots of the first item's type: its items are read through them, the others
     * (a general decode's events among typed ones) by name. */
    PyTypeObject *kind = Py_TYPE(PyList_GET_ITEM(objs, 0));
    for (Py_ssize_t j = 0; j < nf; j++) {
        PyObject *d = _PyType_Lookup(kind, PyTuple_GET_ITEM(names, j)); /* borrowed */
        if (d != NULL && Py_IS_TYPE(d, &PyMemberDescr_Type) &&
            PyType_IsSubtype(kind, PyDescr_TYPE(d)))
            members[j] = ((PyMemberDescrObject *)d)->d_member;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = PyList_GET_ITEM(objs, i);
        int fast = Py_TYPE(o) == kind;
        if (o == Py_None)
            goto decline;
        for (Py_ssize_t j = 0; j < nf; j++) {
            PyObject *v = (fast && members[j] != NULL)
                              ? PyMember_GetOne((const char *)o, members[j])
                              : PyObject_GetAttr(o, PyTuple_GET_ITEM(names, j));
            if (v == NULL) {
                if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
                    PyErr_Clear();
                    goto decline;
                }
                PyMem_Free(members);
                Py_DECREF(out);
                return NULL;
            }
            PyList_SET_ITEM(PyTuple_GET_ITEM(out, j), i, v);
        }
    }
    PyMem_Free(members);
    return out;
decline:
    PyMem_Free(members);
    Py_DECREF(out);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(none_at_doc,
"none_at(objs) -> list of int\n\n"
"The places of the items of the list objs that are None (compared by identity: no\n"
"comparison of each item with None, which costs a rich comparison an item).");

static PyObject *
none_at(PyObject *self, PyObject *args)
{
    PyObject *objs;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!", &PyList_Type, &objs))
        return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(objs); i++) {
        if (PyList_GET_ITEM(objs, i) != Py_None)
            continue;
        PyObject *at = PyLong_FromSsize_t(i);
        if (at == NULL || PyList_Append(out, at) < 0) {
            Py_XDECREF(at);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(at);
    }
    return out;
}

/* Whether the topic t is the topic want (None: no such topic): the same object (a poll's
 * topics are mostly the source's own), else equal. 1, 0, or -1 with an error set. */
static int
topic_is(PyObject *t, PyObject *want)
{
    if (want == Py_None)
        return 0;
    if (t == want)
        return 1;
    if (PyUnicode_CheckExact(t) && PyUnicode_CheckExact(want))
        return PyUnicode_GET_LENGTH(t) == PyUnicode_GET_LENGTH(want) &&
               PyUnicode_Compare(t, want) == 0;
    return PyObject_RichCompareBool(t, want, Py_EQ);
}

PyDoc_STRVAR(topic_at_doc,
"topic_at(topics, a, b, pt, lt) -> (list of int, list of int)\n\n"
"The indices i in range(a, b) of the list topics with topics[i] == pt, and those with\n"
"topics[i] == lt (pt and lt: the two input topics, None where there is none).");

static PyObject *
topic_at(PyObject *self, PyObject *args)
{
    PyObject *topics, *pt, *lt;
    Py_ssize_t a, b;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!nnOO", &PyList_Type, &topics, &a, &b, &pt, &lt))
        return NULL;
    if (a < 0 || b > PyList_GET_SIZE(topics) || a > b) {
        PyErr_SetString(PyExc_ValueError, "a, b: a range of topics");
        return NULL;
    }
    /* The last object found to be each topic, and one found to be neither (held: compared
     * by address): a poll's topics are a few objects, most compared by address alone. */
    PyObject *seen[3] = {NULL, NULL, NULL};
    PyObject *lists[2] = {PyList_New(0), PyList_New(0)};
    if (lists[0] == NULL || lists[1] == NULL)
        goto fail;
    for (Py_ssize_t i = a; i < b; i++) {
        if (b > PyList_GET_SIZE(topics)) {
            PyErr_SetString(PyExc_RuntimeError, "topics changed size");
            goto fail;
        }
        PyObject *t = PyList_GET_ITEM(topics, i);
        int is; /* 1 pt, 2 lt, 0 neither */
        if (t == seen[1])
            is = 1;
        else if (t == seen[2])
            is = 2;
        else if (t == seen[0])
            is = 0;
        else {
            Py_INCREF(t); /* a comparison may run Python code */
            is = topic_is(t, pt);
            if (is == 0 && (is = topic_is(t, lt)) > 0)
                is = 2;
            if (is < 0) {
                Py_DECREF(t);
                goto fail;
            }
            Py_XSETREF(seen[is], t); /* takes the reference */
        }
        if (is == 0)
            continue;
        PyObject *at = PyLong_FromSsize_t(i);
        if (at == NULL || PyList_Append(lists[is - 1], at) < 0) {
            Py_XDECREF(at);
            goto fail;
        }
        Py_DECREF(at);
    }
    for (int k = 0; k < 3; k++)
        Py_XDECREF(seen[k]);
    return Py_BuildValue("(NN)", lists[0], lists[1]);
fail:
    for (int k = 0; k < 3; k++)
        Py_XDECREF(seen[k]);
    Py_XDECREF(lists[0]);
    Py_XDECREF(lists[1]);
    return NULL;
}

PyDoc_STRVAR(as_floats_doc,
"as_floats(items, out) -> bool\n\n"
"Each item of the list items (an int or a float, exactly those types) as float64 into out\n"
"(float64, len(items) items), as float(item) makes it. False, with out partly written,\n"
"when an item is of another type or an int too large for a float (the caller converts\n"
"them with numpy, which raises or converts as it does).");

static PyObject *
as_floats(PyObject *self, PyObject *args)
{
    PyObject *items, *o_out;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O", &PyList_Type, &items, &o_out))
        return NULL;
    arg_t a[] = {{o_out, 8, 1, "out"}};
    if (acquire(a, 1) < 0)
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = PyList_GET_SIZE(items);
    if (a[0].buf.len / 8 != n) {
        PyErr_SetString(PyExc_ValueError, "out: len(items) items expected");
        goto done;
    }
    double *out = (double *)a[0].buf.buf;
    int ok = 1;
    for (Py_ssize_t i = 0; i < n && ok; i++) {
        PyObject *v = PyList_GET_ITEM(items, i);
        if (PyFloat_CheckExact(v)) {
            out[i] = PyFloat_AS_DOUBLE(v);
        } else if (PyLong_CheckExact(v)) {
            double d = PyLong_AsDouble(v);
            if (d == -1.0 && PyErr_Occurred()) {
                if (!PyErr_ExceptionMatches(PyExc_OverflowError))
                    goto done;
                PyErr_Clear();
                ok = 0;
            }
            out[i] = d;
        } else {
            ok = 0;
        }
    }
    result = Py_NewRef(ok ? Py_True : Py_False);
done:
    release(a, 1);
    return result;
}

/* ---------------------------------------------------------------------------------------
 * A pane close's signal dicts (monitor/core/model.py, keyed_rows): per row of a float64
 * matrix, a copy of the template dict with the row's values written in under the labels,
 * what the Python code beside its caller makes by template.copy() and update(zip(labels,
 * row)) of values.tolist()'s rows, without a list of floats per row nor a tuple per
 * value. tests/core/test_keyed_rows.py holds both to the same dicts. */

PyDoc_STRVAR(keyed_rows_doc,
"keyed_rows(template, labels, values) -> list of dict\n\n"
"For the dict template, the list of str labels and the C-contiguous float64 buffer values\n"
"(a whole number of rows of len(labels) values), per row a copy of template with\n"
"copy[labels[i]] = float(row[i]) written in order.");

static PyObject *
keyed_rows(PyObject *self, PyObject *args)
{
    PyObject *template, *labels, *o_values;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!O", &PyDict_Type, &template, &PyList_Type, &labels,
                          &o_values))
        return NULL;
    arg_t a[] = {{o_values, 8, 0, "values"}};
    if (acquire(a, 1) < 0)
        return NULL;
    PyObject *out = NULL;
    Py_ssize_t width = PyList_GET_SIZE(labels);
    Py_ssize_t total = a[0].buf.len / 8;
    if (width == 0 || total % width != 0) {
        PyErr_SetString(PyExc_ValueError, "values: a whole number of rows of len(labels) expected");
        goto done;
    }
    for (Py_ssize_t i = 0; i < width; i++) {
        if (!PyUnicode_CheckExact(PyList_GET_ITEM(labels, i))) {
            PyErr_SetString(PyExc_TypeError, "labels: str expected");
            goto done;
        }
    }
    Py_ssize_t rows = total / width;
    const double *v = (const double *)a[0].buf.buf;
    out = PyList_New(rows);
    if (out == NULL)
        goto done;
    for (Py_ssize_t r = 0; r < rows; r++) {
        PyObject *d = PyDict_Copy(template);
        if (d == NULL)
            goto fail;
        PyList_SET_ITEM(out, r, d);
        for (Py_ssize_t i = 0; i < width; i++) {
            PyObject *f = PyFloat_FromDouble(*v++);
            if (f == NULL)
                goto fail;
            int bad = PyDict_SetItem(d, PyList_GET_ITEM(labels, i), f);
            Py_DECREF(f);
            if (bad < 0)
                goto fail;
        }
    }
    goto done;
fail:
    Py_CLEAR(out);
done:
    release(a, 1);
    return out;
}

/* ---------------------------------------------------------------- a poll's picked items
 * The planner's picks of a segment's items by their places (fastpath.py, _pick): the ids,
 * events and values of rows of a (model, partition) group, in one C loop with the list
 * made at its size, in place of list(map(items.__getitem__, places)) (a call, an index
 * conversion and a list growth per item). tests/core/test_pick.py holds it to that code. */

PyDoc_STRVAR(take_items_doc,
"take_items(items, places) -> list, or None\n\n"
"The items of the list items at places (a list of ints, or a C-contiguous 1-D int64\n"
"array), in order: list(map(items.__getitem__, places)), a negative place counted from the\n"
"end, IndexError for one out of range. None, with nothing made, for places of another\n"
"kind or a place that is not an int (the caller picks them in Python).");

static PyObject *
take_items(PyObject *self, PyObject *args)
{
    PyObject *items, *places;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O", &PyList_Type, &items, &places))
        return NULL;
    if (PyList_CheckExact(places)) {
        Py_ssize_t m = PyList_GET_SIZE(places);
        PyObject *out = PyList_New(m);
        if (out == NULL)
            return NULL;
        for (Py_ssize_t k = 0; k < m; k++) {
            if (k >= PyList_GET_SIZE(places)) {
                PyErr_SetString(PyExc_RuntimeError, "places changed size");
                Py_DECREF(out);
                return NULL;
            }
            PyObject *o = PyList_GET_ITEM(places, k);
            if (!PyLong_CheckExact(o)) {
                Py_DECREF(out);
                Py_RETURN_NONE;
            }
            Py_ssize_t i = PyLong_AsSsize_t(o);
            if (i == -1 && PyErr_Occurred()) {
                if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
                    PyErr_Clear();
                    PyErr_SetString(PyExc_IndexError, "cannot fit 'int' into an index-sized integer");
                }
                Py_DECREF(out);
                return NULL;
            }
            Py_ssize_t n = PyList_GET_SIZE(items);
            if (i < 0)
                i += n;
            if (i < 0 || i >= n) {
                PyErr_SetString(PyExc_IndexError, "list index out of range");
                Py_DECREF(out);
                return NULL;
            }
            PyList_SET_ITEM(out, k, Py_NewRef(PyList_GET_ITEM(items, i)));
        }
        return out;
    }
    Py_buffer view;
    if (!PyObject_CheckBuffer(places) ||
        np_view(places, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    PyObject *out = NULL;
    if (view.ndim != 1 || view.itemsize != 8 || view.format == NULL ||
        (strcmp(view.format, "l") != 0 && strcmp(view.format, "q") != 0)) {
        out = Py_NewRef(Py_None);
        goto done;
    }
    const int64_t *at = (const int64_t *)view.buf;
    Py_ssize_t m = view.len / 8, n = PyList_GET_SIZE(items);
    out = PyList_New(m);
    if (out == NULL)
        goto done;
    for (Py_ssize_t k = 0; k < m; k++) {
        int64_t i = at[k] < 0 ? at[k] + n : at[k];
        if (i < 0 || i >= n) {
            PyErr_SetString(PyExc_IndexError, "list index out of range");
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, k, Py_NewRef(PyList_GET_ITEM(items, (Py_ssize_t)i)));
    }
done:
    PyBuffer_Release(&view);
    return out;
}

PyDoc_STRVAR(pair_columns_doc,
"pair_columns(pairs) -> (firsts, seconds), or None\n\n"
"For the list pairs of 2-tuples, the list of their first items and the list of their\n"
"second items, in order: list(map(itemgetter(0), pairs)), list(map(itemgetter(1),\n"
"pairs)). None, with nothing made, when an item is not a tuple of two (the caller reads\n"
"them in Python).");

static PyObject *
pair_columns(PyObject *self, PyObject *args)
{
    PyObject *pairs;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!", &PyList_Type, &pairs))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(pairs);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyList_GET_ITEM(pairs, i);
        if (!PyTuple_CheckExact(t) || PyTuple_GET_SIZE(t) != 2)
            Py_RETURN_NONE;
    }
    PyObject *firsts = PyList_New(n), *seconds = PyList_New(n);
    if (firsts == NULL || seconds == NULL) {
        Py_XDECREF(firsts);
        Py_XDECREF(seconds);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyList_GET_ITEM(pairs, i);
        PyList_SET_ITEM(firsts, i, Py_NewRef(PyTuple_GET_ITEM(t, 0)));
        PyList_SET_ITEM(seconds, i, Py_NewRef(PyTuple_GET_ITEM(t, 1)));
    }
    return Py_BuildValue("(NN)", firsts, seconds);
}

PyDoc_STRVAR(contained_at_doc,
"contained_at(items, container, want) -> list, or None\n\n"
"The places in the list items of the str items that are in the set, frozenset or dict\n"
"container (want true), or that are not (want false), in order. None, with nothing made,\n"
"for a container of another type or an item that is not a str (the caller finds them in\n"
"Python).");

static PyObject *
contained_at(PyObject *self, PyObject *args)
{
    PyObject *items, *container;
    int want;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!Op", &PyList_Type, &items, &container, &want))
        return NULL;
    int is_dict = PyDict_CheckExact(container);
    if (!is_dict && !PySet_CheckExact(container) && !PyFrozenSet_CheckExact(container))
        Py_RETURN_NONE;
    Py_ssize_t n = PyList_GET_SIZE(items);
    for (Py_ssize_t i = 0; i < n; i++)
        if (!PyUnicode_CheckExact(PyList_GET_ITEM(items, i)))
            Py_RETURN_NONE;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        Py_INCREF(item); /* a str's hash and equality run no Python code; held all the same */
        int in = is_dict ? PyDict_Contains(container, item) : PySet_Contains(container, item);
        Py_DECREF(item);
        if (in < 0)
            goto fail;
        if (in == want) {
            PyObject *at = PyLong_FromSsize_t(i);
            if (at == NULL || PyList_Append(out, at) < 0) {
                Py_XDECREF(at);
                goto fail;
            }
            Py_DECREF(at);
        }
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* ---------------------------------------------------------------- arrays joined end to end
 * A list of numpy arrays put end to end (along the first axis) into one fresh array, as
 * np.concatenate(parts) makes it (monitor/core/fastpath.py, joined; monitor/core/engine.py,
 * _beside), or of rows each put together side by side from a tuple of 2-D arrays first
 * (np.concatenate(part, axis=1) of each tuple): the same values, dtype and shape, read
 * through the buffer protocol and copied by memcpy. A poll of 100 models joins a few
 * thousand per-model arrays of a few dozen rows, and np.concatenate's set-up costs more a
 * part (a view and a cast loop of each) than the copy of its rows. It declines (None, and
 * nothing made) unless every part is an array of one type and one dtype (the same object:
 * a plain number or bool in native order), all 1-D or all 2-D of one width, and none is a
 * part of more than JOIN_STRIDED_MOST items whose rows are not contiguous (a transposed
 * view, which numpy copies in a better order): the caller's np.concatenate then does
 * what it does. tests/core/test_join_rows.py holds it to
 * np.concatenate. */

/* Whether dtype (a numpy dtype) is a plain number or bool in native order (its char one
 * of these, isnative true): no objects, no fields. 1 yes, 0 no, -1 with an error set. */
static int
join_dtype(PyObject *dtype)
{
    PyObject *ch = PyObject_GetAttrString(dtype, "char");
    if (ch == NULL)
        return -1;
    const char *c = PyUnicode_Check(ch) ? PyUnicode_AsUTF8(ch) : NULL;
    int plain = c != NULL && c[0] != '\0' && c[1] == '\0' && strchr("?bBhHiIlLqQefd", c[0]) != NULL;
    Py_DECREF(ch);
    if (!plain)
        return PyErr_Occurred() ? -1 : 0;
    PyObject *native = PyObject_GetAttrString(dtype, "isnative");
    if (native == NULL)
        return -1;
    int yes = PyObject_IsTrue(native);
    Py_DECREF(native);
    return yes;
}

/* Copy the (rows, width) strided block at src (strides s0, s1) into dst, whose rows are
 * pitch bytes apart. */
static void
join_copy(char *dst, Py_ssize_t pitch, const char *src, Py_ssize_t rows, Py_ssize_t width,
          Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t itemsize)
{
    Py_ssize_t line = width * itemsize;
    if (rows == 0 || width == 0)
        return;
    if ((s1 == itemsize || width == 1) && (s0 == line || rows == 1) && pitch == line) {
        memcpy(dst, src, (size_t)(rows * line));
        return;
    }
    if (s1 == itemsize || width == 1) {
        for (Py_ssize_t i = 0; i < rows; i++)
            memcpy(dst + i * pitch, src + i * s0, (size_t)line);
        return;
    }
    if (itemsize == 8) { /* along the source's shorter stride, four at a time */
        Py_ssize_t outer = rows, inner = width, so = s0, si = s1, dout = pitch, din = 8;
        if ((s0 < 0 ? -s0 : s0) < (s1 < 0 ? -s1 : s1)) {
            outer = width, inner = rows, so = s1, si = s0, dout = 8, din = pitch;
        }
        for (Py_ssize_t i = 0; i < outer; i++) {
            char *d = dst + i * dout;
            const char *s = src + i * so;
            Py_ssize_t j = 0;
            for (; j + 4 <= inner; j += 4) {
                uint64_t v0, v1, v2, v3;
                memcpy(&v0, s + j * si, 8);
                memcpy(&v1, s + (j + 1) * si, 8);
                memcpy(&v2, s + (j + 2) * si, 8);
                memcpy(&v3, s + (j + 3) * si, 8);
                memcpy(d + j * din, &v0, 8);
                memcpy(d + (j + 1) * din, &v1, 8);
                memcpy(d + (j + 2) * din, &v2, 8);
                memcpy(d + (j + 3) * din, &v3, 8);
            }
            for (; j < inner; j++)
                memcpy(d + j * din, s + j * si, 8);
        }
        return;
    }
    for (Py_ssize_t i = 0; i < rows; i++) {
        char *d = dst + i * pitch;
        const char *s = src + i * s0;
        for (Py_ssize_t j = 0; j < width; j++)
            memcpy(d + j * itemsize, s + j * s1, (size_t)itemsize);
    }
}

PyDoc_STRVAR(join_rows_doc,
"join_rows(parts, empty) -> array, or None\n\n"
"np.concatenate(parts) of the list parts of numpy arrays (a tuple of 2-D arrays in it: \n"
"np.concatenate(part, axis=1) of them), in a fresh array made by empty(shape, dtype) (numpy's\n"
"np.empty): the same values, dtype and shape. None, with nothing made, unless the parts are\n"
"arrays of one type and one dtype (a plain number or bool in native order), all 1-D or all\n"
"2-D of one width.");

static PyObject *join_dtype_name; /* "dtype", interned */

#define JOIN_FEW 128 /* parts whose buffers are held on the stack (more: on the heap) */
#define JOIN_STRIDED_MOST 4096 /* items of a part copied element by element, at most */

static PyObject *
join_rows(PyObject *self, PyObject *args)
{
    PyObject *o_parts, *empty;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO", &o_parts, &empty))
        return NULL;
    if (join_dtype_name == NULL && (join_dtype_name = PyUnicode_InternFromString("dtype")) == NULL)
        return NULL;
    PyObject *parts = PySequence_Fast(o_parts, "parts: a sequence expected");
    if (parts == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(parts), pieces = 0;
    PyObject **items = PySequence_Fast_ITEMS(parts);
    for (Py_ssize_t i = 0; i < n; i++)
        pieces += PyTuple_Check(items[i]) ? PyTuple_GET_SIZE(items[i]) : 1;
    if (n == 0 || pieces == 0) {
        Py_DECREF(parts);
        Py_RETURN_NONE;
    }
    Py_buffer few[JOIN_FEW];
    Py_buffer *bufs = pieces <= JOIN_FEW ? few : PyMem_Malloc((size_t)pieces * sizeof(Py_buffer));
    if (bufs == NULL) {
        Py_DECREF(parts);
        return PyErr_NoMemory();
    }
    Py_ssize_t held = 0;
    PyObject *result = NULL, *out = NULL, *shape = NULL, *dtype = NULL;
    /* each part's dtype by its type's descriptor, called directly (not looked up a part) */
    PyObject *getter = NULL;
    descrgetfunc get = NULL;
    PyTypeObject *type = NULL;
    Py_ssize_t itemsize = 0, rows = 0, width = -1;
    int ndim = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = items[i];
        int side = PyTuple_Check(item);
        Py_ssize_t k = side ? PyTuple_GET_SIZE(item) : 1, own_rows = -1, own_width = 0;
        if (k == 0)
            goto decline;
        for (Py_ssize_t j = 0; j < k; j++) {
            PyObject *a = side ? PyTuple_GET_ITEM(item, j) : item;
            if (type == NULL) {
                type = Py_TYPE(a);
                getter = _PyType_Lookup(type, join_dtype_name); /* borrowed */
                if (getter == NULL || (get = Py_TYPE(getter)->tp_descr_get) == NULL)
                    goto decline;
                Py_INCREF(getter);
            }
            if (Py_TYPE(a) != type || !PyObject_CheckBuffer(a))
                goto decline;
            PyObject *own = get(getter, a, (PyObject *)type);
            if (own == NULL) {
                PyErr_Clear();
                goto decline;
            }
            Py_DECREF(own); /* (compared by identity: held by the array) */
            if (dtype == NULL) {
                int plain = join_dtype(own);
                if (plain < 0)
                    goto done;
                if (!plain)
                    goto decline;
                dtype = Py_NewRef(own);
            }
            else if (own != dtype)
                goto decline;
            Py_buffer *b = &bufs[held];
            if (np_view(a, b, PyBUF_STRIDES) < 0) {
                PyErr_Clear();
                goto decline;
            }
            held++;
            if (b->strides == NULL || b->shape == NULL)
                goto decline;
            if (held == 1) {
                itemsize = b->itemsize;
                ndim = side ? 2 : b->ndim;
                if (ndim != 1 && ndim != 2)
                    goto decline;
            }
            if (b->itemsize != itemsize || b->ndim != ndim)
                goto decline;
            /* a large part whose rows are not contiguous (a transposed view): numpy's
             * copy of it walks the memory better than join_copy's element by element */
            if (ndim == 2 && b->shape[1] > 1 && b->strides[1] != itemsize &&
                b->shape[0] * b->shape[1] > JOIN_STRIDED_MOST)
                goto decline;
            if (own_rows >= 0 && b->shape[0] != own_rows)
                goto decline;
            own_rows = b->shape[0];
            own_width += ndim == 2 ? b->shape[1] : 1;
        }
        if (ndim == 2 && width >= 0 && own_width != width)
            goto decline;
        width = own_width;
        rows += own_rows;
    }
    if (dtype == NULL)
        goto decline;
    shape = ndim == 2 ? Py_BuildValue("(nn)", rows, width) : Py_BuildValue("(n)", rows);
    if (shape == NULL)
        goto done;
    out = PyObject_CallFunctionObjArgs(empty, shape, dtype, NULL);
    if (out == NULL)
        goto done;
    if (Py_TYPE(out) != type)
        goto decline;
    Py_buffer vo;
    if (np_view(out, &vo, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0)
        goto done;
    if (vo.len != rows * (ndim == 2 ? width : 1) * itemsize) {
        PyBuffer_Release(&vo);
        PyErr_SetString(PyExc_ValueError, "empty: an array of the shape asked expected");
        goto done;
    }
    {
        Py_ssize_t pitch = (ndim == 2 ? width : 1) * itemsize, row = 0, at = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *item = items[i];
            Py_ssize_t k = PyTuple_Check(item) ? PyTuple_GET_SIZE(item) : 1, column = 0, r = 0;
            for (Py_ssize_t j = 0; j < k; j++, at++) {
                Py_buffer *b = &bufs[at];
                Py_ssize_t w = ndim == 2 ? b->shape[1] : 1;
                r = b->shape[0];
                join_copy((char *)vo.buf + row * pitch + column * itemsize, pitch,
                          (const char *)b->buf, r, w, b->strides[0],
                          ndim == 2 ? b->strides[1] : itemsize, itemsize);
                column += w;
            }
            row += r;
        }
    }
    PyBuffer_Release(&vo);
    result = Py_NewRef(out);
    goto done;
decline:
    result = Py_NewRef(Py_None);
done:
    while (held > 0)
        PyBuffer_Release(&bufs[--held]);
    if (bufs != few)
        PyMem_Free(bufs);
    Py_XDECREF(getter);
    Py_XDECREF(out);
    Py_XDECREF(shape);
    Py_XDECREF(dtype);
    Py_DECREF(parts);
    return result;
}

/* ---------------------------------------------------------------- a scatter's group blocks
 * The lists of a scatter's groups' rows, columns and blocks (monitor/core/layout.py,
 * _group_blocks): each group's views of the arrays the pane kernels filled, made in one C
 * loop over the hundreds of groups of a poll (of a sparse stream, of many models) instead
 * of a few bytecodes and calls per view. The views are numpy's own (the arrays sliced,
 * then reshaped by their method), the same ones the Python loop makes. */

static PyObject *blocks_reshape_name = NULL; /* "reshape", interned on first use */

/* The Py_ssize_t of item i of the list o, or -1 with an error set. */
static Py_ssize_t
list_size_at(PyObject *o, Py_ssize_t i)
{
    Py_ssize_t v = PyLong_AsSsize_t(PyList_GET_ITEM(o, i));
    if (v < 0 && !PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "bounds: non-negative ints expected");
    return v;
}

PyDoc_STRVAR(group_blocks_doc,
"group_blocks(row, bounds, cols, cbounds, at, starts, outs, kinds, width)\n"
"-> (rows, cols, plain, decay)\n\n"
"layout._group_blocks' lists, for groups of one call of the pane kernels (bounds, cbounds\n"
"and at: lists of ints, one more than the groups; starts: the first cell of each array of\n"
"outs, then the cells; cols: None when every group holds every column): group i's rows\n"
"row[bounds[i]:bounds[i + 1]], its columns None (cols None, or all width of them) or\n"
"cols[cbounds[i]:cbounds[i + 1]], and its block of kinds (rows, columns) arrays, the\n"
"cells at[i] to at[i + 1] of the array of outs that holds them, reshaped: the first its\n"
"plain sums, the others (a list) its decayed sums.");

static PyObject *
group_blocks(PyObject *self, PyObject *args)
{
    PyObject *row, *bounds, *cols, *cbounds, *at, *starts, *outs;
    Py_ssize_t kinds, width;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO!OO!O!O!O!nn", &row, &PyList_Type, &bounds, &cols,
                          &PyList_Type, &cbounds, &PyList_Type, &at, &PyList_Type, &starts,
                          &PyList_Type, &outs, &kinds, &width))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(bounds) - 1, top = PyList_GET_SIZE(outs) - 1;
    if (n < 0 || PyList_GET_SIZE(cbounds) != n + 1 || PyList_GET_SIZE(at) < n + 1 ||
        top < 0 || PyList_GET_SIZE(starts) < top + 1 || kinds < 1) {
        PyErr_SetString(PyExc_ValueError,
                        "bounds, cbounds and at: one more than the groups; an array of outs "
                        "per start; kinds >= 1 expected");
        return NULL;
    }
    if (blocks_reshape_name == NULL &&
        (blocks_reshape_name = PyUnicode_InternFromString("reshape")) == NULL)
        return NULL;
    PyObject *l_rows = PyList_New(n), *l_cols = PyList_New(n), *l_plain = PyList_New(n),
             *l_decay = PyList_New(n), *result = NULL;
    if (l_rows == NULL || l_cols == NULL || l_plain == NULL || l_decay == NULL)
        goto done;
    Py_ssize_t a = list_size_at(bounds, 0), c = list_size_at(cbounds, 0), o = list_size_at(at, 0);
    if (a < 0 || c < 0 || o < 0)
        goto done;
    Py_ssize_t j = 0, base = list_size_at(starts, 0), next = -1;
    if (base < 0 || (top > 0 && (next = list_size_at(starts, 1)) < 0))
        goto done;
    PyObject *out = PyList_GET_ITEM(outs, 0);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t b = list_size_at(bounds, i + 1), d = list_size_at(cbounds, i + 1),
                   end = list_size_at(at, i + 1);
        if (b < 0 || d < 0 || end < 0)
            goto done;
        if (j < top && next <= o && o < end) { /* a block in a later array */
            while (j < top && next <= o) {
                j++;
                base = next;
                if (j < top && (next = list_size_at(starts, j + 1)) < 0)
                    goto done;
            }
            out = PyList_GET_ITEM(outs, j);
        }
        PyObject *v = PySequence_GetSlice(row, a, b);
        if (v == NULL)
            goto done;
        PyList_SET_ITEM(l_rows, i, v);
        if (cols == Py_None || d - c == width)
            v = Py_NewRef(Py_None);
        else if ((v = PySequence_GetSlice(cols, c, d)) == NULL)
            goto done;
        PyList_SET_ITEM(l_cols, i, v);
        PyObject *flat = PySequence_GetSlice(out, o - base, end - base);
        if (flat == NULL)
            goto done;
        /* flat.reshape(kinds, rows, columns): the sizes as arguments (no tuple made) */
        PyObject *call[4] = {flat, PyLong_FromSsize_t(kinds), PyLong_FromSsize_t(b - a),
                             PyLong_FromSsize_t(d - c)};
        PyObject *block = NULL;
        if (call[1] != NULL && call[2] != NULL && call[3] != NULL)
            block = PyObject_VectorcallMethod(blocks_reshape_name, call, 4, NULL);
        for (int q = 0; q < 4; q++)
            Py_XDECREF(call[q]);
        if (block == NULL)
            goto done;
        PyObject *plain = PySequence_GetItem(block, 0), *decay = NULL;
        if (plain != NULL) {
            if (kinds == 2) { /* [block[1]] */
                PyObject *one_kind = PySequence_GetItem(block, 1);
                if (one_kind != NULL && (decay = PyList_New(1)) != NULL)
                    PyList_SET_ITEM(decay, 0, one_kind);
                else
                    Py_XDECREF(one_kind);
            } else { /* list(block[1:]) */
                PyObject *rest = PySequence_GetSlice(block, 1, kinds);
                if (rest != NULL) {
                    decay = PySequence_List(rest);
                    Py_DECREF(rest);
                }
            }
        }
        Py_DECREF(block);
        if (plain == NULL || decay == NULL) {
            Py_XDECREF(plain);
            goto done;
        }
        PyList_SET_ITEM(l_plain, i, plain);
        PyList_SET_ITEM(l_decay, i, decay);
        a = b;
        c = d;
        o = end;
    }
    result = PyTuple_Pack(4, l_rows, l_cols, l_plain, l_decay);
done:
    Py_XDECREF(l_rows);
    Py_XDECREF(l_cols);
    Py_XDECREF(l_plain);
    Py_XDECREF(l_decay);
    return result;
}

/* ---------------------------------------------------------------- group sums
 * Each group's sum of a column of float64 values, as np.add.reduce of the group's slice
 * sums it (monitor/core/engine.py, Engine._label_delays): numpy's pairwise summation
 * (fewer than 8 values one after the other; up to 128 in 8 running sums, added in pairs,
 * then the rest; more split in two halves, the first a multiple of 8) added to the
 * identity 0.0, the same operations in the same order: the same value bit for bit. One C
 * loop for the hundreds of (model, partition) groups of a poll of many models, where each
 * np.add.reduce call costs more than the sum of its few dozen values. */

#define PAIRWISE_BLOCK 128 /* numpy's PW_BLOCKSIZE */

static double
pairwise_sum(const double *a, Py_ssize_t n)
{
    if (n < 8) {
        double res = 0.0;
        for (Py_ssize_t i = 0; i < n; i++)
            res += a[i];
        return res;
    }
    if (n <= PAIRWISE_BLOCK) {
        double r[8];
        Py_ssize_t i;
        for (int j = 0; j < 8; j++)
            r[j] = a[j];
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++)
                r[j] += a[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++)
            res += a[i];
        return res;
    }
    Py_ssize_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

PyDoc_STRVAR(group_sums_doc,
"group_sums(values, bounds, out)\n\n"
"For the C-contiguous float64 values and the list of ints bounds (ascending, from 0 to at\n"
"most len(values)), out[g] = np.add.reduce(values[bounds[g]:bounds[g + 1]]) for each group g\n"
"(out: C-contiguous float64, len(bounds) - 1 items): the same value bit for bit.");

static PyObject *
group_sums(PyObject *self, PyObject *args)
{
    PyObject *o_values, *bounds, *o_out;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO!O", &o_values, &PyList_Type, &bounds, &o_out))
        return NULL;
    Py_buffer vv, vo;
    if (doubles(o_values, &vv, 0, -1, "values") < 0)
        return NULL;
    if (doubles(o_out, &vo, 1, -1, "out") < 0) {
        PyBuffer_Release(&vv);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t nb = PyList_GET_SIZE(bounds), n = vv.len / 8;
    if (nb < 1 || vo.len / 8 != nb - 1) {
        PyErr_SetString(PyExc_ValueError, "bounds: one more than out's items expected");
        goto done;
    }
    const double *v = (const double *)vv.buf;
    double *out = (double *)vo.buf;
    Py_ssize_t prev = -1;
    for (Py_ssize_t g = 0; g < nb; g++) {
        Py_ssize_t b = PyLong_AsSsize_t(PyList_GET_ITEM(bounds, g));
        if (b == -1 && PyErr_Occurred())
            goto done;
        if (b < 0 || b > n || (g && b < prev)) {
            PyErr_SetString(PyExc_ValueError, "bounds: ascending, within the values");
            goto done;
        }
        if (g)
            out[g - 1] = 0.0 + pairwise_sum(v + prev, b - prev);
        prev = b;
    }
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&vv);
    PyBuffer_Release(&vo);
    return result;
}

/* ---------------------------------------------------------------- a segment's shared ids
 * The ids a segment's predictions and labels share, and those either topic names more than
 * once (monitor/core/fastpath.py, _shared_ids): what set(ids_l).intersection(set(ids_p))
 * and the repeats of each list give, from one table per list sized once (open addressing
 * over each str's hash, equal by length, kind and bytes), where the two sets of every id
 * grow by resizes and are dropped. In the usual segment (each list names each id once, and
 * they share some) also the places of the shared ids in each list and of the others in
 * ids_l, read from the tables' places of their ids (where the caller would look each id up
 * again). tests/core/test_shared_ids.py holds it to the Python code beside its caller. */

typedef struct {
    uint32_t hash; /* the low 32 bits of its hash (the tables have fewer slots) */
    uint32_t at;   /* its first place in the list (the lists have fewer items) */
    PyObject *id;  /* borrowed from the list */
} id_slot_t;

/* Whether the exact strs a and b (of equal hashes) are equal. */
static inline int
same_str(PyObject *a, PyObject *b)
{
    if (a == b)
        return 1;
    Py_ssize_t n = PyUnicode_GET_LENGTH(a);
    if (n != PyUnicode_GET_LENGTH(b) || PyUnicode_KIND(a) != PyUnicode_KIND(b))
        return 0;
    return memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), (size_t)n * PyUnicode_KIND(a)) == 0;
}

/* The slot of id (of hash h) in table (mask + 1 slots): where it is, else the empty one
 * where it goes. */
static inline id_slot_t *
id_probe(id_slot_t *table, size_t mask, uint32_t h, PyObject *id)
{
    size_t i = (size_t)h & mask;
    for (;;) {
        id_slot_t *s = &table[i];
        if (s->id == NULL || (s->hash == h && same_str(s->id, id)))
            return s;
        i = (i + 1) & mask;
    }
}

/* The ids of the list into table (empty, at least twice their number of slots, a power of
 * two), each repeated one added to again; 0, or -1 with an error set. */
static int
id_table(PyObject *ids, id_slot_t *table, size_t mask, PyObject *again)
{
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(ids); i++) {
        PyObject *id = PyList_GET_ITEM(ids, i);
        Py_hash_t h = PyObject_Hash(id); /* a str's: no Python code runs */
        if (h == -1)
            return -1;
        id_slot_t *s = id_probe(table, mask, (uint32_t)h, id);
        if (s->id == NULL) {
            s->hash = (uint32_t)h;
            s->id = id;
            s->at = (uint32_t)i;
        } else if (PySet_Add(again, id) < 0) {
            return -1;
        }
    }
    return 0;
}

PyDoc_STRVAR(shared_ids_doc,
"shared_ids(ids_p, ids_l) -> (common, again_p, again_l, places), or None\n\n"
"For the lists of str ids_p and ids_l: the set of the ids in both, the sets of the ids\n"
"each names more than once, and places: when neither names an id more than once and they\n"
"share some, a tuple of three lists (the places in ids_p of the shared ids, those in ids_l,\n"
"the places in ids_l of the others), each in order; else None. None, with nothing made,\n"
"when an item of either is not a str or either has 2**30 items or more (the caller finds\n"
"them in Python).");

/* The places i (0 <= i < n) where mark[i] == want, in order, into a new list of k items. */
static PyObject *
marked_places(const char *mark, Py_ssize_t n, char want, Py_ssize_t k)
{
    PyObject *out = PyList_New(k);
    if (out == NULL)
        return NULL;
    Py_ssize_t j = 0;
    for (Py_ssize_t i = 0; i < n && j < k; i++) {
        if (mark[i] != want)
            continue;
        PyObject *at = PyLong_FromSsize_t(i);
        if (at == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, j++, at);
    }
    return out;
}

static PyObject *
shared_ids(PyObject *self, PyObject *args)
{
    PyObject *lists[2];
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!", &PyList_Type, &lists[0], &PyList_Type, &lists[1]))
        return NULL;
    for (int k = 0; k < 2; k++) {
        if (PyList_GET_SIZE(lists[k]) >= ((Py_ssize_t)1 << 30)) /* places of 32 bits */
            Py_RETURN_NONE;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(lists[k]); i++)
            if (!PyUnicode_CheckExact(PyList_GET_ITEM(lists[k], i)))
                Py_RETURN_NONE;
    }
    PyObject *common = PySet_New(NULL), *again[2] = {PySet_New(NULL), PySet_New(NULL)};
    PyObject *places = NULL;
    id_slot_t *tables[2] = {NULL, NULL};
    size_t masks[2];
    char *mark = NULL; /* the places of the shared ids: ids_p's, then ids_l's */
    Py_ssize_t n_p = PyList_GET_SIZE(lists[0]), n_l = PyList_GET_SIZE(lists[1]);
    if (common == NULL || again[0] == NULL || again[1] == NULL)
        goto fail;
    for (int k = 0; k < 2; k++) {
        size_t size = 8;
        while (size < 2 * (size_t)PyList_GET_SIZE(lists[k]))
            size *= 2;
        tables[k] = PyMem_Calloc(size, sizeof(id_slot_t));
        if (tables[k] == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
        masks[k] = size - 1;
        /* the lists hold their items: no str is freed while the tables point at them (a
         * str's hash and comparison run no Python code that could change the lists) */
        if (id_table(lists[k], tables[k], masks[k], again[k]) < 0)
            goto fail;
    }
    /* each id once in each list: its table's place is its only one */
    if (PySet_GET_SIZE(again[0]) == 0 && PySet_GET_SIZE(again[1]) == 0) {
        mark = PyMem_Calloc((size_t)(n_p + n_l) + 1, 1);
        if (mark == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
    }
    /* the labels' distinct ids that a prediction names, from the labels' table */
    for (size_t i = 0; i <= masks[1]; i++) {
        id_slot_t *s = &tables[1][i];
        if (s->id == NULL)
            continue;
        id_slot_t *t = id_probe(tables[0], masks[0], s->hash, s->id);
        if (t->id == NULL)
            continue;
        if (PySet_Add(common, s->id) < 0)
            goto fail;
        if (mark != NULL) {
            mark[t->at] = 1;
            mark[n_p + s->at] = 1;
        }
    }
    Py_ssize_t k = PySet_GET_SIZE(common);
    if (mark != NULL && k > 0) {
        PyObject *at_p = marked_places(mark, n_p, 1, k);
        PyObject *at_l = at_p == NULL ? NULL : marked_places(mark + n_p, n_l, 1, k);
        PyObject *alone_l = at_l == NULL ? NULL : marked_places(mark + n_p, n_l, 0, n_l - k);
        if (alone_l == NULL) {
            Py_XDECREF(at_p);
            Py_XDECREF(at_l);
            goto fail;
        }
        places = Py_BuildValue("(NNN)", at_p, at_l, alone_l);
        if (places == NULL)
            goto fail;
    } else {
        places = Py_NewRef(Py_None);
    }
    PyMem_Free(mark);
    PyMem_Free(tables[0]);
    PyMem_Free(tables[1]);
    return Py_BuildValue("(NNNN)", common, again[0], again[1], places);
fail:
    PyMem_Free(mark);
    PyMem_Free(tables[0]);
    PyMem_Free(tables[1]);
    Py_XDECREF(common);
    Py_XDECREF(again[0]);
    Py_XDECREF(again[1]);
    return NULL;
}

/* ---- a prediction's features read from its JSON ---- */

/* The features of a batch of predictions decoded with their features left as JSON
 * (msgspec.Raw: monitor/core/fastpath.py's _decode_predictions), read into a table of every
 * feature of the config: float64 numbers, int8 codes (0 a number, 1 missing: null, absent,
 * or no features at all; 2 a string, in strs; 3 the row was not read). Only what msgspec's
 * features struct (fastpath._typed: float | str | bool | None, unknown names forbidden)
 * decodes to the same values for sure is read here: an object of known names, each once,
 * whose values are null, numbers that convert exactly by one IEEE operation (at most 15
 * significant digits, a power of ten up to 22: correctly rounded, as msgspec rounds), or
 * strings with no escape of at most limit code points. Any other row (a bool, an escape,
 * an unknown or repeated name, another number, not an object) is declined: the caller
 * decodes it with msgspec, which decides it (the one owner of what features are). */

static const double exact_pow10[] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

#define JSON_WS(c) ((c) == ' ' || (c) == '\t' || (c) == '\n' || (c) == '\r')

static inline const char *
json_ws(const char *p, const char *end)
{
    while (p < end && JSON_WS(*p))
        p++;
    return p;
}

/* A JSON number at p as msgspec decodes it for a float: 1 with *out and *next, 0 to decline
 * (not a number, or not one taken here). An integer literal converts as an int does (so -0
 * is 0.0); a literal with a fraction or an exponent as a float (-0.0 keeps its sign). The
 * text at p ends before end with a byte that is no digit (the object's '}'). */
static inline int
json_exact_number(const char *p, double *out, const char **next)
{
    int neg = *p == '-', digits = 0, e = 0;
    uint64_t m = 0;
    p += neg;
    if (*p == '0') {
        p++;
    } else if ((unsigned)(*p - '0') < 10) {
        const char *s = p;
        while ((unsigned)(*p - '0') < 10)
            m = m * 10 + (uint64_t)(*p++ - '0');
        digits = (int)(p - s);
    } else {
        return 0;
    }
    int is_int = *p != '.' && *p != 'e' && *p != 'E';
    if (*p == '.') {
        const char *s = ++p;
        if ((unsigned)(*p - '0') >= 10)
            return 0;
        if (m == 0) /* leading zeros are no significant digits */
            while (*p == '0')
                p++;
        const char *t = p;
        while ((unsigned)(*p - '0') < 10)
            m = m * 10 + (uint64_t)(*p++ - '0');
        digits += (int)(p - t);
        e = -(int)(p - s);
    }
    if (digits > 15)
        return 0; /* (m may have wrapped: not used) */
    if (*p == 'e' || *p == 'E') {
        p++;
        int eneg = *p == '-', x = 0;
        p += *p == '+' || *p == '-';
        const char *s = p;
        while ((unsigned)(*p - '0') < 10 && p - s < 4)
            x = x * 10 + (*p++ - '0');
        if (p == s || (unsigned)(*p - '0') < 10)
            return 0;
        e += eneg ? -x : x;
    }
    if (e < -22 || e > 22)
        return 0;
    double v = (double)m; /* exact: m < 10**15 */
    v = e >= 0 ? v * exact_pow10[e] : v / exact_pow10[-e];
    if (neg && !(is_int && m == 0))
        v = -v;
    *out = v;
    *next = p;
    return 1;
}

/* One row's features object into column i of codes and x (every feature written), its
 * strings appended to strs: 1 read, 0 declined, -1 an error set. pat[j] is name j as a
 * key: the name in quotes and a colon (the usual key, in the usual order, is one memcmp). */
static int
feature_object(const char *p, const char *end, Py_ssize_t nf, const char **pat,
               const Py_ssize_t *pat_len, Py_ssize_t limit, Py_ssize_t n, Py_ssize_t i,
               int8_t *codes, double *x, PyObject *strs, const char **next);

static int
read_feature_row(const char *p, const char *end, Py_ssize_t nf, const char **pat,
                 const Py_ssize_t *pat_len, Py_ssize_t limit, Py_ssize_t n, Py_ssize_t i,
                 int8_t *codes, double *x, PyObject *strs)
{
    const char *next;
    while (p < end && JSON_WS(end[-1]))
        end--;
    int r = feature_object(p, end, nf, pat, pat_len, limit, n, i, codes, x, strs, &next);
    return r > 0 && next != end ? 0 : r;
}

/* read_feature_row of the features object (or null) at p, which ends before end: *next
 * after it. (Only the object's own bytes are read; what follows it is the caller's.) */
static int
feature_object(const char *p, const char *end, Py_ssize_t nf, const char **pat,
               const Py_ssize_t *pat_len, Py_ssize_t limit, Py_ssize_t n, Py_ssize_t i,
               int8_t *codes, double *x, PyObject *strs, const char **next)
{
    const double nan = quiet_nan();
    uint64_t seen = 0;
    while (p < end && JSON_WS(*p))
        p++;
    if (end - p >= 4 && memcmp(p, "null", 4) == 0) {
        for (Py_ssize_t j = 0; j < nf; j++) {
            codes[j * n + i] = 1;
            x[j * n + i] = nan;
        }
        *next = p + 4;
        return 1;
    }
    if (end - p < 2 || *p != '{')
        return 0;
    p++;
    if (JSON_WS(*p))
        p = json_ws(p, end);
    Py_ssize_t k = 0; /* the name expected next */
    if (*p != '}') {
        for (;;) {
            Py_ssize_t j = -1;
            if (k < nf && end - p > pat_len[k] && memcmp(p, pat[k], (size_t)pat_len[k]) == 0) {
                j = k;
                p += pat_len[k];
            } else { /* any other key: a name (no escape), then its colon */
                if (*p != '"')
                    return 0;
                const char *key = ++p;
                while (p < end && *p != '"') {
                    if (*p == '\\' || (unsigned char)*p < 0x20)
                        return 0;
                    p++;
                }
                if (p >= end)
                    return 0;
                Py_ssize_t klen = p - key;
                for (Py_ssize_t t = 0; t < nf; t++)
                    if (pat_len[t] == klen + 3 && memcmp(pat[t] + 1, key, (size_t)klen) == 0) {
                        j = t;
                        break;
                    }
                if (j < 0)
                    return 0; /* an unknown name */
                p = json_ws(p + 1, end);
                if (p >= end || *p != ':')
                    return 0;
                p++;
            }
            if (seen >> j & 1)
                return 0; /* a name given twice */
            seen |= (uint64_t)1 << j;
            k = j + 1;
            if (JSON_WS(*p))
                p = json_ws(p, end);
            char c = *p;
            if (c == '"') {
                const char *s = ++p;
                int ascii = 1;
                while (p < end && *p != '"') {
                    unsigned char b = (unsigned char)*p++;
                    if (b == '\\' || b < 0x20)
                        return 0;
                    ascii &= b < 0x80;
                }
                if (p >= end)
                    return 0;
                PyObject *u;
                if (ascii) {
                    u = PyUnicode_New(p - s, 127);
                    if (u == NULL)
                        return -1;
                    memcpy(PyUnicode_DATA(u), s, (size_t)(p - s));
                } else if ((u = PyUnicode_DecodeUTF8(s, p - s, NULL)) == NULL) {
                    if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
                        return -1;
                    PyErr_Clear();
                    return 0;
                }
                if (PyUnicode_GET_LENGTH(u) > limit) {
                    Py_DECREF(u);
                    return 0;
                }
                x[j * n + i] = (double)PyList_GET_SIZE(strs); /* its place in strs */
                int failed = PyList_Append(strs, u);
                Py_DECREF(u);
                if (failed)
                    return -1;
                codes[j * n + i] = 2;
                p++;
            } else if (c == 'n') {
                if (end - p < 4 || memcmp(p, "null", 4) != 0)
                    return 0;
                codes[j * n + i] = 1;
                x[j * n + i] = nan;
                p += 4;
            } else {
                double v;
                if (!json_exact_number(p, &v, &p))
                    return 0;
                codes[j * n + i] = 0;
                x[j * n + i] = v;
            }
            if (JSON_WS(*p))
                p = json_ws(p, end);
            if (*p == ',') {
                p++;
                if (JSON_WS(*p))
                    p = json_ws(p, end);
                continue;
            }
            if (*p == '}')
                break;
            return 0;
        }
    }
    *next = p + 1;
    if (seen != (nf == 64 ? ~(uint64_t)0 : ((uint64_t)1 << nf) - 1))
        for (Py_ssize_t j = 0; j < nf; j++) /* the names not given: missing */
            if (!(seen >> j & 1)) {
                codes[j * n + i] = 1;
                x[j * n + i] = nan;
            }
    return 1;
}

/* The nf feature names (a tuple of str) as keys, "name": each (*pat)[j], (*pat_len)[j] its
 * size, allocated here and let go of by keys_free (also after a failure): 0, or -1 with
 * an error set. */
static int
feature_keys(PyObject *names, Py_ssize_t nf, char ***pat, Py_ssize_t **pat_len)
{
    *pat = PyMem_Calloc((size_t)(nf ? nf : 1), sizeof(char *));
    *pat_len = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(nf ? nf : 1));
    if (*pat == NULL || *pat_len == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t j = 0; j < nf; j++) {
        PyObject *o = PyTuple_GET_ITEM(names, j);
        Py_ssize_t len;
        const char *s = PyUnicode_Check(o) ? PyUnicode_AsUTF8AndSize(o, &len) : NULL;
        if (s == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "names must be str");
            return -1;
        }
        char *key = (*pat)[j] = PyMem_Malloc((size_t)len + 3);
        if (key == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        key[0] = '"';
        memcpy(key + 1, s, (size_t)len);
        key[len + 1] = '"';
        key[len + 2] = ':';
        (*pat_len)[j] = len + 3;
    }
    return 0;
}

/* Let go of what feature_keys allocated (any of it NULL). */
static void
keys_free(char **pat, Py_ssize_t *pat_len, Py_ssize_t nf)
{
    if (pat != NULL)
        for (Py_ssize_t j = 0; j < nf; j++)
            PyMem_Free(pat[j]);
    PyMem_Free(pat);
    PyMem_Free(pat_len);
}

/* Row i of the features raw (a JSON value's buffer, msgspec.Raw; None: none) into codes and
 * x as read_features reads it: 0, with i appended to declined (codes 3, its strings
 * dropped) where read_feature_row declines; -1 with an error set. */
static int
raw_feature_row(PyObject *raw, Py_ssize_t nf, const char **pat, const Py_ssize_t *pat_len,
                Py_ssize_t limit, Py_ssize_t n, Py_ssize_t i, int8_t *codes, double *x,
                PyObject *strs, PyObject *declined)
{
    const double nan = quiet_nan();
    int got = 0;
    if (raw != Py_None) {
        Py_buffer view;
        if (np_view(raw, &view, PyBUF_SIMPLE) < 0)
            return -1;
        Py_ssize_t had = PyList_GET_SIZE(strs);
        const char *p = (const char *)view.buf;
        got = read_feature_row(p, p + view.len, nf, pat, pat_len, limit, n, i, codes, x, strs);
        PyBuffer_Release(&view);
        if (got < 0)
            return -1;
        if (got == 0) {
            if (PyList_SetSlice(strs, had, PyList_GET_SIZE(strs), NULL) < 0)
                return -1;
            PyObject *at = PyLong_FromSsize_t(i);
            if (at == NULL || PyList_Append(declined, at) < 0) {
                Py_XDECREF(at);
                return -1;
            }
            Py_DECREF(at);
        }
    }
    if (got == 0) /* none (1), or declined (3) */
        for (Py_ssize_t j = 0; j < nf; j++) {
            codes[j * n + i] = raw == Py_None ? 1 : 3;
            x[j * n + i] = nan;
        }
    return 0;
}

PyDoc_STRVAR(read_features_doc,
"read_features(raws, names, limit, codes, x) -> (declined, strs)\n\n"
"Read each of raws (a list of msgspec.Raw, a JSON value, or None: no features) as a\n"
"features object of the feature names (a tuple of str) into x[j, i] (float64, C order\n"
"(len(names), len(raws)), NaN where null or absent) and codes[j, i] (int8: 0 a number, 1 null\n"
"or absent, 2 a string: strs[int(x[j, i])], 3 not read). Only objects of known names,\n"
"each once, of nulls, numbers of at most 15 significant digits and a power of ten up to 22,\n"
"and strings with no escape of at most limit code points are read; declined: the list of\n"
"the other rows (codes 3), for msgspec to decode.");

static PyObject *
read_features(PyObject *self, PyObject *args)
{
    PyObject *raws, *names, *o_codes, *o_x;
    Py_ssize_t limit;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!nOO", &PyList_Type, &raws, &PyTuple_Type, &names,
                          &limit, &o_codes, &o_x))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(raws), nf = PyTuple_GET_SIZE(names);
    if (nf > 64) {
        PyErr_SetString(PyExc_ValueError, "at most 64 names");
        return NULL;
    }
    /* each name as a key: "name": */
    char **pat = NULL;
    Py_ssize_t *pat_len = NULL;
    PyObject *result = NULL, *declined = NULL, *strs = NULL;
    int acquired = 0;
    arg_t a[] = {{o_codes, 1, 1, "codes"}, {o_x, 8, 1, "x"}};
    if (feature_keys(names, nf, &pat, &pat_len) < 0)
        goto done;
    if (acquire(a, 2) < 0)
        goto done;
    acquired = 1;
    if (a[0].buf.len != nf * n || a[1].buf.len / 8 != nf * n) {
        PyErr_SetString(PyExc_ValueError, "codes, x: len(names) * len(raws) items expected");
        goto done;
    }
    if ((declined = PyList_New(0)) == NULL || (strs = PyList_New(0)) == NULL)
        goto done;
    int8_t *codes = (int8_t *)a[0].buf.buf;
    double *x = (double *)a[1].buf.buf;
    for (Py_ssize_t i = 0; i < n; i++)
        if (raw_feature_row(PyList_GET_ITEM(raws, i), nf, (const char **)pat, pat_len, limit, n,
                            i, codes, x, strs, declined) < 0)
            goto done;
    result = PyTuple_Pack(2, declined, strs);
done:
    Py_XDECREF(declined);
    Py_XDECREF(strs);
    if (acquired)
        release(a, 2);
    keys_free(pat, pat_len, nf);
    return result;
}

/* ------------------------------------------------------------- a poll's predictions read
 * decode_each and read_features in one pass, with the usual prediction read straight from
 * its JSON: an object of the struct's known keys, each once, whose strings are ASCII with
 * no escape, numbers as json_exact_number takes them, no probabilities, and a features
 * object read_feature_row reads. Its struct is made by calling the struct's type with
 * every field, as msgspec would have decoded them, its features left None (they are in
 * codes and x; fastpath.py makes them again from there where the events' are read). Any
 * other message is declined to msgspec, then read as read_features reads it: the one
 * owner of what a prediction is. tests/core/test_fast_predictions.py holds both ways to
 * the same results. */

enum { P_ID, P_MODEL, P_TS, P_PRED, P_VERSION, P_SCORE, P_PROBS, P_FEATURES, P_SEGMENT,
       P_LABEL, P_FIELDS };
static const char *const pred_key[P_FIELDS] = {
    "prediction_id", "model", "ts", "prediction", "model_version", "score", "probabilities",
    "features", "segment", "label",
};

/* The strings of a call's predictions that repeat from one to the next (model, version,
 * segment names and values), kept to be given again: a poll's thousands of predictions
 * name a few such values, and one str object each is made, hashed and freed once, not
 * once per prediction (a str is immutable: the events are what they would be with a str
 * of their own each). Up to STR_KEEP of each kind, the first met; the others made each
 * time. */
enum { S_MODEL, S_VERSION, S_SEG_KEY, S_SEG_VALUE, S_KINDS };
#define STR_KEEP 8
typedef struct {
    PyObject *kept[S_KINDS][STR_KEEP];
    int n[S_KINDS];
} str_cache_t;

typedef struct {
    Py_ssize_t max_id, max_value, max_segment, limit, nf, n;
    const char **pat;
    const Py_ssize_t *pat_len;
    int8_t *codes;
    double *x;
    PyObject *strs;
    str_cache_t *cache;
} pred_spec_t;

/* The JSON string at p (its opening quote), ASCII with no escape nor control byte, of at
 * most limit characters, as a str into *out; *next after its closing quote. 1, 0 declined,
 * -1 with an error set. */
static int
fast_str(const char *p, const char *end, Py_ssize_t limit, PyObject **out, const char **next)
{
    const char *s = ++p;
    while (p < end && *p != '"') {
        unsigned char b = (unsigned char)*p++;
        if (b == '\\' || b < 0x20 || b >= 0x80)
            return 0;
    }
    if (p >= end || p - s > limit)
        return 0;
    PyObject *u = PyUnicode_New(p - s, 127);
    if (u == NULL)
        return -1;
    memcpy(PyUnicode_DATA(u), s, (size_t)(p - s));
    *out = u;
    *next = p + 1;
    return 1;
}

/* fast_str of a string of kind (S_MODEL, ...): a str kept in cache given again when it has
 * the same characters, else a new one (kept while there is room). */
static int
kept_str(const char *p, const char *end, Py_ssize_t limit, str_cache_t *cache, int kind,
         PyObject **out, const char **next)
{
    const char *s = p + 1, *q = s;
    while (q < end && *q != '"')
        q++;
    Py_ssize_t len = q - s;
    PyObject **kept = cache->kept[kind];
    int n = cache->n[kind];
    if (q < end && len <= limit) {
        for (int j = 0; j < n; j++) {
            /* a kept str is ASCII with no escape nor control byte: equal bytes are equal
             * strings, and these bytes are then such a string too */
            if (PyUnicode_GET_LENGTH(kept[j]) == len &&
                memcmp(PyUnicode_DATA(kept[j]), s, (size_t)len) == 0) {
                *out = Py_NewRef(kept[j]);
                *next = q + 1;
                return 1;
            }
        }
    }
    int r = fast_str(p, end, limit, out, next);
    if (r > 0 && n < STR_KEEP) {
        kept[n] = Py_NewRef(*out);
        cache->n[kind] = n + 1;
    }
    return r;
}

static void
str_cache_clear(str_cache_t *cache)
{
    for (int k = 0; k < S_KINDS; k++)
        for (int j = 0; j < cache->n[k]; j++)
            Py_DECREF(cache->kept[k][j]);
}

/* A value of the type str (at most limit characters) | int | float | bool at p, as msgspec
 * decodes it: an integer literal of at most 18 digits as an int, one with a fraction or
 * an exponent as json_exact_number reads it, true and false. 1, 0 declined, -1 error. */
static int
fast_value(const char *p, const char *end, Py_ssize_t limit, PyObject **out, const char **next)
{
    char c = *p;
    if (c == '"')
        return fast_str(p, end, limit, out, next);
    if (c == 't' || c == 'f') {
        Py_ssize_t len = c == 't' ? 4 : 5;
        if (end - p < len || memcmp(p, c == 't' ? "true" : "false", (size_t)len) != 0)
            return 0;
        *out = Py_NewRef(c == 't' ? Py_True : Py_False);
        *next = p + len;
        return 1;
    }
    const char *q = p + (c == '-');
    const char *s = q;
    while (q < end && (unsigned)(*q - '0') < 10)
        q++;
    Py_ssize_t digits = q - s;
    if (digits == 0)
        return 0;
    if (q < end && (*q == '.' || *q == 'e' || *q == 'E')) {
        double v;
        if (!json_exact_number(p, &v, next))
            return 0;
        if ((*out = PyFloat_FromDouble(v)) == NULL)
            return -1;
        return 1;
    }
    if (digits > 18 || (*s == '0' && digits > 1))
        return 0;
    long long v = 0;
    for (const char *d = s; d < q; d++)
        v = v * 10 + (*d - '0');
    if ((*out = PyLong_FromLongLong(c == '-' ? -v : v)) == NULL)
        return -1;
    *next = q;
    return 1;
}

/* The segment object at p as a dict of str to str (values of at most s->max_segment
 * characters, each key once): 1, 0 declined, -1 error. */
static int
fast_segment(const char *p, const char *end, const pred_spec_t *s, PyObject **out,
             const char **next)
{
    PyObject *d = PyDict_New();
    if (d == NULL)
        return -1;
    p = json_ws(p + 1, end);
    if (p < end && *p == '}') {
        *out = d;
        *next = p + 1;
        return 1;
    }
    for (;;) {
        PyObject *k = NULL, *v = NULL;
        int r = p < end && *p == '"' ?
            kept_str(p, end, PY_SSIZE_T_MAX, s->cache, S_SEG_KEY, &k, &p) : 0;
        if (r > 0) {
            p = json_ws(p, end);
            r = p < end && *p == ':' ? 1 : 0;
            if (r > 0) {
                p = json_ws(p + 1, end);
                r = p < end && *p == '"' ?
                    kept_str(p, end, s->max_segment, s->cache, S_SEG_VALUE, &v, &p) : 0;
            }
        }
        if (r > 0) {
            r = PyDict_Contains(d, k);
            r = r < 0 ? -1 : r ? 0 : PyDict_SetItem(d, k, v) < 0 ? -1 : 1;
        }
        Py_XDECREF(k);
        Py_XDECREF(v);
        if (r <= 0) {
            Py_DECREF(d);
            return r;
        }
        p = json_ws(p, end);
        if (p < end && *p == ',') {
            p = json_ws(p + 1, end);
            continue;
        }
        if (p < end && *p == '}') {
            *out = d;
            *next = p + 1;
            return 1;
        }
        Py_DECREF(d);
        return 0;
    }
}

/* Which known key the JSON string at p (its opening quote) is, with *next after its
 * closing quote: -1 for any other (or one with an escape). */
static int
pred_key_at(const char *p, const char *end, const char **next)
{
    const char *s = ++p;
    while (p < end && *p != '"' && *p != '\\')
        p++;
    if (p >= end || *p != '"')
        return -1;
    *next = p + 1;
    int k;
    switch (p - s) { /* the one known key of this length and first letter */
    case 13: k = *s == 'p' ? (s[1] == 'r' && s[2] == 'e' ? P_ID : P_PROBS) : P_VERSION; break;
    case 5: k = *s == 'm' ? P_MODEL : *s == 's' ? P_SCORE : P_LABEL; break;
    case 2: k = P_TS; break;
    case 10: k = P_PRED; break;
    case 8: k = P_FEATURES; break;
    case 7: k = P_SEGMENT; break;
    default: return -1;
    }
    return memcmp(pred_key[k], s, (size_t)(p - s)) == 0 ? k : -1;
}

/* The member at p (its key's opening quote) of an object being read: which known key it
 * has (see pred_key_at), with *next at its value, past the colon and white space; -1 for
 * any other key or text. */
static int
member_at(const char *p, const char *end, const char **next)
{
    int k = p < end && *p == '"' ? pred_key_at(p, end, &p) : -1;
    if (k < 0)
        return -1;
    p = json_ws(p, end);
    if (p >= end || *p != ':')
        return -1;
    p = json_ws(p + 1, end);
    if (p >= end)
        return -1;
    *next = p;
    return k;
}

/* What follows a member's value at p: 1 with *next at the next member (past a comma), 0
 * when the object ends there and nothing but white space follows it, -1 otherwise. */
static int
member_after(const char *p, const char *end, const char **next)
{
    p = json_ws(p, end);
    if (p < end && *p == ',') {
        *next = json_ws(p + 1, end);
        return 1;
    }
    return p < end && *p == '}' && json_ws(p + 1, end) == end ? 0 : -1;
}

/* Prediction i's JSON (p to end) read as described above: its struct into *out and its
 * features into column i of the codes and x (strings appended to strs). 1, 0 declined
 * (nothing kept; strs may hold strings of it, which the caller drops), -1 error. */
static int
fast_prediction(const char *p, const char *end, PyObject *type, const pred_spec_t *s,
                Py_ssize_t i, PyObject **out)
{
    PyObject *f[P_FIELDS] = {NULL};
    const char *fs = NULL; /* the features object (or null), read when met */
    unsigned seen = 0;
    int r = 0, made = 0; /* made: 1 once the struct is made, -1 if that failed */
    p = json_ws(p, end);
    if (p >= end || *p != '{')
        return 0;
    p = json_ws(p + 1, end);
    if (p >= end || *p != '"')
        return 0;
    for (int more = 1; more;) {
        int k = member_at(p, end, &p);
        if (k < 0 || (seen >> k & 1))
            goto decline;
        seen |= 1u << k;
        char c = *p;
        int null = c == 'n' && end - p >= 4 && memcmp(p, "null", 4) == 0;
        switch (k) {
        case P_ID:
            r = c == '"' ? fast_str(p, end, s->max_id, &f[k], &p) : 0;
            break;
        case P_MODEL:
        case P_VERSION:
            r = c == '"' ? kept_str(p, end, k == P_MODEL ? PY_SSIZE_T_MAX : s->max_segment,
                                    s->cache, k == P_MODEL ? S_MODEL : S_VERSION, &f[k], &p)
                         : 0;
            break;
        case P_TS:
        case P_SCORE:
            if (k == P_TS && c == '"') {
                r = fast_str(p, end, PY_SSIZE_T_MAX, &f[k], &p);
            } else if (k == P_SCORE && null) {
                p += 4;
                r = 1;
            } else {
                double v;
                r = (c == '-' || (unsigned)(c - '0') < 10) && json_exact_number(p, &v, &p);
                if (r && (f[k] = PyFloat_FromDouble(v)) == NULL)
                    r = -1;
            }
            break;
        case P_PRED:
            r = fast_value(p, end, s->max_value, &f[k], &p);
            break;
        case P_LABEL:
            if (null) {
                p += 4;
                r = 1;
            } else {
                r = fast_value(p, end, s->max_value, &f[k], &p);
            }
            break;
        case P_PROBS:
            r = null;
            p += null ? 4 : 0;
            break;
        case P_SEGMENT:
            if (null) {
                p += 4;
                r = 1;
            } else {
                r = c == '{' ? fast_segment(p, end, s, &f[k], &p) : 0;
            }
            break;
        case P_FEATURES: /* read into column i at once (declined: nothing is kept) */
            fs = p;
            r = c == '{' || null ? feature_object(p, end, s->nf, s->pat, s->pat_len, s->limit,
                                                  s->n, i, s->codes, s->x, s->strs, &p) : 0;
            break;
        }
        if (r <= 0 || (more = member_after(p, end, &p)) < 0)
            goto decline;
    }
    if ((seen & 0xF) != 0xF) /* prediction_id, model, ts and prediction are required */
        goto decline;
    if (fs == NULL) {
        const double nan = quiet_nan();
        for (Py_ssize_t j = 0; j < s->nf; j++) {
            s->codes[j * s->n + i] = 1;
            s->x[j * s->n + i] = nan;
        }
    }
    if (f[P_VERSION] == NULL && (f[P_VERSION] = PyUnicode_New(0, 0)) == NULL) {
        r = -1;
        goto decline;
    }
    PyObject *args[P_FIELDS];
    for (int k = 0; k < P_FIELDS; k++)
        args[k] = f[k] != NULL ? f[k] : Py_None;
    *out = PyObject_Vectorcall(type, args, P_FIELDS, NULL);
    made = *out != NULL ? 1 : -1;
decline:
    for (int k = 0; k < P_FIELDS; k++)
        Py_XDECREF(f[k]);
    return r < 0 ? -1 : made;
}

PyDoc_STRVAR(decode_predictions_doc,
"decode_predictions(decode, values, cap, errors, type, names, limit, limits, codes, x,\n"
"                   inline) -> (out, declined, strs)\n\n"
"decode_each(decode, values, cap, errors) and read_features of the events' features\n"
"(names, limit, codes, x; a row that did not decode reads as having none) in one pass:\n"
"out, and read_features' declined and strs. A prediction whose JSON is of the usual shape\n"
"(see fast_prediction) is read straight from it: its struct made by calling type (the\n"
"decoder's struct, of the fields prediction_id, model, ts, prediction, model_version,\n"
"score, probabilities, features, segment, label) with features None, inline[i] set;\n"
"limits: the most characters of an id, a value and a segment value.");

static PyObject *
decode_predictions(PyObject *self, PyObject *args)
{
    PyObject *decode, *values, *o_cap, *errors, *type, *names, *o_codes, *o_x, *o_inline;
    Py_ssize_t limit;
    pred_spec_t s = {0};
    str_cache_t cache = {0};
    s.cache = &cache;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO!OOOO!n(nnn)OOO", &decode, &PyList_Type, &values, &o_cap,
                          &errors, &type, &PyTuple_Type, &names, &limit, &s.max_id,
                          &s.max_value, &s.max_segment, &o_codes, &o_x, &o_inline))
        return NULL;
    Py_ssize_t cap = PY_SSIZE_T_MAX;
    if (o_cap != Py_None && (cap = PyLong_AsSsize_t(o_cap)) == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t nf = PyTuple_GET_SIZE(names);
    if (nf > 64) {
        PyErr_SetString(PyExc_ValueError, "at most 64 names");
        return NULL;
    }
    /* a copy of the list: a decoder may run Python code, which may change it */
    PyObject *items = PyList_GetSlice(values, 0, PyList_GET_SIZE(values));
    if (items == NULL)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(items);
    char **pat = NULL;
    Py_ssize_t *pat_len = NULL;
    PyObject *result = NULL, *out = NULL, *declined = NULL, *strs = NULL, *features = NULL;
    int acquired = 0;
    arg_t a[] = {{o_codes, 1, 1, "codes"}, {o_x, 8, 1, "x"}, {o_inline, 1, 1, "inline"}};
    if (feature_keys(names, nf, &pat, &pat_len) < 0)
        goto done;
    if (acquire(a, 3) < 0)
        goto done;
    acquired = 1;
    if (a[0].buf.len != nf * n || a[1].buf.len / 8 != nf * n || a[2].buf.len != n) {
        PyErr_SetString(PyExc_ValueError,
                        "codes, x: len(names) * len(values) items, inline: len(values)");
        goto done;
    }
    if ((out = PyList_New(n)) == NULL || (declined = PyList_New(0)) == NULL ||
        (strs = PyList_New(0)) == NULL ||
        (features = PyUnicode_InternFromString("features")) == NULL)
        goto done;
    s.limit = limit;
    s.nf = nf;
    s.n = n;
    s.pat = (const char **)pat;
    s.pat_len = pat_len;
    s.codes = (int8_t *)a[0].buf.buf;
    s.x = (double *)a[1].buf.buf;
    s.strs = strs;
    int8_t *inline_ = (int8_t *)a[2].buf.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyList_GET_ITEM(items, i), *got = NULL;
        inline_[i] = 0;
        if (v != Py_None && PyBytes_CheckExact(v) && PyBytes_GET_SIZE(v) <= cap) {
            Py_ssize_t had = PyList_GET_SIZE(strs);
            const char *p = PyBytes_AS_STRING(v);
            int r = fast_prediction(p, p + PyBytes_GET_SIZE(v), type, &s, i, &got);
            if (r < 0)
                goto done;
            if (r > 0) {
                inline_[i] = 1;
                PyList_SET_ITEM(out, i, got);
                continue;
            }
            if (PyList_GET_SIZE(strs) > had &&
                PyList_SetSlice(strs, had, PyList_GET_SIZE(strs), NULL) < 0)
                goto done;
        }
        if ((got = decode_one(decode, v, cap, errors)) == NULL && PyErr_Occurred())
            goto done;
        PyList_SET_ITEM(out, i, got != NULL ? got : Py_NewRef(Py_None));
        /* read_features of its features (none where it did not decode) */
        PyObject *raw = got != NULL ? PyObject_GetAttr(got, features) : Py_NewRef(Py_None);
        if (raw == NULL)
            goto done;
        int r = raw_feature_row(raw, nf, (const char **)pat, pat_len, limit, n, i, s.codes, s.x,
                                strs, declined);
        Py_DECREF(raw);
        if (r < 0)
            goto done;
    }
    result = PyTuple_Pack(3, out, declined, strs);
done:
    Py_XDECREF(out); /* its items not set yet are NULL, which a list's dealloc passes over */
    Py_XDECREF(declined);
    Py_XDECREF(strs);
    Py_XDECREF(features);
    Py_DECREF(items);
    str_cache_clear(&cache);
    if (acquired)
        release(a, 3);
    keys_free(pat, pat_len, nf);
    return result;
}


/* ---------------------------------------------------------------- a topic's checked events
 * fastpath.py's _checked in one C loop: of a topic's decoded events (None where a message
 * did not decode) at their poll indices, those that are valid whatever the join holds (a
 * model the config knows; a label may name none), their ids, poll indices and model names,
 * and the poll indices of the others (rejects), with no list made per pass over them.
 * tests/core/test_native_planner.py holds it to the Python code. */

PyDoc_STRVAR(checked_events_doc,
"checked_events(events, at, known, labels) -> (good, ids, kept, dropped, models), or None\n\n"
"For the list events (decoded structs, None where a message did not decode) and the list\n"
"at of their poll indices (as long): the events that are not None and whose model is a\n"
"key of the dict known (or None, if labels), in order; their prediction_id and model\n"
"attributes and their poll indices; and the poll indices of the others. Where every event\n"
"is valid (the usual poll), good and kept are events and at themselves. None, with\n"
"nothing made, when at is not as long as events, known is not a dict, an event lacks an\n"
"attribute or names a model neither a str nor None (the caller checks them in Python).");

/* The member slot of attribute name of the type kind (NULL: none; read by name then). */
static PyMemberDef *
event_slot(PyTypeObject *kind, PyObject *name)
{
    PyObject *d = _PyType_Lookup(kind, name); /* borrowed */
    if (d != NULL && Py_IS_TYPE(d, &PyMemberDescr_Type) && PyType_IsSubtype(kind, PyDescr_TYPE(d)))
        return ((PyMemberDescrObject *)d)->d_member;
    return NULL;
}

/* Attribute name of o: through slot when o is of the type it was found on, else by name. */
static PyObject *
event_attr(PyObject *o, PyTypeObject *kind, PyMemberDef *slot, PyObject *name)
{
    if (slot != NULL && Py_TYPE(o) == kind)
        return PyMember_GetOne((const char *)o, slot);
    return PyObject_GetAttr(o, name);
}

static PyObject *
checked_events(PyObject *self, PyObject *args)
{
    PyObject *events, *at, *known;
    int labels;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!Op", &PyList_Type, &events, &PyList_Type, &at, &known,
                          &labels))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(events);
    if (PyList_GET_SIZE(at) != n || !PyDict_CheckExact(known))
        Py_RETURN_NONE;
    static PyObject *s_model = NULL, *s_pid = NULL;
    if (s_model == NULL && (s_model = PyUnicode_InternFromString("model")) == NULL)
        return NULL;
    if (s_pid == NULL && (s_pid = PyUnicode_InternFromString("prediction_id")) == NULL)
        return NULL;
    PyObject *ids = PyList_New(n), *models = PyList_New(n), *dropped = PyList_New(0);
    PyObject *good = NULL, *kept = NULL, *known_model = NULL; /* the last model found known */
    char *valid = PyMem_Malloc(n > 0 ? (size_t)n : 1);
    if (ids == NULL || models == NULL || dropped == NULL || valid == NULL)
        goto fail;
    /* The slots of the first event's type (as attr_lists reads them); other types by name. */
    PyTypeObject *kind = NULL;
    for (Py_ssize_t i = 0; i < n && kind == NULL; i++)
        if (PyList_GET_ITEM(events, i) != Py_None)
            kind = Py_TYPE(PyList_GET_ITEM(events, i));
    PyMemberDef *m_model = kind == NULL ? NULL : event_slot(kind, s_model);
    PyMemberDef *m_pid = kind == NULL ? NULL : event_slot(kind, s_pid);
    Py_ssize_t k = 0; /* valid events so far */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = PyList_GET_ITEM(events, i);
        valid[i] = 0;
        if (o == Py_None) {
            if (PyList_Append(dropped, PyList_GET_ITEM(at, i)) < 0)
                goto fail;
            continue;
        }
        PyObject *model = event_attr(o, kind, m_model, s_model);
        if (model == NULL)
            goto attr_fail;
        int ok;
        if (model == Py_None)
            ok = labels;
        else if (!PyUnicode_CheckExact(model)) {
            Py_DECREF(model);
            goto decline;
        }
        else if (known_model != NULL && same_str(model, known_model))
            ok = 1; /* the usual poll: one model's name again, not hashed again */
        else {
            ok = PyDict_Contains(known, model); /* a str's hash and equality run no Python */
            if (ok > 0)
                Py_XSETREF(known_model, Py_NewRef(model));
        }
        if (ok <= 0) {
            Py_DECREF(model);
            if (ok < 0 || PyList_Append(dropped, PyList_GET_ITEM(at, i)) < 0)
                goto fail;
            continue;
        }
        PyObject *pid = event_attr(o, kind, m_pid, s_pid);
        if (pid == NULL) {
            Py_DECREF(model);
            goto attr_fail;
        }
        PyList_SET_ITEM(ids, k, pid);
        PyList_SET_ITEM(models, k, model);
        valid[i] = 1;
        k++;
    }
    if (k == n) { /* every event valid: the lists themselves */
        good = Py_NewRef(events);
        kept = Py_NewRef(at);
    }
    else {
        if (PyList_SetSlice(ids, k, n, NULL) < 0 || PyList_SetSlice(models, k, n, NULL) < 0)
            goto fail;
        good = PyList_New(k);
        kept = PyList_New(k);
        if (good == NULL || kept == NULL)
            goto fail;
        for (Py_ssize_t i = 0, j = 0; i < n; i++)
            if (valid[i]) {
                PyList_SET_ITEM(good, j, Py_NewRef(PyList_GET_ITEM(events, i)));
                PyList_SET_ITEM(kept, j, Py_NewRef(PyList_GET_ITEM(at, i)));
                j++;
            }
    }
    PyMem_Free(valid);
    Py_XDECREF(known_model);
    return Py_BuildValue("(NNNNN)", good, ids, kept, dropped, models);
attr_fail:
    if (!PyErr_ExceptionMatches(PyExc_AttributeError))
        goto fail;
    PyErr_Clear();
decline:
    PyMem_Free(valid);
    Py_XDECREF(known_model);
    Py_XDECREF(ids);
    Py_XDECREF(models);
    Py_XDECREF(dropped);
    Py_RETURN_NONE;
fail:
    PyMem_Free(valid);
    Py_XDECREF(known_model);
    Py_XDECREF(ids);
    Py_XDECREF(models);
    Py_XDECREF(dropped);
    Py_XDECREF(good);
    Py_XDECREF(kept);
    return NULL;
}

/* ------------------------------------------------------------- stage 1's columns from lists
 * Stage 1's columns of a poll made from its Python lists in one C loop each, where numpy's
 * conversion of a list (a dtype found for each item, then each item packed) costs several
 * times the loop: a codec's remembered codes of many values (monitor/events/codec.py,
 * ModelCodec.code_many) and a column of poll indices or partitions (monitor/core/
 * fastpath.py). monitor/native.py holds their fallbacks, with the same results. */

PyDoc_STRVAR(memo_codes_doc,
"memo_codes(memo, values, out) -> int\n\n"
"out[i] = memo.get(values[i]) as float64 for each item of the list values (memo: a dict\n"
"whose values are floats or ints), NaN where memo holds none: what\n"
"np.array(list(map(memo.get, values)), dtype=np.float64) gives (out: C-contiguous\n"
"float64, len(values) items). Returns how many values memo does not hold. An unhashable\n"
"value raises TypeError, as memo.get does.");

static PyObject *
memo_codes(PyObject *self, PyObject *args)
{
    PyObject *memo, *values, *o_out;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!O", &PyDict_Type, &memo, &PyList_Type, &values, &o_out))
        return NULL;
    Py_buffer vo;
    if (doubles(o_out, &vo, 1, PyList_GET_SIZE(values), "out") < 0)
        return NULL;
    double *out = (double *)vo.buf;
    Py_ssize_t missing = 0;
    PyObject *result = NULL;
    Py_INCREF(memo);
    Py_INCREF(values);
    /* a value's hash or equality may run Python code (not a str, int, float or bool's):
     * the list's length is read again each time, and the items held while asked */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(values) && i < vo.len / 8; i++) {
        PyObject *v = PyList_GET_ITEM(values, i);
        Py_INCREF(v);
        PyObject *got = PyDict_GetItemWithError(memo, v); /* borrowed */
        Py_DECREF(v);
        if (got == NULL) {
            if (PyErr_Occurred())
                goto done;
            out[i] = NAN;
            missing++;
            continue;
        }
        double d;
        if (PyFloat_CheckExact(got)) {
            d = PyFloat_AS_DOUBLE(got);
        } else {
            Py_INCREF(got);
            d = PyFloat_AsDouble(got);
            Py_DECREF(got);
            if (d == -1.0 && PyErr_Occurred())
                goto done;
        }
        out[i] = d;
    }
    if (PyList_GET_SIZE(values) * 8 != vo.len) {
        PyErr_SetString(PyExc_RuntimeError, "values changed size during memo_codes");
        goto done;
    }
    result = PyLong_FromSsize_t(missing);
done:
    Py_DECREF(values);
    Py_DECREF(memo);
    PyBuffer_Release(&vo);
    return result;
}

PyDoc_STRVAR(int64s_doc,
"int64s(items, out) -> bool\n\n"
"Each item of the list items (exactly an int, within int64) into out (C-contiguous int64,\n"
"len(items) items): what np.fromiter(items, np.int64, len(items)) gives. False, with out\n"
"partly written, when an item is of another type or out of range (the caller converts\n"
"them with numpy, which raises or converts as it does).");

static PyObject *
int64s(PyObject *self, PyObject *args)
{
    PyObject *items, *o_out;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O", &PyList_Type, &items, &o_out))
        return NULL;
    Py_buffer vo;
    if (np_view(o_out, &vo, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(items);
    if (vo.itemsize != 8 || vo.len != n * 8) {
        PyErr_Format(PyExc_ValueError, "out: %zd int64 items expected", n);
        PyBuffer_Release(&vo);
        return NULL;
    }
    int64_t *out = (int64_t *)vo.buf;
    int ok = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyList_GET_ITEM(items, i);
        if (!PyLong_CheckExact(v)) {
            ok = 0;
            break;
        }
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow || (x == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            ok = 0;
            break;
        }
        out[i] = (int64_t)x;
    }
    PyBuffer_Release(&vo);
    return PyBool_FromLong(ok);
}

PyDoc_STRVAR(pending_owners_doc,
"pending_owners(tables, pids, out)\n\n"
"out[i] = the place in the list tables (PendingTables, a partition's, in model order) of\n"
"the first that holds pids[i] (a str) live, -1 for none (out: C-contiguous int64,\n"
"len(pids) items): JoinBuffer.owners of the ids with each table asked in turn, each id's\n"
"UTF-8 bytes and CRC-32 found once, in C, with no bytes object made for an ASCII id.\n"
"A table with no live row (_live 0) is not asked.");

/* The most tables pending_owners reads ahead in (each of them): with more, none. */
#define OWNERS_AHEAD 2

/* A pending table's index columns, read-only, for probe_row. */
typedef struct {
    arg_t a[5]; /* _slots, _hash, _ts, _ends, _blob */
    PyObject *cols[5];
    int shift, held;
} owners_table_t;

static void
owners_release(owners_table_t *t, Py_ssize_t n)
{
    for (Py_ssize_t j = 0; j < n; j++) {
        if (t[j].held)
            release(t[j].a, 5);
        for (int c = 0; c < 5; c++)
            Py_XDECREF(t[j].cols[c]);
    }
}

/* The index columns of table (an IdTable) into x when it has a live row: 1; 0 when it has
 * none (x untouched); -1 with an error set (x released). */
static int
owners_take(owners_table_t *x, PyObject *table)
{
    static const int names[5] = {A_SLOTS, A_HASH, A_TS, A_ENDS, A_BLOB};
    static const Py_ssize_t sizes_of[5] = {4, 4, 8, 8, 1};
    Py_ssize_t live, shift;
    if (get_int(table, A_LIVE, &live) < 0)
        return -1;
    if (live <= 0)
        return 0;
    if (get_int(table, A_SHIFT, &shift) < 0)
        return -1;
    for (int c = 0; c < 5; c++) {
        if ((x->cols[c] = PyObject_GetAttr(table, attr_name[names[c]])) == NULL)
            goto fail;
        x->a[c].obj = x->cols[c];
        x->a[c].itemsize = sizes_of[c];
        x->a[c].writable = 0;
        x->a[c].what = attr_text[names[c]];
    }
    if (acquire(x->a, 5) < 0)
        goto fail;
    x->held = 1;
    Py_ssize_t nslots = x->a[0].buf.len / 4, rows = x->a[1].buf.len / 4;
    if (nslots == 0 || shift < 0 || shift > 31 || ((Py_ssize_t)1 << (32 - shift)) != nslots ||
        x->a[2].buf.len / 8 < rows || x->a[3].buf.len / 8 < rows) {
        PyErr_SetString(PyExc_ValueError, "a table's index or columns are not consistent");
        goto fail;
    }
    x->shift = (int)shift;
    return 1;
fail:
    owners_release(x, 1);
    memset(x, 0, sizeof *x);
    return -1;
}

static PyObject *
pending_owners(PyObject *self, PyObject *args)
{
    PyObject *tables, *pids, *o_out;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!O", &PyList_Type, &tables, &PyList_Type, &pids, &o_out))
        return NULL;
    Py_ssize_t nt = PyList_GET_SIZE(tables), n = PyList_GET_SIZE(pids);
    Py_buffer vo;
    if (np_view(o_out, &vo, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0)
        return NULL;
    if (vo.itemsize != 8 || vo.len != n * 8) {
        PyErr_Format(PyExc_ValueError, "out: %zd int64 items expected", n);
        PyBuffer_Release(&vo);
        return NULL;
    }
    int64_t *out = (int64_t *)vo.buf;
    PyObject *result = NULL, *held_tables = PyList_GetSlice(tables, 0, nt);
    owners_table_t *t = PyMem_Calloc(nt ? (size_t)nt : 1, sizeof(owners_table_t));
    Py_ssize_t *live_at = PyMem_Calloc(nt ? (size_t)nt : 1, sizeof(Py_ssize_t));
    Py_ssize_t nlive = 0;
    uint32_t *crcs = NULL;
    if (held_tables == NULL || t == NULL || live_at == NULL) {
        if (t == NULL || live_at == NULL)
            PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t j = 0; j < nt; j++) {
        int taken = owners_take(&t[nlive], PyList_GET_ITEM(held_tables, j));
        if (taken < 0)
            goto done;
        if (taken)
            live_at[nlive++] = j;
    }
    if (nlive == 0) {
        for (Py_ssize_t i = 0; i < n; i++)
            out[i] = -1;
        result = Py_NewRef(Py_None);
        goto done;
    }
    /* with a large table, the ids' CRC-32s first, so that each table's reads are made
     * ahead of its probes (none when there are more than OWNERS_AHEAD tables: an id is in
     * one of them at most, and reads ahead in all of them would crowd the cache) */
    Py_ssize_t ahead = 0;
    if (nlive <= OWNERS_AHEAD)
        for (Py_ssize_t j = 0; j < nlive; j++)
            if (t[j].a[1].buf.len / 4 >= AHEAD_FROM_ROWS)
                ahead = nlive;
    if (ahead) {
        if ((crcs = PyMem_Malloc((size_t)(n ? n : 1) * sizeof *crcs)) == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        if (crcs_of(pids, 0, n, crcs) < 0)
            goto done;
    }
    probe_cols_t *cols = PyMem_Calloc((size_t)(ahead ? ahead : 1), sizeof *cols);
    if (cols == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t j = 0; j < ahead; j++) {
        owners_table_t *x = &t[j];
        cols[j].slots = (const int32_t *)x->a[0].buf.buf;
        cols[j].shift = x->shift;
        cols[j].hashes = (const uint32_t *)x->a[1].buf.buf;
        cols[j].ts = (const double *)x->a[2].buf.buf;
        cols[j].ends = (const int64_t *)x->a[3].buf.buf;
        cols[j].rows = x->a[1].buf.len / 4;
        cols[j].blob = (const char *)x->a[4].buf.buf;
        cols[j].blob_len = x->a[4].buf.len;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        out[i] = -1;
        for (Py_ssize_t j = 0; j < ahead; j++)
            probe_ahead(&cols[j], crcs, i, n);
        const char *p;
        Py_ssize_t size;
        PyObject *owned;
        if (utf8_view(PyList_GET_ITEM(pids, i), &p, &size, &owned) < 0) {
            PyMem_Free(cols);
            goto done;
        }
        uint32_t crc = ahead ? crcs[i] : crc32_of((const unsigned char *)p, size);
        for (Py_ssize_t j = 0; j < nlive; j++) {
            owners_table_t *x = &t[j];
            int64_t row = probe_row((const int32_t *)x->a[0].buf.buf, x->a[0].buf.len / 4,
                                    x->shift, (const uint32_t *)x->a[1].buf.buf,
                                    (const double *)x->a[2].buf.buf,
                                    (const int64_t *)x->a[3].buf.buf, x->a[1].buf.len / 4,
                                    (const char *)x->a[4].buf.buf, x->a[4].buf.len, p, size,
                                    crc);
            if (row == -2) {
                Py_XDECREF(owned);
                PyMem_Free(cols);
                goto done;
            }
            if (row >= 0) {
                out[i] = live_at[j];
                break;
            }
        }
        Py_XDECREF(owned);
    }
    PyMem_Free(cols);
    result = Py_NewRef(Py_None);
done:
    if (t != NULL)
        owners_release(t, nlive);
    PyMem_Free(t);
    PyMem_Free(live_at);
    PyMem_Free(crcs);
    Py_XDECREF(held_tables);
    PyBuffer_Release(&vo);
    return result;
}

PyDoc_STRVAR(held_groups_doc,
"held_groups(tables, pid_lists, out)\n\n"
"out[g] = 1 when tables[g] (an IdTable: a MatchedTable, a PendingTable) holds any id of\n"
"the list pid_lists[g] (str) live, else 0 (out: C-contiguous uint8 or bool, one per\n"
"table): each group's ids probed as pending_owners probes them, up to the first held; a\n"
"table with no live row (_live 0) is not asked.");

static PyObject *
held_groups(PyObject *self, PyObject *args)
{
    PyObject *tables, *lists, *o_out;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!O", &PyList_Type, &tables, &PyList_Type, &lists, &o_out))
        return NULL;
    Py_ssize_t groups = PyList_GET_SIZE(tables);
    Py_buffer vo;
    if (np_view(o_out, &vo, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0)
        return NULL;
    if (vo.itemsize != 1 || vo.len != groups || PyList_GET_SIZE(lists) != groups) {
        PyErr_Format(PyExc_ValueError, "pid_lists, out: %zd items expected", groups);
        PyBuffer_Release(&vo);
        return NULL;
    }
    uint8_t *out = (uint8_t *)vo.buf;
    PyObject *result = NULL;
    for (Py_ssize_t g = 0; g < groups; g++) {
        PyObject *pids = PyList_GET_ITEM(lists, g);
        out[g] = 0;
        if (!PyList_Check(pids)) {
            PyErr_SetString(PyExc_TypeError, "pid_lists: lists expected");
            goto done;
        }
        if (PyList_GET_SIZE(pids) == 0)
            continue;
        owners_table_t x;
        memset(&x, 0, sizeof x);
        int taken = owners_take(&x, PyList_GET_ITEM(tables, g));
        if (taken < 0)
            goto done;
        if (!taken)
            continue;
        int64_t row = -1;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(pids) && row == -1; i++) {
            const char *p;
            Py_ssize_t size;
            PyObject *owned;
            if (utf8_view(PyList_GET_ITEM(pids, i), &p, &size, &owned) < 0) {
                row = -2;
                break;
            }
            row = probe_row((const int32_t *)x.a[0].buf.buf, x.a[0].buf.len / 4, x.shift,
                            (const uint32_t *)x.a[1].buf.buf, (const double *)x.a[2].buf.buf,
                            (const int64_t *)x.a[3].buf.buf, x.a[1].buf.len / 4,
                            (const char *)x.a[4].buf.buf, x.a[4].buf.len, p, size,
                            crc32_of((const unsigned char *)p, size));
            Py_XDECREF(owned);
        }
        owners_release(&x, 1);
        if (row == -2)
            goto done;
        out[g] = row >= 0;
    }
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&vo);
    return result;
}

static PyMethodDef methods[] = {
    {"array_view", array_view, METH_VARARGS, array_view_doc},
    {"bin_rows", bin_rows, METH_VARARGS, bin_rows_doc},
    {"chi2_sf", chi2_sf, METH_VARARGS, chi2_sf_doc},
    {"cusum_arl", cusum_arl, METH_VARARGS, cusum_arl_doc},
    {"decode_each", decode_each, METH_VARARGS, decode_each_doc},
    {"decode_predictions", decode_predictions, METH_VARARGS, decode_predictions_doc},
    {"expired_front", expired_front, METH_VARARGS, expired_front_doc},
    {"id_keys", id_keys, METH_VARARGS, id_keys_doc},
    {"kcat_chunk", kcat_chunk, METH_VARARGS, kcat_chunk_doc},
    {"kcat_lines", kcat_lines, METH_VARARGS, kcat_lines_doc},
    {"kcat_unknown", kcat_unknown, METH_VARARGS, kcat_unknown_doc},
    {"longest", longest, METH_VARARGS, longest_doc},
    {"lookup", lookup, METH_VARARGS, lookup_doc},
    {"nonzero_rows", nonzero_rows, METH_VARARGS, nonzero_rows_doc},
    {"owner_candidates", owner_candidates, METH_VARARGS, owner_candidates_doc},
    {"owner_change", owner_change, METH_VARARGS, owner_change_doc},
    {"owner_find", owner_find, METH_VARARGS, owner_find_doc},
    {"owner_first", owner_first, METH_VARARGS, owner_first_doc},
    {"owner_put", owner_put, METH_VARARGS, owner_put_doc},
    {"owner_remove_groups", owner_remove_groups, METH_VARARGS, owner_remove_groups_doc},
    {"pending_add", pending_add, METH_VARARGS, pending_add_doc},
    {"pending_add_groups", pending_add_groups, METH_VARARGS, pending_add_groups_doc},
    {"pending_compact", pending_compact, METH_VARARGS, pending_compact_doc},
    {"pending_pop", pending_pop, METH_VARARGS, pending_pop_doc},
    {"pending_pop_groups", pending_pop_groups, METH_VARARGS, pending_pop_groups_doc},
    {"pane_columns", pane_columns, METH_VARARGS, pane_columns_doc},
    {"pane_rows", pane_rows, METH_VARARGS, pane_rows_doc},
    {"pane_sums", pane_sums, METH_VARARGS, pane_sums_doc},
    {"place", place, METH_VARARGS, place_doc},
    {"read_numbers", read_numbers, METH_VARARGS, read_numbers_doc},
    {"record_columns", record_columns, METH_VARARGS, record_columns_doc},
    {"record_direct", record_direct, METH_O, record_direct_doc},
    {"rows_add", rows_add, METH_VARARGS, rows_add_doc},
    {"rows_add_many", rows_add_many, METH_VARARGS, rows_add_many_doc},
    {"window_close", window_close, METH_VARARGS, window_close_doc},
    {"first_rows", first_rows, METH_VARARGS, first_rows_doc},
    {"window_close1", window_close1, METH_VARARGS, window_close1_doc},
    {"window_close1_cells", window_close1_cells, METH_VARARGS, window_close1_cells_doc},
    {"cells_count", cells_count, METH_O, cells_count_doc},
    {"cells_fill", cells_fill, METH_VARARGS, cells_fill_doc},
    {"cells_add", cells_add, METH_VARARGS, cells_add_doc},
    {"clear_arrays", clear_arrays, METH_VARARGS, clear_arrays_doc},
    /* ---- stage 2 window roll ---- */
    {"window_roll", window_roll, METH_VARARGS, window_roll_doc},
    {"attr_lists", attr_lists, METH_VARARGS, attr_lists_doc},
    {"none_at", none_at, METH_VARARGS, none_at_doc},
    {"topic_at", topic_at, METH_VARARGS, topic_at_doc},
    {"as_floats", as_floats, METH_VARARGS, as_floats_doc},
    {"keyed_rows", keyed_rows, METH_VARARGS, keyed_rows_doc},
    {"take_items", take_items, METH_VARARGS, take_items_doc},
    {"pair_columns", pair_columns, METH_VARARGS, pair_columns_doc},
    {"contained_at", contained_at, METH_VARARGS, contained_at_doc},
    {"group_sums", group_sums, METH_VARARGS, group_sums_doc},
    {"memo_codes", memo_codes, METH_VARARGS, memo_codes_doc},
    {"int64s", int64s, METH_VARARGS, int64s_doc},
    {"pending_owners", pending_owners, METH_VARARGS, pending_owners_doc},
    {"held_groups", held_groups, METH_VARARGS, held_groups_doc},
    /* ---- arrays joined end to end ---- */
    {"join_rows", join_rows, METH_VARARGS, join_rows_doc},
    /* ---- a prediction's features read from its JSON ---- */
    {"read_features", read_features, METH_VARARGS, read_features_doc},
    /* ---- a segment's shared ids ---- */
    {"shared_ids", shared_ids, METH_VARARGS, shared_ids_doc},
    /* ---- a topic's checked events ---- */
    {"checked_events", checked_events, METH_VARARGS, checked_events_doc},
    {"signal_lines", signal_lines, METH_VARARGS, signal_lines_doc},
    {"group_blocks", group_blocks, METH_VARARGS, group_blocks_doc},
    {"ordered_errors", ordered_errors, METH_VARARGS, ordered_errors_doc},
    {"cusum_panes", cusum_panes, METH_VARARGS, cusum_panes_doc},
    /* ---- a matched table's inserts ---- */
    {"matched_add_groups", matched_add_groups, METH_VARARGS, matched_add_groups_doc},
    {"matched_ids", matched_ids, METH_VARARGS, matched_ids_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "monitor._native",
    "Compiled kernels of the join's pending table and owner index (see monitor/core/join.py), "
    "of the pane scatter (monitor/core/layout.py), of the numbers read from the decoded "
    "events and the planner's reads of them (monitor/core/fastpath.py), of the pane close "
    "(monitor/core/windows.py), of a delta's row blocks (monitor/core/partials.py, "
    "monitor/core/windows.py), of the replay's reading of kcat -J lines (monitor/replay.py) "
    "and of the confluent source's records (monitor/kafka/confluent_source.py).",
    -1, methods,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    crc_init();
    string_stop_init();
#if defined(QUOTES_COMPACT)
    compact_init();
#endif
    for (int k = 0; k < R_METHODS; k++)
        if ((record_name[k] = PyUnicode_InternFromString(record_method[k])) == NULL)
            return NULL;
    for (int k = 0; k < A_NAMES; k++)
        if ((attr_name[k] = PyUnicode_InternFromString(attr_text[k])) == NULL)
            return NULL;
    if (one == NULL && (one = PyLong_FromLong(1)) == NULL)
        return NULL;
    return PyModule_Create(&module);
}
