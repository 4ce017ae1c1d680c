/* SPDX-License-Identifier: Apache-2.0 */
/* Private to lib/config: the shape of the declarative key tables
 * (config_table.c) and the scalar parsers (config_value.c) that the loader
 * (config.c) and the reference writer (config_doc.c) share. */
#ifndef OTLP_CONFIG_INTERNAL_H
#define OTLP_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

#define KIB UINT64_C(1024)
#define MIB (1024 * KIB)
#define GIB (1024 * MIB)

/* How a key's value is written and stored. */
enum config_type {
    CONFIG_T_BOOL,   /* bool; true|false */
    CONFIG_T_U16,    /* uint16_t; decimal integer */
    CONFIG_T_U32,    /* uint32_t; decimal integer */
    CONFIG_T_SIZE32, /* uint32_t; bytes, optional KiB/MiB/GiB suffix */
    CONFIG_T_SIZE64, /* uint64_t; bytes, optional KiB/MiB/GiB suffix */
    CONFIG_T_DOUBLE, /* double */
    CONFIG_T_ENUM,   /* an enum (int-sized); one of key->names, index = value */
    CONFIG_T_STR,    /* char *, strdup'ed; key->names, when set, restricts it */
    CONFIG_T_KV,     /* struct config_kv_list; a YAML mapping string -> string */
};

/* Rules for the entries of a CONFIG_T_KV key. */
struct config_kv_rules {
    char env_sep; /* what '_' in an OTLP__..._<NAME> override name becomes */
    bool icase;   /* entry names compare case-insensitively (HTTP headers) */
    bool secret;  /* values may be credentials: redacted by config_write_yaml */
    /* Extra checks; return NULL when fine or a static reason. May be NULL. */
    const char *(*check_name)(const char *name);
    const char *(*check_value)(const char *value);
    const char *doc; /* the "range" column of the reference */
};

/* One configuration key: everything the loader, validation and docs need. */
struct config_key {
    const char *name; /* key inside its section, = the struct field name */
    enum config_type type;
    size_t offset;            /* of the field inside the section struct */
    const char *def;          /* default, written as it would be in YAML */
    uint64_t min, max;        /* integers and sizes: inclusive range;
                               * strings: allowed length (max 0: unlimited) */
    double dmin, dmax;        /* CONFIG_T_DOUBLE: inclusive range */
    const char *const *names; /* CONFIG_T_ENUM / _STR: allowed values, NULL-terminated */
    /* CONFIG_T_STR: extra syntax check; NULL when fine, else a static reason. */
    const char *(*check)(const char *value);
    const struct config_kv_rules *kv; /* CONFIG_T_KV only */
    bool secret; /* CONFIG_T_STR: a credential, redacted by config_write_yaml */
    const char *values_doc;           /* overrides the generated "range" column */
    const char *help;
};

/* A YAML mapping of keys; nested sections are named "exporter.retry". */
struct config_section {
    const char *name;
    size_t offset; /* of the section struct inside struct svc_config */
    const struct config_key *keys;
    unsigned n_keys;
    const char *help;
};

/* The tables (config_table.c), in document order; a parent precedes its
 * nested sections. */
extern const struct config_section config_sections[];
extern const unsigned config_n_sections;
/* Most keys the loader tracks (origins, duplicates); config_load refuses to
 * run with more, so a test catches a table that outgrew it. */
#define CONFIG_MAX_KEYS 192

/* Index of the first key of section `s` in a flat numbering of all keys;
 * config_key_base(config_n_sections) is the total number of keys. */
unsigned config_key_base(unsigned s);
/* Find a key by full dotted path ("exporter.retry.multiplier"), case-sensitive.
 * Returns the flat index or -1; *sec and *key (may be NULL) get the parts. */
int config_key_find(const char *path, const struct config_section **sec,
                    const struct config_key **key);

/* --- config_value.c --- */

/* Room for a formatted reason. */
#define CONFIG_WHY_LEN 256

/*
 * Parse `s` as a value of `key` and store it at `field` (the key's place in
 * the struct). A string field's old value is freed. Returns 0; -EINVAL with a
 * reason in `why` (the value itself is quoted only for non-string types);
 * -ENOMEM.
 */
int config_value_set(const struct config_key *key, void *field, const char *s,
                     char why[CONFIG_WHY_LEN]);

/*
 * Expand ${VAR}, ${VAR:-default} and $$ in `in` (`len` bytes, may hold NULs,
 * which are refused). On success *out is a malloc'ed NUL-terminated string the
 * caller frees. Returns 0; -EINVAL with a reason in `why`; -ENOMEM.
 */
int config_expand_env(const char *in, size_t len, char **out, char why[CONFIG_WHY_LEN]);

/* config_parse_cores() with a reason: *why is set on -EINVAL / -E2BIG. */
int config_parse_cores_why(const char *s, unsigned *cores, unsigned max, unsigned *n,
                           const char **why);

/* Optimal-string-alignment edit distance, case-insensitive; strings longer
 * than 64 bytes give a large value. */
unsigned config_edit_distance(const char *a, const char *b);
/* Is `cand` close enough to `typo` to suggest it? */
bool config_is_close(const char *typo, const char *cand);

/* Append `s` to `out` for a one-line message: control characters become '?',
 * at most `max` bytes. `out` is NUL-terminated and `outlen` bytes long. */
void config_show(char *out, size_t outlen, const char *s, size_t max);

/* A byte count in the syntax the loader accepts: "8MiB", "1536". */
void config_size_text(char *out, size_t outlen, uint64_t v);

/* Free and zero a key/value list. */
void config_kv_clear(struct config_kv_list *l);

#endif
