/* KVM backend (Documentation/virt/kvm/api.rst). */
#include "hv/kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define TSS_ADDR 0xfffbd000ULL
#define IDENTITY_MAP_ADDR 0xfffbc000ULL

bool kvm_host_is_pvm(void)
{
	char line[4096];
	bool hw = false;
	FILE *f;

	if (access("/sys/module/kvm_pvm", F_OK) != 0)
		return false;
	f = fopen("/proc/cpuinfo", "r");
	if (!f)
		return true;
	while (!hw && fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "flags", 5))
			hw = strstr(line, " vmx") || strstr(line, " svm");
	}
	fclose(f);
	return !hw;
}

static int get_cpuid(struct kvm_vm *k)
{
	k->cpuid = calloc(1, sizeof(*k->cpuid));
	if (!k->cpuid)
		return -ENOMEM;
	k->cpuid->hdr.nent = CPU_MAX_CPUID;
	if (ioctl(k->sys_fd, KVM_GET_SUPPORTED_CPUID, k->cpuid) < 0)
		return -errno;
	return 0;
}

int kvm_vm_open(struct kvm_vm *k, char *err, size_t errlen)
{
	const char *dev = getenv("CVISOR_KVM_DEVICE") ? getenv("CVISOR_KVM_DEVICE") : KVM_DEVICE;
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	int rc;

	memset(k, 0, sizeof(*k));
	k->vm_fd = -1;
	k->next_gsi = KVM_IRQCHIP_PINS;
	pthread_mutex_init(&k->route_lock, NULL);
	k->sys_fd = open(dev, O_RDWR | O_CLOEXEC);
	if (k->sys_fd < 0) {
		rc = -errno;
		if (rc == -ENOENT)
			snprintf(err, errlen, "%s does not exist: load the kvm module (kvm-intel or "
			         "kvm-amd) on a host with VT-x/AMD-V", dev);
		else if (rc == -EACCES || rc == -EPERM)
			snprintf(err, errlen, "%s: permission denied (run as root or join the kvm group)",
			         dev);
		else
			snprintf(err, errlen, "cannot open %s: %s", dev, strerror(-rc));
		return rc;
	}
	if (ioctl(k->sys_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		snprintf(err, errlen, "%s speaks an unsupported KVM API version", dev);
		rc = -ENOTSUP;
		goto fail;
	}
	static const struct {
		int cap;
		const char *name;
	} caps[] = { { KVM_CAP_IRQCHIP, "IRQCHIP" }, { KVM_CAP_USER_MEMORY, "USER_MEMORY" },
		     { KVM_CAP_SET_TSS_ADDR, "SET_TSS_ADDR" }, { KVM_CAP_PIT2, "PIT2" },
		     { KVM_CAP_EXT_CPUID, "EXT_CPUID" }, { KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT" } };
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		if (ioctl(k->sys_fd, KVM_CHECK_EXTENSION, caps[i].cap) <= 0) {
			snprintf(err, errlen, "this host's KVM lacks KVM_CAP_%s", caps[i].name);
			rc = -ENOTSUP;
			goto fail;
		}
	}
	int max = ioctl(k->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (max <= 0)
		max = ioctl(k->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	k->max_vcpus = max > 0 ? (unsigned)max : 1;
	k->tsc_deadline = ioctl(k->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0;
	k->run_size = ioctl(k->sys_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (k->run_size <= 0 || (rc = get_cpuid(k)) < 0) {
		snprintf(err, errlen, "cannot query %s: %s", dev, strerror(errno));
		rc = -errno;
		goto fail;
	}
	k->vm_fd = ioctl(k->sys_fd, KVM_CREATE_VM, 0);
	if (k->vm_fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "KVM_CREATE_VM failed: %s", strerror(errno));
		goto fail;
	}
	if (ioctl(k->vm_fd, KVM_SET_TSS_ADDR, TSS_ADDR) < 0 ||
	    ioctl(k->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &(uint64_t){ IDENTITY_MAP_ADDR }) < 0 ||
	    ioctl(k->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0 || ioctl(k->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot set up the VM's interrupt controllers: %s",
		         strerror(errno));
		goto fail;
	}
	return 0;
fail:
	kvm_vm_close(k);
	return rc;
}

void kvm_vm_close(struct kvm_vm *k)
{
	if (k->vm_fd >= 0)
		close(k->vm_fd);
	if (k->sys_fd >= 0)
		close(k->sys_fd);
	free(k->cpuid);
	k->cpuid = NULL;
	free(k->routes);
	k->routes = NULL;
	k->nr_routes = 0;
	k->vm_fd = k->sys_fd = -1;
}

int kvm_vm_set_memory(struct kvm_vm *k, uint32_t slot, uint64_t gpa, uint64_t size, void *hva)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot, .guest_phys_addr = gpa, .memory_size = size,
		.userspace_addr = (uintptr_t)hva,
	};
	return ioctl(k->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0 ? -errno : 0;
}

int kvm_vm_irq_line(struct kvm_vm *k, uint32_t gsi, int level)
{
	struct kvm_irq_level l = { .irq = gsi, .level = (uint32_t)level };
	return ioctl(k->vm_fd, KVM_IRQ_LINE, &l) < 0 ? -errno : 0;
}

int kvm_vcpu_create(struct kvm_vm *k, unsigned id, int *fd, struct kvm_run **run)
{
	int f = ioctl(k->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
	if (f < 0)
		return -errno;
	void *p = mmap(NULL, (size_t)k->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
	if (p == MAP_FAILED) {
		int rc = -errno;
		close(f);
		return rc;
	}
	*fd = f;
	*run = p;
	return 0;
}

int kvm_vm_ioeventfd(struct kvm_vm *k, uint64_t addr, uint32_t len, int fd, bool assign)
{
	struct kvm_ioeventfd io = { .addr = addr, .len = len, .fd = fd,
		                    .flags = assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN };
	return ioctl(k->vm_fd, KVM_IOEVENTFD, &io) < 0 ? -errno : 0;
}

int kvm_vm_irqfd(struct kvm_vm *k, int fd, uint32_t gsi, bool assign)
{
	struct kvm_irqfd f = { .fd = (uint32_t)fd, .gsi = gsi,
		               .flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN };
	return ioctl(k->vm_fd, KVM_IRQFD, &f) < 0 ? -errno : 0;
}

int kvm_vm_signal_msi(struct kvm_vm *k, uint64_t addr, uint32_t data)
{
	struct kvm_msi msi = { .address_lo = (uint32_t)addr, .address_hi = (uint32_t)(addr >> 32),
		               .data = data };
	int rc = ioctl(k->vm_fd, KVM_SIGNAL_MSI, &msi);
	return rc < 0 ? -errno : rc;
}

/* Rebuild the whole table: KVM_SET_GSI_ROUTING replaces the default routes too,
 * so KVM's defaults, the PIC (GSI 0-15) and IOAPIC (0-23) entries go first. */
static int push_routes(struct kvm_vm *k)
{
	size_t n = 16 + KVM_IRQCHIP_PINS + k->nr_routes;
	struct kvm_irq_routing *r = calloc(1, sizeof(*r) + n * sizeof(r->entries[0]));
	uint32_t i = 0;
	int rc = 0;

	if (!r)
		return -ENOMEM;
	for (uint32_t g = 0; g < 16; g++) {
		r->entries[i++] = (struct kvm_irq_routing_entry){
			.gsi = g, .type = KVM_IRQ_ROUTING_IRQCHIP,
			.u.irqchip = { .irqchip = g < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE,
			               .pin = g % 8 } };
	}
	for (uint32_t g = 0; g < KVM_IRQCHIP_PINS; g++)
		r->entries[i++] = (struct kvm_irq_routing_entry){
			.gsi = g, .type = KVM_IRQ_ROUTING_IRQCHIP,
			.u.irqchip = { .irqchip = KVM_IRQCHIP_IOAPIC, .pin = g } };
	for (uint32_t m = 0; m < k->nr_routes; m++)
		r->entries[i++] = (struct kvm_irq_routing_entry){
			.gsi = k->routes[m].gsi, .type = KVM_IRQ_ROUTING_MSI,
			.u.msi = { .address_lo = k->routes[m].addr_lo, .address_hi = k->routes[m].addr_hi,
			           .data = k->routes[m].data } };
	r->nr = i;
	if (ioctl(k->vm_fd, KVM_SET_GSI_ROUTING, r) < 0)
		rc = -errno;
	free(r);
	return rc;
}

int kvm_vm_msi_route_alloc(struct kvm_vm *k)
{
	int gsi;

	pthread_mutex_lock(&k->route_lock);
	if (k->next_gsi >= KVM_MAX_GSI) {
		gsi = -ENOSPC;
	} else {
		struct kvm_msi_route *r = realloc(k->routes, (k->nr_routes + 1) * sizeof(*r));
		if (!r) {
			gsi = -ENOMEM;
		} else {
			k->routes = r;
			gsi = (int)k->next_gsi++;
			r[k->nr_routes++] = (struct kvm_msi_route){ .gsi = (uint32_t)gsi };
		}
	}
	pthread_mutex_unlock(&k->route_lock);
	return gsi;
}

int kvm_vm_msi_route_set(struct kvm_vm *k, uint32_t gsi, uint64_t addr, uint32_t data)
{
	int rc = -ENOENT;

	pthread_mutex_lock(&k->route_lock);
	for (uint32_t i = 0; i < k->nr_routes; i++) {
		struct kvm_msi_route *r = &k->routes[i];
		if (r->gsi != gsi)
			continue;
		if (r->addr_lo == (uint32_t)addr && r->addr_hi == (uint32_t)(addr >> 32) && r->data == data) {
			rc = 0; /* unchanged: spare KVM the table swap */
			break;
		}
		r->addr_lo = (uint32_t)addr;
		r->addr_hi = (uint32_t)(addr >> 32);
		r->data = data;
		rc = push_routes(k);
		break;
	}
	pthread_mutex_unlock(&k->route_lock);
	return rc;
}

int kvm_vm_set_dirty_log(struct kvm_vm *k, uint32_t slot, uint64_t gpa, uint64_t size, void *hva,
                         bool on)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot, .flags = on ? KVM_MEM_LOG_DIRTY_PAGES : 0, .guest_phys_addr = gpa,
		.memory_size = size, .userspace_addr = (uintptr_t)hva,
	};
	return ioctl(k->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0 ? -errno : 0;
}

int kvm_vm_get_dirty_log(struct kvm_vm *k, uint32_t slot, uint64_t *bitmap)
{
	struct kvm_dirty_log d = { .slot = slot, .dirty_bitmap = bitmap };
	return ioctl(k->vm_fd, KVM_GET_DIRTY_LOG, &d) < 0 ? -errno : 0;
}
