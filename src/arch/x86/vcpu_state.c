/* vCPU and in-kernel device state through the KVM API. Each piece is a
 * fixed-size KVM structure written as a tagged, length-prefixed record, so a
 * loader can check every size before handing bytes to KVM. The restore order
 * follows KVM's dependencies: CPUID first (it defines which MSRs and XSAVE
 * features exist), special registers before registers, LAPIC before the MSRs
 * (the TSC-deadline MSR only sticks once the LAPIC timer is in that mode),
 * events and MP state last. */
#include "arch/x86/vcpu_state.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "arch/x86/cpu.h"
#include "util/log.h"

enum { REC_CPUID = 1, REC_SREGS, REC_REGS, REC_XSAVE, REC_XCRS, REC_LAPIC, REC_MSRS, REC_EVENTS,
       REC_DEBUGREGS, REC_MPSTATE, REC_END };

#define MAX_MSRS 512

static void put_rec(struct sbuf *out, uint32_t tag, const void *p, size_t len)
{
	sbuf_put_u32(out, tag);
	sbuf_put_u32(out, (uint32_t)len);
	sbuf_put(out, p, len);
}

/* Read the next record, which must be `tag` of exactly `len` bytes. */
static int get_rec(struct sbuf *in, uint32_t tag, void *p, size_t len)
{
	uint32_t t = sbuf_get_u32(in), l = sbuf_get_u32(in);
	if (in->err || t != tag || l != len)
		return -EINVAL;
	sbuf_get(in, p, len);
	return in->err ? -EINVAL : 0;
}

/* MSRs worth saving: every index KVM lists that this vCPU can read. */
static int msr_list(struct kvm_vm *k, int fd, struct kvm_msr_entry *e, unsigned *n)
{
	struct {
		struct kvm_msr_list hdr;
		uint32_t idx[MAX_MSRS];
	} list = { .hdr.nmsrs = MAX_MSRS };
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} one;

	if (ioctl(k->sys_fd, KVM_GET_MSR_INDEX_LIST, &list) < 0)
		return -errno;
	*n = 0;
	for (uint32_t i = 0; i < list.hdr.nmsrs && i < MAX_MSRS; i++) {
		memset(&one, 0, sizeof(one));
		one.hdr.nmsrs = 1;
		one.e.index = list.idx[i];
		if (ioctl(fd, KVM_GET_MSRS, &one) == 1)
			e[(*n)++] = one.e;
	}
	return 0;
}

int vcpu_state_save(struct kvm_vm *k, int fd, struct sbuf *out)
{
	struct cpu_cpuid *cpuid = calloc(1, sizeof(*cpuid));
	struct kvm_xsave *xsave = calloc(1, sizeof(*xsave));
	struct kvm_msr_entry *msrs = calloc(MAX_MSRS, sizeof(*msrs));
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events ev;
	struct kvm_debugregs dbg;
	struct kvm_mp_state mp;
	unsigned nmsrs = 0;
	int rc = -ENOMEM;

	if (!cpuid || !xsave || !msrs)
		goto out;
	cpuid->hdr.nent = CPU_MAX_CPUID;
	rc = -errno;
	if (ioctl(fd, KVM_GET_CPUID2, cpuid) < 0 || ioctl(fd, KVM_GET_SREGS, &sregs) < 0 ||
	    ioctl(fd, KVM_GET_REGS, &regs) < 0 || ioctl(fd, KVM_GET_XSAVE, xsave) < 0 ||
	    ioctl(fd, KVM_GET_XCRS, &xcrs) < 0 || ioctl(fd, KVM_GET_LAPIC, &lapic) < 0 ||
	    ioctl(fd, KVM_GET_VCPU_EVENTS, &ev) < 0 || ioctl(fd, KVM_GET_DEBUGREGS, &dbg) < 0 ||
	    ioctl(fd, KVM_GET_MP_STATE, &mp) < 0) {
		rc = -errno;
		goto out;
	}
	if ((rc = msr_list(k, fd, msrs, &nmsrs)))
		goto out;
	put_rec(out, REC_CPUID, cpuid, sizeof(*cpuid));
	put_rec(out, REC_SREGS, &sregs, sizeof(sregs));
	put_rec(out, REC_REGS, &regs, sizeof(regs));
	put_rec(out, REC_XSAVE, xsave, sizeof(*xsave));
	put_rec(out, REC_XCRS, &xcrs, sizeof(xcrs));
	put_rec(out, REC_LAPIC, &lapic, sizeof(lapic));
	sbuf_put_u32(out, REC_MSRS);
	sbuf_put_u32(out, nmsrs * (uint32_t)sizeof(*msrs));
	sbuf_put(out, msrs, nmsrs * sizeof(*msrs));
	put_rec(out, REC_EVENTS, &ev, sizeof(ev));
	put_rec(out, REC_DEBUGREGS, &dbg, sizeof(dbg));
	put_rec(out, REC_MPSTATE, &mp, sizeof(mp));
	sbuf_put_u32(out, REC_END);
	rc = out->err;
out:
	free(cpuid);
	free(xsave);
	free(msrs);
	return rc;
}

