/* SPDX-License-Identifier: Apache-2.0 */
/* The configuration keys: one declarative table per section (name, type,
 * default, range, place in the struct, help). Loading, validation, the
 * Markdown reference and docs/configuration.md all come from these tables. */
#include "config/config_internal.h"

#include <string.h>

#include "base/base.h"

/*
 * offsetof() that only compiles when the field has type T, so a table entry
 * cannot disagree with the struct (the _Generic has no other association).
 */
#define CK_OFF(S, f, T) _Generic((((struct S *)0)->f), T : offsetof(struct S, f))
/* Enums are stored through an int; refuse to build where they differ. */
#define CK_OFF_ENUM(S, f, E) (CK_OFF(S, f, E) + 0 * sizeof(char[sizeof(E) == sizeof(int) ? 1 : -1]))

#define KEY_BOOL(S, f, d, h)                                                                       \
    {                                                                                              \
        .name = #f, .type = CONFIG_T_BOOL, .offset = CK_OFF(S, f, bool), .def = d, .help = h       \
    }
#define KEY_U16(S, f, d, lo, hi, h)                                                                \
    {                                                                                              \
        .name = #f, .type = CONFIG_T_U16, .offset = CK_OFF(S, f, uint16_t), .def = d, .min = lo,   \
        .max = hi, .help = h                                                                       \
    }
#define KEY_U32(S, f, d, lo, hi, h)                                                                \
    {                                                                                              \
        .name = #f, .type = CONFIG_T_U32, .offset = CK_OFF(S, f, uint32_t), .def = d, .min = lo,   \
        .max = hi, .help = h                                                                       \
    }
#define KEY_SIZE32(S, f, d, lo, hi, h)                                                             \
    {                                                                                              \
        .name = #f, .type = CONFIG_T_SIZE32, .offset = CK_OFF(S, f, uint32_t), .def = d,           \
        .min = lo, .max = hi, .help = h                                                            \
    }
#define KEY_SIZE64(S, f, d, lo, hi, h)                                                             \
    {                                                                                              \
        .name = #f, .type = CONFIG_T_SIZE64, .offset = CK_OFF(S, f, uint64_t), .def = d,           \
        .min = lo, .max = hi, .help = h                                                            \
    }
#define KEY_DOUBLE(S, f, d, lo, hi, h)                                                             \
    {                                                                                              \
        .name = #f, .type = CONFIG_T_DOUBLE, .offset = CK_OFF(S, f, double), .def = d, .dmin = lo, \
        .dmax = hi, .help = h                                                                      \
    }
#define KEY_ENUM(S, f, E, n, d, h)                                                                 \
    {                                                                                              \
        .name = #f, .type = CONFIG_T_ENUM, .offset = CK_OFF_ENUM(S, f, E), .def = d, .names = n,   \
        .help = h                                                                                  \
    }
#define KEY_STR(S, f, d, minlen, chk, vdoc, h)                                                     \
    {                                                                                              \
        .name = #f, .type = CONFIG_T_STR, .offset = CK_OFF(S, f, char *), .def = d, .min = minlen, \
        .check = chk, .values_doc = vdoc, .help = h                                                \
    }
#define KEY_STR_ONEOF(S, f, n, d, h)                                                               \
    {                                                                                              \
        .name = #f, .type = CONFIG_T_STR, .offset = CK_OFF(S, f, char *), .def = d, .names = n,    \
        .help = h                                                                                  \
    }
#define KEY_KV(S, f, rules, h)                                                                     \
    {                                                                                              \
        .name = #f, .type = CONFIG_T_KV, .offset = CK_OFF(S, f, struct config_kv_list),            \
        .def = "{}", .kv = rules, .help = h                                                        \
    }

#define HOUR_MS 3600000u
#define DAY_MS (24u * HOUR_MS)

/* Value names. Index = enum value; to add an exporter (grpc, kafka, nats,
 * loadbalancing) add its enumerator in config.h and its name here. */
static const char *const log_level_names[] = {"debug", "info", "warn", "error", NULL};
static const char *const dataplane_mode_names[] = {
    [DATAPLANE_SOCKET] = "socket",
    [DATAPLANE_DPDK] = "dpdk",
    NULL,
};
static const char *const exporter_protocol_names[] = {
    [EXPORTER_FILE] = "file",
    [EXPORTER_OTLP_HTTP] = "otlp_http",
    [EXPORTER_DISCARD] = "discard",
    [EXPORTER_NATS] = "nats",
    [EXPORTER_GRPC] = "grpc",
    [EXPORTER_KAFKA] = "kafka",
    [EXPORTER_LOADBALANCING] = "loadbalancing",
    NULL,
};
static const char *const compression_names[] = {
    [COMPRESSION_NONE] = "none",
    [COMPRESSION_GZIP] = "gzip",
    NULL,
};
static const char *const spool_fsync_names[] = {
    [SPOOL_FSYNC_ALWAYS] = "always",
    [SPOOL_FSYNC_INTERVAL] = "interval",
    [SPOOL_FSYNC_NEVER] = "never",
    NULL,
};
static const char *const spool_durability_names[] = {
    [SPOOL_DURABILITY_MEMORY] = "memory",
    [SPOOL_DURABILITY_SPOOL] = "spool",
    NULL,
};

static const char *const tls_client_auth_names[] = {
    [TLS_CLIENT_AUTH_NONE] = "none",
    [TLS_CLIENT_AUTH_REQUEST] = "request",
    [TLS_CLIENT_AUTH_REQUIRE] = "require",
    NULL,
};
static const char *const tls_min_version_names[] = {
    [TLS_MIN_VERSION_1_2] = "1.2",
    [TLS_MIN_VERSION_1_3] = "1.3",
    NULL,
};

