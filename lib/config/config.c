/* SPDX-License-Identifier: Apache-2.0 */
/* The configuration loader: built-in defaults, then the YAML file (libyaml
 * document API, every key and value with its line), then OTLP__ environment
 * overrides, then cross-field checks. Runs once at start-up, before any
 * module is created; every problem is collected, not only the first. */
#include "config/config_internal.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <yaml.h>

#include "base/base.h"

extern char **environ;

#define CONFIG_MAX_SECTIONS 32
#define ENV_PREFIX "OTLP__"

/* Where a key's value came from, for messages about it. */
struct origin {
    uint32_t line;   /* line in the file; 0: not from the file */
    const char *env; /* name of the environment variable, or NULL */
    size_t env_len;
};

struct loader {
    const char *file; /* file name used in messages */
    const char *data; /* file contents (for line numbers of reader errors) */
    size_t len;
    struct svc_config *cfg;
    struct buf *errors; /* may be NULL */
    unsigned n_errors;
    int fatal; /* -ENOMEM once an allocation failed */
    yaml_document_t *doc;
    struct origin origin[CONFIG_MAX_KEYS];
    uint32_t section_line[CONFIG_MAX_SECTIONS]; /* where each section was opened */
};

unsigned config_key_base(unsigned s)
{
    unsigned base = 0;
    for (unsigned i = 0; i < s && i < config_n_sections; i++)
        base += config_sections[i].n_keys;
    return base;
}

int config_key_find(const char *path, const struct config_section **sec,
                    const struct config_key **key)
{
    unsigned base = 0;
    for (unsigned s = 0; s < config_n_sections; s++) {
        const struct config_section *S = &config_sections[s];
        size_t sl = strlen(S->name);
        if (strncmp(path, S->name, sl) == 0 && path[sl] == '.') {
            for (unsigned k = 0; k < S->n_keys; k++) {
                if (strcmp(path + sl + 1, S->keys[k].name) == 0) {
                    if (sec != NULL)
                        *sec = S;
                    if (key != NULL)
                        *key = &S->keys[k];
                    return (int)(base + k);
                }
            }
        }
        base += S->n_keys;
    }
    return -1;
}

static void *field_of(struct svc_config *cfg, const struct config_section *s,
                      const struct config_key *k)
{
    return (char *)cfg + s->offset + k->offset;
}

/* --- error lines --- */

/*
 * Append one line "PREFIX: PATH: MESSAGE\n" to the errors. PREFIX is
 * "FILE:LINE" for a value from the file, "environment: VAR" for an override,
 * "FILE" for a default. Control characters become '?' so that a line stays
 * one line whatever the input held.
 */
__attribute__((format(printf, 4, 5))) static void report(struct loader *L, const struct origin *o,
                                                         const char *path, const char *fmt, ...)
{
    char line[1024];
    size_t n = 0;
    int w;
    L->n_errors++;
    if (L->errors == NULL || L->n_errors > CONFIG_MAX_ERRORS + 1)
        return;
    if (L->n_errors == CONFIG_MAX_ERRORS + 1) {
        w = snprintf(line, sizeof(line), "%s: too many errors, stopping after %d", L->file,
                     CONFIG_MAX_ERRORS);
    } else {
        if (o != NULL && o->env != NULL)
            w = snprintf(line, sizeof(line), "environment: %.*s: ", (int)BASE_MIN(o->env_len, 200),
                         o->env);
        else if (o != NULL && o->line != 0)
            w = snprintf(line, sizeof(line), "%s:%" PRIu32 ": ", L->file, o->line);
        else
            w = snprintf(line, sizeof(line), "%s: ", L->file);
        n = w > 0 ? BASE_MIN((size_t)w, sizeof(line) - 1) : 0;
        if (path != NULL) {
            w = snprintf(line + n, sizeof(line) - n, "%s: ", path);
            n += w > 0 ? BASE_MIN((size_t)w, sizeof(line) - 1 - n) : 0;
        }
        va_list ap;
        va_start(ap, fmt);
        w = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        va_end(ap);
    }
    n += w > 0 ? BASE_MIN((size_t)w, sizeof(line) - 1 - n) : 0;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)line[i] < ' ' || line[i] == 0x7f)
            line[i] = '?';
    }
    line[n++] = '\n';
    int rc = buf_append(L->errors, line, n);
    if (rc == -ENOMEM)
        L->fatal = -ENOMEM;
}

static struct origin at_line(uint32_t line)
{
    return (struct origin){.line = line};
}

static void note_rc(struct loader *L, int rc)
{
    if (rc == -ENOMEM)
        L->fatal = -ENOMEM;
}

/* --- YAML nodes --- */

static uint32_t line_of(const yaml_node_t *n)
{
    return (uint32_t)n->start_mark.line + 1;
}

static const char *kind_of(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    default:
        return "a single value";
    }
}

/* A plain empty, ~ or null scalar: "key:" with nothing after it. */
static bool is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    return len == 0 || (len == 1 && v[0] == '~') ||
           (len == 4 &&
            (memcmp(v, "null", 4) == 0 || memcmp(v, "Null", 4) == 0 || memcmp(v, "NULL", 4) == 0));
}

/* The text of a scalar key, or NULL when it is not usable as a name (not a
 * scalar, or holding a NUL byte). */
