/* Unit tests for kernel loading (arch/x86/boot.c): synthetic bzImages through
 * the 64-bit boot protocol and synthetic ELF kernels through the PVH note,
 * loaded into 64 MiB of fake guest memory. */
#include <elf.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/boot.h"
#include "arch/x86/layout.h"
#include "vm/mem.h"

#define KIB 1024ULL
#define MIB (1024 * KIB)
#define GIB (1024 * MIB)
#define GUEST_SIZE (64 * MIB)
#define RSDP 0xe0000ULL

/* ---------------------------------------------------------------- helpers */

struct fixture {
	struct guest_mem m;
	uint8_t *ram;
	uint64_t size;
	char err[256];
	struct boot_setup out;
};

static int setup_size(void **state, uint64_t size)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->ram = calloc(1, size);
	if (!f->ram) {
		free(f);
		return -1;
	}
	f->size = size;
	mem_init_fake(&f->m, f->ram, size, layout_low_limit(size));
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_size(state, GUEST_SIZE);
}

static int setup_8m(void **state)
{
	return setup_size(state, 8 * MIB);
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	mem_free(&f->m);
	free(f->ram);
	free(f);
	return 0;
}

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

static uint64_t g64(const struct fixture *f, uint64_t gpa)
{
	uint8_t b[8];

	assert_int_equal(mem_read(&f->m, gpa, b, 8), 0);
	return (uint64_t)b[0] | (uint64_t)b[1] << 8 | (uint64_t)b[2] << 16 |
	       (uint64_t)b[3] << 24 | (uint64_t)b[4] << 32 | (uint64_t)b[5] << 40 |
	       (uint64_t)b[6] << 48 | (uint64_t)b[7] << 56;
}

static uint32_t g32(const struct fixture *f, uint64_t gpa)
{
	return (uint32_t)g64(f, gpa);
}

static uint16_t g16(const struct fixture *f, uint64_t gpa)
{
	return (uint16_t)g64(f, gpa);
}

static uint8_t g8(const struct fixture *f, uint64_t gpa)
{
	return (uint8_t)g64(f, gpa);
}

static uint8_t *pattern(size_t len, unsigned seed)
{
	uint8_t *p = malloc(len ? len : 1);

	assert_non_null(p);
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)((i * 131 + seed * 17 + (i >> 8)) ^ seed);
	return p;
}

static void check_err_line(const struct fixture *f)
{
	assert_true(strlen(f->err) > 0);
	assert_null(strchr(f->err, '\n'));
}

static int load(struct fixture *f, const uint8_t *k, size_t klen, const uint8_t *initrd,
                size_t ilen, const char *cmdline)
{
	memset(f->err, 0, sizeof(f->err));
	memset(&f->out, 0xa5, sizeof(f->out));
	int rc = boot_load(&f->m, k, klen, initrd, ilen, cmdline, RSDP, &f->out, f->err,
	                   sizeof(f->err));
	if (rc)
		check_err_line(f);
	return rc;
}

/* ------------------------------------------------------- synthetic bzImage */

struct bz {
	unsigned setup_sects; /* as stored at 0x1f1; 0 means 4 */
	size_t pm_size;
	uint16_t version;
	uint16_t xloadflags;
	uint32_t init_size;
	uint32_t cmdline_size;
	uint32_t initrd_addr_max;
	uint64_t pref_address;
	uint8_t jump_off; /* byte at 0x201: the header ends at 0x202 + this */
};

static struct bz bz_default(void)
{
	return (struct bz){
		.setup_sects = 4,
		.pm_size = 64 * KIB,
		.version = 0x020f,
		.xloadflags = 0x1,
		.init_size = 4 * MIB,
		.cmdline_size = 2047,
		.initrd_addr_max = 0x7fffffff,
		.pref_address = 16 * MIB,
		.jump_off = 0x6a, /* header up to 0x26c, as Linux has it */
	};
}

static size_t bz_setup_bytes(const struct bz *o)
{
	return ((o->setup_sects ? o->setup_sects : 4) + 1) * 512ULL;
}

static uint8_t *bz_build(const struct bz *o, size_t *len)
{
	size_t setup = bz_setup_bytes(o);
	uint8_t *k;

	*len = setup + o->pm_size;
	k = malloc(*len);
	assert_non_null(k);
	memset(k, 0x77, setup); /* junk in the real-mode part: must not reach boot_params */
	k[0x1f1] = (uint8_t)o->setup_sects;
	put16(k + 0x1f2, 1);          /* root_flags */
	put32(k + 0x1f4, 0x12345);    /* syssize */
	put16(k + 0x1fe, 0xaa55);
	k[0x200] = 0xeb;
	k[0x201] = o->jump_off;
	memcpy(k + 0x202, "HdrS", 4);
	put16(k + 0x206, o->version);
	k[0x210] = 0;                 /* type_of_loader */
	k[0x211] = 0x01;              /* loadflags: LOADED_HIGH */
	put32(k + 0x214, 0x100000);   /* code32_start */
	put32(k + 0x218, 0);          /* ramdisk_image */
	put32(k + 0x21c, 0);          /* ramdisk_size */
	put16(k + 0x224, 0);          /* heap_end_ptr */
	put32(k + 0x228, 0);          /* cmd_line_ptr */
	put32(k + 0x22c, o->initrd_addr_max);
	put32(k + 0x230, 0x200000);   /* kernel_alignment */
	k[0x234] = 1;                 /* relocatable_kernel */
	k[0x235] = 21;                /* min_alignment */
	put16(k + 0x236, o->xloadflags);
	put32(k + 0x238, o->cmdline_size);
	put32(k + 0x23c, 0);          /* hardware_subarch */
	put64(k + 0x240, 0);
	put32(k + 0x248, 0x3b0);      /* payload_offset */
	put32(k + 0x24c, 0x1000);     /* payload_length */
	put64(k + 0x250, 0);          /* setup_data */
	put64(k + 0x258, o->pref_address);
	put32(k + 0x260, o->init_size);
	put32(k + 0x264, 0x190);      /* handover_offset */
	put32(k + 0x268, 0x1234);     /* kernel_info_offset */
	uint8_t *pm = pattern(o->pm_size, 3);
	memcpy(k + setup, pm, o->pm_size);
	free(pm);
	return k;
}

