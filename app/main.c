/* SPDX-License-Identifier: Apache-2.0 */
/* otlp-service: CLI parsing and explicit wiring of the modules. Start order:
 * config -> logs -> metrics -> (dpdk: EAL) -> pipeline -> receiver ->
 * exporter -> control plane -> workers; stop order is the reverse, draining
 * on the way. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <netdb.h>

#include "base/base.h"
#include "config/config.h"
#include "export/export.h"
#include "grpc/grpc_receiver.h"
#include "memlimit/memlimit.h"
#include "obs/health.h"
#include "obs/log.h"
#include "obs/sdnotify.h"
#include "obs/metrics.h"
#include "otlp_version.h"
#include "pipeline/pipeline.h"
#include "receiver/receiver.h"
#include "sock/sock.h"
#include "tls/tls.h"
#include "dpdk/dpdk_server.h"

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t reload_requested; /* SIGHUP: reload the config and certificates */

static void on_hup(int sig)
{
    (void)sig;
    reload_requested = 1;
}

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: otlp-service [--config FILE]          run the gateway\n"
        "       otlp-service validate --config FILE  check a config file, explain every error\n"
        "       otlp-service health-check [--config FILE] [--host H] [--port P]\n"
        "                                            exit 0 when the local instance is ready\n"
        "       otlp-service config-reference        print the Markdown key reference\n"
        "       otlp-service --version\n"
        "Environment: OTLP__SECTION__KEY=value overrides any key; ${VAR} expands in the file.\n");
}

/* Load the config or print every problem. Returns 0 or an exit code. */
static int load_config(const char *path, struct svc_config *cfg, bool quiet_ok)
{
    struct buf errs = {0};
    int rc = config_load(path, cfg, &errs);
    if (rc < 0) {
        fprintf(stderr, "%.*s", (int)errs.len, errs.data ? (char *)errs.data : "");
        if (errs.len == 0)
            fprintf(stderr, "%s: %s\n", path ? path : "config", strerror(-rc));
        buf_free(&errs);
        return 2;
    }
    buf_free(&errs);
    (void)quiet_ok;
    return 0;
}

static int cmd_validate(const char *path)
{
    if (path == NULL) {
        fprintf(stderr, "validate: --config FILE is required\n");
        return 2;
    }
    struct svc_config cfg;
    int rc = load_config(path, &cfg, false);
    if (rc != 0)
        return rc;
    printf("%s: ok\n", path);
    config_free(&cfg);
    return 0;
}

/* GET /health/ready on the local control plane; 0 only on 200. */
static int cmd_health_check(const char *path, const char *host, int port)
{
    struct svc_config cfg;
    config_defaults(&cfg);
    if (path != NULL) {
        config_free(&cfg);
        if (load_config(path, &cfg, true) != 0)
            return 2;
    }
    if (port <= 0)
        port = cfg.control.port;
    if (host == NULL)
        host = (strcmp(cfg.control.host, "0.0.0.0") == 0 || strcmp(cfg.control.host, "::") == 0)
                   ? "127.0.0.1"
                   : cfg.control.host;
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port & 0xffff);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int rc = 1;
    if (getaddrinfo(host, portstr, &hints, &ai) != 0) {
        fprintf(stderr, "health-check: cannot resolve %s\n", host);
        goto out;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = 3};
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        fprintf(stderr, "health-check: cannot connect to %s:%d: %s\n", host, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        goto out;
    }
    char req[256];
    int n = snprintf(req, sizeof(req),
                     "GET /health/ready HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host);
    char resp[4096];
    ssize_t got = 0;
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) == n) {
        ssize_t r;
        while (got < (ssize_t)sizeof(resp) - 1 &&
               (r = recv(fd, resp + got, sizeof(resp) - 1 - (size_t)got, 0)) > 0)
            got += r;
    }
    close(fd);
    resp[got > 0 ? got : 0] = '\0';
    if (strncmp(resp, "HTTP/1.1 200", 12) == 0) {
        rc = 0;
        printf("ready\n");
    } else {
        char *body = strstr(resp, "\r\n\r\n");
        fprintf(stderr, "not ready: %s\n", body ? body + 4 : resp);
    }
out:
    if (ai)
        freeaddrinfo(ai);
    config_free(&cfg);
    return rc;
}

