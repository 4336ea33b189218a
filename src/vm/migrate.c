/* Pre-copy live migration.
 *
 * Source: a migration thread connects, exchanges hellos (and with a key, a
 * session key: migrate_stream.c), sends the options and waits for the
 * destination's go. It turns on KVM's dirty log and copies RAM in passes
 * (first everything that is not zero, then what the vCPUs dirtied), under the
 * bandwidth cap if there is one, until what is left fits the downtime budget;
 * if passes stop shrinking it throttles the vCPUs step by step
 * (auto-converge). Then the main thread (which owns the devices) pauses the
 * VM, drains disk I/O, sends the last dirty pages plus every page a device
 * may have written, releases the image locks and sends the state. The
 * destination loads it, takes the locks and answers; on 'A' the source exits
 * 0, on anything else it takes its locks back and resumes as if nothing
 * happened. */
#include "vm/migrate.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/crypto.h>

#include "arch/x86/layout.h"
#include "util/log.h"
#include "util/ratelimit.h"
#include "virtio/blk.h"
#include "virtio/vsock.h"
#include "vm/migrate_stream.h"
#include "vm/postcopy.h"
#include "vm/postcopy_in.h"
#include "vm/snapshot.h"
#include "vm/vm.h"
#include "vm/vm_internal.h"

#define PAGE MS_PAGE
#define IO_TIMEOUT_S 120      /* a peer silent this long is gone */
#define GO_TIMEOUT_MS 30000   /* the destination's go after the configuration */
#define DONE_TIMEOUT_MS 60000 /* its answer after the state */
#define KICK_NS 10000000ULL   /* throttled vCPUs leave KVM_RUN this often */
#define RUN_MAX_NS 50000000ULL /* a throttled vCPU's run counts up to this */
#define SLEEP_STEP_NS 5000000ULL /* a throttled vCPU notices the switch-over this fast */

/* POSTCOPY: the destination runs the guest; this side only sends pages */
enum mig_state { MIG_ACTIVE, MIG_COMPLETED, MIG_FAILED, MIG_CANCELLED, MIG_POSTCOPY };

#define PC_PASSES 2 /* post-copy: the full pass and at most one more before the switch */

struct migration {
	struct vm *vm;
	pthread_t thread;
	bool thread_started;
	struct mstream s; /* the connection; s.fd is -1 until connected */
	int final_fd;     /* thread -> main loop: do the switch-over */
	char to[256];
	uint64_t max_downtime_ms;
	bool compress;
	uint64_t max_bandwidth_mbps; /* 0: no cap */
	struct ratelimit cap;        /* bytes on the wire per second (thread only) */
	uint64_t last_kick_ns;
	uint8_t psk[MS_KEY_MAX]; /* wiped after the handshake */
	size_t psklen;           /* 0: no key */
	_Atomic int cancel;
	_Atomic int state;
	pthread_mutex_t lock; /* the stats below */
	char error[512];
	unsigned pass;
	uint64_t dirty_pages, remaining_pages, transferred_bytes;
	double bandwidth; /* bytes/s of the last pass */
	uint64_t expected_downtime_ms, total_ms, downtime_ms;
	unsigned max_throttle_pct;
	uint64_t t0, t_pause;
	uint64_t *bitmaps[MEM_MAX_REGIONS];
	bool postcopy;
	bool pc_switched;            /* post-copy: the destination answered 'A' */
	bool final_sent;             /* the whole state went out: the destination may run it */
	bool refused;                /* the destination said 'N' (it will not run the guest) */
	bool locks_lost;             /* unclear ending: a disk's lock stayed with the destination */
	struct pc_map owed;          /* post-copy: pages the destination still needs */
	uint64_t pc_owed, pc_requested; /* post-copy figures (under lock) */
	uint64_t pc_all_ms;          /* pause until the last page was confirmed */
};

