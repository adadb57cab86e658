/* halo_wait: ALL / FIRST_COMPLETED / FIRST_ERROR, deadlines that cancel real
 * I/O, waiting contexts. */
#include <errno.h>
#include <unistd.h>

#include "runtime/fault.h"
#include "tests/util.h"

TU_LOOP_FIXTURE(loop)

#define MS 1000000ull

static void fail_cb(halo_fut *t, void *arg)
{
	(void)t;
	halo_fut_fail(arg, -EIO, "disk on fire");
}

START_TEST(test_three_units_take_the_slowest_not_the_sum)
{
	halo_fut *f[3];
	uint64_t t0 = halo_now_ns();
	halo_wait_result w;

	f[0] = halo_timer_after(&loop, 50 * MS);
	f[1] = halo_timer_after(&loop, 80 * MS);
	f[2] = halo_timer_after(&loop, 120 * MS);
	w = halo_wait(&loop, f, 3, HALO_ALL_COMPLETED, 0);
	ck_assert_int_eq(w.status, 0);
	ck_assert_uint_eq(w.done_n, 3);
	ck_assert_uint_eq(w.first, 0);
	ck_assert_uint_eq(w.first_error, SIZE_MAX);
	ck_assert_uint_lt(halo_now_ns() - t0, 200 * MS);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(halo_fut_result(f[i]), 0);
		halo_fut_release(f[i]);
	}
}
END_TEST

START_TEST(test_first_completed_returns_cache_and_cancels_db)
{
	struct tu_job cache = {10, 1, 0}, db = {100, 2, 0};
	halo_fut *both[2] = {halo_spawn(&loop, tu_sleeper, &cache),
			     halo_spawn(&loop, tu_sleeper, &db)};
	uint64_t t0 = halo_now_ns();
	uint64_t deadline_ns = t0 + 1000 * MS;
	halo_wait_result w;

	w = halo_wait(&loop, both, 2, HALO_FIRST_COMPLETED, deadline_ns);
	ck_assert_int_eq(w.status, 0);
	ck_assert_uint_eq(w.first, 0);
	ck_assert_uint_eq(w.done_n, 1);
	ck_assert_int_eq(halo_fut_result(both[0]), 1);
	ck_assert(!halo_fut_is_done(both[1])); /* halo_wait did not cancel */
	ck_assert_uint_eq(halo_cancel_all(both, 2), 1);
	w = halo_wait(&loop, both, 2, HALO_ALL_COMPLETED, 0);
	ck_assert_int_eq(w.status, 0);
	ck_assert_int_eq(halo_fut_status(both[1]), HALO_FUT_CANCELLED);
	ck_assert_uint_lt(halo_now_ns() - t0, 80 * MS);
	halo_fut_release(both[0]);
	halo_fut_release(both[1]);
}
END_TEST

START_TEST(test_first_completed_cancel_rest_confirms_losers)
{
	struct tu_job cache = {10, 1, 0}, db = {100, 2, 0};
	halo_fut *both[2] = {halo_spawn(&loop, tu_sleeper, &cache),
			     halo_spawn(&loop, tu_sleeper, &db)};
	uint64_t t0 = halo_now_ns();
	halo_wait_result w;

	w = halo_wait(&loop, both, 2,
		      HALO_FIRST_COMPLETED | HALO_WAIT_CANCEL_REST,
		      t0 + 1000 * MS);
	ck_assert_int_eq(w.status, 0);
	ck_assert_uint_eq(w.first, 0);
	ck_assert_uint_eq(w.cancelled_n, 1);
	ck_assert_int_eq(halo_fut_status(both[0]), HALO_FUT_OK);
	ck_assert_int_eq(halo_fut_status(both[1]), HALO_FUT_CANCELLED);
	ck_assert_uint_lt(halo_now_ns() - t0, 80 * MS);
	halo_fut_release(both[0]);
	halo_fut_release(both[1]);
}
END_TEST

