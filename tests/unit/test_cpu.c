/* Unit tests for CPUID patching (arch/x86/cpu.c): pure functions on a
 * synthetic copy of what KVM_GET_SUPPORTED_CPUID returns; no KVM needed. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/cpu.h"

#define SIG KVM_CPUID_FLAG_SIGNIFCANT_INDEX

#define L1_EBX 0x07100800u  /* old APIC ID 7, 16 logical, CLFLUSH 8 */
#define L1_ECX 0x0000a201u  /* no hypervisor bit, no TSC deadline */
#define L1_EDX 0x178bfbffu  /* HTT (bit 28) set */
#define L4_EAX(type, level, sharing, cores) \
	((type) | (level) << 5 | 1u << 8 | (sharing) << 14 | (cores) << 26)
#define X8_ECX 0x00ab7f03u  /* bits 16..31 and 8..11 must survive */

static void add(struct cpu_cpuid *c, uint32_t fn, uint32_t idx, uint32_t flags, uint32_t eax,
                uint32_t ebx, uint32_t ecx, uint32_t edx)
{
	assert_true(c->hdr.nent < CPU_MAX_CPUID);
	c->e[c->hdr.nent++] = (struct kvm_cpuid_entry2){ .function = fn, .index = idx,
		                                         .flags = flags, .eax = eax, .ebx = ebx,
		                                         .ecx = ecx, .edx = edx };
}

/* A plausible host: max basic leaf 0xd, leaf 4 with 4 subleaves, old 0xb/0x1f
 * topology, AMD extended leaves including TOPOEXT's 0x8000001e. */
static struct cpu_cpuid *host(uint32_t max_basic, bool with_kvm_leaf)
{
	struct cpu_cpuid *c = calloc(1, sizeof(*c)); /* exact size: ASan sees any overrun */

	assert_non_null(c);
	add(c, 0, 0, 0, max_basic, 0x756e6547, 0x6c65746e, 0x49656e69);
	add(c, 1, 0, 0, 0x000906ea, L1_EBX, L1_ECX, L1_EDX);
	add(c, 2, 0, 0, 0x00feff01, 0, 0, 0);
	add(c, 4, 0, SIG, L4_EAX(1, 1, 1, 7), 0x01c0003f, 0x3f, 0);
	add(c, 4, 1, SIG, L4_EAX(2, 1, 1, 7), 0x01c0003f, 0x3f, 0);
	add(c, 4, 2, SIG, L4_EAX(3, 2, 1, 7), 0x00c0003f, 0x3ff, 0);
	add(c, 4, 3, SIG, L4_EAX(3, 3, 15, 7), 0x03c0003f, 0x2fff, 6);
	add(c, 4, 4, SIG, 0, 0, 0, 0); /* null cache type: ends the list */
	add(c, 7, 0, SIG, 0, 0x029c6fbf, 0, 0);
	add(c, 0xb, 0, SIG, 1, 2, 0x100, 7);
	add(c, 0xb, 1, SIG, 4, 16, 0x201, 7);
	add(c, 0x1f, 0, SIG, 1, 2, 0x100, 7);
	add(c, 0xd, 0, SIG, 0x7, 0x340, 0x340, 0);
	if (with_kvm_leaf) {
		add(c, 0x40000000, 0, 0, 0x40000010, 0x11111111, 0x22222222, 0x33333333);
		add(c, 0x40000001, 0, 0, 0x01007afb, 0, 0, 0);
	}
	add(c, 0x80000000, 0, 0, 0x80000021, 0, 0, 0);
	add(c, 0x80000001, 0, 0, 0, 0, 0x00400001u | 1u << 22, 0x2c100800);
	add(c, 0x80000008, 0, 0, 0x3030, 0, X8_ECX, 0);
	add(c, 0x8000001e, 0, 0, 7, 0x0100, 0, 0);
	return c;
}

static unsigned count(struct cpu_cpuid *c, uint32_t fn)
{
	unsigned n = 0;

	for (uint32_t i = 0; i < c->hdr.nent; i++)
		n += c->e[i].function == fn;
	return n;
}

static unsigned ceil_log2(unsigned n)
{
	unsigned s = 0;

	while ((1u << s) < n)
		s++;
	return s;
}