int vcpu_state_load(struct kvm_vm *k, int fd, struct sbuf *in, char *err, size_t errlen)
{
	struct cpu_cpuid *cpuid = calloc(1, sizeof(*cpuid));
	struct kvm_xsave *xsave = calloc(1, sizeof(*xsave));
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[MAX_MSRS];
	} *msrs = calloc(1, sizeof(*msrs));
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events ev;
	struct kvm_debugregs dbg;
	struct kvm_mp_state mp;
	int rc = -ENOMEM;

	if (!cpuid || !xsave || !msrs)
		goto out;
	rc = -EINVAL;
	snprintf(err, errlen, "the snapshot's vCPU state is malformed");
	if (get_rec(in, REC_CPUID, cpuid, sizeof(*cpuid)) || cpuid->hdr.nent > CPU_MAX_CPUID ||
	    get_rec(in, REC_SREGS, &sregs, sizeof(sregs)) ||
	    get_rec(in, REC_REGS, &regs, sizeof(regs)) ||
	    get_rec(in, REC_XSAVE, xsave, sizeof(*xsave)) ||
	    get_rec(in, REC_XCRS, &xcrs, sizeof(xcrs)) ||
	    get_rec(in, REC_LAPIC, &lapic, sizeof(lapic)))
		goto out;
	uint32_t t = sbuf_get_u32(in), l = sbuf_get_u32(in);
	if (in->err || t != REC_MSRS || l % sizeof(struct kvm_msr_entry) ||
	    l / sizeof(struct kvm_msr_entry) > MAX_MSRS)
		goto out;
	msrs->hdr.nmsrs = l / (uint32_t)sizeof(struct kvm_msr_entry);
	sbuf_get(in, msrs->e, l);
	if (in->err || get_rec(in, REC_EVENTS, &ev, sizeof(ev)) ||
	    get_rec(in, REC_DEBUGREGS, &dbg, sizeof(dbg)) ||
	    get_rec(in, REC_MPSTATE, &mp, sizeof(mp)) || sbuf_get_u32(in) != REC_END || in->err)
		goto out;
	if ((rc = cpu_cpuid_check(k->cpuid, cpuid, err, errlen)))
		goto out;
	const char *step = "CPUID";
	if (ioctl(fd, KVM_SET_CPUID2, cpuid) < 0 || (step = "sregs", ioctl(fd, KVM_SET_SREGS, &sregs) < 0) ||
	    (step = "regs", ioctl(fd, KVM_SET_REGS, &regs) < 0) ||
	    (step = "XSAVE", ioctl(fd, KVM_SET_XSAVE, xsave) < 0) ||
	    (step = "XCRs", ioctl(fd, KVM_SET_XCRS, &xcrs) < 0) ||
	    (step = "LAPIC", ioctl(fd, KVM_SET_LAPIC, &lapic) < 0)) {
		rc = -errno;
		snprintf(err, errlen, "KVM refused the saved %s: %s", step, strerror(errno));
		goto out;
	}
	int n = ioctl(fd, KVM_SET_MSRS, msrs);
	if (n < 0 || (uint32_t)n < msrs->hdr.nmsrs) {
		rc = n < 0 ? -errno : -EINVAL;
		snprintf(err, errlen, "KVM refused saved MSR 0x%x",
		         n >= 0 ? msrs->e[n].index : 0);
		goto out;
	}
	step = "events";
	if (ioctl(fd, KVM_SET_VCPU_EVENTS, &ev) < 0 ||
	    (step = "debug registers", ioctl(fd, KVM_SET_DEBUGREGS, &dbg) < 0) ||
	    (step = "MP state", ioctl(fd, KVM_SET_MP_STATE, &mp) < 0)) {
		rc = -errno;
		snprintf(err, errlen, "KVM refused the saved %s: %s", step, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	free(cpuid);
	free(xsave);
	free(msrs);
	return rc;
}

enum { VREC_PIC0 = 100, VREC_PIC1, VREC_IOAPIC, VREC_PIT, VREC_CLOCK, VREC_END };

int vm_state_save(struct kvm_vm *k, struct sbuf *out, const struct kvm_clock_data *clock)
{
	struct kvm_irqchip chip[3];
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clk = *clock;

	for (int i = 0; i < 3; i++) {
		memset(&chip[i], 0, sizeof(chip[i]));
		chip[i].chip_id = (uint32_t)i;
		if (ioctl(k->vm_fd, KVM_GET_IRQCHIP, &chip[i]) < 0)
			return -errno;
	}
	if (ioctl(k->vm_fd, KVM_GET_PIT2, &pit) < 0)
		return -errno;
	put_rec(out, VREC_PIC0, &chip[0], sizeof(chip[0]));
	put_rec(out, VREC_PIC1, &chip[1], sizeof(chip[1]));
	put_rec(out, VREC_IOAPIC, &chip[2], sizeof(chip[2]));
	put_rec(out, VREC_PIT, &pit, sizeof(pit));
	put_rec(out, VREC_CLOCK, &clk, sizeof(clk));
	sbuf_put_u32(out, VREC_END);
	return out->err;
}

int vm_state_load(struct kvm_vm *k, struct sbuf *in, char *err, size_t errlen)
{
	struct kvm_irqchip chip[3];
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clk;

	if (get_rec(in, VREC_PIC0, &chip[0], sizeof(chip[0])) ||
	    get_rec(in, VREC_PIC1, &chip[1], sizeof(chip[1])) ||
	    get_rec(in, VREC_IOAPIC, &chip[2], sizeof(chip[2])) ||
	    get_rec(in, VREC_PIT, &pit, sizeof(pit)) || get_rec(in, VREC_CLOCK, &clk, sizeof(clk)) ||
	    sbuf_get_u32(in) != VREC_END || in->err ||
	    chip[0].chip_id != 0 || chip[1].chip_id != 1 || chip[2].chip_id != 2) {
		snprintf(err, errlen, "the snapshot's interrupt controller state is malformed");
		return -EINVAL;
	}
	for (int i = 0; i < 3; i++) {
		if (ioctl(k->vm_fd, KVM_SET_IRQCHIP, &chip[i]) < 0)
			goto fail;
	}
	struct kvm_clock_data c = { .clock = clk.clock };
	if (ioctl(k->vm_fd, KVM_SET_PIT2, &pit) < 0 || ioctl(k->vm_fd, KVM_SET_CLOCK, &c) < 0)
		goto fail;
	return 0;
fail:
	snprintf(err, errlen, "KVM refused the saved interrupt controller/clock state: %s",
	         strerror(errno));
	return -errno;
}
