/* Port-I/O and MMIO bus. Ranges are few (tens), so a linear scan is enough
 * and keeps the code obvious; registration happens only at VM creation. */
#include "vm/bus.h"

#include <errno.h>
#include <string.h>

#include "util/log.h"

void bus_init(struct bus *bus, const char *kind)
{
	memset(bus, 0, sizeof(*bus));
	bus->kind = kind;
	pthread_mutex_init(&bus->log_lock, NULL);
}

int bus_register(struct bus *bus, uint64_t base, uint64_t len, bus_io_fn fn, void *opaque,
                 const char *name)
{
	if (len == 0 || base + len < base)
		return -EINVAL;
	for (int i = 0; i < bus->nr; i++) {
		const struct bus_range *r = &bus->ranges[i];
		if (base < r->base + r->len && r->base < base + len)
			return -EEXIST;
	}
	if (bus->nr == BUS_MAX_RANGES)
		return -ENOSPC;
	bus->ranges[bus->nr++] = (struct bus_range){ base, len, fn, opaque, name };
	return 0;
}

static void bus_log_unknown(struct bus *bus, uint64_t addr, uint32_t len, bool is_write)
{
	pthread_mutex_lock(&bus->log_lock);
	bus->unknown_total++;
	for (int i = 0; i < bus->nr_unknown_logged; i++) {
		if (bus->unknown_logged[i] == addr)
			goto out;
	}
	if (bus->nr_unknown_logged < BUS_MAX_UNKNOWN_LOGGED) {
		bus->unknown_logged[bus->nr_unknown_logged++] = addr;
		log_debug("unhandled %s %s at 0x%llx (%u bytes), ignored", bus->kind,
		          is_write ? "write" : "read", (unsigned long long)addr, len);
		if (bus->nr_unknown_logged == BUS_MAX_UNKNOWN_LOGGED)
			log_debug("further unhandled %s addresses are not logged", bus->kind);
	}
out:
	pthread_mutex_unlock(&bus->log_lock);
}

int bus_access(struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len, bool is_write)
{
	for (int i = 0; i < bus->nr; i++) {
		const struct bus_range *r = &bus->ranges[i];
		if (addr >= r->base && addr - r->base < r->len) {
			r->fn(r->opaque, addr - r->base, data, len, is_write);
			return 0;
		}
	}
	if (!is_write)
		memset(data, 0xff, len);
	bus_log_unknown(bus, addr, len, is_write);
	return -ENOENT;
}
