/* Snapshot save and restore.
 *
 * state.bin:  magic "CVSNAP\r\n" | u32 format | char version[16] | u64 body_len |
 *             body | u32 crc32(everything before)
 * body:       u32 argc, argc x (u32 len, bytes) | u64 mem_size | u32 cpus |
 *             in-kernel state | cpus x vCPU state | u32 ndev,
 *             ndev x (u32 name_len, name, u32 len, device state)
 * A file from another format or cvisor version, a bad checksum, a truncated
 * file or a device list that does not match the VM is refused before any
 * state reaches KVM or a device.
 *
 * Disks: the option list names them. With disk_overlay, each writable disk's
 * image is frozen with the snapshot and recorded as "path=IMAGE (absolute),
 * format=F,...,overlay=on", so that a restore never writes it (virtio-blk
 * puts a fresh overlay over it); the running VM moves to its own overlay and
 * its options are rewritten to name it (vm_disk_option_update). */
#include "vm/snapshot.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <json-c/json.h>

#include "arch/x86/vcpu_state.h"
#include "virtio/blk.h"
#include "virtio/vsock.h"
#include "util/log.h"
#include "vm/migrate.h"
#include "vm/vm_internal.h"

#define MAGIC "CVSNAP\r\n"
#define FORMAT 1
#define VERSION "cvisor 0.1.0"
#define HDR_LEN (8 + 4 + 16 + 8)

