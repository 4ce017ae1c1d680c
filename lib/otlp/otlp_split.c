/* SPDX-License-Identifier: Apache-2.0 */
/* Splitting a batch by trace, resource or a caller's id and writing the parts
 * back as requests (otlp_split.h): byte ranges of the body, no decode. Used
 * on the export thread by the Kafka and load-balancing exporters. */
#include "otlp/otlp_split.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "otlp/otlp_wire.h"

/* Another field of a ResourceX or ScopeX entry, kept as it is. */
struct split_seg {
    uint32_t off, len; /* the whole field: key, length and value */
    uint32_t field;
};

struct split_res {
    uint32_t seg_first, seg_n; /* in rs_segs */
    uint32_t seg_bytes;
    uint32_t resource_off, resource_len; /* the Resource message; len 0 and off 0: none */
    bool has_resource;
};

struct split_scope {
    uint32_t seg_first, seg_n; /* in ss_segs */
    uint32_t seg_bytes;
};

struct split_group {
    uint32_t head, tail;
    uint8_t id[16];
};

/* Growable array. */
struct split_vec {
    void *data;
    size_t n, cap, size;
};

struct otlp_split {
    const uint8_t *body;
    enum otlp_signal sig;
    struct split_vec units, res, scopes, rs_segs, ss_segs, groups, order, bounds;
    uint32_t *table; /* group lookup, open addressing, index + 1 */
    size_t table_cap;
};

#define VEC_AT(v, T, i) (&((T *)(v)->data)[i])

static int vec_reserve(struct split_vec *v, size_t n)
{
    if (n <= v->cap)
        return 0;
    size_t cap = v->cap ? v->cap : 64;
    while (cap < n)
        cap *= 2;
    void *d = realloc(v->data, cap * v->size);
    if (d == NULL)
        return -ENOMEM;
    v->data = d;
    v->cap = cap;
    return 0;
}

/* Append one zeroed element; returns it or NULL (-ENOMEM). */
static void *vec_push(struct split_vec *v)
{
    if (vec_reserve(v, v->n + 1) < 0)
        return NULL;
    void *e = (uint8_t *)v->data + v->n * v->size;
    memset(e, 0, v->size);
    v->n++;
    return e;
}

/* Size of a length-delimited field of 1..15 with an n-byte payload. */
static size_t len_field(size_t n)
{
    return 1 + otlp_wire_varint_size(n) + n;
}

int otlp_split_create(struct otlp_split **out)
{
    if (out == NULL)
        return -EINVAL;
    struct otlp_split *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->units.size = sizeof(struct otlp_split_unit);
    s->res.size = sizeof(struct split_res);
    s->scopes.size = sizeof(struct split_scope);
    s->rs_segs.size = s->ss_segs.size = sizeof(struct split_seg);
    s->groups.size = sizeof(struct split_group);
    s->order.size = s->bounds.size = sizeof(uint32_t);
    *out = s;
    return 0;
}

void otlp_split_destroy(struct otlp_split *s)
{
    if (s == NULL)
        return;
    struct split_vec *vecs[] = {&s->units,   &s->res,    &s->scopes, &s->rs_segs,
                                &s->ss_segs, &s->groups, &s->order,  &s->bounds};
    for (size_t i = 0; i < ARRAY_SIZE(vecs); i++)
        free(vecs[i]->data);
    free(s->table);
    free(s);
}

/* ---- parsing ---- */

/* Data points of a Metric: entries of field 1 in its (last) data field
 * (gauge 5, sum 7, histogram 9, exponential histogram 10, summary 11), as
 * the receiver counted them. */
static uint32_t metric_points(const uint8_t *p, const uint8_t *end)
{
    uint32_t points = 0;
    while (p < end) {
        uint32_t f;
        unsigned wt;
        size_t n;
        if (otlp_wire_key(&p, end, &f, &wt) < 0)
            return points;
        bool data = wt == OTLP_WIRE_LEN && (f == 5 || f == 7 || f == 9 || f == 10 || f == 11);
        if (!data) {
            if (otlp_wire_skip(&p, end, wt) < 0)
                return points;
            continue;
        }
        if (otlp_wire_len(&p, end, &n) < 0)
            return points;
        const uint8_t *q = p, *qend = p + n;
        points = 0;
        while (q < qend) {
            uint32_t g;
            unsigned gwt;
            if (otlp_wire_key(&q, qend, &g, &gwt) < 0)
                break;
            if (g == 1 && gwt == OTLP_WIRE_LEN)
                points++;
            if (otlp_wire_skip(&q, qend, gwt) < 0)
                break;
        }
        p = qend;
    }
    return points;
}