/* Walk the guest's 4-level page tables from the PML4 at LAYOUT_PML4. Returns
 * the physical address, or UINT64_MAX when not mapped. */
static uint64_t translate(const struct fixture *f, uint64_t va)
{
	uint64_t e = g64(f, LAYOUT_PML4 + ((va >> 39) & 511) * 8);
	if (!(e & 1))
		return UINT64_MAX;
	assert_true(e & 2); /* writable */
	e = g64(f, (e & 0x000ffffffffff000ULL) + ((va >> 30) & 511) * 8);
	if (!(e & 1))
		return UINT64_MAX;
	assert_true(e & 2);
	assert_false(e & 0x80); /* no 1 GiB pages: the PDPT points at page directories */
	e = g64(f, (e & 0x000ffffffffff000ULL) + ((va >> 21) & 511) * 8);
	if (!(e & 1))
		return UINT64_MAX;
	assert_true(e & 2);
	assert_true(e & 0x80); /* 2 MiB page */
	return (e & 0x000fffffffe00000ULL) | (va & 0x1fffff);
}

static void check_page_tables_and_gdt(const struct fixture *f)
{
	static const uint64_t va[] = { 0,          0x7000,     LAYOUT_PML4, 0x100200,
		                       0x1fffff,   0x200000,   0x3fffffff,  0x40000000,
		                       0x7fffffff, 0xb0000000, LAYOUT_IOAPIC, LAYOUT_LAPIC,
		                       0xffffffff };

	assert_int_equal(g64(f, LAYOUT_PML4) & ~0xfffULL, LAYOUT_PDPT);
	for (size_t i = 0; i < sizeof(va) / sizeof(va[0]); i++)
		assert_int_equal(translate(f, va[i]), va[i]);
	/* exactly 4 GiB: every 2 MiB page of it, and nothing beyond */
	for (uint64_t a = 0; a < LAYOUT_4G; a += 2 * MIB)
		assert_int_equal(translate(f, a + 0x1234), a + 0x1234);
	assert_int_equal(translate(f, LAYOUT_4G), UINT64_MAX);
	assert_int_equal(translate(f, 1ULL << 39), UINT64_MAX);

	/* GDT: null, unused, 0x10 = 64-bit code, 0x18 = data (the boot protocol's selectors) */
	uint64_t code = g64(f, LAYOUT_GDT + 0x10), data = g64(f, LAYOUT_GDT + 0x18);
	assert_int_equal(g64(f, LAYOUT_GDT), 0);
	assert_true(code >> 47 & 1);                /* present */
	assert_true(code >> 44 & 1);                /* code/data, not system */
	assert_true(code >> 43 & 1);                /* executable */
	assert_true(code >> 41 & 1);                /* readable */
	assert_int_equal(code >> 45 & 3, 0);        /* DPL 0 */
	assert_true(code >> 53 & 1);                /* L: 64-bit */
	assert_false(code >> 54 & 1);               /* D must be 0 when L is 1 */
	assert_true(data >> 47 & 1);
	assert_true(data >> 44 & 1);
	assert_false(data >> 43 & 1);               /* not executable */
	assert_true(data >> 41 & 1);                /* writable */
	assert_int_equal(data >> 45 & 3, 0);
	assert_true(data >> 55 & 1);                /* 4 KiB granularity: 4 GiB limit */
	assert_int_equal((data & 0xffff) | (data >> 32 & 0xf0000), 0xfffff);
}

static void check_e820_copy(const struct fixture *f, uint64_t table, int n, int stride)
{
	struct e820_entry e[E820_MAX];

	assert_int_equal(n, layout_e820(&f->m, e, E820_MAX));
	for (int i = 0; i < n; i++) {
		assert_int_equal(g64(f, table + i * stride), e[i].addr);
		assert_int_equal(g64(f, table + i * stride + 8), e[i].size);
		assert_int_equal(g32(f, table + i * stride + 16), e[i].type);
	}
}

/* Size of the e820 RAM entry starting at 1 MiB in a guest copy of the map. */
static uint64_t ram_above_1m(const struct fixture *f, uint64_t table, int n, int stride)
{
	for (int i = 0; i < n; i++) {
		uint64_t e = table + (uint64_t)i * stride;
		if (g64(f, e) == LAYOUT_HIMEM && g32(f, e + 16) == E820_RAM)
			return g64(f, e + 8);
	}
	fail_msg("no RAM entry at 1 MiB in the guest's e820 map");
	return 0;
}

/* ------------------------------------------------------------ bzImage tests */

