/* virtio-net on a tap.
 *
 * Transmit: pop a request, check it (device-readable buffers only, a whole
 * header, at most 64 KiB of frame) and writev() its buffers to the tap as
 * they are. A bad request fails alone (used with length 0, tx_errors). When
 * the tap says EAGAIN the request goes back to the ring (virtq_unpop) and the
 * queue waits for EPOLLOUT: nothing is dropped, nothing spins.
 *
 * Receive: receive chains are popped into a pool until it can hold the
 * largest frame the guest may be given (64 KiB with guest TSO, else one
 * Ethernet frame; one chain without MRG_RXBUF), then one readv() puts the next
 * frame straight into them. With MRG_RXBUF a frame spans several chains and
 * num_buffers in its header says how many. When the guest has fewer buffers
 * than that, the frame goes through a bounce buffer: copied if it fits, else
 * held until the guest adds buffers. With no room at all the device stops
 * reading the tap and asks for a kick. Chains still in the pool at the end of
 * a batch go back to the ring, so nothing is held between batches.
 *
 * The tap fd is in the event loop once, edge-triggered for EPOLLIN|EPOLLOUT,
 * so stopping and resuming need no epoll_ctl. Whoever stops before EAGAIN
 * owns the way back: the guest's kick (out of buffers), or this direction's
 * timerfd (rate limit, end of a batch).
 *
 * Threat model: the guest writes the rings and the headers; every buffer comes
 * from virtq_pop (checked against guest RAM), lengths are checked here, and
 * the tap kernel driver validates the headers of frames we pass it. Locking:
 * all of it runs with vdev->lock held (ops by the transport, callbacks here). */
#include "virtio/net.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include "util/log.h"
#include "util/ratelimit.h"
#include "util/size.h"

#define HDR VIRTIO_NET_HDR_LEN
#define NUM_BUFFERS_OFF 10    /* of num_buffers in the header */
#define ETH_FRAME_PLAIN 1518  /* 1500-byte MTU + Ethernet header + VLAN tag */
#define BOUNCE_LEN (HDR + VIRTIO_NET_FRAME_MAX)
#define RX_MAX_IOV 1024       /* IOV_MAX: readv takes no more */
#define RX_BATCH 64           /* frames per turn of the event loop */
#define TX_BATCH 256
#define STATE_VERSION 2 /* 2: a frame held in the bounce buffer travels too */
#define NSEC 1000000000ULL

enum { DIR_RX, DIR_TX };
enum { FILL_BROKEN = -1, FILL_SHORT, FILL_OK, FILL_FULL };

struct net_limit {
	struct ratelimit bytes, pkts;
	uint64_t debt; /* bytes already passed beyond what the bucket held */
	int timer_fd;
	bool armed;     /* the timer will resume this direction */
	bool in_loop;
};

/* A popped receive chain; iov_num 0 marks an unusable one, returned empty. */
struct rx_chain {
	uint16_t head;
	uint16_t iov_num;
	uint32_t cap;
};

struct virtio_net {
	struct virtio_dev *vdev;
	struct evloop *loop;
	struct tap tap;
	bool tap_in_loop;
	uint8_t mac[6];
	uint16_t status, mtu;
	bool active;     /* between activate and reset */
	bool rx_stalled; /* out of guest buffers: waiting for a kick */
	bool tx_blocked; /* the tap said EAGAIN: waiting for EPOLLOUT */
	bool tap_dead;   /* the tap failed for good (deleted?): no more reads */
	struct net_limit lim[2];
	struct virtio_net_stats st;
	/* receive pool: chains in pop order, their writable iovecs back to back */
	struct rx_chain rx[VIRTIO_NET_QUEUE_MAX];
	unsigned rx_n, rx_iovs;
	uint64_t rx_cap;
	uint32_t held_len; /* a frame in bounce waiting for guest buffers */
	uint8_t *bounce;
	struct iovec rx_iov[RX_MAX_IOV];
	struct virtq_elem elem;
};

/* ---- helpers ---- */

static void iov_store(const struct iovec *iov, unsigned cnt, size_t off, const void *src,
                      size_t len)
{
	const uint8_t *s = src;

	for (unsigned i = 0; i < cnt && len; i++) {
		size_t l = iov[i].iov_len, k;
		if (off >= l) {
			off -= l;
			continue;
		}
		k = l - off < len ? l - off : len;
		memcpy((uint8_t *)iov[i].iov_base + off, s, k);
		s += k;
		len -= k;
		off = 0;
	}
}

