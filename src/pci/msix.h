/* MSI-X (PCI 3.0, 6.8.2): the capability, the vector table and the pending
 * bit array in a BAR, each vector wired to a KVM MSI route and an irqfd so a
 * device interrupt is one eventfd write. The irqfd is attached only while the
 * vector is enabled and unmasked: an in-kernel writer of the eventfd (vhost)
 * then cannot deliver a masked vector, its signal becomes the pending bit
 * (read at PBA reads, unmask and save) and is delivered at unmask. No INTx
 * fallback: every guest this targets (Linux virtio-pci) uses MSI-X. */
#ifndef CVISOR_PCI_MSIX_H
#define CVISOR_PCI_MSIX_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "hv/kvm.h"
#include "pci/pci.h"
#include "state/sbuf.h"

#define MSIX_MAX_VECTORS 64
#define MSIX_NO_VECTOR 0xffff

struct msix {
	struct kvm_vm *kvm;
	struct pci_dev *pdev;
	uint8_t cap; /* capability offset in config space */
	uint16_t nvec;
	pthread_mutex_t lock;
	uint8_t table[MSIX_MAX_VECTORS * 16];
	uint64_t pending; /* bit per vector */
	uint64_t live;    /* bit per vector: its irqfd is attached */
	int gsi[MSIX_MAX_VECTORS];
	int fd[MSIX_MAX_VECTORS];
};

/* Add the capability to pdev (table at table_off, PBA at pba_off, both in BAR
 * bir) and create a route + irqfd per vector. 0 or -errno. */
int msix_init(struct msix *m, struct kvm_vm *k, struct pci_dev *pdev, uint16_t nvec, int bir,
              uint32_t table_off, uint32_t pba_off);
/* Detach irqfds, close fds. */
void msix_destroy(struct msix *m);
/* Guest access to the vector table / PBA (offsets relative to their start). */
void msix_table_io(struct msix *m, uint64_t off, uint8_t *data, uint32_t len, bool is_write);
void msix_pba_io(struct msix *m, uint64_t off, uint8_t *data, uint32_t len, bool is_write);
/* The guest wrote config space at [off, off+len): react to enable/mask changes. */
void msix_cfg_written(struct msix *m, uint32_t off, uint32_t len);
/* Raise vector v (ignored when v is MSIX_NO_VECTOR or out of range; kept
 * pending while masked). Any thread. */
void msix_notify(struct msix *m, uint16_t v);
/* Table, pending bits and control state. */
void msix_save(struct msix *m, struct sbuf *out);
int msix_load(struct msix *m, struct sbuf *in);

#endif
