/* rarpwait: wait for a RARP frame (EtherType 0x8035) on a network interface
 * and print its source MAC: how a test sees a VMM announce a guest after a
 * restore or a migration (busybox has no tcpdump).
 *   rarpwait IFACE TIMEOUT_S     exit 0 and "rarp from MAC" on the first frame,
 *                                1 on timeout, 2 on bad usage or socket errors */
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ETH_P_RARP_ 0x8035

static long long now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: rarpwait IFACE TIMEOUT_S\n");
		return 2;
	}
	unsigned idx = if_nametoindex(argv[1]);
	if (!idx) {
		fprintf(stderr, "rarpwait: no interface %s\n", argv[1]);
		return 2;
	}
	int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_RARP_));
	struct sockaddr_ll a = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_RARP_),
		                 .sll_ifindex = (int)idx };
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("rarpwait: packet socket");
		return 2;
	}
	printf("rarpwait: listening on %s\n", argv[1]);
	fflush(stdout);
	long long end = now_ms() + atoi(argv[2]) * 1000LL;
	for (long long left; (left = end - now_ms()) > 0;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, (int)left) != 1)
			break;
		unsigned char f[128];
		ssize_t n = recv(fd, f, sizeof(f), 0);
		if (n < 14 || f[12] != 0x80 || f[13] != 0x35)
			continue;
		printf("rarp from %02x:%02x:%02x:%02x:%02x:%02x\n", f[6], f[7], f[8], f[9], f[10], f[11]);
		return 0;
	}
	printf("rarpwait: timeout\n");
	return 1;
}
