/* libFuzzer target for the 16550A UART. The input is a program of operations:
 *
 *   op byte, then by op % 8:
 *   0, 1  register write: offset byte (% 10, so past the 8 registers too),
 *         size byte ({1, 2, 4, 8}[% 4]), then size value bytes
 *   2, 3  register read: offset byte, size byte
 *   4     host input: length byte, then that many bytes
 *   5     host input flood: length byte, that many times 64 bytes
 *   6     save, load into a fresh UART, save again; both saves must match
 *   7     load the next (length byte) bytes as state: 0 or -EINVAL, and on
 *         -EINVAL the device must be unchanged; with length 0, reset instead
 *
 * After every operation the IRQ line reported through the callback must equal
 * the line implied by the saved register state (layout as in uart8250.c), and
 * the callback must only ever report changes.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/uart8250.h"

#define FUZZ_GSI 4

struct fuzz_ctx {
	struct uart *u;
	int level;
};

static struct fuzz_ctx ctxs[2];

struct fuzz_in {
	const uint8_t *data;
	size_t len;
	size_t pos;
};

static uint8_t fuzz_byte(struct fuzz_in *in)
{
	return in->pos < in->len ? in->data[in->pos++] : 0;
}

static void fuzz_irq(void *opaque, uint32_t gsi, int level)
{
	struct fuzz_ctx *c = opaque;

	if (gsi != FUZZ_GSI || (level != 0 && level != 1) || level == c->level)
		abort();
	c->level = level;
}

static void fuzz_out(void *opaque, const uint8_t *buf, size_t len)
{
	volatile uint8_t sink;

	(void)opaque;
	if (len != 1)
		abort();
	sink = buf[0]; /* let ASan check the byte is readable */
	(void)sink;
}

static void fuzz_room(void *opaque)
{
	struct fuzz_ctx *c = opaque;

	/* The UART lock must be free here; this would deadlock otherwise. */
	if (uart_input_room(c->u) == 0)
		abort();
}

static struct uart *fuzz_uart(struct fuzz_ctx *c)
{
	struct uart_config cfg = {
		.gsi = FUZZ_GSI,
		.irq = fuzz_irq,
		.irq_opaque = c,
		.out = fuzz_out,
		.out_opaque = c,
		.room = fuzz_room,
		.room_opaque = c,
	};

	c->level = 0;
	c->u = uart_create(&cfg);
	if (!c->u)
		abort();
	return c->u;
}

static void fuzz_save(struct uart *u, struct sbuf *out)
{
	memset(out, 0, sizeof(*out));
	uart_ops.save(u, out);
	if (out->err)
		abort();
}

/* The IRQ level implied by a saved state. */
static int fuzz_expected_level(const struct sbuf *s)
{
	const uint8_t *d = s->data;
	uint8_t ier, mcr, lsr_err, msr_delta, thri;
	uint32_t count;
	int pending;

	if (s->len < 18)
		abort();
	ier = d[4];
	mcr = d[7];
	lsr_err = d[8];
	msr_delta = d[9];
	thri = d[13];
	count = d[14] | d[15] << 8 | d[16] << 16 | (uint32_t)d[17] << 24;
	if (count > UART_INPUT_BUF || s->len != 18 + count)
		abort();
	pending = ((ier & 0x04) && lsr_err) || ((ier & 0x01) && count) ||
	          ((ier & 0x02) && thri) || ((ier & 0x08) && msr_delta);
	return pending && (mcr & 0x08);
}

static void fuzz_check(struct fuzz_ctx *c)
{
	struct sbuf s;

	fuzz_save(c->u, &s);
	if (fuzz_expected_level(&s) != c->level)
		abort();
	if (uart_input_room(c->u) > UART_INPUT_BUF)
		abort();
	sbuf_free(&s);
}

static void fuzz_round_trip(int *cur)
{
	struct fuzz_ctx *from = &ctxs[*cur];
	struct fuzz_ctx *to = &ctxs[!*cur];
	struct sbuf a, b, in;

	fuzz_save(from->u, &a);
	fuzz_uart(to);
	sbuf_reader(&in, a.data, a.len);
	if (uart_ops.load(to->u, &in) != 0 || in.pos != a.len)
		abort();
	fuzz_save(to->u, &b);
	if (a.len != b.len || memcmp(a.data, b.data, a.len))
		abort();
	sbuf_free(&a);
	sbuf_free(&b);
	uart_destroy(from->u);
	from->u = NULL;
	*cur = !*cur;
}

static void fuzz_load_raw(struct fuzz_ctx *c, struct fuzz_in *in, size_t n)
{
	struct sbuf before, after, s;
	int r;

	if (n > in->len - in->pos)
		n = in->len - in->pos;
	fuzz_save(c->u, &before);
	sbuf_reader(&s, in->data + in->pos, n);
	in->pos += n;
	r = uart_ops.load(c->u, &s);
	if (r != 0 && r != -EINVAL)
		abort();
	if (r == -EINVAL) {
		fuzz_save(c->u, &after);
		if (before.len != after.len || memcmp(before.data, after.data, before.len))
			abort();
		sbuf_free(&after);
	}
	sbuf_free(&before);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint32_t sizes[] = { 1, 2, 4, 8 };
	struct fuzz_in in = { data, size, 0 };
	uint8_t flood[64];
	int cur = 0;

	fuzz_uart(&ctxs[0]);
	while (in.pos < in.len) {
		struct fuzz_ctx *c = &ctxs[cur];
		uint8_t op = fuzz_byte(&in);
		uint8_t buf[8] = { 0 };
		uint64_t off;
		uint32_t len;
		size_t n;

		switch (op % 8) {
		case 0:
		case 1:
			off = fuzz_byte(&in) % 10;
			len = sizes[fuzz_byte(&in) % 4];
			for (uint32_t i = 0; i < len; i++)
				buf[i] = fuzz_byte(&in);
			uart_ops.io(c->u, off, buf, len, true);
			break;
		case 2:
		case 3:
			off = fuzz_byte(&in) % 10;
			len = sizes[fuzz_byte(&in) % 4];
			uart_ops.io(c->u, off, buf, len, false);
			break;
		case 4:
			n = fuzz_byte(&in);
			if (n > in.len - in.pos)
				n = in.len - in.pos;
			if (uart_input(c->u, in.data + in.pos, n) > n)
				abort();
			in.pos += n;
			break;
		case 5:
			n = fuzz_byte(&in);
			memset(flood, op, sizeof(flood));
			for (size_t i = 0; i < n; i++)
				uart_input(c->u, flood, sizeof(flood));
			break;
		case 6:
			fuzz_round_trip(&cur);
			break;
		case 7:
			n = fuzz_byte(&in);
			if (n)
				fuzz_load_raw(c, &in, n);
			else
				uart_ops.reset(c->u);
			break;
		}
		fuzz_check(&ctxs[cur]);
	}
	uart_destroy(ctxs[cur].u);
	ctxs[cur].u = NULL;
	return 0;
}
