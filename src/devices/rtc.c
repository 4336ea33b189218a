/* MC146818 RTC/CMOS. The clock is host time plus an offset the guest sets by
 * writing the time registers; nothing ticks here and no interrupts are raised
 * (register C always reads 0, UIP is always clear).
 *
 * While register B's SET bit is on, the time fields are latched: reads return
 * the latched values and writes change them without normalising, so a guest
 * writing year, month, day ... one by one never sees a half-set date roll
 * over. Clearing SET turns the latched fields into the new offset. Writes with
 * SET off take effect at once, field by field. The day of the week is derived
 * from the date; writes to it only last while SET is on.
 *
 * Threat model: the guest picks the index and every value. Offsets that would
 * move the clock further than RTC_MAX_OFFSET from host time are ignored, and
 * loaded state is range-checked, so time arithmetic cannot overflow.
 */
#include "devices/rtc.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define RTC_SECONDS 0x00
#define RTC_MINUTES 0x02
#define RTC_HOURS 0x04
#define RTC_WDAY 0x06
#define RTC_MDAY 0x07
#define RTC_MONTH 0x08
#define RTC_YEAR 0x09
#define RTC_REG_A 0x0a
#define RTC_REG_B 0x0b
#define RTC_REG_C 0x0c
#define RTC_REG_D 0x0d
#define RTC_CENTURY 0x32

#define RTC_A_UIP 0x80
#define RTC_B_SET 0x80
#define RTC_B_IRQ_ENABLES 0x78 /* PIE, AIE, UIE, SQWE: cleared by a reset */
#define RTC_B_DM_BINARY 0x04
#define RTC_B_24H 0x02
#define RTC_D_VRT 0x80
#define RTC_HOUR_PM 0x80

#define RTC_CMOS_SIZE 128
#define RTC_INDEX_MASK 0x7f /* bit 7 of the index port is the NMI mask */
#define RTC_MAX_OFFSET (1LL << 40) /* about 35,000 years */
#define RTC_MAX_YEAR 100000        /* latched year bound for loaded state */
#define RTC_STATE_VERSION 1

#define KIB 1024ULL
#define MIB (1024 * KIB)

/* Broken-down guest time; mon is 1..12, year is the full year. Fields may hold
 * whatever the guest wrote while SET is on. */
struct rtc_fields {
	int sec, min, hour, wday, mday, mon, year;
};

struct rtc {
	pthread_mutex_t lock;
	time_t (*now)(void);
	uint8_t index;
	uint8_t cmos[RTC_CMOS_SIZE]; /* time registers here are unused */
	int64_t offset;              /* guest time minus host time, seconds */
	struct rtc_fields latched;   /* valid while register B has SET */
};

static time_t rtc_host_now(void)
{
	return time(NULL);
}

static bool rtc_is_time_reg(uint8_t idx)
{
	switch (idx) {
	case RTC_SECONDS:
	case RTC_MINUTES:
	case RTC_HOURS:
	case RTC_WDAY:
	case RTC_MDAY:
	case RTC_MONTH:
	case RTC_YEAR:
	case RTC_CENTURY:
		return true;
	}
	return false;
}

static void rtc_fields_from_time(int64_t t, struct rtc_fields *f)
{
	time_t tt = (time_t)t;
	struct tm tm;

	memset(f, 0, sizeof(*f));
	if (!gmtime_r(&tt, &tm))
		return;
	f->sec = tm.tm_sec;
	f->min = tm.tm_min;
	f->hour = tm.tm_hour;
	f->wday = tm.tm_wday + 1; /* the RTC counts Sunday as 1 */
	f->mday = tm.tm_mday;
	f->mon = tm.tm_mon + 1;
	f->year = tm.tm_year + 1900;
}

static int64_t rtc_fields_to_time(const struct rtc_fields *f)
{
	struct tm tm = {
		.tm_sec = f->sec,
		.tm_min = f->min,
		.tm_hour = f->hour,
		.tm_mday = f->mday,
		.tm_mon = f->mon - 1,
		.tm_year = f->year - 1900,
	};

	return (int64_t)timegm(&tm);
}

