/* `cvisor vm`: requests to cvisord's API over its Unix socket (the HTTP
 * client of src/api/client.c), answers printed for people (tables, key:
 * value) or as JSON (--output json). Relative paths in VM options are made
 * absolute here: the daemon has its own working directory. */
#include "vmctl/vmctl.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "api/client.h"
#include "util/log.h"

#define EXIT_ERROR 1
#define EXIT_USAGE 2
#define VMCTL_TIMEOUT_MS 30000
#define VMCTL_DESTROY_WAIT_S 30

static void usage(FILE *f)
{
	fputs("usage: cvisor vm [--socket PATH] COMMAND ...\n"
	      "  create NAME --kernel PATH [cvisor run options] [daemon options]\n"
	      "      daemon options: --restart never|on-failure|always  --autostart\n"
	      "                      --cpu-quota PCT  --cpu-weight N  --cpuset LIST\n"
	      "                      --memory-max SIZE  --io-bps N  --io-iops N\n"
	      "  set NAME [--restart P] [--autostart on|off] [--cpu-quota PCT|none] ...\n"
	      "  start | shutdown | destroy | pause | resume | delete NAME\n"
	      "  info NAME [--output json]      definition, state, cgroup limits and usage\n"
	      "  list [--output json]           every VM\n"
	      "  console NAME                   the serial console (detach: Ctrl-])\n"
	      "  events [NAME]                  what happened, oldest first\n"
	      "  metrics                        Prometheus text of the daemon and its VMs\n"
	      "The socket defaults to $CVISORD_SOCKET, else " VMCTL_DEFAULT_SOCKET ".\n"
	      "Exit status: 0 done, 1 refused by cvisord or no answer, 2 bad usage or input.\n",
	      f);
}

/* ---- talking to the daemon ---- */

/* Send a request; on a 2xx answer return 0 with the parsed JSON body in *out
 * (may be NULL for none). Otherwise print the error and return the exit status. */
static int call(const char *sock, const char *method, const char *path,
                struct json_object *body, struct json_object **out)
{
	struct api_response resp;
	char err[512];
	const char *text = body ? json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN)
	                        : NULL;
	int rc;

	if (out)
		*out = NULL;
	rc = api_client_request(sock, method, path, text, VMCTL_TIMEOUT_MS, &resp, err,
	                        sizeof(err));
	if (rc < 0) {
		log_error("%s (is cvisord running? --socket or $CVISORD_SOCKET)", err);
		return EXIT_ERROR;
	}
	struct json_object *o = resp.len ? json_tokener_parse(resp.body) : NULL;
	if (resp.status < 200 || resp.status > 299) {
		struct json_object *e;
		if (o && json_object_object_get_ex(o, "error", &e))
			log_error("%s", json_object_get_string(e));
		else
			log_error("cvisord answered HTTP %d", resp.status);
		json_object_put(o);
		api_response_free(&resp);
		/* 400: the input was bad, as a usage error is */
		return resp.status == 400 ? EXIT_USAGE : EXIT_ERROR;
	}
	api_response_free(&resp);
	if (out)
		*out = o;
	else
		json_object_put(o);
	return 0;
}

static const char *str_of(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !v)
		return NULL;
	return json_object_get_string(v);
}

static int64_t int_of(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !v)
		return 0;
	return json_object_get_int64(v);
}

static void print_json(struct json_object *o)
{
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
	                                               JSON_C_TO_STRING_NOSLASHESCAPE));
}

static void duration(uint64_t s, char *out, size_t len)
{
	if (s >= 86400)
		snprintf(out, len, "%llud%02lluh", (unsigned long long)(s / 86400),
		         (unsigned long long)(s % 86400 / 3600));
	else if (s >= 3600)
		snprintf(out, len, "%lluh%02llum", (unsigned long long)(s / 3600),
		         (unsigned long long)(s % 3600 / 60));
	else if (s >= 60)
		snprintf(out, len, "%llum%02llus", (unsigned long long)(s / 60),
		         (unsigned long long)(s % 60));
	else
		snprintf(out, len, "%llus", (unsigned long long)s);
}

static bool check_name(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 32 || name[0] == '-' ||
	    strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != n) {
		log_error("vm: '%s' is not a VM name (1 to 32 of letters, digits, '_', '.', '-')",
		          name);
		return false;
	}
	return true;
}