static double queue_size_fn(void *arg)
{
    return (double)pipeline_queued_items(arg);
}

static double queue_capacity_fn(void *arg)
{
    return (double)pipeline_capacity_items(arg);
}

static double queue_batches_fn(void *arg)
{
    return (double)pipeline_queued_batches(arg);
}

static double free_batches_fn(void *arg)
{
    return (double)pipeline_free_batches(arg);
}

static double info_fn(void *arg)
{
    (void)arg;
    return 1.0;
}

/* SIGHUP reload: what the key callbacks collect and the objects to apply to. */
struct reload {
    struct memlimit *ml;
    struct receiver *recv;
    struct grpc_receiver *grecv; /* NULL: no gRPC listener */
    struct export_runner *exp;
    bool log_level, memory_limiter, auth, retry;
    char restart[1024]; /* keys that changed but need a restart */
};

/* Keys SIGHUP applies live (a trailing '.' is a whole section). */
static bool reload_key_is_live(const char *key)
{
    static const char *const live[] = {"service.log_level", "memory_limiter.", "receiver.auth.",
                                       "exporter.retry."};
    for (unsigned i = 0; i < ARRAY_SIZE(live); i++) {
        size_t n = strlen(live[i]);
        if (live[i][n - 1] == '.' ? strncmp(key, live[i], n) == 0 : strcmp(key, live[i]) == 0)
            return true;
    }
    return false;
}

static void reload_on_change(const char *key, const char *old_value, const char *new_value,
                             void *arg)
{
    struct reload *rl = arg;
    if (!reload_key_is_live(key)) {
        size_t len = strlen(rl->restart);
        snprintf(rl->restart + len, sizeof(rl->restart) - len, "%s%s", len ? "," : "", key);
        return;
    }
    log_info("config reloaded", "key=%s old=%s new=%s", key, old_value, new_value);
    rl->log_level |= strcmp(key, "service.log_level") == 0;
    rl->memory_limiter |= strncmp(key, "memory_limiter.", 15) == 0;
    rl->auth |= strncmp(key, "receiver.auth.", 14) == 0;
    rl->retry |= strncmp(key, "exporter.retry.", 15) == 0;
}

/* Take string `*from` into `*to` (the running config): the old one is
 * freed, `*from` is left NULL so config_free() of the new config skips it.
 * Only for strings no other thread reads after start. */
static void take_string(char **to, char **from)
{
    free(*to);
    *to = *from;
    *from = NULL;
}

/*
 * SIGHUP: re-read the config file and apply what can change while running
 * (service.log_level, memory_limiter.*, exporter.retry.*, receiver.auth.*: bearer tokens and
 * the token file, which is re-read even when its name is unchanged). One log
 * line per applied key, one listing changed keys that need a restart (they
 * keep their running value, so every later reload lists them again). A file
 * that does not load or validate changes nothing.
 */
