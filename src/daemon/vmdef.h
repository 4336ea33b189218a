/* A VM definition as cvisord stores it: the name, the `cvisor run` options,
 * the restart policy, autostart and the cgroup limits; and the checks a
 * definition passes before it is stored (without starting anything). */
#ifndef CVISOR_DAEMON_VMDEF_H
#define CVISOR_DAEMON_VMDEF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/restart.h"
#include "vm/config.h"

#define VMDEF_NAME_MAX 32       /* 1..32 of [A-Za-z0-9_.-], starting with a letter or digit */
#define VMDEF_MAX_ARGS 256      /* options in a definition */
#define VMDEF_ARG_MAX 4096      /* bytes in one option */
#define VMDEF_CPUSET_MAX 63     /* cpuset.cpus list, e.g. "0-3,8" */
#define VMDEF_QUOTA_MAX 102400  /* --cpu-quota: percent of one CPU (1024 CPUs) */
#define VMDEF_WEIGHT_MAX 10000  /* cpu.weight range 1..10000 */
#define VMDEF_IO_MAX (1ULL << 53)

/* cgroup v2 limits; 0 or "" means "not set" (the kernel's default). */
struct vm_limits {
	uint32_t cpu_quota;  /* cpu.max: percent of one CPU */
	uint32_t cpu_weight; /* cpu.weight */
	char cpuset[VMDEF_CPUSET_MAX + 1]; /* cpuset.cpus */
	uint64_t memory_max; /* memory.max, bytes */
	uint64_t io_bps;     /* io.max rbps and wbps of each disk's device */
	uint64_t io_iops;    /* io.max riops and wiops */
};

/* What a definition's options say, as far as the daemon needs it. */
struct vmdef_facts {
	uint64_t mem_size; /* --memory in bytes */
	unsigned cpus;     /* --cpus */
};

struct vmdef {
	char name[VMDEF_NAME_MAX + 1];
	char **args; /* the `cvisor run` options after "run"; NULL-terminated, malloc'd */
	int nargs;
	enum restart_policy restart;
	bool autostart;
	struct vm_limits limits;
};

/* Check a VM name. 0, or -EINVAL with one line in err. */
int vmdef_name_check(const char *name, char *err, size_t errlen);
/* Check `cvisor run` options for a definition: their syntax (the parser of
 * cvisor run), no option the daemon sets itself (--name, --api-socket,
 * --serial), absolute paths to files that exist (kernel, initrd, disks).
 * facts (may be NULL) gets what the options say. 0, or -EINVAL with one line. */
int vmdef_check_args(char *const *args, int nargs, struct vmdef_facts *facts, char *err,
                     size_t errlen);
/* Copy args into d (replacing what it had). 0 or -ENOMEM. */
int vmdef_set_args(struct vmdef *d, char *const *args, int nargs);
/* Free what d holds (not d). */
void vmdef_free(struct vmdef *d);
/* d's options as a JSON array (malloc'd text), NULL on ENOMEM. */
char *vmdef_args_to_json(const struct vmdef *d);
/* Set d's options from a JSON array of strings. 0, -EINVAL or -ENOMEM. */
int vmdef_args_from_json(struct vmdef *d, const char *json);

/* The --disk option values of d (at most max of them, in order); the count. */
unsigned vmdef_disks(const struct vmdef *d, const char **opts, unsigned max);
/* The path= value of a --disk option value, into out. 0, or -EINVAL if none. */
int vmdef_disk_path(const char *disk_opt, char *out, size_t outlen);

/* Set one limit from its text form: key is cpu_quota, cpu_weight, cpuset,
 * memory_max, io_bps or io_iops; value "none" clears it. 0, or -EINVAL with
 * one line in err (-ENOENT for an unknown key). */
int vmdef_limit_set(struct vm_limits *l, const char *key, const char *value, char *err,
                    size_t errlen);
/* Whether any limit is set. */
bool vmdef_limits_any(const struct vm_limits *l);
/* Check limits against the definition's facts (memory_max below the guest's
 * memory). 0 or -EINVAL with one line in err. */
int vmdef_limits_check(const struct vm_limits *l, const struct vmdef_facts *f, char *err,
                       size_t errlen);
/* Check a cpuset list ("0-3,8,10-11"). 0 or -EINVAL. */
int vmdef_cpuset_check(const char *s);

#endif
