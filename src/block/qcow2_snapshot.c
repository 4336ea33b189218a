/* qcow2 internal snapshots (QEMU's docs/interop/qcow2.txt, "Snapshots"):
 * the snapshot table, parsed with every length checked against the table's
 * bounds, and creating, deleting and applying snapshots as qemu-img does.
 *
 * A snapshot is a copy of the active L1 table plus one more reference on
 * every L2 table and data cluster that table reaches; the COPIED flag (bit
 * 63) of the active entries says "refcount exactly one: write in place", so
 * it is cleared on everything shared and the write path copies first.
 *
 * Each operation has one commit point, a single header write:
 *   create  references up, COPIED cleared, L1 copy written -> new table
 *   delete  new table without the entry -> references of the snapshot down
 *   apply   references of the snapshot up, new active L1 written -> header
 *           points at it -> references of the old active L1 down
 * Everything the header will point at is on disk (fdatasync) before the
 * header write; what it stopped pointing at is freed only after it. A crash
 * leaves the image as before or as after, with at most leaked clusters. A
 * failure before the commit point gives back the references it took.
 *
 * Refcounts and COPIED flags live in different clusters and cannot change
 * in one write: a crash between the two leaves flags that disagree with the
 * refcounts (harmless, but `qemu-img check` counts them). Version 3 images
 * carry the dirty bit for the length of an operation, so the next writable
 * open (cvisor's or QEMU's) rebuilds both; version 2 has no such bit. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "block/qcow2_int.h"

/* ---- the table ---- */

void qcow2_snap_free(struct qcow2_snaps *t)
{
	for (uint32_t i = 0; t->s && i < t->n; i++) {
		free(t->s[i].extra);
		free(t->s[i].id);
		free(t->s[i].name);
	}
	free(t->s);
	memset(t, 0, sizeof(*t));
}

/* A NUL-terminated copy of the len bytes at off. */
static int read_str(struct qcow2 *q, uint64_t off, uint16_t len, char **out)
{
	char *s = malloc((size_t)len + 1);
	int rc;

	if (!s)
		return -ENOMEM;
	rc = qcow2_pread(q, s, len, off);
	if (rc < 0) {
		free(s);
		return rc;
	}
	s[len] = 0;
	*out = s;
	return 0;
}

/* Whether an L1 table of n entries at off lies inside the file, aligned. */
static bool l1_in_file(const struct qcow2 *q, uint64_t off, uint32_t n)
{
	uint64_t bytes = (uint64_t)n * 8;

	if (!n)
		return true;
	return off % q->cs == 0 && off >= q->cs && bytes <= QCOW2_MAX_L1_BYTES &&
	       off < q->file_end && bytes <= q->file_end - off;
}

/* Parse the entry at pos, with room bytes of table left; its size in *used. */
static int snap_parse_one(struct qcow2 *q, struct qcow2_snap *s, uint64_t pos, uint64_t room,
                          uint64_t *used)
{
	uint8_t e[QCOW2_SNAP_ENTRY_LEN];
	uint64_t n;
	int rc;

	if (room < sizeof(e))
		return -EINVAL;
	rc = qcow2_pread(q, e, sizeof(e), pos);
	if (rc < 0)
		return rc;
	s->l1_off = qcow2_be64(e);
	s->l1_size = qcow2_be32(e + 8);
	s->id_len = qcow2_be16(e + 12);
	s->name_len = qcow2_be16(e + 14);
	s->date_sec = qcow2_be32(e + 16);
	s->date_nsec = qcow2_be32(e + 20);
	s->vm_clock_nsec = qcow2_be64(e + 24);
	s->vm_state32 = qcow2_be32(e + 32);
	s->extra_len = qcow2_be32(e + 36);
	if (s->extra_len > QCOW2_MAX_SNAP_EXTRA)
		return -EINVAL;
	n = sizeof(e) + (uint64_t)s->extra_len + s->id_len + s->name_len;
	if (n > room || !l1_in_file(q, s->l1_off, s->l1_size))
		return -EINVAL;
	pos += sizeof(e);
	if (s->extra_len) {
		s->extra = malloc(s->extra_len);
		if (!s->extra)
			return -ENOMEM;
		rc = qcow2_pread(q, s->extra, s->extra_len, pos);
		if (rc < 0)
			return rc;
	}
	s->vm_state_size = s->extra_len >= 8 ? qcow2_be64(s->extra) : s->vm_state32;
	s->disk_size = s->extra_len >= 16 ? qcow2_be64(s->extra + 8) : q->h.size;
	s->icount = s->extra_len >= 24 ? qcow2_be64(s->extra + 16) : UINT64_MAX;
	pos += s->extra_len;
	rc = read_str(q, pos, s->id_len, &s->id);
	if (rc == 0)
		rc = read_str(q, pos + s->id_len, s->name_len, &s->name);
	if (rc < 0)
		return rc;
	*used = qcow2_round_up(n, 8);
	return 0;
}