static void check_patched(struct cpu_cpuid *c, unsigned id, unsigned n, bool tsc)
{
	struct kvm_cpuid_entry2 *e;
	unsigned shift = ceil_log2(n);

	/* leaf 0: max basic leaf covers 0xb */
	e = cpu_cpuid_find(c, 0, 0);
	assert_non_null(e);
	assert_true(e->eax >= 0xb);
	assert_int_equal(e->ebx, 0x756e6547);

	/* leaf 1 */
	e = cpu_cpuid_find(c, 1, 0);
	assert_non_null(e);
	assert_int_equal(e->eax, 0x000906ea);
	assert_int_equal(e->ebx >> 24, id & 0xff);              /* initial APIC ID */
	assert_int_equal((e->ebx >> 16) & 0xff, n > 255 ? 255 : n); /* logical count */
	assert_int_equal(e->ebx & 0xffff, L1_EBX & 0xffff);     /* CLFLUSH etc. kept */
	assert_true(e->ecx & (1u << 31));                       /* hypervisor */
	assert_int_equal(!!(e->ecx & (1u << 24)), tsc);         /* TSC deadline only when asked */
	assert_int_equal(e->ecx & ~(1u << 31 | 1u << 24), L1_ECX);
	assert_int_equal(!!(e->edx & (1u << 28)), n > 1);       /* HTT */
	assert_int_equal(e->edx & ~(1u << 28), L1_EDX & ~(1u << 28));

	/* leaf 4: cores per package = n (capped at 64), no thread sharing */
	for (uint32_t sub = 0; sub < 4; sub++) {
		e = cpu_cpuid_find(c, 4, sub);
		assert_non_null(e);
		assert_int_equal(e->index, sub);
		assert_int_equal(e->eax >> 26, (n > 64 ? 64 : n) - 1);
		assert_int_equal((e->eax >> 14) & 0xfff, 0);
		assert_int_equal(e->eax & 0x3fff, L4_EAX(sub < 2 ? sub + 1 : 3, 0, 0, 0) |
		                                          (sub < 2 ? 1 : sub) << 5 | 1u << 8);
	}
	e = cpu_cpuid_find(c, 4, 4);
	assert_non_null(e);
	assert_int_equal(e->eax, 0); /* the terminating null subleaf stays null */

	/* leaf 0xb: exactly subleaves 0, 1, 2 */
	assert_int_equal(count(c, 0xb), 3);
	e = cpu_cpuid_find(c, 0xb, 0);
	assert_non_null(e);
	assert_true(e->flags & SIG);
	assert_int_equal(e->eax & 0x1f, 0);      /* SMT: one thread, shift 0 */
	assert_int_equal(e->ebx & 0xffff, 1);
	assert_int_equal((e->ecx >> 8) & 0xff, 1); /* level type SMT */
	assert_int_equal(e->ecx & 0xff, 0);
	assert_int_equal(e->edx, id);            /* x2APIC ID */
	e = cpu_cpuid_find(c, 0xb, 1);
	assert_non_null(e);
	assert_true(e->flags & SIG);
	assert_int_equal(e->eax & 0x1f, shift);  /* ceil(log2 n) */
	assert_int_equal(e->ebx & 0xffff, n);
	assert_int_equal((e->ecx >> 8) & 0xff, 2); /* level type core */
	assert_int_equal(e->ecx & 0xff, 1);
	assert_int_equal(e->edx, id);
	e = cpu_cpuid_find(c, 0xb, 2);
	assert_non_null(e);
	assert_true(e->flags & SIG);
	assert_int_equal(e->eax, 0);
	assert_int_equal(e->ebx, 0);
	assert_int_equal((e->ecx >> 8) & 0xff, 0); /* invalid: end of levels */
	assert_int_equal(e->ecx & 0xff, 2);
	assert_int_equal(e->edx, id);
	/* the host's 0x1f (which would disagree) is gone */
	assert_int_equal(count(c, 0x1f), 0);

	/* AMD leaves */
	e = cpu_cpuid_find(c, 0x80000001, 0);
	assert_non_null(e);
	assert_false(e->ecx & (1u << 22)); /* TOPOEXT */
	assert_int_equal(!!(e->ecx & (1u << 1)), n > 1); /* CmpLegacy */
	assert_int_equal(e->ecx & ~(1u << 1 | 1u << 22), 0x00400001u & ~(1u << 22));
	e = cpu_cpuid_find(c, 0x80000008, 0);
	assert_non_null(e);
	assert_int_equal(e->ecx & 0xff, (n - 1) & 0xff);           /* NC */
	assert_int_equal((e->ecx >> 12) & 0xf, shift);             /* ApicIdSize */
	assert_int_equal(e->ecx & ~0xf0ffu, X8_ECX & ~0xf0ffu);    /* the rest kept */
	assert_int_equal(e->eax, 0x3030);
	assert_int_equal(count(c, 0x8000001e), 0);
	assert_null(cpu_cpuid_find(c, 0x8000001e, 0));

	/* unrelated leaves untouched */
	e = cpu_cpuid_find(c, 7, 0);
	assert_non_null(e);
	assert_int_equal(e->ebx, 0x029c6fbf);
	assert_int_equal(count(c, 0x40000000), 1);
	assert_true(c->hdr.nent <= CPU_MAX_CPUID);
}