static const char *key_text(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE)
        return NULL;
    const char *v = (const char *)n->data.scalar.value;
    if (memchr(v, '\0', n->data.scalar.length) != NULL)
        return NULL;
    return v;
}

/* Short description of what a key wants, for "expected ..., got ...". */
static const char *wants(const struct config_key *k)
{
    switch (k->type) {
    case CONFIG_T_BOOL:
        return "true or false";
    case CONFIG_T_U16:
    case CONFIG_T_U32:
        return "an integer";
    case CONFIG_T_SIZE32:
    case CONFIG_T_SIZE64:
        return "a size";
    case CONFIG_T_DOUBLE:
        return "a number";
    case CONFIG_T_ENUM:
        return "one of its names";
    case CONFIG_T_STR:
        return "a string";
    case CONFIG_T_KV:
        return "a mapping of names to strings";
    }
    return "a value";
}

/* --- unknown keys --- */

/* Does section `s` sit directly under `parent` ("" for the top level)? Sets
 * *last to its own name without the parent. */
static bool child_of(const struct config_section *s, const char *parent, const char **last)
{
    size_t pl = strlen(parent);
    if (pl == 0) {
        *last = s->name;
        return strchr(s->name, '.') == NULL;
    }
    if (strncmp(s->name, parent, pl) != 0 || s->name[pl] != '.' ||
        strchr(s->name + pl + 1, '.') != NULL)
        return false;
    *last = s->name + pl + 1;
    return true;
}

static void unknown_key(struct loader *L, int sidx, const char *key, uint32_t line)
{
    const char *parent = sidx < 0 ? "" : config_sections[sidx].name;
    char shown[80], path[160], valid[512];
    const char *best = NULL;
    unsigned best_d = ~0u;
    size_t vn = 0;
    config_show(shown, sizeof(shown), key, 64);
    snprintf(path, sizeof(path), "%s%s%s", parent, *parent ? "." : "", shown);
    valid[0] = '\0';

#define CANDIDATE(name)                                                                            \
    do {                                                                                           \
        unsigned d_ = config_edit_distance(key, (name));                                           \
        if (config_is_close(key, (name)) && d_ < best_d) {                                         \
            best = (name);                                                                         \
            best_d = d_;                                                                           \
        }                                                                                          \
        int w_ = snprintf(valid + vn, sizeof(valid) - vn, "%s%s", vn ? ", " : "", (name));         \
        if (w_ > 0)                                                                                \
            vn = BASE_MIN(vn + (size_t)w_, sizeof(valid) - 1);                                     \
    } while (0)

    if (sidx >= 0) {
        const struct config_section *S = &config_sections[sidx];
        for (unsigned k = 0; k < S->n_keys; k++)
            CANDIDATE(S->keys[k].name);
    }
    for (unsigned s = 0; s < config_n_sections; s++) {
        const char *last;
        if (child_of(&config_sections[s], parent, &last))
            CANDIDATE(last);
    }
#undef CANDIDATE
    struct origin o = at_line(line);
    if (best != NULL) {
        report(L, &o, path, "unknown %s (did you mean %s?)", sidx < 0 ? "section" : "key", best);
        return;
    }
    /* A key put in the wrong section: batch.endpoint -> exporter.endpoint. */
    for (unsigned s = 0; s < config_n_sections; s++) {
        const struct config_section *S = &config_sections[s];
        for (unsigned k = 0; k < S->n_keys; k++) {
            if ((int)s != sidx && strcmp(S->keys[k].name, key) == 0) {
                report(L, &o, path, "unknown %s (did you mean %s.%s?)",
                       sidx < 0 ? "section" : "key", S->name, S->keys[k].name);
                return;
            }
        }
    }
    report(L, &o, path, "unknown %s; valid %s: %s", sidx < 0 ? "section" : "key",
           sidx < 0 ? "sections" : "keys", valid);
}

/* --- maps (exporter.headers, resources.attributes) --- */

static int kv_find(const struct config_kv_list *l, const struct config_kv_rules *r, const char *k)
{
    for (unsigned i = 0; i < l->n; i++) {
        if ((r->icase ? strcasecmp(l->items[i].key, k) : strcmp(l->items[i].key, k)) == 0)
            return (int)i;
    }
    return -1;
}

/* Set entry `name` to `value` (replacing an entry of the same name). Returns
 * 0, -E2BIG when full, -ENOMEM. */
static int kv_upsert(struct config_kv_list *l, const struct config_kv_rules *r, const char *name,
                     const char *value)
{
    int i = kv_find(l, r, name);
    char *v = strdup(value);
    if (v == NULL)
        return -ENOMEM;
    if (i >= 0) {
        free(l->items[i].value);
        l->items[i].value = v;
        return 0;
    }
    if (l->n >= CONFIG_MAX_KV) {
        free(v);
        return -E2BIG;
    }
    char *k = strdup(name);
    if (k == NULL) {
        free(v);
        return -ENOMEM;
    }
    l->items[l->n].key = k;
    l->items[l->n].value = v;
    l->n++;
    return 0;
}

