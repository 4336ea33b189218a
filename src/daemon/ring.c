/* Console scrollback ring. */
#include "daemon/ring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int ring_init(struct ring *r, size_t size)
{
	size_t s = 1;

	while (s < size)
		s <<= 1;
	r->buf = malloc(s);
	if (!r->buf)
		return -ENOMEM;
	r->size = s;
	r->head = 0;
	return 0;
}

void ring_free(struct ring *r)
{
	free(r->buf);
	r->buf = NULL;
	r->size = 0;
	r->head = 0;
}

void ring_write(struct ring *r, const void *data, size_t n)
{
	const uint8_t *p = data;

	if (n > r->size) { /* only the newest size bytes can stay */
		r->head += n - r->size;
		p += n - r->size;
		n = r->size;
	}
	while (n) {
		size_t at = (size_t)(r->head & (r->size - 1));
		size_t chunk = r->size - at < n ? r->size - at : n;
		memcpy(r->buf + at, p, chunk);
		r->head += chunk;
		p += chunk;
		n -= chunk;
	}
}

uint64_t ring_tail(const struct ring *r)
{
	return r->head > r->size ? r->head - r->size : 0;
}

uint64_t ring_peek(const struct ring *r, uint64_t *pos, const uint8_t **data, size_t *n)
{
	uint64_t skipped = 0, tail = ring_tail(r);

	if (*pos < tail) {
		skipped = tail - *pos;
		*pos = tail;
	}
	if (*pos > r->head)
		*pos = r->head; /* a position from the future: nothing to read */
	size_t at = (size_t)(*pos & (r->size - 1));
	uint64_t avail = r->head - *pos;
	*data = r->buf + at;
	*n = (size_t)(avail < r->size - at ? avail : r->size - at);
	return skipped;
}
