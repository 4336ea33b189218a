/* Unit tests for qcow2 header validation (block/qcow2_header.c, qcow2.c):
 * images made by qcow2_create, then patched into every kind of hostile
 * header; each must be refused at open with an error, never crash or
 * allocate what the file does not justify (the sanitizers watch). */
#include <errno.h>
#include <fcntl.h>
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
#include "block/qcow2.h"
#include "util/log.h"

#define MIB (1024u * 1024u)

struct fx {
	char dir[64];
	char path[128];
	struct aio *aio;
	char err[1024];
};

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/cvisor-qcow2-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/a.qcow2", f->dir);
	assert_int_equal(aio_create(&f->aio, 16, AIO_SYNC), 0);
	log_level = 0; /* corruption messages are expected here */
	*state = f;
	return 0;
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

/* A fresh 16 MiB image (v3, 64 KiB clusters unless cs). */
static void make(struct fx *f, uint32_t cs, uint32_t version, const char *backing,
                 const char *bfmt)
{
	struct qcow2_create_opts o = { .size = 16 * MIB, .cluster_size = cs, .version = version,
		                       .backing = backing, .backing_fmt = bfmt };

	assert_int_equal(qcow2_create(f->path, &o, f->err, sizeof(f->err)), 0);
}

static void patch(struct fx *f, uint64_t off, const void *p, size_t n)
{
	int fd = open(f->path, O_RDWR);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, p, n, (off_t)off), (ssize_t)n);
	close(fd);
}

static void patch32(struct fx *f, uint64_t off, uint32_t v)
{
	uint8_t b[4];

	put32(b, v);
	patch(f, off, b, 4);
}

static void patch64(struct fx *f, uint64_t off, uint64_t v)
{
	uint8_t b[8];

	put64(b, v);
	patch(f, off, b, 8);
}

static uint64_t read64(struct fx *f, uint64_t off)
{
	uint8_t b[8];
	int fd = open(f->path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, b, 8, (off_t)off), 8);
	close(fd);
	return get64(b);
}

static int try_open(struct fx *f, bool ro, unsigned flags)
{
	struct blk_disk *d = NULL;
	int rc;

	f->err[0] = 0;
	rc = qcow2_open(&d, f->path, ro, flags, f->aio, f->err, sizeof(f->err));
	if (rc == 0) {
		assert_non_null(d);
		blk_close(d);
	} else {
		/* one line naming the image */
		assert_non_null(strstr(f->err, f->path));
		assert_null(strchr(f->err, '\n'));
	}
	return rc;
}

static void test_valid(void **state)
{
	struct fx *f = *state;

	for (uint32_t cs = 512; cs <= 2 * MIB; cs *= 4) {
		make(f, cs, 3, NULL, NULL);
		assert_int_equal(try_open(f, false, 0), 0);
		assert_int_equal(try_open(f, true, 0), 0);
	}
	make(f, 0, 2, NULL, NULL);
	assert_int_equal(try_open(f, false, 0), 0);
}

static void test_magic_version(void **state)
{
	struct fx *f = *state;

	make(f, 0, 3, NULL, NULL);
	patch32(f, 0, 0x514649fa);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	assert_non_null(strstr(f->err, "not a qcow2 image"));
	for (uint32_t v = 0; v < 6; v++) {
		make(f, 0, 3, NULL, NULL);
		patch32(f, 4, v);
		/* as version 2 the v3 fields read as the end of the extensions */
		assert_int_equal(try_open(f, true, 0), v == 2 || v == 3 ? 0 : -ENOTSUP);
	}
	/* a file too short for any header */
	assert_int_equal(truncate(f->path, 50), 0);
	assert_true(try_open(f, true, 0) < 0);
	assert_int_equal(truncate(f->path, 0), 0);
	assert_true(try_open(f, true, 0) < 0);
}

static void test_cluster_bits(void **state)
{
	struct fx *f = *state;
	static const uint32_t bad[] = { 0, 8, 22, 31, 32, 63, 0xffffffff };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		make(f, 0, 3, NULL, NULL);
		patch32(f, 20, bad[i]);
		assert_int_equal(try_open(f, true, 0), -EINVAL);
		assert_non_null(strstr(f->err, "cluster_bits"));
	}
}

