/* AML encoder. Package lengths are written after the contents are known:
 * aml_open reserves four bytes, aml_close moves the contents down to the
 * encoding's real size. */
#include "arch/x86/aml.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void aml_bytes(struct aml *a, const void *p, size_t n)
{
	if (a->err)
		return;
	if (a->len + n > a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 1024;
		while (cap < a->len + n)
			cap *= 2;
		uint8_t *d = realloc(a->data, cap);
		if (!d) {
			a->err = -ENOMEM;
			return;
		}
		a->data = d;
		a->cap = cap;
	}
	memcpy(a->data + a->len, p, n);
	a->len += n;
}

static void put_le(struct aml *a, uint64_t v, int n)
{
	uint8_t b[8];
	for (int i = 0; i < n; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	aml_bytes(a, b, (size_t)n);
}

void aml_int(struct aml *a, uint64_t v)
{
	uint8_t op;
	int n;

	if (v == 0 || v == 1) {
		op = (uint8_t)v; /* ZeroOp, OneOp */
		aml_bytes(a, &op, 1);
		return;
	}
	if (v <= 0xff)
		op = 0x0a, n = 1;
	else if (v <= 0xffff)
		op = 0x0b, n = 2;
	else if (v <= 0xffffffffULL)
		op = 0x0c, n = 4;
	else
		op = 0x0e, n = 8;
	aml_bytes(a, &op, 1);
	put_le(a, v, n);
}

void aml_name(struct aml *a, const char *path)
{
	uint8_t segs[16][4];
	int n = 0;

	if (*path == '\\') {
		aml_bytes(a, "\\", 1);
		path++;
	}
	while (*path && n < 16) {
		size_t l = strcspn(path, ".");
		memset(segs[n], '_', 4);
		memcpy(segs[n], path, l > 4 ? 4 : l);
		n++;
		path += l;
		if (*path == '.')
			path++;
	}
	if (n == 0) {
		aml_bytes(a, "", 1); /* NullName: "\\" alone is the root scope */
	} else if (n == 2) {
		aml_bytes(a, "\x2e", 1); /* DualNamePrefix */
	} else if (n > 2) {
		uint8_t mp[2] = { 0x2f, (uint8_t)n }; /* MultiNamePrefix */
		aml_bytes(a, mp, 2);
	}
	for (int i = 0; i < n; i++)
		aml_bytes(a, segs[i], 4);
}

uint32_t aml_eisaid(const char *id)
{
	uint32_t mfg = (uint32_t)((id[0] - 0x40) & 0x1f) << 10 | (uint32_t)((id[1] - 0x40) & 0x1f) << 5 |
	               (uint32_t)((id[2] - 0x40) & 0x1f);
	uint32_t prod = (uint32_t)strtoul(id + 3, NULL, 16);
	/* stored big-endian: mfg high byte, mfg low byte, product high, product low */
	return (mfg >> 8) | (mfg & 0xff) << 8 | ((prod >> 8) & 0xff) << 16 | (prod & 0xff) << 24;
}

size_t aml_open(struct aml *a, const uint8_t *op, size_t oplen)
{
	static const uint8_t reserve[4];
	aml_bytes(a, op, oplen);
	size_t mark = a->len;
	aml_bytes(a, reserve, 4);
	return mark;
}

void aml_close(struct aml *a, size_t mark)
{
	if (a->err)
		return;
	size_t body = a->len - mark - 4;
	size_t n = body + 1 <= 63 ? 1 : body + 2 <= 0xfff ? 2 : body + 3 <= 0xfffff ? 3 : 4;
	size_t total = body + n; /* PkgLength counts itself */
	uint8_t *p = a->data + mark;

	memmove(p + n, p + 4, body);
	if (n == 1) {
		p[0] = (uint8_t)total;
	} else {
		p[0] = (uint8_t)((n - 1) << 6 | (total & 0xf));
		for (size_t i = 1; i < n; i++)
			p[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
	}
	a->len -= 4 - n;
}

void aml_free(struct aml *a)
{
	free(a->data);
	memset(a, 0, sizeof(*a));
}

/* address space descriptors: producer, MinFixed, MaxFixed, positive decode */
#define GEN_FLAGS 0x0c

static void addr_desc(struct aml *a, uint8_t tag, int width, uint8_t type, uint8_t tflags,
                      uint64_t min, uint64_t max)
{
	uint8_t hdr[6] = { tag, (uint8_t)(3 + 5 * width), 0, type, GEN_FLAGS, tflags };
	aml_bytes(a, hdr, sizeof(hdr));
	put_le(a, 0, width);             /* granularity */
	put_le(a, min, width);           /* range minimum */
	put_le(a, max, width);           /* range maximum */
	put_le(a, 0, width);             /* translation offset */
	put_le(a, max - min + 1, width); /* length */
}

void aml_res_word_bus(struct aml *a, uint16_t min, uint16_t max)
{
	addr_desc(a, 0x88, 2, 2, 0, min, max);
}

void aml_res_word_io(struct aml *a, uint16_t min, uint16_t max)
{
	addr_desc(a, 0x88, 2, 1, 3 /* entire range */, min, max);
}

void aml_res_dword_mem(struct aml *a, uint32_t min, uint32_t max, int cacheable)
{
	addr_desc(a, 0x87, 4, 0, cacheable ? 0x3 : 0x1, min, max);
}

void aml_res_qword_mem(struct aml *a, uint64_t min, uint64_t max, int cacheable)
{
	addr_desc(a, 0x8a, 8, 0, cacheable ? 0x3 : 0x1, min, max);
}

void aml_res_io(struct aml *a, uint16_t port, uint8_t len)
{
	uint8_t d[8] = { 0x47, 1, (uint8_t)port, (uint8_t)(port >> 8), (uint8_t)port,
		         (uint8_t)(port >> 8), 1, len };
	aml_bytes(a, d, sizeof(d));
}

void aml_res_end(struct aml *a)
{
	uint8_t d[2] = { 0x79, 0 };
	aml_bytes(a, d, 2);
}