/* A YAML mapping replaces the whole map (the defaults are empty). */
static void load_kv(struct loader *L, const char *path, const struct config_key *key,
                    struct config_kv_list *list, yaml_node_t *node)
{
    const struct config_kv_rules *r = key->kv;
    uint32_t lines[CONFIG_MAX_KV];
    bool full_reported = false;
    config_kv_clear(list);
    if (is_null(node))
        return;
    if (node->type != YAML_MAPPING_NODE) {
        struct origin o = at_line(line_of(node));
        report(L, &o, path, "expected a mapping of names to strings, got %s", kind_of(node));
        return;
    }
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        yaml_node_t *kn = yaml_document_get_node(L->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(L->doc, p->value);
        if (kn == NULL || vn == NULL)
            continue;
        struct origin ko = at_line(line_of(kn)), vo = at_line(line_of(vn));
        const char *name = key_text(kn);
        if (name == NULL) {
            report(L, &ko, path, "entry names must be strings, got %s",
                   kn->type == YAML_SCALAR_NODE ? "a NUL byte" : kind_of(kn));
            continue;
        }
        char shown[80], epath[256];
        config_show(shown, sizeof(shown), name, 64);
        snprintf(epath, sizeof(epath), "%s.%s", path, shown);
        const char *why = r->check_name != NULL ? r->check_name(name) : NULL;
        if (why != NULL) {
            report(L, &ko, epath, "%s", why);
            continue;
        }
        int dup = kv_find(list, r, name);
        if (dup >= 0) {
            report(L, &ko, epath, "duplicate entry (first on line %" PRIu32 ")", lines[dup]);
            continue;
        }
        if (vn->type != YAML_SCALAR_NODE) {
            report(L, &vo, epath, "expected a string, got %s", kind_of(vn));
            continue;
        }
        char *value = NULL;
        char reason[CONFIG_WHY_LEN];
        int rc = config_expand_env((const char *)vn->data.scalar.value, vn->data.scalar.length,
                                   &value, reason);
        if (rc < 0) {
            note_rc(L, rc);
            if (rc == -EINVAL)
                report(L, &vo, epath, "%s", reason);
            continue;
        }
        why = r->check_value != NULL ? r->check_value(value) : NULL;
        if (why != NULL) {
            report(L, &vo, epath, "%s", why);
        } else if (list->n >= CONFIG_MAX_KV) {
            if (!full_reported)
                report(L, &ko, path, "too many entries (at most %d)", CONFIG_MAX_KV);
            full_reported = true;
        } else {
            lines[list->n] = ko.line;
            note_rc(L, kv_upsert(list, r, name, value));
        }
        free(value);
    }
}

/* --- sections and keys --- */

static void load_leaf(struct loader *L, unsigned sidx, unsigned kidx, yaml_node_t *kn,
                      yaml_node_t *vn)
{
    const struct config_section *S = &config_sections[sidx];
    const struct config_key *k = &S->keys[kidx];
    unsigned gi = config_key_base(sidx) + kidx;
    char path[160];
    struct origin ko = at_line(line_of(kn)), vo = at_line(line_of(vn));
    snprintf(path, sizeof(path), "%s.%s", S->name, k->name);
    if (L->origin[gi].line != 0) {
        report(L, &ko, path, "duplicate key (first set on line %" PRIu32 ")", L->origin[gi].line);
        return;
    }
    L->origin[gi] = ko;
    void *field = field_of(L->cfg, S, k);
    if (k->type == CONFIG_T_KV) {
        load_kv(L, path, k, field, vn);
        return;
    }
    if (vn->type != YAML_SCALAR_NODE) {
        report(L, &vo, path, "expected %s, got %s", wants(k), kind_of(vn));
        return;
    }
    char *value = NULL;
    char why[CONFIG_WHY_LEN];
    int rc;
    if (is_null(vn))
        rc = config_expand_env("", 0, &value, why);
    else
        rc = config_expand_env((const char *)vn->data.scalar.value, vn->data.scalar.length, &value,
                               why);
    if (rc == 0)
        rc = config_value_set(k, field, value, why);
    free(value);
    note_rc(L, rc);
    if (rc == -EINVAL)
        report(L, &vo, path, "%s", why);
}

/* Walk a mapping: the top level (sidx -1) or section `sidx`. */
static void load_mapping(struct loader *L, int sidx, yaml_node_t *node)
{
    const char *parent = sidx < 0 ? "" : config_sections[sidx].name;
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        yaml_node_t *kn = yaml_document_get_node(L->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(L->doc, p->value);
        if (kn == NULL || vn == NULL)
            continue;
        struct origin ko = at_line(line_of(kn));
        const char *key = key_text(kn);
        if (key == NULL) {
            report(L, &ko, sidx < 0 ? NULL : parent, "keys must be plain names, got %s",
                   kn->type == YAML_SCALAR_NODE ? "a NUL byte" : kind_of(kn));
            continue;
        }
        bool found = false;
        if (sidx >= 0) {
            const struct config_section *S = &config_sections[sidx];
            for (unsigned k = 0; k < S->n_keys && !found; k++) {
                if (strcmp(S->keys[k].name, key) == 0) {
                    load_leaf(L, (unsigned)sidx, k, kn, vn);
                    found = true;
                }
            }
        }
        for (unsigned s = 0; s < config_n_sections && !found; s++) {
            const char *last;
            if (!child_of(&config_sections[s], parent, &last) || strcmp(last, key) != 0)
                continue;
            found = true;
            const char *name = config_sections[s].name;
            if (L->section_line[s] != 0) {
                report(L, &ko, name, "duplicate section (first on line %" PRIu32 ")",
                       L->section_line[s]);
                break;
            }
            L->section_line[s] = ko.line;
            if (is_null(vn))
                break; /* "batch:" with everything commented out */
            if (vn->type != YAML_MAPPING_NODE) {
                struct origin vo = at_line(line_of(vn));
                report(L, &vo, name, "expected a mapping of keys (indented under %s:), got %s",
                       last, kind_of(vn));
                break;
            }
            load_mapping(L, (int)s, vn);
        }
        if (!found)
            unknown_key(L, sidx, key, ko.line);
    }
}

