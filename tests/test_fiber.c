/* Fibers: results, waiting on I/O, yields, cancellation, many fibers, and a
 * stack overflow that faults on the guard page. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "tests/util.h"

TU_LOOP_FIXTURE(loop)

static int64_t add_one(halo_loop *l, void *arg)
{
	(void)l;
	return (int64_t)(intptr_t)arg + 1;
}

START_TEST(test_spawn_returns_result_and_starts_later)
{
	halo_fut *f = halo_spawn(&loop, add_one, (void *)41);
	halo_stats st;

	halo_loop_stats(&loop, &st);
	ck_assert_uint_eq(st.live_fibers, 1);
	ck_assert(!halo_fut_is_done(f)); /* never runs inside spawn */
	ck_assert_int_eq(halo_fut_wait(f), 42);
	halo_fut_release(f);
	halo_loop_stats(&loop, &st);
	ck_assert_uint_eq(st.live_fibers, 0);
}
END_TEST

static int64_t fail_eio(halo_loop *l, void *arg)
{
	(void)l;
	(void)arg;
	return -EIO;
}

struct parker {
	halo_fut *slot;
	int64_t got[2];
};

/* Parks twice; returns how many parks came back. */
static int64_t park_twice(halo_loop *l, void *arg)
{
	struct parker *p = arg;

	p->got[0] = halo_fiber_park(l, &p->slot);
	if (p->slot)
		return -EBADMSG; /* park clears the slot */
	p->got[1] = halo_fiber_park(l, &p->slot);
	return 2;
}

/* A parked fiber resumes with unpark's value, once; a second unpark and
 * an unpark of a fiber that is not parked are refused; a cancel ends a
 * park with -ECANCELED. */
START_TEST(test_park_and_unpark)
{
	struct parker p = {0};
	halo_fut *f = halo_spawn(&loop, park_twice, &p);

	ck_assert_int_eq(halo_fiber_unpark(f, 1), -EALREADY); /* not started */
	while (!p.slot)
		ck_assert_int_ge(halo_loop_run_once(&loop), 0);
	ck_assert_ptr_eq(p.slot, f);
	ck_assert_int_eq(halo_fiber_unpark(p.slot, 7), 0);
	ck_assert_int_eq(halo_fiber_unpark(f, 8), -EALREADY);
	while (!p.got[0])
		ck_assert_int_ge(halo_loop_run_once(&loop), 0);
	ck_assert_int_eq(p.got[0], 7);
	while (!p.slot)
		ck_assert_int_ge(halo_loop_run_once(&loop), 0);
	ck_assert_int_eq(halo_fut_cancel(f), 0);
	ck_assert_int_eq(halo_fut_wait(f), -ECANCELED);
	ck_assert_int_eq(p.got[1], -ECANCELED);
	ck_assert_ptr_null(p.slot);
	ck_assert_int_eq(halo_fiber_unpark(f, 1), -EALREADY);
	ck_assert_int_eq(halo_fiber_park(&loop, &p.slot), -EPERM);
	halo_fut_release(f);
}
END_TEST

START_TEST(test_negative_return_is_error)
{
	halo_fut *f = halo_spawn(&loop, fail_eio, NULL);

	ck_assert_int_eq(halo_fut_wait(f), -EIO);
	ck_assert_int_eq(halo_fut_status(f), HALO_FUT_ERROR);
	halo_fut_release(f);
}
END_TEST

static int64_t read_pipe(halo_loop *l, void *arg)
{
	int fd = *(int *)arg;
	char buf[16] = {0};
	halo_fut *r = halo_read(l, fd, buf, sizeof(buf), -1);
	int64_t n = halo_fut_join(r);

	return n == 5 && memcmp(buf, "hello", 5) == 0 ? n : -EBADMSG;
}

START_TEST(test_fiber_suspends_on_io_while_loop_runs)
{
	int p[2];
	halo_fut *f;

	ck_assert_int_eq(pipe(p), 0);
	f = halo_spawn(&loop, read_pipe, &p[0]);
	for (int i = 0; i < 3; i++)
		halo_loop_run_nowait(&loop);
	ck_assert(!halo_fut_is_done(f));
	ck_assert_int_eq(write(p[1], "hello", 5), 5);
	ck_assert_int_eq(halo_fut_wait(f), 5);
	halo_fut_release(f);
	close(p[0]);
	close(p[1]);
}
END_TEST

struct pingpong {
	char log[64];
	int n;
};

static int64_t yielder(halo_loop *l, void *arg)
{
	struct pingpong *pp = arg;
	char me = pp->n++ == 0 ? 'a' : 'b';

	for (int i = 0; i < 3; i++) {
		pp->log[strlen(pp->log)] = me;
		ck_assert_int_eq(halo_yield(l), 0);
	}
	return 0;
}

