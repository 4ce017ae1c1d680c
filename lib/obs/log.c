/* SPDX-License-Identifier: Apache-2.0 */
/* JSON line logger: builds each line in a stack buffer from a key=%conv
 * template and writes it with one write(2). Used by every module. */
#include "obs/log.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#include "base/base.h"
#include "obs/obs_internal.h"

int log_level_threshold = LOG_INFO;
static int log_fd = STDERR_FILENO;
static uint64_t log_dropped;

/* Room kept at the end of every line for ,"truncated":true}\n */
#define LOG_TAIL_RESERVE 24
/* Scratch space for a value made of several conversions or literal text. */
#define LOG_SCRATCH_MAX LOG_VALUE_MAX

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(enum log_level l)
{
    if ((unsigned)l > LOG_ERROR)
        return;
    __atomic_store_n(&log_level_threshold, (int)l, __ATOMIC_RELAXED);
}

const char *log_level_name(enum log_level l)
{
    return (unsigned)l <= LOG_ERROR ? level_names[l] : "unknown";
}

int log_level_parse(const char *s, enum log_level *out)
{
    static const struct { const char *name; enum log_level l; } map[] = {
        {"debug", LOG_DEBUG}, {"info", LOG_INFO}, {"warn", LOG_WARN},
        {"warning", LOG_WARN}, {"error", LOG_ERROR},
    };
    if (s == NULL || out == NULL)
        return -EINVAL;
    for (size_t i = 0; i < ARRAY_SIZE(map); i++) {
        if (strcasecmp(s, map[i].name) == 0) {
            *out = map[i].l;
            return 0;
        }
    }
    return -EINVAL;
}

void log_set_fd(int fd)
{
    __atomic_store_n(&log_fd, fd, __ATOMIC_RELAXED);
}

uint64_t log_dropped_total(void)
{
    return __atomic_load_n(&log_dropped, __ATOMIC_RELAXED);
}

bool log_ratelimit(struct log_ratelimit *rl, uint64_t interval_ms, unsigned burst)
{
    if (interval_ms == 0) {
        rl->suppressed = rl->refused;
        rl->refused = 0;
        return true;
    }
    uint64_t now = base_now_ms();
    if (rl->window_start_ms == 0 || now - rl->window_start_ms >= interval_ms) {
        rl->window_start_ms = now;
        rl->in_window = 0;
    }
    if (rl->in_window >= burst) {
        rl->refused++;
        return false;
    }
    rl->in_window++;
    rl->suppressed = rl->refused;
    rl->refused = 0;
    return true;
}

/* ---- line builder ------------------------------------------------------ */

struct line {
    char *p;
    size_t len;
    size_t lim; /* usable bytes: capacity minus LOG_TAIL_RESERVE */
    bool truncated;
};

static bool line_put(struct line *ln, const char *s, size_t n)
{
    if (n > ln->lim - ln->len)
        return false;
    memcpy(ln->p + ln->len, s, n);
    ln->len += n;
    return true;
}

static bool line_puts(struct line *ln, const char *s)
{
    return line_put(ln, s, strlen(s));
}

/* Append "escaped s[0..n)" using at most max_bytes (quotes included); cut
 * with "…" when it does not fit. False when not even "…" fits. */
static bool line_str(struct line *ln, const char *s, size_t n, size_t max_bytes)
{
    static const char ell[] = "\xE2\x80\xA6"; /* U+2026 */
    size_t room = ln->lim - ln->len;
    if (room > max_bytes)
        room = max_bytes;
    if (room < 2 + 3)
        return false;
    char *d = ln->p + ln->len;
    size_t used, o;
    d[0] = '"';
    o = 1 + obs_json_escape(d + 1, room - 2, s, n, &used);
    if (used < n) {
        /* Did not fit: redo leaving room for the ellipsis. */
        o = 1 + obs_json_escape(d + 1, room - 2 - 3, s, n, &used);
        memcpy(d + o, ell, 3);
        o += 3;
    }
    d[o++] = '"';
    ln->len += o;
    return true;
}

static bool line_u64(struct line *ln, uint64_t v, bool neg)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    if (neg)
        tmp[--i] = '-';
    return line_put(ln, tmp + i, sizeof(tmp) - i);
}

static bool line_i64(struct line *ln, int64_t v)
{
    return v < 0 ? line_u64(ln, (uint64_t)0 - (uint64_t)v, true) : line_u64(ln, (uint64_t)v, false);
}