/* Line of byte `off` in the input (1-based). */
static uint32_t line_at(const struct loader *L, size_t off)
{
    uint32_t line = 1;
    for (size_t i = 0; i < off && i < L->len; i++)
        line += L->data[i] == '\n';
    return line;
}

static void report_yaml_error(struct loader *L, const yaml_parser_t *parser)
{
    if (parser->error == YAML_MEMORY_ERROR) {
        L->fatal = -ENOMEM;
        return;
    }
    struct origin o;
    if (parser->error == YAML_READER_ERROR)
        o = at_line(line_at(L, parser->problem_offset));
    else
        o = at_line((uint32_t)parser->problem_mark.line + 1);
    const char *problem = parser->problem != NULL ? parser->problem : "unknown problem";
    if (parser->context != NULL)
        report(L, &o, NULL, "YAML syntax error: %s (%s on line %" PRIu32 ")", problem,
               parser->context, (uint32_t)parser->context_mark.line + 1);
    else
        report(L, &o, NULL, "YAML syntax error: %s", problem);
}

static void load_yaml(struct loader *L)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        L->fatal = -ENOMEM;
        return;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)L->data, L->len);
    if (!yaml_parser_load(&parser, &doc)) {
        report_yaml_error(L, &parser);
        yaml_parser_delete(&parser);
        return;
    }
    L->doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root != NULL && !is_null(root)) {
        if (root->type != YAML_MAPPING_NODE) {
            struct origin o = at_line(line_of(root));
            report(L, &o, NULL, "expected a mapping of sections (service:, receiver:, ...), got %s",
                   kind_of(root));
        } else {
            load_mapping(L, -1, root);
        }
    }
    L->doc = NULL;
    yaml_document_delete(&doc);
    /* A second document ("---") would be silently ignored; refuse it. */
    if (root != NULL) {
        if (!yaml_parser_load(&parser, &doc)) {
            report_yaml_error(L, &parser);
        } else {
            yaml_node_t *second = yaml_document_get_root_node(&doc);
            if (second != NULL) {
                struct origin o = at_line(line_of(second));
                report(L, &o, NULL, "only one YAML document is allowed");
            }
            yaml_document_delete(&doc);
        }
    }
    yaml_parser_delete(&parser);
}

/* --- environment --- */

/* Compare `s` (n bytes) with the override spelling of a dotted path:
 * "exporter.retry" matches "EXPORTER__RETRY", case-insensitively. Returns the
 * number of bytes of `s` matched, or 0. */
static size_t env_match(const char *s, size_t n, const char *path)
{
    size_t i = 0;
    for (const char *p = path; *p; p++) {
        if (*p == '.') {
            if (i + 2 > n || s[i] != '_' || s[i + 1] != '_')
                return 0;
            i += 2;
        } else {
            if (i >= n || tolower((unsigned char)s[i]) != tolower((unsigned char)*p))
                return 0;
            i++;
        }
    }
    return i;
}

/* OTLP__...__<NAME> -> entry name: lowercase, "__" -> '_', '_' -> sep. */
static void env_entry_name(const char *s, size_t n, char sep, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < outlen; i++) {
        if (s[i] == '_' && i + 1 < n && s[i + 1] == '_') {
            out[o++] = '_';
            i++;
        } else if (s[i] == '_') {
            out[o++] = sep;
        } else {
            out[o++] = (char)tolower((unsigned char)s[i]);
        }
    }
    out[o] = '\0';
}

/* Write the dotted spelling of a path into `out`: "exporter.retry" -> "EXPORTER__RETRY". */
static void env_spelling(const char *path, char *out, size_t outlen)
{
    size_t o = 0;
    for (const char *p = path; *p && o + 3 < outlen; p++) {
        if (*p == '.') {
            out[o++] = '_';
            out[o++] = '_';
        } else {
            out[o++] = (char)toupper((unsigned char)*p);
        }
    }
    out[o] = '\0';
}

static void set_from_env(struct loader *L, unsigned sidx, unsigned kidx, const struct origin *o,
                         const char *value)
{
    const struct config_section *S = &config_sections[sidx];
    const struct config_key *k = &S->keys[kidx];
    char path[160], why[CONFIG_WHY_LEN];
    snprintf(path, sizeof(path), "%s.%s", S->name, k->name);
    int rc = config_value_set(k, field_of(L->cfg, S, k), value, why);
    note_rc(L, rc);
    if (rc == -EINVAL)
        report(L, o, path, "%s", why);
    else if (rc == 0)
        L->origin[config_key_base(sidx) + kidx] = *o;
}