/* ---- create and set: options ---- */

/* The daemon's own options in create/set and their JSON limit names. */
static const struct {
	const char *opt;
	const char *limit;
} limit_opts[] = {
	{ "--cpu-quota", "cpu_quota" },   { "--cpu-weight", "cpu_weight" },
	{ "--cpuset", "cpuset" },         { "--memory-max", "memory_max" },
	{ "--io-bps", "io_bps" },         { "--io-iops", "io_iops" },
};

/* Split "--opt=value" into name and value; *val NULL when there is no '='. */
static void split_opt(const char *a, char *name, size_t len, const char **val)
{
	const char *eq = strchr(a, '=');

	*val = NULL;
	if (!strncmp(a, "--", 2) && eq && (size_t)(eq - a) < len) {
		memcpy(name, a, (size_t)(eq - a));
		name[eq - a] = '\0';
		*val = eq + 1;
	} else {
		snprintf(name, len, "%s", a);
	}
}

/* Handle one daemon option at argv[*i] into body o; returns 1 if it was one,
 * 0 if not, -1 on a usage error. create: --autostart is a flag there. */
static int daemon_opt(struct json_object *o, int argc, char **argv, int *i, bool create)
{
	char name[32];
	const char *val;
	struct json_object *limits;

	split_opt(argv[*i], name, sizeof(name), &val);
	bool is_limit = false;
	for (size_t k = 0; k < sizeof(limit_opts) / sizeof(limit_opts[0]); k++)
		is_limit |= !strcmp(name, limit_opts[k].opt);
	if (strcmp(name, "--restart") && strcmp(name, "--autostart") && !is_limit)
		return 0;
	if (!strcmp(name, "--autostart") && create && !val) {
		json_object_object_add(o, "autostart", json_object_new_boolean(true));
		return 1;
	}
	if (!val) {
		if (*i + 1 >= argc) {
			log_error("vm: %s needs a value", name);
			return -1;
		}
		val = argv[++*i];
	}
	if (!strcmp(name, "--restart")) {
		json_object_object_add(o, "restart", json_object_new_string(val));
	} else if (!strcmp(name, "--autostart")) {
		bool on = !strcmp(val, "on") || !strcmp(val, "yes") || !strcmp(val, "true");
		if (!on && strcmp(val, "off") && strcmp(val, "no") && strcmp(val, "false")) {
			log_error("vm: --autostart: '%s' is not on or off", val);
			return -1;
		}
		json_object_object_add(o, "autostart", json_object_new_boolean(on));
	} else {
		if (!json_object_object_get_ex(o, "limits", &limits)) {
			limits = json_object_new_object();
			json_object_object_add(o, "limits", limits);
		}
		for (size_t k = 0; k < sizeof(limit_opts) / sizeof(limit_opts[0]); k++) {
			if (!strcmp(name, limit_opts[k].opt))
				json_object_object_add(limits, limit_opts[k].limit,
				                       json_object_new_string(val));
		}
	}
	return 1;
}

/* path made absolute against our working directory (the daemon's differs). */
static char *absolute(const char *path)
{
	char cwd[PATH_MAX], *out = NULL;

	if (path[0] == '/' || !path[0])
		return strdup(path);
	if (!getcwd(cwd, sizeof(cwd)) || asprintf(&out, "%s/%s", cwd, path) < 0)
		return NULL;
	return out;
}

/* A "k=v,k=v" option value with key's value made absolute. */
static char *absolute_sub(const char *v, const char *key)
{
	size_t kl = strlen(key);
	const char *p = v;

	while (p && *p) {
		if (!strncmp(p, key, kl) && p[kl] == '=' && p[kl + 1] != '/') {
			size_t len = strcspn(p + kl + 1, ",");
			char *rel = strndup(p + kl + 1, len), *abs = rel ? absolute(rel) : NULL, *out = NULL;
			if (abs && asprintf(&out, "%.*s%s%s", (int)(p + kl + 1 - v), v, abs,
			                    p + kl + 1 + len) < 0)
				out = NULL;
			free(rel);
			free(abs);
			return out;
		}
		p = strchr(p, ',');
		p = p ? p + 1 : NULL;
	}
	return strdup(v);
}

