/* The VM: guest memory, the PIO/MMIO buses with their devices, vCPU threads,
 * and the main thread's event loop (console input, signals, exit requests).
 *
 * Threads: each vCPU thread loops on KVM_RUN and dispatches exits to the
 * buses; devices lock themselves. An exit request (power-off, reset, error) is
 * recorded once and wakes the main thread through an eventfd; the main thread
 * then stops the vCPUs with immediate_exit plus a signal and joins them. */
#include "vm/vm.h"
#include "vm/vm_internal.h"
#include "vm/migrate.h"
#include "vm/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "arch/x86/acpi.h"
#include "arch/x86/boot.h"
#include "arch/x86/cpu.h"
#include "arch/x86/layout.h"
#include "devices/acpi_pm.h"
#include "devices/i8042.h"
#include "devices/rtc.h"
#include "devices/uart8250.h"
#include "hv/kvm.h"
#include "pci/pci.h"
#include "virtio/pci.h"
#include "virtio/balloon.h"
#include "virtio/console.h"
#include "virtio/net.h"
#include "virtio/blk.h"
#include "virtio/rng.h"
#include "virtio/vsock.h"
#include "util/log.h"
#include "util/ratelimit.h"
#include "vm/bus.h"
#include "vm/evloop.h"
#include "vm/mem.h"

#define SIG_KICK SIGUSR1

/* input files */
static const char *const vcpu_stat_names[VCPU_NR_STATS] = {
	"io", "mmio", "hlt", "intr", "shutdown", "system_event", "other",
};

const char *vm_exit_name(enum vm_exit e)
{
	switch (e) {
	case VM_EXIT_POWEROFF: return "power-off";
	case VM_EXIT_REBOOT: return "reboot";
	case VM_EXIT_STOPPED: return "stopped";
	case VM_EXIT_MIGRATED: return "migrated";
	case VM_EXIT_ERROR: return "error";
	default: return "none";
	}
}

static void vm_request_exit(struct vm *vm, enum vm_exit why)
{
	int none = VM_EXIT_NONE;
	if (atomic_compare_exchange_strong(&vm->exit_reason, &none, why)) {
		uint64_t one = 1;
		if (write(vm->event_fd, &one, sizeof(one)) < 0)
			log_error("cannot wake the main loop: %s", strerror(errno));
	}
}

/* device callbacks */
static void vm_irq(void *opaque, uint32_t gsi, int level)
{
	struct vm *vm = opaque;
	if (kvm_vm_irq_line(&vm->kvm, gsi, level) < 0)
		log_debug("KVM_IRQ_LINE %u failed", gsi);
}

static void vm_poweroff_cb(void *opaque)
{
	vm_request_exit(opaque, VM_EXIT_POWEROFF);
}

static void vm_reset_cb(void *opaque)
{
	vm_request_exit(opaque, VM_EXIT_REBOOT);
}

static void vm_room_cb(void *opaque)
{
	struct vm *vm = opaque;
	uint64_t one = 1;
	if (write(vm->room_fd, &one, sizeof(one)) < 0) {
		/* the counter cannot overflow in practice; nothing else to do */
	}
}

static int map_file(const char *path, const char *what, struct file_map *f, char *err,
                    size_t errlen)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	f->p = NULL;
	f->len = 0;
	if (fd < 0) {
		int rc = -errno;
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
		return rc;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
		snprintf(err, errlen, "%s %s: not a regular, non-empty file", what, path);
		close(fd);
		return -EINVAL;
	}
	f->len = (size_t)st.st_size;
	f->p = mmap(NULL, f->len, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (f->p == MAP_FAILED) {
		f->p = NULL;
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
		return -errno;
	}
	return 0;
}

static void unmap_file(struct file_map *f)
{
	if (f->p)
		munmap(f->p, f->len);
	f->p = NULL;
}

static uint64_t host_mem_bytes(void)
{
	char line[256];
	unsigned long long kb, total = 0;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return UINT64_MAX;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "MemTotal: %llu kB", &kb) == 1 ||
		    sscanf(line, "SwapTotal: %llu kB", &kb) == 1)
			total += kb;
	}
	fclose(f);
	return total ? total << 10 : UINT64_MAX;
}

/* The device table: every legacy device, in registration order. */
static int vm_add_devices(struct vm *vm)
{
	struct uart_config ucfg = { .gsi = UART_COM1_IRQ, .irq = vm_irq, .irq_opaque = vm,
		                    .out = console_write, .out_opaque = vm->con,
		                    .room = vm_room_cb, .room_opaque = vm };
	struct acpi_pm_config pcfg = { .irq = vm_irq, .irq_opaque = vm,
		                       .poweroff = vm_poweroff_cb, .reset = vm_reset_cb,
		                       .opaque = vm };
	uint64_t low = mem_low_end(&vm->mem);

	vm->uart = uart_create(&ucfg);
	vm->kbd = i8042_create(vm_reset_cb, vm);
	vm->rtc = rtc_create(NULL, low, vm->mem.size - low);
	vm->pm = acpi_pm_create(&pcfg);
	if (!vm->uart || !vm->kbd || !vm->rtc || !vm->pm)
		return -ENOMEM;

	const struct {
		uint64_t base, len;
		const struct device_ops *ops;
		void *dev;
	} table[] = {
		{ I8042_DATA_PORT, I8042_CMD_PORT - I8042_DATA_PORT + 1, &i8042_ops, vm->kbd },
		{ RTC_BASE, RTC_NR_PORTS, &rtc_ops, vm->rtc },
		{ UART_COM1_BASE, UART_NR_REGS, &uart_ops, vm->uart },
		{ ACPI_PM_BASE, ACPI_PM_LEN, &acpi_pm_ops, vm->pm },
	};
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		int rc = bus_register(&vm->pio, table[i].base, table[i].len, table[i].ops->io,
		                      table[i].dev, table[i].ops->name);
		if (rc)
			return rc;
	}
	return 0;
}

