/* Post-copy live migration, destination side (see postcopy_in.h). */
#include "vm/postcopy_in.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <json-c/json.h>

#include "util/log.h"
#include "util/ratelimit.h"
#include "util/term.h"
#include "vm/migrate_stream.h"

#define PAGE MS_PAGE
#define PENDING_MAX 1024   /* requests timed for the latency figures */
#define QUIET_MS 120000    /* a source silent this long while pages are owed is gone */

enum { CMD_NONE, CMD_GO, CMD_ABORT, CMD_QUIT };

struct pending {
	uint64_t page;
	uint64_t t_ns;
};

struct pc_in {
	int uffd;
	int wake_fd;
	struct mstream *s;
	uint8_t *base;
	uint64_t size;
	struct pc_map owed;      /* pages the source still has to send */
	struct pc_map requested; /* owed pages asked for */
	pthread_t thread;
	bool started, registered;
	_Atomic int cmd;
	char reason[200]; /* for CMD_ABORT */
	struct pending pend[PENDING_MAX];
	unsigned npend;
	uint64_t req_buf[PC_REQ_MAX];
	uint32_t nreq;
	pthread_mutex_t lock; /* the figures below */
	const char *state;    /* "loading", "active", "completed", "failed" */
	uint64_t owed_total, remaining, faults, requested_pages, zero_pages, received;
	uint64_t lat_count, lat_sum_ns, lat_max_ns;
	uint64_t t_go, total_ms;
};

static struct pc_in *_Atomic current; /* for GET /v1/vm; one per process */

int postcopy_uffd_open(char *err, size_t errlen)
{
	/* not UFFD_USER_MODE_ONLY: KVM touches guest memory from the kernel */
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	int sys_errno = fd < 0 ? errno : 0;
	if (fd < 0) {
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
		if (dev >= 0) {
			fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
			close(dev);
		}
	}
	if (fd < 0) {
		snprintf(err, errlen, "postcopy needs userfaultfd: the syscall failed (%s; see "
		         "vm.unprivileged_userfaultfd) and /dev/userfaultfd is not usable",
		         strerror(sys_errno));
		return -ENOTSUP;
	}
	struct uffdio_api api = { .api = UFFD_API };
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		snprintf(err, errlen, "postcopy needs userfaultfd: UFFDIO_API: %s", strerror(errno));
		close(fd);
		return -ENOTSUP;
	}
	return fd;
}

struct pc_in *postcopy_in_new(int uffd, struct pc_map *owed)
{
	struct pc_in *pc = calloc(1, sizeof(*pc));
	if (!pc || pc_map_init(&pc->requested, owed->npages) < 0) {
		free(pc);
		return NULL;
	}
	pc->uffd = uffd;
	pc->wake_fd = -1;
	pc->owed = *owed;
	memset(owed, 0, sizeof(*owed));
	pc->owed_total = pc->remaining = pc->owed.count;
	pc->state = "loading";
	pthread_mutex_init(&pc->lock, NULL);
	return pc;
}

/* One line, then exit: a guest whose pages cannot come must not hang. */
static _Noreturn void die(struct pc_in *pc, const char *what, int rc)
{
	log_error("postcopy: %s (%s) with %llu pages still on the source: the guest cannot go on; "
	          "exiting", what, rc ? strerror(-rc) : "protocol error",
	          (unsigned long long)pc->owed.count);
	term_raw_leave();
	_exit(1);
}

/* Send the requests collected so far. */
static void flush_requests(struct pc_in *pc)
{
	uint8_t buf[PC_REQ_LEN_MAX];
	if (!pc->nreq)
		return;
	size_t len = pc_req_encode(pc->req_buf, pc->nreq, buf);
	int rc = mstream_send(pc->s, MS_PC_REQ, buf, len);
	if (rc)
		die(pc, "asking the source for pages", rc);
	pc->nreq = 0;
}

static int zero_page(struct pc_in *pc, uint64_t off)
{
	struct uffdio_zeropage z = { .range = { .start = (uint64_t)(uintptr_t)(pc->base + off), .len = PAGE } };
	while (ioctl(pc->uffd, UFFDIO_ZEROPAGE, &z) < 0) {
		if (errno == EEXIST)
			return 0; /* already there */
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		z.zeropage = 0;
	}
	return 0;
}

