/* `cvisor img` commands that move data: convert, commit, rebase, resize. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/qcow2.h"
#include "img/img.h"

#define CHUNK (2u << 20)

/* Create or truncate a raw image of size bytes, under its lock. */
static int raw_make(const char *path, uint64_t size, bool truncate_first)
{
	char err[512];
	int fd, rc;

	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		img_err("%s: %s", path, strerror(errno));
		return -errno;
	}
	close(fd);
	rc = blk_file_open(path, false, &fd, err, sizeof(err));
	if (rc < 0) {
		img_err("%s", err);
		return rc;
	}
	if ((truncate_first && ftruncate(fd, 0) < 0) || ftruncate(fd, (off_t)size) < 0) {
		rc = -errno;
		img_err("%s: %s", path, strerror(-rc));
	}
	close(fd);
	return rc;
}

/* Copy [off, off + n) from src to dst in pieces of gran bytes, leaving out
 * the all-zero pieces (the destination reads zero there already). */
static int copy_range(struct img *src, struct img *dst, uint8_t *buf, uint64_t off, uint64_t n,
                      uint64_t gran, bool skip_zero)
{
	int rc = img_read(src, buf, n, off);

	if (rc < 0) {
		img_err("read %s at %llu: %s", src->path, (unsigned long long)off, strerror(-rc));
		return rc;
	}
	for (uint64_t p = 0; p < n;) {
		uint64_t q = p, len;

		if (skip_zero) {
			while (p < n && img_is_zero(buf + p, n - p < gran ? n - p : gran))
				p += gran;
			if (p >= n)
				break;
			q = p;
			while (q < n && !img_is_zero(buf + q, n - q < gran ? n - q : gran))
				q += gran;
		} else {
			q = n;
		}
		len = (q < n ? q : n) - p;
		rc = img_write(dst, buf + p, len, off + p);
		if (rc < 0) {
			img_err("write %s at %llu: %s", dst->path, (unsigned long long)(off + p),
			        strerror(-rc));
			return rc;
		}
		p = q;
	}
	return 0;
}

/* Copy [off, off + n) from src to the qcow2 image dst a cluster (cs bytes)
 * at a time: whole clusters compressed where that makes them smaller, the
 * all-zero ones left out, a partial last cluster written as it is. */
static int copy_compressed(struct img *src, struct img *dst, uint8_t *buf, uint64_t off,
                           uint64_t n, uint64_t cs)
{
	int rc = img_read(src, buf, n, off);

	if (rc < 0) {
		img_err("read %s at %llu: %s", src->path, (unsigned long long)off, strerror(-rc));
		return rc;
	}
	for (uint64_t p = 0; p < n; p += cs) {
		uint64_t len = n - p < cs ? n - p : cs;

		if (img_is_zero(buf + p, len))
			continue;
		if (len == cs)
			rc = qcow2_write_compressed(dst->d, off + p, buf + p);
		else
			rc = img_write(dst, buf + p, len, off + p);
		if (rc < 0) {
			img_err("write %s at %llu: %s", dst->path, (unsigned long long)(off + p),
			        strerror(-rc));
			return rc;
		}
	}
	return 0;
}

