/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for lib/http: parses the input as a stream of pipelined
 * requests three ways (whole, split at fuzzer-chosen offsets, byte by byte)
 * and aborts when the results differ or an invariant breaks.
 * Input: flags, n, n big-endian u16 split offsets, then the stream.
 *   flags bit 0: small limits; bit 1: no body buf; bit 2: tiny body buf limit. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

#define FUZZ_MAX_SPLITS 8

struct outcome {
    uint64_t hash;
    unsigned events;
    const uint8_t *in, *in_end; /* the stream: a body that came whole in one feed points here */
};

static void mix(uint64_t *h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        *h ^= b[i];
        *h *= 0x100000001b3ull;
    }
}

static void check_str(const char *s, size_t cap)
{
    if (memchr(s, '\0', cap) == NULL)
        abort();
}

/* Invariants of a request at HEADERS_COMPLETE / DONE, folded into the hash. */
static void record(struct outcome *o, const struct http_parser *p, int rc, const struct buf *body)
{
    const struct http_req *r = http_parser_req(p);
    check_str(r->path, sizeof(r->path));
    check_str(r->query, sizeof(r->query));
    check_str(r->content_type, sizeof(r->content_type));
    check_str(r->content_encoding, sizeof(r->content_encoding));
    check_str(r->authorization, sizeof(r->authorization));
    for (const char *c = r->content_type; *c; c++)
        if ((*c >= 'A' && *c <= 'Z') || *c == ';')
            abort();
    if (r->chunked && r->content_length >= 0)
        abort(); /* smuggling: both framings accepted */
    if (rc == HTTP_HEADERS_COMPLETE && !r->chunked && r->content_length <= 0)
        abort();
    if (r->http_minor > 1)
        abort();
    mix(&o->hash, &rc, sizeof(rc));
    mix(&o->hash, r->path, strlen(r->path));
    mix(&o->hash, r->query, strlen(r->query));
    mix(&o->hash, r->content_type, strlen(r->content_type));
    mix(&o->hash, r->content_encoding, strlen(r->content_encoding));
    mix(&o->hash, r->authorization, strlen(r->authorization));
    uint8_t flags[5] = {(uint8_t)r->method, r->http_minor, r->chunked, r->keep_alive,
                        r->expect_continue};
    mix(&o->hash, flags, sizeof(flags));
    mix(&o->hash, &r->content_length, sizeof(r->content_length));
    if (rc == HTTP_DONE) {
        if (r->body_len > p->lim.max_body_bytes)
            abort();
        if (r->content_length >= 0 && !r->chunked && (uint64_t)r->content_length != r->body_len)
            abort();
        if (body != NULL) {
            /* In the body buf, or (the whole body in one feed, not copied)
             * inside the fed stream with the body buf left empty. */
            bool in_buf = r->body_len == body->len && (r->body_len == 0 || r->body == body->data);
            bool in_place = body->len == 0 && r->body_len > 0 && r->body >= o->in &&
                            r->body + r->body_len <= o->in_end;
            if (!in_buf && !in_place)
                abort();
            mix(&o->hash, r->body, r->body_len);
        } else if (r->body != NULL) {
            abort();
        }
        mix(&o->hash, &r->body_len, sizeof(r->body_len));
        /* whatever was parsed can be answered */
        static struct buf out;
        if (out.data == NULL && buf_init(&out, 4096, 0) != 0)
            abort();
        buf_reset(&out);
        if (http_response_write(&out, 200, r->content_type, r->path, strlen(r->path),
                                r->keep_alive, 1, NULL) != 0)
            abort();
    }
    o->events++;
}

static struct outcome run(const uint8_t *d, size_t n, const size_t *cuts, size_t ncuts,
                          const struct http_limits *lim, struct buf *body)
{
    struct outcome o = {0xcbf29ce484222325ull, 0, d, d + n};
    struct http_parser p;
    http_parser_init(&p, lim, body);
    bool stopped = false, mid = false;
    size_t at = 0;
    for (size_t k = 0; k <= ncuts && !stopped; k++) {
        size_t end = k < ncuts ? cuts[k] : n;
        const uint8_t *s = d + at;
        size_t len = end - at;
        at = end;
        while (len > 0) {
            size_t used = (size_t)-1;
            int rc = http_parser_feed(&p, s, len, &used);
            if (used > len)
                abort();
            s += used;
            len -= used;
            if (rc == HTTP_AGAIN) {
                if (len != 0)
                    abort();
                mid = true;
                break;
            }
            if (rc < 0) {
                /* a listed parse error, never the allocation one */
                if (rc > -HTTP_ERR_FIRST || rc <= -HTTP_ERR_END_ || rc == -HTTP_ERR_NO_MEMORY ||
                    http_error_status(rc) < 400)
                    abort();
                mix(&o.hash, &rc, sizeof(rc));
                o.events++;
                stopped = true;
                break;
            }
            if (rc != HTTP_HEADERS_COMPLETE && rc != HTTP_DONE)
                abort();
            record(&o, &p, rc, body);
            mid = rc == HTTP_HEADERS_COMPLETE; /* a body is still to come */
            if (rc == HTTP_DONE)
                http_parser_reset(&p);
        }
    }
    if (mid && !stopped)
        mix(&o.hash, "A", 1);
    return o;
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t flags = data[0];
    size_t ncuts = data[1] % (FUZZ_MAX_SPLITS + 1);
    if (size < 2 + 2 * ncuts)
        return 0;
    const uint8_t *cut_bytes = data + 2;
    const uint8_t *s = data + 2 + 2 * ncuts;
    size_t n = size - 2 - 2 * ncuts;

    struct http_limits lim = {0};
    if (flags & 1)
        lim = (struct http_limits){.max_header_bytes = 96, .max_headers = 4, .max_body_bytes = 40};
    static struct buf body, tiny;
    if (body.data == NULL && (buf_init(&body, 4096, 0) != 0 || buf_init(&tiny, 16, 16) != 0))
        abort();
    struct buf *bp = (flags & 2) ? NULL : (flags & 4) ? &tiny : &body;

    size_t cuts[FUZZ_MAX_SPLITS];
    for (size_t k = 0; k < ncuts; k++)
        cuts[k] = n ? ((size_t)cut_bytes[2 * k] << 8 | cut_bytes[2 * k + 1]) % (n + 1) : 0;
    qsort(cuts, ncuts, sizeof(cuts[0]), cmp_size);

    struct outcome whole = run(s, n, NULL, 0, &lim, bp);
    struct outcome split = run(s, n, cuts, ncuts, &lim, bp);
    if (whole.hash != split.hash || whole.events != split.events)
        abort();
    if (n <= 2048) {
        static size_t every[2048];
        for (size_t i = 0; i + 1 < n; i++)
            every[i] = i + 1;
        struct outcome bytes = run(s, n, every, n ? n - 1 : 0, &lim, bp);
        if (whole.hash != bytes.hash || whole.events != bytes.events)
            abort();
    }
    return 0;
}
