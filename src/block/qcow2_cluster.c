/* qcow2 cluster mapping: the metadata table cache (L2 tables and refcount
 * blocks), guest-to-host lookups through L1/L2 with every entry checked, and
 * the allocating write path (copy-on-write from the backing file, compressed
 * or shared clusters, zero clusters).
 *
 * Order of an allocating write: the new cluster's refcount goes up (in the
 * refcount cache), the data goes to the new cluster, then the L2 entry is
 * changed (in the L2 cache). The caches are written back refcounts first, L2
 * tables after (qcow2_refcount.c), so no table on disk ever points at a
 * cluster whose refcount is not on disk; a crash leaks clusters at worst. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/qcow2_int.h"
#include "util/log.h"

/* ---- file I/O ---- */

static int pread_fd(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0) {
			memset(p, 0, len); /* past the end of the file */
			return 0;
		}
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

int qcow2_pread(struct qcow2 *q, void *buf, size_t len, uint64_t off)
{
	if (off > QCOW2_MAX_HOST_OFF * 2 || len > QCOW2_MAX_HOST_OFF)
		return -EIO;
	return pread_fd(q->fd, buf, len, off);
}

int qcow2_pwrite(struct qcow2 *q, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;
	uint64_t end = off + len;

	if (q->d.readonly)
		return -EROFS;
	if (off > QCOW2_MAX_HOST_OFF * 2 || len > QCOW2_MAX_HOST_OFF)
		return -EIO;
	while (len) {
		ssize_t n = pwrite(q->fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	if (end > q->file_end)
		q->file_end = end;
	end = qcow2_round_up(end, q->cs);
	if (end > q->zero_from)
		q->zero_from = end;
	return 0;
}

int qcow2_sync(struct qcow2 *q)
{
	if (q->d.readonly)
		return 0;
	if (fdatasync(q->fd) < 0)
		return -errno;
	q->unsynced = false;
	q->unsynced_rb = false;
	return 0;
}

int qcow2_corrupt(struct qcow2 *q, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (q->corrupt)
		return -EIO;
	q->corrupt = true;
	if (q->d.readonly) {
		log_warn("qcow2 %s: %s", q->path, msg);
		return -EIO;
	}
	log_error("qcow2 %s: %s; marking the image corrupt (read-only from now on)", q->path, msg);
	/* v2 has no corrupt bit: the image only stops taking writes */
	if (q->h.version >= 3)
		qcow2_header_write_incompat(q, q->h.incompat | QCOW2_INCOMPAT_CORRUPT);
	q->d.readonly = true;
	return -EIO;
}

/* ---- the metadata cache ---- */

int qcow2_cache_init(struct qcow2_cache *c, unsigned n, bool is_l2)
{
	c->e = calloc(n, sizeof(*c->e));
	if (!c->e)
		return -ENOMEM;
	c->n = n;
	c->is_l2 = is_l2;
	c->tick = 0;
	return 0;
}

void qcow2_cache_free(struct qcow2_cache *c)
{
	for (unsigned i = 0; c->e && i < c->n; i++)
		free(c->e[i].buf);
	free(c->e);
	c->e = NULL;
	c->n = 0;
}

static int cache_write(struct qcow2 *q, struct qcow2_cache *c, struct qcow2_cent *e)
{
	int rc;

	if (c->is_l2) {
		/* the refcounts of what this table points at go first */
		rc = qcow2_order_l2(q);
		if (rc < 0)
			return rc;
	}
	rc = qcow2_pwrite(q, e->buf, q->cs, e->off);
	if (rc < 0)
		return rc;
	q->unsynced = true;
	if (!c->is_l2)
		q->unsynced_rb = true;
	e->dirty = false;
	return 0;
}

int qcow2_cache_get(struct qcow2 *q, struct qcow2_cache *c, uint64_t off, bool fresh,
                    struct qcow2_cent **out)
{
	struct qcow2_cent *v = NULL;
	int rc;

	if (!off)
		return -EIO; /* the header is no table (and 0 marks empty slots) */
	for (unsigned i = 0; i < c->n; i++) {
		struct qcow2_cent *e = &c->e[i];

		if (e->off == off) {
			e->lru = ++c->tick;
			if (fresh)
				memset(e->buf, 0, q->cs);
			*out = e;
			return 0;
		}
		if (!v || (v->off && (!e->off || e->lru < v->lru)))
			v = e;
	}
	if (v->off && v->dirty) {
		rc = cache_write(q, c, v);
		if (rc < 0)
			return rc;
	}
	v->off = 0;
	v->dirty = false;
	if (!v->buf) {
		v->buf = malloc(q->cs);
		if (!v->buf)
			return -ENOMEM;
	}
	if (fresh) {
		memset(v->buf, 0, q->cs);
	} else {
		rc = qcow2_pread(q, v->buf, q->cs, off);
		if (rc < 0)
			return rc;
	}
	v->off = off;
	v->lru = ++c->tick;
	*out = v;
	return 0;
}

int qcow2_cache_flush(struct qcow2 *q, struct qcow2_cache *c, bool *wrote)
{
	if (wrote)
		*wrote = false;
	for (unsigned i = 0; i < c->n; i++) {
		struct qcow2_cent *e = &c->e[i];
		int rc;

		if (!e->off || !e->dirty)
			continue;
		rc = cache_write(q, c, e);
		if (rc < 0)
			return rc;
		if (wrote)
			*wrote = true;
	}
	return 0;
}

void qcow2_cache_drop(struct qcow2_cache *c, uint64_t off)
{
	for (unsigned i = 0; i < c->n; i++) {
		if (c->e[i].off == off) {
			c->e[i].off = 0;
			c->e[i].dirty = false;
		}
	}
}

/* ---- checking entries ---- */

int qcow2_l1_check(struct qcow2 *q, uint64_t e, uint64_t *l2)
{
	uint64_t off = e & QCOW2_OFF_MASK;

	*l2 = 0;
	if (e & QCOW2_L1_RESERVED)
		return qcow2_corrupt(q, "L1 entry 0x%llx has reserved bits set", (unsigned long long)e);
	if (!off)
		return 0;
	if (off % q->cs || off < q->cs || off >= q->file_end)
		return qcow2_corrupt(q, "L2 table offset 0x%llx is invalid", (unsigned long long)off);
	*l2 = off;
	return 0;
}

int qcow2_l2_classify(struct qcow2 *q, uint64_t e, enum qcow2_kind *kind, uint64_t *host)
{
	*host = 0;
	if (e & QCOW2_COMPRESSED) {
		uint64_t off, len;

		qcow2_compressed_range(q, e, &off, &len);
		if ((e & QCOW2_COPIED) || off < q->cs || off >= q->file_end ||
		    off >= QCOW2_MAX_HOST_OFF)
			return qcow2_corrupt(q, "compressed cluster entry 0x%llx is invalid",
			                     (unsigned long long)e);
		*kind = QCOW2_K_COMPRESSED;
		return 0;
	}
	if (e & QCOW2_L2_RESERVED)
		return qcow2_corrupt(q, "L2 entry 0x%llx has reserved bits set", (unsigned long long)e);
	*host = e & QCOW2_OFF_MASK;
	if (*host && (*host % q->cs || *host < q->cs || *host >= q->file_end))
		return qcow2_corrupt(q, "data cluster offset 0x%llx is invalid",
		                     (unsigned long long)*host);
	if (e & QCOW2_ZERO_FLAG) {
		if (q->h.version < 3)
			return qcow2_corrupt(q, "zero cluster in a version 2 image");
		*kind = QCOW2_K_ZERO;
		return 0;
	}
	if (!*host) {
		if (e & QCOW2_COPIED)
			return qcow2_corrupt(q, "L2 entry 0x%llx has no offset", (unsigned long long)e);
		*kind = QCOW2_K_UNALLOC;
		return 0;
	}
	*kind = QCOW2_K_DATA;
	return 0;
}

int qcow2_map(struct qcow2 *q, uint64_t off, uint64_t len, struct qcow2_map *m)
{
	uint64_t l1i = off >> (q->cbits + q->l2_bits);
	uint64_t ci = (off >> q->cbits) & (q->l2_entries - 1);
	uint64_t in = off & (q->cs - 1);
	uint64_t max = (q->l2_entries - ci) * q->cs - in, n, l2, host0;
	struct qcow2_cent *ent;
	enum qcow2_kind kind;
	int rc;

	if (len < max)
		max = len;
	memset(m, 0, sizeof(*m));
	if (l1i >= q->h.l1_size)
		return qcow2_corrupt(q, "guest offset beyond the L1 table");
	rc = qcow2_l1_check(q, q->l1[l1i], &l2);
	if (rc < 0)
		return rc;
	if (!l2) {
		m->kind = QCOW2_K_UNALLOC;
		m->len = max;
		return 0;
	}
	rc = qcow2_cache_get(q, &q->l2c, l2, false, &ent);
	if (rc < 0)
		return rc;
	m->entry = qcow2_be64(ent->buf + ci * 8);
	rc = qcow2_l2_classify(q, m->entry, &m->kind, &host0);
	if (rc < 0)
		return rc;
	/* in place only when both the table and the cluster are ours alone */
	m->copied = (m->entry & QCOW2_COPIED) && (q->l1[l1i] & QCOW2_COPIED);
	m->host = m->kind == QCOW2_K_DATA ? host0 + in : 0;
	n = q->cs - in;
	if (m->kind == QCOW2_K_COMPRESSED)
		goto out;
	for (uint64_t j = ci + 1; n < max; j++) {
		uint64_t e = qcow2_be64(ent->buf + j * 8), host;

		rc = qcow2_l2_classify(q, e, &kind, &host);
		if (rc < 0)
			return rc;
		if (kind != m->kind)
			break;
		if (kind == QCOW2_K_DATA &&
		    (host != host0 + (j - ci) * q->cs ||
		     (m->entry & QCOW2_COPIED) != (e & QCOW2_COPIED)))
			break;
		n += q->cs;
	}
out:
	m->len = n < max ? n : max;
	return 0;
}

int qcow2_overlap_check(struct qcow2 *q, uint64_t host, uint64_t len)
{
	uint64_t l1_bytes = qcow2_round_up((uint64_t)q->h.l1_size * 8, q->cs);
	uint64_t rt_bytes = (uint64_t)q->h.rt_clusters * q->cs;
	bool bad = host < q->cs;

#define OVL(a, alen) ((alen) && host < (a) + (alen) && (a) < host + len)
	bad = bad || OVL(q->h.l1_off, l1_bytes) || OVL(q->h.rt_off, rt_bytes);
	if (q->h.nb_snapshots)
		bad = bad || OVL(q->h.snap_off, qcow2_round_up(q->snap_len, q->cs));
	for (unsigned i = 0; !bad && i < q->l2c.n; i++)
		bad = q->l2c.e[i].off && OVL(q->l2c.e[i].off, q->cs);
	for (unsigned i = 0; !bad && i < q->rbc.n; i++)
		bad = q->rbc.e[i].off && OVL(q->rbc.e[i].off, q->cs);
#undef OVL
	if (bad)
		return qcow2_corrupt(q, "a data write to 0x%llx would overwrite metadata",
		                     (unsigned long long)host);
	return 0;
}

/* ---- allocating writes ---- */

void qcow2_l1_set(struct qcow2 *q, uint64_t i, uint64_t v)
{
	q->l1[i] = v;
	if (q->l1_dirty_lo >= q->l1_dirty_hi) {
		q->l1_dirty_lo = (uint32_t)i;
		q->l1_dirty_hi = (uint32_t)i + 1;
	} else {
		if (i < q->l1_dirty_lo)
			q->l1_dirty_lo = (uint32_t)i;
		if (i + 1 > q->l1_dirty_hi)
			q->l1_dirty_hi = (uint32_t)i + 1;
	}
}

/* A copy of the shared L2 table at old in the fresh cluster nl2: the data
 * clusters keep their references (both tables point at them), and an entry
 * keeps COPIED only if its cluster's refcount really is one. */
static int l2_copy(struct qcow2 *q, uint64_t old, uint64_t nl2)
{
	struct qcow2_cent *ent;
	uint8_t *tmp = malloc(q->cs);
	int rc;

	if (!tmp)
		return -ENOMEM;
	rc = qcow2_cache_get(q, &q->l2c, old, false, &ent);
	if (rc == 0) {
		memcpy(tmp, ent->buf, q->cs);
		rc = qcow2_overlap_check(q, nl2, q->cs);
	}
	for (uint64_t j = 0; rc == 0 && j < q->l2_entries; j++) {
		uint64_t e = qcow2_be64(tmp + j * 8), host = e & QCOW2_OFF_MASK, v;

		if (!(e & QCOW2_COPIED) || (e & QCOW2_COMPRESSED))
			continue;
		rc = qcow2_rc_get(q, host >> q->cbits, &v);
		if (rc == 0 && (v != 1 || !host))
			qcow2_put64(tmp + j * 8, e & ~QCOW2_COPIED);
	}
	if (rc == 0)
		rc = qcow2_cache_get(q, &q->l2c, nl2, true, &ent);
	if (rc == 0) {
		memcpy(ent->buf, tmp, q->cs);
		ent->dirty = true;
	}
	free(tmp);
	return rc;
}

/* The L2 table for guest L1 index l1i, made writable: allocated if there is
 * none, copied if it is shared (with a snapshot). */
static int l2_for_write(struct qcow2 *q, uint64_t l1i, uint64_t *out)
{
	struct qcow2_cent *ent;
	uint64_t l2, rc64, nl2;
	int rc;

	if (l1i >= q->h.l1_size)
		return qcow2_corrupt(q, "guest offset beyond the L1 table");
	rc = qcow2_l1_check(q, q->l1[l1i], &l2);
	if (rc < 0)
		return rc;
	if (l2 && (q->l1[l1i] & QCOW2_COPIED)) {
		*out = l2;
		return 0;
	}
	if (l2) {
		rc = qcow2_rc_get(q, l2 >> q->cbits, &rc64);
		if (rc < 0)
			return rc;
		if (rc64 == 0)
			return qcow2_corrupt(q, "L2 table 0x%llx has refcount 0",
			                     (unsigned long long)l2);
		if (rc64 == 1) {
			/* ours alone (the flag was lost): take it back */
			qcow2_l1_set(q, l1i, l2 | QCOW2_COPIED);
			*out = l2;
			return 0;
		}
	}
	rc = qcow2_alloc(q, &nl2);
	if (rc < 0)
		return rc;
	if (l2)
		rc = l2_copy(q, l2, nl2);
	else
		rc = qcow2_cache_get(q, &q->l2c, nl2, true, &ent);
	if (rc == 0 && !l2)
		ent->dirty = true;
	if (rc < 0) {
		qcow2_cache_drop(&q->l2c, nl2);
		qcow2_rc_add(q, nl2 >> q->cbits, -1);
		return rc;
	}
	qcow2_l1_set(q, l1i, nl2 | QCOW2_COPIED);
	*out = nl2;
	/* the shared table loses this reference once the new L1 entry is on disk */
	return l2 ? qcow2_free_later(q, l2) : 0;
}

/* Point the L2 entry of guest offset off (its table at l2) at v. */
static int l2_set(struct qcow2 *q, uint64_t l2, uint64_t off, uint64_t v)
{
	uint64_t ci = (off >> q->cbits) & (q->l2_entries - 1);
	struct qcow2_cent *ent;
	int rc;

	rc = qcow2_cache_get(q, &q->l2c, l2, false, &ent);
	if (rc < 0)
		return rc;
	qcow2_put64(ent->buf + ci * 8, v);
	ent->dirty = true;
	return 0;
}

/* The current entry of guest offset off in the table at l2. */
static int l2_get(struct qcow2 *q, uint64_t l2, uint64_t off, uint64_t *e)
{
	uint64_t ci = (off >> q->cbits) & (q->l2_entries - 1);
	struct qcow2_cent *ent;
	int rc;

	rc = qcow2_cache_get(q, &q->l2c, l2, false, &ent);
	if (rc < 0)
		return rc;
	*e = qcow2_be64(ent->buf + ci * 8);
	return 0;
}

/* The clusters an entry held lose its reference once the new entry is on disk. */
static int release_entry(struct qcow2 *q, uint64_t e, enum qcow2_kind kind, uint64_t host)
{
	int rc = 0;

	if (kind == QCOW2_K_COMPRESSED) {
		uint64_t off, len;

		qcow2_compressed_range(q, e, &off, &len);
		for (uint64_t c = off & ~(q->cs - 1); c < off + len && rc == 0; c += q->cs)
			rc = qcow2_free_later(q, c);
		return rc;
	}
	if (host)
		rc = qcow2_free_later(q, host);
	return rc;
}

int qcow2_backing_read(struct qcow2 *q, uint8_t *buf, uint64_t n, uint64_t off)
{
	uint64_t have = 0;
	int rc = 0;

	if (q->has_backing && off < q->bk.size) {
		have = q->bk.size - off < n ? q->bk.size - off : n;
		if (q->bk.disk)
			rc = qcow2_read_sync((struct qcow2 *)q->bk.disk, buf, have, off);
		else
			rc = pread_fd(q->bk.fd, buf, have, off);
		if (rc < 0)
			return rc;
	}
	memset(buf + have, 0, n - have);
	return 0;
}

int qcow2_cow_write(struct qcow2 *q, uint64_t off, const uint8_t *src, uint64_t n)
{
	uint64_t gc = off & ~(q->cs - 1), in = off - gc, l2, e, host, nh;
	bool full = in == 0 && n == q->cs, old_zero = false;
	enum qcow2_kind kind;
	uint8_t *buf = NULL;
	int rc;

	if (q->d.readonly)
		return -EROFS;
	rc = qcow2_mark_dirty(q);
	if (rc < 0)
		return rc;
	rc = l2_for_write(q, off >> (q->cbits + q->l2_bits), &l2);
	if (rc < 0)
		return rc;
	rc = l2_get(q, l2, off, &e);
	if (rc == 0)
		rc = qcow2_l2_classify(q, e, &kind, &host);
	if (rc < 0)
		return rc;
	if ((kind == QCOW2_K_DATA || kind == QCOW2_K_ZERO) && host && (e & QCOW2_COPIED)) {
		/* ours alone: write in place (a preallocated zero cluster gets its zeroes) */
		rc = qcow2_overlap_check(q, host, q->cs);
		if (rc < 0)
			return rc;
		if (kind == QCOW2_K_DATA)
			return qcow2_pwrite(q, src, n, host + in);
		buf = calloc(1, q->cs);
		if (!buf)
			return -ENOMEM;
		memcpy(buf + in, src, n);
		rc = qcow2_pwrite(q, buf, q->cs, host);
		free(buf);
		if (rc < 0)
			return rc;
		return l2_set(q, l2, off, host | QCOW2_COPIED);
	}
	if (!full) {
		/* what the rest of the cluster holds now */
		buf = malloc(q->cs);
		if (!buf)
			return -ENOMEM;
		switch (kind) {
		case QCOW2_K_UNALLOC:
			old_zero = !q->has_backing || gc >= q->bk.size;
			rc = qcow2_backing_read(q, buf, q->cs, gc);
			break;
		case QCOW2_K_ZERO:
			old_zero = true;
			memset(buf, 0, q->cs);
			break;
		case QCOW2_K_COMPRESSED:
			rc = qcow2_decompress(q, e);
			if (rc == 0)
				memcpy(buf, q->zbuf, q->cs);
			break;
		case QCOW2_K_DATA:
			rc = qcow2_pread(q, buf, q->cs, host);
			break;
		}
		if (rc < 0)
			goto out;
		memcpy(buf + in, src, n);
	}
	rc = qcow2_alloc(q, &nh);
	if (rc < 0)
		goto out;
	rc = qcow2_overlap_check(q, nh, q->cs);
	if (rc < 0)
		goto out;
	if (full)
		rc = qcow2_pwrite(q, src, q->cs, nh);
	else if (old_zero && nh >= q->zero_from)
		rc = qcow2_pwrite(q, src, n, nh + in); /* the rest of a new cluster reads zero */
	else
		rc = qcow2_pwrite(q, buf, q->cs, nh);
	if (rc == 0) {
		if (nh + q->cs > q->zero_from)
			q->zero_from = nh + q->cs;
		rc = l2_set(q, l2, off, nh | QCOW2_COPIED);
	}
	if (rc < 0) {
		qcow2_rc_add(q, nh >> q->cbits, -1); /* nothing points at it */
		goto out;
	}
	rc = release_entry(q, e, kind, host);
out:
	free(buf);
	return rc;
}

int qcow2_l2_replace(struct qcow2 *q, uint64_t off, uint64_t v)
{
	enum qcow2_kind kind;
	uint64_t l2, e, host;
	int rc;

	rc = l2_for_write(q, off >> (q->cbits + q->l2_bits), &l2);
	if (rc == 0)
		rc = l2_get(q, l2, off, &e);
	if (rc == 0)
		rc = qcow2_l2_classify(q, e, &kind, &host);
	if (rc == 0)
		rc = l2_set(q, l2, off, v);
	if (rc == 0)
		rc = release_entry(q, e, kind, host);
	return rc;
}

int qcow2_zero_clusters(struct qcow2 *q, uint64_t off, uint64_t len, enum qcow2_zmode mode)
{
	uint64_t end = off + len, span = q->cs << q->l2_bits;
	uint8_t *zero = NULL;
	int rc = 0;

	if (q->d.readonly)
		return -EROFS;
	rc = qcow2_mark_dirty(q);
	if (rc < 0)
		return rc;
	for (uint64_t g = off; g < end && rc == 0; g += q->cs) {
		uint64_t l1i = g >> (q->cbits + q->l2_bits), l2, e = 0, host = 0, v;
		enum qcow2_kind kind = QCOW2_K_UNALLOC;

		rc = qcow2_l1_check(q, l1i < q->h.l1_size ? q->l1[l1i] : 0, &l2);
		if (rc < 0)
			break;
		if (l2) {
			rc = l2_get(q, l2, g, &e);
			if (rc == 0)
				rc = qcow2_l2_classify(q, e, &kind, &host);
			if (rc < 0)
				break;
		} else if (mode == QCOW2_Z_UNALLOC || mode == QCOW2_Z_DISCARD || !q->has_backing) {
			/* no table: nothing to free, and it already reads as wanted */
			uint64_t next = (g & ~(span - 1)) + span;

			g = (next < end ? next : end) - q->cs;
			continue;
		}
		if (q->h.version < 3 && q->has_backing &&
		    (mode == QCOW2_Z_ZERO || mode == QCOW2_Z_ZERO_UNMAP)) {
			/* no zero flag in v2: zeroes must be written over the backing data */
			uint64_t n = end - g < q->cs ? end - g : q->cs;

			if (!zero && !(zero = calloc(1, q->cs))) {
				rc = -ENOMEM;
				break;
			}
			rc = qcow2_write_sync(q, zero, n, g);
			continue;
		}
		switch (mode) {
		case QCOW2_Z_ZERO:
			v = q->h.version >= 3 ? QCOW2_ZERO_FLAG : 0;
			if (v && host && (e & QCOW2_COPIED) && (q->l1[l1i] & QCOW2_COPIED) &&
			    (kind == QCOW2_K_DATA || kind == QCOW2_K_ZERO))
				v |= host | QCOW2_COPIED; /* keep the cluster for the next write */
			break;
		case QCOW2_Z_ZERO_UNMAP:
			v = q->h.version >= 3 ? QCOW2_ZERO_FLAG : 0;
			break;
		case QCOW2_Z_DISCARD:
			v = q->h.version >= 3 && q->has_backing ? QCOW2_ZERO_FLAG : 0;
			break;
		default:
			v = 0;
			break;
		}
		if (v == e || (kind == QCOW2_K_UNALLOC && v == 0))
			continue;
		if (!l2 || !(q->l1[l1i] & QCOW2_COPIED)) {
			rc = l2_for_write(q, l1i, &l2);
			if (rc < 0)
				break;
		}
		rc = l2_set(q, l2, g, v);
		if (rc == 0 && ((v & QCOW2_OFF_MASK) != host || kind == QCOW2_K_COMPRESSED))
			rc = release_entry(q, e, kind, host);
	}
	free(zero);
	return rc;
}

/* ---- synchronous guest I/O ---- */

int qcow2_read_sync(struct qcow2 *q, uint8_t *buf, uint64_t len, uint64_t off)
{
	while (len) {
		struct qcow2_map m;
		uint64_t n, in;
		int rc;

		rc = qcow2_map(q, off, len, &m);
		if (rc < 0)
			return rc;
		n = m.len;
		switch (m.kind) {
		case QCOW2_K_UNALLOC:
			rc = qcow2_backing_read(q, buf, n, off);
			break;
		case QCOW2_K_ZERO:
			memset(buf, 0, n);
			break;
		case QCOW2_K_DATA:
			rc = qcow2_pread(q, buf, n, m.host);
			break;
		case QCOW2_K_COMPRESSED:
			rc = qcow2_decompress(q, m.entry);
			in = off & (q->cs - 1);
			if (rc == 0)
				memcpy(buf, q->zbuf + in, n);
			break;
		}
		if (rc < 0)
			return rc;
		buf += n;
		off += n;
		len -= n;
	}
	return 0;
}

int qcow2_write_sync(struct qcow2 *q, const uint8_t *buf, uint64_t len, uint64_t off)
{
	if (q->d.readonly)
		return -EROFS;
	while (len) {
		struct qcow2_map m;
		uint64_t n;
		int rc;

		rc = qcow2_map(q, off, len, &m);
		if (rc < 0)
			return rc;
		if (m.kind == QCOW2_K_DATA && m.copied) {
			n = m.len;
			rc = qcow2_overlap_check(q, m.host, n);
			if (rc == 0)
				rc = qcow2_pwrite(q, buf, n, m.host);
		} else {
			n = q->cs - (off & (q->cs - 1));
			if (n > len)
				n = len;
			rc = qcow2_cow_write(q, off, buf, n);
		}
		if (rc < 0)
			return rc;
		buf += n;
		off += n;
		len -= n;
	}
	return 0;
}
