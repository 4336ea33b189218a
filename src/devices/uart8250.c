/* 16550A UART, modelled closely enough for Linux's 8250 driver (autoconfig,
 * console, tty) to work unmodified.
 *
 * Transmit has no FIFO: every THR write goes straight to cfg->out, so THR is
 * empty again at once and LSR.THRE/TEMT always read set. Receive uses a host-side
 * ring of UART_INPUT_BUF bytes; its first 16 bytes stand for the hardware RX FIFO
 * (that is what FCR's "clear RX FIFO" discards), the rest is host backlog.
 * There are no RX trigger levels or character timeouts: "data available" is
 * reported whenever the ring holds a byte.
 *
 * Threat model: the guest controls every register access. Any offset, length
 * and value is accepted; bytes outside the 8 registers read 0xff.
 */
#include "devices/uart8250.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Register offsets. */
#define UART_RBR 0 /* read, DLAB=0 */
#define UART_THR 0 /* write, DLAB=0 */
#define UART_DLL 0 /* DLAB=1 */
#define UART_IER 1 /* DLAB=0 */
#define UART_DLM 1 /* DLAB=1 */
#define UART_IIR 2 /* read */
#define UART_FCR 2 /* write */
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

#define UART_IER_RDI 0x01  /* received data available */
#define UART_IER_THRI 0x02 /* THR empty */
#define UART_IER_RLSI 0x04 /* receiver line status */
#define UART_IER_MSI 0x08  /* modem status */
#define UART_IER_MASK 0x0f

#define UART_IIR_NO_INT 0x01
#define UART_IIR_MSI 0x00
#define UART_IIR_THRI 0x02
#define UART_IIR_RDI 0x04
#define UART_IIR_RLSI 0x06
#define UART_IIR_FIFO 0xc0 /* FIFOs enabled (16550A) */

#define UART_FCR_ENABLE 0x01
#define UART_FCR_CLEAR_RX 0x02
#define UART_FCR_CLEAR_TX 0x04
#define UART_FCR_KEEP 0xc9 /* enable, DMA mode, RX trigger level */

#define UART_LCR_DLAB 0x80

#define UART_MCR_DTR 0x01
#define UART_MCR_RTS 0x02
#define UART_MCR_OUT1 0x04
#define UART_MCR_OUT2 0x08
#define UART_MCR_LOOP 0x10
#define UART_MCR_MASK 0x1f

#define UART_LSR_DR 0x01
#define UART_LSR_OE 0x02
#define UART_LSR_PE 0x04
#define UART_LSR_FE 0x08
#define UART_LSR_BI 0x10
#define UART_LSR_THRE 0x20
#define UART_LSR_TEMT 0x40
#define UART_LSR_ERR_MASK (UART_LSR_OE | UART_LSR_PE | UART_LSR_FE | UART_LSR_BI)

#define UART_MSR_DCTS 0x01
#define UART_MSR_DDSR 0x02
#define UART_MSR_TERI 0x04
#define UART_MSR_DDCD 0x08
#define UART_MSR_DELTA_MASK 0x0f
#define UART_MSR_CTS 0x10
#define UART_MSR_DSR 0x20
#define UART_MSR_RI 0x40
#define UART_MSR_DCD 0x80

#define UART_RX_FIFO 16 /* what "clear RX FIFO" discards */
#define UART_STATE_VERSION 1

struct uart {
	pthread_mutex_t lock;
	struct uart_config cfg;

	uint8_t ier;
	uint8_t fcr;
	uint8_t lcr;
	uint8_t mcr;
	uint8_t lsr_err;   /* sticky LSR error bits, cleared by reading LSR */
	uint8_t msr_delta; /* MSR bits 0..3, cleared by reading MSR */
	uint8_t scr;
	uint8_t dll;
	uint8_t dlm;
	bool thri_pending; /* THR-empty interrupt latched */

	uint8_t in[UART_INPUT_BUF];
	size_t in_head; /* index of the oldest byte */
	size_t in_count;
	bool room_wanted; /* uart_input() came up short: call cfg.room once drained */

	int irq_level; /* last level given to cfg.irq */
};

