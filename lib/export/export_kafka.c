/* SPDX-License-Identifier: Apache-2.0 */
/* Kafka exporter: batches leave as Kafka messages through one idempotent
 * librdkafka producer (acks=all), on the export thread. A batch becomes one or
 * more messages (split by trace id or resource, and by size), each an
 * Export*ServiceRequest in protobuf or OTLP JSON, keyed as the OpenTelemetry
 * Collector's Kafka exporter keys them; it is exported once every message's
 * delivery report came back. Delivery reports, statistics and librdkafka's
 * logs are all served from poll(), so no state is shared across threads. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <xxhash.h>

#include "base/base.h"
#include "export/exporter.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "opentelemetry/proto/resource/v1/resource.pb-c.h"
#include "otlp/otlp.h"
#include "otlp/otlp_json.h"
#include "otlp/otlp_split.h"
#include "otlp/otlp_wire.h"

/* Room kept below message.max.bytes for the key and librdkafka's per-record
 * framing (rd_kafka_msg_max_wire_size()), so a message we build is never
 * refused for a few bytes. */
#define KAFKA_MSG_OVERHEAD 256
/* Distinct brokers with their own series on /metrics. */
#define KAFKA_MAX_BROKERS 64
/* Longest message key: a trace id in hex. */
#define KAFKA_KEY_MAX 32

/* A statistic read by the scraper: a double stored as its bits, written by
 * the export thread, read at scrape time without a lock. */
struct kafka_cell {
    _Atomic uint64_t bits;
};

static void cell_set(struct kafka_cell *c, double v)
{
    uint64_t b;
    memcpy(&b, &v, sizeof(b));
    atomic_store_explicit(&c->bits, b, memory_order_relaxed);
}

static double cell_read(void *arg)
{
    struct kafka_cell *c = arg;
    uint64_t b = atomic_load_explicit(&c->bits, memory_order_relaxed);
    double v;
    memcpy(&v, &b, sizeof(v));
    return v;
}

/* Per-broker figures from librdkafka's statistics JSON. Counters keep
 * counting across a re-created producer (base + the current instance's). */
struct kafka_broker {
    int32_t nodeid;
    char nodename[128];
    struct kafka_cell rtt_avg_s, rtt_p99_s, outbuf_msgs, waitresp_msgs, up;
    struct kafka_cell tx_errors, tx_retries, req_timeouts, connects;
    double base[4], last[4]; /* txerrs, txretries, req_timeouts, connects */
};

/* One message of a batch. */
struct kafka_msg {
    struct kafka_slot *slot;
    const uint8_t *payload; /* into the batch body or slot->out */
    size_t off, len;        /* in slot->out when payload is NULL until resolved */
    uint64_t items;         /* spans / data points / log records in it */
    uint8_t key[KAFKA_KEY_MAX];
    uint8_t key_len;
    bool has_key;
};

/* One batch in flight. */
struct kafka_slot {
    struct batch *b; /* NULL: free */
    struct buf out;  /* payloads of split or re-encoded messages */
    struct kafka_msg *msgs;
    unsigned n_msgs, cap_msgs;
    unsigned next;        /* next message to produce */
    unsigned outstanding; /* produced, delivery report pending */
    unsigned n_failed;    /* messages failed for good */
    uint64_t rejected_items;
    rd_kafka_resp_err_t retry_err; /* first retriable error; 0: none */
    rd_kafka_resp_err_t perm_err;  /* first permanent error; 0: none */
    bool encode_error;
    bool blocked; /* the producer queue was full: produce the rest later */
};

struct kafka_exp {
    rd_kafka_t *rk;
    rd_kafka_topic_t *topics[OTLP_SIGNAL_COUNT];
    rd_kafka_conf_t *conf_template; /* kept to re-create the producer */
    char *topic_names[OTLP_SIGNAL_COUNT];
    int efd; /* eventfd: wakeup() and librdkafka's main queue */
    bool fatal;
    enum kafka_encoding encoding;
    bool partition[OTLP_SIGNAL_COUNT];
    size_t max_payload; /* largest payload we build */

    struct kafka_slot *slots;
    unsigned n_slots;
    struct kafka_slot **finished; /* scratch for one poll's completions */

    /* scratch for splitting a batch (lib/otlp/otlp_split.h) */
    struct otlp_split *split;
    uint8_t (*res_keys)[16]; /* resource hash per resource entry */
    size_t res_keys_cap;
    struct buf pb; /* one message's protobuf before JSON conversion */

    /* metrics */
    struct obs_registry *reg;
    struct kafka_cell produced, delivered, failed, queue_msgs, queue_bytes;
    uint64_t n_produced, n_delivered, n_failed;
    struct kafka_broker brokers[KAFKA_MAX_BROKERS];
    unsigned n_brokers;
    bool brokers_full_logged;
    struct log_ratelimit rl_err, rl_fail, rl_log;
};

static void kafka_destroy(void *state);

/* ---- small helpers ---- */

/* "kafka_" + librdkafka's error name in lower case, without the leading '_'
 * of local errors: kafka_msg_timed_out, kafka_not_leader_for_partition. */
static void err_reason(rd_kafka_resp_err_t err, char *out, size_t n)
{
    const char *name = rd_kafka_err2name(err);
    while (*name == '_')
        name++;
    size_t k = (size_t)snprintf(out, n, "kafka_");
    for (; *name && k + 1 < n; name++)
        out[k++] = (char)(*name >= 'A' && *name <= 'Z' ? *name - 'A' + 'a' : *name);
    out[k] = '\0';
}

/*
 * Errors that another attempt will not fix: the message or the request is
 * wrong for this cluster, the topic does not exist (and is not created
 * automatically), or we are not allowed to write. Everything else
 * (timeouts, transport, leadership changes, purges, a fatal producer state
 * that re-creating the producer clears) is retriable.
 */
