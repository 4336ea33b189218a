/* Restart policy and exponential back-off: 1 s, 2 s, 4 s ... 60 s; a run of a
 * minute or more starts the sequence again. */
#include "daemon/restart.h"

#include <errno.h>
#include <string.h>

static const char *const policy_names[] = {
	[RESTART_NEVER] = "never",
	[RESTART_ON_FAILURE] = "on-failure",
	[RESTART_ALWAYS] = "always",
};

const char *restart_policy_name(enum restart_policy p)
{
	if ((unsigned)p >= sizeof(policy_names) / sizeof(policy_names[0]))
		return "?";
	return policy_names[p];
}

int restart_policy_parse(const char *s, enum restart_policy *out)
{
	for (unsigned i = 0; i < sizeof(policy_names) / sizeof(policy_names[0]); i++) {
		if (s && !strcmp(s, policy_names[i])) {
			*out = (enum restart_policy)i;
			return 0;
		}
	}
	return -EINVAL;
}

bool restart_wanted(enum restart_policy p, bool want_run, enum restart_exit how)
{
	if (!want_run)
		return false;
	switch (p) {
	case RESTART_ALWAYS:
		return true;
	case RESTART_ON_FAILURE:
		return how != RESTART_EXIT_CLEAN;
	case RESTART_NEVER:
		break;
	}
	return false;
}

uint32_t restart_next_delay(uint32_t prev_ms, uint64_t ran_ms)
{
	if (prev_ms == 0 || ran_ms >= RESTART_STABLE_MS)
		return RESTART_FIRST_MS;
	if (prev_ms >= RESTART_MAX_MS / 2)
		return RESTART_MAX_MS;
	return prev_ms * 2;
}
