/* SPDX-License-Identifier: Apache-2.0 */
/* SPSC ring set-up; push/pop are inline in ring.h. */
#include "pipeline/ring.h"

#include <errno.h>
#include <stdlib.h>

int spsc_ring_init(struct spsc_ring *r, size_t cap)
{
    size_t n = 1;
    while (n < cap)
        n <<= 1;
    r->slots = calloc(n, sizeof(void *));
    if (r->slots == NULL)
        return -ENOMEM;
    r->mask = n - 1;
    atomic_store(&r->head, 0);
    atomic_store(&r->tail, 0);
    return 0;
}

void spsc_ring_fini(struct spsc_ring *r)
{
    free(r->slots);
    r->slots = NULL;
}
