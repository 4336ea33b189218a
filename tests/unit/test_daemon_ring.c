/* Unit tests for the console scrollback ring (daemon/ring.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "daemon/ring.h"

/* Read everything from *pos into out (at most len); the count. */
static size_t drain(struct ring *r, uint64_t *pos, char *out, size_t len, uint64_t *skipped)
{
	size_t got = 0;
	const uint8_t *p;
	size_t n;

	*skipped = 0;
	for (;;) {
		*skipped += ring_peek(r, pos, &p, &n);
		if (n == 0 || got + n > len)
			break;
		memcpy(out + got, p, n);
		got += n;
		*pos += n;
	}
	return got;
}

static void test_size_rounds_up(void **state)
{
	struct ring r;

	(void)state;
	assert_int_equal(ring_init(&r, 1000), 0);
	assert_int_equal(r.size, 1024);
	ring_free(&r);
	assert_int_equal(ring_init(&r, RING_DEFAULT_SIZE), 0);
	assert_int_equal(r.size, 256 * 1024);
	ring_free(&r);
}

static void test_readers_follow(void **state)
{
	struct ring r;
	uint64_t a = 0, b, skipped;
	char out[64];

	(void)state;
	assert_int_equal(ring_init(&r, 16), 0);
	ring_write(&r, "hello ", 6);
	assert_int_equal(drain(&r, &a, out, sizeof(out), &skipped), 6);
	assert_memory_equal(out, "hello ", 6);
	b = ring_tail(&r); /* a new reader gets the scrollback */
	ring_write(&r, "world", 5);
	assert_int_equal(drain(&r, &a, out, sizeof(out), &skipped), 5);
	assert_memory_equal(out, "world", 5);
	assert_int_equal(drain(&r, &b, out, sizeof(out), &skipped), 11);
	assert_memory_equal(out, "hello world", 11);
	assert_int_equal(skipped, 0);
	assert_int_equal(drain(&r, &a, out, sizeof(out), &skipped), 0); /* up to date */
	ring_free(&r);
}

static void test_wrap_and_fall_behind(void **state)
{
	struct ring r;
	uint64_t slow = 0, skipped;
	char out[64];

	(void)state;
	assert_int_equal(ring_init(&r, 16), 0);
	ring_write(&r, "0123456789", 10);
	ring_write(&r, "abcdefghij", 10); /* wraps: 20 written, 16 held */
	assert_int_equal(ring_tail(&r), 4);
	assert_int_equal(drain(&r, &slow, out, sizeof(out), &skipped), 16);
	assert_int_equal(skipped, 4);
	assert_memory_equal(out, "456789abcdefghij", 16);
	/* one write larger than the ring keeps its newest bytes */
	ring_write(&r, "ABCDEFGHIJKLMNOPQRSTUVWXYZ", 26);
	assert_int_equal(r.head, 46);
	assert_int_equal(drain(&r, &slow, out, sizeof(out), &skipped), 16);
	assert_int_equal(skipped, 10);
	assert_memory_equal(out, "KLMNOPQRSTUVWXYZ", 16);
	/* a position from the future reads nothing */
	uint64_t future = 1000;
	const uint8_t *p;
	size_t n;
	ring_peek(&r, &future, &p, &n);
	assert_int_equal(n, 0);
	ring_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_size_rounds_up),
		cmocka_unit_test(test_readers_follow),
		cmocka_unit_test(test_wrap_and_fall_behind),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
