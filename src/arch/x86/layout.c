/* Memory map policy and e820. */
#include "arch/x86/layout.h"

#include "pci/pci.h"

uint64_t layout_low_limit(uint64_t mem_size)
{
	return mem_size <= 0xb0000000ULL ? 0xb0000000ULL : 0x80000000ULL;
}

int layout_e820(const struct guest_mem *m, struct e820_entry *e, int max)
{
	struct e820_entry map[E820_MAX];
	int n = 0;
	uint64_t low = mem_low_end(m);

	map[n++] = (struct e820_entry){ 0, LAYOUT_EBDA, E820_RAM };
	map[n++] = (struct e820_entry){ LAYOUT_EBDA, 0xa0000 - LAYOUT_EBDA, E820_RESERVED };
	map[n++] = (struct e820_entry){ LAYOUT_ACPI, LAYOUT_HIMEM - LAYOUT_ACPI, E820_RESERVED };
	if (low > LAYOUT_HIMEM)
		map[n++] = (struct e820_entry){ LAYOUT_HIMEM, low - LAYOUT_HIMEM, E820_RAM };
	map[n++] = (struct e820_entry){ PCI_ECAM_BASE, PCI_ECAM_SIZE, E820_RESERVED };
	for (int i = 1; i < m->nr_regions; i++)
		map[n++] = (struct e820_entry){ m->regions[i].gpa, m->regions[i].len, E820_RAM };
	if (n > max)
		n = max;
	for (int i = 0; i < n; i++)
		e[i] = map[i];
	return n;
}

uint64_t layout_mmio64_base(const struct guest_mem *m)
{
	uint64_t end = LAYOUT_4G;
	for (int i = 1; i < m->nr_regions; i++)
		end = m->regions[i].gpa + m->regions[i].len;
	return (end + (1ULL << 30) - 1) & ~((1ULL << 30) - 1);
}
