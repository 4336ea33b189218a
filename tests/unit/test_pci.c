/* Unit tests for PCI bus 0 (pci/pci.c) and MSI-X (pci/msix.c).
 *
 * The bus is set up as the VM does it: ports 0xcf8/0xcfc on a PIO bus, ECAM
 * and both BAR windows on an MMIO bus, and every guest access goes through
 * bus_access() exactly as a vCPU exit would. KVM is not available here: this
 * file defines kvm_vm_msi_route_alloc/_set, kvm_vm_irqfd and
 * kvm_vm_ioeventfd itself (the linker then never pulls hv/kvm.c out of the
 * core archive) and records what MSI-X asks of KVM. A vector is "delivered"
 * when its irqfd (an eventfd) was written, which the test reads back. */
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
#include "vm/bus.h"

#define MMIO64_BASE 0x200000000ULL /* 8 GiB: "above RAM" */

/* ---- fake KVM ---- */

#define FK_MAX 256

static struct fake_kvm {
	int next_gsi;
	int alloc_fail_at; /* route_alloc call number that fails (0: never) */
	int alloc_calls;
	int route_sets;
	uint64_t route_addr[KVM_MAX_GSI];
	uint32_t route_data[KVM_MAX_GSI];
	struct fk_irqfd {
		int fd;
		uint32_t gsi;
		bool assigned;
	} irqfd[FK_MAX];
	int nirqfd;
	bool irqfd_refuse; /* KVM will not attach an irqfd */
	int signals;       /* KVM_SIGNAL_MSI calls, and the last one's message */
	uint64_t signal_addr;
	uint32_t signal_data;
} fk;

static void fk_reset(void)
{
	memset(&fk, 0, sizeof(fk));
	fk.next_gsi = KVM_IRQCHIP_PINS;
}

int kvm_vm_msi_route_alloc(struct kvm_vm *k)
{
	(void)k;
	fk.alloc_calls++;
	if (fk.alloc_fail_at && fk.alloc_calls == fk.alloc_fail_at)
		return -ENOSPC;
	return fk.next_gsi < KVM_MAX_GSI ? fk.next_gsi++ : -ENOSPC;
}

int kvm_vm_msi_route_set(struct kvm_vm *k, uint32_t gsi, uint64_t addr, uint32_t data)
{
	(void)k;
	if (gsi >= KVM_MAX_GSI)
		return -EINVAL;
	fk.route_sets++;
	fk.route_addr[gsi] = addr;
	fk.route_data[gsi] = data;
	return 0;
}

int kvm_vm_signal_msi(struct kvm_vm *k, uint64_t addr, uint32_t data)
{
	(void)k;
	fk.signals++;
	fk.signal_addr = addr;
	fk.signal_data = data;
	return 1;
}

int kvm_vm_irqfd(struct kvm_vm *k, int fd, uint32_t gsi, bool assign)
{
	(void)k;
	if (assign && fk.irqfd_refuse)
		return -ENOSPC;
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
	(void)addr;
	(void)len;
	(void)fd;
	(void)assign;
	return 0;
}

static int fk_irqfd_assigned(int fd, uint32_t gsi)
{
	int n = 0;
	for (int i = 0; i < fk.nirqfd; i++)
		n += fk.irqfd[i].fd == fd && fk.irqfd[i].gsi == gsi && fk.irqfd[i].assigned;
	return n;
}

/* How many times the eventfd was signalled since the last call (0 if never). */
static uint64_t efd_take(int fd)
{
	uint64_t v = 0;
	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

/* ---- a test device: BAR0 32-bit 4 KiB, BAR2 64-bit prefetchable 16 KiB ---- */

struct bar_ctx {
	struct tdev *t;
	int bar;
};

struct tdev {
	struct pci_dev d;
	struct bar_ctx ctx[6];
	/* last BAR access */
	int io_calls;
	int io_bar;
	uint64_t io_off;
	uint32_t io_len;
	bool io_write;
	uint8_t io_data[8];
	/* bar_mapped callbacks */
	struct map_ev {
		int bar;
		uint64_t addr;
		bool mapped;
	} ev[64];
	int nev;
	/* cfg_written callbacks */
	int cfgw_calls;
	uint32_t cfgw_off, cfgw_len;
};

static void tdev_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct bar_ctx *c = opaque;
	struct tdev *t = c->t;

	t->io_calls++;
	t->io_bar = c->bar;
	t->io_off = off;
	t->io_len = len;
	t->io_write = is_write;
	if (is_write) {
		memcpy(t->io_data, data, len < 8 ? len : 8);
	} else {
		for (uint32_t i = 0; i < len; i++)
			data[i] = (uint8_t)(0xa0 + c->bar + i);
	}
}

static void tdev_bar_mapped(struct pci_dev *d, int i, uint64_t addr, bool mapped)
{
	struct tdev *t = d->opaque;

	if (t->nev < 64)
		t->ev[t->nev++] = (struct map_ev){ i, addr, mapped };
}

static void tdev_cfg_written(struct pci_dev *d, uint32_t off, uint32_t len)
{
	struct tdev *t = d->opaque;
	t->cfgw_calls++;
	t->cfgw_off = off;
	t->cfgw_len = len;
}

static void tdev_init(struct tdev *t)
{
	memset(t, 0, sizeof(*t));
	pci_dev_init(&t->d, "tdev", 0x1234, 0x5678, 0x0b4001, 7, 0xabcd, 0xef01);
	t->d.opaque = t;
	t->d.bar_mapped = tdev_bar_mapped;
	t->d.cfg_written = tdev_cfg_written;
	for (int i = 0; i < 6; i++)
		t->ctx[i] = (struct bar_ctx){ t, i };
	pci_dev_set_bar(&t->d, 0, 0x1000, false, false, tdev_io, &t->ctx[0]);
	pci_dev_set_bar(&t->d, 2, 0x4000, true, true, tdev_io, &t->ctx[2]);
}

struct fx {
	struct bus pio, mmio;
	struct pci_bus pb;
	struct tdev t;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	fk_reset();
	bus_init(&f->pio, "pio");
	bus_init(&f->mmio, "mmio");
	if (pci_bus_init(&f->pb, &f->pio, &f->mmio, MMIO64_BASE)) {
		free(f);
		return -1;
	}
	tdev_init(&f->t);
	if (pci_bus_add(&f->pb, &f->t.d)) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	pci_bus_destroy(&f->pb);
	free(f);
	return 0;
}

/* ---- access helpers (all through the buses, as the guest does) ---- */

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

static uint64_t pio_rd(struct fx *f, uint16_t port, uint32_t len)
{
	uint8_t d[8];
	memset(d, 0x5a, sizeof(d));
	bus_access(&f->pio, port, d, len, false);
	return le(d, len);
}

static void pio_wr(struct fx *f, uint16_t port, uint32_t len, uint64_t v)
{
	uint8_t d[8];
	put_le(d, v, len);
	bus_access(&f->pio, port, d, len, true);
}

static uint64_t mmio_rd(struct fx *f, uint64_t addr, uint32_t len)
{
	uint8_t d[8];
	memset(d, 0x5a, sizeof(d));
	bus_access(&f->mmio, addr, d, len, false);
	return le(d, len);
}

static void mmio_wr(struct fx *f, uint64_t addr, uint32_t len, uint64_t v)
{
	uint8_t d[8];
	put_le(d, v, len);
	bus_access(&f->mmio, addr, d, len, true);
}

static uint64_t ecam(uint8_t slot, uint8_t fn, uint32_t off)
{
	return PCI_ECAM_BASE + ((uint64_t)slot << 15) + ((uint64_t)fn << 12) + off;
}

static uint32_t cfg_rd(struct fx *f, uint8_t slot, uint32_t off, uint32_t len)
{
	uint8_t d[4] = { 0x5a, 0x5a, 0x5a, 0x5a };
	pci_cfg_access(&f->pb, slot, 0, off, d, len, false);
	return (uint32_t)le(d, len);
}

