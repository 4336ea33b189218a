/* Virtio 1.x devices, independent of the transport (virtio/pci.c is the only
 * transport today). A device implements struct virtio_dev_ops; the transport
 * owns struct virtio_dev (features, status, queues, interrupts) and calls the
 * ops with vdev->lock held, from vCPU threads (configuration accesses) and
 * from the main thread's event loop (queue notifications, backends). */
#ifndef CVISOR_VIRTIO_VIRTIO_H
#define CVISOR_VIRTIO_VIRTIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "state/sbuf.h"
#include "virtio/virtq.h"
#include "vm/evloop.h"
#include "vm/mem.h"

/* device IDs (virtio spec 5) */
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG 4
#define VIRTIO_ID_BALLOON 5
#define VIRTIO_ID_VSOCK 19

/* transport-level feature bits */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32

/* device status bits */
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED 128

#define VIRTIO_MAX_QUEUES 64

struct virtio_dev;

struct virtio_dev_ops {
	const char *name;     /* "virtio-blk" ... for logs */
	uint16_t device_id;   /* VIRTIO_ID_* */
	uint16_t num_queues;
	uint16_t queue_max;   /* largest queue size offered (power of two) */
	uint32_t config_size; /* bytes of device-specific configuration */
	/* device feature bits (device-specific ones plus any of the ring bits it supports) */
	uint64_t (*features)(void *priv);
	/* device configuration access; the transport guarantees off + len <= config_size */
	void (*config_read)(void *priv, uint32_t off, uint8_t *buf, uint32_t len);
	void (*config_write)(void *priv, uint32_t off, const uint8_t *buf, uint32_t len);
	/* the driver set DRIVER_OK: queues and negotiated features are in vdev.
	 * A negative return puts the device into NEEDS_RESET. */
	int (*activate)(void *priv, struct virtio_dev *vdev);
	/* the driver notified queue q (main thread) */
	void (*queue_notify)(void *priv, uint16_t q);
	/* device reset: stop touching the queues, cancel or finish in-flight work */
	void (*reset)(void *priv);
	/* device-specific state (the transport saves features, status and queues) */
	void (*save)(void *priv, struct sbuf *out);
	int (*load)(void *priv, struct sbuf *in);
};

struct virtio_dev {
	const struct virtio_dev_ops *ops;
	void *priv;
	const struct guest_mem *mem;
	struct evloop *loop;
	pthread_mutex_t lock;
	uint64_t host_features;  /* offered: ops->features() | VERSION_1 | ring features */
	uint64_t guest_features; /* accepted by the driver */
	uint8_t status;
	uint8_t config_gen;
	struct virtq vqs[VIRTIO_MAX_QUEUES];
	/* set by the transport */
	void (*irq_queue)(struct virtio_dev *vdev, uint16_t q); /* raise the queue's interrupt */
	void (*irq_config)(struct virtio_dev *vdev);           /* raise the config interrupt */
	/* For devices whose queues the kernel serves (vhost): the eventfd the
	 * guest's kicks of queue q arrive on, taken out of the event loop
	 * (take=true) or given back (false); and the eventfd that interrupts the
	 * guest for queue q (its MSI-X vector's irqfd), or -1 when it has none. */
	int (*queue_kick_fd)(struct virtio_dev *vdev, uint16_t q, bool take);
	int (*queue_call_fd)(struct virtio_dev *vdev, uint16_t q);
	void *transport;
};

/* Whether feature bit f was negotiated. */
static inline bool virtio_has_feature(const struct virtio_dev *vdev, unsigned f)
{
	return (vdev->guest_features >> f) & 1;
}

/* After pushing used buffers on queue q: interrupt the driver if it wants one. */
void virtio_notify_queue(struct virtio_dev *vdev, uint16_t q);
/* Device configuration changed (bumps config_generation, raises the config interrupt). */
void virtio_notify_config(struct virtio_dev *vdev);
/* The driver broke the protocol: set NEEDS_RESET, tell the driver, log once. */
void virtio_set_needs_reset(struct virtio_dev *vdev, const char *why);

#endif
