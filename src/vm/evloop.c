/* epoll-based event loop. Registrations live in a small table indexed by a
 * slot number carried in epoll's data field; a deleted slot is marked free
 * and skipped if an event for it is still in the current batch. Callbacks run
 * on the loop's thread, but devices register fds from vCPU threads too
 * (activate), so the table is guarded by a mutex that is never held while a
 * callback runs. A generation number per slot keeps an event of a deleted
 * registration from reaching a new one that reused the slot. */
#include "vm/evloop.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

struct ev_slot {
	int fd; /* -1 when free */
	evloop_fn fn;
	void *opaque;
	uint32_t gen;
};

struct evloop {
	int ep;
	pthread_mutex_t lock;
	struct ev_slot *slots;
	int nr, cap;
};

/* epoll data: slot index in the low half, generation in the high half */
static uint64_t ev_tag(int i, uint32_t gen)
{
	return (uint64_t)gen << 32 | (uint32_t)i;
}

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
	pthread_mutex_init(&l->lock, NULL);
	return l;
}

void evloop_destroy(struct evloop *l)
{
	if (!l)
		return;
	close(l->ep);
	pthread_mutex_destroy(&l->lock);
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
	int rc = 0;

	pthread_mutex_lock(&l->lock);
	int i = find(l, -1);
	if (find(l, fd) >= 0) {
		rc = -EEXIST;
		goto out;
	}
	if (i < 0) {
		if (l->nr == l->cap) {
			int cap = l->cap ? l->cap * 2 : 16;
			struct ev_slot *s = realloc(l->slots, (size_t)cap * sizeof(*s));
			if (!s) {
				rc = -ENOMEM;
				goto out;
			}
			l->slots = s;
			l->cap = cap;
		}
		i = l->nr++;
		l->slots[i] = (struct ev_slot){ .fd = -1 };
	}
	uint32_t gen = l->slots[i].gen + 1;
	struct epoll_event ev = { .events = events, .data.u64 = ev_tag(i, gen) };
	if (epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
		rc = -errno;
		goto out;
	}
	l->slots[i] = (struct ev_slot){ fd, fn, opaque, gen };
out:
	pthread_mutex_unlock(&l->lock);
	return rc;
}

int evloop_mod(struct evloop *l, int fd, uint32_t events)
{
	int rc = -ENOENT;

	pthread_mutex_lock(&l->lock);
	int i = find(l, fd);
	if (i >= 0) {
		struct epoll_event ev = { .events = events, .data.u64 = ev_tag(i, l->slots[i].gen) };
		rc = epoll_ctl(l->ep, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
	}
	pthread_mutex_unlock(&l->lock);
	return rc;
}

int evloop_del(struct evloop *l, int fd)
{
	int rc = -ENOENT;

	pthread_mutex_lock(&l->lock);
	int i = find(l, fd);
	if (i >= 0) {
		epoll_ctl(l->ep, EPOLL_CTL_DEL, fd, NULL); /* fails harmlessly if fd was closed */
		l->slots[i].fd = -1;
		rc = 0;
	}
	pthread_mutex_unlock(&l->lock);
	return rc;
}

int evloop_run_once(struct evloop *l, int timeout_ms)
{
	struct epoll_event evs[32];
	int n = epoll_wait(l->ep, evs, 32, timeout_ms), ran = 0;

	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int k = 0; k < n; k++) {
		int i = (int)(uint32_t)evs[k].data.u64;
		uint32_t gen = (uint32_t)(evs[k].data.u64 >> 32);
		pthread_mutex_lock(&l->lock);
		bool live = i < l->nr && l->slots[i].fd >= 0 && l->slots[i].gen == gen;
		struct ev_slot slot = live ? l->slots[i] : (struct ev_slot){ 0 };
		pthread_mutex_unlock(&l->lock);
		if (!live)
			continue; /* deleted (or replaced) since epoll reported it */
		slot.fn(slot.opaque, evs[k].events);
		ran++;
	}
	return ran;
}
