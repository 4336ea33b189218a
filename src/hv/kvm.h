/* The KVM accelerator: /dev/kvm, the VM file descriptor, memory slots,
 * in-kernel interrupt controllers and PIT, vCPU creation. */
#ifndef CVISOR_HV_KVM_H
#define CVISOR_HV_KVM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arch/x86/cpu.h"

#define KVM_IRQCHIP_PINS 24 /* IOAPIC pins; GSIs above are MSI routes */
#define KVM_MAX_GSI 1024

struct kvm_msi_route {
	uint32_t gsi;
	uint32_t addr_lo, addr_hi, data;
};

struct kvm_vm {
	int sys_fd;
	int vm_fd;
	int run_size;       /* mmap size of struct kvm_run */
	unsigned max_vcpus; /* KVM_CAP_MAX_VCPUS */
	bool tsc_deadline;
	struct cpu_cpuid *cpuid; /* KVM_GET_SUPPORTED_CPUID */
	/* MSI routes (GSIs from KVM_IRQCHIP_PINS up); the routing table KVM holds is
	 * always the default irqchip routes plus these */
	pthread_mutex_t route_lock;
	struct kvm_msi_route *routes;
	uint32_t nr_routes, next_gsi;
};

/* Default device path; CVISOR_KVM_DEVICE in the environment overrides it (tests). */
#define KVM_DEVICE "/dev/kvm"

/* Open the KVM device and create a VM with its x86 platform (TSS and
 * identity-map addresses, in-kernel PIC/IOAPIC/LAPIC, PIT). On failure returns
 * -errno with one line in err explaining what the user can do. */
int kvm_vm_open(struct kvm_vm *k, char *err, size_t errlen);
/* Close everything. */
void kvm_vm_close(struct kvm_vm *k);
/* Map guest memory [gpa, gpa+size) to hva in slot. 0 or -errno. */
int kvm_vm_set_memory(struct kvm_vm *k, uint32_t slot, uint64_t gpa, uint64_t size, void *hva);
/* Turn dirty-page logging of a memory slot on or off (re-registers it). */
int kvm_vm_set_dirty_log(struct kvm_vm *k, uint32_t slot, uint64_t gpa, uint64_t size, void *hva,
                         bool on);
/* Fetch and clear slot's dirty bitmap (one bit per 4 KiB page). 0 or -errno. */
int kvm_vm_get_dirty_log(struct kvm_vm *k, uint32_t slot, uint64_t *bitmap);
/* Drive interrupt line gsi of the in-kernel irqchip. */
int kvm_vm_irq_line(struct kvm_vm *k, uint32_t gsi, int level);
/* Create vCPU id; returns its fd and mapped kvm_run. 0 or -errno. */
int kvm_vcpu_create(struct kvm_vm *k, unsigned id, int *fd, struct kvm_run **run);
/* Signal the eventfd fd when the guest writes to [addr, addr+len) (MMIO);
 * len 0 matches any width. assign=false removes it. 0 or -errno. */
int kvm_vm_ioeventfd(struct kvm_vm *k, uint64_t addr, uint32_t len, int fd, bool assign);
/* Allocate a GSI for an MSI route (initially pointing nowhere). -ENOSPC when out. */
int kvm_vm_msi_route_alloc(struct kvm_vm *k);
/* Point MSI route gsi at (address, data) and push the table to KVM. 0 or -errno. */
int kvm_vm_msi_route_set(struct kvm_vm *k, uint32_t gsi, uint64_t addr, uint32_t data);
/* Inject interrupts for gsi whenever fd is signalled (assign=false detaches). */
int kvm_vm_irqfd(struct kvm_vm *k, int fd, uint32_t gsi, bool assign);
/* Deliver one MSI (address, data) now, without a route (KVM_SIGNAL_MSI).
 * 1 delivered, 0 blocked by the guest, or -errno. */
int kvm_vm_signal_msi(struct kvm_vm *k, uint64_t addr, uint32_t data);
/* True when this host's KVM is PVM (software KVM without VT-x/AMD-V). */
bool kvm_host_is_pvm(void);

#endif
