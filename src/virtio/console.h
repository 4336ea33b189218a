/* virtio-console (virtio 1.2, 5.3): one port, no MULTIPORT, carrying the
 * guest's hvc0 on the same host backend as the serial port. The transmit queue
 * goes to an output sink (console_write); host input is buffered here and fed
 * into the receive queue as the driver offers buffers. */
#ifndef CVISOR_VIRTIO_CONSOLE_H
#define CVISOR_VIRTIO_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "virtio/virtio.h"

/* device feature bits (5.3.3) */
#define VIRTIO_CONSOLE_F_SIZE 0
#define VIRTIO_CONSOLE_F_MULTIPORT 1
#define VIRTIO_CONSOLE_F_EMERG_WRITE 2

/* queues of port 0 */
#define VIRTIO_CONSOLE_RXQ 0
#define VIRTIO_CONSOLE_TXQ 1

/* The size given to the guest when the host side is not a terminal (VT100's). */
#define VIRTIO_CONSOLE_DEFAULT_COLS 80
#define VIRTIO_CONSOLE_DEFAULT_ROWS 24
#define VIRTIO_CONSOLE_INPUT_BUF 4096 /* host-side bytes waiting for the guest */
#define VIRTIO_CONSOLE_CONFIG_SIZE 12 /* cols, rows, max_nr_ports, emerg_wr */

struct virtio_console;

/* Sink for guest output; called with the device lock held (must not call back in). */
typedef void (*virtio_console_out_fn)(void *opaque, const uint8_t *buf, size_t len);
/* Called with the device lock held when input may flow again: room came back
 * after the buffer was full, or the driver came up or went away. Must not call
 * back into the device (writing an eventfd is what it is for). */
typedef void (*virtio_console_room_fn)(void *opaque);

struct virtio_console_setup {
	virtio_console_out_fn out;
	void *out_opaque;
	virtio_console_room_fn room;
	void *room_opaque;
	uint16_t cols, rows; /* 0: the defaults */
};

/* Create the device; NULL on allocation failure. */
struct virtio_console *virtio_console_create(const struct virtio_console_setup *s);
/* Tell the device its transport's virtio_dev (its lock guards every entry point). */
void virtio_console_attach(struct virtio_console *c, struct virtio_dev *vdev);
/* Free it (after its transport is gone). */
void virtio_console_destroy(struct virtio_console *c);
/* Whether the guest's driver is up (DRIVER_OK and the receive queue enabled). */
bool virtio_console_ready(struct virtio_console *c);
/* Queue host input for the guest; returns the bytes accepted (fewer than len
 * when the buffer is full). */
size_t virtio_console_input(struct virtio_console *c, const uint8_t *buf, size_t len);
/* Free space in the input buffer. */
size_t virtio_console_input_room(struct virtio_console *c);
/* New terminal size: update the configuration and raise the config interrupt. */
void virtio_console_resize(struct virtio_console *c, uint16_t cols, uint16_t rows);
/* The terminal size of fd (TIOCGWINSZ). 0, or -errno when fd is not a terminal
 * or reports no size (cols/rows untouched then). */
int virtio_console_term_size(int fd, uint16_t *cols, uint16_t *rows);

/* Bytes moved so far, for logs and tests. */
struct virtio_console_counters {
	uint64_t tx_bytes, rx_bytes;
};
/* Copy the counters. */
void virtio_console_counters(struct virtio_console *c, struct virtio_console_counters *out);

extern const struct virtio_dev_ops virtio_console_ops;

#endif
