/* `cvisor vm console NAME`: an HTTP request with "Upgrade: cvisor-console"
 * to cvisord, then a raw byte stream both ways. On a terminal the terminal
 * is raw (every key goes to the guest) and Ctrl-] detaches; from a pipe or a
 * file the input is sent as it is, and once it ends the output goes on for
 * VMCTL_LINGER_MS more (scripts: `printf 'ls\n' | cvisor vm console vm1`). */
#include "vmctl/vmctl.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "api/client.h"
#include "util/log.h"
#include "util/term.h"

#define EXIT_ERROR 1
#define EXIT_USAGE 2
#define VMCTL_LINGER_MS 1000
#define VMCTL_HEAD_MAX 8192

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Connect and upgrade. Returns the socket, with *rest and *restlen the stream
 * bytes that came with the answer, or -1 after printing why (*status: exit). */
static int open_stream(const char *sock, const char *name, char *rest, size_t *restlen,
                       int *status)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	char req[256], head[VMCTL_HEAD_MAX + 1];
	size_t len = 0;
	int fd;

	*status = EXIT_ERROR;
	if (strlen(sock) >= sizeof(a.sun_path)) {
		log_error("socket path %s is too long", sock);
		*status = EXIT_USAGE;
		return -1;
	}
	strcpy(a.sun_path, sock);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		log_error("cannot connect to %s: %s (is cvisord running?)", sock, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	int n = snprintf(req, sizeof(req),
	                 "GET /v1/vms/%s/console HTTP/1.1\r\nHost: localhost\r\n"
	                 "Upgrade: cvisor-console\r\nConnection: Upgrade\r\n\r\n",
	                 name);
	if (write_all(fd, req, (size_t)n) < 0) {
		log_error("%s: %s", sock, strerror(errno));
		close(fd);
		return -1;
	}
	/* the answer head, byte by byte bounded by VMCTL_HEAD_MAX */
	char *end = NULL;
	while (!end) {
		if (len == VMCTL_HEAD_MAX) {
			log_error("%s: answer head too long", sock);
			close(fd);
			return -1;
		}
		ssize_t r = read(fd, head + len, VMCTL_HEAD_MAX - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
		head[len] = '\0';
		end = strstr(head, "\r\n\r\n");
	}
	if (end && !strncmp(head, "HTTP/1.1 101", 12)) {
		size_t used = (size_t)(end - head) + 4;
		memcpy(rest, head + used, len - used);
		*restlen = len - used;
		return fd;
	}
	/* an error answer: read it to its end and show its message */
	char *all = malloc(65536);
	if (all) {
		memcpy(all, head, len);
		ssize_t r;
		while (len < 65535 && (r = read(fd, all + len, 65535 - len)) > 0)
			len += (size_t)r;
		struct api_response resp;
		if (api_client_parse(all, len, &resp) == 0) {
			struct json_object *o = json_tokener_parse(resp.body), *e;
			if (o && json_object_object_get_ex(o, "error", &e))
				log_error("%s", json_object_get_string(e));
			else
				log_error("cvisord answered HTTP %d", resp.status);
			if (resp.status == 400)
				*status = EXIT_USAGE;
			json_object_put(o);
			api_response_free(&resp);
		} else {
			log_error("%s: no console stream in the answer", sock);
		}
		free(all);
	}
	close(fd);
	return -1;
}

int vmctl_console(const char *sock, const char *name)
{
	char rest[VMCTL_HEAD_MAX], buf[16384];
	size_t restlen = 0;
	int status, fd;
	bool tty = isatty(STDIN_FILENO), in_open = true;
	int64_t linger_until = 0;

	/* the VM's state first: a stopped VM shows its scrollback only */
	struct api_response resp;
	char err[512], path[128];
	snprintf(path, sizeof(path), "/v1/vms/%s", name);
	if (api_client_request(sock, "GET", path, NULL, 10000, &resp, err, sizeof(err)) == 0) {
		struct json_object *o = json_tokener_parse(resp.body), *s;
		if (resp.status == 200 && o && json_object_object_get_ex(o, "state", &s) &&
		    strcmp(json_object_get_string(s), "running") &&
		    strcmp(json_object_get_string(s), "paused"))
			fprintf(stderr, "cvisor: VM %s is %s: showing its scrollback\n", name,
			        json_object_get_string(s));
		json_object_put(o);
		api_response_free(&resp);
	}
	fd = open_stream(sock, name, rest, &restlen, &status);
	if (fd < 0)
		return status;
	if (tty) {
		fprintf(stderr, "cvisor: console of %s; detach with Ctrl-]\n", name);
		if (term_raw_enter(STDIN_FILENO) < 0)
			tty = false;
	}
	status = 0;
	if (restlen && write_all(STDOUT_FILENO, rest, restlen) < 0)
		goto out;
	for (;;) {
		struct pollfd p[2] = {
			{ .fd = fd, .events = POLLIN },
			{ .fd = in_open ? STDIN_FILENO : -1, .events = POLLIN },
		};
		int timeout = -1;
		if (linger_until) {
			int64_t left = linger_until - mono_ms();
			if (left <= 0)
				break;
			timeout = (int)left;
		}
		int n = poll(p, 2, timeout);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			status = EXIT_ERROR;
			break;
		}
		if (p[0].revents) {
			ssize_t r = read(fd, buf, sizeof(buf));
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				if (tty)
					term_raw_leave();
				fprintf(stderr, "\ncvisor: cvisord closed the console of %s\n", name);
				status = EXIT_ERROR;
				break;
			}
			if (write_all(STDOUT_FILENO, buf, (size_t)r) < 0)
				break; /* nobody reads our output any more */
		}
		if (p[1].revents) {
			ssize_t r = read(STDIN_FILENO, buf, sizeof(buf));
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				in_open = false;
				linger_until = mono_ms() + VMCTL_LINGER_MS;
				continue;
			}
			size_t len = (size_t)r;
			char *key = tty ? memchr(buf, VMCTL_DETACH_KEY, len) : NULL;
			if (key)
				len = (size_t)(key - buf);
			if (len && write_all(fd, buf, len) < 0) {
				status = EXIT_ERROR;
				break;
			}
			if (key)
				break; /* detached */
		}
	}
out:
	if (tty) {
		term_raw_leave();
		fprintf(stderr, "\ncvisor: detached from %s\n", name);
	}
	close(fd);
	return status;
}
