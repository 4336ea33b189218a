/* `cvisor img`: the subcommand table, and create, info, check, snapshot. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "block/qcow2.h"
#include "img/img.h"

static void usage(FILE *f)
{
	fputs("usage: cvisor img COMMAND [options]\n"
	      "  create -f qcow2|raw [-b BASE [-F FMT]] [-u] [-o OPTS] [-q] FILE [SIZE]\n"
	      "         OPTS: cluster_size=N,compat=0.10|1.1,refcount_bits=N,lazy_refcounts=on|off,\n"
	      "               compression_type=zlib|zstd\n"
	      "  info [-f FMT] [--output human|json] FILE\n"
	      "  check [-f FMT] [-r leaks|all] [-q] [--output human|json] FILE\n"
	      "  convert [-f FMT] [-O FMT] [-c] [-o OPTS] [-q] SRC DST   (-c: compressed clusters)\n"
	      "  resize [-f FMT] FILE [+]SIZE            (grow only)\n"
	      "  commit [-f FMT] [-d] [-q] FILE\n"
	      "  rebase [-f FMT] [-u] -b BASE [-F FMT] [-q] FILE\n"
	      "  snapshot [-f qcow2] [-q] -l | -c NAME | -d NAME | -a NAME  FILE\n"
	      "         (list, create, delete, apply; -d and -a take an ID or a name)\n"
	      "  write [-f FMT] [-P BYTE] [-z] [-u] FILE OFFSET LEN   (test helper)\n"
	      "  stress [options] FILE                     (test helper: see --help)\n"
	      "  bench [-f FMT] read|write SECONDS FILE    (random 4 KiB I/O in-process)\n"
	      "Sizes take qemu-img's suffixes: k, M, G, T, P, E.\n",
	      f);
}

/* ---- -o options ---- */

struct create_args {
	const char *fmt;
	const char *backing;
	const char *backing_fmt;
	bool unsafe;
	bool quiet;
	struct qcow2_create_opts q;
};

int img_parse_create_opts(const char *arg, struct qcow2_create_opts *o)
{
	char *copy = strdup(arg), *save = NULL;
	int rc = 0;

	if (!copy) {
		img_err("out of memory");
		return -ENOMEM;
	}
	for (char *kv = strtok_r(copy, ",", &save); kv && rc == 0;
	     kv = strtok_r(NULL, ",", &save)) {
		char *v = strchr(kv, '=');
		uint64_t n;

		if (!v) {
			img_err("-o: '%s' is not key=value", kv);
			rc = -EINVAL;
			break;
		}
		*v++ = 0;
		if (!strcmp(kv, "cluster_size") || !strcmp(kv, "refcount_bits")) {
			if (img_parse_size(v, &n) < 0 || n > UINT32_MAX) {
				img_err("-o: bad %s '%s'", kv, v);
				rc = -EINVAL;
			} else if (kv[0] == 'c') {
				o->cluster_size = (uint32_t)n;
			} else {
				o->refcount_bits = (uint32_t)n;
			}
		} else if (!strcmp(kv, "compat")) {
			if (!strcmp(v, "0.10") || !strcmp(v, "v2")) {
				o->version = 2;
			} else if (!strcmp(v, "1.1") || !strcmp(v, "v3")) {
				o->version = 3;
			} else {
				img_err("-o: compat must be 0.10 or 1.1, not '%s'", v);
				rc = -EINVAL;
			}
		} else if (!strcmp(kv, "lazy_refcounts")) {
			if (strcmp(v, "on") && strcmp(v, "off")) {
				img_err("-o: lazy_refcounts must be on or off");
				rc = -EINVAL;
			}
			o->lazy_refcounts = !strcmp(v, "on");
		} else if (!strcmp(kv, "compression_type")) {
			if (strcmp(v, "zlib") && strcmp(v, "zstd")) {
				img_err("-o: compression_type must be zlib or zstd, not '%s'", v);
				rc = -EINVAL;
			}
			o->compression = !strcmp(v, "zstd");
		} else if (!strcmp(kv, "preallocation") && !strcmp(v, "off")) {
			/* the default */
		} else {
			img_err("-o: unsupported option '%s'", kv);
			rc = -EINVAL;
		}
	}
	free(copy);
	return rc;
}

