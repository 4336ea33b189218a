/* Unit tests for `cvisor run` option parsing (vm/config.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "vm/config.h"

#define MIB (1ULL << 20)
#define GIB (1ULL << 30)

static char err[256];

/* Parse a NULL-terminated list of arguments after "run". */
static int parse_v(struct vm_config *cfg, const char *first, va_list ap)
{
	char *argv[64];
	int argc = 0;

	argv[argc++] = "run";
	for (const char *a = first; a; a = va_arg(ap, const char *)) {
		assert_true(argc < 63);
		argv[argc++] = (char *)a;
	}
	argv[argc] = NULL;
	memset(err, 0, sizeof(err));
	return config_parse_run(cfg, argc, argv, err, sizeof(err));
}

static int parse(struct vm_config *cfg, const char *first, ...)
{
	va_list ap;

	va_start(ap, first);
	int rc = parse_v(cfg, first, ap);
	va_end(ap);
	return rc;
}

/* Expect -EINVAL with a non-empty one-line message containing want. */
static void expect_error(const char *want, const char *first, ...)
{
	struct vm_config cfg;
	va_list ap;

	va_start(ap, first);
	int rc = parse_v(&cfg, first, ap);
	va_end(ap);
	if (rc != -EINVAL)
		fail_msg("expected -EINVAL (want \"%s\"), got %d", want, rc);
	assert_true(strlen(err) > 0);
	assert_null(strchr(err, '\n'));
	if (!strstr(err, want))
		fail_msg("error \"%s\" does not mention \"%s\"", err, want);
}

static void test_defaults(void **state)
{
	struct vm_config cfg;

	(void)state;
	assert_int_equal(parse(&cfg, "--kernel", "/boot/vmlinuz", NULL), 0);
	assert_string_equal(cfg.kernel, "/boot/vmlinuz");
	assert_null(cfg.initrd);
	assert_string_equal(cfg.cmdline, CONFIG_DEFAULT_CMDLINE);
	assert_int_equal(cfg.cpus, 1);
	assert_int_equal(cfg.mem_size, CONFIG_DEFAULT_MEM);
	assert_int_equal(cfg.mem_size, 512 * MIB);
	assert_int_equal(cfg.serial, SERIAL_STDIO);
	assert_null(cfg.serial_path);
	assert_int_equal(cfg.on_reboot, ON_REBOOT_RESTART);
	assert_string_equal(cfg.name, "cvisor");
	assert_int_equal(cfg.verbose, 0);
	assert_int_equal(cfg.nr_disks, 0);
	assert_false(cfg.rng);
	assert_null(cfg.rng_opts);
	assert_int_equal(cfg.nr_nets, 0);
	assert_false(cfg.console_virtio);
	assert_false(cfg.balloon);
	assert_null(cfg.balloon_opts);
	assert_null(cfg.vsock_opts);
}

static void test_every_option(void **state)
{
	struct vm_config cfg;

	(void)state;
	assert_int_equal(parse(&cfg, "--kernel", "bzImage", "--initrd", "initrd.img", "--cmdline",
	                       "console=ttyS0 quiet", "--cpus", "4", "--memory", "2G", "--name",
	                       "vm1", "--serial", "file=/tmp/console.log", "--on-reboot", "exit",
	                       "--verbose", NULL),
	                 0);
	assert_string_equal(cfg.kernel, "bzImage");
	assert_string_equal(cfg.initrd, "initrd.img");
	assert_string_equal(cfg.cmdline, "console=ttyS0 quiet");
	assert_int_equal(cfg.cpus, 4);
	assert_int_equal(cfg.mem_size, 2 * GIB);
	assert_string_equal(cfg.name, "vm1");
	assert_int_equal(cfg.serial, SERIAL_FILE);
	assert_string_equal(cfg.serial_path, "/tmp/console.log");
	assert_int_equal(cfg.on_reboot, ON_REBOOT_EXIT);
	assert_int_equal(cfg.verbose, 1);
}

