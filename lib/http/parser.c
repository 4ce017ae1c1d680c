/* SPDX-License-Identifier: Apache-2.0 */
/* Resumable HTTP/1.1 request parser (RFC 9112). One byte-driven state machine
 * for the head and the chunk framing, bulk copies for body bytes; every input
 * byte is looked at once, so cost is O(n) however the input is split. */
#include "http/http.h"

#include <errno.h>
#include <string.h>

enum parser_state {
    S_START,         /* before the request line; empty lines are skipped */
    S_START_LF,
    S_METHOD,
    S_TARGET,
    S_VERSION,
    S_LINE_LF,
    S_HDR_START,     /* start of a field line, or the empty line ending the head */
    S_HDR_NAME,
    S_HDR_OWS,
    S_HDR_VALUE,
    S_HDR_LF,
    S_HEAD_LF,
    S_BODY,          /* Content-Length body */
    S_CHUNK_SIZE0,
    S_CHUNK_SIZE,
    S_CHUNK_WS,
    S_CHUNK_EXT,
    S_CHUNK_LF,
    S_CHUNK_DATA,
    S_CHUNK_DATA_CR,
    S_CHUNK_DATA_LF,
    S_DONE,
    S_ERROR,
};

/* Header fields the parser interprets; every other field is only validated. */
enum known_hdr {
    H_OTHER,
    H_HOST,
    H_CONTENT_LENGTH,
    H_TRANSFER_ENCODING,
    H_CONNECTION,
    H_EXPECT,
    H_CONTENT_TYPE,
    H_CONTENT_ENCODING,
    H_AUTHORIZATION,
};

static const struct {
    const char *name;
    uint8_t len;
    uint8_t hdr;
} known_hdrs[] = {
    {"host", 4, H_HOST},
    {"content-length", 14, H_CONTENT_LENGTH},
    {"transfer-encoding", 17, H_TRANSFER_ENCODING},
    {"connection", 10, H_CONNECTION},
    {"expect", 6, H_EXPECT},
    {"content-type", 12, H_CONTENT_TYPE},
    {"content-encoding", 16, H_CONTENT_ENCODING},
    {"authorization", 13, H_AUTHORIZATION},
};

/* Character classes. RFC 9110 5.6.2 tchar; 5.5 field-vchar (VCHAR / obs-text);
 * request-target characters (visible ASCII except '#'); HEXDIG; anything
 * allowed inside a field value (field-vchar, SP, HTAB). */
#define C_TCHAR 1
#define C_FVCHAR 2
#define C_TARGET 4
#define C_HEX 8
#define C_VALUE 16

static const uint8_t char_class[256] = {
    /* 00 */ 0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0,
    /* 10 */ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    /* 20 */ 16, 23, 22, 19, 23, 23, 23, 23, 22, 22, 23, 23, 22, 23, 23, 22,
    /* 30 */ 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 22, 22, 22, 22, 22, 22,
    /* 40 */ 22, 31, 31, 31, 31, 31, 31, 23, 23, 23, 23, 23, 23, 23, 23, 23,
    /* 50 */ 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 22, 22, 22, 23, 23,
    /* 60 */ 23, 31, 31, 31, 31, 31, 31, 23, 23, 23, 23, 23, 23, 23, 23, 23,
    /* 70 */ 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 22, 23, 22, 23, 0,
    /* 80 */ 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18,
    /* 90 */ 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18,
    /* a0 */ 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18,
    /* b0 */ 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18,
    /* c0 */ 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18,
    /* d0 */ 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18,
    /* e0 */ 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18,
    /* f0 */ 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18,
};

/* Internal result of head_byte(): the empty line ending the head (or trailers). */
#define HEAD_END 100

static inline bool is_class(uint8_t c, uint8_t cls) { return (char_class[c] & cls) != 0; }
static inline bool is_ows(uint8_t c) { return c == ' ' || c == '\t'; }
static inline uint8_t to_lower(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c | 0x20) : c;
}

