/* Sparse tasks: long-running external work (a VM to provision, a CI job, a
 * settlement) tracked without holding anything while it runs. submit()
 * records the task durably, then runs the user's submit function, which
 * starts the work elsewhere; an event (complete()) or a status poll ends
 * it; a timeout monitor alerts when neither came in time. State survives
 * restarts through a store: by default an append-only journal written with
 * group commit (one writev and one fdatasync per batch), replayed on open.
 *
 * Memory: a pending task costs one 24-byte slot, one hash entry and one heap
 * entry (about 40 bytes at 1,000,000 pending, see halo_sparse_stats.bytes);
 * no future, fiber or loop timer is held per task. Deadlines sit in one
 * min-heap behind ONE loop timer armed at the earliest. The payload lives
 * only in the store.
 *
 * Delivery across crashes: an alert runs when the deadline passes, before
 * its timeout is durable, so a crash in between alerts again after reopen
 * (at least once). done_fn runs once an outcome is durable; a finished task
 * is never alerted or reported again after reopen. */
#ifndef HALO_PATTERNS_SPARSE_H
#define HALO_PATTERNS_SPARSE_H

#include <stddef.h>
#include <stdint.h>

#include "../runtime/api.h"
#include "../runtime/fut.h"
#include "../runtime/loop.h"
#include "groupcommit.h"
#include "poller.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct halo_sparse halo_sparse;

typedef enum halo_sparse_outcome {
	HALO_SPARSE_OK = 1,	 /* the work succeeded (an event or a poll) */
	HALO_SPARSE_FAILED = 2,	 /* the work failed, or its submit failed */
	HALO_SPARSE_TIMEOUT = 3, /* no event before the deadline */
} halo_sparse_outcome;

/* What halo_sparse_complete() returns besides 0 (accepted) and -errno. */
#define HALO_SPARSE_DUPLICATE 1 /* the task had its outcome: ignored */
#define HALO_SPARSE_LATE      2 /* it had timed out: reported to late_fn */

/* Start the work for task id with its payload (valid during the call only).
 * Runs once the task's record is durable. Return a future (ownership passes
 * to halo_sparse) whose result becomes the submit's result; a failed one
 * ends the task as HALO_SPARSE_FAILED. NULL counts as -ENOMEM. */
typedef halo_fut *(*halo_sparse_submit_fn)(halo_sparse *s, uint64_t id,
					   const void *payload, size_t len,
					   void *arg);

/* The task's deadline passed with no outcome. */
typedef void (*halo_sparse_alert_fn)(halo_sparse *s, uint64_t id, void *arg);

/* The task ended with outcome (OK or FAILED) and result, durably. */
typedef void (*halo_sparse_done_fn)(halo_sparse *s, uint64_t id,
				    halo_sparse_outcome outcome, int64_t result,
				    void *arg);

/* An event came for a task that had already timed out: reported here and
 * counted, never taken as a second outcome. */
typedef void (*halo_sparse_late_fn)(halo_sparse *s, uint64_t id,
				    halo_sparse_outcome outcome, int64_t result,
				    void *arg);

/* --- the store interface: where the state lives --- */

/* Record types. A task's life in the store: SUBMIT, any HEARTBEATs, then
 * FINISH. */
#define HALO_SPARSE_REC_SUBMIT	  1
#define HALO_SPARSE_REC_HEARTBEAT 2
#define HALO_SPARSE_REC_FINISH	  3

typedef struct halo_sparse_rec {
	uint8_t type;	 /* HALO_SPARSE_REC_* */
	uint8_t outcome; /* FINISH: halo_sparse_outcome */
	uint64_t id;
	int64_t deadline;    /* SUBMIT, HEARTBEAT: CLOCK_REALTIME ns */
	int64_t result;	     /* FINISH */
	const void *payload; /* SUBMIT; borrowed for the call */
	uint32_t len;
} halo_sparse_rec;

