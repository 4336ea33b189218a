#define _GNU_SOURCE
/* apilat: latency of an HTTP request over a Unix socket, for benchmarks.
 *   apilat SOCKET PATH COUNT
 * Sends COUNT "GET PATH" requests on one keep-alive connection, one at a
 * time, and prints "median_us=M p99_us=P max_us=X". */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Read one response: headers, then Content-Length bytes. */
static int read_response(int fd)
{
	char buf[65536];
	size_t got = 0;
	for (;;) {
		ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (n <= 0)
			return -1;
		got += (size_t)n;
		buf[got] = '\0';
		char *end = strstr(buf, "\r\n\r\n");
		if (!end)
			continue;
		char *cl = strcasestr(buf, "Content-Length:");
		size_t want = (size_t)(end + 4 - buf) + (cl ? (size_t)atol(cl + 15) : 0);
		if (got >= want)
			return 0;
	}
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: apilat SOCKET PATH COUNT\n");
		return 2;
	}
	int count = atoi(argv[3]);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", argv[1]);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || count < 1) {
		perror("apilat");
		return 1;
	}
	char req[512];
	int rl = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", argv[2]);
	double *t = calloc((size_t)count, sizeof(double));
	for (int i = 0; i < count; i++) {
		double t0 = now_us();
		if (write(fd, req, (size_t)rl) != rl || read_response(fd) < 0) {
			fprintf(stderr, "apilat: request %d failed\n", i);
			return 1;
		}
		t[i] = now_us() - t0;
	}
	qsort(t, (size_t)count, sizeof(double), cmp);
	printf("median_us=%.0f p99_us=%.0f max_us=%.0f\n", t[count / 2], t[(count * 99) / 100], t[count - 1]);
	return 0;
}
