/* An adaptive concurrency limit: how many requests may be in flight to a
 * backend, learnt from the latency they see. While a window's mean latency
 * holds within tolerance x the baseline (the lowest latency seen: the
 * backend unloaded) and the limit is actually used, the limit rises by one
 * per window of samples (additive increase); when the mean climbs past
 * it, or a request fails, it is
 * multiplied by backoff (multiplicative decrease). This is the AIMD limiter
 * of Netflix's concurrency-limits, written for one loop: no locks, no
 * allocation, no loop of its own, so any pattern (or several DAG runs at
 * once) can share one.
 *
 * Use: take a permit with halo_adaptive_try_acquire(), a caller-embedded
 * waiter or the future of halo_adaptive_acquire(), start the work, then
 * give the permit back with halo_adaptive_release() and tell the limiter
 * what the work saw with halo_adaptive_sample(). All on the loop's thread. */
#ifndef HALO_PATTERNS_ADAPTIVE_H
#define HALO_PATTERNS_ADAPTIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../runtime/api.h"
#include "../runtime/fut.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct halo_adaptive_opts {
	uint32_t initial; /* starting limit; default 4 */
	uint32_t min;	  /* never below; default 1 */
	uint32_t max;	  /* never above; default 1024 */
	uint32_t window;  /* samples per decision at least (a window is
			     also at least the limit's worth); default 8 */
	double tolerance; /* mean latency over baseline x this is overload;
			     default 1.5 */
	double backoff;	  /* decrease factor in (0, 1); default 0.8 */
} halo_adaptive_opts;

/* A caller-embedded waiter for a permit; set fn (and arg). Untouched while
 * queued. */
typedef struct halo_adaptive_waiter {
	struct halo_adaptive_waiter *next;
	/* Called with the permit already taken for the waiter, from inside
	 * the halo_adaptive_release() or halo_adaptive_sample() call that
	 * freed it: do little (note the permit, start work), and never free
	 * the limiter here. */
	void (*fn)(struct halo_adaptive_waiter *w);
	void *arg;
	bool queued; /* read-only: true while in the queue */
} halo_adaptive_waiter;

/* What a sample tells the limiter. */
typedef enum halo_adaptive_outcome {
	HALO_ADAPTIVE_OK = 0,  /* done; its latency counts */
	HALO_ADAPTIVE_DROPPED, /* failed or timed out: decrease */
	HALO_ADAPTIVE_IGNORE,  /* cancelled or unused: no information */
} halo_adaptive_outcome;

/* Caller-embedded; treat the fields as private and read them with the
 * functions below. */
typedef struct halo_adaptive {
	halo_adaptive_opts o;
	double limit;
	uint32_t inflight, peak;
	uint64_t baseline_ns;	    /* lowest latency seen; 0: none */
	uint64_t sum_ns, window_ns; /* the window's sum and start */
	uint32_t samples, dropped;
	uint64_t decreases, increases;
	halo_adaptive_waiter *head, *tail;
	size_t waiting_n;
} halo_adaptive;

/* Set up a with opts (NULL: defaults). Returns 0, or -EINVAL if min > max,
 * initial is outside [min, max], backoff is not in (0, 1) or tolerance is
 * not above 1. */
HALO_API int halo_adaptive_init(halo_adaptive *a,
				const halo_adaptive_opts *opts);

/* Take a permit if the limit allows one and nobody is queued (FIFO).
 * Returns true if taken. */
HALO_API bool halo_adaptive_try_acquire(halo_adaptive *a);

/* Queue w for the next free permit; w->fn is called once one is taken for
 * it. w must not be queued already. */
HALO_API void halo_adaptive_wait(halo_adaptive *a, halo_adaptive_waiter *w);

/* A future that completes OK once a permit is taken for it, in queue
 * order (already OK if one is free and nobody waits): for fibers and code
 * that awaits. Cancel it while pending to leave the queue; once OK the
 * caller holds the permit (halo_adaptive_release() it, and sample). The
 * caller owns a reference; NULL on exhaustion. */
HALO_API halo_fut *halo_adaptive_acquire_at(halo_adaptive *a, halo_loop *loop,
					    const char *file, int line);
#define halo_adaptive_acquire(a, loop)                                         \
	halo_adaptive_acquire_at((a), (loop), __FILE__, __LINE__)

/* Take w out of the queue. Returns true if it was queued. */
HALO_API bool halo_adaptive_cancel_wait(halo_adaptive *a,
					halo_adaptive_waiter *w);

/* Give a permit back; queued waiters get it in order while the limit
 * allows. */
HALO_API void halo_adaptive_release(halo_adaptive *a);

/* Record what one request saw: its latency in ns (up to now, on
 * CLOCK_MONOTONIC) and its outcome. Every window of samples moves the limit
 * (see the top of this file); a request that began before the current
 * window is not counted, since it ran under the previous limit. A raised
 * limit grants permits to queued waiters at once. */
HALO_API void halo_adaptive_sample(halo_adaptive *a, uint64_t latency_ns,
				   halo_adaptive_outcome outcome);

/* The current limit (whole permits). */
HALO_API uint32_t halo_adaptive_limit(const halo_adaptive *a);

/* Permits taken and not given back. */
HALO_API uint32_t halo_adaptive_inflight(const halo_adaptive *a);

/* The baseline latency (the lowest seen), 0 before the first sample. */
HALO_API uint64_t halo_adaptive_baseline(const halo_adaptive *a);

#ifdef __cplusplus
}
#endif
#endif
