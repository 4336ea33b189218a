/* VM processes. The daemon is single-threaded, so the child of fork may call
 * anything; still it only does what an exec needs. */
#include "daemon/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int64_t vmproc_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void child_fail(const char *what, const char *arg)
{
	char msg[512];
	int n = snprintf(msg, sizeof(msg), "cvisord: %s %s: %s\n", what, arg, strerror(errno));

	if (n > 0 && write(STDERR_FILENO, msg, (size_t)n) < 0) {
		/* nowhere else to say it */
	}
	_exit(127);
}

/* In the child: wait at the gate, then become the VMM. Never returns. */
static void child(const struct vmproc_spawn *s, int gate, int log, int null)
{
	sigset_t none;
	char go = 0;
	ssize_t n;

	do
		n = read(gate, &go, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1 || go != 'g')
		_exit(125); /* the daemon gave up on us (or died) before recording us */
	setsid(); /* our own session: the daemon's terminal and its end do not reach the VM */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	if (dup2(null, STDIN_FILENO) < 0 || dup2(log, STDOUT_FILENO) < 0 ||
	    dup2(log, STDERR_FILENO) < 0)
		_exit(127);
	/* nothing of the daemon's (its lock, its database, client sockets) may
	 * live on in the VM: most fds are close-on-exec, this covers the rest */
	if (syscall(SYS_close_range, 3U, ~0U, 0U) < 0) {
		for (int fd = 3; fd < 4096; fd++)
			close(fd);
	}
	execv(s->exe, s->argv);
	child_fail("cannot execute", s->exe);
}

int vmproc_spawn(const struct vmproc_spawn *s, pid_t *pid, int *gate, char *err, size_t errlen)
{
	int pipefd[2] = { -1, -1 }, log = -1, null = -1, rc;

	log = open(s->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (log < 0 || null < 0 || pipe2(pipefd, O_CLOEXEC) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot prepare the VM's process (%s): %s", s->log,
		         strerror(errno));
		goto out;
	}
	pid_t p = fork();
	if (p < 0) {
		rc = -errno;
		snprintf(err, errlen, "fork: %s", strerror(errno));
		goto out;
	}
	if (p == 0) {
		close(pipefd[1]);
		child(s, pipefd[0], log, null);
	}
	*pid = p;
	*gate = pipefd[1];
	pipefd[1] = -1;
	rc = 0;
out:
	if (pipefd[0] >= 0)
		close(pipefd[0]);
	if (pipefd[1] >= 0)
		close(pipefd[1]);
	if (log >= 0)
		close(log);
	if (null >= 0)
		close(null);
	return rc;
}

int vmproc_release(int gate)
{
	ssize_t n = write(gate, "g", 1);
	int rc = n == 1 ? 0 : -errno;

	close(gate);
	return rc;
}

void vmproc_abort(int gate)
{
	close(gate);
}

/* The fields after "(comm)" of /proc/PID/stat into buf; a pointer to them. */
static const char *stat_fields(pid_t pid, char *buf, size_t len)
{
	char path[64];
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n <= 0)
		return NULL;
	buf[n] = '\0';
	/* the command name may hold spaces and parentheses: the last ')' ends it */
	char *p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p + 2 : NULL;
}

int vmproc_start_time(pid_t pid, uint64_t *out)
{
	char buf[1024];
	const char *f = stat_fields(pid, buf, sizeof(buf));

	if (!f)
		return -ESRCH;
	/* f is field 3 (state); the start time is field 22 */
	for (int field = 3; field < 22; field++) {
		f = strchr(f, ' ');
		if (!f)
			return -EPROTO;
		f++;
	}
	char *end;
	errno = 0;
	unsigned long long v = strtoull(f, &end, 10);
	if (errno || end == f)
		return -EPROTO;
	*out = v;
	return 0;
}

int vmproc_zombie_status(pid_t pid, int *status)
{
	char buf[1024];
	const char *f = stat_fields(pid, buf, sizeof(buf));

	if (!f)
		return -ESRCH;
	if (f[0] != 'Z')
		return -EAGAIN;
	for (int field = 3; field < 52; field++) {
		f = strchr(f, ' ');
		if (!f)
			return -EPROTO; /* a kernel older than 3.5 */
		f++;
	}
	char *end;
	long v = strtol(f, &end, 10);
	if (end == f)
		return -EPROTO;
	*status = (int)v;
	return 0;
}

bool vmproc_alive(pid_t pid)
{
	char buf[1024];
	const char *f = stat_fields(pid, buf, sizeof(buf));

	return f && f[0] != 'Z' && f[0] != 'X';
}

bool vmproc_has_arg(pid_t pid, const char *arg)
{
	char path[64], *buf;
	size_t cap = 65536, len = 0, alen = strlen(arg);
	bool found = false;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	buf = malloc(cap);
	if (buf) {
		ssize_t n;
		while (len < cap - 1 && (n = read(fd, buf + len, cap - 1 - len)) > 0)
			len += (size_t)n;
		buf[len] = '\0';
		for (size_t i = 0; i < len; i += strlen(buf + i) + 1) {
			if (strlen(buf + i) == alen && !memcmp(buf + i, arg, alen)) {
				found = true;
				break;
			}
		}
	}
	free(buf);
	close(fd);
	return found;
}

uint64_t vmproc_uptime_ms(uint64_t start_ticks)
{
	struct timespec ts;
	long hz = sysconf(_SC_CLK_TCK);

	if (hz <= 0 || clock_gettime(CLOCK_BOOTTIME, &ts) < 0)
		return 0;
	uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	uint64_t start = start_ticks * 1000 / (uint64_t)hz;
	return now > start ? now - start : 0;
}

int vmproc_pidfd(pid_t pid)
{
	long fd = syscall(SYS_pidfd_open, pid, 0);

	if (fd < 0)
		return -errno;
	/* pidfds are close-on-exec from the start */
	return (int)fd;
}

int vmproc_signal(int pidfd, int sig)
{
	if (syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0)
		return -errno;
	return 0;
}