static void test_bz_boot(void **state)
{
	struct fixture *f = *state;
	struct bz o = bz_default();
	size_t klen, ilen = MIB + 123;
	uint8_t *k = bz_build(&o, &klen);
	uint8_t *initrd = pattern(ilen, 9);
	const char *cmdline = "console=ttyS0 panic=1 root=/dev/ram0";

	assert_int_equal(load(f, k, klen, initrd, ilen, cmdline), 0);
	assert_int_equal(f->out.kind, BOOT_BZIMAGE64);
	assert_int_equal(f->out.entry, 0x100000 + 0x200);
	assert_int_equal(f->out.params, 0x7000);
	/* relocatable kernel decompressing at 16 MiB needs up to pref + init_size */
	assert_int_equal(f->out.kernel_end, 16 * MIB + 4 * MIB);

	/* protected-mode kernel at 1 MiB */
	assert_memory_equal(f->ram + 0x100000, k + bz_setup_bytes(&o), o.pm_size);

	const uint64_t bp = 0x7000;
	/* setup header copied */
	assert_int_equal(g8(f, bp + 0x1f1), 4);
	assert_int_equal(g16(f, bp + 0x1fe), 0xaa55);
	assert_memory_equal(f->ram + bp + 0x202, "HdrS", 4);
	assert_int_equal(g16(f, bp + 0x206), 0x020f);
	assert_int_equal(g32(f, bp + 0x22c), o.initrd_addr_max);
	assert_int_equal(g16(f, bp + 0x236), 1);
	assert_int_equal(g32(f, bp + 0x238), o.cmdline_size);
	assert_int_equal(g64(f, bp + 0x258), o.pref_address);
	assert_int_equal(g32(f, bp + 0x260), o.init_size);
	assert_int_equal(g32(f, bp + 0x268), 0x1234);
	/* fields the loader fills in */
	assert_int_equal(g8(f, bp + 0x210), 0xff); /* type_of_loader: undefined */
	assert_true(g8(f, bp + 0x211) & 0x01);     /* LOADED_HIGH */
	assert_true(g8(f, bp + 0x211) & 0x80);     /* CAN_USE_HEAP */
	assert_int_equal(g16(f, bp + 0x224), 0xfe00);
	assert_int_equal(g32(f, bp + 0x228), LAYOUT_CMDLINE);
	assert_int_equal(g32(f, bp + 0xc8), 0); /* ext_cmd_line_ptr */
	assert_string_equal((const char *)f->ram + g32(f, bp + 0x228), cmdline);
	assert_int_equal(g64(f, bp + 0x70), RSDP);

	/* initrd: page aligned, above the kernel, below initrd_addr_max and RAM */
	uint64_t ird = g32(f, bp + 0x218) | (uint64_t)g32(f, bp + 0xc0) << 32;
	uint64_t irs = g32(f, bp + 0x21c) | (uint64_t)g32(f, bp + 0xc4) << 32;
	assert_int_equal(ird, f->out.initrd_addr);
	assert_int_equal(irs, ilen);
	assert_int_equal(ird & 0xfff, 0);
	assert_true(ird >= f->out.kernel_end);
	assert_true(ird >= 0x100000 + o.pm_size);
	assert_true(ird + ilen - 1 <= o.initrd_addr_max);
	assert_true(ird + ilen <= GUEST_SIZE);
	assert_memory_equal(f->ram + ird, initrd, ilen);
	/* placed as high as it goes */
	assert_int_equal(ird, (GUEST_SIZE - ilen) & ~0xfffULL);

	/* e820 */
	int n = g8(f, bp + 0x1e8);
	assert_true(n >= 4);
	check_e820_copy(f, bp + 0x2d0, n, 20);
	assert_int_equal(ram_above_1m(f, bp + 0x2d0, n, 20), GUEST_SIZE - MIB);

	/* nothing of the real-mode part or beyond the header leaks into boot_params */
	for (uint64_t i = 0; i < 0x70; i++)
		assert_int_equal(g8(f, bp + i), 0);
	for (uint64_t i = 0x202 + o.jump_off; i < 0x2d0; i++)
		assert_int_equal(g8(f, bp + i), 0);
	assert_int_equal(g8(f, bp + 0x1ef), 0); /* sentinel */

	check_page_tables_and_gdt(f);
	free(k);
	free(initrd);
}

static void test_bz_no_initrd(void **state)
{
	struct fixture *f = *state;
	struct bz o = bz_default();
	size_t klen;
	uint8_t *k = bz_build(&o, &klen);

	assert_int_equal(load(f, k, klen, NULL, 0, ""), 0);
	assert_int_equal(f->out.initrd_addr, 0);
	assert_int_equal(g32(f, 0x7000 + 0x218), 0);
	assert_int_equal(g32(f, 0x7000 + 0x21c), 0);
	assert_int_equal(g8(f, LAYOUT_CMDLINE), 0);
	free(k);
}

static void test_bz_initrd_addr_max(void **state)
{
	struct fixture *f = *state;
	struct bz o = bz_default();
	size_t klen, ilen = 3 * MIB + 5;

	o.initrd_addr_max = 32 * MIB - 1;
	uint8_t *k = bz_build(&o, &klen);
	uint8_t *initrd = pattern(ilen, 4);

	assert_int_equal(load(f, k, klen, initrd, ilen, "x"), 0);
	uint64_t ird = f->out.initrd_addr;
	assert_int_equal(ird & 0xfff, 0);
	assert_true(ird + ilen - 1 <= o.initrd_addr_max);
	assert_true(ird >= f->out.kernel_end);
	assert_int_equal(ird, (32 * MIB - ilen) & ~0xfffULL);
	assert_memory_equal(f->ram + ird, initrd, ilen);
	free(k);

	/* initrd_addr_max is the address of the last byte: with a limit just short
	 * of a page boundary, the initrd must end a page lower */
	o.initrd_addr_max = 32 * MIB - 2;
	k = bz_build(&o, &klen);
	assert_int_equal(load(f, k, klen, initrd, 3 * MIB, "x"), 0);
	assert_int_equal(f->out.initrd_addr, 29 * MIB - 4096);
	assert_true(f->out.initrd_addr + 3 * MIB - 1 <= o.initrd_addr_max);
	free(k);
	free(initrd);
}

