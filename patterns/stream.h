/* Streams: pull-based sequences of items (an int64_t and a void *) through
 * stages with bounded buffering, bounded concurrency and backpressure.
 *
 * A chain is built from a source and stages; each stage takes ownership of
 * the stream it is given and returns the new tail, so the caller always holds
 * one stream: the tail. Nothing runs until the tail is consumed (next, pull,
 * for_each, collect). Every stage holds at most its window of items (in flight
 * plus buffered), so the memory of a chain is the sum of its windows and a
 * slow consumer stops the source. Work completes in the kernel whatever the
 * consumer does: a finished item's permit (stage limit and shared budget) is
 * given back when its work completes, not when the consumer takes it, so a
 * slow consumer never starves the other stages of a budget.
 *
 * Errors: by default the first failed item ends the stream: the stage cancels
 * its in-flight work and everything upstream, waits until all of it is done
 * (kernel-confirmed for I/O), and only then reports the end, with the stage's
 * name and the item's index (halo_stream_error()). HALO_STREAM_SKIP drops a
 * failed item instead (on_fail is told, to collect it). Items are moved, not
 * copied: a stage that discards an item (closing, failing) passes it to the
 * stage's drop callback if one is set. */
#ifndef HALO_PATTERNS_STREAM_H
#define HALO_PATTERNS_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../runtime/api.h"
#include "../runtime/fut.h"
#include "chan.h"
#include "limit.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct halo_stream halo_stream;
typedef struct halo_stream_emitter halo_stream_emitter;

/* An item. idx is its position in the input of the stage that made it. */
typedef struct halo_stream_item {
	int64_t v;
	void *p;
	uint64_t idx;
} halo_stream_item;

/* What batch() emits as an item's p (v is n); free with
 * halo_stream_batch_free(). */
typedef struct halo_batch {
	size_t n, cap;
	halo_stream_item items[];
} halo_batch;

/* flags */
#define HALO_UNORDERED (1u << 0) /* emit in completion order */
#define HALO_STREAM_SKIP                                                       \
	(1u << 1) /* a failed item is dropped and counted,                     \
		     not the end of the stream */

typedef void (*halo_stream_fail_fn)(halo_stream *s, const halo_stream_item *in,
				    int err, const char *msg, void *arg);
typedef void (*halo_stream_drop_fn)(const halo_stream_item *it, void *arg);

/* Options of every stage and source; zero means default for each field. */
typedef struct halo_stream_opts {
	const char *name; /* in stats and errors; default: the stage kind */
	unsigned flags;	  /* HALO_UNORDERED, HALO_STREAM_SKIP */
	size_t buffer;	  /* finished items held for the consumer beyond
			     those in flight; default: the concurrency for
			     map and flat_map, 16 for sources, 1 else */
	halo_sem *budget; /* shared concurrency budget: each item in flight
			     also holds a permit, FIFO across stages */
	halo_stream_fail_fn on_fail; /* with HALO_STREAM_SKIP: each failure */
	void *fail_arg;
	halo_stream_drop_fn drop; /* items this stage discards */
	void *drop_arg;
	uint64_t timeout_ns; /* map, flat_map, for_each: an item's work that
				runs longer is cancelled and fails with
				-ETIMEDOUT (kernel-confirmed); the clock starts
				when the work starts, so time an item waits in
				a buffer never counts; 0: none */
} halo_stream_opts;

/* Per-stage counters. The stage whose busy_ns is close to the wall time
 * while its input buffer is full is the chain's bottleneck. */
typedef struct halo_stream_stats {
	uint64_t in, out; /* items taken from upstream, emitted */
	uint64_t failed;  /* items skipped after a failure */
	uint64_t inflight, inflight_max;
	uint64_t queued, queued_max; /* items in the output buffer (and,
					for flat_map, emitted, not moved) */
	uint64_t busy_ns;	     /* time with at least one item in flight */
} halo_stream_stats;

/* Where and why a stream ended early. */
typedef struct halo_stream_error {
	int err;	   /* -errno; 0 if the stream has not failed */
	uint64_t index;	   /* the item's index in that stage's input */
	const char *stage; /* the failed stage's name */
	const char *msg;   /* the work's error message, or NULL */
} halo_stream_error;

