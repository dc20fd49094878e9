/* cdcpb.ChangeDataEvent wire bytes -> columns, in one pass, without a Python object per row;
 * and a registration's live rows matched into the binlog's columns (match_live, further down).
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


#define MATCH_RELEASE_ROWS 4096 /* rows from which match_live lets the GIL go */

/* ------------------------------------------------------------------ live rows: matching
 *
 * OpenSet: a registration's open (key, start ts) pairs — the PREWRITEs seen without their
 * COMMIT or ROLLBACK yet — as a hash set (open addressing, linear probing, backward-shift
 * deletion), so matching a row costs one probe and no Python object.
 *
 * match_live(open_set, columns, spans, resolved_ts, type_map, op_map) applies RegionFeed._live's
 * rules (capture/region_feed.py) row by row in feed order to the rows of ``spans`` that are
 * record keys (``t{8}_r...``), and returns the binlog columns to write:
 *   (0, -1, n, types, ops, start_ts, commit_ts, key_offsets, key_data, value_offsets, value_data,
 *    the greatest commit ts among them)
 * or, where the feed broke a rule, (1, row) for a commit at or below resolved_ts and (2, row) for
 * a COMMIT without its PREWRITE (the open set is then left part-way: the caller drops the
 * registration). columns: the decoder's (types, ops, start_ts, commit_ts, key_offsets, key_data,
 * value_offsets, value_data) buffers; type_map, op_map: 256 bytes each, cdcpb code -> binlog code.
 */

/* A slot's key lives inside it when short (a record key is 19 bytes), else on the heap. */
#define INLINE_KEY 24
typedef struct {
    uint64_t hash, start;
    uint32_t klen, used;
    union { uint8_t inl[INLINE_KEY]; uint8_t *heap; } k;
} Slot;

static const uint8_t *slot_key(const Slot *e) { return e->klen <= INLINE_KEY ? e->k.inl : e->k.heap; }
static void slot_free(Slot *e) { if (e->used && e->klen > INLINE_KEY) free(e->k.heap); e->used = 0; }

typedef struct {
    PyObject_HEAD
    Slot *slots;
    size_t cap, n;  /* cap a power of two */
} OpenSet;

static uint64_t mix64(uint64_t h) {
    h ^= h >> 33; h *= 0xFF51AFD7ED558CCDULL; h ^= h >> 33; h *= 0xC4CEB9FE1A85EC53ULL; h ^= h >> 33;
    return h;
}

/* a word at a time: a record key is three loads */
static uint64_t pair_hash(const uint8_t *k, size_t n, uint64_t start) {
    uint64_t h = mix64(start ^ ((uint64_t)n << 56));
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w; memcpy(&w, k + i, 8);
        h = mix64(h ^ w) + 0x9E3779B97F4A7C15ULL;
    }
    if (i < n) {
        uint64_t w = 0; memcpy(&w, k + i, n - i);
        h = mix64(h ^ w);
    }
    return h;
}

static size_t os_find(const OpenSet *s, uint64_t h, const uint8_t *k, size_t n, uint64_t start) {
    size_t mask = s->cap - 1, i = (size_t)h & mask;
    for (;; i = (i + 1) & mask) {
        const Slot *e = &s->slots[i];
        if (!e->used) return i;
        if (e->hash == h && e->start == start && e->klen == n && memcmp(slot_key(e), k, n) == 0) return i;
    }
}

static int os_grow(OpenSet *s) {
    size_t cap = s->cap ? s->cap * 2 : 64;
    Slot *old = s->slots, *slots = (Slot *)calloc(cap, sizeof(Slot));
    if (!slots) return -1;
    size_t old_cap = s->cap;
    s->slots = slots; s->cap = cap;
    for (size_t i = 0; i < old_cap; i++) {
        if (!old[i].used) continue;
        size_t j = (size_t)old[i].hash & (cap - 1);
        while (slots[j].used) j = (j + 1) & (cap - 1);
        slots[j] = old[i];
    }
    free(old);
    return 0;
}

