/* Terminal raw mode for the serial console on a tty, restored on every exit path. */
#ifndef CVISOR_UTIL_TERM_H
#define CVISOR_UTIL_TERM_H

#include <stdbool.h>

/* Put fd (a tty) into raw mode; remembers the old settings. 0 or -errno. */
int term_raw_enter(int fd);
/* Restore the saved settings if raw mode is on; async-signal-safe. */
void term_raw_leave(void);
/* Whether raw mode is currently on (log lines then need "\r\n"). */
bool term_is_raw(void);

#endif
