/* Unit tests for the MC146818 RTC/CMOS with a fake host clock. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "devices/rtc.h"

#define KIB 1024ULL
#define MIB (1024 * KIB)
#define GIB (1024 * MIB)

static time_t fake_time;

static time_t fake_now(void)
{
	return fake_time;
}

static time_t utc(int year, int mon, int mday, int hour, int min, int sec)
{
	struct tm tm = {
		.tm_year = year - 1900,
		.tm_mon = mon - 1,
		.tm_mday = mday,
		.tm_hour = hour,
		.tm_min = min,
		.tm_sec = sec,
	};

	return timegm(&tm);
}

static uint8_t cmos_rd(struct rtc *r, uint8_t idx)
{
	uint8_t v = 0x5a;

	rtc_ops.io(r, 0, &idx, 1, true);
	rtc_ops.io(r, 1, &v, 1, false);
	return v;
}

static void cmos_wr(struct rtc *r, uint8_t idx, uint8_t v)
{
	rtc_ops.io(r, 0, &idx, 1, true);
	rtc_ops.io(r, 1, &v, 1, true);
}

static int setup(void **state)
{
	/* Thursday 29 February 2024, 13:45:56 UTC. */
	fake_time = utc(2024, 2, 29, 13, 45, 56);
	*state = rtc_create(fake_now, 512 * MIB, 0);
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	rtc_destroy(*state);
	return 0;
}

static void test_bcd_time(void **state)
{
	struct rtc *r = *state;

	assert_int_equal(cmos_rd(r, 0x00), 0x56);
	assert_int_equal(cmos_rd(r, 0x02), 0x45);
	assert_int_equal(cmos_rd(r, 0x04), 0x13);
	assert_int_equal(cmos_rd(r, 0x06), 0x05); /* Sunday = 1 */
	assert_int_equal(cmos_rd(r, 0x07), 0x29);
	assert_int_equal(cmos_rd(r, 0x08), 0x02);
	assert_int_equal(cmos_rd(r, 0x09), 0x24);
	assert_int_equal(cmos_rd(r, 0x32), 0x20);

	/* The clock follows host time. */
	fake_time += 3600 * 24 + 5;
	assert_int_equal(cmos_rd(r, 0x00), 0x01);
	assert_int_equal(cmos_rd(r, 0x02), 0x46);
	assert_int_equal(cmos_rd(r, 0x07), 0x01);
	assert_int_equal(cmos_rd(r, 0x08), 0x03);
	assert_int_equal(cmos_rd(r, 0x06), 0x06);
}

static void test_binary_time(void **state)
{
	struct rtc *r = *state;

	cmos_wr(r, 0x0b, 0x02 | 0x04);
	assert_int_equal(cmos_rd(r, 0x0b), 0x06);
	assert_int_equal(cmos_rd(r, 0x00), 56);
	assert_int_equal(cmos_rd(r, 0x02), 45);
	assert_int_equal(cmos_rd(r, 0x04), 13);
	assert_int_equal(cmos_rd(r, 0x07), 29);
	assert_int_equal(cmos_rd(r, 0x08), 2);
	assert_int_equal(cmos_rd(r, 0x09), 24);
	assert_int_equal(cmos_rd(r, 0x32), 20);
}

static void test_12h_mode(void **state)
{
	struct rtc *r = *state;

	cmos_wr(r, 0x0b, 0x00); /* BCD, 12-hour */
	assert_int_equal(cmos_rd(r, 0x04), 0x80 | 0x01);
	fake_time = utc(2024, 2, 29, 0, 30, 0);
	assert_int_equal(cmos_rd(r, 0x04), 0x12);
	fake_time = utc(2024, 2, 29, 12, 30, 0);
	assert_int_equal(cmos_rd(r, 0x04), 0x80 | 0x12);
	fake_time = utc(2024, 2, 29, 11, 30, 0);
	assert_int_equal(cmos_rd(r, 0x04), 0x11);
	fake_time = utc(2024, 2, 29, 23, 30, 0);
	cmos_wr(r, 0x0b, 0x04); /* binary, 12-hour */
	assert_int_equal(cmos_rd(r, 0x04), 0x80 | 11);

	/* Writing 7 PM in 12-hour binary, read back in 24-hour BCD. */
	cmos_wr(r, 0x04, 0x80 | 7);
	cmos_wr(r, 0x0b, 0x02);
	assert_int_equal(cmos_rd(r, 0x04), 0x19);
	/* 12 AM is midnight. */
	cmos_wr(r, 0x0b, 0x00);
	cmos_wr(r, 0x04, 0x12);
	cmos_wr(r, 0x0b, 0x02);
	assert_int_equal(cmos_rd(r, 0x04), 0x00);
}

