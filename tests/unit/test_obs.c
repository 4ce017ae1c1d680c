/* SPDX-License-Identifier: Apache-2.0 */
/* Tests lib/obs: JSON log lines (format, escaping, truncation, one write per
 * line), the sharded metrics registry and its Prometheus rendering (checked
 * with promtool when installed), and the health state machine. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/base.h"
#include "obs/health.h"
#include "obs/log.h"
#include "obs/metrics.h"

/* ---- a small strict JSON checker (RFC 8259), for every line we produce ---- */

struct jp {
    const char *p, *end;
};

static void jp_ws(struct jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static bool jp_value(struct jp *j, int depth);

static bool jp_string(struct jp *j)
{
    if (j->p >= j->end || *j->p != '"')
        return false;
    j->p++;
    while (j->p < j->end) {
        unsigned char c = (unsigned char)*j->p;
        if (c == '"') {
            j->p++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c == '\\') {
            j->p++;
            if (j->p >= j->end)
                return false;
            char e = *j->p++;
            if (e == 'u') {
                for (int i = 0; i < 4; i++, j->p++)
                    if (j->p >= j->end || !strchr("0123456789abcdefABCDEF", *j->p))
                        return false;
            } else if (!strchr("\"\\/bfnrt", e)) {
                return false;
            }
            continue;
        }
        if (c < 0x80) {
            j->p++;
            continue;
        }
        /* Strict UTF-8 (no overlongs, surrogates, > U+10FFFF). */
        int n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
        if (n == 0 || c > 0xF4 || j->end - j->p < n)
            return false;
        unsigned char c1 = (unsigned char)j->p[1];
        if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 > 0x9F) || (c == 0xF0 && c1 < 0x90) ||
            (c == 0xF4 && c1 > 0x8F))
            return false;
        for (int i = 1; i < n; i++)
            if (((unsigned char)j->p[i] & 0xC0) != 0x80)
                return false;
        j->p += n;
    }
    return false;
}

static bool jp_number(struct jp *j)
{
    const char *s = j->p;
    if (j->p < j->end && *j->p == '-')
        j->p++;
    if (j->p >= j->end)
        return false;
    if (*j->p == '0') {
        j->p++;
    } else if (*j->p >= '1' && *j->p <= '9') {
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    } else {
        return false;
    }
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9')
            return false;
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9')
            return false;
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    }
    return j->p > s;
}

static bool jp_lit(struct jp *j, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0)
        return false;
    j->p += n;
    return true;
}

static bool jp_value(struct jp *j, int depth)
{
    if (depth > 32)
        return false;
    jp_ws(j);
    if (j->p >= j->end)
        return false;
    switch (*j->p) {
    case '{':
        j->p++;
        jp_ws(j);
        if (j->p < j->end && *j->p == '}') {
            j->p++;
            return true;
        }
        for (;;) {
            jp_ws(j);
            if (!jp_string(j))
                return false;
            jp_ws(j);
            if (j->p >= j->end || *j->p++ != ':')
                return false;
            if (!jp_value(j, depth + 1))
                return false;
            jp_ws(j);
            if (j->p >= j->end)
                return false;
            if (*j->p == '}') {
                j->p++;
                return true;
            }
            if (*j->p++ != ',')
                return false;
        }
    case '[':
        j->p++;
        jp_ws(j);
        if (j->p < j->end && *j->p == ']') {
            j->p++;
            return true;
        }
        for (;;) {
            if (!jp_value(j, depth + 1))
                return false;
            jp_ws(j);
            if (j->p >= j->end)
                return false;
            if (*j->p == ']') {
                j->p++;
                return true;
            }
            if (*j->p++ != ',')
                return false;
        }
    case '"':
        return jp_string(j);
    case 't':
        return jp_lit(j, "true");
    case 'f':
        return jp_lit(j, "false");
    case 'n':
        return jp_lit(j, "null");
    default:
        return jp_number(j);
    }
}

static bool json_valid(const char *s, size_t n)
{
    struct jp j = {s, s + n};
    if (!jp_value(&j, 0))
        return false;
    jp_ws(&j);
    return j.p == j.end;
}

/* ---- log capture --------------------------------------------------------- */

static int cap_rd = -1, cap_wr = -1;
static char cap_buf[1 << 16];

static int log_setup(void **state)
{
    (void)state;
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
        return -1;
    cap_rd = fds[0];
    cap_wr = fds[1];
    log_set_fd(cap_wr);
    log_set_level(LOG_INFO);
    return 0;
}

static int log_teardown(void **state)
{
    (void)state;
    log_set_fd(STDERR_FILENO);
    log_set_level(LOG_INFO);
    close(cap_rd);
    close(cap_wr);
    return 0;
}

/* Everything written since the last call, NUL-terminated. */
static const char *captured(size_t *len_out)
{
    size_t n = 0;
    for (;;) {
        ssize_t k = read(cap_rd, cap_buf + n, sizeof(cap_buf) - 1 - n);
        if (k <= 0)
            break;
        n += (size_t)k;
    }
    cap_buf[n] = '\0';
    if (len_out != NULL)
        *len_out = n;
    return cap_buf;
}

/* The single captured line: checks it is one valid JSON object + '\n'. */
static const char *one_line(void)
{
    size_t n;
    const char *s = captured(&n);
    assert_true(n > 0);
    assert_int_equal(s[n - 1], '\n');
    assert_ptr_equal(strchr(s, '\n'), s + n - 1);
    if (!json_valid(s, n - 1))
        fail_msg("invalid JSON: %s", s);
    return s;
}

static void assert_contains(const char *hay, const char *needle)
{
    if (hay == NULL || strstr(hay, needle) == NULL)
        fail_msg("'%s' not found in '%s'", needle, hay != NULL ? hay : "(null)");
}

static void test_log_basic(void **state)
{
    (void)state;
    log_info("listening", "port=%d addr=%s", 4318, "0.0.0.0");
    const char *l = one_line();
    /* {"time":"2026-11-24T10:22:05.123Z","level":"info",... */
    assert_memory_equal(l, "{\"time\":\"", 9);
    const char *t = l + 9;
    assert_int_equal(strlen(t) > 25, 1);
    assert_true(t[4] == '-' && t[7] == '-' && t[10] == 'T' && t[13] == ':' && t[16] == ':' &&
                t[19] == '.' && t[23] == 'Z' && t[24] == '"');
    int year = atoi(t);
    assert_true(year >= 2024 && year < 2200);
    /* The date matches the libc conversion of "now". */
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char day[16];
    strftime(day, sizeof(day), "%Y-%m-%d", &tm);
    assert_memory_equal(t, day, 10);
    assert_contains(l, "\",\"level\":\"info\",\"msg\":\"listening\",\"port\":4318,"
                       "\"addr\":\"0.0.0.0\"}\n");

    log_warn("no fields", "");
    assert_contains(one_line(), "\"level\":\"warn\",\"msg\":\"no fields\"}\n");
    log_error("err", "  spaced=%d  ", 1);
    assert_contains(one_line(), "\"level\":\"error\",\"msg\":\"err\",\"spaced\":1}\n");
}

