/* virtio-console: port 0 only. Every transmit-queue buffer goes to the output
 * sink as it is popped; host input waits in a small ring until the driver
 * offers receive buffers. All state is guarded by the transport's vdev->lock:
 * the ops run with it held, the entry points used by the VM take it.
 *
 * The guest is untrusted: descriptors come from virtq_pop (checked there);
 * a broken queue sets NEEDS_RESET; nothing here loops longer than the work
 * the driver made available. */
#include "virtio/console.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>

struct virtio_console {
	struct virtio_dev *vdev;
	virtio_console_out_fn out;
	void *out_opaque;
	virtio_console_room_fn room;
	void *room_opaque;
	uint16_t cols, rows;
	/* host input not yet given to the guest: a ring of in_len bytes from in_head */
	uint8_t in[VIRTIO_CONSOLE_INPUT_BUF];
	size_t in_head, in_len;
	bool starved; /* the VM saw a full buffer and waits for a room call */
	struct virtio_console_counters cnt;
	struct virtq_elem elem;
};

static void con_lock(struct virtio_console *c)
{
	if (c->vdev)
		pthread_mutex_lock(&c->vdev->lock);
}

static void con_unlock(struct virtio_console *c)
{
	if (c->vdev)
		pthread_mutex_unlock(&c->vdev->lock);
}

static bool con_running(struct virtio_console *c)
{
	struct virtio_dev *vd = c->vdev;
	return vd && (vd->status & VIRTIO_STATUS_DRIVER_OK) &&
	       !(vd->status & VIRTIO_STATUS_NEEDS_RESET);
}

static void con_room(struct virtio_console *c)
{
	if (c->room)
		c->room(c->room_opaque);
}

/* Give buffered input to the driver's receive buffers. Lock held. */
static void con_fill_rx(struct virtio_console *c)
{
	struct virtio_dev *vd = c->vdev;
	size_t before = c->in_len;
	bool pushed = false;

	if (!con_running(c))
		return;
	struct virtq *q = &vd->vqs[VIRTIO_CONSOLE_RXQ];
	while (c->in_len) {
		int rc = virtq_pop(q, &c->elem);
		if (rc < 0) {
			virtio_set_needs_reset(vd, q->broken_why);
			break;
		}
		if (rc == 0)
			break;
		struct virtq_elem *e = &c->elem;
		uint32_t written = 0;
		/* device-readable parts of a receive buffer make no sense: skip them */
		for (unsigned i = e->out_num; i < (unsigned)e->out_num + e->in_num && c->in_len; i++) {
			uint8_t *dst = e->iov[i].iov_base;
			size_t room = e->iov[i].iov_len;
			while (room && c->in_len) {
				size_t chunk = VIRTIO_CONSOLE_INPUT_BUF - c->in_head;
				if (chunk > c->in_len)
					chunk = c->in_len;
				if (chunk > room)
					chunk = room;
				memcpy(dst, c->in + c->in_head, chunk);
				dst += chunk;
				room -= chunk;
				written += (uint32_t)chunk;
				c->in_head = (c->in_head + chunk) % VIRTIO_CONSOLE_INPUT_BUF;
				c->in_len -= chunk;
			}
		}
		c->cnt.rx_bytes += written;
		virtq_push(q, e->head, written);
		pushed = true;
	}
	if (pushed)
		virtio_notify_queue(vd, VIRTIO_CONSOLE_RXQ);
	if (c->in_len < before && c->starved) {
		c->starved = false;
		con_room(c);
	}
}

