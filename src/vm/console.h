/* The host side of the guest's serial console: stdio (raw mode on a tty, with
 * an escape key), a file, a listening Unix socket, or nothing. It outlives VM
 * resets: a rebooted guest keeps writing to the same console. */
#ifndef CVISOR_VM_CONSOLE_H
#define CVISOR_VM_CONSOLE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vm/config.h"

#define CONSOLE_ESCAPE 0x01 /* Ctrl-A, then x quits, Ctrl-A sends Ctrl-A */

struct console {
	enum serial_kind kind;
	int in_fd;     /* where guest input comes from; -1 if none (or EOF seen) */
	int out_fd;    /* where guest output goes; -1 if none */
	int listen_fd; /* socket backend */
	bool tty;      /* stdin is a terminal in raw mode */
	bool escape;   /* saw the escape key */
	const char *path;
	pthread_mutex_t lock; /* out_fd changes when a socket client comes and goes */
	uint64_t dropped;     /* output bytes a slow or absent socket client missed */
};

enum console_input { CONSOLE_OK, CONSOLE_QUIT };

/* Set up the backend named in cfg. -errno with one line in err. */
int console_open(struct console *c, const struct vm_config *cfg, char *err, size_t errlen);
/* Restore the terminal, close fds, remove the socket. */
void console_close(struct console *c);
/* Guest output sink (the UART's out callback); thread-safe. */
void console_write(void *opaque, const uint8_t *buf, size_t len);
/* Accept a socket client (replacing none: a second client is refused). */
void console_accept(struct console *c);
/* Read up to room bytes of input into buf, handling the escape key. *n gets
 * the bytes for the guest; returns CONSOLE_QUIT when the user asked to quit.
 * On EOF the input side is closed (in_fd becomes -1). */
enum console_input console_read(struct console *c, uint8_t *buf, size_t room, size_t *n);

#endif
