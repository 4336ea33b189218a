/* Unit tests for the state buffer: round trips, byte order, short reads. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "state/sbuf.h"

static void test_round_trip(void **state)
{
	struct sbuf w = { 0 }, r;
	uint8_t raw[5] = { 'h', 'e', 'l', 'l', 'o' }, back[5];

	(void)state;
	sbuf_put_u8(&w, 0xab);
	sbuf_put_u32(&w, 0xdeadbeef);
	sbuf_put_u64(&w, 0x0123456789abcdefULL);
	sbuf_put(&w, raw, sizeof(raw));
	sbuf_put_u64(&w, UINT64_MAX);
	sbuf_put_u32(&w, 0);
	assert_int_equal(w.err, 0);
	assert_int_equal(w.len, 1 + 4 + 8 + 5 + 8 + 4);

	sbuf_reader(&r, w.data, w.len);
	assert_int_equal(sbuf_get_u8(&r), 0xab);
	assert_int_equal(sbuf_get_u32(&r), 0xdeadbeef);
	assert_int_equal(sbuf_get_u64(&r), 0x0123456789abcdefULL);
	sbuf_get(&r, back, sizeof(back));
	assert_memory_equal(back, raw, sizeof(raw));
	assert_int_equal(sbuf_get_u64(&r), UINT64_MAX);
	assert_int_equal(sbuf_get_u32(&r), 0);
	assert_int_equal(r.err, 0);
	assert_int_equal(r.pos, r.len);

	sbuf_free(&w);
	assert_null(w.data);
	assert_int_equal(w.len, 0);
	assert_int_equal(w.cap, 0);
}

static void test_little_endian(void **state)
{
	struct sbuf w = { 0 };
	static const uint8_t want[] = { 0x44, 0x33, 0x22, 0x11, 0x08, 0x07, 0x06, 0x05,
		                        0x04, 0x03, 0x02, 0x01 };

	(void)state;
	sbuf_put_u32(&w, 0x11223344);
	sbuf_put_u64(&w, 0x0102030405060708ULL);
	assert_int_equal(w.len, sizeof(want));
	assert_memory_equal(w.data, want, sizeof(want));
	sbuf_free(&w);
}

static void test_short_reads(void **state)
{
	static const uint8_t three[] = { 1, 2, 3 };
	uint8_t out[8];
	struct sbuf r;

	(void)state;
	sbuf_reader(&r, three, sizeof(three));
	assert_int_equal(sbuf_get_u32(&r), 0);
	assert_int_equal(r.err, -EOVERFLOW);
	assert_int_equal(r.pos, 0);
	/* The error is sticky: later reads that would fit return zeroes too. */
	assert_int_equal(sbuf_get_u8(&r), 0);
	assert_int_equal(r.err, -EOVERFLOW);

	sbuf_reader(&r, three, sizeof(three));
	assert_int_equal(sbuf_get_u8(&r), 1);
	memset(out, 0xee, sizeof(out));
	sbuf_get(&r, out, 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(out[i], 0);
	assert_int_equal(out[3], 0xee); /* only n bytes are written */
	assert_int_equal(sbuf_get_u64(&r), 0);
	assert_int_equal(r.err, -EOVERFLOW);

	/* Exactly at the end: a zero-length read is fine, one more byte is not. */
	sbuf_reader(&r, three, sizeof(three));
	sbuf_get(&r, out, 3);
	sbuf_get(&r, out, 0);
	assert_int_equal(r.err, 0);
	assert_int_equal(sbuf_get_u8(&r), 0);
	assert_int_equal(r.err, -EOVERFLOW);

	/* An empty reader. */
	sbuf_reader(&r, NULL, 0);
	assert_int_equal(sbuf_get_u64(&r), 0);
	assert_int_equal(r.err, -EOVERFLOW);

	/* A raw read past the end fails as a whole. */
	sbuf_reader(&r, three, sizeof(three));
	sbuf_get_u8(&r);
	uint8_t big[64];
	sbuf_get(&r, big, sizeof(big));
	assert_int_equal(r.err, -EOVERFLOW);
}

static void test_growth(void **state)
{
	struct sbuf w = { 0 }, r;

	(void)state;
	for (uint32_t i = 0; i < 100000; i++)
		sbuf_put_u32(&w, i * 2654435761u);
	assert_int_equal(w.err, 0);
	assert_int_equal(w.len, 400000);
	assert_true(w.cap >= w.len);

	sbuf_reader(&r, w.data, w.len);
	for (uint32_t i = 0; i < 100000; i++)
		assert_int_equal(sbuf_get_u32(&r), i * 2654435761u);
	assert_int_equal(r.err, 0);
	sbuf_free(&w);
}

static void test_writer_error_sticky(void **state)
{
	struct sbuf w = { 0 };

	(void)state;
	sbuf_put_u8(&w, 1);
	w.err = -ENOMEM; /* as after a failed realloc */
	sbuf_put_u64(&w, 2);
	sbuf_put(&w, "abc", 3);
	assert_int_equal(w.len, 1);
	assert_int_equal(w.err, -ENOMEM);
	sbuf_free(&w);
	assert_int_equal(w.err, 0);
	sbuf_free(&w); /* freeing twice is harmless */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_little_endian),
		cmocka_unit_test(test_short_reads),
		cmocka_unit_test(test_growth),
		cmocka_unit_test(test_writer_error_sticky),
	};

	return cmocka_run_group_tests_name("sbuf", tests, NULL, NULL);
}
