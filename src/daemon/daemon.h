/* cvisord: the host agent. It keeps the inventory, runs each VM as its own
 * `cvisor run` process, supervises it (restart policy with back-off), puts it
 * into its cgroup, multiplexes its console and serves the HTTP API on its
 * Unix socket. One thread, one event loop (src/vm/evloop.h).
 *
 * Layout of the state directory:
 *   DIR/inventory.db           SQLite (WAL): definitions, desired state, PIDs, events
 *   DIR/cvisord.lock           flock held while a daemon runs on DIR
 *   DIR/cvisord.sock           the API (default; --socket PATH)
 *   DIR/boot_id                the boot whose autostart pass is done
 *   DIR/vms/NAME/api.sock      the VM's own API (cvisor run --api-socket)
 *   DIR/vms/NAME/console.sock  its serial console (cvisor run --serial socket=)
 *   DIR/vms/NAME/vmm.log       stdout and stderr of cvisor run */
#ifndef CVISOR_DAEMON_DAEMON_H
#define CVISOR_DAEMON_DAEMON_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/un.h>

#include "daemon/cgroup.h"
#include "daemon/console.h"
#include "daemon/inventory.h"
#include "daemon/vmdef.h"

#define DAEMON_KILL_TIMEOUT_MS 10000 /* destroy: SIGTERM, then SIGKILL after this */
#define DAEMON_API_TIMEOUT_MS 3000   /* a VM's API must answer within this */
#define DAEMON_TICK_MS 200
#define DAEMON_LOG_MAX (1 << 20)     /* vmm.log is rotated at start beyond this */
#define DAEMON_SOCK_MAX (sizeof(((struct sockaddr_un *)0)->sun_path))

struct evloop;
struct dhttp;

/* One VM under the daemon. */
struct dvm {
	struct dvm *next;
	struct daemon *d;
	struct vmdef def;
	bool want_run;      /* desired state */
	pid_t pid;          /* its cvisor process, 0 when none */
	int pidfd;
	uint64_t pid_start; /* start time of pid (/proc/PID/stat) */
	int64_t recorded_pid; /* at start-up: the PID the inventory had */
	bool child;         /* started by this daemon: waitpid gives the status */
	bool paused;        /* as far as we know (refreshed by info) */
	bool stopping;      /* destroy sent SIGTERM */
	int64_t kill_at;    /* send SIGKILL then (0: not pending) */
	int64_t restart_at; /* start again then (0: not pending) */
	uint32_t backoff_ms;
	uint32_t restarts;
	int64_t started_at;  /* monotonic ms when this run began */
	int64_t con_retry_at; /* next attempt to connect to the console */
	int64_t con_since;    /* start of the current connect attempts */
	char last_exit[INV_EXIT_MAX];
	char error[256];    /* why the last start failed, "" if it did not */
	char cg_note[192];  /* limits that do not apply to this VM */
	char dir[PATH_MAX];
	char api[DAEMON_SOCK_MAX];
	char con_path[DAEMON_SOCK_MAX];
	struct dcon con;
};

struct daemon {
	struct evloop *loop;
	struct inv *inv;
	struct cg cg;
	struct dhttp *http;
	char state_dir[PATH_MAX];
	char cvisor[PATH_MAX];  /* the cvisor binary */
	char socket[DAEMON_SOCK_MAX];
	int lock_fd, signal_fd, timer_fd;
	struct dvm *vms;
	unsigned nr_vms;
	bool quit;
	int64_t started_at;
};

/* Options of cvisord. */
struct daemon_opts {
	const char *state_dir;
	const char *socket;        /* NULL: DIR/cvisord.sock */
	const char *cvisor;        /* NULL: next to cvisord */
	const char *cgroup_root;   /* NULL: /sys/fs/cgroup */
	const char *cgroup_parent; /* NULL: cvisor.slice */
};

/* Set up everything (lock, inventory, cgroups, socket), adopt the VMs still
 * running, start the ones that should run. 0, or -errno with one line in err. */
int daemon_open(struct daemon *d, const struct daemon_opts *o, char *err, size_t errlen);
/* Serve until SIGTERM/SIGINT/SIGHUP. The VMs keep running afterwards. */
int daemon_run(struct daemon *d);
/* Close everything (VMs are left running). */
void daemon_close(struct daemon *d);

/* The VM called name, or NULL. */
struct dvm *daemon_find(struct daemon *d, const char *name);
/* Store a new definition (def is moved into the daemon). 0, or -errno with
 * one line in err: -EINVAL bad input, -EEXIST, -EOPNOTSUPP limits without
 * cgroup v2, -EIO inventory. */
int daemon_create(struct daemon *d, struct vmdef *def, char *err, size_t errlen);
/* Start a stopped VM now. -EALREADY if it runs. */
int daemon_start(struct daemon *d, struct dvm *vm, char *err, size_t errlen);
/* Ask the guest to power off (ACPI power button through the VM's API). */
int daemon_shutdown(struct daemon *d, struct dvm *vm, char *err, size_t errlen);
/* Stop the VM now: SIGTERM, then SIGKILL after DAEMON_KILL_TIMEOUT_MS. */
int daemon_destroy(struct daemon *d, struct dvm *vm, char *err, size_t errlen);
/* Pause (pause true) or resume the VM's vCPUs through its API. The VM's
 * HTTP status of a refusal comes back in *status. */
int daemon_pause(struct daemon *d, struct dvm *vm, bool pause, int *status, char *err,
                 size_t errlen);
/* Remove a stopped VM's definition and files. -EBUSY while it runs. */
int daemon_delete(struct daemon *d, struct dvm *vm, char *err, size_t errlen);
/* Change restart policy, autostart and limits (applied at once when the VM
 * runs). nd holds the whole new definition (its args are ignored). */
int daemon_update(struct daemon *d, struct dvm *vm, const struct vmdef *nd, char *err,
                  size_t errlen);
/* The state word of a VM: running, paused, stopped, stopping, restarting. */
const char *daemon_vm_state(const struct dvm *vm);
/* Milliseconds the VM's current run has lasted (0 when not running). */
uint64_t daemon_vm_uptime_ms(const struct dvm *vm);
/* Refresh vm->paused from the VM's API; false if it did not answer. */
bool daemon_vm_refresh(struct dvm *vm, char *err, size_t errlen);

/* The HTTP handler (routes.c). */
struct dhttp_conn;
struct dhttp_req;
/* Answer one request to the daemon's API. */
void daemon_route(void *opaque, struct dhttp_conn *c, const struct dhttp_req *r);

#endif