/* Howard Hinnant's days_from_civil inverse: days since 1970-01-01 -> y/m/d. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* "2026-11-24T10:22:05.123Z" without gmtime_r (which takes glibc's tz lock). */
static size_t format_time(char *out, size_t cap, uint64_t wall_ns)
{
    uint64_t secs = wall_ns / 1000000000ull;
    unsigned ms = (unsigned)(wall_ns / 1000000ull % 1000);
    int64_t y;
    unsigned mo, d;
    civil_from_days((int64_t)(secs / 86400), &y, &mo, &d);
    unsigned sod = (unsigned)(secs % 86400);
    int n = snprintf(out, cap, "%04lld-%02u-%02uT%02u:%02u:%02u.%03uZ", (long long)y, mo, d,
                     sod / 3600, sod / 60 % 60, sod % 60, ms);
    return n < 0 ? 0 : BASE_MIN((size_t)n, cap - 1);
}

/* ---- printf conversion specs ------------------------------------------- */

enum len_mod { LEN_NONE, LEN_HH, LEN_H, LEN_L, LEN_LL, LEN_J, LEN_Z, LEN_T, LEN_BIG_L };

struct conv_spec {
    const char *start;  /* at the '%' */
    size_t text_len;    /* length of the spec text */
    bool width_star, prec_star;
    int prec;           /* -1: none; resolved when prec_star */
    int width;
    enum len_mod len;
    char conv;          /* d i u x X o f F e E g G a A s c p %; 0 if unsupported */
};

/* Parse the spec at f (f[0] == '%'). Returns the number of bytes it covers. */
static size_t parse_spec(const char *f, struct conv_spec *cs)
{
    const char *p = f + 1;
    memset(cs, 0, sizeof(*cs));
    cs->start = f;
    cs->prec = -1;
    while (*p != '\0' && strchr("-+ #0'I", *p) != NULL)
        p++;
    if (*p == '*') {
        cs->width_star = true;
        p++;
    } else {
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == '.') {
        p++;
        cs->prec = 0;
        if (*p == '*') {
            cs->prec_star = true;
            p++;
        } else {
            int v = 0;
            while (*p >= '0' && *p <= '9') {
                if (v < 100000)
                    v = v * 10 + (*p - '0');
                p++;
            }
            cs->prec = v;
        }
    }
    switch (*p) {
    case 'h':
        cs->len = LEN_H;
        if (*++p == 'h') {
            cs->len = LEN_HH;
            p++;
        }
        break;
    case 'l':
        cs->len = LEN_L;
        if (*++p == 'l') {
            cs->len = LEN_LL;
            p++;
        }
        break;
    case 'q': cs->len = LEN_LL; p++; break;
    case 'j': cs->len = LEN_J; p++; break;
    case 'z': cs->len = LEN_Z; p++; break;
    case 't': cs->len = LEN_T; p++; break;
    case 'L': cs->len = LEN_BIG_L; p++; break;
    default: break;
    }
    if (*p != '\0' && strchr("diuxXofFeEgGaAscp%", *p) != NULL) {
        cs->conv = *p;
        p++;
    } else {
        cs->conv = 0;
        if (*p != '\0')
            p++;
    }
    cs->text_len = (size_t)(p - f);
    return cs->text_len;
}

/* One fetched argument. */
enum arg_kind { ARG_SIGNED, ARG_UNSIGNED, ARG_DOUBLE, ARG_LDOUBLE, ARG_STR, ARG_CHAR, ARG_PTR };

struct arg_val {
    enum arg_kind kind;
    union {
        intmax_t i;
        uintmax_t u;
        double d;
        long double ld;
        const char *s;
        const void *ptr;
    } v;
};

