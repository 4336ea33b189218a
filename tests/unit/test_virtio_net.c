/* Unit tests for virtio-net (virtio/net.c) and its option parser.
 *
 * Fake guest memory: 4 MiB, all below the hole. The tests play both the
 * transport (a struct virtio_dev filled by hand, as virtio/pci.c would) and
 * the driver (descriptors and rings written straight into the fake memory).
 * A SOCK_SEQPACKET socketpair stands in for the tap: the device owns one end,
 * the test reads and writes frames (12-byte header + Ethernet frame) on the
 * other. A real event loop dispatches the device's fds.
 *
 *   receive queue:  descriptors 0x1000, available 0x3000, used 0x4000
 *   transmit queue: descriptors 0x6000, available 0x8000, used 0x9000
 *   receive buffers from 0x10000, transmit buffers from 0x100000 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "net/tap.h"
#include "state/sbuf.h"
#include "virtio/net.h"
#include "virtio/virtio.h"
#include "vm/evloop.h"
#include "vm/mem.h"

#define MEM_SIZE (4ULL << 20)
#define QSIZE 64
#define RX_BUF 0x10000ULL
#define TX_BUF 0x100000ULL
#define HDR VIRTIO_NET_HDR_LEN

static const uint64_t ring_gpa[2][3] = {
	{ 0x1000, 0x3000, 0x4000 }, /* rx: desc, avail, used */
	{ 0x6000, 0x8000, 0x9000 }, /* tx */
};

struct fx {
	uint8_t *buf;
	struct guest_mem m;
	struct evloop *loop;
	struct virtio_dev vd;
	struct virtio_net *n;
	int fd, peer;
	uint16_t aidx[2];
	unsigned irqs[2];
};

static void count_irq(struct virtio_dev *vd, uint16_t q)
{
	struct fx *f = vd->transport;
	if (q < 2)
		f->irqs[q]++;
}

static void count_cfg_irq(struct virtio_dev *vd)
{
	(void)vd;
}

/* ---- driver-side helpers ---- */

static uint8_t *gp(struct fx *f, uint64_t gpa, uint64_t len)
{
	uint8_t *p = mem_ptr(&f->m, gpa, len);
	assert_non_null(p);
	return p;
}

static void wr16(struct fx *f, uint64_t gpa, uint16_t v)
{
	memcpy(gp(f, gpa, 2), &v, 2);
}

static uint16_t rd16(struct fx *f, uint64_t gpa)
{
	uint16_t v;
	memcpy(&v, gp(f, gpa, 2), 2);
	return v;
}

static uint32_t rd32(struct fx *f, uint64_t gpa)
{
	uint32_t v;
	memcpy(&v, gp(f, gpa, 4), 4);
	return v;
}

static void desc(struct fx *f, int q, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
                 uint16_t next)
{
	uint8_t *p = gp(f, ring_gpa[q][0] + 16ULL * i, 16);
	memcpy(p, &addr, 8);
	memcpy(p + 8, &len, 4);
	memcpy(p + 12, &flags, 2);
	memcpy(p + 14, &next, 2);
}

static void avail_add(struct fx *f, int q, uint16_t head)
{
	wr16(f, ring_gpa[q][1] + 4 + 2ULL * (f->aidx[q] % QSIZE), head);
	f->aidx[q]++;
	wr16(f, ring_gpa[q][1] + 2, f->aidx[q]);
}

static uint16_t used_idx(struct fx *f, int q)
{
	return rd16(f, ring_gpa[q][2] + 2);
}

static uint16_t used_flags(struct fx *f, int q)
{
	return rd16(f, ring_gpa[q][2]);
}

static uint32_t used_id(struct fx *f, int q, uint16_t slot)
{
	return rd32(f, ring_gpa[q][2] + 4 + 8ULL * (slot % QSIZE));
}

static uint32_t used_len(struct fx *f, int q, uint16_t slot)
{
	return rd32(f, ring_gpa[q][2] + 8 + 8ULL * (slot % QSIZE));
}

/* A receive chain of one writable buffer: descriptor i, buffer i. */
static void rx_post(struct fx *f, uint16_t i, uint32_t len)
{
	desc(f, 0, i, RX_BUF + (uint64_t)i * 0x11000, len, VIRTQ_DESC_F_WRITE, 0);
	avail_add(f, 0, i);
}

static uint8_t *rx_data(struct fx *f, uint16_t i, uint32_t len)
{
	return gp(f, RX_BUF + (uint64_t)i * 0x11000, len);
}

/* A transmit request: header in descriptor 2i, frame of len bytes (byte k =
 * seed + k) in descriptor 2i+1. */
