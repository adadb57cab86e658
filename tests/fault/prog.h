/* The frame of the fault sweep's programs (tests/fault/run.sh): a program is
 * a list of independent steps, each using some modules the way a user would.
 * Every step runs even after an earlier one failed, so that one run also
 * shows that the library works on after a failed allocation. A result that
 * differs from the clean run's is a clean failure if it is an error and an
 * allocation was failed on purpose; anything else is wrong. */
#ifndef HALO_FAULT_PROG_H
#define HALO_FAULT_PROG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "halo.h"

/* Exit codes the sweep reads. */
enum {
	PROG_OK = 0,	/* every result as in a clean run */
	PROG_WRONG = 1, /* a wrong result, or an error with nothing failed */
	PROG_NOMEM = 3, /* something failed cleanly for want of memory */
	PROG_LEAK = 4,	/* halo_loop_close reported leaked futures */
	PROG_SETUP = 5, /* the machine said no (io_uring, files, sockets) */
};

#define MS 1000000ull

struct prog_step {
	const char *name;
	void (*fn)(halo_loop *loop);
};

/* Run steps (argv[1], if given, names the only step to run) on a fresh
 * loop; returns the exit code. */
int prog_run(int argc, char **argv, const struct prog_step *steps, size_t n);

/* Record got against want: equal is fine; otherwise a clean failure if got
 * is an error (< 0, not -EDEADLK) and an allocation was failed, else wrong.
 * Returns true if equal. */
#define EXPECT(got, want)                                                      \
	prog_expect((int64_t)(got), (int64_t)(want), #got, __LINE__)
bool prog_expect(int64_t got, int64_t want, const char *what, int line);

/* Record an allocation result (a future, a handle): NULL is a clean failure
 * if an allocation was failed, else wrong. Returns p != NULL. */
#define GOT(p) prog_got((p) != NULL, #p, __LINE__)
bool prog_got(bool ok, const char *what, int line);

/* Record a wrong outcome (what happened, at line). */
void prog_wrong(const char *what, int line);

/* True when the run fails every allocation from the Nth on (NTH=N+). */
bool prog_persistent(void);

/* Record a setup call of the machine (socket, pipe) that failed. */
void prog_setup_failed(const char *what);

/* halo_fut_join that takes NULL (-ENOMEM, as the start call failed). */
int64_t prog_join(halo_fut *f);

/* Cancel the futures of f[0..n) that are not done, wait until every one is
 * (without allocating: this is clean-up), release them and set them NULL.
 * NULL entries are skipped. */
void prog_drop(halo_fut **f, size_t n);

/* True once an allocation has been failed on purpose. */
bool prog_faulted(void);

/* The i-th byte of the data the programs send and check. */
static inline unsigned char prog_byte(size_t i)
{
	return (unsigned char)((i * 131) ^ (i >> 7));
}

#endif
