/* 16550A-compatible UART (COM1 at 0x3f8, IRQ 4) with a host-side input buffer. */
#ifndef CVISOR_DEVICES_UART8250_H
#define CVISOR_DEVICES_UART8250_H

#include <stddef.h>
#include <stdint.h>

#include "devices/device.h"

#define UART_COM1_BASE 0x3f8
#define UART_COM1_IRQ 4
#define UART_NR_REGS 8
#define UART_INPUT_BUF 4096 /* host-side bytes waiting for the guest */

struct uart;

/* Sink for bytes the guest transmits (called from a vCPU thread, UART lock held,
 * so it must not call back into the UART). */
typedef void (*uart_out_fn)(void *opaque, const uint8_t *buf, size_t len);
/* Called (lock not held) when input room became available after being full. */
typedef void (*uart_room_fn)(void *opaque);

struct uart_config {
	uint32_t gsi;
	irq_fn irq;
	void *irq_opaque;
	uart_out_fn out;
	void *out_opaque;
	uart_room_fn room;
	void *room_opaque;
};

/* Create a UART in its power-on state; NULL on allocation failure. */
struct uart *uart_create(const struct uart_config *cfg);
/* Free it. */
void uart_destroy(struct uart *u);
/* Queue host input for the guest; returns how many bytes were accepted
 * (less than len when the buffer is full). Raises the RX interrupt if enabled. */
size_t uart_input(struct uart *u, const uint8_t *buf, size_t len);
/* Free space in the input buffer. */
size_t uart_input_room(struct uart *u);

/* ops: io at offsets 0..7 from the base, reset, save, load. */
extern const struct device_ops uart_ops;

#endif
