/* libFuzzer target for the qcow2 driver: a fuzzed image is opened, read,
 * written once, checked and closed.
 *
 * Input: one flags byte, then the image.
 *   flags bit 0    open writable (then: one write, a zeroing, a discard, a
 *                  flush, a snapshot created, a write, the first snapshot
 *                  applied, the new one deleted, and a check with repair)
 *   flags bit 1-2  0: the rest of the input is the whole image file; else a
 *                  built-in valid image (1: version 3 over a raw base, with a
 *                  compressed and a zero cluster; 2: version 2 with an
 *                  internal snapshot; 3: 1-bit refcounts) patched by the rest
 *                  of the input, read as
 *                  records: offset (2 bytes, big-endian), length (1 byte), bytes
 *   flags bit 3-7  where the write goes (times 4 KiB, modulo the disk size)
 *
 * The image's directory holds a 64 KiB raw file "b" for backing files;
 * backing names with '/' are refused (QCOW2_OPEN_LOCAL_BACKING). Checks: no
 * crash, no out-of-bounds access, no leak, no huge allocation (sanitizers and
 * libFuzzer's malloc limit); every request completes exactly once. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "block/aio.h"
#include "block/qcow2.h"
#include "util/log.h"

#define TEMPLATES 3
#define MAX_IMAGE (1u << 20)
#define READ_SPAN (64u * 1024)

static char dir[64], img_path[96];
static struct aio *aio;
static uint8_t *tmpl[TEMPLATES];
static size_t tmpl_len[TEMPLATES];

struct io {
	struct blk_req req;
	int calls;
	int64_t res;
};

static void io_done(struct blk_req *req, int64_t res)
{
	struct io *io = req->opaque;

	io->calls++;
	io->res = res;
}

/* Run one request to completion; abort if its callback does not run once. */
static int64_t io_run(struct io *io, int rc)
{
	if (rc < 0)
		return rc;
	aio_drain(aio);
	if (io->calls != 1)
		abort();
	return io->res;
}

static void io_init(struct io *io)
{
	memset(io, 0, sizeof(*io));
	io->req.done = io_done;
	io->req.opaque = io;
}

static int slurp(const char *path, uint8_t **out, size_t *len)
{
	struct stat st;
	uint8_t *b;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size > (off_t)MAX_IMAGE)
		return -1;
	b = malloc((size_t)st.st_size + 1);
	if (!b || pread(fd, b, (size_t)st.st_size, 0) != st.st_size)
		return -1;
	close(fd);
	*out = b;
	*len = (size_t)st.st_size;
	return 0;
}

/* Write a deflated cluster at the end of the file and point guest cluster
 * 10's L2 entry at it (512-byte clusters: the entry is in the first table). */
static void add_compressed(const char *path)
{
	uint8_t data[512], out[1024], e[8], l1[8];
	z_stream s;
	uint64_t end, l2, desc;
	int fd = open(path, O_RDWR);

	memset(&s, 0, sizeof(s));
	for (int i = 0; i < 512; i++)
		data[i] = (uint8_t)(i / 16);
	if (fd < 0 || deflateInit2(&s, 6, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) != Z_OK)
		abort();
	s.next_in = data;
	s.avail_in = sizeof(data);
	s.next_out = out;
	s.avail_out = sizeof(out);
	if (deflate(&s, Z_FINISH) != Z_STREAM_END)
		abort();
	deflateEnd(&s);
	end = (uint64_t)lseek(fd, 0, SEEK_END);
	end = (end + 511) & ~511ULL;
	if (pwrite(fd, out, s.total_out, (off_t)end) != (ssize_t)s.total_out)
		abort();
	/* the L1 table's first entry names the L2 table */
	if (pread(fd, e, 8, 40) != 8)
		abort();
	l2 = 0;
	for (int i = 0; i < 8; i++)
		l2 = l2 << 8 | e[i];
	if (pread(fd, l1, 8, (off_t)l2) != 8)
		abort();
	l2 = 0;
	for (int i = 0; i < 8; i++)
		l2 = l2 << 8 | l1[i];
	l2 &= 0x00fffffffffffe00ULL;
	/* 512-byte clusters: x = 61; no additional sectors */
	desc = (1ULL << 62) | end;
	for (int i = 0; i < 8; i++)
		e[i] = (uint8_t)(desc >> (56 - 8 * i));
	if (pwrite(fd, e, 8, (off_t)(l2 + 10 * 8)) != 8)
		abort();
	close(fd);
}

static void make_template(int t)
{
	struct qcow2_create_opts o = { .size = 64 * 1024, .cluster_size = 512 };
	struct blk_disk *d;
	uint8_t buf[1536];
	struct iovec v = { buf, sizeof(buf) };
	struct io io;
	char err[512];

	if (t == 0) {
		o.backing = "b";
		o.backing_fmt = "raw";
	} else if (t == 1) {
		o.version = 2;
	} else {
		o.refcount_bits = 1;
	}
	if (qcow2_create(img_path, &o, err, sizeof(err)) < 0 ||
	    qcow2_open(&d, img_path, false, QCOW2_OPEN_LOCAL_BACKING, aio, err, sizeof(err)) < 0)
		abort();
	memset(buf, 0x5a, sizeof(buf));
	io_init(&io);
	if (io_run(&io, blk_writev(d, &io.req, &v, 1, 1000)) != (int64_t)sizeof(buf))
		abort();
	io_init(&io);
	if (io_run(&io, blk_writev(d, &io.req, &v, 1, 40000)) != (int64_t)sizeof(buf))
		abort();
	io_init(&io);
	if (io_run(&io, blk_write_zeroes(d, &io.req, 40960, 1024, false)) < 0)
		abort();
	if (t == 1) {
		/* a snapshot table, and shared clusters the write below copies */
		if (qcow2_snapshot_create(d, "t") < 0)
			abort();
		io_init(&io);
		if (io_run(&io, blk_writev(d, &io.req, &v, 1, 1024)) != (int64_t)sizeof(buf))
			abort();
	}
	blk_close(d);
	if (t == 0)
		add_compressed(img_path);
	if (slurp(img_path, &tmpl[t], &tmpl_len[t]) < 0)
		abort();
}