static void test_sizes(void **state)
{
	struct fx *f = *state;

	/* virtual sizes far beyond what the L1 table maps */
	make(f, 0, 3, NULL, NULL);
	patch64(f, 24, 1ULL << 62);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	make(f, 0, 3, NULL, NULL);
	patch64(f, 24, UINT64_MAX);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	make(f, 0, 3, NULL, NULL);
	patch64(f, 24, 1ULL << 40); /* 1 TiB needs 2048 L1 entries; there is 1 */
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	/* L1 table sizes the file cannot hold */
	make(f, 0, 3, NULL, NULL);
	patch32(f, 36, 1u << 30);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	make(f, 0, 3, NULL, NULL);
	patch32(f, 36, 0xffffffff);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	make(f, 0, 3, NULL, NULL);
	patch32(f, 36, 16384); /* 128 KiB from 192 KiB: past the end of the 256 KiB file */
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	/* refcount table sizes */
	make(f, 0, 3, NULL, NULL);
	patch32(f, 56, 0);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	make(f, 0, 3, NULL, NULL);
	patch32(f, 56, 0xffffffff);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	make(f, 0, 3, NULL, NULL);
	patch32(f, 56, 1000);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
}

static void test_offsets(void **state)
{
	struct fx *f = *state;
	uint64_t l1, rt;

	make(f, 0, 3, NULL, NULL);
	l1 = read64(f, 40);
	rt = read64(f, 48);
	/* past the end of the file */
	patch64(f, 40, 1ULL << 40);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	patch64(f, 40, l1);
	patch64(f, 48, 1ULL << 50);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	patch64(f, 48, UINT64_MAX & ~0xffffULL);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	/* misaligned, zero */
	patch64(f, 48, rt + 8);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	patch64(f, 48, 0);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	patch64(f, 48, rt);
	patch64(f, 40, l1 + 512);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	patch64(f, 40, 0);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	/* overlapping tables */
	patch64(f, 40, rt);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	assert_non_null(strstr(f->err, "overlap"));
	patch64(f, 40, l1);
	patch64(f, 48, l1);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	patch64(f, 48, rt);
	assert_int_equal(try_open(f, true, 0), 0);
	/* snapshot table */
	patch32(f, 60, 1000000);
	patch64(f, 64, rt);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	patch32(f, 60, 1);
	patch64(f, 64, 1ULL << 45);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	patch64(f, 64, rt);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	patch32(f, 60, 0);
	assert_int_equal(try_open(f, true, 0), 0);
}

static void count_snap(void *opaque, const struct qcow2_snapshot *s)
{
	int *n = opaque;

	assert_string_equal(s->name, "abc");
	assert_string_equal(s->id, "7");
	assert_int_equal(s->vm_state_size, 0);
	(*n)++;
}

/* A snapshot table entry at the end of the file: l1 (offset, size), the
 * lengths of id, name and extra data; nb entries claimed by the header. */
static void snap_entry(struct fx *f, uint64_t at, uint64_t l1_off, uint32_t l1_size,
                       uint16_t id_len, uint16_t name_len, uint32_t extra_len, uint32_t nb)
{
	uint8_t e[40 + 16 + 4] = { 0 };

	put64(e, l1_off);
	put32(e + 8, l1_size);
	e[12] = (uint8_t)(id_len >> 8);
	e[13] = (uint8_t)id_len;
	e[14] = (uint8_t)(name_len >> 8);
	e[15] = (uint8_t)name_len;
	put32(e + 36, extra_len);
	put64(e + 48, 16 * MIB); /* disk size */
	memcpy(e + 56, "7abc", 4);
	patch(f, at, e, sizeof(e));
	patch32(f, 60, nb);
	patch64(f, 64, at);
}

/* Hostile snapshot tables are refused at open (without allocating what the
 * file does not hold): too many entries for the table, entries running past
 * the end of the file, names longer than the table, huge extra data, L1
 * tables outside the file. A well-formed entry is listed. */