static void tx_post(struct fx *f, uint16_t i, uint32_t len, uint8_t seed)
{
	uint64_t h = TX_BUF + (uint64_t)i * 0x11000, d = h + 64;
	uint8_t *p = gp(f, d, len);

	memset(gp(f, h, HDR), 0, HDR);
	gp(f, h, HDR)[0] = 0x5a; /* a recognisable header: flags byte */
	for (uint32_t k = 0; k < len; k++)
		p[k] = (uint8_t)(seed + k);
	desc(f, 1, (uint16_t)(2 * i), h, HDR, VIRTQ_DESC_F_NEXT, (uint16_t)(2 * i + 1));
	desc(f, 1, (uint16_t)(2 * i + 1), d, len, 0, 0);
	avail_add(f, 1, (uint16_t)(2 * i));
}

static void kick(struct fx *f, uint16_t q)
{
	pthread_mutex_lock(&f->vd.lock);
	virtio_net_ops.queue_notify(f->n, q);
	pthread_mutex_unlock(&f->vd.lock);
}

/* Run the event loop until nothing is ready. */
static void pump(struct fx *f)
{
	for (int i = 0; i < 100 && evloop_run_once(f->loop, 0) > 0; i++)
		;
}

/* Send one frame into the device (header + len bytes, byte k = seed + k). */
static void peer_send(struct fx *f, uint32_t len, uint8_t seed)
{
	uint8_t *m = calloc(1, HDR + len);
	assert_non_null(m);
	m[1] = 0; /* gso_type none */
	for (uint32_t k = 0; k < len; k++)
		m[HDR + k] = (uint8_t)(seed + k);
	assert_int_equal(write(f->peer, m, HDR + len), HDR + len);
	free(m);
}

/* Bytes of the next frame the device sent, or -1 if none. */
static ssize_t peer_recv(struct fx *f, uint8_t *buf, size_t len)
{
	return recv(f->peer, buf, len, MSG_DONTWAIT);
}

static struct virtio_net_stats stats(struct fx *f)
{
	struct virtio_net_stats s;
	virtio_net_get_stats(f->n, &s);
	return s;
}

/* ---- fixture ---- */

static struct fx *fx_new(uint64_t features, const char *opts)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct virtio_net_opts o;
	char err[200];
	int sv[2];

	assert_non_null(f);
	f->buf = calloc(1, MEM_SIZE);
	assert_non_null(f->buf);
	mem_init_fake(&f->m, f->buf, MEM_SIZE, MEM_SIZE);
	f->loop = evloop_create();
	assert_non_null(f->loop);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	f->fd = sv[0];
	f->peer = sv[1];
	assert_int_equal(virtio_net_parse(opts ? opts : "tap=test0", &o, err, sizeof(err)), 0);
	f->n = virtio_net_create_fd(f->fd, &o, "unit", 0);
	assert_non_null(f->n);

	struct virtio_dev *vd = &f->vd;
	vd->ops = &virtio_net_ops;
	vd->priv = f->n;
	vd->mem = &f->m;
	vd->loop = f->loop;
	vd->transport = f;
	vd->irq_queue = count_irq;
	vd->irq_config = count_cfg_irq;
	pthread_mutex_init(&vd->lock, NULL);
	vd->host_features = virtio_net_ops.features(f->n) | 1ULL << VIRTIO_F_VERSION_1;
	vd->guest_features = (features | 1ULL << VIRTIO_F_VERSION_1) & vd->host_features;
	for (int q = 0; q < 2; q++) {
		struct virtq *vq = &vd->vqs[q];
		vq->mem = &f->m;
		vq->size = QSIZE;
		vq->desc_gpa = ring_gpa[q][0];
		vq->avail_gpa = ring_gpa[q][1];
		vq->used_gpa = ring_gpa[q][2];
		vq->event_idx = virtio_has_feature(vd, VIRTIO_F_EVENT_IDX);
		vq->indirect = virtio_has_feature(vd, VIRTIO_F_INDIRECT_DESC);
		assert_int_equal(virtq_start(vq), 0);
	}
	assert_int_equal(virtio_net_attach(f->n, vd), 0);
	vd->status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
	             VIRTIO_STATUS_DRIVER_OK;
	pthread_mutex_lock(&vd->lock);
	assert_int_equal(virtio_net_ops.activate(f->n, vd), 0);
	pthread_mutex_unlock(&vd->lock);
	pump(f);
	return f;
}

static void fx_free(struct fx *f)
{
	virtio_net_destroy(f->n); /* closes f->fd */
	close(f->peer);
	evloop_destroy(f->loop);
	pthread_mutex_destroy(&f->vd.lock);
	free(f->buf);
	free(f);
}

