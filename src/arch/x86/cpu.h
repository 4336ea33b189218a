/* x86 vCPU set-up: CPUID (topology, hypervisor leaves), MSRs, LAPIC LINT pins,
 * FPU, and the boot register state for the bootstrap processor. */
#ifndef CVISOR_ARCH_X86_CPU_H
#define CVISOR_ARCH_X86_CPU_H

#include <linux/kvm.h>
#include <stdbool.h>

#include "arch/x86/boot.h"

#define CPU_MAX_CPUID 256

struct cpu_cpuid {
	struct kvm_cpuid2 hdr;
	struct kvm_cpuid_entry2 e[CPU_MAX_CPUID];
};

/* Rewrite a copy of KVM's supported CPUID for vCPU id of nr_cpus: APIC ID,
 * logical counts, leaf 0xB topology (one package, nr_cpus cores, one thread
 * each), AMD core counts, hypervisor bit and KVM signature, TSC deadline. */
void cpu_cpuid_patch(struct cpu_cpuid *c, unsigned id, unsigned nr_cpus, bool tsc_deadline);
/* Look up one CPUID entry; NULL if absent. */
struct kvm_cpuid_entry2 *cpu_cpuid_find(struct cpu_cpuid *c, uint32_t fn, uint32_t idx);
/* Whether a host whose supported CPUID is `host` has every feature the saved
 * vCPU CPUID `saved` shows (leaves 1, 7.0, 0x80000001). Bits that the guest
 * OS or cvisor set at run time are not features and never count: OSXSAVE
 * (CR4.OSXSAVE), OSPKE (CR4.PKE), the hypervisor and TSC-deadline bits.
 * 0, or -ENOTSUP with the first missing feature word in err. */
int cpu_cpuid_check(struct cpu_cpuid *host, struct cpu_cpuid *saved, char *err, size_t errlen);
/* Program CPUID, MSRs, LAPIC LINT0/LINT1 and FPU on a new vCPU. 0 or -errno. */
int cpu_init_vcpu(int vcpu_fd, const struct cpu_cpuid *supported, unsigned id, unsigned nr_cpus,
                  bool tsc_deadline);
/* Registers and segments of the BSP for the given boot entry. 0 or -errno. */
int cpu_init_boot_regs(int vcpu_fd, const struct boot_setup *b);

/* One line of the vCPU's state where it stopped (RIP, RSP, flags, control
 * registers, EFER, descriptor tables) for a log message; "" if unreadable. */
void cpu_describe_regs(int vcpu_fd, char *buf, size_t len);

/* What a vCPU waits for: its LAPIC timer (mode, vector, mask, and when it
 * fires: the TSC deadline against the guest's TSC, or the one-shot/periodic
 * count) and the interrupts requested (IRR) and in service (ISR), for a log
 * line. cpu_format_timer does the formatting from the LAPIC registers and MSR
 * values (tsc_khz 0: no time conversion); cpu_describe_timer reads them from
 * KVM ("" if unreadable). */
void cpu_format_timer(const struct kvm_lapic_state *l, uint64_t tsc, uint64_t deadline,
                      uint32_t tsc_khz, char *buf, size_t len);
void cpu_describe_timer(int vcpu_fd, char *buf, size_t len);

/* The guest's own view of its kvmclock. KVM_GET_CLOCK computes the clock from
 * the host's clock; the guest extrapolates from its last pvclock record with
 * its TSC. Without a stable host TSC (KVM_CLOCK_TSC_STABLE not set) the two
 * drift apart, and a clock saved from the host's side can be behind what the
 * guest already saw: restored, the guest's time stands still until it catches
 * up. cpu_pvclock_msr reads where the vCPU's pvclock record is (the guest
 * physical address, or 0 if the guest has not enabled kvmclock) and the guest's
 * TSC now; cpu_pvclock_ns computes the time from the 32-byte record as the
 * guest would at that TSC (0 if the record is being updated, odd version). */
int cpu_pvclock_msr(int vcpu_fd, uint64_t *gpa, uint64_t *tsc);
uint64_t cpu_pvclock_ns(const uint8_t rec[32], uint64_t tsc);

#endif