static inline int hex_val(uint8_t c)
{
    if (c <= '9')
        return c - '0';
    return (c | 0x20) - 'a' + 10;
}

/* A byte that is not allowed where it appears: control characters (NUL, bare
 * CR or LF, ...) get their own reason so they show up apart from syntax errors. */
static inline int bad_byte(uint8_t c, int syntax_err)
{
    return (c < 0x20 || c == 0x7f) ? -HTTP_ERR_BAD_CHAR : syntax_err;
}

static bool ieq(const char *a, size_t alen, const char *lower_b)
{
    size_t blen = strlen(lower_b);
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++)
        if (to_lower((uint8_t)a[i]) != (uint8_t)lower_b[i])
            return false;
    return true;
}

/* Copy `n` bytes lowercased into a NUL-terminated field of size `cap`. */
static void copy_lower(char *dst, const char *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (char)to_lower((uint8_t)src[i]);
    dst[n] = '\0';
}

void http_parser_init(struct http_parser *p, const struct http_limits *lim, struct buf *body)
{
    memset(p, 0, sizeof(*p));
    if (lim != NULL)
        p->lim = *lim;
    if (p->lim.max_header_bytes == 0)
        p->lim.max_header_bytes = HTTP_DEFAULT_MAX_HEADER_BYTES;
    if (p->lim.max_headers == 0)
        p->lim.max_headers = HTTP_DEFAULT_MAX_HEADERS;
    if (p->lim.max_body_bytes == 0)
        p->lim.max_body_bytes = HTTP_DEFAULT_MAX_BODY_BYTES;
    p->body_buf = body;
    http_parser_reset(p);
}

void http_parser_reset(struct http_parser *p)
{
    struct http_limits lim = p->lim;
    struct buf *body = p->body_buf;
    /* The request and the flags; tok/target/val are scratch space that is
     * always written before it is read. */
    memset(p, 0, offsetof(struct http_parser, tok));
    p->lim = lim;
    p->body_buf = body;
    p->state = S_START;
    p->req.method = HTTP_OTHER;
    p->req.http_minor = 1;
    p->req.content_length = -1;
    if (body != NULL)
        buf_reset(body);
}

static enum http_method method_from_tok(const char *t, size_t n)
{
    static const struct {
        const char *s;
        uint8_t len;
        enum http_method m;
    } methods[] = {
        {"GET", 3, HTTP_GET},   {"POST", 4, HTTP_POST},     {"HEAD", 4, HTTP_HEAD},
        {"PUT", 3, HTTP_PUT},   {"DELETE", 6, HTTP_DELETE}, {"OPTIONS", 7, HTTP_OPTIONS},
    };
    /* RFC 9110 9.1: methods are case-sensitive. */
    for (size_t i = 0; i < ARRAY_SIZE(methods); i++)
        if (methods[i].len == n && memcmp(methods[i].s, t, n) == 0)
            return methods[i].m;
    return HTTP_OTHER;
}

/*
 * Split the buffered request-target into path and query. Accepts origin-form,
 * asterisk-form (OPTIONS only) and absolute-form with an http(s) scheme, whose
 * authority is dropped (RFC 9112 3.2.2: servers MUST accept absolute-form).
 */
static int process_target(struct http_parser *p)
{
    const char *t = p->target;
    size_t n = p->target_len;

    if (n == 1 && t[0] == '*') {
        if (p->req.method != HTTP_OPTIONS)
            return -HTTP_ERR_BAD_TARGET;
        p->req.path[0] = '*';
        p->req.path[1] = '\0';
        return 0;
    }
    if (t[0] != '/') {
        size_t skip;
        if (n >= 7 && ieq(t, 7, "http://"))
            skip = 7;
        else if (n >= 8 && ieq(t, 8, "https://"))
            skip = 8;
        else
            return -HTTP_ERR_BAD_TARGET;
        size_t a = skip;
        while (a < n && t[a] != '/' && t[a] != '?')
            a++;
        if (a == skip)
            return -HTTP_ERR_BAD_TARGET; /* empty authority */
        t += a;
        n -= a;
    }

    const char *q = memchr(t, '?', n);
    size_t path_len = q ? (size_t)(q - t) : n;
    size_t query_len = q ? n - path_len - 1 : 0;
    if (path_len == 0) { /* absolute-form without a path: "/" */
        p->req.path[0] = '/';
        p->req.path[1] = '\0';
    } else {
        if (path_len >= HTTP_PATH_MAX)
            return -HTTP_ERR_URI_TOO_LONG;
        memcpy(p->req.path, t, path_len);
        p->req.path[path_len] = '\0';
    }
    if (query_len >= HTTP_QUERY_MAX)
        return -HTTP_ERR_URI_TOO_LONG;
    if (query_len > 0)
        memcpy(p->req.query, q + 1, query_len);
    p->req.query[query_len] = '\0';
    return 0;
}

