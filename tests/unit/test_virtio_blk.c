/* Unit tests for virtio-blk (virtio/blk.c) with fake guest memory. The test
 * plays the transport and the driver: it builds descriptor chains and rings
 * by hand in a 2 MiB buffer, kicks the queue with the device lock held, and
 * drives the event loop until the used ring shows the completions.
 *
 * Guest layout: descriptor table at 0x1000 (256 entries), avail ring at
 * 0x3000, used ring at 0x4000, indirect tables from 0x8000, and request
 * headers, data and status bytes allocated upwards from 0x10000. The disk is
 * a 1 MiB temporary file (2048 sectors) filled with a known pattern. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "block/aio.h"
#include "block/overlay.h"
#include "virtio/blk.h"
#include "virtio/virtio.h"
#include "vm/evloop.h"
#include "vm/mem.h"

#define KIB 1024u
#define MIB (1024u * 1024u)
#define MEM_SIZE (2 * MIB)
#define QSIZE 256
#define DESC_GPA 0x1000
#define AVAIL_GPA 0x3000
#define USED_GPA 0x4000
#define INDIRECT_GPA 0x8000
#define DATA_GPA 0x10000
#define DISK_SIZE (1 * MIB)
#define DISK_SECTORS (DISK_SIZE / 512)

struct params {
	bool readonly;
	bool uring; /* io_uring engine (when the kernel allows it) instead of the fallback */
	const char *serial;
};

static const struct params p_sync = { false, false, "CVISOR-SERIAL-000001" };
static const struct params p_uring = { false, true, "" };
static const struct params p_ro = { true, false, "" };

struct fixture {
	const struct params *p;
	uint8_t *ram;
	struct guest_mem mem;
	char path[64];
	int fd; /* the test's own view of the image */
	struct evloop *loop;
	struct virtio_blk *vb;
	struct virtio_dev vdev;
	int irqs, config_irqs;
	uint16_t avail_idx;
	uint16_t next_desc;
	uint64_t next_data;
	uint64_t next_indirect;
	char err[256];
};

