/* Virtio PCI transport (virtio 1.2, 4.1). BAR 0 (64-bit) layout:
 *   0x0000 common configuration   0x1000 ISR status
 *   0x2000 device configuration   0x3000 queue notifications (4 bytes per queue)
 *   0x4000 MSI-X table            0x5000 MSI-X pending bits
 * The common configuration is handled through a byte image: a read renders the
 * fields into it, a write of any width lands in it and then each field the
 * write touched is applied, so odd widths and offsets need no special cases. */
#include "virtio/pci.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util/log.h"

#define BAR_SIZE 0x8000
#define OFF_COMMON 0x0000
#define OFF_ISR 0x1000
#define OFF_DEVICE 0x2000
#define OFF_NOTIFY 0x3000
#define OFF_MSIX_TABLE 0x4000
#define OFF_MSIX_PBA 0x5000
#define NOTIFY_MULT 4
#define COMMON_LEN 0x38

/* common configuration fields */
#define CC_DFSELECT 0x00
#define CC_DF 0x04
#define CC_GFSELECT 0x08
#define CC_GF 0x0c
#define CC_MSIX 0x10
#define CC_NUMQ 0x12
#define CC_STATUS 0x14
#define CC_CFGGEN 0x15
#define CC_QSEL 0x16
#define CC_QSIZE 0x18
#define CC_QMSIX 0x1a
#define CC_QENABLE 0x1c
#define CC_QNOFF 0x1e
#define CC_QDESC 0x20
#define CC_QDRIVER 0x28
#define CC_QDEVICE 0x30

#define VIRTIO_PCI_CAP_COMMON 1
#define VIRTIO_PCI_CAP_NOTIFY 2
#define VIRTIO_PCI_CAP_ISR 3
#define VIRTIO_PCI_CAP_DEVICE 4

static uint32_t class_of(uint16_t id)
{
	switch (id) {
	case VIRTIO_ID_NET: return 0x020000;
	case VIRTIO_ID_BLOCK: return 0x018000;
	case VIRTIO_ID_CONSOLE: return 0x078000;
	default: return 0x00ff00;
	}
}

static void put64(uint8_t *p, uint64_t v)
{
	pci_set32(p, (uint32_t)v);
	pci_set32(p + 4, (uint32_t)(v >> 32));
}

static uint64_t get64(const uint8_t *p)
{
	return pci_get32(p) | (uint64_t)pci_get32(p + 4) << 32;
}

static void render_common(struct virtio_pci *vp, uint8_t *c)
{
	struct virtio_dev *vd = &vp->vdev;
	uint16_t qs = vp->queue_sel;
	bool qvalid = qs < vd->ops->num_queues;
	const struct virtq *q = qvalid ? &vd->vqs[qs] : NULL;

	memset(c, 0, COMMON_LEN);
	pci_set32(c + CC_DFSELECT, vp->dfselect);
	pci_set32(c + CC_DF, vp->dfselect < 2 ? (uint32_t)(vd->host_features >> (32 * vp->dfselect)) : 0);
	pci_set32(c + CC_GFSELECT, vp->gfselect);
	pci_set32(c + CC_GF, vp->gfselect < 2 ? (uint32_t)(vd->guest_features >> (32 * vp->gfselect)) : 0);
	pci_set16(c + CC_MSIX, vp->msix_config);
	pci_set16(c + CC_NUMQ, vd->ops->num_queues);
	c[CC_STATUS] = vd->status;
	c[CC_CFGGEN] = vd->config_gen;
	pci_set16(c + CC_QSEL, qs);
	if (q) {
		pci_set16(c + CC_QSIZE, q->size);
		pci_set16(c + CC_QMSIX, vp->queue_vector[qs]);
		pci_set16(c + CC_QENABLE, q->ready);
		pci_set16(c + CC_QNOFF, qs);
		put64(c + CC_QDESC, q->desc_gpa);
		put64(c + CC_QDRIVER, q->avail_gpa);
		put64(c + CC_QDEVICE, q->used_gpa);
	}
}

