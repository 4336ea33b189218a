/* libFuzzer target for virtio-blk. A 64 KiB fake guest memory holds the
 * rings (descriptor table at 0, avail ring at 0x1000, used ring at 0x2000)
 * and whatever the input writes; the disk is a 64 KiB temporary file.
 *
 * Input: one setup byte, then a program of operations:
 *
 *   setup  bit 0 read-only, bit 1 EVENT_IDX, bit 2 INDIRECT_DESC, bit 3 drop
 *          FLUSH (write-through), bit 4 io_uring engine, bits 5-7 queue size
 *          (2 << n, so 2 to 256)
 *   op byte, then by op % 8:
 *   0  descriptor: index byte, addr (2 bytes; 0xffff means an address far
 *      outside RAM), len (2 bytes), flags byte (% 8), next byte
 *   1  raw bytes: offset (2 bytes), count byte, then count bytes
 *   2  make a head available: head byte
 *   3  notify the queue
 *   4  run the event loop once
 *   5  device reset, then the driver sets the queue up again
 *   6  save, destroy, create a new device, load, activate: the in-flight
 *      requests move over (load must accept what save produced)
 *   7  request header: offset (2 bytes), type byte (from a table, or raw),
 *      sector (2 bytes; 0xffff means a sector far past the end)
 *
 * Checks: nothing crashes or leaks (sanitizers), the image never changes
 * size, load accepts what save produced, and at the end nothing is left in
 * flight. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.h"
#include "virtio/blk.h"
#include "virtio/virtio.h"
#include "vm/evloop.h"
#include "vm/mem.h"

#define RAM_SIZE 0x10000
#define DESC_GPA 0x0
#define AVAIL_GPA 0x1000
#define USED_GPA 0x2000
#define DISK_SIZE 0x10000

struct fuzz_in {
	const uint8_t *data;
	size_t len;
	size_t pos;
};

static uint8_t ram[RAM_SIZE] __attribute__((aligned(4096)));
static struct guest_mem mem;
static struct evloop *loop;
static char disk_path[64];
static int disk_fd = -1;
static struct virtio_dev vdev;

static uint8_t fuzz_byte(struct fuzz_in *in)
{
	return in->pos < in->len ? in->data[in->pos++] : 0;
}

static uint16_t fuzz_u16(struct fuzz_in *in)
{
	uint16_t lo = fuzz_byte(in);

	return (uint16_t)(lo | fuzz_byte(in) << 8);
}

static void put16(uint64_t gpa, uint16_t v)
{
	ram[gpa] = (uint8_t)v;
	ram[gpa + 1] = (uint8_t)(v >> 8);
}

static void put32(uint64_t gpa, uint32_t v)
{
	put16(gpa, (uint16_t)v);
	put16(gpa + 2, (uint16_t)(v >> 16));
}

static void put64(uint64_t gpa, uint64_t v)
{
	put32(gpa, (uint32_t)v);
	put32(gpa + 4, (uint32_t)(v >> 32));
}

static void fuzz_irq(struct virtio_dev *d, uint16_t q)
{
	(void)d;
	if (q != 0)
		abort();
}

static void fuzz_config_irq(struct virtio_dev *d)
{
	(void)d;
}

static void fuzz_init(void)
{
	static uint8_t zero[DISK_SIZE];
	int fd;

	log_level = 0; /* NEEDS_RESET warnings on every other input would only slow us down */
	mem_init_fake(&mem, ram, RAM_SIZE, RAM_SIZE);
	loop = evloop_create();
	if (!loop)
		abort();
	/* an unlinked file, reopened through /proc so that every device opens
	 * (and locks) it afresh */
	snprintf(disk_path, sizeof(disk_path), "/tmp/cvisor-fuzz-blk-XXXXXX");
	fd = mkstemp(disk_path);
	if (fd < 0 || pwrite(fd, zero, sizeof(zero), 0) != (ssize_t)sizeof(zero))
		abort();
	unlink(disk_path);
	disk_fd = fd;
	snprintf(disk_path, sizeof(disk_path), "/proc/self/fd/%d", fd);
	pthread_mutex_init(&vdev.lock, NULL);
}

static struct virtio_blk *fuzz_create(uint8_t setup)
{
	struct virtio_blk_opts o;
	struct virtio_blk *vb = NULL;
	char err[256];

	memset(&o, 0, sizeof(o));
	strcpy(o.path, disk_path);
	o.readonly = setup & 1;
	strcpy(o.serial, "fuzz");
	o.sync_io = !(setup & 16);
	if (virtio_blk_create(&vb, &o, loop, err, sizeof(err)) < 0)
		abort();
	return vb;
}

static void fuzz_start(struct virtio_blk *vb, uint8_t setup)
{
	struct virtq *q = &vdev.vqs[0];

	vdev.ops = &virtio_blk_ops;
	vdev.priv = vb;
	vdev.mem = &mem;
	vdev.loop = loop;
	vdev.irq_queue = fuzz_irq;
	vdev.irq_config = fuzz_config_irq;
	vdev.host_features = virtio_blk_ops.features(vb) | 1ULL << VIRTIO_F_VERSION_1;
	vdev.guest_features = vdev.host_features;
	if (!(setup & 2))
		vdev.guest_features &= ~(1ULL << VIRTIO_F_EVENT_IDX);
	if (!(setup & 4))
		vdev.guest_features &= ~(1ULL << VIRTIO_F_INDIRECT_DESC);
	if (setup & 8)
		vdev.guest_features &= ~(1ULL << VIRTIO_BLK_F_FLUSH);
	vdev.status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
	              VIRTIO_STATUS_DRIVER_OK;
	virtq_reset(q);
	q->size = (uint16_t)(2u << (setup >> 5));
	q->desc_gpa = DESC_GPA;
	q->avail_gpa = AVAIL_GPA;
	q->used_gpa = USED_GPA;
	q->mem = &mem;
	q->event_idx = virtio_has_feature(&vdev, VIRTIO_F_EVENT_IDX);
	q->indirect = virtio_has_feature(&vdev, VIRTIO_F_INDIRECT_DESC);
	q->ready = true;
	if (virtq_start(q) < 0)
		abort();
	pthread_mutex_lock(&vdev.lock);
	if (virtio_blk_ops.activate(vb, &vdev) < 0)
		abort();
	pthread_mutex_unlock(&vdev.lock);
}

