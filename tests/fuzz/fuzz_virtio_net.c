/* libFuzzer target for virtio-net (virtio/net.c): fuzzed rings for both
 * queues over fake guest memory, frames arriving from a fake tap (a
 * SOCK_SEQPACKET socketpair), the tap filling up, resets and save/load.
 *
 * Fake guest memory: 256 KiB with a 128 KiB low limit, so the guest sees
 * [0, 128K) and [4G, 4G + 128K). The input is
 *
 *   byte 0   features: bit 0 MRG_RXBUF, bit 1 EVENT_IDX, bit 2 INDIRECT_DESC,
 *            bit 3 GUEST_CSUM + GUEST_TSO4, bit 4 a packet rate limit,
 *            bit 5 a byte rate limit, bit 6 "fold" (below)
 *   byte 1   queue sizes: rx {1..128}[b & 7], tx {1..128}[(b >> 3) & 7]
 *   byte 2   n, the length of the operation program that follows
 *   n bytes  operations (below)
 *   rest     the guest memory image, copied from guest address 0 up
 *
 * Rings: rx descriptors 0x0, available 0x800, used 0x1000; tx descriptors
 * 0x2000, available 0x2800, used 0x3000; indirect tables 0x3800 (rx) and
 * 0x3c00 (tx). Buffers posted by operations 5 and 6 lie in [0x4000, 128K) or
 * the high region; otherwise they are wherever the image's descriptors say.
 * "fold" rewrites both descriptor tables so that addresses mostly hit RAM
 * (either region, sometimes straddling its end) with lengths mostly below
 * 16 KiB, and avail ring entries mostly name real descriptors.
 *
 * Operations (low 4 bits; the high 4 bits are an argument a):
 *   0 kick rx   1 kick tx   2 the tap delivers a frame of a fuzzed length
 *   3 run the event loop   4 the tap's peer reads everything the device sent
 *   5 guest posts a receive chain, 6 guest posts a transmit request: a & 3 + 1
 *     descriptors (consecutive, wrapping, so small queues make loops), through an
 *     indirect table if a & 4, with one wrong-direction or short buffer if a & 8;
 *     two bytes per descriptor pick its buffer (either region) and length
 *   7 device reset, then activate again   8 save, load into a fresh device
 *   9 the device's side of the tap fills up (writes until EAGAIN)
 *   10 guest: avail slot (a >> 1) of queue a & 1 = next byte (any head)
 *   11 guest: avail idx of queue a & 1 += (a >> 1) + 1 (entries it never wrote)
 *   12 guest: toggle NO_INTERRUPT on both queues
 *   13 config space read; with a & 8, parse the next (a & 7) * 6 bytes as --net options
 *   14 a 64 KiB frame from the tap   15 counters; wait 1 ms for timers
 *
 * Checked (abort on violation): every used entry names a descriptor below the
 * queue size; transmit entries report 0 bytes written, receive entries at most
 * a header plus the largest frame; every frame the device wrote to the tap is
 * a header plus at most 64 KiB; counters never go down; loading what was just
 * saved succeeds. ASan catches any access outside the fake memory,
 * libFuzzer's -timeout any spin. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "state/sbuf.h"
#include "virtio/net.h"
#include "virtio/virtio.h"
#include "vm/evloop.h"
#include "vm/mem.h"

#define G4 0x100000000ULL
#define MEM_SIZE 0x40000ULL
#define MEM_LOW 0x20000ULL
#define HDR VIRTIO_NET_HDR_LEN
#define DATA_GPA 0x4000ULL
#define DATA_LEN (MEM_LOW - DATA_GPA)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint64_t ring_gpa[2][3] = {
	{ 0x0000, 0x0800, 0x1000 },
	{ 0x2000, 0x2800, 0x3000 },
};
static const uint64_t indir_gpa[2] = { 0x3800, 0x3c00 };

struct prog {
	const uint8_t *p;
	size_t len, pos;
};

struct ctx {
	uint8_t *buf;
	struct guest_mem m;
	struct evloop *loop;
	struct virtio_dev vd;
	struct virtio_net *n;
	struct virtio_net_opts o;
	int fd, peer;
	uint16_t seen_used[2];
	uint16_t next_desc[2]; /* the driver's next free descriptor */
	struct virtio_net_stats last;
	uint8_t *frame;
};

#define CHECK(c)                  \
	do {                      \
		if (!(c))         \
			abort();  \
	} while (0)

static uint8_t next_byte(struct prog *pr)
{
	return pr->pos < pr->len ? pr->p[pr->pos++] : 0;
}

static void no_irq(struct virtio_dev *vd, uint16_t q)
{
	(void)vd;
	(void)q;
}

static void no_cfg_irq(struct virtio_dev *vd)
{
	(void)vd;
}

