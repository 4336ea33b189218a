/* Unit tests for cvisord's inventory (daemon/inventory.c): SQLite in a
 * temporary directory; definitions, desired state, process records, events,
 * and crash safety: a writer killed with SIGKILL loses nothing it had been
 * told was stored. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "daemon/inventory.h"

struct fixture {
	char dir[64];
	char path[128];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	strcpy(f->dir, "/tmp/cvisord-inv-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/inventory.db", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static struct inv *open_db(struct fixture *f)
{
	struct inv *db = NULL;
	char err[256];

	assert_int_equal(inv_open(f->path, &db, err, sizeof(err)), 0);
	return db;
}

/* A definition named name with a few options and limits. */
static void make_def(struct vmdef *d, const char *name)
{
	char *args[] = { "--kernel", "/boot/vmlinuz", "--memory", "160M", "--cmdline",
		         "console=ttyS0 \"quoted\" \\ back", NULL };

	memset(d, 0, sizeof(*d));
	snprintf(d->name, sizeof(d->name), "%s", name);
	assert_int_equal(vmdef_set_args(d, args, 6), 0);
	d->restart = RESTART_ON_FAILURE;
	d->autostart = true;
	d->limits.cpu_quota = 20;
	d->limits.cpu_weight = 50;
	strcpy(d->limits.cpuset, "0-1");
	d->limits.memory_max = 256ULL << 20;
	d->limits.io_bps = 1000000;
	d->limits.io_iops = 100;
}

struct names {
	char list[8][VMDEF_NAME_MAX + 1];
	int n;
};

static int collect(void *opaque, struct inv_vm *vm)
{
	struct names *n = opaque;

	if (n->n < 8)
		strcpy(n->list[n->n++], vm->def.name);
	inv_vm_free(vm);
	return 0;
}

static void test_create_list_delete(void **state)
{
	struct fixture *f = *state;
	struct inv *db = open_db(f);
	struct vmdef d;
	struct names names = { .n = 0 };

	for (const char *const *n = (const char *const[]){ "web", "db", "cache", NULL }; *n; n++) {
		make_def(&d, *n);
		assert_int_equal(inv_vm_add(db, &d), 0);
		vmdef_free(&d);
	}
	make_def(&d, "db");
	assert_int_equal(inv_vm_add(db, &d), -EEXIST);
	vmdef_free(&d);

	assert_int_equal(inv_vm_foreach(db, collect, &names), 0);
	assert_int_equal(names.n, 3);
	assert_string_equal(names.list[0], "cache"); /* name order */
	assert_string_equal(names.list[1], "db");
	assert_string_equal(names.list[2], "web");

	struct inv_vm vm;
	assert_int_equal(inv_vm_get(db, "db", &vm), 0);
	assert_int_equal(vm.def.nargs, 6);
	assert_string_equal(vm.def.args[5], "console=ttyS0 \"quoted\" \\ back");
	assert_null(vm.def.args[6]);
	assert_int_equal(vm.def.restart, RESTART_ON_FAILURE);
	assert_true(vm.def.autostart);
	assert_int_equal(vm.def.limits.cpu_quota, 20);
	assert_int_equal(vm.def.limits.cpu_weight, 50);
	assert_string_equal(vm.def.limits.cpuset, "0-1");
	assert_int_equal(vm.def.limits.memory_max, 256ULL << 20);
	assert_int_equal(vm.def.limits.io_bps, 1000000);
	assert_int_equal(vm.def.limits.io_iops, 100);
	assert_false(vm.want_run);
	assert_int_equal(vm.pid, 0);
	assert_true(vm.created > 0);
	inv_vm_free(&vm);

	assert_int_equal(inv_vm_delete(db, "db"), 0);
	assert_int_equal(inv_vm_delete(db, "db"), -ENOENT);
	assert_int_equal(inv_vm_get(db, "db", &vm), -ENOENT);
	names.n = 0;
	assert_int_equal(inv_vm_foreach(db, collect, &names), 0);
	assert_int_equal(names.n, 2);
	inv_close(db);
}

