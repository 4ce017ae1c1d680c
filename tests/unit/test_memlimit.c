/* SPDX-License-Identifier: Apache-2.0 */
/* lib/memlimit: limits from the config, the ok/soft/hard state machine with
 * its hysteresis, per-worker reservations against the hard limit, and the
 * measured RSS. Measurements are fed by a fake source. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "memlimit/memlimit.h"
#include "obs/metrics.h"

#define MIB (1024ull * 1024ull)

static uint64_t fake_used;

static uint64_t fake_measure(void *arg)
{
    (void)arg;
    return fake_used;
}

static void test_limits_from_config(void **state)
{
    (void)state;
    struct memlimit_limits l;
    struct memory_limiter_config c = {
        .limit_mib = 1000, .spike_limit_mib = 200, .check_interval_ms = 50};
    assert_int_equal(memlimit_limits_from_config(&c, 0, &l), 0);
    assert_true(l.hard_bytes == 1000 * MIB);
    assert_true(l.soft_bytes == 800 * MIB);
    assert_int_equal(l.check_interval_ms, 50);
    /* spike 0: 20% of the limit */
    c.spike_limit_mib = 0;
    assert_int_equal(memlimit_limits_from_config(&c, 0, &l), 0);
    assert_true(l.soft_bytes == l.hard_bytes - l.hard_bytes / 5);
    /* limit 0: 80% of the cgroup's limit, or off */
    c.limit_mib = 0;
    assert_int_equal(memlimit_limits_from_config(&c, 0, &l), 0);
    assert_true(l.hard_bytes == 0);
    assert_int_equal(memlimit_limits_from_config(&c, 1000 * MIB, &l), 0);
    assert_true(l.hard_bytes == 800 * MIB);
    assert_true(l.soft_bytes == 640 * MIB);
    /* the spike must stay below the limit */
    c.limit_mib = 100;
    c.spike_limit_mib = 100;
    assert_int_equal(memlimit_limits_from_config(&c, 0, &l), -EINVAL);
}

static void test_state_machine(void **state)
{
    (void)state;
    struct memlimit_limits l = {.hard_bytes = 1600, .soft_bytes = 1000}; /* spike 600 */
    assert_int_equal(memlimit_next_state(MEMLIMIT_OK, 0, &l), MEMLIMIT_OK);
    assert_int_equal(memlimit_next_state(MEMLIMIT_OK, 999, &l), MEMLIMIT_OK);
    assert_int_equal(memlimit_next_state(MEMLIMIT_OK, 1000, &l), MEMLIMIT_SOFT);
    assert_int_equal(memlimit_next_state(MEMLIMIT_OK, 1599, &l), MEMLIMIT_SOFT);
    assert_int_equal(memlimit_next_state(MEMLIMIT_OK, 1600, &l), MEMLIMIT_HARD);
    assert_int_equal(memlimit_next_state(MEMLIMIT_SOFT, 5000, &l), MEMLIMIT_HARD);
    /* down from hard: soft until below soft minus the hysteresis (600/16) */
    assert_int_equal(memlimit_next_state(MEMLIMIT_HARD, 1200, &l), MEMLIMIT_SOFT);
    assert_int_equal(memlimit_next_state(MEMLIMIT_HARD, 990, &l), MEMLIMIT_SOFT);
    assert_int_equal(memlimit_next_state(MEMLIMIT_SOFT, 970, &l), MEMLIMIT_SOFT);
    assert_int_equal(memlimit_next_state(MEMLIMIT_SOFT, 962, &l), MEMLIMIT_OK);
    assert_int_equal(memlimit_next_state(MEMLIMIT_HARD, 100, &l), MEMLIMIT_OK);
    /* off */
    struct memlimit_limits off = {0};
    assert_int_equal(memlimit_next_state(MEMLIMIT_HARD, UINT64_MAX, &off), MEMLIMIT_OK);
}

