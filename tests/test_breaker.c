/* halo_breaker: a failing dependency opens the breaker, calls then fail fast,
 * exactly N probes go through when half-open (however many callers race
 * for them), slow calls count, and every state change is told in order. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "tests/util.h"

TU_LOOP_FIXTURE(loop)

#define MS 1000000ull

/* The dependency: answers after ms, failing with err if err < 0. */
struct dep {
	uint64_t ms;
	int err;
	unsigned calls;
};

static halo_fut *dep_call(halo_loop *l, void *arg)
{
	struct dep *d = arg;

	d->calls++;
	if (d->err < 0)
		return halo_fut_delayed_failed(l, d->ms * MS, d->err,
					       "dependency down");
	return halo_fut_delayed(l, d->ms * MS, 7, d);
}

struct changes {
	halo_breaker_state from[16], to[16];
	int n;
};

static void on_change(halo_breaker *br, halo_breaker_state from,
		      halo_breaker_state to, void *arg)
{
	struct changes *c = arg;

	(void)br;
	ck_assert_int_lt(c->n, 16);
	c->from[c->n] = from;
	c->to[c->n] = to;
	c->n++;
}

static int64_t call_once(halo_breaker *br, struct dep *d)
{
	return halo_fut_join(halo_breaker_call(br, dep_call, d));
}

START_TEST(test_open_breaker_fails_fast_without_calling)
{
	halo_breaker br;
	halo_breaker_opts o = {
	    .window = 10, .min_calls = 5, .name = "payments"};
	struct dep d = {.ms = 1, .err = -EIO};
	halo_breaker_stats st;
	halo_fut *f;
	uint64_t t0;

	ck_assert_int_eq(halo_breaker_init(&br, &loop, &o), 0);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(call_once(&br, &d), -EIO);
	ck_assert_int_eq(halo_breaker_state_now(&br), HALO_BREAKER_CLOSED);
	ck_assert_int_eq(call_once(&br, &d), -EIO);
	ck_assert_int_eq(halo_breaker_state_now(&br), HALO_BREAKER_OPEN);

	t0 = halo_now_ns();
	f = halo_breaker_call(&br, dep_call, &d);
	ck_assert(halo_fut_is_done(f));
	ck_assert_int_eq(halo_fut_wait(f), -EAGAIN);
	ck_assert_uint_lt(halo_now_ns() - t0, 50 * MS);
	ck_assert_ptr_nonnull(strstr(halo_fut_error_msg(f), "payments"));
	ck_assert_ptr_nonnull(strstr(halo_fut_error_msg(f), "is open"));
	halo_fut_release(f);
	ck_assert_uint_eq(d.calls, 5);
	halo_breaker_get_stats(&br, &st);
	ck_assert_uint_eq(st.calls, 5);
	ck_assert_uint_eq(st.failures, 5);
	ck_assert_uint_eq(st.rejected, 1);
	ck_assert_uint_eq(st.opened, 1);
	ck_assert_int_eq(st.state, HALO_BREAKER_OPEN);
	halo_breaker_close(&br);
}
END_TEST

START_TEST(test_failures_below_the_ratio_or_min_calls_keep_it_closed)
{
	halo_breaker br;
	halo_breaker_opts o = {
	    .window = 4, .min_calls = 4, .failure_ratio = 0.5};
	halo_breaker_permit pm;
	/* 1 = failure; the last two failures together with the two successes
	 * before them reach 2 of 4 */
	int pattern[] = {1, 0, 0, 0, 0, 1, 0, 1};
	int n = sizeof(pattern) / sizeof(pattern[0]);

	ck_assert_int_eq(halo_breaker_init(&br, &loop, &o), 0);
	for (int i = 0; i < n; i++) {
		ck_assert_int_eq(halo_breaker_state_now(&br),
				 HALO_BREAKER_CLOSED);
		ck_assert_int_eq(halo_breaker_acquire(&br, &pm), 0);
		halo_breaker_record(&br, &pm, pattern[i] ? -EIO : 0);
	}
	ck_assert_int_eq(halo_breaker_state_now(&br), HALO_BREAKER_OPEN);
	halo_breaker_close(&br);
}
END_TEST

