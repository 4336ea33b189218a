/* cvisor: command dispatch. `cvisor run` boots one VM in the foreground. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util/log.h"
#include "util/term.h"
#include "vm/config.h"
#include "vm/console.h"
#include "vm/vm.h"

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

	if (config_parse_run(&cfg, argc, argv, err, sizeof(err)) < 0) {
		if (!strcmp(err, "help")) {
			config_usage(stdout);
			return 0;
		}
		log_error("%s", err);
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
		if (vm_create(&cfg, &con, &vm, err, sizeof(err)) < 0) {
			log_error("%s", err);
			status = boots ? EXIT_RUNTIME : EXIT_USAGE;
			break;
		}
		enum vm_exit why = vm_run(vm);
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
	console_close(&con);
	return status;
}

static void usage(FILE *f)
{
	fputs("usage: cvisor run --kernel PATH [options]   boot a VM (cvisor run --help)\n"
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