static int copy_page(struct pc_in *pc, uint64_t off, const uint8_t *page)
{
	struct uffdio_copy c = { .dst = (uint64_t)(uintptr_t)(pc->base + off),
	                         .src = (uint64_t)(uintptr_t)page, .len = PAGE };
	while (ioctl(pc->uffd, UFFDIO_COPY, &c) < 0) {
		if (errno == EEXIST)
			return 0;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		c.copy = 0;
	}
	return 0;
}

/* Faults: an owed page is asked for (once), any other missing page was zero
 * on the source. */
static void serve_faults(struct pc_in *pc)
{
	struct uffd_msg msg[16];
	ssize_t n = read(pc->uffd, msg, sizeof(msg));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0)
		die(pc, "reading the userfaultfd", -errno);
	for (ssize_t i = 0; i < n / (ssize_t)sizeof(msg[0]); i++) {
		if (msg[i].event != UFFD_EVENT_PAGEFAULT)
			continue;
		uint64_t addr = msg[i].arg.pagefault.address;
		uint64_t off = (addr - (uint64_t)(uintptr_t)pc->base) & ~(PAGE - 1);
		if (off >= pc->size)
			continue;
		uint64_t page = off / PAGE;
		pthread_mutex_lock(&pc->lock);
		pc->faults++;
		pthread_mutex_unlock(&pc->lock);
		if (!pc_map_test(&pc->owed, page)) {
			int rc = zero_page(pc, off);
			if (rc)
				die(pc, "UFFDIO_ZEROPAGE", rc);
			pthread_mutex_lock(&pc->lock);
			pc->zero_pages++;
			pthread_mutex_unlock(&pc->lock);
			continue;
		}
		if (!pc_map_set(&pc->requested, page))
			continue; /* asked already: its page is on the way */
		if (pc->npend < PENDING_MAX)
			pc->pend[pc->npend++] = (struct pending){ page, ratelimit_now_ns() };
		pc->req_buf[pc->nreq++] = off;
		pthread_mutex_lock(&pc->lock);
		pc->requested_pages++;
		pthread_mutex_unlock(&pc->lock);
		if (pc->nreq == PC_REQ_MAX)
			flush_requests(pc);
	}
	flush_requests(pc);
}

/* One page from the source. */
static int install(void *opaque, uint64_t off, const uint8_t *page)
{
	struct pc_in *pc = opaque;
	uint64_t pg = off / PAGE;
	if (!pc_map_test(&pc->owed, pg))
		return 0; /* not owed (sent twice): what is there is right */
	int rc = page ? copy_page(pc, off, page) : zero_page(pc, off);
	if (rc)
		return rc;
	pc_map_clear(&pc->owed, pg);
	uint64_t lat = 0;
	if (pc_map_test(&pc->requested, pg)) {
		for (unsigned i = 0; i < pc->npend; i++) {
			if (pc->pend[i].page == pg) {
				lat = ratelimit_now_ns() - pc->pend[i].t_ns;
				pc->pend[i] = pc->pend[--pc->npend];
				break;
			}
		}
	}
	pthread_mutex_lock(&pc->lock);
	pc->remaining = pc->owed.count;
	pc->received++;
	if (lat) {
		pc->lat_count++;
		pc->lat_sum_ns += lat;
		if (lat > pc->lat_max_ns)
			pc->lat_max_ns = lat;
	}
	pthread_mutex_unlock(&pc->lock);
	return 0;
}

/* One section from the source; true once PC_END came. */
static bool receive(struct pc_in *pc)
{
	uint8_t *data;
	uint64_t len;
	uint32_t type = 0;
	int rc = mstream_recv(pc->s, &type, &data, &len);
	if (rc)
		die(pc, rc == -EBADMSG ? "a section from the source does not authenticate"
		        : rc == -EPROTO || rc == -EMSGSIZE ? "the source sent a section out of place"
		        : "the connection to the source broke", rc);
	if (type == MS_RAM) {
		rc = pc_ram_walk(data, len, pc->size, install, pc);
		free(data);
		if (rc)
			die(pc, rc == -EPROTO ? "a memory record from the source is out of range"
			                      : "installing a page (UFFDIO_COPY)", rc == -EPROTO ? 0 : rc);
		return false;
	}
	free(data); /* PC_END: the expect mask lets nothing else through */
	if (pc->owed.count)
		die(pc, "the source says it sent everything, but pages are missing", 0);
	return true;
}

