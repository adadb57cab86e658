/* Retry with backoff: run an operation (a function that starts one attempt
 * and returns its future) until it succeeds, the policy gives up, the
 * overall deadline passes or the retry is cancelled. The retry is itself a
 * future, and it never leaves an attempt behind: whenever it stops an
 * attempt (per-attempt timeout, deadline, cancel) it completes only once
 * that attempt's future is done, for I/O once the kernel confirmed. */
#ifndef HALO_PATTERNS_RETRY_H
#define HALO_PATTERNS_RETRY_H

#include <stdbool.h>
#include <stdint.h>

#include "../runtime/api.h"
#include "../runtime/fut.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How a backoff delay is drawn for retry n (n = 1 before the 2nd attempt),
 * with base = base_delay_ns and cap = max_delay_ns. */
typedef enum halo_jitter {
	HALO_JITTER_FULL = 0,	  /* uniform in [0, min(cap, base * 2^(n-1))] */
	HALO_JITTER_DECORRELATED, /* uniform in [base, min(cap, 3 * previous)],
				     previous starting at base */
	HALO_JITTER_NONE,	  /* exactly min(cap, base * 2^(n-1)) */
} halo_jitter;

/* Whether a failed attempt (err < 0, its message or NULL) is worth another
 * one. */
typedef bool (*halo_retry_pred)(int err, const char *msg, void *arg);

/* A source of 64 random bits, for callers who bring their own generator. */
typedef uint64_t (*halo_rng_fn)(void *arg);

/* The policy. Zero is the default for every field; the retry copies it, so
 * it may live on the caller's stack. */
typedef struct halo_retry_policy {
	unsigned max_attempts;	     /* attempts in all, first included; 0: 3 */
	uint64_t base_delay_ns;	     /* 0: 100 ms */
	uint64_t max_delay_ns;	     /* cap on one delay; 0: 30 s */
	halo_jitter jitter;	     /* 0: full jitter */
	uint64_t attempt_timeout_ns; /* an attempt still running after this is
					cancelled and counts as -ETIMEDOUT;
					0: none */
	uint64_t timeout_ns;	     /* overall, from the start: attempts and
					delays included; 0: none */
	halo_retry_pred retry_if;    /* NULL: every error but -ECANCELED */
	void *retry_if_arg;
	uint64_t seed;	 /* of the built-in generator; 0: from the
			    clock */
	halo_rng_fn rng; /* NULL: the built-in generator */
	void *rng_arg;
} halo_retry_policy;

/* Backoff state: the delays of one retry sequence, for the retry below and
 * for hand-written loops (e.g. in a fiber with halo_sleep()). */
typedef struct halo_backoff {
	halo_retry_policy p; /* defaults filled in */
	uint64_t state;	     /* built-in generator */
	uint64_t prev_ns;    /* previous delay (decorrelated jitter) */
	unsigned n;	     /* delays drawn so far */
} halo_backoff;

/* Set b up for a new sequence under policy (NULL: defaults). */
HALO_API void halo_backoff_init(halo_backoff *b,
				const halo_retry_policy *policy);

/* The next delay in nanoseconds: always within the bounds documented at
 * halo_jitter, never above the cap. */
HALO_API uint64_t halo_backoff_next(halo_backoff *b);

/* What a retry did, filled in when its future completes. */
typedef struct halo_retry_report {
	unsigned attempts;   /* attempts started */
	int last_err;	     /* error of the last failed attempt, 0 if none */
	char last_msg[128];  /* its message (truncated), "" if none */
	uint64_t elapsed_ns; /* from the start to completion */
} halo_retry_report;

/* Starts attempt number attempt (1-based) and returns its future, whose
 * reference passes to the retry, or NULL, which ends the retry with
 * -ENOMEM. Called from halo_retry() for the first attempt and from the
 * loop's callbacks afterwards: never block. */
typedef halo_fut *(*halo_retry_fn)(halo_loop *loop, void *arg,
				   unsigned attempt);

/* A future that runs fn(loop, arg, n) under policy (NULL: defaults). It
 * completes OK with the result and value of the first attempt that
 * succeeds. It fails with the last attempt's error and message when the
 * policy gives up (attempts spent, or an error retry_if refuses), or with
 * -ETIMEDOUT (the message names the last error) when the overall timeout
 * passes, during an attempt (which is cancelled first) or when the next
 * delay would end past it. Cancelling it cancels the attempt in flight and
 * completes CANCELLED once that attempt is done (OK, like an I/O future,
 * if the attempt won the race). report (may be NULL) must stay valid
 * until the future is done. The caller owns one reference; NULL on
 * exhaustion (then fn was not called).
 * In a fiber, the first attempt is started by the fiber and an I/O attempt
 * is owned by it as usual (fiber.h); later ones are started by the loop.
 * Cancelling the fiber stops its wait, not the retry: cancel the retry's
 * future, or add it to a scope, to stop it. */
HALO_API halo_fut *halo_retry_at(halo_loop *loop,
				 const halo_retry_policy *policy,
				 halo_retry_fn fn, void *arg,
				 halo_retry_report *report, const char *file,
				 int line);
#define halo_retry(loop, policy, fn, arg, report)                              \
	halo_retry_at((loop), (policy), (fn), (arg), (report), __FILE__,       \
		      __LINE__)

#ifdef __cplusplus
}
#endif
#endif
