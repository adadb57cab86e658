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
 * NULL on exhaustion. Cancelling it cancels the operations the fiber owns
 * (see below) and makes the fiber's current or next wait return -ECANCELED,
 * once the kernel has let go of them; the future ends CANCELLED.
 *
 * The rule that keeps a fiber's stack safe: an I/O operation started while a
 * fiber runs belongs to that fiber until the kernel's last CQE for it.
 * - Cancelling the fiber cancels every operation it owns, the one it waits
 *   on first of all, and its wait returns only when the kernel has confirmed
 *   them all. A future it only waits on but did not start (another fiber's,
 *   a promise, a shared load) is not cancelled: the fiber stops waiting.
 * - A fiber that returns while operations it owns are in flight (started and
 *   never waited for) has them cancelled; its future completes, and its
 *   stack is reused, only after the kernel let go of them
 *   (halo_stats.fiber_exit_drains counts such fibers, fiber_op_cancels the
 *   operations cancelled for a fiber).
 * - Multishot handles (accept, recv, poll) and closes are never owned: they
 *   outlive the fiber that started them (a close cancelled before it ran
 *   would leave its fd open). halo_fiber_disown() lets any other
 *   operation outlive its fiber, when its buffers are not on the stack. */
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

/* Suspend the running fiber until halo_fiber_unpark() or a cancel: a wait
 * on no future, for code that keeps its own record of what the fiber waits
 * for and would otherwise make a promise per wait. While parked, *slot
 * holds the fiber's future (no reference) for the waker to name; park
 * clears it on return, so *slot must stay valid until then. Returns the
 * value given to unpark, -ECANCELED (once the kernel let go of the
 * operations the fiber owns, as for any wait), -EPERM outside a fiber. */
HALO_API int64_t halo_fiber_park(halo_loop *loop, halo_fut **slot);

/* Resume fiber f, parked in halo_fiber_park(), from the ready queue: its
 * park returns v. Never allocates. Returns 0, -EALREADY if f is not parked
 * (it runs, waits on a future, was unparked already or ended), -EINVAL if
 * f is not a fiber. */
HALO_API int halo_fiber_unpark(halo_fut *f, int64_t v);

/* True if the running fiber has been asked to cancel. */
HALO_API int halo_fiber_cancelled(const halo_loop *loop);

/* Let the operation f outlive the fiber that started it: cancelling or
 * ending the fiber no longer cancels f, and the fiber's stack may be reused
 * while f is in flight, so f's buffers must not lie on that stack. Returns
 * 0, or -EINVAL if f is not an I/O operation. */
HALO_API int halo_fiber_disown(halo_fut *f);

/* Record msg (copied) as the message of the running fiber's error, and
 * return err, so that a body can end with
 * `return halo_fiber_fail(loop, -EPROTO, "bad header");`. The fiber's future
 * then fails with err and halo_fut_error_msg() gives msg. Returns err, or
 * -EINVAL if err >= 0, -EPERM outside a fiber. */
HALO_API int64_t halo_fiber_fail(halo_loop *loop, int err, const char *msg);

/* Set the value the running fiber's future resolves with (read with
 * halo_fut_value()) when the fiber returns a result >= 0. The fiber owns
 * what value points to until it hands it on. Returns 0, or -EPERM outside a
 * fiber. */
HALO_API int halo_fiber_set_value(halo_loop *loop, void *value);

#ifdef __cplusplus
}
#endif
#endif
