/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP/1.1 response writer: status line, the few headers the receiver and
 * the control plane send, and the body, appended to a connection's tx buf in
 * one reservation (no formatting through printf on the hot path). */
#include "http/http.h"

#include <errno.h>
#include <string.h>

/* RFC 9110 15: reason phrases of every status the service sends. */
const char *http_status_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return NULL;
    }
}

static inline char *put(char *w, const char *s, size_t n)
{
    memcpy(w, s, n);
    return w + n;
}

#define PUT_LIT(w, lit) put((w), (lit), sizeof(lit) - 1)

static char *put_u64(char *w, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        *w++ = tmp[--n];
    return w;
}

static int write_response(struct buf *out, int status, const char *content_type, const void *body,
                          size_t body_len, bool with_body, bool keep_alive,
                          uint32_t retry_after_s, const char *extra_headers)
{
    const char *reason = http_status_reason(status);
    if (reason == NULL)
        return -EINVAL;
    /* RFC 9110 8.6: no Content-Length (and so no body) in 1xx or 204. */
    bool no_length = status < 200 || status == 204;
    if (no_length && body_len != 0)
        return -EINVAL;
    if (with_body && body_len != 0 && body == NULL)
        return -EINVAL;

    size_t ct_len = content_type != NULL ? strlen(content_type) : 0;
    if (ct_len != 0 && strpbrk(content_type, "\r\n") != NULL)
        return -EINVAL; /* header injection */
    size_t extra_len = extra_headers != NULL ? strlen(extra_headers) : 0;
    if (extra_len != 0 && (extra_len < 2 || memcmp(extra_headers + extra_len - 2, "\r\n", 2) != 0))
        return -EINVAL;

    /* Upper bound of the head; the numbers take at most 20 digits. */
    size_t head_max = sizeof("HTTP/1.1 000 \r\n") + strlen(reason) +
                      sizeof("Content-Type: \r\n") + ct_len +
                      sizeof("Content-Length: \r\n") + 20 + sizeof("Connection: close\r\n") +
                      sizeof("Retry-After: \r\n") + 10 + extra_len + 2;
    size_t total = head_max;
    if (with_body) {
        if (body_len > SIZE_MAX - head_max)
            return -EMSGSIZE;
        total += body_len;
    }
    int rc = buf_reserve(out, total);
    if (rc < 0)
        return rc;

    char *w = (char *)out->data + out->len;
    w = PUT_LIT(w, "HTTP/1.1 ");
    w = put_u64(w, (uint64_t)status);
    *w++ = ' ';
    w = put(w, reason, strlen(reason));
    w = PUT_LIT(w, "\r\n");
    if (ct_len != 0) {
        w = PUT_LIT(w, "Content-Type: ");
        w = put(w, content_type, ct_len);
        w = PUT_LIT(w, "\r\n");
    }
    if (!no_length) {
        w = PUT_LIT(w, "Content-Length: ");
        w = put_u64(w, body_len);
        w = PUT_LIT(w, "\r\n");
    }
    if (!keep_alive)
        w = PUT_LIT(w, "Connection: close\r\n");
    if (retry_after_s != 0) {
        w = PUT_LIT(w, "Retry-After: ");
        w = put_u64(w, retry_after_s);
        w = PUT_LIT(w, "\r\n");
    }
    if (extra_len != 0)
        w = put(w, extra_headers, extra_len);
    w = PUT_LIT(w, "\r\n");
    if (with_body && body_len != 0)
        w = put(w, body, body_len);
    out->len = (size_t)((uint8_t *)w - out->data);
    return 0;
}

int http_response_write(struct buf *out, int status, const char *content_type, const void *body,
                        size_t body_len, bool keep_alive, uint32_t retry_after_s,
                        const char *extra_headers)
{
    return write_response(out, status, content_type, body, body_len, true, keep_alive,
                          retry_after_s, extra_headers);
}

int http_response_write_head(struct buf *out, int status, const char *content_type,
                             size_t body_len, bool keep_alive, uint32_t retry_after_s,
                             const char *extra_headers)
{
    return write_response(out, status, content_type, NULL, body_len, false, keep_alive,
                          retry_after_s, extra_headers);
}

int http_response_continue(struct buf *out)
{
    static const char msg[] = "HTTP/1.1 100 Continue\r\n\r\n";
    return buf_append(out, msg, sizeof(msg) - 1);
}
