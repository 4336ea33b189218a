/* vhost-vsock backend (linux/vhost.h). The rx (0) and tx (1) queues belong to
 * the kernel once the driver is ready: it gets the guest memory map, the ring
 * addresses, the transport's kick eventfds and the MSI-X irqfds. The event
 * queue (2) stays here; its buffers are only used to announce a transport
 * reset after a restore or a migration.
 *
 * Live migration. vhost writes guest memory behind KVM's back: the used rings
 * of both queues, and the rx buffers it fills with packets. While a migration
 * runs, vhost keeps a dirty log (VHOST_F_LOG_ALL, VHOST_SET_LOG_BASE and
 * VHOST_VRING_F_LOG on both rings): one bit per 4 KiB page of guest-physical
 * address space, set atomically by the kernel; virtio_vsock_log_collect()
 * moves it into the migration's bitmaps. vhost-vsock (Linux 6.1 at least)
 * logs only its used-ring writes, not the packet data it copies into rx
 * buffers, so at the switch-over, with the guest paused and vhost stopped,
 * the last queue-size rx buffers vhost took are marked as written too
 * (virtio_vsock_quiesce); the buffers the guest has not looked at yet are
 * among them (a driver cannot have more buffers out than the queue size).
 * Buffers the guest already took off the ring (packets waiting in a socket)
 * may arrive stale: those connections are reset, see below.
 *
 * A restored or migrated guest gets VIRTIO_VSOCK_EVENT_TRANSPORT_RESET as the
 * device restarts, before its vCPUs run again: its connections are gone and
 * it re-reads its CID (virtio 1.2, 5.10.6.6). The CID: a migration's
 * destination on the same host cannot have it until the source exits after
 * handing over, so it runs without it (vhost drops the guest's packets) and
 * claims it from the event loop, retrying for a while. The source keeps the
 * CID and its vhost device until the destination has taken over: a failed
 * switch-over resumes it with vsock and its connections intact. */
#include "virtio/vsock.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/vhost.h>
#include <linux/virtio_vsock.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"
#include "util/ratelimit.h"
#include "util/size.h"

#define VSOCK_F_SEQPACKET 1
#define Q_RX 0
#define Q_TX 1
#define Q_EVENT 2
#define LOG_PAGE 4096ULL /* VHOST_PAGE_SIZE */
#define TICK_NS 50000000L                 /* retry the CID / the reset event every 50 ms */
#define CLAIM_WINDOW_NS 30000000000ULL    /* for at most 30 s of the VM running */
/* The source's vhost device lets go of the CID as it closes, then resets the
 * host's sockets connected to the CID, unless someone holds the CID again by
 * then: the destination waits a little before its first try, so that host
 * peers of the guest's old connections learn they are gone. */
#define CLAIM_DELAY_NS 250000000ULL

struct virtio_vsock {
	int fd;
	uint64_t cid;
	uint64_t vhost_features;
	uint64_t features; /* negotiated, as given to vhost (without VHOST_F_LOG_ALL) */
	const struct guest_mem *mem;
	struct evloop *loop;
	struct virtio_dev *vdev; /* set by the first activation */
	/* Taken after vdev->lock where both are held. Serializes the vhost set-up
	 * of the transport's callbacks (vCPU threads, main thread) with the
	 * migration thread's logging switches. */
	pthread_mutex_t lock;
	bool running;
	bool quiesced; /* stopped by virtio_vsock_quiesce, to be restarted */
	struct vhost_vring_addr addr[2]; /* rx and tx rings as given to vhost, flags aside */
	/* vhost's dirty log: bit n = guest page at gpa n * 4096 (allocated once) */
	uint64_t *log;
	uint64_t log_pages;
	size_t log_bytes;
	bool logging;
	uint64_t logged; /* pages the log named since logging started */
	/* work for the event loop's timer */
	bool cid_pending; /* the CID still belongs to another vhost device */
	bool announce;    /* the guest is to get a transport reset */
	int timer_fd;
	uint64_t deadline_ns, claim_after_ns;
};

