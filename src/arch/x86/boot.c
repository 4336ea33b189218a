/* Linux x86 boot protocol (Documentation/x86/boot.rst) and PVH boot.
 *
 * bzImage: the setup header at 0x1f1 is copied into a zeroed boot_params at
 * LAYOUT_BOOT_PARAMS, the protected-mode part goes to 1 MiB, and the vCPU
 * starts in 64-bit mode at load address + 0x200 with rsi = boot_params and an
 * identity map of the low 4 GiB (built here too).
 * PVH: PT_LOAD segments go to their physical addresses and the vCPU starts in
 * flat 32-bit protected mode at the XEN_ELFNOTE_PHYS32_ENTRY address with
 * ebx = hvm_start_info.
 * The kernel file is untrusted input: every offset and size read from it is
 * checked against the file and every write goes through mem_write(). */
#include "arch/x86/boot.h"

#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "arch/x86/layout.h"

/* setup header offsets (boot.rst) */
#define HDR_SETUP_SECTS 0x1f1
#define HDR_BOOT_FLAG 0x1fe
#define HDR_JUMP 0x200
#define HDR_MAGIC 0x202
#define HDR_VERSION 0x206
#define HDR_TYPE_OF_LOADER 0x210
#define HDR_LOADFLAGS 0x211
#define HDR_RAMDISK_IMAGE 0x218
#define HDR_RAMDISK_SIZE 0x21c
#define HDR_HEAP_END_PTR 0x224
#define HDR_CMD_LINE_PTR 0x228
#define HDR_INITRD_ADDR_MAX 0x22c
#define HDR_KERNEL_ALIGNMENT 0x230
#define HDR_RELOCATABLE 0x234
#define HDR_XLOADFLAGS 0x236
#define HDR_CMDLINE_SIZE 0x238
#define HDR_PREF_ADDRESS 0x258
#define HDR_INIT_SIZE 0x260

/* boot_params offsets */
#define BP_ACPI_RSDP_ADDR 0x070
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE 0x0c4
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_E820_TABLE 0x2d0
#define BP_E820_MAX 128
#define BP_SIZE 0x1000

#define LOADED_HIGH 0x01
#define CAN_USE_HEAP 0x80
#define XLF_KERNEL_64 0x01

#define PVH_MAGIC 0x336ec578
#define XEN_ELFNOTE_PHYS32_ENTRY 18

#define KERNEL_ADDR 0x100000ULL

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr16(uint8_t *p, uint16_t v)
{
	p[0] = v;
	p[1] = v >> 8;
}

static void wr32(uint8_t *p, uint32_t v)
{
	wr16(p, (uint16_t)v);
	wr16(p + 2, (uint16_t)(v >> 16));
}

static void wr64(uint8_t *p, uint64_t v)
{
	wr32(p, (uint32_t)v);
	wr32(p + 4, (uint32_t)(v >> 32));
}

static bool is_bzimage(const uint8_t *k, size_t klen)
{
	return klen >= 0x300 && rd16(k + HDR_BOOT_FLAG) == 0xaa55 && !memcmp(k + HDR_MAGIC, "HdrS", 4);
}

static bool is_elf64(const uint8_t *k, size_t klen)
{
	return klen >= sizeof(Elf64_Ehdr) && !memcmp(k, ELFMAG, SELFMAG) &&
	       k[EI_CLASS] == ELFCLASS64 && k[EI_DATA] == ELFDATA2LSB;
}

int boot_probe(const uint8_t *k, size_t klen, enum boot_kind *kind, char *err, size_t errlen)
{
	if (is_bzimage(k, klen)) {
		*kind = BOOT_BZIMAGE64;
		return 0;
	}
	if (is_elf64(k, klen)) {
		*kind = BOOT_PVH;
		return 0;
	}
	snprintf(err, errlen, "is neither a Linux bzImage nor a 64-bit ELF kernel");
	return -ENOEXEC;
}

/* Identity-map 0..4 GiB with 2 MiB pages, and a flat GDT (boot protocol selectors:
 * 0x10 code, 0x18 data). */