/* 1 added, 0 already there, -1 out of memory */
static int os_add(OpenSet *s, const uint8_t *k, size_t n, uint64_t start) {
    if ((s->n + 1) * 4 > s->cap * 3 && os_grow(s)) return -1;
    uint64_t h = pair_hash(k, n, start);
    size_t i = os_find(s, h, k, n, start);
    Slot *e = &s->slots[i];
    if (e->used) return 0;
    if (n > INLINE_KEY) {
        if (!(e->k.heap = (uint8_t *)malloc(n))) return -1;
        memcpy(e->k.heap, k, n);
    } else if (n) {
        memcpy(e->k.inl, k, n);
    }
    e->hash = h; e->start = start; e->klen = (uint32_t)n; e->used = 1;
    s->n++;
    return 1;
}

/* 1 removed, 0 absent */
static int os_remove(OpenSet *s, const uint8_t *k, size_t n, uint64_t start) {
    if (!s->n) return 0;
    size_t mask = s->cap - 1, i = os_find(s, pair_hash(k, n, start), k, n, start);
    if (!s->slots[i].used) return 0;
    slot_free(&s->slots[i]);
    s->n--;
    /* backward shift: move up every entry of the probe run after i that may sit at i */
    for (size_t j = (i + 1) & mask; s->slots[j].used; j = (j + 1) & mask) {
        size_t home = (size_t)s->slots[j].hash & mask;
        int movable = (i <= j) ? (home <= i || home > j) : (home <= i && home > j);
        if (movable) { s->slots[i] = s->slots[j]; s->slots[j].used = 0; i = j; }
    }
    return 1;
}

static void os_clear(OpenSet *s) {
    for (size_t i = 0; i < s->cap; i++) slot_free(&s->slots[i]);
    free(s->slots);
    s->slots = NULL; s->cap = s->n = 0;
}

static void OpenSet_dealloc(OpenSet *s) { os_clear(s); Py_TYPE(s)->tp_free((PyObject *)s); }

static Py_ssize_t OpenSet_len(OpenSet *s) { return (Py_ssize_t)s->n; }

static int pair_args(PyObject *args, Py_buffer *key, unsigned long long *start) {
    return PyArg_ParseTuple(args, "y*K", key, start) ? 0 : -1;
}

static PyObject *OpenSet_add(OpenSet *s, PyObject *args) {
    Py_buffer key; unsigned long long start;
    if (pair_args(args, &key, &start)) return NULL;
    int rc = key.len > UINT32_MAX ? -1 : os_add(s, (const uint8_t *)key.buf, (size_t)key.len, start);
    PyBuffer_Release(&key);
    if (rc < 0) return PyErr_NoMemory();
    return PyBool_FromLong(rc);
}

static PyObject *OpenSet_discard(OpenSet *s, PyObject *args) {
    Py_buffer key; unsigned long long start;
    if (pair_args(args, &key, &start)) return NULL;
    int rc = os_remove(s, (const uint8_t *)key.buf, (size_t)key.len, start);
    PyBuffer_Release(&key);
    return PyBool_FromLong(rc);
}

static PyObject *OpenSet_contains_pair(OpenSet *s, PyObject *args) {
    Py_buffer key; unsigned long long start;
    if (pair_args(args, &key, &start)) return NULL;
    int found = 0;
    if (s->n) {
        uint64_t h = pair_hash((const uint8_t *)key.buf, (size_t)key.len, start);
        found = s->slots[os_find(s, h, (const uint8_t *)key.buf, (size_t)key.len, start)].used;
    }
    PyBuffer_Release(&key);
    return PyBool_FromLong(found);
}

static PyObject *OpenSet_pairs(OpenSet *s, PyObject *unused) {
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    for (size_t i = 0; i < s->cap; i++) {
        if (!s->slots[i].used) continue;
        PyObject *t = Py_BuildValue("(y#K)", (const char *)slot_key(&s->slots[i]), (Py_ssize_t)s->slots[i].klen,
                                    (unsigned long long)s->slots[i].start);
        if (!t || PyList_Append(out, t)) { Py_XDECREF(t); Py_DECREF(out); return NULL; }
        Py_DECREF(t);
    }
    return out;
}

