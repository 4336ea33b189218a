/* virtio-vsock (virtio 1.2, 5.10) served by the kernel's vhost-vsock:
 * guest<->host sockets (AF_VSOCK) with the data path in the host kernel.
 * The VMM sets up the rings, the guest CID and the event queue, and for live
 * migration vhost's dirty log. */
#ifndef CVISOR_VIRTIO_VSOCK_H
#define CVISOR_VIRTIO_VSOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vm/evloop.h"
#include "vm/mem.h"
#include "virtio/virtio.h"

#define VHOST_VSOCK_DEVICE "/dev/vhost-vsock"

struct virtio_vsock;

/* Parse "cid=N" (N >= 3). 0 or -EINVAL with a one-line reason. */
int virtio_vsock_parse(const char *opts, uint64_t *cid, char *err, size_t errlen);
/* Open vhost-vsock for guest cid. -errno with a one-line reason (missing
 * /dev/vhost-vsock, CID in use ...). With incoming (a migration's
 * destination) a CID in use is not an error: it is claimed from loop's timer
 * once free (the source on this host holds it until it has handed over). */
int virtio_vsock_create(uint64_t cid, bool incoming, const struct guest_mem *mem,
                        struct evloop *loop, struct virtio_vsock **out, char *err, size_t errlen);
/* Stop vhost and free (after the transport is gone). */
void virtio_vsock_destroy(struct virtio_vsock *v);

/* Live migration (v may be NULL: no vsock, nothing to do). Thread-safe.
 * log_start: vhost logs its guest-memory writes from now on (also across a
 * guest reset and restart of the device); 0 or -errno. log_stop: it no
 * longer does. */
int virtio_vsock_log_start(struct virtio_vsock *v);
void virtio_vsock_log_stop(struct virtio_vsock *v);
/* OR the pages of [gpa, gpa+len) that vhost logged into bitmap (bit p = page
 * gpa + p*4096) and clear them in the log. */
void virtio_vsock_log_collect(struct virtio_vsock *v, uint64_t gpa, uint64_t len, uint64_t *bitmap);
/* With the vCPUs paused: stop vhost (its ring indices go into the transport's
 * queues, for the device state) and mark (mem_mark_dirty) what it wrote
 * without logging it. unquiesce restarts it (a failed switch-over, after a
 * snapshot). */
void virtio_vsock_quiesce(struct virtio_vsock *v);
void virtio_vsock_unquiesce(struct virtio_vsock *v);

/* The log's merge, alone: log is a vhost dirty log of log_pages pages (bit n =
 * guest page n, as the kernel sets it); the bits of the pages of [gpa,
 * gpa+len) are cleared atomically in it and ORed into bitmap, whose bit 0 is
 * the page at gpa. Returns the number of bits moved. */
uint64_t virtio_vsock_log_take(uint64_t *log, uint64_t log_pages, uint64_t gpa, uint64_t len,
                               uint64_t *bitmap);

extern const struct virtio_dev_ops virtio_vsock_ops;

#endif