/* ---- transmit ---- */

static void test_tx_frame_reaches_tap_with_header(void **state)
{
	struct fx *f = fx_new(0, NULL);
	uint8_t got[2048];
	(void)state;

	tx_post(f, 0, 100, 7);
	kick(f, VIRTIO_NET_TXQ);
	assert_int_equal(peer_recv(f, got, sizeof(got)), HDR + 100);
	assert_int_equal(got[0], 0x5a);
	for (int k = 0; k < 100; k++)
		assert_int_equal(got[HDR + k], (uint8_t)(7 + k));
	assert_int_equal(used_idx(f, 1), 1);
	assert_int_equal(used_id(f, 1, 0), 0);
	assert_int_equal(used_len(f, 1, 0), 0);
	assert_int_equal(f->irqs[1], 1);
	assert_int_equal(stats(f).tx_packets, 1);
	assert_int_equal(stats(f).tx_bytes, 100);
	assert_int_equal(peer_recv(f, got, sizeof(got)), -1);
	fx_free(f);
}

static void test_tx_batch_one_interrupt(void **state)
{
	struct fx *f = fx_new(0, NULL);
	uint8_t got[2048];
	(void)state;

	for (uint16_t i = 0; i < 5; i++)
		tx_post(f, i, 60 + i, (uint8_t)i);
	kick(f, VIRTIO_NET_TXQ);
	for (int i = 0; i < 5; i++)
		assert_int_equal(peer_recv(f, got, sizeof(got)), HDR + 60 + i);
	assert_int_equal(used_idx(f, 1), 5);
	assert_int_equal(f->irqs[1], 1);
	/* the queue asks for kicks again once it is empty */
	assert_int_equal(used_flags(f, 1), 0);
	fx_free(f);
}

static void test_tx_bad_requests_fail_alone(void **state)
{
	struct fx *f = fx_new(0, NULL);
	uint8_t got[2048];
	(void)state;

	/* shorter than the header */
	desc(f, 1, 0, TX_BUF, 8, 0, 0);
	avail_add(f, 1, 0);
	/* a device-writable buffer in a transmit request */
	desc(f, 1, 2, TX_BUF, HDR, VIRTQ_DESC_F_NEXT, 3);
	desc(f, 1, 3, TX_BUF + 64, 100, VIRTQ_DESC_F_WRITE, 0);
	avail_add(f, 1, 2);
	/* a frame over 64 KiB */
	desc(f, 1, 4, TX_BUF, HDR, VIRTQ_DESC_F_NEXT, 5);
	desc(f, 1, 5, TX_BUF + 64, VIRTIO_NET_TX_MAX + 1, 0, 0);
	avail_add(f, 1, 4);
	/* and a good one after them */
	tx_post(f, 3, 50, 1);
	kick(f, VIRTIO_NET_TXQ);

	assert_int_equal(used_idx(f, 1), 4);
	for (uint16_t s = 0; s < 3; s++)
		assert_int_equal(used_len(f, 1, s), 0);
	assert_int_equal(stats(f).tx_errors, 3);
	assert_int_equal(stats(f).tx_packets, 1);
	assert_int_equal(peer_recv(f, got, sizeof(got)), HDR + 50);
	assert_int_equal(peer_recv(f, got, sizeof(got)), -1);
	assert_false(f->vd.status & VIRTIO_STATUS_NEEDS_RESET);
	fx_free(f);
}

