/* SPDX-License-Identifier: Apache-2.0 */
/* Load-balancing exporter (exporter.protocol: loadbalancing): each batch is
 * split by trace id (or service.name) over a consistent-hash ring of OTLP
 * endpoints (export_lb_ring.c), one part per endpoint, regrouped under its
 * Resource and Scope (lib/otlp/otlp_split.h). Every endpoint has its own
 * child exporter (otlp_http or grpc) driven by its own thread, its own
 * in-flight parts and its own health, so a failing endpoint never holds up
 * the others; what it did not take goes back to the runner as the rest of
 * the batch (export_result.delivered_items). A resolver thread re-resolves
 * exporter.loadbalancing.hostname (dns); the export thread applies a new
 * endpoint set between polls. */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/base.h"
#include "export/export.h"
#include "export/export_lb.h"
#include "export/exporter.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "otlp/otlp.h"
#include "otlp/otlp_split.h"

/* Longest wait of an endpoint thread in its child's poll (it returns at
 * once on a wakeup). */
#define LB_CHILD_POLL_MS 100
/* Endpoint URLs that ever had metric series (removed ones keep theirs). */
#define LB_MAX_STATS 256
#define LB_URL_MAX 256

/* X(enum suffix, label value) of otlp_lb_exports_total{result}: one per part. */
#define LB_RESULTS(X)                                                                              \
    X(SUCCESS, "success") /* accepted (maybe partially) */                                         \
    X(RETRY, "retry")     /* retryable failure, or the endpoint was down: back to the runner */    \
    X(FAILED, "failed")   /* refused for good */

/* clang-format off */
enum lb_result {
#define LB_RESULT_ENUM_(e, s) LB_RESULT_##e,
    LB_RESULTS(LB_RESULT_ENUM_)
#undef LB_RESULT_ENUM_
    LB_RESULT_COUNT
};
/* clang-format on */

static const char *const lb_result_labels[LB_RESULT_COUNT] = {
#define LB_RESULT_STR_(e, s) [LB_RESULT_##e] = s,
    LB_RESULTS(LB_RESULT_STR_)
#undef LB_RESULT_STR_
};

/* Figures of one endpoint URL, read by the scraper. Written by the export
 * thread only; kept until destroy so a removed endpoint's series stay. */
struct lb_stats {
    char url[LB_URL_MAX];
    _Atomic uint64_t exports[LB_RESULT_COUNT];
    _Atomic uint64_t items; /* items the endpoint accepted */
    _Atomic uint64_t healthy;
    bool registered;
};

struct lb_endpoint;
struct lb_slot;

/* One endpoint's share of a batch. */
struct lb_part {
    struct batch b; /* what the child exports; body: own or the batch's */
    struct buf own; /* the part's request when the batch was split */
    struct lb_slot *slot;
    struct lb_endpoint *ep;
    struct export_result res;
    struct lb_part *next; /* endpoint inbox / done list */
};

/* One batch in flight. */
struct lb_slot {
    struct batch *b; /* NULL: free */
    struct lb_part parts[EXPORT_LB_MAX_ENDPOINTS];
    unsigned n_parts, outstanding;
    uint32_t *unit_part; /* part of each unit, for rewriting the rest */
    size_t unit_cap, n_units;
    bool ready; /* every part finished: report in the next poll */
    bool encode_error;
    bool no_endpoints;
};

struct lb_exp;

struct lb_endpoint {
    struct lb_exp *lb;
    char url[LB_URL_MAX];
    struct svc_config cfg; /* the exporter's, with exporter.endpoint = url */
    struct exporter child;
    struct lb_stats *st;
    pthread_t thread;
    bool thread_started;
    /* under mu: the endpoint thread takes the inbox; stop ends it */
    pthread_mutex_t mu;
    struct lb_part *inbox;
    bool stop;
    /* export thread only */
    bool removed;       /* gone from the endpoint set: no new parts, freed when idle */
    unsigned in_flight; /* parts of batches not yet reported that name this endpoint */
    bool healthy;
    bool probing;           /* one part is testing an unhealthy endpoint */
    uint32_t failures;      /* consecutive retryable failures */
    uint64_t down_until_ms; /* unhealthy: parts fail at once until then (but one probe) */
};

struct lb_exp {
    struct svc_config cfg; /* shallow copy: strings borrowed from the caller's */
    const struct lb_exporter_config *lc;
    int efd; /* wakeup(), finished parts, a new resolution */
    struct otlp_split *split;
    struct buf rest; /* scratch: the undelivered rest of a batch */
    uint32_t *unit_ep;
    size_t unit_ep_cap;

    struct lb_slot *slots;
    unsigned n_slots;

    /* active endpoints, sorted by URL; the ring indexes this array */
    struct lb_endpoint *eps[EXPORT_LB_MAX_ENDPOINTS];
    unsigned n_eps;
    struct export_lb_ring ring;
    /* removed endpoints with parts still in flight */
    struct lb_endpoint *draining[EXPORT_LB_MAX_ENDPOINTS];
    unsigned n_draining;

    /* finished parts from the endpoint threads */
    pthread_mutex_t mu;
    struct lb_part *done_head, *done_tail;

