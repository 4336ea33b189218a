/* Minimal i8042 keyboard controller: no keyboard or mouse behind it, a
 * one-byte output buffer for controller command replies, the command byte,
 * and the reset line (command 0xfe, or output-port bit 0 cleared via 0xd1).
 *
 * Threat model: the guest writes anything to either port; unknown commands
 * and data bytes meant for the (absent) keyboard are dropped.
 */
#include "devices/i8042.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#define I8042_OFF_DATA 0 /* the range starts at the data port */
#define I8042_OFF_CMD (I8042_CMD_PORT - I8042_DATA_PORT)

#define I8042_STR_OBF 0x01  /* output buffer full */
#define I8042_STR_SYS 0x04  /* system flag (mirrors the command byte) */
#define I8042_STR_CMD 0x08  /* last write went to the command port */
#define I8042_STR_INH 0x10  /* keyboard not inhibited */

#define I8042_CTR_SYS 0x04
#define I8042_CTR_KBDDIS 0x10
#define I8042_CTR_AUXDIS 0x20
#define I8042_CTR_DEFAULT 0x45 /* keyboard interrupt, system flag, translation */

#define I8042_CMD_READ_CTR 0x20
#define I8042_CMD_WRITE_CTR 0x60
#define I8042_CMD_AUX_DISABLE 0xa7
#define I8042_CMD_AUX_ENABLE 0xa8
#define I8042_CMD_SELF_TEST 0xaa
#define I8042_CMD_KBD_DISABLE 0xad
#define I8042_CMD_KBD_ENABLE 0xae
#define I8042_CMD_READ_OUTP 0xd0
#define I8042_CMD_WRITE_OUTP 0xd1
#define I8042_CMD_PULSE_RESET 0xfe

#define I8042_SELF_TEST_OK 0x55
#define I8042_OUTP_RESET 0x01 /* active low: clearing it resets the CPU */
#define I8042_OUTP_DEFAULT 0x03 /* reset line high, A20 enabled */

#define I8042_STATE_VERSION 1

struct i8042 {
	pthread_mutex_t lock;
	void (*reset_req)(void *opaque);
	void *opaque;

	uint8_t ctr;     /* command byte */
	uint8_t outp;    /* output port */
	uint8_t out;     /* output buffer */
	bool out_full;
	bool last_cmd;   /* last write was to the command port */
	uint8_t pending; /* command waiting for its data byte, or 0 */
};

static void i8042_queue(struct i8042 *k, uint8_t v)
{
	k->out = v;
	k->out_full = true;
}

static uint8_t i8042_status(const struct i8042 *k)
{
	uint8_t v = I8042_STR_INH;

	if (k->out_full)
		v |= I8042_STR_OBF;
	if (k->ctr & I8042_CTR_SYS)
		v |= I8042_STR_SYS;
	if (k->last_cmd)
		v |= I8042_STR_CMD;
	return v;
}

/* A command written to 0x64; returns true if the reset line was pulsed. */
static bool i8042_command(struct i8042 *k, uint8_t cmd)
{
	k->last_cmd = true;
	k->pending = 0;
	switch (cmd) {
	case I8042_CMD_READ_CTR:
		i8042_queue(k, k->ctr);
		break;
	case I8042_CMD_WRITE_CTR:
	case I8042_CMD_WRITE_OUTP:
		k->pending = cmd;
		break;
	case I8042_CMD_READ_OUTP:
		i8042_queue(k, k->outp);
		break;
	case I8042_CMD_SELF_TEST:
		i8042_queue(k, I8042_SELF_TEST_OK);
		break;
	case I8042_CMD_KBD_DISABLE:
		k->ctr |= I8042_CTR_KBDDIS;
		break;
	case I8042_CMD_KBD_ENABLE:
		k->ctr &= ~I8042_CTR_KBDDIS;
		break;
	case I8042_CMD_AUX_DISABLE:
		k->ctr |= I8042_CTR_AUXDIS;
		break;
	case I8042_CMD_AUX_ENABLE:
		k->ctr &= ~I8042_CTR_AUXDIS;
		break;
	case I8042_CMD_PULSE_RESET:
		return true;
	}
	return false;
}

