/* Guest physical memory: one host mapping split into up to two guest ranges
 * (below the 32-bit MMIO hole and above 4 GiB). Every access to guest memory
 * goes through mem_ptr()/mem_read()/mem_write(), which check (gpa, len). */
#ifndef CVISOR_VM_MEM_H
#define CVISOR_VM_MEM_H

#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>

#define MEM_MAX_REGIONS 2

struct mem_region {
	uint64_t gpa;
	uint64_t len;
	uint8_t *hva;
};

struct guest_mem {
	uint8_t *base; /* whole mapping */
	uint64_t size; /* total RAM bytes */
	struct mem_region regions[MEM_MAX_REGIONS];
	int nr_regions;
	int owned; /* mapping made by mem_init, unmapped by mem_free */
	/* Pages the VMM's devices may have written (live migration), one bit per
	 * 4 KiB of the host mapping; NULL when nobody tracks. KVM's dirty log only
	 * sees the vCPUs' writes. */
	_Atomic(uint64_t *) dev_dirty;
};

/* Note that a device may write [gpa, gpa+len) (no-op unless tracking). */
void mem_mark_dirty(const struct guest_mem *m, uint64_t gpa, uint64_t len);

/* Map size bytes of anonymous memory and lay it out: RAM below low_limit from
 * gpa 0, the rest from 4 GiB. 0 or -errno. */
int mem_init(struct guest_mem *m, uint64_t size, uint64_t low_limit);
/* Map guest memory privately from a snapshot's memory file (copy-on-write,
 * loaded lazily by page faults). The file must be exactly size bytes. */
int mem_init_file(struct guest_mem *m, uint64_t size, uint64_t low_limit, int fd);
/* Lay out caller-provided memory (unit tests' fake guest memory); not unmapped by mem_free. */
void mem_init_fake(struct guest_mem *m, uint8_t *buf, uint64_t size, uint64_t low_limit);
/* Unmap. */
void mem_free(struct guest_mem *m);
/* Host pointer for [gpa, gpa+len) if it lies inside one RAM region, else NULL. */
void *mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len);
/* Copy out of / into guest memory; -EFAULT when the range is not RAM. */
int mem_read(const struct guest_mem *m, uint64_t gpa, void *buf, size_t len);
int mem_write(const struct guest_mem *m, uint64_t gpa, const void *buf, size_t len);
/* Highest guest-physical address + 1 of RAM below 4 GiB. */
uint64_t mem_low_end(const struct guest_mem *m);

#endif