static void test_snapshot_table(void **state)
{
	struct fx *f = *state;
	struct blk_disk *d;
	struct stat st;
	uint64_t end, l1;
	int n = 0;

	make(f, 512, 3, NULL, NULL);
	assert_int_equal(stat(f->path, &st), 0);
	end = ((uint64_t)st.st_size + 511) & ~511ULL;
	l1 = read64(f, 40);
	snap_entry(f, end, l1, 1, 1, 3, 16, 1);
	assert_int_equal(try_open(f, true, 0), 0);
	assert_int_equal(qcow2_open(&d, f->path, true, 0, f->aio, f->err, sizeof(f->err)), 0);
	assert_int_equal(qcow2_snapshots(d, count_snap, &n), 0);
	assert_int_equal(n, 1);
	blk_close(d);
	/* more entries than the table could hold: refused before allocating */
	snap_entry(f, end, l1, 1, 1, 3, 16, 65536);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	assert_non_null(strstr(f->err, "snapshot table"));
	snap_entry(f, end, l1, 1, 1, 3, 16, 2);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	/* name, ID or extra data longer than what is left of the file */
	snap_entry(f, end, l1, 1, 1, 65535, 16, 1);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	snap_entry(f, end, l1, 1, 65535, 3, 16, 1);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	snap_entry(f, end, l1, 1, 1, 3, 2000, 1);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	snap_entry(f, end, l1, 1, 1, 3, 0xffffffffu, 1);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	/* the snapshot's L1 table: misaligned, past the end, too large */
	snap_entry(f, end, l1 + 8, 1, 1, 3, 16, 1);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	snap_entry(f, end, 1ULL << 40, 1, 1, 3, 16, 1);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	snap_entry(f, end, l1, 0x7fffffffu, 1, 3, 16, 1);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	/* the entry cut short by the end of the file */
	snap_entry(f, end, l1, 1, 1, 3, 16, 1);
	assert_int_equal(truncate(f->path, (off_t)end + 50), 0);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	assert_int_equal(truncate(f->path, (off_t)end + 30), 0);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	/* no table left: fine again */
	patch32(f, 60, 0);
	assert_int_equal(try_open(f, true, 0), 0);
}

static void test_features(void **state)
{
	struct fx *f = *state;

	/* unknown incompatible bits refuse the image; the feature table names them */
	for (unsigned bit = 5; bit < 64; bit += 7) {
		make(f, 0, 3, NULL, NULL);
		patch64(f, 72, 1ULL << bit);
		assert_int_equal(try_open(f, true, 0), -ENOTSUP);
		assert_non_null(strstr(f->err, "incompatible feature"));
	}
	make(f, 0, 3, NULL, NULL);
	patch64(f, 72, 1ULL << 4);
	assert_int_equal(try_open(f, true, 0), -ENOTSUP);
	assert_non_null(strstr(f->err, "extended L2"));
	make(f, 0, 3, NULL, NULL);
	patch64(f, 72, 1ULL << 2);
	assert_int_equal(try_open(f, true, 0), -ENOTSUP);
	/* compatible and autoclear bits are fine; a writable open clears autoclear */
	make(f, 0, 3, NULL, NULL);
	patch64(f, 80, 0xfffffffffffffffeULL);
	patch64(f, 88, 0xffffULL);
	assert_int_equal(try_open(f, true, 0), 0);
	assert_int_equal(read64(f, 88), 0xffff);
	assert_int_equal(try_open(f, false, 0), 0);
	assert_int_equal(read64(f, 88), 0);
	/* refcount_order */
	for (uint32_t o = 0; o < 10; o++) {
		make(f, 0, 3, NULL, NULL);
		patch32(f, 96, o);
		assert_int_equal(try_open(f, true, 0), o <= 6 ? 0 : -EINVAL);
	}
	/* header_length */
	make(f, 0, 3, NULL, NULL);
	patch32(f, 100, 96);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	patch32(f, 100, 107);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	patch32(f, 100, 1u << 20);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	/* compression type: known values with the bit, none without */
	make(f, 0, 3, NULL, NULL);
	patch(f, 104, "\x02", 1);
	patch64(f, 72, 1ULL << 3);
	assert_int_equal(try_open(f, true, 0), -ENOTSUP);
	patch(f, 104, "\x00", 1);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	patch(f, 104, "\x01", 1);
	assert_int_equal(try_open(f, true, 0), 0);
	patch64(f, 72, 0);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	/* encryption */
	make(f, 0, 3, NULL, NULL);
	patch32(f, 32, 1);
	assert_int_equal(try_open(f, true, 0), -ENOTSUP);
	patch32(f, 32, 2);
	assert_int_equal(try_open(f, true, 0), -ENOTSUP);
}