/* Fetch the argument(s) of spec cs from ap, resolving '*'. */
static bool fetch_arg(struct conv_spec *cs, va_list *ap, struct arg_val *a)
{
    if (cs->width_star)
        cs->width = va_arg(*ap, int);
    if (cs->prec_star) {
        cs->prec = va_arg(*ap, int);
        if (cs->prec < 0)
            cs->prec = -1;
    }
    switch (cs->conv) {
    case 'd':
    case 'i':
        a->kind = ARG_SIGNED;
        switch (cs->len) {
        case LEN_HH: a->v.i = (signed char)va_arg(*ap, int); break;
        case LEN_H: a->v.i = (short)va_arg(*ap, int); break;
        case LEN_L: a->v.i = va_arg(*ap, long); break;
        case LEN_LL: a->v.i = va_arg(*ap, long long); break;
        case LEN_J: a->v.i = va_arg(*ap, intmax_t); break;
        case LEN_Z: a->v.i = va_arg(*ap, ssize_t); break;
        case LEN_T: a->v.i = va_arg(*ap, ptrdiff_t); break;
        default: a->v.i = va_arg(*ap, int); break;
        }
        return true;
    case 'u':
    case 'x':
    case 'X':
    case 'o':
        a->kind = ARG_UNSIGNED;
        switch (cs->len) {
        case LEN_HH: a->v.u = (unsigned char)va_arg(*ap, unsigned); break;
        case LEN_H: a->v.u = (unsigned short)va_arg(*ap, unsigned); break;
        case LEN_L: a->v.u = va_arg(*ap, unsigned long); break;
        case LEN_LL: a->v.u = va_arg(*ap, unsigned long long); break;
        case LEN_J: a->v.u = va_arg(*ap, uintmax_t); break;
        case LEN_Z: a->v.u = va_arg(*ap, size_t); break;
        case LEN_T: a->v.u = (uintmax_t)va_arg(*ap, ptrdiff_t); break;
        default: a->v.u = va_arg(*ap, unsigned); break;
        }
        return true;
    case 'f': case 'F': case 'e': case 'E': case 'g': case 'G': case 'a': case 'A':
        if (cs->len == LEN_BIG_L) {
            a->kind = ARG_LDOUBLE;
            a->v.ld = va_arg(*ap, long double);
        } else {
            a->kind = ARG_DOUBLE;
            a->v.d = va_arg(*ap, double);
        }
        return true;
    case 's':
        if (cs->len == LEN_L)
            return false; /* wide strings: not supported */
        a->kind = ARG_STR;
        a->v.s = va_arg(*ap, const char *);
        return true;
    case 'c':
        a->kind = ARG_CHAR;
        if (cs->len == LEN_L)
            a->v.u = (uintmax_t)va_arg(*ap, wint_t);
        else
            a->v.u = (unsigned char)va_arg(*ap, int);
        return true;
    case 'p':
        a->kind = ARG_PTR;
        a->v.ptr = va_arg(*ap, const void *);
        return true;
    default:
        return false;
    }
}