static void test_bz_kernel_end(void **state)
{
	struct fixture *f = *state;
	struct bz o = bz_default();
	size_t klen;
	uint8_t *k;

	/* not relocatable to a preferred address: 1 MiB + init_size */
	o.pref_address = 0;
	k = bz_build(&o, &klen);
	assert_int_equal(load(f, k, klen, NULL, 0, ""), 0);
	assert_int_equal(f->out.kernel_end, MIB + o.init_size);
	free(k);

	/* a preferred address at or above 4 GiB is ignored */
	o.pref_address = LAYOUT_4G;
	k = bz_build(&o, &klen);
	assert_int_equal(load(f, k, klen, NULL, 0, ""), 0);
	assert_int_equal(f->out.kernel_end, MIB + o.init_size);
	free(k);

	/* init_size smaller than the file: the file size counts */
	o.pref_address = 0;
	o.init_size = 4096;
	k = bz_build(&o, &klen);
	assert_int_equal(load(f, k, klen, NULL, 0, ""), 0);
	assert_int_equal(f->out.kernel_end, MIB + o.pm_size);
	free(k);

	/* an initrd never overlaps the decompression area */
	o = bz_default();
	o.pref_address = 32 * MIB;
	o.init_size = 24 * MIB;
	size_t ilen = 7 * MIB;
	uint8_t *initrd = pattern(ilen, 5);
	k = bz_build(&o, &klen);
	assert_int_equal(load(f, k, klen, initrd, ilen, ""), 0);
	assert_int_equal(f->out.kernel_end, 56 * MIB);
	assert_true(f->out.initrd_addr >= 56 * MIB);
	free(k);
	free(initrd);
}

static void test_bz_setup_sects_zero(void **state)
{
	struct fixture *f = *state;
	struct bz o = bz_default();
	size_t klen;

	o.setup_sects = 0; /* means 4 */
	uint8_t *k = bz_build(&o, &klen);
	assert_int_equal(klen, 5 * 512 + o.pm_size);
	assert_int_equal(load(f, k, klen, NULL, 0, ""), 0);
	assert_memory_equal(f->ram + 0x100000, k + 5 * 512, o.pm_size);
	free(k);

	o.setup_sects = 30;
	k = bz_build(&o, &klen);
	assert_int_equal(load(f, k, klen, NULL, 0, ""), 0);
	assert_memory_equal(f->ram + 0x100000, k + 31 * 512, o.pm_size);
	free(k);
}

static void test_bz_protocol_version(void **state)
{
	struct fixture *f = *state;
	struct bz o = bz_default();
	size_t klen;
	uint8_t *k;

	static const uint16_t old[] = { 0x0000, 0x0100, 0x0201, 0x020a, 0x020b };
	for (size_t i = 0; i < sizeof(old) / sizeof(old[0]); i++) {
		o.version = old[i];
		k = bz_build(&o, &klen);
		assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
		assert_non_null(strstr(f->err, "2.12"));
		free(k);
	}
	o.version = 0x020c; /* 2.12: the first with xloadflags */
	k = bz_build(&o, &klen);
	assert_int_equal(load(f, k, klen, NULL, 0, ""), 0);
	free(k);

	/* no 64-bit entry point */
	o.version = 0x020f;
	o.xloadflags = 0x2 | 0x4 | 0x8; /* other flags, but not XLF_KERNEL_64 */
	k = bz_build(&o, &klen);
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	free(k);
	o.xloadflags = 0;
	k = bz_build(&o, &klen);
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	free(k);
}

static void test_bz_truncated(void **state)
{
	struct fixture *f = *state;
	struct bz o = bz_default();
	size_t klen;
	uint8_t *k = bz_build(&o, &klen);
	size_t setup = bz_setup_bytes(&o);

	/* only the setup part: no protected-mode kernel */
	assert_int_equal(load(f, k, setup, NULL, 0, ""), -ENOEXEC);
	assert_int_equal(load(f, k, setup - 1, NULL, 0, ""), -ENOEXEC);
	/* too short to hold the setup header */
	assert_int_equal(load(f, k, 0x2ff, NULL, 0, ""), -ENOEXEC);
	assert_int_equal(load(f, k, 0x200, NULL, 0, ""), -ENOEXEC);
	assert_int_equal(load(f, k, 0, NULL, 0, ""), -ENOEXEC);
	/* one byte of protected-mode kernel is enough to be accepted */
	assert_int_equal(load(f, k, setup + 1, NULL, 0, ""), 0);
	free(k);

	/* setup_sects says the setup part is bigger than the file */
	o.setup_sects = 255;
	o.pm_size = 4096;
	k = bz_build(&o, &klen);
	assert_int_equal(load(f, k, 0x1000, NULL, 0, ""), -ENOEXEC);
	free(k);

	/* a header claiming to end beyond 0x300 */
	o = bz_default();
	o.jump_off = 0xff;
	k = bz_build(&o, &klen);
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	free(k);
}

static void test_bz_initrd_too_large(void **state)
{
	struct fixture *f = *state;
	struct bz o = bz_default();
	size_t klen;
	uint8_t *k = bz_build(&o, &klen);
	uint8_t small[16] = { 0 };

	/* nearly all of RAM: does not fit above the kernel's 20 MiB */
	size_t ilen = 60 * MIB;
	uint8_t *big = calloc(1, ilen);
	assert_non_null(big);
	assert_int_equal(load(f, k, klen, big, ilen, ""), -E2BIG);
	assert_non_null(strstr(f->err, "initrd"));
	/* the largest that fits: exactly from kernel_end to the top of RAM */
	assert_int_equal(load(f, k, klen, big, GUEST_SIZE - 20 * MIB, ""), 0);
	assert_int_equal(f->out.initrd_addr, 20 * MIB);
	assert_int_equal(load(f, k, klen, big, GUEST_SIZE - 20 * MIB + 1, ""), -E2BIG);
	free(big);
	free(k);

	/* fits in RAM but not below initrd_addr_max */
	o.initrd_addr_max = 24 * MIB - 1;
	k = bz_build(&o, &klen);
	uint8_t *initrd = pattern(5 * MIB, 1);
	assert_int_equal(load(f, k, klen, initrd, 5 * MIB, ""), -E2BIG);
	assert_int_equal(load(f, k, klen, initrd, 4 * MIB, ""), 0);
	free(initrd);
	free(k);

	/* initrd_addr_max below the kernel */
	o.initrd_addr_max = 0;
	k = bz_build(&o, &klen);
	assert_int_equal(load(f, k, klen, small, sizeof(small), ""), -E2BIG);
	free(k);

	/* more than 4 GiB is refused before anything is read */
	o = bz_default();
	k = bz_build(&o, &klen);
	assert_int_equal(load(f, k, klen, small, (size_t)4 * GIB + 1, ""), -E2BIG);
	assert_int_equal(load(f, k, klen, small, SIZE_MAX, ""), -E2BIG);
	free(k);
}

