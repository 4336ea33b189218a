/* virtio-rng: one request queue; every buffer the driver offers is
 * device-writable and gets filled with random bytes. When the token bucket
 * runs dry the queue waits on a timerfd instead of spinning. */
#include "virtio/rng.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "util/log.h"
#include "util/ratelimit.h"
#include "util/size.h"

struct virtio_rng {
	struct virtio_dev *vdev;
	struct evloop *loop; /* where the timer is registered (outlives vdev at teardown) */
	struct ratelimit rl;
	int timer_fd;
	bool timer_armed;
	uint64_t bytes;
	struct virtq_elem elem;
};

static void rng_arm(struct virtio_rng *r, uint64_t ns)
{
	struct itimerspec t = { .it_value = { .tv_sec = (time_t)(ns / 1000000000ULL),
		                              .tv_nsec = (long)(ns % 1000000000ULL) } };
	if (!t.it_value.tv_sec && !t.it_value.tv_nsec)
		t.it_value.tv_nsec = 1;
	if (timerfd_settime(r->timer_fd, 0, &t, NULL) == 0)
		r->timer_armed = true;
}

/* Fill as many requests as the bucket allows. vdev->lock held. */
static void rng_process(struct virtio_rng *r)
{
	struct virtio_dev *vd = r->vdev;
	bool pushed = false;

	if (!vd || r->timer_armed)
		return;
	struct virtq *q = &vd->vqs[0];
	for (;;) {
		int rc = virtq_pop(q, &r->elem);
		if (rc < 0) {
			virtio_set_needs_reset(vd, q->broken_why);
			break;
		}
		if (rc == 0)
			break;
		struct virtq_elem *e = &r->elem;
		uint64_t want = e->in_len, granted = ratelimit_take(&r->rl, want);
		if (want && !granted) {
			virtq_unpop(q);
			rng_arm(r, ratelimit_wait_ns(&r->rl, want < 4096 ? want : 4096));
			break;
		}
		uint32_t written = 0;
		for (unsigned i = e->out_num; i < (unsigned)e->out_num + e->in_num && written < granted; i++) {
			size_t n = e->iov[i].iov_len;
			if (n > granted - written)
				n = (size_t)(granted - written);
			ssize_t got = getrandom(e->iov[i].iov_base, n, GRND_NONBLOCK);
			if (got <= 0)
				break; /* the host pool is not ready yet: give what we have */
			written += (uint32_t)got;
		}
		r->bytes += written;
		virtq_push(q, e->head, written);
		pushed = true;
	}
	if (pushed)
		virtio_notify_queue(vd, 0);
}

static void rng_timer_ev(void *opaque, uint32_t events)
{
	struct virtio_rng *r = opaque;
	uint64_t v;
	(void)events;
	if (read(r->timer_fd, &v, sizeof(v)) < 0) {
		/* spurious wake-up */
	}
	if (!r->vdev)
		return;
	pthread_mutex_lock(&r->vdev->lock);
	r->timer_armed = false;
	if (r->vdev->status & VIRTIO_STATUS_DRIVER_OK)
		rng_process(r);
	pthread_mutex_unlock(&r->vdev->lock);
}

static uint64_t rng_features(void *priv)
{
	(void)priv;
	return 1ULL << VIRTIO_F_EVENT_IDX | 1ULL << VIRTIO_F_INDIRECT_DESC;
}

static int rng_activate(void *priv, struct virtio_dev *vdev)
{
	struct virtio_rng *r = priv;
	if (!r->vdev) {
		r->vdev = vdev;
		r->loop = vdev->loop;
		if (evloop_add(r->loop, r->timer_fd, EPOLLIN, rng_timer_ev, r) < 0)
			return -EIO;
	}
	rng_process(r);
	return 0;
}

static void rng_notify(void *priv, uint16_t q)
{
	(void)q;
	rng_process(priv);
}

static void rng_reset(void *priv)
{
	struct virtio_rng *r = priv;
	struct itimerspec off = { 0 };
	timerfd_settime(r->timer_fd, 0, &off, NULL);
	r->timer_armed = false;
}

static void rng_save(void *priv, struct sbuf *out)
{
	struct virtio_rng *r = priv;
	sbuf_put_u64(out, r->rl.rate);
	sbuf_put_u64(out, r->bytes);
}

static int rng_load(void *priv, struct sbuf *in)
{
	struct virtio_rng *r = priv;
	uint64_t rate = sbuf_get_u64(in), bytes = sbuf_get_u64(in);
	if (in->err)
		return -EINVAL;
	ratelimit_init(&r->rl, rate, 0);
	r->bytes = bytes;
	return 0;
}

const struct virtio_dev_ops virtio_rng_ops = {
	.name = "virtio-rng",
	.device_id = VIRTIO_ID_RNG,
	.num_queues = 1,
	.queue_max = 256,
	.config_size = 0,
	.features = rng_features,
	.activate = rng_activate,
	.queue_notify = rng_notify,
	.reset = rng_reset,
	.save = rng_save,
	.load = rng_load,
};

struct virtio_rng *virtio_rng_create(uint64_t bytes_per_sec)
{
	struct virtio_rng *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (r->timer_fd < 0) {
		free(r);
		return NULL;
	}
	ratelimit_init(&r->rl, bytes_per_sec, bytes_per_sec);
	return r;
}

void virtio_rng_destroy(struct virtio_rng *r)
{
	if (!r)
		return;
	if (r->loop)
		evloop_del(r->loop, r->timer_fd);
	close(r->timer_fd);
	free(r);
}

int virtio_rng_parse(const char *opts, uint64_t *bps, char *err, size_t errlen)
{
	*bps = VIRTIO_RNG_DEFAULT_BPS;
	if (!opts || !*opts)
		return 0;
	if (strncmp(opts, "bps=", 4) || size_parse_u64(opts + 4, bps) < 0) {
		snprintf(err, errlen, "--rng: '%s' is not bps=N (bytes per second, 0 = unlimited)", opts);
		return -EINVAL;
	}
	return 0;
}