static int write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t w = write(fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -errno;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Devices in snapshot order, each with its save/load. */
struct dev_ref {
	char name[32];
	int kind; /* 0 legacy device_ops, 1 virtio-pci */
	const struct device_ops *ops;
	void *dev;
	struct virtio_pci *vp;
};

static int dev_list(struct vm *vm, struct dev_ref *d, int max)
{
	int n = 0;
	const struct {
		const char *name;
		const struct device_ops *ops;
		void *dev;
	} legacy[] = {
		{ "uart", &uart_ops, vm->uart },
		{ "rtc", &rtc_ops, vm->rtc },
		{ "i8042", &i8042_ops, vm->kbd },
		{ "acpi-pm", &acpi_pm_ops, vm->pm },
	};
	for (size_t i = 0; i < sizeof(legacy) / sizeof(legacy[0]) && n < max; i++, n++) {
		d[n] = (struct dev_ref){ .kind = 0, .ops = legacy[i].ops, .dev = legacy[i].dev };
		snprintf(d[n].name, sizeof(d[n].name), "%s", legacy[i].name);
	}
	for (unsigned i = 0; i < vm->nr_vdevs && n < max; i++, n++) {
		d[n] = (struct dev_ref){ .kind = 1, .vp = vm->vdevs[i] };
		snprintf(d[n].name, sizeof(d[n].name), "pci%u:%s", vm->vdevs[i]->pdev.slot,
		         vm->vdevs[i]->vdev.ops->name);
	}
	return n;
}

/* Options taking no separate value (flags, or written as --opt=value). */
static bool arg_is_flag(const char *a)
{
	return strchr(a, '=') || !strcmp(a, "--rng") || !strcmp(a, "--balloon") ||
	       !strcmp(a, "--verbose") || !strcmp(a, "-v") || strncmp(a, "--", 2);
}

/* Length of option name a (up to '='). */
static size_t arg_name_len(const char *a)
{
	const char *eq = strchr(a, '=');
	return eq ? (size_t)(eq - a) : strlen(a);
}

static bool arg_named(const char *a, const char *name)
{
	return arg_name_len(a) == strlen(name) && !strncmp(a, name, strlen(name));
}

bool snapshot_arg_is_restore(int argc, char **argv, int *i)
{
	if (!arg_named(argv[*i], "--restore") && !arg_named(argv[*i], "--incoming"))
		return false;
	if (!strchr(argv[*i], '=') && *i + 1 < argc)
		(*i)++;
	return true;
}

int snapshot_merge_args(const struct snapshot_file *f, int argc, char **argv, int *out_argc,
                        char ***out_argv)
{
	/* list options given now replace the saved ones entirely; a migration's
	 * destination never inherits the source's own sockets */
	static const char *const lists[] = { "--disk", "--net", NULL };
	bool incoming = false;
	for (int k = 1; k < argc; k++)
		incoming |= arg_named(argv[k], "--incoming");
	char **v = calloc((size_t)(f->argc + argc + 1), sizeof(char *));
	int n = 0;

	if (!v)
		return -ENOMEM;
	v[n++] = argv[0];
	for (int i = 1; i < f->argc; i++) {
		const char *a = f->argv[i];
		bool drop = false;
		for (int l = 0; lists[l]; l++) {
			if (!arg_named(a, lists[l]))
				continue;
			for (int k = 1; k < argc; k++)
				drop |= arg_named(argv[k], lists[l]);
		}
		if (incoming && (arg_named(a, "--api-socket") || arg_named(a, "--serial")))
			drop = true;
		if (drop) {
			if (!arg_is_flag(a) && i + 1 < f->argc)
				i++;
			continue;
		}
		v[n++] = f->argv[i];
	}
	/* then today's options (with --restore): scalar ones override by coming last */
	for (int i = 1; i < argc; i++)
		v[n++] = argv[i];
	*out_argc = n;
	*out_argv = v;
	return 0;
}

static void put_str(struct sbuf *b, const char *s)
{
	uint32_t l = (uint32_t)strlen(s);
	sbuf_put_u32(b, l);
	sbuf_put(b, s, l);
}

void vm_drain_io(struct vm *vm)
{
	for (int tries = 0; tries < 500; tries++) {
		unsigned busy = 0;
		for (unsigned i = 0; i < CONFIG_MAX_DISKS; i++)
			busy += vm->disks[i] ? virtio_blk_inflight(vm->disks[i]) : 0;
		if (!busy)
			return;
		evloop_run_once(vm->loop, 10);
	}
	log_warn("snapshot: disk requests still in flight; they are recorded for resubmission");
}

static int save_memory(struct vm *vm, const char *path, char *err, size_t errlen)
{
	static const uint8_t zero[4096];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int rc = 0;

	if (fd < 0 || ftruncate(fd, (off_t)vm->mem.size) < 0) {
		rc = -errno;
		snprintf(err, errlen, "snapshot: %s: %s", path, strerror(errno));
		goto out;
	}
	/* only non-zero pages are written: the rest stays a hole */
	for (uint64_t off = 0; off < vm->mem.size;) {
		uint64_t len = 0;
		while (off + len < vm->mem.size && len < (8ULL << 20) &&
		       memcmp(vm->mem.base + off + len, zero, 4096))
			len += 4096;
		if (len) {
			ssize_t w = pwrite(fd, vm->mem.base + off, len, (off_t)off);
			if (w != (ssize_t)len) {
				rc = w < 0 ? -errno : -EIO;
				snprintf(err, errlen, "snapshot: writing guest memory: %s", strerror(-rc));
				goto out;
			}
			off += len;
		} else {
			off += 4096;
		}
	}
	if (fsync(fd) < 0) {
		rc = -errno;
		snprintf(err, errlen, "snapshot: fsync: %s", strerror(errno));
	}
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

/* The options as given, minus --restore/--incoming (the snapshot is the
 * source); sub (NULL, or one entry per option) replaces options. */
static void put_args(struct vm *vm, struct sbuf *b, char *const *sub)
{
	int nargs = 0;
	for (int i = 0; i < vm->cfg->argc; i++)
		nargs += !snapshot_arg_is_restore(vm->cfg->argc, vm->cfg->argv, &i);
	sbuf_put_u32(b, (uint32_t)nargs);
	for (int i = 0; i < vm->cfg->argc; i++) {
		int j = i;
		if (!snapshot_arg_is_restore(vm->cfg->argc, vm->cfg->argv, &j))
			put_str(b, sub && sub[i] ? sub[i] : vm->cfg->argv[i]);
		i = j;
	}
}

void snapshot_put_args(struct vm *vm, struct sbuf *b)
{
	put_args(vm, b, NULL);
}

/* ---- disk options that change while the VM runs (overlays) ---- */

/* Index of the option holding --disk number i's value, and whether it is
 * written "--disk=VALUE"; -1 when the options do not hold it. */
static int disk_arg(const struct vm_config *cfg, unsigned i, bool *eq)
{
	for (int k = 0; k < cfg->argc; k++) {
		*eq = !strncmp(cfg->argv[k], "--disk=", 7);
		if (cfg->argv[k] == cfg->disks[i] || (*eq && cfg->argv[k] + 7 == cfg->disks[i]))
			return k;
	}
	return -1;
}

/* The --disk value for disk i as it is now: its options, on the image the
 * device runs on (absolute path, format named), overlay= as asked. */
static int disk_option_now(struct vm *vm, unsigned i, bool overlay, char *buf, size_t len,
                           char *err, size_t errlen)
{
	struct virtio_blk_opts *o = malloc(sizeof(*o));
	char real[PATH_MAX];
	int rc;

	if (!o) {
		snprintf(err, errlen, "snapshot: out of memory");
		return -ENOMEM;
	}
	rc = virtio_blk_parse_opts(o, vm->cfg->disks[i], err, errlen);
	if (rc == 0 && !realpath(virtio_blk_path(vm->disks[i]), real)) {
		rc = -errno;
		snprintf(err, errlen, "disk %s: %s", virtio_blk_path(vm->disks[i]), strerror(-rc));
	}
	if (rc == 0) {
		snprintf(o->path, sizeof(o->path), "%s", real);
		o->format_given = true; /* never probed again */
		o->format = strcmp(virtio_blk_format(vm->disks[i]), "qcow2") ? VIRTIO_BLK_FORMAT_RAW
		                                                                : VIRTIO_BLK_FORMAT_QCOW2;
		o->overlay = overlay;
		rc = virtio_blk_format_opts(o, buf, len);
		if (rc < 0)
			snprintf(err, errlen, "disk %s: its option is too long", real);
	}
	free(o);
	return rc;
}

/* Our copies of cvisor run's options once a disk moved to an overlay. */
static char **own_argv;
static char *own_disk[CONFIG_MAX_DISKS];

int vm_disk_option_update(struct vm *vm, unsigned i, char *err, size_t errlen)
{
	/* the configuration belongs to `cvisor run` and outlives every VM built
	 * from it: a reboot, a later snapshot or a migration must find the disk
	 * where it is now, not on the frozen image */
	struct vm_config *cfg = (struct vm_config *)vm->cfg;
	char *buf = malloc(PATH_MAX + 256), *s;
	bool eq = false;
	int rc, k;

	if (!buf) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	rc = disk_option_now(vm, i, false, buf + 7, PATH_MAX + 256 - 7, err, errlen);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	k = disk_arg(cfg, i, &eq);
	if (eq)
		memcpy(buf, "--disk=", 7);
	s = eq ? buf : strdup(buf + 7);
	if (!eq)
		free(buf);
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (k >= 0 && cfg->argv != own_argv) {
		char **v = calloc((size_t)cfg->argc + 1, sizeof(char *));
		if (!v) {
			free(s);
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		memcpy(v, cfg->argv, (size_t)cfg->argc * sizeof(char *));
		free(own_argv);
		own_argv = v;
		cfg->argv = v;
	}
	if (k >= 0)
		cfg->argv[k] = s;
	cfg->disks[i] = eq ? s + 7 : s;
	free(own_disk[i]);
	own_disk[i] = s;
	return 0;
}

/* Whether a live migration is under way (its options went out already). */
static bool migrating(struct vm *vm)
{
	struct json_object *o = json_object_new_object(), *m, *st;
	bool on = false;

	if (!o)
		return vm->migration != NULL;
	vm_migrate_info(vm, o);
	if (json_object_object_get_ex(o, "migration", &m) &&
	    json_object_object_get_ex(m, "state", &st))
		on = !strcmp(json_object_get_string(st), "active");
	json_object_put(o);
	return on;
}

static int build_state(struct vm *vm, struct sbuf *out, char *const *sub, char *err,
                       size_t errlen);

int snapshot_build_state(struct vm *vm, struct sbuf *out, char *err, size_t errlen)
{
	return build_state(vm, out, NULL, err, errlen);
}

static int build_state(struct vm *vm, struct sbuf *out, char *const *sub, char *err,
                       size_t errlen)
{
	struct sbuf b = { 0 };
	struct dev_ref devs[64];
	int rc;

	/* header; body length patched below */
	uint8_t hdr[HDR_LEN] = { 0 };
	memcpy(hdr, MAGIC, 8);
	hdr[8] = FORMAT;
	memcpy(hdr + 12, VERSION, sizeof(VERSION) - 1);
	sbuf_put(&b, hdr, sizeof(hdr));
	put_args(vm, &b, sub);
	sbuf_put_u64(&b, vm->mem.size);
	sbuf_put_u32(&b, vm->cfg->cpus);
	struct kvm_clock_data clk;
	if ((rc = vm_clock_read(vm, &clk)) || (rc = vm_state_save(&vm->kvm, &b, &clk))) {
		snprintf(err, errlen, "snapshot: in-kernel device state: %s", strerror(-rc));
		goto out;
	}
	for (unsigned i = 0; i < vm->cfg->cpus; i++) {
		if ((rc = vcpu_state_save(&vm->kvm, vm->vcpus[i].fd, &b))) {
			snprintf(err, errlen, "snapshot: vCPU %u state: %s", i, strerror(-rc));
			goto out;
		}
	}
	int n = dev_list(vm, devs, 64);
	sbuf_put_u32(&b, (uint32_t)n);
	for (int i = 0; i < n; i++) {
		put_str(&b, devs[i].name);
		size_t at = b.len;
		sbuf_put_u32(&b, 0); /* length, patched */
		if (devs[i].kind == 0) {
			devs[i].ops->save(devs[i].dev, &b);
		} else {
			pci_dev_save(&vm->pci, &devs[i].vp->pdev, &b);
			virtio_pci_save(devs[i].vp, &b);
		}
		if (!b.err) {
			uint32_t l = (uint32_t)(b.len - at - 4);
			memcpy(b.data + at, &l, 4);
		}
	}
	if (b.err) {
		rc = b.err;
		snprintf(err, errlen, "snapshot: out of memory");
		goto out;
	}
	uint64_t body = b.len - HDR_LEN;
	memcpy(b.data + 28, &body, 8);
	uint32_t crc = (uint32_t)crc32(0L, b.data, (uInt)b.len);
	sbuf_put_u32(&b, crc);
	rc = b.err;
	*out = b;
	return rc;
out:
	sbuf_free(&b);
	return rc;
}

/* disk_overlay: the recorded --disk options of the disks about to switch
 * (their frozen image, overlay=on), indexed like the VM's options. */
static int overlay_args(struct vm *vm, char **sub, char *err, size_t errlen)
{
	for (unsigned i = 0; i < vm->cfg->nr_disks; i++) {
		bool eq;
		int k = disk_arg(vm->cfg, i, &eq), rc;
		size_t len = PATH_MAX + 256;

		if (!vm->disks[i] || virtio_blk_readonly(vm->disks[i]))
			continue;
		if (k < 0) {
			snprintf(err, errlen, "snapshot: disk %u is not among the VM's options", i);
			return -EINVAL;
		}
		sub[k] = malloc(len);
		if (!sub[k]) {
			snprintf(err, errlen, "snapshot: out of memory");
			return -ENOMEM;
		}
		if (eq)
			memcpy(sub[k], "--disk=", 7);
		if ((rc = disk_option_now(vm, i, true, sub[k] + (eq ? 7 : 0), len - (eq ? 7 : 0),
		                          err, errlen)) < 0)
			return rc;
	}
	return 0;
}

int vm_snapshot_save(struct vm *vm, const char *dir, bool disk_overlay, char *err,
                     size_t errlen)
{
	struct sbuf b = { 0 };
	char path[4096], tmp[4096], **sub = NULL;
	bool prepared[CONFIG_MAX_DISKS] = { false }, quiesced = false;
	int rc, fd = -1;

	if (disk_overlay && migrating(vm)) {
		snprintf(err, errlen, "snapshot: a migration is running (its destination opens the "
		         "disks as they are)");
		return -EBUSY;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "snapshot: cannot create %s: %s", dir, strerror(errno));
		return -errno;
	}
	vm_drain_io(vm);
	if (disk_overlay) {
		/* every writable disk: its image is frozen as it is now (the memory
		 * image's disk state) and the VM goes on on a new overlay; all switch,
		 * once the snapshot is written, or none does */
		sub = calloc((size_t)vm->cfg->argc + 1, sizeof(char *));
		if (!sub) {
			snprintf(err, errlen, "snapshot: out of memory");
			return -ENOMEM;
		}
		if ((rc = overlay_args(vm, sub, err, errlen)) < 0)
			goto out;
		for (unsigned i = 0; i < vm->cfg->nr_disks; i++) {
			if (!vm->disks[i] || virtio_blk_readonly(vm->disks[i]))
				continue;
			if ((rc = virtio_blk_overlay_prepare(vm->disks[i], err, errlen)) < 0)
				goto out;
			prepared[i] = true;
		}
	}
	virtio_vsock_quiesce(vm->vsock); /* vhost: no more writes, its ring indices saved */
	quiesced = true;
	if ((rc = build_state(vm, &b, sub, err, errlen)))
		goto out;
	snprintf(path, sizeof(path), "%s/%s", dir, SNAPSHOT_MEMORY);
	if ((rc = save_memory(vm, path, err, errlen)))
		goto out;
	/* state last, through a rename: a state file only exists for a complete snapshot */
	snprintf(tmp, sizeof(tmp), "%s/%s.tmp", dir, SNAPSHOT_STATE);
	snprintf(path, sizeof(path), "%s/%s", dir, SNAPSHOT_STATE);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || (rc = write_all(fd, b.data, b.len)) || fsync(fd) < 0 || rename(tmp, path) < 0) {
		rc = rc ? rc : -errno;
		snprintf(err, errlen, "snapshot: writing %s: %s", path, strerror(-rc));
		if (fd >= 0)
			unlink(tmp);
		goto out;
	}
	rc = 0;
	for (unsigned i = 0; i < vm->cfg->nr_disks; i++) {
		char why[256];
		if (!prepared[i])
			continue;
		virtio_blk_overlay_commit(vm->disks[i]);
		prepared[i] = false;
		if (vm_disk_option_update(vm, i, why, sizeof(why)) < 0)
			log_warn("disk %u: %s (a reboot would not find its overlay)", i, why);
	}
out:
	if (quiesced)
		virtio_vsock_unquiesce(vm->vsock);
	for (unsigned i = 0; i < vm->cfg->nr_disks; i++) {
		if (prepared[i])
			virtio_blk_overlay_abort(vm->disks[i]);
	}
	for (int k = 0; sub && k < vm->cfg->argc; k++)
		free(sub[k]);
	free(sub);
	if (fd >= 0)
		close(fd);
	sbuf_free(&b);
	return rc;
}

int snapshot_parse(struct snapshot_file *f, uint8_t *data, size_t len, char *err,
                   size_t errlen)
{
	const char *what = "the snapshot";

	memset(f, 0, sizeof(*f));
	f->data = data; /* owned from here on */
	f->len = len;
	if (len < HDR_LEN + 4 || memcmp(f->data, MAGIC, 8)) {
		snprintf(err, errlen, "%s is truncated or not a cvisor snapshot", what);
		goto fail;
	}
	uint32_t format;
	uint64_t body;
	memcpy(&format, f->data + 8, 4);
	memcpy(&body, f->data + 28, 8);
	if (format != FORMAT || strncmp((char *)f->data + 12, VERSION, 16)) {
		/* the version string as read, shown printable only: one line, no control bytes */
		char ver[17];
		for (int i = 0; i < 16; i++) {
			uint8_t c = f->data[12 + i];
			ver[i] = c >= 0x20 && c < 0x7f ? (char)c : c ? '?' : 0;
		}
		ver[16] = 0;
		snprintf(err, errlen, "%s comes from another cvisor version (%s, format %u); this is %s, "
		         "format %d", what, ver, format, VERSION, FORMAT);
		goto fail;
	}
	if (body != f->len - HDR_LEN - 4) {
		snprintf(err, errlen, "%s is truncated", what);
		goto fail;
	}
	uint32_t crc;
	memcpy(&crc, f->data + f->len - 4, 4);
	if (crc != (uint32_t)crc32(0L, f->data, (uInt)(f->len - 4))) {
		snprintf(err, errlen, "%s fails its checksum (damaged or tampered with)", what);
		goto fail;
	}
	sbuf_reader(&f->body, f->data + HDR_LEN, body);
	uint32_t argc = sbuf_get_u32(&f->body);
	if (f->body.err || argc > 4096) {
		snprintf(err, errlen, "%s: bad option list", what);
		goto fail;
	}
	f->argv = calloc(argc + 1, sizeof(char *));
	if (!f->argv)
		goto fail;
	/* strings are copied out so they can be NUL-terminated */
	for (uint32_t i = 0; i < argc; i++) {
		uint32_t l = sbuf_get_u32(&f->body);
		if (f->body.err || l > f->body.len - f->body.pos) {
			snprintf(err, errlen, "%s: bad option list", what);
			goto fail;
		}
		f->argv[i] = strndup((char *)f->body.data + f->body.pos, l);
		f->body.pos += l;
		if (!f->argv[i])
			goto fail;
		f->argc = (int)i + 1;
	}
	f->mem_size = sbuf_get_u64(&f->body);
	f->cpus = sbuf_get_u32(&f->body);
	if (f->body.err) {
		snprintf(err, errlen, "%s is truncated", what);
		goto fail;
	}
	return 0;
fail:
	snapshot_close(f);
	return -EINVAL;
}

int snapshot_open(const char *dir, struct snapshot_file *f, char *err, size_t errlen)
{
	char path[4096], why[400];
	struct stat st;
	uint8_t *data = NULL;
	int fd, rc = -EINVAL;

	memset(f, 0, sizeof(*f));
	snprintf(path, sizeof(path), "%s/%s", dir, SNAPSHOT_STATE);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "--restore: %s: %s", path, strerror(errno));
		goto fail;
	}
	if (st.st_size < HDR_LEN + 4 || st.st_size > (256 << 20)) {
		snprintf(err, errlen, "--restore: %s is truncated or not a cvisor snapshot", path);
		goto fail;
	}
	data = malloc((size_t)st.st_size);
	if (!data || pread(fd, data, (size_t)st.st_size, 0) != st.st_size) {
		snprintf(err, errlen, "--restore: cannot read %s", path);
		free(data);
		goto fail;
	}
	if (snapshot_parse(f, data, (size_t)st.st_size, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "--restore: %s: %s", path, why);
		goto fail;
	}
	snprintf(path, sizeof(path), "%s/%s", dir, SNAPSHOT_MEMORY);
	if (stat(path, &st) < 0 || (uint64_t)st.st_size != f->mem_size) {
		snprintf(err, errlen, "--restore: %s is missing or not %llu bytes", path,
		         (unsigned long long)f->mem_size);
		snapshot_close(f);
		goto fail;
	}
	close(fd);
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	return rc;
}

