/* libFuzzer target for the split virtqueue parser (virtio/virtq.c).
 *
 * Fake guest memory: 64 KiB of host memory with a 32 KiB low limit, so the
 * guest sees [0, 32K) and [4G, 4G + 32K). The input is
 *
 *   byte 0   queue size: {1, 2, 4, 8, 16, 32, 64, 0 (invalid)}[b % 8];
 *            with bit 3, the raw next byte instead (mostly not a power of two)
 *   byte 1   features: bit 0 EVENT_IDX, bit 1 INDIRECT_DESC, bit 2 "fold"
 *            (below), bit 3 descriptor table in high RAM, bit 4 used ring in
 *            high RAM
 *   byte 2   n, the length of the operation program that follows
 *   n bytes  operations (below)
 *   rest     the guest memory image, copied from guest address 0 up
 *
 * Layout: available ring at 0x0 (<= 134 bytes), descriptor table at 0x100
 * (<= 1 KiB; or 4G + 0x100), used ring at 0x7000 (or 4G + 0x7000). Indirect
 * tables and buffers are wherever the guest's descriptors say.
 *
 * "fold" makes addresses likely to hit RAM: every 16-byte record in
 * [0x100, 0x6000) (descriptor table and candidate indirect tables) and in the
 * first 0x6000 bytes of high RAM gets addr = (raw bit 0 ? 4G : 0) +
 * (raw >> 1) % 0x8400 (a bit past the region end, so straddling happens), len
 * = raw % 0x1100 unless raw bit 31 is set, next = raw % 128; avail idx and ring
 * entries get folded to within a little of the queue size.
 *
 * Operations (low 4 bits of each byte; high 4 bits are an argument a):
 *   0-4  pop; on success push it back with in_len bytes written
 *   5    pop and hold the request (pushed later by 6)
 *   6    push the held requests (in reverse order if a is odd)
 *   7    pop, unpop, pop again: the same request must come back
 *   8    virtq_should_notify
 *   9    virtq_set_notify(a & 1)
 *   10   guest: avail->idx += a + 1
 *   11   guest: used_event = used idx + a - 8, and toggle NO_INTERRUPT
 *   12   save, load into a fresh queue (must succeed), save again (same bytes)
 *   13   device reset and re-enable with the same configuration
 *   14   guest: avail ring slot a = the next program byte
 *   15   guest: re-enable the queue with the descriptor table moved by a*4 KiB,
 *        without a device reset (the transport calls virtq_start again); only
 *        with -DFUZZ_VIRTQ_RESTART=1: today a failed virtq_start leaves the
 *        queue ready with NULL rings and the next push/notify call crashes
 *        (see tests/unit/test_virtq.c test_failed_restart_is_safe), which
 *        would stop every run within a second
 *
 * Invariants checked (abort on violation): pop returns -EINVAL, 0 or 1; a
 * broken queue stays broken (pop 0) until reset; a popped request has a head
 * below the queue size, 1..VIRTQ_MAX_SEGS segments, every iovec inside one RAM
 * region of the fake memory, out_len / in_len equal to the segment sums, and
 * walking the guest's chain again gives the same buffers with all readable
 * ones before all writable ones; pop writes nothing but avail_event (only with
 * EVENT_IDX and notifications on); push writes only its used entry and
 * used->idx; pending never exceeds the queue size. ASan catches any access
 * outside the fake memory, libFuzzer's -timeout any spin. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "state/sbuf.h"
#include "virtio/virtq.h"
#include "vm/mem.h"

#define G4 0x100000000ULL
#define MEM_SIZE 0x10000ULL
#define MEM_LOW 0x8000ULL
#define AVAIL_GPA 0x0ULL
#define DESC_GPA 0x100ULL
#define USED_GPA 0x7000ULL
#define FOLD_END 0x6000ULL
#define MAX_HELD 64

#ifndef FUZZ_VIRTQ_RESTART
#define FUZZ_VIRTQ_RESTART 0
#endif

struct prog {
	const uint8_t *p;
	size_t len, pos;
};

static uint8_t next_byte(struct prog *pr)
{
	return pr->pos < pr->len ? pr->p[pr->pos++] : 0;
}

struct ctx {
	uint8_t *buf;
	uint8_t *shadow;
	struct guest_mem m;
	struct virtq q;
	struct virtq_elem e, e2;
	uint16_t held[MAX_HELD];
	uint32_t held_len[MAX_HELD];
	unsigned nheld;
	/* configuration, for reset + re-enable */
	uint16_t size;
	uint64_t desc_gpa, used_gpa;
	bool event_idx, indirect;
};