static const char *const kafka_encoding_names[] = {
    [KAFKA_ENCODING_OTLP_PROTO] = "otlp_proto",
    [KAFKA_ENCODING_OTLP_JSON] = "otlp_json",
    NULL,
};
static const char *const kafka_compression_names[] = {
    [KAFKA_COMPRESSION_NONE] = "none",     [KAFKA_COMPRESSION_GZIP] = "gzip",
    [KAFKA_COMPRESSION_SNAPPY] = "snappy", [KAFKA_COMPRESSION_LZ4] = "lz4",
    [KAFKA_COMPRESSION_ZSTD] = "zstd",     NULL,
};

static const char *const lb_protocol_names[] = {
    [LB_PROTOCOL_OTLP_HTTP] = "otlp_http",
    [LB_PROTOCOL_GRPC] = "grpc",
    NULL,
};
static const char *const lb_resolver_names[] = {
    [LB_RESOLVER_STATIC] = "static",
    [LB_RESOLVER_DNS] = "dns",
    NULL,
};
static const char *const lb_scheme_names[] = {
    [LB_SCHEME_HTTP] = "http",
    [LB_SCHEME_HTTPS] = "https",
    NULL,
};
static const char *const lb_routing_key_names[] = {
    [LB_ROUTING_TRACE_ID] = "traceID",
    [LB_ROUTING_SERVICE] = "service",
    NULL,
};

static const char *name_at(const char *const *names, size_t n, unsigned v)
{
    return v < n - 1 ? names[v] : "unknown";
}

const char *config_dataplane_mode_name(enum dataplane_mode m)
{
    return name_at(dataplane_mode_names, ARRAY_SIZE(dataplane_mode_names), (unsigned)m);
}

const char *config_exporter_protocol_name(enum exporter_protocol p)
{
    return name_at(exporter_protocol_names, ARRAY_SIZE(exporter_protocol_names), (unsigned)p);
}

const char *config_compression_name(enum exporter_compression c)
{
    return name_at(compression_names, ARRAY_SIZE(compression_names), (unsigned)c);
}

const char *config_spool_fsync_name(enum spool_fsync f)
{
    return name_at(spool_fsync_names, ARRAY_SIZE(spool_fsync_names), (unsigned)f);
}

const char *config_spool_durability_name(enum spool_durability d)
{
    return name_at(spool_durability_names, ARRAY_SIZE(spool_durability_names), (unsigned)d);
}

/* --- string checks (return NULL or a static reason) --- */

static const char *check_cores(const char *s)
{
    const char *why = NULL;
    unsigned n;
    if (config_parse_cores_why(s, NULL, CONFIG_MAX_CORES, &n, &why) < 0)
        return why;
    return NULL;
}

static const char *check_eal_args(const char *s)
{
    const char *why = NULL;
    unsigned n;
    if (config_split_args(s, NULL, 0, NULL, 256, &n, &why) < 0)
        return why;
    return NULL;
}

/* A dotted IPv4 address, or empty (ip is then required by a cross-field
 * rule; an empty gateway means none). */
static const char *check_ipv4_or_empty(const char *s)
{
    uint32_t ip;
    if (*s == '\0')
        return NULL;
    return config_parse_ipv4(s, &ip) < 0 ? "must be a dotted IPv4 address like 198.18.0.2" : NULL;
}

static const char *check_netmask(const char *s)
{
    uint32_t m;
    if (config_parse_ipv4(s, &m) < 0)
        return "must be a dotted IPv4 netmask like 255.255.255.0";
    if (m == 0 || (~m & (~m + 1)) != 0)
        return "must be a contiguous netmask (ones, then zeros), not 0.0.0.0";
    return NULL;
}

/* The exporter's base URL: empty (unused by the file exporter) or an
 * http(s) URL with a host and no whitespace. */
static const char *check_endpoint(const char *s)
{
    if (*s == '\0')
        return NULL;
    const char *host;
    if (strncmp(s, "http://", 7) == 0)
        host = s + 7;
    else if (strncmp(s, "https://", 8) == 0)
        host = s + 8;
    else
        return "must start with http:// or https://";
    if (*host == '\0' || *host == '/')
        return "has no host after the scheme";
    for (const char *p = s; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return "must not contain spaces or control characters";
    }
    return NULL;
}

/* exporter.loadbalancing.endpoints: empty, or comma-separated endpoints as
 * check_endpoint() wants them (blanks around the commas allowed), without
 * '"' or '\\' (they become metric label values). */
static const char *check_lb_endpoints(const char *s)
{
    char one[512];
    while (*s != '\0') {
        while (*s == ' ')
            s++;
        size_t n = strcspn(s, ",");
        while (n > 0 && s[n - 1] == ' ')
            n--;
        if (n == 0 || n >= sizeof(one))
            return n == 0 ? "has an empty entry" : "has an entry longer than 511 characters";
        memcpy(one, s, n);
        one[n] = '\0';
        const char *why = check_endpoint(one);
        if (why != NULL)
            return why;
        if (strpbrk(one, "\"\\") != NULL)
            return "must not contain '\"' or '\\'";
        s += strcspn(s, ",");
        if (*s == ',')
            s++;
    }
    return NULL;
}

/* A DNS name (letters, digits, '-', '.') or empty. */
static const char *check_hostname(const char *s)
{
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!alnum && c != '-' && c != '.' && c != '_')
            return "must be a host name (letters, digits, '-', '_', '.')";
    }
    return strlen(s) > 253 ? "is longer than 253 characters" : NULL;
}

/* RFC 9110 5.1: field-name = token; 5.6.2: tchar. */
static const char *check_header_name(const char *s)
{
    if (*s == '\0')
        return "header name must not be empty";
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!alnum && strchr("!#$%&'*+-.^_`|~", c) == NULL)
            return "header name must be an HTTP token (letters, digits, !#$%&'*+-.^_`|~)";
    }
    return NULL;
}

