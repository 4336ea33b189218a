/* x86 guest physical memory map: where boot structures, ACPI tables and the
 * MMIO hole live, and the e820 map that describes it to the guest.
 *
 *   0x000500  GDT                    0x006000  PVH start_info, module list, memmap
 *   0x007000  boot_params (zero page) 0x009000  page tables (PML4, PDPT, 4 PDs)
 *   0x020000  kernel command line     0x09fc00  EBDA (reserved)
 *   0x0e0000  ACPI tables, RSDP first (reserved up to 1 MiB)
 *   0x100000  bzImage protected-mode kernel; RAM up to the low limit
 *   low limit .. 4 GiB: MMIO hole (PCI window, ECAM, IOAPIC, LAPIC)
 *   4 GiB ..  the rest of RAM
 */
#ifndef CVISOR_ARCH_X86_LAYOUT_H
#define CVISOR_ARCH_X86_LAYOUT_H

#include <stdint.h>

#include "vm/mem.h"

#define LAYOUT_GDT 0x500ULL
#define LAYOUT_PVH_INFO 0x6000ULL
#define LAYOUT_PVH_MODLIST 0x6100ULL
#define LAYOUT_PVH_MEMMAP 0x6200ULL
#define LAYOUT_BOOT_PARAMS 0x7000ULL
#define LAYOUT_PML4 0x9000ULL
#define LAYOUT_PDPT 0xa000ULL
#define LAYOUT_PD 0xb000ULL /* four pages: identity map of 4 GiB in 2 MiB pages */
#define LAYOUT_STACK 0x8ff0ULL
#define LAYOUT_CMDLINE 0x20000ULL
#define LAYOUT_CMDLINE_MAX 0x10000ULL
#define LAYOUT_EBDA 0x9fc00ULL
#define LAYOUT_ACPI 0xe0000ULL
#define LAYOUT_ACPI_SIZE 0x20000ULL
#define LAYOUT_HIMEM 0x100000ULL
#define LAYOUT_4G 0x100000000ULL
#define LAYOUT_IOAPIC 0xfec00000ULL
#define LAYOUT_LAPIC 0xfee00000ULL
#define LAYOUT_MMIO32_END 0xfe000000ULL /* IOAPIC/LAPIC/BIOS area above */

#define E820_RAM 1
#define E820_RESERVED 2
#define E820_MAX 32

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
};

/* RAM below 4 GiB for a guest of mem_size bytes: all of it up to 2.75 GiB,
 * else 2 GiB, leaving the 32-bit MMIO window above (as QEMU's q35 does). */
uint64_t layout_low_limit(uint64_t mem_size);
/* Start of the 64-bit PCI window: above all RAM, 1 GiB aligned. */
uint64_t layout_mmio64_base(const struct guest_mem *m);
/* Fill the e820 map for the guest memory; returns the number of entries. */
int layout_e820(const struct guest_mem *m, struct e820_entry *e, int max);

#endif
