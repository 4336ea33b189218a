/* libFuzzer target for virtio-balloon's queues and configuration
 * (virtio/balloon.c), driven the way the PCI transport drives it.
 *
 * Fake guest memory: 256 KiB of mmap'd anonymous memory with a 128 KiB low
 * limit (guest RAM [0, 128K) and [4G, 4G + 128K)), between two 64 KiB guard
 * areas filled with a pattern. The balloon calls madvise(MADV_DONTNEED) on
 * what the guest names; a guard that reads back changed means it dropped
 * memory outside the guest. The input is
 *
 *   byte 0   negotiated features: bit 0 STATS_VQ, bit 1 PAGE_REPORTING,
 *            bit 2 EVENT_IDX, bit 3 INDIRECT_DESC, bit 4 "fold" (below),
 *            bit 5 start with DRIVER_OK set (as operation 1)
 *   byte 1   queue size: 1 << (b % 5); bits 3..7: which of queues 0..4 are enabled
 *   byte 2   n, the length of the operation program that follows
 *   n bytes  operations (below)
 *   rest     the guest memory image, from guest address 0 up (low, then high RAM)
 *
 * The image is repeated to fill [0, 64K), so that a small input (libFuzzer
 * keeps them to 4 KiB) still gives every queue and buffer some content.
 * Queue q: descriptor table at q * 0x300, available ring at q * 0x300 +
 * 0x100, used ring at q * 0x300 + 0x180. With "fold", descriptor records of
 * the tables get addresses in RAM, in the PFN area or just past RAM (some
 * straddle its ends), lengths below 24 KiB and next fields inside the table;
 * the available rings get indices near the queue size and entries inside the
 * table; the 32-bit words of [0x8000, 0x10000) become PFNs of RAM or just
 * past it.
 *
 * Operations (low 3 bits; high 5 bits are an argument a):
 *   0  notify queue a % 5 (lock held, DRIVER_OK and not NEEDS_RESET, as the transport does)
 *   1  DRIVER_OK: activate
 *   2  device reset, queues re-enabled
 *   3  set_target(a * 16 KiB)
 *   4  request stats, read stats and actual
 *   5  config read and write at offset a % 8, length 1..4 from the next byte
 *   6  save, load into a fresh device (must succeed), save again (same bytes)
 *   7  guest: avail->idx of queue a % 5 += (next byte % 4) + 1
 *
 * Invariants (abort on violation): guards intact; no madvise error; the
 * counters agree (reported bytes are whole dropped pages); load of a saved
 * state succeeds and saves the same bytes. ASan catches any access outside
 * memory, libFuzzer's -timeout any spin. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "state/sbuf.h"
#include "virtio/balloon.h"
#include "vm/mem.h"

#define G4 0x100000000ULL
#define MEM_SIZE 0x40000ULL
#define MEM_LOW 0x20000ULL
#define GUARD 0x10000ULL
#define GUARD_BYTE 0xa5
#define NQ VIRTIO_BALLOON_QUEUES
#define FOLD_PFN_START 0x8000ULL
#define FOLD_PFN_END 0x10000ULL
#define QSTRIDE 0x300ULL /* per queue: table (16 x 16), avail (+0x100), used (+0x180) */

#define CHECK(c)                   \
	do {                       \
		if (!(c))          \
			abort();   \
	} while (0)

struct prog {
	const uint8_t *p;
	size_t len, pos;
};

static uint8_t next_byte(struct prog *pr)
{
	return pr->pos < pr->len ? pr->p[pr->pos++] : 0;
}

static uint8_t *area;    /* guard, RAM, guard */
static struct guest_mem mem;
static struct virtio_dev vd;
static unsigned irqs;

static void irq_queue(struct virtio_dev *d, uint16_t q)
{
	(void)d;
	(void)q;
	irqs++;
}

static void irq_config(struct virtio_dev *d)
{
	(void)d;
	irqs++;
}

static uint8_t *ram(uint64_t gpa)
{
	return mem_ptr(&mem, gpa, 1);
}