static uint8_t *hva(struct ctx *c, uint64_t gpa, uint64_t len)
{
	uint8_t *p = mem_ptr(&c->m, gpa, len);
	CHECK(p);
	return p;
}

static uint16_t ld16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}

static uint32_t ld32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static void st16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static void fold(struct ctx *c)
{
	for (int q = 0; q < 2; q++) {
		uint8_t *t = hva(c, ring_gpa[q][0], 16 * 128);
		for (int i = 0; i < 128; i++) {
			uint8_t *d = t + 16 * i;
			uint64_t a;
			uint32_t len = ld32(d + 8);
			memcpy(&a, d, 8);
			a = ((a & 1) ? G4 : 0) + (a >> 1) % (MEM_LOW + 0x800);
			if (!(len & 0x80000000u))
				len %= 0x4000;
			memcpy(d, &a, 8);
			memcpy(d + 8, &len, 4);
			st16(d + 14, (uint16_t)(ld16(d + 14) % 132));
		}
		uint8_t *av = hva(c, ring_gpa[q][1], 4 + 2 * 128);
		for (int i = 0; i < 128; i++)
			st16(av + 4 + 2 * i, (uint16_t)(ld16(av + 4 + 2 * i) % 132));
	}
}

static void configure(struct ctx *c, uint8_t feat, uint8_t sizes)
{
	static const uint16_t qs[8] = { 1, 2, 4, 8, 16, 32, 64, 128 };
	struct virtio_dev *vd = &c->vd;
	uint64_t f = 1ULL << VIRTIO_F_VERSION_1;

	if (feat & 1)
		f |= 1ULL << VIRTIO_NET_F_MRG_RXBUF;
	if (feat & 2)
		f |= 1ULL << VIRTIO_F_EVENT_IDX;
	if (feat & 4)
		f |= 1ULL << VIRTIO_F_INDIRECT_DESC;
	if (feat & 8)
		f |= 1ULL << VIRTIO_NET_F_GUEST_CSUM | 1ULL << VIRTIO_NET_F_GUEST_TSO4;
	vd->ops = &virtio_net_ops;
	vd->priv = c->n;
	vd->mem = &c->m;
	vd->loop = c->loop;
	vd->transport = c;
	vd->irq_queue = no_irq;
	vd->irq_config = no_cfg_irq;
	vd->host_features = virtio_net_ops.features(c->n) | 1ULL << VIRTIO_F_VERSION_1;
	vd->guest_features = f & vd->host_features;
	for (int q = 0; q < 2; q++) {
		struct virtq *vq = &vd->vqs[q];
		virtq_reset(vq);
		vq->mem = &c->m;
		vq->size = qs[(q ? sizes >> 3 : sizes) & 7];
		vq->desc_gpa = ring_gpa[q][0];
		vq->avail_gpa = ring_gpa[q][1];
		vq->used_gpa = ring_gpa[q][2];
		vq->event_idx = virtio_has_feature(vd, VIRTIO_F_EVENT_IDX);
		vq->indirect = virtio_has_feature(vd, VIRTIO_F_INDIRECT_DESC);
		CHECK(virtq_start(vq) == 0);
	}
	vd->status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
	             VIRTIO_STATUS_DRIVER_OK;
	virtio_net_ops.activate(c->n, vd);
}

/* New used entries since the last look must be sane. */
static void check_used(struct ctx *c)
{
	for (int q = 0; q < 2; q++) {
		struct virtq *vq = &c->vd.vqs[q];
		if (!vq->ready)
			continue;
		uint8_t *used = hva(c, ring_gpa[q][2], 4 + 8ULL * vq->size);
		for (uint16_t i = c->seen_used[q]; i != vq->used_idx; i++) {
			uint8_t *e = used + 4 + 8 * (size_t)(i & (vq->size - 1));
			CHECK(ld32(e) < vq->size);
			if (q == VIRTIO_NET_TXQ)
				CHECK(ld32(e + 4) == 0);
			else
				CHECK(ld32(e + 4) <= HDR + VIRTIO_NET_FRAME_MAX);
		}
		c->seen_used[q] = vq->used_idx;
	}
}

static void check_stats(struct ctx *c)
{
	struct virtio_net_stats s;
	const uint64_t *now = (const uint64_t *)&s, *was = (const uint64_t *)&c->last;

	virtio_net_get_stats(c->n, &s);
	for (size_t i = 0; i < sizeof(s) / sizeof(uint64_t); i++)
		CHECK(now[i] >= was[i]);
	c->last = s;
}

