/* Unit tests for the 16550A UART: Linux 8250 probing and start-up, transmit,
 * receive, interrupt rules, back-pressure, save/load and hostile accesses. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devices/uart8250.h"

#define RBR 0
#define THR 0
#define DLL 0
#define IER 1
#define DLM 1
#define IIR 2
#define FCR 2
#define LCR 3
#define MCR 4
#define LSR 5
#define MSR 6
#define SCR 7

#define TEST_GSI 4

struct fake {
	struct uart *u;
	int irq_level;
	int irq_calls;
	int irq_bad_calls; /* calls that did not change the level, or wrong gsi */
	uint8_t out[8192];
	size_t out_len;
	int room_calls;
	size_t room_seen; /* uart_input_room() from inside the callback */
};

static void fake_irq(void *opaque, uint32_t gsi, int level)
{
	struct fake *f = opaque;

	if (gsi != TEST_GSI || level == f->irq_level || (level != 0 && level != 1))
		f->irq_bad_calls++;
	f->irq_level = level;
	f->irq_calls++;
}

static void fake_out(void *opaque, const uint8_t *buf, size_t len)
{
	struct fake *f = opaque;

	for (size_t i = 0; i < len && f->out_len < sizeof(f->out); i++)
		f->out[f->out_len++] = buf[i];
}

static void fake_room(void *opaque)
{
	struct fake *f = opaque;

	f->room_calls++;
	/* Must not deadlock: the UART lock is released before this call. */
	f->room_seen = uart_input_room(f->u);
}

static struct uart *fake_uart(struct fake *f)
{
	struct uart_config cfg = {
		.gsi = TEST_GSI,
		.irq = fake_irq,
		.irq_opaque = f,
		.out = fake_out,
		.out_opaque = f,
		.room = fake_room,
		.room_opaque = f,
	};

	memset(f, 0, sizeof(*f));
	f->u = uart_create(&cfg);
	assert_non_null(f->u);
	return f->u;
}

static uint8_t rd(struct uart *u, uint64_t off)
{
	uint8_t v = 0xa5;

	uart_ops.io(u, off, &v, 1, false);
	return v;
}

static void wr(struct uart *u, uint64_t off, uint8_t v)
{
	uart_ops.io(u, off, &v, 1, true);
}

