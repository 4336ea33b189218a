/* qcow2 driver: opening (header checks, tables, backing chain), closing, and
 * the requests of the block layer.
 *
 * A read or write is split into runs by the mapping (qcow2_map). Runs of
 * allocated data and of backing-file data go through the I/O engine one at a
 * time, as a child request; zero runs, compressed clusters and allocating
 * writes (metadata plus a copy-on-write of at most one cluster) are done on
 * the spot with pread/pwrite, so the caller never waits for more than about a
 * cluster of synchronous I/O per run. A request finishes from aio_poll() when
 * its last child completes, or through aio_complete_req() when none was needed.
 * Everything runs under the caller's serialization (the device lock). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/aio.h"
#include "block/qcow2_int.h"
#include "util/log.h"

static struct qcow2 *qc(struct blk_disk *d)
{
	return (struct qcow2 *)d;
}

bool qcow2_is(const struct blk_disk *d)
{
	return d && d->drv == &blk_qcow2_driver;
}

/* ---- open and close ---- */

static void q_free(struct qcow2 *q)
{
	if (q->bk.disk)
		blk_close(q->bk.disk);
	if (q->bk.fd >= 0)
		close(q->bk.fd);
	qcow2_cache_free(&q->l2c);
	qcow2_cache_free(&q->rbc);
	qcow2_compress_free(q);
	qcow2_header_free(&q->h);
	free(q->l1);
	free(q->rt);
	free(q->pending);
	free(q->path);
	if (q->fd >= 0)
		close(q->fd);
	free(q);
}

static int q_open_depth(struct blk_disk **out, const char *path, bool readonly, unsigned flags,
                        struct aio *aio, unsigned depth, char *err, size_t errlen);

static int open_backing(struct qcow2 *q, char *err, size_t errlen)
{
	const char *name = q->h.backing, *fmt = q->h.backing_fmt;
	char *bpath = NULL, msg[512];
	size_t dirlen;
	int rc;

	if (!fmt[0]) {
		snprintf(err, errlen,
		         "disk %s: the backing file format is not recorded (set it with "
		         "cvisor img rebase -u -b %s -F raw|qcow2 %s)",
		         q->path, name, q->path);
		return -ENOTSUP;
	}
	if (strcmp(fmt, "raw") && strcmp(fmt, "qcow2")) {
		snprintf(err, errlen, "disk %s: backing format '%s' is not supported", q->path, fmt);
		return -ENOTSUP;
	}
	if ((q->flags & QCOW2_OPEN_LOCAL_BACKING) && strchr(name, '/')) {
		snprintf(err, errlen, "disk %s: backing file name may not contain '/'", q->path);
		return -EPERM;
	}
	if (q->depth + 1 >= QCOW2_MAX_DEPTH) {
		snprintf(err, errlen, "disk %s: backing chain longer than %d images", q->path,
		         QCOW2_MAX_DEPTH);
		return -ELOOP;
	}
	/* relative names are relative to the directory of the image naming them */
	dirlen = name[0] == '/' || !strrchr(q->path, '/') ? 0
	                                                  : (size_t)(strrchr(q->path, '/') - q->path) + 1;
	bpath = malloc(dirlen + strlen(name) + 1);
	if (!bpath)
		return -ENOMEM;
	memcpy(bpath, q->path, dirlen);
	strcpy(bpath + dirlen, name);
	if (!strcmp(fmt, "raw")) {
		off_t end;

		rc = blk_file_open(bpath, true, &q->bk.fd, msg, sizeof(msg));
		if (rc == 0) {
			end = lseek(q->bk.fd, 0, SEEK_END);
			if (end < 0) {
				rc = -errno;
				snprintf(msg, sizeof(msg), "disk %s: %s", bpath, strerror(-rc));
			} else {
				q->bk.size = (uint64_t)end;
			}
		}
	} else {
		rc = q_open_depth(&q->bk.disk, bpath, true, q->flags & QCOW2_OPEN_LOCAL_BACKING,
		                  q->d.aio, q->depth + 1, msg, sizeof(msg));
		if (rc == 0)
			q->bk.size = blk_size(q->bk.disk);
	}
	if (rc < 0)
		snprintf(err, errlen, "disk %s: backing file: %s", q->path, msg);
	else
		q->has_backing = true;
	free(bpath);
	return rc;
}

