/* Unit tests for the ACPI PM1 registers (devices/acpi_pm.c): S5 power-off,
 * reset register, fixed power button and the SCI, save/load. Accesses go
 * through acpi_pm_ops.io with offsets relative to ACPI_PM_BASE, as the bus
 * delivers them. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devices/acpi_pm.h"
#include "state/sbuf.h"

#define STS 0
#define EN 2
#define CNT 4
#define RST (ACPI_RESET_PORT - ACPI_PM_BASE)

#define PWRBTN (1u << 8)
#define SCI_EN (1u << 0)
#define SLP_EN (1u << 13)
#define SLP_TYP(t) ((uint16_t)((t) << 10))

struct calls {
	int poweroff, reset;
	int irq_calls;
	uint32_t last_gsi;
	int level; /* current SCI level as seen by the interrupt controller */
};

static struct calls calls;

static void on_irq(void *opaque, uint32_t gsi, int level)
{
	assert_ptr_equal(opaque, &calls);
	calls.irq_calls++;
	calls.last_gsi = gsi;
	calls.level = level;
}

static void on_poweroff(void *opaque)
{
	assert_ptr_equal(opaque, &calls);
	calls.poweroff++;
}

static void on_reset(void *opaque)
{
	assert_ptr_equal(opaque, &calls);
	calls.reset++;
}

static struct acpi_pm *create(void)
{
	struct acpi_pm_config cfg = { .irq = on_irq, .irq_opaque = &calls,
		                      .poweroff = on_poweroff, .reset = on_reset,
		                      .opaque = &calls };
	struct acpi_pm *pm = acpi_pm_create(&cfg);

	assert_non_null(pm);
	return pm;
}

static int setup(void **state)
{
	memset(&calls, 0, sizeof(calls));
	*state = create();
	return 0;
}

static int teardown(void **state)
{
	acpi_pm_destroy(*state);
	return 0;
}

static void wr16(struct acpi_pm *pm, uint64_t off, uint16_t v)
{
	uint8_t d[2] = { (uint8_t)v, (uint8_t)(v >> 8) };

	acpi_pm_ops.io(pm, off, d, 2, true);
}

static void wr8(struct acpi_pm *pm, uint64_t off, uint8_t v)
{
	acpi_pm_ops.io(pm, off, &v, 1, true);
}

static uint16_t rd16(struct acpi_pm *pm, uint64_t off)
{
	uint8_t d[2] = { 0x5a, 0x5a };

	acpi_pm_ops.io(pm, off, d, 2, false);
	return (uint16_t)(d[0] | d[1] << 8);
}

static uint8_t rd8(struct acpi_pm *pm, uint64_t off)
{
	uint8_t d = 0x5a;

	acpi_pm_ops.io(pm, off, &d, 1, false);
	return d;
}

static void test_power_on_state(void **state)
{
	struct acpi_pm *pm = *state;

	assert_string_equal(acpi_pm_ops.name, "acpi-pm");
	assert_int_equal(rd16(pm, STS), 0);
	assert_int_equal(rd16(pm, EN), 0);
	assert_int_equal(rd16(pm, CNT) & SCI_EN, SCI_EN); /* ACPI mode from the start */
	assert_int_equal(rd8(pm, RST), 0);
	assert_int_equal(calls.irq_calls, 0);
	assert_int_equal(calls.poweroff + calls.reset, 0);
}

static void test_s5_word_write(void **state)
{
	struct acpi_pm *pm = *state;

	/* what Linux's acpi_hw_legacy_sleep writes: SLP_TYP first, then with SLP_EN */
	wr16(pm, CNT, SLP_TYP(5) | SCI_EN);
	assert_int_equal(calls.poweroff, 0);
	wr16(pm, CNT, SLP_TYP(5) | SLP_EN | SCI_EN);
	assert_int_equal(calls.poweroff, 1);
	assert_int_equal(calls.reset, 0);
	/* SLP_EN is write-only and reads back clear; SCI_EN stays */
	uint16_t cnt = rd16(pm, CNT);
	assert_int_equal(cnt & SLP_EN, 0);
	assert_int_equal(cnt & SCI_EN, SCI_EN);
	/* without SCI_EN in the written value too */
	wr16(pm, CNT, SLP_TYP(5) | SLP_EN);
	assert_int_equal(calls.poweroff, 2);
}

