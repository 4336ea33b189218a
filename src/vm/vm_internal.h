/* The VM's internals, shared by vm.c (lifecycle, run loop) and snapshot.c
 * (save/restore, migration). Nothing else includes this. */
#ifndef CVISOR_VM_VM_INTERNAL_H
#define CVISOR_VM_VM_INTERNAL_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "devices/acpi_pm.h"
#include "devices/i8042.h"
#include "devices/rtc.h"
#include "devices/uart8250.h"
#include "hv/kvm.h"
#include "pci/pci.h"
#include "virtio/pci.h"
#include "vm/bus.h"
#include "vm/config.h"
#include "vm/console.h"
#include "vm/evloop.h"
#include "vm/mem.h"

struct migration;

struct file_map {
	uint8_t *p;
	size_t len;
};

enum vcpu_stat { VCPU_EXIT_IO, VCPU_EXIT_MMIO, VCPU_EXIT_HLT, VCPU_EXIT_INTR, VCPU_EXIT_SHUTDOWN,
	         VCPU_EXIT_SYSTEM_EVENT, VCPU_EXIT_OTHER, VCPU_NR_STATS };



struct vcpu {
	struct vm *vm;
	unsigned id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
	_Atomic bool dump; /* SIGUSR2: log the registers at the next exit */
	_Atomic uint64_t exits[VCPU_NR_STATS];
};

struct vm {
	const struct vm_config *cfg;
	struct console *con;
	struct kvm_vm kvm;
	struct guest_mem mem;
	struct bus pio, mmio;
	struct uart *uart;
	struct i8042 *kbd;
	struct rtc *rtc;
	struct acpi_pm *pm;
	struct pci_bus pci;
	bool pci_up;
	struct virtio_pci *vdevs[PCI_MAX_DEVS];
	unsigned nr_vdevs;
	struct virtio_rng *rng;
	struct virtio_net *nets[CONFIG_MAX_NETS]; /* --net, in option order */
	unsigned nr_nets;
	struct virtio_console *vcon; /* --console virtio */
	struct virtio_balloon *balloon;
	struct virtio_vsock *vsock;
	struct virtio_blk *disks[CONFIG_MAX_DISKS];
	struct vcpu *vcpus;
	struct file_map kernel, initrd;
	int event_fd; /* vCPU threads -> main loop: an exit was requested */
	int room_fd;  /* UART -> main loop: console input may flow again */
	int signal_fd;
	bool input_on; /* console input fd is in the loop */
	struct evloop *loop;
	_Atomic int exit_reason;
	_Atomic int stopping;
	unsigned stop_deferred;    /* stop signals held back during a post-copy push */
	/* pause: vCPU threads park on `resumed` until paused clears */
	pthread_mutex_t pause_lock;
	pthread_cond_t parked, resumed;
	bool paused;
	unsigned nr_parked;
	struct kvm_clock_data clock; /* guest clock frozen while paused */
	uint64_t start_ns;
	_Atomic unsigned throttle_pct;  /* auto-converge: share of the time the vCPUs sleep */
	struct migration *migration;   /* outgoing live migration, or NULL */
};

/* Wait (serving the event loop) until no disk has requests in flight, so that
 * a memory image and the device state agree (snapshot, migration). Main thread. */
void vm_drain_io(struct vm *vm);

/* The guest's clock now, for a pause or a save: KVM_GET_CLOCK, or, on a host
 * without a stable TSC, the guest's own kvmclock reading when that is later
 * (cpu_pvclock_ns), so that a resumed or restored guest never sees its time
 * go back. 0 or -errno. */
int vm_clock_read(struct vm *vm, struct kvm_clock_data *clk);

#endif
