/* Rolling poller window: window bound, rolling order, deadlines, rate limit,
 * removal, asynchronous batch polls. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fault.h"
#include "tests/util.h"

TU_LOOP_FIXTURE(loop)

#define NIDS 10000

struct remote {
	uint32_t polled[NIDS];
	size_t max_n;
	int calls;
	int never_done_below; /* ids below this never finish */
};

/* Id i finishes on its (i % 5 + 1)-th poll with result 3 * i. */
static int sync_poll(halo_poller *p, const uint64_t *ids, size_t n,
		     halo_poller_report *out, void *arg)
{
	struct remote *r = arg;

	(void)p;
	r->calls++;
	if (n > r->max_n)
		r->max_n = n;
	for (size_t i = 0; i < n; i++) {
		uint64_t id = ids[i];

		ck_assert_uint_lt(id, NIDS);
		if ((int)id < r->never_done_below)
			continue;
		if (++r->polled[id] >= id % 5 + 1) {
			out[i].done = 1;
			out[i].result = (int64_t)id * 3;
		}
	}
	return 0;
}

START_TEST(test_ten_thousand_ids_window_of_hundred_all_complete)
{
	static struct remote r;
	static halo_fut *f[NIDS];
	halo_poller p;
	halo_poller_opts o = {.window = 100, .interval_ns = 50000};
	halo_poller_stats st;

	memset(&r, 0, sizeof(r));
	ck_assert_int_eq(halo_poller_init(&p, &loop, &o, sync_poll, &r), 0);
	for (int i = 0; i < NIDS; i++)
		f[i] = halo_poller_add(&p, (uint64_t)i, 0);
	for (int i = 0; i < NIDS; i++) {
		ck_assert_int_eq(halo_fut_wait(f[i]), 3 * i);
		halo_fut_release(f[i]);
		ck_assert_uint_eq(r.polled[i], i % 5 + 1);
	}
	ck_assert_uint_le(r.max_n, 100);
	ck_assert_uint_eq(halo_poller_size(&p), 0);
	halo_poller_stats_get(&p, &st);
	ck_assert_uint_eq(st.finished, NIDS);
	ck_assert_uint_eq(st.polls, 3 * NIDS); /* 1+2+3+4+5 per 5 ids */
	ck_assert_uint_le(st.max_call, 100);
	halo_poller_close(&p);
}
END_TEST

START_TEST(test_deadline_fails_unfinished_ids_with_etimedout)
{
	static struct remote r;
	halo_poller p;
	halo_poller_opts o = {.window = 4, .interval_ns = 1000000};
	halo_fut *f[10];
	uint64_t dl = halo_now_ns() + 50000000ull;

	memset(&r, 0, sizeof(r));
	r.never_done_below = 5;
	ck_assert_int_eq(halo_poller_init(&p, &loop, &o, sync_poll, &r), 0);
	for (int i = 0; i < 10; i++)
		f[i] = halo_poller_add(&p, (uint64_t)i, dl);
	for (int i = 0; i < 10; i++) {
		int64_t res = halo_fut_join(f[i]);

		if (i < 5)
			ck_assert_int_eq(res, -ETIMEDOUT);
		else
			ck_assert_int_eq(res, 3 * i);
	}
	ck_assert_uint_ge(halo_now_ns(), dl);
	ck_assert_uint_eq(halo_poller_size(&p), 0);
	halo_poller_close(&p);
}
END_TEST

START_TEST(test_rate_limit_spaces_cycles)
{
	static struct remote r;
	halo_poller p;
	/* 10 ids per cycle at 500 polls/s: a cycle every 20 ms at most. */
	halo_poller_opts o = {.window = 10, .interval_ns = 1000, .rate = 500};
	halo_fut *f[50];
	uint64_t t0 = halo_now_ns();

	memset(&r, 0, sizeof(r));
	ck_assert_int_eq(halo_poller_init(&p, &loop, &o, sync_poll, &r), 0);
	for (int i = 0; i < 50; i++)
		f[i] = halo_poller_add(&p, (uint64_t)i * 5, 0); /* 1 poll */
	for (int i = 0; i < 50; i++)
		ck_assert_int_eq(halo_fut_join(f[i]), 15 * i);
	ck_assert_int_eq(r.calls, 5);
	ck_assert_uint_ge(halo_now_ns() - t0, 60000000ull); /* >= 4 x 20 ms,
							       with margin */
	halo_poller_close(&p);
}
END_TEST

struct async_remote {
	halo_poller *p;
	const uint64_t *ids;
	size_t n;
	halo_poller_report *out;
	int calls;
};

