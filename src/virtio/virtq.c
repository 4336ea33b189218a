/* Split virtqueues (virtio 1.2, 2.7). Layout in guest memory:
 *   descriptor table: size x { le64 addr; le32 len; le16 flags; le16 next }
 *   available ring:   le16 flags; le16 idx; le16 ring[size]; le16 used_event
 *   used ring:        le16 flags; le16 idx; { le32 id; le32 len } ring[size]; le16 avail_event
 * The guest may rewrite any of it at any time, concurrently: every field is
 * read once into a local copy and checked there, and the indices are read
 * with acquire semantics so ring entries are never read before the index
 * that published them. x86 is little-endian, as virtio 1.x rings are. */
#include "virtio/virtq.h"

#include <errno.h>
#include <string.h>

#include "util/log.h"

struct vdesc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

static inline uint16_t ld16(const void *p)
{
	return __atomic_load_n((const uint16_t *)p, __ATOMIC_RELAXED);
}

static inline uint16_t ld16_acquire(const void *p)
{
	return __atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE);
}

static inline void st16(void *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)p, v, __ATOMIC_RELAXED);
}

static inline void st16_release(void *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)p, v, __ATOMIC_RELEASE);
}

/* ring field addresses */
static inline uint16_t *avail_flags(struct virtq *q) { return (uint16_t *)q->avail; }
static inline uint16_t *avail_idx(struct virtq *q) { return (uint16_t *)q->avail + 1; }
static inline uint16_t *avail_ring(struct virtq *q, uint16_t i) { return (uint16_t *)q->avail + 2 + i; }
static inline uint16_t *used_event(struct virtq *q) { return (uint16_t *)q->avail + 2 + q->size; }
static inline uint16_t *used_flags(struct virtq *q) { return (uint16_t *)q->used; }
static inline uint16_t *used_idx(struct virtq *q) { return (uint16_t *)q->used + 1; }
static inline uint32_t *used_ring(struct virtq *q, uint16_t i) { return (uint32_t *)((uint8_t *)q->used + 4 + 8 * (size_t)i); }
static inline uint16_t *avail_event(struct virtq *q) { return (uint16_t *)((uint8_t *)q->used + 4 + 8 * (size_t)q->size); }

static int virtq_break(struct virtq *q, const char *why)
{
	if (!q->broken)
		log_debug("virtqueue broken by the guest: %s", why);
	q->broken = true;
	q->broken_why = why;
	return -EINVAL;
}

int virtq_start(struct virtq *q)
{
	size_t n = q->size;

	q->ready = false; /* only a queue whose rings resolved is ever ready */

	if (n == 0 || n > VIRTQ_MAX_SIZE || (n & (n - 1)))
		return virtq_break(q, "queue size is not a power of two up to 32768");
	if ((q->desc_gpa & 15) || (q->avail_gpa & 1) || (q->used_gpa & 3))
		return virtq_break(q, "misaligned ring address");
	q->desc = mem_ptr(q->mem, q->desc_gpa, 16 * n);
	q->avail = mem_ptr(q->mem, q->avail_gpa, 6 + 2 * n);
	q->used = mem_ptr(q->mem, q->used_gpa, 6 + 8 * n);
	if (!q->desc || !q->avail || !q->used) {
		q->desc = q->avail = q->used = NULL;
		return virtq_break(q, "ring outside guest RAM");
	}
	q->broken = false;
	q->broken_why = NULL;
	q->ready = true;
	return 0;
}

void virtq_reset(struct virtq *q)
{
	const struct guest_mem *mem = q->mem;
	memset(q, 0, sizeof(*q));
	q->mem = mem;
}

static struct vdesc read_desc(const uint8_t *table, uint32_t i)
{
	struct vdesc d;
	/* one copy, checked afterwards: the guest may change the descriptor while we
	 * look at it. memcpy, because an indirect table need not be aligned. */
	memcpy(&d, table + 16 * (size_t)i, sizeof(d));
	return d;
}