int virtio_vsock_parse(const char *opts, uint64_t *cid, char *err, size_t errlen)
{
	if (!opts || strncmp(opts, "cid=", 4) || size_parse_u64(opts + 4, cid) < 0) {
		snprintf(err, errlen, "--vsock: '%s' is not cid=N", opts ? opts : "");
		return -EINVAL;
	}
	if (*cid < 3 || *cid > 0xffffffffULL) {
		snprintf(err, errlen, "--vsock: cid %llu is reserved or too large (use 3..4294967295)",
		         (unsigned long long)*cid);
		return -EINVAL;
	}
	return 0;
}

static void vsock_tick(void *opaque, uint32_t events);

/* Run vsock_tick every 50 ms from the event loop, with a fresh deadline. */
static int arm_timer(struct virtio_vsock *v)
{
	if (v->timer_fd < 0) {
		int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
		if (fd < 0)
			return -errno;
		int rc = evloop_add(v->loop, fd, EPOLLIN, vsock_tick, v);
		if (rc < 0) {
			close(fd);
			return rc;
		}
		v->timer_fd = fd;
	}
	struct itimerspec its = { .it_interval = { .tv_nsec = TICK_NS }, .it_value = { .tv_nsec = 1000000 } };
	v->deadline_ns = 0; /* counted from the first tick: the loop may start much later */
	return timerfd_settime(v->timer_fd, 0, &its, NULL) < 0 ? -errno : 0;
}

int virtio_vsock_create(uint64_t cid, bool incoming, const struct guest_mem *mem,
                        struct evloop *loop, struct virtio_vsock **out, char *err, size_t errlen)
{
	struct virtio_vsock *v = calloc(1, sizeof(*v));
	int rc;

	if (!v)
		return -ENOMEM;
	v->cid = cid;
	v->mem = mem;
	v->loop = loop;
	v->timer_fd = -1;
	pthread_mutex_init(&v->lock, NULL);
	v->fd = open(VHOST_VSOCK_DEVICE, O_RDWR | O_CLOEXEC);
	if (v->fd < 0) {
		rc = -errno;
		if (rc == -ENOENT)
			snprintf(err, errlen, "--vsock needs %s: load the vhost_vsock module "
			         "(modprobe vhost_vsock)", VHOST_VSOCK_DEVICE);
		else
			snprintf(err, errlen, "--vsock: %s: %s", VHOST_VSOCK_DEVICE, strerror(errno));
		goto fail;
	}
	if (ioctl(v->fd, VHOST_SET_OWNER) < 0 ||
	    ioctl(v->fd, VHOST_GET_FEATURES, &v->vhost_features) < 0) {
		rc = -errno;
		snprintf(err, errlen, "--vsock: vhost set-up failed: %s", strerror(errno));
		goto fail;
	}
	/* claim the CID now, so a clash is reported at start-up, not at guest boot */
	if (ioctl(v->fd, VHOST_VSOCK_SET_GUEST_CID, &v->cid) < 0) {
		rc = -errno;
		if (incoming && rc == -EADDRINUSE) {
			/* most likely the migration's source on this host: it lets go when it exits */
			log_info("vsock: cid %llu is still taken (by the migration source?); "
			         "claiming it once it is free", (unsigned long long)cid);
			v->cid_pending = true;
			if ((rc = arm_timer(v)) == 0) {
				*out = v;
				return 0;
			}
		}
		snprintf(err, errlen, "--vsock: cid %llu: %s", (unsigned long long)cid,
		         rc == -EADDRINUSE ? "in use by another VM" : strerror(-rc));
		goto fail;
	}
	*out = v;
	return 0;
fail:
	if (v->timer_fd >= 0) {
		evloop_del(v->loop, v->timer_fd);
		close(v->timer_fd);
	}
	if (v->fd >= 0)
		close(v->fd);
	pthread_mutex_destroy(&v->lock);
	free(v);
	return rc;
}

