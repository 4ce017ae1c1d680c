/* SPDX-License-Identifier: Apache-2.0 */
/* Metrics registry: families and their series, per-shard slot arrays written
 * by workers, and the Prometheus text renderer used by the /metrics handler. */
#include "obs/metrics.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#include "obs/log.h"
#include "obs/obs_internal.h"

/* Shards are padded to two cache lines: the adjacent-line prefetcher pulls
 * lines in pairs, so one line of padding would still share. */
#define OBS_SHARD_ALIGN (2 * BASE_CACHE_LINE)
#define OBS_SLOTS_PER_ALIGN (OBS_SHARD_ALIGN / sizeof(uint64_t))
#define OBS_MAX_LABELS 32

const double OBS_LATENCY_BUCKETS[OBS_LATENCY_BUCKETS_COUNT] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,     10,
};

enum fam_kind { FAM_COUNTER, FAM_GAUGE, FAM_HISTOGRAM };

static const char *const fam_kind_names[] = {"counter", "gauge", "histogram"};

struct series {
    char *labels;           /* preformatted, "" for none */
    uint32_t id;            /* counter/gauge slot, or histogram id */
    double (*fn)(void *);   /* non-NULL: value computed at scrape */
    void *arg;
};

struct family {
    char *name;
    char *help;
    enum fam_kind kind;
    double *bounds; /* histograms */
    unsigned n_bounds;
    struct series *series;
    unsigned n_series, cap_series;
};

/* Where histogram id's slots are: base slot, then n_bounds + 1 buckets
 * (the last is +Inf) and the sum as double bits. */
struct hist_series {
    uint32_t base;
    uint32_t n_bounds;
    const double *bounds; /* owned by the family */
};

struct obs_registry_meta {
    pthread_mutex_t lock;
    unsigned max_slots, used_slots;
    struct family *fams;
    unsigned n_fams, cap_fams;
    struct hist_series *hist; /* allocated once: observe reads it unlocked */
    unsigned n_hist, cap_hist;
    double process_start_time_s;
};

int obs_registry_create(unsigned n_shards, unsigned max_slots, struct obs_registry **out)
{
    if (out == NULL || n_shards == 0 || max_slots == 0 || max_slots > (1u << 30) ||
        n_shards > 65536)
        return -EINVAL;
    size_t stride =
        (max_slots + OBS_SLOTS_PER_ALIGN - 1) / OBS_SLOTS_PER_ALIGN * OBS_SLOTS_PER_ALIGN;
    if (stride > SIZE_MAX / sizeof(uint64_t) / n_shards)
        return -EINVAL;
    size_t bytes = stride * sizeof(uint64_t) * n_shards;

    struct obs_registry *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    r->meta = calloc(1, sizeof(*r->meta));
    if (r->meta == NULL)
        goto fail;
    void *mem = NULL;
    if (posix_memalign(&mem, OBS_SHARD_ALIGN, bytes) != 0)
        goto fail;
    memset(mem, 0, bytes);
    r->slots = mem;
    r->shard_stride = (uint32_t)stride;
    r->n_shards = n_shards;
    r->meta->max_slots = max_slots;
    /* Every histogram series needs at least 2 slots (+Inf and sum). */
    r->meta->cap_hist = max_slots / 2 + 1;
    r->meta->hist = calloc(r->meta->cap_hist, sizeof(*r->meta->hist));
    if (r->meta->hist == NULL)
        goto fail;
    if (pthread_mutex_init(&r->meta->lock, NULL) != 0)
        goto fail;
    *out = r;
    return 0;

fail:
    if (r->meta != NULL) {
        free(r->meta->hist);
        free(r->meta);
    }
    free(r->slots);
    free(r);
    return -ENOMEM;
}

static void family_free(struct family *f)
{
    for (unsigned i = 0; i < f->n_series; i++)
        free(f->series[i].labels);
    free(f->series);
    free(f->name);
    free(f->help);
    free(f->bounds);
}

