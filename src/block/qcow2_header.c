/* qcow2 header: parsing and checking every field of a hostile header and its
 * extensions, rewriting cluster 0 with the extensions we do not know kept
 * intact, and creating new images. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/qcow2_int.h"

#define FEAT_ENTRY 48

static int herr(char *err, size_t errlen, int rc, const char *msg)
{
	snprintf(err, errlen, "%s", msg);
	return rc;
}

/* [a, a + alen) and [b, b + blen) share a byte (empty ranges never do). */
static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return alen && blen && a < b + blen && b < a + alen;
}

const char *qcow2_feature_name(const struct qcow2_header *h, unsigned type, unsigned bit,
                               char *buf, size_t len)
{
	for (uint32_t p = 0; h->feat && p + FEAT_ENTRY <= h->feat_len; p += FEAT_ENTRY) {
		const uint8_t *f = h->feat + p;
		size_t n = 0;

		if (f[0] != type || f[1] != bit)
			continue;
		while (n < FEAT_ENTRY - 2 && f[2 + n])
			n++;
		if (n >= len)
			n = len - 1;
		for (size_t i = 0; i < n; i++)
			buf[i] = (f[2 + i] >= 0x20 && f[2 + i] < 0x7f) ? (char)f[2 + i] : '?';
		buf[n] = 0;
		return buf;
	}
	return NULL;
}

/* Keep an extension (type, len, data) for rewriting the header. */
static int keep_ext(struct qcow2_header *h, uint32_t type, const uint8_t *data, uint32_t len)
{
	uint32_t padded = (uint32_t)qcow2_round_up(len, 8);
	uint8_t *n = realloc(h->exts, h->exts_len + 8 + padded);

	if (!n)
		return -ENOMEM;
	h->exts = n;
	qcow2_put32(n + h->exts_len, type);
	qcow2_put32(n + h->exts_len + 4, len);
	memcpy(n + h->exts_len + 8, data, len);
	memset(n + h->exts_len + 8 + len, 0, padded - len);
	h->exts_len += 8 + padded;
	return 0;
}

/* Walk the extensions in [start, limit). */
static int parse_exts(struct qcow2_header *h, const uint8_t *buf, uint32_t start, uint32_t limit,
                      char *err, size_t errlen)
{
	bool seen_fmt = false, seen_feat = false;
	uint32_t pos = start, feat_at = 0;
	int rc;

	while (pos <= limit && limit - pos >= 8) {
		uint32_t type = qcow2_be32(buf + pos);
		uint32_t len = qcow2_be32(buf + pos + 4);
		const uint8_t *data = buf + pos + 8;

		if (type == QCOW2_EXT_END) {
			pos += 8;
			break;
		}
		if (len > limit - pos - 8) {
			snprintf(err, errlen, "header extension 0x%08x is larger than the header cluster",
			         type);
			return -EINVAL;
		}
		switch (type) {
		case QCOW2_EXT_BACKING_FMT:
			if (seen_fmt)
				return herr(err, errlen, -EINVAL, "two backing format extensions");
			seen_fmt = true;
			if (len == 0 || len > QCOW2_MAX_FMT_NAME || memchr(data, 0, len))
				return herr(err, errlen, -EINVAL, "bad backing format name");
			memcpy(h->backing_fmt, data, len);
			h->backing_fmt[len] = 0;
			break;
		case QCOW2_EXT_CRYPTO:
			return herr(err, errlen, -ENOTSUP, "encrypted images are not supported");
		case QCOW2_EXT_FEATURES:
			if (seen_feat)
				return herr(err, errlen, -EINVAL, "two feature name tables");
			seen_feat = true;
			feat_at = h->exts_len + 8;
			h->feat_len = len;
			goto keep;
		case QCOW2_EXT_BITMAPS:
			if (h->has_bitmaps)
				return herr(err, errlen, -EINVAL, "two bitmaps extensions");
			if (len < 24)
				return herr(err, errlen, -EINVAL, "bitmaps extension too short");
			h->has_bitmaps = true;
			h->bm_count = qcow2_be32(data);
			h->bm_dir_size = qcow2_be64(data + 8);
			h->bm_dir_off = qcow2_be64(data + 16);
			goto keep;
		default:
		keep:
			rc = keep_ext(h, type, data, len);
			if (rc < 0)
				return herr(err, errlen, rc, "out of memory");
			break;
		}
		pos += 8 + (uint32_t)qcow2_round_up(len, 8);
	}
	h->ext_end = pos < limit ? pos : limit;
	if (seen_feat)
		h->feat = h->exts + feat_at;
	return 0;
}