static void vp_reset(struct virtio_pci *vp)
{
	struct virtio_dev *vd = &vp->vdev;

	if (vd->ops->reset)
		vd->ops->reset(vd->priv);
	for (int q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		virtq_reset(&vd->vqs[q]);
		vd->vqs[q].size = vd->ops->queue_max;
		vp->queue_vector[q] = MSIX_NO_VECTOR;
	}
	vd->guest_features = 0;
	vd->status = 0;
	vp->dfselect = vp->gfselect = 0;
	vp->queue_sel = 0;
	vp->msix_config = MSIX_NO_VECTOR;
	vp->isr = 0;
}

static void set_status(struct virtio_pci *vp, uint8_t val)
{
	struct virtio_dev *vd = &vp->vdev;
	uint8_t old = vd->status;

	if (val == 0) {
		vp_reset(vp);
		return;
	}
	if ((val & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK)) {
		bool ok = !(vd->guest_features & ~vd->host_features) &&
		          virtio_has_feature(vd, VIRTIO_F_VERSION_1);
		if (!ok) {
			log_debug("%s: driver features 0x%llx refused", vd->ops->name,
			          (unsigned long long)vd->guest_features);
			val &= ~VIRTIO_STATUS_FEATURES_OK;
		}
	}
	vd->status = (uint8_t)(val | (old & VIRTIO_STATUS_NEEDS_RESET));
	if ((val & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK)) {
		if (!(val & VIRTIO_STATUS_FEATURES_OK)) {
			virtio_set_needs_reset(vd, "DRIVER_OK without FEATURES_OK");
			return;
		}
		if (vd->ops->activate && vd->ops->activate(vd->priv, vd) < 0)
			virtio_set_needs_reset(vd, "device could not start");
	}
}

static bool touches(uint64_t off, uint32_t len, uint32_t field, uint32_t flen)
{
	return off < field + flen && field < off + len;
}

static void common_write(struct virtio_pci *vp, uint64_t off, const uint8_t *data, uint32_t len)
{
	struct virtio_dev *vd = &vp->vdev;
	uint8_t c[COMMON_LEN];

	if (off >= COMMON_LEN || len > COMMON_LEN - off)
		return;
	render_common(vp, c);
	memcpy(c + off, data, len);

	if (touches(off, len, CC_DFSELECT, 4))
		vp->dfselect = pci_get32(c + CC_DFSELECT);
	if (touches(off, len, CC_GFSELECT, 4))
		vp->gfselect = pci_get32(c + CC_GFSELECT);
	if (touches(off, len, CC_GF, 4) && vp->gfselect < 2 &&
	    !(vd->status & VIRTIO_STATUS_FEATURES_OK)) {
		unsigned sh = 32 * vp->gfselect;
		vd->guest_features = (vd->guest_features & ~(0xffffffffULL << sh)) |
		                     (uint64_t)pci_get32(c + CC_GF) << sh;
	}
	if (touches(off, len, CC_MSIX, 2)) {
		uint16_t v = pci_get16(c + CC_MSIX);
		vp->msix_config = v < vp->msix.nvec ? v : MSIX_NO_VECTOR;
	}
	if (touches(off, len, CC_STATUS, 1))
		set_status(vp, c[CC_STATUS]);
	if (touches(off, len, CC_QSEL, 2))
		vp->queue_sel = pci_get16(c + CC_QSEL);

	uint16_t qs = vp->queue_sel;
	if (qs >= vd->ops->num_queues)
		return;
	struct virtq *q = &vd->vqs[qs];
	if (touches(off, len, CC_QMSIX, 2)) {
		uint16_t v = pci_get16(c + CC_QMSIX);
		vp->queue_vector[qs] = v < vp->msix.nvec ? v : MSIX_NO_VECTOR;
	}
	if (q->ready)
		return; /* the rest may only change while the queue is disabled */
	if (touches(off, len, CC_QSIZE, 2)) {
		uint16_t s = pci_get16(c + CC_QSIZE);
		q->size = s <= vd->ops->queue_max ? s : vd->ops->queue_max;
	}
	if (touches(off, len, CC_QDESC, 8))
		q->desc_gpa = get64(c + CC_QDESC);
	if (touches(off, len, CC_QDRIVER, 8))
		q->avail_gpa = get64(c + CC_QDRIVER);
	if (touches(off, len, CC_QDEVICE, 8))
		q->used_gpa = get64(c + CC_QDEVICE);
	if (touches(off, len, CC_QENABLE, 2) && pci_get16(c + CC_QENABLE) == 1) {
		q->event_idx = virtio_has_feature(vd, VIRTIO_F_EVENT_IDX);
		q->indirect = virtio_has_feature(vd, VIRTIO_F_INDIRECT_DESC);
		if (virtq_start(q) < 0)
			virtio_set_needs_reset(vd, q->broken_why ? q->broken_why : "bad queue");
	}
}