/* The trace id of a Span (field 1); zeros when absent or not 16 bytes. */
static void span_trace_id(const uint8_t *p, const uint8_t *end, uint8_t id[16])
{
    memset(id, 0, 16);
    while (p < end) {
        uint32_t f;
        unsigned wt;
        if (otlp_wire_key(&p, end, &f, &wt) < 0)
            return;
        if (f == 1 && wt == OTLP_WIRE_LEN) {
            size_t n;
            if (otlp_wire_len(&p, end, &n) < 0)
                return;
            if (n == 16)
                memcpy(id, p, 16);
            return;
        }
        if (otlp_wire_skip(&p, end, wt) < 0)
            return;
    }
}

static int add_seg(struct split_vec *v, const uint8_t *base, const uint8_t *start,
                   const uint8_t *end, uint32_t field, uint32_t *bytes)
{
    struct split_seg *sg = vec_push(v);
    if (sg == NULL)
        return -ENOMEM;
    sg->off = (uint32_t)(start - base);
    sg->len = (uint32_t)(end - start);
    sg->field = field;
    *bytes += sg->len;
    return 0;
}

/* A ScopeX message of resource entry r. */
static int parse_scope(struct otlp_split *s, const uint8_t *p, const uint8_t *end, uint32_t r)
{
    const uint8_t *base = s->body;
    uint32_t si = (uint32_t)s->scopes.n;
    struct split_scope *sc = vec_push(&s->scopes);
    if (sc == NULL)
        return -ENOMEM;
    sc->seg_first = (uint32_t)s->ss_segs.n;
    uint32_t seg_bytes = 0;
    while (p < end) {
        const uint8_t *fstart = p;
        uint32_t f;
        unsigned wt;
        size_t n;
        if (otlp_wire_key(&p, end, &f, &wt) < 0)
            return -EINVAL;
        if (f == 2 && wt == OTLP_WIRE_LEN) {
            if (otlp_wire_len(&p, end, &n) < 0)
                return -EINVAL;
            struct otlp_split_unit *u = vec_push(&s->units);
            if (u == NULL)
                return -ENOMEM;
            u->resource = r;
            u->scope = si;
            u->off = (uint32_t)(p - base);
            u->len = (uint32_t)n;
            u->next = UINT32_MAX;
            if (s->sig == OTLP_METRICS) {
                u->items = metric_points(p, p + n);
            } else {
                u->items = 1;
                if (s->sig == OTLP_TRACES)
                    span_trace_id(p, p + n, u->trace_id);
            }
            p += n;
            continue;
        }
        if (otlp_wire_skip(&p, end, wt) < 0)
            return -EINVAL;
        if (add_seg(&s->ss_segs, base, fstart, p, f, &seg_bytes) < 0)
            return -ENOMEM;
    }
    sc = VEC_AT(&s->scopes, struct split_scope, si);
    sc->seg_n = (uint32_t)s->ss_segs.n - sc->seg_first;
    sc->seg_bytes = seg_bytes;
    return 0;
}

/* A ResourceX message. */
static int parse_resource(struct otlp_split *s, const uint8_t *p, const uint8_t *end)
{
    const uint8_t *base = s->body;
    uint32_t r = (uint32_t)s->res.n;
    struct split_res *rs = vec_push(&s->res);
    if (rs == NULL)
        return -ENOMEM;
    rs->seg_first = (uint32_t)s->rs_segs.n;
    uint32_t seg_bytes = 0;
    const uint8_t *resource = NULL;
    size_t resource_len = 0;
    int rc;
    while (p < end) {
        const uint8_t *fstart = p;
        uint32_t f;
        unsigned wt;
        size_t n;
        if (otlp_wire_key(&p, end, &f, &wt) < 0)
            return -EINVAL;
        if (f == 2 && wt == OTLP_WIRE_LEN) {
            if (otlp_wire_len(&p, end, &n) < 0)
                return -EINVAL;
            if ((rc = parse_scope(s, p, p + n, r)) < 0)
                return rc;
            p += n;
            continue;
        }
        if (f == 1 && wt == OTLP_WIRE_LEN) {
            const uint8_t *q = p;
            if (otlp_wire_len(&q, end, &n) < 0)
                return -EINVAL;
            resource = q;
            resource_len = n;
        }
        if (otlp_wire_skip(&p, end, wt) < 0)
            return -EINVAL;
        if (add_seg(&s->rs_segs, base, fstart, p, f, &seg_bytes) < 0)
            return -ENOMEM;
    }
    rs = VEC_AT(&s->res, struct split_res, r);
    rs->seg_n = (uint32_t)s->rs_segs.n - rs->seg_first;
    rs->seg_bytes = seg_bytes;
    rs->has_resource = resource != NULL;
    if (resource != NULL) {
        rs->resource_off = (uint32_t)(resource - base);
        rs->resource_len = (uint32_t)resource_len;
    }
    return 0;
}

