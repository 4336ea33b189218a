/* Unit tests for qcow2 I/O on temporary files (block/qcow2*.c): reads and
 * writes through the driver with io_uring and with the synchronous engine,
 * allocation with every refcount width, zero clusters and discard, backing
 * chains, refcount table growth, resize, the check and its repairs, lazy
 * refcounts after a crash, corrupt tables (errors, the corrupt bit), the
 * guard on probed raw images, internal snapshots (copy-on-write of shared
 * L2 tables and data clusters) and compressed writes. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "block/aio.h"
#include "block/qcow2.h"
#include "util/log.h"

#define KIB 1024u
#define MIB (1024u * 1024u)

static const unsigned mode_uring = 0;
static const unsigned mode_sync = AIO_SYNC;

struct fx {
	char dir[64];
	char path[128];
	char base[128];
	struct aio *aio;
	char err[1024];
};

static bool in_submit;

struct io {
	struct blk_req req;
	int calls;
	int64_t res;
};

static void io_done(struct blk_req *req, int64_t res)
{
	struct io *io = req->opaque;

	assert_false(in_submit);
	io->calls++;
	io->res = res;
}

static void io_init(struct io *io)
{
	memset(io, 0, sizeof(*io));
	io->req.done = io_done;
	io->req.opaque = io;
}

/* Wait for io and return its result (or the submit error). */
static int64_t io_wait(struct fx *f, struct io *io, int rc)
{
	if (rc < 0)
		return rc;
	aio_drain(f->aio);
	assert_int_equal(io->calls, 1);
	return io->res;
}

static int64_t rd(struct fx *f, struct blk_disk *d, void *buf, size_t len, uint64_t off)
{
	struct iovec v = { buf, len };
	struct io io;
	int rc;

	io_init(&io);
	in_submit = true;
	rc = blk_readv(d, &io.req, &v, 1, off);
	in_submit = false;
	return io_wait(f, &io, rc);
}

static int64_t wr(struct fx *f, struct blk_disk *d, const void *buf, size_t len, uint64_t off)
{
	struct iovec v = { (void *)buf, len };
	struct io io;
	int rc;

	io_init(&io);
	in_submit = true;
	rc = blk_writev(d, &io.req, &v, 1, off);
	in_submit = false;
	return io_wait(f, &io, rc);
}

static int64_t zero(struct fx *f, struct blk_disk *d, uint64_t off, uint64_t len, bool unmap)
{
	struct io io;
	int rc;

	io_init(&io);
	in_submit = true;
	rc = blk_write_zeroes(d, &io.req, off, len, unmap);
	in_submit = false;
	return io_wait(f, &io, rc);
}

static int64_t discard(struct fx *f, struct blk_disk *d, uint64_t off, uint64_t len)
{
	struct io io;
	int rc;

	io_init(&io);
	in_submit = true;
	rc = blk_discard(d, &io.req, off, len);
	in_submit = false;
	return io_wait(f, &io, rc);
}

static int64_t flush(struct fx *f, struct blk_disk *d)
{
	struct io io;
	int rc;

	io_init(&io);
	in_submit = true;
	rc = blk_flush(d, &io.req);
	in_submit = false;
	return io_wait(f, &io, rc);
}

static uint8_t pat(uint64_t off, uint8_t seed)
{
	return (uint8_t)(off * 31 + (off >> 9) * 7 + seed);
}

static void fill(uint8_t *b, size_t len, uint64_t off, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		b[i] = pat(off + i, seed);
}

static int setup(void **state, unsigned mode)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/cvisor-qcow2io-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/a.qcow2", f->dir);
	snprintf(f->base, sizeof(f->base), "%s/base.raw", f->dir);
	assert_int_equal(aio_create(&f->aio, 64, mode), 0);
	log_level = 0;
	*state = f;
	return 0;
}

static int setup_uring(void **state)
{
	return setup(state, mode_uring);
}