/* Encode code point cp as UTF-8 (invalid -> U+FFFD). Returns the length. */
static size_t utf8_encode(uintmax_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        cp = 0xFFFD;
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* printf the fetched argument as plain text with its own flags/width/precision.
 * Returns the length that printf wanted (may exceed cap). */
static size_t text_arg(const struct conv_spec *cs, const struct arg_val *a, char *out, size_t cap)
{
    char fmt[40];
    size_t k = 0;
    const char *p = cs->start;
    const char *end = cs->start + cs->text_len;
    int n;

    if (cs->conv == '%') {
        if (cap > 0)
            out[0] = '%';
        return 1;
    }
    if (a->kind == ARG_STR && a->v.s == NULL)
        return (size_t)snprintf(out, cap, "(null)");
    if (a->kind == ARG_CHAR) {
        char u[4];
        size_t ul = utf8_encode(a->v.u, u);
        memcpy(out, u, BASE_MIN(ul, cap));
        return ul;
    }
    /* Rebuild the spec with '*' resolved and the length modifier normalised
     * to the type we fetched. */
    fmt[k++] = '%';
    for (p++; p < end && strchr("-+ #0'I", *p) != NULL && k < 8; p++)
        fmt[k++] = *p;
    if (cs->width_star || cs->width > 0 || (*p >= '0' && *p <= '9')) {
        int w = cs->width;
        if (!cs->width_star) {
            w = 0;
            while (*p >= '0' && *p <= '9' && w < 100000)
                w = w * 10 + (*p++ - '0');
        }
        k += (size_t)snprintf(fmt + k, sizeof(fmt) - k, "%d", BASE_MIN(w, 4096));
    }
    if (cs->prec >= 0)
        k += (size_t)snprintf(fmt + k, sizeof(fmt) - k, ".%d", cs->prec);
    if (a->kind == ARG_SIGNED || a->kind == ARG_UNSIGNED)
        fmt[k++] = 'j';
    else if (a->kind == ARG_LDOUBLE)
        fmt[k++] = 'L';
    fmt[k++] = cs->conv;
    fmt[k] = '\0';
    switch (a->kind) {
    case ARG_SIGNED: n = snprintf(out, cap, fmt, a->v.i); break;
    case ARG_UNSIGNED: n = snprintf(out, cap, fmt, a->v.u); break;
    case ARG_DOUBLE: n = snprintf(out, cap, fmt, a->v.d); break;
    case ARG_LDOUBLE: n = snprintf(out, cap, fmt, a->v.ld); break;
    case ARG_STR: n = snprintf(out, cap, fmt, a->v.s); break;
    case ARG_PTR: n = snprintf(out, cap, fmt, a->v.ptr); break;
    default: n = 0; break;
    }
    return n < 0 ? 0 : (size_t)n;
}

/* Append the typed JSON value of a single-conversion field. */
static bool line_value(struct line *ln, const struct conv_spec *cs, const struct arg_val *a)
{
    char tmp[64];
    size_t n;

    switch (a->kind) {
    case ARG_SIGNED:
        return line_i64(ln, (int64_t)a->v.i);
    case ARG_UNSIGNED:
        if (cs->conv == 'u')
            return line_u64(ln, (uint64_t)a->v.u, false);
        if (cs->conv == 'o')
            n = (size_t)snprintf(tmp, sizeof(tmp), "\"0%jo\"", a->v.u);
        else if (cs->conv == 'X')
            n = (size_t)snprintf(tmp, sizeof(tmp), "\"0x%jX\"", a->v.u);
        else
            n = (size_t)snprintf(tmp, sizeof(tmp), "\"0x%jx\"", a->v.u);
        return line_put(ln, tmp, n);
    case ARG_DOUBLE:
    case ARG_LDOUBLE: {
        long double v = a->kind == ARG_DOUBLE ? (long double)a->v.d : a->v.ld;
        char c = cs->conv;
        if (!isfinite(v) || c == 'a' || c == 'A') {
            /* Not representable as a JSON number: printf text as a string. */
            n = text_arg(cs, a, tmp, sizeof(tmp));
            return line_str(ln, tmp, BASE_MIN(n, sizeof(tmp) - 1), LOG_VALUE_MAX);
        }
        /* Keep the precision only: flags ('+', '#') and width would make
         * the text an invalid JSON number. */
        char fmt[8] = {'%', '.', '*', 'L', c == 'F' ? 'f' : c, '\0'};
        int prec = cs->prec >= 0 ? BASE_MIN(cs->prec, 30) : 6;
        int r = snprintf(tmp, sizeof(tmp), fmt, prec, v);
        if (r < 0 || (size_t)r >= sizeof(tmp)) /* huge %f: fall back to %g */
            r = snprintf(tmp, sizeof(tmp), "%.17Lg", v);
        n = r < 0 ? 0 : BASE_MIN((size_t)r, sizeof(tmp) - 1);
        return line_put(ln, tmp, n);
    }
    case ARG_STR: {
        if (a->v.s == NULL)
            return line_puts(ln, "null");
        size_t len = cs->prec >= 0 ? strnlen(a->v.s, (size_t)cs->prec) : strlen(a->v.s);
        return line_str(ln, a->v.s, len, LOG_VALUE_MAX + 2);
    }
    case ARG_CHAR: {
        char u[4];
        n = utf8_encode(a->v.u, u);
        return line_str(ln, u, n, 16);
    }
    case ARG_PTR:
        if (a->v.ptr == NULL)
            return line_puts(ln, "null");
        n = (size_t)snprintf(tmp, sizeof(tmp), "\"%p\"", a->v.ptr);
        return line_put(ln, tmp, n);
    }
    return false;
}

/* Shape of a value template: how many conversions, any literal text. */
static void scan_value(const char *v, const char **end, unsigned *n_conv, bool *has_text,
                       struct conv_spec *first)
{
    struct conv_spec cs;
    *n_conv = 0;
    *has_text = false;
    while (*v != '\0' && *v != ' ') {
        if (*v == '%') {
            v += parse_spec(v, &cs);
            if (cs.conv == '%') {
                *has_text = true;
                continue;
            }
            if (*n_conv == 0)
                *first = cs;
            (*n_conv)++;
        } else {
            *has_text = true;
            v++;
        }
    }
    *end = v;
}

/* Format a composite value (text and conversions) into scratch; then append
 * it as a JSON string. False on an unsupported conversion (args now unusable). */
static bool composite_value(struct line *ln, const char *v, const char *end, va_list *ap,
                            bool *fits)
{
    char scratch[LOG_SCRATCH_MAX];
    size_t o = 0;
    bool cut = false;

    while (v < end) {
        if (*v != '%') {
            if (o < sizeof(scratch))
                scratch[o++] = *v;
            else
                cut = true;
            v++;
            continue;
        }
        struct conv_spec cs;
        struct arg_val a = {0};
        v += parse_spec(v, &cs);
        if (cs.conv != '%' && !fetch_arg(&cs, ap, &a))
            return false;
        size_t room = sizeof(scratch) - o;
        size_t want = text_arg(&cs, &a, scratch + o, room);
        if (want >= room) {
            /* snprintf wrote room-1 bytes plus NUL. */
            o += room > 0 ? room - 1 : 0;
            cut = true;
        } else {
            o += want;
        }
    }
    if (cut) {
        /* Drop a partial UTF-8 sequence at the cut, then mark it. */
        size_t back = 0;
        while (back < 3 && back < o && ((unsigned char)scratch[o - 1 - back] & 0xC0) == 0x80)
            back++;
        if (back < o && ((unsigned char)scratch[o - 1 - back] & 0xC0) == 0xC0)
            o -= back + 1;
        if (o > sizeof(scratch) - 3)
            o = sizeof(scratch) - 3;
        memcpy(scratch + o, "\xE2\x80\xA6", 3);
        o += 3;
    }
    *fits = line_str(ln, scratch, o, LOG_VALUE_MAX + 2);
    return true;
}

void log_write(enum log_level lvl, const char *msg, const char *fields_fmt, ...)
{
    char buf[LOG_LINE_MAX];
    struct line ln = {.p = buf, .len = 0, .lim = sizeof(buf) - LOG_TAIL_RESERVE};
    char ts[40];

    if ((unsigned)lvl > LOG_ERROR || lvl < log_get_level())
        return;
    int saved_errno = errno; /* callers log and then look at errno */

    size_t tl = format_time(ts, sizeof(ts), base_wall_ns());
    line_puts(&ln, "{\"time\":\"");
    line_put(&ln, ts, tl);
    line_puts(&ln, "\",\"level\":\"");
    line_puts(&ln, level_names[lvl]);
    line_puts(&ln, "\",\"msg\":");
    if (msg == NULL)
        msg = "";
    line_str(&ln, msg, strlen(msg), LOG_VALUE_MAX + 2);

    va_list ap;
    va_start(ap, fields_fmt);
    const char *f = fields_fmt != NULL ? fields_fmt : "";
    while (!ln.truncated) {
        while (*f == ' ')
            f++;
        if (*f == '\0')
            break;
        /* key: up to '=' or ' ' */
        const char *key = f, *key_end = f;
        while (*key_end != '\0' && *key_end != '=' && *key_end != ' ' && *key_end != '%')
            key_end++;
        const char *val;
        if (*key_end == '=') {
            val = key_end + 1;
        } else {
            val = key; /* no '=': the whole item is the value of "_" */
            key = "_";
            key_end = key + 1;
        }
        if (key_end == key) {
            key = "_";
            key_end = key + 1;
        }
        const char *val_end;
        unsigned n_conv;
        bool has_text;
        struct conv_spec cs;
        scan_value(val, &val_end, &n_conv, &has_text, &cs);
        f = val_end;

        size_t mark = ln.len;
        bool ok = line_put(&ln, ",", 1) && line_str(&ln, key, (size_t)(key_end - key), 256) &&
                  line_put(&ln, ":", 1);
        if (n_conv == 1 && !has_text) {
            struct arg_val a = {0};
            if (!fetch_arg(&cs, &ap, &a)) {
                ln.len = mark;
                line_puts(&ln, ",\"log_error\":\"unsupported conversion\"");
                break;
            }
            ok = ok && line_value(&ln, &cs, &a);
        } else if (n_conv == 0 && !has_text) {
            ok = ok && line_put(&ln, "\"\"", 2);
        } else {
            bool fits = false;
            if (!composite_value(&ln, val, val_end, &ap, &fits)) {
                ln.len = mark;
                line_puts(&ln, ",\"log_error\":\"unsupported conversion\"");
                break;
            }
            ok = ok && fits;
        }
        if (!ok) {
            ln.len = mark;
            ln.truncated = true;
        }
    }
    va_end(ap);

    /* The reserve always leaves room for the tail. */
    ln.lim = sizeof(buf);
    if (ln.truncated)
        line_puts(&ln, ",\"truncated\":true");
    line_put(&ln, "}\n", 2);

    int fd = __atomic_load_n(&log_fd, __ATOMIC_RELAXED);
    size_t off = 0;
    while (off < ln.len) {
        ssize_t w = write(fd, buf + off, ln.len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            __atomic_fetch_add(&log_dropped, 1, __ATOMIC_RELAXED);
            break;
        }
        off += (size_t)w;
    }
    errno = saved_errno;
}