static bool err_permanent(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_FOR_MESSAGE_FORMAT:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_COMPRESSION_TYPE:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
        return true;
    default:
        return false;
    }
}

/* ---- the collector's resource hash (pdatautil.MapHash) ---- */

/*
 * pdatautil.MapHash of the OpenTelemetry Collector contrib, which its Kafka
 * exporter uses as the key with partition_{metrics,logs}_by_resource_attributes:
 * the attributes sorted by key, each written as 0xf4 key value with a type
 * prefix per value (0xf7 string, 0xf8/0xf9 bools, 0xfa int64 LE, 0xfb double
 * bits LE, 0xf6 bytes, 0xfc map 0xfd, 0xfe array 0xff, 0xf5 empty); the
 * 16-byte result is XXH64 of that, then XXH64 of that plus 0xf3, both
 * little-endian. An empty map hashes to 16 zero bytes.
 */
typedef Opentelemetry__Proto__Common__V1__KeyValue pb_kv;
typedef Opentelemetry__Proto__Common__V1__AnyValue pb_any;

/* An attribute as MapHash sees it: its key and the value of the first
 * attribute with that key (pcommon.Map.Get). */
struct hash_kv {
    const char *key;
    const pb_any *value;
};

static int hash_kv_cmp(const void *a, const void *b)
{
    return strcmp(((const struct hash_kv *)a)->key, ((const struct hash_kv *)b)->key);
}

static int hash_map(struct buf *w, pb_kv *const *kvs, size_t n, unsigned depth);

static int hash_value(struct buf *w, const pb_any *v, unsigned depth)
{
    uint8_t tag;
    if (depth > 64)
        return -EINVAL;
    if (v == NULL)
        return buf_append(w, "\xf5", 1);
    switch (v->value_case) {
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE:
        if (buf_append(w, "\xf7", 1) < 0)
            return -ENOMEM;
        return buf_append_str(w, v->string_value ? v->string_value : "");
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE:
        return buf_append(w, v->bool_value ? "\xf8" : "\xf9", 1);
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE:
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE: {
        uint8_t le[9];
        uint64_t x;
        if (v->value_case == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE) {
            le[0] = 0xfa;
            x = (uint64_t)v->int_value;
        } else {
            le[0] = 0xfb;
            memcpy(&x, &v->double_value, sizeof(x));
        }
        otlp_wire_put_fixed64(le + 1, x);
        return buf_append(w, le, sizeof(le));
    }
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BYTES_VALUE:
        if (buf_append(w, "\xf6", 1) < 0)
            return -ENOMEM;
        return buf_append(w, v->bytes_value.data, v->bytes_value.len);
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE: {
        tag = 0xfc;
        if (buf_append(w, &tag, 1) < 0)
            return -ENOMEM;
        const Opentelemetry__Proto__Common__V1__KeyValueList *l = v->kvlist_value;
        int rc = l ? hash_map(w, l->values, l->n_values, depth + 1) : 0;
        tag = 0xfd;
        return rc < 0 ? rc : buf_append(w, &tag, 1);
    }
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE: {
        tag = 0xfe;
        if (buf_append(w, &tag, 1) < 0)
            return -ENOMEM;
        const Opentelemetry__Proto__Common__V1__ArrayValue *a = v->array_value;
        for (size_t i = 0; a != NULL && i < a->n_values; i++) {
            int rc = hash_value(w, a->values[i], depth + 1);
            if (rc < 0)
                return rc;
        }
        tag = 0xff;
        return buf_append(w, &tag, 1);
    }
    default:
        return buf_append(w, "\xf5", 1);
    }
}

/* Sorted by key (bytewise, as Go's sort.Strings); a repeated key is
 * written each time with its first value, as pcommon.Map.Range + Get do. */
static int hash_map(struct buf *w, pb_kv *const *kvs, size_t n, unsigned depth)
{
    if (n == 0)
        return 0;
    struct hash_kv *e = malloc(n * sizeof(*e));
    if (e == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        e[i].key = kvs[i]->key ? kvs[i]->key : "";
        e[i].value = kvs[i]->value;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(e[j].key, e[i].key) == 0) {
                e[i].value = e[j].value;
                break;
            }
        }
    }
    qsort(e, n, sizeof(*e), hash_kv_cmp); /* equal keys carry equal values */
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (buf_append(w, "\xf4", 1) < 0 || buf_append_str(w, e[i].key) < 0)
            rc = -ENOMEM;
        else
            rc = hash_value(w, e[i].value, depth);
    }
    free(e);
    return rc;
}

/* Hash of the Resource message `pb` (its encoded bytes). */
static int resource_hash(const uint8_t *pb, size_t len, uint8_t out[16])
{
    memset(out, 0, 16);
    Opentelemetry__Proto__Resource__V1__Resource *r =
        opentelemetry__proto__resource__v1__resource__unpack(NULL, len, pb);
    if (r == NULL)
        return -EINVAL;
    int rc = 0;
    if (r->n_attributes > 0) {
        struct buf w;
        if (buf_init(&w, 256, 0) < 0) {
            rc = -ENOMEM;
        } else {
            rc = hash_map(&w, r->attributes, r->n_attributes, 0);
            if (rc == 0) {
                otlp_wire_put_fixed64(out, XXH64(w.data, w.len, 0));
                uint8_t extra = 0xf3;
                if (buf_append(&w, &extra, 1) < 0)
                    rc = -ENOMEM;
                else
                    otlp_wire_put_fixed64(out + 8, XXH64(w.data, w.len, 0));
            }
            buf_free(&w);
        }
    }
    opentelemetry__proto__resource__v1__resource__free_unpacked(r, NULL);
    return rc;
}

