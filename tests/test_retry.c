/* halo_retry: a flaky call succeeds on a later attempt, backoff stays within
 * its bounds, and every way of stopping (cancel, attempt timeout, overall
 * deadline) leaves no attempt in flight. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "tests/util.h"

TU_LOOP_PIPE_FIXTURE(loop, pfd)

#define MS 1000000ull

/* A dependency that fails `fails` times (after ms each), then answers 42. */
struct flaky {
	unsigned fails;
	uint64_t ms;
	int err;
	unsigned calls;
};

static halo_fut *flaky_call(halo_loop *l, void *arg, unsigned attempt)
{
	struct flaky *fl = arg;

	fl->calls++;
	ck_assert_uint_eq(attempt, fl->calls);
	if (fl->calls <= fl->fails)
		return halo_fut_delayed_failed(l, fl->ms * MS, fl->err,
					       "upstream unavailable");
	return halo_fut_delayed(l, fl->ms * MS, 42, fl);
}

/* An attempt that is a real read on a pipe that never gets data. */
static char rbuf[16];
static halo_fut *pipe_read(halo_loop *l, void *arg, unsigned attempt)
{
	(void)attempt;
	return halo_read(l, *(int *)arg, rbuf, sizeof(rbuf), -1);
}

START_TEST(test_retry_that_succeeds_on_the_third_attempt_reports_three)
{
	struct flaky fl = {.fails = 2, .ms = 1, .err = -EIO};
	halo_retry_policy p = {
	    .max_attempts = 5, .base_delay_ns = 2 * MS, .seed = 7};
	halo_retry_report rep;
	halo_fut *r = halo_retry(&loop, &p, flaky_call, &fl, &rep);

	ck_assert_int_eq(halo_fut_wait(r), 42);
	ck_assert_ptr_eq(halo_fut_value(r), &fl);
	ck_assert_uint_eq(rep.attempts, 3);
	ck_assert_uint_eq(fl.calls, 3);
	ck_assert_int_eq(rep.last_err, -EIO);
	ck_assert_str_eq(rep.last_msg, "upstream unavailable");
	halo_fut_release(r);
}
END_TEST

START_TEST(test_retry_gives_up_with_the_last_error_and_message)
{
	struct flaky fl = {.fails = 10, .ms = 1, .err = -ECONNREFUSED};
	halo_retry_policy p = {.max_attempts = 4,
			       .base_delay_ns = 1 * MS,
			       .jitter = HALO_JITTER_NONE};
	halo_retry_report rep;
	halo_fut *r = halo_retry(&loop, &p, flaky_call, &fl, &rep);

	ck_assert_int_eq(halo_fut_wait(r), -ECONNREFUSED);
	ck_assert_str_eq(halo_fut_error_msg(r), "upstream unavailable");
	ck_assert_uint_eq(rep.attempts, 4);
	ck_assert_uint_eq(fl.calls, 4);
	/* 3 pauses of 1, 2 and 4 ms and 4 attempts of 1 ms */
	ck_assert_uint_ge(rep.elapsed_ns, 11 * MS);
	halo_fut_release(r);
}
END_TEST

static bool only_eagain(int err, const char *msg, void *arg)
{
	(void)msg;
	(void)arg;
	return err == -EAGAIN;
}

START_TEST(test_retry_predicate_refuses_an_error_after_one_attempt)
{
	struct flaky fl = {.fails = 10, .ms = 1, .err = -EACCES};
	halo_retry_policy p = {.max_attempts = 5,
			       .base_delay_ns = 1 * MS,
			       .retry_if = only_eagain};
	halo_retry_report rep;
	halo_fut *r = halo_retry(&loop, &p, flaky_call, &fl, &rep);

	ck_assert_int_eq(halo_fut_wait(r), -EACCES);
	ck_assert_uint_eq(rep.attempts, 1);
	halo_fut_release(r);
}
END_TEST

static void cancel_cb(halo_fut *t, void *arg)
{
	(void)t;
	halo_fut_cancel(arg);
}

