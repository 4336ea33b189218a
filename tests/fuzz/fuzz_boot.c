/* libFuzzer target for kernel loading (arch/x86/boot.c): the input is an
 * untrusted kernel file plus an initrd, loaded into fake guest memory.
 *
 * Input: [mode] [kernel bytes ...] [initrd bytes ...] [initrd length]
 *   The last byte is the initrd length n (0 = no initrd); the n bytes before it
 *   are the initrd, everything between mode and initrd is the kernel part.
 *   mode bits 0-1: 0/3 the kernel part is the kernel file as is;
 *                  1 a valid synthetic bzImage patched by the kernel part;
 *                  2 a valid synthetic PVH ELF patched by the kernel part.
 *                  (a patch is 3 bytes: 16-bit offset modulo the image size, value)
 *   mode bits 2-3: guest RAM size: 32 MiB, 20 MiB, 1 MiB + 64 KiB, 48 KiB
 *   mode bit 4:    a command line longer than any kernel accepts
 *   mode bit 5:    truncate the patched template by the first patch's offset
 * Templates make the deep paths reachable without a seed corpus; raw mode
 * covers everything else. Oracles: only the documented error codes, a
 * non-empty error line on failure, and on success an entry, kernel end and
 * initrd that lie inside guest RAM with the initrd bytes actually there. */
#include <elf.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/boot.h"
#include "arch/x86/layout.h"
#include "vm/mem.h"

#define RAM_MAX (32u << 20)
#define RSDP 0xe0000

