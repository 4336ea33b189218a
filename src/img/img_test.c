/* `cvisor img` test helpers: write (one write, zeroing or discard, like
 * qemu-io's write -P / -z) and stress (a deterministic stream of writes and
 * zeroings with flushes, to be killed at any point, and its verifier).
 *
 * stress splits the disk into slots. Op i targets slot perm(i): ops below
 * the slot count write a pattern into part of the slot, later ops zero the
 * whole slot. After each flush (every --flush-every ops) it prints "flushed
 * N": ops 0..N-1 are then on disk, and none past N + flush-every - 1 has
 * started. --verify N checks, for every slot that no op of the uncertain
 * window [N, N + flush-every) touches, that it holds exactly what ops below
 * N put there, and the base (or zeroes) elsewhere. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "block/qcow2.h"
#include "img/img.h"

int img_cmd_write(int argc, char **argv)
{
	const char *fmt = NULL;
	uint64_t off, len;
	int pattern = 0xcd, c, rc;
	bool zero = false, unmap = false, discard = false;
	uint8_t *buf = NULL;
	struct img im;

	optind = 0;
	while ((c = getopt(argc, argv, "f:P:zud")) != -1) {
		switch (c) {
		case 'f':
			fmt = optarg;
			break;
		case 'P':
			pattern = (int)strtol(optarg, NULL, 0) & 0xff;
			break;
		case 'z':
			zero = true;
			break;
		case 'u':
			unmap = true;
			break;
		case 'd':
			discard = true;
			break;
		default:
			img_err("write: bad option (see cvisor img --help)");
			return IMG_EXIT_USAGE;
		}
	}
	if (argc - optind != 3 || img_parse_size(argv[optind + 1], &off) < 0 ||
	    img_parse_size(argv[optind + 2], &len) < 0 || len > (256u << 20)) {
		img_err("write: expected FILE OFFSET LEN (LEN up to 256M)");
		return IMG_EXIT_USAGE;
	}
	if (img_open(&im, argv[optind], fmt, false, 0) < 0)
		return IMG_EXIT_USAGE;
	if (discard) {
		rc = img_discard(&im, len, off);
	} else if (zero) {
		rc = img_zero(&im, len, off, unmap);
	} else {
		buf = malloc(len ? len : 1);
		if (!buf) {
			img_close(&im);
			img_err("out of memory");
			return IMG_EXIT_FAIL;
		}
		memset(buf, pattern, len);
		rc = img_write(&im, buf, len, off);
	}
	if (rc == 0)
		rc = img_flush(&im);
	free(buf);
	img_close(&im);
	if (rc < 0) {
		img_err("write: %s", strerror(-rc));
		return rc == -EINVAL ? IMG_EXIT_USAGE : IMG_EXIT_FAIL;
	}
	return IMG_EXIT_OK;
}

struct plan {
	uint64_t seed, slot, nslots, mult, add;
};

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
	while (b) {
		uint64_t t = a % b;

		a = b;
		b = t;
	}
	return a;
}

static void plan_init(struct plan *p, uint64_t seed, uint64_t slot, uint64_t size)
{
	p->seed = seed;
	p->slot = slot;
	p->nslots = size / slot;
	p->mult = p->nslots ? mix(seed) % p->nslots : 1;
	while (p->nslots && (p->mult == 0 || gcd(p->mult, p->nslots) != 1))
		p->mult = (p->mult + 1) % p->nslots;
	p->add = p->nslots ? mix(seed + 1) % p->nslots : 0;
}

/* Op i: its slot, whether it zeroes the slot, and the written range in it. */
static uint64_t plan_op(const struct plan *p, uint64_t i, bool *zero, uint64_t *off, uint64_t *len)
{
	uint64_t k = i % p->nslots, r = mix(p->seed ^ (i * 0x100000001b3ULL));
	uint64_t sectors = p->slot / 512, first = r % sectors;

	*zero = i >= p->nslots;
	if (*zero) {
		*off = 0;
		*len = p->slot;
	} else {
		*off = first * 512;
		*len = (1 + (r >> 32) % (sectors - first)) * 512;
	}
	return (k * p->mult + p->add) % p->nslots;
}