static void test_check_and_reserve(void **state)
{
    (void)state;
    struct obs_registry *reg;
    assert_int_equal(obs_registry_create(4, 1024, &reg), 0);
    struct memlimit_limits l = {.hard_bytes = 1000, .soft_bytes = 800, .check_interval_ms = 10};
    struct memlimit *ml;
    fake_used = 200;
    assert_int_equal(memlimit_create(&l, 2, reg, fake_measure, NULL, &ml), 0);
    assert_int_equal(memlimit_state(ml), MEMLIMIT_OK);
    /* 800 left below the hard limit, 400 per worker */
    assert_true(memlimit_headroom(ml, 0) == 400);
    assert_int_equal(memlimit_reserve(ml, 0, 300), 0);
    assert_int_equal(memlimit_reserve(ml, 0, 101), -ENOMEM);
    assert_int_equal(memlimit_reserve(ml, 0, 100), 0);
    assert_true(memlimit_headroom(ml, 0) == 0);
    assert_true(memlimit_headroom(ml, 1) == 400); /* the other worker's share is its own */
    memlimit_release(ml, 0, 400);
    assert_true(memlimit_headroom(ml, 0) == 400);

    /* account: grow refuses past the allowance and keeps *held */
    uint64_t held = 0;
    assert_int_equal(memlimit_account(ml, 1, &held, 350), 0);
    assert_int_equal(memlimit_account(ml, 1, &held, 500), -ENOMEM);
    assert_true(held == 350);
    assert_int_equal(memlimit_account(ml, 1, &held, 0), 0);

    /* the memory grows: soft, then hard; allowances shrink to what is held */
    fake_used = 850;
    assert_int_equal(memlimit_check(ml), MEMLIMIT_SOFT);
    assert_int_equal(memlimit_state(ml), MEMLIMIT_SOFT);
    assert_true(memlimit_headroom(ml, 0) == 75);
    assert_int_equal(memlimit_reserve(ml, 1, 50), 0);
    fake_used = 1000;
    assert_int_equal(memlimit_check(ml), MEMLIMIT_HARD);
    assert_true(memlimit_headroom(ml, 0) == 0);
    assert_true(memlimit_headroom(ml, 1) == 0); /* keeps its 50, no more */
    assert_int_equal(memlimit_reserve(ml, 1, 1), -ENOMEM);
    memlimit_release(ml, 1, 50);
    fake_used = 100;
    assert_int_equal(memlimit_check(ml), MEMLIMIT_OK);

    /* limits replaced at run time (SIGHUP) apply at the next check */
    struct memlimit_limits l2 = {.hard_bytes = 100, .soft_bytes = 50, .check_interval_ms = 10};
    memlimit_set_limits(ml, &l2);
    assert_int_equal(memlimit_check(ml), MEMLIMIT_HARD);
    struct memlimit_limits off = {.check_interval_ms = 10};
    memlimit_set_limits(ml, &off);
    assert_int_equal(memlimit_check(ml), MEMLIMIT_OK);
    assert_true(memlimit_headroom(ml, 0) == UINT64_MAX);

    /* refusals and transitions reach /metrics */
    memlimit_count_refused(ml, 0, MEMLIMIT_PROTO_GRPC, 2);
    struct buf out = {0};
    assert_int_equal(obs_render_prometheus(reg, &out), 0);
    buf_append(&out, "", 1);
    const char *text = (const char *)out.data;
    assert_non_null(strstr(text, "otlp_memory_limiter_refused_total{protocol=\"grpc\","
                                 "signal=\"logs\"} 1"));
    assert_non_null(strstr(text, "otlp_memory_limiter_transitions_total{state=\"hard\"} 2"));
    assert_non_null(strstr(text, "otlp_memory_limiter_state 0"));
    buf_free(&out);
    memlimit_destroy(ml);
    memlimit_destroy(NULL);
    obs_registry_destroy(reg);
}

/* The measuring thread sees the memory change and publishes the state. */
static void test_thread(void **state)
{
    (void)state;
    struct memlimit_limits l = {.hard_bytes = 1000, .soft_bytes = 800, .check_interval_ms = 10};
    struct memlimit *ml;
    fake_used = 0;
    assert_int_equal(memlimit_create(&l, 1, NULL, fake_measure, NULL, &ml), 0);
    assert_int_equal(memlimit_start(ml), 0);
    fake_used = 900;
    for (int i = 0; i < 200 && memlimit_state(ml) != MEMLIMIT_SOFT; i++)
        usleep(5000);
    assert_int_equal(memlimit_state(ml), MEMLIMIT_SOFT);
    memlimit_stop(ml);
    memlimit_destroy(ml);
}

/* The real measurement: RSS from /proc/self/statm grows with touched memory. */
static void test_read_rss(void **state)
{
    (void)state;
    uint64_t before = memlimit_read_rss(-1);
    assert_true(before > 0);
    size_t n = 32 * MIB;
    char *p = malloc(n);
    assert_non_null(p);
    memset(p, 1, n);
    uint64_t after = memlimit_read_rss(-1);
    assert_true(after >= before + n / 2);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limits_from_config), cmocka_unit_test(test_state_machine),
        cmocka_unit_test(test_check_and_reserve),  cmocka_unit_test(test_thread),
        cmocka_unit_test(test_read_rss),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
