/* Compiled kernels of the join's pending table (monitor/core/join.py, PendingTable).
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
#include <stdint.h>
#include <string.h>

#define GOLDEN 0x9E3779B1u /* join._GOLDEN: the home slot is the top bits of crc * this */

static int
view(PyObject *obj, Py_buffer *buf, Py_ssize_t itemsize, int writable, const char *what)
{
    if (PyObject_GetBuffer(obj, buf, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    if (buf->itemsize != itemsize && !(itemsize == 1 && buf->itemsize == 1)) {
        PyErr_Format(PyExc_TypeError, "%s: items of %zd bytes expected, got %zd", what,
                     itemsize, buf->itemsize);
        PyBuffer_Release(buf);
        return -1;
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
    (void)self;
    PyObject *o_slots, *o_hash, *o_ts, *o_ends, *o_blob, *keys, *o_crcs, *o_out;
    int shift;
    if (!PyArg_ParseTuple(args, "OOOOOiO!OO", &o_slots, &o_hash, &o_ts, &o_ends, &o_blob,
                          &shift, &PyList_Type, &keys, &o_crcs, &o_out))
        return NULL;
    Py_buffer b_slots, b_hash, b_ts, b_ends, b_blob, b_crcs, b_out;
    int got = 0;
    PyObject *result = NULL;
    if (view(o_slots, &b_slots, 4, 0, "slots") < 0) goto done;
    got = 1;
    if (view(o_hash, &b_hash, 4, 0, "hashes") < 0) goto done;
    got = 2;
    if (view(o_ts, &b_ts, 8, 0, "ts") < 0) goto done;
    got = 3;
    if (view(o_ends, &b_ends, 8, 0, "ends") < 0) goto done;
    got = 4;
    if (view(o_blob, &b_blob, 1, 0, "blob") < 0) goto done;
    got = 5;
    if (view(o_crcs, &b_crcs, 4, 0, "crcs") < 0) goto done;
    got = 6;
    if (view(o_out, &b_out, 8, 1, "out") < 0) goto done;
    got = 7;
    {
        const int32_t *slots = (const int32_t *)b_slots.buf;
        const uint32_t *hashes = (const uint32_t *)b_hash.buf;
        const double *ts = (const double *)b_ts.buf;
        const int64_t *ends = (const int64_t *)b_ends.buf;
        const char *blob = (const char *)b_blob.buf;
        const uint32_t *crcs = (const uint32_t *)b_crcs.buf;
        int64_t *out = (int64_t *)b_out.buf;
        Py_ssize_t nslots = b_slots.len / 4, rows = b_hash.len / 4;
        Py_ssize_t n = PyList_GET_SIZE(keys);
        if (nslots == 0 || (nslots & (nslots - 1)) != 0 || shift < 0 || shift > 31 ||
            ((Py_ssize_t)1 << (32 - shift)) != nslots) {
            PyErr_SetString(PyExc_ValueError, "slots: a power of two matching shift expected");
            goto done;
        }
        if (b_crcs.len / 4 < n || b_out.len / 8 < n || b_ts.len / 8 < rows ||
            b_ends.len / 8 < rows) {
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
                    if (end - start == size && start >= 0 && end <= b_blob.len &&
                        memcmp(blob + start, k, (size_t)size) == 0) {
                        found = row;
                        break;
                    }
                }
                pos = (pos + 1) & mask;
            }
            out[i] = found;
        }
    }
    result = Py_None;
    Py_INCREF(result);
done:
    if (got >= 7) PyBuffer_Release(&b_out);
    if (got >= 6) PyBuffer_Release(&b_crcs);
    if (got >= 5) PyBuffer_Release(&b_blob);
    if (got >= 4) PyBuffer_Release(&b_ends);
    if (got >= 3) PyBuffer_Release(&b_ts);
    if (got >= 2) PyBuffer_Release(&b_hash);
    if (got >= 1) PyBuffer_Release(&b_slots);
    return result;
}

PyDoc_STRVAR(place_doc,
"place(slots, hashes, ts, shift, rows)\n\n"
"Put each of rows (int64, live rows not in the index) in order into the first slot from\n"
"its home that is empty or holds a dead row (NaN time).");

static PyObject *
place(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *o_slots, *o_hash, *o_ts, *o_rows;
    int shift;
    if (!PyArg_ParseTuple(args, "OOOiO", &o_slots, &o_hash, &o_ts, &shift, &o_rows))
        return NULL;
    Py_buffer b_slots, b_hash, b_ts, b_rows;
    int got = 0;
    PyObject *result = NULL;
    if (view(o_slots, &b_slots, 4, 1, "slots") < 0) goto done;
    got = 1;
    if (view(o_hash, &b_hash, 4, 0, "hashes") < 0) goto done;
    got = 2;
    if (view(o_ts, &b_ts, 8, 0, "ts") < 0) goto done;
    got = 3;
    if (view(o_rows, &b_rows, 8, 0, "rows") < 0) goto done;
    got = 4;
    {
        int32_t *slots = (int32_t *)b_slots.buf;
        const uint32_t *hashes = (const uint32_t *)b_hash.buf;
        const double *ts = (const double *)b_ts.buf;
        const int64_t *todo = (const int64_t *)b_rows.buf;
        Py_ssize_t nslots = b_slots.len / 4, rows = b_hash.len / 4, n = b_rows.len / 8;
        if (nslots == 0 || (nslots & (nslots - 1)) != 0 || shift < 0 || shift > 31 ||
            ((Py_ssize_t)1 << (32 - shift)) != nslots || b_ts.len / 8 < rows) {
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
    }
    result = Py_None;
    Py_INCREF(result);
done:
    if (got >= 4) PyBuffer_Release(&b_rows);
    if (got >= 3) PyBuffer_Release(&b_ts);
    if (got >= 2) PyBuffer_Release(&b_hash);
    if (got >= 1) PyBuffer_Release(&b_slots);
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
    Py_buffer b_crcs;
    if (view(o_crcs, &b_crcs, 4, 1, "crcs") < 0)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(pids);
    PyObject *out = NULL;
    if (b_crcs.len / 4 < n) {
        PyErr_SetString(PyExc_ValueError, "crcs: shorter than the ids");
        goto done;
    }
    out = PyList_New(n);
    if (out == NULL)
        goto done;
    uint32_t *crcs = (uint32_t *)b_crcs.buf;
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
    PyBuffer_Release(&b_crcs);
    return out;
}

static PyMethodDef methods[] = {
    {"id_keys", id_keys, METH_VARARGS, id_keys_doc},
    {"lookup", lookup, METH_VARARGS, lookup_doc},
    {"place", place, METH_VARARGS, place_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "monitor._native",
    "Compiled kernels of the join's pending table (see monitor/core/join.py).", -1, methods,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    crc_init();
    return PyModule_Create(&module);
}