static int setup_sync(void **state)
{
	return setup(state, mode_sync);
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char cmd[128];

	aio_destroy(f->aio);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static void make(struct fx *f, const char *path, uint64_t size, uint32_t cs, uint32_t rb,
                 uint32_t version, const char *backing, const char *bfmt)
{
	struct qcow2_create_opts o = { .size = size, .cluster_size = cs, .refcount_bits = rb,
		                       .version = version, .backing = backing,
		                       .backing_fmt = bfmt };

	assert_int_equal(qcow2_create(path, &o, f->err, sizeof(f->err)), 0);
}

static struct blk_disk *open_q(struct fx *f, const char *path, bool ro, unsigned flags)
{
	struct blk_disk *d = NULL;

	if (qcow2_open(&d, path, ro, flags, f->aio, f->err, sizeof(f->err)) < 0)
		fail_msg("open %s: %s", path, f->err);
	return d;
}

/* qcow2_check on a read-only open: leaks and corruptions. */
static void check(struct fx *f, const char *path, uint64_t leaks, uint64_t corruptions)
{
	struct blk_disk *d = open_q(f, path, true, QCOW2_OPEN_NO_BACKING | QCOW2_OPEN_NO_REPAIR);
	struct qcow2_check_res r;

	assert_int_equal(qcow2_check(d, QCOW2_REPAIR_NONE, NULL, &r), 0);
	blk_close(d);
	if (r.leaks != leaks || r.corruptions != corruptions)
		fail_msg("%s: %llu leaks, %llu corruptions", path, (unsigned long long)r.leaks,
		         (unsigned long long)r.corruptions);
}

static void expect(struct fx *f, struct blk_disk *d, uint64_t off, size_t len, uint8_t seed)
{
	uint8_t *got = malloc(len), *want = malloc(len);

	assert_non_null(got);
	assert_non_null(want);
	if (seed)
		fill(want, len, off, seed);
	else
		memset(want, 0, len);
	assert_int_equal(rd(f, d, got, len, off), (int64_t)len);
	assert_memory_equal(got, want, len);
	free(got);
	free(want);
}

static void write_pat(struct fx *f, struct blk_disk *d, uint64_t off, size_t len, uint8_t seed)
{
	uint8_t *b = malloc(len);

	assert_non_null(b);
	fill(b, len, off, seed);
	assert_int_equal(wr(f, d, b, len, off), (int64_t)len);
	free(b);
}

static void test_rw(void **state)
{
	struct fx *f = *state;
	struct blk_disk *d;
	uint8_t a[1000], b[3000], c[5000];
	struct iovec v[3] = { { a, sizeof(a) }, { b, sizeof(b) }, { c, sizeof(c) } };
	struct io io;
	int rc;

	make(f, f->path, 16 * MIB, 0, 0, 3, NULL, NULL);
	d = open_q(f, f->path, false, 0);
	assert_int_equal(blk_size(d), 16 * MIB);
	expect(f, d, 0, 256 * KIB, 0);
	write_pat(f, d, 100000, 300000, 1);
	write_pat(f, d, 16 * MIB - 4096, 4096, 2);
	/* several buffers in one request, across a cluster boundary */
	fill(a, sizeof(a), 65536 - 1500, 3);
	fill(b, sizeof(b), 65536 - 500, 3);
	fill(c, sizeof(c), 65536 + 2500, 3);
	io_init(&io);
	in_submit = true;
	rc = blk_writev(d, &io.req, v, 3, 65536 - 1500);
	in_submit = false;
	assert_int_equal(io_wait(f, &io, rc), 9000);
	memset(a, 0, sizeof(a));
	memset(b, 0, sizeof(b));
	memset(c, 0, sizeof(c));
	io_init(&io);
	assert_int_equal(io_wait(f, &io, blk_readv(d, &io.req, v, 3, 65536 - 1500)), 9000);
	for (size_t i = 0; i < sizeof(c); i++)
		assert_int_equal(c[i], pat(65536 + 2500 + i, 3));
	assert_int_equal(flush(f, d), 0);
	/* out of range, read-only, bad vectors */
	assert_int_equal(rd(f, d, a, 512, 16 * MIB), -EINVAL);
	assert_int_equal(rd(f, d, a, 1024, 16 * MIB - 512), -EINVAL);
	io_init(&io);
	assert_int_equal(blk_readv(d, &io.req, v, IOV_MAX + 1, 0), -EINVAL);
	blk_close(d);
	d = open_q(f, f->path, true, 0);
	expect(f, d, 100000, 300000, 1);
	expect(f, d, 16 * MIB - 4096, 4096, 2);
	expect(f, d, 4 * MIB, 64 * KIB, 0);
	assert_int_equal(wr(f, d, a, 512, 0), -EROFS);
	assert_int_equal(zero(f, d, 0, 512, false), -EROFS);
	assert_int_equal(discard(f, d, 0, 512), -EROFS);
	assert_int_equal(flush(f, d), 0);
	blk_close(d);
	check(f, f->path, 0, 0);
}

static void test_refcount_widths(void **state)
{
	struct fx *f = *state;

	/* 512-byte clusters: many L2 tables, refcount blocks and table growth */
	for (uint32_t rb = 1; rb <= 64; rb *= 2) {
		struct blk_disk *d;

		make(f, f->path, 8 * MIB, 512, rb, 3, NULL, NULL);
		d = open_q(f, f->path, false, 0);
		for (uint64_t i = 0; i < 48; i++) {
			uint64_t off = (i * 2654435761u) % (8 * MIB - 64 * KIB) & ~511ULL;

			write_pat(f, d, off, 40 * KIB, (uint8_t)rb);
		}
		write_pat(f, d, 0, 3 * MIB, (uint8_t)rb);
		assert_int_equal(flush(f, d), 0);
		blk_close(d);
		check(f, f->path, 0, 0);
		d = open_q(f, f->path, true, 0);
		expect(f, d, 0, 3 * MIB, (uint8_t)rb);
		blk_close(d);
	}
}

static void test_zero_discard(void **state)
{
	struct fx *f = *state;

	for (uint32_t v = 2; v <= 3; v++) {
		struct blk_disk *d;

		make(f, f->path, 4 * MIB, 4096, 0, v, NULL, NULL);
		d = open_q(f, f->path, false, 0);
		write_pat(f, d, 0, 4 * MIB, 9);
		assert_int_equal(zero(f, d, 1000, 20000, false), 20000);
		assert_int_equal(zero(f, d, 64 * KIB, 64 * KIB, true), 64 * KIB);
		assert_int_equal(discard(f, d, 256 * KIB, 128 * KIB), 128 * KIB);
		assert_int_equal(zero(f, d, 4 * MIB - 100, 100, true), 100);
		expect(f, d, 0, 1000, 9);
		expect(f, d, 1000, 20000, 0);
		expect(f, d, 21000, 64 * KIB - 21000, 9);
		expect(f, d, 64 * KIB, 64 * KIB, 0);
		expect(f, d, 512 * KIB, 100, 9);
		expect(f, d, 4 * MIB - 100, 100, 0);
		/* a preallocated zero cluster takes writes again */
		write_pat(f, d, 1000, 20000, 10);
		expect(f, d, 1000, 20000, 10);
		assert_int_equal(flush(f, d), 0);
		blk_close(d);
		check(f, f->path, 0, 0);
	}
}

static void make_base(struct fx *f, uint64_t size, uint8_t seed)
{
	uint8_t *b = malloc(size);
	int fd;

	assert_non_null(b);
	fill(b, size, 0, seed);
	fd = open(f->base, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, b, size, 0), (ssize_t)size);
	close(fd);
	free(b);
}