int export_kafka_resource_hash(const uint8_t *pb, size_t len, uint8_t out[16]);

/* For tests: the key partition_*_by_resource_attributes gives a Resource. */
int export_kafka_resource_hash(const uint8_t *pb, size_t len, uint8_t out[16])
{
    if (pb == NULL && len > 0)
        return -EINVAL;
    return resource_hash(pb, len, out);
}

/* ---- building messages ---- */

static struct kafka_msg *slot_msg(struct kafka_slot *s)
{
    if (s->n_msgs == s->cap_msgs) {
        unsigned cap = s->cap_msgs ? s->cap_msgs * 2 : 16;
        struct kafka_msg *m = realloc(s->msgs, cap * sizeof(*m));
        if (m == NULL)
            return NULL;
        s->msgs = m;
        s->cap_msgs = cap;
    }
    struct kafka_msg *m = &s->msgs[s->n_msgs++];
    memset(m, 0, sizeof(*m));
    m->slot = s;
    return m;
}

/* Emit the message of positions [a, b) of the split's grouped order with
 * key `key`: protobuf straight into slot->out, or via k->pb as JSON; a JSON
 * message above the limit is halved until it fits (or holds a single item). */
static int emit(struct kafka_exp *k, struct kafka_slot *s, enum otlp_signal sig, size_t a, size_t b,
                const uint8_t *key, size_t key_len, bool has_key)
{
    size_t start = s->out.len;
    int rc;
    if (k->encoding == KAFKA_ENCODING_OTLP_PROTO) {
        if ((rc = otlp_split_write(k->split, a, b, &s->out)) < 0)
            return rc;
    } else {
        buf_reset(&k->pb);
        if ((rc = otlp_split_write(k->split, a, b, &k->pb)) < 0)
            return rc;
        if ((rc = otlp_proto_to_json(sig, k->pb.data, k->pb.len, &s->out)) < 0)
            return rc == -EINVAL ? -EINVAL : -ENOMEM;
        if (s->out.len - start > k->max_payload && b - a > 1) {
            s->out.len = start;
            size_t mid = a + (b - a) / 2;
            if ((rc = emit(k, s, sig, a, mid, key, key_len, has_key)) < 0)
                return rc;
            return emit(k, s, sig, mid, b, key, key_len, has_key);
        }
    }
    struct kafka_msg *m = slot_msg(s);
    if (m == NULL)
        return -ENOMEM;
    m->off = start;
    m->len = s->out.len - start;
    m->items = otlp_split_items(k->split, a, b);
    m->has_key = has_key;
    m->key_len = (uint8_t)key_len;
    if (key_len > 0)
        memcpy(m->key, key, key_len);
    return 0;
}

/* Pack positions [a, b) into messages of at most max_payload bytes. */
static int pack_group(struct kafka_exp *k, struct kafka_slot *s, enum otlp_signal sig, size_t a,
                      size_t b, const uint8_t *key, size_t key_len, bool has_key)
{
    while (a < b) {
        size_t e = otlp_split_fit(k->split, a, b, k->max_payload);
        int rc = emit(k, s, sig, a, e, key, key_len, has_key);
        if (rc < 0)
            return rc;
        a = e;
    }
    return 0;
}

/* The collector's resource hash of every resource entry of the split, into
 * k->res_keys. Returns 0, -ENOMEM, -EINVAL. */
