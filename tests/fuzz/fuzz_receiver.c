/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for lib/receiver: the input is the byte stream of one
 * client connection, fed whole and then in pieces; both ways must answer
 * with the same complete HTTP/1.1 responses and put the same batches into
 * the pipeline, and every batch must scan clean with the item count it
 * claims. The connection is finalised after every input (LeakSanitizer
 * checks nothing is left behind).
 * Input: one control byte, then the stream.
 *   bits 0-5: seed of the piece lengths (0: byte by byte);
 *   bit 6:    pieces of up to 256 bytes instead of up to 16;
 *   bit 7:    a request still incomplete at the end times out (408). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "config/config.h"
#include "obs/metrics.h"
#include "otlp/otlp_scan.h"
#include "pipeline/pipeline.h"
#include "receiver/receiver.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);                  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* One receiver for the whole run, as a worker has. */
static struct svc_config cfg;
static struct obs_registry *reg;
static struct pipeline *pipe_;
static struct receiver *rcv;
static struct receiver_worker *rw;
static struct otlp_limits scan_limits;

static void setup_once(void)
{
    config_defaults(&cfg);
    cfg.receiver.max_body_bytes = 64 * 1024;
    cfg.receiver.max_decompressed_bytes = 256 * 1024;
    cfg.receiver.max_headers = 16;
    cfg.receiver.max_header_bytes = 4096;
    /* Room for what one input can hold (drained after each), with a pool
     * small enough that every batch body warms up early and RSS stays flat;
     * batches close by items and by size. */
    cfg.batch.max_queue_size = 1u << 16;
    cfg.batch.max_export_batch_size = 1024;
    cfg.batch.max_batch_bytes = 16 * 1024;
    struct config_kv_list *kv = &cfg.resources.attributes;
    kv->items[0].key = strdup("service.name");
    kv->items[0].value = strdup("fuzz");
    kv->items[1].key = strdup("host.name");
    kv->items[1].value = strdup("\xc3\xa9-1");
    CHECK(kv->items[0].key && kv->items[0].value && kv->items[1].key && kv->items[1].value);
    kv->n = 2;
    scan_limits.max_depth = cfg.receiver.max_nesting_depth;
    CHECK(obs_registry_create(1, 4096, &reg) == 0);
    CHECK(pipeline_create(&cfg, 1, &pipe_) == 0);
    CHECK(receiver_create(&cfg, pipe_, reg, 1, &rcv) == 0);
    CHECK(receiver_worker_create(rcv, 0, &rw) == 0);
}

/* `out` holds nothing but complete HTTP/1.1 responses; returns how many.
 * A response to HEAD announces a Content-Length but carries no body
 * (RFC 9110 9.3.2): accepted only when the input holds a HEAD request and
 * the next bytes start another response (or end the output). */
static unsigned check_responses(const struct buf *out, bool input_has_head)
{
    unsigned n = 0;
    size_t off = 0;
    while (off < out->len) {
        const char *s = (const char *)out->data + off;
        size_t left = out->len - off;
        CHECK(left >= 13 && memcmp(s, "HTTP/1.1 ", 9) == 0);
        CHECK(s[9] >= '1' && s[9] <= '5' && s[10] >= '0' && s[10] <= '9' && s[11] >= '0' &&
              s[11] <= '9' && s[12] == ' ');
        int status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
        const char *end = memmem(s, left, "\r\n\r\n", 4);
        CHECK(end != NULL);
        size_t hlen = (size_t)(end - s) + 4;
        const char *cl = memmem(s, hlen, "\r\nContent-Length: ", 18);
        size_t blen = 0;
        if (status == 100) {
            CHECK(cl == NULL && hlen == 25);
        } else {
            CHECK(status >= 200 && cl != NULL);
            for (const char *p = cl + 18; *p != '\r'; p++) {
                CHECK(*p >= '0' && *p <= '9');
                blen = blen * 10 + (size_t)(*p - '0');
            }
        }
        bool bodiless = input_has_head && blen > 0 &&
                        (left == hlen || (left - hlen >= 9 && memcmp(s + hlen, "HTTP/1.1 ", 9) == 0));
        if (bodiless)
            blen = 0;
        CHECK(blen <= left - hlen);
        off += hlen + blen;
        n++;
    }
    return n;
}

