/* Save and restore the whole architectural state of an x86 vCPU and of the
 * VM-level in-kernel devices (PIC, IOAPIC, PIT, KVM clock), for snapshots and
 * live migration. */
#ifndef CVISOR_ARCH_X86_VCPU_STATE_H
#define CVISOR_ARCH_X86_VCPU_STATE_H

#include <stddef.h>

#include "hv/kvm.h"
#include "state/sbuf.h"

/* Append vCPU fd's state: CPUID, registers, special registers, XSAVE, XCRs,
 * MSRs (every MSR KVM lists that reads back, TSC and kvmclock included),
 * LAPIC, pending events, debug registers, MP state. 0 or -errno. */
int vcpu_state_save(struct kvm_vm *k, int fd, struct sbuf *out);
/* Load it into a freshly created vCPU. Checks that this host supports the
 * CPU features the saved CPUID shows. 0, or -errno with a reason in err. */
int vcpu_state_load(struct kvm_vm *k, int fd, struct sbuf *in, char *err, size_t errlen);
/* VM-level: PIC master/slave, IOAPIC, PIT, and the clock given (the VMM's
 * vm_clock_read: KVM's clock, or the guest's own reading when that is later). */
int vm_state_save(struct kvm_vm *k, struct sbuf *out, const struct kvm_clock_data *clock);
int vm_state_load(struct kvm_vm *k, struct sbuf *in, char *err, size_t errlen);

#endif
