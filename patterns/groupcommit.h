/* Group commit: many callers append records to one file; each batch of
 * records is written with ONE writev and made durable with ONE fdatasync,
 * and every caller's future completes when its record is durable. While a
 * batch is in flight, new appends gather into the next one, so the number of
 * fdatasyncs follows the device's sync latency, not the number of records. */
#ifndef HALO_PATTERNS_GROUPCOMMIT_H
#define HALO_PATTERNS_GROUPCOMMIT_H

#include <stddef.h>
#include <stdint.h>

#include "../runtime/api.h"
#include "../runtime/fut.h"
#include "../runtime/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct halo_gc halo_gc;

/* Called once per batch after its futures are completed: records is the
 * number of records the batch held (appended with or without a future, in
 * append order), err 0 if they are durable, else the batch's -errno. gc is
 * idle during the call (no batch in flight): it may append, or move gc to
 * another file with halo_gc_reopen(). */
typedef void (*halo_gc_batch_fn)(halo_gc *gc, size_t records, int err,
				 void *arg);

typedef struct halo_gc_opts {
	int64_t offset; /* where the first record goes; 0 (default): the end
			   of the file at init */
	halo_gc_batch_fn on_batch; /* optional */
	void *arg;		   /* for on_batch */
} halo_gc_opts;

typedef struct halo_gc_stats {
	uint64_t appends;	/* records accepted */
	uint64_t batches;	/* batches started */
	uint64_t writes;	/* writev operations (more than batches only
				   after short writes) */
	uint64_t fdatasyncs;	/* fdatasync operations */
	uint64_t bytes;		/* bytes made durable */
	uint64_t failed_batches;
	uint64_t failed_truncates; /* a failed batch's partial write could not
				      be cut off (ftruncate failed) */
	uint64_t max_records;	/* most records in one batch */
} halo_gc_stats;

struct halo__gc_rec {
	halo_fut *fut;
	size_t len;
};

struct halo__gc_batch {
	char *buf;
	size_t len, cap;
	struct halo__gc_rec *recs;
	size_t n, fcap;
};

/* Caller-allocated; treat the fields as private. */
struct halo_gc {
	halo_loop *loop;
	halo_hook hook;
	halo_gc_opts opts;
	int fd;
	int64_t off; /* where the next batch goes */
	struct halo__gc_batch b[2];
	int cur;      /* index of the gathering batch */
	int inflight; /* the other batch is being written or synced */
	size_t done;  /* bytes of the in-flight batch written so far */
	halo_fut *op;
	halo_waiter op_w;
	halo_gc_stats stats;
};

/* Set up gc for appends to fd (opened for writing; O_APPEND not needed: gc
 * writes at its own offsets). Returns 0, -EINVAL or -errno from fstat. */
HALO_API int halo_gc_init(halo_gc *gc, halo_loop *loop, int fd,
			  const halo_gc_opts *opts);

/* Fail records not yet written with -ECANCELED and free the buffers.
 * Returns 0, or -EBUSY while a batch is in flight (wait for its futures
 * first); fd stays open (the caller's). */
HALO_API int halo_gc_close(halo_gc *gc);

/* Append len bytes of rec. rec is copied: the caller may reuse it at once.
 * Records of one caller reach the file in call order. The future completes
 * once the record is durable (result: its file offset) or with the -errno of
 * its batch's writev or fdatasync. Caller owns a reference; NULL on
 * exhaustion. */
HALO_API halo_fut *halo_gc_append_at(halo_gc *gc, const void *rec, size_t len,
				     const char *file, int line);
#define halo_gc_append(gc, rec, len)                                           \
	halo_gc_append_at((gc), (rec), (len), __FILE__, __LINE__)

/* Append len bytes of rec without a future: for a caller that tracks its
 * records itself and learns their fate from opts.on_batch. rec is copied.
 * Returns 0, -EINVAL (len 0) or -ENOMEM. */
HALO_API int halo_gc_append_quiet(halo_gc *gc, const void *rec, size_t len);

/* The file offset up to which every record is durable (where the next batch
 * goes). A failed batch that wrote part of itself (a short write, then
 * -EFBIG or -ENOSPC) is cut back to this offset (ftruncate), so that no
 * half-written record stays in the file. */
HALO_API int64_t halo_gc_durable(const halo_gc *gc);

/* Point gc at another file: batches from now on go to fd at offset (the
 * records gathered but not yet written included). For compaction, from
 * opts.on_batch or while no batch is in flight. fd stays the caller's.
 * Returns 0, -EINVAL or -EBUSY while a batch is in flight. */
HALO_API int halo_gc_reopen(halo_gc *gc, int fd, int64_t offset);

/* Copy the counters to out. */
HALO_API void halo_gc_stats_get(const halo_gc *gc, halo_gc_stats *out);

#ifdef __cplusplus
}
#endif
#endif