/* A NULL string gcc cannot see through (it warns about a literal NULL %s). */
static const char *volatile null_str = NULL;

static void test_log_numbers(void **state)
{
    (void)state;
    uint64_t big = UINT64_MAX;
    int64_t small = INT64_MIN;
    size_t sz = 12345;
    ssize_t ssz = -7;
    log_info("n", "a=%u b=%ld c=%lu d=%lld e=%llu f=%zu g=%zd h=%" PRIu64 " i=%" PRId64 " j=%i",
             42u, -5L, 6UL, -7LL, 8ULL, sz, ssz, big, small, -1);
    const char *l = one_line();
    assert_contains(l, "\"a\":42,\"b\":-5,\"c\":6,\"d\":-7,\"e\":8,\"f\":12345,\"g\":-7,"
                       "\"h\":18446744073709551615,\"i\":-9223372036854775808,\"j\":-1}");

    log_info("x", "x=%x X=%X neg=%x x64=%" PRIx64 " o=%o hh=%hhd h=%hu", 31u, 255u, -1, big, 8u,
             (signed char)-3, (unsigned short)65535);
    l = one_line();
    assert_contains(l, "\"x\":\"0x1f\",\"X\":\"0xFF\",\"neg\":\"0xffffffff\","
                       "\"x64\":\"0xffffffffffffffff\",\"o\":\"010\",\"hh\":-3,\"h\":65535}");

    log_info("f", "f=%f g=%g p2=%.2f e=%e big=%g tiny=%g neg=%f plus=%+.1f", 1.5, 1.5, 1.5, 1.5,
             1e300, 1e-7, -0.25, 2.0);
    l = one_line();
    assert_contains(l, "\"f\":1.500000,\"g\":1.5,\"p2\":1.50,\"e\":1.500000e+00,\"big\":1e+300,"
                       "\"tiny\":1e-07,\"neg\":-0.250000,\"plus\":2.0}");

    log_info("nf", "nan=%f inf=%g ninf=%f", NAN, INFINITY, -INFINITY);
    l = one_line();
    assert_contains(l, "\"nan\":\"nan\",\"inf\":\"inf\",\"ninf\":\"-inf\"}");

    log_info("s", "s=%s null=%s c=%c q=%c prec=%.*s fix=%.3s p=%p np=%p", "str", null_str, 'A',
             '"', 3, "abcdef", "xyzzy", (void *)0x1234, (void *)NULL);
    l = one_line();
    assert_contains(l, "\"s\":\"str\",\"null\":null,\"c\":\"A\",\"q\":\"\\\"\",\"prec\":\"abc\","
                       "\"fix\":\"xyz\",\"p\":\"0x1234\",\"np\":null}");

    /* Text around conversions: formatted with printf, written as a string. */
    log_info("c", "dur=%dms peer=%s:%u pct=100%% pad=[%5d] w=%-*s| bare", 12, "10.0.0.1", 80u, 7,
             4, "ab");
    l = one_line();
    assert_contains(l, "\"dur\":\"12ms\",\"peer\":\"10.0.0.1:80\",\"pct\":\"100%\","
                       "\"pad\":\"[    7]\",\"w\":\"ab  |\",\"_\":\"bare\"}");
    log_info("c", "e=");
    assert_contains(one_line(), "\"e\":\"\"}");
    log_info("c", "comp=%s/%s", "a\"b", null_str);
    assert_contains(one_line(), "\"comp\":\"a\\\"b/(null)\"}");
}

static void test_log_escaping(void **state)
{
    (void)state;
    log_info("quote\" back\\ nl\n tab\t cr\r ctl\x01 del\x7f bs\b ff\f", "");
    assert_contains(one_line(), "\"msg\":\"quote\\\" back\\\\ nl\\n tab\\t cr\\r ctl\\u0001 "
                                "del\\u007f bs\\b ff\\f\"}");

    /* Valid multi-byte UTF-8 passes through unchanged. */
    log_info("utf8", "v=%s", "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80");
    assert_contains(one_line(), "\"v\":\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\"}");

#define FFFD "\xEF\xBF\xBD"
    /* Ill-formed: lone 0xFF, truncated 3-byte sequence (one U+FFFD for the
     * maximal subpart), overlong '/', UTF-16 surrogate, > U+10FFFF, lone
     * continuation byte, sequence cut by the end of the string. */
    log_info("bad", "a=%s b=%s c=%s d=%s e=%s f=%s g=%s", "x\xFFy", "x\xE2\x82y", "\xC0\xAF",
             "\xED\xA0\x80", "\xF4\x90\x80\x80", "\x80", "z\xF0\x9F\x98");
    assert_contains(one_line(), "\"a\":\"x" FFFD "y\",\"b\":\"x" FFFD "y\",\"c\":\"" FFFD FFFD
                                "\",\"d\":\"" FFFD FFFD FFFD "\",\"e\":\"" FFFD FFFD FFFD FFFD
                                "\",\"f\":\"" FFFD "\",\"g\":\"z" FFFD "\"}");
    /* Keys are escaped too; NUL through %c. */
    log_info("k", "we\"ird=%d nul=%c", 1, 0);
    assert_contains(one_line(), "\"we\\\"ird\":1,\"nul\":\"\\u0000\"}");
    log_info(NULL, "");
    assert_contains(one_line(), "\"msg\":\"\"}");
}

static int side_effects;

static int count_eval(void)
{
    return ++side_effects;
}

