/* Unit tests for the ACPI table builder (arch/x86/acpi.c): the tables are built
 * into 2 MiB of fake guest memory and walked the way a guest OS walks them. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/acpi.h"
#include "arch/x86/layout.h"
#include "devices/acpi_pm.h"
#include "pci/pci.h"
#include "vm/mem.h"

#define MIB (1ULL << 20)
#define GUEST_SIZE (2 * MIB)

struct fixture {
	struct guest_mem m;
	uint8_t *ram;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->ram = calloc(1, GUEST_SIZE);
	if (!f->ram) {
		free(f);
		return -1;
	}
	mem_init_fake(&f->m, f->ram, GUEST_SIZE, layout_low_limit(GUEST_SIZE));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	mem_free(&f->m);
	free(f->ram);
	free(f);
	return 0;
}

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)le16(p) | (uint32_t)le16(p + 2) << 16;
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* A table inside the ACPI area, checked the way an OS checks it. */
static const uint8_t *table(const struct fixture *f, uint64_t gpa, const char *sig)
{
	assert_true(gpa >= LAYOUT_ACPI && gpa + 36 <= LAYOUT_ACPI + LAYOUT_ACPI_SIZE);
	const uint8_t *t = mem_ptr(&f->m, gpa, 36);
	assert_non_null(t);
	if (memcmp(t, sig, 4))
		fail_msg("table at 0x%llx is '%.4s', want '%s'", (unsigned long long)gpa,
		         (const char *)t, sig);
	uint32_t len = le32(t + 4);
	assert_true(len >= 36);
	assert_true(gpa + len <= LAYOUT_ACPI + LAYOUT_ACPI_SIZE);
	assert_non_null(mem_ptr(&f->m, gpa, len));
	assert_int_equal(acpi_checksum(t, len), 0);
	assert_memory_equal(t + 10, "CVISOR", 6); /* OEM ID */
	return t;
}

struct tables {
	const uint8_t *rsdp, *xsdt, *fadt, *facs, *dsdt, *madt, *mcfg;
	uint64_t facs_gpa;
};

static void walk(const struct fixture *f, uint64_t rsdp_gpa, struct tables *t)
{
	memset(t, 0, sizeof(*t));
	assert_int_equal(rsdp_gpa, 0xe0000);
	/* RSDP: 16-byte aligned in the BIOS area where the legacy scan looks */
	assert_int_equal(rsdp_gpa & 15, 0);
	t->rsdp = mem_ptr(&f->m, rsdp_gpa, 36);
	assert_non_null(t->rsdp);
	assert_memory_equal(t->rsdp, "RSD PTR ", 8);
	assert_int_equal(acpi_checksum(t->rsdp, 20), 0);
	assert_int_equal(t->rsdp[15], 2); /* ACPI 2.0+: XSDT */
	assert_int_equal(le32(t->rsdp + 20), 36);
	assert_int_equal(acpi_checksum(t->rsdp, 36), 0);
	assert_int_equal(le32(t->rsdp + 16), 0); /* no RSDT */

	t->xsdt = table(f, le64(t->rsdp + 24), "XSDT");
	uint32_t xlen = le32(t->xsdt + 4);
	assert_int_equal((xlen - 36) % 8, 0);
	for (uint32_t off = 36; off < xlen; off += 8) {
		uint64_t gpa = le64(t->xsdt + off);
		const uint8_t *p = mem_ptr(&f->m, gpa, 4);
		assert_non_null(p);
		if (!memcmp(p, "FACP", 4)) {
			assert_null(t->fadt);
			t->fadt = table(f, gpa, "FACP");
		} else if (!memcmp(p, "APIC", 4)) {
			assert_null(t->madt);
			t->madt = table(f, gpa, "APIC");
		} else if (!memcmp(p, "MCFG", 4)) {
			assert_null(t->mcfg);
			t->mcfg = table(f, gpa, "MCFG");
		} else {
			fail_msg("unexpected table '%.4s' in the XSDT", (const char *)p);
		}
	}
	assert_non_null(t->fadt);
	assert_non_null(t->madt);

	/* FADT -> DSDT and FACS, 32-bit and X_ pointers agree */
	uint64_t dsdt = le64(t->fadt + 140), facs = le64(t->fadt + 132);
	assert_int_equal(le32(t->fadt + 40), dsdt);
	/* FIRMWARE_CTRL is either unused (0) or the same FACS as X_FIRMWARE_CTRL */
	assert_true(le32(t->fadt + 36) == 0 || le32(t->fadt + 36) == facs);
	t->dsdt = table(f, dsdt, "DSDT");
	t->facs_gpa = facs;
	t->facs = mem_ptr(&f->m, facs, 64);
	assert_non_null(t->facs);
}

