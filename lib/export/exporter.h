/* SPDX-License-Identifier: Apache-2.0 */
/* The exporter boundary: every way a batch leaves the service (OTLP/HTTP, the
 * JSON-lines file, later gRPC, Kafka, NATS, load balancing) is an exporter of
 * this one shape, driven by the export runner (export.h) on its own thread. */
#ifndef OTLP_EXPORTER_H
#define OTLP_EXPORTER_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "pipeline/batch.h"

struct obs_registry;

/* How one export attempt ended. */
enum export_status {
    EXPORT_OK = 0,        /* accepted (maybe partially: see rejected_items) */
    EXPORT_RETRYABLE = 1, /* try again later (429/502/503/504, network, disk) */
    EXPORT_PERMANENT = 2, /* never retry (other 4xx/5xx, unencodable data) */
};

struct export_result {
    enum export_status status;
    uint32_t retry_after_ms; /* server asked to wait this long (Retry-After); 0: no hint */
    int http_status;         /* 0 when no HTTP response was received */
    uint64_t rejected_items; /* partial_success.rejected_<items>, or items an exporter
                              * that splits batches had refused for good (also with
                              * RETRYABLE: see delivered_items) */
    uint64_t delivered_items; /* RETRYABLE/PERMANENT of an exporter that splits batches
                               * (load balancing): items already accepted. It rewrote
                               * b->body to the undelivered rest (b->items unchanged);
                               * the runner takes delivered_items + rejected_items off
                               * b->items. 0 for all others */
    char reason[48];         /* short machine-readable reason: "http_400", "timeout",
                              * "connect_failed", "resolve_failed", "tls_error",
                              * "connection_error", "transport_error", "io_error",
                              * "encode_error"...; "partial_success" on an OK with
                              * rejected items; "" on a clean OK */
    char message[256];       /* human-readable detail (server's message, curl error) */
};

/*
 * Completion callback. Called exactly once per submitted batch, from inside
 * poll() on the runner's thread, after the exporter stopped referencing `b`
 * (the callback may release or resubmit it). `r` is borrowed until return.
 */
typedef void (*export_done_fn)(void *arg, struct batch *b, const struct export_result *r);

struct exporter_ops {
    const char *name;
    /*
     * Start exporting `b` asynchronously. The exporter borrows `b` (and its
     * body) until it reports completion through done() in a later poll().
     * Returns 0; -EBUSY when batch.max_concurrent_exports exports are already
     * in flight; -EINVAL for a batch with an unknown signal; -ENOMEM. On error
     * done() is not called for `b`.
     */
    int (*submit)(void *state, struct batch *b);
    /*
     * Drive I/O for at most `timeout_ms` (0: do not wait) and report finished
     * exports through done(arg, ...). Returns early when wakeup() was called
     * since the last poll, or as soon as at least one completion was reported.
     * Returns the number of completions reported (>= 0), or a negative errno
     * on an internal error (the exporter stays usable).
     */
    int (*poll)(void *state, int timeout_ms, export_done_fn done, void *arg);
    /* Make a concurrent or the next poll() return promptly. Thread-safe,
     * async-signal-unsafe; callable from any thread while the exporter lives. */
    void (*wakeup)(void *state);
    /* Abort whatever is in flight (done() is NOT called for those batches;
     * the caller still owns them) and free everything. NULL state is a no-op. */
    void (*destroy)(void *state);
    /*
     * Optional (NULL: none). Register the exporter's own metrics on `reg`;
     * the runner calls it once, after creating the exporter and before the
     * export thread starts. The exporter may add series later from inside
     * poll() (e.g. one per broker it discovers) and may register scrape-time
     * functions that read its state: the registry must not be rendered
     * after destroy() (app/main.c destroys the control plane first).
     * `reg` is borrowed for the exporter's lifetime. Returns 0 or what
     * obs_*_register() returns; the runner fails to start on an error.
     */
    int (*register_metrics)(void *state, struct obs_registry *reg);
};

struct exporter {
    const struct exporter_ops *ops;
    void *state;
};

/*
 * OTLP/HTTP exporter (libcurl multi): POST <exporter.endpoint>/v1/<signal>
 * with application/x-protobuf, optional gzip, configured headers and TLS,
 * up to batch.max_concurrent_exports requests in flight on persistent
 * connections. Result mapping (OTLP spec, "OTLP/HTTP Response"): 2xx -> OK
 * (partial_success decoded); 429, 502, 503, 504, connection errors and
 * timeouts -> RETRYABLE (Retry-After honoured); any other status -> PERMANENT.
 * Returns 0 and *out; -EINVAL (endpoint empty or not http(s)://, cert_file
 * without key_file); -ENOMEM; -EIO (libcurl could not be initialised).
 */
int export_otlp_http_create(const struct svc_config *cfg, struct exporter *out);

