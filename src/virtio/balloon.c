/* virtio-balloon. Queues that exist (5.5.2): inflateq 0, deflateq 1, then
 * statsq if STATS_VQ was negotiated, then reporting_vq if PAGE_REPORTING was
 * (free_page_vq, FREE_PAGE_HINT, is never offered). Linux numbers only the
 * queues that exist, so reporting_vq is 2 or 3; a driver that keeps the
 * spec's table numbering would use 4. Neither reading gives two roles to one
 * index, so all three are served.
 *
 * The guest is untrusted: PFNs are data, each one looked up with mem_ptr()
 * and skipped (counted) when it is not RAM; descriptors come from virtq_pop;
 * at most BAL_MAX_DATA bytes of one buffer are read. Nothing here frees
 * memory the guest did not name, and only whole 4 KiB pages inside RAM are
 * dropped. All state is guarded by the transport's vdev->lock. */
#include "virtio/balloon.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "util/log.h"
#include "util/size.h"

#define BAL_MAX_DATA 65536 /* bytes read from one inflate/deflate/stats buffer (Linux: 1 KiB) */
#define STAT_SIZE 10       /* le16 tag, le64 val, packed */

enum bal_role { ROLE_NONE, ROLE_INFLATE, ROLE_DEFLATE, ROLE_STATS, ROLE_REPORTING };

struct virtio_balloon {
	struct virtio_dev *vdev;
	struct virtio_balloon_opts opts;
	uint32_t num_pages; /* target, set by the host */
	uint32_t actual;    /* written by the driver */
	bool stats_held;    /* we hold the driver's stats buffer */
	uint16_t stats_head;
	struct virtio_balloon_stats stats;
	struct virtio_balloon_counters cnt;
	bool warned;
	struct virtq_elem elem;
	uint8_t data[BAL_MAX_DATA];
};

static void bal_lock(struct virtio_balloon *b)
{
	if (b->vdev)
		pthread_mutex_lock(&b->vdev->lock);
}

static void bal_unlock(struct virtio_balloon *b)
{
	if (b->vdev)
		pthread_mutex_unlock(&b->vdev->lock);
}

static bool bal_running(struct virtio_balloon *b)
{
	struct virtio_dev *vd = b->vdev;
	return vd && (vd->status & VIRTIO_STATUS_DRIVER_OK) &&
	       !(vd->status & VIRTIO_STATUS_NEEDS_RESET);
}

static enum bal_role bal_role(const struct virtio_dev *vd, uint16_t q)
{
	bool stats = virtio_has_feature(vd, VIRTIO_BALLOON_F_STATS_VQ);
	bool rep = virtio_has_feature(vd, VIRTIO_BALLOON_F_PAGE_REPORTING);

	switch (q) {
	case 0: return ROLE_INFLATE;
	case 1: return ROLE_DEFLATE;
	case 2: return stats ? ROLE_STATS : rep ? ROLE_REPORTING : ROLE_NONE;
	case 3: return stats && rep ? ROLE_REPORTING : ROLE_NONE;
	case 4: return rep ? ROLE_REPORTING : ROLE_NONE;
	default: return ROLE_NONE;
	}
}

static uint32_t ld32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t ld64(const uint8_t *p)
{
	return (uint64_t)ld32(p) | (uint64_t)ld32(p + 4) << 32;
}

/* Copy up to BAL_MAX_DATA device-readable bytes of e into b->data. */
static size_t bal_gather(struct virtio_balloon *b, const struct virtq_elem *e)
{
	size_t n = 0;
	for (unsigned i = 0; i < e->out_num && n < sizeof(b->data); i++) {
		size_t k = e->iov[i].iov_len;
		if (k > sizeof(b->data) - n)
			k = sizeof(b->data) - n;
		memcpy(b->data + n, e->iov[i].iov_base, k);
		n += k;
	}
	return n;
}

