/* SPDX-License-Identifier: Apache-2.0 */
/* sd_notify(3) through libsystemd when the build has it (HAVE_LIBSYSTEMD). */
#include "obs/sdnotify.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "obs/log.h"

static bool getenv_nonempty(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0';
}

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>

static bool enabled;
static uint64_t watchdog_ms;
static uint64_t last_ping_ms;

bool sdnotify_init(void)
{
    uint64_t usec = 0;
    /* unset_environment 0: children (none) and tests may read it again. */
    int rc = sd_watchdog_enabled(0, &usec);
    watchdog_ms = rc > 0 ? usec / 1000u : 0;
    if (rc > 0 && watchdog_ms == 0)
        watchdog_ms = 1;
    /* Not sd_booted(): NOTIFY_SOCKET is what a Type=notify unit provides. */
    enabled = getenv_nonempty("NOTIFY_SOCKET");
    if (enabled)
        log_info("systemd notification enabled", "watchdog_ms=%llu",
                 (unsigned long long)watchdog_ms);
    return enabled;
}

static void notify(const char *state)
{
    if (!enabled)
        return;
    int rc = sd_notify(0, state);
    if (rc < 0)
        log_warn("sd_notify failed", "state=%s error=%d", state, -rc);
}

void sdnotify_ready(const char *status)
{
    char msg[256];
    snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", status ? status : "");
    notify(msg);
}

void sdnotify_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char msg[96];
    snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000u);
    notify(msg);
}

void sdnotify_stopping(const char *status)
{
    char msg[256];
    snprintf(msg, sizeof(msg), "STOPPING=1\nSTATUS=%s", status ? status : "");
    notify(msg);
}

void sdnotify_watchdog(uint64_t now_ms)
{
    if (!enabled || watchdog_ms == 0 || now_ms - last_ping_ms < watchdog_ms / 2)
        return;
    last_ping_ms = now_ms;
    notify("WATCHDOG=1");
}

uint64_t sdnotify_watchdog_ms(void)
{
    return watchdog_ms;
}

#else /* !HAVE_LIBSYSTEMD */

bool sdnotify_init(void)
{
    if (getenv_nonempty("NOTIFY_SOCKET"))
        log_warn("NOTIFY_SOCKET is set but this build has no libsystemd: no READY=1 will be sent",
                 "");
    return false;
}
void sdnotify_ready(const char *status)
{
    (void)status;
}
void sdnotify_reloading(void) {}
void sdnotify_stopping(const char *status)
{
    (void)status;
}
void sdnotify_watchdog(uint64_t now_ms)
{
    (void)now_ms;
}
uint64_t sdnotify_watchdog_ms(void)
{
    return 0;
}
#endif
