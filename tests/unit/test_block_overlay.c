/* Unit tests for external overlays of open disks (block/overlay.c): the
 * overlay's name, creating it next to a raw or qcow2 image (never over an
 * existing file), the lock hand-over from the open image to the overlay's
 * backing file and back (cancel), and, when qemu-img is installed, that
 * QEMU finds the frozen base and the overlay clean and reads the same data. */
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
#include <unistd.h>

#include <cmocka.h>

#include "block/aio.h"
#include "block/overlay.h"
#include "block/qcow2.h"

#define MIB (1024u * 1024u)
#define SIZE (4 * MIB)

struct fx {
	char dir[64];
	char image[128];
	struct aio *aio;
	char err[1024];
};

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

static int64_t rw(struct fx *f, struct blk_disk *d, bool write, void *buf, size_t len,
                  uint64_t off)
{
	struct iovec v = { buf, len };
	struct io io;
	int rc;

	memset(&io, 0, sizeof(io));
	io.req.done = io_done;
	io.req.opaque = &io;
	rc = write ? blk_writev(d, &io.req, &v, 1, off) : blk_readv(d, &io.req, &v, 1, off);
	if (rc < 0)
		return rc;
	aio_drain(f->aio);
	assert_int_equal(io.calls, 1);
	return io.res;
}

static void fill(struct fx *f, struct blk_disk *d, uint8_t byte, uint64_t off)
{
	uint8_t buf[4096];

	memset(buf, byte, sizeof(buf));
	assert_int_equal(rw(f, d, true, buf, sizeof(buf), off), sizeof(buf));
}

static void expect(struct fx *f, struct blk_disk *d, uint8_t byte, uint64_t off)
{
	uint8_t buf[4096];

	assert_int_equal(rw(f, d, false, buf, sizeof(buf), off), sizeof(buf));
	for (size_t i = 0; i < sizeof(buf); i++) {
		if (buf[i] != byte)
			fail_msg("byte %zu at %llu is %#x, not %#x", i, (unsigned long long)off,
			         buf[i], byte);
	}
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/cvisor-ovl-XXXXXX");
	if (!mkdtemp(f->dir) || aio_create(&f->aio, 64, AIO_SYNC) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char cmd[200];

	aio_destroy(f->aio);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static void make_raw(struct fx *f, const char *name)
{
	int fd;

	snprintf(f->image, sizeof(f->image), "%s/%s", f->dir, name);
	fd = open(f->image, O_RDWR | O_CREAT | O_EXCL, 0640);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, SIZE), 0);
	close(fd);
}

static void make_qcow2(struct fx *f, const char *name)
{
	struct qcow2_create_opts o = { .size = SIZE };

	snprintf(f->image, sizeof(f->image), "%s/%s", f->dir, name);
	assert_int_equal(qcow2_create(f->image, &o, f->err, sizeof(f->err)), 0);
}

/* ---- names ---- */

static void test_name(void **state)
{
	static const struct {
		const char *image, *want;
		unsigned n;
	} cases[] = {
		{ "/vm/disk.qcow2", "/vm/disk.20250102-030405.qcow2", 0 },
		{ "/vm/disk.img", "/vm/disk.20250102-030405.qcow2", 0 },
		{ "/vm/disk.raw", "/vm/disk.20250102-030405.qcow2", 0 },
		{ "/vm/disk", "/vm/disk.20250102-030405.qcow2", 0 },
		{ "/vm/disk.qcow2", "/vm/disk.20250102-030405-2.qcow2", 2 },
		{ "disk.qcow2", "disk.20250102-030405.qcow2", 0 },
		{ "./d/a.b.qcow2", "./d/a.b.20250102-030405.qcow2", 0 },
		/* an overlay's overlay gets a sibling's name, not a longer one */
		{ "/vm/disk.20240101-000000.qcow2", "/vm/disk.20250102-030405.qcow2", 0 },
		{ "/vm/disk.20240101-000000-7.qcow2", "/vm/disk.20250102-030405.qcow2", 0 },
		/* not stamps */
		{ "/vm/disk.2024010-000000.qcow2", "/vm/disk.2024010-000000.20250102-030405.qcow2", 0 },
		{ "/vm/disk.20240101-000000-.qcow2",
		  "/vm/disk.20240101-000000-.20250102-030405.qcow2", 0 },
		{ "/vm/.20240101-000000.qcow2", "/vm/.20240101-000000.20250102-030405.qcow2", 0 },
		{ "/vm/.qcow2", "/vm/.qcow2.20250102-030405.qcow2", 0 },
	};
	char out[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(blk_overlay_name(cases[i].image, 1735787045, cases[i].n, out,
		                                  sizeof(out)),
		                 0);
		assert_string_equal(out, cases[i].want);
	}
	assert_int_equal(blk_overlay_name("/vm/disk.qcow2", 1735787045, 0, out, 20), -ENAMETOOLONG);
}