int qcow2_snap_load(struct qcow2 *q, struct qcow2_snaps *t)
{
	uint64_t room, pos = 0, used = 0;
	uint32_t nb = q->h.nb_snapshots;
	int rc = 0;

	memset(t, 0, sizeof(*t));
	if (!nb)
		return 0;
	if (nb > QCOW2_MAX_SNAPSHOTS || q->h.snap_off % q->cs || q->h.snap_off < q->cs ||
	    q->h.snap_off >= q->file_end)
		return -EINVAL;
	room = q->file_end - q->h.snap_off;
	if (room > QCOW2_MAX_SNAP_TABLE)
		room = QCOW2_MAX_SNAP_TABLE;
	/* every entry takes at least its fixed part: the count must fit first */
	if ((uint64_t)nb * QCOW2_SNAP_ENTRY_LEN > room)
		return -EINVAL;
	t->s = calloc(nb, sizeof(*t->s));
	if (!t->s)
		return -ENOMEM;
	for (uint32_t i = 0; i < nb; i++) {
		t->n = i + 1; /* what to free on failure */
		rc = snap_parse_one(q, &t->s[i], q->h.snap_off + pos, room - pos, &used);
		if (rc < 0)
			break;
		pos += used;
		if (pos > room)
			pos = room; /* the last entry's padding may run past the end */
	}
	if (rc < 0) {
		qcow2_snap_free(t);
		return rc;
	}
	t->len = pos;
	return 0;
}

int qcow2_snap_walk(struct qcow2 *q,
                    int (*fn)(struct qcow2 *q, void *opaque, uint64_t l1_off, uint32_t l1_size,
                              const struct qcow2_snapshot *s),
                    void *opaque, uint64_t *table_len)
{
	struct qcow2_snapshot *pub;
	struct qcow2_snaps t;
	int rc;

	if (table_len)
		*table_len = 0;
	rc = qcow2_snap_load(q, &t);
	if (rc < 0)
		return rc;
	pub = malloc(sizeof(*pub));
	if (!pub) {
		qcow2_snap_free(&t);
		return -ENOMEM;
	}
	for (uint32_t i = 0; fn && i < t.n && rc == 0; i++) {
		const struct qcow2_snap *s = &t.s[i];

		memset(pub, 0, sizeof(*pub));
		snprintf(pub->id, sizeof(pub->id), "%s", s->id);
		snprintf(pub->name, sizeof(pub->name), "%s", s->name);
		pub->vm_state_size = s->vm_state_size;
		pub->date_sec = s->date_sec;
		pub->date_nsec = s->date_nsec;
		pub->vm_clock_nsec = s->vm_clock_nsec;
		pub->icount = s->icount;
		rc = fn(q, opaque, s->l1_off, s->l1_size, pub);
	}
	if (rc == 0 && table_len)
		*table_len = t.len;
	free(pub);
	qcow2_snap_free(&t);
	return rc;
}

/* The size of the entry as we write it (extra data at least ours). */
static uint64_t entry_len(const struct qcow2_snap *s)
{
	uint32_t extra = s->extra_len > QCOW2_SNAP_EXTRA_LEN ? s->extra_len : QCOW2_SNAP_EXTRA_LEN;

	return qcow2_round_up(QCOW2_SNAP_ENTRY_LEN + (uint64_t)extra + s->id_len + s->name_len, 8);
}

/* Lay out entry s at p (zeroed, entry_len(s) bytes). Extra data: the 64-bit
 * VM state size, the disk size and the icount (-1: none), then whatever else
 * it held, kept. */