static PyMethodDef OpenSet_methods[] = {
    {"add", (PyCFunction)OpenSet_add, METH_VARARGS, "add(key, start_ts) -> whether it was new"},
    {"discard", (PyCFunction)OpenSet_discard, METH_VARARGS, "discard(key, start_ts) -> whether it was there"},
    {"holds", (PyCFunction)OpenSet_contains_pair, METH_VARARGS, "holds(key, start_ts) -> bool"},
    {"pairs", (PyCFunction)OpenSet_pairs, METH_NOARGS, "[(key, start_ts)] in no order"},
    {NULL, NULL, 0, NULL}};

static PySequenceMethods OpenSet_seq = {.sq_length = (lenfunc)OpenSet_len};

static PyTypeObject OpenSetType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyspark_theflash._native.cdc_wire.OpenSet",
    .tp_basicsize = sizeof(OpenSet),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A registration's open (key, start ts) pairs (see match_live).",
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)OpenSet_dealloc,
    .tp_methods = OpenSet_methods,
    .tp_as_sequence = &OpenSet_seq,
};

enum { CDC_PREWRITE = 1, CDC_COMMIT = 2, CDC_ROLLBACK = 3, CDC_COMMITTED = 4, CDC_PUT = 1, CDC_DELETE = 2 };

static int is_record_key(const uint8_t *k, size_t n) {
    return n >= 19 && k[0] == 't' && k[9] == '_' && k[10] == 'r';
}

typedef struct { Buf types, ops, start, commit, koff, kdata, voff, vdata; uint64_t rows; } LiveOut;

static void live_free(LiveOut *o) {
    free(o->types.p); free(o->ops.p); free(o->start.p); free(o->commit.p);
    free(o->koff.p); free(o->kdata.p); free(o->voff.p); free(o->vdata.p);
}

static int live_put(LiveOut *o, uint8_t type, uint8_t op, uint64_t start, uint64_t commit,
                    const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    if (o->kdata.n + kl > INT32_MAX || o->vdata.n + vl > INT32_MAX) return -2;
    if (buf_put(&o->types, &type, 1) || buf_put(&o->ops, &op, 1) || put_u64(&o->start, start) ||
        put_u64(&o->commit, commit) || buf_put(&o->kdata, k, kl) || buf_put(&o->vdata, v, vl)) return -3;
    int32_t ko = (int32_t)o->kdata.n, vo = (int32_t)o->vdata.n;
    if (buf_put(&o->koff, &ko, 4) || buf_put(&o->voff, &vo, 4)) return -3;
    o->rows++;
    return 0;
}

/* The decoder's row columns, as match_rows reads them. */
typedef struct {
    const uint8_t *types, *ops, *starts, *commits, *kd, *vd, *tm, *om;
    const int32_t *ko, *vo;
    Py_ssize_t n_rows;
} Rows;

/* Rows lo..hi matched against `open` in feed order into `o` (RegionFeed._live's rules; see
 * capture/feed_columns.py). 0, or 1 (a commit at or below `resolved`) / 2 (a COMMIT without
 * its PREWRITE) with *bad_row set, or -2 / -3 (2 GiB of keys or values; no memory).
 * *newest: the greatest commit ts written so far. */
static int match_rows(OpenSet *open, const Rows *c, Py_ssize_t lo, Py_ssize_t hi, uint64_t resolved, LiveOut *o,
                      uint64_t *newest, long long *bad_row) {
    int rc = 0;
    for (Py_ssize_t r = lo; r < hi; r++) {
        const uint8_t *k = c->kd + c->ko[r];
        size_t kl = (size_t)(c->ko[r + 1] - c->ko[r]);
        if (!is_record_key(k, kl)) continue;  /* index entries are not rows */
        uint8_t t = c->types[r], op = c->ops[r];
        uint64_t start, commit;
        memcpy(&start, c->starts + 8 * r, 8); memcpy(&commit, c->commits + 8 * r, 8);
        int data_op = op == CDC_PUT || op == CDC_DELETE;
        size_t vl = op == CDC_PUT ? (size_t)(c->vo[r + 1] - c->vo[r]) : 0;
        if ((t == CDC_COMMIT || t == CDC_COMMITTED) && commit <= resolved) { *bad_row = r; return 1; }
        if (t == CDC_PREWRITE) {
            if (!data_op) continue;  /* a Lock or pessimistic prewrite is not a row */
            if (os_add(open, k, kl, start) < 0) return -3;
            rc = live_put(o, c->tm[t], c->om[op], start, 0, k, kl, c->vd + c->vo[r], vl);
        } else if (t == CDC_COMMIT) {
            if (!os_remove(open, k, kl, start)) { *bad_row = r; return 2; }
            if (commit > *newest) *newest = commit;
            rc = live_put(o, c->tm[t], 0, start, commit, k, kl, NULL, 0);  /* the value is the PREWRITE's */
        } else if (t == CDC_ROLLBACK) {
            if (!os_remove(open, k, kl, start)) continue;  /* a lock the replica never had */
            rc = live_put(o, c->tm[t], 0, start, 0, k, kl, NULL, 0);
        } else if (t == CDC_COMMITTED && data_op) {
            if (commit > *newest) *newest = commit;
            rc = live_put(o, c->tm[t], c->om[op], start, commit, k, kl, c->vd + c->vo[r], vl);
        }
        if (rc) return rc;
    }
    return 0;
}

