/* Unit tests for virtio-rng (virtio/rng.c) behind the real PCI transport.
 *
 * This file includes virtio/rng.c itself, so it can look at the device's
 * private state (the token bucket's throttled counter, whether the timer is
 * armed); the linker then never takes rng.o from the core archive. KVM is
 * faked as in test_virtio_pci.c (route/irqfd/ioeventfd recorded, interrupts
 * are writes to the vectors' eventfds). Guest memory is fake: 1 MiB with a
 * 512 KiB low limit. The test plays the driver: it writes descriptors and
 * ring indices into the fake memory, kicks through the notify area of BAR 0,
 * and runs the real event loop.
 *
 * Rate limiting is checked by counts (requests completed, throttled counter,
 * timer armed), never by measuring time: the loop is only ever asked to wait
 * for the timer with a generous timeout. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cmocka.h>

#include "virtio/rng.c"

#include "hv/kvm.h"
#include "pci/msix.h"
#include "pci/pci.h"
#include "virtio/pci.h"
#include "vm/bus.h"

#define KIB 1024ULL
#define MEM_SIZE (1024 * KIB)
#define MEM_LOW (512 * KIB)
#define HOLE_GPA (MEM_LOW + 0x1000)
#define MMIO64_BASE 0x400000000ULL

#define OFF_ISR 0x1000
#define OFF_DEVICE 0x2000
#define OFF_NOTIFY 0x3000
#define OFF_MSIX 0x4000

#define CC_GFSELECT 0x08
#define CC_GF 0x0c
#define CC_MSIX 0x10
#define CC_STATUS 0x14
#define CC_QSEL 0x16
#define CC_QSIZE 0x18
#define CC_QMSIX 0x1a
#define CC_QENABLE 0x1c
#define CC_QDESC 0x20
#define CC_QDRIVER 0x28
#define CC_QDEVICE 0x30

#define S_ACK VIRTIO_STATUS_ACKNOWLEDGE
#define S_DRIVER VIRTIO_STATUS_DRIVER
#define S_FOK VIRTIO_STATUS_FEATURES_OK
#define S_DOK VIRTIO_STATUS_DRIVER_OK
#define S_NR VIRTIO_STATUS_NEEDS_RESET
#define S_UP (S_ACK | S_DRIVER | S_FOK | S_DOK)

#define F_V1 (1ULL << VIRTIO_F_VERSION_1)
#define F_EVIDX (1ULL << VIRTIO_F_EVENT_IDX)
#define F_INDIRECT (1ULL << VIRTIO_F_INDIRECT_DESC)

#define QSIZE 16
#define DESC_GPA 0x1000ULL
#define AVAIL_GPA 0x2000ULL
#define USED_GPA 0x3000ULL
#define INDIR_GPA 0x8000ULL
#define DATA_GPA 0x10000ULL
#define FILL 0xaa

/* ---- fake KVM ---- */

static int fk_next_gsi = KVM_IRQCHIP_PINS;

int kvm_vm_msi_route_alloc(struct kvm_vm *k)
{
	(void)k;
	return fk_next_gsi < KVM_MAX_GSI ? fk_next_gsi++ : -ENOSPC;
}

int kvm_vm_msi_route_set(struct kvm_vm *k, uint32_t gsi, uint64_t addr, uint32_t data)
{
	(void)k;
	(void)gsi;
	(void)addr;
	(void)data;
	return 0;
}

int kvm_vm_signal_msi(struct kvm_vm *k, uint64_t addr, uint32_t data)
{
	(void)k;
	(void)addr;
	(void)data;
	return 1;
}

int kvm_vm_irqfd(struct kvm_vm *k, int fd, uint32_t gsi, bool assign)
{
	(void)k;
	(void)fd;
	(void)gsi;
	(void)assign;
	return 0;
}

int kvm_vm_ioeventfd(struct kvm_vm *k, uint64_t addr, uint32_t len, int fd, bool assign)
{
	(void)k;
	(void)addr;
	(void)len;
	(void)fd;
	(void)assign;
	return 0;
}

