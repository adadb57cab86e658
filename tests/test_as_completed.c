/* Completion-order iteration: order, exactly once, deadline, fibers. */
#include <errno.h>
#include <unistd.h>

#include "tests/util.h"

TU_LOOP_FIXTURE(loop)

#define MS 1000000ull

START_TEST(test_yields_in_completion_order_exactly_once)
{
	uint64_t ms[5] = {40, 10, 30, 20, 50};
	halo_fut *f[6];
	halo_as_completed it;
	size_t got[6], n = 0;
	halo_fut *x;
	uint64_t now = halo_now_ns();

	/* Deadlines from one instant: a preemption between two creations
	 * cannot reorder them. */
	for (int i = 0; i < 5; i++)
		f[i] = halo_timer_at(&loop, now + ms[i] * MS);
	f[5] = halo_fut_new(&loop);
	halo_fut_resolve(f[5], 1, NULL); /* already done: first */
	ck_assert_int_eq(halo_as_completed_init(&it, &loop, f, 6, 0), 0);
	while ((x = halo_as_completed_next(&it))) {
		ck_assert_ptr_eq(x, f[halo_as_completed_index(&it)]);
		got[n++] = halo_as_completed_index(&it);
	}
	ck_assert_int_eq(it.err, 0);
	ck_assert_uint_eq(n, 6);
	ck_assert_uint_eq(got[0], 5);
	ck_assert_uint_eq(got[1], 1);
	ck_assert_uint_eq(got[2], 3);
	ck_assert_uint_eq(got[3], 2);
	ck_assert_uint_eq(got[4], 0);
	ck_assert_uint_eq(got[5], 4);
	halo_as_completed_close(&it);
	for (int i = 0; i < 6; i++)
		halo_fut_release(f[i]);
}
END_TEST

START_TEST(test_same_tick_completions_keep_completion_order)
{
	halo_fut *f[4];
	halo_as_completed it;
	size_t got[4], n = 0;

	for (int i = 0; i < 4; i++)
		f[i] = halo_fut_new(&loop);
	ck_assert_int_eq(halo_as_completed_init(&it, &loop, f, 4, 0), 0);
	halo_fut_resolve(f[2], 0, NULL);
	halo_fut_resolve(f[0], 0, NULL);
	halo_fut_resolve(f[3], 0, NULL);
	halo_fut_resolve(f[1], 0, NULL);
	while (halo_as_completed_next(&it))
		got[n++] = halo_as_completed_index(&it);
	ck_assert_uint_eq(n, 4);
	ck_assert_uint_eq(got[0], 2);
	ck_assert_uint_eq(got[1], 0);
	ck_assert_uint_eq(got[2], 3);
	ck_assert_uint_eq(got[3], 1);
	halo_as_completed_close(&it);
	for (int i = 0; i < 4; i++)
		halo_fut_release(f[i]);
}
END_TEST

START_TEST(test_deadline_ends_iteration_early)
{
	halo_fut *f[2] = {halo_timer_after(&loop, 5 * MS),
			  halo_timer_after(&loop, 2000 * MS)};
	halo_as_completed it;

	ck_assert_int_eq(halo_as_completed_init(&it, &loop, f, 2,
						halo_now_ns() + 40 * MS),
			 0);
	ck_assert_ptr_eq(halo_as_completed_next(&it), f[0]);
	ck_assert_ptr_null(halo_as_completed_next(&it));
	ck_assert_int_eq(it.err, -ETIMEDOUT);
	halo_as_completed_close(&it);
	halo_cancel_all(f, 2);
	halo_fut_release(f[0]);
	halo_fut_release(f[1]);
}
END_TEST

/* A fiber that iterates f in completion order. It resolves took[0] once
 * the iterator is set up and took[k] once it has taken k futures, so that
 * the test knows where it is without sleeping. */
struct consumer {
	halo_fut **f;
	halo_fut *took[4];
	size_t seen[3], seen_n;
};

static int64_t consumer(halo_loop *l, void *arg)
{
	struct consumer *c = arg;
	halo_as_completed it;
	int64_t sum = 0;
	halo_fut *x;

	halo_as_completed_init(&it, l, c->f, 3, 0);
	halo_fut_resolve(c->took[0], 0, NULL);
	while ((x = halo_as_completed_next(&it))) {
		sum = sum * 10 + (int64_t)halo_as_completed_index(&it);
		c->seen[c->seen_n++] = halo_as_completed_index(&it);
		halo_fut_resolve(c->took[c->seen_n], 0, NULL);
	}
	halo_as_completed_close(&it);
	return sum;
}

START_TEST(test_iterates_inside_a_fiber)
{
	static const size_t order[3] = {1, 2, 0};
	halo_fut *f[3];
	struct consumer c = {.f = f};
	halo_fut *fiber;

	for (int i = 0; i < 3; i++)
		f[i] = halo_fut_new(&loop);
	for (int i = 0; i < 4; i++)
		c.took[i] = halo_fut_new(&loop);
	fiber = halo_spawn(&loop, consumer, &c);
	ck_assert_int_eq(halo_fut_wait(c.took[0]), 0);
	for (size_t k = 0; k < 3; k++) {
		/* The fiber has taken k futures and waits inside next(),
		 * suspended while this thread drives the loop. */
		ck_assert_uint_eq(c.seen_n, k);
		ck_assert(!halo_fut_is_done(fiber));
		halo_fut_resolve(f[order[k]], 0, NULL);
		ck_assert_int_eq(halo_fut_wait(c.took[k + 1]), 0);
		ck_assert_uint_eq(c.seen[k], order[k]);
	}
	ck_assert_int_eq(halo_fut_join(fiber), 120);
	for (int i = 0; i < 3; i++)
		halo_fut_release(f[i]);
	for (int i = 0; i < 4; i++)
		halo_fut_release(c.took[i]);
}
END_TEST

Suite *as_completed_suite(void)
{
	Suite *s = suite_create("as_completed");
	TCase *tc = tcase_create("as_completed");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(10));
	tcase_add_test(tc, test_yields_in_completion_order_exactly_once);
	tcase_add_test(tc, test_same_tick_completions_keep_completion_order);
	tcase_add_test(tc, test_deadline_ends_iteration_early);
	tcase_add_test(tc, test_iterates_inside_a_fiber);
	suite_add_tcase(s, tc);
	return s;
}