static int hash_resources(struct kafka_exp *k)
{
    size_t n = otlp_split_n_resources(k->split);
    if (n > k->res_keys_cap) {
        size_t cap = BASE_MAX(n, 2 * k->res_keys_cap);
        uint8_t(*keys)[16] = realloc(k->res_keys, cap * sizeof(*keys));
        if (keys == NULL)
            return -ENOMEM;
        k->res_keys = keys;
        k->res_keys_cap = cap;
    }
    for (size_t r = 0; r < n; r++) {
        const uint8_t *pb;
        size_t len;
        otlp_split_resource(k->split, r, &pb, &len);
        int rc = resource_hash(pb, len, k->res_keys[r]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static void hex16(const uint8_t id[16], uint8_t out[32])
{
    static const char digits[] = "0123456789abcdef";
    for (unsigned i = 0; i < 16; i++) {
        out[2 * i] = (uint8_t)digits[id[i] >> 4];
        out[2 * i + 1] = (uint8_t)digits[id[i] & 15];
    }
}

/*
 * Turn batch `b` into slot->msgs. Returns 0; -EINVAL (the body is not a
 * valid request; reported as encode_error); -ENOMEM.
 */
static int build_messages(struct kafka_exp *k, struct kafka_slot *s, struct batch *b)
{
    enum otlp_signal sig = b->signal;
    const uint8_t *body = b->body.data;
    size_t len = b->body.len;
    bool part = k->partition[sig];
    /* The usual case: the batch as it is, no copy. */
    if (!part && k->encoding == KAFKA_ENCODING_OTLP_PROTO && len <= k->max_payload) {
        struct kafka_msg *m = slot_msg(s);
        if (m == NULL)
            return -ENOMEM;
        static const uint8_t empty[1];
        m->payload = body != NULL ? body : empty;
        m->len = len;
        m->items = b->items;
        return 0;
    }
    enum otlp_split_by by = !part                ? OTLP_SPLIT_ALL
                            : sig == OTLP_TRACES ? OTLP_SPLIT_TRACE_ID
                                                 : OTLP_SPLIT_RESOURCE_KEY;
    int rc = otlp_split_parse(k->split, sig, body, len);
    if (rc < 0)
        return rc;
    if (by == OTLP_SPLIT_RESOURCE_KEY && (rc = hash_resources(k)) < 0)
        return rc;
    if ((rc = otlp_split_group(k->split, by, (const uint8_t(*)[16])k->res_keys)) < 0)
        return rc;
    for (uint32_t g = 0; g < otlp_split_n_groups(k->split); g++) {
        uint8_t key[KAFKA_KEY_MAX];
        size_t key_len = 0, first, end;
        const uint8_t *id;
        otlp_split_group_at(k->split, g, &first, &end, &id);
        if (by == OTLP_SPLIT_TRACE_ID) {
            /* traceutil.TraceIDToHexOrEmptyString: "" for the all-zero id */
            static const uint8_t zero[16];
            if (memcmp(id, zero, 16) != 0) {
                hex16(id, key);
                key_len = 32;
            }
        } else if (by == OTLP_SPLIT_RESOURCE_KEY) {
            memcpy(key, id, 16);
            key_len = 16;
        }
        if ((rc = pack_group(k, s, sig, first, end, key, key_len, part)) < 0)
            return rc;
    }
    for (unsigned i = 0; i < s->n_msgs; i++)
        s->msgs[i].payload = s->out.data + s->msgs[i].off;
    return 0;
}

/* ---- producing ---- */

static void fail_msg(struct kafka_exp *k, struct kafka_slot *s, struct kafka_msg *m,
                     rd_kafka_resp_err_t err)
{
    k->n_failed++;
    cell_set(&k->failed, (double)k->n_failed);
    if (err_permanent(err)) {
        s->n_failed++;
        s->rejected_items += m->items;
        if (s->perm_err == RD_KAFKA_RESP_ERR_NO_ERROR)
            s->perm_err = err;
    } else if (s->retry_err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        s->retry_err = err;
    }
}

/*
 * Produce the slot's messages from s->next on. Stops (blocked) when the
 * producer queue is full; a permanent refusal of the topic or a fatal
 * producer fails the rest; a message refused as too large fails alone.
 */
static void produce_slot(struct kafka_exp *k, struct kafka_slot *s)
{
    rd_kafka_topic_t *t = k->topics[s->b->signal];
    s->blocked = false;
    while (s->next < s->n_msgs) {
        struct kafka_msg *m = &s->msgs[s->next];
        if (k->fatal && s->retry_err == RD_KAFKA_RESP_ERR_NO_ERROR)
            s->retry_err = RD_KAFKA_RESP_ERR__FATAL; /* the producer is re-created */
        if (s->retry_err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            /* a retry produces the whole batch again: no point going on */
            s->next = s->n_msgs;
            break;
        }
        int rc = rd_kafka_produce(t, RD_KAFKA_PARTITION_UA, 0, (void *)m->payload, m->len,
                                  m->has_key ? m->key : NULL, m->key_len, m);
        if (rc == 0) {
            s->next++;
            s->outstanding++;
            k->n_produced++;
            cell_set(&k->produced, (double)k->n_produced);
            continue;
        }
        rd_kafka_resp_err_t err = rd_kafka_last_error();
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            s->blocked = true;
            return;
        }
        fail_msg(k, s, m, err);
        s->next++;
        if (err == RD_KAFKA_RESP_ERR__FATAL)
            k->fatal = true;
        if (err != RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
            /* the topic or the producer refuses everything: fail the rest */
            for (; s->next < s->n_msgs; s->next++)
                fail_msg(k, s, &s->msgs[s->next], err);
        }
    }
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *km, void *opaque)
{
    (void)rk;
    struct kafka_exp *k = opaque;
    struct kafka_msg *m = km->_private;
    if (m == NULL || m->slot == NULL || m->slot->outstanding == 0)
        return;
    struct kafka_slot *s = m->slot;
    s->outstanding--;
    if (km->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        k->n_delivered++;
        cell_set(&k->delivered, (double)k->n_delivered);
        return;
    }
    fail_msg(k, s, m, km->err);
}

/* ---- librdkafka callbacks served from poll() ---- */

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct kafka_exp *k = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, why, sizeof(why));
        log_error("kafka producer fatal error, re-creating the producer", "error=%s reason=%s",
                  rd_kafka_err2name(orig), why);
        k->fatal = true;
        return;
    }
    if (log_ratelimit(&k->rl_err, 5000, 3))
        log_warn("kafka client error", "error=%s reason=%s suppressed=%u",
                 rd_kafka_err2name((rd_kafka_resp_err_t)err), reason, k->rl_err.suppressed);
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    struct kafka_exp *k = rd_kafka_opaque(rk);
    /* syslog levels: 0-3 error, 4 warning, 5-6 info, 7 debug. A broker that
     * is down makes librdkafka log every reconnect: keep a few. */
    if (level <= 4 && k != NULL && !log_ratelimit(&k->rl_log, 5000, 5))
        return;
    if (level <= 3)
        log_error("librdkafka", "facility=%s message=%s", fac, buf);
    else if (level == 4)
        log_warn("librdkafka", "facility=%s message=%s", fac, buf);
    else if (level <= 6)
        log_info("librdkafka", "facility=%s message=%s", fac, buf);
    else
        log_debug("librdkafka", "facility=%s message=%s", fac, buf);
}

static double json_num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : 0.0;
}

/* Label values are host names and ids: escape \ and " anyway. */
static void label_escape(const char *s, char *out, size_t n)
{
    size_t k = 0;
    for (; *s && k + 3 < n; s++) {
        if (*s == '\\' || *s == '"')
            out[k++] = '\\';
        out[k++] = (*s == '\n') ? ' ' : *s;
    }
    out[k] = '\0';
}

