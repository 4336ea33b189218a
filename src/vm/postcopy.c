/* Post-copy live migration: page bitmaps and the PC_OWED / PC_REQ payloads
 * (format in postcopy.h). */
#include "vm/postcopy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vm/migrate_stream.h"

int pc_map_init(struct pc_map *m, uint64_t npages)
{
	memset(m, 0, sizeof(*m));
	if (npages > PC_MAX_PAGES)
		return -EINVAL;
	m->bits = calloc((npages + 63) / 64 ? (npages + 63) / 64 : 1, 8);
	if (!m->bits)
		return -ENOMEM;
	m->npages = npages;
	return 0;
}

void pc_map_free(struct pc_map *m)
{
	free(m->bits);
	memset(m, 0, sizeof(*m));
}

bool pc_map_test(const struct pc_map *m, uint64_t page)
{
	return page < m->npages && ((m->bits[page / 64] >> (page % 64)) & 1);
}

bool pc_map_set(struct pc_map *m, uint64_t page)
{
	if (page >= m->npages || pc_map_test(m, page))
		return false;
	m->bits[page / 64] |= 1ULL << (page % 64);
	m->count++;
	return true;
}

bool pc_map_clear(struct pc_map *m, uint64_t page)
{
	if (!pc_map_test(m, page))
		return false;
	m->bits[page / 64] &= ~(1ULL << (page % 64));
	m->count--;
	return true;
}

uint64_t pc_map_next(const struct pc_map *m, uint64_t from)
{
	if (from >= m->npages)
		return m->npages;
	uint64_t w = from / 64;
	uint64_t word = m->bits[w] & (~0ULL << (from % 64));
	for (;;) {
		if (word) {
			uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(word);
			return p < m->npages ? p : m->npages;
		}
		if (++w >= (m->npages + 63) / 64)
			return m->npages;
		word = m->bits[w];
	}
}

int pc_owed_encode(const struct pc_map *m, uint8_t **out, uint64_t *len)
{
	uint64_t words = (m->npages + 63) / 64;
	*len = 8 + words * 8;
	*out = malloc(*len);
	if (!*out)
		return -ENOMEM;
	memcpy(*out, &m->npages, 8);
	memcpy(*out + 8, m->bits, words * 8);
	return 0;
}

int pc_owed_decode(const uint8_t *p, uint64_t len, uint64_t npages, struct pc_map *m)
{
	uint64_t n;

	memset(m, 0, sizeof(*m));
	if (len < 8 || npages > PC_MAX_PAGES)
		return -EPROTO;
	memcpy(&n, p, 8);
	uint64_t words = (npages + 63) / 64;
	if (n != npages || len - 8 != words * 8)
		return -EPROTO;
	if (pc_map_init(m, npages))
		return -ENOMEM;
	memcpy(m->bits, p + 8, words * 8);
	if (npages % 64 && (m->bits[words - 1] >> (npages % 64))) {
		pc_map_free(m); /* a page past the end */
		return -EPROTO;
	}
	for (uint64_t w = 0; w < words; w++)
		m->count += (uint64_t)__builtin_popcountll(m->bits[w]);
	return 0;
}

size_t pc_req_encode(const uint64_t *offs, uint32_t n, uint8_t *buf)
{
	memcpy(buf, &n, 4);
	memcpy(buf + 4, offs, (size_t)n * 8);
	return 4 + (size_t)n * 8;
}

int pc_req_decode(const uint8_t *p, uint64_t len, uint64_t size, uint64_t *offs, uint32_t *n)
{
	uint32_t cnt;

	if (len < 4)
		return -EPROTO;
	memcpy(&cnt, p, 4);
	if (cnt == 0 || cnt > PC_REQ_MAX || len != 4 + (uint64_t)cnt * 8)
		return -EPROTO;
	for (uint32_t i = 0; i < cnt; i++) {
		memcpy(&offs[i], p + 4 + (size_t)i * 8, 8);
		if ((offs[i] & (MS_PAGE - 1)) || offs[i] >= size)
			return -EPROTO;
	}
	*n = cnt;
	return 0;
}

/* One pass over the records: check only (fn NULL) or call fn. */
static int walk(const uint8_t *p, uint64_t len, uint64_t size,
                int (*fn)(void *opaque, uint64_t off, const uint8_t *page), void *opaque)
{
	for (uint64_t i = 0; i < len;) {
		uint64_t rec;
		if (len - i < 8)
			return -EPROTO;
		memcpy(&rec, p + i, 8);
		i += 8;
		uint64_t off = rec & ~(MS_PAGE - 1), flags = rec & (MS_PAGE - 1);
		if ((flags & ~MS_REC_ZERO) || off >= size || size - off < MS_PAGE)
			return -EPROTO;
		const uint8_t *page = NULL;
		if (!(flags & MS_REC_ZERO)) {
			if (len - i < MS_PAGE)
				return -EPROTO;
			page = p + i;
			i += MS_PAGE;
		}
		int rc = fn ? fn(opaque, off, page) : 0;
		if (rc)
			return rc;
	}
	return 0;
}

int pc_ram_walk(const uint8_t *p, uint64_t len, uint64_t size,
                int (*fn)(void *opaque, uint64_t off, const uint8_t *page), void *opaque)
{
	int rc = walk(p, len, size, NULL, NULL);
	return rc ? rc : walk(p, len, size, fn, opaque);
}