/* RFC 9110 5.5: no CR, LF or NUL in a field value (no header injection). */
static const char *check_header_value(const char *s)
{
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if ((c < ' ' && c != '\t') || c == 0x7f)
            return "header value must not contain control characters (CR, LF, ...)";
    }
    return NULL;
}

static const char *check_attr_name(const char *s)
{
    return *s == '\0' ? "attribute name must not be empty" : NULL;
}

/* NATS subject to publish to: tokens separated by '.', none empty, no
 * wildcards, no blanks (NATS protocol: subjects are case-sensitive tokens). */
static const char *check_nats_subject(const char *s)
{
    if (*s == '\0')
        return NULL; /* empty: derived from subject_prefix */
    if (*s == '.' || s[strlen(s) - 1] == '.' || strstr(s, "..") != NULL)
        return "must be tokens separated by single dots (no empty token)";
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= ' ' || c == 0x7f)
            return "must not contain spaces or control characters";
        if (c == '*' || c == '>')
            return "must not contain the wildcards * or >";
    }
    return NULL;
}

/* JetStream stream names: no blanks, '.', '*', '>', path separators. */
static const char *check_nats_stream(const char *s)
{
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= ' ' || c == 0x7f || strchr(".*>/\\", c) != NULL)
            return "must not contain spaces, control characters or . * > / \\";
    }
    return NULL;
}

/* Comma-separated NATS URLs: each nats://host[:port] or tls://host[:port],
 * credentials (user:password@, token@) allowed; blanks around commas ok. */
static const char *check_nats_servers(const char *s)
{
    const char *p = s;
    unsigned n = 0;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        size_t len = strcspn(p, ",");
        size_t end = len;
        while (end > 0 && (p[end - 1] == ' ' || p[end - 1] == '\t'))
            end--;
        const char *host;
        if (end > 7 && strncmp(p, "nats://", 7) == 0)
            host = p + 7;
        else if (end > 6 && strncmp(p, "tls://", 6) == 0)
            host = p + 6;
        else
            return "each server must be a nats:// or tls:// URL with a host";
        if (*host == '/' || *host == ':' || *host == ',')
            return "each server must be a nats:// or tls:// URL with a host";
        for (size_t i = 0; i < end; i++) {
            unsigned char c = (unsigned char)p[i];
            if (c <= ' ' || c == 0x7f)
                return "a server URL must not contain spaces or control characters";
        }
        n++;
        if (p[len] == '\0')
            break;
        p += len + 1;
    }
    return n > 0 ? NULL : "needs at least one server";
}

/* RFC 6750 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+"
 * / "/" ) *"=". A comma-separated list of them (blanks around commas are
 * fine), or nothing. The reasons never quote the value: it is a credential. */
static bool b64token_char(char ch)
{
    unsigned char c = (unsigned char)ch;
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != '\0' && strchr("-._~+/", c) != NULL);
}

static const char *check_bearer_tokens(const char *s)
{
    static const char bad[] = "each token must be RFC 6750 b64token characters (letters, "
                              "digits, -._~+/ and trailing =), tokens separated by commas";
    const char *p = s + strspn(s, " \t");
    if (*p == '\0')
        return NULL;
    for (;;) {
        p += strspn(p, " \t");
        size_t n = 0;
        while (b64token_char(p[n]))
            n++;
        if (n == 0)
            return *p == ',' || *p == '\0' ? "empty token in the list" : bad;
        p += n + strspn(p + n, "=");
        p += strspn(p, " \t");
        if (*p == '\0')
            return NULL;
        if (*p != ',')
            return bad;
        p++;
    }
}

static const struct config_kv_rules headers_rules = {
    .env_sep = '-',
    .icase = true,
    .secret = true,
    .check_name = check_header_name,
    .check_value = check_header_value,
    .doc = "up to 64 entries; names are HTTP tokens, case-insensitive",
};

static const struct config_kv_rules attributes_rules = {
    .env_sep = '.',
    .icase = false,
    .secret = false,
    .check_name = check_attr_name,
    .check_value = NULL,
    .doc = "up to 64 entries",
};

/* Kafka bootstrap servers: comma-separated host:port, no blanks. */
static const char *check_kafka_brokers(const char *s)
{
    const char *p = s;
    for (;;) {
        size_t n = strcspn(p, ",");
        const char *colon = NULL;
        for (const char *q = p; q < p + n; q++) {
            if ((unsigned char)*q <= ' ' || *q == 0x7f)
                return "must not contain blanks or control characters";
            if (*q == ':')
                colon = q;
        }
        if (colon == NULL || colon == p || colon + 1 == p + n)
            return "each broker must be host:port";
        for (const char *q = colon + 1; q < p + n; q++) {
            if (*q < '0' || *q > '9')
                return "each broker must be host:port";
        }
        if (p[n] == '\0')
            return NULL;
        p += n + 1;
    }
}

/* Kafka topic names: 1..249 of [a-zA-Z0-9._-], not "." or "..". */
static const char *check_kafka_topic(const char *s)
{
    size_t n = strlen(s);
    if (n > 249)
        return "a Kafka topic name has at most 249 characters";
    if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return "a Kafka topic name cannot be . or ..";
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return "a Kafka topic name holds only letters, digits, '.', '_' and '-'";
    }
    return NULL;
}

/* librdkafka property names are lower-case words joined by '.' and '_'. */
static const char *check_kafka_property(const char *s)
{
    if (*s == '\0')
        return "property name must not be empty";
    for (const char *p = s; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_'))
            return "property names are librdkafka's (lower case, digits, '.', '_')";
    }
    return NULL;
}

static const char *check_kafka_property_value(const char *s)
{
    for (const char *p = s; *p; p++) {
        if ((unsigned char)*p < ' ' || *p == 0x7f)
            return "property value must not contain control characters";
    }
    return NULL;
}