/* One OTLP__SECTION__KEY=value variable. */
static void apply_override(struct loader *L, const char *var)
{
    const char *eq = strchr(var, '=');
    if (eq == NULL)
        return;
    struct origin o = {.env = var, .env_len = (size_t)(eq - var)};
    const char *rest = var + strlen(ENV_PREFIX);
    size_t rn = (size_t)(eq - rest);
    const char *value = eq + 1;
    char path[160], shown[80];

    for (unsigned s = 0; s < config_n_sections; s++) {
        const struct config_section *S = &config_sections[s];
        size_t sl = env_match(rest, rn, S->name);
        if (sl == 0 || sl + 2 > rn || rest[sl] != '_' || rest[sl + 1] != '_')
            continue;
        for (unsigned k = 0; k < S->n_keys; k++) {
            const struct config_key *K = &S->keys[k];
            size_t kl = env_match(rest + sl + 2, rn - sl - 2, K->name);
            if (kl == 0)
                continue;
            size_t end = sl + 2 + kl;
            snprintf(path, sizeof(path), "%s.%s", S->name, K->name);
            if (end == rn && K->type != CONFIG_T_KV) {
                set_from_env(L, s, k, &o, value);
                return;
            }
            if (K->type != CONFIG_T_KV)
                continue; /* a longer name: maybe another key, else unknown */
            if (end == rn || (end + 2 == rn && rest[end] == '_' && rest[end + 1] == '_')) {
                char spelled[160];
                env_spelling(path, spelled, sizeof(spelled));
                report(L, &o, path, "is a map: set one entry with " ENV_PREFIX "%s__<NAME>",
                       spelled);
                return;
            }
            if (end + 2 > rn || rest[end] != '_' || rest[end + 1] != '_')
                continue; /* OTLP__EXPORTER__HEADERSX */
            const struct config_kv_rules *r = K->kv;
            char name[256], epath[256];
            env_entry_name(rest + end + 2, rn - end - 2, r->env_sep, name, sizeof(name));
            config_show(shown, sizeof(shown), name, 64);
            snprintf(epath, sizeof(epath), "%s.%s", path, shown);
            const char *why = r->check_name != NULL ? r->check_name(name) : NULL;
            if (why == NULL && r->check_value != NULL)
                why = r->check_value(value);
            if (why != NULL) {
                report(L, &o, epath, "%s", why);
                return;
            }
            int rc = kv_upsert(field_of(L->cfg, S, K), r, name, value);
            note_rc(L, rc);
            if (rc == -E2BIG)
                report(L, &o, path, "too many entries (at most %d)", CONFIG_MAX_KV);
            return;
        }
    }

    /* Not a key: say what it is closest to, in the user's spelling. */
    char dotted[160];
    size_t d = 0;
    for (size_t i = 0; i < rn && d + 1 < sizeof(dotted); i++) {
        if (rest[i] == '_' && i + 1 < rn && rest[i + 1] == '_') {
            dotted[d++] = '.';
            i++;
        } else {
            dotted[d++] = (char)tolower((unsigned char)rest[i]);
        }
    }
    dotted[d] = '\0';
    config_show(shown, sizeof(shown), dotted, 100);
    for (unsigned s = 0; s < config_n_sections; s++) {
        if (strcmp(config_sections[s].name, dotted) == 0) {
            char spelled[160];
            env_spelling(dotted, spelled, sizeof(spelled));
            report(L, &o, NULL, "%s is a section: set its keys with " ENV_PREFIX "%s__<KEY>", shown,
                   spelled);
            return;
        }
    }
    const char *best = NULL;
    unsigned best_d = ~0u;
    char best_path[160] = "";
    for (unsigned s = 0; s < config_n_sections; s++) {
        const struct config_section *S = &config_sections[s];
        for (unsigned k = 0; k < S->n_keys; k++) {
            snprintf(path, sizeof(path), "%s.%s", S->name, S->keys[k].name);
            unsigned dist = config_edit_distance(dotted, path);
            if (config_is_close(dotted, path) && dist < best_d) {
                best_d = dist;
                memcpy(best_path, path, sizeof(path));
                best = best_path;
            }
        }
    }
    if (best != NULL) {
        char spelled[160];
        env_spelling(best, spelled, sizeof(spelled));
        report(L, &o, NULL, "unknown key %s (did you mean " ENV_PREFIX "%s?)", shown, spelled);
    } else {
        report(L, &o, NULL, "unknown key %s", shown);
    }
}

/*
 * Overrides, lowest precedence first: RUST_LOG (only when it is a plain level
 * name; other values are for other programs), OTLP_LOG_LEVEL, then every
 * OTLP__ variable (so OTLP__SERVICE__LOG_LEVEL wins).
 */