static void test_tx_outside_ram_needs_reset(void **state)
{
	struct fx *f = fx_new(0, NULL);
	uint8_t got[64];
	(void)state;

	desc(f, 1, 0, MEM_SIZE - 4, HDR, 0, 0); /* runs past the end of RAM */
	avail_add(f, 1, 0);
	kick(f, VIRTIO_NET_TXQ);
	assert_true(f->vd.status & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(used_idx(f, 1), 0);
	assert_int_equal(peer_recv(f, got, sizeof(got)), -1);
	/* further kicks are harmless */
	tx_post(f, 1, 20, 0);
	kick(f, VIRTIO_NET_TXQ);
	assert_int_equal(peer_recv(f, got, sizeof(got)), -1);
	fx_free(f);
}

static void test_tx_eagain_waits_for_room(void **state)
{
	struct fx *f = fx_new(0, NULL);
	uint8_t got[4096], filler[1000] = { 0 };
	int queued = 0;
	(void)state;

	/* fill the socket until it refuses */
	while (write(f->fd, filler, sizeof(filler)) > 0)
		queued++;
	assert_int_equal(errno, EAGAIN);
	tx_post(f, 0, 300, 9);
	kick(f, VIRTIO_NET_TXQ);
	assert_int_equal(used_idx(f, 1), 0); /* kept, not dropped */
	assert_int_equal(stats(f).tx_drops, 0);
	pump(f);
	assert_int_equal(used_idx(f, 1), 0);

	for (int i = 0; i < queued; i++)
		assert_int_equal(peer_recv(f, got, sizeof(got)), sizeof(filler));
	pump(f); /* EPOLLOUT */
	assert_int_equal(used_idx(f, 1), 1);
	assert_int_equal(peer_recv(f, got, sizeof(got)), HDR + 300);
	assert_int_equal(got[HDR], 9);
	assert_int_equal(stats(f).tx_packets, 1);
	fx_free(f);
}

/* ---- receive ---- */

static void test_rx_fills_buffer_and_used_ring(void **state)
{
	struct fx *f = fx_new(0, NULL);
	(void)state;

	rx_post(f, 0, 2048);
	kick(f, VIRTIO_NET_RXQ);
	peer_send(f, 100, 3);
	pump(f);
	assert_int_equal(used_idx(f, 0), 1);
	assert_int_equal(used_id(f, 0, 0), 0);
	assert_int_equal(used_len(f, 0, 0), HDR + 100);
	uint8_t *p = rx_data(f, 0, HDR + 100);
	assert_int_equal(p[10] | p[11] << 8, 1); /* num_buffers */
	for (int k = 0; k < 100; k++)
		assert_int_equal(p[HDR + k], (uint8_t)(3 + k));
	assert_int_equal(f->irqs[0], 1);
	assert_int_equal(stats(f).rx_packets, 1);
	assert_int_equal(stats(f).rx_bytes, 100);
	fx_free(f);
}

static void test_rx_batch_one_interrupt(void **state)
{
	struct fx *f = fx_new(0, NULL);
	(void)state;

	for (uint16_t i = 0; i < 4; i++)
		rx_post(f, i, 2048);
	kick(f, VIRTIO_NET_RXQ);
	for (int i = 0; i < 3; i++)
		peer_send(f, 200 + i, 0);
	pump(f);
	assert_int_equal(used_idx(f, 0), 3);
	assert_int_equal(f->irqs[0], 1);
	for (uint16_t s = 0; s < 3; s++)
		assert_int_equal(used_len(f, 0, s), HDR + 200 + s);
	fx_free(f);
}

static void test_rx_mergeable_spans_buffers(void **state)
{
	struct fx *f = fx_new(1ULL << VIRTIO_NET_F_MRG_RXBUF, NULL);
	(void)state;

	/* 512-byte buffers: one Ethernet frame's worth takes three of them */
	for (uint16_t i = 0; i < 4; i++)
		rx_post(f, i, 512);
	kick(f, VIRTIO_NET_RXQ);
	peer_send(f, 1188, 5); /* 1200 bytes with the header */
	pump(f);
	assert_int_equal(used_idx(f, 0), 3);
	assert_int_equal(used_len(f, 0, 0), 512);
	assert_int_equal(used_len(f, 0, 1), 512);
	assert_int_equal(used_len(f, 0, 2), 176);
	uint8_t *p = rx_data(f, 0, 512);
	assert_int_equal(p[10] | p[11] << 8, 3);
	assert_int_equal(p[HDR], 5);
	assert_int_equal(rx_data(f, 1, 1)[0], (uint8_t)(5 + 500));
	assert_int_equal(rx_data(f, 2, 1)[0], (uint8_t)(5 + 1012));
	assert_int_equal(f->irqs[0], 1);
	/* the fourth buffer is still the guest's to give */
	assert_int_equal(f->vd.vqs[0].last_avail, 3);
	fx_free(f);
}

static void test_rx_mergeable_bounce_and_hold(void **state)
{
	/* with guest TSO a frame may be 64 KiB: the ring holds less, so frames
	 * go through the bounce buffer, and one that does not fit waits */
	uint64_t feat = 1ULL << VIRTIO_NET_F_MRG_RXBUF | 1ULL << VIRTIO_NET_F_GUEST_CSUM |
	                1ULL << VIRTIO_NET_F_GUEST_TSO4;
	struct fx *f = fx_new(feat, NULL);
	(void)state;

	for (uint16_t i = 0; i < 4; i++)
		rx_post(f, i, 1024);
	kick(f, VIRTIO_NET_RXQ);
	peer_send(f, 2988, 1); /* 3000 bytes: three buffers */
	pump(f);
	assert_int_equal(used_idx(f, 0), 3);
	assert_int_equal(used_len(f, 0, 2), 3000 - 2048);
	assert_int_equal(rx_data(f, 0, 12)[10], 3);
	assert_int_equal(rx_data(f, 2, 1)[0], (uint8_t)(1 + 2048 - HDR));

	peer_send(f, 4988, 2); /* 5000 bytes, one buffer left: held */
	peer_send(f, 88, 3);   /* behind it, must wait too */
	pump(f);
	assert_int_equal(used_idx(f, 0), 3);
	for (uint16_t i = 4; i < 9; i++)
		rx_post(f, i, 1024);
	kick(f, VIRTIO_NET_RXQ);
	pump(f);
	assert_int_equal(used_idx(f, 0), 3 + 5 + 1);
	assert_int_equal(used_id(f, 0, 3), 3);
	assert_int_equal(rx_data(f, 3, 12)[10], 5);
	assert_int_equal(used_len(f, 0, 7), 5000 - 4096);
	assert_int_equal(used_len(f, 0, 8), HDR + 88);
	assert_int_equal(stats(f).rx_packets, 3);
	assert_int_equal(stats(f).rx_drops, 0);
	fx_free(f);
}

static void test_rx_out_of_buffers_stops_until_kick(void **state)
{
	struct fx *f = fx_new(0, NULL);
	uint8_t tmp[16];
	(void)state;

	peer_send(f, 60, 1);
	pump(f);
	assert_int_equal(used_idx(f, 0), 0);
	/* the frame is still in the tap and the device wants a kick */
	assert_true(recv(f->fd, tmp, sizeof(tmp), MSG_PEEK | MSG_DONTWAIT) > 0);
	assert_int_equal(used_flags(f, 0), 0);
	peer_send(f, 61, 2);
	pump(f);
	assert_int_equal(used_idx(f, 0), 0);

	rx_post(f, 0, 2048);
	rx_post(f, 1, 2048);
	rx_post(f, 2, 2048);
	kick(f, VIRTIO_NET_RXQ);
	assert_int_equal(used_idx(f, 0), 2);
	assert_int_equal(used_len(f, 0, 0), HDR + 60);
	assert_int_equal(used_len(f, 0, 1), HDR + 61);
	/* reading again: no notifications wanted while buffers last */
	assert_int_equal(used_flags(f, 0), VIRTQ_USED_F_NO_NOTIFY);
	fx_free(f);
}

static void test_rx_event_idx_stall_asks_for_next_buffer(void **state)
{
	struct fx *f = fx_new(1ULL << VIRTIO_F_EVENT_IDX | 1ULL << VIRTIO_NET_F_MRG_RXBUF, NULL);
	(void)state;

	/* two small buffers: not enough for a whole frame, and the guest has more to add */
	rx_post(f, 0, 256);
	rx_post(f, 1, 256);
	kick(f, VIRTIO_NET_RXQ);
	peer_send(f, 1400, 0);
	pump(f);
	assert_int_equal(used_idx(f, 0), 0);
	/* avail_event names the next index the driver will publish */
	assert_int_equal(rd16(f, ring_gpa[0][2] + 4 + 8 * QSIZE), 2);
	assert_int_equal(f->vd.vqs[0].last_avail, 0);
	for (uint16_t i = 2; i < 8; i++)
		rx_post(f, i, 256);
	kick(f, VIRTIO_NET_RXQ);
	assert_int_equal(used_idx(f, 0), 6);
	assert_int_equal(rx_data(f, 0, 12)[10], 6);
	fx_free(f);
}

static void test_rx_bad_chain_given_back_empty(void **state)
{
	struct fx *f = fx_new(0, NULL);
	(void)state;

	desc(f, 0, 0, RX_BUF, 100, 0, 0); /* device-readable: not a receive buffer */
	avail_add(f, 0, 0);
	desc(f, 0, 1, RX_BUF, 8, VIRTQ_DESC_F_WRITE, 0); /* no room for the header */
	avail_add(f, 0, 1);
	rx_post(f, 2, 2048);
	kick(f, VIRTIO_NET_RXQ);
	peer_send(f, 70, 0);
	pump(f);
	assert_int_equal(used_idx(f, 0), 3);
	assert_int_equal(used_len(f, 0, 0), 0);
	assert_int_equal(used_len(f, 0, 1), 0);
	assert_int_equal(used_id(f, 0, 2), 2);
	assert_int_equal(used_len(f, 0, 2), HDR + 70);
	assert_int_equal(stats(f).rx_errors, 2);
	assert_false(f->vd.status & VIRTIO_STATUS_NEEDS_RESET);
	fx_free(f);
}

static void test_reset_stops_io(void **state)
{
	struct fx *f = fx_new(0, NULL);
	uint8_t tmp[16];
	(void)state;

	rx_post(f, 0, 2048);
	pthread_mutex_lock(&f->vd.lock);
	virtio_net_ops.reset(f->n);
	f->vd.status = 0;
	pthread_mutex_unlock(&f->vd.lock);
	peer_send(f, 64, 0);
	tx_post(f, 0, 64, 0);
	pump(f);
	kick(f, VIRTIO_NET_TXQ);
	assert_int_equal(used_idx(f, 0), 0);
	assert_int_equal(used_idx(f, 1), 0);
	assert_true(recv(f->fd, tmp, sizeof(tmp), MSG_PEEK | MSG_DONTWAIT) > 0);
	assert_int_equal(peer_recv(f, tmp, sizeof(tmp)), -1);
	fx_free(f);
}

/* ---- rate limits ---- */

static void test_tx_pps_limit_throttles(void **state)
{
	struct fx *f = fx_new(0, "tap=t,pps=2");
	uint8_t got[256];
	int sent = 0;
	(void)state;

	for (uint16_t i = 0; i < 5; i++)
		tx_post(f, i, 40, 0);
	kick(f, VIRTIO_NET_TXQ);
	while (peer_recv(f, got, sizeof(got)) > 0)
		sent++;
	assert_int_equal(sent, 2);
	assert_int_equal(used_idx(f, 1), 2);
	assert_true(stats(f).tx_throttled >= 1);
	assert_int_equal(stats(f).tx_drops, 0);
	/* a kick while throttled sends nothing more */
	kick(f, VIRTIO_NET_TXQ);
	assert_int_equal(used_idx(f, 1), 2);
	/* the timer brings the rest (about a second later), none lost */
	for (int i = 0; i < 40 && used_idx(f, 1) < 5; i++)
		evloop_run_once(f->loop, 100);
	assert_int_equal(used_idx(f, 1), 5);
	fx_free(f);
}

static void test_rx_bps_limit_throttles(void **state)
{
	struct fx *f = fx_new(0, "tap=t,bps=1000");
	(void)state;

	for (uint16_t i = 0; i < 4; i++)
		rx_post(f, i, 2048);
	kick(f, VIRTIO_NET_RXQ);
	for (int i = 0; i < 4; i++)
		peer_send(f, 600, 0);
	pump(f);
	/* 1000 bytes in the bucket: the second frame overdraws, then it waits */
	assert_int_equal(stats(f).rx_packets, 2);
	assert_int_equal(used_idx(f, 0), 2);
	assert_true(stats(f).rx_throttled >= 1);
	assert_int_equal(stats(f).rx_drops, 0);
	fx_free(f);
}

/* ---- configuration, state, options ---- */

static void test_config_space(void **state)
{
	struct fx *f = fx_new(0, "tap=t,mac=02:11:22:33:44:55");
	uint8_t c[VIRTIO_NET_CONFIG_SIZE];
	(void)state;

	virtio_net_ops.config_read(f->n, 0, c, sizeof(c));
	assert_memory_equal(c, "\x02\x11\x22\x33\x44\x55", 6);
	assert_int_equal(c[6] | c[7] << 8, VIRTIO_NET_S_LINK_UP);
	assert_int_equal(c[8] | c[9] << 8, 1);
	assert_int_equal(c[10] | c[11] << 8, 1500);
	virtio_net_ops.config_read(f->n, 4, c, 2);
	assert_int_equal(c[0], 0x44);
	assert_true(virtio_net_ops.features(f->n) & 1ULL << VIRTIO_NET_F_MRG_RXBUF);
	assert_false(virtio_net_ops.features(f->n) & 1ULL << 17); /* no control queue */
	fx_free(f);
}

static void test_save_load(void **state)
{
	struct fx *f = fx_new(0, "tap=t,mac=02:00:00:00:00:07");
	struct virtio_net_opts o;
	struct virtio_net *n2;
	struct virtio_net_stats s;
	struct sbuf out = { 0 }, in;
	uint8_t mac[6], frame[256];
	int sp[2];
	char err[200];
	(void)state;

	tx_post(f, 0, 33, 0);
	kick(f, VIRTIO_NET_TXQ);
	virtio_net_ops.save(f->n, &out);
	assert_int_equal(out.err, 0);

	assert_int_equal(virtio_net_parse("tap=t", &o, err, sizeof(err)), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp), 0);
	n2 = virtio_net_create_fd(sp[0], &o, "other", 3);
	assert_non_null(n2);
	sbuf_reader(&in, out.data, out.len);
	assert_int_equal(virtio_net_ops.load(n2, &in), 0);
	virtio_net_get_mac(n2, mac);
	assert_memory_equal(mac, "\x02\x00\x00\x00\x00\x07", 6);
	/* loading sends nothing; the announcement (vm_announce, once the takeover is
	 * final) is one RARP broadcast from the guest's MAC */
	assert_int_equal(recv(sp[1], frame, sizeof(frame), MSG_DONTWAIT), -1);
	assert_int_equal(virtio_net_announce(n2), HDR + 60);
	assert_int_equal(recv(sp[1], frame, sizeof(frame), MSG_DONTWAIT), HDR + 60);
	assert_memory_equal(frame, "\0\0\0\0\0\0\0\0\0\0\0\0", HDR);
	assert_memory_equal(frame + HDR, "\xff\xff\xff\xff\xff\xff\x02\0\0\0\0\x07\x80\x35", 14);
	assert_memory_equal(frame + HDR + 14, "\0\x01\x08\0\x06\x04\0\x03", 8);
	assert_memory_equal(frame + HDR + 22, "\x02\0\0\0\0\x07\0\0\0\0", 10);
	assert_memory_equal(frame + HDR + 32, "\x02\0\0\0\0\x07\0\0\0\0", 10);
	virtio_net_get_stats(n2, &s);
	assert_int_equal(s.tx_packets, 1);
	assert_int_equal(s.tx_bytes, 33);

	/* truncated, or from another version: refused */
	sbuf_reader(&in, out.data, out.len - 1);
	assert_int_equal(virtio_net_ops.load(n2, &in), -EINVAL);
	out.data[0] ^= 0x40;
	sbuf_reader(&in, out.data, out.len);
	assert_int_equal(virtio_net_ops.load(n2, &in), -EINVAL);
	virtio_net_destroy(n2);
	close(sp[1]);
	sbuf_free(&out);
	fx_free(f);
}