static void test_log_levels(void **state)
{
    (void)state;
    enum log_level l = LOG_ERROR;
    assert_int_equal(log_level_parse("debug", &l), 0);
    assert_int_equal(l, LOG_DEBUG);
    assert_int_equal(log_level_parse("INFO", &l), 0);
    assert_int_equal(l, LOG_INFO);
    assert_int_equal(log_level_parse("Warn", &l), 0);
    assert_int_equal(l, LOG_WARN);
    assert_int_equal(log_level_parse("warning", &l), 0);
    assert_int_equal(l, LOG_WARN);
    assert_int_equal(log_level_parse("error", &l), 0);
    assert_int_equal(l, LOG_ERROR);
    l = LOG_INFO;
    assert_int_equal(log_level_parse("fatal", &l), -EINVAL);
    assert_int_equal(log_level_parse("", &l), -EINVAL);
    assert_int_equal(log_level_parse("info ", &l), -EINVAL);
    assert_int_equal(log_level_parse(NULL, &l), -EINVAL);
    assert_int_equal(l, LOG_INFO);
    assert_string_equal(log_level_name(LOG_WARN), "warn");

    log_set_level(LOG_WARN);
    assert_int_equal(log_get_level(), LOG_WARN);
    side_effects = 0;
    log_debug("d", "v=%d", count_eval());
    log_info("i", "v=%d", count_eval());
    assert_int_equal(side_effects, 0); /* arguments not even evaluated */
    log_write(LOG_INFO, "direct", "v=%d", 1); /* direct calls filter too */
    size_t n;
    captured(&n);
    assert_int_equal(n, 0);
    log_warn("w", "v=%d", count_eval());
    assert_contains(one_line(), "\"level\":\"warn\",\"msg\":\"w\",\"v\":1}");
    log_error("e", "");
    assert_contains(one_line(), "\"level\":\"error\"");

    log_set_level(LOG_DEBUG);
    log_debug("d", "");
    assert_contains(one_line(), "\"level\":\"debug\"");
    log_set_level((enum log_level)17); /* ignored */
    assert_int_equal(log_get_level(), LOG_DEBUG);
    log_set_level(LOG_INFO);
}

static void test_log_truncation(void **state)
{
    (void)state;
    static char big[6000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';

    /* One long value: cut at LOG_VALUE_MAX with an ellipsis. */
    log_info("long", "v=%s after=%d", big, 5);
    const char *l = one_line();
    assert_contains(l, "aaa\xE2\x80\xA6\",\"after\":5}");
    const char *v = strstr(l, "\"v\":\"") + 5;
    assert_int_equal(strchr(v, '"') - v, LOG_VALUE_MAX);

    /* Escapes are never split: a value of quotes cut mid-way. */
    static char quotes[3000];
    memset(quotes, '"', sizeof(quotes) - 1);
    quotes[sizeof(quotes) - 1] = '\0';
    log_info("q", "v=%s", quotes);
    one_line();

    /* Multi-byte characters are not split either. */
    static char euros[3 * 1000 + 1];
    for (int i = 0; i < 1000; i++)
        memcpy(euros + 3 * i, "\xE2\x82\xAC", 3);
    log_info("eur", "v=%s", euros);
    one_line();

    /* A long msg and a composite value are cut the same way. */
    log_info(big, "c=%s-%s", big, big);
    l = one_line();
    assert_contains(l, "\xE2\x80\xA6\",\"c\":\"aaa");

    /* Too many fields for one line: the rest are left out and flagged. */
    size_t n;
    log_info("many", "a=%s b=%s c=%s d=%s e=%s f=%s", big, big, big, big, big, big);
    l = one_line();
    n = strlen(l);
    assert_true(n <= LOG_LINE_MAX);
    assert_contains(l, ",\"truncated\":true}\n");
    assert_contains(l, "\"c\":");
    assert_null(strstr(l, "\"f\":"));

    /* Many small fields. */
    char fmt[4096] = "";
    size_t o = 0;
    for (int i = 0; i < 400; i++)
        o += (size_t)snprintf(fmt + o, sizeof(fmt) - o, "k%03d=x ", i);
    log_write(LOG_INFO, "small", fmt, 0); /* fmt is a runtime string: no format check */
    l = one_line();
    assert_true(strlen(l) <= LOG_LINE_MAX);
    assert_contains(l, ",\"truncated\":true}\n");
}

/* Threads log long lines to a SOCK_SEQPACKET socket: each write(2) is one
 * message, so every message must be exactly one complete line. */
#define LOG_THREADS 8
#define LOG_LINES_PER_THREAD 200

static void *log_hammer(void *arg)
{
    char val[1000];
    memset(val, 'a' + (int)(intptr_t)arg, sizeof(val) - 1);
    val[sizeof(val) - 1] = '\0';
    for (int i = 0; i < LOG_LINES_PER_THREAD; i++)
        log_info("hammer", "thread=%d i=%d v=%s w=%s x=%s", (int)(intptr_t)arg, i, val, val, val);
    return NULL;
}

static void test_log_single_write(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    log_set_fd(sv[0]);
    pthread_t th[LOG_THREADS];
    for (intptr_t i = 0; i < LOG_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, log_hammer, (void *)i), 0);

    int per_thread[LOG_THREADS] = {0};
    static char msg[2 * LOG_LINE_MAX];
    for (int got = 0; got < LOG_THREADS * LOG_LINES_PER_THREAD; got++) {
        ssize_t k = recv(sv[1], msg, sizeof(msg), 0);
        assert_true(k > 0 && k <= LOG_LINE_MAX);
        assert_int_equal(msg[k - 1], '\n');
        assert_ptr_equal(memchr(msg, '\n', (size_t)k), msg + k - 1);
        assert_true(json_valid(msg, (size_t)k - 1));
        const char *t = strstr(msg, "\"thread\":");
        assert_non_null(t);
        int tid = atoi(t + 9);
        assert_true(tid >= 0 && tid < LOG_THREADS);
        /* Lines of one thread arrive in order. */
        char want[32];
        snprintf(want, sizeof(want), "\"i\":%d,", per_thread[tid]++);
        assert_non_null(strstr(msg, want));
    }
    for (int i = 0; i < LOG_THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    log_set_fd(cap_wr);
    close(sv[0]);
    close(sv[1]);
}

static void test_log_write_errors(void **state)
{
    (void)state;
    uint64_t before = log_dropped_total();
    log_set_fd(-1);
    errno = ENOENT;
    log_info("lost", "");
    assert_int_equal(errno, ENOENT); /* errno preserved for the caller */
    assert_int_equal(log_dropped_total(), before + 1);
    log_set_fd(cap_wr);
}

static void test_log_ratelimit(void **state)
{
    (void)state;
    struct log_ratelimit rl = LOG_RATELIMIT_INIT;
    int allowed = 0;
    for (int i = 0; i < 10; i++)
        allowed += log_ratelimit(&rl, 200, 3);
    assert_int_equal(allowed, 3);
    assert_int_equal(rl.suppressed, 0);
    struct timespec ts = {0, 250 * 1000 * 1000};
    nanosleep(&ts, NULL);
    assert_true(log_ratelimit(&rl, 200, 3));
    assert_int_equal(rl.suppressed, 7);
    assert_true(log_ratelimit(&rl, 200, 3));
    assert_int_equal(rl.suppressed, 0);

    struct log_ratelimit none = LOG_RATELIMIT_INIT;
    assert_false(log_ratelimit(&none, 1000, 0));
    struct log_ratelimit all = LOG_RATELIMIT_INIT;
    for (int i = 0; i < 100; i++)
        assert_true(log_ratelimit(&all, 0, 1));
}

/* ---- metrics ----------------------------------------------------------- */

static char *render(struct obs_registry *r)
{
    struct buf b;
    assert_int_equal(buf_init(&b, 0, 0), 0);
    assert_int_equal(obs_render_prometheus(r, &b), 0);
    assert_int_equal(buf_append(&b, "", 1), 0);
    return (char *)b.data; /* caller frees */
}

/* Value of the sample line starting with `series` ("name{labels}"). */
static double sample(const char *page, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = page; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : p) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    }
    fail_msg("series %s not in:\n%s", series, page);
    return NAN;
}

