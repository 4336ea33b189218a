/* Unit tests for the raw driver and the I/O engine (block/raw.c, block/aio.c)
 * on temporary files, each I/O test run twice: through io_uring and through
 * the synchronous fallback. Also the image lock (OFD locks conflict between
 * two opens in one process too, so no second process is needed). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "block/aio.h"
#include "block/block.h"

#define KIB 1024u
#define MIB (1024u * 1024u)
#define DISK_SIZE (4 * MIB)

static const unsigned mode_uring = 0;
static const unsigned mode_sync = AIO_SYNC;

struct fixture {
	char path[64];
	struct aio *aio;
	struct blk_disk *disk;
	char err[256];
};

/* one request and what its callback saw */
struct io {
	struct blk_req req;
	int calls;
	int64_t res;
};

static bool in_submit; /* a callback running inside a submit call is a bug */

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

static uint8_t pattern(uint64_t off)
{
	return (uint8_t)(off * 31 + (off >> 9) + 7);
}

static int make_file(char *path, size_t pathlen, const char *dir, uint64_t size)
{
	uint8_t buf[4096];
	int fd;

	snprintf(path, pathlen, "%s/cvisor-blk-XXXXXX", dir);
	fd = mkstemp(path);
	if (fd < 0)
		return -1;
	for (uint64_t off = 0; off < size; off += sizeof(buf)) {
		size_t n = size - off < sizeof(buf) ? size - off : sizeof(buf);

		for (size_t i = 0; i < n; i++)
			buf[i] = pattern(off + i);
		if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n) {
			close(fd);
			return -1;
		}
	}
	close(fd);
	return 0;
}

static int setup_in(void **state, const char *dir, uint64_t size)
{
	unsigned mode = *(const unsigned *)*state;
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	if (make_file(f->path, sizeof(f->path), dir, size) < 0)
		goto fail;
	if (aio_create(&f->aio, 64, mode) < 0)
		goto fail;
	if (blk_raw_driver.open(&f->disk, f->path, false, f->aio, f->err, sizeof(f->err)) < 0)
		goto fail;
	*state = f;
	return 0;
fail:
	if (f->path[0])
		unlink(f->path);
	aio_destroy(f->aio);
	free(f);
	return -1;
}

static int setup(void **state)
{
	return setup_in(state, "/tmp", DISK_SIZE);
}

static int setup_shm(void **state)
{
	return setup_in(state, "/dev/shm", DISK_SIZE);
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	aio_drain(f->aio);
	blk_close(f->disk);
	aio_destroy(f->aio);
	unlink(f->path);
	free(f);
	return 0;
}

/* Run the engine until io completes (as an event loop would). */
static void wait_io(struct fixture *f, struct io *io)
{
	for (int i = 0; i < 10000 && !io->calls; i++) {
		struct pollfd p = { .fd = aio_fd(f->aio), .events = POLLIN };

		poll(&p, 1, 1000);
		assert_true(aio_poll(f->aio) >= 0);
	}
	assert_int_equal(io->calls, 1);
}

static int submit_read(struct fixture *f, struct io *io, const struct iovec *iov, int n,
                       uint64_t off)
{
	int rc;

	io_init(io);
	in_submit = true;
	rc = blk_readv(f->disk, &io->req, iov, n, off);
	in_submit = false;
	return rc;
}

static int submit_write(struct fixture *f, struct io *io, const struct iovec *iov, int n,
                        uint64_t off)
{
	int rc;

	io_init(io);
	in_submit = true;
	rc = blk_writev(f->disk, &io->req, iov, n, off);
	in_submit = false;
	return rc;
}

static int64_t do_read(struct fixture *f, void *buf, size_t len, uint64_t off)
{
	struct iovec v = { buf, len };
	struct io io;

	assert_int_equal(submit_read(f, &io, &v, 1, off), 0);
	assert_int_equal(io.calls, 0);
	wait_io(f, &io);
	return io.res;
}

static int64_t do_write(struct fixture *f, const void *buf, size_t len, uint64_t off)
{
	struct iovec v = { (void *)buf, len };
	struct io io;

	assert_int_equal(submit_write(f, &io, &v, 1, off), 0);
	wait_io(f, &io);
	return io.res;
}

