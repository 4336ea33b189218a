/* The inventory in SQLite. One connection, used by the daemon's single
 * thread. WAL with synchronous=FULL makes every commit durable before the
 * call returns; multi-statement changes run inside BEGIN IMMEDIATE ... COMMIT. */
#include "daemon/inventory.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#define INV_SCHEMA_VERSION 1
#define INV_BUSY_MS 5000

struct inv {
	sqlite3 *db;
	char err[256];
};

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS vms ("
	" name TEXT PRIMARY KEY NOT NULL,"
	" args TEXT NOT NULL,"              /* JSON array: the `cvisor run` options */
	" restart TEXT NOT NULL,"           /* never | on-failure | always */
	" autostart INTEGER NOT NULL,"
	" cpu_quota INTEGER NOT NULL DEFAULT 0,"
	" cpu_weight INTEGER NOT NULL DEFAULT 0,"
	" cpuset TEXT NOT NULL DEFAULT '',"
	" memory_max INTEGER NOT NULL DEFAULT 0,"
	" io_bps INTEGER NOT NULL DEFAULT 0,"
	" io_iops INTEGER NOT NULL DEFAULT 0,"
	" want_run INTEGER NOT NULL DEFAULT 0,"
	" pid INTEGER NOT NULL DEFAULT 0,"
	" pid_start INTEGER NOT NULL DEFAULT 0,"
	" restarts INTEGER NOT NULL DEFAULT 0,"
	" last_exit TEXT NOT NULL DEFAULT '',"
	" created INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS events ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" time INTEGER NOT NULL,"
	" vm TEXT,"
	" kind TEXT NOT NULL,"
	" detail TEXT NOT NULL);"
	"CREATE INDEX IF NOT EXISTS events_vm ON events (vm, id);";

static int fail(struct inv *db, const char *what)
{
	snprintf(db->err, sizeof(db->err), "inventory: %s: %s", what, sqlite3_errmsg(db->db));
	return -EIO;
}

const char *inv_errmsg(const struct inv *db)
{
	return db->err;
}

static int exec(struct inv *db, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(db->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		snprintf(db->err, sizeof(db->err), "inventory: %s", msg ? msg : "error");
		sqlite3_free(msg);
		return -EIO;
	}
	return 0;
}

int inv_open(const char *path, struct inv **out, char *err, size_t errlen)
{
	struct inv *db = calloc(1, sizeof(*db));
	sqlite3_stmt *st = NULL;
	int version = -1;

	if (!db) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (sqlite3_open_v2(path, &db->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
	                                           SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE,
	                    NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path, db->db ? sqlite3_errmsg(db->db) : "cannot open");
		goto fail;
	}
	sqlite3_busy_timeout(db->db, INV_BUSY_MS);
	sqlite3_extended_result_codes(db->db, 1);
	/* journal_mode answers with a row: read it to be sure WAL is on */
	if (sqlite3_prepare_v2(db->db, "PRAGMA journal_mode=WAL", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW ||
	    strcmp((const char *)sqlite3_column_text(st, 0), "wal")) {
		snprintf(err, errlen, "%s: cannot switch to WAL mode: %s", path,
		         sqlite3_errmsg(db->db));
		goto fail;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (exec(db, "PRAGMA synchronous=FULL") < 0 || exec(db, "PRAGMA foreign_keys=ON") < 0 ||
	    exec(db, "BEGIN IMMEDIATE") < 0) {
		snprintf(err, errlen, "%s: %s", path, db->err);
		goto fail;
	}
	if (sqlite3_prepare_v2(db->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	st = NULL;
	if (version > INV_SCHEMA_VERSION) {
		exec(db, "ROLLBACK");
		snprintf(err, errlen, "%s: inventory schema %d is newer than this cvisord (%d)",
		         path, version, INV_SCHEMA_VERSION);
		goto fail;
	}
	if (exec(db, schema) < 0 || exec(db, "PRAGMA user_version=1") < 0 ||
	    exec(db, "COMMIT") < 0) {
		snprintf(err, errlen, "%s: %s", path, db->err);
		exec(db, "ROLLBACK");
		goto fail;
	}
	*out = db;
	return 0;
fail:
	sqlite3_finalize(st);
	sqlite3_close(db->db);
	free(db);
	return -EIO;
}

void inv_close(struct inv *db)
{
	if (!db)
		return;
	sqlite3_close(db->db);
	free(db);
}

/* Prepare sql; on failure fill db->err. */
static sqlite3_stmt *prep(struct inv *db, const char *sql)
{
	sqlite3_stmt *st = NULL;

	if (sqlite3_prepare_v2(db->db, sql, -1, &st, NULL) != SQLITE_OK) {
		fail(db, "prepare");
		return NULL;
	}
	return st;
}

/* Run a statement that returns no rows; -ENOENT if it changed none and
 * must_change is set. Finalizes st. */
static int run(struct inv *db, sqlite3_stmt *st, bool must_change, const char *what)
{
	int rc = sqlite3_step(st);

	if (rc != SQLITE_DONE) {
		int ext = sqlite3_extended_errcode(db->db);
		fail(db, what);
		sqlite3_finalize(st);
		return ext == SQLITE_CONSTRAINT_PRIMARYKEY || ext == SQLITE_CONSTRAINT_UNIQUE ? -EEXIST
		                                                                               : -EIO;
	}
	sqlite3_finalize(st);
	if (must_change && sqlite3_changes(db->db) == 0) {
		snprintf(db->err, sizeof(db->err), "inventory: %s: no such VM", what);
		return -ENOENT;
	}
	return 0;
}

static void bind_limits(sqlite3_stmt *st, int first, const struct vm_limits *l)
{
	sqlite3_bind_int64(st, first, l->cpu_quota);
	sqlite3_bind_int64(st, first + 1, l->cpu_weight);
	sqlite3_bind_text(st, first + 2, l->cpuset, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, first + 3, (sqlite3_int64)l->memory_max);
	sqlite3_bind_int64(st, first + 4, (sqlite3_int64)l->io_bps);
	sqlite3_bind_int64(st, first + 5, (sqlite3_int64)l->io_iops);
}

int inv_vm_add(struct inv *db, const struct vmdef *d)
{
	char *args = vmdef_args_to_json(d);
	sqlite3_stmt *st;

	if (!args) {
		snprintf(db->err, sizeof(db->err), "inventory: out of memory");
		return -ENOMEM;
	}
	st = prep(db, "INSERT INTO vms (name, args, restart, autostart, cpu_quota, cpu_weight,"
	              " cpuset, memory_max, io_bps, io_iops, created)"
	              " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)");
	if (!st) {
		free(args);
		return -EIO;
	}
	sqlite3_bind_text(st, 1, d->name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, args, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 3, restart_policy_name(d->restart), -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 4, d->autostart);
	bind_limits(st, 5, &d->limits);
	sqlite3_bind_int64(st, 11, (sqlite3_int64)time(NULL));
	free(args);
	return run(db, st, false, "add VM");
}

int inv_vm_update(struct inv *db, const struct vmdef *d)
{
	sqlite3_stmt *st = prep(db, "UPDATE vms SET restart = ?2, autostart = ?3, cpu_quota = ?4,"
	                            " cpu_weight = ?5, cpuset = ?6, memory_max = ?7, io_bps = ?8,"
	                            " io_iops = ?9 WHERE name = ?1");
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, d->name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, restart_policy_name(d->restart), -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 3, d->autostart);
	bind_limits(st, 4, &d->limits);
	return run(db, st, true, "update VM");
}

int inv_vm_delete(struct inv *db, const char *name)
{
	sqlite3_stmt *st = prep(db, "DELETE FROM vms WHERE name = ?1");

	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	return run(db, st, true, "delete VM");
}

static void text_col(sqlite3_stmt *st, int col, char *out, size_t outlen)
{
	const unsigned char *t = sqlite3_column_text(st, col);

	snprintf(out, outlen, "%s", t ? (const char *)t : "");
}

static uint64_t u64_col(sqlite3_stmt *st, int col)
{
	sqlite3_int64 v = sqlite3_column_int64(st, col);
	return v < 0 ? 0 : (uint64_t)v;
}

#define VM_COLUMNS                                                                         \
	"name, args, restart, autostart, cpu_quota, cpu_weight, cpuset, memory_max, io_bps," \
	" io_iops, want_run, pid, pid_start, restarts, last_exit, created"

/* Fill vm from a row of VM_COLUMNS. 0, -EINVAL (a damaged row) or -ENOMEM. */
static int row_to_vm(sqlite3_stmt *st, struct inv_vm *vm)
{
	const char *args = (const char *)sqlite3_column_text(st, 1);
	int rc;

	memset(vm, 0, sizeof(*vm));
	text_col(st, 0, vm->def.name, sizeof(vm->def.name));
	rc = vmdef_args_from_json(&vm->def, args ? args : "");
	if (rc < 0)
		return rc;
	if (restart_policy_parse((const char *)sqlite3_column_text(st, 2), &vm->def.restart) < 0)
		vm->def.restart = RESTART_NEVER;
	vm->def.autostart = sqlite3_column_int(st, 3) != 0;
	vm->def.limits.cpu_quota = (uint32_t)u64_col(st, 4);
	vm->def.limits.cpu_weight = (uint32_t)u64_col(st, 5);
	text_col(st, 6, vm->def.limits.cpuset, sizeof(vm->def.limits.cpuset));
	vm->def.limits.memory_max = u64_col(st, 7);
	vm->def.limits.io_bps = u64_col(st, 8);
	vm->def.limits.io_iops = u64_col(st, 9);
	vm->want_run = sqlite3_column_int(st, 10) != 0;
	vm->pid = sqlite3_column_int64(st, 11);
	vm->pid_start = u64_col(st, 12);
	vm->restarts = (uint32_t)u64_col(st, 13);
	text_col(st, 14, vm->last_exit, sizeof(vm->last_exit));
	vm->created = sqlite3_column_int64(st, 15);
	return 0;
}

void inv_vm_free(struct inv_vm *vm)
{
	vmdef_free(&vm->def);
}

int inv_vm_get(struct inv *db, const char *name, struct inv_vm *out)
{
	sqlite3_stmt *st = prep(db, "SELECT " VM_COLUMNS " FROM vms WHERE name = ?1");
	int rc;

	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		rc = row_to_vm(st, out);
		if (rc < 0)
			snprintf(db->err, sizeof(db->err), "inventory: VM %s: damaged record", name);
	} else if (rc == SQLITE_DONE) {
		snprintf(db->err, sizeof(db->err), "inventory: no VM named %s", name);
		rc = -ENOENT;
	} else {
		rc = fail(db, "read VM");
	}
	sqlite3_finalize(st);
	return rc;
}

int inv_vm_foreach(struct inv *db, inv_vm_fn fn, void *opaque)
{
	sqlite3_stmt *st = prep(db, "SELECT " VM_COLUMNS " FROM vms ORDER BY name");
	int rc;

	if (!st)
		return -EIO;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct inv_vm vm;
		if (row_to_vm(st, &vm) < 0) {
			/* one damaged row must not hide the others */
			snprintf(db->err, sizeof(db->err), "inventory: VM %s: damaged record",
			         vm.def.name);
			inv_vm_free(&vm);
			continue;
		}
		rc = fn(opaque, &vm);
		if (rc < 0) {
			sqlite3_finalize(st);
			return rc;
		}
	}
	if (rc != SQLITE_DONE)
		rc = fail(db, "list VMs");
	else
		rc = 0;
	sqlite3_finalize(st);
	return rc;
}

int inv_set_desired(struct inv *db, const char *name, bool run_it)
{
	sqlite3_stmt *st = prep(db, "UPDATE vms SET want_run = ?2 WHERE name = ?1");

	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(st, 2, run_it);
	return run(db, st, true, "set desired state");
}

int inv_set_pid(struct inv *db, const char *name, int64_t pid, uint64_t start)
{
	sqlite3_stmt *st = prep(db, "UPDATE vms SET pid = ?2, pid_start = ?3 WHERE name = ?1");

	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 2, pid);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)start);
	return run(db, st, true, "record process");
}