static int vm_setup_memory(struct vm *vm, char *err, size_t errlen)
{
	int rc;
	if (vm->cfg->restore) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", vm->cfg->restore_dir, SNAPSHOT_MEMORY);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		rc = fd < 0 ? -errno
		            : mem_init_file(&vm->mem, vm->cfg->mem_size, layout_low_limit(vm->cfg->mem_size), fd);
		if (fd >= 0)
			close(fd);
	} else {
		rc = mem_init(&vm->mem, vm->cfg->mem_size, layout_low_limit(vm->cfg->mem_size));
	}
	if (rc) {
		snprintf(err, errlen, "cannot allocate %llu MiB of guest memory: %s",
		         (unsigned long long)(vm->cfg->mem_size >> 20), strerror(-rc));
		return rc;
	}
	for (int i = 0; i < vm->mem.nr_regions; i++) {
		const struct mem_region *r = &vm->mem.regions[i];
		rc = kvm_vm_set_memory(&vm->kvm, (uint32_t)i, r->gpa, r->len, r->hva);
		if (rc) {
			snprintf(err, errlen, "KVM refused guest memory: %s", strerror(-rc));
			return rc;
		}
	}
	return 0;
}

/* Map the kernel and initrd and check the kernel's format, before any KVM work. */
static int vm_open_images(struct vm *vm, char *err, size_t errlen)
{
	enum boot_kind kind;
	char why[200];
	int rc;

	rc = map_file(vm->cfg->kernel, "kernel", &vm->kernel, err, errlen);
	if (rc)
		return rc;
	if (boot_probe(vm->kernel.p, vm->kernel.len, &kind, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "kernel %s %s", vm->cfg->kernel, why);
		return -ENOEXEC;
	}
	if (vm->cfg->initrd)
		rc = map_file(vm->cfg->initrd, "initrd", &vm->initrd, err, errlen);
	return rc;
}

static int vm_load_guest(struct vm *vm, char *err, size_t errlen)
{
	struct file_map *kernel = &vm->kernel, *initrd = &vm->initrd;
	struct acpi_config acfg = { .nr_cpus = vm->cfg->cpus, .pci = true,
		                    .mmio64_base = layout_mmio64_base(&vm->mem),
		                    .mmio64_size = PCI_MMIO64_SIZE };
	struct boot_setup boot;
	uint64_t rsdp;
	char why[200];
	int rc;

	rc = acpi_build(&vm->mem, &acfg, &rsdp);
	if (rc) {
		snprintf(err, errlen, "cannot build ACPI tables: %s", strerror(-rc));
		goto out;
	}
	why[0] = '\0';
	rc = boot_load(&vm->mem, kernel->p, kernel->len, initrd->p, initrd->len, vm->cfg->cmdline,
	               rsdp, &boot, why, sizeof(why));
	if (rc) {
		if (rc == -ENOEXEC)
			snprintf(err, errlen, "kernel %s %s", vm->cfg->kernel, why);
		else
			snprintf(err, errlen, "%s", why);
		goto out;
	}
	rc = cpu_init_boot_regs(vm->vcpus[0].fd, &boot);
	if (rc)
		snprintf(err, errlen, "cannot set the boot vCPU's registers: %s", strerror(-rc));
out:
	/* the guest has its copy now */
	unmap_file(kernel);
	unmap_file(initrd);
	return rc;
}

static int vm_add_virtio(struct vm *vm, const struct virtio_dev_ops *ops, void *priv, char *err,
                         size_t errlen)
{
	struct virtio_pci *vp;
	int rc = virtio_pci_create(&vm->pci, &vm->kvm, vm->loop, &vm->mem, ops, priv, &vp);
	if (rc) {
		snprintf(err, errlen, "cannot add %s: %s", ops->name, strerror(-rc));
		return rc;
	}
	vm->vdevs[vm->nr_vdevs++] = vp;
	return 0;
}

