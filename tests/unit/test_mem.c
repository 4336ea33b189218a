/* Unit tests for guest memory layout and the checked accessors (vm/mem.c).
 * Fake layout: 64 KiB of host memory with a 16 KiB low limit, so the guest sees
 * [0, 16K) below the hole and [4G, 4G + 48K) above it. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vm/mem.h"

#define KIB 1024ULL
#define G4 0x100000000ULL
#define FAKE_SIZE (64 * KIB)
#define FAKE_LOW (16 * KIB)
#define FAKE_HIGH (FAKE_SIZE - FAKE_LOW)

struct fixture {
	struct guest_mem m;
	uint8_t *buf;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->buf = malloc(FAKE_SIZE);
	if (!f->buf) {
		free(f);
		return -1;
	}
	for (uint64_t i = 0; i < FAKE_SIZE; i++)
		f->buf[i] = (uint8_t)(i * 7 + 3);
	mem_init_fake(&f->m, f->buf, FAKE_SIZE, FAKE_LOW);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	mem_free(&f->m);
	free(f->buf);
	free(f);
	return 0;
}

static void test_layout(void **state)
{
	struct fixture *f = *state;

	assert_ptr_equal(f->m.base, f->buf);
	assert_int_equal(f->m.size, FAKE_SIZE);
	assert_int_equal(f->m.nr_regions, 2);
	assert_int_equal(f->m.regions[0].gpa, 0);
	assert_int_equal(f->m.regions[0].len, FAKE_LOW);
	assert_ptr_equal(f->m.regions[0].hva, f->buf);
	assert_int_equal(f->m.regions[1].gpa, G4);
	assert_int_equal(f->m.regions[1].len, FAKE_HIGH);
	assert_ptr_equal(f->m.regions[1].hva, f->buf + FAKE_LOW);
	assert_int_equal(mem_low_end(&f->m), FAKE_LOW);
	assert_int_equal(f->m.owned, 0);
}

static void test_ptr_low_region(void **state)
{
	struct fixture *f = *state;
	const struct guest_mem *m = &f->m;

	assert_ptr_equal(mem_ptr(m, 0, 1), f->buf);
	assert_ptr_equal(mem_ptr(m, 0, FAKE_LOW), f->buf);
	assert_ptr_equal(mem_ptr(m, 100, 200), f->buf + 100);
	assert_ptr_equal(mem_ptr(m, FAKE_LOW - 1, 1), f->buf + FAKE_LOW - 1);
	assert_ptr_equal(mem_ptr(m, FAKE_LOW - 8, 8), f->buf + FAKE_LOW - 8);
	/* straddling the end of the low region */
	assert_null(mem_ptr(m, 0, FAKE_LOW + 1));
	assert_null(mem_ptr(m, FAKE_LOW - 1, 2));
	assert_null(mem_ptr(m, FAKE_LOW - 8, 9));
	/* entirely in the hole */
	assert_null(mem_ptr(m, FAKE_LOW, 1));
	assert_null(mem_ptr(m, FAKE_LOW + 1, 1));
	assert_null(mem_ptr(m, 0x100000, 4));
	assert_null(mem_ptr(m, G4 - 1, 1));
}

static void test_ptr_high_region(void **state)
{
	struct fixture *f = *state;
	const struct guest_mem *m = &f->m;

	assert_ptr_equal(mem_ptr(m, G4, 1), f->buf + FAKE_LOW);
	assert_ptr_equal(mem_ptr(m, G4, FAKE_HIGH), f->buf + FAKE_LOW);
	assert_ptr_equal(mem_ptr(m, G4 + 4096, 4096), f->buf + FAKE_LOW + 4096);
	assert_ptr_equal(mem_ptr(m, G4 + FAKE_HIGH - 1, 1), f->buf + FAKE_SIZE - 1);
	assert_null(mem_ptr(m, G4, FAKE_HIGH + 1));
	assert_null(mem_ptr(m, G4 + FAKE_HIGH - 1, 2));
	assert_null(mem_ptr(m, G4 + FAKE_HIGH, 1));
	assert_null(mem_ptr(m, G4 + FAKE_SIZE, 1));
	assert_null(mem_ptr(m, 2 * G4, 1));
}