static void test_backing_chain(void **state)
{
	struct fx *f = *state;
	char mid[160];
	struct blk_disk *d;
	uint8_t *buf = malloc(4 * MIB);
	struct stat before, after;

	assert_non_null(buf);
	make_base(f, 3 * MIB, 5); /* shorter than the image: zeroes past its end */
	assert_int_equal(stat(f->base, &before), 0);
	snprintf(mid, sizeof(mid), "%s/mid.qcow2", f->dir);
	make(f, mid, 4 * MIB, 0, 0, 3, "base.raw", "raw");
	make(f, f->path, 4 * MIB, 4096, 0, 3, "mid.qcow2", "qcow2");
	d = open_q(f, mid, false, 0);
	write_pat(f, d, 1 * MIB + 100, 10000, 6);
	assert_int_equal(zero(f, d, 2 * MIB, 64 * KIB, false), 64 * KIB);
	blk_close(d);
	d = open_q(f, f->path, false, 0);
	write_pat(f, d, 1 * MIB + 5000, 2000, 7); /* a partial cluster over mid's data */
	write_pat(f, d, 2 * MIB + 4096, 512, 8);  /* over mid's zero cluster */
	write_pat(f, d, 3 * MIB - 256, 512, 9);   /* straddling the end of the base */
	assert_int_equal(rd(f, d, buf, 4 * MIB, 0), 4 * MIB);
	for (uint64_t i = 0; i < 4 * MIB; i++) {
		uint8_t want = i < 3 * MIB ? pat(i, 5) : 0;

		if (i >= 1 * MIB + 100 && i < 1 * MIB + 10100)
			want = pat(i, 6);
		if (i >= 2 * MIB && i < 2 * MIB + 64 * KIB)
			want = 0;
		if (i >= 1 * MIB + 5000 && i < 1 * MIB + 7000)
			want = pat(i, 7);
		if (i >= 2 * MIB + 4096 && i < 2 * MIB + 4608)
			want = pat(i, 8);
		if (i >= 3 * MIB - 256 && i < 3 * MIB + 256)
			want = pat(i, 9);
		if (buf[i] != want)
			fail_msg("byte %llu: %u, want %u", (unsigned long long)i, buf[i], want);
	}
	assert_int_equal(flush(f, d), 0);
	blk_close(d);
	assert_int_equal(stat(f->base, &after), 0);
	assert_int_equal(before.st_mtime, after.st_mtime);
	assert_int_equal(before.st_size, after.st_size);
	check(f, f->path, 0, 0);
	check(f, mid, 0, 0);
	free(buf);
}

/* The host offset of the first L2 table (from the L1 table). */
static uint64_t first_l2(struct fx *f, uint64_t *l1_off)
{
	uint8_t b[8];
	int fd = open(f->path, O_RDONLY);
	uint64_t off = 0;

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, b, 8, 40), 8);
	for (int i = 0; i < 8; i++)
		off = off << 8 | b[i];
	*l1_off = off;
	assert_int_equal(pread(fd, b, 8, (off_t)off), 8);
	off = 0;
	for (int i = 0; i < 8; i++)
		off = off << 8 | b[i];
	close(fd);
	return off & 0x00fffffffffffe00ULL;
}