struct seg {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

static uint8_t pattern(uint64_t off)
{
	return (uint8_t)(off * 13 + (off >> 9) * 7 + 1);
}

static struct fixture *fix_of(struct virtio_dev *vdev)
{
	return (struct fixture *)((uint8_t *)vdev - offsetof(struct fixture, vdev));
}

static void irq_queue(struct virtio_dev *vdev, uint16_t q)
{
	assert_int_equal(q, 0);
	fix_of(vdev)->irqs++;
}

static void irq_config(struct virtio_dev *vdev)
{
	fix_of(vdev)->config_irqs++;
}

/* ---- guest memory helpers ---- */

static void *gptr(struct fixture *f, uint64_t gpa, uint64_t len)
{
	void *p = mem_ptr(&f->mem, gpa, len);

	assert_non_null(p);
	return p;
}

static uint64_t galloc(struct fixture *f, uint64_t len)
{
	uint64_t gpa = f->next_data;

	f->next_data = (f->next_data + len + 15) & ~15ULL;
	assert_true(f->next_data <= MEM_SIZE);
	return gpa;
}

static void put16(struct fixture *f, uint64_t gpa, uint16_t v)
{
	v = htole16(v);
	memcpy(gptr(f, gpa, 2), &v, 2);
}

static void put32(struct fixture *f, uint64_t gpa, uint32_t v)
{
	v = htole32(v);
	memcpy(gptr(f, gpa, 4), &v, 4);
}

static void put64(struct fixture *f, uint64_t gpa, uint64_t v)
{
	v = htole64(v);
	memcpy(gptr(f, gpa, 8), &v, 8);
}

static uint16_t get16(struct fixture *f, uint64_t gpa)
{
	uint16_t v;

	memcpy(&v, gptr(f, gpa, 2), 2);
	return le16toh(v);
}

static uint32_t get32(struct fixture *f, uint64_t gpa)
{
	uint32_t v;

	memcpy(&v, gptr(f, gpa, 4), 4);
	return le32toh(v);
}

static void desc_at(struct fixture *f, uint64_t table, uint32_t i, uint64_t addr, uint32_t len,
                    uint16_t flags, uint16_t next)
{
	uint64_t d = table + 16ULL * i;

	put64(f, d, addr);
	put32(f, d + 8, len);
	put16(f, d + 12, flags);
	put16(f, d + 14, next);
}

/* Lay segs out as a chain in the descriptor table; returns the head. */
static uint16_t chain(struct fixture *f, const struct seg *segs, int n)
{
	uint16_t head = f->next_desc % QSIZE;

	for (int i = 0; i < n; i++) {
		uint16_t me = (uint16_t)((head + i) % QSIZE);
		uint16_t flags = (uint16_t)((segs[i].write ? VIRTQ_DESC_F_WRITE : 0) |
		                            (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));

		desc_at(f, DESC_GPA, me, segs[i].gpa, segs[i].len, flags,
		        (uint16_t)((me + 1) % QSIZE));
	}
	f->next_desc = (uint16_t)(f->next_desc + n);
	return head;
}

/* The same chain in an indirect table, referenced by one descriptor. */
static uint16_t chain_indirect(struct fixture *f, const struct seg *segs, int n)
{
	uint64_t table = f->next_indirect;
	uint16_t head = f->next_desc % QSIZE;

	f->next_indirect += 16ULL * (unsigned)n;
	assert_true(f->next_indirect <= DATA_GPA);
	for (int i = 0; i < n; i++) {
		uint16_t flags = (uint16_t)((segs[i].write ? VIRTQ_DESC_F_WRITE : 0) |
		                            (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));

		desc_at(f, table, (uint32_t)i, segs[i].gpa, segs[i].len, flags, (uint16_t)(i + 1));
	}
	desc_at(f, DESC_GPA, head, table, 16u * (unsigned)n, VIRTQ_DESC_F_INDIRECT, 0);
	f->next_desc++;
	return head;
}

static void avail_add(struct fixture *f, uint16_t head)
{
	put16(f, AVAIL_GPA + 4 + 2ULL * (f->avail_idx % QSIZE), head);
	f->avail_idx++;
	put16(f, AVAIL_GPA + 2, f->avail_idx);
}

static uint16_t used_idx(struct fixture *f)
{
	return get16(f, USED_GPA + 2);
}

static uint32_t used_id(struct fixture *f, uint16_t i)
{
	return get32(f, USED_GPA + 4 + 8ULL * (i % QSIZE));
}

static uint32_t used_len(struct fixture *f, uint16_t i)
{
	return get32(f, USED_GPA + 8 + 8ULL * (i % QSIZE));
}

static void kick(struct fixture *f)
{
	pthread_mutex_lock(&f->vdev.lock);
	virtio_blk_ops.queue_notify(f->vb, 0);
	pthread_mutex_unlock(&f->vdev.lock);
}

/* Run the event loop until the used index reaches want (or a timeout). */
static void run_until(struct fixture *f, uint16_t want)
{
	for (int i = 0; i < 500 && used_idx(f) != want; i++)
		assert_true(evloop_run_once(f->loop, 10) >= 0);
	assert_int_equal(used_idx(f), want);
}

/* Run the loop for a while, whatever happens. */
static void run_idle(struct fixture *f, int rounds)
{
	for (int i = 0; i < rounds; i++)
		assert_true(evloop_run_once(f->loop, 2) >= 0);
}

static bool needs_reset(struct fixture *f)
{
	return f->vdev.status & VIRTIO_STATUS_NEEDS_RESET;
}

/* A request header in guest memory. */
static uint64_t hdr(struct fixture *f, uint32_t type, uint64_t sector)
{
	uint64_t gpa = galloc(f, 16);

	put32(f, gpa, type);
	put32(f, gpa + 4, 0);
	put64(f, gpa + 8, sector);
	return gpa;
}

static uint64_t status_byte(struct fixture *f)
{
	uint64_t gpa = galloc(f, 1);

	*(uint8_t *)gptr(f, gpa, 1) = 0xff;
	return gpa;
}

static uint8_t st(struct fixture *f, uint64_t gpa)
{
	return *(uint8_t *)gptr(f, gpa, 1);
}

/* header, one data buffer (device-writable for IN), status */
static uint16_t req_rw(struct fixture *f, uint32_t type, uint64_t sector, uint64_t data,
                       uint32_t len, uint64_t status)
{
	struct seg s[3] = {
		{ hdr(f, type, sector), 16, false },
		{ data, len, type == VIRTIO_BLK_T_IN },
		{ status, 1, true },
	};

	if (len == 0) {
		s[1] = s[2];
		return chain(f, s, 2);
	}
	return chain(f, s, 3);
}

/* header + status only */
static uint16_t req_bare(struct fixture *f, uint32_t type, uint64_t status)
{
	struct seg s[2] = { { hdr(f, type, 0), 16, false }, { status, 1, true } };

	return chain(f, s, 2);
}

/* Submit one chain, kick, and wait for its completion; returns the status. */
static uint8_t submit(struct fixture *f, uint16_t head, uint64_t status)
{
	uint16_t want = (uint16_t)(used_idx(f) + 1);

	avail_add(f, head);
	kick(f);
	run_until(f, want);
	assert_int_equal(used_id(f, (uint16_t)(want - 1)), head);
	return st(f, status);
}

static void disk_read(struct fixture *f, void *buf, size_t len, uint64_t off)
{
	assert_int_equal(pread(f->fd, buf, len, (off_t)off), (ssize_t)len);
}

/* A checksum of the whole image, to show that a request did not touch it. */
static uint64_t disk_sum(struct fixture *f)
{
	static uint8_t buf[DISK_SIZE];
	uint64_t h = 1469598103934665603ULL;

	disk_read(f, buf, sizeof(buf), 0);
	for (size_t i = 0; i < sizeof(buf); i++)
		h = (h ^ buf[i]) * 1099511628211ULL;
	return h;
}

/* ---- fixture ---- */

/* Transport side: configure queue 0 and activate, as the PCI transport would. */
static void start_device(struct fixture *f, uint64_t drop_features)
{
	struct virtq *q = &f->vdev.vqs[0];

	f->vdev.host_features = virtio_blk_ops.features(f->vb) | 1ULL << VIRTIO_F_VERSION_1;
	f->vdev.guest_features = f->vdev.host_features & ~drop_features;
	f->vdev.status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
	                 VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK;
	virtq_reset(q);
	q->size = QSIZE;
	q->desc_gpa = DESC_GPA;
	q->avail_gpa = AVAIL_GPA;
	q->used_gpa = USED_GPA;
	q->mem = &f->mem;
	q->event_idx = virtio_has_feature(&f->vdev, VIRTIO_F_EVENT_IDX);
	q->indirect = virtio_has_feature(&f->vdev, VIRTIO_F_INDIRECT_DESC);
	q->ready = true;
	assert_int_equal(virtq_start(q), 0);
	pthread_mutex_lock(&f->vdev.lock);
	assert_int_equal(virtio_blk_ops.activate(f->vb, &f->vdev), 0);
	pthread_mutex_unlock(&f->vdev.lock);
	run_idle(f, 1);
}

/* The driver resets the device: transport and device forget everything. */
static void reset_device(struct fixture *f)
{
	pthread_mutex_lock(&f->vdev.lock);
	virtio_blk_ops.reset(f->vb);
	virtq_reset(&f->vdev.vqs[0]);
	f->vdev.status = 0;
	pthread_mutex_unlock(&f->vdev.lock);
	memset(f->ram, 0, DATA_GPA);
	f->avail_idx = 0;
	f->next_desc = 0;
	f->next_indirect = INDIRECT_GPA;
}

static int make_disk(struct fixture *f)
{
	static uint8_t buf[DISK_SIZE];
	int fd;

	snprintf(f->path, sizeof(f->path), "/tmp/cvisor-vblk-XXXXXX");
	fd = mkstemp(f->path);
	if (fd < 0)
		return -1;
	for (uint64_t i = 0; i < DISK_SIZE; i++)
		buf[i] = pattern(i);
	if (pwrite(fd, buf, DISK_SIZE, 0) != DISK_SIZE) {
		close(fd);
		return -1;
	}
	f->fd = fd;
	return 0;
}

static int create_device(struct fixture *f, struct virtio_blk **vb)
{
	struct virtio_blk_opts o;
	char arg[256];

	snprintf(arg, sizeof(arg), "path=%s,readonly=%s%s%s", f->path,
	         f->p->readonly ? "on" : "off", f->p->serial[0] ? ",serial=" : "", f->p->serial);
	if (virtio_blk_parse_opts(&o, arg, f->err, sizeof(f->err)) < 0)
		return -1;
	o.sync_io = !f->p->uring;
	return virtio_blk_create(vb, &o, f->loop, f->err, sizeof(f->err));
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->p = *state;
	f->fd = -1;
	f->ram = aligned_alloc(4096, MEM_SIZE);
	if (!f->ram)
		return -1;
	memset(f->ram, 0, MEM_SIZE);
	mem_init_fake(&f->mem, f->ram, MEM_SIZE, MEM_SIZE);
	f->next_data = DATA_GPA;
	f->next_indirect = INDIRECT_GPA;
	if (make_disk(f) < 0)
		return -1;
	f->loop = evloop_create();
	if (!f->loop)
		return -1;
	if (create_device(f, &f->vb) < 0) {
		print_error("%s\n", f->err);
		return -1;
	}
	f->vdev.ops = &virtio_blk_ops;
	f->vdev.priv = f->vb;
	f->vdev.mem = &f->mem;
	f->vdev.loop = f->loop;
	f->vdev.irq_queue = irq_queue;
	f->vdev.irq_config = irq_config;
	pthread_mutex_init(&f->vdev.lock, NULL);
	start_device(f, 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	virtio_blk_destroy(f->vb);
	evloop_destroy(f->loop);
	pthread_mutex_destroy(&f->vdev.lock);
	close(f->fd);
	unlink(f->path);
	free(f->ram);
	free(f);
	return 0;
}

/* ---- configuration ---- */

static uint32_t cfg32(struct fixture *f, uint32_t off)
{
	uint32_t v;

	virtio_blk_ops.config_read(f->vb, off, (uint8_t *)&v, 4);
	return le32toh(v);
}

static void test_features_and_config(void **state)
{
	struct fixture *f = *state;
	uint64_t feat = virtio_blk_ops.features(f->vb);
	struct virtio_blk_config c;
	uint8_t b[4];

	assert_int_equal(virtio_blk_ops.device_id, VIRTIO_ID_BLOCK);
	assert_int_equal(virtio_blk_ops.num_queues, 1);
	assert_int_equal(virtio_blk_ops.queue_max, 256);
	assert_int_equal(virtio_blk_ops.config_size, 72);
	for (unsigned bit = 0; bit < 64; bit++) {
		bool want = bit == VIRTIO_BLK_F_SEG_MAX || bit == VIRTIO_BLK_F_BLK_SIZE ||
		            bit == VIRTIO_BLK_F_FLUSH || bit == VIRTIO_BLK_F_TOPOLOGY ||
		            bit == VIRTIO_BLK_F_DISCARD || bit == VIRTIO_BLK_F_WRITE_ZEROES ||
		            bit == VIRTIO_F_EVENT_IDX || bit == VIRTIO_F_INDIRECT_DESC;

		assert_int_equal((feat >> bit) & 1, want);
	}
	virtio_blk_ops.config_read(f->vb, 0, (uint8_t *)&c, sizeof(c));
	assert_int_equal(le64toh(c.capacity), DISK_SECTORS);
	assert_int_equal(virtio_blk_capacity(f->vb), DISK_SECTORS);
	assert_int_equal(le32toh(c.seg_max), VIRTIO_BLK_SEG_MAX);
	assert_int_equal(le32toh(c.blk_size), 512);
	assert_true(c.physical_block_exp <= 3);
	assert_int_equal(c.alignment_offset, 0);
	assert_int_equal(le16toh(c.min_io_size), 1);
	assert_int_equal(le16toh(c.num_queues), 1);
	assert_int_equal(le32toh(c.max_discard_sectors), VIRTIO_BLK_MAX_DISCARD_SECTORS);
	assert_int_equal(le32toh(c.max_discard_seg), VIRTIO_BLK_MAX_DISCARD_SEG);
	assert_int_equal(le32toh(c.discard_sector_alignment), 1u << c.physical_block_exp);
	assert_int_equal(le32toh(c.max_write_zeroes_sectors), VIRTIO_BLK_MAX_WZ_SECTORS);
	assert_int_equal(le32toh(c.max_write_zeroes_seg), VIRTIO_BLK_MAX_WZ_SEG);
	assert_int_equal(c.write_zeroes_may_unmap, 1);
	assert_int_equal(c.writeback, 0);
	assert_int_equal(c.unused0, 0);
	assert_int_equal(c.unused1[0] | c.unused1[1] | c.unused1[2], 0);
	/* pieces of fields, at any offset */
	assert_int_equal(cfg32(f, 12), VIRTIO_BLK_SEG_MAX);
	virtio_blk_ops.config_read(f->vb, 1, b, 2);
	assert_int_equal(b[0], (DISK_SECTORS >> 8) & 0xff);
	/* writes change nothing */
	memset(b, 0xff, sizeof(b));
	virtio_blk_ops.config_write(f->vb, 32, b, 1);
	virtio_blk_ops.config_write(f->vb, 0, b, 4);
	assert_int_equal(cfg32(f, 0), DISK_SECTORS);
	virtio_blk_ops.config_read(f->vb, 32, b, 1);
	assert_int_equal(b[0], 0);
}

static void test_features_readonly(void **state)
{
	struct fixture *f = *state;
	uint64_t feat = virtio_blk_ops.features(f->vb);
	struct virtio_blk_config c;

	assert_true(feat & 1ULL << VIRTIO_BLK_F_RO);
	assert_false(feat & 1ULL << VIRTIO_BLK_F_DISCARD);
	assert_false(feat & 1ULL << VIRTIO_BLK_F_WRITE_ZEROES);
	assert_true(feat & 1ULL << VIRTIO_BLK_F_FLUSH);
	virtio_blk_ops.config_read(f->vb, 0, (uint8_t *)&c, sizeof(c));
	assert_int_equal(le64toh(c.capacity), DISK_SECTORS);
	assert_int_equal(c.max_discard_sectors, 0);
	assert_int_equal(c.max_write_zeroes_sectors, 0);
}

/* ---- requests that work ---- */

static void test_read(void **state)
{
	struct fixture *f = *state;
	uint64_t data = galloc(f, 4096), status = status_byte(f);
	uint16_t head = req_rw(f, VIRTIO_BLK_T_IN, 3, data, 4096, status);
	uint8_t *p;

	assert_int_equal(submit(f, head, status), VIRTIO_BLK_S_OK);
	assert_int_equal(used_len(f, 0), 4097);
	p = gptr(f, data, 4096);
	for (int i = 0; i < 4096; i++)
		assert_int_equal(p[i], pattern(3 * 512 + (uint64_t)i));
	assert_int_equal(f->irqs, 1);
	assert_int_equal(virtio_blk_inflight(f->vb), 0);
	/* the last sector */
	status = status_byte(f);
	head = req_rw(f, VIRTIO_BLK_T_IN, DISK_SECTORS - 1, data, 512, status);
	assert_int_equal(submit(f, head, status), VIRTIO_BLK_S_OK);
	assert_int_equal(p[511], pattern(DISK_SIZE - 1));
}

static void test_write(void **state)
{
	struct fixture *f = *state;
	uint64_t data = galloc(f, 1024), status = status_byte(f);
	uint8_t back[1024];
	uint16_t head;

	memset(gptr(f, data, 1024), 0xa5, 1024);
	head = req_rw(f, VIRTIO_BLK_T_OUT, 100, data, 1024, status);
	assert_int_equal(submit(f, head, status), VIRTIO_BLK_S_OK);
	assert_int_equal(used_len(f, 0), 1);
	disk_read(f, back, sizeof(back), 100 * 512);
	for (int i = 0; i < 1024; i++)
		assert_int_equal(back[i], 0xa5);
	disk_read(f, back, 512, 99 * 512);
	assert_int_equal(back[511], pattern(100 * 512 - 1));
	disk_read(f, back, 512, 102 * 512);
	assert_int_equal(back[0], pattern(102 * 512));
	/* a flush after it */
	status = status_byte(f);
	assert_int_equal(submit(f, req_bare(f, VIRTIO_BLK_T_FLUSH, status), status),
	                 VIRTIO_BLK_S_OK);
	/* an empty write is fine too */
	status = status_byte(f);
	assert_int_equal(submit(f, req_rw(f, VIRTIO_BLK_T_OUT, 5, 0, 0, status), status),
	                 VIRTIO_BLK_S_OK);
}

/* Framing is the driver's choice (2.6.4): header split in two, data in three
 * pieces, the last one sharing its descriptor with the status byte. */
static void test_any_layout(void **state)
{
	struct fixture *f = *state;
	uint64_t h = hdr(f, VIRTIO_BLK_T_IN, 8);
	uint64_t d1 = galloc(f, 100), d2 = galloc(f, 412), d3 = galloc(f, 513);
	struct seg s[5] = {
		{ h, 7, false }, { h + 7, 9, false },
		{ d1, 100, true }, { d2, 412, true }, { d3, 513, true },
	};
	uint8_t *p;
	uint16_t head;

	memset(gptr(f, d3, 513), 0xff, 513);
	head = chain(f, s, 5);
	assert_int_equal(submit(f, head, d3 + 512), VIRTIO_BLK_S_OK);
	assert_int_equal(used_len(f, 0), 1024 + 1);
	p = gptr(f, d1, 100);
	assert_int_equal(p[0], pattern(8 * 512));
	assert_int_equal(p[99], pattern(8 * 512 + 99));
	p = gptr(f, d2, 412);
	assert_int_equal(p[411], pattern(8 * 512 + 511));
	p = gptr(f, d3, 512);
	assert_int_equal(p[0], pattern(9 * 512));
	assert_int_equal(p[511], pattern(10 * 512 - 1));

	/* a write whose header and data share one readable buffer */
	{
		uint64_t buf = galloc(f, 16 + 512), status = status_byte(f);
		struct seg w[2] = { { buf, 16 + 512, false }, { status, 1, true } };
		uint8_t back[512];

		put32(f, buf, VIRTIO_BLK_T_OUT);
		put32(f, buf + 4, 0);
		put64(f, buf + 8, 20);
		memset(gptr(f, buf + 16, 512), 0x3c, 512);
		assert_int_equal(submit(f, chain(f, w, 2), status), VIRTIO_BLK_S_OK);
		disk_read(f, back, 512, 20 * 512);
		assert_int_equal(back[0], 0x3c);
		assert_int_equal(back[511], 0x3c);
	}
}

static void test_indirect(void **state)
{
	struct fixture *f = *state;
	uint64_t data = galloc(f, 2048), status = status_byte(f);
	struct seg s[4] = {
		{ hdr(f, VIRTIO_BLK_T_IN, 40), 16, false },
		{ data, 1024, true },
		{ data + 1024, 1024, true },
		{ status, 1, true },
	};
	uint8_t *p = gptr(f, data, 2048);

	assert_int_equal(submit(f, chain_indirect(f, s, 4), status), VIRTIO_BLK_S_OK);
	assert_int_equal(p[0], pattern(40 * 512));
	assert_int_equal(p[2047], pattern(40 * 512 + 2047));
}

static void test_get_id(void **state)
{
	struct fixture *f = *state;
	uint64_t id = galloc(f, 20), status = status_byte(f);
	struct seg s[3] = {
		{ hdr(f, VIRTIO_BLK_T_GET_ID, 0), 16, false },
		{ id, 20, true },
		{ status, 1, true },
	};

	memset(gptr(f, id, 20), 0x55, 20);
	assert_int_equal(submit(f, chain(f, s, 3), status), VIRTIO_BLK_S_OK);
	assert_int_equal(used_len(f, 0), 21);
	/* 20 characters exactly: no NUL */
	assert_memory_equal(gptr(f, id, 20), "CVISOR-SERIAL-000001", 20);
}

static void test_get_id_empty(void **state)
{
	struct fixture *f = *state;
	uint64_t id = galloc(f, 20), status = status_byte(f);
	struct seg s[3] = {
		{ hdr(f, VIRTIO_BLK_T_GET_ID, 0), 16, false },
		{ id, 20, true },
		{ status, 1, true },
	};
	static const uint8_t zero[20];

	memset(gptr(f, id, 20), 0x55, 20);
	assert_int_equal(submit(f, chain(f, s, 3), status), VIRTIO_BLK_S_OK);
	assert_memory_equal(gptr(f, id, 20), zero, 20);
}

/* discard / write zeroes: header + n segments, status */
static uint16_t req_dwz(struct fixture *f, uint32_t type, const uint64_t *sector,
                        const uint32_t *num, const uint32_t *flags, int n, uint64_t status)
{
	uint64_t segs = galloc(f, 16ULL * (unsigned)(n ? n : 1));
	struct seg s[3] = {
		{ hdr(f, type, 0), 16, false },
		{ segs, 16u * (unsigned)n, false },
		{ status, 1, true },
	};

	for (int i = 0; i < n; i++) {
		put64(f, segs + 16ULL * (unsigned)i, sector[i]);
		put32(f, segs + 16ULL * (unsigned)i + 8, num[i]);
		put32(f, segs + 16ULL * (unsigned)i + 12, flags[i]);
	}
	if (n == 0) {
		s[1] = s[2];
		return chain(f, s, 2);
	}
	return chain(f, s, 3);
}

static void check_disk_zero(struct fixture *f, uint64_t off, uint64_t len)
{
	static uint8_t buf[DISK_SIZE];

	disk_read(f, buf, len, off);
	for (uint64_t i = 0; i < len; i++)
		assert_int_equal(buf[i], 0);
}

static void check_disk_pattern(struct fixture *f, uint64_t off, uint64_t len)
{
	static uint8_t buf[DISK_SIZE];

	disk_read(f, buf, len, off);
	for (uint64_t i = 0; i < len; i++)
		assert_int_equal(buf[i], pattern(off + i));
}

static void test_write_zeroes(void **state)
{
	struct fixture *f = *state;
	uint64_t sec[2] = { 16, 64 };
	uint32_t num[2] = { 8, 3 }, flags[2] = { 0, VIRTIO_BLK_WZ_F_UNMAP };
	uint64_t status = status_byte(f);
	uint16_t head = req_dwz(f, VIRTIO_BLK_T_WRITE_ZEROES, sec, num, flags, 2, status);

	assert_int_equal(submit(f, head, status), VIRTIO_BLK_S_OK);
	assert_int_equal(used_len(f, 0), 1);
	check_disk_zero(f, 16 * 512, 8 * 512);
	check_disk_zero(f, 64 * 512, 3 * 512);
	check_disk_pattern(f, 15 * 512, 512);
	check_disk_pattern(f, 24 * 512, 40 * 512);
	check_disk_pattern(f, 67 * 512, 512);
}

static void test_discard(void **state)
{
	struct fixture *f = *state;
	uint64_t sec[1] = { 256 };
	uint32_t num[1] = { 256 }, flags[1] = { 0 };
	uint64_t status = status_byte(f);

	assert_int_equal(submit(f, req_dwz(f, VIRTIO_BLK_T_DISCARD, sec, num, flags, 1, status),
	                        status),
	                 VIRTIO_BLK_S_OK);
	/* what a discarded range reads as is undefined; the neighbours are kept */
	check_disk_pattern(f, 255 * 512, 512);
	check_disk_pattern(f, 512 * 512, 512);
	assert_int_equal(lseek(f->fd, 0, SEEK_END), DISK_SIZE);
}

#define NR_MANY 64

/* Many requests in flight at once, completed in any order, few interrupts. */
static void test_many_in_flight(void **state)
{
	struct fixture *f = *state;
	uint64_t data[NR_MANY], status[NR_MANY];
	uint16_t head[NR_MANY];
	bool seen[QSIZE] = { false };

	for (int i = 0; i < NR_MANY; i++) {
		uint32_t type = i % 2 ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;

		data[i] = galloc(f, 4096);
		status[i] = status_byte(f);
		memset(gptr(f, data[i], 4096), i, 4096);
		head[i] = req_rw(f, type, (uint64_t)i * 16, data[i], 4096, status[i]);
		avail_add(f, head[i]);
	}
	kick(f);
	run_until(f, NR_MANY);
	for (uint16_t i = 0; i < NR_MANY; i++) {
		uint32_t id = used_id(f, i);

		assert_true(id < QSIZE);
		assert_false(seen[id]);
		seen[id] = true;
	}
	for (int i = 0; i < NR_MANY; i++) {
		uint8_t *p = gptr(f, data[i], 4096);
		uint8_t back[4096];

		assert_true(seen[head[i]]);
		assert_int_equal(st(f, status[i]), VIRTIO_BLK_S_OK);
		if (i % 2) {
			disk_read(f, back, sizeof(back), (uint64_t)i * 16 * 512);
			assert_int_equal(back[0], i);
			assert_int_equal(back[4095], i);
		} else {
			assert_int_equal(p[0], pattern((uint64_t)i * 16 * 512));
			assert_int_equal(p[4095], pattern((uint64_t)i * 16 * 512 + 4095));
		}
	}
	/* one interrupt per batch of completions, not per request */
	assert_true(f->irqs >= 1);
	assert_true(f->irqs < NR_MANY / 2);
	if (!f->p->uring)
		assert_int_equal(f->irqs, 1);
	assert_int_equal(virtio_blk_inflight(f->vb), 0);
}

/* FLUSH offered but not negotiated: writes are made stable before completing. */
static void test_writethrough(void **state)
{
	struct fixture *f = *state;
	uint64_t data = galloc(f, 512), status = status_byte(f);
	uint8_t back[512];

	reset_device(f);
	start_device(f, 1ULL << VIRTIO_BLK_F_FLUSH);
	memset(gptr(f, data, 512), 0x42, 512);
	assert_int_equal(submit(f, req_rw(f, VIRTIO_BLK_T_OUT, 7, data, 512, status), status),
	                 VIRTIO_BLK_S_OK);
	disk_read(f, back, 512, 7 * 512);
	assert_int_equal(back[0], 0x42);
}

/* ---- requests that fail alone ---- */

static void expect_status(struct fixture *f, uint16_t head, uint64_t status, uint8_t want)
{
	assert_int_equal(submit(f, head, status), want);
	assert_false(needs_reset(f));
}

static void test_bad_header(void **state)
{
	struct fixture *f = *state;
	uint64_t sum = disk_sum(f);
	uint64_t h = hdr(f, VIRTIO_BLK_T_OUT, 0), data = galloc(f, 512), status = status_byte(f);
	struct seg s[3] = { { h, 8, false }, { data, 512, false }, { status, 1, true } };
	struct seg s2[1] = { { status, 1, true } };

	/* 8 readable bytes, then writable: header cut short */
	s[1].write = true;
	expect_status(f, chain(f, s, 3), status, VIRTIO_BLK_S_IOERR);
	assert_int_equal(used_len(f, 0), 1);
	/* no readable part at all */
	status = status_byte(f);
	s2[0].gpa = status;
	expect_status(f, chain(f, s2, 1), status, VIRTIO_BLK_S_IOERR);
	assert_int_equal(disk_sum(f), sum);
}

static void test_out_of_range(void **state)
{
	struct fixture *f = *state;
	uint64_t sum = disk_sum(f);
	uint64_t data = galloc(f, 1024);
	static const struct {
		uint32_t type;
		uint64_t sector;
		uint32_t len;
	} bad[] = {
		{ VIRTIO_BLK_T_OUT, DISK_SECTORS, 512 },
		{ VIRTIO_BLK_T_OUT, DISK_SECTORS - 1, 1024 },
		{ VIRTIO_BLK_T_IN, DISK_SECTORS, 512 },
		{ VIRTIO_BLK_T_OUT, DISK_SECTORS + 1, 0 },
		{ VIRTIO_BLK_T_OUT, UINT64_MAX, 512 },
		{ VIRTIO_BLK_T_OUT, UINT64_MAX / 512 + 1, 512 }, /* sector * 512 wraps to 0 */
		{ VIRTIO_BLK_T_IN, (UINT64_MAX - 511) / 512, 1024 },
		{ VIRTIO_BLK_T_OUT, 0, 100 },   /* not a multiple of 512 */
		{ VIRTIO_BLK_T_OUT, 0, 513 },
		{ VIRTIO_BLK_T_IN, 0, 1000 },
	};

	memset(gptr(f, data, 1024), 0xee, 1024);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t status = status_byte(f);

		expect_status(f, req_rw(f, bad[i].type, bad[i].sector, data, bad[i].len, status),
		              status, VIRTIO_BLK_S_IOERR);
	}
	assert_int_equal(disk_sum(f), sum);
	/* a failed read wrote nothing into the guest's buffer */
	assert_int_equal(*(uint8_t *)gptr(f, data, 1), 0xee);
}

static void test_wrong_direction(void **state)
{
	struct fixture *f = *state;
	uint64_t sum = disk_sum(f);
	uint64_t data = galloc(f, 512), status = status_byte(f);
	struct seg in_extra[4] = {
		{ hdr(f, VIRTIO_BLK_T_IN, 0), 16, false },
		{ data, 512, false }, /* readable data for a read */
		{ data, 512, true },
		{ status, 1, true },
	};
	struct seg out_extra[4] = {
		{ hdr(f, VIRTIO_BLK_T_OUT, 0), 16, false },
		{ data, 512, false },
		{ data, 512, true }, /* writable data for a write */
		{ status, 1, true },
	};
	struct seg flush_data[3] = {
		{ hdr(f, VIRTIO_BLK_T_FLUSH, 0), 16, false },
		{ data, 512, false },
		{ status, 1, true },
	};
	struct seg id_in[3] = {
		{ hdr(f, VIRTIO_BLK_T_GET_ID, 0), 16, false },
		{ data, 20, false },
		{ status, 1, true },
	};

	expect_status(f, chain(f, in_extra, 4), status, VIRTIO_BLK_S_IOERR);
	status = status_byte(f);
	out_extra[3].gpa = status;
	expect_status(f, chain(f, out_extra, 4), status, VIRTIO_BLK_S_IOERR);
	status = status_byte(f);
	flush_data[2].gpa = status;
	expect_status(f, chain(f, flush_data, 3), status, VIRTIO_BLK_S_IOERR);
	status = status_byte(f);
	id_in[2].gpa = status;
	expect_status(f, chain(f, id_in, 3), status, VIRTIO_BLK_S_IOERR);
	assert_int_equal(disk_sum(f), sum);
}

static void test_unsupported(void **state)
{
	struct fixture *f = *state;
	static const uint32_t types[] = { 2, 3, 5, 10, 14, 15, 16, 0x80000000u, 0x80000001u,
		                          UINT32_MAX };

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		uint64_t status = status_byte(f);

		expect_status(f, req_bare(f, types[i], status), status, VIRTIO_BLK_S_UNSUPP);
	}
}