static void entry_put(const struct qcow2_snap *s, uint8_t *p)
{
	uint32_t extra = s->extra_len > QCOW2_SNAP_EXTRA_LEN ? s->extra_len : QCOW2_SNAP_EXTRA_LEN;
	uint8_t *x = p + QCOW2_SNAP_ENTRY_LEN;

	qcow2_put64(p, s->l1_off);
	qcow2_put32(p + 8, s->l1_size);
	qcow2_put16(p + 12, s->id_len);
	qcow2_put16(p + 14, s->name_len);
	qcow2_put32(p + 16, s->date_sec);
	qcow2_put32(p + 20, s->date_nsec);
	qcow2_put64(p + 24, s->vm_clock_nsec);
	qcow2_put32(p + 32, s->vm_state32);
	qcow2_put32(p + 36, extra);
	if (s->extra_len)
		memcpy(x, s->extra, s->extra_len);
	qcow2_put64(x, s->vm_state_size);
	qcow2_put64(x + 8, s->disk_size);
	qcow2_put64(x + 16, s->icount);
	memcpy(x + extra, s->id, s->id_len);
	memcpy(x + extra + s->id_len, s->name, s->name_len);
}

/* Free the n clusters from off (nothing points at them any more). */
static int free_clusters(struct qcow2 *q, uint64_t off, uint64_t n)
{
	int rc = 0;

	for (uint64_t c = 0; c < n && rc == 0; c++)
		rc = qcow2_rc_add(q, (off >> q->cbits) + c, -1);
	return rc;
}

/* Point the header at the table t (written to new clusters first, with all
 * metadata synced), then free the old table: the commit point. */
static int table_commit(struct qcow2 *q, const struct qcow2_snaps *t)
{
	uint64_t len = 0, off = 0, clusters, pos = 0;
	uint64_t old_off = q->h.snap_off, old_len = q->h.nb_snapshots ? q->snap_len : 0;
	uint8_t *buf = NULL, hb[12];
	int rc = 0;

	for (uint32_t i = 0; i < t->n; i++)
		len += entry_len(&t->s[i]);
	if (len > QCOW2_MAX_SNAP_TABLE || t->n > QCOW2_MAX_SNAPSHOTS)
		return -EFBIG;
	clusters = qcow2_round_up(len, q->cs) >> q->cbits;
	if (t->n) {
		buf = calloc(clusters, q->cs);
		if (!buf)
			return -ENOMEM;
		for (uint32_t i = 0; i < t->n; i++) {
			entry_put(&t->s[i], buf + pos);
			pos += entry_len(&t->s[i]);
		}
		rc = qcow2_alloc_contig(q, clusters, &off);
		if (rc == 0)
			rc = qcow2_pwrite(q, buf, clusters << q->cbits, off);
		free(buf);
	}
	if (rc == 0)
		rc = qcow2_meta_flush(q);
	if (rc == 0)
		rc = qcow2_sync(q);
	if (rc < 0) {
		if (off)
			free_clusters(q, off, clusters);
		return rc;
	}
	/* nb_snapshots and snapshots_offset are next to each other: one write */
	qcow2_put32(hb, t->n);
	qcow2_put64(hb + 4, off);
	rc = qcow2_pwrite(q, hb, sizeof(hb), 60);
	if (rc == 0)
		rc = qcow2_sync(q);
	if (rc < 0) {
		/* the header may or may not have changed: no rollback can be right, so
		 * none is done; the image stays dirty for the next open to repair */
		q->corrupt = true;
		return rc;
	}
	memcpy(q->h.raw + 60, hb, sizeof(hb));
	q->h.nb_snapshots = t->n;
	q->h.snap_off = off;
	q->snap_len = len;
	if (old_len)
		rc = free_clusters(q, old_off, qcow2_round_up(old_len, q->cs) >> q->cbits);
	return rc;
}

/* ---- references ---- */

/* Add delta to the refcount of the cluster at off; a table that drops to
 * zero leaves the cache. */
static int ref_cluster(struct qcow2 *q, uint64_t off, int delta)
{
	uint64_t v;
	int rc;

	rc = qcow2_rc_add(q, off >> q->cbits, delta);
	if (rc < 0 || delta > 0)
		return rc;
	rc = qcow2_rc_get(q, off >> q->cbits, &v);
	if (rc == 0 && v == 0)
		qcow2_cache_drop(&q->l2c, off);
	return rc;
}

