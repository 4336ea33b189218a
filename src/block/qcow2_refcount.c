/* qcow2 refcounts: entries of any width (refcount_order 0 to 6), cluster
 * allocation (new refcount blocks, a growing refcount table), reference
 * drops deferred until the tables that held the reference are on disk, and
 * the ordered write-back of all metadata.
 *
 * The rules that keep a crashed image free of anything worse than leaks:
 *  - a refcount goes up on disk before any table pointing at the cluster
 *    (refcount blocks are written, and synced, before L2 tables; L2 tables
 *    before the L1 table);
 *  - a refcount goes down only after the tables that dropped the reference
 *    are on disk (qcow2_free_later, applied by qcow2_meta_flush);
 *  - a new refcount block is on disk before the refcount table points at it,
 *    a new refcount table before the header does.
 * With lazy refcounts the dirty bit is set instead, and the ordering waived. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/qcow2_int.h"

uint64_t qcow2_rb_get(const uint8_t *b, uint32_t order, uint64_t idx)
{
	uint32_t bits = 1u << order;

	switch (order) {
	case 3:
		return b[idx];
	case 4:
		return qcow2_be16(b + idx * 2);
	case 5:
		return qcow2_be32(b + idx * 4);
	case 6:
		return qcow2_be64(b + idx * 8);
	default: /* sub-byte: bit 0 is the least significant bit of its byte */
		return (uint64_t)(b[idx * bits / 8] >> (idx * bits % 8)) & ((1u << bits) - 1);
	}
}

void qcow2_rb_set(uint8_t *b, uint32_t order, uint64_t idx, uint64_t v)
{
	uint32_t bits = 1u << order, shift, mask;

	switch (order) {
	case 3:
		b[idx] = (uint8_t)v;
		break;
	case 4:
		qcow2_put16(b + idx * 2, (uint16_t)v);
		break;
	case 5:
		qcow2_put32(b + idx * 4, (uint32_t)v);
		break;
	case 6:
		qcow2_put64(b + idx * 8, v);
		break;
	default:
		shift = (uint32_t)(idx * bits % 8);
		mask = ((1u << bits) - 1) << shift;
		b[idx * bits / 8] = (uint8_t)((b[idx * bits / 8] & ~mask) | ((v << shift) & mask));
		break;
	}
}

/* The refcount block covering table index ti (checked), 0 when none. */
static int rb_offset(struct qcow2 *q, uint64_t ti, uint64_t *off)
{
	uint64_t o;

	*off = 0;
	if (ti >= q->rt_entries)
		return 0;
	o = q->rt[ti];
	if (!o)
		return 0;
	if (o % q->cs || o < q->cs || o >= q->file_end || o >= QCOW2_MAX_HOST_OFF)
		return qcow2_corrupt(q, "refcount block offset 0x%llx is invalid",
		                     (unsigned long long)o);
	*off = o;
	return 0;
}

int qcow2_rc_get(struct qcow2 *q, uint64_t idx, uint64_t *rc)
{
	struct qcow2_cent *ent;
	uint64_t off;
	int r;

	*rc = 0;
	r = rb_offset(q, idx >> q->rb_bits, &off);
	if (r < 0 || !off)
		return r;
	r = qcow2_cache_get(q, &q->rbc, off, false, &ent);
	if (r < 0)
		return r;
	*rc = qcow2_rb_get(ent->buf, q->h.refcount_order, idx & ((1ULL << q->rb_bits) - 1));
	return 0;
}

int qcow2_rc_add(struct qcow2 *q, uint64_t idx, int64_t delta)
{
	uint64_t sub = idx & ((1ULL << q->rb_bits) - 1), off, v;
	struct qcow2_cent *ent;
	int r;

	r = rb_offset(q, idx >> q->rb_bits, &off);
	if (r < 0)
		return r;
	if (!off)
		return delta > 0 ? -EIO : qcow2_corrupt(q, "refcount of a free cluster dropped");
	r = qcow2_cache_get(q, &q->rbc, off, false, &ent);
	if (r < 0)
		return r;
	v = qcow2_rb_get(ent->buf, q->h.refcount_order, sub);
	if (delta < 0 && v < (uint64_t)-delta)
		return qcow2_corrupt(q, "refcount of cluster %llu would drop below zero",
		                     (unsigned long long)idx);
	if (delta > 0 && q->rc_max - v < (uint64_t)delta)
		return -ERANGE; /* the refcount width cannot count this many references */
	v += (uint64_t)delta;
	qcow2_rb_set(ent->buf, q->h.refcount_order, sub, v);
	ent->dirty = true;
	if (v == 0 && idx < q->free_hint)
		q->free_hint = idx;
	if (v == 0 && q->cfree && idx == q->cfree >> q->cbits)
		q->cfree = 0; /* compressed writes no longer own the rest of it */
	return 0;
}

