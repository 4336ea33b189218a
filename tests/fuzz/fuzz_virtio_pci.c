/* libFuzzer target for the virtio PCI transport (virtio/pci.c) with PCI bus 0
 * (pci/pci.c) and MSI-X (pci/msix.c) underneath: the input is a program of
 * guest accesses -- configuration space (direct, ECAM, ports 0xcf8/0xcfc)
 * and BAR 0 (through the MMIO bus at wherever the guest moved it, or straight
 * into the BAR handler), any offset, width and value -- interleaved with
 * ring writes into fake guest memory, event-loop turns, device-side events
 * and snapshots.
 *
 * Fake guest memory: 64 KiB with a 32 KiB low limit ([0, 32K) and
 * [4G, 4G + 32K)). Fake device: 2 queues of up to 16 entries, 24 bytes of
 * configuration; its queue_notify pops up to four requests, writes into their
 * writable buffers and pushes them. KVM is faked (this file defines the
 * kvm_vm_* functions the transport and MSI-X use); ioeventfd registrations
 * are tracked like KVM does (one per address and length).
 *
 * Input: byte 0 flags (bit 0: KVM refuses every ioeventfd; bit 1: activate
 * fails; bit 2: the device does not pop on notify), then operations, each an
 * opcode byte (low 4 bits) followed by its arguments (missing bytes read 0):
 *   0  config read          off16, width
 *   1  config write         off16, width, value32
 *   2  BAR read via MMIO    region, off16, width (region bit 7: off16 is the
 *                           raw BAR offset, may run past the BAR; else region
 *                           & 7 picks the 4 KiB page and off16 & 0xfff in it)
 *   3  BAR write via MMIO   region, off16, width, value64
 *   4  common-config write  off8 (mod 0x38), width, value64
 *   5  BAR handler call     off16 (mod 0x8000), width, value64, r/w
 *   6  event loop turn      kicks byte: bit 0 kick queue 0 through the BAR,
 *                           bit 1 queue 1 through its ioeventfd (as KVM would),
 *                           bit 2 a queue that does not exist, then one turn
 *   7  guest memory poke    gpa16, n (mod 32), n bytes (bit 15 of gpa16: high RAM)
 *   8  descriptor           queue/index byte, addr16, len16, flags, next
 *   9  avail ring           queue byte, head, idx delta
 *   10 snapshot             save; load into a fresh device (must succeed); save
 *                           again (must be identical); then a copy with one byte
 *                           replaced by the input loaded into a scratch device
 *   11 ECAM / 0xcf8 access  off24, width, value32, r/w
 *   12 device event         0: config change 1/2: queue interrupt; 3: take / give
 *                           back a kick fd
 *   13 driver script        features byte, queue byte, size byte, ring offsets
 *   14 MSI-X table write    entry, dword, value32 (through the BAR)
 *   15 status write         value8
 *
 * Invariants (abort on violation): FEATURES_OK implies the accepted features
 * are a subset of the offered ones and include VERSION_1; activate only with
 * FEATURES_OK; queue_notify only with DRIVER_OK, without NEEDS_RESET, on a
 * ready queue; the device's config ops stay inside config_size; no queue is
 * larger than queue_max; a ready queue's rings are inside guest RAM and match
 * mem_ptr; vectors are MSIX_NO_VECTOR or below the vector count; every pending
 * bit names a vector; snapshots round-trip; destroy leaves no ioeventfd or
 * irqfd assigned. ASan/UBSan catch the rest, -timeout any spin.
 *
 * Known bugs excluded unless built with -DFUZZ_VIRTIO_PCI_KNOWN_BUGS=1 (so
 * they do not stop every run in the first second):
 *   - a queue_size the driver wrote but never enabled that is not a power of
 *     two is saved and then refused by virtq_load, and so are driver_features
 *     bits never offered, written before FEATURES_OK (the round trip is not
 *     checked when the state holds either);
 *   - KVM refusing the second queue's ioeventfd leaves the first one assigned
 *     forever (only all-or-nothing refusal is injected). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hv/kvm.h"
#include "pci/msix.h"
#include "pci/pci.h"
#include "state/sbuf.h"
#include "util/log.h"
#include "virtio/pci.h"
#include "virtio/virtio.h"
#include "vm/bus.h"
#include "vm/evloop.h"
#include "vm/mem.h"

#ifndef FUZZ_VIRTIO_PCI_KNOWN_BUGS
#define FUZZ_VIRTIO_PCI_KNOWN_BUGS 0
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define G4 0x100000000ULL
#define MEM_SIZE 0x10000ULL
#define MEM_LOW 0x8000ULL
#define MMIO64_BASE 0x200000000ULL
#define NQ 2
#define QMAX 16
#define CFG_SIZE 24
#define MAX_OPS 2048

#define CHECK(c)                                                                             \
	do {                                                                                 \
		if (!(c))                                                                    \
			__builtin_trap();                                                    \
	} while (0)

/* ---- fake KVM ---- */

