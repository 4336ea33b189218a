/* `cvisor img` plumbing: opening images through the block drivers and
 * driving their asynchronous requests to completion one at a time. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/aio.h"
#include "block/qcow2.h"
#include "img/img.h"

void img_err(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* one line, whatever the message holds */
	for (char *p = msg; *p; p++) {
		if (*p == '\n')
			*p = ' ';
	}
	fprintf(stderr, "cvisor img: %s\n", msg);
}

int img_parse_size(const char *s, uint64_t *out)
{
	static const char units[] = "kMGTPE";
	unsigned long long v;
	char *end;
	int shift = 0;

	if (!s || !*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	if (*end && *end != 'b' && *end != 'B') {
		const char *u = strchr(units, *end == 'K' ? 'k' : *end);

		if (!u || !*u)
			return -EINVAL;
		shift = 10 * (int)(u - units + 1);
		end++;
	}
	if (*end == 'b' || *end == 'B')
		end++;
	if (*end)
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

void img_backing_path(char *out, size_t len, const char *image, const char *backing)
{
	const char *slash = strrchr(image, '/');

	if (backing[0] == '/' || !slash)
		snprintf(out, len, "%s", backing);
	else
		snprintf(out, len, "%.*s/%s", (int)(slash - image), image, backing);
}

bool img_is_zero(const void *p, uint64_t len)
{
	const uint8_t *b = p;

	while (len && ((uintptr_t)b & 7)) {
		if (*b++)
			return false;
		len--;
	}
	for (; len >= 8; b += 8, len -= 8) {
		uint64_t w;

		memcpy(&w, b, 8);
		if (w)
			return false;
	}
	while (len--) {
		if (*b++)
			return false;
	}
	return true;
}

int img_open(struct img *im, const char *path, const char *fmt, bool readonly, unsigned qflags)
{
	char err[1024];
	int rc;

	memset(im, 0, sizeof(*im));
	snprintf(im->path, sizeof(im->path), "%s", path);
	if (fmt && strcmp(fmt, "raw") && strcmp(fmt, "qcow2")) {
		img_err("unknown format '%s' (raw or qcow2)", fmt);
		return -EINVAL;
	}
	if (!fmt) {
		rc = qcow2_probe(path);
		if (rc < 0) {
			img_err("%s: %s", path, strerror(-rc));
			return rc;
		}
		fmt = rc == QCOW2_FMT_QCOW2 ? "qcow2" : "raw";
	}
	snprintf(im->fmt, sizeof(im->fmt), "%s", fmt);
	rc = aio_create(&im->aio, 64, AIO_SYNC);
	if (rc < 0) {
		img_err("cannot set up I/O: %s", strerror(-rc));
		return rc;
	}
	if (!strcmp(fmt, "qcow2"))
		rc = qcow2_open(&im->d, path, readonly, qflags, im->aio, err, sizeof(err));
	else
		rc = blk_raw_driver.open(&im->d, path, readonly, im->aio, err, sizeof(err));
	if (rc < 0) {
		img_err("%s", err);
		aio_destroy(im->aio);
		im->aio = NULL;
		return rc;
	}
	return 0;
}

void img_close(struct img *im)
{
	if (im->aio)
		aio_drain(im->aio);
	blk_close(im->d);
	aio_destroy(im->aio);
	im->d = NULL;
	im->aio = NULL;
}

struct sio {
	struct blk_req req;
	bool done;
	int64_t res;
};

static void sio_done(struct blk_req *req, int64_t res)
{
	struct sio *s = req->opaque;

	s->done = true;
	s->res = res;
}

static void sio_init(struct sio *s)
{
	memset(s, 0, sizeof(*s));
	s->req.done = sio_done;
	s->req.opaque = s;
}

static int sio_wait(struct img *im, struct sio *s, int rc)
{
	if (rc < 0)
		return rc;
	aio_drain(im->aio);
	if (!s->done)
		return -EIO;
	return s->res < 0 ? (int)s->res : 0;
}

int img_read(struct img *im, void *buf, uint64_t len, uint64_t off)
{
	struct iovec v = { buf, (size_t)len };
	struct sio s;

	sio_init(&s);
	return sio_wait(im, &s, blk_readv(im->d, &s.req, &v, 1, off));
}

int img_write(struct img *im, const void *buf, uint64_t len, uint64_t off)
{
	struct iovec v = { (void *)buf, (size_t)len };
	struct sio s;

	sio_init(&s);
	return sio_wait(im, &s, blk_writev(im->d, &s.req, &v, 1, off));
}

int img_zero(struct img *im, uint64_t len, uint64_t off, bool unmap)
{
	struct sio s;

	sio_init(&s);
	return sio_wait(im, &s, blk_write_zeroes(im->d, &s.req, off, len, unmap));
}

int img_discard(struct img *im, uint64_t len, uint64_t off)
{
	struct sio s;

	sio_init(&s);
	return sio_wait(im, &s, blk_discard(im->d, &s.req, off, len));
}

int img_flush(struct img *im)
{
	struct sio s;

	sio_init(&s);
	return sio_wait(im, &s, blk_flush(im->d, &s.req));
}