/* ---- create ---- */

static int create_raw(const char *path, uint64_t size)
{
	char err[512];
	int fd, rc;

	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		img_err("%s: %s", path, strerror(errno));
		return IMG_EXIT_USAGE;
	}
	close(fd);
	rc = blk_file_open(path, false, &fd, err, sizeof(err));
	if (rc < 0) {
		img_err("%s", err);
		return IMG_EXIT_USAGE;
	}
	if (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)size) < 0) {
		img_err("%s: %s", path, strerror(errno));
		close(fd);
		return IMG_EXIT_FAIL;
	}
	close(fd);
	return IMG_EXIT_OK;
}

static int cmd_create(int argc, char **argv)
{
	static const struct option lo[] = { { "help", no_argument, NULL, 'h' }, { 0 } };
	struct create_args a = { 0 };
	const char *path;
	char bpath[4096], err[1024];
	uint64_t size = 0;
	bool have_size;
	int c, rc;

	optind = 0;
	while ((c = getopt_long(argc, argv, "f:b:F:o:uqh", lo, NULL)) != -1) {
		switch (c) {
		case 'f':
			a.fmt = optarg;
			break;
		case 'b':
			a.backing = optarg;
			break;
		case 'F':
			a.backing_fmt = optarg;
			break;
		case 'o':
			if (img_parse_create_opts(optarg, &a.q) < 0)
				return IMG_EXIT_USAGE;
			break;
		case 'u':
			a.unsafe = true;
			break;
		case 'q':
			a.quiet = true;
			break;
		case 'h':
			usage(stdout);
			return IMG_EXIT_OK;
		default:
			img_err("create: bad option (see cvisor img --help)");
			return IMG_EXIT_USAGE;
		}
	}
	if (optind >= argc || argc - optind > 2) {
		img_err("create: expected FILE [SIZE]");
		return IMG_EXIT_USAGE;
	}
	path = argv[optind];
	have_size = argc - optind == 2;
	if (have_size && img_parse_size(argv[optind + 1], &size) < 0) {
		img_err("create: bad size '%s'", argv[optind + 1]);
		return IMG_EXIT_USAGE;
	}
	if (!a.fmt)
		a.fmt = "raw";
	if (strcmp(a.fmt, "raw") && strcmp(a.fmt, "qcow2")) {
		img_err("create: format must be raw or qcow2, not '%s'", a.fmt);
		return IMG_EXIT_USAGE;
	}
	if (a.backing_fmt && strcmp(a.backing_fmt, "raw") && strcmp(a.backing_fmt, "qcow2")) {
		img_err("create: backing format must be raw or qcow2, not '%s'", a.backing_fmt);
		return IMG_EXIT_USAGE;
	}
	if (a.backing && !a.backing[0])
		a.backing = NULL;
	if (!strcmp(a.fmt, "raw")) {
		if (a.backing) {
			img_err("create: raw images have no backing file");
			return IMG_EXIT_USAGE;
		}
		if (!have_size) {
			img_err("create: a size is needed");
			return IMG_EXIT_USAGE;
		}
		rc = create_raw(path, size);
		if (rc == 0 && !a.quiet)
			printf("Formatting '%s', fmt=raw size=%llu\n", path, (unsigned long long)size);
		return rc;
	}
	if (a.backing) {
		img_backing_path(bpath, sizeof(bpath), path, a.backing);
		if (!a.backing_fmt) {
			/* the user's own base: look at it once, and record what it is */
			rc = qcow2_probe(bpath);
			if (rc < 0) {
				img_err("create: backing file %s: %s", bpath, strerror(-rc));
				return IMG_EXIT_USAGE;
			}
			a.backing_fmt = rc == QCOW2_FMT_QCOW2 ? "qcow2" : "raw";
		}
		if (!a.unsafe || !have_size) {
			struct img b;

			if (img_open(&b, bpath, a.backing_fmt, true, 0) < 0)
				return IMG_EXIT_USAGE;
			if (!have_size)
				size = blk_size(b.d);
			img_close(&b);
		}
	} else if (!have_size) {
		img_err("create: a size is needed");
		return IMG_EXIT_USAGE;
	}
	a.q.size = size;
	a.q.backing = a.backing;
	a.q.backing_fmt = a.backing_fmt;
	rc = qcow2_create(path, &a.q, err, sizeof(err));
	if (rc < 0) {
		img_err("%s", err);
		return rc == -EINVAL ? IMG_EXIT_USAGE : IMG_EXIT_FAIL;
	}
	if (!a.quiet)
		printf("Formatting '%s', fmt=qcow2 cluster_size=%u size=%llu%s%s%s%s\n", path,
		       a.q.cluster_size ? a.q.cluster_size : 65536, (unsigned long long)size,
		       a.backing ? " backing_file=" : "", a.backing ? a.backing : "",
		       a.backing ? " backing_fmt=" : "", a.backing ? a.backing_fmt : "");
	return IMG_EXIT_OK;
}

