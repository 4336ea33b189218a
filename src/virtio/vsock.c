/* vhost-vsock backend (linux/vhost.h). The rx (0) and tx (1) queues belong to
 * the kernel once the driver is ready: it gets the guest memory map, the ring
 * addresses, the transport's kick eventfds and the MSI-X irqfds. The event
 * queue (2) stays here; its buffers are only used to announce a transport
 * reset (after migration), so it is left alone. */
#include "virtio/vsock.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/vhost.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "util/log.h"
#include "util/size.h"

#define VSOCK_F_SEQPACKET 1

struct virtio_vsock {
	int fd;
	uint64_t cid;
	uint64_t vhost_features;
	const struct guest_mem *mem;
	struct virtio_dev *vdev;
	bool running;
};

int virtio_vsock_parse(const char *opts, uint64_t *cid, char *err, size_t errlen)
{
	if (!opts || strncmp(opts, "cid=", 4) || size_parse_u64(opts + 4, cid) < 0) {
		snprintf(err, errlen, "--vsock: '%s' is not cid=N", opts ? opts : "");
		return -EINVAL;
	}
	if (*cid < 3 || *cid > 0xffffffffULL) {
		snprintf(err, errlen, "--vsock: cid %llu is reserved or too large (use 3..4294967295)",
		         (unsigned long long)*cid);
		return -EINVAL;
	}
	return 0;
}

int virtio_vsock_create(uint64_t cid, const struct guest_mem *mem, struct virtio_vsock **out,
                        char *err, size_t errlen)
{
	struct virtio_vsock *v = calloc(1, sizeof(*v));
	int rc;

	if (!v)
		return -ENOMEM;
	v->cid = cid;
	v->mem = mem;
	v->fd = open(VHOST_VSOCK_DEVICE, O_RDWR | O_CLOEXEC);
	if (v->fd < 0) {
		rc = -errno;
		if (rc == -ENOENT)
			snprintf(err, errlen, "--vsock needs %s: load the vhost_vsock module "
			         "(modprobe vhost_vsock)", VHOST_VSOCK_DEVICE);
		else
			snprintf(err, errlen, "--vsock: %s: %s", VHOST_VSOCK_DEVICE, strerror(errno));
		goto fail;
	}
	if (ioctl(v->fd, VHOST_SET_OWNER) < 0 ||
	    ioctl(v->fd, VHOST_GET_FEATURES, &v->vhost_features) < 0) {
		rc = -errno;
		snprintf(err, errlen, "--vsock: vhost set-up failed: %s", strerror(errno));
		goto fail;
	}
	/* claim the CID now, so a clash is reported at start-up, not at guest boot */
	if (ioctl(v->fd, VHOST_VSOCK_SET_GUEST_CID, &v->cid) < 0) {
		rc = -errno;
		snprintf(err, errlen, "--vsock: cid %llu: %s", (unsigned long long)cid,
		         errno == EADDRINUSE ? "in use by another VM" : strerror(errno));
		goto fail;
	}
	*out = v;
	return 0;
fail:
	if (v->fd >= 0)
		close(v->fd);
	free(v);
	return rc;
}

static void vsock_stop(struct virtio_vsock *v)
{
	int off = 0;
	if (!v->running)
		return;
	if (ioctl(v->fd, VHOST_VSOCK_SET_RUNNING, &off) < 0)
		log_warn("vsock: cannot stop vhost: %s", strerror(errno));
	for (uint16_t q = 0; q < 2 && v->vdev; q++) {
		struct vhost_vring_state st = { .index = q };
		/* keep our view of the ring in step with what the kernel consumed */
		if (ioctl(v->fd, VHOST_GET_VRING_BASE, &st) == 0)
			v->vdev->vqs[q].last_avail = (uint16_t)st.num;
		v->vdev->queue_kick_fd(v->vdev, q, false);
	}
	v->running = false;
}

void virtio_vsock_destroy(struct virtio_vsock *v)
{
	if (!v)
		return;
	v->vdev = NULL; /* the transport is gone; vhost just stops */
	vsock_stop(v);
	close(v->fd);
	free(v);
}

static uint64_t vsock_features(void *priv)
{
	struct virtio_vsock *v = priv;
	uint64_t want = 1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_F_EVENT_IDX |
	                1ULL << VIRTIO_F_INDIRECT_DESC | 1ULL << VSOCK_F_SEQPACKET;
	return v->vhost_features & want;
}

