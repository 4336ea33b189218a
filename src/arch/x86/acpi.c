/* ACPI 6.x tables. The guest is a non-hardware-reduced PC: the FADT points at
 * the PM1 blocks of devices/acpi_pm.c (S5 soft-off, fixed power button, SCI on
 * GSI 9) and at a reset register; the MADT lists one local APIC per vCPU and
 * the IOAPIC; the DSDT carries only the _S5 package. The builder lays tables
 * out one after another in a host buffer, then copies the area into the guest
 * in one checked write. */
#include "arch/x86/acpi.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/aml.h"
#include "arch/x86/layout.h"
#include "devices/acpi_pm.h"
#include "pci/pci.h"

#define OEM_ID "CVISOR"
#define OEM_TABLE "CVISORVM"

struct builder {
	uint8_t buf[LAYOUT_ACPI_SIZE];
	size_t used;
};

static uint8_t *b_alloc(struct builder *b, size_t len, size_t align, uint64_t *gpa)
{
	size_t off = (b->used + align - 1) & ~(align - 1);
	if (off + len > sizeof(b->buf))
		return NULL;
	b->used = off + len;
	*gpa = LAYOUT_ACPI + off;
	return b->buf + off;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v;
	p[1] = v >> 8;
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

uint8_t acpi_checksum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;
	while (len--)
		sum += *b++;
	return sum;
}

/* Standard 36-byte SDT header; the checksum is fixed up by sdt_finish(). */
static void sdt_header(uint8_t *t, const char *sig, uint32_t len, uint8_t rev)
{
	memcpy(t, sig, 4);
	put32(t + 4, len);
	t[8] = rev;
	memcpy(t + 10, OEM_ID, 6);
	memcpy(t + 16, OEM_TABLE, 8);
	put32(t + 24, 1);
	memcpy(t + 28, "CVSR", 4);
	put32(t + 32, 1);
}

static void sdt_finish(uint8_t *t, uint32_t len)
{
	t[9] = 0;
	t[9] = (uint8_t)-acpi_checksum(t, len);
}

/* Generic Address Structure in system I/O space. */
static void gas_io(uint8_t *p, uint8_t bits, uint8_t access, uint64_t port)
{
	p[0] = 1; /* SystemIO */
	p[1] = bits;
	p[2] = 0;
	p[3] = access;
	put64(p + 4, port);
}

static const uint8_t s5_aml[] = {
	/* Name (_S5, Package (4) { 5, 5, 0, 0 }) */
	0x08, '_', 'S', '5', '_', 0x12, 0x08, 0x04, 0x0a, ACPI_S5_TYPE, 0x0a, ACPI_S5_TYPE, 0x00,
	0x00,
};

static void aml_name_int(struct aml *a, const char *name, uint64_t v)
{
	aml_bytes(a, "\x08", 1); /* NameOp */
	aml_name(a, name);
	aml_int(a, v);
}

/* Scope (\_SB) { Device (PCI0) { _HID PNP0A08, _CID PNP0A03, _SEG/_BBN/_UID 0, _CRS } } */
static void dsdt_pci(struct aml *a, const struct acpi_config *cfg)
{
	static const uint8_t scope_op = 0x10, device_op[2] = { 0x5b, 0x82 }, buffer_op = 0x11;
	size_t scope = aml_open(a, &scope_op, 1);
	aml_name(a, "\\_SB_");
	size_t dev = aml_open(a, device_op, 2);
	aml_name(a, "PCI0");
	aml_name_int(a, "_HID", aml_eisaid("PNP0A08"));
	aml_name_int(a, "_CID", aml_eisaid("PNP0A03"));
	aml_name_int(a, "_SEG", 0);
	aml_name_int(a, "_BBN", 0);
	aml_name_int(a, "_UID", 0);
	aml_bytes(a, "\x08", 1);
	aml_name(a, "_CRS");
	struct aml res = { 0 };
	aml_res_word_bus(&res, 0, 0);
	aml_res_io(&res, PCI_CFG_ADDR_PORT, 8);
	aml_res_word_io(&res, 0x0000, 0x0cf7);
	aml_res_word_io(&res, 0x0d00, 0xffff);
	aml_res_dword_mem(&res, (uint32_t)PCI_MMIO32_BASE,
	                  (uint32_t)(PCI_MMIO32_BASE + PCI_MMIO32_SIZE - 1), 0);
	aml_res_qword_mem(&res, cfg->mmio64_base, cfg->mmio64_base + cfg->mmio64_size - 1, 1);
	aml_res_end(&res);
	size_t buf = aml_open(a, &buffer_op, 1);
	aml_int(a, res.len);
	aml_bytes(a, res.data, res.len);
	aml_close(a, buf);
	if (res.err)
		a->err = res.err;
	aml_free(&res);
	aml_close(a, dev);
	aml_close(a, scope);
}