static void test_runtime_fields(void **state)
{
	struct fixture *f = *state;
	struct inv *db = open_db(f);
	struct vmdef d;
	struct inv_vm vm;

	make_def(&d, "a");
	assert_int_equal(inv_vm_add(db, &d), 0);
	assert_int_equal(inv_set_desired(db, "a", true), 0);
	assert_int_equal(inv_set_pid(db, "a", 4242, 987654321ULL), 0);
	assert_int_equal(inv_vm_get(db, "a", &vm), 0);
	assert_true(vm.want_run);
	assert_int_equal(vm.pid, 4242);
	assert_int_equal(vm.pid_start, 987654321ULL);
	inv_vm_free(&vm);

	assert_int_equal(inv_set_exit(db, "a", "killed by signal 9 (Killed)", 3), 0);
	assert_int_equal(inv_vm_get(db, "a", &vm), 0);
	assert_int_equal(vm.pid, 0);
	assert_int_equal(vm.restarts, 3);
	assert_string_equal(vm.last_exit, "killed by signal 9 (Killed)");
	inv_vm_free(&vm);

	d.restart = RESTART_ALWAYS;
	d.autostart = false;
	d.limits.cpu_quota = 0;
	d.limits.cpuset[0] = '\0';
	assert_int_equal(inv_vm_update(db, &d), 0);
	assert_int_equal(inv_vm_get(db, "a", &vm), 0);
	assert_int_equal(vm.def.restart, RESTART_ALWAYS);
	assert_false(vm.def.autostart);
	assert_int_equal(vm.def.limits.cpu_quota, 0);
	assert_string_equal(vm.def.limits.cpuset, "");
	assert_int_equal(vm.def.limits.cpu_weight, 50);
	inv_vm_free(&vm);

	assert_int_equal(inv_set_desired(db, "nope", true), -ENOENT);
	assert_int_equal(inv_set_pid(db, "nope", 1, 1), -ENOENT);
	snprintf(d.name, sizeof(d.name), "nope");
	assert_int_equal(inv_vm_update(db, &d), -ENOENT);
	vmdef_free(&d);
	inv_close(db);
}

struct evs {
	int n;
	int64_t last_id;
	char first[256];
};

static int count_ev(void *opaque, const struct inv_event *ev)
{
	struct evs *e = opaque;

	assert_true(ev->id > e->last_id); /* oldest first */
	e->last_id = ev->id;
	if (e->n++ == 0)
		snprintf(e->first, sizeof(e->first), "%s", ev->detail);
	return 0;
}

static void test_events(void **state)
{
	struct fixture *f = *state;
	struct inv *db = open_db(f);
	struct evs e = { 0 };

	for (int i = 0; i < 30; i++)
		assert_int_equal(inv_event_add(db, i % 2 ? "odd" : "even", "test", "event %d", i), 0);
	assert_int_equal(inv_event_add(db, NULL, "daemon", "no VM"), 0);
	assert_int_equal(inv_events(db, "odd", 100, count_ev, &e), 0);
	assert_int_equal(e.n, 15);
	assert_string_equal(e.first, "event 1");
	memset(&e, 0, sizeof(e));
	assert_int_equal(inv_events(db, "even", 5, count_ev, &e), 0);
	assert_int_equal(e.n, 5);
	assert_string_equal(e.first, "event 20"); /* the newest five, in time order */
	memset(&e, 0, sizeof(e));
	assert_int_equal(inv_events(db, NULL, 1000, count_ev, &e), 0);
	assert_int_equal(e.n, 31);
	inv_close(db);
}

