/* cvisord's inventory: VM definitions, desired state, the record of each VM's
 * process and an event log, in SQLite (WAL, synchronous=FULL). Every call is
 * one transaction: when it returns 0 the change is on disk, so a kill -9 of
 * the daemon at any moment loses nothing that was acknowledged. */
#ifndef CVISOR_DAEMON_INVENTORY_H
#define CVISOR_DAEMON_INVENTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/vmdef.h"

#define INV_EVENTS_MAX 10000 /* older events are dropped */
#define INV_EXIT_MAX 128

struct inv;

/* One stored VM. */
struct inv_vm {
	struct vmdef def;
	bool want_run;      /* desired state: running (true) or stopped */
	int64_t pid;        /* the VM's process, 0 when none is recorded */
	uint64_t pid_start; /* its start time, field 22 of /proc/PID/stat */
	uint32_t restarts;  /* automatic restarts so far */
	int64_t created;    /* Unix time of the definition */
	char last_exit[INV_EXIT_MAX]; /* how the last run ended, "" if none */
};

/* One event. */
struct inv_event {
	int64_t id;
	int64_t time; /* Unix time, milliseconds */
	char vm[VMDEF_NAME_MAX + 1];
	char kind[32];
	char detail[256];
};

typedef int (*inv_vm_fn)(void *opaque, struct inv_vm *vm);
typedef int (*inv_event_fn)(void *opaque, const struct inv_event *ev);

/* Open (creating) the database at path. 0, or -errno with one line in err. */
int inv_open(const char *path, struct inv **out, char *err, size_t errlen);
/* Close it (NULL ok). */
void inv_close(struct inv *db);
/* The message of the last failed call. */
const char *inv_errmsg(const struct inv *db);
/* Store a new definition (stopped, not yet run). 0, -EEXIST or -EIO. */
int inv_vm_add(struct inv *db, const struct vmdef *d);
/* Change a definition's restart policy, autostart and limits. 0, -ENOENT or -EIO. */
int inv_vm_update(struct inv *db, const struct vmdef *d);
/* Remove a definition. 0, -ENOENT or -EIO. */
int inv_vm_delete(struct inv *db, const char *name);
/* Read one VM; free it with inv_vm_free. 0, -ENOENT or -EIO. */
int inv_vm_get(struct inv *db, const char *name, struct inv_vm *out);
/* Call fn for every VM in name order; fn owns the record (inv_vm_free it or
 * keep its def). A negative return from fn stops the walk and is returned. */
int inv_vm_foreach(struct inv *db, inv_vm_fn fn, void *opaque);
/* Free what a record read from the inventory holds. */
void inv_vm_free(struct inv_vm *vm);
/* Set the desired state. 0, -ENOENT or -EIO. */
int inv_set_desired(struct inv *db, const char *name, bool run);
/* Record the VM's process (pid 0: none) and its start time. 0, -ENOENT or -EIO. */
int inv_set_pid(struct inv *db, const char *name, int64_t pid, uint64_t start);
/* Record the end of a run: no process, how it ended, the restart count. */
int inv_set_exit(struct inv *db, const char *name, const char *how, uint32_t restarts);
/* Record the restart count. 0, -ENOENT or -EIO. */
int inv_set_restarts(struct inv *db, const char *name, uint32_t restarts);
/* Append an event (name may be NULL for the daemon itself). 0 or -EIO. */
int inv_event_add(struct inv *db, const char *name, const char *kind, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Call fn for the newest `limit` events of VM name (NULL: all), oldest first. */
int inv_events(struct inv *db, const char *name, unsigned limit, inv_event_fn fn, void *opaque);

#endif