/* Read a table of n big-endian entries at off into host order. */
static int load_table(struct qcow2 *q, uint64_t off, uint64_t n, uint64_t **out)
{
	uint64_t *t = malloc(n ? n * 8 : 8);
	int rc;

	if (!t)
		return -ENOMEM;
	rc = qcow2_pread(q, t, n * 8, off);
	if (rc < 0) {
		free(t);
		return rc;
	}
	for (uint64_t i = 0; i < n; i++)
		t[i] = qcow2_be64((const uint8_t *)&t[i]);
	*out = t;
	return 0;
}

static unsigned clamp_u(uint64_t v, unsigned lo, unsigned hi)
{
	return v < lo ? lo : v > hi ? hi : (unsigned)v;
}

/* Read and check the header: the file's size into q->file_end, the parsed
 * header into h. On failure one line (without the path) in msg. */
static int q_read_header(struct qcow2 *q, struct qcow2_header *h, char *msg, size_t len)
{
	uint8_t first[24], *buf;
	uint64_t cs;
	off_t end;
	int rc;

	end = lseek(q->fd, 0, SEEK_END);
	if (end < 0) {
		rc = -errno;
		snprintf(msg, len, "%s", strerror(-rc));
		return rc;
	}
	q->file_end = (uint64_t)end;
	/* the cluster size first, to read the whole header cluster */
	rc = qcow2_pread(q, first, sizeof(first), 0);
	if (rc < 0) {
		snprintf(msg, len, "%s", strerror(-rc));
		return rc;
	}
	if (qcow2_be32(first) != QCOW2_MAGIC) {
		snprintf(msg, len, "not a qcow2 image");
		return -EINVAL;
	}
	if (qcow2_be32(first + 20) < QCOW2_MIN_CLUSTER_BITS ||
	    qcow2_be32(first + 20) > QCOW2_MAX_CLUSTER_BITS) {
		snprintf(msg, len, "qcow2: bad cluster_bits %u (9 to 21 supported)",
		         qcow2_be32(first + 20));
		return -EINVAL;
	}
	cs = 1ULL << qcow2_be32(first + 20);
	buf = malloc(cs);
	if (!buf) {
		snprintf(msg, len, "out of memory");
		return -ENOMEM;
	}
	rc = qcow2_pread(q, buf, cs, 0);
	if (rc == 0) {
		char m[256];

		rc = qcow2_header_parse(h, buf, cs, q->file_end, m, sizeof(m));
		if (rc < 0)
			snprintf(msg, len, "qcow2: %s", m);
	} else {
		snprintf(msg, len, "%s", strerror(-rc));
	}
	free(buf);
	return rc;
}

/* Everything the header leads to: tables, state bits, open-time repairs
 * (skipped while the lock is not ours yet: q->deferred). Writes nothing then. */
static int q_load(struct qcow2 *q, char *err, size_t errlen)
{
	struct qcow2_header *h = &q->h;
	int rc;

	q->cbits = h->cluster_bits;
	q->cs = 1ULL << q->cbits;
	q->l2_bits = q->cbits - 3;
	q->l2_entries = 1ULL << q->l2_bits;
	q->rc_bits = 1u << h->refcount_order;
	q->rb_bits = q->cbits + 3 - h->refcount_order;
	q->rc_max = q->rc_bits == 64 ? UINT64_MAX : (1ULL << q->rc_bits) - 1;
	q->zero_from = qcow2_round_up(q->file_end, q->cs);
	q->rt_entries = ((uint64_t)h->rt_clusters << q->cbits) / 8;
	q->free_hint = 0;
	q->cfree = 0;
	q->l1_dirty_lo = q->l1_dirty_hi = 0;
	q->zvalid = false;
	rc = load_table(q, h->l1_off, h->l1_size, &q->l1);
	if (rc == 0)
		rc = load_table(q, h->rt_off, q->rt_entries, &q->rt);
	if (rc < 0) {
		snprintf(err, errlen, "disk %s: %s", q->path, strerror(-rc));
		return rc;
	}
	q->snap_len = 0;
	if (h->nb_snapshots) {
		rc = qcow2_snap_walk(q, NULL, NULL, &q->snap_len);
		if (rc < 0) {
			snprintf(err, errlen, "disk %s: bad snapshot table", q->path);
			return rc;
		}
	}
	q->corrupt = (h->incompat & QCOW2_INCOMPAT_CORRUPT) != 0;
	if (!q->d.readonly && !(q->flags & QCOW2_OPEN_REPAIR) && q->corrupt) {
		snprintf(err, errlen, "disk %s is marked corrupt (open it read-only, or repair it "
		                      "with cvisor img check -r all)", q->path);
		return -EROFS;
	}
	q->lazy = !q->d.readonly && h->version >= 3 && (h->compat & QCOW2_COMPAT_LAZY);
	q->dirty_on_disk = (h->incompat & QCOW2_INCOMPAT_DIRTY) != 0;
	if (q->deferred || q->d.readonly)
		return 0;
	if (h->autoclear) {
		/* we keep no auto-clear feature's data up to date: say so first */
		uint8_t z[8] = { 0 };

		rc = qcow2_pwrite(q, z, sizeof(z), QCOW2_OFF_AUTOCLEAR);
		if (rc == 0)
			rc = qcow2_sync(q);
		if (rc < 0) {
			snprintf(err, errlen, "disk %s: cannot update the header: %s", q->path,
			         strerror(-rc));
			return rc;
		}
		h->autoclear = 0;
		memset(h->raw + QCOW2_OFF_AUTOCLEAR, 0, 8);
	}
	if (q->dirty_on_disk && !(q->flags & QCOW2_OPEN_NO_REPAIR)) {
		/* refcounts may be behind: rebuild them from the tables first */
		rc = qcow2_repair_dirty(q);
		if (rc == 0)
			rc = qcow2_header_write_incompat(q, h->incompat & ~QCOW2_INCOMPAT_DIRTY);
		if (rc < 0) {
			snprintf(err, errlen, "disk %s: the image is dirty and repairing it failed: %s",
			         q->path, strerror(-rc));
			return rc;
		}
		q->dirty_on_disk = false;
	}
	return 0;
}

