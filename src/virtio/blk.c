/* virtio-blk: requests from the one queue go to the block layer and complete
 * from the event loop, in any order (see blk.h).
 *
 * Life of a request: virtq_pop() -> vblk_parse() copies the header and the
 * discard/write-zeroes ranges out of guest memory, checks them and slices
 * the data buffers out of the chain -> vblk_start() hands it to the block
 * layer -> vblk_io_done() (from aio_poll, device lock held) writes the status
 * byte and pushes the head; one interrupt per batch.
 *
 * Locking: the transport holds vdev->lock around every op; vblk_io_event(),
 * the one callback this device puts on the event loop, takes it itself. */
#include "virtio/blk.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "block/aio.h"
#include "block/block.h"
#include "block/overlay.h"
#include "block/qcow2.h"
#include "util/log.h"
#include "util/ratelimit.h"
#include "util/size.h"

#define VBLK_HDR_SIZE 16
#define VBLK_DWZ_SIZE 16
#define VBLK_MAX_DWZ 16   /* the larger of the discard and write zeroes segment limits */
#define VBLK_BUDGET 256   /* requests taken per pass before letting the event loop run */
#define VBLK_PENDING (-1) /* request handed to the block layer: status comes later */
#define VBLK_STATE_MAGIC 0x6b6c4276u /* "vBlk" */
#define VBLK_STATE_VERSION 1u

_Static_assert(sizeof(struct virtio_blk_config) == 72, "virtio_blk_config layout");
_Static_assert(offsetof(struct virtio_blk_config, blk_size) == 20, "blk_size offset");
_Static_assert(offsetof(struct virtio_blk_config, num_queues) == 34, "num_queues offset");
_Static_assert(offsetof(struct virtio_blk_config, max_discard_sectors) == 36, "discard offset");
_Static_assert(offsetof(struct virtio_blk_config, write_zeroes_may_unmap) == 56, "wz offset");
_Static_assert(sizeof(struct virtio_blk_outhdr) == VBLK_HDR_SIZE, "request header");
_Static_assert(sizeof(struct virtio_blk_dwz) == VBLK_DWZ_SIZE, "discard segment");
_Static_assert(VIRTIO_BLK_MAX_DISCARD_SEG <= VBLK_MAX_DWZ && VIRTIO_BLK_MAX_WZ_SEG <= VBLK_MAX_DWZ,
               "segment array");

struct virtio_blk;

struct vblk_req {
	struct blk_req br;
	struct virtio_blk *vb;
	uint16_t idx; /* in vb->reqs */
	bool busy;
	uint16_t head;
	uint32_t type;
	uint64_t sector;
	uint8_t *status;  /* the last device-writable byte */
	uint32_t written; /* data bytes written for the driver (used length - 1) */
	bool flushing;    /* write-through: the flush after the write is running */
	uint32_t nseg, seg;
	struct virtio_blk_dwz segs[VBLK_MAX_DWZ]; /* host byte order, checked */
	uint64_t data_len;
	int iovcnt;
	struct iovec iov[VIRTIO_BLK_SEG_MAX]; /* the data part of the chain */
};

struct virtio_blk {
	char *path; /* of the image the device runs on (an overlay's, once switched) */
	struct blk_disk *disk;
	struct blk_disk *next;  /* overlay_prepare: the overlay, until commit or abort */
	char *next_path;
	struct aio *aio;
	struct evloop *loop;
	bool registered;
	struct virtio_dev *vdev; /* from activate on; read atomically by vblk_io_event */
	bool readonly;
	char serial[VIRTIO_BLK_ID_BYTES];
	uint64_t iops, bps;
	uint64_t capacity; /* sectors */
	uint64_t features;
	struct virtio_blk_config cfg;
	bool active;       /* between activate and reset */
	bool stopped;      /* NEEDS_RESET: take no more requests */
	bool resetting;    /* completions only give their slot back */
	bool writethrough; /* FLUSH not negotiated: flush after every write */
	bool more;         /* queue work left over for the next event */
	bool pushed;       /* used entries since the last notification */
	bool logged_error;
	unsigned nr_reqs, nr_free, nr_busy;
	struct vblk_req *reqs[VIRTIO_BLK_QUEUE_SIZE];
	uint16_t free_idx[VIRTIO_BLK_QUEUE_SIZE];
	uint8_t *restore; /* loaded in-flight requests, resubmitted by activate */
	size_t restore_len;
	uint32_t restore_count;
	/* rate limits (0 = none) and what they and the guest did */
	struct ratelimit rl_ops, rl_bytes;
	int timer_fd;
	bool throttled; /* waiting for the timer before taking more requests */
	struct virtio_blk_stats st;
	struct virtq_elem elem;
};

/* ---- request slots ---- */

static void vblk_io_done(struct blk_req *br, int64_t res);

static struct vblk_req *vblk_req_get(struct virtio_blk *vb)
{
	struct vblk_req *req;

	if (vb->nr_free) {
		req = vb->reqs[vb->free_idx[--vb->nr_free]];
	} else {
		if (vb->nr_reqs == VIRTIO_BLK_QUEUE_SIZE)
			return NULL;
		req = calloc(1, sizeof(*req));
		if (!req)
			return NULL;
		req->vb = vb;
		req->idx = (uint16_t)vb->nr_reqs;
		req->br.done = vblk_io_done;
		req->br.opaque = req;
		vb->reqs[vb->nr_reqs++] = req;
	}
	req->busy = true;
	vb->nr_busy++;
	req->flushing = false;
	req->written = 0;
	req->nseg = req->seg = 0;
	req->iovcnt = 0;
	req->data_len = 0;
	req->status = NULL;
	return req;
}

static void vblk_req_put(struct vblk_req *req)
{
	struct virtio_blk *vb = req->vb;

	req->busy = false;
	vb->nr_busy--;
	vb->free_idx[vb->nr_free++] = req->idx;
}

/* ---- completion ---- */

static void vblk_notify(struct virtio_blk *vb)
{
	if (vb->pushed) {
		vb->pushed = false;
		virtio_notify_queue(vb->vdev, 0);
	}
}

static void vblk_complete(struct vblk_req *req, uint8_t status)
{
	struct virtio_blk *vb = req->vb;
	struct virtq *q = &vb->vdev->vqs[0];

	/* after a reset, or on a ring the guest broke, nothing more is written */
	if (!vb->resetting && !q->broken) {
		*req->status = status;
		virtq_push(q, req->head, req->written + 1);
		vb->pushed = true;
	}
	vblk_req_put(req);
}

static void vblk_stop(struct virtio_blk *vb, const char *why)
{
	vb->stopped = true;
	virtio_set_needs_reset(vb->vdev, why);
}

