/* Waiting on a set of futures: all of them, the first to finish, or the first
 * to fail, with an optional absolute deadline. halo_wait never raises a
 * future's error and, unless asked, never cancels what is still running: the
 * caller reads each future (halo_fut_result, halo_fut_error) and decides. */
#ifndef HALO_PATTERNS_WAIT_H
#define HALO_PATTERNS_WAIT_H

#include <stddef.h>
#include <stdint.h>

#include "../runtime/api.h"
#include "../runtime/fut.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What halo_wait waits for (the low byte of mode). */
#define HALO_ALL_COMPLETED 0u
#define HALO_FIRST_COMPLETED 1u
#define HALO_FIRST_ERROR 2u /* first ERROR or CANCELLED; else all done */
#define HALO_WAIT_MODE_MASK 0xffu

/* OR into mode: once halo_wait returns (condition met, deadline passed or
 * wait interrupted), cancel every future not done yet and wait until all of
 * them are done, so the kernel has let go of their buffers; also when memory
 * is short (then one at a time, marking them consumed). */
#define HALO_WAIT_CANCEL_REST 0x100u

typedef struct halo_wait_result {
	int status;	    /* 0 met; -ETIMEDOUT; -ECANCELED (the waiting
			       fiber was cancelled); -EDEADLK (in a callback, or
			       nothing left could finish them); -ENOMEM (no
			       memory for the waiters: nothing was waited
			       for, except that a wait for one future
			       without deadline needs none and goes on) */
	size_t done_n;	    /* futures done when the wait ended, before any
			       cancel-rest */
	size_t first;	    /* index of the first future seen done, or
			       SIZE_MAX */
	size_t first_error; /* index of the first ERROR/CANCELLED future seen,
			       or SIZE_MAX */
	size_t cancelled_n; /* cancel requests made by HALO_WAIT_CANCEL_REST */
} halo_wait_result;

/* Wait until the mode's condition holds for futs[0..n) or until deadline_ns
 * (absolute CLOCK_MONOTONIC, see halo_now_ns(); 0 = none). In a fiber it
 * suspends; on the loop's thread outside callbacks it drives the loop. The
 * futures stay owned by the caller and are not consumed; already-done
 * futures count in index order, later ones in completion order. */
HALO_API halo_wait_result halo_wait(halo_loop *loop, halo_fut *const *futs,
				    size_t n, unsigned mode,
				    uint64_t deadline_ns);

/* Ask every not-done future of futs[0..n) (NULL entries skipped) to cancel.
 * Returns the number of cancel requests made; the futures are done only
 * when the work behind them stopped (wait for them). */
HALO_API size_t halo_cancel_all(halo_fut *const *futs, size_t n);

#ifdef __cplusplus
}
#endif
#endif
