/* vCPU set-up. The guest sees one socket with nr_cpus cores, APIC IDs 0..n-1,
 * and the KVM paravirtual leaves KVM reports as supported. */
#include "arch/x86/cpu.h"

#include <asm/kvm.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "arch/x86/layout.h"
#include "util/log.h"

#define MSR_IA32_TSC 0x10
#define MSR_IA32_TSC_DEADLINE 0x6e0
#define MSR_IA32_SYSENTER_CS 0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_IA32_MISC_ENABLE 0x1a0
#define MSR_MTRR_DEF_TYPE 0x2ff
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SYSCALL_MASK 0xc0000084
#define MSR_KERNEL_GS_BASE 0xc0000102

struct kvm_cpuid_entry2 *cpu_cpuid_find(struct cpu_cpuid *c, uint32_t fn, uint32_t idx)
{
	for (uint32_t i = 0; i < c->hdr.nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->e[i];
		if (e->function == fn &&
		    (!(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e->index == idx))
			return e;
	}
	return NULL;
}

static void cpuid_remove(struct cpu_cpuid *c, uint32_t fn)
{
	uint32_t j = 0;
	for (uint32_t i = 0; i < c->hdr.nent; i++) {
		if (c->e[i].function != fn)
			c->e[j++] = c->e[i];
	}
	c->hdr.nent = j;
}

static void cpuid_add(struct cpu_cpuid *c, struct kvm_cpuid_entry2 e)
{
	if (c->hdr.nent < CPU_MAX_CPUID)
		c->e[c->hdr.nent++] = e;
}

static unsigned order_base_2(unsigned n)
{
	unsigned s = 0;
	while ((1u << s) < n)
		s++;
	return s;
}

void cpu_cpuid_patch(struct cpu_cpuid *c, unsigned id, unsigned nr, bool tsc_deadline)
{
	struct kvm_cpuid_entry2 *e;
	unsigned shift = order_base_2(nr);

	if ((e = cpu_cpuid_find(c, 0, 0)) && e->eax < 0xb)
		e->eax = 0xb;
	if ((e = cpu_cpuid_find(c, 1, 0))) {
		unsigned logical = nr > 255 ? 255 : nr;
		e->ebx = (e->ebx & 0xffff) | logical << 16 | (id & 0xff) << 24;
		e->ecx |= 1u << 31; /* running under a hypervisor */
		if (tsc_deadline)
			e->ecx |= 1u << 24;
		if (nr > 1)
			e->edx |= 1u << 28; /* HTT: the logical count field is valid */
		else
			e->edx &= ~(1u << 28);
	}
	for (uint32_t i = 0; i < c->hdr.nent; i++) {
		e = &c->e[i];
		if (e->function == 4 && (e->eax & 0x1f)) { /* Intel cache leaf: cores per package */
			unsigned cores = nr > 64 ? 64 : nr;
			/* bits 25:14 (threads sharing the cache) become 0: one thread per core */
			e->eax = (e->eax & 0x3fff) | (cores - 1) << 26;
		}
	}
	/* Extended topology: level 0 SMT (1 thread), level 1 core (nr), then invalid. */
	cpuid_remove(c, 0xb);
	cpuid_remove(c, 0x1f);
	uint32_t f = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
	cpuid_add(c, (struct kvm_cpuid_entry2){ .function = 0xb, .index = 0, .flags = f,
	                                         .eax = 0, .ebx = 1, .ecx = 1u << 8, .edx = id });
	cpuid_add(c, (struct kvm_cpuid_entry2){ .function = 0xb, .index = 1, .flags = f,
	                                         .eax = shift, .ebx = nr, .ecx = 2u << 8 | 1,
	                                         .edx = id });
	cpuid_add(c, (struct kvm_cpuid_entry2){ .function = 0xb, .index = 2, .flags = f,
	                                         .ecx = 2, .edx = id });
	/* AMD: core count and APIC-ID width; no TOPOEXT (its leaf would disagree). */
	if ((e = cpu_cpuid_find(c, 0x80000001, 0))) {
		e->ecx &= ~(1u << 22);
		if (nr > 1)
			e->ecx |= 1u << 1; /* CmpLegacy */
		else
			e->ecx &= ~(1u << 1);
	}
	if ((e = cpu_cpuid_find(c, 0x80000008, 0)))
		e->ecx = (e->ecx & ~0xf0ffu) | ((nr - 1) & 0xff) | (shift & 0xf) << 12;
	cpuid_remove(c, 0x8000001e);
	/* KVM signature leaf, if KVM did not list it */
	if (!cpu_cpuid_find(c, 0x40000000, 0)) {
		cpuid_add(c, (struct kvm_cpuid_entry2){ .function = 0x40000000, .eax = 0x40000001,
		                                         .ebx = 0x4b4d564b, .ecx = 0x564b4d56,
		                                         .edx = 0x4d });
	}
}

static int set_msrs(int fd)
{
	static const uint32_t idx[] = { MSR_IA32_SYSENTER_CS, MSR_IA32_SYSENTER_ESP,
		                        MSR_IA32_SYSENTER_EIP, MSR_STAR, MSR_LSTAR, MSR_CSTAR,
		                        MSR_SYSCALL_MASK, MSR_KERNEL_GS_BASE, MSR_IA32_TSC,
		                        MSR_IA32_MISC_ENABLE, MSR_MTRR_DEF_TYPE };
	enum { N = sizeof(idx) / sizeof(idx[0]) };
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[N];
	} m;

