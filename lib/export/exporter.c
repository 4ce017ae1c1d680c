/* SPDX-License-Identifier: Apache-2.0 */
/* The exporter table (protocol -> constructor) and the helpers every
 * exporter shares: Retry-After parsing and decoding of the small OTLP
 * response messages (partial success, google.rpc.Status). */
#include "export/exporter.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "base/base.h"

/* Index = enum exporter_protocol; to add an exporter add its constructor
 * here (and its name in lib/config/config_table.c). */
static int (*const exporter_ctors[])(const struct svc_config *, struct exporter *) = {
    [EXPORTER_FILE] = export_file_create,
    [EXPORTER_OTLP_HTTP] = export_otlp_http_create,
    [EXPORTER_DISCARD] = export_discard_create,
#ifdef HAVE_NATS
    [EXPORTER_NATS] = export_nats_create,
#endif
    [EXPORTER_GRPC] = export_grpc_create,
#ifdef HAVE_KAFKA
    [EXPORTER_KAFKA] = export_kafka_create,
#endif
    [EXPORTER_LOADBALANCING] = export_lb_create,
};

int exporter_create(const struct svc_config *cfg, struct exporter *out)
{
    if (cfg == NULL || out == NULL)
        return -EINVAL;
    unsigned p = (unsigned)cfg->exporter.protocol;
    if (p >= ARRAY_SIZE(exporter_ctors) || exporter_ctors[p] == NULL)
        return -ENOTSUP;
    return exporter_ctors[p](cfg, out);
}

void exporter_destroy(struct exporter *e)
{
    if (e == NULL || e->ops == NULL)
        return;
    e->ops->destroy(e->state);
    e->ops = NULL;
    e->state = NULL;
}

/* ---- Retry-After ---- */

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}
static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

#define RETRY_AFTER_MAX_S (24 * 3600)

/* Read exactly `n` digits at *p; advance. */
static bool take_digits(const char **p, const char *end, unsigned n, int *out)
{
    int v = 0;
    for (unsigned i = 0; i < n; i++) {
        if (*p >= end || !is_digit(**p))
            return false;
        v = v * 10 + (**p - '0');
        (*p)++;
    }
    *out = v;
    return true;
}

static bool take_lit(const char **p, const char *end, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(end - *p) < n || memcmp(*p, lit, n) != 0)
        return false;
    *p += n;
    return true;
}

/* One of the names in `names` (case-sensitive, as RFC 9110 5.6.7 requires);
 * returns its index or -1. */
static int take_name(const char **p, const char *end, const char *const *names, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (take_lit(p, end, names[i]))
            return (int)i;
    }
    return -1;
}

static const char *const wkday3[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
static const char *const wkday_long[] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                         "Friday", "Saturday", "Sunday"};
static const char *const month3[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* hour ":" minute ":" second */
static bool take_time(const char **p, const char *end, struct tm *tm)
{
    return take_digits(p, end, 2, &tm->tm_hour) && take_lit(p, end, ":") &&
           take_digits(p, end, 2, &tm->tm_min) && take_lit(p, end, ":") &&
           take_digits(p, end, 2, &tm->tm_sec);
}

/* RFC 9110 5.6.7: IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", obsolete
 * RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT" and asctime
 * "Sun Nov  6 08:49:37 1994". Returns Unix seconds or -1. */
static int64_t parse_http_date(const char *p, const char *end)
{
    struct tm tm = {0};
    int mon;
    const char *q = p;
    if (take_name(&q, end, wkday3, 7) >= 0 && take_lit(&q, end, ", ")) {
        /* IMF-fixdate */
        if (!take_digits(&q, end, 2, &tm.tm_mday) || !take_lit(&q, end, " ") ||
            (mon = take_name(&q, end, month3, 12)) < 0 || !take_lit(&q, end, " ") ||
            !take_digits(&q, end, 4, &tm.tm_year) || !take_lit(&q, end, " ") ||
            !take_time(&q, end, &tm) || !take_lit(&q, end, " GMT"))
            return -1;
        tm.tm_year -= 1900;
    } else if (q = p, take_name(&q, end, wkday_long, 7) >= 0 && take_lit(&q, end, ", ")) {
        /* rfc850-date; RFC 9110: a two-digit year more than 50 years in the
         * future is in the past century. Simplified: yy < 70 -> 20yy. */
        if (!take_digits(&q, end, 2, &tm.tm_mday) || !take_lit(&q, end, "-") ||
            (mon = take_name(&q, end, month3, 12)) < 0 || !take_lit(&q, end, "-") ||
            !take_digits(&q, end, 2, &tm.tm_year) || !take_lit(&q, end, " ") ||
            !take_time(&q, end, &tm) || !take_lit(&q, end, " GMT"))
            return -1;
        if (tm.tm_year < 70)
            tm.tm_year += 100;
    } else if (q = p, take_name(&q, end, wkday3, 7) >= 0 && take_lit(&q, end, " ")) {
        /* asctime-date: day is 2DIGIT or SP 1DIGIT */
        if ((mon = take_name(&q, end, month3, 12)) < 0 || !take_lit(&q, end, " "))
            return -1;
        if (q < end && *q == ' ') {
            q++;
            if (!take_digits(&q, end, 1, &tm.tm_mday))
                return -1;
        } else if (!take_digits(&q, end, 2, &tm.tm_mday)) {
            return -1;
        }
        if (!take_lit(&q, end, " ") || !take_time(&q, end, &tm) || !take_lit(&q, end, " ") ||
            !take_digits(&q, end, 4, &tm.tm_year))
            return -1;
        tm.tm_year -= 1900;
    } else {
        return -1;
    }
    if (q != end)
        return -1;
    tm.tm_mon = mon;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (tm.tm_mday < 1 || tm.tm_mday > mdays[mon] || tm.tm_hour > 23 || tm.tm_min > 59 ||
        tm.tm_sec > 60)
        return -1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    return (int64_t)t;
}

int export_parse_retry_after(const char *v, size_t len, int64_t now_wall_s, uint32_t *ms_out)
{
    if (v == NULL || ms_out == NULL)
        return -EINVAL;
    const char *p = v, *end = v + len;
    while (p < end && is_ows(*p))
        p++;
    while (end > p && (is_ows(end[-1]) || end[-1] == '\r' || end[-1] == '\n'))
        end--;
    if (p == end)
        return -EINVAL;

    int64_t secs;
    if (is_digit(*p)) {
        /* delay-seconds = 1*DIGIT */
        secs = 0;
        for (const char *q = p; q < end; q++) {
            if (!is_digit(*q))
                return -EINVAL;
            if (secs <= RETRY_AFTER_MAX_S)
                secs = secs * 10 + (*q - '0');
        }
    } else {
        int64_t t = parse_http_date(p, end);
        if (t < 0)
            return -EINVAL;
        secs = t > now_wall_s ? t - now_wall_s : 0;
    }
    if (secs > RETRY_AFTER_MAX_S)
        secs = RETRY_AFTER_MAX_S;
    *ms_out = (uint32_t)(secs * 1000);
    return 0;
}

/* ---- tiny protobuf reader for the response messages ---- */

static int pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (*p >= end)
            return -EINVAL;
        uint8_t c = *(*p)++;
        x |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -EINVAL;
}