static void fuzz_reset(struct virtio_blk *vb, uint8_t setup)
{
	pthread_mutex_lock(&vdev.lock);
	virtio_blk_ops.reset(vb);
	if (virtio_blk_inflight(vb) != 0)
		abort();
	virtq_reset(&vdev.vqs[0]);
	vdev.status = 0;
	pthread_mutex_unlock(&vdev.lock);
	memset(ram + AVAIL_GPA, 0, 0x2000); /* the driver starts with fresh rings */
	fuzz_start(vb, setup);
}

/* The guest may point buffers anywhere, its own rings included, so only the
 * host side is checked: the image keeps its size, and the device never holds
 * more requests than it has slots. */
static void fuzz_check(struct virtio_blk *vb)
{
	struct stat st;

	if (fstat(disk_fd, &st) < 0 || st.st_size != DISK_SIZE)
		abort();
	if (virtio_blk_inflight(vb) > VIRTIO_BLK_QUEUE_SIZE)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint32_t types[] = { VIRTIO_BLK_T_IN,     VIRTIO_BLK_T_OUT,
		                          VIRTIO_BLK_T_FLUSH,  VIRTIO_BLK_T_GET_ID,
		                          VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES };
	struct fuzz_in in = { data, size, 0 };
	struct virtio_blk *vb;
	uint16_t avail_idx = 0;
	uint8_t setup;
	int ops = 0;

	if (!loop)
		fuzz_init();
	memset(ram, 0, sizeof(ram));
	setup = fuzz_byte(&in);
	vb = fuzz_create(setup);
	fuzz_start(vb, setup);
	while (in.pos < in.len && ops++ < 512) {
		uint8_t op = fuzz_byte(&in);
		uint16_t off, len, addr;
		uint8_t n, t, flags, idx, next;
		uint64_t gpa;

		switch (op % 8) {
		case 0:
			idx = fuzz_byte(&in);
			addr = fuzz_u16(&in);
			len = fuzz_u16(&in);
			flags = fuzz_byte(&in) % 8;
			next = fuzz_byte(&in);
			gpa = DESC_GPA + 16ULL * idx;
			put64(gpa, addr == 0xffff ? 0xfffffffff000ULL : addr);
			put32(gpa + 8, len);
			put16(gpa + 12, flags);
			put16(gpa + 14, next);
			break;
		case 1:
			off = fuzz_u16(&in);
			n = fuzz_byte(&in);
			for (unsigned i = 0; i < n; i++) {
				uint8_t b = fuzz_byte(&in);

				if ((unsigned)off + i < RAM_SIZE)
					ram[off + i] = b;
			}
			break;
		case 2:
			put16(AVAIL_GPA + 4 + 2ULL * (avail_idx % 256), fuzz_byte(&in));
			avail_idx++;
			put16(AVAIL_GPA + 2, avail_idx);
			break;
		case 3:
			pthread_mutex_lock(&vdev.lock);
			virtio_blk_ops.queue_notify(vb, 0);
			pthread_mutex_unlock(&vdev.lock);
			break;
		case 4:
			if (evloop_run_once(loop, 0) < 0)
				abort();
			break;
		case 5:
			fuzz_reset(vb, setup);
			avail_idx = 0;
			break;
		case 6: {
			struct sbuf out, sin;
			uint16_t last_avail = vdev.vqs[0].last_avail;

			memset(&out, 0, sizeof(out));
			pthread_mutex_lock(&vdev.lock);
			virtio_blk_ops.save(vb, &out);
			pthread_mutex_unlock(&vdev.lock);
			if (out.err)
				abort();
			virtio_blk_destroy(vb);
			vb = fuzz_create(setup);
			vdev.priv = vb;
			sbuf_reader(&sin, out.data, out.len);
			pthread_mutex_lock(&vdev.lock);
			if (virtio_blk_ops.load(vb, &sin) != 0 || sin.pos != out.len)
				abort();
			vdev.vqs[0].last_avail = last_avail;
			if (virtio_blk_ops.activate(vb, &vdev) < 0)
				abort();
			pthread_mutex_unlock(&vdev.lock);
			sbuf_free(&out);
			break;
		}
		case 7:
			off = fuzz_u16(&in) % (RAM_SIZE - 16);
			t = fuzz_byte(&in);
			len = fuzz_u16(&in);
			put32(off, t < 0xf0 ? types[t % 6] : t);
			put32(off + 4, 0);
			put64(off + 8, len == 0xffff ? UINT64_MAX - 3 : len % 160);
			break;
		}
		fuzz_check(vb);
	}
	/* let everything finish */
	for (int i = 0; i < 1000 && virtio_blk_inflight(vb); i++)
		evloop_run_once(loop, 10);
	if (virtio_blk_inflight(vb))
		abort();
	fuzz_check(vb);
	virtio_blk_destroy(vb);
	return 0;
}
