/* stderr logging. When stdin is a terminal in raw mode a bare "\n" does not
 * return the carriage, so every line ends in "\r\n" while raw mode is on. */
#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>

#include "util/term.h"

int log_level = 1;

static void log_v(int level, const char *tag, const char *fmt, va_list ap)
{
	char line[1024];

	if (level > log_level)
		return;
	vsnprintf(line, sizeof(line), fmt, ap);
	/* one message, one line: control characters from user input become '?' */
	for (char *c = line; *c; c++) {
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	}
	fprintf(stderr, "cvisor: %s%s%s", tag, line, term_is_raw() ? "\r\n" : "\n");
}

#define LOG_FN(fn, level, tag)                                                               \
	void fn(const char *fmt, ...)                                                        \
	{                                                                                    \
		va_list ap;                                                                  \
		va_start(ap, fmt);                                                           \
		log_v(level, tag, fmt, ap);                                                  \
		va_end(ap);                                                                  \
	}

LOG_FN(log_error, 0, "")
LOG_FN(log_warn, 1, "warning: ")
LOG_FN(log_info, 1, "")
LOG_FN(log_debug, 2, "debug: ")
