/* Unit tests for the PIO/MMIO bus: registration rules, dispatch, unknown addresses. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vm/bus.h"

struct rec {
	int calls;
	uint64_t offset;
	uint32_t len;
	bool is_write;
	uint8_t data[8];
	uint8_t fill; /* byte returned on reads */
};

static void rec_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct rec *r = opaque;

	r->calls++;
	r->offset = offset;
	r->len = len;
	r->is_write = is_write;
	if (is_write)
		memcpy(r->data, data, len < 8 ? len : 8);
	else
		memset(data, r->fill, len);
}

static void test_register_overlap(void **state)
{
	struct bus bus;
	struct rec r = { 0 };

	(void)state;
	bus_init(&bus, "pio");
	assert_int_equal(bus_register(&bus, 0x3f8, 8, rec_io, &r, "com1"), 0);
	assert_int_equal(bus_register(&bus, 0x3f8, 8, rec_io, &r, "same"), -EEXIST);
	assert_int_equal(bus_register(&bus, 0x3f8, 1, rec_io, &r, "first"), -EEXIST);
	assert_int_equal(bus_register(&bus, 0x3ff, 1, rec_io, &r, "last"), -EEXIST);
	assert_int_equal(bus_register(&bus, 0x3f0, 9, rec_io, &r, "tail"), -EEXIST);
	assert_int_equal(bus_register(&bus, 0x3fc, 16, rec_io, &r, "head"), -EEXIST);
	assert_int_equal(bus_register(&bus, 0x300, 0x200, rec_io, &r, "cover"), -EEXIST);
	/* Touching ranges are fine. */
	assert_int_equal(bus_register(&bus, 0x3f0, 8, rec_io, &r, "below"), 0);
	assert_int_equal(bus_register(&bus, 0x400, 1, rec_io, &r, "above"), 0);
	/* Empty and wrapping ranges are refused. */
	assert_int_equal(bus_register(&bus, 0x1000, 0, rec_io, &r, "empty"), -EINVAL);
	assert_int_equal(bus_register(&bus, UINT64_MAX - 1, 4, rec_io, &r, "wrap"), -EINVAL);
	assert_int_equal(bus.nr, 3);
}

static void test_dispatch_offsets(void **state)
{
	struct bus bus;
	struct rec a = { .fill = 0xaa }, b = { .fill = 0xbb };
	uint8_t d[4] = { 1, 2, 3, 4 };

	(void)state;
	bus_init(&bus, "mmio");
	assert_int_equal(bus_register(&bus, 0xd0000000, 0x1000, rec_io, &a, "a"), 0);
	assert_int_equal(bus_register(&bus, 0xd0001000, 0x100, rec_io, &b, "b"), 0);

	assert_int_equal(bus_access(&bus, 0xd0000010, d, 4, true), 0);
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.offset, 0x10);
	assert_int_equal(a.len, 4);
	assert_true(a.is_write);
	assert_memory_equal(a.data, d, 4);

	assert_int_equal(bus_access(&bus, 0xd0001000, d, 2, false), 0);
	assert_int_equal(b.calls, 1);
	assert_int_equal(b.offset, 0);
	assert_false(b.is_write);
	assert_int_equal(d[0], 0xbb);
	assert_int_equal(d[1], 0xbb);
	assert_int_equal(d[2], 3); /* beyond len: untouched */

	/* Last byte of a range goes to it; one past the end does not. */
	assert_int_equal(bus_access(&bus, 0xd0000fff, d, 1, false), 0);
	assert_int_equal(a.calls, 2);
	assert_int_equal(a.offset, 0xfff);
	assert_int_equal(bus_access(&bus, 0xd0001100, d, 1, false), -ENOENT);
	assert_int_equal(b.calls, 1);
	assert_int_equal(bus.unknown_total, 1);
}

static void test_unknown_access(void **state)
{
	struct bus bus;
	uint8_t d[8];

	(void)state;
	bus_init(&bus, "pio");
	memset(d, 0, sizeof(d));
	assert_int_equal(bus_access(&bus, 0x80, d, 8, false), -ENOENT);
	for (int i = 0; i < 8; i++)
		assert_int_equal(d[i], 0xff);

	d[0] = 0x12;
	assert_int_equal(bus_access(&bus, 0x80, d, 1, true), -ENOENT);
	assert_int_equal(d[0], 0x12); /* writes are dropped, buffer untouched */
	assert_int_equal(bus.unknown_total, 2);
	assert_int_equal(bus.nr_unknown_logged, 1); /* same address logged once */

	/* Distinct addresses are remembered up to the bound, counted forever. */
	for (uint64_t a = 0x100; a < 0x100 + 2 * BUS_MAX_UNKNOWN_LOGGED; a++)
		bus_access(&bus, a, d, 1, false);
	assert_int_equal(bus.nr_unknown_logged, BUS_MAX_UNKNOWN_LOGGED);
	assert_int_equal(bus.unknown_total, 2 + 2 * BUS_MAX_UNKNOWN_LOGGED);
}

static void test_registration_limit(void **state)
{
	struct bus bus;
	struct rec r = { .fill = 0x5a };
	uint8_t d;

	(void)state;
	bus_init(&bus, "pio");
	for (int i = 0; i < BUS_MAX_RANGES; i++)
		assert_int_equal(bus_register(&bus, 0x1000 + 0x10 * i, 0x10, rec_io, &r, "x"), 0);
	assert_int_equal(bus.nr, BUS_MAX_RANGES);
	assert_int_equal(bus_register(&bus, 0x9000, 1, rec_io, &r, "one too many"), -ENOSPC);
	assert_int_equal(bus.nr, BUS_MAX_RANGES);

	/* The last registered range still dispatches. */
	assert_int_equal(bus_access(&bus, 0x1000 + 0x10 * (BUS_MAX_RANGES - 1) + 5, &d, 1, false),
	                 0);
	assert_int_equal(r.offset, 5);
	assert_int_equal(d, 0x5a);
}

static struct bus shared_bus;

static void *unknown_thread(void *arg)
{
	uint8_t d[2];

	(void)arg;
	for (int i = 0; i < 10000; i++)
		bus_access(&shared_bus, 0x5000 + (uint64_t)(i % 200), d, 2, i & 1);
	return NULL;
}

/* vCPU threads hit unknown ports at the same time: counts stay exact. */
static void test_unknown_concurrent(void **state)
{
	pthread_t t[4];

	(void)state;
	bus_init(&shared_bus, "pio");
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, unknown_thread, NULL), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(shared_bus.unknown_total, 40000);
	assert_int_equal(shared_bus.nr_unknown_logged, BUS_MAX_UNKNOWN_LOGGED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_register_overlap),
		cmocka_unit_test(test_dispatch_offsets),
		cmocka_unit_test(test_unknown_access),
		cmocka_unit_test(test_registration_limit),
		cmocka_unit_test(test_unknown_concurrent),
	};

	return cmocka_run_group_tests_name("bus", tests, NULL, NULL);
}