/*
 * OTLP/gRPC exporter (nghttp2): each batch is one unary call
 * /opentelemetry.proto.collector.<signal>.v1.<Signal>Service/Export on one
 * persistent HTTP/2 connection to exporter.endpoint's host and port
 * (http://: h2c with prior knowledge; https://: TLS with ALPN h2, verified
 * against tls.ca_file or the system CAs unless tls.insecure, SNI
 * tls.server_name or the host, optional client certificate), up to
 * batch.max_concurrent_exports streams at once within the server's
 * SETTINGS_MAX_CONCURRENT_STREAMS; grpc-encoding gzip with
 * exporter.compression gzip, grpc-timeout from exporter.timeout_ms,
 * exporter.headers as metadata (names lower-cased). A lost connection is
 * made again by the next call. Result mapping (OTLP spec, "OTLP/gRPC
 * Response"): OK -> OK (partial_success decoded); CANCELLED,
 * DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS, and
 * RESOURCE_EXHAUSTED with a google.rpc.RetryInfo -> RETRYABLE (the RetryInfo
 * delay honoured), reason "grpc_<code name>"; other codes PERMANENT; no
 * grpc-status: the HTTP status by gRPC's HTTP-to-status table (reason
 * "http_<status>"); connection problems and the deadline -> RETRYABLE
 * ("connect_failed", "resolve_failed", "tls_error", "connection_error",
 * "timeout"). A batch larger than exporter.grpc_max_msg_bytes goes out as
 * several calls, one after the other, split between items (otlp_split);
 * when one fails, the result carries the items the earlier calls delivered
 * (delivered_items) and b->body is rewritten to the rest, as the load
 * balancer does.
 * Returns 0 and *out; -EINVAL (endpoint empty or not http(s)://host[:port],
 * cert_file without key_file, CA file, certificate or key unreadable);
 * -ENOMEM; -errno of eventfd().
 */
int export_grpc_create(const struct svc_config *cfg, struct exporter *out);

/*
 * File exporter: each batch becomes one line of OTLP JSON appended to
 * <exporter.file.path or service.data_dir/export>/<signal>.jsonl, rotated to
 * <signal>-<UTC time>.jsonl past exporter.file.max_file_bytes, keeping at most
 * exporter.file.max_files rotated files per signal. Disk errors are
 * RETRYABLE ("io_error"); a body that is not valid protobuf PERMANENT
 * ("encode_error"). The directory is created (mkdir -p) here.
 * Returns 0 and *out; -EINVAL (no path and no data_dir); -ENOMEM; a negative
 * errno from mkdir (-EACCES, -ENOTDIR, -EROFS...).
 */
int export_file_create(const struct svc_config *cfg, struct exporter *out);

/*
 * NATS JetStream exporter (libnats; built only when libnats-dev is installed,
 * see export_nats.c): each batch is one JetStream message holding the
 * Export*ServiceRequest protobuf (header Content-Type:
 * application/x-protobuf, plus exporter.headers) on exporter.nats's subject
 * for its signal, published asynchronously with a Nats-Msg-Id that is the
 * same for every retry of the batch, so the stream stores it once (within
 * its duplicate window). Up to min(exporter.nats.max_pending,
 * batch.max_concurrent_exports) publishes await acknowledgement. Result
 * mapping: PubAck -> OK (also when JetStream reports a duplicate);
 * no acknowledgement within exporter.timeout_ms ("timeout"), no stream for
 * the subject ("no_responders"), no server connected ("not_connected") and
 * other JetStream errors -> RETRYABLE; stream limits with discard new
 * ("stream_full"), a message above the server's max_payload or the stream's
 * max_msg_size ("message_too_large"), a sealed stream -> PERMANENT.
 * The connection is retried for ever in the background, so start-up does not
 * need a reachable server; with exporter.nats.create_stream the stream is
 * created once a server answers. register_metrics adds otlp_nats_publishes,
 * _acks, _duplicate_acks, _ack_timeouts, _reconnects (_total counters),
 * otlp_nats_pending_acks and otlp_nats_connected (gauges).
 * Returns 0 and *out; -EINVAL (servers, subject_prefix or stream empty, bad
 * TLS or credentials settings); -EIO (libnats could not create the
 * connection); -ENOMEM; -errno of eventfd().
 */
int export_nats_create(const struct svc_config *cfg, struct exporter *out);

