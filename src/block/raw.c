/* Raw disk images: the file (or block device) holds the disk's bytes as they
 * are. Also the image opening and locking shared by every format driver. */
#include "block/block.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/aio.h"

struct raw_disk {
	struct blk_disk d; /* first: the driver gets it back as a struct blk_disk * */
	int fd;
	uint64_t size;
};

/* Locks deferred by blk_defer_locks (a live-migration destination opens its
 * images while the source still holds them). */
#define MAX_DEFERRED 64
static struct {
	int fd;
	bool readonly;
	char path[256];
} deferred[MAX_DEFERRED];
static int nr_deferred;
static bool defer_locks;

bool blk_locks_deferred(void)
{
	return defer_locks;
}

void blk_defer_locks(bool on)
{
	defer_locks = on;
	if (!on)
		nr_deferred = 0;
}

int blk_take_deferred_locks(char *err, size_t errlen)
{
	for (int i = 0; i < nr_deferred; i++) {
		int rc = blk_file_set_locked(deferred[i].fd, deferred[i].readonly, true);
		if (rc) {
			snprintf(err, errlen, "disk %s is still locked by another process", deferred[i].path);
			return rc == -EAGAIN || rc == -EACCES ? -EBUSY : rc;
		}
	}
	nr_deferred = 0;
	defer_locks = false;
	return 0;
}

int blk_file_open(const char *path, bool readonly, int *fdp, char *err, size_t errlen)
{
	struct flock fl = {
		.l_type = readonly ? F_RDLCK : F_WRLCK,
		.l_whence = SEEK_SET,
		.l_start = 0,
		.l_len = 0, /* the whole file */
	};
	struct stat st;
	int fd, rc;

	fd = open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "disk %s: %s", path, strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "disk %s: %s", path, strerror(-rc));
		goto out;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		rc = -EINVAL;
		snprintf(err, errlen, "disk %s: not a regular file or block device", path);
		goto out;
	}
	if (defer_locks) {
		if (nr_deferred == MAX_DEFERRED) {
			rc = -ENOSPC;
			snprintf(err, errlen, "disk %s: too many images", path);
			goto out;
		}
		deferred[nr_deferred].fd = fd;
		deferred[nr_deferred].readonly = readonly;
		snprintf(deferred[nr_deferred].path, sizeof(deferred[0].path), "%s", path);
		nr_deferred++;
		*fdp = fd;
		return 0;
	}
	/* OFD locks belong to this open file description: they conflict with
	 * other processes and with other opens in this one, and go away on close */
	if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
		rc = -errno;
		if (rc == -EAGAIN || rc == -EACCES) {
			rc = -EBUSY;
			snprintf(err, errlen, "disk %s is in use by another process (locked)",
			         path);
		} else {
			snprintf(err, errlen, "disk %s: cannot lock: %s", path, strerror(-rc));
		}
		goto out;
	}
	*fdp = fd;
	return 0;
out:
	close(fd);
	return rc;
}

static struct raw_disk *raw_of(struct blk_disk *d)
{
	return (struct raw_disk *)d;
}

static int raw_open(struct blk_disk **out, const char *path, bool readonly, struct aio *aio,
                    char *err, size_t errlen)
{
	struct raw_disk *r;
	struct stat st;
	off_t end;
	int rc;

	r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(err, errlen, "disk %s: out of memory", path);
		return -ENOMEM;
	}
	rc = blk_file_open(path, readonly, &r->fd, err, errlen);
	if (rc < 0) {
		free(r);
		return rc;
	}
	/* SEEK_END gives the size of block devices too */
	end = lseek(r->fd, 0, SEEK_END);
	if (end < 0 || fstat(r->fd, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "disk %s: %s", path, strerror(-rc));
		goto out;
	}
	r->size = (uint64_t)end;
	r->d.drv = &blk_raw_driver;
	r->d.aio = aio;
	r->d.readonly = readonly;
	r->d.block_size = st.st_blksize > 0 ? (uint32_t)st.st_blksize : BLK_SECTOR_SIZE;
	*out = &r->d;
	return 0;
out:
	close(r->fd);
	free(r);
	return rc;
}