/* ---- creation ---- */

static void test_create_raw(void **state)
{
	struct fx *f = *state;
	struct blk_disk *d;
	struct qcow2_info qi;
	char opath[PATH_MAX], want[PATH_MAX];
	struct stat st;

	make_raw(f, "disk.raw");
	assert_int_equal(blk_overlay_create(f->image, "raw", SIZE, opath, sizeof(opath), f->err,
	                                    sizeof(f->err)),
	                 0);
	/* absolute, next to the image, the image's mode */
	assert_true(opath[0] == '/');
	assert_int_equal(strncmp(opath, f->dir, strlen(f->dir)), 0);
	assert_non_null(strstr(opath, "/disk."));
	assert_int_equal(stat(opath, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0640);
	assert_int_equal(qcow2_probe(opath), QCOW2_FMT_QCOW2);
	assert_int_equal(qcow2_open(&d, opath, true, 0, f->aio, f->err, sizeof(f->err)), 0);
	qcow2_get_info(d, &qi);
	assert_string_equal(qi.backing, "disk.raw");
	assert_string_equal(qi.backing_fmt, "raw");
	assert_int_equal(qi.size, SIZE);
	blk_close(d);
	/* a second one in the same second: another name, the first untouched */
	assert_int_equal(blk_overlay_create(f->image, "raw", SIZE, want, sizeof(want), f->err,
	                                    sizeof(f->err)),
	                 0);
	assert_string_not_equal(want, opath);
	assert_int_equal(qcow2_probe(opath), QCOW2_FMT_QCOW2);
}

static void test_create_never_clobbers(void **state)
{
	struct fx *f = *state;
	static char names[BLK_OVERLAY_TRIES][PATH_MAX];
	char opath[PATH_MAX], buf[8];
	time_t now = time(NULL);
	int fd, rc;

	make_raw(f, "d.img");
	/* every name this second could give is taken */
	for (unsigned n = 0; n < BLK_OVERLAY_TRIES; n++) {
		assert_int_equal(blk_overlay_name(f->image, now, n, names[n], PATH_MAX), 0);
		fd = open(names[n], O_WRONLY | O_CREAT | O_TRUNC, 0600);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, "mine", 4), 4);
		close(fd);
	}
	rc = blk_overlay_create(f->image, "raw", SIZE, opath, sizeof(opath), f->err,
	                        sizeof(f->err));
	if (time(NULL) == now) {
		assert_int_equal(rc, -EEXIST);
		assert_non_null(strstr(f->err, "cannot create an overlay"));
		assert_null(strchr(f->err, '\n'));
	} /* else the clock moved on meanwhile, and a fresh name was free */
	for (unsigned n = 0; n < BLK_OVERLAY_TRIES; n++) {
		fd = open(names[n], O_RDONLY);
		assert_true(fd >= 0);
		assert_int_equal(read(fd, buf, sizeof(buf)), 4);
		assert_memory_equal(buf, "mine", 4);
		close(fd);
	}
}

static void test_create_errors(void **state)
{
	struct fx *f = *state;
	char opath[PATH_MAX], path[256];

	snprintf(path, sizeof(path), "%s/missing.qcow2", f->dir);
	assert_int_equal(blk_overlay_create(path, "qcow2", SIZE, opath, sizeof(opath), f->err,
	                                    sizeof(f->err)),
	                 -ENOENT);
	assert_null(strchr(f->err, '\n'));
	assert_non_null(strstr(f->err, "missing.qcow2"));
	assert_int_equal(blk_overlay_create(f->dir, "raw", SIZE, opath, sizeof(opath), f->err,
	                                    sizeof(f->err)),
	                 -ENOTSUP);
	assert_int_equal(blk_overlay_create("/dev/null", "raw", SIZE, opath, sizeof(opath), f->err,
	                                    sizeof(f->err)),
	                 -ENOTSUP);
	/* a bad format: qcow2_create refuses, and the reserved name is gone again */
	make_raw(f, "x.raw");
	assert_int_equal(blk_overlay_create(f->image, "vmdk", SIZE, opath, sizeof(opath), f->err,
	                                    sizeof(f->err)),
	                 -EINVAL);
	assert_int_equal(access(opath, F_OK), -1);
	/* a directory nobody may write to (unless we are root) */
	if (geteuid() != 0) {
		assert_int_equal(chmod(f->dir, 0500), 0);
		assert_int_equal(blk_overlay_create(f->image, "raw", SIZE, opath, sizeof(opath),
		                                    f->err, sizeof(f->err)),
		                 -EACCES);
		assert_int_equal(chmod(f->dir, 0700), 0);
	}
}

