/* The VMM's side of the per-VM API (src/api/api.h): each callback runs on
 * the main thread, inside the event loop, with the VM running or paused. */
#include "vm/vm_api.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "api/api.h"
#include "state/sbuf.h"
#include "util/log.h"
#include "util/ratelimit.h"
#include "virtio/balloon.h"
#include "virtio/blk.h"
#include "virtio/net.h"
#include "vm/migrate.h"
#include "vm/snapshot.h"
#include "vm/vm.h"
#include "vm/vm_internal.h"

static int api_info(void *opaque, struct json_object *out, char *err, size_t errlen)
{
	struct vm *vm = opaque;
	struct json_object *devs = json_object_new_array(), *cfg = api_config_json(vm->cfg);
	char id[16];
	(void)err;
	(void)errlen;

	json_object_object_add(out, "state", json_object_new_string(vm_is_paused(vm) ? "paused" : "running"));
	json_object_object_add(out, "name", json_object_new_string(vm->cfg->name));
	json_object_object_add(out, "uptime_ms", json_object_new_int64((int64_t)(vm_uptime_ns(vm) / 1000000)));
	json_object_object_add(out, "vcpus", json_object_new_int((int)vm->cfg->cpus));
	json_object_object_add(out, "memory_mib", json_object_new_int64((int64_t)(vm->mem.size >> 20)));
	if (cfg)
		json_object_object_add(out, "config", cfg);
	for (unsigned i = 0; devs && i < vm->cfg->nr_disks; i++) {
		struct json_object *d = json_object_new_object();
		snprintf(id, sizeof(id), "%u", i);
		json_object_object_add(d, "type", json_object_new_string("disk"));
		json_object_object_add(d, "id", json_object_new_string(id));
		json_object_object_add(d, "option", json_object_new_string(vm->cfg->disks[i]));
		if (vm->disks[i])
			json_object_object_add(d, "sectors",
			                       json_object_new_int64((int64_t)virtio_blk_capacity(vm->disks[i])));
		json_object_array_add(devs, d);
	}
	for (unsigned i = 0; devs && i < vm->nr_nets; i++) {
		struct json_object *d = json_object_new_object();
		uint8_t mac[6];
		char macs[18];
		virtio_net_get_mac(vm->nets[i], mac);
		snprintf(macs, sizeof(macs), "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2],
		         mac[3], mac[4], mac[5]);
		snprintf(id, sizeof(id), "%u", i);
		json_object_object_add(d, "type", json_object_new_string("net"));
		json_object_object_add(d, "id", json_object_new_string(id));
		json_object_object_add(d, "option", json_object_new_string(vm->cfg->nets[i]));
		json_object_object_add(d, "mac", json_object_new_string(macs));
		json_object_array_add(devs, d);
	}
	if (devs && vm->balloon) {
		struct json_object *d = json_object_new_object();
		json_object_object_add(d, "type", json_object_new_string("balloon"));
		json_object_object_add(d, "id", json_object_new_string("0"));
		json_object_object_add(d, "target_mib",
		                       json_object_new_int64((int64_t)(virtio_balloon_target(vm->balloon) >> 20)));
		json_object_object_add(d, "actual_mib",
		                       json_object_new_int64((int64_t)(virtio_balloon_actual(vm->balloon) >> 20)));
		json_object_array_add(devs, d);
	}
	const struct {
		bool on;
		const char *type;
	} simple[] = { { vm->rng != NULL, "rng" }, { vm->vcon != NULL, "console" },
		       { vm->vsock != NULL, "vsock" } };
	for (size_t i = 0; devs && i < sizeof(simple) / sizeof(simple[0]); i++) {
		if (!simple[i].on)
			continue;
		struct json_object *d = json_object_new_object();
		json_object_object_add(d, "type", json_object_new_string(simple[i].type));
		json_object_object_add(d, "id", json_object_new_string("0"));
		json_object_array_add(devs, d);
	}
	if (devs)
		json_object_object_add(out, "devices", devs);
	vm_migrate_info(vm, out);
	return 0;
}