START_TEST(test_cancelled_retry_leaves_nothing_in_flight)
{
	halo_retry_policy p = {.max_attempts = 5};
	halo_retry_report rep;
	halo_fut *r = halo_retry(&loop, &p, pipe_read, &pfd[0], &rep);
	halo_fut *t = halo_timer_after(&loop, 20 * MS);

	halo_fut_on_done(t, cancel_cb, r);
	ck_assert_int_eq(halo_fut_wait(r), -ECANCELED);
	ck_assert_int_eq(halo_fut_status(r), HALO_FUT_CANCELLED);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	ck_assert_uint_eq(rep.attempts, 1);
	halo_fut_release(r);
	halo_fut_release(t);
}
END_TEST

/* The second attempt cancels the retry it belongs to while starting. */
struct self_cancel {
	int fd;
	halo_fut *retry;
};

static halo_fut *cancel_self(halo_loop *l, void *arg, unsigned attempt)
{
	struct self_cancel *sc = arg;

	if (attempt == 1)
		return halo_fut_delayed_failed(l, 1 * MS, -EIO, NULL);
	halo_fut_cancel(sc->retry);
	return halo_read(l, sc->fd, rbuf, sizeof(rbuf), -1);
}

START_TEST(test_attempt_that_cancels_its_retry_is_cancelled_too)
{
	halo_retry_policy p = {.base_delay_ns = 1 * MS};
	struct self_cancel sc = {.fd = pfd[0]};
	halo_retry_report rep;

	sc.retry = halo_retry(&loop, &p, cancel_self, &sc, &rep);
	ck_assert_int_eq(halo_fut_wait(sc.retry), -ECANCELED);
	ck_assert_uint_eq(rep.attempts, 2);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	halo_fut_release(sc.retry);
}
END_TEST

START_TEST(test_cancel_during_backoff_completes_at_once)
{
	struct flaky fl = {.fails = 10, .ms = 1, .err = -EIO};
	halo_retry_policy p = {.max_attempts = 5,
			       .base_delay_ns = 10000 * MS,
			       .jitter = HALO_JITTER_NONE};
	halo_fut *r = halo_retry(&loop, &p, flaky_call, &fl, NULL);
	halo_fut *t = halo_timer_after(&loop, 30 * MS);
	uint64_t t0 = halo_now_ns();

	halo_fut_on_done(t, cancel_cb, r);
	ck_assert_int_eq(halo_fut_wait(r), -ECANCELED);
	ck_assert_uint_lt(halo_now_ns() - t0, 2000 * MS);
	ck_assert_uint_eq(fl.calls, 1);
	ck_assert_uint_eq(halo_timer_pending(&loop), 0);
	halo_fut_release(r);
	halo_fut_release(t);
}
END_TEST

START_TEST(test_attempt_timeout_cancels_each_attempt_and_fails_etimedout)
{
	halo_retry_policy p = {.max_attempts = 3,
			       .base_delay_ns = 1 * MS,
			       .attempt_timeout_ns = 20 * MS};
	halo_retry_report rep;
	uint64_t t0 = halo_now_ns();
	halo_fut *r = halo_retry(&loop, &p, pipe_read, &pfd[0], &rep);

	ck_assert_int_eq(halo_fut_wait(r), -ETIMEDOUT);
	ck_assert_uint_ge(halo_now_ns() - t0, 60 * MS);
	ck_assert_uint_eq(rep.attempts, 3);
	ck_assert_int_eq(rep.last_err, -ETIMEDOUT);
	ck_assert_ptr_nonnull(strstr(rep.last_msg, "attempt 3 timed out"));
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	halo_fut_release(r);
}
END_TEST