static void vsock_config_read(void *priv, uint32_t off, uint8_t *buf, uint32_t len)
{
	struct virtio_vsock *v = priv;
	uint8_t cfg[8];
	for (int i = 0; i < 8; i++)
		cfg[i] = (uint8_t)(v->cid >> (8 * i));
	memcpy(buf, cfg + off, len); /* the transport keeps off + len within 8 */
}

static int vsock_activate(void *priv, struct virtio_dev *vd)
{
	struct virtio_vsock *v = priv;
	const struct guest_mem *m = v->mem;
	uint64_t features = vd->guest_features & v->vhost_features;
	struct {
		struct vhost_memory hdr;
		struct vhost_memory_region r[MEM_MAX_REGIONS];
	} table;
	int one = 1;

	v->vdev = vd;
	memset(&table, 0, sizeof(table));
	table.hdr.nregions = (uint32_t)m->nr_regions;
	for (int i = 0; i < m->nr_regions; i++)
		table.r[i] = (struct vhost_memory_region){ .guest_phys_addr = m->regions[i].gpa,
			                                   .memory_size = m->regions[i].len,
			                                   .userspace_addr = (uintptr_t)m->regions[i].hva };
	if (ioctl(v->fd, VHOST_SET_FEATURES, &features) < 0 ||
	    ioctl(v->fd, VHOST_SET_MEM_TABLE, &table) < 0)
		goto fail;
	for (uint16_t q = 0; q < 2; q++) {
		struct virtq *vq = &vd->vqs[q];
		int call = vd->queue_call_fd(vd, q);
		if (!vq->ready || call < 0) {
			log_warn("vsock: queue %u is not set up (ready %d, MSI-X vector %s)", q,
			         vq->ready, call < 0 ? "missing" : "ok");
			return -EINVAL;
		}
		struct vhost_vring_state num = { .index = q, .num = vq->size };
		struct vhost_vring_state base = { .index = q, .num = vq->last_avail };
		struct vhost_vring_addr addr = { .index = q, .desc_user_addr = (uintptr_t)vq->desc,
			                         .avail_user_addr = (uintptr_t)vq->avail,
			                         .used_user_addr = (uintptr_t)vq->used };
		struct vhost_vring_file kick = { .index = q, .fd = vd->queue_kick_fd(vd, q, true) };
		struct vhost_vring_file callf = { .index = q, .fd = call };
		if (ioctl(v->fd, VHOST_SET_VRING_NUM, &num) < 0 ||
		    ioctl(v->fd, VHOST_SET_VRING_BASE, &base) < 0 ||
		    ioctl(v->fd, VHOST_SET_VRING_ADDR, &addr) < 0 ||
		    ioctl(v->fd, VHOST_SET_VRING_KICK, &kick) < 0 ||
		    ioctl(v->fd, VHOST_SET_VRING_CALL, &callf) < 0)
			goto fail;
	}
	if (ioctl(v->fd, VHOST_VSOCK_SET_RUNNING, &one) < 0)
		goto fail;
	v->running = true;
	/* kicks that came before DRIVER_OK were consumed by the transport: replay one */
	for (uint16_t q = 0; q < 2; q++) {
		uint64_t k = 1;
		if (write(vd->queue_kick_fd(vd, q, true), &k, sizeof(k)) < 0)
			log_debug("vsock: kick replay failed");
	}
	return 0;
fail:
	log_warn("vsock: vhost set-up failed: %s", strerror(errno));
	return -errno;
}

static void vsock_reset(void *priv)
{
	vsock_stop(priv);
}

static void vsock_save(void *priv, struct sbuf *out)
{
	struct virtio_vsock *v = priv;
	sbuf_put_u64(out, v->cid);
}

static int vsock_load(void *priv, struct sbuf *in)
{
	struct virtio_vsock *v = priv;
	uint64_t cid = sbuf_get_u64(in);
	/* the CID comes from the command line; a snapshot of another CID is refused */
	return in->err || cid != v->cid ? -EINVAL : 0;
}

const struct virtio_dev_ops virtio_vsock_ops = {
	.name = "virtio-vsock",
	.device_id = VIRTIO_ID_VSOCK,
	.num_queues = 3,
	.queue_max = 256,
	.config_size = 8,
	.features = vsock_features,
	.config_read = vsock_config_read,
	.activate = vsock_activate,
	.reset = vsock_reset,
	.save = vsock_save,
	.load = vsock_load,
};
