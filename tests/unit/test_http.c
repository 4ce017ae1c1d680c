/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for lib/http: every request is parsed whole, byte by byte and split at
 * every offset (and every pair of offsets when short), and each way must give
 * the same trace of events, fields and body. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/http.h"

/* ---- harness ---- */

static const char *method_name(enum http_method m)
{
    static const char *const n[] = {"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "OTHER"};
    return n[m];
}

struct run {
    struct http_parser p;
    struct buf body;
    struct buf trace;
    bool use_body;
    bool stopped;
    bool mid;
};

static void snap(struct buf *t, const struct http_req *r, bool use_body)
{
    buf_printf(t, "D %s %s?%s 1.%u ka=%d ec=%d cl=%lld ch=%d ct=%s ce=%s au=%s body=%zu:",
               method_name(r->method), r->path, r->query, r->http_minor, r->keep_alive,
               r->expect_continue, (long long)r->content_length, r->chunked, r->content_type,
               r->content_encoding, r->authorization, r->body_len);
    if (use_body) {
        if (r->body_len > 0)
            assert_non_null(r->body);
        buf_append(t, r->body, r->body_len);
    } else {
        assert_null(r->body);
    }
    buf_append_str(t, "|");
}

static void run_feed(struct run *r, const uint8_t *d, size_t n)
{
    while (n > 0 && !r->stopped) {
        size_t used = 0;
        int rc = http_parser_feed(&r->p, d, n, &used);
        assert_true(used <= n);
        d += used;
        n -= used;
        if (rc == HTTP_AGAIN) {
            assert_int_equal(n, 0);
            r->mid = true;
            return;
        }
        if (rc == HTTP_HEADERS_COMPLETE) {
            buf_append_str(&r->trace, "H|");
            r->mid = true;
            continue;
        }
        if (rc == HTTP_DONE) {
            snap(&r->trace, http_parser_req(&r->p), r->use_body);
            http_parser_reset(&r->p);
            r->mid = false;
            continue;
        }
        assert_true(rc < 0);
        buf_printf(&r->trace, "E%s|", http_error_reason(rc));
        r->stopped = true;
    }
}

/* Trace of `in` delivered in pieces ending at cuts[] (ascending). Caller frees. */
static char *trace_of(const char *in, size_t n, const size_t *cuts, size_t ncuts,
                      const struct http_limits *lim, struct buf *body)
{
    struct run r;
    memset(&r, 0, sizeof(r));
    r.use_body = body != NULL;
    if (body != NULL)
        body->len = 0;
    http_parser_init(&r.p, lim, body);
    assert_int_equal(buf_init(&r.trace, 256, 0), 0);
    size_t at = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        run_feed(&r, (const uint8_t *)in + at, end - at);
        at = end;
    }
    if (r.mid && !r.stopped)
        buf_append_str(&r.trace, "A");
    buf_append(&r.trace, "", 1);
    return (char *)r.trace.data;
}

static void expect_same(const char *got, const char *want, const char *how, size_t a, size_t b)
{
    if (strcmp(got, want) != 0) {
        print_error("split %s (%zu,%zu):\n got: %s\nwant: %s\n", how, a, b, got, want);
        fail();
    }
}

/* Parse `in` every way and compare each trace with `want`. */
static void check_lim_n(const char *in, size_t n, const struct http_limits *lim, bool use_body,
                        const char *want)
{
    struct buf body = {0};
    struct buf *bp = NULL;
    if (use_body) {
        assert_int_equal(buf_init(&body, 64, 0), 0);
        bp = &body;
    }
    char *t = trace_of(in, n, NULL, 0, lim, bp);
    expect_same(t, want, "whole", 0, 0);
    free(t);

    size_t *cuts = malloc((n + 1) * sizeof(*cuts));
    assert_non_null(cuts);
    for (size_t i = 0; i + 1 < n; i++)
        cuts[i] = i + 1;
    t = trace_of(in, n, cuts, n > 0 ? n - 1 : 0, lim, bp);
    expect_same(t, want, "bytewise", 0, 0);
    free(t);

    for (size_t k = 1; k < n; k++) {
        cuts[0] = k;
        t = trace_of(in, n, cuts, 1, lim, bp);
        expect_same(t, want, "one", k, 0);
        free(t);
    }
    if (n <= 160) {
        for (size_t a = 1; a < n; a++) {
            for (size_t b = a + 1; b < n; b++) {
                cuts[0] = a;
                cuts[1] = b;
                t = trace_of(in, n, cuts, 2, lim, bp);
                expect_same(t, want, "two", a, b);
                free(t);
            }
        }
    }
    free(cuts);
    buf_free(&body);
}

static void check_lim(const char *in, const struct http_limits *lim, const char *want)
{
    check_lim_n(in, strlen(in), lim, true, want);
}

static void check(const char *in, const char *want)
{
    check_lim(in, NULL, want);
}

/* An error only: the trace is just that error. */
static void check_err(const char *in, int err)
{
    char want[96];
    snprintf(want, sizeof(want), "E%s|", http_error_reason(err));
    check(in, want);
}

#define HOST "Host: h\r\n"
#define GET_DONE(path, query)                                                                      \
    "D GET " path "?" query " 1.1 ka=1 ec=0 cl=-1 ch=0 ct= ce= au= body=0:|"

/* ---- requests that parse ---- */

