/* libFuzzer target for `cvisor run` option parsing (vm/config.c).
 * The input is split at NUL bytes into argv strings after "run". The first
 * byte's low bit picks a tiny error buffer to exercise truncation. Oracles:
 * only 0 or -EINVAL; a non-empty, terminated error on failure, on one line
 * unless the input itself has a newline; on success a configuration within
 * the documented limits whose strings point into argv (or are the defaults). */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vm/config.h"

#define MAX_ARGS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int inside(const char *p, const char *buf, size_t len)
{
	return p >= buf && p <= buf + len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *argv[MAX_ARGS + 1];
	int argc = 0;
	char err[256];
	struct vm_config cfg;

	if (size > 4096)
		return 0;
	char *buf = malloc(size + 1);
	if (!buf)
		abort();
	memcpy(buf, data, size);
	buf[size] = '\0';

	argv[argc++] = "run";
	for (size_t i = 0; i <= size && argc < MAX_ARGS;) {
		argv[argc++] = buf + i;
		i += strlen(buf + i) + 1;
	}
	argv[argc] = NULL;

	size_t errlen = (size && (data[0] & 1)) ? 8 : sizeof(err);
	memset(err, 0x55, sizeof(err));
	int rc = config_parse_run(&cfg, argc, argv, err, errlen);

	if (rc != 0 && rc != -EINVAL)
		__builtin_trap();
	if (rc) {
		if (!memchr(err, '\0', errlen) || !err[0])
			__builtin_trap(); /* unterminated or empty reason */
		if (errlen == sizeof(err) && strchr(err, '\n') && !memchr(data, '\n', size))
			__builtin_trap(); /* more than one line */
	} else {
		/* --restore and --incoming bring their kernel with them */
		if ((!cfg.kernel && !cfg.restore_dir && !cfg.incoming) ||
		    (cfg.kernel && !inside(cfg.kernel, buf, size)))
			__builtin_trap();
		if (cfg.cpus < 1 || cfg.cpus > 4096)
			__builtin_trap();
		if (cfg.mem_size < CONFIG_MIN_MEM || cfg.mem_size > (1ULL << 46) ||
		    (cfg.mem_size & 0xfff))
			__builtin_trap();
		if (!cfg.name || !cfg.name[0] || !cfg.cmdline)
			__builtin_trap();
		if (cfg.initrd && !inside(cfg.initrd, buf, size))
			__builtin_trap();
		switch (cfg.serial) {
		case SERIAL_STDIO:
		case SERIAL_NONE:
			break;
		case SERIAL_FILE:
		case SERIAL_SOCKET:
			if (!cfg.serial_path || !cfg.serial_path[0] ||
			    !inside(cfg.serial_path, buf, size))
				__builtin_trap();
			break;
		default:
			__builtin_trap();
		}
		if (cfg.on_reboot != ON_REBOOT_RESTART && cfg.on_reboot != ON_REBOOT_EXIT)
			__builtin_trap();
		if (cfg.verbose < 0 || cfg.verbose > MAX_ARGS)
			__builtin_trap();
		if (cfg.nr_disks > CONFIG_MAX_DISKS)
			__builtin_trap();
		for (unsigned i = 0; i < cfg.nr_disks; i++)
			if (!cfg.disks[i] || !inside(cfg.disks[i], buf, size))
				__builtin_trap();
		if (cfg.rng_opts && (!cfg.rng || !inside(cfg.rng_opts, buf, size)))
			__builtin_trap();
		if (cfg.nr_nets > CONFIG_MAX_NETS)
			__builtin_trap();
		for (unsigned i = 0; i < cfg.nr_nets; i++)
			if (!cfg.nets[i] || !inside(cfg.nets[i], buf, size))
				__builtin_trap();
		if (cfg.balloon_opts && (!cfg.balloon || !inside(cfg.balloon_opts, buf, size)))
			__builtin_trap();
		if (cfg.vsock_opts && !inside(cfg.vsock_opts, buf, size))
			__builtin_trap();
	}
	free(buf);
	return 0;
}
