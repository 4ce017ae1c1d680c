/* SPDX-License-Identifier: Apache-2.0 */
/* Test helper: librdkafka's mock cluster (rdkafka_mock.h) on real loopback TCP
 * ports, standing in for a Kafka cluster in the Kafka exporter tests. Prints
 * one JSON line with the bootstrap servers, then takes one command per line
 * on stdin (answering "ok ..." or "error ...") until stdin closes or SIGTERM:
 *
 *   topic NAME PARTITIONS [REPLICAS]   create a topic
 *   down ID | up ID                    broker ID stops / resumes serving
 *   leader TOPIC PARTITION ID          move a partition's leader
 *   errors APIKEY ERR[,ERR...]         the next requests of APIKEY (0 = Produce)
 *                                      fail with these errors, in order
 *   broker_errors ID APIKEY ERR[,...]  the same on one broker only
 *   topic_error TOPIC ERR              every request for TOPIC fails (0: clear)
 *   rtt ID MS                          add MS of latency to broker ID
 *   ping                               "ok"
 *
 * ERR is a number or a librdkafka error name (NOT_LEADER_FOR_PARTITION,
 * _TRANSPORT, ...). Usage: mock_cluster [--brokers N] [--topic NAME:PARTITIONS]...
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* An error code by number or by its librdkafka name (with or without "ERR_"). */
static int parse_err(const char *s, rd_kafka_resp_err_t *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s != '\0' && *end == '\0') {
        *out = (rd_kafka_resp_err_t)v;
        return 0;
    }
    const struct rd_kafka_err_desc *d;
    size_t n;
    rd_kafka_get_err_descs(&d, &n);
    for (size_t i = 0; i < n; i++) {
        if (d[i].name != NULL && strcasecmp(d[i].name, s) == 0) {
            *out = d[i].code;
            return 0;
        }
    }
    return -EINVAL;
}

/* "A,B,C" -> errs[]; returns the count or -1. */
static int parse_err_list(char *s, rd_kafka_resp_err_t *errs, int max)
{
    int n = 0;
    for (char *tok = strtok(s, ","); tok != NULL; tok = strtok(NULL, ",")) {
        if (n == max || parse_err(tok, &errs[n]) < 0)
            return -1;
        n++;
    }
    return n;
}

static int create_topic(rd_kafka_mock_cluster_t *mc, const char *name, int parts, int repl)
{
    rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mc, name, parts, repl);
    return err == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : -1;
}

/* One command line; writes the answer to stdout. */
static void command(rd_kafka_mock_cluster_t *mc, int n_brokers, char *line)
{
    char *argv[8];
    int argc = 0;
    for (char *t = strtok(line, " \t\r\n"); t != NULL && argc < 8; t = strtok(NULL, " \t\r\n"))
        argv[argc++] = t;
    if (argc == 0)
        return;
    const char *cmd = argv[0];
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_resp_err_t errs[64];
    int n;
    if (strcmp(cmd, "ping") == 0) {
        /* nothing */
    } else if (strcmp(cmd, "topic") == 0 && (argc == 3 || argc == 4)) {
        int repl = argc == 4 ? atoi(argv[3]) : (n_brokers < 3 ? n_brokers : 3);
        if (create_topic(mc, argv[1], atoi(argv[2]), repl) < 0)
            err = RD_KAFKA_RESP_ERR__FAIL;
    } else if ((strcmp(cmd, "down") == 0 || strcmp(cmd, "up") == 0) && argc == 2) {
        int32_t id = atoi(argv[1]);
        err = cmd[0] == 'd' ? rd_kafka_mock_broker_set_down(mc, id)
                            : rd_kafka_mock_broker_set_up(mc, id);
    } else if (strcmp(cmd, "leader") == 0 && argc == 4) {
        err = rd_kafka_mock_partition_set_leader(mc, argv[1], atoi(argv[2]), atoi(argv[3]));
    } else if (strcmp(cmd, "errors") == 0 && argc == 3) {
        if ((n = parse_err_list(argv[2], errs, 64)) < 0) {
            printf("error bad error list\n");
            return;
        }
        rd_kafka_mock_push_request_errors_array(mc, (int16_t)atoi(argv[1]), (size_t)n, errs);
    } else if (strcmp(cmd, "broker_errors") == 0 && argc == 4) {
        if ((n = parse_err_list(argv[3], errs, 64)) < 0) {
            printf("error bad error list\n");
            return;
        }
        for (int i = 0; i < n && err == RD_KAFKA_RESP_ERR_NO_ERROR; i++)
            err = rd_kafka_mock_broker_push_request_error_rtts(
                mc, atoi(argv[1]), (int16_t)atoi(argv[2]), 1, errs[i], 0);
    } else if (strcmp(cmd, "topic_error") == 0 && argc == 3) {
        if (parse_err(argv[2], &errs[0]) < 0) {
            printf("error bad error\n");
            return;
        }
        rd_kafka_mock_topic_set_error(mc, argv[1], errs[0]);
    } else if (strcmp(cmd, "rtt") == 0 && argc == 3) {
        err = rd_kafka_mock_broker_set_rtt(mc, atoi(argv[1]), atoi(argv[2]));
    } else {
        printf("error unknown command or wrong arguments: %s\n", cmd);
        return;
    }
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        printf("error %s\n", rd_kafka_err2name(err));
    else
        printf("ok\n");
}