static void poke64(struct fx *f, uint64_t off, uint64_t v)
{
	uint8_t b[8];
	int fd = open(f->path, O_RDWR);

	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (56 - 8 * i));
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, b, 8, (off_t)off), 8);
	close(fd);
}

static uint64_t peek64(struct fx *f, uint64_t off)
{
	uint8_t b[8];
	uint64_t v = 0;
	int fd = open(f->path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, b, 8, (off_t)off), 8);
	close(fd);
	for (int i = 0; i < 8; i++)
		v = v << 8 | b[i];
	return v;
}

static void test_corrupt_tables(void **state)
{
	struct fx *f = *state;
	struct blk_disk *d;
	uint64_t l1, l2;
	uint8_t buf[4096];

	/* an L2 entry pointing past the end of the file */
	make(f, f->path, 4 * MIB, 0, 0, 3, NULL, NULL);
	d = open_q(f, f->path, false, 0);
	write_pat(f, d, 0, 4096, 1);
	blk_close(d);
	l2 = first_l2(f, &l1);
	poke64(f, l2, (1ULL << 63) | (1ULL << 50));
	d = open_q(f, f->path, true, 0);
	assert_int_equal(rd(f, d, buf, 4096, 0), -EIO);
	blk_close(d);
	d = open_q(f, f->path, false, 0);
	assert_int_equal(rd(f, d, buf, 4096, 0), -EIO);
	/* marked corrupt: read-only from now on, in the file too */
	assert_int_equal(wr(f, d, buf, 4096, 65536), -EROFS);
	blk_close(d);
	assert_int_equal(peek64(f, 72) & 2, 2);
	assert_int_equal(qcow2_open(&d, f->path, false, 0, f->aio, f->err, sizeof(f->err)), -EROFS);

	/* a data cluster on top of the L1 table: the write is refused */
	make(f, f->path, 4 * MIB, 0, 0, 3, NULL, NULL);
	d = open_q(f, f->path, false, 0);
	write_pat(f, d, 0, 4096, 1);
	blk_close(d);
	l2 = first_l2(f, &l1);
	poke64(f, l2, (1ULL << 63) | l1);
	d = open_q(f, f->path, false, 0);
	assert_int_equal(wr(f, d, buf, 512, 0), -EIO);
	blk_close(d);
	assert_int_equal(peek64(f, 72) & 2, 2);

	/* reserved bits in L1 and L2 entries, misaligned tables */
	make(f, f->path, 4 * MIB, 0, 0, 3, NULL, NULL);
	d = open_q(f, f->path, false, 0);
	write_pat(f, d, 0, 4096, 1);
	blk_close(d);
	l2 = first_l2(f, &l1);
	poke64(f, l1, (1ULL << 63) | l2 | 0x100);
	d = open_q(f, f->path, true, 0);
	assert_int_equal(rd(f, d, buf, 4096, 0), -EIO);
	blk_close(d);
	poke64(f, l1, (1ULL << 63) | (l2 + 4096));
	d = open_q(f, f->path, true, 0);
	assert_int_equal(rd(f, d, buf, 4096, 0), -EIO);
	blk_close(d);
	poke64(f, l1, (1ULL << 63) | l2);
	poke64(f, l2, peek64(f, l2) | 0x2);
	d = open_q(f, f->path, true, 0);
	assert_int_equal(rd(f, d, buf, 4096, 0), -EIO);
	blk_close(d);
	/* a compressed entry pointing past the end */
	poke64(f, l2, (1ULL << 62) | (1ULL << 40));
	d = open_q(f, f->path, true, 0);
	assert_int_equal(rd(f, d, buf, 4096, 0), -EIO);
	blk_close(d);
	/* a compressed entry whose bytes are garbage */
	poke64(f, l2, (1ULL << 62) | 65536);
	d = open_q(f, f->path, true, 0);
	assert_int_equal(rd(f, d, buf, 4096, 0), -EIO);
	blk_close(d);
}

/* The host offset of the refcount block covering cluster 0, and its width. */
static uint64_t refblock(struct fx *f)
{
	return peek64(f, peek64(f, 48)) & ~511ULL;
}

