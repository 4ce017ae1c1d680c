/* SPDX-License-Identifier: Apache-2.0 */
/* OTLP signal names shared by the receiver, batches, exporters and metrics. */
#ifndef OTLP_OTLP_H
#define OTLP_OTLP_H

/* X(enum, lower name, url path, item name used in metric names) */
#define OTLP_SIGNALS(X)                                   \
    X(TRACES, traces, "/v1/traces", spans)                \
    X(METRICS, metrics, "/v1/metrics", metric_points)     \
    X(LOGS, logs, "/v1/logs", log_records)

enum otlp_signal {
#define X(e, n, p, i) OTLP_##e,
    OTLP_SIGNALS(X)
#undef X
    OTLP_SIGNAL_COUNT
};

static const char *const otlp_signal_names[] = {
#define X(e, n, p, i) #n,
    OTLP_SIGNALS(X)
#undef X
};

static const char *const otlp_signal_paths[] = {
#define X(e, n, p, i) p,
    OTLP_SIGNALS(X)
#undef X
};

static const char *const otlp_signal_items[] = {
#define X(e, n, p, i) #i,
    OTLP_SIGNALS(X)
#undef X
};

#endif
