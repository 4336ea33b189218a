/* Unit tests for virtio-console (virtio/console.c).
 *
 * Fake guest memory: 1 MiB of mmap'd host memory with a 512 KiB low limit
 * (guest RAM [0, 512K) and [4G, 4G + 512K)). The tests play the transport
 * (a struct virtio_dev of their own, its lock held around every op, stub
 * interrupt callbacks that count) and the driver (descriptors and rings
 * written straight into the fake memory). Queue q has its descriptor table
 * at 0x1000 + q * 0x4000, its available ring 0x1000 above that and its used
 * ring 0x2000 above; data buffers live from 0x20000. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <termios.h>
#include <unistd.h>

#include <cmocka.h>

#include "state/sbuf.h"
#include "virtio/console.h"
#include "vm/mem.h"

#define KIB 1024ULL
#define G4 0x100000000ULL
#define MEM_SIZE (1024 * KIB)
#define MEM_LOW (512 * KIB)
#define QSIZE 16
#define DATA_GPA 0x20000ULL
#define HOLE_GPA (MEM_LOW + 0x1000) /* between the two RAM regions */

struct seg {
	uint64_t gpa;
	uint32_t len;
	int write;
};

struct fx {
	uint8_t *buf;
	struct guest_mem m;
	struct virtio_dev vd;
	struct virtio_console *c;
	uint16_t next_desc[2], avail_idx[2];
	unsigned irq_queue[2], irq_config, room_calls;
	uint8_t out[16384];
	size_t out_len;
};

/* ---- stubs: the transport's interrupts, the output sink, the room callback ---- */

static void irq_queue(struct virtio_dev *vd, uint16_t q)
{
	struct fx *f = vd->transport;
	if (q < 2)
		f->irq_queue[q]++;
}

static void irq_config(struct virtio_dev *vd)
{
	struct fx *f = vd->transport;
	f->irq_config++;
}

static void sink(void *opaque, const uint8_t *buf, size_t len)
{
	struct fx *f = opaque;
	if (len > sizeof(f->out) - f->out_len)
		len = sizeof(f->out) - f->out_len;
	memcpy(f->out + f->out_len, buf, len);
	f->out_len += len;
}

static void room(void *opaque)
{
	struct fx *f = opaque;
	f->room_calls++;
}

/* ---- fixture ---- */

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

static uint32_t get32(struct fx *f, uint64_t gpa)
{
	uint32_t v;
	memcpy(&v, hva(f, gpa), 4);
	return v;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	f->buf = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (f->buf == MAP_FAILED) {
		free(f);
		return -1;
	}
	mem_init_fake(&f->m, f->buf, MEM_SIZE, MEM_LOW);
	struct virtio_console_setup s = { .out = sink, .out_opaque = f, .room = room, .room_opaque = f };
	f->c = virtio_console_create(&s);
	if (!f->c)
		return -1;
	struct virtio_dev *vd = &f->vd;
	vd->ops = &virtio_console_ops;
	vd->priv = f->c;
	vd->mem = &f->m;
	vd->transport = f;
	vd->irq_queue = irq_queue;
	vd->irq_config = irq_config;
	pthread_mutex_init(&vd->lock, NULL);
	vd->host_features = virtio_console_ops.features(f->c) | 1ULL << VIRTIO_F_VERSION_1;
	vd->guest_features = 1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_CONSOLE_F_SIZE;
	for (int q = 0; q < VIRTIO_MAX_QUEUES; q++)
		vd->vqs[q].mem = &f->m;
	virtio_console_attach(f->c, vd);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	virtio_console_destroy(f->c);
	pthread_mutex_destroy(&f->vd.lock);
	munmap(f->buf, MEM_SIZE);
	free(f);
	return 0;
}