#define CHECK(c)                   \
	do {                       \
		if (!(c))          \
			abort();   \
	} while (0)

static uint64_t ld64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static uint32_t ld32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static uint16_t ld16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}

static void st16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static uint8_t *hva(struct ctx *c, uint64_t gpa)
{
	return gpa >= G4 ? c->buf + MEM_LOW + (gpa - G4) : c->buf + gpa;
}

static void fold_record(uint8_t *p)
{
	uint64_t a = ld64(p);
	uint32_t len = ld32(p + 8);
	uint16_t next = ld16(p + 14);

	a = ((a & 1) ? G4 : 0) + (a >> 1) % 0x8400;
	if (!(len & 0x80000000u))
		len %= 0x1100;
	next %= 128;
	memcpy(p, &a, 8);
	memcpy(p + 8, &len, 4);
	memcpy(p + 14, &next, 2);
}

static void fold(struct ctx *c)
{
	for (uint64_t off = DESC_GPA; off + 16 <= FOLD_END; off += 16)
		fold_record(c->buf + off);
	for (uint64_t off = 0; off + 16 <= FOLD_END; off += 16)
		fold_record(c->buf + MEM_LOW + off);
	if (c->size) {
		uint8_t *av = hva(c, AVAIL_GPA);
		st16(av + 2, ld16(av + 2) % (c->size + 2));
		for (unsigned i = 0; i < c->size; i++)
			st16(av + 4 + 2 * i, ld16(av + 4 + 2 * i) % (c->size + 1));
	}
}

static void configure(struct ctx *c)
{
	virtq_reset(&c->q);
	c->q.size = c->size;
	c->q.desc_gpa = c->desc_gpa;
	c->q.avail_gpa = AVAIL_GPA;
	c->q.used_gpa = c->used_gpa;
	c->q.event_idx = c->event_idx;
	c->q.indirect = c->indirect;
	if (virtq_start(&c->q) == 0)
		CHECK(c->q.ready && !c->q.broken && c->q.desc && c->q.avail && c->q.used);
	else
		CHECK(c->q.broken);
	c->nheld = 0;
}

/* [p, p + len) inside one RAM region of the fake memory */
static bool in_one_region(struct ctx *c, const void *base, size_t len)
{
	const uint8_t *p = base;

	if (p >= c->buf && p <= c->buf + MEM_LOW && len <= (size_t)(c->buf + MEM_LOW - p))
		return true;
	if (p >= c->buf + MEM_LOW && p <= c->buf + MEM_SIZE && len <= (size_t)(c->buf + MEM_SIZE - p))
		return true;
	return false;
}

/* The used ring's avail_event slot, or NULL when the ring is not resolved. */
static uint8_t *avail_event_hva(struct ctx *c)
{
	return c->q.used ? (uint8_t *)c->q.used + 4 + 8 * (size_t)c->q.size : NULL;
}

static void check_elem(struct ctx *c, const struct virtq_elem *e)
{
	const struct virtq *q = &c->q;
	unsigned n = (unsigned)e->out_num + e->in_num;
	uint64_t out = 0, in = 0;

	CHECK(e->head < q->size);
	CHECK(n >= 1 && n <= VIRTQ_MAX_SEGS);
	for (unsigned k = 0; k < n; k++) {
		CHECK(e->iov[k].iov_base != NULL);
		CHECK(in_one_region(c, e->iov[k].iov_base, e->iov[k].iov_len));
		if (k < e->out_num)
			out += e->iov[k].iov_len;
		else
			in += e->iov[k].iov_len;
	}
	CHECK(out == e->out_len && in == e->in_len);

	/* walk the guest's chain again: same buffers, readable before writable */
	const uint8_t *table = q->desc;
	uint32_t tsize = q->size, i = e->head;
	bool indirect_seen = false;
	for (unsigned k = 0; k < n; k++) {
		CHECK(i < tsize);
		const uint8_t *d = table + 16 * (size_t)i;
		uint16_t flags = ld16(d + 12);
		if (flags & VIRTQ_DESC_F_INDIRECT) {
			CHECK(q->indirect && !indirect_seen && !(flags & VIRTQ_DESC_F_NEXT));
			uint32_t len = ld32(d + 8);
			CHECK(len && len % 16 == 0);
			table = mem_ptr(&c->m, ld64(d), len);
			CHECK(table != NULL);
			tsize = len / 16;
			indirect_seen = true;
			i = 0;
			d = table;
			flags = ld16(d + 12);
			CHECK(!(flags & VIRTQ_DESC_F_INDIRECT));
		}
		CHECK(!!(flags & VIRTQ_DESC_F_WRITE) == (k >= e->out_num));
		uint32_t len = ld32(d + 8);
		CHECK(e->iov[k].iov_len == len);
		CHECK(e->iov[k].iov_base == mem_ptr(&c->m, ld64(d), len));
		if (k + 1 < n) {
			CHECK(flags & VIRTQ_DESC_F_NEXT);
			i = ld16(d + 14);
		} else {
			CHECK(!(flags & VIRTQ_DESC_F_NEXT));
		}
	}
}