/*
 * Kafka exporter (librdkafka; built only when librdkafka-dev and
 * libxxhash-dev are installed, see export_kafka.c): an idempotent producer
 * (enable.idempotence, acks=all) writing exporter.kafka's topic per signal,
 * each message an Export*ServiceRequest (otlp_proto) or its OTLP JSON
 * (otlp_json). Keys as the OpenTelemetry Collector's Kafka exporter: with
 * partition_traces_by_id a batch is split so each message holds the spans of
 * one trace (regrouped under their Resource and Scope), key = the trace id in
 * lower-case hex; with partition_{metrics,logs}_by_resource_attributes one
 * message per resource, key = the Collector's 16-byte hash of the resource
 * attributes. Partitioner fnv1a_random (Sarama-compatible, the Collector's
 * default). Messages above max_message_bytes are split further. A batch is
 * OK once every message's delivery report succeeded; messages rejected for
 * good (too large, ...) while others were delivered count as rejected items
 * of an OK; any retriable delivery error -> RETRYABLE (the whole batch is
 * produced again: at least once); only permanent errors -> PERMANENT.
 * Reasons "kafka_<librdkafka error name>", e.g. kafka_msg_timed_out.
 * Registers otlp_kafka_* metrics from librdkafka's statistics.
 * Returns 0 and *out; -EINVAL (a librdkafka property refused, see the log);
 * -ENOMEM; -errno of eventfd().
 */
int export_kafka_create(const struct svc_config *cfg, struct exporter *out);

/*
 * Load-balancing exporter (exporter.protocol: loadbalancing; routing in
 * export_lb.h, docs/scaling.md): a consistent-hash ring over the endpoints
 * of exporter.loadbalancing (a static list, or the IPv4 addresses of a DNS
 * name re-resolved every resolve_interval_ms) sends each span to the
 * endpoint of its trace id (or of its resource's service.name), metrics and
 * logs by service.name. A batch is split into one part per endpoint, each
 * regrouped under its Resource and Scope and exported by that endpoint's
 * own otlp_http or grpc exporter (the exporter section's settings with
 * exporter.endpoint = the endpoint) on its own thread. An endpoint that
 * fails retryably is down for a backoff (exporter.retry), during which its
 * parts fail at once but for one probe, so the others keep flowing. A batch
 * whose parts all succeeded is OK (parts refused for good: rejected_items);
 * with parts to retry it is RETRYABLE with b->body rewritten to those parts
 * and delivered_items/rejected_items set; only refused parts: PERMANENT.
 * register_metrics adds otlp_lb_endpoints, otlp_lb_endpoint_healthy{endpoint},
 * otlp_lb_exports_total{endpoint,result}, otlp_lb_items_total{endpoint} and
 * otlp_lb_resolves_total{result}. The strings of `cfg` are borrowed for the
 * exporter's lifetime (endpoints made later copy the config).
 * Returns 0 and *out; -EINVAL (no endpoints or hostname, or what a child
 * constructor refuses); -ENOMEM; -errno of eventfd() or pthread_create().
 */
int export_lb_create(const struct svc_config *cfg, struct exporter *out);

/* The "discard" exporter: every batch is reported exported at once and its
 * bytes are discarded. For benchmarks of the ingest path. Returns 0,
 * -EINVAL, -ENOMEM, -errno of eventfd(). */
int export_discard_create(const struct svc_config *cfg, struct exporter *out);

/* Create the exporter cfg->exporter.protocol names. Returns what that
 * constructor returns, or -ENOTSUP for a protocol without an exporter. */
int exporter_create(const struct svc_config *cfg, struct exporter *out);

/* Destroy an exporter made by one of the constructors (ops may be NULL). */
void exporter_destroy(struct exporter *e);

/* ---- helpers shared by the exporters and the runner; public for tests ---- */

/*
 * Parse an HTTP Retry-After field value (RFC 9110 10.2.3): delay-seconds, or
 * an HTTP-date in any of the three formats of RFC 9110 5.6.7 (IMF-fixdate,
 * obsolete RFC 850, asctime), relative to `now_wall_s` (Unix seconds).
 * `v` is `len` bytes (need not be NUL-terminated); surrounding whitespace is
 * ignored. A date in the past gives 0. The result is capped at 24 h.
 * Returns 0 and *ms_out; -EINVAL for anything else (empty, negative,
 * fractional, trailing garbage, invalid date).
 */
int export_parse_retry_after(const char *v, size_t len, int64_t now_wall_s, uint32_t *ms_out);

/*
 * Decode an Export{Trace,Metrics,Logs}ServiceResponse (they share one wire
 * shape: 1 partial_success { 1 rejected_<items> int64, 2 error_message }).
 * Unknown fields are skipped. *rejected gets the rejected count (0 when
 * absent); msg (msg_len bytes, NUL-terminated, may be NULL) the error
 * message, control characters replaced by '?'.
 * Returns 0; -EINVAL for malformed protobuf.
 */
int export_parse_partial_success(const uint8_t *pb, size_t len, uint64_t *rejected, char *msg,
                                 size_t msg_len);

/*
 * Decode a google.rpc.Status (1 code, 2 message, 3 details) as OTLP servers
 * send with non-2xx responses, and copy its message like above.
 * Returns 0; -EINVAL for malformed protobuf or no message field.
 */
int export_parse_status_message(const uint8_t *pb, size_t len, char *msg, size_t msg_len);

#endif
