/* cvisord's log: one line per message on stderr, prefixed "cvisord: " (under
 * systemd the journal adds the time; otherwise DLOG_TIME adds it). */
#ifndef CVISOR_DAEMON_DLOG_H
#define CVISOR_DAEMON_DLOG_H

#include <stdbool.h>

/* Verbosity: 0 errors, 1 + warnings and info (default), 2 + debug. */
extern int dlog_level;
/* Prefix every line with the local time (when stderr is not the journal). */
extern bool dlog_time;

/* printf-style log lines at the given level. */
void dlog_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void dlog_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void dlog_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void dlog_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