static size_t count_str(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void test_metrics_create(void **state)
{
    (void)state;
    struct obs_registry *r = NULL;
    assert_int_equal(obs_registry_create(0, 10, &r), -EINVAL);
    assert_int_equal(obs_registry_create(1, 0, &r), -EINVAL);
    assert_int_equal(obs_registry_create(1, 10, NULL), -EINVAL);
    obs_registry_destroy(NULL);
    assert_int_equal(obs_registry_create(3, 10, &r), 0);
    /* Shards are cache-line aligned and do not share lines. */
    assert_int_equal((uintptr_t)r->slots % BASE_CACHE_LINE, 0);
    assert_true(r->shard_stride >= 10);
    assert_int_equal(r->shard_stride * sizeof(uint64_t) % BASE_CACHE_LINE, 0);
    char *page = render(r);
    assert_string_equal(page, "");
    free(page);
    obs_registry_destroy(r);
}

static double const_fn(void *arg)
{
    return *(const double *)arg;
}

static void test_metrics_register_errors(void **state)
{
    static double one = 1;
    (void)state;
    struct obs_registry *r;
    uint32_t id = 0;
    assert_int_equal(obs_registry_create(2, 8, &r), 0);

    /* Names. */
    static const char *const bad_names[] = {"", "1abc", "a-b", "a b", "é", "a.b", NULL};
    for (int i = 0; bad_names[i] != NULL; i++)
        assert_int_equal(obs_counter_register(r, bad_names[i], "h", NULL, 1, &id), -EINVAL);
    assert_int_equal(obs_counter_register(r, NULL, "h", NULL, 1, &id), -EINVAL);
    assert_int_equal(obs_counter_register(r, "ok_name", NULL, NULL, 1, &id), -EINVAL);
    assert_int_equal(obs_counter_register(r, "ok_name", "h", NULL, 0, &id), -EINVAL);
    assert_int_equal(obs_counter_register(r, "ok_name", "h", NULL, 2, &id), -EINVAL);
    assert_int_equal(obs_counter_register(NULL, "ok_name", "h", NULL, 1, &id), -EINVAL);
    assert_int_equal(obs_counter_register(r, "ok_name", "bad \xFF help", NULL, 1, &id), -EINVAL);

    /* Label syntax. */
    static const char *const bad_labels[] = {
        "path=/x", "path=\"x", "__name__=\"x\"", "a=\"1\",a=\"2\"", "a=\"1\",", "1a=\"x\"",
        "a=\"\\q\"", "a=\"\xFF\"", "a=\"x\"b=\"y\"", "a = \"x\"", ",a=\"x\"", "a=\"new\nline\"",
        NULL};
    for (int i = 0; bad_labels[i] != NULL; i++) {
        const char *l[1] = {bad_labels[i]};
        if (obs_counter_register(r, "c_total", "h", l, 1, &id) != -EINVAL)
            fail_msg("label set accepted: %s", bad_labels[i]);
    }
    const double b[] = {1, 2};
    const char *le[] = {"le=\"1\""};
    assert_int_equal(obs_histogram_register(r, "h_seconds", "h", le, 1, b, 2, &id), -EINVAL);
    const double not_incr[] = {1, 1}, with_nan[] = {1, NAN}, with_inf[] = {1, INFINITY};
    assert_int_equal(obs_histogram_register(r, "h_s", "h", NULL, 1, not_incr, 2, &id), -EINVAL);
    assert_int_equal(obs_histogram_register(r, "h_s", "h", NULL, 1, with_nan, 2, &id), -EINVAL);
    assert_int_equal(obs_histogram_register(r, "h_s", "h", NULL, 1, with_inf, 2, &id), -EINVAL);
    assert_int_equal(obs_histogram_register(r, "h_seconds", "h", NULL, 1, NULL, 2, &id), -EINVAL);
    assert_int_equal(obs_gauge_func_register(r, "g", "h", NULL, NULL, NULL), -EINVAL);

    /* Good ones, with odd but legal values. */
    const char *good[] = {"a=\"\"", "a=\"x\\\\y\\\"z\\n\",b_2=\"\xC3\xA9\"", "a=\"1\",b=\"2\""};
    assert_int_equal(obs_counter_register(r, "c_total", "h", good, 3, &id), 0);
    assert_int_equal(id, 0);

    /* Duplicates: same name+labels, within one call, name of another kind. */
    const char *dup[] = {"a=\"1\",b=\"2\""};
    assert_int_equal(obs_counter_register(r, "c_total", "h", dup, 1, &id), -EEXIST);
    const char *twice[] = {"x=\"1\"", "x=\"1\""};
    assert_int_equal(obs_counter_register(r, "c_total", "h", twice, 2, &id), -EEXIST);
    assert_int_equal(obs_gauge_register(r, "c_total", "h", NULL, 1, &id), -EEXIST);
    assert_int_equal(obs_gauge_func_register(r, "c_total", "h", "z=\"1\"", const_fn, &one),
                     -EEXIST);
    /* Histogram suffixes collide with other names, both ways round. */
    assert_int_equal(obs_counter_register(r, "lat_bucket", "h", NULL, 1, &id), 0);
    assert_int_equal(obs_histogram_register(r, "lat", "h", NULL, 1, NULL, 0, &id), -EEXIST);
    assert_int_equal(obs_histogram_register(r, "req", "h", NULL, 1, NULL, 0, &id), 0);
    assert_int_equal(obs_counter_register(r, "req_count", "h", NULL, 1, &id), -EEXIST);
    assert_int_equal(obs_gauge_register(r, "req_sum", "h", NULL, 1, &id), -EEXIST);
    /* Same histogram name needs the same bounds. */
    const char *other[] = {"p=\"x\""};
    assert_int_equal(obs_histogram_register(r, "req", "h", other, 1, b, 2, &id), -EEXIST);

    /* Slots: 8 per shard, 3 + 1 + 2 used; 2 left. */
    const char *three[] = {"s=\"1\"", "s=\"2\"", "s=\"3\""};
    assert_int_equal(obs_gauge_register(r, "g", "h", three, 3, &id), -ENOSPC);
    assert_int_equal(obs_histogram_register(r, "h2", "h", NULL, 1, b, 1, &id), -ENOSPC);
    char *before = render(r);
    assert_null(strstr(before, "\ng"));
    assert_null(strstr(before, "h2"));
    assert_int_equal(obs_gauge_register(r, "g", "h", three, 2, &id), 0);
    assert_int_equal(id, 6);
    assert_int_equal(obs_counter_register(r, "c2_total", "h", NULL, 1, &id), -ENOSPC);
    /* Func metrics take no slots. */
    assert_int_equal(obs_gauge_func_register(r, "fg", "h", NULL, const_fn, &one), 0);
    free(before);
    obs_registry_destroy(r);
}

static void test_metrics_render_format(void **state)
{
    (void)state;
    struct obs_registry *r;
    uint32_t req, up, depth, lat, lat2;
    assert_int_equal(obs_registry_create(3, 64, &r), 0);

    const char *codes[] = {"path=\"/v1/traces\",code=\"200\"", "path=\"/v1/traces\",code=\"429\""};
    assert_int_equal(obs_counter_register(r, "http_requests_total",
                                          "HTTP requests by path and code.", codes, 2, &req),
                     0);
    assert_int_equal(obs_counter_register(r, "up_events_total", "Back\\slash and\nnewline.", NULL,
                                          1, &up), 0);
    assert_int_equal(obs_gauge_register(r, "otlp_queue_depth", "Queued batches.", NULL, 1, &depth),
                     0);
    static const double q1 = 7, q2 = 0.5, qnan = NAN, qinf = INFINITY;
    assert_int_equal(obs_gauge_func_register(r, "otlp_queue_size", "Items queued.",
                                             "signal=\"traces\"", const_fn, (void *)&q1), 0);
    assert_int_equal(obs_gauge_func_register(r, "otlp_queue_size", "ignored help",
                                             "signal=\"logs\"", const_fn, (void *)&q2), 0);
    assert_int_equal(obs_gauge_func_register(r, "otlp_queue_size", "x", "signal=\"logs\"",
                                             const_fn, (void *)&q2), -EEXIST);
    assert_int_equal(obs_gauge_func_register(r, "weird_values", "NaN and Inf.", "v=\"nan\"",
                                             const_fn, (void *)&qnan), 0);
    assert_int_equal(obs_gauge_func_register(r, "weird_values", "NaN and Inf.", "v=\"inf\"",
                                             const_fn, (void *)&qinf), 0);
    assert_int_equal(obs_counter_func_register(r, "exporter_bytes_total", "Bytes sent.", NULL,
                                               const_fn, (void *)&q1), 0);
    const double bounds[] = {0.005, 0.1, 1};
    const char *paths[] = {"path=\"/v1/traces\""};
    assert_int_equal(obs_histogram_register(r, "http_request_duration_seconds", "Latency.", paths,
                                            1, bounds, 3, &lat), 0);
    assert_int_equal(obs_histogram_register(r, "batch_age_seconds", "Age.", NULL, 1, bounds, 3,
                                            &lat2), 0);
    assert_int_equal(lat2, lat + 1);

    obs_counter_add(r, 0, req, 5);
    obs_counter_inc(r, 1, req);
    obs_counter_add(r, 2, req + 1, 3);
    obs_counter_inc(r, 2, up);
    obs_gauge_set(r, 0, depth, 10);
    obs_gauge_set(r, 1, depth, -4);
    obs_gauge_add(r, 2, depth, -10);
    obs_gauge_add(r, 2, depth, 3);
    obs_histogram_observe(r, 0, lat, 0.00390625); /* binary-exact, so the sum prints exactly */
    obs_histogram_observe(r, 1, lat, 0.0625);
    obs_histogram_observe(r, 2, lat, 0.5);
    obs_histogram_observe(r, 2, lat, 30);
    assert_int_equal(obs_counter_read(r, req), 6);
    assert_int_equal(obs_gauge_read(r, depth), -1);

    char *page = render(r);
    const char *want =
        "# HELP http_requests_total HTTP requests by path and code.\n"
        "# TYPE http_requests_total counter\n"
        "http_requests_total{path=\"/v1/traces\",code=\"200\"} 6\n"
        "http_requests_total{path=\"/v1/traces\",code=\"429\"} 3\n"
        "# HELP up_events_total Back\\\\slash and\\nnewline.\n"
        "# TYPE up_events_total counter\n"
        "up_events_total 1\n"
        "# HELP otlp_queue_depth Queued batches.\n"
        "# TYPE otlp_queue_depth gauge\n"
        "otlp_queue_depth -1\n"
        "# HELP otlp_queue_size Items queued.\n"
        "# TYPE otlp_queue_size gauge\n"
        "otlp_queue_size{signal=\"traces\"} 7\n"
        "otlp_queue_size{signal=\"logs\"} 0.5\n"
        "# HELP weird_values NaN and Inf.\n"
        "# TYPE weird_values gauge\n"
        "weird_values{v=\"nan\"} NaN\n"
        "weird_values{v=\"inf\"} +Inf\n"
        "# HELP exporter_bytes_total Bytes sent.\n"
        "# TYPE exporter_bytes_total counter\n"
        "exporter_bytes_total 7\n"
        "# HELP http_request_duration_seconds Latency.\n"
        "# TYPE http_request_duration_seconds histogram\n"
        "http_request_duration_seconds_bucket{path=\"/v1/traces\",le=\"0.005\"} 1\n"
        "http_request_duration_seconds_bucket{path=\"/v1/traces\",le=\"0.1\"} 2\n"
        "http_request_duration_seconds_bucket{path=\"/v1/traces\",le=\"1\"} 3\n"
        "http_request_duration_seconds_bucket{path=\"/v1/traces\",le=\"+Inf\"} 4\n"
        "http_request_duration_seconds_sum{path=\"/v1/traces\"} 30.56640625\n"
        "http_request_duration_seconds_count{path=\"/v1/traces\"} 4\n"
        "# HELP batch_age_seconds Age.\n"
        "# TYPE batch_age_seconds histogram\n"
        "batch_age_seconds_bucket{le=\"0.005\"} 0\n"
        "batch_age_seconds_bucket{le=\"0.1\"} 0\n"
        "batch_age_seconds_bucket{le=\"1\"} 0\n"
        "batch_age_seconds_bucket{le=\"+Inf\"} 0\n"
        "batch_age_seconds_sum 0\n"
        "batch_age_seconds_count 0\n";
    assert_string_equal(page, want);
    free(page);

    /* A bounded buffer reports -EMSGSIZE. */
    struct buf small;
    assert_int_equal(buf_init(&small, 64, 64), 0);
    assert_int_equal(obs_render_prometheus(r, &small), -EMSGSIZE);
    buf_free(&small);
    obs_registry_destroy(r);
}

static void test_metrics_histogram(void **state)
{
    (void)state;
    struct obs_registry *r;
    uint32_t h, wide;
    assert_int_equal(obs_registry_create(2, 256, &r), 0);
    const double b[] = {1, 2, 5};
    assert_int_equal(obs_histogram_register(r, "h", "h", NULL, 1, b, 3, &h), 0);
    /* le is inclusive: v == bound counts in that bucket. */
    const double vals[] = {0.5, 1, 1.5, 2, 3, 10, -1};
    for (size_t i = 0; i < ARRAY_SIZE(vals); i++)
        obs_histogram_observe(r, (unsigned)i % 2, h, vals[i]);
    char *page = render(r);
    assert_true(sample(page, "h_bucket{le=\"1\"}") == 3);
    assert_true(sample(page, "h_bucket{le=\"2\"}") == 5);
    assert_true(sample(page, "h_bucket{le=\"5\"}") == 6);
    assert_true(sample(page, "h_bucket{le=\"+Inf\"}") == 7);
    assert_true(sample(page, "h_count") == 7);
    assert_true(sample(page, "h_sum") == 17);
    free(page);

    /* More than 16 bounds: the binary search path, checked against a
     * linear reference over many values, both exact bounds and between. */
    double wb[40];
    for (int i = 0; i < 40; i++)
        wb[i] = (i + 1) * 0.25;
    const char *lbl[] = {"k=\"v\""};
    assert_int_equal(obs_histogram_register(r, "wide", "w", lbl, 1, wb, 40, &wide), 0);
    uint64_t expect[41] = {0};
    for (int k = -4; k < 50 * 4; k++) {
        double v = k * 0.125;
        size_t i = 0;
        while (i < 40 && v > wb[i])
            i++;
        expect[i]++;
        obs_histogram_observe(r, 1, wide, v);
    }
    obs_histogram_observe(r, 0, wide, NAN);
    expect[40]++;
    page = render(r);
    uint64_t cum = 0;
    for (int i = 0; i <= 40; i++) {
        char key[64];
        char num[32];
        if (i < 40)
            snprintf(num, sizeof(num), "%.15g", wb[i]);
        else
            strcpy(num, "+Inf");
        snprintf(key, sizeof(key), "wide_bucket{k=\"v\",le=\"%s\"}", num);
        cum += expect[i];
        assert_true(sample(page, key) == (double)cum);
    }
    assert_true(isnan(sample(page, "wide_sum{k=\"v\"}")));
    free(page);

    /* The standard latency buckets. */
    assert_true(OBS_LATENCY_BUCKETS[0] == 0.0001);
    assert_true(OBS_LATENCY_BUCKETS[OBS_LATENCY_BUCKETS_COUNT - 1] == 10);
    for (int i = 1; i < OBS_LATENCY_BUCKETS_COUNT; i++)
        assert_true(OBS_LATENCY_BUCKETS[i] > OBS_LATENCY_BUCKETS[i - 1]);
    uint32_t l;
    assert_int_equal(obs_histogram_register(r, "lat_seconds", "l", NULL, 1, OBS_LATENCY_BUCKETS,
                                            OBS_LATENCY_BUCKETS_COUNT, &l), 0);
    obs_histogram_observe(r, 0, l, 0.0003);
    page = render(r);
    assert_true(sample(page, "lat_seconds_bucket{le=\"0.00025\"}") == 0);
    assert_true(sample(page, "lat_seconds_bucket{le=\"0.0005\"}") == 1);
    assert_true(sample(page, "lat_seconds_bucket{le=\"0.0001\"}") == 0);
    free(page);
    obs_registry_destroy(r);
}

/* Writers hammer their own shards while a scraper renders and reads: every
 * scrape is monotonic and the final totals are exact. */
#define M_THREADS 4
#define M_ITERS 200000

struct hammer_arg {
    struct obs_registry *r;
    unsigned shard;
    uint32_t c, g, h;
};

static void *metrics_hammer(void *p)
{
    struct hammer_arg *a = p;
    for (unsigned i = 0; i < M_ITERS; i++) {
        obs_counter_inc(a->r, a->shard, a->c);
        obs_counter_add(a->r, a->shard, a->c + 1, 3);
        obs_gauge_add(a->r, a->shard, a->g, (i & 1) ? -1 : 2);
        if ((i & 63) == 0)
            obs_histogram_observe(a->r, a->shard, a->h, (double)(i % 3));
    }
    return NULL;
}

static bool scraper_stop;

static void *metrics_scraper(void *p)
{
    struct hammer_arg *a = p;
    uint64_t last = 0;
    struct buf b;
    if (buf_init(&b, 4096, 0) != 0)
        return (void *)1;
    while (!__atomic_load_n(&scraper_stop, __ATOMIC_ACQUIRE)) {
        uint64_t v = obs_counter_read(a->r, a->c);
        if (v < last || v > (uint64_t)M_THREADS * M_ITERS)
            return (void *)1;
        last = v;
        buf_reset(&b);
        if (obs_render_prometheus(a->r, &b) != 0)
            return (void *)1;
    }
    buf_free(&b);
    return NULL;
}

static void test_metrics_threads(void **state)
{
    (void)state;
    struct obs_registry *r;
    assert_int_equal(obs_registry_create(M_THREADS, 32, &r), 0);
    struct hammer_arg base = {.r = r};
    const char *two[] = {"k=\"a\"", "k=\"b\""};
    assert_int_equal(obs_counter_register(r, "ops_total", "ops", two, 2, &base.c), 0);
    assert_int_equal(obs_gauge_register(r, "level", "level", NULL, 1, &base.g), 0);
    const double b[] = {0.5, 1.5};
    assert_int_equal(obs_histogram_register(r, "vals", "vals", NULL, 1, b, 2, &base.h), 0);

    pthread_t th[M_THREADS], scr;
    struct hammer_arg args[M_THREADS];
    scraper_stop = false;
    assert_int_equal(pthread_create(&scr, NULL, metrics_scraper, &base), 0);
    for (unsigned i = 0; i < M_THREADS; i++) {
        args[i] = base;
        args[i].shard = i;
        assert_int_equal(pthread_create(&th[i], NULL, metrics_hammer, &args[i]), 0);
    }
    for (unsigned i = 0; i < M_THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    __atomic_store_n(&scraper_stop, true, __ATOMIC_RELEASE);
    void *scr_rc;
    assert_int_equal(pthread_join(scr, &scr_rc), 0);
    assert_null(scr_rc);

    assert_int_equal(obs_counter_read(r, base.c), (uint64_t)M_THREADS * M_ITERS);
    assert_int_equal(obs_counter_read(r, base.c + 1), (uint64_t)M_THREADS * M_ITERS * 3);
    assert_int_equal(obs_gauge_read(r, base.g), (int64_t)M_THREADS * M_ITERS / 2);
    char *page = render(r);
    assert_true(sample(page, "ops_total{k=\"a\"}") == (double)M_THREADS * M_ITERS);
    assert_true(sample(page, "level") == (double)M_THREADS * M_ITERS / 2);
    unsigned obs_per_thread = (M_ITERS + 63) / 64;
    assert_true(sample(page, "vals_count") == (double)M_THREADS * obs_per_thread);
    /* i % 3 over i = 0, 64, 128...: values 0,1,2 in turn. */
    unsigned zeros = 0, ones = 0, twos = 0;
    for (unsigned i = 0; i < M_ITERS; i += 64) {
        unsigned v = i % 3;
        zeros += v == 0;
        ones += v == 1;
        twos += v == 2;
    }
    assert_true(sample(page, "vals_bucket{le=\"0.5\"}") == (double)M_THREADS * zeros);
    assert_true(sample(page, "vals_bucket{le=\"1.5\"}") == (double)M_THREADS * (zeros + ones));
    assert_true(sample(page, "vals_sum") == (double)M_THREADS * (ones + 2.0 * twos));
    free(page);
    obs_registry_destroy(r);
}

static void test_metrics_process(void **state)
{
    (void)state;
    struct obs_registry *r;
    assert_int_equal(obs_registry_create(1, 4, &r), 0);
    assert_int_equal(obs_register_process_metrics(r), 0);
    assert_int_equal(obs_register_process_metrics(r), -EEXIST);
    assert_int_equal(obs_register_log_metrics(r), 0);
    char *page = render(r);
    assert_true(sample(page, "log_lines_dropped_total") == (double)log_dropped_total());
    assert_true(sample(page, "process_resident_memory_bytes") > 1 << 20);
    assert_true(sample(page, "process_virtual_memory_bytes") >=
                sample(page, "process_resident_memory_bytes"));
    assert_true(sample(page, "process_cpu_seconds_total") >= 0);
    double fds = sample(page, "process_open_fds");
    assert_true(fds >= 3 && fds < 10000);
    assert_true(sample(page, "process_max_fds") >= fds);
    double start = sample(page, "process_start_time_seconds");
    double now = (double)time(NULL);
    assert_true(start > now - 24 * 3600 && start <= now + 1);
    assert_int_equal(count_str(page, "# TYPE "), 7);
    assert_non_null(strstr(page, "# TYPE process_cpu_seconds_total counter\n"));
    free(page);
    obs_registry_destroy(r);
}

/* Locate promtool in PATH. */
static bool find_promtool(char *out, size_t cap)
{
    const char *path = getenv("PATH");
    if (path == NULL)
        path = "/usr/bin:/bin";
    while (*path != '\0') {
        const char *e = strchr(path, ':');
        size_t n = e != NULL ? (size_t)(e - path) : strlen(path);
        snprintf(out, cap, "%.*s/promtool", (int)n, path);
        if (access(out, X_OK) == 0)
            return true;
        path += n + (e != NULL);
    }
    return false;
}

static void test_metrics_promtool(void **state)
{
    (void)state;
    char promtool[512];
    struct obs_registry *r;
    uint32_t id;
    assert_int_equal(obs_registry_create(2, 256, &r), 0);
    const char *codes[] = {"path=\"/v1/traces\",code=\"200\"", "path=\"/v1/logs\",code=\"503\"",
                           "path=\"/odd \\\"quoted\\\" \\\\ \\n\",code=\"400\""};
    assert_int_equal(obs_counter_register(r, "http_requests_total", "Requests \\ by \"path\"\n.",
                                          codes, 3, &id), 0);
    obs_counter_add(r, 1, id + 2, 9);
    assert_int_equal(obs_gauge_register(r, "otlp_queue_batches", "Queued.", NULL, 1, &id), 0);
    obs_gauge_add(r, 0, id, -3);
    static const double v = 12.5;
    assert_int_equal(obs_gauge_func_register(r, "otlp_queue_size", "Queue.", "signal=\"traces\"",
                                             const_fn, (void *)&v), 0);
    assert_int_equal(obs_gauge_func_register(r, "otlp_queue_size", "Queue.", "signal=\"logs\"",
                                             const_fn, (void *)&v), 0);
    assert_int_equal(obs_counter_func_register(r, "otlp_export_bytes_total", "Bytes.", NULL,
                                               const_fn, (void *)&v), 0);
    const char *paths[] = {"path=\"/v1/traces\"", "path=\"/v1/logs\""};
    assert_int_equal(obs_histogram_register(r, "http_request_duration_seconds", "Latency.", paths,
                                            2, OBS_LATENCY_BUCKETS, OBS_LATENCY_BUCKETS_COUNT,
                                            &id), 0);
    obs_histogram_observe(r, 0, id, 0.003);
    obs_histogram_observe(r, 1, id + 1, 42);
    assert_int_equal(obs_histogram_register(r, "otlp_batch_size_bytes", "Batch sizes.", NULL, 1,
                                            NULL, 0, &id), 0);
    assert_int_equal(obs_register_process_metrics(r), 0);
    assert_int_equal(obs_register_log_metrics(r), 0);
    char *page = render(r);
    obs_registry_destroy(r);

    if (!find_promtool(promtool, sizeof(promtool))) {
        free(page);
        skip();
    }
    char file[] = "/tmp/test_obs_metrics_XXXXXX";
    int fd = mkstemp(file);
    assert_true(fd >= 0);
    size_t n = strlen(page);
    assert_int_equal(write(fd, page, n), (ssize_t)n);
    close(fd);
    free(page);
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "'%s' check metrics < '%s' 2>&1", promtool, file);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[4096];
    size_t got = fread(out, 1, sizeof(out) - 1, p);
    out[got] = '\0';
    int st = pclose(p);
    unlink(file);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || got != 0)
        fail_msg("promtool check metrics failed (status %d):\n%s", st, out);
}

