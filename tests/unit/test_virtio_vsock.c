/* Unit tests for the merge of vhost's dirty log into a migration's dirty
 * bitmaps (virtio_vsock_log_take in virtio/vsock.c): no vhost needed.
 *
 * vhost's log has one bit per 4 KiB page of guest-physical address space (bit
 * n = page at gpa n * 4096, set with atomic bit operations by the kernel); a
 * migration keeps one bitmap per RAM region whose bit p is page p of the
 * region. Below 4 GiB and above it, as vm/mem.c lays guest memory out. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "virtio/vsock.h"
#include "vm/mem.h"

#define PG 4096ULL
#define G4 0x100000000ULL

static void set_page(uint64_t *log, uint64_t page)
{
	__atomic_fetch_or(&log[page / 64], 1ULL << (page % 64), __ATOMIC_RELAXED);
}

static int test_bit(const uint64_t *bm, uint64_t bit)
{
	return (int)((bm[bit / 64] >> (bit % 64)) & 1);
}

static uint64_t count_bits(const uint64_t *bm, uint64_t words)
{
	uint64_t n = 0;
	for (uint64_t w = 0; w < words; w++)
		n += (uint64_t)__builtin_popcountll(bm[w]);
	return n;
}

/* A region starting at page 0: bits keep their index and leave the log. */
static void test_aligned(void **state)
{
	(void)state;
	uint64_t log[4] = { 0 }, bm[4] = { 0 };
	const uint64_t pages[] = { 0, 5, 63, 64, 200, 255 };

	for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
		set_page(log, pages[i]);
	assert_int_equal(virtio_vsock_log_take(log, 256, 0, 256 * PG, bm), 6);
	for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
		assert_true(test_bit(bm, pages[i]));
	assert_int_equal(count_bits(bm, 4), 6);
	assert_int_equal(count_bits(log, 4), 0);
	/* nothing new: nothing moves, the bitmap keeps what it had */
	assert_int_equal(virtio_vsock_log_take(log, 256, 0, 256 * PG, bm), 0);
	assert_int_equal(count_bits(bm, 4), 6);
}

/* The bitmap is ORed into, never overwritten. */
static void test_or_into_bitmap(void **state)
{
	(void)state;
	uint64_t log[2] = { 0 }, bm[2] = { 0 };

	bm[0] = 1ULL << 7;
	set_page(log, 9);
	set_page(log, 70);
	assert_int_equal(virtio_vsock_log_take(log, 128, 0, 128 * PG, bm), 2);
	assert_true(test_bit(bm, 7));
	assert_true(test_bit(bm, 9));
	assert_true(test_bit(bm, 70));
	assert_int_equal(count_bits(bm, 2), 3);
}

/* A range that does not start on a log word: bits are shifted to the range's
 * first page, and pages outside the range stay in the log. */
static void test_unaligned_range(void **state)
{
	(void)state;
	uint64_t log[4] = { 0 }, bm[2] = { 0 };
	const uint64_t first = 10, n = 100; /* pages [10, 110) */

	set_page(log, 9);   /* before */
	set_page(log, 10);  /* -> bit 0 */
	set_page(log, 73);  /* -> bit 63 */
	set_page(log, 74);  /* -> bit 64 (crosses a bitmap word) */
	set_page(log, 109); /* -> bit 99 */
	set_page(log, 110); /* after */
	assert_int_equal(virtio_vsock_log_take(log, 256, first * PG, n * PG, bm), 4);
	assert_true(test_bit(bm, 0));
	assert_true(test_bit(bm, 63));
	assert_true(test_bit(bm, 64));
	assert_true(test_bit(bm, 99));
	assert_int_equal(count_bits(bm, 2), 4);
	assert_true(test_bit(log, 9));
	assert_true(test_bit(log, 110));
	assert_int_equal(count_bits(log, 4), 2);
}

/* A range past the end of the log is cut at the log's end (ASan checks that
 * nothing beyond it is read); a range wholly past it takes nothing. */
