/* cvisord's HTTP API (JSON over its Unix socket):
 *   GET    /v1/daemon                   version, state dir, cgroup v2 status
 *   GET    /v1/vms                      {"vms": [summary...]}
 *   POST   /v1/vms                      {"name", "args": [...], "restart", "autostart", "limits"}
 *   GET    /v1/vms/NAME                 everything about one VM
 *   PATCH  /v1/vms/NAME                 {"restart", "autostart", "limits"} (live)
 *   DELETE /v1/vms/NAME                 only when stopped
 *   PUT    /v1/vms/NAME/start|shutdown|destroy|pause|resume
 *   GET    /v1/vms/NAME/events?limit=N  the VM's events, oldest first
 *   GET    /v1/vms/NAME/console         with "Upgrade: cvisor-console": the console stream
 *   GET    /metrics                     Prometheus text: the daemon's and every VM's own
 * Errors: 4xx/5xx with {"error": "..."}; bad input is 400 and changes nothing. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "api/client.h"
#include "daemon/daemon.h"
#include "daemon/dlog.h"
#include "daemon/http.h"
#include "daemon/proc.h"
#include "daemon/promx.h"
#include "state/sbuf.h"

#define ROUTE_EVENTS_IN_INFO 10
#define ROUTE_EVENTS_MAX 1000
#define ROUTE_METRICS_TIMEOUT_MS 1000
#define DAEMON_VERSION "0.1.0"

static int errno_status(int rc)
{
	switch (rc) {
	case -EINVAL:
	case -ERANGE:
	case -EOPNOTSUPP:
		return 400;
	case -ENOENT:
		return 404;
	case -EEXIST:
	case -EALREADY:
	case -EBUSY:
	case -ESRCH:
		return 409;
	case -ECOMM:
		return 502;
	}
	return 500;
}

/* ---- JSON helpers ---- */

static void add_str(struct json_object *o, const char *k, const char *v)
{
	json_object_object_add(o, k, json_object_new_string(v));
}

static void add_int(struct json_object *o, const char *k, int64_t v)
{
	json_object_object_add(o, k, json_object_new_int64(v));
}

static void add_u64(struct json_object *o, const char *k, uint64_t v)
{
	json_object_object_add(o, k, json_object_new_uint64(v));
}

static void add_bool(struct json_object *o, const char *k, bool v)
{
	json_object_object_add(o, k, json_object_new_boolean(v));
}

/* Parse a request body that must be a JSON object; answers 400 itself. */
static struct json_object *parse_body(struct dhttp_conn *c, const struct dhttp_req *r)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o = NULL;

	if (!tok) {
		dhttp_reply_json(c, 500, NULL);
		return NULL;
	}
	if (r->len)
		o = json_tokener_parse_ex(tok, r->body, (int)r->len);
	if (!o || json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != r->len) {
		dhttp_reply_error(c, 400, "the request body is not one valid JSON value");
		json_object_put(o);
		o = NULL;
	} else if (!json_object_is_type(o, json_type_object)) {
		dhttp_reply_error(c, 400, "the request body must be a JSON object");
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

/* Reject members of o not in the NULL-terminated list. */
static bool only_fields(struct dhttp_conn *c, struct json_object *o, const char *const *ok)
{
	json_object_object_foreach(o, key, val)
	{
		(void)val;
		int i = 0;
		while (ok[i] && strcmp(ok[i], key))
			i++;
		if (!ok[i]) {
			dhttp_reply_error(c, 400, "unknown field '%.64s'", key);
			return false;
		}
	}
	return true;
}

/* Apply "restart", "autostart" and "limits" of body o to def. */
static bool apply_settings(struct dhttp_conn *c, struct json_object *o, struct vmdef *def)
{
	struct json_object *v;
	char err[256];

	if (json_object_object_get_ex(o, "restart", &v)) {
		if (!json_object_is_type(v, json_type_string) ||
		    restart_policy_parse(json_object_get_string(v), &def->restart) < 0) {
			dhttp_reply_error(c, 400, "restart: one of never, on-failure, always");
			return false;
		}
	}
	if (json_object_object_get_ex(o, "autostart", &v)) {
		if (!json_object_is_type(v, json_type_boolean)) {
			dhttp_reply_error(c, 400, "autostart: true or false");
			return false;
		}
		def->autostart = json_object_get_boolean(v);
	}
	if (json_object_object_get_ex(o, "limits", &v)) {
		if (!json_object_is_type(v, json_type_object)) {
			dhttp_reply_error(c, 400, "limits: an object");
			return false;
		}
		json_object_object_foreach(v, key, lv)
		{
			char num[32];
			const char *text;
			if (json_object_is_type(lv, json_type_string)) {
				text = json_object_get_string(lv);
			} else if (json_object_is_type(lv, json_type_int) &&
			           json_object_get_int64(lv) >= 0) {
				snprintf(num, sizeof(num), "%lld",
				         (long long)json_object_get_int64(lv));
				text = num;
			} else if (json_object_is_type(lv, json_type_null)) {
				text = "none";
			} else {
				dhttp_reply_error(c, 400, "limits.%.32s: a string, a number or null",
				                  key);
				return false;
			}
			if (vmdef_limit_set(&def->limits, key, text, err, sizeof(err)) < 0) {
				dhttp_reply_error(c, 400, "%s", err);
				return false;
			}
		}
	}
	return true;
}

static struct json_object *limits_json(const struct vm_limits *l)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	json_object_object_add(o, "cpu_quota", l->cpu_quota ? json_object_new_int64(l->cpu_quota)
	                                                     : NULL);
	json_object_object_add(o, "cpu_weight",
	                       l->cpu_weight ? json_object_new_int64(l->cpu_weight) : NULL);
	json_object_object_add(o, "cpuset", l->cpuset[0] ? json_object_new_string(l->cpuset)
	                                                  : NULL);
	json_object_object_add(o, "memory_max",
	                       l->memory_max ? json_object_new_uint64(l->memory_max) : NULL);
	json_object_object_add(o, "io_bps", l->io_bps ? json_object_new_uint64(l->io_bps) : NULL);
	json_object_object_add(o, "io_iops",
	                       l->io_iops ? json_object_new_uint64(l->io_iops) : NULL);
	return o;
}