/* ---- the lock hand-over ---- */

static void handover(struct fx *f, const char *fmt)
{
	struct blk_disk *old, *ov, *other;
	char opath[PATH_MAX];

	assert_int_equal(qcow2_open_any(&old, f->image, fmt, false, f->aio, f->err,
	                                sizeof(f->err)),
	                 0);
	fill(f, old, 0xaa, 0);
	fill(f, old, 0xbb, MIB);
	assert_int_equal(blk_overlay_create(f->image, old->drv->name, blk_size(old), opath,
	                                    sizeof(opath), f->err, sizeof(f->err)),
	                 0);
	/* a writer elsewhere is still refused while the image is ours */
	assert_int_equal(blk_overlay_open(&ov, opath, old, f->aio, f->err, sizeof(f->err)), 0);
	assert_int_equal(qcow2_open_any(&other, f->image, fmt, false, f->aio, f->err,
	                                sizeof(f->err)),
	                 -EBUSY);
	/* readers may come: the image is a backing file now */
	assert_int_equal(qcow2_open_any(&other, f->image, fmt, true, f->aio, f->err,
	                                sizeof(f->err)),
	                 0);
	blk_close(other);
	/* nobody else may open the overlay */
	assert_int_equal(qcow2_open_any(&other, opath, "qcow2", true, f->aio, f->err,
	                                sizeof(f->err)),
	                 -EBUSY);
	expect(f, ov, 0xaa, 0);
	expect(f, ov, 0xbb, MIB);
	fill(f, ov, 0xcc, 0);
	expect(f, ov, 0xcc, 0);
	blk_close(old); /* the switch: the old handle goes */
	blk_close(ov);
	/* the base holds what was written before, the overlay what came after */
	assert_int_equal(qcow2_open_any(&other, f->image, fmt, false, f->aio, f->err,
	                                sizeof(f->err)),
	                 0);
	expect(f, other, 0xaa, 0);
	expect(f, other, 0xbb, MIB);
	blk_close(other);
	assert_int_equal(qcow2_open_any(&other, opath, "qcow2", false, f->aio, f->err,
	                                sizeof(f->err)),
	                 0);
	expect(f, other, 0xcc, 0);
	expect(f, other, 0xbb, MIB);
	blk_close(other);

	/* QEMU's view of both, when it is installed */
	if (system("qemu-img --version >/dev/null 2>&1") == 0) {
		char cmd[4 * PATH_MAX + 512];
		snprintf(cmd, sizeof(cmd), "qemu-img check -q '%s' && qemu-img info '%s' | "
		         "grep -q 'backing file format: %s' && "
		         "qemu-io -r -c 'read -P 0xcc 0 4k' -c 'read -P 0xbb 1M 4k' '%s' >/dev/null",
		         opath, opath, fmt ? fmt : "raw", opath);
		assert_int_equal(system(cmd), 0);
		if (fmt && !strcmp(fmt, "qcow2")) {
			snprintf(cmd, sizeof(cmd), "qemu-img check -q '%s'", f->image);
			assert_int_equal(system(cmd), 0);
		}
		snprintf(cmd, sizeof(cmd), "qemu-io -r -f %s -c 'read -P 0xaa 0 4k' '%s' >/dev/null",
		         fmt ? fmt : "raw", f->image);
		assert_int_equal(system(cmd), 0);
	}
}

static void test_handover_raw(void **state)
{
	struct fx *f = *state;

	make_raw(f, "r.raw");
	handover(f, "raw");
}

static void test_handover_probed_raw(void **state)
{
	struct fx *f = *state;

	make_raw(f, "p.img");
	handover(f, NULL); /* the guarded driver of a detected raw image */
}

static void test_handover_qcow2(void **state)
{
	struct fx *f = *state;

	make_qcow2(f, "q.qcow2");
	handover(f, "qcow2");
}