static int broker_register(struct kafka_exp *k, struct kafka_broker *br)
{
    char esc[256], label[320];
    label_escape(br->nodename, esc, sizeof(esc));
    snprintf(label, sizeof(label), "broker=\"%s\",node_id=\"%" PRId32 "\"", esc, br->nodeid);
    struct {
        bool counter;
        const char *name, *help;
        struct kafka_cell *cell;
    } series[] = {
        {false, "otlp_kafka_broker_rtt_avg_seconds",
         "Average request round-trip time to the broker (librdkafka statistics).", &br->rtt_avg_s},
        {false, "otlp_kafka_broker_rtt_p99_seconds", "99th percentile of the round-trip time.",
         &br->rtt_p99_s},
        {false, "otlp_kafka_broker_outbuf_messages", "Messages waiting to be sent to the broker.",
         &br->outbuf_msgs},
        {false, "otlp_kafka_broker_waitresp_messages",
         "Messages sent to the broker, awaiting its response.", &br->waitresp_msgs},
        {false, "otlp_kafka_broker_up", "1 while the connection to the broker is up.", &br->up},
        {true, "otlp_kafka_broker_tx_errors_total", "Failed requests to the broker.",
         &br->tx_errors},
        {true, "otlp_kafka_broker_tx_retries_total", "Requests to the broker sent again.",
         &br->tx_retries},
        {true, "otlp_kafka_broker_request_timeouts_total", "Requests to the broker timed out.",
         &br->req_timeouts},
        {true, "otlp_kafka_broker_connects_total", "Connections made to the broker.",
         &br->connects},
    };
    for (size_t i = 0; i < ARRAY_SIZE(series); i++) {
        int rc = series[i].counter
                     ? obs_counter_func_register(k->reg, series[i].name, series[i].help, label,
                                                 cell_read, series[i].cell)
                     : obs_gauge_func_register(k->reg, series[i].name, series[i].help, label,
                                               cell_read, series[i].cell);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static struct kafka_broker *broker_get(struct kafka_exp *k, int32_t nodeid, const char *nodename)
{
    for (unsigned i = 0; i < k->n_brokers; i++) {
        if (k->brokers[i].nodeid == nodeid && strcmp(k->brokers[i].nodename, nodename) == 0)
            return &k->brokers[i];
    }
    if (k->n_brokers == KAFKA_MAX_BROKERS) {
        if (!k->brokers_full_logged)
            log_warn("kafka: more brokers than metric series, the rest not shown", "max=%d",
                     KAFKA_MAX_BROKERS);
        k->brokers_full_logged = true;
        return NULL;
    }
    struct kafka_broker *br = &k->brokers[k->n_brokers];
    br->nodeid = nodeid;
    snprintf(br->nodename, sizeof(br->nodename), "%s", nodename);
    if (k->reg != NULL && broker_register(k, br) < 0) {
        log_warn("kafka: broker metrics not registered", "broker=%s", nodename);
        return NULL;
    }
    k->n_brokers++;
    return br;
}

/* librdkafka's statistics (statistics.interval.ms): the producer queue and
 * each broker with a node id (bootstrap and internal entries are left out). */
static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    (void)rk;
    struct kafka_exp *k = opaque;
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    if (root == NULL)
        return 0;
    cell_set(&k->queue_msgs, json_num(root, "msg_cnt"));
    cell_set(&k->queue_bytes, json_num(root, "msg_size"));
    json_t *brokers = json_object_get(root, "brokers");
    const char *name;
    json_t *b;
    json_object_foreach(brokers, name, b)
    {
        json_t *id = json_object_get(b, "nodeid");
        json_t *nn = json_object_get(b, "nodename");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || !json_is_string(nn))
            continue;
        struct kafka_broker *br =
            broker_get(k, (int32_t)json_integer_value(id), json_string_value(nn));
        if (br == NULL)
            continue;
        json_t *rtt = json_object_get(b, "rtt");
        cell_set(&br->rtt_avg_s, json_num(rtt, "avg") / 1e6); /* microseconds */
        cell_set(&br->rtt_p99_s, json_num(rtt, "p99") / 1e6);
        cell_set(&br->outbuf_msgs, json_num(b, "outbuf_msg_cnt"));
        cell_set(&br->waitresp_msgs, json_num(b, "waitresp_msg_cnt"));
        json_t *st = json_object_get(b, "state");
        cell_set(&br->up, json_is_string(st) && strcmp(json_string_value(st), "UP") == 0);
        static const char *const keys[4] = {"txerrs", "txretries", "req_timeouts", "connects"};
        struct kafka_cell *cells[4] = {&br->tx_errors, &br->tx_retries, &br->req_timeouts,
                                       &br->connects};
        for (unsigned i = 0; i < 4; i++) {
            br->last[i] = json_num(b, keys[i]);
            cell_set(cells[i], br->base[i] + br->last[i]);
        }
    }
    json_decref(root);
    return 0; /* librdkafka frees json */
}

/* ---- the producer ---- */

static void producer_destroy(struct kafka_exp *k)
{
    if (k->rk == NULL)
        return;
    rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    for (unsigned s = 0; s < OTLP_SIGNAL_COUNT; s++) {
        if (k->topics[s] != NULL)
            rd_kafka_topic_destroy(k->topics[s]);
        k->topics[s] = NULL;
    }
    rd_kafka_destroy(k->rk);
    k->rk = NULL;
    /* counters of the next instance start from zero */
    for (unsigned i = 0; i < k->n_brokers; i++) {
        for (unsigned j = 0; j < 4; j++) {
            k->brokers[i].base[j] += k->brokers[i].last[j];
            k->brokers[i].last[j] = 0;
        }
    }
}

