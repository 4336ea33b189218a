/* Raw mode: no echo, no line buffering, no signal keys (Ctrl-C goes to the
 * guest); output post-processing stays on so host log lines look right.
 * term_raw_leave() is registered with atexit() and called from the fatal-signal
 * path, so the user's terminal is never left raw. */
#include "util/term.h"

#include <errno.h>
#include <stdlib.h>
#include <termios.h>
#include <unistd.h>

static struct termios saved;
static int saved_fd = -1;
static volatile int raw_on;

void term_raw_leave(void)
{
	if (raw_on && saved_fd >= 0) {
		tcsetattr(saved_fd, TCSAFLUSH, &saved);
		raw_on = 0;
	}
}

int term_raw_enter(int fd)
{
	struct termios t;

	if (tcgetattr(fd, &saved) < 0)
		return -errno;
	t = saved;
	t.c_iflag &= ~(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
	t.c_lflag &= ~(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
	t.c_cflag &= ~(CSIZE | PARENB);
	t.c_cflag |= CS8;
	t.c_oflag &= ~OPOST;
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	if (tcsetattr(fd, TCSAFLUSH, &t) < 0)
		return -errno;
	if (saved_fd < 0)
		atexit(term_raw_leave);
	saved_fd = fd;
	raw_on = 1;
	return 0;
}

bool term_is_raw(void)
{
	return raw_on;
}