static void test_corrupt_dirty(void **state)
{
	struct fx *f = *state;

	/* the corrupt bit: read-only opens only (and repair) */
	make(f, 0, 3, NULL, NULL);
	patch64(f, 72, 2);
	assert_int_equal(try_open(f, true, 0), 0);
	assert_int_equal(try_open(f, false, 0), -EROFS);
	assert_non_null(strstr(f->err, "corrupt"));
	assert_int_equal(try_open(f, false, QCOW2_OPEN_REPAIR), 0);
	/* the dirty bit: a writable open repairs and clears it */
	make(f, 0, 3, NULL, NULL);
	patch64(f, 72, 1);
	assert_int_equal(try_open(f, true, 0), 0);
	assert_int_equal(read64(f, 72), 1);
	assert_int_equal(try_open(f, false, 0), 0);
	assert_int_equal(read64(f, 72), 0);
}

static void test_backing(void **state)
{
	struct fx *f = *state;
	char base[160];
	int fd;

	snprintf(base, sizeof(base), "%s/base.raw", f->dir);
	fd = open(base, O_RDWR | O_CREAT, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, MIB), 0);
	close(fd);
	make(f, 0, 3, "base.raw", "raw");
	assert_int_equal(try_open(f, false, 0), 0);
	/* the base is opened read-only and shared; a writer elsewhere is refused */
	{
		struct blk_disk *d;
		int wfd;
		char err[256];

		assert_int_equal(qcow2_open(&d, f->path, false, 0, f->aio, f->err, sizeof(f->err)),
		                 0);
		assert_int_equal(blk_file_open(base, false, &wfd, err, sizeof(err)), -EBUSY);
		assert_int_equal(blk_file_open(base, true, &wfd, err, sizeof(err)), 0);
		close(wfd);
		blk_close(d);
	}
	/* no recorded format: refused, never probed */
	make(f, 0, 3, "base.raw", "raw");
	patch(f, 112, "\0\0\0\0", 4); /* the backing format extension's type: now the end */
	assert_int_equal(try_open(f, true, 0), -ENOTSUP);
	assert_non_null(strstr(f->err, "format"));
	assert_int_equal(try_open(f, true, QCOW2_OPEN_NO_BACKING), 0);
	/* a format we do not know */
	make(f, 0, 3, "base.raw", "raw");
	patch(f, 120, "vmd", 3);
	assert_int_equal(try_open(f, true, 0), -ENOTSUP);
	/* missing base */
	make(f, 0, 3, "nonexistent.raw", "raw");
	assert_int_equal(try_open(f, true, 0), -ENOENT);
	/* name length and offset */
	make(f, 0, 3, "base.raw", "raw");
	patch32(f, 16, 1024);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	patch32(f, 16, 8);
	patch64(f, 8, 65536 - 4);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	patch64(f, 8, 16);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	/* a chain that loops back onto itself ends with an error */
	make(f, 0, 3, "a.qcow2", "qcow2");
	assert_true(try_open(f, true, 0) < 0);
	assert_true(try_open(f, false, 0) < 0);
	/* local-only names (fuzzing) */
	make(f, 0, 3, "/etc/passwd", "raw");
	assert_int_equal(try_open(f, true, QCOW2_OPEN_LOCAL_BACKING), -EPERM);
}