START_TEST(test_first_error_returns_at_the_first_failure)
{
	halo_fut *p = halo_fut_new(&loop);
	halo_fut *t = halo_timer_after(&loop, 10 * MS);
	struct tu_job slow = {500, 0, 0};
	halo_fut *f[2] = {halo_spawn(&loop, tu_sleeper, &slow), p};
	uint64_t t0 = halo_now_ns();
	halo_wait_result w;

	halo_fut_on_done(t, fail_cb, p);
	w = halo_wait(&loop, f, 2, HALO_FIRST_ERROR, 0);
	ck_assert_int_eq(w.status, 0);
	ck_assert_uint_eq(w.first_error, 1);
	ck_assert_uint_lt(halo_now_ns() - t0, 300 * MS);
	/* halo_wait never raises: the error stays readable. */
	ck_assert_int_eq(halo_fut_error(p), -EIO);
	ck_assert_str_eq(halo_fut_error_msg(p), "disk on fire");
	ck_assert(!halo_fut_is_done(f[0]));
	halo_cancel_all(f, 2);
	ck_assert_int_eq(halo_fut_join(f[0]), -ECANCELED);
	halo_fut_release(p);
	halo_fut_release(t);
}
END_TEST

START_TEST(test_first_error_without_errors_waits_for_all)
{
	halo_fut *f[2] = {halo_timer_after(&loop, 5 * MS),
			  halo_timer_after(&loop, 15 * MS)};
	halo_wait_result w = halo_wait(&loop, f, 2, HALO_FIRST_ERROR, 0);

	ck_assert_int_eq(w.status, 0);
	ck_assert_uint_eq(w.done_n, 2);
	ck_assert_uint_eq(w.first_error, SIZE_MAX);
	halo_fut_release(f[0]);
	halo_fut_release(f[1]);
}
END_TEST