/* ---- info ---- */

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

static void human_size(char *buf, size_t len, uint64_t v)
{
	static const char *const u[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	double d = (double)v;
	int i = 0;

	while (d >= 1024 && i < 6) {
		d /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)v);
	else
		snprintf(buf, len, "%.3g %s", d, u[i]);
}

static int cmd_info(int argc, char **argv)
{
	static const struct option lo[] = { { "output", required_argument, NULL, 'O' },
		                            { "force-share", no_argument, NULL, 'U' },
		                            { 0 } };
	const char *fmt = NULL, *output = "human";
	struct qcow2_info qi;
	struct img im;
	struct stat st;
	char vs[32], ds[32], full[4096];
	uint64_t actual = 0;
	bool json, q2;
	int c;

	optind = 0;
	while ((c = getopt_long(argc, argv, "f:U", lo, NULL)) != -1) {
		switch (c) {
		case 'f':
			fmt = optarg;
			break;
		case 'O':
			output = optarg;
			break;
		case 'U':
			break;
		default:
			img_err("info: bad option (see cvisor img --help)");
			return IMG_EXIT_USAGE;
		}
	}
	if (argc - optind != 1) {
		img_err("info: expected FILE");
		return IMG_EXIT_USAGE;
	}
	if (strcmp(output, "human") && strcmp(output, "json")) {
		img_err("info: --output must be human or json");
		return IMG_EXIT_USAGE;
	}
	json = !strcmp(output, "json");
	if (img_open(&im, argv[optind], fmt, true, QCOW2_OPEN_NO_BACKING | QCOW2_OPEN_NO_REPAIR) < 0)
		return IMG_EXIT_USAGE;
	if (stat(im.path, &st) == 0)
		actual = (uint64_t)st.st_blocks * 512;
	q2 = qcow2_is(im.d);
	if (q2) {
		qcow2_get_info(im.d, &qi);
		if (qi.backing[0])
			img_backing_path(full, sizeof(full), im.path, qi.backing);
	}
	if (json) {
		printf("{\n    \"virtual-size\": %llu,\n    \"filename\": ",
		       (unsigned long long)blk_size(im.d));
		json_str(im.path);
		if (q2)
			printf(",\n    \"cluster-size\": %llu", (unsigned long long)qi.cluster_size);
		printf(",\n    \"format\": \"%s\",\n    \"actual-size\": %llu", im.fmt,
		       (unsigned long long)actual);
		if (q2) {
			printf(",\n    \"format-specific\": {\n        \"type\": \"qcow2\",\n"
			       "        \"data\": {\n            \"compat\": \"%s\",\n"
			       "            \"compression-type\": \"%s\",\n"
			       "            \"lazy-refcounts\": %s,\n"
			       "            \"refcount-bits\": %u,\n"
			       "            \"corrupt\": %s,\n            \"extended-l2\": false\n"
			       "        }\n    }",
			       qi.version == 2 ? "0.10" : "1.1", qi.zstd ? "zstd" : "zlib",
			       qi.lazy_refcounts ? "true" : "false", qi.refcount_bits,
			       qi.corrupt ? "true" : "false");
			if (qi.backing[0]) {
				printf(",\n    \"full-backing-filename\": ");
				json_str(full);
				printf(",\n    \"backing-filename\": ");
				json_str(qi.backing);
				if (qi.backing_fmt[0]) {
					printf(",\n    \"backing-filename-format\": ");
					json_str(qi.backing_fmt);
				}
			}
			printf(",\n    \"dirty-flag\": %s", qi.dirty ? "true" : "false");
		}
		printf("\n}\n");
	} else {
		human_size(vs, sizeof(vs), blk_size(im.d));
		human_size(ds, sizeof(ds), actual);
		printf("image: %s\nfile format: %s\nvirtual size: %s (%llu bytes)\ndisk size: %s\n",
		       im.path, im.fmt, vs, (unsigned long long)blk_size(im.d), ds);
		if (q2) {
			printf("cluster_size: %llu\n", (unsigned long long)qi.cluster_size);
			if (qi.backing[0]) {
				printf("backing file: %s", qi.backing);
				if (strcmp(full, qi.backing))
					printf(" (actual path: %s)", full);
				printf("\n");
				if (qi.backing_fmt[0])
					printf("backing file format: %s\n", qi.backing_fmt);
			}
			if (qi.nb_snapshots)
				printf("Snapshot list: %u snapshots (cvisor img snapshot -l)\n",
				       qi.nb_snapshots);
			printf("Format specific information:\n    compat: %s\n"
			       "    compression type: %s\n    lazy refcounts: %s\n"
			       "    refcount bits: %u\n    corrupt: %s\n    extended l2: false\n",
			       qi.version == 2 ? "0.10" : "1.1", qi.zstd ? "zstd" : "zlib",
			       qi.lazy_refcounts ? "true" : "false", qi.refcount_bits,
			       qi.corrupt ? "true" : "false");
			if (qi.dirty)
				printf("    dirty: true\n");
		}
	}
	img_close(&im);
	return IMG_EXIT_OK;
}