static void vp_bar_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct virtio_pci *vp = opaque;
	struct virtio_dev *vd = &vp->vdev;

	if (off >= OFF_MSIX_TABLE && off < OFF_MSIX_PBA) {
		msix_table_io(&vp->msix, off - OFF_MSIX_TABLE, data, len, is_write);
		return;
	}
	if (off >= OFF_MSIX_PBA && off < OFF_MSIX_PBA + 0x1000) {
		msix_pba_io(&vp->msix, off - OFF_MSIX_PBA, data, len, is_write);
		return;
	}
	if (off >= OFF_NOTIFY && off < OFF_NOTIFY + 0x1000) {
		/* only reached without ioeventfd: hand the kick to the main loop */
		uint64_t q = (off - OFF_NOTIFY) / NOTIFY_MULT, one = 1;
		if (is_write && q < vd->ops->num_queues && write(vp->notify_fd[q], &one, 8) < 0)
			log_debug("notify eventfd write failed");
		if (!is_write)
			memset(data, 0, len);
		return;
	}
	pthread_mutex_lock(&vd->lock);
	if (off < OFF_COMMON + 0x1000) {
		if (is_write) {
			common_write(vp, off - OFF_COMMON, data, len);
		} else {
			uint8_t c[COMMON_LEN];
			render_common(vp, c);
			for (uint32_t i = 0; i < len; i++)
				data[i] = off + i < COMMON_LEN ? c[off + i] : 0;
		}
	} else if (off >= OFF_ISR && off < OFF_ISR + 0x1000) {
		if (!is_write) {
			memset(data, 0, len);
			data[0] = off == OFF_ISR ? vp->isr : 0;
			if (off == OFF_ISR)
				vp->isr = 0; /* read-to-clear */
		}
	} else if (off >= OFF_DEVICE && off < OFF_DEVICE + 0x1000) {
		uint64_t o = off - OFF_DEVICE;
		uint32_t cs = vd->ops->config_size;
		if (o < cs && len <= cs - o) {
			if (is_write && vd->ops->config_write)
				vd->ops->config_write(vd->priv, (uint32_t)o, data, len);
			else if (!is_write && vd->ops->config_read)
				vd->ops->config_read(vd->priv, (uint32_t)o, data, len);
			else if (!is_write)
				memset(data, 0, len);
		} else if (!is_write) {
			memset(data, 0, len);
		}
	} else if (!is_write) {
		memset(data, 0xff, len);
	}
	pthread_mutex_unlock(&vd->lock);
}

static void vp_irq_queue(struct virtio_dev *vd, uint16_t q)
{
	struct virtio_pci *vp = vd->transport;
	vp->isr |= 1;
	msix_notify(&vp->msix, vp->queue_vector[q]);
}

static void vp_irq_config(struct virtio_dev *vd)
{
	struct virtio_pci *vp = vd->transport;
	vp->isr |= 2;
	msix_notify(&vp->msix, vp->msix_config);
}

static void vp_notify_ev(void *opaque, uint32_t events);