static uint32_t ld32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static void st32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void st64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static void fold(uint16_t qsize)
{
	for (uint16_t q = 0; q < NQ; q++) {
		uint8_t *table = ram(q * QSTRIDE);
		for (uint16_t i = 0; i < qsize; i++) {
			uint8_t *d = table + 16 * (size_t)i;
			uint32_t raw = ld32(d);
			uint64_t a;
			if (raw & 2) /* into the PFN array area */
				a = FOLD_PFN_START + (raw >> 2) % (FOLD_PFN_END - FOLD_PFN_START);
			else
				a = ((raw & 1) ? G4 : 0) + (raw >> 2) % (MEM_LOW + 0x2000);
			st64(d, a);
			st32(d + 8, ld32(d + 8) % 0x6000);
			d[12] &= (raw & 8) ? 7 : 3; /* INDIRECT only now and then */
			d[13] = 0;
			d[14] = (uint8_t)(d[14] % qsize);
			d[15] = 0;
		}
		/* available ring: index near the queue size, entries inside the table */
		uint8_t *av = table + 0x100;
		av[2] = (uint8_t)(av[2] % (qsize + 2));
		av[3] = 0;
		for (uint16_t i = 0; i < qsize; i++) {
			av[4 + 2 * i] = (uint8_t)(av[4 + 2 * i] % qsize);
			av[5 + 2 * i] = 0;
		}
	}
	for (uint64_t off = FOLD_PFN_START; off < FOLD_PFN_END; off += 4) {
		uint32_t raw = ld32(ram(off));
		uint32_t pfn = (raw & 1) ? (uint32_t)(G4 >> 12) : 0;
		st32(ram(off), pfn + (raw >> 1) % (uint32_t)((MEM_LOW >> 12) + 2));
	}
}

static void enable_queues(uint16_t qsize, uint8_t mask, bool event_idx, bool indirect)
{
	for (uint16_t q = 0; q < NQ; q++) {
		struct virtq *vq = &vd.vqs[q];
		virtq_reset(vq);
		if (!(mask & (1u << q)))
			continue;
		vq->size = qsize;
		vq->desc_gpa = q * QSTRIDE;
		vq->avail_gpa = q * QSTRIDE + 0x100;
		vq->used_gpa = q * QSTRIDE + 0x180;
		vq->event_idx = event_idx;
		vq->indirect = indirect;
		CHECK(virtq_start(vq) == 0);
	}
}

static uint8_t pattern[GUARD];

static void check_guards(void)
{
	CHECK(memcmp(area, pattern, GUARD) == 0);
	CHECK(memcmp(area + GUARD + MEM_SIZE, pattern, GUARD) == 0);
}

static void check_counters(struct virtio_balloon *b)
{
	struct virtio_balloon_counters c;
	virtio_balloon_counters(b, &c);
	CHECK(c.madvise_errors == 0);
	CHECK(c.reported_bytes % VIRTIO_BALLOON_PAGE == 0);
	CHECK(c.reported_bytes / VIRTIO_BALLOON_PAGE <= c.dropped);
	CHECK(c.dropped <= c.inflated + c.reported_bytes / VIRTIO_BALLOON_PAGE);
}