static void test_topology_counts(void **state)
{
	static const struct {
		unsigned id, n;
	} cases[] = { { 0, 1 }, { 0, 2 }, { 1, 2 }, { 3, 4 }, { 4, 5 }, { 0, 8 },
		      { 8, 9 }, { 63, 64 }, { 64, 65 }, { 200, 255 }, { 254, 255 } };

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (int tsc = 0; tsc < 2; tsc++) {
			struct cpu_cpuid *c = host(0xd, false);
			cpu_cpuid_patch(c, cases[i].id, cases[i].n, tsc);
			check_patched(c, cases[i].id, cases[i].n, tsc);
			free(c);
		}
	}
}

static void test_shift_values(void **state)
{
	static const unsigned want[][2] = { { 1, 0 }, { 2, 1 }, { 3, 2 }, { 4, 2 }, { 5, 3 },
		                            { 8, 3 }, { 9, 4 }, { 128, 7 }, { 129, 8 }, { 255, 8 } };

	(void)state;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		struct cpu_cpuid *c = host(0xd, true);
		cpu_cpuid_patch(c, 0, want[i][0], false);
		assert_int_equal(cpu_cpuid_find(c, 0xb, 1)->eax, want[i][1]);
		assert_int_equal((cpu_cpuid_find(c, 0x80000008, 0)->ecx >> 12) & 0xf, want[i][1]);
		free(c);
	}
}

static void test_leaf0_max(void **state)
{
	struct cpu_cpuid *c;

	(void)state;
	c = host(0xd, false);
	cpu_cpuid_patch(c, 0, 1, false);
	assert_int_equal(cpu_cpuid_find(c, 0, 0)->eax, 0xd); /* already >= 0xb */
	free(c);

	c = host(0x7, false);
	cpu_cpuid_patch(c, 0, 2, false);
	assert_int_equal(cpu_cpuid_find(c, 0, 0)->eax, 0xb); /* raised */
	free(c);

	c = host(0x1f, false);
	cpu_cpuid_patch(c, 0, 2, false);
	assert_int_equal(cpu_cpuid_find(c, 0, 0)->eax, 0x1f);
	free(c);
}

static void test_kvm_signature(void **state)
{
	struct cpu_cpuid *c;
	struct kvm_cpuid_entry2 *e;

	(void)state;
	/* missing: added */
	c = host(0xd, false);
	assert_null(cpu_cpuid_find(c, 0x40000000, 0));
	cpu_cpuid_patch(c, 0, 2, false);
	e = cpu_cpuid_find(c, 0x40000000, 0);
	assert_non_null(e);
	assert_true(e->eax >= 0x40000001);
	char sig[13] = { 0 };
	memcpy(sig, &e->ebx, 4);
	memcpy(sig + 4, &e->ecx, 4);
	memcpy(sig + 8, &e->edx, 4);
	assert_memory_equal(sig, "KVMKVMKVM\0\0\0", 12);
	assert_int_equal(count(c, 0x40000000), 1);
	free(c);

	/* present: kept as KVM reported it */
	c = host(0xd, true);
	cpu_cpuid_patch(c, 0, 2, false);
	assert_int_equal(count(c, 0x40000000), 1);
	e = cpu_cpuid_find(c, 0x40000000, 0);
	assert_int_equal(e->eax, 0x40000010);
	assert_int_equal(e->ebx, 0x11111111);
	assert_int_equal(e->ecx, 0x22222222);
	assert_int_equal(e->edx, 0x33333333);
	assert_non_null(cpu_cpuid_find(c, 0x40000001, 0));
	free(c);
}