/* More data segments than seg_max fails; exactly seg_max works. */
static void test_seg_max(void **state)
{
	struct fixture *f = *state;
	static struct seg s[VIRTIO_BLK_SEG_MAX + 3];
	uint64_t data = galloc(f, 512ULL * (VIRTIO_BLK_SEG_MAX + 1));
	uint64_t status = status_byte(f);
	int n = 0;

	s[n++] = (struct seg){ hdr(f, VIRTIO_BLK_T_IN, 0), 16, false };
	for (int i = 0; i < VIRTIO_BLK_SEG_MAX + 1; i++)
		s[n++] = (struct seg){ data + 512ULL * (unsigned)i, 512, true };
	s[n++] = (struct seg){ status, 1, true };
	expect_status(f, chain_indirect(f, s, n), status, VIRTIO_BLK_S_IOERR);
	/* one segment fewer */
	status = status_byte(f);
	s[n - 2] = (struct seg){ status, 1, true };
	expect_status(f, chain_indirect(f, s, n - 1), status, VIRTIO_BLK_S_OK);
	assert_int_equal(*(uint8_t *)gptr(f, data + 512ULL * (VIRTIO_BLK_SEG_MAX - 1) + 511, 1),
	                 pattern(512ULL * VIRTIO_BLK_SEG_MAX - 1));
}

