/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP/1.1 server side: a resumable request parser (input may arrive one byte
 * at a time, several pipelined requests may share one buffer) and a response
 * writer. Sits between the transport (lib/sock, later the userspace TCP stack)
 * and the OTLP/HTTP receiver and control plane. No allocation while parsing. */
#ifndef OTLP_HTTP_H
#define OTLP_HTTP_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

/* Sizes of the fixed fields of struct http_req, including the NUL. A value
 * that does not fit is an error (414 for the target, 431 for a header), never
 * silently truncated. */
#define HTTP_PATH_MAX 256
#define HTTP_QUERY_MAX 128
#define HTTP_CONTENT_TYPE_MAX 128
#define HTTP_CONTENT_ENCODING_MAX 32
#define HTTP_AUTHORIZATION_MAX 512

/* Used for a zero field of struct http_limits (or a NULL limits pointer). */
#define HTTP_DEFAULT_MAX_HEADER_BYTES 8192u
#define HTTP_DEFAULT_MAX_HEADERS 64u
#define HTTP_DEFAULT_MAX_BODY_BYTES (4ull << 20)

/* Longest chunk-size line (size, extensions, CRLF) accepted in a chunked body. */
#define HTTP_MAX_CHUNK_LINE 1024u

/* Positive results of http_parser_feed(); errors are negative (-HTTP_ERR_*). */
#define HTTP_AGAIN 1            /* all input consumed, need more */
#define HTTP_HEADERS_COMPLETE 2 /* head parsed, body follows; feed again */
#define HTTP_DONE 3             /* request complete */

/*
 * Parse errors: X(name, HTTP status to answer with, metric reason label,
 * human message). The parser returns -HTTP_ERR_<name>. After any error the
 * request framing is unknown: answer with the status and `Connection: close`,
 * then close the connection.
 */
#define HTTP_ERRORS(X)                                                                        \
    X(BAD_REQUEST_LINE, 400, bad_request_line, "malformed request line")                     \
    X(BAD_METHOD, 400, bad_method, "invalid method token")                                   \
    X(BAD_TARGET, 400, bad_target, "invalid request target")                                 \
    X(URI_TOO_LONG, 414, uri_too_long, "request target too long")                            \
    X(BAD_VERSION, 400, bad_version, "malformed HTTP version")                               \
    X(VERSION_NOT_SUPPORTED, 505, version_not_supported, "HTTP version not supported")       \
    X(BAD_HEADER, 400, bad_header, "malformed header field")                                 \
    X(OBS_FOLD, 400, obs_fold, "obsolete line folding in header field")                      \
    X(BAD_CHAR, 400, bad_char, "NUL, bare CR/LF or control character in request")            \
    X(HEADER_TOO_LARGE, 431, header_too_large, "header section too large")                   \
    X(TOO_MANY_HEADERS, 431, too_many_headers, "too many header fields")                     \
    X(HEADER_FIELD_TOO_LONG, 431, header_field_too_long, "header field value too long")      \
    X(MISSING_HOST, 400, missing_host, "HTTP/1.1 request without Host header")               \
    X(DUP_HEADER, 400, duplicate_header, "singleton header field repeated")                  \
    X(BAD_CONTENT_LENGTH, 400, bad_content_length, "invalid Content-Length")                 \
    X(DUP_CONTENT_LENGTH, 400, conflicting_content_length, "conflicting Content-Length")     \
    X(CL_AND_TE, 400, cl_and_te, "both Content-Length and Transfer-Encoding")                \
    X(BAD_TRANSFER_ENCODING, 400, bad_transfer_encoding, "malformed Transfer-Encoding")      \
    X(TE_NOT_IMPLEMENTED, 501, te_not_implemented, "transfer coding not implemented")        \
    X(LENGTH_REQUIRED, 411, length_required, "Content-Length or chunked body required")      \
    X(BODY_TOO_LARGE, 413, body_too_large, "request body too large")                         \
    X(BAD_CHUNK, 400, bad_chunk, "malformed chunked body")                                   \
    X(CHUNK_SIZE_OVERFLOW, 400, chunk_size_overflow, "chunk size overflow")                  \
    X(NO_MEMORY, 500, no_memory, "body buffer allocation failed")

/* Error numbers start at 1000 so they never read as errno values. */
enum http_err {
    HTTP_ERR_BASE_ = 999,
#define X(name, status, reason, msg) HTTP_ERR_##name,
    HTTP_ERRORS(X)
#undef X
    HTTP_ERR_END_
};
/* Number of parse errors; -err - HTTP_ERR_FIRST indexes per-reason counters. */
#define HTTP_ERR_FIRST (HTTP_ERR_BASE_ + 1)
#define HTTP_ERR_COUNT (HTTP_ERR_END_ - HTTP_ERR_FIRST)

enum http_method {
    HTTP_GET,
    HTTP_POST,
    HTTP_HEAD,
    HTTP_PUT,
    HTTP_DELETE,
    HTTP_OPTIONS,
    HTTP_OTHER
};

struct http_limits {
    uint32_t max_header_bytes;  /* request line + fields (+ trailers), CRLFs included */
    uint32_t max_headers;       /* field lines, trailer fields included */
    uint64_t max_body_bytes;    /* body after de-chunking */
};

/* One parsed request. Strings are NUL-terminated. Valid from HTTP_HEADERS_COMPLETE
 * (body fields from HTTP_DONE) until http_parser_reset(). */