static void test_idempotent(void **state)
{
	struct cpu_cpuid *c = host(0xd, false);

	(void)state;
	/* patching a patched table (e.g. a vCPU re-created) gives the same result */
	cpu_cpuid_patch(c, 2, 4, true);
	uint32_t nent = c->hdr.nent;
	cpu_cpuid_patch(c, 2, 4, true);
	assert_int_equal(c->hdr.nent, nent);
	check_patched(c, 2, 4, true);
	free(c);
}

static void test_minimal_input(void **state)
{
	struct cpu_cpuid *c = calloc(1, sizeof(*c));

	(void)state;
	assert_non_null(c);
	/* nothing to patch but the added leaves; no crash on missing leaves */
	cpu_cpuid_patch(c, 0, 1, true);
	assert_int_equal(count(c, 0xb), 3);
	assert_int_equal(count(c, 0x40000000), 1);
	assert_int_equal(c->hdr.nent, 4);
	assert_null(cpu_cpuid_find(c, 1, 0));
	free(c);
}

static void test_full_input(void **state)
{
	struct cpu_cpuid *c;

	(void)state;
	/* full, with old 0xb/0x1f/0x8000001e entries: their slots are reused */
	c = host(0xd, false);
	for (uint32_t i = 0; c->hdr.nent < CPU_MAX_CPUID; i++)
		add(c, 0x80000100 + i, 0, 0, i, i, i, i);
	assert_int_equal(c->hdr.nent, CPU_MAX_CPUID);
	cpu_cpuid_patch(c, 1, 2, false);
	assert_true(c->hdr.nent <= CPU_MAX_CPUID);
	check_patched(c, 1, 2, false);
	free(c);

	/* full with nothing removable: adds are dropped, nothing overruns */
	c = calloc(1, sizeof(*c));
	assert_non_null(c);
	add(c, 0, 0, 0, 0xd, 0, 0, 0);
	add(c, 1, 0, 0, 0, 0, 0, 0);
	for (uint32_t i = 0; c->hdr.nent < CPU_MAX_CPUID; i++)
		add(c, 0x80000100 + i, 0, 0, i, i, i, i);
	cpu_cpuid_patch(c, 1, 2, false);
	assert_int_equal(c->hdr.nent, CPU_MAX_CPUID);
	assert_true(cpu_cpuid_find(c, 1, 0)->ecx & (1u << 31));
	/* the original entries are all still there */
	for (uint32_t i = 2; i < CPU_MAX_CPUID; i++)
		assert_int_equal(c->e[i].function, 0x80000100 + i - 2);
	free(c);
}

static void test_find(void **state)
{
	struct cpu_cpuid *c = host(0xd, true);

	(void)state;
	/* significant index: exact subleaf */
	assert_int_equal(cpu_cpuid_find(c, 4, 2)->index, 2);
	assert_int_equal(cpu_cpuid_find(c, 4, 3)->edx, 6);
	assert_null(cpu_cpuid_find(c, 4, 5));
	assert_null(cpu_cpuid_find(c, 0xb, 2));
	/* no significant index: any subleaf matches */
	assert_int_equal(cpu_cpuid_find(c, 1, 0)->ebx, L1_EBX);
	assert_int_equal(cpu_cpuid_find(c, 1, 7)->ebx, L1_EBX);
	assert_null(cpu_cpuid_find(c, 0x12345678, 0));
	assert_null(cpu_cpuid_find(c, 3, 0));
	c->hdr.nent = 0;
	assert_null(cpu_cpuid_find(c, 0, 0));
	free(c);
}

/* The migration/restore CPU check: real features count, OS-controlled and
 * cvisor-set bits do not. */