static int event_json(void *opaque, const struct inv_event *ev)
{
	struct json_object *a = opaque, *o = json_object_new_object();
	char when[40];
	time_t t = (time_t)(ev->time / 1000);
	struct tm tm;

	if (!o)
		return -ENOMEM;
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	add_str(o, "time", when);
	add_int(o, "time_ms", ev->time);
	if (ev->vm[0])
		add_str(o, "vm", ev->vm);
	add_str(o, "kind", ev->kind);
	add_str(o, "detail", ev->detail);
	json_object_array_add(a, o);
	return 0;
}

/* The summary of a VM (list) or everything about it (full). */
static struct json_object *vm_json(struct daemon *d, struct dvm *vm, bool full)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	add_str(o, "name", vm->def.name);
	add_str(o, "state", daemon_vm_state(vm));
	add_int(o, "pid", vm->pid);
	add_u64(o, "uptime_s", daemon_vm_uptime_ms(vm) / 1000);
	add_int(o, "restarts", vm->restarts);
	add_str(o, "restart", restart_policy_name(vm->def.restart));
	add_bool(o, "autostart", vm->def.autostart);
	add_str(o, "desired", vm->want_run ? "running" : "stopped");
	if (!full)
		return o;

	struct json_object *args = json_object_new_array();
	for (int i = 0; args && i < vm->def.nargs; i++)
		json_object_array_add(args, json_object_new_string(vm->def.args[i]));
	json_object_object_add(o, "args", args);
	add_u64(o, "uptime_ms", daemon_vm_uptime_ms(vm));
	add_bool(o, "adopted", vm->pid && !vm->child);
	add_str(o, "last_exit", vm->last_exit);
	if (vm->restart_at) {
		int64_t left = vm->restart_at - vmproc_now_ms();
		add_int(o, "restart_in_ms", left > 0 ? left : 0);
	}
	add_int(o, "backoff_ms", vm->backoff_ms);
	if (vm->error[0])
		add_str(o, "error", vm->error);
	add_str(o, "api_socket", vm->api);
	char log[PATH_MAX + 16];
	snprintf(log, sizeof(log), "%s/vmm.log", vm->dir);
	add_str(o, "log", log);

	struct json_object *con = json_object_new_object();
	if (con) {
		add_str(con, "socket", vm->con_path);
		add_bool(con, "connected", dcon_connected(&vm->con));
		add_int(con, "viewers", vm->con.nr_viewers);
		uint64_t held = vm->con.ring.head - ring_tail(&vm->con.ring);
		add_u64(con, "scrollback_bytes", held);
	}
	json_object_object_add(o, "console", con);

	struct json_object *cg = json_object_new_object();
	if (cg) {
		add_bool(cg, "available", d->cg.available);
		if (!d->cg.available) {
			add_str(cg, "error", d->cg.why);
		} else {
			char dir[PATH_MAX + 64];
			cg_vm_dir(&d->cg, vm->def.name, dir, sizeof(dir));
			add_str(cg, "path", dir);
		}
		json_object_object_add(cg, "limits", limits_json(&vm->def.limits));
		if (vm->cg_note[0])
			add_str(cg, "note", vm->cg_note);
		struct cg_usage u;
		if (vm->pid && d->cg.available && cg_vm_usage(&d->cg, vm->def.name, &u) == 0) {
			struct json_object *uo = json_object_new_object();
			if (uo) {
				add_u64(uo, "cpu_usec", u.cpu_usec);
				add_u64(uo, "cpu_throttled_usec", u.throttled_usec);
				add_u64(uo, "cpu_nr_throttled", u.nr_throttled);
				add_u64(uo, "memory_bytes", u.memory_bytes);
			}
			json_object_object_add(cg, "usage", uo);
		}
	}
	json_object_object_add(o, "cgroup", cg);

	struct json_object *ev = json_object_new_array();
	if (ev && inv_events(d->inv, vm->def.name, ROUTE_EVENTS_IN_INFO, event_json, ev) < 0)
		dlog_warn("%s", inv_errmsg(d->inv));
	json_object_object_add(o, "events", ev);
	return o;
}