static int write_page_tables_and_gdt(const struct guest_mem *m)
{
	uint64_t pml4[512] = { 0 }, pdpt[512] = { 0 }, pd[512];
	static const uint64_t gdt[4] = { 0, 0, 0x00af9b000000ffffULL, 0x00cf93000000ffffULL };

	pml4[0] = LAYOUT_PDPT | 0x3;
	for (int i = 0; i < 4; i++) {
		pdpt[i] = (LAYOUT_PD + i * 0x1000ULL) | 0x3;
		for (int j = 0; j < 512; j++)
			pd[j] = ((uint64_t)i << 30 | (uint64_t)j << 21) | 0x83;
		if (mem_write(m, LAYOUT_PD + i * 0x1000ULL, pd, sizeof(pd)))
			return -EFAULT;
	}
	if (mem_write(m, LAYOUT_PML4, pml4, sizeof(pml4)) ||
	    mem_write(m, LAYOUT_PDPT, pdpt, sizeof(pdpt)) ||
	    mem_write(m, LAYOUT_GDT, gdt, sizeof(gdt)))
		return -EFAULT;
	return 0;
}

/* Place the initrd as high as allowed below limit, above kernel_end. */
static int place_initrd(const struct guest_mem *m, size_t ilen, uint64_t kernel_end,
                        uint64_t limit, uint64_t *addr, char *err, size_t errlen)
{
	uint64_t top = mem_low_end(m);

	if (limit < top)
		top = limit;
	if (ilen > top || ((top - ilen) & ~0xfffULL) < kernel_end) {
		snprintf(err, errlen,
		         "initrd (%zu MiB) does not fit in guest memory with the kernel; "
		         "give the guest more --memory",
		         ilen >> 20);
		return -E2BIG;
	}
	*addr = (top - ilen) & ~0xfffULL;
	return 0;
}

static int write_cmdline(const struct guest_mem *m, const char *cmdline, size_t max,
                         char *err, size_t errlen)
{
	size_t len = strlen(cmdline) + 1;

	if (len > max) {
		snprintf(err, errlen, "kernel command line is %zu bytes; this kernel takes at most %zu",
		         len - 1, max - 1);
		return -E2BIG;
	}
	return mem_write(m, LAYOUT_CMDLINE, cmdline, len);
}

static int load_bzimage(const struct guest_mem *m, const uint8_t *k, size_t klen,
                        const uint8_t *initrd, size_t ilen, const char *cmdline,
                        uint64_t rsdp, struct boot_setup *out, char *err, size_t errlen)
{
	uint8_t bp[BP_SIZE] = { 0 };
	uint16_t version = rd16(k + HDR_VERSION);
	unsigned setup_sects = k[HDR_SETUP_SECTS] ? k[HDR_SETUP_SECTS] : 4;
	size_t setup_size = (setup_sects + 1) * 512ULL;
	size_t hdr_end = HDR_JUMP + 2 + k[HDR_JUMP + 1]; /* jump offset says where the header ends */
	struct e820_entry e820[E820_MAX];
	uint64_t initrd_addr = 0;
	int rc;

	if (version < 0x020c || !(rd16(k + HDR_XLOADFLAGS) & XLF_KERNEL_64)) {
		snprintf(err, errlen,
		         "bzImage boot protocol %u.%02u has no 64-bit entry (need 2.12 or later)",
		         version >> 8, version & 0xff);
		return -ENOEXEC;
	}
	if (setup_size >= klen || hdr_end > 0x300 || hdr_end > klen) {
		snprintf(err, errlen, "bzImage is truncated or its setup header is malformed");
		return -ENOEXEC;
	}
	size_t pm_size = klen - setup_size;
	uint32_t init_size = rd32(k + HDR_INIT_SIZE);
	uint64_t need = KERNEL_ADDR + (init_size > pm_size ? init_size : pm_size);
	/* A relocatable kernel decompresses at its preferred address (16 MiB). */
	uint64_t pref = rd32(k + HDR_PREF_ADDRESS) | (uint64_t)rd32(k + HDR_PREF_ADDRESS + 4) << 32;
	if (pref > KERNEL_ADDR && pref < LAYOUT_4G && pref + init_size > need)
		need = pref + init_size;
	if (need > mem_low_end(m)) {
		snprintf(err, errlen, "guest memory is too small for this kernel (needs %llu MiB)",
		         (unsigned long long)(need >> 20) + 1);
		return -E2BIG;
	}
	if (mem_write(m, KERNEL_ADDR, k + setup_size, pm_size))
		return -EFAULT;

	if (initrd) {
		rc = place_initrd(m, ilen, need, (uint64_t)rd32(k + HDR_INITRD_ADDR_MAX) + 1,
		                  &initrd_addr, err, errlen);
		if (rc)
			return rc;
		if (mem_write(m, initrd_addr, initrd, ilen))
			return -EFAULT;
	}
	size_t cmax = rd32(k + HDR_CMDLINE_SIZE) + 1ULL;
	if (cmax > LAYOUT_CMDLINE_MAX)
		cmax = LAYOUT_CMDLINE_MAX;
	rc = write_cmdline(m, cmdline, cmax, err, errlen);
	if (rc)
		return rc;

	memcpy(bp + HDR_SETUP_SECTS, k + HDR_SETUP_SECTS, hdr_end - HDR_SETUP_SECTS);
	bp[HDR_TYPE_OF_LOADER] = 0xff;
	bp[HDR_LOADFLAGS] |= LOADED_HIGH | CAN_USE_HEAP;
	wr16(bp + HDR_HEAP_END_PTR, 0xfe00);
	wr32(bp + HDR_CMD_LINE_PTR, (uint32_t)LAYOUT_CMDLINE);
	wr32(bp + BP_EXT_CMD_LINE_PTR, 0);
	wr32(bp + HDR_RAMDISK_IMAGE, (uint32_t)initrd_addr);
	wr32(bp + HDR_RAMDISK_SIZE, (uint32_t)ilen);
	wr32(bp + BP_EXT_RAMDISK_IMAGE, (uint32_t)(initrd_addr >> 32));
	wr32(bp + BP_EXT_RAMDISK_SIZE, (uint32_t)((uint64_t)ilen >> 32));
	wr64(bp + BP_ACPI_RSDP_ADDR, rsdp);
	int n = layout_e820(m, e820, E820_MAX);
	bp[BP_E820_ENTRIES] = (uint8_t)n;
	for (int i = 0; i < n; i++) {
		uint8_t *p = bp + BP_E820_TABLE + i * 20;
		wr64(p, e820[i].addr);
		wr64(p + 8, e820[i].size);
		wr32(p + 16, e820[i].type);
	}
	if (mem_write(m, LAYOUT_BOOT_PARAMS, bp, sizeof(bp)))
		return -EFAULT;
	rc = write_page_tables_and_gdt(m);
	if (rc)
		return rc;

	*out = (struct boot_setup){ BOOT_BZIMAGE64, KERNEL_ADDR + 0x200, LAYOUT_BOOT_PARAMS, need,
		                    initrd_addr };
	return 0;
}