static void test_simple_get(void **state)
{
    (void)state;
    check("GET /health/live HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/8\r\n"
          "Accept: */*\r\n\r\n",
          GET_DONE("/health/live", ""));
    check("GET /metrics?name[]=x&y=%20 HTTP/1.1\r\n" HOST "\r\n",
          GET_DONE("/metrics", "name[]=x&y=%20"));
    check("HEAD / HTTP/1.1\r\n" HOST "\r\n",
          "D HEAD /? 1.1 ka=1 ec=0 cl=-1 ch=0 ct= ce= au= body=0:|");
    check("OPTIONS * HTTP/1.1\r\n" HOST "\r\n",
          "D OPTIONS *? 1.1 ka=1 ec=0 cl=-1 ch=0 ct= ce= au= body=0:|");
    check("DELETE /x HTTP/1.1\r\n" HOST "\r\n",
          "D DELETE /x? 1.1 ka=1 ec=0 cl=-1 ch=0 ct= ce= au= body=0:|");
    check("PATCH /x HTTP/1.1\r\n" HOST "\r\n",
          "D OTHER /x? 1.1 ka=1 ec=0 cl=-1 ch=0 ct= ce= au= body=0:|");
    check("get /x HTTP/1.1\r\n" HOST "\r\n", /* methods are case-sensitive */
          "D OTHER /x? 1.1 ka=1 ec=0 cl=-1 ch=0 ct= ce= au= body=0:|");
    /* absolute-form: authority dropped */
    check("GET http://example.com:4318/v1/traces?a=b HTTP/1.1\r\n" HOST "\r\n",
          GET_DONE("/v1/traces", "a=b"));
    check("GET HTTPS://example.com HTTP/1.1\r\n" HOST "\r\n", GET_DONE("/", ""));
    check("GET http://example.com?q HTTP/1.1\r\n" HOST "\r\n", GET_DONE("/", "q"));
    /* empty lines before the request line are skipped (RFC 9112 2.2) */
    check("\r\n\r\nGET / HTTP/1.1\r\n" HOST "\r\n", GET_DONE("/", ""));
    /* header names case-insensitive, OWS around values, empty values, obs-text */
    check("GET / HTTP/1.1\r\nhOsT:h\r\nX-Empty:\r\nX-E2:   \r\nX-Bin: \x80\xff ok\r\n\r\n",
          GET_DONE("/", ""));
    /* HTTP/1.0 needs no Host */
    check("GET / HTTP/1.0\r\n\r\n", "D GET /? 1.0 ka=0 ec=0 cl=-1 ch=0 ct= ce= au= body=0:|");
    /* incomplete request: AGAIN at the end */
    check("GET / HTTP/1.1\r\nHost: h\r\n", "A");
}

static void test_simple_post(void **state)
{
    (void)state;
    check("POST /v1/traces HTTP/1.1\r\nHost: h\r\n"
          "Content-Type:  Application/X-Protobuf ; charset=utf-8 \r\n"
          "Content-Encoding: GZIP\r\nAuthorization: Bearer AbC.dEf\t\r\nContent-Length: 5\r\n"
          "\r\nhello",
          "H|D POST /v1/traces? 1.1 ka=1 ec=0 cl=5 ch=0 ct=application/x-protobuf ce=gzip "
          "au=Bearer AbC.dEf body=5:hello|");
    /* head complete, body not arrived */
    check("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\n", "H|A");
    check("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nab", "H|A");
    /* Content-Length: 0 -> no HEADERS_COMPLETE, straight to DONE */
    check("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
          "D POST /x? 1.1 ka=1 ec=0 cl=0 ch=0 ct= ce= au= body=0:|");
    /* identity is no encoding; repeated Content-Encoding fields form a list */
    check("PUT /x HTTP/1.1\r\nHost: h\r\nContent-Encoding: identity\r\nContent-Length: 1\r\n\r\nz",
          "H|D PUT /x? 1.1 ka=1 ec=0 cl=1 ch=0 ct= ce= au= body=1:z|");
    check("POST /x HTTP/1.1\r\nHost: h\r\nContent-Encoding: gzip\r\nContent-Encoding: ZSTD\r\n"
          "Content-Length: 1\r\n\r\nz",
          "H|D POST /x? 1.1 ka=1 ec=0 cl=1 ch=0 ct= ce=gzip, zstd au= body=1:z|");
    /* repeated identical Content-Length, and as a list */
    check("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab",
          "H|D POST /x? 1.1 ka=1 ec=0 cl=2 ch=0 ct= ce= au= body=2:ab|");
    check("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 2 , 2\r\n\r\nab",
          "H|D POST /x? 1.1 ka=1 ec=0 cl=2 ch=0 ct= ce= au= body=2:ab|");
    /* leading zeros */
    check("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0002\r\n\r\nab",
          "H|D POST /x? 1.1 ka=1 ec=0 cl=2 ch=0 ct= ce= au= body=2:ab|");
    /* GET with a body is framed by it */
    check("GET /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
          "H|D GET /x? 1.1 ka=1 ec=0 cl=3 ch=0 ct= ce= au= body=3:abc|");
    /* binary body with NUL and CRLF inside */
    check_lim_n("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\n\0\r\n\xff", 52, NULL,
                true, "H|D POST /x? 1.1 ka=1 ec=0 cl=4 ch=0 ct= ce= au= body=4:");
}

static void test_keep_alive(void **state)
{
    (void)state;
    check("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
          "D GET /? 1.1 ka=0 ec=0 cl=-1 ch=0 ct= ce= au= body=0:|");
    check("GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, CLOSE\r\n\r\n",
          "D GET /? 1.1 ka=0 ec=0 cl=-1 ch=0 ct= ce= au= body=0:|");
    check("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n",
          "D GET /? 1.1 ka=1 ec=0 cl=-1 ch=0 ct= ce= au= body=0:|");
    check("GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n", /* not "close" */
          "D GET /? 1.1 ka=1 ec=0 cl=-1 ch=0 ct= ce= au= body=0:|");
    check("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
          "D GET /? 1.0 ka=1 ec=0 cl=-1 ch=0 ct= ce= au= body=0:|");
    check("GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
          "D GET /? 1.0 ka=0 ec=0 cl=-1 ch=0 ct= ce= au= body=0:|");
    check("GET / HTTP/1.0\r\n\r\n", "D GET /? 1.0 ka=0 ec=0 cl=-1 ch=0 ct= ce= au= body=0:|");
}

static void test_pipelined(void **state)
{
    (void)state;
    check("GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
          "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz"
          "\r\n" /* stray CRLF between requests is tolerated */
          "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n"
          "GET /d?x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
          "GET /e",
          GET_DONE("/a", "") "H|D POST /b? 1.1 ka=1 ec=0 cl=3 ch=0 ct= ce= au= body=3:xyz|"
          "H|D POST /c? 1.1 ka=1 ec=0 cl=-1 ch=1 ct= ce= au= body=2:ab|"
          "D GET /d?x 1.1 ka=0 ec=0 cl=-1 ch=0 ct= ce= au= body=0:|A");
    /* an error in the second request does not disturb the first */
    check("GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
          GET_DONE("/a", "") "Emissing_host|");
}