static void test_bad_discard(void **state)
{
	struct fixture *f = *state;
	uint64_t sum = disk_sum(f);
	uint64_t sec[VIRTIO_BLK_MAX_DISCARD_SEG + 1];
	uint32_t num[VIRTIO_BLK_MAX_DISCARD_SEG + 1], flags[VIRTIO_BLK_MAX_DISCARD_SEG + 1];
	uint64_t status;

	for (int i = 0; i <= VIRTIO_BLK_MAX_DISCARD_SEG; i++) {
		sec[i] = (uint64_t)i * 8;
		num[i] = 8;
		flags[i] = 0;
	}
	/* unmap is not allowed on discard; unknown flags nowhere */
	flags[1] = VIRTIO_BLK_WZ_F_UNMAP;
	status = status_byte(f);
	expect_status(f, req_dwz(f, VIRTIO_BLK_T_DISCARD, sec, num, flags, 2, status), status,
	              VIRTIO_BLK_S_UNSUPP);
	flags[1] = 2;
	status = status_byte(f);
	expect_status(f, req_dwz(f, VIRTIO_BLK_T_WRITE_ZEROES, sec, num, flags, 2, status), status,
	              VIRTIO_BLK_S_UNSUPP);
	flags[1] = 0x80000000u;
	status = status_byte(f);
	expect_status(f, req_dwz(f, VIRTIO_BLK_T_DISCARD, sec, num, flags, 2, status), status,
	              VIRTIO_BLK_S_UNSUPP);
	flags[1] = 0;
	/* too many segments, none at all */
	status = status_byte(f);
	expect_status(f,
	              req_dwz(f, VIRTIO_BLK_T_DISCARD, sec, num, flags,
	                      VIRTIO_BLK_MAX_DISCARD_SEG + 1, status),
	              status, VIRTIO_BLK_S_IOERR);
	status = status_byte(f);
	expect_status(f, req_dwz(f, VIRTIO_BLK_T_WRITE_ZEROES, sec, num, flags, 0, status), status,
	              VIRTIO_BLK_S_IOERR);
	/* beyond the end, overflowing, over the per-request limit */
	sec[0] = DISK_SECTORS - 4;
	status = status_byte(f);
	expect_status(f, req_dwz(f, VIRTIO_BLK_T_WRITE_ZEROES, sec, num, flags, 1, status), status,
	              VIRTIO_BLK_S_IOERR);
	sec[0] = UINT64_MAX - 2;
	status = status_byte(f);
	expect_status(f, req_dwz(f, VIRTIO_BLK_T_DISCARD, sec, num, flags, 1, status), status,
	              VIRTIO_BLK_S_IOERR);
	sec[0] = 0;
	num[0] = VIRTIO_BLK_MAX_WZ_SECTORS + 1;
	status = status_byte(f);
	expect_status(f, req_dwz(f, VIRTIO_BLK_T_WRITE_ZEROES, sec, num, flags, 1, status), status,
	              VIRTIO_BLK_S_IOERR);
	/* a good first segment does not save a bad second one: nothing is done */
	num[0] = 8;
	sec[1] = DISK_SECTORS;
	status = status_byte(f);
	expect_status(f, req_dwz(f, VIRTIO_BLK_T_WRITE_ZEROES, sec, num, flags, 2, status), status,
	              VIRTIO_BLK_S_IOERR);
	/* segment data not a multiple of 16 bytes */
	{
		uint64_t segs = galloc(f, 24);
		struct seg s[3] = {
			{ hdr(f, VIRTIO_BLK_T_DISCARD, 0), 16, false },
			{ segs, 24, false },
			{ 0, 1, true },
		};

		status = status_byte(f);
		s[2].gpa = status;
		expect_status(f, chain(f, s, 3), status, VIRTIO_BLK_S_IOERR);
	}
	/* readable segments plus writable data */
	{
		uint64_t segs = galloc(f, 16), junk = galloc(f, 16);
		struct seg s[4] = {
			{ hdr(f, VIRTIO_BLK_T_WRITE_ZEROES, 0), 16, false },
			{ segs, 16, false },
			{ junk, 16, true },
			{ 0, 1, true },
		};

		put32(f, segs + 8, 1);
		status = status_byte(f);
		s[3].gpa = status;
		expect_status(f, chain(f, s, 4), status, VIRTIO_BLK_S_IOERR);
	}
	assert_int_equal(disk_sum(f), sum);
}

