/* Unit tests for virtio-balloon (virtio/balloon.c).
 *
 * Fake guest memory: 2 MiB of mmap'd anonymous host memory with a 1 MiB low
 * limit (guest RAM [0, 1M) and [4G, 4G + 1M)), so MADV_DONTNEED really drops
 * pages and they read back as zeroes. The tests play the transport (their own
 * struct virtio_dev, its lock held around every op, counting interrupt stubs)
 * and the driver (rings written into the fake memory). Queue q: descriptor
 * table at 0x1000 + q * 0x4000, available ring 0x1000 above, used ring 0x2000
 * above. PFN arrays and stats at 0x30000; the pages ballooned live from
 * 0x80000 (low) and 4G + 0x40000 (high). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "state/sbuf.h"
#include "virtio/balloon.h"
#include "vm/mem.h"

#define MIB (1024ULL * 1024)
#define G4 0x100000000ULL
#define MEM_SIZE (2 * MIB)
#define MEM_LOW MIB
#define QSIZE 16
#define NQ VIRTIO_BALLOON_QUEUES
#define ARR_GPA 0x30000ULL
#define PAGES_GPA 0x80000ULL
#define HIGH_PAGES_GPA (G4 + 0x40000ULL)
#define PG 4096ULL

struct fx {
	uint8_t *buf;
	struct guest_mem m;
	struct virtio_dev vd;
	struct virtio_balloon *b;
	uint16_t next_desc[NQ], avail_idx[NQ];
	unsigned irq_queue[NQ], irq_config;
};

static void irq_queue(struct virtio_dev *vd, uint16_t q)
{
	struct fx *f = vd->transport;
	if (q < NQ)
		f->irq_queue[q]++;
}

static void irq_config(struct virtio_dev *vd)
{
	struct fx *f = vd->transport;
	f->irq_config++;
}

static uint64_t desc_gpa(uint16_t q) { return 0x1000 + (uint64_t)q * 0x4000; }
static uint64_t avail_gpa(uint16_t q) { return desc_gpa(q) + 0x1000; }
static uint64_t used_gpa(uint16_t q) { return desc_gpa(q) + 0x2000; }

static uint8_t *hva(struct fx *f, uint64_t gpa)
{
	return mem_ptr(&f->m, gpa, 1);
}

static void put16(struct fx *f, uint64_t gpa, uint16_t v) { memcpy(hva(f, gpa), &v, 2); }
static void put32(struct fx *f, uint64_t gpa, uint32_t v) { memcpy(hva(f, gpa), &v, 4); }
static void put64(struct fx *f, uint64_t gpa, uint64_t v) { memcpy(hva(f, gpa), &v, 8); }

static uint16_t get16(struct fx *f, uint64_t gpa)
{
	uint16_t v;
	memcpy(&v, hva(f, gpa), 2);
	return v;
}

static struct fx *make(const struct virtio_balloon_opts *o, uint64_t features)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->buf = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (f->buf == MAP_FAILED) {
		free(f);
		return NULL;
	}
	mem_init_fake(&f->m, f->buf, MEM_SIZE, MEM_LOW);
	f->b = virtio_balloon_create(o);
	if (!f->b)
		return NULL;
	struct virtio_dev *vd = &f->vd;
	vd->ops = &virtio_balloon_ops;
	vd->priv = f->b;
	vd->mem = &f->m;
	vd->transport = f;
	vd->irq_queue = irq_queue;
	vd->irq_config = irq_config;
	pthread_mutex_init(&vd->lock, NULL);
	vd->host_features = virtio_balloon_ops.features(f->b) | 1ULL << VIRTIO_F_VERSION_1;
	vd->guest_features = (features | 1ULL << VIRTIO_F_VERSION_1) & vd->host_features;
	for (int q = 0; q < VIRTIO_MAX_QUEUES; q++)
		vd->vqs[q].mem = &f->m;
	virtio_balloon_attach(f->b, vd);
	return f;
}

static int setup(void **state)
{
	struct virtio_balloon_opts o = { .target = 0, .free_page_reporting = true };
	*state = make(&o, 1ULL << VIRTIO_BALLOON_F_STATS_VQ | 1ULL << VIRTIO_BALLOON_F_PAGE_REPORTING);
	return *state ? 0 : -1;
}

static void destroy(struct fx *f)
{
	virtio_balloon_destroy(f->b);
	pthread_mutex_destroy(&f->vd.lock);
	munmap(f->buf, MEM_SIZE);
	free(f);
}

static int teardown(void **state)
{
	destroy(*state);
	return 0;
}

/* The driver enables queues 0..n-1 and sets DRIVER_OK. */
static void driver_up(struct fx *f, uint16_t n)
{
	struct virtio_dev *vd = &f->vd;
	for (uint16_t q = 0; q < n; q++) {
		struct virtq *vq = &vd->vqs[q];
		vq->size = QSIZE;
		vq->desc_gpa = desc_gpa(q);
		vq->avail_gpa = avail_gpa(q);
		vq->used_gpa = used_gpa(q);
		assert_int_equal(virtq_start(vq), 0);
	}
	pthread_mutex_lock(&vd->lock);
	vd->status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
	             VIRTIO_STATUS_DRIVER_OK;
	assert_int_equal(vd->ops->activate(vd->priv, vd), 0);
	pthread_mutex_unlock(&vd->lock);
}

