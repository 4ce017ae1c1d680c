/* SPDX-License-Identifier: Apache-2.0 */
/* Tests lib/pipeline: batch pool, size/age flushing, queue budget, SPSC
 * hand-off between a worker thread and an exporter thread, a custom
 * environment (ring and memory ops) with fixed bodies, and the split of a
 * request larger than one fixed batch. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config/config.h"
#include "otlp/otlp_batch.h"
#include "otlp/otlp_scan.h"
#include "pipeline/pipeline.h"
#include "pipeline/ring.h"
#include "spool/wal.h"

static struct svc_config cfg;

static int setup(void **state)
{
    (void)state;
    config_defaults(&cfg);
    cfg.batch.max_queue_size = 100;
    cfg.batch.max_export_batch_size = 10;
    cfg.batch.batch_timeout_ms = 50;
    cfg.batch.max_concurrent_exports = 2;
    cfg.batch.max_batch_bytes = 1000;
    cfg.receiver.max_decompressed_bytes = 4096;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    config_free(&cfg);
    return 0;
}

static void append(struct pipeline *p, unsigned w, enum otlp_signal sig, uint64_t items, size_t bytes)
{
    struct batch *b = pipeline_open_batch(p, w, sig);
    assert_non_null(b);
    uint8_t tmp[64] = {0};
    while (bytes > 0) {
        size_t n = bytes < sizeof(tmp) ? bytes : sizeof(tmp);
        assert_int_equal(buf_append(&b->body, tmp, n), 0);
        bytes -= n;
    }
    pipeline_commit(p, w, sig, items);
}

static void test_ring(void **state)
{
    (void)state;
    struct spsc_ring r;
    assert_int_equal(spsc_ring_init(&r, 3), 0); /* rounds to 4 */
    int v[5];
    for (int i = 0; i < 4; i++)
        assert_int_equal(spsc_ring_push(&r, &v[i]), 0);
    assert_int_equal(spsc_ring_push(&r, &v[4]), -ENOBUFS);
    assert_int_equal(spsc_ring_count(&r), 4);
    for (int i = 0; i < 4; i++)
        assert_ptr_equal(spsc_ring_pop(&r), &v[i]);
    assert_null(spsc_ring_pop(&r));
    spsc_ring_fini(&r);
}

static void test_flush_by_size(void **state)
{
    (void)state;
    struct pipeline *p;
    assert_int_equal(pipeline_create(&cfg, 1, &p), 0);
    append(p, 0, OTLP_TRACES, 4, 10);
    assert_null(pipeline_dequeue(p));
    append(p, 0, OTLP_TRACES, 6, 10); /* reaches max_export_batch_size */
    struct batch *b = pipeline_dequeue(p);
    assert_non_null(b);
    assert_int_equal(b->items, 10);
    assert_int_equal(b->requests, 2);
    assert_int_equal(b->body.len, 20);
    assert_int_equal(b->signal, OTLP_TRACES);
    assert_int_equal(pipeline_queued_items(p), 10);
    pipeline_release(p, b);
    assert_int_equal(pipeline_queued_items(p), 0);
    /* bytes also close a batch */
    append(p, 0, OTLP_LOGS, 1, 1000);
    b = pipeline_dequeue(p);
    assert_non_null(b);
    assert_int_equal(b->signal, OTLP_LOGS);
    pipeline_release(p, b);
    pipeline_destroy(p);
}