/* Pop with all the checks; returns the pop result. */
static int pop(struct ctx *c, struct virtq_elem *e)
{
	bool was_broken = c->q.broken;
	uint16_t last = c->q.last_avail;

	memcpy(c->shadow, c->buf, MEM_SIZE);
	int rc = virtq_pop(&c->q, e);
	CHECK(rc == 1 || rc == 0 || rc == -EINVAL);
	if (was_broken)
		CHECK(rc == 0 && c->q.broken);
	if (rc == -EINVAL)
		CHECK(c->q.broken && c->q.broken_why);
	CHECK(c->q.last_avail == (uint16_t)(last + (rc == 1)));
	/* pop writes nothing but (maybe) avail_event */
	uint8_t *ae = avail_event_hva(c);
	if (rc == 1 && c->q.event_idx && !c->q.no_notify) {
		CHECK(ld16(ae) == c->q.last_avail);
		memcpy(c->shadow + (ae - c->buf), ae, 2);
	}
	CHECK(memcmp(c->shadow, c->buf, MEM_SIZE) == 0);
	if (rc == 1)
		check_elem(c, e);
	return rc;
}

static void push(struct ctx *c, uint16_t head, uint32_t written)
{
	bool live = c->q.ready && c->q.used && head < c->q.size;
	uint16_t before = c->q.used_idx;

	memcpy(c->shadow, c->buf, MEM_SIZE);
	virtq_push(&c->q, head, written);
	if (!live) {
		CHECK(c->q.used_idx == before);
		CHECK(memcmp(c->shadow, c->buf, MEM_SIZE) == 0);
		return;
	}
	uint8_t *used = c->q.used;
	uint8_t *ent = used + 4 + 8 * (size_t)(before & (c->q.size - 1));
	CHECK(c->q.used_idx == (uint16_t)(before + 1));
	CHECK(ld16(used + 2) == c->q.used_idx);
	CHECK(ld32(ent) == head && ld32(ent + 4) == written);
	memcpy(c->shadow + (used + 2 - c->buf), used + 2, 2);
	memcpy(c->shadow + (ent - c->buf), ent, 8);
	CHECK(memcmp(c->shadow, c->buf, MEM_SIZE) == 0);
}

static void save_load(struct ctx *c)
{
	struct sbuf s = { 0 }, s2 = { 0 }, r;
	struct virtq n;

	virtq_save(&c->q, &s);
	CHECK(s.err == 0);
	memset(&n, 0, sizeof(n));
	n.mem = &c->m;
	sbuf_reader(&r, s.data, s.len);
	int rc = virtq_load(&n, &r);
	/* a queue that failed to start saves its bad configuration; it may be refused */
	if (rc == 0) {
		CHECK(r.pos == s.len);
		virtq_save(&n, &s2);
		CHECK(s2.err == 0 && s2.len == s.len && memcmp(s.data, s2.data, s.len) == 0);
		CHECK(n.ready == c->q.ready && n.broken == c->q.broken &&
		      n.last_avail == c->q.last_avail && n.used_idx == c->q.used_idx);
		if (n.ready)
			CHECK(n.desc == c->q.desc && n.avail == c->q.avail && n.used == c->q.used);
		c->q = n;
	} else {
		CHECK(rc == -EINVAL && (!c->q.ready || c->q.broken));
	}
	sbuf_free(&s);
	sbuf_free(&s2);
}

