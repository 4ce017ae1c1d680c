/* SPDX-License-Identifier: Apache-2.0 */
/* Output generated from the key tables: the Markdown reference embedded in
 * docs/configuration.md, and the effective configuration as YAML (for
 * `otlp-service validate` and for round-trip tests). */
#include "config/config_internal.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

static const char *type_name(const struct config_key *k)
{
    switch (k->type) {
    case CONFIG_T_BOOL:
        return "boolean";
    case CONFIG_T_U16:
    case CONFIG_T_U32:
        return "integer";
    case CONFIG_T_SIZE32:
    case CONFIG_T_SIZE64:
        return "size";
    case CONFIG_T_DOUBLE:
        return "number";
    case CONFIG_T_ENUM:
        return "enum";
    case CONFIG_T_STR:
        return k->names != NULL ? "enum" : "string";
    case CONFIG_T_KV:
        return "map";
    }
    return "?";
}

/* Markdown table cell text: '|' would end the cell. */
static int cell(struct buf *out, const char *s)
{
    int rc = 0;
    for (const char *p = s; *p && rc == 0; p++)
        rc = *p == '|' ? buf_append_str(out, "\\|") : buf_append(out, p, 1);
    return rc;
}

static int range_text(const struct config_key *k, struct buf *out)
{
    char lo[32], hi[32];
    if (k->values_doc != NULL)
        return cell(out, k->values_doc);
    switch (k->type) {
    case CONFIG_T_BOOL:
        return buf_append_str(out, "`true`, `false`");
    case CONFIG_T_U16:
    case CONFIG_T_U32:
        return buf_printf(out, "%" PRIu64 " .. %" PRIu64, k->min, k->max);
    case CONFIG_T_SIZE32:
    case CONFIG_T_SIZE64:
        config_size_text(lo, sizeof(lo), k->min);
        config_size_text(hi, sizeof(hi), k->max);
        return buf_printf(out, "%s .. %s", lo, hi);
    case CONFIG_T_DOUBLE:
        return buf_printf(out, "%g .. %g", k->dmin, k->dmax);
    case CONFIG_T_ENUM:
    case CONFIG_T_STR:
        if (k->names != NULL) {
            int rc = 0;
            for (unsigned i = 0; k->names[i] != NULL && rc == 0; i++)
                rc = buf_printf(out, "%s`%s`", i ? ", " : "", k->names[i]);
            return rc;
        }
        return buf_append_str(out, k->min > 0 ? "non-empty" : "any");
    case CONFIG_T_KV:
        return cell(out, k->kv->doc);
    }
    return 0;
}

static int write_key(const struct config_section *s, const struct config_key *k, struct buf *out)
{
    char env[160];
    size_t n = 0;
    for (const char *p = s->name; *p && n + 3 < sizeof(env); p++) {
        if (*p == '.') {
            env[n++] = '_';
            env[n++] = '_';
        } else {
            env[n++] = (char)toupper((unsigned char)*p);
        }
    }
    env[n] = '\0';
    int rc = buf_printf(out, "| `%s.%s`<br>`OTLP__%s__", s->name, k->name, env);
    for (const char *p = k->name; *p && rc == 0; p++) {
        char c = (char)toupper((unsigned char)*p);
        rc = buf_append(out, &c, 1);
    }
    if (rc == 0)
        rc = buf_printf(out, "%s` | %s | ", k->type == CONFIG_T_KV ? "__<NAME>" : "", type_name(k));
    if (rc == 0)
        rc = k->type == CONFIG_T_STR && k->names == NULL ? buf_printf(out, "`\"%s\"`", k->def)
                                                         : buf_printf(out, "`%s`", k->def);
    if (rc == 0)
        rc = buf_append_str(out, " | ");
    if (rc == 0)
        rc = range_text(k, out);
    if (rc == 0)
        rc = buf_append_str(out, " | ");
    if (rc == 0)
        rc = cell(out, k->help);
    if (rc == 0)
        rc = buf_append_str(out, " |\n");
    return rc;
}

int config_write_reference(struct buf *out)
{
    int rc = 0;
    if (out == NULL)
        return -EINVAL;
    for (unsigned s = 0; s < config_n_sections && rc == 0; s++) {
        const struct config_section *S = &config_sections[s];
        rc = buf_printf(out,
                        "%s### `%s`\n\n%s\n\n"
                        "| Key / environment | Type | Default | Range / values | Description |\n"
                        "|---|---|---|---|---|\n",
                        s ? "\n" : "", S->name, S->help);
        for (unsigned k = 0; k < S->n_keys && rc == 0; k++)
            rc = write_key(S, &S->keys[k], out);
    }
    return rc;
}