/* Whether host range [p, p + len) lies inside one RAM region. */
static bool bal_in_ram(const struct guest_mem *m, const uint8_t *p, size_t len)
{
	for (int i = 0; i < m->nr_regions; i++) {
		const struct mem_region *r = &m->regions[i];
		if (p >= r->hva && (uint64_t)(p - r->hva) <= r->len &&
		    len <= r->len - (uint64_t)(p - r->hva))
			return true;
	}
	return false;
}

/* Give host memory back: the guest reads zeroes there next time. */
static void bal_drop(struct virtio_balloon *b, uint8_t *p, size_t len)
{
	if (!len)
		return;
	if (madvise(p, len, MADV_DONTNEED) < 0) {
		b->cnt.madvise_errors++;
		if (!b->warned)
			log_warn("virtio-balloon: madvise(DONTNEED) failed: %s", strerror(errno));
		b->warned = true;
		return;
	}
	b->cnt.dropped += len / VIRTIO_BALLOON_PAGE;
}

/* An inflate or deflate buffer: an array of le32 4 KiB page frame numbers. */
static void bal_pfns(struct virtio_balloon *b, const struct virtq_elem *e, bool inflate)
{
	const struct guest_mem *m = b->vdev->mem;
	size_t n = bal_gather(b, e);
	uint8_t *run = NULL;
	size_t run_len = 0;

	if (e->out_len > n)
		b->cnt.bad_pfns += (e->out_len - n) / 4; /* beyond what we read: ignored */
	for (size_t off = 0; off + 4 <= n; off += 4) {
		uint64_t gpa = (uint64_t)ld32(b->data + off) << VIRTIO_BALLOON_PFN_SHIFT;
		uint8_t *p = mem_ptr(m, gpa, VIRTIO_BALLOON_PAGE);
		if (!p) {
			b->cnt.bad_pfns++;
			continue;
		}
		if (!inflate) {
			b->cnt.deflated++;
			continue;
		}
		b->cnt.inflated++;
		if (run && p == run + run_len) {
			run_len += VIRTIO_BALLOON_PAGE;
			continue;
		}
		bal_drop(b, run, run_len);
		run = p;
		run_len = VIRTIO_BALLOON_PAGE;
	}
	bal_drop(b, run, run_len);
}

/* A reporting buffer: each segment is a free range; drop its whole pages. */
static void bal_report(struct virtio_balloon *b, const struct virtq_elem *e)
{
	for (unsigned i = 0; i < (unsigned)e->out_num + e->in_num; i++) {
		uint8_t *p = e->iov[i].iov_base;
		size_t len = e->iov[i].iov_len;
		if (!len || !bal_in_ram(b->vdev->mem, p, len))
			continue;
		uintptr_t s = ((uintptr_t)p + VIRTIO_BALLOON_PAGE - 1) & ~(uintptr_t)(VIRTIO_BALLOON_PAGE - 1);
		uintptr_t end = ((uintptr_t)p + len) & ~(uintptr_t)(VIRTIO_BALLOON_PAGE - 1);
		if (end <= s)
			continue;
		uint64_t before = b->cnt.dropped;
		bal_drop(b, (uint8_t *)s, end - s);
		if (b->cnt.dropped != before)
			b->cnt.reported_bytes += end - s;
	}
}

/* A stats buffer: packed { le16 tag; le64 val; } entries; unknown tags ignored. */
static void bal_parse_stats(struct virtio_balloon *b, const struct virtq_elem *e)
{
	size_t n = bal_gather(b, e);

	for (size_t off = 0; off + STAT_SIZE <= n; off += STAT_SIZE) {
		uint16_t tag = (uint16_t)(b->data[off] | b->data[off + 1] << 8);
		if (tag >= VIRTIO_BALLOON_S_NR)
			continue;
		b->stats.val[tag] = ld64(b->data + off + 2);
		b->stats.valid |= 1ULL << tag;
	}
	b->stats.updates++;
}