/* The PCI bus and the virtio devices the configuration asks for, in slot order. */
static int vm_add_pci_devices(struct vm *vm, char *err, size_t errlen)
{
	int rc = pci_bus_init(&vm->pci, &vm->pio, &vm->mmio, layout_mmio64_base(&vm->mem));
	if (rc) {
		snprintf(err, errlen, "cannot set up the PCI bus: %s", strerror(-rc));
		return rc;
	}
	vm->pci_up = true;
	if (vm->cfg->rng) {
		uint64_t bps;
		if ((rc = virtio_rng_parse(vm->cfg->rng_opts, &bps, err, errlen)))
			return rc;
		vm->rng = virtio_rng_create(bps);
		if (!vm->rng) {
			snprintf(err, errlen, "cannot create virtio-rng");
			return -ENOMEM;
		}
		if ((rc = vm_add_virtio(vm, &virtio_rng_ops, vm->rng, err, errlen)))
			return rc;
	}
	/* devices: disks */
	for (unsigned i = 0; i < vm->cfg->nr_disks; i++) {
		struct virtio_blk_opts o;
		if ((rc = virtio_blk_parse_opts(&o, vm->cfg->disks[i], err, errlen)) ||
		    (rc = virtio_blk_create(&vm->disks[i], &o, vm->loop, err, errlen)) ||
		    (o.overlay && (rc = vm_disk_option_update(vm, i, err, errlen))) || /* on its overlay */
		    (rc = vm_add_virtio(vm, &virtio_blk_ops, vm->disks[i], err, errlen)))
			return rc;
	}
	/* devices: network cards */
	for (unsigned i = 0; i < vm->cfg->nr_nets; i++) {
		struct virtio_net *net;
		if ((rc = virtio_net_create(vm->cfg->nets[i], vm->cfg->name, i, &net, err, errlen)))
			return rc;
		vm->nets[vm->nr_nets++] = net;
		if ((rc = vm_add_virtio(vm, &virtio_net_ops, net, err, errlen)))
			return rc;
		if ((rc = virtio_net_attach(net, &vm->vdevs[vm->nr_vdevs - 1]->vdev))) {
			snprintf(err, errlen, "cannot add virtio-net: %s", strerror(-rc));
			return rc;
		}
	}
	/* devices: virtio console */
	if (vm->cfg->console_virtio) {
		struct virtio_console_setup cs = { .out = console_write, .out_opaque = vm->con,
			                           .room = vm_room_cb, .room_opaque = vm };
		if (vm->con->tty)
			virtio_console_term_size(STDIN_FILENO, &cs.cols, &cs.rows);
		vm->vcon = virtio_console_create(&cs);
		if (!vm->vcon) {
			snprintf(err, errlen, "cannot create virtio-console");
			return -ENOMEM;
		}
		if ((rc = vm_add_virtio(vm, &virtio_console_ops, vm->vcon, err, errlen)))
			return rc;
		virtio_console_attach(vm->vcon, &vm->vdevs[vm->nr_vdevs - 1]->vdev);
	}
	/* devices: balloon */
	if (vm->cfg->balloon) {
		struct virtio_balloon_opts bo;
		if ((rc = virtio_balloon_parse(vm->cfg->balloon_opts, vm->cfg->mem_size, &bo, err,
		                               errlen)))
			return rc;
		vm->balloon = virtio_balloon_create(&bo);
		if (!vm->balloon) {
			snprintf(err, errlen, "cannot create virtio-balloon");
			return -ENOMEM;
		}
		if ((rc = vm_add_virtio(vm, &virtio_balloon_ops, vm->balloon, err, errlen)))
			return rc;
		virtio_balloon_attach(vm->balloon, &vm->vdevs[vm->nr_vdevs - 1]->vdev);
	}
	/* devices: vsock */
	if (vm->cfg->vsock_opts) {
		uint64_t cid;
		if ((rc = virtio_vsock_parse(vm->cfg->vsock_opts, &cid, err, errlen)) ||
		    (rc = virtio_vsock_create(cid, vm->cfg->incoming != NULL, &vm->mem, vm->loop,
		                              &vm->vsock, err, errlen)) ||
		    (rc = vm_add_virtio(vm, &virtio_vsock_ops, vm->vsock, err, errlen)))
			return rc;
	}
	return 0;
}

