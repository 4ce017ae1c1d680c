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
    NULL,
};
static const char *const compression_names[] = {
    [COMPRESSION_NONE] = "none",
    [COMPRESSION_GZIP] = "gzip",
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
    KEY_U32(dpdk_config, max_conns_per_lcore, "4096", 1, 16777216,
            "TCP connection table per worker lcore, TIME_WAIT included; more are refused."),
    KEY_SIZE32(dpdk_config, snd_buf_bytes, "16KiB", 2 * KIB, 64 * MIB,
               "TCP send buffer per connection (responses are under 1 KiB)."),
    KEY_SIZE32(dpdk_config, rcv_space_bytes, "256KiB", 4 * KIB, 1 * GIB,
               "TCP receive window per connection; closed while the export queue is full."),
    KEY_SIZE32(dpdk_config, ooo_buf_bytes, "64KiB", 0, 16 * MIB,
               "Out-of-order reassembly buffer per connection (from a shared pool); 0 drops "
               "out-of-order data and relies on retransmission."),
    KEY_U32(dpdk_config, time_wait_ms, "2000", 0, 240000,
            "How long a closed connection stays in TIME_WAIT (ms)."),
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
             "Where batches go: files under exporter.file.path, an OTLP/HTTP upstream, or discard "
             "(acknowledge and discard: for benchmarks)."),
    KEY_STR(exporter_config, endpoint, "", 0, check_endpoint, "`http://` or `https://` URL",
            "Upstream base URL; /v1/traces, /v1/metrics, /v1/logs are appended. Required "
            "for otlp_http."),
    KEY_U32(exporter_config, timeout_ms, "10000", 100, 600000,
            "Time allowed for one export request (ms)."),
    KEY_ENUM(exporter_config, compression, enum exporter_compression, compression_names, "gzip",
             "Content-Encoding of export requests."),
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

#define SECTION(n, member, table, h)                                                               \
    {                                                                                              \
        .name = n, .offset = offsetof(struct svc_config, member), .keys = table,                   \
        .n_keys = ARRAY_SIZE(table), .help = h                                                     \
    }

const struct config_section config_sections[] = {
    SECTION("service", service, service_keys, "The process as a whole."),
    SECTION("receiver", receiver, receiver_keys,
            "The OTLP listeners and the limits applied to each request."),
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
    SECTION("control", control, control_keys, "The control plane listener."),
    SECTION("resources", resources, resources_keys, "Resource attributes added to all data."),
};

const unsigned config_n_sections = ARRAY_SIZE(config_sections);