/* Serve queue q. Lock held. */
static void bal_process(struct virtio_balloon *b, uint16_t qi)
{
	struct virtio_dev *vd = b->vdev;
	enum bal_role role;
	bool pushed = false;

	if (!bal_running(b) || qi >= VIRTIO_BALLOON_QUEUES || (role = bal_role(vd, qi)) == ROLE_NONE)
		return;
	struct virtq *q = &vd->vqs[qi];
	for (;;) {
		int rc = virtq_pop(q, &b->elem);
		if (rc < 0) {
			virtio_set_needs_reset(vd, q->broken_why);
			break;
		}
		if (rc == 0)
			break;
		switch (role) {
		case ROLE_INFLATE:
		case ROLE_DEFLATE:
			bal_pfns(b, &b->elem, role == ROLE_INFLATE);
			break;
		case ROLE_REPORTING:
			bal_report(b, &b->elem);
			break;
		case ROLE_STATS:
			/* one buffer at a time: a second one returns the first */
			if (b->stats_held) {
				virtq_push(q, b->stats_head, 0);
				pushed = true;
			}
			bal_parse_stats(b, &b->elem);
			b->stats_head = b->elem.head;
			b->stats_held = true;
			continue; /* held until the host wants fresh numbers */
		case ROLE_NONE:
			break;
		}
		virtq_push(q, b->elem.head, 0);
		pushed = true;
	}
	if (pushed)
		virtio_notify_queue(vd, qi);
}

static uint64_t bal_features(void *priv)
{
	struct virtio_balloon *b = priv;
	uint64_t f = 1ULL << VIRTIO_BALLOON_F_STATS_VQ | 1ULL << VIRTIO_F_EVENT_IDX |
	             1ULL << VIRTIO_F_INDIRECT_DESC;
	if (b->opts.deflate_on_oom)
		f |= 1ULL << VIRTIO_BALLOON_F_DEFLATE_ON_OOM;
	if (b->opts.free_page_reporting)
		f |= 1ULL << VIRTIO_BALLOON_F_PAGE_REPORTING;
	return f;
}

static void bal_render(const struct virtio_balloon *b, uint8_t cfg[VIRTIO_BALLOON_CONFIG_SIZE])
{
	for (int i = 0; i < 4; i++) {
		cfg[i] = (uint8_t)(b->num_pages >> (8 * i));
		cfg[4 + i] = (uint8_t)(b->actual >> (8 * i));
	}
}

static void bal_config_read(void *priv, uint32_t off, uint8_t *buf, uint32_t len)
{
	uint8_t cfg[VIRTIO_BALLOON_CONFIG_SIZE];

	bal_render(priv, cfg);
	if (off > sizeof(cfg) || len > sizeof(cfg) - off) {
		memset(buf, 0, len);
		return;
	}
	memcpy(buf, cfg + off, len);
}

static void bal_config_write(void *priv, uint32_t off, const uint8_t *buf, uint32_t len)
{
	struct virtio_balloon *b = priv;
	uint8_t cfg[VIRTIO_BALLOON_CONFIG_SIZE];

	if (off > sizeof(cfg) || len > sizeof(cfg) - off)
		return;
	bal_render(b, cfg);
	/* only actual (bytes 4..7) is the driver's to write */
	for (uint32_t i = 0; i < len; i++)
		if (off + i >= 4)
			cfg[off + i] = buf[i];
	b->actual = ld32(cfg + 4);
}

static int bal_activate(void *priv, struct virtio_dev *vdev)
{
	struct virtio_balloon *b = priv;

	if (!b->vdev)
		b->vdev = vdev;
	for (uint16_t q = 0; q < VIRTIO_BALLOON_QUEUES; q++)
		bal_process(b, q);
	return 0;
}

static void bal_notify(void *priv, uint16_t q)
{
	bal_process(priv, q);
}

static void bal_reset(void *priv)
{
	struct virtio_balloon *b = priv;
	/* the driver is gone and with it its balloon and its stats buffer */
	b->stats_held = false;
	b->actual = 0;
}