static void test_s5_byte_writes(void **state)
{
	struct acpi_pm *pm = *state;
	uint16_t v = SLP_TYP(5) | SLP_EN | SCI_EN;

	/* low byte then high byte: only the second completes the request */
	wr8(pm, CNT, (uint8_t)v);
	assert_int_equal(calls.poweroff, 0);
	wr8(pm, CNT + 1, (uint8_t)(v >> 8));
	assert_int_equal(calls.poweroff, 1);
	/* high byte alone, after the type is already there */
	wr8(pm, CNT + 1, (uint8_t)(v >> 8));
	assert_int_equal(calls.poweroff, 2);
	/* a later low-byte write does not re-trigger */
	wr8(pm, CNT, SCI_EN);
	assert_int_equal(calls.poweroff, 2);
	assert_int_equal(calls.reset, 0);
}

static void test_other_sleep_types(void **state)
{
	struct acpi_pm *pm = *state;

	for (unsigned t = 0; t < 8; t++) {
		if (t == ACPI_S5_TYPE)
			continue;
		wr16(pm, CNT, SLP_TYP(t) | SLP_EN | SCI_EN);
		wr8(pm, CNT + 1, (uint8_t)((SLP_TYP(t) | SLP_EN) >> 8));
	}
	/* S5 type without SLP_EN */
	wr16(pm, CNT, SLP_TYP(5) | SCI_EN);
	wr8(pm, CNT + 1, (uint8_t)(SLP_TYP(5) >> 8));
	/* SLP_EN written into the status or enable register */
	wr16(pm, STS, SLP_TYP(5) | SLP_EN);
	wr16(pm, EN, SLP_TYP(5) | SLP_EN);
	assert_int_equal(calls.poweroff, 0);
	assert_int_equal(calls.reset, 0);
}

static void test_sci_en_reads_set(void **state)
{
	struct acpi_pm *pm = *state;

	wr16(pm, CNT, 0);
	assert_int_equal(rd16(pm, CNT) & SCI_EN, SCI_EN);
	wr8(pm, CNT, 0);
	assert_int_equal(rd8(pm, CNT) & SCI_EN, SCI_EN);
	/* other bits written read back (SLP_TYP) */
	wr16(pm, CNT, SLP_TYP(3));
	assert_int_equal(rd16(pm, CNT), SLP_TYP(3) | SCI_EN);
	assert_int_equal(rd8(pm, CNT + 1), SLP_TYP(3) >> 8);
}

static void test_reset_register(void **state)
{
	struct acpi_pm *pm = *state;

	wr8(pm, RST, 0);
	wr8(pm, RST, 2);
	wr8(pm, RST, 0xff);
	assert_int_equal(calls.reset, 0);
	wr8(pm, RST, ACPI_RESET_VALUE);
	assert_int_equal(calls.reset, 1);
	assert_int_equal(calls.poweroff, 0);
	wr8(pm, RST, ACPI_RESET_VALUE);
	assert_int_equal(calls.reset, 2);
	assert_int_equal(rd8(pm, RST), 0);
}

static void test_power_button_enabled(void **state)
{
	struct acpi_pm *pm = *state;

	wr16(pm, EN, PWRBTN);
	assert_int_equal(rd16(pm, EN), PWRBTN);
	assert_int_equal(calls.level, 0);

	acpi_pm_power_button(pm);
	assert_true(rd16(pm, STS) & PWRBTN);
	assert_int_equal(calls.irq_calls, 1);
	assert_int_equal(calls.last_gsi, 9);
	assert_int_equal(calls.last_gsi, ACPI_PM_SCI_GSI);
	assert_int_equal(calls.level, 1);

	/* a second press while pending: level already high, no new edge */
	acpi_pm_power_button(pm);
	assert_int_equal(calls.level, 1);
	assert_true(calls.irq_calls <= 2);
	int n = calls.irq_calls;

	/* writing 0 changes nothing: write-one-to-clear */
	wr16(pm, STS, 0);
	assert_true(rd16(pm, STS) & PWRBTN);
	assert_int_equal(calls.level, 1);

	/* writing 1 clears the status and lowers the SCI */
	wr16(pm, STS, PWRBTN);
	assert_int_equal(rd16(pm, STS) & PWRBTN, 0);
	assert_int_equal(calls.irq_calls, n + 1);
	assert_int_equal(calls.level, 0);
	assert_int_equal(calls.last_gsi, 9);
	assert_int_equal(calls.poweroff, 0);
}