static int64_t do_range(struct fixture *f, enum blk_op op, uint64_t off, uint64_t len,
                        bool unmap)
{
	struct io io;
	int rc;

	io_init(&io);
	in_submit = true;
	if (op == BLK_OP_DISCARD)
		rc = blk_discard(f->disk, &io.req, off, len);
	else if (op == BLK_OP_WRITE_ZEROES)
		rc = blk_write_zeroes(f->disk, &io.req, off, len, unmap);
	else
		rc = blk_flush(f->disk, &io.req);
	in_submit = false;
	assert_int_equal(rc, 0);
	assert_int_equal(io.calls, 0);
	wait_io(f, &io);
	return io.res;
}

static void check_pattern(struct fixture *f, uint64_t off, uint64_t len)
{
	uint8_t *buf = malloc(len);

	assert_non_null(buf);
	assert_int_equal(do_read(f, buf, len, off), (int64_t)len);
	for (uint64_t i = 0; i < len; i++) {
		if (buf[i] != pattern(off + i))
			fail_msg("byte %llu: %u != %u", (unsigned long long)(off + i), buf[i],
			         pattern(off + i));
	}
	free(buf);
}

static void check_zero(struct fixture *f, uint64_t off, uint64_t len)
{
	uint8_t *buf = malloc(len);

	assert_non_null(buf);
	memset(buf, 0x5a, len);
	assert_int_equal(do_read(f, buf, len, off), (int64_t)len);
	for (uint64_t i = 0; i < len; i++) {
		if (buf[i])
			fail_msg("byte %llu is %u, not 0", (unsigned long long)(off + i), buf[i]);
	}
	free(buf);
}