/* "HTTP/" DIGIT "." DIGIT (RFC 9112 2.3); only 1.0 and 1.1 are served. */
static int process_version(struct http_parser *p)
{
    const char *v = p->tok;
    if (p->tok_len != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' ||
        v[6] != '.' || v[7] < '0' || v[7] > '9')
        return -HTTP_ERR_BAD_VERSION;
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return -HTTP_ERR_VERSION_NOT_SUPPORTED;
    p->req.http_minor = (uint8_t)(v[7] - '0');
    return 0;
}

static void identify_header(struct http_parser *p)
{
    p->hdr = H_OTHER;
    if (p->in_trailers || p->tok_len > sizeof(p->tok))
        return;
    for (size_t i = 0; i < ARRAY_SIZE(known_hdrs); i++) {
        if (known_hdrs[i].len == p->tok_len &&
            memcmp(known_hdrs[i].name, p->tok, p->tok_len) == 0) {
            p->hdr = known_hdrs[i].hdr;
            return;
        }
    }
}

/* Keep a value byte of an interpreted header. Host is only counted. */
static inline int store_val(struct http_parser *p, uint8_t c)
{
    if (p->hdr == H_OTHER || p->hdr == H_HOST || p->val_skip)
        return 0;
    if (p->hdr == H_CONTENT_TYPE && c == ';') {
        p->val_skip = true; /* parameters (charset, ...) are not stored */
        return 0;
    }
    if (unlikely(p->val_len >= sizeof(p->val) - 1))
        return -HTTP_ERR_HEADER_FIELD_TOO_LONG;
    p->val[p->val_len++] = (char)c;
    return 0;
}

/* Content-Length = 1*DIGIT; a list of identical values ("5, 5", or repeated
 * fields) is accepted, differing values are not (RFC 9110 8.6). */
static int parse_content_length(struct http_parser *p, const char *v, size_t n)
{
    size_t i = 0;
    for (;;) {
        if (i == n || v[i] < '0' || v[i] > '9')
            return -HTTP_ERR_BAD_CONTENT_LENGTH;
        int64_t x = 0;
        while (i < n && v[i] >= '0' && v[i] <= '9') {
            int d = v[i] - '0';
            if (x > (INT64_MAX - d) / 10)
                return -HTTP_ERR_BAD_CONTENT_LENGTH;
            x = x * 10 + d;
            i++;
        }
        if (p->req.content_length >= 0 && p->req.content_length != x)
            return -HTTP_ERR_DUP_CONTENT_LENGTH;
        p->req.content_length = x;
        while (i < n && is_ows((uint8_t)v[i]))
            i++;
        if (i == n)
            return 0;
        if (v[i] != ',')
            return -HTTP_ERR_BAD_CONTENT_LENGTH;
        i++;
        while (i < n && is_ows((uint8_t)v[i]))
            i++;
    }
}

/* Next non-empty trimmed element of a comma list starting at *pos, or false. */
static bool list_next(const char *v, size_t n, size_t *pos, const char **elem, size_t *elen)
{
    while (*pos <= n) {
        size_t s = *pos, e = s;
        while (e < n && v[e] != ',')
            e++;
        *pos = e + 1;
        while (s < e && is_ows((uint8_t)v[s]))
            s++;
        while (e > s && is_ows((uint8_t)v[e - 1]))
            e--;
        if (e > s) {
            *elem = v + s;
            *elen = e - s;
            return true;
        }
    }
    return false;
}