/* Work functions. They run from the loop's callbacks (never from a fiber
 * that merely consumes the stream, so the operations they start are never
 * owned by it): never block. in->p is handed over to the function. */
typedef halo_fut *(*halo_stream_map_fn)(halo_loop *loop,
					const halo_stream_item *in, void *arg);
typedef halo_fut *(*halo_stream_flat_fn)(halo_stream_emitter *em,
					 const halo_stream_item *in, void *arg);
typedef bool (*halo_stream_filter_fn)(const halo_stream_item *in, void *arg);
typedef int64_t (*halo_stream_gen_fn)(halo_stream *self, void *arg);

/* --- sources --- */

/* Items v = start, start + 1, ... (n of them), p = NULL. */
HALO_API halo_stream *halo_stream_range(halo_loop *loop, int64_t start,
					uint64_t n,
					const halo_stream_opts *opts);

/* Items v = i, p = ptrs[i]; ptrs must stay valid until the stream is
 * closed. */
HALO_API halo_stream *halo_stream_array(halo_loop *loop, void *const *ptrs,
					size_t n, const halo_stream_opts *opts);

/* A generator: fn(self, arg) runs as a fiber once the stream is consumed,
 * yields items with halo_stream_yield() and ends by returning (>= 0: the
 * end, < 0: the stream fails with it; halo_fiber_fail() sets a message). */
HALO_API halo_stream *halo_stream_generate(halo_loop *loop,
					   halo_stream_gen_fn fn, void *arg,
					   const halo_stream_opts *opts);

/* From inside a generator's fiber: hand out (v, p), suspending while the
 * buffer is full. Returns 0, or -ECANCELED once the stream is closed or
 * failing (the generator should return then; p stays its own). */
HALO_API int halo_stream_yield(halo_stream *self, int64_t v, void *p);

/* Messages received from ch (caller-embedded, it must outlive the stream);
 * the stream ends when ch is closed and drained. */
HALO_API halo_stream *halo_stream_from_chan(halo_chan *ch,
					    const halo_stream_opts *opts);

/* --- stages: each takes ownership of up (NULL in, NULL out; on failure up
 * is closed and NULL returned) --- */

/* fn(loop, in, arg) starts the work for each item, at most concurrency at
 * once; the future's result and value become the output item's v and p.
 * A NULL future fails the item with -ENOMEM. Ordered unless
 * HALO_UNORDERED. */
HALO_API halo_stream *halo_stream_map(halo_stream *up, unsigned concurrency,
				      halo_stream_map_fn fn, void *arg,
				      const halo_stream_opts *opts);

/* fn(em, in, arg) starts inner work that emits any number of items with
 * halo_stream_emit(em, ...) until its future completes; at most concurrency
 * inner works run at once while the stage keeps pulling its input. Ordered:
 * all items of input i before those of i + 1. The stage starts no inner work
 * while it holds buffer items or more. */
HALO_API halo_stream *halo_stream_flat_map(halo_stream *up,
					   unsigned concurrency,
					   halo_stream_flat_fn fn, void *arg,
					   const halo_stream_opts *opts);

/* Emit an item from a flat_map's inner work (from a callback or a fiber).
 * It never waits: what one inner work emits is held in full (a page of
 * ids), so the stage's bound is buffer plus what its running inner works
 * emitted. Returns 0, -ECANCELED if the stage is failing or the inner work
 * is done (p stays the caller's), -ENOMEM. */
HALO_API int halo_stream_emit(halo_stream_emitter *em, int64_t v, void *p);

/* The same from an inner work's fiber, suspending while the stage holds
 * buffer items or more: inner work that produces without end stays within
 * the stage's bound. Returns as halo_stream_emit(), or -ECANCELED when the
 * fiber is cancelled. */
HALO_API int halo_stream_emit_wait(halo_stream_emitter *em, int64_t v, void *p);

/* Keep the items for which fn returns true (a dropped item's p is fn's). */
HALO_API halo_stream *halo_stream_filter(halo_stream *up,
					 halo_stream_filter_fn fn, void *arg,
					 const halo_stream_opts *opts);

