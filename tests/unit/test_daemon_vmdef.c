/* Unit tests for cvisord's VM definitions (daemon/vmdef.c): names, checks of
 * the cvisor run options (without starting anything), limits, JSON form. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon/vmdef.h"

static char kernel[96], tmpdir[64];

static int setup(void **state)
{
	(void)state;
	strcpy(tmpdir, "/tmp/cvisord-def-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	snprintf(kernel, sizeof(kernel), "%s/vmlinuz", tmpdir);
	FILE *f = fopen(kernel, "w");
	assert_non_null(f);
	fputs("not really a kernel", f);
	fclose(f);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(kernel);
	rmdir(tmpdir);
	return 0;
}

/* vmdef_check_args on a NULL-terminated list; the message goes to err. */
static int check(char *err, size_t len, struct vmdef_facts *facts, ...)
{
	char *args[32];
	int n = 0;
	va_list ap;

	va_start(ap, facts);
	while (n < 31 && (args[n] = va_arg(ap, char *)))
		n++;
	va_end(ap);
	err[0] = '\0';
	return vmdef_check_args(args, n, facts, err, len);
}

static void test_names(void **state)
{
	char err[256];

	(void)state;
	assert_int_equal(vmdef_name_check("web1", err, sizeof(err)), 0);
	assert_int_equal(vmdef_name_check("a", err, sizeof(err)), 0);
	assert_int_equal(vmdef_name_check("db.prod-2_x", err, sizeof(err)), 0);
	assert_int_equal(vmdef_name_check("0123456789abcdef0123456789abcdef", err, sizeof(err)), 0);
	assert_int_equal(vmdef_name_check("0123456789abcdef0123456789abcdefX", err, sizeof(err)),
	                 -EINVAL);
	assert_int_equal(vmdef_name_check("", err, sizeof(err)), -EINVAL);
	assert_int_equal(vmdef_name_check(NULL, err, sizeof(err)), -EINVAL);
	assert_int_equal(vmdef_name_check("-x", err, sizeof(err)), -EINVAL);
	assert_int_equal(vmdef_name_check(".x", err, sizeof(err)), -EINVAL);
	assert_int_equal(vmdef_name_check("..", err, sizeof(err)), -EINVAL);
	assert_int_equal(vmdef_name_check("a/b", err, sizeof(err)), -EINVAL);
	assert_int_equal(vmdef_name_check("a b", err, sizeof(err)), -EINVAL);
	assert_int_equal(vmdef_name_check("ä", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "letters"));
}

static void test_good_options(void **state)
{
	struct vmdef_facts facts;
	char err[256];

	(void)state;
	assert_int_equal(check(err, sizeof(err), &facts, "--kernel", kernel, NULL), 0);
	assert_int_equal(facts.mem_size, 512ULL << 20);
	assert_int_equal(facts.cpus, 1);
	char disk[128];
	snprintf(disk, sizeof(disk), "path=%s,readonly=on", kernel);
	assert_int_equal(check(err, sizeof(err), &facts, "--kernel", kernel, "--initrd", kernel,
	                       "--cmdline", "console=ttyS0 --serial x", "--memory=160M",
	                       "--cpus", "2", "--rng", "--disk", disk, NULL),
	                 0);
	assert_int_equal(facts.mem_size, 160ULL << 20);
	assert_int_equal(facts.cpus, 2);
}