    /* dns resolver thread */
    pthread_t resolver;
    bool resolver_started;
    pthread_mutex_t res_mu;
    pthread_cond_t res_cond;
    bool res_stop;
    char *resolved;        /* under res_mu: newest sorted URL list, '\n'-separated */
    uint64_t resolved_gen; /* under res_mu */
    uint64_t applied_gen;  /* export thread */

    /* metrics */
    struct obs_registry *reg;
    struct lb_stats stats[LB_MAX_STATS];
    unsigned n_stats;
    _Atomic uint64_t n_active;
    _Atomic uint64_t resolves[2]; /* success, failure */
    struct log_ratelimit rl_down, rl_resolve;
};

static void lb_destroy(void *state);

/* ---- metrics ---- */

static double read_u64(void *arg)
{
    return (double)atomic_load_explicit((_Atomic uint64_t *)arg, memory_order_relaxed);
}

static void stat_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* The series of one endpoint URL (URLs were checked to hold no '"' or '\'). */
static int stats_register(struct lb_exp *lb, struct lb_stats *st)
{
    if (lb->reg == NULL || st->registered)
        return 0;
    char label[LB_URL_MAX + 48];
    int rc;
    snprintf(label, sizeof(label), "endpoint=\"%s\"", st->url);
    if ((rc = obs_gauge_func_register(lb->reg, "otlp_lb_endpoint_healthy",
                                      "1 while the endpoint takes exports, 0 while it fails or "
                                      "after it left the endpoint set.",
                                      label, read_u64, &st->healthy)) < 0 ||
        (rc = obs_counter_func_register(lb->reg, "otlp_lb_items_total",
                                        "Items (spans, data points, log records) the endpoint "
                                        "accepted.",
                                        label, read_u64, &st->items)) < 0)
        return rc;
    for (unsigned k = 0; k < LB_RESULT_COUNT; k++) {
        char l2[LB_URL_MAX + 80];
        snprintf(l2, sizeof(l2), "endpoint=\"%s\",result=\"%s\"", st->url, lb_result_labels[k]);
        if ((rc = obs_counter_func_register(lb->reg, "otlp_lb_exports_total",
                                            "Batch parts sent to each endpoint, by result.", l2,
                                            read_u64, &st->exports[k])) < 0)
            return rc;
    }
    st->registered = true;
    return 0;
}

/* The stats of `url`, made (and registered) on first use; NULL past
 * LB_MAX_STATS URLs. */
static struct lb_stats *stats_get(struct lb_exp *lb, const char *url)
{
    for (unsigned i = 0; i < lb->n_stats; i++) {
        if (strcmp(lb->stats[i].url, url) == 0)
            return &lb->stats[i];
    }
    if (lb->n_stats == LB_MAX_STATS)
        return NULL;
    struct lb_stats *st = &lb->stats[lb->n_stats++];
    snprintf(st->url, sizeof(st->url), "%s", url);
    if (stats_register(lb, st) < 0)
        log_warn("loadbalancing: endpoint metrics not registered", "endpoint=%s", url);
    return st;
}

static int lb_register_metrics(void *state, struct obs_registry *reg)
{
    struct lb_exp *lb = state;
    lb->reg = reg;
    int rc;
    if ((rc = obs_gauge_func_register(reg, "otlp_lb_endpoints",
                                      "Endpoints the load-balancing exporter routes to.", NULL,
                                      read_u64, &lb->n_active)) < 0 ||
        (rc = obs_counter_func_register(reg, "otlp_lb_resolves_total",
                                        "Look-ups of exporter.loadbalancing.hostname, by result.",
                                        "result=\"success\"", read_u64, &lb->resolves[0])) < 0 ||
        (rc = obs_counter_func_register(reg, "otlp_lb_resolves_total",
                                        "Look-ups of exporter.loadbalancing.hostname, by result.",
                                        "result=\"failure\"", read_u64, &lb->resolves[1])) < 0)
        return rc;
    for (unsigned i = 0; i < lb->n_stats; i++) {
        if ((rc = stats_register(lb, &lb->stats[i])) < 0)
            return rc;
    }
    return 0;
}

/* ---- endpoint threads ---- */

static void wake(struct lb_exp *lb)
{
    uint64_t one = 1;
    ssize_t n = write(lb->efd, &one, sizeof(one));
    (void)n; /* EAGAIN: the counter is already non-zero */
}

/* A part is finished (child completion or refused submit): hand it to the
 * export thread. Any thread. */
static void part_finished(struct lb_exp *lb, struct lb_part *part)
{
    part->next = NULL;
    pthread_mutex_lock(&lb->mu);
    if (lb->done_tail != NULL)
        lb->done_tail->next = part;
    else
        lb->done_head = part;
    lb->done_tail = part;
    pthread_mutex_unlock(&lb->mu);
    wake(lb);
}

static void child_done(void *arg, struct batch *b, const struct export_result *r)
{
    struct lb_endpoint *ep = arg;
    struct lb_part *part = (struct lb_part *)((char *)b - offsetof(struct lb_part, b));
    part->res = *r;
    part_finished(ep->lb, part);
}

/* Endpoint thread: submits what the export thread queued to the child and
 * drives the child's I/O, until told to stop. */
static void *endpoint_main(void *arg)
{
    struct lb_endpoint *ep = arg;
    for (;;) {
        pthread_mutex_lock(&ep->mu);
        struct lb_part *list = ep->inbox;
        ep->inbox = NULL;
        bool stop = ep->stop;
        pthread_mutex_unlock(&ep->mu);
        if (stop)
            break;
        while (list != NULL) {
            struct lb_part *part = list;
            list = list->next;
            int rc = ep->child.ops->submit(ep->child.state, &part->b);
            if (rc < 0) {
                memset(&part->res, 0, sizeof(part->res));
                part->res.status = rc == -EINVAL ? EXPORT_PERMANENT : EXPORT_RETRYABLE;
                snprintf(part->res.reason, sizeof(part->res.reason), "submit_failed");
                snprintf(part->res.message, sizeof(part->res.message), "%s", strerror(-rc));
                part_finished(ep->lb, part);
            }
        }
        (void)ep->child.ops->poll(ep->child.state, LB_CHILD_POLL_MS, child_done, ep);
    }
    return NULL;
}

/* Stop the endpoint's thread and destroy it with its child (parts still in
 * flight are abandoned: done() is not called for them). NULL is a no-op. */
static void endpoint_free(struct lb_endpoint *ep)
{
    if (ep == NULL)
        return;
    if (ep->thread_started) {
        pthread_mutex_lock(&ep->mu);
        ep->stop = true;
        pthread_mutex_unlock(&ep->mu);
        ep->child.ops->wakeup(ep->child.state);
        pthread_join(ep->thread, NULL);
    }
    exporter_destroy(&ep->child);
    pthread_mutex_destroy(&ep->mu);
    if (ep->st != NULL)
        atomic_store_explicit(&ep->st->healthy, 0, memory_order_relaxed);
    free(ep);
}

/* Make the endpoint for `url`: its child exporter and its thread. */
static int endpoint_new(struct lb_exp *lb, const char *url, struct lb_endpoint **out)
{
    struct lb_endpoint *ep = calloc(1, sizeof(*ep));
    if (ep == NULL)
        return -ENOMEM;
    ep->lb = lb;
    snprintf(ep->url, sizeof(ep->url), "%s", url);
    pthread_mutex_init(&ep->mu, NULL);
    ep->cfg = lb->cfg;
    ep->cfg.exporter.endpoint = ep->url;
    ep->cfg.exporter.protocol =
        lb->lc->protocol == LB_PROTOCOL_GRPC ? EXPORTER_GRPC : EXPORTER_OTLP_HTTP;
    int rc = lb->lc->protocol == LB_PROTOCOL_GRPC ? export_grpc_create(&ep->cfg, &ep->child)
                                                  : export_otlp_http_create(&ep->cfg, &ep->child);
    if (rc < 0)
        goto fail;
    rc = pthread_create(&ep->thread, NULL, endpoint_main, ep);
    if (rc != 0) {
        rc = -rc;
        goto fail;
    }
    ep->thread_started = true;
    char name[16];
    snprintf(name, sizeof(name), "otlp-lb-%u", lb->n_stats % 1000);
    pthread_setname_np(ep->thread, name);
    ep->healthy = true;
    ep->st = stats_get(lb, url);
    if (ep->st != NULL)
        atomic_store_explicit(&ep->st->healthy, 1, memory_order_relaxed);
    *out = ep;
    return 0;
fail:
    log_error("loadbalancing: endpoint exporter not created", "endpoint=%s error=%s", url,
              strerror(-rc));
    endpoint_free(ep);
    return rc;
}

/* ---- the endpoint set ---- */

static int url_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Split "a, b,c" (commas or newlines) into at most EXPORT_LB_MAX_ENDPOINTS
 * sorted, distinct URLs in `store` (one buffer, `urls` point into it). */
static unsigned parse_urls(const char *list, char *store, size_t store_len, char **urls)
{
    unsigned n = 0;
    snprintf(store, store_len, "%s", list);
    for (char *save = NULL, *tok = strtok_r(store, ",\n", &save); tok != NULL;
         tok = strtok_r(NULL, ",\n", &save)) {
        while (*tok == ' ')
            tok++;
        size_t len = strlen(tok);
        while (len > 0 && tok[len - 1] == ' ')
            tok[--len] = '\0';
        if (len == 0 || len >= LB_URL_MAX)
            continue;
        if (n == EXPORT_LB_MAX_ENDPOINTS) {
            log_warn("loadbalancing: too many endpoints, the rest ignored", "max=%d",
                     EXPORT_LB_MAX_ENDPOINTS);
            break;
        }
        urls[n++] = tok;
    }
    qsort(urls, n, sizeof(*urls), url_cmp);
    unsigned k = 0;
    for (unsigned i = 0; i < n; i++) {
        if (k == 0 || strcmp(urls[k - 1], urls[i]) != 0)
            urls[k++] = urls[i];
    }
    return k;
}

static struct lb_endpoint *take_endpoint(struct lb_endpoint **arr, unsigned *n, const char *url)
{
    for (unsigned i = 0; i < *n; i++) {
        if (strcmp(arr[i]->url, url) == 0) {
            struct lb_endpoint *ep = arr[i];
            arr[i] = arr[--*n];
            return ep;
        }
    }
    return NULL;
}

/*
 * Make `list` (URLs separated by ',' or '\n') the endpoint set: kept
 * endpoints keep their child, connections and health; new ones are made;
 * removed ones stop getting parts and are freed once their parts finished
 * (draining). Rebuilds the ring. On an error the old set stays.
 * Returns 0, -ENOMEM, what a child constructor returns.
 */
static int set_endpoints(struct lb_exp *lb, const char *list)
{
    size_t store_len = strlen(list) + 1;
    char *store = malloc(store_len);
    char *urls[EXPORT_LB_MAX_ENDPOINTS];
    struct lb_endpoint *next[EXPORT_LB_MAX_ENDPOINTS];
    struct export_lb_ring ring = {0};
    if (store == NULL)
        return -ENOMEM;
    unsigned n = parse_urls(list, store, store_len, urls);
    int rc = export_lb_ring_build(&ring, (const char *const *)urls, n);
    if (rc < 0) {
        free(store);
        return rc;
    }
    /* new endpoints first, so a failure leaves the old set untouched */
    unsigned made = 0;
    for (unsigned i = 0; i < n; i++) {
        next[i] = NULL;
        bool known = false;
        for (unsigned j = 0; j < lb->n_eps && !known; j++)
            known = strcmp(lb->eps[j]->url, urls[i]) == 0;
        for (unsigned j = 0; j < lb->n_draining && !known; j++)
            known = strcmp(lb->draining[j]->url, urls[i]) == 0;
        if (known)
            continue;
        if ((rc = endpoint_new(lb, urls[i], &next[i])) < 0) {
            for (unsigned j = 0; j < i; j++)
                endpoint_free(next[j]);
            export_lb_ring_free(&ring);
            free(store);
            return rc;
        }
        made++;
    }
    for (unsigned i = 0; i < n; i++) {
        if (next[i] != NULL)
            continue;
        next[i] = take_endpoint(lb->eps, &lb->n_eps, urls[i]);
        if (next[i] == NULL) {
            next[i] = take_endpoint(lb->draining, &lb->n_draining, urls[i]);
            next[i]->removed = false;
            if (next[i]->st != NULL)
                atomic_store_explicit(&next[i]->st->healthy, next[i]->healthy ? 1 : 0,
                                      memory_order_relaxed);
        }
    }
    /* what is left of the old set drains */
    for (unsigned i = 0; i < lb->n_eps; i++) {
        struct lb_endpoint *ep = lb->eps[i];
        ep->removed = true;
        if (ep->st != NULL)
            atomic_store_explicit(&ep->st->healthy, 0, memory_order_relaxed);
        log_info("loadbalancing: endpoint removed", "endpoint=%s in_flight=%u", ep->url,
                 ep->in_flight);
        lb->draining[lb->n_draining++] = ep;
    }
    for (unsigned i = 0; i < n; i++)
        lb->eps[i] = next[i];
    lb->n_eps = n;
    export_lb_ring_free(&lb->ring);
    lb->ring = ring;
    atomic_store_explicit(&lb->n_active, n, memory_order_relaxed);
    if (made > 0 || lb->n_draining > 0)
        log_info("loadbalancing: endpoint set", "endpoints=%u added=%u", n, made);
    free(store);
    return 0;
}

/* Free drained endpoints whose last part finished. */
static void reap_draining(struct lb_exp *lb)
{
    for (unsigned i = 0; i < lb->n_draining;) {
        struct lb_endpoint *ep = lb->draining[i];
        if (ep->in_flight > 0) {
            i++;
            continue;
        }
        lb->draining[i] = lb->draining[--lb->n_draining];
        endpoint_free(ep);
    }
}

/* ---- dns ---- */

/* Look the host name up: "<scheme>://<a.b.c.d>:<port>\n" per IPv4 address
 * (sorted, distinct). Returns 0 and *out (caller frees); -ENOENT (no
 * address, or the look-up failed); -ENOMEM. */
static int resolve(const struct lb_exporter_config *lc, char **out)
{
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    int g = getaddrinfo(lc->hostname, NULL, &hints, &ai);
    if (g != 0)
        return -ENOENT;
    struct buf list;
    if (buf_init(&list, 0, 0) < 0) {
        freeaddrinfo(ai);
        return -ENOMEM;
    }
    const char *scheme = lc->scheme == LB_SCHEME_HTTPS ? "https" : "http";
    int rc = 0;
    for (struct addrinfo *a = ai; a != NULL && rc == 0; a = a->ai_next) {
        char ip[INET_ADDRSTRLEN], line[LB_URL_MAX];
        const struct sockaddr_in *sin = (const struct sockaddr_in *)a->ai_addr;
        if (inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip)) == NULL)
            continue;
        int n = snprintf(line, sizeof(line), "%s://%s:%u\n", scheme, ip, (unsigned)lc->port);
        rc = buf_append(&list, line, (size_t)n);
    }
    freeaddrinfo(ai);
    if (rc == 0 && list.len == 0)
        rc = -ENOENT;
    if (rc == 0)
        rc = buf_append(&list, "", 1);
    if (rc < 0) {
        buf_free(&list);
        return rc;
    }
    *out = (char *)list.data; /* parse_urls sorts and removes duplicates */
    return 0;
}