/* The driver enables both queues and sets DRIVER_OK; the transport activates. */
static void driver_up(struct fx *f)
{
	struct virtio_dev *vd = &f->vd;
	for (uint16_t q = 0; q < 2; q++) {
		struct virtq *vq = &vd->vqs[q];
		vq->size = QSIZE;
		vq->desc_gpa = desc_gpa(q);
		vq->avail_gpa = avail_gpa(q);
		vq->used_gpa = used_gpa(q);
		vq->event_idx = virtio_has_feature(vd, VIRTIO_F_EVENT_IDX);
		assert_int_equal(virtq_start(vq), 0);
	}
	pthread_mutex_lock(&vd->lock);
	vd->status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
	             VIRTIO_STATUS_DRIVER_OK;
	assert_int_equal(vd->ops->activate(vd->priv, vd), 0);
	pthread_mutex_unlock(&vd->lock);
}

/* Make a chain of segments available on queue q (no kick). */
static void add_buf(struct fx *f, uint16_t q, const struct seg *s, unsigned n)
{
	uint16_t head = f->next_desc[q];
	for (unsigned i = 0; i < n; i++) {
		uint16_t d = (uint16_t)((head + i) % QSIZE);
		uint64_t at = desc_gpa(q) + 16 * (uint64_t)d;
		put64(f, at, s[i].gpa);
		put32(f, at + 8, s[i].len);
		put16(f, at + 12, (uint16_t)((i + 1 < n ? 1 : 0) | (s[i].write ? 2 : 0)));
		put16(f, at + 14, (uint16_t)((d + 1) % QSIZE));
	}
	f->next_desc[q] = (uint16_t)((head + n) % QSIZE);
	put16(f, avail_gpa(q) + 4 + 2 * (uint64_t)(f->avail_idx[q] % QSIZE), head);
	f->avail_idx[q]++;
	put16(f, avail_gpa(q) + 2, f->avail_idx[q]);
}

/* The transport's notification path: lock held around queue_notify. */
static void kick(struct fx *f, uint16_t q)
{
	pthread_mutex_lock(&f->vd.lock);
	f->vd.ops->queue_notify(f->vd.priv, q);
	pthread_mutex_unlock(&f->vd.lock);
}

static uint16_t used_idx(struct fx *f, uint16_t q) { return get16(f, used_gpa(q) + 2); }
static uint32_t used_len(struct fx *f, uint16_t q, uint16_t i)
{
	return get32(f, used_gpa(q) + 4 + 8 * (uint64_t)(i % QSIZE) + 4);
}

static void cfg_read(struct fx *f, uint16_t *cols, uint16_t *rows)
{
	uint8_t b[VIRTIO_CONSOLE_CONFIG_SIZE];
	pthread_mutex_lock(&f->vd.lock);
	f->vd.ops->config_read(f->vd.priv, 0, b, sizeof(b));
	pthread_mutex_unlock(&f->vd.lock);
	*cols = (uint16_t)(b[0] | b[1] << 8);
	*rows = (uint16_t)(b[2] | b[3] << 8);
}

/* ---- transmit ---- */

static void test_tx_reaches_sink(void **state)
{
	struct fx *f = *state;
	driver_up(f);
	memcpy(hva(f, DATA_GPA), "hel", 3);
	memcpy(hva(f, G4 + 0x100), "lo\n", 3); /* second segment in high RAM */
	struct seg s[] = { { DATA_GPA, 3, 0 }, { G4 + 0x100, 3, 0 } };
	add_buf(f, VIRTIO_CONSOLE_TXQ, s, 2);
	kick(f, VIRTIO_CONSOLE_TXQ);
	assert_int_equal(f->out_len, 6);
	assert_memory_equal(f->out, "hello\n", 6);
	assert_int_equal(used_idx(f, VIRTIO_CONSOLE_TXQ), 1);
	assert_int_equal(used_len(f, VIRTIO_CONSOLE_TXQ, 0), 0);
	assert_int_equal(f->irq_queue[VIRTIO_CONSOLE_TXQ], 1);

	struct virtio_console_counters cnt;
	virtio_console_counters(f->c, &cnt);
	assert_int_equal(cnt.tx_bytes, 6);
}