void obs_registry_destroy(struct obs_registry *r)
{
    if (r == NULL)
        return;
    if (r->meta != NULL) {
        for (unsigned i = 0; i < r->meta->n_fams; i++)
            family_free(&r->meta->fams[i]);
        free(r->meta->fams);
        free(r->meta->hist);
        pthread_mutex_destroy(&r->meta->lock);
        free(r->meta);
    }
    free(r->slots);
    free(r);
}

/* ---- validation --------------------------------------------------------- */

/* Prometheus data model: metric names match [a-zA-Z_:][a-zA-Z0-9_:]*. */
static bool name_valid(const char *s)
{
    if (s == NULL || *s == '\0')
        return false;
    for (const char *p = s; *p != '\0'; p++) {
        char c = *p;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && (p == s || c < '0' || c > '9'))
            return false;
    }
    return true;
}

static bool utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t l = p[i] < 0x80 ? 1 : obs_utf8_seq(p + i, n - i, NULL);
        if (l == 0)
            return false;
        i += l;
    }
    return true;
}

static bool is_label_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

/*
 * A preformatted label set: name="value"(,name="value")*, names matching
 * [a-zA-Z_][a-zA-Z0-9_]* and not starting with "__" (reserved), no repeats,
 * values valid UTF-8 with only \\, \" and \n escapes. "le" is refused for
 * histograms since the renderer adds it.
 */
static bool labels_valid(const char *s, bool forbid_le)
{
    const char *names[OBS_MAX_LABELS];
    size_t lens[OBS_MAX_LABELS];
    unsigned n = 0;
    const char *p = s;

    if (*p == '\0')
        return true;
    for (;;) {
        const char *nm = p;
        if (!is_label_start(*p))
            return false;
        while (is_label_start(*p) || (*p >= '0' && *p <= '9'))
            p++;
        size_t nl = (size_t)(p - nm);
        if (nl >= 2 && nm[0] == '_' && nm[1] == '_')
            return false;
        if (forbid_le && nl == 2 && memcmp(nm, "le", 2) == 0)
            return false;
        if (n == OBS_MAX_LABELS)
            return false;
        for (unsigned i = 0; i < n; i++)
            if (lens[i] == nl && memcmp(names[i], nm, nl) == 0)
                return false;
        names[n] = nm;
        lens[n++] = nl;
        if (p[0] != '=' || p[1] != '"')
            return false;
        p += 2;
        const char *val = p;
        while (*p != '"') {
            if (*p == '\0' || *p == '\n')
                return false;
            if (*p == '\\') {
                if (p[1] != '\\' && p[1] != '"' && p[1] != 'n')
                    return false;
                p++;
            }
            p++;
        }
        if (!utf8_valid(val, (size_t)(p - val)))
            return false;
        p++;
        if (*p == '\0')
            return true;
        if (*p != ',' || p[1] == '\0')
            return false;
        p++;
    }
}

static bool bounds_equal(const double *a, unsigned na, const double *b, unsigned nb)
{
    if (na != nb)
        return false;
    for (unsigned i = 0; i < na; i++)
        if (a[i] != b[i])
            return false;
    return true;
}

/* name == base + suffix? */
static bool name_is(const char *name, const char *base, const char *suffix)
{
    size_t bl = strlen(base);
    return strncmp(name, base, bl) == 0 && strcmp(name + bl, suffix) == 0;
}

/* A histogram's name_bucket/_sum/_count lines would collide with `other`. */
static bool hist_suffix_clash(const char *hist, const char *other)
{
    return name_is(other, hist, "_bucket") || name_is(other, hist, "_sum") ||
           name_is(other, hist, "_count");
}

/* ---- registration ------------------------------------------------------- */

