/* virtio-vsock (virtio 1.2, 5.10) served by the kernel's vhost-vsock:
 * guest<->host sockets (AF_VSOCK) with the data path in the host kernel.
 * The VMM sets up the rings, the guest CID and the event queue. */
#ifndef CVISOR_VIRTIO_VSOCK_H
#define CVISOR_VIRTIO_VSOCK_H

#include <stddef.h>
#include <stdint.h>

#include "vm/mem.h"
#include "virtio/virtio.h"

#define VHOST_VSOCK_DEVICE "/dev/vhost-vsock"

struct virtio_vsock;

/* Parse "cid=N" (N >= 3). 0 or -EINVAL with a one-line reason. */
int virtio_vsock_parse(const char *opts, uint64_t *cid, char *err, size_t errlen);
/* Open vhost-vsock for guest cid. -errno with a one-line reason (missing
 * /dev/vhost-vsock, CID in use ...). */
int virtio_vsock_create(uint64_t cid, const struct guest_mem *mem, struct virtio_vsock **out,
                        char *err, size_t errlen);
/* Stop vhost and free (after the transport is gone). */
void virtio_vsock_destroy(struct virtio_vsock *v);

extern const struct virtio_dev_ops virtio_vsock_ops;

#endif