static void test_dwz_not_negotiated(void **state)
{
	struct fixture *f = *state;
	uint64_t sec[1] = { 0 }, status;
	uint32_t num[1] = { 8 }, flags[1] = { 0 };
	uint64_t sum = disk_sum(f);

	reset_device(f);
	start_device(f, 1ULL << VIRTIO_BLK_F_DISCARD | 1ULL << VIRTIO_BLK_F_WRITE_ZEROES);
	status = status_byte(f);
	expect_status(f, req_dwz(f, VIRTIO_BLK_T_DISCARD, sec, num, flags, 1, status), status,
	              VIRTIO_BLK_S_UNSUPP);
	status = status_byte(f);
	expect_status(f, req_dwz(f, VIRTIO_BLK_T_WRITE_ZEROES, sec, num, flags, 1, status), status,
	              VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(disk_sum(f), sum);
}

static void test_readonly_refuses_writes(void **state)
{
	struct fixture *f = *state;
	uint64_t sum = disk_sum(f);
	uint64_t data = galloc(f, 512), status = status_byte(f);
	uint64_t sec[1] = { 0 };
	uint32_t num[1] = { 8 }, flags[1] = { 0 };

	memset(gptr(f, data, 512), 0x99, 512);
	expect_status(f, req_rw(f, VIRTIO_BLK_T_OUT, 0, data, 512, status), status,
	              VIRTIO_BLK_S_IOERR);
	/* not negotiated on a read-only disk, so unsupported */
	status = status_byte(f);
	expect_status(f, req_dwz(f, VIRTIO_BLK_T_WRITE_ZEROES, sec, num, flags, 1, status), status,
	              VIRTIO_BLK_S_UNSUPP);
	status = status_byte(f);
	expect_status(f, req_dwz(f, VIRTIO_BLK_T_DISCARD, sec, num, flags, 1, status), status,
	              VIRTIO_BLK_S_UNSUPP);
	/* reads and flushes work */
	status = status_byte(f);
	expect_status(f, req_rw(f, VIRTIO_BLK_T_IN, 1, data, 512, status), status, VIRTIO_BLK_S_OK);
	assert_int_equal(*(uint8_t *)gptr(f, data, 1), pattern(512));
	status = status_byte(f);
	expect_status(f, req_bare(f, VIRTIO_BLK_T_FLUSH, status), status, VIRTIO_BLK_S_OK);
	assert_int_equal(disk_sum(f), sum);
}

/* A bad request between good ones fails alone. */
static void test_bad_among_good(void **state)
{
	struct fixture *f = *state;
	uint64_t d1 = galloc(f, 512), d2 = galloc(f, 512);
	uint64_t s1 = status_byte(f), s2 = status_byte(f), s3 = status_byte(f);

	avail_add(f, req_rw(f, VIRTIO_BLK_T_IN, 1, d1, 512, s1));
	avail_add(f, req_rw(f, VIRTIO_BLK_T_IN, DISK_SECTORS, d2, 512, s2));
	avail_add(f, req_rw(f, VIRTIO_BLK_T_IN, 2, d2, 512, s3));
	kick(f);
	run_until(f, 3);
	assert_int_equal(st(f, s1), VIRTIO_BLK_S_OK);
	assert_int_equal(st(f, s2), VIRTIO_BLK_S_IOERR);
	assert_int_equal(st(f, s3), VIRTIO_BLK_S_OK);
	assert_int_equal(*(uint8_t *)gptr(f, d2, 1), pattern(2 * 512));
	assert_false(needs_reset(f));
}

/* The host fails the I/O (here: the file size limit): the request gets
 * IOERR, the device goes on. */
static void test_host_io_error(void **state)
{
	struct fixture *f = *state;
	uint64_t data = galloc(f, 4096), first = status_byte(f), status;
	struct rlimit old, lim;
	void (*old_sig)(int);
	uint8_t got;

	memset(gptr(f, data, 4096), 0x11, 4096);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 64 * KIB;
	old_sig = signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	avail_add(f, req_rw(f, VIRTIO_BLK_T_OUT, 512, data, 4096, first));
	kick(f);
	run_until(f, 1);
	/* a second failure is not logged again */
	status = status_byte(f);
	avail_add(f, req_rw(f, VIRTIO_BLK_T_OUT, 600, data, 512, status));
	kick(f);
	run_until(f, 2);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, old_sig);
	assert_int_equal(st(f, first), VIRTIO_BLK_S_IOERR);
	assert_int_equal(st(f, status), VIRTIO_BLK_S_IOERR);
	assert_int_equal(used_len(f, 0), 1);
	assert_false(needs_reset(f));
	check_disk_pattern(f, 512 * 512, 4096);
	/* the device still works */
	status = status_byte(f);
	assert_int_equal(submit(f, req_rw(f, VIRTIO_BLK_T_IN, 512, data, 512, status), status),
	                 VIRTIO_BLK_S_OK);
	got = *(uint8_t *)gptr(f, data, 1);
	assert_int_equal(got, pattern(512 * 512));
}

/* The image shrank under us (another process truncated it): reads past the
 * new end of the file complete with zeroes rather than failing. */
static void test_image_shrank(void **state)
{
	struct fixture *f = *state;
	uint64_t data = galloc(f, 512), status = status_byte(f);

	assert_int_equal(ftruncate(f->fd, DISK_SIZE / 2), 0);
	/* reads past the new end of the file read zeroes */
	memset(gptr(f, data, 512), 0x77, 512);
	assert_int_equal(submit(f, req_rw(f, VIRTIO_BLK_T_IN, DISK_SECTORS - 1, data, 512, status),
	                        status),
	                 VIRTIO_BLK_S_OK);
	assert_int_equal(*(uint8_t *)gptr(f, data, 1), 0);
	assert_int_equal(*(uint8_t *)gptr(f, data + 511, 1), 0);
}

/* ---- chains that cannot be answered: NEEDS_RESET ---- */

static void expect_needs_reset(struct fixture *f, uint16_t head)
{
	uint16_t before = used_idx(f);

	avail_add(f, head);
	kick(f);
	run_idle(f, 3);
	assert_true(needs_reset(f));
	assert_int_equal(used_idx(f), before);
	assert_true(f->config_irqs >= 1);
	/* more kicks do nothing, and crash nothing */
	avail_add(f, head);
	kick(f);
	run_idle(f, 2);
	assert_int_equal(used_idx(f), before);
}

/* After NEEDS_RESET, a reset brings the device back to work. */
static void expect_recovers(struct fixture *f)
{
	uint64_t data, status;

	reset_device(f);
	start_device(f, 0);
	assert_false(needs_reset(f));
	data = galloc(f, 512);
	status = status_byte(f);
	assert_int_equal(submit(f, req_rw(f, VIRTIO_BLK_T_IN, DISK_SECTORS - 8, data, 512, status),
	                        status),
	                 VIRTIO_BLK_S_OK);
	assert_int_equal(*(uint8_t *)gptr(f, data, 1), pattern(DISK_SIZE - 8 * 512));
}

static void test_no_status_byte(void **state)
{
	struct fixture *f = *state;
	uint64_t data = galloc(f, 512);
	struct seg s[2] = { { hdr(f, VIRTIO_BLK_T_IN, 0), 16, false }, { data, 512, false } };

	expect_needs_reset(f, chain(f, s, 2));
	expect_recovers(f);
}

static void test_empty_status_byte(void **state)
{
	struct fixture *f = *state;
	uint64_t data = galloc(f, 512);
	struct seg s[3] = {
		{ hdr(f, VIRTIO_BLK_T_FLUSH, 0), 16, false },
		{ data, 0, true },
		{ data, 0, true },
	};

	expect_needs_reset(f, chain(f, s, 3));
	expect_recovers(f);
}

static void test_desc_outside_ram(void **state)
{
	struct fixture *f = *state;
	uint64_t status = status_byte(f);
	struct seg s[3] = {
		{ hdr(f, VIRTIO_BLK_T_IN, 0), 16, false },
		{ MEM_SIZE - 256, 512, true }, /* runs off the end of RAM */
		{ status, 1, true },
	};

	expect_needs_reset(f, chain(f, s, 3));
	assert_int_equal(st(f, status), 0xff);
	expect_recovers(f);
	s[1] = (struct seg){ UINT64_MAX - 100, 512, true };
	expect_needs_reset(f, chain(f, s, 3));
	expect_recovers(f);
	s[1] = (struct seg){ DATA_GPA, UINT32_MAX, true };
	expect_needs_reset(f, chain(f, s, 3));
	expect_recovers(f);
}

static void test_chain_loop(void **state)
{
	struct fixture *f = *state;
	uint64_t h = hdr(f, VIRTIO_BLK_T_IN, 0), data = galloc(f, 512);

	/* 10 -> 11 -> 10 ... */
	desc_at(f, DESC_GPA, 10, h, 16, VIRTQ_DESC_F_NEXT, 11);
	desc_at(f, DESC_GPA, 11, data, 512, VIRTQ_DESC_F_NEXT, 10);
	expect_needs_reset(f, 10);
	expect_recovers(f);
	/* a descriptor pointing at itself */
	desc_at(f, DESC_GPA, 12, h, 16, VIRTQ_DESC_F_NEXT, 12);
	expect_needs_reset(f, 12);
	expect_recovers(f);
}

static void test_ring_garbage(void **state)
{
	struct fixture *f = *state;
	uint64_t h = hdr(f, VIRTIO_BLK_T_IN, 0);

	/* head index past the queue */
	expect_needs_reset(f, QSIZE + 3);
	expect_recovers(f);
	/* next past the queue */
	desc_at(f, DESC_GPA, 20, h, 16, VIRTQ_DESC_F_NEXT, QSIZE);
	expect_needs_reset(f, 20);
	expect_recovers(f);
	/* an indirect table outside RAM */
	desc_at(f, DESC_GPA, 21, MEM_SIZE, 64, VIRTQ_DESC_F_INDIRECT, 0);
	expect_needs_reset(f, 21);
	expect_recovers(f);
	/* the available index jumping far ahead */
	put16(f, AVAIL_GPA + 2, (uint16_t)(f->avail_idx + QSIZE + 10));
	kick(f);
	run_idle(f, 2);
	assert_true(needs_reset(f));
	expect_recovers(f);
}

/* ---- reset, slots, save/load ---- */

#define NR_RESET 32

/* No completion writes to guest memory once reset() has returned. */
static void test_reset_with_io_in_flight(void **state)
{
	struct fixture *f = *state;
	uint64_t data = galloc(f, 32 * KIB * NR_RESET), status[NR_RESET];
	uint8_t *copy = malloc(MEM_SIZE);

	assert_non_null(copy);
	memset(gptr(f, data, 32 * KIB * NR_RESET), 0xcc, 32 * KIB * NR_RESET);
	for (int i = 0; i < NR_RESET; i++) {
		status[i] = status_byte(f);
		avail_add(f, req_rw(f, i % 3 ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT,
		                    (uint64_t)(i % 16) * 64, data + 32ULL * KIB * (unsigned)i,
		                    32 * KIB, status[i]));
	}
	kick(f);
	assert_true(virtio_blk_inflight(f->vb) > 0);
	pthread_mutex_lock(&f->vdev.lock);
	virtio_blk_ops.reset(f->vb);
	pthread_mutex_unlock(&f->vdev.lock);
	assert_int_equal(virtio_blk_inflight(f->vb), 0);
	/* nothing was completed to the guest */
	assert_int_equal(used_idx(f), 0);
	for (int i = 0; i < NR_RESET; i++)
		assert_int_equal(st(f, status[i]), 0xff);
	memcpy(copy, f->ram, MEM_SIZE);
	run_idle(f, 20);
	assert_memory_equal(copy, f->ram, MEM_SIZE);
	free(copy);
	virtq_reset(&f->vdev.vqs[0]);
	memset(f->ram, 0, DATA_GPA);
	f->avail_idx = 0;
	f->next_desc = 0;
	expect_recovers(f);
}