static void test_chunked(void **state)
{
    (void)state;
    check("POST /v1/logs HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
          "5\r\nhello\r\n"
          "1;name=value;flag\r\n \r\n"
          "A ; ext=\"quoted \\\" str\"\r\n0123456789\r\n"
          "000\r\n"
          "Trailer-One: x\r\nServer-Timing: y\r\n\r\n",
          "H|D POST /v1/logs? 1.1 ka=1 ec=0 cl=-1 ch=1 ct= ce= au= body=16:hello 0123456789|");
    /* hex digits upper and lower case, leading zeros */
    check("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n"
          "0000000000000000000000001\r\na\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n",
          "H|D POST /? 1.1 ka=1 ec=0 cl=-1 ch=1 ct= ce= au= body=27:aabcdefghijklmnopqrstuvwxyz|");
    /* empty chunked body */
    check("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
          "H|D POST /? 1.1 ka=1 ec=0 cl=-1 ch=1 ct= ce= au= body=0:|");
    /* trailers are not interpreted: a Content-Length there changes nothing */
    check("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n"
          "Content-Length: 99\r\nHost: again\r\n\r\n",
          "H|D POST /? 1.1 ka=1 ec=0 cl=-1 ch=1 ct= ce= au= body=1:x|");
    /* transfer-coding list with empty elements */
    check("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: , chunked ,\r\n\r\n0\r\n\r\n",
          "H|D POST /? 1.1 ka=1 ec=0 cl=-1 ch=1 ct= ce= au= body=0:|");
    /* incomplete trailer section */
    check("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\r\n", "H|A");
}

static void test_expect_continue(void **state)
{
    (void)state;
    check("POST /v1/traces HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n"
          "\r\nok",
          "H|D POST /v1/traces? 1.1 ka=1 ec=1 cl=2 ch=0 ct= ce= au= body=2:ok|");
    /* the caller sees the flag at HEADERS_COMPLETE, before the body */
    struct http_parser p;
    http_parser_init(&p, NULL, NULL);
    const char *head = "POST /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
                       "Content-Length: 10\r\n\r\n";
    size_t used;
    assert_int_equal(http_parser_feed(&p, (const uint8_t *)head, strlen(head), &used),
                     HTTP_HEADERS_COMPLETE);
    assert_int_equal(used, strlen(head));
    assert_true(http_parser_req(&p)->expect_continue);
    assert_int_equal(http_parser_req(&p)->content_length, 10);
    assert_int_equal(http_parser_feed(&p, (const uint8_t *)"0123456789", 10, &used), HTTP_DONE);
    assert_int_equal(used, 10);
    /* HTTP/1.0 clients' expectations are ignored (RFC 9110 10.1.1) */
    check("POST /x HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
          "H|D POST /x? 1.0 ka=0 ec=0 cl=2 ch=0 ct= ce= au= body=2:ok|");
    /* other expectations are ignored */
    check("POST /x HTTP/1.1\r\nHost: h\r\nExpect: something\r\nContent-Length: 2\r\n\r\nok",
          "H|D POST /x? 1.1 ka=1 ec=0 cl=2 ch=0 ct= ce= au= body=2:ok|");
    /* nothing to continue to without a body */
    check("GET /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n", GET_DONE("/x", ""));
}

/* ---- every error ---- */

static void test_request_line_errors(void **state)
{
    (void)state;
    check_err("GET  / HTTP/1.1\r\n" HOST "\r\n", -HTTP_ERR_BAD_REQUEST_LINE);
    check_err("GET /\r\n\r\n", -HTTP_ERR_BAD_REQUEST_LINE);
    check_err("GET / HTTP/1.1 \r\n" HOST "\r\n", -HTTP_ERR_BAD_REQUEST_LINE);
    check_err(" GET / HTTP/1.1\r\n" HOST "\r\n", -HTTP_ERR_BAD_METHOD);
    check_err("G(T / HTTP/1.1\r\n" HOST "\r\n", -HTTP_ERR_BAD_METHOD);
    check_err("GET\t/ HTTP/1.1\r\n" HOST "\r\n", -HTTP_ERR_BAD_CHAR);
    check_err("GET http:/x HTTP/1.1\r\n" HOST "\r\n", -HTTP_ERR_BAD_TARGET);
    check_err("GET http:///x HTTP/1.1\r\n" HOST "\r\n", -HTTP_ERR_BAD_TARGET);
    check_err("GET * HTTP/1.1\r\n" HOST "\r\n", -HTTP_ERR_BAD_TARGET);
    check_err("GET /a#frag HTTP/1.1\r\n" HOST "\r\n", -HTTP_ERR_BAD_TARGET);
    check_err("GET /\xc3\xa9 HTTP/1.1\r\n" HOST "\r\n", -HTTP_ERR_BAD_TARGET);
    check_err("GET /a\x01 HTTP/1.1\r\n" HOST "\r\n", -HTTP_ERR_BAD_CHAR);
    check_err("GET / HTTP/1.1x\r\n" HOST "\r\n", -HTTP_ERR_BAD_VERSION);
    check_err("GET / http/1.1\r\n" HOST "\r\n", -HTTP_ERR_BAD_VERSION);
    check_err("GET / HTTP/11\r\n" HOST "\r\n", -HTTP_ERR_BAD_VERSION);
    check_err("GET / HTTP/1.a\r\n" HOST "\r\n", -HTTP_ERR_BAD_VERSION);
    check_err("GET / HTTP/2.0\r\n" HOST "\r\n", -HTTP_ERR_VERSION_NOT_SUPPORTED);
    check_err("GET / HTTP/1.2\r\n" HOST "\r\n", -HTTP_ERR_VERSION_NOT_SUPPORTED);
    check_err("GET / HTTP/0.9\r\n" HOST "\r\n", -HTTP_ERR_VERSION_NOT_SUPPORTED);
    /* bare LF or CR in the request line */
    check_err("GET / HTTP/1.1\n" HOST "\r\n", -HTTP_ERR_BAD_CHAR);
    check_err("GET / HTTP/1.1\rX" HOST "\r\n", -HTTP_ERR_BAD_CHAR);
    check_err("\r\r\nGET / HTTP/1.1\r\n" HOST "\r\n", -HTTP_ERR_BAD_CHAR);
    check_err("\nGET / HTTP/1.1\r\n" HOST "\r\n", -HTTP_ERR_BAD_CHAR);
}