static void test_tx_before_driver_ok_waits(void **state)
{
	struct fx *f = *state;
	/* buffers made available before DRIVER_OK are sent at activation */
	memcpy(hva(f, DATA_GPA), "early", 5);
	struct seg s = { DATA_GPA, 5, 0 };
	add_buf(f, VIRTIO_CONSOLE_TXQ, &s, 1);
	kick(f, VIRTIO_CONSOLE_TXQ);
	assert_int_equal(f->out_len, 0);
	driver_up(f);
	assert_int_equal(f->out_len, 5);
	assert_memory_equal(f->out, "early", 5);
}

/* ---- receive ---- */

static void test_rx_delivery(void **state)
{
	struct fx *f = *state;
	assert_false(virtio_console_ready(f->c));
	/* input before the driver is up waits in the host buffer */
	assert_int_equal(virtio_console_input(f->c, (const uint8_t *)"abc", 3), 3);
	assert_int_equal(virtio_console_input_room(f->c), VIRTIO_CONSOLE_INPUT_BUF - 3);
	unsigned rooms = f->room_calls;
	driver_up(f);
	assert_true(virtio_console_ready(f->c));
	assert_true(f->room_calls > rooms); /* the VM is told to look again */

	struct seg s = { DATA_GPA, 16, 1 };
	add_buf(f, VIRTIO_CONSOLE_RXQ, &s, 1);
	kick(f, VIRTIO_CONSOLE_RXQ);
	assert_int_equal(used_idx(f, VIRTIO_CONSOLE_RXQ), 1);
	assert_int_equal(used_len(f, VIRTIO_CONSOLE_RXQ, 0), 3);
	assert_memory_equal(hva(f, DATA_GPA), "abc", 3);
	assert_int_equal(f->irq_queue[VIRTIO_CONSOLE_RXQ], 1);

	/* a buffer already waiting takes new input at once */
	add_buf(f, VIRTIO_CONSOLE_RXQ, &s, 1);
	kick(f, VIRTIO_CONSOLE_RXQ); /* nothing to give yet */
	assert_int_equal(used_idx(f, VIRTIO_CONSOLE_RXQ), 1);
	assert_int_equal(virtio_console_input(f->c, (const uint8_t *)"xy", 2), 2);
	assert_int_equal(used_idx(f, VIRTIO_CONSOLE_RXQ), 2);
	assert_int_equal(used_len(f, VIRTIO_CONSOLE_RXQ, 1), 2);
	assert_memory_equal(hva(f, DATA_GPA), "xy", 2);
	assert_int_equal(virtio_console_input_room(f->c), VIRTIO_CONSOLE_INPUT_BUF);
}

static void test_rx_split_across_buffers(void **state)
{
	struct fx *f = *state;
	driver_up(f);
	assert_int_equal(virtio_console_input(f->c, (const uint8_t *)"0123456789", 10), 10);
	for (int i = 0; i < 3; i++) {
		struct seg s[] = { { DATA_GPA + 0x100 * (uint64_t)i, 3, 1 },
			           { DATA_GPA + 0x100 * (uint64_t)i + 0x80, 1, 1 } };
		add_buf(f, VIRTIO_CONSOLE_RXQ, s, 2);
	}
	kick(f, VIRTIO_CONSOLE_RXQ);
	assert_int_equal(used_idx(f, VIRTIO_CONSOLE_RXQ), 3);
	assert_int_equal(used_len(f, VIRTIO_CONSOLE_RXQ, 0), 4);
	assert_int_equal(used_len(f, VIRTIO_CONSOLE_RXQ, 1), 4);
	assert_int_equal(used_len(f, VIRTIO_CONSOLE_RXQ, 2), 2);
	assert_memory_equal(hva(f, DATA_GPA), "012", 3);
	assert_memory_equal(hva(f, DATA_GPA + 0x80), "3", 1);
	assert_memory_equal(hva(f, DATA_GPA + 0x100), "456", 3);
	assert_memory_equal(hva(f, DATA_GPA + 0x180), "7", 1);
	assert_memory_equal(hva(f, DATA_GPA + 0x200), "89", 2);
}