/* Resolver thread: look the name up every resolve_interval_ms and post a
 * changed result to the export thread. */
static void *resolver_main(void *arg)
{
    struct lb_exp *lb = arg;
    for (;;) {
        pthread_mutex_lock(&lb->res_mu);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)lb->lc->resolve_interval_ms * 1000000u;
        ts.tv_sec += (time_t)(ns / 1000000000u);
        ts.tv_nsec = (long)(ns % 1000000000u);
        while (!lb->res_stop && pthread_cond_timedwait(&lb->res_cond, &lb->res_mu, &ts) == 0) {
        }
        bool stop = lb->res_stop;
        pthread_mutex_unlock(&lb->res_mu);
        if (stop)
            break;
        char *list = NULL;
        int rc = resolve(lb->lc, &list);
        stat_add(&lb->resolves[rc == 0 ? 0 : 1], 1);
        if (rc < 0) {
            if (log_ratelimit(&lb->rl_resolve, 10000, 1))
                log_warn("loadbalancing: resolving failed, endpoints kept",
                         "hostname=%s error=%s suppressed=%u", lb->lc->hostname, strerror(-rc),
                         lb->rl_resolve.suppressed);
            continue;
        }
        pthread_mutex_lock(&lb->res_mu);
        bool changed = lb->resolved == NULL || strcmp(lb->resolved, list) != 0;
        if (changed) {
            free(lb->resolved);
            lb->resolved = list;
            lb->resolved_gen++;
            list = NULL;
        }
        pthread_mutex_unlock(&lb->res_mu);
        free(list);
        if (changed)
            wake(lb);
    }
    return NULL;
}