static void test_extensions(void **state)
{
	struct fx *f = *state;
	uint8_t ext[16];

	/* an extension longer than the header cluster */
	make(f, 0, 3, NULL, NULL);
	put32(ext, 0x12345678);
	put32(ext + 4, 0x10000000);
	patch(f, 112, ext, 8);
	assert_int_equal(try_open(f, true, 0), -EINVAL);
	/* an unknown extension is skipped and kept */
	make(f, 0, 3, NULL, NULL);
	put32(ext, 0x12345678);
	put32(ext + 4, 4);
	memcpy(ext + 8, "abcd\0\0\0\0", 8);
	patch(f, 112, ext, 16);
	patch(f, 128, "\0\0\0\0\0\0\0\0", 8);
	assert_int_equal(try_open(f, false, 0), 0);
	/* two backing format extensions */
	make(f, 0, 3, "x", "raw");
	put32(ext, 0xe2792aca);
	put32(ext + 4, 3);
	memcpy(ext + 8, "raw\0\0\0\0\0", 8);
	patch(f, 128, ext, 16);
	assert_int_equal(try_open(f, true, QCOW2_OPEN_NO_BACKING), -EINVAL);
	/* the full disk encryption extension */
	make(f, 0, 3, NULL, NULL);
	put32(ext, 0x0537be77);
	put32(ext + 4, 0);
	patch(f, 112, ext, 8);
	assert_int_equal(try_open(f, true, 0), -ENOTSUP);
}

static void test_create_errors(void **state)
{
	struct fx *f = *state;
	struct qcow2_create_opts o = { .size = MIB };

	o.cluster_size = 1000;
	assert_int_equal(qcow2_create(f->path, &o, f->err, sizeof(f->err)), -EINVAL);
	o.cluster_size = 4 * MIB;
	assert_int_equal(qcow2_create(f->path, &o, f->err, sizeof(f->err)), -EINVAL);
	o.cluster_size = 0;
	o.refcount_bits = 3;
	assert_int_equal(qcow2_create(f->path, &o, f->err, sizeof(f->err)), -EINVAL);
	o.refcount_bits = 128;
	assert_int_equal(qcow2_create(f->path, &o, f->err, sizeof(f->err)), -EINVAL);
	o.refcount_bits = 8;
	o.version = 2;
	assert_int_equal(qcow2_create(f->path, &o, f->err, sizeof(f->err)), -EINVAL);
	o.refcount_bits = 0;
	o.lazy_refcounts = true;
	assert_int_equal(qcow2_create(f->path, &o, f->err, sizeof(f->err)), -EINVAL);
	o.version = 0;
	o.size = 1ULL << 62;
	assert_int_equal(qcow2_create(f->path, &o, f->err, sizeof(f->err)), -EINVAL);
	o.size = MIB;
	o.backing = "b";
	o.backing_fmt = "vmdk";
	assert_int_equal(qcow2_create(f->path, &o, f->err, sizeof(f->err)), -EINVAL);
	/* a writer holds the image: create refuses to truncate it */
	{
		struct blk_disk *d;

		make(f, 0, 3, NULL, NULL);
		assert_int_equal(qcow2_open(&d, f->path, false, 0, f->aio, f->err, sizeof(f->err)),
		                 0);
		o.backing = NULL;
		assert_int_equal(qcow2_create(f->path, &o, f->err, sizeof(f->err)), -EBUSY);
		blk_close(d);
	}
	/* every refcount width, version 2 and 3, small and large clusters */
	for (uint32_t rb = 1; rb <= 64; rb *= 2) {
		struct qcow2_create_opts g = { .size = 64 * MIB, .cluster_size = 512,
			                       .refcount_bits = rb };

		assert_int_equal(qcow2_create(f->path, &g, f->err, sizeof(f->err)), 0);
		assert_int_equal(try_open(f, false, 0), 0);
	}
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_valid),        T(test_magic_version), T(test_cluster_bits),
		T(test_sizes),        T(test_offsets),       T(test_features),
		T(test_corrupt_dirty), T(test_backing),      T(test_extensions),
		T(test_create_errors), T(test_snapshot_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