/* The lock came back (live migration): what another process may have
 * written meanwhile is read afresh; nothing cached survives. */
static int q_reload(struct qcow2 *q)
{
	struct qcow2_header h;
	char msg[512];
	int rc;

	rc = q_read_header(q, &h, msg, sizeof(msg));
	if (rc == 0 && (h.cluster_bits != q->h.cluster_bits ||
	                h.refcount_order != q->h.refcount_order)) {
		qcow2_header_free(&h);
		rc = -EIO;
	}
	if (rc < 0) {
		log_error("disk %s: reloading after the lock hand-over: %s", q->path,
		          rc == -EIO ? "the image changed its geometry" : msg);
		return rc;
	}
	qcow2_header_free(&q->h);
	q->h = h;
	free(q->l1);
	free(q->rt);
	q->l1 = q->rt = NULL;
	for (unsigned i = 0; i < q->l2c.n; i++)
		q->l2c.e[i].off = 0;
	for (unsigned i = 0; i < q->rbc.n; i++)
		q->rbc.e[i].off = 0;
	q->npending = 0;
	rc = q_load(q, msg, sizeof(msg));
	if (rc < 0)
		log_error("%s", msg);
	return rc;
}

/* Before any request: an image opened while another process held its lock
 * (a migration destination) is taken over, and reloaded, on first use. */
static int q_ensure_locked(struct qcow2 *q)
{
	int rc;

	if (!q->deferred)
		return 0;
	if (blk_file_set_locked(q->fd, q->d.readonly, true) < 0)
		return -EBUSY;
	q->deferred = false;
	rc = q_reload(q);
	if (rc < 0)
		q->deferred = true;
	return rc;
}

static int q_open_depth(struct blk_disk **out, const char *path, bool readonly, unsigned flags,
                        struct aio *aio, unsigned depth, char *err, size_t errlen)
{
	struct qcow2 *q;
	char msg[512];
	struct stat st;
	int rc;