/* Export thread: take a new resolution, if any. */
static void apply_resolution(struct lb_exp *lb)
{
    if (!lb->resolver_started)
        return;
    char *list = NULL;
    pthread_mutex_lock(&lb->res_mu);
    if (lb->resolved_gen != lb->applied_gen && lb->resolved != NULL) {
        list = strdup(lb->resolved);
        if (list != NULL)
            lb->applied_gen = lb->resolved_gen;
    }
    pthread_mutex_unlock(&lb->res_mu);
    if (list == NULL)
        return;
    if (set_endpoints(lb, list) < 0) {
        pthread_mutex_lock(&lb->res_mu);
        lb->applied_gen = 0; /* try again next poll */
        pthread_mutex_unlock(&lb->res_mu);
    }
    free(list);
}

/* ---- splitting and reporting ---- */

/* The part of `slot` finished without being sent (endpoint down, ...). */
static void part_fail_now(struct lb_part *part, enum export_status st, const char *reason,
                          uint32_t retry_after_ms)
{
    memset(&part->res, 0, sizeof(part->res));
    part->res.status = st;
    part->res.retry_after_ms = retry_after_ms;
    snprintf(part->res.reason, sizeof(part->res.reason), "%s", reason);
    snprintf(part->res.message, sizeof(part->res.message), "endpoint %.200s is down",
             part->ep != NULL ? part->ep->url : "(none)");
    part->slot->outstanding--;
}