static void test_flush_by_age(void **state)
{
    (void)state;
    struct pipeline *p;
    assert_int_equal(pipeline_create(&cfg, 1, &p), 0);
    append(p, 0, OTLP_METRICS, 3, 10);
    struct batch *open = pipeline_open_batch(p, 0, OTLP_METRICS);
    uint64_t t0 = open->created_ms;
    int due = pipeline_tick(p, 0, t0 + 10, false);
    assert_true(due > 0 && due <= 40);
    assert_null(pipeline_dequeue(p));
    assert_int_equal(pipeline_tick(p, 0, t0 + 50, false), -1);
    struct batch *b = pipeline_dequeue(p);
    assert_non_null(b);
    assert_int_equal(b->items, 3);
    pipeline_release(p, b);
    /* flush all on shutdown */
    append(p, 0, OTLP_TRACES, 1, 5);
    append(p, 0, OTLP_LOGS, 1, 5);
    pipeline_tick(p, 0, t0, true);
    assert_non_null(b = pipeline_dequeue(p));
    pipeline_release(p, b);
    assert_non_null(b = pipeline_dequeue(p));
    pipeline_release(p, b);
    assert_null(pipeline_dequeue(p));
    pipeline_destroy(p);
}

static void test_budget_and_pool(void **state)
{
    (void)state;
    struct pipeline *p;
    assert_int_equal(pipeline_create(&cfg, 2, &p), 0);
    assert_int_equal(pipeline_admit(p, 0, 100), 0);
    assert_int_equal(pipeline_admit(p, 0, 101), -ENOBUFS);
    for (int i = 0; i < 9; i++)
        append(p, i % 2, OTLP_TRACES, 10, 10);
    assert_int_equal(pipeline_queued_items(p), 90);
    assert_int_equal(pipeline_admit(p, 1, 10), 0);
    assert_int_equal(pipeline_admit(p, 1, 11), -ENOBUFS);
    /* Exhaust worker 0's pool with tiny batches flushed at once. */
    unsigned got = 0;
    struct batch *b;
    while ((b = pipeline_open_batch(p, 0, OTLP_LOGS)) != NULL) {
        buf_append(&b->body, "x", 1);
        pipeline_commit(p, 0, OTLP_LOGS, 0);
        pipeline_flush(p, 0, OTLP_LOGS);
        got++;
        assert_true(got < 1000);
    }
    assert_true(got > 0);
    unsigned released = 0;
    while ((b = pipeline_dequeue(p)) != NULL) {
        pipeline_release(p, b);
        released++;
    }
    assert_true(released >= got);
    assert_int_equal(pipeline_queued_items(p), 0);
    assert_non_null(pipeline_open_batch(p, 0, OTLP_LOGS));
    pipeline_destroy(p);
}

static void test_batch_for_never_overflows(void **state)
{
    (void)state;
    struct pipeline *p;
    assert_int_equal(pipeline_create(&cfg, 1, &p), 0);
    /* 3-item requests into batches of at most 10 items: 9 + 3 would overflow. */
    for (int i = 0; i < 10; i++) {
        struct batch *b = pipeline_batch_for(p, 0, OTLP_TRACES, 3, 10);
        assert_non_null(b);
        buf_append(&b->body, "0123456789", 10);
        pipeline_commit(p, 0, OTLP_TRACES, 3);
    }
    pipeline_tick(p, 0, 0, true);
    struct batch *b;
    uint64_t total = 0;
    while ((b = pipeline_dequeue(p)) != NULL) {
        assert_true(b->items <= 10);
        total += b->items;
        pipeline_release(p, b);
    }
    assert_int_equal(total, 30);
    /* A request larger than a batch gets a batch of its own. */
    b = pipeline_batch_for(p, 0, OTLP_TRACES, 50, 10);
    assert_non_null(b);
    assert_int_equal(b->body.len, 0);
    pipeline_destroy(p);
}

struct hammer {
    struct pipeline *p;
    uint64_t items;
};