	q = calloc(1, sizeof(*q));
	if (!q) {
		snprintf(err, errlen, "disk %s: out of memory", path);
		return -ENOMEM;
	}
	q->fd = q->bk.fd = -1;
	q->flags = flags;
	q->depth = depth;
	q->d.drv = &blk_qcow2_driver;
	q->d.aio = aio;
	q->d.readonly = readonly;
	q->path = strdup(path);
	if (!q->path) {
		free(q);
		snprintf(err, errlen, "disk %s: out of memory", path);
		return -ENOMEM;
	}
	rc = blk_file_open(path, readonly, &q->fd, err, errlen);
	if (rc < 0)
		goto out;
	/* a migration destination opens images before the source lets go of
	 * them (blk_defer_locks): then write nothing until the lock is ours */
	if (blk_file_set_locked(q->fd, readonly, true) < 0)
		q->deferred = true;
	if (fstat(q->fd, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "disk %s: %s", path, strerror(-rc));
		goto out;
	}
	q->d.block_size = st.st_blksize > 0 ? (uint32_t)st.st_blksize : BLK_SECTOR_SIZE;
	rc = q_read_header(q, &q->h, msg, sizeof(msg));
	if (rc < 0) {
		snprintf(err, errlen, "disk %s: %s", path, msg);
		goto out;
	}
	rc = qcow2_cache_init(&q->l2c, clamp_u((4u << 20) >> q->h.cluster_bits, 4, 128), true);
	if (rc == 0)
		rc = qcow2_cache_init(&q->rbc, clamp_u((1u << 20) >> q->h.cluster_bits, 4, 32),
		                      false);
	if (rc < 0) {
		snprintf(err, errlen, "disk %s: out of memory", path);
		goto out;
	}
	rc = q_load(q, err, errlen);
	if (rc == 0 && q->h.backing[0] && !(flags & QCOW2_OPEN_NO_BACKING))
		rc = open_backing(q, err, errlen);
	if (rc < 0)
		goto out;
	*out = &q->d;
	return 0;
out:
	q_free(q);
	return rc;
}

int qcow2_open(struct blk_disk **out, const char *path, bool readonly, unsigned flags,
               struct aio *aio, char *err, size_t errlen)
{
	return q_open_depth(out, path, readonly, flags, aio, 0, err, errlen);
}

static int drv_open(struct blk_disk **out, const char *path, bool readonly, struct aio *aio,
                    char *err, size_t errlen)
{
	return q_open_depth(out, path, readonly, 0, aio, 0, err, errlen);
}

static void drv_close(struct blk_disk *d)
{
	struct qcow2 *q = qc(d);
	int rc = 0;

	if (!q->d.readonly && !q->deferred) {
		rc = qcow2_meta_flush(q);
		if (rc == 0)
			rc = qcow2_sync(q);
		if (rc == 0 && q->dirty_on_disk)
			rc = qcow2_header_write_incompat(q, q->h.incompat & ~QCOW2_INCOMPAT_DIRTY);
		if (rc < 0)
			log_warn("disk %s: writing metadata back failed: %s", q->path, strerror(-rc));
	}
	q_free(q);
}

static uint64_t drv_size(struct blk_disk *d)
{
	return qc(d)->h.size;
}

static int drv_set_locked(struct blk_disk *d, bool locked)
{
	struct qcow2 *q = qc(d);
	int rc;

	if (locked) {
		q->deferred = true; /* whatever the other side wrote is read afresh */
		return q_ensure_locked(q);
	}
	if (!q->d.readonly && !q->deferred) {
		/* the next holder knows the image only from the file: all of it goes there */
		rc = qcow2_meta_flush(q);
		if (rc == 0)
			rc = qcow2_sync(q);
		if (rc == 0 && q->dirty_on_disk) {
			rc = qcow2_header_write_incompat(q, q->h.incompat & ~QCOW2_INCOMPAT_DIRTY);
			q->dirty_on_disk = rc < 0;
		}
		if (rc < 0)
			return rc;
	}
	rc = blk_file_set_locked(q->fd, q->d.readonly, false);
	if (rc == 0)
		q->deferred = true;
	return rc;
}

/* ---- requests ---- */

struct qreq {
	struct qcow2 *q;
	struct blk_req *parent;
	struct blk_req child;
	enum blk_op op;
	const struct iovec *iov;
	int iovcnt;
	uint64_t off, len, pos;
	uint64_t piece;     /* bytes of the child in flight */
	uint8_t *bounce;    /* one cluster, for allocating writes */
	struct iovec sub[]; /* iovcnt entries: the child's slice of iov */
};

static int iov_total(const struct iovec *iov, int iovcnt, uint64_t *len)
{
	uint64_t sum = 0;

	if (iovcnt < 0 || iovcnt > IOV_MAX || (iovcnt && !iov))
		return -EINVAL;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > INT64_MAX - sum)
			return -EINVAL;
		sum += iov[i].iov_len;
	}
	*len = sum;
	return 0;
}

/* Describe bytes [skip, skip + len) of r's buffers in r->sub. */
static int iov_slice(struct qreq *r, uint64_t skip, uint64_t len)
{
	int cnt = 0;

	for (int i = 0; i < r->iovcnt && len; i++) {
		uint64_t take;

		if (skip >= r->iov[i].iov_len) {
			skip -= r->iov[i].iov_len;
			continue;
		}
		take = r->iov[i].iov_len - skip;
		if (take > len)
			take = len;
		r->sub[cnt].iov_base = (uint8_t *)r->iov[i].iov_base + skip;
		r->sub[cnt].iov_len = take;
		cnt++;
		len -= take;
		skip = 0;
	}
	return cnt;
}