/* MSR status bits (4..7) implied by MCR: loopback wiring or a connected line. */
static uint8_t uart_msr_lines(uint8_t mcr)
{
	uint8_t v = 0;

	if (!(mcr & UART_MCR_LOOP))
		return UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS;
	if (mcr & UART_MCR_RTS)
		v |= UART_MSR_CTS;
	if (mcr & UART_MCR_DTR)
		v |= UART_MSR_DSR;
	if (mcr & UART_MCR_OUT1)
		v |= UART_MSR_RI;
	if (mcr & UART_MCR_OUT2)
		v |= UART_MSR_DCD;
	return v;
}

/* Highest-priority pending interrupt as an IIR identification value. */
static uint8_t uart_iir_id(const struct uart *u)
{
	if ((u->ier & UART_IER_RLSI) && (u->lsr_err & UART_LSR_ERR_MASK))
		return UART_IIR_RLSI;
	if ((u->ier & UART_IER_RDI) && u->in_count)
		return UART_IIR_RDI;
	if ((u->ier & UART_IER_THRI) && u->thri_pending)
		return UART_IIR_THRI;
	if ((u->ier & UART_IER_MSI) && (u->msr_delta & UART_MSR_DELTA_MASK))
		return UART_IIR_MSI;
	return UART_IIR_NO_INT;
}

/* Recompute the IRQ line and tell cfg.irq when it changes. Lock held. */
static void uart_update_irq(struct uart *u)
{
	int level = uart_iir_id(u) != UART_IIR_NO_INT && (u->mcr & UART_MCR_OUT2);

	if (level == u->irq_level)
		return;
	u->irq_level = level;
	if (u->cfg.irq)
		u->cfg.irq(u->cfg.irq_opaque, u->cfg.gsi, level);
}

/* Append up to len bytes to the input ring; returns how many fit. */
static size_t uart_ring_push(struct uart *u, const uint8_t *buf, size_t len)
{
	size_t n = UART_INPUT_BUF - u->in_count;

	if (n > len)
		n = len;
	for (size_t i = 0; i < n; i++)
		u->in[(u->in_head + u->in_count + i) % UART_INPUT_BUF] = buf[i];
	u->in_count += n;
	return n;
}

/* Drop up to n bytes from the front of the input ring. */
static void uart_ring_drop(struct uart *u, size_t n)
{
	if (n > u->in_count)
		n = u->in_count;
	u->in_head = (u->in_head + n) % UART_INPUT_BUF;
	u->in_count -= n;
}

/* True when the host should now be told there is room again; clears the flag. */
static bool uart_take_room(struct uart *u)
{
	if (!u->room_wanted || u->in_count == UART_INPUT_BUF)
		return false;
	u->room_wanted = false;
	return u->cfg.room != NULL;
}

/* Power-on register values; empties the input ring. Lock held. */
static void uart_reset_locked(struct uart *u)
{
	u->ier = 0;
	u->fcr = 0;
	u->lcr = 0;
	u->mcr = 0;
	u->lsr_err = 0;
	u->msr_delta = 0;
	u->scr = 0;
	u->dll = 0;
	u->dlm = 0;
	u->thri_pending = false;
	u->in_head = 0;
	u->in_count = 0;
}

static void uart_transmit(struct uart *u, uint8_t v)
{
	if (u->mcr & UART_MCR_LOOP) {
		if (uart_ring_push(u, &v, 1) == 0)
			u->lsr_err |= UART_LSR_OE;
	} else if (u->cfg.out) {
		u->cfg.out(u->cfg.out_opaque, &v, 1);
	}
	/* THR empties at once: the THRE interrupt stays (or becomes) pending. */
	u->thri_pending = true;
}

static void uart_write_mcr(struct uart *u, uint8_t v)
{
	uint8_t old = uart_msr_lines(u->mcr);
	uint8_t now;
	uint8_t changed;

	u->mcr = v & UART_MCR_MASK;
	now = uart_msr_lines(u->mcr);
	changed = old ^ now;
	if (changed & UART_MSR_CTS)
		u->msr_delta |= UART_MSR_DCTS;
	if (changed & UART_MSR_DSR)
		u->msr_delta |= UART_MSR_DDSR;
	if ((old & UART_MSR_RI) && !(now & UART_MSR_RI))
		u->msr_delta |= UART_MSR_TERI;
	if (changed & UART_MSR_DCD)
		u->msr_delta |= UART_MSR_DDCD;
}

