/* cgroup v2 handling. Files are written with one write(2) each, as the
 * kernel expects; errors carry the file name and the kernel's errno. */
#include "daemon/cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

#define CG_PERIOD_US 100000 /* cpu.max period: 100 ms */

static const char *const ctl_names[] = { "cpu", "cpuset", "memory", "io" };
#define CG_NR_CTL (sizeof(ctl_names) / sizeof(ctl_names[0]))

const char *cg_controller_name(unsigned bit)
{
	for (unsigned i = 0; i < CG_NR_CTL; i++) {
		if (bit == 1u << i)
			return ctl_names[i];
	}
	return "?";
}

static int write_file(const char *dir, const char *file, const char *text)
{
	char path[PATH_MAX];
	int fd, rc = 0;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, file) >= sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, text, strlen(text));
	if (n < 0)
		rc = -errno;
	else if ((size_t)n != strlen(text))
		rc = -EIO;
	close(fd);
	return rc;
}

static int read_file(const char *dir, const char *file, char *buf, size_t len)
{
	char path[PATH_MAX];
	int fd;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, file) >= sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, len - 1);
	int rc = n < 0 ? -errno : 0;
	close(fd);
	if (rc < 0)
		return rc;
	buf[n] = '\0';
	return 0;
}

/* The CG_* bits named in a space-separated controller list. */
static unsigned ctl_mask(const char *list)
{
	unsigned mask = 0;
	char word[32];
	int used;

	while (sscanf(list, "%31s%n", word, &used) == 1) {
		for (unsigned i = 0; i < CG_NR_CTL; i++) {
			if (!strcmp(word, ctl_names[i]))
				mask |= 1u << i;
		}
		list += used;
	}
	return mask;
}

/* Enable the controllers we use in dir's subtree_control, one by one (a
 * missing one must not keep the others off). */
static void enable_controllers(const char *dir, unsigned want)
{
	char cmd[16];

	for (unsigned i = 0; i < CG_NR_CTL; i++) {
		if (!(want & (1u << i)))
			continue;
		snprintf(cmd, sizeof(cmd), "+%s", ctl_names[i]);
		write_file(dir, "cgroup.subtree_control", cmd);
	}
}

int cg_init(struct cg *cg, const char *root, const char *parent, char *err, size_t errlen)
{
	char buf[256], dir[PATH_MAX];
	struct statfs sf;

	memset(cg, 0, sizeof(*cg));
	root = root ? root : CG_DEFAULT_ROOT;
	parent = parent ? parent : CG_DEFAULT_PARENT;
	if (statfs(root, &sf) < 0 || sf.f_type != CGROUP2_SUPER_MAGIC ||
	    read_file(root, "cgroup.controllers", buf, sizeof(buf)) < 0) {
		snprintf(cg->why, sizeof(cg->why),
		         "this host has no cgroup v2 at %s (no cgroup2 file system with "
		         "cgroup.controllers)",
		         root);
		return 0;
	}
	size_t rl = strlen(root);
	if (parent[0] == '/') {
		if (strncmp(parent, root, rl) || parent[rl] != '/') {
			snprintf(err, errlen, "cgroup parent %s is not under %s", parent, root);
			return -EINVAL;
		}
		parent += rl + 1;
	}
	if (strstr(parent, "..") || !parent[0]) {
		snprintf(err, errlen, "bad cgroup parent '%s'", parent);
		return -EINVAL;
	}
	unsigned want = ctl_mask(buf);
	/* walk from the root down, enabling the controllers at each level */
	snprintf(dir, sizeof(dir), "%s", root);
	for (const char *p = parent; *p;) {
		size_t n = strcspn(p, "/");
		enable_controllers(dir, want);
		if (read_file(dir, "cgroup.subtree_control", buf, sizeof(buf)) == 0)
			want &= ctl_mask(buf);
		if (strlen(dir) + 1 + n >= sizeof(dir)) {
			snprintf(err, errlen, "cgroup parent path too long");
			return -ENAMETOOLONG;
		}
		strcat(dir, "/");
		strncat(dir, p, n);
		if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
			snprintf(err, errlen, "cannot create cgroup %s: %s", dir, strerror(errno));
			return -errno;
		}
		p += n;
		while (*p == '/')
			p++;
	}
	enable_controllers(dir, want);
	int rc = read_file(dir, "cgroup.subtree_control", buf, sizeof(buf));
	if (rc < 0) {
		snprintf(err, errlen, "cannot read %s/cgroup.subtree_control: %s", dir,
		         strerror(-rc));
		return rc;
	}
	cg->controllers = ctl_mask(buf);
	cg->available = true;
	snprintf(cg->parent, sizeof(cg->parent), "%s", dir);
	return 0;
}

