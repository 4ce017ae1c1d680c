/* SPDX-License-Identifier: Apache-2.0 */
/* Tests lib/config: defaults, every value type, sizes, ranges, enums, unknown
 * keys, duplicates, ${VAR} expansion, OTLP__ overrides, cross-field rules,
 * error lines, YAML errors, the shipped config files and the docs reference.
 * Runs with the working directory tests/unit. Set CONFIG_UPDATE_DOCS=1 to
 * rewrite the generated reference in docs/configuration.md. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/base.h"
#include "config/config.h"

extern char **environ;

#define DOCS_PATH "../../docs/configuration.md"
#define DEFAULT_YAML "../../config/default.yaml"
#define PRODUCTION_YAML "../../config/production.yaml"
#define DOCS_BEGIN                                                                                 \
    "<!-- BEGIN config_write_reference: generated, edit lib/config/config_table.c -->\n"
#define DOCS_END "<!-- END config_write_reference -->\n"

/* ---- helpers ---- */

/* The errors buffer as a C string (the loader does not NUL-terminate). */
static const char *text(struct buf *b)
{
    assert_int_equal(buf_append(b, "", 1), 0);
    b->len--;
    return (const char *)b->data;
}

/* Remove every variable the loader reads, so the caller's shell does not leak in. */
static void clean_env(void)
{
    char names[64][128];
    unsigned n = 0;
    for (char **e = environ; *e != NULL && n < 64; e++) {
        const char *eq = strchr(*e, '=');
        if (eq == NULL || (size_t)(eq - *e) >= sizeof(names[0]))
            continue;
        if (strncmp(*e, "OTLP", 4) == 0 || strncmp(*e, "RUST_LOG=", 9) == 0 ||
            strncmp(*e, "CFGTEST_", 8) == 0) {
            memcpy(names[n], *e, (size_t)(eq - *e));
            names[n][eq - *e] = '\0';
            n++;
        }
    }
    for (unsigned i = 0; i < n; i++)
        unsetenv(names[i]);
}

static int setup(void **state)
{
    (void)state;
    clean_env();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    clean_env();
    return 0;
}

/* Load YAML text as "t.yaml". */
static int load(const char *yaml, struct svc_config *c, struct buf *e)
{
    buf_reset(e);
    return config_load_buffer("t.yaml", yaml, strlen(yaml), c, e);
}

/* Load `yaml`, expect -EINVAL and exactly the error text `want`. */
static void expect_errors(const char *yaml, const char *want)
{
    struct svc_config c;
    struct buf e = {0};
    int rc = load(yaml, &c, &e);
    const char *got = text(&e);
    if (strcmp(got, want) != 0)
        print_error("yaml:\n%s\nwant:\n%sgot:\n%s", yaml, want, got);
    assert_int_equal(rc, -EINVAL);
    assert_string_equal(got, want);
    config_free(&c);
    buf_free(&e);
}

/* Load `yaml`, expect -EINVAL and an error containing `part`. */
static void expect_error_part(const char *yaml, const char *part)
{
    struct svc_config c;
    struct buf e = {0};
    int rc = load(yaml, &c, &e);
    const char *got = text(&e);
    if (strstr(got, part) == NULL)
        print_error("yaml:\n%s\nwant part: %s\ngot:\n%s", yaml, part, got);
    assert_int_equal(rc, -EINVAL);
    assert_non_null(strstr(got, part));
    config_free(&c);
    buf_free(&e);
}

/* Load `yaml`, expect success with no errors. */
static void load_ok(const char *yaml, struct svc_config *c)
{
    struct buf e = {0};
    int rc = load(yaml, c, &e);
    if (rc != 0)
        print_error("unexpected errors:\n%s", text(&e));
    assert_int_equal(rc, 0);
    assert_int_equal(e.len, 0);
    buf_free(&e);
}

static const char *kv_get(const struct config_kv_list *l, const char *k)
{
    for (unsigned i = 0; i < l->n; i++) {
        if (strcmp(l->items[i].key, k) == 0)
            return l->items[i].value;
    }
    return NULL;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    struct buf b = {0};
    char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        assert_int_equal(buf_append(&b, tmp, n), 0);
    fclose(f);
    assert_int_equal(buf_append(&b, "", 1), 0);
    *len = b.len - 1;
    return (char *)b.data;
}

/* ---- defaults ---- */

static void test_defaults(void **state)
{
    (void)state;
    struct svc_config c;
    config_defaults(&c);
    assert_string_equal(c.service.name, "otlp-service");
    assert_string_equal(c.service.log_level, "info");
    assert_string_equal(c.service.data_dir, "/var/lib/otlp-service");
    assert_int_equal(c.service.shutdown_timeout_ms, 10000);
    assert_string_equal(c.receiver.host, "0.0.0.0");
    assert_int_equal(c.receiver.http_port, 4318);
    assert_int_equal(c.receiver.grpc_port, 4317);
    assert_int_equal(c.receiver.max_connections, 10000);
    assert_int_equal(c.receiver.max_header_bytes, 16384);
    assert_int_equal(c.receiver.max_headers, 100);
    assert_int_equal(c.receiver.max_body_bytes, 8u << 20);
    assert_int_equal(c.receiver.max_decompressed_bytes, 32u << 20);
    assert_int_equal(c.receiver.idle_timeout_ms, 60000);
    assert_int_equal(c.receiver.request_timeout_ms, 30000);
    assert_int_equal(c.receiver.retry_after_s, 1);
    assert_int_equal(c.receiver.max_nesting_depth, 32);
    assert_int_equal(c.dataplane.mode, DATAPLANE_SOCKET);
    assert_int_equal(c.dataplane.workers, 0);
    assert_string_equal(c.dataplane.cores, "");
    assert_string_equal(c.dataplane.dpdk.eal_args, "");
    assert_int_equal(c.dataplane.dpdk.port, 0);
    assert_string_equal(c.dataplane.dpdk.ip, "");
    assert_string_equal(c.dataplane.dpdk.netmask, "255.255.255.0");
    assert_string_equal(c.dataplane.dpdk.gateway, "");
    assert_int_equal(c.dataplane.dpdk.mtu, 1500);
    assert_int_equal(c.dataplane.dpdk.rx_desc, 1024);
    assert_int_equal(c.dataplane.dpdk.tx_desc, 1024);
    assert_int_equal(c.dataplane.dpdk.mbufs, 0);
    assert_int_equal(c.dataplane.dpdk.max_conns_per_lcore, 4096);
    assert_int_equal(c.dataplane.dpdk.snd_buf_bytes, 16384);
    assert_int_equal(c.dataplane.dpdk.rcv_space_bytes, 256 * 1024);
    assert_int_equal(c.dataplane.dpdk.ooo_buf_bytes, 256 * 1024);
    assert_int_equal(c.dataplane.dpdk.time_wait_ms, 2000);
    assert_int_equal(c.batch.max_queue_size, 8192);
    assert_int_equal(c.batch.max_export_batch_size, 1024);
    assert_int_equal(c.batch.batch_timeout_ms, 200);
    assert_int_equal(c.batch.max_concurrent_exports, 4);
    assert_int_equal(c.batch.max_batch_bytes, 8u << 20);
    assert_int_equal(c.exporter.protocol, EXPORTER_FILE);
    assert_string_equal(c.exporter.endpoint, "");
    assert_int_equal(c.exporter.timeout_ms, 10000);
    assert_int_equal(c.exporter.compression, COMPRESSION_GZIP);
    assert_int_equal(c.exporter.headers.n, 0);
    assert_true(c.exporter.retry.enabled);
    assert_int_equal(c.exporter.retry.initial_interval_ms, 1000);
    assert_int_equal(c.exporter.retry.max_interval_ms, 30000);
    assert_int_equal(c.exporter.retry.max_elapsed_ms, 300000);
    assert_true(c.exporter.retry.multiplier == 1.5);
    assert_true(c.exporter.retry.randomization == 0.5);
    assert_false(c.exporter.tls.insecure);
    assert_string_equal(c.exporter.tls.ca_file, "");
    assert_string_equal(c.exporter.tls.cert_file, "");
    assert_string_equal(c.exporter.tls.key_file, "");
    assert_string_equal(c.exporter.tls.server_name, "");
    assert_string_equal(c.exporter.file.path, "");
    assert_int_equal(c.exporter.file.max_file_bytes, 100u << 20);
    assert_int_equal(c.exporter.file.max_files, 10);
    assert_string_equal(c.control.host, "0.0.0.0");
    assert_int_equal(c.control.port, 8080);
    assert_int_equal(c.resources.attributes.n, 0);
    config_free(&c);
    config_free(&c); /* twice is fine */
    config_free(NULL);
}