struct reset_thread {
	struct fixture *f;
	sem_t locked;
};

static void *reset_thread_fn(void *opaque)
{
	struct reset_thread *t = opaque;

	pthread_mutex_lock(&t->f->vdev.lock);
	sem_post(&t->locked);
	virtio_blk_ops.reset(t->f->vb);
	pthread_mutex_unlock(&t->f->vdev.lock);
	return NULL;
}

/* The transport resets from a vCPU thread while the main thread, which
 * submitted the I/O, waits for the device lock (as vblk_io_event would). The
 * reset must still finish: io_uring may need the submitting thread to run
 * task work, and the kernel interrupts its wait to do so. */
static void test_reset_from_other_thread(void **state)
{
	struct fixture *f = *state;
	uint64_t data = galloc(f, 32 * KIB * NR_RESET);
	struct reset_thread t = { .f = f };
	pthread_t th;

	for (int i = 0; i < NR_RESET; i++)
		avail_add(f, req_rw(f, VIRTIO_BLK_T_IN, (uint64_t)(i % 16) * 64,
		                    data + 32ULL * KIB * (unsigned)i, 32 * KIB, status_byte(f)));
	/* cold cache: some reads cannot complete inline */
	assert_int_equal(posix_fadvise(f->fd, 0, 0, POSIX_FADV_DONTNEED), 0);
	kick(f);
	assert_true(virtio_blk_inflight(f->vb) > 0);
	assert_int_equal(sem_init(&t.locked, 0, 0), 0);
	alarm(20); /* a deadlock fails the run instead of hanging it */
	assert_int_equal(pthread_create(&th, NULL, reset_thread_fn, &t), 0);
	sem_wait(&t.locked);
	pthread_mutex_lock(&f->vdev.lock);
	assert_int_equal(virtio_blk_inflight(f->vb), 0);
	pthread_mutex_unlock(&f->vdev.lock);
	assert_int_equal(pthread_join(th, NULL), 0);
	alarm(0);
	sem_destroy(&t.locked);
	assert_int_equal(used_idx(f), 0);
	expect_recovers(f);
}

/* The same head made available over and over: more requests than slots.
 * The device takes what it can and the rest once slots free up. */
static void test_more_requests_than_slots(void **state)
{
	struct fixture *f = *state;
	uint64_t data = galloc(f, 512), status = status_byte(f);
	uint16_t head = req_rw(f, VIRTIO_BLK_T_IN, 9, data, 512, status);

	for (int i = 0; i < QSIZE; i++)
		avail_add(f, head);
	kick(f);
	assert_int_equal(virtio_blk_inflight(f->vb), QSIZE);
	for (int i = 0; i < 10; i++)
		avail_add(f, head);
	kick(f);
	assert_int_equal(virtio_blk_inflight(f->vb), QSIZE);
	run_until(f, QSIZE + 10);
	assert_int_equal(virtio_blk_inflight(f->vb), 0);
	assert_int_equal(st(f, status), VIRTIO_BLK_S_OK);
	assert_false(needs_reset(f));
}

static void save_state(struct fixture *f, struct sbuf *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&f->vdev.lock);
	virtio_blk_ops.save(f->vb, out);
	pthread_mutex_unlock(&f->vdev.lock);
	assert_int_equal(out->err, 0);
}

static int load_state(struct fixture *f, struct virtio_blk *vb, const void *data, size_t len)
{
	struct sbuf in;
	int rc;

	sbuf_reader(&in, data, len);
	pthread_mutex_lock(&f->vdev.lock);
	rc = virtio_blk_ops.load(vb, &in);
	pthread_mutex_unlock(&f->vdev.lock);
	return rc;
}

/* In-flight requests saved on one device are finished by another. */
static void test_save_load_in_flight(void **state)
{
	struct fixture *f = *state;
	uint64_t rd = galloc(f, 1024), wr = galloc(f, 512);
	uint64_t s1 = status_byte(f), s2 = status_byte(f), s3 = status_byte(f), s4 = status_byte(f);
	uint64_t sec[1] = { 300 };
	uint32_t num[1] = { 4 }, flags[1] = { 0 };
	uint16_t h1, h2, h3, h4, last_avail;
	struct sbuf a, b;
	uint8_t back[512];

	memset(gptr(f, wr, 512), 0x6d, 512);
	h1 = req_rw(f, VIRTIO_BLK_T_IN, 50, rd, 1024, s1);
	h2 = req_rw(f, VIRTIO_BLK_T_OUT, 60, wr, 512, s2);
	h3 = req_dwz(f, VIRTIO_BLK_T_WRITE_ZEROES, sec, num, flags, 1, s3);
	h4 = req_bare(f, VIRTIO_BLK_T_FLUSH, s4);
	avail_add(f, h1);
	avail_add(f, h2);
	avail_add(f, h3);
	avail_add(f, h4);
	kick(f);
	/* the fallback engine has not run anything yet: all four are in flight */
	assert_int_equal(virtio_blk_inflight(f->vb), 4);
	save_state(f, &a);
	last_avail = f->vdev.vqs[0].last_avail;

	/* the source goes away without completing anything to the guest */
	virtio_blk_destroy(f->vb);
	f->vb = NULL;
	assert_int_equal(used_idx(f), 0);
	memset(gptr(f, rd, 1024), 0, 1024);
	assert_int_equal(pwrite(f->fd, gptr(f, rd, 512), 512, 60 * 512), 512);
	{
		uint8_t pat[4 * 512];

		for (int i = 0; i < 4 * 512; i++)
			pat[i] = pattern(300 * 512 + (uint64_t)i);
		assert_int_equal(pwrite(f->fd, pat, sizeof(pat), 300 * 512), sizeof(pat));
	}

	/* the destination: same image, same options; the transport restores the queue */
	assert_int_equal(create_device(f, &f->vb), 0);
	f->vdev.priv = f->vb;
	assert_int_equal(load_state(f, f->vb, a.data, a.len), 0);
	/* loaded but not activated: saved again unchanged */
	save_state(f, &b);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.data, b.data, a.len);
	sbuf_free(&b);
	f->vdev.vqs[0].last_avail = last_avail;
	pthread_mutex_lock(&f->vdev.lock);
	assert_int_equal(virtio_blk_ops.activate(f->vb, &f->vdev), 0);
	pthread_mutex_unlock(&f->vdev.lock);
	run_until(f, 4);
	assert_int_equal(st(f, s1), VIRTIO_BLK_S_OK);
	assert_int_equal(st(f, s2), VIRTIO_BLK_S_OK);
	assert_int_equal(st(f, s3), VIRTIO_BLK_S_OK);
	assert_int_equal(st(f, s4), VIRTIO_BLK_S_OK);
	assert_int_equal(*(uint8_t *)gptr(f, rd, 1), pattern(50 * 512));
	assert_int_equal(*(uint8_t *)gptr(f, rd + 1023, 1), pattern(50 * 512 + 1023));
	disk_read(f, back, 512, 60 * 512);
	assert_int_equal(back[0], 0x6d);
	check_disk_zero(f, 300 * 512, 4 * 512);
	for (uint16_t i = 0; i < 4; i++) {
		uint32_t id = used_id(f, i);

		assert_true(id == h1 || id == h2 || id == h3 || id == h4);
	}
	/* nothing in flight now: the state says so */
	save_state(f, &b);
	assert_true(b.len < a.len);
	sbuf_free(&b);
	sbuf_free(&a);
}

/* Load checks everything and refuses bad state without changing the device. */
static void test_load_rejects(void **state)
{
	struct fixture *f = *state;
	uint64_t rd = galloc(f, 512), s1 = status_byte(f), s2 = status_byte(f);
	struct virtio_blk *other = NULL;
	struct sbuf a, good;
	uint8_t *bad;

	avail_add(f, req_rw(f, VIRTIO_BLK_T_IN, 50, rd, 512, s1));
	avail_add(f, req_bare(f, VIRTIO_BLK_T_FLUSH, s2));
	kick(f);
	save_state(f, &a);
	/* a live device refuses */
	assert_int_equal(load_state(f, f->vb, a.data, a.len), -EBUSY);
	run_until(f, 2);

	/* a second device on a copy of the image (the original is locked) */
	{
		char path[64];
		int fd;

		snprintf(path, sizeof(path), "/tmp/cvisor-vblk2-XXXXXX");
		fd = mkstemp(path);
		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, DISK_SIZE), 0);
		close(fd);
		{
			struct virtio_blk_opts o;

			assert_int_equal(virtio_blk_parse_opts(&o, "path=/dev/null", f->err,
			                                       sizeof(f->err)),
			                 0);
			strcpy(o.path, path);
			strcpy(o.serial, "CVISOR-SERIAL-000001");
			o.sync_io = true;
			assert_int_equal(virtio_blk_create(&other, &o, f->loop, f->err,
			                                   sizeof(f->err)),
			                 0);
		}
		unlink(path);
	}
	bad = malloc(a.len);
	assert_non_null(bad);
	/* flip the top bit of each byte: the fixed part must be refused, in the
	 * entries some values (a gpa, a sector) may still be valid */
	for (size_t i = 0; i < a.len; i++) {
		int rc;

		memcpy(bad, a.data, a.len);
		bad[i] ^= 0x80;
		rc = load_state(f, other, bad, a.len);
		assert_true(rc == 0 || rc == -EINVAL);
		if (i < 48) /* magic, version, capacity, features, serial, count */
			assert_int_equal(rc, -EINVAL);
	}
	assert_int_equal(load_state(f, other, a.data, a.len), 0);
	/* from here on every load fails and must leave that state alone */
	for (size_t n = 0; n < a.len; n++)
		assert_int_equal(load_state(f, other, a.data, n), -EINVAL);
	/* the count: too many, and one more than there are entries */
	memcpy(bad, a.data, a.len);
	bad[44] = 0xff;
	bad[45] = 0xff;
	assert_int_equal(load_state(f, other, bad, a.len), -EINVAL);
	memcpy(bad, a.data, a.len);
	bad[44] = 3;
	assert_int_equal(load_state(f, other, bad, a.len), -EINVAL);
	/* a head past the queue (entries at 48 and 48 + 44) */
	memcpy(bad, a.data, a.len);
	bad[49] = 0x01;
	assert_int_equal(load_state(f, other, bad, a.len), -EINVAL);
	/* a zero-length buffer, a read that is not whole sectors */
	memcpy(bad, a.data, a.len);
	memset(bad + 48 + 36, 0, 4);
	assert_int_equal(load_state(f, other, bad, a.len), -EINVAL);
	memcpy(bad, a.data, a.len);
	bad[48 + 36] = 1;
	assert_int_equal(load_state(f, other, bad, a.len), -EINVAL);
	/* an unknown request type, a read past the end, a write-zeroes on nothing */
	memcpy(bad, a.data, a.len);
	bad[52] = 7;
	assert_int_equal(load_state(f, other, bad, a.len), -EINVAL);
	memcpy(bad, a.data, a.len);
	memset(bad + 56, 0x40, 8);
	assert_int_equal(load_state(f, other, bad, a.len), -EINVAL);
	memcpy(bad, a.data, a.len);
	bad[92 + 4] = VIRTIO_BLK_T_WRITE_ZEROES;
	assert_int_equal(load_state(f, other, bad, a.len), -EINVAL);
	free(bad);
	/* the device kept the last good state */
	memset(&good, 0, sizeof(good));
	virtio_blk_ops.save(other, &good);
	assert_int_equal(good.len, a.len);
	assert_memory_equal(good.data, a.data, a.len);
	sbuf_free(&good);
	virtio_blk_destroy(other);
	sbuf_free(&a);
}