/* Called by compact() for each task it meets: 1 if the task is live
 * (pending), with its current deadline (CLOCK_REALTIME ns) in *deadline;
 * 0 if it is finished or unknown. */
typedef int (*halo_sparse_live_fn)(void *ctx, uint64_t id, int64_t *deadline);

/* A store, as a table of functions over the user's object. Records must
 * become durable in append order; the store reports them with
 * halo_sparse_durable(), never from inside append. */
typedef struct halo_sparse_store_ops {
	/* Called once by halo_sparse_open() before anything else. */
	int (*attach)(void *store, halo_sparse *s);
	/* Call fn for every record in order. A failing fn stops the replay
	 * with its error. On another failure write a sentence into err. */
	int (*replay)(void *store,
		      int (*fn)(void *ctx, const halo_sparse_rec *rec),
		      void *ctx, char *err, size_t errlen);
	/* Accept rec (copy it). Returns 0 or -errno (nothing accepted). */
	int (*append)(void *store, const halo_sparse_rec *rec);
	/* Optional (NULL: never compacted). Drop what is no longer needed,
	 * keeping every live task's SUBMIT with its current deadline. Returns
	 * the number of records the store keeps, or -errno (nothing lost). */
	int (*compact)(void *store, halo_sparse_live_fn live, void *ctx);
	/* Records appended and not yet reported durable. */
	size_t (*inflight)(void *store);
	/* Release the store's resources; nothing is in flight. */
	void (*detach)(void *store);
} halo_sparse_store_ops;

/* Report to s that the next n records appended are durable (err 0) or
 * failed (err < 0), in append order. For stores. */
HALO_API void halo_sparse_durable(halo_sparse *s, size_t n, int err);

/* --- the journal: the default store --- */

typedef struct halo_sparse_journal {
	halo_loop *loop;
	halo_sparse *s;
	halo_gc gc;
	int fd, dirfd;
	char *path;
	uint64_t seq;	 /* of the last record */
	size_t inflight; /* appended, not yet reported */
	int has_gc;
	char *buf; /* encoding scratch */
	size_t cap;
	uint64_t torn_bytes;
	uint64_t dir_sync_errors; /* compactions whose directory fsync failed */
} halo_sparse_journal;

HALO_API extern const halo_sparse_store_ops halo_sparse_journal_ops;

/* --- options, the object, the calls --- */

typedef struct halo_sparse_poll_opts {
	halo_poller_fn fn; /* the user's batch status poll; NULL: no poller */
	void *arg;
	halo_poller_opts poller; /* window, interval, rate */
	size_t max_polled; /* tasks in the poller at once, default window */
} halo_sparse_poll_opts;

typedef struct halo_sparse_opts {
	const char *path; /* the journal's file (created if missing); or: */
	const halo_sparse_store_ops *store_ops; /* a store of the user's */
	void *store;
	halo_sparse_submit_fn submit_fn; /* optional */
	halo_sparse_alert_fn alert_fn;	 /* optional */
	halo_sparse_done_fn done_fn;	 /* optional */
	halo_sparse_late_fn late_fn;	 /* optional */
	void *arg;			 /* for the four above */
	size_t max_pending;	 /* default 1,048,576; submit: -EAGAIN past it
				    (open restores every pending task of the
				    store, even past it) */
	size_t keep_done;	 /* finished ids remembered to tell duplicate
				    and late events, default 65,536 */
	size_t max_payload;	 /* bytes, default 65,536, at most 16 MiB */
	unsigned compact_factor; /* compact when the store holds more than
				    this many records per live task, default
				    4; 0: default, UINT32_MAX: never */
	size_t compact_min;	 /* ... and more than this many, default 4096 */
	halo_sparse_poll_opts poll; /* the status-poller variant */
} halo_sparse_opts;