START_TEST(test_deadline_cancels_pipe_read_and_kernel_confirms)
{
	int p[2];
	char buf[16];
	halo_fut *r;
	halo_stats st;
	uint64_t t0;
	halo_wait_result w;

	ck_assert_int_eq(pipe(p), 0);
	r = halo_read(&loop, p[0], buf, sizeof(buf), -1);
	halo_loop_run_nowait(&loop);
	halo_loop_stats(&loop, &st);
	ck_assert_uint_eq(st.inflight, 1);
	t0 = halo_now_ns();
	w = halo_wait(&loop, &r, 1, HALO_ALL_COMPLETED | HALO_WAIT_CANCEL_REST,
		      t0 + 30 * MS);
	ck_assert_int_eq(w.status, -ETIMEDOUT);
	ck_assert_uint_eq(w.done_n, 0);
	ck_assert_uint_eq(w.cancelled_n, 1);
	ck_assert_uint_ge(halo_now_ns() - t0, 29 * MS);
	ck_assert(halo_fut_is_done(r));
	ck_assert_int_eq(halo_fut_status(r), HALO_FUT_CANCELLED);
	halo_loop_stats(&loop, &st);
	ck_assert_uint_eq(st.inflight, 0);
	halo_fut_release(r);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(test_deadline_without_cancel_leaves_the_read_running)
{
	int p[2];
	char buf[16];
	halo_fut *r;
	halo_wait_result w;

	ck_assert_int_eq(pipe(p), 0);
	r = halo_read(&loop, p[0], buf, sizeof(buf), -1);
	w = halo_wait(&loop, &r, 1, HALO_ALL_COMPLETED,
		      halo_now_ns() + 10 * MS);
	ck_assert_int_eq(w.status, -ETIMEDOUT);
	ck_assert(!halo_fut_is_done(r));
	ck_assert_int_eq(write(p[1], "late", 4), 4);
	ck_assert_int_eq(halo_fut_wait(r), 4);
	halo_fut_release(r);
	close(p[0]);
	close(p[1]);
}
END_TEST

static int ticks_seen;
static int64_t ticker(halo_loop *l, void *arg)
{
	(void)arg;
	for (int i = 0; i < 5; i++) {
		ticks_seen++;
		halo_sleep(l, 2 * MS);
	}
	return 0;
}

static int64_t waiter_fiber(halo_loop *l, void *arg)
{
	halo_fut *f[2] = {halo_timer_after(l, 30 * MS),
			  halo_timer_after(l, 40 * MS)};
	halo_wait_result w = halo_wait(l, f, 2, HALO_ALL_COMPLETED, 0);

	(void)arg;
	halo_fut_release(f[0]);
	halo_fut_release(f[1]);
	return w.status == 0 ? ticks_seen : -EIO;
}

START_TEST(test_wait_in_fiber_suspends_and_loop_runs_on)
{
	halo_fut *a, *b;

	ticks_seen = 0;
	a = halo_spawn(&loop, waiter_fiber, NULL);
	b = halo_spawn(&loop, ticker, NULL);
	ck_assert_int_eq(halo_fut_join(a), 5);
	ck_assert_int_eq(halo_fut_join(b), 0);
}
END_TEST

static halo_wait_result cb_res;
static void wait_from_cb(halo_fut *f, void *arg)
{
	(void)f;
	cb_res = halo_wait(&loop, arg, 1, HALO_ALL_COMPLETED, 0);
}

START_TEST(test_wait_in_callback_is_edeadlk)
{
	halo_fut *a = halo_fut_new(&loop), *b = halo_fut_new(&loop);

	halo_fut_on_done(a, wait_from_cb, &b);
	halo_fut_resolve(a, 0, NULL);
	halo_loop_run(&loop);
	ck_assert_int_eq(cb_res.status, -EDEADLK);
	halo_fut_cancel(b);
	halo_fut_release(a);
	halo_fut_release(b);
}
END_TEST

START_TEST(test_wait_on_done_futures_never_blocks)
{
	halo_fut *f[2] = {halo_fut_new(&loop), halo_fut_new(&loop)};
	halo_stats s0, s1;
	halo_wait_result w;

	halo_fut_resolve(f[1], 7, NULL);
	halo_fut_fail(f[0], -ENOENT, NULL);
	halo_loop_stats(&loop, &s0);
	w = halo_wait(&loop, f, 2, HALO_FIRST_ERROR, 0);
	halo_loop_stats(&loop, &s1);
	ck_assert_int_eq(w.status, 0);
	ck_assert_uint_eq(w.first_error, 0);
	ck_assert_uint_eq(s1.blocking_waits, s0.blocking_waits);
	halo_fut_release(f[0]);
	halo_fut_release(f[1]);
}
END_TEST

START_TEST(test_wait_on_orphan_promise_is_edeadlk)
{
	halo_fut *f = halo_fut_new(&loop);
	halo_wait_result w = halo_wait(&loop, &f, 1, HALO_ALL_COMPLETED, 0);

	ck_assert_int_eq(w.status, -EDEADLK);
	halo_fut_cancel(f);
	halo_fut_release(f);
}
END_TEST

#ifdef HALO_FAULT
/* No memory for the helper future or the deadline timer: -ENOMEM, and the
 * report counts what is done, not what a node left by an earlier wait in
 * the same memory pointed at. */
START_TEST(test_wait_without_memory_for_its_helper_is_enomem)
{
	halo_fut *old[2], *f[2];
	halo_wait_result w;

	old[0] = halo_timer_after(&loop, 1 * MS);
	old[1] = halo_timer_after(&loop, 1 * MS);
	w = halo_wait(&loop, old, 2, HALO_ALL_COMPLETED, 0);
	ck_assert_int_eq(w.status, 0);
	f[0] = halo_fut_new(&loop);
	f[1] = halo_fut_new(&loop);
	/* The helper is the wait's first slot, the timer its second. */
	for (int timed = 0; timed <= 1; timed++) {
		halo__fault_arm(HALO_FAULT_SLOT, 1 + (uint64_t)timed, false);
		w = halo_wait(&loop, f, 2, HALO_ALL_COMPLETED,
			      timed ? halo_now_ns() + 1000 * MS : 0);
		ck_assert_int_eq(w.status, -ENOMEM);
		ck_assert_uint_eq(w.done_n, 0);
		ck_assert_uint_eq(w.first, SIZE_MAX);
		ck_assert_uint_eq(w.first_error, SIZE_MAX);
	}
	ck_assert_uint_eq(halo__fault_failed(), 2);
	for (int i = 0; i < 2; i++) {
		halo_fut_cancel(f[i]);
		halo_fut_release(f[i]);
		halo_fut_release(old[i]);
	}
}
END_TEST

START_TEST(test_wait_for_one_future_needs_no_memory)
{
	halo_fut *t = halo_timer_after(&loop, 1 * MS);
	halo_wait_result w;

	halo__fault_arm(HALO_FAULT_ANY, 1, true);
	w = halo_wait(&loop, &t, 1, HALO_ALL_COMPLETED, 0);
	halo__fault_disarm();
	ck_assert_int_eq(w.status, 0);
	ck_assert_uint_eq(w.done_n, 1);
	ck_assert_uint_eq(w.first, 0);
	halo_fut_release(t);
}
END_TEST

/* Cancel-rest promises that nothing runs when halo_wait returns: it keeps
 * that promise when memory is short, by waiting one future at a time. */
START_TEST(test_cancel_rest_without_memory_still_waits_for_the_kernel)
{
	char buf[2][8];
	halo_fut *r[2];
	halo_wait_result w;
	int p[2];

	ck_assert_int_eq(pipe(p), 0);
	r[0] = halo_read(&loop, p[0], buf[0], sizeof(buf[0]), -1);
	r[1] = halo_read(&loop, p[0], buf[1], sizeof(buf[1]), -1);
	halo_loop_run_nowait(&loop);
	ck_assert_uint_eq(tu_inflight(&loop), 2);
	halo__fault_arm(HALO_FAULT_HEAP, 1, true);
	w = halo_wait(&loop, r, 2, HALO_FIRST_COMPLETED | HALO_WAIT_CANCEL_REST,
		      0);
	halo__fault_disarm();
	ck_assert_int_eq(w.status, -ENOMEM);
	ck_assert_uint_eq(w.cancelled_n, 2);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(halo_fut_status(r[i]), HALO_FUT_CANCELLED);
		halo_fut_release(r[i]);
	}
	close(p[0]);
	close(p[1]);
}
END_TEST
#endif

