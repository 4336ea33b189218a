/* Console multiplexing. The VMM writes its serial output a byte at a time;
 * after each read the daemon stops watching the VM's socket for
 * DCON_BATCH_MS, so a fast guest costs about a hundred wakeups a second, not
 * one per byte, and the viewers get larger writes. A viewer that reads slower than the VM writes falls
 * behind in the ring; once it is more than the ring's size behind it skips to
 * the oldest byte still held, so a stuck viewer costs no memory and never
 * stalls the VM or the other viewers. */
#include "daemon/console.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "daemon/dlog.h"
#include "vm/evloop.h"

struct dcon_viewer {
	struct dcon *c;
	struct dcon_viewer *prev, *next;
	int fd;
	uint64_t pos;  /* next ring position to send */
	bool out_on;   /* EPOLLOUT is watched */
};

static void vm_ev(void *opaque, uint32_t events);

/* The batching pause is over: watch the VM again and take what came meanwhile. */
static void batch_ev(void *opaque, uint32_t events)
{
	struct dcon *c = opaque;
	uint64_t n;

	(void)events;
	if (read(c->timer_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		dlog_debug("console timer: %s", strerror(errno));
	if (c->fd < 0 || !c->paused)
		return;
	c->paused = false;
	evloop_mod(c->loop, c->fd, EPOLLIN);
	vm_ev(c, EPOLLIN);
}

int dcon_init(struct dcon *c, struct evloop *loop, const char *path)
{
	memset(c, 0, sizeof(*c));
	c->loop = loop;
	c->fd = -1;
	c->timer_fd = -1;
	if (strlen(path) >= sizeof(c->path))
		return -ENAMETOOLONG;
	strcpy(c->path, path);
	c->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (c->timer_fd < 0)
		return -errno;
	int rc = evloop_add(loop, c->timer_fd, EPOLLIN, batch_ev, c);
	if (rc < 0) {
		close(c->timer_fd);
		c->timer_fd = -1;
		return rc;
	}
	return ring_init(&c->ring, RING_DEFAULT_SIZE);
}

static void viewer_close(struct dcon_viewer *v)
{
	struct dcon *c = v->c;

	evloop_del(c->loop, v->fd);
	close(v->fd);
	if (v->prev)
		v->prev->next = v->next;
	else
		c->viewers = v->next;
	if (v->next)
		v->next->prev = v->prev;
	c->nr_viewers--;
	free(v);
}

void dcon_free(struct dcon *c)
{
	dcon_disconnect(c);
	while (c->viewers)
		viewer_close(c->viewers);
	if (c->timer_fd >= 0) {
		evloop_del(c->loop, c->timer_fd);
		close(c->timer_fd);
		c->timer_fd = -1;
	}
	ring_free(&c->ring);
}

bool dcon_connected(const struct dcon *c)
{
	return c->fd >= 0;
}

void dcon_disconnect(struct dcon *c)
{
	if (c->fd < 0)
		return;
	evloop_del(c->loop, c->fd);
	close(c->fd);
	c->fd = -1;
	c->paused = false;
}

/* Send the viewer what it has not seen; watch for room when the socket is full. */
static void viewer_flush(struct dcon_viewer *v)
{
	struct dcon *c = v->c;

	for (;;) {
		const uint8_t *data;
		size_t n;
		ring_peek(&c->ring, &v->pos, &data, &n);
		if (n == 0)
			break;
		ssize_t w = send(v->fd, data, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0) {
			v->pos += (uint64_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			if (!v->out_on && evloop_mod(c->loop, v->fd, EPOLLIN | EPOLLOUT) == 0)
				v->out_on = true;
			return;
		}
		viewer_close(v); /* gone */
		return;
	}
	if (v->out_on && evloop_mod(c->loop, v->fd, EPOLLIN) == 0)
		v->out_on = false;
}

static void flush_all(struct dcon *c)
{
	struct dcon_viewer *v = c->viewers, *next;

	for (; v; v = next) {
		next = v->next;
		viewer_flush(v);
	}
}

/* Input for the VM: best effort, typing never fills a socket buffer. */
static void to_vm(struct dcon *c, const char *buf, size_t n)
{
	while (n && c->fd >= 0) {
		ssize_t w = send(c->fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		buf += w;
		n -= (size_t)w;
	}
	c->dropped_input += n;
}

static void viewer_ev(void *opaque, uint32_t events)
{
	struct dcon_viewer *v = opaque;
	char buf[4096];

	if (events & EPOLLOUT) {
		viewer_flush(v);
		return; /* v may be gone; input is read on the next EPOLLIN */
	}
	for (;;) {
		ssize_t n = recv(v->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0) {
			to_vm(v->c, buf, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		viewer_close(v); /* detached */
		return;
	}
}

static void vm_ev(void *opaque, uint32_t events)
{
	struct dcon *c = opaque;
	char buf[16384];
	bool got = false;

	(void)events;
	for (;;) {
		ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0) {
			ring_write(&c->ring, buf, (size_t)n);
			got = true;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		dcon_disconnect(c); /* the VM is going away; the daemon reconnects if it is not */
		break;
	}
	if (got && c->fd >= 0) {
		/* more is likely on its way: let it gather for a moment */
		struct itimerspec its = { .it_value = { .tv_nsec = DCON_BATCH_MS * 1000000L } };
		if (evloop_mod(c->loop, c->fd, 0) == 0) {
			c->paused = true;
			if (timerfd_settime(c->timer_fd, 0, &its, NULL) < 0) {
				c->paused = false; /* no timer: keep reading as it comes */
				evloop_mod(c->loop, c->fd, EPOLLIN);
			}
		}
	}
	if (got)
		flush_all(c);
}

int dcon_connect(struct dcon *c)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd, rc;

	if (c->fd >= 0)
		return 0;
	strcpy(a.sun_path, c->path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	rc = evloop_add(c->loop, fd, EPOLLIN, vm_ev, c);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	c->fd = fd;
	return 0;
}

int dcon_add_viewer(struct dcon *c, int fd, const char *extra, size_t extralen)
{
	struct dcon_viewer *v;
	int rc;

	if (c->nr_viewers >= DCON_MAX_VIEWERS) {
		close(fd);
		return -EMFILE;
	}
	v = calloc(1, sizeof(*v));
	if (!v) {
		close(fd);
		return -ENOMEM;
	}
	v->c = c;
	v->fd = fd;
	v->pos = ring_tail(&c->ring); /* the whole scrollback first */
	rc = evloop_add(c->loop, fd, EPOLLIN, viewer_ev, v);
	if (rc < 0) {
		close(fd);
		free(v);
		return rc;
	}
	v->next = c->viewers;
	if (c->viewers)
		c->viewers->prev = v;
	c->viewers = v;
	c->nr_viewers++;
	if (extralen)
		to_vm(c, extra, extralen);
	viewer_flush(v);
	return 0;
}

void dcon_note(struct dcon *c, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	memcpy(line, "\r\n[cvisord: ", 12);
	va_start(ap, fmt);
	n = vsnprintf(line + 12, sizeof(line) - 16, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	size_t len = strlen(line);
	memcpy(line + len, "]\r\n", 4);
	ring_write(&c->ring, line, len + 3);
	flush_all(c);
}