/* A complete field line of an interpreted header: check and record it. */
static int end_field(struct http_parser *p)
{
    const char *v = p->val;
    size_t n = p->val_len;
    while (n > 0 && is_ows((uint8_t)v[n - 1]))
        n--;
    size_t pos = 0;
    const char *e;
    size_t elen;

    switch (p->hdr) {
    case H_HOST:
        /* RFC 9112 3.2: more than one Host is a 400. */
        if (p->seen_host)
            return -HTTP_ERR_DUP_HEADER;
        p->seen_host = true;
        return 0;
    case H_CONTENT_LENGTH:
        return parse_content_length(p, v, n);
    case H_TRANSFER_ENCODING: {
        bool any = false;
        p->seen_te = true;
        while (list_next(v, n, &pos, &e, &elen)) {
            any = true;
            if (ieq(e, elen, "chunked")) {
                /* RFC 9112 7: chunked must not be applied twice. */
                if (p->req.chunked)
                    return -HTTP_ERR_BAD_TRANSFER_ENCODING;
                p->req.chunked = true;
                p->te_chunked_last = true;
            } else {
                p->te_other = true;
                p->te_chunked_last = false;
            }
        }
        return any ? 0 : -HTTP_ERR_BAD_TRANSFER_ENCODING;
    }
    case H_CONNECTION:
        while (list_next(v, n, &pos, &e, &elen)) {
            if (ieq(e, elen, "close"))
                p->seen_conn_close = true;
            else if (ieq(e, elen, "keep-alive"))
                p->seen_conn_keepalive = true;
        }
        return 0;
    case H_EXPECT:
        /* Other expectations are ignored rather than answered with 417. */
        if (ieq(v, n, "100-continue"))
            p->req.expect_continue = true;
        return 0;
    case H_CONTENT_TYPE:
        if (p->seen_ct)
            return -HTTP_ERR_DUP_HEADER;
        p->seen_ct = true;
        if (n >= HTTP_CONTENT_TYPE_MAX)
            return -HTTP_ERR_HEADER_FIELD_TOO_LONG;
        copy_lower(p->req.content_type, v, n);
        return 0;
    case H_CONTENT_ENCODING: {
        /* Repeated fields form one list (RFC 9110 5.3). */
        if (n == 0)
            return 0;
        size_t have = strlen(p->req.content_encoding);
        size_t sep = have ? 2 : 0;
        if (have + sep + n >= HTTP_CONTENT_ENCODING_MAX)
            return -HTTP_ERR_HEADER_FIELD_TOO_LONG;
        if (sep)
            memcpy(p->req.content_encoding + have, ", ", 2);
        copy_lower(p->req.content_encoding + have + sep, v, n);
        return 0;
    }
    case H_AUTHORIZATION:
        if (p->seen_auth)
            return -HTTP_ERR_DUP_HEADER;
        p->seen_auth = true;
        memcpy(p->req.authorization, v, n); /* n < sizeof(val) == HTTP_AUTHORIZATION_MAX */
        p->req.authorization[n] = '\0';
        return 0;
    default:
        return 0;
    }
}