static void test_power_button_disabled(void **state)
{
	struct acpi_pm *pm = *state;

	acpi_pm_power_button(pm);
	assert_true(rd16(pm, STS) & PWRBTN); /* status is set */
	assert_int_equal(calls.irq_calls, 0); /* but no SCI */
	assert_int_equal(calls.level, 0);
	/* enabling with the status pending raises the SCI */
	wr16(pm, EN, PWRBTN);
	assert_int_equal(calls.level, 1);
	assert_int_equal(calls.last_gsi, 9);
	/* disabling lowers it again, status stays */
	wr16(pm, EN, 0);
	assert_int_equal(calls.level, 0);
	assert_true(rd16(pm, STS) & PWRBTN);
	/* byte write to the status register's high byte clears it */
	wr8(pm, STS + 1, PWRBTN >> 8);
	assert_int_equal(rd16(pm, STS), 0);
	assert_int_equal(calls.poweroff, 0);
}

static void test_unknown_bits_and_offsets(void **state)
{
	struct acpi_pm *pm = *state;

	/* reserved enable bits read as 0; the architected fixed-event enables
	 * (TMR 0, GBL 5, PWRBTN 8, SLPBTN 9, RTC 10) may be kept for ACPICA */
	wr16(pm, EN, 0xffff);
	assert_int_equal(rd16(pm, EN) & ~(1u << 0 | 1u << 5 | 1u << 8 | 1u << 9 | 1u << 10), 0);
	assert_true(rd16(pm, EN) & PWRBTN);
	assert_int_equal(calls.level, 0); /* nothing pending: no SCI */
	/* unassigned offsets read as all-ones, writes are dropped */
	assert_int_equal(rd8(pm, 6), 0xff);
	assert_int_equal(rd8(pm, 0xf), 0xff);
	wr8(pm, 6, 0x55);
	wr16(pm, 0xc, 0xffff);
	assert_int_equal(calls.poweroff + calls.reset, 0);
	/* a 4-byte read covering CNT and the unassigned word after it */
	uint8_t d[4];
	acpi_pm_ops.io(pm, CNT, d, 4, false);
	assert_int_equal(d[0] & SCI_EN, SCI_EN);
	assert_int_equal(d[2], 0xff);
	assert_int_equal(d[3], 0xff);
	/* a 4-byte write to PM1_EVT touches STS and EN */
	acpi_pm_power_button(pm);
	uint8_t w[4] = { 0, PWRBTN >> 8, 0, 0 };
	acpi_pm_ops.io(pm, STS, w, 4, true);
	assert_int_equal(rd16(pm, STS), 0);
	assert_int_equal(rd16(pm, EN), 0);
}

static void test_device_reset(void **state)
{
	struct acpi_pm *pm = *state;

	wr16(pm, EN, PWRBTN);
	acpi_pm_power_button(pm);
	wr16(pm, CNT, SLP_TYP(3));
	assert_int_equal(calls.level, 1);
	acpi_pm_ops.reset(pm);
	assert_int_equal(rd16(pm, STS), 0);
	assert_int_equal(rd16(pm, EN), 0);
	assert_int_equal(rd16(pm, CNT), SCI_EN);
	assert_int_equal(calls.level, 0); /* SCI dropped */
}