static void *producer(void *arg)
{
    struct hammer *h = arg;
    uint64_t sent = 0;
    while (sent < 200000) {
        if (pipeline_admit(h->p, 0, 1) < 0)
            continue;
        struct batch *b = pipeline_open_batch(h->p, 0, OTLP_TRACES);
        if (b == NULL)
            continue;
        buf_append(&b->body, "y", 1);
        pipeline_commit(h->p, 0, OTLP_TRACES, 1);
        sent++;
    }
    pipeline_tick(h->p, 0, 0, true);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    struct pipeline *p;
    assert_int_equal(pipeline_create(&cfg, 1, &p), 0);
    struct hammer h = {.p = p};
    pthread_t t;
    pthread_create(&t, NULL, producer, &h);
    uint64_t got = 0;
    while (got < 200000) {
        struct batch *b = pipeline_dequeue(p);
        if (b == NULL)
            continue;
        assert_int_equal(b->items, b->body.len);
        got += b->items;
        pipeline_release(p, b);
    }
    pthread_join(t, NULL);
    assert_int_equal(got, 200000);
    assert_int_equal(pipeline_queued_items(p), 0);
    pipeline_destroy(p);
}

/* ---- a custom environment: counting ring and memory ops ---- */

struct fake_ring {
    void *slots[256];
    unsigned head, tail, cap;
};

struct fake_env {
    unsigned rings, ring_frees, enqueues, dequeues, allocs, frees;
    size_t alloc_bytes;
};

static int fake_create(void *arg, const char *name, unsigned worker, unsigned cap, void **out)
{
    struct fake_env *e = arg;
    (void)worker;
    assert_true(strlen(name) < 24);
    assert_true(cap <= 256);
    struct fake_ring *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    r->cap = cap;
    e->rings++;
    *out = r;
    return 0;
}

static void fake_destroy(void *arg, void *ring)
{
    struct fake_env *e = arg;
    if (ring == NULL)
        return;
    e->ring_frees++;
    free(ring);
}

static struct fake_env *fake_current;

static int fake_enqueue(void *ring, void *obj)
{
    struct fake_ring *r = ring;
    if (r->head - r->tail >= r->cap)
        return -ENOBUFS;
    r->slots[r->head++ % 256] = obj;
    fake_current->enqueues++;
    return 0;
}

static void *fake_dequeue(void *ring)
{
    struct fake_ring *r = ring;
    if (r->head == r->tail)
        return NULL;
    fake_current->dequeues++;
    return r->slots[r->tail++ % 256];
}

static unsigned fake_count(const void *ring)
{
    const struct fake_ring *r = ring;
    return r->head - r->tail;
}

static void *fake_alloc(void *arg, unsigned worker, size_t bytes)
{
    struct fake_env *e = arg;
    (void)worker;
    e->allocs++;
    e->alloc_bytes += bytes;
    return malloc(bytes);
}

static void fake_free(void *arg, void *storage)
{
    struct fake_env *e = arg;
    if (storage == NULL)
        return;
    e->frees++;
    free(storage);
}

static const struct pipeline_ring_ops fake_ring_ops = {.create = fake_create,
                                                       .destroy = fake_destroy,
                                                       .enqueue = fake_enqueue,
                                                       .dequeue = fake_dequeue,
                                                       .count = fake_count};
static const struct pipeline_mem_ops fake_mem_ops = {.alloc = fake_alloc, .free = fake_free};

static struct pipeline *fake_pipeline(struct fake_env *e, unsigned n_workers)
{
    memset(e, 0, sizeof(*e));
    fake_current = e;
    struct pipeline_env env = {
        .name = "fake", .ring = &fake_ring_ops, .mem = &fake_mem_ops, .arg = e};
    struct pipeline *p;
    assert_int_equal(pipeline_create_env(&cfg, n_workers, &env, &p), 0);
    return p;
}