/* One descriptor (gpa, len) on queue q, made available and kicked. */
static void post(struct fx *f, uint16_t q, uint64_t gpa, uint32_t len, int write)
{
	uint16_t d = f->next_desc[q];
	uint64_t at = desc_gpa(q) + 16 * (uint64_t)d;
	put64(f, at, gpa);
	put32(f, at + 8, len);
	put16(f, at + 12, write ? 2 : 0);
	put16(f, at + 14, 0);
	f->next_desc[q] = (uint16_t)((d + 1) % QSIZE);
	put16(f, avail_gpa(q) + 4 + 2 * (uint64_t)(f->avail_idx[q] % QSIZE), d);
	f->avail_idx[q]++;
	put16(f, avail_gpa(q) + 2, f->avail_idx[q]);
	pthread_mutex_lock(&f->vd.lock);
	f->vd.ops->queue_notify(f->vd.priv, q);
	pthread_mutex_unlock(&f->vd.lock);
}

/* Post a PFN array on the inflate (q 0) or deflate (q 1) queue. */
static void post_pfns(struct fx *f, uint16_t q, const uint32_t *pfns, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		put32(f, ARR_GPA + 4 * (uint64_t)i, pfns[i]);
	post(f, q, ARR_GPA, 4 * n, 0);
}

static uint16_t used_idx(struct fx *f, uint16_t q) { return get16(f, used_gpa(q) + 2); }

static void fill_pages(struct fx *f, uint64_t gpa, unsigned n, uint8_t v)
{
	memset(hva(f, gpa), v, n * PG);
}

static int page_is(struct fx *f, uint64_t gpa, uint8_t v)
{
	const uint8_t *p = hva(f, gpa);
	for (size_t i = 0; i < PG; i++)
		if (p[i] != v)
			return 0;
	return 1;
}

static struct virtio_balloon_counters counters(struct fx *f)
{
	struct virtio_balloon_counters c;
	virtio_balloon_counters(f->b, &c);
	return c;
}