struct reg_req {
    const char *name;
    const char *help;
    enum fam_kind kind;
    const char *const *labels; /* NULL: one series without labels */
    const char *one_label;     /* used when labels == NULL */
    unsigned n_series;
    double (*fn)(void *);
    void *arg;
    const double *bounds;
    unsigned n_bounds;
};

static const char *req_label(const struct reg_req *q, unsigned i)
{
    const char *l = q->labels != NULL ? q->labels[i] : q->one_label;
    return l != NULL ? l : "";
}

/* Validate, check for clashes, then commit everything or nothing. */
static int register_series(struct obs_registry *r, const struct reg_req *q, uint32_t *id_out)
{
    if (r == NULL || !name_valid(q->name) || q->help == NULL ||
        !utf8_valid(q->help, strlen(q->help)) || q->n_series == 0 ||
        q->n_series > OBS_MAX_SERIES || (q->labels == NULL && q->n_series != 1) ||
        (q->fn == NULL && id_out == NULL))
        return -EINVAL;
    if (q->kind == FAM_HISTOGRAM) {
        if (q->n_bounds > OBS_MAX_BOUNDS || (q->bounds == NULL && q->n_bounds > 0))
            return -EINVAL;
        for (unsigned i = 0; i < q->n_bounds; i++)
            if (!isfinite(q->bounds[i]) || (i > 0 && !(q->bounds[i] > q->bounds[i - 1])))
                return -EINVAL;
    }
    for (unsigned i = 0; i < q->n_series; i++)
        if (!labels_valid(req_label(q, i), q->kind == FAM_HISTOGRAM))
            return -EINVAL;

    struct obs_registry_meta *m = r->meta;
    int rc = 0;
    char **dup = NULL;
    unsigned n_dup = 0;
    pthread_mutex_lock(&m->lock);

    struct family *fam = NULL;
    for (unsigned i = 0; i < m->n_fams; i++) {
        struct family *f = &m->fams[i];
        if (strcmp(f->name, q->name) == 0) {
            if (f->kind != q->kind ||
                (q->kind == FAM_HISTOGRAM &&
                 !bounds_equal(f->bounds, f->n_bounds, q->bounds, q->n_bounds))) {
                rc = -EEXIST;
                goto out;
            }
            fam = f;
        } else if ((f->kind == FAM_HISTOGRAM && hist_suffix_clash(f->name, q->name)) ||
                   (q->kind == FAM_HISTOGRAM && hist_suffix_clash(q->name, f->name))) {
            rc = -EEXIST;
            goto out;
        }
    }
    for (unsigned i = 0; i < q->n_series; i++) {
        const char *l = req_label(q, i);
        for (unsigned j = 0; fam != NULL && j < fam->n_series; j++)
            if (strcmp(fam->series[j].labels, l) == 0) {
                rc = -EEXIST;
                goto out;
            }
        for (unsigned j = 0; j < i; j++)
            if (strcmp(req_label(q, j), l) == 0) {
                rc = -EEXIST;
                goto out;
            }
    }

    unsigned per_series = q->fn != NULL ? 0 : q->kind == FAM_HISTOGRAM ? q->n_bounds + 2 : 1;
    uint64_t need = (uint64_t)per_series * q->n_series;
    if (need > m->max_slots - m->used_slots ||
        (q->kind == FAM_HISTOGRAM && q->fn == NULL && q->n_series > m->cap_hist - m->n_hist)) {
        rc = -ENOSPC;
        goto out;
    }

    /* Allocate everything that can fail before touching the registry. */
    dup = calloc(q->n_series, sizeof(*dup));
    if (dup == NULL)
        goto nomem;
    for (; n_dup < q->n_series; n_dup++) {
        dup[n_dup] = strdup(req_label(q, n_dup));
        if (dup[n_dup] == NULL)
            goto nomem;
    }
    if (fam == NULL) {
        if (m->n_fams == m->cap_fams) {
            unsigned ncap = m->cap_fams ? m->cap_fams * 2 : 16;
            struct family *nf = realloc(m->fams, ncap * sizeof(*nf));
            if (nf == NULL)
                goto nomem;
            m->fams = nf;
            m->cap_fams = ncap;
        }
        struct family nf = {.kind = q->kind, .n_bounds = q->n_bounds};
        nf.name = strdup(q->name);
        nf.help = strdup(q->help);
        if (q->n_bounds > 0) {
            nf.bounds = malloc(q->n_bounds * sizeof(double));
            if (nf.bounds != NULL)
                memcpy(nf.bounds, q->bounds, q->n_bounds * sizeof(double));
        }
        nf.cap_series = q->n_series;
        nf.series = calloc(nf.cap_series, sizeof(*nf.series));
        if (nf.name == NULL || nf.help == NULL || nf.series == NULL ||
            (q->n_bounds > 0 && nf.bounds == NULL)) {
            family_free(&nf);
            goto nomem;
        }
        m->fams[m->n_fams++] = nf;
        fam = &m->fams[m->n_fams - 1];
    } else if (fam->cap_series - fam->n_series < q->n_series) {
        unsigned ncap = BASE_MAX(fam->cap_series * 2, fam->n_series + q->n_series);
        struct series *ns = realloc(fam->series, ncap * sizeof(*ns));
        if (ns == NULL)
            goto nomem;
        fam->series = ns;
        fam->cap_series = ncap;
    }

    /* Commit. */
    uint32_t first = q->kind == FAM_HISTOGRAM ? m->n_hist : m->used_slots;
    for (unsigned i = 0; i < q->n_series; i++) {
        struct series *s = &fam->series[fam->n_series++];
        s->labels = dup[i];
        s->fn = q->fn;
        s->arg = q->arg;
        s->id = 0;
        if (q->fn != NULL)
            continue;
        if (q->kind == FAM_HISTOGRAM) {
            struct hist_series *h = &m->hist[m->n_hist];
            h->base = m->used_slots;
            h->n_bounds = q->n_bounds;
            h->bounds = fam->bounds;
            s->id = m->n_hist++;
        } else {
            s->id = m->used_slots;
        }
        m->used_slots += per_series;
    }
    free(dup);
    dup = NULL;
    if (id_out != NULL)
        *id_out = first;
    goto out;

nomem:
    rc = -ENOMEM;
    for (unsigned i = 0; i < n_dup; i++)
        free(dup[i]);
    free(dup);
out:
    pthread_mutex_unlock(&m->lock);
    return rc;
}