/* No file: defaults, valid, and the file exporter path resolved. */
static void test_load_null_is_defaults(void **state)
{
    (void)state;
    struct svc_config c;
    struct buf e = {0};
    assert_int_equal(config_load(NULL, &c, &e), 0);
    assert_int_equal(e.len, 0);
    assert_string_equal(c.exporter.file.path, "/var/lib/otlp-service/export");
    config_free(&c);
    assert_int_equal(config_load(NULL, &c, NULL), 0); /* errors may be NULL */
    config_free(&c);
    buf_free(&e);
}

static void test_empty_file(void **state)
{
    (void)state;
    struct svc_config c, d;
    struct buf a = {0}, b = {0};
    const char *empties[] = {"", "\n\n", "# only a comment\n", "---\n", "~\n", "---\n...\n"};
    config_load(NULL, &d, NULL);
    assert_int_equal(config_write_yaml(&d, false, &b), 0);
    for (unsigned i = 0; i < sizeof(empties) / sizeof(empties[0]); i++) {
        load_ok(empties[i], &c);
        buf_reset(&a);
        assert_int_equal(config_write_yaml(&c, false, &a), 0);
        assert_int_equal(a.len, b.len);
        assert_memory_equal(a.data, b.data, a.len);
        config_free(&c);
    }
    /* A section with everything commented out is fine too. */
    load_ok("batch:\n  # max_queue_size: 1\nexporter:\n", &c);
    assert_int_equal(c.batch.max_queue_size, 8192);
    config_free(&c);
    config_free(&d);
    buf_free(&a);
    buf_free(&b);
}

/* ---- every type ---- */

static void test_every_type(void **state)
{
    (void)state;
    struct svc_config c;
    load_ok("service:\n"
            "  name: edge-1\n"
            "  log_level: DEBUG\n"
            "  data_dir: '/tmp/x'\n"
            "  shutdown_timeout_ms: \"2500\"\n"
            "receiver:\n"
            "  host: 127.0.0.1\n"
            "  http_port: 14318\n"
            "  grpc_port: 0\n"
            "  max_header_bytes: 32KiB\n"
            "  max_body_bytes: 4MiB\n"
            "  max_decompressed_bytes: 1GiB\n"
            "dataplane:\n"
            "  mode: dpdk\n"
            "  workers: 4\n"
            "  cores: \"0-3,6\"\n"
            "  dpdk:\n"
            "    eal_args: \"-a 0000:3b:00.0 --file-prefix 'otlp a'\"\n"
            "    port: 1\n"
            "    ip: 198.18.0.2\n"
            "    netmask: 255.255.0.0\n"
            "    gateway: 198.18.255.254\n"
            "    mtu: 9000\n"
            "    mbufs: 65536\n"
            "    snd_buf_bytes: 4KiB\n"
            "    ooo_buf_bytes: 0\n"
            "exporter:\n"
            "  protocol: otlp_http\n"
            "  endpoint: https://collector.example:4318\n"
            "  compression: none\n"
            "  headers:\n"
            "    X-Api-Key: abc\n"
            "    x-tenant: \"42\"\n"
            "  retry:\n"
            "    enabled: false\n"
            "    multiplier: 2\n"
            "    randomization: 0.25\n"
            "  tls:\n"
            "    insecure: true\n"
            "    ca_file: /etc/ca.pem\n"
            "  file:\n"
            "    path: /srv/out\n"
            "    max_file_bytes: 1073741824\n"
            "control:\n"
            "  port: 9090\n"
            "resources:\n"
            "  attributes:\n"
            "    deployment.environment: staging\n"
            "    host.name: \"\"\n",
            &c);
    assert_string_equal(c.service.name, "edge-1");
    assert_string_equal(c.service.log_level, "debug"); /* canonical spelling */
    assert_string_equal(c.service.data_dir, "/tmp/x");
    assert_int_equal(c.service.shutdown_timeout_ms, 2500);
    assert_string_equal(c.receiver.host, "127.0.0.1");
    assert_int_equal(c.receiver.http_port, 14318);
    assert_int_equal(c.receiver.grpc_port, 0);
    assert_int_equal(c.receiver.max_header_bytes, 32768);
    assert_int_equal(c.receiver.max_body_bytes, 4u << 20);
    assert_int_equal(c.receiver.max_decompressed_bytes, 1u << 30);
    assert_int_equal(c.dataplane.mode, DATAPLANE_DPDK);
    assert_int_equal(c.dataplane.workers, 4);
    assert_string_equal(c.dataplane.cores, "0-3,6");
    assert_string_equal(c.dataplane.dpdk.eal_args, "-a 0000:3b:00.0 --file-prefix 'otlp a'");
    assert_int_equal(c.dataplane.dpdk.port, 1);
    assert_string_equal(c.dataplane.dpdk.ip, "198.18.0.2");
    assert_string_equal(c.dataplane.dpdk.netmask, "255.255.0.0");
    assert_string_equal(c.dataplane.dpdk.gateway, "198.18.255.254");
    assert_int_equal(c.dataplane.dpdk.mtu, 9000);
    assert_int_equal(c.dataplane.dpdk.mbufs, 65536);
    assert_int_equal(c.dataplane.dpdk.snd_buf_bytes, 4096);
    assert_int_equal(c.dataplane.dpdk.ooo_buf_bytes, 0);
    assert_int_equal(c.exporter.protocol, EXPORTER_OTLP_HTTP);
    assert_string_equal(c.exporter.endpoint, "https://collector.example:4318");
    assert_int_equal(c.exporter.compression, COMPRESSION_NONE);
    assert_int_equal(c.exporter.headers.n, 2);
    assert_string_equal(kv_get(&c.exporter.headers, "X-Api-Key"), "abc");
    assert_string_equal(kv_get(&c.exporter.headers, "x-tenant"), "42");
    assert_false(c.exporter.retry.enabled);
    assert_true(c.exporter.retry.multiplier == 2.0);
    assert_true(c.exporter.retry.randomization == 0.25);
    assert_true(c.exporter.tls.insecure);
    assert_string_equal(c.exporter.tls.ca_file, "/etc/ca.pem");
    assert_string_equal(c.exporter.file.path, "/srv/out"); /* not replaced by derive */
    assert_int_equal(c.exporter.file.max_file_bytes, 1ull << 30);
    assert_int_equal(c.control.port, 9090);
    assert_int_equal(c.resources.attributes.n, 2);
    assert_string_equal(kv_get(&c.resources.attributes, "deployment.environment"), "staging");
    assert_string_equal(kv_get(&c.resources.attributes, "host.name"), "");
    assert_string_equal(config_dataplane_mode_name(c.dataplane.mode), "dpdk");
    assert_string_equal(config_exporter_protocol_name(c.exporter.protocol), "otlp_http");
    assert_string_equal(config_compression_name(c.exporter.compression), "none");
    assert_string_equal(config_compression_name((enum exporter_compression)99), "unknown");
    config_free(&c);
}

