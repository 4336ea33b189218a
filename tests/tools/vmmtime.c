/* vmmtime: time a VMM run the way a user sees it, for benchmarks.
 *   vmmtime [-g GUEST_MIB] [-k] MARKER -- COMMAND ARGS...
 * (-k: stop COMMAND with SIGTERM once MARKER was seen)
 * Starts COMMAND with stdout on a pipe (stderr discarded) and prints one line:
 *   first_byte_ms=F marker_ms=M exit_ms=E overhead_kib=O rc=R
 * first_byte: the first byte of guest console output; marker: the first line
 * containing MARKER; exit: the process ended. overhead: the VMM's resident
 * memory at the marker minus the guest-RAM mapping (the anonymous mapping of
 * GUEST_MIB MiB, allowing 8 MiB of alignment slack), from /proc/PID/smaps. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Sum of Rss over all mappings except the guest RAM one. */
static long overhead_kib(pid_t pid, long guest_kib)
{
	char path[64], line[512];
	long total = 0, cur_size = 0, rss;
	unsigned long a, b;
	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &a, &b) == 2 && strchr(line, '-') < strchr(line, ' '))
			cur_size = (long)((b - a) >> 10);
		else if (sscanf(line, "Rss: %ld kB", &rss) == 1 &&
		         (cur_size < guest_kib || cur_size > guest_kib + 8192))
			total += rss;
	}
	fclose(f);
	return total;
}

int main(int argc, char **argv)
{
	long guest_kib = 512 * 1024;
	int i = 1, kill_at_marker = 0;
	for (;;) {
		if (argc > i + 2 && !strcmp(argv[i], "-g")) {
			guest_kib = atol(argv[i + 1]) * 1024;
			i += 2;
		} else if (argc > i + 1 && !strcmp(argv[i], "-k")) {
			kill_at_marker = 1;
			i++;
		} else {
			break;
		}
	}
	if (argc < i + 3 || strcmp(argv[i + 1], "--")) {
		fprintf(stderr, "usage: vmmtime [-g GUEST_MIB] MARKER -- COMMAND ARGS...\n");
		return 2;
	}
	const char *marker = argv[i];
	int p[2];
	if (pipe(p) < 0)
		return 1;
	double t0 = now_ms();
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);
		dup2(null, 0);
		dup2(p[1], 1); /* the guest console; the VMM's own warnings (stderr) do not count */
		dup2(null, 2);
		close(p[0]);
		execvp(argv[i + 2], argv + i + 2);
		_exit(127);
	}
	close(p[1]);
	double first = -1, mark = -1;
	long over = -1;
	char buf[4096], linebuf[8192];
	size_t ll = 0;
	ssize_t n;
	while ((n = read(p[0], buf, sizeof(buf))) > 0) {
		if (first < 0)
			first = now_ms() - t0;
		for (ssize_t k = 0; k < n; k++) {
			if (ll < sizeof(linebuf) - 1)
				linebuf[ll++] = buf[k];
			if (buf[k] != '\n')
				continue;
			linebuf[ll] = '\0';
			if (mark < 0 && strstr(linebuf, marker)) {
				mark = now_ms() - t0;
				over = overhead_kib(pid, guest_kib);
				if (kill_at_marker)
					kill(pid, SIGTERM);
			}
			ll = 0;
		}
	}
	int st;
	waitpid(pid, &st, 0);
	double end = now_ms() - t0;
	printf("first_byte_ms=%.1f marker_ms=%.1f exit_ms=%.1f overhead_kib=%ld rc=%d\n", first, mark,
	       end, over, WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	return 0;
}
