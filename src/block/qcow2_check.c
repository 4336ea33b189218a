/* qcow2 consistency check and repair: count the references every cluster
 * gets from the header, the L1/L2 tables (active and snapshots), the refcount
 * structures, the snapshot table and the bitmaps; compare them with the
 * stored refcounts and the COPIED flags.
 *
 * Repairs: leaks (refcount above references) are lowered in place; with
 * "all", wrong refcounts are fixed by writing a whole new refcount structure
 * past the end of the file and switching the header to it (crash-safe: the
 * header switch is the commit point), then COPIED flags are corrected. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2_int.h"

struct chk {
	struct qcow2 *q;
	FILE *out;                  /* NULL: quiet */
	uint32_t *refs;             /* references per cluster of the file */
	uint64_t n;
	bool with_rc;               /* count the refcount structures too */
	uint64_t errors;            /* bad entries, references past the end */
	uint64_t rc_errors;         /* refcount below references */
	uint64_t leaks;
	uint64_t copied;            /* COPIED flags that are wrong */
	uint64_t allocated, compressed, fragmented;
	uint64_t image_end;
	uint8_t *buf;               /* one cluster */
};

__attribute__((format(printf, 2, 3))) static void say(struct chk *c, const char *fmt, ...)
{
	va_list ap;

	if (!c->out)
		return;
	va_start(ap, fmt);
	vfprintf(c->out, fmt, ap);
	va_end(ap);
}

/* One more reference to every cluster of [off, off + len). */
static void ref(struct chk *c, uint64_t off, uint64_t len)
{
	struct qcow2 *q = c->q;

	if (!len)
		return;
	for (uint64_t i = off >> q->cbits; i <= (off + len - 1) >> q->cbits; i++) {
		if (i >= c->n) {
			say(c, "ERROR: cluster %llu is referenced but lies past the end of the image\n",
			    (unsigned long long)i);
			c->errors++;
			return;
		}
		if (c->refs[i] < UINT32_MAX)
			c->refs[i]++;
	}
}

static int walk_l2(struct chk *c, uint64_t l2, bool active, uint64_t *prev)
{
	struct qcow2 *q = c->q;
	int rc;

	rc = qcow2_pread(q, c->buf, q->cs, l2);
	if (rc < 0)
		return rc;
	for (uint64_t j = 0; j < q->l2_entries; j++) {
		uint64_t e = qcow2_be64(c->buf + j * 8), host, len;

		if (e & QCOW2_COMPRESSED) {
			qcow2_compressed_range(q, e, &host, &len);
			if ((e & QCOW2_COPIED) || host >= QCOW2_MAX_HOST_OFF || host < q->cs) {
				say(c, "ERROR: bad compressed cluster entry 0x%llx\n",
				    (unsigned long long)e);
				c->errors++;
				continue;
			}
			ref(c, host, len);
			if (active) {
				c->allocated++;
				c->compressed++;
			}
			continue;
		}
		if ((e & QCOW2_L2_RESERVED) || ((e & QCOW2_ZERO_FLAG) && q->h.version < 3)) {
			say(c, "ERROR: L2 entry 0x%llx has reserved bits set\n", (unsigned long long)e);
			c->errors++;
			continue;
		}
		host = e & QCOW2_OFF_MASK;
		if (!host)
			continue;
		if (host % q->cs) {
			say(c, "ERROR: data cluster offset 0x%llx is not cluster-aligned\n",
			    (unsigned long long)host);
			c->errors++;
			continue;
		}
		ref(c, host, q->cs);
		if (active && !(e & QCOW2_ZERO_FLAG)) {
			c->allocated++;
			if (*prev && host != *prev + q->cs)
				c->fragmented++;
			*prev = host;
		}
	}
	return 0;
}