static void test_check_repair(void **state)
{
	struct fx *f = *state;
	struct qcow2_check_res r;
	struct blk_disk *d;
	uint64_t rb, l1, l2;

	make(f, f->path, 4 * MIB, 0, 0, 3, NULL, NULL);
	d = open_q(f, f->path, false, 0);
	write_pat(f, d, 0, 256 * KIB, 3);
	blk_close(d);
	check(f, f->path, 0, 0);
	rb = refblock(f);
	/* cluster 20 is past everything: refcount 1 there is a leak */
	poke64(f, rb + 40, peek64(f, rb + 40) | 1ULL << 48);
	assert_int_equal(truncate(f->path, 21 * 65536), 0);
	check(f, f->path, 1, 0);
	d = open_q(f, f->path, false, QCOW2_OPEN_REPAIR | QCOW2_OPEN_NO_REPAIR);
	assert_int_equal(qcow2_check(d, QCOW2_REPAIR_LEAKS, NULL, &r), 0);
	assert_int_equal(r.leaks_fixed, 1);
	assert_int_equal(r.leaks, 0);
	blk_close(d);
	check(f, f->path, 0, 0);
	/* a used cluster with refcount 0 (cluster 5: data): a corruption */
	poke64(f, rb + 8, peek64(f, rb + 8) & ~(0xffffULL << 16));
	check(f, f->path, 0, 2); /* the refcount, and its COPIED flag */
	d = open_q(f, f->path, false, QCOW2_OPEN_REPAIR | QCOW2_OPEN_NO_REPAIR);
	assert_int_equal(qcow2_check(d, QCOW2_REPAIR_LEAKS, NULL, &r), 0);
	assert_true(r.corruptions > 0);
	assert_int_equal(qcow2_check(d, QCOW2_REPAIR_ALL, NULL, &r), 0);
	assert_int_equal(r.corruptions, 0);
	assert_int_equal(r.leaks, 0);
	assert_true(r.corruptions_fixed > 0);
	blk_close(d);
	check(f, f->path, 0, 0);
	d = open_q(f, f->path, true, 0);
	expect(f, d, 0, 256 * KIB, 3);
	blk_close(d);
	/* a COPIED flag dropped from an L2 entry */
	l2 = first_l2(f, &l1);
	poke64(f, l2, peek64(f, l2) & ~(1ULL << 63));
	check(f, f->path, 0, 1);
	d = open_q(f, f->path, false, QCOW2_OPEN_REPAIR);
	assert_int_equal(qcow2_check(d, QCOW2_REPAIR_ALL, NULL, &r), 0);
	assert_int_equal(r.corruptions, 0);
	blk_close(d);
	check(f, f->path, 0, 0);
	/* a check cannot repair through a read-only open */
	d = open_q(f, f->path, true, 0);
	assert_int_equal(qcow2_check(d, QCOW2_REPAIR_ALL, NULL, &r), -EROFS);
	blk_close(d);
}

static void test_lazy_crash(void **state)
{
	struct fx *f = *state;
	struct qcow2_create_opts o = { .size = 8 * MIB, .lazy_refcounts = true };
	struct blk_disk *d;
	pid_t pid;
	int st;

	assert_int_equal(qcow2_create(f->path, &o, f->err, sizeof(f->err)), 0);
	d = open_q(f, f->path, false, 0);
	write_pat(f, d, 0, 64 * KIB, 1);
	assert_int_equal(peek64(f, 72) & 1, 1); /* dirty while in use */
	blk_close(d);
	assert_int_equal(peek64(f, 72) & 1, 0);
	check(f, f->path, 0, 0);
	/* a writer that dies after a flush: refcounts behind, the dirty bit set */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct aio *a;
		struct blk_disk *cd;
		char err[256];
		uint8_t *b = malloc(MIB);
		struct iovec v = { b, MIB };
		struct blk_req r = { 0 };

		if (!b || aio_create(&a, 4, AIO_SYNC) < 0 ||
		    qcow2_open(&cd, f->path, false, 0, a, err, sizeof(err)) < 0)
			_exit(1);
		fill(b, MIB, 2 * MIB, 4);
		r.done = io_done;
		r.opaque = &(struct io){ 0 };
		if (blk_writev(cd, &r, &v, 1, 2 * MIB) < 0)
			_exit(1);
		aio_drain(a);
		if (blk_flush(cd, &r) < 0)
			_exit(1);
		aio_drain(a);
		_exit(0); /* no close */
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(peek64(f, 72) & 1, 1);
	/* the next writable open repairs the refcounts and clears the bit */
	d = open_q(f, f->path, false, 0);
	expect(f, d, 2 * MIB, MIB, 4);
	expect(f, d, 0, 64 * KIB, 1);
	blk_close(d);
	assert_int_equal(peek64(f, 72) & 1, 0);
	check(f, f->path, 0, 0);
}

/* Internal snapshots through the driver: writes after a snapshot copy the
 * shared L2 tables and data clusters first (partial and whole clusters,
 * across L2 tables, over a preallocated zero cluster); applying shows the
 * snapshot's data; deleting the last one makes writes go in place again;
 * the check is clean after every step. */