static int api_pause(void *opaque, char *err, size_t errlen)
{
	int rc = vm_pause(opaque);
	if (rc == -EALREADY)
		snprintf(err, errlen, "the VM is already paused");
	return rc;
}

static int api_resume(void *opaque, char *err, size_t errlen)
{
	if (vm_migrate_handed_over(opaque)) {
		snprintf(err, errlen, "the guest was migrated: it runs on the destination, not here");
		return -EBUSY;
	}
	int rc = vm_resume(opaque);
	if (rc == -EALREADY)
		snprintf(err, errlen, "the VM is not paused");
	return rc;
}

static int api_shutdown(void *opaque, char *err, size_t errlen)
{
	if (vm_is_paused(opaque)) {
		snprintf(err, errlen, "the VM is paused: resume it so the guest can shut down");
		return -EBUSY;
	}
	vm_power_button(opaque);
	return 0;
}

static int api_stop(void *opaque, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	vm_request_stop(opaque);
	return 0;
}

static int api_balloon(void *opaque, uint64_t target_mib, char *err, size_t errlen)
{
	struct vm *vm = opaque;
	if (!vm->balloon) {
		snprintf(err, errlen, "this VM has no balloon device (start it with --balloon)");
		return -ENODEV;
	}
	if (target_mib > (vm->mem.size >> 20)) {
		snprintf(err, errlen, "target_mib %llu is more than the guest's %llu MiB",
		         (unsigned long long)target_mib, (unsigned long long)(vm->mem.size >> 20));
		return -ERANGE;
	}
	return virtio_balloon_set_target(vm->balloon, target_mib << 20);
}

static int api_metrics(void *opaque, struct sbuf *text)
{
	struct vm *vm = opaque;
	char id[16];

	vm_metrics(vm, text);
	if (vm->nr_nets) {
		static const char *const names[] = { "rx_bytes", "rx_packets", "rx_drops", "rx_errors",
			                             "tx_bytes", "tx_packets", "tx_drops", "tx_errors",
			                             "rx_throttled", "tx_throttled" };
		api_prom_family(text, "cvisor_net_total", "counter",
		                "Network card counters (bytes, packets, drops, errors, throttling).");
		for (unsigned i = 0; i < vm->nr_nets; i++) {
			struct virtio_net_stats st;
			virtio_net_get_stats(vm->nets[i], &st);
			const uint64_t v[] = { st.rx_bytes, st.rx_packets, st.rx_drops, st.rx_errors,
				               st.tx_bytes, st.tx_packets, st.tx_drops, st.tx_errors,
				               st.rx_throttled, st.tx_throttled };
			snprintf(id, sizeof(id), "%u", i);
			for (size_t k = 0; k < sizeof(v) / sizeof(v[0]); k++) {
				const char *labels[] = { "net", id, "counter", names[k], NULL };
				api_prom_sample(text, "cvisor_net_total", labels, v[k]);
			}
		}
	}
	if (vm->cfg->nr_disks) {
		api_prom_family(text, "cvisor_disk_total", "counter",
		                "Disk requests taken, their bytes, and waits for the rate limiter.");
		for (unsigned i = 0; i < vm->cfg->nr_disks; i++) {
			struct virtio_blk_stats st;
			if (!vm->disks[i])
				continue;
			virtio_blk_get_stats(vm->disks[i], &st);
			snprintf(id, sizeof(id), "%u", i);
			const char *o[] = { "disk", id, "counter", "ops", NULL };
			const char *b[] = { "disk", id, "counter", "bytes", NULL };
			const char *t[] = { "disk", id, "counter", "throttled", NULL };
			api_prom_sample(text, "cvisor_disk_total", o, st.ops);
			api_prom_sample(text, "cvisor_disk_total", b, st.bytes);
			api_prom_sample(text, "cvisor_disk_total", t, st.throttled);
		}
	}
	if (vm->balloon) {
		api_prom_family(text, "cvisor_balloon_bytes", "gauge",
		                "Balloon size: target asked of the guest, actual given back.");
		const char *t[] = { "kind", "target", NULL }, *a[] = { "kind", "actual", NULL };
		api_prom_sample(text, "cvisor_balloon_bytes", t, virtio_balloon_target(vm->balloon));
		api_prom_sample(text, "cvisor_balloon_bytes", a, virtio_balloon_actual(vm->balloon));
	}
	return text->err;
}

