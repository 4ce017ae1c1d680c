/* SPDX-License-Identifier: Apache-2.0 */
/* Common helpers every module uses: branch hints, a growable byte buffer
 * with a hard capacity, and monotonic clocks. No module state lives here. */
#ifndef OTLP_BASE_H
#define OTLP_BASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define BASE_CACHE_LINE 64
#define BASE_MIN(a, b) ((a) < (b) ? (a) : (b))
#define BASE_MAX(a, b) ((a) > (b) ? (a) : (b))

/*
 * A byte buffer. `cap` is the allocated size; `limit` is the most it may ever
 * grow to (0 means no limit). buf_reserve() and buf_append() grow up to the
 * limit and return -EMSGSIZE beyond it, -ENOMEM if allocation fails.
 * Hot-path users allocate once at start (buf_init with cap == limit) so no
 * allocation happens per request.
 */
struct buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t limit;
    bool external; /* buf_init_fixed(): storage not ours, never grown or freed */
};

/* Allocate `cap` bytes up front; `limit` caps growth (0: unbounded).
 * Returns 0, -ENOMEM. */
int buf_init(struct buf *b, size_t cap, size_t limit);
/* Use `cap` bytes at `storage` (borrowed; the caller frees it after the
 * buf) as a buffer that never grows: cap == limit, so buf_reserve() returns
 * -EMSGSIZE beyond `cap` and never allocates; buf_free() leaves the storage
 * alone. For pools allocated once at start (DPDK hugepage batch bodies). */
void buf_init_fixed(struct buf *b, void *storage, size_t cap);
/* Frees the storage (not external storage); a zeroed or already freed buf
 * is fine. */
void buf_free(struct buf *b);
/* Make room for `extra` more bytes. Returns 0, -EMSGSIZE, -ENOMEM. */
int buf_reserve(struct buf *b, size_t extra);
/* Append `n` bytes. Returns 0, -EMSGSIZE, -ENOMEM. */
int buf_append(struct buf *b, const void *p, size_t n);
/* Append a NUL-terminated string (without the NUL). */
int buf_append_str(struct buf *b, const char *s);
/* printf-style append. Returns 0, -EMSGSIZE, -ENOMEM. */
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void buf_reset(struct buf *b) { b->len = 0; }
/* Remove the first `n` bytes, moving the rest to the front. */
void buf_consume(struct buf *b, size_t n);

/* Monotonic clock. */
uint64_t base_now_ns(void);
uint64_t base_now_ms(void);
/* Wall clock, nanoseconds since the Unix epoch. */
uint64_t base_wall_ns(void);

#endif
