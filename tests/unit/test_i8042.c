/* Unit tests for the minimal i8042 controller. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devices/i8042.h"

#define DATA 0 /* port 0x60 */
#define CMD 4  /* port 0x64 */

struct fake {
	struct i8042 *k;
	int resets;
	void *reset_opaque;
};

static void fake_reset(void *opaque)
{
	struct fake *f = opaque;
	uint8_t v;

	f->resets++;
	f->reset_opaque = opaque;
	/* Called with the controller unlocked: touching it must not deadlock. */
	i8042_ops.io(f->k, CMD, &v, 1, false);
}

static uint8_t rd(struct i8042 *k, uint64_t off)
{
	uint8_t v = 0xa5;

	i8042_ops.io(k, off, &v, 1, false);
	return v;
}

static void wr(struct i8042 *k, uint64_t off, uint8_t v)
{
	i8042_ops.io(k, off, &v, 1, true);
}

static int setup(void **state)
{
	struct fake *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->k = i8042_create(fake_reset, f);
	if (!f->k) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fake *f = *state;

	i8042_destroy(f->k);
	free(f);
	return 0;
}

static void test_idle_status(void **state)
{
	struct fake *f = *state;

	assert_int_equal(rd(f->k, CMD), 0x1c);
	assert_int_equal(rd(f->k, CMD) & 0x01, 0); /* output buffer empty */
	assert_int_equal(rd(f->k, DATA), 0x00);
	for (uint64_t off = 1; off <= 3; off++) {
		wr(f->k, off, 0xfe);
		assert_int_equal(rd(f->k, off), 0xff);
	}
	assert_int_equal(f->resets, 0);
	assert_string_equal(i8042_ops.name, "i8042");
}

static void test_reset_line(void **state)
{
	struct fake *f = *state;

	wr(f->k, CMD, 0xfe);
	assert_int_equal(f->resets, 1);
	assert_ptr_equal(f->reset_opaque, f);
	wr(f->k, DATA, 0xfe); /* data 0xfe is a keyboard byte, not a reset */
	assert_int_equal(f->resets, 1);
	wr(f->k, CMD, 0xfe);
	assert_int_equal(f->resets, 2);
}

static void test_self_test(void **state)
{
	struct fake *f = *state;

	wr(f->k, CMD, 0xaa);
	assert_int_equal(rd(f->k, CMD) & 0x01, 0x01);
	assert_int_equal(rd(f->k, DATA), 0x55);
	assert_int_equal(rd(f->k, CMD) & 0x01, 0x00);
	assert_int_equal(rd(f->k, DATA), 0x00);
}

static void test_command_byte(void **state)
{
	struct fake *f = *state;

	wr(f->k, CMD, 0x20);
	assert_int_equal(rd(f->k, CMD) & 0x01, 0x01);
	assert_int_equal(rd(f->k, DATA), 0x45);

	wr(f->k, CMD, 0x60);
	wr(f->k, DATA, 0x61);
	assert_int_equal(rd(f->k, CMD) & 0x08, 0x00); /* last write was data */
	wr(f->k, CMD, 0x20);
	assert_int_equal(rd(f->k, DATA), 0x61);
	assert_int_equal(rd(f->k, CMD) & 0x04, 0x00); /* SYS follows the command byte */

	/* A data byte with no command pending goes to the absent keyboard. */
	wr(f->k, DATA, 0xf2);
	wr(f->k, CMD, 0x20);
	assert_int_equal(rd(f->k, DATA), 0x61);

	/* A new command cancels one still waiting for its data byte. */
	wr(f->k, CMD, 0x60);
	wr(f->k, CMD, 0xaa);
	wr(f->k, DATA, 0x00);
	wr(f->k, CMD, 0x20);
	assert_int_equal(rd(f->k, DATA), 0x61);
}

static void test_enable_disable(void **state)
{
	struct fake *f = *state;

	wr(f->k, CMD, 0x60);
	wr(f->k, DATA, 0x00);
	wr(f->k, CMD, 0xad);
	wr(f->k, CMD, 0xa7);
	wr(f->k, CMD, 0x20);
	assert_int_equal(rd(f->k, DATA), 0x30);
	wr(f->k, CMD, 0xae);
	wr(f->k, CMD, 0x20);
	assert_int_equal(rd(f->k, DATA), 0x20);
	wr(f->k, CMD, 0xa8);
	wr(f->k, CMD, 0x20);
	assert_int_equal(rd(f->k, DATA), 0x00);
	assert_int_equal(f->resets, 0);
}