/* The way Linux's mc146818_set_time() writes: SET on, year..seconds, SET off. */
static void set_time_bcd(struct rtc *r, uint8_t cent, uint8_t yy, uint8_t mon, uint8_t mday,
                         uint8_t hh, uint8_t mm, uint8_t ss)
{
	uint8_t b = cmos_rd(r, 0x0b);

	cmos_wr(r, 0x0b, b | 0x80);
	cmos_wr(r, 0x09, yy);
	cmos_wr(r, 0x08, mon);
	cmos_wr(r, 0x07, mday);
	cmos_wr(r, 0x04, hh);
	cmos_wr(r, 0x02, mm);
	cmos_wr(r, 0x00, ss);
	cmos_wr(r, 0x32, cent);
	cmos_wr(r, 0x0b, b & ~0x80);
}

static void test_set_time_keeps_offset(void **state)
{
	struct rtc *r = *state;

	set_time_bcd(r, 0x20, 0x30, 0x01, 0x15, 0x08, 0x00, 0x00);
	assert_int_equal(cmos_rd(r, 0x09), 0x30);
	assert_int_equal(cmos_rd(r, 0x08), 0x01);
	assert_int_equal(cmos_rd(r, 0x07), 0x15);
	assert_int_equal(cmos_rd(r, 0x04), 0x08);
	assert_int_equal(cmos_rd(r, 0x02), 0x00);
	assert_int_equal(cmos_rd(r, 0x00), 0x00);
	assert_int_equal(cmos_rd(r, 0x06), 0x03); /* 15 Jan 2030 is a Tuesday */

	/* The guest's clock keeps going with the host's. */
	fake_time += 61;
	assert_int_equal(cmos_rd(r, 0x02), 0x01);
	assert_int_equal(cmos_rd(r, 0x00), 0x01);
	fake_time += 24 * 3600;
	assert_int_equal(cmos_rd(r, 0x07), 0x16);

	/* Setting a time in the past works too. */
	set_time_bcd(r, 0x19, 0x99, 0x12, 0x31, 0x23, 0x59, 0x58);
	fake_time += 3;
	assert_int_equal(cmos_rd(r, 0x32), 0x20);
	assert_int_equal(cmos_rd(r, 0x09), 0x00);
	assert_int_equal(cmos_rd(r, 0x08), 0x01);
	assert_int_equal(cmos_rd(r, 0x07), 0x01);
	assert_int_equal(cmos_rd(r, 0x00), 0x01);
}

/* While SET is on, fields are latched: no roll-over half way through. */
static void test_set_bit_latches(void **state)
{
	struct rtc *r = *state;

	fake_time = utc(2024, 1, 31, 10, 0, 0);
	set_time_bcd(r, 0x20, 0x24, 0x02, 0x28, 0x10, 0x00, 0x00);
	assert_int_equal(cmos_rd(r, 0x08), 0x02);
	assert_int_equal(cmos_rd(r, 0x07), 0x28);

	/* Time stands still while SET is on; reads show the latched values. */
	cmos_wr(r, 0x0b, 0x82);
	cmos_wr(r, 0x07, 0x31); /* 31 February for a moment */
	fake_time += 100;
	assert_int_equal(cmos_rd(r, 0x07), 0x31);
	assert_int_equal(cmos_rd(r, 0x00), 0x00);
	cmos_wr(r, 0x07, 0x27);
	cmos_wr(r, 0x0b, 0x02);
	assert_int_equal(cmos_rd(r, 0x07), 0x27);
	assert_int_equal(cmos_rd(r, 0x00), 0x00);
	fake_time += 2;
	assert_int_equal(cmos_rd(r, 0x00), 0x02);
}