/* Copy between r's buffers at skip and flat memory: to_iov, or from it. */
static void iov_copy(struct qreq *r, uint64_t skip, uint8_t *mem, uint64_t len, bool to_iov)
{
	int cnt = iov_slice(r, skip, len);

	for (int i = 0; i < cnt; i++) {
		if (!mem)
			memset(r->sub[i].iov_base, 0, r->sub[i].iov_len);
		else if (to_iov)
			memcpy(r->sub[i].iov_base, mem, r->sub[i].iov_len);
		else
			memcpy(mem, r->sub[i].iov_base, r->sub[i].iov_len);
		if (mem)
			mem += r->sub[i].iov_len;
	}
}

static void qreq_child_done(struct blk_req *child, int64_t res);

/* Start a child for the next n bytes: on the image at host, or (backing) on
 * the backing file at the same guest offset. */
static int qreq_submit(struct qreq *r, uint64_t host, uint64_t n, bool backing)
{
	struct qcow2 *q = r->q;
	int cnt = iov_slice(r, r->pos, n), rc;

	memset(&r->child, 0, sizeof(r->child));
	r->child.done = qreq_child_done;
	r->child.opaque = r;
	r->piece = n;
	if (backing && q->bk.disk) {
		rc = blk_readv(q->bk.disk, &r->child, r->sub, cnt, host);
	} else {
		r->child.op = r->op;
		r->child.iov = r->sub;
		r->child.iovcnt = cnt;
		r->child.offset = host;
		rc = aio_submit(q->d.aio, backing ? q->bk.fd : q->fd, &r->child);
	}
	if (rc < 0)
		return rc;
	q->busy++;
	return 1;
}

/* Move r along until a child is in flight (1), it is done (0), or -errno. */
static int qreq_step(struct qreq *r)
{
	struct qcow2 *q = r->q;

	while (r->pos < r->len) {
		uint64_t off = r->off + r->pos, left = r->len - r->pos, n, in;
		struct qcow2_map m;
		int rc;

		rc = qcow2_map(q, off, left, &m);
		if (rc < 0)
			return rc;
		n = m.len;
		if (r->op == BLK_OP_WRITE) {
			if (m.kind == QCOW2_K_DATA && m.copied) {
				rc = qcow2_overlap_check(q, m.host, n);
				return rc < 0 ? rc : qreq_submit(r, m.host, n, false);
			}
			in = off & (q->cs - 1);
			n = q->cs - in < left ? q->cs - in : left;
			if (!r->bounce && !(r->bounce = malloc(q->cs)))
				return -ENOMEM;
			iov_copy(r, r->pos, r->bounce, n, false);
			rc = qcow2_cow_write(q, off, r->bounce, n);
			if (rc < 0)
				return rc;
			r->pos += n;
			continue;
		}
		switch (m.kind) {
		case QCOW2_K_UNALLOC:
			if (q->has_backing && off < q->bk.size) {
				if (n > q->bk.size - off)
					n = q->bk.size - off;
				return qreq_submit(r, off, n, true);
			}
			iov_copy(r, r->pos, NULL, n, true); /* no backing data here */
			break;
		case QCOW2_K_ZERO:
			iov_copy(r, r->pos, NULL, n, true);
			break;
		case QCOW2_K_DATA:
			return qreq_submit(r, m.host, n, false);
		case QCOW2_K_COMPRESSED:
			rc = qcow2_decompress(q, m.entry);
			if (rc < 0)
				return rc;
			iov_copy(r, r->pos, q->zbuf + (off & (q->cs - 1)), n, true);
			break;
		}
		r->pos += n;
	}
	return 0;
}

static void qreq_free(struct qreq *r)
{
	free(r->bounce);
	free(r);
}

static void qreq_child_done(struct blk_req *child, int64_t res)
{
	struct qreq *r = child->opaque;
	struct blk_req *parent = r->parent;
	int rc = 0;

	r->q->busy--;
	if (res >= 0) {
		r->pos += r->piece;
		rc = qreq_step(r);
		if (rc == 1)
			return;
		res = rc < 0 ? rc : (int64_t)r->len;
	}
	qreq_free(r);
	parent->done(parent, res);
}