START_TEST(test_yield_interleaves_fibers)
{
	struct pingpong pp = {{0}, 0};
	halo_fut *a = halo_spawn(&loop, yielder, &pp);
	halo_fut *b = halo_spawn(&loop, yielder, &pp);

	ck_assert_int_eq(halo_yield(&loop), -EPERM); /* not in a fiber */
	halo_fut_wait(a);
	halo_fut_wait(b);
	ck_assert_str_eq(pp.log, "ababab");
	halo_fut_release(a);
	halo_fut_release(b);
}
END_TEST

struct counted {
	char *log;
	char name;
	int yields;
};

static int64_t yield_n(halo_loop *l, void *arg)
{
	struct counted *c = arg;

	for (int i = 0; i < c->yields; i++) {
		c->log[strlen(c->log)] = c->name;
		ck_assert_int_eq(halo_yield(l), 0);
	}
	c->log[strlen(c->log)] = (char)(c->name - 'a' + 'A'); /* done */
	return c->yields;
}

START_TEST(test_yields_hand_over_in_order_while_fibers_finish)
{
	char log[64] = {0};
	struct counted c[3] = {{log, 'a', 1}, {log, 'b', 3}, {log, 'c', 2}};
	halo_fut *f[3];
	halo_stats st;

	for (int i = 0; i < 3; i++)
		f[i] = halo_spawn(&loop, yield_n, &c[i]);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(halo_fut_join(f[i]), c[i].yields);
	/* Each pass runs every fiber once, in spawn order; a fiber that
	 * yielded straight into the next one ends up in the same order. */
	ck_assert_str_eq(log, "abcAbcbC" "B");
	halo_loop_stats(&loop, &st);
	ck_assert_uint_eq(st.live_fibers, 0);
}
END_TEST

static int64_t wait_forever(halo_loop *l, void *arg)
{
	halo_fut *p = arg;
	int64_t r = halo_fut_wait(p);

	(void)l;
	ck_assert_int_eq(r, -ECANCELED);
	ck_assert(halo_fiber_cancelled(l));
	/* One interrupted wait only: clean-up can still wait. */
	ck_assert_int_eq(halo_sleep(l, 1000000), 0);
	return r;
}

START_TEST(test_cancel_interrupts_the_wait)
{
	halo_fut *p = halo_fut_new(&loop);
	halo_fut *f = halo_spawn(&loop, wait_forever, p);

	halo_loop_run_nowait(&loop);
	ck_assert(!halo_fut_is_done(f));
	ck_assert_int_eq(halo_fut_cancel(f), 0);
	ck_assert_int_eq(halo_fut_wait(f), -ECANCELED);
	ck_assert_int_eq(halo_fut_status(f), HALO_FUT_CANCELLED);
	ck_assert(!halo_fut_is_done(p)); /* the awaited future is not ours */
	halo_fut_cancel(p);
	halo_fut_release(p);
	halo_fut_release(f);
}
END_TEST

static int ran;
static int64_t mark_ran(halo_loop *l, void *arg)
{
	(void)l;
	(void)arg;
	ran = 1;
	return 0;
}

START_TEST(test_cancel_before_start_never_runs)
{
	halo_fut *f = halo_spawn(&loop, mark_ran, NULL);

	ran = 0;
	halo_fut_cancel(f);
	ck_assert_int_eq(halo_fut_wait(f), -ECANCELED);
	ck_assert_int_eq(ran, 0);
	halo_fut_release(f);
}
END_TEST

static int64_t try_run_loop(halo_loop *l, void *arg)
{
	(void)arg;
	return halo_loop_run(l);
}

START_TEST(test_driving_the_loop_from_a_fiber_is_edeadlk)
{
	halo_fut *f = halo_spawn(&loop, try_run_loop, NULL);

	ck_assert_int_eq(halo_fut_wait(f), -EDEADLK);
	halo_fut_release(f);
}
END_TEST

static int64_t child(halo_loop *l, void *arg)
{
	(void)l;
	return (int64_t)(intptr_t)arg;
}

START_TEST(test_100000_fibers_spawned_and_joined)
{
	enum { N = 100000 };
	static halo_fut *f[N];
	halo_stats st;
	int64_t sum = 0;

	for (int i = 0; i < N; i++) {
		f[i] = halo_spawn(&loop, child, (void *)(intptr_t)i);
		ck_assert_ptr_nonnull(f[i]);
	}
	for (int i = 0; i < N; i++)
		sum += halo_fut_join(f[i]);
	ck_assert_int_eq(sum, (int64_t)N * (N - 1) / 2);
	halo_loop_stats(&loop, &st);
	ck_assert_uint_eq(st.live_fibers, 0);
	ck_assert_uint_eq(st.live_futures, 0);
}
END_TEST