static void test_rx_backpressure(void **state)
{
	struct fx *f = *state;
	static uint8_t big[VIRTIO_CONSOLE_INPUT_BUF + 1000];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7);
	driver_up(f);
	unsigned rooms = f->room_calls;

	/* the host buffer takes what fits and no more */
	assert_int_equal(virtio_console_input(f->c, big, sizeof(big)), VIRTIO_CONSOLE_INPUT_BUF);
	assert_int_equal(virtio_console_input_room(f->c), 0);
	assert_int_equal(virtio_console_input(f->c, big, 10), 0);
	assert_int_equal(f->room_calls, rooms);

	/* the guest takes 1000 bytes: room again, and the VM is told */
	struct seg s = { DATA_GPA, 1000, 1 };
	add_buf(f, VIRTIO_CONSOLE_RXQ, &s, 1);
	kick(f, VIRTIO_CONSOLE_RXQ);
	assert_int_equal(used_len(f, VIRTIO_CONSOLE_RXQ, 0), 1000);
	assert_memory_equal(hva(f, DATA_GPA), big, 1000);
	assert_int_equal(f->room_calls, rooms + 1);
	assert_int_equal(virtio_console_input_room(f->c), 1000);

	/* order is kept across the ring's wrap */
	assert_int_equal(virtio_console_input(f->c, big + VIRTIO_CONSOLE_INPUT_BUF, 1000), 1000);
	struct seg s2 = { DATA_GPA, 8192, 1 };
	add_buf(f, VIRTIO_CONSOLE_RXQ, &s2, 1);
	kick(f, VIRTIO_CONSOLE_RXQ);
	assert_int_equal(used_len(f, VIRTIO_CONSOLE_RXQ, 1), VIRTIO_CONSOLE_INPUT_BUF);
	assert_memory_equal(hva(f, DATA_GPA), big + 1000, VIRTIO_CONSOLE_INPUT_BUF);
	/* no further room call: nobody was waiting */
	assert_int_equal(f->room_calls, rooms + 1);
}

static void test_reset_and_ready(void **state)
{
	struct fx *f = *state;
	driver_up(f);
	assert_true(virtio_console_ready(f->c));
	unsigned rooms = f->room_calls;
	pthread_mutex_lock(&f->vd.lock);
	f->vd.ops->reset(f->vd.priv);
	f->vd.status = 0;
	for (int q = 0; q < 2; q++)
		virtq_reset(&f->vd.vqs[q]);
	pthread_mutex_unlock(&f->vd.lock);
	assert_false(virtio_console_ready(f->c));
	assert_int_equal(f->room_calls, rooms + 1); /* input goes back to the UART */
	/* input while down is kept */
	assert_int_equal(virtio_console_input(f->c, (const uint8_t *)"k", 1), 1);
	assert_int_equal(virtio_console_input_room(f->c), VIRTIO_CONSOLE_INPUT_BUF - 1);
}

/* ---- size ---- */

static void test_resize(void **state)
{
	struct fx *f = *state;
	uint16_t cols, rows;

	cfg_read(f, &cols, &rows);
	assert_int_equal(cols, VIRTIO_CONSOLE_DEFAULT_COLS);
	assert_int_equal(rows, VIRTIO_CONSOLE_DEFAULT_ROWS);
	/* before DRIVER_OK: config changes, no interrupt */
	virtio_console_resize(f->c, 100, 30);
	assert_int_equal(f->irq_config, 0);
	cfg_read(f, &cols, &rows);
	assert_int_equal(cols, 100);
	assert_int_equal(rows, 30);

	/* activation announces the size (Linux reads it on a config interrupt) */
	driver_up(f);
	assert_int_equal(f->irq_config, 1);
	uint8_t gen = f->vd.config_gen;
	virtio_console_resize(f->c, 132, 43);
	assert_int_equal(f->irq_config, 2);
	assert_int_equal(f->vd.config_gen, (uint8_t)(gen + 1));
	cfg_read(f, &cols, &rows);
	assert_int_equal(cols, 132);
	assert_int_equal(rows, 43);
	/* the same size again: nothing to tell */
	virtio_console_resize(f->c, 132, 43);
	assert_int_equal(f->irq_config, 2);

	/* partial and out-of-range reads */
	uint8_t b[2];
	pthread_mutex_lock(&f->vd.lock);
	f->vd.ops->config_read(f->vd.priv, 2, b, 2);
	pthread_mutex_unlock(&f->vd.lock);
	assert_int_equal(b[0] | b[1] << 8, 43);
	/* writes are ignored */
	uint8_t w[4] = { 1, 2, 3, 4 };
	pthread_mutex_lock(&f->vd.lock);
	f->vd.ops->config_write(f->vd.priv, 0, w, 4);
	pthread_mutex_unlock(&f->vd.lock);
	cfg_read(f, &cols, &rows);
	assert_int_equal(cols, 132);
}