/* Without SET each write takes effect at once. */
static void test_write_without_set(void **state)
{
	struct rtc *r = *state;

	cmos_wr(r, 0x02, 0x10);
	assert_int_equal(cmos_rd(r, 0x02), 0x10);
	assert_int_equal(cmos_rd(r, 0x04), 0x13);
	assert_int_equal(cmos_rd(r, 0x00), 0x56);
	fake_time += 10;
	assert_int_equal(cmos_rd(r, 0x00), 0x06);
	assert_int_equal(cmos_rd(r, 0x02), 0x11);
	cmos_wr(r, 0x0b, 0x06);
	cmos_wr(r, 0x09, 25);
	cmos_wr(r, 0x0b, 0x02);
	assert_int_equal(cmos_rd(r, 0x09), 0x25);
	assert_int_equal(cmos_rd(r, 0x32), 0x20);
}

static void test_control_registers(void **state)
{
	struct rtc *r = *state;
	uint8_t v;

	assert_int_equal(cmos_rd(r, 0x0a), 0x26);
	assert_int_equal(cmos_rd(r, 0x0b), 0x02);
	assert_int_equal(cmos_rd(r, 0x0c), 0x00);
	assert_int_equal(cmos_rd(r, 0x0d), 0x80);
	cmos_wr(r, 0x0a, 0xa5); /* UIP is read-only and always clear */
	assert_int_equal(cmos_rd(r, 0x0a), 0x25);
	cmos_wr(r, 0x0c, 0xff);
	cmos_wr(r, 0x0d, 0x00);
	assert_int_equal(cmos_rd(r, 0x0c), 0x00);
	assert_int_equal(cmos_rd(r, 0x0d), 0x80);

	/* Bit 7 of the index is the NMI mask and does not change the register. */
	assert_int_equal(cmos_rd(r, 0x80 | 0x0d), 0x80);
	cmos_wr(r, 0x80 | 0x40, 0x3c);
	assert_int_equal(cmos_rd(r, 0x40), 0x3c);

	/* The index port is write-only. */
	v = 0;
	rtc_ops.io(r, 0, &v, 1, false);
	assert_int_equal(v, 0xff);
	assert_string_equal(rtc_ops.name, "rtc");
}

static void test_cmos_ram(void **state)
{
	struct rtc *r = *state;
	static const uint8_t special[] = { 0x00, 0x02, 0x04, 0x06, 0x07, 0x08,
		                           0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x32 };

	for (int i = 0; i < 128; i++) {
		if (memchr(special, i, sizeof(special)))
			continue;
		cmos_wr(r, (uint8_t)i, (uint8_t)(i ^ 0xa5));
	}
	for (int i = 0; i < 128; i++) {
		if (memchr(special, i, sizeof(special)))
			continue;
		assert_int_equal(cmos_rd(r, (uint8_t)i), i ^ 0xa5);
	}
	/* Time stayed put. */
	assert_int_equal(cmos_rd(r, 0x04), 0x13);
}

static uint32_t cmos16(struct rtc *r, uint8_t idx)
{
	return cmos_rd(r, idx) | (uint32_t)cmos_rd(r, idx + 1) << 8;
}