/* Guest time as fields at host time host: latched while SET is on, else
 * host + offset. */
static void rtc_get_fields(struct rtc *r, int64_t host, struct rtc_fields *f)
{
	if (r->cmos[RTC_REG_B] & RTC_B_SET)
		*f = r->latched;
	else
		rtc_fields_from_time(host + r->offset, f);
}

/* Make f the guest's time at host time host; ignored if absurdly far away. */
static void rtc_commit_fields(struct rtc *r, int64_t host, const struct rtc_fields *f)
{
	int64_t off = rtc_fields_to_time(f) - host;

	if (off < -RTC_MAX_OFFSET || off > RTC_MAX_OFFSET)
		return;
	r->offset = off;
}

static unsigned int rtc_mod(int v, int m)
{
	return (unsigned int)(((v % m) + m) % m);
}

static uint8_t rtc_encode(struct rtc *r, int v)
{
	unsigned int u = rtc_mod(v, 100);

	if (r->cmos[RTC_REG_B] & RTC_B_DM_BINARY)
		return (uint8_t)u;
	return (uint8_t)((u / 10) << 4 | u % 10);
}

static int rtc_decode(struct rtc *r, uint8_t v)
{
	if (r->cmos[RTC_REG_B] & RTC_B_DM_BINARY)
		return v;
	return (v >> 4) * 10 + (v & 0x0f);
}

static uint8_t rtc_read_time(struct rtc *r, uint8_t idx)
{
	struct rtc_fields f;
	int h;

	rtc_get_fields(r, (int64_t)r->now(), &f);
	switch (idx) {
	case RTC_SECONDS:
		return rtc_encode(r, f.sec);
	case RTC_MINUTES:
		return rtc_encode(r, f.min);
	case RTC_HOURS:
		if (r->cmos[RTC_REG_B] & RTC_B_24H)
			return rtc_encode(r, f.hour);
		h = (int)rtc_mod(f.hour, 24);
		return rtc_encode(r, h % 12 ? h % 12 : 12) | (h >= 12 ? RTC_HOUR_PM : 0);
	case RTC_WDAY:
		return rtc_encode(r, f.wday);
	case RTC_MDAY:
		return rtc_encode(r, f.mday);
	case RTC_MONTH:
		return rtc_encode(r, f.mon);
	case RTC_YEAR:
		return rtc_encode(r, f.year);
	case RTC_CENTURY:
		return rtc_encode(r, f.year / 100);
	}
	return 0;
}

static void rtc_write_time(struct rtc *r, uint8_t idx, uint8_t v)
{
	int64_t host = (int64_t)r->now();
	struct rtc_fields f;
	int h;

	rtc_get_fields(r, host, &f);
	switch (idx) {
	case RTC_SECONDS:
		f.sec = rtc_decode(r, v);
		break;
	case RTC_MINUTES:
		f.min = rtc_decode(r, v);
		break;
	case RTC_HOURS:
		if (r->cmos[RTC_REG_B] & RTC_B_24H) {
			f.hour = rtc_decode(r, v);
		} else {
			h = rtc_decode(r, v & ~RTC_HOUR_PM);
			f.hour = (h == 12 ? 0 : h) + (v & RTC_HOUR_PM ? 12 : 0);
		}
		break;
	case RTC_WDAY:
		f.wday = rtc_decode(r, v);
		break;
	case RTC_MDAY:
		f.mday = rtc_decode(r, v);
		break;
	case RTC_MONTH:
		f.mon = rtc_decode(r, v);
		break;
	case RTC_YEAR:
		f.year = f.year / 100 * 100 + rtc_decode(r, v);
		break;
	case RTC_CENTURY:
		f.year = rtc_decode(r, v) * 100 + (int)rtc_mod(f.year, 100);
		break;
	}
	if (r->cmos[RTC_REG_B] & RTC_B_SET)
		r->latched = f;
	else
		rtc_commit_fields(r, host, &f);
}