static void check_fadt(const uint8_t *t)
{
	assert_int_equal(le32(t + 4), 276); /* ACPI 6 FADT */
	assert_true(t[8] >= 5);
	assert_int_equal(le16(t + 46), 9); /* SCI_INT */
	assert_int_equal(le16(t + 46), ACPI_PM_SCI_GSI);
	assert_int_equal(le32(t + 48), 0); /* SMI_CMD: no SMI, ACPI always enabled */
	assert_int_equal(le32(t + 56), ACPI_PM1_EVT); /* PM1a_EVT_BLK */
	assert_int_equal(le32(t + 60), 0);            /* no PM1b */
	assert_int_equal(le32(t + 64), ACPI_PM1_CNT); /* PM1a_CNT_BLK */
	assert_int_equal(le32(t + 68), 0);
	assert_int_equal(t[88], ACPI_PM1_EVT_LEN);
	assert_int_equal(t[88], 4);
	assert_int_equal(t[89], ACPI_PM1_CNT_LEN);
	assert_int_equal(t[89], 2);

	uint32_t flags = le32(t + 112);
	assert_true(flags & (1u << 10));   /* RESET_REG_SUP */
	assert_false(flags & (1u << 4));   /* PWR_BUTTON clear: fixed power button */
	assert_false(flags & (1u << 20));  /* not HW_REDUCED_ACPI */

	/* RESET_REG: system I/O, 8 bits at ACPI_RESET_PORT, value ACPI_RESET_VALUE */
	assert_int_equal(t[116], 1);
	assert_int_equal(t[117], 8);
	assert_int_equal(t[118], 0);
	assert_int_equal(le64(t + 120), ACPI_RESET_PORT);
	assert_int_equal(t[128], ACPI_RESET_VALUE);

	/* X_PM1a_EVT_BLK / X_PM1a_CNT_BLK: system I/O GAS with the same ports */
	assert_int_equal(t[148], 1);
	assert_int_equal(t[149], ACPI_PM1_EVT_LEN * 8);
	assert_int_equal(le64(t + 152), ACPI_PM1_EVT);
	assert_int_equal(t[172], 1);
	assert_int_equal(t[173], ACPI_PM1_CNT_LEN * 8);
	assert_int_equal(le64(t + 176), ACPI_PM1_CNT);
	/* no PM1b blocks */
	assert_int_equal(le64(t + 164), 0);
	assert_int_equal(le64(t + 188), 0);
}

/* Find Name(_S5_, Package(){ SLP_TYPa, ... }) in the AML and return SLP_TYPa. */
static int dsdt_s5_type(const uint8_t *dsdt)
{
	uint32_t len = le32(dsdt + 4);

	for (uint32_t i = 36; i + 10 <= len; i++) {
		if (dsdt[i] != 0x08 || memcmp(dsdt + i + 1, "_S5_", 4))
			continue;
		const uint8_t *p = dsdt + i + 5;
		assert_int_equal(p[0], 0x12);  /* PackageOp */
		assert_true(p[1] < 0x40);      /* one-byte PkgLength */
		assert_true(i + 5 + 1 + p[1] <= len);
		assert_true(p[2] >= 2);        /* NumElements */
		/* first element: BytePrefix value, ZeroOp or OneOp */
		if (p[3] == 0x0a)
			return p[4];
		if (p[3] == 0x00 || p[3] == 0x01)
			return p[3];
		fail_msg("unexpected _S5_ element opcode 0x%x", p[3]);
	}
	return -1;
}

static void check_madt(const uint8_t *t, unsigned n)
{
	uint32_t len = le32(t + 4);
	unsigned lapics = 0, ioapics = 0, isos = 0;
	uint8_t seen[256] = { 0 };

	assert_int_equal(le32(t + 36), LAYOUT_LAPIC);
	assert_true(le32(t + 40) & 1); /* PCAT_COMPAT */
	for (uint32_t off = 44; off < len;) {
		const uint8_t *e = t + off;
		assert_true(off + 2 <= len);
		assert_true(e[1] >= 2);
		assert_true(off + e[1] <= len);
		switch (e[0]) {
		case 0: /* Processor Local APIC */
			assert_int_equal(e[1], 8);
			assert_true(le32(e + 4) & 1); /* enabled */
			assert_int_equal(e[3], lapics); /* APIC IDs 0..n-1 in order */
			assert_int_equal(seen[e[2]], 0); /* unique processor UIDs */
			seen[e[2]] = 1;
			lapics++;
			break;
		case 1: /* I/O APIC */
			assert_int_equal(e[1], 12);
			assert_int_equal(le32(e + 4), LAYOUT_IOAPIC);
			assert_int_equal(le32(e + 4), 0xfec00000);
			assert_int_equal(le32(e + 8), 0); /* GSI base */
			ioapics++;
			break;
		case 2: /* Interrupt Source Override */
			assert_int_equal(e[1], 10);
			assert_int_equal(e[2], 0); /* ISA */
			if (e[3] == ACPI_PM_SCI_GSI) {
				assert_int_equal(le32(e + 4), 9);
				assert_int_equal(le16(e + 8) & 3, 1);        /* active high */
				assert_int_equal((le16(e + 8) >> 2) & 3, 3); /* level */
				isos++;
			}
			break;
		case 4: /* Local APIC NMI */
			assert_int_equal(e[1], 6);
			break;
		default:
			fail_msg("unexpected MADT entry type %u", e[0]);
		}
		off += e[1];
	}
	assert_int_equal(lapics, n);
	assert_int_equal(ioapics, 1);
	assert_int_equal(isos, 1);
}