#define FK_MAX 64

static struct {
	int next_gsi;
	bool ioev_fail;
	bool ioev_fail_partial;
	int ioev_assigns;
	struct fk_ioev {
		uint64_t addr;
		uint32_t len;
		int fd;
		bool on;
	} ioev[FK_MAX];
	struct fk_irqfd {
		int fd;
		uint32_t gsi;
		bool on;
	} irqfd[FK_MAX];
} fk;

int kvm_vm_msi_route_alloc(struct kvm_vm *k)
{
	(void)k;
	return fk.next_gsi < KVM_MAX_GSI ? fk.next_gsi++ : -ENOSPC;
}

int kvm_vm_msi_route_set(struct kvm_vm *k, uint32_t gsi, uint64_t addr, uint32_t data)
{
	(void)k;
	(void)addr;
	(void)data;
	CHECK(gsi >= KVM_IRQCHIP_PINS && (int)gsi < fk.next_gsi);
	return 0;
}

int kvm_vm_signal_msi(struct kvm_vm *k, uint64_t addr, uint32_t data)
{
	(void)k;
	(void)addr;
	(void)data;
	return 1;
}

int kvm_vm_irqfd(struct kvm_vm *k, int fd, uint32_t gsi, bool assign)
{
	(void)k;
	for (int i = 0; i < FK_MAX; i++) {
		struct fk_irqfd *e = &fk.irqfd[i];
		if (e->on && e->fd == fd && e->gsi == gsi) {
			if (assign)
				return -EEXIST;
			e->on = false;
			return 0;
		}
	}
	if (!assign)
		return -ENOENT;
	for (int i = 0; i < FK_MAX; i++) {
		if (!fk.irqfd[i].on) {
			fk.irqfd[i] = (struct fk_irqfd){ fd, gsi, true };
			return 0;
		}
	}
	return -ENOSPC;
}

int kvm_vm_ioeventfd(struct kvm_vm *k, uint64_t addr, uint32_t len, int fd, bool assign)
{
	(void)k;
	if (assign) {
		fk.ioev_assigns++;
		if (fk.ioev_fail || (fk.ioev_fail_partial && fk.ioev_assigns % 2 == 0))
			return -ENOSPC;
	}
	for (int i = 0; i < FK_MAX; i++) {
		struct fk_ioev *e = &fk.ioev[i];
		if (!e->on || e->addr != addr || e->len != len)
			continue;
		if (assign)
			return -EEXIST;
		if (e->fd != fd)
			continue;
		e->on = false;
		return 0;
	}
	if (!assign)
		return -ENOENT;
	for (int i = 0; i < FK_MAX; i++) {
		if (!fk.ioev[i].on) {
			fk.ioev[i] = (struct fk_ioev){ addr, len, fd, true };
			return 0;
		}
	}
	return -ENOSPC;
}

/* ---- fake device ---- */

struct fdev {
	bool activate_fails;
	bool no_pop;
	struct virtio_dev *vdev;
	uint8_t config[CFG_SIZE];
	uint32_t magic;
	struct virtq_elem elem;
};

static uint64_t f_features(void *priv)
{
	(void)priv;
	return 1ULL << 0 | 1ULL << 3 | 1ULL << VIRTIO_F_EVENT_IDX | 1ULL << VIRTIO_F_INDIRECT_DESC;
}

