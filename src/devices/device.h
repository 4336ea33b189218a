/* The one ops table every device implements (legacy and, later, virtio). */
#ifndef CVISOR_DEVICES_DEVICE_H
#define CVISOR_DEVICES_DEVICE_H

#include "state/sbuf.h"
#include "vm/bus.h"

struct device_ops {
	const char *name;
	bus_io_fn io;                               /* register access */
	void (*reset)(void *dev);                   /* back to power-on state */
	void (*save)(void *dev, struct sbuf *out);  /* append state */
	int (*load)(void *dev, struct sbuf *in);    /* 0 or -EINVAL on bad state */
};

/* Callback used by devices to drive an interrupt line (level 1 = asserted). */
typedef void (*irq_fn)(void *opaque, uint32_t gsi, int level);

#endif