/* ---- check ---- */

static int cmd_check(int argc, char **argv)
{
	static const struct option lo[] = { { "output", required_argument, NULL, 'O' },
		                            { "force-share", no_argument, NULL, 'U' },
		                            { 0 } };
	const char *fmt = NULL, *output = "human";
	struct qcow2_check_res r;
	int repair = QCOW2_REPAIR_NONE, c, rc, status;
	bool quiet = false, json;
	struct img im;
	FILE *out;

	optind = 0;
	while ((c = getopt_long(argc, argv, "f:r:qU", lo, NULL)) != -1) {
		switch (c) {
		case 'f':
			fmt = optarg;
			break;
		case 'r':
			if (!strcmp(optarg, "leaks")) {
				repair = QCOW2_REPAIR_LEAKS;
			} else if (!strcmp(optarg, "all")) {
				repair = QCOW2_REPAIR_ALL;
			} else {
				img_err("check: -r takes leaks or all, not '%s'", optarg);
				return IMG_EXIT_USAGE;
			}
			break;
		case 'q':
			quiet = true;
			break;
		case 'O':
			output = optarg;
			break;
		case 'U':
			break;
		default:
			img_err("check: bad option (see cvisor img --help)");
			return IMG_EXIT_USAGE;
		}
	}
	if (argc - optind != 1) {
		img_err("check: expected FILE");
		return IMG_EXIT_USAGE;
	}
	if (strcmp(output, "human") && strcmp(output, "json")) {
		img_err("check: --output must be human or json");
		return IMG_EXIT_USAGE;
	}
	json = !strcmp(output, "json");
	if (img_open(&im, argv[optind], fmt, !repair,
	             QCOW2_OPEN_NO_BACKING | QCOW2_OPEN_NO_REPAIR |
	                     (repair ? QCOW2_OPEN_REPAIR : 0)) < 0)
		return IMG_EXIT_USAGE;
	if (!qcow2_is(im.d)) {
		img_close(&im);
		if (!quiet)
			printf("This image format does not support checks\n");
		return 63; /* as qemu-img */
	}
	out = quiet || json ? NULL : stdout;
	rc = qcow2_check(im.d, repair, out, &r);
	img_close(&im);
	if (rc < 0) {
		img_err("check: %s: %s", argv[optind], strerror(-rc));
		return IMG_EXIT_FAIL;
	}
	status = r.corruptions ? 2 : r.leaks ? 3 : 0;
	if (json) {
		printf("{\n    \"image-end-offset\": %llu,\n    \"total-clusters\": %llu,\n"
		       "    \"check-errors\": 0,\n    \"leaks\": %llu,\n    \"corruptions\": %llu,\n"
		       "    \"leaks-fixed\": %llu,\n    \"corruptions-fixed\": %llu,\n"
		       "    \"allocated-clusters\": %llu,\n    \"filename\": ",
		       (unsigned long long)r.image_end, (unsigned long long)r.guest_clusters,
		       (unsigned long long)r.leaks, (unsigned long long)r.corruptions,
		       (unsigned long long)r.leaks_fixed, (unsigned long long)r.corruptions_fixed,
		       (unsigned long long)r.allocated);
		json_str(argv[optind]);
		printf(",\n    \"format\": \"qcow2\"\n}\n");
		return status;
	}
	if (quiet)
		return status;
	if (r.leaks_fixed || r.corruptions_fixed)
		printf("The following inconsistencies were found and repaired:\n\n"
		       "    %llu leaked clusters\n    %llu corruptions\n\n"
		       "Double checking the fixed image now...\n",
		       (unsigned long long)r.leaks_fixed, (unsigned long long)r.corruptions_fixed);
	if (r.corruptions)
		printf("\n%llu errors were found on the image.\n"
		       "Data may be corrupted, or further writes to the image may corrupt it.\n",
		       (unsigned long long)r.corruptions);
	if (r.leaks)
		printf("\n%llu leaked clusters were found on the image.\n"
		       "This means waste of disk space, but no harm to data.\n",
		       (unsigned long long)r.leaks);
	if (!r.corruptions && !r.leaks)
		printf("No errors were found on the image.\n");
	if (r.guest_clusters) {
		double t = (double)r.guest_clusters;

		printf("%llu/%llu = %.2f%% allocated, %.2f%% fragmented, %.2f%% compressed clusters\n",
		       (unsigned long long)r.allocated, (unsigned long long)r.guest_clusters,
		       100.0 * (double)r.allocated / t,
		       r.allocated ? 100.0 * (double)r.fragmented / (double)r.allocated : 0.0,
		       r.allocated ? 100.0 * (double)r.compressed / (double)r.allocated : 0.0);
	}
	printf("Image end offset: %llu\n", (unsigned long long)r.image_end);
	return status;
}