/* v->lock held */
static void vsock_stop(struct virtio_vsock *v)
{
	int off = 0;
	if (!v->running)
		return;
	if (ioctl(v->fd, VHOST_VSOCK_SET_RUNNING, &off) < 0)
		log_warn("vsock: cannot stop vhost: %s", strerror(errno));
	for (uint16_t q = 0; q < 2 && v->vdev; q++) {
		struct vhost_vring_state st = { .index = q };
		/* keep our view of the ring in step with what the kernel consumed */
		if (ioctl(v->fd, VHOST_GET_VRING_BASE, &st) == 0)
			v->vdev->vqs[q].last_avail = (uint16_t)st.num;
		v->vdev->queue_kick_fd(v->vdev, q, false);
	}
	v->running = false;
}

void virtio_vsock_destroy(struct virtio_vsock *v)
{
	if (!v)
		return;
	if (v->timer_fd >= 0) {
		evloop_del(v->loop, v->timer_fd);
		close(v->timer_fd);
	}
	v->vdev = NULL; /* the transport is gone; vhost just stops */
	vsock_stop(v);
	close(v->fd);
	if (v->log)
		munmap(v->log, v->log_bytes);
	pthread_mutex_destroy(&v->lock);
	free(v);
}

static uint64_t vsock_features(void *priv)
{
	struct virtio_vsock *v = priv;
	uint64_t want = 1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_F_EVENT_IDX |
	                1ULL << VIRTIO_F_INDIRECT_DESC | 1ULL << VSOCK_F_SEQPACKET;
	return v->vhost_features & want;
}

static void vsock_config_read(void *priv, uint32_t off, uint8_t *buf, uint32_t len)
{
	struct virtio_vsock *v = priv;
	uint8_t cfg[8];
	for (int i = 0; i < 8; i++)
		cfg[i] = (uint8_t)(v->cid >> (8 * i));
	memcpy(buf, cfg + off, len); /* the transport keeps off + len within 8 */
}

/* Switch vhost's dirty logging on or off for a running device (v->lock held).
 * On: the log's address, then LOG_ALL, then the used rings' logging; off in
 * the reverse order. */
static int apply_log(struct virtio_vsock *v, bool on)
{
	uint64_t base = (uintptr_t)v->log;
	uint64_t features = v->features | (on ? 1ULL << VHOST_F_LOG_ALL : 0);

	if (on && (ioctl(v->fd, VHOST_SET_LOG_BASE, &base) < 0 ||
	           ioctl(v->fd, VHOST_SET_FEATURES, &features) < 0))
		return -errno;
	for (int q = 0; q < 2; q++) {
		struct vhost_vring_addr a = v->addr[q];
		a.flags = on ? 1u << VHOST_VRING_F_LOG : 0;
		if (ioctl(v->fd, VHOST_SET_VRING_ADDR, &a) < 0)
			return -errno;
	}
	if (!on && ioctl(v->fd, VHOST_SET_FEATURES, &features) < 0)
		return -errno;
	return 0;
}

