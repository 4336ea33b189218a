/* Unit tests for the virtio PCI transport (virtio/pci.c).
 *
 * A fake device (ops below, 2 queues of up to 256 entries, 16 bytes of device
 * configuration) sits behind the real transport on a real PCI bus; the test
 * plays the driver through the MMIO bus at wherever BAR 0 is, exactly as
 * vCPU exits would reach it. Guest memory is fake: 1 MiB with a 512 KiB low
 * limit, so [512K, 4G) is a hole. Queue notifications go through the real
 * event loop (vm/evloop.c).
 *
 * KVM is faked: this file defines kvm_vm_msi_route_alloc/_set, kvm_vm_irqfd
 * and kvm_vm_ioeventfd (so hv/kvm.c is never linked in) and records the
 * ioeventfds the transport registers; "the kernel signalling an ioeventfd"
 * is the test writing to that eventfd. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "hv/kvm.h"
#include "pci/msix.h"
#include "pci/pci.h"
#include "state/sbuf.h"
#include "virtio/pci.h"
#include "virtio/virtio.h"
#include "vm/bus.h"
#include "vm/evloop.h"
#include "vm/mem.h"

#define KIB 1024ULL
#define MEM_SIZE (1024 * KIB)
#define MEM_LOW (512 * KIB)
#define HOLE_GPA (MEM_LOW + 0x1000)
#define G4 0x100000000ULL
#define MMIO64_BASE 0x400000000ULL

/* BAR 0 layout */
#define OFF_ISR 0x1000
#define OFF_DEVICE 0x2000
#define OFF_NOTIFY 0x3000
#define OFF_MSIX 0x4000
#define OFF_PBA 0x5000

/* common configuration */
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
#define COMMON_LEN 0x38

#define S_ACK VIRTIO_STATUS_ACKNOWLEDGE
#define S_DRIVER VIRTIO_STATUS_DRIVER
#define S_FOK VIRTIO_STATUS_FEATURES_OK
#define S_DOK VIRTIO_STATUS_DRIVER_OK
#define S_NR VIRTIO_STATUS_NEEDS_RESET

#define NQ 2
#define QMAX 256
#define F_DEV0 (1ULL << 0)
#define F_DEV5 (1ULL << 5)
#define F_V1 (1ULL << VIRTIO_F_VERSION_1)
#define F_EVIDX (1ULL << VIRTIO_F_EVENT_IDX)
#define OFFERED (F_DEV0 | F_DEV5 | F_EVIDX)

/* ---- fake KVM ---- */

#define FK_MAX 512

static struct fake_kvm {
	int next_gsi;
	uint64_t route_addr[KVM_MAX_GSI];
	uint32_t route_data[KVM_MAX_GSI];
	struct fk_irqfd {
		int fd;
		uint32_t gsi;
		bool assigned;
	} irqfd[FK_MAX];
	int nirqfd;
	struct fk_ioev {
		uint64_t addr;
		uint32_t len;
		int fd;
		bool assigned;
	} ioev[FK_MAX];
	int nioev;
	int ioev_assigns;  /* assign calls */
	int ioev_fail_at;  /* assign call number that fails (0: never) */
	bool ioev_all_fail;
} fk;

static void fk_reset(void)
{
	memset(&fk, 0, sizeof(fk));
	fk.next_gsi = KVM_IRQCHIP_PINS;
}

int kvm_vm_msi_route_alloc(struct kvm_vm *k)
{
	(void)k;
	return fk.next_gsi < KVM_MAX_GSI ? fk.next_gsi++ : -ENOSPC;
}

int kvm_vm_msi_route_set(struct kvm_vm *k, uint32_t gsi, uint64_t addr, uint32_t data)
{
	(void)k;
	if (gsi >= KVM_MAX_GSI)
		return -EINVAL;
	fk.route_addr[gsi] = addr;
	fk.route_data[gsi] = data;
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
	for (int i = 0; i < fk.nirqfd; i++) {
		if (fk.irqfd[i].fd == fd && fk.irqfd[i].gsi == gsi && fk.irqfd[i].assigned) {
			if (assign)
				return -EEXIST;
			fk.irqfd[i].assigned = false;
			return 0;
		}
	}
	if (!assign || fk.nirqfd == FK_MAX)
		return -ENOENT;
	fk.irqfd[fk.nirqfd++] = (struct fk_irqfd){ fd, gsi, true };
	return 0;
}

int kvm_vm_ioeventfd(struct kvm_vm *k, uint64_t addr, uint32_t len, int fd, bool assign)
{
	(void)k;
	if (assign) {
		fk.ioev_assigns++;
		if (fk.ioev_all_fail || (fk.ioev_fail_at && fk.ioev_assigns == fk.ioev_fail_at))
			return -ENOSPC;
	}
	for (int i = 0; i < fk.nioev; i++) {
		struct fk_ioev *e = &fk.ioev[i];
		if (!e->assigned || e->addr != addr || e->len != len)
			continue;
		if (assign)
			return -EEXIST; /* as KVM: one eventfd per (addr, len) */
		if (e->fd != fd)
			continue;
		e->assigned = false;
		return 0;
	}
	if (!assign || fk.nioev == FK_MAX)
		return -ENOENT;
	fk.ioev[fk.nioev++] = (struct fk_ioev){ addr, len, fd, true };
	return 0;
}

static int fk_ioev_assigned(void)
{
	int n = 0;
	for (int i = 0; i < fk.nioev; i++)
		n += fk.ioev[i].assigned;
	return n;
}

/* The eventfd KVM would signal for a write at addr, or -1. */
static int fk_ioev_fd(uint64_t addr)
{
	for (int i = 0; i < fk.nioev; i++) {
		if (fk.ioev[i].assigned && fk.ioev[i].addr == addr)
			return fk.ioev[i].fd;
	}
	return -1;
}

static int fk_irqfd_assigned(void)
{
	int n = 0;
	for (int i = 0; i < fk.nirqfd; i++)
		n += fk.irqfd[i].assigned;
	return n;
}

