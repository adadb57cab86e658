/* Marker and sweeper: a deduplicated set of ready ids (fds or user keys in
 * 0..capacity-1). Marking is O(1) and never allocates; a sweeper drains the
 * set from the loop's prepare step, in batches, so that whatever its handler
 * submits leaves in the same tick's single io_uring_enter. */
#ifndef HALO_PATTERNS_MARKSWEEP_H
#define HALO_PATTERNS_MARKSWEEP_H

#include <stddef.h>
#include <stdint.h>

#include "../runtime/api.h"
#include "../runtime/fut.h"
#include "../runtime/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct halo_marksweep halo_marksweep;

/* The sweeper's handler: called with up to opts.batch marked ids, each
 * unmarked before the call. An id marked again during the call (or while it
 * is held, see halo_marksweep_hold()) is swept once more afterwards. The ids
 * array is valid during the call only. Return value ignored (>= 0 expected). */
typedef int (*halo_marksweep_fn)(halo_marksweep *ms, const uint32_t *ids,
				 size_t n, void *arg);

typedef struct halo_marksweep_opts {
	uint32_t capacity; /* ids are 0..capacity-1; required */
	uint32_t batch;	   /* ids per handler call, default 64 */
	uint32_t budget;   /* ids per tick, default 4096 */
} halo_marksweep_opts;

typedef struct halo_marksweep_stats {
	uint64_t marks;	   /* halo_marksweep_mark() calls that were accepted */
	uint64_t dedups;   /* marks of an id already marked (only counted) */
	uint64_t swept;	   /* ids handed to the handler */
	uint64_t passes;   /* handler calls */
	uint64_t max_pass; /* most ids in one handler call */
	uint64_t rearms;   /* multishot polls re-armed after the kernel ended them */
	uint64_t events;   /* poll CQEs that marked an id */
} halo_marksweep_stats;

struct halo__ms_watch;

/* Caller-allocated; treat the fields as private. */
struct halo_marksweep {
	halo_loop *loop;
	halo_hook hook;
	halo_marksweep_fn fn;
	void *arg;
	uint32_t cap, batch, budget;
	uint8_t *state;	  /* per id: MS_* bits */
	uint32_t *queue;  /* ring of marked ids, each at most once */
	uint32_t head, count;
	uint32_t *pass;	  /* the ids of the current handler call */
	struct halo__ms_watch *watch; /* per fd, allocated on first watch */
	halo_marksweep_stats stats;
	int in_pass;
};

/* Set up ms on loop with opts->capacity ids; fn(ms, ids, n, arg) is the
 * handler. Allocates its arrays now (never per mark) and registers a prepare
 * hook. Returns 0, -EINVAL (capacity 0) or -ENOMEM. */
HALO_API int halo_marksweep_init(halo_marksweep *ms, halo_loop *loop,
				 const halo_marksweep_opts *opts,
				 halo_marksweep_fn fn, void *arg);

/* Stop every watch (halo frees each poll once the kernel lets go of it),
 * unregister the hook and free the arrays. Marks not yet swept are dropped.
 * May be called from the handler. */
HALO_API void halo_marksweep_close(halo_marksweep *ms);

/* Mark id ready. O(1); marking an id already marked only counts it. Returns
 * 0, or -EINVAL if id >= capacity. Safe from handlers and callbacks. */
HALO_API int halo_marksweep_mark(halo_marksweep *ms, uint32_t id);

/* From inside the handler: keep id "being swept" after the handler returns,
 * until halo_marksweep_release(); marks meanwhile are swept after release,
 * once. Returns 0 or -EINVAL if id is not in the current pass. */
HALO_API int halo_marksweep_hold(halo_marksweep *ms, uint32_t id);

/* End the hold of id (its async work is done); if it was marked meanwhile,
 * it is queued to be swept again. Returns 0 or -EINVAL if id is not held. */
HALO_API int halo_marksweep_release(halo_marksweep *ms, uint32_t id);

/* Watch fd (< capacity) for events (POLLIN, ...) with one multishot
 * POLL_ADD whose every CQE marks fd; halo re-arms it when the kernel ends it.
 * An error CQE marks fd once and ends the watch. Returns 0, -EINVAL, -EBUSY
 * (already watched) or -ENOMEM. */
HALO_API int halo_marksweep_watch(halo_marksweep *ms, int fd, unsigned events);

/* Stop watching fd (the poll is cancelled; no mark comes from it after this
 * returns). Returns 0 or -ENOENT. */
HALO_API int halo_marksweep_unwatch(halo_marksweep *ms, int fd);

/* True if id is marked and waiting to be swept. */
HALO_API int halo_marksweep_is_marked(const halo_marksweep *ms, uint32_t id);

/* Number of ids waiting to be swept. */
HALO_API uint32_t halo_marksweep_pending(const halo_marksweep *ms);

/* Copy the counters to out. */
HALO_API void halo_marksweep_stats_get(const halo_marksweep *ms,
				       halo_marksweep_stats *out);

#ifdef __cplusplus
}
#endif
#endif
