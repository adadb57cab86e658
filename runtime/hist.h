/* Latency histograms: with halo_loop_opts.hist set, the loop keeps
 * log-linear (HDR-style) histograms of submit-to-completion latency per
 * io_uring opcode, of tick duration, and of timers. Buckets are 16 linear
 * steps per power of two (at most 6.25% above the true value) from 1 ns to
 * 2^40 ns (18 minutes; longer samples count in the last bucket and in max);
 * memory is fixed: about 4.8 KiB per histogram, each made at its first
 * sample, and 8 bytes per timer. Off by default, and then a branch per
 * enter, CQE and timer is all they cost. */
#ifndef HALO_HIST_H
#define HALO_HIST_H

#include <stdint.h>
#include <stdio.h>

#include "api.h"
#include "fut.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Which histogram: an io_uring opcode (IORING_OP_*, below HALO_HIST_OPS),
 * from the enter that submitted the op to the reap of its first CQE, or one
 * of these. */
#define HALO_HIST_OPS 64
#define HALO_HIST_TICK                                                         \
	64		       /* a tick's busy time: from the return of       \
				  one io_uring_enter to the next enter (reap,  \
				  timers, ready queue, prepare hooks) */
#define HALO_HIST_TIMER	    65 /* loop timers: creation to expiry */
#define HALO_HIST_TIMER_LAG 66 /* loop timers: deadline to expiry */
#define HALO_HIST_N	    67

typedef struct halo_hist_summary {
	uint64_t count;
	uint64_t min_ns, max_ns, mean_ns;
	uint64_t p50_ns, p99_ns, p999_ns;
} halo_hist_summary;

/* Summarise histogram which of loop into out (all zero if it has no
 * samples). Percentiles are the upper bound of the bucket they fall in,
 * never above max. Returns 0, -ENOENT if the loop keeps no histograms,
 * -EINVAL for a bad which. */
HALO_API int halo_hist_get(const halo_loop *loop, unsigned which,
			   halo_hist_summary *out);

/* The value at percentile pct (0..100) of histogram which, in ns; 0 if it
 * has no samples or does not exist. */
HALO_API uint64_t halo_hist_percentile(const halo_loop *loop, unsigned which,
				       double pct);

/* Samples of histogram which whose bucket starts in [lo_ns, hi_ns). */
HALO_API uint64_t halo_hist_count_range(const halo_loop *loop, unsigned which,
					uint64_t lo_ns, uint64_t hi_ns);

/* The name of histogram which ("read", "recv", "tick", "timer", ...); an
 * opcode without a name is "op<N>". NULL for a bad which. */
HALO_API const char *halo_hist_name(unsigned which);

/* Empty every histogram of loop (say, after warm-up). */
HALO_API void halo_hist_reset(halo_loop *loop);

/* Write the loop's counters (halo_stats) and every histogram with samples
 * as JSON lines to out, for a scraper:
 *   {"type":"stats","ticks":...,...}
 *   {"type":"hist","name":"read","count":...,"min_ns":...,"p50_ns":...,
 *    "p99_ns":...,"p999_ns":...,"max_ns":...,"mean_ns":...,
 *    "buckets":[[upper_ns,count],...]}   (non-empty buckets only)
 * Returns the number of lines written, or -EIO if writing failed. Works
 * with histograms off too (the stats line only). */
HALO_API int halo_hist_dump(const halo_loop *loop, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