/* An overlay over an overlay: the chain grows by one. */
static void test_handover_chain(void **state)
{
	struct fx *f = *state;
	struct blk_disk *d, *ov, *ov2;
	char o1[PATH_MAX], o2[PATH_MAX];

	make_qcow2(f, "c.qcow2");
	assert_int_equal(qcow2_open_any(&d, f->image, NULL, false, f->aio, f->err,
	                                sizeof(f->err)),
	                 0);
	fill(f, d, 1, 0);
	assert_int_equal(blk_overlay_create(f->image, "qcow2", SIZE, o1, sizeof(o1), f->err,
	                                    sizeof(f->err)),
	                 0);
	assert_int_equal(blk_overlay_open(&ov, o1, d, f->aio, f->err, sizeof(f->err)), 0);
	blk_close(d);
	fill(f, ov, 2, 4096);
	assert_int_equal(blk_overlay_create(o1, "qcow2", SIZE, o2, sizeof(o2), f->err,
	                                    sizeof(f->err)),
	                 0);
	assert_string_not_equal(o1, o2);
	assert_int_equal(blk_overlay_open(&ov2, o2, ov, f->aio, f->err, sizeof(f->err)), 0);
	blk_close(ov);
	expect(f, ov2, 1, 0);
	expect(f, ov2, 2, 4096);
	fill(f, ov2, 3, 0);
	expect(f, ov2, 3, 0);
	blk_close(ov2);
}

static void test_cancel(void **state)
{
	struct fx *f = *state;
	struct blk_disk *old, *ov, *other;
	char opath[PATH_MAX];

	make_qcow2(f, "k.qcow2");
	assert_int_equal(qcow2_open_any(&old, f->image, "qcow2", false, f->aio, f->err,
	                                sizeof(f->err)),
	                 0);
	fill(f, old, 0x11, 0);
	assert_int_equal(blk_overlay_create(f->image, "qcow2", SIZE, opath, sizeof(opath), f->err,
	                                    sizeof(f->err)),
	                 0);
	assert_int_equal(blk_overlay_open(&ov, opath, old, f->aio, f->err, sizeof(f->err)), 0);
	assert_int_equal(blk_overlay_cancel(ov, old), 0);
	/* writable and write-locked again */
	fill(f, old, 0x22, 0);
	expect(f, old, 0x22, 0);
	assert_int_equal(qcow2_open_any(&other, f->image, "qcow2", true, f->aio, f->err,
	                                sizeof(f->err)),
	                 -EBUSY);
	blk_close(old);
	unlink(opath);
}

static void test_open_errors(void **state)
{
	struct fx *f = *state;
	struct blk_disk *old, *ov = (void *)1, *other;
	char path[256];

	make_raw(f, "e.raw");
	assert_int_equal(qcow2_open_any(&old, f->image, "raw", false, f->aio, f->err,
	                                sizeof(f->err)),
	                 0);
	/* no such overlay: old keeps its write lock */
	snprintf(path, sizeof(path), "%s/none.qcow2", f->dir);
	assert_int_equal(blk_overlay_open(&ov, path, old, f->aio, f->err, sizeof(f->err)), -ENOENT);
	assert_null(ov);
	assert_null(strchr(f->err, '\n'));
	assert_int_equal(qcow2_open_any(&other, f->image, "raw", true, f->aio, f->err,
	                                sizeof(f->err)),
	                 -EBUSY);
	/* not a qcow2 file */
	make_raw(f, "notq.raw");
	assert_true(blk_overlay_open(&ov, f->image, old, f->aio, f->err, sizeof(f->err)) < 0);
	fill(f, old, 0x33, 0);
	blk_close(old);
	/* a read-only disk has nothing to hand over */
	snprintf(path, sizeof(path), "%s/e.raw", f->dir);
	assert_int_equal(qcow2_open_any(&old, path, "raw", true, f->aio, f->err, sizeof(f->err)), 0);
	assert_int_equal(blk_overlay_open(&ov, f->image, old, f->aio, f->err, sizeof(f->err)),
	                 -ENOTSUP);
	blk_close(old);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_name),
		T(test_create_raw),
		T(test_create_never_clobbers),
		T(test_create_errors),
		T(test_handover_raw),
		T(test_handover_probed_raw),
		T(test_handover_qcow2),
		T(test_handover_chain),
		T(test_cancel),
		T(test_open_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