static struct ctx ctx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint16_t sizes[8] = { 1, 2, 4, 8, 16, 32, 64, 0 };
	struct ctx *c = &ctx;
	struct prog in = { data, size, 0 };

	uint8_t sb = next_byte(&in);
	uint8_t feat = next_byte(&in);
	uint8_t nops = next_byte(&in);
	struct prog ops = { data + in.pos, 0, 0 };
	ops.len = size - in.pos < nops ? size - in.pos : nops;
	in.pos += ops.len;

	c->buf = calloc(1, MEM_SIZE);
	c->shadow = malloc(MEM_SIZE);
	if (!c->buf || !c->shadow)
		abort();
	memcpy(c->buf, data + in.pos, size - in.pos < MEM_SIZE ? size - in.pos : MEM_SIZE);
	mem_init_fake(&c->m, c->buf, MEM_SIZE, MEM_LOW);
	memset(&c->q, 0, sizeof(c->q));
	c->q.mem = &c->m;

	c->size = (sb & 8) ? sb >> 4 : sizes[sb & 7];
	c->event_idx = feat & 1;
	c->indirect = feat & 2;
	c->desc_gpa = (feat & 8) ? G4 + DESC_GPA : DESC_GPA;
	c->used_gpa = (feat & 16) ? G4 + USED_GPA : USED_GPA;
	if (feat & 4)
		fold(c);
	configure(c);

	while (ops.pos < ops.len) {
		uint8_t op = next_byte(&ops);
		unsigned a = op >> 4;
		int rc;

		switch (op & 15) {
		case 0: case 1: case 2: case 3: case 4:
			if (pop(c, &c->e) == 1)
				push(c, c->e.head, c->e.in_len);
			break;
		case 5:
			if (c->nheld == MAX_HELD) {
				c->nheld--;
				push(c, c->held[c->nheld], c->held_len[c->nheld]);
			}
			if (pop(c, &c->e) == 1) {
				c->held[c->nheld] = c->e.head;
				c->held_len[c->nheld++] = c->e.in_len;
			}
			break;
		case 6:
			for (unsigned k = 0; k < c->nheld; k++) {
				unsigned j = (a & 1) ? c->nheld - 1 - k : k;
				push(c, c->held[j], c->held_len[j]);
			}
			c->nheld = 0;
			break;
		case 7:
			rc = pop(c, &c->e);
			if (rc == 1) {
				uint16_t pend = virtq_pending(&c->q);
				virtq_unpop(&c->q);
				CHECK(virtq_pending(&c->q) == pend + 1);
				CHECK(pop(c, &c->e2) == 1);
				CHECK(c->e2.head == c->e.head && c->e2.out_num == c->e.out_num &&
				      c->e2.in_num == c->e.in_num && c->e2.out_len == c->e.out_len &&
				      c->e2.in_len == c->e.in_len);
				CHECK(memcmp(c->e.iov, c->e2.iov,
				             sizeof(struct iovec) * (c->e.out_num + c->e.in_num)) == 0);
				push(c, c->e.head, 0);
			}
			break;
		case 8:
			(void)virtq_should_notify(&c->q);
			break;
		case 9:
			virtq_set_notify(&c->q, a & 1);
			CHECK(c->q.no_notify == !(a & 1));
			if (c->q.ready && c->q.used && !c->q.event_idx)
				CHECK(ld16(c->q.used) == ((a & 1) ? 0 : VIRTQ_USED_F_NO_NOTIFY));
			if (c->q.ready && c->q.used && c->q.event_idx && (a & 1))
				CHECK(ld16(avail_event_hva(c)) == c->q.last_avail);
			break;
		case 10:
			st16(c->buf + AVAIL_GPA + 2, (uint16_t)(ld16(c->buf + AVAIL_GPA + 2) + a + 1));
			break;
		case 11:
			if (c->size <= 64) {
				uint8_t *av = c->buf + AVAIL_GPA;
				st16(av + 4 + 2 * (size_t)c->size, (uint16_t)(c->q.used_idx + a - 8));
				st16(av, ld16(av) ^ VIRTQ_AVAIL_F_NO_INTERRUPT);
			}
			break;
		case 12:
			save_load(c);
			break;
		case 13:
			configure(c);
			break;
		case 14:
			st16(c->buf + AVAIL_GPA + 4 + 2 * a, next_byte(&ops));
			break;
		case 15:
			if (!FUZZ_VIRTQ_RESTART)
				break;
			/* the held requests stay in flight, as they would in a backend */
			c->q.desc_gpa = c->desc_gpa + 16 * (uint64_t)a * 0x100;
			rc = virtq_start(&c->q);
			CHECK(rc == 0 || (rc == -EINVAL && c->q.broken));
			break;
		}
		uint16_t pend = virtq_pending(&c->q);
		CHECK(pend <= c->q.size);
		if (c->q.broken)
			CHECK(pend == 0);
	}
	/* drain: pops stop within the queue size, and the queue ends consistent */
	for (unsigned k = 0; k <= c->size; k++)
		if (pop(c, &c->e) != 1)
			break;
		else
			push(c, c->e.head, c->e.in_len);
	CHECK(virtq_pop(&c->q, &c->e) != 1 || !c->size);

	free(c->buf);
	free(c->shadow);
	return 0;
}