int vm_create(const struct vm_config *cfg, struct console *con, struct vm **out, char *err,
              size_t errlen)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	int rc;

	if (!vm) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	vm->cfg = cfg;
	vm->con = con;
	vm->kvm.sys_fd = vm->kvm.vm_fd = -1;
	vm->signal_fd = -1;
	pthread_mutex_init(&vm->pause_lock, NULL);
	pthread_cond_init(&vm->parked, NULL);
	pthread_cond_init(&vm->resumed, NULL);
	vm->loop = evloop_create();
	vm->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	vm->room_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	bus_init(&vm->pio, "port I/O");
	bus_init(&vm->mmio, "MMIO");
	if (!vm->loop || vm->event_fd < 0 || vm->room_fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		goto fail;
	}
	/* a restored VM's kernel is in its memory image */
	if (!cfg->restore && !cfg->incoming && (rc = vm_open_images(vm, err, errlen)))
		goto fail;
	if (cfg->mem_size > host_mem_bytes()) {
		snprintf(err, errlen, "--memory %llu MiB is more than this host has (%llu MiB)",
		         (unsigned long long)(cfg->mem_size >> 20),
		         (unsigned long long)(host_mem_bytes() >> 20));
		rc = -ENOMEM;
		goto fail;
	}
	if (kvm_host_is_pvm() && !getenv("CVISOR_ALLOW_PVM")) {
		snprintf(err, errlen,
		         "this host's /dev/kvm is PVM (software KVM, no VT-x/AMD-V): a stock kernel "
		         "cannot run on it at useful speed; use the nested rig (make demo, "
		         "tools/rig/rig.sh), or set CVISOR_ALLOW_PVM=1 for a PVM-enabled guest");
		rc = -ENOTSUP;
		goto fail;
	}
	rc = kvm_vm_open(&vm->kvm, err, errlen);
	if (rc)
		goto fail;
	if (cfg->cpus > vm->kvm.max_vcpus || cfg->cpus > ACPI_MAX_CPUS) {
		snprintf(err, errlen, "--cpus %u is more than this host's KVM allows (at most %u)",
		         cfg->cpus, vm->kvm.max_vcpus < ACPI_MAX_CPUS ? vm->kvm.max_vcpus : ACPI_MAX_CPUS);
		rc = -EINVAL;
		goto fail;
	}
	if ((rc = vm_setup_memory(vm, err, errlen)))
		goto fail;
	vm->vcpus = calloc(cfg->cpus, sizeof(*vm->vcpus));
	if (!vm->vcpus) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (unsigned i = 0; i < cfg->cpus; i++) {
		struct vcpu *c = &vm->vcpus[i];
		c->vm = vm;
		c->id = i;
		c->fd = -1;
		rc = kvm_vcpu_create(&vm->kvm, i, &c->fd, &c->run);
		if (!rc)
			rc = cpu_init_vcpu(c->fd, vm->kvm.cpuid, i, cfg->cpus, vm->kvm.tsc_deadline);
		if (rc) {
			snprintf(err, errlen, "cannot create vCPU %u: %s", i, strerror(-rc));
			goto fail;
		}
	}
	if (!cfg->restore && !cfg->incoming && (rc = vm_load_guest(vm, err, errlen)))
		goto fail;
	if ((rc = vm_add_devices(vm))) {
		snprintf(err, errlen, "cannot create devices: %s", strerror(-rc));
		goto fail;
	}
	if ((rc = vm_add_pci_devices(vm, err, errlen)))
		goto fail;
	if (cfg->restore && (rc = vm_snapshot_load(vm, cfg->restore, err, errlen)))
		goto fail;
	*out = vm;
	return 0;
fail:
	vm_destroy(vm);
	return rc;
}

void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	if (vm->vcpus) {
		for (unsigned i = 0; i < vm->cfg->cpus; i++) {
			struct vcpu *c = &vm->vcpus[i];
			if (c->run)
				munmap(c->run, (size_t)vm->kvm.run_size);
			if (c->fd >= 0)
				close(c->fd);
		}
		free(vm->vcpus);
	}
	unmap_file(&vm->kernel);
	unmap_file(&vm->initrd);
	vm_migrate_destroy(vm);
	for (unsigned i = 0; i < vm->nr_vdevs; i++)
		virtio_pci_destroy(vm->vdevs[i]);
	virtio_rng_destroy(vm->rng);
	for (unsigned i = 0; i < vm->nr_nets; i++)
		virtio_net_destroy(vm->nets[i]);
	virtio_console_destroy(vm->vcon);
	virtio_balloon_destroy(vm->balloon);
	virtio_vsock_destroy(vm->vsock);
	for (unsigned i = 0; i < CONFIG_MAX_DISKS; i++)
		virtio_blk_destroy(vm->disks[i]);
	if (vm->pci_up)
		pci_bus_destroy(&vm->pci);
	uart_destroy(vm->uart);
	i8042_destroy(vm->kbd);
	rtc_destroy(vm->rtc);
	acpi_pm_destroy(vm->pm);
	kvm_vm_close(&vm->kvm);
	mem_free(&vm->mem);
	if (vm->event_fd >= 0)
		close(vm->event_fd);
	if (vm->room_fd >= 0)
		close(vm->room_fd);
	if (vm->signal_fd >= 0)
		close(vm->signal_fd);
	evloop_destroy(vm->loop);
	free(vm);
}

/* vCPU thread */

static void vcpu_report_error(struct vcpu *c, const char *what)
{
	struct kvm_regs r;
	if (ioctl(c->fd, KVM_GET_REGS, &r) == 0)
		log_error("vCPU %u: %s (rip 0x%llx)", c->id, what, (unsigned long long)r.rip);
	else
		log_error("vCPU %u: %s", c->id, what);
	vm_request_exit(c->vm, VM_EXIT_ERROR);
}

static void vcpu_count_exit(struct vcpu *c, uint32_t reason)
{
	enum vcpu_stat s;
	switch (reason) {
	case KVM_EXIT_IO: s = VCPU_EXIT_IO; break;
	case KVM_EXIT_MMIO: s = VCPU_EXIT_MMIO; break;
	case KVM_EXIT_HLT: s = VCPU_EXIT_HLT; break;
	case KVM_EXIT_INTR: s = VCPU_EXIT_INTR; break;
	case KVM_EXIT_SHUTDOWN: s = VCPU_EXIT_SHUTDOWN; break;
	case KVM_EXIT_SYSTEM_EVENT: s = VCPU_EXIT_SYSTEM_EVENT; break;
	default: s = VCPU_EXIT_OTHER; break;
	}
	atomic_fetch_add_explicit(&c->exits[s], 1, memory_order_relaxed);
}

