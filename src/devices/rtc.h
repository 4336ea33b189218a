/* MC146818 RTC/CMOS at ports 0x70/0x71: wall-clock time in BCD or binary,
 * 24h mode, no alarm/periodic interrupts, CMOS RAM bytes kept. */
#ifndef CVISOR_DEVICES_RTC_H
#define CVISOR_DEVICES_RTC_H

#include <stdint.h>
#include <time.h>

#include "devices/device.h"

#define RTC_BASE 0x70
#define RTC_NR_PORTS 2

struct rtc;

/* Create; now() supplies the host time (NULL means time(NULL)), so tests can fake it.
 * mem_below_4g / mem_above_4g fill the CMOS memory-size bytes (0x15-0x18, 0x30-0x31, 0x34-0x35, 0x5b-0x5d) as firmware would. */
struct rtc *rtc_create(time_t (*now)(void), uint64_t mem_below_4g, uint64_t mem_above_4g);
/* Free it. */
void rtc_destroy(struct rtc *r);

extern const struct device_ops rtc_ops;

#endif