int img_cmd_convert(int argc, char **argv)
{
	const char *fmt = NULL, *ofmt = "raw", *opts = NULL;
	bool compress = false;
	struct qcow2_create_opts co = { 0 };
	struct img src = { 0 }, dst = { 0 };
	uint8_t *buf = NULL;
	char err[1024];
	uint64_t size, gran = 4096;
	int c, rc, status = IMG_EXIT_FAIL;

	optind = 0;
	while ((c = getopt(argc, argv, "f:O:o:qpUcnS:")) != -1) {
		switch (c) {
		case 'f':
			fmt = optarg;
			break;
		case 'O':
			ofmt = optarg;
			break;
		case 'o':
			opts = optarg;
			break;
		case 'q':
		case 'p':
		case 'U':
		case 'S':
			break;
		case 'c':
			compress = true;
			break;
		case 'n':
			img_err("convert: -n is not supported");
			return IMG_EXIT_USAGE;
		default:
			img_err("convert: bad option (see cvisor img --help)");
			return IMG_EXIT_USAGE;
		}
	}
	if (argc - optind != 2) {
		img_err("convert: expected SRC DST");
		return IMG_EXIT_USAGE;
	}
	if (strcmp(ofmt, "raw") && strcmp(ofmt, "qcow2")) {
		img_err("convert: output format must be raw or qcow2, not '%s'", ofmt);
		return IMG_EXIT_USAGE;
	}
	if (opts && strcmp(ofmt, "qcow2")) {
		img_err("convert: -o applies to qcow2 output only");
		return IMG_EXIT_USAGE;
	}
	if (compress && strcmp(ofmt, "qcow2")) {
		img_err("convert: -c needs -O qcow2");
		return IMG_EXIT_USAGE;
	}
	if (img_open(&src, argv[optind], fmt, true, 0) < 0)
		return IMG_EXIT_USAGE;
	size = blk_size(src.d);
	if (!strcmp(ofmt, "raw")) {
		rc = raw_make(argv[optind + 1], size, true);
	} else {
		co.size = size;
		if (opts && img_parse_create_opts(opts, &co) < 0) {
			status = IMG_EXIT_USAGE;
			goto out;
		}
		rc = qcow2_create(argv[optind + 1], &co, err, sizeof(err));
		if (rc < 0)
			img_err("%s", err);
		gran = co.cluster_size ? co.cluster_size : 65536;
	}
	if (rc < 0)
		goto out;
	if (img_open(&dst, argv[optind + 1], ofmt, false, 0) < 0)
		goto out;
	buf = malloc(CHUNK);
	if (!buf) {
		img_err("out of memory");
		goto out;
	}
	for (uint64_t off = 0; off < size; off += CHUNK) {
		uint64_t n = size - off < CHUNK ? size - off : CHUNK, st_n = n;

		/* a run the whole chain leaves unallocated and without backing reads zero */
		if (qcow2_is(src.d)) {
			rc = qcow2_block_status(src.d, off, n, &st_n);
			if (rc == QCOW2_ZERO && st_n == n)
				continue;
		}
		if (compress)
			rc = copy_compressed(&src, &dst, buf, off, n, gran);
		else
			rc = copy_range(&src, &dst, buf, off, n, gran, true);
		if (rc < 0)
			goto out;
	}
	rc = img_flush(&dst);
	if (rc < 0) {
		img_err("flush %s: %s", dst.path, strerror(-rc));
		goto out;
	}
	status = IMG_EXIT_OK;
out:
	free(buf);
	img_close(&dst);
	img_close(&src);
	return status;
}

int img_cmd_resize(int argc, char **argv)
{
	const char *fmt = NULL, *arg;
	uint64_t size, cur;
	struct img im;
	bool shrink = false, rel;
	int c, rc;

	optind = 0;
	/* "-" starts a shrink size, not an option: stop at the first non-option */
	while ((c = getopt(argc, argv, "+f:qs")) != -1) {
		switch (c) {
		case 'f':
			fmt = optarg;
			break;
		case 'q':
			break;
		case 's':
			shrink = true;
			break;
		default:
			img_err("resize: bad option (see cvisor img --help)");
			return IMG_EXIT_USAGE;
		}
	}
	if (argc - optind == 3 && !strcmp(argv[optind], "--shrink")) {
		shrink = true;
		optind++;
	}
	if (argc - optind != 2) {
		img_err("resize: expected FILE SIZE");
		return IMG_EXIT_USAGE;
	}
	arg = argv[optind + 1];
	rel = arg[0] == '+';
	if (arg[0] == '-') {
		img_err("resize: shrinking is not supported");
		return IMG_EXIT_USAGE;
	}
	if (img_parse_size(rel ? arg + 1 : arg, &size) < 0) {
		img_err("resize: bad size '%s'", arg);
		return IMG_EXIT_USAGE;
	}
	if (img_open(&im, argv[optind], fmt, false, 0) < 0)
		return IMG_EXIT_USAGE;
	cur = blk_size(im.d);
	if (rel)
		size += cur;
	if (size < cur && !shrink) {
		img_close(&im);
		img_err("resize: shrinking is not supported");
		return IMG_EXIT_USAGE;
	}
	if (qcow2_is(im.d)) {
		struct qcow2_info qi;

		qcow2_get_info(im.d, &qi);
		if (qi.nb_snapshots && size != cur) {
			img_close(&im);
			img_err("resize: %s has internal snapshots (delete them first)", argv[optind]);
			return IMG_EXIT_USAGE;
		}
		rc = size < cur ? -ENOTSUP : qcow2_resize(im.d, size);
		img_close(&im);
	} else {
		img_close(&im);
		rc = raw_make(argv[optind], size, false);
	}
	if (rc < 0) {
		img_err("resize: %s", rc == -ENOTSUP ? "shrinking qcow2 images is not supported"
		                                     : strerror(-rc));
		return rc == -ENOTSUP || rc == -EFBIG ? IMG_EXIT_USAGE : IMG_EXIT_FAIL;
	}
	printf("Image resized.\n");
	return IMG_EXIT_OK;
}

