/* Token bucket refilled lazily from the monotonic clock. */
#include "util/ratelimit.h"

#include <time.h>

uint64_t ratelimit_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

void ratelimit_init(struct ratelimit *r, uint64_t rate, uint64_t burst)
{
	r->rate = rate;
	r->burst = burst ? burst : rate;
	r->tokens = r->burst;
	r->last_ns = ratelimit_now_ns();
	r->throttled = 0;
	r->debt = 0;
}

static void refill(struct ratelimit *r)
{
	uint64_t now = ratelimit_now_ns(), dt = now - r->last_ns;

	if (dt >= 1000000000ULL * 60 || r->rate >= 1000000000ULL * 1000000ULL) {
		r->debt = 0; /* a minute (or an absurd rate) settles everything */
		r->tokens = r->burst;
		r->last_ns = now;
		return;
	}
	uint64_t add = (uint64_t)((__uint128_t)r->rate * dt / 1000000000ULL);
	if (add == 0)
		return;
	/* advance the clock only by the time those tokens took: fractions carry over */
	r->last_ns += (uint64_t)((__uint128_t)add * 1000000000ULL / r->rate);
	/* new tokens pay debt first; only what is left is capped by the burst */
	uint64_t pay = add < r->debt ? add : r->debt;
	r->debt -= pay;
	add -= pay;
	r->tokens = add >= r->burst - r->tokens ? r->burst : r->tokens + add;
}

uint64_t ratelimit_take(struct ratelimit *r, uint64_t want)
{
	if (!r->rate)
		return want;
	refill(r);
	uint64_t got = want < r->tokens ? want : r->tokens;
	r->tokens -= got;
	if (got < want)
		r->throttled++;
	return got;
}

uint64_t ratelimit_wait_ns(struct ratelimit *r, uint64_t n)
{
	if (!r->rate)
		return 0;
	refill(r);
	if (n > r->burst)
		n = r->burst;
	if (r->tokens >= n)
		return 0;
	return (uint64_t)((__uint128_t)(n - r->tokens) * 1000000000ULL / r->rate) + 1;
}

bool ratelimit_charge(struct ratelimit *r, uint64_t cost, uint64_t *wait_ns)
{
	*wait_ns = 0;
	if (!r->rate)
		return true;
	refill(r);
	if (r->debt || !r->tokens) {
		uint64_t need = r->debt ? r->debt : 1;
		*wait_ns = (uint64_t)((__uint128_t)need * 1000000000ULL / r->rate) + 1;
		r->throttled++;
		return false;
	}
	if (cost <= r->tokens) {
		r->tokens -= cost;
	} else {
		r->debt = cost - r->tokens;
		r->tokens = 0;
	}
	return true;
}