/* A byte written to 0x60; returns true if it cleared the reset line. */
static bool i8042_data(struct i8042 *k, uint8_t v)
{
	uint8_t cmd = k->pending;

	k->last_cmd = false;
	k->pending = 0;
	switch (cmd) {
	case I8042_CMD_WRITE_CTR:
		k->ctr = v;
		break;
	case I8042_CMD_WRITE_OUTP:
		k->outp = v;
		return !(v & I8042_OUTP_RESET);
	}
	/* Otherwise a byte for the keyboard, which is not there. */
	return false;
}

/* bus_io_fn for ports 0x60..0x64; wider accesses are split into bytes. */
static void i8042_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct i8042 *k = opaque;
	bool reset = false;

	pthread_mutex_lock(&k->lock);
	for (uint32_t i = 0; i < len; i++) {
		uint64_t port = offset + i;

		if (port < offset) { /* wrapped around */
			if (!is_write)
				data[i] = 0xff;
		} else if (port == I8042_OFF_DATA) {
			if (is_write) {
				reset |= i8042_data(k, data[i]);
			} else {
				data[i] = k->out_full ? k->out : 0;
				k->out_full = false;
			}
		} else if (port == I8042_OFF_CMD) {
			if (is_write)
				reset |= i8042_command(k, data[i]);
			else
				data[i] = i8042_status(k);
		} else if (!is_write) {
			data[i] = 0xff;
		}
	}
	pthread_mutex_unlock(&k->lock);

	if (reset && k->reset_req)
		k->reset_req(k->opaque);
}

static void i8042_reset_locked(struct i8042 *k)
{
	k->ctr = I8042_CTR_DEFAULT;
	k->outp = I8042_OUTP_DEFAULT;
	k->out = 0;
	k->out_full = false;
	k->last_cmd = true;
	k->pending = 0;
}

struct i8042 *i8042_create(void (*reset_req)(void *opaque), void *opaque)
{
	struct i8042 *k = calloc(1, sizeof(*k));

	if (!k)
		return NULL;
	if (pthread_mutex_init(&k->lock, NULL)) {
		free(k);
		return NULL;
	}
	k->reset_req = reset_req;
	k->opaque = opaque;
	i8042_reset_locked(k);
	return k;
}

void i8042_destroy(struct i8042 *k)
{
	if (!k)
		return;
	pthread_mutex_destroy(&k->lock);
	free(k);
}

static void i8042_reset(void *dev)
{
	struct i8042 *k = dev;

	pthread_mutex_lock(&k->lock);
	i8042_reset_locked(k);
	pthread_mutex_unlock(&k->lock);
}

/* State layout: u32 version, u8 ctr outp out out_full last_cmd pending. */
static void i8042_save(void *dev, struct sbuf *out)
{
	struct i8042 *k = dev;

	pthread_mutex_lock(&k->lock);
	sbuf_put_u32(out, I8042_STATE_VERSION);
	sbuf_put_u8(out, k->ctr);
	sbuf_put_u8(out, k->outp);
	sbuf_put_u8(out, k->out);
	sbuf_put_u8(out, k->out_full);
	sbuf_put_u8(out, k->last_cmd);
	sbuf_put_u8(out, k->pending);
	pthread_mutex_unlock(&k->lock);
}

static int i8042_load(void *dev, struct sbuf *in)
{
	struct i8042 *k = dev;
	uint32_t version;
	uint8_t ctr, outp, out, out_full, last_cmd, pending;

	version = sbuf_get_u32(in);
	ctr = sbuf_get_u8(in);
	outp = sbuf_get_u8(in);
	out = sbuf_get_u8(in);
	out_full = sbuf_get_u8(in);
	last_cmd = sbuf_get_u8(in);
	pending = sbuf_get_u8(in);
	if (in->err || version != I8042_STATE_VERSION || out_full > 1 || last_cmd > 1 ||
	    (pending && pending != I8042_CMD_WRITE_CTR && pending != I8042_CMD_WRITE_OUTP))
		return -EINVAL;

	pthread_mutex_lock(&k->lock);
	k->ctr = ctr;
	k->outp = outp;
	k->out = out;
	k->out_full = out_full;
	k->last_cmd = last_cmd;
	k->pending = pending;
	pthread_mutex_unlock(&k->lock);
	return 0;
}

const struct device_ops i8042_ops = {
	.name = "i8042",
	.io = i8042_io,
	.reset = i8042_reset,
	.save = i8042_save,
	.load = i8042_load,
};