static void save_load(struct virtio_balloon *b)
{
	struct sbuf s = { 0 }, s2 = { 0 }, r;
	struct virtio_balloon_opts o = { 0 };

	virtio_balloon_ops.save(b, &s);
	CHECK(s.err == 0);
	struct virtio_balloon *n = virtio_balloon_create(&o);
	CHECK(n != NULL);
	sbuf_reader(&r, s.data, s.len);
	CHECK(virtio_balloon_ops.load(n, &r) == 0 && r.pos == s.len);
	virtio_balloon_ops.save(n, &s2);
	CHECK(s2.err == 0 && s2.len == s.len && memcmp(s.data, s2.data, s.len) == 0);
	/* a truncated copy is refused */
	sbuf_reader(&r, s.data, s.len / 2);
	CHECK(virtio_balloon_ops.load(n, &r) == -EINVAL);
	virtio_balloon_destroy(n);
	sbuf_free(&s);
	sbuf_free(&s2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct prog in = { data, size, 0 };

	if (!area) {
		area = mmap(NULL, MEM_SIZE + 2 * GUARD, PROT_READ | PROT_WRITE,
		            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		CHECK(area != MAP_FAILED);
		mem_init_fake(&mem, area + GUARD, MEM_SIZE, MEM_LOW);
		pthread_mutex_init(&vd.lock, NULL);
		memset(pattern, GUARD_BYTE, GUARD);
		memset(area, GUARD_BYTE, GUARD); /* set once: any change is a finding */
		memset(area + GUARD + MEM_SIZE, GUARD_BYTE, GUARD);
	}
	memset(area + GUARD, 0, MEM_SIZE);

	uint8_t feat = next_byte(&in), qb = next_byte(&in), nops = next_byte(&in);
	struct prog ops = { data + in.pos, 0, 0 };
	ops.len = size - in.pos < nops ? size - in.pos : nops;
	in.pos += ops.len;
	size_t img = size - in.pos < MEM_SIZE ? size - in.pos : MEM_SIZE;
	memcpy(area + GUARD, data + in.pos, img);
	for (size_t off = img; img && off < FOLD_PFN_END; off += img)
		memcpy(area + GUARD + off, data + in.pos, FOLD_PFN_END - off < img ? FOLD_PFN_END - off : img);

	uint16_t qsize = (uint16_t)(1u << (qb % 5));
	uint8_t qmask = qb >> 3;
	bool event_idx = feat & 4, indirect = feat & 8;
	if (feat & 16)
		fold(qsize);

	struct virtio_balloon_opts o = { .target = 0, .free_page_reporting = true,
		                         .deflate_on_oom = true };
	struct virtio_balloon *b = virtio_balloon_create(&o);
	CHECK(b != NULL);
	memset(&vd.vqs, 0, sizeof(vd.vqs));
	vd.ops = &virtio_balloon_ops;
	vd.priv = b;
	vd.mem = &mem;
	vd.status = 0;
	vd.config_gen = 0;
	vd.irq_queue = irq_queue;
	vd.irq_config = irq_config;
	vd.host_features = virtio_balloon_ops.features(b) | 1ULL << VIRTIO_F_VERSION_1;
	vd.guest_features = 1ULL << VIRTIO_F_VERSION_1;
	if (feat & 1)
		vd.guest_features |= 1ULL << VIRTIO_BALLOON_F_STATS_VQ;
	if (feat & 2)
		vd.guest_features |= 1ULL << VIRTIO_BALLOON_F_PAGE_REPORTING;
	if (event_idx)
		vd.guest_features |= 1ULL << VIRTIO_F_EVENT_IDX;
	if (indirect)
		vd.guest_features |= 1ULL << VIRTIO_F_INDIRECT_DESC;
	for (int q = 0; q < VIRTIO_MAX_QUEUES; q++)
		vd.vqs[q].mem = &mem;
	virtio_balloon_attach(b, &vd);
	enable_queues(qsize, qmask, event_idx, indirect);
	if (feat & 32) {
		vd.status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		            VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK;
		pthread_mutex_lock(&vd.lock);
		CHECK(vd.ops->activate(vd.priv, &vd) == 0);
		pthread_mutex_unlock(&vd.lock);
	}

	while (ops.pos < ops.len) {
		uint8_t op = next_byte(&ops);
		unsigned a = op >> 3;
		switch (op & 7) {
		case 0:
			pthread_mutex_lock(&vd.lock);
			if ((vd.status & VIRTIO_STATUS_DRIVER_OK) &&
			    !(vd.status & VIRTIO_STATUS_NEEDS_RESET) && vd.vqs[a % NQ].ready)
				vd.ops->queue_notify(vd.priv, (uint16_t)(a % NQ));
			pthread_mutex_unlock(&vd.lock);
			break;
		case 1:
			pthread_mutex_lock(&vd.lock);
			if (!(vd.status & VIRTIO_STATUS_DRIVER_OK)) {
				vd.status |= VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
				             VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK;
				if (vd.ops->activate(vd.priv, &vd) < 0)
					vd.status |= VIRTIO_STATUS_NEEDS_RESET;
			}
			pthread_mutex_unlock(&vd.lock);
			break;
		case 2:
			pthread_mutex_lock(&vd.lock);
			vd.ops->reset(vd.priv);
			vd.status = 0;
			enable_queues(qsize, qmask, event_idx, indirect);
			pthread_mutex_unlock(&vd.lock);
			break;
		case 3: {
			uint64_t t = (uint64_t)a * 16384;
			int rc = virtio_balloon_set_target(b, t);
			CHECK(rc == (t > MEM_SIZE ? -EINVAL : 0));
			if (!rc)
				CHECK(virtio_balloon_target(b) == t);
			break;
		}
		case 4: {
			struct virtio_balloon_stats st;
			int rc = virtio_balloon_request_stats(b);
			CHECK(rc == 0 || rc == -EAGAIN);
			rc = virtio_balloon_stats(b, &st);
			CHECK(rc == 0 || rc == -ENODATA);
			CHECK(!(st.valid >> VIRTIO_BALLOON_S_NR));
			CHECK(virtio_balloon_actual(b) % VIRTIO_BALLOON_PAGE == 0);
			break;
		}
		case 5: {
			uint8_t buf[4];
			uint32_t off = a % 8, len = 1 + next_byte(&ops) % 4;
			if (off + len > VIRTIO_BALLOON_CONFIG_SIZE)
				len = VIRTIO_BALLOON_CONFIG_SIZE - off;
			pthread_mutex_lock(&vd.lock);
			vd.ops->config_read(vd.priv, off, buf, len);
			buf[0] ^= next_byte(&ops);
			vd.ops->config_write(vd.priv, off, buf, len);
			pthread_mutex_unlock(&vd.lock);
			break;
		}
		case 6:
			pthread_mutex_lock(&vd.lock);
			save_load(b);
			pthread_mutex_unlock(&vd.lock);
			break;
		case 7: {
			uint8_t *av = ram((a % NQ) * QSTRIDE + 0x100);
			uint16_t idx;
			memcpy(&idx, av + 2, 2);
			idx = (uint16_t)(idx + next_byte(&ops) % 4 + 1);
			memcpy(av + 2, &idx, 2);
			break;
		}
		}
		check_counters(b);
	}
	check_guards();
	virtio_balloon_destroy(b);
	return 0;
}