static void apply_env(struct loader *L)
{
    const struct config_section *S;
    const struct config_key *K;
    int gi = config_key_find("service.log_level", &S, &K);
    if (gi >= 0) {
        unsigned sidx = (unsigned)(S - config_sections), kidx = (unsigned)(K - S->keys);
        const char *rust = getenv("RUST_LOG");
        if (rust != NULL) {
            for (unsigned i = 0; K->names[i] != NULL; i++) {
                if (strcasecmp(rust, K->names[i]) == 0) {
                    struct origin o = {.env = "RUST_LOG", .env_len = 8};
                    set_from_env(L, sidx, kidx, &o, rust);
                    break;
                }
            }
        }
        const char *lvl = getenv("OTLP_LOG_LEVEL");
        if (lvl != NULL) {
            struct origin o = {.env = "OTLP_LOG_LEVEL", .env_len = 14};
            set_from_env(L, sidx, kidx, &o, lvl);
        }
    }
    for (char **e = environ; e != NULL && *e != NULL; e++) {
        if (strncmp(*e, ENV_PREFIX, strlen(ENV_PREFIX)) == 0)
            apply_override(L, *e);
    }
}

/* --- cross-field checks --- */

/* The origin to blame for a rule on keys a and b: the one the user set. */
static const struct origin *blame(const struct loader *L, const char *a, const char *b)
{
    static const struct origin none;
    int ia = config_key_find(a, NULL, NULL);
    int ib = b != NULL ? config_key_find(b, NULL, NULL) : -1;
    if (ia >= 0 && (L->origin[ia].line != 0 || L->origin[ia].env != NULL))
        return &L->origin[ia];
    if (ib >= 0 && (L->origin[ib].line != 0 || L->origin[ib].env != NULL))
        return &L->origin[ib];
    return &none;
}

static bool wildcard(const char *host)
{
    return strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0 || strcmp(host, "[::]") == 0 ||
           *host == '\0';
}

/* An endpoint list (one URL or comma-separated URLs) names a plain http://
 * URL. */
static bool names_plain_http(const char *urls)
{
    for (const char *u = urls; u != NULL && *u != '\0';) {
        while (*u == ' ' || *u == ',')
            u++;
        if (strncasecmp(u, "http://", 7) == 0)
            return true;
        u = strchr(u, ',');
    }
    return false;
}