static int producer_create(struct kafka_exp *k)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_dup(k->conf_template);
    if (conf == NULL)
        return -ENOMEM;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        log_error("kafka: cannot create the producer", "error=%s", errstr);
        return -EINVAL;
    }
    k->rk = rk;
    rd_kafka_set_log_queue(rk, NULL); /* logs reach us through poll() */
    rd_kafka_queue_t *mq = rd_kafka_queue_get_main(rk);
    static const uint64_t one = 1;
    rd_kafka_queue_io_event_enable(mq, k->efd, &one, sizeof(one));
    rd_kafka_queue_destroy(mq);
    for (unsigned s = 0; s < OTLP_SIGNAL_COUNT; s++) {
        k->topics[s] = rd_kafka_topic_new(rk, k->topic_names[s], NULL);
        if (k->topics[s] == NULL) {
            log_error("kafka: cannot create a topic handle", "topic=%s error=%s", k->topic_names[s],
                      rd_kafka_err2str(rd_kafka_last_error()));
            return -EINVAL;
        }
    }
    k->fatal = false;
    return 0;
}

/* After a fatal error (idempotence could not be kept): fail what is queued
 * (retriable, delivery reports follow), and once nothing is outstanding
 * start a new producer instance. */
static void recover_fatal(struct kafka_exp *k)
{
    rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT |
                              RD_KAFKA_PURGE_F_NON_BLOCKING);
    rd_kafka_poll(k->rk, 0);
    for (unsigned i = 0; i < k->n_slots; i++) {
        struct kafka_slot *s = &k->slots[i];
        if (s->b != NULL && s->outstanding > 0)
            return;
    }
    producer_destroy(k);
    if (producer_create(k) < 0) {
        producer_destroy(k);
        k->fatal = true; /* try again next poll */
    }
}

/* ---- ops ---- */

static void slot_reset(struct kafka_slot *s)
{
    s->b = NULL;
    buf_reset(&s->out);
    s->n_msgs = s->next = s->outstanding = s->n_failed = 0;
    s->rejected_items = 0;
    s->retry_err = s->perm_err = RD_KAFKA_RESP_ERR_NO_ERROR;
    s->encode_error = s->blocked = false;
}

static int kafka_submit(void *state, struct batch *b)
{
    struct kafka_exp *k = state;
    if (b == NULL || (unsigned)b->signal >= OTLP_SIGNAL_COUNT)
        return -EINVAL;
    struct kafka_slot *s = NULL;
    for (unsigned i = 0; i < k->n_slots; i++) {
        if (k->slots[i].b == NULL) {
            s = &k->slots[i];
            break;
        }
    }
    if (s == NULL)
        return -EBUSY;
    slot_reset(s);
    int rc = build_messages(k, s, b);
    if (rc == -ENOMEM) {
        slot_reset(s);
        return -ENOMEM;
    }
    s->b = b;
    if (rc < 0) {
        s->encode_error = true; /* reported by the next poll() */
        s->next = s->n_msgs;
        return 0;
    }
    if (k->rk != NULL && !k->fatal) {
        produce_slot(k, s);
    } else {
        s->retry_err = RD_KAFKA_RESP_ERR__FATAL; /* re-created by the next poll() */
        s->next = s->n_msgs;
    }
    return 0;
}

static bool slot_finished(const struct kafka_slot *s)
{
    return s->b != NULL && s->next >= s->n_msgs && s->outstanding == 0;
}

static void slot_result(struct kafka_exp *k, struct kafka_slot *s, struct export_result *r)
{
    const char *topic = k->topic_names[s->b->signal];
    if (s->encode_error) {
        r->status = EXPORT_PERMANENT;
        snprintf(r->reason, sizeof(r->reason), "encode_error");
        snprintf(r->message, sizeof(r->message), "batch is not a valid %s request",
                 otlp_signal_names[s->b->signal]);
        return;
    }
    if (s->retry_err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        r->status = EXPORT_RETRYABLE;
        err_reason(s->retry_err, r->reason, sizeof(r->reason));
        snprintf(r->message, sizeof(r->message), "topic %s: %s", topic,
                 rd_kafka_err2str(s->retry_err));
        return;
    }
    if (s->n_failed > 0 && s->n_failed == s->n_msgs) {
        r->status = EXPORT_PERMANENT;
        err_reason(s->perm_err, r->reason, sizeof(r->reason));
        snprintf(r->message, sizeof(r->message), "topic %s: %s", topic,
                 rd_kafka_err2str(s->perm_err));
        return;
    }
    r->status = EXPORT_OK;
    if (s->n_failed > 0) {
        /* some messages were delivered: the others' items are rejected */
        r->rejected_items = BASE_MIN(s->rejected_items, s->b->items);
        snprintf(r->reason, sizeof(r->reason), "partial_success");
        char why[48];
        err_reason(s->perm_err, why, sizeof(why));
        snprintf(r->message, sizeof(r->message), "topic %s: %u of %u messages failed: %s (%s)",
                 topic, s->n_failed, s->n_msgs, rd_kafka_err2str(s->perm_err), why);
    }
}

/* Produce what waits, serve librdkafka's queue, report finished batches. */
static int service(struct kafka_exp *k, export_done_fn done, void *arg)
{
    if (k->rk != NULL && k->fatal)
        recover_fatal(k);
    else if (k->rk == NULL && producer_create(k) < 0)
        producer_destroy(k);
    for (unsigned i = 0; i < k->n_slots; i++) {
        struct kafka_slot *s = &k->slots[i];
        if (s->b != NULL && s->next < s->n_msgs) {
            if (k->rk == NULL || k->fatal) {
                s->next = s->n_msgs;
                if (s->retry_err == RD_KAFKA_RESP_ERR_NO_ERROR)
                    s->retry_err = RD_KAFKA_RESP_ERR__FATAL;
            } else {
                produce_slot(k, s);
            }
        }
    }
    if (k->rk != NULL) {
        /* until the queue is empty, so its io event fires on the next op */
        for (int i = 0; i < 64 && rd_kafka_poll(k->rk, 0) > 0; i++)
            ;
    }
    unsigned n = 0;
    for (unsigned i = 0; i < k->n_slots; i++) {
        struct kafka_slot *s = &k->slots[i];
        if (s->b != NULL && s->blocked && k->rk != NULL && !k->fatal)
            produce_slot(k, s);
        if (slot_finished(s))
            k->finished[n++] = s;
    }
    for (unsigned i = 0; i < n; i++) {
        struct kafka_slot *s = k->finished[i];
        struct export_result r = {0};
        slot_result(k, s, &r);
        if (r.status != EXPORT_OK && log_ratelimit(&k->rl_fail, 1000, 5))
            log_debug("kafka batch failed", "reason=%s message=%s", r.reason, r.message);
        struct batch *b = s->b;
        slot_reset(s);
        done(arg, b, &r);
    }
    return (int)n;
}