/* Flush and take every batch: check it, fold it into `log`, release it. */
static void drain(struct buf *log)
{
    pipeline_tick(pipe_, 0, base_now_ms(), true);
    struct batch *b;
    while ((b = pipeline_dequeue(pipe_)) != NULL) {
        static struct otlp_scan_result res;
        CHECK(b->body.len > 0);
        int rc = otlp_scan(b->signal, b->body.data, b->body.len, &scan_limits, &res);
        if (rc != 0 || res.rejected_items != 0 || res.rejected_resources != 0 ||
            res.items != b->items) {
            fprintf(stderr, "batch does not scan clean: rc %d items %llu/%llu rejected %llu: %s\n",
                    rc, (unsigned long long)res.items, (unsigned long long)b->items,
                    (unsigned long long)res.rejected_items, res.error);
            abort();
        }
        CHECK(buf_printf(log, "[%d %llu %u]", (int)b->signal, (unsigned long long)b->items,
                         b->requests) == 0);
        CHECK(buf_append(log, b->body.data, b->body.len) == 0);
        pipeline_release(pipe_, b);
    }
    CHECK(pipeline_queued_items(pipe_) == 0);
}

struct outcome {
    struct buf out;
    struct buf batches;
    int rc;
};

static uint32_t next_rand(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* Feed the stream on a fresh connection, whole or in pieces,
 * stopping at RECEIVER_CLOSE as a transport does. */
static void run(const uint8_t *d, size_t n, uint8_t ctl, bool whole, struct outcome *o)
{
    struct receiver_conn conn;
    CHECK(receiver_conn_init(&conn, rw) == 0);
    buf_reset(&o->out);
    buf_reset(&o->batches);
    uint32_t seed = 0x9e3779b9u ^ (uint32_t)(ctl & 0x3f) * 0x01000193u;
    size_t max_piece = (ctl & 0x3f) == 0 ? 1 : (ctl & 0x40) ? 256 : 16;
    int rc = RECEIVER_KEEP;
    size_t at = 0;
    while (at < n && rc == RECEIVER_KEEP) {
        size_t piece = whole ? n - at : 1 + next_rand(&seed) % max_piece;
        if (piece > n - at)
            piece = n - at;
        size_t before = o->out.len;
        rc = receiver_conn_input(&conn, d + at, piece, &o->out);
        CHECK(rc == RECEIVER_KEEP || rc == RECEIVER_CLOSE);
        CHECK(o->out.len >= before);
        at += piece;
    }
    if (rc == RECEIVER_KEEP && (ctl & 0x80) && receiver_conn_busy(&conn)) {
        size_t before = o->out.len;
        rc = receiver_conn_timeout(&conn, &o->out);
        CHECK(rc == RECEIVER_CLOSE);
        CHECK(o->out.len > before && memcmp(o->out.data + before, "HTTP/1.1 408 ", 13) == 0);
    }
    o->rc = rc;
    receiver_conn_fini(&conn);
    check_responses(&o->out, memmem(d, n, "HEAD ", 5) != NULL);
    drain(&o->batches);
}

static bool same(const struct buf *a, const struct buf *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    static struct outcome whole, split;
    if (!ready) {
        setup_once();
        CHECK(buf_init(&whole.out, 4096, 0) == 0 && buf_init(&whole.batches, 4096, 0) == 0 &&
              buf_init(&split.out, 4096, 0) == 0 && buf_init(&split.batches, 4096, 0) == 0);
        ready = true;
    }
    if (size < 1)
        return 0;
    uint8_t ctl = data[0];
    const uint8_t *s = data + 1;
    size_t n = size - 1;

    run(s, n, ctl, true, &whole);
    run(s, n, ctl, false, &split);
    if (getenv("FUZZ_RECEIVER_VERBOSE") != NULL) /* status lines, for checking seeds */
        for (size_t i = 0; i + 12 <= whole.out.len; i++)
            if (memcmp(whole.out.data + i, "HTTP/1.1 ", 9) == 0)
                fprintf(stderr, "  %.12s\n", whole.out.data + i);
    if (whole.rc != split.rc || !same(&whole.out, &split.out) ||
        !same(&whole.batches, &split.batches)) {
        fprintf(stderr,
                "split feed differs: rc %d/%d out %zu/%zu batches %zu/%zu\n--- whole\n%.*s\n"
                "--- split\n%.*s\n",
                whole.rc, split.rc, whole.out.len, split.out.len, whole.batches.len,
                split.batches.len, (int)BASE_MIN(whole.out.len, 2000), whole.out.data,
                (int)BASE_MIN(split.out.len, 2000), split.out.data);
        abort();
    }
    /* Keep the scratch of the outcome buffers from growing without bound. */
    if (whole.out.cap > (1u << 20) || whole.batches.cap > (4u << 20)) {
        buf_free(&whole.out);
        buf_free(&whole.batches);
        buf_free(&split.out);
        buf_free(&split.batches);
        CHECK(buf_init(&whole.out, 4096, 0) == 0 && buf_init(&whole.batches, 4096, 0) == 0 &&
              buf_init(&split.out, 4096, 0) == 0 && buf_init(&split.batches, 4096, 0) == 0);
    }
    return 0;
}