static void rtc_write_b(struct rtc *r, uint8_t v)
{
	uint8_t old = r->cmos[RTC_REG_B];
	int64_t host = (int64_t)r->now();

	if ((v & RTC_B_SET) && !(old & RTC_B_SET))
		rtc_get_fields(r, host, &r->latched);
	r->cmos[RTC_REG_B] = v;
	if (!(v & RTC_B_SET) && (old & RTC_B_SET))
		rtc_commit_fields(r, host, &r->latched);
}

static uint8_t rtc_read_data(struct rtc *r)
{
	uint8_t idx = r->index;

	if (rtc_is_time_reg(idx))
		return rtc_read_time(r, idx);
	switch (idx) {
	case RTC_REG_A:
		return r->cmos[RTC_REG_A] & ~RTC_A_UIP;
	case RTC_REG_C:
		return 0;
	case RTC_REG_D:
		return RTC_D_VRT;
	}
	return r->cmos[idx];
}

static void rtc_write_data(struct rtc *r, uint8_t v)
{
	uint8_t idx = r->index;

	if (rtc_is_time_reg(idx)) {
		rtc_write_time(r, idx, v);
		return;
	}
	switch (idx) {
	case RTC_REG_A:
		r->cmos[RTC_REG_A] = v & ~RTC_A_UIP;
		break;
	case RTC_REG_B:
		rtc_write_b(r, v);
		break;
	case RTC_REG_C:
	case RTC_REG_D:
		break; /* read-only */
	default:
		r->cmos[idx] = v;
		break;
	}
}

/* bus_io_fn for ports 0x70 (offset 0, write-only index) and 0x71 (offset 1, data).
 * Wider accesses are split into byte accesses at consecutive ports. */
static void rtc_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct rtc *r = opaque;

	pthread_mutex_lock(&r->lock);
	for (uint32_t i = 0; i < len; i++) {
		uint64_t port = offset + i;

		if (port < offset) { /* wrapped around */
			if (!is_write)
				data[i] = 0xff;
		} else if (port == 0) {
			if (is_write)
				r->index = data[i] & RTC_INDEX_MASK;
			else
				data[i] = 0xff;
		} else if (port == 1) {
			if (is_write)
				rtc_write_data(r, data[i]);
			else
				data[i] = rtc_read_data(r);
		} else if (!is_write) {
			data[i] = 0xff;
		}
	}
	pthread_mutex_unlock(&r->lock);
}

static void rtc_put16(struct rtc *r, uint8_t idx, uint64_t v)
{
	r->cmos[idx] = (uint8_t)v;
	r->cmos[idx + 1] = (uint8_t)(v >> 8);
}

/* Memory-size bytes as a PC BIOS leaves them. */
static void rtc_set_memory(struct rtc *r, uint64_t below, uint64_t above)
{
	uint64_t v;

	rtc_put16(r, 0x15, 640); /* base memory, KiB */

	v = below > MIB ? (below - MIB) / KIB : 0; /* extended memory above 1 MiB, KiB */
	if (v > 0xffff)
		v = 0xffff;
	rtc_put16(r, 0x17, v);
	rtc_put16(r, 0x30, v);

	v = below > 16 * MIB ? (below - 16 * MIB) / (64 * KIB) : 0; /* 16 MiB..4 GiB */
	if (v > 0xffff)
		v = 0xffff;
	rtc_put16(r, 0x34, v);

	v = above / (64 * KIB); /* above 4 GiB, 64 KiB units, 24 bits */
	if (v > 0xffffff)
		v = 0xffffff;
	r->cmos[0x5b] = (uint8_t)v;
	r->cmos[0x5c] = (uint8_t)(v >> 8);
	r->cmos[0x5d] = (uint8_t)(v >> 16);
}