static void f_config_read(void *priv, uint32_t off, uint8_t *buf, uint32_t len)
{
	struct fdev *d = priv;
	CHECK(len <= CFG_SIZE && off <= CFG_SIZE - len);
	memcpy(buf, d->config + off, len);
}

static void f_config_write(void *priv, uint32_t off, const uint8_t *buf, uint32_t len)
{
	struct fdev *d = priv;
	CHECK(len <= CFG_SIZE && off <= CFG_SIZE - len);
	memcpy(d->config + off, buf, len);
}

static int f_activate(void *priv, struct virtio_dev *vdev)
{
	struct fdev *d = priv;
	CHECK(vdev->status & VIRTIO_STATUS_FEATURES_OK);
	d->vdev = vdev;
	return d->activate_fails ? -EIO : 0;
}

static void f_queue_notify(void *priv, uint16_t q)
{
	struct fdev *d = priv;
	struct virtio_dev *vd = d->vdev;

	CHECK(q < NQ && vd);
	CHECK((vd->status & VIRTIO_STATUS_DRIVER_OK) && !(vd->status & VIRTIO_STATUS_NEEDS_RESET));
	CHECK(vd->vqs[q].ready);
	if (d->no_pop)
		return;
	bool pushed = false;
	for (int k = 0; k < 4; k++) {
		int rc = virtq_pop(&vd->vqs[q], &d->elem);
		if (rc < 0) {
			virtio_set_needs_reset(vd, "fuzz");
			break;
		}
		if (rc == 0)
			break;
		uint32_t w = 0;
		for (unsigned i = d->elem.out_num; i < (unsigned)d->elem.out_num + d->elem.in_num; i++) {
			size_t n = d->elem.iov[i].iov_len < 64 ? d->elem.iov[i].iov_len : 64;
			memset(d->elem.iov[i].iov_base, 0xd5, n);
			w += (uint32_t)n;
		}
		virtq_push(&vd->vqs[q], d->elem.head, w);
		pushed = true;
	}
	if (pushed)
		virtio_notify_queue(vd, q);
}

static void f_reset(void *priv)
{
	(void)priv;
}

static void f_save(void *priv, struct sbuf *out)
{
	struct fdev *d = priv;
	sbuf_put_u32(out, d->magic);
	sbuf_put(out, d->config, CFG_SIZE);
}

static int f_load(void *priv, struct sbuf *in)
{
	struct fdev *d = priv;
	uint32_t m = sbuf_get_u32(in);
	uint8_t c[CFG_SIZE];
	sbuf_get(in, c, CFG_SIZE);
	if (in->err)
		return -EINVAL;
	d->magic = m;
	memcpy(d->config, c, CFG_SIZE);
	return 0;
}

static const struct virtio_dev_ops fops = {
	.name = "fuzz-dev",
	.device_id = 26,
	.num_queues = NQ,
	.queue_max = QMAX,
	.config_size = CFG_SIZE,
	.features = f_features,
	.config_read = f_config_read,
	.config_write = f_config_write,
	.activate = f_activate,
	.queue_notify = f_queue_notify,
	.reset = f_reset,
	.save = f_save,
	.load = f_load,
};

/* ---- the world of one input ---- */

struct world {
	struct bus pio, mmio, spio, smmio;
	struct pci_bus pb, spb; /* the VM's bus, and a scratch bus for snapshot targets */
	struct kvm_vm kvm;
	struct evloop *loop;
	struct guest_mem mem;
	struct fdev dev, sdev;
	struct virtio_pci *vp;
};

static uint8_t *ram;
static struct world *w;

struct input {
	const uint8_t *p;
	size_t n, pos;
};

static uint8_t u8(struct input *in)
{
	return in->pos < in->n ? in->p[in->pos++] : 0;
}

static uint16_t u16(struct input *in)
{
	uint16_t lo = u8(in);
	return (uint16_t)(lo | u8(in) << 8);
}