/* Add delta to the refcount of every cluster the L2 table at l2 points at. */
static int l2_refs(struct qcow2 *q, uint64_t l2, int delta)
{
	struct qcow2_cent *ent;
	int rc;

	rc = qcow2_cache_get(q, &q->l2c, l2, false, &ent);
	/* (only the refcount cache is used below: ent stays valid) */
	for (uint64_t j = 0; rc == 0 && j < q->l2_entries; j++) {
		uint64_t e = qcow2_be64(ent->buf + j * 8), host, off, len;
		enum qcow2_kind kind;

		rc = qcow2_l2_classify(q, e, &kind, &host);
		if (rc < 0)
			break;
		if (kind == QCOW2_K_COMPRESSED) {
			qcow2_compressed_range(q, e, &off, &len);
			for (uint64_t c = off & ~(q->cs - 1); c < off + len && rc == 0; c += q->cs)
				rc = ref_cluster(q, c, delta);
		} else if (host) {
			rc = ref_cluster(q, host, delta);
		}
	}
	return rc;
}

/* Add delta to the refcount of every L2 table and data cluster the L1 table
 * l1 (n entries) reaches. */
static int l1_refs(struct qcow2 *q, const uint64_t *l1, uint32_t n, int delta)
{
	int rc = 0;

	for (uint32_t i = 0; i < n && rc == 0; i++) {
		uint64_t l2;

		rc = qcow2_l1_check(q, l1[i], &l2);
		if (rc == 0 && l2)
			rc = l2_refs(q, l2, delta);
		if (rc == 0 && l2)
			rc = ref_cluster(q, l2, delta);
	}
	return rc;
}

/* The COPIED flags of the L2 table at l2: set exactly on the clusters whose
 * refcount is one. */
static int l2_fix_copied(struct qcow2 *q, uint64_t l2)
{
	struct qcow2_cent *ent;
	int rc;

	rc = qcow2_cache_get(q, &q->l2c, l2, false, &ent);
	for (uint64_t j = 0; rc == 0 && j < q->l2_entries; j++) {
		uint64_t e = qcow2_be64(ent->buf + j * 8), host, v, want;
		enum qcow2_kind kind;

		rc = qcow2_l2_classify(q, e, &kind, &host);
		if (rc < 0 || kind == QCOW2_K_COMPRESSED || !host)
			continue;
		rc = qcow2_rc_get(q, host >> q->cbits, &v);
		want = v == 1 ? e | QCOW2_COPIED : e & ~QCOW2_COPIED;
		if (rc == 0 && want != e) {
			qcow2_put64(ent->buf + j * 8, want);
			ent->dirty = true;
		}
	}
	return rc;
}

/* The COPIED flags of the active L1 table and of every L2 table it reaches,
 * from the refcounts (the spec's "reconstructed from the refcount table"). */
static int fix_copied(struct qcow2 *q)
{
	int rc = 0;

	for (uint32_t i = 0; i < q->h.l1_size && rc == 0; i++) {
		uint64_t e = q->l1[i], l2, v, want;

		rc = qcow2_l1_check(q, e, &l2);
		if (rc < 0 || !l2)
			continue;
		rc = qcow2_rc_get(q, l2 >> q->cbits, &v);
		want = v == 1 ? e | QCOW2_COPIED : e & ~QCOW2_COPIED;
		if (rc == 0 && want != e)
			qcow2_l1_set(q, i, want);
		if (rc == 0)
			rc = l2_fix_copied(q, l2);
	}
	return rc;
}

/* Give back references taken before a failed commit: the tables are as they
 * were, so lowering every refcount to its references (the check's leak
 * repair) undoes exactly what was added. */
static void undo_refs(struct qcow2 *q)
{
	struct qcow2_check_res res;

	qcow2_meta_flush(q);
	qcow2_check(&q->d, QCOW2_REPAIR_ALL, NULL, &res);
}

/* Version 3: set the dirty bit for the length of an operation. */
static int dirty_begin(struct qcow2 *q)
{
	int rc;

	if (q->h.version < 3 || q->dirty_on_disk)
		return 0;
	rc = qcow2_header_write_incompat(q, q->h.incompat | QCOW2_INCOMPAT_DIRTY);
	if (rc == 0)
		q->dirty_on_disk = true;
	return rc;
}