static void test_uri_too_long(void **state)
{
    (void)state;
    char req[1024];
    char path[HTTP_PATH_MAX + 1];
    memset(path, 'a', sizeof(path));
    path[0] = '/';
    /* HTTP_PATH_MAX - 1 characters fit */
    path[HTTP_PATH_MAX - 1] = '\0';
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\n" HOST "\r\n", path);
    char want[1024];
    snprintf(want, sizeof(want), "D GET %s? 1.1 ka=1 ec=0 cl=-1 ch=0 ct= ce= au= body=0:|", path);
    check(req, want);
    path[HTTP_PATH_MAX - 1] = 'a';
    path[HTTP_PATH_MAX] = '\0';
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\n" HOST "\r\n", path);
    check_err(req, -HTTP_ERR_URI_TOO_LONG);
    /* query too long */
    char q[HTTP_QUERY_MAX + 1];
    memset(q, 'q', sizeof(q) - 1);
    q[HTTP_QUERY_MAX] = '\0';
    snprintf(req, sizeof(req), "GET /?%s HTTP/1.1\r\n" HOST "\r\n", q);
    check_err(req, -HTTP_ERR_URI_TOO_LONG);
    q[HTTP_QUERY_MAX - 1] = '\0';
    snprintf(req, sizeof(req), "GET /?%s HTTP/1.1\r\n" HOST "\r\n", q);
    snprintf(want, sizeof(want), "D GET /?%s 1.1 ka=1 ec=0 cl=-1 ch=0 ct= ce= au= body=0:|", q);
    check(req, want);
    /* a target longer than the raw buffer fails while it arrives */
    char big[1200];
    memset(big, 'b', sizeof(big));
    memcpy(big, "GET /", 5);
    big[sizeof(big) - 1] = '\0';
    check_err(big, -HTTP_ERR_URI_TOO_LONG);
}

static void test_header_errors(void **state)
{
    (void)state;
    check_err("GET / HTTP/1.1\r\nHost : h\r\n\r\n", -HTTP_ERR_BAD_HEADER);
    check_err("GET / HTTP/1.1\r\n" HOST ": x\r\n\r\n", -HTTP_ERR_BAD_HEADER);
    check_err("GET / HTTP/1.1\r\n" HOST "X(y: x\r\n\r\n", -HTTP_ERR_BAD_HEADER);
    check_err("GET / HTTP/1.1\r\n" HOST "X y: x\r\n\r\n", -HTTP_ERR_BAD_HEADER);
    check_err("GET / HTTP/1.1\r\n" HOST "NoColon\r\n\r\n", -HTTP_ERR_BAD_HEADER);
    check_err("GET / HTTP/1.1\r\n" HOST "X-A: a\r\n b\r\n\r\n", -HTTP_ERR_OBS_FOLD);
    check_err("GET / HTTP/1.1\r\n" HOST "X-A: a\r\n\tb\r\n\r\n", -HTTP_ERR_OBS_FOLD);
    check_err("GET / HTTP/1.1\r\n Host: h\r\n\r\n", -HTTP_ERR_OBS_FOLD);
    check_err("GET / HTTP/1.1\r\n" HOST "X-A: a\rb\r\n\r\n", -HTTP_ERR_BAD_CHAR);
    check_err("GET / HTTP/1.1\r\n" HOST "X-A: a\nX-B: b\r\n\r\n", -HTTP_ERR_BAD_CHAR);
    check_err("GET / HTTP/1.1\r\n" HOST "X-A: a\x01\r\n\r\n", -HTTP_ERR_BAD_CHAR);
    check_err("GET / HTTP/1.1\r\n" HOST "X-A: a\x7f\r\n\r\n", -HTTP_ERR_BAD_CHAR);
    check_err("GET / HTTP/1.1\r\n" HOST "\r\r\n", -HTTP_ERR_BAD_CHAR);
    check_err("GET / HTTP/1.1\r\n" HOST "\n", -HTTP_ERR_BAD_CHAR);
    /* NUL in a value and in a name */
    check_lim_n("GET / HTTP/1.1\r\nHost: h\0\r\n\r\n", 28, NULL, true, "Ebad_char|");
    check_lim_n("GET / HTTP/1.1\r\nHo\0st: h\r\n\r\n", 28, NULL, true, "Ebad_char|");
    check_err("GET / HTTP/1.1\r\n\r\n", -HTTP_ERR_MISSING_HOST);
    check_err("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", -HTTP_ERR_DUP_HEADER);
    check_err("POST / HTTP/1.1\r\n" HOST "Content-Type: a/b\r\nContent-Type: a/b\r\n"
              "Content-Length: 0\r\n\r\n",
              -HTTP_ERR_DUP_HEADER);
    check_err("GET / HTTP/1.1\r\n" HOST "Authorization: a\r\nAuthorization: b\r\n\r\n",
              -HTTP_ERR_DUP_HEADER);
}

