/* cgroup v2 for cvisord's VMs: one parent cgroup (by default
 * /sys/fs/cgroup/cvisor.slice) with the cpu, cpuset, memory and io
 * controllers enabled for its children, and one child per VM (vm-NAME) that
 * the VM's process joins before it executes cvisor. Without cgroup v2 the
 * module says so (cg->why) and refuses limits; it never ignores them. */
#ifndef CVISOR_DAEMON_CGROUP_H
#define CVISOR_DAEMON_CGROUP_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "daemon/vmdef.h"

#define CG_DEFAULT_ROOT "/sys/fs/cgroup"
#define CG_DEFAULT_PARENT "cvisor.slice"

enum {
	CG_CPU = 1 << 0,
	CG_CPUSET = 1 << 1,
	CG_MEMORY = 1 << 2,
	CG_IO = 1 << 3,
};

struct cg {
	bool available;      /* cgroup v2 is usable */
	char why[192];       /* when not: why, for info and errors */
	char parent[PATH_MAX]; /* our parent cgroup directory */
	unsigned controllers;  /* CG_* enabled for the VMs' cgroups */
};

/* What a VM's cgroup has used. */
struct cg_usage {
	uint64_t cpu_usec;       /* cpu.stat usage_usec */
	uint64_t throttled_usec; /* cpu.stat throttled_usec */
	uint64_t nr_throttled;   /* cpu.stat nr_throttled */
	uint64_t memory_bytes;   /* memory.current */
};

/* Find cgroup v2 at root (NULL: CG_DEFAULT_ROOT) and set up the parent
 * (relative to root, or absolute under it; NULL: CG_DEFAULT_PARENT). A host
 * without cgroup v2 is not an error: cg->available is false and cg->why says
 * why. -errno with one line in err when cgroup v2 is there but unusable. */
int cg_init(struct cg *cg, const char *root, const char *parent, char *err, size_t errlen);
/* The name of a controller bit ("cpu" ...). */
const char *cg_controller_name(unsigned bit);
/* Whether limits l can be applied here: 0, or -EOPNOTSUPP with one line in err
 * (no cgroup v2, or a needed controller is missing). */
int cg_check_limits(const struct cg *cg, const struct vm_limits *l, char *err, size_t errlen);
/* The directory of VM name's cgroup into out. */
void cg_vm_dir(const struct cg *cg, const char *name, char *out, size_t outlen);
/* Create VM name's cgroup (it may exist) and apply l. disks are the VM's
 * --disk option values (for io.max). A note about limits that do not apply
 * (io.max with no disk on a block device) goes into note. 0 or -errno with
 * one line in err. */
int cg_vm_setup(const struct cg *cg, const char *name, const struct vm_limits *l,
                const char *const *disks, unsigned nr_disks, char *note, size_t notelen,
                char *err, size_t errlen);
/* Move process pid into VM name's cgroup. 0 or -errno with one line in err. */
int cg_vm_attach(const struct cg *cg, const char *name, pid_t pid, char *err, size_t errlen);
/* Whether pid is in VM name's cgroup now. */
bool cg_vm_has(const struct cg *cg, const char *name, pid_t pid);
/* Remove VM name's cgroup. 0, -ENOENT, or -EBUSY while processes remain. */
int cg_vm_remove(const struct cg *cg, const char *name);
/* Read VM name's usage. 0 or -errno. */
int cg_vm_usage(const struct cg *cg, const char *name, struct cg_usage *u);
/* The block devices (whole disks) holding the given --disk option values:
 * up to max of them into devs, deduplicated; the count. */
unsigned cg_disk_devices(const char *const *disks, unsigned nr_disks, dev_t *devs,
                         unsigned max);

#endif