int otlp_split_parse(struct otlp_split *s, enum otlp_signal sig, const uint8_t *body, size_t len)
{
    if (s == NULL || (body == NULL && len > 0) || (unsigned)sig >= OTLP_SIGNAL_COUNT ||
        len > OTLP_WIRE_MAX_LEN)
        return -EINVAL;
    s->units.n = s->res.n = s->scopes.n = s->rs_segs.n = s->ss_segs.n = 0;
    s->groups.n = s->order.n = s->bounds.n = 0;
    s->body = body;
    s->sig = sig;
    const uint8_t *p = body, *end = body + len;
    while (p < end) {
        uint32_t f;
        unsigned wt;
        size_t n;
        if (otlp_wire_key(&p, end, &f, &wt) < 0)
            return -EINVAL;
        if (f == 1 && wt == OTLP_WIRE_LEN) {
            if (otlp_wire_len(&p, end, &n) < 0)
                return -EINVAL;
            int rc = parse_resource(s, p, p + n);
            if (rc < 0)
                return rc;
            p += n;
        } else if (otlp_wire_skip(&p, end, wt) < 0) {
            return -EINVAL;
        }
    }
    return 0;
}

size_t otlp_split_n_units(const struct otlp_split *s)
{
    return s->units.n;
}

const struct otlp_split_unit *otlp_split_unit_at(const struct otlp_split *s, size_t i)
{
    return VEC_AT(&s->units, struct otlp_split_unit, i);
}

size_t otlp_split_n_resources(const struct otlp_split *s)
{
    return s->res.n;
}

void otlp_split_resource(const struct otlp_split *s, size_t r, const uint8_t **pb, size_t *len)
{
    const struct split_res *rs = VEC_AT(&s->res, struct split_res, r);
    *pb = rs->has_resource ? s->body + rs->resource_off : NULL;
    *len = rs->has_resource ? rs->resource_len : 0;
}

/* ---- grouping ---- */

static uint64_t id_hash(const uint8_t id[16])
{
    uint64_t a, b;
    memcpy(&a, id, 8);
    memcpy(&b, id + 8, 8);
    return (a ^ (b * 0x9e3779b97f4a7c15ull)) * 0xff51afd7ed558ccdull;
}

static int table_prepare(struct otlp_split *s, size_t n)
{
    size_t cap = 64;
    while (cap < 2 * n)
        cap *= 2;
    if (cap > s->table_cap) {
        uint32_t *t = realloc(s->table, cap * sizeof(*t));
        if (t == NULL)
            return -ENOMEM;
        s->table = t;
        s->table_cap = cap;
    }
    memset(s->table, 0, s->table_cap * sizeof(*s->table));
    return 0;
}

/* The group for `id` (created when new). Returns its index or -ENOMEM. */
static int64_t group_find(struct otlp_split *s, const uint8_t id[16])
{
    size_t mask = s->table_cap - 1;
    for (size_t i = id_hash(id) & mask;; i = (i + 1) & mask) {
        uint32_t t = s->table[i];
        if (t == 0) {
            struct split_group *g = vec_push(&s->groups);
            if (g == NULL)
                return -ENOMEM;
            memcpy(g->id, id, 16);
            g->head = g->tail = UINT32_MAX;
            s->table[i] = (uint32_t)s->groups.n;
            return (int64_t)s->groups.n - 1;
        }
        if (memcmp(VEC_AT(&s->groups, struct split_group, t - 1)->id, id, 16) == 0)
            return t - 1;
    }
}

