/* ACPI tables for the guest: RSDP, XSDT, FADT (+FACS), DSDT, MADT. */
#ifndef CVISOR_ARCH_X86_ACPI_H
#define CVISOR_ARCH_X86_ACPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vm/mem.h"

#define ACPI_MAX_CPUS 255 /* xAPIC IDs in MADT type-0 entries */

struct acpi_config {
	unsigned nr_cpus;
	bool pci;             /* describe PCI bus 0 (DSDT PCI0 + MCFG) */
	uint64_t mmio64_base; /* the PCI 64-bit BAR window */
	uint64_t mmio64_size;
};

/* Build the tables into the guest's ACPI area (LAYOUT_ACPI). Returns 0 and
 * the RSDP address, or -ENOSPC / -EFAULT. */
int acpi_build(const struct guest_mem *m, const struct acpi_config *cfg, uint64_t *rsdp);
/* Sum of bytes mod 256 (0 for a valid table); exported for tests. */
uint8_t acpi_checksum(const void *p, size_t len);

#endif