static int check_features(struct qcow2_header *h, char *err, size_t errlen)
{
	uint64_t unknown = h->incompat & ~QCOW2_INCOMPAT_KNOWN;
	char name[64];

	if (h->incompat & QCOW2_INCOMPAT_DATA_FILE)
		return herr(err, errlen, -ENOTSUP, "external data files are not supported");
	if (h->incompat & QCOW2_INCOMPAT_EXTL2)
		return herr(err, errlen, -ENOTSUP, "extended L2 entries are not supported");
	if (unknown) {
		unsigned bit = (unsigned)__builtin_ctzll(unknown);

		if (qcow2_feature_name(h, 0, bit, name, sizeof(name)))
			snprintf(err, errlen, "unsupported incompatible feature: %s (bit %u)", name,
			         bit);
		else
			snprintf(err, errlen, "unknown incompatible feature bit %u", bit);
		return -ENOTSUP;
	}
	return 0;
}

int qcow2_header_parse(struct qcow2_header *h, const uint8_t *buf, size_t len,
                       uint64_t file_size, char *err, size_t errlen)
{
	uint64_t cs, l2_entries, need, l1_bytes, rt_bytes, limit;
	int rc;

	memset(h, 0, sizeof(*h));
	if (len < QCOW2_V2_HEADER_LEN || file_size < QCOW2_V2_HEADER_LEN)
		return herr(err, errlen, -EINVAL, "file too short for a qcow2 header");
	if (qcow2_be32(buf) != QCOW2_MAGIC)
		return herr(err, errlen, -EINVAL, "not a qcow2 image (bad magic)");
	h->version = qcow2_be32(buf + 4);
	if (h->version != 2 && h->version != 3) {
		snprintf(err, errlen, "unsupported qcow2 version %u", h->version);
		return -ENOTSUP;
	}
	h->backing_off = qcow2_be64(buf + 8);
	h->backing_len = qcow2_be32(buf + 16);
	h->cluster_bits = qcow2_be32(buf + 20);
	h->size = qcow2_be64(buf + 24);
	h->crypt = qcow2_be32(buf + 32);
	h->l1_size = qcow2_be32(buf + 36);
	h->l1_off = qcow2_be64(buf + 40);
	h->rt_off = qcow2_be64(buf + 48);
	h->rt_clusters = qcow2_be32(buf + 56);
	h->nb_snapshots = qcow2_be32(buf + 60);
	h->snap_off = qcow2_be64(buf + 64);
	if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS || h->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
		snprintf(err, errlen, "bad cluster_bits %u (9 to 21 supported)", h->cluster_bits);
		return -EINVAL;
	}
	cs = 1ULL << h->cluster_bits;
	if (len < cs && len < file_size)
		return herr(err, errlen, -EINVAL, "internal: header buffer too short");
	if (h->version == 2) {
		h->header_len = QCOW2_V2_HEADER_LEN;
		h->refcount_order = 4;
	} else {
		if (len < QCOW2_V3_HEADER_LEN || file_size < QCOW2_V3_HEADER_LEN)
			return herr(err, errlen, -EINVAL, "file too short for a version 3 header");
		h->incompat = qcow2_be64(buf + 72);
		h->compat = qcow2_be64(buf + 80);
		h->autoclear = qcow2_be64(buf + 88);
		h->refcount_order = qcow2_be32(buf + 96);
		h->header_len = qcow2_be32(buf + 100);
		if (h->header_len < QCOW2_V3_HEADER_LEN || h->header_len % 8 || h->header_len > cs ||
		    h->header_len > file_size || h->header_len > len) {
			snprintf(err, errlen, "bad header_length %u", h->header_len);
			return -EINVAL;
		}
		if (h->header_len > 104)
			h->compression = buf[104];
	}
	if (h->refcount_order > 6) {
		snprintf(err, errlen, "bad refcount_order %u (at most 6)", h->refcount_order);
		return -EINVAL;
	}
	if (h->crypt)
		return herr(err, errlen, -ENOTSUP, "encrypted images are not supported");
	h->raw = malloc(h->header_len);
	if (!h->raw)
		return herr(err, errlen, -ENOMEM, "out of memory");
	memcpy(h->raw, buf, h->header_len);

	/* the backing file name, then the extensions before it (they may name features) */
	limit = (uint64_t)(len < cs ? len : cs);
	if (h->backing_off) {
		if (h->backing_len == 0 || h->backing_len > QCOW2_MAX_BACKING_NAME ||
		    h->backing_off < h->header_len || h->backing_off > limit ||
		    h->backing_len > limit - h->backing_off) {
			rc = herr(err, errlen, -EINVAL, "bad backing file name offset or length");
			goto out;
		}
		if (memchr(buf + h->backing_off, 0, h->backing_len)) {
			rc = herr(err, errlen, -EINVAL, "backing file name contains a NUL byte");
			goto out;
		}
		memcpy(h->backing, buf + h->backing_off, h->backing_len);
		h->backing[h->backing_len] = 0;
		limit = h->backing_off;
	} else {
		h->backing_len = 0;
	}
	rc = parse_exts(h, buf, h->header_len, (uint32_t)limit, err, errlen);
	if (rc < 0)
		goto out;
	rc = check_features(h, err, errlen);
	if (rc < 0)
		goto out;
	if (h->incompat & QCOW2_INCOMPAT_COMPRESSION) {
		if (h->compression == 0) {
			rc = herr(err, errlen, -EINVAL, "compression type bit set but type is zlib");
			goto out;
		}
	} else if (h->compression != 0) {
		rc = herr(err, errlen, -EINVAL, "compression type set without its feature bit");
		goto out;
	}
	if (h->compression > 1) {
		snprintf(err, errlen, "unknown compression type %u", h->compression);
		rc = -ENOTSUP;
		goto out;
	}

	/* sizes and tables: all inside the file, aligned, not overlapping */
	rc = -EINVAL;
	if (h->size > QCOW2_MAX_SIZE) {
		herr(err, errlen, rc, "virtual size too large");
		goto out;
	}
	l2_entries = cs / 8;
	need = (h->size + cs * l2_entries - 1) / (cs * l2_entries);
	l1_bytes = (uint64_t)h->l1_size * 8;
	if (h->l1_size < need) {
		herr(err, errlen, rc, "L1 table too small for the virtual size");
		goto out;
	}
	if (l1_bytes > QCOW2_MAX_L1_BYTES) {
		herr(err, errlen, rc, "L1 table too large");
		goto out;
	}
	if (h->l1_size && (h->l1_off % cs || h->l1_off == 0 || h->l1_off >= file_size ||
	                   l1_bytes > file_size - h->l1_off)) {
		herr(err, errlen, rc, "L1 table offset is misaligned or outside the file");
		goto out;
	}
	rt_bytes = (uint64_t)h->rt_clusters * cs;
	if (h->rt_clusters == 0 || rt_bytes > QCOW2_MAX_RT_BYTES || rt_bytes > file_size) {
		herr(err, errlen, rc, "bad refcount table size");
		goto out;
	}
	if (h->rt_off % cs || h->rt_off == 0 || h->rt_off >= file_size) {
		herr(err, errlen, rc, "refcount table offset is misaligned or outside the file");
		goto out;
	}
	if (h->nb_snapshots > QCOW2_MAX_SNAPSHOTS) {
		herr(err, errlen, rc, "too many snapshots");
		goto out;
	}
	if (h->nb_snapshots &&
	    (h->snap_off % cs || h->snap_off == 0 || h->snap_off >= file_size)) {
		herr(err, errlen, rc, "snapshot table offset is misaligned or outside the file");
		goto out;
	}
	if (overlaps(0, cs, h->l1_off, l1_bytes) || overlaps(0, cs, h->rt_off, rt_bytes) ||
	    overlaps(h->l1_off, qcow2_round_up(l1_bytes, cs), h->rt_off, rt_bytes) ||
	    (h->nb_snapshots && (overlaps(h->snap_off, 1, h->l1_off, l1_bytes) ||
	                         overlaps(h->snap_off, 1, h->rt_off, rt_bytes)))) {
		herr(err, errlen, rc, "header, L1 table and refcount table overlap");
		goto out;
	}
	if (h->has_bitmaps && (h->bm_dir_off % cs || h->bm_dir_off >= file_size ||
	                       h->bm_dir_size > file_size - h->bm_dir_off)) {
		herr(err, errlen, rc, "bitmap directory outside the file");
		goto out;
	}
	return 0;
