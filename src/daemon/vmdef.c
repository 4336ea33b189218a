/* VM definitions: checks of names, options and limits, and the JSON form of
 * the option list kept in the inventory. The options are checked with the
 * parser of `cvisor run` itself, so a stored definition never fails on syntax
 * when it is started; what only the VMM can know (KVM, host memory) is left to
 * the start. */
#include "daemon/vmdef.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "util/size.h"
#include "vm/config.h"

int vmdef_name_check(const char *name, char *err, size_t errlen)
{
	size_t n = name ? strlen(name) : 0;
	static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-";

	if (n == 0 || n > VMDEF_NAME_MAX) {
		snprintf(err, errlen, "a VM name is 1 to %d characters long", VMDEF_NAME_MAX);
		return -EINVAL;
	}
	if (strspn(name, ok) != n || name[0] == '_' || name[0] == '.' || name[0] == '-') {
		snprintf(err, errlen,
		         "VM name '%.*s': use letters, digits, '_', '.' and '-', starting with a "
		         "letter or digit",
		         VMDEF_NAME_MAX, name);
		return -EINVAL;
	}
	return 0;
}

/* Options of `cvisor run` that take no value. */
static bool is_flag(const char *opt)
{
	return !strcmp(opt, "--verbose") || !strcmp(opt, "-v") || !strcmp(opt, "--rng") ||
	       !strcmp(opt, "--balloon");
}

/* The value of key= inside a comma-separated option value, into out. */
static int sub_value(const char *v, const char *key, char *out, size_t outlen)
{
	size_t klen = strlen(key);

	while (v && *v) {
		const char *end = strchr(v, ',');
		size_t len = end ? (size_t)(end - v) : strlen(v);
		if (len > klen && !strncmp(v, key, klen) && v[klen] == '=') {
			if (len - klen - 1 >= outlen)
				return -ENAMETOOLONG;
			memcpy(out, v + klen + 1, len - klen - 1);
			out[len - klen - 1] = '\0';
			return 0;
		}
		v = end ? end + 1 : NULL;
	}
	return -EINVAL;
}

int vmdef_disk_path(const char *disk_opt, char *out, size_t outlen)
{
	return sub_value(disk_opt, "path", out, outlen) == 0 && out[0] ? 0 : -EINVAL;
}

/* A file the VM will open: absolute, existing, readable by us, of the right kind. */
static int check_file(const char *what, const char *path, bool blockdev_ok, char *err,
                      size_t errlen)
{
	struct stat st;

	if (path[0] != '/') {
		snprintf(err, errlen, "%s %s: give an absolute path (the daemon has its own working "
		         "directory)", what, path);
		return -EINVAL;
	}
	if (stat(path, &st) < 0) {
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
		return -EINVAL;
	}
	if (!S_ISREG(st.st_mode) && !(blockdev_ok && S_ISBLK(st.st_mode))) {
		snprintf(err, errlen, "%s %s: not a regular file%s", what, path,
		         blockdev_ok ? " or block device" : "");
		return -EINVAL;
	}
	if (access(path, R_OK) < 0) {
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
		return -EINVAL;
	}
	return 0;
}

/* Walk the options as the parser of cvisor run does; refuse the ones the
 * daemon sets and check the files the VM will need. */
static int check_options(char *const *args, int nargs, char *err, size_t errlen)
{
	for (int i = 0; i < nargs; i++) {
		char name[32], buf[4096];
		const char *opt = args[i], *val = NULL, *eq = strchr(opt, '=');

		if (!strncmp(opt, "--", 2) && eq && (size_t)(eq - opt) < sizeof(name)) {
			memcpy(name, opt, (size_t)(eq - opt));
			name[eq - opt] = '\0';
			opt = name;
			val = eq + 1;
		}
		if (!strcmp(opt, "--name") || !strcmp(opt, "--api-socket") ||
		    !strcmp(opt, "--serial")) {
			snprintf(err, errlen,
			         "%s is set by cvisord (the VM's name, its API socket and its "
			         "console, see cvisor vm console)",
			         opt);
			return -EINVAL;
		}
		if (!strcmp(opt, "--help") || !strcmp(opt, "-h")) {
			snprintf(err, errlen, "%s is not an option of a VM definition", opt);
			return -EINVAL;
		}
		if (is_flag(opt))
			continue;
		if (!val && i + 1 < nargs)
			val = args[++i];
		if (!val)
			continue; /* the parser already said what is missing */
		if (!strcmp(opt, "--kernel") || !strcmp(opt, "--initrd")) {
			if (check_file(opt, val, false, err, errlen) < 0)
				return -EINVAL;
		} else if (!strcmp(opt, "--disk")) {
			if (vmdef_disk_path(val, buf, sizeof(buf)) < 0) {
				snprintf(err, errlen, "--disk %s: no path=", val);
				return -EINVAL;
			}
			if (check_file("--disk path=", buf, true, err, errlen) < 0)
				return -EINVAL;
		} else if (!strcmp(opt, "--vsock")) {
			if (sub_value(val, "socket", buf, sizeof(buf)) == 0 && buf[0] != '/') {
				snprintf(err, errlen, "--vsock socket=%s: give an absolute path", buf);
				return -EINVAL;
			}
		}
	}
	return 0;
}