/* The decoder's 8 row buffers and the two 256-byte code maps, checked, into `c`. */
static int rows_from(PyObject *cols, Py_buffer *b, int *got, Py_buffer *tmap, Py_buffer *omap, Rows *c) {
    if (tmap && (tmap->len != 256 || omap->len != 256)) {
        PyErr_SetString(PyExc_ValueError, "type_map and op_map are 256 bytes each"); return -1;
    }
    if (!PyTuple_Check(cols) || PyTuple_GET_SIZE(cols) != 8) {
        PyErr_SetString(PyExc_TypeError, "columns: a tuple of the decoder's 8 row buffers"); return -1;
    }
    for (; *got < 8; (*got)++)
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(cols, *got), &b[*got], PyBUF_SIMPLE) < 0) return -1;
    Py_ssize_t n_rows = b[0].len;
    if (b[1].len != n_rows || b[2].len != 8 * n_rows || b[3].len != 8 * n_rows || b[4].len != 4 * (n_rows + 1) ||
        b[6].len != 4 * (n_rows + 1)) {
        PyErr_SetString(PyExc_ValueError, "columns of unequal lengths"); return -1;
    }
    c->types = b[0].buf; c->ops = b[1].buf; c->starts = b[2].buf; c->commits = b[3].buf;
    c->ko = b[4].buf; c->kd = b[5].buf; c->vo = b[6].buf; c->vd = b[7].buf;
    c->tm = tmap ? tmap->buf : NULL; c->om = omap ? omap->buf : NULL; c->n_rows = n_rows;
    return 0;
}

static PyObject *live_rows_tuple(LiveOut *o) {
    return Py_BuildValue("nNNNNNNNN", (Py_ssize_t)o->rows, as_bytes(&o->types), as_bytes(&o->ops),
                         as_bytes(&o->start), as_bytes(&o->commit), as_bytes(&o->koff), as_bytes(&o->kdata),
                         as_bytes(&o->voff), as_bytes(&o->vdata));
}

