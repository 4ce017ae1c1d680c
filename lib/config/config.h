/* SPDX-License-Identifier: Apache-2.0 */
/* Service configuration: the struct every module reads, loaded from YAML with
 * ${VAR} expansion and OTLP__SECTION__KEY environment overrides. The key tables
 * in config_table.c are the single source for loading, validation and the docs. */
#ifndef OTLP_CONFIG_H
#define OTLP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_MAX_KV 64                    /* headers, resource attributes */
#define CONFIG_MAX_CORES 128                /* most cores dataplane.cores may list */
#define CONFIG_MAX_CORE_ID 1023             /* highest core id (CPU_SETSIZE - 1) */
#define CONFIG_MAX_ERRORS 100               /* error lines reported before giving up */
#define CONFIG_MAX_FILE_BYTES (1024 * 1024) /* largest file config_load reads */

struct buf;

/* A key/value pair from a YAML mapping (exporter.headers, resources.attributes). */
struct config_kv {
    char *key;
    char *value;
};

struct config_kv_list {
    struct config_kv items[CONFIG_MAX_KV];
    unsigned n;
};

struct service_config {
    char *name;      /* service.name: reported in logs */
    char *log_level; /* debug|info|warn|error */
    char *data_dir;  /* where the file exporter and the spool write */
    uint32_t shutdown_timeout_ms;
};

/* receiver.tls.client_auth: does a client need a certificate (mTLS)? */
enum tls_client_auth {
    TLS_CLIENT_AUTH_NONE = 0,    /* none asked for */
    TLS_CLIENT_AUTH_REQUEST = 1, /* asked for; verified when sent */
    TLS_CLIENT_AUTH_REQUIRE = 2, /* a verified certificate is required */
};
/* receiver.tls.min_version */
enum tls_min_version { TLS_MIN_VERSION_1_2 = 0, TLS_MIN_VERSION_1_3 = 1 };

/* receiver.tls: TLS on both OTLP listeners (lib/tls, socket mode). */
struct receiver_tls_config {
    bool enabled;
    char *cert_file; /* PEM: the server certificate, then its intermediates */
    char *key_file;  /* PEM private key of cert_file */
    char *ca_file;   /* PEM CAs that sign client certificates (mTLS) */
    enum tls_client_auth client_auth;
    enum tls_min_version min_version;
    char *ciphers; /* OpenSSL cipher list for TLS 1.2; "": OpenSSL's default */
};

/* receiver.auth: bearer tokens both receivers require when any is set. */
struct receiver_auth_config {
    char *bearer_tokens; /* comma-separated; "": none */
    char *token_file;    /* one token per line; "": none */
};

struct receiver_config {
    char *host;               /* listen address for OTLP */
    uint16_t http_port;       /* 4318 */
    uint16_t grpc_port;       /* 4317 (gRPC issue) */
    uint64_t grpc_max_recv_msg_bytes; /* one gRPC message as received (compressed) */
    uint32_t max_connections; /* per process */
    uint32_t max_header_bytes;
    uint32_t max_headers;
    uint64_t max_body_bytes;         /* body as received (compressed) */
    uint64_t max_decompressed_bytes; /* decompression-bomb limit */
    uint32_t idle_timeout_ms;        /* keep-alive connection with no request in progress */
    uint32_t request_timeout_ms;     /* a started request must complete within this (slowloris) */
    uint32_t retry_after_s;          /* Retry-After sent with 429/503 */
    uint32_t max_nesting_depth;      /* protobuf message nesting limit */
    struct receiver_tls_config tls;   /* receiver.tls */
    struct receiver_auth_config auth; /* receiver.auth */
};

enum dataplane_mode { DATAPLANE_SOCKET = 0, DATAPLANE_DPDK = 1 };

/* dataplane.dpdk: the DPDK port and the userspace TCP/IP stack (mode dpdk).
 * Workers are dataplane.workers lcores, each with one rx/tx queue pair. */
struct dpdk_config {
    char *eal_args;               /* EAL arguments, split on blanks, quotes group */
    uint16_t port;                /* DPDK port id */
    char *ip;                     /* our IPv4 address, dotted; required in mode dpdk */
    char *netmask;                /* dotted, contiguous */
    char *gateway;                /* dotted, on our subnet; empty: none */
    uint16_t mtu;                 /* IP MTU */
    uint16_t rx_desc;             /* rx descriptors per queue */
    uint16_t tx_desc;             /* tx descriptors per queue */
    uint32_t mbufs;               /* mbuf pool size; 0: sized from queues and descriptors */
    uint64_t batch_pool_bytes;    /* EAL memory for batch bodies at most; 0: no cap */
    uint32_t max_conns_per_lcore; /* TCP connection table per lcore */
    uint32_t snd_buf_bytes;       /* TCP send buffer per connection */
    uint32_t rcv_space_bytes;     /* TCP receive window per connection */
    uint32_t throttle_timeout_ms; /* 503 a request held by a closed window this long */
    uint32_t ooo_buf_bytes;       /* out-of-order reassembly buffer per connection */
    uint32_t time_wait_ms;        /* TIME_WAIT duration */
    bool replay_isn;              /* benchmarks only, insecure: fixed public ISN function */
};

