/* MSI-X emulation. Table entry: le32 addr_lo, le32 addr_hi, le32 data,
 * le32 control (bit 0: masked). Message control in the capability: bits
 * 10:0 table size - 1, bit 14 function mask, bit 15 enable. */
#include "pci/msix.h"

#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util/log.h"

#define CTRL_ENABLE 0x8000
#define CTRL_MASKALL 0x4000

static uint16_t msix_ctrl(const struct msix *m)
{
	return pci_get16(m->pdev->cfg + m->cap + 2);
}

static bool vec_masked(const struct msix *m, uint16_t v)
{
	return (msix_ctrl(m) & CTRL_MASKALL) || (pci_get32(m->table + 16 * v + 12) & 1);
}

static bool vec_on(const struct msix *m, uint16_t v)
{
	return (msix_ctrl(m) & CTRL_ENABLE) && !vec_masked(m, v);
}

/* Collect what was signalled on a vector's eventfd while its irqfd was off
 * (vhost writes the eventfd itself): pending if MSI-X is on, else dropped. */
static void vec_collect(struct msix *m, uint16_t v)
{
	uint64_t n = 0;

	if (m->fd[v] < 0 || (m->live & (1ULL << v)))
		return;
	if (read(m->fd[v], &n, sizeof(n)) == sizeof(n) && n && (msix_ctrl(m) & CTRL_ENABLE))
		m->pending |= 1ULL << v;
}

/* Deliver vector v once: through its irqfd, or, when KVM would not attach
 * that, with KVM_SIGNAL_MSI to the entry's address and data. lock held. */
static void vec_fire(struct msix *m, uint16_t v)
{
	const uint8_t *e = m->table + 16 * v;
	uint64_t one = 1;

	if (m->live & (1ULL << v)) {
		if (write(m->fd[v], &one, sizeof(one)) < 0)
			log_debug("irqfd write failed");
	} else if (kvm_vm_signal_msi(m->kvm, pci_get32(e) | (uint64_t)pci_get32(e + 4) << 32,
	                             pci_get32(e + 8)) < 0) {
		log_debug("KVM_SIGNAL_MSI for vector %u of %s failed", v, m->pdev->name);
	}
}

/* Bring the vector's route and irqfd in line with its entry, then deliver it
 * if pending. The irqfd is attached only while the vector is enabled and
 * unmasked, so a masked vector's eventfd only counts (vec_collect). lock held. */
static void vec_update(struct msix *m, uint16_t v)
{
	const uint8_t *e = m->table + 16 * v;
	uint64_t addr = pci_get32(e) | (uint64_t)pci_get32(e + 4) << 32, bit = 1ULL << v;

	if (!vec_on(m, v)) {
		if (m->live & bit) {
			if (kvm_vm_irqfd(m->kvm, m->fd[v], (uint32_t)m->gsi[v], false) < 0)
				log_warn("cannot detach MSI-X vector %u of %s", v, m->pdev->name);
			m->live &= ~bit;
		}
		return;
	}
	if (kvm_vm_msi_route_set(m->kvm, (uint32_t)m->gsi[v], addr, pci_get32(e + 8)) < 0)
		log_debug("cannot route MSI-X vector %u of %s", v, m->pdev->name);
	if (!(m->live & bit)) {
		vec_collect(m, v);
		if (kvm_vm_irqfd(m->kvm, m->fd[v], (uint32_t)m->gsi[v], true) < 0)
			log_warn("cannot attach MSI-X vector %u of %s: its interrupts go by "
			         "KVM_SIGNAL_MSI (a vhost backend's signals wait for the next unmask)",
			         v, m->pdev->name);
		else
			m->live |= bit;
	}
	if (m->pending & bit) {
		m->pending &= ~bit;
		vec_fire(m, v);
	}
}

int msix_init(struct msix *m, struct kvm_vm *k, struct pci_dev *pdev, uint16_t nvec, int bir,
              uint32_t table_off, uint32_t pba_off)
{
	memset(m, 0, sizeof(*m));
	m->kvm = k;
	m->pdev = pdev;
	m->nvec = nvec;
	pthread_mutex_init(&m->lock, NULL);
	for (int v = 0; v < MSIX_MAX_VECTORS; v++)
		m->fd[v] = -1;
	if (nvec == 0 || nvec > MSIX_MAX_VECTORS)
		return -EINVAL;
	m->cap = pci_dev_add_cap(pdev, 0x11, 12);
	if (!m->cap)
		return -ENOSPC;
	pci_set16(pdev->cfg + m->cap + 2, (uint16_t)(nvec - 1));
	pci_set16(pdev->wmask + m->cap + 2, CTRL_ENABLE | CTRL_MASKALL);
	pci_set32(pdev->cfg + m->cap + 4, table_off | (uint32_t)bir);
	pci_set32(pdev->cfg + m->cap + 8, pba_off | (uint32_t)bir);
	for (uint16_t v = 0; v < nvec; v++) {
		pci_set32(m->table + 16 * v + 12, 1); /* vectors start masked */
		m->fd[v] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		m->gsi[v] = kvm_vm_msi_route_alloc(k);
		if (m->fd[v] < 0 || m->gsi[v] < 0)
			return m->fd[v] < 0 ? -errno : m->gsi[v];
	}
	return 0;
}

