/* A group of loops: N loops on N threads, one per CPU, that send each other
 * functions to run. Messages travel through a bounded single-producer,
 * single-consumer ring per ordered pair of loops (shared memory, C11
 * atomics, no locks); the kernel is only the doorbell: IORING_OP_MSG_RING
 * posts a CQE on the target's ring (one per batch: a producer rings only
 * when the consumer has drained since the last ring), or, where the kernel
 * lacks MSG_RING (or HALO_FEATURES_OFF=msg_ring), an eventfd per loop that
 * the loop keeps a read armed on.
 *
 * Guarantees: messages from one loop to another run in the order they were
 * posted; at most pair_inflight messages (and as many calls awaiting their
 * reply) are in flight per ordered pair, beyond which post and call say
 * -EAGAIN and halo_group_room() waits for room; a message to a loop that
 * has begun its final drain is refused with -ESHUTDOWN at the sender and
 * never runs; one accepted before runs, before that loop closes.
 *
 * Stop: each loop calls the user's on_stop (which may return a future to
 * wait for: a server's drain), then refuses new messages, runs those already
 * queued, cancels the calls it still serves, waits for the replies to its own
 * calls (or for their targets to close), closes, and reports its leaked
 * futures. A program without a group pays nothing for it. */
#ifndef HALO_GROUP_H
#define HALO_GROUP_H

#include <stdint.h>

#include "api.h"
#include "fut.h"
#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct halo_group halo_group;

/* Called on each loop's own thread before it runs: set up what the loop
 * serves. May drive the loop (halo_fut_wait). Return 0, or -errno to fail
 * halo_group_start(). */
typedef int (*halo_group_init_fn)(halo_group *g, halo_loop *loop,
				  unsigned index, void *arg);

/* Called on each loop's own thread when the group stops, before the loop
 * drains its messages. Return NULL, or a future of this loop (the group
 * consumes and releases it) that the drain waits for: a server's stop. */
typedef halo_fut *(*halo_group_stop_fn)(halo_group *g, halo_loop *loop,
					unsigned index, void *arg);

/* A message: runs on the target loop, from its ready queue. */
typedef void (*halo_group_post_fn)(halo_loop *loop, void *arg);

/* A call: runs on the target loop and returns a future of that loop whose
 * outcome (state, result, value; not the error message) becomes the
 * caller's; a plain value is returned as halo_fut_ready(loop, v, p). The
 * group consumes and releases the returned future. NULL fails the call with
 * -ENOMEM. */
typedef halo_fut *(*halo_group_call_fn)(halo_loop *loop, void *arg);

/* Options; zero means default for every field. */
typedef struct halo_group_opts {
	unsigned count;	 /* loops; default: one per CPU of cpus */
	const int *cpus; /* loop i runs pinned to cpus[i % cpus_n];
			    default: the CPUs sched_getaffinity allows */
	unsigned cpus_n;
	int no_pin;		/* leave the threads unpinned */
	unsigned pair_inflight; /* messages in flight per ordered pair of
				   loops (rounded up to a power of two),
				   default 256, at most 65536 */
	halo_loop_opts loop;	/* options of every loop */
	halo_group_init_fn init;
	halo_group_stop_fn on_stop;
	void *arg; /* passed to init and on_stop */
} halo_group_opts;

#define HALO_GROUP_MAX 4096 /* loops per group */

/* State of one loop of the group (halo_group_state). */
enum {
	HALO_GROUP_RUNNING = 0,
	HALO_GROUP_STOPPING, /* on_stop's future pending; messages still run */
	HALO_GROUP_DRAINING, /* refuses new messages, runs queued ones */
	HALO_GROUP_CLOSED,   /* runs nothing more */
};

/* Counters of one loop (halo_group_stats); read from any thread. */
typedef struct halo_group_stats {
	uint64_t posted;   /* messages and calls this loop sent */
	uint64_t received; /* messages and calls run here */
	uint64_t replies;  /* replies to this loop's calls received */
	uint64_t bells;	   /* doorbells rung (MSG_RING SQEs or eventfd
			      writes) */
	uint64_t wakeups;  /* doorbells received */
	uint64_t full;	   /* posts and calls refused with -EAGAIN */
	uint64_t bounced;  /* MSG_RINGs the kernel refused, rung again */
} halo_group_stats;

