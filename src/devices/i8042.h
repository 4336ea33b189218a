/* Minimal i8042 keyboard controller at ports 0x60/0x64: enough for the guest
 * to find no keyboard and to reset the machine by writing 0xfe to 0x64. */
#ifndef CVISOR_DEVICES_I8042_H
#define CVISOR_DEVICES_I8042_H

#include "devices/device.h"

#define I8042_DATA_PORT 0x60
#define I8042_CMD_PORT 0x64

struct i8042;

/* reset_req is called (from a vCPU thread) when the guest pulses the reset line. */
struct i8042 *i8042_create(void (*reset_req)(void *opaque), void *opaque);
/* Free it. */
void i8042_destroy(struct i8042 *k);

/* ops: io is registered once for ports 0x60..0x64 (offset = port - 0x60). Port 0x61
 * (PIT speaker) never reaches it: KVM's in-kernel PIT claims it. Offsets 1..3 read
 * as 0xff and ignore writes. */
extern const struct device_ops i8042_ops;

#endif