	memset(&m, 0, sizeof(m));
	m.hdr.nmsrs = N;
	for (int i = 0; i < N; i++) {
		m.e[i].index = idx[i];
		if (idx[i] == MSR_IA32_MISC_ENABLE)
			m.e[i].data = 1; /* fast string operations */
		else if (idx[i] == MSR_MTRR_DEF_TYPE)
			m.e[i].data = 1u << 11 | 6; /* MTRRs on, default write-back */
	}
	int n = ioctl(fd, KVM_SET_MSRS, &m);
	if (n < 0)
		return -errno;
	if (n < N)
		log_debug("KVM refused MSR 0x%x; the guest starts with its default", idx[n]);
	return 0;
}

static int set_lapic(int fd)
{
	struct kvm_lapic_state l;
	uint32_t *lint0 = (uint32_t *)&l.regs[0x350], *lint1 = (uint32_t *)&l.regs[0x360];

	if (ioctl(fd, KVM_GET_LAPIC, &l) < 0)
		return -errno;
	*lint0 = (*lint0 & ~0x700u & ~0x10000u) | 0x700; /* ExtINT: the PIC's virtual wire */
	*lint1 = (*lint1 & ~0x700u & ~0x10000u) | 0x400; /* NMI */
	if (ioctl(fd, KVM_SET_LAPIC, &l) < 0)
		return -errno;
	return 0;
}

int cpu_init_vcpu(int fd, const struct cpu_cpuid *supported, unsigned id, unsigned nr,
                  bool tsc_deadline)
{
	static __thread struct cpu_cpuid c; /* 10 KiB: keep it off the stack */
	struct kvm_fpu fpu;
	int rc;

	c = *supported;
	cpu_cpuid_patch(&c, id, nr, tsc_deadline);
	if (ioctl(fd, KVM_SET_CPUID2, &c) < 0)
		return -errno;
	if ((rc = set_msrs(fd)) || (rc = set_lapic(fd)))
		return rc;
	memset(&fpu, 0, sizeof(fpu));
	fpu.fcw = 0x37f;
	fpu.mxcsr = 0x1f80;
	if (ioctl(fd, KVM_SET_FPU, &fpu) < 0)
		return -errno;
	return 0;
}

static struct kvm_segment seg(uint16_t sel, uint8_t type, bool code64, bool db)
{
	return (struct kvm_segment){ .base = 0, .limit = 0xffffffff, .selector = sel,
		                     .type = type, .present = 1, .dpl = 0, .db = db, .s = 1,
		                     .l = code64, .g = 1 };
}

int cpu_init_boot_regs(int fd, const struct boot_setup *b)
{
	struct kvm_sregs s;
	struct kvm_regs r;
	bool lm = b->kind == BOOT_BZIMAGE64;

	if (ioctl(fd, KVM_GET_SREGS, &s) < 0)
		return -errno;
	s.cs = seg(0x10, 0xb, lm, !lm);
	s.ds = s.es = s.fs = s.gs = s.ss = seg(0x18, 0x3, false, true);
	s.tr = (struct kvm_segment){ .base = 0, .limit = 0xffff, .selector = 0x20,
		                     .type = 0xb, .present = 1 };
	s.ldt = (struct kvm_segment){ .type = 0x2, .present = 1, .limit = 0xffff,
		                      .unusable = 0 };
	s.gdt.base = LAYOUT_GDT;
	s.gdt.limit = 4 * 8 - 1;
	s.idt.base = 0;
	s.idt.limit = 0;
	if (lm) {
		s.cr0 = 0x80000033; /* PG NE ET MP PE */
		s.cr3 = LAYOUT_PML4;
		s.cr4 = 0x20; /* PAE */
		s.efer = 0x500; /* LMA LME */
	} else {
		s.cr0 = 0x11; /* ET PE, paging off */
		s.cr3 = 0;
		s.cr4 = 0;
		s.efer = 0;
	}
	if (ioctl(fd, KVM_SET_SREGS, &s) < 0)
		return -errno;

	memset(&r, 0, sizeof(r));
	r.rflags = 2;
	r.rip = b->entry;
	r.rsp = LAYOUT_STACK;
	if (lm)
		r.rsi = b->params;
	else
		r.rbx = b->params;
	if (ioctl(fd, KVM_SET_REGS, &r) < 0)
		return -errno;
	return 0;
}