static void test_stored_field_limits(void **state)
{
    (void)state;
    char req[2048];
    char v[HTTP_AUTHORIZATION_MAX + 1];
    /* Authorization: 511 characters fit, 512 do not */
    memset(v, 'k', sizeof(v));
    v[HTTP_AUTHORIZATION_MAX - 1] = '\0';
    snprintf(req, sizeof(req), "GET / HTTP/1.1\r\n" HOST "Authorization: %s\r\n\r\n", v);
    struct http_parser p;
    http_parser_init(&p, NULL, NULL);
    size_t used;
    assert_int_equal(http_parser_feed(&p, (const uint8_t *)req, strlen(req), &used), HTTP_DONE);
    assert_string_equal(http_parser_req(&p)->authorization, v);
    v[HTTP_AUTHORIZATION_MAX - 1] = 'k';
    v[HTTP_AUTHORIZATION_MAX] = '\0';
    snprintf(req, sizeof(req), "GET / HTTP/1.1\r\n" HOST "Authorization: %s\r\n\r\n", v);
    check_err(req, -HTTP_ERR_HEADER_FIELD_TOO_LONG);
    /* Content-Type: the media type counts, parameters do not */
    memset(v, 't', sizeof(v));
    v[HTTP_CONTENT_TYPE_MAX - 1] = '\0';
    snprintf(req, sizeof(req),
             "GET / HTTP/1.1\r\n" HOST "Content-Type: %s; charset=%s\r\n\r\n", v, v);
    http_parser_init(&p, NULL, NULL);
    assert_int_equal(http_parser_feed(&p, (const uint8_t *)req, strlen(req), &used), HTTP_DONE);
    assert_string_equal(http_parser_req(&p)->content_type, v);
    v[HTTP_CONTENT_TYPE_MAX - 1] = 't';
    v[HTTP_CONTENT_TYPE_MAX] = '\0';
    snprintf(req, sizeof(req), "GET / HTTP/1.1\r\n" HOST "Content-Type: %s\r\n\r\n", v);
    check_err(req, -HTTP_ERR_HEADER_FIELD_TOO_LONG);
    /* Content-Encoding */
    check_err("GET / HTTP/1.1\r\n" HOST
              "Content-Encoding: gzip, gzip, gzip, gzip, gzip, gzip\r\n\r\n",
              -HTTP_ERR_HEADER_FIELD_TOO_LONG);
    /* uninterpreted fields may be long (bounded by max_header_bytes only) */
    char big[6000];
    int n = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\n" HOST "X-Long: ");
    memset(big + n, 'x', 4000);
    strcpy(big + n + 4000, "\r\n\r\n");
    check_lim_n(big, strlen(big), NULL, true, GET_DONE("/", ""));
}

static void test_content_length_errors(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "abc", "", "+5", "-1", "5 5", "0x10", "5a", "1,", ",1", "1;2", "99999999999999999999",
        "9223372036854775808", /* INT64_MAX + 1 */
        "18446744073709551617",
    };
    char req[256];
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        snprintf(req, sizeof(req), "POST / HTTP/1.1\r\n" HOST "Content-Length: %s\r\n\r\n", bad[i]);
        check_err(req, -HTTP_ERR_BAD_CONTENT_LENGTH);
    }
    /* INT64_MAX parses; it is then far above the body limit */
    check_err("POST / HTTP/1.1\r\n" HOST "Content-Length: 9223372036854775807\r\n\r\n",
              -HTTP_ERR_BODY_TOO_LARGE);
    check_err("POST / HTTP/1.1\r\n" HOST "Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
              -HTTP_ERR_DUP_CONTENT_LENGTH);
    check_err("POST / HTTP/1.1\r\n" HOST "Content-Length: 5, 6\r\n\r\n",
              -HTTP_ERR_DUP_CONTENT_LENGTH);
    check_err("POST / HTTP/1.1\r\n" HOST "\r\n", -HTTP_ERR_LENGTH_REQUIRED);
    check_err("PUT / HTTP/1.1\r\n" HOST "\r\n", -HTTP_ERR_LENGTH_REQUIRED);
    check_err("POST / HTTP/1.0\r\n\r\n", -HTTP_ERR_LENGTH_REQUIRED);
}

/* RFC 9112 6.3 / 11.2: framing ambiguities that enable request smuggling. */
static void test_smuggling(void **state)
{
    (void)state;
    check_err("POST / HTTP/1.1\r\n" HOST "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
              "0\r\n\r\n",
              -HTTP_ERR_CL_AND_TE);
    check_err("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
              -HTTP_ERR_CL_AND_TE);
    check_err("POST / HTTP/1.1\r\n" HOST "transfer-encoding: gzip\r\ncontent-length: 3\r\n\r\n",
              -HTTP_ERR_CL_AND_TE);
    check_err("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked, chunked\r\n\r\n",
              -HTTP_ERR_BAD_TRANSFER_ENCODING);
    check_err("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n"
              "Transfer-Encoding: chunked\r\n\r\n",
              -HTTP_ERR_BAD_TRANSFER_ENCODING);
    check_err("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: xchunked\r\n\r\n",
              -HTTP_ERR_BAD_TRANSFER_ENCODING);
    check_err("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked, gzip\r\n\r\n",
              -HTTP_ERR_BAD_TRANSFER_ENCODING);
    check_err("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: gzip\r\n\r\n",
              -HTTP_ERR_BAD_TRANSFER_ENCODING);
    check_err("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: \r\n\r\n",
              -HTTP_ERR_BAD_TRANSFER_ENCODING);
    check_err("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
              -HTTP_ERR_BAD_TRANSFER_ENCODING);
    check_err("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: gzip, chunked\r\n\r\n",
              -HTTP_ERR_TE_NOT_IMPLEMENTED);
    check_err("POST / HTTP/1.1\r\n" HOST
              "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
              -HTTP_ERR_TE_NOT_IMPLEMENTED);
    /* whitespace before the colon, folded TE, TE with a bare LF */
    check_err("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding : chunked\r\n\r\n",
              -HTTP_ERR_BAD_HEADER);
    check_err("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: gzip,\r\n chunked\r\n\r\n",
              -HTTP_ERR_OBS_FOLD);
    check_err("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding:\r\n chunked\r\n\r\n",
              -HTTP_ERR_BAD_TRANSFER_ENCODING);
    check_err("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\n\r\n", -HTTP_ERR_BAD_CHAR);
    /* chunk-size tricks */
    check("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
          "H|Ebad_chunk|");
    check("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
          "H|Ebad_chunk|");
    check("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
          "H|Ebad_chunk|");
    check("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
          "H|Ebad_chunk|");
    check("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n",
          "H|Ebad_chunk|");
    /* data longer than the chunk size */
    check("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
          "H|Ebad_chunk|");
    /* missing CRLF after the data */
    check("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n5\r\nhello0\r\n\r\n",
          "H|Ebad_chunk|");
    check("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r0\r\n\r\n",
          "H|Ebad_chunk|");
    /* control character in a chunk extension */
    check("POST / HTTP/1.1\r\n" HOST
          "Transfer-Encoding: chunked\r\n\r\n5;a\x01\r\nhello\r\n0\r\n\r\n",
          "H|Ebad_chunk|");
    /* malformed trailer */
    check("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n0\r\nBad Trailer\r\n\r\n",
          "H|Ebad_header|");
    check("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n0\r\nA: b\r\n c\r\n\r\n",
          "H|Eobs_fold|");
}

