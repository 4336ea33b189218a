/* Serial console backends. */
#include "vm/console.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/log.h"
#include "util/term.h"

static int listen_unix(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct stat st;
	int fd;

	if (strlen(path) >= sizeof(a.sun_path)) {
		snprintf(err, errlen, "--serial socket path is too long: %s", path);
		return -ENAMETOOLONG;
	}
	strcpy(a.sun_path, path);
	/* a stale socket from an earlier run may go; any other file stays */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "--serial socket=%s: a file that is not a socket exists there",
			         path);
			return -EEXIST;
		}
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 4) < 0) {
		int rc = -errno;
		snprintf(err, errlen, "--serial socket=%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	return fd;
}

int console_open(struct console *c, const struct vm_config *cfg, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	c->kind = cfg->serial;
	c->in_fd = c->out_fd = c->listen_fd = -1;
	c->path = cfg->serial_path;
	pthread_mutex_init(&c->lock, NULL);

	switch (cfg->serial) {
	case SERIAL_STDIO:
		c->in_fd = STDIN_FILENO;
		c->out_fd = STDOUT_FILENO;
		if (isatty(STDIN_FILENO) && term_raw_enter(STDIN_FILENO) == 0) {
			c->tty = true;
			log_info("serial console on this terminal; press Ctrl-A x to quit");
		}
		break;
	case SERIAL_FILE:
		c->out_fd = open(cfg->serial_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (c->out_fd < 0) {
			snprintf(err, errlen, "--serial file=%s: %s", cfg->serial_path, strerror(errno));
			return -errno;
		}
		break;
	case SERIAL_SOCKET: {
		int fd = listen_unix(cfg->serial_path, err, errlen);
		if (fd < 0)
			return fd;
		c->listen_fd = fd;
		break;
	}
	case SERIAL_NONE:
		break;
	}
	return 0;
}

void console_close(struct console *c)
{
	if (c->tty)
		term_raw_leave();
	if (c->kind == SERIAL_SOCKET) {
		if (c->out_fd >= 0)
			close(c->out_fd);
		if (c->listen_fd >= 0) {
			close(c->listen_fd);
			unlink(c->path);
		}
	} else if (c->kind == SERIAL_FILE && c->out_fd >= 0) {
		close(c->out_fd);
	}
	if (c->dropped)
		log_debug("serial: %llu output bytes had no reader", (unsigned long long)c->dropped);
	c->in_fd = c->out_fd = c->listen_fd = -1;
}

void console_write(void *opaque, const uint8_t *buf, size_t len)
{
	struct console *c = opaque;

	pthread_mutex_lock(&c->lock);
	while (len && c->out_fd >= 0) {
		ssize_t n;
		if (c->kind == SERIAL_SOCKET)
			n = send(c->out_fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		else
			n = write(c->out_fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* full socket or closed stdout: the guest must not stall on it */
		buf += n;
		len -= (size_t)n;
	}
	c->dropped += len;
	pthread_mutex_unlock(&c->lock);
}

void console_accept(struct console *c)
{
	int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	pthread_mutex_lock(&c->lock);
	if (c->out_fd >= 0) {
		pthread_mutex_unlock(&c->lock);
		static const char busy[] = "cvisor: this console already has a client\r\n";
		if (write(fd, busy, sizeof(busy) - 1) < 0) {
			/* nothing to do: the client is going away anyway */
		}
		close(fd);
		return;
	}
	c->out_fd = c->in_fd = fd;
	pthread_mutex_unlock(&c->lock);
}

static void console_drop_input(struct console *c)
{
	if (c->kind == SERIAL_SOCKET) {
		pthread_mutex_lock(&c->lock);
		close(c->in_fd);
		c->out_fd = -1;
		pthread_mutex_unlock(&c->lock);
	}
	c->in_fd = -1;
}

enum console_input console_read(struct console *c, uint8_t *buf, size_t room, size_t *n)
{
	uint8_t raw[256];
	size_t out = 0;

	*n = 0;
	if (c->in_fd < 0 || room == 0)
		return CONSOLE_OK;
	/* on a tty an escape held over from the last read adds one byte of output */
	if (c->tty) {
		if (room < 2)
			return CONSOLE_OK;
		room--;
	}
	if (room > sizeof(raw))
		room = sizeof(raw);
	ssize_t got = read(c->in_fd, raw, room);
	if (got < 0 && (errno == EAGAIN || errno == EINTR))
		return CONSOLE_OK;
	if (got <= 0) {
		console_drop_input(c);
		return CONSOLE_OK;
	}
	for (ssize_t i = 0; i < got; i++) {
		uint8_t ch = raw[i];
		if (!c->tty) {
			buf[out++] = ch;
			continue;
		}
		if (c->escape) {
			c->escape = false;
			if (ch == 'x' || ch == 'X')
				return CONSOLE_QUIT;
			if (ch != CONSOLE_ESCAPE)
				buf[out++] = CONSOLE_ESCAPE;
			buf[out++] = ch;
		} else if (ch == CONSOLE_ESCAPE) {
			c->escape = true;
		} else {
			buf[out++] = ch;
		}
	}
	*n = out;
	return CONSOLE_OK;
}