static uint64_t file_size(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

static void test_size(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(blk_size(f->disk), DISK_SIZE);
	assert_false(f->disk->readonly);
	assert_true(f->disk->block_size >= 512);
}

static void test_read(void **state)
{
	struct fixture *f = *state;

	check_pattern(f, 0, 4096);
	check_pattern(f, 12345, 777);
	check_pattern(f, DISK_SIZE - 512, 512);
}

static void test_write_read_iov(void **state)
{
	struct fixture *f = *state;
	uint8_t a[100], b[412], c[1536], back[2048];
	struct iovec w[3] = { { a, sizeof(a) }, { b, sizeof(b) }, { c, sizeof(c) } };
	struct iovec r[2] = { { back, 1000 }, { back + 1000, 1048 } };
	struct io io;

	for (size_t i = 0; i < sizeof(a); i++)
		a[i] = (uint8_t)(i ^ 0x11);
	memset(b, 0x22, sizeof(b));
	memset(c, 0x33, sizeof(c));
	assert_int_equal(submit_write(f, &io, w, 3, 8192), 0);
	wait_io(f, &io);
	assert_int_equal(io.res, 2048);
	memset(back, 0, sizeof(back));
	assert_int_equal(submit_read(f, &io, r, 2, 8192), 0);
	wait_io(f, &io);
	assert_int_equal(io.res, 2048);
	assert_memory_equal(back, a, sizeof(a));
	assert_memory_equal(back + 100, b, sizeof(b));
	assert_memory_equal(back + 512, c, sizeof(c));
	check_pattern(f, 0, 8192);
	check_pattern(f, 8192 + 2048, 4096);
}

#define NR_PAR 48

static void test_many_in_flight(void **state)
{
	struct fixture *f = *state;
	static uint8_t bufs[NR_PAR][4096];
	struct iovec v[NR_PAR];
	struct io io[NR_PAR];
	int done = 0;

	aio_plug(f->aio);
	for (int i = 0; i < NR_PAR; i++) {
		memset(bufs[i], i + 1, sizeof(bufs[i]));
		v[i] = (struct iovec){ bufs[i], sizeof(bufs[i]) };
		/* every other 4 KiB block, backwards */
		uint64_t off = (uint64_t)(NR_PAR - i) * 8192;

		assert_int_equal(submit_write(f, &io[i], &v[i], 1, off), 0);
	}
	aio_unplug(f->aio);
	assert_int_equal(aio_inflight(f->aio), NR_PAR);
	while (done < NR_PAR) {
		struct pollfd p = { .fd = aio_fd(f->aio), .events = POLLIN };

		assert_true(poll(&p, 1, 5000) > 0);
		done += aio_poll(f->aio);
	}
	assert_int_equal(aio_inflight(f->aio), 0);
	for (int i = 0; i < NR_PAR; i++) {
		assert_int_equal(io[i].calls, 1);
		assert_int_equal(io[i].res, 4096);
		memset(bufs[i], 0, sizeof(bufs[i]));
		assert_int_equal(submit_read(f, &io[i], &v[i], 1, (uint64_t)(NR_PAR - i) * 8192),
		                 0);
	}
	aio_drain(f->aio);
	for (int i = 0; i < NR_PAR; i++) {
		assert_int_equal(io[i].calls, 1);
		assert_int_equal(io[i].res, 4096);
		for (int j = 0; j < 4096; j++)
			assert_int_equal(bufs[i][j], i + 1);
	}
	/* the blocks in between were not touched */
	check_pattern(f, (uint64_t)NR_PAR * 8192 + 4096, 4096);
	check_pattern(f, 8192 + 4096, 4096);
}

static void test_flush(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[512];

	memset(buf, 0x77, sizeof(buf));
	assert_int_equal(do_write(f, buf, sizeof(buf), 0), 512);
	assert_int_equal(do_range(f, BLK_OP_FLUSH, 0, 0, false), 0);
}

static void test_discard(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(do_range(f, BLK_OP_DISCARD, 64 * KIB, 128 * KIB, false), 128 * KIB);
	/* on a file system that punches holes the range reads back as zeroes;
	 * the guest may not rely on that, but the neighbours must be intact */
	check_pattern(f, 60 * KIB, 4 * KIB);
	check_pattern(f, 192 * KIB, 4 * KIB);
	assert_int_equal(file_size(f->path), DISK_SIZE);
	assert_int_equal(blk_size(f->disk), DISK_SIZE);
}

static void test_write_zeroes(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(do_range(f, BLK_OP_WRITE_ZEROES, 4096 + 512, 8192, false), 8192);
	check_zero(f, 4096 + 512, 8192);
	check_pattern(f, 0, 4096 + 512);
	check_pattern(f, 4096 + 512 + 8192, 4096);
	assert_int_equal(file_size(f->path), DISK_SIZE);
}

static void test_write_zeroes_unmap(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(do_range(f, BLK_OP_WRITE_ZEROES, 1 * MIB, 1 * MIB + 512, true),
	                 1 * MIB + 512);
	check_zero(f, 1 * MIB, 1 * MIB + 512);
	check_pattern(f, 1 * MIB - 4096, 4096);
	check_pattern(f, 2 * MIB + 512, 4096);
	assert_int_equal(file_size(f->path), DISK_SIZE);
	/* unmapped at the end of the file too, still the same size */
	assert_int_equal(do_range(f, BLK_OP_WRITE_ZEROES, DISK_SIZE - 4096, 4096, true), 4096);
	check_zero(f, DISK_SIZE - 4096, 4096);
	assert_int_equal(file_size(f->path), DISK_SIZE);
}

/* tmpfs punches holes but has no ZERO_RANGE: zeroes are written as data,
 * in several chunks for a range over 1 MiB */
static void test_write_zeroes_by_writing(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(do_range(f, BLK_OP_WRITE_ZEROES, 512, 3 * MIB - 1024, false),
	                 3 * MIB - 1024);
	check_zero(f, 512, 3 * MIB - 1024);
	check_pattern(f, 0, 512);
	check_pattern(f, 3 * MIB - 512, 4096);
	assert_int_equal(file_size(f->path), DISK_SIZE);
	assert_int_equal(do_range(f, BLK_OP_WRITE_ZEROES, 3 * MIB, 4096, true), 4096);
	check_zero(f, 3 * MIB, 4096);
}

/* The image shrank under us (another process, or a crafted file): the part
 * past the end of the file reads as zeroes and the read still succeeds. */
static void test_short_read_at_eof(void **state)
{
	struct fixture *f = *state;
	static uint8_t buf[16384];
	struct iovec v[3] = { { buf, 4096 }, { buf + 4096, 4096 }, { buf + 8192, 8192 } };
	struct io io;

	/* the file ends 1000 bytes into the second buffer */
	assert_int_equal(truncate(f->path, 8192 + 1000), 0);
	memset(buf, 0x5a, sizeof(buf));
	assert_int_equal(submit_read(f, &io, v, 3, 4096), 0);
	wait_io(f, &io);
	assert_int_equal(io.res, sizeof(buf));
	for (int i = 0; i < (int)sizeof(buf); i++) {
		if (i < 4096 + 1000)
			assert_int_equal(buf[i], pattern(4096 + (uint64_t)i));
		else
			assert_int_equal(buf[i], 0);
	}
	/* entirely past the end */
	memset(buf, 0x5a, sizeof(buf));
	assert_int_equal(do_read(f, buf, sizeof(buf), 1 * MIB), sizeof(buf));
	for (size_t i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 0);
}

/* A write cut short (here by RLIMIT_FSIZE) is resubmitted for the rest; the
 * resubmission fails, and the request fails with that error. */
static void test_short_write(void **state)
{
	struct fixture *f = *state;
	struct rlimit old, lim;
	uint8_t buf[8192];
	struct iovec v[3] = { { buf, 1024 }, { buf + 1024, 1024 }, { buf + 2048, 6144 } };
	void (*old_sig)(int);
	struct io io;

	memset(buf, 0xee, sizeof(buf));
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 4096 + 2048;
	old_sig = signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	assert_int_equal(submit_write(f, &io, v, 3, 4096), 0);
	wait_io(f, &io);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, old_sig);
	/* 2048 bytes (the first two buffers) went in, the rest was refused */
	assert_int_equal(io.res, -EFBIG);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(do_read(f, buf, 2048, 4096), 2048);
	for (int i = 0; i < 2048; i++)
		assert_int_equal(buf[i], 0xee);
	check_pattern(f, 4096 + 2048, 4096);
}