/* Send every transmit buffer to the sink. Lock held. */
static void con_drain_tx(struct virtio_console *c)
{
	struct virtio_dev *vd = c->vdev;
	bool pushed = false;

	if (!con_running(c))
		return;
	struct virtq *q = &vd->vqs[VIRTIO_CONSOLE_TXQ];
	for (;;) {
		int rc = virtq_pop(q, &c->elem);
		if (rc < 0) {
			virtio_set_needs_reset(vd, q->broken_why);
			break;
		}
		if (rc == 0)
			break;
		struct virtq_elem *e = &c->elem;
		/* device-writable parts of a transmit buffer are ignored */
		for (unsigned i = 0; i < e->out_num; i++) {
			if (e->iov[i].iov_len && c->out)
				c->out(c->out_opaque, e->iov[i].iov_base, e->iov[i].iov_len);
			c->cnt.tx_bytes += e->iov[i].iov_len;
		}
		virtq_push(q, e->head, 0);
		pushed = true;
	}
	if (pushed)
		virtio_notify_queue(vd, VIRTIO_CONSOLE_TXQ);
}

static uint64_t con_features(void *priv)
{
	(void)priv;
	return 1ULL << VIRTIO_CONSOLE_F_SIZE | 1ULL << VIRTIO_F_EVENT_IDX |
	       1ULL << VIRTIO_F_INDIRECT_DESC;
}

static void con_config_read(void *priv, uint32_t off, uint8_t *buf, uint32_t len)
{
	struct virtio_console *c = priv;
	uint8_t cfg[VIRTIO_CONSOLE_CONFIG_SIZE] = { 0 };

	cfg[0] = (uint8_t)c->cols;
	cfg[1] = (uint8_t)(c->cols >> 8);
	cfg[2] = (uint8_t)c->rows;
	cfg[3] = (uint8_t)(c->rows >> 8);
	cfg[4] = 1; /* max_nr_ports: meaningful only with MULTIPORT, which is not offered */
	if (off > sizeof(cfg) || len > sizeof(cfg) - off) {
		memset(buf, 0, len);
		return;
	}
	memcpy(buf, cfg + off, len);
}

static void con_config_write(void *priv, uint32_t off, const uint8_t *buf, uint32_t len)
{
	/* cols/rows are the device's; emerg_wr needs EMERG_WRITE, not offered */
	(void)priv;
	(void)off;
	(void)buf;
	(void)len;
}

static int con_activate(void *priv, struct virtio_dev *vdev)
{
	struct virtio_console *c = priv;

	if (!c->vdev)
		c->vdev = vdev;
	/* Linux reads the size only on a config interrupt: tell it now (it
	 * holds the event until its probe is done). */
	if (virtio_has_feature(vdev, VIRTIO_CONSOLE_F_SIZE))
		virtio_notify_config(vdev);
	con_drain_tx(c);
	con_fill_rx(c);
	con_room(c); /* input now goes here: let the VM look again */
	return 0;
}

static void con_notify(void *priv, uint16_t q)
{
	struct virtio_console *c = priv;
	if (q == VIRTIO_CONSOLE_TXQ)
		con_drain_tx(c);
	else if (q == VIRTIO_CONSOLE_RXQ)
		con_fill_rx(c);
}

static void con_reset(void *priv)
{
	struct virtio_console *c = priv;
	/* buffered input stays for the next driver; the VM's input goes back to the UART */
	con_room(c);
}

static void con_save(void *priv, struct sbuf *out)
{
	struct virtio_console *c = priv;

	sbuf_put_u32(out, c->cols);
	sbuf_put_u32(out, c->rows);
	sbuf_put_u64(out, c->cnt.tx_bytes);
	sbuf_put_u64(out, c->cnt.rx_bytes);
	sbuf_put_u32(out, (uint32_t)c->in_len);
	for (size_t i = 0; i < c->in_len; i++)
		sbuf_put_u8(out, c->in[(c->in_head + i) % VIRTIO_CONSOLE_INPUT_BUF]);
}

static int con_load(void *priv, struct sbuf *in)
{
	struct virtio_console *c = priv;
	uint8_t data[VIRTIO_CONSOLE_INPUT_BUF];

	uint32_t cols = sbuf_get_u32(in), rows = sbuf_get_u32(in);
	uint64_t tx = sbuf_get_u64(in), rx = sbuf_get_u64(in);
	uint32_t n = sbuf_get_u32(in);
	if (in->err || cols > UINT16_MAX || rows > UINT16_MAX || n > sizeof(data))
		return -EINVAL;
	sbuf_get(in, data, n);
	if (in->err)
		return -EINVAL;
	c->cols = (uint16_t)cols;
	c->rows = (uint16_t)rows;
	c->cnt.tx_bytes = tx;
	c->cnt.rx_bytes = rx;
	memcpy(c->in, data, n);
	c->in_head = 0;
	c->in_len = n;
	return 0;
}