static void bal_save(void *priv, struct sbuf *out)
{
	struct virtio_balloon *b = priv;
	const struct virtio_balloon_counters *c = &b->cnt;

	sbuf_put_u32(out, b->num_pages);
	sbuf_put_u32(out, b->actual);
	sbuf_put_u8(out, b->stats_held);
	sbuf_put_u32(out, b->stats_head);
	sbuf_put_u32(out, VIRTIO_BALLOON_S_NR);
	sbuf_put_u64(out, b->stats.valid);
	for (int i = 0; i < VIRTIO_BALLOON_S_NR; i++)
		sbuf_put_u64(out, b->stats.val[i]);
	sbuf_put_u64(out, b->stats.updates);
	sbuf_put_u64(out, c->inflated);
	sbuf_put_u64(out, c->deflated);
	sbuf_put_u64(out, c->bad_pfns);
	sbuf_put_u64(out, c->dropped);
	sbuf_put_u64(out, c->reported_bytes);
	sbuf_put_u64(out, c->madvise_errors);
}

static int bal_load(void *priv, struct sbuf *in)
{
	struct virtio_balloon *b = priv;
	struct virtio_balloon_stats st = { 0 };
	struct virtio_balloon_counters c;

	uint32_t num_pages = sbuf_get_u32(in), actual = sbuf_get_u32(in);
	uint8_t held = sbuf_get_u8(in);
	uint32_t head = sbuf_get_u32(in), nr = sbuf_get_u32(in);
	if (in->err || held > 1 || head >= VIRTQ_MAX_SIZE || nr != VIRTIO_BALLOON_S_NR)
		return -EINVAL;
	st.valid = sbuf_get_u64(in);
	for (int i = 0; i < VIRTIO_BALLOON_S_NR; i++)
		st.val[i] = sbuf_get_u64(in);
	st.updates = sbuf_get_u64(in);
	c.inflated = sbuf_get_u64(in);
	c.deflated = sbuf_get_u64(in);
	c.bad_pfns = sbuf_get_u64(in);
	c.dropped = sbuf_get_u64(in);
	c.reported_bytes = sbuf_get_u64(in);
	c.madvise_errors = sbuf_get_u64(in);
	if (in->err || (st.valid >> VIRTIO_BALLOON_S_NR))
		return -EINVAL;
	b->num_pages = num_pages;
	b->actual = actual;
	b->stats_held = held;
	b->stats_head = (uint16_t)head;
	b->stats = st;
	b->cnt = c;
	return 0;
}

const struct virtio_dev_ops virtio_balloon_ops = {
	.name = "virtio-balloon",
	.device_id = VIRTIO_ID_BALLOON,
	.num_queues = VIRTIO_BALLOON_QUEUES,
	.queue_max = 256,
	.config_size = VIRTIO_BALLOON_CONFIG_SIZE,
	.features = bal_features,
	.config_read = bal_config_read,
	.config_write = bal_config_write,
	.activate = bal_activate,
	.queue_notify = bal_notify,
	.reset = bal_reset,
	.save = bal_save,
	.load = bal_load,
};

static int parse_onoff(const char *v, size_t n, bool *out)
{
	if (n == 2 && !strncmp(v, "on", 2))
		*out = true;
	else if (n == 3 && !strncmp(v, "off", 3))
		*out = false;
	else
		return -EINVAL;
	return 0;
}