static void test_memory_size_bytes(void **state)
{
	struct rtc *r;

	(void)state;
	r = rtc_create(fake_now, 3 * GIB, 2 * GIB);
	assert_non_null(r);
	assert_int_equal(cmos16(r, 0x15), 640);
	assert_int_equal(cmos16(r, 0x17), 0xffff);
	assert_int_equal(cmos16(r, 0x30), 0xffff);
	assert_int_equal(cmos16(r, 0x34), (3 * GIB - 16 * MIB) / (64 * KIB));
	assert_int_equal(cmos_rd(r, 0x5b), 0x00);
	assert_int_equal(cmos_rd(r, 0x5c), 0x80);
	assert_int_equal(cmos_rd(r, 0x5d), 0x00);
	rtc_destroy(r);

	r = rtc_create(fake_now, 32 * MIB, 0);
	assert_non_null(r);
	assert_int_equal(cmos16(r, 0x15), 640);
	assert_int_equal(cmos16(r, 0x17), 31 * 1024);
	assert_int_equal(cmos16(r, 0x30), 31 * 1024);
	assert_int_equal(cmos16(r, 0x34), 256);
	assert_int_equal(cmos_rd(r, 0x5b) | cmos_rd(r, 0x5c) | cmos_rd(r, 0x5d), 0);
	rtc_destroy(r);

	r = rtc_create(NULL, 512 * KIB, 1ULL << 50); /* tiny low, huge high: capped */
	assert_non_null(r);
	assert_int_equal(cmos16(r, 0x17), 0);
	assert_int_equal(cmos16(r, 0x34), 0);
	assert_int_equal(cmos_rd(r, 0x5b) & cmos_rd(r, 0x5c) & cmos_rd(r, 0x5d), 0xff);
	rtc_destroy(r);

	r = rtc_create(fake_now, 4 * GIB, 6 * GIB + 64 * KIB);
	assert_non_null(r);
	assert_int_equal(cmos16(r, 0x34), (4 * GIB - 16 * MIB) / (64 * KIB));
	assert_int_equal(cmos16(r, 0x5b) | (uint32_t)cmos_rd(r, 0x5d) << 16,
	                 6 * 16384 + 1);
	rtc_destroy(r);
}

static void save_state(struct rtc *r, struct sbuf *out)
{
	memset(out, 0, sizeof(*out));
	rtc_ops.save(r, out);
	assert_int_equal(out->err, 0);
}

static void test_save_load(void **state)
{
	struct rtc *r = *state;
	struct rtc *r2;
	struct sbuf a, b, in;

	set_time_bcd(r, 0x20, 0x31, 0x07, 0x04, 0x12, 0x34, 0x56);
	cmos_wr(r, 0x50, 0x99);
	cmos_wr(r, 0x0a, 0x2f);
	cmos_wr(r, 0x0e, 0x11); /* leaves the index at 0x0e */
	save_state(r, &a);

	r2 = rtc_create(fake_now, 0, 0);
	assert_non_null(r2);
	sbuf_reader(&in, a.data, a.len);
	assert_int_equal(rtc_ops.load(r2, &in), 0);
	assert_int_equal(in.pos, a.len);
	save_state(r2, &b);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.data, b.data, a.len);

	/* Index survives: a data read without rewriting it. */
	uint8_t v = 0;
	rtc_ops.io(r2, 1, &v, 1, false);
	assert_int_equal(v, 0x11);
	fake_time += 4;
	assert_int_equal(cmos_rd(r2, 0x09), 0x31);
	assert_int_equal(cmos_rd(r2, 0x02), 0x35);
	assert_int_equal(cmos_rd(r2, 0x00), 0x00);
	assert_int_equal(cmos_rd(r2, 0x50), 0x99);
	assert_int_equal(cmos_rd(r2, 0x0a), 0x2f);
	assert_int_equal(cmos16(r2, 0x34), (512 * MIB - 16 * MIB) / (64 * KIB));
	rtc_destroy(r2);
	sbuf_free(&b);

	/* A clock latched by SET is carried too. */
	cmos_wr(r, 0x0b, 0x82);
	cmos_wr(r, 0x07, 0x31);
	sbuf_free(&a);
	save_state(r, &a);
	r2 = rtc_create(fake_now, 0, 0);
	assert_non_null(r2);
	sbuf_reader(&in, a.data, a.len);
	assert_int_equal(rtc_ops.load(r2, &in), 0);
	assert_int_equal(cmos_rd(r2, 0x07), 0x31);
	assert_int_equal(cmos_rd(r2, 0x08), 0x07);
	rtc_destroy(r2);
	sbuf_free(&a);
}

