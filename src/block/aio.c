/* Block I/O engine: io_uring with an eventfd, or a synchronous fallback
 * (see aio.h for the semantics of each operation).
 *
 * A request moves through three places: the ring (io_uring: an SQE waiting
 * for its CQE), the backlog (io_uring: no room in the ring yet; fallback: the
 * next system call to make) and the done list (finished without any I/O;
 * callback pending). Every completion runs from aio_poll()/aio_drain(). */
#include "block/aio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <liburing.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define AIO_MAX_DEPTH 4096
#define AIO_ZERO_CHUNK (1u << 20) /* bytes of zeroes per write when zeroing by writing */
#define AIO_MAX_RETRIES 16        /* -EINTR / -EAGAIN in a row before giving up */
#define AIO_DRAIN_ERRORS 1000     /* failed waits in aio_drain before giving up */

/* how write_zeroes is being done */
enum { AIO_WZ_PUNCH, AIO_WZ_ZERO_RANGE, AIO_WZ_WRITE };

struct aio_list {
	struct blk_req *head, *tail;
};

struct aio {
	bool uring;
	struct io_uring ring;
	int efd;
	unsigned depth;
	unsigned inflight;    /* accepted, callback not run yet */
	unsigned in_kernel;   /* SQEs in the ring without a CQE yet */
	unsigned unsubmitted; /* SQEs in the ring not handed to the kernel yet */
	unsigned plugged;
	unsigned long completed;
	struct aio_list backlog;
	struct aio_list done;
};

/* Source of zeroes for write_zeroes on file systems without fallocate
 * support; never written (bss, so it costs no memory until read). */
static uint8_t aio_zeroes[AIO_ZERO_CHUNK];

static void aio_list_add(struct aio_list *l, struct blk_req *r)
{
	r->next = NULL;
	if (l->tail)
		l->tail->next = r;
	else
		l->head = r;
	l->tail = r;
}

static struct blk_req *aio_list_take(struct aio_list *l)
{
	struct blk_req *r = l->head;

	l->head = l->tail = NULL;
	return r;
}

void aio_wake(struct aio *a)
{
	uint64_t one = 1;

	/* only fails when the counter would overflow, and then it is readable */
	if (write(a->efd, &one, sizeof(one)) < 0)
		return;
}

int aio_fd(const struct aio *a)
{
	return a->efd;
}

bool aio_is_uring(const struct aio *a)
{
	return a->uring;
}

unsigned aio_inflight(const struct aio *a)
{
	return a->inflight;
}

/* The buffers still to transfer: the caller's, or what a short transfer left. */
static void aio_cur_iov(const struct blk_req *req, const struct iovec **iov, int *cnt)
{
	if (req->rest_iov) {
		*iov = req->rest_iov;
		*cnt = req->rest_cnt;
	} else {
		*iov = req->iov;
		*cnt = req->iovcnt;
	}
}

/* Point rest_iov at the caller's buffers past the first req->pos bytes. */
static int aio_set_rest(struct blk_req *req)
{
	uint64_t skip = req->pos;
	int n = 0;

	if (!req->rest_iov) {
		req->rest_iov = calloc((size_t)req->iovcnt, sizeof(*req->rest_iov));
		if (!req->rest_iov)
			return -ENOMEM;
	}
	for (int i = 0; i < req->iovcnt; i++) {
		const struct iovec *v = &req->iov[i];

		if (skip >= v->iov_len) {
			skip -= v->iov_len;
			continue;
		}
		req->rest_iov[n].iov_base = (uint8_t *)v->iov_base + skip;
		req->rest_iov[n].iov_len = v->iov_len - skip;
		skip = 0;
		n++;
	}
	req->rest_cnt = n;
	return 0;
}

/* Reading hit the end of the file: the rest of the buffers reads as zeroes. */
static void aio_zero_rest(struct blk_req *req)
{
	uint64_t skip = req->pos;

	for (int i = 0; i < req->iovcnt; i++) {
		const struct iovec *v = &req->iov[i];

		if (skip >= v->iov_len) {
			skip -= v->iov_len;
			continue;
		}
		memset((uint8_t *)v->iov_base + skip, 0, v->iov_len - skip);
		skip = 0;
	}
	req->pos = req->len;
}

static void aio_complete(struct aio *a, struct blk_req *req, int64_t res)
{
	free(req->rest_iov);
	req->rest_iov = NULL;
	req->rest_cnt = 0;
	req->result = res;
	a->inflight--;
	a->completed++;
	req->done(req, res);
}