static void test_save_load_keeps_held_frame(void **state)
{
	/* a frame waiting in the bounce buffer at snapshot time is not lost: it
	 * travels in the state and a loaded device saves the same state again */
	uint64_t feat = 1ULL << VIRTIO_NET_F_MRG_RXBUF | 1ULL << VIRTIO_NET_F_GUEST_CSUM |
	                1ULL << VIRTIO_NET_F_GUEST_TSO4;
	struct fx *f = fx_new(feat, NULL);
	struct virtio_net_opts o;
	struct virtio_net *n2;
	struct sbuf out = { 0 }, again = { 0 }, in;
	char err[200];
	int sp[2];
	(void)state;

	rx_post(f, 0, 1024);
	kick(f, VIRTIO_NET_RXQ);
	peer_send(f, 4988, 7); /* 5000 bytes, one 1 KiB buffer: held */
	pump(f);
	assert_int_equal(used_idx(f, 0), 0);
	virtio_net_ops.save(f->n, &out);
	assert_int_equal(out.err, 0);
	assert_true(out.len > 5000);

	assert_int_equal(virtio_net_parse("tap=t", &o, err, sizeof(err)), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp), 0);
	n2 = virtio_net_create_fd(sp[0], &o, "other", 3);
	assert_non_null(n2);
	sbuf_reader(&in, out.data, out.len);
	assert_int_equal(virtio_net_ops.load(n2, &in), 0);
	virtio_net_ops.save(n2, &again);
	assert_int_equal(again.len, out.len);
	assert_memory_equal(again.data, out.data, out.len);

	/* a held length beyond the bounce buffer, or shorter than a header: refused */
	size_t at = out.len - 5000 - 4; /* the held length precedes the frame */
	assert_int_equal(out.data[at] | out.data[at + 1] << 8, 5000);
	out.data[at + 2] = 0x10; /* 1 MiB + 5000 */
	sbuf_reader(&in, out.data, out.len);
	assert_int_equal(virtio_net_ops.load(n2, &in), -EINVAL);
	out.data[at + 2] = 0;
	out.data[at] = 5;
	out.data[at + 1] = 0;
	sbuf_reader(&in, out.data, out.len);
	assert_int_equal(virtio_net_ops.load(n2, &in), -EINVAL);
	virtio_net_destroy(n2);
	close(sp[1]);
	sbuf_free(&again);
	sbuf_free(&out);
	fx_free(f);
}

