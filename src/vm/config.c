/* Option parsing for `cvisor run`. Hand-rolled rather than getopt_long so that
 * every error becomes one specific line and the parser stays reentrant for tests. */
#include "vm/config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "util/size.h"

void config_usage(void *stream)
{
	fputs("usage: cvisor run --kernel PATH [--initrd PATH] [--cmdline STR]\n"
	      "                  [--cpus N] [--memory SIZE] [--name NAME]\n"
	      "                  [--serial stdio|file=PATH|socket=PATH|none]\n"
	      "                  [--disk path=P[,format=raw|qcow2][,readonly=on][,serial=S][,overlay=on]]...\n"
	      "                  [--rng[=bps=N]]\n"
	      "                  [--net tap=NAME[,mac=MAC]]... [--console virtio]\n"
	      "                  [--balloon[=target=SIZE]] [--vsock cid=N]\n"
	      "                  [--api-socket PATH] [--on-reboot restart|exit] [--verbose]\n"
	      "                  [--restore DIR] [--incoming tcp:HOST:PORT [--migrate-key-file PATH]]\n",
	      (FILE *)stream);
}

/* Options of later milestones: known names, refused with a clear message. */
static const char *const later_opts[] = { NULL };

static int parse_serial(struct vm_config *cfg, const char *v, char *err, size_t errlen)
{
	if (!strcmp(v, "stdio")) {
		cfg->serial = SERIAL_STDIO;
	} else if (!strcmp(v, "none")) {
		cfg->serial = SERIAL_NONE;
	} else if (!strncmp(v, "file=", 5) && v[5]) {
		cfg->serial = SERIAL_FILE;
		cfg->serial_path = v + 5;
	} else if (!strncmp(v, "socket=", 7) && v[7]) {
		cfg->serial = SERIAL_SOCKET;
		cfg->serial_path = v + 7;
	} else {
		snprintf(err, errlen, "--serial: '%s' is not stdio, file=PATH, socket=PATH or none",
		         v);
		return -EINVAL;
	}
	return 0;
}