static void build_and_check_cfg(struct fixture *f, const struct acpi_config *c, struct tables *out)
{
	struct acpi_config cfg = *c;
	unsigned n = cfg.nr_cpus;
	struct tables t;
	uint64_t rsdp = 0;

	memset(f->ram, 0xee, GUEST_SIZE);
	assert_int_equal(acpi_build(&f->m, &cfg, &rsdp), 0);
	walk(f, rsdp, &t);
	check_fadt(t.fadt);

	/* FACS: 64 bytes, 64-byte aligned */
	assert_memory_equal(t.facs, "FACS", 4);
	assert_int_equal(le32(t.facs + 4), 64);
	assert_int_equal(t.facs_gpa & 63, 0);
	assert_true(t.facs_gpa >= LAYOUT_ACPI && t.facs_gpa + 64 <= LAYOUT_ACPI + LAYOUT_ACPI_SIZE);

	/* DSDT: _S5_ with the SLP_TYP the PM device powers off on */
	assert_int_equal(dsdt_s5_type(t.dsdt), 5);
	assert_int_equal(dsdt_s5_type(t.dsdt), ACPI_S5_TYPE);

	check_madt(t.madt, n);

	/* tables do not overlap each other or the RSDP */
	const uint8_t *all[] = { t.rsdp, t.xsdt, t.fadt, t.dsdt, t.madt, t.facs, t.mcfg };
	size_t nall = t.mcfg ? 7 : 6;
	for (size_t i = 0; i < nall; i++) {
		size_t li = i == 0 ? 36 : le32(all[i] + 4);
		for (size_t j = i + 1; j < nall; j++) {
			size_t lj = le32(all[j] + 4);
			assert_true(all[i] + li <= all[j] || all[j] + lj <= all[i]);
		}
	}
	/* nothing written outside the ACPI area */
	for (uint64_t a = 0; a < LAYOUT_ACPI; a += 4096)
		assert_int_equal(f->ram[a], 0xee);
	for (uint64_t a = LAYOUT_ACPI + LAYOUT_ACPI_SIZE; a < GUEST_SIZE; a++)
		assert_int_equal(f->ram[a], 0xee);
	*out = t;
}

static void build_and_check(struct fixture *f, unsigned n)
{
	struct acpi_config cfg = { .nr_cpus = n };
	struct tables t;

	build_and_check_cfg(f, &cfg, &t);
	/* no PCI: no MCFG and no PCI0 device */
	assert_null(t.mcfg);
	assert_null(memmem(t.dsdt, le32(t.dsdt + 4), "PCI0", 4));
}

static void test_one_cpu(void **state)
{
	build_and_check(*state, 1);
}

static void test_four_cpus(void **state)
{
	build_and_check(*state, 4);
}

static void test_255_cpus(void **state)
{
	build_and_check(*state, 255);
}

static void test_every_cpu_count(void **state)
{
	for (unsigned n = 1; n <= ACPI_MAX_CPUS; n += 7)
		build_and_check(*state, n);
	build_and_check(*state, 2);
	build_and_check(*state, 254);
}

