/* Timers: deadline order (equal deadlines in creation order), cancel, many
 * timers, sleeps in parallel, and that timers cost no SQE. */
#include <errno.h>
#include <stdlib.h>

#include "tests/util.h"

#define MS 1000000ull

TU_LOOP_FIXTURE(loop)

struct order {
	int log[64];
	int n;
};

struct tag {
	struct order *o;
	int id;
};

static void record(halo_fut *f, void *arg)
{
	struct tag *t = arg;

	(void)f;
	t->o->log[t->o->n++] = t->id;
}

START_TEST(test_timers_fire_in_deadline_order_ties_in_creation_order)
{
	/* ids:               0   1   2   3   4   5 */
	const uint64_t ms[] = {30, 10, 20, 10, 20, 5};
	const int want[] = {5, 1, 3, 2, 4, 0};
	struct order o = {{0}, 0};
	struct tag tags[6];
	halo_fut *f[6];
	uint64_t base = halo_now_ns();

	for (int i = 0; i < 6; i++) {
		tags[i] = (struct tag){&o, i};
		f[i] = halo_timer_at(&loop, base + ms[i] * MS);
		halo_fut_on_done(f[i], record, &tags[i]);
	}
	ck_assert_int_eq(halo_loop_run(&loop), 0);
	ck_assert_int_eq(o.n, 6);
	for (int i = 0; i < 6; i++)
		ck_assert_int_eq(o.log[i], want[i]);
	for (int i = 0; i < 6; i++)
		halo_fut_release(f[i]);
}
END_TEST

START_TEST(test_timer_completes_at_or_after_deadline)
{
	uint64_t t0 = halo_now_ns();
	halo_fut *f = halo_timer_after(&loop, 20 * MS);

	ck_assert_int_eq(halo_fut_wait(f), 0);
	ck_assert_uint_ge(halo_now_ns() - t0, 20 * MS);
	halo_fut_release(f);
}
END_TEST

START_TEST(test_cancel_removes_timer)
{
	halo_fut *a = halo_timer_after(&loop, 10 * MS);
	halo_fut *b = halo_timer_after(&loop, 3600000 * MS);

	ck_assert_uint_eq(halo_timer_pending(&loop), 2);
	ck_assert_int_eq(halo_fut_cancel(b), 0);
	ck_assert_uint_eq(halo_timer_pending(&loop), 1);
	ck_assert_int_eq(halo_fut_status(b), HALO_FUT_CANCELLED);
	/* The loop has no work left once a fires: the hour is gone. */
	ck_assert_int_eq(halo_loop_run(&loop), 0);
	ck_assert_int_eq(halo_fut_status(a), HALO_FUT_OK);
	halo_fut_release(a);
	halo_fut_release(b);
}
END_TEST

static void check_order(halo_fut *f, void *arg)
{
	uint64_t *last = arg;
	uint64_t now = halo_now_ns();

	(void)f;
	ck_assert_uint_ge(now, *last);
	*last = now;
}

START_TEST(test_100000_random_timers_all_fire_and_cost_no_sqe)
{
	enum { N = 100000 };
	static halo_fut *f[N];
	uint64_t base = halo_now_ns(), last = 0;
	halo_stats st;

	srand(7);
	for (int i = 0; i < N; i++) {
		f[i] = halo_timer_at(&loop, base + (uint64_t)(rand() % 50) * MS);
		halo_fut_on_done(f[i], check_order, &last);
	}
	/* Cancel every tenth: the heap must stay consistent. */
	for (int i = 0; i < N; i += 10)
		halo_fut_cancel(f[i]);
	ck_assert_int_eq(halo_loop_run(&loop), 0);
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(halo_fut_status(f[i]),
				 i % 10 ? HALO_FUT_OK : HALO_FUT_CANCELLED);
		halo_fut_release(f[i]);
	}
	halo_loop_stats(&loop, &st);
	ck_assert_uint_eq(st.sqes_submitted, 0);
	ck_assert_uint_eq(halo_timer_pending(&loop), 0);
}
END_TEST

static int64_t sleeper(halo_loop *l, void *arg)
{
	return halo_sleep(l, (uint64_t)(uintptr_t)arg * MS);
}

START_TEST(test_three_50ms_sleeps_in_parallel_take_under_100ms)
{
	uint64_t t0 = halo_now_ns(), dt;
	halo_fut *f[3];

	for (int i = 0; i < 3; i++)
		f[i] = halo_spawn(&loop, sleeper, (void *)50);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(halo_fut_join(f[i]), 0);
	dt = halo_now_ns() - t0;
	ck_assert_uint_ge(dt, 50 * MS);
	ck_assert_uint_lt(dt, 100 * MS);
}
END_TEST

START_TEST(test_sleep_outside_fiber_drives_loop)
{
	uint64_t t0 = halo_now_ns();

	ck_assert_int_eq(halo_sleep(&loop, 5 * MS), 0);
	ck_assert_uint_ge(halo_now_ns() - t0, 5 * MS);
}
END_TEST

Suite *timer_suite(void)
{
	Suite *s = suite_create("timer");
	TCase *tc = tcase_create("timer");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(20));
	tcase_add_test(tc,
		       test_timers_fire_in_deadline_order_ties_in_creation_order);
	tcase_add_test(tc, test_timer_completes_at_or_after_deadline);
	tcase_add_test(tc, test_cancel_removes_timer);
	tcase_add_test(tc, test_100000_random_timers_all_fire_and_cost_no_sqe);
	tcase_add_test(tc, test_three_50ms_sleeps_in_parallel_take_under_100ms);
	tcase_add_test(tc, test_sleep_outside_fiber_drives_loop);
	suite_add_tcase(s, tc);
	return s;
}