/* Add a cvisor run option to the args array, with paths made absolute. */
static int add_run_opt(struct json_object *args, const char *name, const char *val, bool joined)
{
	char *v = NULL, *full = NULL;

	if (val) {
		if (!strcmp(name, "--kernel") || !strcmp(name, "--initrd"))
			v = absolute(val);
		else if (!strcmp(name, "--disk"))
			v = absolute_sub(val, "path");
		else if (!strcmp(name, "--vsock"))
			v = absolute_sub(val, "socket");
		else
			v = strdup(val);
		if (!v)
			return -ENOMEM;
	}
	if (joined) {
		if (asprintf(&full, "%s=%s", name, v ? v : "") < 0) {
			free(v);
			return -ENOMEM;
		}
		json_object_array_add(args, json_object_new_string(full));
		free(full);
	} else {
		json_object_array_add(args, json_object_new_string(name));
		if (v)
			json_object_array_add(args, json_object_new_string(v));
	}
	free(v);
	return 0;
}

/* Flags of cvisor run (no value). */
static bool run_flag(const char *name)
{
	return !strcmp(name, "--verbose") || !strcmp(name, "-v") || !strcmp(name, "--rng") ||
	       !strcmp(name, "--balloon");
}

static int cmd_create(const char *sock, int argc, char **argv)
{
	struct json_object *o = json_object_new_object(), *args = json_object_new_array(), *out;
	int rc = EXIT_USAGE;

	if (argc < 2) {
		log_error("vm create: NAME and options are required (see cvisor vm --help)");
		goto out;
	}
	if (!check_name(argv[1]))
		goto out;
	json_object_object_add(o, "name", json_object_new_string(argv[1]));
	for (int i = 2; i < argc; i++) {
		char name[32];
		const char *val;
		int d = daemon_opt(o, argc, argv, &i, true);
		if (d < 0)
			goto out;
		if (d > 0)
			continue;
		split_opt(argv[i], name, sizeof(name), &val);
		bool joined = val != NULL;
		if (strncmp(name, "--", 2) && strcmp(name, "-v")) {
			log_error("vm create: unexpected argument '%s' (options start with --)",
			          argv[i]);
			goto out;
		}
		if (!val && !run_flag(name) && i + 1 < argc)
			val = argv[++i];
		if (add_run_opt(args, name, val, joined) < 0) {
			log_error("vm create: out of memory");
			rc = EXIT_ERROR;
			goto out;
		}
	}
	json_object_object_add(o, "args", args);
	args = NULL;
	rc = call(sock, "POST", "/v1/vms", o, &out);
	if (rc == 0) {
		printf("created %s\n", argv[1]);
		json_object_put(out);
	}
out:
	json_object_put(args);
	json_object_put(o);
	return rc;
}

static int cmd_set(const char *sock, int argc, char **argv)
{
	struct json_object *o = json_object_new_object(), *out;
	char path[128];
	int rc = EXIT_USAGE;

	if (argc < 3 || !check_name(argv[1])) {
		if (argc < 3)
			log_error("vm set: NAME and at least one setting are required");
		goto out;
	}
	for (int i = 2; i < argc; i++) {
		int d = daemon_opt(o, argc, argv, &i, false);
		if (d < 0)
			goto out;
		if (d == 0) {
			log_error("vm set: '%s' cannot be changed here (--restart, --autostart, "
			          "--cpu-quota, --cpu-weight, --cpuset, --memory-max, --io-bps, "
			          "--io-iops)",
			          argv[i]);
			goto out;
		}
	}
	snprintf(path, sizeof(path), "/v1/vms/%s", argv[1]);
	rc = call(sock, "PATCH", path, o, &out);
	if (rc == 0) {
		printf("%s: %s\n", argv[1],
		       !strcmp(str_of(out, "state") ? str_of(out, "state") : "", "running")
		               ? "changed (limits applied to the running VM)"
		               : "changed");
		json_object_put(out);
	}
out:
	json_object_put(o);
	return rc;
}

/* ---- list and info ---- */