static void validate(struct loader *L)
{
    const struct svc_config *c = L->cfg;
    if (c->batch.max_queue_size < c->batch.max_export_batch_size)
        report(L, blame(L, "batch.max_queue_size", "batch.max_export_batch_size"),
               "batch.max_queue_size",
               "%" PRIu32 " is smaller than batch.max_export_batch_size (%" PRIu32
               "); the queue must hold at least one full batch",
               c->batch.max_queue_size, c->batch.max_export_batch_size);
    if (c->receiver.max_decompressed_bytes < c->receiver.max_body_bytes)
        report(L, blame(L, "receiver.max_decompressed_bytes", "receiver.max_body_bytes"),
               "receiver.max_decompressed_bytes",
               "%" PRIu64 " is smaller than receiver.max_body_bytes (%" PRIu64
               "); an uncompressed body that passes the one would fail the other",
               c->receiver.max_decompressed_bytes, c->receiver.max_body_bytes);
    const struct memory_limiter_config *ml = &c->memory_limiter;
    if (ml->limit_mib != 0 && ml->spike_limit_mib >= ml->limit_mib)
        report(L, blame(L, "memory_limiter.spike_limit_mib", "memory_limiter.limit_mib"),
               "memory_limiter.spike_limit_mib",
               "%" PRIu32 " is not below memory_limiter.limit_mib (%" PRIu32
               "); the soft limit would be zero",
               ml->spike_limit_mib, ml->limit_mib);
    const struct retry_config *r = &c->exporter.retry;
    if (r->initial_interval_ms > r->max_interval_ms)
        report(L, blame(L, "exporter.retry.initial_interval_ms", "exporter.retry.max_interval_ms"),
               "exporter.retry.initial_interval_ms",
               "%" PRIu32 " is above exporter.retry.max_interval_ms (%" PRIu32 ")",
               r->initial_interval_ms, r->max_interval_ms);
    if (c->exporter.protocol == EXPORTER_OTLP_HTTP &&
        (c->exporter.endpoint == NULL || *c->exporter.endpoint == '\0'))
        report(L, blame(L, "exporter.endpoint", "exporter.protocol"), "exporter.endpoint",
               "required when exporter.protocol is otlp_http");
    const struct lb_exporter_config *lb = &c->exporter.loadbalancing;
    if (c->exporter.protocol == EXPORTER_LOADBALANCING && lb->resolver == LB_RESOLVER_STATIC &&
        (lb->endpoints == NULL || *lb->endpoints == '\0'))
        report(L, blame(L, "exporter.loadbalancing.endpoints", "exporter.protocol"),
               "exporter.loadbalancing.endpoints",
               "required when exporter.protocol is loadbalancing with the static resolver");
    if (c->exporter.protocol == EXPORTER_LOADBALANCING && lb->resolver == LB_RESOLVER_DNS &&
        (lb->hostname == NULL || *lb->hostname == '\0'))
        report(L, blame(L, "exporter.loadbalancing.hostname", "exporter.loadbalancing.resolver"),
               "exporter.loadbalancing.hostname", "required with the dns resolver");
    const struct tls_client_config *t = &c->exporter.tls;
    /* Telemetry leaves the host unencrypted only when the operator said so. */
    if (!t->insecure) {
        enum exporter_protocol ep = c->exporter.protocol;
        if ((ep == EXPORTER_OTLP_HTTP || ep == EXPORTER_GRPC) &&
            names_plain_http(c->exporter.endpoint))
            report(L, blame(L, "exporter.endpoint", "exporter.tls.insecure"), "exporter.endpoint",
                   "a plain http:// endpoint sends telemetry unencrypted; use https:// or set "
                   "exporter.tls.insecure: true");
        if (ep == EXPORTER_LOADBALANCING &&
            (lb->resolver == LB_RESOLVER_STATIC ? names_plain_http(lb->endpoints)
                                                : lb->scheme == LB_SCHEME_HTTP))
            report(L,
                   blame(L,
                         lb->resolver == LB_RESOLVER_STATIC ? "exporter.loadbalancing.endpoints"
                                                            : "exporter.loadbalancing.scheme",
                         lb->resolver == LB_RESOLVER_STATIC ? "exporter.tls.insecure"
                                                            : "exporter.loadbalancing.resolver"),
                   lb->resolver == LB_RESOLVER_STATIC ? "exporter.loadbalancing.endpoints"
                                                      : "exporter.loadbalancing.scheme",
                   "plain http:// endpoints send telemetry unencrypted; use https or set "
                   "exporter.tls.insecure: true");
    }
    bool has_cert = t->cert_file != NULL && *t->cert_file != '\0';
    bool has_key = t->key_file != NULL && *t->key_file != '\0';
    if (has_cert != has_key)
        report(L, blame(L, has_cert ? "exporter.tls.cert_file" : "exporter.tls.key_file", NULL),
               has_cert ? "exporter.tls.cert_file" : "exporter.tls.key_file",
               "exporter.tls.cert_file and exporter.tls.key_file must be set together");
    const struct receiver_tls_config *rt = &c->receiver.tls;
    if (rt->enabled) {
        static const char *const need[] = {"receiver.tls.cert_file", "receiver.tls.key_file"};
        const char *const have[] = {rt->cert_file, rt->key_file};
        for (unsigned i = 0; i < ARRAY_SIZE(need); i++)
            if (have[i] == NULL || *have[i] == '\0')
                report(L, blame(L, need[i], "receiver.tls.enabled"), need[i],
                       "required when receiver.tls.enabled is true");
        if (rt->client_auth != TLS_CLIENT_AUTH_NONE &&
            (rt->ca_file == NULL || *rt->ca_file == '\0'))
            report(L, blame(L, "receiver.tls.ca_file", "receiver.tls.client_auth"),
                   "receiver.tls.ca_file",
                   "required when receiver.tls.client_auth is request or require (the CAs "
                   "client certificates are verified against)");
    }

    if (c->spool.segment_bytes > c->spool.max_bytes)
        report(L, blame(L, "spool.segment_bytes", "spool.max_bytes"), "spool.segment_bytes",
               "%" PRIu64 " is larger than spool.max_bytes (%" PRIu64 ")", c->spool.segment_bytes,
               c->spool.max_bytes);

    /* DPDK mode: the port needs an address; the gateway must be reachable. */
    const struct dpdk_config *d = &c->dataplane.dpdk;
    uint32_t ip = 0, mask = 0, gw = 0;
    bool have_ip = d->ip != NULL && config_parse_ipv4(d->ip, &ip) == 0;
    if (c->dataplane.mode == DATAPLANE_DPDK && !have_ip)
        report(L, blame(L, "dataplane.dpdk.ip", "dataplane.mode"), "dataplane.dpdk.ip",
               "required when dataplane.mode is dpdk");
    if (have_ip && d->netmask != NULL && config_parse_ipv4(d->netmask, &mask) == 0 &&
        d->gateway != NULL && config_parse_ipv4(d->gateway, &gw) == 0) {
        if (gw == ip)
            report(L, blame(L, "dataplane.dpdk.gateway", "dataplane.dpdk.ip"),
                   "dataplane.dpdk.gateway", "%s is our own address (dataplane.dpdk.ip)",
                   d->gateway);
        else if ((gw & mask) != (ip & mask))
            report(L, blame(L, "dataplane.dpdk.gateway", "dataplane.dpdk.ip"),
                   "dataplane.dpdk.gateway", "%s is not on the subnet of %s/%s", d->gateway, d->ip,
                   d->netmask);
    }

    /* Two listeners on one port fail at bind(); say so now. */
    struct {
        const char *key, *host;
        unsigned port;
    } ls[] = {
        {"receiver.http_port", c->receiver.host, c->receiver.http_port},
        {"receiver.grpc_port", c->receiver.host, c->receiver.grpc_port},
        {"control.port", c->control.host, c->control.port},
    };
    for (unsigned i = 0; i < ARRAY_SIZE(ls); i++) {
        for (unsigned j = i + 1; j < ARRAY_SIZE(ls); j++) {
            if (ls[i].port == 0 || ls[i].port != ls[j].port || ls[i].host == NULL ||
                ls[j].host == NULL)
                continue;
            if (strcmp(ls[i].host, ls[j].host) != 0 && !wildcard(ls[i].host) &&
                !wildcard(ls[j].host))
                continue;
            report(L, blame(L, ls[j].key, ls[i].key), ls[j].key, "port %u is also used by %s",
                   ls[j].port, ls[i].key);
        }
    }
}