/* More requests than the ring holds: the rest wait in the backlog. */
static void test_backlog(void **state)
{
	struct fixture *f = *state;
	static uint8_t bufs[40][512];
	struct iovec v[40];
	struct io io[40];
	struct aio *small = NULL;
	struct blk_disk *d = NULL;

	blk_close(f->disk);
	f->disk = NULL;
	assert_int_equal(aio_create(&small, 2, aio_is_uring(f->aio) ? 0 : AIO_SYNC), 0);
	assert_int_equal(blk_raw_driver.open(&d, f->path, false, small, f->err, sizeof(f->err)), 0);
	for (int i = 0; i < 40; i++) {
		v[i] = (struct iovec){ bufs[i], 512 };
		io_init(&io[i]);
		if (i % 2)
			memset(bufs[i], i, 512);
		assert_int_equal(i % 2 ? blk_writev(d, &io[i].req, &v[i], 1, (uint64_t)i * 4096)
		                       : blk_readv(d, &io[i].req, &v[i], 1, (uint64_t)i * 4096),
		                 0);
	}
	assert_int_equal(aio_inflight(small), 40);
	aio_drain(small);
	for (int i = 0; i < 40; i++) {
		assert_int_equal(io[i].calls, 1);
		assert_int_equal(io[i].res, 512);
		if (!(i % 2))
			assert_int_equal(bufs[i][7], pattern((uint64_t)i * 4096 + 7));
	}
	blk_close(d);
	aio_destroy(small);
	assert_int_equal(blk_raw_driver.open(&f->disk, f->path, false, f->aio, f->err,
	                                     sizeof(f->err)),
	                 0);
	check_pattern(f, 0, 512);
	assert_int_equal(do_read(f, bufs[0], 512, 39 * 4096), 512);
	assert_int_equal(bufs[0][0], 39);
}

static void test_zero_length(void **state)
{
	struct fixture *f = *state;
	struct io io;

	assert_int_equal(submit_read(f, &io, NULL, 0, 4096), 0);
	assert_int_equal(io.calls, 0); /* still not from inside the submit */
	wait_io(f, &io);
	assert_int_equal(io.res, 0);
	assert_int_equal(do_range(f, BLK_OP_DISCARD, 0, 0, false), 0);
}