static void test_save_load(void **state)
{
	struct acpi_pm *pm = *state;
	struct sbuf out = { 0 }, in;

	wr16(pm, EN, PWRBTN);
	acpi_pm_power_button(pm);
	wr16(pm, CNT, SLP_TYP(2) | SCI_EN);
	acpi_pm_ops.save(pm, &out);
	assert_int_equal(out.err, 0);
	assert_true(out.len > 0);

	memset(&calls, 0, sizeof(calls));
	struct acpi_pm *pm2 = create();
	sbuf_reader(&in, out.data, out.len);
	assert_int_equal(acpi_pm_ops.load(pm2, &in), 0);
	assert_int_equal(in.pos, in.len); /* consumed exactly */
	assert_int_equal(rd16(pm2, STS), PWRBTN);
	assert_int_equal(rd16(pm2, EN), PWRBTN);
	assert_int_equal(rd16(pm2, CNT), SLP_TYP(2) | SCI_EN);
	/* the restored device drives its SCI to the restored level */
	assert_int_equal(calls.level, 1);
	assert_int_equal(calls.last_gsi, 9);
	/* and keeps working */
	wr16(pm2, STS, PWRBTN);
	assert_int_equal(calls.level, 0);
	wr16(pm2, CNT, SLP_TYP(5) | SLP_EN);
	assert_int_equal(calls.poweroff, 1);

	/* save -> load -> save is stable */
	struct sbuf a = { 0 }, b = { 0 };
	acpi_pm_ops.save(pm, &a);
	sbuf_reader(&in, a.data, a.len);
	assert_int_equal(acpi_pm_ops.load(pm2, &in), 0);
	acpi_pm_ops.save(pm2, &b);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.data, b.data, a.len);

	sbuf_free(&a);
	sbuf_free(&b);
	sbuf_free(&out);
	acpi_pm_destroy(pm2);
}

static void test_load_rejects_bad_state(void **state)
{
	struct acpi_pm *pm = *state;
	struct sbuf out = { 0 }, in;

	wr16(pm, EN, PWRBTN);
	acpi_pm_ops.save(pm, &out);
	assert_int_equal(out.err, 0);

	memset(&calls, 0, sizeof(calls));
	struct acpi_pm *pm2 = create();
	wr16(pm2, CNT, SLP_TYP(1));
	/* every truncation is refused and leaves the device as it was */
	for (size_t len = 0; len < out.len; len++) {
		sbuf_reader(&in, out.data, len);
		assert_int_equal(acpi_pm_ops.load(pm2, &in), -EINVAL);
		assert_int_equal(rd16(pm2, EN), 0);
		assert_int_equal(rd16(pm2, CNT), SLP_TYP(1) | SCI_EN);
	}
	/* values that do not fit a 16-bit register */
	uint8_t bad[12];
	memcpy(bad, out.data, out.len < sizeof(bad) ? out.len : sizeof(bad));
	assert_int_equal(out.len, sizeof(bad));
	for (int field = 0; field < 3; field++) {
		uint8_t st[12];
		memcpy(st, bad, sizeof(st));
		st[field * 4 + 2] = 1; /* bit 16 */
		sbuf_reader(&in, st, sizeof(st));
		assert_int_equal(acpi_pm_ops.load(pm2, &in), -EINVAL);
		assert_int_equal(rd16(pm2, EN), 0);
	}
	/* hostile but in-range state is sanitised: no SLP_EN, SCI_EN forced on */
	uint8_t h[12] = { 0xff, 0xff, 0, 0, 0xff, 0xff, 0, 0, 0xff, 0xff, 0, 0 };
	sbuf_reader(&in, h, sizeof(h));
	assert_int_equal(acpi_pm_ops.load(pm2, &in), 0);
	assert_int_equal(rd16(pm2, CNT) & SLP_EN, 0);
	assert_int_equal(rd16(pm2, CNT) & SCI_EN, SCI_EN);
	assert_int_equal(calls.poweroff, 0);
	sbuf_free(&out);
	acpi_pm_destroy(pm2);
}

static void test_no_callbacks(void **state)
{
	struct acpi_pm_config cfg = { 0 };
	struct acpi_pm *pm = acpi_pm_create(&cfg);

	(void)state;
	assert_non_null(pm);
	/* every event with no callback registered is harmless */
	wr16(pm, EN, PWRBTN);
	acpi_pm_power_button(pm);
	wr16(pm, STS, PWRBTN);
	wr16(pm, CNT, SLP_TYP(5) | SLP_EN);
	wr8(pm, RST, ACPI_RESET_VALUE);
	acpi_pm_destroy(pm);
	acpi_pm_destroy(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_power_on_state, setup, teardown),
		cmocka_unit_test_setup_teardown(test_s5_word_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_s5_byte_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_sleep_types, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sci_en_reads_set, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_register, setup, teardown),
		cmocka_unit_test_setup_teardown(test_power_button_enabled, setup, teardown),
		cmocka_unit_test_setup_teardown(test_power_button_disabled, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_bits_and_offsets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_device_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_rejects_bad_state, setup, teardown),
		cmocka_unit_test(test_no_callbacks),
	};

	return cmocka_run_group_tests_name("acpi_pm", tests, NULL, NULL);
}