/* Hand a part to its endpoint, or fail it at once while the endpoint is
 * down (one probe part goes through once down_until_ms passed). */
static void part_dispatch(struct lb_part *part, uint64_t now)
{
    struct lb_endpoint *ep = part->ep;
    if (!ep->healthy) {
        if (ep->probing || now < ep->down_until_ms) {
            uint64_t wait = ep->down_until_ms > now ? ep->down_until_ms - now : 0;
            part_fail_now(part, EXPORT_RETRYABLE, "endpoint_down",
                          (uint32_t)BASE_MIN(wait, UINT32_MAX));
            if (ep->st != NULL)
                stat_add(&ep->st->exports[LB_RESULT_RETRY], 1);
            return;
        }
        ep->probing = true;
    }
    part->next = NULL;
    pthread_mutex_lock(&ep->mu);
    struct lb_part **pp = &ep->inbox;
    while (*pp != NULL)
        pp = &(*pp)->next;
    *pp = part;
    pthread_mutex_unlock(&ep->mu);
    ep->child.ops->wakeup(ep->child.state);
}

static int grow_u32(uint32_t **arr, size_t *cap, size_t n)
{
    if (n <= *cap)
        return 0;
    size_t c = BASE_MAX(n, 2 * *cap);
    uint32_t *a = realloc(*arr, c * sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    *arr = a;
    *cap = c;
    return 0;
}

/*
 * Split slot->b into one part per endpoint. Returns 0 (parts made; a batch
 * with no item has none); -EINVAL (the body does not parse); -ENOMEM.
 */
static int make_parts(struct lb_exp *lb, struct lb_slot *slot)
{
    struct batch *b = slot->b;
    int rc = otlp_split_parse(lb->split, b->signal, b->body.data, b->body.len);
    if (rc < 0)
        return rc;
    size_t nu = otlp_split_n_units(lb->split);
    slot->n_units = nu;
    if (nu == 0)
        return 0;
    if (grow_u32(&lb->unit_ep, &lb->unit_ep_cap, nu) < 0 ||
        grow_u32(&slot->unit_part, &slot->unit_cap, nu) < 0)
        return -ENOMEM;
    if ((rc = export_lb_route(&lb->ring, lb->split, b->signal, lb->lc->routing_key, lb->unit_ep)) <
        0)
        return rc;
    /* endpoint index -> part index, parts in order of first use */
    uint32_t part_of[EXPORT_LB_MAX_ENDPOINTS];
    memset(part_of, 0xff, sizeof(part_of));
    slot->n_parts = 0;
    for (size_t i = 0; i < nu; i++) {
        uint32_t e = lb->unit_ep[i];
        if (part_of[e] == UINT32_MAX) {
            part_of[e] = slot->n_parts;
            struct lb_part *part = &slot->parts[slot->n_parts++];
            part->ep = lb->eps[e];
            part->ep->in_flight++; /* until the batch is reported */
            part->slot = slot;
        }
        slot->unit_part[i] = part_of[e];
    }
    if ((rc = otlp_split_group_ids(lb->split, slot->unit_part, slot->n_parts)) < 0)
        return rc;
    for (unsigned p = 0; p < slot->n_parts; p++) {
        struct lb_part *part = &slot->parts[p];
        size_t first, end;
        otlp_split_group_at(lb->split, p, &first, &end, NULL);
        struct batch *pb = &part->b;
        pb->signal = b->signal;
        pb->items = otlp_split_items(lb->split, first, end);
        pb->requests = b->requests;
        pb->worker = b->worker;
        pb->created_ms = b->created_ms;
        pb->attempts = b->attempts;
        pb->first_attempt_ms = b->first_attempt_ms;
        pb->next = NULL;
        if (slot->n_parts == 1) {
            pb->body = b->body; /* borrowed: the whole batch goes to one endpoint */
            continue;
        }
        buf_reset(&part->own);
        if ((rc = otlp_split_write(lb->split, first, end, &part->own)) < 0)
            return rc;
        pb->body = part->own;
    }
    return 0;
}

static int lb_submit(void *state, struct batch *b)
{
    struct lb_exp *lb = state;
    if (b == NULL || (unsigned)b->signal >= OTLP_SIGNAL_COUNT)
        return -EINVAL;
    struct lb_slot *slot = NULL;
    for (unsigned i = 0; i < lb->n_slots && slot == NULL; i++) {
        if (lb->slots[i].b == NULL)
            slot = &lb->slots[i];
    }
    if (slot == NULL)
        return -EBUSY;
    apply_resolution(lb);
    slot->b = b;
    slot->n_parts = 0;
    slot->ready = false;
    slot->encode_error = false;
    slot->no_endpoints = lb->n_eps == 0;
    if (slot->no_endpoints) {
        slot->ready = true; /* reported RETRYABLE no_endpoints by the next poll */
        wake(lb);
        return 0;
    }
    int rc = make_parts(lb, slot);
    if (rc == -ENOMEM) {
        for (unsigned p = 0; p < slot->n_parts; p++)
            slot->parts[p].ep->in_flight--;
        slot->b = NULL;
        return rc;
    }
    if (rc < 0) {
        for (unsigned p = 0; p < slot->n_parts; p++)
            slot->parts[p].ep->in_flight--;
        slot->encode_error = true;
        slot->n_parts = 0;
    }
    slot->outstanding = slot->n_parts;
    uint64_t now = base_now_ms();
    for (unsigned p = 0; p < slot->n_parts; p++)
        part_dispatch(&slot->parts[p], now);
    if (slot->outstanding == 0) {
        slot->ready = true;
        wake(lb);
    }
    return 0;
}

/* Endpoint health after one of its parts finished. */
static void endpoint_result(struct lb_exp *lb, struct lb_endpoint *ep, const struct lb_part *part)
{
    const struct export_result *r = &part->res;
    ep->probing = false;
    enum lb_result k = r->status == EXPORT_OK          ? LB_RESULT_SUCCESS
                       : r->status == EXPORT_RETRYABLE ? LB_RESULT_RETRY
                                                       : LB_RESULT_FAILED;
    if (ep->st != NULL) {
        stat_add(&ep->st->exports[k], 1);
        if (r->status == EXPORT_OK)
            stat_add(&ep->st->items, part->b.items - BASE_MIN(r->rejected_items, part->b.items));
    }
    if (r->status == EXPORT_RETRYABLE) {
        ep->failures++;
        uint64_t delay = export_backoff_ms(&lb->cfg.exporter.retry, ep->failures, 0.5);
        delay = BASE_MAX(delay, (uint64_t)r->retry_after_ms);
        ep->down_until_ms = base_now_ms() + delay;
        if (ep->healthy && log_ratelimit(&lb->rl_down, 1000, 5))
            log_warn("loadbalancing: endpoint failing, its parts wait",
                     "endpoint=%s error=%s "
                     "http_status=%d retry_in_ms=%" PRIu64 " suppressed=%u",
                     ep->url, r->reason, r->http_status, delay, lb->rl_down.suppressed);
        ep->healthy = false;
    } else {
        if (!ep->healthy)
            log_info("loadbalancing: endpoint recovered", "endpoint=%s failures=%u", ep->url,
                     ep->failures);
        ep->healthy = true;
        ep->failures = 0;
    }
    if (ep->st != NULL && !ep->removed)
        atomic_store_explicit(&ep->st->healthy, ep->healthy ? 1 : 0, memory_order_relaxed);
}

/* Rewrite slot->b's body to the units of the parts that failed retryably.
 * Returns 0 or -ENOMEM (the body is left whole then: sent again in full). */
static int keep_rest(struct lb_exp *lb, struct lb_slot *slot)
{
    struct batch *b = slot->b;
    int rc = otlp_split_parse(lb->split, b->signal, b->body.data, b->body.len);
    if (rc < 0 || otlp_split_n_units(lb->split) != slot->n_units)
        return rc < 0 ? rc : -EINVAL;
    if (grow_u32(&lb->unit_ep, &lb->unit_ep_cap, slot->n_units) < 0)
        return -ENOMEM;
    for (size_t i = 0; i < slot->n_units; i++)
        lb->unit_ep[i] = slot->parts[slot->unit_part[i]].res.status == EXPORT_RETRYABLE;
    if ((rc = otlp_split_group_ids(lb->split, lb->unit_ep, 2)) < 0)
        return rc;
    size_t first, end;
    otlp_split_group_at(lb->split, 1, &first, &end, NULL);
    buf_reset(&lb->rest);
    if ((rc = otlp_split_write(lb->split, first, end, &lb->rest)) < 0)
        return rc;
    buf_reset(&b->body);
    return buf_append(&b->body, lb->rest.data, lb->rest.len);
}

/* Every part of the slot finished: one result for the batch. */
static void finish_slot(struct lb_exp *lb, struct lb_slot *slot, export_done_fn done, void *arg)
{
    struct batch *b = slot->b;
    struct export_result res = {.status = EXPORT_OK};
    uint64_t delivered = 0, rejected = 0, retry = 0;
    const struct lb_part *first_retry = NULL, *first_perm = NULL;
    for (unsigned p = 0; p < slot->n_parts; p++) {
        const struct lb_part *part = &slot->parts[p];
        const struct export_result *r = &part->res;
        if (r->status == EXPORT_OK) {
            uint64_t rej = BASE_MIN(r->rejected_items, part->b.items);
            delivered += part->b.items - rej;
            rejected += rej;
            if (rej > 0 && res.message[0] == '\0')
                snprintf(res.message, sizeof(res.message), "%.100s: %.150s", part->ep->url,
                         r->message);
        } else if (r->status == EXPORT_RETRYABLE) {
            retry += part->b.items;
            res.retry_after_ms = BASE_MAX(res.retry_after_ms, r->retry_after_ms);
            if (first_retry == NULL)
                first_retry = part;
        } else {
            rejected += part->b.items;
            if (first_perm == NULL)
                first_perm = part;
        }
    }
    const struct lb_part *why = first_retry != NULL ? first_retry : first_perm;
    if (why != NULL) {
        res.http_status = why->res.http_status;
        snprintf(res.reason, sizeof(res.reason), "%s", why->res.reason);
        snprintf(res.message, sizeof(res.message), "%.100s: %.150s", why->ep->url,
                 why->res.message);
    }
    if (slot->no_endpoints) {
        res.status = EXPORT_RETRYABLE;
        snprintf(res.reason, sizeof(res.reason), "no_endpoints");
        snprintf(res.message, sizeof(res.message), "the load balancer has no endpoint");
    } else if (slot->encode_error) {
        res.status = EXPORT_PERMANENT;
        snprintf(res.reason, sizeof(res.reason), "encode_error");
        snprintf(res.message, sizeof(res.message), "batch body is not a valid request");
    } else if (retry > 0) {
        res.status = EXPORT_RETRYABLE;
        if ((delivered > 0 || rejected > 0) && keep_rest(lb, slot) == 0) {
            res.delivered_items = delivered;
            res.rejected_items = rejected;
        }
    } else if (first_perm != NULL && delivered == 0) {
        res.status = EXPORT_PERMANENT;
    } else {
        /* OK: a part refused for good counts as rejected items, not the batch */
        res.rejected_items = rejected;
        if (rejected > 0)
            snprintf(res.reason, sizeof(res.reason), "partial_success");
        else
            res.reason[0] = res.message[0] = '\0';
    }
    for (unsigned p = 0; p < slot->n_parts; p++)
        slot->parts[p].ep->in_flight--;
    slot->b = NULL;
    slot->ready = false;
    done(arg, b, &res);
}

/* Report finished parts and batches. Returns the number of batches reported. */
static int collect(struct lb_exp *lb, export_done_fn done, void *arg)
{
    pthread_mutex_lock(&lb->mu);
    struct lb_part *list = lb->done_head;
    lb->done_head = lb->done_tail = NULL;
    pthread_mutex_unlock(&lb->mu);
    while (list != NULL) {
        struct lb_part *part = list;
        list = list->next;
        endpoint_result(lb, part->ep, part);
        if (--part->slot->outstanding == 0)
            part->slot->ready = true;
    }
    int n = 0;
    for (unsigned i = 0; i < lb->n_slots; i++) {
        struct lb_slot *slot = &lb->slots[i];
        if (slot->b != NULL && slot->ready) {
            finish_slot(lb, slot, done, arg);
            n++;
        }
    }
    reap_draining(lb);
    return n;
}

static int lb_poll(void *state, int timeout_ms, export_done_fn done, void *arg)
{
    struct lb_exp *lb = state;
    apply_resolution(lb);
    int n = collect(lb, done, arg);
    if (n > 0 || timeout_ms <= 0)
        return n;
    struct pollfd pfd = {.fd = lb->efd, .events = POLLIN};
    int rc = poll(&pfd, 1, timeout_ms);
    if (rc < 0 && errno != EINTR)
        return -errno;
    uint64_t v;
    if (rc > 0 && read(lb->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        return -errno;
    apply_resolution(lb);
    return collect(lb, done, arg);
}

static void lb_wakeup(void *state)
{
    wake(state);
}

static void lb_destroy(void *state)
{
    struct lb_exp *lb = state;
    if (lb == NULL)
        return;
    if (lb->resolver_started) {
        pthread_mutex_lock(&lb->res_mu);
        lb->res_stop = true;
        pthread_cond_signal(&lb->res_cond);
        pthread_mutex_unlock(&lb->res_mu);
        pthread_join(lb->resolver, NULL);
    }
    for (unsigned i = 0; i < lb->n_eps; i++)
        endpoint_free(lb->eps[i]);
    for (unsigned i = 0; i < lb->n_draining; i++)
        endpoint_free(lb->draining[i]);
    export_lb_ring_free(&lb->ring);
    for (unsigned i = 0; lb->slots != NULL && i < lb->n_slots; i++) {
        for (unsigned p = 0; p < EXPORT_LB_MAX_ENDPOINTS; p++)
            buf_free(&lb->slots[i].parts[p].own);
        free(lb->slots[i].unit_part);
    }
    free(lb->slots);
    otlp_split_destroy(lb->split);
    buf_free(&lb->rest);
    free(lb->unit_ep);
    free(lb->resolved);
    pthread_mutex_destroy(&lb->mu);
    pthread_mutex_destroy(&lb->res_mu);
    pthread_cond_destroy(&lb->res_cond);
    if (lb->efd >= 0)
        close(lb->efd);
    free(lb);
}

static const struct exporter_ops lb_ops = {
    .name = "loadbalancing",
    .submit = lb_submit,
    .poll = lb_poll,
    .wakeup = lb_wakeup,
    .destroy = lb_destroy,
    .register_metrics = lb_register_metrics,
};

int export_lb_create(const struct svc_config *cfg, struct exporter *out)
{
    if (cfg == NULL || out == NULL)
        return -EINVAL;
    const struct lb_exporter_config *lc = &cfg->exporter.loadbalancing;
    bool dns = lc->resolver == LB_RESOLVER_DNS;
    if (dns ? (lc->hostname == NULL || *lc->hostname == '\0')
            : (lc->endpoints == NULL || *lc->endpoints == '\0')) {
        log_error("loadbalancing: no endpoints", "resolver=%s", dns ? "dns" : "static");
        return -EINVAL;
    }
    struct lb_exp *lb = calloc(1, sizeof(*lb));
    if (lb == NULL)
        return -ENOMEM;
    lb->cfg = *cfg;
    lb->lc = &lb->cfg.exporter.loadbalancing;
    lb->efd = -1;
    pthread_mutex_init(&lb->mu, NULL);
    pthread_mutex_init(&lb->res_mu, NULL);
    pthread_cond_init(&lb->res_cond, NULL);
    int rc = -ENOMEM;
    lb->n_slots = BASE_MAX(cfg->batch.max_concurrent_exports, 1u);
    lb->slots = calloc(lb->n_slots, sizeof(*lb->slots));
    if (lb->slots == NULL || otlp_split_create(&lb->split) < 0 || buf_init(&lb->rest, 0, 0) < 0)
        goto fail;
    for (unsigned i = 0; i < lb->n_slots; i++) {
        for (unsigned p = 0; p < EXPORT_LB_MAX_ENDPOINTS; p++) {
            if (buf_init(&lb->slots[i].parts[p].own, 0, 0) < 0)
                goto fail;
        }
    }
    lb->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (lb->efd < 0) {
        rc = -errno;
        goto fail;
    }
    if (dns) {
        /* the first look-up here, so the endpoints exist before traffic */
        char *list = NULL;
        int r = resolve(lc, &list);
        stat_add(&lb->resolves[r == 0 ? 0 : 1], 1);
        if (r == 0) {
            rc = set_endpoints(lb, list);
            lb->resolved = list;
            lb->resolved_gen = lb->applied_gen = 1;
            if (rc < 0)
                goto fail;
        } else {
            log_warn("loadbalancing: resolving failed, no endpoints yet", "hostname=%s",
                     lc->hostname);
        }
        if ((rc = -pthread_create(&lb->resolver, NULL, resolver_main, lb)) < 0)
            goto fail;
        pthread_setname_np(lb->resolver, "otlp-lb-dns");
        lb->resolver_started = true;
    } else if ((rc = set_endpoints(lb, lc->endpoints)) < 0) {
        goto fail;
    }
    log_info("loadbalancing exporter created",
             "resolver=%s protocol=%s endpoints=%u routing_key=%s", dns ? "dns" : "static",
             lc->protocol == LB_PROTOCOL_GRPC ? "grpc" : "otlp_http", lb->n_eps,
             lc->routing_key == LB_ROUTING_SERVICE ? "service" : "traceID");
    out->ops = &lb_ops;
    out->state = lb;
    return 0;
fail:
    lb_destroy(lb);
    return rc;
}