static void test_reopen_keeps_everything(void **state)
{
	struct fixture *f = *state;
	struct inv *db = open_db(f);
	struct vmdef d;
	struct inv_vm vm;

	make_def(&d, "persist");
	assert_int_equal(inv_vm_add(db, &d), 0);
	assert_int_equal(inv_set_desired(db, "persist", true), 0);
	vmdef_free(&d);
	inv_close(db);

	db = open_db(f);
	assert_int_equal(inv_vm_get(db, "persist", &vm), 0);
	assert_true(vm.want_run);
	assert_string_equal(vm.def.args[1], "/boot/vmlinuz");
	inv_vm_free(&vm);
	inv_close(db);
}

/* The journal mode and sync level the inventory promises. */
static void test_wal_full_sync(void **state)
{
	struct fixture *f = *state;
	struct inv *db = open_db(f);
	sqlite3 *raw;
	sqlite3_stmt *st;

	inv_close(db);
	assert_int_equal(sqlite3_open(f->path, &raw), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(raw, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal"); /* persistent */
	sqlite3_finalize(st);
	sqlite3_close(raw);
}

/* A writer adds definitions as fast as it can and reports each one the
 * inventory acknowledged through a pipe; it is killed with SIGKILL at some
 * point. Every acknowledged definition must be there after a reopen, and the
 * database must pass an integrity check. Repeated with different timings. */
static void test_kill9_loses_nothing_acknowledged(void **state)
{
	struct fixture *f = *state;

	for (int round = 0; round < 6; round++) {
		int pfd[2];
		assert_int_equal(pipe(pfd), 0);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			struct inv *db;
			char err[256];
			close(pfd[0]);
			if (inv_open(f->path, &db, err, sizeof(err)) < 0)
				_exit(3);
			for (int i = 0;; i++) {
				struct vmdef d;
				char name[32];
				snprintf(name, sizeof(name), "r%d-vm%d", round, i);
				make_def(&d, name);
				if (inv_vm_add(db, &d) == 0) {
					uint32_t n = (uint32_t)i;
					if (write(pfd[1], &n, sizeof(n)) != sizeof(n))
						_exit(4);
				}
				inv_event_add(db, name, "created", "round %d", round);
				vmdef_free(&d);
			}
		}
		close(pfd[1]);
		/* let it write a while: a little longer every round */
		usleep(20000 + round * 30000);
		kill(pid, SIGKILL);
		int status;
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFSIGNALED(status));
		uint32_t n, acked = 0;
		bool any = false;
		while (read(pfd[0], &n, sizeof(n)) == sizeof(n)) {
			acked = n;
			any = true;
		}
		close(pfd[0]);
		/* the later rounds run long enough to store some */
		assert_true(any || round < 3);

		struct inv *db = open_db(f);
		for (uint32_t i = 0; any && i <= acked; i++) {
			char name[32];
			struct inv_vm vm;
			snprintf(name, sizeof(name), "r%d-vm%u", round, i);
			assert_int_equal(inv_vm_get(db, name, &vm), 0);
			assert_int_equal(vm.def.nargs, 6);
			inv_vm_free(&vm);
		}
		inv_close(db);

		sqlite3 *raw;
		sqlite3_stmt *st;
		assert_int_equal(sqlite3_open(f->path, &raw), SQLITE_OK);
		assert_int_equal(sqlite3_prepare_v2(raw, "PRAGMA integrity_check", -1, &st, NULL),
		                 SQLITE_OK);
		assert_int_equal(sqlite3_step(st), SQLITE_ROW);
		assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
		sqlite3_finalize(st);
		sqlite3_close(raw);
	}
}

static void test_open_errors(void **state)
{
	struct inv *db = NULL;
	char err[256] = "";

	(void)state;
	assert_true(inv_open("/nonexistent-dir/x/inventory.db", &db, err, sizeof(err)) < 0);
	assert_null(db);
	assert_non_null(strstr(err, "/nonexistent-dir/x/inventory.db"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_list_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_runtime_fields, setup, teardown),
		cmocka_unit_test_setup_teardown(test_events, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_keeps_everything, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wal_full_sync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kill9_loses_nothing_acknowledged, setup,
		                                teardown),
		cmocka_unit_test(test_open_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