static void test_type_errors(void **state)
{
    (void)state;
    expect_errors("receiver:\n  http_port: abc\n",
                  "t.yaml:2: receiver.http_port: expected an integer, got 'abc'\n");
    expect_errors("receiver:\n  http_port: 43.5\n",
                  "t.yaml:2: receiver.http_port: expected an integer, got '43.5'\n");
    expect_errors("receiver:\n  http_port:\n",
                  "t.yaml:2: receiver.http_port: expected an integer, got an empty value\n");
    expect_errors("receiver:\n  http_port: [1, 2]\n",
                  "t.yaml:2: receiver.http_port: expected an integer, got a list\n");
    expect_errors("exporter:\n  retry:\n    enabled: yes\n",
                  "t.yaml:3: exporter.retry.enabled: expected true or false, got 'yes'\n");
    expect_errors("exporter:\n  retry:\n    multiplier: fast\n",
                  "t.yaml:3: exporter.retry.multiplier: expected a number, got 'fast'\n");
    expect_errors("exporter:\n  retry:\n    multiplier: nan\n",
                  "t.yaml:3: exporter.retry.multiplier: expected a number, got 'nan'\n");
    expect_errors("exporter:\n  retry:\n    multiplier: 0x10\n",
                  "t.yaml:3: exporter.retry.multiplier: expected a number, got '0x10'\n");
    expect_errors("service:\n  name: {a: 1}\n",
                  "t.yaml:2: service.name: expected a string, got a mapping\n");
    expect_errors("service:\n  name: \"\"\n", "t.yaml:2: service.name: must not be empty\n");
    expect_errors("exporter:\n  headers: [a, b]\n",
                  "t.yaml:2: exporter.headers: expected a mapping of names to strings, got a "
                  "list\n");
    expect_errors("exporter:\n  headers:\n    x-a: {b: c}\n",
                  "t.yaml:3: exporter.headers.x-a: expected a string, got a mapping\n");
    expect_errors("exporter:\n  headers:\n    \"bad name\": v\n",
                  "t.yaml:3: exporter.headers.bad name: header name must be an HTTP token "
                  "(letters, digits, !#$%&'*+-.^_`|~)\n");
    expect_errors("exporter:\n  headers:\n    x-a: \"v\\r\\nInjected: 1\"\n",
                  "t.yaml:3: exporter.headers.x-a: header value must not contain control "
                  "characters (CR, LF, ...)\n");
    expect_errors("service:\n  name: \"a\\0b\"\n", "t.yaml:2: service.name: value contains a NUL "
                                                   "byte\n");
    expect_errors("exporter:\n  endpoint: collector:4318\n",
                  "t.yaml:2: exporter.endpoint: must start with http:// or https://\n");
    expect_errors("exporter:\n  endpoint: \"http://\"\n",
                  "t.yaml:2: exporter.endpoint: has no host after the scheme\n");
    expect_errors("dataplane:\n  cores: 0-3,,4\n",
                  "t.yaml:2: dataplane.cores: expected a core number or a range like 0-3\n");
    expect_errors("dataplane:\n  cores: 3-1\n", "t.yaml:2: dataplane.cores: range ends below its "
                                                "start\n");
}

/* ---- sizes ---- */

static void test_sizes(void **state)
{
    (void)state;
    struct svc_config c;
    static const struct {
        const char *v;
        uint64_t want;
    } ok[] = {
        {"1024", 1024},      {"1KiB", 1024},        {"8MiB", 8u << 20},
        {"8 MiB", 8u << 20}, {"8mib", 8u << 20},    {"1GiB", 1u << 30},
        {"2048B", 2048},     {"\"16 KiB\"", 16384}, {"+4096", 4096},
    };
    for (unsigned i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char yaml[128];
        snprintf(yaml, sizeof(yaml),
                 "receiver:\n  max_decompressed_bytes: 1GiB\n  max_body_bytes: %s\n", ok[i].v);
        load_ok(yaml, &c);
        assert_int_equal(c.receiver.max_body_bytes, ok[i].want);
        config_free(&c);
    }
    load_ok("receiver:\n  max_header_bytes: 1MiB\n", &c); /* 32-bit size field */
    assert_int_equal(c.receiver.max_header_bytes, 1u << 20);
    config_free(&c);

    expect_errors("receiver:\n  max_body_bytes: 8MB\n",
                  "t.yaml:2: receiver.max_body_bytes: unit in '8MB' is ambiguous: use KiB, MiB "
                  "or GiB (powers of 1024)\n");
    expect_errors("receiver:\n  max_body_bytes: 8XiB\n",
                  "t.yaml:2: receiver.max_body_bytes: expected a size (bytes, or a number with "
                  "suffix KiB, MiB or GiB), got '8XiB'\n");
    expect_errors("receiver:\n  max_body_bytes: 1.5MiB\n",
                  "t.yaml:2: receiver.max_body_bytes: expected a size (bytes, or a number with "
                  "suffix KiB, MiB or GiB), got '1.5MiB'\n");
    expect_errors("receiver:\n  max_body_bytes: 2GiB\n",
                  "t.yaml:2: receiver.max_body_bytes: must be between 1KiB and 1GiB, got 2GiB\n");
    expect_errors("receiver:\n  max_body_bytes: 99999999999999GiB\n",
                  "t.yaml:2: receiver.max_body_bytes: must be between 1KiB and 1GiB, got "
                  "99999999999999GiB\n");
    expect_errors("receiver:\n  max_body_bytes: 999999999999999999999999\n",
                  "t.yaml:2: receiver.max_body_bytes: must be between 1KiB and 1GiB, got "
                  "999999999999999999999999\n");
    expect_errors("receiver:\n  max_header_bytes: 2MiB\n",
                  "t.yaml:2: receiver.max_header_bytes: must be between 1KiB and 1MiB, got "
                  "2MiB\n");
    /* A long value is not truncated into something valid. */
    char yaml[400];
    snprintf(yaml, sizeof(yaml), "receiver:\n  max_body_bytes: \"4096%*s x\"\n", 150, "");
    expect_error_part(yaml, "receiver.max_body_bytes: expected a size");
}

/* ---- ranges ---- */

static void test_ranges(void **state)
{
    (void)state;
    expect_errors("dataplane:\n  dpdk:\n    ip: 198.18.0.256\n",
                  "t.yaml:3: dataplane.dpdk.ip: must be a dotted IPv4 address like 198.18.0.2\n");
    expect_errors("dataplane:\n  dpdk:\n    gateway: 10.0.0\n",
                  "t.yaml:3: dataplane.dpdk.gateway: must be a dotted IPv4 address like "
                  "198.18.0.2\n");
    expect_errors("dataplane:\n  dpdk:\n    netmask: 255.0.255.0\n",
                  "t.yaml:3: dataplane.dpdk.netmask: must be a contiguous netmask (ones, then "
                  "zeros), not 0.0.0.0\n");
    expect_errors("dataplane:\n  dpdk:\n    eal_args: \"--vdev 'net_tap0\"\n",
                  "t.yaml:3: dataplane.dpdk.eal_args: has an unbalanced ' quote\n");
    expect_errors("dataplane:\n  dpdk:\n    mtu: 500\n",
                  "t.yaml:3: dataplane.dpdk.mtu: must be between 576 and 9000, got 500\n");
    struct svc_config c;
    expect_errors("receiver:\n  http_port: 0\n",
                  "t.yaml:2: receiver.http_port: must be between 1 and 65535, got 0\n");
    expect_errors("receiver:\n  http_port: 65536\n",
                  "t.yaml:2: receiver.http_port: must be between 1 and 65535, got 65536\n");
    expect_errors("receiver:\n  http_port: -1\n",
                  "t.yaml:2: receiver.http_port: must be between 1 and 65535, got -1\n");
    expect_errors("dataplane:\n  workers: 129\n",
                  "t.yaml:2: dataplane.workers: must be between 0 and 128, got 129\n");
    expect_errors("exporter:\n  retry:\n    multiplier: 0.5\n",
                  "t.yaml:3: exporter.retry.multiplier: must be between 1 and 10, got 0.5\n");
    expect_errors("exporter:\n  retry:\n    randomization: 1.01\n",
                  "t.yaml:3: exporter.retry.randomization: must be between 0 and 1, got 1.01\n");
    expect_errors("receiver:\n  max_nesting_depth: 4\n",
                  "t.yaml:2: receiver.max_nesting_depth: must be between 8 and 128, got 4\n");
    /* The edges themselves are fine. */
    load_ok("receiver:\n  http_port: 65535\n  grpc_port: 0\ndataplane:\n  workers: 128\n"
            "exporter:\n  retry:\n    multiplier: 1\n    randomization: 0\n",
            &c);
    assert_int_equal(c.receiver.http_port, 65535);
    assert_int_equal(c.dataplane.workers, 128);
    config_free(&c);
}

/* ---- enums ---- */

static void test_enums(void **state)
{
    (void)state;
    struct svc_config c;
    expect_errors("dataplane:\n  mode: dpd\n",
                  "t.yaml:2: dataplane.mode: must be one of socket, dpdk; got 'dpd'\n");
    expect_errors("exporter:\n  protocol: pigeon\n",
                  "t.yaml:2: exporter.protocol: must be one of file, otlp_http, discard, nats, "
                  "grpc, kafka, loadbalancing; got 'pigeon'\n");
    expect_errors("exporter:\n  compression: zstd\n",
                  "t.yaml:2: exporter.compression: must be one of none, gzip; got 'zstd'\n");
    expect_errors("service:\n  log_level: verbose\n",
                  "t.yaml:2: service.log_level: must be one of debug, info, warn, error; got "
                  "'verbose'\n");
    load_ok("exporter:\n  compression: GZIP\ndataplane:\n  mode: Socket\n", &c);
    assert_int_equal(c.exporter.compression, COMPRESSION_GZIP);
    assert_int_equal(c.dataplane.mode, DATAPLANE_SOCKET);
    config_free(&c);
}

/* ---- unknown keys, duplicates, structure ---- */