/* ---- health ---------------------------------------------------------------- */

static int health_setup(void **state)
{
    health_reset();
    return log_setup(state);
}

static void test_health_transitions(void **state)
{
    (void)state;
    struct buf b;
    assert_int_equal(buf_init(&b, 0, 0), 0);

    assert_true(health_live());
    assert_false(health_started());
    assert_false(health_ready());
    assert_int_equal(health_render_json(&b), 0);
    assert_int_equal(buf_append(&b, "", 1), 0);
    assert_string_equal((char *)b.data,
                        "{\"status\":\"not_ready\",\"started\":false,\"stopping\":false,"
                        "\"components\":{\"receiver\":{\"ok\":false,\"reason\":\"not reported\"},"
                        "\"exporter\":{\"ok\":false,\"reason\":\"not reported\"},"
                        "\"pipeline\":{\"ok\":false,\"reason\":\"not reported\"}}}");
    assert_true(json_valid((char *)b.data, b.len - 1));

    health_set(HEALTH_RECEIVER, true, NULL);
    health_set(HEALTH_PIPELINE, true, "");
    health_set(HEALTH_EXPORTER, true, NULL);
    assert_false(health_ready()); /* not started yet */
    health_set_started();
    assert_true(health_started());
    assert_true(health_ready());
    captured(NULL);

    health_set(HEALTH_EXPORTER, false, "upstream \"down\"");
    assert_false(health_ready());
    assert_contains(one_line(), "\"level\":\"warn\",\"msg\":\"component unhealthy\","
                                "\"component\":\"exporter\",\"reason\":\"upstream \\\"down\\\"\"}");
    health_set(HEALTH_EXPORTER, false, "still down"); /* no new line: no change */
    size_t n;
    captured(&n);
    assert_int_equal(n, 0);
    buf_reset(&b);
    assert_int_equal(health_render_json(&b), 0);
    assert_int_equal(buf_append(&b, "", 1), 0);
    assert_string_equal((char *)b.data,
                        "{\"status\":\"not_ready\",\"started\":true,\"stopping\":false,"
                        "\"components\":{\"receiver\":{\"ok\":true,\"reason\":\"\"},"
                        "\"exporter\":{\"ok\":false,\"reason\":\"still down\"},"
                        "\"pipeline\":{\"ok\":true,\"reason\":\"\"}}}");

    health_set(HEALTH_EXPORTER, true, NULL);
    assert_contains(one_line(), "\"msg\":\"component healthy\",\"component\":\"exporter\"}");
    assert_true(health_ready());
    buf_reset(&b);
    assert_int_equal(health_render_json(&b), 0);
    assert_int_equal(buf_append(&b, "", 1), 0);
    assert_contains((char *)b.data, "{\"status\":\"ready\",\"started\":true,");

    health_set((enum health_component)99, false, "x"); /* ignored */
    assert_true(health_ready());
    assert_string_equal(health_component_name(HEALTH_PIPELINE), "pipeline");
    assert_string_equal(health_component_name(HEALTH_COMPONENT_COUNT), "unknown");

    health_set_stopping();
    assert_false(health_ready());
    assert_true(health_live()); /* draining is not dead */
    assert_true(health_started());

    health_set_fatal("worker 3 stuck");
    assert_false(health_live());
    buf_reset(&b);
    assert_int_equal(health_render_json(&b), 0);
    assert_int_equal(buf_append(&b, "", 1), 0);
    assert_contains((char *)b.data, "\"stopping\":true,\"fatal\":\"worker 3 stuck\",");
    assert_true(json_valid((char *)b.data, b.len - 1));

    struct buf tiny;
    assert_int_equal(buf_init(&tiny, 16, 16), 0);
    assert_int_equal(health_render_json(&tiny), -EMSGSIZE);
    buf_free(&tiny);

    health_reset();
    assert_true(health_live());
    assert_false(health_ready());
    buf_free(&b);
}

