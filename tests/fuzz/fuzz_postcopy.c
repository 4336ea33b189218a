/* libFuzzer target for the post-copy payloads (vm/postcopy.c): the owed-page
 * bitmap (PC_OWED), the page request (PC_REQ), the RAM walk the destination
 * installs pages with, and the page bitmap itself.
 *
 * Input: one selector byte, two parameter bytes (a, b), then the payload.
 *   0  PC_OWED for a guest of a | b << 8 pages: a map that decodes has no
 *      bit past the end, its count is its set bits, and it encodes back to
 *      the same bytes
 *   1  PC_REQ for a guest of (a | b << 8) + 1 pages: what decodes is 1..
 *      PC_REQ_MAX aligned offsets inside, and encodes back to the same bytes
 *   2  RAM payload for a guest of a + 1 pages, the callback failing at call
 *      b (0: never): pc_ram_walk accepts exactly what mstream_ram_apply
 *      accepts, calls back for each record in order with pages inside the
 *      payload, none before the whole payload checked
 *   3  as 2, with the payload built from 3-byte records (ram_built) so
 *      that pages of data come from short inputs
 *   4  the payload is a program on a map of a | b << 8 pages (set, clear,
 *      next at 16-bit indexes, some past the end), checked against a byte
 *      per page
 * Checks: no crash, no out-of-bounds access, no leak, the properties above. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vm/migrate_stream.h"
#include "vm/postcopy.h"

#define MAX_INPUT (1 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void owed(const uint8_t *p, size_t n, uint64_t npages)
{
	struct pc_map m;
	uint8_t *out;
	uint64_t len, seen = 0;

	if (pc_owed_decode(p, n, npages, &m))
		return;
	if (m.npages != npages)
		__builtin_trap();
	for (uint64_t pg = pc_map_next(&m, 0); pg < m.npages; pg = pc_map_next(&m, pg + 1)) {
		if (!pc_map_test(&m, pg))
			__builtin_trap();
		seen++;
	}
	if (seen != m.count)
		__builtin_trap();
	if (pc_owed_encode(&m, &out, &len))
		abort();
	if (len != n || memcmp(out, p, n))
		__builtin_trap();
	free(out);
	pc_map_free(&m);
}

static void req(const uint8_t *p, size_t n, uint64_t size)
{
	static uint64_t offs[PC_REQ_MAX];
	static uint8_t buf[PC_REQ_LEN_MAX];
	uint32_t cnt = 0;

	if (pc_req_decode(p, n, size, offs, &cnt))
		return;
	if (cnt == 0 || cnt > PC_REQ_MAX)
		__builtin_trap();
	for (uint32_t i = 0; i < cnt; i++) {
		if (offs[i] % MS_PAGE || offs[i] >= size)
			__builtin_trap();
	}
	size_t len = pc_req_encode(offs, cnt, buf);
	if (len != n || memcmp(buf, p, n))
		__builtin_trap();
}

struct walk {
	const uint8_t *p;
	uint64_t len, size;
	uint64_t pos; /* where the next record must start */
	uint32_t calls, fail_at;
};

static int on_page(void *opaque, uint64_t off, const uint8_t *page)
{
	struct walk *w = opaque;
	uint64_t rec;

	/* records come in order: this one is at w->pos */
	if (w->pos + 8 > w->len)
		__builtin_trap();
	memcpy(&rec, w->p + w->pos, 8);
	if ((rec & ~(uint64_t)(MS_PAGE - 1)) != off || off % MS_PAGE || off >= w->size ||
	    w->size - off < MS_PAGE)
		__builtin_trap();
	w->pos += 8;
	if (page) {
		if (page != w->p + w->pos || w->pos + MS_PAGE > w->len || (rec & MS_REC_ZERO))
			__builtin_trap();
		w->pos += MS_PAGE;
	} else if (!(rec & MS_REC_ZERO)) {
		__builtin_trap();
	}
	if (++w->calls == w->fail_at)
		return -EIO;
	return 0;
}