static void test_chunk_sizes(void **state)
{
    (void)state;
    /* 16 hex digits fit in 64 bits but are far above the body limit */
    check("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF\r\n",
          "H|Ebody_too_large|");
    check("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n7fffffffffffffff\r\nx",
          "H|Ebody_too_large|");
    /* 17 significant digits overflow, and are refused while still arriving */
    check("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n10000000000000000",
          "H|Echunk_size_overflow|");
    check("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF\r\n",
          "H|Echunk_size_overflow|");
    /* an endless chunk-size line (leading zeros or extensions) */
    char req[2400];
    int n = snprintf(req, sizeof(req),
                     "POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n1;");
    memset(req + n, 'e', HTTP_MAX_CHUNK_LINE);
    strcpy(req + n + HTTP_MAX_CHUNK_LINE, "\r\nx\r\n0\r\n\r\n");
    check(req, "H|Ebad_chunk|");
    /* exactly HTTP_MAX_CHUNK_LINE bytes (with CRLF) is fine */
    memset(req + n, 'e', HTTP_MAX_CHUNK_LINE - 4);
    strcpy(req + n + HTTP_MAX_CHUNK_LINE - 4, "\r\nx\r\n0\r\n\r\n");
    check(req, "H|D POST /? 1.1 ka=1 ec=0 cl=-1 ch=1 ct= ce= au= body=1:x|");
}

static void test_limits(void **state)
{
    (void)state;
    const char *get = "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-B: 2\r\n\r\n";
    uint32_t head = (uint32_t)strlen(get);
    struct http_limits lim = {.max_header_bytes = head, .max_headers = 3, .max_body_bytes = 10};
    check_lim(get, &lim, GET_DONE("/", ""));
    lim.max_header_bytes = head - 1;
    check_lim(get, &lim, "Eheader_too_large|");
    /* leading empty lines count */
    lim.max_header_bytes = head + 1;
    check_lim("\r\nGET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-B: 2\r\n\r\n", &lim,
              "Eheader_too_large|");
    lim.max_header_bytes = 0; /* default */
    lim.max_headers = 2;
    check_lim(get, &lim, "Etoo_many_headers|");
    lim.max_headers = 3;

    /* body by Content-Length: checked before the body arrives */
    check_lim("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789", &lim,
              "H|D POST /? 1.1 ka=1 ec=0 cl=10 ch=0 ct= ce= au= body=10:0123456789|");
    check_lim("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n", &lim, "Ebody_too_large|");
    /* body by chunks: refused at the size line that goes over */
    check_lim("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
              "5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n",
              &lim, "H|D POST /? 1.1 ka=1 ec=0 cl=-1 ch=1 ct= ce= au= body=10:0123456789|");
    check_lim("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
              "5\r\n01234\r\n6\r\n",
              &lim, "H|Ebody_too_large|");
    /* trailers count against the header limits */
    check_lim("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 1\r\n\r\n",
              &lim, "H|D POST /? 1.1 ka=1 ec=0 cl=-1 ch=1 ct= ce= au= body=0:|");
    check_lim(
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 1\r\nU: 2\r\n\r\n",
        &lim, "H|Etoo_many_headers|");
    const char *tr =
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 1\r\n\r\n";
    /* head bytes = everything but "0\r\n" */
    lim.max_header_bytes = (uint32_t)strlen(tr) - 3;
    check_lim(tr, &lim, "H|D POST /? 1.1 ka=1 ec=0 cl=-1 ch=1 ct= ce= au= body=0:|");
    lim.max_header_bytes--;
    check_lim(tr, &lim, "H|Eheader_too_large|");

    /* the body buf's own limit is a 413 too: up front for Content-Length... */
    struct buf small;
    assert_int_equal(buf_init(&small, 4, 4), 0);
    struct http_parser p;
    lim = (struct http_limits){.max_body_bytes = 100};
    http_parser_init(&p, &lim, &small);
    const char *r1 = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n";
    size_t used;
    assert_int_equal(http_parser_feed(&p, (const uint8_t *)r1, strlen(r1), &used),
                     -HTTP_ERR_BODY_TOO_LARGE);
    /* ...and while de-chunking */
    http_parser_reset(&p);
    const char *r2 =
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n";
    assert_int_equal(http_parser_feed(&p, (const uint8_t *)r2, strlen(r2), &used),
                     HTTP_HEADERS_COMPLETE);
    assert_int_equal(http_parser_feed(&p, (const uint8_t *)r2 + used, strlen(r2) - used, &used),
                     -HTTP_ERR_BODY_TOO_LARGE);
    /* 4 bytes fit */
    http_parser_reset(&p);
    const char *r3 = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nabcd";
    assert_int_equal(http_parser_feed(&p, (const uint8_t *)r3, strlen(r3), &used),
                     HTTP_HEADERS_COMPLETE);
    size_t r3_head = used;
    assert_int_equal(http_parser_feed(&p, (const uint8_t *)r3 + used, strlen(r3) - used, &used),
                     HTTP_DONE);
    /* whole in one feed: in place (test_body_in_place) */
    assert_ptr_equal(http_parser_req(&p)->body, (const uint8_t *)r3 + r3_head);
    assert_memory_equal(http_parser_req(&p)->body, "abcd", 4);
    uint8_t *before = small.data;
    http_parser_reset(&p);
    assert_int_equal(small.len, 0);
    assert_ptr_equal(small.data, before); /* capacity kept */
    buf_free(&small);
}

/* Without a body buf the body is counted and dropped. */
static void test_no_body_buf(void **state)
{
    (void)state;
    check_lim_n(
        "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        "POST /y HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nde",
        strlen("POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc"
               "\r\n0\r\n\r\nPOST /y HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nde"),
        NULL, false,
        "H|D POST /x? 1.1 ka=1 ec=0 cl=-1 ch=1 ct= ce= au= body=3:|"
        "H|D POST /y? 1.1 ka=1 ec=0 cl=2 ch=0 ct= ce= au= body=2:|");
}

