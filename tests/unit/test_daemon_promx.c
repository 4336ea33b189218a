/* Unit tests for merging the VMs' Prometheus text (daemon/promx.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "daemon/promx.h"
#include "state/sbuf.h"

/* The label added to one line, as a NUL-terminated string in a static buffer. */
static const char *label(const char *line, const char *value)
{
	static char out[256];
	struct sbuf b = { 0 };

	if (promx_label_line(line, strlen(line), "vm", value, &b) < 0) {
		sbuf_free(&b);
		return NULL;
	}
	assert_true(b.len < sizeof(out));
	memcpy(out, b.data, b.len);
	out[b.len] = '\0';
	sbuf_free(&b);
	return out;
}

static void test_label_line(void **state)
{
	(void)state;
	assert_string_equal(label("up 1", "a"), "up{vm=\"a\"} 1\n");
	assert_string_equal(label("x_total{reason=\"io\"} 42", "b"),
	                    "x_total{vm=\"b\",reason=\"io\"} 42\n");
	assert_string_equal(label("y{} 3 1700000000", "c"), "y{vm=\"c\"} 3 1700000000\n");
	assert_string_equal(label("z 1", "q\"\\\n"), "z{vm=\"q\\\"\\\\\\n\"} 1\n");
	assert_null(label("{a=\"b\"} 1", "a"));
	assert_null(label("novalue", "a"));
	assert_null(label("bad-name 1", "a"));
}

static const char vm_text[] =
	"# HELP cvisor_exits_total VM exits by reason\n"
	"# TYPE cvisor_exits_total counter\n"
	"cvisor_exits_total{reason=\"io\"} 10\n"
	"cvisor_exits_total{reason=\"mmio\"} 5\n"
	"# some other comment\n"
	"\n"
	"# HELP lat request latency\n"
	"# TYPE lat histogram\n"
	"lat_bucket{le=\"1\"} 3\r\n"
	"lat_sum 2.5\n"
	"lat_count 3\n"
	"cvisor_untyped 7";

static void test_merge_two_vms(void **state)
{
	struct promx *p = promx_new();
	struct sbuf b = { 0 };

	(void)state;
	assert_non_null(p);
	assert_int_equal(promx_add(p, vm_text, strlen(vm_text), "vm", "a"), 0);
	assert_int_equal(promx_add(p, vm_text, strlen(vm_text), "vm", "b"), 0);
	promx_render(p, &b);
	sbuf_put(&b, "", 1);
	const char *t = (const char *)b.data;
	const char *want =
		"# HELP cvisor_exits_total VM exits by reason\n"
		"# TYPE cvisor_exits_total counter\n"
		"cvisor_exits_total{vm=\"a\",reason=\"io\"} 10\n"
		"cvisor_exits_total{vm=\"a\",reason=\"mmio\"} 5\n"
		"cvisor_exits_total{vm=\"b\",reason=\"io\"} 10\n"
		"cvisor_exits_total{vm=\"b\",reason=\"mmio\"} 5\n"
		"# HELP lat request latency\n"
		"# TYPE lat histogram\n"
		"lat_bucket{vm=\"a\",le=\"1\"} 3\n"
		"lat_sum{vm=\"a\"} 2.5\n"
		"lat_count{vm=\"a\"} 3\n"
		"lat_bucket{vm=\"b\",le=\"1\"} 3\n"
		"lat_sum{vm=\"b\"} 2.5\n"
		"lat_count{vm=\"b\"} 3\n"
		"cvisor_untyped{vm=\"a\"} 7\n"
		"cvisor_untyped{vm=\"b\"} 7\n";
	assert_string_equal(t, want);
	sbuf_free(&b);
	promx_free(p);
}

static void test_printf(void **state)
{
	struct sbuf b = { 0 };
	char big[600];

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	promx_printf(&b, "%s=%d;", "a", 1);
	promx_printf(&b, "%s", big); /* longer than the small buffer */
	assert_int_equal(b.len, 4 + 599);
	assert_memory_equal(b.data, "a=1;", 4);
	sbuf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_label_line),
		cmocka_unit_test(test_merge_two_vms),
		cmocka_unit_test(test_printf),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
