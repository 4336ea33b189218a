/* A small encoder for the ACPI Machine Language objects the DSDT needs
 * (ACPI 6.x, chapter 20): names, integers, packages, buffers, scopes,
 * devices and resource templates. */
#ifndef CVISOR_ARCH_X86_AML_H
#define CVISOR_ARCH_X86_AML_H

#include <stddef.h>
#include <stdint.h>

struct aml {
	uint8_t *data;
	size_t len, cap;
	int err;
};

/* Append raw bytes. */
void aml_bytes(struct aml *a, const void *p, size_t n);
/* Integer in the shortest encoding (ZeroOp/OneOp/Byte/Word/DWord/QWord prefix). */
void aml_int(struct aml *a, uint64_t v);
/* NameString: "\\_SB_.PCI0" style paths of 4-character segments. */
void aml_name(struct aml *a, const char *path);
/* Compressed EISA ID ("PNP0A08") as an integer. */
uint32_t aml_eisaid(const char *id);
/* Open a package-length scoped object (ScopeOp, DeviceOp, PackageOp, BufferOp
 * ...): writes the opcode bytes, reserves the PkgLength; returns a mark. */
size_t aml_open(struct aml *a, const uint8_t *op, size_t oplen);
/* Close it: fill in the PkgLength of everything written since the mark. */
void aml_close(struct aml *a, size_t mark);
/* Free the buffer. */
void aml_free(struct aml *a);

/* Resource descriptors for _CRS buffers (ACPI 6.4.3 large items). */
void aml_res_word_bus(struct aml *a, uint16_t min, uint16_t max);
void aml_res_word_io(struct aml *a, uint16_t min, uint16_t max);
void aml_res_dword_mem(struct aml *a, uint32_t min, uint32_t max, int cacheable);
void aml_res_qword_mem(struct aml *a, uint64_t min, uint64_t max, int cacheable);
void aml_res_io(struct aml *a, uint16_t port, uint8_t len);
void aml_res_end(struct aml *a);

#endif