static void test_out_of_range(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[1024];
	struct iovec v = { buf, sizeof(buf) };
	struct io io;

	assert_int_equal(submit_write(f, &io, &v, 1, DISK_SIZE - 512), -EINVAL);
	assert_int_equal(submit_read(f, &io, &v, 1, DISK_SIZE), -EINVAL);
	assert_int_equal(submit_write(f, &io, &v, 1, UINT64_MAX - 100), -EINVAL);
	io_init(&io);
	assert_int_equal(blk_discard(f->disk, &io.req, DISK_SIZE, 1), -EINVAL);
	assert_int_equal(blk_write_zeroes(f->disk, &io.req, 512, UINT64_MAX, false), -EINVAL);
	assert_int_equal(submit_read(f, &io, &v, -1, 0), -EINVAL);
	/* none of them called back */
	aio_drain(f->aio);
	assert_int_equal(io.calls, 0);
	assert_int_equal(file_size(f->path), DISK_SIZE);
}

static void test_drain(void **state)
{
	struct fixture *f = *state;
	static uint8_t buf[16][4096];
	struct iovec v[16];
	struct io io[16];

	for (int i = 0; i < 16; i++) {
		v[i] = (struct iovec){ buf[i], sizeof(buf[i]) };
		assert_int_equal(submit_read(f, &io[i], &v[i], 1, (uint64_t)i * 65536), 0);
	}
	aio_drain(f->aio);
	assert_int_equal(aio_inflight(f->aio), 0);
	for (int i = 0; i < 16; i++) {
		assert_int_equal(io[i].calls, 1);
		assert_int_equal(io[i].res, 4096);
		assert_int_equal(buf[i][100], pattern((uint64_t)i * 65536 + 100));
	}
}

/* Read-only disk: writes refused before reaching the file. */
static void test_readonly(void **state)
{
	struct fixture *f = *state;
	struct blk_disk *ro = NULL;
	uint8_t buf[512] = { 0 };
	struct iovec v = { buf, sizeof(buf) };
	struct io io;

	blk_close(f->disk); /* our writer would lock the reader out */
	f->disk = NULL;
	assert_int_equal(blk_raw_driver.open(&ro, f->path, true, f->aio, f->err, sizeof(f->err)),
	                 0);
	assert_true(ro->readonly);
	io_init(&io);
	assert_int_equal(blk_writev(ro, &io.req, &v, 1, 0), -EROFS);
	assert_int_equal(blk_write_zeroes(ro, &io.req, 0, 512, false), -EROFS);
	assert_int_equal(blk_discard(ro, &io.req, 0, 512), -EROFS);
	assert_int_equal(blk_readv(ro, &io.req, &v, 1, 512), 0);
	aio_drain(f->aio);
	assert_int_equal(io.calls, 1);
	assert_int_equal(io.res, 512);
	assert_int_equal(buf[1], pattern(513));
	blk_close(ro);
	assert_int_equal(blk_raw_driver.open(&f->disk, f->path, false, f->aio, f->err,
	                                     sizeof(f->err)),
	                 0);
}

static void test_lock_second_writer(void **state)
{
	struct fixture *f = *state;
	struct blk_disk *d = NULL;
	char want[128];

	snprintf(want, sizeof(want), "disk %s is in use by another process (locked)", f->path);
	assert_int_equal(blk_raw_driver.open(&d, f->path, false, f->aio, f->err, sizeof(f->err)),
	                 -EBUSY);
	assert_string_equal(f->err, want);
	assert_null(d);
	/* a reader is refused while the writer holds it, with the same line */
	f->err[0] = 0;
	assert_int_equal(blk_raw_driver.open(&d, f->path, true, f->aio, f->err, sizeof(f->err)),
	                 -EBUSY);
	assert_string_equal(f->err, want);
	/* once the writer closes, the image is free again */
	blk_close(f->disk);
	f->disk = NULL;
	assert_int_equal(blk_raw_driver.open(&f->disk, f->path, false, f->aio, f->err,
	                                     sizeof(f->err)),
	                 0);
}