out:
	qcow2_header_free(h);
	return rc;
}

void qcow2_header_free(struct qcow2_header *h)
{
	free(h->raw);
	free(h->exts);
	h->raw = NULL;
	h->exts = NULL;
	h->feat = NULL;
	h->exts_len = 0;
}

int qcow2_header_write_incompat(struct qcow2 *q, uint64_t incompat)
{
	uint8_t b[8];
	int rc;

	if (q->h.version < 3)
		return 0;
	qcow2_put64(b, incompat);
	rc = qcow2_pwrite(q, b, sizeof(b), QCOW2_OFF_INCOMPAT);
	if (rc < 0)
		return rc;
	q->h.incompat = incompat;
	qcow2_put64(q->h.raw + QCOW2_OFF_INCOMPAT, incompat);
	return qcow2_sync(q);
}

/* The fields of h into the header bytes hb (header_len long). */
static void header_fill(const struct qcow2_header *h, uint8_t *hb)
{
	qcow2_put32(hb, QCOW2_MAGIC);
	qcow2_put32(hb + 4, h->version);
	qcow2_put64(hb + 8, h->backing_off);
	qcow2_put32(hb + 16, h->backing_len);
	qcow2_put32(hb + 20, h->cluster_bits);
	qcow2_put64(hb + 24, h->size);
	qcow2_put32(hb + 32, h->crypt);
	qcow2_put32(hb + 36, h->l1_size);
	qcow2_put64(hb + 40, h->l1_off);
	qcow2_put64(hb + 48, h->rt_off);
	qcow2_put32(hb + 56, h->rt_clusters);
	qcow2_put32(hb + 60, h->nb_snapshots);
	qcow2_put64(hb + 64, h->snap_off);
	if (h->version >= 3) {
		qcow2_put64(hb + 72, h->incompat);
		qcow2_put64(hb + 80, h->compat);
		qcow2_put64(hb + 88, h->autoclear);
		qcow2_put32(hb + 96, h->refcount_order);
		qcow2_put32(hb + 100, h->header_len);
		if (h->header_len > 104)
			hb[104] = h->compression;
	}
}