static void test_pci(void **state)
{
	struct fixture *f = *state;
	struct acpi_config cfg = { .nr_cpus = 2, .pci = true, .mmio64_base = 5ULL << 30,
		                   .mmio64_size = 64ULL << 30 };
	struct tables t;

	build_and_check_cfg(f, &cfg, &t);

	/* MCFG: one allocation, ECAM for bus 0 of segment 0 */
	assert_non_null(t.mcfg);
	assert_int_equal(le32(t.mcfg + 4), 36 + 8 + 16);
	const uint8_t *a = t.mcfg + 44;
	assert_int_equal(le64(a), PCI_ECAM_BASE);
	assert_int_equal(le16(a + 8), 0); /* segment */
	assert_int_equal(a[10], 0);       /* start bus */
	assert_true(a[11] >= a[10]);      /* end bus */
	/* the ECAM window covers exactly the announced buses (1 MiB each) */
	assert_int_equal((uint64_t)(a[11] - a[10] + 1) << 20, PCI_ECAM_SIZE);

	/* DSDT: Device (PCI0) with _HID EISAID("PNP0A08") (PCIe host bridge) */
	uint32_t dlen = le32(t.dsdt + 4);
	const uint8_t dev[] = { 0x5b, 0x82 }; /* DeviceOp */
	const uint8_t *d = memmem(t.dsdt, dlen, dev, 2);
	assert_non_null(d);
	const uint8_t *name = d + 2 + 1 + (d[2] >> 6); /* skip the PkgLength */
	assert_memory_equal(name, "PCI0", 4);
	/* the device's PkgLength stays inside the table */
	uint32_t pkg = d[2] >> 6 ? (d[2] & 0xf) : d[2];
	for (int i = 1; i <= d[2] >> 6; i++)
		pkg |= (uint32_t)d[2 + i] << (4 + 8 * (i - 1));
	assert_true(d + 2 + pkg <= t.dsdt + dlen);
	const uint8_t hid[] = { '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x0a, 0x08 };
	assert_non_null(memmem(t.dsdt, dlen, hid, sizeof(hid)));
	/* _CRS carries the 64-bit window: its minimum and maximum appear as QWords */
	uint8_t lo[8], hi[8];
	for (int i = 0; i < 8; i++) {
		lo[i] = (uint8_t)(cfg.mmio64_base >> (8 * i));
		hi[i] = (uint8_t)((cfg.mmio64_base + cfg.mmio64_size - 1) >> (8 * i));
	}
	assert_non_null(memmem(t.dsdt, dlen, lo, 8));
	assert_non_null(memmem(t.dsdt, dlen, hi, 8));
}

static void test_refused_cpu_counts(void **state)
{
	struct fixture *f = *state;
	struct acpi_config cfg = { .nr_cpus = 0 };
	uint64_t rsdp = 0x1234;

	memset(f->ram, 0xee, GUEST_SIZE);
	assert_int_equal(acpi_build(&f->m, &cfg, &rsdp), -EINVAL);
	cfg.nr_cpus = 256;
	assert_int_equal(acpi_build(&f->m, &cfg, &rsdp), -EINVAL);
	cfg.nr_cpus = 100000;
	assert_int_equal(acpi_build(&f->m, &cfg, &rsdp), -EINVAL);
	cfg.nr_cpus = ~0u;
	assert_int_equal(acpi_build(&f->m, &cfg, &rsdp), -EINVAL);
	assert_int_equal(rsdp, 0x1234);
	assert_int_equal(f->ram[LAYOUT_ACPI], 0xee); /* nothing written */
}

static void test_memory_without_acpi_area(void **state)
{
	struct guest_mem m;
	uint8_t *ram = calloc(1, 512 * 1024);
	struct acpi_config cfg = { .nr_cpus = 1 };
	uint64_t rsdp = 0x1234;

	(void)state;
	assert_non_null(ram);
	mem_init_fake(&m, ram, 512 * 1024, layout_low_limit(512 * 1024));
	assert_int_equal(acpi_build(&m, &cfg, &rsdp), -EFAULT);
	assert_int_equal(rsdp, 0x1234);
	free(ram);
}

static void test_checksum(void **state)
{
	uint8_t b[5] = { 1, 2, 3, 4, 0 };

	(void)state;
	assert_int_equal(acpi_checksum(b, 0), 0);
	assert_int_equal(acpi_checksum(b, 4), 10);
	b[4] = (uint8_t)-10;
	assert_int_equal(acpi_checksum(b, 5), 0);
	uint8_t ff[3] = { 0xff, 0xff, 0x02 };
	assert_int_equal(acpi_checksum(ff, 3), 0); /* wraps mod 256 */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_one_cpu, setup, teardown),
		cmocka_unit_test_setup_teardown(test_four_cpus, setup, teardown),
		cmocka_unit_test_setup_teardown(test_255_cpus, setup, teardown),
		cmocka_unit_test_setup_teardown(test_every_cpu_count, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pci, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused_cpu_counts, setup, teardown),
		cmocka_unit_test(test_memory_without_acpi_area),
		cmocka_unit_test(test_checksum),
	};

	return cmocka_run_group_tests_name("acpi", tests, NULL, NULL);
}
