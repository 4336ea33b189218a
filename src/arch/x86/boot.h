/* Kernel loading: Linux bzImage through the x86 boot protocol's 64-bit entry,
 * and ELF vmlinux through its PVH entry note (Xen's hvm_start_info). */
#ifndef CVISOR_ARCH_X86_BOOT_H
#define CVISOR_ARCH_X86_BOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vm/mem.h"

enum boot_kind { BOOT_BZIMAGE64, BOOT_PVH };

struct boot_setup {
	enum boot_kind kind;
	uint64_t entry;  /* guest-physical entry point */
	uint64_t params; /* boot_params (rsi) for bzImage, start_info (rbx) for PVH */
	uint64_t kernel_end;
	uint64_t initrd_addr;
};

/* Which kind of kernel image this is: 0 with *kind set, or -ENOEXEC with a reason. */
int boot_probe(const uint8_t *k, size_t klen, enum boot_kind *kind, char *err, size_t errlen);
/* Load kernel, initrd (may be NULL) and command line into guest memory, write
 * the boot structures (boot_params or start_info, e820 map, page tables, GDT)
 * and describe the entry. rsdp is the ACPI RSDP address handed to the kernel.
 * Returns 0, or -ENOEXEC (not a usable kernel), -E2BIG (does not fit: more
 * memory needed, or command line too long) with a one-line reason in err. */
int boot_load(const struct guest_mem *m, const uint8_t *kernel, size_t klen,
              const uint8_t *initrd, size_t ilen, const char *cmdline, uint64_t rsdp,
              struct boot_setup *out, char *err, size_t errlen);

#endif