/* Lay out cluster 0 in buf (cs bytes, zeroed): header, backing format
 * extension, the kept extensions (without the feature table unless
 * with_feat), end marker, backing name. Sets h->backing_off/len. */
static int header_build(struct qcow2_header *h, uint8_t *buf, uint64_t cs, bool with_feat)
{
	size_t blen = strlen(h->backing), flen = strlen(h->backing_fmt);
	uint64_t pos = h->header_len;

	if (blen) {
		if (pos + 8 + qcow2_round_up(flen, 8) > cs)
			return -ENOSPC;
		if (flen) {
			qcow2_put32(buf + pos, QCOW2_EXT_BACKING_FMT);
			qcow2_put32(buf + pos + 4, (uint32_t)flen);
			memcpy(buf + pos + 8, h->backing_fmt, flen);
			pos += 8 + qcow2_round_up(flen, 8);
		}
	}
	for (uint32_t p = 0; p + 8 <= h->exts_len;) {
		uint32_t type = qcow2_be32(h->exts + p);
		uint32_t n = 8 + (uint32_t)qcow2_round_up(qcow2_be32(h->exts + p + 4), 8);

		if (type != QCOW2_EXT_FEATURES || with_feat) {
			if (pos + n > cs)
				return -ENOSPC;
			memcpy(buf + pos, h->exts + p, n);
			pos += n;
		}
		p += n;
	}
	if (pos + 8 + blen > cs)
		return -ENOSPC;
	pos += 8; /* end marker: zeroes */
	h->backing_off = blen ? pos : 0;
	h->backing_len = (uint32_t)blen;
	memcpy(buf + pos, h->backing, blen);
	header_fill(h, buf);
	return 0;
}

int qcow2_header_rewrite(struct qcow2 *q)
{
	struct qcow2_header *h = &q->h;
	uint8_t *buf = calloc(1, q->cs);
	int rc;

	if (!buf)
		return -ENOMEM;
	/* unknown header fields past the ones we know are kept as they were */
	memcpy(buf, h->raw, h->header_len);
	rc = header_build(h, buf, q->cs, true);
	if (rc == -ENOSPC) {
		/* the feature name table is only for messages: drop it to make room */
		memset(buf + h->header_len, 0, q->cs - h->header_len);
		rc = header_build(h, buf, q->cs, false);
	}
	if (rc < 0)
		goto out;
	rc = qcow2_sync(q);
	if (rc == 0)
		rc = qcow2_pwrite(q, buf, q->cs, 0);
	if (rc == 0)
		rc = qcow2_sync(q);
	if (rc == 0)
		memcpy(h->raw, buf, h->header_len);
out:
	free(buf);
	return rc;
}