/* The operation is over (done or undone): everything on disk, the bit goes
 * (lazy refcounts keep it until the image is closed). Returns rc, or the
 * first error of its own. */
static int dirty_end(struct qcow2 *q, int rc)
{
	int r;

	if (q->lazy || !q->dirty_on_disk || q->corrupt) /* corrupt: left for a repair */
		return rc;
	r = qcow2_meta_flush(q);
	if (r == 0)
		r = qcow2_sync(q);
	if (r == 0)
		r = qcow2_header_write_incompat(q, q->h.incompat & ~QCOW2_INCOMPAT_DIRTY);
	if (r == 0)
		q->dirty_on_disk = false;
	return rc < 0 ? rc : r;
}

/* ---- L1 tables ---- */

/* Read the L1 table of n entries at off (checked to lie inside the file). */
static int l1_read(struct qcow2 *q, uint64_t off, uint32_t n, uint64_t **out)
{
	uint64_t *t;
	int rc;

	if (!l1_in_file(q, off, n))
		return -EINVAL;
	t = calloc(n ? n : 1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	rc = qcow2_pread(q, t, (size_t)n * 8, off);
	if (rc < 0) {
		free(t);
		return rc;
	}
	for (uint32_t i = 0; i < n; i++)
		t[i] = qcow2_be64((const uint8_t *)&t[i]);
	*out = t;
	return 0;
}

/* Write the n entries of l1 to new clusters, synced; their offset in *off. */
static int l1_write_new(struct qcow2 *q, const uint64_t *l1, uint32_t n, uint64_t *off)
{
	uint64_t clusters = qcow2_round_up((uint64_t)n * 8, q->cs) >> q->cbits;
	uint8_t *buf;
	int rc;

	*off = 0;
	if (!n)
		return 0;
	buf = calloc(clusters, q->cs);
	if (!buf)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++)
		qcow2_put64(buf + (size_t)i * 8, l1[i]);
	rc = qcow2_alloc_contig(q, clusters, off);
	if (rc == 0)
		rc = qcow2_pwrite(q, buf, clusters << q->cbits, *off);
	if (rc == 0)
		rc = qcow2_meta_flush(q);
	if (rc == 0)
		rc = qcow2_sync(q);
	free(buf);
	return rc;
}

static uint64_t l1_clusters(const struct qcow2 *q, uint32_t n)
{
	return qcow2_round_up((uint64_t)n * 8, q->cs) >> q->cbits;
}

/* ---- the operations ---- */

/* The index of the snapshot whose ID, else whose name, is name; -1 if none. */
static int64_t find(const struct qcow2_snaps *t, const char *name)
{
	for (uint32_t i = 0; i < t->n; i++) {
		if (!strcmp(t->s[i].id, name))
			return i;
	}
	for (uint32_t i = 0; i < t->n; i++) {
		if (!strcmp(t->s[i].name, name))
			return i;
	}
	return -1;
}

/* An image we may change: writable, ours, consistent; its table in t. */
static int begin(struct blk_disk *d, struct qcow2_snaps *t)
{
	struct qcow2 *q = (struct qcow2 *)d;
	int rc;

	memset(t, 0, sizeof(*t));
	if (!qcow2_is(d))
		return -EINVAL;
	if (q->d.readonly || q->corrupt)
		return -EROFS;
	if (q->deferred)
		return -EBUSY;
	rc = qcow2_snap_load(q, t);
	if (rc == 0)
		rc = qcow2_meta_flush(q);
	if (rc == 0)
		rc = qcow2_mark_dirty(q);
	if (rc == 0)
		rc = dirty_begin(q);
	if (rc < 0)
		qcow2_snap_free(t);
	return rc;
}

/* The ID after the largest numeric one (as QEMU picks them). */
static void next_id(const struct qcow2_snaps *t, char *buf, size_t len)
{
	unsigned long long max = 0;

	for (uint32_t i = 0; i < t->n; i++) {
		unsigned long long v = strtoull(t->s[i].id, NULL, 10);

		if (v > max && v < UINT64_MAX)
			max = v;
	}
	snprintf(buf, len, "%llu", max + 1);
}