/* --- effective configuration as YAML --- */

/* May `cp` appear unescaped inside a quoted YAML scalar? YAML 1.1 5.1
 * printable, minus the line breaks NEL, LS and PS (5.4), which folding would
 * turn into spaces. */
static bool yaml_printable(uint32_t cp)
{
    if (cp == 0x2028 || cp == 0x2029)
        return false;
    return (cp >= 0xa0 && cp <= 0xd7ff) || (cp >= 0xe000 && cp <= 0xfffd) ||
           (cp >= 0x10000 && cp <= 0x10ffff);
}

/* Decode one UTF-8 sequence at p; returns its length, 0 if invalid. */
static size_t utf8_decode(const unsigned char *p, uint32_t *cp)
{
    size_t n;
    uint32_t c = p[0], min;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2, c &= 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3, c &= 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4, c &= 0x07, min = 0x10000;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (p[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return n;
}

/*
 * A YAML double-quoted scalar that the loader reads back unchanged: '$' is
 * doubled because values go through ${VAR} expansion, and characters YAML
 * does not allow in a stream are escaped. Bytes that are not UTF-8 (possible
 * only from the environment) are written as \xNN, which reads back as U+00NN.
 */
static int quoted(struct buf *out, const char *s)
{
    int rc = buf_append(out, "\"", 1);
    const unsigned char *p = (const unsigned char *)s;
    while (p != NULL && *p && rc == 0) {
        uint32_t cp;
        size_t n;
        if (*p == '"' || *p == '\\') {
            rc = buf_printf(out, "\\%c", *p);
            p++;
        } else if (*p == '$') {
            rc = buf_append_str(out, "$$");
            p++;
        } else if (*p < ' ' || *p == 0x7f) {
            rc = buf_printf(out, "\\x%02x", *p);
            p++;
        } else if (*p < 0x80) {
            rc = buf_append(out, p, 1);
            p++;
        } else if ((n = utf8_decode(p, &cp)) == 0) {
            rc = buf_printf(out, "\\x%02x", *p);
            p++;
        } else {
            if (yaml_printable(cp))
                rc = buf_append(out, p, n);
            else if (cp <= 0xffff)
                rc = buf_printf(out, "\\u%04x", (unsigned)cp);
            else
                rc = buf_printf(out, "\\U%08x", (unsigned)cp);
            p += n;
        }
    }
    if (rc == 0)
        rc = buf_append(out, "\"", 1);
    return rc;
}

static int write_double(struct buf *out, double v)
{
    char tmp[40];
    snprintf(tmp, sizeof(tmp), "%.15g", v);
    if (strtod(tmp, NULL) != v)
        snprintf(tmp, sizeof(tmp), "%.17g", v);
    if (strpbrk(tmp, ".e") == NULL)
        strcat(tmp, ".0");
    return buf_append_str(out, tmp);
}

static int write_value(const struct svc_config *cfg, const struct config_section *s,
                       const struct config_key *k, bool redact, unsigned indent, struct buf *out)
{
    const void *f = (const char *)cfg + s->offset + k->offset;
    char tmp[32];
    int v;
    int rc = buf_printf(out, "%*s%s:", (int)indent, "", k->name);
    if (rc < 0)
        return rc;
    switch (k->type) {
    case CONFIG_T_BOOL:
        return buf_printf(out, " %s\n", *(const bool *)f ? "true" : "false");
    case CONFIG_T_U16:
        return buf_printf(out, " %u\n", (unsigned)*(const uint16_t *)f);
    case CONFIG_T_U32:
        return buf_printf(out, " %" PRIu32 "\n", *(const uint32_t *)f);
    case CONFIG_T_SIZE32:
        config_size_text(tmp, sizeof(tmp), *(const uint32_t *)f);
        return buf_printf(out, " %s\n", tmp);
    case CONFIG_T_SIZE64:
        config_size_text(tmp, sizeof(tmp), *(const uint64_t *)f);
        return buf_printf(out, " %s\n", tmp);
    case CONFIG_T_DOUBLE:
        rc = buf_append_str(out, " ");
        if (rc == 0)
            rc = write_double(out, *(const double *)f);
        return rc == 0 ? buf_append_str(out, "\n") : rc;
    case CONFIG_T_ENUM: {
        unsigned n = 0;
        memcpy(&v, f, sizeof(v));
        while (k->names[n] != NULL)
            n++;
        return buf_printf(out, " %s\n", v >= 0 && (unsigned)v < n ? k->names[v] : "unknown");
    }
    case CONFIG_T_STR:
        rc = buf_append_str(out, " ");
        if (rc == 0)
            rc = quoted(out, *(char *const *)f == NULL      ? ""
                             : redact && k->secret && **(char *const *)f ? "<redacted>"
                                                                         : *(char *const *)f);
        return rc == 0 ? buf_append_str(out, "\n") : rc;
    case CONFIG_T_KV: {
        const struct config_kv_list *l = f;
        if (l->n == 0)
            return buf_append_str(out, " {}\n");
        rc = buf_append_str(out, "\n");
        for (unsigned i = 0; i < l->n && i < CONFIG_MAX_KV && rc == 0; i++) {
            rc = buf_printf(out, "%*s", (int)indent + 2, "");
            if (rc == 0)
                rc = quoted(out, l->items[i].key);
            if (rc == 0)
                rc = buf_append_str(out, ": ");
            if (rc == 0)
                rc = quoted(out, redact && k->kv->secret ? "<redacted>" : l->items[i].value);
            if (rc == 0)
                rc = buf_append_str(out, "\n");
        }
        return rc;
    }
    }
    return 0;
}

int config_write_yaml(const struct svc_config *cfg, bool redact, struct buf *out)
{
    int rc = 0;
    if (cfg == NULL || out == NULL)
        return -EINVAL;
    for (unsigned s = 0; s < config_n_sections && rc == 0; s++) {
        const struct config_section *S = &config_sections[s];
        const char *dot = strrchr(S->name, '.');
        unsigned depth = 0;
        for (const char *p = S->name; *p; p++)
            depth += *p == '.';
        rc = buf_printf(out, "%*s%s:\n", (int)(2 * depth), "", dot != NULL ? dot + 1 : S->name);
        for (unsigned k = 0; k < S->n_keys && rc == 0; k++)
            rc = write_value(cfg, S, &S->keys[k], redact, 2 * (depth + 1), out);
    }
    return rc;
}

/* A key's value as write_value() puts it, on one line: "name: " and the
 * indentation dropped, mapping entries joined as "{k: v, ...}". */
static void one_line(const struct buf *in, size_t name_len, char *out, size_t outlen)
{
    size_t o = 0, i = 0;
    const char *p = (const char *)in->data;
    size_t n = in->len;
    while (i < n && p[i] == ' ')
        i++;
    i += name_len + 1; /* "name:" */
    if (i < n && p[i] == ' ')
        i++;
    bool kv = i < n && p[i] == '\n' && i + 1 < n;
    bool first = true;
    if (kv && o + 1 < outlen)
        out[o++] = '{';
    for (; i < n && o + 4 < outlen; i++) {
        if (p[i] == '\n') {
            while (i + 1 < n && p[i + 1] == ' ')
                i++;
            if (kv && i + 1 < n) {
                if (!first) {
                    out[o++] = ',';
                    out[o++] = ' ';
                }
                first = false;
            }
            continue;
        }
        out[o++] = p[i];
    }
    if (kv && o + 1 < outlen)
        out[o++] = '}';
    out[o] = '\0';
}

int config_diff(const struct svc_config *a, const struct svc_config *b,
                void (*fn)(const char *key, const char *old_value, const char *new_value,
                           void *arg),
                void *arg)
{
    if (a == NULL || b == NULL || fn == NULL)
        return -EINVAL;
    struct buf ba = {0}, bb = {0};
    int n = 0, rc = 0;
    for (unsigned s = 0; s < config_n_sections && rc == 0; s++) {
        const struct config_section *S = &config_sections[s];
        for (unsigned k = 0; k < S->n_keys && rc == 0; k++) {
            const struct config_key *K = &S->keys[k];
            buf_reset(&ba);
            buf_reset(&bb);
            if ((rc = write_value(a, S, K, false, 0, &ba)) < 0 ||
                (rc = write_value(b, S, K, false, 0, &bb)) < 0)
                break;
            if (ba.len == bb.len && memcmp(ba.data, bb.data, ba.len) == 0)
                continue;
            n++;
            buf_reset(&ba);
            buf_reset(&bb);
            if ((rc = write_value(a, S, K, true, 0, &ba)) < 0 ||
                (rc = write_value(b, S, K, true, 0, &bb)) < 0)
                break;
            char key[128], ov[200], nv[200];
            snprintf(key, sizeof(key), "%s.%s", S->name, K->name);
            one_line(&ba, strlen(K->name), ov, sizeof(ov));
            one_line(&bb, strlen(K->name), nv, sizeof(nv));
            fn(key, ov, nv, arg);
        }
    }
    buf_free(&ba);
    buf_free(&bb);
    return rc < 0 ? rc : n;
}