/* ---- creating images ---- */

/* The feature name table we write into new images (when it fits). */
static const struct {
	uint8_t type, bit;
	const char *name;
} feature_names[] = {
	{ 0, 0, "dirty bit" },
	{ 0, 1, "corrupt bit" },
	{ 0, 2, "external data file" },
	{ 0, 3, "compression type" },
	{ 0, 4, "extended L2 entries" },
	{ 1, 0, "lazy refcounts" },
	{ 2, 0, "bitmaps" },
	{ 2, 1, "raw external data" },
};

static int add_feature_table(struct qcow2_header *h)
{
	size_t n = sizeof(feature_names) / sizeof(feature_names[0]);
	uint8_t *t = calloc(n, FEAT_ENTRY);
	int rc;

	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		t[i * FEAT_ENTRY] = feature_names[i].type;
		t[i * FEAT_ENTRY + 1] = feature_names[i].bit;
		memcpy(t + i * FEAT_ENTRY + 2, feature_names[i].name, strlen(feature_names[i].name));
	}
	rc = keep_ext(h, QCOW2_EXT_FEATURES, t, (uint32_t)(n * FEAT_ENTRY));
	free(t);
	return rc;
}

static int create_check(const struct qcow2_create_opts *o, uint32_t *cbits, uint32_t *order,
                        char *err, size_t errlen)
{
	uint32_t cs = o->cluster_size ? o->cluster_size : 65536;
	uint32_t rb = o->refcount_bits ? o->refcount_bits : 16;
	uint32_t version = o->version ? o->version : 3;
	uint64_t l2_span;

	if (cs < 512 || cs > (2u << 20) || (cs & (cs - 1)))
		return herr(err, errlen, -EINVAL,
		            "cluster size must be a power of two between 512 and 2M");
	if (rb > 64 || (rb & (rb - 1)) || rb == 0)
		return herr(err, errlen, -EINVAL,
		            "refcount bits must be a power of two between 1 and 64");
	if (version != 2 && version != 3)
		return herr(err, errlen, -EINVAL, "version must be 2 (compat=0.10) or 3 (compat=1.1)");
	if (version == 2 && rb != 16)
		return herr(err, errlen, -EINVAL, "version 2 images have 16 refcount bits");
	if (version == 2 && o->lazy_refcounts)
		return herr(err, errlen, -EINVAL, "lazy refcounts need version 3 (compat=1.1)");
	if (o->compression > 1)
		return herr(err, errlen, -EINVAL, "compression type must be zlib or zstd");
	if (version == 2 && o->compression)
		return herr(err, errlen, -EINVAL, "zstd compression needs version 3 (compat=1.1)");
	*cbits = (uint32_t)__builtin_ctz(cs);
	*order = (uint32_t)__builtin_ctz(rb);
	l2_span = (uint64_t)cs * (cs / 8);
	if (o->size > QCOW2_MAX_SIZE ||
	    (o->size + l2_span - 1) / l2_span * 8 > QCOW2_MAX_L1_BYTES)
		return herr(err, errlen, -EINVAL, "size too large for this cluster size");
	if (o->backing && o->backing[0]) {
		if (strlen(o->backing) > QCOW2_MAX_BACKING_NAME)
			return herr(err, errlen, -EINVAL, "backing file name too long");
		if (!o->backing_fmt || (strcmp(o->backing_fmt, "raw") &&
		                        strcmp(o->backing_fmt, "qcow2")))
			return herr(err, errlen, -EINVAL, "backing format must be raw or qcow2");
	}
	return 0;
}

