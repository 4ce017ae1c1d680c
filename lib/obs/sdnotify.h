/* SPDX-License-Identifier: Apache-2.0 */
/* The systemd service notification protocol (sd_notify(3)) for Type=notify
 * units: READY=1 once the listeners accept traffic, RELOADING=1/READY=1
 * around a SIGHUP reload, STOPPING=1 at the start of the graceful stop,
 * STATUS= lines, and WATCHDOG=1 keep-alives at half of WatchdogSec= while
 * the process is live. Outside systemd (no $NOTIFY_SOCKET) every call is a
 * cheap no-op; built without libsystemd likewise. Main thread only. */
#ifndef OTLP_SDNOTIFY_H
#define OTLP_SDNOTIFY_H

#include <stdbool.h>
#include <stdint.h>

/* Read $NOTIFY_SOCKET and the watchdog interval ($WATCHDOG_USEC for this
 * process). Returns true when systemd listens for notifications. */
bool sdnotify_init(void);

/* READY=1 with a STATUS= line. */
void sdnotify_ready(const char *status);

/* RELOADING=1 (plus MONOTONIC_USEC=, as systemd 253+ Type=notify-reload
 * expects) before a reload; call sdnotify_ready() after it. */
void sdnotify_reloading(void);

/* STOPPING=1 with a STATUS= line. */
void sdnotify_stopping(const char *status);

/* Send WATCHDOG=1 when the watchdog is enabled and half of its interval has
 * passed since the last keep-alive (now_ms: base_now_ms()). Call it often
 * (the main loop does every 100 ms) and only while the process is healthy:
 * a missed keep-alive makes systemd restart the service. */
void sdnotify_watchdog(uint64_t now_ms);

/* The watchdog interval in ms, 0 when none is set. */
uint64_t sdnotify_watchdog_ms(void);

#endif