static void test_snapshot_cow(void **state)
{
	struct fx *f = *state;
	struct blk_disk *d;
	struct stat st1, st2;

	for (uint32_t cs = 512; cs <= 65536; cs *= 128) {
		make(f, f->path, 8 * MIB, cs, 0, 3, NULL, NULL);
		d = open_q(f, f->path, false, 0);
		write_pat(f, d, 0, 2 * MIB, 1);
		write_pat(f, d, 3 * MIB, 64 * KIB, 5);
		assert_int_equal(zero(f, d, 3 * MIB, 64 * KIB, false), 64 * KIB);
		assert_int_equal(qcow2_snapshot_create(d, "one"), 0);
		assert_int_equal(qcow2_snapshot_create(d, "one"), -EEXIST);
		assert_int_equal(qcow2_snapshot_create(d, ""), -EINVAL);
		write_pat(f, d, 1000, 3000, 2);
		write_pat(f, d, 64 * KIB, 512 * KIB, 2);
		write_pat(f, d, 3 * MIB + 512, 1024, 3);
		expect(f, d, 0, 1000, 1);
		expect(f, d, 1000, 3000, 2);
		expect(f, d, 64 * KIB, 512 * KIB, 2);
		expect(f, d, 3 * MIB, 512, 0);
		expect(f, d, 3 * MIB + 512, 1024, 3);
		assert_int_equal(flush(f, d), 0);
		blk_close(d);
		check(f, f->path, 0, 0);

		d = open_q(f, f->path, false, 0);
		assert_int_equal(qcow2_snapshot_apply(d, "one"), 0);
		expect(f, d, 0, 2 * MIB, 1);
		expect(f, d, 3 * MIB, 64 * KIB, 0);
		write_pat(f, d, 0, 4096, 4);
		expect(f, d, 0, 4096, 4);
		blk_close(d);
		check(f, f->path, 0, 0);

		d = open_q(f, f->path, false, 0);
		assert_int_equal(qcow2_snapshot_apply(d, "1"), 0); /* by ID */
		expect(f, d, 0, 2 * MIB, 1);
		assert_int_equal(qcow2_snapshot_apply(d, "two"), -ENOENT);
		assert_int_equal(qcow2_snapshot_delete(d, "one"), 0);
		assert_int_equal(qcow2_snapshot_delete(d, "one"), -ENOENT);
		expect(f, d, 0, 2 * MIB, 1);
		blk_close(d);
		check(f, f->path, 0, 0);

		/* nothing shared any more: writes go in place */
		assert_int_equal(stat(f->path, &st1), 0);
		d = open_q(f, f->path, false, 0);
		write_pat(f, d, 0, 2 * MIB, 6);
		blk_close(d);
		assert_int_equal(stat(f->path, &st2), 0);
		assert_int_equal(st1.st_size, st2.st_size);
		check(f, f->path, 0, 0);
	}
}

/* Many snapshots, each with its own writes, deleted out of order. */
static void test_snapshot_many(void **state)
{
	struct fx *f = *state;
	struct blk_disk *d;
	char name[16];

	make(f, f->path, 2 * MIB, 512, 0, 2, NULL, NULL);
	d = open_q(f, f->path, false, 0);
	for (int i = 1; i <= 12; i++) {
		write_pat(f, d, (uint64_t)i * 64 * KIB, 100 * KIB, (uint8_t)i);
		snprintf(name, sizeof(name), "s%d", i);
		assert_int_equal(qcow2_snapshot_create(d, name), 0);
	}
	blk_close(d);
	check(f, f->path, 0, 0);
	d = open_q(f, f->path, false, 0);
	for (int i = 1; i <= 12; i += 2) {
		snprintf(name, sizeof(name), "s%d", i);
		assert_int_equal(qcow2_snapshot_delete(d, name), 0);
	}
	assert_int_equal(qcow2_snapshot_apply(d, "s6"), 0);
	expect(f, d, 6 * 64 * KIB, 100 * KIB, 6);
	expect(f, d, 5 * 64 * KIB, 64 * KIB, 5);
	expect(f, d, 6 * 64 * KIB + 100 * KIB, 64 * KIB, 0);
	write_pat(f, d, 0, 2 * MIB, 9);
	blk_close(d);
	check(f, f->path, 0, 0);
}

/* A COPIED flag left on an entry of a shared L2 table (a damaged or
 * hostile image) does not make a write land in the snapshot's cluster. */
static void test_snapshot_stale_copied(void **state)
{
	struct fx *f = *state;
	struct blk_disk *d;
	uint64_t l1, l2;

	make(f, f->path, 4 * MIB, 0, 0, 3, NULL, NULL);
	d = open_q(f, f->path, false, 0);
	write_pat(f, d, 0, 64 * KIB, 1);
	assert_int_equal(qcow2_snapshot_create(d, "s"), 0);
	blk_close(d);
	l2 = first_l2(f, &l1);
	poke64(f, l2, peek64(f, l2) | (1ULL << 63));
	d = open_q(f, f->path, false, 0);
	write_pat(f, d, 0, 4096, 2);
	expect(f, d, 0, 4096, 2);
	assert_int_equal(qcow2_snapshot_apply(d, "s"), 0);
	expect(f, d, 0, 64 * KIB, 1);
	blk_close(d);
	check(f, f->path, 0, 0);
}

/* A refcount width that cannot count a second reference: the snapshot is
 * refused and the image left as it was. */