static void test_range_beyond_log(void **state)
{
	(void)state;
	uint64_t *log = calloc(2, 8), bm[4] = { 0 };

	assert_non_null(log);
	set_page(log, 99);
	assert_int_equal(virtio_vsock_log_take(log, 100, 0, 200 * PG, bm), 1);
	assert_true(test_bit(bm, 99));
	assert_int_equal(virtio_vsock_log_take(log, 100, 100 * PG, 50 * PG, bm), 0);
	assert_int_equal(virtio_vsock_log_take(log, 100, G4, 50 * PG, bm), 0);
	free(log);
}

/* Guest memory as vm/mem.c lays it out: 64 KiB with a 16 KiB low limit are
 * [0, 16K) and [4G, 4G + 48K). Each region's bitmap gets its own pages, the
 * hole's bits (none are set by a kernel, but a bogus one) go nowhere. */
static void test_layout_regions(void **state)
{
	(void)state;
	struct guest_mem m;
	uint8_t *buf = calloc(1, 64 * 1024);
	uint64_t end = G4 + 48 * 1024, log_pages = end / PG;
	uint64_t *log = calloc((log_pages + 63) / 64, 8);
	uint64_t bm[MEM_MAX_REGIONS][1] = { { 0 } };

	assert_non_null(buf);
	assert_non_null(log);
	mem_init_fake(&m, buf, 64 * 1024, 16 * 1024);
	assert_int_equal(m.nr_regions, 2);
	set_page(log, 3);                /* gpa 12K: low page 3 */
	set_page(log, 0x80000);          /* gpa 2G: in the hole */
	set_page(log, G4 / PG + 2);      /* gpa 4G + 8K: high page 2 */
	set_page(log, G4 / PG + 11);     /* gpa 4G + 44K: the last high page */
	for (int i = 0; i < m.nr_regions; i++)
		virtio_vsock_log_take(log, log_pages, m.regions[i].gpa, m.regions[i].len, bm[i]);
	assert_int_equal(bm[0][0], 1ULL << 3);
	assert_int_equal(bm[1][0], 1ULL << 2 | 1ULL << 11);
	assert_int_equal(count_bits(log, (log_pages + 63) / 64), 1); /* the hole's */
	mem_free(&m);
	free(log);
	free(buf);
}

/* While "the kernel" sets bits, takes move each set bit exactly once: none is
 * lost between the fetch and the clear, none is counted twice. */
#define RACE_PAGES 4096

struct racer {
	uint64_t *log;
	_Atomic int done;
};

static void *race_writer(void *arg)
{
	struct racer *r = arg;
	for (uint64_t k = 0; k < RACE_PAGES; k++)
		set_page(r->log, (k * 2654435761ULL) % RACE_PAGES); /* odd multiplier: a permutation */
	atomic_store(&r->done, 1);
	return NULL;
}

static void test_concurrent_take(void **state)
{
	(void)state;
	uint64_t log[RACE_PAGES / 64] = { 0 }, bm[RACE_PAGES / 64] = { 0 }, moved = 0;
	struct racer r = { .log = log };
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, race_writer, &r), 0);
	while (!atomic_load(&r.done))
		moved += virtio_vsock_log_take(log, RACE_PAGES, 0, RACE_PAGES * PG, bm);
	pthread_join(t, NULL);
	moved += virtio_vsock_log_take(log, RACE_PAGES, 0, RACE_PAGES * PG, bm);
	assert_int_equal(moved, RACE_PAGES);
	assert_int_equal(count_bits(bm, RACE_PAGES / 64), RACE_PAGES);
	assert_int_equal(count_bits(log, RACE_PAGES / 64), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_aligned),
		cmocka_unit_test(test_or_into_bitmap),
		cmocka_unit_test(test_unaligned_range),
		cmocka_unit_test(test_range_beyond_log),
		cmocka_unit_test(test_layout_regions),
		cmocka_unit_test(test_concurrent_take),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