static int vp_queue_kick_fd(struct virtio_dev *vd, uint16_t q, bool take)
{
	struct virtio_pci *vp = vd->transport;

	if (q >= vd->ops->num_queues)
		return -1;
	if (take && !vp->kick_taken[q]) {
		evloop_del(vd->loop, vp->notify_fd[q]);
		vp->kick_taken[q] = true;
	} else if (!take && vp->kick_taken[q]) {
		evloop_add(vd->loop, vp->notify_fd[q], EPOLLIN, vp_notify_ev, vp);
		vp->kick_taken[q] = false;
	}
	return vp->notify_fd[q];
}

static int vp_queue_call_fd(struct virtio_dev *vd, uint16_t q)
{
	struct virtio_pci *vp = vd->transport;
	uint16_t v = q < vd->ops->num_queues ? vp->queue_vector[q] : MSIX_NO_VECTOR;
	return v < vp->msix.nvec ? vp->msix.fd[v] : -1;
}

static void vp_notify_ev(void *opaque, uint32_t events)
{
	struct virtio_pci *vp = opaque;
	struct virtio_dev *vd = &vp->vdev;
	(void)events;

	/* which queue: find the fd that is readable; a handful of queues at most */
	for (uint16_t q = 0; q < vd->ops->num_queues; q++) {
		uint64_t v;
		if (vp->kick_taken[q] || read(vp->notify_fd[q], &v, sizeof(v)) != sizeof(v))
			continue;
		pthread_mutex_lock(&vd->lock);
		if ((vd->status & VIRTIO_STATUS_DRIVER_OK) &&
		    !(vd->status & VIRTIO_STATUS_NEEDS_RESET) && vd->vqs[q].ready &&
		    vd->ops->queue_notify)
			vd->ops->queue_notify(vd->priv, q);
		pthread_mutex_unlock(&vd->lock);
	}
}

static void vp_bar_mapped(struct pci_dev *d, int i, uint64_t addr, bool mapped)
{
	struct virtio_pci *vp = d->opaque;

	if (i != 0)
		return;
	uint16_t nq = vp->vdev.ops->num_queues;
	if (!mapped) {
		for (uint16_t q = 0; q < nq && vp->ioeventfd_on; q++)
			kvm_vm_ioeventfd(vp->kvm, vp->bar_addr + OFF_NOTIFY + (uint64_t)q * NOTIFY_MULT, 2,
			                 vp->notify_fd[q], false);
		vp->ioeventfd_on = false;
		return;
	}
	for (uint16_t q = 0; q < nq; q++) {
		if (kvm_vm_ioeventfd(vp->kvm, addr + OFF_NOTIFY + (uint64_t)q * NOTIFY_MULT, 2,
		                     vp->notify_fd[q], true) < 0) {
			/* all or nothing: take back the ones that took */
			while (q--)
				kvm_vm_ioeventfd(vp->kvm, addr + OFF_NOTIFY + (uint64_t)q * NOTIFY_MULT, 2,
				                 vp->notify_fd[q], false);
			log_debug("%s: no ioeventfd; notifications take the slow path", d->name);
			vp->ioeventfd_on = false;
			return;
		}
	}
	vp->ioeventfd_on = true;
	vp->bar_addr = addr;
}

static void vp_cfg_written(struct pci_dev *d, uint32_t off, uint32_t len)
{
	struct virtio_pci *vp = d->opaque;
	msix_cfg_written(&vp->msix, off, len);
}

static uint8_t add_vcap(struct pci_dev *d, uint8_t type, uint32_t off, uint32_t len, uint8_t caplen)
{
	uint8_t c = pci_dev_add_cap(d, 0x09, caplen);
	if (!c)
		return 0;
	d->cfg[c + 2] = caplen;
	d->cfg[c + 3] = type;
	d->cfg[c + 4] = 0; /* BAR 0 */
	pci_set32(d->cfg + c + 8, off);
	pci_set32(d->cfg + c + 12, len);
	return c;
}