/* ---- handlers ---- */

static void get_daemon(struct daemon *d, struct dhttp_conn *c)
{
	struct json_object *o = json_object_new_object();

	if (o) {
		add_str(o, "version", DAEMON_VERSION);
		add_str(o, "state_dir", d->state_dir);
		add_str(o, "socket", d->socket);
		add_str(o, "cvisor", d->cvisor);
		add_int(o, "pid", getpid());
		add_u64(o, "uptime_s", (uint64_t)(vmproc_now_ms() - d->started_at) / 1000);
		add_int(o, "vms", d->nr_vms);
		struct json_object *cg = json_object_new_object();
		if (cg) {
			add_bool(cg, "available", d->cg.available);
			if (d->cg.available) {
				add_str(cg, "parent", d->cg.parent);
				struct json_object *ctl = json_object_new_array();
				for (unsigned b = 1; ctl && b <= CG_IO; b <<= 1) {
					if (d->cg.controllers & b)
						json_object_array_add(
							ctl, json_object_new_string(cg_controller_name(b)));
				}
				json_object_object_add(cg, "controllers", ctl);
			} else {
				add_str(cg, "error", d->cg.why);
			}
		}
		json_object_object_add(o, "cgroup", cg);
	}
	dhttp_reply_json(c, 200, o);
}

static void list_vms(struct daemon *d, struct dhttp_conn *c)
{
	struct json_object *o = json_object_new_object(), *a = json_object_new_array();

	if (!o || !a) {
		json_object_put(o);
		json_object_put(a);
		dhttp_reply_json(c, 500, NULL);
		return;
	}
	for (struct dvm *vm = d->vms; vm; vm = vm->next)
		json_object_array_add(a, vm_json(d, vm, false));
	json_object_object_add(o, "vms", a);
	dhttp_reply_json(c, 200, o);
}