static int walk_l1(struct chk *c, uint64_t l1_off, uint32_t l1_size, bool active)
{
	struct qcow2 *q = c->q;
	uint64_t prev = 0, *l1 = NULL;
	int rc = 0;

	ref(c, l1_off, (uint64_t)l1_size * 8);
	if (!active) {
		l1 = malloc((size_t)l1_size * 8 + 8);
		if (!l1)
			return -ENOMEM;
		rc = qcow2_pread(q, l1, (size_t)l1_size * 8, l1_off);
		for (uint32_t i = 0; rc == 0 && i < l1_size; i++)
			l1[i] = qcow2_be64((const uint8_t *)&l1[i]);
	}
	for (uint32_t i = 0; rc == 0 && i < l1_size; i++) {
		uint64_t e = active ? q->l1[i] : l1[i], l2 = e & QCOW2_OFF_MASK;

		if (e & QCOW2_L1_RESERVED) {
			say(c, "ERROR: L1 entry %u (0x%llx) has reserved bits set\n", i,
			    (unsigned long long)e);
			c->errors++;
			continue;
		}
		if (!l2)
			continue;
		if (l2 % q->cs || l2 < q->cs || l2 >= q->file_end) {
			say(c, "ERROR: L2 table offset 0x%llx is invalid\n", (unsigned long long)l2);
			c->errors++;
			continue;
		}
		ref(c, l2, q->cs);
		rc = walk_l2(c, l2, active, &prev);
	}
	free(l1);
	return rc;
}

static int snap_refs(struct qcow2 *q, void *opaque, uint64_t l1_off, uint32_t l1_size,
                     const struct qcow2_snapshot *s)
{
	(void)q;
	(void)s;
	return walk_l1(opaque, l1_off, l1_size, false);
}

/* The bitmap directory, each bitmap's table and its data clusters. */
static int bitmap_refs(struct chk *c)
{
	struct qcow2 *q = c->q;
	uint64_t size = q->h.bm_dir_size, pos = 0;
	uint8_t *dir;
	int rc = 0;

	if (size > (64u << 20)) {
		say(c, "ERROR: bitmap directory too large\n");
		c->errors++;
		return 0;
	}
	ref(c, q->h.bm_dir_off, size);
	dir = malloc(size + 1);
	if (!dir)
		return -ENOMEM;
	rc = qcow2_pread(q, dir, size, q->h.bm_dir_off);
	for (uint32_t i = 0; rc == 0 && i < q->h.bm_count; i++) {
		uint64_t toff, tsize, n;

		if (size - pos < 24) {
			say(c, "ERROR: bitmap directory truncated\n");
			c->errors++;
			break;
		}
		toff = qcow2_be64(dir + pos);
		tsize = qcow2_be32(dir + pos + 8);
		n = 24 + (uint64_t)qcow2_be32(dir + pos + 20) + qcow2_be16(dir + pos + 18);
		if (n > size - pos || toff % q->cs || toff >= q->file_end ||
		    tsize * 8 > q->file_end - toff) {
			say(c, "ERROR: bad bitmap directory entry %u\n", i);
			c->errors++;
			break;
		}
		ref(c, toff, tsize * 8);
		for (uint64_t j = 0; rc == 0 && j < tsize; j++) {
			uint8_t b[8];
			uint64_t d;

			rc = qcow2_pread(q, b, 8, toff + j * 8);
			d = qcow2_be64(b) & QCOW2_OFF_MASK;
			if (rc == 0 && d)
				ref(c, d, q->cs);
		}
		pos += qcow2_round_up(n, 8);
	}
	free(dir);
	return rc;
}

/* The stored refcount of cluster i; invalid refcount blocks count as zero
 * (they were reported when walking the refcount table). */
static uint64_t stored(struct chk *c, uint64_t i)
{
	struct qcow2 *q = c->q;
	uint64_t ti = i >> q->rb_bits, off, v = 0;

	if (ti >= q->rt_entries)
		return 0;
	off = q->rt[ti];
	if (!off || off % q->cs || off < q->cs || off >= q->file_end)
		return 0;
	if (qcow2_rc_get(q, i, &v) < 0)
		return 0;
	return v;
}

