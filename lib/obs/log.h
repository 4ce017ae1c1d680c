/* SPDX-License-Identifier: Apache-2.0 */
/* Structured logs: one JSON object per line on stderr, written with a single
 * write(2) so lines from different threads never interleave. Every module
 * logs through the log_debug/info/warn/error macros below. */
#ifndef OTLP_OBS_LOG_H
#define OTLP_OBS_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Longest line written, newline included. Equal to PIPE_BUF on Linux, so a
 * line written to a pipe is atomic. Longer lines are truncated (see
 * log_write). */
#define LOG_LINE_MAX 4096
/* Longest escaped string value (msg or a %s field) before it is cut with "…". */
#define LOG_VALUE_MAX 1024

/* Minimum level that is written; read on every log macro. Use the functions. */
extern int log_level_threshold;

/* Set the minimum level written (default LOG_INFO). Thread-safe. */
void log_set_level(enum log_level l);

/* Current minimum level. Cheap: one relaxed load. */
static inline enum log_level log_get_level(void)
{
    return (enum log_level)__atomic_load_n(&log_level_threshold, __ATOMIC_RELAXED);
}

/* Parse "debug", "info", "warn", "warning" or "error" (any case) into *out.
 * Returns 0, or -EINVAL (s NULL or unknown; *out untouched). */
int log_level_parse(const char *s, enum log_level *out);

/* Name of a level as written in the "level" field ("debug".."error"). */
const char *log_level_name(enum log_level l);

/* Send lines to fd instead of stderr (2); for tests and log redirection.
 * The fd is borrowed: the caller keeps it open while logging can happen. */
void log_set_fd(int fd);

/*
 * Write one line {"time":"<RFC 3339 UTC, ms>","level":"..","msg":"..",<fields>}
 * if lvl is enabled. fields_fmt is a space-separated list of key=VALUE items,
 * VALUE a printf template for the arguments that follow:
 *   "port=%d addr=%s"  ->  "port":4318,"addr":"0.0.0.0"
 * A value that is a single conversion is typed: integer conversions (any
 * length modifier, so PRIu64/PRId64 work) and %f/%e/%g become JSON numbers,
 * %x/%X/%o/%p strings such as "0x1f", %s an escaped string (NULL -> null;
 * %.*s honoured), %c a one-character string; non-finite floats become the
 * strings "inf"/"nan". A value with literal text or several conversions
 * ("dur=%dms", "peer=%s:%u") is formatted with printf and written as a string.
 * An item without '=' is written under the key "_". Keys should not repeat
 * time/level/msg.
 * Strings are JSON-escaped (control characters, quote, backslash) and
 * ill-formed UTF-8 becomes U+FFFD. msg and each string value are cut at
 * LOG_VALUE_MAX bytes with "…"; when the line would exceed LOG_LINE_MAX the
 * remaining fields are left out and "truncated":true is added. The line is
 * built on the stack and written with one write(2); a line that cannot be
 * written (EAGAIN, EPIPE...) is counted in log_dropped_total().
 * Use the macros, which skip the formatting when the level is disabled (and
 * accept an empty fields_fmt "" without a -Wformat-zero-length warning).
 */
void log_write(enum log_level lvl, const char *msg, const char *fields_fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Lines that could not be written since start (for a metrics counter). */
uint64_t log_dropped_total(void);

/* log_xxx(msg, fields_fmt, args...): callers always pass msg and fields_fmt. */
#define LOG_AT_(lvl, ...)                                                                          \
    do {                                                                                           \
        if ((lvl) >= log_get_level()) {                                                            \
            _Pragma("GCC diagnostic push")                                                         \
            _Pragma("GCC diagnostic ignored \"-Wformat-zero-length\"")                             \
            log_write((lvl), __VA_ARGS__);                                                         \
            _Pragma("GCC diagnostic pop")                                                          \
        }                                                                                          \
    } while (0)
#define log_debug(...) LOG_AT_(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) LOG_AT_(LOG_INFO, __VA_ARGS__)
#define log_warn(...) LOG_AT_(LOG_WARN, __VA_ARGS__)
#define log_error(...) LOG_AT_(LOG_ERROR, __VA_ARGS__)

/*
 * Fixed-window limiter for logs on hot paths: at most `burst` calls return
 * true per `interval_ms` window. Caller-owned; zero-initialise it
 * (LOG_RATELIMIT_INIT). Not thread-safe: keep one per thread/lcore.
 * When a call returns true, rl->suppressed is the number of calls refused
 * since the previous true return, so the line can report it:
 *   static __thread struct log_ratelimit rl = LOG_RATELIMIT_INIT;
 *   if (log_ratelimit(&rl, 1000, 5))
 *       log_warn("queue full", "dropped_since_last=%u", rl.suppressed);
 * interval_ms == 0 allows every call; burst == 0 refuses every call.
 */
struct log_ratelimit {
    uint64_t window_start_ms;
    unsigned in_window;   /* calls allowed in the current window */
    unsigned refused;     /* calls refused since the last allowed one */
    unsigned suppressed;  /* set on an allowed call: refused before it */
};
#define LOG_RATELIMIT_INIT {0, 0, 0, 0}

bool log_ratelimit(struct log_ratelimit *rl, uint64_t interval_ms, unsigned burst);

#endif
