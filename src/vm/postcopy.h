/* Post-copy live migration: the parts without KVM or userfaultfd, unit-tested.
 *
 * After its pre-copy pass(es) a post-copy source pauses the VM and sends
 * (sections of migrate_stream.h):
 *   PC_ADVISE  (empty, right after the destination's go): this migration ends
 *              in post-copy; a destination without userfaultfd refuses ('N')
 *   PC_OWED    u64 pages | bitmap, one bit per 4 KiB page of guest RAM (bit
 *              p of word p/64): the pages whose copy on the destination is
 *              stale or missing; the rest is already right there (or zero)
 *   STATE, DONE as in pre-copy
 * The destination starts the guest and answers 'A'; a page the guest (or
 * the VMM) touches that is still owed is asked for with
 *   PC_REQ     u32 count | u64 offset[count]   (destination -> source)
 * while the source pushes every owed page in RAM sections (requests first),
 * then PC_END (empty); the destination answers 'A' once it has them all. */
#ifndef CVISOR_VM_POSTCOPY_H
#define CVISOR_VM_POSTCOPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PC_REQ_MAX 256 /* offsets per PC_REQ section */
#define PC_REQ_LEN_MAX (4 + PC_REQ_MAX * 8)
#define PC_MAX_PAGES (1ULL << 28) /* 1 TiB of 4 KiB pages */
#define PC_OWED_LEN_MAX (8 + PC_MAX_PAGES / 8)

/* A bitmap of pages with its count of set bits. */
struct pc_map {
	uint64_t npages;
	uint64_t count; /* bits set */
	uint64_t *bits;
};

/* 0 or -ENOMEM (-EINVAL over PC_MAX_PAGES). All clear. */
int pc_map_init(struct pc_map *m, uint64_t npages);
void pc_map_free(struct pc_map *m);
bool pc_map_test(const struct pc_map *m, uint64_t page);
/* Set / clear one bit; true when it changed (count follows). */
bool pc_map_set(struct pc_map *m, uint64_t page);
bool pc_map_clear(struct pc_map *m, uint64_t page);
/* The first set bit at or after `from`, or npages when there is none. */
uint64_t pc_map_next(const struct pc_map *m, uint64_t from);

/* PC_OWED payload of m: malloc'd in *out (8 + words * 8 bytes). 0 or -ENOMEM. */
int pc_owed_encode(const struct pc_map *m, uint8_t **out, uint64_t *len);
/* Parse a PC_OWED payload for a guest of npages pages into m (initialised
 * here): the page count must be npages, the length exact, no bit set past
 * the end. 0, -EPROTO or -ENOMEM. */
int pc_owed_decode(const uint8_t *p, uint64_t len, uint64_t npages, struct pc_map *m);

/* PC_REQ payload of n (1..PC_REQ_MAX) page offsets into buf
 * (PC_REQ_LEN_MAX bytes); returns its length. */
size_t pc_req_encode(const uint64_t *offs, uint32_t n, uint8_t *buf);
/* Parse a PC_REQ payload: 1..PC_REQ_MAX offsets, each page-aligned and below
 * size, length exact. Offsets go to offs (PC_REQ_MAX entries). 0 or -EPROTO. */
int pc_req_decode(const uint8_t *p, uint64_t len, uint64_t size, uint64_t *offs, uint32_t *n);

/* Walk a RAM payload (records of migrate_stream.h) for a guest of `size`
 * bytes, calling fn(opaque, offset, page or NULL for a zero page) for each
 * record; every record is checked as mstream_ram_apply does, and all of them
 * before the first call. Stops at fn's first non-zero return and returns it;
 * 0, or -EPROTO for a malformed payload. */
int pc_ram_walk(const uint8_t *p, uint64_t len, uint64_t size,
                int (*fn)(void *opaque, uint64_t off, const uint8_t *page), void *opaque);

#endif
