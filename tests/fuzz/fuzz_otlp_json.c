/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for lib/otlp/otlp_json.c. Every input is tried as JSON and
 * as protobuf, for each signal's request and response type, and must keep
 * these properties:
 * - JSON -> protobuf either succeeds or fails with -EINVAL and a message; on
 *   failure the output buffer is left as it was;
 * - whatever JSON we accept, jansson accepts too (except numbers jansson cannot
 *   hold and NUL in keys, which are legal JSON); whatever we call invalid JSON,
 *   jansson rejects too;
 * - JSON -> protobuf P1 -> JSON -> protobuf P2 gives P2 == P1 byte for byte
 *   (P1 is canonical: fields in key order, defaults left out, packed arrays);
 * - protobuf -> JSON J1 -> protobuf -> JSON J2 gives J2 == J1 byte for byte.
 *   The protobuf itself need not come back identical: it may repeat or
 *   interleave fields, carry unknown fields or explicit defaults, or use
 *   non-minimal varints, all of which a protobuf parser folds away. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "otlp/otlp_json.h"

/* Compiled into the target so libFuzzer's coverage and ASan/UBSan instrument
 * it: tests/fuzz/meson.build adds -fsanitize=fuzzer only to the target itself,
 * and libotlp.a's copy is then never pulled in. */
#include "otlp/otlp_json.c"

static struct buf pb1, pb2, js1, js2;

static void die(const char *what, const ProtobufCMessageDescriptor *d, const char *err)
{
    fprintf(stderr, "fuzz_otlp_json: %s (%s) %s\n", what, d->name, err ? err : "");
    fprintf(stderr, "  pb1 %zu B, js1 %.*s\n  js2 %.*s\n", pb1.len, (int)BASE_MIN(js1.len, 4000),
            js1.data, (int)BASE_MIN(js2.len, 4000), js2.data);
    abort();
}

static bool same(const struct buf *a, const struct buf *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* Syntax errors end in "invalid JSON at offset N: <reason>"; the reasons are
 * fixed strings without '"', while messages that echo input end in a quote. */
static bool is_syntax_error(const char *err)
{
    static const char tag[] = "invalid JSON at offset ";
    const char *p = NULL;
    for (const char *q = strstr(err, tag); q != NULL; q = strstr(q + 1, tag))
        p = q;
    if (p == NULL)
        return false;
    p += sizeof(tag) - 1;
    if (*p < '0' || *p > '9')
        return false;
    while (*p >= '0' && *p <= '9')
        p++;
    return p[0] == ':' && p[1] == ' ' && strchr(p, '"') == NULL;
}

static void check_json_input(const ProtobufCMessageDescriptor *d, const char *in, size_t n)
{
    char err[256];
    buf_reset(&pb1);
    buf_append(&pb1, "pre", 3);
    int rc = otlp_json_to_proto_desc(d, in, n, &pb1, err, sizeof(err));
    json_error_t jerr;
    json_t *j = json_loadb(in, n, JSON_ALLOW_NUL, &jerr);
    json_decref(j);
    if (rc != 0) {
        if (rc != -EINVAL || err[0] == '\0' || pb1.len != 3)
            die("json->proto failed badly", d, err);
        /* jansson 2.14 swallows a raw NUL right after a number ("[1\0]"
         * loads as [1]), so inputs with NUL bytes are not compared */
        if (is_syntax_error(err) && j != NULL && memchr(in, '\0', n) == NULL)
            die("we call it invalid JSON, jansson does not", d, err);
        return;
    }
    if (j == NULL && json_error_code(&jerr) != json_error_numeric_overflow &&
        json_error_code(&jerr) != json_error_null_byte_in_key)
        die("we accept what jansson rejects", d, jerr.text);
    buf_consume(&pb1, 3);
    buf_reset(&js1);
    if (otlp_proto_to_json_desc(d, pb1.data, pb1.len, &js1) != 0)
        die("our own protobuf does not convert back", d, NULL);
    buf_reset(&pb2);
    if (otlp_json_to_proto_desc(d, (const char *)js1.data, js1.len, &pb2, err, sizeof(err)) != 0)
        die("our own JSON does not read back", d, err);
    if (!same(&pb1, &pb2))
        die("json->proto->json->proto changed the protobuf", d, NULL);
}

static void check_proto_input(const ProtobufCMessageDescriptor *d, const uint8_t *in, size_t n)
{
    char err[256];
    buf_reset(&js1);
    buf_append(&js1, "pre", 3);
    int rc = otlp_proto_to_json_desc(d, in, n, &js1);
    if (rc != 0) {
        /* -EMSGSIZE: nested merges of repeated singular messages */
        if ((rc != -EINVAL && rc != -EMSGSIZE) || js1.len != 3)
            die("proto->json failed badly", d, NULL);
        return;
    }
    buf_consume(&js1, 3);
    json_t *j = json_loadb((const char *)js1.data, js1.len, JSON_ALLOW_NUL, NULL);
    if (j == NULL)
        die("proto->json wrote invalid JSON", d, NULL);
    json_decref(j);
    buf_reset(&pb2);
    if (otlp_json_to_proto_desc(d, (const char *)js1.data, js1.len, &pb2, err, sizeof(err)) != 0)
        die("JSON from protobuf does not read back", d, err);
    buf_reset(&js2);
    if (otlp_proto_to_json_desc(d, pb2.data, pb2.len, &js2) != 0)
        die("re-encoded protobuf does not convert", d, NULL);
    if (!same(&js1, &js2))
        die("proto->json->proto->json changed the JSON", d, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int s = 0; s < OTLP_SIGNAL_COUNT; s++) {
        const ProtobufCMessageDescriptor *req = otlp_json_request_descriptor((enum otlp_signal)s);
        const ProtobufCMessageDescriptor *resp = otlp_json_response_descriptor((enum otlp_signal)s);
        check_json_input(req, (const char *)data, size);
        check_proto_input(req, data, size);
        if (s == 0) { /* responses share one shape */
            check_json_input(resp, (const char *)data, size);
            check_proto_input(resp, data, size);
        }
    }
    return 0;
}
