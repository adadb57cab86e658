/* Sagas: a sequence of steps, each a transaction (a future) with a
 * compensation that undoes it. Steps run in table order; consecutive steps
 * flagged HALO_SAGA_ASYNC run concurrently, and the next synchronous step
 * starts when all of them are done. When a step fails (or times out), the
 * other steps of its group are cancelled and waited for, then the
 * compensations of every step that completed run one at a time, in reverse
 * table order. The saga is a future: wait on it in a fiber or on the loop's
 * thread outside callbacks.
 *
 * What a compensation can ask for while it runs:
 * - retry: give its step a comp_retry policy; a failed compensation is run
 *   again under it (patterns/retry);
 * - abort: halo_saga_abort() stops compensating once it is done; the saga
 *   fails and its report says where it stopped;
 * - continue: halo_saga_continue() recovers forward. Its own step keeps its
 *   effect (it undid nothing), the failed step counts as done with the
 *   substitute result and value, and the saga goes forward again from the
 *   first step whose effect is not in place (steps compensated meanwhile
 *   run again). Once per saga.
 * A compensation that fails for good without asking anything is reported
 * and compensating goes on with the earlier steps.
 *
 * An asynchronous group is bounded in time by its steps' timeouts (each
 * step's own, or the saga's step_timeout_ns). Up to about a dozen steps, a
 * saga's state comes from the loop's pools: no heap after warm-up. */
#ifndef HALO_PATTERNS_SAGA_H
#define HALO_PATTERNS_SAGA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../runtime/api.h"
#include "../runtime/fut.h"
#include "retry.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HALO_SAGA_MAX_STEPS 64

/* A running saga, handed to every step and compensation; valid until the
 * saga's future is done. */
typedef struct halo_saga halo_saga;

/* Starts a transaction or a compensation and returns its future (its
 * reference passes to the saga), or NULL, which fails it with -ENOMEM.
 * ctx is the saga's. Called from halo_saga_run() for the first steps and
 * from the loop's callbacks afterwards: never block. */
typedef halo_fut *(*halo_saga_fn)(halo_saga *sg, void *ctx);

/* step flags */
#define HALO_SAGA_ASYNC (1u << 0) /* runs alongside its async neighbours */

typedef struct halo_saga_step {
	const char *name;	 /* the key of its effect; unique in the saga */
	halo_saga_fn run;	 /* the transaction */
	halo_saga_fn compensate; /* NULL: nothing to undo */
	unsigned flags;
	uint64_t timeout_ns; /* a transaction still running after this is
				cancelled and fails with -ETIMEDOUT; 0:
				the saga's step_timeout_ns */
	const halo_retry_policy *comp_retry; /* NULL: compensate once;
						 copied when the
						 compensation starts */
} halo_saga_step;

typedef enum halo_saga_event_kind {
	HALO_SAGA_STEP_START = 0,
	HALO_SAGA_STEP_END,
	HALO_SAGA_COMP_START,
	HALO_SAGA_COMP_END,
} halo_saga_event_kind;

typedef struct halo_saga_event {
	halo_saga_event_kind kind;
	size_t step;	      /* index in the table */
	const char *name;     /* the step's name */
	int64_t result;	      /* END: the result, or -errno */
	uint64_t duration_ns; /* END: since the matching START */
} halo_saga_event;

typedef void (*halo_saga_trace_fn)(halo_saga *sg, const halo_saga_event *ev,
				   void *arg);

typedef enum halo_saga_outcome {
	HALO_SAGA_COMMITTED = 0, /* every step's effect is in place (one may
				    be a substitute: see recovered_at) */
	HALO_SAGA_COMPENSATED,	 /* a step failed; every compensation that
				    ran succeeded */
	HALO_SAGA_COMP_FAILED,	 /* a step failed; some compensation failed
				    for good (comp_failed) */
	HALO_SAGA_ABORTED,	 /* a compensation asked to stop */
} halo_saga_outcome;