static int kafka_poll(void *state, int timeout_ms, export_done_fn done, void *arg)
{
    struct kafka_exp *k = state;
    int n = service(k, done, arg);
    if (n > 0 || timeout_ms <= 0)
        return n;
    struct pollfd pfd = {.fd = k->efd, .events = POLLIN};
    int pr = poll(&pfd, 1, timeout_ms);
    if (pr < 0 && errno != EINTR)
        return -errno;
    if (pr > 0) {
        uint64_t v;
        if (read(k->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
            return -errno;
    }
    return service(k, done, arg);
}

static void kafka_wakeup(void *state)
{
    struct kafka_exp *k = state;
    uint64_t one = 1;
    ssize_t w = write(k->efd, &one, sizeof(one));
    (void)w; /* EAGAIN: the counter is already non-zero, a wakeup is pending */
}

static int kafka_register_metrics(void *state, struct obs_registry *reg)
{
    struct kafka_exp *k = state;
    struct {
        bool counter;
        const char *name, *help;
        struct kafka_cell *cell;
    } series[] = {
        {true, "otlp_kafka_messages_produced_total",
         "Kafka messages handed to the producer (a batch is one or more).", &k->produced},
        {true, "otlp_kafka_messages_delivered_total",
         "Kafka messages whose delivery report succeeded (acks=all).", &k->delivered},
        {true, "otlp_kafka_messages_failed_total",
         "Kafka messages that failed (retriable or not; see otlp_export_requests_total).",
         &k->failed},
        {false, "otlp_kafka_producer_queue_messages",
         "Messages in the producer's queues, not yet delivered (librdkafka statistics).",
         &k->queue_msgs},
        {false, "otlp_kafka_producer_queue_bytes", "Bytes of those messages.", &k->queue_bytes},
    };
    for (size_t i = 0; i < ARRAY_SIZE(series); i++) {
        int rc = series[i].counter ? obs_counter_func_register(reg, series[i].name, series[i].help,
                                                               NULL, cell_read, series[i].cell)
                                   : obs_gauge_func_register(reg, series[i].name, series[i].help,
                                                             NULL, cell_read, series[i].cell);
        if (rc < 0)
            return rc;
    }
    k->reg = reg;
    return 0;
}

static void kafka_destroy(void *state)
{
    struct kafka_exp *k = state;
    if (k == NULL)
        return;
    /* the producer first: it may still hold pointers into the slots */
    producer_destroy(k);
    if (k->conf_template != NULL)
        rd_kafka_conf_destroy(k->conf_template);
    for (unsigned i = 0; k->slots != NULL && i < k->n_slots; i++) {
        buf_free(&k->slots[i].out);
        free(k->slots[i].msgs);
    }
    free(k->slots);
    free(k->finished);
    otlp_split_destroy(k->split);
    free(k->res_keys);
    buf_free(&k->pb);
    for (unsigned s = 0; s < OTLP_SIGNAL_COUNT; s++)
        free(k->topic_names[s]);
    if (k->efd >= 0)
        close(k->efd);
    free(k);
}

static const struct exporter_ops kafka_ops = {
    .name = "kafka",
    .submit = kafka_submit,
    .poll = kafka_poll,
    .wakeup = kafka_wakeup,
    .destroy = kafka_destroy,
    .register_metrics = kafka_register_metrics,
};

/* librdkafka properties this exporter sets itself from exporter.kafka and
 * exporter.timeout_ms; exporter.kafka.properties may override them, with a
 * warning. */
static const char *const managed_props[] = {
    "bootstrap.servers",    "client.id",        "enable.idempotence",     "acks",
    "compression.codec",    "compression.type", "message.max.bytes",      "message.timeout.ms",
    "socket.timeout.ms",    "partitioner",      "statistics.interval.ms", "log.queue",
    "log.connection.close",
};

static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, bool secret)
{
    char errstr[512];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        log_error("kafka: librdkafka refused a property", "property=%s value=%s error=%s", name,
                  secret ? "<redacted>" : value, errstr);
        return -EINVAL;
    }
    return 0;
}