static const struct config_kv_rules kafka_properties_rules = {
    .env_sep = '.',
    .icase = false,
    .secret = true, /* sasl.password, ssl.key.password */
    .check_name = check_kafka_property,
    .check_value = check_kafka_property_value,
    .doc = "up to 64 librdkafka properties",
};

/* --- the tables --- */

static const struct config_key service_keys[] = {
    KEY_STR(service_config, name, "otlp-service", 1, NULL, NULL,
            "Name of this instance, reported in logs."),
    KEY_STR_ONEOF(service_config, log_level, log_level_names, "info",
                  "Least severe log level written. Also set by OTLP_LOG_LEVEL or a plain "
                  "level in RUST_LOG (see Environment overrides)."),
    KEY_STR(service_config, data_dir, "/var/lib/otlp-service", 1, NULL, NULL,
            "Directory for data the service writes (file exporter output, spool)."),
    KEY_U32(service_config, shutdown_timeout_ms, "10000", 0, HOUR_MS,
            "On SIGTERM, time allowed to flush queued data before exiting (ms)."),
};

static const struct config_key receiver_keys[] = {
    KEY_STR(receiver_config, host, "0.0.0.0", 1, NULL, NULL, "Address the OTLP listeners bind to."),
    KEY_U16(receiver_config, http_port, "4318", 1, 65535, "OTLP/HTTP port."),
    KEY_U16(receiver_config, grpc_port, "4317", 0, 65535, "OTLP/gRPC port; 0 disables gRPC."),
    KEY_SIZE64(receiver_config, grpc_max_recv_msg_bytes, "4MiB", 1 * KIB, 1 * GIB,
               "Largest OTLP/gRPC message as received (before decompression; gRPC's usual "
               "4 MiB server default); larger gets RESOURCE_EXHAUSTED. After decompression "
               "max_decompressed_bytes applies."),
    KEY_U32(receiver_config, max_connections, "10000", 1, 1000000,
            "Most client connections open at once; more are refused."),
    KEY_SIZE32(receiver_config, max_header_bytes, "16384", 1 * KIB, 1 * MIB,
               "Largest HTTP request head (request line and headers); larger gets 431."),
    KEY_U32(receiver_config, max_headers, "100", 1, 10000,
            "Most HTTP header fields in one request; more gets 431."),
    KEY_SIZE64(receiver_config, max_body_bytes, "8MiB", 1 * KIB, 1 * GIB,
               "Largest request body as received (before decompression); larger gets 413."),
    KEY_SIZE64(receiver_config, max_decompressed_bytes, "32MiB", 1 * KIB, 4 * GIB,
               "Largest request body after decompression (decompression-bomb limit); "
               "at least max_body_bytes."),
    KEY_U32(receiver_config, idle_timeout_ms, "60000", 100, DAY_MS,
            "Close a keep-alive connection idle (no request in progress) this long (ms)."),
    KEY_U32(receiver_config, request_timeout_ms, "30000", 100, HOUR_MS,
            "A started request must be received completely within this time (ms); "
            "protects against slow clients."),
    KEY_U32(receiver_config, retry_after_s, "1", 1, 3600,
            "Retry-After value (seconds) sent with 429 and 503 responses."),
    KEY_U32(receiver_config, max_nesting_depth, "32", 8, 128,
            "Deepest protobuf/JSON message nesting accepted in a request."),
};

static const struct config_key receiver_tls_keys[] = {
    KEY_BOOL(receiver_tls_config, enabled, "false",
             "Serve OTLP/HTTP and OTLP/gRPC over TLS (1.2 and 1.3; ALPN http/1.1 on "
             "http_port, h2 on grpc_port). Socket mode only. SIGHUP reloads the files."),
    KEY_STR(receiver_tls_config, cert_file, "", 0, NULL, "path",
            "PEM server certificate followed by its intermediates; required when enabled."),
    KEY_STR(receiver_tls_config, key_file, "", 0, NULL, "path",
            "PEM private key of cert_file; required when enabled. A file readable by group "
            "or others gets a warning."),
    KEY_STR(receiver_tls_config, ca_file, "", 0, NULL, "path",
            "PEM CA certificates that sign client certificates; required when client_auth "
            "is not none."),
    KEY_ENUM(receiver_tls_config, client_auth, enum tls_client_auth, tls_client_auth_names,
             "none",
             "Client certificates (mTLS): not asked for; asked for and verified when sent; "
             "required and verified."),
    KEY_ENUM(receiver_tls_config, min_version, enum tls_min_version, tls_min_version_names, "1.2",
             "Oldest TLS version accepted."),
    KEY_STR(receiver_tls_config, ciphers, "", 0, NULL, "OpenSSL cipher list",
            "TLS 1.2 cipher list in OpenSSL syntax (e.g. `ECDHE+AESGCM:ECDHE+CHACHA20`); "
            "empty: OpenSSL's default. TLS 1.3 suites are OpenSSL's defaults."),
};

static const struct config_key receiver_auth_keys[] = {
    {.name = "bearer_tokens", .type = CONFIG_T_STR,
     .offset = CK_OFF(receiver_auth_config, bearer_tokens, char *), .def = "",
     .check = check_bearer_tokens, .secret = true,
     .values_doc = "comma-separated tokens",
     .help = "Accepted bearer tokens. When this or token_file names any, requests without "
             "`Authorization: Bearer <token>` get 401 (HTTP) or UNAUTHENTICATED (gRPC). "
             "Never logged; redacted in printed configs. Prefer ${VAR} or token_file."},
    KEY_STR(receiver_auth_config, token_file, "", 0, NULL, "path",
            "File with more accepted bearer tokens, one per line (blank lines and lines "
            "starting with # are skipped); read at start."),
};