/* ---- snapshot ---- */

/* One line of the list, in qemu-img's columns. */
static void snap_print(void *opaque, const struct qcow2_snapshot *s)
{
	char date[32] = "", vm[32], clock[48], icount[24] = "";
	time_t t = (time_t)s->date_sec;
	struct tm tm;
	uint64_t ms = s->vm_clock_nsec / 1000000;

	(void)opaque;
	if (localtime_r(&t, &tm))
		strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
	human_size(vm, sizeof(vm), s->vm_state_size);
	snprintf(clock, sizeof(clock), "%02llu:%02llu:%02llu.%03llu",
	         (unsigned long long)(ms / 3600000), (unsigned long long)(ms / 60000 % 60),
	         (unsigned long long)(ms / 1000 % 60), (unsigned long long)(ms % 1000));
	if (s->icount != UINT64_MAX)
		snprintf(icount, sizeof(icount), "%llu", (unsigned long long)s->icount);
	printf("%-9s %-16s %8s %19s %12s %10s\n", s->id, s->name, vm, date, clock, icount);
}

static int snap_list(const char *path, const char *fmt)
{
	struct img im;
	int rc;

	if (img_open(&im, path, fmt, true, QCOW2_OPEN_NO_BACKING | QCOW2_OPEN_NO_REPAIR) < 0)
		return IMG_EXIT_USAGE;
	if (!qcow2_is(im.d)) {
		img_close(&im);
		img_err("snapshot: %s is not a qcow2 image", path);
		return IMG_EXIT_USAGE;
	}
	printf("Snapshot list:\n%-9s %-16s %8s %19s %12s %10s\n", "ID", "TAG", "VM SIZE", "DATE",
	       "VM CLOCK", "ICOUNT");
	rc = qcow2_snapshots(im.d, snap_print, NULL);
	img_close(&im);
	if (rc < 0) {
		img_err("snapshot: bad snapshot table: %s", strerror(-rc));
		return IMG_EXIT_FAIL;
	}
	return IMG_EXIT_OK;
}