static int build_mcfg(struct builder *b, uint64_t *gpa)
{
	enum { LEN = 36 + 8 + 16 };
	uint8_t *t = b_alloc(b, LEN, 8, gpa);
	if (!t)
		return -ENOSPC;
	sdt_header(t, "MCFG", LEN, 1);
	put64(t + 44, PCI_ECAM_BASE);
	put16(t + 52, 0); /* segment */
	t[54] = 0;        /* first bus */
	t[55] = 0;        /* last bus */
	sdt_finish(t, LEN);
	return 0;
}

static int build_fadt(struct builder *b, uint64_t dsdt, uint64_t facs, uint64_t *gpa)
{
	enum { LEN = 276 };
	uint8_t *t = b_alloc(b, LEN, 8, gpa);
	if (!t)
		return -ENOSPC;
	sdt_header(t, "FACP", LEN, 6);
	/* FIRMWARE_CTRL stays 0: X_FIRMWARE_CTRL names the FACS (the spec allows one) */
	put32(t + 40, (uint32_t)dsdt);
	put16(t + 46, ACPI_PM_SCI_GSI);
	put32(t + 56, ACPI_PM1_EVT);
	put32(t + 64, ACPI_PM1_CNT);
	t[88] = ACPI_PM1_EVT_LEN;
	t[89] = ACPI_PM1_CNT_LEN;
	put16(t + 96, 101);  /* C2 not supported */
	put16(t + 98, 1001); /* C3 not supported */
	t[108] = 0x32;       /* RTC century register */
	put16(t + 109, 1u << 2); /* IAPC_BOOT_ARCH: no VGA; no 8042 keyboard advertised */
	/* flags: WBINVD, PROC_C1, SLP_BUTTON (none), RESET_REG_SUP; power button is fixed */
	put32(t + 112, 1u << 0 | 1u << 2 | 1u << 5 | 1u << 10);
	gas_io(t + 116, 8, 1, ACPI_RESET_PORT);
	t[128] = ACPI_RESET_VALUE;
	t[131] = 0; /* FADT minor version */
	put64(t + 132, facs);
	put64(t + 140, dsdt);
	gas_io(t + 148, 32, 2, ACPI_PM1_EVT);
	gas_io(t + 172, 16, 2, ACPI_PM1_CNT);
	memcpy(t + 268, "CVISOR\0\0", 8);
	sdt_finish(t, LEN);
	return 0;
}