int img_cmd_commit(int argc, char **argv)
{
	const char *fmt = NULL;
	bool keep = false, quiet = false;
	struct img top = { 0 }, base = { 0 };
	struct qcow2_info qi;
	char bpath[4096];
	uint8_t *buf = NULL;
	uint64_t size;
	int c, rc, status = IMG_EXIT_FAIL;

	optind = 0;
	while ((c = getopt(argc, argv, "f:dqpt:")) != -1) {
		switch (c) {
		case 'f':
			fmt = optarg;
			break;
		case 'd':
			keep = true;
			break;
		case 'q':
			quiet = true;
			break;
		case 'p':
		case 't':
			break;
		default:
			img_err("commit: bad option (see cvisor img --help)");
			return IMG_EXIT_USAGE;
		}
	}
	if (argc - optind != 1) {
		img_err("commit: expected FILE");
		return IMG_EXIT_USAGE;
	}
	/* the top alone: its backing file is opened writable below */
	if (img_open(&top, argv[optind], fmt, keep, QCOW2_OPEN_NO_BACKING) < 0)
		return IMG_EXIT_USAGE;
	if (!qcow2_is(top.d)) {
		img_close(&top);
		img_err("commit: %s is not a qcow2 image", argv[optind]);
		return IMG_EXIT_USAGE;
	}
	qcow2_get_info(top.d, &qi);
	if (!qi.backing[0] || !qi.backing_fmt[0]) {
		img_close(&top);
		img_err("commit: %s has %s", argv[optind],
		        qi.backing[0] ? "no recorded backing format" : "no backing file");
		return IMG_EXIT_USAGE;
	}
	img_backing_path(bpath, sizeof(bpath), top.path, qi.backing);
	size = blk_size(top.d);
	if (!strcmp(qi.backing_fmt, "raw")) {
		struct stat st;

		if (stat(bpath, &st) == 0 && (uint64_t)st.st_size < size &&
		    raw_make(bpath, size, false) < 0)
			goto out;
	}
	if (img_open(&base, bpath, qi.backing_fmt, false, 0) < 0) {
		status = IMG_EXIT_USAGE;
		goto out;
	}
	if (blk_size(base.d) < size && qcow2_is(base.d)) {
		rc = qcow2_resize(base.d, size);
		if (rc < 0) {
			img_err("commit: cannot grow %s: %s", bpath, strerror(-rc));
			goto out;
		}
	}
	buf = malloc(CHUNK);
	if (!buf) {
		img_err("out of memory");
		goto out;
	}
	for (uint64_t off = 0; off < size;) {
		uint64_t n;
		int st = qcow2_block_status(top.d, off, size - off < CHUNK ? size - off : CHUNK, &n);

		if (st < 0) {
			img_err("commit: %s: %s", top.path, strerror(-st));
			goto out;
		}
		if (st == QCOW2_DATA)
			rc = copy_range(&top, &base, buf, off, n, n, false);
		else if (st == QCOW2_ZERO)
			rc = img_zero(&base, n, off, false);
		else
			rc = 0;
		if (rc < 0) {
			img_err("commit: writing %s: %s", bpath, strerror(-rc));
			goto out;
		}
		off += n;
	}
	rc = img_flush(&base);
	if (rc == 0 && !keep)
		rc = qcow2_make_empty(top.d);
	if (rc < 0) {
		img_err("commit: %s", strerror(-rc));
		goto out;
	}
	if (!quiet)
		printf("Image committed.\n");
	status = IMG_EXIT_OK;
out:
	free(buf);
	img_close(&base);
	img_close(&top);
	return status;
}