/* Decide the body framing once the head is complete (RFC 9112 6.3). */
static int head_complete(struct http_parser *p)
{
    struct http_req *r = &p->req;

    if (r->http_minor == 1 && !p->seen_host)
        return -HTTP_ERR_MISSING_HOST;
    if (p->seen_te) {
        /* RFC 9112 6.3 (3): both framings present is how requests are smuggled. */
        if (r->content_length >= 0)
            return -HTTP_ERR_CL_AND_TE;
        /* RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 means faulty framing. */
        if (r->http_minor == 0)
            return -HTTP_ERR_BAD_TRANSFER_ENCODING;
        /* RFC 9112 6.3 (4): chunked not last -> length unknown -> 400. */
        if (!p->te_chunked_last)
            return -HTTP_ERR_BAD_TRANSFER_ENCODING;
        /* RFC 9112 6.1: a coding we do not implement -> 501. */
        if (p->te_other)
            return -HTTP_ERR_TE_NOT_IMPLEMENTED;
    } else if (r->content_length >= 0) {
        if ((uint64_t)r->content_length > p->lim.max_body_bytes ||
            (p->body_buf != NULL && p->body_buf->limit != 0 &&
             (uint64_t)r->content_length > p->body_buf->limit))
            return -HTTP_ERR_BODY_TOO_LARGE;
        p->remaining = (uint64_t)r->content_length;
    } else if (r->method == HTTP_POST || r->method == HTTP_PUT) {
        return -HTTP_ERR_LENGTH_REQUIRED;
    }

    if (r->http_minor == 1)
        r->keep_alive = !p->seen_conn_close;
    else
        r->keep_alive = p->seen_conn_keepalive && !p->seen_conn_close;
    /* RFC 9110 10.1.1: ignore 100-continue from HTTP/1.0 clients. */
    if (r->http_minor == 0)
        r->expect_continue = false;
    if (strcmp(r->content_encoding, "identity") == 0)
        r->content_encoding[0] = '\0';

    if (r->chunked) {
        p->state = S_CHUNK_SIZE0;
        return HTTP_HEADERS_COMPLETE;
    }
    if (p->remaining > 0) {
        p->state = S_BODY;
        return HTTP_HEADERS_COMPLETE;
    }
    r->expect_continue = false; /* nothing to continue to */
    return HTTP_DONE;
}

/*
 * One byte of the request head or trailer section. Returns 0 to go on,
 * HEAD_END at the empty line, or a negative error. Limits are checked before
 * the byte is interpreted so the error does not depend on how input is split.
 */