static int cmd_list(const char *sock, bool json)
{
	struct json_object *o, *vms;
	int rc = call(sock, "GET", "/v1/vms", NULL, &o);

	if (rc)
		return rc;
	if (!o || !json_object_object_get_ex(o, "vms", &vms) ||
	    !json_object_is_type(vms, json_type_array)) {
		log_error("vm list: unexpected answer from cvisord");
		json_object_put(o);
		return EXIT_ERROR;
	}
	if (json) {
		print_json(vms);
	} else {
		printf("%-20s %-11s %8s %9s %8s %-11s %s\n", "NAME", "STATE", "PID", "UPTIME",
		       "RESTARTS", "RESTART", "AUTOSTART");
		for (size_t i = 0; i < json_object_array_length(vms); i++) {
			struct json_object *v = json_object_array_get_idx(vms, i);
			char up[32] = "-", pid[16] = "-";
			if (int_of(v, "pid")) {
				snprintf(pid, sizeof(pid), "%lld", (long long)int_of(v, "pid"));
				duration((uint64_t)int_of(v, "uptime_s"), up, sizeof(up));
			}
			printf("%-20s %-11s %8s %9s %8lld %-11s %s\n", str_of(v, "name"),
			       str_of(v, "state"), pid, up, (long long)int_of(v, "restarts"),
			       str_of(v, "restart"),
			       json_object_get_boolean(json_object_object_get(v, "autostart"))
			               ? "yes"
			               : "no");
		}
	}
	json_object_put(o);
	return 0;
}

static void limit_line(struct json_object *l, const char *key, const char *label,
                       const char *unit, const char *unset)
{
	struct json_object *v;

	if (!json_object_object_get_ex(l, key, &v) || !v)
		printf("  %-13s %s\n", label, unset);
	else if (!strcmp(key, "memory_max"))
		printf("  %-13s %.1f MiB\n", label, json_object_get_int64(v) / 1048576.0);
	else
		printf("  %-13s %s%s\n", label, json_object_get_string(v), unit);
}

static void print_info(struct json_object *o)
{
	struct json_object *v, *cg, *con, *ev;
	char up[32];

	printf("%-15s %s\n", "Name:", str_of(o, "name"));
	printf("%-15s %s (desired: %s)\n", "State:", str_of(o, "state"), str_of(o, "desired"));
	if (int_of(o, "pid")) {
		duration((uint64_t)int_of(o, "uptime_s"), up, sizeof(up));
		printf("%-15s %lld%s\n", "PID:", (long long)int_of(o, "pid"),
		       json_object_get_boolean(json_object_object_get(o, "adopted"))
		               ? " (adopted after a daemon restart)"
		               : "");
		printf("%-15s %s\n", "Uptime:", up);
	}
	printf("%-15s %lld (policy %s)\n", "Restarts:", (long long)int_of(o, "restarts"),
	       str_of(o, "restart"));
	if (json_object_object_get_ex(o, "restart_in_ms", &v))
		printf("%-15s in %.1f s\n", "Next restart:", json_object_get_int64(v) / 1000.0);
	printf("%-15s %s\n", "Autostart:",
	       json_object_get_boolean(json_object_object_get(o, "autostart")) ? "yes" : "no");
	if (str_of(o, "last_exit") && str_of(o, "last_exit")[0])
		printf("%-15s %s\n", "Last exit:", str_of(o, "last_exit"));
	if (str_of(o, "error"))
		printf("%-15s %s\n", "Start error:", str_of(o, "error"));
	printf("%-15s", "Options:");
	if (json_object_object_get_ex(o, "args", &v) && json_object_is_type(v, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(v); i++)
			printf(" %s", json_object_get_string(json_object_array_get_idx(v, i)));
	}
	printf("\n%-15s %s\n", "API socket:", str_of(o, "api_socket"));
	printf("%-15s %s\n", "Log:", str_of(o, "log"));
	if (json_object_object_get_ex(o, "console", &con) && con)
		printf("%-15s %s, %lld viewer(s), %lld bytes of scrollback\n", "Console:",
		       json_object_get_boolean(json_object_object_get(con, "connected"))
		               ? "connected"
		               : "not connected",
		       (long long)int_of(con, "viewers"), (long long)int_of(con, "scrollback_bytes"));
	if (json_object_object_get_ex(o, "cgroup", &cg) && cg) {
		struct json_object *l = json_object_object_get(cg, "limits"), *u;
		if (json_object_get_boolean(json_object_object_get(cg, "available")))
			printf("%-15s %s\n", "cgroup:", str_of(cg, "path"));
		else
			printf("%-15s not available: %s\n", "cgroup:", str_of(cg, "error"));
		if (l) {
			limit_line(l, "cpu_quota", "cpu quota:", "% of one CPU", "none");
			limit_line(l, "cpu_weight", "cpu weight:", "", "default (100)");
			limit_line(l, "cpuset", "cpuset:", "", "all CPUs");
			limit_line(l, "memory_max", "memory max:", "", "none");
			limit_line(l, "io_bps", "io bytes/s:", "", "none");
			limit_line(l, "io_iops", "io ops/s:", "", "none");
		}
		if (str_of(cg, "note"))
			printf("  %-13s %s\n", "note:", str_of(cg, "note"));
		if (json_object_object_get_ex(cg, "usage", &u) && u)
			printf("  %-13s cpu %.3f s (throttled %.3f s, %lld times), memory %.1f MiB\n",
			       "usage:", int_of(u, "cpu_usec") / 1e6,
			       int_of(u, "cpu_throttled_usec") / 1e6,
			       (long long)int_of(u, "cpu_nr_throttled"),
			       int_of(u, "memory_bytes") / 1048576.0);
	}
	if (json_object_object_get_ex(o, "events", &ev) && json_object_is_type(ev, json_type_array) &&
	    json_object_array_length(ev)) {
		printf("Events:\n");
		for (size_t i = 0; i < json_object_array_length(ev); i++) {
			struct json_object *e = json_object_array_get_idx(ev, i);
			printf("  %s  %-12s %s\n", str_of(e, "time"), str_of(e, "kind"),
			       str_of(e, "detail"));
		}
	}
}

