/* SPDX-License-Identifier: Apache-2.0 */
/* Byte buffers and clocks shared by all modules. */
#include "base/base.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int buf_init(struct buf *b, size_t cap, size_t limit)
{
    b->external = false;
    b->len = 0;
    b->limit = limit;
    b->cap = 0;
    b->data = NULL;
    if (cap == 0)
        return 0;
    b->data = malloc(cap);
    if (b->data == NULL)
        return -ENOMEM;
    b->cap = cap;
    return 0;
}

void buf_init_fixed(struct buf *b, void *storage, size_t cap)
{
    b->data = storage;
    b->len = 0;
    b->cap = b->limit = cap;
    b->external = true;
}

void buf_free(struct buf *b)
{
    if (b == NULL)
        return;
    if (!b->external)
        free(b->data);
    b->external = false;
    b->data = NULL;
    b->len = b->cap = 0;
}

int buf_reserve(struct buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len)
        return -EMSGSIZE;
    size_t need = b->len + extra;
    if (need <= b->cap)
        return 0;
    if (b->external || (b->limit != 0 && need > b->limit))
        return -EMSGSIZE;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < need)
        ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
    if (b->limit != 0 && ncap > b->limit)
        ncap = b->limit;
    uint8_t *p = realloc(b->data, ncap);
    if (p == NULL)
        return -ENOMEM;
    b->data = p;
    b->cap = ncap;
    return 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
    int rc = buf_reserve(b, n);
    if (rc < 0)
        return rc;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int buf_append_str(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[512];
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    if ((size_t)n < sizeof(tmp))
        return buf_append(b, tmp, (size_t)n);
    int rc = buf_reserve(b, (size_t)n + 1);
    if (rc < 0)
        return rc;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

uint64_t base_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t base_now_ms(void)
{
    return base_now_ns() / 1000000ull;
}

uint64_t base_wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
