/* SPDX-License-Identifier: Apache-2.0 */
/* Bearer tokens (RFC 6750) for both receivers: loaded once from
 * receiver.auth, checked per request in constant time, never logged. */
#include "tls/tls_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "base/base.h"

/* Longest token accepted: "Bearer " + token must fit the HTTP parser's
 * Authorization field (HTTP_AUTHORIZATION_MAX, 512 with the NUL). */
#define TLS_TOKEN_MAX 480
#define TLS_MAX_TOKENS 256
#define TLS_TOKEN_FILE_MAX (1024 * 1024)

/* Tokens are kept zero-padded to TLS_TOKEN_MAX so that every comparison
 * reads the same number of bytes whatever the token's length. */
struct tls_token {
    uint8_t bytes[TLS_TOKEN_MAX];
    size_t len;
};

struct tls_tokens {
    unsigned n;
    struct tls_token tok[TLS_MAX_TOKENS];
};

bool tls_ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    if (alen != blen)
        return false;
    const volatile uint8_t *x = a, *y = b;
    uint8_t acc = 0;
    for (size_t i = 0; i < alen; i++)
        acc |= (uint8_t)(x[i] ^ y[i]);
    return acc == 0;
}

/* RFC 6750 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+"
 * / "/" ) *"=" */
static bool b64char(char ch)
{
    unsigned char c = (unsigned char)ch;
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != '\0' && strchr("-._~+/", c) != NULL);
}

static bool b64token(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && b64char(s[i]))
        i++;
    if (i == 0)
        return false;
    while (i < n && s[i] == '=')
        i++;
    return i == n;
}

static bool blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r';
}

/* Add one token (s, n: trimmed). `where` names its origin for the log
 * line, which never shows the token itself. */
static int add_token(struct tls_tokens *t, const char *s, size_t n, const char *where,
                     unsigned line)
{
    if (!b64token(s, n)) {
        log_error("not a valid bearer token (RFC 6750 b64token)", "source=%s line=%u", where,
                  line);
        return -EINVAL;
    }
    if (n > TLS_TOKEN_MAX) {
        log_error("bearer token too long", "source=%s line=%u max_bytes=%d", where, line,
                  TLS_TOKEN_MAX);
        return -EINVAL;
    }
    if (t->n == TLS_MAX_TOKENS) {
        log_error("too many bearer tokens", "source=%s max=%d", where, TLS_MAX_TOKENS);
        return -EINVAL;
    }
    memcpy(t->tok[t->n].bytes, s, n);
    t->tok[t->n].len = n;
    t->n++;
    return 0;
}

static int load_list(struct tls_tokens *t, const char *list)
{
    unsigned idx = 0;
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        const char *s = p, *e = p + len;
        while (s < e && blank(*s))
            s++;
        while (e > s && blank(e[-1]))
            e--;
        idx++;
        if (e > s) {
            int rc = add_token(t, s, (size_t)(e - s), "receiver.auth.bearer_tokens", idx);
            if (rc < 0)
                return rc;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    return 0;
}

static int load_file(struct tls_tokens *t, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int rc = -errno;
        log_error("cannot open receiver.auth.token_file", "file=%s error=%s", path,
                  strerror(-rc));
        return rc;
    }
    tls_check_key_permissions(path, "receiver.auth.token_file");
    char *data = malloc(TLS_TOKEN_FILE_MAX + 1);
    if (data == NULL) {
        close(fd);
        return -ENOMEM;
    }
    size_t len = 0;
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, data + len, TLS_TOKEN_FILE_MAX + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            break;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > TLS_TOKEN_FILE_MAX) {
            rc = -EFBIG;
            break;
        }
    }
    close(fd);
    unsigned before = t->n, line = 0;
    for (size_t i = 0; rc == 0 && i < len;) {
        size_t j = i;
        while (j < len && data[j] != '\n')
            j++;
        line++;
        size_t s = i, e = j;
        while (s < e && blank(data[s]))
            s++;
        while (e > s && blank(data[e - 1]))
            e--;
        if (e > s && data[s] != '#')
            rc = add_token(t, data + s, e - s, path, line);
        i = j + 1;
    }
    OPENSSL_cleanse(data, len);
    free(data);
    if (rc == 0 && t->n == before) {
        log_error("receiver.auth.token_file holds no token", "file=%s", path);
        rc = -EINVAL;
    } else if (rc < 0 && rc != -EINVAL) {
        log_error("cannot read receiver.auth.token_file", "file=%s error=%s", path,
                  strerror(-rc));
    }
    return rc;
}

int tls_tokens_load(const struct receiver_auth_config *cfg, struct tls_tokens **out)
{
    if (cfg == NULL || out == NULL)
        return -EINVAL;
    *out = NULL;
    struct tls_tokens *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    int rc = 0;
    if (cfg->bearer_tokens != NULL)
        rc = load_list(t, cfg->bearer_tokens);
    if (rc == 0 && cfg->token_file != NULL && cfg->token_file[0] != '\0')
        rc = load_file(t, cfg->token_file);
    if (rc < 0 || t->n == 0) {
        tls_tokens_destroy(t);
        return rc;
    }
    *out = t;
    return 0;
}

void tls_tokens_destroy(struct tls_tokens *t)
{
    if (t == NULL)
        return;
    OPENSSL_cleanse(t, sizeof(*t));
    free(t);
}

unsigned tls_tokens_count(const struct tls_tokens *t)
{
    return t != NULL ? t->n : 0;
}

bool tls_tokens_check(const struct tls_tokens *t, const char *v, size_t len)
{
    if (t == NULL || v == NULL)
        return false;
    while (len > 0 && blank(*v)) {
        v++;
        len--;
    }
    while (len > 0 && blank(v[len - 1]))
        len--;
    /* RFC 6750 2.1: "Bearer" 1*SP b64token; the scheme is case-insensitive. */
    if (len < 7 || strncasecmp(v, "Bearer", 6) != 0 || v[6] != ' ')
        return false;
    v += 7;
    len -= 7;
    while (len > 0 && v[0] == ' ') {
        v++;
        len--;
    }
    if (len == 0 || len > TLS_TOKEN_MAX)
        return false;
    /* Compare the full padded width against every token, no early exit:
     * the time depends on neither which token matched nor how much of it. */
    uint8_t cand[TLS_TOKEN_MAX] = {0};
    memcpy(cand, v, len);
    unsigned match = 0;
    for (unsigned i = 0; i < t->n; i++) {
        unsigned same = (unsigned)tls_ct_equal(cand, TLS_TOKEN_MAX, t->tok[i].bytes, TLS_TOKEN_MAX);
        same &= (unsigned)(t->tok[i].len == len);
        match |= same;
    }
    OPENSSL_cleanse(cand, sizeof(cand));
    return match != 0;
}