/* A saved request whose buffers are not in this guest's memory. */
static void test_load_outside_ram(void **state)
{
	struct fixture *f = *state;
	uint64_t rd = galloc(f, 512), s1 = status_byte(f);
	struct sbuf a;
	uint8_t *p;

	avail_add(f, req_rw(f, VIRTIO_BLK_T_IN, 50, rd, 512, s1));
	kick(f);
	save_state(f, &a);
	virtio_blk_destroy(f->vb);
	f->vb = NULL;
	/* fixed part 48 bytes, then head(4) type(4) sector(8) status_gpa(8) ... */
	p = a.data + 48 + 16;
	memset(p, 0x7f, 8); /* the status byte far outside RAM */
	assert_int_equal(create_device(f, &f->vb), 0);
	f->vdev.priv = f->vb;
	assert_int_equal(load_state(f, f->vb, a.data, a.len), 0);
	pthread_mutex_lock(&f->vdev.lock);
	assert_int_equal(virtio_blk_ops.activate(f->vb, &f->vdev), 0);
	pthread_mutex_unlock(&f->vdev.lock);
	run_idle(f, 2);
	assert_true(needs_reset(f));
	assert_int_equal(used_idx(f), 0);
	sbuf_free(&a);
}

/* A saved request whose data buffer is not in this guest's memory fails
 * alone with IOERR (its status byte is fine). */
static void test_load_data_outside_ram(void **state)
{
	struct fixture *f = *state;
	uint64_t rd = galloc(f, 512), s1 = status_byte(f);
	struct sbuf a;

	avail_add(f, req_rw(f, VIRTIO_BLK_T_IN, 50, rd, 512, s1));
	kick(f);
	save_state(f, &a);
	virtio_blk_destroy(f->vb);
	f->vb = NULL;
	/* head(4) type(4) sector(8) status_gpa(8) niov(4), then the buffer's gpa */
	memset(a.data + 48 + 28, 0x7f, 8);
	*(uint8_t *)gptr(f, s1, 1) = 0xff;
	assert_int_equal(create_device(f, &f->vb), 0);
	f->vdev.priv = f->vb;
	assert_int_equal(load_state(f, f->vb, a.data, a.len), 0);
	pthread_mutex_lock(&f->vdev.lock);
	assert_int_equal(virtio_blk_ops.activate(f->vb, &f->vdev), 0);
	pthread_mutex_unlock(&f->vdev.lock);
	run_until(f, 1);
	assert_int_equal(st(f, s1), VIRTIO_BLK_S_IOERR);
	assert_false(needs_reset(f));
	sbuf_free(&a);
}

/* An image whose size is not a multiple of 512: the partial sector is not visible. */
static void test_odd_size_image(void **state)
{
	struct fixture *f = *state;
	struct virtio_blk_opts o;
	struct virtio_blk *vb = NULL;
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/tmp/cvisor-vblk3-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 3 * 512 + 100), 0);
	close(fd);
	assert_int_equal(virtio_blk_parse_opts(&o, "path=x,readonly=on", f->err, sizeof(f->err)),
	                 0);
	strcpy(o.path, path);
	assert_int_equal(virtio_blk_create(&vb, &o, f->loop, f->err, sizeof(f->err)), 0);
	assert_int_equal(virtio_blk_capacity(vb), 3);
	virtio_blk_destroy(vb);
	unlink(path);
}

/* ---- options and creation ---- */

static void test_parse_opts(void **state)
{
	struct virtio_blk_opts o;
	char err[256];

	(void)state;
	assert_int_equal(virtio_blk_parse_opts(&o, "path=/img/a.raw", err, sizeof(err)), 0);
	assert_string_equal(o.path, "/img/a.raw");
	assert_int_equal(o.format, VIRTIO_BLK_FORMAT_RAW);
	assert_false(o.readonly);
	assert_string_equal(o.serial, "");
	assert_int_equal(o.iops, 0);
	assert_int_equal(o.bps, 0);
	assert_int_equal(virtio_blk_parse_opts(&o, "format=raw,readonly=on,path=b,serial=SN 1,"
	                                           "iops=500,bps=1048576",
	                                       err, sizeof(err)),
	                 0);
	assert_string_equal(o.path, "b");
	assert_true(o.readonly);
	assert_string_equal(o.serial, "SN 1");
	assert_int_equal(o.iops, 500);
	assert_int_equal(o.bps, 1048576);
	assert_int_equal(virtio_blk_parse_opts(&o, "path=a,,b,,,readonly=off", err, sizeof(err)),
	                 0);
	assert_string_equal(o.path, "a,b,");
	assert_false(o.readonly);
	assert_int_equal(virtio_blk_parse_opts(&o, "path=q.img,format=qcow2,", err, sizeof(err)),
	                 0);
	assert_string_equal(o.path, "q.img");
	assert_int_equal(o.format, VIRTIO_BLK_FORMAT_QCOW2);
	assert_int_equal(virtio_blk_parse_opts(&o, "path=x,serial=12345678901234567890", err,
	                                       sizeof(err)),
	                 0);

	static const struct {
		const char *arg, *msg;
	} bad[] = {
		{ "", "--disk: path= is required" },
		{ "readonly=on", "--disk: path= is required" },
		{ "path=", "--disk: path= needs a value" },
		{ "path", "--disk: 'path' is not key=value" },
		{ "path=a,path=b", "--disk: path= given twice" },
		{ "path=a,format=vmdk", "--disk: format must be raw or qcow2, not 'vmdk'" },
		{ "path=a,readonly=yes", "--disk: readonly must be on or off, not 'yes'" },
		{ "path=a,serial=123456789012345678901",
		  "--disk: serial is longer than 20 characters" },
		{ "path=a,serial=a\tb", "--disk: serial must be printable ASCII" },
		{ "path=a,iops=abc", "--disk: iops must be a positive integer, not 'abc'" },
		{ "path=a,iops=0", "--disk: iops must be a positive integer, not '0'" },
		{ "path=a,bps=-1", "--disk: bps must be a positive integer, not '-1'" },
		{ "path=a,cache=none",
		  "--disk: unknown key 'cache' (path, format, readonly, serial, iops, bps, overlay)" },
		{ "path=a,averyveryverylongkey=1", NULL },
		{ "=a", NULL },
		{ ",path=a", NULL },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		if (virtio_blk_parse_opts(&o, bad[i].arg, err, sizeof(err)) != -EINVAL)
			fail_msg("'%s' was accepted", bad[i].arg);
		assert_true(err[0] != 0);
		assert_null(strchr(err, '\n'));
		if (bad[i].msg)
			assert_string_equal(err, bad[i].msg);
	}
	/* a path of PATH_MAX characters does not fit */
	{
		char *big = malloc(PATH_MAX + 16);

		assert_non_null(big);
		memcpy(big, "path=", 5);
		memset(big + 5, 'x', PATH_MAX);
		big[5 + PATH_MAX] = 0;
		assert_int_equal(virtio_blk_parse_opts(&o, big, err, sizeof(err)), -EINVAL);
		assert_string_equal(err, "--disk: path= is too long");
		free(big);
	}
}

static void test_create_errors(void **state)
{
	struct fixture *f = *state;
	struct virtio_blk_opts o;
	struct virtio_blk *vb = NULL;
	char want[128];

	assert_int_equal(virtio_blk_parse_opts(&o, "path=/nonexistent/d.raw", f->err,
	                                       sizeof(f->err)),
	                 0);
	assert_int_equal(virtio_blk_create(&vb, &o, f->loop, f->err, sizeof(f->err)), -ENOENT);
	assert_string_equal(f->err, "disk /nonexistent/d.raw: No such file or directory");
	assert_int_equal(virtio_blk_parse_opts(&o, "path=/x.qcow2,format=qcow2", f->err,
	                                       sizeof(f->err)),
	                 0);
	assert_int_equal(virtio_blk_create(&vb, &o, f->loop, f->err, sizeof(f->err)), -ENOENT);
	assert_string_equal(f->err, "disk /x.qcow2: No such file or directory");
	/* the fixture's device holds the image: a second one is refused */
	snprintf(want, sizeof(want), "disk %s is in use by another process (locked)", f->path);
	assert_int_equal(create_device(f, &vb), -EBUSY);
	assert_string_equal(f->err, want);
	assert_null(vb);
	virtio_blk_destroy(NULL);
}

/* ---- live switch to an overlay ---- */

static void write_sector(struct fixture *f, uint64_t sector, uint8_t byte)
{
	uint64_t data = galloc(f, 512), status = status_byte(f);

	memset(gptr(f, data, 512), byte, 512);
	assert_int_equal(submit(f, req_rw(f, VIRTIO_BLK_T_OUT, sector, data, 512, status), status),
	                 VIRTIO_BLK_S_OK);
}

/* The first byte of sector as the guest reads it (all 512 must be equal). */
static uint8_t read_sector(struct fixture *f, uint64_t sector)
{
	uint64_t data = galloc(f, 512), status = status_byte(f);
	uint8_t *p = gptr(f, data, 512);

	assert_int_equal(submit(f, req_rw(f, VIRTIO_BLK_T_IN, sector, data, 512, status), status),
	                 VIRTIO_BLK_S_OK);
	for (int i = 1; i < 512; i++)
		assert_int_equal(p[i], p[0]);
	return p[0];
}

static uint8_t image_byte(struct fixture *f, uint64_t off)
{
	uint8_t b;

	disk_read(f, &b, 1, off);
	return b;
}

