/* VM lifecycle: create from a configuration, run until the guest powers off,
 * resets, or the user stops it, destroy. A reset is a destroy + create. */
#ifndef CVISOR_VM_VM_H
#define CVISOR_VM_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "state/sbuf.h"
#include "vm/mem.h"

#include "vm/config.h"
#include "vm/console.h"

enum vm_exit {
	VM_EXIT_NONE = 0,
	VM_EXIT_POWEROFF, /* ACPI S5 or a KVM shutdown event */
	VM_EXIT_REBOOT,   /* i8042 reset, ACPI reset register, triple fault */
	VM_EXIT_STOPPED,  /* SIGTERM/SIGINT/SIGHUP or the console's quit key */
	VM_EXIT_MIGRATED, /* handed over to a live-migration destination */
	VM_EXIT_ERROR,    /* the VM cannot go on (KVM internal error, entry failure) */
};

struct vm;

/* Build a VM ready to run. On failure returns -errno with one line in err;
 * all such failures are about input or the host (exit status 2). */
int vm_create(const struct vm_config *cfg, struct console *con, struct vm **out, char *err,
              size_t errlen);
/* Run until the VM exits; returns why. */
enum vm_exit vm_run(struct vm *vm);
/* Free everything. */
void vm_destroy(struct vm *vm);
/* Stop all vCPUs and freeze the guest clock; -EALREADY if paused. Main thread. */
int vm_pause(struct vm *vm);
/* Let the vCPUs run again from where they stopped; -EALREADY if running. */
int vm_resume(struct vm *vm);
/* Whether the vCPUs are paused. */
bool vm_is_paused(struct vm *vm);
/* Press the ACPI power button (the guest decides to shut down). */
void vm_power_button(struct vm *vm);
/* End the VM now, as SIGTERM does. */
void vm_request_stop(struct vm *vm);
/* End the VM: a migration destination took over. */
void vm_request_migrated(struct vm *vm);
/* End the VM with an error (exit status 1): e.g. a broken post-copy. */
void vm_request_error(struct vm *vm);
/* Append the VM's metrics in Prometheus text format. */
void vm_metrics(struct vm *vm, struct sbuf *out);
/* Nanoseconds since the vCPUs started. */
uint64_t vm_uptime_ns(struct vm *vm);
/* The VM's guest memory (a migration destination fills it before starting). */
const struct guest_mem *vm_memory(struct vm *vm);
/* Tell the network where the guest is now (each NIC sends a RARP from its MAC):
 * after a restore, and after a migration once the source has let go. */
void vm_announce(struct vm *vm);
/* Let go of every disk image's lock (a migration destination that refuses the
 * guest, before it answers: the source takes its locks back at once). */
void vm_unlock_disks(struct vm *vm);
/* The VM's event loop (the API server is served from it). */
struct evloop *vm_loop(struct vm *vm);
/* Human-readable exit reason. */
const char *vm_exit_name(enum vm_exit e);

#endif