static int64_t nested_waiter(halo_loop *l, void *arg)
{
	halo_fut *inner = halo_spawn(l, add_one, arg);

	return halo_fut_join(inner) * 2;
}

START_TEST(test_fiber_awaits_fiber)
{
	halo_fut *f = halo_spawn(&loop, nested_waiter, (void *)4);

	ck_assert_int_eq(halo_fut_join(f), 10);
}
END_TEST

static volatile int depth_limit = 1 << 30;

static int __attribute__((noinline)) recurse(volatile char *prev, int depth)
{
	volatile char frame[512];

	frame[0] = (char)depth;
	frame[511] = prev ? prev[0] : 0;
	if (depth > depth_limit)
		return 0;
	return recurse(frame, depth + 1) + frame[511];
}

static int64_t overflow(halo_loop *l, void *arg)
{
	(void)l;
	(void)arg;
	return recurse(NULL, 0);
}

/* The child: its own loop, one fiber that overflows its 32 KiB stack. */
static void overflow_child(void *arg)
{
	struct rlimit no_core = {0, 0};
	halo_fiber_opts o = {.stack_size = 32 * 1024};
	halo_loop l;
	halo_fut *f;

	(void)arg;
	signal(SIGSEGV, SIG_DFL); /* the sanitizer's handler would exit(1) */
	setrlimit(RLIMIT_CORE, &no_core);
	TU_CHILD_ASSERT(halo_loop_init(&l, NULL) == 0);
	f = halo_spawn_opts(&l, overflow, NULL, &o);
	TU_CHILD_ASSERT(f != NULL);
	halo_fut_wait(f); /* never returns: SIGSEGV on the guard page */
}

START_TEST(test_stack_overflow_faults_on_guard_page)
{
	int status = tu_run_in_child(overflow_child, NULL);

	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV,
		      "child: exit %d, signal %d; want SIGSEGV",
		      WIFEXITED(status) ? WEXITSTATUS(status) : -1,
		      WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}
END_TEST

static int count_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	int n = 0, c;

	ck_assert_ptr_nonnull(f);
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

static int64_t wait_on_arg(halo_loop *l, void *arg)
{
	(void)l;
	return halo_fut_wait(arg);
}

START_TEST(test_close_unmaps_stacks_of_suspended_fibers)
{
	halo_loop l;
	halo_fiber_opts o = {.stack_size = 1 << 20}; /* not from the cache */
	halo_fut *p, *f[8];
	int before = count_maps();

	tu_loop_init(&l, NULL);
	p = halo_fut_new(&l);
	for (int i = 0; i < 8; i++)
		f[i] = halo_spawn_opts(&l, wait_on_arg, p, &o);
	for (int i = 0; i < 3; i++)
		halo_loop_run_nowait(&l);
	ck_assert_int_ge(count_maps(), before + 16); /* stack + guard each */
	for (int i = 0; i < 8; i++) {
		ck_assert(!halo_fut_is_done(f[i]));
		halo_fut_release(f[i]);
	}
	halo_fut_release(p);
	tu_loop_close(&l);
	/* Slack for the allocator's (or ASan's) own mappings. */
	ck_assert_int_lt(count_maps(), before + 8);
}
END_TEST

int ctx_selftest(void);

START_TEST(test_bare_switch_keeps_callee_saved_registers)
{
	ck_assert_int_eq(ctx_selftest(), 0);
}
END_TEST

Suite *fiber_suite(void)
{
	Suite *s = suite_create("fiber");
	TCase *tc = tcase_create("fiber");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(30));
	tcase_add_test(tc, test_bare_switch_keeps_callee_saved_registers);
	tcase_add_test(tc, test_spawn_returns_result_and_starts_later);
	tcase_add_test(tc, test_negative_return_is_error);
	tcase_add_test(tc, test_fiber_suspends_on_io_while_loop_runs);
	tcase_add_test(tc, test_yield_interleaves_fibers);
	tcase_add_test(tc, test_yields_hand_over_in_order_while_fibers_finish);
	tcase_add_test(tc, test_cancel_interrupts_the_wait);
	tcase_add_test(tc, test_cancel_before_start_never_runs);
	tcase_add_test(tc, test_driving_the_loop_from_a_fiber_is_edeadlk);
	tcase_add_test(tc, test_100000_fibers_spawned_and_joined);
	tcase_add_test(tc, test_fiber_awaits_fiber);
	tcase_add_test(tc, test_park_and_unpark);
	tcase_add_test(tc, test_close_unmaps_stacks_of_suspended_fibers);
	tcase_add_test(tc, test_stack_overflow_faults_on_guard_page);
	suite_add_tcase(s, tc);
	return s;
}
