/* Unit tests for size and integer parsing (util/size.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "util/size.h"

#define KIB 1024ULL
#define MIB (1024 * KIB)
#define GIB (1024 * MIB)
#define TIB (1024 * GIB)

/* Parse s as a memory size; returns the rc and stores the value (or a poison
 * value when the call left *out alone). */
static int mem(const char *s, uint64_t *v)
{
	*v = 0xdeadbeefULL;
	return size_parse_mem(s, v);
}

static void test_mem_units(void **state)
{
	uint64_t v;

	(void)state;
	assert_int_equal(mem("4K", &v), 0);
	assert_int_equal(v, 4 * KIB);
	assert_int_equal(mem("4k", &v), 0);
	assert_int_equal(v, 4 * KIB);
	assert_int_equal(mem("512M", &v), 0);
	assert_int_equal(v, 512 * MIB);
	assert_int_equal(mem("512m", &v), 0);
	assert_int_equal(v, 512 * MIB);
	assert_int_equal(mem("2G", &v), 0);
	assert_int_equal(v, 2 * GIB);
	assert_int_equal(mem("3g", &v), 0);
	assert_int_equal(v, 3 * GIB);
	assert_int_equal(mem("1T", &v), 0);
	assert_int_equal(v, TIB);
	assert_int_equal(mem("64t", &v), 0);
	assert_int_equal(v, 64 * TIB);
	assert_int_equal(mem("0K", &v), 0);
	assert_int_equal(v, 0);
}

static void test_mem_bare_number_is_mib(void **state)
{
	uint64_t v;

	(void)state;
	assert_int_equal(mem("512", &v), 0);
	assert_int_equal(v, 512 * MIB);
	assert_int_equal(mem("1", &v), 0);
	assert_int_equal(v, MIB);
	assert_int_equal(mem("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(mem("0016", &v), 0); /* leading zeros are decimal, not octal */
	assert_int_equal(v, 16 * MIB);
}

static void test_mem_ib_and_b_suffixes(void **state)
{
	uint64_t v;

	(void)state;
	assert_int_equal(mem("512MiB", &v), 0);
	assert_int_equal(v, 512 * MIB);
	assert_int_equal(mem("512MB", &v), 0);
	assert_int_equal(v, 512 * MIB);
	assert_int_equal(mem("2GiB", &v), 0);
	assert_int_equal(v, 2 * GIB);
	assert_int_equal(mem("2gb", &v), 0);
	assert_int_equal(v, 2 * GIB);
	assert_int_equal(mem("8KiB", &v), 0);
	assert_int_equal(v, 8 * KIB);
	assert_int_equal(mem("8kib", &v), 0);
	assert_int_equal(v, 8 * KIB);
	assert_int_equal(mem("1TiB", &v), 0);
	assert_int_equal(v, TIB);
	assert_int_equal(mem("1TB", &v), 0);
	assert_int_equal(v, TIB);
}

static void test_mem_garbage(void **state)
{
	static const char *const bad[] = {
		"",      "abc",  "M",    "K512",  "-1",    "+1",    " 1",     "1 ",   "1 M",
		"12x",   "1MM",  "1MiBx", "1MBB", "1Mi",   "1MiBB", "0x10",   "1.5G", "1e3",
		"1Q",    "1P",   "1E",   "G1",    "1GiB ", "1\n",   "1,024M", "--1",
	};
	uint64_t v;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = mem(bad[i], &v);
		if (rc != -EINVAL)
			fail_msg("size_parse_mem(\"%s\") = %d, want -EINVAL", bad[i], rc);
		assert_int_equal(v, 0xdeadbeefULL); /* output untouched on error */
	}
	assert_int_equal(mem(NULL, &v), -EINVAL);
	assert_int_equal(v, 0xdeadbeefULL);
}

static void test_mem_overflow(void **state)
{
	uint64_t v;

	(void)state;
	/* 2^64 bytes in each unit */
	assert_int_equal(mem("16777216T", &v), -ERANGE);
	assert_int_equal(mem("17179869184G", &v), -ERANGE);
	assert_int_equal(mem("17592186044416M", &v), -ERANGE);
	assert_int_equal(mem("17592186044416", &v), -ERANGE); /* bare = MiB */
	assert_int_equal(mem("18014398509481984K", &v), -ERANGE);
	assert_int_equal(v, 0xdeadbeefULL);
	/* beyond unsigned long long before any unit */
	assert_int_equal(mem("18446744073709551616", &v), -ERANGE);
	assert_int_equal(mem("99999999999999999999999999G", &v), -ERANGE);
	assert_int_equal(mem("18446744073709551615K", &v), -ERANGE);
	/* the largest values that fit */
	assert_int_equal(mem("16777215T", &v), 0);
	assert_int_equal(v, 16777215ULL * TIB);
	assert_int_equal(mem("17592186044415", &v), 0);
	assert_int_equal(v, 17592186044415ULL * MIB);
	assert_int_equal(mem("18014398509481983K", &v), 0);
	assert_int_equal(v, 18014398509481983ULL * KIB);
}

static void test_u64(void **state)
{
	uint64_t v = 7;

	(void)state;
	assert_int_equal(size_parse_u64("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(size_parse_u64("42", &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(size_parse_u64("010", &v), 0);
	assert_int_equal(v, 10);
	assert_int_equal(size_parse_u64("18446744073709551615", &v), 0);
	assert_int_equal(v, UINT64_MAX);

	v = 7;
	assert_int_equal(size_parse_u64("18446744073709551616", &v), -ERANGE);
	assert_int_equal(size_parse_u64("99999999999999999999999", &v), -ERANGE);
	assert_int_equal(size_parse_u64("", &v), -EINVAL);
	assert_int_equal(size_parse_u64(NULL, &v), -EINVAL);
	assert_int_equal(size_parse_u64("-1", &v), -EINVAL);
	assert_int_equal(size_parse_u64("+1", &v), -EINVAL);
	assert_int_equal(size_parse_u64(" 1", &v), -EINVAL);
	assert_int_equal(size_parse_u64("1 ", &v), -EINVAL);
	assert_int_equal(size_parse_u64("1x", &v), -EINVAL);
	assert_int_equal(size_parse_u64("0x10", &v), -EINVAL);
	assert_int_equal(size_parse_u64("4K", &v), -EINVAL);
	assert_int_equal(size_parse_u64("abc", &v), -EINVAL);
	assert_int_equal(v, 7); /* untouched on every error */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mem_units),
		cmocka_unit_test(test_mem_bare_number_is_mib),
		cmocka_unit_test(test_mem_ib_and_b_suffixes),
		cmocka_unit_test(test_mem_garbage),
		cmocka_unit_test(test_mem_overflow),
		cmocka_unit_test(test_u64),
	};

	return cmocka_run_group_tests_name("size", tests, NULL, NULL);
}