static void test_bad_options(void **state)
{
	char err[256];

	(void)state;
	/* the daemon's own options */
	assert_int_equal(check(err, sizeof(err), NULL, "--kernel", kernel, "--serial", "stdio", NULL),
	                 -EINVAL);
	assert_non_null(strstr(err, "--serial is set by cvisord"));
	assert_int_equal(check(err, sizeof(err), NULL, "--kernel", kernel, "--api-socket=/x", NULL),
	                 -EINVAL);
	assert_non_null(strstr(err, "--api-socket"));
	assert_int_equal(check(err, sizeof(err), NULL, "--name", "x", "--kernel", kernel, NULL),
	                 -EINVAL);
	assert_int_equal(check(err, sizeof(err), NULL, "--kernel", kernel, "--help", NULL), -EINVAL);
	/* the files */
	assert_int_equal(check(err, sizeof(err), NULL, NULL), -EINVAL);
	assert_non_null(strstr(err, "--kernel PATH is required"));
	assert_int_equal(check(err, sizeof(err), NULL, "--kernel", "/nonexistent/vmlinuz", NULL),
	                 -EINVAL);
	assert_non_null(strstr(err, "No such file"));
	assert_int_equal(check(err, sizeof(err), NULL, "--kernel", "vmlinuz", NULL), -EINVAL);
	assert_non_null(strstr(err, "absolute"));
	assert_int_equal(check(err, sizeof(err), NULL, "--kernel", "/tmp", NULL), -EINVAL);
	assert_non_null(strstr(err, "not a regular file"));
	assert_int_equal(check(err, sizeof(err), NULL, "--kernel", kernel, "--initrd", "/nope", NULL),
	                 -EINVAL);
	assert_int_equal(check(err, sizeof(err), NULL, "--kernel", kernel, "--disk",
	                       "path=/nonexistent.img", NULL),
	                 -EINVAL);
	assert_non_null(strstr(err, "/nonexistent.img"));
	assert_int_equal(check(err, sizeof(err), NULL, "--kernel", kernel, "--disk",
	                       "path=/dev/null", NULL),
	                 -EINVAL);
	assert_non_null(strstr(err, "not a regular file or block device"));
	assert_int_equal(check(err, sizeof(err), NULL, "--kernel", kernel, "--disk", "format=raw",
	                       NULL),
	                 -EINVAL);
	assert_int_equal(check(err, sizeof(err), NULL, "--kernel", kernel, "--vsock",
	                       "cid=3,socket=rel.sock", NULL),
	                 -EINVAL);
	/* syntax, through cvisor run's own parser */
	assert_int_equal(check(err, sizeof(err), NULL, "--kernel", kernel, "--memory", "lots", NULL),
	                 -EINVAL);
	assert_non_null(strstr(err, "--memory"));
	assert_int_equal(check(err, sizeof(err), NULL, "--kernel", kernel, "--memory", "1K", NULL),
	                 -EINVAL);
	assert_int_equal(check(err, sizeof(err), NULL, "--kernel", kernel, "--cpus", "0", NULL),
	                 -EINVAL);
	assert_int_equal(check(err, sizeof(err), NULL, "--kernel", kernel, "--frobnicate", NULL),
	                 -EINVAL);
	assert_non_null(strstr(err, "unknown option --frobnicate"));
	assert_int_equal(check(err, sizeof(err), NULL, "--kernel", kernel, "--cmdline", NULL),
	                 -EINVAL);
	assert_int_equal(check(err, sizeof(err), NULL, "--kernel", kernel, "stray", NULL), -EINVAL);
}

static void test_limits(void **state)
{
	struct vm_limits l = { 0 };
	struct vmdef_facts facts = { .mem_size = 160ULL << 20, .cpus = 1 };
	char err[256];

	(void)state;
	assert_false(vmdef_limits_any(&l));
	assert_int_equal(vmdef_limit_set(&l, "cpu_quota", "20", err, sizeof(err)), 0);
	assert_int_equal(l.cpu_quota, 20);
	assert_true(vmdef_limits_any(&l));
	assert_int_equal(vmdef_limit_set(&l, "cpu_quota", "250", err, sizeof(err)), 0);
	assert_int_equal(vmdef_limit_set(&l, "cpu_quota", "0", err, sizeof(err)), -EINVAL);
	assert_int_equal(vmdef_limit_set(&l, "cpu_quota", "20%", err, sizeof(err)), -EINVAL);
	assert_int_equal(vmdef_limit_set(&l, "cpu_quota", "-5", err, sizeof(err)), -EINVAL);
	assert_int_equal(vmdef_limit_set(&l, "cpu_quota", "none", err, sizeof(err)), 0);
	assert_int_equal(l.cpu_quota, 0);
	assert_int_equal(vmdef_limit_set(&l, "cpu_weight", "10000", err, sizeof(err)), 0);
	assert_int_equal(vmdef_limit_set(&l, "cpu_weight", "10001", err, sizeof(err)), -EINVAL);
	assert_int_equal(vmdef_limit_set(&l, "cpuset", "0-3,6,8-9", err, sizeof(err)), 0);
	assert_string_equal(l.cpuset, "0-3,6,8-9");
	assert_int_equal(vmdef_limit_set(&l, "cpuset", "3-1", err, sizeof(err)), -EINVAL);
	assert_int_equal(vmdef_limit_set(&l, "cpuset", "1,", err, sizeof(err)), -EINVAL);
	assert_int_equal(vmdef_limit_set(&l, "cpuset", "a", err, sizeof(err)), -EINVAL);
	assert_string_equal(l.cpuset, "0-3,6,8-9"); /* a refused value changes nothing */
	assert_int_equal(vmdef_limit_set(&l, "memory_max", "1G", err, sizeof(err)), 0);
	assert_int_equal(l.memory_max, 1ULL << 30);
	assert_int_equal(vmdef_limit_set(&l, "memory_max", "256", err, sizeof(err)), 0);
	assert_int_equal(l.memory_max, 256ULL << 20); /* a bare number is MiB */
	assert_int_equal(vmdef_limit_set(&l, "memory_max", "1K", err, sizeof(err)), -EINVAL);
	assert_int_equal(vmdef_limit_set(&l, "io_bps", "1048576", err, sizeof(err)), 0);
	assert_int_equal(vmdef_limit_set(&l, "io_iops", "x", err, sizeof(err)), -EINVAL);
	assert_int_equal(vmdef_limit_set(&l, "cpu_shares", "1", err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "unknown limit"));

	assert_int_equal(vmdef_limits_check(&l, &facts, err, sizeof(err)), 0);
	assert_int_equal(vmdef_limit_set(&l, "memory_max", "128M", err, sizeof(err)), 0);
	assert_int_equal(vmdef_limits_check(&l, &facts, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "OOM"));
}