static inline int head_byte(struct http_parser *p, uint8_t c)
{
    int rc;

    if (unlikely(++p->head_bytes > p->lim.max_header_bytes))
        return -HTTP_ERR_HEADER_TOO_LARGE;

    switch (p->state) {
    case S_START:
        /* RFC 9112 2.2: ignore empty lines before the request line. */
        if (c == '\r') {
            p->state = S_START_LF;
            return 0;
        }
        if (!is_class(c, C_TCHAR))
            return bad_byte(c, -HTTP_ERR_BAD_METHOD);
        p->tok[0] = (char)c;
        p->tok_len = 1;
        p->state = S_METHOD;
        return 0;
    case S_START_LF:
        if (c != '\n')
            return -HTTP_ERR_BAD_CHAR;
        p->state = S_START;
        return 0;
    case S_METHOD:
        if (is_class(c, C_TCHAR)) {
            if (p->tok_len < sizeof(p->tok))
                p->tok[p->tok_len] = (char)c;
            if (p->tok_len <= sizeof(p->tok))
                p->tok_len++;
            return 0;
        }
        if (c != ' ')
            return bad_byte(c, -HTTP_ERR_BAD_METHOD);
        p->req.method = p->tok_len <= sizeof(p->tok) ? method_from_tok(p->tok, p->tok_len)
                                                     : HTTP_OTHER;
        p->state = S_TARGET;
        return 0;
    case S_TARGET:
        if (is_class(c, C_TARGET)) {
            if (unlikely(p->target_len >= sizeof(p->target)))
                return -HTTP_ERR_URI_TOO_LONG;
            p->target[p->target_len++] = (char)c;
            return 0;
        }
        if (c == ' ') {
            if (p->target_len == 0)
                return -HTTP_ERR_BAD_REQUEST_LINE;
            rc = process_target(p);
            if (rc < 0)
                return rc;
            p->tok_len = 0;
            p->state = S_VERSION;
            return 0;
        }
        if (c == '\r') /* HTTP/0.9 style "GET /" without a version */
            return -HTTP_ERR_BAD_REQUEST_LINE;
        return bad_byte(c, -HTTP_ERR_BAD_TARGET);
    case S_VERSION:
        if (c == '\r') {
            rc = process_version(p);
            if (rc < 0)
                return rc;
            p->state = S_LINE_LF;
            return 0;
        }
        if (c == ' ')
            return -HTTP_ERR_BAD_REQUEST_LINE;
        if (c <= 0x20 || c >= 0x7f)
            return bad_byte(c, -HTTP_ERR_BAD_VERSION);
        if (p->tok_len >= 8)
            return -HTTP_ERR_BAD_VERSION;
        p->tok[p->tok_len++] = (char)c;
        return 0;
    case S_LINE_LF:
    case S_HDR_LF:
        if (c != '\n')
            return -HTTP_ERR_BAD_CHAR;
        if (p->state == S_HDR_LF) {
            rc = end_field(p);
            if (rc < 0)
                return rc;
        }
        p->state = S_HDR_START;
        return 0;
    case S_HDR_START:
        if (c == '\r') {
            p->state = S_HEAD_LF;
            return 0;
        }
        /* RFC 9112 5.2: obs-fold is rejected (also whitespace before the
         * first field, 2.2). */
        if (is_ows(c))
            return -HTTP_ERR_OBS_FOLD;
        if (!is_class(c, C_TCHAR))
            return bad_byte(c, -HTTP_ERR_BAD_HEADER);
        if (unlikely(++p->headers > p->lim.max_headers))
            return -HTTP_ERR_TOO_MANY_HEADERS;
        p->tok[0] = (char)to_lower(c);
        p->tok_len = 1;
        p->state = S_HDR_NAME;
        return 0;
    case S_HDR_NAME:
        if (is_class(c, C_TCHAR)) {
            if (p->tok_len < sizeof(p->tok))
                p->tok[p->tok_len] = (char)to_lower(c);
            if (p->tok_len <= sizeof(p->tok))
                p->tok_len++;
            return 0;
        }
        /* RFC 9112 5.1: no whitespace before the colon; a line without a
         * colon is a malformed field, not a stray control character. */
        if (c == '\r')
            return -HTTP_ERR_BAD_HEADER;
        if (c != ':')
            return bad_byte(c, -HTTP_ERR_BAD_HEADER);
        identify_header(p);
        p->val_len = 0;
        p->val_skip = false;
        p->state = S_HDR_OWS;
        return 0;
    case S_HDR_OWS:
        if (is_ows(c))
            return 0;
        p->state = S_HDR_VALUE;
        /* fall through */
    case S_HDR_VALUE:
        if (is_class(c, C_VALUE))
            return store_val(p, c);
        if (c == '\r') {
            p->state = S_HDR_LF;
            return 0;
        }
        /* RFC 9110 5.5: CR, LF, NUL in a value are rejected, as are other CTLs. */
        return -HTTP_ERR_BAD_CHAR;
    case S_HEAD_LF:
        if (c != '\n')
            return -HTTP_ERR_BAD_CHAR;
        return HEAD_END;
    default:
        return -HTTP_ERR_BAD_REQUEST_LINE; /* not reached */
    }
}

/*
 * Fast path for the bulk of a head: consume a run of field-value bytes at
 * once. Stops where head_byte() must decide (end of value, bad byte, header
 * byte budget or stored-value space used up), so results are those of the
 * byte-at-a-time path. Returns the new input position.
 */
static inline size_t scan_value(struct http_parser *p, const uint8_t *d, size_t len, size_t i)
{
    size_t end = i + BASE_MIN(len - i, (size_t)(p->lim.max_header_bytes - p->head_bytes));
    bool store = p->hdr != H_OTHER && p->hdr != H_HOST && !p->val_skip;
    if (store) {
        if (p->hdr == H_CONTENT_TYPE)
            return i; /* looks for ';' byte by byte */
        end = BASE_MIN(end, i + (sizeof(p->val) - 1 - p->val_len));
    }
    size_t j = i;
    while (j < end && is_class(d[j], C_VALUE))
        j++;
    if (store) {
        memcpy(p->val + p->val_len, d + i, j - i);
        p->val_len = (uint16_t)(p->val_len + (j - i));
    }
    p->head_bytes += (uint32_t)(j - i);
    return j;
}