static void cfg_wr(struct fx *f, uint8_t slot, uint32_t off, uint32_t len, uint32_t v)
{
	uint8_t d[4];
	put_le(d, v, len);
	pci_cfg_access(&f->pb, slot, 0, off, d, len, true);
}

static uint32_t cf8(uint8_t bus, uint8_t slot, uint8_t fn, uint8_t reg)
{
	return 0x80000000u | (uint32_t)bus << 16 | (uint32_t)slot << 11 | (uint32_t)fn << 8 | reg;
}

/* ---- configuration mechanism #1: ports 0xcf8/0xcfc ---- */

static void test_cf8_host_bridge(void **state)
{
	struct fx *f = *state;

	pio_wr(f, 0xcf8, 4, cf8(0, 0, 0, 0));
	assert_int_equal(pio_rd(f, 0xcf8, 4), cf8(0, 0, 0, 0));
	/* Red Hat generic PCIe host bridge 1b36:0008, class 06.00.00 */
	assert_int_equal(pio_rd(f, 0xcfc, 4), 0x00081b36);
	assert_int_equal(pio_rd(f, 0xcfc, 2), 0x1b36);
	assert_int_equal(pio_rd(f, 0xcfe, 2), 0x0008);
	assert_int_equal(pio_rd(f, 0xcfd, 1), 0x1b);
	pio_wr(f, 0xcf8, 4, cf8(0, 0, 0, 0x08));
	assert_int_equal(pio_rd(f, 0xcfc, 4) >> 8, 0x060000);
	/* the low two bits of the register number are ignored */
	pio_wr(f, 0xcf8, 4, cf8(0, 0, 0, 0x03));
	assert_int_equal(pio_rd(f, 0xcfc, 4), 0x00081b36);
	/* the test device in slot 1 */
	pio_wr(f, 0xcf8, 4, cf8(0, 1, 0, 0));
	assert_int_equal(pio_rd(f, 0xcfc, 4), 0x56781234);
	pio_wr(f, 0xcf8, 4, cf8(0, 1, 0, 0x08));
	assert_int_equal(pio_rd(f, 0xcfc, 4), 0x0b400107);
	pio_wr(f, 0xcf8, 4, cf8(0, 1, 0, 0x2c));
	assert_int_equal(pio_rd(f, 0xcfc, 4), 0xef01abcd);
}

static void test_cf8_absent(void **state)
{
	struct fx *f = *state;

	/* enable bit clear */
	pio_wr(f, 0xcf8, 4, cf8(0, 1, 0, 0) & 0x7fffffff);
	assert_int_equal(pio_rd(f, 0xcfc, 4), 0xffffffff);
	/* other buses, functions and empty slots read as all-ones */
	pio_wr(f, 0xcf8, 4, cf8(1, 1, 0, 0));
	assert_int_equal(pio_rd(f, 0xcfc, 4), 0xffffffff);
	pio_wr(f, 0xcf8, 4, cf8(0, 1, 1, 0));
	assert_int_equal(pio_rd(f, 0xcfc, 4), 0xffffffff);
	pio_wr(f, 0xcf8, 4, cf8(0, 31, 0, 0));
	assert_int_equal(pio_rd(f, 0xcfc, 4), 0xffffffff);
	/* writes there go nowhere (and do not crash) */
	pio_wr(f, 0xcfc, 4, 0x12345678);
	pio_wr(f, 0xcf8, 4, cf8(1, 1, 0, PCI_COMMAND));
	pio_wr(f, 0xcfc, 2, 0);
	assert_int_equal(cfg_rd(f, 1, PCI_COMMAND, 2) & PCI_COMMAND_MEMORY, PCI_COMMAND_MEMORY);
}

static void test_cf8_odd_widths(void **state)
{
	struct fx *f = *state;

	pio_wr(f, 0xcf8, 4, cf8(0, 1, 0, 0));
	/* the address register takes dword accesses only */
	pio_wr(f, 0xcf8, 2, 0);
	pio_wr(f, 0xcf8, 1, 0);
	assert_int_equal(pio_rd(f, 0xcf8, 4), cf8(0, 1, 0, 0));
	assert_int_equal(pio_rd(f, 0xcf8, 2), 0xffff);
	assert_int_equal(pio_rd(f, 0xcf9, 1), 0xff);
	/* a data access running past 0xcff reads all-ones, writes are dropped */
	assert_int_equal(pio_rd(f, 0xcfe, 4), 0xffffffff);
	assert_int_equal(pio_rd(f, 0xcff, 2), 0xffff);
	pio_wr(f, 0xcf8, 4, cf8(0, 1, 0, PCI_INT_LINE));
	pio_wr(f, 0xcfd, 4, 0xffffffff);
	assert_int_equal(cfg_rd(f, 1, PCI_INT_LINE, 4), 0x00000000);
	/* a byte write in the middle of the window lands on that byte */
	pio_wr(f, 0xcfc, 1, 0x0b);
	assert_int_equal(cfg_rd(f, 1, PCI_INT_LINE, 1), 0x0b);
}

/* ---- ECAM ---- */

static void test_ecam(void **state)
{
	struct fx *f = *state;
	uint8_t d[8];

	assert_int_equal(mmio_rd(f, ecam(0, 0, 0), 4), 0x00081b36);
	assert_int_equal(mmio_rd(f, ecam(1, 0, 0), 4), 0x56781234);
	assert_int_equal(mmio_rd(f, ecam(1, 0, 2), 2), 0x5678);
	assert_int_equal(mmio_rd(f, ecam(1, 0, 0x0e), 1), 0x00); /* header type 0, single function */
	/* extended space exists and is empty */
	assert_int_equal(mmio_rd(f, ecam(1, 0, 0x100), 4), 0);
	assert_int_equal(mmio_rd(f, ecam(1, 0, 0xffc), 4), 0);
	/* absent slot / function */
	assert_int_equal(mmio_rd(f, ecam(2, 0, 0), 4), 0xffffffff);
	assert_int_equal(mmio_rd(f, ecam(1, 3, 0), 4), 0xffffffff);
	/* running off the end of the 4 KiB space, or wider than a dword */
	assert_int_equal(mmio_rd(f, ecam(1, 0, 0xffe), 4), 0xffffffff);
	memset(d, 0, sizeof(d));
	bus_access(&f->mmio, ecam(1, 0, 0), d, 8, false);
	for (int i = 0; i < 8; i++)
		assert_int_equal(d[i], 0xff);
	/* the last slot of the ECAM range */
	assert_int_equal(mmio_rd(f, PCI_ECAM_BASE + PCI_ECAM_SIZE - 4, 4), 0xffffffff);
	/* ECAM writes reach the same registers */
	mmio_wr(f, ecam(1, 0, PCI_INT_LINE), 1, 0x42);
	assert_int_equal(cfg_rd(f, 1, PCI_INT_LINE, 1), 0x42);
	pio_wr(f, 0xcf8, 4, cf8(0, 1, 0, PCI_INT_LINE));
	assert_int_equal(pio_rd(f, 0xcfc, 1), 0x42);
}