static PyObject *match_live(PyObject *self, PyObject *args) {
    PyObject *set_obj, *cols, *spans;
    unsigned long long resolved;
    Py_buffer tmap, omap;
    if (!PyArg_ParseTuple(args, "O!OOKy*y*", &OpenSetType, &set_obj, &cols, &spans, &resolved, &tmap, &omap))
        return NULL;
    Py_buffer b[8];
    int got = 0, rc = 0;
    long long bad_row = -1;
    PyObject *span_fast = NULL, *res = NULL;
    LiveOut o; memset(&o, 0, sizeof o);
    Rows c;
    if (rows_from(cols, b, &got, &tmap, &omap, &c) < 0) goto done;
    span_fast = PySequence_Fast(spans, "spans: a sequence of (lo, hi)");
    if (!span_fast) goto done;
    Py_ssize_t n_spans = PySequence_Fast_GET_SIZE(span_fast);
    Py_ssize_t *lohi = (Py_ssize_t *)PyMem_Malloc(sizeof(Py_ssize_t) * 2 * (size_t)(n_spans ? n_spans : 1));
    if (!lohi) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t i = 0; i < n_spans; i++) {
        PyObject *sp = PySequence_Fast_GET_ITEM(span_fast, i);
        if (!PyArg_ParseTuple(sp, "nn", &lohi[2 * i], &lohi[2 * i + 1])) { PyMem_Free(lohi); goto done; }
        if (lohi[2 * i] < 0 || lohi[2 * i] > lohi[2 * i + 1] || lohi[2 * i + 1] > c.n_rows) {
            PyMem_Free(lohi); PyErr_SetString(PyExc_IndexError, "a span outside the rows"); goto done;
        }
    }
    int32_t zero = 0;
    /* The GIL is let go only for a large match: a region's share of a message is a few dozen
     * rows (a microsecond of work), and taking the GIL back from the stream threads decoding
     * beside it cost far more than that (py-spy at 10,000 regions: a third of the main loop). */
    Py_ssize_t n_match = 0;
    for (Py_ssize_t s = 0; s < n_spans; s++) n_match += lohi[2 * s + 1] - lohi[2 * s];
    uint64_t newest = 0;  /* the greatest commit ts written: what the rows wait for (the DDL frontier) */
    PyThreadState *released = n_match >= MATCH_RELEASE_ROWS ? PyEval_SaveThread() : NULL;
    if (buf_put(&o.koff, &zero, 4) || buf_put(&o.voff, &zero, 4)) rc = -3;
    for (Py_ssize_t s = 0; !rc && s < n_spans; s++)
        rc = match_rows((OpenSet *)set_obj, &c, lohi[2 * s], lohi[2 * s + 1], resolved, &o, &newest, &bad_row);
    if (released) PyEval_RestoreThread(released);
    PyMem_Free(lohi);
    if (rc == -3) { PyErr_NoMemory(); goto done; }
    if (rc == -2) { PyErr_SetString(PyExc_ValueError, "a poll's keys or values exceed 2 GiB"); goto done; }
    if (rc > 0) { res = Py_BuildValue("(iL)", rc, bad_row); goto done; }
    res = Py_BuildValue("(iLNK)", 0, -1LL, live_rows_tuple(&o), (unsigned long long)newest);
done:
    live_free(&o);
    Py_XDECREF(span_fast);
    for (int i = 0; i < got; i++) PyBuffer_Release(&b[i]);
    PyBuffer_Release(&tmap); PyBuffer_Release(&omap);
    return res;
}

/* match_live over many registrations of one message at once: one call per ChangeDataEvent, not
 * one per region in it.
 *
 * match_live_many(sets, resolved, columns, spans, type_map, op_map)
 *   sets: a tuple of OpenSet, one per registration ("slot"); resolved: uint64 LE per slot;
 *   spans: int64 LE triples (row_lo, row_hi, slot), a slot's spans consecutive and in feed order.
 * -> (rows, slot_rows, slot_newest, errors): rows as match_live's, every slot's rows together in
 *   the order its spans come; slot_rows int64 LE per slot (its rows' count), slot_newest uint64 LE
 *   per slot (its greatest commit ts written); errors a list of (slot, code, row) for each slot
 *   whose rows broke the feed's rules (codes as match_live's): nothing of that slot is written
 *   and its open set is left part-way (its registration is dropped). */
