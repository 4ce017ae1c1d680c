/* SPDX-License-Identifier: Apache-2.0 */
/* Scalar values of the configuration: parsing by key type with range checks,
 * ${VAR} expansion, core lists, and the "did you mean" distance. Used by the
 * loader for YAML values, environment overrides and the built-in defaults. */
#include "config/config_internal.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/base.h"

void config_show(char *out, size_t outlen, const char *s, size_t max)
{
    size_t n = 0;
    size_t i = 0;
    if (outlen == 0)
        return;
    for (; s[i] != '\0' && i < max && n + 1 < outlen; i++) {
        unsigned char c = (unsigned char)s[i];
        out[n++] = (c < ' ' || c == 0x7f) ? '?' : (char)c;
    }
    if (s[i] != '\0' && n + 4 < outlen) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

void config_kv_clear(struct config_kv_list *l)
{
    for (unsigned i = 0; i < l->n && i < CONFIG_MAX_KV; i++) {
        free(l->items[i].key);
        free(l->items[i].value);
        l->items[i].key = l->items[i].value = NULL;
    }
    l->n = 0;
}

void config_size_text(char *out, size_t outlen, uint64_t v)
{
    if (v >= GIB && v % GIB == 0)
        snprintf(out, outlen, "%" PRIu64 "GiB", v / GIB);
    else if (v >= MIB && v % MIB == 0)
        snprintf(out, outlen, "%" PRIu64 "MiB", v / MIB);
    else if (v >= KIB && v % KIB == 0)
        snprintf(out, outlen, "%" PRIu64 "KiB", v / KIB);
    else
        snprintf(out, outlen, "%" PRIu64, v);
}

/* Strip ASCII blanks at both ends into `tmp`; returns tmp, or NULL when the
 * rest does not fit (no valid number or name is that long). */
static const char *trim(const char *s, char *tmp, size_t tmplen)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n >= tmplen)
        return NULL;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    return tmp;
}

/*
 * Decimal digits at *pp into *v, advancing *pp. Returns 0, -EINVAL when no
 * digit, -ERANGE on overflow (digits still consumed).
 */