static int setup(void **state)
{
	struct fake *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	fake_uart(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fake *f = *state;

	assert_int_equal(f->irq_bad_calls, 0);
	uart_destroy(f->u);
	free(f);
	return 0;
}

static void test_power_on(void **state)
{
	struct fake *f = *state;
	struct uart *u = f->u;

	assert_int_equal(rd(u, IER), 0x00);
	assert_int_equal(rd(u, IIR), 0x01);
	assert_int_equal(rd(u, LCR), 0x00);
	assert_int_equal(rd(u, MCR), 0x00);
	assert_int_equal(rd(u, LSR), 0x60);
	assert_int_equal(rd(u, MSR), 0xb0); /* DCD | DSR | CTS, no deltas */
	assert_int_equal(rd(u, SCR), 0x00);
	assert_int_equal(rd(u, RBR), 0x00);
	assert_int_equal(uart_input_room(u), UART_INPUT_BUF);
	assert_int_equal(f->irq_calls, 0);
	assert_string_equal(uart_ops.name, "uart8250");
}

/* The probing done by Linux's autoconfig() and autoconfig_16550a(). */
static void test_linux_autoconfig(void **state)
{
	struct fake *f = *state;
	struct uart *u = f->u;
	uint8_t save_mcr, save_lcr;

	/* Scratch test through IER. */
	wr(u, IER, 0);
	assert_int_equal(rd(u, IER) & 0x0f, 0);
	wr(u, IER, 0x0f);
	assert_int_equal(rd(u, IER) & 0x0f, 0x0f);
	wr(u, IER, 0);

	/* SCR holds a value. */
	wr(u, SCR, 0x5a);
	assert_int_equal(rd(u, SCR), 0x5a);
	wr(u, SCR, 0xa5);
	assert_int_equal(rd(u, SCR), 0xa5);

	/* Loopback test: MSR must show DCD|CTS for OUT2|RTS. */
	save_mcr = rd(u, MCR);
	wr(u, MCR, 0x10 | 0x0a);
	assert_int_equal(rd(u, MSR) & 0xf0, 0x90);
	wr(u, MCR, save_mcr);

	/* FIFO detection: IIR bits 7:6 = 3 means 16550A. */
	wr(u, FCR, 0x01);
	assert_int_equal(rd(u, IIR) >> 6, 3);
	wr(u, FCR, 0x00);
	assert_int_equal(rd(u, IIR) >> 6, 0);

	/* EFR probe with LCR=0xbf must not look like a 16650 (read is not 0). */
	save_lcr = rd(u, LCR);
	wr(u, FCR, 0x01);
	wr(u, LCR, 0xbf);
	assert_int_not_equal(rd(u, IIR), 0);
	wr(u, LCR, save_lcr);

	/* Not a 16750: the 64-byte FIFO bit never shows. */
	wr(u, LCR, 0);
	wr(u, FCR, 0x01 | 0x20);
	assert_int_equal(rd(u, IIR) & 0xe0, 0xc0);
	wr(u, LCR, 0x80);
	wr(u, FCR, 0x01 | 0x20);
	assert_int_equal(rd(u, IIR) & 0xe0, 0xc0);
	wr(u, FCR, 0);
	wr(u, LCR, 0);

	/* Not an XScale: IER bit 6 (UUE) does not stick. */
	wr(u, IER, 0x40);
	assert_int_equal(rd(u, IER) & 0x40, 0);
	wr(u, IER, 0);

	/* Divisor latch. */
	wr(u, LCR, 0x80);
	wr(u, DLL, 0x0c);
	wr(u, DLM, 0x01);
	assert_int_equal(rd(u, DLL), 0x0c);
	assert_int_equal(rd(u, DLM), 0x01);
	wr(u, LCR, 0x03);
	assert_int_equal(rd(u, LCR), 0x03);
	assert_int_equal(rd(u, IER), 0x00); /* IER again, not DLM */
	wr(u, LCR, 0x80);
	assert_int_equal(rd(u, DLL), 0x0c);
	wr(u, LCR, 0x03);

	assert_int_equal(f->out_len, 0); /* probing transmitted nothing */
}

/* serial8250_do_startup(): clear FIFOs, read stale state, 8N1, OUT2, THRE test. */
static void test_linux_startup(void **state)
{
	struct fake *f = *state;
	struct uart *u = f->u;

	uart_input(u, (const uint8_t *)"stale", 5);
	wr(u, FCR, 0x01);
	wr(u, FCR, 0x01 | 0x02 | 0x04);
	wr(u, FCR, 0);
	assert_int_equal(rd(u, LSR) & 0x01, 0); /* RX FIFO cleared */
	(void)rd(u, RBR);
	(void)rd(u, IIR);
	(void)rd(u, MSR);
	wr(u, LCR, 0x03);
	wr(u, MCR, 0x08 | 0x02 | 0x01);
	assert_int_equal(f->irq_calls, 0);

	/* The THRE re-assertion test: enabling THRI with THR empty raises it,
	 * reading IIR clears it, and re-enabling raises it again. */
	wr(u, IER, 0x02);
	assert_int_equal(f->irq_level, 1);
	assert_int_equal(rd(u, IIR), 0x02);
	assert_int_equal(f->irq_level, 0);
	assert_int_equal(rd(u, IIR), 0x01);
	wr(u, IER, 0);
	wr(u, IER, 0x02);
	assert_int_equal(f->irq_level, 1);
	assert_int_equal(rd(u, IIR) & 0x01, 0);
	wr(u, IER, 0);
	assert_int_equal(f->irq_level, 0);
	assert_int_equal(rd(u, LSR) & 0x60, 0x60);
}

static void test_transmit(void **state)
{
	struct fake *f = *state;
	struct uart *u = f->u;
	const char *msg = "hello, world\r\n";

	for (const char *p = msg; *p; p++) {
		assert_int_equal(rd(u, LSR) & 0x60, 0x60);
		wr(u, THR, (uint8_t)*p);
		assert_int_equal(rd(u, LSR) & 0x60, 0x60);
	}
	assert_int_equal(f->out_len, strlen(msg));
	assert_memory_equal(f->out, msg, strlen(msg));

	/* With DLAB set, offset 0 is DLL and nothing is sent. */
	wr(u, LCR, 0x80);
	wr(u, THR, 'X');
	wr(u, LCR, 0x03);
	assert_int_equal(f->out_len, strlen(msg));
}

static void test_thre_interrupt(void **state)
{
	struct fake *f = *state;
	struct uart *u = f->u;

	wr(u, MCR, 0x08);
	wr(u, IER, 0x02);
	assert_int_equal(f->irq_level, 1);
	assert_int_equal(f->irq_calls, 1);

	/* Reading IIR with THRE as the source clears it. */
	wr(u, FCR, 0x01);
	assert_int_equal(rd(u, IIR), 0xc2);
	assert_int_equal(f->irq_level, 0);
	assert_int_equal(rd(u, IIR), 0xc1);

	/* A THR write clears it and THR empties at once, so it is raised again. */
	wr(u, THR, 'a');
	assert_int_equal(f->irq_level, 1);
	assert_int_equal(f->out_len, 1);

	/* Disabling ETBEI drops the line; calls happen only on changes. */
	wr(u, IER, 0x00);
	assert_int_equal(f->irq_level, 0);
	wr(u, THR, 'b');
	assert_int_equal(f->irq_level, 0);
	assert_int_equal(f->irq_calls, 4);
	assert_int_equal(rd(u, IIR), 0xc1);

	/* Writing IER with ETBEI already set does not re-raise a cleared THRE. */
	wr(u, IER, 0x02);
	assert_int_equal(f->irq_level, 1);
	assert_int_equal(rd(u, IIR), 0xc2);
	wr(u, IER, 0x03);
	assert_int_equal(f->irq_level, 0);
	assert_int_equal(rd(u, IIR), 0xc1);
}

static void test_irq_gated_by_out2(void **state)
{
	struct fake *f = *state;
	struct uart *u = f->u;

	wr(u, IER, 0x01);
	uart_input(u, (const uint8_t *)"x", 1);
	assert_int_equal(f->irq_calls, 0);
	assert_int_equal(rd(u, IIR), 0x04); /* pending, but the line is gated */
	wr(u, MCR, 0x08);
	assert_int_equal(f->irq_level, 1);
	wr(u, MCR, 0x03);
	assert_int_equal(f->irq_level, 0);
	wr(u, MCR, 0x0b);
	assert_int_equal(f->irq_level, 1);
	assert_int_equal(rd(u, RBR), 'x');
	assert_int_equal(f->irq_level, 0);
}

static void test_receive(void **state)
{
	struct fake *f = *state;
	struct uart *u = f->u;

	wr(u, MCR, 0x0b);
	wr(u, IER, 0x01);
	assert_int_equal(f->irq_calls, 0);
	assert_int_equal(uart_input(u, (const uint8_t *)"ab", 2), 2);
	assert_int_equal(f->irq_level, 1);
	assert_int_equal(uart_input_room(u), UART_INPUT_BUF - 2);
	assert_int_equal(rd(u, IIR), 0x04);
	assert_int_equal(rd(u, LSR), 0x61);
	assert_int_equal(rd(u, RBR), 'a');
	assert_int_equal(f->irq_level, 1);
	assert_int_equal(rd(u, RBR), 'b');
	assert_int_equal(f->irq_level, 0);
	assert_int_equal(rd(u, LSR), 0x60);
	assert_int_equal(rd(u, IIR), 0x01);
	assert_int_equal(rd(u, RBR), 0); /* empty */
	assert_int_equal(f->irq_calls, 2);

	/* RX is reported ahead of THRE. */
	wr(u, IER, 0x03);
	assert_int_equal(rd(u, IIR), 0x02);
	wr(u, IER, 0x00);
	wr(u, IER, 0x03);
	uart_input(u, (const uint8_t *)"c", 1);
	assert_int_equal(rd(u, IIR), 0x04);
	assert_int_equal(rd(u, RBR), 'c');
	assert_int_equal(rd(u, IIR), 0x02);
	assert_int_equal(rd(u, IIR), 0x01);
}

/* Receiver line status > RX data > THRE > modem status. */
static void test_interrupt_priority(void **state)
{
	struct fake *f = *state;
	struct uart *u = f->u;
	uint8_t *fill = malloc(UART_INPUT_BUF);

	assert_non_null(fill);
	memset(fill, 'z', UART_INPUT_BUF);
	assert_int_equal(uart_input(u, fill, UART_INPUT_BUF), UART_INPUT_BUF);
	free(fill);

	wr(u, IER, 0x0f);
	wr(u, MCR, 0x10 | 0x08 | 0x01); /* loopback, OUT2, DTR: MSR deltas */
	wr(u, THR, 'o');                 /* ring full in loopback: overrun */
	assert_int_equal(f->irq_level, 1);

	assert_int_equal(rd(u, IIR), 0x06);
	assert_int_equal(rd(u, LSR), 0x63); /* OE | DR | THRE | TEMT */
	assert_int_equal(rd(u, LSR), 0x61); /* OE cleared by the read */
	assert_int_equal(rd(u, IIR), 0x04);
	for (int i = 0; i < UART_INPUT_BUF; i++)
		assert_int_equal(rd(u, RBR), 'z');
	assert_int_equal(rd(u, IIR), 0x02); /* also clears THRE */
	assert_int_equal(rd(u, IIR), 0x00);
	assert_int_equal(rd(u, MSR), 0x80 | 0x20 | 0x01); /* CTS lost: DCTS */
	assert_int_equal(rd(u, IIR), 0x01);
	assert_int_equal(f->irq_level, 0);
	assert_int_equal(f->out_len, 0);
}

static void test_loopback(void **state)
{
	struct fake *f = *state;
	struct uart *u = f->u;

	wr(u, MCR, 0x10);
	assert_int_equal(rd(u, MSR), 0x0b); /* CTS, DSR, DCD dropped */
	assert_int_equal(rd(u, MSR), 0x00);

	wr(u, THR, 'L');
	assert_int_equal(f->out_len, 0);
	assert_int_equal(rd(u, LSR) & 0x01, 0x01);
	assert_int_equal(rd(u, RBR), 'L');

	wr(u, MCR, 0x10 | 0x01);
	assert_int_equal(rd(u, MSR), 0x20 | 0x02);
	wr(u, MCR, 0x10 | 0x02);
	assert_int_equal(rd(u, MSR), 0x10 | 0x02 | 0x01);
	wr(u, MCR, 0x10 | 0x04);
	assert_int_equal(rd(u, MSR), 0x40 | 0x01);
	wr(u, MCR, 0x10 | 0x08);
	assert_int_equal(rd(u, MSR), 0x80 | 0x08 | 0x04); /* RI trailing edge */
	wr(u, MCR, 0x10 | 0x0f);
	assert_int_equal(rd(u, MSR) & 0xf0, 0xf0);

	wr(u, MCR, 0x0b);
	assert_int_equal(rd(u, MSR), 0xb0 | 0x04);
	wr(u, THR, 'N');
	assert_int_equal(f->out_len, 1);
	assert_int_equal(f->out[0], 'N');

	/* Modem status interrupt from the deltas. */
	wr(u, IER, 0x08);
	assert_int_equal(f->irq_level, 0);
	wr(u, MCR, 0x1a);
	assert_int_equal(f->irq_level, 1);
	assert_int_equal(rd(u, IIR), 0x00);
	(void)rd(u, MSR);
	assert_int_equal(f->irq_level, 0);
}

static void test_fcr(void **state)
{
	struct fake *f = *state;
	struct uart *u = f->u;
	uint8_t buf[20];

	for (int i = 0; i < 20; i++)
		buf[i] = (uint8_t)i;
	uart_input(u, buf, sizeof(buf));
	/* Clear bits are ignored unless the FIFO enable bit is in the same write. */
	wr(u, FCR, 0x02);
	assert_int_equal(uart_input_room(u), UART_INPUT_BUF - 20);
	/* Clearing the RX FIFO drops the 16 bytes a real FIFO holds. */
	wr(u, FCR, 0x01 | 0x02);
	assert_int_equal(uart_input_room(u), UART_INPUT_BUF - 4);
	assert_int_equal(rd(u, RBR), 16);
	wr(u, FCR, 0x07);
	assert_int_equal(uart_input_room(u), UART_INPUT_BUF);
	assert_int_equal(rd(u, IIR), 0xc1);
	wr(u, FCR, 0xc1);
	assert_int_equal(rd(u, IIR), 0xc1);
	wr(u, FCR, 0x06);
	assert_int_equal(rd(u, IIR), 0x01);
}

static void test_backpressure(void **state)
{
	struct fake *f = *state;
	struct uart *u = f->u;
	uint8_t *buf = malloc(UART_INPUT_BUF + 100);

	assert_non_null(buf);
	for (int i = 0; i < UART_INPUT_BUF + 100; i++)
		buf[i] = (uint8_t)(i * 7);

	assert_int_equal(uart_input(u, buf, 100), 100);
	assert_int_equal(uart_input(u, buf + 100, UART_INPUT_BUF), UART_INPUT_BUF - 100);
	assert_int_equal(uart_input_room(u), 0);
	assert_int_equal(uart_input(u, buf, 1), 0);
	assert_int_equal(f->room_calls, 0);

	/* The guest drains one byte: the host is told, once, with the lock free. */
	assert_int_equal(rd(u, RBR), buf[0]);
	assert_int_equal(f->room_calls, 1);
	assert_int_equal(f->room_seen, 1);
	assert_int_equal(rd(u, RBR), buf[1]);
	assert_int_equal(f->room_calls, 1);

	/* Order is kept across the ring's wrap. */
	assert_int_equal(uart_input(u, buf + UART_INPUT_BUF, 2), 2);
	for (int i = 2; i < UART_INPUT_BUF + 2; i++)
		assert_int_equal(rd(u, RBR), buf[i]);
	assert_int_equal(uart_input_room(u), UART_INPUT_BUF);
	assert_int_equal(f->room_calls, 1);

	/* Full again by an exact fit: no short return, so no callback is owed. */
	assert_int_equal(uart_input(u, buf, UART_INPUT_BUF), UART_INPUT_BUF);
	(void)rd(u, RBR);
	assert_int_equal(f->room_calls, 1);
	free(buf);
}

static void save_state(struct uart *u, struct sbuf *out)
{
	memset(out, 0, sizeof(*out));
	uart_ops.save(u, out);
	assert_int_equal(out->err, 0);
}

static void test_save_load(void **state)
{
	struct fake *f = *state;
	struct uart *u = f->u;
	struct fake g;
	struct sbuf a, b, in;

	/* Put data across the ring's wrap point. */
	for (int i = 0; i < 3000; i++)
		uart_input(u, (const uint8_t *)"-", 1);
	for (int i = 0; i < 3000; i++)
		(void)rd(u, RBR);
	uart_input(u, (const uint8_t *)"pending input that wraps the ring.....", 38);
	for (int i = 0; i < 1100; i++)
		uart_input(u, (const uint8_t *)"#", 1);
	wr(u, LCR, 0x80);
	wr(u, DLL, 0x01);
	wr(u, DLM, 0x02);
	wr(u, LCR, 0x1b);
	wr(u, SCR, 0x77);
	wr(u, FCR, 0xc1);
	wr(u, MCR, 0x0b);
	wr(u, IER, 0x07);
	assert_int_equal(f->irq_level, 1);
	save_state(u, &a);

	fake_uart(&g);
	sbuf_reader(&in, a.data, a.len);
	assert_int_equal(uart_ops.load(g.u, &in), 0);
	assert_int_equal(in.pos, a.len);
	assert_int_equal(g.irq_level, 1); /* the line follows the restored state */
	save_state(g.u, &b);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.data, b.data, a.len);

	assert_int_equal(rd(g.u, LCR), 0x1b);
	assert_int_equal(rd(g.u, SCR), 0x77);
	assert_int_equal(rd(g.u, MCR), 0x0b);
	assert_int_equal(rd(g.u, IER), 0x07);
	assert_int_equal(rd(g.u, IIR), 0xc4);
	assert_int_equal(uart_input_room(g.u), uart_input_room(u));
	for (int i = 0; i < 38; i++)
		assert_int_equal(rd(g.u, RBR), "pending input that wraps the ring....."[i]);
	wr(g.u, LCR, 0x9b);
	assert_int_equal(rd(g.u, DLL), 0x01);
	assert_int_equal(rd(g.u, DLM), 0x02);

	assert_int_equal(g.irq_bad_calls, 0);
	uart_destroy(g.u);
	sbuf_free(&a);
	sbuf_free(&b);
}

