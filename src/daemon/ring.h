/* A console scrollback: a fixed-size byte ring that keeps the newest bytes.
 * Readers hold an absolute position (bytes since the ring began), so any
 * number of them can follow it at their own pace without copies. */
#ifndef CVISOR_DAEMON_RING_H
#define CVISOR_DAEMON_RING_H

#include <stddef.h>
#include <stdint.h>

#define RING_DEFAULT_SIZE (256u << 10)

struct ring {
	uint8_t *buf;
	size_t size;   /* a power of two */
	uint64_t head; /* bytes ever written */
};

/* Allocate a ring of size bytes (rounded up to a power of two). 0 or -ENOMEM. */
int ring_init(struct ring *r, size_t size);
/* Free its memory. */
void ring_free(struct ring *r);
/* Append bytes; the oldest are overwritten when full. */
void ring_write(struct ring *r, const void *data, size_t n);
/* The oldest position still held. */
uint64_t ring_tail(const struct ring *r);
/* The contiguous bytes from *pos on: *pos is first moved up to the tail if it
 * fell behind (the return value says how many bytes were skipped), then *data
 * and *n describe what can be read (n is 0 when the reader is up to date).
 * The caller advances *pos by what it consumed. */
uint64_t ring_peek(const struct ring *r, uint64_t *pos, const uint8_t **data, size_t *n);

#endif