int vmdef_check_args(char *const *args, int nargs, struct vmdef_facts *facts, char *err,
                     size_t errlen)
{
	struct vm_config cfg;
	char **argv;
	int rc;

	if (nargs < 0 || nargs > VMDEF_MAX_ARGS) {
		snprintf(err, errlen, "at most %d options in a VM definition", VMDEF_MAX_ARGS);
		return -EINVAL;
	}
	for (int i = 0; i < nargs; i++) {
		if (!args[i] || strlen(args[i]) > VMDEF_ARG_MAX) {
			snprintf(err, errlen, "option %d is longer than %d bytes", i + 1,
			         VMDEF_ARG_MAX);
			return -EINVAL;
		}
	}
	/* the forbidden options first: their message is clearer than the parser's */
	rc = check_options(args, nargs, err, errlen);
	if (rc < 0)
		return rc;
	argv = calloc((size_t)nargs + 2, sizeof(*argv));
	if (!argv) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	argv[0] = "run";
	for (int i = 0; i < nargs; i++)
		argv[i + 1] = args[i];
	rc = config_parse_run(&cfg, nargs + 1, argv, err, errlen);
	free(argv);
	if (rc < 0)
		return -EINVAL;
	if (facts) {
		facts->mem_size = cfg.mem_size;
		facts->cpus = cfg.cpus;
	}
	return 0;
}

void vmdef_free(struct vmdef *d)
{
	if (d->args) {
		for (int i = 0; i < d->nargs; i++)
			free(d->args[i]);
		free(d->args);
	}
	d->args = NULL;
	d->nargs = 0;
}

int vmdef_set_args(struct vmdef *d, char *const *args, int nargs)
{
	char **a = calloc((size_t)nargs + 1, sizeof(*a));

	if (!a)
		return -ENOMEM;
	for (int i = 0; i < nargs; i++) {
		a[i] = strdup(args[i]);
		if (!a[i]) {
			while (i--)
				free(a[i]);
			free(a);
			return -ENOMEM;
		}
	}
	vmdef_free(d);
	d->args = a;
	d->nargs = nargs;
	return 0;
}

char *vmdef_args_to_json(const struct vmdef *d)
{
	struct json_object *a = json_object_new_array();
	char *text = NULL;

	if (!a)
		return NULL;
	for (int i = 0; i < d->nargs; i++) {
		if (json_object_array_add(a, json_object_new_string(d->args[i])) < 0)
			goto out;
	}
	text = strdup(json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN |
	                                                        JSON_C_TO_STRING_NOSLASHESCAPE));
out:
	json_object_put(a);
	return text;
}

int vmdef_args_from_json(struct vmdef *d, const char *json)
{
	struct json_object *a = json_tokener_parse(json);
	char **args = NULL;
	int n = 0, rc = -EINVAL;

	if (!a || !json_object_is_type(a, json_type_array))
		goto out;
	n = (int)json_object_array_length(a);
	if (n > VMDEF_MAX_ARGS)
		goto out;
	args = calloc((size_t)n + 1, sizeof(*args));
	if (!args) {
		rc = -ENOMEM;
		goto out;
	}
	for (int i = 0; i < n; i++) {
		struct json_object *s = json_object_array_get_idx(a, (size_t)i);
		if (!json_object_is_type(s, json_type_string) ||
		    strlen(json_object_get_string(s)) != (size_t)json_object_get_string_len(s))
			goto out;
		args[i] = (char *)json_object_get_string(s);
	}
	rc = vmdef_set_args(d, args, n);
out:
	free(args);
	json_object_put(a);
	return rc;
}

unsigned vmdef_disks(const struct vmdef *d, const char **opts, unsigned max)
{
	unsigned n = 0;

	for (int i = 0; i < d->nargs; i++) {
		const char *a = d->args[i];
		if (!strncmp(a, "--disk=", 7)) {
			if (n < max)
				opts[n] = a + 7;
			n++;
		} else if (!strcmp(a, "--disk") && i + 1 < d->nargs) {
			if (n < max)
				opts[n] = d->args[i + 1];
			n++;
			i++;
		} else if (!strncmp(a, "--", 2) && !strchr(a, '=') && !is_flag(a)) {
			i++; /* skip this option's value */
		}
	}
	return n < max ? n : max;
}