static void test_parse_options(void **state)
{
	struct virtio_net_opts o;
	char err[256];
	(void)state;

	assert_int_equal(virtio_net_parse("tap=tap0", &o, err, sizeof(err)), 0);
	assert_string_equal(o.tap, "tap0");
	assert_false(o.has_mac);
	assert_int_equal(o.bps, 0);
	assert_int_equal(virtio_net_parse("mac=52:54:00:AB:cd:01,tap=t1,bps=1000000,pps=5000", &o,
	                                  err, sizeof(err)), 0);
	assert_string_equal(o.tap, "t1");
	assert_true(o.has_mac);
	assert_memory_equal(o.mac, "\x52\x54\x00\xab\xcd\x01", 6);
	assert_int_equal(o.bps, 1000000);
	assert_int_equal(o.pps, 5000);

	static const char *const bad[] = {
		"", "tap=", "mac=52:54:00:00:00:01", "tap=a,tap=b", "tap=a,mac=01:00:5e:00:00:01",
		"tap=a,mac=00:00:00:00:00:00", "tap=a,mac=52:54:00:00:00", "tap=a,mac=52-54-00-00-00-01",
		"tap=a,bps=fast", "tap=a,pps=-1", "tap=a,speed=10", "tap=a,", "tap=a,,mac=x", "tap",
		"tap=abcdefghijklmnop", "tap=a/b", "tap=a,bps=1,bps=2", NULL,
	};
	for (int i = 0; bad[i]; i++) {
		err[0] = '\0';
		assert_int_equal(virtio_net_parse(bad[i], &o, err, sizeof(err)), -EINVAL);
		assert_true(strncmp(err, "--net", 5) == 0);
		assert_null(strchr(err, '\n'));
	}
}