int qcow2_mark_dirty(struct qcow2 *q)
{
	if (!q->lazy || q->dirty_on_disk)
		return 0;
	q->dirty_on_disk = true;
	return qcow2_header_write_incompat(q, q->h.incompat | QCOW2_INCOMPAT_DIRTY);
}

int qcow2_order_l2(struct qcow2 *q)
{
	int rc;

	if (q->lazy)
		return 0;
	rc = qcow2_cache_flush(q, &q->rbc, NULL);
	if (rc == 0 && q->unsynced_rb)
		rc = qcow2_sync(q);
	return rc;
}

/* A new refcount block for table index ti at the free cluster idx (inside
 * the range it covers, so it counts itself): written, synced, then hooked
 * into the table. */
static int rb_create(struct qcow2 *q, uint64_t ti, uint64_t idx)
{
	uint64_t off = idx << q->cbits;
	struct qcow2_cent *ent;
	uint8_t e[8];
	int rc;

	rc = qcow2_cache_get(q, &q->rbc, off, true, &ent);
	if (rc < 0)
		return rc;
	qcow2_rb_set(ent->buf, q->h.refcount_order, idx & ((1ULL << q->rb_bits) - 1), 1);
	ent->dirty = false;
	rc = qcow2_pwrite(q, ent->buf, q->cs, off);
	if (rc == 0 && !q->lazy)
		rc = qcow2_sync(q);
	if (rc < 0) {
		qcow2_cache_drop(&q->rbc, off);
		return rc;
	}
	qcow2_put64(e, off);
	rc = qcow2_pwrite(q, e, 8, q->h.rt_off + ti * 8);
	if (rc < 0) {
		qcow2_cache_drop(&q->rbc, off);
		return rc;
	}
	q->rt[ti] = off;
	q->unsynced = q->unsynced_rb = true;
	return 0;
}

/* Write rtc clusters of refcount table (entries, n of them) at off, sync,
 * and point the header at it. */
static int rt_install(struct qcow2 *q, const uint64_t *entries, uint64_t n, uint64_t off,
                      uint64_t rtc)
{
	uint64_t bytes = rtc * q->cs;
	uint8_t *buf = calloc(1, bytes), hb[12];
	int rc;

	if (!buf)
		return -ENOMEM;
	for (uint64_t i = 0; i < n; i++)
		qcow2_put64(buf + i * 8, entries[i]);
	rc = qcow2_pwrite(q, buf, bytes, off);
	free(buf);
	if (rc == 0)
		rc = qcow2_sync(q);
	if (rc < 0)
		return rc;
	qcow2_put64(hb, off);
	qcow2_put32(hb + 8, (uint32_t)rtc);
	rc = qcow2_pwrite(q, hb, sizeof(hb), QCOW2_OFF_RT_OFF);
	if (rc == 0)
		rc = qcow2_sync(q);
	if (rc < 0)
		return rc;
	memcpy(q->h.raw + QCOW2_OFF_RT_OFF, hb, sizeof(hb));
	q->h.rt_off = off;
	q->h.rt_clusters = (uint32_t)rtc;
	return 0;
}

/* The first cluster index past every cluster in use and every one covered. */
static uint64_t end_cluster(struct qcow2 *q)
{
	uint64_t e = qcow2_round_up(q->file_end, q->cs) >> q->cbits;
	uint64_t covered = q->rt_entries << q->rb_bits;

	return e > covered ? e : covered;
}

/* The refcount table is full: a larger one, with refcount blocks for the
 * clusters it and they occupy, goes past the end of everything. */
static int rt_grow(struct qcow2 *q)
{
	uint64_t E = 1ULL << q->rb_bits, S = end_cluster(q), g0 = S / E;
	uint64_t old_off = q->h.rt_off, old_rtc = q->h.rt_clusters;
	uint64_t ne = q->rt_entries * 2, nt = 0, nb = 1;
	uint64_t *nrt = NULL;
	uint8_t *blk = NULL;
	int rc;

	/* table at [S, S + nt), blocks right after it, covering groups g0 .. g0 + nb */
	for (;;) {
		uint64_t t, b;

		if (ne < g0 + nb)
			ne = g0 + nb;
		t = qcow2_round_up(ne * 8, q->cs) >> q->cbits;
		b = (S + t + nb - g0 * E + E - 1) / E;
		if (t == nt && b == nb)
			break;
		nt = t;
		nb = b;
	}
	ne = (nt << q->cbits) / 8;
	if ((nt << q->cbits) > QCOW2_MAX_RT_BYTES || ((S + nt + nb) << q->cbits) > QCOW2_MAX_HOST_OFF)
		return -ENOSPC;
	nrt = calloc(ne, sizeof(*nrt));
	blk = malloc(q->cs);
	if (!nrt || !blk) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(nrt, q->rt, q->rt_entries * sizeof(*nrt));
	for (uint64_t k = 0; k < nb; k++) {
		memset(blk, 0, q->cs);
		for (uint64_t i = 0; i < E; i++) {
			uint64_t c = (g0 + k) * E + i;

			if (c >= S && c < S + nt + nb)
				qcow2_rb_set(blk, q->h.refcount_order, i, 1);
		}
		nrt[g0 + k] = (S + nt + k) << q->cbits;
		rc = qcow2_pwrite(q, blk, q->cs, nrt[g0 + k]);
		if (rc < 0)
			goto out;
	}
	rc = rt_install(q, nrt, ne, S << q->cbits, nt);
	if (rc < 0)
		goto out;
	free(q->rt);
	q->rt = nrt;
	q->rt_entries = ne;
	nrt = NULL;
	/* nothing points at the old table now */
	for (uint64_t c = 0; c < old_rtc && rc == 0; c++)
		rc = qcow2_rc_add(q, (old_off >> q->cbits) + c, -1);
out:
	free(nrt);
	free(blk);
	return rc;
}