static uint32_t cfg32(struct fx *f, uint32_t off)
{
	uint8_t b[4];
	pthread_mutex_lock(&f->vd.lock);
	f->vd.ops->config_read(f->vd.priv, off, b, 4);
	pthread_mutex_unlock(&f->vd.lock);
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void cfg_write(struct fx *f, uint32_t off, const void *v, uint32_t len)
{
	pthread_mutex_lock(&f->vd.lock);
	f->vd.ops->config_write(f->vd.priv, off, v, len);
	pthread_mutex_unlock(&f->vd.lock);
}

/* ---- inflate / deflate ---- */

static void test_inflate_drops_pages(void **state)
{
	struct fx *f = *state;
	driver_up(f, 4);
	fill_pages(f, PAGES_GPA, 4, 0xaa);
	fill_pages(f, HIGH_PAGES_GPA, 2, 0xbb);
	uint32_t pfns[] = { PAGES_GPA >> 12, (PAGES_GPA >> 12) + 1, (PAGES_GPA >> 12) + 3,
		            (uint32_t)(HIGH_PAGES_GPA >> 12) + 1 };
	post_pfns(f, 0, pfns, 4);
	assert_int_equal(used_idx(f, 0), 1);
	assert_int_equal(f->irq_queue[0], 1);
	assert_true(page_is(f, PAGES_GPA, 0));
	assert_true(page_is(f, PAGES_GPA + PG, 0));
	assert_true(page_is(f, PAGES_GPA + 2 * PG, 0xaa)); /* not named: kept */
	assert_true(page_is(f, PAGES_GPA + 3 * PG, 0));
	assert_true(page_is(f, HIGH_PAGES_GPA, 0xbb));
	assert_true(page_is(f, HIGH_PAGES_GPA + PG, 0));
	struct virtio_balloon_counters c = counters(f);
	assert_int_equal(c.inflated, 4);
	assert_int_equal(c.dropped, 4);
	assert_int_equal(c.bad_pfns, 0);
	assert_int_equal(c.madvise_errors, 0);
}

static void test_inflate_skips_pfns_outside_ram(void **state)
{
	struct fx *f = *state;
	driver_up(f, 4);
	/* the pages next to every edge of RAM */
	fill_pages(f, MEM_LOW - PG, 1, 0x5a);
	fill_pages(f, G4, 1, 0x5b);
	fill_pages(f, G4 + MEM_SIZE - MEM_LOW - PG, 1, 0x5b);
	uint32_t pfns[] = {
		(uint32_t)(MEM_LOW >> 12),              /* first page of the hole */
		(uint32_t)((G4 - PG) >> 12),            /* last page below 4G */
		(uint32_t)((G4 + MEM_SIZE - MEM_LOW) >> 12), /* just past high RAM */
		0xffffffffu,
	};
	post_pfns(f, 0, pfns, 4);
	struct virtio_balloon_counters c = counters(f);
	assert_int_equal(c.bad_pfns, 4);
	assert_int_equal(c.inflated, 0);
	assert_int_equal(c.dropped, 0);
	assert_int_equal(used_idx(f, 0), 1);
	assert_false(f->vd.status & VIRTIO_STATUS_NEEDS_RESET);
	/* nothing was dropped anywhere */
	assert_true(page_is(f, MEM_LOW - PG, 0x5a));
	assert_true(page_is(f, G4, 0x5b));
	assert_true(page_is(f, G4 + MEM_SIZE - MEM_LOW - PG, 0x5b));
}

static void test_inflate_odd_lengths(void **state)
{
	struct fx *f = *state;
	driver_up(f, 4);
	fill_pages(f, PAGES_GPA, 1, 0xaa);
	/* 6 bytes: one whole PFN and a 2-byte tail that is ignored */
	put32(f, ARR_GPA, PAGES_GPA >> 12);
	put16(f, ARR_GPA + 4, 0x1234);
	post(f, 0, ARR_GPA, 6, 0);
	assert_true(page_is(f, PAGES_GPA, 0));
	/* an empty buffer and a device-writable one are returned, nothing done */
	post(f, 0, ARR_GPA, 0, 0);
	post(f, 0, ARR_GPA, 64, 1);
	assert_int_equal(used_idx(f, 0), 3);
	assert_int_equal(counters(f).inflated, 1);
}

static void test_deflate_accounts_only(void **state)
{
	struct fx *f = *state;
	driver_up(f, 4);
	fill_pages(f, PAGES_GPA, 2, 0xcc);
	uint32_t pfns[] = { PAGES_GPA >> 12, (PAGES_GPA >> 12) + 1, 0xfffffff0u };
	post_pfns(f, 1, pfns, 3);
	assert_int_equal(used_idx(f, 1), 1);
	assert_true(page_is(f, PAGES_GPA, 0xcc));
	assert_true(page_is(f, PAGES_GPA + PG, 0xcc));
	struct virtio_balloon_counters c = counters(f);
	assert_int_equal(c.deflated, 2);
	assert_int_equal(c.bad_pfns, 1);
	assert_int_equal(c.dropped, 0);
}

/* ---- free page reporting ---- */

static void test_reporting_drops_whole_pages(void **state)
{
	struct fx *f = *state;
	driver_up(f, 4); /* STATS + REPORTING: reporting_vq is queue 3 */
	fill_pages(f, PAGES_GPA, 8, 0xdd);
	post(f, 3, PAGES_GPA, 3 * PG, 1);
	assert_int_equal(used_idx(f, 3), 1);
	assert_true(page_is(f, PAGES_GPA, 0));
	assert_true(page_is(f, PAGES_GPA + 2 * PG, 0));
	assert_true(page_is(f, PAGES_GPA + 3 * PG, 0xdd));
	/* an unaligned range: only the page wholly inside goes */
	post(f, 3, PAGES_GPA + 4 * PG + 0x800, (uint32_t)(2 * PG), 1);
	assert_true(page_is(f, PAGES_GPA + 4 * PG, 0xdd));
	assert_true(page_is(f, PAGES_GPA + 5 * PG, 0));
	assert_true(page_is(f, PAGES_GPA + 6 * PG, 0xdd));
	/* less than a page: nothing */
	post(f, 3, PAGES_GPA + 7 * PG, 100, 1);
	assert_true(page_is(f, PAGES_GPA + 7 * PG, 0xdd));
	assert_int_equal(used_idx(f, 3), 3);
	assert_int_equal(counters(f).reported_bytes, 4 * PG);
}

static void test_reporting_outside_ram_refused(void **state)
{
	struct fx *f = *state;
	driver_up(f, 4);
	fill_pages(f, MEM_LOW - 2 * PG, 2, 0xee);
	/* starts in RAM, runs into the hole */
	post(f, 3, MEM_LOW - 2 * PG, (uint32_t)(4 * PG), 1);
	assert_true(f->vd.status & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(used_idx(f, 3), 0);
	assert_true(page_is(f, MEM_LOW - 2 * PG, 0xee));
	assert_true(page_is(f, MEM_LOW - PG, 0xee));
	assert_int_equal(counters(f).reported_bytes, 0);
	assert_int_equal(counters(f).dropped, 0);
}

static void test_queue_numbering(void **state)
{
	(void)state;
	/* without STATS_VQ, reporting_vq is queue 2 */
	struct virtio_balloon_opts o = { .free_page_reporting = true };
	struct fx *f = make(&o, 1ULL << VIRTIO_BALLOON_F_PAGE_REPORTING);
	assert_non_null(f);
	driver_up(f, 5);
	fill_pages(f, PAGES_GPA, 2, 0x11);
	post(f, 2, PAGES_GPA, (uint32_t)PG, 1);
	assert_true(page_is(f, PAGES_GPA, 0));
	/* a driver numbering by the spec's table uses 4 */
	post(f, 4, PAGES_GPA + PG, (uint32_t)PG, 1);
	assert_true(page_is(f, PAGES_GPA + PG, 0));
	/* queue 3 has no role here: its buffers are left alone */
	fill_pages(f, PAGES_GPA, 1, 0x22);
	post(f, 3, PAGES_GPA, (uint32_t)PG, 1);
	assert_true(page_is(f, PAGES_GPA, 0x22));
	assert_int_equal(used_idx(f, 3), 0);
	destroy(f);

	/* reporting off: the feature is not offered and queue 2 is not served */
	struct virtio_balloon_opts off = { 0 };
	f = make(&off, 1ULL << VIRTIO_BALLOON_F_PAGE_REPORTING);
	assert_non_null(f);
	assert_false(f->vd.host_features & (1ULL << VIRTIO_BALLOON_F_PAGE_REPORTING));
	assert_false(f->vd.host_features & (1ULL << VIRTIO_BALLOON_F_DEFLATE_ON_OOM));
	assert_true(f->vd.host_features & (1ULL << VIRTIO_BALLOON_F_STATS_VQ));
	driver_up(f, 3);
	fill_pages(f, PAGES_GPA, 1, 0x33);
	post(f, 2, PAGES_GPA, (uint32_t)PG, 1);
	assert_true(page_is(f, PAGES_GPA, 0x33));
	destroy(f);

	struct virtio_balloon_opts oom = { .deflate_on_oom = true };
	f = make(&oom, 0);
	assert_non_null(f);
	assert_true(f->vd.host_features & (1ULL << VIRTIO_BALLOON_F_DEFLATE_ON_OOM));
	destroy(f);
}

/* ---- configuration ---- */

static void test_target_and_actual(void **state)
{
	(void)state;
	struct virtio_balloon_opts o = { .target = MIB };
	struct fx *f = make(&o, 0);
	assert_non_null(f);
	assert_int_equal(cfg32(f, 0), 256);
	assert_int_equal(virtio_balloon_target(f->b), MIB);
	/* before DRIVER_OK: no interrupt */
	assert_int_equal(virtio_balloon_set_target(f->b, 2 * MIB + 100), 0);
	assert_int_equal(cfg32(f, 0), 512);
	assert_int_equal(f->irq_config, 0);
	driver_up(f, 2);
	assert_int_equal(virtio_balloon_set_target(f->b, MIB / 2), 0);
	assert_int_equal(cfg32(f, 0), 128);
	assert_int_equal(f->irq_config, 1);
	assert_int_equal(virtio_balloon_set_target(f->b, MIB / 2), 0); /* unchanged: no interrupt */
	assert_int_equal(f->irq_config, 1);
	assert_int_equal(virtio_balloon_set_target(f->b, MEM_SIZE + PG), -EINVAL);
	assert_int_equal(cfg32(f, 0), 128);

	/* the driver writes actual; num_pages is not its to change */
	uint32_t v = 77;
	cfg_write(f, 4, &v, 4);
	assert_int_equal(virtio_balloon_actual(f->b), 77 * PG);
	assert_int_equal(cfg32(f, 4), 77);
	v = 999;
	cfg_write(f, 0, &v, 4);
	assert_int_equal(cfg32(f, 0), 128);
	uint16_t hi = 1;
	cfg_write(f, 6, &hi, 2);
	assert_int_equal(cfg32(f, 4), 77 + 65536);
	uint8_t all[8] = { 9, 9, 9, 9, 5, 0, 0, 0 };
	cfg_write(f, 0, all, 8);
	assert_int_equal(cfg32(f, 0), 128);
	assert_int_equal(cfg32(f, 4), 5);
	/* a device reset forgets the driver's balloon */
	pthread_mutex_lock(&f->vd.lock);
	f->vd.ops->reset(f->vd.priv);
	pthread_mutex_unlock(&f->vd.lock);
	assert_int_equal(virtio_balloon_actual(f->b), 0);
	assert_int_equal(virtio_balloon_target(f->b), MIB / 2);
	destroy(f);
}

static void test_parse(void **state)
{
	struct virtio_balloon_opts o;
	char err[256];
	(void)state;

	assert_int_equal(virtio_balloon_parse(NULL, 512 * MIB, &o, err, sizeof(err)), 0);
	assert_int_equal(o.target, 0);
	assert_false(o.free_page_reporting);
	assert_false(o.deflate_on_oom);
	assert_int_equal(virtio_balloon_parse("", 512 * MIB, &o, err, sizeof(err)), 0);
	assert_int_equal(virtio_balloon_parse("target=362M,free_page_reporting=on,deflate_on_oom=on",
	                                      512 * MIB, &o, err, sizeof(err)), 0);
	assert_int_equal(o.target, 362 * MIB);
	assert_true(o.free_page_reporting);
	assert_true(o.deflate_on_oom);
	assert_int_equal(virtio_balloon_parse("deflate_on_oom=off,target=1G", 2048 * MIB, &o, err,
	                                      sizeof(err)), 0);
	assert_int_equal(o.target, 1024 * MIB);
	assert_false(o.deflate_on_oom);
	assert_int_equal(virtio_balloon_parse("target=100", 512 * MIB, &o, err, sizeof(err)), 0);
	assert_int_equal(o.target, 100 * MIB); /* a bare number is MiB, as --memory */

	const char *bad[] = { "target=", "target=abc", "target=600M", "size=1M", "target",
		              "free_page_reporting=yes", "deflate_on_oom=", "target=1M,,x=1",
		              "target=99999999999999999999" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(virtio_balloon_parse(bad[i], 512 * MIB, &o, err, sizeof(err)), -EINVAL);
		assert_true(strncmp(err, "--balloon: ", 11) == 0);
		assert_null(strchr(err, '\n'));
	}
}

/* ---- statistics ---- */

static void put_stat(struct fx *f, uint64_t gpa, uint16_t tag, uint64_t val)
{
	put16(f, gpa, tag);
	memcpy(hva(f, gpa + 2), &val, 8); /* packed: the value is not aligned */
}

static void test_stats(void **state)
{
	struct fx *f = *state;
	struct virtio_balloon_stats st;

	assert_int_equal(virtio_balloon_request_stats(f->b), -EAGAIN);
	driver_up(f, 4);
	assert_int_equal(virtio_balloon_stats(f->b, &st), -ENODATA);
	put_stat(f, ARR_GPA, VIRTIO_BALLOON_S_MEMFREE, 123456789);
	put_stat(f, ARR_GPA + 10, 99, 5); /* unknown tag: ignored */
	put_stat(f, ARR_GPA + 20, VIRTIO_BALLOON_S_MEMTOT, 1ULL << 33);
	post(f, 2, ARR_GPA, 30, 0);
	/* the buffer is held, not returned */
	assert_int_equal(used_idx(f, 2), 0);
	assert_int_equal(virtio_balloon_stats(f->b, &st), 0);
	assert_int_equal(st.updates, 1);
	assert_int_equal(st.valid, 1ULL << VIRTIO_BALLOON_S_MEMFREE | 1ULL << VIRTIO_BALLOON_S_MEMTOT);
	assert_int_equal(st.val[VIRTIO_BALLOON_S_MEMFREE], 123456789);
	assert_int_equal(st.val[VIRTIO_BALLOON_S_MEMTOT], 1ULL << 33);

	/* the host wants fresh numbers: the buffer goes back */
	assert_int_equal(virtio_balloon_request_stats(f->b), 0);
	assert_int_equal(used_idx(f, 2), 1);
	assert_int_equal(f->irq_queue[2], 1);
	assert_int_equal(virtio_balloon_request_stats(f->b), -EAGAIN);

	/* the driver answers with a new buffer */
	put_stat(f, ARR_GPA, VIRTIO_BALLOON_S_MEMFREE, 42);
	post(f, 2, ARR_GPA, 10, 0);
	assert_int_equal(virtio_balloon_stats(f->b, &st), 0);
	assert_int_equal(st.updates, 2);
	assert_int_equal(st.val[VIRTIO_BALLOON_S_MEMFREE], 42);

	/* a second buffer while one is held returns the first */
	post(f, 2, ARR_GPA, 10, 0);
	assert_int_equal(used_idx(f, 2), 2);
	assert_int_equal(virtio_balloon_request_stats(f->b), 0);
	assert_int_equal(used_idx(f, 2), 3);
}

/* ---- state ---- */

static void test_save_load(void **state)
{
	struct fx *f = *state;
	struct sbuf s = { 0 }, s2 = { 0 }, r;

	driver_up(f, 4);
	assert_int_equal(virtio_balloon_set_target(f->b, 300 * PG), 0);
	uint32_t v = 120;
	cfg_write(f, 4, &v, 4);
	put_stat(f, ARR_GPA, VIRTIO_BALLOON_S_AVAIL, 777);
	post(f, 2, ARR_GPA, 10, 0);
	uint32_t pfns[] = { PAGES_GPA >> 12, 0xffffffffu };
	post_pfns(f, 0, pfns, 2);
	virtio_balloon_ops.save(f->b, &s);
	assert_int_equal(s.err, 0);

	struct virtio_balloon_opts o = { 0 };
	struct virtio_balloon *b2 = virtio_balloon_create(&o);
	assert_non_null(b2);
	sbuf_reader(&r, s.data, s.len);
	assert_int_equal(virtio_balloon_ops.load(b2, &r), 0);
	assert_int_equal(r.pos, s.len);
	assert_int_equal(virtio_balloon_target(b2), 300 * PG);
	assert_int_equal(virtio_balloon_actual(b2), 120 * PG);
	struct virtio_balloon_stats st;
	assert_int_equal(virtio_balloon_stats(b2, &st), 0);
	assert_int_equal(st.val[VIRTIO_BALLOON_S_AVAIL], 777);
	struct virtio_balloon_counters c;
	virtio_balloon_counters(b2, &c);
	assert_int_equal(c.inflated, 1);
	assert_int_equal(c.bad_pfns, 1);
	virtio_balloon_ops.save(b2, &s2);
	assert_int_equal(s2.len, s.len);
	assert_memory_equal(s2.data, s.data, s.len);

	/* truncated anywhere: refused, and nothing half-loaded */
	for (size_t n = 0; n < s.len; n++) {
		struct virtio_balloon *b3 = virtio_balloon_create(&o);
		assert_non_null(b3);
		sbuf_reader(&r, s.data, n);
		assert_int_equal(virtio_balloon_ops.load(b3, &r), -EINVAL);
		assert_int_equal(virtio_balloon_target(b3), 0);
		virtio_balloon_destroy(b3);
	}
	/* bad values: held flag 2, a stats bit beyond the known tags */
	uint8_t *bad = malloc(s.len);
	assert_non_null(bad);
	memcpy(bad, s.data, s.len);
	bad[8] = 2;
	sbuf_reader(&r, bad, s.len);
	assert_int_equal(virtio_balloon_ops.load(b2, &r), -EINVAL);
	memcpy(bad, s.data, s.len);
	bad[17 + 1] = 0x80; /* valid mask, bits 8..15: bit 15 is no tag */
	sbuf_reader(&r, bad, s.len);
	assert_int_equal(virtio_balloon_ops.load(b2, &r), -EINVAL);
	free(bad);
	virtio_balloon_destroy(b2);
	sbuf_free(&s);
	sbuf_free(&s2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_inflate_drops_pages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inflate_skips_pfns_outside_ram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inflate_odd_lengths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deflate_accounts_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reporting_drops_whole_pages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reporting_outside_ram_refused, setup, teardown),
		cmocka_unit_test(test_queue_numbering),
		cmocka_unit_test(test_target_and_actual),
		cmocka_unit_test(test_parse),
		cmocka_unit_test_setup_teardown(test_stats, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_load, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