static int cmd_info(const char *sock, const char *name, bool json)
{
	struct json_object *o;
	char path[128];
	int rc;

	snprintf(path, sizeof(path), "/v1/vms/%s", name);
	rc = call(sock, "GET", path, NULL, &o);
	if (rc)
		return rc;
	if (json)
		print_json(o);
	else
		print_info(o);
	json_object_put(o);
	return 0;
}

static int cmd_events(const char *sock, const char *name)
{
	struct json_object *o, *ev;
	char path[160];
	int rc;

	if (name)
		snprintf(path, sizeof(path), "/v1/vms/%s/events?limit=1000", name);
	else
		snprintf(path, sizeof(path), "/v1/events?limit=1000");
	rc = call(sock, "GET", path, NULL, &o);
	if (rc)
		return rc;
	if (json_object_object_get_ex(o, "events", &ev) && json_object_is_type(ev, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(ev); i++) {
			struct json_object *e = json_object_array_get_idx(ev, i);
			printf("%s  %-20s %-12s %s\n", str_of(e, "time"),
			       str_of(e, "vm") ? str_of(e, "vm") : "(cvisord)", str_of(e, "kind"),
			       str_of(e, "detail"));
		}
	}
	json_object_put(o);
	return 0;
}

static int cmd_metrics(const char *sock)
{
	struct api_response resp;
	char err[512];

	if (api_client_request(sock, "GET", "/metrics", NULL, VMCTL_TIMEOUT_MS, &resp, err,
	                       sizeof(err)) < 0) {
		log_error("%s", err);
		return EXIT_ERROR;
	}
	if (resp.status != 200) {
		log_error("cvisord answered HTTP %d", resp.status);
		api_response_free(&resp);
		return EXIT_ERROR;
	}
	fwrite(resp.body, 1, resp.len, stdout);
	api_response_free(&resp);
	return 0;
}