static void vblk_log_error(struct virtio_blk *vb, struct vblk_req *req, int64_t err)
{
	/* once per device: a guest could otherwise flood the log */
	if (vb->logged_error)
		return;
	vb->logged_error = true;
	log_warn("disk %s: request type %u at sector %llu failed: %s (further errors not logged)",
	         vb->path, req->type, (unsigned long long)req->sector, strerror((int)-err));
}

/* ---- guest buffers ---- */

/* Copy len bytes starting skip bytes into iov[0..n) out to dst; returns the bytes copied. */
static size_t vblk_iov_read(const struct iovec *iov, int n, uint64_t skip, void *dst, size_t len)
{
	size_t done = 0;

	for (int i = 0; i < n && done < len; i++) {
		size_t take;

		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		take = iov[i].iov_len - skip;
		if (take > len - done)
			take = len - done;
		memcpy((uint8_t *)dst + done, (const uint8_t *)iov[i].iov_base + skip, take);
		done += take;
		skip = 0;
	}
	return done;
}

static size_t vblk_iov_write(const struct iovec *iov, int n, const void *src, size_t len)
{
	size_t done = 0;

	for (int i = 0; i < n && done < len; i++) {
		size_t take = iov[i].iov_len < len - done ? iov[i].iov_len : len - done;

		memcpy(iov[i].iov_base, (const uint8_t *)src + done, take);
		done += take;
	}
	return done;
}

/* Describe bytes [skip, skip + len) of iov[0..n) in dst (no empty entries).
 * Returns the entry count, or -1 when more than max entries are needed. */
static int vblk_iov_slice(const struct iovec *iov, int n, uint64_t skip, uint64_t len,
                          struct iovec *dst, int max)
{
	int cnt = 0;

	for (int i = 0; i < n && len; i++) {
		uint64_t take;

		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		take = iov[i].iov_len - skip;
		if (take > len)
			take = len;
		if (cnt == max)
			return -1;
		dst[cnt].iov_base = (uint8_t *)iov[i].iov_base + skip;
		dst[cnt].iov_len = take;
		cnt++;
		len -= take;
		skip = 0;
	}
	return cnt;
}

static uint64_t vblk_iov_len(const struct iovec *iov, int n)
{
	uint64_t sum = 0;

	for (int i = 0; i < n; i++)
		sum += iov[i].iov_len;
	return sum;
}

/* The status byte: the last byte of the last non-empty writable buffer. */
static uint8_t *vblk_status_byte(const struct virtq_elem *e)
{
	for (int i = e->out_num + e->in_num - 1; i >= e->out_num; i--) {
		if (e->iov[i].iov_len)
			return (uint8_t *)e->iov[i].iov_base + e->iov[i].iov_len - 1;
	}
	return NULL;
}

/* Whether sectors [sector, sector + count) lie on the disk (no overflow possible). */
static bool vblk_range_ok(const struct virtio_blk *vb, uint64_t sector, uint64_t count)
{
	return sector <= vb->capacity && count <= vb->capacity - sector;
}

/* ---- starting requests ---- */

static int vblk_dwz_submit(struct vblk_req *req)
{
	struct virtio_blk *vb = req->vb;
	const struct virtio_blk_dwz *s = &req->segs[req->seg];
	uint64_t off = s->sector * BLK_SECTOR_SIZE;
	uint64_t len = (uint64_t)s->num_sectors * BLK_SECTOR_SIZE;

	if (req->type == VIRTIO_BLK_T_DISCARD)
		return blk_discard(vb->disk, &req->br, off, len);
	return blk_write_zeroes(vb->disk, &req->br, off, len, s->flags & VIRTIO_BLK_WZ_F_UNMAP);
}

