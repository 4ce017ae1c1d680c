/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzzes the configuration loader (lib/config): arbitrary bytes as a YAML
 * file through config_load_buffer(), then the YAML writer and a reload of
 * its output, which must succeed whenever the first load did. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "config/config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* Variables the seed corpus refers to, so ${VAR} paths are reached. */
    setenv("OTLP_UPSTREAM_ENDPOINT", "https://collector.example:4318", 1);
    setenv("FUZZ_VAR", "4318", 1);
    unsetenv("DEPLOYMENT_ENV");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct svc_config cfg, again;
    struct buf errors = {0}, yaml = {0};
    if (size > CONFIG_MAX_FILE_BYTES)
        return 0;
    int rc = config_load_buffer("fuzz.yaml", (const char *)data, size, &cfg, &errors);
    if (rc == 0) {
        if (config_write_yaml(&cfg, false, &yaml) != 0)
            abort();
        /* What we write we must read back. */
        struct buf errors2 = {0};
        if (config_load_buffer("dump.yaml", (const char *)yaml.data, yaml.len, &again, &errors2) !=
            0) {
            fprintf(stderr, "reload failed:\n%.*s\n%.*s\n", (int)yaml.len, (char *)yaml.data,
                    (int)errors2.len, (char *)errors2.data);
            abort();
        }
        config_free(&again);
        buf_free(&errors2);
    } else if (rc == -EINVAL) {
        /* Every problem is one non-empty line. */
        if (errors.len == 0 || errors.data[errors.len - 1] != '\n')
            abort();
        for (size_t i = 0; i < errors.len; i++) {
            if (errors.data[i] < ' ' && errors.data[i] != '\n')
                abort();
        }
    } else if (rc != -ENOMEM) {
        abort();
    }
    config_free(&cfg);
    buf_free(&errors);
    buf_free(&yaml);
    return 0;
}