static const struct config_key dataplane_keys[] = {
    KEY_ENUM(dataplane_config, mode, enum dataplane_mode, dataplane_mode_names, "socket",
             "Packet I/O: kernel sockets (epoll, runs anywhere) or DPDK (dedicated NICs)."),
    KEY_U32(dataplane_config, workers, "0", 0, 128,
            "Worker threads (socket) or worker lcores, one rx/tx queue pair each (dpdk); 0 "
            "means one per CPU in the affinity mask (dpdk: one less, the main lcore keeps one)."),
    KEY_STR(dataplane_config, cores, "", 0, check_cores, "core list, e.g. `0-3,6`",
            "CPU cores to pin workers to, as a list of ids and ranges; empty means no "
            "pinning."),
};

static const struct config_key dpdk_keys[] = {
    KEY_STR(dpdk_config, eal_args, "", 0, check_eal_args, "EAL command line",
            "DPDK EAL arguments, split on blanks ('...' and \"...\" group), e.g. "
            "`-a 0000:3b:00.0` or `--no-huge -m 512 --vdev=net_tap0,iface=otlp0`. A "
            "--file-prefix is added unless given; -l/--lcores are generated from "
            "dataplane.workers and dataplane.cores unless given."),
    KEY_U16(dpdk_config, port, "0", 0, 1023, "DPDK port id the workers serve."),
    KEY_STR(dpdk_config, ip, "", 0, check_ipv4_or_empty, "dotted IPv4 address",
            "Our IPv4 address on the port; required in mode dpdk."),
    KEY_STR(dpdk_config, netmask, "255.255.255.0", 7, check_netmask, "dotted IPv4 netmask",
            "Netmask of the port's subnet."),
    KEY_STR(dpdk_config, gateway, "", 0, check_ipv4_or_empty, "dotted IPv4 address or empty",
            "Next hop for clients off the subnet; empty: only the subnet is reachable."),
    KEY_U16(dpdk_config, mtu, "1500", 576, 9000, "IP MTU of the port; the TCP MSS is mtu - 40."),
    KEY_U16(dpdk_config, rx_desc, "1024", 64, 16384, "Receive descriptors per queue."),
    KEY_U16(dpdk_config, tx_desc, "1024", 64, 16384, "Transmit descriptors per queue."),
    KEY_U32(dpdk_config, mbufs, "0", 0, 16777216,
            "Packet buffers in the pool (allocated once); 0 sizes it from the queues: "
            "(rx_desc + tx_desc + 512) per worker, plus caches."),
    KEY_SIZE64(dpdk_config, batch_pool_bytes, "512MiB", 0, 1024 * GIB,
               "Most EAL (hugepage) memory the batch pool may take. Every batch body is "
               "allocated there once at start with a fixed capacity of "
               "batch.max_batch_bytes + 1/8 + 4 KiB; the pool has as many batches as "
               "batch.max_queue_size / batch.max_export_batch_size needs (as in socket mode) "
               "but no more than fit here (at least 5 per worker), so with a large queue "
               "the pool may run out (503 pool_exhausted) before the queue is full. "
               "0: no cap. Start-up fails when the EAL cannot provide the pool (-m, "
               "hugepages)."),
    KEY_U32(dpdk_config, max_conns_per_lcore, "4096", 1, 16777216,
            "TCP connection table per worker lcore, TIME_WAIT included; more are refused."),
    KEY_SIZE32(dpdk_config, snd_buf_bytes, "16KiB", 2 * KIB, 64 * MIB,
               "TCP send buffer per connection (responses are under 1 KiB)."),
    KEY_SIZE32(dpdk_config, rcv_space_bytes, "256KiB", 4 * KIB, 1 * GIB,
               "TCP receive window per connection; closed while the export queue is full."),
    KEY_U32(dpdk_config, throttle_timeout_ms, "2000", 100, 600000,
            "Longest an OTLP/HTTP connection's receive window stays closed for "
            "backpressure (export queue, batch pool or memory limiter full) before the "
            "client gets an answer: a request held back this long is answered 503 with "
            "Retry-After and its connection closed; between requests the window reopens, "
            "so the next request is answered (503/429 while still full) instead of "
            "waiting for the client's own timeout (ms)."),
    KEY_SIZE32(dpdk_config, ooo_buf_bytes, "256KiB", 0, 16 * MIB,
               "Out-of-order reassembly buffer per connection (from a shared pool of "
               "max_conns_per_lcore/8 buffers, 16..512, whose pages are touched only when "
               "used). Keep it >= rcv_space_bytes: without SACK, data beyond it after a hole "
               "is dropped and the client recovers by timeouts. 0 drops out-of-order data."),
    KEY_U32(dpdk_config, time_wait_ms, "2000", 0, 240000,
            "How long a closed connection stays in TIME_WAIT (ms)."),
    KEY_BOOL(dpdk_config, replay_isn, "false",
             "BENCHMARKS ONLY, INSECURE: answer SYNs with an ISN that is a fixed public "
             "function of the 4-tuple and the client's ISN (the SYN cookie with a published "
             "key and a stopped clock, reproduced by bench/otlp_traffic.py), and let a SYN "
             "replace an existing connection of its 4-tuple, so a pcap of complete TCP "
             "conversations can be replayed through net_pcap, again and again. Anyone could "
             "then open connections without seeing our SYN-ACK; refused unless the port is "
             "a net_pcap vdev reading rx_pcap= files (no live iface=)."),
};

static const struct config_key batch_keys[] = {
    KEY_U32(batch_config, max_queue_size, "8192", 1, 16777216,
            "Items (spans, data points, log records) waiting for export; when full, "
            "clients get 429/503. At least max_export_batch_size."),
    KEY_U32(batch_config, max_export_batch_size, "1024", 1, 1048576,
            "Most items in one export request."),
    KEY_U32(batch_config, batch_timeout_ms, "200", 1, 600000,
            "Export a non-empty batch once its oldest item is this old (ms)."),
    KEY_U32(batch_config, max_concurrent_exports, "4", 1, 256,
            "Export requests in flight at once."),
    KEY_SIZE64(batch_config, max_batch_bytes, "8MiB", 1 * KIB, 1 * GIB,
               "Encoded size that also closes a batch."),
};

