/* Pre-copy live migration.
 *
 * Source: a migration thread connects, sends the options, turns on KVM's dirty
 * log and copies RAM in passes (first everything that is not zero, then what
 * the vCPUs dirtied) until what is left fits the downtime budget; if passes
 * stop shrinking it throttles the vCPUs step by step (auto-converge). Then
 * the main thread (which owns the devices) pauses the VM, drains disk I/O,
 * sends the last dirty pages plus every page a device may have written,
 * releases the image locks and sends the state. The destination loads it,
 * takes the locks and answers; on 'A' the source exits 0, on anything else
 * it takes its locks back and resumes as if nothing happened. */
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
#include <sys/socket.h>
#include <unistd.h>

#include <json-c/json.h>

#include "arch/x86/layout.h"
#include "util/log.h"
#include "util/ratelimit.h"
#include "virtio/blk.h"
#include "vm/snapshot.h"
#include "vm/vm.h"
#include "vm/vm_internal.h"

#define MAGIC "CVMIGR\r\n"
#define STREAM_VERSION 1
#define SEC_CONFIG 1
#define SEC_RAM 2
#define SEC_STATE 3
#define SEC_DONE 4
#define REC_ZERO 1ULL
#define PAGE 4096ULL
#define BATCH 256 /* pages per RAM section */
#define MAX_SECTION (256ULL << 20)

enum mig_state { MIG_ACTIVE, MIG_COMPLETED, MIG_FAILED, MIG_CANCELLED };

struct migration {
	struct vm *vm;
	pthread_t thread;
	bool thread_started;
	int fd;
	int final_fd; /* thread -> main loop: do the switch-over */
	char to[256];
	uint64_t max_downtime_ms;
	_Atomic int cancel;
	_Atomic int state;
	pthread_mutex_t lock; /* the stats below */
	char error[256];
	unsigned pass;
	uint64_t dirty_pages, remaining_pages, sent_bytes;
	double bandwidth; /* bytes/s of the last pass */
	uint64_t expected_downtime_ms, total_ms, downtime_ms;
	uint64_t t0;
	uint64_t *bitmaps[MEM_MAX_REGIONS];
};