static int qcow2_rw(struct blk_disk *d, struct blk_req *req, enum blk_op op,
                    const struct iovec *iov, int iovcnt, uint64_t off)
{
	struct qcow2 *q = qc(d);
	struct qreq *r;
	uint64_t len;
	int rc;

	rc = iov_total(iov, iovcnt, &len);
	if (rc == 0)
		rc = q_ensure_locked(q);
	if (rc < 0)
		return rc;
	if (op == BLK_OP_WRITE && q->d.readonly)
		return -EROFS;
	if (off > q->h.size || len > q->h.size - off || !req->done)
		return -EINVAL;
	r = calloc(1, sizeof(*r) + (size_t)iovcnt * sizeof(struct iovec));
	if (!r)
		return -ENOMEM;
	r->q = q;
	r->parent = req;
	r->op = op;
	r->iov = iov;
	r->iovcnt = iovcnt;
	r->off = off;
	r->len = len;
	req->op = op;
	req->iov = iov;
	req->iovcnt = iovcnt;
	req->offset = off;
	req->len = len;
	req->flags = 0;
	rc = qreq_step(r);
	if (rc == 1)
		return 0;
	qreq_free(r);
	return aio_complete_req(d->aio, req, rc < 0 ? rc : (int64_t)len);
}

static int drv_readv(struct blk_disk *d, struct blk_req *req, const struct iovec *iov,
                     int iovcnt, uint64_t off)
{
	return qcow2_rw(d, req, BLK_OP_READ, iov, iovcnt, off);
}

static int drv_writev(struct blk_disk *d, struct blk_req *req, const struct iovec *iov,
                      int iovcnt, uint64_t off)
{
	return qcow2_rw(d, req, BLK_OP_WRITE, iov, iovcnt, off);
}

static int drv_flush(struct blk_disk *d, struct blk_req *req)
{
	struct qcow2 *q = qc(d);
	int rc;

	if (!req->done)
		return -EINVAL;
	rc = q_ensure_locked(q);
	if (rc < 0)
		return rc;
	if (q->d.readonly)
		return aio_complete_req(d->aio, req, 0);
	rc = qcow2_meta_flush(q);
	if (rc < 0)
		return aio_complete_req(d->aio, req, rc);
	/* metadata is written; the engine's fdatasync makes it and the data durable */
	req->op = BLK_OP_FLUSH;
	req->iov = NULL;
	req->iovcnt = 0;
	req->offset = 0;
	req->flags = 0;
	return aio_submit(d->aio, q->fd, req);
}

/* Zero or discard [off, off + len): whole clusters through the tables,
 * partial ones written with zeroes (zeroing) or left alone (discard). */
static int range_op(struct qcow2 *q, uint64_t off, uint64_t len, enum qcow2_zmode mode)
{
	uint64_t end = off + len, a = qcow2_round_up(off, q->cs), b = end & ~(q->cs - 1);
	bool discard = mode == QCOW2_Z_DISCARD;
	uint8_t *zero = NULL;
	int rc = 0;

	if (end == q->h.size)
		b = qcow2_round_up(end, q->cs); /* the last cluster is whole up to the disk's end */
	if (a >= b) {
		a = b = end; /* no whole cluster: all of it is partial */
		if (off < end && !discard) {
			zero = calloc(1, q->cs);
			if (!zero)
				return -ENOMEM;
			rc = qcow2_write_sync(q, zero, len, off);
		}
		free(zero);
		return rc;
	}
	if (!discard && (off < a || b < end)) {
		zero = calloc(1, q->cs);
		if (!zero)
			return -ENOMEM;
	}
	if (!discard && off < a)
		rc = qcow2_write_sync(q, zero, a - off, off);
	if (rc == 0)
		rc = qcow2_zero_clusters(q, a, (b < end ? b : end) - a, mode);
	if (rc == 0 && !discard && b < end)
		rc = qcow2_write_sync(q, zero, end - b, b);
	free(zero);
	return rc;
}

static int drv_range(struct blk_disk *d, struct blk_req *req, uint64_t off, uint64_t len,
                     enum qcow2_zmode mode)
{
	struct qcow2 *q = qc(d);
	int rc;

	rc = q_ensure_locked(q);
	if (rc < 0)
		return rc;
	if (q->d.readonly)
		return -EROFS;
	if (off > q->h.size || len > q->h.size - off || !req->done)
		return -EINVAL;
	req->op = mode == QCOW2_Z_DISCARD ? BLK_OP_DISCARD : BLK_OP_WRITE_ZEROES;
	req->iov = NULL;
	req->iovcnt = 0;
	req->offset = off;
	req->len = len;
	rc = len ? range_op(q, off, len, mode) : 0;
	return aio_complete_req(d->aio, req, rc < 0 ? rc : (int64_t)len);
}

