/* The VMM's event loop: one epoll set served by the main thread. Devices add
 * their file descriptors (ioeventfds, backend fds, timers) with a callback;
 * callbacks run on the main thread only. */
#ifndef CVISOR_VM_EVLOOP_H
#define CVISOR_VM_EVLOOP_H

#include <stdint.h>

typedef void (*evloop_fn)(void *opaque, uint32_t events);

struct evloop;

/* Create an empty loop; NULL on failure. */
struct evloop *evloop_create(void);
/* Free it (does not close the registered fds). */
void evloop_destroy(struct evloop *l);
/* Watch fd for events (EPOLLIN, EPOLLOUT ...) and call fn(opaque, events). 0 or -errno. */
int evloop_add(struct evloop *l, int fd, uint32_t events, evloop_fn fn, void *opaque);
/* Change the events watched on fd. 0 or -errno. */
int evloop_mod(struct evloop *l, int fd, uint32_t events);
/* Stop watching fd; safe to call from inside a callback. 0 or -errno. */
int evloop_del(struct evloop *l, int fd);
/* Wait up to timeout_ms (-1: forever) and dispatch what is ready. Returns the
 * number of callbacks run, or -errno. */
int evloop_run_once(struct evloop *l, int timeout_ms);

#endif
