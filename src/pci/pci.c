/* PCI bus 0 (PCI Local Bus 3.0 configuration header type 0; PCI Express
 * ECAM for the 4 KiB extended space). */
#include "pci/pci.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"


void pci_dev_init(struct pci_dev *d, const char *name, uint16_t vendor, uint16_t device,
                  uint32_t class_code, uint8_t revision, uint16_t subsys_vendor,
                  uint16_t subsys_id)
{
	memset(d, 0, sizeof(*d));
	d->name = name;
	pci_set16(d->cfg + PCI_VENDOR_ID, vendor);
	pci_set16(d->cfg + PCI_VENDOR_ID + 2, device);
	d->cfg[PCI_REVISION] = revision;
	d->cfg[PCI_CLASS_PROG] = (uint8_t)class_code;
	pci_set16(d->cfg + PCI_CLASS_PROG + 1, (uint16_t)(class_code >> 8));
	pci_set16(d->cfg + PCI_SUBSYS_VENDOR, subsys_vendor);
	pci_set16(d->cfg + PCI_SUBSYS_ID, subsys_id);
	pci_set16(d->wmask + PCI_COMMAND, 0x0547); /* IO, MEM, MASTER, PARITY, SERR, INTX_DISABLE */
	d->wmask[0x0c] = 0xff;                     /* cache line size */
	d->wmask[0x0d] = 0xff;                     /* latency timer */
	d->wmask[PCI_INT_LINE] = 0xff;
	d->cap_end = 0x40;
}

void pci_dev_set_bar(struct pci_dev *d, int i, uint64_t size, bool is64, bool prefetch,
                     bus_io_fn fn, void *opaque)
{
	d->bars[i] = (struct pci_bar){ .size = size, .is64 = is64, .prefetch = prefetch, .fn = fn,
		                       .opaque = opaque };
}

uint8_t pci_dev_add_cap(struct pci_dev *d, uint8_t id, uint8_t len)
{
	unsigned off = (d->cap_end + 3u) & ~3u;

	if (len < 2 || off + len > 0x100)
		return 0;
	d->cfg[off] = id;
	d->cfg[off + 1] = 0;
	/* link at the end of the list */
	uint8_t *link = &d->cfg[PCI_CAP_PTR];
	while (*link)
		link = &d->cfg[*link + 1];
	*link = (uint8_t)off;
	pci_set16(d->cfg + PCI_STATUS, pci_get16(d->cfg + PCI_STATUS) | PCI_STATUS_CAP_LIST);
	d->cap_end = (uint16_t)(off + len);
	return (uint8_t)off;
}

static uint64_t bar_addr_from_cfg(const struct pci_dev *d, int i)
{
	uint64_t lo = pci_get32(d->cfg + PCI_BAR0 + 4 * i) & ~0xfULL;
	if (d->bars[i].is64)
		lo |= (uint64_t)pci_get32(d->cfg + PCI_BAR0 + 4 * (i + 1)) << 32;
	return lo;
}

static void bar_write_cfg(struct pci_dev *d, int i, uint64_t addr)
{
	const struct pci_bar *b = &d->bars[i];
	uint32_t flags = (b->is64 ? 0x4 : 0) | (b->prefetch ? 0x8 : 0);
	uint64_t v = addr & ~(b->size - 1);

	pci_set32(d->cfg + PCI_BAR0 + 4 * i, (uint32_t)v | flags);
	if (b->is64)
		pci_set32(d->cfg + PCI_BAR0 + 4 * (i + 1), (uint32_t)(v >> 32));
}

/* Bring BAR decoding in line with the command register and BAR values. */
static void update_mappings(struct pci_dev *d)
{
	bool mem_on = pci_get16(d->cfg + PCI_COMMAND) & PCI_COMMAND_MEMORY;

	for (int i = 0; i < 6; i++) {
		const struct pci_bar *b = &d->bars[i];
		if (!b->size)
			continue;
		uint64_t addr = bar_addr_from_cfg(d, i);
		/* the all-ones pattern of BAR sizing is not a place to decode */
		bool on = mem_on && addr != 0 && addr + b->size > addr &&
		          addr + b->size <= (b->is64 ? (1ULL << 52) : (1ULL << 32)) &&
		          (addr | (b->size - 1)) != (b->is64 ? UINT64_MAX : 0xffffffffULL);
		if (on == d->decoding[i] && (!on || addr == d->mapped_at[i]))
			continue;
		if (d->decoding[i] && d->bar_mapped)
			d->bar_mapped(d, i, d->mapped_at[i], false);
		d->decoding[i] = on;
		d->mapped_at[i] = addr;
		if (on && d->bar_mapped)
			d->bar_mapped(d, i, addr, true);
	}
}

