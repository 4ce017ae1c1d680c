/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for lib/grpc: the input (after the HTTP/2 client
 * preface, which is prepended so the fuzzer starts past it) is fed to one
 * connection, whole or in pieces, with the pipeline drained between pieces
 * as the exporter would; invariants are checked after every call.
 * Input: flags, chunk, then the client's bytes after the preface.
 *   flags bits 0-1: 0 whole, 1 byte by byte, 2/3 pieces of `chunk` bytes;
 *   bit 2: expire requests at the end; bit 3: graceful shutdown at the end;
 *   bit 4: draining; bit 5: tiny queue (pressure, stalls). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "config/config.h"
#include "grpc/grpc_receiver.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "pipeline/pipeline.h"

struct env {
    struct svc_config cfg;
    struct pipeline *pl;
    struct obs_registry *reg;
    struct grpc_receiver *gr;
    struct grpc_worker *gw;
};

static struct env envs[2]; /* normal, tiny queue */

static void env_init(struct env *e, bool tiny_queue)
{
    config_defaults(&e->cfg);
    e->cfg.receiver.grpc_max_recv_msg_bytes = 64 * 1024;
    e->cfg.receiver.max_decompressed_bytes = 256 * 1024;
    e->cfg.receiver.max_header_bytes = 4096;
    e->cfg.receiver.max_headers = 32;
    e->cfg.batch.max_queue_size = tiny_queue ? 4 : 100000;
    e->cfg.batch.max_export_batch_size = tiny_queue ? 4 : 1000;
    e->cfg.batch.max_batch_bytes = 256 * 1024;
    if (pipeline_create(&e->cfg, 1, &e->pl) < 0 || obs_registry_create(1, 4096, &e->reg) < 0 ||
        grpc_receiver_create(&e->cfg, e->pl, e->reg, 1, &e->gr) < 0 ||
        grpc_worker_create(e->gr, 0, &e->gw) < 0)
        abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR);
    env_init(&envs[0], false);
    env_init(&envs[1], true);
    return 0;
}

static void drain(struct env *e, bool all)
{
    pipeline_tick(e->pl, 0, base_now_ms(), all);
    struct batch *b;
    while ((b = pipeline_dequeue(e->pl)) != NULL)
        pipeline_release(e->pl, b);
}

static void check(const struct grpc_conn *c, const struct env *e, const struct buf *out)
{
    if (c->n_receiving > c->n_active || c->n_active > GRPC_MAX_STREAMS)
        abort();
    /* buffered: the budget, one head message, one stream window per other */
    uint64_t msg = e->cfg.receiver.grpc_max_recv_msg_bytes + 5;
    if (c->buffered_bytes > 2 * msg + (uint64_t)GRPC_MAX_STREAMS * (1u << 20))
        abort();
    if (c->n_active == 0 && (c->buffered_bytes != 0 || c->held_bytes != 0))
        abort();
    if (out->len > GRPC_OUT_HIGH_WATER + 32 * 1024)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t flags = data[0];
    size_t chunk = data[1] ? data[1] : 1;
    data += 2;
    size -= 2;
    struct env *e = &envs[(flags >> 5) & 1];
    grpc_receiver_set_draining(e->gr, (flags & 0x10) != 0);

    uint8_t *in = malloc(NGHTTP2_CLIENT_MAGIC_LEN + size + 1);
    if (in == NULL)
        return 0;
    memcpy(in, NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN);
    if (size > 0)
        memcpy(in + NGHTTP2_CLIENT_MAGIC_LEN, data, size);
    size_t len = NGHTTP2_CLIENT_MAGIC_LEN + size;

    struct grpc_conn c;
    struct buf out;
    if (buf_init(&out, 0, 0) < 0 || grpc_conn_init(&c, e->gw) < 0)
        abort();
    size_t step = (flags & 3) == 0 ? len : (flags & 3) == 1 ? 1 : chunk;
    int rc = GRPC_KEEP;
    for (size_t off = 0; off < len && rc == GRPC_KEEP; off += step) {
        size_t n = len - off < step ? len - off : step;
        rc = grpc_conn_input(&c, in + off, n, &out);
        check(&c, e, &out);
        buf_reset(&out);
        while (rc == GRPC_KEEP && grpc_conn_want_write(&c)) {
            rc = grpc_conn_output(&c, &out);
            check(&c, e, &out);
            if (out.len == 0)
                break;
            buf_reset(&out);
        }
        drain(e, false);
        if (rc == GRPC_KEEP && grpc_conn_stalled(&c))
            rc = grpc_conn_output(&c, &out);
        buf_reset(&out);
    }
    if (rc == GRPC_KEEP && (flags & 4)) {
        uint64_t dl = grpc_conn_deadline_ns(&c);
        if ((dl != 0) != grpc_conn_busy(&c))
            abort();
        rc = grpc_conn_expire(&c, dl != 0 ? dl : base_now_ns(), &out);
        check(&c, e, &out);
        if (rc == GRPC_KEEP && grpc_conn_busy(&c) && grpc_conn_deadline_ns(&c) <= dl)
            abort(); /* everything due was answered */
        buf_reset(&out);
    }
    if (rc == GRPC_KEEP && (flags & 8)) {
        grpc_conn_shutdown(&c, &out);
        check(&c, e, &out);
    }
    grpc_conn_fini(&c);
    buf_free(&out);
    free(in);
    drain(e, true);
    if (pipeline_queued_items(e->pl) != 0)
        abort();
    return 0;
}