static void test_custom_env_round_trip(void **state)
{
    (void)state;
    struct fake_env e;
    struct pipeline *p = fake_pipeline(&e, 2);
    unsigned n = pipeline_pool_batches(&cfg, 2, NULL);
    size_t fixed = pipeline_fixed_batch_bytes(&cfg);
    assert_int_equal(e.rings, 4); /* ready and free per worker */
    assert_int_equal(e.allocs, n);
    assert_int_equal(e.alloc_bytes, (size_t)n * fixed);
    assert_int_equal(pipeline_free_batches(p), n);
    _Atomic int pressure = 1; /* fixed bodies are never trimmed */
    pipeline_set_pressure(p, &pressure);
    unsigned enq = e.enqueues;
    append(p, 1, OTLP_TRACES, 10, 300); /* full: flushed through the ready ring */
    append(p, 0, OTLP_LOGS, 3, 20);
    pipeline_tick(p, 0, 0, true);
    assert_int_equal(e.enqueues, enq + 2);
    assert_int_equal(pipeline_queued_batches(p), 2);
    struct batch *got[2];
    for (int i = 0; i < 2; i++) {
        got[i] = pipeline_dequeue(p);
        assert_non_null(got[i]);
        assert_true(got[i]->body.external);
        assert_int_equal(got[i]->body.cap, fixed);
    }
    assert_null(pipeline_dequeue(p));
    assert_int_equal(got[0]->items + got[1]->items, 13);
    uint8_t *data = got[0]->body.data;
    for (int i = 0; i < 2; i++)
        pipeline_release(p, got[i]);
    assert_ptr_equal(got[0]->body.data, data); /* kept, not trimmed */
    assert_int_equal(got[0]->body.cap, fixed);
    assert_int_equal(pipeline_free_batches(p), n);
    assert_int_equal(pipeline_queued_items(p), 0);
    /* A body never grows past its capacity. */
    struct batch *b = pipeline_open_batch(p, 0, OTLP_METRICS);
    assert_int_equal(buf_reserve(&b->body, fixed + 1), -EMSGSIZE);
    pipeline_destroy(p);
    assert_int_equal(e.frees, n);
    assert_int_equal(e.ring_frees, 4);
    /* A memory budget caps the pool, never below PIPELINE_MIN_BATCHES. */
    struct pipeline_env env = {.ring = &fake_ring_ops, .mem = &fake_mem_ops, .arg = &e,
                               .mem_max_bytes = 2 * (PIPELINE_MIN_BATCHES + 1) * fixed};
    assert_int_equal(pipeline_pool_batches(&cfg, 2, &env), 2 * (PIPELINE_MIN_BATCHES + 1));
    env.mem_max_bytes = fixed;
    assert_int_equal(pipeline_pool_batches(&cfg, 2, &env), 2 * PIPELINE_MIN_BATCHES);
    memset(&e, 0, sizeof(e));
    assert_int_equal(pipeline_create_env(&cfg, 2, &env, &p), 0);
    assert_int_equal(e.allocs, 2 * PIPELINE_MIN_BATCHES);
    assert_int_equal(pipeline_free_batches(p), 2 * PIPELINE_MIN_BATCHES);
    pipeline_destroy(p);
}

/* ---- splitting a request larger than one fixed batch ---- */

static void put_varint(struct buf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v != 0);
    assert_int_equal(buf_append(b, tmp, n), 0);
}

static void put_len_field(struct buf *b, unsigned field, const struct buf *payload)
{
    put_varint(b, (uint64_t)field << 3 | 2);
    put_varint(b, payload->len);
    assert_int_equal(buf_append(b, payload->data, payload->len), 0);
}

/* A ResourceSpans entry (request field 1) with `spans` spans whose names take
 * about `bytes` in all; a zero span id (rejected entry) when `bad`. */