static const struct config_key exporter_keys[] = {
    KEY_ENUM(exporter_config, protocol, enum exporter_protocol, exporter_protocol_names, "file",
             "Where batches go: files under exporter.file.path, an OTLP/HTTP upstream, an OTLP/gRPC "
             "upstream (grpc), Kafka topics (kafka, see exporter.kafka), several OTLP upstreams "
             "by trace id (loadbalancing, see exporter.loadbalancing), or discard (acknowledge "
             "and discard: for benchmarks)."),
    KEY_STR(exporter_config, endpoint, "", 0, check_endpoint, "`http://` or `https://` URL",
            "Upstream base URL; /v1/traces, /v1/metrics, /v1/logs are appended. Required "
            "for otlp_http. For grpc: `http://host:port` (h2c) or `https://host:port` (TLS); "
            "a path is ignored."),
    KEY_U32(exporter_config, timeout_ms, "10000", 100, 600000,
            "Time allowed for one export request (ms)."),
    KEY_ENUM(exporter_config, compression, enum exporter_compression, compression_names, "gzip",
             "Content-Encoding of export requests."),
    KEY_SIZE64(exporter_config, grpc_max_msg_bytes, "4MiB", 64 * KIB, 1 * GIB,
               "grpc: largest message (before compression) in one Export call, like gRPC "
               "servers' usual 4 MiB receive limit; a larger batch goes out as several calls, "
               "split between items and regrouped under their Resource and Scope."),
    KEY_KV(exporter_config, headers, &headers_rules,
           "Extra HTTP headers sent with every export request (e.g. an API key)."),
};

static const struct config_key retry_keys[] = {
    KEY_BOOL(retry_config, enabled, "true",
             "Retry failed exports that are retryable (network errors, 429, 502, 503, 504)."),
    KEY_U32(retry_config, initial_interval_ms, "1000", 1, HOUR_MS,
            "Wait before the first retry (ms). At most max_interval_ms."),
    KEY_U32(retry_config, max_interval_ms, "30000", 1, HOUR_MS,
            "Longest wait between two retries (ms)."),
    KEY_U32(retry_config, max_elapsed_ms, "300000", 1, DAY_MS,
            "Give up on a batch (dropped and counted) after retrying this long (ms)."),
    KEY_DOUBLE(retry_config, multiplier, "1.5", 1.0, 10.0,
               "Factor by which the wait grows after each failed attempt."),
    KEY_DOUBLE(retry_config, randomization, "0.5", 0.0, 1.0,
               "Jitter: each wait is randomised by +/- this fraction."),
};

static const struct config_key tls_keys[] = {
    KEY_BOOL(tls_client_config, insecure, "false",
             "Allow plain http:// endpoints and skip certificate verification."),
    KEY_STR(tls_client_config, ca_file, "", 0, NULL, "path",
            "PEM CA bundle to verify the upstream; empty: the system store."),
    KEY_STR(tls_client_config, cert_file, "", 0, NULL, "path",
            "PEM client certificate for mutual TLS; needs key_file."),
    KEY_STR(tls_client_config, key_file, "", 0, NULL, "path", "PEM private key of cert_file."),
    KEY_STR(tls_client_config, server_name, "", 0, NULL, NULL,
            "Name to send in SNI and verify; empty: the endpoint's host."),
};

static const struct config_key file_keys[] = {
    KEY_STR(file_exporter_config, path, "", 0, NULL, "path",
            "Directory the file exporter writes to; empty means <data_dir>/export."),
    KEY_SIZE64(file_exporter_config, max_file_bytes, "100MiB", 1 * MIB, 64 * GIB,
               "Start a new file after this size."),
    KEY_U32(file_exporter_config, max_files, "10", 1, 10000,
            "Rotated files kept per signal; the oldest is deleted."),
};

static const struct config_key nats_keys[] = {
    KEY_STR(nats_exporter_config, servers, "nats://127.0.0.1:4222", 1, check_nats_servers,
            "comma-separated `nats://` or `tls://` URLs",
            "NATS servers to connect to (any of them; the client learns the rest of the "
            "cluster). user:password@ in a URL authenticates."),
    KEY_STR(nats_exporter_config, subject_prefix, "otlp", 1, check_nats_subject, "NATS subject",
            "Batches go to <subject_prefix>.traces, .metrics and .logs unless the subject of "
            "the signal is set below."),
    KEY_STR(nats_exporter_config, traces_subject, "", 0, check_nats_subject,
            "NATS subject or empty", "Subject for traces; empty: <subject_prefix>.traces."),
    KEY_STR(nats_exporter_config, metrics_subject, "", 0, check_nats_subject,
            "NATS subject or empty", "Subject for metrics; empty: <subject_prefix>.metrics."),
    KEY_STR(nats_exporter_config, logs_subject, "", 0, check_nats_subject,
            "NATS subject or empty", "Subject for logs; empty: <subject_prefix>.logs."),
    KEY_STR(nats_exporter_config, stream, "OTLP", 1, check_nats_stream, "JetStream stream name",
            "JetStream stream that stores the three subjects."),
    KEY_BOOL(nats_exporter_config, create_stream, "true",
             "Create the stream (file storage, limits retention) when it does not exist; an "
             "existing stream is used as it is."),
    KEY_U32(nats_exporter_config, stream_replicas, "1", 1, 5,
            "Replicas of a created stream (3 on a 3-node cluster survives one node)."),
    KEY_SIZE64(nats_exporter_config, stream_max_bytes, "0", 0, 1024 * GIB,
               "Size limit of a created stream; the oldest messages go first. 0: unlimited."),
    KEY_U32(nats_exporter_config, stream_duplicate_window_ms, "0", 0, DAY_MS,
            "Duplicate-detection window of a created stream (ms); 0: exporter.retry."
            "max_elapsed_ms + exporter.timeout_ms, at least 2 minutes, so every retry of a "
            "batch is recognised as a duplicate."),
    KEY_U32(nats_exporter_config, max_pending, "256", 1, 65536,
            "Most publishes awaiting their JetStream acknowledgement; at most "
            "batch.max_concurrent_exports are used."),
    KEY_STR(nats_exporter_config, credentials_file, "", 0, NULL, "path",
            "NATS credentials file (user JWT and NKey seed); empty: none."),
};