struct dataplane_config {
    enum dataplane_mode mode;
    uint32_t workers; /* 0: one per online CPU (dpdk: minus one for the main lcore) */
    char *cores;      /* "0-3,6": cores to pin workers to; empty: no pinning */
    struct dpdk_config dpdk;
};

struct batch_config {
    uint32_t max_queue_size;        /* items (spans/points/records) waiting for export */
    uint32_t max_export_batch_size; /* items per export request */
    uint32_t batch_timeout_ms;      /* flush a non-empty batch after this age */
    uint32_t max_concurrent_exports;
    uint64_t max_batch_bytes; /* encoded size that also closes a batch */
};

struct retry_config {
    bool enabled;
    uint32_t initial_interval_ms;
    uint32_t max_interval_ms;
    uint32_t max_elapsed_ms; /* give up (drop, counted) after this */
    double multiplier;
    double randomization; /* jitter factor 0..1 */
};

struct tls_client_config {
    bool insecure; /* plain http allowed / skip verification */
    char *ca_file;
    char *cert_file;
    char *key_file;
    char *server_name;
};

enum exporter_protocol {
    EXPORTER_FILE = 0,
    EXPORTER_OTLP_HTTP = 1,
    EXPORTER_DISCARD = 2,
    EXPORTER_NATS = 3,
    EXPORTER_GRPC = 4,
    EXPORTER_KAFKA = 5,
    EXPORTER_LOADBALANCING = 6,
};
enum exporter_compression { COMPRESSION_NONE = 0, COMPRESSION_GZIP = 1 };

struct file_exporter_config {
    char *path;              /* directory; default <data_dir>/export */
    uint64_t max_file_bytes; /* rotate after this size */
    uint32_t max_files;      /* keep this many rotated files per signal */
};

/* exporter.nats: NATS JetStream (exporter.protocol: nats). One message per
 * batch on <subject_prefix>.<signal> (or the explicit subject). */
struct nats_exporter_config {
    char *servers;                       /* comma-separated nats:// or tls:// URLs */
    char *subject_prefix;                /* "otlp": otlp.traces, otlp.metrics, otlp.logs */
    char *traces_subject;                /* "": <subject_prefix>.traces */
    char *metrics_subject;               /* "": <subject_prefix>.metrics */
    char *logs_subject;                  /* "": <subject_prefix>.logs */
    char *stream;                        /* stream name ("OTLP") */
    bool create_stream;                  /* create the stream at start when missing */
    uint32_t stream_replicas;            /* 1..5, for a created stream */
    uint64_t stream_max_bytes;           /* 0: unlimited, for a created stream */
    uint32_t stream_duplicate_window_ms; /* 0: derived from exporter.retry */
    uint32_t max_pending;                /* outstanding asynchronous publishes */
    char *credentials_file;              /* NATS .creds file (JWT + NKey seed) */
};

/* exporter.kafka: Kafka through librdkafka (exporter.protocol: kafka). Topics,
 * encodings and message keys as the OpenTelemetry Collector's Kafka exporter
 * writes them, so its Kafka receiver reads what we produce. */
enum kafka_encoding { KAFKA_ENCODING_OTLP_PROTO = 0, KAFKA_ENCODING_OTLP_JSON = 1 };
enum kafka_compression {
    KAFKA_COMPRESSION_NONE = 0,
    KAFKA_COMPRESSION_GZIP = 1,
    KAFKA_COMPRESSION_SNAPPY = 2,
    KAFKA_COMPRESSION_LZ4 = 3,
    KAFKA_COMPRESSION_ZSTD = 4,
};

struct kafka_exporter_config {
    char *brokers;                                 /* bootstrap "host:port,host:port" */
    char *traces_topic;                            /* otlp_spans */
    char *metrics_topic;                           /* otlp_metrics */
    char *logs_topic;                              /* otlp_logs */
    enum kafka_encoding encoding;                  /* payload of each message */
    bool partition_traces_by_id;                   /* one trace per message, key = hex id */
    bool partition_metrics_by_resource_attributes; /* key = hash of the resource */
    bool partition_logs_by_resource_attributes;    /* key = hash of the resource */
    enum kafka_compression compression;            /* compression.codec */
    char *client_id;                               /* client.id */
    uint32_t max_message_bytes;                    /* message.max.bytes; batches are split */
    uint32_t statistics_interval_ms;               /* librdkafka statistics -> /metrics; 0: off */
    struct config_kv_list properties;              /* librdkafka properties, passed as-is */
};