static void test_cpuid_check(void **state)
{
	(void)state;
	struct cpu_cpuid *h = host(0xd, true), *g = host(0xd, true);
	char err[160] = "";

	/* the guest's view as KVM reports it at run time: cvisor's bits, and
	 * OSXSAVE / OSPKE set by the guest's CR4 (absent from the host's list) */
	cpu_cpuid_patch(g, 0, 1, true);
	cpu_cpuid_find(g, 1, 0)->ecx |= 1u << 27;
	cpu_cpuid_find(g, 7, 0)->ecx |= 1u << 4;
	add(g, 0xd, 1, SIG, 0x1, 0x240, 0, 0);
	add(h, 0xd, 1, SIG, 0x1, 0x340, 0, 0); /* another XSAVE size: not a feature */
	assert_int_equal(cpu_cpuid_check(h, g, err, sizeof(err)), 0);
	assert_string_equal(err, "");

	/* a real feature the host lacks: leaf 7 EBX (e.g. AVX2, bit 5) */
	cpu_cpuid_find(h, 7, 0)->ebx &= ~(1u << 5);
	assert_int_equal(cpu_cpuid_check(h, g, err, sizeof(err)), -ENOTSUP);
	assert_non_null(strstr(err, "CPUID 0x7 ebx bits 0x00000020"));
	cpu_cpuid_find(h, 7, 0)->ebx |= 1u << 5;
	/* leaf 1 ECX (AES, bit 25), leaf 0x80000001 ECX, leaf 0xd.1 EAX (XSAVEOPT) */
	cpu_cpuid_find(g, 1, 0)->ecx |= 1u << 25;
	cpu_cpuid_find(h, 1, 0)->ecx &= ~(1u << 25);
	assert_int_equal(cpu_cpuid_check(h, g, err, sizeof(err)), -ENOTSUP);
	assert_non_null(strstr(err, "CPUID 0x1 ecx bits 0x02000000"));
	cpu_cpuid_find(h, 1, 0)->ecx |= 1u << 25;
	cpu_cpuid_find(h, 0x80000001, 0)->ecx &= ~1u;
	assert_int_equal(cpu_cpuid_check(h, g, err, sizeof(err)), -ENOTSUP);
	assert_non_null(strstr(err, "CPUID 0x80000001 ecx"));
	cpu_cpuid_find(h, 0x80000001, 0)->ecx |= 1u;
	cpu_cpuid_find(h, 0xd, 1)->eax = 0;
	assert_int_equal(cpu_cpuid_check(h, g, err, sizeof(err)), -ENOTSUP);
	assert_non_null(strstr(err, "CPUID 0xd eax bits 0x00000001"));
	/* a host without the whole leaf lacks all of it */
	cpu_cpuid_find(h, 0xd, 1)->function = 0x4fffffff;
	assert_int_equal(cpu_cpuid_check(h, g, err, sizeof(err)), -ENOTSUP);
	free(h);
	free(g);
}

static void set_reg(struct kvm_lapic_state *l, unsigned off, uint32_t v)
{
	memcpy(l->regs + off, &v, sizeof(v));
}