static uint8_t plan_byte(uint64_t i, uint64_t pos)
{
	return (uint8_t)(i * 131 + (pos >> 9) * 7 + 1 + (pos & 511));
}

static int verify(struct img *im, struct img *base, const struct plan *p, uint64_t done,
                  uint64_t every, uint64_t total)
{
	uint8_t *got = malloc(p->slot), *want = malloc(p->slot);
	uint64_t *last = calloc(p->nslots, sizeof(*last)); /* op + 1, 0: none */
	bool *unsure = calloc(p->nslots, sizeof(*unsure));
	uint64_t bad = 0, checked = 0;
	int rc = -ENOMEM;

	if (!got || !want || !last || !unsure)
		goto out;
	for (uint64_t i = 0; i < total; i++) {
		uint64_t off, len;
		bool zero;
		uint64_t s = plan_op(p, i, &zero, &off, &len);

		if (i < done)
			last[s] = i + 1;
		else if (i < done + every)
			unsure[s] = true; /* may or may not have happened */
	}
	for (uint64_t s = 0; s < p->nslots; s++) {
		uint64_t at = s * p->slot;

		if (unsure[s])
			continue;
		memset(want, 0, p->slot);
		if (base && at < blk_size(base->d)) {
			uint64_t n = blk_size(base->d) - at < p->slot ? blk_size(base->d) - at : p->slot;

			rc = img_read(base, want, n, at);
			if (rc < 0)
				goto out;
		}
		if (last[s]) {
			uint64_t i = last[s] - 1, off, len;
			bool zero;

			plan_op(p, i, &zero, &off, &len);
			if (zero) {
				memset(want, 0, p->slot);
			} else {
				for (uint64_t b = 0; b < len; b++)
					want[off + b] = plan_byte(i, b);
			}
		}
		rc = img_read(im, got, p->slot, at);
		if (rc < 0)
			goto out;
		checked++;
		if (memcmp(got, want, p->slot)) {
			if (bad++ < 5)
				img_err("verify: slot %llu (offset %llu, last op %lld) differs",
				        (unsigned long long)s, (unsigned long long)at,
				        (long long)last[s] - 1);
		}
	}
	printf("verified %llu slots, %llu bad\n", (unsigned long long)checked,
	       (unsigned long long)bad);
	rc = bad ? -EIO : 0;
out:
	free(got);
	free(want);
	free(last);
	free(unsure);
	return rc;
}