/* exporter.loadbalancing: trace-aware load balancing over several OTLP
 * upstreams (exporter.protocol: loadbalancing), one child exporter each. */
enum lb_child_protocol { LB_PROTOCOL_OTLP_HTTP = 0, LB_PROTOCOL_GRPC = 1 };
enum lb_resolver { LB_RESOLVER_STATIC = 0, LB_RESOLVER_DNS = 1 };
enum lb_scheme { LB_SCHEME_HTTP = 0, LB_SCHEME_HTTPS = 1 };
enum lb_routing_key { LB_ROUTING_TRACE_ID = 0, LB_ROUTING_SERVICE = 1 };

struct lb_exporter_config {
    enum lb_child_protocol protocol; /* exporter of each endpoint */
    enum lb_resolver resolver;       /* static list or dns */
    char *endpoints;                 /* static: comma-separated http(s)://host:port */
    char *hostname;                  /* dns: name whose A records are the endpoints */
    uint16_t port;                   /* dns: port of every endpoint */
    enum lb_scheme scheme;           /* dns: http or https */
    uint32_t resolve_interval_ms;    /* dns: re-resolve period */
    enum lb_routing_key routing_key; /* traces: by trace id or by service.name */
};

struct exporter_config {
    enum exporter_protocol protocol;
    char *endpoint; /* base URL; /v1/traces etc. appended */
    uint32_t timeout_ms;
    enum exporter_compression compression;
    uint64_t grpc_max_msg_bytes; /* grpc: larger batches go out as several calls */
    struct config_kv_list headers;
    struct tls_client_config tls;
    struct retry_config retry;
    struct file_exporter_config file;
    struct nats_exporter_config nats;
    struct kafka_exporter_config kafka;
    struct lb_exporter_config loadbalancing;
};

struct control_config {
    char *host;
    uint16_t port; /* 8080 */
};

struct resources_config {
    struct config_kv_list attributes; /* upserted into every Resource */
};

/* spool.fsync: when appended records are forced to disk (docs/spool.md). */
enum spool_fsync { SPOOL_FSYNC_ALWAYS = 0, SPOOL_FSYNC_INTERVAL = 1, SPOOL_FSYNC_NEVER = 2 };

/* spool.durability: when a request is acknowledged (docs/spool.md). */
enum spool_durability { SPOOL_DURABILITY_MEMORY = 0, SPOOL_DURABILITY_SPOOL = 1 };

/* spool: the on-disk spool of batches the upstream could not take (lib/spool). */
struct spool_config {
    bool enabled;
    enum spool_durability durability; /* spool: 200 only once in a worker's write-ahead log */
    char *dir;              /* segment directory; "" means <service.data_dir>/spool */
    uint64_t max_bytes;     /* most disk space the segment files may take */
    uint64_t segment_bytes; /* start a new segment file past this size */
    enum spool_fsync fsync;
    uint32_t fsync_interval_ms; /* fsync: interval */
    uint64_t wal_max_bytes;     /* durability: spool; all workers' logs together */
    uint64_t wal_segment_bytes; /* roll a worker's log segment past this size */
    uint32_t wal_segment_ms;    /* ... or this age */
};

/* memory_limiter: refuse new data before the process outgrows its memory
 * (lib/memlimit). The hard limit is limit_mib; the soft limit, where new
 * requests start being refused, is limit_mib - spike_limit_mib. */
struct memory_limiter_config {
    uint32_t limit_mib;         /* 0: 80% of the cgroup's memory.max, or off without one */
    uint32_t spike_limit_mib;   /* 0: 20% of the limit */
    uint32_t check_interval_ms; /* how often process memory is measured */
};

struct svc_config {
    struct service_config service;
    struct receiver_config receiver;
    struct dataplane_config dataplane;
    struct batch_config batch;
    struct exporter_config exporter;
    struct control_config control;
    struct resources_config resources;
    struct spool_config spool;
    struct memory_limiter_config memory_limiter;
};

/* Fill `cfg` with the built-in defaults from the key tables (the values in
 * config/default.yaml, except service.data_dir, which is "./data" there).
 * exporter.file.path stays "" here; config_load() resolves it. Strings are
 * allocated: release with config_free(). On allocation failure a string is
 * left NULL (config_load() reports -ENOMEM instead). */
void config_defaults(struct svc_config *cfg);