static void test_bz_cmdline_size(void **state)
{
	struct fixture *f = *state;
	struct bz o = bz_default();
	size_t klen;
	char line[LAYOUT_CMDLINE_MAX + 2];

	o.cmdline_size = 16;
	uint8_t *k = bz_build(&o, &klen);
	assert_int_equal(load(f, k, klen, NULL, 0, "0123456789abcdef"), 0);
	assert_string_equal((const char *)f->ram + LAYOUT_CMDLINE, "0123456789abcdef");
	assert_int_equal(load(f, k, klen, NULL, 0, "0123456789abcdefg"), -E2BIG);
	assert_non_null(strstr(f->err, "command line"));
	free(k);

	o.cmdline_size = 0;
	k = bz_build(&o, &klen);
	assert_int_equal(load(f, k, klen, NULL, 0, ""), 0);
	assert_int_equal(load(f, k, klen, NULL, 0, "x"), -E2BIG);
	free(k);

	/* a huge cmdline_size is capped at the command-line area */
	o.cmdline_size = 0xffffffff;
	k = bz_build(&o, &klen);
	memset(line, 'c', sizeof(line));
	line[LAYOUT_CMDLINE_MAX - 1] = '\0';
	assert_int_equal(load(f, k, klen, NULL, 0, line), 0);
	assert_int_equal(f->ram[LAYOUT_CMDLINE + LAYOUT_CMDLINE_MAX - 2], 'c');
	assert_int_equal(f->ram[LAYOUT_CMDLINE + LAYOUT_CMDLINE_MAX - 1], 0);
	line[LAYOUT_CMDLINE_MAX - 1] = 'c';
	line[LAYOUT_CMDLINE_MAX] = '\0';
	assert_int_equal(load(f, k, klen, NULL, 0, line), -E2BIG);
	free(k);
}

static void test_bz_memory_too_small(void **state)
{
	struct fixture *f = *state;
	struct bz o = bz_default();
	size_t klen;
	uint8_t *k;

	/* init_size larger than RAM */
	o.pref_address = 0;
	o.init_size = GUEST_SIZE;
	k = bz_build(&o, &klen);
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -E2BIG);
	assert_non_null(strstr(f->err, "too small"));
	free(k);

	/* decompression area at pref_address runs past RAM */
	o.pref_address = 16 * MIB;
	o.init_size = 48 * MIB + 4096;
	k = bz_build(&o, &klen);
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -E2BIG);
	free(k);
	o.init_size = 48 * MIB; /* just fits */
	k = bz_build(&o, &klen);
	assert_int_equal(load(f, k, klen, NULL, 0, ""), 0);
	free(k);

	/* the maximum init_size does not wrap anything */
	o.init_size = 0xffffffff;
	k = bz_build(&o, &klen);
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -E2BIG);
	free(k);
}

/* 8 MiB guest: the default kernel wants 20 MiB */
static void test_bz_small_guest(void **state)
{
	struct fixture *f = *state;
	struct bz o = bz_default();
	size_t klen;
	uint8_t *k = bz_build(&o, &klen);

	assert_int_equal(load(f, k, klen, NULL, 0, ""), -E2BIG);
	free(k);
	o.pref_address = 0;
	o.init_size = 2 * MIB;
	k = bz_build(&o, &klen);
	assert_int_equal(load(f, k, klen, NULL, 0, ""), 0);
	assert_int_equal(f->out.kernel_end, 3 * MIB);
	/* the e820 map describes 8 MiB */
	assert_int_equal(ram_above_1m(f, 0x7000 + 0x2d0, g8(f, 0x7000 + 0x1e8), 20), 7 * MIB);
	free(k);
}

static void test_bz_memory_tiny(void **state)
{
	struct fixture *f;
	struct bz o = bz_default();
	size_t klen;
	uint8_t *k = bz_build(&o, &klen);

	(void)state;
	/* less than 1 MiB of RAM: nowhere to put the kernel */
	assert_int_equal(setup_size((void **)&f, 512 * KIB), 0);
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -E2BIG);
	teardown((void **)&f);
	free(k);
}

static void test_garbage(void **state)
{
	struct fixture *f = *state;
	size_t len = 64 * KIB;
	uint8_t *g = malloc(len);
	uint32_t x = 12345;

	assert_non_null(g);
	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245 + 12345;
		g[i] = (uint8_t)(x >> 16);
	}
	assert_int_equal(load(f, g, len, NULL, 0, ""), -ENOEXEC);
	memset(g, 0, len);
	assert_int_equal(load(f, g, len, NULL, 0, ""), -ENOEXEC);
	/* the magic without the boot flag, and the reverse */
	memcpy(g + 0x202, "HdrS", 4);
	assert_int_equal(load(f, g, len, NULL, 0, ""), -ENOEXEC);
	memset(g, 0, len);
	put16(g + 0x1fe, 0xaa55);
	assert_int_equal(load(f, g, len, NULL, 0, ""), -ENOEXEC);
	/* a 32-bit ELF and a big-endian ELF are not PVH kernels */
	memset(g, 0, len);
	memcpy(g, ELFMAG, SELFMAG);
	g[EI_CLASS] = ELFCLASS32;
	g[EI_DATA] = ELFDATA2LSB;
	assert_int_equal(load(f, g, len, NULL, 0, ""), -ENOEXEC);
	g[EI_CLASS] = ELFCLASS64;
	g[EI_DATA] = ELFDATA2MSB;
	assert_int_equal(load(f, g, len, NULL, 0, ""), -ENOEXEC);
	/* just the ELF magic, shorter than a header */
	assert_int_equal(load(f, g, 16, NULL, 0, ""), -ENOEXEC);

	enum boot_kind kind;
	char err[128] = "";
	assert_int_equal(boot_probe(g, 4, &kind, err, sizeof(err)), -ENOEXEC);
	assert_true(strlen(err) > 0);
	free(g);
}