static uint64_t efd_take(int fd)
{
	uint64_t v = 0;
	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

static void efd_signal(int fd)
{
	uint64_t one = 1;
	assert_int_equal(write(fd, &one, sizeof(one)), sizeof(one));
}

/* ---- fake device ---- */

struct fdev {
	uint64_t features;
	uint8_t config[16];
	int cfg_reads, cfg_writes;
	uint32_t cfg_off, cfg_len;
	int activates;
	int activate_rc;
	uint64_t act_features;
	bool act_ready[NQ];
	struct virtio_dev *vdev;
	int notifies[NQ];
	int resets;
	uint32_t magic;
	int loads;
	int load_rc;
};

static uint64_t f_features(void *priv)
{
	return ((struct fdev *)priv)->features;
}

static void f_config_read(void *priv, uint32_t off, uint8_t *buf, uint32_t len)
{
	struct fdev *d = priv;
	d->cfg_reads++;
	d->cfg_off = off;
	d->cfg_len = len;
	assert_true(off + len <= sizeof(d->config)); /* the transport's promise */
	memcpy(buf, d->config + off, len);
}

static void f_config_write(void *priv, uint32_t off, const uint8_t *buf, uint32_t len)
{
	struct fdev *d = priv;
	d->cfg_writes++;
	d->cfg_off = off;
	d->cfg_len = len;
	assert_true(off + len <= sizeof(d->config));
	memcpy(d->config + off, buf, len);
}

static int f_activate(void *priv, struct virtio_dev *vdev)
{
	struct fdev *d = priv;
	d->activates++;
	d->vdev = vdev;
	d->act_features = vdev->guest_features;
	for (int q = 0; q < NQ; q++)
		d->act_ready[q] = vdev->vqs[q].ready;
	return d->activate_rc;
}

static void f_queue_notify(void *priv, uint16_t q)
{
	struct fdev *d = priv;
	assert_true(q < NQ);
	d->notifies[q]++;
}

static void f_reset(void *priv)
{
	((struct fdev *)priv)->resets++;
}

static void f_save(void *priv, struct sbuf *out)
{
	sbuf_put_u32(out, ((struct fdev *)priv)->magic);
}

static int f_load(void *priv, struct sbuf *in)
{
	struct fdev *d = priv;
	uint32_t m = sbuf_get_u32(in);
	d->loads++;
	if (in->err || d->load_rc)
		return -EINVAL;
	d->magic = m;
	return 0;
}

static const struct virtio_dev_ops fops = {
	.name = "fake-console",
	.device_id = VIRTIO_ID_CONSOLE,
	.num_queues = NQ,
	.queue_max = QMAX,
	.config_size = 16,
	.features = f_features,
	.config_read = f_config_read,
	.config_write = f_config_write,
	.activate = f_activate,
	.queue_notify = f_queue_notify,
	.reset = f_reset,
	.save = f_save,
	.load = f_load,
};

/* ---- fixture ---- */

struct fx {
	struct bus pio, mmio;
	struct pci_bus pb;
	struct kvm_vm kvm;
	struct evloop *loop;
	uint8_t *ram;
	struct guest_mem mem;
	struct fdev dev;
	struct virtio_pci *vp;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	fk_reset();
	bus_init(&f->pio, "pio");
	bus_init(&f->mmio, "mmio");
	f->ram = calloc(1, MEM_SIZE);
	f->loop = evloop_create();
	if (!f->ram || !f->loop || pci_bus_init(&f->pb, &f->pio, &f->mmio, MMIO64_BASE))
		goto fail;
	mem_init_fake(&f->mem, f->ram, MEM_SIZE, MEM_LOW);
	f->dev.features = OFFERED;
	f->dev.magic = 0xc0ffee01;
	if (virtio_pci_create(&f->pb, &f->kvm, f->loop, &f->mem, &fops, &f->dev, &f->vp))
		goto fail;
	*state = f;
	return 0;
fail:
	evloop_destroy(f->loop);
	free(f->ram);
	free(f);
	return -1;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	virtio_pci_destroy(f->vp);
	pci_bus_destroy(&f->pb);
	evloop_destroy(f->loop);
	free(f->ram);
	free(f);
	return 0;
}

/* ---- driver-side helpers ---- */

static uint64_t le(const uint8_t *p, uint32_t len)
{
	uint64_t v = 0;
	for (uint32_t i = 0; i < len; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void put_le(uint8_t *p, uint64_t v, uint32_t len)
{
	for (uint32_t i = 0; i < len; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint8_t slot(struct fx *f)
{
	return f->vp->pdev.slot;
}

static uint32_t cfg_rd(struct fx *f, uint32_t off, uint32_t len)
{
	uint8_t d[4] = { 0 };
	pci_cfg_access(&f->pb, slot(f), 0, off, d, len, false);
	return (uint32_t)le(d, len);
}

static void cfg_wr(struct fx *f, uint32_t off, uint32_t len, uint32_t v)
{
	uint8_t d[4];
	put_le(d, v, len);
	pci_cfg_access(&f->pb, slot(f), 0, off, d, len, true);
}

static uint64_t bar0(struct fx *f)
{
	return (cfg_rd(f, PCI_BAR0, 4) & ~0xfULL) | (uint64_t)cfg_rd(f, PCI_BAR0 + 4, 4) << 32;
}

static uint64_t rd(struct fx *f, uint64_t off, uint32_t len)
{
	uint8_t d[8];
	memset(d, 0x5a, sizeof(d));
	bus_access(&f->mmio, bar0(f) + off, d, len, false);
	return le(d, len);
}

static void wr(struct fx *f, uint64_t off, uint32_t len, uint64_t v)
{
	uint8_t d[8];
	put_le(d, v, len);
	bus_access(&f->mmio, bar0(f) + off, d, len, true);
}

static uint8_t status(struct fx *f)
{
	return (uint8_t)rd(f, CC_STATUS, 1);
}

static void set_status(struct fx *f, uint8_t s)
{
	wr(f, CC_STATUS, 1, s);
}

static uint64_t dev_features(struct fx *f)
{
	wr(f, CC_DFSELECT, 4, 0);
	uint64_t lo = rd(f, CC_DF, 4);
	wr(f, CC_DFSELECT, 4, 1);
	return lo | rd(f, CC_DF, 4) << 32;
}

static void drv_features(struct fx *f, uint64_t feat)
{
	wr(f, CC_GFSELECT, 4, 0);
	wr(f, CC_GF, 4, (uint32_t)feat);
	wr(f, CC_GFSELECT, 4, 1);
	wr(f, CC_GF, 4, feat >> 32);
}

/* Reset, acknowledge, offer feat, set FEATURES_OK; returns the status read back. */
static uint8_t negotiate(struct fx *f, uint64_t feat)
{
	set_status(f, 0);
	set_status(f, S_ACK);
	set_status(f, S_ACK | S_DRIVER);
	drv_features(f, feat);
	set_status(f, S_ACK | S_DRIVER | S_FOK);
	return status(f);
}

/* 64-bit field written as two dwords, low first (Linux vp_iowrite64_twopart). */
static void wr64(struct fx *f, uint32_t off, uint64_t v)
{
	wr(f, off, 4, (uint32_t)v);
	wr(f, off + 4, 4, v >> 32);
}

static uint64_t q_desc(uint16_t q) { return 0x1000 + 0x4000ULL * q; }
static uint64_t q_avail(uint16_t q) { return 0x2000 + 0x4000ULL * q; }
static uint64_t q_used(uint16_t q) { return 0x3000 + 0x4000ULL * q; }

static void setup_queue(struct fx *f, uint16_t q, uint16_t size)
{
	wr(f, CC_QSEL, 2, q);
	wr(f, CC_QSIZE, 2, size);
	wr64(f, CC_QDESC, q_desc(q));
	wr64(f, CC_QDRIVER, q_avail(q));
	wr64(f, CC_QDEVICE, q_used(q));
	wr(f, CC_QENABLE, 2, 1);
}

/* Features, both queues, DRIVER_OK. */
static void bring_up(struct fx *f)
{
	assert_int_equal(negotiate(f, F_V1 | F_DEV0), S_ACK | S_DRIVER | S_FOK);
	setup_queue(f, 0, 16);
	setup_queue(f, 1, 32);
	set_status(f, S_ACK | S_DRIVER | S_FOK | S_DOK);
	assert_int_equal(status(f), S_ACK | S_DRIVER | S_FOK | S_DOK);
}

/* Enable MSI-X in config space and unmask table entry v with (addr, data). */
static void msix_on(struct fx *f, uint16_t v, uint32_t data)
{
	uint8_t c = f->vp->msix.cap;
	cfg_wr(f, c + 2u, 2, 0x8000);
	wr(f, OFF_MSIX + 16u * v, 4, 0xfee00000);
	wr(f, OFF_MSIX + 16u * v + 4, 4, 0);
	wr(f, OFF_MSIX + 16u * v + 8, 4, data);
	wr(f, OFF_MSIX + 16u * v + 12, 4, 0);
}

/* ---- configuration space ---- */

static void test_pci_identity_and_caps(void **state)
{
	struct fx *f = *state;

	assert_int_equal(cfg_rd(f, 0, 2), 0x1af4);
	assert_int_equal(cfg_rd(f, 2, 2), 0x1040 + VIRTIO_ID_CONSOLE);
	assert_int_equal(cfg_rd(f, PCI_REVISION, 1), 1); /* modern-only devices: revision >= 1 */
	assert_int_equal(cfg_rd(f, PCI_CLASS_PROG, 4) & 0xffffff, 0x078000);
	assert_int_equal(cfg_rd(f, PCI_SUBSYS_VENDOR, 2), 0x1af4);
	assert_int_equal(cfg_rd(f, PCI_SUBSYS_ID, 2), 0x40);
	/* BAR 0: 64-bit prefetchable, 32 KiB */
	assert_int_equal(cfg_rd(f, PCI_BAR0, 4) & 0xf, 0xc);
	assert_int_equal(bar0(f), MMIO64_BASE);
	uint32_t lo = cfg_rd(f, PCI_BAR0, 4), hi = cfg_rd(f, PCI_BAR0 + 4, 4);
	cfg_wr(f, PCI_BAR0, 4, 0xffffffff);
	cfg_wr(f, PCI_BAR0 + 4, 4, 0xffffffff);
	assert_int_equal(cfg_rd(f, PCI_BAR0, 4), 0xffff800c);
	assert_int_equal(cfg_rd(f, PCI_BAR0 + 4, 4), 0xffffffff);
	cfg_wr(f, PCI_BAR0, 4, lo);
	cfg_wr(f, PCI_BAR0 + 4, 4, hi);
	assert_int_equal(bar0(f), MMIO64_BASE);
	assert_int_equal(cfg_rd(f, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST, PCI_STATUS_CAP_LIST);

	/* walk the capability list: four virtio structures and MSI-X */
	struct {
		uint32_t off, len;
		bool seen;
	} want[5] = { [1] = { 0x0000, COMMON_LEN }, [2] = { OFF_NOTIFY, 4 * NQ },
		      [3] = { OFF_ISR, 4 }, [4] = { OFF_DEVICE, 16 } };
	bool msix = false;
	int n = 0;
	for (uint32_t c = cfg_rd(f, PCI_CAP_PTR, 1); c; c = cfg_rd(f, c + 1, 1)) {
		assert_true(c >= 0x40 && c < 0x100 && !(c & 3));
		assert_true(++n <= 8); /* no loop */
		uint8_t id = (uint8_t)cfg_rd(f, c, 1);
		if (id == 0x11) {
			msix = true;
			assert_int_equal(cfg_rd(f, c + 2, 2), NQ); /* NQ + 1 vectors: N - 1 */
			assert_int_equal(cfg_rd(f, c + 4, 4), OFF_MSIX);  /* BIR 0 */
			assert_int_equal(cfg_rd(f, c + 8, 4), OFF_PBA);
			continue;
		}
		assert_int_equal(id, 0x09);
		uint8_t type = (uint8_t)cfg_rd(f, c + 3, 1);
		assert_true(type >= 1 && type <= 4);
		assert_false(want[type].seen);
		want[type].seen = true;
		assert_int_equal(cfg_rd(f, c + 4, 1), 0); /* BAR 0 */
		assert_int_equal(cfg_rd(f, c + 8, 4), want[type].off);
		assert_int_equal(cfg_rd(f, c + 12, 4), want[type].len);
		assert_int_equal(cfg_rd(f, c + 2, 1), type == 2 ? 20 : 16);
		if (type == 2)
			assert_int_equal(cfg_rd(f, c + 16, 4), 4); /* notify_off_multiplier */
	}
	assert_true(msix);
	for (int t = 1; t <= 4; t++)
		assert_true(want[t].seen);
}

/* fd 0 replaced by /dev/null for the duration of a test that may lose it;
 * returns the saved descriptor (or -1) for fd0_restore. */
static int fd0_protect(void)
{
	int saved = dup(0); /* -1 if the runner closed stdin */
	int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);

	assert_true(nul >= 0);
	assert_int_equal(dup2(nul, 0), 0);
	close(nul);
	return saved;
}

/* Put stdin back; returns whether fd 0 was still open before that. */
static bool fd0_restore(int saved)
{
	bool open_ = fcntl(0, F_GETFD) != -1;

	if (saved >= 0) {
		dup2(saved, 0);
		close(saved);
	}
	return open_;
}

static void test_create_rejects_bad_ops(void **state)
{
	struct fx *f = *state;
	struct virtio_dev_ops ops = fops;
	struct virtio_pci *vp = NULL;
	int saved = fd0_protect(); /* see test_create_failure_leaves_fd0_open */

	ops.num_queues = 0;
	assert_int_equal(virtio_pci_create(&f->pb, &f->kvm, f->loop, &f->mem, &ops, &f->dev, &vp),
	                 -EINVAL);
	ops.num_queues = MSIX_MAX_VECTORS; /* needs one vector more than MSI-X has */
	assert_int_equal(virtio_pci_create(&f->pb, &f->kvm, f->loop, &f->mem, &ops, &f->dev, &vp),
	                 -EINVAL);
	ops.num_queues = 1;
	ops.config_size = 0x1001;
	assert_int_equal(virtio_pci_create(&f->pb, &f->kvm, f->loop, &f->mem, &ops, &f->dev, &vp),
	                 -EINVAL);
	fd0_restore(saved);
	assert_null(vp);
	assert_null(f->pb.devs[2]);
}

/* A failed create must not close file descriptors it never opened. Today a
 * failure before msix_init runs msix_destroy on a calloc'ed struct msix whose
 * fd[] are all 0, and closes fd 0 (64 times) -- in the VMM, whatever fd 0 is
 * by then (stdin, or a disk image once stdin was closed). */
static void test_create_failure_leaves_fd0_open(void **state)
{
	struct fx *f = *state;
	struct virtio_dev_ops ops = fops;
	struct virtio_pci *vp = NULL;
	int saved = fd0_protect();

	ops.num_queues = 0;
	int rc = virtio_pci_create(&f->pb, &f->kvm, f->loop, &f->mem, &ops, &f->dev, &vp);
	bool still_open = fd0_restore(saved);
	assert_int_equal(rc, -EINVAL);
	assert_true(still_open);
}

static void test_msix_vectors_wired(void **state)
{
	struct fx *f = *state;

	assert_int_equal(f->vp->msix.nvec, NQ + 1);
	/* an eventfd per vector; its irqfd is attached once the guest enables
	 * MSI-X and unmasks the vector (all start masked) */
	for (uint16_t v = 0; v < NQ + 1; v++)
		assert_true(f->vp->msix.fd[v] >= 0);
	assert_int_equal(fk_irqfd_assigned(), 0);
	/* every queue's notify address has an ioeventfd (2-byte writes) on its eventfd */
	for (uint16_t q = 0; q < NQ; q++) {
		int fd = fk_ioev_fd(MMIO64_BASE + OFF_NOTIFY + 4u * q);
		assert_int_equal(fd, f->vp->notify_fd[q]);
	}
	assert_int_equal(fk_ioev_assigned(), NQ);
	assert_int_equal(fk.ioev[0].len, 2);
}

/* ---- features ---- */

static void test_device_features(void **state)
{
	struct fx *f = *state;

	assert_int_equal(dev_features(f), OFFERED | F_V1);
	wr(f, CC_DFSELECT, 4, 2);
	assert_int_equal(rd(f, CC_DFSELECT, 4), 2);
	assert_int_equal(rd(f, CC_DF, 4), 0);
	wr(f, CC_DFSELECT, 4, 0xffffffff);
	assert_int_equal(rd(f, CC_DF, 4), 0);
	/* device_feature is read-only */
	wr(f, CC_DFSELECT, 4, 0);
	wr(f, CC_DF, 4, 0xffffffff);
	assert_int_equal(dev_features(f), OFFERED | F_V1);
}

static void test_features_ok_accepted(void **state)
{
	struct fx *f = *state;

	assert_int_equal(negotiate(f, F_V1 | F_DEV5 | F_EVIDX), S_ACK | S_DRIVER | S_FOK);
	assert_int_equal(f->vp->vdev.guest_features, F_V1 | F_DEV5 | F_EVIDX);
	wr(f, CC_GFSELECT, 4, 0);
	assert_int_equal(rd(f, CC_GF, 4), (uint32_t)(F_DEV5 | F_EVIDX));
	wr(f, CC_GFSELECT, 4, 1);
	assert_int_equal(rd(f, CC_GF, 4), 1); /* VERSION_1 is bit 32 */
	/* VERSION_1 alone is enough */
	assert_int_equal(negotiate(f, F_V1), S_ACK | S_DRIVER | S_FOK);
}

static void test_features_ok_refused_unoffered(void **state)
{
	struct fx *f = *state;

	assert_int_equal(negotiate(f, F_V1 | F_DEV0 | (1ULL << 7)), S_ACK | S_DRIVER);
	assert_int_equal(negotiate(f, F_V1 | (1ULL << 40)), S_ACK | S_DRIVER);
	assert_int_equal(negotiate(f, F_V1 | (1ULL << VIRTIO_F_INDIRECT_DESC)), S_ACK | S_DRIVER);
	/* and DRIVER_OK on top of a refused negotiation breaks the device */
	set_status(f, S_ACK | S_DRIVER | S_FOK | S_DOK);
	assert_true(status(f) & S_NR);
	assert_false(status(f) & S_FOK);
	assert_int_equal(f->dev.activates, 0);
}

static void test_features_ok_refused_without_version1(void **state)
{
	struct fx *f = *state;

	assert_int_equal(negotiate(f, F_DEV0), S_ACK | S_DRIVER);
	assert_int_equal(negotiate(f, 0), S_ACK | S_DRIVER);
	/* the driver may retry with a better set without a reset */
	drv_features(f, F_V1 | F_DEV0);
	set_status(f, S_ACK | S_DRIVER | S_FOK);
	assert_int_equal(status(f), S_ACK | S_DRIVER | S_FOK);
}

static void test_features_frozen_after_features_ok(void **state)
{
	struct fx *f = *state;

	assert_int_equal(negotiate(f, F_V1 | F_DEV0), S_ACK | S_DRIVER | S_FOK);
	drv_features(f, F_V1 | F_DEV0 | F_DEV5);
	drv_features(f, 0);
	assert_int_equal(f->vp->vdev.guest_features, F_V1 | F_DEV0);
	/* guest feature selects beyond 1 are ignored, too */
	set_status(f, 0);
	set_status(f, S_ACK | S_DRIVER);
	wr(f, CC_GFSELECT, 4, 2);
	wr(f, CC_GF, 4, 0xffffffff);
	assert_int_equal(rd(f, CC_GF, 4), 0);
	assert_int_equal(f->vp->vdev.guest_features, 0);
}

/* ---- status and reset ---- */

static void test_reset_clears_everything(void **state)
{
	struct fx *f = *state;

	bring_up(f);
	wr(f, CC_MSIX, 2, 0);
	wr(f, CC_QSEL, 2, 1);
	wr(f, CC_QMSIX, 2, 2);
	assert_int_equal(f->dev.activates, 1);
	int resets = f->dev.resets;
	set_status(f, 0);
	assert_int_equal(f->dev.resets, resets + 1);
	assert_int_equal(status(f), 0);
	assert_int_equal(f->vp->vdev.guest_features, 0);
	assert_int_equal(rd(f, CC_MSIX, 2), MSIX_NO_VECTOR);
	assert_int_equal(rd(f, CC_QSEL, 2), 0);
	for (uint16_t q = 0; q < NQ; q++) {
		wr(f, CC_QSEL, 2, q);
		assert_int_equal(rd(f, CC_QENABLE, 2), 0);
		assert_int_equal(rd(f, CC_QSIZE, 2), QMAX);
		assert_int_equal(rd(f, CC_QMSIX, 2), MSIX_NO_VECTOR);
		assert_int_equal(rd(f, CC_QDESC, 8), 0);
		assert_int_equal(rd(f, CC_QDRIVER, 8), 0);
		assert_int_equal(rd(f, CC_QDEVICE, 8), 0);
		assert_false(f->vp->vdev.vqs[q].ready);
	}
	/* a kick after the reset does not reach the device */
	wr(f, OFF_NOTIFY, 2, 0);
	assert_int_equal(evloop_run_once(f->loop, 0), 1);
	assert_int_equal(f->dev.notifies[0], 0);
	/* and the device comes up again */
	bring_up(f);
	assert_int_equal(f->dev.activates, 2);
}

static void test_driver_ok_once(void **state)
{
	struct fx *f = *state;

	bring_up(f);
	assert_int_equal(f->dev.activates, 1);
	assert_int_equal(f->dev.act_features, F_V1 | F_DEV0);
	assert_true(f->dev.act_ready[0] && f->dev.act_ready[1]);
	/* writing the same status again is not a second activation */
	set_status(f, S_ACK | S_DRIVER | S_FOK | S_DOK);
	assert_int_equal(f->dev.activates, 1);
}

static void test_driver_ok_without_features_ok(void **state)
{
	struct fx *f = *state;

	set_status(f, S_ACK | S_DRIVER | S_DOK);
	assert_int_equal(f->dev.activates, 0);
	assert_true(status(f) & S_NR);
	/* NEEDS_RESET sticks through status writes until a reset */
	set_status(f, S_ACK);
	assert_true(status(f) & S_NR);
	set_status(f, 0);
	assert_int_equal(status(f), 0);
}

static void test_activate_failure_needs_reset(void **state)
{
	struct fx *f = *state;

	f->dev.activate_rc = -EIO;
	assert_int_equal(negotiate(f, F_V1), S_ACK | S_DRIVER | S_FOK);
	setup_queue(f, 0, 16);
	set_status(f, S_ACK | S_DRIVER | S_FOK | S_DOK);
	assert_int_equal(f->dev.activates, 1);
	assert_true(status(f) & S_NR);
	/* NEEDS_RESET with DRIVER_OK raises the configuration interrupt (ISR bit 1) */
	assert_int_equal(rd(f, OFF_ISR, 1) & 2, 2);
	assert_int_equal(rd(f, CC_CFGGEN, 1), 1);
	/* kicks are not passed on while the device needs a reset */
	wr(f, OFF_NOTIFY, 2, 0);
	evloop_run_once(f->loop, 0);
	assert_int_equal(f->dev.notifies[0], 0);
}

/* ---- queues ---- */

static void test_queue_setup(void **state)
{
	struct fx *f = *state;

	assert_int_equal(rd(f, CC_NUMQ, 2), NQ);
	for (uint16_t q = 0; q < NQ; q++) {
		wr(f, CC_QSEL, 2, q);
		assert_int_equal(rd(f, CC_QSEL, 2), q);
		assert_int_equal(rd(f, CC_QSIZE, 2), QMAX);
		assert_int_equal(rd(f, CC_QNOFF, 2), q);
		assert_int_equal(rd(f, CC_QENABLE, 2), 0);
		assert_int_equal(rd(f, CC_QMSIX, 2), MSIX_NO_VECTOR);
	}
	assert_int_equal(negotiate(f, F_V1 | F_EVIDX), S_ACK | S_DRIVER | S_FOK);
	setup_queue(f, 1, 64);
	wr(f, CC_QSEL, 2, 1);
	assert_int_equal(rd(f, CC_QENABLE, 2), 1);
	assert_int_equal(rd(f, CC_QSIZE, 2), 64);
	assert_int_equal(rd(f, CC_QDESC, 8), q_desc(1));
	assert_int_equal(rd(f, CC_QDRIVER, 4), (uint32_t)q_avail(1));
	assert_int_equal(rd(f, CC_QDRIVER + 4, 4), 0);
	assert_int_equal(rd(f, CC_QDEVICE, 8), q_used(1));
	struct virtq *vq = &f->vp->vdev.vqs[1];
	assert_true(vq->ready);
	assert_true(vq->event_idx); /* negotiated features reach the queue */
	assert_false(vq->indirect);
	assert_ptr_equal(vq->desc, f->ram + q_desc(1));
	assert_ptr_equal(vq->avail, f->ram + q_avail(1));
	assert_ptr_equal(vq->used, f->ram + q_used(1));
	/* queue 0 untouched */
	assert_false(f->vp->vdev.vqs[0].ready);
	assert_int_equal(status(f) & S_NR, 0);
}

static void test_queue_size_clamped_and_checked(void **state)
{
	struct fx *f = *state;

	assert_int_equal(negotiate(f, F_V1), S_ACK | S_DRIVER | S_FOK);
	wr(f, CC_QSEL, 2, 0);
	wr(f, CC_QSIZE, 2, 1024);
	assert_int_equal(rd(f, CC_QSIZE, 2), QMAX);
	wr(f, CC_QSIZE, 2, 0xffff);
	assert_int_equal(rd(f, CC_QSIZE, 2), QMAX);
	/* not a power of two: enabling it fails and the device needs a reset */
	wr(f, CC_QSIZE, 2, 24);
	wr64(f, CC_QDESC, q_desc(0));
	wr64(f, CC_QDRIVER, q_avail(0));
	wr64(f, CC_QDEVICE, q_used(0));
	wr(f, CC_QENABLE, 2, 1);
	assert_int_equal(rd(f, CC_QENABLE, 2), 0);
	assert_true(status(f) & S_NR);
	/* size 0 too */
	set_status(f, 0);
	assert_int_equal(negotiate(f, F_V1), S_ACK | S_DRIVER | S_FOK);
	wr(f, CC_QSIZE, 2, 0);
	wr(f, CC_QENABLE, 2, 1);
	assert_int_equal(rd(f, CC_QENABLE, 2), 0);
	assert_true(status(f) & S_NR);
}

static void test_queue_in_hole_needs_reset(void **state)
{
	struct fx *f = *state;
	static const uint32_t fields[] = { CC_QDESC, CC_QDRIVER, CC_QDEVICE };

	for (unsigned k = 0; k < 3; k++) {
		assert_int_equal(negotiate(f, F_V1), S_ACK | S_DRIVER | S_FOK);
		wr(f, CC_QSEL, 2, 0);
		wr(f, CC_QSIZE, 2, 16);
		wr64(f, CC_QDESC, q_desc(0));
		wr64(f, CC_QDRIVER, q_avail(0));
		wr64(f, CC_QDEVICE, q_used(0));
		wr64(f, fields[k], HOLE_GPA);
		wr(f, CC_QENABLE, 2, 1);
		assert_int_equal(rd(f, CC_QENABLE, 2), 0);
		assert_true(status(f) & S_NR);
		assert_false(f->vp->vdev.vqs[0].ready);
		/* DRIVER_OK on top does not activate a device that needs a reset...
		 * but it must not crash either; the device sees no ready queue */
		set_status(f, S_ACK | S_DRIVER | S_FOK | S_DOK);
		assert_true(status(f) & S_NR);
		if (f->dev.activates)
			assert_false(f->dev.act_ready[0]);
		f->dev.activates = 0;
		set_status(f, 0);
	}
	/* straddling the end of low RAM, and far beyond everything */
	assert_int_equal(negotiate(f, F_V1), S_ACK | S_DRIVER | S_FOK);
	wr(f, CC_QSIZE, 2, 256);
	wr64(f, CC_QDESC, MEM_LOW - 0x800); /* 4 KiB table */
	wr64(f, CC_QDRIVER, q_avail(0));
	wr64(f, CC_QDEVICE, q_used(0));
	wr(f, CC_QENABLE, 2, 1);
	assert_int_equal(rd(f, CC_QENABLE, 2), 0);
	assert_true(status(f) & S_NR);
	set_status(f, 0);
	assert_int_equal(negotiate(f, F_V1), S_ACK | S_DRIVER | S_FOK);
	wr64(f, CC_QDESC, UINT64_MAX - 15);
	wr64(f, CC_QDRIVER, q_avail(0));
	wr64(f, CC_QDEVICE, q_used(0));
	wr(f, CC_QENABLE, 2, 1);
	assert_int_equal(rd(f, CC_QENABLE, 2), 0);
	assert_true(status(f) & S_NR);
	/* rings in high RAM are fine */
	set_status(f, 0);
	assert_int_equal(negotiate(f, F_V1), S_ACK | S_DRIVER | S_FOK);
	wr(f, CC_QSIZE, 2, 16);
	wr64(f, CC_QDESC, G4 + 0x1000);
	wr64(f, CC_QDRIVER, G4 + 0x2000);
	wr64(f, CC_QDEVICE, G4 + 0x3000);
	wr(f, CC_QENABLE, 2, 1);
	assert_int_equal(rd(f, CC_QENABLE, 2), 1);
	assert_int_equal(status(f) & S_NR, 0);
	assert_ptr_equal(f->vp->vdev.vqs[0].desc, f->ram + MEM_LOW + 0x1000);
}

static void test_queue_frozen_while_enabled(void **state)
{
	struct fx *f = *state;

	bring_up(f);
	wr(f, CC_QSEL, 2, 0);
	wr(f, CC_QSIZE, 2, 64);
	wr64(f, CC_QDESC, HOLE_GPA);
	wr64(f, CC_QDRIVER, 0x80000);
	wr(f, CC_QDEVICE, 8, 0x90000);
	assert_int_equal(rd(f, CC_QSIZE, 2), 16);
	assert_int_equal(rd(f, CC_QDESC, 8), q_desc(0));
	assert_int_equal(rd(f, CC_QDRIVER, 8), q_avail(0));
	assert_int_equal(rd(f, CC_QDEVICE, 8), q_used(0));
	assert_ptr_equal(f->vp->vdev.vqs[0].desc, f->ram + q_desc(0));
	/* "disable" is not a thing in virtio 1.x: writing 0 leaves it enabled */
	wr(f, CC_QENABLE, 2, 0);
	assert_int_equal(rd(f, CC_QENABLE, 2), 1);
	/* the vector may still change */
	wr(f, CC_QMSIX, 2, 1);
	assert_int_equal(rd(f, CC_QMSIX, 2), 1);
	assert_int_equal(status(f) & S_NR, 0);
}

static void test_queue_select_out_of_range(void **state)
{
	struct fx *f = *state;

	assert_int_equal(negotiate(f, F_V1), S_ACK | S_DRIVER | S_FOK);
	static const uint16_t sel[] = { NQ, 63, 64, 0x7fff, 0xffff };
	for (unsigned k = 0; k < 5; k++) {
		wr(f, CC_QSEL, 2, sel[k]);
		assert_int_equal(rd(f, CC_QSEL, 2), sel[k]);
		assert_int_equal(rd(f, CC_QSIZE, 2), 0); /* "not available" */
		assert_int_equal(rd(f, CC_QENABLE, 2), 0);
		wr(f, CC_QSIZE, 2, 16);
		wr64(f, CC_QDESC, q_desc(0));
		wr(f, CC_QMSIX, 2, 0);
		wr(f, CC_QENABLE, 2, 1);
		assert_int_equal(rd(f, CC_QSIZE, 2), 0);
		assert_int_equal(rd(f, CC_QDESC, 8), 0);
		assert_int_equal(rd(f, CC_QMSIX, 2), 0);
	}
	assert_int_equal(status(f), S_ACK | S_DRIVER | S_FOK);
	for (int q = 0; q < VIRTIO_MAX_QUEUES; q++)
		assert_false(f->vp->vdev.vqs[q].ready);
}

/* ---- common configuration: widths and bounds ---- */

static void test_common_odd_widths(void **state)
{
	struct fx *f = *state;

	assert_int_equal(negotiate(f, F_V1), S_ACK | S_DRIVER | S_FOK);
	/* one qword write, then each byte read separately */
	wr(f, CC_QSEL, 2, 0);
	wr(f, CC_QDESC, 8, 0x0000000100002000ULL);
	for (int i = 0; i < 8; i++)
		assert_int_equal(rd(f, CC_QDESC + i, 1), (0x0000000100002000ULL >> (8 * i)) & 0xff);
	/* a word write to the middle of a 64-bit field changes just those bytes */
	wr(f, CC_QDESC + 2, 2, 0xabcd);
	assert_int_equal(rd(f, CC_QDESC, 8), 0x00000001abcd2000ULL);
	/* one dword write covering status, config generation and queue_select */
	wr(f, CC_STATUS, 4, 0x0001ee00 | (S_ACK | S_DRIVER | S_FOK));
	assert_int_equal(status(f), S_ACK | S_DRIVER | S_FOK);
	assert_int_equal(rd(f, CC_CFGGEN, 1), 0); /* read-only */
	assert_int_equal(rd(f, CC_QSEL, 2), 1);
	/* a qword write over size/vector/enable/notify_off selects nothing odd */
	wr(f, CC_QSIZE, 8, 0x0000000000000010ULL | (uint64_t)MSIX_NO_VECTOR << 16);
	assert_int_equal(rd(f, CC_QSIZE, 2), 16);
	assert_int_equal(rd(f, CC_QENABLE, 2), 0);
	assert_int_equal(rd(f, CC_QNOFF, 2), 1); /* read-only */
	/* num_queues is read-only */
	wr(f, CC_NUMQ, 2, 7);
	assert_int_equal(rd(f, CC_NUMQ, 2), NQ);
	assert_int_equal(status(f) & S_NR, 0);
}

static void test_common_bounds(void **state)
{
	struct fx *f = *state;

	wr(f, CC_QSEL, 2, 0);
	wr64(f, CC_QDEVICE, 0x3000);
	/* a write running past the end of the structure is dropped whole */
	wr(f, CC_QDEVICE + 4, 8, UINT64_MAX);
	assert_int_equal(rd(f, CC_QDEVICE, 8), 0x3000);
	wr(f, COMMON_LEN - 1, 2, 0xffff);
	assert_int_equal(rd(f, CC_QDEVICE, 8), 0x3000);
	/* a read past the end gets zeros for the missing part */
	assert_int_equal(rd(f, CC_QDEVICE + 4, 8), 0);
	assert_int_equal(rd(f, CC_QDEVICE, 8), 0x3000);
	assert_int_equal(rd(f, COMMON_LEN, 4), 0);
	assert_int_equal(rd(f, 0xffc, 4), 0);
	wr(f, 0x800, 4, 0xffffffff);
	assert_int_equal(status(f), 0);
	/* the unused end of the BAR reads all-ones */
	assert_int_equal(rd(f, 0x6000, 4), 0xffffffff);
	assert_int_equal(rd(f, 0x7ff8, 8), UINT64_MAX);
	wr(f, 0x7ffc, 4, 0);
	/* an access running past the BAR is never handed to the transport */
	assert_int_equal(rd(f, 0x7ffc, 8), UINT64_MAX);
}

/* ---- device configuration ---- */

static void test_device_config_bounds(void **state)
{
	struct fx *f = *state;

	for (int i = 0; i < 16; i++)
		f->dev.config[i] = (uint8_t)(0x10 + i);
	assert_int_equal(rd(f, OFF_DEVICE, 4), 0x13121110);
	assert_int_equal(f->dev.cfg_reads, 1);
	assert_int_equal(rd(f, OFF_DEVICE + 12, 4), 0x1f1e1d1c);
	assert_int_equal(f->dev.cfg_off, 12);
	assert_int_equal(f->dev.cfg_len, 4);
	assert_int_equal(rd(f, OFF_DEVICE + 8, 8), 0x1f1e1d1c1b1a1918ULL);
	assert_int_equal(f->dev.cfg_reads, 3);
	/* straddling or beyond the end: zeros, and the device is not asked */
	assert_int_equal(rd(f, OFF_DEVICE + 14, 4), 0);
	assert_int_equal(rd(f, OFF_DEVICE + 16, 1), 0);
	assert_int_equal(rd(f, OFF_DEVICE + 0xffc, 4), 0);
	assert_int_equal(f->dev.cfg_reads, 3);
	wr(f, OFF_DEVICE + 15, 2, 0xffff);
	wr(f, OFF_DEVICE + 16, 4, 0xffffffff);
	wr(f, OFF_DEVICE + 0xfff, 1, 0xff);
	assert_int_equal(f->dev.cfg_writes, 0);
	wr(f, OFF_DEVICE + 15, 1, 0x99);
	assert_int_equal(f->dev.cfg_writes, 1);
	assert_int_equal(f->dev.config[15], 0x99);
	assert_int_equal(f->dev.config[14], 0x1e);
}

/* ---- ISR and interrupts ---- */

static void test_isr_read_to_clear(void **state)
{
	struct fx *f = *state;
	struct virtio_dev *vd = &f->vp->vdev;

	bring_up(f);
	assert_int_equal(rd(f, OFF_ISR, 1), 0);
	virtio_notify_queue(vd, 0);
	/* other offsets in the ISR page neither show nor clear it */
	assert_int_equal(rd(f, OFF_ISR + 1, 1), 0);
	assert_int_equal(rd(f, OFF_ISR + 0x100, 4), 0);
	wr(f, OFF_ISR, 1, 0); /* writes are ignored */
	assert_int_equal(rd(f, OFF_ISR, 4), 1);
	assert_int_equal(rd(f, OFF_ISR, 1), 0);
	virtio_notify_config(vd);
	assert_int_equal(rd(f, CC_CFGGEN, 1), 1);
	virtio_notify_queue(vd, 1);
	assert_int_equal(rd(f, OFF_ISR, 1), 3);
	assert_int_equal(rd(f, OFF_ISR, 1), 0);
}

static void test_queue_interrupt_via_msix(void **state)
{
	struct fx *f = *state;
	struct virtio_dev *vd = &f->vp->vdev;

	bring_up(f);
	wr(f, CC_QSEL, 2, 1);
	wr(f, CC_QMSIX, 2, 2);
	assert_int_equal(rd(f, CC_QMSIX, 2), 2);
	wr(f, CC_MSIX, 2, 0);
	assert_int_equal(rd(f, CC_MSIX, 2), 0);
	msix_on(f, 2, 0x4422);
	msix_on(f, 0, 0x4400);
	assert_int_equal(fk.route_data[f->vp->msix.gsi[2]], 0x4422);
	virtio_notify_queue(vd, 1);
	assert_int_equal(efd_take(f->vp->msix.fd[2]), 1);
	assert_int_equal(efd_take(f->vp->msix.fd[0]), 0);
	virtio_notify_config(vd);
	assert_int_equal(efd_take(f->vp->msix.fd[0]), 1);
	/* queue 0 has no vector: nothing is signalled, only the ISR */
	virtio_notify_queue(vd, 0);
	for (int v = 0; v < NQ + 1; v++)
		assert_int_equal(efd_take(f->vp->msix.fd[v]), 0);
	assert_int_equal(rd(f, OFF_ISR, 1) & 1, 1);
	/* the driver suppressing interrupts (VIRTQ_AVAIL_F_NO_INTERRUPT) is honoured */
	uint16_t no_int = VIRTQ_AVAIL_F_NO_INTERRUPT;
	memcpy(f->ram + q_avail(1), &no_int, 2);
	virtio_notify_queue(vd, 1);
	assert_int_equal(efd_take(f->vp->msix.fd[2]), 0);
	/* the vector's irqfd is what a vhost backend would be handed */
	assert_int_equal(vd->queue_call_fd(vd, 1), f->vp->msix.fd[2]);
	assert_int_equal(vd->queue_call_fd(vd, 0), -1);
	assert_int_equal(vd->queue_call_fd(vd, NQ), -1);
	/* masked vector: pending bit in the PBA through the BAR */
	wr(f, OFF_MSIX + 16 * 2 + 12, 4, 1);
	memset(f->ram + q_avail(1), 0, 2);
	virtio_notify_queue(vd, 1);
	assert_int_equal(efd_take(f->vp->msix.fd[2]), 0);
	assert_int_equal(rd(f, OFF_PBA, 8), 1u << 2);
	wr(f, OFF_MSIX + 16 * 2 + 12, 4, 0);
	assert_int_equal(efd_take(f->vp->msix.fd[2]), 1);
}

static void test_vector_numbers_checked(void **state)
{
	struct fx *f = *state;

	wr(f, CC_MSIX, 2, NQ + 1); /* one past the last vector */
	assert_int_equal(rd(f, CC_MSIX, 2), MSIX_NO_VECTOR);
	wr(f, CC_MSIX, 2, NQ);
	assert_int_equal(rd(f, CC_MSIX, 2), NQ);
	wr(f, CC_QSEL, 2, 0);
	wr(f, CC_QMSIX, 2, 0x8000);
	assert_int_equal(rd(f, CC_QMSIX, 2), MSIX_NO_VECTOR);
	wr(f, CC_QMSIX, 2, NQ);
	assert_int_equal(rd(f, CC_QMSIX, 2), NQ);
	/* MSI-X table beyond the last vector, and the PBA, through the BAR */
	wr(f, OFF_MSIX + 16 * (NQ + 1), 4, 0x12345678);
	assert_int_equal(rd(f, OFF_MSIX + 16 * (NQ + 1), 4), 0xffffffff);
	assert_int_equal(rd(f, OFF_MSIX + 16 * NQ + 12, 4), 1);
	wr(f, OFF_PBA, 8, UINT64_MAX);
	assert_int_equal(rd(f, OFF_PBA, 8), 0);
	assert_int_equal(rd(f, OFF_PBA + 0xff8, 8), 0);
}

/* ---- notifications ---- */

static void test_notify_slow_path(void **state)
{
	struct fx *f = *state;

	bring_up(f);
	/* a notify write that KVM did not catch reaches the device via the loop */
	wr(f, OFF_NOTIFY + 4, 2, 1);
	assert_int_equal(f->dev.notifies[1], 0); /* not on the vCPU thread */
	assert_int_equal(evloop_run_once(f->loop, 0), 1);
	assert_int_equal(f->dev.notifies[1], 1);
	assert_int_equal(f->dev.notifies[0], 0);
	/* a 4-byte write (not what the ioeventfd matches) works too */
	wr(f, OFF_NOTIFY, 4, 0);
	assert_int_equal(evloop_run_once(f->loop, 0), 1);
	assert_int_equal(f->dev.notifies[0], 1);
	/* several kicks before the loop runs: one notification per queue (the
	 * second eventfd's callback finds it already drained by the first) */
	wr(f, OFF_NOTIFY, 2, 0);
	wr(f, OFF_NOTIFY, 2, 0);
	wr(f, OFF_NOTIFY + 4, 2, 1);
	assert_int_equal(evloop_run_once(f->loop, 0), 2);
	assert_int_equal(f->dev.notifies[0], 2);
	assert_int_equal(f->dev.notifies[1], 2);
	/* the eventfds were drained: nothing left to run, no spinning */
	assert_int_equal(evloop_run_once(f->loop, 0), 0);
	/* notify addresses of queues that do not exist; reads */
	wr(f, OFF_NOTIFY + 4 * NQ, 2, NQ);
	wr(f, OFF_NOTIFY + 0xffc, 4, 0);
	assert_int_equal(rd(f, OFF_NOTIFY, 4), 0);
	assert_int_equal(evloop_run_once(f->loop, 0), 0);
}

static void test_notify_ioeventfd_path(void **state)
{
	struct fx *f = *state;

	bring_up(f);
	int fd0 = fk_ioev_fd(bar0(f) + OFF_NOTIFY), fd1 = fk_ioev_fd(bar0(f) + OFF_NOTIFY + 4);
	assert_true(fd0 >= 0 && fd1 >= 0 && fd0 != fd1);
	efd_signal(fd1);
	assert_int_equal(evloop_run_once(f->loop, 0), 1);
	assert_int_equal(f->dev.notifies[1], 1);
	efd_signal(fd0);
	efd_signal(fd1);
	assert_int_equal(evloop_run_once(f->loop, 0), 2);
	assert_int_equal(f->dev.notifies[0], 1);
	assert_int_equal(f->dev.notifies[1], 2);
	assert_int_equal(evloop_run_once(f->loop, 0), 0);
}

static void test_notify_before_driver_ok(void **state)
{
	struct fx *f = *state;

	assert_int_equal(negotiate(f, F_V1), S_ACK | S_DRIVER | S_FOK);
	setup_queue(f, 0, 16);
	wr(f, OFF_NOTIFY, 2, 0);
	assert_int_equal(evloop_run_once(f->loop, 0), 1);
	assert_int_equal(f->dev.notifies[0], 0);
	assert_int_equal(evloop_run_once(f->loop, 0), 0); /* drained, not spinning */
	/* DRIVER_OK, but queue 1 was never enabled */
	set_status(f, S_ACK | S_DRIVER | S_FOK | S_DOK);
	wr(f, OFF_NOTIFY + 4, 2, 1);
	assert_int_equal(evloop_run_once(f->loop, 0), 1);
	assert_int_equal(f->dev.notifies[1], 0);
	wr(f, OFF_NOTIFY, 2, 0);
	assert_int_equal(evloop_run_once(f->loop, 0), 1);
	assert_int_equal(f->dev.notifies[0], 1);
}

static void test_bar_move_moves_ioeventfds(void **state)
{
	struct fx *f = *state;
	uint64_t nb = MMIO64_BASE + 0x10000;

	bring_up(f);
	cfg_wr(f, PCI_BAR0, 4, (uint32_t)nb);
	assert_int_equal(bar0(f), nb);
	assert_int_equal(fk_ioev_assigned(), NQ);
	assert_int_equal(fk_ioev_fd(nb + OFF_NOTIFY), f->vp->notify_fd[0]);
	assert_int_equal(fk_ioev_fd(nb + OFF_NOTIFY + 4), f->vp->notify_fd[1]);
	assert_int_equal(fk_ioev_fd(MMIO64_BASE + OFF_NOTIFY), -1);
	/* the transport answers at the new place, not the old one */
	assert_int_equal(rd(f, CC_STATUS, 1), S_ACK | S_DRIVER | S_FOK | S_DOK);
	uint8_t d[1];
	bus_access(&f->mmio, MMIO64_BASE + CC_STATUS, d, 1, false);
	assert_int_equal(d[0], 0xff);
	/* memory decoding off: no ioeventfds, no BAR */
	cfg_wr(f, PCI_COMMAND, 2, 0);
	assert_int_equal(fk_ioev_assigned(), 0);
	bus_access(&f->mmio, nb + CC_STATUS, d, 1, false);
	assert_int_equal(d[0], 0xff);
	cfg_wr(f, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	assert_int_equal(fk_ioev_assigned(), NQ);
	/* KVM refusing ioeventfds: notifications still arrive (slow path) */
	fk.ioev_all_fail = true;
	cfg_wr(f, PCI_BAR0, 4, (uint32_t)MMIO64_BASE);
	assert_int_equal(fk_ioev_assigned(), 0);
	assert_false(f->vp->ioeventfd_on);
	wr(f, OFF_NOTIFY + 4, 2, 1);
	assert_int_equal(evloop_run_once(f->loop, 0), 1);
	assert_int_equal(f->dev.notifies[1], 1);
}

/* When KVM accepts the first queue's ioeventfd and refuses the second, the
 * transport falls back to the slow path (ioeventfd_on = false) but leaves the
 * first registered; it is never removed (not on a BAR move, not on destroy),
 * so KVM keeps swallowing writes at that stale address. */
static void test_ioeventfd_partial_failure_rolls_back(void **state)
{
	struct fx *f = *state;

	fk.ioev_fail_at = fk.ioev_assigns + 2; /* the next mapping's second queue */
	cfg_wr(f, PCI_BAR0, 4, (uint32_t)(MMIO64_BASE + 0x8000));
	assert_false(f->vp->ioeventfd_on);
	int after_move = fk_ioev_assigned();
	virtio_pci_destroy(f->vp);
	f->vp = NULL;
	int after_destroy = fk_ioev_assigned();
	assert_int_equal(after_move, 0); /* all or nothing */
	assert_int_equal(after_destroy, 0);
}

static void test_destroy_detaches(void **state)
{
	struct fx *f = *state;

	bring_up(f);
	int resets = f->dev.resets;
	virtio_pci_destroy(f->vp);
	f->vp = NULL;
	assert_int_equal(f->dev.resets, resets + 1); /* a live device is stopped */
	assert_int_equal(fk_ioev_assigned(), 0);
	assert_int_equal(fk_irqfd_assigned(), 0);
	f->pb.devs[1] = NULL; /* there is no pci_bus_remove: the slot still names freed memory */
	assert_int_equal(evloop_run_once(f->loop, 0), 0);
}

/* ---- vhost kick fds ---- */

static void test_kick_fd_handover(void **state)
{
	struct fx *f = *state;
	struct virtio_dev *vd = &f->vp->vdev;

	bring_up(f);
	int fd = vd->queue_kick_fd(vd, 1, true);
	assert_int_equal(fd, f->vp->notify_fd[1]);
	/* taken: the loop no longer reads it */
	wr(f, OFF_NOTIFY + 4, 2, 1);
	assert_int_equal(evloop_run_once(f->loop, 0), 0);
	assert_int_equal(efd_take(fd), 1);
	assert_int_equal(f->dev.notifies[1], 0);
	/* taking twice is harmless */
	assert_int_equal(vd->queue_kick_fd(vd, 1, true), fd);
	assert_int_equal(vd->queue_kick_fd(vd, NQ, true), -1);
	/* given back: served again */
	assert_int_equal(vd->queue_kick_fd(vd, 1, false), fd);
	wr(f, OFF_NOTIFY + 4, 2, 1);
	assert_int_equal(evloop_run_once(f->loop, 0), 1);
	assert_int_equal(f->dev.notifies[1], 1);
}

/* ---- save / load ---- */

static struct virtio_pci *second(struct fx *f, struct fdev *dev)
{
	struct virtio_pci *vp = NULL;

	memset(dev, 0, sizeof(*dev));
	dev->features = OFFERED;
	assert_int_equal(virtio_pci_create(&f->pb, &f->kvm, f->loop, &f->mem, &fops, dev, &vp), 0);
	return vp;
}

static void test_save_load_roundtrip(void **state)
{
	struct fx *f = *state;
	struct fdev dev2;
	struct sbuf out = { 0 }, again = { 0 }, in;

	assert_int_equal(negotiate(f, F_V1 | F_EVIDX | F_DEV5), S_ACK | S_DRIVER | S_FOK);
	setup_queue(f, 0, 16);
	setup_queue(f, 1, 64);
	wr(f, CC_QMSIX, 2, 1);
	wr(f, CC_MSIX, 2, 2);
	set_status(f, S_ACK | S_DRIVER | S_FOK | S_DOK);
	msix_on(f, 1, 0x5501);
	f->vp->vdev.vqs[1].last_avail = 7;
	f->vp->vdev.vqs[1].used_idx = 5;
	virtio_notify_config(&f->vp->vdev);
	virtio_pci_save(f->vp, &out);
	assert_int_equal(out.err, 0);

	struct virtio_pci *g = second(f, &dev2);
	sbuf_reader(&in, out.data, out.len);
	assert_int_equal(virtio_pci_load(g, &in), 0);
	assert_int_equal(in.pos, in.len);
	assert_int_equal(dev2.magic, 0xc0ffee01);
	assert_int_equal(g->vdev.status, S_ACK | S_DRIVER | S_FOK | S_DOK);
	assert_int_equal(g->vdev.guest_features, F_V1 | F_EVIDX | F_DEV5);
	assert_int_equal(g->vdev.config_gen, 1);
	assert_int_equal(g->msix_config, 2);
	assert_int_equal(g->queue_vector[0], MSIX_NO_VECTOR);
	assert_int_equal(g->queue_vector[1], 1);
	for (int q = 0; q < NQ; q++) {
		const struct virtq *a = &f->vp->vdev.vqs[q], *b = &g->vdev.vqs[q];
		assert_int_equal(b->size, a->size);
		assert_int_equal(b->desc_gpa, a->desc_gpa);
		assert_int_equal(b->avail_gpa, a->avail_gpa);
		assert_int_equal(b->used_gpa, a->used_gpa);
		assert_true(b->ready);
		assert_true(b->event_idx);
		assert_int_equal(b->last_avail, a->last_avail);
		assert_int_equal(b->used_idx, a->used_idx);
		assert_ptr_equal(b->desc, a->desc);
	}
	assert_memory_equal(g->msix.table, f->vp->msix.table, 16 * (NQ + 1));
	assert_int_equal(pci_get16(g->pdev.cfg + g->msix.cap + 2), 0x8000 | NQ);
	/* the restored transport saves the same bytes */
	virtio_pci_save(g, &again);
	assert_int_equal(again.len, out.len);
	assert_memory_equal(again.data, out.data, out.len);
	/* and its kicks reach its device */
	uint8_t d[2] = { 1, 0 };
	g->pdev.bars[0].fn(g->pdev.bars[0].opaque, OFF_NOTIFY + 4, d, 2, true);
	assert_int_equal(evloop_run_once(f->loop, 0), 1);
	assert_int_equal(dev2.notifies[1], 1);
	sbuf_free(&again);
	sbuf_free(&out);
	virtio_pci_destroy(g);
	f->pb.devs[2] = NULL;
}

/* Whatever the guest can put in the registers must survive a snapshot. A
 * queue_size the driver wrote but never enabled (any value up to queue_max)
 * is saved as is, and virtq_load refuses sizes that are not powers of two:
 * a guest writing queue_size = 24 makes its VM impossible to restore or
 * migrate. */
static void test_save_load_mid_setup(void **state)
{
	struct fx *f = *state;
	struct fdev dev2;
	struct sbuf out = { 0 }, in;

	assert_int_equal(negotiate(f, F_V1), S_ACK | S_DRIVER | S_FOK);
	wr(f, CC_QSEL, 2, 1);
	wr(f, CC_QSIZE, 2, 24);
	wr64(f, CC_QDESC, 0x1008); /* not yet aligned either: only checked on enable */
	virtio_pci_save(f->vp, &out);
	struct virtio_pci *g = second(f, &dev2);
	sbuf_reader(&in, out.data, out.len);
	int rc = virtio_pci_load(g, &in);
	uint16_t size = g->vdev.vqs[1].size;
	sbuf_free(&out);
	virtio_pci_destroy(g);
	f->pb.devs[2] = NULL;
	assert_int_equal(rc, 0);
	assert_int_equal(size, 24);
}

/* Same for driver_features: before FEATURES_OK the driver may write any bits
 * (the device only judges them at FEATURES_OK), they are saved as is, and
 * virtio_pci_load refuses any bit that was not offered. */
static void test_save_load_mid_negotiation(void **state)
{
	struct fx *f = *state;
	struct fdev dev2;
	struct sbuf out = { 0 }, in;

	set_status(f, S_ACK | S_DRIVER);
	drv_features(f, F_V1 | (1ULL << 7)); /* bit 7 is not offered */
	assert_int_equal(status(f), S_ACK | S_DRIVER);
	virtio_pci_save(f->vp, &out);
	struct virtio_pci *g = second(f, &dev2);
	sbuf_reader(&in, out.data, out.len);
	int rc = virtio_pci_load(g, &in);
	sbuf_free(&out);
	virtio_pci_destroy(g);
	f->pb.devs[2] = NULL;
	assert_int_equal(rc, 0);
}

/* Offsets in the saved stream (virtio_pci_save): features u64, status u8,
 * generation u8, msix_config u32, num_queues u32, then per queue a vector u32
 * and the virtq (size u32, 3 x u64 addresses, flags u8, 3 x u32 indices),
 * then MSI-X (nvec u32, table, pending u64, control u32), then the device. */
#define SV_GF 0
#define SV_MC 10
#define SV_NQ 14
#define SV_Q(q) (18 + 45 * (q))
#define SV_Q_VEC(q) SV_Q(q)
#define SV_Q_SIZE(q) (SV_Q(q) + 4)
#define SV_Q_DESC(q) (SV_Q(q) + 8)
#define SV_MSIX SV_Q(NQ)
#define SV_DEV (SV_MSIX + 4 + 16 * (NQ + 1) + 8 + 4)

static void put32(uint8_t *p, uint32_t v) { pci_set32(p, v); }

static int load_bytes(struct virtio_pci *vp, const uint8_t *b, size_t n)
{
	struct sbuf in;
	sbuf_reader(&in, b, n);
	return virtio_pci_load(vp, &in);
}

static void test_load_refuses_bad_state(void **state)
{
	struct fx *f = *state;
	struct fdev dev2;
	struct sbuf out = { 0 };

	bring_up(f);
	virtio_pci_save(f->vp, &out);
	assert_int_equal(out.len, SV_DEV + 4);
	struct virtio_pci *g = second(f, &dev2);
	uint8_t *b = malloc(out.len);
	assert_non_null(b);

	/* the untouched stream loads */
	assert_int_equal(load_bytes(g, out.data, out.len), 0);
	/* every truncation is refused */
	for (size_t n = 0; n < out.len; n++)
		assert_int_equal(load_bytes(g, out.data, n), -EINVAL);
#define MUTATE(stmt)                                                                         \
	do {                                                                                 \
		memcpy(b, out.data, out.len);                                                \
		stmt;                                                                        \
		assert_int_equal(load_bytes(g, b, out.len), -EINVAL);                        \
	} while (0)
	MUTATE(b[SV_GF] |= 1u << 7);             /* a feature never offered */
	MUTATE(b[SV_GF + 7] |= 0x80);            /* bit 63 */
	MUTATE(put32(b + SV_MC, NQ + 1));        /* config vector beyond the table */
	MUTATE(put32(b + SV_NQ, NQ + 1));        /* queue count */
	MUTATE(put32(b + SV_Q_VEC(1), NQ + 1));  /* queue vector */
	MUTATE(put32(b + SV_Q_SIZE(0), 24));     /* queue size not a power of two */
	MUTATE(put32(b + SV_Q_SIZE(0), 65536));  /* too large for a virtqueue */
	MUTATE(b[SV_Q_DESC(0) + 2] = 0x08);      /* ready ring in the hole */
	MUTATE(put32(b + SV_MSIX, NQ + 2));      /* MSI-X vector count */
	dev2.load_rc = -EINVAL;
	MUTATE((void)0);                         /* the device refuses its part */
	dev2.load_rc = 0;
#undef MUTATE
	free(b);
	sbuf_free(&out);
	virtio_pci_destroy(g);
	f->pb.devs[2] = NULL;
}

/* A guest can never make a queue larger than queue_max; a snapshot claiming
 * one is corrupt (devices size their bookkeeping by queue_max). */
static void test_load_refuses_queue_above_max(void **state)
{
	struct fx *f = *state;
	struct fdev dev2;
	struct sbuf out = { 0 };

	bring_up(f);
	virtio_pci_save(f->vp, &out);
	struct virtio_pci *g = second(f, &dev2);
	uint8_t *b = malloc(out.len);
	assert_non_null(b);
	memcpy(b, out.data, out.len);
	put32(b + SV_Q_SIZE(0), 2 * QMAX);
	int rc = load_bytes(g, b, out.len);
	uint16_t size = g->vdev.vqs[0].size;
	free(b);
	sbuf_free(&out);
	virtio_pci_destroy(g);
	f->pb.devs[2] = NULL;
	assert_int_equal(rc, -EINVAL);
	assert_true(size <= QMAX);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_pci_identity_and_caps),
		T(test_create_rejects_bad_ops),
		T(test_create_failure_leaves_fd0_open),
		T(test_msix_vectors_wired),
		T(test_device_features),
		T(test_features_ok_accepted),
		T(test_features_ok_refused_unoffered),
		T(test_features_ok_refused_without_version1),
		T(test_features_frozen_after_features_ok),
		T(test_reset_clears_everything),
		T(test_driver_ok_once),
		T(test_driver_ok_without_features_ok),
		T(test_activate_failure_needs_reset),
		T(test_queue_setup),
		T(test_queue_size_clamped_and_checked),
		T(test_queue_in_hole_needs_reset),
		T(test_queue_frozen_while_enabled),
		T(test_queue_select_out_of_range),
		T(test_common_odd_widths),
		T(test_common_bounds),
		T(test_device_config_bounds),
		T(test_isr_read_to_clear),
		T(test_queue_interrupt_via_msix),
		T(test_vector_numbers_checked),
		T(test_notify_slow_path),
		T(test_notify_ioeventfd_path),
		T(test_notify_before_driver_ok),
		T(test_bar_move_moves_ioeventfds),
		T(test_ioeventfd_partial_failure_rolls_back),
		T(test_destroy_detaches),
		T(test_kick_fd_handover),
		T(test_save_load_roundtrip),
		T(test_save_load_mid_setup),
		T(test_save_load_mid_negotiation),
		T(test_load_refuses_bad_state),
		T(test_load_refuses_queue_above_max),
	};
#undef T

	return cmocka_run_group_tests_name("virtio_pci", tests, NULL, NULL);
}