static void net_arm(struct virtio_net *n, int dir, uint64_t ns)
{
	struct itimerspec its = { 0 };

	if (ns == 0)
		ns = 1;
	its.it_value.tv_sec = (time_t)(ns / NSEC);
	its.it_value.tv_nsec = (long)(ns % NSEC);
	if (timerfd_settime(n->lim[dir].timer_fd, 0, &its, NULL) == 0)
		n->lim[dir].armed = true;
	else
		log_warn("virtio-net %s: cannot arm a timer: %s", n->tap.name, strerror(errno));
}

static void net_disarm(struct virtio_net *n, int dir)
{
	struct itimerspec off = { 0 };

	timerfd_settime(n->lim[dir].timer_fd, 0, &off, NULL);
	n->lim[dir].armed = false;
}

/* Whether the limits let one more frame through; else *wait is when to retry. */
static bool lim_ready(struct net_limit *l, uint64_t *wait)
{
	uint64_t wb, wp;

	if (l->debt)
		l->debt -= ratelimit_take(&l->bytes, l->debt);
	wb = ratelimit_wait_ns(&l->bytes, l->debt ? l->debt : 1);
	wp = ratelimit_wait_ns(&l->pkts, 1);
	*wait = wb > wp ? wb : wp;
	return *wait == 0;
}

/* Charge a frame; what the bucket could not cover is paid before the next one. */
static void lim_charge(struct net_limit *l, uint64_t bytes)
{
	l->debt += bytes - ratelimit_take(&l->bytes, bytes);
	ratelimit_take(&l->pkts, 1);
}

static bool net_running(struct virtio_net *n)
{
	return n->active && !(n->vdev->status & VIRTIO_STATUS_NEEDS_RESET);
}

/* ---- transmit ---- */

static void tx_process(struct virtio_net *n)
{
	struct virtio_dev *vd = n->vdev;
	struct virtq *q = &vd->vqs[VIRTIO_NET_TXQ];
	struct virtq_elem *e = &n->elem;
	unsigned frames = 0;
	bool pushed = false;
	uint64_t wait;

	if (!net_running(n) || n->tx_blocked || n->lim[DIR_TX].armed)
		return;
	virtq_set_notify(q, false);
	for (;;) {
		ssize_t w;
		int rc;

		if (frames == TX_BATCH) {
			net_arm(n, DIR_TX, 1); /* let the rest of the loop run first */
			break;
		}
		rc = virtq_pop(q, e);
		if (rc < 0) {
			virtio_set_needs_reset(vd, q->broken_why);
			break;
		}
		if (rc == 0) {
			virtq_set_notify(q, true);
			if (!virtq_pending(q))
				break;
			virtq_set_notify(q, false);
			continue;
		}
		frames++;
		if (e->in_num || e->out_len < HDR || e->out_len - HDR > VIRTIO_NET_TX_MAX) {
			n->st.tx_errors++;
			virtq_push(q, e->head, 0);
			pushed = true;
			continue;
		}
		if (!lim_ready(&n->lim[DIR_TX], &wait)) {
			virtq_unpop(q);
			n->st.tx_throttled++;
			net_arm(n, DIR_TX, wait);
			break;
		}
		do
			w = writev(n->tap.fd, e->iov, e->out_num);
		while (w < 0 && errno == EINTR);
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			virtq_unpop(q); /* popped again on EPOLLOUT */
			n->tx_blocked = true;
			break;
		}
		if (w < 0) {
			/* EINVAL: the tap refused the guest's header; else the link is gone */
			if (errno == EINVAL)
				n->st.tx_errors++;
			else
				n->st.tx_drops++;
			log_debug("virtio-net %s: tap write: %s", n->tap.name, strerror(errno));
		} else {
			n->st.tx_packets++;
			n->st.tx_bytes += e->out_len - HDR;
			lim_charge(&n->lim[DIR_TX], e->out_len - HDR);
		}
		virtq_push(q, e->head, 0);
		pushed = true;
	}
	if (pushed)
		virtio_notify_queue(vd, VIRTIO_NET_TXQ);
}

/* ---- receive ---- */

/* How many bytes of chains a frame may need (1: one chain, without MRG_RXBUF). */
static uint32_t rx_want(struct virtio_dev *vd)
{
	if (!virtio_has_feature(vd, VIRTIO_NET_F_MRG_RXBUF))
		return 1;
	if (virtio_has_feature(vd, VIRTIO_NET_F_GUEST_TSO4) ||
	    virtio_has_feature(vd, VIRTIO_NET_F_GUEST_TSO6))
		return HDR + VIRTIO_NET_FRAME_MAX;
	return HDR + ETH_FRAME_PLAIN;
}