int vmdef_cpuset_check(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > VMDEF_CPUSET_MAX)
		return -EINVAL;
	while (*s) {
		char *end;
		if (*s < '0' || *s > '9')
			return -EINVAL;
		unsigned long a = strtoul(s, &end, 10), b = a;
		if (*end == '-') {
			if (end[1] < '0' || end[1] > '9')
				return -EINVAL;
			b = strtoul(end + 1, &end, 10);
		}
		if (a > 8191 || b > 8191 || b < a)
			return -EINVAL;
		if (*end == ',' && end[1])
			end++;
		else if (*end)
			return -EINVAL;
		s = end;
	}
	return 0;
}

/* An integer limit in [min, max]; "none" gives 0. */
static int limit_num(const char *key, const char *v, uint64_t min, uint64_t max, bool size,
                     uint64_t *out, char *err, size_t errlen)
{
	uint64_t n;
	int rc;

	if (!strcmp(v, "none")) {
		*out = 0;
		return 0;
	}
	rc = size ? size_parse_mem(v, &n) : size_parse_u64(v, &n);
	if (rc < 0 || n < min || n > max) {
		snprintf(err, errlen, "%s: '%s' is not %s from %llu to %llu (or none)", key, v,
		         size ? "a size like 512M" : "a number", (unsigned long long)min,
		         (unsigned long long)max);
		return -EINVAL;
	}
	*out = n;
	return 0;
}

int vmdef_limit_set(struct vm_limits *l, const char *key, const char *value, char *err,
                    size_t errlen)
{
	uint64_t n;

	if (!strcmp(key, "cpu_quota")) {
		if (limit_num("cpu_quota (percent of one CPU)", value, 1, VMDEF_QUOTA_MAX, false,
		              &n, err, errlen) < 0)
			return -EINVAL;
		l->cpu_quota = (uint32_t)n;
	} else if (!strcmp(key, "cpu_weight")) {
		if (limit_num("cpu_weight", value, 1, VMDEF_WEIGHT_MAX, false, &n, err, errlen) < 0)
			return -EINVAL;
		l->cpu_weight = (uint32_t)n;
	} else if (!strcmp(key, "cpuset")) {
		if (!strcmp(value, "none")) {
			l->cpuset[0] = '\0';
		} else if (vmdef_cpuset_check(value) < 0) {
			snprintf(err, errlen, "cpuset: '%.*s' is not a CPU list like 0-3,6 (or none)",
			         VMDEF_CPUSET_MAX, value);
			return -EINVAL;
		} else {
			snprintf(l->cpuset, sizeof(l->cpuset), "%s", value);
		}
	} else if (!strcmp(key, "memory_max")) {
		/* a bare number is MiB, as everywhere else in cvisor */
		if (limit_num("memory_max", value, 16ULL << 20, 1ULL << 50, true, &n, err,
		              errlen) < 0)
			return -EINVAL;
		l->memory_max = n;
	} else if (!strcmp(key, "io_bps")) {
		if (limit_num("io_bps", value, 1, VMDEF_IO_MAX, false, &l->io_bps, err, errlen) < 0)
			return -EINVAL;
	} else if (!strcmp(key, "io_iops")) {
		if (limit_num("io_iops", value, 1, VMDEF_IO_MAX, false, &l->io_iops, err, errlen) <
		    0)
			return -EINVAL;
	} else {
		snprintf(err, errlen,
		         "unknown limit '%.32s' (cpu_quota, cpu_weight, cpuset, memory_max, "
		         "io_bps, io_iops)",
		         key);
		return -ENOENT;
	}
	return 0;
}

bool vmdef_limits_any(const struct vm_limits *l)
{
	return l->cpu_quota || l->cpu_weight || l->cpuset[0] || l->memory_max || l->io_bps ||
	       l->io_iops;
}

int vmdef_limits_check(const struct vm_limits *l, const struct vmdef_facts *f, char *err,
                       size_t errlen)
{
	if (l->memory_max && f && l->memory_max < f->mem_size) {
		snprintf(err, errlen,
		         "memory_max %lluM is below the guest's memory (%lluM): the VM would be "
		         "killed by the OOM killer",
		         (unsigned long long)(l->memory_max >> 20),
		         (unsigned long long)(f->mem_size >> 20));
		return -EINVAL;
	}
	return 0;
}