int obs_counter_register(struct obs_registry *r, const char *name, const char *help,
                         const char *const *labels, unsigned n_series, uint32_t *id_out)
{
    struct reg_req q = {.name = name, .help = help, .kind = FAM_COUNTER, .labels = labels,
                        .n_series = n_series};
    return register_series(r, &q, id_out);
}

int obs_gauge_register(struct obs_registry *r, const char *name, const char *help,
                       const char *const *labels, unsigned n_series, uint32_t *id_out)
{
    struct reg_req q = {.name = name, .help = help, .kind = FAM_GAUGE, .labels = labels,
                        .n_series = n_series};
    return register_series(r, &q, id_out);
}

int obs_gauge_func_register(struct obs_registry *r, const char *name, const char *help,
                            const char *label, double (*fn)(void *arg), void *arg)
{
    if (fn == NULL)
        return -EINVAL;
    struct reg_req q = {.name = name, .help = help, .kind = FAM_GAUGE, .one_label = label,
                        .n_series = 1, .fn = fn, .arg = arg};
    return register_series(r, &q, NULL);
}

int obs_counter_func_register(struct obs_registry *r, const char *name, const char *help,
                              const char *label, double (*fn)(void *arg), void *arg)
{
    if (fn == NULL)
        return -EINVAL;
    struct reg_req q = {.name = name, .help = help, .kind = FAM_COUNTER, .one_label = label,
                        .n_series = 1, .fn = fn, .arg = arg};
    return register_series(r, &q, NULL);
}

