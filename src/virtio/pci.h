/* Virtio over PCI, modern interface only (virtio 1.2, 4.1): one 64-bit BAR
 * holding the common configuration, ISR, device configuration, notification
 * area and the MSI-X table; queue notifications arrive through ioeventfds on
 * the main thread's event loop. */
#ifndef CVISOR_VIRTIO_PCI_H
#define CVISOR_VIRTIO_PCI_H

#include "hv/kvm.h"
#include "pci/msix.h"
#include "pci/pci.h"
#include "virtio/virtio.h"

struct virtio_pci {
	struct virtio_dev vdev;
	struct pci_dev pdev;
	struct msix msix;
	struct kvm_vm *kvm;
	uint32_t dfselect, gfselect;
	uint16_t queue_sel;
	uint16_t msix_config;
	uint16_t queue_vector[VIRTIO_MAX_QUEUES];
	int notify_fd[VIRTIO_MAX_QUEUES];
	bool kick_taken[VIRTIO_MAX_QUEUES]; /* a vhost device reads this queue's kicks */
	bool ioeventfd_on;
	uint64_t bar_addr;
	uint8_t isr;
};

/* Create the transport for a device (ops + priv) and plug it into bus pb.
 * 0 or -errno. */
int virtio_pci_create(struct pci_bus *pb, struct kvm_vm *k, struct evloop *loop,
                      const struct guest_mem *mem, const struct virtio_dev_ops *ops, void *priv,
                      struct virtio_pci **out);
/* Detach from KVM and the loop and free (the device's priv is the caller's). */
void virtio_pci_destroy(struct virtio_pci *vp);
/* Transport + queue + device state. */
void virtio_pci_save(struct virtio_pci *vp, struct sbuf *out);
int virtio_pci_load(struct virtio_pci *vp, struct sbuf *in);

#endif
