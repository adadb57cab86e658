/* Request aggregation (DataLoader semantics over the tick): the keys loaded
 * during one tick go to ONE call of the user's batch function, duplicates
 * collapsed, and each key's future completes with that key's own result or
 * error. Keys are uint64_t: users with string keys hash or intern them first
 * (two strings with the same 64-bit key share one request). */
#ifndef HALO_PATTERNS_AGGREGATE_H
#define HALO_PATTERNS_AGGREGATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../runtime/api.h"
#include "../runtime/fut.h"
#include "../runtime/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct halo_agg halo_agg;
typedef struct halo_agg_batch halo_agg_batch;

/* Asked to load n distinct keys. Complete each with halo_agg_batch_resolve()
 * or halo_agg_batch_fail() (now or later, matched by key), then call
 * halo_agg_batch_done(b) exactly once. keys is valid until done. A negative
 * return fails every key of the batch with it and ends the batch (do not call
 * done then). Runs in the loop's prepare step: what it submits leaves in this
 * tick's io_uring_enter. */
typedef int (*halo_agg_batch_fn)(halo_agg *agg, const uint64_t *keys, size_t n,
				 halo_agg_batch *b, void *arg);

typedef struct halo_agg_opts {
	size_t max_batch;      /* keys per batch call, default 128 */
	uint64_t max_delay_ns; /* 0: flush every tick; else wait up to this
				  long for a batch to fill (no wait when
				  there is no memory for its timer) */
	unsigned max_inflight; /* batches at a time, default 16; further keys
				  wait */
	bool cache;	       /* keep successful results until invalidated */
	int missing_err;       /* unanswered keys fail with this, default
				  -ENOENT */
} halo_agg_opts;

typedef struct halo_agg_stats {
	uint64_t loads;	       /* halo_agg_load() calls */
	uint64_t batches;      /* batch function calls */
	uint64_t keys_asked;   /* keys passed to the batch function */
	uint64_t dedup_hits;   /* loads joined to a key already pending */
	uint64_t cache_hits;   /* loads answered from the cache */
	uint64_t max_batch_n;  /* most keys in one call */
	uint64_t inflight_max; /* most batches in flight at once */
} halo_agg_stats;

struct halo__agg_ent;

/* Caller-allocated; treat the fields as private. */
struct halo_agg {
	halo_loop *loop;
	halo_hook hook;
	halo_agg_opts opts;
	halo_agg_batch_fn fn;
	void *arg;
	struct halo__agg_ent *ent; /* entry slots, grown by doubling */
	uint32_t *table;	   /* open addressing: entry index + 1, 0 free */
	uint32_t ent_cap, table_mask, ent_n, free_head;
	uint32_t pend_head, pend_tail; /* queued keys, entry index + 1 */
	size_t pend_n;
	uint64_t pend_since;	       /* when the oldest queued key came */
	unsigned inflight;
	halo_fut *timer;	       /* max_delay wake-up */
	halo_waiter timer_w;
	halo_agg_stats stats;
	int closing;
};

/* Set up agg on loop; fn(agg, keys, n, batch, arg) loads a batch. Allocates
 * the key table now (grown amortized later, never per load) and registers a
 * prepare hook. Returns 0, -EINVAL or -ENOMEM. */
HALO_API int halo_agg_init(halo_agg *agg, halo_loop *loop,
			   const halo_agg_opts *opts, halo_agg_batch_fn fn,
			   void *arg);

/* Fail every queued and in-flight key with -ECANCELED, drop the cache, free
 * the table. Batches still in flight must not be touched afterwards. */
HALO_API void halo_agg_close(halo_agg *agg);

/* Ask for key. Returns a future (caller owns a reference) that completes
 * with the key's result and value, or its error; loads of a key already
 * pending share its future (cancelling it cancels it for all of them; a
 * later load of the key gets a fresh future). A key whose batch finds no
 * memory fails with -ENOMEM. NULL on exhaustion. */
HALO_API halo_fut *halo_agg_load_at(halo_agg *agg, uint64_t key,
				    const char *file, int line);
#define halo_agg_load(agg, key)                                                \
	halo_agg_load_at((agg), (key), __FILE__, __LINE__)

/* Complete key of batch b as OK. Returns 0, -ENOENT if key is not in b (or
 * was already answered). */
HALO_API int halo_agg_batch_resolve(halo_agg_batch *b, uint64_t key,
				    int64_t result, void *value);

/* Complete key of batch b with err (< 0) and an optional message (copied).
 * Errors are never cached. Returns 0, -ENOENT or -EINVAL. */
HALO_API int halo_agg_batch_fail(halo_agg_batch *b, uint64_t key, int err,
				 const char *msg);

/* End batch b: keys it never answered fail with opts.missing_err; b is
 * freed. Returns the number of keys failed so. */
HALO_API int halo_agg_batch_done(halo_agg_batch *b);

/* The aggregator of batch b. */
HALO_API halo_agg *halo_agg_batch_agg(const halo_agg_batch *b);

/* Drop key's cached result; a load in flight for it is not cached when it
 * completes. Returns 1 if something was dropped or marked, else 0. */
HALO_API int halo_agg_invalidate(halo_agg *agg, uint64_t key);

/* Drop the whole cache (in-flight loads are not cached either). */
HALO_API void halo_agg_clear(halo_agg *agg);

/* Copy the counters to out. */
HALO_API void halo_agg_stats_get(const halo_agg *agg, halo_agg_stats *out);

#ifdef __cplusplus
}
#endif
#endif