static void test_resize_without_feature(void **state)
{
	struct fx *f = *state;
	f->vd.guest_features = 1ULL << VIRTIO_F_VERSION_1; /* driver declined F_SIZE */
	driver_up(f);
	assert_int_equal(f->irq_config, 0);
	virtio_console_resize(f->c, 90, 20);
	assert_int_equal(f->irq_config, 0);
}

static void test_setup_size_and_term_size(void **state)
{
	struct fx *f = *state;
	struct virtio_console_setup s = { .cols = 200, .rows = 50 };
	struct virtio_console *c = virtio_console_create(&s);
	uint8_t b[4];
	assert_non_null(c);
	virtio_console_ops.config_read(c, 0, b, 4);
	assert_int_equal(b[0] | b[1] << 8, 200);
	assert_int_equal(b[2] | b[3] << 8, 50);
	virtio_console_destroy(c);

	uint16_t cols = 7, rows = 7;
	int p[2];
	assert_int_equal(virtio_console_term_size(-1, &cols, &rows), -EBADF);
	assert_int_equal(pipe(p), 0);
	assert_int_equal(virtio_console_term_size(p[0], &cols, &rows), -ENOTTY);
	close(p[0]);
	close(p[1]);
	assert_int_equal(cols, 7);
	assert_int_equal(rows, 7);

	/* a terminal: what TIOCSWINSZ set is what we read (what SIGWINCH handling uses) */
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	if (m < 0 || grantpt(m) || unlockpt(m)) {
		if (m >= 0)
			close(m);
		return; /* no ptys here: nothing more to check */
	}
	int s2 = open(ptsname(m), O_RDWR | O_NOCTTY);
	assert_true(s2 >= 0);
	struct winsize ws = { .ws_row = 0, .ws_col = 0 };
	assert_int_equal(ioctl(s2, TIOCSWINSZ, &ws), 0);
	assert_int_equal(virtio_console_term_size(s2, &cols, &rows), -ENODATA);
	ws.ws_row = 41;
	ws.ws_col = 123;
	assert_int_equal(ioctl(s2, TIOCSWINSZ, &ws), 0);
	assert_int_equal(virtio_console_term_size(s2, &cols, &rows), 0);
	assert_int_equal(cols, 123);
	assert_int_equal(rows, 41);
	close(s2);
	close(m);
	(void)f;
}

/* ---- a hostile driver ---- */