/* Pop chains into the pool until it holds `want` bytes. FILL_OK when it does,
 * FILL_SHORT when the ring has no more, FILL_FULL when the pool cannot grow. */
static int rx_fill(struct virtio_net *n, struct virtq *q, uint32_t want, bool *pushed)
{
	struct virtq_elem *e = &n->elem;

	while (n->rx_cap < want) {
		struct rx_chain *c;
		int rc;

		if (n->rx_n >= q->size || n->rx_n >= VIRTIO_NET_QUEUE_MAX)
			return FILL_FULL;
		c = &n->rx[n->rx_n];
		rc = virtq_pop(q, e);
		if (rc < 0)
			return FILL_BROKEN;
		if (rc == 0)
			return FILL_SHORT;
		if (e->out_num || e->in_len < HDR) {
			/* not a receive buffer: it goes back empty, after the frames before it */
			n->st.rx_errors++;
			if (n->rx_n == 0) {
				virtq_push(q, e->head, 0);
				*pushed = true;
			} else {
				*c = (struct rx_chain){ e->head, 0, 0 };
				n->rx_n++;
			}
			continue;
		}
		if (n->rx_iovs + e->in_num > RX_MAX_IOV) {
			virtq_unpop(q);
			return FILL_FULL;
		}
		memcpy(&n->rx_iov[n->rx_iovs], &e->iov[e->out_num], e->in_num * sizeof(struct iovec));
		*c = (struct rx_chain){ e->head, e->in_num, e->in_len };
		n->rx_iovs += e->in_num;
		n->rx_cap += e->in_len;
		n->rx_n++;
	}
	return FILL_OK;
}

/* Return a frame's chains to the guest. virtq.h publishes each push on its
 * own, so a driver polling at that moment can see the head of a merged frame
 * before its other buffers; a virtq call that publishes n entries with one
 * used->idx store would close that window (noted for the virtqueue owner). */
static void rx_publish(struct virtq *q, const uint16_t *head, const uint32_t *len, unsigned n)
{
	virtq_push_batch(q, head, len, n); /* all buffers of a frame appear at once */
}

/* The frame (len bytes, header first) sits in the pool from its first chain:
 * set num_buffers, give its chains to the guest and drop them from the pool. */
static void rx_deliver(struct virtio_net *n, struct virtq *q, uint32_t len, bool mrg)
{
	uint16_t heads[VIRTIO_NET_QUEUE_MAX];
	uint32_t lens[VIRTIO_NET_QUEUE_MAX];
	uint32_t left = len;
	unsigned end = 0, nbuf = 0, iovs = 0, np = 0;
	uint64_t cap = 0;
	uint8_t nb[2];

	while (end < n->rx_n && left) {
		uint32_t w = n->rx[end].cap < left ? n->rx[end].cap : left;
		left -= w;
		nbuf += n->rx[end].iov_num ? 1 : 0;
		end++;
		if (!mrg)
			break;
	}
	/* unusable chains up to the next good one go back with this frame */
	while (end < n->rx_n && !n->rx[end].iov_num)
		end++;
	nb[0] = (uint8_t)nbuf;
	nb[1] = (uint8_t)(nbuf >> 8);
	iov_store(n->rx_iov, n->rx[0].iov_num, NUM_BUFFERS_OFF, nb, 2);
	/* the frame's buffers in order, then the unusable ones (empty) */
	left = len;
	for (unsigned k = 0; k < end; k++) {
		uint32_t w = n->rx[k].cap < left ? n->rx[k].cap : left;
		if (n->rx[k].iov_num) {
			heads[np] = n->rx[k].head;
			lens[np++] = w;
			left -= w;
		}
		iovs += n->rx[k].iov_num;
		cap += n->rx[k].cap;
	}
	for (unsigned k = 0; k < end; k++) {
		if (!n->rx[k].iov_num) {
			heads[np] = n->rx[k].head;
			lens[np++] = 0;
		}
	}
	rx_publish(q, heads, lens, np);
	memmove(n->rx, n->rx + end, (n->rx_n - end) * sizeof(n->rx[0]));
	memmove(n->rx_iov, n->rx_iov + iovs, (n->rx_iovs - iovs) * sizeof(n->rx_iov[0]));
	n->rx_n -= end;
	n->rx_iovs -= iovs;
	n->rx_cap -= cap;
	n->st.rx_packets++;
	n->st.rx_bytes += len - HDR;
	lim_charge(&n->lim[DIR_RX], len - HDR);
}

