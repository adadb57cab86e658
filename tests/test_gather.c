/* halo_gather and halo_race: results in input order, the first failure,
 * cancelling siblings and losers until the kernel confirmed. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "tests/util.h"

TU_LOOP_PIPE_FIXTURE(loop, pipe_fds)

#define MS 1000000ull

static void fail_cb(halo_fut *t, void *arg)
{
	(void)t;
	halo_fut_fail(arg, -EIO, "replica down");
}

START_TEST(test_gather_results_come_in_input_order)
{
	struct tu_job j[4] = {{40, 10, 0}, {10, 20, 0}, {30, 30, 0}, {20, 40, 0}};
	halo_fut *f[4];
	int64_t res[4] = {0};
	halo_gather_opts o = {.results = res};
	halo_fut *g;

	for (int i = 0; i < 4; i++)
		f[i] = halo_spawn(&loop, tu_sleeper, &j[i]);
	g = halo_gather(&loop, f, 4, &o);
	for (int i = 0; i < 4; i++)
		halo_fut_release(f[i]); /* the gather holds its own */
	ck_assert_int_eq(halo_fut_wait(g), 4);
	ck_assert_ptr_eq(halo_gather_results(g), res);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(res[i], (i + 1) * 10);
	halo_fut_release(g);
}
END_TEST

START_TEST(test_gather_cancel_on_error_cancels_siblings)
{
	char buf[8];
	halo_fut *p = halo_fut_new(&loop);
	halo_fut *t = halo_timer_after(&loop, 10 * MS);
	struct tu_job slow = {1000, 0, 0};
	halo_fut *f[3] = {halo_read(&loop, pipe_fds[0], buf, sizeof(buf), -1),
			  p, halo_spawn(&loop, tu_sleeper, &slow)};
	halo_gather_opts o = {.cancel_on_error = true};
	uint64_t t0 = halo_now_ns();
	halo_fut *g;

	halo_fut_on_done(t, fail_cb, p);
	g = halo_gather(&loop, f, 3, &o);
	ck_assert_int_eq(halo_fut_wait(g), -EIO);
	ck_assert_str_eq(halo_fut_error_msg(g), "replica down");
	ck_assert_uint_lt(halo_now_ns() - t0, 500 * MS);
	ck_assert_int_eq(halo_fut_status(f[0]), HALO_FUT_CANCELLED);
	ck_assert_int_eq(halo_fut_status(f[2]), HALO_FUT_CANCELLED);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	for (int i = 0; i < 3; i++)
		halo_fut_release(f[i]);
	halo_fut_release(g);
	halo_fut_release(t);
}
END_TEST

START_TEST(test_gather_without_cancel_fails_fast_and_leaves_siblings)
{
	halo_fut *p = halo_fut_new(&loop);
	halo_fut *slow = halo_timer_after(&loop, 1000 * MS);
	halo_fut *f[2] = {slow, p};
	halo_fut *g = halo_gather(&loop, f, 2, NULL);

	halo_fut_fail(p, -ENOENT, NULL);
	ck_assert_int_eq(halo_fut_wait(g), -ENOENT);
	ck_assert(!halo_fut_is_done(slow));
	halo_fut_cancel(slow);
	halo_fut_release(slow);
	halo_fut_release(p);
	halo_fut_release(g);
}
END_TEST

START_TEST(test_cancelling_gather_cancels_children)
{
	char buf[8];
	halo_fut *f[2] = {halo_read(&loop, pipe_fds[0], buf, sizeof(buf), -1),
			  halo_timer_after(&loop, 1000 * MS)};
	halo_gather_opts o = {.adopt = true};
	halo_fut *g = halo_gather(&loop, f, 2, &o);

	halo_loop_run_nowait(&loop);
	ck_assert_uint_eq(tu_inflight(&loop), 1);
	ck_assert_int_eq(halo_fut_cancel(g), 0);
	ck_assert_int_eq(halo_fut_wait(g), -ECANCELED);
	ck_assert_int_eq(halo_fut_status(g), HALO_FUT_CANCELLED);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	halo_fut_release(g);
}
END_TEST