static void test_equals_form(void **state)
{
	struct vm_config cfg;

	(void)state;
	assert_int_equal(parse(&cfg, "--kernel=/k", "--initrd=/i", "--cmdline=root=/dev/vda rw",
	                       "--cpus=2", "--memory=1024", "--name=x", "--serial=socket=/run/s.sock",
	                       "--on-reboot=restart", NULL),
	                 0);
	assert_string_equal(cfg.kernel, "/k");
	assert_string_equal(cfg.initrd, "/i");
	/* only the first '=' separates the option from its value */
	assert_string_equal(cfg.cmdline, "root=/dev/vda rw");
	assert_int_equal(cfg.cpus, 2);
	assert_int_equal(cfg.mem_size, 1024 * MIB);
	assert_string_equal(cfg.name, "x");
	assert_int_equal(cfg.serial, SERIAL_SOCKET);
	assert_string_equal(cfg.serial_path, "/run/s.sock");
	assert_int_equal(cfg.on_reboot, ON_REBOOT_RESTART);
}

static void test_serial_kinds(void **state)
{
	struct vm_config cfg;

	(void)state;
	assert_int_equal(parse(&cfg, "--kernel", "k", "--serial", "none", NULL), 0);
	assert_int_equal(cfg.serial, SERIAL_NONE);
	assert_int_equal(parse(&cfg, "--kernel", "k", "--serial", "stdio", NULL), 0);
	assert_int_equal(cfg.serial, SERIAL_STDIO);
	assert_int_equal(parse(&cfg, "--kernel", "k", "--serial", "socket=/s", NULL), 0);
	assert_int_equal(cfg.serial, SERIAL_SOCKET);
	assert_string_equal(cfg.serial_path, "/s");
	assert_int_equal(parse(&cfg, "--kernel", "k", "--serial", "file=f", NULL), 0);
	assert_int_equal(cfg.serial, SERIAL_FILE);
	assert_string_equal(cfg.serial_path, "f");
}

static void test_repeated_and_order(void **state)
{
	struct vm_config cfg;

	(void)state;
	/* the last occurrence wins; options may come in any order */
	assert_int_equal(parse(&cfg, "--cpus", "2", "--memory", "64M", "--kernel", "a", "--cpus",
	                       "3", "--kernel=b", "-v", "--verbose", NULL),
	                 0);
	assert_int_equal(cfg.cpus, 3);
	assert_string_equal(cfg.kernel, "b");
	assert_int_equal(cfg.mem_size, 64 * MIB);
	assert_int_equal(cfg.verbose, 2);
	/* a value that looks like an option is taken as the value */
	assert_int_equal(parse(&cfg, "--kernel", "k", "--cmdline", "--weird", NULL), 0);
	assert_string_equal(cfg.cmdline, "--weird");
	/* a second parse starts from the defaults again */
	assert_int_equal(parse(&cfg, "--kernel", "k", NULL), 0);
	assert_int_equal(cfg.cpus, 1);
	assert_int_equal(cfg.verbose, 0);
	assert_string_equal(cfg.cmdline, CONFIG_DEFAULT_CMDLINE);
}

static void test_cpus_limits(void **state)
{
	struct vm_config cfg;

	(void)state;
	assert_int_equal(parse(&cfg, "--kernel", "k", "--cpus", "1", NULL), 0);
	assert_int_equal(cfg.cpus, 1);
	assert_int_equal(parse(&cfg, "--kernel", "k", "--cpus", "4096", NULL), 0);
	assert_int_equal(cfg.cpus, 4096);
	expect_error("--cpus", "--kernel", "k", "--cpus", "0", NULL);
	expect_error("--cpus", "--kernel", "k", "--cpus", "abc", NULL);
	expect_error("--cpus", "--kernel", "k", "--cpus", "99999", NULL);
	expect_error("--cpus", "--kernel", "k", "--cpus", "4097", NULL);
	expect_error("--cpus", "--kernel", "k", "--cpus", "-1", NULL);
	expect_error("--cpus", "--kernel", "k", "--cpus", "2x", NULL);
	expect_error("--cpus", "--kernel", "k", "--cpus", "", NULL);
	expect_error("--cpus", "--kernel", "k", "--cpus=", NULL);
	expect_error("--cpus", "--kernel", "k", "--cpus", "18446744073709551617", NULL);
	expect_error("--cpus", "--kernel", "k", "--cpus", "4294967297", NULL); /* 2^32 + 1 */
}