/* Hand the rx and tx queues to vhost and start it (v->lock held). */
static int vhost_start(struct virtio_vsock *v, struct virtio_dev *vd)
{
	const struct guest_mem *m = v->mem;
	struct {
		struct vhost_memory hdr;
		struct vhost_memory_region r[MEM_MAX_REGIONS];
	} table;
	uint64_t base = (uintptr_t)v->log;
	int one = 1;

	__atomic_store_n(&v->vdev, vd, __ATOMIC_RELEASE);
	v->features = vd->guest_features & v->vhost_features;
	bool logging = v->logging && v->log;
	uint64_t features = v->features | (logging ? 1ULL << VHOST_F_LOG_ALL : 0);
	memset(&table, 0, sizeof(table));
	table.hdr.nregions = (uint32_t)m->nr_regions;
	for (int i = 0; i < m->nr_regions; i++)
		table.r[i] = (struct vhost_memory_region){ .guest_phys_addr = m->regions[i].gpa,
			                                   .memory_size = m->regions[i].len,
			                                   .userspace_addr = (uintptr_t)m->regions[i].hva };
	/* the memory table first: LOG_ALL is refused until vhost can check the log covers it */
	if (ioctl(v->fd, VHOST_SET_MEM_TABLE, &table) < 0 ||
	    (logging && ioctl(v->fd, VHOST_SET_LOG_BASE, &base) < 0) ||
	    ioctl(v->fd, VHOST_SET_FEATURES, &features) < 0)
		goto fail;
	for (uint16_t q = 0; q < 2; q++) {
		struct virtq *vq = &vd->vqs[q];
		int call = vd->queue_call_fd(vd, q);
		if (!vq->ready || call < 0) {
			log_warn("vsock: queue %u is not set up (ready %d, MSI-X vector %s)", q,
			         vq->ready, call < 0 ? "missing" : "ok");
			return -EINVAL;
		}
		v->addr[q] = (struct vhost_vring_addr){ .index = q, .desc_user_addr = (uintptr_t)vq->desc,
			                                .avail_user_addr = (uintptr_t)vq->avail,
			                                .used_user_addr = (uintptr_t)vq->used,
			                                .log_guest_addr = vq->used_gpa };
		struct vhost_vring_addr addr = v->addr[q];
		addr.flags = logging ? 1u << VHOST_VRING_F_LOG : 0;
		struct vhost_vring_state num = { .index = q, .num = vq->size };
		struct vhost_vring_state st = { .index = q, .num = vq->last_avail };
		struct vhost_vring_file kick = { .index = q, .fd = vd->queue_kick_fd(vd, q, true) };
		struct vhost_vring_file callf = { .index = q, .fd = call };
		if (ioctl(v->fd, VHOST_SET_VRING_NUM, &num) < 0 ||
		    ioctl(v->fd, VHOST_SET_VRING_BASE, &st) < 0 ||
		    ioctl(v->fd, VHOST_SET_VRING_ADDR, &addr) < 0 ||
		    ioctl(v->fd, VHOST_SET_VRING_KICK, &kick) < 0 ||
		    ioctl(v->fd, VHOST_SET_VRING_CALL, &callf) < 0)
			goto fail;
	}
	if (ioctl(v->fd, VHOST_VSOCK_SET_RUNNING, &one) < 0)
		goto fail;
	v->running = true;
	/* kicks that came before DRIVER_OK were consumed by the transport: replay one */
	for (uint16_t q = 0; q < 2; q++) {
		uint64_t k = 1;
		if (write(vd->queue_kick_fd(vd, q, true), &k, sizeof(k)) < 0)
			log_debug("vsock: kick replay failed");
	}
	return 0;
fail:;
	int rc = -errno;
	log_warn("vsock: vhost set-up failed: %s", strerror(-rc));
	return rc;
}

/* Put VIRTIO_VSOCK_EVENT_TRANSPORT_RESET into the guest's next event buffer
 * (vd->lock and v->lock held). 1 sent, 0 no buffer yet, -1 cannot be sent. */