/* Give the chains still in the pool back to the ring (they were popped last). */
static void rx_unpop_pool(struct virtio_net *n, struct virtq *q)
{
	for (unsigned k = 0; k < n->rx_n; k++)
		virtq_unpop(q);
	n->rx_n = n->rx_iovs = 0;
	n->rx_cap = 0;
}

/* One frame from the tap: its length, 0 if there is none, -1 if the tap failed. */
static ssize_t rx_read(struct virtio_net *n, const struct iovec *iov, unsigned cnt)
{
	ssize_t got;

	do
		got = readv(n->tap.fd, iov, (int)cnt);
	while (got < 0 && errno == EINTR);
	if (got > 0)
		return got;
	if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	log_warn("virtio-net %s: %s; receiving stops", n->tap.name,
	         got == 0 ? "the tap was closed" : strerror(errno));
	n->tap_dead = true;
	n->st.rx_errors++;
	return -1;
}

/* A frame shorter than a header (never from a tap) or longer than its buffers. */
static void rx_bad_len(struct virtio_net *n, ssize_t len)
{
	if (len < HDR)
		n->st.rx_errors++;
	else
		n->st.rx_drops++;
}

static void rx_process(struct virtio_net *n)
{
	struct virtio_dev *vd = n->vdev;
	struct virtq *q = &vd->vqs[VIRTIO_NET_RXQ];
	bool mrg = virtio_has_feature(vd, VIRTIO_NET_F_MRG_RXBUF), pushed = false;
	uint32_t want = rx_want(vd);
	unsigned frames = 0;
	uint64_t wait;

	if (!net_running(n) || n->rx_stalled || n->lim[DIR_RX].armed || n->tap_dead)
		return;
	for (;;) {
		ssize_t len;
		int fill;

		if (frames == RX_BATCH) {
			net_arm(n, DIR_RX, 1); /* let the rest of the loop run first */
			break;
		}
		if (!lim_ready(&n->lim[DIR_RX], &wait)) {
			n->st.rx_throttled++;
			net_arm(n, DIR_RX, wait);
			break;
		}
		fill = rx_fill(n, q, n->held_len ? n->held_len : want, &pushed);
		if (fill == FILL_BROKEN) {
			virtio_set_needs_reset(vd, q->broken_why);
			break;
		}
		if (n->rx_cap == 0 || (fill == FILL_SHORT && n->held_len)) {
			/* too few guest buffers: stop reading until the driver adds some */
			virtq_set_notify(q, true);
			if (fill == FILL_SHORT && virtq_pending(q)) {
				virtq_set_notify(q, false);
				continue;
			}
			n->rx_stalled = true;
			break;
		}
		if (n->held_len) {
			len = n->held_len;
			n->held_len = 0;
			if (len > (ssize_t)n->rx_cap) { /* larger than the whole ring */
				n->st.rx_drops++;
				continue;
			}
			iov_store(n->rx_iov, n->rx_iovs, 0, n->bounce, (size_t)len);
		} else if (mrg && fill == FILL_SHORT) {
			struct iovec b = { n->bounce, BOUNCE_LEN };
			len = rx_read(n, &b, 1);
			if (len <= 0)
				break;
			frames++;
			if (len < HDR || len > BOUNCE_LEN) {
				rx_bad_len(n, len);
				continue;
			}
			if (len > (ssize_t)n->rx_cap) {
				n->held_len = (uint32_t)len;
				continue;
			}
			iov_store(n->rx_iov, n->rx_iovs, 0, n->bounce, (size_t)len);
		} else {
			uint64_t cap = mrg ? n->rx_cap : n->rx[0].cap;
			len = rx_read(n, n->rx_iov, mrg ? n->rx_iovs : n->rx[0].iov_num);
			if (len <= 0)
				break;
			frames++;
			if (len < HDR || (uint64_t)len > cap) {
				rx_bad_len(n, len);
				continue;
			}
		}
		rx_deliver(n, q, (uint32_t)len, mrg);
		pushed = true;
	}
	rx_unpop_pool(n, q);
	if (pushed)
		virtio_notify_queue(vd, VIRTIO_NET_RXQ);
}

/* ---- event loop callbacks (main thread) ---- */

static void net_tap_ev(void *opaque, uint32_t events)
{
	struct virtio_net *n = opaque;

	pthread_mutex_lock(&n->vdev->lock);
	if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && n->tx_blocked) {
		n->tx_blocked = false;
		tx_process(n);
	}
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
		rx_process(n);
	pthread_mutex_unlock(&n->vdev->lock);
}