/* ------------------------------------------------------------ ELF / PVH */

#define ELF_PADDR 0x1000000ULL
#define ELF_ENTRY (ELF_PADDR + 0x100)
#define ELF_NOTE_OFF 0x200
#define ELF_SEG_OFF 0x1000

struct elf {
	uint64_t paddr, filesz, memsz, entry;
	int desc8;        /* 8-byte PHYS32_ENTRY descriptor */
	int note;         /* include the Xen note */
	int linux_note;   /* a Linux note in front of it */
	uint32_t note_type;
};

static struct elf elf_default(void)
{
	return (struct elf){ .paddr = ELF_PADDR, .filesz = 0x2000, .memsz = 0x5000,
		             .entry = ELF_ENTRY, .note = 1, .note_type = 18 };
}

static size_t put_note(uint8_t *p, const char *name, uint32_t namesz, uint32_t type,
                       const void *desc, uint32_t descsz)
{
	size_t nlen = (namesz + 3) & ~3u, dlen = (descsz + 3) & ~3u;

	put32(p, namesz);
	put32(p + 4, descsz);
	put32(p + 8, type);
	memset(p + 12, 0, nlen + dlen);
	memcpy(p + 12, name, namesz);
	memcpy(p + 12 + nlen, desc, descsz);
	return 12 + nlen + dlen;
}

