/* Unit tests for cvisord's restart policy and back-off (daemon/restart.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "daemon/restart.h"

static void test_policy_names(void **state)
{
	enum restart_policy p;

	(void)state;
	assert_int_equal(restart_policy_parse("never", &p), 0);
	assert_int_equal(p, RESTART_NEVER);
	assert_int_equal(restart_policy_parse("on-failure", &p), 0);
	assert_int_equal(p, RESTART_ON_FAILURE);
	assert_int_equal(restart_policy_parse("always", &p), 0);
	assert_int_equal(p, RESTART_ALWAYS);
	assert_int_equal(restart_policy_parse("Always", &p), -EINVAL);
	assert_int_equal(restart_policy_parse("", &p), -EINVAL);
	assert_int_equal(restart_policy_parse(NULL, &p), -EINVAL);
	assert_int_equal(restart_policy_parse("on_failure", &p), -EINVAL);
	assert_string_equal(restart_policy_name(RESTART_ON_FAILURE), "on-failure");
	assert_string_equal(restart_policy_name((enum restart_policy)99), "?");
}

static void test_wanted_matrix(void **state)
{
	(void)state;
	/* never: never */
	assert_false(restart_wanted(RESTART_NEVER, true, RESTART_EXIT_CLEAN));
	assert_false(restart_wanted(RESTART_NEVER, true, RESTART_EXIT_FAILED));
	assert_false(restart_wanted(RESTART_NEVER, true, RESTART_EXIT_UNKNOWN));
	/* on-failure: not after a clean power-off */
	assert_false(restart_wanted(RESTART_ON_FAILURE, true, RESTART_EXIT_CLEAN));
	assert_true(restart_wanted(RESTART_ON_FAILURE, true, RESTART_EXIT_FAILED));
	assert_true(restart_wanted(RESTART_ON_FAILURE, true, RESTART_EXIT_UNKNOWN));
	/* always: whatever the end */
	assert_true(restart_wanted(RESTART_ALWAYS, true, RESTART_EXIT_CLEAN));
	assert_true(restart_wanted(RESTART_ALWAYS, true, RESTART_EXIT_FAILED));
	/* stopped through the daemon (shutdown, destroy): no policy restarts it */
	assert_false(restart_wanted(RESTART_ALWAYS, false, RESTART_EXIT_CLEAN));
	assert_false(restart_wanted(RESTART_ALWAYS, false, RESTART_EXIT_FAILED));
	assert_false(restart_wanted(RESTART_ON_FAILURE, false, RESTART_EXIT_FAILED));
}

static void test_backoff_doubles_to_a_minute(void **state)
{
	static const uint32_t want[] = { 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000,
		                         60000 };
	uint32_t d = 0;

	(void)state;
	for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		d = restart_next_delay(d, 500); /* crashes half a second after each start */
		assert_int_equal(d, want[i]);
	}
}

static void test_backoff_resets_after_a_stable_run(void **state)
{
	uint32_t d = 0;

	(void)state;
	for (int i = 0; i < 10; i++)
		d = restart_next_delay(d, 0);
	assert_int_equal(d, RESTART_MAX_MS);
	/* a run just short of stable keeps the long delay */
	assert_int_equal(restart_next_delay(d, RESTART_STABLE_MS - 1), RESTART_MAX_MS);
	/* a stable run starts over at one second */
	assert_int_equal(restart_next_delay(d, RESTART_STABLE_MS), RESTART_FIRST_MS);
	assert_int_equal(restart_next_delay(d, 3600000), RESTART_FIRST_MS);
	/* odd previous values never overshoot the maximum */
	assert_int_equal(restart_next_delay(45000, 0), RESTART_MAX_MS);
	assert_int_equal(restart_next_delay(29999, 0), 59998);
	assert_int_equal(restart_next_delay(UINT32_MAX, 0), RESTART_MAX_MS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_policy_names),
		cmocka_unit_test(test_wanted_matrix),
		cmocka_unit_test(test_backoff_doubles_to_a_minute),
		cmocka_unit_test(test_backoff_resets_after_a_stable_run),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