static void reload_config(const char *path, struct svc_config *run, struct reload *rl)
{
    struct svc_config next;
    struct buf errs = {0};
    int rc = config_load(path, &next, &errs);
    if (rc < 0) {
        for (size_t i = 0; i < errs.len; i++)
            if (errs.data[i] == '\n')
                errs.data[i] = i + 1 < errs.len ? ';' : ' ';
        log_error("SIGHUP: config refused, the running config stays",
                  "path=%s error=%s errors=%.*s", path ? path : "(defaults)", strerror(-rc),
                  (int)errs.len, errs.data ? (const char *)errs.data : "");
        buf_free(&errs);
        return;
    }
    buf_free(&errs);
    struct memlimit_limits lim;
    if (memlimit_limits_from_config(&next.memory_limiter, memlimit_cgroup_max(), &lim) < 0) {
        log_error("SIGHUP: config refused, the running config stays", "error=%s",
                  "memory_limiter.spike_limit_mib is not below the limit");
        config_free(&next);
        return;
    }
    rl->log_level = rl->memory_limiter = rl->auth = rl->retry = false;
    rl->restart[0] = '\0';
    config_diff(run, &next, reload_on_change, rl);
    bool has_auth = (next.receiver.auth.token_file && *next.receiver.auth.token_file) ||
                    (run->receiver.auth.token_file && *run->receiver.auth.token_file);
    if (rl->auth || has_auth) {
        unsigned n = 0;
        if ((rc = receiver_reload_auth(rl->recv, &next.receiver.auth, &n)) == 0 &&
            (rl->grecv == NULL ||
             (rc = grpc_receiver_reload_auth(rl->grecv, &next.receiver.auth, NULL)) == 0)) {
            take_string(&run->receiver.auth.bearer_tokens, &next.receiver.auth.bearer_tokens);
            take_string(&run->receiver.auth.token_file, &next.receiver.auth.token_file);
            log_info("SIGHUP: bearer tokens reloaded", "tokens=%u", n);
        } else {
            log_error("SIGHUP: bearer tokens not reloaded, the old ones stay", "error=%s",
                      strerror(-rc));
        }
    }
    if (rl->log_level) {
        enum log_level lvl;
        if (log_level_parse(next.service.log_level, &lvl) == 0)
            log_set_level(lvl);
        take_string(&run->service.log_level, &next.service.log_level);
    }
    if (rl->memory_limiter) {
        memlimit_set_limits(rl->ml, &lim);
        run->memory_limiter = next.memory_limiter;
        log_info("SIGHUP: memory limiter limits applied",
                 "hard_limit_bytes=%" PRIu64 " soft_limit_bytes=%" PRIu64, lim.hard_bytes,
                 lim.soft_bytes);
    }
    if (rl->retry) {
        export_runner_set_retry(rl->exp, &next.exporter.retry);
        run->exporter.retry = next.exporter.retry;
    }
    if (rl->restart[0] != '\0')
        log_warn("SIGHUP: changed keys need a restart to take effect", "keys=%s", rl->restart);
    config_free(&next);
}