static void net_timer(struct virtio_net *n, int dir)
{
	uint64_t v;

	if (read(n->lim[dir].timer_fd, &v, sizeof(v)) < 0) {
		/* already consumed, or disarmed by a reset */
	}
	pthread_mutex_lock(&n->vdev->lock);
	n->lim[dir].armed = false;
	if (dir == DIR_RX)
		rx_process(n);
	else
		tx_process(n);
	pthread_mutex_unlock(&n->vdev->lock);
}

static void net_rx_timer_ev(void *opaque, uint32_t events)
{
	(void)events;
	net_timer(opaque, DIR_RX);
}

static void net_tx_timer_ev(void *opaque, uint32_t events)
{
	(void)events;
	net_timer(opaque, DIR_TX);
}

/* ---- virtio_dev_ops ---- */

static uint64_t net_features(void *priv)
{
	(void)priv;
	return 1ULL << VIRTIO_NET_F_CSUM | 1ULL << VIRTIO_NET_F_GUEST_CSUM |
	       1ULL << VIRTIO_NET_F_MAC | 1ULL << VIRTIO_NET_F_GUEST_TSO4 |
	       1ULL << VIRTIO_NET_F_GUEST_TSO6 | 1ULL << VIRTIO_NET_F_GUEST_ECN |
	       1ULL << VIRTIO_NET_F_HOST_TSO4 | 1ULL << VIRTIO_NET_F_HOST_TSO6 |
	       1ULL << VIRTIO_NET_F_HOST_ECN | 1ULL << VIRTIO_NET_F_MRG_RXBUF |
	       1ULL << VIRTIO_NET_F_STATUS | 1ULL << VIRTIO_F_EVENT_IDX |
	       1ULL << VIRTIO_F_INDIRECT_DESC;
}

static void net_config_read(void *priv, uint32_t off, uint8_t *buf, uint32_t len)
{
	struct virtio_net *n = priv;
	uint8_t c[VIRTIO_NET_CONFIG_SIZE];

	memcpy(c, n->mac, 6);
	c[6] = (uint8_t)n->status;
	c[7] = (uint8_t)(n->status >> 8);
	c[8] = 1; /* max_virtqueue_pairs */
	c[9] = 0;
	c[10] = (uint8_t)n->mtu;
	c[11] = (uint8_t)(n->mtu >> 8);
	if (off > sizeof(c) || len > sizeof(c) - off) {
		memset(buf, 0, len);
		return;
	}
	memcpy(buf, c + off, len);
}

static void net_config_write(void *priv, uint32_t off, const uint8_t *buf, uint32_t len)
{
	/* virtio 1.x: the driver must not write the configuration (no CTRL_MAC_ADDR) */
	(void)priv;
	(void)off;
	(void)buf;
	(void)len;
}

static int net_activate(void *priv, struct virtio_dev *vdev)
{
	struct virtio_net *n = priv;
	unsigned off = 0;
	int rc;

	if (!n->vdev && (rc = virtio_net_attach(n, vdev)) < 0)
		return rc;
	if (virtio_has_feature(vdev, VIRTIO_NET_F_GUEST_CSUM))
		off |= TAP_OFFLOAD_CSUM;
	if (virtio_has_feature(vdev, VIRTIO_NET_F_GUEST_TSO4))
		off |= TAP_OFFLOAD_TSO4;
	if (virtio_has_feature(vdev, VIRTIO_NET_F_GUEST_TSO6))
		off |= TAP_OFFLOAD_TSO6;
	if (virtio_has_feature(vdev, VIRTIO_NET_F_GUEST_ECN))
		off |= TAP_OFFLOAD_TSO_ECN;
	rc = tap_set_offload(&n->tap, off);
	if (rc < 0) {
		log_warn("virtio-net %s: TUNSETOFFLOAD 0x%x: %s", n->tap.name, off, strerror(-rc));
		return rc;
	}
	n->active = true;
	n->rx_stalled = false;
	n->tx_blocked = false;
	virtq_set_notify(&vdev->vqs[VIRTIO_NET_RXQ], false); /* the tap drives receiving */
	rx_process(n);
	tx_process(n);
	return 0;
}

static void net_queue_notify(void *priv, uint16_t q)
{
	struct virtio_net *n = priv;

	if (q == VIRTIO_NET_RXQ) {
		if (n->rx_stalled) {
			n->rx_stalled = false;
			virtq_set_notify(&n->vdev->vqs[VIRTIO_NET_RXQ], false);
		}
		rx_process(n);
	} else if (q == VIRTIO_NET_TXQ) {
		tx_process(n);
	}
}