/*
 * Next field of a message: *fnum, *wtype; for wire type 2 val and vlen are
 * the payload, for varints *num the value. Skips fixed32/64.
 */
struct pb_field {
    uint32_t fnum;
    unsigned wtype;
    uint64_t num;
    const uint8_t *val;
    size_t vlen;
};

static int pb_next(const uint8_t **p, const uint8_t *end, struct pb_field *f)
{
    uint64_t key;
    if (pb_varint(p, end, &key) < 0)
        return -EINVAL;
    f->fnum = (uint32_t)(key >> 3);
    f->wtype = (unsigned)(key & 7);
    if (f->fnum == 0 || (key >> 3) > 0x1fffffff)
        return -EINVAL;
    switch (f->wtype) {
    case 0:
        return pb_varint(p, end, &f->num);
    case 1:
    case 5: {
        size_t n = f->wtype == 1 ? 8 : 4;
        if ((size_t)(end - *p) < n)
            return -EINVAL;
        *p += n;
        return 0;
    }
    case 2: {
        uint64_t n;
        if (pb_varint(p, end, &n) < 0 || n > (uint64_t)(end - *p))
            return -EINVAL;
        f->val = *p;
        f->vlen = (size_t)n;
        *p += n;
        return 0;
    }
    default:
        return -EINVAL; /* groups are not used by OTLP */
    }
}

static void copy_message(char *msg, size_t msg_len, const uint8_t *s, size_t n)
{
    if (msg == NULL || msg_len == 0)
        return;
    size_t k = BASE_MIN(n, msg_len - 1);
    for (size_t i = 0; i < k; i++)
        msg[i] = (s[i] < 0x20 || s[i] == 0x7f) ? '?' : (char)s[i];
    msg[k] = '\0';
}

int export_parse_partial_success(const uint8_t *pb, size_t len, uint64_t *rejected, char *msg,
                                 size_t msg_len)
{
    if (rejected == NULL || (pb == NULL && len > 0))
        return -EINVAL;
    *rejected = 0;
    if (msg != NULL && msg_len > 0)
        msg[0] = '\0';
    const uint8_t *p = pb, *end = pb + len;
    while (p < end) {
        struct pb_field f;
        if (pb_next(&p, end, &f) < 0)
            return -EINVAL;
        if (f.fnum != 1 || f.wtype != 2)
            continue;
        /* ExportTracePartialSuccess and its metrics/logs twins */
        const uint8_t *q = f.val, *qend = f.val + f.vlen;
        while (q < qend) {
            struct pb_field g;
            if (pb_next(&q, qend, &g) < 0)
                return -EINVAL;
            if (g.fnum == 1 && g.wtype == 0)
                *rejected = (int64_t)g.num < 0 ? 0 : g.num;
            else if (g.fnum == 2 && g.wtype == 2)
                copy_message(msg, msg_len, g.val, g.vlen);
        }
    }
    return 0;
}

int export_parse_status_message(const uint8_t *pb, size_t len, char *msg, size_t msg_len)
{
    if (pb == NULL && len > 0)
        return -EINVAL;
    const uint8_t *p = pb, *end = pb + len;
    bool found = false;
    while (p < end) {
        struct pb_field f;
        if (pb_next(&p, end, &f) < 0)
            return -EINVAL;
        if (f.fnum == 2 && f.wtype == 2) {
            copy_message(msg, msg_len, f.val, f.vlen);
            found = true;
        }
    }
    return found ? 0 : -EINVAL;
}
