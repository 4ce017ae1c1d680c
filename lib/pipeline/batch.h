/* SPDX-License-Identifier: Apache-2.0 */
/* A batch: the concatenated top-level Resource* entries of many requests of
 * one signal, i.e. a valid Export*ServiceRequest body, plus the bookkeeping
 * the exporter needs for retries. Batches come from a pool allocated at start. */
#ifndef OTLP_BATCH_H
#define OTLP_BATCH_H

#include <stdint.h>

#include "base/base.h"
#include "otlp/otlp.h"

struct batch {
    enum otlp_signal signal;
    struct buf body;            /* Export*ServiceRequest protobuf bytes */
    uint64_t items;             /* spans, data points or log records in body */
    uint32_t requests;          /* client requests merged into it */
    uint16_t worker;            /* which worker filled it */
    uint64_t created_ms;        /* monotonic; when the first request went in */
    /* exporter bookkeeping */
    uint32_t attempts;
    uint64_t first_attempt_ms;
    uint64_t next_attempt_ms;
    struct batch *next;         /* free list / retry list link */
    /* durability: spool: the worker's write-ahead log segments
     * [wal_lo, wal_lo + wal_n) hold this batch's requests; one reference on
     * each, dropped by pipeline_release() */
    uint32_t wal_lo, wal_n;
};

#endif
