/* SPDX-License-Identifier: Apache-2.0 */
/* Process health behind the control plane's /health/live, /health/ready and
 * /health/startup: each component reports ok/not ok from any thread; the
 * probes read the combined state. */
#ifndef OTLP_OBS_HEALTH_H
#define OTLP_OBS_HEALTH_H

#include <stdbool.h>

#include "base/base.h"

/* Components whose state gates readiness: X(enum suffix, JSON name). */
#define HEALTH_COMPONENTS(X)                                                                       \
    X(RECEIVER, "receiver")                                                                        \
    X(EXPORTER, "exporter")                                                                        \
    X(PIPELINE, "pipeline")

enum health_component {
#define HEALTH_ENUM_(id, name) HEALTH_##id,
    HEALTH_COMPONENTS(HEALTH_ENUM_)
#undef HEALTH_ENUM_
    HEALTH_COMPONENT_COUNT
};

/*
 * Report component c's state. reason must be a string with static lifetime
 * (it is kept by pointer), "" or NULL when ok. Any thread, lock-free. Every
 * component starts not ok with reason "not reported", so readiness needs
 * each one to report in. A change of ok is logged (warn when it turns bad).
 * An out-of-range c is ignored.
 */
void health_set(enum health_component c, bool ok, const char *reason);

/* Start-up finished (config loaded, ports open): /health/startup turns 200. */
void health_set_started(void);

/* Graceful shutdown began: readiness drops so load balancers drain us while
 * liveness stays true. */
void health_set_stopping(void);

/* Something is wedged beyond recovery (e.g. a worker stopped polling): the
 * liveness probe fails so the orchestrator restarts the process. reason as
 * in health_set(). */
void health_set_fatal(const char *reason);

/* Liveness: true unless health_set_fatal() was called. */
bool health_live(void);

/* Readiness: started, not stopping, not fatal, and every component ok. */
bool health_ready(void);

/* Start-up probe: health_set_started() was called. */
bool health_started(void);

/* JSON name of a component ("receiver"...), "unknown" when out of range. */
const char *health_component_name(enum health_component c);

/*
 * Append {"status":"ready"|"not_ready","started":b,"stopping":b,
 * "components":{"receiver":{"ok":true,"reason":""},...}} to out (borrowed);
 * a "fatal":"reason" member is added once health_set_fatal() was called.
 * Returns 0, -EMSGSIZE, -ENOMEM (out may hold a partial document).
 */
int health_render_json(struct buf *out);

/* Back to the initial state (nothing started, every component unreported).
 * For tests. */
void health_reset(void);

#endif
