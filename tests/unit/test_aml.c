/* Unit tests for the AML encoder (arch/x86/aml.c), byte for byte against the
 * ACPI 6.4 specification: PkgLength (20.2.4), integer constants (20.2.3),
 * name strings (20.2.2), EISA IDs (the _HID compression, 6.1.5) and resource
 * descriptors (6.4.2 small items, 6.4.3 large items). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/aml.h"

#define B(...) ((const uint8_t[]){ __VA_ARGS__ }), sizeof((const uint8_t[]){ __VA_ARGS__ })

static void expect(struct aml *a, const uint8_t *want, size_t n)
{
	assert_int_equal(a->err, 0);
	assert_int_equal(a->len, n);
	assert_memory_equal(a->data, want, n);
}

/* Check a short encoding and free it (freed first, so a failure leaks nothing). */
static void expect_free(struct aml *a, const uint8_t *want, size_t n)
{
	uint8_t got[64] = { 0 };
	size_t len = a->len;
	int err = a->err;

	memcpy(got, a->data, len < sizeof(got) ? len : sizeof(got));
	aml_free(a);
	assert_int_equal(err, 0);
	assert_int_equal(len, n);
	assert_memory_equal(got, want, n);
}

/* The first n bytes of p are want. */
static void starts_with(const uint8_t *p, const uint8_t *want, size_t n)
{
	assert_memory_equal(p, want, n);
}

/* ---- integers ---- */

static void int_is(uint64_t v, const uint8_t *want, size_t n)
{
	struct aml a = { 0 };
	aml_int(&a, v);
	expect_free(&a, want, n);
}

static void test_int_shortest(void **state)
{
	(void)state;
	int_is(0, B(0x00));                          /* ZeroOp */
	int_is(1, B(0x01));                          /* OneOp */
	int_is(2, B(0x0a, 0x02));                    /* BytePrefix */
	int_is(0xff, B(0x0a, 0xff));
	int_is(0x100, B(0x0b, 0x00, 0x01));          /* WordPrefix */
	int_is(0xffff, B(0x0b, 0xff, 0xff));
	int_is(0x10000, B(0x0c, 0x00, 0x00, 0x01, 0x00)); /* DWordPrefix */
	int_is(0x12345678, B(0x0c, 0x78, 0x56, 0x34, 0x12));
	int_is(0xffffffff, B(0x0c, 0xff, 0xff, 0xff, 0xff));
	int_is(0x100000000ULL, B(0x0e, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00)); /* QWord */
	int_is(0x0123456789abcdefULL, B(0x0e, 0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01));
	int_is(UINT64_MAX, B(0x0e, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff));
}

/* ---- PkgLength ---- */

/* Decode a PkgLength at p: returns the value, *n the bytes it took. */
static uint32_t pkglen_decode(const uint8_t *p, size_t *n)
{
	unsigned follow = p[0] >> 6;
	*n = 1 + follow;
	if (!follow)
		return p[0] & 0x3f;
	assert_int_equal(p[0] & 0x30, 0); /* bits 5:4 reserved in multi-byte encodings */
	uint32_t v = p[0] & 0x0f;
	for (unsigned i = 0; i < follow; i++)
		v |= (uint32_t)p[1 + i] << (4 + 8 * i);
	return v;
}

/* ScopeOp with a body of `body` pattern bytes; checks the layout and returns
 * the PkgLength encoding's size. */
static size_t scope_with_body(size_t body, const uint8_t *want_pkg, size_t want_n)
{
	static const uint8_t scope_op = 0x10;
	struct aml a = { 0 };
	uint8_t *pat = malloc(body ? body : 1);

	assert_non_null(pat);
	for (size_t i = 0; i < body; i++)
		pat[i] = (uint8_t)(i * 7 + 3);
	size_t mark = aml_open(&a, &scope_op, 1);
	assert_int_equal(mark, 1);
	aml_bytes(&a, pat, body);
	aml_close(&a, mark);
	assert_int_equal(a.err, 0);
	assert_int_equal(a.data[0], 0x10);
	size_t n;
	uint32_t v = pkglen_decode(a.data + 1, &n);
	assert_int_equal(a.len, 1 + n + body);
	assert_int_equal(v, n + body); /* PkgLength counts itself and the body */
	assert_memory_equal(a.data + 1 + n, pat, body);
	if (want_pkg) {
		assert_int_equal(n, want_n);
		assert_memory_equal(a.data + 1, want_pkg, want_n);
	}
	free(pat);
	aml_free(&a);
	return n;
}

