/* The adaptive concurrency limit on its own: options checked, permits in
 * FIFO order to embedded waiters, increase while latency holds and the
 * limit is used, decrease when latency climbs or requests fail. */
#include <errno.h>
#include <unistd.h>

#include "tests/util.h"

TU_LOOP_FIXTURE(loop)

#define MS 1000000ull

struct granted {
	halo_adaptive_waiter w;
	int order, *next;
};

static void on_grant(halo_adaptive_waiter *w)
{
	struct granted *g = w->arg;

	g->order = (*g->next)++;
}

START_TEST(test_adaptive_refuses_options_that_make_no_sense)
{
	halo_adaptive a;

	ck_assert_int_eq(halo_adaptive_init(&a, NULL), 0);
	ck_assert_uint_eq(halo_adaptive_limit(&a), 4);
	ck_assert_int_eq(
	    halo_adaptive_init(&a, &(halo_adaptive_opts){.min = 8, .max = 4}),
	    -EINVAL);
	ck_assert_int_eq(halo_adaptive_init(
			     &a, &(halo_adaptive_opts){.initial = 9, .max = 8}),
			 -EINVAL);
	ck_assert_int_eq(
	    halo_adaptive_init(&a, &(halo_adaptive_opts){.backoff = 1.5}),
	    -EINVAL);
	ck_assert_int_eq(
	    halo_adaptive_init(&a, &(halo_adaptive_opts){.tolerance = 0.5}),
	    -EINVAL);
	ck_assert_int_eq(
	    halo_adaptive_init(&a, &(halo_adaptive_opts){.min = 10}), 0);
	ck_assert_uint_eq(halo_adaptive_limit(&a), 10);
}
END_TEST

START_TEST(test_adaptive_grants_waiters_in_order)
{
	halo_adaptive a;
	struct granted g[3];
	int next = 0;

	ck_assert_int_eq(
	    halo_adaptive_init(&a, &(halo_adaptive_opts){.initial = 1}), 0);
	ck_assert(halo_adaptive_try_acquire(&a));
	ck_assert(!halo_adaptive_try_acquire(&a));
	for (int i = 0; i < 3; i++) {
		g[i] = (struct granted){.order = -1, .next = &next};
		g[i].w.fn = on_grant;
		g[i].w.arg = &g[i];
		halo_adaptive_wait(&a, &g[i].w);
	}
	ck_assert(halo_adaptive_cancel_wait(&a, &g[1].w));
	ck_assert(!halo_adaptive_cancel_wait(&a, &g[1].w));
	halo_adaptive_release(&a);
	ck_assert_int_eq(g[0].order, 0);
	ck_assert_int_eq(g[2].order, -1);
	ck_assert(!halo_adaptive_try_acquire(&a)); /* g[2] is queued */
	halo_adaptive_release(&a);
	ck_assert_int_eq(g[2].order, 1);
	ck_assert_int_eq(g[1].order, -1);
	halo_adaptive_release(&a);
	ck_assert_uint_eq(halo_adaptive_inflight(&a), 0);
}
END_TEST

/* One window of samples, all with latency lat, that used every permit. */
static void window(halo_adaptive *a, uint64_t lat, halo_adaptive_outcome oc)
{
	uint32_t n = halo_adaptive_limit(a) > 8 ? halo_adaptive_limit(a) : 8;
	uint32_t held = 0;

	while (halo_adaptive_try_acquire(a))
		held++;
	for (uint32_t i = 0; i < n; i++) {
		if (held) {
			held--;
			halo_adaptive_release(a);
		}
		halo_adaptive_sample(a, lat, oc);
	}
}

/* Let ms pass, so that the next samples began inside the new window. */
static void pass(unsigned ms)
{
	usleep(ms * 1000);
}

