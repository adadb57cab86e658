/* The two-loop build: loop 1 starts every unit (non-blocking start halves),
 * loop 2 waits for each unit in order and presents it. Total latency is the
 * slowest unit, not the sum. halo checks the start halves: a start that
 * waits on a future or drives the loop is reported by its unit's name. */
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
	 * owns (NULL: the unit fails with -ENOMEM). */
	halo_fut *(*start)(halo_loop *loop, void *arg);
	/* Consume the done future (borrowed; the build releases it). Returns
	 * 0 or -errno. */
	int (*present)(halo_loop *loop, void *arg, halo_fut *f);
	void *arg;
	int err;	    /* out: 0, the unit's -errno, -ETIMEDOUT if it
			       missed the deadline, or present's error */
	bool blocked;	    /* out: its start half blocked */
	bool presented;	    /* out: present was called */
} halo_build_unit;

/* flags */
#define HALO_BUILD_PRESENT_FAILED (1u << 0) /* present failed units too */
#define HALO_BUILD_WARN (1u << 1) /* print blocking starts on stderr */

typedef struct halo_build_opts {
	uint64_t deadline_ns; /* absolute CLOCK_MONOTONIC for the whole build;
				 0 = none */
	unsigned flags;
} halo_build_opts;

typedef struct halo_build_report {
	int status;	   /* 0, or the first unit error in unit order */
	size_t failed_n;   /* units with err != 0 */
	size_t missed_n;   /* units cancelled by the deadline */
	size_t blocked_n;  /* units whose start blocked */
	char blocked[256]; /* their names, comma-separated (truncated) */
	char missed[256];  /* names of the units that missed the deadline */
} halo_build_report;

/* Run the build over units[0..n). A failed unit records its error and, by
 * default, is not presented; the others still are. At the deadline every
 * not-done future of the build is cancelled and waited for (the kernel
 * confirmed), and those units get -ETIMEDOUT. Works in a fiber and on the
 * loop's thread outside callbacks. */
HALO_API halo_build_report halo_build(halo_loop *loop, halo_build_unit *units,
				      size_t n, const halo_build_opts *opts);

#ifdef __cplusplus
}
#endif
#endif