static void put_desc(struct ctx *c, uint64_t table, uint16_t i, uint64_t addr, uint32_t len,
                     uint16_t flags, uint16_t next)
{
	uint8_t *d = hva(c, table + 16ULL * i, 16);
	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

static void avail_add(struct ctx *c, int q, uint16_t head)
{
	struct virtq *vq = &c->vd.vqs[q];
	uint8_t *idx = hva(c, ring_gpa[q][1] + 2, 2);
	uint16_t i = ld16(idx);

	st16(hva(c, ring_gpa[q][1] + 4 + 2ULL * (i & (vq->size - 1)), 2), head);
	st16(idx, (uint16_t)(i + 1));
}

/* The driver adds a chain to queue q (operations 5 and 6). */
static void post_chain(struct ctx *c, int q, unsigned a, struct prog *ops)
{
	struct virtq *vq = &c->vd.vqs[q];
	unsigned nd = 1 + (a & 3);
	bool indirect = (a & 4) && vq->indirect, bad = a & 8;
	uint16_t first = indirect ? 0 : c->next_desc[q], head = c->next_desc[q];

	if (!vq->ready)
		return;
	for (unsigned k = 0; k < nd; k++) {
		uint8_t b = next_byte(ops), l = next_byte(ops);
		uint64_t addr = ((b & 1) ? G4 : 0) + DATA_GPA + ((b >> 1) * 0x380ULL) % DATA_LEN;
		uint16_t i = indirect ? (uint16_t)k : (uint16_t)((first + k) % vq->size);
		uint16_t nx = indirect ? (uint16_t)(k + 1) : (uint16_t)((first + k + 1) % vq->size);
		uint16_t fl = k + 1 < nd ? VIRTQ_DESC_F_NEXT : 0;
		uint32_t len;

		if (q == VIRTIO_NET_RXQ) {
			len = HDR + l * 24u;
			if (!(bad && k == 0))
				fl |= VIRTQ_DESC_F_WRITE;
			else if (l & 1)
				len = l % HDR; /* writable but too short */
		} else if (k == 0) {
			len = bad ? l % (HDR + 1) : HDR;
		} else {
			len = l * 64u;
			if (bad && k + 1 == nd)
				fl |= VIRTQ_DESC_F_WRITE;
		}
		if (addr % (MEM_LOW) + len > MEM_LOW) /* keep it in RAM; op 10/11 and the image do not */
			len = (uint32_t)(MEM_LOW - addr % MEM_LOW);
		put_desc(c, indirect ? indir_gpa[q] : ring_gpa[q][0], i, addr, len, fl, nx);
	}
	if (indirect) {
		put_desc(c, ring_gpa[q][0], head, indir_gpa[q], 16 * nd, VIRTQ_DESC_F_INDIRECT, 0);
		c->next_desc[q] = (uint16_t)((head + 1) % vq->size);
	} else {
		c->next_desc[q] = (uint16_t)((first + nd) % vq->size);
	}
	avail_add(c, q, head);
}

static void locked_notify(struct ctx *c, uint16_t q)
{
	pthread_mutex_lock(&c->vd.lock);
	if ((c->vd.status & VIRTIO_STATUS_DRIVER_OK) && !(c->vd.status & VIRTIO_STATUS_NEEDS_RESET))
		virtio_net_ops.queue_notify(c->n, q);
	pthread_mutex_unlock(&c->vd.lock);
}

static void peer_send(struct ctx *c, size_t len)
{
	if (send(c->peer, c->frame, len, MSG_DONTWAIT) < 0) {
		/* the fake tap is full: a real one drops too */
	}
}

static void peer_drain(struct ctx *c)
{
	for (int i = 0; i < 4096; i++) {
		ssize_t got = recv(c->peer, c->frame, HDR + VIRTIO_NET_TX_MAX + 16, MSG_DONTWAIT);
		if (got < 0)
			break;
		CHECK(got >= HDR && got <= HDR + VIRTIO_NET_TX_MAX);
	}
}

static void save_load(struct ctx *c)
{
	struct sbuf out = { 0 }, in;
	int sv[2];

	pthread_mutex_lock(&c->vd.lock);
	virtio_net_ops.save(c->n, &out);
	pthread_mutex_unlock(&c->vd.lock);
	CHECK(!out.err);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0) {
		struct virtio_net *n2 = virtio_net_create_fd(sv[0], &c->o, "fuzz", 1);
		close(sv[1]);
		if (n2) {
			sbuf_reader(&in, out.data, out.len);
			CHECK(virtio_net_ops.load(n2, &in) == 0);
			virtio_net_destroy(n2);
		}
	}
	sbuf_free(&out);
}

