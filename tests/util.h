/* Helpers shared by the test suites: temp dirs, fd counting, loops. */
#ifndef HALO_TEST_UTIL_H
#define HALO_TEST_UTIL_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>
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

/* The fixture most suites use: a fresh loop per test (a ring never crosses
 * a fork, and under CK_FORK=no no ring outlives its test), closed with zero
 * leaked futures and with as many open fds as before the test. Defines the
 * static loop `name` and the setup/teardown for tcase_add_checked_fixture. */
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
	static int name##_fds;                                                 \
	static void setup(void)                                                \
	{                                                                      \
		name##_fds = tu_count_fds();                                   \
		tu_loop_init(&name, NULL);                                     \
		ck_assert_int_eq(pipe(fds), 0);                                \
	}                                                                      \
	static void teardown(void)                                             \
	{                                                                      \
		close(fds[0]);                                                 \
		close(fds[1]);                                                 \
		tu_loop_close(&name);                                          \
		ck_assert_int_eq(tu_count_fds(), name##_fds);                  \
	}

/* For suites whose tests each init their own loop (often with tu_loop_with)
 * and close it: each test leaves as many open fds as it found. Defines the
 * static loop `name` and the setup/teardown for tcase_add_checked_fixture. */
#define TU_FDS_FIXTURE(name)                                                   \
	static halo_loop name;                                                 \
	static int name##_fds;                                                 \
	static void setup(void)                                                \
	{                                                                      \
		name##_fds = tu_count_fds();                                   \
	}                                                                      \
	static void teardown(void)                                             \
	{                                                                      \
		ck_assert_int_eq(tu_count_fds(), name##_fds);                  \
	}

/* Init loop with the HALO_FEAT_* bits feat forced off (on == 0, asserted)
 * or left to the kernel (on != 0). Returns whether all of feat is on. */
bool tu_loop_with(halo_loop *loop, unsigned feat, int on);

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

/* A connected TCP pair on 127.0.0.1: *a the client's end, *b the server's
 * (accepted); both close-on-exec, the caller closes both. a_flags is added to
 * *a's file status flags after the connect (O_NONBLOCK, or 0). Asserts on
 * failure. */
void tu_tcp_pair(int *a, int *b, int a_flags);

/* Byte i of the stream the network suites send and check: no short period,
 * so a lost, doubled or reordered piece shows. */
unsigned char tu_pattern_at(size_t i);

/* Fault injection (make FAULT=1): a checked fixture for the tcases that
 * fail allocations, so that each starts disarmed and counting from zero
 * even when the tests share a process (CK_FORK=no). */
void tu_fault_reset(void);

/* Per-test timeout for tcases, scaled up under sanitizers. */
int tu_timeout(int seconds);

/* Run fn(arg) in a forked child, which exits 0 when fn returns; return the
 * child's wait status. For what must not outlive its test: a fault, a
 * seccomp filter, an rlimit, a signal disposition. Check's no-fork mode
 * (CK_FORK=no) runs every test in one process, so such a test forks its
 * own child in both modes. The child checks with TU_CHILD_ASSERT, never
 * ck_assert (in no-fork mode a failed ck_assert would jump back into the
 * runner, in the child), and never touches a loop of the parent's (a ring
 * does not cross a fork): it initialises its own. */
int tu_run_in_child(void (*fn)(void *arg), void *arg);

/* In a tu_run_in_child() child: report cond's failure and exit 1. */
#define TU_CHILD_ASSERT(cond)                                                  \
	do {                                                                   \
		if (!(cond))                                                   \
			tu_child_fail(__FILE__, __LINE__, #cond, 0, 0);        \
	} while (0)

/* The same for two integers that must be equal; reports both values. */
#define TU_CHILD_ASSERT_INT_EQ(a, b)                                           \
	do {                                                                   \
		int64_t a_ = (a), b_ = (b);                                    \
		if (a_ != b_)                                                  \
			tu_child_fail(__FILE__, __LINE__, #a " == " #b, a_,    \
				      b_);                                     \
	} while (0)

void tu_child_fail(const char *file, int line, const char *what, int64_t a,
		   int64_t b) __attribute__((noreturn));

/* Assert that a tu_run_in_child() child exited 0 (its failure is on stderr).
 * status is evaluated once: tu_assert_child_ok(tu_run_in_child(...)) runs
 * the child once. */
#define tu_assert_child_ok(status)                                             \
	do {                                                                   \
		int st_ = (status);                                            \
		ck_assert_msg(WIFEXITED(st_) && WEXITSTATUS(st_) == 0,         \
			      "child: exit %d, signal %d (see stderr)",        \
			      WIFEXITED(st_) ? WEXITSTATUS(st_) : -1,          \
			      WIFSIGNALED(st_) ? WTERMSIG(st_) : 0);           \
	} while (0)

#endif
