/* migproxy: a TCP relay for a migration stream (vm/migrate_stream.h), to put a
 * network fault at an exact point of the protocol.
 *
 *   migproxy LISTEN-PORT DEST-PORT MODE
 *
 * Accepts one connection on 127.0.0.1:LISTEN-PORT (the source), connects to
 * 127.0.0.1:DEST-PORT (the destination) and relays the hellos and then whole
 * sections both ways. MODE:
 *   pass        relay everything (a control)
 *   lose-answer relay the source's DONE, swallow the destination's answer to
 *               it, then close the source's side: the whole state went out and
 *               no answer came back. The destination's side stays open until
 *               the destination closes it.
 * Prints "listening" once it accepts, and one line per event on stdout. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HELLO_LEN 60
#define TAG_LEN 32
#define T_DONE 4
#define T_ANSWER 5

static int read_full(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int write_full(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* One section from 'from' (type and whole frame in *buf); 0, or -1 at EOF. */
static int read_section(int from, int keyed, uint32_t *type, uint8_t **buf, size_t *len)
{
	uint8_t hdr[12];
	uint64_t plen;
	if (read_full(from, hdr, sizeof(hdr)))
		return -1;
	memcpy(type, hdr, 4);
	memcpy(&plen, hdr + 4, 8);
	if (plen > (64u << 20))
		return -1;
	*len = sizeof(hdr) + plen + (keyed ? TAG_LEN : 0);
	if (!(*buf = malloc(*len)))
		return -1;
	memcpy(*buf, hdr, sizeof(hdr));
	if (read_full(from, *buf + sizeof(hdr), *len - sizeof(hdr))) {
		free(*buf);
		return -1;
	}
	return 0;
}

static int listen_on(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
		                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 1))
		return -1;
	return fd;
}

static int connect_to(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
		                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)))
		return -1;
	return fd;
}

int main(int argc, char **argv)
{
	if (argc != 4 || (strcmp(argv[3], "pass") && strcmp(argv[3], "lose-answer"))) {
		fprintf(stderr, "usage: migproxy LISTEN-PORT DEST-PORT pass|lose-answer\n");
		return 2;
	}
	int lose = !strcmp(argv[3], "lose-answer");
	int l = listen_on(atoi(argv[1]));
	if (l < 0) {
		perror("migproxy: listen");
		return 1;
	}
	printf("listening\n");
	fflush(stdout);
	int src = accept(l, NULL, NULL);
	int dst = src < 0 ? -1 : connect_to(atoi(argv[2]));
	if (src < 0 || dst < 0) {
		perror("migproxy: accept/connect");
		return 1;
	}
	close(l);
	uint8_t hs[HELLO_LEN], hd[HELLO_LEN];
	if (read_full(src, hs, sizeof(hs)) || write_full(dst, hs, sizeof(hs)) ||
	    read_full(dst, hd, sizeof(hd)) || write_full(src, hd, sizeof(hd))) {
		fprintf(stderr, "migproxy: the hellos did not go through\n");
		return 1;
	}
	int keyed = (hs[9] & 1) && (hd[9] & 1); /* flags byte: MS_HELLO_MAC */
	int done_seen = 0;
	unsigned long sections = 0;
	for (;;) {
		struct pollfd p[2] = { { .fd = src, .events = POLLIN }, { .fd = dst, .events = POLLIN } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		for (int i = 0; i < 2; i++) {
			if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			int from = i ? dst : src, to = i ? src : dst;
			uint32_t type;
			uint8_t *buf;
			size_t len;
			if (read_section(from, keyed, &type, &buf, &len)) {
				printf("%s closed after %lu sections\n", i ? "destination" : "source", sections);
				return 0;
			}
			sections++;
			if (lose && i == 1 && type == T_ANSWER && done_seen) {
				/* the answer to DONE: the source never gets it */
				printf("swallowed the destination's answer '%c'; closing the source's side\n",
				       len > 12 ? buf[12] : '?');
				fflush(stdout);
				free(buf);
				shutdown(src, SHUT_RDWR);
				close(src);
				/* stay until the destination lets go */
				char c;
				while (read(dst, &c, 1) > 0)
					;
				printf("destination closed\n");
				return 0;
			}
			if (i == 0 && type == T_DONE) {
				done_seen = 1;
				printf("relayed DONE\n");
				fflush(stdout);
			}
			int rc = write_full(to, buf, len);
			free(buf);
			if (rc) {
				printf("%s went away\n", i ? "source" : "destination");
				return 0;
			}
		}
	}
}
