/* randio: block I/O throughput inside a guest, where busybox has no fio.
 *   randio read|write seq|rand BLOCK_BYTES SECONDS DEVICE
 * O_DIRECT, one request at a time (queue depth 1), random offsets aligned to
 * the block size over the whole device. Prints "MB/s=X iops=Y". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: randio read|write seq|rand BLOCK_BYTES SECONDS DEVICE\n");
		return 2;
	}
	int wr = !strcmp(argv[1], "write"), rnd = !strcmp(argv[2], "rand");
	size_t bs = (size_t)atol(argv[3]);
	double secs = atof(argv[4]);
	int fd = open(argv[5], (wr ? O_RDWR : O_RDONLY) | O_DIRECT);
	uint64_t size = 0;
	if (fd < 0 || ioctl(fd, BLKGETSIZE64, &size) < 0 || size < bs || bs == 0) {
		perror("randio: open");
		return 1;
	}
	void *buf;
	if (posix_memalign(&buf, 4096, bs))
		return 1;
	memset(buf, 0x5a, bs);
	uint64_t blocks = size / bs, x = 0x9e3779b97f4a7c15ULL, off = 0, ops = 0;
	double t0 = now(), t = t0;
	while (t - t0 < secs) {
		if (rnd) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			off = (x % blocks) * bs;
		} else if (off + bs > size) {
			off = 0;
		}
		ssize_t n = wr ? pwrite(fd, buf, bs, (off_t)off) : pread(fd, buf, bs, (off_t)off);
		if (n != (ssize_t)bs) {
			perror("randio: io");
			return 1;
		}
		if (!rnd)
			off += bs;
		ops++;
		if ((ops & 15) == 0)
			t = now();
	}
	t = now() - t0;
	printf("MB/s=%.1f iops=%.0f\n", ops * bs / t / 1e6, ops / t);
	return 0;
}