void cpu_describe_regs(int vcpu_fd, char *buf, size_t len)
{
	struct kvm_regs r;
	struct kvm_sregs sr;

	buf[0] = '\0';
	if (ioctl(vcpu_fd, KVM_GET_REGS, &r) < 0 || ioctl(vcpu_fd, KVM_GET_SREGS, &sr) < 0)
		return;
	if (r.rip == 0xfff0 && sr.cs.selector == 0xf000 && !(sr.cr0 & 1)) {
		/* KVM on AMD resets the vCPU on a shutdown intercept before it exits */
		snprintf(buf, len, "registers unknown: KVM reset the vCPU at the shutdown");
		return;
	}
	snprintf(buf, len,
	         "rip 0x%llx rsp 0x%llx rflags 0x%llx cs 0x%x cr0 0x%llx cr2 0x%llx cr3 0x%llx "
	         "cr4 0x%llx efer 0x%llx idt 0x%llx/0x%x gdt 0x%llx/0x%x tr 0x%x",
	         (unsigned long long)r.rip, (unsigned long long)r.rsp, (unsigned long long)r.rflags,
	         sr.cs.selector, (unsigned long long)sr.cr0, (unsigned long long)sr.cr2,
	         (unsigned long long)sr.cr3, (unsigned long long)sr.cr4, (unsigned long long)sr.efer,
	         (unsigned long long)sr.idt.base, sr.idt.limit, (unsigned long long)sr.gdt.base,
	         sr.gdt.limit, sr.tr.selector);
}

/* Read n MSRs (n <= 4) of a vCPU into val; 0, or -EIO unless KVM read them all. */
static int get_msrs(int fd, const uint32_t *idx, uint64_t *val, unsigned n)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[4];
	} m;

	if (n > 4)
		return -EINVAL;
	memset(&m, 0, sizeof(m));
	m.hdr.nmsrs = n;
	for (unsigned i = 0; i < n; i++)
		m.e[i].index = idx[i];
	if (ioctl(fd, KVM_GET_MSRS, &m) != (int)n)
		return -EIO;
	for (unsigned i = 0; i < n; i++)
		val[i] = m.e[i].data;
	return 0;
}

static uint32_t apic_reg(const struct kvm_lapic_state *l, unsigned off)
{
	uint32_t v;
	memcpy(&v, l->regs + off, sizeof(v));
	return v;
}

/* the vectors set in the 256-bit LAPIC register array at off (IRR, ISR) */
static size_t apic_vectors(const struct kvm_lapic_state *l, unsigned off, char *buf, size_t len)
{
	size_t n = 0;
	buf[0] = '\0';
	for (unsigned v = 0; v < 256 && n + 6 < len; v++) {
		if (apic_reg(l, off + (v / 32) * 0x10) & (1u << (v % 32)))
			n += (size_t)snprintf(buf + n, len - n, "%s0x%02x", n ? "," : "", v);
	}
	if (!n)
		snprintf(buf, len, "none");
	return n;
}

void cpu_format_timer(const struct kvm_lapic_state *l, uint64_t tsc, uint64_t deadline,
                      uint32_t tsc_khz, char *buf, size_t len)
{
	enum { SVR = 0xf0, ISR = 0x100, IRR = 0x200, LVTT = 0x320, TMICT = 0x380, TMCCT = 0x390,
	       TDCR = 0x3e0 };
	static const char *const mode[] = { "one-shot", "periodic", "tsc-deadline", "mode 3" };
	uint32_t lvtt = apic_reg(l, LVTT);
	char when[96], irr[128], isr[128];

	if (!(lvtt >> 18 & 1)) {
		uint32_t init = apic_reg(l, TMICT), cur = apic_reg(l, TMCCT);
		/* TDCR bits 0,1,3: divide by 2^(n+1), 0b111 by 1 */
		uint32_t d = (apic_reg(l, TDCR) & 3) | (apic_reg(l, TDCR) >> 1 & 4);
		if (!init)
			snprintf(when, sizeof(when), "stopped (initial count 0)");
		else
			snprintf(when, sizeof(when), "count %u of %u, divide %u", cur, init,
			         d == 7 ? 1u : 2u << d);
	} else if (!deadline) {
		snprintf(when, sizeof(when), "disarmed (deadline 0)");
	} else {
		uint64_t diff = deadline > tsc ? deadline - tsc : tsc - deadline;
		const char *dir = deadline > tsc ? "in" : "passed";
		if (tsc_khz)
			snprintf(when, sizeof(when), "deadline %s %.3f ms (tsc 0x%llx)", dir,
			         (double)diff / tsc_khz, (unsigned long long)tsc);
		else
			snprintf(when, sizeof(when), "deadline %s %llu cycles (tsc 0x%llx)", dir,
			         (unsigned long long)diff, (unsigned long long)tsc);
	}
	apic_vectors(l, IRR, irr, sizeof(irr));
	apic_vectors(l, ISR, isr, sizeof(isr));
	snprintf(buf, len, "lapic %s, timer %s vector 0x%02x%s: %s; irr %s; isr %s",
	         apic_reg(l, SVR) & 0x100 ? "on" : "software-disabled", mode[lvtt >> 17 & 3],
	         lvtt & 0xff, lvtt & 0x10000 ? " masked" : "", when, irr, isr);
}