int virtq_pop(struct virtq *q, struct virtq_elem *e)
{
	if (!q->ready || q->broken)
		return 0;
	uint16_t avail = ld16_acquire(avail_idx(q));
	uint16_t pending = (uint16_t)(avail - q->last_avail);
	if (pending == 0)
		return 0;
	if (pending > q->size)
		return virtq_break(q, "available index ran ahead by more than the queue size");
	uint16_t head = ld16(avail_ring(q, q->last_avail & (q->size - 1)));
	if (head >= q->size)
		return virtq_break(q, "available ring names a descriptor beyond the queue");

	const uint8_t *table = q->desc;
	uint32_t table_size = q->size, i = head, walked = 0;
	uint64_t out_len = 0, in_len = 0;
	unsigned segs = 0;
	bool in_indirect = false;

	e->out_num = e->in_num = 0;
	for (;;) {
		if (walked++ >= table_size)
			return virtq_break(q, "descriptor chain longer than its table (a loop)");
		struct vdesc d = read_desc(table, i);

		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			if (!q->indirect)
				return virtq_break(q, "indirect descriptor without the feature");
			if (in_indirect)
				return virtq_break(q, "indirect descriptor inside an indirect table");
			if (d.flags & VIRTQ_DESC_F_NEXT)
				return virtq_break(q, "indirect descriptor with NEXT set");
			if (d.len == 0 || (d.len & 15) || d.len / 16 > VIRTQ_MAX_SIZE)
				return virtq_break(q, "indirect table size is not a multiple of 16 up to 32768 entries");
			table = mem_ptr(q->mem, d.addr, d.len);
			if (!table)
				return virtq_break(q, "indirect table outside guest RAM");
			table_size = d.len / 16;
			in_indirect = true;
			i = 0;
			walked = 0;
			continue;
		}
		void *buf = mem_ptr(q->mem, d.addr, d.len);
		if (!buf)
			return virtq_break(q, "buffer outside guest RAM");
		if (segs >= VIRTQ_MAX_SEGS)
			return virtq_break(q, "request has too many segments");
		if (d.flags & VIRTQ_DESC_F_WRITE) {
			e->in_num++;
			in_len += d.len;
			mem_mark_dirty(q->mem, d.addr, d.len);
		} else {
			if (e->in_num)
				return virtq_break(q, "device-readable buffer after a writable one");
			e->out_num++;
			out_len += d.len;
		}
		e->iov[segs].iov_base = buf;
		e->iov[segs].iov_len = d.len;
		segs++;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			break;
		i = d.next;
		if (i >= table_size)
			return virtq_break(q, "next descriptor index beyond its table");
	}
	if (out_len > UINT32_MAX || in_len > UINT32_MAX)
		return virtq_break(q, "request larger than 4 GiB");
	e->out_len = (uint32_t)out_len;
	e->in_len = (uint32_t)in_len;
	e->head = head;
	q->last_avail++;
	if (q->event_idx && !q->no_notify)
		st16(avail_event(q), q->last_avail);
	mem_mark_dirty(q->mem, q->used_gpa, 6 + 8ULL * q->size); /* used ring: ours to write */
	return 1;
}

void virtq_unpop(struct virtq *q)
{
	q->last_avail--;
}

void virtq_push(struct virtq *q, uint16_t head, uint32_t written)
{
	if (!q->ready || head >= q->size)
		return;
	uint32_t *slot = used_ring(q, q->used_idx & (q->size - 1));
	__atomic_store_n(slot, (uint32_t)head, __ATOMIC_RELAXED);
	__atomic_store_n(slot + 1, written, __ATOMIC_RELAXED);
	q->used_idx++;
	st16_release(used_idx(q), q->used_idx);
}