void snapshot_close(struct snapshot_file *f)
{
	if (f->argv) {
		for (int i = 0; i < f->argc; i++)
			free(f->argv[i]);
		free(f->argv);
	}
	free(f->data);
	memset(f, 0, sizeof(*f));
}

int vm_snapshot_load(struct vm *vm, struct snapshot_file *f, char *err, size_t errlen)
{
	struct sbuf *in = &f->body;
	struct dev_ref devs[64];
	int rc;
	/* a migration's destination loads the same state from the stream */
	const char *opt = vm->cfg->incoming ? "--incoming" : "--restore";
	const char *it = vm->cfg->incoming ? "the source's VM" : "the snapshot";

	if (f->cpus != vm->cfg->cpus || f->mem_size != vm->mem.size) {
		snprintf(err, errlen, "%s: %s has %u vCPUs and %llu MiB; this VM %u and %llu", opt,
		         it, f->cpus, (unsigned long long)(f->mem_size >> 20), vm->cfg->cpus,
		         (unsigned long long)(vm->mem.size >> 20));
		return -EINVAL;
	}
	if ((rc = vm_state_load(&vm->kvm, in, err, errlen)))
		return rc;
	for (unsigned i = 0; i < vm->cfg->cpus; i++) {
		if ((rc = vcpu_state_load(&vm->kvm, vm->vcpus[i].fd, in, err, errlen)))
			return rc;
	}
	int n = dev_list(vm, devs, 64);
	uint32_t saved = sbuf_get_u32(in);
	if (in->err || saved != (uint32_t)n) {
		snprintf(err, errlen, "%s: %s has %u devices, this VM %d (same options?)", opt,
		         it, saved, n);
		return -EINVAL;
	}
	for (int i = 0; i < n; i++) {
		uint32_t l = sbuf_get_u32(in);
		if (in->err || l >= sizeof(devs[i].name) || l > in->len - in->pos ||
		    memcmp(in->data + in->pos, devs[i].name, l) || devs[i].name[l]) {
			snprintf(err, errlen, "%s: device %d of %s is not %s", opt, i, it,
			         devs[i].name);
			return -EINVAL;
		}
		in->pos += l;
		uint32_t len = sbuf_get_u32(in);
		if (in->err || len > in->len - in->pos) {
			snprintf(err, errlen, "%s: device %s: truncated state", opt, devs[i].name);
			return -EINVAL;
		}
		struct sbuf d;
		sbuf_reader(&d, in->data + in->pos, len);
		in->pos += len;
		if (devs[i].kind == 0) {
			rc = devs[i].ops->load(devs[i].dev, &d);
		} else {
			struct virtio_pci *vp = devs[i].vp;
			rc = pci_dev_load(&vm->pci, &vp->pdev, &d);
			if (!rc)
				rc = virtio_pci_load(vp, &d); /* restarts the device if it was running */
		}
		if (rc || d.pos != d.len) {
			snprintf(err, errlen, "%s: device %s: its saved state does not load", opt,
			         devs[i].name);
			return -EINVAL;
		}
	}
	return 0;
}