/* What the saga did, filled in before its future completes. */
typedef struct halo_saga_report {
	halo_saga_outcome outcome;
	size_t failed_step;	 /* index of the (last) failed step, SIZE_MAX
				    if none */
	const char *failed_name; /* its name, NULL if none */
	int err;		 /* its error (-ETIMEDOUT for a timeout,
				    -ECANCELED if the saga was cancelled) */
	char msg[128];		 /* its message (truncated), "" if none */
	uint64_t comp_ran;	 /* bit i: step i's compensation ran */
	uint64_t comp_ok;	 /* bit i: ... and succeeded */
	uint64_t comp_failed;	 /* bit i: ... and failed for good */
	uint8_t comp_order[HALO_SAGA_MAX_STEPS]; /* steps compensated, in the
						    order they ran (the first
						    64) */
	size_t comp_n;
	size_t aborted_at;   /* step whose compensation aborted, or
				SIZE_MAX */
	size_t recovered_at; /* step whose compensation continued, or
				SIZE_MAX */
	uint64_t elapsed_ns;
} halo_saga_report;

/* Told once, before the saga's future completes, how it ended. */
typedef void (*halo_saga_final_fn)(halo_saga *sg,
				   const halo_saga_report *report, void *arg);

typedef struct halo_saga_opts {
	uint64_t step_timeout_ns; /* for steps without their own; 0: none */
	halo_saga_trace_fn trace; /* every start and end; may be NULL */
	void *trace_arg;
	halo_saga_final_fn on_final; /* may be NULL */
	void *final_arg;
	halo_saga_report *report; /* may be NULL; valid until done */
} halo_saga_opts;

/* Run the saga steps[0..n) with ctx (handed to every step). The future
 * completes OK with result n and the last step's value once committed;
 * otherwise it fails with the failed step's error and a message that
 * names the step and says what the compensations did (outcome in the
 * report). Cancelling it cancels the steps in flight and compensates what
 * completed; it then completes CANCELLED (compensations are never
 * cancelled). steps must stay valid until the future is done. Caller owns
 * one reference; NULL on exhaustion; an already failed future (-EINVAL)
 * for n == 0, n > HALO_SAGA_MAX_STEPS or a step without name or run. */
HALO_API halo_fut *halo_saga_run_at(halo_loop *loop,
				    const halo_saga_step *steps, size_t n,
				    void *ctx, const halo_saga_opts *opts,
				    const char *file, int line);
#define halo_saga_run(loop, steps, n, ctx, opts)                               \
	halo_saga_run_at((loop), (steps), (n), (ctx), (opts), __FILE__,        \
			 __LINE__)

/* The effect of the step called name: 0 and its result and value (either
 * pointer may be NULL) once its transaction succeeded (or was recovered),
 * -EAGAIN while it has none (not run, running, failed or compensated),
 * -ENOENT if no step has that name. */
HALO_API int halo_saga_effect(const halo_saga *sg, const char *name,
			      int64_t *result, void **value);

/* The value of step name's effect, NULL if it has none. */
HALO_API void *halo_saga_value(const halo_saga *sg, const char *name);

/* The failed step while compensating: its index (and name, err), or -1
 * before any step failed. */
HALO_API int halo_saga_failure(const halo_saga *sg, const char **name,
			       int *err);

/* From a running compensation: stop compensating once it is done. Returns
 * 0, or -EINVAL when no compensation runs. */
HALO_API int halo_saga_abort(halo_saga *sg);

/* From a running compensation: recover forward with result and value as
 * the failed step's effect (see above). Returns 0, -EINVAL when no
 * compensation runs, -EALREADY if the saga recovered once already. */
HALO_API int halo_saga_continue(halo_saga *sg, int64_t result, void *value);

/* The saga's loop. */
HALO_API halo_loop *halo_saga_loop(const halo_saga *sg);

/* "committed", "compensated", "compensation failed", "aborted". */
HALO_API const char *halo_saga_outcome_name(halo_saga_outcome o);

#ifdef __cplusplus
}
#endif
#endif
