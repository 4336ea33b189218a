/* cvisord logging. */
#include "daemon/dlog.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

int dlog_level = 1;
bool dlog_time;

static void dlog_v(int level, const char *tag, const char *fmt, va_list ap)
{
	char line[1024], stamp[32] = "";

	if (level > dlog_level)
		return;
	vsnprintf(line, sizeof(line), fmt, ap);
	/* one message, one line: control characters from requests become '?' */
	for (char *c = line; *c; c++) {
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	}
	if (dlog_time) {
		time_t t = time(NULL);
		struct tm tm;
		localtime_r(&t, &tm);
		strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S ", &tm);
	}
	fprintf(stderr, "%scvisord: %s%s\n", stamp, tag, line);
}

#define DLOG_FN(fn, level, tag)                                                              \
	void fn(const char *fmt, ...)                                                        \
	{                                                                                    \
		va_list ap;                                                                  \
		va_start(ap, fmt);                                                           \
		dlog_v(level, tag, fmt, ap);                                                 \
		va_end(ap);                                                                  \
	}

DLOG_FN(dlog_error, 0, "error: ")
DLOG_FN(dlog_warn, 1, "warning: ")
DLOG_FN(dlog_info, 1, "")
DLOG_FN(dlog_debug, 2, "debug: ")