static void put_entry(struct buf *req, unsigned spans, size_t bytes, bool bad)
{
    struct buf scope = {0}, rs = {0}, span = {0};
    for (unsigned i = 0; i < spans; i++) {
        static const uint8_t tid[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
        uint8_t sid[8] = {1, 2, 3, 4, 5, 6, 7, (uint8_t)(i + 1)};
        if (bad)
            memset(sid, 0, sizeof(sid));
        buf_reset(&span);
        assert_int_equal(buf_append(&span, "\x0a\x10", 2), 0);
        assert_int_equal(buf_append(&span, tid, 16), 0);
        assert_int_equal(buf_append(&span, "\x12\x08", 2), 0);
        assert_int_equal(buf_append(&span, sid, 8), 0);
        size_t name = bytes / spans;
        put_varint(&span, 5 << 3 | 2);
        put_varint(&span, name);
        for (size_t k = 0; k < name; k++)
            assert_int_equal(buf_append(&span, "n", 1), 0);
        put_len_field(&scope, 2, &span); /* ScopeSpans.spans */
    }
    put_len_field(&rs, 2, &scope); /* ResourceSpans.scope_spans */
    put_len_field(req, 1, &rs);    /* Export*ServiceRequest.resource_spans */
    buf_free(&scope);
    buf_free(&rs);
    buf_free(&span);
}

static void scan_req(const struct buf *req, struct otlp_scan_result *res)
{
    assert_int_equal(otlp_scan(OTLP_TRACES, req->data, req->len, NULL, res), 0);
}

static const char *const SPLIT_KEYS[] = {"deployment.environment"};
static const char *const SPLIT_VALUES[] = {"prod"};

static void test_split_oversized_request(void **state)
{
    (void)state;
    cfg.batch.max_queue_size = 1000;
    cfg.batch.max_export_batch_size = 1000;
    struct fake_env e;
    struct pipeline *p = fake_pipeline(&e, 1);
    size_t cap = pipeline_fixed_batch_bytes(&cfg);
    struct otlp_attrs attrs;
    assert_int_equal(otlp_attrs_init(&attrs, SPLIT_KEYS, SPLIT_VALUES, 1), 0);
    /* 6 entries of cap/3 bytes (2 per batch), one rejected: 5 accepted
     * with 1 + 2 + 4 + 5 + 6 = 18 spans. */
    struct buf req = {0};
    for (unsigned i = 0; i < 6; i++)
        put_entry(&req, i + 1, cap / 3, i == 2);
    assert_true(req.len > 2 * cap);
    struct otlp_scan_result res;
    scan_req(&req, &res);
    assert_int_equal(res.items, 18);
    assert_int_equal(res.resources, 5);
    assert_int_equal(res.rejected_resources, 1);
    /* Something already waits in the open batch: it is flushed first. */
    append(p, 0, OTLP_TRACES, 1, 10);
    unsigned free0 = pipeline_free_batches(p);
    assert_int_equal(pipeline_ingest(p, 0, OTLP_TRACES, req.data, req.len, &res, &attrs), 0);
    assert_int_equal(pipeline_queued_items(p), 19);
    pipeline_tick(p, 0, 0, true);
    struct batch *b = pipeline_dequeue(p);
    assert_non_null(b);
    assert_int_equal(b->items, 1); /* the small one, untouched */
    pipeline_release(p, b);
    uint64_t items = 0;
    unsigned pieces = 0, resources = 0;
    while ((b = pipeline_dequeue(p)) != NULL) {
        struct otlp_scan_result one;
        assert_true(b->body.len <= cap);
        assert_int_equal(otlp_scan(OTLP_TRACES, b->body.data, b->body.len, NULL, &one), 0);
        assert_int_equal(one.rejected_resources, 0);
        assert_int_equal(one.items, b->items);
        assert_int_equal(b->requests, 1);
        items += b->items;
        resources += one.resources;
        pieces++;
        pipeline_release(p, b);
    }
    assert_int_equal(items, 18);
    assert_int_equal(resources, 5);
    assert_true(pieces >= 3 && pieces <= 4);
    assert_int_equal(pipeline_queued_items(p), 0);
    assert_int_equal(pipeline_free_batches(p), free0 + 1);

    /* All or nothing: with fewer free batches than pieces nothing is taken. */
    unsigned held = 0;
    struct batch *hold[64];
    while (pipeline_free_batches(p) > 2) {
        hold[held] = pipeline_open_batch(p, 0, OTLP_LOGS);
        buf_append(&hold[held]->body, "x", 1);
        pipeline_commit(p, 0, OTLP_LOGS, 0);
        pipeline_flush(p, 0, OTLP_LOGS);
        held++;
    }
    uint64_t before = pipeline_queued_items(p);
    assert_int_equal(pipeline_ingest(p, 0, OTLP_TRACES, req.data, req.len, &res, &attrs), -EAGAIN);
    assert_int_equal(pipeline_queued_items(p), before);
    assert_int_equal(pipeline_free_batches(p), 2);
    while ((b = pipeline_dequeue(p)) != NULL)
        pipeline_release(p, b);
    assert_int_equal(pipeline_ingest(p, 0, OTLP_TRACES, req.data, req.len, &res, &attrs), 0);
    assert_int_equal(pipeline_queued_items(p), 18);
    pipeline_tick(p, 0, 0, true);
    while ((b = pipeline_dequeue(p)) != NULL)
        pipeline_release(p, b);

    /* One entry larger than a batch: 413, nothing taken. */
    struct buf huge = {0};
    put_entry(&huge, 1, 10, false);
    put_entry(&huge, 2, cap + 10, false);
    scan_req(&huge, &res);
    unsigned free1 = pipeline_free_batches(p);
    assert_int_equal(pipeline_ingest(p, 0, OTLP_TRACES, huge.data, huge.len, &res, &attrs),
                     -EMSGSIZE);
    assert_int_equal(pipeline_queued_items(p), 0);
    assert_int_equal(pipeline_free_batches(p), free1);
    buf_free(&huge);
    buf_free(&req);
    otlp_attrs_free(&attrs);
    pipeline_destroy(p);
    assert_int_equal(e.frees, e.allocs);
    cfg.batch.max_queue_size = 100;
    cfg.batch.max_export_batch_size = 10;
}

/* durability: spool: each piece is its own write-ahead log record. */
static void test_split_logs_each_piece(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_pipeline_walXXXXXX";
    assert_non_null(mkdtemp(dir));
    char *old_dir = cfg.service.data_dir;
    cfg.service.data_dir = dir;
    cfg.spool.durability = SPOOL_DURABILITY_SPOOL;
    cfg.spool.fsync = SPOOL_FSYNC_NEVER;
    cfg.batch.max_queue_size = 1000;
    cfg.batch.max_export_batch_size = 1000;
    struct fake_env e;
    struct pipeline *p = fake_pipeline(&e, 1);
    size_t cap = pipeline_fixed_batch_bytes(&cfg);
    struct buf req = {0};
    for (unsigned i = 0; i < 5; i++)
        put_entry(&req, 2, cap / 2, false);
    struct otlp_scan_result res;
    scan_req(&req, &res);
    assert_int_equal(pipeline_ingest(p, 0, OTLP_TRACES, req.data, req.len, &res, NULL), 0);
    pipeline_tick(p, 0, 0, true);
    unsigned pieces = 0;
    struct batch *b;
    while ((b = pipeline_dequeue(p)) != NULL) {
        assert_int_equal(b->wal_n, 1);
        pieces++;
        pipeline_release(p, b);
    }
    assert_int_equal(pieces, 5); /* cap/2 + overhead: one entry per batch */
    struct wal_stats st;
    pipeline_wal_stats(p, &st);
    assert_int_equal(st.appends_total, pieces);
    pipeline_destroy(p);
    buf_free(&req);
    cfg.service.data_dir = old_dir;
    cfg.spool.durability = SPOOL_DURABILITY_MEMORY;
    cfg.batch.max_queue_size = 100;
    cfg.batch.max_export_batch_size = 10;
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring),
        cmocka_unit_test(test_flush_by_size),
        cmocka_unit_test(test_flush_by_age),
        cmocka_unit_test(test_budget_and_pool),
        cmocka_unit_test(test_batch_for_never_overflows),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_custom_env_round_trip),
        cmocka_unit_test(test_split_oversized_request),
        cmocka_unit_test(test_split_logs_each_piece),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