typedef struct halo_sparse_stats {
	uint64_t submitted;  /* submits accepted */
	uint64_t completed;  /* OK or FAILED outcomes made durable */
	uint64_t timeouts;   /* alerts */
	uint64_t duplicates; /* events for tasks with an outcome */
	uint64_t late;	     /* events for tasks that timed out */
	uint64_t unknown;    /* events for ids not known */
	uint64_t heartbeats;
	uint64_t pending;	/* tasks submitted, no outcome yet */
	uint64_t records;	/* records in the store now */
	uint64_t record_errors; /* records the store failed */
	uint64_t replayed;	/* records replayed at open */
	uint64_t torn_bytes;	/* journal: bytes cut off a torn tail at open */
	uint64_t compactions;
	uint64_t compact_errors; /* failed compactions, and journal ones
				    whose directory fsync failed */
	uint64_t polls;		 /* status polls fed through the poller */
	uint64_t timer_errors;	 /* no memory to arm the timer (retried) */
	uint64_t bytes;		 /* memory of the task tables now */
} halo_sparse_stats;

struct halo__sparse_task;
struct halo__sparse_rec;
struct halo__sparse_poll;
struct halo__sparse_flush;

/* Caller-allocated; treat the fields as private. */
struct halo_sparse {
	halo_loop *loop;
	halo_sparse_opts opts;
	const halo_sparse_store_ops *ops;
	void *store;
	halo_sparse_journal journal;
	struct halo__sparse_task *task; /* slots */
	uint32_t task_n, task_cap, free_slot;
	uint32_t *hash; /* slot + 1, open addressing */
	uint32_t hash_cap;
	uint32_t *heap; /* slots by deadline */
	uint32_t heap_n, heap_cap;
	uint32_t *done_ring; /* finished slots, oldest first */
	uint32_t done_head, done_n;
	struct halo__sparse_rec *ring; /* records in flight, oldest first */
	size_t ring_head, ring_n, ring_cap;
	void *runs; /* submit functions' futures outstanding */
	size_t submits_running;
	uint32_t used;		       /* slots in use */
	uint64_t n_sub, n_pend, n_fin; /* tasks by state */
	uint64_t store_records;
	uint64_t appended, reported; /* records, since open */
	uint64_t replay_mono;	     /* the clocks when the replay began */
	int64_t replay_wall;
	struct halo__sparse_flush *flushes;
	halo_fut *timer;
	uint64_t timer_at;
	halo_waiter timer_w;
	halo_poller poller;
	int has_poller;
	uint32_t poll_cursor;
	struct halo__sparse_poll *polled; /* tasks in the poller */
	size_t polled_n;
	const uint64_t *poll_ids; /* an async poll outstanding */
	halo_poller_report *poll_out;
	size_t poll_n;
	halo_sparse_stats stats;
	char error[256];
};

/* Open s on loop: attach the store (opts.path: the journal; or
 * opts.store_ops/opts.store), replay it, re-arm the pending tasks' monitors
 * with their remaining time (overdue ones fire on the next timer pass,
 * never inside this call). A torn record at the journal's tail is cut off
 * (stats.torn_bytes). Returns 0, -EINVAL, -ENOMEM, -EBADMSG (a corrupt
 * record with intact records after it: halo_sparse_error() names its
 * offset) or the store's -errno. */
HALO_API int halo_sparse_open(halo_sparse *s, halo_loop *loop,
			      const halo_sparse_opts *opts);

/* Why the last halo_sparse_open() failed, in words, or "". */
HALO_API const char *halo_sparse_error(const halo_sparse *s);

/* Release memory and the store; pending tasks stay in the store for the
 * next open. Returns 0, or -EBUSY while records are in flight (run the loop
 * until halo_sparse_inflight() is 0). Submit futures still waiting on a
 * submit function fail with -ECANCELED. */
HALO_API int halo_sparse_close(halo_sparse *s);