static void test_cfg_access_bounds(void **state)
{
	struct fx *f = *state;
	uint8_t d[8];

	memset(d, 0, sizeof(d));
	pci_cfg_access(&f->pb, 1, 0, PCI_CFG_SIZE, d, 4, false);
	assert_int_equal(le(d, 4), 0xffffffff);
	memset(d, 0, sizeof(d));
	pci_cfg_access(&f->pb, 1, 0, PCI_CFG_SIZE - 2, d, 4, false);
	assert_int_equal(le(d, 4), 0xffffffff);
	memset(d, 0, sizeof(d));
	pci_cfg_access(&f->pb, 1, 0, 0, d, 5, false);
	assert_int_equal(le(d, 5), 0xffffffffffULL);
	memset(d, 0, sizeof(d));
	pci_cfg_access(&f->pb, 1, 0, 0, d, 0, false);
	assert_int_equal(d[0], 0); /* nothing touched */
	memset(d, 0, sizeof(d));
	pci_cfg_access(&f->pb, PCI_MAX_DEVS, 0, 0, d, 4, false);
	assert_int_equal(le(d, 4), 0xffffffff);
	pci_cfg_access(&f->pb, 255, 0, 0, d, 4, false);
	assert_int_equal(le(d, 4), 0xffffffff);
	/* out-of-range writes are dropped */
	memset(d, 0, sizeof(d));
	pci_cfg_access(&f->pb, 1, 0, PCI_CFG_SIZE - 1, d, 2, true);
	pci_cfg_access(&f->pb, 1, 0, PCI_COMMAND, d, 8, true);
	assert_int_equal(cfg_rd(f, 1, PCI_COMMAND, 2) & PCI_COMMAND_MEMORY, PCI_COMMAND_MEMORY);
	assert_int_equal(f->t.cfgw_calls, 0);
}

/* ---- header registers ---- */

static void test_header_write_masks(void **state)
{
	struct fx *f = *state;

	/* identification is read-only */
	cfg_wr(f, 1, 0, 4, 0xffffffff);
	assert_int_equal(cfg_rd(f, 1, 0, 4), 0x56781234);
	cfg_wr(f, 1, 0x08, 4, 0);
	assert_int_equal(cfg_rd(f, 1, 0x08, 4), 0x0b400107);
	cfg_wr(f, 1, PCI_HEADER_TYPE, 1, 0x80);
	assert_int_equal(cfg_rd(f, 1, PCI_HEADER_TYPE, 1), 0);
	cfg_wr(f, 1, PCI_SUBSYS_VENDOR, 4, 0);
	assert_int_equal(cfg_rd(f, 1, PCI_SUBSYS_VENDOR, 4), 0xef01abcd);
	/* command: IO, MEM, MASTER, PARITY, SERR, INTX_DISABLE only */
	cfg_wr(f, 1, PCI_COMMAND, 2, 0xffff);
	assert_int_equal(cfg_rd(f, 1, PCI_COMMAND, 2), 0x0547);
	/* status is read-only here (no capabilities on this device) */
	cfg_wr(f, 1, PCI_STATUS, 2, 0xffff);
	assert_int_equal(cfg_rd(f, 1, PCI_STATUS, 2), 0);
	/* cache line, latency timer, interrupt line writable; pin is not */
	cfg_wr(f, 1, 0x0c, 2, 0xa55a);
	assert_int_equal(cfg_rd(f, 1, 0x0c, 2), 0xa55a);
	cfg_wr(f, 1, PCI_INT_LINE, 2, 0xffff);
	assert_int_equal(cfg_rd(f, 1, PCI_INT_LINE, 2), 0x00ff);
	/* capability pointer and expansion ROM BAR are read-only zero */
	cfg_wr(f, 1, PCI_CAP_PTR, 1, 0x40);
	assert_int_equal(cfg_rd(f, 1, PCI_CAP_PTR, 1), 0);
	cfg_wr(f, 1, 0x30, 4, 0xffffffff);
	assert_int_equal(cfg_rd(f, 1, 0x30, 4), 0);
	/* extended space: nothing writable */
	cfg_wr(f, 1, 0x100, 4, 0xffffffff);
	assert_int_equal(cfg_rd(f, 1, 0x100, 4), 0);
	/* cfg_written sees every write that reached the device */
	assert_true(f->t.cfgw_calls >= 10);
	assert_int_equal(f->t.cfgw_off, 0x100);
	assert_int_equal(f->t.cfgw_len, 4);
}

/* ---- BARs ---- */

static void test_bar_assignment(void **state)
{
	struct fx *f = *state;

	assert_int_equal(f->t.d.slot, 1);
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0, 4), (uint32_t)PCI_MMIO32_BASE);
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0 + 4, 4), 0); /* BAR1 unused */
	/* BAR2: 64-bit (type 10b) prefetchable, in the 64-bit window */
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0 + 8, 4), (uint32_t)MMIO64_BASE | 0xc);
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0 + 12, 4), (uint32_t)(MMIO64_BASE >> 32));
	/* firmware left memory decoding on, and both BARs are mapped */
	assert_int_equal(cfg_rd(f, 1, PCI_COMMAND, 2) & PCI_COMMAND_MEMORY, PCI_COMMAND_MEMORY);
	assert_int_equal(f->t.nev, 2);
	assert_int_equal(f->t.ev[0].bar, 0);
	assert_int_equal(f->t.ev[0].addr, PCI_MMIO32_BASE);
	assert_true(f->t.ev[0].mapped);
	assert_int_equal(f->t.ev[1].bar, 2);
	assert_int_equal(f->t.ev[1].addr, MMIO64_BASE);
	assert_true(f->t.ev[1].mapped);

	/* a second device's BARs follow, aligned to their sizes */
	struct tdev *t2 = calloc(1, sizeof(*t2));
	assert_non_null(t2);
	tdev_init(t2);
	pci_dev_set_bar(&t2->d, 0, 0x10000, false, false, tdev_io, &t2->ctx[0]);
	assert_int_equal(pci_bus_add(&f->pb, &t2->d), 0);
	assert_int_equal(t2->d.slot, 2);
	assert_int_equal(cfg_rd(f, 2, PCI_BAR0, 4), (uint32_t)PCI_MMIO32_BASE + 0x10000);
	assert_int_equal(cfg_rd(f, 2, PCI_BAR0 + 8, 4), (uint32_t)(MMIO64_BASE + 0x4000) | 0xc);
	f->pb.devs[2] = NULL;
	free(t2);
}

static void test_bar_sizing_32(void **state)
{
	struct fx *f = *state;

	cfg_wr(f, 1, PCI_COMMAND, 2, 0); /* as Linux does while sizing */
	cfg_wr(f, 1, PCI_BAR0, 4, 0xffffffff);
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0, 4), 0xfffff000);
	cfg_wr(f, 1, PCI_BAR0, 4, (uint32_t)PCI_MMIO32_BASE);
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0, 4), (uint32_t)PCI_MMIO32_BASE);
	/* low bits of an address are dropped, flag bits are read-only */
	cfg_wr(f, 1, PCI_BAR0, 4, (uint32_t)PCI_MMIO32_BASE | 0xfff);
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0, 4), (uint32_t)PCI_MMIO32_BASE);
	/* byte writes assemble into the dword */
	cfg_wr(f, 1, PCI_BAR0 + 3, 1, 0xd0);
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0, 4), 0xd0000000);
	cfg_wr(f, 1, PCI_BAR0 + 1, 2, 0x1234);
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0, 4), 0xd0123000);
}

static void test_bar_sizing_64(void **state)
{
	struct fx *f = *state;

	cfg_wr(f, 1, PCI_COMMAND, 2, 0);
	cfg_wr(f, 1, PCI_BAR0 + 8, 4, 0xffffffff);
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0 + 8, 4), 0xffffc00c);
	cfg_wr(f, 1, PCI_BAR0 + 12, 4, 0xffffffff);
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0 + 12, 4), 0xffffffff);
	/* the low half still shows the size after the high half was written */
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0 + 8, 4), 0xffffc00c);
	cfg_wr(f, 1, PCI_BAR0 + 8, 4, 0x00010000);
	cfg_wr(f, 1, PCI_BAR0 + 12, 4, 0x3);
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0 + 8, 4), 0x0001000c);
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0 + 12, 4), 3);
}