static void net_reset(void *priv)
{
	struct virtio_net *n = priv;

	n->active = false;
	n->rx_stalled = false;
	n->tx_blocked = false;
	net_disarm(n, DIR_RX);
	net_disarm(n, DIR_TX);
	if (n->held_len) {
		n->st.rx_drops++;
		n->held_len = 0;
	}
	n->rx_n = n->rx_iovs = 0;
	n->rx_cap = 0;
	if (tap_set_offload(&n->tap, 0) < 0)
		log_debug("virtio-net %s: cannot clear the tap offloads", n->tap.name);
}

/* Tell the network where the guest is now (after a restore or a migration):
 * one RARP broadcast from the guest's MAC, as switches learn addresses from
 * the source of any frame. It works whatever the guest's driver negotiated.
 * Returns the bytes written to the tap, or -errno. */
int virtio_net_announce(struct virtio_net *n)
{
	uint8_t f[HDR + 60] = { 0 }; /* zero header (no offload), minimum frame */
	uint8_t *e = f + HDR;
	static const uint8_t arp_hdr[8] = { 0, 1, 8, 0, 6, 4, 0, 3 }; /* Ethernet, IPv4, reverse request */

	memset(e, 0xff, 6);
	memcpy(e + 6, n->mac, 6);
	e[12] = 0x80; /* ETH_P_RARP */
	e[13] = 0x35;
	memcpy(e + 14, arp_hdr, sizeof(arp_hdr));
	memcpy(e + 22, n->mac, 6); /* sender hardware address; protocol address 0 */
	memcpy(e + 32, n->mac, 6); /* target hardware address; protocol address 0 */
	if (n->tap.fd < 0)
		return -EBADF;
	ssize_t w = write(n->tap.fd, f, sizeof(f));
	if (w < 0)
		return -errno;
	return (int)w;
}

static void net_save(void *priv, struct sbuf *out)
{
	struct virtio_net *n = priv;
	const uint64_t *c = (const uint64_t *)&n->st;

	sbuf_put_u32(out, STATE_VERSION);
	sbuf_put(out, n->mac, 6);
	sbuf_put_u32(out, n->status);
	sbuf_put_u32(out, n->mtu);
	for (size_t i = 0; i < sizeof(n->st) / sizeof(uint64_t); i++)
		sbuf_put_u64(out, c[i]);
	/* a received frame still waiting for guest buffers is part of the state */
	sbuf_put_u32(out, n->held_len);
	sbuf_put(out, n->bounce, n->held_len);
}

static int net_load(void *priv, struct sbuf *in)
{
	struct virtio_net *n = priv;
	struct virtio_net_stats st;
	uint64_t *c = (uint64_t *)&st;
	uint8_t mac[6];
	uint32_t ver, status, mtu;

	ver = sbuf_get_u32(in);
	sbuf_get(in, mac, 6);
	status = sbuf_get_u32(in);
	mtu = sbuf_get_u32(in);
	for (size_t i = 0; i < sizeof(st) / sizeof(uint64_t); i++)
		c[i] = sbuf_get_u64(in);
	uint32_t held = sbuf_get_u32(in);
	if (in->err || ver != STATE_VERSION || status > 0xffff || mtu > 0xffff || (mac[0] & 1) ||
	    held > BOUNCE_LEN || (held && held <= HDR))
		return -EINVAL;
	sbuf_get(in, n->bounce, held);
	if (in->err)
		return -EINVAL;
	n->held_len = held;
	memcpy(n->mac, mac, 6);
	n->status = (uint16_t)status;
	n->mtu = (uint16_t)mtu;
	n->st = st;
	return 0;
}

const struct virtio_dev_ops virtio_net_ops = {
	.name = "virtio-net",
	.device_id = VIRTIO_ID_NET,
	.num_queues = 2,
	.queue_max = VIRTIO_NET_QUEUE_MAX,
	.config_size = VIRTIO_NET_CONFIG_SIZE,
	.features = net_features,
	.config_read = net_config_read,
	.config_write = net_config_write,
	.activate = net_activate,
	.queue_notify = net_queue_notify,
	.reset = net_reset,
	.save = net_save,
	.load = net_load,
};

/* ---- creation, options ---- */

void virtio_net_default_mac(const char *vm_name, unsigned index, uint8_t mac[6])
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a, 64 bits */
	const char *s = vm_name ? vm_name : "";
	uint8_t idx[5] = { 0, (uint8_t)index, (uint8_t)(index >> 8), (uint8_t)(index >> 16),
		           (uint8_t)(index >> 24) };

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
	for (size_t i = 0; i < sizeof(idx); i++) /* a NUL, then the index */
		h = (h ^ idx[i]) * 0x100000001b3ULL;
	h ^= h >> 32;
	mac[0] = 0x52; /* locally administered, unicast */
	mac[1] = 0x54;
	mac[2] = (uint8_t)(h >> 24);
	mac[3] = (uint8_t)(h >> 16);
	mac[4] = (uint8_t)(h >> 8);
	mac[5] = (uint8_t)h;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* "xx:xx:xx:xx:xx:xx", unicast and not all zeroes */