struct rtc *rtc_create(time_t (*now)(void), uint64_t mem_below_4g, uint64_t mem_above_4g)
{
	struct rtc *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	if (pthread_mutex_init(&r->lock, NULL)) {
		free(r);
		return NULL;
	}
	r->now = now ? now : rtc_host_now;
	r->cmos[RTC_REG_A] = 0x26; /* 32.768 kHz time base, 1024 Hz rate */
	r->cmos[RTC_REG_B] = RTC_B_24H;
	rtc_set_memory(r, mem_below_4g, mem_above_4g);
	return r;
}

void rtc_destroy(struct rtc *r)
{
	if (!r)
		return;
	pthread_mutex_destroy(&r->lock);
	free(r);
}

/* The CMOS is battery-backed: a reset keeps the RAM and the clock, and (as the
 * RESET pin does) clears only the interrupt enables in register B. */
static void rtc_reset(void *dev)
{
	struct rtc *r = dev;

	pthread_mutex_lock(&r->lock);
	r->index = 0;
	r->cmos[RTC_REG_B] &= ~RTC_B_IRQ_ENABLES;
	pthread_mutex_unlock(&r->lock);
}

/* State layout (little-endian): u32 version, u8 index, 128 CMOS bytes,
 * u64 offset, then the latched fields as u8 sec min hour wday mday mon, u32 year. */
static void rtc_save(void *dev, struct sbuf *out)
{
	struct rtc *r = dev;
	const struct rtc_fields *f = &r->latched;

	pthread_mutex_lock(&r->lock);
	sbuf_put_u32(out, RTC_STATE_VERSION);
	sbuf_put_u8(out, r->index);
	sbuf_put(out, r->cmos, sizeof(r->cmos));
	sbuf_put_u64(out, (uint64_t)r->offset);
	sbuf_put_u8(out, (uint8_t)f->sec);
	sbuf_put_u8(out, (uint8_t)f->min);
	sbuf_put_u8(out, (uint8_t)f->hour);
	sbuf_put_u8(out, (uint8_t)f->wday);
	sbuf_put_u8(out, (uint8_t)f->mday);
	sbuf_put_u8(out, (uint8_t)f->mon);
	sbuf_put_u32(out, (uint32_t)f->year);
	pthread_mutex_unlock(&r->lock);
}

static int rtc_load(void *dev, struct sbuf *in)
{
	struct rtc *r = dev;
	uint8_t cmos[RTC_CMOS_SIZE];
	struct rtc_fields f;
	uint8_t index;
	uint32_t version;
	int64_t offset;

	version = sbuf_get_u32(in);
	index = sbuf_get_u8(in);
	sbuf_get(in, cmos, sizeof(cmos));
	offset = (int64_t)sbuf_get_u64(in);
	f.sec = sbuf_get_u8(in);
	f.min = sbuf_get_u8(in);
	f.hour = sbuf_get_u8(in);
	f.wday = sbuf_get_u8(in);
	f.mday = sbuf_get_u8(in);
	f.mon = sbuf_get_u8(in);
	f.year = (int32_t)sbuf_get_u32(in);
	if (in->err || version != RTC_STATE_VERSION || (index & ~RTC_INDEX_MASK) ||
	    (cmos[RTC_REG_A] & RTC_A_UIP) || offset < -RTC_MAX_OFFSET ||
	    offset > RTC_MAX_OFFSET || f.year < -RTC_MAX_YEAR || f.year > RTC_MAX_YEAR)
		return -EINVAL;

	pthread_mutex_lock(&r->lock);
	r->index = index;
	memcpy(r->cmos, cmos, sizeof(cmos));
	r->offset = offset;
	r->latched = f;
	pthread_mutex_unlock(&r->lock);
	return 0;
}

const struct device_ops rtc_ops = {
	.name = "rtc",
	.io = rtc_io,
	.reset = rtc_reset,
	.save = rtc_save,
	.load = rtc_load,
};