static int announce_reset(struct virtio_dev *vd)
{
	struct virtq *q = &vd->vqs[Q_EVENT];
	struct virtio_vsock_event ev = { .id = VIRTIO_VSOCK_EVENT_TRANSPORT_RESET }; /* le32 0 */
	struct virtq_elem *e;
	int rc;

	if (!(vd->status & VIRTIO_STATUS_DRIVER_OK) || (vd->status & VIRTIO_STATUS_NEEDS_RESET) ||
	    !q->ready)
		return -1;
	if (!(e = malloc(sizeof(*e))))
		return 0;
	rc = virtq_pop(q, e);
	if (rc == 1) {
		const uint8_t *src = (const uint8_t *)&ev;
		uint32_t done = 0;
		for (unsigned i = e->out_num; i < e->out_num + e->in_num && done < sizeof(ev); i++) {
			size_t n = e->iov[i].iov_len < sizeof(ev) - done ? e->iov[i].iov_len : sizeof(ev) - done;
			memcpy(e->iov[i].iov_base, src + done, n);
			done += (uint32_t)n;
		}
		virtq_push(q, e->head, done);
		virtio_notify_queue(vd, Q_EVENT);
		if (done < sizeof(ev))
			rc = 0; /* a buffer too small for the event: try the next one */
	}
	free(e);
	return rc < 0 ? -1 : rc;
}

static int vsock_activate(void *priv, struct virtio_dev *vd)
{
	struct virtio_vsock *v = priv;
	pthread_mutex_lock(&v->lock);
	int rc = vhost_start(v, vd);
	if (!rc && v->announce) {
		/* restored or migrated: before the guest runs again if it has an event
		 * buffer (else from the timer), so that no program reads data of its
		 * old connections (vhost does not log the rx data it writes) */
		int sent = announce_reset(vd);
		if (sent == 1)
			log_info("vsock: transport reset sent to the guest");
		if (sent != 0)
			v->announce = false;
	}
	pthread_mutex_unlock(&v->lock);
	return rc;
}

static void vsock_reset(void *priv)
{
	struct virtio_vsock *v = priv;
	pthread_mutex_lock(&v->lock);
	vsock_stop(v);
	v->quiesced = false;
	pthread_mutex_unlock(&v->lock);
}

/* Event loop: claim a CID the migration source still held; tell a restored or
 * migrated guest that its connections are gone if activation could not. */
static void vsock_tick(void *opaque, uint32_t events)
{
	struct virtio_vsock *v = opaque;
	struct virtio_dev *vd = __atomic_load_n(&v->vdev, __ATOMIC_ACQUIRE);
	uint64_t n, now = ratelimit_now_ns();
	(void)events;

	if (read(v->timer_fd, &n, sizeof(n)) < 0 && errno == EAGAIN)
		return;
	if (vd)
		pthread_mutex_lock(&vd->lock);
	pthread_mutex_lock(&v->lock);
	if (!v->deadline_ns) {
		v->deadline_ns = now + CLAIM_WINDOW_NS;
		v->claim_after_ns = now + CLAIM_DELAY_NS;
	}
	bool late = now >= v->deadline_ns;
	if (v->cid_pending && now >= v->claim_after_ns) {
		if (ioctl(v->fd, VHOST_VSOCK_SET_GUEST_CID, &v->cid) == 0) {
			v->cid_pending = false;
			log_info("vsock: cid %llu claimed", (unsigned long long)v->cid);
		} else if (late || errno != EADDRINUSE) {
			v->cid_pending = false;
			log_warn("vsock: cid %llu: %s; the guest's vsock stays cut off from the host",
			         (unsigned long long)v->cid,
			         errno == EADDRINUSE ? "still in use by another VM" : strerror(errno));
		}
	}
	if (v->announce) {
		/* a device the restore did not start has no connections to reset */
		int rc = vd ? announce_reset(vd) : -1;
		if (rc == 1)
			log_info("vsock: transport reset sent to the guest");
		if (rc != 0 || late)
			v->announce = false;
	}
	bool done = !v->cid_pending && !v->announce;
	pthread_mutex_unlock(&v->lock);
	if (vd)
		pthread_mutex_unlock(&vd->lock);
	if (done) {
		struct itimerspec off = { 0 };
		timerfd_settime(v->timer_fd, 0, &off, NULL);
	}
}

static void vsock_save(void *priv, struct sbuf *out)
{
	struct virtio_vsock *v = priv;
	sbuf_put_u64(out, v->cid);
}