static void test_default_mac(void **state)
{
	uint8_t a[6], b[6], c[6], d[6];
	(void)state;

	virtio_net_default_mac("vm1", 0, a);
	virtio_net_default_mac("vm1", 0, b);
	virtio_net_default_mac("vm1", 1, c);
	virtio_net_default_mac("vm2", 0, d);
	assert_memory_equal(a, b, 6);
	assert_memory_not_equal(a, c, 6);
	assert_memory_not_equal(a, d, 6);
	assert_int_equal(a[0], 0x52);
	assert_int_equal(a[1], 0x54);
	assert_int_equal(a[0] & 1, 0); /* unicast */
	assert_int_equal(a[0] & 2, 2); /* locally administered */
}

static void test_tap_open_errors(void **state)
{
	struct tap t;
	char err[256] = "";
	(void)state;

	assert_true(tap_open(&t, "no-such-tap9", err, sizeof(err)) < 0);
	assert_int_equal(t.fd, -1);
	assert_true(strlen(err) > 10);
	assert_null(strchr(err, '\n'));
	assert_int_equal(tap_open(&t, "a-name-far-too-long", err, sizeof(err)), -EINVAL);
}

static void test_create_reports_tap_errors(void **state)
{
	struct virtio_net *n = NULL;
	char err[256] = "";
	(void)state;

	assert_true(virtio_net_create("tap=no-such-tap9", "vm", 0, &n, err, sizeof(err)) < 0);
	assert_null(n);
	assert_true(strncmp(err, "--net: tap no-such-tap9", 23) == 0);
	assert_int_equal(virtio_net_create("tap=x,zzz=1", "vm", 0, &n, err, sizeof(err)), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tx_frame_reaches_tap_with_header),
		cmocka_unit_test(test_tx_batch_one_interrupt),
		cmocka_unit_test(test_tx_bad_requests_fail_alone),
		cmocka_unit_test(test_tx_outside_ram_needs_reset),
		cmocka_unit_test(test_tx_eagain_waits_for_room),
		cmocka_unit_test(test_rx_fills_buffer_and_used_ring),
		cmocka_unit_test(test_rx_batch_one_interrupt),
		cmocka_unit_test(test_rx_mergeable_spans_buffers),
		cmocka_unit_test(test_rx_mergeable_bounce_and_hold),
		cmocka_unit_test(test_rx_out_of_buffers_stops_until_kick),
		cmocka_unit_test(test_rx_event_idx_stall_asks_for_next_buffer),
		cmocka_unit_test(test_rx_bad_chain_given_back_empty),
		cmocka_unit_test(test_reset_stops_io),
		cmocka_unit_test(test_tx_pps_limit_throttles),
		cmocka_unit_test(test_rx_bps_limit_throttles),
		cmocka_unit_test(test_config_space),
		cmocka_unit_test(test_save_load),
		cmocka_unit_test(test_save_load_keeps_held_frame),
		cmocka_unit_test(test_parse_options),
		cmocka_unit_test(test_default_mac),
		cmocka_unit_test(test_tap_open_errors),
		cmocka_unit_test(test_create_reports_tap_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