struct http_req {
    enum http_method method;
    uint8_t http_minor;         /* 0 or 1 */
    bool chunked;               /* Transfer-Encoding: chunked */
    bool keep_alive;            /* connection may carry another request */
    bool expect_continue;       /* Expect: 100-continue (HTTP/1.1 only) */
    int64_t content_length;     /* -1 when absent */
    char path[HTTP_PATH_MAX];   /* origin-form path, not percent-decoded; "*" for OPTIONS * */
    char query[HTTP_QUERY_MAX]; /* after '?', without it; "" when none */
    char content_type[HTTP_CONTENT_TYPE_MAX];         /* media type, lowercased, no params */
    char content_encoding[HTTP_CONTENT_ENCODING_MAX]; /* lowercased; "" for none/identity */
    char authorization[HTTP_AUTHORIZATION_MAX];       /* verbatim, OWS trimmed */
    const uint8_t *body;        /* NULL when the parser has no buf; else into the body buf,
                                 * or, when the whole body came in one feed, into that
                                 * feed's data (not copied): valid as long as it is */
    size_t body_len;            /* de-chunked body length */
};

/* Parser state. Embed it in the connection; treat everything but `req` as private. */
struct http_parser {
    struct http_req req;
    struct http_limits lim;
    struct buf *body_buf;
    uint8_t state;
    uint8_t hdr;                /* which known header the current field is */
    uint8_t tok_len;            /* method / version / name accumulator length */
    bool in_trailers;
    bool seen_host, seen_ct, seen_auth, seen_te, seen_conn_close, seen_conn_keepalive;
    bool te_chunked_last;       /* last transfer coding seen was chunked */
    bool te_other;              /* a coding other than chunked */
    bool val_skip;              /* rest of value is not stored (Content-Type params) */
    int err;                    /* sticky error */
    uint32_t head_bytes;
    uint32_t headers;
    uint32_t chunk_line;
    uint16_t target_len;
    uint16_t val_len;
    uint64_t remaining;         /* body or chunk bytes still expected */
    uint64_t body_bytes;
    char tok[32];
    char target[HTTP_PATH_MAX + HTTP_QUERY_MAX];
    char val[HTTP_AUTHORIZATION_MAX];
};

/*
 * Prepare a parser. `lim` is copied; NULL or zero fields take the defaults
 * above. `body` (borrowed for the parser's lifetime, may be NULL to discard
 * bodies) receives each request body; give it a capacity allocated once so the
 * parser never allocates. A buf limit below max_body_bytes turns into 413.
 */
void http_parser_init(struct http_parser *p, const struct http_limits *lim, struct buf *body);

/* Forget the current request (and empty the body buf) to parse the next one on
 * the same connection. Keeps limits and body buf. */
void http_parser_reset(struct http_parser *p);

/*
 * Parse up to `len` bytes of `data`. `*consumed` receives how many were used.
 * Returns:
 *   HTTP_AGAIN             all of `data` consumed, the request is incomplete.
 *   HTTP_HEADERS_COMPLETE  the head is parsed and a body follows (Content-Length
 *                          > 0 or chunked); returned once per request so the caller
 *                          can send 100 Continue or reject early. Call again with
 *                          the unconsumed rest.
 *   HTTP_DONE              the request is complete; bytes after `*consumed` belong
 *                          to the next request (call http_parser_reset() first).
 *                          Requests without a body go straight here.
 *   -HTTP_ERR_*            see HTTP_ERRORS; sticky until reset. Limits: 431 when
 *                          the head exceeds max_header_bytes or max_headers, or a
 *                          stored field does not fit; 413 when Content-Length or
 *                          the de-chunked body exceeds max_body_bytes; 414 when
 *                          the path or query does not fit; 411 for POST/PUT with
 *                          neither Content-Length nor chunked.
 * Feeding after HTTP_DONE without a reset returns HTTP_DONE with *consumed = 0.
 */
int http_parser_feed(struct http_parser *p, const uint8_t *data, size_t len, size_t *consumed);

/* The request being parsed (valid as described at struct http_req). */
static inline const struct http_req *http_parser_req(const struct http_parser *p)
{
    return &p->req;
}

/* Status code, human message and metric reason label for a -HTTP_ERR_* value.
 * Unknown values give 500, "internal error", "internal". */
int http_error_status(int err);
const char *http_error_message(int err);
const char *http_error_reason(int err);

/* Reason phrase for a status code, NULL when the writer does not know it. */
const char *http_status_reason(int status);

/*
 * Append a complete response to `out` (appends, so pipelined responses queue
 * in order). Always writes Content-Length except for 1xx and 204 (RFC 9110
 * 8.6 forbids it there); `Connection: close` when !keep_alive; Retry-After
 * when retry_after_s > 0; Content-Type when content_type is non-empty.
 * `extra_headers`: NULL or complete "Name: value\r\n" lines. HTTP/1.0 clients
 * that asked for keep-alive need "Connection: keep-alive\r\n" there.
 * Returns 0; -EINVAL for an unknown status, a body with 1xx/204, CR/LF in
 * content_type or extra_headers not ending in CRLF; -EMSGSIZE or -ENOMEM from
 * the buf (then `out` is unchanged).
 */
int http_response_write(struct buf *out, int status, const char *content_type, const void *body,
                        size_t body_len, bool keep_alive, uint32_t retry_after_s,
                        const char *extra_headers);

/* As http_response_write() for a HEAD request: Content-Length says body_len
 * but no body bytes are written (`body` may be NULL). */
int http_response_write_head(struct buf *out, int status, const char *content_type,
                             size_t body_len, bool keep_alive, uint32_t retry_after_s,
                             const char *extra_headers);

/* Append "HTTP/1.1 100 Continue\r\n\r\n". Returns 0, -EMSGSIZE, -ENOMEM. */
int http_response_continue(struct buf *out);

#endif
