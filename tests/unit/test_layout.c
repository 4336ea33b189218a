/* Unit tests for the x86 memory map policy and e820 (arch/x86/layout.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/layout.h"
#include "pci/pci.h"
#include "vm/mem.h"

#define MIB (1ULL << 20)
#define GIB (1ULL << 30)

/* Sorted, non-overlapping, non-empty, and every page of RAM the guest has is
 * reported as RAM exactly once; the MMIO hole holds only reserved ranges. */
static void check_sane(const struct guest_mem *m, const struct e820_entry *e, int n)
{
	uint64_t ram = 0;

	assert_true(n > 0 && n <= E820_MAX);
	for (int i = 0; i < n; i++) {
		assert_true(e[i].size > 0);
		assert_true(e[i].addr + e[i].size > e[i].addr); /* no wrap */
		assert_true(e[i].type == E820_RAM || e[i].type == E820_RESERVED);
		if (i > 0)
			assert_true(e[i - 1].addr + e[i - 1].size <= e[i].addr);
		if (e[i].type == E820_RAM) {
			ram += e[i].size;
			/* RAM entries are backed by guest memory */
			if (e[i].addr >= LAYOUT_HIMEM)
				assert_non_null(mem_ptr(m, e[i].addr, e[i].size));
			/* and never in the MMIO hole between the low limit and 4 GiB */
			if (e[i].addr >= mem_low_end(m))
				assert_true(e[i].addr >= LAYOUT_4G);
		} else if (e[i].addr >= mem_low_end(m)) {
			/* reserved ranges above low RAM lie inside the hole */
			assert_true(e[i].addr + e[i].size <= LAYOUT_4G);
		}
	}
	/* all RAM except the EBDA and the BIOS area (0x9fc00..1 MiB) */
	assert_int_equal(ram, m->size - (LAYOUT_HIMEM - LAYOUT_EBDA));
}

/* Drop the reserved ranges in the MMIO hole (PCI ECAM and the like, checked
 * separately), leaving the RAM / low-memory part of the map to compare exactly. */
static int without_hole(const struct guest_mem *m, struct e820_entry *e, int n)
{
	int k = 0;

	for (int i = 0; i < n; i++) {
		if (e[i].type == E820_RESERVED && e[i].addr >= mem_low_end(m) &&
		    e[i].addr < LAYOUT_4G)
			continue;
		e[k++] = e[i];
	}
	return k;
}

/* The PCI ECAM window is reserved, so the guest will use it for MMCONFIG. */
static void check_ecam_reserved(const struct e820_entry *e, int n)
{
	for (int i = 0; i < n; i++) {
		if (e[i].type == E820_RESERVED && e[i].addr <= PCI_ECAM_BASE &&
		    PCI_ECAM_BASE + PCI_ECAM_SIZE <= e[i].addr + e[i].size)
			return;
	}
	fail_msg("the PCI ECAM window is not reserved in the e820 map");
}

static void expect(const struct e820_entry *e, uint64_t addr, uint64_t size, uint32_t type)
{
	assert_int_equal(e->addr, addr);
	assert_int_equal(e->size, size);
	assert_int_equal(e->type, type);
}

static void test_low_limit_policy(void **state)
{
	(void)state;
	assert_int_equal(layout_low_limit(16 * MIB), 0xb0000000ULL);
	assert_int_equal(layout_low_limit(512 * MIB), 0xb0000000ULL);
	assert_int_equal(layout_low_limit(0xb0000000ULL), 0xb0000000ULL); /* 2.75 GiB fits */
	assert_int_equal(layout_low_limit(0xb0000000ULL + 4096), 2 * GIB);
	assert_int_equal(layout_low_limit(3 * GIB), 2 * GIB);
	assert_int_equal(layout_low_limit(64 * GIB), 2 * GIB);
	/* the low limit always leaves the IOAPIC/LAPIC and the 32-bit window free */
	assert_true(layout_low_limit(1) < LAYOUT_MMIO32_END);
	assert_true(LAYOUT_MMIO32_END <= LAYOUT_IOAPIC);
	assert_true(LAYOUT_IOAPIC < LAYOUT_LAPIC);
}