static int vsock_load(void *priv, struct sbuf *in)
{
	struct virtio_vsock *v = priv;
	uint64_t cid = sbuf_get_u64(in);
	/* the CID comes from the command line; a snapshot of another CID is refused */
	if (in->err || cid != v->cid)
		return -EINVAL;
	/* the guest's connections stayed behind: tell it as the device restarts (the
	 * transport activates it next) or, without an event buffer then, from the timer */
	pthread_mutex_lock(&v->lock);
	v->announce = true;
	int rc = arm_timer(v);
	pthread_mutex_unlock(&v->lock);
	if (rc < 0)
		log_warn("vsock: cannot schedule the transport reset: %s", strerror(-rc));
	return 0;
}

/* ------------------------------------------------------------------ migration */

uint64_t virtio_vsock_log_take(uint64_t *log, uint64_t log_pages, uint64_t gpa, uint64_t len,
                               uint64_t *bitmap)
{
	uint64_t first = gpa / LOG_PAGE, end, moved = 0;

	if (first >= log_pages)
		return 0;
	end = len / LOG_PAGE < log_pages - first ? first + len / LOG_PAGE : log_pages;
	for (uint64_t w = first / 64; w * 64 < end; w++) {
		if (!__atomic_load_n(&log[w], __ATOMIC_RELAXED))
			continue;
		/* the bits [lo, hi) of this word are pages of the range */
		uint64_t lo = w * 64 < first ? first - w * 64 : 0;
		uint64_t hi = end - w * 64 >= 64 ? 64 : end - w * 64;
		uint64_t mask = (hi - lo == 64 ? ~0ULL : (1ULL << (hi - lo)) - 1) << lo;
		uint64_t bits = __atomic_fetch_and(&log[w], ~mask, __ATOMIC_ACQ_REL) & mask;
		if (!bits)
			continue;
		moved += (uint64_t)__builtin_popcountll(bits);
		bits >>= lo;
		uint64_t at = w * 64 + lo - first, sh = at % 64; /* bitmap position of bit lo */
		bitmap[at / 64] |= bits << sh;
		if (sh && bits >> (64 - sh))
			bitmap[at / 64 + 1] |= bits >> (64 - sh);
	}
	return moved;
}

static int alloc_log(struct virtio_vsock *v)
{
	uint64_t end = 0;
	for (int i = 0; i < v->mem->nr_regions; i++) {
		const struct mem_region *r = &v->mem->regions[i];
		if (r->gpa + r->len > end)
			end = r->gpa + r->len;
	}
	uint64_t pages = (end + LOG_PAGE - 1) / LOG_PAGE;
	size_t bytes = (size_t)((pages + 63) / 64 * 8);
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	v->log = p;
	v->log_pages = pages;
	v->log_bytes = bytes;
	return 0;
}

int virtio_vsock_log_start(struct virtio_vsock *v)
{
	int rc = 0;
	if (!v)
		return 0;
	pthread_mutex_lock(&v->lock);
	if (!(v->vhost_features & 1ULL << VHOST_F_LOG_ALL)) {
		log_warn("vsock: this kernel's vhost-vsock cannot log its writes");
		rc = -ENOTSUP;
		goto out;
	}
	if (!v->log && (rc = alloc_log(v)) < 0)
		goto out;
	if (!v->logging) {
		memset(v->log, 0, v->log_bytes); /* vhost does not log now: nothing races this */
		v->logged = 0;
	}
	v->logging = true;
	if (v->running && (rc = apply_log(v, true)) < 0)
		log_warn("vsock: vhost refuses dirty logging: %s", strerror(-rc));
out:
	pthread_mutex_unlock(&v->lock);
	return rc;
}