static const struct config_key spool_keys[] = {
    KEY_BOOL(spool_config, enabled, "false",
             "Keep batches the upstream cannot take in time (retries exhausted, export queue "
             "above 80% or batch pool running low, shutdown) in segment files on disk and replay "
             "them in order when the upstream recovers and after a restart. See docs/spool.md."),
    KEY_ENUM(spool_config, durability, enum spool_durability, spool_durability_names, "memory",
             "When a request gets its 200: memory, once it is in a batch in memory (kill -9 "
             "loses it); spool, once it is also appended to the worker's write-ahead log on disk "
             "(kill -9 loses nothing acknowledged; power loss per fsync). spool turns the spool "
             "on whatever `enabled` says. See docs/spool.md."),
    KEY_STR(spool_config, dir, "", 0, NULL, "path",
            "Directory of the segment files (created if missing, locked against a second "
            "instance); empty means <data_dir>/spool."),
    KEY_SIZE64(spool_config, max_bytes, "1GiB", 1 * MIB, 16384 * GIB,
               "Most disk space the segment files may take; when reached, batches stay in "
               "memory and clients get 429/503 once the queue is full. At least segment_bytes."),
    KEY_SIZE64(spool_config, segment_bytes, "64MiB", 64 * KIB, 4 * GIB,
               "Start a new segment file past this size; a segment is deleted once every record "
               "in it was delivered."),
    KEY_ENUM(spool_config, fsync, enum spool_fsync, spool_fsync_names, "interval",
             "When appended records are forced to disk: after every record, every "
             "fsync_interval_ms, or never (left to the kernel; survives kill -9, not power "
             "loss)."),
    KEY_U32(spool_config, fsync_interval_ms, "1000", 1, 600000,
            "Period of the fsync for fsync: interval (ms)."),
    KEY_SIZE64(spool_config, wal_max_bytes, "512MiB", 1 * MIB, 16384 * GIB,
               "durability: spool: most disk space the write-ahead logs of all workers take "
               "together (each worker gets an equal share); when a worker's share is full, "
               "requests get 503 with Retry-After until exports free a segment."),
    KEY_SIZE64(spool_config, wal_segment_bytes, "4MiB", 64 * KIB, 1 * GIB,
               "durability: spool: start a new write-ahead log segment past this size; a "
               "segment is deleted once every batch with data in it was exported or spooled."),
    KEY_U32(spool_config, wal_segment_ms, "500", 10, 600000,
            "durability: spool: ... or past this age (ms), so that delivered data leaves the "
            "disk (and is not replayed again after a crash) even at a low rate."),
};

static const struct config_key kafka_keys[] = {
    KEY_STR(kafka_exporter_config, brokers, "localhost:9092", 1, check_kafka_brokers,
            "comma-separated `host:port`", "Bootstrap brokers (librdkafka bootstrap.servers)."),
    KEY_STR(kafka_exporter_config, traces_topic, "otlp_spans", 1, check_kafka_topic, "topic name",
            "Topic for traces (the OpenTelemetry Collector's default)."),
    KEY_STR(kafka_exporter_config, metrics_topic, "otlp_metrics", 1, check_kafka_topic,
            "topic name", "Topic for metrics."),
    KEY_STR(kafka_exporter_config, logs_topic, "otlp_logs", 1, check_kafka_topic, "topic name",
            "Topic for logs."),
    KEY_ENUM(kafka_exporter_config, encoding, enum kafka_encoding, kafka_encoding_names,
             "otlp_proto",
             "Message payload: an Export*ServiceRequest as protobuf or as OTLP JSON."),
    KEY_BOOL(kafka_exporter_config, partition_traces_by_id, "true",
             "Split trace batches so each message holds the spans of one trace, keyed by the "
             "trace id in hex: all spans of a trace land on one partition."),
    KEY_BOOL(kafka_exporter_config, partition_metrics_by_resource_attributes, "false",
             "Key metric messages by a hash of the resource attributes (the Collector's key), "
             "one message per resource."),
    KEY_BOOL(kafka_exporter_config, partition_logs_by_resource_attributes, "false",
             "Key log messages by a hash of the resource attributes, one message per resource."),
    KEY_ENUM(kafka_exporter_config, compression, enum kafka_compression, kafka_compression_names,
             "none", "Compression of produced record batches (librdkafka compression.codec)."),
    KEY_STR(kafka_exporter_config, client_id, "otlp-service", 1, NULL, NULL,
            "Client id sent to the brokers."),
    KEY_SIZE32(kafka_exporter_config, max_message_bytes, "1000000", 1 * KIB, 1000000000,
               "Largest message (librdkafka message.max.bytes); bigger batches are split, at "
               "trace or resource boundaries first."),
    KEY_U32(kafka_exporter_config, statistics_interval_ms, "5000", 0, DAY_MS,
            "How often librdkafka statistics refresh the otlp_kafka_* metrics (ms); 0 turns "
            "them off."),
    KEY_KV(kafka_exporter_config, properties, &kafka_properties_rules,
           "librdkafka configuration properties passed as they are (TLS: security.protocol, "
           "ssl.ca.location...; SASL: sasl.mechanisms, sasl.username, sasl.password...). Values "
           "are redacted in dumped configs."),
};