static void test_feed_contract(void **state)
{
    (void)state;
    struct http_parser p;
    http_parser_init(&p, NULL, NULL);
    size_t used = 99;
    assert_int_equal(http_parser_feed(&p, NULL, 0, &used), HTTP_AGAIN);
    assert_int_equal(used, 0);
    const char *two = "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_int_equal(http_parser_feed(&p, (const uint8_t *)two, strlen(two), &used), HTTP_DONE);
    assert_int_equal(used, strlen(two) / 2);
    /* again without reset: nothing consumed */
    size_t used2 = 99;
    assert_int_equal(http_parser_feed(&p, (const uint8_t *)two + used, 5, &used2), HTTP_DONE);
    assert_int_equal(used2, 0);
    http_parser_reset(&p);
    assert_int_equal(http_parser_feed(&p, (const uint8_t *)two + used, strlen(two) - used, &used2),
                     HTTP_DONE);
    assert_string_equal(http_parser_req(&p)->path, "/b");
    /* errors are sticky until reset */
    http_parser_reset(&p);
    assert_int_equal(http_parser_feed(&p, (const uint8_t *)"\x01", 1, &used), -HTTP_ERR_BAD_CHAR);
    assert_int_equal(http_parser_feed(&p, (const uint8_t *)"GET", 3, &used), -HTTP_ERR_BAD_CHAR);
    assert_int_equal(used, 0);
    http_parser_reset(&p);
    assert_int_equal(http_parser_feed(&p, (const uint8_t *)two, strlen(two), &used), HTTP_DONE);
}

static void test_error_table(void **state)
{
    (void)state;
    static const int allowed[] = {400, 411, 413, 414, 431, 500, 501, 505};
    for (int i = 0; i < HTTP_ERR_COUNT; i++) {
        int err = -(HTTP_ERR_FIRST + i);
        int st = http_error_status(err);
        bool ok = false;
        for (size_t k = 0; k < ARRAY_SIZE(allowed); k++)
            ok |= st == allowed[k];
        assert_true(ok);
        assert_non_null(http_status_reason(st));
        const char *r = http_error_reason(err);
        assert_true(strlen(r) > 0);
        for (const char *c = r; *c; c++)
            assert_true((*c >= 'a' && *c <= 'z') || *c == '_');
        assert_true(strlen(http_error_message(err)) > 0);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(r, http_error_reason(-(HTTP_ERR_FIRST + j)));
    }
    assert_int_equal(http_error_status(-HTTP_ERR_LENGTH_REQUIRED), 411);
    assert_int_equal(http_error_status(-HTTP_ERR_BODY_TOO_LARGE), 413);
    assert_int_equal(http_error_status(-HTTP_ERR_URI_TOO_LONG), 414);
    assert_int_equal(http_error_status(-HTTP_ERR_HEADER_TOO_LARGE), 431);
    assert_int_equal(http_error_status(-HTTP_ERR_TOO_MANY_HEADERS), 431);
    assert_int_equal(http_error_status(-HTTP_ERR_TE_NOT_IMPLEMENTED), 501);
    assert_int_equal(http_error_status(-HTTP_ERR_VERSION_NOT_SUPPORTED), 505);
    assert_int_equal(http_error_status(-HTTP_ERR_CL_AND_TE), 400);
    assert_int_equal(http_error_status(-1), 500);
    assert_int_equal(http_error_status(0), 500);
    assert_int_equal(http_error_status(-(HTTP_ERR_FIRST + HTTP_ERR_COUNT)), 500);
    assert_string_equal(http_error_reason(-5), "internal");
    assert_string_equal(http_error_message(12345), "internal error");
}

/* ---- responses ---- */

static void test_response_write(void **state)
{
    (void)state;
    struct buf out;
    assert_int_equal(buf_init(&out, 0, 0), 0);
    assert_int_equal(http_response_write(&out, 200, "application/x-protobuf", "abc", 3, true, 0,
                                         NULL),
                     0);
    const char *want1 = "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\n"
                        "Content-Length: 3\r\n\r\nabc";
    assert_int_equal(out.len, strlen(want1));
    assert_memory_equal(out.data, want1, out.len);

    /* appends (pipelined responses queue in order) */
    assert_int_equal(http_response_write(&out, 503, "application/json", "{}", 2, false, 7,
                                         "X-A: b\r\n"),
                     0);
    const char *want2 = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                        "Content-Length: 2\r\nConnection: close\r\nRetry-After: 7\r\nX-A: b\r\n"
                        "\r\n{}";
    assert_int_equal(out.len, strlen(want1) + strlen(want2));
    assert_memory_equal(out.data + strlen(want1), want2, strlen(want2));

    /* no content type, empty body */
    buf_reset(&out);
    assert_int_equal(http_response_write(&out, 404, NULL, NULL, 0, true, 0, NULL), 0);
    const char *want3 = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(out.len, strlen(want3));
    assert_memory_equal(out.data, want3, out.len);

    /* 204: no Content-Length (RFC 9110 8.6), and no body allowed */
    buf_reset(&out);
    assert_int_equal(http_response_write(&out, 204, NULL, NULL, 0, true, 0, NULL), 0);
    assert_int_equal(out.len, strlen("HTTP/1.1 204 No Content\r\n\r\n"));
    assert_memory_equal(out.data, "HTTP/1.1 204 No Content\r\n\r\n", out.len);
    assert_int_equal(http_response_write(&out, 204, NULL, "x", 1, true, 0, NULL), -EINVAL);

    /* HEAD: Content-Length of the would-be body, no body */
    buf_reset(&out);
    assert_int_equal(http_response_write_head(&out, 200, "text/plain", 1234, true, 0, NULL), 0);
    const char *want4 =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1234\r\n\r\n";
    assert_int_equal(out.len, strlen(want4));
    assert_memory_equal(out.data, want4, out.len);

    /* 100 Continue */
    buf_reset(&out);
    assert_int_equal(http_response_continue(&out), 0);
    assert_int_equal(out.len, strlen("HTTP/1.1 100 Continue\r\n\r\n"));
    assert_memory_equal(out.data, "HTTP/1.1 100 Continue\r\n\r\n", out.len);

    /* bad arguments leave the buf alone */
    buf_reset(&out);
    assert_int_equal(http_response_write(&out, 299, NULL, NULL, 0, true, 0, NULL), -EINVAL);
    assert_int_equal(http_response_write(&out, 200, "a\r\nX: y", NULL, 0, true, 0, NULL), -EINVAL);
    assert_int_equal(http_response_write(&out, 200, NULL, NULL, 0, true, 0, "X: y"), -EINVAL);
    assert_int_equal(http_response_write(&out, 200, NULL, NULL, 5, true, 0, NULL), -EINVAL);
    assert_int_equal(out.len, 0);
    buf_free(&out);

    /* buf limit */
    assert_int_equal(buf_init(&out, 16, 32), 0);
    assert_int_equal(http_response_write(&out, 200, "text/plain", "abc", 3, true, 0, NULL),
                     -EMSGSIZE);
    assert_int_equal(out.len, 0);
    buf_free(&out);
}

