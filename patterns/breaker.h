/* Circuit breaker: stop calling a dependency that keeps failing, and let a
 * few probe calls find out when it is back.
 *
 * CLOSED: every call goes through; the outcomes of the last `window` calls
 * are kept, and once at least min_calls are in the window and the share of
 * failures (errors and calls slower than slow_call_ns) reaches
 * failure_ratio, the breaker opens. OPEN: every call fails at once with
 * -EAGAIN for open_ns. HALF_OPEN: exactly `probes` calls are admitted, the
 * rest fail at once; when all of them are recorded, the breaker closes if
 * their failure share is below failure_ratio and opens again otherwise.
 * The open period ends lazily: at the next acquire or
 * halo_breaker_state_now() after it, so no timer runs for an idle breaker.
 * Outcomes of calls admitted before the last state change are counted in the
 * stats only. */
#ifndef HALO_PATTERNS_BREAKER_H
#define HALO_PATTERNS_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

#include "../runtime/api.h"
#include "../runtime/fut.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum halo_breaker_state {
	HALO_BREAKER_CLOSED = 0,
	HALO_BREAKER_OPEN,
	HALO_BREAKER_HALF_OPEN,
} halo_breaker_state;

typedef struct halo_breaker halo_breaker;

/* Told of every state change, in order, from inside the call that caused
 * it (an acquire, a record, halo_breaker_state_now() or
 * halo_breaker_force()). It must not call back
 * into the breaker. */
typedef void (*halo_breaker_change_fn)(halo_breaker *br,
				       halo_breaker_state from,
				       halo_breaker_state to, void *arg);

/* Whether a failed call (err < 0) counts against the dependency. */
typedef bool (*halo_breaker_pred)(int err, void *arg);

typedef struct halo_breaker_opts {
	unsigned window;       /* calls in the sliding window; 0: 100 */
	unsigned min_calls;    /* calls in the window before the ratio
				  counts; 0: 10 (at most window) */
	double failure_ratio;  /* open at this failure share; 0: 0.5 */
	uint64_t slow_call_ns; /* slower calls count as failures; 0: none */
	uint64_t open_ns;      /* time open before half-open; 0: 5 s */
	unsigned probes;       /* calls admitted in half-open; 0: 1 */
	halo_breaker_pred is_failure; /* NULL: every error but -ECANCELED;
					 a call that is not a failure and
					 not a success (a cancelled one) is
					 forgotten */
	void *is_failure_arg;
	halo_breaker_change_fn on_change; /* may be NULL */
	void *on_change_arg;
	const char *name; /* for messages; copied pointer, keep it valid */
} halo_breaker_opts;

typedef struct halo_breaker_stats {
	uint64_t calls;	     /* admitted */
	uint64_t successes;  /* recorded, fast and OK */
	uint64_t failures;   /* recorded errors */
	uint64_t slow;	     /* recorded slow calls (OK or not) */
	uint64_t rejected;   /* refused with -EAGAIN */
	uint64_t ignored;    /* forgotten (is_failure said neither) */
	uint64_t opened;     /* transitions to OPEN */
	uint32_t window_n;   /* outcomes in the window now */
	uint32_t window_bad; /* of which failures */
	halo_breaker_state state;
} halo_breaker_stats;

/* Caller-embedded; treat the fields as private. */
struct halo_breaker {
	halo_loop *loop;
	halo_breaker_opts o;
	halo_breaker_state state;
	uint32_t epoch; /* bumped at every state change */
	uint8_t *ring;	/* window outcomes, 1 = failure */
	uint32_t head, n, bad;
	uint32_t probes_out, probes_done, probes_bad;
	uint64_t opened_at;
	halo_breaker_stats st;
};

/* What an admitted call carries until it is recorded. */
typedef struct halo_breaker_permit {
	uint64_t start_ns;
	uint32_t epoch;
	bool is_probe;
} halo_breaker_permit;

/* Set br up on loop. Returns 0, -EINVAL for bad opts (ratio outside
 * (0, 1], probes > window) or -ENOMEM. */
HALO_API int halo_breaker_init(halo_breaker *br, halo_loop *loop,
			       const halo_breaker_opts *opts);

/* Free what init took, once no admitted call is left to record (every
 * halo_breaker_call() future done). */
HALO_API void halo_breaker_close(halo_breaker *br);

/* Ask to make a call. Returns 0 and fills permit if admitted (record the
 * outcome with halo_breaker_record() exactly once), or -EAGAIN if the
 * breaker is open or its half-open probes are taken. */
HALO_API int halo_breaker_acquire(halo_breaker *br,
				  halo_breaker_permit *permit);

/* Record the outcome of an admitted call: err is 0 (or any value >= 0) for
 * success, else -errno; its duration counts from the acquire. */
HALO_API void halo_breaker_record(halo_breaker *br,
				  const halo_breaker_permit *permit,
				  int64_t err);

/* Starts the call and returns its future (its reference passes to the
 * breaker), or NULL, which fails the call with -ENOMEM without counting it
 * against the dependency. */
typedef halo_fut *(*halo_breaker_fn)(halo_loop *loop, void *arg);

/* Call fn(loop, arg) through the breaker. Returns a future that mirrors the
 * call's (result, value, error, message) and completes once the outcome is
 * recorded; cancelling it cancels the call. If the breaker refuses, fn is
 * not called and the future has already failed with -EAGAIN and a message
 * naming the breaker and its state. Caller owns one reference; NULL on
 * exhaustion. */
HALO_API halo_fut *halo_breaker_call_at(halo_breaker *br, halo_breaker_fn fn,
					void *arg, const char *file, int line);
#define halo_breaker_call(br, fn, arg)                                         \
	halo_breaker_call_at((br), (fn), (arg), __FILE__, __LINE__)

/* The current state (ending an expired open period first). */
HALO_API halo_breaker_state halo_breaker_state_now(halo_breaker *br);

/* Copy the counters. */
HALO_API void halo_breaker_get_stats(const halo_breaker *br,
				     halo_breaker_stats *out);

/* Force a state (operators: "open it now", "reset it"). Resets the window
 * and the probes; calls on_change if the state changes. */
HALO_API void halo_breaker_force(halo_breaker *br, halo_breaker_state to);

/* "closed", "open" or "half-open". */
HALO_API const char *halo_breaker_state_name(halo_breaker_state s);

#ifdef __cplusplus
}
#endif
#endif