void virtq_push_batch(struct virtq *q, const uint16_t *heads, const uint32_t *written, unsigned n)
{
	uint16_t idx = q->used_idx;

	if (!q->ready || n > q->size)
		return;
	for (unsigned k = 0; k < n; k++) {
		if (heads[k] >= q->size)
			continue;
		uint32_t *slot = used_ring(q, idx & (q->size - 1));
		__atomic_store_n(slot, (uint32_t)heads[k], __ATOMIC_RELAXED);
		__atomic_store_n(slot + 1, written[k], __ATOMIC_RELAXED);
		idx++;
	}
	q->used_idx = idx;
	st16_release(used_idx(q), idx);
}

bool virtq_should_notify(struct virtq *q)
{
	if (!q->ready)
		return false;
	/* the used index store must be visible before we read the driver's wishes */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!q->event_idx)
		return !(ld16(avail_flags(q)) & VIRTQ_AVAIL_F_NO_INTERRUPT);
	uint16_t old = q->signalled_used, now = q->used_idx;
	bool valid = q->signalled_used_valid;
	q->signalled_used = now;
	q->signalled_used_valid = true;
	if (!valid)
		return true;
	uint16_t event = ld16(used_event(q));
	return (uint16_t)(now - event - 1) < (uint16_t)(now - old);
}

void virtq_set_notify(struct virtq *q, bool enable)
{
	q->no_notify = !enable;
	if (!q->ready)
		return;
	if (q->event_idx) {
		if (enable)
			st16(avail_event(q), q->last_avail);
	} else {
		st16(used_flags(q), enable ? 0 : VIRTQ_USED_F_NO_NOTIFY);
	}
	/* make the request visible before the caller re-reads avail->idx */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

uint16_t virtq_pending(struct virtq *q)
{
	if (!q->ready || q->broken)
		return 0;
	uint16_t n = (uint16_t)(ld16_acquire(avail_idx(q)) - q->last_avail);
	return n <= q->size ? n : 0;
}

void virtq_save(const struct virtq *q, struct sbuf *out)
{
	sbuf_put_u32(out, q->size);
	sbuf_put_u64(out, q->desc_gpa);
	sbuf_put_u64(out, q->avail_gpa);
	sbuf_put_u64(out, q->used_gpa);
	sbuf_put_u8(out, (uint8_t)(q->ready | q->event_idx << 1 | q->indirect << 2 |
	                           q->signalled_used_valid << 3 | q->no_notify << 4 |
	                           q->broken << 5));
	sbuf_put_u32(out, q->last_avail);
	sbuf_put_u32(out, q->used_idx);
	sbuf_put_u32(out, q->signalled_used);
}

int virtq_load(struct virtq *q, struct sbuf *in)
{
	struct virtq n;

	virtq_reset(&n);
	n.mem = q->mem;
	uint32_t size = sbuf_get_u32(in);
	n.desc_gpa = sbuf_get_u64(in);
	n.avail_gpa = sbuf_get_u64(in);
	n.used_gpa = sbuf_get_u64(in);
	uint8_t fl = sbuf_get_u8(in);
	uint32_t last_avail = sbuf_get_u32(in), used = sbuf_get_u32(in), sig = sbuf_get_u32(in);
	/* a disabled queue may hold whatever size the driver wrote; virtq_start judges it */
	if (in->err || size > VIRTQ_MAX_SIZE || ((fl & 1) && (size & (size - 1))) || last_avail > 0xffff ||
	    used > 0xffff || sig > 0xffff || (fl & ~0x3f))
		return -EINVAL;
	n.size = (uint16_t)size;
	n.event_idx = fl & 2;
	n.indirect = fl & 4;
	n.signalled_used_valid = fl & 8;
	n.no_notify = fl & 16;
	n.last_avail = (uint16_t)last_avail;
	n.used_idx = (uint16_t)used;
	n.signalled_used = (uint16_t)sig;
	if ((fl & 1) && virtq_start(&n) < 0)
		return -EINVAL;
	n.broken = fl & 32;
	*q = n;
	return 0;
}