static uint64_t efd_take(int fd)
{
	uint64_t v = 0;
	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

/* ---- fixture ---- */

struct fx {
	struct bus pio, mmio;
	struct pci_bus pb;
	struct kvm_vm kvm;
	struct evloop *loop;
	uint8_t *ram;
	struct guest_mem mem;
	struct virtio_rng *r;
	struct virtio_pci *vp;
	uint16_t aidx; /* the driver's avail->idx */
};

static struct fx *fx_new(uint64_t bps)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	fk_next_gsi = KVM_IRQCHIP_PINS; /* a new VM: its own routes */
	bus_init(&f->pio, "pio");
	bus_init(&f->mmio, "mmio");
	f->ram = calloc(1, MEM_SIZE);
	f->loop = evloop_create();
	f->r = virtio_rng_create(bps);
	if (!f->ram || !f->loop || !f->r ||
	    pci_bus_init(&f->pb, &f->pio, &f->mmio, MMIO64_BASE))
		goto fail;
	mem_init_fake(&f->mem, f->ram, MEM_SIZE, MEM_LOW);
	if (virtio_pci_create(&f->pb, &f->kvm, f->loop, &f->mem, &virtio_rng_ops, f->r, &f->vp))
		goto fail;
	return f;
fail:
	virtio_rng_destroy(f->r);
	evloop_destroy(f->loop);
	free(f->ram);
	free(f);
	return NULL;
}

static void fx_free(struct fx *f)
{
	virtio_pci_destroy(f->vp);
	virtio_rng_destroy(f->r);
	pci_bus_destroy(&f->pb);
	evloop_destroy(f->loop);
	free(f->ram);
	free(f);
}

static int setup_unlimited(void **state)
{
	*state = fx_new(0);
	return *state ? 0 : -1;
}

/* 100 B/s, 100-byte bucket: a token every 10 ms, so the few hundred
 * microseconds a batch takes never add a token in the middle of it */
static int setup_100(void **state)
{
	*state = fx_new(100);
	return *state ? 0 : -1;
}

static int setup_default(void **state)
{
	*state = fx_new(VIRTIO_RNG_DEFAULT_BPS);
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	fx_free(*state);
	return 0;
}

/* ---- transport access ---- */