static void test_status_reasons(void **state)
{
    (void)state;
    static const struct {
        int status;
        const char *reason;
    } t[] = {
        {100, "Continue"},
        {200, "OK"},
        {204, "No Content"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {411, "Length Required"},
        {413, "Content Too Large"},
        {414, "URI Too Long"},
        {415, "Unsupported Media Type"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {503, "Service Unavailable"},
        {505, "HTTP Version Not Supported"},
    };
    struct buf out;
    assert_int_equal(buf_init(&out, 0, 0), 0);
    for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
        assert_string_equal(http_status_reason(t[i].status), t[i].reason);
        if (t[i].status == 100)
            continue;
        buf_reset(&out);
        assert_int_equal(http_response_write(&out, t[i].status, NULL, NULL, 0, true, 0, NULL), 0);
        char line[80];
        int n = snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", t[i].status, t[i].reason);
        assert_true(out.len > (size_t)n);
        assert_memory_equal(out.data, line, (size_t)n);
    }
    assert_null(http_status_reason(299));
    buf_free(&out);
}

/* A big head fed byte by byte: one HEADERS_COMPLETE, AGAIN everywhere else. */
static void test_large_head_bytewise(void **state)
{
    (void)state;
    /* 60 fields, 8000 bytes of head, byte by byte: linear, and exact */
    static char req[9000];
    int n = snprintf(req, sizeof(req), "POST /v1/metrics HTTP/1.1\r\nHost: h\r\n");
    for (int i = 0; i < 58; i++)
        n += snprintf(req + n, sizeof(req) - (size_t)n, "X-Field-%02d: %0120d\r\n", i, i);
    n += snprintf(req + n, sizeof(req) - (size_t)n, "Content-Length: 3\r\n\r\nabc");
    struct http_parser p;
    struct buf body;
    assert_int_equal(buf_init(&body, 16, 0), 0);
    struct http_limits lim = {.max_header_bytes = 16384, .max_headers = 60};
    http_parser_init(&p, &lim, &body);
    int rc = HTTP_AGAIN, hc = 0;
    for (int i = 0; i < n; i++) {
        size_t used;
        rc = http_parser_feed(&p, (const uint8_t *)req + i, 1, &used);
        assert_int_equal(used, 1);
        if (rc == HTTP_HEADERS_COMPLETE)
            hc++;
        else if (i + 1 < n)
            assert_int_equal(rc, HTTP_AGAIN);
    }
    assert_int_equal(rc, HTTP_DONE);
    assert_int_equal(hc, 1);
    assert_int_equal(http_parser_req(&p)->body_len, 3);
    buf_free(&body);
}

/* A body that arrives whole in one feed is not copied: req->body points
 * into the fed data and the body buf stays empty. One that straddles feeds
 * is assembled in the body buf. */
static void test_body_in_place(void **state)
{
    (void)state;
    static const char req[] = "POST /v1/traces HTTP/1.1\r\nHost: a\r\n"
                              "Content-Length: 5\r\n\r\nhelloGET";
    const size_t head = strlen(req) - strlen("helloGET");
    struct buf body;
    assert_int_equal(buf_init(&body, 64, 0), 0);
    struct http_parser p;
    http_parser_init(&p, NULL, &body);
    size_t used;
    assert_int_equal(http_parser_feed(&p, (const uint8_t *)req, strlen(req), &used),
                     HTTP_HEADERS_COMPLETE);
    assert_int_equal(used, head);
    assert_int_equal(http_parser_feed(&p, (const uint8_t *)req + head, strlen(req) - head, &used),
                     HTTP_DONE);
    assert_int_equal(used, 5); /* "GET" belongs to the next request */
    const struct http_req *r = http_parser_req(&p);
    assert_ptr_equal(r->body, (const uint8_t *)req + head);
    assert_int_equal(r->body_len, 5);
    assert_int_equal(body.len, 0);

    http_parser_reset(&p);
    assert_int_equal(http_parser_feed(&p, (const uint8_t *)req, head + 2, &used),
                     HTTP_HEADERS_COMPLETE);
    assert_int_equal(http_parser_feed(&p, (const uint8_t *)req + head, 2, &used), HTTP_AGAIN);
    assert_int_equal(http_parser_feed(&p, (const uint8_t *)req + head + 2, 6, &used), HTTP_DONE);
    assert_int_equal(used, 3);
    assert_ptr_equal(r->body, body.data);
    assert_memory_equal(r->body, "hello", 5);
    buf_free(&body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_in_place),
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_simple_post),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_request_line_errors),
        cmocka_unit_test(test_uri_too_long),
        cmocka_unit_test(test_header_errors),
        cmocka_unit_test(test_stored_field_limits),
        cmocka_unit_test(test_content_length_errors),
        cmocka_unit_test(test_smuggling),
        cmocka_unit_test(test_chunk_sizes),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_no_body_buf),
        cmocka_unit_test(test_feed_contract),
        cmocka_unit_test(test_error_table),
        cmocka_unit_test(test_response_write),
        cmocka_unit_test(test_status_reasons),
        cmocka_unit_test(test_large_head_bytewise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
