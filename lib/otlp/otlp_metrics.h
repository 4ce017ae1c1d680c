/* SPDX-License-Identifier: Apache-2.0 */
/* The per-signal item counters both OTLP receivers (lib/receiver: HTTP,
 * lib/grpc: gRPC) share: one family per signal (otlp_spans_<what>_total,
 * otlp_metric_points_<what>_total, otlp_log_records_<what>_total), each
 * receiver adding its own series labelled protocol="http" or "grpc".
 * Header-only: its users link lib/obs already, lib/otlp does not. */
#ifndef OTLP_METRICS_H
#define OTLP_METRICS_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>

#include "obs/metrics.h"
#include "otlp/otlp.h"

/* Register the series `label` (e.g. "protocol=\"http\"") of the families
 * otlp_<items>_<what>_total for every signal, back to back, so that the id
 * of signal s is *id + s. Returns 0, or obs_counter_register()'s error
 * (-EINVAL when the ids are not consecutive). */
static inline int otlp_register_item_counters(struct obs_registry *reg, const char *what,
                                              const char *help, const char *label, uint32_t *id)
{
    for (int s = 0; s < OTLP_SIGNAL_COUNT; s++) {
        char name[96];
        snprintf(name, sizeof(name), "otlp_%s_%s_total", otlp_signal_items[s], what);
        const char *lbl[1] = {label};
        uint32_t sid;
        int rc = obs_counter_register(reg, name, help, lbl, 1, &sid);
        if (rc < 0)
            return rc;
        if (s == 0)
            *id = sid;
        else if (sid != *id + (uint32_t)s)
            return -EINVAL;
    }
    return 0;
}

#endif