static void test_cpuset_syntax(void **state)
{
	(void)state;
	assert_int_equal(vmdef_cpuset_check("0"), 0);
	assert_int_equal(vmdef_cpuset_check("0-0"), 0);
	assert_int_equal(vmdef_cpuset_check("1,3,5-7"), 0);
	assert_int_equal(vmdef_cpuset_check(""), -EINVAL);
	assert_int_equal(vmdef_cpuset_check(",1"), -EINVAL);
	assert_int_equal(vmdef_cpuset_check("1-"), -EINVAL);
	assert_int_equal(vmdef_cpuset_check("1--2"), -EINVAL);
	assert_int_equal(vmdef_cpuset_check("1 2"), -EINVAL);
	assert_int_equal(vmdef_cpuset_check("99999"), -EINVAL);
}

static void test_json_roundtrip_and_disks(void **state)
{
	char *args[] = { "--kernel", "/k", "--disk", "path=/a.img,readonly=on", "--rng",
		         "--disk=path=/b.img", "--cmdline", "--disk x", NULL };
	struct vmdef d = { 0 }, e = { 0 };
	const char *disks[4];
	char path[64];

	(void)state;
	assert_int_equal(vmdef_set_args(&d, args, 8), 0);
	char *json = vmdef_args_to_json(&d);
	assert_non_null(json);
	assert_int_equal(vmdef_args_from_json(&e, json), 0);
	assert_int_equal(e.nargs, 8);
	for (int i = 0; i < 8; i++)
		assert_string_equal(e.args[i], args[i]);
	free(json);
	assert_int_equal(vmdef_disks(&e, disks, 4), 2); /* not the --cmdline value */
	assert_string_equal(disks[0], "path=/a.img,readonly=on");
	assert_string_equal(disks[1], "path=/b.img");
	assert_int_equal(vmdef_disk_path(disks[0], path, sizeof(path)), 0);
	assert_string_equal(path, "/a.img");
	assert_int_equal(vmdef_disk_path("format=raw,path=/c", path, sizeof(path)), 0);
	assert_string_equal(path, "/c");
	assert_int_equal(vmdef_disk_path("format=raw", path, sizeof(path)), -EINVAL);
	assert_int_equal(vmdef_args_from_json(&e, "{\"x\":1}"), -EINVAL);
	assert_int_equal(vmdef_args_from_json(&e, "[1]"), -EINVAL);
	assert_int_equal(vmdef_args_from_json(&e, "[\"a\\u0000b\"]"), -EINVAL);
	assert_int_equal(vmdef_args_from_json(&e, "not json"), -EINVAL);
	assert_int_equal(e.nargs, 8); /* failures leave it as it was */
	vmdef_free(&d);
	vmdef_free(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_good_options),
		cmocka_unit_test(test_bad_options),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_cpuset_syntax),
		cmocka_unit_test(test_json_roundtrip_and_disks),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