/* Hand a checked request to the block layer: VBLK_PENDING, or a status now. */
static int vblk_start(struct virtio_blk *vb, struct vblk_req *req)
{
	uint64_t off = req->sector * BLK_SECTOR_SIZE;
	int rc;

	switch (req->type) {
	case VIRTIO_BLK_T_IN:
		if (!req->data_len)
			return VIRTIO_BLK_S_OK;
		req->written = (uint32_t)req->data_len;
		rc = blk_readv(vb->disk, &req->br, req->iov, req->iovcnt, off);
		break;
	case VIRTIO_BLK_T_OUT:
		if (!req->data_len)
			return VIRTIO_BLK_S_OK;
		rc = blk_writev(vb->disk, &req->br, req->iov, req->iovcnt, off);
		break;
	case VIRTIO_BLK_T_FLUSH:
		if (vb->readonly)
			return VIRTIO_BLK_S_OK; /* nothing was ever written */
		rc = blk_flush(vb->disk, &req->br);
		break;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		req->seg = 0;
		rc = vblk_dwz_submit(req);
		break;
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
	if (rc < 0) {
		vblk_log_error(vb, req, rc);
		req->written = 0;
		return VIRTIO_BLK_S_IOERR;
	}
	return VBLK_PENDING;
}

static void vblk_io_done(struct blk_req *br, int64_t res)
{
	struct vblk_req *req = br->opaque;
	struct virtio_blk *vb = req->vb;
	int rc = 0;

	if (vb->resetting) {
		vblk_req_put(req);
		return;
	}
	if (res < 0) {
		vblk_log_error(vb, req, res);
		vblk_complete(req, VIRTIO_BLK_S_IOERR);
		return;
	}
	if ((req->type == VIRTIO_BLK_T_DISCARD || req->type == VIRTIO_BLK_T_WRITE_ZEROES) &&
	    !req->flushing && ++req->seg < req->nseg) {
		rc = vblk_dwz_submit(req);
	} else if (vb->writethrough && !req->flushing && req->type != VIRTIO_BLK_T_IN &&
	           req->type != VIRTIO_BLK_T_FLUSH) {
		/* FLUSH offered but not negotiated: a write completes once stable (5.2.6.2) */
		req->flushing = true;
		rc = blk_flush(vb->disk, &req->br);
	} else {
		vblk_complete(req, VIRTIO_BLK_S_OK);
		return;
	}
	if (rc < 0) {
		vblk_log_error(vb, req, rc);
		vblk_complete(req, VIRTIO_BLK_S_IOERR);
	}
}

/* ---- checking what the guest asked for ---- */

/* Read/write: the data is the rest of one side of the chain, nothing on the other. */
static int vblk_parse_rw(struct virtio_blk *vb, struct vblk_req *req, const struct virtq_elem *e,
                         uint64_t data_out, uint64_t data_in)
{
	bool write = req->type == VIRTIO_BLK_T_OUT;
	uint64_t len = write ? data_out : data_in;
	int n;

	if ((write ? data_in : data_out) != 0)
		return VIRTIO_BLK_S_IOERR;
	if (write && vb->readonly)
		return VIRTIO_BLK_S_IOERR;
	if (len % BLK_SECTOR_SIZE || !vblk_range_ok(vb, req->sector, len / BLK_SECTOR_SIZE))
		return VIRTIO_BLK_S_IOERR;
	if (write)
		n = vblk_iov_slice(e->iov, e->out_num, VBLK_HDR_SIZE, len, req->iov,
		                   VIRTIO_BLK_SEG_MAX);
	else
		n = vblk_iov_slice(e->iov + e->out_num, e->in_num, 0, len, req->iov,
		                   VIRTIO_BLK_SEG_MAX);
	if (n < 0)
		return VIRTIO_BLK_S_IOERR; /* more segments than seg_max */
	req->iovcnt = n;
	req->data_len = len;
	return VBLK_PENDING;
}

/* Check the copied discard / write zeroes ranges. */
static int vblk_check_dwz(const struct virtio_blk *vb, const struct vblk_req *req)
{
	bool discard = req->type == VIRTIO_BLK_T_DISCARD;
	uint32_t max = discard ? VIRTIO_BLK_MAX_DISCARD_SECTORS : VIRTIO_BLK_MAX_WZ_SECTORS;
	uint32_t maxseg = discard ? VIRTIO_BLK_MAX_DISCARD_SEG : VIRTIO_BLK_MAX_WZ_SEG;

	if (vb->readonly)
		return VIRTIO_BLK_S_IOERR;
	if (req->nseg == 0 || req->nseg > maxseg)
		return VIRTIO_BLK_S_IOERR;
	/* flags first: unknown ones (and unmap on discard) are UNSUPP by the spec */
	for (uint32_t i = 0; i < req->nseg; i++) {
		uint32_t flags = req->segs[i].flags;

		if (flags & ~VIRTIO_BLK_WZ_F_UNMAP || (discard && flags))
			return VIRTIO_BLK_S_UNSUPP;
	}
	for (uint32_t i = 0; i < req->nseg; i++) {
		const struct virtio_blk_dwz *s = &req->segs[i];

		if (s->num_sectors > max || !vblk_range_ok(vb, s->sector, s->num_sectors))
			return VIRTIO_BLK_S_IOERR;
	}
	return VBLK_PENDING;
}

static int vblk_parse_dwz(struct virtio_blk *vb, struct vblk_req *req, const struct virtq_elem *e,
                          uint64_t data_out, uint64_t data_in)
{
	unsigned feature = req->type == VIRTIO_BLK_T_DISCARD ? VIRTIO_BLK_F_DISCARD
	                                                      : VIRTIO_BLK_F_WRITE_ZEROES;
	struct virtio_blk_dwz raw[VBLK_MAX_DWZ];

	if (!virtio_has_feature(vb->vdev, feature))
		return VIRTIO_BLK_S_UNSUPP;
	if (data_in || data_out % VBLK_DWZ_SIZE || data_out / VBLK_DWZ_SIZE > VBLK_MAX_DWZ)
		return VIRTIO_BLK_S_IOERR;
	req->nseg = (uint32_t)(data_out / VBLK_DWZ_SIZE);
	/* copy once, then only look at the copy: the guest may change its memory */
	vblk_iov_read(e->iov, e->out_num, VBLK_HDR_SIZE, raw, (size_t)data_out);
	for (uint32_t i = 0; i < req->nseg; i++) {
		req->segs[i].sector = le64toh(raw[i].sector);
		req->segs[i].num_sectors = le32toh(raw[i].num_sectors);
		req->segs[i].flags = le32toh(raw[i].flags);
	}
	return vblk_check_dwz(vb, req);
}

static int vblk_get_id(struct virtio_blk *vb, struct vblk_req *req, const struct virtq_elem *e,
                       uint64_t data_out, uint64_t data_in)
{
	size_t n = data_in < VIRTIO_BLK_ID_BYTES ? (size_t)data_in : VIRTIO_BLK_ID_BYTES;

	if (data_out || !data_in)
		return VIRTIO_BLK_S_IOERR;
	req->written = (uint32_t)vblk_iov_write(e->iov + e->out_num, e->in_num, vb->serial, n);
	return VIRTIO_BLK_S_OK;
}

/* A fresh request from the ring: check it and start it, or complete it with an error. */
static void vblk_handle(struct virtio_blk *vb, struct vblk_req *req, const struct virtq_elem *e)
{
	struct virtio_blk_outhdr hdr;
	uint64_t out_len = vblk_iov_len(e->iov, e->out_num);
	uint64_t in_len = vblk_iov_len(e->iov + e->out_num, e->in_num);
	uint64_t data_out, data_in;
	int st;

	req->head = e->head;
	req->status = vblk_status_byte(e);
	if (!req->status) {
		/* nowhere to report anything: the driver broke the protocol */
		vblk_req_put(req);
		vblk_stop(vb, "request without a writable status byte");
		return;
	}
	req->type = UINT32_MAX;
	req->sector = 0;
	if (out_len < VBLK_HDR_SIZE) {
		vblk_complete(req, VIRTIO_BLK_S_IOERR);
		return;
	}
	vblk_iov_read(e->iov, e->out_num, 0, &hdr, sizeof(hdr));
	req->type = le32toh(hdr.type);
	req->sector = le64toh(hdr.sector);
	data_out = out_len - VBLK_HDR_SIZE;
	data_in = in_len - 1;

	switch (req->type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		st = vblk_parse_rw(vb, req, e, data_out, data_in);
		break;
	case VIRTIO_BLK_T_FLUSH:
		st = data_out || data_in ? VIRTIO_BLK_S_IOERR : VBLK_PENDING;
		break;
	case VIRTIO_BLK_T_GET_ID:
		st = vblk_get_id(vb, req, e, data_out, data_in);
		break;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		st = vblk_parse_dwz(vb, req, e, data_out, data_in);
		break;
	default:
		st = VIRTIO_BLK_S_UNSUPP;
		break;
	}
	if (st == VBLK_PENDING)
		st = vblk_start(vb, req);
	if (st != VBLK_PENDING)
		vblk_complete(req, (uint8_t)st);
}

/* Take what the driver made available, up to a budget. */
/* Token buckets: true (and the timer armed) when e must wait. A request
 * larger than the byte burst is charged the whole burst. */
static bool vblk_throttle(struct virtio_blk *vb, const struct virtq_elem *e)
{
	uint64_t bytes = (uint64_t)e->out_len + e->in_len, w = 0, wb = 0;

	/* both buckets must admit it; the ops bucket is asked first and, when the
	 * byte bucket refuses, refunded (its debt is all this request's) */
	if (ratelimit_charge(&vb->rl_ops, 1, &w) && !ratelimit_charge(&vb->rl_bytes, bytes, &wb)) {
		if (vb->rl_ops.rate) {
			if (vb->rl_ops.debt)
				vb->rl_ops.debt--;
			else if (vb->rl_ops.tokens < vb->rl_ops.burst)
				vb->rl_ops.tokens++;
		}
		w = wb;
	}
	if (w) {
		struct itimerspec t = { .it_value = { .tv_sec = (time_t)(w / 1000000000ULL),
			                              .tv_nsec = (long)(w % 1000000000ULL) } };
		vb->throttled = true;
		vb->st.throttled++;
		timerfd_settime(vb->timer_fd, 0, &t, NULL);
		return true;
	}
	return false;
}

static void vblk_process(struct virtio_blk *vb);

static void vblk_timer_event(void *opaque, uint32_t events)
{
	struct virtio_blk *vb = opaque;
	struct virtio_dev *vdev = __atomic_load_n(&vb->vdev, __ATOMIC_ACQUIRE);
	uint64_t v;

	(void)events;
	if (read(vb->timer_fd, &v, sizeof(v)) < 0 || !vdev)
		return;
	pthread_mutex_lock(&vdev->lock);
	vb->throttled = false;
	vblk_process(vb);
	pthread_mutex_unlock(&vdev->lock);
}

static void vblk_process(struct virtio_blk *vb)
{
	struct virtq *q;
	unsigned budget = VBLK_BUDGET;

	if (!vb->active || vb->stopped || vb->throttled)
		return;
	q = &vb->vdev->vqs[0];
	if (!q->ready)
		return;
	aio_plug(vb->aio);
	for (;;) {
		virtq_set_notify(q, false);
		while (!vb->stopped) {
			struct vblk_req *req;
			int rc;

			if (budget == 0) {
				/* let the event loop breathe; carry on from vblk_io_event */
				vb->more = true;
				aio_wake(vb->aio);
				goto out;
			}
			budget--;
			req = vblk_req_get(vb);
			if (!req) {
				/* every slot busy: a completion brings us back */
				vb->more = true;
				goto out;
			}
			rc = virtq_pop(q, &vb->elem);
			if (rc <= 0) {
				vblk_req_put(req);
				if (rc < 0)
					vblk_stop(vb, q->broken_why ? q->broken_why
					                            : "broken virtqueue");
				break;
			}
			if (vblk_throttle(vb, &vb->elem)) {
				/* over the limit: the request waits in the ring for the timer */
				virtq_unpop(q);
				vblk_req_put(req);
				goto out;
			}
			vb->st.ops++;
			vb->st.bytes += (uint64_t)vb->elem.out_len + vb->elem.in_len;
			vblk_handle(vb, req, &vb->elem);
		}
		if (vb->stopped)
			goto out;
		/* re-check after enabling notifications: closes the race with the driver */
		virtq_set_notify(q, true);
		if (!virtq_pending(q))
			break;
	}
out:
	aio_unplug(vb->aio);
	vblk_notify(vb);
}

/* The event loop callback: I/O completions and work carried over. */
static void vblk_io_event(void *opaque, uint32_t events)
{
	struct virtio_blk *vb = opaque;
	struct virtio_dev *vdev = __atomic_load_n(&vb->vdev, __ATOMIC_ACQUIRE);

	(void)events;
	if (!vdev) {
		/* never activated: nothing can be in flight */
		aio_poll(vb->aio);
		return;
	}
	pthread_mutex_lock(&vdev->lock);
	aio_poll(vb->aio);
	if (vb->more) {
		vb->more = false;
		vblk_process(vb);
	}
	vblk_notify(vb);
	pthread_mutex_unlock(&vdev->lock);
}

/* ---- saved in-flight requests ---- */

/* The guest-physical address of host pointer p (which came from mem_ptr). */
static int vblk_gpa_of(const struct guest_mem *m, const void *p, uint64_t len, uint64_t *gpa)
{
	uintptr_t a = (uintptr_t)p;

	for (int i = 0; i < m->nr_regions; i++) {
		const struct mem_region *r = &m->regions[i];
		uintptr_t b = (uintptr_t)r->hva;

		if (a >= b && a - b <= r->len && len <= r->len - (a - b)) {
			*gpa = r->gpa + (a - b);
			return 0;
		}
	}
	return -EFAULT;
}

static void vblk_save_req(struct virtio_blk *vb, const struct vblk_req *req, struct sbuf *out)
{
	const struct guest_mem *m = vb->vdev->mem;
	uint64_t gpa = 0;

	sbuf_put_u32(out, req->head);
	sbuf_put_u32(out, req->type);
	sbuf_put_u64(out, req->sector);
	if (vblk_gpa_of(m, req->status, 1, &gpa) < 0)
		gpa = UINT64_MAX; /* cannot happen; fails at resubmission */
	sbuf_put_u64(out, gpa);
	sbuf_put_u32(out, (uint32_t)req->iovcnt);
	for (int i = 0; i < req->iovcnt; i++) {
		if (vblk_gpa_of(m, req->iov[i].iov_base, req->iov[i].iov_len, &gpa) < 0)
			gpa = UINT64_MAX;
		sbuf_put_u64(out, gpa);
		sbuf_put_u32(out, (uint32_t)req->iov[i].iov_len);
	}
	sbuf_put_u32(out, req->nseg);
	for (uint32_t i = 0; i < req->nseg; i++) {
		sbuf_put_u64(out, req->segs[i].sector);
		sbuf_put_u32(out, req->segs[i].num_sectors);
		sbuf_put_u32(out, req->segs[i].flags);
	}
}

/* Read one saved request into req and check it as if the guest had just sent
 * it. With mem, also map its buffers (activate); without, only check (load).
 * Returns -EINVAL for a malformed entry, else VBLK_PENDING or the status to
 * complete it with (or -EFAULT when its status byte is not in guest RAM). */
static int vblk_load_req(struct virtio_blk *vb, struct sbuf *in, struct vblk_req *req,
                         const struct guest_mem *mem)
{
	uint64_t status_gpa, total = 0;
	uint32_t niov;
	bool fault = false;
	int st = VBLK_PENDING;

	req->head = (uint16_t)sbuf_get_u32(in);
	req->type = sbuf_get_u32(in);
	req->sector = sbuf_get_u64(in);
	status_gpa = sbuf_get_u64(in);
	niov = sbuf_get_u32(in);
	if (in->err || niov > VIRTIO_BLK_SEG_MAX)
		return -EINVAL;
	for (uint32_t i = 0; i < niov; i++) {
		uint64_t gpa = sbuf_get_u64(in);
		uint32_t len = sbuf_get_u32(in);

		if (in->err || len == 0)
			return -EINVAL;
		total += len;
		req->iov[i].iov_len = len;
		req->iov[i].iov_base = mem ? mem_ptr(mem, gpa, len) : NULL;
		if (mem && !req->iov[i].iov_base)
			fault = true;
	}
	req->iovcnt = (int)niov;
	req->data_len = total;
	req->nseg = sbuf_get_u32(in);
	if (in->err || req->nseg > VBLK_MAX_DWZ)
		return -EINVAL;
	for (uint32_t i = 0; i < req->nseg; i++) {
		req->segs[i].sector = sbuf_get_u64(in);
		req->segs[i].num_sectors = sbuf_get_u32(in);
		req->segs[i].flags = sbuf_get_u32(in);
	}
	if (in->err)
		return -EINVAL;
	switch (req->type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		if (req->nseg || total % BLK_SECTOR_SIZE ||
		    !vblk_range_ok(vb, req->sector, total / BLK_SECTOR_SIZE) ||
		    (req->type == VIRTIO_BLK_T_OUT && vb->readonly))
			return -EINVAL;
		break;
	case VIRTIO_BLK_T_FLUSH:
		if (req->nseg || niov)
			return -EINVAL;
		break;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		if (niov || vblk_check_dwz(vb, req) != VBLK_PENDING)
			return -EINVAL;
		break;
	default:
		return -EINVAL;
	}
	if (mem) {
		req->status = mem_ptr(mem, status_gpa, 1);
		if (!req->status)
			return -EFAULT;
		if (fault)
			st = VIRTIO_BLK_S_IOERR;
	}
	return st;
}

/* activate after load: start the saved requests again. */
static void vblk_resubmit(struct virtio_blk *vb)
{
	struct sbuf in;

	sbuf_reader(&in, vb->restore, vb->restore_len);
	for (uint32_t i = 0; i < vb->restore_count && !vb->stopped; i++) {
		struct vblk_req *req = vblk_req_get(vb);
		int st;

		if (!req)
			break; /* load allowed no more than there are slots */
		st = vblk_load_req(vb, &in, req, vb->vdev->mem);
		if (st == -EINVAL || st == -EFAULT) {
			vblk_req_put(req);
			vblk_stop(vb, "saved request does not fit guest memory");
			break;
		}
		if (st == VBLK_PENDING)
			st = vblk_start(vb, req);
		if (st != VBLK_PENDING)
			vblk_complete(req, (uint8_t)st);
	}
	free(vb->restore);
	vb->restore = NULL;
	vb->restore_len = 0;
	vb->restore_count = 0;
}

/* ---- ops ---- */

static uint64_t vblk_features(void *priv)
{
	struct virtio_blk *vb = priv;

	return vb->features;
}

static void vblk_config_read(void *priv, uint32_t off, uint8_t *buf, uint32_t len)
{
	struct virtio_blk *vb = priv;

	if (off > sizeof(vb->cfg) || len > sizeof(vb->cfg) - off) {
		memset(buf, 0, len);
		return;
	}
	memcpy(buf, (const uint8_t *)&vb->cfg + off, len);
}

static void vblk_config_write(void *priv, uint32_t off, const uint8_t *buf, uint32_t len)
{
	/* nothing is writable: writeback needs VIRTIO_BLK_F_CONFIG_WCE, not offered */
	(void)priv;
	(void)off;
	(void)buf;
	(void)len;
}

static int vblk_activate(void *priv, struct virtio_dev *vdev)
{
	struct virtio_blk *vb = priv;

	__atomic_store_n(&vb->vdev, vdev, __ATOMIC_RELEASE);
	vb->writethrough = !virtio_has_feature(vdev, VIRTIO_BLK_F_FLUSH);
	vb->active = true;
	vb->stopped = false;
	if (vb->restore)
		vblk_resubmit(vb);
	/* requests may already be waiting (after a restore, say): look from the loop */
	vb->more = true;
	aio_wake(vb->aio);
	vblk_notify(vb);
	return 0;
}

static void vblk_queue_notify(void *priv, uint16_t q)
{
	struct virtio_blk *vb = priv;

	if (q == 0)
		vblk_process(vb);
}

static void vblk_reset(void *priv)
{
	struct virtio_blk *vb = priv;

	/* wait for the kernel to finish with every guest buffer; completions
	 * only give their slots back, so nothing is written after this returns */
	vb->resetting = true;
	aio_drain(vb->aio);
	vb->resetting = false;
	vb->active = false;
	vb->stopped = false;
	vb->more = false;
	vb->pushed = false;
	free(vb->restore);
	vb->restore = NULL;
	vb->restore_len = 0;
	vb->restore_count = 0;
}

static void vblk_save(void *priv, struct sbuf *out)
{
	struct virtio_blk *vb = priv;

	sbuf_put_u32(out, VBLK_STATE_MAGIC);
	sbuf_put_u32(out, VBLK_STATE_VERSION);
	sbuf_put_u64(out, vb->capacity);
	sbuf_put_u64(out, vb->features);
	sbuf_put(out, vb->serial, sizeof(vb->serial));
	sbuf_put_u32(out, vb->restore_count + vb->nr_busy);
	/* loaded but not yet resubmitted: pass them on as they came */
	if (vb->restore_len)
		sbuf_put(out, vb->restore, vb->restore_len);
	for (unsigned i = 0; i < vb->nr_reqs; i++) {
		if (vb->reqs[i]->busy)
			vblk_save_req(vb, vb->reqs[i], out);
	}
}

static int vblk_load(void *priv, struct sbuf *in)
{
	struct virtio_blk *vb = priv;
	char serial[VIRTIO_BLK_ID_BYTES];
	struct vblk_req *scratch;
	uint32_t count;
	size_t start;
	uint8_t *copy = NULL;
	int rc = -EINVAL;

	if (vb->active || vb->nr_busy)
		return -EBUSY;
	if (sbuf_get_u32(in) != VBLK_STATE_MAGIC || sbuf_get_u32(in) != VBLK_STATE_VERSION)
		return -EINVAL;
	/* the image and options on this side must be the ones the state was saved with */
	if (sbuf_get_u64(in) != vb->capacity || sbuf_get_u64(in) != vb->features)
		return -EINVAL;
	sbuf_get(in, serial, sizeof(serial));
	if (memcmp(serial, vb->serial, sizeof(serial)))
		return -EINVAL;
	count = sbuf_get_u32(in);
	if (in->err || count > VIRTIO_BLK_QUEUE_SIZE)
		return -EINVAL;
	scratch = calloc(1, sizeof(*scratch));
	if (!scratch)
		return -ENOMEM;
	start = in->pos;
	for (uint32_t i = 0; i < count; i++) {
		/* the same head twice is possible: a driver may make a chain
		 * available again while it is in flight, and we serve both */
		if (vblk_load_req(vb, in, scratch, NULL) != VBLK_PENDING)
			goto out;
		if (scratch->head >= VIRTIO_BLK_QUEUE_SIZE)
			goto out;
	}
	if (in->err)
		goto out;
	if (in->pos > start) {
		copy = malloc(in->pos - start);
		if (!copy) {
			rc = -ENOMEM;
			goto out;
		}
		memcpy(copy, in->data + start, in->pos - start);
	}
	free(vb->restore);
	vb->restore = copy;
	vb->restore_len = in->pos - start;
	vb->restore_count = count;
	rc = 0;
out:
	free(scratch);
	return rc;
}

const struct virtio_dev_ops virtio_blk_ops = {
	.name = "virtio-blk",
	.device_id = VIRTIO_ID_BLOCK,
	.num_queues = 1,
	.queue_max = VIRTIO_BLK_QUEUE_SIZE,
	.config_size = sizeof(struct virtio_blk_config),
	.features = vblk_features,
	.config_read = vblk_config_read,
	.config_write = vblk_config_write,
	.activate = vblk_activate,
	.queue_notify = vblk_queue_notify,
	.reset = vblk_reset,
	.save = vblk_save,
	.load = vblk_load,
};

/* ---- creation and options ---- */

static void vblk_fill_config(struct virtio_blk *vb)
{
	struct virtio_blk_config *c = &vb->cfg;
	uint8_t exp = 0;

	/* physical block: the host's preferred I/O size, 512 B to 4 KiB */
	while (exp < 3 && (uint32_t)BLK_SECTOR_SIZE << (exp + 1) <= vb->disk->block_size)
		exp++;
	memset(c, 0, sizeof(*c));
	c->capacity = htole64(vb->capacity);
	c->seg_max = htole32(VIRTIO_BLK_SEG_MAX);
	c->blk_size = htole32(BLK_SECTOR_SIZE);
	c->physical_block_exp = exp;
	c->min_io_size = htole16(1);
	c->num_queues = htole16(1);
	if (!vb->readonly) {
		c->max_discard_sectors = htole32(VIRTIO_BLK_MAX_DISCARD_SECTORS);
		c->max_discard_seg = htole32(VIRTIO_BLK_MAX_DISCARD_SEG);
		c->discard_sector_alignment = htole32(1u << exp);
		c->max_write_zeroes_sectors = htole32(VIRTIO_BLK_MAX_WZ_SECTORS);
		c->max_write_zeroes_seg = htole32(VIRTIO_BLK_MAX_WZ_SEG);
		c->write_zeroes_may_unmap = 1;
	}
}

/* Undo virtio_blk_overlay_prepare: the overlay closed and deleted, the
 * image write-locked again. */
static void vblk_overlay_drop(struct virtio_blk *vb)
{
	int rc = blk_overlay_cancel(vb->next, vb->disk);

	vb->next = NULL;
	if (rc < 0)
		log_warn("disk %s: cannot take its write lock back: %s", vb->path, strerror(-rc));
	unlink(vb->next_path);
	free(vb->next_path);
	vb->next_path = NULL;
}

/* overlay=on: the image is only read, as the backing file of a new qcow2
 * overlay next to it, which the device runs on. */
static int vblk_open_overlay(struct virtio_blk *vb, const struct virtio_blk_opts *o,
                             const char *fmt, char *err, size_t errlen)
{
	struct blk_disk *base = NULL;
	char opath[PATH_MAX], *p = NULL;
	int rc;

	if (o->readonly) {
		snprintf(err, errlen, "disk %s: overlay=on is for writable disks, not readonly=on",
		         o->path);
		return -EINVAL;
	}
	if (blk_locks_deferred()) { /* the source still writes the image it would freeze */
		snprintf(err, errlen, "disk %s: overlay=on cannot be used by a migration's destination",
		         o->path);
		return -EINVAL;
	}
	/* held (read lock) until the overlay holds the image as its backing file */
	rc = qcow2_open_any(&base, o->path, fmt, true, vb->aio, err, errlen);
	if (rc < 0)
		return rc;
	rc = blk_overlay_create(o->path, base->drv->name, blk_size(base), opath, sizeof(opath),
	                        err, errlen);
	if (rc == 0 && !(p = strdup(opath))) {
		snprintf(err, errlen, "disk %s: out of memory", o->path);
		rc = -ENOMEM;
		unlink(opath);
	} else if (rc == 0) {
		rc = qcow2_open_any(&vb->disk, opath, "qcow2", false, vb->aio, err, errlen);
		if (rc < 0) {
			unlink(opath);
			free(p);
		}
	}
	blk_close(base);
	if (rc < 0)
		return rc;
	free(vb->path);
	vb->path = p;
	log_info("disk %s: running on a new overlay %s", o->path, opath);
	return 0;
}

int virtio_blk_create(struct virtio_blk **out, const struct virtio_blk_opts *o,
                      struct evloop *loop, char *err, size_t errlen)
{
	struct virtio_blk *vb;
	const char *fmt = NULL;
	uint64_t size;
	int rc;

	vb = calloc(1, sizeof(*vb));
	if (!vb) {
		snprintf(err, errlen, "disk %s: out of memory", o->path);
		return -ENOMEM;
	}
	vb->loop = loop;
	vb->readonly = o->readonly;
	vb->iops = o->iops;
	vb->bps = o->bps;
	ratelimit_init(&vb->rl_ops, o->iops, o->iops / 10 ? o->iops / 10 : 1);
	ratelimit_init(&vb->rl_bytes, o->bps, o->bps / 10 ? o->bps / 10 : 1);
	vb->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (vb->timer_fd < 0 || evloop_add(loop, vb->timer_fd, EPOLLIN, vblk_timer_event, vb) < 0) {
		snprintf(err, errlen, "disk %s: cannot set up its rate limiter", o->path);
		if (vb->timer_fd >= 0)
			close(vb->timer_fd);
		free(vb);
		return -ENOMEM;
	}
	memcpy(vb->serial, o->serial, strnlen(o->serial, sizeof(vb->serial)));
	vb->path = strdup(o->path);
	if (!vb->path) {
		rc = -ENOMEM;
		snprintf(err, errlen, "disk %s: out of memory", o->path);
		goto out;
	}
	rc = aio_create(&vb->aio, VIRTIO_BLK_QUEUE_SIZE, o->sync_io ? AIO_SYNC : 0);
	if (rc < 0) {
		snprintf(err, errlen, "disk %s: cannot set up I/O: %s", o->path, strerror(-rc));
		goto out;
	}
	/* format= picks the driver; without it the image's magic does */
	if (o->format_given)
		fmt = o->format == VIRTIO_BLK_FORMAT_QCOW2 ? "qcow2" : "raw";
	if (o->overlay)
		rc = vblk_open_overlay(vb, o, fmt, err, errlen);
	else
		rc = qcow2_open_any(&vb->disk, o->path, fmt, o->readonly, vb->aio, err, errlen);
	if (rc < 0)
		goto out;
	size = blk_size(vb->disk);
	if (size % BLK_SECTOR_SIZE)
		log_warn("disk %s: size is not a multiple of 512; "
		         "the last %u bytes are not visible",
		         o->path, (unsigned)(size % BLK_SECTOR_SIZE));
	vb->capacity = size / BLK_SECTOR_SIZE;
	vb->features = 1ULL << VIRTIO_BLK_F_SEG_MAX | 1ULL << VIRTIO_BLK_F_BLK_SIZE |
	               1ULL << VIRTIO_BLK_F_FLUSH | 1ULL << VIRTIO_BLK_F_TOPOLOGY |
	               1ULL << VIRTIO_F_EVENT_IDX | 1ULL << VIRTIO_F_INDIRECT_DESC;
	if (vb->readonly)
		vb->features |= 1ULL << VIRTIO_BLK_F_RO;
	else
		vb->features |= 1ULL << VIRTIO_BLK_F_DISCARD | 1ULL << VIRTIO_BLK_F_WRITE_ZEROES;
	vblk_fill_config(vb);
	rc = evloop_add(loop, aio_fd(vb->aio), EPOLLIN, vblk_io_event, vb);
	if (rc < 0) {
		snprintf(err, errlen, "disk %s: cannot watch I/O completions: %s", o->path,
		         strerror(-rc));
		goto out;
	}
	vb->registered = true;
	*out = vb;
	return 0;
out:
	virtio_blk_destroy(vb);
	return rc;
}

void virtio_blk_destroy(struct virtio_blk *vb)
{
	if (!vb)
		return;
	if (vb->registered)
		evloop_del(vb->loop, aio_fd(vb->aio));
	if (vb->aio) {
		vb->resetting = true;
		aio_drain(vb->aio);
	}
	evloop_del(vb->loop, vb->timer_fd);
	close(vb->timer_fd);
	if (vb->next)
		vblk_overlay_drop(vb); /* prepared, never committed */
	blk_close(vb->disk);
	aio_destroy(vb->aio);
	for (unsigned i = 0; i < vb->nr_reqs; i++)
		free(vb->reqs[i]);
	free(vb->restore);
	free(vb->path);
	free(vb->next_path);
	free(vb);
}

uint64_t virtio_blk_capacity(const struct virtio_blk *vb)
{
	return vb->capacity;
}

unsigned virtio_blk_inflight(const struct virtio_blk *vb)
{
	return vb->nr_busy;
}

/* One key=value of --disk; ",," in a value stands for a comma. Returns the
 * position after it, or NULL with err set. */
static const char *vblk_opt_next(const char *p, char *key, size_t keylen, char *val,
                                 size_t vallen, char *err, size_t errlen)
{
	size_t k = 0, v = 0;

	while (*p && *p != '=' && *p != ',') {
		if (k + 1 >= keylen) {
			snprintf(err, errlen, "--disk: unknown key '%.*s...'", (int)k, p - k);
			return NULL;
		}
		key[k++] = *p++;
	}
	key[k] = 0;
	if (*p != '=') {
		snprintf(err, errlen, "--disk: '%s' is not key=value", key);
		return NULL;
	}
	p++;
	while (*p) {
		if (*p == ',') {
			if (p[1] != ',')
				break;
			p++; /* ",," */
		}
		if (v + 1 >= vallen) {
			snprintf(err, errlen, "--disk: %s= is too long", key);
			return NULL;
		}
		val[v++] = *p++;
	}
	val[v] = 0;
	if (*p == ',')
		p++;
	return p;
}

static int vblk_opt_u64(const char *key, const char *val, uint64_t *out, char *err, size_t errlen)
{
	if (size_parse_u64(val, out) < 0 || *out == 0) {
		snprintf(err, errlen, "--disk: %s must be a positive integer, not '%s'", key, val);
		return -EINVAL;
	}
	return 0;
}

int virtio_blk_parse_opts(struct virtio_blk_opts *o, const char *arg, char *err, size_t errlen)
{
	static const char *const keys[] = { "path", "format", "readonly", "serial", "iops", "bps",
		                            "overlay" };
	bool seen[7] = { false };
	char key[16];
	char *val;
	const char *p = arg;
	int rc = 0;

	memset(o, 0, sizeof(*o));
	val = malloc(PATH_MAX);
	if (!val) {
		snprintf(err, errlen, "--disk: out of memory");
		return -ENOMEM;
	}
	while (*p) {
		size_t i;

		p = vblk_opt_next(p, key, sizeof(key), val, PATH_MAX, err, errlen);
		if (!p) {
			rc = -EINVAL;
			goto out;
		}
		for (i = 0; i < 7 && strcmp(key, keys[i]); i++)
			;
		if (i == 7) {
			snprintf(err, errlen,
			         "--disk: unknown key '%s' "
			         "(path, format, readonly, serial, iops, bps, overlay)",
			         key);
			rc = -EINVAL;
			goto out;
		}
		if (seen[i]) {
			snprintf(err, errlen, "--disk: %s= given twice", key);
			rc = -EINVAL;
			goto out;
		}
		seen[i] = true;
		if (!val[0]) {
			snprintf(err, errlen, "--disk: %s= needs a value", key);
			rc = -EINVAL;
			goto out;
		}
		switch (i) {
		case 0:
			strcpy(o->path, val); /* fits: both are PATH_MAX */
			break;
		case 1:
			o->format_given = true;
			if (!strcmp(val, "raw")) {
				o->format = VIRTIO_BLK_FORMAT_RAW;
			} else if (!strcmp(val, "qcow2")) {
				o->format = VIRTIO_BLK_FORMAT_QCOW2;
			} else {
				snprintf(err, errlen,
				         "--disk: format must be raw or qcow2, not '%s'", val);
				rc = -EINVAL;
			}
			break;
		case 2:
		case 6:
			if (!strcmp(val, "on") || !strcmp(val, "off")) {
				*(i == 2 ? &o->readonly : &o->overlay) = !strcmp(val, "on");
			} else {
				snprintf(err, errlen, "--disk: %s must be on or off, not '%s'", key,
				         val);
				rc = -EINVAL;
			}
			break;
		case 3:
			if (strlen(val) > VIRTIO_BLK_ID_BYTES) {
				snprintf(err, errlen, "--disk: serial is longer than %d characters",
				         VIRTIO_BLK_ID_BYTES);
				rc = -EINVAL;
				break;
			}
			for (const char *c = val; *c; c++) {
				if (*c < 0x20 || *c > 0x7e) {
					snprintf(err, errlen,
					         "--disk: serial must be printable ASCII");
					rc = -EINVAL;
					break;
				}
			}
			if (!rc)
				strcpy(o->serial, val);
			break;
		case 4:
			rc = vblk_opt_u64(key, val, &o->iops, err, errlen);
			break;
		case 5:
			rc = vblk_opt_u64(key, val, &o->bps, err, errlen);
			break;
		}
		if (rc)
			goto out;
	}
	if (!seen[0]) {
		snprintf(err, errlen, "--disk: path= is required");
		rc = -EINVAL;
	}
out:
	free(val);
	return rc;
}

int virtio_blk_set_locked(struct virtio_blk *vb, bool locked)
{
	if (!vb->disk->drv->set_locked)
		return -ENOTSUP;
	return vb->disk->drv->set_locked(vb->disk, locked);
}

int virtio_blk_set_limits(struct virtio_blk *vb, uint64_t bps, uint64_t iops)
{
	struct virtio_dev *vdev = __atomic_load_n(&vb->vdev, __ATOMIC_ACQUIRE);

	if (vdev)
		pthread_mutex_lock(&vdev->lock);
	if (bps != UINT64_MAX) {
		vb->bps = bps;
		ratelimit_init(&vb->rl_bytes, bps, bps / 10 ? bps / 10 : 1);
	}
	if (iops != UINT64_MAX) {
		vb->iops = iops;
		ratelimit_init(&vb->rl_ops, iops, iops / 10 ? iops / 10 : 1);
	}
	/* a request waiting for the old limits is re-judged at once */
	if (vb->throttled) {
		struct itimerspec now = { .it_value = { 0, 1 } };
		timerfd_settime(vb->timer_fd, 0, &now, NULL);
	}
	if (vdev)
		pthread_mutex_unlock(&vdev->lock);
	return 0;
}

void virtio_blk_get_stats(struct virtio_blk *vb, struct virtio_blk_stats *out)
{
	*out = vb->st;
	out->bps = vb->bps;
	out->iops = vb->iops;
}

/* ---- live switch to an overlay ---- */

static struct virtio_dev *vblk_lock(struct virtio_blk *vb)
{
	struct virtio_dev *vdev = __atomic_load_n(&vb->vdev, __ATOMIC_ACQUIRE);

	if (vdev)
		pthread_mutex_lock(&vdev->lock);
	return vdev;
}

static void vblk_unlock(struct virtio_dev *vdev)
{
	if (vdev)
		pthread_mutex_unlock(&vdev->lock);
}

int virtio_blk_overlay_prepare(struct virtio_blk *vb, char *err, size_t errlen)
{
	struct virtio_dev *vdev;
	char opath[PATH_MAX];
	int rc;

	if (vb->readonly) {
		snprintf(err, errlen, "disk %s is read-only: it needs no overlay", vb->path);
		return -EINVAL;
	}
	if (vb->next) {
		snprintf(err, errlen, "disk %s: an overlay switch is already under way", vb->path);
		return -EBUSY;
	}
	vdev = vblk_lock(vb);
	/* nothing may reach the image after it is frozen: wait for what the
	 * guest asked before the pause (completions are written to the ring) */
	if (vb->nr_busy || aio_inflight(vb->aio)) {
		aio_drain(vb->aio);
		if (vdev)
			vblk_notify(vb);
	}
	if (vb->nr_busy || aio_inflight(vb->aio)) {
		snprintf(err, errlen, "disk %s: requests are still in flight", vb->path);
		rc = -EBUSY;
		goto out;
	}
	rc = blk_overlay_create(vb->path, vb->disk->drv->name, blk_size(vb->disk), opath,
	                        sizeof(opath), err, errlen);
	if (rc < 0)
		goto out;
	vb->next_path = strdup(opath);
	if (!vb->next_path) {
		unlink(opath);
		snprintf(err, errlen, "disk %s: out of memory", vb->path);
		rc = -ENOMEM;
		goto out;
	}
	rc = blk_overlay_open(&vb->next, opath, vb->disk, vb->aio, err, errlen);
	if (rc == 0 && blk_size(vb->next) != blk_size(vb->disk)) {
		blk_overlay_cancel(vb->next, vb->disk);
		vb->next = NULL;
		snprintf(err, errlen, "disk %s: the overlay %s has another size", vb->path, opath);
		rc = -EIO;
	}
	if (rc < 0) {
		unlink(opath);
		free(vb->next_path);
		vb->next_path = NULL;
	}
out:
	vblk_unlock(vdev);
	return rc;
}

void virtio_blk_overlay_commit(struct virtio_blk *vb)
{
	struct virtio_dev *vdev;
	struct blk_disk *old;

	if (!vb->next)
		return;
	vdev = vblk_lock(vb);
	old = vb->disk;
	vb->disk = vb->next;
	vb->next = NULL;
	blk_close(old); /* unlocked already: the overlay's read lock stays */
	log_info("disk %s: frozen; the VM goes on writing to %s", vb->path, vb->next_path);
	free(vb->path);
	vb->path = vb->next_path;
	vb->next_path = NULL;
	vblk_unlock(vdev);
}

void virtio_blk_overlay_abort(struct virtio_blk *vb)
{
	struct virtio_dev *vdev;

	if (!vb->next)
		return;
	vdev = vblk_lock(vb);
	vblk_overlay_drop(vb);
	vblk_unlock(vdev);
}

const char *virtio_blk_path(const struct virtio_blk *vb)
{
	return vb->path;
}

const char *virtio_blk_format(const struct virtio_blk *vb)
{
	return vb->disk->drv->name;
}

bool virtio_blk_readonly(const struct virtio_blk *vb)
{
	return vb->readonly;
}

/* Append "key=" and s with commas doubled; false when it does not fit. */
static bool vblk_put_escaped(char *buf, size_t len, size_t *at, const char *key, const char *s)
{
	int w = snprintf(buf + *at, len - *at, "%s%s=", *at ? "," : "", key);

	if (w < 0 || (size_t)w >= len - *at)
		return false;
	*at += (size_t)w;
	for (; *s; s++) {
		size_t need = *s == ',' ? 2 : 1;

		if (*at + need >= len)
			return false;
		buf[(*at)++] = *s;
		if (*s == ',')
			buf[(*at)++] = ',';
	}
	buf[*at] = '\0';
	return true;
}

int virtio_blk_format_opts(const struct virtio_blk_opts *o, char *buf, size_t len)
{
	size_t at = 0;
	char num[32];

	if (!len)
		return -ENAMETOOLONG;
	buf[0] = '\0';
	bool ok = vblk_put_escaped(buf, len, &at, "path", o->path);
	if (ok && o->format_given)
		ok = vblk_put_escaped(buf, len, &at, "format",
		                      o->format == VIRTIO_BLK_FORMAT_QCOW2 ? "qcow2" : "raw");
	if (ok && o->readonly)
		ok = vblk_put_escaped(buf, len, &at, "readonly", "on");
	if (ok && o->serial[0])
		ok = vblk_put_escaped(buf, len, &at, "serial", o->serial);
	if (ok && o->iops) {
		snprintf(num, sizeof(num), "%llu", (unsigned long long)o->iops);
		ok = vblk_put_escaped(buf, len, &at, "iops", num);
	}
	if (ok && o->bps) {
		snprintf(num, sizeof(num), "%llu", (unsigned long long)o->bps);
		ok = vblk_put_escaped(buf, len, &at, "bps", num);
	}
	if (ok && o->overlay)
		ok = vblk_put_escaped(buf, len, &at, "overlay", "on");
	return ok ? 0 : -ENAMETOOLONG;
}