/* Components flip from several threads while a reader renders (TSan). */
static void *health_flipper(void *arg)
{
    enum health_component c = (enum health_component)(intptr_t)arg;
    for (int i = 0; i < 2000; i++)
        health_set(c, i & 1, (i & 1) ? "" : "flapping");
    health_set(c, true, NULL);
    return NULL;
}

static void test_health_threads(void **state)
{
    (void)state;
    log_set_level(LOG_ERROR);
    health_set_started();
    pthread_t th[HEALTH_COMPONENT_COUNT];
    for (intptr_t c = 0; c < HEALTH_COMPONENT_COUNT; c++)
        assert_int_equal(pthread_create(&th[c], NULL, health_flipper, (void *)c), 0);
    struct buf b;
    assert_int_equal(buf_init(&b, 0, 0), 0);
    for (int i = 0; i < 500; i++) {
        buf_reset(&b);
        assert_int_equal(health_render_json(&b), 0);
        assert_true(json_valid((char *)b.data, b.len));
        (void)health_ready();
    }
    for (int c = 0; c < HEALTH_COMPONENT_COUNT; c++)
        assert_int_equal(pthread_join(th[c], NULL), 0);
    assert_true(health_ready());
    buf_free(&b);
    log_set_level(LOG_INFO);
}

