/* The two-loop build: loop 1 starts every unit (non-blocking start halves),
 * loop 2 waits for each unit in order and presents it. Total latency is the
 * slowest unit, not the sum. halo checks the start halves: a start that
 * waits on a future or drives the loop, and one that holds the thread
 * (sleeps, makes a blocking system call, computes) longer than a threshold,
 * is reported by its unit's name. */
#ifndef HALO_PATTERNS_BUILD_H
#define HALO_PATTERNS_BUILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../runtime/api.h"
#include "../runtime/fut.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One unit of a build; the caller fills name, start, present and arg, and
 * halo_build() fills the outcome fields. */
typedef struct halo_build_unit {
	const char *name;
	/* Start the unit's work without waiting; returns a future the build
	 * owns. A start that fails at once returns halo_fut_failed(loop,
	 * -errno, msg), so that the report shows its error and message; NULL
	 * means the unit fails with -ENOMEM. */
	halo_fut *(*start)(halo_loop *loop, void *arg);
	/* Consume the done future (borrowed; the build releases it). Returns
	 * 0 or -errno. */
	int (*present)(halo_loop *loop, void *arg, halo_fut *f);
	void *arg;
	int err;	    /* out: 0, the unit's -errno, -ETIMEDOUT if it
			       missed the deadline, or present's error */
	bool blocked;	    /* out: its start half blocked: waited on a halo
			       future, or held the thread past the stall
			       threshold (see halo_build_opts.stall_ns) */
	bool presented;	    /* out: present was called */
} halo_build_unit;

/* flags */
#define HALO_BUILD_PRESENT_FAILED (1u << 0) /* present failed units too */
#define HALO_BUILD_WARN (1u << 1) /* print blocking starts on stderr */

/* A start half that runs this long has stalled, when neither the build's
 * options nor the loop (halo_loop_opts.stall_ns) say otherwise. */
#define HALO_BUILD_STALL_NS 10000000ull

typedef struct halo_build_opts {
	uint64_t deadline_ns; /* absolute CLOCK_MONOTONIC for the whole build;
				 0 = none */
	unsigned flags;
	uint64_t stall_ns; /* a start half running this long stalled; 0: the
			      loop's stall threshold, or HALO_BUILD_STALL_NS
			      if the loop has none; UINT64_MAX: never */
} halo_build_opts;

/* A unit that failed, as the report lists it. */
typedef struct halo_build_failure {
	size_t unit;	  /* its index in units[] */
	const char *name; /* units[unit].name (borrowed from the caller) */
	int err;	  /* units[unit].err */
	const char *msg;  /* the message its future failed with (see
			     halo_fut_error_msg), copied; NULL if none */
} halo_build_failure;

typedef struct halo_build_report {
	int status;	   /* 0, or the first unit error in unit order */
	size_t failed_n;   /* units with err != 0 */
	size_t missed_n;   /* units cancelled by the deadline */
	size_t blocked_n;  /* units whose start blocked (waited or stalled) */
	char blocked[256]; /* their names, comma-separated (truncated) */
	size_t stalled_n;  /* those of them that held the thread (sleep,
			      blocking system call, long computation)
			      without waiting on halo */
	char stalled[256]; /* their names, comma-separated (truncated) */
	uint64_t stalled_max_ns; /* the longest such start half */
	char missed[256];  /* names of the units that missed the deadline */
	/* The failed units in unit order (failed_n of them; failures[0] is
	 * the one whose error is status), with their messages copied into
	 * loop memory: valid, whatever became of the units' futures, until
	 * halo_build_report_release(). NULL if no unit failed or if memory
	 * ran out (the counts and status stand). */
	halo_build_failure *failures;
	size_t failures_size; /* private: for halo_build_report_release */
} halo_build_report;

/* Run the build over units[0..n). A failed unit records its error and, by
 * default, is not presented; the others still are. At the deadline every
 * not-done future of the build is cancelled and waited for (the kernel
 * confirmed), and those units get -ETIMEDOUT. Works in a fiber and on the
 * loop's thread outside callbacks. The report lists the failed units; free
 * it with halo_build_report_release(). A start half that stalled is also
 * reported to the loop's stall detector, if it is on (halo_stall_report,
 * labelled "build unit <name>"). */
HALO_API halo_build_report halo_build(halo_loop *loop, halo_build_unit *units,
				      size_t n, const halo_build_opts *opts);

/* Free the loop memory that rep->failures holds and clear it; call it once
 * per report (any copy of it), before the loop is closed. Does nothing for a
 * report without failures. */
HALO_API void halo_build_report_release(halo_loop *loop,
					halo_build_report *rep);

#ifdef __cplusplus
}
#endif
#endif
