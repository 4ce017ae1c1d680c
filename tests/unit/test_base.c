/* SPDX-License-Identifier: Apache-2.0 */
/* Tests lib/base: the byte buffer, growing and on fixed external storage
 * (batch bodies allocated once at start). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/base.h"

static void test_buf_grows_to_limit(void **state)
{
    (void)state;
    struct buf b;
    assert_int_equal(buf_init(&b, 0, 1000), 0);
    assert_false(b.external);
    assert_int_equal(buf_reserve(&b, 600), 0);
    assert_true(b.cap >= 600 && b.cap <= 1000);
    assert_int_equal(buf_reserve(&b, 1000), 0);
    assert_int_equal(b.cap, 1000);
    assert_int_equal(buf_reserve(&b, 1001), -EMSGSIZE);
    buf_free(&b);
    assert_null(b.data);
}

static void test_buf_fixed_never_grows(void **state)
{
    (void)state;
    static uint8_t storage[128];
    struct buf b;
    buf_init_fixed(&b, storage, sizeof(storage));
    assert_true(b.external);
    assert_ptr_equal(b.data, storage);
    assert_int_equal(b.cap, sizeof(storage));
    assert_int_equal(buf_append(&b, "0123456789", 10), 0);
    assert_int_equal(buf_reserve(&b, 118), 0);
    assert_int_equal(buf_reserve(&b, 119), -EMSGSIZE);
    uint8_t big[200];
    memset(big, 'x', sizeof(big));
    assert_int_equal(buf_append(&b, big, sizeof(big)), -EMSGSIZE);
    assert_int_equal(b.len, 10); /* unchanged by the refused append */
    assert_int_equal(buf_printf(&b, "%0150d", 1), -EMSGSIZE);
    assert_int_equal(buf_append(&b, big, 118), 0);
    assert_int_equal(b.len, 128);
    assert_int_equal(buf_append(&b, "y", 1), -EMSGSIZE);
    /* Still the caller's storage after all of it. */
    assert_ptr_equal(b.data, storage);
    assert_int_equal(b.cap, sizeof(storage));
    assert_memory_equal(storage, "0123456789", 10);
    buf_consume(&b, 10);
    assert_int_equal(b.len, 118);
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    /* A limit raised by mistake does not make it grow either. */
    b.limit = 0;
    assert_int_equal(buf_reserve(&b, 129), -EMSGSIZE);
    /* buf_free leaves the storage alone (a static array: free() would abort). */
    buf_free(&b);
    assert_null(b.data);
    assert_false(b.external);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_grows_to_limit),
        cmocka_unit_test(test_buf_fixed_never_grows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
