/* unixcmd: send one line to a Unix stream socket and print what comes back
 * within a short quiet period (QEMU's human monitor in benchmarks, where
 * busybox nc cannot speak to Unix sockets).
 *   unixcmd SOCKET 'LINE' [WAIT_MS]   */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: unixcmd SOCKET LINE [WAIT_MS]\n");
		return 2;
	}
	int wait_ms = argc > 3 ? atoi(argv[3]) : 300;
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", argv[1]);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("unixcmd: connect");
		return 1;
	}
	char buf[65536];
	struct pollfd p = { .fd = fd, .events = POLLIN };
	while (poll(&p, 1, 200) == 1 && read(fd, buf, sizeof(buf)) > 0)
		; /* the greeting */
	if (write(fd, argv[2], strlen(argv[2])) < 0 || write(fd, "\n", 1) < 0)
		return 1;
	ssize_t n;
	while (poll(&p, 1, wait_ms) == 1 && (n = read(fd, buf, sizeof(buf))) > 0)
		fwrite(buf, 1, (size_t)n, stdout);
	return 0;
}