const struct virtio_dev_ops virtio_console_ops = {
	.name = "virtio-console",
	.device_id = VIRTIO_ID_CONSOLE,
	.num_queues = 2,
	.queue_max = 256,
	.config_size = VIRTIO_CONSOLE_CONFIG_SIZE,
	.features = con_features,
	.config_read = con_config_read,
	.config_write = con_config_write,
	.activate = con_activate,
	.queue_notify = con_notify,
	.reset = con_reset,
	.save = con_save,
	.load = con_load,
};

struct virtio_console *virtio_console_create(const struct virtio_console_setup *s)
{
	struct virtio_console *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->out = s->out;
	c->out_opaque = s->out_opaque;
	c->room = s->room;
	c->room_opaque = s->room_opaque;
	c->cols = s->cols ? s->cols : VIRTIO_CONSOLE_DEFAULT_COLS;
	c->rows = s->rows ? s->rows : VIRTIO_CONSOLE_DEFAULT_ROWS;
	return c;
}

void virtio_console_attach(struct virtio_console *c, struct virtio_dev *vdev)
{
	c->vdev = vdev;
}

void virtio_console_destroy(struct virtio_console *c)
{
	free(c);
}

bool virtio_console_ready(struct virtio_console *c)
{
	con_lock(c);
	bool ready = con_running(c) && c->vdev->vqs[VIRTIO_CONSOLE_RXQ].ready;
	con_unlock(c);
	return ready;
}

size_t virtio_console_input(struct virtio_console *c, const uint8_t *buf, size_t len)
{
	size_t n = 0;

	con_lock(c);
	while (n < len && c->in_len < VIRTIO_CONSOLE_INPUT_BUF) {
		size_t tail = (c->in_head + c->in_len) % VIRTIO_CONSOLE_INPUT_BUF;
		size_t chunk = VIRTIO_CONSOLE_INPUT_BUF - tail;
		if (chunk > VIRTIO_CONSOLE_INPUT_BUF - c->in_len)
			chunk = VIRTIO_CONSOLE_INPUT_BUF - c->in_len;
		if (chunk > len - n)
			chunk = len - n;
		memcpy(c->in + tail, buf + n, chunk);
		c->in_len += chunk;
		n += chunk;
	}
	if (n < len)
		c->starved = true;
	con_fill_rx(c);
	con_unlock(c);
	return n;
}

size_t virtio_console_input_room(struct virtio_console *c)
{
	con_lock(c);
	size_t room = VIRTIO_CONSOLE_INPUT_BUF - c->in_len;
	if (!room)
		c->starved = true;
	con_unlock(c);
	return room;
}

void virtio_console_resize(struct virtio_console *c, uint16_t cols, uint16_t rows)
{
	con_lock(c);
	if (cols != c->cols || rows != c->rows) {
		c->cols = cols;
		c->rows = rows;
		if (con_running(c) && virtio_has_feature(c->vdev, VIRTIO_CONSOLE_F_SIZE))
			virtio_notify_config(c->vdev);
	}
	con_unlock(c);
}

int virtio_console_term_size(int fd, uint16_t *cols, uint16_t *rows)
{
	struct winsize ws;

	if (fd < 0 || ioctl(fd, TIOCGWINSZ, &ws) < 0)
		return fd < 0 ? -EBADF : -errno;
	if (!ws.ws_col || !ws.ws_row)
		return -ENODATA;
	*cols = ws.ws_col;
	*rows = ws.ws_row;
	return 0;
}

void virtio_console_counters(struct virtio_console *c, struct virtio_console_counters *out)
{
	con_lock(c);
	*out = c->cnt;
	con_unlock(c);
}