static void *pc_thread(void *arg)
{
	struct pc_in *pc = arg;
	bool answered = false;
	struct pollfd p[3] = {
		{ .fd = pc->wake_fd, .events = POLLIN },
		{ .fd = pc->uffd, .events = POLLIN },
		{ .fd = pc->s->fd, .events = POLLIN },
	};

	pc->s->expect = 1u << MS_RAM | 1u << MS_PC_END;
	for (;;) {
		int n = poll(p, 3, QUIET_MS);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 && pc->owed.count)
			die(pc, "the source sent nothing for 120 s", -ETIMEDOUT);
		if (p[0].revents) {
			uint64_t v;
			if (read(pc->wake_fd, &v, 8) < 0 && errno != EAGAIN)
				die(pc, "internal wake-up", -errno);
			int cmd = atomic_exchange(&pc->cmd, CMD_NONE);
			if (cmd == CMD_ABORT) {
				mstream_send_answer(pc->s, 'N', pc->reason);
				return NULL;
			}
			if (cmd == CMD_QUIT)
				return NULL;
			if (cmd == CMD_GO && !answered) {
				int rc = mstream_send_answer(pc->s, 'A', NULL);
				if (rc)
					die(pc, "telling the source we started", rc);
				answered = true;
				pthread_mutex_lock(&pc->lock);
				pc->state = "active";
				pc->t_go = ratelimit_now_ns();
				pthread_mutex_unlock(&pc->lock);
			}
		}
		if (p[1].revents)
			serve_faults(pc);
		if (p[2].revents && receive(pc)) {
			/* every page is here: no fault can be ours any more */
			struct uffdio_range r = { (uint64_t)(uintptr_t)pc->base, pc->size };
			if (ioctl(pc->uffd, UFFDIO_UNREGISTER, &r) < 0)
				log_warn("postcopy: UFFDIO_UNREGISTER: %s", strerror(errno));
			if (mstream_send_answer(pc->s, 'A', NULL) < 0)
				log_warn("postcopy: the source went away before our last answer");
			pthread_mutex_lock(&pc->lock);
			pc->state = "completed";
			pc->registered = false;
			pc->total_ms = (ratelimit_now_ns() - pc->t_go) / 1000000;
			pthread_mutex_unlock(&pc->lock);
			log_info("postcopy: all %llu owed pages arrived %llu ms after start; %llu faults, "
			         "%llu pages requested", (unsigned long long)pc->owed_total,
			         (unsigned long long)pc->total_ms, (unsigned long long)pc->faults,
			         (unsigned long long)pc->requested_pages);
			return NULL;
		}
	}
}

