/* cvisord's core: start-up (lock, inventory, adoption), the VMs' life cycle
 * and supervision, and the timers. The HTTP routes are in routes.c.
 *
 * Crash safety. Every change of a definition or of the desired state is
 * committed before the request is answered. A VM's process is recorded (PID
 * and start time) before it may execute cvisor: it is forked, then waits at a
 * gate (a pipe) until the record is committed; if the daemon dies in between,
 * the gate closes and the child exits without starting anything. So after a
 * kill -9 at any moment, every VM process that runs is in the inventory, and a
 * restarted daemon finds it (PID + start time + its API socket on its command
 * line) and adopts it instead of starting a second one. */
#include "daemon/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

#include "api/client.h"
#include "daemon/dlog.h"
#include "daemon/http.h"
#include "daemon/proc.h"
#include "daemon/restart.h"
#include "vm/evloop.h"

#define CON_FAST_MS 200   /* console connect retries while the VMM starts */
#define CON_SLOW_MS 2000  /* ... and later */
#define CON_FAST_FOR_MS 30000

/* Record an event in the inventory and the log. */
static void event(struct daemon *d, const char *name, const char *kind, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void event(struct daemon *d, const char *name, const char *kind, const char *fmt, ...)
{
	char detail[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	if (name)
		dlog_info("vm %s: %s: %s", name, kind, detail);
	else
		dlog_info("%s", detail);
	if (inv_event_add(d->inv, name, kind, "%s", detail) < 0)
		dlog_warn("%s", inv_errmsg(d->inv));
}

struct dvm *daemon_find(struct daemon *d, const char *name)
{
	for (struct dvm *vm = d->vms; vm; vm = vm->next) {
		if (!strcmp(vm->def.name, name))
			return vm;
	}
	return NULL;
}

/* A new in-memory VM for def (moved in), in name order in the list. */
static struct dvm *vm_new(struct daemon *d, struct vmdef *def)
{
	struct dvm *vm = calloc(1, sizeof(*vm)), **pp;

	if (!vm)
		return NULL;
	vm->d = d;
	vm->pidfd = -1;
	/* daemon_open checked that the longest of these fits */
	if ((size_t)snprintf(vm->dir, sizeof(vm->dir), "%s/vms/%s", d->state_dir, def->name) >=
	            sizeof(vm->dir) ||
	    (size_t)snprintf(vm->api, sizeof(vm->api), "%s/api.sock", vm->dir) >= sizeof(vm->api) ||
	    (size_t)snprintf(vm->con_path, sizeof(vm->con_path), "%s/console.sock", vm->dir) >=
	            sizeof(vm->con_path)) {
		free(vm);
		return NULL;
	}
	if (dcon_init(&vm->con, d->loop, vm->con_path) < 0) {
		dcon_free(&vm->con);
		free(vm);
		return NULL;
	}
	vm->def = *def;
	memset(def, 0, sizeof(*def));
	for (pp = &d->vms; *pp && strcmp((*pp)->def.name, vm->def.name) < 0; pp = &(*pp)->next)
		;
	vm->next = *pp;
	*pp = vm;
	d->nr_vms++;
	return vm;
}

static void vm_free(struct daemon *d, struct dvm *vm)
{
	for (struct dvm **pp = &d->vms; *pp; pp = &(*pp)->next) {
		if (*pp == vm) {
			*pp = vm->next;
			d->nr_vms--;
			break;
		}
	}
	if (vm->pidfd >= 0) {
		evloop_del(d->loop, vm->pidfd);
		close(vm->pidfd);
	}
	dcon_free(&vm->con);
	vmdef_free(&vm->def);
	free(vm);
}

static void set_want(struct dvm *vm, bool run_it)
{
	vm->want_run = run_it;
	if (inv_set_desired(vm->d->inv, vm->def.name, run_it) < 0)
		dlog_error("%s", inv_errmsg(vm->d->inv));
}

const char *daemon_vm_state(const struct dvm *vm)
{
	if (vm->pid && vm->stopping)
		return "stopping";
	if (vm->pid && vm->paused)
		return "paused";
	if (vm->pid)
		return "running";
	if (vm->restart_at)
		return "restarting";
	return "stopped";
}

uint64_t daemon_vm_uptime_ms(const struct dvm *vm)
{
	return vm->pid ? vmproc_uptime_ms(vm->pid_start) : 0;
}

/* One request to the VM's own API. 0 on a 2xx answer; -ECOMM when it does not
 * answer; -EREMOTEIO when it refuses (*status and its message in err). */
static int vm_api(struct dvm *vm, const char *method, const char *path, int *status,
                  struct api_response *out, char *err, size_t errlen)
{
	struct api_response resp;
	char why[256];
	int rc;

	*status = 0;
	rc = api_client_request(vm->api, method, path, NULL, DAEMON_API_TIMEOUT_MS, &resp, why,
	                        sizeof(why));
	if (rc < 0) {
		snprintf(err, errlen, "VM %s: its API does not answer (%s)", vm->def.name, why);
		return -ECOMM;
	}
	*status = resp.status;
	if (resp.status < 200 || resp.status > 299) {
		struct json_object *o = json_tokener_parse(resp.body), *e;
		if (o && json_object_object_get_ex(o, "error", &e))
			snprintf(err, errlen, "VM %s: %s", vm->def.name, json_object_get_string(e));
		else
			snprintf(err, errlen, "VM %s: its API answered HTTP %d", vm->def.name,
			         resp.status);
		json_object_put(o);
		api_response_free(&resp);
		return -EREMOTEIO;
	}
	if (out)
		*out = resp;
	else
		api_response_free(&resp);
	return 0;
}

bool daemon_vm_refresh(struct dvm *vm, char *err, size_t errlen)
{
	struct api_response resp;
	int status;

	if (!vm->pid)
		return false;
	if (vm_api(vm, "GET", "/v1/vm", &status, &resp, err, errlen) < 0)
		return false;
	struct json_object *o = json_tokener_parse(resp.body), *s;
	if (o && json_object_object_get_ex(o, "state", &s))
		vm->paused = !strcmp(json_object_get_string(s), "paused");
	json_object_put(o);
	api_response_free(&resp);
	return true;
}

static void vm_exit_ev(void *opaque, uint32_t events);

/* Move an overgrown vmm.log aside. */
static void rotate_log(const char *log)
{
	struct stat st;
	char old[PATH_MAX + 32];

	if (stat(log, &st) == 0 && st.st_size > DAEMON_LOG_MAX) {
		snprintf(old, sizeof(old), "%s.1", log);
		rename(log, old);
	}
}

/* Start the VM's process. 0, or -errno with one line in err (then nothing runs). */
static int vm_spawn(struct dvm *vm, char *err, size_t errlen)
{
	struct daemon *d = vm->d;
	char serial[DAEMON_SOCK_MAX + 8], log[PATH_MAX + 16], note[192] = "";
	const char *disks[CONFIG_MAX_DISKS];
	bool in_cg = false, limits = vmdef_limits_any(&vm->def.limits);
	uint64_t start = 0;
	pid_t pid;
	int gate = -1, rc, n = 0;
	char **argv;

	if (mkdir(vm->dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s: %s", vm->dir, strerror(errno));
		return -errno;
	}
	snprintf(log, sizeof(log), "%s/vmm.log", vm->dir);
	rotate_log(log);
	if (d->cg.available) {
		unsigned nd = vmdef_disks(&vm->def, disks, CONFIG_MAX_DISKS);
		rc = cg_vm_setup(&d->cg, vm->def.name, &vm->def.limits, disks, nd, note,
		                 sizeof(note), err, errlen);
		if (rc < 0 && limits)
			return rc;
		if (rc < 0)
			dlog_warn("vm %s: runs without its own cgroup: %s", vm->def.name, err);
		in_cg = rc == 0;
		snprintf(vm->cg_note, sizeof(vm->cg_note), "%s", note);
	} else if (limits) {
		return cg_check_limits(&d->cg, &vm->def.limits, err, errlen);
	}

	argv = calloc((size_t)vm->def.nargs + 10, sizeof(*argv));
	if (!argv) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	snprintf(serial, sizeof(serial), "socket=%s", vm->con_path);
	argv[n++] = d->cvisor;
	argv[n++] = "run";
	for (int i = 0; i < vm->def.nargs; i++)
		argv[n++] = vm->def.args[i];
	argv[n++] = "--name";
	argv[n++] = vm->def.name;
	argv[n++] = "--api-socket";
	argv[n++] = vm->api;
	argv[n++] = "--serial";
	argv[n++] = serial;
	argv[n] = NULL;
	struct vmproc_spawn s = { .exe = d->cvisor, .argv = argv, .log = log };
	rc = vmproc_spawn(&s, &pid, &gate, err, errlen);
	free(argv);
	if (rc < 0)
		return rc;

	/* the child waits at the gate: join the cgroup, record it, then let it go */
	if (in_cg) {
		char why[256];
		rc = cg_vm_attach(&d->cg, vm->def.name, pid, why, sizeof(why));
		if (rc < 0 && limits) {
			snprintf(err, errlen, "%s", why);
			goto abort;
		}
		if (rc < 0)
			dlog_warn("vm %s: %s", vm->def.name, why);
	}
	rc = vmproc_start_time(pid, &start);
	if (rc < 0) {
		snprintf(err, errlen, "cannot read /proc/%d/stat: %s", (int)pid, strerror(-rc));
		goto abort;
	}
	rc = inv_set_pid(d->inv, vm->def.name, pid, start);
	if (rc < 0) {
		snprintf(err, errlen, "%s", inv_errmsg(d->inv));
		goto abort;
	}
	vm->pidfd = vmproc_pidfd(pid);
	if (vm->pidfd < 0 || evloop_add(d->loop, vm->pidfd, EPOLLIN, vm_exit_ev, vm) < 0) {
		rc = vm->pidfd < 0 ? vm->pidfd : -EIO;
		snprintf(err, errlen, "cannot watch process %d: %s", (int)pid, strerror(-rc));
		if (vm->pidfd >= 0)
			close(vm->pidfd);
		vm->pidfd = -1;
		inv_set_pid(d->inv, vm->def.name, 0, 0);
		goto abort;
	}
	vm->pid = pid;
	vm->pid_start = start;
	vm->child = true;
	vm->paused = false;
	vm->stopping = false;
	vm->kill_at = 0;
	vm->restart_at = 0;
	vm->started_at = vmproc_now_ms();
	vm->con_since = vm->started_at;
	vm->con_retry_at = vm->started_at + 50;
	vm->error[0] = '\0';
	if (vmproc_release(gate) < 0)
		dlog_warn("vm %s: could not release process %d; it will end", vm->def.name,
		          (int)pid);
	event(d, vm->def.name, "started", "process %d%s%s", (int)pid, note[0] ? "; " : "", note);
	return 0;
abort:
	vmproc_abort(gate);
	waitpid(pid, NULL, 0); /* it exits at once */
	if (in_cg)
		cg_vm_remove(&d->cg, vm->def.name);
	return rc < 0 ? rc : -EIO;
}

/* What happened to a VM's process, in words and as a restart_exit. */
static enum restart_exit describe_exit(int status, char *out, size_t outlen)
{
	if (WIFEXITED(status)) {
		snprintf(out, outlen, "exit status %d", WEXITSTATUS(status));
		return WEXITSTATUS(status) == 0 ? RESTART_EXIT_CLEAN : RESTART_EXIT_FAILED;
	}
	if (WIFSIGNALED(status)) {
		snprintf(out, outlen, "killed by signal %d (%s)", WTERMSIG(status),
		         strsignal(WTERMSIG(status)));
		return RESTART_EXIT_FAILED;
	}
	snprintf(out, outlen, "ended (status %#x)", status);
	return RESTART_EXIT_FAILED;
}

/* The VM's process is gone: clean up, record, apply the restart policy. */
static void vm_ended(struct dvm *vm, enum restart_exit how, const char *what)
{
	struct daemon *d = vm->d;
	int64_t now = vmproc_now_ms();
	uint64_t ran = (uint64_t)(now - vm->started_at);

	if (vm->pidfd >= 0) {
		evloop_del(d->loop, vm->pidfd);
		close(vm->pidfd);
		vm->pidfd = -1;
	}
	vm->pid = 0;
	vm->pid_start = 0;
	vm->paused = false;
	vm->stopping = false;
	vm->kill_at = 0;
	dcon_disconnect(&vm->con);
	if (d->cg.available)
		cg_vm_remove(&d->cg, vm->def.name);
	snprintf(vm->last_exit, sizeof(vm->last_exit), "%s", what);
	if (restart_wanted(vm->def.restart, vm->want_run, how)) {
		vm->backoff_ms = restart_next_delay(vm->backoff_ms, ran);
		vm->restart_at = now + vm->backoff_ms;
		event(d, vm->def.name, "exited", "%s after %llu s; restart (%s) in %.1f s", what,
		      (unsigned long long)(ran / 1000), restart_policy_name(vm->def.restart),
		      vm->backoff_ms / 1000.0);
		dcon_note(&vm->con, "VM %s: %s; restarting in %.1f s", vm->def.name, what,
		          vm->backoff_ms / 1000.0);
	} else {
		if (vm->want_run)
			set_want(vm, false);
		event(d, vm->def.name, "exited", "%s after %llu s; stays stopped", what,
		      (unsigned long long)(ran / 1000));
		dcon_note(&vm->con, "VM %s: %s; stopped", vm->def.name, what);
	}
	if (inv_set_exit(d->inv, vm->def.name, what, vm->restarts) < 0)
		dlog_error("%s", inv_errmsg(d->inv));
}

static void vm_exit_ev(void *opaque, uint32_t events)
{
	struct dvm *vm = opaque;
	char what[INV_EXIT_MAX];
	enum restart_exit how = RESTART_EXIT_UNKNOWN;
	int status;

	(void)events;
	if (vm->child) {
		pid_t r = waitpid(vm->pid, &status, WNOHANG);
		if (r == 0)
			return; /* not yet */
		if (r == vm->pid)
			how = describe_exit(status, what, sizeof(what));
		else
			snprintf(what, sizeof(what), "ended (status lost: %s)", strerror(errno));
	} else {
		if (vmproc_alive(vm->pid))
			return;
		/* adopted after a daemon restart: not our child, so its status can
		 * only be read while it is a zombie its new parent has not reaped */
		if (vmproc_zombie_status(vm->pid, &status) == 0)
			how = describe_exit(status, what, sizeof(what));
		else
			snprintf(what, sizeof(what),
			         "ended (status unknown: started by an earlier cvisord)");
	}
	vm_ended(vm, how, what);
}

/* A start the daemon decided on (autostart, restart): on failure, retry with back-off. */
static void vm_auto_start(struct dvm *vm, const char *why)
{
	char err[256];
	struct daemon *d = vm->d;

	if (vm_spawn(vm, err, sizeof(err)) == 0)
		return;
	snprintf(vm->error, sizeof(vm->error), "%s", err);
	if (restart_wanted(vm->def.restart, vm->want_run, RESTART_EXIT_FAILED)) {
		vm->backoff_ms = restart_next_delay(vm->backoff_ms, 0);
		vm->restart_at = vmproc_now_ms() + vm->backoff_ms;
		event(d, vm->def.name, "start-failed", "%s: %s; next try in %.1f s", why, err,
		      vm->backoff_ms / 1000.0);
	} else {
		set_want(vm, false);
		event(d, vm->def.name, "start-failed", "%s: %s", why, err);
	}
}

int daemon_create(struct daemon *d, struct vmdef *def, char *err, size_t errlen)
{
	struct vmdef_facts facts;
	int rc;

	if ((rc = vmdef_name_check(def->name, err, errlen)) < 0)
		return rc;
	if (daemon_find(d, def->name)) {
		snprintf(err, errlen, "a VM named %s exists already", def->name);
		return -EEXIST;
	}
	if ((rc = vmdef_check_args(def->args, def->nargs, &facts, err, errlen)) < 0 ||
	    (rc = vmdef_limits_check(&def->limits, &facts, err, errlen)) < 0 ||
	    (rc = cg_check_limits(&d->cg, &def->limits, err, errlen)) < 0)
		return rc;
	rc = inv_vm_add(d->inv, def);
	if (rc < 0) {
		snprintf(err, errlen, "%s", rc == -EEXIST ? "a VM of that name exists already"
		                                          : inv_errmsg(d->inv));
		return rc;
	}
	char name[VMDEF_NAME_MAX + 1];
	snprintf(name, sizeof(name), "%s", def->name);
	if (!vm_new(d, def)) {
		/* stored but not in memory: take it back out so that both agree */
		inv_vm_delete(d->inv, name);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	event(d, name, "created", "defined");
	return 0;
}

int daemon_start(struct daemon *d, struct dvm *vm, char *err, size_t errlen)
{
	int rc;

	(void)d;
	if (vm->pid) {
		snprintf(err, errlen, "VM %s is already running (process %d)", vm->def.name,
		         (int)vm->pid);
		return -EALREADY;
	}
	vm->restart_at = 0;
	vm->backoff_ms = 0;
	rc = vm_spawn(vm, err, errlen);
	if (rc < 0) {
		snprintf(vm->error, sizeof(vm->error), "%s", err);
		event(vm->d, vm->def.name, "start-failed", "%s", err);
		return rc;
	}
	set_want(vm, true);
	return 0;
}

int daemon_shutdown(struct daemon *d, struct dvm *vm, char *err, size_t errlen)
{
	bool was = vm->want_run;
	int status, rc;

	if (!vm->pid) {
		if (vm->restart_at) { /* waiting to restart: just do not */
			vm->restart_at = 0;
			set_want(vm, false);
			event(d, vm->def.name, "stopped", "restart cancelled by shutdown");
			return 0;
		}
		snprintf(err, errlen, "VM %s is not running", vm->def.name);
		return -ESRCH;
	}
	/* stopped is what is wanted from now on: its exit must not restart it */
	set_want(vm, false);
	rc = vm_api(vm, "PUT", "/v1/vm/shutdown", &status, NULL, err, errlen);
	if (rc < 0) {
		set_want(vm, was);
		return rc;
	}
	event(d, vm->def.name, "shutdown", "ACPI power button pressed");
	return 0;
}

int daemon_destroy(struct daemon *d, struct dvm *vm, char *err, size_t errlen)
{
	int rc;

	if (!vm->pid) {
		if (vm->restart_at) {
			vm->restart_at = 0;
			set_want(vm, false);
			event(d, vm->def.name, "stopped", "restart cancelled by destroy");
			return 0;
		}
		snprintf(err, errlen, "VM %s is not running", vm->def.name);
		return -ESRCH;
	}
	set_want(vm, false);
	if (vm->stopping)
		return 0; /* already on its way */
	rc = vmproc_signal(vm->pidfd, SIGTERM);
	if (rc < 0 && rc != -ESRCH) {
		snprintf(err, errlen, "cannot signal process %d: %s", (int)vm->pid, strerror(-rc));
		return rc;
	}
	vm->stopping = true;
	vm->kill_at = vmproc_now_ms() + DAEMON_KILL_TIMEOUT_MS;
	event(d, vm->def.name, "destroy", "SIGTERM sent to process %d", (int)vm->pid);
	return 0;
}

int daemon_pause(struct daemon *d, struct dvm *vm, bool pause, int *status, char *err,
                 size_t errlen)
{
	int rc;

	*status = 0;
	if (!vm->pid) {
		snprintf(err, errlen, "VM %s is not running", vm->def.name);
		return -ESRCH;
	}
	rc = vm_api(vm, "PUT", pause ? "/v1/vm/pause" : "/v1/vm/resume", status, NULL, err,
	            errlen);
	if (rc == 0 || *status == 409) /* 409: it was so already */
		vm->paused = pause;
	if (rc == 0)
		event(d, vm->def.name, pause ? "paused" : "resumed", "through its API");
	return rc;
}

/* Remove the files of a deleted VM (its directory, if nothing else is in it). */
static void remove_files(struct dvm *vm)
{
	static const char *const files[] = { "api.sock", "console.sock", "vmm.log", "vmm.log.1",
		                             NULL };
	char path[PATH_MAX + 32];

	for (int i = 0; files[i]; i++) {
		snprintf(path, sizeof(path), "%s/%s", vm->dir, files[i]);
		unlink(path);
	}
	rmdir(vm->dir);
}

int daemon_delete(struct daemon *d, struct dvm *vm, char *err, size_t errlen)
{
	int rc;

	if (vm->pid || vm->restart_at) {
		snprintf(err, errlen, "VM %s is %s: destroy or shut it down first", vm->def.name,
		         daemon_vm_state(vm));
		return -EBUSY;
	}
	rc = inv_vm_delete(d->inv, vm->def.name);
	if (rc < 0) {
		snprintf(err, errlen, "%s", inv_errmsg(d->inv));
		return rc;
	}
	event(d, vm->def.name, "deleted", "definition removed");
	if (d->cg.available)
		cg_vm_remove(&d->cg, vm->def.name);
	remove_files(vm);
	vm_free(d, vm);
	return 0;
}

int daemon_update(struct daemon *d, struct dvm *vm, const struct vmdef *nd, char *err,
                  size_t errlen)
{
	struct vmdef_facts facts;
	struct vmdef tmp;
	int rc;

	if ((rc = vmdef_check_args(vm->def.args, vm->def.nargs, &facts, err, errlen)) < 0 ||
	    (rc = vmdef_limits_check(&nd->limits, &facts, err, errlen)) < 0 ||
	    (rc = cg_check_limits(&d->cg, &nd->limits, err, errlen)) < 0)
		return rc;
	bool changed = memcmp(&nd->limits, &vm->def.limits, sizeof(nd->limits)) != 0;
	if (vm->pid && changed && d->cg.available) {
		const char *disks[CONFIG_MAX_DISKS];
		unsigned n = vmdef_disks(&vm->def, disks, CONFIG_MAX_DISKS);
		char note[192];
		rc = cg_vm_setup(&d->cg, vm->def.name, &nd->limits, disks, n, note, sizeof(note),
		                 err, errlen);
		if (rc < 0) {
			/* put back what was there */
			cg_vm_setup(&d->cg, vm->def.name, &vm->def.limits, disks, n, note,
			            sizeof(note), NULL, 0);
			return rc;
		}
		snprintf(vm->cg_note, sizeof(vm->cg_note), "%s", note);
	}
	tmp = vm->def;
	tmp.restart = nd->restart;
	tmp.autostart = nd->autostart;
	tmp.limits = nd->limits;
	rc = inv_vm_update(d->inv, &tmp);
	if (rc < 0) {
		snprintf(err, errlen, "%s", inv_errmsg(d->inv));
		return rc;
	}
	vm->def.restart = nd->restart;
	vm->def.autostart = nd->autostart;
	vm->def.limits = nd->limits;
	event(d, vm->def.name, "updated", "restart %s, autostart %s%s",
	      restart_policy_name(nd->restart), nd->autostart ? "on" : "off",
	      changed ? (vm->pid ? ", limits applied live" : ", limits for the next start") : "");
	return 0;
}

/* ---- timers and signals ---- */

static void tick(struct daemon *d)
{
	int64_t now = vmproc_now_ms();
	struct dvm *vm, *next;

	for (vm = d->vms; vm; vm = next) {
		next = vm->next;
		if (vm->restart_at && now >= vm->restart_at && !vm->pid) {
			vm->restart_at = 0;
			vm->restarts++;
			if (inv_set_restarts(d->inv, vm->def.name, vm->restarts) < 0)
				dlog_error("%s", inv_errmsg(d->inv));
			vm_auto_start(vm, "restart");
		}
		if (vm->pid && vm->kill_at && now >= vm->kill_at) {
			vm->kill_at = 0;
			event(d, vm->def.name, "destroy",
			      "process %d still there after %d s: SIGKILL", (int)vm->pid,
			      DAEMON_KILL_TIMEOUT_MS / 1000);
			vmproc_signal(vm->pidfd, SIGKILL);
		}
		if (vm->pid && !dcon_connected(&vm->con) && now >= vm->con_retry_at) {
			if (dcon_connect(&vm->con) < 0)
				vm->con_retry_at = now + (now - vm->con_since < CON_FAST_FOR_MS
				                                  ? CON_FAST_MS
				                                  : CON_SLOW_MS);
			else
				dlog_debug("vm %s: console connected", vm->def.name);
		}
	}
	dhttp_tick(d->http, now);
}

static void timer_ev(void *opaque, uint32_t events)
{
	struct daemon *d = opaque;
	uint64_t n;

	(void)events;
	if (read(d->timer_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		dlog_warn("timer: %s", strerror(errno));
	tick(d);
}

static void signal_ev(void *opaque, uint32_t events)
{
	struct daemon *d = opaque;
	struct signalfd_siginfo si;

	(void)events;
	if (read(d->signal_fd, &si, sizeof(si)) == sizeof(si)) {
		dlog_info("%s: exiting; the VMs keep running", strsignal((int)si.ssi_signo));
		d->quit = true;
	}
}

/* ---- start-up ---- */

/* Adopt the VM's recorded process if it is still the same process. */
static bool adopt(struct dvm *vm, int64_t pid, uint64_t start)
{
	struct daemon *d = vm->d;
	uint64_t now_start;
	char err[256];

	if (pid <= 0 || pid > INT_MAX || !vmproc_alive((pid_t)pid) ||
	    vmproc_start_time((pid_t)pid, &now_start) < 0 || now_start != start ||
	    !vmproc_has_arg((pid_t)pid, vm->api))
		return false;
	vm->pidfd = vmproc_pidfd((pid_t)pid);
	if (vm->pidfd < 0) {
		dlog_error("vm %s: cannot watch process %lld: %s", vm->def.name, (long long)pid,
		           strerror(-vm->pidfd));
		vm->pidfd = -1;
		return false;
	}
	if (evloop_add(d->loop, vm->pidfd, EPOLLIN, vm_exit_ev, vm) < 0) {
		close(vm->pidfd);
		vm->pidfd = -1;
		return false;
	}
	vm->pid = (pid_t)pid;
	vm->pid_start = start;
	vm->child = false;
	vm->started_at = vmproc_now_ms() - (int64_t)vmproc_uptime_ms(start);
	vm->con_since = vmproc_now_ms();
	vm->con_retry_at = vm->con_since;
	bool api = daemon_vm_refresh(vm, err, sizeof(err));
	bool in_cg = d->cg.available && cg_vm_has(&d->cg, vm->def.name, vm->pid);
	event(d, vm->def.name, "adopted", "process %d still running%s%s%s%s", (int)pid,
	      api ? ", its API answers" : "; ", api ? "" : err,
	      d->cg.available && !in_cg ? "; not in its cgroup" : "",
	      vm->paused ? " (paused)" : "");
	return true;
}

/* Whether this is the daemon's first start since the host booted (the
 * autostart pass runs once per boot; later starts keep the desired state). */
static bool first_start_this_boot(struct daemon *d, char *boot, size_t len)
{
	char path[PATH_MAX + 16], old[64] = "";
	int fd;
	ssize_t n;

	boot[0] = '\0';
	fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, boot, len - 1);
		boot[n > 0 ? n : 0] = '\0';
		close(fd);
	}
	boot[strcspn(boot, "\n")] = '\0';
	snprintf(path, sizeof(path), "%s/boot_id", d->state_dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, old, sizeof(old) - 1);
		old[n > 0 ? n : 0] = '\0';
		close(fd);
	}
	old[strcspn(old, "\n")] = '\0';
	return !boot[0] || strcmp(boot, old) != 0;
}

static void remember_boot(struct daemon *d, const char *boot)
{
	char path[PATH_MAX + 16], tmp[PATH_MAX + 16];
	int fd;

	if (!boot[0])
		return;
	snprintf(path, sizeof(path), "%s/boot_id", d->state_dir);
	snprintf(tmp, sizeof(tmp), "%s/boot_id.tmp", d->state_dir);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	if (write(fd, boot, strlen(boot)) < 0 || fsync(fd) < 0 || close(fd) < 0 ||
	    rename(tmp, path) < 0)
		dlog_warn("cannot record the boot id in %s: %s", path, strerror(errno));
}

/* Read one stored VM into memory (the decisions come after the whole walk:
 * no writes while the inventory's cursor is open). */
static int load_vm(void *opaque, struct inv_vm *rec)
{
	struct daemon *d = opaque;
	struct dvm *vm = vm_new(d, &rec->def);

	if (!vm) {
		inv_vm_free(rec);
		return -ENOMEM;
	}
	vm->want_run = rec->want_run;
	vm->restarts = rec->restarts;
	vm->recorded_pid = rec->pid;
	vm->pid_start = rec->pid_start;
	snprintf(vm->last_exit, sizeof(vm->last_exit), "%s", rec->last_exit);
	return 0;
}

/* At start-up: adopt the VM's process if it still runs, else start it if it
 * should run (autostart once per boot, or a restart policy). */
static void settle(struct dvm *vm, bool first_boot)
{
	struct daemon *d = vm->d;
	int64_t pid = vm->recorded_pid;

	vm->recorded_pid = 0;
	if (pid && adopt(vm, pid, vm->pid_start))
		return;
	vm->pid_start = 0;
	if (pid) {
		snprintf(vm->last_exit, sizeof(vm->last_exit),
		         "ended while cvisord was not running (status unknown)");
		event(d, vm->def.name, "gone", "process %lld ended while cvisord was not running",
		      (long long)pid);
		if (inv_set_exit(d->inv, vm->def.name, vm->last_exit, vm->restarts) < 0)
			dlog_error("%s", inv_errmsg(d->inv));
	}
	if (vm->def.autostart && (first_boot || vm->want_run)) {
		set_want(vm, true);
		vm_auto_start(vm, "autostart");
	} else if (vm->want_run &&
	           restart_wanted(vm->def.restart, true, RESTART_EXIT_UNKNOWN)) {
		vm_auto_start(vm, "restart after the daemon's restart");
	} else if (vm->want_run) {
		set_want(vm, false);
	}
}

static int mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];

	if (strlen(path) >= sizeof(buf))
		return -ENAMETOOLONG;
	strcpy(buf, path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* The cvisor binary: the option, or the one next to this program. */
static int find_cvisor(struct daemon *d, const char *opt, char *err, size_t errlen)
{
	char self[PATH_MAX];

	if (opt) {
		if (!realpath(opt, d->cvisor)) {
			snprintf(err, errlen, "--cvisor %s: %s", opt, strerror(errno));
			return -ENOENT;
		}
	} else {
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n <= 0) {
			snprintf(err, errlen, "cannot find my own program: %s", strerror(errno));
			return -ENOENT;
		}
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		*slash = '\0';
		if ((size_t)snprintf(d->cvisor, sizeof(d->cvisor), "%s/cvisor", self) >=
		    sizeof(d->cvisor)) {
			snprintf(err, errlen, "path of cvisor too long");
			return -ENAMETOOLONG;
		}
	}
	if (access(d->cvisor, X_OK) < 0) {
		snprintf(err, errlen, "cannot run %s (%s): give its path with --cvisor", d->cvisor,
		         strerror(errno));
		return -ENOENT;
	}
	return 0;
}

int daemon_open(struct daemon *d, const struct daemon_opts *o, char *err, size_t errlen)
{
	char path[PATH_MAX + 32], boot[64];
	sigset_t mask;
	int rc;

	memset(d, 0, sizeof(*d));
	d->lock_fd = d->signal_fd = d->timer_fd = -1;
	d->started_at = vmproc_now_ms();
	if (!o->state_dir || !o->state_dir[0]) {
		snprintf(err, errlen, "--state-dir DIR is required");
		return -EINVAL;
	}
	rc = mkdir_p(o->state_dir, 0700);
	if (rc < 0 || !realpath(o->state_dir, d->state_dir)) {
		snprintf(err, errlen, "state directory %s: %s", o->state_dir,
		         strerror(rc < 0 ? -rc : errno));
		return rc < 0 ? rc : -errno;
	}
	/* the longest socket path of a VM must fit a sockaddr_un */
	if (strlen(d->state_dir) + strlen("/vms/") + VMDEF_NAME_MAX + strlen("/console.sock") >=
	    DAEMON_SOCK_MAX) {
		snprintf(err, errlen,
		         "state directory %s is too long: VM sockets under it would not fit the "
		         "%zu bytes of a Unix socket path",
		         d->state_dir, DAEMON_SOCK_MAX - 1);
		return -ENAMETOOLONG;
	}
	snprintf(path, sizeof(path), "%s/cvisord.lock", d->state_dir);
	d->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (d->lock_fd < 0 || flock(d->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path,
		         errno == EWOULDBLOCK ? "another cvisord runs on this state directory"
		                              : strerror(errno));
		return rc;
	}
	snprintf(path, sizeof(path), "%s/vms", d->state_dir);
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		rc = -errno;
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
		return rc;
	}
	if ((size_t)snprintf(d->socket, sizeof(d->socket), "%s",
	                     o->socket ? o->socket : "") >= sizeof(d->socket) ||
	    (!o->socket && (size_t)snprintf(d->socket, sizeof(d->socket), "%s/cvisord.sock",
	                                    d->state_dir) >= sizeof(d->socket))) {
		snprintf(err, errlen, "the socket path is longer than %zu bytes",
		         DAEMON_SOCK_MAX - 1);
		return -ENAMETOOLONG;
	}
	if ((rc = find_cvisor(d, o->cvisor, err, errlen)) < 0)
		return rc;
	snprintf(path, sizeof(path), "%s/inventory.db", d->state_dir);
	if ((rc = inv_open(path, &d->inv, err, errlen)) < 0)
		return rc;
	if ((rc = cg_init(&d->cg, o->cgroup_root, o->cgroup_parent, err, errlen)) < 0)
		return rc;
	if (d->cg.available)
		dlog_info("cgroup v2: VMs under %s", d->cg.parent);
	else
		dlog_warn("%s: resource limits are refused", d->cg.why);

	d->loop = evloop_create();
	if (!d->loop) {
		snprintf(err, errlen, "cannot create the event loop");
		return -ENOMEM;
	}
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	d->signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	d->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	struct itimerspec its = {
		.it_interval = { .tv_nsec = DAEMON_TICK_MS * 1000000L },
		.it_value = { .tv_nsec = DAEMON_TICK_MS * 1000000L },
	};
	if (d->signal_fd < 0 || d->timer_fd < 0 || timerfd_settime(d->timer_fd, 0, &its, NULL) ||
	    evloop_add(d->loop, d->signal_fd, EPOLLIN, signal_ev, d) ||
	    evloop_add(d->loop, d->timer_fd, EPOLLIN, timer_ev, d)) {
		snprintf(err, errlen, "cannot set up signals and timers: %s", strerror(errno));
		return -EIO;
	}

	/* the VMs before the socket: clients never see a half-loaded inventory */
	bool first_boot = first_start_this_boot(d, boot, sizeof(boot));
	rc = inv_vm_foreach(d->inv, load_vm, d);
	if (rc < 0) {
		snprintf(err, errlen, "%s", rc == -ENOMEM ? "out of memory" : inv_errmsg(d->inv));
		return rc;
	}
	for (struct dvm *vm = d->vms; vm; vm = vm->next)
		settle(vm, first_boot);
	remember_boot(d, boot);
	rc = dhttp_start(d->loop, d->socket, daemon_route, d, &d->http, err, errlen);
	if (rc < 0)
		return rc;
	event(d, NULL, "daemon", "cvisord started on %s with %u VM(s)", d->socket, d->nr_vms);
	return 0;
}

int daemon_run(struct daemon *d)
{
	while (!d->quit) {
		int rc = evloop_run_once(d->loop, -1);
		if (rc < 0 && rc != -EINTR) {
			dlog_error("event loop: %s", strerror(-rc));
			return rc;
		}
	}
	return 0;
}

void daemon_close(struct daemon *d)
{
	dhttp_stop(d->http);
	d->http = NULL;
	while (d->vms)
		vm_free(d, d->vms); /* the processes stay: only our view of them goes */
	if (d->signal_fd >= 0)
		close(d->signal_fd);
	if (d->timer_fd >= 0)
		close(d->timer_fd);
	evloop_destroy(d->loop);
	d->loop = NULL;
	inv_close(d->inv);
	d->inv = NULL;
	if (d->lock_fd >= 0)
		close(d->lock_fd);
	d->lock_fd = -1;
}
