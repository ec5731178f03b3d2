/* Compiled kernels of the join's pending table and owner index (monitor/core/join.py,
 * PendingTable and OwnerIndex).
 *
 * The pending table keeps its index as numpy columns: an open-addressing table of int32
 * row numbers (linear probing, -1 for an empty slot) over rows that hold the CRC-32 of
 * their id (uint32), their event time (float64, NaN for a dead row) and the end offset of
 * their id's UTF-8 bytes (int64) in one byte buffer. These functions probe and fill that
 * index exactly as join.py's numpy code does, one id at a time in C instead of a few dozen
 * numpy calls per poll: they read the columns through the buffer protocol (no numpy C
 * API, no build dependency besides Python's headers) and change nothing but the slots
 * (place) or the output rows (lookup). join.py falls back to its numpy code when this
 * module is not built; tests/core/test_native.py checks that both agree.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
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
        if (PyObject_GetBuffer(a->obj, &a->buf, flags) < 0) {
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
    Py_ssize_t mask = nslots - 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = PyList_GET_ITEM(keys, i);
        if (!PyBytes_Check(key)) {
            PyErr_SetString(PyExc_TypeError, "keys: bytes expected");
            goto done;
        }
        const char *k = PyBytes_AS_STRING(key);
        Py_ssize_t size = PyBytes_GET_SIZE(key);
        uint32_t crc = crcs[i];
        Py_ssize_t pos = home(crc, shift);
        int64_t found = -1;
        for (Py_ssize_t probes = 0; probes < nslots; probes++) {
            int32_t row = slots[pos];
            if (row < 0)
                break;
            if (row >= rows) {
                PyErr_SetString(PyExc_ValueError, "slots: a row beyond the columns");
                goto done;
            }
            double t = ts[row];
            if (t == t && hashes[row] == crc) {
                int64_t end = ends[row], start = row ? ends[row - 1] : 0;
                if (end - start == size && start >= 0 && end <= blob_len &&
                    memcmp(blob + start, k, (size_t)size) == 0) {
                    found = row;
                    break;
                }
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

static uint32_t crc_table[256];

static void
crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

/* CRC-32 as zlib.crc32 computes it (IEEE 802.3, reflected). */
static uint32_t
crc32_of(const unsigned char *p, Py_ssize_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (Py_ssize_t i = 0; i < n; i++)
        c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
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

/* Numbers read straight from the decoded events (monitor/core/fastpath.py): the numeric
 * features of a batch of predictions from their features structs (_feature_columns, into
 * the (features, events) float64 block and int8 codes of monitor/core/layout.py's
 * _numeric_block: 0 a number, 1 missing), and the events' times and scores (_times,
 * _predictions), slot by slot, in place of a Python list per attribute converted by numpy.
 * Only the common values are taken: a float, an int that converts exactly (|v| <= 2**53),
 * None; anything else (a bool, a string, a larger int, an object of another type) declines
 * the whole batch, which the caller then reads in Python. */

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
"read_numbers(objs, kind, names, codes, x) -> bool\n\n"
"Read the attributes names (a tuple of str, slots of the type kind) of each of objs\n"
"(a list of instances of exactly kind, or None) into x[j, i] (float64, C order\n"
"(len(names), len(objs)), NaN where no number) and codes[j, i] (int8: 0 a number, 1 None\n"
"or no object). Return False, with the outputs partly written, when a value is not a\n"
"float, an int of magnitude at most 2**53 or None, an item is neither a kind nor None,\n"
"or an attribute is not a slot.");

static PyObject *
read_numbers(PyObject *self, PyObject *args)
{
    PyObject *objs, *names, *o_codes, *o_x;
    PyTypeObject *kind;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!O!OO", &PyList_Type, &objs, &PyType_Type, &kind,
                          &PyTuple_Type, &names, &o_codes, &o_x))
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
            ok = 0;
            break;
        }
        for (Py_ssize_t j = 0; j < nf; j++) {
            PyObject *v = PyMember_GetOne((const char *)f, members[j]);
            if (v == NULL)
                goto done;
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
                    ok = 0;
                } else {
                    codes[j * n + i] = 0;
                    x[j * n + i] = (double)w;
                }
            } else {
                ok = 0;
            }
            Py_DECREF(v);
            if (!ok)
                break;
        }
    }
    result = Py_NewRef(ok ? Py_True : Py_False);
done:
    release(a, 2);
    PyMem_Free(members);
    return result;
}

static PyMethodDef methods[] = {
    {"id_keys", id_keys, METH_VARARGS, id_keys_doc},
    {"lookup", lookup, METH_VARARGS, lookup_doc},
    {"owner_candidates", owner_candidates, METH_VARARGS, owner_candidates_doc},
    {"owner_find", owner_find, METH_VARARGS, owner_find_doc},
    {"owner_put", owner_put, METH_VARARGS, owner_put_doc},
    {"place", place, METH_VARARGS, place_doc},
    {"read_numbers", read_numbers, METH_VARARGS, read_numbers_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "monitor._native",
    "Compiled kernels of the join's pending table and owner index (see monitor/core/join.py).",
    -1, methods,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    crc_init();
    return PyModule_Create(&module);
}