static void answer(halo_fut *f, void *arg)
{
	struct async_remote *a = arg;

	halo_fut_release(f);
	for (size_t i = 0; i < a->n; i++) {
		a->out[i].done = a->ids[i] % 2 ? 1 : 0;
		a->out[i].result = (int64_t)a->ids[i];
	}
	ck_assert_int_eq(halo_poller_reported(a->p, 0), 0);
}

static int async_poll(halo_poller *p, const uint64_t *ids, size_t n,
		      halo_poller_report *out, void *arg)
{
	struct async_remote *a = arg;

	a->p = p;
	a->ids = ids;
	a->n = n;
	a->out = out;
	a->calls++;
	halo_fut_on_done(halo_nop(&loop), answer, a);
	return HALO_POLLER_ASYNC;
}

START_TEST(test_async_poll_and_removal_by_cancel)
{
	struct async_remote a = {0};
	halo_poller p;
	halo_poller_opts o = {.window = 3};
	halo_fut *f[6];

	ck_assert_int_eq(halo_poller_init(&p, &loop, &o, async_poll, &a), 0);
	for (int i = 0; i < 6; i++)
		f[i] = halo_poller_add(&p, (uint64_t)i, 0);
	ck_assert_int_eq(halo_poller_reported(&p, 0), -EINVAL);
	for (int i = 1; i < 6; i += 2)
		ck_assert_int_eq(halo_fut_join(f[i]), i);
	/* Even ids never finish: remove them, one by id, two by cancel. */
	ck_assert_int_eq(halo_poller_remove(&p, 0), 0);
	ck_assert_int_eq(halo_poller_remove(&p, 99), -ENOENT);
	halo_fut_cancel(f[2]);
	halo_fut_cancel(f[4]);
	for (int i = 0; i < 6; i += 2)
		ck_assert_int_eq(halo_fut_join(f[i]), -ECANCELED);
	ck_assert_uint_eq(halo_poller_size(&p), 0);
	halo_poller_close(&p);
}
END_TEST

START_TEST(test_close_cancels_waiting_ids)
{
	static struct remote r;
	halo_poller p;
	halo_poller_opts o = {.interval_ns = 1000000000ull};
	halo_fut *f;

	memset(&r, 0, sizeof(r));
	r.never_done_below = 10;
	ck_assert_int_eq(halo_poller_init(&p, &loop, &o, sync_poll, &r), 0);
	f = halo_poller_add(&p, 1, 0);
	halo_loop_run_nowait(&loop);
	halo_poller_close(&p);
	ck_assert_int_eq(halo_fut_join(f), -ECANCELED);
}
END_TEST

#ifdef HALO_FAULT
/* Cycles are started by a loop timer; without memory for it nothing would
 * poll the waiting ids again, so they fail with -ENOMEM instead of waiting
 * for good. A later add polls again. */
START_TEST(test_poller_without_memory_for_its_timer_fails_the_waiting_ids)
{
	static struct remote r;
	halo_poller p;
	halo_fut *f;

	memset(&r, 0, sizeof(r));
	ck_assert_int_eq(halo_poller_init(&p, &loop, NULL, sync_poll, &r), 0);
	/* The add's own future first, then the cycle's timer. */
	halo__fault_arm(HALO_FAULT_SLOT, 2, false);
	f = halo_poller_add(&p, 1, 0);
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(halo_fut_join(f), -ENOMEM);
	ck_assert_uint_eq(halo_poller_size(&p), 0);
	ck_assert_int_eq(halo_fut_join(halo_poller_add(&p, 2, 0)), 6);
	halo_poller_close(&p);
}
END_TEST
#endif

Suite *poller_suite(void)
{
	Suite *s = suite_create("poller");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(30));
	tcase_add_test(tc, test_ten_thousand_ids_window_of_hundred_all_complete);
	tcase_add_test(tc, test_deadline_fails_unfinished_ids_with_etimedout);
	tcase_add_test(tc, test_rate_limit_spaces_cycles);
	tcase_add_test(tc, test_async_poll_and_removal_by_cancel);
	tcase_add_test(tc, test_close_cancels_waiting_ids);
	suite_add_tcase(s, tc);
#ifdef HALO_FAULT
	tc = tcase_create("enomem");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_checked_fixture(tc, tu_fault_reset, tu_fault_reset);
	tcase_set_timeout(tc, tu_timeout(5));
	tcase_add_test(
	    tc, test_poller_without_memory_for_its_timer_fails_the_waiting_ids);
	suite_add_tcase(s, tc);
#endif
	return s;
}