void virtio_vsock_log_stop(struct virtio_vsock *v)
{
	int rc;
	if (!v)
		return;
	pthread_mutex_lock(&v->lock);
	if (v->logging) {
		v->logging = false;
		log_debug("vsock: vhost's dirty log named %llu pages", (unsigned long long)v->logged);
		if (v->running && (rc = apply_log(v, false)) < 0)
			log_warn("vsock: cannot turn vhost's dirty logging off: %s", strerror(-rc));
	}
	pthread_mutex_unlock(&v->lock);
}

void virtio_vsock_log_collect(struct virtio_vsock *v, uint64_t gpa, uint64_t len, uint64_t *bitmap)
{
	if (!v)
		return;
	pthread_mutex_lock(&v->lock);
	if (v->log)
		v->logged += virtio_vsock_log_take(v->log, v->log_pages, gpa, len, bitmap);
	pthread_mutex_unlock(&v->lock);
}

/* Mark what a stopped vhost may have written and not logged: the used rings,
 * and the rx buffers of the last queue-size requests it took. The rx queue is
 * replayed on a copy, through virtq_pop (which marks every writable buffer). */
static void mark_vhost_writes(struct virtio_dev *vd)
{
	struct virtq q = vd->vqs[Q_RX];
	struct virtq_elem *e;

	for (int i = Q_RX; i <= Q_TX; i++) {
		if (vd->vqs[i].ready)
			mem_mark_dirty(vd->mem, vd->vqs[i].used_gpa, 6 + 8ULL * vd->vqs[i].size);
	}
	if (!q.ready || !(e = malloc(sizeof(*e))))
		return;
	q.event_idx = false; /* the copy must not write avail_event */
	q.broken = false;
	uint16_t end = q.last_avail, waiting = virtq_pending(&q);
	uint16_t n = (uint16_t)(q.size - (waiting <= q.size ? waiting : 0)), marked = 0;
	for (uint16_t k = 0; k < n; k++) {
		q.broken = false;
		q.last_avail = (uint16_t)(end - n + k);
		marked += virtq_pop(&q, e) == 1;
	}
	free(e);
	log_debug("vsock: vhost stopped at rx %u tx %u; the last %u rx requests' buffers marked",
	          end, vd->vqs[Q_TX].last_avail, marked);
}

void virtio_vsock_quiesce(struct virtio_vsock *v)
{
	struct virtio_dev *vd = v ? __atomic_load_n(&v->vdev, __ATOMIC_ACQUIRE) : NULL;
	if (!vd)
		return;
	pthread_mutex_lock(&vd->lock);
	pthread_mutex_lock(&v->lock);
	if (v->running) {
		vsock_stop(v);
		v->quiesced = true;
		mark_vhost_writes(vd);
	}
	pthread_mutex_unlock(&v->lock);
	pthread_mutex_unlock(&vd->lock);
}

void virtio_vsock_unquiesce(struct virtio_vsock *v)
{
	struct virtio_dev *vd = v ? __atomic_load_n(&v->vdev, __ATOMIC_ACQUIRE) : NULL;
	if (!vd)
		return;
	pthread_mutex_lock(&vd->lock);
	pthread_mutex_lock(&v->lock);
	if (v->quiesced) {
		v->quiesced = false;
		if ((vd->status & VIRTIO_STATUS_DRIVER_OK) && !(vd->status & VIRTIO_STATUS_NEEDS_RESET) &&
		    vhost_start(v, vd) < 0)
			virtio_set_needs_reset(vd, "vhost could not restart");
	}
	pthread_mutex_unlock(&v->lock);
	pthread_mutex_unlock(&vd->lock);
}

const struct virtio_dev_ops virtio_vsock_ops = {
	.name = "virtio-vsock",
	.device_id = VIRTIO_ID_VSOCK,
	.num_queues = 3,
	.queue_max = 256,
	.config_size = 8,
	.features = vsock_features,
	.config_read = vsock_config_read,
	.activate = vsock_activate,
	.reset = vsock_reset,
	.save = vsock_save,
	.load = vsock_load,
};
