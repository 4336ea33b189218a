/* snapcpu: make a snapshot claim that its guest used a CPU feature, for the
 * restore test of a host without it.
 *
 *   snapcpu STATE.BIN LEAF SUBLEAF REG BIT
 *
 * Sets bit BIT of register REG (eax, ebx, ecx or edx) of CPUID leaf
 * LEAF.SUBLEAF in every vCPU's saved CPUID record of a cvisor state.bin, then
 * writes the file's checksum anew (vm/snapshot.c: the last 4 bytes are the
 * CRC-32 of everything before), so that only the CPU check can refuse it.
 * The record (arch/x86/vcpu_state.c) is u32 tag 1, u32 length, then the
 * struct kvm_cpuid2 header (u32 nent, u32 pad) and 256 entries of 40 bytes
 * (function, index, flags, eax, ebx, ecx, edx, 3 x pad). Prints how many
 * records it changed; exit 1 when none. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REC_CPUID 1
#define NENT_MAX 256
#define ENTRY 40
#define REC_LEN (8 + NENT_MAX * ENTRY)

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t crc32(const uint8_t *p, size_t n)
{
	uint32_t c = 0xffffffffu;

	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = c >> 1 ^ (0xedb88320u & -(c & 1));
	}
	return ~c;
}

int main(int argc, char **argv)
{
	static const char *const regs[] = { "eax", "ebx", "ecx", "edx" };
	int reg = -1, changed = 0;

	if (argc != 6) {
		fprintf(stderr, "usage: snapcpu STATE.BIN LEAF SUBLEAF REG BIT\n");
		return 2;
	}
	uint32_t leaf = (uint32_t)strtoul(argv[2], NULL, 0), sub = (uint32_t)strtoul(argv[3], NULL, 0);
	unsigned bit = (unsigned)strtoul(argv[5], NULL, 0);
	for (int r = 0; r < 4; r++)
		if (!strcmp(argv[4], regs[r]))
			reg = r;
	if (reg < 0 || bit > 31) {
		fprintf(stderr, "snapcpu: REG is eax|ebx|ecx|edx, BIT 0-31\n");
		return 2;
	}
	FILE *f = fopen(argv[1], "r+b");
	if (!f) {
		perror(argv[1]);
		return 2;
	}
	fseek(f, 0, SEEK_END);
	long len = ftell(f);
	rewind(f);
	uint8_t *b = len > 8 ? malloc((size_t)len) : NULL;
	if (!b || fread(b, 1, (size_t)len, f) != (size_t)len) {
		fprintf(stderr, "snapcpu: cannot read %s\n", argv[1]);
		return 2;
	}
	size_t n = (size_t)len - 4;
	for (size_t off = 0; off + 8 + REC_LEN <= n; off++) { /* records need not be aligned */
		if (rd32(b + off) != REC_CPUID || rd32(b + off + 4) != REC_LEN)
			continue;
		uint8_t *c = b + off + 8;
		uint32_t nent = rd32(c);
		if (nent > NENT_MAX)
			continue;
		for (uint32_t i = 0; i < nent; i++) {
			uint8_t *e = c + 8 + (size_t)i * ENTRY;
			if (rd32(e) == leaf && rd32(e + 4) == sub) {
				wr32(e + 12 + 4 * reg, rd32(e + 12 + 4 * reg) | 1u << bit);
				changed++;
			}
		}
		off += 8 + REC_LEN - 1;
	}
	wr32(b + n, crc32(b, n));
	rewind(f);
	if (fwrite(b, 1, (size_t)len, f) != (size_t)len || fclose(f)) {
		fprintf(stderr, "snapcpu: cannot write %s\n", argv[1]);
		return 2;
	}
	printf("%d\n", changed);
	return changed ? 0 : 1;
}