static uint64_t le(const uint8_t *p, uint32_t len)
{
	uint64_t v = 0;
	for (uint32_t i = 0; i < len; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static uint64_t bar0(struct fx *f)
{
	uint8_t d[4];
	pci_cfg_access(&f->pb, f->vp->pdev.slot, 0, PCI_BAR0, d, 4, false);
	uint64_t lo = pci_get32(d) & ~0xfULL;
	pci_cfg_access(&f->pb, f->vp->pdev.slot, 0, PCI_BAR0 + 4, d, 4, false);
	return lo | (uint64_t)pci_get32(d) << 32;
}

static uint64_t rd(struct fx *f, uint64_t off, uint32_t len)
{
	uint8_t d[8];
	memset(d, 0x5a, sizeof(d));
	bus_access(&f->mmio, bar0(f) + off, d, len, false);
	return le(d, len);
}

static void wr(struct fx *f, uint64_t off, uint32_t len, uint64_t v)
{
	uint8_t d[8];
	for (uint32_t i = 0; i < len; i++)
		d[i] = (uint8_t)(v >> (8 * i));
	bus_access(&f->mmio, bar0(f) + off, d, len, true);
}

static uint8_t status(struct fx *f)
{
	return (uint8_t)rd(f, CC_STATUS, 1);
}

static void wr64(struct fx *f, uint32_t off, uint64_t v)
{
	wr(f, off, 4, (uint32_t)v);
	wr(f, off + 4, 4, v >> 32);
}

/* Enable MSI-X and unmask vector v. */
static void msix_vec_on(struct fx *f, uint16_t v)
{
	uint8_t c[2];
	pci_set16(c, 0x8000);
	pci_cfg_access(&f->pb, f->vp->pdev.slot, 0, f->vp->msix.cap + 2u, c, 2, true);
	wr(f, OFF_MSIX + 16u * v, 4, 0xfee00000);
	wr(f, OFF_MSIX + 16u * v + 8, 4, 0x40 + v);
	wr(f, OFF_MSIX + 16u * v + 12, 4, 0);
}

/* Negotiate feat, set up queue 0 (vector 1, config vector 0), DRIVER_OK. */
static void bring_up(struct fx *f, uint64_t feat)
{
	f->aidx = 0;
	wr(f, CC_STATUS, 1, 0);
	wr(f, CC_STATUS, 1, S_ACK | S_DRIVER);
	wr(f, CC_GFSELECT, 4, 0);
	wr(f, CC_GF, 4, (uint32_t)feat);
	wr(f, CC_GFSELECT, 4, 1);
	wr(f, CC_GF, 4, feat >> 32);
	wr(f, CC_STATUS, 1, S_ACK | S_DRIVER | S_FOK);
	assert_int_equal(status(f), S_ACK | S_DRIVER | S_FOK);
	wr(f, CC_MSIX, 2, 0);
	wr(f, CC_QSEL, 2, 0);
	wr(f, CC_QSIZE, 2, QSIZE);
	wr(f, CC_QMSIX, 2, 1);
	wr64(f, CC_QDESC, DESC_GPA);
	wr64(f, CC_QDRIVER, AVAIL_GPA);
	wr64(f, CC_QDEVICE, USED_GPA);
	wr(f, CC_QENABLE, 2, 1);
	msix_vec_on(f, 0);
	msix_vec_on(f, 1);
	wr(f, CC_STATUS, 1, S_UP);
	assert_int_equal(status(f), S_UP);
}

/* ---- the driver's side of the ring ---- */

static uint8_t *gp(struct fx *f, uint64_t gpa, uint64_t len)
{
	uint8_t *p = mem_ptr(&f->mem, gpa, len);
	assert_non_null(p);
	return p;
}

static void put_desc(struct fx *f, uint64_t table, uint16_t i, uint64_t addr, uint32_t len,
                     uint16_t flags, uint16_t next)
{
	uint8_t *p = gp(f, table + 16ULL * i, 16);
	memcpy(p, &addr, 8);
	memcpy(p + 8, &len, 4);
	memcpy(p + 12, &flags, 2);
	memcpy(p + 14, &next, 2);
}

static void desc(struct fx *f, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
                 uint16_t next)
{
	put_desc(f, DESC_GPA, i, addr, len, flags, next);
}

static void avail_push(struct fx *f, uint16_t head)
{
	memcpy(gp(f, AVAIL_GPA + 4 + 2 * (f->aidx % QSIZE), 2), &head, 2);
	f->aidx++;
	memcpy(gp(f, AVAIL_GPA + 2, 2), &f->aidx, 2);
}

static uint16_t used_idx(struct fx *f)
{
	uint16_t v;
	memcpy(&v, gp(f, USED_GPA + 2, 2), 2);
	return v;
}

static void used_elem(struct fx *f, uint16_t i, uint32_t *id, uint32_t *len)
{
	const uint8_t *p = gp(f, USED_GPA + 4 + 8 * (i % QSIZE), 8);
	memcpy(id, p, 4);
	memcpy(len, p + 4, 4);
}

/* Kick queue 0 through the notify area and let the loop run what is ready. */
static void kick(struct fx *f)
{
	wr(f, OFF_NOTIFY, 2, 0);
	evloop_run_once(f->loop, 0);
}

/* Bytes of [gpa, gpa+len) that differ from FILL. */
static size_t changed(struct fx *f, uint64_t gpa, size_t len)
{
	const uint8_t *p = gp(f, gpa, len);
	size_t n = 0;
	for (size_t i = 0; i < len; i++)
		n += p[i] != FILL;
	return n;
}

static uint64_t buf_gpa(uint16_t i)
{
	return DATA_GPA + 0x1000ULL * i;
}

/* ---- tests ---- */

static void test_fills_writable_buffers(void **state)
{
	struct fx *f = *state;

	memset(f->ram + DATA_GPA, FILL, 0x10000);
	bring_up(f, F_V1);
	desc(f, 0, buf_gpa(0), 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	desc(f, 1, buf_gpa(1), 48, VIRTQ_DESC_F_WRITE, 0);
	avail_push(f, 0);
	kick(f);
	assert_int_equal(used_idx(f), 1);
	uint32_t id, len;
	used_elem(f, 0, &id, &len);
	assert_int_equal(id, 0);
	assert_int_equal(len, 64);
	/* random bytes: a run of 16 (48) bytes all equal to FILL has probability 2^-128 */
	assert_true(changed(f, buf_gpa(0), 16) > 0);
	assert_true(changed(f, buf_gpa(1), 48) > 0);
	/* nothing written past the buffers */
	assert_int_equal(changed(f, buf_gpa(0) + 16, 0x1000 - 16), 0);
	assert_int_equal(changed(f, buf_gpa(1) + 48, 0x1000 - 48), 0);
	assert_int_equal(f->r->bytes, 64);
	/* the queue's MSI-X vector fired */
	assert_int_equal(efd_take(f->vp->msix.fd[1]), 1);
	assert_int_equal(efd_take(f->vp->msix.fd[0]), 0);
	assert_int_equal(f->r->rl.throttled, 0);
}

static void test_readable_buffers_untouched(void **state)
{
	struct fx *f = *state;
	uint32_t id, len;

	memset(f->ram + DATA_GPA, FILL, 0x10000);
	bring_up(f, F_V1);
	/* a request with only a device-readable buffer gets 0 bytes */
	desc(f, 0, buf_gpa(0), 64, 0, 0);
	avail_push(f, 0);
	/* readable then writable: only the writable part is filled */
	desc(f, 1, buf_gpa(1), 8, VIRTQ_DESC_F_NEXT, 2);
	desc(f, 2, buf_gpa(2), 32, VIRTQ_DESC_F_WRITE, 0);
	avail_push(f, 1);
	/* zero-length writable buffer */
	desc(f, 3, buf_gpa(3), 0, VIRTQ_DESC_F_WRITE, 0);
	avail_push(f, 3);
	kick(f);
	assert_int_equal(used_idx(f), 3);
	used_elem(f, 0, &id, &len);
	assert_int_equal(id, 0);
	assert_int_equal(len, 0);
	used_elem(f, 1, &id, &len);
	assert_int_equal(id, 1);
	assert_int_equal(len, 32);
	used_elem(f, 2, &id, &len);
	assert_int_equal(id, 3);
	assert_int_equal(len, 0);
	assert_int_equal(changed(f, buf_gpa(0), 0x1000), 0);
	assert_int_equal(changed(f, buf_gpa(1), 0x1000), 0);
	assert_true(changed(f, buf_gpa(2), 32) > 0);
	assert_int_equal(changed(f, buf_gpa(2) + 32, 0x1000 - 32), 0);
	assert_int_equal(changed(f, buf_gpa(3), 0x1000), 0);
}

static void test_unlimited_fills_everything(void **state)
{
	struct fx *f = *state;

	memset(f->ram + DATA_GPA, FILL, 0x10000);
	bring_up(f, F_V1);
	for (uint16_t i = 0; i < QSIZE; i++) {
		desc(f, i, buf_gpa(i), 0x1000, VIRTQ_DESC_F_WRITE, 0);
		avail_push(f, i);
	}
	kick(f);
	assert_int_equal(used_idx(f), QSIZE);
	for (uint16_t i = 0; i < QSIZE; i++) {
		uint32_t id, len;
		used_elem(f, i, &id, &len);
		assert_int_equal(id, i);
		assert_int_equal(len, 0x1000);
	}
	assert_int_equal(f->r->bytes, QSIZE * 0x1000);
	assert_false(f->r->timer_armed);
	/* one interrupt for the batch */
	assert_int_equal(efd_take(f->vp->msix.fd[1]), 1);
	/* the ring wraps: a second round reuses the slots */
	for (uint16_t i = 0; i < 4; i++)
		avail_push(f, i);
	kick(f);
	assert_int_equal(used_idx(f), QSIZE + 4);
}

static void test_rate_limit_waits_for_timer(void **state)
{
	struct fx *f = *state;

	memset(f->ram + DATA_GPA, FILL, 0x10000);
	bring_up(f, F_V1);
	/* the bucket holds 100 bytes: ten 10-byte requests at once, then wait */
	for (uint16_t i = 0; i < 12; i++) {
		desc(f, i, buf_gpa(i), 10, VIRTQ_DESC_F_WRITE, 0);
		avail_push(f, i);
	}
	kick(f);
	assert_int_equal(used_idx(f), 10);
	for (uint16_t i = 0; i < 10; i++) {
		uint32_t id, len;
		used_elem(f, i, &id, &len);
		assert_int_equal(id, i);
		assert_int_equal(len, 10);
	}
	assert_int_equal(f->r->rl.throttled, 1);
	assert_true(f->r->timer_armed);
	assert_int_equal(changed(f, buf_gpa(10), 10), 0);
	assert_int_equal(efd_take(f->vp->msix.fd[1]), 1);
	/* nothing is ready until the timer fires: the loop does not spin */
	for (int i = 0; i < 5; i++)
		assert_int_equal(evloop_run_once(f->loop, 0), 0);
	/* kicks while the timer is armed do not even ask the bucket */
	kick(f);
	kick(f);
	assert_int_equal(used_idx(f), 10);
	assert_int_equal(f->r->rl.throttled, 1);
	/* the timer completes the rest; every wake-up has tokens for at least
	 * one whole request, so it takes two (a late timer may make it one) */
	int wakeups = 0;
	while (used_idx(f) < 12 && wakeups < 10) {
		int n = evloop_run_once(f->loop, 5000);
		assert_true(n >= 0);
		wakeups += n;
	}
	assert_int_equal(used_idx(f), 12);
	assert_true(wakeups >= 1 && wakeups <= 2);
	/* 1 more unless a late timer brought enough for both */
	assert_true(f->r->rl.throttled >= 1 && f->r->rl.throttled <= 2);
	uint64_t total = 0;
	for (uint16_t i = 0; i < 12; i++) {
		uint32_t id, len;
		used_elem(f, i, &id, &len);
		assert_int_equal(id, i);
		assert_true(len >= 1 && len <= 10);
		assert_int_equal(changed(f, buf_gpa(i) + len, 0x1000 - len), 0);
		total += len;
	}
	assert_int_equal(f->r->bytes, total);
	/* nothing left: the timer is not re-armed */
	assert_false(f->r->timer_armed);
	assert_int_equal(evloop_run_once(f->loop, 0), 0);
}

static void test_rate_limit_partial_grant(void **state)
{
	struct fx *f = *state;
	uint32_t id, len;

	memset(f->ram + DATA_GPA, FILL, 0x10000);
	bring_up(f, F_V1);
	/* a request larger than the bucket gets what the bucket holds */
	desc(f, 0, buf_gpa(0), 150, VIRTQ_DESC_F_WRITE, 0);
	avail_push(f, 0);
	desc(f, 1, buf_gpa(2), 10, VIRTQ_DESC_F_WRITE, 0);
	avail_push(f, 1);
	kick(f);
	assert_int_equal(used_idx(f), 1);
	used_elem(f, 0, &id, &len);
	assert_int_equal(len, 100);
	assert_int_equal(changed(f, buf_gpa(0) + 100, 50), 0); /* the rest untouched */
	assert_true(changed(f, buf_gpa(0) + 80, 20) > 0);
	assert_true(f->r->rl.throttled >= 1);
	assert_true(f->r->timer_armed);
	/* the second one waits for the timer */
	for (int i = 0; i < 10 && used_idx(f) < 2; i++)
		assert_true(evloop_run_once(f->loop, 5000) >= 0);
	assert_int_equal(used_idx(f), 2);
	used_elem(f, 1, &id, &len);
	assert_int_equal(id, 1);
	assert_int_equal(len, 10);
}

static void test_reset_disarms_timer(void **state)
{
	struct fx *f = *state;

	memset(f->ram + DATA_GPA, FILL, 0x10000);
	bring_up(f, F_V1);
	for (uint16_t i = 0; i < 12; i++) {
		desc(f, i, buf_gpa(i), 10, VIRTQ_DESC_F_WRITE, 0);
		avail_push(f, i);
	}
	kick(f);
	assert_true(f->r->timer_armed);
	wr(f, CC_STATUS, 1, 0);
	assert_false(f->r->timer_armed);
	struct itimerspec t;
	assert_int_equal(timerfd_gettime(f->r->timer_fd, &t), 0);
	assert_int_equal(t.it_value.tv_sec, 0);
	assert_int_equal(t.it_value.tv_nsec, 0);
	/* the timer never fires into a reset device */
	assert_int_equal(evloop_run_once(f->loop, 250), 0);
	assert_int_equal(used_idx(f), 10);
	/* a fresh start works (ring memory reset by the driver) */
	memset(f->ram, 0, 0x4000);
	bring_up(f, F_V1);
	desc(f, 0, buf_gpa(0), 10, VIRTQ_DESC_F_WRITE, 0);
	avail_push(f, 0);
	kick(f);
	assert_int_equal(used_idx(f), 1);
}

static void test_broken_ring_needs_reset(void **state)
{
	struct fx *f = *state;

	bring_up(f, F_V1);
	/* the driver claims more requests than the queue holds */
	uint16_t idx = QSIZE + 5;
	memcpy(gp(f, AVAIL_GPA + 2, 2), &idx, 2);
	kick(f);
	assert_true(status(f) & S_NR);
	assert_int_equal(used_idx(f), 0);
	/* the driver is told: config interrupt on vector 0, ISR bit 1 */
	assert_int_equal(efd_take(f->vp->msix.fd[0]), 1);
	assert_int_equal(rd(f, OFF_ISR, 1) & 2, 2);
	/* further kicks are dropped without spinning */
	kick(f);
	assert_int_equal(evloop_run_once(f->loop, 0), 0);
	assert_int_equal(used_idx(f), 0);
	assert_false(f->r->timer_armed);
}

static void test_broken_descriptors_need_reset(void **state)
{
	struct fx *f = *state;

	/* buffer in the hole */
	bring_up(f, F_V1);
	desc(f, 0, HOLE_GPA, 64, VIRTQ_DESC_F_WRITE, 0);
	avail_push(f, 0);
	kick(f);
	assert_true(status(f) & S_NR);
	assert_int_equal(used_idx(f), 0);

	/* a descriptor chain that loops */
	memset(f->ram, 0, 0x4000);
	bring_up(f, F_V1);
	desc(f, 0, buf_gpa(0), 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	desc(f, 1, buf_gpa(1), 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
	avail_push(f, 0);
	kick(f);
	assert_true(status(f) & S_NR);
	assert_int_equal(used_idx(f), 0);

	/* an indirect descriptor without the feature */
	memset(f->ram, 0, 0x4000);
	bring_up(f, F_V1);
	desc(f, 0, INDIR_GPA, 32, VIRTQ_DESC_F_INDIRECT, 0);
	avail_push(f, 0);
	kick(f);
	assert_true(status(f) & S_NR);

	/* a buffer straddling the end of RAM */
	memset(f->ram, 0, 0x4000);
	bring_up(f, F_V1);
	desc(f, 0, MEM_LOW - 16, 32, VIRTQ_DESC_F_WRITE, 0);
	avail_push(f, 0);
	kick(f);
	assert_true(status(f) & S_NR);
	assert_int_equal(evloop_run_once(f->loop, 0), 0);
}

static void test_indirect_and_event_idx(void **state)
{
	struct fx *f = *state;
	uint32_t id, len;

	memset(f->ram + DATA_GPA, FILL, 0x10000);
	/* the device offers both ring features */
	wr(f, 0x00, 4, 0);
	uint64_t offered = rd(f, 0x04, 4);
	assert_true(offered & F_EVIDX);
	assert_true(offered & F_INDIRECT);
	bring_up(f, F_V1 | F_EVIDX | F_INDIRECT);
	put_desc(f, INDIR_GPA, 0, buf_gpa(0), 24, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	put_desc(f, INDIR_GPA, 1, buf_gpa(1), 40, VIRTQ_DESC_F_WRITE, 0);
	desc(f, 5, INDIR_GPA, 32, VIRTQ_DESC_F_INDIRECT, 0);
	avail_push(f, 5);
	kick(f);
	assert_int_equal(status(f) & S_NR, 0);
	assert_int_equal(used_idx(f), 1);
	used_elem(f, 0, &id, &len);
	assert_int_equal(id, 5);
	assert_int_equal(len, 64);
	assert_true(changed(f, buf_gpa(0), 24) > 0);
	assert_true(changed(f, buf_gpa(1), 40) > 0);
	/* with EVENT_IDX the device publishes avail_event (after the used ring) */
	uint16_t avail_event;
	memcpy(&avail_event, gp(f, USED_GPA + 4 + 8 * QSIZE, 2), 2);
	assert_int_equal(avail_event, 1);
	assert_int_equal(efd_take(f->vp->msix.fd[1]), 1);
	/* used_event far ahead: the driver wants no interrupt for the next one */
	uint16_t used_event = 10;
	memcpy(gp(f, AVAIL_GPA + 4 + 2 * QSIZE, 2), &used_event, 2);
	desc(f, 0, buf_gpa(2), 8, VIRTQ_DESC_F_WRITE, 0);
	avail_push(f, 0);
	kick(f);
	assert_int_equal(used_idx(f), 2);
	assert_int_equal(efd_take(f->vp->msix.fd[1]), 0);
}

static void test_nothing_before_driver_ok(void **state)
{
	struct fx *f = *state;

	memset(f->ram + DATA_GPA, FILL, 0x10000);
	wr(f, CC_STATUS, 1, S_ACK | S_DRIVER);
	wr(f, CC_GFSELECT, 4, 1);
	wr(f, CC_GF, 4, 1);
	wr(f, CC_STATUS, 1, S_ACK | S_DRIVER | S_FOK);
	wr(f, CC_QSEL, 2, 0);
	wr(f, CC_QSIZE, 2, QSIZE);
	wr64(f, CC_QDESC, DESC_GPA);
	wr64(f, CC_QDRIVER, AVAIL_GPA);
	wr64(f, CC_QDEVICE, USED_GPA);
	wr(f, CC_QENABLE, 2, 1);
	desc(f, 0, buf_gpa(0), 32, VIRTQ_DESC_F_WRITE, 0);
	avail_push(f, 0);
	kick(f);
	assert_int_equal(used_idx(f), 0);
	assert_int_equal(changed(f, buf_gpa(0), 32), 0);
	/* DRIVER_OK picks up what was already queued */
	wr(f, CC_STATUS, 1, S_UP);
	assert_int_equal(used_idx(f), 1);
}

static void test_no_device_config(void **state)
{
	struct fx *f = *state;

	assert_int_equal(rd(f, OFF_DEVICE, 4), 0);
	wr(f, OFF_DEVICE, 4, 0xffffffff);
	assert_int_equal(rd(f, OFF_DEVICE, 4), 0);
	/* no device-configuration capability (type 4) */
	for (uint8_t c = f->vp->pdev.cfg[PCI_CAP_PTR]; c; c = f->vp->pdev.cfg[c + 1]) {
		if (f->vp->pdev.cfg[c] == 0x09)
			assert_int_not_equal(f->vp->pdev.cfg[c + 3], 4);
	}
	assert_int_equal(pci_get16(f->vp->pdev.cfg + 2), 0x1040 + VIRTIO_ID_RNG);
}

static void test_save_load(void **state)
{
	struct fx *f = *state;
	struct sbuf out = { 0 }, in;

	memset(f->ram + DATA_GPA, FILL, 0x10000);
	bring_up(f, F_V1 | F_EVIDX);
	desc(f, 0, buf_gpa(0), 100, VIRTQ_DESC_F_WRITE, 0);
	avail_push(f, 0);
	kick(f);
	assert_int_equal(used_idx(f), 1);
	virtio_pci_save(f->vp, &out);
	assert_int_equal(out.err, 0);

	/* a second rng, created unlimited, on the same bus and the same memory */
	struct virtio_rng *r2 = virtio_rng_create(0);
	struct virtio_pci *vp2 = NULL;
	assert_non_null(r2);
	assert_int_equal(virtio_pci_create(&f->pb, &f->kvm, f->loop, &f->mem, &virtio_rng_ops, r2,
	                                   &vp2), 0);
	sbuf_reader(&in, out.data, out.len);
	int rc = virtio_pci_load(vp2, &in);
	bool all_read = in.pos == in.len;
	uint64_t rate = r2->rl.rate, bytes = r2->bytes;
	uint8_t st = vp2->vdev.status;
	/* the restored device serves the next request (kicked on its own BAR) */
	desc(f, 1, buf_gpa(1), 50, VIRTQ_DESC_F_WRITE, 0);
	avail_push(f, 1);
	uint8_t d[2] = { 0, 0 };
	vp2->pdev.bars[0].fn(vp2->pdev.bars[0].opaque, OFF_NOTIFY, d, 2, true);
	evloop_run_once(f->loop, 0);
	uint16_t used = used_idx(f);
	/* a truncated device part is refused */
	sbuf_reader(&in, out.data, out.len - 1);
	int rc_short = virtio_pci_load(vp2, &in);

	virtio_pci_destroy(vp2);
	f->pb.devs[2] = NULL;
	virtio_rng_destroy(r2);
	sbuf_free(&out);
	assert_int_equal(rc, 0);
	assert_true(all_read);
	assert_int_equal(rate, 100);
	assert_int_equal(bytes, 100);
	assert_int_equal(st, S_UP);
	assert_int_equal(rc_short, -EINVAL);
	assert_int_equal(used, 2);
}

static void test_destroy_while_throttled(void **state)
{
	struct fx *f = *state;

	memset(f->ram + DATA_GPA, FILL, 0x10000);
	bring_up(f, F_V1);
	for (uint16_t i = 0; i < 12; i++) {
		desc(f, i, buf_gpa(i), 10, VIRTQ_DESC_F_WRITE, 0);
		avail_push(f, i);
	}
	kick(f);
	assert_true(f->r->timer_armed);
	virtio_pci_destroy(f->vp);
	virtio_rng_destroy(f->r);
	f->pb.devs[1] = NULL;
	/* recreate so teardown has something to free; the old timer is gone */
	f->r = virtio_rng_create(100);
	assert_non_null(f->r);
	assert_int_equal(virtio_pci_create(&f->pb, &f->kvm, f->loop, &f->mem, &virtio_rng_ops, f->r,
	                                   &f->vp), 0);
	assert_int_equal(evloop_run_once(f->loop, 250), 0);
	assert_int_equal(used_idx(f), 10);
}

/* ---- threads: vCPU vs. main loop ---- */

static void nop_ev(void *opaque, uint32_t events)
{
	(void)opaque;
	(void)events;
}

static int loop_stop, loop_turns;

static void *loop_thread(void *arg)
{
	struct evloop *l = arg;
	while (!__atomic_load_n(&loop_stop, __ATOMIC_ACQUIRE)) {
		evloop_run_once(l, 0);
		__atomic_add_fetch(&loop_turns, 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

/* Until the loop thread has turned n more times. */
static void wait_turns(int n)
{
	int start = __atomic_load_n(&loop_turns, __ATOMIC_ACQUIRE);
	while (__atomic_load_n(&loop_turns, __ATOMIC_ACQUIRE) - start < n)
		sched_yield();
}

/* Device ops run on vCPU threads (virtio.h) and rng_activate registers its
 * timer with the loop there, while the main thread is dispatching. With 16
 * registrations the slot table is full, so that registration grows it under
 * the dispatcher. The loop must stay sound (ASan/UBSan watch) and the device
 * must come up with its timer registered. */
static void test_activate_while_loop_runs(void **state)
{
	(void)state;
	for (int round = 0; round < 100; round++) {
		struct fx *f = fx_new(0);
		int dummy[15];
		pthread_t t;

		assert_non_null(f);
		/* the transport registered one notify fd; 15 always-ready ones fill the table */
		for (int i = 0; i < 15; i++) {
			dummy[i] = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);
			assert_true(dummy[i] >= 0);
			assert_int_equal(evloop_add(f->loop, dummy[i], EPOLLIN, nop_ev, NULL), 0);
		}
		__atomic_store_n(&loop_stop, 0, __ATOMIC_RELEASE);
		assert_int_equal(pthread_create(&t, NULL, loop_thread, f->loop), 0);
		wait_turns(3);
		/* the driver, on this (vCPU) thread */
		wr(f, CC_STATUS, 1, S_ACK | S_DRIVER);
		wr(f, CC_GFSELECT, 4, 1);
		wr(f, CC_GF, 4, 1);
		wr(f, CC_STATUS, 1, S_ACK | S_DRIVER | S_FOK);
		wr(f, CC_QSEL, 2, 0);
		wr(f, CC_QSIZE, 2, QSIZE);
		wr64(f, CC_QDESC, DESC_GPA);
		wr64(f, CC_QDRIVER, AVAIL_GPA);
		wr64(f, CC_QDEVICE, USED_GPA);
		wr(f, CC_QENABLE, 2, 1);
		wr(f, CC_STATUS, 1, S_UP);
		wait_turns(3);
		__atomic_store_n(&loop_stop, 1, __ATOMIC_RELEASE);
		assert_int_equal(pthread_join(t, NULL), 0);
		uint8_t st = status(f);
		int timer_registered = evloop_del(f->loop, f->r->timer_fd) == 0;
		for (int i = 0; i < 15; i++) {
			evloop_del(f->loop, dummy[i]);
			close(dummy[i]);
		}
		f->r->loop = NULL; /* its timer is already out of the loop */
		fx_free(f);
		assert_int_equal(st, S_UP);
		assert_true(timer_registered);
	}
}

static void test_parse(void **state)
{
	uint64_t bps = 1;
	char err[200];

	(void)state;
	assert_int_equal(virtio_rng_parse(NULL, &bps, err, sizeof(err)), 0);
	assert_int_equal(bps, VIRTIO_RNG_DEFAULT_BPS);
	bps = 1;
	assert_int_equal(virtio_rng_parse("", &bps, err, sizeof(err)), 0);
	assert_int_equal(bps, VIRTIO_RNG_DEFAULT_BPS);
	assert_int_equal(virtio_rng_parse("bps=0", &bps, err, sizeof(err)), 0);
	assert_int_equal(bps, 0);
	assert_int_equal(virtio_rng_parse("bps=12345", &bps, err, sizeof(err)), 0);
	assert_int_equal(bps, 12345);
	static const char *bad[] = { "bps=", "bps=-1", "bps=1x", "rate=5", "bps",
		                     "bps=99999999999999999999", " bps=5" };
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		assert_int_equal(virtio_rng_parse(bad[i], &bps, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "--rng"));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fills_writable_buffers, setup_unlimited, teardown),
		cmocka_unit_test_setup_teardown(test_readable_buffers_untouched, setup_unlimited, teardown),
		cmocka_unit_test_setup_teardown(test_unlimited_fills_everything, setup_unlimited, teardown),
		cmocka_unit_test_setup_teardown(test_rate_limit_waits_for_timer, setup_100, teardown),
		cmocka_unit_test_setup_teardown(test_rate_limit_partial_grant, setup_100, teardown),
		cmocka_unit_test_setup_teardown(test_reset_disarms_timer, setup_100, teardown),
		cmocka_unit_test_setup_teardown(test_broken_ring_needs_reset, setup_default, teardown),
		cmocka_unit_test_setup_teardown(test_broken_descriptors_need_reset, setup_default, teardown),
		cmocka_unit_test_setup_teardown(test_indirect_and_event_idx, setup_default, teardown),
		cmocka_unit_test_setup_teardown(test_nothing_before_driver_ok, setup_default, teardown),
		cmocka_unit_test_setup_teardown(test_no_device_config, setup_default, teardown),
		cmocka_unit_test_setup_teardown(test_save_load, setup_100, teardown),
		cmocka_unit_test_setup_teardown(test_destroy_while_throttled, setup_100, teardown),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_activate_while_loop_runs),
	};

	return cmocka_run_group_tests_name("virtio_rng", tests, NULL, NULL);
}