int main(int argc, char **argv)
{
    int n_brokers = 3;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc)
            n_brokers = atoi(argv[++i]);
        else if (strcmp(argv[i], "--topic") == 0 && i + 1 < argc)
            i++; /* created below, once the cluster exists */
        else {
            fprintf(stderr, "usage: mock_cluster [--brokers N] [--topic NAME:PARTITIONS]...\n");
            return 2;
        }
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* The handle only anchors the cluster; it never connects anywhere. */
    if (rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "mock_cluster: %s\n", errstr);
        return 1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        fprintf(stderr, "mock_cluster: rd_kafka_new: %s\n", errstr);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, n_brokers);
    if (mc == NULL) {
        fprintf(stderr, "mock_cluster: cannot create the mock cluster\n");
        rd_kafka_destroy(rk);
        return 1;
    }
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--topic") != 0)
            continue;
        char name[256];
        int parts = 0;
        const char *spec = argv[++i];
        const char *colon = strrchr(spec, ':');
        if (colon == NULL || (size_t)(colon - spec) >= sizeof(name) ||
            (parts = atoi(colon + 1)) <= 0) {
            fprintf(stderr, "mock_cluster: --topic wants NAME:PARTITIONS, got %s\n", spec);
            rc = 2;
            goto out;
        }
        memcpy(name, spec, (size_t)(colon - spec));
        name[colon - spec] = '\0';
        if (create_topic(mc, name, parts, n_brokers < 3 ? n_brokers : 3) < 0) {
            fprintf(stderr, "mock_cluster: cannot create topic %s\n", name);
            rc = 1;
            goto out;
        }
    }
    printf("{\"bootstrap\": \"%s\", \"brokers\": %d}\n", rd_kafka_mock_cluster_bootstraps(mc),
           n_brokers);
    fflush(stdout);

    char line[1024];
    size_t used = 0;
    while (!stop_requested) {
        struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
        int pr = poll(&pfd, 1, 200);
        if (pr < 0 && errno != EINTR)
            break;
        if (pr <= 0)
            continue;
        ssize_t got = read(STDIN_FILENO, line + used, sizeof(line) - 1 - used);
        if (got <= 0)
            break; /* stdin closed: the test is done */
        used += (size_t)got;
        line[used] = '\0';
        char *nl;
        while ((nl = strchr(line, '\n')) != NULL) {
            *nl = '\0';
            command(mc, n_brokers, line);
            fflush(stdout);
            size_t rest = used - (size_t)(nl + 1 - line);
            memmove(line, nl + 1, rest + 1);
            used = rest;
        }
        if (used == sizeof(line) - 1)
            used = 0; /* an overlong line is dropped */
    }
out:
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return rc;
}
