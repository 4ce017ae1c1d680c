/* SPDX-License-Identifier: Apache-2.0 */
/* File exporter, the default upstream: appends each batch as one line of
 * OTLP JSON to <dir>/<signal>.jsonl (the format the OpenTelemetry
 * Collector's otlpjsonfile receiver reads), rotating by size and keeping a
 * bounded number of rotated files. Runs on the export thread, so plain
 * blocking write(2) is fine here. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "export/exporter.h"
#include "obs/log.h"
#include "otlp/otlp.h"
#include "otlp/otlp_json.h"

struct file_done {
    struct batch *b;
    struct export_result r;
};

struct file_exp {
    char *dir;
    uint64_t max_file_bytes;
    uint32_t max_files;
    int fd[OTLP_SIGNAL_COUNT]; /* -1: not open */
    uint64_t size[OTLP_SIGNAL_COUNT];
    struct buf line;             /* JSON of the batch being written */
    int efd;                     /* eventfd: wakeup() */
    struct file_done *pending;   /* written, not yet reported */
    struct file_done *reporting; /* scratch for poll() */
    unsigned n_pending, cap;
    bool io_failing; /* log once per burst of errors */
    bool discard;    /* the "discard" exporter: acknowledge without writing */
};

/* mkdir -p; returns 0 or -errno. */
static int mkdir_p(const char *path)
{
    char tmp[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(tmp))
        return -ENAMETOOLONG;
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = c;
        if (c == '\0')
            break;
    }
    struct stat st;
    if (stat(path, &st) < 0)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

static int sig_path(const struct file_exp *f, enum otlp_signal s, char *out, size_t n)
{
    if ((size_t)snprintf(out, n, "%s/%s.jsonl", f->dir, otlp_signal_names[s]) >= n)
        return -ENAMETOOLONG;
    return 0;
}

static int open_sig(struct file_exp *f, enum otlp_signal s)
{
    char path[4200];
    int rc = sig_path(f, s, path, sizeof(path));
    if (rc < 0)
        return rc;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0 && errno == ENOENT) {
        /* the directory was removed under us: recreate it */
        if ((rc = mkdir_p(f->dir)) < 0)
            return rc;
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    }
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    f->fd[s] = fd;
    f->size[s] = (uint64_t)st.st_size;
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Is `name` a rotated file of signal `s`: "<signal>-<digit>...jsonl"? */
static bool is_rotated(const char *name, enum otlp_signal s)
{
    const char *sig = otlp_signal_names[s];
    size_t sl = strlen(sig), nl = strlen(name);
    return nl > sl + 7 && strncmp(name, sig, sl) == 0 && name[sl] == '-' && name[sl + 1] >= '0' &&
           name[sl + 1] <= '9' && strcmp(name + nl - 6, ".jsonl") == 0;
}

/* Delete the oldest rotated files of `s` beyond max_files. The names carry a
 * UTC timestamp, so name order is age order. */