/* Link unit i at the tail of group g. */
static void group_append(struct otlp_split *s, uint32_t g, uint32_t i)
{
    struct split_group *gr = VEC_AT(&s->groups, struct split_group, g);
    if (gr->tail == UINT32_MAX)
        gr->head = i;
    else
        VEC_AT(&s->units, struct otlp_split_unit, gr->tail)->next = i;
    gr->tail = i;
    VEC_AT(&s->units, struct otlp_split_unit, i)->next = UINT32_MAX;
}

/* Lay the linked groups out in `order` and `bounds`. */
static int groups_flatten(struct otlp_split *s)
{
    size_t ng = s->groups.n;
    if (vec_reserve(&s->order, s->units.n) < 0 || vec_reserve(&s->bounds, ng + 1) < 0)
        return -ENOMEM;
    uint32_t *order = s->order.data, *b = s->bounds.data;
    size_t n = 0;
    for (size_t g = 0; g < ng; g++) {
        b[g] = (uint32_t)n;
        for (uint32_t u = VEC_AT(&s->groups, struct split_group, g)->head; u != UINT32_MAX;
             u = VEC_AT(&s->units, struct otlp_split_unit, u)->next)
            order[n++] = u;
    }
    b[ng] = (uint32_t)n;
    s->bounds.n = ng + 1;
    s->order.n = n;
    return 0;
}

int otlp_split_group(struct otlp_split *s, enum otlp_split_by by,
                     const uint8_t (*resource_keys)[16])
{
    if (s == NULL || (by == OTLP_SPLIT_RESOURCE_KEY && resource_keys == NULL && s->res.n > 0))
        return -EINVAL;
    size_t nu = s->units.n;
    s->groups.n = 0;
    if (by == OTLP_SPLIT_ALL) {
        if (vec_push(&s->groups) == NULL)
            return -ENOMEM;
        struct split_group *g = s->groups.data;
        g->head = g->tail = UINT32_MAX;
        for (size_t i = 0; i < nu; i++)
            group_append(s, 0, (uint32_t)i);
        return groups_flatten(s);
    }
    if (table_prepare(s, by == OTLP_SPLIT_TRACE_ID ? nu : s->res.n) < 0)
        return -ENOMEM;
    for (size_t i = 0; i < nu; i++) {
        const struct otlp_split_unit *u = VEC_AT(&s->units, struct otlp_split_unit, i);
        const uint8_t *id = by == OTLP_SPLIT_TRACE_ID ? u->trace_id : resource_keys[u->resource];
        int64_t gi = group_find(s, id);
        if (gi < 0)
            return -ENOMEM;
        group_append(s, (uint32_t)gi, (uint32_t)i);
    }
    return groups_flatten(s);
}

int otlp_split_group_ids(struct otlp_split *s, const uint32_t *unit_ids, uint32_t n_ids)
{
    if (s == NULL || n_ids == 0 || (unit_ids == NULL && s->units.n > 0))
        return -EINVAL;
    size_t nu = s->units.n;
    for (size_t i = 0; i < nu; i++) {
        if (unit_ids[i] >= n_ids)
            return -EINVAL;
    }
    s->groups.n = 0;
    if (vec_reserve(&s->groups, n_ids) < 0)
        return -ENOMEM;
    for (uint32_t g = 0; g < n_ids; g++) {
        struct split_group *gr = vec_push(&s->groups);
        gr->head = gr->tail = UINT32_MAX;
    }
    for (size_t i = 0; i < nu; i++)
        group_append(s, unit_ids[i], (uint32_t)i);
    return groups_flatten(s);
}

uint32_t otlp_split_n_groups(const struct otlp_split *s)
{
    return s->bounds.n > 0 ? (uint32_t)(s->bounds.n - 1) : 0;
}

void otlp_split_group_at(const struct otlp_split *s, uint32_t g, size_t *first, size_t *end,
                         const uint8_t **key)
{
    const uint32_t *b = s->bounds.data;
    *first = b[g];
    *end = b[g + 1];
    if (key != NULL)
        *key = VEC_AT(&s->groups, struct split_group, g)->id;
}

uint64_t otlp_split_items(const struct otlp_split *s, size_t a, size_t b)
{
    const uint32_t *order = s->order.data;
    uint64_t n = 0;
    for (size_t i = a; i < b; i++)
        n += VEC_AT(&s->units, struct otlp_split_unit, order[i])->items;
    return n;
}