static void test_unimplemented_bars(void **state)
{
	struct fx *f = *state;

	/* BAR1, BAR4, BAR5 are not implemented: all-ones sizing reads 0 */
	static const int idx[] = { 1, 4, 5 };
	for (unsigned k = 0; k < 3; k++) {
		cfg_wr(f, 1, PCI_BAR0 + 4 * idx[k], 4, 0xffffffff);
		assert_int_equal(cfg_rd(f, 1, PCI_BAR0 + 4 * idx[k], 4), 0);
	}
	/* and touching them did not move the real ones */
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0, 4), (uint32_t)PCI_MMIO32_BASE);
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0 + 8, 4), (uint32_t)MMIO64_BASE | 0xc);
	/* a dword write straddling BAR0/BAR1 touches both; BAR1 stays 0 */
	cfg_wr(f, 1, PCI_BAR0 + 2, 4, 0xffffffff);
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0, 4), 0xffff0000);
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0 + 4, 4), 0);
}

static void test_bar_dispatch(void **state)
{
	struct fx *f = *state;

	assert_int_equal(mmio_rd(f, PCI_MMIO32_BASE + 0x10, 4), 0xa3a2a1a0);
	assert_int_equal(f->t.io_calls, 1);
	assert_int_equal(f->t.io_bar, 0);
	assert_int_equal(f->t.io_off, 0x10);
	assert_int_equal(f->t.io_len, 4);
	mmio_wr(f, MMIO64_BASE + 0x3ff8, 8, 0x1122334455667788ULL);
	assert_int_equal(f->t.io_calls, 2);
	assert_int_equal(f->t.io_bar, 2);
	assert_int_equal(f->t.io_off, 0x3ff8);
	assert_true(f->t.io_write);
	assert_int_equal(le(f->t.io_data, 8), 0x1122334455667788ULL);
	/* last byte of a BAR, and an access running past its end */
	assert_int_equal(mmio_rd(f, PCI_MMIO32_BASE + 0xfff, 1), 0xa0);
	assert_int_equal(f->t.io_calls, 3);
	assert_int_equal(mmio_rd(f, PCI_MMIO32_BASE + 0xffe, 4), 0xffffffff);
	assert_int_equal(mmio_rd(f, MMIO64_BASE + 0x3ffc, 8), UINT64_MAX);
	mmio_wr(f, PCI_MMIO32_BASE + 0xffd, 4, 0);
	/* window space no BAR claims */
	assert_int_equal(mmio_rd(f, PCI_MMIO32_BASE + 0x1000, 4), 0xffffffff);
	assert_int_equal(mmio_rd(f, PCI_MMIO32_BASE + PCI_MMIO32_SIZE - 4, 4), 0xffffffff);
	assert_int_equal(mmio_rd(f, MMIO64_BASE + PCI_MMIO64_SIZE - 8, 8), UINT64_MAX);
	mmio_wr(f, PCI_MMIO32_BASE + 0x2000, 4, 0);
	assert_int_equal(f->t.io_calls, 3);
}

static void test_bar_move_remaps(void **state)
{
	struct fx *f = *state;
	uint64_t nb = PCI_MMIO32_BASE + 0x100000;

	f->t.nev = 0;
	cfg_wr(f, 1, PCI_BAR0, 4, (uint32_t)nb);
	assert_int_equal(f->t.nev, 2);
	assert_int_equal(f->t.ev[0].bar, 0);
	assert_false(f->t.ev[0].mapped);
	assert_int_equal(f->t.ev[0].addr, PCI_MMIO32_BASE);
	assert_true(f->t.ev[1].mapped);
	assert_int_equal(f->t.ev[1].addr, nb);
	assert_int_equal(mmio_rd(f, nb + 8, 2), 0xa1a0);
	assert_int_equal(f->t.io_off, 8);
	int calls = f->t.io_calls;
	assert_int_equal(mmio_rd(f, PCI_MMIO32_BASE + 8, 2), 0xffff);
	assert_int_equal(f->t.io_calls, calls);

	/* rewriting the same address is not a move */
	f->t.nev = 0;
	cfg_wr(f, 1, PCI_BAR0, 4, (uint32_t)nb);
	assert_int_equal(f->t.nev, 0);

	/* 64-bit BAR moved to another place in the 64-bit window, low half first */
	uint64_t nb64 = MMIO64_BASE + 0x100010000ULL;
	cfg_wr(f, 1, PCI_BAR0 + 8, 4, (uint32_t)nb64);
	cfg_wr(f, 1, PCI_BAR0 + 12, 4, (uint32_t)(nb64 >> 32));
	assert_true(f->t.nev >= 2);
	assert_int_equal(f->t.ev[f->t.nev - 1].bar, 2);
	assert_true(f->t.ev[f->t.nev - 1].mapped);
	assert_int_equal(f->t.ev[f->t.nev - 1].addr, nb64);
	assert_int_equal(mmio_rd(f, nb64 + 0x100, 1), 0xa2);
	assert_int_equal(f->t.io_bar, 2);
	assert_int_equal(f->t.io_off, 0x100);
	assert_int_equal(mmio_rd(f, MMIO64_BASE + 0x100, 1), 0xff);
	/* every unmap names where the BAR was mapped before */
	uint64_t at = MMIO64_BASE;
	for (int i = 0; i < f->t.nev; i++) {
		if (f->t.ev[i].bar != 2)
			continue;
		if (!f->t.ev[i].mapped)
			assert_int_equal(f->t.ev[i].addr, at);
		else
			at = f->t.ev[i].addr;
	}

	/* a 64-bit BAR may live in the 32-bit window too */
	cfg_wr(f, 1, PCI_BAR0 + 12, 4, 0);
	cfg_wr(f, 1, PCI_BAR0 + 8, 4, (uint32_t)(PCI_MMIO32_BASE + 0x200000));
	assert_int_equal(mmio_rd(f, PCI_MMIO32_BASE + 0x200000, 1), 0xa2);
	assert_int_equal(f->t.io_bar, 2);
}