static void raw_close(struct blk_disk *d)
{
	struct raw_disk *r = raw_of(d);

	close(r->fd); /* drops the OFD lock */
	free(r);
}

static uint64_t raw_size(struct blk_disk *d)
{
	return raw_of(d)->size;
}

/* Only ranges inside the image, and no writes to a read-only one. */
static int raw_check(struct raw_disk *r, uint64_t off, uint64_t len, bool write)
{
	if (write && r->d.readonly)
		return -EROFS;
	if (off > r->size || len > r->size - off)
		return -EINVAL;
	return 0;
}

static int raw_iov_len(const struct iovec *iov, int iovcnt, uint64_t *len)
{
	uint64_t sum = 0;

	if (iovcnt < 0 || iovcnt > IOV_MAX)
		return -EINVAL;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > UINT64_MAX - sum)
			return -EINVAL;
		sum += iov[i].iov_len;
	}
	*len = sum;
	return 0;
}

static int raw_rw(struct blk_disk *d, struct blk_req *req, enum blk_op op,
                  const struct iovec *iov, int iovcnt, uint64_t off)
{
	struct raw_disk *r = raw_of(d);
	uint64_t len;
	int rc;

	rc = raw_iov_len(iov, iovcnt, &len);
	if (rc < 0)
		return rc;
	rc = raw_check(r, off, len, op == BLK_OP_WRITE);
	if (rc < 0)
		return rc;
	req->op = op;
	req->iov = iov;
	req->iovcnt = iovcnt;
	req->offset = off;
	req->flags = 0;
	return aio_submit(d->aio, r->fd, req);
}

static int raw_readv(struct blk_disk *d, struct blk_req *req, const struct iovec *iov,
                     int iovcnt, uint64_t off)
{
	return raw_rw(d, req, BLK_OP_READ, iov, iovcnt, off);
}

static int raw_writev(struct blk_disk *d, struct blk_req *req, const struct iovec *iov,
                      int iovcnt, uint64_t off)
{
	return raw_rw(d, req, BLK_OP_WRITE, iov, iovcnt, off);
}

static int raw_flush(struct blk_disk *d, struct blk_req *req)
{
	req->op = BLK_OP_FLUSH;
	req->iov = NULL;
	req->iovcnt = 0;
	req->offset = 0;
	req->flags = 0;
	return aio_submit(d->aio, raw_of(d)->fd, req);
}

static int raw_range(struct blk_disk *d, struct blk_req *req, enum blk_op op, uint64_t off,
                     uint64_t len, unsigned flags)
{
	struct raw_disk *r = raw_of(d);
	int rc;

	rc = raw_check(r, off, len, true);
	if (rc < 0)
		return rc;
	req->op = op;
	req->iov = NULL;
	req->iovcnt = 0;
	req->offset = off;
	req->len = len;
	req->flags = flags;
	return aio_submit(d->aio, r->fd, req);
}

static int raw_discard(struct blk_disk *d, struct blk_req *req, uint64_t off, uint64_t len)
{
	return raw_range(d, req, BLK_OP_DISCARD, off, len, 0);
}

static int raw_write_zeroes(struct blk_disk *d, struct blk_req *req, uint64_t off, uint64_t len,
                            bool unmap)
{
	return raw_range(d, req, BLK_OP_WRITE_ZEROES, off, len, unmap ? BLK_REQ_UNMAP : 0);
}

int blk_file_set_locked(int fd, bool readonly, bool locked)
{
	struct flock fl = { .l_type = !locked ? F_UNLCK : readonly ? F_RDLCK : F_WRLCK,
		            .l_whence = SEEK_SET };
	return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

static int raw_set_locked(struct blk_disk *d, bool locked)
{
	return blk_file_set_locked(raw_of(d)->fd, d->readonly, locked);
}

const struct blk_driver blk_raw_driver = {
	.name = "raw",
	.open = raw_open,
	.close = raw_close,
	.size = raw_size,
	.readv = raw_readv,
	.writev = raw_writev,
	.flush = raw_flush,
	.discard = raw_discard,
	.write_zeroes = raw_write_zeroes,
	.set_locked = raw_set_locked,
};
