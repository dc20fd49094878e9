/* cdcpb.ChangeDataEvent wire bytes -> columns, in one pass, without a Python object per row.
 *
 * decode(buf) -> (n_events, events, n_rows, types, ops, start_ts, commit_ts,
 *                 key_offsets, key_data, value_offsets, value_data, resolved_lo, resolved_hi)
 *
 * events: n_events records of 8 little-endian uint64 each:
 *   region_id, index, request_id, kind, row_lo, row_hi, payload_lo, payload_hi
 *   kind: 0 none, 3 entries (rows row_lo..row_hi), 4 admin, 5 error, 6 resolved_ts (deprecated),
 *   8 long_txn (the Event oneof's field numbers); payload_lo..hi: the Event's own bytes in buf.
 * rows: types and ops 1 byte a row (cdcpb Event.LogType, Event.Row.OpType), start/commit ts
 *   uint64 LE, keys and values in Arrow's binary layout (int32 offsets, count + 1).
 * resolved_lo..hi: the ChangeDataEvent.resolved_ts message's bytes in buf (-1, -1: none).
 * Field numbers: protos/cdcpb.proto (pingcap/kvproto cdcpb). Unknown fields are skipped as
 * protobuf skips them; a malformed message raises ValueError.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct { char *p; size_t n, cap; } Buf;

static int buf_put(Buf *b, const void *src, size_t len) {
    if (b->n + len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + len) cap *= 2;
        char *q = (char *)realloc(b->p, cap);
        if (!q) return -1;
        b->p = q; b->cap = cap;
    }
    if (len) memcpy(b->p + b->n, src, len);
    b->n += len;
    return 0;
}

typedef struct { const uint8_t *p, *end; } Cur;

static int rd_varint(Cur *c, uint64_t *out) {
    uint64_t v = 0; int shift = 0;
    while (c->p < c->end && shift < 64) {
        uint8_t b = *c->p++;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) { *out = v; return 0; }
        shift += 7;
    }
    return -1;
}

/* skip a field of wire type wt; 0 ok */
static int skip(Cur *c, int wt) {
    uint64_t n;
    switch (wt) {
    case 0: return rd_varint(c, &n);
    case 1: if (c->end - c->p < 8) return -1; c->p += 8; return 0;
    case 2: if (rd_varint(c, &n) || (uint64_t)(c->end - c->p) < n) return -1; c->p += n; return 0;
    case 5: if (c->end - c->p < 4) return -1; c->p += 4; return 0;
    default: return -1;
    }
}

static int rd_len(Cur *c, Cur *sub) {
    uint64_t n;
    if (rd_varint(c, &n) || (uint64_t)(c->end - c->p) < n) return -1;
    sub->p = c->p; sub->end = c->p + n; c->p += n;
    return 0;
}

typedef struct {
    Buf events, types, ops, start, commit, koff, kdata, voff, vdata;
    uint64_t rows;
} Out;

static int put_u64(Buf *b, uint64_t v) { return buf_put(b, &v, 8); }  /* little-endian hosts only */

static int row(Out *o, Cur c) {
    uint64_t start = 0, commit = 0, type = 0, op = 0, tag, v;
    Cur key = {NULL, NULL}, value = {NULL, NULL};
    while (c.p < c.end) {
        if (rd_varint(&c, &tag)) return -1;
        int f = (int)(tag >> 3), wt = (int)(tag & 7);
        if (wt == 0 && f >= 1 && f <= 4) {
            if (rd_varint(&c, &v)) return -1;
            if (f == 1) start = v; else if (f == 2) commit = v; else if (f == 3) type = v; else op = v;
        } else if (wt == 2 && (f == 5 || f == 6)) {
            if (rd_len(&c, f == 5 ? &key : &value)) return -1;
        } else if (skip(&c, wt)) return -1;
    }
    uint8_t t8 = (uint8_t)(type > 255 ? 255 : type), o8 = (uint8_t)(op > 255 ? 255 : op);
    size_t kl = key.p ? (size_t)(key.end - key.p) : 0, vl = value.p ? (size_t)(value.end - value.p) : 0;
    if (o->kdata.n + kl > INT32_MAX || o->vdata.n + vl > INT32_MAX) return -2;
    int32_t ko, vo;
    if (buf_put(&o->types, &t8, 1) || buf_put(&o->ops, &o8, 1) || put_u64(&o->start, start) ||
        put_u64(&o->commit, commit) || buf_put(&o->kdata, key.p, kl) || buf_put(&o->vdata, value.p, vl)) return -3;
    ko = (int32_t)o->kdata.n; vo = (int32_t)o->vdata.n;
    if (buf_put(&o->koff, &ko, 4) || buf_put(&o->voff, &vo, 4)) return -3;
    o->rows++;
    return 0;
}

