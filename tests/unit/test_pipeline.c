/* SPDX-License-Identifier: Apache-2.0 */
/* Tests lib/pipeline: batch pool, size/age flushing, queue budget, SPSC
 * hand-off between a worker thread and an exporter thread. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "config/config.h"
#include "pipeline/pipeline.h"
#include "pipeline/ring.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring),
        cmocka_unit_test(test_flush_by_size),
        cmocka_unit_test(test_flush_by_age),
        cmocka_unit_test(test_budget_and_pool),
        cmocka_unit_test(test_batch_for_never_overflows),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