/* Create, delete or apply (op 'c', 'd', 'a') the snapshot name of path. */
static int snap_change(const char *path, const char *fmt, int op, const char *name)
{
	static const char *const verb[] = { ['c'] = "create", ['d'] = "delete", ['a'] = "apply" };
	struct img im;
	int rc;

	if (op == 'c' && (!name[0] || strlen(name) > QCOW2_MAX_SNAP_NAME)) {
		img_err("snapshot: a name is 1 to %d bytes", QCOW2_MAX_SNAP_NAME);
		return IMG_EXIT_USAGE;
	}
	/* writable: the image's lock says whether anyone else has it open */
	if (img_open(&im, path, fmt, false, QCOW2_OPEN_NO_BACKING) < 0)
		return IMG_EXIT_USAGE;
	if (!qcow2_is(im.d)) {
		img_close(&im);
		img_err("snapshot: %s is not a qcow2 image", path);
		return IMG_EXIT_USAGE;
	}
	if (op == 'c')
		rc = qcow2_snapshot_create(im.d, name);
	else if (op == 'd')
		rc = qcow2_snapshot_delete(im.d, name);
	else
		rc = qcow2_snapshot_apply(im.d, name);
	img_close(&im);
	switch (rc) {
	case 0:
		return IMG_EXIT_OK;
	case -ENOENT:
		img_err("snapshot: %s has no snapshot with ID or name '%s'", path, name);
		return IMG_EXIT_USAGE;
	case -EEXIST:
		img_err("snapshot: %s already has a snapshot with ID or name '%s'", path, name);
		return IMG_EXIT_USAGE;
	case -ERANGE:
		img_err("snapshot: cannot %s '%s': a refcount would overflow (the image's "
		        "refcount_bits is too small)", verb[op], name);
		return IMG_EXIT_FAIL;
	case -EFBIG:
		img_err("snapshot: cannot %s '%s': too many snapshots", verb[op], name);
		return IMG_EXIT_FAIL;
	default:
		img_err("snapshot: cannot %s '%s' in %s: %s", verb[op], name, path, strerror(-rc));
		return IMG_EXIT_FAIL;
	}
}

static int cmd_snapshot(int argc, char **argv)
{
	const char *fmt = NULL, *name = NULL;
	int c, op = 0, nops = 0;

	optind = 0;
	while ((c = getopt(argc, argv, "lc:d:a:f:qU")) != -1) {
		switch (c) {
		case 'l':
		case 'c':
		case 'd':
		case 'a':
			op = c;
			name = optarg;
			nops++;
			break;
		case 'f':
			fmt = optarg;
			break;
		case 'q':
		case 'U':
			break;
		default:
			img_err("snapshot: bad option (see cvisor img --help)");
			return IMG_EXIT_USAGE;
		}
	}
	if (nops != 1 || argc - optind != 1) {
		img_err("snapshot: expected one of -l, -c NAME, -d NAME, -a NAME, then FILE");
		return IMG_EXIT_USAGE;
	}
	if (fmt && strcmp(fmt, "qcow2")) {
		img_err("snapshot: only qcow2 images have internal snapshots");
		return IMG_EXIT_USAGE;
	}
	if (op == 'l')
		return snap_list(argv[optind], fmt);
	return snap_change(argv[optind], fmt, op, name);
}

int img_main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int argc, char **argv);
	} cmds[] = {
		{ "create", cmd_create },   { "info", cmd_info },
		{ "check", cmd_check },     { "convert", img_cmd_convert },
		{ "resize", img_cmd_resize }, { "commit", img_cmd_commit },
		{ "rebase", img_cmd_rebase }, { "snapshot", cmd_snapshot },
		{ "write", img_cmd_write }, { "stress", img_cmd_stress },
		{ "bench", img_cmd_bench },
	};

	if (argc < 2) {
		img_err("expected a command (try: cvisor img --help)");
		return IMG_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return IMG_EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].fn(argc - 1, argv + 1);
	}
	img_err("unknown command '%s' (try: cvisor img --help)", argv[1]);
	return IMG_EXIT_USAGE;
}