START_TEST(test_gather_cancel_on_error_says_which_child_failed)
{
	char buf[8], why[200];
	struct tu_job slow = {1000, 0, 0};
	halo_fut *f[3];
	int64_t res[3] = {0};
	size_t failed = 99;
	halo_gather_opts o = {
		.results = res, .cancel_on_error = true, .failed = &failed};
	halo_fut *g;

	/* A long message comes through whole, not cut to a buffer's size. */
	memset(why, 'x', sizeof(why) - 1);
	why[sizeof(why) - 1] = 0;
	memcpy(why, "shard 2 refused: ", 17);
	f[0] = halo_read(&loop, pipe_fds[0], buf, sizeof(buf), -1);
	f[1] = halo_fut_delayed_failed(&loop, 10 * MS, -ECONNREFUSED, why);
	f[2] = halo_spawn(&loop, tu_sleeper, &slow);
	g = halo_gather(&loop, f, 3, &o);
	for (int i = 0; i < 3; i++)
		halo_fut_release(f[i]); /* the gather holds its own */
	ck_assert_int_eq(halo_fut_wait(g), -ECONNREFUSED);
	ck_assert_uint_eq(failed, 1);
	ck_assert_str_eq(halo_fut_error_msg(g), why);
	ck_assert_int_eq(res[1], -ECONNREFUSED);
	ck_assert_int_eq(res[0], -ECANCELED);
	ck_assert_int_eq(res[2], -ECANCELED);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	halo_fut_release(g);
}
END_TEST

START_TEST(test_gather_failed_is_the_first_failure_by_completion_time)
{
	halo_fut *late = halo_fut_delayed_failed(&loop, 30 * MS, -EIO, "late");
	halo_fut *ok = halo_fut_ready(&loop, 1, NULL);
	halo_fut *early = halo_fut_delayed_failed(&loop, 5 * MS, -EPIPE, NULL);
	halo_fut *f[3] = {late, ok, early};
	size_t failed = 99;
	halo_gather_opts o = {.failed = &failed};
	halo_fut *g = halo_gather(&loop, f, 3, &o);

	ck_assert_int_eq(halo_fut_wait(g), -EPIPE);
	ck_assert_uint_eq(failed, 2);
	ck_assert_ptr_null(halo_fut_error_msg(g)); /* it gave none */
	/* Without cancel_on_error the others run on. */
	ck_assert(!halo_fut_is_done(late));
	ck_assert_int_eq(halo_fut_wait(late), -EIO);
	halo_fut_release(late);
	halo_fut_release(ok);
	halo_fut_release(early);
	halo_fut_release(g);
}
END_TEST

START_TEST(test_gather_that_did_not_fail_names_no_child)
{
	halo_fut *f[2] = {halo_fut_ready(&loop, 1, NULL),
			  halo_fut_delayed(&loop, 1 * MS, 2, NULL)};
	halo_fut *c[1] = {halo_fut_delayed(&loop, 1000 * MS, 0, NULL)};
	size_t failed = 99, cfailed = 99;
	halo_gather_opts o = {.adopt = true, .failed = &failed};
	halo_gather_opts co = {.adopt = true, .failed = &cfailed};
	halo_fut *g = halo_gather(&loop, f, 2, &o);
	halo_fut *cg = halo_gather(&loop, c, 1, &co);

	ck_assert_int_eq(halo_fut_join(g), 2);
	ck_assert_uint_eq(failed, SIZE_MAX);
	ck_assert_int_eq(halo_fut_cancel(cg), 0);
	ck_assert_int_eq(halo_fut_join(cg), -ECANCELED);
	ck_assert_uint_eq(cfailed, SIZE_MAX);
}
END_TEST