static void expect_load_fails(struct rtc *r, const uint8_t *data, size_t len)
{
	struct sbuf before, after, in;

	save_state(r, &before);
	sbuf_reader(&in, data, len);
	assert_int_equal(rtc_ops.load(r, &in), -EINVAL);
	save_state(r, &after);
	assert_int_equal(before.len, after.len);
	assert_memory_equal(before.data, after.data, before.len);
	sbuf_free(&before);
	sbuf_free(&after);
}

static void test_load_rejects_bad_state(void **state)
{
	struct rtc *r = *state;
	struct sbuf good;
	uint8_t bad[256];

	cmos_wr(r, 0x20, 0x77);
	save_state(r, &good);
	assert_true(good.len <= sizeof(bad));
	for (size_t n = 0; n < good.len; n++)
		expect_load_fails(r, good.data, n);

	memcpy(bad, good.data, good.len);
	bad[0]++; /* version */
	expect_load_fails(r, bad, good.len);
	memcpy(bad, good.data, good.len);
	bad[4] = 0x80; /* index with the NMI bit */
	expect_load_fails(r, bad, good.len);
	memcpy(bad, good.data, good.len);
	bad[5 + 0x0a] |= 0x80; /* UIP */
	expect_load_fails(r, bad, good.len);
	memcpy(bad, good.data, good.len);
	bad[5 + 128 + 7] = 0x7f; /* offset of 2^62 seconds */
	expect_load_fails(r, bad, good.len);
	memcpy(bad, good.data, good.len);
	bad[5 + 128 + 8 + 6 + 3] = 0x40; /* latched year out of range */
	expect_load_fails(r, bad, good.len);
	sbuf_free(&good);
}

static void test_reset_keeps_clock_and_ram(void **state)
{
	struct rtc *r = *state;

	set_time_bcd(r, 0x20, 0x40, 0x01, 0x01, 0x00, 0x00, 0x00);
	cmos_wr(r, 0x0b, 0x02 | 0x70); /* interrupt enables */
	cmos_wr(r, 0x60, 0xab);
	rtc_ops.reset(r);
	assert_int_equal(cmos_rd(r, 0x0b), 0x02);
	assert_int_equal(cmos_rd(r, 0x60), 0xab);
	assert_int_equal(cmos_rd(r, 0x09), 0x40);
}

/* Random traffic with every width: no crash, no UB, no absurd clock. */
static void test_random_accesses(void **state)
{
	struct rtc *r = *state;
	static const uint32_t sizes[] = { 1, 2, 4, 8 };

	srand(4242);
	for (int i = 0; i < 300000; i++) {
		uint8_t d[8];
		uint64_t off = (uint64_t)rand() % 4;
		uint32_t len = sizes[rand() % 4];

		for (int j = 0; j < 8; j++)
			d[j] = (uint8_t)rand();
		if (rand() % 8 == 0)
			d[0] = (uint8_t)(rand() % 16); /* favour the time registers */
		rtc_ops.io(r, off, d, len, rand() % 2);
		if (i % 50000 == 0)
			rtc_ops.reset(r);
	}
	/* Whatever was written at random, the clock still reads sanely. */
	cmos_wr(r, 0x0b, 0x06);
	assert_true(cmos_rd(r, 0x00) < 60);
	assert_true(cmos_rd(r, 0x02) < 60);
	assert_true(cmos_rd(r, 0x04) < 24);
	uint8_t d[8] = { 0 };
	rtc_ops.io(r, UINT64_MAX, d, 8, false);
	assert_int_equal(d[0], 0xff);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bcd_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_binary_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_12h_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_time_keeps_offset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_bit_latches, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_without_set, setup, teardown),
		cmocka_unit_test_setup_teardown(test_control_registers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cmos_ram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_memory_size_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_rejects_bad_state, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_keeps_clock_and_ram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_random_accesses, setup, teardown),
	};

	return cmocka_run_group_tests_name("rtc", tests, NULL, NULL);
}