static void test_pkglength_boundaries(void **state)
{
	(void)state;
	/* one byte: up to 63 */
	scope_with_body(0, B(0x01));
	scope_with_body(1, B(0x02));
	scope_with_body(62, B(0x3f));
	/* two bytes: 64 .. 4095 (body 63 -> 65, since the encoding grew) */
	scope_with_body(63, B(0x41, 0x04));
	scope_with_body(64, B(0x42, 0x04));
	scope_with_body(253, B(0x4f, 0x0f));
	scope_with_body(4093, B(0x4f, 0xff));
	/* three bytes: 4096 .. 1048575 */
	scope_with_body(4094, B(0x81, 0x00, 0x01));
	scope_with_body(4095, B(0x82, 0x00, 0x01));
	scope_with_body(0xfffff - 3, B(0x8f, 0xff, 0xff));
	/* four bytes: from 1048576 */
	scope_with_body(0xfffff - 2, B(0xc1, 0x00, 0x00, 0x01));
	scope_with_body(0x123456, B(0xca, 0x45, 0x23, 0x01));
	/* every size across the first two boundaries decodes consistently */
	for (size_t b = 0; b < 4200; b++) {
		size_t n = scope_with_body(b, NULL, 0);
		assert_int_equal(n, b + 1 <= 63 ? 1 : b + 2 <= 4095 ? 2 : 3);
	}
}