static void test_snapshot_refcount_width(void **state)
{
	struct fx *f = *state;
	struct blk_disk *d;

	make(f, f->path, 4 * MIB, 0, 1, 3, NULL, NULL);
	d = open_q(f, f->path, false, 0);
	write_pat(f, d, 0, 200 * KIB, 1);
	assert_int_equal(qcow2_snapshot_create(d, "s"), -ERANGE);
	expect(f, d, 0, 200 * KIB, 1);
	write_pat(f, d, 100 * KIB, 4 * KIB, 2);
	blk_close(d);
	check(f, f->path, 0, 0);
	d = open_q(f, f->path, true, 0);
	assert_int_equal(qcow2_snapshot_create(d, "s"), -EROFS);
	blk_close(d);
}

static void fill_text(uint8_t *b, size_t len, uint64_t seed)
{
	for (size_t i = 0; i < len; i++)
		b[i] = (uint8_t)("0123456789\n"[(i + seed) % 11]);
}

/* Compressed writes: compressible clusters shrink (zlib and zstd),
 * incompressible ones are written plainly, both read back; overwriting a
 * compressed cluster copies it; misaligned or partial writes are refused. */
static void test_compressed_write(void **state)
{
	struct fx *f = *state;

	for (uint8_t type = 0; type <= 1; type++) {
		struct qcow2_create_opts o = { .size = 4 * MIB, .cluster_size = 4096,
			                       .compression = type };
		struct qcow2_check_res r;
		struct blk_disk *d;
		uint8_t *b = malloc(64 * KIB), *got = malloc(64 * KIB);
		struct stat st;

		assert_non_null(b);
		assert_non_null(got);
		assert_int_equal(qcow2_create(f->path, &o, f->err, sizeof(f->err)), 0);
		d = open_q(f, f->path, false, 0);
		for (uint64_t c = 0; c < 256; c++) {
			if (c % 16 == 15)
				fill(b, 4096, c * 4096, 7); /* does not shrink */
			else
				fill_text(b, 4096, c);
			assert_int_equal(qcow2_write_compressed(d, c * 4096, b), 0);
		}
		assert_int_equal(qcow2_write_compressed(d, 100, b), -EINVAL);
		assert_int_equal(qcow2_write_compressed(d, 4 * MIB, b), -EINVAL);
		for (uint64_t c = 0; c < 256; c++) {
			if (c % 16 == 15)
				fill(b, 4096, c * 4096, 7);
			else
				fill_text(b, 4096, c);
			assert_int_equal(rd(f, d, got, 4096, c * 4096), 4096);
			assert_memory_equal(got, b, 4096);
		}
		write_pat(f, d, 8192 + 100, 200, 3);
		expect(f, d, 8192 + 100, 200, 3);
		assert_int_equal(qcow2_check(d, QCOW2_REPAIR_NONE, NULL, &r), 0);
		assert_int_equal(r.corruptions + r.leaks, 0);
		assert_true(r.compressed > 200);
		blk_close(d);
		check(f, f->path, 0, 0);
		assert_int_equal(stat(f->path, &st), 0);
		assert_true(st.st_size < 512 * KIB);
		free(b);
		free(got);
	}
}

static void test_resize(void **state)
{
	struct fx *f = *state;
	struct blk_disk *d;

	make(f, f->path, 1 * MIB, 512, 0, 3, NULL, NULL);
	d = open_q(f, f->path, false, 0);
	write_pat(f, d, 0, MIB, 1);
	assert_int_equal(qcow2_resize(d, 100 * MIB), 0);
	assert_int_equal(blk_size(d), 100 * MIB);
	write_pat(f, d, 99 * MIB, MIB, 2);
	assert_int_equal(qcow2_resize(d, 50 * MIB), -ENOTSUP);
	blk_close(d);
	check(f, f->path, 0, 0);
	d = open_q(f, f->path, true, 0);
	assert_int_equal(blk_size(d), 100 * MIB);
	expect(f, d, 0, MIB, 1);
	expect(f, d, 99 * MIB, MIB, 2);
	expect(f, d, 50 * MIB, MIB, 0);
	blk_close(d);
}