Suite *wait_suite(void)
{
	Suite *s = suite_create("wait");
	TCase *tc = tcase_create("wait");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(10));
	tcase_add_test(tc, test_three_units_take_the_slowest_not_the_sum);
	tcase_add_test(tc, test_first_completed_returns_cache_and_cancels_db);
	tcase_add_test(tc, test_first_completed_cancel_rest_confirms_losers);
	tcase_add_test(tc, test_first_error_returns_at_the_first_failure);
	tcase_add_test(tc, test_first_error_without_errors_waits_for_all);
	tcase_add_test(tc, test_deadline_cancels_pipe_read_and_kernel_confirms);
	tcase_add_test(tc, test_deadline_without_cancel_leaves_the_read_running);
	tcase_add_test(tc, test_wait_in_fiber_suspends_and_loop_runs_on);
	tcase_add_test(tc, test_wait_in_callback_is_edeadlk);
	tcase_add_test(tc, test_wait_on_done_futures_never_blocks);
	tcase_add_test(tc, test_wait_on_orphan_promise_is_edeadlk);
	suite_add_tcase(s, tc);
#ifdef HALO_FAULT
	tc = tcase_create("enomem");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_checked_fixture(tc, tu_fault_reset, tu_fault_reset);
	tcase_set_timeout(tc, tu_timeout(5));
	tcase_add_test(tc, test_wait_without_memory_for_its_helper_is_enomem);
	tcase_add_test(tc, test_wait_for_one_future_needs_no_memory);
	tcase_add_test(
	    tc, test_cancel_rest_without_memory_still_waits_for_the_kernel);
	suite_add_tcase(s, tc);
#endif
	return s;
}
