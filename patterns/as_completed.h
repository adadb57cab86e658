/* Completion-order iteration over a set of futures, like Python's
 * as_completed: each call hands out the next future to finish. Futures that
 * finish in the same tick come out in the order they completed; every
 * member comes out exactly once. */
#ifndef HALO_PATTERNS_AS_COMPLETED_H
#define HALO_PATTERNS_AS_COMPLETED_H

#include <stddef.h>
#include <stdint.h>

#include "../runtime/api.h"
#include "../runtime/fut.h"

#ifdef __cplusplus
extern "C" {
#endif

struct halo__ac_node;

/* Caller-embedded; treat the fields as private except err. */
typedef struct halo_as_completed {
	halo_loop *loop;
	halo_fut *const *futs;
	size_t n, yielded_n, ready_head, ready_n, last;
	size_t *ready; /* indices in completion order */
	struct halo__ac_node *nodes;
	halo_fut *wake;
	uint64_t deadline_ns;
	int err; /* why next() returned NULL early: -ETIMEDOUT, -ECANCELED,
		    -EDEADLK, -ENOMEM; 0 at the end */
} halo_as_completed;

/* Set up it over futs[0..n) (caller-owned; the array and the futures must
 * stay valid until halo_as_completed_close). Futures already done come
 * first, in index order. deadline_ns bounds every next() (0 = none).
 * Returns 0 or -ENOMEM. */
HALO_API int halo_as_completed_init(halo_as_completed *it, halo_loop *loop,
				    halo_fut *const *futs, size_t n,
				    uint64_t deadline_ns);

/* The next future to finish, waiting for it (a fiber suspends, the loop's
 * thread drives the loop). NULL when every member was handed out, or early
 * with it->err set. The future is borrowed from the caller's array. */
HALO_API halo_fut *halo_as_completed_next(halo_as_completed *it);

/* The index in futs of the future last returned by next(). */
HALO_API size_t halo_as_completed_index(const halo_as_completed *it);

/* Unhook from the futures not handed out yet and free the iterator's
 * memory; the futures stay the caller's. */
HALO_API void halo_as_completed_close(halo_as_completed *it);

#ifdef __cplusplus
}
#endif
#endif
