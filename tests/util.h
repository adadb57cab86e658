/* Helpers shared by the test suites: temp dirs, fd counting, loops. */
#ifndef HALO_TEST_UTIL_H
#define HALO_TEST_UTIL_H

#include <check.h>
#include <stdint.h>
#include <unistd.h>

#include "halo.h"

/* Number of open fds of this process (counts /proc/self/fd). */
int tu_count_fds(void);

/* Make a fresh temp dir; returns its path (static storage per call site is
 * the caller's: copy it). Removed by tu_rmdir(). */
char *tu_tmpdir(void);
void tu_rmdir(char *path);

/* Init loop with opts (NULL: defaults) and assert success. */
void tu_loop_init(halo_loop *loop, const halo_loop_opts *opts);

/* Close the loop and assert that no future leaked. */
void tu_loop_close(halo_loop *loop);

/* The fixture most suites use: a fresh loop per test (Check forks each
 * test, so no ring crosses a fork), closed with zero leaked futures and
 * with as many open fds as before the test. Defines the static loop `name`
 * and the setup/teardown functions for tcase_add_checked_fixture. */
#define TU_LOOP_FIXTURE(name)                                                  \
	static halo_loop name;                                                 \
	static int name##_fds;                                                 \
	static void setup(void)                                                \
	{                                                                      \
		name##_fds = tu_count_fds();                                   \
		tu_loop_init(&name, NULL);                                     \
	}                                                                      \
	static void teardown(void)                                             \
	{                                                                      \
		tu_loop_close(&name);                                          \
		ck_assert_int_eq(tu_count_fds(), name##_fds);                  \
	}

/* The same with a pipe opened for the test in fds, closed before the loop. */
#define TU_LOOP_PIPE_FIXTURE(name, fds)                                        \
	static halo_loop name;                                                 \
	static int fds[2];                                                     \
	static void setup(void)                                                \
	{                                                                      \
		tu_loop_init(&name, NULL);                                     \
		ck_assert_int_eq(pipe(fds), 0);                                \
	}                                                                      \
	static void teardown(void)                                             \
	{                                                                      \
		close(fds[0]);                                                 \
		close(fds[1]);                                                 \
		tu_loop_close(&name);                                          \
	}

/* A unit of work for fibers: sleep ms milliseconds, then return ret (or the
 * sleep's error); got is what the sleep returned. */
struct tu_job {
	uint64_t ms;
	int64_t ret;
	int64_t got;
};

/* Fiber body for a struct tu_job *arg. */
int64_t tu_sleeper(halo_loop *l, void *arg);

/* Operations the kernel holds for loop now. */
uint64_t tu_inflight(halo_loop *loop);

/* Per-test timeout for tcases, scaled up under sanitizers. */
int tu_timeout(int seconds);

#endif