static void prune(struct file_exp *f, enum otlp_signal s)
{
    DIR *d = opendir(f->dir);
    if (d == NULL)
        return;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!is_rotated(e->d_name, s))
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **nn = realloc(names, nc * sizeof(*nn));
            if (nn == NULL)
                break;
            names = nn;
            cap = nc;
        }
        if ((names[n] = strdup(e->d_name)) == NULL)
            break;
        n++;
    }
    closedir(d);
    if (n > f->max_files) {
        qsort(names, n, sizeof(*names), cmp_names);
        for (size_t i = 0; i < n - f->max_files; i++) {
            char path[4200];
            snprintf(path, sizeof(path), "%s/%s", f->dir, names[i]);
            if (unlink(path) < 0 && errno != ENOENT)
                log_warn("file exporter: cannot delete rotated file", "path=%s errno=%d", path,
                         errno);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Close <signal>.jsonl and rename it to <signal>-<YYYYmmddTHHMMSS.mmm>Z.jsonl
 * (a later millisecond when that name exists), then prune. */
static int rotate(struct file_exp *f, enum otlp_signal s)
{
    char from[4200], to[4300];
    int rc = sig_path(f, s, from, sizeof(from));
    if (rc < 0)
        return rc;
    uint64_t ms = base_wall_ns() / 1000000ull;
    for (unsigned tries = 0;; tries++, ms++) {
        time_t secs = (time_t)(ms / 1000);
        struct tm tm;
        char ts[32];
        gmtime_r(&secs, &tm);
        strftime(ts, sizeof(ts), "%Y%m%dT%H%M%S", &tm);
        snprintf(to, sizeof(to), "%s/%s-%s.%03uZ.jsonl", f->dir, otlp_signal_names[s], ts,
                 (unsigned)(ms % 1000));
        if (access(to, F_OK) < 0)
            break;
        if (tries == 10000)
            return -EEXIST;
    }
    if (rename(from, to) < 0)
        return -errno;
    close(f->fd[s]);
    f->fd[s] = -1;
    f->size[s] = 0;
    prune(f, s);
    return 0;
}

/* Append one complete line; a short write is undone so the file only ever
 * holds whole lines. Returns 0 or -errno. */
static int write_line(struct file_exp *f, enum otlp_signal s, const uint8_t *p, size_t len)
{
    int rc;
    if (f->fd[s] >= 0 && f->size[s] > 0 && f->size[s] + len > f->max_file_bytes &&
        (rc = rotate(f, s)) < 0)
        return rc;
    if (f->fd[s] < 0 && (rc = open_sig(f, s)) < 0)
        return rc;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(f->fd[s], p + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            if (off > 0 && ftruncate(f->fd[s], (off_t)f->size[s]) < 0) {
                /* cannot undo: start a fresh file next time rather than
                 * appending after half a line */
                close(f->fd[s]);
                f->fd[s] = -1;
            }
            return rc;
        }
        off += (size_t)w;
    }
    f->size[s] += len;
    return 0;
}

static void set_result(struct export_result *r, enum export_status st, const char *reason,
                       const char *msg, int err)
{
    memset(r, 0, sizeof(*r));
    r->status = st;
    snprintf(r->reason, sizeof(r->reason), "%s", reason);
    if (err != 0)
        snprintf(r->message, sizeof(r->message), "%s: %s", msg, strerror(-err));
    else
        snprintf(r->message, sizeof(r->message), "%s", msg);
}

static int file_submit(void *state, struct batch *b)
{
    struct file_exp *f = state;
    if (b == NULL || (unsigned)b->signal >= OTLP_SIGNAL_COUNT)
        return -EINVAL;
    if (f->n_pending == f->cap)
        return -EBUSY;
    struct file_done *d = &f->pending[f->n_pending];
    d->b = b;
    enum otlp_signal s = b->signal;

    if (f->discard) {
        set_result(&d->r, EXPORT_OK, "", "", 0);
        f->n_pending++;
        return 0;
    }
    buf_reset(&f->line);
    int rc = otlp_proto_to_json(s, b->body.data, b->body.len, &f->line);
    if (rc == 0)
        rc = buf_append(&f->line, "\n", 1);
    if (rc == -EINVAL || rc == -EMSGSIZE) {
        set_result(&d->r, EXPORT_PERMANENT, "encode_error",
                   "batch is not a valid Export*ServiceRequest", 0);
    } else if (rc < 0) {
        set_result(&d->r, EXPORT_RETRYABLE, "no_memory", "converting to JSON", rc);
    } else if ((rc = write_line(f, s, f->line.data, f->line.len)) < 0) {
        set_result(&d->r, EXPORT_RETRYABLE, "io_error", f->dir, rc);
        if (!f->io_failing) {
            f->io_failing = true;
            log_error("file exporter cannot write; retrying", "dir=%s signal=%s error=%s", f->dir,
                      otlp_signal_names[s], strerror(-rc));
        }
    } else {
        set_result(&d->r, EXPORT_OK, "", "", 0);
        if (f->io_failing) {
            f->io_failing = false;
            log_info("file exporter writes again", "dir=%s", f->dir);
        }
    }
    f->n_pending++;
    /* long lines once should not pin memory forever */
    if (f->line.cap > (64u << 20)) {
        buf_free(&f->line);
        (void)buf_init(&f->line, 0, 0);
    }
    return 0;
}

static int file_poll(void *state, int timeout_ms, export_done_fn done, void *arg)
{
    struct file_exp *f = state;
    if (f->n_pending == 0 && timeout_ms > 0) {
        struct pollfd pfd = {.fd = f->efd, .events = POLLIN};
        int n = poll(&pfd, 1, timeout_ms);
        if (n < 0 && errno != EINTR)
            return -errno;
    }
    uint64_t v;
    while (read(f->efd, &v, sizeof(v)) == (ssize_t)sizeof(v)) {
    }
    /* report from a copy: done() may submit again */
    unsigned n = f->n_pending;
    memcpy(f->reporting, f->pending, n * sizeof(*f->pending));
    f->n_pending = 0;
    for (unsigned i = 0; i < n; i++)
        done(arg, f->reporting[i].b, &f->reporting[i].r);
    return (int)n;
}

static void file_wakeup(void *state)
{
    struct file_exp *f = state;
    uint64_t one = 1;
    ssize_t w = write(f->efd, &one, sizeof(one));
    (void)w; /* EAGAIN: the counter is already non-zero, so poll wakes anyway */
}

static void file_destroy(void *state)
{
    struct file_exp *f = state;
    if (f == NULL)
        return;
    for (unsigned s = 0; s < OTLP_SIGNAL_COUNT; s++) {
        if (f->fd[s] >= 0)
            close(f->fd[s]);
    }
    if (f->efd >= 0)
        close(f->efd);
    buf_free(&f->line);
    free(f->pending);
    free(f->reporting);
    free(f->dir);
    free(f);
}

static const struct exporter_ops file_ops = {
    .name = "file",
    .submit = file_submit,
    .poll = file_poll,
    .wakeup = file_wakeup,
    .destroy = file_destroy,
};

/* Same completion machinery, nothing written: for benchmarks and for
 * measuring ingest without an upstream. */
static const struct exporter_ops discard_ops = {
    .name = "discard",
    .submit = file_submit,
    .poll = file_poll,
    .wakeup = file_wakeup,
    .destroy = file_destroy,
};

static int file_create(const struct svc_config *cfg, bool discard, struct exporter *out)
{
    if (cfg == NULL || out == NULL)
        return -EINVAL;
    const struct file_exporter_config *fc = &cfg->exporter.file;
    const char *data_dir = cfg->service.data_dir;
    bool have_path = fc->path != NULL && fc->path[0] != '\0';
    if (!discard && !have_path && (data_dir == NULL || data_dir[0] == '\0')) {
        log_error("file exporter needs exporter.file.path or service.data_dir", "");
        return -EINVAL;
    }
    struct file_exp *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -ENOMEM;
    for (unsigned s = 0; s < OTLP_SIGNAL_COUNT; s++)
        f->fd[s] = -1;
    int rc = -ENOMEM;
    f->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (f->efd < 0) {
        rc = -errno;
        goto fail;
    }
    f->max_file_bytes = fc->max_file_bytes ? fc->max_file_bytes : UINT64_MAX;
    f->max_files = fc->max_files;
    f->cap = BASE_MAX(cfg->batch.max_concurrent_exports, 1u);
    f->pending = calloc(f->cap, sizeof(*f->pending));
    f->reporting = calloc(f->cap, sizeof(*f->reporting));
    if (f->pending == NULL || f->reporting == NULL || buf_init(&f->line, 0, 0) < 0)
        goto fail;
    if (discard) {
        f->discard = true;
        log_warn("discard exporter: batches are acknowledged and discarded", "");
        out->ops = &discard_ops;
        out->state = f;
        return 0;
    }
    if (have_path) {
        f->dir = strdup(fc->path);
    } else {
        size_t n = strlen(data_dir) + sizeof("/export");
        if ((f->dir = malloc(n)) != NULL)
            snprintf(f->dir, n, "%s/export", data_dir);
    }
    if (f->dir == NULL)
        goto fail;
    size_t dl = strlen(f->dir);
    while (dl > 1 && f->dir[dl - 1] == '/')
        f->dir[--dl] = '\0';
    if ((rc = mkdir_p(f->dir)) < 0) {
        log_error("file exporter cannot create its directory", "dir=%s error=%s", f->dir,
                  strerror(-rc));
        goto fail;
    }
    log_info("file exporter ready", "dir=%s max_file_bytes=%" PRIu64 " max_files=%u", f->dir,
             fc->max_file_bytes, f->max_files);
    out->ops = &file_ops;
    out->state = f;
    return 0;
fail:
    file_destroy(f);
    return rc;
}

int export_file_create(const struct svc_config *cfg, struct exporter *out)
{
    return file_create(cfg, false, out);
}

int export_discard_create(const struct svc_config *cfg, struct exporter *out)
{
    return file_create(cfg, true, out);
}