static void uart_write_fcr(struct uart *u, uint8_t v)
{
	/* The 16550A ignores the other bits unless bit 0 is set in the same write. */
	if (!(v & UART_FCR_ENABLE)) {
		u->fcr = 0;
		return;
	}
	u->fcr = v & UART_FCR_KEEP;
	if (v & UART_FCR_CLEAR_RX)
		uart_ring_drop(u, UART_RX_FIFO);
	/* UART_FCR_CLEAR_TX: there is no TX FIFO to clear. */
}

static void uart_write_reg(struct uart *u, unsigned int reg, uint8_t v)
{
	bool dlab = u->lcr & UART_LCR_DLAB;

	switch (reg) {
	case UART_THR:
		if (dlab)
			u->dll = v;
		else
			uart_transmit(u, v);
		break;
	case UART_IER:
		if (dlab) {
			u->dlm = v;
		} else {
			/* Enabling THRI while THR is empty (always) raises it again. */
			if ((v & UART_IER_THRI) && !(u->ier & UART_IER_THRI))
				u->thri_pending = true;
			u->ier = v & UART_IER_MASK;
		}
		break;
	case UART_FCR:
		uart_write_fcr(u, v);
		break;
	case UART_LCR:
		u->lcr = v;
		break;
	case UART_MCR:
		uart_write_mcr(u, v);
		break;
	case UART_LSR:
	case UART_MSR:
		break; /* read-only; writes are factory-test only on real parts */
	case UART_SCR:
		u->scr = v;
		break;
	}
}

static uint8_t uart_read_reg(struct uart *u, unsigned int reg)
{
	bool dlab = u->lcr & UART_LCR_DLAB;
	uint8_t v = 0;

	switch (reg) {
	case UART_RBR:
		if (dlab) {
			v = u->dll;
		} else if (u->in_count) {
			v = u->in[u->in_head];
			uart_ring_drop(u, 1);
		}
		break;
	case UART_IER:
		v = dlab ? u->dlm : u->ier;
		break;
	case UART_IIR:
		v = uart_iir_id(u);
		if (v == UART_IIR_THRI)
			u->thri_pending = false;
		if (u->fcr & UART_FCR_ENABLE)
			v |= UART_IIR_FIFO;
		break;
	case UART_LCR:
		v = u->lcr;
		break;
	case UART_MCR:
		v = u->mcr;
		break;
	case UART_LSR:
		v = UART_LSR_THRE | UART_LSR_TEMT | u->lsr_err;
		if (u->in_count)
			v |= UART_LSR_DR;
		u->lsr_err = 0;
		break;
	case UART_MSR:
		v = uart_msr_lines(u->mcr) | u->msr_delta;
		u->msr_delta = 0;
		break;
	case UART_SCR:
		v = u->scr;
		break;
	}
	return v;
}

/* bus_io_fn: accesses wider than a byte are split into byte accesses at
 * consecutive offsets, as an ISA bus would. */
static void uart_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct uart *u = opaque;
	bool room;

	pthread_mutex_lock(&u->lock);
	for (uint32_t i = 0; i < len; i++) {
		uint64_t reg = offset + i;

		if (reg < offset || reg >= UART_NR_REGS) {
			if (!is_write)
				data[i] = 0xff;
			continue;
		}
		if (is_write)
			uart_write_reg(u, (unsigned int)reg, data[i]);
		else
			data[i] = uart_read_reg(u, (unsigned int)reg);
	}
	uart_update_irq(u);
	room = uart_take_room(u);
	pthread_mutex_unlock(&u->lock);

	if (room)
		u->cfg.room(u->cfg.room_opaque);
}

struct uart *uart_create(const struct uart_config *cfg)
{
	struct uart *u = calloc(1, sizeof(*u));

	if (!u)
		return NULL;
	if (pthread_mutex_init(&u->lock, NULL)) {
		free(u);
		return NULL;
	}
	if (cfg)
		u->cfg = *cfg;
	uart_reset_locked(u);
	return u;
}

void uart_destroy(struct uart *u)
{
	if (!u)
		return;
	pthread_mutex_destroy(&u->lock);
	free(u);
}

size_t uart_input(struct uart *u, const uint8_t *buf, size_t len)
{
	size_t n;

	pthread_mutex_lock(&u->lock);
	n = uart_ring_push(u, buf, len);
	if (n < len)
		u->room_wanted = true;
	uart_update_irq(u);
	pthread_mutex_unlock(&u->lock);
	return n;
}