static void test_probe_guard(void **state)
{
	struct fx *f = *state;
	static const uint8_t magic[512] = { 'Q', 'F', 'I', 0xfb };
	uint8_t other[512] = { 1, 2, 3, 4 };
	struct blk_disk *d;

	make_base(f, MIB, 1);
	assert_int_equal(qcow2_probe(f->base), QCOW2_FMT_RAW);
	/* found by probing: the guest cannot turn it into qcow2 */
	assert_int_equal(qcow2_open_any(&d, f->base, NULL, false, f->aio, f->err, sizeof(f->err)),
	                 0);
	assert_int_equal(wr(f, d, magic, sizeof(magic), 0), -EPERM);
	assert_int_equal(wr(f, d, other, sizeof(other), 0), 512);
	assert_int_equal(wr(f, d, magic, sizeof(magic), 512), 512);
	assert_int_equal(zero(f, d, 0, 4096, true), 4096);
	assert_int_equal(flush(f, d), 0);
	blk_close(d);
	assert_int_equal(qcow2_probe(f->base), QCOW2_FMT_RAW);
	/* format=raw: the bytes are the guest's to write */
	assert_int_equal(qcow2_open_any(&d, f->base, "raw", false, f->aio, f->err, sizeof(f->err)),
	                 0);
	assert_int_equal(wr(f, d, magic, sizeof(magic), 0), 512);
	blk_close(d);
	assert_int_equal(qcow2_probe(f->base), QCOW2_FMT_QCOW2);
	/* ... and now, probed, it is refused as a broken qcow2 image */
	assert_true(qcow2_open_any(&d, f->base, NULL, true, f->aio, f->err, sizeof(f->err)) < 0);
	/* a qcow2 image is found by probing, and format=qcow2 refuses raw files */
	make(f, f->path, MIB, 0, 0, 3, NULL, NULL);
	assert_int_equal(qcow2_open_any(&d, f->path, NULL, true, f->aio, f->err, sizeof(f->err)),
	                 0);
	assert_true(qcow2_is(d));
	blk_close(d);
	make_base(f, MIB, 1);
	assert_int_equal(qcow2_open_any(&d, f->base, "qcow2", true, f->aio, f->err,
	                                sizeof(f->err)),
	                 -EINVAL);
	assert_int_equal(qcow2_open_any(&d, f->base, "vmdk", true, f->aio, f->err,
	                                sizeof(f->err)),
	                 -EINVAL);
}

static void test_locking(void **state)
{
	struct fx *f = *state;
	struct blk_disk *a, *b;

	make(f, f->path, MIB, 0, 0, 3, NULL, NULL);
	a = open_q(f, f->path, false, 0);
	assert_int_equal(qcow2_open(&b, f->path, false, 0, f->aio, f->err, sizeof(f->err)), -EBUSY);
	assert_non_null(strstr(f->err, "in use"));
	assert_int_equal(qcow2_open(&b, f->path, true, 0, f->aio, f->err, sizeof(f->err)), -EBUSY);
	blk_close(a);
	a = open_q(f, f->path, true, 0);
	b = open_q(f, f->path, true, 0);
	blk_close(a);
	blk_close(b);
}

/* Live migration's lock hand-over: the destination opens the image while the
 * source holds it, writes nothing, and reloads everything when it takes over. */
static void test_handover(void **state)
{
	struct fx *f = *state;
	struct blk_disk *src, *dst;
	uint8_t b[512];

	make(f, f->path, 8 * MIB, 0, 0, 3, NULL, NULL);
	src = open_q(f, f->path, false, 0);
	write_pat(f, src, 0, 64 * KIB, 1);
	blk_defer_locks(true);
	dst = open_q(f, f->path, false, 0);
	blk_defer_locks(false);
	assert_int_equal(rd(f, dst, b, sizeof(b), 0), -EBUSY); /* not ours yet */
	/* the source goes on: a new L2 table, clusters, refcounts */
	write_pat(f, src, 5 * MIB, 200 * KIB, 2);
	assert_int_equal(src->drv->set_locked(src, false), 0);
	/* switch-over: the destination takes the lock and sees everything */
	expect(f, dst, 0, 64 * KIB, 1);
	expect(f, dst, 5 * MIB, 200 * KIB, 2);
	write_pat(f, dst, 7 * MIB, 100 * KIB, 3);
	assert_int_equal(flush(f, dst), 0);
	/* the source cannot have it back now; it is closed without writing */
	assert_int_equal(src->drv->set_locked(src, true), -EBUSY);
	blk_close(src);
	blk_close(dst);
	check(f, f->path, 0, 0);
	/* a failed migration: the source takes its lock back and goes on */
	src = open_q(f, f->path, false, 0);
	assert_int_equal(src->drv->set_locked(src, false), 0);
	assert_int_equal(src->drv->set_locked(src, true), 0);
	write_pat(f, src, 6 * MIB, 4 * KIB, 4);
	expect(f, src, 7 * MIB, 100 * KIB, 3);
	blk_close(src);
	check(f, f->path, 0, 0);
}

#define T(fn, s) cmocka_unit_test_setup_teardown(fn, s, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_rw, setup_uring),
		T(test_rw, setup_sync),
		T(test_refcount_widths, setup_sync),
		T(test_zero_discard, setup_uring),
		T(test_zero_discard, setup_sync),
		T(test_backing_chain, setup_uring),
		T(test_backing_chain, setup_sync),
		T(test_corrupt_tables, setup_sync),
		T(test_check_repair, setup_sync),
		T(test_lazy_crash, setup_sync),
		T(test_snapshot_cow, setup_uring),
		T(test_snapshot_cow, setup_sync),
		T(test_snapshot_many, setup_sync),
		T(test_snapshot_stale_copied, setup_sync),
		T(test_snapshot_refcount_width, setup_sync),
		T(test_compressed_write, setup_sync),
		T(test_resize, setup_uring),
		T(test_probe_guard, setup_sync),
		T(test_locking, setup_sync),
		T(test_handover, setup_sync),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