int virtio_balloon_parse(const char *opts, uint64_t mem_size, struct virtio_balloon_opts *o,
                         char *err, size_t errlen)
{
	memset(o, 0, sizeof(*o));
	for (const char *s = opts; s && *s;) {
		size_t n = strcspn(s, ","), k = strcspn(s, "=");
		const char *v = s + k + 1;
		size_t vn = k < n ? n - k - 1 : 0;
		int rc = -EINVAL;

		if (k < n && k == 6 && !strncmp(s, "target", 6)) {
			char buf[32];
			if (vn && vn < sizeof(buf)) {
				memcpy(buf, v, vn);
				buf[vn] = '\0';
				rc = size_parse_mem(buf, &o->target);
			}
			if (rc) {
				snprintf(err, errlen, "--balloon: bad size in '%.*s' (try target=256M)",
				         (int)n, s);
				return -EINVAL;
			}
			if (o->target > mem_size) {
				snprintf(err, errlen, "--balloon: '%.*s' is more than the guest's memory "
				         "(%llu MiB)", (int)n, s, (unsigned long long)(mem_size >> 20));
				return -EINVAL;
			}
		} else if (k < n && k == 19 && !strncmp(s, "free_page_reporting", 19)) {
			if (parse_onoff(v, vn, &o->free_page_reporting)) {
				snprintf(err, errlen, "--balloon: '%.*s' is not free_page_reporting=on|off",
				         (int)n, s);
				return -EINVAL;
			}
		} else if (k < n && k == 14 && !strncmp(s, "deflate_on_oom", 14)) {
			if (parse_onoff(v, vn, &o->deflate_on_oom)) {
				snprintf(err, errlen, "--balloon: '%.*s' is not deflate_on_oom=on|off",
				         (int)n, s);
				return -EINVAL;
			}
		} else {
			snprintf(err, errlen, "--balloon: unknown option '%.*s' (expected target=SIZE, "
			         "free_page_reporting=on|off, deflate_on_oom=on|off)", (int)n, s);
			return -EINVAL;
		}
		s += n;
		if (*s == ',')
			s++;
	}
	o->target &= ~(VIRTIO_BALLOON_PAGE - 1);
	return 0;
}

struct virtio_balloon *virtio_balloon_create(const struct virtio_balloon_opts *o)
{
	struct virtio_balloon *b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->opts = *o;
	b->num_pages = (uint32_t)(o->target >> VIRTIO_BALLOON_PFN_SHIFT);
	return b;
}

void virtio_balloon_attach(struct virtio_balloon *b, struct virtio_dev *vdev)
{
	b->vdev = vdev;
}

void virtio_balloon_destroy(struct virtio_balloon *b)
{
	free(b);
}

int virtio_balloon_set_target(struct virtio_balloon *b, uint64_t bytes)
{
	uint64_t pages = bytes >> VIRTIO_BALLOON_PFN_SHIFT;
	int rc = 0;

	bal_lock(b);
	if (pages > UINT32_MAX ||
	    (b->vdev && b->vdev->mem && (pages << VIRTIO_BALLOON_PFN_SHIFT) > b->vdev->mem->size)) {
		rc = -EINVAL;
		goto out;
	}
	if (b->num_pages != pages) {
		b->num_pages = (uint32_t)pages;
		if (bal_running(b))
			virtio_notify_config(b->vdev);
	}
out:
	bal_unlock(b);
	return rc;
}

uint64_t virtio_balloon_target(struct virtio_balloon *b)
{
	bal_lock(b);
	uint64_t v = (uint64_t)b->num_pages << VIRTIO_BALLOON_PFN_SHIFT;
	bal_unlock(b);
	return v;
}

uint64_t virtio_balloon_actual(struct virtio_balloon *b)
{
	bal_lock(b);
	uint64_t v = (uint64_t)b->actual << VIRTIO_BALLOON_PFN_SHIFT;
	bal_unlock(b);
	return v;
}

int virtio_balloon_stats(struct virtio_balloon *b, struct virtio_balloon_stats *out)
{
	bal_lock(b);
	*out = b->stats;
	int rc = b->stats.updates ? 0 : -ENODATA;
	bal_unlock(b);
	return rc;
}

int virtio_balloon_request_stats(struct virtio_balloon *b)
{
	int rc = -EAGAIN;

	bal_lock(b);
	if (b->stats_held && bal_running(b)) {
		for (uint16_t q = 0; q < VIRTIO_BALLOON_QUEUES; q++) {
			if (bal_role(b->vdev, q) != ROLE_STATS)
				continue;
			virtq_push(&b->vdev->vqs[q], b->stats_head, 0);
			virtio_notify_queue(b->vdev, q);
			break;
		}
		b->stats_held = false;
		rc = 0;
	}
	bal_unlock(b);
	return rc;
}

void virtio_balloon_counters(struct virtio_balloon *b, struct virtio_balloon_counters *out)
{
	bal_lock(b);
	*out = b->cnt;
	bal_unlock(b);
}