static void test_ptr_straddles_gap(void **state)
{
	struct fixture *f = *state;
	const struct guest_mem *m = &f->m;

	/* one range covering the end of low RAM, the hole and the start of high RAM */
	assert_null(mem_ptr(m, FAKE_LOW - 4, G4 - FAKE_LOW + 8));
	assert_null(mem_ptr(m, 0, G4 + 1));
	assert_null(mem_ptr(m, G4 - 4, 8));
	/* the host bytes after low RAM are high RAM: a range must not reach them */
	assert_null(mem_ptr(m, FAKE_LOW - 1, FAKE_HIGH));
}

static void test_ptr_len_zero(void **state)
{
	struct fixture *f = *state;
	const struct guest_mem *m = &f->m;

	assert_ptr_equal(mem_ptr(m, 0, 0), f->buf);
	assert_ptr_equal(mem_ptr(m, 1234, 0), f->buf + 1234);
	/* an empty range at the very end of a region is still inside it */
	assert_non_null(mem_ptr(m, FAKE_LOW, 0));
	assert_non_null(mem_ptr(m, G4 + FAKE_HIGH, 0));
	assert_ptr_equal(mem_ptr(m, G4 + FAKE_HIGH, 0), f->buf + FAKE_SIZE);
	/* but not one past it */
	assert_null(mem_ptr(m, FAKE_LOW + 1, 0));
	assert_null(mem_ptr(m, G4 - 1, 0));
	assert_null(mem_ptr(m, G4 + FAKE_HIGH + 1, 0));
	assert_null(mem_ptr(m, UINT64_MAX, 0));
}

static void test_ptr_overflow(void **state)
{
	struct fixture *f = *state;
	const struct guest_mem *m = &f->m;

	assert_null(mem_ptr(m, 0, UINT64_MAX));
	assert_null(mem_ptr(m, 1, UINT64_MAX));
	assert_null(mem_ptr(m, 16, UINT64_MAX - 8)); /* gpa + len wraps to 7 */
	assert_null(mem_ptr(m, G4, UINT64_MAX));
	assert_null(mem_ptr(m, G4 + 16, UINT64_MAX - G4)); /* wraps to 15 */
	assert_null(mem_ptr(m, UINT64_MAX, 1));
	assert_null(mem_ptr(m, UINT64_MAX, 2)); /* wraps to 0 */
	assert_null(mem_ptr(m, UINT64_MAX, UINT64_MAX));
	assert_null(mem_ptr(m, UINT64_MAX - FAKE_LOW, FAKE_LOW));
	assert_null(mem_ptr(m, (uint64_t)-4096, 8192));
}

static void test_read_write(void **state)
{
	struct fixture *f = *state;
	const struct guest_mem *m = &f->m;
	uint8_t in[300], out[300];

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(0xa5 ^ i);

	assert_int_equal(mem_write(m, 100, in, sizeof(in)), 0);
	assert_memory_equal(f->buf + 100, in, sizeof(in));
	memset(out, 0, sizeof(out));
	assert_int_equal(mem_read(m, 100, out, sizeof(out)), 0);
	assert_memory_equal(out, in, sizeof(in));

	/* the last bytes of low RAM */
	assert_int_equal(mem_write(m, FAKE_LOW - 16, in, 16), 0);
	assert_memory_equal(f->buf + FAKE_LOW - 16, in, 16);

	/* high RAM lands right after low RAM in the host buffer */
	assert_int_equal(mem_write(m, G4 + 10, in, sizeof(in)), 0);
	assert_memory_equal(f->buf + FAKE_LOW + 10, in, sizeof(in));
	memset(out, 0, sizeof(out));
	assert_int_equal(mem_read(m, G4 + 10, out, sizeof(out)), 0);
	assert_memory_equal(out, in, sizeof(in));

	assert_int_equal(mem_write(m, G4 + FAKE_HIGH - 1, in, 1), 0);
	assert_int_equal(f->buf[FAKE_SIZE - 1], in[0]);

	/* zero-length accesses inside RAM succeed and touch nothing */
	assert_int_equal(mem_write(m, FAKE_LOW, in, 0), 0);
	assert_int_equal(mem_read(m, FAKE_LOW, out, 0), 0);
}