/* Same for a run of field-name characters (lowercased into tok). */
static inline size_t scan_name(struct http_parser *p, const uint8_t *d, size_t len, size_t i)
{
    size_t end = i + BASE_MIN(len - i, (size_t)(p->lim.max_header_bytes - p->head_bytes));
    size_t j = i;
    while (j < end && is_class(d[j], C_TCHAR)) {
        if (p->tok_len < sizeof(p->tok))
            p->tok[p->tok_len] = (char)to_lower(d[j]);
        if (p->tok_len <= sizeof(p->tok))
            p->tok_len++;
        j++;
    }
    p->head_bytes += (uint32_t)(j - i);
    return j;
}

static int body_append(struct http_parser *p, const uint8_t *data, size_t n)
{
    if (p->body_buf != NULL) {
        int rc = buf_append(p->body_buf, data, n);
        if (unlikely(rc < 0))
            return rc == -ENOMEM ? -HTTP_ERR_NO_MEMORY : -HTTP_ERR_BODY_TOO_LARGE;
    }
    p->body_bytes += n;
    return 0;
}

static int finish(struct http_parser *p)
{
    p->state = S_DONE;
    p->req.body = p->body_buf != NULL ? p->body_buf->data : NULL;
    p->req.body_len = (size_t)p->body_bytes;
    return HTTP_DONE;
}

/* One byte of chunk framing (size line, CRLF after data). */
static inline int chunk_byte(struct http_parser *p, uint8_t c)
{
    if (p->state <= S_CHUNK_LF && unlikely(++p->chunk_line > HTTP_MAX_CHUNK_LINE))
        return -HTTP_ERR_BAD_CHUNK;

    switch (p->state) {
    case S_CHUNK_SIZE0:
        if (!is_class(c, C_HEX))
            return -HTTP_ERR_BAD_CHUNK;
        p->remaining = (uint64_t)hex_val(c);
        p->state = S_CHUNK_SIZE;
        return 0;
    case S_CHUNK_SIZE:
        if (is_class(c, C_HEX)) {
            if (unlikely(p->remaining > (UINT64_MAX >> 4)))
                return -HTTP_ERR_CHUNK_SIZE_OVERFLOW;
            p->remaining = (p->remaining << 4) | (uint64_t)hex_val(c);
            return 0;
        }
        if (c == '\r')
            p->state = S_CHUNK_LF;
        else if (c == ';')
            p->state = S_CHUNK_EXT;
        else if (is_ows(c))
            p->state = S_CHUNK_WS;
        else
            return -HTTP_ERR_BAD_CHUNK;
        return 0;
    case S_CHUNK_WS:
        /* RFC 9112 7.1.1: BWS is only allowed before a chunk extension. */
        if (c == ';')
            p->state = S_CHUNK_EXT;
        else if (!is_ows(c))
            return -HTTP_ERR_BAD_CHUNK;
        return 0;
    case S_CHUNK_EXT:
        /* Extensions are ignored; only their characters are checked. */
        if (c == '\r')
            p->state = S_CHUNK_LF;
        else if (!is_class(c, C_FVCHAR) && !is_ows(c))
            return -HTTP_ERR_BAD_CHUNK;
        return 0;
    case S_CHUNK_LF:
        if (c != '\n')
            return -HTTP_ERR_BAD_CHUNK;
        if (p->remaining == 0) { /* last-chunk: trailer section follows */
            p->in_trailers = true;
            p->state = S_HDR_START;
            return 0;
        }
        /* 413 as soon as the size line says the body will not fit. */
        if (p->remaining > p->lim.max_body_bytes - p->body_bytes)
            return -HTTP_ERR_BODY_TOO_LARGE;
        p->state = S_CHUNK_DATA;
        return 0;
    case S_CHUNK_DATA_CR:
        if (c != '\r')
            return -HTTP_ERR_BAD_CHUNK;
        p->state = S_CHUNK_DATA_LF;
        return 0;
    case S_CHUNK_DATA_LF:
        if (c != '\n')
            return -HTTP_ERR_BAD_CHUNK;
        p->chunk_line = 0;
        p->state = S_CHUNK_SIZE0;
        return 0;
    default:
        return -HTTP_ERR_BAD_CHUNK; /* not reached */
    }
}

