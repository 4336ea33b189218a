/* vsockt: a tiny AF_VSOCK test tool for the rig (static binary in L1 and the
 * guest, where busybox has no vsock support).
 *   vsockt listen PORT          echo server: echoes each connection's bytes back
 *   vsockt send CID PORT MSG    connect, send MSG, print what comes back
 *   vsockt stream CID PORT MiB  connect, send MiB of pseudo-random data, print
 *                               "sent N sum S / got N sum S" after the echo */
#include <errno.h>
#include <linux/vm_sockets.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int die(const char *what)
{
	fprintf(stderr, "vsockt: %s: %s\n", what, strerror(errno));
	return 1;
}

static int connect_to(unsigned cid, unsigned port)
{
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port };
	int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		return -1;
	return fd;
}

static int serve(unsigned port)
{
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port };
	int ls = socket(AF_VSOCK, SOCK_STREAM, 0);
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 4) < 0)
		return die("listen");
	printf("listening on port %u\n", port);
	fflush(stdout);
	for (;;) {
		int c = accept(ls, NULL, NULL);
		if (c < 0)
			continue;
		char buf[65536];
		ssize_t n;
		while ((n = read(c, buf, sizeof(buf))) > 0) {
			for (ssize_t off = 0; off < n;) {
				ssize_t w = write(c, buf + off, (size_t)(n - off));
				if (w <= 0)
					break;
				off += w;
			}
		}
		close(c);
	}
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "listen"))
		return serve((unsigned)atoi(argv[2]));
	if (argc == 5 && !strcmp(argv[1], "send")) {
		int fd = connect_to((unsigned)atoi(argv[2]), (unsigned)atoi(argv[3]));
		if (fd < 0)
			return die("connect");
		size_t len = strlen(argv[4]);
		if (write(fd, argv[4], len) != (ssize_t)len)
			return die("write");
		shutdown(fd, SHUT_WR);
		char buf[4096];
		ssize_t n, got = 0;
		while ((n = read(fd, buf + got, sizeof(buf) - 1 - (size_t)got)) > 0)
			got += n;
		buf[got] = '\0';
		printf("echo: %s\n", buf);
		return 0;
	}
	if (argc == 5 && !strcmp(argv[1], "stream")) {
		int fd = connect_to((unsigned)atoi(argv[2]), (unsigned)atoi(argv[3]));
		if (fd < 0)
			return die("connect");
		size_t total = (size_t)atoi(argv[4]) << 20, sent = 0, got = 0;
		uint64_t ssum = 0, rsum = 0, x = 88172645463325252ULL;
		static unsigned char out[65536], in[65536];
		while (got < total) {
			if (sent < total) {
				size_t k = total - sent < sizeof(out) ? total - sent : sizeof(out);
				for (size_t i = 0; i < k; i++) {
					x ^= x << 13, x ^= x >> 7, x ^= x << 17;
					out[i] = (unsigned char)x;
					ssum = ssum * 31 + out[i];
				}
				for (size_t off = 0; off < k;) {
					ssize_t w = write(fd, out + off, k - off);
					if (w <= 0)
						return die("write");
					off += (size_t)w;
				}
				sent += k;
			}
			/* keep at most 128 KiB in flight so neither side blocks on a full buffer */
			while (got + 131072 < sent || (sent == total && got < total)) {
				ssize_t r = read(fd, in, sizeof(in));
				if (r <= 0)
					return die("read");
				for (ssize_t i = 0; i < r; i++)
					rsum = rsum * 31 + in[i];
				got += (size_t)r;
			}
		}
		printf("sent %zu sum %016llx / got %zu sum %016llx\n", sent, (unsigned long long)ssum, got,
		       (unsigned long long)rsum);
		return ssum == rsum ? 0 : 1;
	}
	fprintf(stderr, "usage: vsockt listen PORT | send CID PORT MSG | stream CID PORT MiB\n");
	return 2;
}
