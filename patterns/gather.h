/* Gather and race: one future over many. A gather succeeds when every child
 * succeeds and fails with the first failure (by completion time); a race
 * succeeds with the first child that succeeds. Neither leaves work behind
 * when asked to stop: cancelled children are waited for until they are done
 * (for I/O: until the kernel confirmed), and only then does the gather or
 * race future complete. */
#ifndef HALO_PATTERNS_GATHER_H
#define HALO_PATTERNS_GATHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../runtime/api.h"
#include "../runtime/fut.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct halo_gather_opts {
	int64_t *results;     /* n slots filled in input order with each
				 child's halo_fut_result(); may be NULL; must
				 stay valid until the gather is done */
	bool cancel_on_error; /* on the first failure cancel the others and
				 complete only when they are done */
	bool adopt;	      /* take over the caller's reference to each
				 child (released when the gather is done) */
	size_t *failed;	      /* set to the index of the child whose failure
				 the gather failed with (its error and
				 message are the gather's), SIZE_MAX if
				 none; may be NULL; must stay valid until
				 the gather is done */
} halo_gather_opts;

/* A future over futs[0..n): OK with result n and value opts->results once
 * all are OK; ERROR with the first failure's -errno and message (-ECANCELED
 * for a cancelled child), the failed child's index in opts->failed. Without
 * cancel_on_error it fails at once and the rest run on. Cancelling it
 * cancels the children and completes CANCELLED once they are done. The
 * gather holds its own references to the children (unless adopt); the
 * caller owns one reference to the gather. NULL on exhaustion (then nothing
 * was adopted). */
HALO_API halo_fut *halo_gather_at(halo_loop *loop, halo_fut *const *futs,
				  size_t n, const halo_gather_opts *opts,
				  const char *file, int line);
#define halo_gather(loop, futs, n, opts)                                       \
	halo_gather_at((loop), (futs), (n), (opts), __FILE__, __LINE__)

/* The results array of an OK gather (its value), NULL otherwise. Marks g
 * consumed. */
HALO_API int64_t *halo_gather_results(halo_fut *g);

typedef struct halo_race_opts {
	size_t *winner; /* set to the winner's index (SIZE_MAX if none);
			   must stay valid until the race is done */
	bool adopt;	/* as in halo_gather_opts */
	size_t *failed; /* if all fail, set to the index of the child whose
			   failure the race failed with (SIZE_MAX if none);
			   may be NULL; valid until the race is done */
} halo_race_opts;

/* A future over futs[0..n) that completes OK with the result and value of
 * the first child to succeed, after every other child was cancelled and is
 * done. If all fail, it fails with the last failure (its -errno, message
 * and, in opts->failed, index). n == 0 fails with -ENOENT. Cancelling it
 * cancels the children. Ownership as halo_gather. */
HALO_API halo_fut *halo_race_at(halo_loop *loop, halo_fut *const *futs,
				size_t n, const halo_race_opts *opts,
				const char *file, int line);
#define halo_race(loop, futs, n)                                               \
	halo_race_at((loop), (futs), (n), NULL, __FILE__, __LINE__)
#define halo_race_with(loop, futs, n, opts)                                    \
	halo_race_at((loop), (futs), (n), (opts), __FILE__, __LINE__)

#ifdef __cplusplus
}
#endif
#endif
