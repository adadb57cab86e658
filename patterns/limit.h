/* Limits: a FIFO-fair semaphore, a bounded-concurrency map and a
 * token-bucket rate limiter. Every wait is a future that completes strictly
 * in request order; cancelling a pending request takes it out of the queue
 * without losing a permit or a token. */
#ifndef HALO_PATTERNS_LIMIT_H
#define HALO_PATTERNS_LIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../runtime/api.h"
#include "../runtime/fut.h"

#ifdef __cplusplus
extern "C" {
#endif

struct halo_limit_req;

/* A queue of pending requests (private). */
typedef struct halo_limit_queue {
	struct halo_limit_req *head, *tail;
	size_t n;
} halo_limit_queue;

/* Caller-embedded; treat the fields as private. */
typedef struct halo_sem {
	halo_loop *loop;
	int64_t permits;
	halo_limit_queue q;
} halo_sem;

/* Set up sem on loop with permits free permits. */
HALO_API void halo_sem_init(halo_sem *sem, halo_loop *loop, int64_t permits);

/* A future that completes OK once a permit is granted, strictly in request
 * order (already OK if a permit is free and nobody waits). Cancel it while
 * pending to leave the queue; once OK the caller holds the permit and gives
 * it back with halo_sem_release(). Caller owns a reference; NULL on
 * exhaustion. */
HALO_API halo_fut *halo_sem_acquire_at(halo_sem *sem, const char *file,
				       int line);
#define halo_sem_acquire(sem) halo_sem_acquire_at((sem), __FILE__, __LINE__)

/* Take a permit now if one is free and nobody waits. Returns true if
 * taken. */
HALO_API bool halo_sem_try_acquire(halo_sem *sem);

/* Give a permit back: the head of the queue gets it, else it is free. */
HALO_API void halo_sem_release(halo_sem *sem);

/* Number of queued acquires. */
HALO_API size_t halo_sem_waiting(const halo_sem *sem);

/* Cancel every queued acquire. */
HALO_API void halo_sem_close(halo_sem *sem);

/* Starts the work for inputs[idx]; returns its future (the map owns it) or
 * NULL, which fails the item with -ENOMEM. Runs from halo_map() for the
 * first k items and from the loop's callbacks afterwards: never block. */
typedef halo_fut *(*halo_map_fn)(halo_loop *loop, void *input, size_t idx);

/* Called in completion order with each done item (f borrowed). */
typedef void (*halo_map_each_fn)(halo_fut *f, size_t idx, void *arg);

typedef struct halo_map_opts {
	int64_t *results;	 /* n slots, input order; may be NULL; valid
				    until the map is done */
	halo_map_each_fn on_each; /* unordered delivery; may be NULL */
	void *arg;		 /* for on_each */
	bool cancel_on_error;	 /* cancel the in-flight items at the first
				    failure (default: let them finish) */
} halo_map_opts;

/* Run fn over inputs[0..n) (inputs may be NULL: fn gets NULL) with at most k
 * items in flight, starting the next item as one finishes. The future
 * completes OK with result n and value opts->results, or with the first
 * failure, after no started item is pending; no item starts after a
 * failure. Cancelling it cancels the in-flight items. Caller owns a
 * reference; NULL on exhaustion or k == 0. */
HALO_API halo_fut *halo_map_at(halo_loop *loop, void *const *inputs, size_t n,
			       size_t k, halo_map_fn fn,
			       const halo_map_opts *opts, const char *file,
			       int line);
#define halo_map(loop, inputs, n, k, fn, opts)                                 \
	halo_map_at((loop), (inputs), (n), (k), (fn), (opts), __FILE__,        \
		    __LINE__)

/* Caller-embedded token bucket; treat the fields as private. */
typedef struct halo_ratelimit {
	halo_loop *loop;
	double rate, burst, tokens;
	uint64_t last_ns;
	halo_limit_queue q;
	halo_fut *timer;
	halo_waiter tw;
} halo_ratelimit;

/* Set up rl: rate_per_s tokens per second, at most burst stored (the bucket
 * starts full). Returns 0 or -EINVAL (rate <= 0 or burst < 1). */
HALO_API int halo_ratelimit_init(halo_ratelimit *rl, halo_loop *loop,
				 double rate_per_s, double burst);

/* A future that completes OK when a token is taken for it, in request
 * order; a loop timer wakes the queue, nothing polls (without memory for
 * that timer, the queued futures fail with -ENOMEM). Cancel it while
 * pending to leave the queue. Caller owns a reference; NULL on
 * exhaustion. */
HALO_API halo_fut *halo_ratelimit_acquire_at(halo_ratelimit *rl,
					     const char *file, int line);
#define halo_ratelimit_acquire(rl)                                             \
	halo_ratelimit_acquire_at((rl), __FILE__, __LINE__)

/* Cancel every queued acquire and stop the timer. */
HALO_API void halo_ratelimit_close(halo_ratelimit *rl);

#ifdef __cplusplus
}
#endif
#endif