static void test_lock_readers_share(void **state)
{
	struct fixture *f = *state;
	struct blk_disk *r1 = NULL, *r2 = NULL, *w = NULL;

	blk_close(f->disk);
	f->disk = NULL;
	assert_int_equal(blk_raw_driver.open(&r1, f->path, true, f->aio, f->err, sizeof(f->err)),
	                 0);
	assert_int_equal(blk_raw_driver.open(&r2, f->path, true, f->aio, f->err, sizeof(f->err)),
	                 0);
	assert_int_equal(blk_raw_driver.open(&w, f->path, false, f->aio, f->err, sizeof(f->err)),
	                 -EBUSY);
	assert_non_null(strstr(f->err, "in use by another process (locked)"));
	blk_close(r1);
	assert_int_equal(blk_raw_driver.open(&w, f->path, false, f->aio, f->err, sizeof(f->err)),
	                 -EBUSY);
	blk_close(r2);
	assert_int_equal(blk_raw_driver.open(&f->disk, f->path, false, f->aio, f->err,
	                                     sizeof(f->err)),
	                 0);
}

static void test_open_errors(void **state)
{
	struct fixture *f = *state;
	struct blk_disk *d = NULL;

	assert_int_equal(blk_raw_driver.open(&d, "/nonexistent/cvisor.img", false, f->aio, f->err,
	                                     sizeof(f->err)),
	                 -ENOENT);
	assert_string_equal(f->err, "disk /nonexistent/cvisor.img: No such file or directory");
	assert_int_equal(blk_raw_driver.open(&d, "/tmp", true, f->aio, f->err, sizeof(f->err)),
	                 -EINVAL);
	assert_string_equal(f->err, "disk /tmp: not a regular file or block device");
	assert_true(blk_raw_driver.open(&d, "/tmp", false, f->aio, f->err, sizeof(f->err)) < 0);
	assert_true(blk_raw_driver.open(&d, "/dev/null", true, f->aio, f->err, sizeof(f->err)) < 0);
	assert_null(d);
}

static void test_engine_mode(void **state)
{
	struct aio *a = NULL;
	bool uring;

	(void)state;
	assert_int_equal(aio_create(&a, 8, AIO_SYNC), 0);
	assert_false(aio_is_uring(a));
	assert_true(aio_fd(a) >= 0);
	assert_int_equal(aio_poll(a), 0);
	aio_drain(a);
	aio_destroy(a);
	/* io_uring when the kernel allows it; either way a working engine */
	assert_int_equal(aio_create(&a, 100000, 0), 0);
	assert_int_equal(aio_poll(a), 0);
	uring = aio_is_uring(a);
	aio_destroy(a);
	if (!uring) {
		/* the "io_uring" runs of the other tests used the fallback */
		print_message("io_uring unavailable here (seccomp or old kernel)\n");
		skip();
	}
}

#define BOTH(fn)                                                                         \
	cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, (void *)&mode_uring), \
	cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, (void *)&mode_sync)
#define BOTH_SHM(fn)                                                                         \
	cmocka_unit_test_prestate_setup_teardown(fn, setup_shm, teardown, (void *)&mode_uring), \
	cmocka_unit_test_prestate_setup_teardown(fn, setup_shm, teardown, (void *)&mode_sync)
#define ONCE(fn) cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, (void *)&mode_sync)

int main(void)
{
	const struct CMUnitTest tests[] = {
		ONCE(test_size),
		BOTH(test_read),
		BOTH(test_write_read_iov),
		BOTH(test_many_in_flight),
		BOTH(test_flush),
		BOTH(test_discard),
		BOTH(test_write_zeroes),
		BOTH(test_write_zeroes_unmap),
		BOTH_SHM(test_write_zeroes_by_writing),
		BOTH(test_short_read_at_eof),
		BOTH(test_short_write),
		BOTH(test_zero_length),
		BOTH(test_out_of_range),
		BOTH(test_drain),
		BOTH(test_backlog),
		BOTH(test_readonly),
		ONCE(test_lock_second_writer),
		ONCE(test_lock_readers_share),
		ONCE(test_open_errors),
		cmocka_unit_test(test_engine_mode),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