/* Find the first free cluster at or after the hint and take it. */
static int alloc_scan(struct qcow2 *q, uint64_t *out)
{
	uint64_t idx = q->free_hint ? q->free_hint : 1, v; /* cluster 0 is the header */
	int rc;

	for (;;) {
		uint64_t ti = idx >> q->rb_bits, rbo;

		if ((idx + 1) << q->cbits > QCOW2_MAX_HOST_OFF)
			return -ENOSPC;
		if (ti >= q->rt_entries) {
			rc = rt_grow(q);
			if (rc < 0)
				return rc;
			continue;
		}
		rc = rb_offset(q, ti, &rbo);
		if (rc < 0)
			return rc;
		if (!rbo) {
			/* refcounts that call metadata free are lies: stop there */
			rc = qcow2_overlap_check(q, idx << q->cbits, q->cs);
			if (rc == 0)
				rc = rb_create(q, ti, idx);
			if (rc < 0)
				return rc;
			idx++;
			continue;
		}
		rc = qcow2_rc_get(q, idx, &v);
		if (rc < 0)
			return rc;
		if (v == 0)
			break;
		idx++;
	}
	rc = qcow2_overlap_check(q, idx << q->cbits, q->cs);
	if (rc == 0)
		rc = qcow2_rc_add(q, idx, 1);
	if (rc < 0)
		return rc;
	*out = idx;
	return 0;
}

int qcow2_alloc(struct qcow2 *q, uint64_t *off)
{
	uint64_t start = q->free_hint, idx = 0;
	int rc;

	rc = qcow2_mark_dirty(q);
	if (rc < 0)
		return rc;
	/* clusters freed while scanning (the old refcount table) lower the hint */
	rc = alloc_scan(q, &idx);
	if (rc < 0) {
		if (q->free_hint > start)
			q->free_hint = start;
		return rc;
	}
	if (q->free_hint == start || q->free_hint > idx)
		q->free_hint = idx + 1;
	*off = idx << q->cbits;
	if (*off + q->cs > q->file_end)
		q->file_end = *off + q->cs;
	return 0;
}

int qcow2_alloc_contig(struct qcow2 *q, uint64_t n, uint64_t *off)
{
	uint64_t *got = calloc(n, sizeof(*got));
	int rc = -ENOSPC;

	if (!got)
		return -ENOMEM;
	for (int attempt = 0; attempt < 8; attempt++) {
		uint64_t i;
		bool contig = true;

		for (i = 0; i < n; i++) {
			rc = qcow2_alloc(q, &got[i]);
			if (rc < 0)
				break;
			if (i && got[i] != got[i - 1] + q->cs) {
				contig = false;
				i++;
				break;
			}
		}
		if (rc == 0 && contig) {
			*off = got[0];
			goto out;
		}
		/* give back what we took (nothing points at it) and try past it */
		for (uint64_t j = 0; j < i; j++)
			qcow2_rc_add(q, got[j] >> q->cbits, -1);
		if (rc < 0)
			goto out;
		q->free_hint = (got[i - 1] >> q->cbits) + 1;
		rc = -ENOSPC;
	}
out:
	free(got);
	return rc;
}

