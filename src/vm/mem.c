/* Guest memory and its checked accessors. */
#include "vm/mem.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#define GIB4 0x100000000ULL

static void mem_layout(struct guest_mem *m, uint8_t *base, uint64_t size, uint64_t low_limit)
{
	uint64_t low = size < low_limit ? size : low_limit;

	memset(m, 0, sizeof(*m));
	m->base = base;
	m->size = size;
	m->regions[0] = (struct mem_region){ 0, low, base };
	m->nr_regions = 1;
	if (size > low) {
		m->regions[1] = (struct mem_region){ GIB4, size - low, base + low };
		m->nr_regions = 2;
	}
}

int mem_init(struct guest_mem *m, uint64_t size, uint64_t low_limit)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	madvise(p, size, MADV_HUGEPAGE); /* best effort: fewer TLB misses in the guest */
	mem_layout(m, p, size, low_limit);
	m->owned = 1;
	return 0;
}

int mem_init_file(struct guest_mem *m, uint64_t size, uint64_t low_limit, int fd)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	mem_layout(m, p, size, low_limit);
	m->owned = 1;
	return 0;
}

void mem_init_fake(struct guest_mem *m, uint8_t *buf, uint64_t size, uint64_t low_limit)
{
	mem_layout(m, buf, size, low_limit);
}

void mem_free(struct guest_mem *m)
{
	if (m->owned)
		munmap(m->base, m->size);
	memset(m, 0, sizeof(*m));
}

void *mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	for (int i = 0; i < m->nr_regions; i++) {
		const struct mem_region *r = &m->regions[i];
		/* written so that no sum can overflow */
		if (gpa >= r->gpa && gpa - r->gpa <= r->len && len <= r->len - (gpa - r->gpa))
			return r->hva + (gpa - r->gpa);
	}
	return NULL;
}

int mem_read(const struct guest_mem *m, uint64_t gpa, void *buf, size_t len)
{
	void *p = mem_ptr(m, gpa, len);
	if (!p)
		return -EFAULT;
	memcpy(buf, p, len);
	return 0;
}

int mem_write(const struct guest_mem *m, uint64_t gpa, const void *buf, size_t len)
{
	void *p = mem_ptr(m, gpa, len);
	if (!p)
		return -EFAULT;
	memcpy(p, buf, len);
	return 0;
}

void mem_mark_dirty(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	uint64_t *bits = atomic_load_explicit(&((struct guest_mem *)m)->dev_dirty, memory_order_acquire);
	uint8_t *p;

	if (!bits || !len || !(p = mem_ptr(m, gpa, len)))
		return;
	uint64_t first = (uint64_t)(p - m->base) >> 12, last = (uint64_t)(p - m->base + len - 1) >> 12;
	for (uint64_t pg = first; pg <= last; pg++)
		__atomic_fetch_or(&bits[pg / 64], 1ULL << (pg % 64), __ATOMIC_RELAXED);
}

uint64_t mem_low_end(const struct guest_mem *m)
{
	return m->nr_regions ? m->regions[0].len : 0;
}