static uint32_t u32(struct input *in)
{
	uint32_t lo = u16(in);
	return lo | (uint32_t)u16(in) << 16;
}

static uint64_t u64(struct input *in)
{
	uint64_t lo = u32(in);
	return lo | (uint64_t)u32(in) << 32;
}

static uint32_t width(uint8_t b)
{
	static const uint32_t wv[8] = { 1, 2, 4, 8, 4, 2, 3, 0 };
	return wv[b & 7];
}

static void put_le(uint8_t *p, uint64_t v, uint32_t len)
{
	for (uint32_t i = 0; i < len; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t bar0(void)
{
	const uint8_t *c = w->vp->pdev.cfg;
	return (pci_get32(c + PCI_BAR0) & ~0xfULL) | (uint64_t)pci_get32(c + PCI_BAR0 + 4) << 32;
}

static void bar_write(uint64_t off, uint32_t len, uint64_t v)
{
	uint8_t d[8];
	put_le(d, v, len);
	bus_access(&w->mmio, bar0() + off, d, len, true);
}

/* A BAR offset: mostly inside one of the eight 4 KiB pages, sometimes raw. */
static uint64_t bar_off(struct input *in)
{
	uint8_t r = u8(in);
	uint16_t o = u16(in);
	return (r & 0x80) ? o : (r & 7) * 0x1000ULL + (o & 0xfff);
}

/* The eventfd KVM would signal for a 2-byte write at addr, or -1. */
static int ioev_fd(uint64_t addr)
{
	for (int i = 0; i < FK_MAX; i++) {
		if (fk.ioev[i].on && fk.ioev[i].addr == addr && fk.ioev[i].len == 2)
			return fk.ioev[i].fd;
	}
	return -1;
}

static bool pow2_or_zero(uint16_t s)
{
	return !(s & (s - 1));
}

static void check(void)
{
	struct virtio_pci *vp = w->vp;
	struct virtio_dev *vd = &vp->vdev;

	if (vd->status & VIRTIO_STATUS_FEATURES_OK) {
		CHECK(!(vd->guest_features & ~vd->host_features));
		CHECK(virtio_has_feature(vd, VIRTIO_F_VERSION_1));
	}
	CHECK(vp->msix_config == MSIX_NO_VECTOR || vp->msix_config < vp->msix.nvec);
	CHECK(vp->msix.nvec == NQ + 1);
	CHECK(!(vp->msix.pending >> vp->msix.nvec));
	for (int q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		const struct virtq *vq = &vd->vqs[q];
		CHECK(vq->size <= QMAX);
		if (q >= NQ) {
			CHECK(!vq->ready);
			continue;
		}
		CHECK(vp->queue_vector[q] == MSIX_NO_VECTOR || vp->queue_vector[q] < vp->msix.nvec);
		if (!vq->ready)
			continue;
		CHECK(vq->size && pow2_or_zero(vq->size));
		CHECK(vq->desc == mem_ptr(&w->mem, vq->desc_gpa, 16ULL * vq->size));
		CHECK(vq->avail == mem_ptr(&w->mem, vq->avail_gpa, 6 + 2ULL * vq->size));
		CHECK(vq->used == mem_ptr(&w->mem, vq->used_gpa, 6 + 8ULL * vq->size));
		CHECK(vq->desc && vq->avail && vq->used);
	}
}

/* Save, load into a fresh device on the scratch bus, save again. */
static void snapshot(struct input *in)
{
	struct sbuf out = { 0 }, again = { 0 }, rd;
	struct virtio_pci *s = NULL;
	bool odd_size = false; /* state a load refuses today (known bugs) */
	int gsi_mark = fk.next_gsi; /* scratch devices give their routes back */

	virtio_pci_save(w->vp, &out);
	CHECK(out.err == 0);
	for (int q = 0; q < NQ; q++)
		odd_size |= !pow2_or_zero(w->vp->vdev.vqs[q].size);
	/* driver_features written before FEATURES_OK may hold bits never offered */
	odd_size |= (w->vp->vdev.guest_features & ~w->vp->vdev.host_features) != 0;
	memset(&w->sdev, 0, sizeof(w->sdev));
	CHECK(virtio_pci_create(&w->spb, &w->kvm, w->loop, &w->mem, &fops, &w->sdev, &s) == 0);
	uint8_t slot = s->pdev.slot;
	sbuf_reader(&rd, out.data, out.len);
	int rc = virtio_pci_load(s, &rd);
	if (!odd_size || FUZZ_VIRTIO_PCI_KNOWN_BUGS) {
		CHECK(rc == 0);
		CHECK(rd.pos == rd.len);
		virtio_pci_save(s, &again);
		CHECK(again.len == out.len && !memcmp(again.data, out.data, out.len));
	}
	virtio_pci_destroy(s);
	w->spb.devs[slot] = NULL; /* there is no pci_bus_remove */
	fk.next_gsi = gsi_mark;
	sbuf_free(&again);

	/* one byte replaced: must load or be refused, never crash */
	if (out.len) {
		size_t at = u16(in) % out.len;
		out.data[at] = u8(in);
		memset(&w->sdev, 0, sizeof(w->sdev));
		s = NULL;
		CHECK(virtio_pci_create(&w->spb, &w->kvm, w->loop, &w->mem, &fops, &w->sdev, &s) == 0);
		slot = s->pdev.slot;
		sbuf_reader(&rd, out.data, out.len);
		(void)virtio_pci_load(s, &rd);
		/* a loaded device takes guest accesses like any other */
		uint8_t d[8] = { 0 };
		for (uint64_t off = 0; off < 0x38; off += 4)
			s->pdev.bars[0].fn(s->pdev.bars[0].opaque, off, d, 4, false);
		evloop_run_once(w->loop, 0);
		virtio_pci_destroy(s);
		w->spb.devs[slot] = NULL;
		fk.next_gsi = gsi_mark;
	}
	sbuf_free(&out);
}

static void driver_script(struct input *in)
{
	uint8_t feat = u8(in), qb = u8(in), sb = u8(in);
	uint16_t q = qb & 1;
	uint16_t qsize = (uint16_t)(1u << (sb % 5)); /* 1..16 */
	uint64_t base = (qb & 0x80) ? G4 : 0;
	uint64_t desc = base + (u8(in) * 0x40ULL) % MEM_LOW;
	uint64_t avail = base + (u8(in) * 0x40ULL) % MEM_LOW;
	uint64_t used = base + (u8(in) * 0x40ULL) % MEM_LOW;
	uint64_t gf = 1ULL << VIRTIO_F_VERSION_1 | ((feat & 1) ? 1ULL << VIRTIO_F_EVENT_IDX : 0) |
	              ((feat & 2) ? 1ULL << VIRTIO_F_INDIRECT_DESC : 0) | ((feat & 4) ? 1 : 0);

	if (!(feat & 0x80)) {
		bar_write(0x14, 1, 0);
		bar_write(0x14, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
		bar_write(0x08, 4, 0);
		bar_write(0x0c, 4, (uint32_t)gf);
		bar_write(0x08, 4, 1);
		bar_write(0x0c, 4, (uint32_t)(gf >> 32));
		bar_write(0x14, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		                   VIRTIO_STATUS_FEATURES_OK);
	}
	bar_write(0x16, 2, q);
	bar_write(0x18, 2, qsize);
	bar_write(0x1a, 2, (feat >> 4) & 3);
	bar_write(0x20, 8, desc);
	bar_write(0x28, 8, avail);
	bar_write(0x30, 8, used);
	bar_write(0x1c, 2, 1);
	bar_write(0x10, 2, 0);
	if (feat & 0x40) {
		/* MSI-X on, every vector unmasked */
		uint8_t c[2] = { 0x00, 0x80 };
		pci_cfg_access(&w->pb, w->vp->pdev.slot, 0, w->vp->msix.cap + 2u, c, 2, true);
		for (uint64_t v = 0; v < NQ + 1; v++)
			bar_write(0x4000 + 16 * v + 12, 4, 0);
	}
	bar_write(0x14, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
	                   VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

static void ring_desc(struct input *in)
{
	uint8_t qi = u8(in);
	const struct virtq *vq = &w->vp->vdev.vqs[qi & 1];
	uint16_t i = (qi >> 1) % QMAX;
	uint16_t a = u16(in), len = u16(in);
	uint8_t flags = u8(in), next = u8(in);
	uint64_t addr = ((a & 1) ? G4 : 0) + (a >> 1) % (MEM_LOW + 0x100);
	uint8_t d[16];

	put_le(d, addr, 8);
	put_le(d + 8, len % 0x2000, 4);
	put_le(d + 12, flags & 7, 2);
	put_le(d + 14, next % (QMAX + 2), 2);
	uint8_t *p = mem_ptr(&w->mem, vq->desc_gpa + 16ULL * i, 16);
	if (p)
		memcpy(p, d, 16);
}

static void ring_avail(struct input *in)
{
	uint8_t qb = u8(in), head = u8(in), delta = u8(in);
	const struct virtq *vq = &w->vp->vdev.vqs[qb & 1];
	uint16_t size = vq->size ? vq->size : 1;
	uint8_t *idxp = mem_ptr(&w->mem, vq->avail_gpa + 2, 2);

	if (!idxp)
		return;
	uint16_t idx = (uint16_t)pci_get16(idxp);
	uint8_t *slot = mem_ptr(&w->mem, vq->avail_gpa + 4 + 2ULL * (idx % size), 2);
	if (slot)
		pci_set16(slot, head % (QMAX + 1));
	pci_set16(idxp, (uint16_t)(idx + (delta & 0x80 ? delta : delta % 4 + 1)));
}

static void run(struct input *in)
{
	uint8_t d[16];

	for (int ops = 0; in->pos < in->n && ops < MAX_OPS; ops++) {
		uint8_t op = u8(in);
		switch (op & 15) {
		case 0: {
			uint16_t off = u16(in);
			uint32_t len = width(u8(in));
			pci_cfg_access(&w->pb, w->vp->pdev.slot, (op >> 4) == 15, off & 0xfff, d, len,
			               false);
			break;
		}
		case 1: {
			uint16_t off = u16(in);
			uint32_t len = width(u8(in));
			put_le(d, u32(in), 4);
			pci_cfg_access(&w->pb, w->vp->pdev.slot, 0, off & 0xfff, d, len > 4 ? 4 : len,
			               true);
			break;
		}
		case 2: {
			uint64_t off = bar_off(in);
			uint32_t len = width(u8(in));
			if (len)
				bus_access(&w->mmio, bar0() + off, d, len, false);
			break;
		}
		case 3: {
			uint64_t off = bar_off(in);
			uint32_t len = width(u8(in));
			uint64_t v = u64(in);
			if (len)
				bar_write(off, len, v);
			break;
		}
		case 4: {
			uint8_t off = u8(in) % 0x38;
			uint32_t len = width(u8(in));
			uint64_t v = u64(in);
			if (len)
				bar_write(off, len, v);
			break;
		}
		case 5: {
			uint16_t off = u16(in) % 0x8000;
			uint8_t wb = u8(in);
			uint32_t len = width(wb);
			uint64_t v = u64(in);
			if (!len || off + len > 0x8000)
				break;
			put_le(d, v, 8);
			w->vp->pdev.bars[0].fn(w->vp->pdev.bars[0].opaque, off, d, len, wb & 8);
			break;
		}
		case 6: {
			uint8_t k = u8(in);
			if (k & 1)
				bar_write(0x3000, 2, 0);
			if (k & 2) {
				int fd = ioev_fd(bar0() + 0x3004);
				uint64_t one = 1;
				if (fd < 0)
					bar_write(0x3004, 2, 1);
				else if (write(fd, &one, sizeof(one)) != sizeof(one))
					__builtin_trap();
			}
			if (k & 4)
				bar_write(0x3000 + 4 * NQ, 2, NQ);
			evloop_run_once(w->loop, 0);
			break;
		}
		case 7: {
			uint16_t a = u16(in);
			uint8_t n = u8(in) % 32;
			uint64_t gpa = ((a & 0x8000) ? G4 : 0) + (a & 0x7fff);
			for (uint8_t i = 0; i < n; i++) {
				uint8_t *p = mem_ptr(&w->mem, gpa + i, 1);
				uint8_t b = u8(in);
				if (p)
					*p = b;
			}
			break;
		}
		case 8:
			ring_desc(in);
			break;
		case 9:
			ring_avail(in);
			break;
		case 10:
			snapshot(in);
			break;
		case 11: {
			uint32_t off = u32(in);
			uint32_t len = width(u8(in));
			uint32_t v = u32(in);
			bool wr = op & 0x10;
			put_le(d, v, 4);
			if (!len)
				break;
			if (op & 0x20) {
				/* ports: address register, then the data window */
				uint8_t a[4];
				put_le(a, 0x80000000u | (off & 0xfffffc), 4);
				bus_access(&w->pio, 0xcf8, a, 4, true);
				bus_access(&w->pio, 0xcfc + (v >> 30), d, len > 4 ? 4 : len, wr);
			} else {
				bus_access(&w->mmio, PCI_ECAM_BASE + (off & 0xfffff), d, len, wr);
			}
			break;
		}
		case 12: {
			struct virtio_dev *vd = &w->vp->vdev;
			uint8_t e = u8(in);
			switch (e & 3) {
			case 0:
				virtio_notify_config(vd);
				break;
			case 1:
			case 2:
				virtio_notify_queue(vd, (e >> 2) & 1);
				break;
			case 3: {
				uint16_t q = (e >> 2) & 3; /* includes queues that do not exist */
				int fd = vd->queue_kick_fd(vd, q, e & 0x10);
				CHECK(q < NQ ? fd == w->vp->notify_fd[q] : fd == -1);
				(void)vd->queue_call_fd(vd, q);
				break;
			}
			}
			break;
		}
		case 13:
			driver_script(in);
			break;
		case 14: {
			uint8_t e = u8(in);
			uint32_t v = u32(in);
			bar_write(0x4000 + 16ULL * (e % (NQ + 2)) + 4ULL * ((e >> 4) & 3), 4, v);
			break;
		}
		case 15:
			bar_write(0x14, 1, u8(in));
			break;
		}
		check();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = { data, size, 0 };

	if (!ram) {
		log_level = -1;
		ram = calloc(1, MEM_SIZE);
		w = calloc(1, sizeof(*w));
		if (!ram || !w)
			abort();
	}
	memset(ram, 0, MEM_SIZE);
	memset(w, 0, sizeof(*w));
	memset(&fk, 0, sizeof(fk));
	fk.next_gsi = KVM_IRQCHIP_PINS;

	uint8_t flags = u8(&in);
	fk.ioev_fail = flags & 1;
	fk.ioev_fail_partial = FUZZ_VIRTIO_PCI_KNOWN_BUGS && (flags & 8);
	w->dev.activate_fails = flags & 2;
	w->dev.no_pop = flags & 4;
	mem_init_fake(&w->mem, ram, MEM_SIZE, MEM_LOW);
	bus_init(&w->pio, "pio");
	bus_init(&w->mmio, "mmio");
	bus_init(&w->spio, "pio");
	bus_init(&w->smmio, "mmio");
	w->loop = evloop_create();
	if (!w->loop || pci_bus_init(&w->pb, &w->pio, &w->mmio, MMIO64_BASE) ||
	    pci_bus_init(&w->spb, &w->spio, &w->smmio, MMIO64_BASE))
		abort();
	if (virtio_pci_create(&w->pb, &w->kvm, w->loop, &w->mem, &fops, &w->dev, &w->vp))
		abort();
	check();

	run(&in);

	virtio_pci_destroy(w->vp);
	for (int i = 0; i < FK_MAX; i++) {
		CHECK(!fk.ioev[i].on);
		CHECK(!fk.irqfd[i].on);
	}
	/* nothing of the device is left in the loop */
	CHECK(evloop_run_once(w->loop, 0) == 0);
	pci_bus_destroy(&w->pb);
	pci_bus_destroy(&w->spb);
	evloop_destroy(w->loop);
	return 0;
}