static int build_conf(struct kafka_exp *k, const struct svc_config *cfg)
{
    const struct kafka_exporter_config *kc = &cfg->exporter.kafka;
    static const char *const codecs[] = {
        [KAFKA_COMPRESSION_NONE] = "none",     [KAFKA_COMPRESSION_GZIP] = "gzip",
        [KAFKA_COMPRESSION_SNAPPY] = "snappy", [KAFKA_COMPRESSION_LZ4] = "lz4",
        [KAFKA_COMPRESSION_ZSTD] = "zstd",
    };
    if ((unsigned)kc->compression >= ARRAY_SIZE(codecs))
        return -EINVAL;
    char max_bytes[24], timeout[24], stats[24];
    snprintf(max_bytes, sizeof(max_bytes), "%" PRIu32, kc->max_message_bytes);
    snprintf(timeout, sizeof(timeout), "%" PRIu32, cfg->exporter.timeout_ms);
    snprintf(stats, sizeof(stats), "%" PRIu32, kc->statistics_interval_ms);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (conf == NULL)
        return -ENOMEM;
    k->conf_template = conf;
    const char *set[][2] = {
        {"bootstrap.servers", kc->brokers},
        {"client.id", kc->client_id},
        /* no duplicates or reordering from librdkafka's own retries */
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"compression.codec", codecs[kc->compression]},
        {"message.max.bytes", max_bytes},
        /* one attempt of a batch: its messages are reported failed after this */
        {"message.timeout.ms", timeout},
        /* a broker that stops answering fails requests in flight in time too
         * (librdkafka's default waits 60 s) */
        {"socket.timeout.ms", timeout},
        /* Sarama-compatible FNV-1a: the Collector's default partitioner */
        {"partitioner", "fnv1a_random"},
        {"statistics.interval.ms", stats},
        {"log.queue", "true"},
        {"log.connection.close", "false"}, /* brokers close idle connections */
        {"socket.nagle.disable", "true"},
        /* A batch's messages are produced in one go: lingering longer only
         * holds the delivery reports the runner's export slots wait for
         * (linger.ms 5, librdkafka's default, cost 10x in spans/s against
         * the mock cluster). */
        {"linger.ms", "1"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(set); i++) {
        if (conf_set(conf, set[i][0], set[i][1], false) < 0)
            return -EINVAL;
    }
    for (unsigned i = 0; i < kc->properties.n; i++) {
        const struct config_kv *kv = &kc->properties.items[i];
        if (kv->key == NULL)
            continue;
        for (size_t j = 0; j < ARRAY_SIZE(managed_props); j++) {
            if (strcmp(kv->key, managed_props[j]) == 0)
                log_warn("kafka: exporter.kafka.properties overrides a setting of the exporter",
                         "property=%s", kv->key);
        }
        if (conf_set(conf, kv->key, kv->value ? kv->value : "", true) < 0)
            return -EINVAL;
    }
    /* the message size the splitter aims at, after any override */
    char buf[32];
    size_t n = sizeof(buf);
    unsigned long mmb = kc->max_message_bytes;
    if (rd_kafka_conf_get(conf, "message.max.bytes", buf, &n) == RD_KAFKA_CONF_OK)
        mmb = strtoul(buf, NULL, 10);
    k->max_payload = mmb > 2 * KAFKA_MSG_OVERHEAD ? mmb - KAFKA_MSG_OVERHEAD : mmb / 2;
    rd_kafka_conf_set_opaque(conf, k);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_log);
    if (kc->statistics_interval_ms > 0)
        rd_kafka_conf_set_stats_cb(conf, on_stats);
    return 0;
}

int export_kafka_create(const struct svc_config *cfg, struct exporter *out)
{
    if (cfg == NULL || out == NULL)
        return -EINVAL;
    const struct kafka_exporter_config *kc = &cfg->exporter.kafka;
    const char *topics[OTLP_SIGNAL_COUNT] = {
        [OTLP_TRACES] = kc->traces_topic,
        [OTLP_METRICS] = kc->metrics_topic,
        [OTLP_LOGS] = kc->logs_topic,
    };
    if (kc->brokers == NULL || *kc->brokers == '\0') {
        log_error("exporter.kafka.brokers is required for kafka", "");
        return -EINVAL;
    }
    int rc = -ENOMEM;
    struct kafka_exp *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return -ENOMEM;
    k->efd = -1;
    k->encoding = kc->encoding;
    k->partition[OTLP_TRACES] = kc->partition_traces_by_id;
    k->partition[OTLP_METRICS] = kc->partition_metrics_by_resource_attributes;
    k->partition[OTLP_LOGS] = kc->partition_logs_by_resource_attributes;
    for (unsigned s = 0; s < OTLP_SIGNAL_COUNT; s++) {
        if (topics[s] == NULL || *topics[s] == '\0') {
            log_error("exporter.kafka: a topic is empty", "signal=%s", otlp_signal_names[s]);
            rc = -EINVAL;
            goto fail;
        }
        if ((k->topic_names[s] = strdup(topics[s])) == NULL)
            goto fail;
    }
    k->n_slots = BASE_MAX(cfg->batch.max_concurrent_exports, 1u);
    k->slots = calloc(k->n_slots, sizeof(*k->slots));
    k->finished = calloc(k->n_slots, sizeof(*k->finished));
    if (k->slots == NULL || k->finished == NULL || buf_init(&k->pb, 0, 0) < 0 ||
        otlp_split_create(&k->split) < 0)
        goto fail;
    for (unsigned i = 0; i < k->n_slots; i++) {
        if (buf_init(&k->slots[i].out, 0, 0) < 0)
            goto fail;
    }
    k->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (k->efd < 0) {
        rc = -errno;
        goto fail;
    }
    if ((rc = build_conf(k, cfg)) < 0 || (rc = producer_create(k)) < 0)
        goto fail;
    static const char *const codec_names[] = {"none", "gzip", "snappy", "lz4", "zstd"};
    char features[256];
    size_t fl = sizeof(features);
    if (rd_kafka_conf_get(k->conf_template, "builtin.features", features, &fl) != RD_KAFKA_CONF_OK)
        features[0] = '\0';
    log_info("kafka exporter ready",
             "brokers=%s topics=%s,%s,%s encoding=%s compression=%s partition_traces_by_id=%s "
             "max_message_bytes=%" PRIu32 " concurrency=%u librdkafka=%s features=%s",
             kc->brokers, topics[0], topics[1], topics[2],
             kc->encoding == KAFKA_ENCODING_OTLP_JSON ? "otlp_json" : "otlp_proto",
             codec_names[kc->compression], kc->partition_traces_by_id ? "true" : "false",
             kc->max_message_bytes, k->n_slots, rd_kafka_version_str(), features);
    out->ops = &kafka_ops;
    out->state = k;
    return 0;
fail:
    kafka_destroy(k);
    return rc;
}