/* Find the PVH entry in the ELF notes; 0 if absent or malformed. */
static uint64_t elf_pvh_entry(const uint8_t *k, size_t klen, const Elf64_Ehdr *eh)
{
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		Elf64_Phdr ph;
		memcpy(&ph, k + eh->e_phoff + (size_t)i * sizeof(ph), sizeof(ph));
		if (ph.p_type != PT_NOTE || ph.p_offset > klen || ph.p_filesz > klen - ph.p_offset)
			continue;
		const uint8_t *p = k + ph.p_offset;
		size_t left = ph.p_filesz;
		while (left >= 12) {
			uint32_t namesz = rd32(p), descsz = rd32(p + 4), type = rd32(p + 8);
			size_t nlen = (namesz + 3ULL) & ~3ULL, dlen = (descsz + 3ULL) & ~3ULL;
			if (nlen > left - 12 || dlen > left - 12 - nlen)
				break;
			const uint8_t *name = p + 12, *desc = name + nlen;
			if (type == XEN_ELFNOTE_PHYS32_ENTRY && namesz == 4 && !memcmp(name, "Xen", 4)) {
				if (descsz == 4)
					return rd32(desc);
				if (descsz == 8)
					return rd32(desc) | (uint64_t)rd32(desc + 4) << 32;
			}
			p += 12 + nlen + dlen;
			left -= 12 + nlen + dlen;
		}
	}
	return 0;
}

static int load_pvh(const struct guest_mem *m, const uint8_t *k, size_t klen,
                    const uint8_t *initrd, size_t ilen, const char *cmdline, uint64_t rsdp,
                    struct boot_setup *out, char *err, size_t errlen)
{
	Elf64_Ehdr eh;
	uint64_t kernel_end = 0, initrd_addr = 0;
	int rc;