static int drv_discard(struct blk_disk *d, struct blk_req *req, uint64_t off, uint64_t len)
{
	return drv_range(d, req, off, len, QCOW2_Z_DISCARD);
}

static int drv_write_zeroes(struct blk_disk *d, struct blk_req *req, uint64_t off, uint64_t len,
                            bool unmap)
{
	return drv_range(d, req, off, len, unmap ? QCOW2_Z_ZERO_UNMAP : QCOW2_Z_ZERO);
}

const struct blk_driver blk_qcow2_driver = {
	.name = "qcow2",
	.open = drv_open,
	.close = drv_close,
	.size = drv_size,
	.readv = drv_readv,
	.writev = drv_writev,
	.flush = drv_flush,
	.discard = drv_discard,
	.write_zeroes = drv_write_zeroes,
	.set_locked = drv_set_locked,
};

/* ---- for cvisor img ---- */

void qcow2_get_info(struct blk_disk *d, struct qcow2_info *info)
{
	struct qcow2 *q = qc(d);

	memset(info, 0, sizeof(*info));
	info->version = q->h.version;
	info->cluster_size = q->cs;
	info->size = q->h.size;
	info->refcount_bits = q->rc_bits;
	info->lazy_refcounts = (q->h.compat & QCOW2_COMPAT_LAZY) != 0;
	info->corrupt = (q->h.incompat & QCOW2_INCOMPAT_CORRUPT) != 0;
	info->dirty = (q->h.incompat & QCOW2_INCOMPAT_DIRTY) != 0;
	info->zstd = q->h.compression == 1;
	info->nb_snapshots = q->h.nb_snapshots;
	info->incompatible = q->h.incompat;
	info->compatible = q->h.compat;
	info->autoclear = q->h.autoclear;
	snprintf(info->backing, sizeof(info->backing), "%s", q->h.backing);
	snprintf(info->backing_fmt, sizeof(info->backing_fmt), "%s", q->h.backing_fmt);
}

int qcow2_block_status(struct blk_disk *d, uint64_t off, uint64_t len, uint64_t *n)
{
	struct qcow2_map m;
	struct qcow2 *q;
	int rc;

	*n = len;
	if (!qcow2_is(d))
		return QCOW2_DATA;
	q = qc(d);
	if (off > q->h.size || len > q->h.size - off || !len)
		return -EINVAL;
	rc = qcow2_map(q, off, len, &m);
	if (rc < 0)
		return rc;
	*n = m.len;
	if (m.kind == QCOW2_K_UNALLOC)
		return QCOW2_UNALLOCATED;
	return m.kind == QCOW2_K_ZERO ? QCOW2_ZERO : QCOW2_DATA;
}