static void fuzz_cleanup(void)
{
	char path[96];

	unlink(img_path);
	snprintf(path, sizeof(path), "%s/b", dir);
	unlink(path);
	rmdir(dir);
}

static void fuzz_init(void)
{
	uint8_t b[65536];
	char path[96];
	int fd;

	log_level = -1; /* corruption reports on every other input would only slow us down */
	snprintf(dir, sizeof(dir), "/tmp/cvisor-fuzz-qcow2-XXXXXX");
	if (!mkdtemp(dir) || aio_create(&aio, 16, AIO_SYNC) < 0)
		abort();
	atexit(fuzz_cleanup);
	snprintf(img_path, sizeof(img_path), "%s/img", dir);
	snprintf(path, sizeof(path), "%s/b", dir);
	for (size_t i = 0; i < sizeof(b); i++)
		b[i] = (uint8_t)(i * 7 + 1);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || pwrite(fd, b, sizeof(b), 0) != (ssize_t)sizeof(b))
		abort();
	close(fd);
	for (int t = 0; t < TEMPLATES; t++)
		make_template(t);
}

static int write_image(const uint8_t *data, size_t size, unsigned t)
{
	uint8_t *img;
	size_t len;
	int fd, rc = 0;

	if (t == 0) {
		img = (uint8_t *)data;
		len = size;
	} else {
		len = tmpl_len[t - 1];
		img = malloc(len);
		if (!img)
			abort();
		memcpy(img, tmpl[t - 1], len);
		for (size_t p = 0; p + 3 <= size;) {
			size_t off = (size_t)data[p] << 8 | data[p + 1], n = data[p + 2];

			p += 3;
			if (n > size - p)
				n = size - p;
			for (size_t i = 0; i < n && off + i < len; i++)
				img[off + i] = data[p + i];
			p += n;
		}
	}
	fd = open(img_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || (len && pwrite(fd, img, len, 0) != (ssize_t)len))
		rc = -1;
	if (fd >= 0)
		close(fd);
	if (t)
		free(img);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[READ_SPAN];
	struct iovec v = { buf, sizeof(buf) };
	struct qcow2_check_res r;
	struct blk_disk *d;
	uint64_t dsize, n;
	uint8_t flags;
	bool rw;
	char err[4096];
	struct io io;

	if (!aio)
		fuzz_init();
	if (size < 1 || size > MAX_IMAGE)
		return 0;
	flags = data[0];
	rw = flags & 1;
	if (write_image(data + 1, size - 1, (flags >> 1) & 3) < 0)
		return 0;
	if (qcow2_open(&d, img_path, !rw, QCOW2_OPEN_LOCAL_BACKING, aio, err, sizeof(err)) < 0)
		return 0;
	dsize = blk_size(d);
	/* the start of the disk, and a stretch at an input-chosen place */
	for (uint64_t off = 0; off < dsize && off < 2 * READ_SPAN; off += n) {
		n = dsize - off < sizeof(buf) ? dsize - off : sizeof(buf);
		v.iov_len = n;
		io_init(&io);
		io_run(&io, blk_readv(d, &io.req, &v, 1, off));
	}
	if (dsize) {
		uint64_t off = ((uint64_t)(flags >> 3) * 4096 * 2654435761u) % dsize;

		v.iov_len = dsize - off < 8192 ? dsize - off : 8192;
		io_init(&io);
		io_run(&io, blk_readv(d, &io.req, &v, 1, off));
		qcow2_block_status(d, off, dsize - off, &n);
		if (rw) {
			memset(buf, 0xa5, v.iov_len);
			io_init(&io);
			io_run(&io, blk_writev(d, &io.req, &v, 1, off));
			io_init(&io);
			io_run(&io, blk_write_zeroes(d, &io.req, off / 2, dsize - off / 2 < 70000 ?
			                                                  dsize - off / 2 : 70000,
			                             flags & 0x10));
			io_init(&io);
			io_run(&io, blk_discard(d, &io.req, 0, dsize < 4096 ? dsize : 4096));
			io_init(&io);
			io_run(&io, blk_flush(d, &io.req));
			/* snapshots: create, write over shared clusters, apply, delete */
			qcow2_snapshot_create(d, "fz");
			io_init(&io);
			io_run(&io, blk_writev(d, &io.req, &v, 1, off));
			qcow2_snapshot_apply(d, "1");
			qcow2_snapshot_delete(d, "fz");
			v.iov_len = dsize - off < 8192 ? dsize - off : 8192;
			io_init(&io);
			io_run(&io, blk_readv(d, &io.req, &v, 1, off));
		}
	}
	qcow2_check(d, rw ? QCOW2_REPAIR_ALL : QCOW2_REPAIR_NONE, NULL, &r);
	blk_close(d);
	return 0;
}