START_TEST(test_slow_calls_count_as_failures)
{
	halo_breaker br;
	halo_breaker_opts o = {
	    .window = 10, .min_calls = 4, .slow_call_ns = 40 * MS};
	struct dep slow = {.ms = 80}, fast = {.ms = 0};
	halo_breaker_stats st;

	ck_assert_int_eq(halo_breaker_init(&br, &loop, &o), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(call_once(&br, &fast), 7);
	ck_assert_int_eq(call_once(&br, &slow), 7); /* OK, but slow */
	ck_assert_int_eq(halo_breaker_state_now(&br), HALO_BREAKER_CLOSED);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(call_once(&br, &slow), 7);
	halo_breaker_get_stats(&br, &st);
	ck_assert_uint_eq(st.slow, 3);
	ck_assert_uint_eq(st.failures, 0);
	ck_assert_uint_eq(st.successes, 3);
	ck_assert_int_eq(st.state, HALO_BREAKER_OPEN); /* 3 of 6 */
	halo_breaker_close(&br);
}
END_TEST

START_TEST(test_state_changes_are_told_in_order)
{
	struct changes ch = {0};
	halo_breaker br;
	halo_breaker_opts o = {.window = 2,
			       .min_calls = 2,
			       .open_ns = 20 * MS,
			       .on_change = on_change,
			       .on_change_arg = &ch};
	struct dep bad = {.ms = 1, .err = -EIO}, good = {.ms = 1};

	ck_assert_int_eq(halo_breaker_init(&br, &loop, &o), 0);
	call_once(&br, &bad);
	call_once(&br, &bad); /* closed -> open */
	ck_assert_int_eq(call_once(&br, &bad), -EAGAIN);
	ck_assert_int_eq(halo_sleep(&loop, 30 * MS), 0);
	ck_assert_int_eq(call_once(&br, &bad), -EIO); /* -> half -> open */
	ck_assert_int_eq(halo_sleep(&loop, 30 * MS), 0);
	ck_assert_int_eq(call_once(&br, &good), 7); /* -> half -> closed */
	ck_assert_int_eq(ch.n, 5);
	halo_breaker_state want[5][2] = {
	    {HALO_BREAKER_CLOSED, HALO_BREAKER_OPEN},
	    {HALO_BREAKER_OPEN, HALO_BREAKER_HALF_OPEN},
	    {HALO_BREAKER_HALF_OPEN, HALO_BREAKER_OPEN},
	    {HALO_BREAKER_OPEN, HALO_BREAKER_HALF_OPEN},
	    {HALO_BREAKER_HALF_OPEN, HALO_BREAKER_CLOSED},
	};
	for (int i = 0; i < 5; i++) {
		ck_assert_int_eq(ch.from[i], want[i][0]);
		ck_assert_int_eq(ch.to[i], want[i][1]);
	}
	halo_breaker_close(&br);
}
END_TEST

struct caller {
	halo_breaker *br;
	struct dep *d;
};

static int64_t caller_fiber(halo_loop *l, void *arg)
{
	struct caller *c = arg;

	(void)l;
	return halo_fut_join(halo_breaker_call(c->br, dep_call, c->d));
}

START_TEST(test_half_open_admits_exactly_n_probes_under_100_callers)
{
	enum { CALLERS = 100, PROBES = 3 };
	halo_breaker br;
	halo_breaker_opts o = {.open_ns = 10 * MS, .probes = PROBES};
	struct dep d = {.ms = 20};
	struct caller c = {&br, &d};
	halo_fut *f[CALLERS];
	int ok = 0, refused = 0;
	halo_breaker_stats st;

	ck_assert_int_eq(halo_breaker_init(&br, &loop, &o), 0);
	halo_breaker_force(&br, HALO_BREAKER_OPEN);
	ck_assert_int_eq(halo_sleep(&loop, 15 * MS), 0);
	for (int i = 0; i < CALLERS; i++)
		f[i] = halo_spawn(&loop, caller_fiber, &c);
	for (int i = 0; i < CALLERS; i++) {
		int64_t r = halo_fut_join(f[i]);
		ok += r == 7;
		refused += r == -EAGAIN;
	}
	ck_assert_int_eq(ok, PROBES);
	ck_assert_int_eq(refused, CALLERS - PROBES);
	ck_assert_uint_eq(d.calls, PROBES);
	halo_breaker_get_stats(&br, &st);
	ck_assert_uint_eq(st.rejected, CALLERS - PROBES);
	ck_assert_int_eq(halo_breaker_state_now(&br), HALO_BREAKER_CLOSED);
	halo_breaker_close(&br);
}
END_TEST

START_TEST(test_a_cancelled_probe_gives_its_place_to_another)
{
	halo_breaker br;
	halo_breaker_opts o = {.open_ns = 1, .probes = 1};
	halo_breaker_permit a, b;
	halo_breaker_stats st;

	ck_assert_int_eq(halo_breaker_init(&br, &loop, &o), 0);
	halo_breaker_force(&br, HALO_BREAKER_HALF_OPEN);
	ck_assert_int_eq(halo_breaker_acquire(&br, &a), 0);
	ck_assert(a.is_probe);
	ck_assert_int_eq(halo_breaker_acquire(&br, &b), -EAGAIN);
	halo_breaker_record(&br, &a, -ECANCELED);
	ck_assert_int_eq(halo_breaker_state_now(&br), HALO_BREAKER_HALF_OPEN);
	ck_assert_int_eq(halo_breaker_acquire(&br, &b), 0);
	halo_breaker_record(&br, &b, 0);
	ck_assert_int_eq(halo_breaker_state_now(&br), HALO_BREAKER_CLOSED);
	halo_breaker_get_stats(&br, &st);
	ck_assert_uint_eq(st.ignored, 1);
	ck_assert_uint_eq(st.rejected, 1);
	halo_breaker_close(&br);
}
END_TEST

START_TEST(test_outcomes_from_before_a_state_change_do_not_move_it)
{
	halo_breaker br;
	halo_breaker_opts o = {
	    .window = 2, .min_calls = 2, .open_ns = 1000 * MS};
	halo_breaker_permit old[3], p;

	ck_assert_int_eq(halo_breaker_init(&br, &loop, &o), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(halo_breaker_acquire(&br, &old[i]), 0);
	halo_breaker_record(&br, &old[0], -EIO);
	halo_breaker_record(&br, &old[1], -EIO); /* opens */
	ck_assert_int_eq(halo_breaker_state_now(&br), HALO_BREAKER_OPEN);
	halo_breaker_force(&br, HALO_BREAKER_CLOSED);
	halo_breaker_record(&br, &old[2], -EIO); /* stale: stats only */
	ck_assert_int_eq(halo_breaker_acquire(&br, &p), 0);
	halo_breaker_record(&br, &p, -EIO);
	ck_assert_int_eq(halo_breaker_state_now(&br), HALO_BREAKER_CLOSED);
	halo_breaker_close(&br);
}
END_TEST

static char rbuf[8];
static halo_fut *pipe_read(halo_loop *l, void *arg)
{
	return halo_read(l, *(int *)arg, rbuf, sizeof(rbuf), -1);
}

START_TEST(test_cancelling_a_breaker_call_cancels_the_call)
{
	halo_breaker br;
	halo_breaker_stats st;
	int p[2];
	halo_fut *f;

	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(halo_breaker_init(&br, &loop, NULL), 0);
	f = halo_breaker_call(&br, pipe_read, &p[0]);
	ck_assert_int_eq(halo_sleep(&loop, 5 * MS), 0);
	ck_assert_uint_eq(tu_inflight(&loop), 1);
	halo_fut_cancel(f);
	ck_assert_int_eq(halo_fut_join(f), -ECANCELED);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	halo_breaker_get_stats(&br, &st);
	ck_assert_uint_eq(st.ignored, 1);
	ck_assert_uint_eq(st.failures, 0);
	halo_breaker_close(&br);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(test_bad_options_are_refused)
{
	halo_breaker br;
	halo_breaker_opts o = {.failure_ratio = 1.5};

	ck_assert_int_eq(halo_breaker_init(&br, &loop, &o), -EINVAL);
	o = (halo_breaker_opts){.window = 2, .probes = 3};
	ck_assert_int_eq(halo_breaker_init(&br, &loop, &o), -EINVAL);
}
END_TEST

static halo_fut *nop_call(halo_loop *l, void *arg)
{
	(void)arg;
	return halo_nop(l);
}

static void breaker_round(halo_breaker *br)
{
	halo_fut *f[32];

	for (int i = 0; i < 32; i++)
		f[i] = halo_breaker_call(br, nop_call, NULL);
	for (int i = 0; i < 32; i++)
		ck_assert_int_eq(halo_fut_join(f[i]), 0);
}

START_TEST(test_breaker_call_allocates_nothing_after_warm_up)
{
	halo_breaker br;
	halo_breaker_opts o = {.slow_call_ns = 1000 * MS};
	halo_stats a, b;

	ck_assert_int_eq(halo_breaker_init(&br, &loop, &o), 0);
	breaker_round(&br);
	halo_loop_stats(&loop, &a);
	for (int r = 0; r < 10; r++)
		breaker_round(&br);
	halo_loop_stats(&loop, &b);
	ck_assert_uint_eq(b.pool_allocs, a.pool_allocs);
	halo_breaker_close(&br);
}
END_TEST

Suite *breaker_suite(void)
{
	Suite *s = suite_create("breaker");
	TCase *tc = tcase_create("breaker");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(10));
	tcase_add_test(tc, test_open_breaker_fails_fast_without_calling);
	tcase_add_test(
	    tc, test_failures_below_the_ratio_or_min_calls_keep_it_closed);
	tcase_add_test(tc, test_slow_calls_count_as_failures);
	tcase_add_test(tc, test_state_changes_are_told_in_order);
	tcase_add_test(
	    tc, test_half_open_admits_exactly_n_probes_under_100_callers);
	tcase_add_test(tc, test_a_cancelled_probe_gives_its_place_to_another);
	tcase_add_test(tc,
		       test_outcomes_from_before_a_state_change_do_not_move_it);
	tcase_add_test(tc, test_cancelling_a_breaker_call_cancels_the_call);
	tcase_add_test(tc, test_bad_options_are_refused);
	tcase_add_test(tc, test_breaker_call_allocates_nothing_after_warm_up);
	suite_add_tcase(s, tc);
	return s;
}