/* Finish without I/O; the callback runs from the next aio_poll(). */
static void aio_complete_later(struct aio *a, struct blk_req *req, int64_t res)
{
	req->result = res;
	aio_list_add(&a->done, req);
	aio_wake(a);
}

static int aio_fallocate_mode(const struct blk_req *req)
{
	if (req->op == BLK_OP_DISCARD || req->stage == AIO_WZ_PUNCH)
		return FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
	return FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
}

static void aio_set_zero_iov(struct blk_req *req)
{
	uint64_t left = req->len - req->pos;

	req->zero_iov.iov_base = aio_zeroes;
	req->zero_iov.iov_len = left < AIO_ZERO_CHUNK ? left : AIO_ZERO_CHUNK;
}

static void aio_submit_ring(struct aio *a)
{
	int r;

	if (!a->unsubmitted)
		return;
	do {
		r = io_uring_submit(&a->ring);
	} while (r == -EINTR);
	if (r < 0) {
		/* transient (-EAGAIN, -ENOMEM ...): the SQEs stay queued; retry
		 * from the next aio_poll() */
		aio_wake(a);
		return;
	}
	a->unsubmitted = (unsigned)r >= a->unsubmitted ? 0 : a->unsubmitted - (unsigned)r;
	if (a->unsubmitted)
		aio_wake(a);
}

/* Put the request's next system call into the ring; false when there is no room. */
static bool aio_prep(struct aio *a, struct blk_req *req)
{
	struct io_uring_sqe *sqe;
	const struct iovec *iov;
	uint64_t off = req->offset + req->pos;
	int cnt;

	if (a->in_kernel >= a->depth)
		return false;
	sqe = io_uring_get_sqe(&a->ring);
	if (!sqe) {
		aio_submit_ring(a);
		sqe = io_uring_get_sqe(&a->ring);
		if (!sqe)
			return false;
	}
	switch (req->op) {
	case BLK_OP_READ:
		aio_cur_iov(req, &iov, &cnt);
		io_uring_prep_readv(sqe, req->fd, iov, (unsigned)cnt, off);
		break;
	case BLK_OP_WRITE:
		aio_cur_iov(req, &iov, &cnt);
		io_uring_prep_writev(sqe, req->fd, iov, (unsigned)cnt, off);
		break;
	case BLK_OP_FLUSH:
		io_uring_prep_fsync(sqe, req->fd, IORING_FSYNC_DATASYNC);
		break;
	case BLK_OP_DISCARD:
	case BLK_OP_WRITE_ZEROES:
		if (req->op == BLK_OP_WRITE_ZEROES && req->stage == AIO_WZ_WRITE) {
			aio_set_zero_iov(req);
			io_uring_prep_writev(sqe, req->fd, &req->zero_iov, 1, off);
			break;
		}
		io_uring_prep_fallocate(sqe, req->fd, aio_fallocate_mode(req), (off_t)off,
		                        (off_t)(req->len - req->pos));
		break;
	}
	io_uring_sqe_set_data(sqe, req);
	a->in_kernel++;
	a->unsubmitted++;
	if (!a->plugged)
		aio_submit_ring(a);
	return true;
}

/* Start the request's next step. */
static void aio_issue(struct aio *a, struct blk_req *req)
{
	if (a->uring && !a->backlog.head && aio_prep(a, req))
		return;
	aio_list_add(&a->backlog, req);
	if (!a->uring)
		aio_wake(a);
}

/* io_uring: move what waits in the backlog into the ring while there is room. */
static void aio_backlog_to_ring(struct aio *a)
{
	while (a->backlog.head) {
		struct blk_req *req = a->backlog.head;

		if (!aio_prep(a, req))
			break;
		a->backlog.head = req->next;
		if (!a->backlog.head)
			a->backlog.tail = NULL;
	}
}

/* Fallback: make the request's next system call now; -errno on failure. */
static int64_t aio_sync_step(struct blk_req *req)
{
	off_t off = (off_t)(req->offset + req->pos);
	const struct iovec *iov;
	ssize_t n = 0;
	int cnt;

	switch (req->op) {
	case BLK_OP_READ:
		aio_cur_iov(req, &iov, &cnt);
		n = preadv(req->fd, iov, cnt, off);
		break;
	case BLK_OP_WRITE:
		aio_cur_iov(req, &iov, &cnt);
		n = pwritev(req->fd, iov, cnt, off);
		break;
	case BLK_OP_FLUSH:
		n = fdatasync(req->fd);
		break;
	case BLK_OP_DISCARD:
	case BLK_OP_WRITE_ZEROES:
		if (req->op == BLK_OP_WRITE_ZEROES && req->stage == AIO_WZ_WRITE) {
			aio_set_zero_iov(req);
			n = pwritev(req->fd, &req->zero_iov, 1, off);
			break;
		}
		n = fallocate(req->fd, aio_fallocate_mode(req), off, (off_t)(req->len - req->pos));
		break;
	}
	return n < 0 ? -errno : n;
}