static void test_nested_scope_device(void **state)
{
	static const uint8_t scope_op = 0x10, device_op[2] = { 0x5b, 0x82 };
	struct aml a = { 0 };

	(void)state;
	size_t s = aml_open(&a, &scope_op, 1);
	aml_name(&a, "\\_SB_");
	size_t d = aml_open(&a, device_op, 2);
	aml_name(&a, "PCI0");
	aml_bytes(&a, "\x08", 1);
	aml_name(&a, "_HID");
	aml_int(&a, aml_eisaid("PNP0A08"));
	aml_close(&a, d);
	aml_close(&a, s);
	/* Scope (\_SB) { Device (PCI0) { Name (_HID, EisaId ("PNP0A08")) } } */
	expect(&a, B(0x10, 0x17, '\\', '_', 'S', 'B', '_', 0x5b, 0x82, 0x0f, 'P', 'C', 'I', '0', 0x08,
	             '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x0a, 0x08));
	aml_free(&a);

	/* an inner object that needs two PkgLength bytes shifts the outer one */
	struct aml b = { 0 };
	uint8_t big[100];
	memset(big, 0xa5, sizeof(big));
	s = aml_open(&b, &scope_op, 1);
	d = aml_open(&b, device_op, 2);
	aml_bytes(&b, big, sizeof(big));
	aml_close(&b, d);
	aml_close(&b, s);
	/* inner: 5b 82 + pkg(2) + 100 = 104; outer body 104 -> 106 = 0x6a */
	assert_int_equal(b.len, 1 + 2 + 104);
	starts_with(b.data, B(0x10, 0x4a, 0x06, 0x5b, 0x82, 0x46, 0x06));
	assert_memory_equal(b.data + 7, big, sizeof(big));
	aml_free(&b);
}

/* ---- names ---- */

static void name_is(const char *path, const uint8_t *want, size_t n)
{
	struct aml a = { 0 };
	aml_name(&a, path);
	expect_free(&a, want, n);
}

static void test_names(void **state)
{
	(void)state;
	name_is("PCI0", B('P', 'C', 'I', '0'));
	name_is("_SB", B('_', 'S', 'B', '_')); /* short segments padded with '_' */
	name_is("_S5_", B('_', 'S', '5', '_'));
	name_is("\\_SB_", B('\\', '_', 'S', 'B', '_'));
	/* DualNamePrefix */
	name_is("_SB_.PCI0", B(0x2e, '_', 'S', 'B', '_', 'P', 'C', 'I', '0'));
	name_is("\\_SB_.PCI0", B('\\', 0x2e, '_', 'S', 'B', '_', 'P', 'C', 'I', '0'));
	name_is("\\_SB.PCI0", B('\\', 0x2e, '_', 'S', 'B', '_', 'P', 'C', 'I', '0'));
	/* MultiNamePrefix with a segment count */
	name_is("_SB_.PCI0.S08_", B(0x2f, 0x03, '_', 'S', 'B', '_', 'P', 'C', 'I', '0', 'S', '0', '8',
	                            '_'));
	name_is("\\_SB_.PCI0.ISA_.RTC", B('\\', 0x2f, 0x04, '_', 'S', 'B', '_', 'P', 'C', 'I', '0', 'I',
	                                  'S', 'A', '_', 'R', 'T', 'C', '_'));
}

/* The root alone is RootChar followed by NullName (0x00): Scope (\) is
 * 10 05 5c 00 ... Today aml_name("\\") emits just the 5c, and the byte that
 * follows is then parsed as the start of a name. */
static void test_name_root_only(void **state)
{
	(void)state;
	name_is("\\", B('\\', 0x00));
}

/* ---- EISA IDs ---- */

static void test_eisaid(void **state)
{
	(void)state;
	assert_int_equal(aml_eisaid("PNP0A08"), 0x080AD041); /* PCI Express root bridge */
	assert_int_equal(aml_eisaid("PNP0A03"), 0x030AD041); /* PCI root bridge */
	assert_int_equal(aml_eisaid("PNP0501"), 0x0105D041); /* 16550 UART */
	assert_int_equal(aml_eisaid("PNP0C0F"), 0x0F0CD041); /* PCI interrupt link */
	assert_int_equal(aml_eisaid("PNP0B00"), 0x000BD041); /* RTC */
	/* "ABC" packs to 0x0443: 00001 00010 00011 */
	assert_int_equal(aml_eisaid("ABC1234"), 0x34124304);
	assert_int_equal(aml_eisaid("ZZZFFFF"), 0xFFFF5A6B);
}

/* ---- resource descriptors ---- */

static void test_res_word_bus(void **state)
{
	struct aml a = { 0 };

	(void)state;
	/* WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, 0, 0xff, 0, 0x100) */
	aml_res_word_bus(&a, 0, 0xff);
	expect(&a, B(0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x00, 0x00,
	             0x00, 0x00, 0x01));
	aml_free(&a);
}

static void test_res_word_io(void **state)
{
	struct aml a = { 0 };

	(void)state;
	/* WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,
	 *         0, 0x0000, 0x0cf7, 0, 0x0cf8) */
	aml_res_word_io(&a, 0x0000, 0x0cf7);
	expect(&a, B(0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0x00, 0x00, 0x00, 0x00, 0xf7, 0x0c, 0x00,
	             0x00, 0xf8, 0x0c));
	aml_free(&a);
	aml_res_word_io(&a, 0x0d00, 0xfffe);
	expect(&a, B(0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0x00, 0x00, 0x00, 0x0d, 0xfe, 0xff, 0x00,
	             0x00, 0xff, 0xf2));
	aml_free(&a);
}

static void test_res_dword_mem(void **state)
{
	struct aml a = { 0 };

	(void)state;
	/* DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable,
	 *              ReadWrite, 0, 0xc0000000, 0xdfffffff, 0, 0x20000000) */
	aml_res_dword_mem(&a, 0xc0000000, 0xdfffffff, 0);
	expect(&a, B(0x87, 0x17, 0x00, 0x00, 0x0c, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	             0xc0, 0xff, 0xff, 0xff, 0xdf, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20));
	aml_free(&a);
	/* Cacheable: type-specific bits 2:1 = 01, bit 0 ReadWrite */
	aml_res_dword_mem(&a, 0x1000, 0x1fff, 1);
	assert_int_equal(a.len, 26);
	assert_int_equal(a.data[5], 0x03);
	aml_free(&a);
}

static void test_res_qword_mem(void **state)
{
	struct aml a = { 0 };

	(void)state;
	/* QWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, Cacheable,
	 *              ReadWrite, 0, 0x100000000, 0x10fffffff, 0, 0x10000000) */
	aml_res_qword_mem(&a, 0x100000000ULL, 0x10fffffffULL, 1);
	expect(&a, B(0x8a, 0x2b, 0x00, 0x00, 0x0c, 0x03,
	             0, 0, 0, 0, 0, 0, 0, 0,
	             0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
	             0xff, 0xff, 0xff, 0x0f, 0x01, 0x00, 0x00, 0x00,
	             0, 0, 0, 0, 0, 0, 0, 0,
	             0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00));
	aml_free(&a);
	aml_res_qword_mem(&a, 0x800000000ULL, 0x1800000000ULL - 1, 0);
	assert_int_equal(a.len, 46);
	assert_int_equal(a.data[5], 0x01);
	aml_free(&a);
}

static void test_res_io_and_end(void **state)
{
	struct aml a = { 0 };

	(void)state;
	/* IO (Decode16, 0x0cf8, 0x0cf8, 0x01, 0x08) */
	aml_res_io(&a, 0x0cf8, 8);
	aml_res_end(&a);
	expect(&a, B(0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08, 0x79, 0x00));
	aml_free(&a);
}

/* A whole _CRS buffer: Name (_CRS, ResourceTemplate () { ... }) */
static void test_crs_buffer(void **state)
{
	static const uint8_t buffer_op = 0x11;
	struct aml res = { 0 }, a = { 0 };

	(void)state;
	aml_res_word_bus(&res, 0, 0);
	aml_res_io(&res, 0xcf8, 8);
	aml_res_end(&res);
	assert_int_equal(res.len, 16 + 8 + 2);
	aml_bytes(&a, "\x08", 1);
	aml_name(&a, "_CRS");
	size_t m = aml_open(&a, &buffer_op, 1);
	aml_int(&a, res.len);
	aml_bytes(&a, res.data, res.len);
	aml_close(&a, m);
	/* 08 '_CRS' 11 PkgLength(1 + 2 + 26 = 29) 0a 1a <26 bytes> */
	assert_int_equal(a.len, 1 + 4 + 1 + 1 + 2 + 26);
	starts_with(a.data, B(0x08, '_', 'C', 'R', 'S', 0x11, 0x1d, 0x0a, 0x1a, 0x88));
	assert_memory_equal(a.data + 9, res.data, res.len);
	aml_free(&res);
	aml_free(&a);
	assert_null(a.data);
	assert_int_equal(a.len, 0);
}

static void test_bytes_grow(void **state)
{
	struct aml a = { 0 };
	uint8_t chunk[37];

	(void)state;
	for (int i = 0; i < 1000; i++) {
		memset(chunk, (uint8_t)i, sizeof(chunk));
		aml_bytes(&a, chunk, sizeof(chunk));
	}
	assert_int_equal(a.err, 0);
	assert_int_equal(a.len, 37000);
	assert_true(a.cap >= a.len);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(a.data[37 * i + 36], (uint8_t)i);
	aml_free(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_int_shortest),
		cmocka_unit_test(test_pkglength_boundaries),
		cmocka_unit_test(test_nested_scope_device),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_name_root_only),
		cmocka_unit_test(test_eisaid),
		cmocka_unit_test(test_res_word_bus),
		cmocka_unit_test(test_res_word_io),
		cmocka_unit_test(test_res_dword_mem),
		cmocka_unit_test(test_res_qword_mem),
		cmocka_unit_test(test_res_io_and_end),
		cmocka_unit_test(test_crs_buffer),
		cmocka_unit_test(test_bytes_grow),
	};

	return cmocka_run_group_tests_name("aml", tests, NULL, NULL);
}