static void test_output_port(void **state)
{
	struct fake *f = *state;

	wr(f->k, CMD, 0xd0);
	assert_int_equal(rd(f->k, DATA), 0x03);
	wr(f->k, CMD, 0xd1);
	wr(f->k, DATA, 0xdf); /* A20 on, reset line high: no reset */
	assert_int_equal(f->resets, 0);
	wr(f->k, CMD, 0xd0);
	assert_int_equal(rd(f->k, DATA), 0xdf);
	wr(f->k, CMD, 0xd1);
	wr(f->k, DATA, 0xfe); /* reset line low */
	assert_int_equal(f->resets, 1);
}

static void save_state(struct i8042 *k, struct sbuf *out)
{
	memset(out, 0, sizeof(*out));
	i8042_ops.save(k, out);
	assert_int_equal(out->err, 0);
}

static void test_save_load_reset(void **state)
{
	struct fake *f = *state;
	struct fake g = { 0 };
	struct sbuf a, b, in;

	wr(f->k, CMD, 0x60);
	wr(f->k, DATA, 0x47);
	wr(f->k, CMD, 0xaa);
	wr(f->k, CMD, 0x60); /* waiting for its data byte */
	save_state(f->k, &a);

	g.k = i8042_create(fake_reset, &g);
	assert_non_null(g.k);
	sbuf_reader(&in, a.data, a.len);
	assert_int_equal(i8042_ops.load(g.k, &in), 0);
	save_state(g.k, &b);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.data, b.data, a.len);
	assert_int_equal(rd(g.k, CMD), 0x1d);
	assert_int_equal(rd(g.k, DATA), 0x55);
	wr(g.k, DATA, 0x05);
	wr(g.k, CMD, 0x20);
	assert_int_equal(rd(g.k, DATA), 0x05);

	i8042_ops.reset(g.k);
	assert_int_equal(rd(g.k, CMD), 0x1c);
	wr(g.k, CMD, 0x20);
	assert_int_equal(rd(g.k, DATA), 0x45);
	i8042_destroy(g.k);
	sbuf_free(&b);

	/* Truncations and impossible values are refused without effect. */
	for (size_t n = 0; n <= a.len; n++) {
		uint8_t bad[16];
		struct sbuf before, after;

		assert_true(a.len <= sizeof(bad));
		memcpy(bad, a.data, a.len);
		if (n == a.len)
			bad[a.len - 1] = 0x20; /* pending command that takes no data */
		save_state(f->k, &before);
		sbuf_reader(&in, bad, n);
		assert_int_equal(i8042_ops.load(f->k, &in), -EINVAL);
		save_state(f->k, &after);
		assert_memory_equal(before.data, after.data, before.len);
		sbuf_free(&before);
		sbuf_free(&after);
	}
	uint8_t bad[16];
	memcpy(bad, a.data, a.len);
	bad[7] = 2; /* out_full */
	sbuf_reader(&in, bad, a.len);
	assert_int_equal(i8042_ops.load(f->k, &in), -EINVAL);
	memcpy(bad, a.data, a.len);
	bad[1] = 1; /* version */
	sbuf_reader(&in, bad, a.len);
	assert_int_equal(i8042_ops.load(f->k, &in), -EINVAL);
	sbuf_free(&a);
}

static void test_random_accesses(void **state)
{
	struct fake *f = *state;
	static const uint32_t sizes[] = { 1, 2, 4, 8 };

	srand(99);
	for (int i = 0; i < 200000; i++) {
		uint8_t d[8];
		uint64_t off = (uint64_t)rand() % 5;
		uint32_t len = sizes[rand() % 4];

		for (int j = 0; j < 8; j++)
			d[j] = (uint8_t)rand();
		i8042_ops.io(f->k, off, d, len, rand() % 2);
	}
	assert_true(f->resets > 0); /* 0xfe shows up at random */
	uint8_t d[8];
	i8042_ops.io(f->k, UINT64_MAX - 3, d, 8, false);
	for (int i = 0; i < 8; i++)
		assert_int_equal(d[i], 0xff);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_idle_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_self_test, setup, teardown),
		cmocka_unit_test_setup_teardown(test_command_byte, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enable_disable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_output_port, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_load_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_random_accesses, setup, teardown),
	};

	return cmocka_run_group_tests_name("i8042", tests, NULL, NULL);
}