	memcpy(&eh, k, sizeof(eh));
	if (eh.e_machine != EM_X86_64 || eh.e_phentsize != sizeof(Elf64_Phdr) ||
	    eh.e_phoff > klen || (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > klen - eh.e_phoff) {
		snprintf(err, errlen, "is not a well-formed x86-64 ELF kernel");
		return -ENOEXEC;
	}
	uint64_t entry = elf_pvh_entry(k, klen, &eh);
	if (!entry || entry >= LAYOUT_4G) {
		snprintf(err, errlen, "ELF kernel has no PVH entry note (needs CONFIG_PVH=y)");
		return -ENOEXEC;
	}
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		memcpy(&ph, k + eh.e_phoff + (size_t)i * sizeof(ph), sizeof(ph));
		if (ph.p_type != PT_LOAD)
			continue;
		if (ph.p_offset > klen || ph.p_filesz > klen - ph.p_offset || ph.p_filesz > ph.p_memsz) {
			snprintf(err, errlen, "ELF kernel has a segment outside the file");
			return -ENOEXEC;
		}
		uint8_t *dst = mem_ptr(m, ph.p_paddr, ph.p_memsz);
		if (!dst || ph.p_paddr < LAYOUT_HIMEM) {
			snprintf(err, errlen,
			         "ELF kernel segment at 0x%llx (%llu KiB) is outside guest RAM; "
			         "give the guest more --memory",
			         (unsigned long long)ph.p_paddr, (unsigned long long)ph.p_memsz >> 10);
			return -E2BIG;
		}
		memcpy(dst, k + ph.p_offset, ph.p_filesz);
		memset(dst + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz);
		if (ph.p_paddr + ph.p_memsz > kernel_end)
			kernel_end = ph.p_paddr + ph.p_memsz;
	}
	if (!kernel_end) {
		snprintf(err, errlen, "ELF kernel has no loadable segments");
		return -ENOEXEC;
	}
	/* room for the kernel's own early allocations (page tables, brk) after its image */
	uint64_t need = kernel_end + (8ULL << 20);
	if (need > mem_low_end(m)) {
		snprintf(err, errlen, "guest memory is too small for this kernel (needs %llu MiB)",
		         (unsigned long long)(need >> 20) + 1);
		return -E2BIG;
	}
	if (initrd) {
		rc = place_initrd(m, ilen, need, LAYOUT_4G, &initrd_addr, err, errlen);
		if (rc)
			return rc;
		if (mem_write(m, initrd_addr, initrd, ilen))
			return -EFAULT;
	}
	rc = write_cmdline(m, cmdline, 2048, err, errlen);
	if (rc)
		return rc;

	/* hvm_start_info version 1, module list, memory map */
	struct e820_entry e820[E820_MAX];
	int n = layout_e820(m, e820, E820_MAX);
	uint8_t info[56] = { 0 }, mod[32] = { 0 }, map[E820_MAX * 24];
	memset(map, 0, sizeof(map));
	wr32(info, PVH_MAGIC);
	wr32(info + 4, 1);
	wr32(info + 12, initrd ? 1 : 0);
	wr64(info + 16, initrd ? LAYOUT_PVH_MODLIST : 0);
	wr64(info + 24, LAYOUT_CMDLINE);
	wr64(info + 32, rsdp);
	wr64(info + 40, LAYOUT_PVH_MEMMAP);
	wr32(info + 48, (uint32_t)n);
	wr64(mod, initrd_addr);
	wr64(mod + 8, ilen);
	for (int i = 0; i < n; i++) {
		wr64(map + i * 24, e820[i].addr);
		wr64(map + i * 24 + 8, e820[i].size);
		wr32(map + i * 24 + 16, e820[i].type);
	}
	if (mem_write(m, LAYOUT_PVH_INFO, info, sizeof(info)) ||
	    mem_write(m, LAYOUT_PVH_MODLIST, mod, sizeof(mod)) ||
	    mem_write(m, LAYOUT_PVH_MEMMAP, map, (size_t)n * 24))
		return -EFAULT;
	rc = write_page_tables_and_gdt(m); /* only the GDT is used: PVH starts unpaged */
	if (rc)
		return rc;
	*out = (struct boot_setup){ BOOT_PVH, entry, LAYOUT_PVH_INFO, need, initrd_addr };
	return 0;
}

int boot_load(const struct guest_mem *m, const uint8_t *kernel, size_t klen,
              const uint8_t *initrd, size_t ilen, const char *cmdline, uint64_t rsdp,
              struct boot_setup *out, char *err, size_t errlen)
{
	enum boot_kind kind;
	int rc = boot_probe(kernel, klen, &kind, err, errlen);

	if (rc)
		return rc;
	if (initrd && ilen > 0xffffffffULL) {
		snprintf(err, errlen, "initrd larger than 4 GiB is not supported");
		return -E2BIG;
	}
	if (kind == BOOT_BZIMAGE64)
		rc = load_bzimage(m, kernel, klen, initrd, ilen, cmdline, rsdp, out, err, errlen);
	else
		rc = load_pvh(m, kernel, klen, initrd, ilen, cmdline, rsdp, out, err, errlen);
	if (rc == -EFAULT)
		snprintf(err, errlen, "guest memory is too small for the boot structures");
	return rc;
}