static int parse_digits(const char **pp, uint64_t *v)
{
    const char *p = *pp;
    uint64_t x = 0;
    int rc = 0;
    if (!isdigit((unsigned char)*p))
        return -EINVAL;
    for (; isdigit((unsigned char)*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (x > (UINT64_MAX - d) / 10)
            rc = -ERANGE;
        else
            x = x * 10 + d;
    }
    *pp = p;
    *v = x;
    return rc;
}

/* Integer or size, per key type. Returns 0 or -EINVAL with `why`. */
static int parse_integer(const struct config_key *key, const char *s, uint64_t *out,
                         char why[CONFIG_WHY_LEN])
{
    bool is_size = key->type == CONFIG_T_SIZE32 || key->type == CONFIG_T_SIZE64;
    const char *what =
        is_size ? "a size (bytes, or a number with suffix KiB, MiB or GiB)" : "an integer";
    char tmp[96], shown[80], lo[32], hi[32];
    const char *t = trim(s, tmp, sizeof(tmp));
    config_show(shown, sizeof(shown), s, 64);
    if (t == NULL) {
        snprintf(why, CONFIG_WHY_LEN, "expected %s, got '%s'", what, shown);
        return -EINVAL;
    }
    bool neg = false;
    const char *p = t;
    if (*p == '-' || *p == '+') {
        neg = *p == '-';
        p++;
    }
    uint64_t v;
    int rc = parse_digits(&p, &v);
    if (rc == -EINVAL) {
        if (*t == '\0')
            snprintf(why, CONFIG_WHY_LEN, "expected %s, got an empty value", what);
        else
            snprintf(why, CONFIG_WHY_LEN, "expected %s, got '%s'", what, shown);
        return -EINVAL;
    }
    uint64_t mult = 1;
    if (is_size) {
        while (*p == ' ')
            p++;
        if (*p == '\0' || strcasecmp(p, "B") == 0)
            mult = 1;
        else if (strcasecmp(p, "KiB") == 0)
            mult = KIB;
        else if (strcasecmp(p, "MiB") == 0)
            mult = MIB;
        else if (strcasecmp(p, "GiB") == 0)
            mult = GIB;
        else if (strcasecmp(p, "K") == 0 || strcasecmp(p, "KB") == 0 || strcasecmp(p, "M") == 0 ||
                 strcasecmp(p, "MB") == 0 || strcasecmp(p, "G") == 0 || strcasecmp(p, "GB") == 0) {
            snprintf(why, CONFIG_WHY_LEN,
                     "unit in '%s' is ambiguous: use KiB, MiB or GiB (powers of 1024)", shown);
            return -EINVAL;
        } else {
            snprintf(why, CONFIG_WHY_LEN, "expected %s, got '%s'", what, shown);
            return -EINVAL;
        }
    } else if (*p != '\0') {
        snprintf(why, CONFIG_WHY_LEN, "expected %s, got '%s'", what, shown);
        return -EINVAL;
    }
    bool overflow = rc == -ERANGE || (v != 0 && v > UINT64_MAX / mult);
    if (!overflow)
        v *= mult;
    if (overflow || (neg && v != 0) || v < key->min || v > key->max) {
        if (is_size) {
            config_size_text(lo, sizeof(lo), key->min);
            config_size_text(hi, sizeof(hi), key->max);
        } else {
            snprintf(lo, sizeof(lo), "%" PRIu64, key->min);
            snprintf(hi, sizeof(hi), "%" PRIu64, key->max);
        }
        snprintf(why, CONFIG_WHY_LEN, "must be between %s and %s, got %s", lo, hi, shown);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

static int parse_double(const struct config_key *key, const char *s, double *out,
                        char why[CONFIG_WHY_LEN])
{
    char tmp[96], shown[80];
    const char *t = trim(s, tmp, sizeof(tmp));
    config_show(shown, sizeof(shown), s, 64);
    /* Plain decimal notation only: strtod would also take hex, inf and nan. */
    bool ok = t != NULL && *t != '\0' && strspn(t, "0123456789+-.eE") == strlen(t) &&
              strpbrk(t, "0123456789") != NULL;
    char *end = NULL;
    double v = 0;
    if (ok) {
        errno = 0;
        v = strtod(t, &end);
        ok = end != NULL && *end == '\0' && errno == 0 && isfinite(v);
    }
    if (!ok) {
        snprintf(why, CONFIG_WHY_LEN, "expected a number, got '%s'", shown);
        return -EINVAL;
    }
    if (v < key->dmin || v > key->dmax) {
        snprintf(why, CONFIG_WHY_LEN, "must be between %g and %g, got %s", key->dmin, key->dmax,
                 shown);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

/* Index of `s` in a NULL-terminated name list (case-insensitive), or -1. */
static int find_name(const char *const *names, const char *s)
{
    for (int i = 0; names[i] != NULL; i++) {
        if (strcasecmp(names[i], s) == 0)
            return i;
    }
    return -1;
}

static void names_list(const char *const *names, char *out, size_t outlen)
{
    size_t n = 0;
    out[0] = '\0';
    for (int i = 0; names[i] != NULL && n < outlen; i++) {
        int w = snprintf(out + n, outlen - n, "%s%s", i ? ", " : "", names[i]);
        if (w < 0)
            break;
        n += (size_t)w;
    }
}

static int one_of(const struct config_key *key, const char *s, int *idx, char why[CONFIG_WHY_LEN])
{
    char tmp[96], shown[80], list[128];
    const char *t = trim(s, tmp, sizeof(tmp));
    int i = t != NULL ? find_name(key->names, t) : -1;
    if (i < 0) {
        config_show(shown, sizeof(shown), s, 64);
        names_list(key->names, list, sizeof(list));
        snprintf(why, CONFIG_WHY_LEN, "must be one of %s; got '%s'", list, shown);
        return -EINVAL;
    }
    *idx = i;
    return 0;
}

static int set_string(char **field, const char *s)
{
    char *copy = strdup(s);
    if (copy == NULL)
        return -ENOMEM;
    free(*field);
    *field = copy;
    return 0;
}

int config_value_set(const struct config_key *key, void *field, const char *s,
                     char why[CONFIG_WHY_LEN])
{
    uint64_t u = 0;
    int idx = 0;
    int rc;
    why[0] = '\0';
    switch (key->type) {
    case CONFIG_T_BOOL: {
        char tmp[16], shown[80];
        const char *t = trim(s, tmp, sizeof(tmp));
        bool v;
        if (t != NULL && strcasecmp(t, "true") == 0)
            v = true;
        else if (t != NULL && strcasecmp(t, "false") == 0)
            v = false;
        else {
            config_show(shown, sizeof(shown), s, 64);
            snprintf(why, CONFIG_WHY_LEN, "expected true or false, got '%s'", shown);
            return -EINVAL;
        }
        *(bool *)field = v;
        return 0;
    }
    case CONFIG_T_U16:
        if ((rc = parse_integer(key, s, &u, why)) < 0)
            return rc;
        *(uint16_t *)field = (uint16_t)u;
        return 0;
    case CONFIG_T_U32:
    case CONFIG_T_SIZE32:
        if ((rc = parse_integer(key, s, &u, why)) < 0)
            return rc;
        *(uint32_t *)field = (uint32_t)u;
        return 0;
    case CONFIG_T_SIZE64:
        if ((rc = parse_integer(key, s, &u, why)) < 0)
            return rc;
        *(uint64_t *)field = u;
        return 0;
    case CONFIG_T_DOUBLE:
        return parse_double(key, s, (double *)field, why);
    case CONFIG_T_ENUM:
        if ((rc = one_of(key, s, &idx, why)) < 0)
            return rc;
        memcpy(field, &idx, sizeof(idx)); /* enum size == int, checked in the table */
        return 0;
    case CONFIG_T_STR:
        if (key->names != NULL) {
            if ((rc = one_of(key, s, &idx, why)) < 0)
                return rc;
            s = key->names[idx];
        }
        if (strlen(s) < key->min) {
            snprintf(why, CONFIG_WHY_LEN, "must not be empty");
            return -EINVAL;
        }
        if (key->check != NULL) {
            const char *reason = key->check(s);
            if (reason != NULL) {
                snprintf(why, CONFIG_WHY_LEN, "%s", reason);
                return -EINVAL;
            }
        }
        return set_string((char **)field, s);
    case CONFIG_T_KV:
        break;
    }
    snprintf(why, CONFIG_WHY_LEN, "expected a mapping of names to strings");
    return -EINVAL;
}

/* --- ${VAR} expansion --- */

static bool var_start(char c)
{
    return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool var_char(char c)
{
    return var_start(c) || (c >= '0' && c <= '9');
}

int config_expand_env(const char *in, size_t len, char **out, char why[CONFIG_WHY_LEN])
{
    struct buf b;
    int rc = 0;
    char name[256];
    *out = NULL;
    why[0] = '\0';
    buf_init(&b, 0, 0);
    size_t i = 0;
    while (i < len && rc == 0) {
        char c = in[i];
        if (c == '\0') {
            snprintf(why, CONFIG_WHY_LEN, "value contains a NUL byte");
            rc = -EINVAL;
            break;
        }
        if (c != '$' || i + 1 >= len || (in[i + 1] != '$' && in[i + 1] != '{')) {
            rc = buf_append(&b, &c, 1); /* a lone '$' is kept as is */
            i++;
            continue;
        }
        if (in[i + 1] == '$') {
            rc = buf_append(&b, "$", 1);
            i += 2;
            continue;
        }
        /* ${NAME} or ${NAME:-default} */
        size_t j = i + 2;
        size_t name_start = j;
        if (j < len && var_start(in[j])) {
            while (j < len && var_char(in[j]))
                j++;
        }
        size_t name_len = j - name_start;
        if (name_len == 0) {
            snprintf(why, CONFIG_WHY_LEN,
                     "'${' must be followed by a variable name (write $$ for a literal $)");
            rc = -EINVAL;
            break;
        }
        if (name_len >= sizeof(name)) {
            snprintf(why, CONFIG_WHY_LEN, "variable name longer than %zu characters",
                     sizeof(name) - 1);
            rc = -EINVAL;
            break;
        }
        memcpy(name, in + name_start, name_len);
        name[name_len] = '\0';
        const char *def = NULL;
        size_t def_len = 0;
        if (j + 1 < len && in[j] == ':' && in[j + 1] == '-') {
            def = in + j + 2;
            const char *close = memchr(def, '}', len - (j + 2));
            if (close == NULL) {
                snprintf(why, CONFIG_WHY_LEN, "unterminated ${%.64s:-...", name);
                rc = -EINVAL;
                break;
            }
            def_len = (size_t)(close - def);
            if (memchr(def, '\0', def_len) != NULL) {
                snprintf(why, CONFIG_WHY_LEN, "value contains a NUL byte");
                rc = -EINVAL;
                break;
            }
            j = (size_t)(close - in);
        } else if (j >= len || in[j] != '}') {
            snprintf(why, CONFIG_WHY_LEN,
                     "invalid ${%.64s...}: expected '}' or ':-default}' after the name", name);
            rc = -EINVAL;
            break;
        }
        const char *val = getenv(name);
        if (val != NULL && (def == NULL || *val != '\0'))
            rc = buf_append_str(&b, val);
        else if (def != NULL)
            rc = buf_append(&b, def, def_len);
        else {
            snprintf(why, CONFIG_WHY_LEN,
                     "environment variable %.64s is not set (write ${%.64s:-default} to give a "
                     "default)",
                     name, name);
            rc = -EINVAL;
        }
        i = j + 1;
    }
    if (rc == 0)
        rc = buf_append(&b, "", 1);
    if (rc < 0) {
        buf_free(&b);
        return rc == -EINVAL ? rc : -ENOMEM;
    }
    *out = (char *)b.data;
    return 0;
}

/* --- core lists --- */

int config_parse_cores_why(const char *s, unsigned *cores, unsigned max, unsigned *n,
                           const char **why)
{
    uint8_t seen[(CONFIG_MAX_CORE_ID + 8) / 8];
    unsigned count = 0;
    const char *p = s;
    memset(seen, 0, sizeof(seen));
    *n = 0;
    *why = NULL;
    while (*p == ' ')
        p++;
    if (*p == '\0')
        return 0;
    for (;;) {
        uint64_t a, b;
        if (parse_digits(&p, &a) == -EINVAL) {
            *why = "expected a core number or a range like 0-3";
            return -EINVAL;
        }
        b = a;
        while (*p == ' ')
            p++;
        if (*p == '-') {
            p++;
            while (*p == ' ')
                p++;
            if (parse_digits(&p, &b) == -EINVAL) {
                *why = "expected a number after '-'";
                return -EINVAL;
            }
            while (*p == ' ')
                p++;
        }
        if (a > CONFIG_MAX_CORE_ID || b > CONFIG_MAX_CORE_ID) {
            *why = "core number above 1023";
            return -EINVAL;
        }
        if (b < a) {
            *why = "range ends below its start";
            return -EINVAL;
        }
        for (uint64_t c = a; c <= b; c++) {
            if (seen[c / 8] & (1u << (c % 8))) {
                *why = "a core is listed twice";
                return -EINVAL;
            }
            seen[c / 8] |= (uint8_t)(1u << (c % 8));
            if (count >= max) {
                *why = "lists more cores than allowed";
                return -E2BIG;
            }
            if (cores != NULL)
                cores[count] = (unsigned)c;
            count++;
        }
        if (*p == '\0')
            break;
        if (*p != ',') {
            *why = "expected ',' between core numbers and ranges";
            return -EINVAL;
        }
        p++;
        while (*p == ' ')
            p++;
    }
    *n = count;
    return 0;
}

int config_parse_cores(const char *s, unsigned *cores, unsigned max, unsigned *n)
{
    const char *why;
    if (s == NULL || n == NULL)
        return -EINVAL;
    return config_parse_cores_why(s, cores, max, n, &why);
}

/* --- suggestions --- */

unsigned config_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return 1000;
    unsigned d[65][65];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (unsigned)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (unsigned)j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            unsigned cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            unsigned v = BASE_MIN(d[i - 1][j] + 1, d[i][j - 1] + 1);
            v = BASE_MIN(v, d[i - 1][j - 1] + cost);
            if (i > 1 && j > 1 &&
                tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == tolower((unsigned char)b[j - 1]))
                v = BASE_MIN(v, d[i - 2][j - 2] + 1);
            d[i][j] = v;
        }
    }
    return d[la][lb];
}

bool config_is_close(const char *typo, const char *cand)
{
    size_t lt = strlen(typo), lc = strlen(cand);
    unsigned limit = lt <= 3 ? 1 : lt <= 6 ? 2 : 3;
    unsigned d = config_edit_distance(typo, cand);
    if (d <= limit && d < lt)
        return true;
    /* "queue_size" for "max_queue_size", "endpoint_url" for "endpoint" */
    if (lt >= 4 && lc >= 4 && (strcasestr(cand, typo) != NULL || strcasestr(typo, cand) != NULL))
        return true;
    return false;
}

int config_split_args(const char *s, char *store, size_t store_len, char **argv,
                      unsigned max_argv, unsigned *argc, const char **why)
{
    unsigned n = 0;
    size_t w = 0;
    *argc = 0;
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            break;
        if (n == max_argv) {
            *why = "too many words";
            return -E2BIG;
        }
        if (argv != NULL)
            argv[n] = store + w;
        char quote = 0;
        for (; *p != '\0' && (quote || (*p != ' ' && *p != '\t')); p++) {
            unsigned char c = (unsigned char)*p;
            if (c < ' ' || c == 0x7f) {
                *why = "must not contain control characters";
                return -EINVAL;
            }
            if (quote == 0 && (c == '\'' || c == '"')) {
                quote = (char)c;
                continue;
            }
            if (quote != 0 && c == (unsigned char)quote) {
                quote = 0;
                continue;
            }
            if (c == '\\' && quote != '\'') {
                if (p[1] == '\0') {
                    *why = "ends with a backslash";
                    return -EINVAL;
                }
                c = (unsigned char)*++p;
            }
            if (store != NULL) {
                if (w + 1 >= store_len) {
                    *why = "too long";
                    return -E2BIG;
                }
                store[w] = (char)c;
            }
            w++;
        }
        if (quote != 0) {
            *why = quote == '\'' ? "has an unbalanced ' quote" : "has an unbalanced \" quote";
            return -EINVAL;
        }
        if (store != NULL)
            store[w] = '\0';
        w++;
        n++;
    }
    *argc = n;
    return 0;
}

int config_parse_ipv4(const char *s, uint32_t *ip)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        if (!isdigit((unsigned char)*s))
            return -EINVAL;
        unsigned o = 0, digits = 0;
        while (isdigit((unsigned char)*s)) {
            o = o * 10 + (unsigned)(*s++ - '0');
            if (++digits > 3 || o > 255)
                return -EINVAL;
        }
        v = v << 8 | o;
        if (i < 3 && *s++ != '.')
            return -EINVAL;
    }
    if (*s != '\0')
        return -EINVAL;
    *ip = v;
    return 0;
}