/* Submit task id with a timeout (ns from now, > 0) and a payload (copied,
 * len <= opts.max_payload). On 0, *fut (caller owns a reference) completes
 * once the record is durable and the submit function's future is done,
 * with its result (0 without a submit function), or fails with the store's
 * -errno (-EFBIG on a full disk: the task is gone, nothing half-written
 * stays) or the submit function's error. Returns 0, -EINVAL, -EEXIST (id is
 * pending or remembered as finished), -EAGAIN (max_pending tasks pending) or
 * -ENOMEM. */
HALO_API int halo_sparse_submit_at(halo_sparse *s, uint64_t id,
				   uint64_t timeout_ns, const void *payload,
				   size_t len, halo_fut **fut, const char *file,
				   int line);
#define halo_sparse_submit(s, id, timeout_ns, payload, len, fut)               \
	halo_sparse_submit_at((s), (id), (timeout_ns), (payload), (len),       \
			      (fut), __FILE__, __LINE__)

/* An event: task id ended with outcome (OK or FAILED) and result. Disarms
 * its monitor and records the outcome; done_fn runs once it is durable, and
 * so does *durable if asked for (may be NULL; caller owns a reference; OK
 * with 0, or the store's -errno, in which case the task is pending again).
 * Returns 0 (accepted), HALO_SPARSE_DUPLICATE, HALO_SPARSE_LATE (late_fn
 * ran), -ENOENT (unknown id, or its submit is not durable yet), -EINVAL or
 * -ENOMEM. */
HALO_API int halo_sparse_complete(halo_sparse *s, uint64_t id,
				  halo_sparse_outcome outcome, int64_t result,
				  halo_fut **durable);

/* A heartbeat: the task is alive; its deadline becomes at least extend_ns
 * from now, durably. Returns 0, -ENOENT (not pending), -EINVAL or -ENOMEM. */
HALO_API int halo_sparse_heartbeat(halo_sparse *s, uint64_t id,
				   uint64_t extend_ns);

/* For the poller variant with an asynchronous poll function (one that
 * returned HALO_POLLER_ASYNC): report the cycle with this instead of
 * halo_poller_reported(). Returns as halo_poller_reported(). */
HALO_API int halo_sparse_polled(halo_sparse *s, int err);

/* What s knows of id: 1 if pending (*left_ns: time left before its
 * deadline, 0 if past; may be NULL), 0 if finished and still remembered
 * (*outcome; may be NULL), -ENOENT if unknown (never submitted, forgotten
 * past keep_done, or its submit not durable yet). */
HALO_API int halo_sparse_lookup(const halo_sparse *s, uint64_t id,
				halo_sparse_outcome *outcome,
				uint64_t *left_ns);

/* A future that completes (result 0) once every record appended so far is
 * reported by the store, durable or failed: wait on it before
 * halo_sparse_close(). Caller owns a reference; NULL on exhaustion. */
HALO_API halo_fut *halo_sparse_flush_at(halo_sparse *s, const char *file,
					int line);
#define halo_sparse_flush(s) halo_sparse_flush_at((s), __FILE__, __LINE__)

/* Records appended to the store and not yet durable. */
HALO_API size_t halo_sparse_inflight(const halo_sparse *s);

/* The loop s runs on (for submit functions that start I/O). */
HALO_API halo_loop *halo_sparse_loop(const halo_sparse *s);

/* Tasks submitted without an outcome yet. */
HALO_API size_t halo_sparse_pending(const halo_sparse *s);

/* Copy the counters to out. */
HALO_API void halo_sparse_stats_get(const halo_sparse *s,
				    halo_sparse_stats *out);

/* CRC32C (Castagnoli) of len bytes, continuing from crc (0 to start): the
 * journal's checksum, with the SSE4.2 instruction where the CPU has it. */
HALO_API uint32_t halo_crc32c(uint32_t crc, const void *buf, size_t len);

/* Internal, for sparse.c: open the journal at path (not replayed yet). */
int halo__sparse_journal_setup(halo_sparse_journal *j, halo_loop *loop,
			       const char *path, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