static int run(const char *path)
{
    struct svc_config cfg;
    int rc = load_config(path, &cfg, false);
    if (rc != 0)
        return rc;
    enum log_level lvl = LOG_INFO;
    if (log_level_parse(cfg.service.log_level, &lvl) == 0)
        log_set_level(lvl);

    bool dpdk = cfg.dataplane.mode == DATAPLANE_DPDK;
    unsigned n_workers = cfg.dataplane.workers;
    if (n_workers == 0) {
        /* One per CPU this process may run on (cpuset of the container or
         * the systemd CPUAffinity=), not every CPU of the machine. */
        cpu_set_t set;
        long n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set)
                                                              : sysconf(_SC_NPROCESSORS_ONLN);
        n_workers = n > 0 ? (unsigned)n : 1;
        if (dpdk && n_workers > 1)
            n_workers--; /* dpdk: the main lcore keeps one CPU */
    }
    if (n_workers > CONFIG_MAX_CORES)
        n_workers = CONFIG_MAX_CORES;

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    struct sigaction sh = {.sa_handler = on_hup};
    sigemptyset(&sh.sa_mask);
    sigaction(SIGHUP, &sh, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct obs_registry *reg = NULL;
    struct pipeline *pipe = NULL;
    struct receiver *recv = NULL;
    struct grpc_receiver *grecv = NULL; /* NULL when receiver.grpc_port is 0 */
    struct export_runner *exp = NULL;
    struct control_server *ctl = NULL;
    struct sock_server *srv = NULL;
    struct dpdk_server *dsrv = NULL; /* dataplane.mode: dpdk, instead of srv */
    struct tls_ctx *tls = NULL;      /* receiver.tls.enabled */
    struct memlimit *ml = NULL;      /* memory_limiter */
    unsigned shard_export = n_workers, shard_control = n_workers + 1;
    rc = 1;

    char info_label[160];
    snprintf(info_label, sizeof(info_label), "version=\"%s\",mode=\"%s\",workers=\"%u\"",
             OTLP_SERVICE_VERSION, config_dataplane_mode_name(cfg.dataplane.mode), n_workers);
    if (obs_registry_create(n_workers + 2, 8192, &reg) < 0 ||
        obs_register_process_metrics(reg) < 0 ||
        obs_gauge_func_register(reg, "otlp_build_info", "Build and run-time facts", info_label,
                                info_fn, NULL) < 0) {
        log_error("cannot create metrics registry", "");
        goto out;
    }
    /* dpdk: the EAL first, the pipeline's rings and batch pool live in its
     * memory. */
    if (dpdk && (rc = dpdk_eal_start(&cfg, n_workers)) < 0) {
        log_error("cannot start the DPDK EAL", "error=%s", strerror(-rc));
        goto fail;
    }
    const struct pipeline_env *penv = dpdk ? dpdk_pipeline_env(&cfg) : NULL;
    if ((rc = pipeline_create_env(&cfg, n_workers, penv, &pipe)) < 0) {
        log_error("cannot create pipeline", "error=%s", strerror(-rc));
        goto fail;
    }
    if (obs_gauge_func_register(reg, "otlp_queue_size", "Items accepted and not yet exported", "",
                                queue_size_fn, pipe) < 0 ||
        obs_gauge_func_register(reg, "otlp_queue_capacity", "batch.max_queue_size", "",
                                queue_capacity_fn, pipe) < 0 ||
        obs_gauge_func_register(reg, "otlp_queue_batches",
                                "Closed batches waiting for the exporter", "", queue_batches_fn,
                                pipe) < 0 ||
        obs_gauge_func_register(reg, "otlp_pool_free_batches", "Batch buffers free in the pool", "",
                                free_batches_fn, pipe) < 0)
        goto fail;
    if (cfg.receiver.tls.enabled) {
        if ((rc = tls_ctx_create(&cfg.receiver.tls, reg, n_workers, &tls)) < 0) {
            log_error("cannot set up TLS", "error=%s", strerror(-rc));
            goto fail;
        }
    }
    struct memlimit_limits ml_limits;
    if ((rc = memlimit_limits_from_config(&cfg.memory_limiter, memlimit_cgroup_max(), &ml_limits)) <
            0 ||
        (rc = memlimit_create(&ml_limits, n_workers, reg, NULL, NULL, &ml)) < 0) {
        log_error("cannot create memory limiter", "error=%s", strerror(-rc));
        goto fail;
    }
    if (ml_limits.hard_bytes != 0)
        log_info("memory limiter on",
                 "hard_limit_bytes=%" PRIu64 " soft_limit_bytes=%" PRIu64 " derived=%s",
                 ml_limits.hard_bytes, ml_limits.soft_bytes,
                 cfg.memory_limiter.limit_mib == 0 ? "cgroup" : "no");
    if ((rc = receiver_create(&cfg, pipe, reg, n_workers, &recv)) < 0) {
        log_error("cannot create receiver", "error=%s", strerror(-rc));
        goto fail;
    }
    receiver_set_memlimit(recv, ml);
    pipeline_set_pressure(pipe, &ml->state);
    if (cfg.receiver.grpc_port != 0 &&
        (rc = grpc_receiver_create(&cfg, pipe, reg, n_workers, &grecv)) < 0) {
        log_error("cannot create grpc receiver", "error=%s", strerror(-rc));
        goto fail;
    }
    if (grecv != NULL)
        grpc_receiver_set_memlimit(grecv, ml);
    if ((rc = export_runner_create(&cfg, pipe, reg, shard_export, &exp)) < 0) {
        log_error("cannot create exporter", "error=%s", strerror(-rc));
        goto fail;
    }
    if ((rc = control_server_create(&cfg, reg, shard_control, &ctl)) < 0 ||
        (rc = dpdk ? dpdk_server_create(&cfg, recv, grecv, pipe, reg, n_workers, &dsrv)
                   : sock_server_create(&cfg, recv, grecv, pipe, reg, n_workers, &srv)) < 0 ||
        (tls != NULL &&
         (rc = dpdk ? dpdk_server_set_tls(dsrv, tls) : sock_server_set_tls(srv, tls)) < 0)) {
        log_error("cannot create servers", "error=%s", strerror(-rc));
        goto fail;
    }
    health_set(HEALTH_RECEIVER, false, "starting");
    health_set(HEALTH_EXPORTER, true, "");
    health_set(HEALTH_PIPELINE, true, "");
    if ((rc = memlimit_start(ml)) < 0 || (rc = control_server_start(ctl)) < 0 ||
        (rc = dpdk ? dpdk_export_start(exp, n_workers, reg) : export_runner_start(exp)) < 0 ||
        (rc = dpdk ? dpdk_server_start(dsrv) : sock_server_start(srv)) < 0)
        goto fail;
    health_set(HEALTH_RECEIVER, true, "");
    health_set_started();
    sdnotify_init();
    {
        char status[96];
        snprintf(status, sizeof(status), "accepting OTLP: %u workers, exporter %s", n_workers,
                 config_exporter_protocol_name(cfg.exporter.protocol));
        sdnotify_ready(status);
    }
    log_info("otlp-service started", "version=%s workers=%u exporter=%s queue=%u",
             OTLP_SERVICE_VERSION, n_workers, config_exporter_protocol_name(cfg.exporter.protocol),
             cfg.batch.max_queue_size);

    while (!stop_requested) {
        struct timespec ts = {.tv_nsec = 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        /* Keep-alives only while live: a fatal health state (or this loop
         * hanging) lets WatchdogSec= restart the service. */
        if (health_live())
            sdnotify_watchdog(base_now_ms());
        if (reload_requested) {
            reload_requested = 0;
            sdnotify_reloading();
            struct reload rl = {.ml = ml, .recv = recv, .grecv = grecv, .exp = exp};
            reload_config(path, &cfg, &rl);
            if (tls != NULL)
                tls_ctx_reload(tls); /* logs the outcome; keeps the old certificates on error */
            sdnotify_ready("reloaded");
        }
    }

    /* Graceful stop: refuse new work, finish requests in flight, flush
     * batches, export what is queued until the deadline. */
    uint64_t deadline = base_now_ms() + cfg.service.shutdown_timeout_ms;
    log_info("stopping", "deadline_ms=%u", cfg.service.shutdown_timeout_ms);
    health_set_stopping();
    sdnotify_stopping("draining: finishing requests and exporting queued batches");
    receiver_set_draining(recv, true);
    if (grecv != NULL)
        grpc_receiver_set_draining(grecv, true);
    sock_server_stop(srv, base_now_ms() + cfg.service.shutdown_timeout_ms / 2);
    dpdk_server_stop(dsrv, base_now_ms() + cfg.service.shutdown_timeout_ms / 2);
    export_runner_stop(exp, deadline);
    rc = 0;
    log_info("stopped", "");
    goto out;
fail:
    rc = 1;
out:
    sock_server_destroy(srv);
    control_server_destroy(ctl);
    dpdk_server_destroy(dsrv); /* after the control plane: its metric functions read it */
    memlimit_stop(ml);
    tls_ctx_destroy(tls); /* after the workers and the control plane (metrics) */
    export_runner_destroy(exp);
    receiver_destroy(recv);
    grpc_receiver_destroy(grecv);
    memlimit_destroy(ml); /* after the receivers: their workers release into it */
    pipeline_destroy(pipe);
    dpdk_eal_stop(); /* last: the pipeline's rings and batches were EAL memory */
    obs_registry_destroy(reg);
    config_free(&cfg);
    return rc;
}

int main(int argc, char **argv)
{
    enum { OPT_VERSION = 256, OPT_HOST, OPT_PORT };
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},    {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, OPT_VERSION}, {"host", required_argument, NULL, OPT_HOST},
        {"port", required_argument, NULL, OPT_PORT}, {NULL, 0, NULL, 0},
    };
    const char *cmd = NULL;
    if (argc > 1 && argv[1][0] != '-') {
        cmd = argv[1];
        argv++;
        argc--;
    }
    const char *config = NULL, *host = NULL;
    int port = 0, c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case OPT_VERSION:
            printf("otlp-service %s\n", OTLP_SERVICE_VERSION);
            return 0;
        case OPT_HOST:
            host = optarg;
            break;
        case OPT_PORT:
            port = atoi(optarg);
            break;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    if (cmd == NULL)
        return run(config);
    if (strcmp(cmd, "validate") == 0)
        return cmd_validate(config);
    if (strcmp(cmd, "health-check") == 0)
        return cmd_health_check(config, host, port);
    if (strcmp(cmd, "config-reference") == 0) {
        struct buf b = {0};
        int rc = config_write_reference(&b);
        if (rc == 0)
            fwrite(b.data, 1, b.len, stdout);
        buf_free(&b);
        return rc == 0 ? 0 : 1;
    }
    fprintf(stderr, "unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