int qcow2_free_later(struct qcow2 *q, uint64_t off)
{
	if (q->npending == q->cap_pending) {
		size_t ncap = q->cap_pending ? q->cap_pending * 2 : 64;
		uint64_t *n = realloc(q->pending, ncap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		q->pending = n;
		q->cap_pending = ncap;
	}
	q->pending[q->npending++] = off;
	if (q->npending >= 65536 && q->busy == 0)
		return qcow2_meta_flush(q);
	return 0;
}

/* Write the dirty part of the L1 table. */
static int l1_write(struct qcow2 *q)
{
	uint32_t lo = q->l1_dirty_lo, hi = q->l1_dirty_hi;
	uint8_t *buf;
	int rc;

	if (lo >= hi)
		return 0;
	if (!q->lazy && q->unsynced) {
		rc = qcow2_sync(q); /* the L2 tables it points at are on disk first */
		if (rc < 0)
			return rc;
	}
	buf = malloc((size_t)(hi - lo) * 8);
	if (!buf)
		return -ENOMEM;
	for (uint32_t i = lo; i < hi; i++)
		qcow2_put64(buf + (size_t)(i - lo) * 8, q->l1[i]);
	rc = qcow2_pwrite(q, buf, (size_t)(hi - lo) * 8, q->h.l1_off + (uint64_t)lo * 8);
	free(buf);
	if (rc < 0)
		return rc;
	q->unsynced = true;
	q->l1_dirty_lo = q->l1_dirty_hi = 0;
	return 0;
}

/* Drop the references collected by qcow2_free_later (tables are on disk). */
static int apply_frees(struct qcow2 *q)
{
	int rc = 0;

	if (!q->lazy && q->unsynced) {
		rc = qcow2_sync(q);
		if (rc < 0)
			return rc;
	}
	for (size_t i = 0; i < q->npending; i++) {
		uint64_t off = q->pending[i], v;

		rc = qcow2_rc_add(q, off >> q->cbits, -1);
		if (rc == 0)
			rc = qcow2_rc_get(q, off >> q->cbits, &v);
		if (rc < 0)
			break;
		if (v == 0) {
			qcow2_cache_drop(&q->l2c, off);
			/* give the space back to the host file system; errors do not matter */
			if (fallocate(q->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
			              (off_t)q->cs) < 0)
				continue;
		}
	}
	q->npending = 0;
	q->zvalid = false; /* freed host bytes may be reused */
	return rc;
}

int qcow2_meta_flush(struct qcow2 *q)
{
	int rc;

	if (q->d.readonly)
		return 0;
	rc = qcow2_cache_flush(q, &q->rbc, NULL);
	if (rc == 0)
		rc = qcow2_cache_flush(q, &q->l2c, NULL);
	if (rc == 0)
		rc = l1_write(q);
	if (rc == 0 && q->npending && q->busy == 0) {
		rc = apply_frees(q);
		if (rc == 0)
			rc = qcow2_cache_flush(q, &q->rbc, NULL);
	}
	return rc;
}

int qcow2_rc_rebuild(struct qcow2 *q, const uint32_t *refs, uint64_t n)
{
	uint64_t E = 1ULL << q->rb_bits, nt = 1, nb = 1, total;
	uint64_t S = qcow2_round_up(q->file_end, q->cs) >> q->cbits; /* past everything */
	uint64_t *nrt = NULL;
	uint8_t *blk = NULL;
	int rc;

	if (S < n)
		S = n;
	for (;;) {
		uint64_t t, b;

		total = S + nt + nb;
		b = (total + E - 1) / E;
		t = qcow2_round_up(b * 8, q->cs) >> q->cbits;
		if (t == nt && b == nb)
			break;
		nt = t;
		nb = b;
	}
	if ((nt << q->cbits) > QCOW2_MAX_RT_BYTES || (total << q->cbits) > QCOW2_MAX_HOST_OFF)
		return -EFBIG;
	nrt = calloc((nt << q->cbits) / 8, sizeof(*nrt));
	blk = malloc(q->cs);
	if (!nrt || !blk) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint64_t k = 0; k < nb; k++) {
		memset(blk, 0, q->cs);
		for (uint64_t i = 0; i < E; i++) {
			uint64_t c = k * E + i, v = c < n ? refs[c] : 0;

			if (c >= S && c < total)
				v = 1;
			if (v > q->rc_max) {
				rc = -ERANGE;
				goto out;
			}
			if (v)
				qcow2_rb_set(blk, q->h.refcount_order, i, v);
		}
		nrt[k] = (S + nt + k) << q->cbits;
		rc = qcow2_pwrite(q, blk, q->cs, nrt[k]);
		if (rc < 0)
			goto out;
	}
	rc = rt_install(q, nrt, nb, S << q->cbits, nt);
	if (rc < 0)
		goto out;
	/* the old blocks are gone: forget them without writing */
	for (unsigned i = 0; i < q->rbc.n; i++) {
		q->rbc.e[i].off = 0;
		q->rbc.e[i].dirty = false;
	}
	free(q->rt);
	q->rt = nrt;
	q->rt_entries = (nt << q->cbits) / 8;
	q->free_hint = 0;
	q->cfree = 0;
	nrt = NULL;
out:
	free(nrt);
	free(blk);
	return rc;
}
