/* qcow2 compressed clusters (read only): raw deflate streams (zlib) or zstd
 * frames, as the header's compression type says. The compressed bytes may
 * straddle host clusters and end inside their last 512-byte sector; a
 * cluster must decompress to exactly one full cluster, else it is an error. */
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

void qcow2_compress_free(struct qcow2 *q)
{
	free(q->zbuf);
	q->zbuf = NULL;
	ZSTD_freeDCtx(q->zstd_ctx);
	q->zstd_ctx = NULL;
	q->zvalid = false;
}