/* Start the loops, each on a thread of its own pinned to its CPU, and call
 * init on each; returns once every init returned. *out is the group.
 * Returns 0, -EINVAL (bad options, an unusable CPU), -ENOMEM, the error of
 * a loop's halo_loop_init() or of an init (the group is then stopped and
 * freed). */
HALO_API int halo_group_start(halo_group **out, const halo_group_opts *opts);

/* Ask every loop to stop; returns at once. From any thread, also a loop's. */
HALO_API void halo_group_request_stop(halo_group *g);

/* Wait until every loop has stopped and closed (after a stop was asked
 * for), then free the group. Returns the sum of the loops' leaked futures,
 * or -errno if a loop's ring failed. Not from a loop of g (-EDEADLK). */
HALO_API int halo_group_join(halo_group *g);

/* halo_group_request_stop(), then halo_group_join(). */
HALO_API int halo_group_stop(halo_group *g);

/* Queue fn(target loop, arg) on loop `to` of the group `from` belongs to
 * (from: the calling loop). Returns 0, -EAGAIN when the pair holds
 * pair_inflight messages (see halo_group_room), -ESHUTDOWN when `to` (or
 * from) drains or has closed: then fn never runs; -EINVAL. arg must stay
 * valid until fn ran. */
HALO_API int halo_group_post(halo_loop *from, unsigned to,
			     halo_group_post_fn fn, void *arg);

/* Run fn(target loop, arg) on loop `to` and return a future on `from` that
 * completes as fn's future does. Fails at once (a failed future) with
 * -EAGAIN, -ESHUTDOWN or -EINVAL as halo_group_post; NULL only when out of
 * memory. Cancelling it completes it CANCELLED at once and asks the target
 * to cancel fn's future (or not to run fn). If the target closes without
 * replying, it fails with -ESHUTDOWN. Caller owns a reference; NULL also
 * when from is NULL. */
HALO_API halo_fut *halo_group_call_at(halo_loop *from, unsigned to,
				      halo_group_call_fn fn, void *arg,
				      const char *file, int line);
#define halo_group_call(from, to, fn, arg)                                     \
	halo_group_call_at((from), (to), (fn), (arg), __FILE__, __LINE__)

/* A future on `from` that completes with 0 when the pair from -> to has room
 * for a post and a call, or -ESHUTDOWN when `to` closed. Caller owns a
 * reference; NULL when out of memory (or -EINVAL: not a group loop). */
HALO_API halo_fut *halo_group_room(halo_loop *from, unsigned to);

/* The group of the calling thread's loop and its index (if index is not
 * NULL); NULL on a thread that runs no loop of a group. */
HALO_API halo_group *halo_group_self(unsigned *index);

/* The index of loop in its group, or -1 if it belongs to none (or to
 * another thread). */
HALO_API int halo_group_index(const halo_loop *loop);

/* The number of loops. */
HALO_API unsigned halo_group_size(const halo_group *g);

/* True when the loops talk through MSG_RING, false with the eventfd
 * fallback. */
HALO_API int halo_group_uses_msg_ring(const halo_group *g);

/* The HALO_GROUP_* state of loop index. */
HALO_API int halo_group_state(const halo_group *g, unsigned index);

/* Copy the counters of loop index to out. */
HALO_API void halo_group_stats_get(const halo_group *g, unsigned index,
				   halo_group_stats *out);

/* A load figure per loop that modules spreading work keep (the server
 * counts its open connections there); add delta to loop index's. */
HALO_API void halo_group_load_add(halo_group *g, unsigned index, int delta);

/* The index of the loop with the least load (the lowest index on ties)
 * among those still running. */
HALO_API unsigned halo_group_least_loaded(const halo_group *g);

/* The load figure of loop index. */
HALO_API long halo_group_load(const halo_group *g, unsigned index);

/* Slots of per-loop pointers, set on the loop's own thread and read from
 * any: a module publishes there what other loops' messages need to find
 * (the server publishes itself in HALO_GROUP_SLOT_SERVER). */
#define HALO_GROUP_SLOTS       4
#define HALO_GROUP_SLOT_SERVER 0
HALO_API void halo_group_set_slot(halo_loop *loop, unsigned slot, void *p);
HALO_API void *halo_group_slot(const halo_group *g, unsigned index,
			       unsigned slot);

#ifdef __cplusplus
}
#endif
#endif