static void test_memory_values(void **state)
{
	struct vm_config cfg;

	(void)state;
	assert_int_equal(parse(&cfg, "--kernel", "k", "--memory", "16M", NULL), 0);
	assert_int_equal(cfg.mem_size, CONFIG_MIN_MEM);
	assert_int_equal(parse(&cfg, "--kernel", "k", "--memory", "3G", NULL), 0);
	assert_int_equal(cfg.mem_size, 3 * GIB);
	assert_int_equal(parse(&cfg, "--kernel", "k", "--memory", "20484K", NULL), 0);
	assert_int_equal(cfg.mem_size, 20484 * 1024ULL);
	assert_int_equal(parse(&cfg, "--kernel", "k", "--memory", "64T", NULL), 0);
	assert_int_equal(cfg.mem_size, 64ULL << 40);

	expect_error("too small", "--kernel", "k", "--memory", "1M", NULL);
	expect_error("too small", "--kernel", "k", "--memory", "16380K", NULL);
	expect_error("too small", "--kernel", "k", "--memory", "0", NULL);
	expect_error("not a size", "--kernel", "k", "--memory", "12x", NULL);
	expect_error("not a size", "--kernel", "k", "--memory", "", NULL);
	expect_error("not a size", "--kernel", "k", "--memory", "lots", NULL);
	expect_error("too large", "--kernel", "k", "--memory", "100000G", NULL);
	expect_error("too large", "--kernel", "k", "--memory", "65T", NULL);
	expect_error("too large", "--kernel", "k", "--memory", "99999999999999999999", NULL);
	expect_error("too large", "--kernel", "k", "--memory", "16777216T", NULL);
	expect_error("multiple of 4K", "--kernel", "k", "--memory", "16385K", NULL);
	expect_error("multiple of 4K", "--kernel", "k", "--memory", "20481K", NULL);
}

static void test_serial_errors(void **state)
{
	(void)state;
	expect_error("--serial", "--kernel", "k", "--serial", "tty", NULL);
	expect_error("--serial", "--kernel", "k", "--serial", "file=", NULL);
	expect_error("--serial", "--kernel", "k", "--serial", "socket=", NULL);
	expect_error("--serial", "--kernel", "k", "--serial", "", NULL);
	expect_error("--serial", "--kernel", "k", "--serial", "STDIO", NULL);
	expect_error("--serial", "--kernel", "k", "--serial", "file", NULL);
}

static void test_on_reboot_errors(void **state)
{
	(void)state;
	expect_error("--on-reboot", "--kernel", "k", "--on-reboot", "halt", NULL);
	expect_error("--on-reboot", "--kernel", "k", "--on-reboot", "", NULL);
	expect_error("--on-reboot", "--kernel", "k", "--on-reboot=Exit", NULL);
}

static void test_missing_kernel(void **state)
{
	(void)state;
	expect_error("--kernel", NULL);
	expect_error("--kernel", "--cpus", "2", "--memory", "1G", NULL);
}

static void test_missing_value(void **state)
{
	static const char *const opts[] = { "--kernel", "--initrd", "--cmdline",   "--name",
		                            "--cpus",   "--memory", "--serial",    "--on-reboot",
		                            "--disk",   "--net",    "--console",   "--vsock" };

	(void)state;
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		expect_error("needs a value", "--kernel", "k", opts[i], NULL);
		expect_error(opts[i], "--kernel", "k", opts[i], NULL);
	}
}