int obs_histogram_register(struct obs_registry *r, const char *name, const char *help,
                           const char *const *labels, unsigned n_series, const double *bounds,
                           unsigned n_bounds, uint32_t *id_out)
{
    struct reg_req q = {.name = name, .help = help, .kind = FAM_HISTOGRAM, .labels = labels,
                        .n_series = n_series, .bounds = bounds, .n_bounds = n_bounds};
    return register_series(r, &q, id_out);
}

/* ---- hot path ----------------------------------------------------------- */

void obs_histogram_observe(struct obs_registry *r, unsigned shard, uint32_t id, double v)
{
    const struct hist_series *h = &r->meta->hist[id];
    const double *b = h->bounds;
    uint32_t n = h->n_bounds, i;

    /* First bound >= v; NaN compares false everywhere and ends in +Inf. */
    if (n <= 16) {
        for (i = 0; i < n && !(v <= b[i]); i++)
            ;
    } else {
        uint32_t lo = 0, hi = n;
        while (lo < hi) {
            uint32_t mid = (lo + hi) / 2;
            if (v <= b[mid])
                hi = mid;
            else
                lo = mid + 1;
        }
        i = lo;
    }
    uint64_t *s = obs_slot_(r, shard, h->base);
    __atomic_store_n(&s[i], __atomic_load_n(&s[i], __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
    uint64_t bits = __atomic_load_n(&s[n + 1], __ATOMIC_RELAXED);
    double sum;
    memcpy(&sum, &bits, sizeof(sum));
    sum += v;
    memcpy(&bits, &sum, sizeof(sum));
    __atomic_store_n(&s[n + 1], bits, __ATOMIC_RELAXED);
}

/* ---- scrape ------------------------------------------------------------- */

static uint64_t slot_sum(const struct obs_registry *r, uint32_t slot)
{
    uint64_t sum = 0;
    for (uint32_t s = 0; s < r->n_shards; s++)
        sum += __atomic_load_n(&r->slots[(size_t)s * r->shard_stride + slot], __ATOMIC_RELAXED);
    return sum;
}

uint64_t obs_counter_read(const struct obs_registry *r, uint32_t id)
{
    return slot_sum(r, id);
}

int64_t obs_gauge_read(const struct obs_registry *r, uint32_t id)
{
    return (int64_t)slot_sum(r, id); /* two's complement sum of the parts */
}

static double slot_sum_double(const struct obs_registry *r, uint32_t slot)
{
    double sum = 0;
    for (uint32_t s = 0; s < r->n_shards; s++) {
        uint64_t bits =
            __atomic_load_n(&r->slots[(size_t)s * r->shard_stride + slot], __ATOMIC_RELAXED);
        double d;
        memcpy(&d, &bits, sizeof(d));
        sum += d;
    }
    return sum;
}

/* Prometheus float text: NaN, +Inf, -Inf, else the shortest of %.15g/%.17g
 * that reads back exactly. */
static const char *fmt_double(char out[32], double v)
{
    if (isnan(v))
        return "NaN";
    if (isinf(v))
        return v > 0 ? "+Inf" : "-Inf";
    snprintf(out, 32, "%.15g", v);
    if (strtod(out, NULL) != v)
        snprintf(out, 32, "%.17g", v);
    return out;
}

/* HELP text: exposition format 0.0.4 escapes only backslash and newline. */
static int put_help(struct buf *out, const char *s)
{
    int rc = 0;
    const char *run = s;
    for (const char *p = s; *p != '\0' && rc == 0; p++) {
        if (*p != '\\' && *p != '\n')
            continue;
        rc = buf_append(out, run, (size_t)(p - run));
        if (rc == 0)
            rc = buf_append_str(out, *p == '\\' ? "\\\\" : "\\n");
        run = p + 1;
    }
    return rc != 0 ? rc : buf_append_str(out, run);
}

/* name<suffix>{labels[,le="x"]} value\n */
static int put_sample(struct buf *out, const char *name, const char *suffix, const char *labels,
                      const char *le, const char *value)
{
    int rc = buf_append_str(out, name);
    if (rc == 0 && suffix != NULL)
        rc = buf_append_str(out, suffix);
    if (rc == 0 && (labels[0] != '\0' || le != NULL)) {
        rc = buf_append_str(out, "{");
        if (rc == 0)
            rc = buf_append_str(out, labels);
        if (rc == 0 && le != NULL)
            rc = buf_printf(out, "%sle=\"%s\"", labels[0] != '\0' ? "," : "", le);
        if (rc == 0)
            rc = buf_append_str(out, "}");
    }
    if (rc == 0)
        rc = buf_printf(out, " %s\n", value);
    return rc;
}

static int render_histogram(const struct obs_registry *r, const struct family *f,
                            const struct series *s, struct buf *out)
{
    const struct hist_series *h = &r->meta->hist[s->id];
    char num[32], le[32];
    uint64_t cum = 0;
    int rc = 0;

    for (uint32_t i = 0; i <= h->n_bounds && rc == 0; i++) {
        cum += slot_sum(r, h->base + i);
        snprintf(num, sizeof(num), "%" PRIu64, cum);
        rc = put_sample(out, f->name, "_bucket", s->labels,
                        i < h->n_bounds ? fmt_double(le, h->bounds[i]) : "+Inf", num);
    }
    if (rc == 0)
        rc = put_sample(out, f->name, "_sum", s->labels, NULL,
                        fmt_double(num, slot_sum_double(r, h->base + h->n_bounds + 1)));
    /* _count is the +Inf bucket, so the two always agree within a scrape even
     * while workers observe. */
    snprintf(num, sizeof(num), "%" PRIu64, cum);
    if (rc == 0)
        rc = put_sample(out, f->name, "_count", s->labels, NULL, num);
    return rc;
}

int obs_render_prometheus(struct obs_registry *r, struct buf *out)
{
    if (r == NULL || out == NULL)
        return -EINVAL;
    struct obs_registry_meta *m = r->meta;
    int rc = 0;
    pthread_mutex_lock(&m->lock);
    for (unsigned fi = 0; fi < m->n_fams && rc == 0; fi++) {
        const struct family *f = &m->fams[fi];
        rc = buf_printf(out, "# HELP %s ", f->name);
        if (rc == 0)
            rc = put_help(out, f->help);
        if (rc == 0)
            rc = buf_printf(out, "\n# TYPE %s %s\n", f->name, fam_kind_names[f->kind]);
        for (unsigned si = 0; si < f->n_series && rc == 0; si++) {
            const struct series *s = &f->series[si];
            char num[32];
            const char *v = num;
            if (s->fn != NULL)
                v = fmt_double(num, s->fn(s->arg));
            else if (f->kind == FAM_COUNTER)
                snprintf(num, sizeof(num), "%" PRIu64, slot_sum(r, s->id));
            else if (f->kind == FAM_GAUGE)
                snprintf(num, sizeof(num), "%" PRId64, (int64_t)slot_sum(r, s->id));
            if (f->kind == FAM_HISTOGRAM && s->fn == NULL)
                rc = render_histogram(r, f, s, out);
            else
                rc = put_sample(out, f->name, NULL, s->labels, NULL, v);
        }
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}

/* ---- process metrics ---------------------------------------------------- */

/* Read a small /proc file into buf (NUL-terminated). Returns bytes or -errno. */
static ssize_t read_small_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t k = read(fd, buf + n, cap - 1 - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        n += (size_t)k;
    }
    close(fd);
    buf[n] = '\0';
    return (ssize_t)n;
}

/* /proc/self/statm field `field` (0: size, 1: resident) in bytes. */
static double statm_bytes(int field)
{
    char buf[256];
    unsigned long long v[2];
    if (read_small_file("/proc/self/statm", buf, sizeof(buf)) <= 0 ||
        sscanf(buf, "%llu %llu", &v[0], &v[1]) != 2)
        return NAN;
    long page = sysconf(_SC_PAGESIZE);
    return (double)v[field] * (double)(page > 0 ? page : 4096);
}

static double proc_rss_bytes(void *arg)
{
    (void)arg;
    return statm_bytes(1);
}

static double proc_vsize_bytes(void *arg)
{
    (void)arg;
    return statm_bytes(0);
}

static double proc_cpu_seconds(void *arg)
{
    (void)arg;
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return NAN;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double proc_open_fds(void *arg)
{
    (void)arg;
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return NAN;
    double n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own fd */
}

static double proc_max_fds(void *arg)
{
    (void)arg;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return NAN;
    return rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur;
}

static double proc_start_time(void *arg)
{
    return *(const double *)arg;
}

/* Start time in seconds since the epoch: boot time (btime in /proc/stat) plus
 * field 22 of /proc/self/stat (clock ticks after boot), as the Go client. */
static double process_start_time(void)
{
    char buf[4096];
    if (read_small_file("/proc/self/stat", buf, sizeof(buf)) <= 0)
        return NAN;
    const char *p = strrchr(buf, ')'); /* comm may hold spaces and parens */
    if (p == NULL)
        return NAN;
    unsigned long long start_ticks = 0;
    /* After ") ": field 3 (state) .. field 22 (starttime). */
    p += 2;
    for (int field = 3; field < 22 && p != NULL; field++) {
        p = strchr(p, ' ');
        if (p != NULL)
            p++;
    }
    if (p == NULL || sscanf(p, "%llu", &start_ticks) != 1)
        return NAN;
    if (read_small_file("/proc/stat", buf, sizeof(buf)) <= 0)
        return NAN;
    const char *bt = strstr(buf, "\nbtime ");
    unsigned long long btime = 0;
    if (bt == NULL || sscanf(bt + 7, "%llu", &btime) != 1)
        return NAN;
    long hz = sysconf(_SC_CLK_TCK);
    return (double)btime + (double)start_ticks / (double)(hz > 0 ? hz : 100);
}

int obs_register_process_metrics(struct obs_registry *r)
{
    if (r == NULL)
        return -EINVAL;
    r->meta->process_start_time_s = process_start_time();
    int rc = obs_gauge_func_register(r, "process_resident_memory_bytes",
                                     "Resident memory size in bytes.", NULL, proc_rss_bytes, NULL);
    if (rc == 0)
        rc = obs_gauge_func_register(r, "process_virtual_memory_bytes",
                                     "Virtual memory size in bytes.", NULL, proc_vsize_bytes, NULL);
    if (rc == 0)
        rc = obs_counter_func_register(r, "process_cpu_seconds_total",
                                       "Total user and system CPU time spent in seconds.", NULL,
                                       proc_cpu_seconds, NULL);
    if (rc == 0)
        rc = obs_gauge_func_register(r, "process_open_fds", "Number of open file descriptors.",
                                     NULL, proc_open_fds, NULL);
    if (rc == 0)
        rc = obs_gauge_func_register(r, "process_max_fds",
                                     "Maximum number of open file descriptors.", NULL,
                                     proc_max_fds, NULL);
    if (rc == 0)
        rc = obs_gauge_func_register(r, "process_start_time_seconds",
                                     "Start time of the process since unix epoch in seconds.",
                                     NULL, proc_start_time, &r->meta->process_start_time_s);
    return rc;
}

static double log_dropped_fn(void *arg)
{
    (void)arg;
    return (double)log_dropped_total();
}

int obs_register_log_metrics(struct obs_registry *r)
{
    return obs_counter_func_register(r, "log_lines_dropped_total",
                                     "Log lines lost because the log output would not take them.",
                                     NULL, log_dropped_fn, NULL);
}