/* PUT /v1/vms/NAME/ACTION, and for destroy wait until it has stopped. */
static int cmd_action(const char *sock, const char *action, const char *name)
{
	struct json_object *o;
	char path[128];
	int rc;

	snprintf(path, sizeof(path), "/v1/vms/%s/%s", name, action);
	rc = call(sock, "PUT", path, NULL, &o);
	if (rc)
		return rc;
	if (!strcmp(action, "start")) {
		printf("started %s (process %lld)\n", name, (long long)int_of(o, "pid"));
	} else if (!strcmp(action, "shutdown")) {
		printf("%s: shutdown requested (ACPI power button)\n", name);
	} else if (!strcmp(action, "destroy")) {
		snprintf(path, sizeof(path), "/v1/vms/%s", name);
		for (int i = 0; i < VMCTL_DESTROY_WAIT_S * 10; i++) {
			json_object_put(o);
			o = NULL;
			rc = call(sock, "GET", path, NULL, &o);
			if (rc)
				return rc;
			const char *st = str_of(o, "state");
			if (st && !strcmp(st, "stopped"))
				break;
			struct timespec ts = { 0, 100 * 1000 * 1000 };
			nanosleep(&ts, NULL);
		}
		const char *st = str_of(o, "state");
		if (!st || strcmp(st, "stopped")) {
			log_error("vm destroy: %s is still %s after %d s", name, st ? st : "?",
			          VMCTL_DESTROY_WAIT_S);
			json_object_put(o);
			return EXIT_ERROR;
		}
		printf("destroyed %s\n", name);
	} else {
		printf("%s %s\n", !strcmp(action, "pause") ? "paused" : "resumed", name);
	}
	json_object_put(o);
	return 0;
}

int vmctl_main(int argc, char **argv)
{
	const char *sock = getenv("CVISORD_SOCKET");
	int i = 1;

	if (!sock || !*sock)
		sock = VMCTL_DEFAULT_SOCKET;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(argv[i], "--socket") && i + 1 < argc) {
			sock = argv[++i];
		} else if (!strncmp(argv[i], "--socket=", 9)) {
			sock = argv[i] + 9;
		} else {
			log_error("vm: unknown option '%s' (see cvisor vm --help)", argv[i]);
			return EXIT_USAGE;
		}
	}
	if (i >= argc) {
		log_error("vm: no command given (see cvisor vm --help)");
		return EXIT_USAGE;
	}
	const char *cmd = argv[i];
	int n = argc - i; /* cmd and its arguments */
	char **a = argv + i;
	bool json = false;

	if (!strcmp(cmd, "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "create"))
		return cmd_create(sock, n, a);
	if (!strcmp(cmd, "set"))
		return cmd_set(sock, n, a);
	/* the rest take at most a name and --output json */
	const char *name = NULL;
	for (int k = 1; k < n; k++) {
		if (!strcmp(a[k], "--output") && k + 1 < n) {
			if (strcmp(a[++k], "json") && strcmp(a[k], "text")) {
				log_error("vm: --output: '%s' is not json or text", a[k]);
				return EXIT_USAGE;
			}
			json = !strcmp(a[k], "json");
		} else if (!strcmp(a[k], "--output=json")) {
			json = true;
		} else if (!strcmp(a[k], "--output=text")) {
			json = false;
		} else if (!name && a[k][0] != '-') {
			name = a[k];
		} else {
			log_error("vm %s: unexpected argument '%s'", cmd, a[k]);
			return EXIT_USAGE;
		}
	}
	if (!strcmp(cmd, "list") || !strcmp(cmd, "metrics")) {
		if (name) {
			log_error("vm %s: takes no VM name", cmd);
			return EXIT_USAGE;
		}
		return cmd[0] == 'l' ? cmd_list(sock, json) : cmd_metrics(sock);
	}
	if (!strcmp(cmd, "events"))
		return name && !check_name(name) ? EXIT_USAGE : cmd_events(sock, name);
	static const char *const with_name[] = { "start", "shutdown", "destroy", "pause", "resume",
		                                 "info", "delete", "console", NULL };
	int k = 0;
	while (with_name[k] && strcmp(with_name[k], cmd))
		k++;
	if (!with_name[k]) {
		log_error("vm: unknown command '%s' (see cvisor vm --help)", cmd);
		return EXIT_USAGE;
	}
	if (!name) {
		log_error("vm %s: NAME is required", cmd);
		return EXIT_USAGE;
	}
	if (!check_name(name))
		return EXIT_USAGE;
	if (!strcmp(cmd, "info"))
		return cmd_info(sock, name, json);
	if (!strcmp(cmd, "console"))
		return vmctl_console(sock, name);
	if (!strcmp(cmd, "delete")) {
		char path[128];
		snprintf(path, sizeof(path), "/v1/vms/%s", name);
		int rc = call(sock, "DELETE", path, NULL, NULL);
		if (rc == 0)
			printf("deleted %s\n", name);
		return rc;
	}
	return cmd_action(sock, cmd, name);
}