static void test_unknown_and_positional(void **state)
{
	(void)state;
	expect_error("unknown option --frobnicate", "--kernel", "k", "--frobnicate", NULL);
	expect_error("unknown option --frobnicate", "--kernel", "k", "--frobnicate=1", NULL);
	expect_error("unknown option", "--kernel", "k", "--", NULL);
	expect_error("unknown option", "--kernel", "k", "--kernelx", "y", NULL);
	expect_error("unexpected argument 'bzImage'", "bzImage", NULL);
	expect_error("unexpected argument", "--kernel", "k", "-x", NULL);
	expect_error("unexpected argument", "--kernel", "k", "extra", NULL);
	/* an option name too long for the '=' split is still just unknown */
	expect_error("unknown option",
	             "--kernel", "k", "--aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=1",
	             NULL);
	expect_error("--name", "--kernel", "k", "--name", "", NULL);
	expect_error("help", "--help", NULL);
	expect_error("help", "--kernel", "k", "-h", NULL);
}

static void test_incoming(void **state)
{
	struct vm_config cfg;
	char err[256];
	char *argv[] = { "run", "--incoming", "tcp:127.0.0.1:7000", NULL };

	(void)state;
	/* a migration destination needs no kernel: it comes with the VM */
	assert_int_equal(config_parse_run(&cfg, 3, argv, err, sizeof(err)), 0);
	assert_string_equal(cfg.incoming, "tcp:127.0.0.1:7000");
}

static void test_api_and_restore(void **state)
{
	struct vm_config cfg;
	char err[256];
	char *argv[] = { "run", "--kernel", "k", "--api-socket", "/tmp/a.sock", "--restore", "/snap", NULL };

	(void)state;
	assert_int_equal(config_parse_run(&cfg, 7, argv, err, sizeof(err)), 0);
	assert_string_equal(cfg.api_socket, "/tmp/a.sock");
	assert_string_equal(cfg.restore_dir, "/snap");
	/* with --restore, --kernel comes from the snapshot */
	char *argv2[] = { "run", "--restore", "/snap", NULL };
	assert_int_equal(config_parse_run(&cfg, 3, argv2, err, sizeof(err)), 0);
	assert_null(cfg.kernel);
}

static void test_disks(void **state)
{
	struct vm_config cfg;
	char *argv[2 + 2 * (CONFIG_MAX_DISKS + 1) + 1];
	char paths[CONFIG_MAX_DISKS + 1][24];
	int argc = 0;

	(void)state;
	/* repeatable, in order, both forms; the value is kept for the block layer */
	assert_int_equal(parse(&cfg, "--kernel", "k", "--disk", "path=root.img",
	                       "--disk=path=data.qcow2,readonly=on,serial=D1", NULL),
	                 0);
	assert_int_equal(cfg.nr_disks, 2);
	assert_string_equal(cfg.disks[0], "path=root.img");
	assert_string_equal(cfg.disks[1], "path=data.qcow2,readonly=on,serial=D1");

	/* CONFIG_MAX_DISKS accepted, one more refused */
	argv[argc++] = "run";
	argv[argc++] = "--kernel=k";
	for (int i = 0; i <= CONFIG_MAX_DISKS; i++) {
		snprintf(paths[i], sizeof(paths[i]), "path=d%d", i);
		argv[argc++] = "--disk";
		argv[argc++] = paths[i];
	}
	argv[argc] = NULL;
	assert_int_equal(config_parse_run(&cfg, argc - 2, argv, err, sizeof(err)), 0);
	assert_int_equal(cfg.nr_disks, CONFIG_MAX_DISKS);
	assert_string_equal(cfg.disks[CONFIG_MAX_DISKS - 1], paths[CONFIG_MAX_DISKS - 1]);
	memset(err, 0, sizeof(err));
	assert_int_equal(config_parse_run(&cfg, argc, argv, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "--disk"));
	assert_null(strchr(err, '\n'));
}

