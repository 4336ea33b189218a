/* cvisord: the host agent for many VMs. See daemon.h for what it does and
 * contrib/cvisord.service for running it under systemd. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "daemon/dlog.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

static void usage(FILE *f)
{
	fputs("usage: cvisord --state-dir DIR [--socket PATH] [--cvisor PATH]\n"
	      "               [--cgroup-root DIR] [--cgroup-parent NAME] [--verbose]\n"
	      "  --state-dir DIR      inventory (SQLite), VM sockets and logs; created if missing\n"
	      "  --socket PATH        the API socket (default DIR/cvisord.sock)\n"
	      "  --cvisor PATH        the cvisor program (default: next to cvisord)\n"
	      "  --cgroup-root DIR    where cgroup v2 is mounted (default /sys/fs/cgroup)\n"
	      "  --cgroup-parent NAME the VMs' parent cgroup under it (default cvisor.slice)\n"
	      "  --verbose, -v        debug messages\n"
	      "Control it with `cvisor vm` (cvisor vm --help). SIGTERM ends the daemon; the\n"
	      "VMs keep running and the next cvisord on DIR adopts them.\n",
	      f);
}

int main(int argc, char **argv)
{
	struct daemon_opts o = { 0 };
	struct daemon d;
	char err[512];
	int rc;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = NULL;
		const char **slot = NULL;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
			dlog_level = 2;
			continue;
		}
		static const struct {
			const char *name;
			size_t off;
		} opts[] = {
			{ "--state-dir", offsetof(struct daemon_opts, state_dir) },
			{ "--socket", offsetof(struct daemon_opts, socket) },
			{ "--cvisor", offsetof(struct daemon_opts, cvisor) },
			{ "--cgroup-root", offsetof(struct daemon_opts, cgroup_root) },
			{ "--cgroup-parent", offsetof(struct daemon_opts, cgroup_parent) },
		};
		for (size_t k = 0; k < sizeof(opts) / sizeof(opts[0]); k++) {
			size_t n = strlen(opts[k].name);
			if (!strncmp(a, opts[k].name, n) && (a[n] == '\0' || a[n] == '=')) {
				slot = (const char **)((char *)&o + opts[k].off);
				v = a[n] == '=' ? a + n + 1 : (i + 1 < argc ? argv[++i] : NULL);
				if (!v || !*v) {
					fprintf(stderr, "cvisord: %s needs a value\n", opts[k].name);
					return EXIT_USAGE;
				}
				break;
			}
		}
		if (!slot) {
			fprintf(stderr, "cvisord: unknown argument '%s' (see cvisord --help)\n", a);
			return EXIT_USAGE;
		}
		*slot = v;
	}
	if (!o.state_dir) {
		fprintf(stderr, "cvisord: --state-dir DIR is required (see cvisord --help)\n");
		return EXIT_USAGE;
	}
	/* the journal stamps lines itself; a terminal or a file gets our time */
	dlog_time = !getenv("JOURNAL_STREAM");
	rc = daemon_open(&d, &o, err, sizeof(err));
	if (rc < 0) {
		dlog_error("%s", err);
		daemon_close(&d);
		return rc == -EINVAL || rc == -ENAMETOOLONG ? EXIT_USAGE : EXIT_RUNTIME;
	}
	rc = daemon_run(&d);
	daemon_close(&d);
	return rc < 0 ? EXIT_RUNTIME : 0;
}
