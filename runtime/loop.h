/* The loop: one io_uring, one thread, one tick. See DESIGN.md for the tick:
 * run ready -> prepare hooks -> ONE io_uring_enter -> reap -> expire timers. */
#ifndef HALO_LOOP_H
#define HALO_LOOP_H

#include <liburing.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "fut.h"
#include "pool.h"
#include "stall.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Loop options; zero means default for every field. */
typedef struct halo_loop_opts {
	unsigned sq_entries;	 /* SQ size, default 256 */
	unsigned max_inflight;	 /* CQ is sized for this many, default 1024 */
	size_t fiber_stack_size; /* default 64 KiB (256 KiB under ASan) */
	unsigned ready_budget;	 /* ready tasks run per tick, default 4096 */
	unsigned setup_flags;	 /* HALO_SETUP_* to restrict ring features */
	uint64_t busy_poll_ns;	 /* spin this long after the last I/O before
				    sleeping in io_uring_enter; 0: never */
	unsigned features_off;	 /* HALO_FEAT_* never to use, even where the
				    kernel has them (tests, comparisons) */
	uint64_t stall_ns;	 /* stall detector (stall.h): report callbacks,
				    fiber slices and prepare hooks that hold
				    the thread this long; 0: off */
	halo_stall_fn stall_fn;	 /* gets each report; NULL: a line on stderr */
	void *stall_arg;	 /* passed to stall_fn */
	unsigned hist;		 /* nonzero: keep latency histograms
				    (hist.h); 0: off */
	unsigned min_wait_us;	 /* batching: a tick that sleeps waits up to
				    this long for more than one completion
				    before it handles the first (needs
				    HALO_FEAT_MIN_WAIT, 6.12); 0: the
				    environment's HALO_MIN_WAIT_US, or off */
	unsigned iopoll;	 /* nonzero: halo_read_direct() and
				    halo_write_direct() go to a second ring
				    set up with IORING_SETUP_IOPOLL (at the
				    first such call), where the device has
				    poll queues; see io/file.h. 0: off */
	size_t send_zc_min;	 /* halo_send_all() of at least this many
				    bytes goes zero-copy (SEND_ZC, with
				    HALO_FEAT_SEND_ZC); 0: never, the
				    default: it lost at every size on
				    loopback here (README) */
} halo_loop_opts;

/* setup_flags: refuse the fast ring modes, to test the fallbacks. */
#define HALO_SETUP_NO_DEFER_TASKRUN (1u << 0)
#define HALO_SETUP_NO_COOP_TASKRUN (1u << 1)

/* Kernel features halo uses where the kernel has them. Each is probed at
 * halo_loop_init() and falls back cleanly; halo_loop_features() says which
 * are active. opts.features_off, or the environment variable
 * HALO_FEATURES_OFF (a comma-separated list of names, or "all"), switches
 * them off, as on an older kernel. */
#define HALO_FEAT_RECV_BUNDLE (1u << 0) /* multishot recv bundles, 6.10 */
#define HALO_FEAT_PBUF_INC (1u << 1)	/* incremental ring buffers, 6.12 */
#define HALO_FEAT_SEND_BUNDLE (1u << 2) /* send bundles from a ring, 6.10 */
#define HALO_FEAT_SEND_ZC (1u << 3)	/* zero-copy send, 6.0 */
#define HALO_FEAT_CQE_SKIP (1u << 4)	/* CQE_SKIP_SUCCESS on internal SQEs */
#define HALO_FEAT_NO_SQARRAY (1u << 5)	/* ring without the SQ index array */
#define HALO_FEAT_MIN_WAIT (1u << 6)	/* enter's minimum-wait timeout, 6.12 */
#define HALO_FEAT_FIXED_BUFS (1u << 7)	/* registered buffers, READ/WRITE_FIXED */
#define HALO_FEAT_IOPOLL (1u << 8)	/* a polled ring for O_DIRECT (opts.iopoll);
					   cleared when the device refuses */
#define HALO_FEAT_MSG_RING (1u << 9)	/* IORING_OP_MSG_RING between loops */
#define HALO_FEAT_HUGE_BUFS (1u << 10)	/* ring buffers on transparent huge
					   pages (THP not "never") */
#define HALO_FEAT_ALL ((1u << 11) - 1)