static void test_unknown_keys(void **state)
{
    (void)state;
    expect_errors("batch:\n  max_queue_sise: 10\n",
                  "t.yaml:2: batch.max_queue_sise: unknown key (did you mean max_queue_size?)\n");
    expect_errors("batch:\n  queue_size: 10\n",
                  "t.yaml:2: batch.queue_size: unknown key (did you mean max_queue_size?)\n");
    expect_errors("exporters:\n  endpoint: x\n",
                  "t.yaml:1: exporters: unknown section (did you mean exporter?)\n");
    expect_errors("exporter:\n  rety:\n    enabled: true\n",
                  "t.yaml:2: exporter.rety: unknown key (did you mean retry?)\n");
    expect_errors("batch:\n  endpoint: http://x\n",
                  "t.yaml:2: batch.endpoint: unknown key (did you mean exporter.endpoint?)\n");
    expect_errors("control:\n  zzz: 1\n",
                  "t.yaml:2: control.zzz: unknown key; valid keys: host, port\n");
    expect_errors("zzz: 1\n", "t.yaml:1: zzz: unknown section; valid sections: service, "
                              "receiver, dataplane, batch, exporter, control, resources, "
                              "spool, memory_limiter\n");
    /* Nested sections are only reachable under their parent. */
    expect_error_part("retry:\n  enabled: true\n", "t.yaml:1: retry: unknown section");
    expect_error_part("exporter.retry:\n  enabled: true\n", "t.yaml:1: exporter.retry: unknown");
}

static void test_duplicates(void **state)
{
    (void)state;
    expect_errors("batch:\n  max_queue_size: 10000\n  max_queue_size: 20000\n",
                  "t.yaml:3: batch.max_queue_size: duplicate key (first set on line 2)\n");
    expect_errors("batch:\n  max_queue_size: 10000\nbatch:\n  batch_timeout_ms: 5\n",
                  "t.yaml:3: batch: duplicate section (first on line 1)\n");
    expect_errors("exporter:\n  headers:\n    x-a: 1\n    X-A: 2\n",
                  "t.yaml:4: exporter.headers.X-A: duplicate entry (first on line 3)\n");
    expect_errors("resources:\n  attributes:\n    a: 1\n    a: 2\n",
                  "t.yaml:4: resources.attributes.a: duplicate entry (first on line 3)\n");
    /* Attribute names are case-sensitive: two entries. */
    struct svc_config c;
    load_ok("resources:\n  attributes:\n    a: 1\n    A: 2\n", &c);
    assert_int_equal(c.resources.attributes.n, 2);
    config_free(&c);
}

static void test_malformed_nesting(void **state)
{
    (void)state;
    expect_errors("- a\n- b\n", "t.yaml:1: expected a mapping of sections (service:, "
                                "receiver:, ...), got a list\n");
    expect_errors("just a string\n", "t.yaml:1: expected a mapping of sections (service:, "
                                     "receiver:, ...), got a single value\n");
    expect_errors("batch: 5\n", "t.yaml:1: batch: expected a mapping of keys (indented under "
                                "batch:), got a single value\n");
    expect_errors("exporter:\n  retry: [1]\n", "t.yaml:2: exporter.retry: expected a mapping of "
                                               "keys (indented under retry:), got a list\n");
    expect_errors("batch:\n  ? [a]\n  : 1\n",
                  "t.yaml:2: batch: keys must be plain names, got a list\n");
    /* Value at the wrong depth: max_queue_size becomes a top-level key. */
    expect_errors(
        "batch:\nmax_queue_size: 1\n",
        "t.yaml:2: max_queue_size: unknown section (did you mean batch.max_queue_size?)\n");
}

static void test_yaml_syntax_error(void **state)
{
    (void)state;
    expect_errors("batch:\n  max_queue_size: 1\n   batch_timeout_ms: 2\n",
                  "t.yaml:3: YAML syntax error: mapping values are not allowed in this context\n");
    expect_errors("batch:\n  max_queue_size: [1, 2\n",
                  "t.yaml:3: YAML syntax error: did not find expected ',' or ']' (while parsing "
                  "a flow sequence on line 2)\n");
    expect_errors("service:\n  name: \"unterminated\n",
                  "t.yaml:3: YAML syntax error: found unexpected end of stream (while scanning a "
                  "quoted scalar on line 2)\n");
    expect_errors("a: 1\n---\nb: 2\n", "t.yaml:1: a: unknown section; valid sections: service, "
                                       "receiver, dataplane, batch, exporter, control, "
                                       "resources, spool, memory_limiter\nt.yaml:3: only one "
                                       "YAML document is "
                                       "allowed\n");
    expect_error_part("service:\n  name: \"\xff\xfe\"\n", "t.yaml:2: YAML syntax error: invalid");
    /* Aliases resolve like any value. */
    struct svc_config c;
    load_ok("batch:\n  max_queue_size: &n 4096\n  max_export_batch_size: *n\n", &c);
    assert_int_equal(c.batch.max_export_batch_size, 4096);
    config_free(&c);
}

/* Every error is reported, each with its own line. */
static void test_collects_all_errors(void **state)
{
    (void)state;
    expect_errors("service:\n"
                  "  log_level: loud\n"
                  "receiver:\n"
                  "  http_port: 0\n"
                  "  bogus: 1\n"
                  "batch:\n"
                  "  max_queue_size: x\n"
                  "exporter:\n"
                  "  retry:\n"
                  "    multiplier: 0\n",
                  "t.yaml:2: service.log_level: must be one of debug, info, warn, error; got "
                  "'loud'\n"
                  "t.yaml:4: receiver.http_port: must be between 1 and 65535, got 0\n"
                  "t.yaml:5: receiver.bogus: unknown key; valid keys: host, http_port, "
                  "grpc_port, grpc_max_recv_msg_bytes, max_connections, max_header_bytes, "
                  "max_headers, max_body_bytes, "
                  "max_decompressed_bytes, idle_timeout_ms, request_timeout_ms, retry_after_s, "
                  "max_nesting_depth, tls, auth\n"
                  "t.yaml:7: batch.max_queue_size: expected an integer, got 'x'\n"
                  "t.yaml:10: exporter.retry.multiplier: must be between 1 and 10, got 0\n");
    /* Flow style and a multi-line value keep their own line numbers. */
    expect_errors("batch: {max_queue_size: 10,\n  batch_timeout_ms: 0}\n",
                  "t.yaml:2: batch.batch_timeout_ms: must be between 1 and 600000, got 0\n"
                  "t.yaml:1: batch.max_queue_size: 10 is smaller than "
                  "batch.max_export_batch_size (1024); the queue must hold at least one full "
                  "batch\n");
    /* A flood of errors is capped. */
    struct buf y = {0};
    assert_int_equal(buf_append_str(&y, "batch:\n"), 0);
    for (int i = 0; i < 150; i++)
        assert_int_equal(buf_printf(&y, "  k%d: 1\n", i), 0);
    assert_int_equal(buf_append(&y, "", 1), 0);
    struct svc_config c;
    struct buf e = {0};
    assert_int_equal(load((const char *)y.data, &c, &e), -EINVAL);
    const char *t = text(&e);
    unsigned lines = 0;
    for (const char *p = t; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 101);
    assert_non_null(strstr(t, "t.yaml: too many errors, stopping after 100\n"));
    buf_free(&y);
    buf_free(&e);
}

/* ---- ${VAR} ---- */

