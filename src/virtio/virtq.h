/* The one module that parses split virtqueues (virtio 1.x, section 2.7).
 * Everything in the rings is written by the guest and untrusted: every
 * descriptor address goes through mem_ptr(), chains are bounded by the queue
 * size, loops are caught, indirect tables are checked, and readable buffers
 * must precede writable ones. A violation marks the queue broken (the device
 * then sets NEEDS_RESET); it never crashes, aborts or spins. */
#ifndef CVISOR_VIRTIO_VIRTQ_H
#define CVISOR_VIRTIO_VIRTQ_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "state/sbuf.h"
#include "vm/mem.h"

#define VIRTQ_MAX_SIZE 32768
#define VIRTQ_MAX_SEGS 1024 /* iovecs one request may use (direct + indirect) */

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY 1

struct virtq {
	/* set by the transport from the driver's configuration (ready is set
	 * only by virtq_start, once the rings resolved) */
	uint16_t size;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	bool ready;
	bool event_idx; /* VIRTIO_F_EVENT_IDX negotiated */
	bool indirect;  /* VIRTIO_F_INDIRECT_DESC negotiated */
	const struct guest_mem *mem;
	/* device-side state */
	uint16_t last_avail; /* next available-ring slot to take */
	uint16_t used_idx;   /* our copy of used->idx */
	uint16_t signalled_used;
	bool signalled_used_valid;
	bool no_notify;     /* device asked not to be notified (virtq_set_notify) */
	bool broken;        /* the guest broke the protocol on this queue */
	const char *broken_why;
	/* host pointers to the rings, resolved (and bounds-checked) by virtq_start */
	void *desc, *avail, *used;
};

/* One request: out_num device-readable segments, then in_num device-writable ones. */
struct virtq_elem {
	uint16_t head;
	uint16_t out_num, in_num;
	uint32_t out_len, in_len; /* byte totals of each side */
	struct iovec iov[VIRTQ_MAX_SEGS];
};

/* Check the ring addresses against guest memory and resolve them; called when
 * the driver enables the queue. Returns 0 or -EINVAL (queue marked broken). */
int virtq_start(struct virtq *q);
/* Forget all device-side state (device reset). Keeps nothing. */
void virtq_reset(struct virtq *q);
/* Take the next available request. Returns 1 with *e filled, 0 if none is
 * available, or -EINVAL if the guest broke the protocol (queue now broken). */
int virtq_pop(struct virtq *q, struct virtq_elem *e);
/* Give the head of a popped request back unused (it will be popped again). */
void virtq_unpop(struct virtq *q);
/* Return a finished request with `written` bytes written into its in-buffers. */
void virtq_push(struct virtq *q, uint16_t head, uint32_t written);
/* Return n finished requests at once: the driver sees all of them or none
 * (one used->idx update), e.g. the buffers of one mergeable rx frame. */
void virtq_push_batch(struct virtq *q, const uint16_t *heads, const uint32_t *written, unsigned n);
/* Whether the driver wants an interrupt for what was pushed since the last
 * time this returned true (VIRTQ_AVAIL_F_NO_INTERRUPT or used_event). */
bool virtq_should_notify(struct virtq *q);
/* Ask the driver for (enable=true) or not to send (false) notifications;
 * with event_idx this writes avail_event. After enabling, callers must
 * re-check for available requests to close the race. */
void virtq_set_notify(struct virtq *q, bool enable);
/* Number of requests the driver has made available and we have not popped,
 * or 0 when the queue is not ready/broken. */
uint16_t virtq_pending(struct virtq *q);
/* Append / restore the device-side state (indices, addresses, flags). load
 * validates and returns -EINVAL on bad input. */
void virtq_save(const struct virtq *q, struct sbuf *out);
int virtq_load(struct virtq *q, struct sbuf *in);

#endif