static void cfg_write(struct pci_dev *d, uint32_t off, const uint8_t *data, uint32_t len)
{
	for (uint32_t k = 0; k < len; k++) {
		uint32_t o = off + k;
		if (o >= PCI_BAR0 && o < PCI_BAR0 + 24)
			continue; /* BARs below */
		d->cfg[o] = (uint8_t)((d->cfg[o] & ~d->wmask[o]) | (data[k] & d->wmask[o]));
	}
	/* BARs: assemble each touched dword, then keep only the address bits the
	 * size allows; reading back after writing all-ones gives the size. */
	for (int i = 0; i < 6; i++) {
		uint32_t lo = PCI_BAR0 + 4 * i;
		if (off >= lo + 4 || off + len <= lo)
			continue;
		uint8_t dw[4];
		memcpy(dw, d->cfg + lo, 4);
		for (uint32_t k = 0; k < len; k++) {
			if (off + k >= lo && off + k < lo + 4)
				dw[off + k - lo] = data[k];
		}
		uint32_t v = pci_get32(dw);
		int owner = i;
		bool upper = false;
		if (i > 0 && d->bars[i - 1].is64 && d->bars[i - 1].size) {
			owner = i - 1;
			upper = true;
		}
		const struct pci_bar *b = &d->bars[owner];
		if (!b->size) {
			pci_set32(d->cfg + lo, 0); /* unimplemented BAR: reads as 0 */
			continue;
		}
		uint64_t cur = bar_addr_from_cfg(d, owner);
		uint64_t nv = upper ? ((cur & 0xffffffffULL) | (uint64_t)v << 32)
		                    : ((cur & ~0xffffffffULL) | (v & ~0xfULL));
		bar_write_cfg(d, owner, nv);
	}
	if (d->cfg_written)
		d->cfg_written(d, off, len);
	update_mappings(d);
}

void pci_cfg_access(struct pci_bus *pb, uint8_t slot, uint8_t fn, uint32_t off, uint8_t *data,
                    uint32_t len, bool is_write)
{
	struct pci_dev *d = slot < PCI_MAX_DEVS && fn == 0 ? pb->devs[slot] : NULL;

	if (!d || len == 0 || len > 4 || off >= PCI_CFG_SIZE || len > PCI_CFG_SIZE - off) {
		if (!is_write)
			memset(data, 0xff, len > 8 ? 8 : len);
		return;
	}
	if (is_write) {
		pthread_rwlock_wrlock(&pb->lock);
		cfg_write(d, off, data, len);
		pthread_rwlock_unlock(&pb->lock);
	} else {
		pthread_rwlock_rdlock(&pb->lock);
		memcpy(data, d->cfg + off, len);
		pthread_rwlock_unlock(&pb->lock);
	}
}

/* 0xcf8: address register (dword only); 0xcfc..0xcff: data window. */
static void pci_addr_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct pci_bus *pb = opaque;

	if (off != 0 || len != 4) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	if (is_write)
		pb->cf8 = pci_get32(data);
	else
		pci_set32(data, pb->cf8);
}

static void pci_data_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct pci_bus *pb = opaque;
	uint32_t a = pb->cf8;

	if (!(a & 0x80000000u) || ((a >> 16) & 0xff) != 0 || off + len > 4) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	pci_cfg_access(pb, (a >> 11) & 0x1f, (a >> 8) & 7, (a & 0xfc) + (uint32_t)off, data, len,
	               is_write);
}

static void pci_ecam_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	pci_cfg_access(opaque, (off >> 15) & 0x1f, (off >> 12) & 7, off & 0xfff, data, len,
	               is_write);
}

static void pci_window_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct pci_window *w = opaque;
	struct pci_bus *pb = w->pb;
	uint64_t a = w->base + off;

	pthread_rwlock_rdlock(&pb->lock);
	for (int s = 0; s < PCI_MAX_DEVS; s++) {
		struct pci_dev *d = pb->devs[s];
		if (!d)
			continue;
		for (int i = 0; i < 6; i++) {
			if (d->decoding[i] && a >= d->mapped_at[i] &&
			    a - d->mapped_at[i] < d->bars[i].size &&
			    len <= d->bars[i].size - (a - d->mapped_at[i])) {
				d->bars[i].fn(d->bars[i].opaque, a - d->mapped_at[i], data, len, is_write);
				pthread_rwlock_unlock(&pb->lock);
				return;
			}
		}
	}
	pthread_rwlock_unlock(&pb->lock);
	if (!is_write)
		memset(data, 0xff, len);
}