static void test_env_expansion(void **state)
{
    (void)state;
    struct svc_config c;
    setenv("CFGTEST_HOST", "collector.internal", 1);
    setenv("CFGTEST_PORT", "14318", 1);
    setenv("CFGTEST_EMPTY", "", 1);
    load_ok("exporter:\n"
            "  protocol: otlp_http\n"
            "  endpoint: \"http://${CFGTEST_HOST}:4318\"\n"
            "  tls:\n"
            "    insecure: true\n"
            "  headers:\n"
            "    x-token: ${CFGTEST_TOKEN:-none}\n"
            "receiver:\n"
            "  http_port: ${CFGTEST_PORT}\n"
            "  grpc_port: ${CFGTEST_EMPTY:-4400}\n"
            "service:\n"
            "  name: \"cost$$: $5 ${CFGTEST_UNSET:-a b}$\"\n"
            "  data_dir: ${CFGTEST_EMPTY}/x\n",
            &c);
    assert_string_equal(c.exporter.endpoint, "http://collector.internal:4318");
    assert_string_equal(kv_get(&c.exporter.headers, "x-token"), "none");
    assert_int_equal(c.receiver.http_port, 14318);
    assert_int_equal(c.receiver.grpc_port, 4400); /* empty counts as unset with :- */
    assert_string_equal(c.service.name, "cost$: $5 a b$");
    assert_string_equal(c.service.data_dir, "/x");
    config_free(&c);

    expect_errors("service:\n  name: x\nexporter:\n  endpoint: ${CFGTEST_MISSING}\n",
                  "t.yaml:4: exporter.endpoint: environment variable CFGTEST_MISSING is not set "
                  "(write ${CFGTEST_MISSING:-default} to give a default)\n");
    expect_errors("resources:\n  attributes:\n    env: ${CFGTEST_MISSING}\n",
                  "t.yaml:3: resources.attributes.env: environment variable CFGTEST_MISSING is "
                  "not set (write ${CFGTEST_MISSING:-default} to give a default)\n");
    expect_errors("service:\n  name: \"${CFGTEST_HOST\"\n",
                  "t.yaml:2: service.name: invalid ${CFGTEST_HOST...}: expected '}' or "
                  "':-default}' after the name\n");
    expect_errors("service:\n  name: \"${1X}\"\n",
                  "t.yaml:2: service.name: '${' must be followed by a variable name (write $$ "
                  "for a literal $)\n");
    expect_errors("service:\n  name: \"${A:-x\"\n", "t.yaml:2: service.name: unterminated "
                                                    "${A:-...\n");
    /* The expanded value is then checked like a literal one. */
    setenv("CFGTEST_PORT", "http", 1);
    expect_errors("receiver:\n  http_port: ${CFGTEST_PORT}\n",
                  "t.yaml:2: receiver.http_port: expected an integer, got 'http'\n");
}

/* ---- OTLP__ overrides ---- */

static void test_override_scalar_and_nested(void **state)
{
    (void)state;
    struct svc_config c;
    setenv("OTLP__EXPORTER__ENDPOINT", "http://up:4318", 1);
    setenv("OTLP__EXPORTER__PROTOCOL", "otlp_http", 1);
    setenv("OTLP__EXPORTER__RETRY__MAX_ELAPSED_MS", "5000", 1);
    setenv("OTLP__batch__Max_Queue_Size", "20000", 1); /* case-insensitive */
    setenv("OTLP__EXPORTER__TLS__INSECURE", "true", 1);
    setenv("OTLP__EXPORTER__FILE__MAX_FILE_BYTES", "2GiB", 1);
    setenv("OTLP__SERVICE__NAME", "${NOT_EXPANDED}", 1);
    load_ok("batch:\n  max_queue_size: 100\n  max_export_batch_size: 100\n", &c);
    assert_string_equal(c.exporter.endpoint, "http://up:4318");
    assert_int_equal(c.exporter.protocol, EXPORTER_OTLP_HTTP);
    assert_int_equal(c.exporter.retry.max_elapsed_ms, 5000);
    assert_int_equal(c.batch.max_queue_size, 20000); /* the file said 100 */
    assert_true(c.exporter.tls.insecure);
    assert_int_equal(c.exporter.file.max_file_bytes, 2ull << 30);
    assert_string_equal(c.service.name, "${NOT_EXPANDED}"); /* taken literally */
    config_free(&c);
    /* Overrides apply without a file too. */
    struct buf e = {0};
    assert_int_equal(config_load(NULL, &c, &e), 0);
    assert_int_equal(c.exporter.retry.max_elapsed_ms, 5000);
    config_free(&c);
    buf_free(&e);
}

static void test_override_maps(void **state)
{
    (void)state;
    struct svc_config c;
    setenv("OTLP__EXPORTER__HEADERS__X_API_KEY", "s3cret", 1);
    setenv("OTLP__EXPORTER__HEADERS__AUTHORIZATION", "Bearer t", 1);
    setenv("OTLP__RESOURCES__ATTRIBUTES__DEPLOYMENT_ENVIRONMENT", "staging", 1);
    setenv("OTLP__RESOURCES__ATTRIBUTES__CLOUD_AVAILABILITY__ZONE", "eu-1a", 1);
    load_ok("exporter:\n  headers:\n    X-Api-Key: from-file\n    x-keep: k\n"
            "resources:\n  attributes:\n    deployment.environment: production\n",
            &c);
    assert_int_equal(c.exporter.headers.n, 3);
    assert_string_equal(kv_get(&c.exporter.headers, "X-Api-Key"), "s3cret"); /* upserted */
    assert_string_equal(kv_get(&c.exporter.headers, "x-keep"), "k");
    assert_string_equal(kv_get(&c.exporter.headers, "authorization"), "Bearer t");
    assert_int_equal(c.resources.attributes.n, 2);
    assert_string_equal(kv_get(&c.resources.attributes, "deployment.environment"), "staging");
    assert_string_equal(kv_get(&c.resources.attributes, "cloud.availability_zone"), "eu-1a");
    /* Redacted dump hides header values, not attributes. */
    struct buf y = {0};
    assert_int_equal(config_write_yaml(&c, true, &y), 0);
    assert_null(strstr(text(&y), "s3cret"));
    assert_non_null(strstr(text(&y), "\"X-Api-Key\": \"<redacted>\""));
    assert_non_null(strstr(text(&y), "\"cloud.availability_zone\": \"eu-1a\""));
    buf_free(&y);
    config_free(&c);
}

/* Load with no file, expect -EINVAL and exactly `want`. */
static void expect_env_errors(const char *want)
{
    struct svc_config c;
    struct buf e = {0};
    assert_int_equal(config_load_buffer("t.yaml", "", 0, &c, &e), -EINVAL);
    assert_string_equal(text(&e), want);
    buf_free(&e);
    clean_env();
}

static void test_override_errors(void **state)
{
    (void)state;
    setenv("OTLP__FOO", "1", 1);
    expect_env_errors("environment: OTLP__FOO: unknown key foo\n");
    setenv("OTLP__EXPORTER__ENDPONT", "http://x", 1);
    expect_env_errors("environment: OTLP__EXPORTER__ENDPONT: unknown key exporter.endpont (did "
                      "you mean OTLP__EXPORTER__ENDPOINT?)\n");
    setenv("OTLP__EXPORTER__ENDPOINT__X", "http://x", 1);
    expect_env_errors("environment: OTLP__EXPORTER__ENDPOINT__X: unknown key exporter.endpoint.x "
                      "(did you mean OTLP__EXPORTER__ENDPOINT?)\n");
    setenv("OTLP__BATCH__MAX_QUEUE_SIZE", "lots", 1);
    expect_env_errors("environment: OTLP__BATCH__MAX_QUEUE_SIZE: batch.max_queue_size: expected "
                      "an integer, got 'lots'\n");
    setenv("OTLP__EXPORTER__HEADERS", "x", 1);
    expect_env_errors("environment: OTLP__EXPORTER__HEADERS: exporter.headers: is a map: set one "
                      "entry with OTLP__EXPORTER__HEADERS__<NAME>\n");
    setenv("OTLP__EXPORTER__RETRY", "x", 1);
    expect_env_errors("environment: OTLP__EXPORTER__RETRY: exporter.retry is a section: set its "
                      "keys with OTLP__EXPORTER__RETRY__<KEY>\n");
    setenv("OTLP__EXPORTER__HEADERS__X_A", "a\rb", 1);
    expect_env_errors("environment: OTLP__EXPORTER__HEADERS__X_A: exporter.headers.x-a: header "
                      "value must not contain control characters (CR, LF, ...)\n");
    setenv("OTLP__", "1", 1);
    expect_env_errors("environment: OTLP__: unknown key \n");
    /* Cross-field errors blame the variable that set the value. */
    setenv("OTLP__BATCH__MAX_QUEUE_SIZE", "10", 1);
    expect_env_errors("environment: OTLP__BATCH__MAX_QUEUE_SIZE: batch.max_queue_size: 10 is "
                      "smaller than batch.max_export_batch_size (1024); the queue must hold at "
                      "least one full batch\n");
}

static void test_override_log_level(void **state)
{
    (void)state;
    struct svc_config c;
    setenv("RUST_LOG", "mycrate=debug", 1); /* not a plain level: not ours, ignored */
    load_ok("service:\n  log_level: error\n", &c);
    assert_string_equal(c.service.log_level, "error");
    config_free(&c);
    setenv("RUST_LOG", "WARN", 1);
    load_ok("service:\n  log_level: error\n", &c);
    assert_string_equal(c.service.log_level, "warn");
    config_free(&c);
    setenv("OTLP_LOG_LEVEL", "debug", 1);
    load_ok("service:\n  log_level: error\n", &c);
    assert_string_equal(c.service.log_level, "debug");
    config_free(&c);
    setenv("OTLP__SERVICE__LOG_LEVEL", "info", 1);
    load_ok("service:\n  log_level: error\n", &c);
    assert_string_equal(c.service.log_level, "info");
    config_free(&c);
    clean_env();
    setenv("OTLP_LOG_LEVEL", "chatty", 1);
    expect_env_errors("environment: OTLP_LOG_LEVEL: service.log_level: must be one of debug, "
                      "info, warn, error; got 'chatty'\n");
}