/* Ehdr, two program headers (PT_LOAD, PT_NOTE), notes at 0x200, segment at 0x1000. */
static uint8_t *elf_build(const struct elf *o, size_t *len)
{
	*len = ELF_SEG_OFF + o->filesz;
	uint8_t *k = calloc(1, *len);
	assert_non_null(k);

	Elf64_Ehdr *eh = (Elf64_Ehdr *)k;
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_X86_64;
	eh->e_version = EV_CURRENT;
	eh->e_entry = 0xffffffff81000000ULL;
	eh->e_phoff = sizeof(Elf64_Ehdr);
	eh->e_ehsize = sizeof(Elf64_Ehdr);
	eh->e_phentsize = sizeof(Elf64_Phdr);
	eh->e_phnum = 2;

	size_t nl = 0;
	if (o->linux_note) {
		uint8_t d[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
		nl += put_note(k + ELF_NOTE_OFF + nl, "Linux", 6, 1, d, 10);
	}
	if (o->note) {
		uint8_t d[8];
		put64(d, o->entry);
		nl += put_note(k + ELF_NOTE_OFF + nl, "Xen", 4, o->note_type, d, o->desc8 ? 8 : 4);
	}

	Elf64_Phdr *ph = (Elf64_Phdr *)(k + eh->e_phoff);
	ph[0] = (Elf64_Phdr){ .p_type = PT_LOAD, .p_flags = PF_R | PF_W | PF_X,
		              .p_offset = ELF_SEG_OFF, .p_vaddr = 0xffffffff81000000ULL,
		              .p_paddr = o->paddr, .p_filesz = o->filesz, .p_memsz = o->memsz,
		              .p_align = 0x1000 };
	ph[1] = (Elf64_Phdr){ .p_type = PT_NOTE, .p_flags = PF_R, .p_offset = ELF_NOTE_OFF,
		              .p_filesz = nl, .p_memsz = nl, .p_align = 4 };

	uint8_t *seg = pattern(o->filesz, 7);
	memcpy(k + ELF_SEG_OFF, seg, o->filesz);
	free(seg);
	return k;
}

static Elf64_Ehdr *ehdr(uint8_t *k)
{
	return (Elf64_Ehdr *)k;
}

static Elf64_Phdr *phdr(uint8_t *k, int i)
{
	return (Elf64_Phdr *)(k + sizeof(Elf64_Ehdr)) + i;
}

static void test_pvh_boot(void **state)
{
	struct fixture *f = *state;
	struct elf o = elf_default();
	size_t klen, ilen = 100000;
	uint8_t *k = elf_build(&o, &klen);
	uint8_t *initrd = pattern(ilen, 11);
	const char *cmdline = "console=ttyS0 pvh";

	/* the bss must be zeroed even if memory held something */
	memset(f->ram + ELF_PADDR, 0xcc, o.memsz + 4096);
	assert_int_equal(load(f, k, klen, initrd, ilen, cmdline), 0);
	assert_int_equal(f->out.kind, BOOT_PVH);
	assert_int_equal(f->out.entry, ELF_ENTRY);
	assert_int_equal(f->out.params, 0x6000);
	assert_int_equal(f->out.kernel_end, ELF_PADDR + o.memsz + 8 * MIB);

	/* segment bytes, then zeroed bss, then untouched memory */
	assert_memory_equal(f->ram + ELF_PADDR, k + ELF_SEG_OFF, o.filesz);
	for (uint64_t i = o.filesz; i < o.memsz; i++)
		assert_int_equal(f->ram[ELF_PADDR + i], 0);
	assert_int_equal(f->ram[ELF_PADDR + o.memsz], 0xcc);

	/* hvm_start_info */
	const uint64_t si = 0x6000;
	assert_int_equal(g32(f, si), 0x336ec578);
	assert_int_equal(g32(f, si + 4), 1);      /* version */
	assert_int_equal(g32(f, si + 8), 0);      /* flags */
	assert_int_equal(g32(f, si + 12), 1);     /* nr_modules */
	uint64_t modlist = g64(f, si + 16);
	uint64_t cmd = g64(f, si + 24);
	assert_int_equal(modlist, LAYOUT_PVH_MODLIST);
	assert_int_equal(g64(f, si + 32), RSDP);
	uint64_t memmap = g64(f, si + 40);
	uint32_t entries = g32(f, si + 48);
	assert_int_equal(memmap, LAYOUT_PVH_MEMMAP);
	assert_true(entries >= 4);
	assert_int_equal(g32(f, si + 52), 0); /* reserved */
	assert_string_equal((const char *)f->ram + cmd, cmdline);
	check_e820_copy(f, memmap, (int)entries, 24);
	assert_int_equal(ram_above_1m(f, memmap, (int)entries, 24), GUEST_SIZE - MIB);
	for (uint32_t i = 0; i < entries; i++)
		assert_int_equal(g32(f, memmap + i * 24 + 20), 0); /* reserved */

	/* module list: one module, the initrd */
	uint64_t maddr = g64(f, modlist), msize = g64(f, modlist + 8);
	assert_int_equal(maddr, f->out.initrd_addr);
	assert_int_equal(msize, ilen);
	assert_int_equal(g64(f, modlist + 16), 0); /* no module command line */
	assert_int_equal(maddr & 0xfff, 0);
	assert_true(maddr >= f->out.kernel_end);
	assert_true(maddr + ilen <= GUEST_SIZE);
	assert_memory_equal(f->ram + maddr, initrd, ilen);

	check_page_tables_and_gdt(f);
	free(k);
	free(initrd);
}

static void test_pvh_desc8_and_other_notes(void **state)
{
	struct fixture *f = *state;
	struct elf o = elf_default();
	size_t klen;
	uint8_t *k;

	o.desc8 = 1;
	o.entry = ELF_PADDR + 0x40;
	k = elf_build(&o, &klen);
	assert_int_equal(load(f, k, klen, NULL, 0, ""), 0);
	assert_int_equal(f->out.entry, ELF_PADDR + 0x40);
	/* no initrd: no modules */
	assert_int_equal(g32(f, 0x6000 + 12), 0);
	assert_int_equal(g64(f, 0x6000 + 16), 0);
	free(k);

	/* a Linux note (name padded to 8, desc padded to 12) in front of the Xen one */
	o = elf_default();
	o.linux_note = 1;
	o.entry = ELF_PADDR + 0x80;
	k = elf_build(&o, &klen);
	assert_int_equal(load(f, k, klen, NULL, 0, ""), 0);
	assert_int_equal(f->out.entry, ELF_PADDR + 0x80);
	free(k);

	/* an 8-byte entry at or above 4 GiB is not usable from 32-bit mode */
	o = elf_default();
	o.desc8 = 1;
	o.entry = LAYOUT_4G + 0x1000;
	k = elf_build(&o, &klen);
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	free(k);
}

static void test_pvh_no_note(void **state)
{
	struct fixture *f = *state;
	struct elf o = elf_default();
	size_t klen;
	uint8_t *k;

	o.note = 0;
	k = elf_build(&o, &klen);
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	assert_non_null(strstr(f->err, "PVH"));
	free(k);

	/* only a Linux note */
	o.linux_note = 1;
	k = elf_build(&o, &klen);
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	free(k);

	/* the Xen note, but another type */
	o = elf_default();
	o.note_type = 17;
	k = elf_build(&o, &klen);
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	free(k);

	/* entry 0 */
	o = elf_default();
	o.entry = 0;
	k = elf_build(&o, &klen);
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	free(k);

	/* right type, wrong name */
	o = elf_default();
	k = elf_build(&o, &klen);
	memcpy(k + ELF_NOTE_OFF + 12, "Xem", 3);
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	free(k);

	/* the note program header is not PT_NOTE */
	k = elf_build(&o, &klen);
	phdr(k, 1)->p_type = PT_NULL;
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	free(k);
}

static void test_pvh_segment_outside_file(void **state)
{
	struct fixture *f = *state;
	struct elf o = elf_default();
	size_t klen;
	uint8_t *k = elf_build(&o, &klen);

	phdr(k, 0)->p_filesz = o.filesz + 1; /* one byte past the end of the file */
	phdr(k, 0)->p_memsz = o.memsz;
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	phdr(k, 0)->p_filesz = o.filesz;
	phdr(k, 0)->p_offset = klen + 1;
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	phdr(k, 0)->p_offset = UINT64_MAX;
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	phdr(k, 0)->p_offset = UINT64_MAX - 8; /* offset + filesz wraps */
	phdr(k, 0)->p_filesz = 0x100;
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	/* file size larger than memory size */
	phdr(k, 0)->p_offset = ELF_SEG_OFF;
	phdr(k, 0)->p_filesz = o.filesz;
	phdr(k, 0)->p_memsz = o.filesz - 1;
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	/* and back to sane */
	phdr(k, 0)->p_memsz = o.memsz;
	assert_int_equal(load(f, k, klen, NULL, 0, ""), 0);
	free(k);
}

static void test_pvh_note_past_segment(void **state)
{
	struct fixture *f = *state;
	struct elf o = elf_default();
	size_t klen;
	uint8_t *k = elf_build(&o, &klen);
	uint8_t *note = k + ELF_NOTE_OFF;
	uint64_t nl = phdr(k, 1)->p_filesz;

	assert_int_equal(nl, 20);
	/* descsz past the note segment (whose file bytes continue: only p_filesz bounds it) */
	put32(note + 4, 8);
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	put32(note + 4, 0xffffffff);
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	put32(note + 4, 0xfffffffd); /* rounds up to 2^32 */
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	put32(note + 4, 4);
	/* namesz past the segment */
	put32(note, 0xffffffff);
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	put32(note, 9);
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	put32(note, 4);
	/* segment shorter than a note header */
	phdr(k, 1)->p_filesz = 11;
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	/* the whole note but one byte */
	phdr(k, 1)->p_filesz = nl - 1;
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	/* note segment running past the end of the file */
	phdr(k, 1)->p_offset = klen - 8;
	phdr(k, 1)->p_filesz = nl;
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	phdr(k, 1)->p_offset = UINT64_MAX - 4;
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	phdr(k, 1)->p_offset = ELF_NOTE_OFF;
	phdr(k, 1)->p_filesz = UINT64_MAX;
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	/* restored: loads */
	phdr(k, 1)->p_filesz = nl;
	assert_int_equal(load(f, k, klen, NULL, 0, ""), 0);
	free(k);
}

static void test_pvh_bad_headers(void **state)
{
	struct fixture *f = *state;
	struct elf o = elf_default();
	size_t klen;
	uint8_t *k = elf_build(&o, &klen);

	ehdr(k)->e_machine = EM_386;
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	ehdr(k)->e_machine = EM_X86_64;
	ehdr(k)->e_phentsize = 32;
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	ehdr(k)->e_phentsize = sizeof(Elf64_Phdr);
	ehdr(k)->e_phoff = klen + 1;
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	ehdr(k)->e_phoff = UINT64_MAX - 16;
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	ehdr(k)->e_phoff = klen - sizeof(Elf64_Phdr) + 1; /* last header cut short */
	ehdr(k)->e_phnum = 1;
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	ehdr(k)->e_phoff = sizeof(Elf64_Ehdr);
	ehdr(k)->e_phnum = 0xffff;
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	ehdr(k)->e_phnum = 0;
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	ehdr(k)->e_phnum = 2;
	assert_int_equal(load(f, k, klen, NULL, 0, ""), 0);
	/* ELF header only */
	assert_int_equal(load(f, k, sizeof(Elf64_Ehdr), NULL, 0, ""), -ENOEXEC);
	free(k);
}

static void test_pvh_no_load_segment(void **state)
{
	struct fixture *f = *state;
	struct elf o = elf_default();
	size_t klen;
	uint8_t *k = elf_build(&o, &klen);

	phdr(k, 0)->p_type = PT_GNU_STACK;
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -ENOEXEC);
	free(k);
}

