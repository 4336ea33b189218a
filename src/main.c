/* cvisor: command dispatch. `cvisor run` boots one VM in the foreground. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "api/client.h"
#include "api/api.h"
#include "util/log.h"
#include "util/ratelimit.h"
#include "util/term.h"
#include "vm/config.h"
#include "vm/console.h"
#include "block/block.h"
#include "vm/migrate.h"
#include "vm/postcopy_in.h"
#include "vm/snapshot.h"
#include "vm/vm.h"
#include "vm/vm_api.h"
#include "img/img.h"
#include "vmctl/vmctl.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

static void fatal_signal(int sig)
{
	term_raw_leave(); /* never leave the user's terminal raw */
	signal(sig, SIG_DFL);
	raise(sig);
}

static int cmd_run(int argc, char **argv)
{
	struct vm_config cfg;
	struct console con;
	char err[512];
	int status = 0;

	/* SIGUSR2 asks the vCPUs for their state (vm.c reads it from a signalfd):
	 * blocked before any thread starts, so that none dies of it */
	sigset_t usr2;
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &usr2, NULL);

	uint64_t t_start = ratelimit_now_ns();
	struct snapshot_file snap = { 0 };
	struct api_server *api = NULL;
	struct mstream *conn = NULL; /* an incoming migration */
	struct pc_in *pc = NULL;     /* ... in post-copy */
	char **merged = NULL;

	if (config_parse_run(&cfg, argc, argv, err, sizeof(err)) < 0) {
		if (!strcmp(err, "help")) {
			config_usage(stdout);
			return 0;
		}
		log_error("%s", err);
		return EXIT_USAGE;
	}
	if (cfg.restore_dir) {
		/* the configuration travels in the snapshot; options given now override it */
		int margc;
		const char *dir = cfg.restore_dir;
		if (snapshot_open(dir, &snap, err, sizeof(err)) < 0 ||
		    snapshot_merge_args(&snap, argc, argv, &margc, &merged) < 0 ||
		    config_parse_run(&cfg, margc, merged, err, sizeof(err)) < 0) {
			log_error("%s", err);
			snapshot_close(&snap);
			free(merged);
			return EXIT_USAGE;
		}
		cfg.restore = &snap;
	} else if (cfg.incoming) {
		/* live migration: the configuration comes first; the VM is built from it
		 * while its RAM is still on the way */
		int margc;
		uint64_t msize = 0;
		int mrc = migrate_accept(cfg.incoming, cfg.migrate_key_file, argc, argv, &conn, &msize,
		                         &margc, &merged, err, sizeof(err));
		if (mrc < 0 ||
		    config_parse_run(&cfg, margc, merged, err, sizeof(err)) < 0 ||
		    (cfg.mem_size != msize && snprintf(err, sizeof(err), "--incoming: memory size mismatch"))) {
			log_error("%s", err);
			migrate_incoming_reply(conn, false, err);
			free(merged);
			return mrc == -EINVAL ? EXIT_USAGE : EXIT_RUNTIME;
		}
		blk_defer_locks(true); /* the source holds the image locks until switch-over */
	} else if (cfg.migrate_key_file) {
		log_error("--migrate-key-file goes with --incoming");
		return EXIT_USAGE;
	}
	log_level = 1 + cfg.verbose;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGSEGV, fatal_signal);
	signal(SIGBUS, fatal_signal);
	signal(SIGABRT, fatal_signal);
	signal(SIGILL, fatal_signal);
	if (console_open(&con, &cfg, err, sizeof(err)) < 0) {
		log_error("%s", err);
		return EXIT_USAGE;
	}
	for (unsigned boots = 0;; boots++) {
		struct vm *vm;
		if (boots)
			cfg.restore = NULL; /* a reboot after a restore boots the kernel afresh */
		if (vm_create(&cfg, &con, &vm, err, sizeof(err)) < 0) {
			log_error("%s", err);
			status = boots ? EXIT_RUNTIME : EXIT_USAGE;
			if (conn) { /* the source keeps its VM */
				migrate_incoming_reply(conn, false, err);
				status = EXIT_RUNTIME;
			}
			break;
		}
		if (cfg.restore && !boots && cfg.restore_dir) {
			log_info("restored from %s in %.1f ms (VMM side)", cfg.restore_dir,
			         (ratelimit_now_ns() - t_start) / 1e6);
			vm_announce(vm);
		}
		if (conn) {
			/* post-copy: faults are served (and the stream is the fault thread's)
			 * before anything loads the state into guest memory */
			int prc = migrate_receive(conn, vm_memory(vm), &snap, &pc, err, sizeof(err));
			if (!prc && pc && postcopy_in_start(pc, conn, vm_memory(vm), err, sizeof(err)) == 0)
				conn = NULL;
			else if (!prc && pc)
				prc = -1;
			if (prc < 0 || blk_take_deferred_locks(err, sizeof(err)) < 0 ||
			    vm_snapshot_load(vm, &snap, err, sizeof(err)) < 0) {
				log_error("%s", err);
				vm_unlock_disks(vm); /* before the answer: the source takes them back */
				if (pc) /* the fault thread answers: the source keeps its VM */
					postcopy_in_abort(pc, err);
				migrate_incoming_reply(conn, false, err); /* the source keeps its VM */
				pc = NULL;
				conn = NULL;
				vm_destroy(vm);
				status = EXIT_RUNTIME;
				break;
			}
			if (pc)
				postcopy_in_go(pc); /* the source will not resume after this */
			else
				migrate_incoming_reply(conn, true, NULL);
			conn = NULL;
			vm_announce(vm); /* only now: a refused takeover leaves the source in place */
			log_info("migration received: the VM runs here now");
		}
		cfg.incoming = NULL; /* a reboot later boots the kernel afresh */
		/* the API socket outlives guest resets: detach from the old VM's loop,
		 * attach to the new one's */
		struct api_backend be;
		vm_api_backend(vm, &be);
		int arc = 0;
		if (cfg.api_socket && !api)
			arc = api_server_start(vm_loop(vm), cfg.api_socket, &be, &api, err, sizeof(err));
		else if (api)
			arc = api_server_attach(api, vm_loop(vm), &be);
		if (arc < 0) {
			log_error("%s", cfg.api_socket && !api ? err : "cannot serve the API socket");
			vm_destroy(vm);
			status = boots ? EXIT_RUNTIME : EXIT_USAGE;
			break;
		}
		enum vm_exit why = vm_run(vm);
		postcopy_in_finish(pc); /* before vCPU threads are joined: none waits on a fault then */
		pc = NULL;
		api_server_detach(api);
		vm_destroy(vm);
		log_debug("VM exit: %s", vm_exit_name(why));
		if (why == VM_EXIT_REBOOT && cfg.on_reboot == ON_REBOOT_RESTART) {
			log_info("guest reset: restarting the VM");
			continue;
		}
		if (why == VM_EXIT_ERROR)
			status = EXIT_RUNTIME;
		break;
	}
	api_server_stop(api);
	console_close(&con);
	snapshot_close(&snap);
	free(merged);
	return status;
}

static void usage(FILE *f)
{
	fputs("usage: cvisor run --kernel PATH [options]   boot a VM (cvisor run --help)\n"
	      "       cvisor ctl --api-socket PATH VERB     control a running VM (cvisor ctl --help)\n"
	      "       cvisor img COMMAND [options]           disk images (cvisor img --help)\n"
	      "       cvisor vm COMMAND [NAME] [options]     VMs of cvisord (cvisor vm --help)\n"
	      "       cvisor --version\n",
	      f);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "run"))
		return cmd_run(argc - 1, argv + 1);
	if (!strcmp(argv[1], "ctl"))
		return api_ctl_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "img"))
		return img_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "vm"))
		return vmctl_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "--version")) {
		puts("cvisor 0.1.0");
		return 0;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	log_error("unknown command '%s' (try: cvisor run --help)", argv[1]);
	return EXIT_USAGE;
}