static void test_bad_tx_descriptor(void **state)
{
	struct fx *f = *state;
	driver_up(f);
	struct seg s = { HOLE_GPA, 64, 0 };
	add_buf(f, VIRTIO_CONSOLE_TXQ, &s, 1);
	kick(f, VIRTIO_CONSOLE_TXQ);
	assert_int_equal(f->out_len, 0);
	assert_true(f->vd.status & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(f->irq_config, 2); /* activation + needs-reset */
	assert_false(virtio_console_ready(f->c));
	/* a good buffer after that is not touched: the device waits for a reset */
	memcpy(hva(f, DATA_GPA), "x", 1);
	struct seg g = { DATA_GPA, 1, 0 };
	add_buf(f, VIRTIO_CONSOLE_TXQ, &g, 1);
	kick(f, VIRTIO_CONSOLE_TXQ);
	assert_int_equal(f->out_len, 0);
}

static void test_bad_rx_descriptor(void **state)
{
	struct fx *f = *state;
	driver_up(f);
	assert_int_equal(virtio_console_input(f->c, (const uint8_t *)"data", 4), 4);
	/* a descriptor loop: 0 -> 1 -> 0 */
	uint64_t d = desc_gpa(VIRTIO_CONSOLE_RXQ);
	for (int i = 0; i < 2; i++) {
		put64(f, d + 16 * (uint64_t)i, DATA_GPA);
		put32(f, d + 16 * (uint64_t)i + 8, 8);
		put16(f, d + 16 * (uint64_t)i + 12, 1 | 2);
		put16(f, d + 16 * (uint64_t)i + 14, (uint16_t)(1 - i));
	}
	put16(f, avail_gpa(VIRTIO_CONSOLE_RXQ) + 4, 0);
	put16(f, avail_gpa(VIRTIO_CONSOLE_RXQ) + 2, 1);
	kick(f, VIRTIO_CONSOLE_RXQ);
	assert_true(f->vd.status & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(used_idx(f, VIRTIO_CONSOLE_RXQ), 0);
	/* the input is still there for the next driver */
	assert_int_equal(virtio_console_input_room(f->c), VIRTIO_CONSOLE_INPUT_BUF - 4);
}

static void test_rx_buffer_without_writable_part(void **state)
{
	struct fx *f = *state;
	driver_up(f);
	assert_int_equal(virtio_console_input(f->c, (const uint8_t *)"zz", 2), 2);
	struct seg s = { DATA_GPA, 16, 0 }; /* device-readable: nothing can go there */
	add_buf(f, VIRTIO_CONSOLE_RXQ, &s, 1);
	kick(f, VIRTIO_CONSOLE_RXQ);
	assert_int_equal(used_idx(f, VIRTIO_CONSOLE_RXQ), 1);
	assert_int_equal(used_len(f, VIRTIO_CONSOLE_RXQ, 0), 0);
	assert_false(f->vd.status & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(virtio_console_input_room(f->c), VIRTIO_CONSOLE_INPUT_BUF - 2);
}

/* ---- state ---- */

static void test_save_load(void **state)
{
	struct fx *f = *state;
	struct sbuf s = { 0 }, r;
	virtio_console_resize(f->c, 101, 33);
	assert_int_equal(virtio_console_input(f->c, (const uint8_t *)"pending", 7), 7);
	virtio_console_ops.save(f->c, &s);
	assert_int_equal(s.err, 0);

	struct virtio_console_setup setup0 = { 0 };
	struct virtio_console *c2 = virtio_console_create(&setup0);
	assert_non_null(c2);
	sbuf_reader(&r, s.data, s.len);
	assert_int_equal(virtio_console_ops.load(c2, &r), 0);
	assert_int_equal(r.pos, s.len);
	uint8_t b[4];
	virtio_console_ops.config_read(c2, 0, b, 4);
	assert_int_equal(b[0] | b[1] << 8, 101);
	assert_int_equal(b[2] | b[3] << 8, 33);
	assert_int_equal(virtio_console_input_room(c2), VIRTIO_CONSOLE_INPUT_BUF - 7);

	/* the same bytes come out again */
	struct sbuf s2 = { 0 };
	virtio_console_ops.save(c2, &s2);
	assert_int_equal(s2.len, s.len);
	assert_memory_equal(s2.data, s.data, s.len);

	/* every truncation is refused */
	for (size_t n = 0; n < s.len; n++) {
		sbuf_reader(&r, s.data, n);
		assert_int_equal(virtio_console_ops.load(c2, &r), -EINVAL);
	}
	/* a buffered length beyond the buffer is refused */
	uint8_t bad[28] = { 0 };
	bad[24] = 0xff;
	bad[25] = 0xff;
	sbuf_reader(&r, bad, sizeof(bad));
	assert_int_equal(virtio_console_ops.load(c2, &r), -EINVAL);
	virtio_console_destroy(c2);
	sbuf_free(&s);
	sbuf_free(&s2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_tx_reaches_sink, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tx_before_driver_ok_waits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_delivery, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_split_across_buffers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_backpressure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_and_ready, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resize, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resize_without_feature, setup, teardown),
		cmocka_unit_test_setup_teardown(test_setup_size_and_term_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_tx_descriptor, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_rx_descriptor, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_buffer_without_writable_part, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_load, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