static void expect_load_fails(struct uart *u, const uint8_t *data, size_t len)
{
	struct sbuf before, after, in;

	save_state(u, &before);
	sbuf_reader(&in, data, len);
	assert_int_equal(uart_ops.load(u, &in), -EINVAL);
	save_state(u, &after);
	assert_int_equal(before.len, after.len);
	assert_memory_equal(before.data, after.data, before.len);
	sbuf_free(&before);
	sbuf_free(&after);
}

static void test_load_rejects_bad_state(void **state)
{
	struct fake *f = *state;
	struct uart *u = f->u;
	struct sbuf good;
	uint8_t *bad;

	uart_input(u, (const uint8_t *)"abc", 3);
	wr(u, SCR, 0x42);
	save_state(u, &good);
	bad = malloc(good.len);
	assert_non_null(bad);

	/* Every truncation fails. */
	for (size_t n = 0; n < good.len; n++)
		expect_load_fails(u, good.data, n);

	/* Wrong version; impossible register bits; oversized count. */
	memcpy(bad, good.data, good.len);
	bad[0] ^= 0xff;
	expect_load_fails(u, bad, good.len);
	for (int field = 0; field < 10; field++) {
		static const uint8_t bogus[10] = { 0xf0, 0x02, 0, 0xe0, 0x01, 0xf0, 0, 0, 0, 2 };
		if (!bogus[field])
			continue;
		memcpy(bad, good.data, good.len);
		bad[4 + field] = bogus[field];
		expect_load_fails(u, bad, good.len);
	}
	memcpy(bad, good.data, good.len);
	bad[14] = 0x01;
	bad[15] = 0x10; /* count 4097 */
	expect_load_fails(u, bad, good.len);
	memcpy(bad, good.data, good.len);
	bad[14] = 4; /* count larger than what follows */
	expect_load_fails(u, bad, good.len);

	/* Random garbage is rejected or accepted, never harmful. */
	srand(1);
	for (int i = 0; i < 2000; i++) {
		uint8_t junk[64];
		struct sbuf in;
		size_t n = (size_t)rand() % sizeof(junk);

		for (size_t j = 0; j < n; j++)
			junk[j] = (uint8_t)rand();
		sbuf_reader(&in, junk, n);
		int r = uart_ops.load(u, &in);
		assert_true(r == 0 || r == -EINVAL);
	}
	free(bad);
	sbuf_free(&good);
}