static int create_write(int fd, const struct qcow2_create_opts *o, uint32_t cbits,
                        uint32_t order, char *err, size_t errlen)
{
	uint64_t cs = 1ULL << cbits, l2_span = cs * (cs / 8);
	uint64_t rb_entries = cs * 8 >> order;
	uint64_t l1_size = (o->size + l2_span - 1) / l2_span;
	uint64_t l1c = qcow2_round_up(l1_size * 8, cs) / cs;
	uint64_t rtc = 1, rbc = 1, total;
	struct qcow2_header h;
	uint8_t *buf = NULL;
	int rc;

	for (;;) {
		uint64_t nrbc, nrtc;

		total = 1 + rtc + rbc + l1c;
		nrbc = (total + rb_entries - 1) / rb_entries;
		nrtc = qcow2_round_up(nrbc * 8, cs) / cs;
		if (nrbc == rbc && nrtc == rtc)
			break;
		rbc = nrbc;
		rtc = nrtc;
	}
	memset(&h, 0, sizeof(h));
	h.version = o->version ? o->version : 3;
	h.cluster_bits = cbits;
	h.size = o->size;
	h.l1_size = (uint32_t)l1_size;
	h.l1_off = (1 + rtc + rbc) * cs;
	h.rt_off = cs;
	h.rt_clusters = (uint32_t)rtc;
	h.refcount_order = order;
	h.header_len = h.version == 2 ? QCOW2_V2_HEADER_LEN : QCOW2_CREATE_HEADER_LEN;
	h.compat = o->lazy_refcounts ? QCOW2_COMPAT_LAZY : 0;
	h.compression = o->compression;
	h.incompat = o->compression ? QCOW2_INCOMPAT_COMPRESSION : 0;
	if (o->backing && o->backing[0]) {
		snprintf(h.backing, sizeof(h.backing), "%s", o->backing);
		snprintf(h.backing_fmt, sizeof(h.backing_fmt), "%s", o->backing_fmt);
	}
	buf = calloc(1, cs);
	if (!buf) {
		rc = herr(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	rc = h.version >= 3 ? add_feature_table(&h) : 0;
	if (rc == 0) {
		rc = header_build(&h, buf, cs, true);
		if (rc == -ENOSPC) {
			memset(buf, 0, cs);
			rc = header_build(&h, buf, cs, false);
		}
	}
	if (rc < 0) {
		herr(err, errlen, rc, rc == -ENOSPC ? "backing file name does not fit in the header"
		                                    : "out of memory");
		goto out;
	}
	if (pwrite(fd, buf, cs, 0) != (ssize_t)cs)
		goto io;
	/* refcount table, then the blocks: every cluster up to the L1 table's end is used */
	for (uint64_t c = 0; c < rtc; c++) {
		memset(buf, 0, cs);
		for (uint64_t i = 0; i < cs / 8; i++) {
			uint64_t b = c * (cs / 8) + i;

			if (b < rbc)
				qcow2_put64(buf + i * 8, (1 + rtc + b) * cs);
		}
		if (pwrite(fd, buf, cs, (off_t)((1 + c) * cs)) != (ssize_t)cs)
			goto io;
	}
	for (uint64_t b = 0; b < rbc; b++) {
		memset(buf, 0, cs);
		for (uint64_t i = 0; i < rb_entries; i++) {
			if (b * rb_entries + i < total)
				qcow2_rb_set(buf, order, i, 1);
		}
		if (pwrite(fd, buf, cs, (off_t)((1 + rtc + b) * cs)) != (ssize_t)cs)
			goto io;
	}
	/* the L1 table reads as zeroes */
	if (ftruncate(fd, (off_t)(total * cs)) < 0 || fdatasync(fd) < 0)
		goto io;
	rc = 0;
	goto out;
io:
	rc = errno ? -errno : -EIO;
	snprintf(err, errlen, "cannot write the image: %s", strerror(-rc));
out:
	qcow2_header_free(&h);
	free(buf);
	return rc;
}

int qcow2_create(const char *path, const struct qcow2_create_opts *opts, char *err, size_t errlen)
{
	char msg[256];
	uint32_t cbits, order;
	int fd, rc;
	/* the virtual size is rounded up to whole 512-byte sectors, as qemu-img does:
	 * readers that count sectors would otherwise see a shorter disk */
	struct qcow2_create_opts rounded = *opts;
	const struct qcow2_create_opts *o = &rounded;
	if (rounded.size <= UINT64_MAX - 511)
		rounded.size = (rounded.size + 511) & ~511ULL;

	rc = create_check(o, &cbits, &order, msg, sizeof(msg));
	if (rc < 0) {
		snprintf(err, errlen, "%s: %s", path, msg);
		return rc;
	}
	/* create it if need be, then truncate only once we hold the lock */
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		return rc;
	}
	close(fd);
	rc = blk_file_open(path, false, &fd, err, errlen);
	if (rc < 0)
		return rc;
	if (ftruncate(fd, 0) < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		goto out;
	}
	rc = create_write(fd, o, cbits, order, msg, sizeof(msg));
	if (rc < 0)
		snprintf(err, errlen, "%s: %s", path, msg);
out:
	close(fd);
	return rc;
}
