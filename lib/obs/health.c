/* SPDX-License-Identifier: Apache-2.0 */
/* Health state: per-component ok flags and reasons in atomics, combined into
 * the liveness, readiness and start-up answers of the control plane. */
#include "obs/health.h"

#include <errno.h>
#include <string.h>

#include "obs/log.h"
#include "obs/obs_internal.h"

#define HEALTH_NOT_REPORTED "not reported"

static const char *const component_names[] = {
#define HEALTH_NAME_(id, name) name,
    HEALTH_COMPONENTS(HEALTH_NAME_)
#undef HEALTH_NAME_
};

#define HEALTH_INIT_REASON_(id, name) HEALTH_NOT_REPORTED,
static bool comp_ok[HEALTH_COMPONENT_COUNT];
static const char *comp_reason[HEALTH_COMPONENT_COUNT] = {
    HEALTH_COMPONENTS(HEALTH_INIT_REASON_)};
static bool started;
static bool stopping;
static const char *fatal_reason; /* NULL: not fatal */

const char *health_component_name(enum health_component c)
{
    return (unsigned)c < HEALTH_COMPONENT_COUNT ? component_names[c] : "unknown";
}

void health_set(enum health_component c, bool ok, const char *reason)
{
    if ((unsigned)c >= HEALTH_COMPONENT_COUNT)
        return;
    if (reason == NULL)
        reason = "";
    /* Reason first: a reader that sees the new ok also sees its reason. */
    __atomic_store_n(&comp_reason[c], reason, __ATOMIC_RELEASE);
    bool was = __atomic_exchange_n(&comp_ok[c], ok, __ATOMIC_ACQ_REL);
    if (was != ok) {
        if (ok)
            log_info("component healthy", "component=%s", component_names[c]);
        else
            log_warn("component unhealthy", "component=%s reason=%s", component_names[c], reason);
    }
}

void health_set_started(void)
{
    if (!__atomic_exchange_n(&started, true, __ATOMIC_ACQ_REL))
        log_info("started", "");
}

void health_set_stopping(void)
{
    if (!__atomic_exchange_n(&stopping, true, __ATOMIC_ACQ_REL))
        log_info("stopping: readiness off", "");
}

void health_set_fatal(const char *reason)
{
    if (reason == NULL || reason[0] == '\0')
        reason = "fatal";
    if (__atomic_exchange_n(&fatal_reason, reason, __ATOMIC_ACQ_REL) == NULL)
        log_error("fatal: liveness off", "reason=%s", reason);
}

bool health_live(void)
{
    return __atomic_load_n(&fatal_reason, __ATOMIC_ACQUIRE) == NULL;
}

bool health_started(void)
{
    return __atomic_load_n(&started, __ATOMIC_ACQUIRE);
}

bool health_ready(void)
{
    if (!health_started() || __atomic_load_n(&stopping, __ATOMIC_ACQUIRE) || !health_live())
        return false;
    for (unsigned c = 0; c < HEALTH_COMPONENT_COUNT; c++)
        if (!__atomic_load_n(&comp_ok[c], __ATOMIC_ACQUIRE))
            return false;
    return true;
}

void health_reset(void)
{
    for (unsigned c = 0; c < HEALTH_COMPONENT_COUNT; c++) {
        __atomic_store_n(&comp_reason[c], HEALTH_NOT_REPORTED, __ATOMIC_RELEASE);
        __atomic_store_n(&comp_ok[c], false, __ATOMIC_RELEASE);
    }
    __atomic_store_n(&started, false, __ATOMIC_RELEASE);
    __atomic_store_n(&stopping, false, __ATOMIC_RELEASE);
    __atomic_store_n(&fatal_reason, NULL, __ATOMIC_RELEASE);
}

/* Append s as a JSON string (quotes included). */
static int put_json_str(struct buf *out, const char *s)
{
    size_t n = strlen(s);
    if (n > (SIZE_MAX - 2) / 6)
        return -EMSGSIZE;
    int rc = buf_reserve(out, n * 6 + 2);
    if (rc < 0)
        return rc;
    char *d = (char *)out->data + out->len;
    d[0] = '"';
    size_t o = 1 + obs_json_escape(d + 1, n * 6, s, n, NULL);
    d[o++] = '"';
    out->len += o;
    return 0;
}

int health_render_json(struct buf *out)
{
    if (out == NULL)
        return -EINVAL;
    bool ready = health_ready();
    const char *fatal = __atomic_load_n(&fatal_reason, __ATOMIC_ACQUIRE);
    int rc = buf_printf(out, "{\"status\":\"%s\",\"started\":%s,\"stopping\":%s,",
                        ready ? "ready" : "not_ready", health_started() ? "true" : "false",
                        __atomic_load_n(&stopping, __ATOMIC_ACQUIRE) ? "true" : "false");
    if (rc == 0 && fatal != NULL) {
        rc = buf_append_str(out, "\"fatal\":");
        if (rc == 0)
            rc = put_json_str(out, fatal);
        if (rc == 0)
            rc = buf_append_str(out, ",");
    }
    if (rc == 0)
        rc = buf_append_str(out, "\"components\":{");
    for (unsigned c = 0; c < HEALTH_COMPONENT_COUNT && rc == 0; c++) {
        bool ok = __atomic_load_n(&comp_ok[c], __ATOMIC_ACQUIRE);
        const char *reason = __atomic_load_n(&comp_reason[c], __ATOMIC_ACQUIRE);
        rc = buf_printf(out, "%s\"%s\":{\"ok\":%s,\"reason\":", c > 0 ? "," : "",
                        component_names[c], ok ? "true" : "false");
        if (rc == 0)
            rc = put_json_str(out, reason);
        if (rc == 0)
            rc = buf_append_str(out, "}");
    }
    if (rc == 0)
        rc = buf_append_str(out, "}}");
    return rc;
}