int virtio_pci_create(struct pci_bus *pb, struct kvm_vm *k, struct evloop *loop,
                      const struct guest_mem *mem, const struct virtio_dev_ops *ops, void *priv,
                      struct virtio_pci **out)
{
	struct virtio_pci *vp = calloc(1, sizeof(*vp));
	struct virtio_dev *vd;
	int rc;

	if (!vp)
		return -ENOMEM;
	for (int q = 0; q < VIRTIO_MAX_QUEUES; q++)
		vp->notify_fd[q] = -1;
	for (int v = 0; v < MSIX_MAX_VECTORS; v++)
		vp->msix.fd[v] = -1; /* nothing to close if we fail before msix_init */
	if (ops->num_queues == 0 || ops->num_queues > VIRTIO_MAX_QUEUES ||
	    ops->num_queues + 1 > MSIX_MAX_VECTORS || ops->config_size > 0x1000) {
		rc = -EINVAL;
		goto fail;
	}
	vp->kvm = k;
	vd = &vp->vdev;
	vd->ops = ops;
	vd->priv = priv;
	vd->mem = mem;
	vd->loop = loop;
	vd->transport = vp;
	vd->irq_queue = vp_irq_queue;
	vd->irq_config = vp_irq_config;
	vd->queue_kick_fd = vp_queue_kick_fd;
	vd->queue_call_fd = vp_queue_call_fd;
	pthread_mutex_init(&vd->lock, NULL);
	vd->host_features = (ops->features ? ops->features(priv) : 0) | 1ULL << VIRTIO_F_VERSION_1;
	for (int q = 0; q < VIRTIO_MAX_QUEUES; q++)
		vd->vqs[q].mem = mem;
	vp_reset(vp);