int cg_check_limits(const struct cg *cg, const struct vm_limits *l, char *err, size_t errlen)
{
	unsigned need = 0;

	if (!vmdef_limits_any(l))
		return 0;
	if (!cg->available) {
		snprintf(err, errlen, "resource limits need cgroup v2: %s", cg->why);
		return -EOPNOTSUPP;
	}
	if (l->cpu_quota || l->cpu_weight)
		need |= CG_CPU;
	if (l->cpuset[0])
		need |= CG_CPUSET;
	if (l->memory_max)
		need |= CG_MEMORY;
	if (l->io_bps || l->io_iops)
		need |= CG_IO;
	for (unsigned i = 0; i < CG_NR_CTL; i++) {
		if ((need & ~cg->controllers) & (1u << i)) {
			snprintf(err, errlen,
			         "the %s controller is not available for %s (not enabled in its "
			         "cgroup.subtree_control)",
			         ctl_names[i], cg->parent);
			return -EOPNOTSUPP;
		}
	}
	return 0;
}

void cg_vm_dir(const struct cg *cg, const char *name, char *out, size_t outlen)
{
	/* the prefix keeps names like "cpu.max" clear of the interface files */
	snprintf(out, outlen, "%s/vm-%s", cg->parent, name);
}

/* The whole disk a (possibly partition) block device belongs to. */
static dev_t whole_disk(dev_t d)
{
	char path[128], buf[32];
	unsigned ma, mi;

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u", major(d), minor(d));
	if (read_file(path, "partition", buf, sizeof(buf)) < 0)
		return d;
	if (read_file(path, "../dev", buf, sizeof(buf)) < 0 || sscanf(buf, "%u:%u", &ma, &mi) != 2)
		return d;
	return makedev(ma, mi);
}

unsigned cg_disk_devices(const char *const *disks, unsigned nr_disks, dev_t *devs,
                         unsigned max)
{
	unsigned n = 0;

	for (unsigned i = 0; i < nr_disks; i++) {
		char path[PATH_MAX];
		struct stat st;
		if (vmdef_disk_path(disks[i], path, sizeof(path)) < 0 || stat(path, &st) < 0)
			continue;
		dev_t d = S_ISBLK(st.st_mode) ? st.st_rdev : st.st_dev;
		if (major(d) == 0)
			continue; /* tmpfs, overlay ...: no block device to throttle */
		d = whole_disk(d);
		bool seen = false;
		for (unsigned k = 0; k < n; k++)
			seen |= devs[k] == d;
		if (!seen && n < max)
			devs[n++] = d;
	}
	return n;
}

static int set_file(const char *dir, const char *file, const char *val, char *err,
                    size_t errlen)
{
	int rc = write_file(dir, file, val);

	if (rc < 0)
		snprintf(err, errlen, "cannot write '%s' to %s/%s: %s", val, dir, file,
		         strerror(-rc));
	return rc;
}

