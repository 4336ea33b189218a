/* Growable byte buffer for device state save/load (snapshots, migration). */
#ifndef CVISOR_STATE_SBUF_H
#define CVISOR_STATE_SBUF_H

#include <stddef.h>
#include <stdint.h>

struct sbuf {
	uint8_t *data;
	size_t len; /* bytes written, or total bytes when reading */
	size_t cap;
	size_t pos; /* read cursor */
	int err;    /* sticky: -ENOMEM on write, -EOVERFLOW on short read */
};

/* Wrap existing bytes for reading (not copied, not freed). */
void sbuf_reader(struct sbuf *b, const void *data, size_t len);
/* Release a writer's memory. */
void sbuf_free(struct sbuf *b);
/* Append raw bytes / fixed-width little-endian integers. */
void sbuf_put(struct sbuf *b, const void *p, size_t n);
void sbuf_put_u8(struct sbuf *b, uint8_t v);
void sbuf_put_u32(struct sbuf *b, uint32_t v);
void sbuf_put_u64(struct sbuf *b, uint64_t v);
/* Read counterparts; on a short buffer they return zeroes and set err. */
void sbuf_get(struct sbuf *b, void *p, size_t n);
uint8_t sbuf_get_u8(struct sbuf *b);
uint32_t sbuf_get_u32(struct sbuf *b);
uint64_t sbuf_get_u64(struct sbuf *b);

#endif