static int event(Out *o, Cur c, const uint8_t *base) {
    uint64_t rec[8] = {0, 0, 0, 0, o->rows, o->rows, (uint64_t)(c.p - base), (uint64_t)(c.end - base)};
    uint64_t tag, v;
    while (c.p < c.end) {
        if (rd_varint(&c, &tag)) return -1;
        int f = (int)(tag >> 3), wt = (int)(tag & 7);
        if (wt == 0 && (f == 1 || f == 2 || f == 7 || f == 6)) {
            if (rd_varint(&c, &v)) return -1;
            if (f == 1) rec[0] = v; else if (f == 2) rec[1] = v; else if (f == 7) rec[2] = v; else rec[3] = 6;
        } else if (wt == 2 && f == 3) {
            Cur entries, r;
            if (rd_len(&c, &entries)) return -1;
            rec[3] = 3; rec[4] = o->rows;
            while (entries.p < entries.end) {
                if (rd_varint(&entries, &tag)) return -1;
                if (tag == ((1 << 3) | 2)) {
                    int rc;
                    if (rd_len(&entries, &r)) return -1;
                    if ((rc = row(o, r))) return rc;
                } else if (skip(&entries, (int)(tag & 7))) return -1;
            }
            rec[5] = o->rows;
        } else if (wt == 2 && (f == 4 || f == 5 || f == 8)) {
            Cur sub;
            if (rd_len(&c, &sub)) return -1;
            rec[3] = (uint64_t)f;
        } else if (skip(&c, wt)) return -1;
    }
    if (rec[3] != 3) rec[4] = rec[5] = o->rows;
    return buf_put(&o->events, rec, sizeof rec) ? -3 : 0;
}

static void out_free(Out *o) {
    free(o->events.p); free(o->types.p); free(o->ops.p); free(o->start.p); free(o->commit.p);
    free(o->koff.p); free(o->kdata.p); free(o->voff.p); free(o->vdata.p);
}

static PyObject *as_bytes(Buf *b) { return PyBytes_FromStringAndSize(b->p ? b->p : "", (Py_ssize_t)b->n); }

static PyObject *decode(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    Out o; memset(&o, 0, sizeof o);
    int32_t zero = 0;
    long long rlo = -1, rhi = -1;
    int rc = 0;
    const uint8_t *base = (const uint8_t *)view.buf;
    Py_BEGIN_ALLOW_THREADS
    Cur c = {base, base + view.len};
    uint64_t tag;
    if (buf_put(&o.koff, &zero, 4) || buf_put(&o.voff, &zero, 4)) rc = -3;
    while (!rc && c.p < c.end) {
        if (rd_varint(&c, &tag)) { rc = -1; break; }
        if (tag == ((1 << 3) | 2)) {
            Cur ev;
            if (rd_len(&c, &ev)) { rc = -1; break; }
            rc = event(&o, ev, base);
        } else if (tag == ((2 << 3) | 2)) {
            Cur r;
            if (rd_len(&c, &r)) { rc = -1; break; }
            rlo = (long long)(r.p - base); rhi = (long long)(r.end - base);
        } else if (skip(&c, (int)(tag & 7))) rc = -1;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (rc) {
        out_free(&o);
        if (rc == -3) return PyErr_NoMemory();
        PyErr_SetString(PyExc_ValueError, rc == -2 ? "a ChangeDataEvent's keys or values exceed 2 GiB"
                                                  : "malformed cdcpb.ChangeDataEvent (a truncated field or a bad wire type)");
        return NULL;
    }
    PyObject *res = Py_BuildValue("(nNnNNNNNNNNLL)", (Py_ssize_t)(o.events.n / 64), as_bytes(&o.events),
                                  (Py_ssize_t)o.rows, as_bytes(&o.types), as_bytes(&o.ops), as_bytes(&o.start),
                                  as_bytes(&o.commit), as_bytes(&o.koff), as_bytes(&o.kdata), as_bytes(&o.voff),
                                  as_bytes(&o.vdata), rlo, rhi);
    out_free(&o);
    return res;
}

static PyMethodDef methods[] = {
    {"decode", decode, METH_O, "cdcpb.ChangeDataEvent bytes -> columns (see the module's source)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "cdc_wire", NULL, -1, methods};

PyMODINIT_FUNC PyInit_cdc_wire(void) { return PyModule_Create(&module); }