static int losers_done_at_race_end = -1;
static halo_fut *race_kids[3];
static void race_done(halo_fut *r, void *arg)
{
	(void)r;
	(void)arg;
	losers_done_at_race_end = halo_fut_is_done(race_kids[0]) &&
				  halo_fut_is_done(race_kids[2]);
}

START_TEST(test_race_first_success_wins_and_losers_are_done_first)
{
	char buf[8];
	struct tu_job fails = {5, -EIO, 0}, wins = {20, 77, 0};
	halo_fut *rf;
	size_t winner = 99;
	halo_race_opts o = {.winner = &winner};

	race_kids[0] = halo_read(&loop, pipe_fds[0], buf, sizeof(buf), -1);
	race_kids[1] = halo_spawn(&loop, tu_sleeper, &wins);
	race_kids[2] = halo_spawn(&loop, tu_sleeper, &fails);
	rf = halo_race_with(&loop, race_kids, 3, &o);
	halo_fut_on_done(rf, race_done, NULL);
	ck_assert_int_eq(halo_fut_wait(rf), 77);
	ck_assert_uint_eq(winner, 1);
	halo_loop_run(&loop); /* let race_done run */
	ck_assert_int_eq(losers_done_at_race_end, 1);
	ck_assert_int_eq(halo_fut_status(race_kids[0]), HALO_FUT_CANCELLED);
	ck_assert_int_eq(halo_fut_status(race_kids[2]), HALO_FUT_ERROR);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	for (int i = 0; i < 3; i++)
		halo_fut_release(race_kids[i]);
	halo_fut_release(rf);
}
END_TEST

START_TEST(test_race_all_fail_with_the_last_error)
{
	halo_fut *a = halo_fut_new(&loop), *b = halo_fut_new(&loop);
	halo_fut *f[2] = {a, b};
	size_t winner = 99, failed = 99;
	halo_race_opts o = {.winner = &winner, .failed = &failed};
	halo_fut *rf = halo_race_with(&loop, f, 2, &o);

	halo_fut_fail(b, -ENOENT, NULL);
	halo_loop_run_nowait(&loop);
	halo_fut_fail(a, -EPIPE, "last");
	ck_assert_int_eq(halo_fut_wait(rf), -EPIPE);
	ck_assert_str_eq(halo_fut_error_msg(rf), "last");
	ck_assert_uint_eq(failed, 0);
	ck_assert_uint_eq(winner, SIZE_MAX);
	halo_fut_release(a);
	halo_fut_release(b);
	halo_fut_release(rf);
}
END_TEST

START_TEST(test_gather_of_nothing_is_ok_and_race_of_nothing_fails)
{
	halo_fut *g = halo_gather(&loop, NULL, 0, NULL);
	halo_fut *r = halo_race(&loop, NULL, 0);

	ck_assert_int_eq(halo_fut_join(g), 0);
	ck_assert_int_eq(halo_fut_join(r), -ENOENT);
}
END_TEST

Suite *gather_suite(void)
{
	Suite *s = suite_create("gather");
	TCase *tc = tcase_create("gather");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(10));
	tcase_add_test(tc, test_gather_results_come_in_input_order);
	tcase_add_test(tc, test_gather_cancel_on_error_cancels_siblings);
	tcase_add_test(tc,
		       test_gather_without_cancel_fails_fast_and_leaves_siblings);
	tcase_add_test(tc, test_cancelling_gather_cancels_children);
	tcase_add_test(tc, test_gather_cancel_on_error_says_which_child_failed);
	tcase_add_test(tc,
		       test_gather_failed_is_the_first_failure_by_completion_time);
	tcase_add_test(tc, test_gather_that_did_not_fail_names_no_child);
	tcase_add_test(tc,
		       test_race_first_success_wins_and_losers_are_done_first);
	tcase_add_test(tc, test_race_all_fail_with_the_last_error);
	tcase_add_test(tc,
		       test_gather_of_nothing_is_ok_and_race_of_nothing_fails);
	suite_add_tcase(s, tc);
	return s;
}