/* ---- cross-field rules ---- */

static void test_cross_field(void **state)
{
    (void)state;
    expect_errors("batch:\n  max_export_batch_size: 2048\n  max_queue_size: 1000\n",
                  "t.yaml:3: batch.max_queue_size: 1000 is smaller than "
                  "batch.max_export_batch_size (2048); the queue must hold at least one full "
                  "batch\n");
    /* Only the batch size was set: blame it. */
    expect_errors("batch:\n  max_export_batch_size: 10000\n",
                  "t.yaml:2: batch.max_queue_size: 8192 is smaller than "
                  "batch.max_export_batch_size (10000); the queue must hold at least one full "
                  "batch\n");
    expect_errors("exporter:\n  protocol: otlp_http\n",
                  "t.yaml:2: exporter.endpoint: required when exporter.protocol is otlp_http\n");
    /* Plain http:// only with tls.insecure, for every exporter that sends. */
    expect_errors("exporter:\n  protocol: grpc\n  endpoint: http://c:4317\n",
                  "t.yaml:3: exporter.endpoint: a plain http:// endpoint sends telemetry "
                  "unencrypted; use https:// or set exporter.tls.insecure: true\n");
    expect_errors("exporter:\n  protocol: loadbalancing\n  loadbalancing:\n"
                  "    endpoints: https://a:4318,http://b:4318\n",
                  "t.yaml:4: exporter.loadbalancing.endpoints: plain http:// endpoints send "
                  "telemetry unencrypted; use https or set exporter.tls.insecure: true\n");
    expect_errors("exporter:\n  protocol: loadbalancing\n  loadbalancing:\n"
                  "    resolver: dns\n    hostname: c.example\n",
                  "t.yaml:4: exporter.loadbalancing.scheme: plain http:// endpoints send "
                  "telemetry unencrypted; use https or set exporter.tls.insecure: true\n");
    struct svc_config ok;
    load_ok("exporter:\n  protocol: otlp_http\n  endpoint: http://c:4318\n  tls:\n"
            "    insecure: true\n",
            &ok);
    config_free(&ok);
    load_ok("exporter:\n  protocol: grpc\n  endpoint: https://c:4317\n", &ok);
    config_free(&ok);
    expect_errors("exporter:\n  retry:\n    initial_interval_ms: 60000\n",
                  "t.yaml:3: exporter.retry.initial_interval_ms: 60000 is above "
                  "exporter.retry.max_interval_ms (30000)\n");
    expect_errors("exporter:\n  tls:\n    cert_file: /c.pem\n",
                  "t.yaml:3: exporter.tls.cert_file: exporter.tls.cert_file and "
                  "exporter.tls.key_file must be set together\n");
    expect_errors("receiver:\n  max_body_bytes: 64MiB\n",
                  "t.yaml:2: receiver.max_decompressed_bytes: 33554432 is smaller than "
                  "receiver.max_body_bytes (67108864); an uncompressed body that passes the one "
                  "would fail the other\n");
    expect_errors("control:\n  port: 4318\n",
                  "t.yaml:2: control.port: port 4318 is also used by receiver.http_port\n");
    expect_errors("receiver:\n  grpc_port: 4318\n",
                  "t.yaml:2: receiver.grpc_port: port 4318 is also used by receiver.http_port\n");
    /* DPDK: the port needs an address; the gateway must be on its subnet. */
    expect_errors("dataplane:\n  mode: dpdk\n",
                  "t.yaml:2: dataplane.dpdk.ip: required when dataplane.mode is dpdk\n");
    expect_errors("dataplane:\n  dpdk:\n    ip: 198.18.0.2\n    gateway: 198.19.0.1\n",
                  "t.yaml:4: dataplane.dpdk.gateway: 198.19.0.1 is not on the subnet of "
                  "198.18.0.2/255.255.255.0\n");
    expect_errors("dataplane:\n  dpdk:\n    ip: 198.18.0.2\n    gateway: 198.18.0.2\n",
                  "t.yaml:4: dataplane.dpdk.gateway: 198.18.0.2 is our own address "
                  "(dataplane.dpdk.ip)\n");
    /* Same port on two distinct addresses is fine; gRPC disabled is fine. */
    struct svc_config c;
    load_ok("dataplane:\n  mode: dpdk\n  dpdk:\n    ip: 10.1.2.3\n    netmask: 255.255.0.0\n"
            "    gateway: 10.1.255.1\n", &c);
    config_free(&c);
    load_ok("receiver:\n  host: 10.0.0.1\ncontrol:\n  host: 127.0.0.1\n  port: 4318\n", &c);
    config_free(&c);
    load_ok("receiver:\n  grpc_port: 0\ncontrol:\n  port: 4317\n", &c);
    config_free(&c);
}

/* ---- files ---- */

static void test_file_errors(void **state)
{
    (void)state;
    struct svc_config c;
    struct buf e = {0};
    c.service.name = (char *)"garbage"; /* cfg need not be initialised; left zeroed */
    assert_int_equal(config_load("/nonexistent/otlp.yaml", &c, &e), -ENOENT);
    assert_string_equal(text(&e), "/nonexistent/otlp.yaml: cannot read: No such file or "
                                  "directory\n");
    assert_null(c.service.name);
    config_free(&c);
    buf_reset(&e);
    assert_int_equal(config_load(".", &c, &e), -EISDIR);
    assert_non_null(strstr(text(&e), ".: cannot read: Is a directory\n"));

    char path[] = "/tmp/test_config_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    static const char yaml[] = "batch:\n  max_queue_size: nope\n";
    assert_int_equal(write(fd, yaml, sizeof(yaml) - 1), (ssize_t)(sizeof(yaml) - 1));
    buf_reset(&e);
    assert_int_equal(config_load(path, &c, &e), -EINVAL);
    char want[256];
    snprintf(want, sizeof(want), "%s:2: batch.max_queue_size: expected an integer, got 'nope'\n",
             path);
    assert_string_equal(text(&e), want);
    if (geteuid() != 0) { /* root reads anything */
        assert_int_equal(chmod(path, 0), 0);
        buf_reset(&e);
        assert_int_equal(config_load(path, &c, &e), -EACCES);
        assert_non_null(strstr(text(&e), "cannot read: Permission denied\n"));
    }
    /* Too large for a configuration file. */
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(ftruncate(fd, CONFIG_MAX_FILE_BYTES + 1), 0);
    buf_reset(&e);
    assert_int_equal(config_load(path, &c, &e), -EFBIG);
    assert_non_null(strstr(text(&e), "larger than 1048576 bytes"));
    close(fd);
    unlink(path);
    buf_free(&e);
}

/* exporter.nats: defaults, accepted values and the syntax checks. */
static void test_nats_section(void **state)
{
    (void)state;
    struct svc_config c;
    load_ok("exporter:\n  protocol: nats\n", &c);
    assert_int_equal(c.exporter.protocol, EXPORTER_NATS);
    assert_string_equal(config_exporter_protocol_name(c.exporter.protocol), "nats");
    assert_string_equal(c.exporter.nats.servers, "nats://127.0.0.1:4222");
    assert_string_equal(c.exporter.nats.subject_prefix, "otlp");
    assert_string_equal(c.exporter.nats.traces_subject, "");
    assert_string_equal(c.exporter.nats.stream, "OTLP");
    assert_true(c.exporter.nats.create_stream);
    assert_int_equal(c.exporter.nats.stream_replicas, 1);
    assert_int_equal(c.exporter.nats.stream_max_bytes, 0);
    assert_int_equal(c.exporter.nats.max_pending, 256);
    config_free(&c);
    load_ok("exporter:\n  nats:\n    servers: \"nats://a:4222, tls://u:p@b:4223,nats://c\"\n"
            "    traces_subject: tenant-1.otlp.spans\n    stream: OTLP_1\n"
            "    stream_replicas: 3\n    stream_max_bytes: 10GiB\n",
            &c);
    assert_string_equal(c.exporter.nats.traces_subject, "tenant-1.otlp.spans");
    assert_int_equal(c.exporter.nats.stream_replicas, 3);
    assert_int_equal(c.exporter.nats.stream_max_bytes, 10ull << 30);
    config_free(&c);
    expect_error_part("exporter:\n  nats:\n    servers: http://a:4222\n",
                      "exporter.nats.servers: each server must be a nats:// or tls:// URL");
    expect_error_part("exporter:\n  nats:\n    servers: \"nats://a:4222,\"\n",
                      "exporter.nats.servers: each server must be a nats:// or tls:// URL");
    expect_error_part("exporter:\n  nats:\n    subject_prefix: otlp.>\n",
                      "exporter.nats.subject_prefix: must not contain the wildcards");
    expect_error_part("exporter:\n  nats:\n    logs_subject: a..b\n",
                      "exporter.nats.logs_subject: must be tokens separated by single dots");
    expect_error_part("exporter:\n  nats:\n    stream: a.b\n",
                      "exporter.nats.stream: must not contain");
    expect_error_part("exporter:\n  nats:\n    stream_replicas: 6\n",
                      "exporter.nats.stream_replicas");
    expect_error_part("exporter:\n  nats:\n    subject_prefix: \"\"\n",
                      "exporter.nats.subject_prefix");
}

