/* epoll-based event loop. Registrations live in a small table indexed by a
 * slot number carried in epoll's data field; a deleted slot is marked free
 * and skipped if an event for it is still in the current batch. */
#include "vm/evloop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

struct ev_slot {
	int fd; /* -1 when free */
	evloop_fn fn;
	void *opaque;
};

struct evloop {
	int ep;
	struct ev_slot *slots;
	int nr, cap;
};

struct evloop *evloop_create(void)
{
	struct evloop *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->ep = epoll_create1(EPOLL_CLOEXEC);
	if (l->ep < 0) {
		free(l);
		return NULL;
	}
	return l;
}

void evloop_destroy(struct evloop *l)
{
	if (!l)
		return;
	close(l->ep);
	free(l->slots);
	free(l);
}

static int find(struct evloop *l, int fd)
{
	for (int i = 0; i < l->nr; i++) {
		if (l->slots[i].fd == fd)
			return i;
	}
	return -1;
}

int evloop_add(struct evloop *l, int fd, uint32_t events, evloop_fn fn, void *opaque)
{
	int i = find(l, -1);

	if (find(l, fd) >= 0)
		return -EEXIST;
	if (i < 0) {
		if (l->nr == l->cap) {
			int cap = l->cap ? l->cap * 2 : 16;
			struct ev_slot *s = realloc(l->slots, (size_t)cap * sizeof(*s));
			if (!s)
				return -ENOMEM;
			l->slots = s;
			l->cap = cap;
		}
		i = l->nr++;
	}
	struct epoll_event ev = { .events = events, .data.u32 = (uint32_t)i };
	if (epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
		l->slots[i].fd = -1;
		return -errno;
	}
	l->slots[i] = (struct ev_slot){ fd, fn, opaque };
	return 0;
}

int evloop_mod(struct evloop *l, int fd, uint32_t events)
{
	int i = find(l, fd);
	if (i < 0)
		return -ENOENT;
	struct epoll_event ev = { .events = events, .data.u32 = (uint32_t)i };
	return epoll_ctl(l->ep, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

int evloop_del(struct evloop *l, int fd)
{
	int i = find(l, fd);
	if (i < 0)
		return -ENOENT;
	epoll_ctl(l->ep, EPOLL_CTL_DEL, fd, NULL); /* fails harmlessly if fd was closed */
	l->slots[i].fd = -1;
	return 0;
}

int evloop_run_once(struct evloop *l, int timeout_ms)
{
	struct epoll_event evs[32];
	int n = epoll_wait(l->ep, evs, 32, timeout_ms), ran = 0;

	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int k = 0; k < n; k++) {
		uint32_t i = evs[k].data.u32;
		if ((int)i >= l->nr || l->slots[i].fd < 0)
			continue; /* deleted by an earlier callback of this batch */
		l->slots[i].fn(l->slots[i].opaque, evs[k].events);
		ran++;
	}
	return ran;
}