void msix_destroy(struct msix *m)
{
	for (int v = 0; v < MSIX_MAX_VECTORS; v++) {
		if (m->fd[v] < 0)
			continue;
		if ((m->live & (1ULL << v)) && m->kvm)
			kvm_vm_irqfd(m->kvm, m->fd[v], (uint32_t)m->gsi[v], false);
		close(m->fd[v]);
		m->fd[v] = -1;
	}
	m->live = 0;
}

void msix_table_io(struct msix *m, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	uint64_t size = 16ULL * m->nvec;

	/* dword or qword accesses, naturally aligned, as the spec requires */
	if ((len != 4 && len != 8) || (off & (len - 1)) || off >= size || len > size - off) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	pthread_mutex_lock(&m->lock);
	if (!is_write) {
		memcpy(data, m->table + off, len);
	} else {
		uint16_t v = (uint16_t)(off / 16);
		memcpy(m->table + off, data, len);
		vec_update(m, v);
	}
	pthread_mutex_unlock(&m->lock);
}

void msix_pba_io(struct msix *m, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	if (is_write)
		return; /* read-only */
	pthread_mutex_lock(&m->lock);
	for (uint16_t v = 0; v < m->nvec; v++)
		vec_collect(m, v);
	for (uint32_t i = 0; i < len; i++)
		data[i] = off + i < 8 ? (uint8_t)(m->pending >> (8 * (off + i))) : 0;
	pthread_mutex_unlock(&m->lock);
}

void msix_cfg_written(struct msix *m, uint32_t off, uint32_t len)
{
	if (off >= m->cap + 4u || off + len <= m->cap + 2u)
		return;
	pthread_mutex_lock(&m->lock);
	for (uint16_t v = 0; v < m->nvec; v++)
		vec_update(m, v);
	pthread_mutex_unlock(&m->lock);
}

void msix_notify(struct msix *m, uint16_t v)
{
	if (v >= m->nvec)
		return;
	pthread_mutex_lock(&m->lock);
	if (!(msix_ctrl(m) & CTRL_ENABLE)) {
		/* MSI-X off: nothing to deliver to (no INTx) */
	} else if (vec_masked(m, v)) {
		m->pending |= 1ULL << v;
	} else {
		vec_fire(m, v);
	}
	pthread_mutex_unlock(&m->lock);
}

void msix_save(struct msix *m, struct sbuf *out)
{
	pthread_mutex_lock(&m->lock);
	for (uint16_t v = 0; v < m->nvec; v++)
		vec_collect(m, v);
	sbuf_put_u32(out, m->nvec);
	sbuf_put(out, m->table, 16ULL * m->nvec);
	sbuf_put_u64(out, m->pending);
	sbuf_put_u32(out, msix_ctrl(m));
	pthread_mutex_unlock(&m->lock);
}

int msix_load(struct msix *m, struct sbuf *in)
{
	uint8_t table[sizeof(m->table)];
	uint32_t n = sbuf_get_u32(in);

	if (in->err || n != m->nvec)
		return -EINVAL;
	sbuf_get(in, table, 16ULL * n);
	uint64_t pending = sbuf_get_u64(in);
	uint32_t ctrl = sbuf_get_u32(in);
	if (in->err || (n < 64 && (pending >> n)) ||
	    (ctrl & ~(uint32_t)(CTRL_ENABLE | CTRL_MASKALL | 0x7ff)))
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	memcpy(m->table, table, 16ULL * n);
	m->pending = pending;
	pci_set16(m->pdev->cfg + m->cap + 2,
	          (uint16_t)((ctrl & (CTRL_ENABLE | CTRL_MASKALL)) | (m->nvec - 1u)));
	for (uint16_t v = 0; v < m->nvec; v++)
		vec_update(m, v);
	pthread_mutex_unlock(&m->lock);
	return 0;
}