/* A transfer step moved res bytes: finish, or go on with the rest. Returns
 * true when the request needs another step. */
static bool aio_advance(struct blk_req *req, int64_t *res)
{
	if ((uint64_t)*res > req->len - req->pos) {
		*res = -EIO; /* more than asked for: the kernel would not do this */
		return false;
	}
	req->pos += (uint64_t)*res;
	req->retries = 0;
	if (req->pos == req->len) {
		*res = (int64_t)req->len;
		return false;
	}
	return true;
}

/* The result of one step of req: finish it or issue the next step. */
static void aio_handle(struct aio *a, struct blk_req *req, int64_t res)
{
	if ((res == -EINTR || res == -EAGAIN) && req->retries < AIO_MAX_RETRIES) {
		req->retries++;
		aio_issue(a, req);
		return;
	}
	switch (req->op) {
	case BLK_OP_READ:
		if (res == 0) {
			aio_zero_rest(req);
			res = (int64_t)req->len;
			break;
		}
		if (res < 0 || !aio_advance(req, &res))
			break;
		if (aio_set_rest(req) < 0) {
			res = -ENOMEM;
			break;
		}
		aio_issue(a, req);
		return;
	case BLK_OP_WRITE:
		if (res == 0)
			res = -EIO;
		if (res < 0 || !aio_advance(req, &res))
			break;
		if (aio_set_rest(req) < 0) {
			res = -ENOMEM;
			break;
		}
		aio_issue(a, req);
		return;
	case BLK_OP_FLUSH:
		if (res > 0)
			res = 0;
		break;
	case BLK_OP_DISCARD:
		if (res == -EOPNOTSUPP)
			res = 0; /* a hint the file system cannot take */
		if (res >= 0)
			res = (int64_t)req->len;
		break;
	case BLK_OP_WRITE_ZEROES:
		/* a file system without hole punching, or a block device
		 * wanting aligned ranges: zero the range instead */
		if (req->stage == AIO_WZ_PUNCH && (res == -EOPNOTSUPP || res == -EINVAL)) {
			req->stage = AIO_WZ_ZERO_RANGE;
			aio_issue(a, req);
			return;
		}
		if (req->stage == AIO_WZ_ZERO_RANGE && (res == -EOPNOTSUPP || res == -EINVAL)) {
			req->stage = AIO_WZ_WRITE;
			aio_issue(a, req);
			return;
		}
		if (req->stage == AIO_WZ_WRITE) {
			if (res == 0)
				res = -EIO;
			if (res < 0 || !aio_advance(req, &res))
				break;
			aio_issue(a, req);
			return;
		}
		if (res >= 0)
			res = (int64_t)req->len;
		break;
	}
	aio_complete(a, req, res);
}

static int aio_iov_len(const struct blk_req *req, uint64_t *len)
{
	uint64_t sum = 0;

	if (req->iovcnt < 0 || req->iovcnt > IOV_MAX || (req->iovcnt && !req->iov))
		return -EINVAL;
	for (int i = 0; i < req->iovcnt; i++) {
		if (req->iov[i].iov_len > INT64_MAX - sum)
			return -EINVAL;
		sum += req->iov[i].iov_len;
	}
	*len = sum;
	return 0;
}

int aio_submit(struct aio *a, int fd, struct blk_req *req)
{
	int rc;

	if (!req->done)
		return -EINVAL;
	switch (req->op) {
	case BLK_OP_READ:
	case BLK_OP_WRITE:
		rc = aio_iov_len(req, &req->len);
		if (rc < 0)
			return rc;
		break;
	case BLK_OP_FLUSH:
		req->len = 0;
		break;
	case BLK_OP_DISCARD:
	case BLK_OP_WRITE_ZEROES:
		break;
	default:
		return -EINVAL;
	}
	/* no negative off_t, and never -1 (io_uring's "current position") */
	if (req->offset > INT64_MAX || req->len > INT64_MAX - req->offset)
		return -EINVAL;
	req->fd = fd;
	req->pos = 0;
	req->retries = 0;
	req->rest_iov = NULL;
	req->rest_cnt = 0;
	req->result = 0;
	req->stage = (req->flags & BLK_REQ_UNMAP) ? AIO_WZ_PUNCH : AIO_WZ_ZERO_RANGE;
	a->inflight++;
	if (req->len == 0 && req->op != BLK_OP_FLUSH) {
		aio_complete_later(a, req, 0);
		return 0;
	}
	aio_issue(a, req);
	return 0;
}