static void create_vm(struct daemon *d, struct dhttp_conn *c, const struct dhttp_req *r)
{
	static const char *const fields[] = { "name", "args", "restart", "autostart", "limits",
		                              NULL };
	struct json_object *o = parse_body(c, r), *v;
	struct vmdef def = { .restart = RESTART_NEVER };
	char **args = NULL;
	char err[512];
	int rc, n;

	if (!o)
		return;
	if (!only_fields(c, o, fields))
		goto out;
	if (!json_object_object_get_ex(o, "name", &v) || !json_object_is_type(v, json_type_string)) {
		dhttp_reply_error(c, 400, "name: a string is required");
		goto out;
	}
	if (vmdef_name_check(json_object_get_string(v), err, sizeof(err)) < 0) {
		dhttp_reply_error(c, 400, "%s", err);
		goto out;
	}
	snprintf(def.name, sizeof(def.name), "%s", json_object_get_string(v));
	if (!json_object_object_get_ex(o, "args", &v) || !json_object_is_type(v, json_type_array)) {
		dhttp_reply_error(c, 400, "args: an array of cvisor run options is required");
		goto out;
	}
	n = (int)json_object_array_length(v);
	if (n > VMDEF_MAX_ARGS) {
		dhttp_reply_error(c, 400, "args: at most %d options", VMDEF_MAX_ARGS);
		goto out;
	}
	args = calloc((size_t)n + 1, sizeof(*args));
	if (!args) {
		dhttp_reply_json(c, 500, NULL);
		goto out;
	}
	for (int i = 0; i < n; i++) {
		struct json_object *s = json_object_array_get_idx(v, (size_t)i);
		if (!json_object_is_type(s, json_type_string) ||
		    strlen(json_object_get_string(s)) != (size_t)json_object_get_string_len(s)) {
			dhttp_reply_error(c, 400, "args[%d]: a string without NUL bytes", i);
			goto out;
		}
		args[i] = (char *)json_object_get_string(s);
	}
	if (vmdef_set_args(&def, args, n) < 0) {
		dhttp_reply_json(c, 500, NULL);
		goto out;
	}
	if (!apply_settings(c, o, &def))
		goto out;
	char name[VMDEF_NAME_MAX + 1];
	snprintf(name, sizeof(name), "%s", def.name);
	rc = daemon_create(d, &def, err, sizeof(err)); /* takes def's contents */
	if (rc < 0) {
		dhttp_reply_error(c, errno_status(rc), "%s", err);
		goto out;
	}
	struct dvm *vm = daemon_find(d, name);
	dhttp_reply_json(c, 201, vm ? vm_json(d, vm, true) : json_object_new_object());
out:
	vmdef_free(&def);
	free(args);
	json_object_put(o);
}

static void update_vm(struct daemon *d, struct dvm *vm, struct dhttp_conn *c,
                      const struct dhttp_req *r)
{
	static const char *const fields[] = { "restart", "autostart", "limits", NULL };
	struct json_object *o = parse_body(c, r);
	struct vmdef nd;
	char err[512];
	int rc;

	if (!o)
		return;
	if (!only_fields(c, o, fields))
		goto out;
	nd = vm->def; /* shares args: only the settings are read from it */
	if (!apply_settings(c, o, &nd))
		goto out;
	rc = daemon_update(d, vm, &nd, err, sizeof(err));
	if (rc < 0)
		dhttp_reply_error(c, errno_status(rc), "%s", err);
	else
		dhttp_reply_json(c, 200, vm_json(d, vm, true));
out:
	json_object_put(o);
}

static void vm_action(struct daemon *d, struct dvm *vm, const char *action, struct dhttp_conn *c)
{
	char err[512] = "";
	int rc, status = 0;

	if (!strcmp(action, "start")) {
		rc = daemon_start(d, vm, err, sizeof(err));
	} else if (!strcmp(action, "shutdown")) {
		rc = daemon_shutdown(d, vm, err, sizeof(err));
	} else if (!strcmp(action, "destroy")) {
		rc = daemon_destroy(d, vm, err, sizeof(err));
	} else if (!strcmp(action, "pause") || !strcmp(action, "resume")) {
		rc = daemon_pause(d, vm, action[0] == 'p', &status, err, sizeof(err));
	} else {
		dhttp_reply_error(c, 404, "no action '%.32s' (start, shutdown, destroy, pause, resume)",
		                  action);
		return;
	}
	if (rc == -EREMOTEIO) {
		dhttp_reply_error(c, status >= 400 && status <= 599 ? status : 502, "%s", err);
		return;
	}
	if (rc < 0) {
		dhttp_reply_error(c, errno_status(rc), "%s", err);
		return;
	}
	/* start, pause and resume are done; shutdown and destroy are under way */
	bool done = strcmp(action, "shutdown") && strcmp(action, "destroy");
	dhttp_reply_json(c, done ? 200 : 202, vm_json(d, vm, false));
}

static void get_events(struct daemon *d, struct dvm *vm, struct dhttp_conn *c,
                       const struct dhttp_req *r)
{
	struct json_object *a = json_object_new_array(), *o = json_object_new_object();
	unsigned long limit = 100;

	if (!strncmp(r->query, "limit=", 6)) {
		char *end;
		limit = strtoul(r->query + 6, &end, 10);
		if (*end || limit == 0 || limit > ROUTE_EVENTS_MAX) {
			json_object_put(a);
			json_object_put(o);
			dhttp_reply_error(c, 400, "limit: 1 to %d", ROUTE_EVENTS_MAX);
			return;
		}
	}
	if (!a || !o || inv_events(d->inv, vm ? vm->def.name : NULL, (unsigned)limit, event_json,
	                           a) < 0) {
		json_object_put(a);
		json_object_put(o);
		dhttp_reply_error(c, 500, "%s", inv_errmsg(d->inv));
		return;
	}
	json_object_object_add(o, "events", a);
	dhttp_reply_json(c, 200, o);
}