static void test_reset(void **state)
{
	struct fake *f = *state;
	struct uart *u = f->u;
	uint8_t *buf = calloc(1, UART_INPUT_BUF + 1);

	assert_non_null(buf);
	assert_int_equal(uart_input(u, buf, UART_INPUT_BUF + 1), UART_INPUT_BUF);
	free(buf);
	wr(u, MCR, 0x08);
	wr(u, IER, 0x0f);
	wr(u, LCR, 0x83);
	wr(u, DLL, 0x30);
	wr(u, SCR, 0x99);
	wr(u, FCR, 0x01);
	assert_int_equal(f->irq_level, 1);

	uart_ops.reset(u);
	assert_int_equal(f->irq_level, 0);
	assert_int_equal(f->room_calls, 1); /* the host may send again */
	assert_int_equal(uart_input_room(u), UART_INPUT_BUF);
	assert_int_equal(rd(u, LCR), 0);
	assert_int_equal(rd(u, IER), 0);
	assert_int_equal(rd(u, IIR), 0x01);
	assert_int_equal(rd(u, MCR), 0);
	assert_int_equal(rd(u, LSR), 0x60);
	assert_int_equal(rd(u, MSR), 0xb0);
	assert_int_equal(rd(u, SCR), 0);
}

/* Wider accesses act as byte accesses at consecutive offsets. */
static void test_wide_access(void **state)
{
	struct fake *f = *state;
	struct uart *u = f->u;
	uint8_t d[8];

	wr(u, SCR, 0x3c);
	memset(d, 0, sizeof(d));
	uart_ops.io(u, 4, d, 2, false);
	assert_int_equal(d[0], 0x00); /* MCR */
	assert_int_equal(d[1], 0x60); /* LSR */
	memset(d, 0, sizeof(d));
	uart_ops.io(u, 7, d, 4, false);
	assert_int_equal(d[0], 0x3c);
	assert_int_equal(d[1], 0xff);
	assert_int_equal(d[3], 0xff);
	memset(d, 0, sizeof(d));
	uart_ops.io(u, 0, d, 8, false);
	assert_int_equal(d[5], 0x60);
	assert_int_equal(d[7], 0x3c);

	d[0] = 'W';
	d[1] = 0x02;
	uart_ops.io(u, THR, d, 2, true); /* THR then IER */
	assert_int_equal(f->out_len, 1);
	assert_int_equal(f->out[0], 'W');
	assert_int_equal(rd(u, IER), 0x02);

	/* Offsets far outside the registers and huge ones that would wrap. */
	memset(d, 0, sizeof(d));
	uart_ops.io(u, UINT64_MAX - 1, d, 8, false);
	for (int i = 0; i < 8; i++)
		assert_int_equal(d[i], 0xff);
	uart_ops.io(u, UINT64_MAX, d, 8, true);
	uart_ops.io(u, 0, d, 0, true);
	assert_int_equal(f->out_len, 1);
}