static PyObject *match_live_many(PyObject *self, PyObject *args) {
    PyObject *sets, *cols;
    Py_buffer resolved_buf, span_buf, tmap, omap;
    if (!PyArg_ParseTuple(args, "O!y*Oy*y*y*", &PyTuple_Type, &sets, &resolved_buf, &cols, &span_buf, &tmap, &omap))
        return NULL;
    Py_buffer b[8];
    int got = 0, rc = 0;
    PyObject *res = NULL, *errors = NULL;
    LiveOut o; memset(&o, 0, sizeof o);
    Buf slot_rows = {0}, slot_newest = {0};
    Rows c;
    if (rows_from(cols, b, &got, &tmap, &omap, &c) < 0) goto done;
    Py_ssize_t n_slots = PyTuple_GET_SIZE(sets);
    if (resolved_buf.len != 8 * n_slots || span_buf.len % 24) {
        PyErr_SetString(PyExc_ValueError, "resolved: 8 bytes a slot; spans: 24 bytes a span"); goto done;
    }
    for (Py_ssize_t i = 0; i < n_slots; i++)
        if (!PyObject_TypeCheck(PyTuple_GET_ITEM(sets, i), &OpenSetType)) {
            PyErr_SetString(PyExc_TypeError, "sets: a tuple of OpenSet"); goto done;
        }
    const int64_t *sp = span_buf.buf;
    Py_ssize_t n_spans = span_buf.len / 24, n_match = 0;
    for (Py_ssize_t i = 0; i < n_spans; i++) {
        int64_t lo = sp[3 * i], hi = sp[3 * i + 1], slot = sp[3 * i + 2];
        if (lo < 0 || lo > hi || hi > c.n_rows || slot < 0 || slot >= n_slots ||
            (i && slot != sp[3 * i - 1] && slot < sp[3 * i - 1])) {
            PyErr_SetString(PyExc_IndexError, "a span outside the rows or the slots, or slots out of order"); goto done;
        }
        n_match += hi - lo;
    }
    if (!(errors = PyList_New(0))) goto done;
    const uint64_t *resolved = resolved_buf.buf;
    int32_t zero = 0;
    /* every slot's count and newest, in slot order (a slot without spans: 0 rows) */
    for (Py_ssize_t s = 0; s < n_slots; s++) {
        int64_t z = 0;
        if (buf_put(&slot_rows, &z, 8) || buf_put(&slot_newest, &z, 8)) { PyErr_NoMemory(); goto done; }
    }
    int64_t *counts = (int64_t *)slot_rows.p;
    uint64_t *newest = (uint64_t *)slot_newest.p;
    PyThreadState *released = n_match >= MATCH_RELEASE_ROWS ? PyEval_SaveThread() : NULL;
    if (buf_put(&o.koff, &zero, 4) || buf_put(&o.voff, &zero, 4)) rc = -3;
    Py_ssize_t i = 0;
    while (!rc && i < n_spans) {
        int64_t slot = sp[3 * i + 2];
        /* where the slot's rows begin: undone to here if they break the rules */
        LiveOut mark = o;
        long long bad_row = -1;
        int code = 0;
        for (; i < n_spans && sp[3 * i + 2] == slot; i++)
            if (!code)
                code = match_rows((OpenSet *)PyTuple_GET_ITEM(sets, slot), &c, sp[3 * i], sp[3 * i + 1],
                                  resolved[slot], &o, &newest[slot], &bad_row);
        if (code < 0) { rc = code; break; }
        if (code > 0) {
            o.types.n = mark.types.n; o.ops.n = mark.ops.n; o.start.n = mark.start.n; o.commit.n = mark.commit.n;
            o.koff.n = mark.koff.n; o.kdata.n = mark.kdata.n; o.voff.n = mark.voff.n; o.vdata.n = mark.vdata.n;
            o.rows = mark.rows;
            newest[slot] = 0;
            if (released) PyEval_RestoreThread(released);
            PyObject *e = Py_BuildValue("(LiL)", (long long)slot, code, bad_row);
            int bad = !e || PyList_Append(errors, e) < 0;
            Py_XDECREF(e);
            released = n_match >= MATCH_RELEASE_ROWS ? PyEval_SaveThread() : NULL;
            if (bad) { rc = -4; break; }
            continue;
        }
        counts[slot] = (int64_t)(o.rows - mark.rows);
    }
    if (released) PyEval_RestoreThread(released);
    if (rc == -4) goto done;
    if (rc == -3) { PyErr_NoMemory(); goto done; }
    if (rc == -2) { PyErr_SetString(PyExc_ValueError, "a poll's keys or values exceed 2 GiB"); goto done; }
    res = Py_BuildValue("(NNNO)", live_rows_tuple(&o), as_bytes(&slot_rows), as_bytes(&slot_newest), errors);
done:
    live_free(&o);
    free(slot_rows.p); free(slot_newest.p);
    Py_XDECREF(errors);
    for (int k = 0; k < got; k++) PyBuffer_Release(&b[k]);
    PyBuffer_Release(&resolved_buf); PyBuffer_Release(&span_buf);
    PyBuffer_Release(&tmap); PyBuffer_Release(&omap);
    return res;
}