int qcow2_resize(struct blk_disk *d, uint64_t size)
{
	struct qcow2 *q = qc(d);
	uint64_t span = q->cs << q->l2_bits, need, l1c, off = 0, *nl1 = NULL;
	uint64_t old_off = q->h.l1_off, old_c;
	uint8_t *buf = NULL, hb[24];
	int rc;

	if (q->d.readonly)
		return -EROFS;
	if (size < q->h.size || q->h.nb_snapshots)
		return -ENOTSUP; /* snapshots record their own size: keep it simple */
	if (size > QCOW2_MAX_SIZE)
		return -EFBIG;
	need = (size + span - 1) / span;
	if (need * 8 > QCOW2_MAX_L1_BYTES)
		return -EFBIG;
	rc = qcow2_meta_flush(q);
	if (rc < 0)
		return rc;
	old_c = qcow2_round_up((uint64_t)q->h.l1_size * 8, q->cs) >> q->cbits;
	if (need > q->h.l1_size) {
		/* a new, larger L1 table: written and synced before the header points at it */
		l1c = qcow2_round_up(need * 8, q->cs) >> q->cbits;
		nl1 = calloc(need, sizeof(*nl1));
		buf = calloc(l1c, q->cs);
		if (!nl1 || !buf) {
			rc = -ENOMEM;
			goto out;
		}
		rc = qcow2_alloc_contig(q, l1c, &off);
		if (rc == 0)
			rc = qcow2_meta_flush(q);
		if (rc == 0)
			rc = qcow2_sync(q);
		if (rc < 0)
			goto out;
		memcpy(nl1, q->l1, (size_t)q->h.l1_size * 8);
		for (uint64_t i = 0; i < need; i++)
			qcow2_put64(buf + i * 8, nl1[i]);
		rc = qcow2_pwrite(q, buf, l1c * q->cs, off);
		if (rc == 0)
			rc = qcow2_sync(q);
		if (rc < 0)
			goto out;
	} else {
		need = q->h.l1_size;
		off = q->h.l1_off;
	}
	/* size, l1_size and l1_table_offset are next to each other: one write */
	qcow2_put64(hb, size);
	qcow2_put32(hb + 8, q->h.crypt);
	qcow2_put32(hb + 12, (uint32_t)need);
	qcow2_put64(hb + 16, off);
	rc = qcow2_pwrite(q, hb, sizeof(hb), QCOW2_OFF_SIZE);
	if (rc == 0)
		rc = qcow2_sync(q);
	if (rc < 0)
		goto out;
	memcpy(q->h.raw + QCOW2_OFF_SIZE, hb, sizeof(hb));
	q->h.size = size;
	if (nl1) {
		free(q->l1);
		q->l1 = nl1;
		nl1 = NULL;
		q->h.l1_size = (uint32_t)need;
		q->h.l1_off = off;
		for (uint64_t c = 0; c < old_c && rc == 0; c++)
			rc = qcow2_rc_add(q, (old_off >> q->cbits) + c, -1);
		if (rc == 0)
			rc = qcow2_meta_flush(q);
	}
out:
	free(nl1);
	free(buf);
	return rc;
}

int qcow2_set_backing(struct blk_disk *d, const char *backing, const char *fmt)
{
	struct qcow2 *q = qc(d);
	char old[sizeof(q->h.backing)], oldfmt[sizeof(q->h.backing_fmt)];
	int rc;

	if (q->d.readonly)
		return -EROFS;
	if (backing && strlen(backing) > QCOW2_MAX_BACKING_NAME)
		return -ENAMETOOLONG;
	if (backing && backing[0] && (!fmt || strlen(fmt) > QCOW2_MAX_FMT_NAME))
		return -EINVAL;
	rc = qcow2_meta_flush(q);
	if (rc < 0)
		return rc;
	memcpy(old, q->h.backing, sizeof(old));
	memcpy(oldfmt, q->h.backing_fmt, sizeof(oldfmt));
	snprintf(q->h.backing, sizeof(q->h.backing), "%s", backing ? backing : "");
	snprintf(q->h.backing_fmt, sizeof(q->h.backing_fmt), "%s",
	         backing && backing[0] ? fmt : "");
	rc = qcow2_header_rewrite(q);
	if (rc < 0) {
		memcpy(q->h.backing, old, sizeof(old));
		memcpy(q->h.backing_fmt, oldfmt, sizeof(oldfmt));
	}
	return rc;
}

int qcow2_make_empty(struct blk_disk *d)
{
	struct qcow2 *q = qc(d);
	int rc;

	if (q->d.readonly)
		return -EROFS;
	rc = qcow2_zero_clusters(q, 0, q->h.size, QCOW2_Z_UNALLOC);
	if (rc == 0)
		rc = qcow2_meta_flush(q);
	return rc;
}

int qcow2_write_compressed(struct blk_disk *d, uint64_t off, const void *buf)
{
	struct qcow2 *q = qc(d);
	int rc;

	rc = q_ensure_locked(q);
	if (rc < 0)
		return rc;
	if (q->d.readonly)
		return -EROFS;
	if (off % q->cs || off > q->h.size || q->cs > q->h.size - off)
		return -EINVAL;
	return qcow2_compress_write(q, off, buf);
}

struct snap_cb {
	void (*fn)(void *opaque, const struct qcow2_snapshot *s);
	void *opaque;
};

static int snap_one(struct qcow2 *q, void *opaque, uint64_t l1_off, uint32_t l1_size,
                    const struct qcow2_snapshot *s)
{
	struct snap_cb *cb = opaque;

	(void)q;
	(void)l1_off;
	(void)l1_size;
	cb->fn(cb->opaque, s);
	return 0;
}

int qcow2_snapshots(struct blk_disk *d, void (*fn)(void *opaque, const struct qcow2_snapshot *s),
                    void *opaque)
{
	struct snap_cb cb = { fn, opaque };

	return qcow2_snap_walk(qc(d), snap_one, &cb, NULL);
}
