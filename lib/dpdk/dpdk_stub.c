/* SPDX-License-Identifier: Apache-2.0 */
/* Built instead of the DPDK transport when libdpdk is not installed: the
 * app links the same interface and refuses dataplane.mode: dpdk at start. */
#include <errno.h>

#include "dpdk/dpdk_server.h"
#include "obs/log.h"

int dpdk_eal_start(const struct svc_config *cfg, unsigned n_workers)
{
    (void)cfg;
    (void)n_workers;
    log_error("dataplane.mode dpdk is not available: built without libdpdk "
              "(install libdpdk-dev and rebuild)", "");
    return -ENOTSUP;
}

void dpdk_eal_stop(void)
{
}

const struct pipeline_env *dpdk_pipeline_env(const struct svc_config *cfg)
{
    (void)cfg;
    return NULL;
}

int dpdk_export_start(struct export_runner *r, unsigned n_workers, struct obs_registry *reg)
{
    (void)r;
    (void)n_workers;
    (void)reg;
    return -ENOTSUP;
}

int dpdk_server_create(const struct svc_config *cfg, struct receiver *r, struct grpc_receiver *gr,
                       struct pipeline *p, struct obs_registry *reg, unsigned n_workers,
                       struct dpdk_server **out)
{
    (void)cfg;
    (void)r;
    (void)gr;
    (void)p;
    (void)reg;
    (void)n_workers;
    (void)out;
    return -ENOTSUP;
}

int dpdk_server_set_tls(struct dpdk_server *s, struct tls_ctx *tls)
{
    (void)s;
    (void)tls;
    return -ENOTSUP;
}

int dpdk_server_start(struct dpdk_server *s)
{
    (void)s;
    return -ENOTSUP;
}

void dpdk_server_stop(struct dpdk_server *s, uint64_t deadline_ms)
{
    (void)s;
    (void)deadline_ms;
}

void dpdk_server_destroy(struct dpdk_server *s)
{
    (void)s;
}