/* Count every reference; with c->with_rc the refcount structures too. */
static int count_refs(struct chk *c)
{
	struct qcow2 *q = c->q;
	uint64_t len;
	int rc;

	memset(c->refs, 0, c->n * sizeof(*c->refs));
	c->errors = c->allocated = c->compressed = c->fragmented = 0;
	ref(c, 0, q->cs);
	rc = walk_l1(c, q->h.l1_off, q->h.l1_size, true);
	if (rc == 0 && q->h.nb_snapshots) {
		rc = qcow2_snap_walk(q, snap_refs, c, &len);
		if (rc == 0)
			ref(c, q->h.snap_off, len);
	}
	if (rc == 0 && q->h.has_bitmaps)
		rc = bitmap_refs(c);
	if (rc < 0 || !c->with_rc)
		return rc;
	ref(c, q->h.rt_off, (uint64_t)q->h.rt_clusters * q->cs);
	for (uint64_t i = 0; i < q->rt_entries; i++) {
		uint64_t off = q->rt[i];

		if (!off)
			continue;
		if (off % q->cs || off < q->cs || off >= q->file_end) {
			say(c, "ERROR: refcount block %llu has invalid offset 0x%llx\n",
			    (unsigned long long)i, (unsigned long long)off);
			c->errors++;
			c->rc_errors++;
			continue;
		}
		ref(c, off, q->cs);
	}
	return 0;
}

static void compare(struct chk *c, bool verbose)
{
	FILE *out = c->out;

	if (!verbose)
		c->out = NULL;
	c->leaks = 0;
	c->image_end = 0;
	for (uint64_t i = 0; i < c->n; i++) {
		uint64_t s = stored(c, i), r = c->refs[i];

		if (s || r)
			c->image_end = (i + 1) << c->q->cbits;
		if (s == r)
			continue;
		if (s > r) {
			say(c, "Leaked cluster %llu refcount=%llu reference=%llu\n",
			    (unsigned long long)i, (unsigned long long)s, (unsigned long long)r);
			c->leaks++;
		} else {
			say(c, "ERROR cluster %llu refcount=%llu reference=%llu\n",
			    (unsigned long long)i, (unsigned long long)s, (unsigned long long)r);
			c->rc_errors++;
		}
	}
	c->out = out;
}

/* COPIED must be set exactly on active clusters (L2 tables, data) whose
 * refcount is one. Fixes the flags when fix. */
static int check_copied(struct chk *c, bool fix, bool verbose)
{
	struct qcow2 *q = c->q;
	int rc = 0;

	c->copied = 0;
	for (uint32_t i = 0; rc == 0 && i < q->h.l1_size; i++) {
		uint64_t e = q->l1[i], l2 = e & QCOW2_OFF_MASK;
		struct qcow2_cent *ent;
		bool one;

		if ((e & QCOW2_L1_RESERVED) || !l2 || l2 % q->cs || l2 < q->cs || l2 >= q->file_end)
			continue;
		one = stored(c, l2 >> q->cbits) == 1;
		if (one != ((e & QCOW2_COPIED) != 0)) {
			if (verbose)
				say(c, "ERROR OFLAG_COPIED L2 cluster: l1_index=%u l1_entry=%llx "
				       "refcount=%llu\n",
				    i, (unsigned long long)e,
				    (unsigned long long)stored(c, l2 >> q->cbits));
			c->copied++;
			if (fix)
				qcow2_l1_set(q, i, one ? e | QCOW2_COPIED : e & ~QCOW2_COPIED);
		}
		rc = qcow2_cache_get(q, &q->l2c, l2, false, &ent);
		for (uint64_t j = 0; rc == 0 && j < q->l2_entries; j++) {
			uint64_t v = qcow2_be64(ent->buf + j * 8), host = v & QCOW2_OFF_MASK;

			if ((v & (QCOW2_COMPRESSED | QCOW2_L2_RESERVED)) || !host || host % q->cs)
				continue;
			one = stored(c, host >> q->cbits) == 1;
			if (one == ((v & QCOW2_COPIED) != 0))
				continue;
			if (verbose)
				say(c, "ERROR OFLAG_COPIED data cluster: l2_entry=%llx refcount=%llu\n",
				    (unsigned long long)v, (unsigned long long)stored(c, host >> q->cbits));
			c->copied++;
			/* (stored() uses the refcount cache only: ent stays valid) */
			if (fix) {
				qcow2_put64(ent->buf + j * 8, one ? v | QCOW2_COPIED : v & ~QCOW2_COPIED);
				ent->dirty = true;
			}
		}
	}
	return rc;
}