START_TEST(test_overall_deadline_stops_a_retry_that_would_go_on)
{
	struct flaky fl = {.fails = 1000, .ms = 5, .err = -EIO};
	halo_retry_policy p = {.max_attempts = 1000,
			       .base_delay_ns = 5 * MS,
			       .jitter = HALO_JITTER_NONE,
			       .max_delay_ns = 5 * MS,
			       .timeout_ns = 80 * MS};
	halo_retry_report rep;
	uint64_t t0 = halo_now_ns(), dt;
	halo_fut *r = halo_retry(&loop, &p, flaky_call, &fl, &rep);

	ck_assert_int_eq(halo_fut_wait(r), -ETIMEDOUT);
	dt = halo_now_ns() - t0;
	ck_assert_uint_le(dt, 1000 * MS);
	ck_assert_uint_gt(rep.attempts, 1);
	ck_assert_uint_lt(rep.attempts, 20);
	ck_assert_int_eq(rep.last_err, -EIO);
	ck_assert_ptr_nonnull(strstr(halo_fut_error_msg(r), "deadline"));
	ck_assert_ptr_nonnull(
	    strstr(halo_fut_error_msg(r), "upstream unavailable"));
	halo_fut_release(r);
}
END_TEST

START_TEST(test_overall_deadline_cancels_the_attempt_in_flight)
{
	halo_retry_policy p = {.timeout_ns = 30 * MS};
	halo_retry_report rep;
	uint64_t t0 = halo_now_ns();
	halo_fut *r = halo_retry(&loop, &p, pipe_read, &pfd[0], &rep);

	ck_assert_int_eq(halo_fut_wait(r), -ETIMEDOUT);
	ck_assert_uint_ge(halo_now_ns() - t0, 30 * MS);
	ck_assert_uint_eq(rep.attempts, 1);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	halo_fut_release(r);
}
END_TEST

static int64_t retry_in_fiber(halo_loop *l, void *arg)
{
	halo_retry_policy p = {.max_attempts = 4, .base_delay_ns = 1 * MS};
	halo_retry_report rep;

	return halo_fut_join(halo_retry(l, &p, flaky_call, arg, &rep)) +
	       rep.attempts;
}

START_TEST(test_retry_works_inside_a_fiber)
{
	struct flaky fl = {.fails = 1, .ms = 1, .err = -EIO};

	ck_assert_int_eq(halo_fut_join(halo_spawn(&loop, retry_in_fiber, &fl)),
			 44);
}
END_TEST

START_TEST(test_full_jitter_stays_within_exponential_bounds_and_cap)
{
	halo_retry_policy p = {
	    .base_delay_ns = 10 * MS, .max_delay_ns = 300 * MS, .seed = 1};
	uint64_t sum = 0;

	for (int seq = 0; seq < 1000; seq++) {
		halo_backoff b;

		p.seed = (uint64_t)seq + 1;
		halo_backoff_init(&b, &p);
		for (unsigned n = 1; n <= 10; n++) {
			uint64_t d = halo_backoff_next(&b);
			uint64_t hi = (10 * MS) << (n - 1);

			if (hi > 300 * MS)
				hi = 300 * MS;
			ck_assert_uint_le(d, hi);
			sum += d;
		}
	}
	/* Uniform draws: the mean is near half the bounds' mean. */
	ck_assert_uint_gt(sum / 10000, 40 * MS);
	ck_assert_uint_lt(sum / 10000, 120 * MS);
}
END_TEST

START_TEST(test_decorrelated_jitter_stays_between_base_and_three_times_prev)
{
	halo_retry_policy p = {.base_delay_ns = 10 * MS,
			       .max_delay_ns = 500 * MS,
			       .jitter = HALO_JITTER_DECORRELATED,
			       .seed = 99};
	halo_backoff b;
	uint64_t prev = 10 * MS;
	bool hit_cap = false;

	halo_backoff_init(&b, &p);
	for (int i = 0; i < 10000; i++) {
		uint64_t d = halo_backoff_next(&b);
		uint64_t hi = prev * 3 > 500 * MS ? 500 * MS : prev * 3;

		ck_assert_uint_ge(d, 10 * MS);
		ck_assert_uint_le(d, hi);
		hit_cap |= d > 400 * MS;
		prev = d;
	}
	ck_assert(hit_cap);
}
END_TEST