static void test_fixed_areas_do_not_overlap(void **state)
{
	(void)state;
	/* the boot structures live in conventional memory below the EBDA */
	assert_true(LAYOUT_GDT + 4 * 8 <= LAYOUT_PVH_INFO);
	assert_true(LAYOUT_PVH_INFO + 56 <= LAYOUT_PVH_MODLIST);
	assert_true(LAYOUT_PVH_MODLIST + 32 <= LAYOUT_PVH_MEMMAP);
	assert_true(LAYOUT_PVH_MEMMAP + E820_MAX * 24 <= LAYOUT_BOOT_PARAMS);
	assert_true(LAYOUT_BOOT_PARAMS + 0x1000 <= LAYOUT_STACK);
	assert_true(LAYOUT_STACK < LAYOUT_PML4);
	assert_true(LAYOUT_PML4 + 0x1000 <= LAYOUT_PDPT);
	assert_true(LAYOUT_PDPT + 0x1000 <= LAYOUT_PD);
	assert_true(LAYOUT_PD + 4 * 0x1000 <= LAYOUT_CMDLINE);
	assert_true(LAYOUT_CMDLINE + LAYOUT_CMDLINE_MAX <= LAYOUT_EBDA);
	assert_true(LAYOUT_ACPI + LAYOUT_ACPI_SIZE <= LAYOUT_HIMEM);
}

static void test_e820_512m(void **state)
{
	struct guest_mem m;
	struct e820_entry e[E820_MAX];
	uint64_t size = 512 * MIB;

	(void)state;
	assert_int_equal(mem_init(&m, size, layout_low_limit(size)), 0);
	int n = layout_e820(&m, e, E820_MAX);
	check_sane(&m, e, n);
	check_ecam_reserved(e, n);
	for (int i = 0; i < n; i++)
		assert_true(e[i].addr + e[i].size <= LAYOUT_4G); /* nothing above 4 GiB */
	n = without_hole(&m, e, n);
	assert_int_equal(n, 4);
	expect(&e[0], 0, LAYOUT_EBDA, E820_RAM);
	expect(&e[1], LAYOUT_EBDA, 0xa0000 - LAYOUT_EBDA, E820_RESERVED);
	expect(&e[2], LAYOUT_ACPI, LAYOUT_HIMEM - LAYOUT_ACPI, E820_RESERVED);
	expect(&e[3], LAYOUT_HIMEM, size - LAYOUT_HIMEM, E820_RAM);
	mem_free(&m);
}

static void test_e820_3g(void **state)
{
	struct guest_mem m;
	struct e820_entry e[E820_MAX];
	uint64_t size = 3 * GIB;

	(void)state;
	/* MAP_NORESERVE: the 3 GiB are never touched */
	assert_int_equal(mem_init(&m, size, layout_low_limit(size)), 0);
	int n = layout_e820(&m, e, E820_MAX);
	check_sane(&m, e, n);
	check_ecam_reserved(e, n);
	n = without_hole(&m, e, n);
	assert_int_equal(n, 5);
	expect(&e[0], 0, LAYOUT_EBDA, E820_RAM);
	expect(&e[1], LAYOUT_EBDA, 0xa0000 - LAYOUT_EBDA, E820_RESERVED);
	expect(&e[2], LAYOUT_ACPI, LAYOUT_HIMEM - LAYOUT_ACPI, E820_RESERVED);
	expect(&e[3], LAYOUT_HIMEM, 2 * GIB - LAYOUT_HIMEM, E820_RAM);
	expect(&e[4], LAYOUT_4G, 1 * GIB, E820_RAM);
	mem_free(&m);
}

static void test_e820_exactly_at_limit(void **state)
{
	struct guest_mem m;
	struct e820_entry e[E820_MAX];
	uint64_t size = 0xb0000000ULL;

	(void)state;
	assert_int_equal(mem_init(&m, size, layout_low_limit(size)), 0);
	int n = layout_e820(&m, e, E820_MAX);
	check_sane(&m, e, n);
	n = without_hole(&m, e, n);
	assert_int_equal(n, 4);
	expect(&e[3], LAYOUT_HIMEM, size - LAYOUT_HIMEM, E820_RAM);
	mem_free(&m);

	size += 4096;
	assert_int_equal(mem_init(&m, size, layout_low_limit(size)), 0);
	n = layout_e820(&m, e, E820_MAX);
	check_sane(&m, e, n);
	n = without_hole(&m, e, n);
	assert_int_equal(n, 5);
	expect(&e[3], LAYOUT_HIMEM, 2 * GIB - LAYOUT_HIMEM, E820_RAM);
	expect(&e[4], LAYOUT_4G, size - 2 * GIB, E820_RAM);
	mem_free(&m);
}