/* "tcp:HOST:PORT" -> host, port */
static int parse_addr(const char *a, char *host, size_t hl, char *port, size_t pl)
{
	if (strncmp(a, "tcp:", 4))
		return -EINVAL;
	a += 4;
	const char *c = strrchr(a, ':');
	if (!c || c == a || !c[1] || (size_t)(c - a) >= hl || strlen(c + 1) >= pl)
		return -EINVAL;
	memcpy(host, a, (size_t)(c - a));
	host[c - a] = '\0';
	if (host[0] == '[' && host[strlen(host) - 1] == ']') { /* [::1] */
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	snprintf(port, pl, "%s", c + 1);
	return 0;
}

/* Both directions of a connection give up after IO_TIMEOUT_S of silence. */
static void set_timeouts(int fd)
{
	struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static void set_error_msg(struct migration *mg, const char *msg)
{
	pthread_mutex_lock(&mg->lock);
	if (!mg->error[0])
		snprintf(mg->error, sizeof(mg->error), "%s", msg);
	pthread_mutex_unlock(&mg->lock);
}

static void set_error(struct migration *mg, const char *what, int rc)
{
	char msg[256];
	snprintf(msg, sizeof(msg), "%s: %s", what, strerror(-rc));
	set_error_msg(mg, msg);
}

/* One line for an answer that is not the one we waited for. */
static void answer_error(int code, const char *reason, char *err, size_t errlen)
{
	if (code == 'N')
		snprintf(err, errlen, "the destination refused: %s", reason[0] ? reason : "(no reason)");
	else if (code == -EBADMSG)
		snprintf(err, errlen, "the destination's answer does not authenticate: the keys differ%s%s",
		         reason[0] ? "; it said: " : "", reason);
	else if (code == -ETIMEDOUT)
		snprintf(err, errlen, "the destination did not answer");
	else if (code == -ECONNRESET)
		snprintf(err, errlen, "the destination closed the connection");
	else if (code == -EPROTO || code > 0)
		snprintf(err, errlen, "the destination answered out of turn");
	else
		snprintf(err, errlen, "waiting for the destination: %s", strerror(-code));
}

/* The stream broke while sending: report the destination's refusal when it
 * sent one (it may stop reading at any time, saying why), else what broke. */
static void fail_stream(struct migration *mg, const char *what, int rc)
{
	char reason[200], msg[256];
	if (rc != -ECANCELED && !atomic_load(&mg->cancel) && mg->s.fd >= 0) {
		int code = mstream_recv_answer(&mg->s, 1000, reason, sizeof(reason));
		if (code == 'N' || code == -EBADMSG) {
			answer_error(code, reason, msg, sizeof(msg));
			set_error_msg(mg, msg);
			return;
		}
	}
	set_error(mg, rc == -ECANCELED ? "cancelled" : what, rc);
}

static void kick_vcpus(struct vm *vm)
{
	for (unsigned i = 0; i < vm->cfg->cpus; i++) {
		if (vm->vcpus[i].started)
			pthread_kill(vm->vcpus[i].thread, SIGUSR1);
	}
}

void migrate_throttle_vcpu(struct vm *vm, uint64_t *entered_ns)
{
	unsigned pct = atomic_load_explicit(&vm->throttle_pct, memory_order_relaxed);
	if (!pct || pct >= 100) {
		*entered_ns = 0;
		return;
	}
	uint64_t now = ratelimit_now_ns();
	uint64_t ran = *entered_ns ? now - *entered_ns : 0;
	uint64_t end = now + (ran < RUN_MAX_NS ? ran : RUN_MAX_NS) * pct / (100 - pct);
	/* in steps, not cut short by kicks; the switch-over sets pct to 0 */
	while (now < end && atomic_load(&vm->throttle_pct) && !atomic_load(&vm->stopping) &&
	       !__atomic_load_n(&vm->paused, __ATOMIC_RELAXED)) { /* a pause must not wait */
		uint64_t step = end - now < SLEEP_STEP_NS ? end - now : SLEEP_STEP_NS;
		struct timespec ts = { 0, (long)step };
		nanosleep(&ts, NULL);
		now = ratelimit_now_ns();
	}
	*entered_ns = ratelimit_now_ns();
}

/* Throttled vCPUs only sleep when they leave KVM_RUN: kick them every 10 ms. */
static void kick_throttled(struct migration *mg)
{
	uint64_t now = ratelimit_now_ns();
	if (!atomic_load(&mg->vm->throttle_pct) || now - mg->last_kick_ns < KICK_NS)
		return;
	mg->last_kick_ns = now;
	kick_vcpus(mg->vm);
}

/* The bandwidth cap: after `bytes` went out, wait until the bucket has paid
 * for them (in 10 ms steps, kicking throttled vCPUs meanwhile). */
static int pace(struct migration *mg, uint64_t bytes)
{
	uint64_t wait;
	while (!ratelimit_charge(&mg->cap, bytes, &wait)) {
		if (atomic_load(&mg->cancel))
			return -ECANCELED;
		if (wait > KICK_NS)
			wait = KICK_NS;
		struct timespec ts = { 0, (long)wait };
		nanosleep(&ts, NULL);
		kick_throttled(mg);
	}
	kick_throttled(mg);
	return 0;
}

/* Send one RAM section; while the guest runs (paced), also keep to the cap and
 * notice a destination that refused mid-way. */
static int send_batch(struct migration *mg, const uint8_t *buf, size_t len, uint32_t records,
                      uint32_t pages, bool paced)
{
	uint64_t before = mg->s.bytes_out;
	int rc = mstream_send_ram(&mg->s, buf, len, records, pages, mg->compress);
	if (rc)
		return rc;
	pthread_mutex_lock(&mg->lock);
	mg->transferred_bytes = mg->s.bytes_out;
	pthread_mutex_unlock(&mg->lock);
	if (atomic_load(&mg->cancel))
		return -ECANCELED;
	if (!paced)
		return 0;
	struct pollfd p = { .fd = mg->s.fd, .events = POLLIN };
	if (poll(&p, 1, 0) > 0)
		return -ECONNABORTED; /* the destination said something: only a refusal can come now */
	return pace(mg, mg->s.bytes_out - before);
}

/* Pages of region i whose bit is set in bm (or all non-zero pages if bm is NULL). */
static int send_pages(struct migration *mg, int i, const uint64_t *bm, const uint64_t *extra,
                      uint64_t *count, bool paced)
{
	const struct guest_mem *m = &mg->vm->mem;
	const struct mem_region *r = &m->regions[i];
	uint64_t npages = r->len / PAGE, base = (uint64_t)(r->hva - m->base);
	static const uint8_t zero[PAGE];
	uint8_t *buf = malloc(MS_RAM_MAX);
	size_t used = 0;
	uint32_t n = 0, data = 0;
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	for (uint64_t p = 0; p < npages; p++) {
		uint64_t off = base + p * PAGE;
		bool want = bm ? ((bm[p / 64] >> (p % 64)) & 1) : true;
		if (extra && ((extra[(off / PAGE) / 64] >> ((off / PAGE) % 64)) & 1))
			want = true;
		if (!want)
			continue;
		const uint8_t *src = m->base + off;
		bool isz = !memcmp(src, zero, PAGE);
		if (isz && !bm && !extra)
			continue; /* first pass: the destination starts zeroed */
		uint64_t rec = off | (isz ? MS_REC_ZERO : 0);
		memcpy(buf + used, &rec, 8);
		used += 8;
		if (!isz) {
			memcpy(buf + used, src, PAGE);
			used += PAGE;
			data++;
		}
		(*count)++;
		if (++n == MS_BATCH) {
			if ((rc = send_batch(mg, buf, used, n, data, paced)))
				goto out;
			used = 0;
			n = 0;
			data = 0;
		}
	}
	if (used)
		rc = send_batch(mg, buf, used, n, data, paced);
out:
	free(buf);
	return rc;
}

static uint64_t popcount_map(const uint64_t *bm, uint64_t words)
{
	uint64_t n = 0;
	for (uint64_t w = 0; w < words; w++)
		n += (uint64_t)__builtin_popcountll(bm[w]);
	return n;
}

/* Fetch (and clear) KVM's dirty log. With merge, OR it into the bitmaps instead
 * of replacing them: the switch-over must also send what the last pass found
 * but did not send. */
static int fetch_dirty(struct migration *mg, uint64_t *total, bool merge)
{
	struct vm *vm = mg->vm;
	*total = 0;
	for (int i = 0; i < vm->mem.nr_regions; i++) {
		uint64_t words = (vm->mem.regions[i].len / PAGE + 63) / 64;
		uint64_t *tmp = merge ? calloc(words, 8) : mg->bitmaps[i];
		if (!tmp)
			return -ENOMEM;
		int rc = kvm_vm_get_dirty_log(&vm->kvm, (uint32_t)i, tmp);
		/* plus what vhost (vsock) wrote: its log is indexed by guest-physical page */
		virtio_vsock_log_collect(vm->vsock, vm->mem.regions[i].gpa, vm->mem.regions[i].len, tmp);
		if (merge) {
			for (uint64_t w = 0; w < words; w++)
				mg->bitmaps[i][w] |= tmp[w];
			free(tmp);
		}
		if (rc)
			return rc;
		*total += popcount_map(mg->bitmaps[i], words);
	}
	return 0;
}

static void dirty_logging(struct vm *vm, bool on)
{
	for (int i = 0; i < vm->mem.nr_regions; i++) {
		const struct mem_region *r = &vm->mem.regions[i];
		if (kvm_vm_set_dirty_log(&vm->kvm, (uint32_t)i, r->gpa, r->len, r->hva, on) < 0)
			log_warn("migration: cannot turn dirty logging %s", on ? "on" : "off");
	}
	if (on)
		virtio_vsock_log_start(vm->vsock); /* vhost writes guest memory too */
	else
		virtio_vsock_log_stop(vm->vsock);
}

/* Resolve, connect, hellos, configuration, the destination's go. */
static int open_stream(struct migration *mg)
{
	char host[200], port[32], err[256], reason[200];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	int rc;

	parse_addr(mg->to, host, sizeof(host), port, sizeof(port));
	if (getaddrinfo(host, port, &hints, &ai) != 0) {
		set_error(mg, "cannot resolve the destination", -EHOSTUNREACH);
		return -EHOSTUNREACH;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	mg->s.fd = fd; /* from here a cancel's shutdown() aborts the connect */
	if (fd < 0 || atomic_load(&mg->cancel) || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		rc = fd < 0 ? -errno : atomic_load(&mg->cancel) ? -ECANCELED : -errno;
		set_error(mg, "cannot connect to the destination", rc);
		mg->s.fd = -1;
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return rc;
	}
	freeaddrinfo(ai);
	set_timeouts(fd);
	mstream_init(&mg->s, fd, MS_SOURCE);
	rc = mstream_handshake(&mg->s, mg->psklen ? mg->psk : NULL, mg->psklen, err, sizeof(err));
	OPENSSL_cleanse(mg->psk, sizeof(mg->psk));
	if (rc) {
		set_error_msg(mg, err);
		return rc;
	}
	struct sbuf b = { 0 };
	snapshot_put_args(mg->vm, &b);
	sbuf_put_u64(&b, mg->vm->mem.size);
	rc = b.err ? b.err : mstream_send(&mg->s, MS_CONFIG, b.data, b.len);
	sbuf_free(&b);
	if (rc) {
		fail_stream(mg, "sending the configuration", rc);
		return rc;
	}
	int code = mstream_recv_answer(&mg->s, GO_TIMEOUT_MS, reason, sizeof(reason));
	if (code != 'G') {
		answer_error(code, reason, err, sizeof(err));
		set_error_msg(mg, err);
		return -EPROTO;
	}
	if (!mg->postcopy)
		return 0;
	/* the destination checks that it can do post-copy before any memory goes */
	if ((rc = mstream_send(&mg->s, MS_PC_ADVISE, "", 0))) {
		fail_stream(mg, "announcing post-copy", rc);
		return rc;
	}
	code = mstream_recv_answer(&mg->s, GO_TIMEOUT_MS, reason, sizeof(reason));
	if (code != 'G') {
		answer_error(code, reason, err, sizeof(err));
		set_error_msg(mg, err);
		return -EPROTO;
	}
	return 0;
}

/* Auto-converge: a pass that did not shrink the dirty set slows the guest more. */
static void throttle_more(struct migration *mg, uint64_t dirty)
{
	struct vm *vm = mg->vm;
	unsigned pct = atomic_load(&vm->throttle_pct);
	pct = pct ? pct + 20 : 30;
	pct = pct > 95 ? 95 : pct;
	atomic_store(&vm->throttle_pct, pct);
	pthread_mutex_lock(&mg->lock);
	if (pct > mg->max_throttle_pct)
		mg->max_throttle_pct = pct;
	pthread_mutex_unlock(&mg->lock);
	log_info("migration: not converging (%llu dirty pages); throttling vCPUs to %u%%",
	         (unsigned long long)dirty, 100 - pct);
}

static void *migrate_thread(void *arg)
{
	struct migration *mg = arg;
	struct vm *vm = mg->vm;
	int rc;

	if ((rc = open_stream(mg)))
		goto fail;
	for (int i = 0; i < vm->mem.nr_regions; i++) {
		mg->bitmaps[i] = calloc((vm->mem.regions[i].len / PAGE + 63) / 64, 8);
		if (!mg->bitmaps[i]) {
			set_error(mg, "dirty bitmaps", -ENOMEM);
			goto fail;
		}
	}
	dirty_logging(vm, true);
	uint64_t sent = 0, prev_dirty = UINT64_MAX, t = ratelimit_now_ns();
	for (int i = 0; i < vm->mem.nr_regions && !rc; i++)
		rc = send_pages(mg, i, NULL, NULL, &sent, true);
	for (unsigned pass = 1; !rc; pass++) {
		uint64_t now = ratelimit_now_ns(), dirty;
		double secs = (now - t) / 1e9;
		pthread_mutex_lock(&mg->lock);
		mg->pass = pass;
		mg->bandwidth = secs > 0 ? (double)sent * PAGE / secs : 0;
		pthread_mutex_unlock(&mg->lock);
		if ((rc = fetch_dirty(mg, &dirty, false)))
			break;
		double bw = mg->bandwidth > 1e6 ? mg->bandwidth : 1e6;
		uint64_t expect = (uint64_t)(dirty * PAGE / bw * 1000.0);
		pthread_mutex_lock(&mg->lock);
		mg->dirty_pages = dirty;
		mg->remaining_pages = dirty;
		mg->expected_downtime_ms = expect;
		pthread_mutex_unlock(&mg->lock);
		if (atomic_load(&mg->cancel)) {
			rc = -ECANCELED;
			break;
		}
		/* post-copy switches after a bounded number of passes: what is left is owed */
		if (expect <= mg->max_downtime_ms || dirty < 32 || (mg->postcopy && pass >= PC_PASSES)) {
			/* converged: the main thread does the switch-over with these pages */
			uint64_t one = 1;
			if (write(mg->final_fd, &one, 8) < 0) {
				rc = -errno;
				break;
			}
			return NULL;
		}
		if (pass >= 3 && dirty * 10 > prev_dirty * 9)
			throttle_more(mg, dirty);
		prev_dirty = dirty;
		t = ratelimit_now_ns();
		sent = 0;
		for (int i = 0; i < vm->mem.nr_regions && !rc; i++)
			rc = send_pages(mg, i, mg->bitmaps[i], NULL, &sent, true);
		if (atomic_load(&vm->throttle_pct))
			kick_vcpus(vm); /* throttled vCPUs must leave KVM_RUN to sleep */
	}
	fail_stream(mg, "sending memory", rc);
	dirty_logging(vm, false);
fail:
	if (atomic_load(&mg->cancel)) { /* whatever broke, it broke because of the cancel */
		pthread_mutex_lock(&mg->lock);
		snprintf(mg->error, sizeof(mg->error), "cancelled");
		pthread_mutex_unlock(&mg->lock);
	}
	atomic_store(&mg->state, atomic_load(&mg->cancel) ? MIG_CANCELLED : MIG_FAILED);
	atomic_store(&vm->throttle_pct, 0);
	mstream_close(&mg->s);
	return NULL;
}

/* Let every disk's image lock go to the destination. *unlocked is set first:
 * when disk i cannot let go, disks 0..i-1 already did and the failure path
 * must lock them again (locking a locked disk is harmless). */
static int release_locks(struct vm *vm, bool *unlocked, char *err, size_t errlen)
{
	*unlocked = true;
	for (unsigned i = 0; i < CONFIG_MAX_DISKS; i++) {
		if (vm->disks[i] && virtio_blk_set_locked(vm->disks[i], false) < 0) {
			snprintf(err, errlen, "disk %u cannot hand its lock over", i);
			return -EIO;
		}
	}
	return 0;
}

/* The state, then DONE: from here the destination may run the guest. */
static int send_final(struct migration *mg, const struct sbuf *st, char *err, size_t errlen)
{
	int rc = mstream_send(&mg->s, MS_STATE, st->data, st->len);
	if (!rc)
		rc = mstream_send(&mg->s, MS_DONE, "", 0);
	if (rc) {
		snprintf(err, errlen, "sending the state: %s", strerror(-rc));
		return rc;
	}
	mg->final_sent = true;
	return 0;
}

/* Main thread, VM paused: the last pages, the state, DONE; 0 once the
 * destination answered 'A'. */
static int switch_over(struct migration *mg, bool *unlocked, char *err, size_t errlen)
{
	struct vm *vm = mg->vm;
	uint64_t sent = 0, dirty;
	char reason[200];
	uint64_t t0 = ratelimit_now_ns();

	uint64_t *dev = atomic_load(&vm->mem.dev_dirty);
	int rc = fetch_dirty(mg, &dirty, true); /* plus what the last pass found */
	for (int i = 0; i < vm->mem.nr_regions && !rc; i++)
		rc = send_pages(mg, i, mg->bitmaps[i], dev, &sent, false);
	if (rc) {
		snprintf(err, errlen, "sending the last pages: %s", strerror(-rc));
		return rc;
	}
	if ((rc = release_locks(vm, unlocked, err, errlen)))
		return rc;
	uint64_t t_pages = ratelimit_now_ns();
	struct sbuf st = { 0 };
	if ((rc = snapshot_build_state(vm, &st, err, errlen)))
		return rc;
	uint64_t t_state = ratelimit_now_ns();
	rc = send_final(mg, &st, err, errlen);
	sbuf_free(&st);
	if (rc)
		return rc;
	int code = mstream_recv_answer(&mg->s, DONE_TIMEOUT_MS, reason, sizeof(reason));
	if (code != 'A') {
		mg->refused = code == 'N';
		answer_error(code, reason, err, errlen);
		return -EPROTO;
	}
	log_debug("migration switch-over: last %llu pages %.1f ms, state %.1f ms, destination %.1f ms",
	          (unsigned long long)sent, (t_pages - t0) / 1e6, (t_state - t_pages) / 1e6,
	          (ratelimit_now_ns() - t_state) / 1e6);
	return 0;
}

/* ------------------------------------------------------------ post-copy source */

/* An ANSWER section's code, its reason made printable into reason. */
static int answer_code(const uint8_t *data, uint64_t len, char *reason, size_t rlen)
{
	size_t k = 0;
	for (uint64_t i = 1; i < len && k + 1 < rlen; i++)
		reason[k++] = data[i] >= 0x20 && data[i] < 0x7f ? (char)data[i] : '?';
	reason[k] = '\0';
	return len ? data[0] : 0;
}

/* Send those of the n pages (indexes) that are still owed, in RAM sections of
 * up to MS_BATCH records; buf has MS_RAM_MAX bytes. The VM is paused here, so
 * what goes out is final. */
static int pc_send(struct migration *mg, const uint64_t *pages, uint32_t n, uint8_t *buf)
{
	static const uint8_t zero[PAGE];
	size_t used = 0;
	uint32_t recs = 0, data = 0;
	int rc;

	for (uint32_t i = 0; i < n; i++) {
		if (!pc_map_clear(&mg->owed, pages[i]))
			continue; /* sent already */
		uint64_t off = pages[i] * PAGE;
		const uint8_t *src = mg->vm->mem.base + off;
		bool isz = !memcmp(src, zero, PAGE);
		uint64_t rec = off | (isz ? MS_REC_ZERO : 0);
		memcpy(buf + used, &rec, 8);
		used += 8;
		if (!isz) {
			memcpy(buf + used, src, PAGE);
			used += PAGE;
			data++;
		}
		if (++recs == MS_BATCH) {
			if ((rc = mstream_send_ram(&mg->s, buf, used, recs, data, false)))
				return rc;
			used = 0;
			recs = 0;
			data = 0;
		}
	}
	if (recs && (rc = mstream_send_ram(&mg->s, buf, used, recs, data, false)))
		return rc;
	pthread_mutex_lock(&mg->lock);
	mg->remaining_pages = mg->owed.count;
	mg->transferred_bytes = mg->s.bytes_out;
	pthread_mutex_unlock(&mg->lock);
	return 0;
}

/* A PC_REQ from the destination: those pages first. */
static int pc_serve_request(struct migration *mg, const uint8_t *data, uint64_t len, uint8_t *buf)
{
	uint64_t offs[PC_REQ_MAX];
	uint32_t n;
	if (pc_req_decode(data, len, mg->vm->mem.size, offs, &n))
		return -EPROTO;
	for (uint32_t i = 0; i < n; i++)
		offs[i] /= PAGE;
	pthread_mutex_lock(&mg->lock);
	mg->pc_requested += n;
	pthread_mutex_unlock(&mg->lock);
	return pc_send(mg, offs, n, buf);
}

/* Wait for one section (requests or an answer) up to timeout_ms. */
static int pc_recv(struct migration *mg, int timeout_ms, uint32_t *type, uint8_t **data,
                   uint64_t *len)
{
	struct pollfd p = { .fd = mg->s.fd, .events = POLLIN };
	int n;
	while ((n = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR)
		;
	if (n < 0)
		return -errno;
	if (n == 0)
		return -ETIMEDOUT;
	return mstream_recv(&mg->s, type, data, len);
}

/* Main thread, VM paused: the owed pages, the state, DONE; then serve the
 * destination's requests while it loads the state, up to its answer. 0 once it
 * answered 'A' (it runs the guest: this side must never resume). */
static int postcopy_switch(struct migration *mg, bool *unlocked, char *err, size_t errlen)
{
	struct vm *vm = mg->vm;
	const struct guest_mem *m = &vm->mem;
	uint64_t dirty, len;
	uint8_t *data = NULL, *buf = NULL;
	uint32_t type = 0;
	char reason[200];
	int rc;

	uint64_t *dev = atomic_load(&vm->mem.dev_dirty);
	if ((rc = fetch_dirty(mg, &dirty, true)) || (rc = pc_map_init(&mg->owed, m->size / PAGE))) {
		snprintf(err, errlen, "collecting the owed pages: %s", strerror(-rc));
		return rc;
	}
	for (int i = 0; i < m->nr_regions; i++) {
		uint64_t first = (uint64_t)(m->regions[i].hva - m->base) / PAGE;
		for (uint64_t p = 0; p < m->regions[i].len / PAGE; p++) {
			if ((mg->bitmaps[i][p / 64] >> (p % 64)) & 1)
				pc_map_set(&mg->owed, first + p);
		}
	}
	for (uint64_t p = 0; dev && p < m->size / PAGE; p++) {
		if ((dev[p / 64] >> (p % 64)) & 1)
			pc_map_set(&mg->owed, p);
	}
	pthread_mutex_lock(&mg->lock);
	mg->pc_owed = mg->remaining_pages = mg->owed.count;
	pthread_mutex_unlock(&mg->lock);
	if ((rc = release_locks(vm, unlocked, err, errlen)))
		return rc;
	struct sbuf st = { 0 };
	if ((rc = snapshot_build_state(vm, &st, err, errlen)))
		return rc;
	rc = pc_owed_encode(&mg->owed, &data, &len);
	if (!rc)
		rc = mstream_send(&mg->s, MS_PC_OWED, data, len);
	free(data);
	data = NULL;
	if (!rc)
		rc = send_final(mg, &st, err, errlen);
	sbuf_free(&st);
	if (rc)
		return rc;
	if (!(buf = malloc(MS_RAM_MAX)))
		return -ENOMEM;
	/* the destination loads the state now: what it touches is asked for */
	mg->s.expect = 1u << MS_PC_REQ | 1u << MS_ANSWER;
	for (;;) {
		if ((rc = pc_recv(mg, DONE_TIMEOUT_MS, &type, &data, &len))) {
			answer_error(rc == -EBADMSG ? -EBADMSG : rc, "", err, errlen);
			break;
		}
		if (type == MS_PC_REQ) {
			rc = pc_serve_request(mg, data, len, buf);
			free(data);
			if (rc) {
				snprintf(err, errlen, "serving the destination's page requests: %s",
				         rc == -EPROTO ? "a bad request" : strerror(-rc));
				break;
			}
			continue;
		}
		int code = answer_code(data, len, reason, sizeof(reason));
		free(data);
		if (code == 'A')
			break;
		rc = -EPROTO;
		mg->refused = code == 'N';
		answer_error(code == 'N' ? 'N' : -EPROTO, reason, err, errlen);
		break;
	}
	free(buf);
	return rc;
}

/* After the switch: push every owed page (requests first), PC_END, wait for
 * the destination's last 'A', then end this process. Nothing here resumes the
 * VM: on any error it stops with one line. */
static void *pc_push_thread(void *arg)
{
	struct migration *mg = arg;
	struct vm *vm = mg->vm;
	uint8_t *buf = malloc(MS_RAM_MAX), *data;
	uint64_t pages[MS_BATCH], cursor = 0, len, paid = mg->s.bytes_out;
	uint32_t type;
	char reason[120], why[160] = "";
	int rc = buf ? 0 : -ENOMEM;

	while (!rc && mg->owed.count) {
		struct pollfd p = { .fd = mg->s.fd, .events = POLLIN };
		if (atomic_load(&mg->cancel)) {
			rc = -ECANCELED;
			break;
		}
		/* requests first: everything already waiting */
		while (!rc && poll(&p, 1, 0) > 0) {
			if ((rc = mstream_recv(&mg->s, &type, &data, &len)))
				break;
			if (type == MS_PC_REQ) {
				rc = pc_serve_request(mg, data, len, buf);
			} else {
				answer_code(data, len, reason, sizeof(reason));
				snprintf(why, sizeof(why), "the destination stopped: %s", reason);
				rc = -EPROTO;
			}
			free(data);
		}
		if (rc)
			break;
		/* the cap holds for the whole stream but only the background push
		 * waits for it: what went out since the last batch (requests too)
		 * is paid before the next one, and requests are served meanwhile */
		uint64_t wait;
		if (!ratelimit_charge(&mg->cap, mg->s.bytes_out - paid, &wait)) {
			wait /= 1000000;
			poll(&p, 1, wait < 1 ? 1 : wait > 10 ? 10 : (int)wait);
			continue;
		}
		paid = mg->s.bytes_out;
		uint32_t n = 0;
		for (uint64_t pg = pc_map_next(&mg->owed, cursor); n < MS_BATCH && pg < mg->owed.npages;
		     pg = pc_map_next(&mg->owed, pg + 1))
			pages[n++] = pg;
		if (n < MS_BATCH && cursor) {
			cursor = 0; /* wrap: what requests skipped over */
			continue;
		}
		if (n)
			cursor = pages[n - 1] + 1;
		rc = pc_send(mg, pages, n, buf);
	}
	if (!rc)
		rc = mstream_send(&mg->s, MS_PC_END, "", 0);
	while (!rc) { /* requests still in flight are for pages already sent */
		if ((rc = pc_recv(mg, DONE_TIMEOUT_MS, &type, &data, &len)))
			break;
		int code = type == MS_ANSWER ? answer_code(data, len, reason, sizeof(reason)) : 0;
		if (type == MS_PC_REQ && len >= 4) { /* counted, not served: those went already */
			uint32_t n;
			memcpy(&n, data, 4);
			pthread_mutex_lock(&mg->lock);
			mg->pc_requested += n <= PC_REQ_MAX ? n : 0;
			pthread_mutex_unlock(&mg->lock);
		}
		free(data);
		if (code == 'A')
			break;
		if (code) {
			snprintf(why, sizeof(why), "the destination stopped: %s", reason);
			rc = -EPROTO;
		}
	}
	free(buf);
	pthread_mutex_lock(&mg->lock);
	mg->pc_all_ms = (ratelimit_now_ns() - mg->t_pause) / 1000000;
	mg->total_ms = (ratelimit_now_ns() - mg->t0) / 1000000;
	mg->transferred_bytes = mg->s.bytes_out;
	if (rc && !mg->error[0])
		snprintf(mg->error, sizeof(mg->error), "post-copy broke after the switch-over (%s): the "
		         "guest's state lives on the destination, which cannot get its last %llu pages; "
		         "this side stopped and will not resume", why[0] ? why : strerror(-rc),
		         (unsigned long long)mg->owed.count);
	pthread_mutex_unlock(&mg->lock);
	if (rc) {
		log_error("migration: %s", mg->error);
		atomic_store(&mg->state, MIG_FAILED);
		vm_request_error(vm);
		return NULL;
	}
	atomic_store(&mg->state, MIG_COMPLETED);
	log_info("migrated to %s (post-copy): total %llu ms, downtime %llu ms, all pages delivered "
	         "%llu ms after the pause, %llu owed, %llu requested by faults, %.1f MB sent",
	         mg->to, (unsigned long long)mg->total_ms, (unsigned long long)mg->downtime_ms,
	         (unsigned long long)mg->pc_all_ms, (unsigned long long)mg->pc_owed,
	         (unsigned long long)mg->pc_requested, mg->transferred_bytes / 1e6);
	vm_request_migrated(vm);
	return NULL;
}

/* The whole state went out but no clear answer came back: the destination may
 * be running the guest. Resuming here could make two of it, both writing its
 * disks, so this side never resumes by itself. Post-copy: the guest cannot be
 * whole anywhere now; stop as after a break past the switch. Pre-copy: stay
 * paused, and say how to go on. */
static void unknown_outcome(struct migration *mg, const char *why)
{
	struct vm *vm = mg->vm;
	char msg[sizeof(mg->error)];

	if (mg->postcopy)
		snprintf(msg, sizeof(msg), "post-copy broke after the switch-over (%s): the guest's state "
		         "lives on the destination, which cannot get its last %llu pages; this side "
		         "stopped and will not resume", why, (unsigned long long)mg->owed.count);
	else
		snprintf(msg, sizeof(msg), "%s after the whole state went out: the destination may be "
		         "running the guest, so this side stays paused (resume it only if the "
		         "destination does not run it)", why);
	log_error("migration: %s", msg);
	set_error_msg(mg, msg);
	mg->pc_switched = mg->postcopy;
	atomic_store(&mg->state, MIG_FAILED);
	dirty_logging(vm, false);
	mstream_close(&mg->s);
	if (mg->postcopy) {
		vm_request_error(vm);
		return;
	}
	/* the image locks decide it for VMs with disks: a destination that runs the
	 * guest holds them, and one that does not yet never will after this */
	for (unsigned i = 0; i < CONFIG_MAX_DISKS; i++) {
		if (vm->disks[i] && virtio_blk_set_locked(vm->disks[i], true) < 0) {
			log_error("disk %u: the destination holds the image lock: it runs the guest", i);
			mg->locks_lost = true; /* so this side must never resume */
		}
	}
}

/* Main thread: pause, switch over, hand over (or resume). */
static void migrate_final(void *opaque, uint32_t events)
{
	struct migration *mg = opaque;
	struct vm *vm = mg->vm;
	uint64_t v;
	char err[256] = "";
	bool unlocked = false;
	(void)events;

	if (read(mg->final_fd, &v, 8) < 0)
		return;
	pthread_join(mg->thread, NULL);
	mg->thread_started = false;
	uint64_t t0 = ratelimit_now_ns();
	atomic_store(&vm->throttle_pct, 0);
	vm_pause(vm);
	vm_drain_io(vm);
	virtio_vsock_quiesce(vm->vsock); /* vhost stops; the final dirty-log fetch has all it wrote */
	log_debug("migration switch-over: pause+drain %.1f ms", (ratelimit_now_ns() - t0) / 1e6);
	mg->t_pause = t0;
	if (mg->postcopy) {
		if (postcopy_switch(mg, &unlocked, err, sizeof(err)))
			goto fail;
		/* the destination runs the guest: from here this side only sends pages */
		dirty_logging(vm, false);
		pthread_mutex_lock(&mg->lock);
		mg->downtime_ms = (ratelimit_now_ns() - t0) / 1000000;
		pthread_mutex_unlock(&mg->lock);
		mg->pc_switched = true;
		atomic_store(&mg->state, MIG_POSTCOPY);
		log_info("migration: post-copy switch-over to %s after %llu ms downtime; pushing %llu pages",
		         mg->to, (unsigned long long)mg->downtime_ms, (unsigned long long)mg->owed.count);
		if (pthread_create(&mg->thread, NULL, pc_push_thread, mg) != 0) {
			set_error_msg(mg, "post-copy: cannot start the page thread; this side stopped and will "
			                  "not resume");
			atomic_store(&mg->state, MIG_FAILED);
			vm_request_error(vm);
			return;
		}
		mg->thread_started = true;
		return;
	}
	if (switch_over(mg, &unlocked, err, sizeof(err)))
		goto fail;
	pthread_mutex_lock(&mg->lock);
	mg->downtime_ms = (ratelimit_now_ns() - t0) / 1000000;
	mg->total_ms = (ratelimit_now_ns() - mg->t0) / 1000000;
	mg->transferred_bytes = mg->s.bytes_out;
	pthread_mutex_unlock(&mg->lock);
	atomic_store(&mg->state, MIG_COMPLETED);
	log_info("migrated to %s: %u passes, total %llu ms, downtime %llu ms, %.1f MB sent%s%s, "
	         "auto-converge %u%%", mg->to, mg->pass, (unsigned long long)mg->total_ms,
	         (unsigned long long)mg->downtime_ms, mg->transferred_bytes / 1e6,
	         mg->compress ? ", zstd" : "", mg->s.keyed ? ", authenticated" : "",
	         mg->max_throttle_pct);
	dirty_logging(vm, false);
	vm_request_migrated(vm);
	return;
fail:
	if (mg->final_sent && !mg->refused) {
		unknown_outcome(mg, err);
		return;
	}
	log_warn("migration failed: %s; the VM goes on here", err);
	set_error_msg(mg, err);
	/* a destination that refused lets go of the images before it answers; one
	 * that failed otherwise may still be on its way out: wait for it a little */
	int waits = 60; /* 3 s in all */
	for (unsigned i = 0; unlocked && i < CONFIG_MAX_DISKS; i++) {
		int rc = 0;
		while (vm->disks[i] && (rc = virtio_blk_set_locked(vm->disks[i], true)) < 0 && waits-- > 0)
			usleep(50000);
		if (vm->disks[i] && rc < 0)
			log_error("disk %u: cannot take the image lock back: another process took it", i);
	}
	atomic_store(&mg->state, MIG_FAILED);
	dirty_logging(vm, false);
	mstream_close(&mg->s);
	virtio_vsock_unquiesce(vm->vsock); /* it kept its CID: connections go on */
	vm_resume(vm);
}

static int check_params(struct vm *vm, const struct migrate_params *p, char *err, size_t errlen)
{
	char host[200], port[32];
	struct migration *mg = vm->migration;

	if (mg && (atomic_load(&mg->state) == MIG_ACTIVE)) {
		snprintf(err, errlen, "a migration is already running");
		return -EBUSY;
	}
	if (parse_addr(p->to, host, sizeof(host), port, sizeof(port)) < 0) {
		snprintf(err, errlen, "'%s' is not tcp:HOST:PORT", p->to);
		return -EINVAL;
	}
	if (p->max_bandwidth_mbps > MIGRATE_MAX_BANDWIDTH_MBPS) {
		snprintf(err, errlen, "max_bandwidth_mbps: at most %llu MB/s",
		         (unsigned long long)MIGRATE_MAX_BANDWIDTH_MBPS);
		return -EINVAL;
	}
	if (vm_is_paused(vm)) {
		snprintf(err, errlen, "the VM is paused: resume it first");
		return -EBUSY;
	}
	if (p->postcopy && vm->vsock) {
		snprintf(err, errlen, "postcopy: not with a vsock device (vhost writes guest memory "
		                      "outside userfaultfd's view)");
		return -ENOTSUP;
	}
	return 0;
}

int vm_migrate_start(struct vm *vm, const struct migrate_params *p, char *err, size_t errlen)
{
	struct migration *mg;
	int rc;

	if ((rc = check_params(vm, p, err, errlen)))
		return rc;
	mg = calloc(1, sizeof(*mg));
	if (!mg)
		return -ENOMEM;
	/* the key is read here, so that a bad key file is the request's error */
	if (p->key_file && (rc = mstream_key_load(p->key_file, mg->psk, &mg->psklen, err, errlen))) {
		free(mg);
		return rc == -ENOMEM ? rc : -EINVAL;
	}
	vm_migrate_destroy(vm);
	mg->vm = vm;
	mstream_init(&mg->s, -1, MS_SOURCE);
	snprintf(mg->to, sizeof(mg->to), "%s", p->to);
	mg->max_downtime_ms = p->max_downtime_ms ? p->max_downtime_ms : MIGRATE_DEFAULT_DOWNTIME_MS;
	mg->compress = p->compress;
	mg->max_bandwidth_mbps = p->max_bandwidth_mbps;
	mg->postcopy = p->postcopy;
	uint64_t rate = p->max_bandwidth_mbps * 1000000;
	ratelimit_init(&mg->cap, rate, rate / 10); /* bursts of 100 ms at most */
	mg->t0 = ratelimit_now_ns();
	pthread_mutex_init(&mg->lock, NULL);
	mg->final_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	/* device writes are tracked from now on (sticky: sent again at switch-over) */
	uint64_t *dev = calloc((vm->mem.size / PAGE + 63) / 64, 8);
	if (mg->final_fd < 0 || !dev || evloop_add(vm->loop, mg->final_fd, EPOLLIN, migrate_final, mg) < 0) {
		free(dev);
		if (mg->final_fd >= 0)
			close(mg->final_fd);
		OPENSSL_cleanse(mg->psk, sizeof(mg->psk));
		free(mg);
		snprintf(err, errlen, "cannot set up the migration");
		return -ENOMEM;
	}
	free(atomic_exchange(&vm->mem.dev_dirty, dev));
	atomic_store(&mg->state, MIG_ACTIVE);
	vm->migration = mg;
	if (pthread_create(&mg->thread, NULL, migrate_thread, mg) != 0) {
		atomic_store(&mg->state, MIG_FAILED);
		snprintf(err, errlen, "cannot start the migration thread");
		return -EAGAIN;
	}
	mg->thread_started = true;
	log_info("migrating to %s (%s, downtime budget %llu ms%s%s%s)", p->to,
	         mg->postcopy ? "post-copy" : "pre-copy",
	         (unsigned long long)mg->max_downtime_ms, mg->psklen ? ", authenticated" : "",
	         mg->compress ? ", zstd" : "", rate ? ", bandwidth capped" : "");
	return 0;
}

bool vm_migrate_handed_over(struct vm *vm)
{
	struct migration *mg = vm->migration;
	if (!mg)
		return false;
	int st = atomic_load(&mg->state);
	return st == MIG_POSTCOPY || st == MIG_COMPLETED ||
	       (st == MIG_FAILED && (mg->pc_switched || mg->locks_lost));
}

bool vm_migrate_postcopy_pushing(struct vm *vm)
{
	return vm->migration && atomic_load(&vm->migration->state) == MIG_POSTCOPY;
}

int vm_migrate_cancel(struct vm *vm)
{
	struct migration *mg = vm->migration;
	if (mg && atomic_load(&mg->state) == MIG_POSTCOPY)
		return -EPERM; /* the guest runs on the destination */
	if (!mg || atomic_load(&mg->state) != MIG_ACTIVE)
		return -EALREADY;
	atomic_store(&mg->cancel, 1);
	if (mg->s.fd >= 0)
		shutdown(mg->s.fd, SHUT_RDWR); /* unblock a send in progress */
	return 0;
}

void vm_migrate_info(struct vm *vm, struct json_object *out)
{
	static const char *const names[] = { "active", "completed", "failed", "cancelled",
		                             "postcopy-active" };
	struct migration *mg = vm->migration;
	postcopy_in_info(out); /* this side as a post-copy destination */
	if (!mg)
		return;
	struct json_object *o = json_object_new_object();
	pthread_mutex_lock(&mg->lock);
	json_object_object_add(o, "state", json_object_new_string(names[atomic_load(&mg->state)]));
	json_object_object_add(o, "to", json_object_new_string(mg->to));
	json_object_object_add(o, "pass", json_object_new_int((int)mg->pass));
	json_object_object_add(o, "dirty_pages", json_object_new_int64((int64_t)mg->dirty_pages));
	json_object_object_add(o, "remaining_bytes", json_object_new_int64((int64_t)(mg->remaining_pages * PAGE)));
	json_object_object_add(o, "transferred_bytes", json_object_new_int64((int64_t)mg->transferred_bytes));
	json_object_object_add(o, "bandwidth_mbps", json_object_new_double(mg->bandwidth / 1e6));
	json_object_object_add(o, "max_bandwidth_mbps", json_object_new_int64((int64_t)mg->max_bandwidth_mbps));
	json_object_object_add(o, "compress", json_object_new_string(mg->compress ? "zstd" : "none"));
	json_object_object_add(o, "authenticated", json_object_new_boolean(mg->psklen > 0));
	json_object_object_add(o, "expected_downtime_ms", json_object_new_int64((int64_t)mg->expected_downtime_ms));
	json_object_object_add(o, "throttle_pct", json_object_new_int((int)atomic_load(&vm->throttle_pct)));
	json_object_object_add(o, "auto_converge", json_object_new_boolean(mg->max_throttle_pct > 0));
	json_object_object_add(o, "max_throttle_pct", json_object_new_int((int)mg->max_throttle_pct));
	json_object_object_add(o, "downtime_ms", json_object_new_int64((int64_t)mg->downtime_ms));
	json_object_object_add(o, "total_ms", json_object_new_int64((int64_t)mg->total_ms));
	json_object_object_add(o, "postcopy", json_object_new_boolean(mg->postcopy));
	if (mg->postcopy) {
		json_object_object_add(o, "postcopy_owed_pages", json_object_new_int64((int64_t)mg->pc_owed));
		json_object_object_add(o, "postcopy_requested_pages", json_object_new_int64((int64_t)mg->pc_requested));
		json_object_object_add(o, "postcopy_all_pages_ms", json_object_new_int64((int64_t)mg->pc_all_ms));
	}
	if (mg->error[0])
		json_object_object_add(o, "error", json_object_new_string(mg->error));
	pthread_mutex_unlock(&mg->lock);
	json_object_object_add(out, "migration", o);
}

void vm_migrate_destroy(struct vm *vm)
{
	struct migration *mg = vm->migration;
	if (!mg)
		return;
	atomic_store(&mg->cancel, 1);
	if (mg->s.fd >= 0)
		shutdown(mg->s.fd, SHUT_RDWR);
	if (mg->thread_started)
		pthread_join(mg->thread, NULL);
	evloop_del(vm->loop, mg->final_fd);
	close(mg->final_fd);
	mstream_close(&mg->s);
	OPENSSL_cleanse(mg->psk, sizeof(mg->psk));
	for (int i = 0; i < MEM_MAX_REGIONS; i++)
		free(mg->bitmaps[i]);
	pc_map_free(&mg->owed);
	free(atomic_exchange(&vm->mem.dev_dirty, NULL));
	pthread_mutex_destroy(&mg->lock);
	free(mg);
	vm->migration = NULL;
}

/* ------------------------------------------------------------------ destination */

static int listen_tcp(const char *addr, char *err, size_t errlen)
{
	char host[200], port[32];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *ai;
	if (parse_addr(addr, host, sizeof(host), port, sizeof(port)) < 0) {
		snprintf(err, errlen, "--incoming: '%s' is not tcp:HOST:PORT", addr);
		return -EINVAL;
	}
	if (getaddrinfo(host, port, &hints, &ai) != 0) {
		snprintf(err, errlen, "--incoming: cannot resolve %s", host);
		return -EINVAL;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1) < 0) {
		snprintf(err, errlen, "--incoming %s: %s", addr, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return -EADDRINUSE;
	}
	freeaddrinfo(ai);
	return fd;
}

/* The name of a section type in messages. */
static const char *section_name(uint32_t type)
{
	switch (type) {
	case MS_CONFIG: return "configuration";
	case MS_RAM: return "memory";
	case MS_RAM_ZSTD: return "compressed memory";
	case MS_STATE: return "state";
	case MS_DONE: return "end";
	case MS_ANSWER: return "answer";
	case MS_PC_ADVISE: return "post-copy announcement";
	case MS_PC_OWED: return "owed pages";
	case MS_PC_REQ: return "page request";
	case MS_PC_END: return "post-copy end";
	default: return "unknown";
	}
}

/* One line for a section that could not be received. */
static void recv_error(struct mstream *s, int rc, uint32_t type, char *err, size_t errlen)
{
	unsigned long long n = (unsigned long long)s->seq_in;
	if (rc == -EBADMSG && n == 0)
		snprintf(err, errlen, "--incoming: the configuration does not authenticate: the migration "
		                      "keys differ (or the stream was altered)");
	else if (rc == -EBADMSG)
		snprintf(err, errlen, "--incoming: section %llu (%s) does not authenticate: the stream "
		                      "was altered, reordered or replayed", n, section_name(type));
	else if (rc == -EPROTO)
		snprintf(err, errlen, "--incoming: section %llu has an unknown type %u", n, type);
	else if (rc == -EMSGSIZE)
		snprintf(err, errlen, "--incoming: section %llu (%s) is longer than its limit", n,
		         section_name(type));
	else
		snprintf(err, errlen, "--incoming: the source went away (%s)", strerror(-rc));
}

/* The configuration section: the source's options and its memory size. */
static int parse_config(const uint8_t *data, uint64_t len, struct snapshot_file *cfgf,
                        uint64_t *size)
{
	struct sbuf in;
	sbuf_reader(&in, data, len);
	uint32_t n = sbuf_get_u32(&in);
	if (in.err || n > 4096 || !(cfgf->argv = calloc(n + 1, sizeof(char *))))
		return -EPROTO;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t l = sbuf_get_u32(&in);
		if (in.err || l > in.len - in.pos)
			return -EPROTO;
		cfgf->argv[i] = strndup((char *)in.data + in.pos, l);
		if (!cfgf->argv[i])
			return -ENOMEM;
		in.pos += l;
		cfgf->argc = (int)i + 1;
	}
	*size = sbuf_get_u64(&in);
	if (in.err || *size < CONFIG_MIN_MEM || *size > (1ULL << 46) || (*size & (PAGE - 1)))
		return -EPROTO;
	return 0;
}

/* Accept one connection and agree on the stream; the key file is read first. */
static int accept_stream(const char *addr, const char *key_file, struct mstream **out, char *err,
                         size_t errlen)
{
	uint8_t psk[MS_KEY_MAX];
	size_t psklen = 0;
	char why[200];
	int rc;

	if (key_file && (rc = mstream_key_load(key_file, psk, &psklen, why, sizeof(why)))) {
		snprintf(err, errlen, "--migrate-key-file: %s", why);
		return -EINVAL;
	}
	int ls = listen_tcp(addr, err, errlen);
	if (ls < 0) {
		OPENSSL_cleanse(psk, sizeof(psk));
		return ls;
	}
	log_info("waiting for a migration on %s%s", addr, key_file ? " (authenticated)" : "");
	int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
	rc = fd < 0 ? -errno : 0;
	close(ls);
	struct mstream *s = calloc(1, sizeof(*s));
	if (rc || !s) {
		snprintf(err, errlen, "--incoming: accept: %s", strerror(rc ? -rc : ENOMEM));
		OPENSSL_cleanse(psk, sizeof(psk));
		if (fd >= 0)
			close(fd);
		free(s);
		return rc ? rc : -ENOMEM;
	}
	set_timeouts(fd);
	mstream_init(s, fd, MS_DEST);
	rc = mstream_handshake(s, key_file ? psk : NULL, psklen, why, sizeof(why));
	OPENSSL_cleanse(psk, sizeof(psk));
	if (rc) {
		snprintf(err, errlen, "--incoming: %s", why);
		mstream_close(s);
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

int migrate_accept(const char *addr, const char *key_file, int argc, char **argv,
                   struct mstream **conn, uint64_t *mem_size, int *out_argc, char ***out_argv,
                   char *err, size_t errlen)
{
	uint8_t *data = NULL;
	uint64_t len, size = 0;
	uint32_t type = 0;
	struct snapshot_file cfgf = { 0 };
	struct mstream *s = NULL;

	int rc = accept_stream(addr, key_file, &s, err, errlen);
	if (rc)
		return rc;
	s->expect = 1u << MS_CONFIG;
	if ((rc = mstream_recv(s, &type, &data, &len))) {
		recv_error(s, rc, type, err, errlen);
		goto fail;
	}
	if (type != MS_CONFIG) {
		snprintf(err, errlen, "--incoming: expected the configuration first");
		rc = -EPROTO;
		goto fail;
	}
	if ((rc = parse_config(data, len, &cfgf, &size))) {
		snprintf(err, errlen, "--incoming: bad configuration section");
		goto fail;
	}
	free(data);
	data = NULL;
	if ((rc = snapshot_merge_args(&cfgf, argc, argv, out_argc, out_argv)))
		goto fail;
	if ((rc = mstream_send_answer(s, 'G', NULL))) {
		snprintf(err, errlen, "--incoming: the source went away (%s)", strerror(-rc));
		free(*out_argv);
		*out_argv = NULL;
		goto fail;
	}
	/* cfgf's strings stay: the merged options borrow them for the VM's lifetime */
	*mem_size = size;
	*conn = s;
	return 0;
fail:
	free(data);
	for (int i = 0; i < cfgf.argc; i++)
		free(cfgf.argv[i]);
	free(cfgf.argv);
	migrate_incoming_reply(s, false, err); /* a source with the right key hears why */
	return rc ? rc : -EPROTO;
}

/* Make a message that may quote the stream one printable line. */
static void printable(char *s)
{
	for (; *s; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
	}
}

/* Apply one RAM or RAM_ZSTD section. */
static int load_ram(struct mstream *s, uint32_t type, const uint8_t *data, uint64_t len,
                    const struct guest_mem *mem)
{
	if (type == MS_RAM_ZSTD)
		return mstream_ram_zstd_apply(s, data, len, mem->base, mem->size);
	return mstream_ram_apply(data, len, mem->base, mem->size, NULL, NULL);
}

int migrate_receive(struct mstream *s, const struct guest_mem *mem, struct snapshot_file *snap,
                    struct pc_in **pc, char *err, size_t errlen)
{
	uint8_t *data = NULL;
	uint64_t len;
	uint32_t type = 0;
	int rc, uffd = -1;
	struct pc_map owed = { 0 };
	bool have_owed = false;

	memset(snap, 0, sizeof(*snap));
	*pc = NULL;
	/* PC_ADVISE only first; then PC_OWED is allowed (once, before the state) */
	s->expect = 1u << MS_RAM | 1u << MS_RAM_ZSTD | 1u << MS_STATE | 1u << MS_DONE |
	            1u << MS_PC_ADVISE;
	for (;;) {
		if ((rc = mstream_recv(s, &type, &data, &len))) {
			recv_error(s, rc, type, err, errlen);
			goto fail;
		}
		s->expect &= ~(1u << MS_PC_ADVISE);
		if (type == MS_PC_ADVISE) {
			free(data);
			data = NULL;
			char why[200];
			if ((uffd = postcopy_uffd_open(why, sizeof(why))) < 0) {
				rc = uffd;
				snprintf(err, errlen, "--incoming: %s", why);
				goto fail;
			}
			/* 4 KiB pages only: UFFDIO_COPY fills one page at a time */
			madvise(mem->base, mem->size, MADV_NOHUGEPAGE);
			if ((rc = mstream_send_answer(s, 'G', NULL))) {
				snprintf(err, errlen, "--incoming: the source went away (%s)", strerror(-rc));
				goto fail;
			}
			s->expect |= 1u << MS_PC_OWED;
		} else if (type == MS_PC_OWED && !have_owed) {
			rc = pc_owed_decode(data, len, mem->size / PAGE, &owed);
			free(data);
			data = NULL;
			if (rc) {
				snprintf(err, errlen, "--incoming: the owed-page map does not fit this guest");
				goto fail;
			}
			have_owed = true;
			s->expect &= ~(1u << MS_PC_OWED);
		} else if ((type == MS_RAM || type == MS_RAM_ZSTD) && !snap->data && !have_owed) {
			if ((rc = load_ram(s, type, data, len, mem))) {
				snprintf(err, errlen, "--incoming: section %llu (%s): a memory record is "
				         "out of range or does not add up", (unsigned long long)s->seq_in - 1,
				         section_name(type));
				goto fail;
			}
			free(data);
			data = NULL;
		} else if (type == MS_STATE && !snap->data && (uffd < 0 || have_owed)) {
			rc = snapshot_parse(snap, data, len, err, errlen); /* takes data */
			data = NULL;
			if (rc) {
				printable(err); /* it quotes the version it found */
				goto fail;
			}
		} else if (type == MS_DONE && snap->data) {
			free(data);
			if (uffd >= 0 && !(*pc = postcopy_in_new(uffd, &owed))) {
				rc = -ENOMEM;
				snprintf(err, errlen, "--incoming: out of memory for post-copy");
				goto fail;
			}
			return 0;
		} else {
			rc = -EPROTO;
			snprintf(err, errlen, "--incoming: unexpected %s section", section_name(type));
			goto fail;
		}
	}
fail:
	free(data);
	snapshot_close(snap);
	pc_map_free(&owed);
	if (uffd >= 0)
		close(uffd);
	return rc ? rc : -EPROTO;
}

void migrate_incoming_reply(struct mstream *conn, bool ok, const char *reason)
{
	if (!conn)
		return;
	if (mstream_send_answer(conn, ok ? 'A' : 'N', ok ? NULL : reason) < 0)
		log_warn("migration: the source went away before our answer");
	mstream_close(conn);
	free(conn);
}