/* Random register traffic with random widths and values never breaks an
 * invariant or makes the IRQ callback fire without a level change. */
static void test_random_accesses(void **state)
{
	struct fake *f = *state;
	struct uart *u = f->u;
	static const uint32_t sizes[] = { 1, 2, 4, 8 };

	srand(12345);
	for (int i = 0; i < 200000; i++) {
		uint8_t d[8];
		uint64_t off = (uint64_t)rand() % 10;
		uint32_t len = sizes[rand() % 4];
		int op = rand() % 16;

		for (int j = 0; j < 8; j++)
			d[j] = (uint8_t)rand();
		if (op < 7) {
			uart_ops.io(u, off, d, len, true);
		} else if (op < 14) {
			uart_ops.io(u, off, d, len, false);
		} else if (op == 14) {
			uart_input(u, d, (size_t)rand() % 8);
		} else if (rand() % 64 == 0) {
			uart_ops.reset(u);
		}
		assert_true(uart_input_room(u) <= UART_INPUT_BUF);
	}
	assert_int_equal(f->irq_bad_calls, 0);
}

/* A host thread feeds input with back-pressure (waiting for the room callback)
 * while a vCPU-like thread drains RBR: every byte arrives once, in order. */
#define STREAM_LEN 200000

struct stream {
	struct uart *u;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int room; /* room callbacks not yet consumed */
	int waits;
};

