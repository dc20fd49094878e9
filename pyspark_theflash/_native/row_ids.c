/* The column ids that TiDB rows carry, per table, in one pass over a batch's rows
 * (writer/schema_guard.py: rows that need a newer schema than the store holds).
 *
 * column_ids(key_offsets, key_data, key_offset, value_offsets, value_data, value_offset, n)
 *     -> ({table id: set of column ids} of the v2 rows, [(row number, table id) of the v1 rows])
 *
 * The buffers are two Arrow binary arrays (int32 offsets, no nulls) of n rows, from their
 * offsets: the rows' keys and values. A row counts when its value is not empty and its key is
 * a record key ('t', 8-byte memcomparable table id, "_r", ...; the table id not negative). A v2
 * value (TiDB's row format v2: byte 0x80, a flags byte, two little-endian uint16 counts of
 * not-null and null columns, then their ids: 1 byte each, or 4 with the "large" flag) gives
 * its ids; a value too short for its header gives none. Any other first byte is a v1 row
 * (the datum format), returned with its table id for the caller to decode. The rows of a table nearly
 * always carry the same id block, so a row whose (table, block) is one of the last few seen
 * is skipped with one memcmp: no Python object per row.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define ROW_V2 0x80
#define FLAG_LARGE 0x01
#define KEY_HEAD 11
#define RECENT 16

typedef struct {
    int64_t table_id;
    const uint8_t *block; /* the id bytes, inside value_data */
    Py_ssize_t len;
} Seen;

static int64_t record_table_id(const uint8_t *key, Py_ssize_t len) {
    if (len < KEY_HEAD || key[0] != 't' || key[9] != '_' || key[10] != 'r') return -1;
    uint64_t raw = 0;
    for (int i = 1; i <= 8; i++) raw = (raw << 8) | key[i];
    return (int64_t)(raw ^ ((uint64_t)1 << 63));
}

/* add the ids of one block to found[table_id]; 0 ok, -1 error (exception set) */
static int add_ids(PyObject *found, int64_t table_id, const uint8_t *block, Py_ssize_t count, int width) {
    PyObject *key = PyLong_FromLongLong(table_id);
    if (!key) return -1;
    PyObject *ids = PyDict_GetItemWithError(found, key);
    if (!ids) {
        if (PyErr_Occurred() || !(ids = PySet_New(NULL)) || PyDict_SetItem(found, key, ids) < 0) {
            Py_XDECREF(ids);
            Py_DECREF(key);
            return -1;
        }
        Py_DECREF(ids); /* the dict holds it */
    }
    Py_DECREF(key);
    for (Py_ssize_t i = 0; i < count; i++) {
        const uint8_t *p = block + i * width;
        uint32_t id = width == 4 ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
                                 : p[0];
        PyObject *v = PyLong_FromUnsignedLong(id);
        if (!v || PySet_Add(ids, v) < 0) {
            Py_XDECREF(v);
            return -1;
        }
        Py_DECREF(v);
    }
    return 0;
}

static PyObject *column_ids(PyObject *self, PyObject *args) {
    Py_buffer ko, kd, vo, vd;
    Py_ssize_t key_at, val_at, n;
    if (!PyArg_ParseTuple(args, "y*y*ny*y*nn", &ko, &kd, &key_at, &vo, &vd, &val_at, &n)) return NULL;
    PyObject *found = NULL, *v1 = NULL, *result = NULL;
    if (key_at < 0 || val_at < 0 || n < 0 || (key_at + n + 1) * 4 > ko.len || (val_at + n + 1) * 4 > vo.len) {
        PyErr_SetString(PyExc_ValueError, "column_ids: offsets shorter than the rows");
        goto done;
    }
    const int32_t *key_off = (const int32_t *)ko.buf + key_at, *val_off = (const int32_t *)vo.buf + val_at;
    const uint8_t *keys = kd.buf, *vals = vd.buf;
    if (!(found = PyDict_New()) || !(v1 = PyList_New(0))) goto done;
    Seen recent[RECENT];
    int n_recent = 0, next_slot = 0;
    for (Py_ssize_t r = 0; r < n; r++) {
        int32_t vlo = val_off[r], vhi = val_off[r + 1], klo = key_off[r], khi = key_off[r + 1];
        if (vhi <= vlo) continue;
        if (vlo < 0 || vhi > vd.len || klo < 0 || khi < klo || khi > kd.len) {
            PyErr_SetString(PyExc_ValueError, "column_ids: an offset outside its data");
            goto done;
        }
        int64_t tid = record_table_id(keys + klo, khi - klo);
        if (tid < 0) continue;
        const uint8_t *v = vals + vlo;
        Py_ssize_t len = vhi - vlo;
        if (v[0] != ROW_V2) {
            PyObject *row = Py_BuildValue("(nL)", r, (long long)tid);
            if (!row || PyList_Append(v1, row) < 0) {
                Py_XDECREF(row);
                goto done;
            }
            Py_DECREF(row);
            continue;
        }
        if (len < 6) continue;
        int width = (v[1] & FLAG_LARGE) ? 4 : 1;
        Py_ssize_t count = (Py_ssize_t)(v[2] | v[3] << 8) + (Py_ssize_t)(v[4] | v[5] << 8);
        if (count == 0 || len < 6 + count * width) continue;
        /* the block compared includes the flags byte: the same ids at another width are other bytes */
        const uint8_t *block = v + 1;
        Py_ssize_t block_len = 5 + count * width;
        int known = 0;
        for (int i = 0; i < n_recent; i++) {
            if (recent[i].table_id == tid && recent[i].len == block_len && memcmp(recent[i].block, block, block_len) == 0) {
                known = 1;
                break;
            }
        }
        if (known) continue;
        if (add_ids(found, tid, v + 6, count, width) < 0) goto done;
        recent[next_slot] = (Seen){tid, block, block_len};
        next_slot = (next_slot + 1) % RECENT;
        if (n_recent < RECENT) n_recent++;
    }
    result = PyTuple_Pack(2, found, v1);
done:
    Py_XDECREF(found);
    Py_XDECREF(v1);
    PyBuffer_Release(&ko);
    PyBuffer_Release(&kd);
    PyBuffer_Release(&vo);
    PyBuffer_Release(&vd);
    return result;
}

static PyMethodDef methods[] = {
    {"column_ids", column_ids, METH_VARARGS,
     "column_ids(key_offsets, key_data, key_offset, value_offsets, value_data, value_offset, n)"
     " -> ({table id: {column ids}}, [(v1 row, table id)])"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "row_ids", NULL, -1, methods};

PyMODINIT_FUNC PyInit_row_ids(void) { return PyModule_Create(&module); }