int config_parse_run(struct vm_config *cfg, int argc, char **argv, char *err, size_t errlen)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->cpus = 1;
	cfg->mem_size = CONFIG_DEFAULT_MEM;
	cfg->cmdline = CONFIG_DEFAULT_CMDLINE;
	cfg->name = "cvisor";

	for (int i = 1; i < argc; i++) {
		const char *opt = argv[i];
		const char *val = NULL;
		char name[32];
		const char *eq = strchr(opt, '=');

		/* accept both "--opt value" and "--opt=value" */
		if (!strncmp(opt, "--", 2) && eq && (size_t)(eq - opt) < sizeof(name)) {
			memcpy(name, opt, eq - opt);
			name[eq - opt] = '\0';
			opt = name;
			val = eq + 1;
		}
		if (!strcmp(opt, "--verbose") || !strcmp(opt, "-v")) {
			if (val) {
				snprintf(err, errlen, "--verbose takes no value");
				return -EINVAL;
			}
			cfg->verbose++;
			continue;
		}
		if (!strcmp(opt, "--rng")) { /* a flag; options only as --rng=bps=N */
			cfg->rng = true;
			cfg->rng_opts = val;
			continue;
		}
		if (!strcmp(opt, "--balloon")) { /* a flag; options only as --balloon=... */
			cfg->balloon = true;
			cfg->balloon_opts = val;
			continue;
		}
		if (!strcmp(opt, "--help") || !strcmp(opt, "-h")) {
			snprintf(err, errlen, "help");
			return -EINVAL;
		}
		for (int k = 0; later_opts[k]; k++) {
			if (!strcmp(opt, later_opts[k])) {
				snprintf(err, errlen, "%s is not supported by this build of cvisor yet",
				         opt);
				return -EINVAL;
			}
		}
		if (strncmp(opt, "--", 2)) {
			snprintf(err, errlen, "unexpected argument '%s' (options start with --)", opt);
			return -EINVAL;
		}
		static const char *const known[] = { "--kernel", "--initrd", "--cmdline", "--name",
			                             "--cpus", "--memory", "--serial", "--on-reboot",
			                             "--disk", "--net", "--console", "--vsock",
			                             "--api-socket", "--restore", "--incoming",
			                             "--migrate-key-file", NULL };
		int k = 0;
		while (known[k] && strcmp(opt, known[k]))
			k++;
		if (!known[k]) {
			snprintf(err, errlen, "unknown option %s (see cvisor run --help)", opt);
			return -EINVAL;
		}
		if (!val) {
			if (i + 1 >= argc) {
				snprintf(err, errlen, "%s needs a value", opt);
				return -EINVAL;
			}
			val = argv[++i];
		}

		if (!strcmp(opt, "--disk")) {
			if (cfg->nr_disks == CONFIG_MAX_DISKS) {
				snprintf(err, errlen, "--disk: at most %d disks", CONFIG_MAX_DISKS);
				return -EINVAL;
			}
			cfg->disks[cfg->nr_disks++] = val;
		} else if (!strcmp(opt, "--net")) {
			if (cfg->nr_nets == CONFIG_MAX_NETS) {
				snprintf(err, errlen, "--net: at most %d network cards", CONFIG_MAX_NETS);
				return -EINVAL;
			}
			cfg->nets[cfg->nr_nets++] = val;
		} else if (!strcmp(opt, "--console")) {
			if (strcmp(val, "virtio")) {
				snprintf(err, errlen, "--console: '%s' is not virtio", val);
				return -EINVAL;
			}
			cfg->console_virtio = true;
		} else if (!strcmp(opt, "--incoming")) {
			cfg->incoming = val;
		} else if (!strcmp(opt, "--migrate-key-file")) {
			cfg->migrate_key_file = val;
		} else if (!strcmp(opt, "--restore")) {
			cfg->restore_dir = val;
		} else if (!strcmp(opt, "--vsock")) {
			cfg->vsock_opts = val;
		} else if (!strcmp(opt, "--api-socket")) {
			/* sockaddr_un.sun_path holds 108 bytes with the NUL */
			if (!*val || strlen(val) > 107) {
				snprintf(err, errlen, "--api-socket: the path must be 1 to 107 bytes long");
				return -EINVAL;
			}
			cfg->api_socket = val;
		} else if (!strcmp(opt, "--kernel")) {
			cfg->kernel = val;
		} else if (!strcmp(opt, "--initrd")) {
			cfg->initrd = val;
		} else if (!strcmp(opt, "--cmdline")) {
			cfg->cmdline = val;
		} else if (!strcmp(opt, "--name")) {
			if (!*val) {
				snprintf(err, errlen, "--name must not be empty");
				return -EINVAL;
			}
			cfg->name = val;
		} else if (!strcmp(opt, "--cpus")) {
			uint64_t n;
			if (size_parse_u64(val, &n) < 0 || n == 0 || n > 4096) {
				snprintf(err, errlen, "--cpus: '%s' is not a vCPU count of at least 1",
				         val);
				return -EINVAL;
			}
			cfg->cpus = (unsigned)n;
		} else if (!strcmp(opt, "--memory")) {
			int rc = size_parse_mem(val, &cfg->mem_size);
			if (rc == -ERANGE || (rc == 0 && cfg->mem_size > (1ULL << 46))) {
				snprintf(err, errlen, "--memory: '%s' is too large", val);
				return -EINVAL;
			}
			if (rc < 0) {
				snprintf(err, errlen, "--memory: '%s' is not a size like 512M or 2G",
				         val);
				return -EINVAL;
			}
			if (cfg->mem_size < CONFIG_MIN_MEM) {
				snprintf(err, errlen, "--memory: %s is too small (at least 16M)", val);
				return -EINVAL;
			}
			if (cfg->mem_size & 0xfff) {
				snprintf(err, errlen, "--memory: %s is not a multiple of 4K", val);
				return -EINVAL;
			}
		} else if (!strcmp(opt, "--serial")) {
			if (parse_serial(cfg, val, err, errlen) < 0)
				return -EINVAL;
		} else if (!strcmp(opt, "--on-reboot")) {
			if (!strcmp(val, "restart")) {
				cfg->on_reboot = ON_REBOOT_RESTART;
			} else if (!strcmp(val, "exit")) {
				cfg->on_reboot = ON_REBOOT_EXIT;
			} else {
				snprintf(err, errlen, "--on-reboot: '%s' is not restart or exit", val);
				return -EINVAL;
			}
		}
	}
	if (!cfg->kernel && !cfg->restore_dir && !cfg->incoming) {
		snprintf(err, errlen, "--kernel PATH is required");
		return -EINVAL;
	}
	cfg->argc = argc;
	cfg->argv = argv;
	return 0;
}