/*
 * Load `path` (NULL: defaults only) on top of the defaults, expand ${VAR} in
 * values, then apply environment overrides (RUST_LOG when it is a plain level
 * name, then OTLP_LOG_LEVEL, then every OTLP__SECTION__KEY variable), check
 * ranges and cross-field rules, and resolve an empty exporter.file.path to
 * <data_dir>/export. `cfg` need not be initialised.
 * Every problem is appended to `errors` (may be NULL) as one line
 * "FILE:LINE: KEY: what is wrong\n" ("environment: VAR: ..." for an
 * override); all problems are collected (up to CONFIG_MAX_ERRORS), not only
 * the first. The buffer is not NUL-terminated.
 * Returns 0; -EINVAL when any key or value was wrong (see errors); -ENOENT,
 * -EACCES, -EISDIR or another negative errno when the file cannot be read;
 * -EFBIG when it is larger than CONFIG_MAX_FILE_BYTES; -ENOMEM.
 * On success the caller frees with config_free(); on failure `cfg` is left
 * zeroed (config_free() is still safe).
 */
int config_load(const char *path, struct svc_config *cfg, struct buf *errors);

/*
 * config_load() from memory: `data` (`len` bytes, need not be NUL-terminated;
 * NULL: defaults only) is the YAML text and `name` the file name used in
 * error lines. Same processing, returns and ownership as config_load()
 * except that no file is read. Borrows `data` until return.
 */
int config_load_buffer(const char *name, const char *data, size_t len, struct svc_config *cfg,
                       struct buf *errors);

/* Free the strings a loaded config owns and zero it. NULL, a zeroed and a
 * defaults-only config are fine; freeing twice is fine. */
void config_free(struct svc_config *cfg);

/* Append the Markdown reference of every key (key and its OTLP__ variable,
 * type, default, range, help), one table per section, to `out`;
 * docs/configuration.md embeds it. Returns 0, -EINVAL (out NULL), -ENOMEM,
 * -EMSGSIZE (out's limit reached). */
int config_write_reference(struct buf *out);

/* Append the effective configuration `cfg` as YAML that config_load() reads
 * back to the same values (every key, '$' written as '$$'). With `redact`,
 * credentials (exporter.headers values, receiver.auth.bearer_tokens) are
 * written as "<redacted>".
 * Returns 0, -EINVAL, -ENOMEM, -EMSGSIZE. */
int config_write_yaml(const struct svc_config *cfg, bool redact, struct buf *out);

/*
 * Call fn(key, old_value, new_value, arg) for every key whose value differs
 * between `a` and `b`, in table order: key is the dotted path
 * ("exporter.retry.max_interval_ms"), the values are written as in YAML on
 * one line (mappings as "{k: v, ...}"), credentials as "<redacted>", cut at
 * 200 bytes. The strings are borrowed until fn returns. For SIGHUP reload.
 * Returns the number of differing keys, -EINVAL, -ENOMEM.
 */
int config_diff(const struct svc_config *a, const struct svc_config *b,
                void (*fn)(const char *key, const char *old_value, const char *new_value,
                           void *arg),
                void *arg);

/*
 * Parse a CPU core list such as "0-3,6" (ids and inclusive ranges separated
 * by commas; blanks allowed around them) into `cores`, in the order written.
 * `cores` may be NULL to only validate and count; `max` is the most ids it
 * may take. "" gives *n = 0. Core ids are 0..CONFIG_MAX_CORE_ID.
 * Returns 0 with *n set; -EINVAL on a syntax error, a reversed range, an id
 * above CONFIG_MAX_CORE_ID or an id listed twice; -E2BIG when the list names
 * more than `max` cores. *n is 0 on failure.
 */
int config_parse_cores(const char *s, unsigned *cores, unsigned max, unsigned *n);

/*
 * Split a command-line string such as dataplane.dpdk.eal_args into words:
 * blanks separate words, '...' and "..." group (quotes are removed, no
 * escapes inside single quotes, a backslash escapes the next character
 * elsewhere).
 * The words are written NUL-terminated into `store` (`store_len` bytes; the
 * input length + 1 always suffices) and argv[i] points into it; `store` and
 * `argv` may be NULL to only validate and count.
 * Returns 0 with *argc set; -EINVAL (unbalanced quote, trailing backslash,
 * control character) or -E2BIG (more than max_argv words, or store too
 * small) with *why set to a static reason.
 */
int config_split_args(const char *s, char *store, size_t store_len, char **argv,
                      unsigned max_argv, unsigned *argc, const char **why);

/* Parse a dotted IPv4 address ("198.18.0.2") into host byte order.
 * Returns 0, or -EINVAL when `s` is not exactly four decimal octets. */
int config_parse_ipv4(const char *s, uint32_t *ip);

/* The configuration spelling of an enum value ("socket", "otlp_http",
 * "gzip"), for logs; "unknown" for a value outside the enum. */
const char *config_dataplane_mode_name(enum dataplane_mode m);
const char *config_exporter_protocol_name(enum exporter_protocol p);
const char *config_compression_name(enum exporter_compression c);
const char *config_spool_fsync_name(enum spool_fsync f);
const char *config_spool_durability_name(enum spool_durability d);

#endif