int postcopy_in_start(struct pc_in *pc, struct mstream *conn, const struct guest_mem *mem,
                      char *err, size_t errlen)
{
	pc->s = conn;
	pc->base = mem->base;
	pc->size = mem->size;
	if (pc->owed.npages != mem->size / PAGE) {
		snprintf(err, errlen, "postcopy: the owed-page map does not match the memory size");
		return -EPROTO;
	}
	/* stale copies from the pre-copy pass go: those pages fault from now on */
	for (uint64_t p = pc_map_next(&pc->owed, 0); p < pc->owed.npages;
	     p = pc_map_next(&pc->owed, p + 1)) {
		if (madvise(pc->base + p * PAGE, PAGE, MADV_DONTNEED) < 0) {
			snprintf(err, errlen, "postcopy: discarding a stale page: %s", strerror(errno));
			return -errno;
		}
	}
	struct uffdio_register reg = {
		.range = { (uint64_t)(uintptr_t)pc->base, pc->size },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	if (ioctl(pc->uffd, UFFDIO_REGISTER, &reg) < 0) {
		snprintf(err, errlen, "postcopy: UFFDIO_REGISTER on guest memory: %s", strerror(errno));
		return -errno;
	}
	pc->registered = true;
	uint64_t need = 1ULL << _UFFDIO_COPY | 1ULL << _UFFDIO_ZEROPAGE;
	if ((reg.ioctls & need) != need) {
		snprintf(err, errlen, "postcopy: this kernel cannot UFFDIO_COPY/ZEROPAGE into guest memory");
		return -ENOTSUP;
	}
	pc->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (pc->wake_fd < 0 || pthread_create(&pc->thread, NULL, pc_thread, pc) != 0) {
		snprintf(err, errlen, "postcopy: cannot start the fault thread");
		return -EAGAIN;
	}
	pc->started = true;
	atomic_store(&current, pc);
	log_info("postcopy: serving faults; %llu pages owed by the source",
	         (unsigned long long)pc->owed_total);
	return 0;
}

static void command(struct pc_in *pc, int cmd)
{
	uint64_t one = 1;
	atomic_store(&pc->cmd, cmd);
	if (write(pc->wake_fd, &one, 8) < 0)
		log_warn("postcopy: cannot wake the fault thread");
}

void postcopy_in_go(struct pc_in *pc)
{
	command(pc, CMD_GO);
}

static void pc_free(struct pc_in *pc)
{
	if (pc->registered) {
		/* faults still waiting are woken and get empty pages: we are ending */
		struct uffdio_range r = { (uint64_t)(uintptr_t)pc->base, pc->size };
		ioctl(pc->uffd, UFFDIO_UNREGISTER, &r);
	}
	close(pc->uffd);
	if (pc->wake_fd >= 0)
		close(pc->wake_fd);
	pc_map_free(&pc->owed);
	pc_map_free(&pc->requested);
	pthread_mutex_destroy(&pc->lock);
	free(pc);
}

void postcopy_in_abort(struct pc_in *pc, const char *reason)
{
	if (!pc)
		return;
	if (pc->started) {
		snprintf(pc->reason, sizeof(pc->reason), "%s", reason);
		command(pc, CMD_ABORT);
		pthread_join(pc->thread, NULL);
	}
	atomic_store(&current, NULL);
	pc_free(pc);
}

void postcopy_in_finish(struct pc_in *pc)
{
	if (!pc)
		return;
	command(pc, CMD_QUIT);
	pthread_join(pc->thread, NULL);
	atomic_store(&current, NULL);
	if (pc->owed.count)
		log_warn("postcopy: the VM ended with %llu pages still on the source",
		         (unsigned long long)pc->owed.count);
	pc_free(pc);
}

void postcopy_in_info(struct json_object *out)
{
	struct pc_in *pc = atomic_load(&current);
	if (!pc)
		return;
	struct json_object *o = json_object_new_object();
	pthread_mutex_lock(&pc->lock);
	json_object_object_add(o, "state", json_object_new_string(pc->state));
	json_object_object_add(o, "owed_pages", json_object_new_int64((int64_t)pc->owed_total));
	json_object_object_add(o, "remaining_pages", json_object_new_int64((int64_t)pc->remaining));
	json_object_object_add(o, "received_pages", json_object_new_int64((int64_t)pc->received));
	json_object_object_add(o, "faults", json_object_new_int64((int64_t)pc->faults));
	json_object_object_add(o, "faults_served_zero", json_object_new_int64((int64_t)pc->zero_pages));
	json_object_object_add(o, "pages_requested", json_object_new_int64((int64_t)pc->requested_pages));
	json_object_object_add(o, "fault_latency_avg_ms",
	                       json_object_new_double(pc->lat_count ? pc->lat_sum_ns / 1e6 / (double)pc->lat_count : 0));
	json_object_object_add(o, "fault_latency_max_ms", json_object_new_double(pc->lat_max_ns / 1e6));
	json_object_object_add(o, "total_ms", json_object_new_int64((int64_t)pc->total_ms));
	pthread_mutex_unlock(&pc->lock);
	json_object_object_add(out, "incoming_postcopy", o);
}