static void ram(const uint8_t *p, size_t n, uint64_t pages, uint32_t fail_at)
{
	static uint8_t mem[256 * MS_PAGE];
	struct walk w = { .p = p, .len = n, .size = pages * MS_PAGE, .fail_at = fail_at };

	int rc = pc_ram_walk(p, n, w.size, on_page, &w);
	int ref = mstream_ram_apply(p, n, mem, w.size, NULL, NULL);
	if (rc == -EPROTO) {
		if (ref == 0 || w.calls)
			__builtin_trap(); /* refused what pre-copy takes, or called back first */
	} else if (rc == -EIO) {
		if (ref || w.calls != fail_at)
			__builtin_trap();
	} else if (rc == 0) {
		if (ref || w.pos != n)
			__builtin_trap();
	} else {
		__builtin_trap();
	}
}

/* Records in 3 bytes each (kind, u16 page), built into a RAM payload so that
 * data pages are reached with short inputs: kind 0 a zero record, 1 a page of
 * data, 2 a record with other flag bits, 3 a data record whose page is cut
 * short (and ends the payload). */
static void ram_built(const uint8_t *p, size_t n, uint64_t pages, uint32_t fail_at)
{
	static uint8_t buf[64 * (8 + MS_PAGE)];
	size_t used = 0;

	for (size_t i = 0; i + 3 <= n && used + 8 + MS_PAGE <= sizeof(buf); i += 3) {
		uint64_t rec = ((uint64_t)p[i + 1] | (uint64_t)p[i + 2] << 8) * MS_PAGE;
		uint8_t kind = p[i] & 3;
		rec |= kind == 0 ? MS_REC_ZERO : kind == 2 ? (uint64_t)(p[i] >> 2) << 1 | 1 : 0;
		memcpy(buf + used, &rec, 8);
		used += 8;
		if (kind == 0 || kind == 2)
			continue;
		memset(buf + used, p[i], MS_PAGE);
		if (kind == 3) {
			used += p[i] >> 2;
			break;
		}
		used += MS_PAGE;
	}
	ram(buf, used, pages, fail_at);
}

static void map_program(const uint8_t *p, size_t n, uint64_t npages)
{
	static uint8_t model[65536];
	struct pc_map m;
	uint64_t count = 0;

	if (pc_map_init(&m, npages))
		abort();
	memset(model, 0, npages);
	for (size_t i = 0; i + 3 <= n; i += 3) {
		uint64_t pg = (uint64_t)p[i + 1] | (uint64_t)p[i + 2] << 8;
		bool in = pg < npages;
		switch (p[i] % 3) {
		case 0: {
			bool changed = pc_map_set(&m, pg);
			if (changed != (in && !model[pg]))
				__builtin_trap();
			if (changed) {
				model[pg] = 1;
				count++;
			}
			break;
		}
		case 1: {
			bool changed = pc_map_clear(&m, pg);
			if (changed != (in && model[pg]))
				__builtin_trap();
			if (changed) {
				model[pg] = 0;
				count--;
			}
			break;
		}
		default: {
			uint64_t want = pg;
			while (want < npages && !model[want])
				want++;
			if (want > npages)
				want = npages;
			if (pc_map_next(&m, pg) != want)
				__builtin_trap();
		}
		}
		if (m.count != count || pc_map_test(&m, pg) != (in && model[pg]))
			__builtin_trap();
	}
	pc_map_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3 || size > MAX_INPUT)
		return 0;
	uint8_t sel = data[0], a = data[1], b = data[2];
	uint64_t ab = (uint64_t)a | (uint64_t)b << 8;
	data += 3;
	size -= 3;
	switch (sel % 5) {
	case 0: owed(data, size, ab); break;
	case 1: req(data, size, (ab + 1) * MS_PAGE); break;
	case 2: ram(data, size, (uint64_t)a + 1, b); break;
	case 3: ram_built(data, size, (uint64_t)a + 1, b); break;
	default: map_program(data, size, ab); break;
	}
	return 0;
}
