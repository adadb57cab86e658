/* Futures: the one currency of halo. A future is PENDING, then exactly once
 * OK, ERROR or CANCELLED. It carries an int64_t result (an I/O CQE's res, or
 * -errno) and a void * value for results built in user space.
 *
 * References and consumption: whoever creates a future or calls
 * halo_fut_ref() holds a reference and drops it with halo_fut_release().
 * A future is consumed once someone waits on it, reads it (result, value,
 * error), detaches it or calls halo_fut_consume(), or when the last reference
 * user code holds is released. Releasing any other reference consumes
 * nothing: a producer that hands a future to a consumer and releases its own
 * reference leaves the consumer responsible. The loop's internal references
 * (ready queue, kernel, timer heap, a fiber's wait) never count.
 * halo_loop_close() reports every future still alive and never consumed as
 * leaked, with the file and line that created it. */
#ifndef HALO_FUT_H
#define HALO_FUT_H

#include <stdbool.h>
#include <stdint.h>

#include "api.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct halo_loop halo_loop;
typedef struct halo_fut halo_fut;

typedef enum halo_fut_state {
	HALO_FUT_PENDING = 0,
	HALO_FUT_OK,
	HALO_FUT_ERROR,
	HALO_FUT_CANCELLED,
} halo_fut_state;

typedef void (*halo_fut_cb)(halo_fut *f, void *arg);

/* A waiter the caller embeds to be told of completion without an
 * allocation. Its callback runs from the loop's ready queue, never from inside
 * the call that completed the future. Keep it untouched while it is added. */
typedef struct halo_waiter {
	struct halo_waiter *next;
	halo_fut_cb fn;
	void *arg;
} halo_waiter;

/* Cancel hook of a user-completed future: asked to cancel the work behind f.
 * It must complete f (now or later); halo_fut_cancelled() completes it as
 * CANCELLED. */
typedef void (*halo_fut_cancel_fn)(halo_fut *f, void *arg);

/* Create a pending future that user code completes with halo_fut_resolve() or
 * halo_fut_fail(). The caller owns one reference. Returns NULL only when
 * memory is exhausted. The macro records the caller's file and line for the
 * leak report. */
HALO_API halo_fut *halo_fut_new_at(halo_loop *loop, const char *file, int line);
#define halo_fut_new(loop) halo_fut_new_at((loop), __FILE__, __LINE__)

/* A future that is already OK with result and value, for a start call that
 * has its answer at once. Its waiters still run from the ready queue. The
 * caller owns one reference; NULL only when memory is exhausted. */
HALO_API halo_fut *halo_fut_ready_at(halo_loop *loop, int64_t result,
				     void *value, const char *file, int line);
#define halo_fut_ready(loop, result, value)                                    \
	halo_fut_ready_at((loop), (result), (value), __FILE__, __LINE__)

/* A future that has already failed with err (a negative errno; anything
 * else fails it with -EINVAL) and an optional message, which is copied (as
 * for halo_fut_fail: halo_fut_msg_lost if memory runs out, the error
 * stands). For a start call that fails synchronously. The caller owns one
 * reference; NULL only when memory is exhausted. */
HALO_API halo_fut *halo_fut_failed_at(halo_loop *loop, int err, const char *msg,
				      const char *file, int line);
#define halo_fut_failed(loop, err, msg)                                        \
	halo_fut_failed_at((loop), (err), (msg), __FILE__, __LINE__)

/* A future on the loop's timers that completes OK with result and value
 * delay_ns nanoseconds from now (0: on the loop's next timer pass, never
 * inside this call). Cancelling it removes the timer and completes it
 * CANCELLED; halo_fut_resolve() or halo_fut_fail() complete it sooner. The
 * caller owns one reference; NULL only when memory is exhausted. */
HALO_API halo_fut *halo_fut_delayed_at(halo_loop *loop, uint64_t delay_ns,
				       int64_t result, void *value,
				       const char *file, int line);
#define halo_fut_delayed(loop, delay_ns, result, value)                        \
	halo_fut_delayed_at((loop), (delay_ns), (result), (value), __FILE__,   \
			    __LINE__)

/* The same, completing as ERROR with err and an optional message (copied
 * now) delay_ns nanoseconds from now; err and msg as halo_fut_failed(). The
 * message shows only once the future has failed. */
HALO_API halo_fut *halo_fut_delayed_failed_at(halo_loop *loop,
					      uint64_t delay_ns, int err,
					      const char *msg, const char *file,
					      int line);
#define halo_fut_delayed_failed(loop, delay_ns, err, msg)                      \
	halo_fut_delayed_failed_at((loop), (delay_ns), (err), (msg), __FILE__, \
				   __LINE__)