static void test_overlay_switch(void **state)
{
	struct fixture *f = *state;
	struct virtio_blk *other = NULL;
	uint16_t want;
	char opath[PATH_MAX];

	write_sector(f, 100, 0xa5);
	/* requests the guest sent before the pause: prepare waits for them */
	for (int i = 0; i < 4; i++) {
		uint64_t data = galloc(f, 512), status = status_byte(f);
		memset(gptr(f, data, 512), 0xb0 + i, 512);
		avail_add(f, req_rw(f, VIRTIO_BLK_T_OUT, 300 + (uint64_t)i, data, 512, status));
	}
	want = (uint16_t)(used_idx(f) + 4);
	kick(f);
	assert_int_equal(virtio_blk_overlay_prepare(f->vb, f->err, sizeof(f->err)), 0);
	assert_int_equal(used_idx(f), want);
	assert_int_equal(virtio_blk_inflight(f->vb), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(image_byte(f, (300 + (uint64_t)i) * 512), 0xb0 + i);
	/* prepared: still on the image, which nobody may write now */
	assert_string_equal(virtio_blk_path(f->vb), f->path);
	assert_int_equal(create_device(f, &other), -EBUSY);
	virtio_blk_overlay_commit(f->vb);
	snprintf(opath, sizeof(opath), "%s", virtio_blk_path(f->vb));
	assert_int_equal(strncmp(opath, f->path, strlen(f->path)), 0);
	assert_non_null(strstr(opath, ".qcow2"));
	assert_string_equal(virtio_blk_format(f->vb), "qcow2");
	assert_int_equal(virtio_blk_capacity(f->vb), DISK_SECTORS);
	/* the guest sees the same disk and goes on writing to the overlay */
	assert_int_equal(read_sector(f, 100), 0xa5);
	assert_int_equal(read_sector(f, 301), 0xb1);
	write_sector(f, 100, 0x5a);
	write_sector(f, 2000, 0x77);
	assert_int_equal(read_sector(f, 100), 0x5a);
	assert_int_equal(read_sector(f, 2000), 0x77);
	assert_int_equal(image_byte(f, 100 * 512), 0xa5);
	assert_int_equal(image_byte(f, 2000 * 512), pattern(2000 * 512));
	/* the image is a backing file: readers may come, writers not */
	f->p = &p_ro;
	assert_int_equal(create_device(f, &other), 0);
	virtio_blk_destroy(other);
	f->p = &p_sync;
	assert_int_equal(create_device(f, &other), -EBUSY);
	/* an overlay of the overlay */
	assert_int_equal(virtio_blk_overlay_prepare(f->vb, f->err, sizeof(f->err)), 0);
	virtio_blk_overlay_commit(f->vb);
	assert_string_not_equal(virtio_blk_path(f->vb), opath);
	write_sector(f, 100, 0x33);
	assert_int_equal(read_sector(f, 100), 0x33);
	assert_int_equal(read_sector(f, 2000), 0x77);
	unlink(virtio_blk_path(f->vb));
	unlink(opath);
}

static void test_overlay_abort(void **state)
{
	struct fixture *f = *state;
	struct virtio_blk *other = NULL;
	char opath[PATH_MAX];
	time_t now = time(NULL);

	assert_int_equal(virtio_blk_overlay_prepare(f->vb, f->err, sizeof(f->err)), 0);
	assert_int_equal(virtio_blk_overlay_prepare(f->vb, f->err, sizeof(f->err)), -EBUSY);
	virtio_blk_overlay_abort(f->vb);
	/* the overlay is gone, the device on its image, writable, write-locked */
	for (time_t t = now; t <= time(NULL); t++) {
		assert_int_equal(blk_overlay_name(f->path, t, 0, opath, sizeof(opath)), 0);
		assert_int_equal(access(opath, F_OK), -1);
	}
	assert_string_equal(virtio_blk_path(f->vb), f->path);
	write_sector(f, 7, 0x42);
	assert_int_equal(image_byte(f, 7 * 512), 0x42);
	f->p = &p_ro;
	assert_int_equal(create_device(f, &other), -EBUSY);
	f->p = &p_sync;
	virtio_blk_overlay_abort(f->vb); /* nothing prepared: nothing happens */
	virtio_blk_overlay_commit(f->vb);
	assert_string_equal(virtio_blk_path(f->vb), f->path);
}

static void test_overlay_readonly(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(virtio_blk_overlay_prepare(f->vb, f->err, sizeof(f->err)), -EINVAL);
	assert_null(strchr(f->err, '\n'));
	assert_string_equal(virtio_blk_path(f->vb), f->path);
}

/* --disk ...,overlay=on: the image is a read-only base from the start. */
static void test_overlay_option(void **state)
{
	struct fixture *f = *state;
	struct virtio_blk_opts o;
	struct virtio_blk *vb = NULL, *vb2 = NULL;
	char arg[256], p1[PATH_MAX];
	uint64_t sum = disk_sum(f);

	virtio_blk_destroy(f->vb); /* the fixture's device lets go of the image */
	f->vb = NULL;
	snprintf(arg, sizeof(arg), "path=%s,overlay=on", f->path);
	assert_int_equal(virtio_blk_parse_opts(&o, arg, f->err, sizeof(f->err)), 0);
	assert_true(o.overlay);
	o.sync_io = true;
	assert_int_equal(virtio_blk_create(&vb, &o, f->loop, f->err, sizeof(f->err)), 0);
	snprintf(p1, sizeof(p1), "%s", virtio_blk_path(vb));
	assert_string_not_equal(p1, f->path);
	assert_string_equal(virtio_blk_format(vb), "qcow2");
	assert_int_equal(virtio_blk_capacity(vb), DISK_SECTORS);
	/* twice over the same base: each its own overlay */
	assert_int_equal(virtio_blk_create(&vb2, &o, f->loop, f->err, sizeof(f->err)), 0);
	assert_string_not_equal(virtio_blk_path(vb2), p1);
	unlink(virtio_blk_path(vb2));
	virtio_blk_destroy(vb2);
	f->vb = vb;
	f->vdev.priv = vb;
	reset_device(f);
	start_device(f, 0);
	{
		uint64_t data = galloc(f, 512), status = status_byte(f);
		uint8_t *p = gptr(f, data, 512);
		assert_int_equal(submit(f, req_rw(f, VIRTIO_BLK_T_IN, 5, data, 512, status), status),
		                 VIRTIO_BLK_S_OK);
		for (int i = 0; i < 512; i++)
			assert_int_equal(p[i], pattern(5 * 512 + (uint64_t)i)); /* the base's bytes */
	}
	write_sector(f, 5, 0x99);
	assert_int_equal(read_sector(f, 5), 0x99);
	assert_int_equal(disk_sum(f), sum);
	unlink(p1);
	/* not with readonly=on */
	snprintf(arg, sizeof(arg), "path=%s,overlay=on,readonly=on", f->path);
	assert_int_equal(virtio_blk_parse_opts(&o, arg, f->err, sizeof(f->err)), 0);
	assert_int_equal(virtio_blk_create(&vb2, &o, f->loop, f->err, sizeof(f->err)), -EINVAL);
	assert_null(strchr(f->err, '\n'));
	assert_int_equal(virtio_blk_parse_opts(&o, "path=a,overlay=yes", f->err, sizeof(f->err)),
	                 -EINVAL);
	assert_string_equal(f->err, "--disk: overlay must be on or off, not 'yes'");
}

static void test_format_opts(void **state)
{
	static const char *const args[] = {
		"path=/a/b.img",
		"path=a,,b,,,format=qcow2,readonly=on,serial=S,,N 1,iops=5,bps=1048576,overlay=on",
		"path=x,format=raw",
	};
	struct virtio_blk_opts o, o2;
	char buf[PATH_MAX + 256], err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(args) / sizeof(args[0]); i++) {
		assert_int_equal(virtio_blk_parse_opts(&o, args[i], err, sizeof(err)), 0);
		assert_int_equal(virtio_blk_format_opts(&o, buf, sizeof(buf)), 0);
		assert_string_equal(buf, args[i]);
		assert_int_equal(virtio_blk_parse_opts(&o2, buf, err, sizeof(err)), 0);
		assert_memory_equal(&o, &o2, sizeof(o));
	}
	assert_int_equal(virtio_blk_format_opts(&o, buf, 8), -ENAMETOOLONG);
	assert_int_equal(virtio_blk_format_opts(&o, buf, 0), -ENAMETOOLONG);
}

#define T(fn, p) cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, (void *)&(p))

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_features_and_config, p_sync),
		T(test_features_readonly, p_ro),
		T(test_read, p_sync),
		T(test_read, p_uring),
		T(test_write, p_sync),
		T(test_write, p_uring),
		T(test_any_layout, p_sync),
		T(test_indirect, p_sync),
		T(test_get_id, p_sync),
		T(test_get_id_empty, p_uring),
		T(test_write_zeroes, p_sync),
		T(test_write_zeroes, p_uring),
		T(test_discard, p_sync),
		T(test_many_in_flight, p_sync),
		T(test_many_in_flight, p_uring),
		T(test_writethrough, p_uring),
		T(test_bad_header, p_sync),
		T(test_out_of_range, p_sync),
		T(test_wrong_direction, p_sync),
		T(test_unsupported, p_sync),
		T(test_seg_max, p_sync),
		T(test_bad_discard, p_sync),
		T(test_dwz_not_negotiated, p_sync),
		T(test_readonly_refuses_writes, p_ro),
		T(test_bad_among_good, p_uring),
		T(test_host_io_error, p_sync),
		T(test_host_io_error, p_uring),
		T(test_image_shrank, p_sync),
		T(test_no_status_byte, p_sync),
		T(test_empty_status_byte, p_sync),
		T(test_desc_outside_ram, p_sync),
		T(test_chain_loop, p_sync),
		T(test_ring_garbage, p_sync),
		T(test_reset_with_io_in_flight, p_uring),
		T(test_reset_with_io_in_flight, p_sync),
		T(test_reset_from_other_thread, p_uring),
		T(test_more_requests_than_slots, p_sync),
		T(test_save_load_in_flight, p_sync),
		T(test_load_rejects, p_sync),
		T(test_load_outside_ram, p_sync),
		T(test_load_data_outside_ram, p_sync),
		T(test_odd_size_image, p_sync),
		T(test_create_errors, p_sync),
		T(test_overlay_switch, p_sync),
		T(test_overlay_switch, p_uring),
		T(test_overlay_abort, p_sync),
		T(test_overlay_readonly, p_ro),
		T(test_overlay_option, p_sync),
		cmocka_unit_test(test_parse_opts),
		cmocka_unit_test(test_format_opts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
