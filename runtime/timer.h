/* Timers: a 4-ary min-heap of deadlines in the loop. The nearest deadline is
 * the wait timeout of the tick's io_uring_enter, so a million pending timers
 * cost no SQE and no system call of their own. */
#ifndef HALO_TIMER_H
#define HALO_TIMER_H

#include <stdint.h>

#include "api.h"
#include "fut.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A future that completes OK (result 0) at deadline_ns on CLOCK_MONOTONIC
 * (see halo_now_ns()). Equal deadlines fire in creation order. Cancelling it
 * removes the timer. Caller owns a reference; NULL on exhaustion. */
HALO_API halo_fut *halo_timer_at_(halo_loop *loop, uint64_t deadline_ns,
				  const char *file, int line);
#define halo_timer_at(loop, deadline_ns)                                       \
	halo_timer_at_((loop), (deadline_ns), __FILE__, __LINE__)

/* A future that completes OK ns nanoseconds from now. */
#define halo_timer_after(loop, ns)                                             \
	halo_timer_at_((loop), halo_now_ns() + (ns), __FILE__, __LINE__)

/* Number of pending timers. */
HALO_API uint32_t halo_timer_pending(const halo_loop *loop);

/* The nearest pending deadline, or UINT64_MAX if none. */
HALO_API uint64_t halo_timer_next(const halo_loop *loop);

#ifdef __cplusplus
}
#endif
#endif
