/* Fibers: stackful tasks on the loop's thread. A fiber runs until it waits on
 * a future, yields or sleeps; the loop runs on meanwhile. Stacks come from a
 * per-loop pool, each with a guard page below it, so that an overflow faults
 * instead of corrupting memory. */
#ifndef HALO_FIBER_H
#define HALO_FIBER_H

#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "fut.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A fiber's body; its return value becomes the result of the fiber's future
 * (a negative value means -errno and completes the future as ERROR). */
typedef int64_t (*halo_fiber_fn)(halo_loop *loop, void *arg);

typedef struct halo_fiber_opts {
	size_t stack_size; /* 0: the loop's fiber_stack_size */
} halo_fiber_opts;

/* Start fn(loop, arg) as a fiber; it first runs from the ready queue, not
 * inside this call. Returns the fiber's future (caller owns a reference), or
 * NULL on exhaustion. Cancelling it makes the fiber's current or next wait
 * return -ECANCELED; the future ends CANCELLED. */
HALO_API halo_fut *halo_spawn_at(halo_loop *loop, halo_fiber_fn fn, void *arg,
				 const halo_fiber_opts *opts, const char *file,
				 int line);
#define halo_spawn(loop, fn, arg)                                              \
	halo_spawn_at((loop), (fn), (arg), NULL, __FILE__, __LINE__)
#define halo_spawn_opts(loop, fn, arg, opts)                                   \
	halo_spawn_at((loop), (fn), (arg), (opts), __FILE__, __LINE__)

/* Let the other ready work and this tick's I/O run, then resume. Returns 0,
 * -ECANCELED if the fiber was cancelled, -EPERM outside a fiber. */
HALO_API int halo_yield(halo_loop *loop);

/* Sleep ns nanoseconds: a fiber suspends, the loop's thread outside callbacks
 * drives the loop. Returns 0, -ECANCELED, or -EDEADLK from a callback. */
HALO_API int halo_sleep(halo_loop *loop, uint64_t ns);

/* True if the running fiber has been asked to cancel. */
HALO_API int halo_fiber_cancelled(const halo_loop *loop);

#ifdef __cplusplus
}
#endif
#endif