START_TEST(test_no_jitter_doubles_up_to_the_cap)
{
	halo_retry_policy p = {.base_delay_ns = 1 * MS,
			       .max_delay_ns = 20 * MS,
			       .jitter = HALO_JITTER_NONE};
	uint64_t want[] = {1, 2, 4, 8, 16, 20, 20};
	halo_backoff b;

	halo_backoff_init(&b, &p);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		ck_assert_uint_eq(halo_backoff_next(&b), want[i] * MS);
	for (int i = 0; i < 10000; i++) /* no overflow past 2^63 */
		ck_assert_uint_eq(halo_backoff_next(&b), 20 * MS);
}
END_TEST

static uint64_t counting_rng(void *arg)
{
	return (*(uint64_t *)arg)++;
}

START_TEST(test_same_seed_same_delays_and_rng_hook_is_used)
{
	halo_retry_policy p = {.seed = 1234};
	halo_backoff a, b;
	uint64_t calls = 0;

	halo_backoff_init(&a, &p);
	halo_backoff_init(&b, &p);
	for (int i = 0; i < 100; i++)
		ck_assert_uint_eq(halo_backoff_next(&a), halo_backoff_next(&b));
	p.rng = counting_rng;
	p.rng_arg = &calls;
	halo_backoff_init(&a, &p);
	ck_assert_uint_eq(halo_backoff_next(&a), 0); /* first draw is 0 */
	ck_assert_uint_eq(halo_backoff_next(&a), 1);
	ck_assert_uint_eq(calls, 2);
}
END_TEST

static halo_fut *nop_attempt(halo_loop *l, void *arg, unsigned attempt)
{
	(void)arg;
	(void)attempt;
	return halo_nop(l);
}

static void retry_round(void)
{
	halo_retry_policy p = {.attempt_timeout_ns = 1000 * MS};
	halo_fut *f[32];

	for (int i = 0; i < 32; i++)
		f[i] = halo_retry(&loop, &p, nop_attempt, NULL, NULL);
	for (int i = 0; i < 32; i++)
		ck_assert_int_eq(halo_fut_join(f[i]), 0);
}

START_TEST(test_retry_allocates_nothing_after_warm_up)
{
	halo_stats a, b;

	retry_round();
	halo_loop_stats(&loop, &a);
	for (int r = 0; r < 10; r++)
		retry_round();
	halo_loop_stats(&loop, &b);
	ck_assert_uint_eq(b.pool_allocs, a.pool_allocs);
}
END_TEST

Suite *retry_suite(void)
{
	Suite *s = suite_create("retry");
	TCase *tc = tcase_create("retry");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(10));
	tcase_add_test(
	    tc, test_retry_that_succeeds_on_the_third_attempt_reports_three);
	tcase_add_test(tc, test_retry_gives_up_with_the_last_error_and_message);
	tcase_add_test(tc,
		       test_retry_predicate_refuses_an_error_after_one_attempt);
	tcase_add_test(tc, test_cancelled_retry_leaves_nothing_in_flight);
	tcase_add_test(tc, test_cancel_during_backoff_completes_at_once);
	tcase_add_test(tc,
		       test_attempt_that_cancels_its_retry_is_cancelled_too);
	tcase_add_test(
	    tc, test_attempt_timeout_cancels_each_attempt_and_fails_etimedout);
	tcase_add_test(tc,
		       test_overall_deadline_stops_a_retry_that_would_go_on);
	tcase_add_test(tc, test_overall_deadline_cancels_the_attempt_in_flight);
	tcase_add_test(tc, test_retry_works_inside_a_fiber);
	tcase_add_test(
	    tc, test_full_jitter_stays_within_exponential_bounds_and_cap);
	tcase_add_test(
	    tc,
	    test_decorrelated_jitter_stays_between_base_and_three_times_prev);
	tcase_add_test(tc, test_no_jitter_doubles_up_to_the_cap);
	tcase_add_test(tc, test_same_seed_same_delays_and_rng_hook_is_used);
	tcase_add_test(tc, test_retry_allocates_nothing_after_warm_up);
	suite_add_tcase(s, tc);
	return s;
}