int img_cmd_stress(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "seed", required_argument, NULL, 's' },   { "count", required_argument, NULL, 'n' },
		{ "slot", required_argument, NULL, 'l' },   { "flush-every", required_argument, NULL, 'e' },
		{ "verify", required_argument, NULL, 'v' }, { "base", required_argument, NULL, 'b' },
		{ "total", required_argument, NULL, 't' },  { 0 },
	};
	uint64_t seed = 1, count = 1000, slot = 96 * 1024, every = 8, vdone = 0, total = 0;
	const char *basepath = NULL;
	struct img im = { 0 }, base = { 0 };
	bool do_verify = false;
	struct plan p;
	uint8_t *buf = NULL;
	int c, rc = 0, status = IMG_EXIT_FAIL;

	optind = 0;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		uint64_t v;

		if (c == '?' || (c != 'b' && img_parse_size(optarg, &v) < 0)) {
			img_err("stress: usage: stress [--seed N] [--count N] [--slot BYTES] "
			        "[--flush-every N] [--verify N --total N [--base RAW]] FILE");
			return IMG_EXIT_USAGE;
		}
		switch (c) {
		case 's':
			seed = v;
			break;
		case 'n':
			count = v;
			break;
		case 'l':
			slot = v;
			break;
		case 'e':
			every = v ? v : 1;
			break;
		case 'v':
			vdone = v;
			do_verify = true;
			break;
		case 't':
			total = v;
			break;
		case 'b':
			basepath = optarg;
			break;
		}
	}
	if (argc - optind != 1 || slot < 512 || slot % 512 || slot > (16u << 20)) {
		img_err("stress: expected FILE (and a slot size that is a multiple of 512)");
		return IMG_EXIT_USAGE;
	}
	if (img_open(&im, argv[optind], NULL, do_verify, 0) < 0)
		return IMG_EXIT_USAGE;
	plan_init(&p, seed, slot, blk_size(im.d));
	if (!p.nslots) {
		img_err("stress: the disk is smaller than one slot");
		goto out;
	}
	if (count > 2 * p.nslots)
		count = 2 * p.nslots;
	if (do_verify) {
		if (basepath && img_open(&base, basepath, "raw", true, 0) < 0)
			goto out;
		if (total && total < count)
			count = total;
		rc = verify(&im, basepath ? &base : NULL, &p, vdone, every, count);
		status = rc == 0 ? IMG_EXIT_OK : IMG_EXIT_FAIL;
		goto out;
	}
	buf = malloc(slot);
	if (!buf) {
		img_err("out of memory");
		goto out;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (uint64_t i = 0; i < count; i++) {
		uint64_t off, len;
		bool zero;
		uint64_t s = plan_op(&p, i, &zero, &off, &len);

		if (zero) {
			rc = img_zero(&im, slot, s * slot, true);
		} else {
			for (uint64_t b = 0; b < len; b++)
				buf[b] = plan_byte(i, b);
			rc = img_write(&im, buf, len, s * slot + off);
		}
		if (rc == 0 && ((i + 1) % every == 0 || i + 1 == count)) {
			rc = img_flush(&im);
			if (rc == 0)
				printf("flushed %llu\n", (unsigned long long)(i + 1));
		}
		if (rc < 0) {
			img_err("stress: op %llu: %s", (unsigned long long)i, strerror(-rc));
			goto out;
		}
	}
	status = IMG_EXIT_OK;
out:
	free(buf);
	img_close(&base);
	img_close(&im);
	return status;
}

/* `img bench [-f FMT] read|write SECONDS FILE`: 4 KiB requests at random
 * aligned offsets, one at a time, through the block driver in this process
 * (the qcow2 allocation path on a fresh image). Prints MB/s and IOPS. */
int img_cmd_bench(int argc, char **argv)
{
	const char *fmt = NULL;
	struct img im = { 0 };
	int c;

	optind = 0;
	while ((c = getopt(argc, argv, "f:")) != -1) {
		if (c != 'f') {
			img_err("bench: usage: bench [-f FMT] read|write SECONDS FILE");
			return IMG_EXIT_USAGE;
		}
		fmt = optarg;
	}
	if (argc - optind != 3 || (strcmp(argv[optind], "read") && strcmp(argv[optind], "write")) ||
	    atoi(argv[optind + 1]) <= 0) {
		img_err("bench: usage: bench [-f FMT] read|write SECONDS FILE");
		return IMG_EXIT_USAGE;
	}
	bool wr = !strcmp(argv[optind], "write");
	double secs = atoi(argv[optind + 1]);
	if (img_open(&im, argv[optind + 2], fmt, !wr, 0) < 0)
		return IMG_EXIT_FAIL;
	uint64_t blocks = blk_size(im.d) / 4096, x = 0x9e3779b97f4a7c15ULL, ops = 0;
	uint8_t buf[4096];
	memset(buf, 0x5a, sizeof(buf));
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	double el = 0;
	while (blocks && el < secs) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		uint64_t off = (x % blocks) * 4096;
		int rc = wr ? img_write(&im, buf, sizeof(buf), off) : img_read(&im, buf, sizeof(buf), off);
		if (rc < 0) {
			img_err("bench: I/O error at %llu: %s", (unsigned long long)off, strerror(-rc));
			img_close(&im);
			return IMG_EXIT_FAIL;
		}
		if ((++ops & 63) == 0) {
			clock_gettime(CLOCK_MONOTONIC, &t);
			el = (double)(t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9;
		}
	}
	if (wr)
		img_flush(&im);
	clock_gettime(CLOCK_MONOTONIC, &t);
	el = (double)(t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9;
	printf("MB/s=%.1f iops=%.0f\n", ops * 4096.0 / el / 1e6, ops / el);
	img_close(&im);
	return 0;
}