/* Counters that tests and benchmarks read through halo_loop_stats(). */
typedef struct halo_stats {
	uint64_t ticks;		   /* run_once calls that ran the tick */
	uint64_t enters;	   /* io_uring_enter system calls, all causes */
	uint64_t sqes_submitted;   /* SQEs the kernel consumed */
	uint64_t cqes_reaped;	   /* CQEs processed */
	uint64_t sq_flushes_early; /* enters forced by a full SQ */
	uint64_t cq_overflows;	   /* times the kernel reported CQ overflow */
	uint64_t stale_cqes;	   /* CQEs whose op slot was recycled */
	uint64_t live_futures;	   /* futures allocated and not freed */
	uint64_t live_fibers;	   /* fibers spawned and not finished */
	uint64_t pool_allocs;	   /* heap allocations made by the pools */
	uint64_t blocking_waits;   /* waits that suspended or drove the loop */
	uint64_t inflight;	   /* operations the kernel holds now */
	uint64_t fiber_op_cancels; /* ops cancelled because the fiber that
				      started them was cancelled or ended */
	uint64_t fiber_exit_drains; /* fibers that ended with ops in flight
				       and kept their stack until the kernel
				       let go */
	unsigned ring_flags;	   /* IORING_SETUP_* the ring runs with */
	uint64_t stalls;	   /* stalls the detector reported */
	uint64_t stall_max_ns;	   /* the longest of them */
	uint64_t iopoll_retries;   /* direct ops the polled ring refused
				      (-EOPNOTSUPP) and the main ring ran */
} halo_stats;

/* A prepare hook runs in step 2 of every tick, after the ready queue and
 * before the tick's io_uring_enter; SQEs it prepares leave in that enter.
 * fn returns > 0 when it still has work, which keeps the tick from blocking. */
typedef int (*halo_hook_fn)(halo_loop *loop, void *arg);
typedef struct halo_hook {
	struct halo_hook *next, *prev;
	halo_hook_fn fn;
	void *arg;
} halo_hook;

/* An entry of the ready queue (internal; embedded in futures and fibers). */
typedef struct halo_task {
	struct halo_task *next;
	void (*fn)(struct halo_task *t);
} halo_task;

typedef struct halo_timer_heap {
	struct halo__timer_ent *ent;
	uint32_t n, cap;
	uint64_t seq;
} halo_timer_heap;

/* The loop. Caller-allocated, set up by halo_loop_init(); treat the fields as
 * private. A loop belongs to the thread that initialised it. */
struct halo_loop {
	struct io_uring ring;
	/* The SQ tail below which an op may take an SQE without reading the
	 * kernel's head; the tail itself while a fiber runs (op.c). */
	unsigned sq_limit;
	halo_loop_opts opts;
	halo_stats stats;
	pthread_t owner;
	halo_task *ready_head, **ready_tail;
	halo_task *later_head, **later_tail; /* yields: after this tick's I/O */
	halo_hook *hooks;
	halo_hook *hook_next; /* the prepare pass's next hook (a removal of
				 that hook moves it on) */
	/* Read per callback and per CQE: beside the ready queue. */
	struct halo__stall *stall; /* stall detector; NULL when off */
	struct halo__hist *hist;   /* histograms; NULL when off */
	struct halo__iopoll *iopoll; /* the polled ring, once made */
	halo_timer_heap timers;
	uint64_t sq_epoch;     /* bumps each time the SQ is handed over */
	uint64_t busy_until_ns; /* busy polling: spin, don't sleep, until */
	uint64_t internal_inflight; /* link timeouts and such: CQEs to
				       ignore, counted (they hold op memory) */
	int in_callback;       /* > 0 while user callbacks run outside a fiber */
	int stopping;
	int closing;
	int hooks_busy;
	int cq_overflowed;
	int woken; /* a loop-driving wait's future completed this tick */
	int now_valid;	/* now_ns holds this phase's time (halo_loop_now) */
	int event_valid; /* event_ns is set since the last CQEs reaped */
	uint64_t now_ns;
	uint64_t event_ns; /* halo_loop_event_now */
	unsigned features; /* HALO_FEAT_* active on this loop */
	unsigned ring_features; /* IORING_FEAT_* the kernel reported */
	struct halo_fiber *cur_fiber;
	void *sched_sp; /* the loop's stack pointer while a fiber runs */
	void *sched_fake_stack;
	const void *sched_stack_bottom;
	size_t sched_stack_size;
	int asan_from_fiber; /* a fiber switched straight to another */
	halo_pools pools;
	void *stack_cache;
	unsigned stack_cache_n;
	/* halo_loop_error(): room to spare over the longest explanation;
	 * loop.c fails to build if a fixed message outgrows it. */
	char error[256];
};

/* Set up a loop on the calling thread. Returns 0 or -errno; on failure
 * halo_loop_error() says why in words an operator can act on (io_uring
 * disabled by sysctl or seccomp, memlock limit, ...). */
HALO_API int halo_loop_init(halo_loop *loop, const halo_loop_opts *opts);

/* The explanation of the last failure of halo_loop_init(), or "". */
HALO_API const char *halo_loop_error(const halo_loop *loop);

