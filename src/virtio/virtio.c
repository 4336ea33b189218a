/* Transport-independent virtio helpers. */
#include "virtio/virtio.h"

#include "util/log.h"

void virtio_notify_queue(struct virtio_dev *vdev, uint16_t q)
{
	if (q < VIRTIO_MAX_QUEUES && virtq_should_notify(&vdev->vqs[q]) && vdev->irq_queue)
		vdev->irq_queue(vdev, q);
}

void virtio_notify_config(struct virtio_dev *vdev)
{
	vdev->config_gen++;
	if (vdev->irq_config)
		vdev->irq_config(vdev);
}

void virtio_set_needs_reset(struct virtio_dev *vdev, const char *why)
{
	if (vdev->status & VIRTIO_STATUS_NEEDS_RESET)
		return;
	log_warn("%s: the guest driver broke the virtio protocol (%s); device needs a reset",
	         vdev->ops->name, why);
	vdev->status |= VIRTIO_STATUS_NEEDS_RESET;
	if (vdev->status & VIRTIO_STATUS_DRIVER_OK)
		virtio_notify_config(vdev);
}