START_TEST(test_adaptive_rises_while_latency_holds_and_backs_off)
{
	halo_adaptive a;
	halo_adaptive_opts o = {.initial = 4, .max = 6};

	ck_assert_int_eq(halo_adaptive_init(&a, &o), 0);
	window(&a, 1 * MS, HALO_ADAPTIVE_OK);
	ck_assert_uint_eq(halo_adaptive_baseline(&a), 1 * MS);
	ck_assert_uint_eq(halo_adaptive_limit(&a), 5);
	pass(2);
	window(&a, 1 * MS, HALO_ADAPTIVE_OK);
	pass(2);
	window(&a, 1 * MS, HALO_ADAPTIVE_OK);
	ck_assert_uint_eq(halo_adaptive_limit(&a), 6); /* max */
	window(&a, 0, HALO_ADAPTIVE_DROPPED);
	ck_assert_uint_eq(halo_adaptive_limit(&a), 4); /* 6 x 0.8 */
	pass(3);
	window(&a, 2 * MS, HALO_ADAPTIVE_OK); /* 2 x the baseline */
	ck_assert_uint_eq(halo_adaptive_limit(&a), 3);
	/* Requests that began before that decision ran under the old limit:
	 * they move nothing. */
	window(&a, 1 * MS, HALO_ADAPTIVE_OK);
	ck_assert_uint_eq(halo_adaptive_limit(&a), 3);
	pass(2);
	window(&a, 1 * MS, HALO_ADAPTIVE_OK);
	ck_assert_uint_eq(halo_adaptive_limit(&a), 4);
	/* Unused permits say nothing about the backend: no increase. */
	for (int i = 0; i < 8; i++)
		halo_adaptive_sample(&a, 0, HALO_ADAPTIVE_OK);
	ck_assert_uint_eq(halo_adaptive_limit(&a), 4);
	ck_assert_uint_eq(halo_adaptive_inflight(&a), 0);
}
END_TEST

struct caller {
	halo_adaptive *a;
	uint64_t got_ns, released_ns;
};

/* A fiber that takes a permit, holds it 10 ms and gives it back. */
static int64_t call(halo_loop *l, void *arg)
{
	struct caller *c = arg;
	uint64_t t0;
	int64_t r = halo_fut_join(halo_adaptive_acquire(c->a, l));

	if (r < 0)
		return r;
	c->got_ns = t0 = halo_now_ns();
	halo_sleep(l, 10 * MS);
	c->released_ns = halo_now_ns();
	halo_adaptive_release(c->a);
	halo_adaptive_sample(c->a, c->released_ns - t0, HALO_ADAPTIVE_OK);
	return 0;
}

START_TEST(test_adaptive_acquire_future_waits_its_turn_and_cancels)
{
	halo_adaptive a;
	struct caller c[2] = {{.a = &a}, {.a = &a}};
	halo_fut *fb[2], *queued;

	ck_assert_int_eq(
	    halo_adaptive_init(&a, &(halo_adaptive_opts){.initial = 1}), 0);
	fb[0] = halo_spawn(&loop, call, &c[0]);
	fb[1] = halo_spawn(&loop, call, &c[1]);
	ck_assert_int_eq(halo_fut_join(fb[0]), 0);
	ck_assert_int_eq(halo_fut_join(fb[1]), 0);
	ck_assert_uint_ge(c[1].got_ns, c[0].released_ns);
	ck_assert_uint_eq(halo_adaptive_inflight(&a), 0);

	/* A pending acquire leaves the queue when cancelled. */
	ck_assert(halo_adaptive_try_acquire(&a));
	queued = halo_adaptive_acquire(&a, &loop);
	ck_assert(!halo_fut_is_done(queued));
	ck_assert_uint_eq(a.waiting_n, 1);
	ck_assert_int_eq(halo_fut_cancel(queued), 0);
	ck_assert_int_eq(halo_fut_join(queued), -ECANCELED);
	ck_assert_uint_eq(a.waiting_n, 0);
	halo_adaptive_release(&a);
	ck_assert_uint_eq(halo_adaptive_inflight(&a), 0);
}
END_TEST

Suite *adaptive_suite(void)
{
	Suite *s = suite_create("adaptive");
	TCase *tc = tcase_create("adaptive");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(10));

	tcase_add_test(tc, test_adaptive_refuses_options_that_make_no_sense);
	tcase_add_test(tc, test_adaptive_grants_waiters_in_order);
	tcase_add_test(tc,
		       test_adaptive_rises_while_latency_holds_and_backs_off);
	tcase_add_test(tc,
		       test_adaptive_acquire_future_waits_its_turn_and_cancels);
	suite_add_tcase(s, tc);
	return s;
}
