/* Token bucket: `rate` tokens per second, holding at most `burst`. Used for
 * disk and network limits and the rng; rate 0 means unlimited. */
#ifndef CVISOR_UTIL_RATELIMIT_H
#define CVISOR_UTIL_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct ratelimit {
	uint64_t rate;  /* tokens per second; 0 = no limit */
	uint64_t burst; /* bucket size */
	uint64_t tokens;
	uint64_t last_ns;
	uint64_t throttled; /* times a caller was told to wait */
	uint64_t debt;      /* cost already let through beyond the tokens (ratelimit_charge) */
};

/* Admit one operation of any cost: when the bucket holds tokens (and no debt
 * is left) it passes and its whole cost is taken, running into debt if need
 * be; otherwise *wait_ns says how long until the next one may pass. The rate
 * then holds exactly over time, whatever the sizes, with bursts of at most
 * `burst` plus one operation. */
bool ratelimit_charge(struct ratelimit *r, uint64_t cost, uint64_t *wait_ns);

/* Set rate and burst (burst 0: one second's worth); the bucket starts full. */
void ratelimit_init(struct ratelimit *r, uint64_t rate, uint64_t burst);
/* Take up to want tokens; returns how many were granted (all when unlimited). */
uint64_t ratelimit_take(struct ratelimit *r, uint64_t want);
/* Nanoseconds until at least n tokens are available (0 if now). */
uint64_t ratelimit_wait_ns(struct ratelimit *r, uint64_t n);
/* Monotonic clock in nanoseconds. */
uint64_t ratelimit_now_ns(void);

#endif