void cpu_describe_timer(int vcpu_fd, char *buf, size_t len)
{
	static const uint32_t idx[2] = { MSR_IA32_TSC, MSR_IA32_TSC_DEADLINE };
	struct kvm_lapic_state l;
	uint64_t v[2];

	buf[0] = '\0';
	if (ioctl(vcpu_fd, KVM_GET_LAPIC, &l) < 0 || get_msrs(vcpu_fd, idx, v, 2))
		return;
	int khz = ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0);
	cpu_format_timer(&l, v[0], v[1], khz > 0 ? (uint32_t)khz : 0, buf, len);
}

int cpu_pvclock_msr(int vcpu_fd, uint64_t *gpa, uint64_t *tsc)
{
	/* MSR_KVM_SYSTEM_TIME_NEW, MSR_KVM_SYSTEM_TIME, the TSC */
	static const uint32_t idx[3] = { 0x4b564d01, 0x12, MSR_IA32_TSC };
	uint64_t m[3];

	if (get_msrs(vcpu_fd, idx, m, 3))
		return -EIO;
	/* bit 0 enables; the new MSR wins when the guest set both */
	uint64_t v = m[0] & 1 ? m[0] : m[1];
	*gpa = v & 1 ? v & ~1ull : 0;
	*tsc = m[2];
	return 0;
}

uint64_t cpu_pvclock_ns(const uint8_t rec[32], uint64_t tsc)
{
	uint32_t version, mul;
	uint64_t stamp, sys;
	int8_t shift;

	memcpy(&version, rec, 4);
	memcpy(&stamp, rec + 8, 8);
	memcpy(&sys, rec + 16, 8);
	memcpy(&mul, rec + 24, 4);
	memcpy(&shift, rec + 28, 1);
	if (version & 1)
		return 0;
	uint64_t d = tsc > stamp ? tsc - stamp : 0;
	if (shift < 0)
		d >>= -shift;
	else
		d <<= shift;
	return sys + (uint64_t)(((unsigned __int128)d * mul) >> 32);
}

int cpu_cpuid_check(struct cpu_cpuid *host, struct cpu_cpuid *saved, char *err, size_t errlen)
{
	/* the feature words, and in each the bits that are not features: leaf 1
	 * ECX 31 (hypervisor) and 24 (TSC deadline) come from cvisor, ECX 27
	 * (OSXSAVE) mirrors the guest's CR4; leaf 7.0 ECX 4 (OSPKE) likewise;
	 * leaf 0xd.1 EBX is a size */
	static const struct {
		uint32_t fn, idx;
		uint32_t ignore[4]; /* eax, ebx, ecx, edx */
	} words[] = {
		{ 1, 0, { ~0u, ~0u, 1u << 31 | 1u << 27 | 1u << 24, 0 } },
		{ 7, 0, { ~0u, 0, 1u << 4, 0 } },
		{ 0xd, 1, { 0, ~0u, ~0u, ~0u } },
		{ 0x80000001, 0, { ~0u, ~0u, 0, 0 } },
	};
	static const char *const reg[] = { "eax", "ebx", "ecx", "edx" };

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		struct kvm_cpuid_entry2 *s = cpu_cpuid_find(saved, words[i].fn, words[i].idx);
		struct kvm_cpuid_entry2 *h = cpu_cpuid_find(host, words[i].fn, words[i].idx);
		if (!s)
			continue;
		uint32_t ss[4] = { s->eax, s->ebx, s->ecx, s->edx }, hs[4] = { 0 };
		if (h) {
			hs[0] = h->eax, hs[1] = h->ebx, hs[2] = h->ecx, hs[3] = h->edx;
		}
		for (int r = 0; r < 4; r++) {
			uint32_t missing = ss[r] & ~words[i].ignore[r] & ~hs[r];
			if (missing) {
				snprintf(err, errlen,
				         "this host's CPU lacks features the guest was using (CPUID 0x%x "
				         "%s bits 0x%08x)",
				         words[i].fn, reg[r], missing);
				return -ENOTSUP;
			}
		}
	}
	return 0;
}