static void test_read_write_efault(void **state)
{
	struct fixture *f = *state;
	const struct guest_mem *m = &f->m;
	uint8_t *snap = malloc(FAKE_SIZE);
	uint8_t in[64], out[64];

	assert_non_null(snap);
	memset(in, 0x5a, sizeof(in));
	memcpy(snap, f->buf, FAKE_SIZE);

	static const struct {
		uint64_t gpa;
		size_t len;
	} bad[] = {
		{ FAKE_LOW - 32, 64 },     /* straddles the end of low RAM */
		{ FAKE_LOW, 1 },           /* in the hole */
		{ 0x200000, 64 },          /* in the hole */
		{ G4 - 32, 64 },           /* straddles the start of high RAM */
		{ G4 + FAKE_HIGH - 1, 2 }, /* straddles the end of high RAM */
		{ G4 + FAKE_HIGH, 1 },
		{ UINT64_MAX, 1 },
		{ UINT64_MAX - 7, 64 }, /* gpa + len wraps */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(mem_write(m, bad[i].gpa, in, bad[i].len), -EFAULT);
		memset(out, 0x11, sizeof(out));
		assert_int_equal(mem_read(m, bad[i].gpa, out, bad[i].len), -EFAULT);
		for (size_t j = 0; j < sizeof(out); j++)
			assert_int_equal(out[j], 0x11); /* nothing copied out */
	}
	/* a failed write changed nothing at all */
	assert_memory_equal(f->buf, snap, FAKE_SIZE);
	free(snap);
}

static void test_small_memory_one_region(void **state)
{
	struct guest_mem m;
	uint8_t buf[8192];

	(void)state;
	/* all RAM fits below the limit: no region above 4 GiB */
	mem_init_fake(&m, buf, sizeof(buf), FAKE_LOW);
	assert_int_equal(m.nr_regions, 1);
	assert_int_equal(m.regions[0].gpa, 0);
	assert_int_equal(m.regions[0].len, sizeof(buf));
	assert_int_equal(mem_low_end(&m), sizeof(buf));
	assert_ptr_equal(mem_ptr(&m, 0, sizeof(buf)), buf);
	assert_null(mem_ptr(&m, 0, sizeof(buf) + 1));
	assert_null(mem_ptr(&m, sizeof(buf), 1));
	assert_null(mem_ptr(&m, G4, 1));
	assert_null(mem_ptr(&m, G4, 0));

	/* exactly the limit: still one region */
	mem_init_fake(&m, buf, sizeof(buf), sizeof(buf));
	assert_int_equal(m.nr_regions, 1);
	assert_null(mem_ptr(&m, G4, 1));

	/* mem_free on fake memory leaves the buffer alone and clears the struct */
	buf[0] = 0x42;
	mem_free(&m);
	assert_int_equal(m.nr_regions, 0);
	assert_null(m.base);
	assert_int_equal(buf[0], 0x42);
	assert_int_equal(mem_low_end(&m), 0);
	assert_null(mem_ptr(&m, 0, 1));
}

static void test_mem_init_mapped(void **state)
{
	struct guest_mem m;

	(void)state;
	assert_int_equal(mem_init(&m, FAKE_SIZE, FAKE_LOW), 0);
	assert_int_equal(m.owned, 1);
	assert_int_equal(m.size, FAKE_SIZE);
	assert_int_equal(m.nr_regions, 2);
	assert_int_equal(m.regions[1].gpa, G4);
	assert_int_equal(m.regions[1].len, FAKE_HIGH);
	/* anonymous memory starts zeroed and is writable through the accessors */
	uint8_t *p = mem_ptr(&m, G4 + FAKE_HIGH - 1, 1);
	assert_non_null(p);
	assert_int_equal(*p, 0);
	assert_int_equal(mem_write(&m, 0, "abc", 3), 0);
	assert_memory_equal(m.base, "abc", 3);
	mem_free(&m);
	assert_int_equal(m.nr_regions, 0);
	assert_int_equal(m.owned, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_layout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ptr_low_region, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ptr_high_region, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ptr_straddles_gap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ptr_len_zero, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ptr_overflow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_write_efault, setup, teardown),
		cmocka_unit_test(test_small_memory_one_region),
		cmocka_unit_test(test_mem_init_mapped),
	};

	return cmocka_run_group_tests_name("mem", tests, NULL, NULL);
}