size_t uart_input_room(struct uart *u)
{
	size_t n;

	pthread_mutex_lock(&u->lock);
	n = UART_INPUT_BUF - u->in_count;
	pthread_mutex_unlock(&u->lock);
	return n;
}

static void uart_reset(void *dev)
{
	struct uart *u = dev;
	bool room;

	pthread_mutex_lock(&u->lock);
	uart_reset_locked(u);
	uart_update_irq(u);
	room = uart_take_room(u);
	pthread_mutex_unlock(&u->lock);

	if (room)
		u->cfg.room(u->cfg.room_opaque);
}

/* State layout (little-endian): u32 version, u8 ier fcr lcr mcr lsr_err
 * msr_delta scr dll dlm thri_pending, u32 input count, input bytes oldest first. */
static void uart_save(void *dev, struct sbuf *out)
{
	struct uart *u = dev;
	size_t first;

	pthread_mutex_lock(&u->lock);
	sbuf_put_u32(out, UART_STATE_VERSION);
	sbuf_put_u8(out, u->ier);
	sbuf_put_u8(out, u->fcr);
	sbuf_put_u8(out, u->lcr);
	sbuf_put_u8(out, u->mcr);
	sbuf_put_u8(out, u->lsr_err);
	sbuf_put_u8(out, u->msr_delta);
	sbuf_put_u8(out, u->scr);
	sbuf_put_u8(out, u->dll);
	sbuf_put_u8(out, u->dlm);
	sbuf_put_u8(out, u->thri_pending);
	sbuf_put_u32(out, (uint32_t)u->in_count);
	first = UART_INPUT_BUF - u->in_head;
	if (first > u->in_count)
		first = u->in_count;
	sbuf_put(out, u->in + u->in_head, first);
	sbuf_put(out, u->in, u->in_count - first);
	pthread_mutex_unlock(&u->lock);
}

static int uart_load(void *dev, struct sbuf *in)
{
	struct uart *u = dev;
	uint8_t ier, fcr, lcr, mcr, lsr_err, msr_delta, scr, dll, dlm, thri_pending;
	uint8_t bytes[UART_INPUT_BUF];
	uint32_t version, count;
	bool room;

	version = sbuf_get_u32(in);
	ier = sbuf_get_u8(in);
	fcr = sbuf_get_u8(in);
	lcr = sbuf_get_u8(in);
	mcr = sbuf_get_u8(in);
	lsr_err = sbuf_get_u8(in);
	msr_delta = sbuf_get_u8(in);
	scr = sbuf_get_u8(in);
	dll = sbuf_get_u8(in);
	dlm = sbuf_get_u8(in);
	thri_pending = sbuf_get_u8(in);
	count = sbuf_get_u32(in);
	if (in->err || version != UART_STATE_VERSION || count > UART_INPUT_BUF)
		return -EINVAL;
	if ((ier & ~UART_IER_MASK) || (fcr & ~UART_FCR_KEEP) ||
	    (fcr && !(fcr & UART_FCR_ENABLE)) || (mcr & ~UART_MCR_MASK) ||
	    (lsr_err & ~UART_LSR_ERR_MASK) || (msr_delta & ~UART_MSR_DELTA_MASK) ||
	    thri_pending > 1)
		return -EINVAL;
	sbuf_get(in, bytes, count);
	if (in->err)
		return -EINVAL;

	pthread_mutex_lock(&u->lock);
	u->ier = ier;
	u->fcr = fcr;
	u->lcr = lcr;
	u->mcr = mcr;
	u->lsr_err = lsr_err;
	u->msr_delta = msr_delta;
	u->scr = scr;
	u->dll = dll;
	u->dlm = dlm;
	u->thri_pending = thri_pending;
	memcpy(u->in, bytes, count);
	u->in_head = 0;
	u->in_count = count;
	uart_update_irq(u);
	room = uart_take_room(u);
	pthread_mutex_unlock(&u->lock);

	if (room)
		u->cfg.room(u->cfg.room_opaque);
	return 0;
}

const struct device_ops uart_ops = {
	.name = "uart8250",
	.io = uart_io,
	.reset = uart_reset,
	.save = uart_save,
	.load = uart_load,
};
