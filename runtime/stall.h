/* The stall detector: who held the loop's thread. With a threshold set in
 * halo_loop_opts.stall_ns, every ready-queue callback, fiber slice (switch-in
 * to switch-out) and prepare hook that runs at least that long is counted in
 * halo_stats.stalls and reported to opts.stall_fn with its duration and its
 * origin. Off (zero) by default. */
#ifndef HALO_STALL_H
#define HALO_STALL_H

#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "fut.h"

#ifdef __cplusplus
extern "C" {
#endif

/* halo_stall.kind: what held the thread. */
#define HALO_STALL_CALLBACK 1 /* a ready-queue callback: fn is set */
#define HALO_STALL_FIBER    2 /* a fiber slice: file and line are set */
#define HALO_STALL_PREPARE  3 /* a prepare hook: fn is set */
#define HALO_STALL_SECTION  4 /* halo_stall_report(): label is set */

/* One report. Every pointer is valid during the hook call only. */
typedef struct halo_stall {
	uint64_t duration_ns; /* time the thread was held, fiber slices run
				 from a callback not included */
	int kind;	      /* HALO_STALL_* */
	const void *fn;	      /* the callback or hook function, or NULL */
	const char *symbol;   /* fn's name by dladdr(), or NULL (a static
				 function, or one in an executable linked
				 without -rdynamic) */
	const char *object;   /* the file fn lies in (dladdr()), or NULL */
	uintptr_t offset;     /* fn's offset in object: for a function
				 without a symbol, addr2line -f -e object
				 offset names it */
	const char *file;     /* a fiber's spawn site, or NULL */
	int line;
	const char *label; /* what halo_stall_report() was given, or NULL */
} halo_stall;

/* The hook that receives each report, on the loop's thread, right after the
 * stall; the time it takes itself is not counted. */
typedef void (*halo_stall_fn)(halo_loop *loop, const halo_stall *s, void *arg);

/* Describe s's origin in buf as one line, without a newline: "fiber spawned
 * at x.c:12", "callback on_read (server+0x1a2b)", "prepare hook
 * (libx.so+0x...)", or the label. Returns what snprintf returns. */
HALO_API int halo_stall_format(const halo_stall *s, char *buf, size_t cap);

/* The loop's stall threshold in nanoseconds, 0 when the detector is off. */
HALO_API uint64_t halo_stall_threshold(const halo_loop *loop);

/* Report a stretch of code that the caller measured itself, such as a
 * halo_build unit's start half: counted and passed to the hook as
 * HALO_STALL_SECTION with label (borrowed for the call), whatever its
 * duration. Returns 0, or -ENOENT (nothing done) if the detector is off. */
HALO_API int halo_stall_report(halo_loop *loop, uint64_t duration_ns,
			       const char *label);

#ifdef __cplusplus
}
#endif
#endif