static const struct config_key lb_keys[] = {
    KEY_ENUM(lb_exporter_config, protocol, enum lb_child_protocol, lb_protocol_names, "otlp_http",
             "Exporter of each endpoint; it takes timeout_ms, compression, headers, tls and "
             "retry from the exporter section."),
    KEY_ENUM(lb_exporter_config, resolver, enum lb_resolver, lb_resolver_names, "static",
             "Where the endpoints come from: the endpoints list, or the addresses of hostname "
             "(a Kubernetes headless Service), re-resolved every resolve_interval_ms."),
    KEY_STR(lb_exporter_config, endpoints, "", 0, check_lb_endpoints,
            "comma-separated `http(s)://host:port`",
            "Endpoints for the static resolver, e.g. `http://c1:4318,http://c2:4318`."),
    KEY_STR(lb_exporter_config, hostname, "", 0, check_hostname, "DNS name",
            "Name the dns resolver looks up (IPv4 addresses); each address is an endpoint "
            "<scheme>://<address>:<port>."),
    KEY_U16(lb_exporter_config, port, "4318", 1, 65535, "Port of the endpoints the dns resolver "
            "finds (4317 for grpc)."),
    KEY_ENUM(lb_exporter_config, scheme, enum lb_scheme, lb_scheme_names, "http",
             "Scheme of the endpoints the dns resolver finds."),
    KEY_U32(lb_exporter_config, resolve_interval_ms, "5000", 100, DAY_MS,
            "How often the dns resolver looks the name up again (ms)."),
    KEY_ENUM(lb_exporter_config, routing_key, enum lb_routing_key, lb_routing_key_names,
             "traceID",
             "What picks a span's endpoint: its trace id (every span of a trace on one "
             "endpoint) or its resource's service.name. Metrics and logs always go by "
             "service.name."),
};

static const struct config_key control_keys[] = {
    KEY_STR(control_config, host, "0.0.0.0", 1, NULL, NULL,
            "Address of the control plane (health probes, /metrics)."),
    KEY_U16(control_config, port, "8080", 1, 65535, "Control plane port."),
};

static const struct config_key resources_keys[] = {
    KEY_KV(resources_config, attributes, &attributes_rules,
           "Attributes upserted into the Resource of all received data "
           "(e.g. deployment.environment)."),
};

static const struct config_key memory_limiter_keys[] = {
    KEY_U32(memory_limiter_config, limit_mib, "0", 0, 16777216,
            "Hard memory limit of the process (MiB, resident set size; DPDK hugepages are not "
            "counted). Request bodies and decompression buffers are never allocated past it. "
            "0: 80% of the cgroup's memory.max when there is one, else no limit. SIGHUP "
            "applies a change."),
    KEY_U32(memory_limiter_config, spike_limit_mib, "0", 0, 16777216,
            "Headroom below limit_mib: from limit_mib - spike_limit_mib (the soft limit) on, "
            "new requests get 503 (HTTP) or UNAVAILABLE (gRPC) with a retry delay. 0: 20% of "
            "the limit. Less than limit_mib."),
    KEY_U32(memory_limiter_config, check_interval_ms, "100", 10, 60000,
            "How often the process memory is measured (ms)."),
};

#define SECTION(n, member, table, h)                                                               \
    {                                                                                              \
        .name = n, .offset = offsetof(struct svc_config, member), .keys = table,                   \
        .n_keys = ARRAY_SIZE(table), .help = h                                                     \
    }

const struct config_section config_sections[] = {
    SECTION("service", service, service_keys, "The process as a whole."),
    SECTION("receiver", receiver, receiver_keys,
            "The OTLP listeners and the limits applied to each request."),
    SECTION("receiver.tls", receiver.tls, receiver_tls_keys,
            "TLS on the OTLP listeners (docs/tls.md)."),
    SECTION("receiver.auth", receiver.auth, receiver_auth_keys,
            "Bearer-token authentication of OTLP requests (docs/tls.md)."),
    SECTION("dataplane", dataplane, dataplane_keys,
            "How packets reach the workers, and which CPUs run them."),
    SECTION("dataplane.dpdk", dataplane.dpdk, dpdk_keys,
            "The DPDK port and the userspace TCP/IP stack (dataplane.mode: dpdk)."),
    SECTION("batch", batch, batch_keys,
            "Batching between the workers and the exporter, and the queue budget."),
    SECTION("exporter", exporter, exporter_keys, "Where and how batches are sent."),
    SECTION("exporter.retry", exporter.retry, retry_keys,
            "Exponential back-off for failed exports."),
    SECTION("exporter.tls", exporter.tls, tls_keys, "TLS towards the upstream (https://)."),
    SECTION("exporter.file", exporter.file, file_keys,
            "The file exporter (exporter.protocol: file)."),
    SECTION("exporter.nats", exporter.nats, nats_keys,
            "The NATS JetStream exporter (exporter.protocol: nats)."),
    SECTION("exporter.kafka", exporter.kafka, kafka_keys,
            "The Kafka exporter (exporter.protocol: kafka)."),
    SECTION("exporter.loadbalancing", exporter.loadbalancing, lb_keys,
            "Trace-aware load balancing over several OTLP upstreams (exporter.protocol: "
            "loadbalancing, docs/scaling.md)."),
    SECTION("control", control, control_keys, "The control plane listener."),
    SECTION("resources", resources, resources_keys, "Resource attributes added to all data."),
    SECTION("spool", spool, spool_keys,
            "The disk spool for batches the upstream cannot take (docs/spool.md)."),
    SECTION("memory_limiter", memory_limiter, memory_limiter_keys,
            "Refusing new data under memory pressure, before the process outgrows its memory "
            "(docs/operations.md)."),
};

const unsigned config_n_sections = ARRAY_SIZE(config_sections);