int main(void)
{
    const struct CMUnitTest log_tests[] = {
        cmocka_unit_test(test_log_basic),
        cmocka_unit_test(test_log_numbers),
        cmocka_unit_test(test_log_escaping),
        cmocka_unit_test(test_log_levels),
        cmocka_unit_test(test_log_truncation),
        cmocka_unit_test(test_log_single_write),
        cmocka_unit_test(test_log_write_errors),
        cmocka_unit_test(test_log_ratelimit),
    };
    const struct CMUnitTest metrics_tests[] = {
        cmocka_unit_test(test_metrics_create),
        cmocka_unit_test(test_metrics_register_errors),
        cmocka_unit_test(test_metrics_render_format),
        cmocka_unit_test(test_metrics_histogram),
        cmocka_unit_test(test_metrics_threads),
        cmocka_unit_test(test_metrics_process),
        cmocka_unit_test(test_metrics_promtool),
    };
    const struct CMUnitTest health_tests[] = {
        cmocka_unit_test(test_health_transitions),
        cmocka_unit_test(test_health_threads),
    };
    int fails = cmocka_run_group_tests_name("log", log_tests, log_setup, log_teardown);
    fails += cmocka_run_group_tests_name("metrics", metrics_tests, NULL, NULL);
    fails += cmocka_run_group_tests_name("health", health_tests, health_setup, log_teardown);
    return fails;
}