static int parse_mac(const char *s, size_t len, uint8_t mac[6])
{
	if (len != 17)
		return -EINVAL;
	for (int i = 0; i < 6; i++) {
		int hi = hexval(s[3 * i]), lo = hexval(s[3 * i + 1]);
		if (hi < 0 || lo < 0 || (i < 5 && s[3 * i + 2] != ':'))
			return -EINVAL;
		mac[i] = (uint8_t)(hi << 4 | lo);
	}
	if ((mac[0] & 1) || !(mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]))
		return -EINVAL;
	return 0;
}

int virtio_net_parse(const char *opts, struct virtio_net_opts *o, char *err, size_t errlen)
{
	static const char usage[] = "tap=NAME[,mac=MAC][,bps=N][,pps=N]";
	bool has_bps = false, has_pps = false;
	char val[64];

	memset(o, 0, sizeof(*o));
	if (!opts || !*opts) {
		snprintf(err, errlen, "--net needs %s", usage);
		return -EINVAL;
	}
	for (const char *p = opts; *p;) {
		const char *end = strchr(p, ','), *eq;
		size_t len = end ? (size_t)(end - p) : strlen(p), klen, vlen;

		eq = memchr(p, '=', len);
		if (!eq || eq == p) {
			snprintf(err, errlen, "--net: '%.*s' is not KEY=VALUE (%s)", (int)len, p, usage);
			return -EINVAL;
		}
		klen = (size_t)(eq - p);
		vlen = len - klen - 1;
		if (vlen >= sizeof(val)) {
			snprintf(err, errlen, "--net: the value of %.*s is too long", (int)klen, p);
			return -EINVAL;
		}
		memcpy(val, eq + 1, vlen);
		val[vlen] = '\0';
		if (klen == 3 && !strncmp(p, "tap", 3)) {
			if (o->tap[0]) {
				snprintf(err, errlen, "--net: tap= given twice");
				return -EINVAL;
			}
			if (!vlen || vlen >= TAP_NAME_MAX || strchr(val, '/')) {
				snprintf(err, errlen, "--net: tap='%s' is not an interface name of 1 to "
				         "15 characters", val);
				return -EINVAL;
			}
			memcpy(o->tap, val, vlen + 1);
		} else if (klen == 3 && !strncmp(p, "mac", 3)) {
			if (o->has_mac) {
				snprintf(err, errlen, "--net: mac= given twice");
				return -EINVAL;
			}
			if (parse_mac(val, vlen, o->mac) < 0) {
				snprintf(err, errlen, "--net: mac=%s is not a unicast MAC address like "
				         "52:54:00:12:34:56", val);
				return -EINVAL;
			}
			o->has_mac = true;
		} else if (klen == 3 && (!strncmp(p, "bps", 3) || !strncmp(p, "pps", 3))) {
			bool *seen = p[0] == 'b' ? &has_bps : &has_pps;
			uint64_t *v = p[0] == 'b' ? &o->bps : &o->pps;
			if (*seen) {
				snprintf(err, errlen, "--net: %.3s= given twice", p);
				return -EINVAL;
			}
			if (size_parse_u64(val, v) < 0) {
				snprintf(err, errlen, "--net: %.3s=%s is not a whole number per second "
				         "(0: no limit)", p, val);
				return -EINVAL;
			}
			*seen = true;
		} else {
			snprintf(err, errlen, "--net: unknown option '%.*s' (%s)", (int)klen, p, usage);
			return -EINVAL;
		}
		p += len;
		if (*p == ',' && !*++p) {
			snprintf(err, errlen, "--net: '%s' ends with a comma", opts);
			return -EINVAL;
		}
	}
	if (!o->tap[0]) {
		snprintf(err, errlen, "--net: tap=NAME is required (%s)", usage);
		return -EINVAL;
	}
	return 0;
}