/* Complete f as OK with result and value. Returns 0, or -EALREADY if f is
 * already done (the first completion stands). */
HALO_API int halo_fut_resolve(halo_fut *f, int64_t result, void *value);

/* Complete f as ERROR with err (a negative errno) and an optional message,
 * which is copied. Without memory for the copy f still fails with err, and
 * its message is halo_fut_msg_lost ("out of memory for the error message",
 * static: compare the pointer to tell). Returns 0, -EALREADY if f is done,
 * -EINVAL if err >= 0. */
HALO_API int halo_fut_fail(halo_fut *f, int err, const char *msg);
HALO_API extern const char halo_fut_msg_lost[];

/* Complete f as CANCELLED (result -ECANCELED). For cancel hooks and for the
 * code that owns f. Returns 0 or -EALREADY. */
HALO_API int halo_fut_cancelled(halo_fut *f);

/* Set the hook called when someone cancels the user-completed future f.
 * Without a hook, cancelling completes f as CANCELLED at once. */
HALO_API void halo_fut_set_cancel(halo_fut *f, halo_fut_cancel_fn fn,
				  void *arg);

/* Ask for f to be cancelled. An I/O future is cancelled by the kernel and
 * completes when the kernel lets go of its buffers (OK if the operation won
 * the race). Returns 0 if the request was made, -EALREADY if f is done. */
HALO_API int halo_fut_cancel(halo_fut *f);

/* The state of f. Does not consume f. */
HALO_API halo_fut_state halo_fut_status(const halo_fut *f);

/* True once f is OK, ERROR or CANCELLED. Does not consume f. */
HALO_API bool halo_fut_is_done(const halo_fut *f);

/* The result of a done future: its result if OK, its -errno if ERROR,
 * -ECANCELED if CANCELLED; -EAGAIN while pending. Marks f consumed. */
HALO_API int64_t halo_fut_result(halo_fut *f);

/* The value a done future was resolved with (NULL otherwise). Marks f
 * consumed. */
HALO_API void *halo_fut_value(halo_fut *f);

/* The error of f without failing: 0 if pending or OK, the -errno if ERROR,
 * -ECANCELED if CANCELLED. Marks f consumed. */
HALO_API int halo_fut_error(halo_fut *f);

/* The message given with the error of a failed f, or NULL. Valid while f
 * is referenced. */
HALO_API const char *halo_fut_error_msg(const halo_fut *f);

/* Wait until f is done and return halo_fut_result(f). Inside a fiber the
 * fiber suspends and the loop runs on (-ECANCELED if the fiber is cancelled
 * meanwhile); on the loop's thread outside any callback it drives the loop;
 * inside a plain callback it returns -EDEADLK at once, as it does when the
 * loop runs out of work with f still pending. Marks f consumed. */
HALO_API int64_t halo_fut_wait(halo_fut *f);

/* halo_fut_wait(), then release the caller's reference. */
HALO_API int64_t halo_fut_join(halo_fut *f);

/* Call cb(f, arg) from the ready queue once f is done (next tick if it is
 * already done). Returns 0 or -ENOMEM. */
HALO_API int halo_fut_on_done(halo_fut *f, halo_fut_cb cb, void *arg);

/* Add a caller-embedded waiter; w->fn and w->arg must be set. */
HALO_API void halo_fut_add_waiter(halo_fut *f, halo_waiter *w);

/* Remove a waiter that has not been called yet. Returns true if removed. */
HALO_API bool halo_fut_remove_waiter(halo_fut *f, halo_waiter *w);

/* Take another reference to f, for the caller or for a consumer it hands f
 * to. Returns f. */
HALO_API halo_fut *halo_fut_ref(halo_fut *f);

/* Drop a reference (NULL is ignored); the last one frees f (an I/O future's
 * memory stays until the kernel's last CQE). Dropping the last reference
 * that user code holds marks f consumed; dropping an earlier one does not,
 * so a consumer that still holds f and never looks at it is reported. */
HALO_API void halo_fut_release(halo_fut *f);

/* Give up interest in f: the work goes on, its outcome is discarded, f is
 * marked consumed and the caller's reference is released. */
HALO_API void halo_fut_detach(halo_fut *f);

/* Mark f consumed without reading it (for code that hands results on). */
HALO_API void halo_fut_consume(halo_fut *f);

/* The loop f belongs to. */
HALO_API halo_loop *halo_fut_loop(const halo_fut *f);

/* Where f was created, for diagnostics. */
HALO_API const char *halo_fut_origin(const halo_fut *f, int *line);

#ifdef __cplusplus
}
#endif
#endif