static int build_madt(struct builder *b, unsigned nr_cpus, uint64_t *gpa)
{
	uint32_t len = 44 + 8 * nr_cpus + 12 + 10 + 6;
	uint8_t *t = b_alloc(b, len, 8, gpa), *p;
	if (!t)
		return -ENOSPC;
	sdt_header(t, "APIC", len, 5);
	put32(t + 36, (uint32_t)LAYOUT_LAPIC);
	put32(t + 40, 1); /* PCAT_COMPAT: the legacy PICs exist */
	p = t + 44;
	for (unsigned i = 0; i < nr_cpus; i++, p += 8) {
		p[0] = 0; /* Processor Local APIC */
		p[1] = 8;
		p[2] = (uint8_t)i; /* ACPI processor UID */
		p[3] = (uint8_t)i; /* APIC ID */
		put32(p + 4, 1);   /* enabled */
	}
	p[0] = 1; /* I/O APIC */
	p[1] = 12;
	p[2] = 0; /* IOAPIC ID: KVM's in-kernel IOAPIC answers to 0 */
	p[3] = 0;
	put32(p + 4, (uint32_t)LAYOUT_IOAPIC);
	put32(p + 8, 0); /* GSI base */
	p += 12;
	p[0] = 2; /* Interrupt Source Override: SCI, level-triggered, active high */
	p[1] = 10;
	p[2] = 0;
	p[3] = ACPI_PM_SCI_GSI;
	put32(p + 4, ACPI_PM_SCI_GSI);
	put16(p + 8, 0x1 | 0x3 << 2);
	p += 10;
	p[0] = 4; /* Local APIC NMI on LINT1 of every processor */
	p[1] = 6;
	p[2] = 0xff;
	put16(p + 3, 0);
	p[5] = 1;
	sdt_finish(t, len);
	return 0;
}

int acpi_build(const struct guest_mem *m, const struct acpi_config *cfg, uint64_t *rsdp_out)
{
	struct builder *b = calloc(1, sizeof(*b));
	uint64_t rsdp = 0, xsdt = 0, fadt = 0, facs = 0, dsdt = 0, madt = 0, mcfg = 0;
	struct aml aml = { 0 };
	uint8_t *t;
	int rc = -ENOSPC;

	if (!b)
		return -ENOMEM;
	if (cfg->nr_cpus == 0 || cfg->nr_cpus > ACPI_MAX_CPUS) {
		rc = -EINVAL;
		goto out;
	}
	/* RSDP first, at the start of the area, where the BIOS-area scan finds it too */
	uint8_t *r = b_alloc(b, 36, 16, &rsdp);
	if (!r)
		goto out;
	/* FACS: 64 bytes, 64-byte aligned, no checksum */
	if (!(t = b_alloc(b, 64, 64, &facs)))
		goto out;
	memcpy(t, "FACS", 4);
	put32(t + 4, 64);
	t[32] = 2;
	aml_bytes(&aml, s5_aml, sizeof(s5_aml));
	if (cfg->pci)
		dsdt_pci(&aml, cfg);
	if (aml.err) {
		rc = aml.err;
		goto out;
	}
	uint32_t dlen = (uint32_t)(36 + aml.len);
	if (!(t = b_alloc(b, dlen, 8, &dsdt)))
		goto out;
	sdt_header(t, "DSDT", dlen, 2);
	memcpy(t + 36, aml.data, aml.len);
	sdt_finish(t, dlen);
	if ((rc = build_fadt(b, dsdt, facs, &fadt)) || (rc = build_madt(b, cfg->nr_cpus, &madt)) ||
	    (cfg->pci && (rc = build_mcfg(b, &mcfg))))
		goto out;
	rc = -ENOSPC;
	unsigned nt = cfg->pci ? 3 : 2;
	if (!(t = b_alloc(b, 36 + nt * 8, 8, &xsdt)))
		goto out;
	sdt_header(t, "XSDT", 36 + nt * 8, 1);
	put64(t + 36, fadt);
	put64(t + 44, madt);
	if (cfg->pci)
		put64(t + 52, mcfg);
	sdt_finish(t, 36 + nt * 8);

	memcpy(r, "RSD PTR ", 8);
	memcpy(r + 9, OEM_ID, 6);
	r[15] = 2;
	put32(r + 20, 36);
	put64(r + 24, xsdt);
	r[8] = (uint8_t)-acpi_checksum(r, 20);
	r[32] = (uint8_t)-acpi_checksum(r, 36);

	rc = mem_write(m, LAYOUT_ACPI, b->buf, b->used);
	if (!rc)
		*rsdp_out = rsdp;
out:
	aml_free(&aml);
	free(b);
	return rc;
}