int inv_set_exit(struct inv *db, const char *name, const char *how, uint32_t restarts)
{
	sqlite3_stmt *st = prep(db, "UPDATE vms SET pid = 0, pid_start = 0, last_exit = ?2,"
	                            " restarts = ?3 WHERE name = ?1");
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, how, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 3, restarts);
	return run(db, st, true, "record exit");
}

int inv_set_restarts(struct inv *db, const char *name, uint32_t restarts)
{
	sqlite3_stmt *st = prep(db, "UPDATE vms SET restarts = ?2 WHERE name = ?1");

	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 2, restarts);
	return run(db, st, true, "record restarts");
}

int inv_event_add(struct inv *db, const char *name, const char *kind, const char *fmt, ...)
{
	char detail[256];
	struct timespec ts;
	sqlite3_stmt *st;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	clock_gettime(CLOCK_REALTIME, &ts);
	if (exec(db, "BEGIN IMMEDIATE") < 0)
		return -EIO;
	st = prep(db, "INSERT INTO events (time, vm, kind, detail) VALUES (?1, ?2, ?3, ?4)");
	if (!st) {
		exec(db, "ROLLBACK");
		return -EIO;
	}
	sqlite3_bind_int64(st, 1, (sqlite3_int64)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
	if (name)
		sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, 2);
	sqlite3_bind_text(st, 3, kind, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 4, detail, -1, SQLITE_TRANSIENT);
	rc = run(db, st, false, "add event");
	if (rc == 0) {
		char sql[128];
		snprintf(sql, sizeof(sql),
		         "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - %d",
		         INV_EVENTS_MAX);
		rc = exec(db, sql);
	}
	if (rc == 0)
		rc = exec(db, "COMMIT");
	if (rc < 0)
		exec(db, "ROLLBACK");
	return rc;
}

int inv_events(struct inv *db, const char *name, unsigned limit, inv_event_fn fn, void *opaque)
{
	/* the newest `limit`, then turned back into time order */
	sqlite3_stmt *st = prep(db, "SELECT id, time, vm, kind, detail FROM"
	                            " (SELECT * FROM events WHERE ?1 IS NULL OR vm = ?1"
	                            "  ORDER BY id DESC LIMIT ?2) ORDER BY id");
	int rc;

	if (!st)
		return -EIO;
	if (name)
		sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, 1);
	sqlite3_bind_int64(st, 2, limit);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct inv_event ev;
		ev.id = sqlite3_column_int64(st, 0);
		ev.time = sqlite3_column_int64(st, 1);
		text_col(st, 2, ev.vm, sizeof(ev.vm));
		text_col(st, 3, ev.kind, sizeof(ev.kind));
		text_col(st, 4, ev.detail, sizeof(ev.detail));
		rc = fn(opaque, &ev);
		if (rc < 0) {
			sqlite3_finalize(st);
			return rc;
		}
	}
	rc = rc == SQLITE_DONE ? 0 : fail(db, "read events");
	sqlite3_finalize(st);
	return rc;
}
