/* qcow2 compressed clusters: raw deflate streams (zlib) or zstd frames, as
 * the header's compression type says. The compressed bytes may straddle host
 * clusters and end inside their last 512-byte sector; a cluster must
 * decompress to exactly one full cluster, else it is an error.
 *
 * Writing (convert -c): a whole cluster is compressed (deflate with a 4 KiB
 * window, which QEMU's reader needs, or a zstd frame) and kept only when it
 * comes out smaller than a cluster. Compressed clusters are packed one after
 * another into host clusters; each host cluster holds one reference per
 * compressed cluster that touches it, as the format counts them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "block/qcow2_int.h"

void qcow2_compressed_range(const struct qcow2 *q, uint64_t e, uint64_t *off, uint64_t *len)
{
	uint32_t x = 62 - (q->cbits - 8);
	uint64_t nsect = (e >> x) & ((1ULL << (q->cbits - 8)) - 1);

	*off = e & ((1ULL << x) - 1);
	*len = (nsect + 1) * 512 - (*off & 511);
}

static int inflate_cluster(const uint8_t *in, uint64_t inlen, uint8_t *out, uint64_t outlen)
{
	z_stream s;
	int r;

	memset(&s, 0, sizeof(s));
	/* raw deflate; the largest window decodes streams made with any smaller one */
	if (inflateInit2(&s, -15) != Z_OK)
		return -ENOMEM;
	s.next_in = (Bytef *)in;
	s.avail_in = (uInt)inlen;
	s.next_out = out;
	s.avail_out = (uInt)outlen;
	r = inflate(&s, Z_FINISH);
	inflateEnd(&s);
	/* the stream may stop exactly at the end of the cluster, or go on past it
	 * into padding: either way the cluster must be full */
	if ((r == Z_STREAM_END || r == Z_BUF_ERROR || r == Z_OK) && s.avail_out == 0)
		return 0;
	return -EIO;
}

static int zstd_cluster(struct qcow2 *q, const uint8_t *in, uint64_t inlen, uint8_t *out,
                        uint64_t outlen)
{
	ZSTD_inBuffer ib = { in, inlen, 0 };
	ZSTD_outBuffer ob = { out, outlen, 0 };

	if (!q->zstd_ctx) {
		q->zstd_ctx = ZSTD_createDCtx();
		if (!q->zstd_ctx)
			return -ENOMEM;
	}
	ZSTD_DCtx_reset(q->zstd_ctx, ZSTD_reset_session_only);
	while (ob.pos < ob.size) {
		size_t before_in = ib.pos, before_out = ob.pos;
		size_t r = ZSTD_decompressStream(q->zstd_ctx, &ob, &ib);

		if (ZSTD_isError(r))
			return -EIO;
		if (r == 0 && ob.pos < ob.size)
			return -EIO; /* the frame ended before the cluster did */
		if (ib.pos == before_in && ob.pos == before_out)
			return -EIO; /* no progress: input exhausted */
	}
	return 0;
}

int qcow2_decompress(struct qcow2 *q, uint64_t e)
{
	uint64_t off, len;
	uint8_t *in;
	int rc;

	if (q->zvalid && q->zkey == e)
		return 0;
	q->zvalid = false;
	if (!q->zbuf) {
		q->zbuf = malloc(q->cs);
		if (!q->zbuf)
			return -ENOMEM;
	}
	qcow2_compressed_range(q, e, &off, &len);
	/* len is at most 2^(cluster_bits - 8) sectors: twice a cluster */
	in = malloc(len);
	if (!in)
		return -ENOMEM;
	rc = qcow2_pread(q, in, len, off);
	if (rc == 0) {
		if (q->h.compression == 1)
			rc = zstd_cluster(q, in, len, q->zbuf, q->cs);
		else
			rc = inflate_cluster(in, len, q->zbuf, q->cs);
	}
	free(in);
	if (rc == 0) {
		q->zkey = e;
		q->zvalid = true;
	}
	return rc;
}

/* Raw deflate of n bytes into at most cap; the length, or 0 if it does not fit. */
static size_t deflate_cluster(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
	z_stream s;
	size_t len = 0;

	memset(&s, 0, sizeof(s));
	if (deflateInit2(&s, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) != Z_OK)
		return 0;
	s.next_in = (Bytef *)in;
	s.avail_in = (uInt)n;
	s.next_out = out;
	s.avail_out = (uInt)cap;
	if (deflate(&s, Z_FINISH) == Z_STREAM_END)
		len = cap - s.avail_out;
	deflateEnd(&s);
	return len;
}

/* One zstd frame of n bytes into at most cap; the length, or 0 if it does not fit. */
static size_t zstd_compress_cluster(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
	size_t r = ZSTD_compress(out, cap, in, n, ZSTD_CLEVEL_DEFAULT);

	return ZSTD_isError(r) ? 0 : r;
}

/* Where len bytes (less than a cluster) of compressed data go: after the
 * last ones when they fit in that host cluster or run on into the next one
 * (then the newly allocated one); else at the start of a new cluster. Takes
 * the references; a cluster whose refcount is at its width's maximum takes
 * no more data. */
static int alloc_bytes(struct qcow2 *q, uint64_t len, uint64_t *out)
{
	uint64_t c = q->cfree, in = c & (q->cs - 1), nh;
	int rc = -ERANGE;

	if (c && in && q->cs - in >= len) {
		rc = qcow2_rc_add(q, c >> q->cbits, 1);
		if (rc < 0 && rc != -ERANGE)
			return rc;
	}
	if (rc == -ERANGE) {
		rc = qcow2_alloc(q, &nh);
		if (rc < 0)
			return rc;
		if (!c || !in || nh != c - in + q->cs || qcow2_rc_add(q, c >> q->cbits, 1) < 0)
			c = nh; /* (else the data runs on from the old cluster into the new one) */
	}
	*out = c;
	q->cfree = (c + len) & (q->cs - 1) ? c + len : 0;
	return 0;
}

int qcow2_compress_write(struct qcow2 *q, uint64_t off, const uint8_t *src)
{
	uint32_t x = 62 - (q->cbits - 8);
	uint64_t host = 0, nsect;
	uint8_t *out;
	size_t len;
	int rc;

	out = malloc(q->cs);
	if (!out)
		return -ENOMEM;
	/* "smaller than a cluster", and below where the entry can point */
	if (q->h.compression == 1)
		len = zstd_compress_cluster(src, q->cs, out, q->cs - 1);
	else
		len = deflate_cluster(src, q->cs, out, q->cs - 1);
	if (!len || q->file_end + 8 * q->cs >= 1ULL << x) {
		free(out);
		return qcow2_write_sync(q, src, q->cs, off);
	}
	rc = qcow2_mark_dirty(q);
	if (rc == 0)
		rc = alloc_bytes(q, len, &host);
	if (rc == 0 && host + len > 1ULL << x)
		rc = -EFBIG;
	if (rc == 0)
		rc = qcow2_overlap_check(q, host, len);
	if (rc == 0)
		rc = qcow2_pwrite(q, out, len, host);
	free(out);
	if (rc < 0)
		return rc;
	q->zvalid = false;
	nsect = ((host + len - 1) >> 9) - (host >> 9);
	return qcow2_l2_replace(q, off, QCOW2_COMPRESSED | nsect << x | host);
}

void qcow2_compress_free(struct qcow2 *q)
{
	free(q->zbuf);
	q->zbuf = NULL;
	ZSTD_freeDCtx(q->zstd_ctx);
	q->zstd_ctx = NULL;
	q->zvalid = false;
}