static void stream_room(void *opaque)
{
	struct stream *s = opaque;

	pthread_mutex_lock(&s->lock);
	s->room++;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static uint8_t stream_byte(size_t i)
{
	return (uint8_t)(i * 31 + i / 251);
}

static void *stream_producer(void *arg)
{
	struct stream *s = arg;
	uint8_t chunk[1000];
	size_t pos = 0;

	while (pos < STREAM_LEN) {
		size_t want = STREAM_LEN - pos < sizeof(chunk) ? STREAM_LEN - pos : sizeof(chunk);
		size_t n;

		for (size_t i = 0; i < want; i++)
			chunk[i] = stream_byte(pos + i);
		n = uart_input(s->u, chunk, want);
		pos += n;
		if (n < want) {
			pthread_mutex_lock(&s->lock);
			while (!s->room)
				pthread_cond_wait(&s->cond, &s->lock);
			s->room--;
			s->waits++;
			pthread_mutex_unlock(&s->lock);
		}
	}
	return NULL;
}

static void test_concurrent_stream(void **state)
{
	struct stream s = { .room = 0 };
	struct uart_config cfg = { .room = stream_room, .room_opaque = &s };
	pthread_t t;
	size_t got = 0;

	(void)state;
	pthread_mutex_init(&s.lock, NULL);
	pthread_cond_init(&s.cond, NULL);
	s.u = uart_create(&cfg);
	assert_non_null(s.u);
	assert_int_equal(pthread_create(&t, NULL, stream_producer, &s), 0);
	for (long spins = 0; got < STREAM_LEN && spins < 100000000L; spins++) {
		if (!(rd(s.u, LSR) & 0x01))
			continue;
		assert_int_equal(rd(s.u, RBR), stream_byte(got));
		got++;
	}
	assert_int_equal(got, STREAM_LEN);
	pthread_join(t, NULL);
	assert_true(s.waits > 0); /* back-pressure really happened */
	assert_int_equal(s.room, 0);
	uart_destroy(s.u);
	pthread_cond_destroy(&s.cond);
	pthread_mutex_destroy(&s.lock);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_power_on, setup, teardown),
		cmocka_unit_test_setup_teardown(test_linux_autoconfig, setup, teardown),
		cmocka_unit_test_setup_teardown(test_linux_startup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_transmit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_thre_interrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_irq_gated_by_out2, setup, teardown),
		cmocka_unit_test_setup_teardown(test_receive, setup, teardown),
		cmocka_unit_test_setup_teardown(test_interrupt_priority, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loopback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fcr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backpressure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_rejects_bad_state, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wide_access, setup, teardown),
		cmocka_unit_test_setup_teardown(test_random_accesses, setup, teardown),
		cmocka_unit_test(test_concurrent_stream),
	};

	return cmocka_run_group_tests_name("uart8250", tests, NULL, NULL);
}
