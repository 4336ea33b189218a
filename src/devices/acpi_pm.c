/* ACPI PM1 registers (ACPI spec, "Fixed Hardware Programming Model").
 * PM1_STS bits are write-one-to-clear; the SCI is asserted while any status
 * bit is set whose enable bit is set. SCI_EN reads as 1: there is no SMI
 * handshake (FADT SMI_CMD is 0, so the OS treats ACPI mode as always on). */
#include "devices/acpi_pm.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define PM1_TMR_STS (1u << 0)
#define PM1_GBL (1u << 5)
#define PM1_PWRBTN (1u << 8)
#define PM1_SLPBTN (1u << 9)
#define PM1_RTC (1u << 10)
#define PM1_WAK_STS (1u << 15)
/* the fixed events ACPICA enables and reads back; only the power button fires */
#define PM1_STS_MASK (PM1_TMR_STS | PM1_GBL | PM1_PWRBTN | PM1_SLPBTN | PM1_RTC | PM1_WAK_STS)
#define PM1_EN_MASK (PM1_TMR_STS | PM1_GBL | PM1_PWRBTN | PM1_SLPBTN | PM1_RTC)
#define PM1_SCI_EN (1u << 0)
#define PM1_SLP_TYP_SHIFT 10
#define PM1_SLP_EN (1u << 13)

struct acpi_pm {
	pthread_mutex_t lock;
	struct acpi_pm_config cfg;
	uint16_t sts, en, cnt;
	int sci_level;
};

/* called with the lock held */
static void pm_update_sci(struct acpi_pm *pm)
{
	int level = (pm->sts & pm->en) != 0;
	if (level != pm->sci_level) {
		pm->sci_level = level;
		if (pm->cfg.irq)
			pm->cfg.irq(pm->cfg.irq_opaque, ACPI_PM_SCI_GSI, level);
	}
}

static void pm_reset(void *dev)
{
	struct acpi_pm *pm = dev;
	pthread_mutex_lock(&pm->lock);
	pm->sts = pm->en = 0;
	pm->cnt = PM1_SCI_EN;
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

struct acpi_pm *acpi_pm_create(const struct acpi_pm_config *cfg)
{
	struct acpi_pm *pm = calloc(1, sizeof(*pm));
	if (!pm)
		return NULL;
	pthread_mutex_init(&pm->lock, NULL);
	pm->cfg = *cfg;
	pm->cnt = PM1_SCI_EN;
	return pm;
}

void acpi_pm_destroy(struct acpi_pm *pm)
{
	if (!pm)
		return;
	pthread_mutex_destroy(&pm->lock);
	free(pm);
}

void acpi_pm_power_button(struct acpi_pm *pm)
{
	pthread_mutex_lock(&pm->lock);
	pm->sts |= PM1_PWRBTN;
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

/* Registers are 16 bits wide at offsets 0 (STS), 2 (EN), 4 (CNT); byte
 * accesses to either half work, as the ACPI spec allows narrower access. */
static uint16_t *pm_reg(struct acpi_pm *pm, uint64_t off)
{
	switch (off & ~1ULL) {
	case 0: return &pm->sts;
	case 2: return &pm->en;
	case 4: return &pm->cnt;
	default: return NULL;
	}
}

static void pm_io(void *dev, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct acpi_pm *pm = dev;
	enum { NONE, OFF, RESET } action = NONE;

	pthread_mutex_lock(&pm->lock);
	for (uint32_t i = 0; i < len; i++) {
		uint64_t o = off + i;
		uint16_t *reg = pm_reg(pm, o);
		unsigned sh = (o & 1) * 8;

		if (!is_write) {
			data[i] = reg ? (uint8_t)(*reg >> sh) : (o == ACPI_RESET_PORT - ACPI_PM_BASE ? 0 : 0xff);
			continue;
		}
		uint16_t v = (uint16_t)(data[i] << sh);
		if (o == ACPI_RESET_PORT - ACPI_PM_BASE) {
			if (data[i] == ACPI_RESET_VALUE)
				action = RESET;
		} else if (reg == &pm->sts) {
			pm->sts &= ~(v & PM1_STS_MASK);
		} else if (reg == &pm->en) {
			pm->en = (pm->en & ~(0xff << sh)) | (v & PM1_EN_MASK);
		} else if (reg == &pm->cnt) {
			/* SLP_EN is write-only; SCI_EN stays set */
			pm->cnt = ((pm->cnt & ~(0xff << sh)) | v) | PM1_SCI_EN;
			if (pm->cnt & PM1_SLP_EN) {
				unsigned typ = (pm->cnt >> PM1_SLP_TYP_SHIFT) & 7;
				pm->cnt &= ~PM1_SLP_EN;
				if (typ == ACPI_S5_TYPE)
					action = OFF;
			}
		}
	}
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);

	if (action == OFF && pm->cfg.poweroff)
		pm->cfg.poweroff(pm->cfg.opaque);
	else if (action == RESET && pm->cfg.reset)
		pm->cfg.reset(pm->cfg.opaque);
}

static void pm_save(void *dev, struct sbuf *out)
{
	struct acpi_pm *pm = dev;
	pthread_mutex_lock(&pm->lock);
	sbuf_put_u32(out, pm->sts);
	sbuf_put_u32(out, pm->en);
	sbuf_put_u32(out, pm->cnt);
	pthread_mutex_unlock(&pm->lock);
}

static int pm_load(void *dev, struct sbuf *in)
{
	struct acpi_pm *pm = dev;
	uint32_t sts = sbuf_get_u32(in), en = sbuf_get_u32(in), cnt = sbuf_get_u32(in);

	if (in->err || sts > 0xffff || en > 0xffff || cnt > 0xffff)
		return -EINVAL;
	pthread_mutex_lock(&pm->lock);
	pm->sts = sts & PM1_STS_MASK;
	pm->en = en & PM1_EN_MASK;
	pm->cnt = (uint16_t)(cnt | PM1_SCI_EN) & ~PM1_SLP_EN;
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
	return 0;
}

const struct device_ops acpi_pm_ops = {
	.name = "acpi-pm",
	.io = pm_io,
	.reset = pm_reset,
	.save = pm_save,
	.load = pm_load,
};
