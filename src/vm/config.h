/* VM configuration from `cvisor run` options. */
#ifndef CVISOR_VM_CONFIG_H
#define CVISOR_VM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum serial_kind { SERIAL_STDIO, SERIAL_FILE, SERIAL_SOCKET, SERIAL_NONE };
enum on_reboot { ON_REBOOT_RESTART, ON_REBOOT_EXIT };

#define CONFIG_MIN_MEM (16ULL << 20)
#define CONFIG_DEFAULT_MEM (512ULL << 20)
#define CONFIG_DEFAULT_CMDLINE "console=ttyS0 reboot=k panic=1"

struct snapshot_file;
struct guest_mem;

#define CONFIG_MAX_DISKS 16
#define CONFIG_MAX_NETS 8

struct vm_config {
	const char *kernel;
	const char *initrd;
	const char *cmdline;
	unsigned cpus;
	uint64_t mem_size;
	enum serial_kind serial;
	const char *serial_path;
	enum on_reboot on_reboot;
	const char *name;
	int verbose;
	const char *disks[CONFIG_MAX_DISKS]; /* --disk option strings, parsed by the block layer */
	unsigned nr_disks;
	bool rng;
	const char *rng_opts; /* "bps=N" or NULL */
	const char *nets[CONFIG_MAX_NETS]; /* --net option strings, parsed by virtio-net */
	unsigned nr_nets;
	bool console_virtio; /* --console virtio: hvc0 on the serial backend */
	bool balloon;
	const char *balloon_opts; /* --balloon=OPTS or NULL */
	const char *vsock_opts;   /* --vsock OPTS or NULL (no vsock) */
	const char *restore_dir;  /* --restore DIR: boot from a snapshot instead of a kernel */
	struct snapshot_file *restore; /* opened by the caller when restore_dir is set */
	const char *incoming;          /* --incoming tcp:HOST:PORT: receive a live migration */
	const char *migrate_key_file;  /* --migrate-key-file PATH: its pre-shared key, or NULL */
	int argc;                 /* the options as given (kept in snapshots) */
	char **argv;
	const char *api_socket;   /* --api-socket PATH or NULL (no API) */
};

/* Fill cfg from argv of `cvisor run` (argv[0] is "run"). On bad usage returns
 * -EINVAL with a one-line reason in err. Checks only syntax and fixed limits;
 * host-dependent limits (vCPU maximum, host RAM) are checked at VM creation. */
int config_parse_run(struct vm_config *cfg, int argc, char **argv, char *err, size_t errlen);
/* Print `cvisor run` usage to the given stream. */
void config_usage(void *stream);

#endif
