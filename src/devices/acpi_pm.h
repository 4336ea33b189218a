/* ACPI fixed hardware: PM1 event block (status/enable, with the fixed power
 * button), PM1 control block (SCI_EN, S5 soft-off), and the FADT reset
 * register. The SCI is a level-triggered interrupt on ACPI_PM_SCI_GSI. */
#ifndef CVISOR_DEVICES_ACPI_PM_H
#define CVISOR_DEVICES_ACPI_PM_H

#include <stdint.h>

#include "devices/device.h"

#define ACPI_PM_BASE 0x600
#define ACPI_PM_LEN 0x10
#define ACPI_PM1_EVT (ACPI_PM_BASE + 0) /* STS at +0, EN at +2 */
#define ACPI_PM1_EVT_LEN 4
#define ACPI_PM1_CNT (ACPI_PM_BASE + 4)
#define ACPI_PM1_CNT_LEN 2
#define ACPI_RESET_PORT (ACPI_PM_BASE + 8)
#define ACPI_RESET_VALUE 0x01
#define ACPI_PM_SCI_GSI 9
#define ACPI_S5_TYPE 5 /* SLP_TYP the DSDT's _S5 package announces */

struct acpi_pm;

struct acpi_pm_config {
	irq_fn irq;
	void *irq_opaque;
	void (*poweroff)(void *opaque); /* guest entered S5 */
	void (*reset)(void *opaque);    /* guest wrote the reset register */
	void *opaque;
};

/* Create in the power-on state. */
struct acpi_pm *acpi_pm_create(const struct acpi_pm_config *cfg);
/* Free it. */
void acpi_pm_destroy(struct acpi_pm *pm);
/* Press the power button: sets PWRBTN_STS and raises the SCI if enabled. */
void acpi_pm_power_button(struct acpi_pm *pm);

extern const struct device_ops acpi_pm_ops;

#endif