static int api_snapshot(void *opaque, const char *path, bool disk_overlay, char *err,
                        size_t errlen)
{
	struct vm *vm = opaque;
	bool was_paused = vm_is_paused(vm);
	uint64_t t0 = ratelimit_now_ns();

	if (!was_paused)
		vm_pause(vm);
	int rc = vm_snapshot_save(vm, path, disk_overlay, err, errlen);
	if (!was_paused)
		vm_resume(vm);
	if (!rc)
		log_info("snapshot written to %s in %.1f ms", path, (ratelimit_now_ns() - t0) / 1e6);
	return rc;
}

/* Device ids are the option's index among its kind: "0", "1" ... */
static int dev_index(const char *id, unsigned n)
{
	char *end;
	unsigned long i = strtoul(id, &end, 10);
	return *id && !*end && i < n ? (int)i : -1;
}

static int api_disk_limit(void *opaque, const char *id, const struct api_limits *l, char *err,
                          size_t errlen)
{
	struct vm *vm = opaque;
	int i = dev_index(id, vm->cfg->nr_disks);
	if (i < 0 || !vm->disks[i]) {
		snprintf(err, errlen, "no disk '%s' (ids are 0..%u)", id, vm->cfg->nr_disks - 1);
		return -ENOENT;
	}
	return virtio_blk_set_limits(vm->disks[i], l->bps == API_KEEP ? UINT64_MAX : l->bps,
	                             l->ops == API_KEEP ? UINT64_MAX : l->ops);
}

static int api_net_limit(void *opaque, const char *id, const struct api_limits *l, char *err,
                         size_t errlen)
{
	struct vm *vm = opaque;
	int i = dev_index(id, vm->nr_nets);
	if (i < 0) {
		snprintf(err, errlen, "no network card '%s'", id);
		return -ENOENT;
	}
	return virtio_net_set_limits(vm->nets[i], l->bps == API_KEEP ? UINT64_MAX : l->bps,
	                             l->ops == API_KEEP ? UINT64_MAX : l->ops);
}

static int api_migrate(void *opaque, const struct api_migrate *m, char *err, size_t errlen)
{
	struct migrate_params p = {
		.to = m->to,
		.key_file = m->key_file,
		.compress = m->compress && !strcmp(m->compress, "zstd"),
		.max_bandwidth_mbps = m->max_bandwidth_mbps,
		.max_downtime_ms = m->max_downtime_ms,
		.postcopy = m->postcopy,
	};
	return vm_migrate_start(opaque, &p, err, errlen);
}

static int api_migrate_cancel(void *opaque, char *err, size_t errlen)
{
	int rc = vm_migrate_cancel(opaque);
	if (rc == -EALREADY)
		snprintf(err, errlen, "no migration is running");
	else if (rc == -EPERM)
		snprintf(err, errlen, "a post-copy migration cannot be cancelled after the switch-over: "
		                      "the guest runs on the destination");
	return rc;
}

void vm_api_backend(struct vm *vm, struct api_backend *b)
{
	*b = (struct api_backend){
		.opaque = vm,
		.info = api_info,
		.pause = api_pause,
		.resume = api_resume,
		.shutdown = api_shutdown,
		.stop = api_stop,
		.balloon = api_balloon,
		.metrics = api_metrics,
		.snapshot = api_snapshot,
		.migrate = api_migrate,
		.disk_limit = api_disk_limit,
		.net_limit = api_net_limit,
		.migrate_cancel = api_migrate_cancel,
	};
}