/* Cancel what is in flight, wait for the kernel to let go of every buffer,
 * report each leaked future (created, never consumed) on stderr with the file
 * and line that created it, free everything. Returns the number of leaked
 * futures. */
HALO_API int halo_loop_close(halo_loop *loop);

/* Run ticks until the loop has no work left or halo_loop_stop() is called.
 * Returns 0, or -errno if the ring failed. */
HALO_API int halo_loop_run(halo_loop *loop);

/* Run one tick; block in it only if nothing is ready, and never while ops
 * are in flight on the polled ring (opts.iopoll), whose completions only a
 * poll finds. Returns 1 if the loop still has work, 0 if it has none,
 * -errno if the ring failed. */
HALO_API int halo_loop_run_once(halo_loop *loop);

/* Run one tick that never blocks: submit, reap what is there, expire due
 * timers. For embedding halo in another event loop. Returns as
 * halo_loop_run_once() does. */
HALO_API int halo_loop_run_nowait(halo_loop *loop);

/* Make halo_loop_run() return after the current tick. */
HALO_API void halo_loop_stop(halo_loop *loop);

/* Copy the loop's counters to out. */
HALO_API void halo_loop_stats(const halo_loop *loop, halo_stats *out);

/* Register hook (caller-embedded) to run fn(loop, arg) in every tick's
 * prepare step, in registration order. */
HALO_API void halo_loop_prepare_add(halo_loop *loop, halo_hook *hook,
				    halo_hook_fn fn, void *arg);

/* Unregister a prepare hook; safe from inside a hook. */
HALO_API void halo_loop_prepare_remove(halo_loop *loop, halo_hook *hook);

/* Run fn(arg) from the ready queue, on the next pass. Returns 0 or -ENOMEM. */
HALO_API int halo_loop_post(halo_loop *loop, void (*fn)(void *arg), void *arg);

/* A post the caller embeds in its own object, so that posting never needs
 * memory: for work that must still get done when allocation fails (a stop,
 * a close, a wakeup). Zero it, or set it up with halo_post_init(). */
typedef struct halo_post {
	halo_task task;
	void (*fn)(void *arg);
	void *arg;
	int is_queued;
} halo_post;

/* Make p ready for halo_loop_post_embedded(); a zeroed halo_post is too. */
HALO_API void halo_post_init(halo_post *p);

/* Queue p to run fn(arg) from the ready queue, on the next pass; never
 * allocates. p must stay valid until fn has been called; it may be queued
 * again from fn. Returns 0, or -EBUSY if p is already queued (fn and arg
 * are left as they were, and it still runs once). */
HALO_API int halo_loop_post_embedded(halo_loop *loop, halo_post *p,
				     void (*fn)(void *arg), void *arg);

/* True while p is queued and its fn has not run yet. */
HALO_API int halo_post_is_queued(const halo_post *p);

/* The HALO_FEAT_* bits active on loop: probed at init, minus those
 * switched off. HALO_FEAT_IOPOLL also goes off for good when a device
 * refuses polled I/O or the polled ring cannot be set up (io/file.h). */
HALO_API unsigned halo_loop_features(const halo_loop *loop);

/* The name of one HALO_FEAT_* bit ("recv_bundle", ...), or NULL for a bit
 * that names no feature. */
HALO_API const char *halo_feature_name(unsigned bit);

/* CLOCK_MONOTONIC now, in nanoseconds. */
HALO_API uint64_t halo_now_ns(void);

/* CLOCK_MONOTONIC as of the loop's current phase, in nanoseconds: read on
 * the first call after each wait in io_uring_enter, each ready task (a
 * callback or a fiber's slice) and each CQE handler, then the same value
 * until the next of those, so that the steps of one callback that ask for
 * the time pay one clock read, and no callback sees a time from before
 * another one's work. Within one callback it trails halo_now_ns() by what
 * that callback has run since its first call: for deadlines and timestamps
 * that tolerate that; use halo_now_ns() for exact time. */
HALO_API uint64_t halo_loop_now(halo_loop *loop);

/* CLOCK_MONOTONIC no earlier than every completion the loop has reaped:
 * read on the first call after a reap that found CQEs, then the same value
 * until the next such reap, whatever runs in between. One clock read per
 * batch of completions, for deadlines and timestamps that count from an
 * I/O event (bytes arrived, a send completed) and may lag it: it can trail
 * halo_now_ns() by as long as the loop has run since that first call, and
 * a deadline counted from it is never earlier than one counted from the
 * event itself. Not for what user code starts: use halo_loop_now(). */
HALO_API uint64_t halo_loop_event_now(halo_loop *loop);

/* True when called from a fiber of loop. */
HALO_API int halo_loop_in_fiber(const halo_loop *loop);

#ifdef __cplusplus
}
#endif
#endif