static int send_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EPIPE;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static int recv_all(int fd, void *p, size_t n)
{
	uint8_t *b = p;
	while (n) {
		ssize_t r = recv(fd, b, n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -ECONNRESET;
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

static int send_section(int fd, uint32_t type, const void *p, uint64_t len)
{
	uint8_t hdr[12];
	memcpy(hdr, &type, 4);
	memcpy(hdr + 4, &len, 8);
	int rc = send_all(fd, hdr, sizeof(hdr));
	return rc ? rc : send_all(fd, p, len);
}

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

/* Pages of region i whose bit is set in bm (or all non-zero pages if bm is NULL). */
static int send_pages(struct migration *mg, int i, const uint64_t *bm, const uint64_t *extra,
                      uint64_t *count)
{
	const struct guest_mem *m = &mg->vm->mem;
	const struct mem_region *r = &m->regions[i];
	uint64_t npages = r->len / PAGE, base = (uint64_t)(r->hva - m->base);
	static const uint8_t zero[PAGE];
	uint8_t *buf = malloc(BATCH * (8 + PAGE));
	size_t used = 0;
	unsigned n = 0;
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
		uint64_t rec = off | (isz ? REC_ZERO : 0);
		memcpy(buf + used, &rec, 8);
		used += 8;
		if (!isz) {
			memcpy(buf + used, src, PAGE);
			used += PAGE;
		}
		(*count)++;
		if (++n == BATCH) {
			if ((rc = send_section(mg->fd, SEC_RAM, buf, used)))
				goto out;
			mg->sent_bytes += used;
			used = 0;
			n = 0;
			if (atomic_load(&mg->cancel)) {
				rc = -ECANCELED;
				goto out;
			}
		}
	}
	if (used) {
		rc = send_section(mg->fd, SEC_RAM, buf, used);
		mg->sent_bytes += used;
	}
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

static void set_error(struct migration *mg, const char *what, int rc)
{
	pthread_mutex_lock(&mg->lock);
	if (!mg->error[0])
		snprintf(mg->error, sizeof(mg->error), "%s: %s", what, strerror(-rc));
	pthread_mutex_unlock(&mg->lock);
}

static void dirty_logging(struct vm *vm, bool on)
{
	for (int i = 0; i < vm->mem.nr_regions; i++) {
		const struct mem_region *r = &vm->mem.regions[i];
		if (kvm_vm_set_dirty_log(&vm->kvm, (uint32_t)i, r->gpa, r->len, r->hva, on) < 0)
			log_warn("migration: cannot turn dirty logging %s", on ? "on" : "off");
	}
}

static void kick_vcpus(struct vm *vm)
{
	for (unsigned i = 0; i < vm->cfg->cpus; i++) {
		if (vm->vcpus[i].started)
			pthread_kill(vm->vcpus[i].thread, SIGUSR1);
	}
}

static void *migrate_thread(void *arg)
{
	struct migration *mg = arg;
	struct vm *vm = mg->vm;
	char host[200], port[32];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	int rc;

	parse_addr(mg->to, host, sizeof(host), port, sizeof(port));
	if ((rc = getaddrinfo(host, port, &hints, &ai)) != 0) {
		set_error(mg, "cannot resolve the destination", -EHOSTUNREACH);
		goto fail;
	}
	mg->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (mg->fd < 0 || connect(mg->fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		set_error(mg, "cannot connect to the destination", -errno);
		goto fail;
	}
	/* header + options + memory size */
	struct sbuf b = { 0 };
	uint8_t hdr[8 + 4 + 16] = { 0 };
	memcpy(hdr, MAGIC, 8);
	hdr[8] = STREAM_VERSION;
	memcpy(hdr + 12, "cvisor 0.1.0", 12);
	snapshot_put_args(vm, &b);
	sbuf_put_u64(&b, vm->mem.size);
	rc = b.err ? b.err : send_all(mg->fd, hdr, sizeof(hdr));
	if (!rc)
		rc = send_section(mg->fd, SEC_CONFIG, b.data, b.len);
	sbuf_free(&b);
	if (rc) {
		set_error(mg, "sending the configuration", rc);
		goto fail;
	}
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
		rc = send_pages(mg, i, NULL, NULL, &sent);
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
		if (expect <= mg->max_downtime_ms || dirty < 32) {
			/* converged: the main thread does the switch-over with these pages */
			uint64_t one = 1;
			if (write(mg->final_fd, &one, 8) < 0)
				rc = -errno;
			goto out_keep;
		}
		/* auto-converge: if a pass did not shrink the dirty set, slow the guest */
		if (pass >= 3 && dirty * 10 > prev_dirty * 9) {
			unsigned pct = atomic_load(&vm->throttle_pct);
			pct = pct ? pct + 20 : 30;
			atomic_store(&vm->throttle_pct, pct > 95 ? 95 : pct);
			log_info("migration: not converging (%llu dirty pages); throttling vCPUs to %u%%",
			         (unsigned long long)dirty, 100 - atomic_load(&vm->throttle_pct));
		}
		prev_dirty = dirty;
		t = ratelimit_now_ns();
		sent = 0;
		for (int i = 0; i < vm->mem.nr_regions && !rc; i++)
			rc = send_pages(mg, i, mg->bitmaps[i], NULL, &sent);
		if (atomic_load(&vm->throttle_pct))
			kick_vcpus(vm); /* throttled vCPUs must leave KVM_RUN to sleep */
	}
	set_error(mg, rc == -ECANCELED ? "cancelled" : "sending memory", rc);
fail:
	atomic_store(&mg->state, atomic_load(&mg->cancel) ? MIG_CANCELLED : MIG_FAILED);
	atomic_store(&vm->throttle_pct, 0);
	dirty_logging(vm, false);
	if (mg->fd >= 0) {
		close(mg->fd);
		mg->fd = -1;
	}
out_keep:
	if (ai)
		freeaddrinfo(ai);
	return NULL;
}

/* Main thread: pause, last pages, state, hand-over. */
static void migrate_final(void *opaque, uint32_t events)
{
	struct migration *mg = opaque;
	struct vm *vm = mg->vm;
	uint64_t v, sent = 0, dirty;
	char err[256] = "";
	bool unlocked = false;
	int rc;
	(void)events;

	if (read(mg->final_fd, &v, 8) < 0)
		return;
	pthread_join(mg->thread, NULL);
	mg->thread_started = false;
	uint64_t t0 = ratelimit_now_ns();
	atomic_store(&vm->throttle_pct, 0);
	vm_pause(vm);
	vm_drain_io(vm);
	uint64_t t_paused = ratelimit_now_ns();
	uint64_t *dev = atomic_load(&vm->mem.dev_dirty);
	rc = fetch_dirty(mg, &dirty, true); /* plus what the last pass found */
	for (int i = 0; i < vm->mem.nr_regions && !rc; i++)
		rc = send_pages(mg, i, mg->bitmaps[i], dev, &sent);
	if (rc) {
		snprintf(err, sizeof(err), "sending the last pages: %s", strerror(-rc));
		goto fail;
	}
	for (unsigned i = 0; i < CONFIG_MAX_DISKS; i++) {
		if (vm->disks[i] && virtio_blk_set_locked(vm->disks[i], false) < 0) {
			snprintf(err, sizeof(err), "disk %u cannot hand its lock over", i);
			goto fail;
		}
	}
	unlocked = true;
	uint64_t t_pages = ratelimit_now_ns();
	struct sbuf st = { 0 };
	if ((rc = snapshot_build_state(vm, &st, err, sizeof(err))))
		goto fail;
	uint64_t t_state = ratelimit_now_ns();
	rc = send_section(mg->fd, SEC_STATE, st.data, st.len);
	sbuf_free(&st);
	if (!rc)
		rc = send_section(mg->fd, SEC_DONE, "", 0);
	if (rc) {
		snprintf(err, sizeof(err), "sending the state: %s", strerror(-rc));
		goto fail;
	}
	struct pollfd p = { .fd = mg->fd, .events = POLLIN };
	char answer[200] = "";
	ssize_t n = poll(&p, 1, 60000) == 1 ? recv(mg->fd, answer, sizeof(answer) - 1, 0) : -1;
	if (n < 1 || answer[0] != 'A') {
		snprintf(err, sizeof(err), "the destination did not take over%s%s",
		         n > 1 ? ": " : "", n > 1 ? answer + 1 : "");
		goto fail;
	}
	uint64_t t_ack = ratelimit_now_ns();
	log_debug("migration switch-over: pause+drain %.1f ms, last %llu pages %.1f ms, state %.1f ms, "
	          "destination %.1f ms", (t_paused - t0) / 1e6, (unsigned long long)sent,
	          (t_pages - t_paused) / 1e6, (t_state - t_pages) / 1e6, (t_ack - t_state) / 1e6);
	pthread_mutex_lock(&mg->lock);
	mg->downtime_ms = (ratelimit_now_ns() - t0) / 1000000;
	mg->total_ms = (ratelimit_now_ns() - mg->t0) / 1000000;
	pthread_mutex_unlock(&mg->lock);
	atomic_store(&mg->state, MIG_COMPLETED);
	log_info("migrated to %s: %u passes, total %llu ms, downtime %llu ms", mg->to, mg->pass,
	         (unsigned long long)mg->total_ms, (unsigned long long)mg->downtime_ms);
	dirty_logging(vm, false);
	vm_request_migrated(vm);
	return;
fail:
	log_warn("migration failed: %s; the VM goes on here", err);
	pthread_mutex_lock(&mg->lock);
	snprintf(mg->error, sizeof(mg->error), "%s", err);
	pthread_mutex_unlock(&mg->lock);
	for (unsigned i = 0; unlocked && i < CONFIG_MAX_DISKS; i++) {
		if (vm->disks[i] && virtio_blk_set_locked(vm->disks[i], true) < 0)
			log_error("disk %u: cannot take the image lock back: another process took it", i);
	}
	atomic_store(&mg->state, MIG_FAILED);
	dirty_logging(vm, false);
	close(mg->fd);
	mg->fd = -1;
	vm_resume(vm);
}

int vm_migrate_start(struct vm *vm, const char *to, uint64_t max_downtime_ms, char *err,
                     size_t errlen)
{
	char host[200], port[32];
	struct migration *mg = vm->migration;

	if (mg && (atomic_load(&mg->state) == MIG_ACTIVE)) {
		snprintf(err, errlen, "a migration is already running");
		return -EBUSY;
	}
	if (parse_addr(to, host, sizeof(host), port, sizeof(port)) < 0) {
		snprintf(err, errlen, "'%s' is not tcp:HOST:PORT", to);
		return -EINVAL;
	}
	if (vm->vsock) {
		snprintf(err, errlen, "a VM with vsock cannot be migrated yet (vhost writes memory unseen)");
		return -ENOTSUP;
	}
	if (vm_is_paused(vm)) {
		snprintf(err, errlen, "the VM is paused: resume it first");
		return -EBUSY;
	}
	vm_migrate_destroy(vm);
	mg = calloc(1, sizeof(*mg));
	if (!mg)
		return -ENOMEM;
	mg->vm = vm;
	mg->fd = -1;
	snprintf(mg->to, sizeof(mg->to), "%s", to);
	mg->max_downtime_ms = max_downtime_ms ? max_downtime_ms : MIGRATE_DEFAULT_DOWNTIME_MS;
	mg->t0 = ratelimit_now_ns();
	pthread_mutex_init(&mg->lock, NULL);
	mg->final_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	/* device writes are tracked from now on (sticky: sent again at switch-over) */
	uint64_t *dev = calloc((vm->mem.size / PAGE + 63) / 64, 8);
	if (mg->final_fd < 0 || !dev || evloop_add(vm->loop, mg->final_fd, EPOLLIN, migrate_final, mg) < 0) {
		free(dev);
		if (mg->final_fd >= 0)
			close(mg->final_fd);
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
	log_info("migrating to %s (downtime budget %llu ms)", to, (unsigned long long)mg->max_downtime_ms);
	return 0;
}

int vm_migrate_cancel(struct vm *vm)
{
	struct migration *mg = vm->migration;
	if (!mg || atomic_load(&mg->state) != MIG_ACTIVE)
		return -EALREADY;
	atomic_store(&mg->cancel, 1);
	if (mg->fd >= 0)
		shutdown(mg->fd, SHUT_RDWR); /* unblock a send in progress */
	return 0;
}

void vm_migrate_info(struct vm *vm, struct json_object *out)
{
	static const char *const names[] = { "active", "completed", "failed", "cancelled" };
	struct migration *mg = vm->migration;
	if (!mg)
		return;
	struct json_object *o = json_object_new_object();
	pthread_mutex_lock(&mg->lock);
	json_object_object_add(o, "state", json_object_new_string(names[atomic_load(&mg->state)]));
	json_object_object_add(o, "to", json_object_new_string(mg->to));
	json_object_object_add(o, "pass", json_object_new_int((int)mg->pass));
	json_object_object_add(o, "dirty_pages", json_object_new_int64((int64_t)mg->dirty_pages));
	json_object_object_add(o, "remaining_bytes", json_object_new_int64((int64_t)(mg->remaining_pages * PAGE)));
	json_object_object_add(o, "bandwidth_mbps", json_object_new_double(mg->bandwidth / 1e6));
	json_object_object_add(o, "expected_downtime_ms", json_object_new_int64((int64_t)mg->expected_downtime_ms));
	json_object_object_add(o, "throttle_pct", json_object_new_int((int)atomic_load(&vm->throttle_pct)));
	json_object_object_add(o, "downtime_ms", json_object_new_int64((int64_t)mg->downtime_ms));
	json_object_object_add(o, "total_ms", json_object_new_int64((int64_t)mg->total_ms));
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
	if (mg->fd >= 0)
		shutdown(mg->fd, SHUT_RDWR);
	if (mg->thread_started)
		pthread_join(mg->thread, NULL);
	evloop_del(vm->loop, mg->final_fd);
	close(mg->final_fd);
	if (mg->fd >= 0)
		close(mg->fd);
	for (int i = 0; i < MEM_MAX_REGIONS; i++)
		free(mg->bitmaps[i]);
	free(atomic_exchange(&vm->mem.dev_dirty, NULL));
	free(mg);
	vm->migration = NULL;
}

/* ------------------------------------------------------------------ destination */

static int read_section(int fd, uint32_t *type, uint8_t **data, uint64_t *len, uint64_t max)
{
	uint8_t hdr[12];
	int rc = recv_all(fd, hdr, sizeof(hdr));
	if (rc)
		return rc;
	memcpy(type, hdr, 4);
	memcpy(len, hdr + 4, 8);
	if (*len > max)
		return -EMSGSIZE;
	*data = malloc(*len ? *len : 1);
	if (!*data)
		return -ENOMEM;
	if ((rc = recv_all(fd, *data, *len))) {
		free(*data);
		*data = NULL;
	}
	return rc;
}

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

int migrate_accept(const char *addr, int argc, char **argv, int *conn, uint64_t *mem_size,
                   int *out_argc, char ***out_argv, char *err, size_t errlen)
{
	uint8_t *data = NULL;
	uint64_t len;
	uint32_t type;
	int rc, ls = listen_tcp(addr, err, errlen), fd = -1;
	struct snapshot_file cfgf = { 0 };

	if (ls < 0)
		return ls;
	log_info("waiting for a migration on %s", addr);
	fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
	close(ls);
	if (fd < 0) {
		snprintf(err, errlen, "--incoming: accept: %s", strerror(errno));
		return -errno;
	}
	uint8_t hdr[8 + 4 + 16];
	if ((rc = recv_all(fd, hdr, sizeof(hdr))) || memcmp(hdr, MAGIC, 8) || hdr[8] != STREAM_VERSION) {
		snprintf(err, errlen, "--incoming: the peer is not a cvisor migration source of this version");
		rc = -EPROTO;
		goto fail;
	}
	if ((rc = read_section(fd, &type, &data, &len, 1 << 20)) || type != SEC_CONFIG) {
		snprintf(err, errlen, "--incoming: expected the configuration first");
		rc = rc ? rc : -EPROTO;
		goto fail;
	}
	struct sbuf in;
	sbuf_reader(&in, data, len);
	uint32_t n = sbuf_get_u32(&in);
	if (in.err || n > 4096 || !(cfgf.argv = calloc(n + 1, sizeof(char *)))) {
		rc = -EPROTO;
		snprintf(err, errlen, "--incoming: bad configuration section");
		goto fail;
	}
	for (uint32_t i = 0; i < n; i++) {
		uint32_t l = sbuf_get_u32(&in);
		if (in.err || l > in.len - in.pos) {
			rc = -EPROTO;
			snprintf(err, errlen, "--incoming: bad configuration section");
			goto fail;
		}
		cfgf.argv[i] = strndup((char *)in.data + in.pos, l);
		in.pos += l;
		cfgf.argc = (int)i + 1;
	}
	uint64_t size = sbuf_get_u64(&in);
	free(data);
	data = NULL;
	if (in.err || size < CONFIG_MIN_MEM || size > (1ULL << 46) || (size & (PAGE - 1))) {
		rc = -EPROTO;
		snprintf(err, errlen, "--incoming: bad memory size");
		goto fail;
	}
	if ((rc = snapshot_merge_args(&cfgf, argc, argv, out_argc, out_argv)))
		goto fail;
	/* cfgf's strings stay: the merged options borrow them for the VM's lifetime */
	*mem_size = size;
	*conn = fd;
	return 0;
fail:
	free(data);
	for (int i = 0; i < cfgf.argc; i++)
		free(cfgf.argv[i]);
	free(cfgf.argv);
	if (fd >= 0)
		close(fd);
	return rc ? rc : -EPROTO;
}

int migrate_receive(int fd, const struct guest_mem *mem, struct snapshot_file *snap, char *err,
                    size_t errlen)
{
	uint8_t *data = NULL;
	uint64_t len;
	uint32_t type;
	int rc;

	memset(snap, 0, sizeof(*snap));
	for (;;) {
		if ((rc = read_section(fd, &type, &data, &len, MAX_SECTION))) {
			snprintf(err, errlen, "--incoming: the source went away (%s)", strerror(-rc));
			goto fail;
		}
		if (type == SEC_RAM) {
			for (uint64_t p = 0; p + 8 <= len;) {
				uint64_t rec;
				memcpy(&rec, data + p, 8);
				p += 8;
				uint64_t off = rec & ~(PAGE - 1);
				bool isz = rec & REC_ZERO;
				if ((rec & (PAGE - 1) & ~REC_ZERO) || off >= mem->size || (!isz && len - p < PAGE)) {
					rc = -EPROTO;
					snprintf(err, errlen, "--incoming: a memory record is out of range");
					goto fail;
				}
				if (isz) {
					memset(mem->base + off, 0, PAGE);
				} else {
					memcpy(mem->base + off, data + p, PAGE);
					p += PAGE;
				}
			}
			free(data);
			data = NULL;
		} else if (type == SEC_STATE && !snap->data) {
			rc = snapshot_parse(snap, data, len, err, errlen); /* takes data */
			data = NULL;
			if (rc)
				goto fail;
		} else if (type == SEC_DONE && snap->data) {
			free(data);
			return 0;
		} else {
			rc = -EPROTO;
			snprintf(err, errlen, "--incoming: unexpected section %u", type);
			goto fail;
		}
	}
fail:
	free(data);
	snapshot_close(snap);
	return rc ? rc : -EPROTO;
}

void migrate_incoming_reply(int conn, bool ok, const char *reason)
{
	char msg[300];
	int n = snprintf(msg, sizeof(msg), "%c%s", ok ? 'A' : 'N', ok ? "" : reason);
	if (send_all(conn, msg, (size_t)n) < 0)
		log_warn("migration: the source went away before our answer");
	close(conn);
}