static bool vcpu_handle_exit(struct vcpu *c)
{
	struct vm *vm = c->vm;
	struct kvm_run *run = c->run;
	char what[128];

	vcpu_count_exit(c, run->exit_reason);
	switch (run->exit_reason) {
	case KVM_EXIT_IO: {
		uint8_t *data = (uint8_t *)run + run->io.data_offset;
		for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size)
			bus_access(&vm->pio, run->io.port, data, run->io.size,
			           run->io.direction == KVM_EXIT_IO_OUT);
		return true;
	}
	case KVM_EXIT_MMIO:
		bus_access(&vm->mmio, run->mmio.phys_addr, run->mmio.data,
		           run->mmio.len > 8 ? 8 : run->mmio.len, run->mmio.is_write);
		return true;
	case KVM_EXIT_INTR:
	case KVM_EXIT_HLT:
		return true;
	case KVM_EXIT_SHUTDOWN: {
		char regs[320];
		cpu_describe_regs(c->fd, regs, sizeof(regs));
		log_info("vCPU %u: triple fault, resetting the VM (%s)", c->id, regs);
		vm_request_exit(vm, VM_EXIT_REBOOT);
		return false;
	}
	case KVM_EXIT_SYSTEM_EVENT:
		if (run->system_event.type == KVM_SYSTEM_EVENT_RESET) {
			vm_request_exit(vm, VM_EXIT_REBOOT);
		} else if (run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN) {
			vm_request_exit(vm, VM_EXIT_POWEROFF);
		} else {
			snprintf(what, sizeof(what), "system event %u", run->system_event.type);
			vcpu_report_error(c, what);
		}
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(what, sizeof(what), "VM entry failed (hardware reason 0x%llx)",
		         (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		vcpu_report_error(c, what);
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		snprintf(what, sizeof(what), "KVM internal error (suberror %u)", run->internal.suberror);
		vcpu_report_error(c, what);
		return false;
	default:
		snprintf(what, sizeof(what), "unexpected KVM exit %u", run->exit_reason);
		vcpu_report_error(c, what);
		return false;
	}
}

/* Where the vCPU is, for a guest that stopped answering (SIGUSR2). */
static void vcpu_dump(struct vcpu *c)
{
	static const char *const mp[] = { "runnable", "uninitialized", "init-received", "halted",
		                          "sipi-received", "stopped", "check-stop", "operating",
		                          "load" };
	struct kvm_mp_state ms = { 0 };
	char regs[320];
	uint64_t n = 0;

	for (int i = 0; i < VCPU_NR_STATS; i++)
		n += atomic_load(&c->exits[i]);
	cpu_describe_regs(c->fd, regs, sizeof(regs));
	if (ioctl(c->fd, KVM_GET_MP_STATE, &ms) < 0)
		ms.mp_state = ~0u;
	log_warn("vCPU %u: %s, %llu exits, %s", c->id,
	         ms.mp_state < sizeof(mp) / sizeof(mp[0]) ? mp[ms.mp_state] : "state unknown",
	         (unsigned long long)n, regs[0] ? regs : "registers unreadable");
	/* what a halted vCPU waits for: its timer and the interrupts pending */
	char timer[400];
	struct kvm_clock_data clk = { 0 };
	cpu_describe_timer(c->fd, timer, sizeof(timer));
	if (ioctl(c->vm->kvm.vm_fd, KVM_GET_CLOCK, &clk) < 0)
		clk.clock = 0;
	log_warn("vCPU %u: %s; kvmclock %.3f s", c->id, timer[0] ? timer : "lapic unreadable",
	         (double)clk.clock / 1e9);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *c = arg;
	sigset_t kick;
	uint64_t entered_ns = 0; /* last KVM_RUN while throttled */

	sigemptyset(&kick);
	sigaddset(&kick, SIG_KICK);
	pthread_sigmask(SIG_UNBLOCK, &kick, NULL);

	while (!atomic_load(&c->vm->stopping)) {
		struct vm *vm = c->vm;
		pthread_mutex_lock(&vm->pause_lock);
		if (vm->paused) {
			/* An I/O or MMIO exit completes only on the next KVM_RUN: enter once
			 * with immediate_exit set so the saved state is consistent. */
			pthread_mutex_unlock(&vm->pause_lock);
			c->run->immediate_exit = 1;
			ioctl(c->fd, KVM_RUN, 0);
			pthread_mutex_lock(&vm->pause_lock);
			vm->nr_parked++;
			pthread_cond_broadcast(&vm->parked);
			while (vm->paused && !atomic_load(&vm->stopping))
				pthread_cond_wait(&vm->resumed, &vm->pause_lock);
			vm->nr_parked--;
			if (!atomic_load(&vm->stopping))
				c->run->immediate_exit = 0;
			pthread_mutex_unlock(&vm->pause_lock);
			entered_ns = 0; /* the time parked was no running time */
			continue;
		}
		pthread_mutex_unlock(&vm->pause_lock);
		if (atomic_exchange(&c->dump, false))
			vcpu_dump(c);
		/* live migration's auto-converge (vm/migrate.c) */
		migrate_throttle_vcpu(vm, &entered_ns);
		if (ioctl(c->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			char what[96];
			snprintf(what, sizeof(what), "KVM_RUN failed: %s", strerror(errno));
			vcpu_report_error(c, what);
			break;
		}
		if (!vcpu_handle_exit(c))
			break;
	}
	return NULL;
}

static void kick_handler(int sig)
{
	(void)sig; /* only interrupts KVM_RUN */
}

static void vm_stop_vcpus(struct vm *vm)
{
	atomic_store(&vm->stopping, 1);
	pthread_mutex_lock(&vm->pause_lock);
	pthread_cond_broadcast(&vm->resumed);
	pthread_mutex_unlock(&vm->pause_lock);
	for (unsigned i = 0; i < vm->cfg->cpus; i++) {
		struct vcpu *c = &vm->vcpus[i];
		if (!c->started)
			continue;
		c->run->immediate_exit = 1;
		pthread_kill(c->thread, SIG_KICK);
	}
	for (unsigned i = 0; i < vm->cfg->cpus; i++) {
		if (vm->vcpus[i].started) {
			pthread_join(vm->vcpus[i].thread, NULL);
			vm->vcpus[i].started = false;
		}
	}
}

/* main loop */

static void drain(int fd)
{
	uint64_t v;
	if (read(fd, &v, sizeof(v)) < 0) {
		/* EAGAIN: already drained */
	}
}

static void vm_input_cb(void *opaque, uint32_t events);

/* Move console input into the UART (or the virtio console) while it has room;
 * pause input when full. */
static void vm_pump_input(struct vm *vm)
{
	struct console *con = vm->con;
	uint8_t buf[300];
	size_t n;

	if (con->in_fd < 0)
		return;
	/* with --console virtio, input goes to hvc0 once its driver is up */
	bool vcon = vm->vcon && virtio_console_ready(vm->vcon);
	size_t room = vcon ? virtio_console_input_room(vm->vcon) : uart_input_room(vm->uart);
	if (room > 256)
		room = 256;
	if (room && vm->input_on) {
		int in = con->in_fd;
		if (console_read(con, buf, room, &n) == CONSOLE_QUIT) {
			log_info("quit requested on the console");
			vm_request_exit(vm, VM_EXIT_STOPPED);
			return;
		}
		if (n && vcon)
			virtio_console_input(vm->vcon, buf, n);
		else if (n)
			uart_input(vm->uart, buf, n);
		if (con->in_fd < 0) { /* EOF: the socket client or stdin went away */
			evloop_del(vm->loop, in);
			vm->input_on = false;
			return;
		}
	}
	room = vcon ? virtio_console_input_room(vm->vcon) : uart_input_room(vm->uart);
	if (!room && vm->input_on) {
		evloop_del(vm->loop, con->in_fd);
		vm->input_on = false;
	} else if (room && !vm->input_on) {
		vm->input_on = evloop_add(vm->loop, con->in_fd, EPOLLIN, vm_input_cb, vm) == 0;
	}
}

static void vm_input_cb(void *opaque, uint32_t events)
{
	(void)events;
	vm_pump_input(opaque);
}

static void vm_room_ev(void *opaque, uint32_t events)
{
	struct vm *vm = opaque;
	(void)events;
	drain(vm->room_fd);
	/* only a paused input needs this: reading a blocking stdin that has
	 * nothing to read would stall the loop (the virtio console also calls
	 * when its driver comes or goes, whatever the input's state) */
	if (!vm->input_on)
		vm_pump_input(vm);
}

static void vm_exit_ev(void *opaque, uint32_t events)
{
	struct vm *vm = opaque;
	(void)events;
	drain(vm->event_fd);
}

static void vm_signal_ev(void *opaque, uint32_t events)
{
	struct vm *vm = opaque;
	struct signalfd_siginfo si;
	(void)events;
	if (read(vm->signal_fd, &si, sizeof(si)) == sizeof(si)) {
		uint16_t cols, rows;
		if (si.ssi_signo == SIGWINCH) { /* the terminal was resized */
			if (vm->vcon && vm->con->tty &&
			    virtio_console_term_size(STDIN_FILENO, &cols, &rows) == 0)
				virtio_console_resize(vm->vcon, cols, rows);
			return;
		}
		if (si.ssi_signo == SIGUSR2) { /* each vCPU logs where it is */
			if (vm_is_paused(vm)) {
				log_warn("SIGUSR2: the VM is paused; its vCPUs are parked");
				return;
			}
			log_warn("SIGUSR2: the vCPUs' state follows");
			for (unsigned i = 0; i < vm->cfg->cpus; i++) {
				struct vcpu *c = &vm->vcpus[i];
				if (!c->started)
					continue;
				atomic_store(&c->dump, true);
				pthread_kill(c->thread, SIG_KICK);
			}
			return;
		}
		if (vm_migrate_postcopy_pushing(vm)) {
			/* stopping now would kill the guest on the destination */
			if (!vm->stop_deferred++) {
				log_warn("%s: post-copy is sending the guest's last pages to the destination; "
				         "this process exits when they are there (the same signal again "
				         "exits now, and the guest dies)", strsignal((int)si.ssi_signo));
				return;
			}
			log_error("stopping on %s during post-copy: the guest on the destination cannot go on",
			          strsignal((int)si.ssi_signo));
			vm_request_exit(vm, VM_EXIT_ERROR);
			return;
		}
		log_info("stopping on %s", strsignal((int)si.ssi_signo));
		vm_request_exit(vm, VM_EXIT_STOPPED);
	}
}

static void vm_listen_ev(void *opaque, uint32_t events)
{
	struct vm *vm = opaque;
	(void)events;
	bool had_client = vm->con->in_fd >= 0;
	console_accept(vm->con); /* refuses a second client */
	if (!had_client && vm->con->in_fd >= 0)
		vm->input_on = evloop_add(vm->loop, vm->con->in_fd, EPOLLIN, vm_input_cb, vm) == 0;
}

int vm_pause(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	if (vm->paused) {
		pthread_mutex_unlock(&vm->pause_lock);
		return -EALREADY;
	}
	vm->paused = true;
	for (unsigned i = 0; i < vm->cfg->cpus; i++) {
		struct vcpu *c = &vm->vcpus[i];
		if (!c->started)
			continue;
		c->run->immediate_exit = 1;
		pthread_kill(c->thread, SIG_KICK);
	}
	unsigned running = 0;
	for (unsigned i = 0; i < vm->cfg->cpus; i++)
		running += vm->vcpus[i].started;
	while (vm->nr_parked < running && !atomic_load(&vm->stopping))
		pthread_cond_wait(&vm->parked, &vm->pause_lock);
	pthread_mutex_unlock(&vm->pause_lock);
	/* freeze the guest's clock: on resume it goes on from here, no jump */
	int rc = vm_clock_read(vm, &vm->clock);
	if (rc < 0)
		log_debug("KVM_GET_CLOCK: %s", strerror(-rc));
	return 0;
}

int vm_clock_read(struct vm *vm, struct kvm_clock_data *clk)
{
	memset(clk, 0, sizeof(*clk));
	if (ioctl(vm->kvm.vm_fd, KVM_GET_CLOCK, clk) < 0)
		return -errno;
	if (clk->flags & KVM_CLOCK_TSC_STABLE)
		return 0; /* KVM's clock is the one the guest reads */
	for (unsigned i = 0; i < vm->cfg->cpus; i++) {
		uint64_t gpa, tsc, ns;
		uint8_t rec[32];
		if (vm->vcpus[i].fd < 0 || cpu_pvclock_msr(vm->vcpus[i].fd, &gpa, &tsc) || !gpa ||
		    mem_read(&vm->mem, gpa, rec, sizeof(rec)))
			continue;
		ns = cpu_pvclock_ns(rec, tsc);
		if (!ns)
			continue;
		bool ahead = ns > clk->clock;
		log_debug("vCPU %u's kvmclock is %.3f ms %s KVM's (no stable TSC)%s", i,
		          (double)(ahead ? ns - clk->clock : clk->clock - ns) / 1e6,
		          ahead ? "ahead of" : "behind", ahead ? ": the guest's time is the one kept" : "");
		if (ahead)
			clk->clock = ns;
	}
	return 0;
}

int vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	if (!vm->paused) {
		pthread_mutex_unlock(&vm->pause_lock);
		return -EALREADY;
	}
	struct kvm_clock_data clk = { .clock = vm->clock.clock };
	if (ioctl(vm->kvm.vm_fd, KVM_SET_CLOCK, &clk) < 0)
		log_debug("KVM_SET_CLOCK: %s", strerror(errno));
	vm->paused = false;
	pthread_cond_broadcast(&vm->resumed);
	pthread_mutex_unlock(&vm->pause_lock);
	return 0;
}

bool vm_is_paused(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	bool p = vm->paused;
	pthread_mutex_unlock(&vm->pause_lock);
	return p;
}

void vm_power_button(struct vm *vm)
{
	acpi_pm_power_button(vm->pm);
}

void vm_request_stop(struct vm *vm)
{
	vm_request_exit(vm, VM_EXIT_STOPPED);
}

void vm_request_migrated(struct vm *vm)
{
	vm_request_exit(vm, VM_EXIT_MIGRATED);
}

void vm_request_error(struct vm *vm)
{
	vm_request_exit(vm, VM_EXIT_ERROR);
}

/* Prometheus text: exits by reason and vCPU time per vCPU, uptime, state. */
void vm_metrics(struct vm *vm, struct sbuf *out)
{
	char line[256];
	int n;

#define EMIT(...)                                                                            \
	do {                                                                                 \
		n = snprintf(line, sizeof(line), __VA_ARGS__);                               \
		sbuf_put(out, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1); \
	} while (0)
	EMIT("# HELP cvisor_vcpu_exits_total VM exits handled by the VMM, by vCPU and reason.\n");
	EMIT("# TYPE cvisor_vcpu_exits_total counter\n");
	for (unsigned i = 0; i < vm->cfg->cpus; i++) {
		for (int s = 0; s < VCPU_NR_STATS; s++)
			EMIT("cvisor_vcpu_exits_total{vcpu=\"%u\",reason=\"%s\"} %llu\n", i,
			     vcpu_stat_names[s], (unsigned long long)atomic_load(&vm->vcpus[i].exits[s]));
	}
	EMIT("# HELP cvisor_vcpu_seconds_total CPU time used by each vCPU thread.\n");
	EMIT("# TYPE cvisor_vcpu_seconds_total counter\n");
	for (unsigned i = 0; i < vm->cfg->cpus; i++) {
		clockid_t cid;
		struct timespec ts = { 0 };
		if (vm->vcpus[i].started && pthread_getcpuclockid(vm->vcpus[i].thread, &cid) == 0)
			clock_gettime(cid, &ts);
		EMIT("cvisor_vcpu_seconds_total{vcpu=\"%u\"} %.6f\n", i,
		     (double)ts.tv_sec + ts.tv_nsec / 1e9);
	}
	EMIT("# HELP cvisor_vm_uptime_seconds Time since the VM started.\n");
	EMIT("# TYPE cvisor_vm_uptime_seconds gauge\n");
	EMIT("cvisor_vm_uptime_seconds %.3f\n", (ratelimit_now_ns() - vm->start_ns) / 1e9);
	EMIT("# HELP cvisor_vm_paused Whether the VM is paused.\n");
	EMIT("# TYPE cvisor_vm_paused gauge\n");
	EMIT("cvisor_vm_paused %d\n", vm_is_paused(vm) ? 1 : 0);
	EMIT("# HELP cvisor_unhandled_io_total Guest accesses to ports/MMIO no device handles.\n");
	EMIT("# TYPE cvisor_unhandled_io_total counter\n");
	EMIT("cvisor_unhandled_io_total{bus=\"pio\"} %llu\n", (unsigned long long)vm->pio.unknown_total);
	EMIT("cvisor_unhandled_io_total{bus=\"mmio\"} %llu\n", (unsigned long long)vm->mmio.unknown_total);
#undef EMIT
}

void vm_announce(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_nets; i++) {
		int rc = virtio_net_announce(vm->nets[i]);
		if (rc < 0)
			log_warn("NIC %u: cannot announce the guest's MAC: %s", i, strerror(-rc));
	}
}