/* Append a new entry for the active state (its L1 copy at l1_off) to t. */
static int add_entry(struct qcow2 *q, struct qcow2_snaps *t, const char *name, uint64_t l1_off)
{
	struct qcow2_snap *n, *s;
	struct timespec ts;
	char id[32];

	n = realloc(t->s, ((size_t)t->n + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	t->s = n;
	s = &t->s[t->n];
	memset(s, 0, sizeof(*s));
	next_id(t, id, sizeof(id));
	s->id = strdup(id);
	s->name = strdup(name);
	if (!s->id || !s->name) {
		free(s->id);
		free(s->name);
		return -ENOMEM;
	}
	t->n++;
	s->id_len = (uint16_t)strlen(id);
	s->name_len = (uint16_t)strlen(name);
	s->l1_off = l1_off;
	s->l1_size = q->h.l1_size;
	clock_gettime(CLOCK_REALTIME, &ts);
	s->date_sec = (uint32_t)ts.tv_sec;
	s->date_nsec = (uint32_t)ts.tv_nsec;
	s->disk_size = q->h.size;
	s->icount = UINT64_MAX;
	return 0;
}

int qcow2_snapshot_create(struct blk_disk *d, const char *name)
{
	struct qcow2 *q = (struct qcow2 *)d;
	struct qcow2_snaps t;
	uint64_t l1_off = 0;
	size_t len = name ? strlen(name) : 0;
	int rc;

	if (!len || len > QCOW2_MAX_SNAP_NAME)
		return -EINVAL;
	rc = begin(d, &t);
	if (rc < 0)
		return rc;
	if (find(&t, name) >= 0) {
		rc = -EEXIST;
		goto out;
	}
	if (t.n >= QCOW2_MAX_SNAPSHOTS) {
		rc = -EFBIG;
		goto out;
	}
	/* one more reference on everything, COPIED off, all of it on disk */
	rc = l1_refs(q, q->l1, q->h.l1_size, 1);
	if (rc == 0)
		rc = fix_copied(q);
	if (rc == 0)
		rc = qcow2_meta_flush(q);
	if (rc == 0)
		rc = l1_write_new(q, q->l1, q->h.l1_size, &l1_off);
	if (rc == 0)
		rc = add_entry(q, &t, name, l1_off);
	if (rc == 0)
		rc = table_commit(q, &t);
	if (rc < 0 && !q->corrupt)
		undo_refs(q);
out:
	qcow2_snap_free(&t);
	return dirty_end(q, rc);
}

int qcow2_snapshot_delete(struct blk_disk *d, const char *name)
{
	struct qcow2 *q = (struct qcow2 *)d;
	struct qcow2_snaps t;
	struct qcow2_snap gone;
	uint64_t *l1 = NULL;
	int64_t k;
	int rc;

	rc = begin(d, &t);
	if (rc < 0)
		return rc;
	k = find(&t, name ? name : "");
	if (k < 0) {
		rc = -ENOENT;
		goto out;
	}
	gone = t.s[k];
	rc = l1_read(q, gone.l1_off, gone.l1_size, &l1);
	if (rc < 0)
		goto out;
	memmove(&t.s[k], &t.s[k + 1], (t.n - (size_t)k - 1) * sizeof(*t.s));
	t.n--;
	rc = table_commit(q, &t);
	/* from here on the snapshot is gone: its references are leaks to drop */
	if (rc == 0)
		rc = l1_refs(q, l1, gone.l1_size, -1);
	if (rc == 0 && gone.l1_size)
		rc = free_clusters(q, gone.l1_off, l1_clusters(q, gone.l1_size));
	if (rc == 0)
		rc = fix_copied(q);
	if (rc == 0)
		rc = qcow2_meta_flush(q);
	if (rc == 0)
		rc = qcow2_sync(q);
	q->zvalid = false;
	free(gone.extra);
	free(gone.id);
	free(gone.name);
out:
	free(l1);
	qcow2_snap_free(&t);
	return dirty_end(q, rc);
}

/* Switch the header to the active L1 table l1 (n entries, at off) and the
 * virtual size size: one write of the three neighbouring fields. */
static int header_switch(struct qcow2 *q, uint64_t size, uint32_t n, uint64_t off)
{
	uint8_t hb[24];
	int rc;

	qcow2_put64(hb, size);
	qcow2_put32(hb + 8, q->h.crypt);
	qcow2_put32(hb + 12, n);
	qcow2_put64(hb + 16, off);
	rc = qcow2_pwrite(q, hb, sizeof(hb), QCOW2_OFF_SIZE);
	if (rc == 0)
		rc = qcow2_sync(q);
	if (rc < 0) {
		q->corrupt = true; /* uncertain, as in table_commit: no rollback */
		return rc;
	}
	memcpy(q->h.raw + QCOW2_OFF_SIZE, hb, sizeof(hb));
	q->h.size = size;
	q->h.l1_size = n;
	q->h.l1_off = off;
	return 0;
}

/* The new active L1 table for snapshot s: its entries, COPIED off (all of
 * it is shared with the snapshot now), zeroes up to what size needs. */
static int apply_l1(struct qcow2 *q, const struct qcow2_snap *s, const uint64_t *sl1,
                    uint64_t **out, uint32_t *n)
{
	uint64_t span = q->cs << q->l2_bits, need = (s->disk_size + span - 1) / span;
	uint64_t *l1;

	if (s->disk_size > QCOW2_MAX_SIZE || need * 8 > QCOW2_MAX_L1_BYTES)
		return -EINVAL;
	*n = need > s->l1_size ? (uint32_t)need : s->l1_size;
	l1 = calloc(*n ? *n : 1, sizeof(*l1));
	if (!l1)
		return -ENOMEM;
	for (uint32_t i = 0; i < s->l1_size; i++)
		l1[i] = sl1[i] & ~QCOW2_COPIED;
	*out = l1;
	return 0;
}

/* Give the snapshot's clusters the new active table's reference, and clear
 * the COPIED flags its L2 tables kept from when they were active. */
static int apply_refs(struct qcow2 *q, const uint64_t *sl1, uint32_t n)
{
	int rc = l1_refs(q, sl1, n, 1);

	for (uint32_t i = 0; i < n && rc == 0; i++) {
		uint64_t l2;

		rc = qcow2_l1_check(q, sl1[i], &l2);
		if (rc == 0 && l2)
			rc = l2_fix_copied(q, l2);
	}
	if (rc == 0)
		rc = qcow2_meta_flush(q);
	return rc;
}

/* After the switch: the old active table (n entries at off) and what only
 * it reached are freed; the new table's flags are checked. */
static int drop_old_active(struct qcow2 *q, const uint64_t *old, uint32_t n, uint64_t off)
{
	int rc = l1_refs(q, old, n, -1);

	if (rc == 0 && n)
		rc = free_clusters(q, off, l1_clusters(q, n));
	if (rc == 0)
		rc = fix_copied(q);
	if (rc == 0)
		rc = qcow2_meta_flush(q);
	if (rc == 0)
		rc = qcow2_sync(q);
	return rc;
}

int qcow2_snapshot_apply(struct blk_disk *d, const char *name)
{
	struct qcow2 *q = (struct qcow2 *)d;
	uint64_t *sl1 = NULL, *nl1 = NULL, *old, off = 0, old_off;
	uint32_t n = 0, old_n;
	const struct qcow2_snap *s;
	struct qcow2_snaps t;
	int64_t k;
	int rc;

	rc = begin(d, &t);
	if (rc < 0)
		return rc;
	k = find(&t, name ? name : "");
	if (k < 0) {
		rc = -ENOENT;
		goto out;
	}
	s = &t.s[k];
	rc = l1_read(q, s->l1_off, s->l1_size, &sl1);
	if (rc == 0)
		rc = apply_l1(q, s, sl1, &nl1, &n);
	if (rc < 0)
		goto out;
	old = q->l1;
	old_n = q->h.l1_size;
	old_off = q->h.l1_off;
	rc = apply_refs(q, sl1, s->l1_size);
	if (rc == 0)
		rc = l1_write_new(q, nl1, n, &off);
	if (rc == 0)
		rc = header_switch(q, s->disk_size, n, off);
	if (rc < 0) {
		if (q->corrupt) /* the header write is uncertain: keep everything */
			goto out;
		if (off)
			free_clusters(q, off, l1_clusters(q, n));
		undo_refs(q);
		goto out;
	}
	/* committed */
	q->l1 = nl1;
	nl1 = old;
	q->l1_dirty_lo = q->l1_dirty_hi = 0;
	q->zvalid = false;
	rc = drop_old_active(q, old, old_n, old_off);
out:
	free(sl1);
	free(nl1);
	qcow2_snap_free(&t);
	return dirty_end(q, rc);
}