static void test_e820_min_memory(void **state)
{
	struct guest_mem m;
	struct e820_entry e[E820_MAX];
	uint64_t size = 16 * MIB;

	(void)state;
	assert_int_equal(mem_init(&m, size, layout_low_limit(size)), 0);
	int n = layout_e820(&m, e, E820_MAX);
	check_sane(&m, e, n);
	n = without_hole(&m, e, n);
	assert_int_equal(n, 4);
	expect(&e[3], LAYOUT_HIMEM, 15 * MIB, E820_RAM);
	mem_free(&m);
}

static void test_pci_windows_in_hole(void **state)
{
	(void)state;
	/* the PCI windows sit in the hole above the largest low limit, below the IOAPIC */
	assert_true(PCI_MMIO32_BASE >= layout_low_limit(1));
	assert_true(PCI_MMIO32_BASE >= layout_low_limit(64 * GIB));
	assert_true(PCI_MMIO32_BASE + PCI_MMIO32_SIZE <= PCI_ECAM_BASE ||
	            PCI_ECAM_BASE + PCI_ECAM_SIZE <= PCI_MMIO32_BASE);
	assert_true(PCI_ECAM_BASE >= layout_low_limit(1));
	assert_true(PCI_ECAM_BASE + PCI_ECAM_SIZE <= LAYOUT_MMIO32_END);
	assert_true(PCI_MMIO32_BASE + PCI_MMIO32_SIZE <= LAYOUT_MMIO32_END);
}

static void test_mmio64_base(void **state)
{
	struct guest_mem m;

	(void)state;
	/* all RAM below 4 GiB: the window starts at 4 GiB */
	assert_int_equal(mem_init(&m, 512 * MIB, layout_low_limit(512 * MIB)), 0);
	assert_int_equal(layout_mmio64_base(&m), LAYOUT_4G);
	mem_free(&m);
	/* 3 GiB: 1 GiB at 4 GiB, window at 5 GiB */
	assert_int_equal(mem_init(&m, 3 * GIB, layout_low_limit(3 * GIB)), 0);
	assert_int_equal(layout_mmio64_base(&m), 5 * GIB);
	mem_free(&m);
	/* RAM ending mid-gigabyte: rounded up, never overlapping RAM */
	uint64_t size = 3 * GIB + 4096;
	assert_int_equal(mem_init(&m, size, layout_low_limit(size)), 0);
	assert_int_equal(layout_mmio64_base(&m), 6 * GIB);
	assert_null(mem_ptr(&m, layout_mmio64_base(&m), 1));
	mem_free(&m);
}

static void test_e820_max_truncates(void **state)
{
	struct guest_mem m;
	struct e820_entry e[E820_MAX];
	uint64_t size = 3 * GIB;

	(void)state;
	assert_int_equal(mem_init(&m, size, layout_low_limit(size)), 0);
	memset(e, 0xee, sizeof(e));
	assert_int_equal(layout_e820(&m, e, 2), 2);
	expect(&e[0], 0, LAYOUT_EBDA, E820_RAM);
	expect(&e[1], LAYOUT_EBDA, 0xa0000 - LAYOUT_EBDA, E820_RESERVED);
	/* nothing written past max */
	assert_int_equal(e[2].type, 0xeeeeeeeeU);
	assert_int_equal(layout_e820(&m, e, 0), 0);
	mem_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_low_limit_policy),
		cmocka_unit_test(test_fixed_areas_do_not_overlap),
		cmocka_unit_test(test_e820_512m),
		cmocka_unit_test(test_e820_3g),
		cmocka_unit_test(test_e820_exactly_at_limit),
		cmocka_unit_test(test_e820_min_memory),
		cmocka_unit_test(test_e820_max_truncates),
		cmocka_unit_test(test_pci_windows_in_hole),
		cmocka_unit_test(test_mmio64_base),
	};

	return cmocka_run_group_tests_name("layout", tests, NULL, NULL);
}