int http_parser_feed(struct http_parser *p, const uint8_t *data, size_t len, size_t *consumed)
{
    size_t i = 0;
    int rc = 0;

    if (unlikely(p->state == S_ERROR)) {
        *consumed = 0;
        return p->err;
    }
    if (unlikely(p->state == S_DONE)) {
        *consumed = 0;
        return HTTP_DONE;
    }

    while (i < len) {
        if (p->state <= S_HEAD_LF) {
            /* Head or trailers: byte at a time, value runs in bulk. */
            rc = 0;
            while (i < len) {
                if (p->state == S_HDR_VALUE || p->state == S_HDR_NAME) {
                    i = p->state == S_HDR_VALUE ? scan_value(p, data, len, i)
                                                : scan_name(p, data, len, i);
                    if (i == len)
                        break;
                }
                rc = head_byte(p, data[i++]);
                if (rc != 0)
                    break;
            }
            if (rc == 0)
                break;
            if (rc < 0)
                goto fail;
            /* HEAD_END */
            if (p->in_trailers) {
                *consumed = i;
                return finish(p);
            }
            rc = head_complete(p);
            if (rc < 0)
                goto fail;
            *consumed = i;
            return rc == HTTP_DONE ? finish(p) : rc;
        }
        if (p->state == S_BODY && p->body_bytes == 0 && p->body_buf != NULL &&
            p->remaining <= len - i) {
            /* The whole body is in this feed (in DPDK mode: in the segment
             * the stack delivered): point at it instead of copying. Only a
             * body that straddles feeds is copied into body_buf. */
            p->state = S_DONE;
            p->req.body = data + i;
            p->req.body_len = (size_t)p->remaining;
            p->body_bytes = p->remaining;
            p->remaining = 0;
            *consumed = i + p->req.body_len;
            return HTTP_DONE;
        }
        if (p->state == S_BODY || p->state == S_CHUNK_DATA) {
            size_t avail = len - i;
            size_t n = p->remaining < avail ? (size_t)p->remaining : avail;
            rc = body_append(p, data + i, n);
            if (rc < 0)
                goto fail;
            i += n;
            p->remaining -= n;
            if (p->remaining == 0) {
                if (p->state == S_BODY) {
                    *consumed = i;
                    return finish(p);
                }
                p->state = S_CHUNK_DATA_CR;
            }
            continue;
        }
        /* Chunk framing. */
        rc = chunk_byte(p, data[i++]);
        if (rc < 0)
            goto fail;
    }
    *consumed = len;
    return HTTP_AGAIN;

fail:
    p->state = S_ERROR;
    p->err = rc;
    *consumed = i;
    return rc;
}

static const int err_status[] = {
#define X(name, status, reason, msg) status,
    HTTP_ERRORS(X)
#undef X
};
static const char *const err_reason[] = {
#define X(name, status, reason, msg) #reason,
    HTTP_ERRORS(X)
#undef X
};
static const char *const err_message[] = {
#define X(name, status, reason, msg) msg,
    HTTP_ERRORS(X)
#undef X
};

static int err_index(int err)
{
    if (err >= 0)
        return -1;
    int i = -err - HTTP_ERR_FIRST;
    return (i >= 0 && i < HTTP_ERR_COUNT) ? i : -1;
}

int http_error_status(int err)
{
    int i = err_index(err);
    return i < 0 ? 500 : err_status[i];
}

const char *http_error_message(int err)
{
    int i = err_index(err);
    return i < 0 ? "internal error" : err_message[i];
}

const char *http_error_reason(int err)
{
    int i = err_index(err);
    return i < 0 ? "internal" : err_reason[i];
}
