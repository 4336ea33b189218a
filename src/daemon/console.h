/* The daemon's side of a VM's serial console: one connection to the VM's
 * console socket, a scrollback ring, and any number of viewers (clients of
 * `cvisor vm console`). Every viewer gets the scrollback first, then the live
 * output; input from any viewer goes to the VM. The ring and the viewers
 * outlive restarts of the VM. */
#ifndef CVISOR_DAEMON_CONSOLE_H
#define CVISOR_DAEMON_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/un.h>

#include "daemon/ring.h"

#define DCON_MAX_VIEWERS 32
#define DCON_BATCH_MS 10 /* the VM writes byte by byte: read at most this often */

struct evloop;
struct dcon_viewer;

struct dcon {
	struct evloop *loop;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* the VM's console socket */
	int fd; /* connection to the VM, -1 when none */
	int timer_fd; /* ends a pause of reading fd (batching) */
	bool paused;  /* fd is not watched until the timer fires */
	struct ring ring;
	struct dcon_viewer *viewers;
	unsigned nr_viewers;
	uint64_t dropped_input; /* viewer input the VM could not take at once */
};

/* Set up c for the console socket at path (not connected yet). 0 or -errno
 * (then dcon_free it). */
int dcon_init(struct dcon *c, struct evloop *loop, const char *path);
/* Disconnect, close every viewer, free the ring. */
void dcon_free(struct dcon *c);
/* Connect to the VM's console socket if not connected. 0 when connected, or -errno. */
int dcon_connect(struct dcon *c);
/* Drop the connection to the VM (it exited). Viewers stay. */
void dcon_disconnect(struct dcon *c);
/* Whether the VM's console is connected. */
bool dcon_connected(const struct dcon *c);
/* Add a viewer on socket fd (taken over); extra holds input it already sent.
 * 0, or -errno (fd closed). */
int dcon_add_viewer(struct dcon *c, int fd, const char *extra, size_t extralen);
/* Put a line from the daemon into the stream ("[cvisord: ...]"), for the
 * viewers and the scrollback. */
void dcon_note(struct dcon *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