static void test_pvh_segment_outside_ram(void **state)
{
	struct fixture *f = *state;
	struct elf o = elf_default();
	size_t klen;
	uint8_t *k = elf_build(&o, &klen);

	phdr(k, 0)->p_paddr = 256 * MIB; /* beyond 64 MiB */
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -E2BIG);
	phdr(k, 0)->p_paddr = GUEST_SIZE - 0x1000; /* straddles the end of RAM */
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -E2BIG);
	phdr(k, 0)->p_paddr = 0x8000; /* over the boot structures */
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -E2BIG);
	phdr(k, 0)->p_paddr = UINT64_MAX - 0x1000; /* paddr + memsz wraps */
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -E2BIG);
	phdr(k, 0)->p_paddr = ELF_PADDR;
	phdr(k, 0)->p_memsz = UINT64_MAX;
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -E2BIG);
	phdr(k, 0)->p_memsz = o.memsz;
	assert_int_equal(load(f, k, klen, NULL, 0, ""), 0);
	free(k);
}

static void test_pvh_memory_too_small(void **state)
{
	struct fixture *f = *state;
	struct elf o = elf_default();
	size_t klen;

	/* fits, but leaves less than 8 MiB after the image */
	o.paddr = 60 * MIB;
	uint8_t *k = elf_build(&o, &klen);
	assert_int_equal(load(f, k, klen, NULL, 0, ""), -E2BIG);
	assert_non_null(strstr(f->err, "too small"));
	free(k);

	/* initrd that does not fit above kernel_end + 8 MiB */
	o = elf_default();
	k = elf_build(&o, &klen);
	size_t ilen = GUEST_SIZE - (ELF_PADDR + o.memsz + 8 * MIB);
	uint8_t *initrd = calloc(1, ilen + 4096);
	assert_non_null(initrd);
	assert_int_equal(load(f, k, klen, initrd, ilen + 4096, ""), -E2BIG);
	assert_int_equal(load(f, k, klen, initrd, ilen, ""), 0);
	assert_int_equal(f->out.initrd_addr, ELF_PADDR + o.memsz + 8 * MIB);
	free(initrd);

	/* command line longer than 2047 bytes */
	char line[2049];
	memset(line, 'p', sizeof(line));
	line[2047] = '\0';
	assert_int_equal(load(f, k, klen, NULL, 0, line), 0);
	line[2047] = 'p';
	line[2048] = '\0';
	assert_int_equal(load(f, k, klen, NULL, 0, line), -E2BIG);
	free(k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bz_boot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bz_no_initrd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bz_initrd_addr_max, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bz_kernel_end, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bz_setup_sects_zero, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bz_protocol_version, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bz_truncated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bz_initrd_too_large, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bz_cmdline_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bz_memory_too_small, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bz_small_guest, setup_8m, teardown),
		cmocka_unit_test(test_bz_memory_tiny),
		cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pvh_boot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pvh_desc8_and_other_notes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pvh_no_note, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pvh_segment_outside_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pvh_note_past_segment, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pvh_bad_headers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pvh_no_load_segment, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pvh_segment_outside_ram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pvh_memory_too_small, setup, teardown),
	};

	return cmocka_run_group_tests_name("boot", tests, NULL, NULL);
}