static void console(struct dvm *vm, struct dhttp_conn *c, const struct dhttp_req *r)
{
	char *extra;
	size_t extralen;
	int fd;

	if (!r->upgrade || strcasecmp(r->upgrade, "cvisor-console")) {
		dhttp_reply_error(c, 400, "the console needs \"Upgrade: cvisor-console\" "
		                          "(use cvisor vm console NAME)");
		return;
	}
	if (vm->con.nr_viewers >= DCON_MAX_VIEWERS) {
		dhttp_reply_error(c, 503, "VM %s has %d console viewers already", vm->def.name,
		                  DCON_MAX_VIEWERS);
		return;
	}
	if (dhttp_upgrade(c, "cvisor-console", &fd, &extra, &extralen) < 0)
		return;
	if (dcon_add_viewer(&vm->con, fd, extra, extralen) < 0)
		dlog_warn("vm %s: cannot add a console viewer", vm->def.name);
	free(extra);
}

static void metrics(struct daemon *d, struct dhttp_conn *c)
{
	struct sbuf b = { 0 };
	struct promx *px = promx_new();
	struct dvm *vm;

#define FAMILY(name, type, help)                                                          \
	promx_puts(&b, "# HELP " name " " help "\n# TYPE " name " " type "\n")
	FAMILY("cvisord_vms", "gauge", "VMs defined");
	promx_printf(&b, "cvisord_vms %u\n", d->nr_vms);
	FAMILY("cvisord_vm_state", "gauge", "1 for the state the VM is in");
	for (vm = d->vms; vm; vm = vm->next)
		promx_printf(&b, "cvisord_vm_state{vm=\"%s\",state=\"%s\"} 1\n", vm->def.name,
		             daemon_vm_state(vm));
	FAMILY("cvisord_vm_up", "gauge", "1 when the VM's process runs");
	for (vm = d->vms; vm; vm = vm->next)
		promx_printf(&b, "cvisord_vm_up{vm=\"%s\"} %d\n", vm->def.name, vm->pid ? 1 : 0);
	FAMILY("cvisord_vm_restarts_total", "counter", "automatic restarts of the VM");
	for (vm = d->vms; vm; vm = vm->next)
		promx_printf(&b, "cvisord_vm_restarts_total{vm=\"%s\"} %u\n", vm->def.name,
		             vm->restarts);
	FAMILY("cvisord_vm_uptime_seconds", "gauge", "time since the VM's process started");
	for (vm = d->vms; vm; vm = vm->next)
		promx_printf(&b, "cvisord_vm_uptime_seconds{vm=\"%s\"} %.3f\n", vm->def.name,
		             daemon_vm_uptime_ms(vm) / 1000.0);
	if (d->cg.available) {
		FAMILY("cvisord_vm_cpu_seconds_total", "counter", "CPU time of the VM's cgroup");
		for (vm = d->vms; vm; vm = vm->next) {
			struct cg_usage u;
			if (vm->pid && cg_vm_usage(&d->cg, vm->def.name, &u) == 0)
				promx_printf(&b, "cvisord_vm_cpu_seconds_total{vm=\"%s\"} %.6f\n",
				             vm->def.name, u.cpu_usec / 1e6);
		}
		FAMILY("cvisord_vm_cpu_throttled_seconds_total", "counter",
		       "time the VM's cgroup was throttled by cpu.max");
		for (vm = d->vms; vm; vm = vm->next) {
			struct cg_usage u;
			if (vm->pid && cg_vm_usage(&d->cg, vm->def.name, &u) == 0)
				promx_printf(&b,
				             "cvisord_vm_cpu_throttled_seconds_total{vm=\"%s\"} %.6f\n",
				             vm->def.name, u.throttled_usec / 1e6);
		}
		FAMILY("cvisord_vm_memory_bytes", "gauge", "memory.current of the VM's cgroup");
		for (vm = d->vms; vm; vm = vm->next) {
			struct cg_usage u;
			if (vm->pid && cg_vm_usage(&d->cg, vm->def.name, &u) == 0)
				promx_printf(&b, "cvisord_vm_memory_bytes{vm=\"%s\"} %llu\n",
				             vm->def.name, (unsigned long long)u.memory_bytes);
		}
	}
	/* each running VM's own metrics, with its name as a label */
	FAMILY("cvisord_vm_metrics_up", "gauge", "1 when the VM's API answered /metrics");
	for (vm = d->vms; vm; vm = vm->next) {
		struct api_response resp;
		char err[256];
		if (!vm->pid)
			continue;
		int rc = api_client_request(vm->api, "GET", "/metrics", NULL,
		                            ROUTE_METRICS_TIMEOUT_MS, &resp, err, sizeof(err));
		bool ok = rc == 0 && resp.status == 200;
		promx_printf(&b, "cvisord_vm_metrics_up{vm=\"%s\"} %d\n", vm->def.name, ok);
		if (ok && px && promx_add(px, resp.body, resp.len, "vm", vm->def.name) < 0)
			b.err = -ENOMEM;
		if (rc == 0)
			api_response_free(&resp);
	}
#undef FAMILY
	if (px)
		promx_render(px, &b);
	promx_free(px);
	if (b.err)
		dhttp_reply_error(c, 500, "out of memory");
	else
		dhttp_reply(c, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
	sbuf_free(&b);
}

/* ---- dispatch ---- */

static bool method_is(struct dhttp_conn *c, const struct dhttp_req *r, const char *allowed)
{
	/* allowed: "GET" or "GET POST" ... */
	size_t ml = strlen(r->method);
	for (const char *p = allowed; *p;) {
		size_t n = strcspn(p, " ");
		if (n == ml && !strncmp(p, r->method, n))
			return true;
		p += n;
		while (*p == ' ')
			p++;
	}
	dhttp_reply_error(c, 405, "%s is not allowed here (allowed: %s)", r->method, allowed);
	return false;
}

void daemon_route(void *opaque, struct dhttp_conn *c, const struct dhttp_req *r)
{
	struct daemon *d = opaque;
	const char *p = r->path;
	char name[VMDEF_NAME_MAX + 2];

	dlog_debug("%s %s", r->method, r->path);
	if (!strcmp(p, "/metrics")) {
		if (method_is(c, r, "GET"))
			metrics(d, c);
		return;
	}
	if (!strcmp(p, "/v1/daemon")) {
		if (method_is(c, r, "GET"))
			get_daemon(d, c);
		return;
	}
	if (!strcmp(p, "/v1/events")) {
		if (method_is(c, r, "GET"))
			get_events(d, NULL, c, r);
		return;
	}
	if (!strcmp(p, "/v1/vms") || !strcmp(p, "/v1/vms/")) {
		if (!method_is(c, r, "GET POST"))
			return;
		if (r->method[0] == 'G')
			list_vms(d, c);
		else
			create_vm(d, c, r);
		return;
	}
	if (strncmp(p, "/v1/vms/", 8)) {
		dhttp_reply_error(c, 404, "no such route: %.200s", p);
		return;
	}
	p += 8;
	size_t n = strcspn(p, "/");
	if (n == 0 || n > VMDEF_NAME_MAX) {
		dhttp_reply_error(c, 404, "no such VM");
		return;
	}
	memcpy(name, p, n);
	name[n] = '\0';
	p += n;
	struct dvm *vm = daemon_find(d, name);
	if (!vm) {
		dhttp_reply_error(c, 404, "no VM named %s", name);
		return;
	}
	if (!*p) {
		if (!method_is(c, r, "GET PATCH DELETE"))
			return;
		if (!strcmp(r->method, "GET")) {
			char err[256];
			daemon_vm_refresh(vm, err, sizeof(err)); /* paused or not, from the VM */
			dhttp_reply_json(c, 200, vm_json(d, vm, true));
		} else if (!strcmp(r->method, "PATCH")) {
			update_vm(d, vm, c, r);
		} else {
			char err[256];
			int rc = daemon_delete(d, vm, err, sizeof(err));
			if (rc < 0)
				dhttp_reply_error(c, errno_status(rc), "%s", err);
			else
				dhttp_reply(c, 204, "application/json", "", 0);
		}
		return;
	}
	p++; /* the '/' */
	if (!strcmp(p, "console")) {
		if (method_is(c, r, "GET"))
			console(vm, c, r);
		return;
	}
	if (!strcmp(p, "events")) {
		if (method_is(c, r, "GET"))
			get_events(d, vm, c, r);
		return;
	}
	if (!method_is(c, r, "PUT POST"))
		return;
	vm_action(d, vm, p, c);
}
