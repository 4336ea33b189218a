/* PCI bus 0: host bridge, configuration space through ports 0xcf8/0xcfc and
 * ECAM (announced by the ACPI MCFG table), memory BARs placed in a 32-bit
 * window below 4 GiB or a 64-bit window above RAM. BAR accesses are
 * dispatched here (the MMIO bus hands whole windows to the PCI layer), so a
 * guest moving a BAR never edits the MMIO bus. */
#ifndef CVISOR_PCI_PCI_H
#define CVISOR_PCI_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "state/sbuf.h"
#include "vm/bus.h"

#define PCI_CFG_ADDR_PORT 0xcf8
#define PCI_CFG_DATA_PORT 0xcfc
#define PCI_ECAM_BASE 0xe0000000ULL
#define PCI_ECAM_SIZE 0x100000ULL /* bus 0 only: 32 devices x 8 functions x 4 KiB */
#define PCI_MMIO32_BASE 0xc0000000ULL
#define PCI_MMIO32_SIZE 0x20000000ULL
#define PCI_MMIO64_SIZE (64ULL << 30)
#define PCI_MAX_DEVS 32
#define PCI_CFG_SIZE 4096

/* standard header offsets */
#define PCI_VENDOR_ID 0x00
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_REVISION 0x08
#define PCI_CLASS_PROG 0x09
#define PCI_HEADER_TYPE 0x0e
#define PCI_BAR0 0x10
#define PCI_SUBSYS_VENDOR 0x2c
#define PCI_SUBSYS_ID 0x2e
#define PCI_CAP_PTR 0x34
#define PCI_INT_LINE 0x3c
#define PCI_INT_PIN 0x3d
#define PCI_COMMAND_MEMORY 0x2
#define PCI_COMMAND_MASTER 0x4
#define PCI_STATUS_CAP_LIST 0x10

struct pci_dev;

struct pci_bar {
	uint64_t size; /* 0: unused */
	uint64_t addr; /* as programmed by the guest */
	bool is64;
	bool prefetch;
	bus_io_fn fn; /* offset is relative to the BAR start */
	void *opaque;
};

struct pci_dev {
	uint8_t cfg[PCI_CFG_SIZE];
	uint8_t wmask[PCI_CFG_SIZE]; /* writable bits, for plain registers */
	struct pci_bar bars[6];
	uint8_t slot;
	uint16_t cap_end; /* where the next capability goes (0x100: full) */
	const char *name;
	/* called after the guest wrote [off, off+len) (lock held); may be NULL */
	void (*cfg_written)(struct pci_dev *d, uint32_t off, uint32_t len);
	/* called when BAR i becomes decoded at addr (mapped=true) or stops (false) */
	void (*bar_mapped)(struct pci_dev *d, int i, uint64_t addr, bool mapped);
	void *opaque;
	bool decoding[6]; /* BAR currently mapped */
	uint64_t mapped_at[6];
};

struct pci_bus;
struct pci_window {
	struct pci_bus *pb;
	uint64_t base;
};

struct pci_bus {
	pthread_rwlock_t lock; /* write: config writes that move BARs; read: BAR accesses */
	struct pci_dev *devs[PCI_MAX_DEVS];
	uint32_t cf8;
	uint64_t mmio32_next, mmio64_base, mmio64_next;
	struct pci_window win32, win64; /* contexts of the two BAR windows on the MMIO bus */
	struct pci_dev host_bridge;
};

/* Set up bus 0 with its host bridge; mmio64_base is where the 64-bit window
 * starts (above RAM). Registers the config ports, ECAM and both windows on
 * the buses. 0 or -errno. */
int pci_bus_init(struct pci_bus *pb, struct bus *pio, struct bus *mmio, uint64_t mmio64_base);
/* Free devices' bookkeeping (not the devices). */
void pci_bus_destroy(struct pci_bus *pb);
/* Initialise a device's config header (vendor, device, class, revision, subsystem). */
void pci_dev_init(struct pci_dev *d, const char *name, uint16_t vendor, uint16_t device,
                  uint32_t class_code, uint8_t revision, uint16_t subsys_vendor,
                  uint16_t subsys_id);
/* Declare memory BAR i (size a power of two >= 4 KiB) served by fn. */
void pci_dev_set_bar(struct pci_dev *d, int i, uint64_t size, bool is64, bool prefetch,
                     bus_io_fn fn, void *opaque);
/* Append a capability of len bytes with the given ID; returns its offset, or
 * 0 when config space is full. The caller fills the bytes after the header. */
uint8_t pci_dev_add_cap(struct pci_dev *d, uint8_t id, uint8_t len);
/* Plug d into the next free slot and assign its BARs. 0 or -ENOSPC. */
int pci_bus_add(struct pci_bus *pb, struct pci_dev *d);
/* Config-space access for bus 0, as the guest sees it (tests use it too). */
void pci_cfg_access(struct pci_bus *pb, uint8_t slot, uint8_t fn, uint32_t off, uint8_t *data,
                    uint32_t len, bool is_write);
/* Save / restore a device's configuration space (BAR addresses, command,
 * capabilities' writable state); load re-maps its BARs. Identity fields must
 * match the device's (-EINVAL otherwise). */
void pci_dev_save(struct pci_bus *pb, struct pci_dev *d, struct sbuf *out);
int pci_dev_load(struct pci_bus *pb, struct pci_dev *d, struct sbuf *in);
/* Little-endian helpers on config bytes. */
static inline void pci_set16(uint8_t *p, uint16_t v) { p[0] = v; p[1] = v >> 8; }
static inline void pci_set32(uint8_t *p, uint32_t v) { pci_set16(p, (uint16_t)v); pci_set16(p + 2, (uint16_t)(v >> 16)); }
static inline uint16_t pci_get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t pci_get32(const uint8_t *p) { return pci_get16(p) | (uint32_t)pci_get16(p + 2) << 16; }

#endif
