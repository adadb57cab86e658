/* Rolling poller window: many ids whose outcome is learned by polling a
 * remote system (job states, transaction confirmations). Each cycle polls the
 * `window` ids at the front with ONE call of the user's batch-poll function;
 * finished ids complete their futures and leave, unfinished ones go to the
 * back, new ids fill the window. Cycles run from loop timers, spaced by an
 * interval and a rate limit, so the polled system sees a bounded load. */
#ifndef HALO_PATTERNS_POLLER_H
#define HALO_PATTERNS_POLLER_H

#include <stddef.h>
#include <stdint.h>

#include "../runtime/api.h"
#include "../runtime/fut.h"
#include "../runtime/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct halo_poller halo_poller;

/* What the batch-poll function reports for one id: done = 0 means still
 * pending (polled again later); done = 1 completes the id's future OK with
 * result and value; done = -1 fails it with result (a negative errno). */
typedef struct halo_poller_report {
	int done;
	int64_t result;
	void *value;
} halo_poller_report;

/* Return of a batch-poll function that answers later with
 * halo_poller_reported(). */
#define HALO_POLLER_ASYNC 1

/* Poll n ids; fill out[i] for ids[i] (zeroed before the call: "pending").
 * Return 0 when out is filled, HALO_POLLER_ASYNC to fill it later and call
 * halo_poller_reported(), or -errno: the cycle failed and every id of it
 * stays pending. ids and out stay valid until the cycle is reported. */
typedef int (*halo_poller_fn)(halo_poller *p, const uint64_t *ids, size_t n,
			      halo_poller_report *out, void *arg);

typedef struct halo_poller_opts {
	size_t window;	      /* ids per cycle, default 100 */
	uint64_t interval_ns; /* between cycle starts, default 1 ms */
	double rate;	      /* polls (ids) per second at most, 0: unlimited */
} halo_poller_opts;

typedef struct halo_poller_stats {
	uint64_t cycles;    /* batch-poll calls */
	uint64_t polls;	    /* ids passed to them */
	uint64_t max_call;  /* most ids in one call */
	uint64_t finished;  /* ids completed by a report */
	uint64_t timeouts;  /* ids failed with -ETIMEDOUT */
	uint64_t failed_cycles;
} halo_poller_stats;

struct halo__poll_item;

/* Caller-allocated; treat the fields as private. */
struct halo_poller {
	halo_loop *loop;
	halo_poller_opts opts;
	halo_poller_fn fn;
	void *arg;
	struct halo__poll_item *head, *tail; /* waiting ids, front first */
	size_t n;			     /* ids waiting or in the window */
	struct halo__poll_item **win;
	uint64_t *ids;
	halo_poller_report *out;
	size_t win_n;
	int in_cycle; /* an async cycle is outstanding */
	uint64_t last_start, last_polls;
	halo_fut *timer;
	halo_waiter timer_w;
	halo_poller_stats stats;
};

/* Set up p on loop with the batch-poll function fn. Allocates the window
 * arrays now. Returns 0, -EINVAL or -ENOMEM. */
HALO_API int halo_poller_init(halo_poller *p, halo_loop *loop,
			      const halo_poller_opts *opts, halo_poller_fn fn,
			      void *arg);

/* Fail every id with -ECANCELED and free the arrays. Do not report an
 * outstanding async cycle afterwards. */
HALO_API void halo_poller_close(halo_poller *p);

/* Add id, to be polled until it finishes or deadline_ns (CLOCK_MONOTONIC,
 * 0: none) passes, which fails it with -ETIMEDOUT. Returns the id's future
 * (caller owns a reference); cancelling it removes the id. NULL on
 * exhaustion. Without memory for the timer of the next cycle, the waiting
 * ids fail with -ENOMEM. */
HALO_API halo_fut *halo_poller_add_at(halo_poller *p, uint64_t id,
				      uint64_t deadline_ns, const char *file,
				      int line);
#define halo_poller_add(p, id, deadline_ns)                                    \
	halo_poller_add_at((p), (id), (deadline_ns), __FILE__, __LINE__)

/* Remove id (its future completes CANCELLED). O(ids): prefer cancelling the
 * future. Returns 0 or -ENOENT. */
HALO_API int halo_poller_remove(halo_poller *p, uint64_t id);

/* Finish an async cycle: err 0 means out[] is filled, < 0 that the cycle
 * failed (its ids stay pending). Returns 0 or -EINVAL if no cycle waits. */
HALO_API int halo_poller_reported(halo_poller *p, int err);

/* Ids waiting or being polled. */
HALO_API size_t halo_poller_size(const halo_poller *p);

/* Copy the counters to out. */
HALO_API void halo_poller_stats_get(const halo_poller *p,
				    halo_poller_stats *out);

#ifdef __cplusplus
}
#endif
#endif