static void test_format_timer(void **state)
{
	(void)state;
	struct kvm_lapic_state l;
	char buf[400];

	memset(&l, 0, sizeof(l));
	set_reg(&l, 0xf0, 0x1ff);                    /* SVR: enabled */
	set_reg(&l, 0x320, 2u << 17 | 0xec);         /* LVTT: TSC deadline, vector 0xec */
	/* 2 GHz: 3 ms ahead is 6,000,000 cycles */
	cpu_format_timer(&l, 1000000, 7000000, 2000000, buf, sizeof(buf));
	assert_non_null(strstr(buf, "lapic on, timer tsc-deadline vector 0xec: deadline in 3.000 ms"));
	assert_non_null(strstr(buf, "irr none; isr none"));
	/* a deadline in the past: the interrupt is overdue */
	cpu_format_timer(&l, 7000000, 1000000, 2000000, buf, sizeof(buf));
	assert_non_null(strstr(buf, "deadline passed 3.000 ms"));
	cpu_format_timer(&l, 7000000, 0, 2000000, buf, sizeof(buf));
	assert_non_null(strstr(buf, "disarmed"));
	cpu_format_timer(&l, 10, 110, 0, buf, sizeof(buf));
	assert_non_null(strstr(buf, "deadline in 100 cycles"));

	/* one-shot, masked, divide by 16 (TDCR 0b0011), and pending vectors */
	set_reg(&l, 0x320, 1u << 16 | 0xef);
	set_reg(&l, 0x380, 5000);
	set_reg(&l, 0x390, 1200);
	set_reg(&l, 0x3e0, 3);
	set_reg(&l, 0x200 + 7 * 0x10, 1u << 4);      /* IRR vector 0xe4 */
	set_reg(&l, 0x200 + 1 * 0x10, 1u << 1);      /* IRR vector 0x21 */
	set_reg(&l, 0x100 + 7 * 0x10, 1u << 15);     /* ISR vector 0xef */
	cpu_format_timer(&l, 0, 0, 0, buf, sizeof(buf));
	assert_non_null(strstr(buf, "timer one-shot vector 0xef masked: count 1200 of 5000, divide 16"));
	assert_non_null(strstr(buf, "irr 0x21,0xe4; isr 0xef"));
	set_reg(&l, 0x3e0, 0xb); /* 0b1011: divide by 1 */
	set_reg(&l, 0x380, 0);
	cpu_format_timer(&l, 0, 0, 0, buf, sizeof(buf));
	assert_non_null(strstr(buf, "stopped (initial count 0)"));
	set_reg(&l, 0x380, 9);
	cpu_format_timer(&l, 0, 0, 0, buf, sizeof(buf));
	assert_non_null(strstr(buf, "divide 1;"));
	/* periodic, software-disabled APIC; a short buffer is cut, not overrun */
	set_reg(&l, 0xf0, 0xff);
	set_reg(&l, 0x320, 1u << 17 | 0x30);
	cpu_format_timer(&l, 0, 0, 0, buf, sizeof(buf));
	assert_non_null(strstr(buf, "lapic software-disabled, timer periodic vector 0x30"));
	char small[16];
	cpu_format_timer(&l, 0, 0, 0, small, sizeof(small));
	assert_int_equal(strlen(small), sizeof(small) - 1);
}

static void pvrec(uint8_t rec[32], uint32_t version, uint64_t stamp, uint64_t sys, uint32_t mul,
                  int8_t shift)
{
	memset(rec, 0, 32);
	memcpy(rec, &version, 4);
	memcpy(rec + 8, &stamp, 8);
	memcpy(rec + 16, &sys, 8);
	memcpy(rec + 24, &mul, 4);
	memcpy(rec + 28, &shift, 1);
}

static void test_pvclock_ns(void **state)
{
	(void)state;
	uint8_t rec[32];

	/* mul 0.5 with shift +1: one ns per cycle */
	pvrec(rec, 2, 1000, 5000000000ull, 0x80000000u, 1);
	assert_int_equal(cpu_pvclock_ns(rec, 1000 + 3000000000ull), 8000000000ull);
	assert_int_equal(cpu_pvclock_ns(rec, 1000), 5000000000ull);
	/* a TSC before the record's stamp: the record's own time, not a wrap */
	assert_int_equal(cpu_pvclock_ns(rec, 10), 5000000000ull);
	/* shift -1 halves first: 4 cycles -> 2 -> 1 ns */
	pvrec(rec, 4, 0, 7, 0x80000000u, -1);
	assert_int_equal(cpu_pvclock_ns(rec, 4), 8);
	/* a 2.5 GHz TSC (mul 0.4 * 2^32, shift 0): 10 s of cycles are 10 s; no
	 * 64-bit overflow in the product */
	pvrec(rec, 6, 0, 0, 1717986918u, 0);
	uint64_t ns = cpu_pvclock_ns(rec, 25000000000ull);
	assert_true(ns > 9999999990ull && ns <= 10000000000ull);
	/* odd version: KVM is writing the record */
	pvrec(rec, 3, 0, 7, 0x80000000u, 1);
	assert_int_equal(cpu_pvclock_ns(rec, 100), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_topology_counts),
		cmocka_unit_test(test_shift_values),
		cmocka_unit_test(test_leaf0_max),
		cmocka_unit_test(test_kvm_signature),
		cmocka_unit_test(test_idempotent),
		cmocka_unit_test(test_minimal_input),
		cmocka_unit_test(test_full_input),
		cmocka_unit_test(test_find),
		cmocka_unit_test(test_cpuid_check),
		cmocka_unit_test(test_format_timer),
		cmocka_unit_test(test_pvclock_ns),
	};

	return cmocka_run_group_tests_name("cpu", tests, NULL, NULL);
}
