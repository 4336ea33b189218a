/* Format detection for images opened without format=, and the guard that
 * makes detection safe: a raw image opened by detection never takes a guest
 * write that would make its first sector start with the qcow2 magic (else a
 * guest could turn its disk into a qcow2 image naming any host file as its
 * backing file, at the next start). With format=raw nothing is probed. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/aio.h"
#include "block/qcow2_int.h"

int qcow2_probe(const char *path)
{
	uint8_t m[4];
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = pread(fd, m, sizeof(m), 0);
	close(fd);
	if (n < 0)
		return -errno;
	if (n == (ssize_t)sizeof(m) && qcow2_be32(m) == QCOW2_MAGIC)
		return QCOW2_FMT_QCOW2;
	return QCOW2_FMT_RAW;
}

/* A raw disk found by probing: the raw driver, with writes to the first
 * bytes checked. */
struct guarded {
	struct blk_disk d;
	struct blk_disk *raw;
};

static struct blk_disk *inner(struct blk_disk *d)
{
	return ((struct guarded *)d)->raw;
}

static void g_close(struct blk_disk *d)
{
	blk_close(inner(d));
	free(d);
}

static uint64_t g_size(struct blk_disk *d)
{
	return blk_size(inner(d));
}

static int g_readv(struct blk_disk *d, struct blk_req *req, const struct iovec *iov, int iovcnt,
                   uint64_t off)
{
	return blk_readv(inner(d), req, iov, iovcnt, off);
}

static int g_writev(struct blk_disk *d, struct blk_req *req, const struct iovec *iov, int iovcnt,
                   uint64_t off)
{
	uint8_t head[4];
	size_t got = 0;

	if (off > 0 && off < sizeof(head))
		return -EPERM; /* would need the old bytes to judge; no real client does this */
	if (off == 0) {
		for (int i = 0; i < iovcnt && got < sizeof(head); i++) {
			size_t take = iov[i].iov_len < sizeof(head) - got ? iov[i].iov_len
			                                                  : sizeof(head) - got;

			memcpy(head + got, iov[i].iov_base, take);
			got += take;
		}
		if (got == sizeof(head) && qcow2_be32(head) == QCOW2_MAGIC)
			return -EPERM;
	}
	return blk_writev(inner(d), req, iov, iovcnt, off);
}

static int g_flush(struct blk_disk *d, struct blk_req *req)
{
	return blk_flush(inner(d), req);
}

static int g_discard(struct blk_disk *d, struct blk_req *req, uint64_t off, uint64_t len)
{
	return blk_discard(inner(d), req, off, len);
}

static int g_write_zeroes(struct blk_disk *d, struct blk_req *req, uint64_t off, uint64_t len,
                          bool unmap)
{
	return blk_write_zeroes(inner(d), req, off, len, unmap);
}

static int g_set_locked(struct blk_disk *d, bool locked)
{
	struct blk_disk *in = inner(d);
	return in->drv->set_locked ? in->drv->set_locked(in, locked) : -ENOTSUP;
}

static const struct blk_driver guarded_raw_driver = {
	.name = "raw",
	.close = g_close,
	.size = g_size,
	.readv = g_readv,
	.writev = g_writev,
	.flush = g_flush,
	.discard = g_discard,
	.write_zeroes = g_write_zeroes,
	.set_locked = g_set_locked,
};

int qcow2_open_any(struct blk_disk **out, const char *path, const char *fmt, bool readonly,
                   struct aio *aio, char *err, size_t errlen)
{
	struct guarded *g;
	int rc;

	if (fmt && !strcmp(fmt, "qcow2"))
		return blk_qcow2_driver.open(out, path, readonly, aio, err, errlen);
	if (fmt && !strcmp(fmt, "raw"))
		return blk_raw_driver.open(out, path, readonly, aio, err, errlen);
	if (fmt) {
		snprintf(err, errlen, "disk %s: unknown format '%s'", path, fmt);
		return -EINVAL;
	}
	rc = qcow2_probe(path);
	if (rc < 0) {
		snprintf(err, errlen, "disk %s: %s", path, strerror(-rc));
		return rc;
	}
	if (rc == QCOW2_FMT_QCOW2)
		return blk_qcow2_driver.open(out, path, readonly, aio, err, errlen);
	if (readonly)
		return blk_raw_driver.open(out, path, readonly, aio, err, errlen);
	g = calloc(1, sizeof(*g));
	if (!g) {
		snprintf(err, errlen, "disk %s: out of memory", path);
		return -ENOMEM;
	}
	rc = blk_raw_driver.open(&g->raw, path, readonly, aio, err, errlen);
	if (rc < 0) {
		free(g);
		return rc;
	}
	g->d = *g->raw;
	g->d.drv = &guarded_raw_driver;
	*out = &g->d;
	return 0;
}