	struct pci_dev *d = &vp->pdev;
	pci_dev_init(d, ops->name, 0x1af4, (uint16_t)(0x1040 + ops->device_id),
	             class_of(ops->device_id), 1, 0x1af4, 0x40);
	d->opaque = vp;
	d->cfg_written = vp_cfg_written;
	d->bar_mapped = vp_bar_mapped;
	pci_dev_set_bar(d, 0, BAR_SIZE, true, true, vp_bar_io, vp);
	uint8_t ncap;
	if (!add_vcap(d, VIRTIO_PCI_CAP_COMMON, OFF_COMMON, COMMON_LEN, 16) ||
	    !add_vcap(d, VIRTIO_PCI_CAP_ISR, OFF_ISR, 4, 16) ||
	    (ops->config_size && !add_vcap(d, VIRTIO_PCI_CAP_DEVICE, OFF_DEVICE, ops->config_size, 16)) ||
	    !(ncap = add_vcap(d, VIRTIO_PCI_CAP_NOTIFY, OFF_NOTIFY, ops->num_queues * NOTIFY_MULT, 20))) {
		rc = -ENOSPC;
		goto fail;
	}
	pci_set32(d->cfg + ncap + 16, NOTIFY_MULT);
	rc = msix_init(&vp->msix, k, d, (uint16_t)(ops->num_queues + 1), 0, OFF_MSIX_TABLE, OFF_MSIX_PBA);
	if (rc)
		goto fail;
	for (uint16_t q = 0; q < ops->num_queues; q++) {
		vp->notify_fd[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (vp->notify_fd[q] < 0 ||
		    (rc = evloop_add(loop, vp->notify_fd[q], EPOLLIN, vp_notify_ev, vp)) < 0) {
			rc = rc ? rc : -errno;
			goto fail;
		}
	}
	rc = pci_bus_add(pb, d);
	if (rc)
		goto fail;
	*out = vp;
	return 0;
fail:
	virtio_pci_destroy(vp);
	return rc;
}

void virtio_pci_destroy(struct virtio_pci *vp)
{
	if (!vp)
		return;
	struct virtio_dev *vd = &vp->vdev;
	if (vd->ops && vd->ops->reset && vd->status)
		vd->ops->reset(vd->priv);
	if (vp->ioeventfd_on)
		vp_bar_mapped(&vp->pdev, 0, vp->bar_addr, false);
	for (int q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		if (vp->notify_fd[q] >= 0) {
			if (vd->loop && !vp->kick_taken[q])
				evloop_del(vd->loop, vp->notify_fd[q]);
			close(vp->notify_fd[q]);
		}
	}
	msix_destroy(&vp->msix);
	free(vp);
}

void virtio_pci_save(struct virtio_pci *vp, struct sbuf *out)
{
	struct virtio_dev *vd = &vp->vdev;

	pthread_mutex_lock(&vd->lock);
	sbuf_put_u64(out, vd->guest_features);
	sbuf_put_u8(out, vd->status);
	sbuf_put_u8(out, vd->config_gen);
	sbuf_put_u32(out, vp->msix_config);
	sbuf_put_u32(out, vd->ops->num_queues);
	for (uint16_t q = 0; q < vd->ops->num_queues; q++) {
		sbuf_put_u32(out, vp->queue_vector[q]);
		virtq_save(&vd->vqs[q], out);
	}
	msix_save(&vp->msix, out);
	if (vd->ops->save)
		vd->ops->save(vd->priv, out);
	pthread_mutex_unlock(&vd->lock);
}

int virtio_pci_load(struct virtio_pci *vp, struct sbuf *in)
{
	struct virtio_dev *vd = &vp->vdev;
	int rc = -EINVAL;

	pthread_mutex_lock(&vd->lock);
	uint64_t gf = sbuf_get_u64(in);
	uint8_t status = sbuf_get_u8(in), gen = sbuf_get_u8(in);
	uint32_t mc = sbuf_get_u32(in), nq = sbuf_get_u32(in);
	/* a driver may have written bits it was not offered before FEATURES_OK (it is
	 * then refused); once FEATURES_OK is set they can only be offered ones */
	if (in->err || nq != vd->ops->num_queues ||
	    ((status & VIRTIO_STATUS_FEATURES_OK) && (gf & ~vd->host_features)) ||
	    (mc != MSIX_NO_VECTOR && mc >= vp->msix.nvec))
		goto out;
	/* everything is decoded into copies first: a refused load changes nothing */
	struct virtq *qs = calloc(nq, sizeof(*qs));
	uint16_t vec[VIRTIO_MAX_QUEUES];
	if (!qs)
		goto out;
	for (uint16_t q = 0; q < nq; q++) {
		uint32_t v = sbuf_get_u32(in);
		qs[q].mem = vd->mem;
		if (in->err || (v != MSIX_NO_VECTOR && v >= vp->msix.nvec) ||
		    virtq_load(&qs[q], in) < 0 || qs[q].size > vd->ops->queue_max) {
			free(qs);
			goto out;
		}
		vec[q] = (uint16_t)v;
	}
	if (msix_load(&vp->msix, in) < 0 || (vd->ops->load && vd->ops->load(vd->priv, in) < 0)) {
		free(qs);
		goto out;
	}
	memcpy(vd->vqs, qs, nq * sizeof(*qs));
	memcpy(vp->queue_vector, vec, nq * sizeof(vec[0]));
	free(qs);
	vd->guest_features = gf;
	vd->status = status;
	vd->config_gen = gen;
	vp->msix_config = (uint16_t)mc;
	rc = 0;
	/* a device its driver had started starts again (vhost set-up, resubmission) */
	/* (a guest can set DRIVER_OK without FEATURES_OK; such a device stays down) */
	if ((status & VIRTIO_STATUS_DRIVER_OK) && (status & VIRTIO_STATUS_FEATURES_OK) &&
	    !(status & VIRTIO_STATUS_NEEDS_RESET) && vd->ops->activate && vd->ops->activate(vd->priv, vd) < 0)
		virtio_set_needs_reset(vd, "device could not restart after a restore");
out:
	pthread_mutex_unlock(&vd->lock);
	return rc;
}
