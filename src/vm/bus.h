/* Port-I/O and MMIO bus: maps address ranges to device handlers. */
#ifndef CVISOR_VM_BUS_H
#define CVISOR_VM_BUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* Handler for one access: offset is relative to the registered base.
 * On a read the handler fills data[0..len); on a write it consumes it. */
typedef void (*bus_io_fn)(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
                          bool is_write);

struct bus_range {
	uint64_t base;
	uint64_t len;
	bus_io_fn fn;
	void *opaque;
	const char *name;
};

#define BUS_MAX_RANGES 64
#define BUS_MAX_UNKNOWN_LOGGED 64

struct bus {
	const char *kind; /* "pio" or "mmio", for log lines */
	struct bus_range ranges[BUS_MAX_RANGES];
	int nr;
	pthread_mutex_t log_lock;
	uint64_t unknown_logged[BUS_MAX_UNKNOWN_LOGGED];
	int nr_unknown_logged;
	uint64_t unknown_total;
};

/* Initialise an empty bus; kind names it in log messages. */
void bus_init(struct bus *bus, const char *kind);
/* Register [base, base+len) to fn; -EEXIST on overlap, -ENOSPC when full. */
int bus_register(struct bus *bus, uint64_t base, uint64_t len, bus_io_fn fn, void *opaque,
                 const char *name);
/* Dispatch one access. Unknown addresses read as all-ones, writes are dropped,
 * and the first access to each address is logged (bounded). Returns 0 if a
 * device handled it, -ENOENT otherwise. */
int bus_access(struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len, bool is_write);

#endif