static void test_rng(void **state)
{
	struct vm_config cfg;

	(void)state;
	assert_int_equal(parse(&cfg, "--kernel", "k", "--rng", NULL), 0);
	assert_true(cfg.rng);
	assert_null(cfg.rng_opts);
	assert_int_equal(parse(&cfg, "--rng=bps=4096", "--kernel", "k", NULL), 0);
	assert_true(cfg.rng);
	assert_string_equal(cfg.rng_opts, "bps=4096");
	/* a flag: the next argument is not its value */
	expect_error("unexpected argument 'bps=1'", "--kernel", "k", "--rng", "bps=1", NULL);
}

static void test_device_options(void **state)
{
	struct vm_config cfg;

	(void)state;
	assert_int_equal(parse(&cfg, "--kernel", "k", "--net", "tap=tap0",
	                       "--net=tap=tap1,mac=02:00:00:00:00:01", "--console", "virtio",
	                       "--balloon=target=256M", "--vsock", "cid=3", NULL),
	                 0);
	assert_int_equal(cfg.nr_nets, 2);
	assert_string_equal(cfg.nets[0], "tap=tap0");
	assert_string_equal(cfg.nets[1], "tap=tap1,mac=02:00:00:00:00:01");
	assert_true(cfg.console_virtio);
	assert_true(cfg.balloon);
	assert_string_equal(cfg.balloon_opts, "target=256M");
	assert_string_equal(cfg.vsock_opts, "cid=3");

	/* --balloon is a flag like --rng */
	assert_int_equal(parse(&cfg, "--kernel", "k", "--balloon", NULL), 0);
	assert_true(cfg.balloon);
	assert_null(cfg.balloon_opts);

	expect_error("--console", "--kernel", "k", "--console", "serial", NULL);
	expect_error("--console", "--kernel", "k", "--console=", NULL);

	/* CONFIG_MAX_NETS accepted, one more refused */
	char *argv[2 + 2 * (CONFIG_MAX_NETS + 1) + 1];
	int argc = 0;
	argv[argc++] = "run";
	argv[argc++] = "--kernel=k";
	for (int i = 0; i <= CONFIG_MAX_NETS; i++) {
		argv[argc++] = "--net";
		argv[argc++] = "tap=t";
	}
	argv[argc] = NULL;
	assert_int_equal(config_parse_run(&cfg, argc - 2, argv, err, sizeof(err)), 0);
	assert_int_equal(cfg.nr_nets, CONFIG_MAX_NETS);
	memset(err, 0, sizeof(err));
	assert_int_equal(config_parse_run(&cfg, argc, argv, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "--net"));
}

static void test_error_buffer_small(void **state)
{
	struct vm_config cfg;
	char small[8];
	char *argv[] = { "run", "--frobnicate-something-long", NULL };

	(void)state;
	memset(small, 'Z', sizeof(small));
	assert_int_equal(config_parse_run(&cfg, 2, argv, small, sizeof(small)), -EINVAL);
	/* truncated but terminated within the buffer */
	assert_int_equal(small[sizeof(small) - 1], '\0');
	assert_int_equal(strlen(small), sizeof(small) - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_every_option),
		cmocka_unit_test(test_equals_form),
		cmocka_unit_test(test_serial_kinds),
		cmocka_unit_test(test_repeated_and_order),
		cmocka_unit_test(test_cpus_limits),
		cmocka_unit_test(test_memory_values),
		cmocka_unit_test(test_serial_errors),
		cmocka_unit_test(test_on_reboot_errors),
		cmocka_unit_test(test_missing_kernel),
		cmocka_unit_test(test_missing_value),
		cmocka_unit_test(test_unknown_and_positional),
		cmocka_unit_test(test_incoming),
		cmocka_unit_test(test_api_and_restore),
		cmocka_unit_test(test_disks),
		cmocka_unit_test(test_rng),
		cmocka_unit_test(test_device_options),
		cmocka_unit_test(test_error_buffer_small),
	};

	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