/* ---- writing ---- */

static const struct otlp_split_unit *unit_in_order(const struct otlp_split *s, size_t i)
{
    return VEC_AT(&s->units, struct otlp_split_unit, ((const uint32_t *)s->order.data)[i]);
}

/* Running size of a request being packed: the exact protobuf size. */
struct split_pack {
    uint64_t closed;   /* complete ResourceX fields */
    uint32_t r, s;     /* open resource / scope; r == UINT32_MAX: empty */
    uint64_t rs_fixed; /* open resource: its other fields + complete scopes */
    uint64_t ss;       /* open scope's payload */
};

static uint64_t pack_total(const struct split_pack *m)
{
    if (m->r == UINT32_MAX)
        return m->closed;
    return m->closed + len_field(m->rs_fixed + len_field(m->ss));
}

static void pack_add(const struct otlp_split *s, struct split_pack *m,
                     const struct otlp_split_unit *u)
{
    const struct split_res *rs = VEC_AT(&s->res, struct split_res, u->resource);
    const struct split_scope *sc = VEC_AT(&s->scopes, struct split_scope, u->scope);
    if (u->resource != m->r) {
        m->closed = pack_total(m);
        m->r = u->resource;
        m->rs_fixed = rs->seg_bytes;
        m->s = u->scope;
        m->ss = sc->seg_bytes;
    } else if (u->scope != m->s) {
        m->rs_fixed += len_field(m->ss);
        m->s = u->scope;
        m->ss = sc->seg_bytes;
    }
    m->ss += len_field(u->len);
}

size_t otlp_split_fit(const struct otlp_split *s, size_t a, size_t b, uint64_t max_bytes)
{
    struct split_pack m = {.r = UINT32_MAX};
    for (size_t i = a; i < b; i++) {
        struct split_pack t = m;
        pack_add(s, &t, unit_in_order(s, i));
        if (i > a && pack_total(&t) > max_bytes)
            return i;
        m = t;
    }
    return b;
}

static int put_hdr(struct buf *out, uint32_t field, size_t n)
{
    if (buf_reserve(out, 16) < 0)
        return -ENOMEM;
    uint8_t *e = otlp_wire_put_len_hdr(out->data + out->len, field, n);
    out->len = (size_t)(e - out->data);
    return 0;
}

/* The other fields of a level with field number below (before) or above
 * the child field 2, so the output keeps the canonical order. */
static int put_segs(struct buf *out, const uint8_t *body, const struct split_seg *sg, uint32_t n,
                    bool before)
{
    for (uint32_t i = 0; i < n; i++) {
        if ((sg[i].field < 2) != before)
            continue;
        if (buf_append(out, body + sg[i].off, sg[i].len) < 0)
            return -ENOMEM;
    }
    return 0;
}

/* Payload size of the scope run [i, j) (same scope). */
static uint64_t scope_payload(const struct otlp_split *s, size_t i, size_t j)
{
    uint64_t n = VEC_AT(&s->scopes, struct split_scope, unit_in_order(s, i)->scope)->seg_bytes;
    for (; i < j; i++)
        n += len_field(unit_in_order(s, i)->len);
    return n;
}

/* End of the run starting at i of units sharing the resource (by_scope
 * false) or the scope (true). */
static size_t run_end(const struct otlp_split *s, size_t i, size_t end, bool by_scope)
{
    const struct otlp_split_unit *u = unit_in_order(s, i);
    size_t j = i + 1;
    while (j < end) {
        const struct otlp_split_unit *v = unit_in_order(s, j);
        if (v->resource != u->resource || (by_scope && v->scope != u->scope))
            break;
        j++;
    }
    return j;
}