int aio_complete_req(struct aio *a, struct blk_req *req, int64_t res)
{
	if (!req->done)
		return -EINVAL;
	req->rest_iov = NULL;
	req->rest_cnt = 0;
	a->inflight++;
	aio_complete_later(a, req, res);
	return 0;
}

void aio_plug(struct aio *a)
{
	a->plugged++;
}

void aio_unplug(struct aio *a)
{
	if (a->plugged && --a->plugged == 0 && a->uring)
		aio_submit_ring(a);
}

static void aio_reap_ring(struct aio *a)
{
	struct io_uring_cqe *cqe;

	while (io_uring_peek_cqe(&a->ring, &cqe) == 0) {
		struct blk_req *req = io_uring_cqe_get_data(cqe);
		int64_t res = cqe->res;

		io_uring_cqe_seen(&a->ring, cqe);
		a->in_kernel--;
		aio_handle(a, req, res);
	}
	aio_backlog_to_ring(a);
}

/* Fallback: one step of each request that was waiting when we started. */
static void aio_run_sync(struct aio *a)
{
	struct blk_req *req = aio_list_take(&a->backlog);

	while (req) {
		struct blk_req *next = req->next;

		aio_handle(a, req, aio_sync_step(req));
		req = next;
	}
}

int aio_poll(struct aio *a)
{
	unsigned long before = a->completed;
	struct blk_req *req;
	uint64_t count;

	/* reset the counter first: anything finishing later makes it readable again */
	if (read(a->efd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		return -errno;
	a->plugged++;
	req = aio_list_take(&a->done);
	while (req) {
		struct blk_req *next = req->next;

		aio_complete(a, req, req->result);
		req = next;
	}
	if (a->uring)
		aio_reap_ring(a);
	else
		aio_run_sync(a);
	aio_unplug(a);
	return (int)(a->completed - before);
}

void aio_drain(struct aio *a)
{
	unsigned errors = 0;

	while (a->inflight) {
		if (a->uring) {
			aio_backlog_to_ring(a);
			aio_submit_ring(a);
			if (a->in_kernel) {
				struct io_uring_cqe *cqe;
				int r = io_uring_wait_cqe(&a->ring, &cqe);

				if (r < 0 && r != -EINTR && ++errors > AIO_DRAIN_ERRORS)
					return; /* io_uring itself is broken; nothing else to do */
			}
		}
		if (aio_poll(a) < 0 && ++errors > AIO_DRAIN_ERRORS)
			return;
	}
}

static int aio_uring_init(struct aio *a)
{
	static const int ops[] = { IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_FSYNC,
		                   IORING_OP_FALLOCATE };
	struct io_uring_probe *probe;
	int rc;

	/* no IORING_SETUP_COOP_TASKRUN / DEFER_TASKRUN: aio_drain may run on
	 * another thread (a vCPU resetting the device) while the submitting
	 * thread waits for the device lock, and completions that need task
	 * work on the submitter must still arrive */
	rc = io_uring_queue_init(a->depth, &a->ring, 0);
	if (rc < 0)
		return rc;
	probe = io_uring_get_probe_ring(&a->ring);
	if (!probe) {
		rc = -EOPNOTSUPP;
		goto out;
	}
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (!io_uring_opcode_supported(probe, ops[i]))
			rc = -EOPNOTSUPP;
	}
	io_uring_free_probe(probe);
	if (rc < 0)
		goto out;
	rc = io_uring_register_eventfd(&a->ring, a->efd);
	if (rc < 0)
		goto out;
	return 0;
out:
	io_uring_queue_exit(&a->ring);
	return rc;
}

int aio_create(struct aio **out, unsigned depth, unsigned flags)
{
	struct aio *a = calloc(1, sizeof(*a));
	int rc;

	if (!a)
		return -ENOMEM;
	a->depth = depth == 0 ? 1 : depth > AIO_MAX_DEPTH ? AIO_MAX_DEPTH : depth;
	a->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (a->efd < 0) {
		rc = -errno;
		goto out;
	}
	if (!(flags & AIO_SYNC) && aio_uring_init(a) == 0)
		a->uring = true;
	*out = a;
	return 0;
out:
	free(a);
	return rc;
}

void aio_destroy(struct aio *a)
{
	if (!a)
		return;
	if (a->uring)
		io_uring_queue_exit(&a->ring);
	close(a->efd);
	free(a);
}