static struct virtio_net *net_alloc(const struct virtio_net_opts *o, const char *vm_name,
                                    unsigned index)
{
	struct virtio_net *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->tap.fd = -1;
	n->lim[DIR_RX].timer_fd = n->lim[DIR_TX].timer_fd = -1;
	n->bounce = malloc(BOUNCE_LEN);
	if (!n->bounce)
		goto fail;
	for (int d = 0; d < 2; d++) {
		n->lim[d].timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
		if (n->lim[d].timer_fd < 0)
			goto fail;
		ratelimit_init(&n->lim[d].bytes, o->bps, 0);
		ratelimit_init(&n->lim[d].pkts, o->pps, 0);
	}
	if (o->has_mac)
		memcpy(n->mac, o->mac, 6);
	else
		virtio_net_default_mac(vm_name, index, n->mac);
	n->status = VIRTIO_NET_S_LINK_UP;
	n->mtu = 1500;
	return n;
fail:
	virtio_net_destroy(n);
	return NULL;
}

int virtio_net_create(const char *opts, const char *vm_name, unsigned index,
                      struct virtio_net **out, char *err, size_t errlen)
{
	struct virtio_net_opts o;
	struct virtio_net *n;
	char why[256];
	int rc;

	rc = virtio_net_parse(opts, &o, err, errlen);
	if (rc)
		return rc;
	n = net_alloc(&o, vm_name, index);
	if (!n) {
		snprintf(err, errlen, "--net %s: out of memory or file descriptors", opts);
		return -ENOMEM;
	}
	rc = tap_open(&n->tap, o.tap, why, sizeof(why));
	if (rc) {
		snprintf(err, errlen, "--net: %s", why);
		virtio_net_destroy(n);
		return rc;
	}
	*out = n;
	return 0;
}

struct virtio_net *virtio_net_create_fd(int fd, const struct virtio_net_opts *o,
                                        const char *vm_name, unsigned index)
{
	struct virtio_net *n = net_alloc(o, vm_name, index);

	if (!n) {
		close(fd);
		return NULL;
	}
	tap_from_fd(&n->tap, fd);
	return n;
}

int virtio_net_attach(struct virtio_net *n, struct virtio_dev *vdev)
{
	static const evloop_fn timer_fn[2] = { net_rx_timer_ev, net_tx_timer_ev };
	int rc;

	if (n->vdev)
		return n->vdev == vdev ? 0 : -EBUSY;
	if (!vdev->loop)
		return -EINVAL;
	n->vdev = vdev;
	n->loop = vdev->loop;
	rc = evloop_add(n->loop, n->tap.fd, EPOLLIN | EPOLLOUT | EPOLLET, net_tap_ev, n);
	if (rc)
		return rc;
	n->tap_in_loop = true;
	for (int d = 0; d < 2; d++) {
		rc = evloop_add(n->loop, n->lim[d].timer_fd, EPOLLIN, timer_fn[d], n);
		if (rc)
			return rc;
		n->lim[d].in_loop = true;
	}
	return 0;
}

void virtio_net_destroy(struct virtio_net *n)
{
	if (!n)
		return;
	if (n->tap_in_loop)
		evloop_del(n->loop, n->tap.fd);
	for (int d = 0; d < 2; d++) {
		if (n->lim[d].in_loop)
			evloop_del(n->loop, n->lim[d].timer_fd);
		if (n->lim[d].timer_fd >= 0)
			close(n->lim[d].timer_fd);
	}
	tap_close(&n->tap);
	free(n->bounce);
	free(n);
}

void virtio_net_get_stats(struct virtio_net *n, struct virtio_net_stats *s)
{
	if (n->vdev)
		pthread_mutex_lock(&n->vdev->lock);
	*s = n->st;
	if (n->vdev)
		pthread_mutex_unlock(&n->vdev->lock);
}

void virtio_net_get_mac(struct virtio_net *n, uint8_t mac[6])
{
	if (n->vdev)
		pthread_mutex_lock(&n->vdev->lock);
	memcpy(mac, n->mac, 6);
	if (n->vdev)
		pthread_mutex_unlock(&n->vdev->lock);
}

int virtio_net_set_limits(struct virtio_net *n, uint64_t bps, uint64_t pps)
{
	struct virtio_dev *vdev = n->vdev;

	if (vdev)
		pthread_mutex_lock(&vdev->lock);
	for (int d = 0; d < 2; d++) {
		struct net_limit *l = &n->lim[d];
		if (bps != UINT64_MAX)
			ratelimit_init(&l->bytes, bps, 0);
		if (pps != UINT64_MAX)
			ratelimit_init(&l->pkts, pps, 0);
		l->debt = 0;
		/* a direction waiting under the old limits is re-judged at once */
		if (l->armed) {
			struct itimerspec now = { .it_value = { 0, 1 } };
			timerfd_settime(l->timer_fd, 0, &now, NULL);
		}
	}
	if (vdev)
		pthread_mutex_unlock(&vdev->lock);
	return 0;
}