int otlp_split_write(const struct otlp_split *s, size_t a, size_t b, struct buf *out)
{
    const uint8_t *body = s->body;
    const struct split_seg *rsg = s->rs_segs.data, *ssg = s->ss_segs.data;
    for (size_t i = a; i < b;) {
        size_t j = run_end(s, i, b, false);
        const struct split_res *rs =
            VEC_AT(&s->res, struct split_res, unit_in_order(s, i)->resource);
        uint64_t rs_payload = rs->seg_bytes;
        for (size_t x = i; x < j;) {
            size_t y = run_end(s, x, j, true);
            rs_payload += len_field(scope_payload(s, x, y));
            x = y;
        }
        if (put_hdr(out, 1, rs_payload) < 0 ||
            put_segs(out, body, rsg + rs->seg_first, rs->seg_n, true) < 0)
            return -ENOMEM;
        for (size_t x = i; x < j;) {
            size_t y = run_end(s, x, j, true);
            const struct split_scope *sc =
                VEC_AT(&s->scopes, struct split_scope, unit_in_order(s, x)->scope);
            if (put_hdr(out, 2, scope_payload(s, x, y)) < 0 ||
                put_segs(out, body, ssg + sc->seg_first, sc->seg_n, true) < 0)
                return -ENOMEM;
            for (size_t z = x; z < y; z++) {
                const struct otlp_split_unit *w = unit_in_order(s, z);
                if (put_hdr(out, 2, w->len) < 0 || buf_append(out, body + w->off, w->len) < 0)
                    return -ENOMEM;
            }
            if (put_segs(out, body, ssg + sc->seg_first, sc->seg_n, false) < 0)
                return -ENOMEM;
            x = y;
        }
        if (put_segs(out, body, rsg + rs->seg_first, rs->seg_n, false) < 0)
            return -ENOMEM;
        i = j;
    }
    return 0;
}

/* ---- resource attributes ---- */

/* AnyValue.string_value (field 1) of an AnyValue message. */
static int any_string(const uint8_t *p, const uint8_t *end, const uint8_t **val, size_t *vlen)
{
    int rc = -ENOENT;
    while (p < end) {
        uint32_t f;
        unsigned wt;
        if (otlp_wire_key(&p, end, &f, &wt) < 0)
            return -EINVAL;
        if (f == 1 && wt == OTLP_WIRE_LEN) {
            size_t n;
            if (otlp_wire_len(&p, end, &n) < 0)
                return -EINVAL;
            *val = p;
            *vlen = n;
            p += n;
            rc = 0; /* the last one wins, as protobuf merges */
            continue;
        }
        if (otlp_wire_skip(&p, end, wt) < 0)
            return -EINVAL;
        if (f >= 2 && f <= 7)
            rc = -ENOENT; /* a later oneof member replaces the string */
    }
    return rc;
}

int otlp_resource_string_attr(const uint8_t *pb, size_t len, const char *key, const uint8_t **val,
                              size_t *vlen)
{
    if ((pb == NULL && len > 0) || key == NULL || val == NULL || vlen == NULL)
        return -EINVAL;
    size_t klen = strlen(key);
    int found = -ENOENT;
    const uint8_t *p = pb, *end = pb + len;
    while (p < end) {
        uint32_t f;
        unsigned wt;
        size_t n;
        if (otlp_wire_key(&p, end, &f, &wt) < 0)
            return -EINVAL;
        if (f != 1 || wt != OTLP_WIRE_LEN) {
            if (otlp_wire_skip(&p, end, wt) < 0)
                return -EINVAL;
            continue;
        }
        if (otlp_wire_len(&p, end, &n) < 0)
            return -EINVAL;
        /* KeyValue { 1 key, 2 value AnyValue } */
        const uint8_t *q = p, *qend = p + n, *k = NULL, *v = NULL;
        size_t kn = 0, vn = 0;
        p += n;
        while (q < qend) {
            uint32_t g;
            unsigned gwt;
            size_t m;
            if (otlp_wire_key(&q, qend, &g, &gwt) < 0)
                return -EINVAL;
            if ((g == 1 || g == 2) && gwt == OTLP_WIRE_LEN) {
                if (otlp_wire_len(&q, qend, &m) < 0)
                    return -EINVAL;
                if (g == 1) {
                    k = q;
                    kn = m;
                } else {
                    v = q;
                    vn = m;
                }
                q += m;
            } else if (otlp_wire_skip(&q, qend, gwt) < 0) {
                return -EINVAL;
            }
        }
        if (k == NULL || kn != klen || memcmp(k, key, klen) != 0 || v == NULL)
            continue;
        const uint8_t *sv = NULL;
        size_t sn = 0;
        int rc = any_string(v, v + vn, &sv, &sn);
        if (rc == -EINVAL)
            return rc;
        if (rc == 0) {
            /* the first attribute with the key, as pcommon.Map.Get */
            *val = sv;
            *vlen = sn;
            return 0;
        }
        found = rc;
    }
    return found;
}