/* Lower the refcount of every leaked cluster to its reference count. */
static int fix_leaks(struct chk *c)
{
	struct qcow2 *q = c->q;
	int rc = 0;

	for (uint64_t i = 0; i < c->n && rc == 0; i++) {
		uint64_t s = stored(c, i);

		if (s > c->refs[i])
			rc = qcow2_rc_add(q, i, -(int64_t)(s - c->refs[i]));
	}
	if (rc == 0)
		rc = qcow2_meta_flush(q);
	return rc;
}

static int run(struct chk *c, bool verbose)
{
	int rc;

	c->rc_errors = 0;
	c->with_rc = true;
	if (!verbose) {
		FILE *out = c->out;

		c->out = NULL;
		rc = count_refs(c);
		c->out = out;
	} else {
		rc = count_refs(c);
	}
	if (rc < 0)
		return rc;
	compare(c, verbose);
	return check_copied(c, false, verbose);
}

int qcow2_check(struct blk_disk *d, int repair, FILE *out, struct qcow2_check_res *res)
{
	struct qcow2 *q = (struct qcow2 *)d;
	struct chk c = { .q = q, .out = out };
	bool fixed = false;
	int rc;

	memset(res, 0, sizeof(*res));
	if (!qcow2_is(d))
		return -EINVAL;
	if (repair && q->d.readonly)
		return -EROFS;
	c.n = qcow2_round_up(q->file_end, q->cs) >> q->cbits;
	if (c.n > QCOW2_MAX_CHECK_CLUSTERS)
		return -EFBIG;
	c.refs = calloc(c.n ? c.n : 1, sizeof(*c.refs));
	c.buf = malloc(q->cs);
	if (!c.refs || !c.buf) {
		rc = -ENOMEM;
		goto out;
	}
	rc = qcow2_meta_flush(q);
	if (rc == 0)
		rc = run(&c, true);
	if (rc < 0)
		goto out;
	if (repair == QCOW2_REPAIR_ALL && c.rc_errors) {
		/* references only, then a new refcount structure holding them */
		c.with_rc = false;
		rc = count_refs(&c);
		if (rc == 0)
			rc = qcow2_rc_rebuild(q, c.refs, c.n);
		if (rc < 0)
			goto out;
		res->corruptions_fixed += c.rc_errors;
		res->leaks_fixed += c.leaks;
		fixed = true;
	} else if (repair >= QCOW2_REPAIR_LEAKS && c.leaks) {
		rc = fix_leaks(&c);
		if (rc < 0)
			goto out;
		res->leaks_fixed += c.leaks;
		fixed = true;
	}
	if (repair == QCOW2_REPAIR_ALL && c.copied) {
		rc = check_copied(&c, true, false);
		if (rc == 0)
			rc = qcow2_meta_flush(q);
		if (rc < 0)
			goto out;
		res->corruptions_fixed += c.copied;
		fixed = true;
	}
	if (fixed) {
		/* the file may have grown: look at it again */
		uint64_t n = qcow2_round_up(q->file_end, q->cs) >> q->cbits;

		if (n > c.n) {
			uint32_t *r = realloc(c.refs, n * sizeof(*r));

			if (!r) {
				rc = -ENOMEM;
				goto out;
			}
			c.refs = r;
			c.n = n;
		}
		rc = qcow2_sync(q);
		if (rc == 0)
			rc = run(&c, false);
		if (rc < 0)
			goto out;
	}
	res->leaks = c.leaks;
	res->corruptions = c.errors + c.rc_errors + c.copied;
	if (repair == QCOW2_REPAIR_ALL && !res->corruptions && (q->h.incompat & QCOW2_INCOMPAT_CORRUPT)) {
		/* consistent again: the corrupt mark can go */
		rc = qcow2_header_write_incompat(q, q->h.incompat & ~QCOW2_INCOMPAT_CORRUPT);
		if (rc < 0)
			goto out;
		q->corrupt = false;
	}
	res->guest_clusters = qcow2_round_up(q->h.size, q->cs) >> q->cbits;
	res->allocated = c.allocated;
	res->compressed = c.compressed;
	res->fragmented = c.fragmented;
	res->image_end = c.image_end;
out:
	free(c.refs);
	free(c.buf);
	return rc;
}

int qcow2_repair_dirty(struct qcow2 *q)
{
	struct qcow2_check_res res;

	return qcow2_check(&q->d, QCOW2_REPAIR_ALL, NULL, &res);
}