/* receiver.tls and receiver.auth: defaults, values, cross-field rules, and
 * bearer tokens kept out of error messages and redacted dumps. */
static void test_receiver_tls_auth(void **state)
{
    (void)state;
    struct svc_config c;
    load_ok("", &c);
    assert_false(c.receiver.tls.enabled);
    assert_int_equal(c.receiver.tls.client_auth, TLS_CLIENT_AUTH_NONE);
    assert_int_equal(c.receiver.tls.min_version, TLS_MIN_VERSION_1_2);
    assert_string_equal(c.receiver.tls.cert_file, "");
    assert_string_equal(c.receiver.auth.bearer_tokens, "");
    config_free(&c);
    load_ok("receiver:\n  tls:\n    enabled: true\n    cert_file: /s.pem\n    key_file: /s.key\n"
            "    ca_file: /ca.pem\n    client_auth: require\n    min_version: 1.3\n"
            "    ciphers: ECDHE+AESGCM\n"
            "  auth:\n    bearer_tokens: \"t0k-1, abc.DEF_~+/==\"\n    token_file: /t\n",
            &c);
    assert_true(c.receiver.tls.enabled);
    assert_string_equal(c.receiver.tls.cert_file, "/s.pem");
    assert_int_equal(c.receiver.tls.client_auth, TLS_CLIENT_AUTH_REQUIRE);
    assert_int_equal(c.receiver.tls.min_version, TLS_MIN_VERSION_1_3);
    assert_string_equal(c.receiver.tls.ciphers, "ECDHE+AESGCM");
    assert_string_equal(c.receiver.auth.bearer_tokens, "t0k-1, abc.DEF_~+/==");
    assert_string_equal(c.receiver.auth.token_file, "/t");
    struct buf y = {0};
    assert_int_equal(config_write_yaml(&c, true, &y), 0);
    assert_null(strstr(text(&y), "t0k-1"));
    assert_non_null(strstr(text(&y), "bearer_tokens: \"<redacted>\""));
    assert_non_null(strstr(text(&y), "min_version: 1.3"));
    buf_free(&y);
    assert_int_equal(config_write_yaml(&c, false, &y), 0);
    assert_non_null(strstr(text(&y), "t0k-1"));
    buf_free(&y);
    config_free(&c);
    setenv("OTLP__RECEIVER__TLS__CLIENT_AUTH", "request", 1);
    setenv("OTLP__RECEIVER__AUTH__BEARER_TOKENS", "from-env", 1);
    load_ok("", &c);
    assert_int_equal(c.receiver.tls.client_auth, TLS_CLIENT_AUTH_REQUEST);
    assert_string_equal(c.receiver.auth.bearer_tokens, "from-env");
    config_free(&c);
    unsetenv("OTLP__RECEIVER__TLS__CLIENT_AUTH");
    unsetenv("OTLP__RECEIVER__AUTH__BEARER_TOKENS");

    expect_errors("receiver:\n  tls:\n    enabled: true\n    cert_file: /s.pem\n",
                  "t.yaml:3: receiver.tls.key_file: required when receiver.tls.enabled is true\n");
    expect_errors("receiver:\n  tls:\n    enabled: true\n    cert_file: /s.pem\n"
                  "    key_file: /s.key\n    client_auth: request\n",
                  "t.yaml:6: receiver.tls.ca_file: required when receiver.tls.client_auth is "
                  "request or require (the CAs client certificates are verified against)\n");
    expect_error_part("receiver:\n  tls:\n    min_version: 1.1\n",
                      "receiver.tls.min_version: must be one of 1.2, 1.3");
    expect_error_part("receiver:\n  tls:\n    client_auth: optional\n",
                      "receiver.tls.client_auth: must be one of none, request, require");
    /* malformed token lists; the token is never echoed */
    static const char *const bad[] = {"a b", "a,,b", "a,", ",a", "t=x", "s3cr%t"};
    for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
        char yaml[128];
        snprintf(yaml, sizeof(yaml), "receiver:\n  auth:\n    bearer_tokens: \"%s\"\n", bad[i]);
        struct buf e = {0};
        assert_int_equal(config_load_buffer("t.yaml", yaml, strlen(yaml), &c, &e), -EINVAL);
        assert_non_null(strstr(text(&e), "receiver.auth.bearer_tokens"));
        assert_null(strstr(text(&e), bad[i]));
        buf_free(&e);
    }
    /* blank is none */
    load_ok("receiver:\n  auth:\n    bearer_tokens: \"  \"\n", &c);
    config_free(&c);
}

/* The shipped files load; default.yaml is the built-in defaults but for data_dir. */
static void test_shipped_configs(void **state)
{
    (void)state;
    struct svc_config c, d;
    struct buf e = {0}, a = {0}, b = {0};
    int rc = config_load(DEFAULT_YAML, &c, &e);
    if (rc != 0)
        print_error("%s", text(&e));
    assert_int_equal(rc, 0);
    assert_string_equal(c.service.data_dir, "./data");
    assert_string_equal(c.exporter.file.path, "./data/export");
    assert_int_equal(c.dataplane.mode, DATAPLANE_SOCKET);
    assert_int_equal(c.exporter.protocol, EXPORTER_FILE);
    assert_int_equal(config_load(NULL, &d, NULL), 0);
    free(d.service.data_dir);
    free(d.exporter.file.path);
    d.service.data_dir = strdup("./data");
    d.exporter.file.path = strdup("./data/export");
    assert_int_equal(config_write_yaml(&c, false, &a), 0);
    assert_int_equal(config_write_yaml(&d, false, &b), 0);
    if (strcmp(text(&a), text(&b)) != 0)
        print_error("default.yaml:\n%s\nbuilt-in:\n%s", text(&a), text(&b));
    assert_string_equal(text(&a), text(&b));
    config_free(&c);
    config_free(&d);

    /* production.yaml needs the upstream endpoint. */
    buf_reset(&e);
    assert_int_equal(config_load(PRODUCTION_YAML, &c, &e), -EINVAL);
    assert_non_null(strstr(text(&e), "environment variable OTLP_UPSTREAM_ENDPOINT is not set"));
    setenv("OTLP_UPSTREAM_ENDPOINT", "https://collector.example:4318", 1);
    buf_reset(&e);
    rc = config_load(PRODUCTION_YAML, &c, &e);
    if (rc != 0)
        print_error("%s", text(&e));
    assert_int_equal(rc, 0);
    assert_int_equal(c.batch.max_queue_size, 8192);
    assert_int_equal(c.batch.max_export_batch_size, 1024);
    assert_int_equal(c.batch.batch_timeout_ms, 100);
    assert_int_equal(c.batch.max_concurrent_exports, 20);
    assert_int_equal(c.exporter.compression, COMPRESSION_GZIP);
    assert_int_equal(c.exporter.protocol, EXPORTER_OTLP_HTTP);
    assert_string_equal(c.exporter.endpoint, "https://collector.example:4318");
    assert_string_equal(c.service.data_dir, "/var/lib/otlp-service");
    assert_string_equal(c.service.log_level, "info");
    assert_string_equal(kv_get(&c.resources.attributes, "deployment.environment"), "production");
    config_free(&c);
    setenv("DEPLOYMENT_ENV", "staging", 1);
    assert_int_equal(config_load(PRODUCTION_YAML, &c, NULL), 0);
    assert_string_equal(kv_get(&c.resources.attributes, "deployment.environment"), "staging");
    config_free(&c);
    unsetenv("DEPLOYMENT_ENV");
    unsetenv("OTLP_UPSTREAM_ENDPOINT");
    buf_free(&e);
    buf_free(&a);
    buf_free(&b);
}