static struct ctx ctx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ctx *c = &ctx;
	struct prog in = { data, size, 0 };
	uint8_t feat = next_byte(&in), sizes = next_byte(&in), nops = next_byte(&in);
	struct prog ops = { data + in.pos, 0, 0 };
	uint8_t cfg[VIRTIO_NET_CONFIG_SIZE];
	int sv[2];

	ops.len = size - in.pos < nops ? size - in.pos : nops;
	in.pos += ops.len;
	memset(c, 0, sizeof(*c));
	c->buf = calloc(1, MEM_SIZE);
	c->frame = malloc(HDR + VIRTIO_NET_FRAME_MAX + 16);
	c->loop = evloop_create();
	if (!c->buf || !c->frame || !c->loop)
		abort();
	for (size_t i = 0; i < HDR + VIRTIO_NET_FRAME_MAX + 16; i++)
		c->frame[i] = (uint8_t)(i * 7);
	memcpy(c->buf, data + in.pos, size - in.pos < MEM_SIZE ? size - in.pos : MEM_SIZE);
	mem_init_fake(&c->m, c->buf, MEM_SIZE, MEM_LOW);
	if (feat & 64)
		fold(c);

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	c->fd = sv[0];
	c->peer = sv[1];
	memcpy(c->o.tap, "fuzz", 5);
	c->o.pps = (feat & 16) ? 3 : 0;
	c->o.bps = (feat & 32) ? 5000 : 0;
	c->n = virtio_net_create_fd(c->fd, &c->o, "fuzz", 0);
	if (!c->n)
		abort();
	pthread_mutex_init(&c->vd.lock, NULL);
	c->vd.loop = c->loop;
	CHECK(virtio_net_attach(c->n, &c->vd) == 0);
	pthread_mutex_lock(&c->vd.lock);
	configure(c, feat, sizes);
	pthread_mutex_unlock(&c->vd.lock);

	while (ops.pos < ops.len) {
		uint8_t op = next_byte(&ops);
		unsigned a = op >> 4;
		uint8_t *p;

		switch (op & 15) {
		case 0:
			locked_notify(c, VIRTIO_NET_RXQ);
			break;
		case 1:
			locked_notify(c, VIRTIO_NET_TXQ);
			break;
		case 2:
			peer_send(c, 1 + ((size_t)a << 8 | next_byte(&ops)) % 9000);
			break;
		case 3:
			for (int i = 0; i < 8 && evloop_run_once(c->loop, 0) > 0; i++)
				;
			break;
		case 4:
			peer_drain(c);
			break;
		case 5:
			post_chain(c, VIRTIO_NET_RXQ, a, &ops);
			break;
		case 6:
			post_chain(c, VIRTIO_NET_TXQ, a, &ops);
			break;
		case 7:
			pthread_mutex_lock(&c->vd.lock);
			virtio_net_ops.reset(c->n);
			configure(c, feat, sizes);
			c->seen_used[0] = c->seen_used[1] = 0;
			c->next_desc[0] = c->next_desc[1] = 0;
			pthread_mutex_unlock(&c->vd.lock);
			break;
		case 8:
			save_load(c);
			break;
		case 9:
			while (write(c->fd, c->frame, 1500) > 0)
				;
			break;
		case 10:
			p = hva(c, ring_gpa[a & 1][1] + 4 + 2 * (a >> 1), 2);
			st16(p, next_byte(&ops));
			break;
		case 11:
			p = hva(c, ring_gpa[a & 1][1] + 2, 2);
			st16(p, (uint16_t)(ld16(p) + (a >> 1) + 1));
			break;
		case 12:
			for (int q = 0; q < 2; q++) {
				p = hva(c, ring_gpa[q][1], 2);
				st16(p, ld16(p) ^ VIRTQ_AVAIL_F_NO_INTERRUPT);
			}
			break;
		case 13:
			if (a & 8) {
				char opt[48], err[160];
				struct virtio_net_opts po;
				size_t k = 0;
				for (; k < (a & 7) * 6u && ops.pos < ops.len; k++)
					opt[k] = (char)next_byte(&ops);
				opt[k] = '\0';
				if (virtio_net_parse(opt, &po, err, sizeof(err)) == 0)
					CHECK(po.tap[0] && strlen(po.tap) < TAP_NAME_MAX && !(po.mac[0] & 1));
				else
					CHECK(strncmp(err, "--net", 5) == 0);
				break;
			}
			virtio_net_ops.config_read(c->n, a % VIRTIO_NET_CONFIG_SIZE, cfg,
			                           1 + (VIRTIO_NET_CONFIG_SIZE - 1 - a % VIRTIO_NET_CONFIG_SIZE) % 4);
			break;
		case 14:
			peer_send(c, HDR + VIRTIO_NET_FRAME_MAX - a);
			break;
		case 15:
			check_stats(c);
			evloop_run_once(c->loop, 1);
			break;
		}
		check_used(c);
	}
	check_stats(c);

	pthread_mutex_lock(&c->vd.lock);
	virtio_net_ops.reset(c->n);
	pthread_mutex_unlock(&c->vd.lock);
	virtio_net_destroy(c->n);
	close(c->peer);
	evloop_destroy(c->loop);
	pthread_mutex_destroy(&c->vd.lock);
	free(c->buf);
	free(c->frame);
	return 0;
}