/* Pull up to n items ahead of the consumer. */
HALO_API halo_stream *halo_stream_buffer_ahead(halo_stream *up, size_t n);

/* Group items into batches of at most n, emitting a partial batch once its
 * first item has waited max_delay_ns (0: only full batches and the last
 * one). Each output item has v = its count and p = a halo_batch. */
HALO_API halo_stream *halo_stream_batch(halo_stream *up, size_t n,
					uint64_t max_delay_ns,
					const halo_stream_opts *opts);

/* Free a batch from batch() (the items' p are the caller's). */
HALO_API void halo_stream_batch_free(halo_loop *loop, halo_batch *b);

/* The items of each batch, one by one (frees the batches). */
HALO_API halo_stream *halo_stream_unbatch(halo_stream *up,
					  const halo_stream_opts *opts);

/* The first n items; then upstream is cancelled and drained. */
HALO_API halo_stream *halo_stream_take(halo_stream *up, uint64_t n);

/* --- consuming the tail --- */

/* A future for the next item: OK with result 1 and value item.p (the whole
 * item: halo_stream_current()), OK with 0 at the end, ERROR when the stream
 * failed (the message names the stage and index), CANCELLED after
 * halo_stream_cancel() or cancelling this future (which cancels the chain).
 * Every end is reported only once the whole chain is idle. One next() at a
 * time (else a failed -EBUSY future). Caller owns a reference; NULL on
 * exhaustion. */
HALO_API halo_fut *halo_stream_next(halo_stream *s);

/* The item the last next() or pull() handed out. */
HALO_API halo_stream_item halo_stream_current(const halo_stream *s);

/* Take the next item into *out, waiting for it (a fiber suspends, the
 * loop's thread drives the loop). Returns 1, 0 at the end, or -errno. */
HALO_API int halo_stream_pull(halo_stream *s, halo_stream_item *out);

/* Called for each item; return a future for asynchronous work (at most
 * concurrency at once) or NULL when the item was handled at once. */
typedef halo_fut *(*halo_stream_each_fn)(halo_loop *loop,
					 const halo_stream_item *it, void *arg);

/* Consume s (taking ownership) with fn: the future completes OK with the
 * item count when the stream ended and every fn future is done, or with
 * the stream's error. Cancelling it cancels the chain; it completes once the
 * chain is idle. The chain is freed then. Caller owns a reference. */
HALO_API halo_fut *halo_stream_for_each(halo_stream *s, unsigned concurrency,
					halo_stream_each_fn fn, void *arg,
					const halo_stream_opts *opts);

/* Consume s (taking ownership) into out[0..cap): the future's result is the
 * count; more than cap items fail it with -ENOBUFS. out must stay valid
 * until the future is done. */
HALO_API halo_fut *halo_stream_collect(halo_stream *s, halo_stream_item *out,
				       size_t cap);

/* Cancel the chain: in-flight work is cancelled and drained, then next()
 * reports CANCELLED. */
HALO_API void halo_stream_cancel(halo_stream *s);

/* Give the stream up: cancel what runs and free the chain once it is idle
 * (at once if it ended). A pending next() completes CANCELLED. In a fiber
 * or on the loop's thread it waits until the kernel let go of every
 * cancelled operation and returns 0; from a callback (or a cancelled
 * fiber) it returns -EINPROGRESS and the chain is freed when idle.
 * -EINVAL if s is NULL or another stage's input. */
HALO_API int halo_stream_close(halo_stream *s);

/* --- observing --- */

/* The stage's name (opts.name or its kind). */
HALO_API const char *halo_stream_name(const halo_stream *s);

/* The stage s takes its input from (NULL for a source): walk the chain
 * from the tail to read every stage's stats. */
HALO_API halo_stream *halo_stream_upstream(const halo_stream *s);

/* Copy the stage's counters to out; busy_ns includes the current busy
 * period. */
HALO_API void halo_stream_stats_get(const halo_stream *s,
				    halo_stream_stats *out);

/* Fill *out with the error the stream ended with; returns out->err. */
HALO_API int halo_stream_error_get(const halo_stream *s,
				   halo_stream_error *out);

#ifdef __cplusplus
}
#endif
#endif