int img_cmd_rebase(int argc, char **argv)
{
	const char *fmt = NULL, *nb = NULL, *nfmt = NULL;
	struct img top = { 0 }, base = { 0 };
	uint8_t *a = NULL, *b = NULL;
	bool unsafe = false, have_base;
	struct qcow2_info qi;
	uint64_t size, bsize = 0, cs;
	char bpath[4096];
	int c, rc, status = IMG_EXIT_FAIL;

	optind = 0;
	while ((c = getopt(argc, argv, "f:b:F:uqpUt:T:")) != -1) {
		switch (c) {
		case 'f':
			fmt = optarg;
			break;
		case 'b':
			nb = optarg;
			break;
		case 'F':
			nfmt = optarg;
			break;
		case 'u':
			unsafe = true;
			break;
		case 'q':
		case 'p':
		case 'U':
		case 't':
		case 'T':
			break;
		default:
			img_err("rebase: bad option (see cvisor img --help)");
			return IMG_EXIT_USAGE;
		}
	}
	if (argc - optind != 1 || !nb) {
		img_err("rebase: expected -b BASE FILE");
		return IMG_EXIT_USAGE;
	}
	if (nfmt && strcmp(nfmt, "raw") && strcmp(nfmt, "qcow2")) {
		img_err("rebase: backing format must be raw or qcow2, not '%s'", nfmt);
		return IMG_EXIT_USAGE;
	}
	have_base = nb[0] != 0;
	img_backing_path(bpath, sizeof(bpath), argv[optind], nb);
	if (have_base && !nfmt) {
		rc = qcow2_probe(bpath);
		if (rc < 0 && !unsafe) {
			img_err("rebase: %s: %s", bpath, strerror(-rc));
			return IMG_EXIT_USAGE;
		}
		nfmt = rc == QCOW2_FMT_QCOW2 ? "qcow2" : "raw";
	}
	if (img_open(&top, argv[optind], fmt, false, unsafe ? QCOW2_OPEN_NO_BACKING : 0) < 0)
		return IMG_EXIT_USAGE;
	if (!qcow2_is(top.d)) {
		img_close(&top);
		img_err("rebase: %s is not a qcow2 image", argv[optind]);
		return IMG_EXIT_USAGE;
	}
	if (!unsafe) {
		/* where the top is unallocated, keep what the old chain showed */
		qcow2_get_info(top.d, &qi);
		cs = qi.cluster_size;
		size = blk_size(top.d);
		if (have_base) {
			if (img_open(&base, bpath, nfmt, true, 0) < 0) {
				status = IMG_EXIT_USAGE;
				goto out;
			}
			bsize = blk_size(base.d);
		}
		a = malloc(cs);
		b = malloc(cs);
		if (!a || !b) {
			img_err("out of memory");
			goto out;
		}
		for (uint64_t off = 0; off < size;) {
			uint64_t n;
			int st = qcow2_block_status(top.d, off, size - off, &n);

			if (st < 0) {
				img_err("rebase: %s: %s", top.path, strerror(-st));
				goto out;
			}
			for (uint64_t p = off; st == QCOW2_UNALLOCATED && p < off + n;) {
				uint64_t len = cs - (p % cs);

				if (len > off + n - p)
					len = off + n - p;
				rc = img_read(&top, a, len, p);
				memset(b, 0, len);
				if (rc == 0 && p < bsize)
					rc = img_read(&base, b, bsize - p < len ? bsize - p : len, p);
				if (rc == 0 && memcmp(a, b, len))
					rc = img_write(&top, a, len, p);
				if (rc < 0) {
					img_err("rebase: %s", strerror(-rc));
					goto out;
				}
				p += len;
			}
			off += n;
		}
		rc = img_flush(&top);
		if (rc < 0) {
			img_err("rebase: %s", strerror(-rc));
			goto out;
		}
	}
	rc = qcow2_set_backing(top.d, have_base ? nb : NULL, nfmt);
	if (rc < 0) {
		img_err("rebase: cannot update the header: %s",
		        rc == -ENOSPC ? "the backing name does not fit in the header cluster"
		                      : strerror(-rc));
		goto out;
	}
	status = IMG_EXIT_OK;
out:
	free(a);
	free(b);
	img_close(&base);
	img_close(&top);
	return status;
}