int cg_vm_setup(const struct cg *cg, const char *name, const struct vm_limits *l,
                const char *const *disks, unsigned nr_disks, char *note, size_t notelen,
                char *err, size_t errlen)
{
	char dir[PATH_MAX], val[128];
	int rc;

	if (note && notelen)
		note[0] = '\0';
	rc = cg_check_limits(cg, l, err, errlen);
	if (rc < 0)
		return rc;
	if (!cg->available) {
		snprintf(err, errlen, "%s", cg->why);
		return -EOPNOTSUPP;
	}
	cg_vm_dir(cg, name, dir, sizeof(dir));
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		rc = -errno;
		snprintf(err, errlen, "cannot create cgroup %s: %s", dir, strerror(errno));
		return rc;
	}
	/* every file is written, set or back to its default, so that a live
	 * change that clears a limit takes effect too */
	if (cg->controllers & CG_CPU) {
		if (l->cpu_quota)
			snprintf(val, sizeof(val), "%llu %d",
			         (unsigned long long)l->cpu_quota * CG_PERIOD_US / 100, CG_PERIOD_US);
		else
			snprintf(val, sizeof(val), "max %d", CG_PERIOD_US);
		if ((rc = set_file(dir, "cpu.max", val, err, errlen)) < 0)
			return rc;
		snprintf(val, sizeof(val), "%u", l->cpu_weight ? l->cpu_weight : 100);
		if ((rc = set_file(dir, "cpu.weight", val, err, errlen)) < 0)
			return rc;
	}
	if (cg->controllers & CG_CPUSET) {
		/* "" gives the parent's CPUs back; the kernel wants at least "\n" */
		if ((rc = set_file(dir, "cpuset.cpus", l->cpuset[0] ? l->cpuset : "\n", err,
		                   errlen)) < 0)
			return rc;
	}
	if (cg->controllers & CG_MEMORY) {
		if (l->memory_max)
			snprintf(val, sizeof(val), "%llu", (unsigned long long)l->memory_max);
		else
			snprintf(val, sizeof(val), "max");
		if ((rc = set_file(dir, "memory.max", val, err, errlen)) < 0)
			return rc;
	}
	if (cg->controllers & CG_IO) {
		dev_t devs[CONFIG_MAX_DISKS];
		unsigned n = cg_disk_devices(disks, nr_disks, devs, CONFIG_MAX_DISKS);
		char bps[24] = "max", iops[24] = "max";
		if (l->io_bps)
			snprintf(bps, sizeof(bps), "%llu", (unsigned long long)l->io_bps);
		if (l->io_iops)
			snprintf(iops, sizeof(iops), "%llu", (unsigned long long)l->io_iops);
		for (unsigned i = 0; i < n; i++) {
			snprintf(val, sizeof(val), "%u:%u rbps=%s wbps=%s riops=%s wiops=%s",
			         major(devs[i]), minor(devs[i]), bps, bps, iops, iops);
			if ((rc = set_file(dir, "io.max", val, err, errlen)) < 0)
				return rc;
		}
		if (n == 0 && (l->io_bps || l->io_iops) && note)
			snprintf(note, notelen,
			         "io limits do not apply: no disk of this VM is on a block device "
			         "(use --disk rate limits of cvisor run instead)");
	}
	return 0;
}

int cg_vm_attach(const struct cg *cg, const char *name, pid_t pid, char *err, size_t errlen)
{
	char dir[PATH_MAX], val[24];

	cg_vm_dir(cg, name, dir, sizeof(dir));
	snprintf(val, sizeof(val), "%d", (int)pid);
	return set_file(dir, "cgroup.procs", val, err, errlen);
}

bool cg_vm_has(const struct cg *cg, const char *name, pid_t pid)
{
	char path[64], buf[512], want[PATH_MAX];

	if (!cg->available)
		return false;
	snprintf(path, sizeof(path), "/proc/%d", (int)pid);
	if (read_file(path, "cgroup", buf, sizeof(buf)) < 0)
		return false;
	/* "0::/cvisor.slice/vm-NAME" (relative to the root of the hierarchy) */
	cg_vm_dir(cg, name, want, sizeof(want));
	const char *rel = strstr(want, "/vm-");
	const char *line = strstr(buf, "0::");
	if (!line || !rel)
		return false;
	line += 3;
	size_t len = strcspn(line, "\n");
	size_t rl = strlen(rel);
	return len >= rl && !strncmp(line + len - rl, rel, rl);
}

int cg_vm_remove(const struct cg *cg, const char *name)
{
	char dir[PATH_MAX];

	if (!cg->available)
		return 0;
	cg_vm_dir(cg, name, dir, sizeof(dir));
	if (rmdir(dir) < 0)
		return -errno;
	return 0;
}

/* The value of key in a "key value" per line file. */
static uint64_t keyed(const char *text, const char *key)
{
	size_t kl = strlen(key);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (!strncmp(p, key, kl) && p[kl] == ' ')
			return strtoull(p + kl + 1, NULL, 10);
	}
	return 0;
}

int cg_vm_usage(const struct cg *cg, const char *name, struct cg_usage *u)
{
	char dir[PATH_MAX], buf[1024];
	int rc;

	memset(u, 0, sizeof(*u));
	if (!cg->available)
		return -EOPNOTSUPP;
	cg_vm_dir(cg, name, dir, sizeof(dir));
	rc = read_file(dir, "cpu.stat", buf, sizeof(buf));
	if (rc < 0)
		return rc;
	u->cpu_usec = keyed(buf, "usage_usec");
	u->throttled_usec = keyed(buf, "throttled_usec");
	u->nr_throttled = keyed(buf, "nr_throttled");
	if (read_file(dir, "memory.current", buf, sizeof(buf)) == 0)
		u->memory_bytes = strtoull(buf, NULL, 10);
	return 0;
}