/* Values that depend on others once everything is known. */
static int derive(struct svc_config *c)
{
    if (c->exporter.file.path != NULL && *c->exporter.file.path == '\0' &&
        c->service.data_dir != NULL) {
        char *p;
        if (asprintf(&p, "%s/export", c->service.data_dir) < 0)
            return -ENOMEM;
        free(c->exporter.file.path);
        c->exporter.file.path = p;
    }
    return 0;
}

/* --- entry points --- */

/* Defaults from the tables. Returns 0, -ENOMEM; -EINVAL (a table bug) is
 * reported when `L` is given. */
static int set_defaults(struct svc_config *cfg, struct loader *L)
{
    int ret = 0;
    memset(cfg, 0, sizeof(*cfg));
    for (unsigned s = 0; s < config_n_sections; s++) {
        const struct config_section *S = &config_sections[s];
        for (unsigned k = 0; k < S->n_keys; k++) {
            const struct config_key *K = &S->keys[k];
            char why[CONFIG_WHY_LEN];
            if (K->type == CONFIG_T_KV)
                continue;
            int rc = config_value_set(K, field_of(cfg, S, K), K->def, why);
            if (rc == -ENOMEM)
                ret = rc;
            if (rc == -EINVAL && L != NULL)
                report(L, NULL, K->name, "internal error: bad built-in default: %s", why);
        }
    }
    return ret;
}

void config_defaults(struct svc_config *cfg)
{
    if (cfg != NULL)
        (void)set_defaults(cfg, NULL);
}

void config_free(struct svc_config *cfg)
{
    if (cfg == NULL)
        return;
    for (unsigned s = 0; s < config_n_sections; s++) {
        const struct config_section *S = &config_sections[s];
        for (unsigned k = 0; k < S->n_keys; k++) {
            const struct config_key *K = &S->keys[k];
            void *f = field_of(cfg, S, K);
            if (K->type == CONFIG_T_STR)
                free(*(char **)f);
            else if (K->type == CONFIG_T_KV)
                config_kv_clear(f);
        }
    }
    memset(cfg, 0, sizeof(*cfg));
}

int config_load_buffer(const char *name, const char *data, size_t len, struct svc_config *cfg,
                       struct buf *errors)
{
    struct loader L;
    if (cfg == NULL)
        return -EINVAL;
    memset(&L, 0, sizeof(L));
    L.file = name != NULL ? name : "config";
    L.data = data;
    L.len = data != NULL ? len : 0;
    L.cfg = cfg;
    L.errors = errors;
    if (config_key_base(config_n_sections) > CONFIG_MAX_KEYS ||
        config_n_sections > CONFIG_MAX_SECTIONS) {
        memset(cfg, 0, sizeof(*cfg));
        report(&L, NULL, NULL, "internal error: too many configuration keys");
        return -EINVAL;
    }
    int rc = set_defaults(cfg, &L);
    if (rc == 0 && data != NULL)
        load_yaml(&L);
    if (rc == 0 && L.fatal == 0)
        apply_env(&L);
    if (rc == 0 && L.fatal == 0)
        validate(&L);
    if (rc == 0 && L.fatal == 0)
        rc = derive(cfg);
    if (rc == 0 && L.fatal != 0)
        rc = L.fatal;
    if (rc == 0 && L.n_errors > 0)
        rc = -EINVAL;
    if (rc < 0)
        config_free(cfg);
    return rc;
}

/* Read all of `path` (a pipe or /dev/stdin too) up to CONFIG_MAX_FILE_BYTES. */
static int read_file(const char *path, char **data, size_t *len, struct buf *errors)
{
    struct buf b;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int err = 0;
    *data = NULL;
    *len = 0;
    if (fd < 0) {
        err = errno;
        goto fail;
    }
    buf_init(&b, 0, CONFIG_MAX_FILE_BYTES + 1);
    for (;;) {
        int rc = buf_reserve(&b, 4096);
        if (rc == -EMSGSIZE)
            rc = buf_reserve(&b, 1);
        if (rc < 0) {
            err = rc == -EMSGSIZE ? EFBIG : ENOMEM;
            break;
        }
        ssize_t n = read(fd, b.data + b.len, b.cap - b.len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            err = errno;
            break;
        }
        if (n == 0)
            break;
        b.len += (size_t)n;
    }
    close(fd);
    if (err != 0) {
        buf_free(&b);
        goto fail;
    }
    *data = (char *)b.data;
    *len = b.len;
    return 0;
fail:
    if (errors != NULL) {
        char shown[200];
        config_show(shown, sizeof(shown), path, 160);
        if (err == EFBIG)
            buf_printf(errors, "%s: larger than %u bytes; not a configuration file\n", shown,
                       (unsigned)CONFIG_MAX_FILE_BYTES);
        else
            buf_printf(errors, "%s: cannot read: %s\n", shown, strerror(err));
    }
    return -err;
}

int config_load(const char *path, struct svc_config *cfg, struct buf *errors)
{
    if (cfg == NULL)
        return -EINVAL;
    if (path == NULL)
        return config_load_buffer("defaults", NULL, 0, cfg, errors);
    char *data;
    size_t len;
    int rc = read_file(path, &data, &len, errors);
    if (rc < 0) {
        memset(cfg, 0, sizeof(*cfg));
        return rc;
    }
    rc = config_load_buffer(path, data != NULL ? data : "", len, cfg, errors);
    free(data);
    return rc;
}
