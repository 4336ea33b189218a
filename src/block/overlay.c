/* External qcow2 overlays of open disks (see overlay.h). */
#include "block/overlay.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/aio.h"
#include "block/qcow2.h"

#define STAMP_LEN 15 /* YYYYMMDD-HHMMSS */

static bool all_digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
	}
	return n > 0;
}

/* Whether s[0..n) is an overlay stamp: "YYYYMMDD-HHMMSS" or "YYYYMMDD-HHMMSS-N". */
static bool is_stamp(const char *s, size_t n)
{
	if (n < STAMP_LEN || !all_digits(s, 8) || s[8] != '-' || !all_digits(s + 9, 6))
		return false;
	return n == STAMP_LEN || (s[STAMP_LEN] == '-' && all_digits(s + STAMP_LEN + 1, n - STAMP_LEN - 1));
}

/* Length of name without its extension and an earlier overlay's stamp. */
static size_t stem_len(const char *name)
{
	static const char *const ext[] = { ".qcow2", ".img", ".raw" };
	size_t n = strlen(name);

	for (size_t i = 0; i < sizeof(ext) / sizeof(ext[0]); i++) {
		size_t e = strlen(ext[i]);
		if (n > e && !strcmp(name + n - e, ext[i])) {
			n -= e;
			break;
		}
	}
	/* ".STAMP" at the end: an overlay of an overlay gets a sibling's name */
	for (size_t dot = n; dot-- > 0;) {
		if (name[dot] != '.')
			continue;
		if (dot > 0 && is_stamp(name + dot + 1, n - dot - 1))
			n = dot;
		break;
	}
	return n;
}

int blk_overlay_name(const char *image, time_t when, unsigned n, char *out, size_t outlen)
{
	const char *slash = strrchr(image, '/');
	const char *name = slash ? slash + 1 : image;
	size_t dirlen = (size_t)(name - image);
	char stamp[32], suffix[16] = "";
	struct tm tm;

	if (!gmtime_r(&when, &tm) || !strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tm))
		return -EINVAL;
	if (n)
		snprintf(suffix, sizeof(suffix), "-%u", n);
	int w = snprintf(out, outlen, "%.*s%.*s.%s%s.qcow2", (int)dirlen, image,
	                 (int)stem_len(name), name, stamp, suffix);
	return w < 0 || (size_t)w >= outlen ? -ENAMETOOLONG : 0;
}

int blk_overlay_create(const char *image, const char *fmt, uint64_t size, char *out,
                       size_t outlen, char *err, size_t errlen)
{
	char real[PATH_MAX], msg[512];
	struct stat st;
	int fd = -1, rc;

	if (!realpath(image, real) || stat(real, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "disk %s: %s", image, strerror(-rc));
		return rc;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "disk %s: not an image file (an overlay goes next to one)", image);
		return -ENOTSUP;
	}
	time_t now = time(NULL);
	for (unsigned n = 0; n < BLK_OVERLAY_TRIES; n++) {
		if ((rc = blk_overlay_name(real, now, n, out, outlen)) < 0) {
			snprintf(err, errlen, "disk %s: the overlay's name is too long", image);
			return rc;
		}
		fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 0666);
		if (fd >= 0 || errno != EEXIST)
			break;
	}
	if (fd < 0) {
		rc = errno == EEXIST ? -EEXIST : -errno;
		snprintf(err, errlen, "disk %s: cannot create an overlay %s: %s", image, out,
		         strerror(-rc));
		return rc;
	}
	close(fd);
	/* the name is ours now: qcow2_create fills it in (and locks it meanwhile) */
	struct qcow2_create_opts o = {
		.size = size,
		.backing = strrchr(real, '/') + 1, /* same directory */
		.backing_fmt = fmt,
	};
	rc = qcow2_create(out, &o, msg, sizeof(msg));
	if (rc < 0) {
		unlink(out);
		snprintf(err, errlen, "disk %s: cannot create an overlay: %s", image, msg);
		return rc;
	}
	/* the directory entry is durable before anything depends on it */
	*strrchr(real, '/') = '\0';
	int dfd = open(real[0] ? real : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

struct flush_wait {
	bool done;
	int64_t res;
};

static void flush_done(struct blk_req *req, int64_t res)
{
	struct flush_wait *w = req->opaque;

	w->done = true;
	w->res = res;
}

int blk_flush_wait(struct blk_disk *d)
{
	struct flush_wait w = { false, 0 };
	struct blk_req req;
	int rc;

	memset(&req, 0, sizeof(req));
	req.done = flush_done;
	req.opaque = &w;
	if ((rc = blk_flush(d, &req)) < 0)
		return rc;
	aio_drain(d->aio);
	if (!w.done)
		return -EIO; /* the engine gave up */
	return w.res < 0 ? (int)w.res : 0;
}

int blk_overlay_open(struct blk_disk **out, const char *path, struct blk_disk *old,
                     struct aio *aio, char *err, size_t errlen)
{
	char msg[512];
	int rc;

	*out = NULL;
	if (old->readonly || !old->drv->set_locked) {
		snprintf(err, errlen, "disk %s: the image cannot hand its lock over (%s)", path,
		         old->readonly ? "read-only" : old->drv->name);
		return -ENOTSUP;
	}
	if ((rc = blk_flush_wait(old)) < 0) {
		snprintf(err, errlen, "disk %s: flushing its backing image failed: %s", path,
		         strerror(-rc));
		return rc;
	}
	/* the backing file is the image old still holds with a write lock: open
	 * the chain unlocked, and lock it once old let go */
	blk_defer_locks(true);
	rc = qcow2_open_any(out, path, "qcow2", false, aio, msg, sizeof(msg));
	if (rc < 0) {
		blk_defer_locks(false);
		snprintf(err, errlen, "%s", msg);
		return rc;
	}
	rc = old->drv->set_locked(old, false);
	if (rc < 0) {
		blk_defer_locks(false);
		blk_close(*out);
		*out = NULL;
		snprintf(err, errlen, "disk %s: writing its backing image back failed: %s", path,
		         strerror(-rc));
		return rc;
	}
	rc = blk_take_deferred_locks(msg, sizeof(msg));
	if (rc < 0) {
		blk_defer_locks(false);
		blk_overlay_cancel(*out, old);
		*out = NULL;
		snprintf(err, errlen, "%s", msg);
		return rc;
	}
	return 0;
}

int blk_overlay_cancel(struct blk_disk *overlay, struct blk_disk *old)
{
	int rc;

	blk_close(overlay); /* its read lock on old's image goes with it */
	rc = old->drv->set_locked(old, true);
	return rc == -EAGAIN || rc == -EACCES ? -EBUSY : rc;
}