void vm_unlock_disks(struct vm *vm)
{
	for (unsigned i = 0; i < CONFIG_MAX_DISKS; i++) {
		int rc = vm->disks[i] ? virtio_blk_set_locked(vm->disks[i], false) : 0;
		if (rc < 0 && rc != -ENOTSUP)
			log_warn("disk %u: cannot let go of the image lock: %s", i, strerror(-rc));
	}
}

const struct guest_mem *vm_memory(struct vm *vm)
{
	return &vm->mem;
}

struct evloop *vm_loop(struct vm *vm)
{
	return vm->loop;
}

uint64_t vm_uptime_ns(struct vm *vm)
{
	return ratelimit_now_ns() - vm->start_ns;
}

enum vm_exit vm_run(struct vm *vm)
{
	struct sigaction sa = { .sa_handler = kick_handler };
	sigset_t stop;

	sigaction(SIG_KICK, &sa, NULL);
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGHUP);
	sigaddset(&stop, SIGWINCH); /* not a stop: resizes the virtio console */
	sigaddset(&stop, SIGUSR2);  /* not a stop: the vCPUs log their state */
	sigaddset(&stop, SIG_KICK);
	pthread_sigmask(SIG_BLOCK, &stop, NULL); /* vCPU threads inherit this mask */
	sigdelset(&stop, SIG_KICK);
	vm->signal_fd = signalfd(-1, &stop, SFD_CLOEXEC | SFD_NONBLOCK);
	if (vm->signal_fd < 0 || evloop_add(vm->loop, vm->signal_fd, EPOLLIN, vm_signal_ev, vm) ||
	    evloop_add(vm->loop, vm->event_fd, EPOLLIN, vm_exit_ev, vm) ||
	    evloop_add(vm->loop, vm->room_fd, EPOLLIN, vm_room_ev, vm)) {
		log_error("cannot set up the event loop: %s", strerror(errno));
		return VM_EXIT_ERROR;
	}
	if (vm->con->listen_fd >= 0)
		evloop_add(vm->loop, vm->con->listen_fd, EPOLLIN, vm_listen_ev, vm);
	if (vm->con->in_fd >= 0) {
		/* /dev/null or a regular file cannot be polled: no console input then */
		vm->input_on = evloop_add(vm->loop, vm->con->in_fd, EPOLLIN, vm_input_cb, vm) == 0;
		if (!vm->input_on)
			vm->con->in_fd = -1;
	}

	vm->start_ns = ratelimit_now_ns();
	for (unsigned i = 0; i < vm->cfg->cpus; i++) {
		struct vcpu *c = &vm->vcpus[i];
		if (pthread_create(&c->thread, NULL, vcpu_thread, c) != 0) {
			log_error("cannot start vCPU %u thread", i);
			vm_request_exit(vm, VM_EXIT_ERROR);
			break;
		}
		c->started = true;
	}

	while (atomic_load(&vm->exit_reason) == VM_EXIT_NONE) {
		int rc = evloop_run_once(vm->loop, -1);
		if (rc < 0) {
			log_error("event loop: %s", strerror(-rc));
			vm_request_exit(vm, VM_EXIT_ERROR);
		}
	}
	/* the migration thread kicks vCPU threads: it ends before they do */
	vm_migrate_destroy(vm);
	vm_stop_vcpus(vm);
	/* the console outlives this VM: its fds must not stay in this VM's loop */
	if (vm->con->in_fd >= 0 && vm->input_on)
		evloop_del(vm->loop, vm->con->in_fd);
	return (enum vm_exit)atomic_load(&vm->exit_reason);
}