/* What config_write_yaml writes, config_load reads back to the same values. */
static void test_yaml_round_trip(void **state)
{
    (void)state;
    struct svc_config c, d;
    struct buf a = {0}, b = {0};
    load_ok("service:\n  name: \"we\\\"ird \\\\ $$x ${CFGTEST_NONE:-d} \\t \xc3\xa9\"\n"
            "  data_dir: \"\\x7f \\ufffe \\U0001F600 \\x85 \\u2028\"\n"
            "exporter:\n  headers:\n    x-a: \"1: 2\"\n  retry:\n    multiplier: 1.1\n"
            "    randomization: 0.3333333333333333\n"
            "receiver:\n  max_body_bytes: 1537\n"
            "resources:\n  attributes:\n    \"k:with colon\": \"#not a comment\"\n",
            &c);
    assert_string_equal(c.service.name, "we\"ird \\ $x d \t \xc3\xa9");
    assert_int_equal(config_write_yaml(&c, false, &a), 0);
    load_ok(text(&a), &d);
    assert_int_equal(config_write_yaml(&d, false, &b), 0);
    assert_string_equal(text(&a), text(&b));
    assert_string_equal(d.service.name, c.service.name);
    assert_string_equal(d.service.data_dir,
                        "\x7f \xef\xbf\xbe \xf0\x9f\x98\x80 \xc2\x85 \xe2\x80\xa8");
    assert_true(d.exporter.retry.randomization == c.exporter.retry.randomization);
    assert_string_equal(kv_get(&d.resources.attributes, "k:with colon"), "#not a comment");
    config_free(&c);
    config_free(&d);
    buf_free(&a);
    buf_free(&b);
}

/* ---- cores ---- */

static void test_parse_cores(void **state)
{
    (void)state;
    unsigned cores[16], n = 99;
    assert_int_equal(config_parse_cores("0-3,6", cores, 16, &n), 0);
    assert_int_equal(n, 5);
    assert_int_equal(cores[0], 0);
    assert_int_equal(cores[3], 3);
    assert_int_equal(cores[4], 6);
    assert_int_equal(config_parse_cores("", cores, 16, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(config_parse_cores(" 7 , 2 - 3 ", cores, 16, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(cores[0], 7); /* order as written */
    assert_int_equal(cores[1], 2);
    assert_int_equal(config_parse_cores("1023", NULL, 16, &n), 0); /* count only */
    assert_int_equal(n, 1);
    static const char *bad[] = {"a",     "1,",   ",1",  "1-", "3-1",  "1,1",
                                "0-3,2", "1024", "1;2", "-1", "1--2", "99999999999999999999999"};
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        n = 99;
        assert_int_equal(config_parse_cores(bad[i], cores, 16, &n), -EINVAL);
        assert_int_equal(n, 0);
    }
    assert_int_equal(config_parse_cores("0-16", cores, 16, &n), -E2BIG);
    assert_int_equal(config_parse_cores("0-15", cores, 16, &n), 0);
    assert_int_equal(config_parse_cores(NULL, cores, 16, &n), -EINVAL);
    expect_errors("dataplane:\n  cores: 0-200\n",
                  "t.yaml:2: dataplane.cores: lists more cores than allowed\n");
}

/* ---- reference and docs ---- */

static void test_reference(void **state)
{
    (void)state;
    struct buf r = {0};
    assert_int_equal(config_write_reference(&r), 0);
    const char *t = text(&r);
    static const char *keys[] = {"`batch.max_queue_size`",
                                 "`exporter.retry.initial_interval_ms`",
                                 "`exporter.tls.ca_file`",
                                 "`exporter.file.max_file_bytes`",
                                 "`receiver.http_port`",
                                 "`OTLP__EXPORTER__RETRY__MAX_ELAPSED_MS`",
                                 "`OTLP__RESOURCES__ATTRIBUTES__<NAME>`",
                                 "### `exporter.tls`",
                                 "| size | `8MiB` | 1KiB .. 1GiB |",
                                 "`socket`, `dpdk`"};
    for (unsigned i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (strstr(t, keys[i]) == NULL)
            print_error("missing %s\n", keys[i]);
        assert_non_null(strstr(t, keys[i]));
    }
    assert_int_equal(config_write_reference(NULL), -EINVAL);
    struct buf small = {0};
    buf_init(&small, 0, 64);
    assert_int_equal(config_write_reference(&small), -EMSGSIZE);
    buf_free(&small);
    buf_free(&r);
}

/* docs/configuration.md holds exactly the generated reference, so the docs
 * cannot drift from the tables. CONFIG_UPDATE_DOCS=1 rewrites it. */
static void test_docs_match_tables(void **state)
{
    (void)state;
    struct buf r = {0};
    size_t len = 0;
    assert_int_equal(config_write_reference(&r), 0);
    char *doc = read_all(DOCS_PATH, &len);
    assert_non_null(doc);
    char *begin = strstr(doc, DOCS_BEGIN);
    char *end = begin != NULL ? strstr(begin, DOCS_END) : NULL;
    assert_non_null(begin);
    assert_non_null(end);
    begin += strlen(DOCS_BEGIN);
    size_t have = (size_t)(end - begin);
    bool same = have == r.len + 1 && memcmp(begin, r.data, r.len) == 0 && begin[r.len] == '\n';
    const char *update = getenv("CONFIG_UPDATE_DOCS");
    if (!same && update != NULL && strcmp(update, "1") == 0) {
        FILE *f = fopen(DOCS_PATH, "wb");
        assert_non_null(f);
        fwrite(doc, 1, (size_t)(begin - doc), f);
        fwrite(r.data, 1, r.len, f);
        fputc('\n', f);
        fwrite(end, 1, len - (size_t)(end - doc), f);
        assert_int_equal(fclose(f), 0);
        same = true;
    }
    if (!same)
        print_error("docs/configuration.md is out of date with lib/config/config_table.c; "
                    "run: CONFIG_UPDATE_DOCS=1 meson test -C <build> config\n");
    assert_true(same);
    free(doc);
    buf_free(&r);
}

/* spool: defaults, every value, and segment_bytes within max_bytes. */
static void test_spool_section(void **state)
{
    (void)state;
    struct svc_config c;
    load_ok("", &c);
    assert_false(c.spool.enabled);
    assert_string_equal(c.spool.dir, "");
    assert_int_equal(c.spool.max_bytes, 1ull << 30);
    assert_int_equal(c.spool.segment_bytes, 64ull << 20);
    assert_int_equal(c.spool.fsync, SPOOL_FSYNC_INTERVAL);
    assert_int_equal(c.spool.fsync_interval_ms, 1000);
    config_free(&c);
    load_ok("spool:\n  enabled: true\n  dir: /srv/spool\n  max_bytes: 10GiB\n"
            "  segment_bytes: 1GiB\n  fsync: always\n  fsync_interval_ms: 50\n",
            &c);
    assert_true(c.spool.enabled);
    assert_string_equal(c.spool.dir, "/srv/spool");
    assert_int_equal(c.spool.max_bytes, 10ull << 30);
    assert_int_equal(c.spool.segment_bytes, 1ull << 30);
    assert_int_equal(c.spool.fsync, SPOOL_FSYNC_ALWAYS);
    assert_int_equal(c.spool.fsync_interval_ms, 50);
    assert_string_equal(config_spool_fsync_name(c.spool.fsync), "always");
    config_free(&c);
    expect_errors("spool:\n  fsync: sometimes\n",
                  "t.yaml:2: spool.fsync: must be one of always, interval, never; got "
                  "'sometimes'\n");
    expect_errors("spool:\n  max_bytes: 2MiB\n  segment_bytes: 4MiB\n",
                  "t.yaml:3: spool.segment_bytes: 4194304 is larger than spool.max_bytes "
                  "(2097152)\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_null_is_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_type_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ranges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enums, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_nesting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_yaml_syntax_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_collects_all_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_expansion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_override_scalar_and_nested, setup, teardown),
        cmocka_unit_test_setup_teardown(test_override_maps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_override_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_override_log_level, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cross_field, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nats_section, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receiver_tls_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_section, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shipped_configs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_yaml_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_cores, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reference, setup, teardown),
        cmocka_unit_test_setup_teardown(test_docs_match_tables, setup, teardown),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
