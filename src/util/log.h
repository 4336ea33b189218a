/* Logging to stderr: one line per message, prefixed with "cvisor: ". */
#ifndef CVISOR_UTIL_LOG_H
#define CVISOR_UTIL_LOG_H

#include <stdbool.h>

/* Verbosity: 0 errors only, 1 + warnings/info (default), 2 + debug. */
extern int log_level;

/* printf-style log lines at the given level. */
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