static void test_memory_decode_gating(void **state)
{
	struct fx *f = *state;

	f->t.nev = 0;
	cfg_wr(f, 1, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
	assert_int_equal(f->t.nev, 2);
	assert_false(f->t.ev[0].mapped);
	assert_false(f->t.ev[1].mapped);
	assert_int_equal(mmio_rd(f, PCI_MMIO32_BASE, 4), 0xffffffff);
	assert_int_equal(mmio_rd(f, MMIO64_BASE, 4), 0xffffffff);
	mmio_wr(f, PCI_MMIO32_BASE, 4, 0);
	assert_int_equal(f->t.io_calls, 0);
	/* BARs may be moved while decoding is off: nothing is mapped */
	cfg_wr(f, 1, PCI_BAR0, 4, (uint32_t)PCI_MMIO32_BASE + 0x8000);
	assert_int_equal(f->t.nev, 2);
	/* decoding back on: mapped where the BARs are now */
	cfg_wr(f, 1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	assert_int_equal(f->t.nev, 4);
	assert_true(f->t.ev[2].mapped && f->t.ev[3].mapped);
	assert_int_equal(f->t.ev[2].addr, PCI_MMIO32_BASE + 0x8000);
	assert_int_equal(f->t.ev[3].addr, MMIO64_BASE);
	assert_int_equal(mmio_rd(f, PCI_MMIO32_BASE + 0x8000, 1), 0xa0);
	/* a byte write to the command register's high byte leaves decoding alone */
	cfg_wr(f, 1, PCI_COMMAND + 1, 1, 0x04);
	assert_int_equal(f->t.nev, 4);
	assert_int_equal(cfg_rd(f, 1, PCI_COMMAND, 2), 0x0406);
}

static void test_sizing_pattern_not_decoded(void **state)
{
	struct fx *f = *state;

	/* a guest that sizes BARs with decoding left on: the all-ones pattern
	 * must not become a decoded address */
	f->t.nev = 0;
	cfg_wr(f, 1, PCI_BAR0, 4, 0xffffffff);
	assert_int_equal(f->t.nev, 1);
	assert_false(f->t.ev[0].mapped);
	assert_false(f->t.d.decoding[0]);
	cfg_wr(f, 1, PCI_BAR0 + 8, 4, 0xffffffff);
	cfg_wr(f, 1, PCI_BAR0 + 12, 4, 0xffffffff);
	assert_false(f->t.d.decoding[2]);
	/* nothing answers at the top of the address space */
	assert_int_equal(mmio_rd(f, 0xfffff000ULL, 4), 0xffffffff);
	assert_int_equal(f->t.io_calls, 0);
	/* restoring the addresses maps them again */
	cfg_wr(f, 1, PCI_BAR0, 4, (uint32_t)PCI_MMIO32_BASE);
	cfg_wr(f, 1, PCI_BAR0 + 8, 4, (uint32_t)MMIO64_BASE);
	cfg_wr(f, 1, PCI_BAR0 + 12, 4, (uint32_t)(MMIO64_BASE >> 32));
	assert_true(f->t.d.decoding[0]);
	assert_true(f->t.d.decoding[2]);
	assert_int_equal(f->t.d.mapped_at[0], PCI_MMIO32_BASE);
	assert_int_equal(f->t.d.mapped_at[2], MMIO64_BASE);
	assert_int_equal(mmio_rd(f, MMIO64_BASE, 1), 0xa2);
}

static void test_bar_address_zero_or_wrapping(void **state)
{
	struct fx *f = *state;

	/* address 0 is "unassigned": not decoded */
	cfg_wr(f, 1, PCI_BAR0, 4, 0);
	assert_false(f->t.d.decoding[0]);
	/* the top page of a 4 KiB BAR is its own sizing pattern: not decoded;
	 * the page below it ends exactly at 4 GiB and is */
	cfg_wr(f, 1, PCI_BAR0, 4, 0xfffff000);
	assert_false(f->t.d.decoding[0]);
	cfg_wr(f, 1, PCI_BAR0, 4, 0xffffe000);
	assert_true(f->t.d.decoding[0]);
	assert_int_equal(f->t.d.mapped_at[0], 0xffffe000);
	/* a 64-bit BAR is decoded only below 2^52 (the largest physical address) */
	cfg_wr(f, 1, PCI_BAR0 + 8, 4, 0xffffc000);
	cfg_wr(f, 1, PCI_BAR0 + 12, 4, 0x00100000);
	assert_false(f->t.d.decoding[2]);
	cfg_wr(f, 1, PCI_BAR0 + 12, 4, 0x80000000);
	assert_false(f->t.d.decoding[2]);
	cfg_wr(f, 1, PCI_BAR0 + 12, 4, 0x000fffff); /* ends exactly at 2^52 */
	assert_true(f->t.d.decoding[2]);
	assert_int_equal(f->t.d.mapped_at[2], 0x000fffffffffc000ULL);
}

/* ---- capabilities ---- */

static void test_capability_list(void **state)
{
	struct fx *f = *state;
	struct tdev *t = calloc(1, sizeof(*t));

	(void)f;
	assert_non_null(t);
	tdev_init(t);
	assert_int_equal(pci_get16(t->d.cfg + PCI_STATUS) & PCI_STATUS_CAP_LIST, 0);
	assert_int_equal(pci_dev_add_cap(&t->d, 0x09, 1), 0); /* shorter than a header */
	uint8_t a = pci_dev_add_cap(&t->d, 0x09, 6);
	uint8_t b = pci_dev_add_cap(&t->d, 0x11, 12);
	uint8_t c = pci_dev_add_cap(&t->d, 0x05, 14);
	assert_int_equal(a, 0x40);
	assert_int_equal(b, 0x48); /* dword-aligned after 0x46 */
	assert_int_equal(c, 0x54);
	assert_int_equal(t->d.cfg[PCI_CAP_PTR], 0x40);
	assert_int_equal(t->d.cfg[a], 0x09);
	assert_int_equal(t->d.cfg[a + 1], b);
	assert_int_equal(t->d.cfg[b], 0x11);
	assert_int_equal(t->d.cfg[b + 1], c);
	assert_int_equal(t->d.cfg[c], 0x05);
	assert_int_equal(t->d.cfg[c + 1], 0);
	assert_int_equal(pci_get16(t->d.cfg + PCI_STATUS) & PCI_STATUS_CAP_LIST,
	                 PCI_STATUS_CAP_LIST);
	/* no room left for a capability that would run past 0xff */
	assert_int_equal(pci_dev_add_cap(&t->d, 0x10, 0xb0), 0);
	assert_int_equal(t->d.cfg[c + 1], 0);
	free(t);
}

static void test_capability_list_exactly_full(void **state)
{
	static struct tdev t; /* static: a failed assertion must not leak it */
	uint8_t before[256];

	(void)state;
	tdev_init(&t);
	/* a capability that ends exactly at the end of the standard space */
	assert_int_equal(pci_dev_add_cap(&t.d, 0x09, 0xc0), 0x40);
	/* the space is full: the next one must fail without touching anything.
	 * Today cap_end (uint8_t) wraps to 0, the next capability goes to offset
	 * 0 and overwrites the vendor ID; 0 is returned as if nothing happened. */
	memcpy(before, t.d.cfg, sizeof(before));
	assert_int_equal(pci_dev_add_cap(&t.d, 0x11, 12), 0);
	assert_int_equal(pci_get16(t.d.cfg + PCI_VENDOR_ID), 0x1234); /* vendor ID intact */
	assert_memory_equal(t.d.cfg, before, sizeof(before));
}

/* ---- bus capacity ---- */

static void test_bus_full(void **state)
{
	struct fx *f = *state;
	struct pci_dev *d = calloc(PCI_MAX_DEVS, sizeof(*d));

	assert_non_null(d);
	int n = 0;
	for (int i = 0; i < PCI_MAX_DEVS; i++) {
		pci_dev_init(&d[i], "plain", 0x1af4, 0x1000, 0xff0000, 0, 0, 0);
		if (pci_bus_add(&f->pb, &d[i]) == 0)
			n++;
	}
	assert_int_equal(n, PCI_MAX_DEVS - 2); /* host bridge + tdev took two slots */
	assert_int_equal(d[PCI_MAX_DEVS - 3].slot, PCI_MAX_DEVS - 1);
	struct pci_dev extra;
	pci_dev_init(&extra, "extra", 0x1af4, 0x1000, 0xff0000, 0, 0, 0);
	assert_int_equal(pci_bus_add(&f->pb, &extra), -ENOSPC);
	for (int s = 2; s < PCI_MAX_DEVS; s++)
		f->pb.devs[s] = NULL;
	free(d);
}

static void test_bar_window_full(void **state)
{
	struct fx *f = *state;
	struct tdev *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	tdev_init(t);
	/* the whole 32-bit window cannot fit beside tdev's BAR0 */
	pci_dev_set_bar(&t->d, 0, PCI_MMIO32_SIZE, false, false, tdev_io, &t->ctx[0]);
	assert_int_equal(pci_bus_add(&f->pb, &t->d), -ENOSPC);
	assert_null(f->pb.devs[2]);
	free(t);
}

/* ---- MSI-X ---- */

#define NVEC 4
#define PBA_OFF 0x800

struct mfx {
	struct bus pio, mmio;
	struct pci_bus pb;
	struct pci_dev d;
	struct msix m;
	struct kvm_vm kvm;
	int cfgw;
};

static void mdev_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct mfx *f = opaque;

	if (off < PBA_OFF)
		msix_table_io(&f->m, off, data, len, is_write);
	else
		msix_pba_io(&f->m, off - PBA_OFF, data, len, is_write);
}

static void mdev_cfg_written(struct pci_dev *d, uint32_t off, uint32_t len)
{
	struct mfx *f = d->opaque;
	f->cfgw++;
	msix_cfg_written(&f->m, off, len);
}

/* A bus with one MSI-X device in slot 1 (fake KVM state is not reset). */
static struct mfx *mfx_new(void)
{
	struct mfx *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	bus_init(&f->pio, "pio");
	bus_init(&f->mmio, "mmio");
	if (pci_bus_init(&f->pb, &f->pio, &f->mmio, MMIO64_BASE)) {
		free(f);
		return NULL;
	}
	pci_dev_init(&f->d, "msix-dev", 0x1af4, 0x1099, 0xff0000, 0, 0, 0);
	f->d.opaque = f;
	f->d.cfg_written = mdev_cfg_written;
	pci_dev_set_bar(&f->d, 0, 0x1000, false, false, mdev_io, f);
	if (msix_init(&f->m, &f->kvm, &f->d, NVEC, 0, 0, PBA_OFF) || pci_bus_add(&f->pb, &f->d)) {
		msix_destroy(&f->m);
		free(f);
		return NULL;
	}
	return f;
}

static int msetup(void **state)
{
	fk_reset();
	*state = mfx_new();
	return *state ? 0 : -1;
}

static int mteardown(void **state)
{
	struct mfx *f = *state;

	msix_destroy(&f->m);
	pci_bus_destroy(&f->pb);
	free(f);
	return 0;
}

#define TBL PCI_MMIO32_BASE
#define PBA (PCI_MMIO32_BASE + PBA_OFF)

static uint16_t mctrl(struct mfx *f)
{
	uint8_t d[2];
	pci_cfg_access(&f->pb, 1, 0, f->m.cap + 2u, d, 2, false);
	return pci_get16(d);
}

static void set_mctrl(struct mfx *f, uint16_t v)
{
	uint8_t d[2];
	pci_set16(d, v);
	pci_cfg_access(&f->pb, 1, 0, f->m.cap + 2u, d, 2, true);
}

static uint64_t m_rd(struct mfx *f, uint64_t addr, uint32_t len)
{
	uint8_t d[8];
	memset(d, 0x5a, sizeof(d));
	bus_access(&f->mmio, addr, d, len, false);
	return le(d, len);
}

static void m_wr(struct mfx *f, uint64_t addr, uint32_t len, uint64_t v)
{
	uint8_t d[8];
	put_le(d, v, len);
	bus_access(&f->mmio, addr, d, len, true);
}

/* Program vector v's message (address, data) without touching its mask. */
static void program(struct mfx *f, uint16_t v, uint64_t addr, uint32_t data)
{
	m_wr(f, TBL + 16u * v, 4, (uint32_t)addr);
	m_wr(f, TBL + 16u * v + 4, 4, (uint32_t)(addr >> 32));
	m_wr(f, TBL + 16u * v + 8, 4, data);
}

static void test_msix_capability(void **state)
{
	struct mfx *f = *state;
	uint8_t c = f->m.cap;

	assert_int_not_equal(c, 0);
	assert_int_equal(f->d.cfg[PCI_CAP_PTR], c);
	assert_int_equal(f->d.cfg[c], 0x11);
	assert_int_equal(mctrl(f), NVEC - 1); /* table size N-1, disabled, unmasked */
	assert_int_equal(pci_get32(f->d.cfg + c + 4), 0); /* table at 0 in BAR 0 */
	assert_int_equal(pci_get32(f->d.cfg + c + 8), PBA_OFF);
	/* only enable and function mask are writable */
	set_mctrl(f, 0xffff);
	assert_int_equal(mctrl(f), 0xc000 | (NVEC - 1));
	set_mctrl(f, 0);
	assert_int_equal(mctrl(f), NVEC - 1);
	uint8_t d[4] = { 0xff, 0xff, 0xff, 0xff };
	pci_cfg_access(&f->pb, 1, 0, c + 4u, d, 4, true);
	assert_int_equal(pci_get32(f->d.cfg + c + 4), 0);
	/* one route and one eventfd per vector; every vector starts masked, so
	 * no irqfd is attached yet */
	assert_int_equal(fk.alloc_calls, NVEC);
	for (int v = 0; v < NVEC; v++) {
		assert_int_equal(f->m.gsi[v], KVM_IRQCHIP_PINS + v);
		assert_true(f->m.fd[v] >= 0);
		assert_int_equal(fk_irqfd_assigned(f->m.fd[v], (uint32_t)f->m.gsi[v]), 0);
		assert_int_equal(m_rd(f, TBL + 16u * v + 12, 4), 1);
	}
	assert_int_equal(m_rd(f, PBA, 8), 0);
}

/* KVM refuses the irqfd: the vector still works, by KVM_SIGNAL_MSI with the
 * entry's message, for a pending notification at unmask and for every later
 * one; masking holds it as usual. */
static void test_msix_no_irqfd_fallback(void **state)
{
	struct mfx *f = *state;

	fk.irqfd_refuse = true;
	set_mctrl(f, 0x8000);
	program(f, 3, 0xfee02000, 0x4051);
	msix_notify(&f->m, 3); /* masked: pending */
	assert_int_equal(fk.signals, 0);
	m_wr(f, TBL + 16 * 3 + 12, 4, 0);
	assert_int_equal(fk_irqfd_assigned(f->m.fd[3], (uint32_t)f->m.gsi[3]), 0);
	assert_int_equal(fk.signals, 1);
	assert_int_equal(fk.signal_addr, 0xfee02000);
	assert_int_equal(fk.signal_data, 0x4051);
	assert_int_equal(m_rd(f, PBA, 4), 0);
	msix_notify(&f->m, 3);
	assert_int_equal(fk.signals, 2);
	assert_int_equal(efd_take(f->m.fd[3]), 0); /* nothing left in the eventfd */
	m_wr(f, TBL + 16 * 3 + 12, 4, 1);
	msix_notify(&f->m, 3);
	assert_int_equal(fk.signals, 2);
	assert_int_equal(m_rd(f, PBA, 4), 1u << 3);
	/* KVM takes it again later: back to the irqfd */
	fk.irqfd_refuse = false;
	m_wr(f, TBL + 16 * 3 + 12, 4, 0);
	assert_int_equal(fk_irqfd_assigned(f->m.fd[3], (uint32_t)f->m.gsi[3]), 1);
	assert_int_equal(efd_take(f->m.fd[3]), 1);
	assert_int_equal(fk.signals, 2);
}

static void test_msix_masked_then_unmasked(void **state)
{
	struct mfx *f = *state;

	set_mctrl(f, 0x8000);
	program(f, 2, 0xfee01000, 0x4041);
	assert_int_equal(fk.route_sets, 0); /* masked: not routed yet */
	msix_notify(&f->m, 2);
	assert_int_equal(efd_take(f->m.fd[2]), 0);
	assert_int_equal(m_rd(f, PBA, 4), 1u << 2);
	assert_int_equal(m_rd(f, PBA, 8), 1u << 2);
	assert_int_equal(m_rd(f, PBA + 4, 4), 0);
	/* the PBA is read-only */
	m_wr(f, PBA, 8, 0);
	assert_int_equal(m_rd(f, PBA, 4), 1u << 2);
	/* unmask: routed to the programmed message, the pending one delivered */
	m_wr(f, TBL + 16 * 2 + 12, 4, 0);
	assert_int_equal(fk.route_addr[f->m.gsi[2]], 0xfee01000);
	assert_int_equal(fk.route_data[f->m.gsi[2]], 0x4041);
	assert_int_equal(efd_take(f->m.fd[2]), 1);
	assert_int_equal(m_rd(f, PBA, 4), 0);
	/* from now on every notify is delivered at once */
	msix_notify(&f->m, 2);
	msix_notify(&f->m, 2);
	assert_int_equal(efd_take(f->m.fd[2]), 2);
	assert_int_equal(m_rd(f, PBA, 4), 0);
	/* other vectors were left alone */
	for (int v = 0; v < NVEC; v++) {
		if (v != 2)
			assert_int_equal(efd_take(f->m.fd[v]), 0);
	}
	/* mask again: pending, not delivered */
	m_wr(f, TBL + 16 * 2 + 12, 4, 1);
	msix_notify(&f->m, 2);
	assert_int_equal(efd_take(f->m.fd[2]), 0);
	assert_int_equal(m_rd(f, PBA, 4), 1u << 2);
}

/* An in-kernel writer of the eventfd (vhost) signals a masked vector: KVM
 * must not deliver it (the irqfd is detached), the PBA shows it pending, and
 * unmasking delivers it once. */
static void test_msix_masked_external_writer(void **state)
{
	struct mfx *f = *state;
	uint64_t one = 1;
	int fd = f->m.fd[1];
	uint32_t gsi = (uint32_t)f->m.gsi[1];

	set_mctrl(f, 0x8000);
	program(f, 1, 0xfee00000, 0x42);
	m_wr(f, TBL + 16 + 12, 4, 0);
	assert_int_equal(fk_irqfd_assigned(fd, gsi), 1);
	assert_int_equal(fk_irqfd_assigned(f->m.fd[0], (uint32_t)f->m.gsi[0]), 0);
	/* mask: detached; the writer's signals only count */
	m_wr(f, TBL + 16 + 12, 4, 1);
	assert_int_equal(fk_irqfd_assigned(fd, gsi), 0);
	assert_int_equal(write(fd, &one, 8), 8);
	assert_int_equal(write(fd, &one, 8), 8);
	assert_int_equal(m_rd(f, PBA, 4), 1u << 1);
	assert_int_equal(m_rd(f, PBA, 4), 1u << 1); /* reading does not clear it */
	/* unmask: attached again and the pending one delivered, once */
	m_wr(f, TBL + 16 + 12, 4, 0);
	assert_int_equal(fk_irqfd_assigned(fd, gsi), 1);
	assert_int_equal(efd_take(fd), 1);
	assert_int_equal(m_rd(f, PBA, 4), 0);
	/* a signal while masked and unmasked before any PBA read: still delivered */
	m_wr(f, TBL + 16 + 12, 4, 1);
	assert_int_equal(write(fd, &one, 8), 8);
	m_wr(f, TBL + 16 + 12, 4, 0);
	assert_int_equal(efd_take(fd), 1);
	/* the function mask detaches every vector the same way */
	set_mctrl(f, 0xc000);
	assert_int_equal(fk_irqfd_assigned(fd, gsi), 0);
	assert_int_equal(write(fd, &one, 8), 8);
	set_mctrl(f, 0x8000);
	assert_int_equal(fk_irqfd_assigned(fd, gsi), 1);
	assert_int_equal(efd_take(fd), 1);
	/* MSI-X off: detached, and what comes meanwhile is dropped, not pending */
	set_mctrl(f, 0);
	assert_int_equal(fk_irqfd_assigned(fd, gsi), 0);
	assert_int_equal(write(fd, &one, 8), 8);
	assert_int_equal(m_rd(f, PBA, 4), 0);
	set_mctrl(f, 0x8000);
	assert_int_equal(efd_take(fd), 0);
	/* a signal on a masked vector is in a snapshot's pending bits */
	m_wr(f, TBL + 16 + 12, 4, 1);
	assert_int_equal(write(fd, &one, 8), 8);
	struct sbuf out = { 0 };
	msix_save(&f->m, &out);
	assert_int_equal(out.err, 0);
	assert_int_equal(le(out.data + 4 + 16 * NVEC, 8), 1u << 1);
	sbuf_free(&out);
}

static void test_msix_reprogram_while_unmasked(void **state)
{
	struct mfx *f = *state;

	set_mctrl(f, 0x8000);
	program(f, 0, 0xfee00000, 0x30);
	m_wr(f, TBL + 12, 4, 0);
	assert_int_equal(fk.route_data[f->m.gsi[0]], 0x30);
	/* a qword write of address, then of data + control */
	m_wr(f, TBL, 8, 0x00000000fee02000ULL);
	m_wr(f, TBL + 8, 8, 0x0000000000000031ULL);
	assert_int_equal(fk.route_addr[f->m.gsi[0]], 0xfee02000);
	assert_int_equal(fk.route_data[f->m.gsi[0]], 0x31);
	assert_int_equal(m_rd(f, TBL + 8, 8), 0x31);
	assert_int_equal(m_rd(f, TBL, 8), 0xfee02000);
}

static void test_msix_function_mask(void **state)
{
	struct mfx *f = *state;

	set_mctrl(f, 0xc000); /* enabled, all masked */
	program(f, 1, 0xfee00000, 0x51);
	m_wr(f, TBL + 16 + 12, 4, 0);
	assert_int_equal(fk.route_sets, 0);
	msix_notify(&f->m, 1);
	assert_int_equal(efd_take(f->m.fd[1]), 0);
	assert_int_equal(m_rd(f, PBA, 4), 1u << 1);
	/* clearing the function mask delivers it */
	set_mctrl(f, 0x8000);
	assert_int_equal(efd_take(f->m.fd[1]), 1);
	assert_int_equal(m_rd(f, PBA, 4), 0);
	assert_int_equal(fk.route_data[f->m.gsi[1]], 0x51);
	/* a vector still masked in its entry stays pending when the function mask clears */
	set_mctrl(f, 0xc000);
	msix_notify(&f->m, 3);
	set_mctrl(f, 0x8000);
	assert_int_equal(efd_take(f->m.fd[3]), 0);
	assert_int_equal(m_rd(f, PBA, 4), 1u << 3);
}

static void test_msix_enable_bit(void **state)
{
	struct mfx *f = *state;

	program(f, 0, 0xfee00000, 0x61);
	m_wr(f, TBL + 12, 4, 0);
	/* disabled: no INTx fallback, nothing delivered, nothing pending */
	msix_notify(&f->m, 0);
	assert_int_equal(efd_take(f->m.fd[0]), 0);
	assert_int_equal(m_rd(f, PBA, 4), 0);
	assert_int_equal(fk.route_sets, 0);
	/* enabling routes the unmasked vectors */
	set_mctrl(f, 0x8000);
	assert_int_equal(fk.route_sets, 1);
	assert_int_equal(fk.route_data[f->m.gsi[0]], 0x61);
	msix_notify(&f->m, 0);
	assert_int_equal(efd_take(f->m.fd[0]), 1);
	/* a config write elsewhere does not re-route */
	uint8_t b = 5;
	pci_cfg_access(&f->pb, 1, 0, PCI_INT_LINE, &b, 1, true);
	assert_int_equal(fk.route_sets, 1);
	/* a write to the high byte of message control alone is seen */
	b = 0x00;
	pci_cfg_access(&f->pb, 1, 0, f->m.cap + 3u, &b, 1, true);
	assert_int_equal(mctrl(f), NVEC - 1);
	msix_notify(&f->m, 0);
	assert_int_equal(efd_take(f->m.fd[0]), 0);
	b = 0x80;
	pci_cfg_access(&f->pb, 1, 0, f->m.cap + 3u, &b, 1, true);
	assert_int_equal(fk.route_sets, 2);
}

static void test_msix_table_access_rules(void **state)
{
	struct mfx *f = *state;

	m_wr(f, TBL, 4, 0xfee00000);
	/* byte and word writes are ignored; so are misaligned dwords/qwords */
	m_wr(f, TBL, 1, 0x11);
	m_wr(f, TBL, 2, 0x2222);
	m_wr(f, TBL + 2, 4, 0x33333333);
	m_wr(f, TBL + 4, 8, 0x4444444444444444ULL);
	m_wr(f, TBL + 3, 4, 0x55555555);
	assert_int_equal(m_rd(f, TBL, 4), 0xfee00000);
	assert_int_equal(m_rd(f, TBL + 4, 4), 0);
	/* such reads return all-ones */
	assert_int_equal(m_rd(f, TBL, 1), 0xff);
	assert_int_equal(m_rd(f, TBL, 2), 0xffff);
	assert_int_equal(m_rd(f, TBL + 2, 4), 0xffffffff);
	assert_int_equal(m_rd(f, TBL + 4, 8), UINT64_MAX);
	/* beyond the last entry */
	m_wr(f, TBL + 16 * NVEC, 4, 0x12345678);
	assert_int_equal(m_rd(f, TBL + 16 * NVEC, 4), 0xffffffff);
	assert_int_equal(m_rd(f, TBL + 16 * NVEC - 4, 4), 1); /* last control word */
	assert_int_equal(m_rd(f, TBL + 16 * NVEC - 8, 8), 0x100000000ULL);
	/* direct calls with offsets the bus would never produce */
	uint8_t d[8];
	memset(d, 0, sizeof(d));
	msix_table_io(&f->m, UINT64_MAX - 3, d, 4, false);
	assert_int_equal(le(d, 4), 0xffffffff);
	msix_table_io(&f->m, UINT64_MAX - 7, d, 8, true);
	msix_table_io(&f->m, 0, d, 3, true);
	msix_table_io(&f->m, 0, d, 0, true);
	assert_int_equal(m_rd(f, TBL, 4), 0xfee00000);
}

static void test_msix_notify_out_of_range(void **state)
{
	struct mfx *f = *state;

	set_mctrl(f, 0x8000);
	msix_notify(&f->m, NVEC);
	msix_notify(&f->m, MSIX_NO_VECTOR);
	msix_notify(&f->m, MSIX_MAX_VECTORS);
	assert_int_equal(m_rd(f, PBA, 8), 0);
	for (int v = 0; v < NVEC; v++)
		assert_int_equal(efd_take(f->m.fd[v]), 0);
}

static void test_msix_save_load(void **state)
{
	struct mfx *f = *state;
	struct sbuf out = { 0 }, in;

	set_mctrl(f, 0xc000);
	program(f, 0, 0xfee00000, 0x71);
	program(f, 3, 0xfee03000, 0x74);
	m_wr(f, TBL + 12, 4, 0);
	msix_notify(&f->m, 0);
	msix_notify(&f->m, 2);
	msix_save(&f->m, &out);
	assert_int_equal(out.err, 0);

	/* a second device with the same vector count */
	struct mfx *g = mfx_new();
	assert_non_null(g);
	int routes = fk.route_sets;
	sbuf_reader(&in, out.data, out.len);
	assert_int_equal(msix_load(&g->m, &in), 0);
	assert_int_equal(in.pos, in.len);
	assert_int_equal(mctrl(g), 0xc000 | (NVEC - 1));
	assert_memory_equal(g->m.table, f->m.table, 16 * NVEC);
	assert_int_equal(m_rd(g, PBA, 4), (1u << 0) | (1u << 2));
	assert_int_equal(fk.route_sets, routes); /* all masked by the function mask */
	/* unmasking the function on the restored device delivers vector 0 */
	set_mctrl(g, 0x8000);
	assert_int_equal(efd_take(g->m.fd[0]), 1);
	assert_int_equal(fk.route_data[g->m.gsi[0]], 0x71);
	assert_int_equal(m_rd(g, PBA, 4), 1u << 2);

	/* every truncation is refused */
	for (size_t n = 0; n < out.len; n++) {
		sbuf_reader(&in, out.data, n);
		assert_int_equal(msix_load(&g->m, &in), -EINVAL);
	}
	/* a different vector count */
	uint8_t *bad = malloc(out.len);
	assert_non_null(bad);
	memcpy(bad, out.data, out.len);
	bad[0] = NVEC + 1;
	sbuf_reader(&in, bad, out.len);
	assert_int_equal(msix_load(&g->m, &in), -EINVAL);
	/* pending bits beyond the vector count */
	memcpy(bad, out.data, out.len);
	bad[4 + 16 * NVEC] |= 1u << NVEC;
	sbuf_reader(&in, bad, out.len);
	assert_int_equal(msix_load(&g->m, &in), -EINVAL);
	/* unknown control bits */
	memcpy(bad, out.data, out.len);
	bad[4 + 16 * NVEC + 8 + 2] = 0x01;
	sbuf_reader(&in, bad, out.len);
	assert_int_equal(msix_load(&g->m, &in), -EINVAL);
	free(bad);
	sbuf_free(&out);
	mteardown((void **)&g);
}

static void test_msix_init_limits_and_destroy(void **state)
{
	struct mfx *f = *state;
	struct pci_dev d;
	struct msix m;

	pci_dev_init(&d, "x", 0x1af4, 0x1000, 0xff0000, 0, 0, 0);
	assert_int_equal(msix_init(&m, &f->kvm, &d, 0, 0, 0, 0x800), -EINVAL);
	msix_destroy(&m);
	assert_int_equal(msix_init(&m, &f->kvm, &d, MSIX_MAX_VECTORS + 1, 0, 0, 0x800), -EINVAL);
	msix_destroy(&m);
	/* a failing route allocation is reported and cleaned up */
	fk.alloc_calls = 0;
	fk.alloc_fail_at = 3;
	assert_int_equal(msix_init(&m, &f->kvm, &d, 4, 0, 0, 0x800), -ENOSPC);
	msix_destroy(&m);
	for (int v = 0; v < MSIX_MAX_VECTORS; v++)
		assert_int_equal(m.fd[v], -1);
	fk.alloc_fail_at = 0;
	/* destroy detaches every irqfd (two vectors are live) */
	set_mctrl(f, 0x8000);
	m_wr(f, TBL + 12, 4, 0);
	m_wr(f, TBL + 16 * 3 + 12, 4, 0);
	assert_int_equal(fk_irqfd_assigned(f->m.fd[3], (uint32_t)f->m.gsi[3]), 1);
	int fds[NVEC];
	for (int v = 0; v < NVEC; v++)
		fds[v] = f->m.fd[v];
	msix_destroy(&f->m);
	for (int v = 0; v < NVEC; v++) {
		assert_int_equal(fk_irqfd_assigned(fds[v], (uint32_t)f->m.gsi[v]), 0);
		assert_int_equal(f->m.fd[v], -1);
	}
	for (int i = 0; i < fk.nirqfd; i++)
		assert_false(fk.irqfd[i].assigned);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cf8_host_bridge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cf8_absent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cf8_odd_widths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ecam, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cfg_access_bounds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_header_write_masks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_assignment, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_sizing_32, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_sizing_64, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unimplemented_bars, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_dispatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_move_remaps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_memory_decode_gating, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sizing_pattern_not_decoded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_address_zero_or_wrapping, setup, teardown),
		cmocka_unit_test_setup_teardown(test_capability_list, setup, teardown),
		cmocka_unit_test(test_capability_list_exactly_full),
		cmocka_unit_test_setup_teardown(test_bus_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_window_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msix_capability, msetup, mteardown),
		cmocka_unit_test_setup_teardown(test_msix_masked_then_unmasked, msetup, mteardown),
		cmocka_unit_test_setup_teardown(test_msix_no_irqfd_fallback, msetup, mteardown),
		cmocka_unit_test_setup_teardown(test_msix_masked_external_writer, msetup, mteardown),
		cmocka_unit_test_setup_teardown(test_msix_reprogram_while_unmasked, msetup, mteardown),
		cmocka_unit_test_setup_teardown(test_msix_function_mask, msetup, mteardown),
		cmocka_unit_test_setup_teardown(test_msix_enable_bit, msetup, mteardown),
		cmocka_unit_test_setup_teardown(test_msix_table_access_rules, msetup, mteardown),
		cmocka_unit_test_setup_teardown(test_msix_notify_out_of_range, msetup, mteardown),
		cmocka_unit_test_setup_teardown(test_msix_save_load, msetup, mteardown),
		cmocka_unit_test_setup_teardown(test_msix_init_limits_and_destroy, msetup, mteardown),
	};

	return cmocka_run_group_tests_name("pci", tests, NULL, NULL);
}