/* scan_events(columns, events) -> (plain, ascending): per event of a decoded message (`events`
 * as decode gives them, `columns` its 8 row buffers as match_live reads them), one byte each:
 * plain 1 where every row of the event is a plain version (a record key's COMMITTED Put or
 * Delete: what an initial scan sends, kept as it comes), ascending 1 where its keys ascend
 * strictly (bytewise, a prefix first). One pass over the rows (capture/feed_columns.py). */
static int key_below(const uint8_t *a, size_t an, const uint8_t *b, size_t bn) {
    int c = memcmp(a, b, an < bn ? an : bn);
    return c < 0 || (c == 0 && an < bn);
}

static PyObject *scan_events(PyObject *self, PyObject *args) {
    PyObject *cols, *ev_obj, *res = NULL;
    if (!PyArg_ParseTuple(args, "OO", &cols, &ev_obj)) return NULL;
    Py_buffer b[8], ev = {0};
    int got = 0;
    Rows c;
    if (rows_from(cols, b, &got, NULL, NULL, &c) < 0) goto done;
    if (PyObject_GetBuffer(ev_obj, &ev, PyBUF_SIMPLE) < 0) goto done;
    if (ev.len % 64) { PyErr_SetString(PyExc_ValueError, "events: records of 8 uint64"); goto done; }
    Py_ssize_t n_ev = ev.len / 64;
    PyObject *plain = PyBytes_FromStringAndSize(NULL, n_ev), *asc = PyBytes_FromStringAndSize(NULL, n_ev);
    if (!plain || !asc) { Py_XDECREF(plain); Py_XDECREF(asc); goto done; }
    uint8_t *pl = (uint8_t *)PyBytes_AS_STRING(plain), *as = (uint8_t *)PyBytes_AS_STRING(asc);
    const uint64_t *rec = ev.buf;
    for (Py_ssize_t e = 0; e < n_ev; e++) {
        uint64_t lo = rec[8 * e + 4], hi = rec[8 * e + 5];
        if (lo > hi || hi > (uint64_t)c.n_rows) {
            Py_DECREF(plain); Py_DECREF(asc);
            PyErr_SetString(PyExc_ValueError, "an event's rows outside the message's"); goto done;
        }
        uint8_t p = 1, a = 1;
        for (uint64_t r = lo; r < hi; r++) {
            const uint8_t *k = c.kd + c.ko[r];
            size_t kl = (size_t)(c.ko[r + 1] - c.ko[r]);
            uint8_t op = c.ops[r];
            if (c.types[r] != CDC_COMMITTED || (op != CDC_PUT && op != CDC_DELETE) || !is_record_key(k, kl)) p = 0;
            if (r + 1 < hi && !key_below(k, kl, c.kd + c.ko[r + 1], (size_t)(c.ko[r + 2] - c.ko[r + 1]))) a = 0;
        }
        pl[e] = p; as[e] = a;
    }
    res = Py_BuildValue("(NN)", plain, asc);
done:
    for (int k = 0; k < got; k++) PyBuffer_Release(&b[k]);
    if (ev.obj) PyBuffer_Release(&ev);
    return res;
}

static PyMethodDef methods[] = {
    {"scan_events", scan_events, METH_VARARGS, "per event: all plain versions, keys strictly ascending (see the source)"},
    {"decode", decode, METH_O, "cdcpb.ChangeDataEvent bytes -> columns (see the module's source)"},
    {"match_live", match_live, METH_VARARGS, "a registration's live rows -> binlog columns (see the source)"},
    {"match_live_many", match_live_many, METH_VARARGS, "many registrations' live rows of one message -> binlog columns"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "cdc_wire", NULL, -1, methods};

PyMODINIT_FUNC PyInit_cdc_wire(void) {
    if (PyType_Ready(&OpenSetType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&OpenSetType);
    if (PyModule_AddObject(m, "OpenSet", (PyObject *)&OpenSetType) < 0) {
        Py_DECREF(&OpenSetType); Py_DECREF(m); return NULL;
    }
    return m;
}
