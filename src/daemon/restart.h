/* Restart policy and back-off of supervised VMs, kept free of side effects so
 * that it can be tested on its own. */
#ifndef CVISOR_DAEMON_RESTART_H
#define CVISOR_DAEMON_RESTART_H

#include <stdbool.h>
#include <stdint.h>

enum restart_policy { RESTART_NEVER, RESTART_ON_FAILURE, RESTART_ALWAYS };

/* How a VM process ended. */
enum restart_exit {
	RESTART_EXIT_CLEAN,   /* status 0: the guest powered off, or SIGTERM */
	RESTART_EXIT_FAILED,  /* another status, or killed by a signal */
	RESTART_EXIT_UNKNOWN, /* not our child (adopted after a daemon restart): no status */
};

#define RESTART_FIRST_MS 1000u    /* first delay */
#define RESTART_MAX_MS 60000u     /* the delay doubles up to this */
#define RESTART_STABLE_MS 60000u  /* a run this long resets the delay */

/* The policy's name: "never", "on-failure", "always". */
const char *restart_policy_name(enum restart_policy p);
/* Parse a policy name. 0 or -EINVAL. */
int restart_policy_parse(const char *s, enum restart_policy *out);
/* Whether a VM that ended as `how` is started again. want_run is the desired
 * state at the time (false after shutdown/destroy through the daemon). An
 * unknown end counts as a failure. */
bool restart_wanted(enum restart_policy p, bool want_run, enum restart_exit how);
/* The delay before the next restart, given the previous delay (0: none yet)
 * and how long the run that just ended lasted. */
uint32_t restart_next_delay(uint32_t prev_ms, uint64_t ran_ms);

#endif