int pci_bus_init(struct pci_bus *pb, struct bus *pio, struct bus *mmio, uint64_t mmio64_base)
{
	int rc;

	memset(pb, 0, sizeof(*pb));
	pthread_rwlock_init(&pb->lock, NULL);
	pb->mmio32_next = PCI_MMIO32_BASE;
	pb->mmio64_base = pb->mmio64_next = mmio64_base;
	pb->win32 = (struct pci_window){ pb, PCI_MMIO32_BASE };
	pb->win64 = (struct pci_window){ pb, mmio64_base };
	if ((rc = bus_register(pio, PCI_CFG_ADDR_PORT, 4, pci_addr_io, pb, "pci-addr")) ||
	    (rc = bus_register(pio, PCI_CFG_DATA_PORT, 4, pci_data_io, pb, "pci-data")) ||
	    (rc = bus_register(mmio, PCI_ECAM_BASE, PCI_ECAM_SIZE, pci_ecam_io, pb, "pci-ecam")) ||
	    (rc = bus_register(mmio, PCI_MMIO32_BASE, PCI_MMIO32_SIZE, pci_window_io, &pb->win32,
	                       "pci-mmio32")) ||
	    (rc = bus_register(mmio, mmio64_base, PCI_MMIO64_SIZE, pci_window_io, &pb->win64,
	                       "pci-mmio64")))
		return rc;
	/* host bridge: Red Hat's generic PCIe host bridge ID, class 06.00 */
	pci_dev_init(&pb->host_bridge, "host-bridge", 0x1b36, 0x0008, 0x060000, 0, 0x1af4, 0x1100);
	return pci_bus_add(pb, &pb->host_bridge);
}

void pci_bus_destroy(struct pci_bus *pb)
{
	pthread_rwlock_destroy(&pb->lock);
	memset(pb->devs, 0, sizeof(pb->devs));
}

int pci_bus_add(struct pci_bus *pb, struct pci_dev *d)
{
	int slot = 0;

	while (slot < PCI_MAX_DEVS && pb->devs[slot])
		slot++;
	if (slot == PCI_MAX_DEVS)
		return -ENOSPC;
	for (int i = 0; i < 6; i++) {
		struct pci_bar *b = &d->bars[i];
		if (!b->size)
			continue;
		uint64_t *next = b->is64 ? &pb->mmio64_next : &pb->mmio32_next;
		uint64_t end = b->is64 ? pb->mmio64_base + PCI_MMIO64_SIZE
		                       : PCI_MMIO32_BASE + PCI_MMIO32_SIZE;
		uint64_t addr = (*next + b->size - 1) & ~(b->size - 1);
		if (addr + b->size > end)
			return -ENOSPC;
		*next = addr + b->size;
		bar_write_cfg(d, i, addr);
	}
	d->slot = (uint8_t)slot;
	/* memory decoding on, as firmware would leave it */
	pci_set16(d->cfg + PCI_COMMAND, pci_get16(d->cfg + PCI_COMMAND) | PCI_COMMAND_MEMORY);
	pthread_rwlock_wrlock(&pb->lock);
	pb->devs[slot] = d;
	update_mappings(d);
	pthread_rwlock_unlock(&pb->lock);
	return 0;
}

void pci_dev_save(struct pci_bus *pb, struct pci_dev *d, struct sbuf *out)
{
	pthread_rwlock_rdlock(&pb->lock);
	sbuf_put(out, d->cfg, PCI_CFG_SIZE);
	pthread_rwlock_unlock(&pb->lock);
}

int pci_dev_load(struct pci_bus *pb, struct pci_dev *d, struct sbuf *in)
{
	uint8_t *cfg = malloc(PCI_CFG_SIZE);
	int rc = -EINVAL;

	if (!cfg)
		return -ENOMEM;
	sbuf_get(in, cfg, PCI_CFG_SIZE);
	/* vendor, device, class and the capability chain must be this device's */
	if (in->err || memcmp(cfg, d->cfg, 4) || memcmp(cfg + PCI_REVISION, d->cfg + PCI_REVISION, 4) ||
	    cfg[PCI_CAP_PTR] != d->cfg[PCI_CAP_PTR])
		goto out;
	pthread_rwlock_wrlock(&pb->lock);
	memcpy(d->cfg, cfg, PCI_CFG_SIZE);
	update_mappings(d);
	pthread_rwlock_unlock(&pb->lock);
	rc = 0;
out:
	free(cfg);
	return rc;
}