static uint8_t *ram;
static uint8_t bz_tmpl[5 * 512 + 4096];
static uint8_t elf_tmpl[512];
static char long_cmdline[70000];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static void build_templates(void)
{
	uint8_t *k = bz_tmpl;

	/* bzImage: 4 setup sectors + 4 KiB protected-mode part, protocol 2.15 */
	memset(k, 0, sizeof(bz_tmpl));
	k[0x1f1] = 4;
	put16(k + 0x1fe, 0xaa55);
	k[0x200] = 0xeb;
	k[0x201] = 0x6a;
	memcpy(k + 0x202, "HdrS", 4);
	put16(k + 0x206, 0x020f);
	k[0x211] = 0x01;
	put32(k + 0x22c, 0x7fffffff); /* initrd_addr_max */
	put32(k + 0x230, 0x200000);
	k[0x234] = 1;
	put16(k + 0x236, 0x1);        /* XLF_KERNEL_64 */
	put32(k + 0x238, 255);        /* cmdline_size */
	put64(k + 0x258, 0x1000000);  /* pref_address */
	put32(k + 0x260, 0x100000);   /* init_size */
	for (size_t i = 5 * 512; i < sizeof(bz_tmpl); i++)
		k[i] = (uint8_t)(i * 7);

	/* ELF64: ehdr, PT_LOAD + PT_NOTE, Xen PHYS32_ENTRY note at 176, segment at 256 */
	k = elf_tmpl;
	memset(k, 0, sizeof(elf_tmpl));
	Elf64_Ehdr eh = { 0 };
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS64;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	eh.e_type = ET_EXEC;
	eh.e_machine = EM_X86_64;
	eh.e_version = EV_CURRENT;
	eh.e_phoff = sizeof(Elf64_Ehdr);
	eh.e_ehsize = sizeof(Elf64_Ehdr);
	eh.e_phentsize = sizeof(Elf64_Phdr);
	eh.e_phnum = 2;
	memcpy(k, &eh, sizeof(eh));
	Elf64_Phdr ph[2] = {
		{ .p_type = PT_LOAD, .p_offset = 256, .p_paddr = 0x100000, .p_filesz = 256,
		  .p_memsz = 0x2000 },
		{ .p_type = PT_NOTE, .p_offset = 176, .p_filesz = 20 },
	};
	memcpy(k + sizeof(eh), ph, sizeof(ph));
	put32(k + 176, 4);  /* namesz */
	put32(k + 180, 4);  /* descsz */
	put32(k + 184, 18); /* XEN_ELFNOTE_PHYS32_ENTRY */
	memcpy(k + 188, "Xen", 4);
	put32(k + 192, 0x100010);
	for (size_t i = 256; i < sizeof(elf_tmpl); i++)
		k[i] = (uint8_t)(i * 13);

	memset(long_cmdline, 'x', sizeof(long_cmdline) - 1);
	long_cmdline[sizeof(long_cmdline) - 1] = '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t ram_sizes[4] = { 32u << 20, 20u << 20, (1u << 20) + (64u << 10),
		                               48u << 10 };
	struct guest_mem m;
	struct boot_setup out;
	char err[256];

	if (!ram) {
		ram = calloc(1, RAM_MAX);
		if (!ram)
			abort();
		build_templates();
	}
	if (size < 2)
		return 0;

	uint8_t mode = data[0];
	size_t body = size - 2;
	size_t ilen = data[size - 1];
	if (ilen > body)
		ilen = body;
	const uint8_t *kpart = data + 1;
	size_t kpart_len = body - ilen;

	/* the image boot_load sees, in a buffer of exactly its size (ASan catches overreads) */
	const uint8_t *tmpl = NULL;
	size_t klen = kpart_len;
	if ((mode & 3) == 1) {
		tmpl = bz_tmpl;
		klen = sizeof(bz_tmpl);
	} else if ((mode & 3) == 2) {
		tmpl = elf_tmpl;
		klen = sizeof(elf_tmpl);
	}
	uint8_t *kernel = malloc(klen ? klen : 1);
	if (!kernel)
		abort();
	if (tmpl) {
		memcpy(kernel, tmpl, klen);
		for (size_t i = 0; i + 3 <= kpart_len; i += 3)
			kernel[(kpart[i] | kpart[i + 1] << 8) % klen] = kpart[i + 2];
		if ((mode & 0x20) && kpart_len >= 2)
			klen -= (kpart[0] | kpart[1] << 8) % klen;
	} else {
		memcpy(kernel, kpart, klen);
	}
	uint8_t *initrd = NULL;
	if (ilen) {
		initrd = malloc(ilen);
		if (!initrd)
			abort();
		memcpy(initrd, data + 1 + kpart_len, ilen);
	}

	uint64_t ram_size = ram_sizes[(mode >> 2) & 3];
	mem_init_fake(&m, ram, ram_size, layout_low_limit(ram_size));
	const char *cmdline = (mode & 0x10) ? long_cmdline : "console=ttyS0 reboot=k panic=1";

	err[0] = '\0';
	int rc = boot_load(&m, kernel, klen, initrd, ilen, cmdline, RSDP, &out, err, sizeof(err));
	if (rc != 0 && rc != -ENOEXEC && rc != -E2BIG && rc != -EFAULT)
		__builtin_trap(); /* undocumented error code */
	if (rc != 0 && (!err[0] || !memchr(err, '\0', sizeof(err))))
		__builtin_trap(); /* failure without a reason */
	if (rc == 0) {
		uint64_t low = mem_low_end(&m);
		if (out.kind == BOOT_BZIMAGE64) {
			if (out.entry != 0x100200 || out.params != LAYOUT_BOOT_PARAMS)
				__builtin_trap();
		} else if (out.kind == BOOT_PVH) {
			if (out.entry == 0 || out.entry >= LAYOUT_4G || out.params != LAYOUT_PVH_INFO)
				__builtin_trap();
		} else {
			__builtin_trap();
		}
		if (out.kernel_end > low)
			__builtin_trap(); /* claims a kernel bigger than RAM */
		if (initrd) {
			if (out.initrd_addr < out.kernel_end || out.initrd_addr > low ||
			    ilen > low - out.initrd_addr || (out.initrd_addr & 0xfff))
				__builtin_trap(); /* initrd overlaps the kernel or leaves RAM */
			if (memcmp(ram + out.initrd_addr, initrd, ilen))
				__builtin_trap();
		}
	}
	free(initrd);
	free(kernel);
	return 0;
}
