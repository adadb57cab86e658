/* Semaphore FIFO order and cancellation, bounded map, rate limiter. */
#include <errno.h>
#include <unistd.h>

#include "runtime/fault.h"
#include "tests/util.h"

TU_LOOP_FIXTURE(loop)

#define MS 1000000ull

static int order[8], order_n;
static void record(halo_fut *f, void *arg)
{
	(void)f;
	order[order_n++] = (int)(intptr_t)arg;
}

START_TEST(test_sem_grants_in_request_order)
{
	halo_sem sem;
	halo_fut *a[4];

	order_n = 0;
	halo_sem_init(&sem, &loop, 1);
	ck_assert(halo_sem_try_acquire(&sem));
	for (int i = 0; i < 4; i++) {
		a[i] = halo_sem_acquire(&sem);
		halo_fut_on_done(a[i], record, (void *)(intptr_t)i);
	}
	ck_assert_uint_eq(halo_sem_waiting(&sem), 4);
	ck_assert(!halo_sem_try_acquire(&sem)); /* no barging past waiters */
	for (int i = 0; i < 4; i++) {
		halo_sem_release(&sem);
		ck_assert_int_eq(halo_fut_wait(a[i]), 0);
		halo_loop_run(&loop);
	}
	ck_assert_int_eq(order_n, 4);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(order[i], i);
	halo_sem_release(&sem);
	ck_assert(halo_sem_try_acquire(&sem));
	for (int i = 0; i < 4; i++)
		halo_fut_release(a[i]);
}
END_TEST

START_TEST(test_sem_cancelled_acquire_leaves_queue_without_losing_permit)
{
	halo_sem sem;
	halo_fut *a, *b, *c;

	halo_sem_init(&sem, &loop, 0);
	a = halo_sem_acquire(&sem);
	b = halo_sem_acquire(&sem);
	c = halo_sem_acquire(&sem);
	ck_assert_int_eq(halo_fut_cancel(b), 0);
	ck_assert_int_eq(halo_fut_status(b), HALO_FUT_CANCELLED);
	ck_assert_uint_eq(halo_sem_waiting(&sem), 2);
	halo_sem_release(&sem);
	halo_sem_release(&sem);
	ck_assert_int_eq(halo_fut_status(a), HALO_FUT_OK);
	ck_assert_int_eq(halo_fut_status(c), HALO_FUT_OK);
	halo_sem_release(&sem);
	ck_assert(halo_sem_try_acquire(&sem));
	halo_sem_close(&sem);
	halo_fut_release(a);
	halo_fut_release(b);
	halo_fut_release(c);
}
END_TEST

static int in_flight, max_in_flight;
static void count_down(halo_fut *f, void *arg)
{
	(void)f;
	(void)arg;
	in_flight--;
}

static halo_fut *start_item(halo_loop *l, void *input, size_t idx)
{
	halo_fut *t = halo_timer_after(l, (1 + (idx * 7) % 5) * MS);

	(void)input;
	in_flight++;
	if (in_flight > max_in_flight)
		max_in_flight = in_flight;
	halo_fut_on_done(t, count_down, NULL);
	return t;
}

START_TEST(test_map_never_exceeds_k_in_flight)
{
	int64_t res[40];
	halo_map_opts o = {.results = res};
	halo_fut *m;

	in_flight = max_in_flight = 0;
	m = halo_map(&loop, NULL, 40, 4, start_item, &o);
	ck_assert_int_eq(halo_fut_wait(m), 40);
	ck_assert_int_le(max_in_flight, 4);
	ck_assert_int_eq(max_in_flight, 4);
	halo_loop_run(&loop);
	ck_assert_int_eq(in_flight, 0);
	halo_fut_release(m);
}
END_TEST

struct item {
	uint64_t ms;
	int64_t val;
};

static int64_t item_fiber(halo_loop *l, void *arg)
{
	struct item *it = arg;

	halo_sleep(l, it->ms * MS);
	return it->val;
}

static halo_fut *start_fiber(halo_loop *l, void *input, size_t idx)
{
	(void)idx;
	return halo_spawn(l, item_fiber, input);
}

static size_t seen[8], seen_n;
static void each(halo_fut *f, size_t idx, void *arg)
{
	(void)f;
	(void)arg;
	seen[seen_n++] = idx;
}

START_TEST(test_map_results_in_input_order_and_each_in_completion_order)
{
	struct item items[4] = {{40, 1}, {10, 2}, {30, 3}, {5, 4}};
	void *in[4] = {&items[0], &items[1], &items[2], &items[3]};
	int64_t res[4];
	halo_map_opts o = {.results = res, .on_each = each};
	halo_fut *m;

	seen_n = 0;
	m = halo_map(&loop, in, 4, 4, start_fiber, &o);
	ck_assert_int_eq(halo_fut_wait(m), 4);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(res[i], i + 1);
	ck_assert_uint_eq(seen_n, 4);
	ck_assert_uint_eq(seen[0], 3);
	ck_assert_uint_eq(seen[1], 1);
	ck_assert_uint_eq(seen[2], 2);
	ck_assert_uint_eq(seen[3], 0);
	halo_fut_release(m);
}
END_TEST

START_TEST(test_map_failure_stops_starting_and_cancels_in_flight)
{
	struct item items[6] = {{5, 1}, {10, -EIO}, {1000, 3},
				{1000, 4}, {1, 5}, {1, 6}};
	void *in[6];
	int64_t res[6] = {0};
	halo_map_opts o = {.results = res, .cancel_on_error = true};
	uint64_t t0 = halo_now_ns();
	halo_fut *m;

	for (int i = 0; i < 6; i++)
		in[i] = &items[i];
	m = halo_map(&loop, in, 6, 3, start_fiber, &o);
	ck_assert_int_eq(halo_fut_wait(m), -EIO);
	ck_assert_uint_lt(halo_now_ns() - t0, 500 * MS);
	ck_assert_int_eq(res[0], 1);
	ck_assert_int_eq(res[1], -EIO);
	ck_assert_int_eq(res[2], -ECANCELED);
	ck_assert_int_eq(res[5], 0); /* never started */
	halo_fut_release(m);
}
END_TEST

START_TEST(test_ratelimit_spaces_acquires_at_the_rate)
{
	halo_ratelimit rl;
	halo_fut *a[6];
	uint64_t t0 = halo_now_ns(), done[6];

	/* 50/s, burst 2: two at once, then one every 20 ms. */
	ck_assert_int_eq(halo_ratelimit_init(&rl, &loop, 50, 2), 0);
	for (int i = 0; i < 6; i++)
		a[i] = halo_ratelimit_acquire(&rl);
	ck_assert_int_eq(halo_fut_status(a[0]), HALO_FUT_OK);
	ck_assert_int_eq(halo_fut_status(a[1]), HALO_FUT_OK);
	ck_assert_int_eq(halo_fut_status(a[2]), HALO_FUT_PENDING);
	for (int i = 0; i < 6; i++) {
		ck_assert_int_eq(halo_fut_wait(a[i]), 0);
		done[i] = halo_now_ns() - t0;
	}
	/* Four more tokens at 20 ms each: about 80 ms in all. */
	ck_assert_uint_ge(done[5], 70 * MS);
	ck_assert_uint_lt(done[5], 400 * MS);
	ck_assert_uint_ge(done[3], 30 * MS);
	halo_ratelimit_close(&rl);
	for (int i = 0; i < 6; i++)
		halo_fut_release(a[i]);
}
END_TEST

START_TEST(test_ratelimit_cancel_keeps_fifo_and_close_cancels_rest)
{
	halo_ratelimit rl;
	halo_fut *a, *b, *c;

	ck_assert_int_eq(halo_ratelimit_init(&rl, &loop, 100, 1), 0);
	ck_assert_int_eq(halo_ratelimit_init(&rl, &loop, 0, 1), -EINVAL);
	ck_assert_int_eq(halo_ratelimit_init(&rl, &loop, 100, 1), 0);
	a = halo_ratelimit_acquire(&rl);
	b = halo_ratelimit_acquire(&rl);
	c = halo_ratelimit_acquire(&rl);
	halo_fut_cancel(b);
	ck_assert_int_eq(halo_fut_wait(c), 0);
	ck_assert_int_eq(halo_fut_status(a), HALO_FUT_OK);
	ck_assert_int_eq(halo_fut_status(b), HALO_FUT_CANCELLED);
	halo_fut_release(b);
	b = halo_ratelimit_acquire(&rl);
	halo_ratelimit_close(&rl);
	ck_assert_int_eq(halo_fut_status(b), HALO_FUT_CANCELLED);
	halo_fut_release(a);
	halo_fut_release(b);
	halo_fut_release(c);
}
END_TEST

#ifdef HALO_FAULT
/* A queued acquire is woken by a loop timer; without memory for that timer
 * nothing would ever wake it, so it fails with -ENOMEM instead of waiting
 * for a wake-up that cannot come (-EDEADLK, or a fiber stuck for good). */
START_TEST(test_ratelimit_without_memory_for_its_timer_fails_the_queue)
{
	halo_ratelimit rl;
	halo_fut *now, *queued[2];

	ck_assert_int_eq(halo_ratelimit_init(&rl, &loop, 1000, 1), 0);
	now = halo_ratelimit_acquire(&rl);
	queued[0] = halo_ratelimit_acquire(&rl);
	ck_assert_int_eq(halo_fut_join(now), 0);
	ck_assert_int_eq(halo_fut_join(queued[0]), 0);
	/* The acquire's own future comes first, then the wake-up timer. */
	halo__fault_arm(HALO_FAULT_SLOT, 2, true);
	queued[1] = halo_ratelimit_acquire(&rl);
	halo__fault_disarm();
	ck_assert_ptr_nonnull(queued[1]);
	ck_assert_int_eq(halo_fut_join(queued[1]), -ENOMEM);
	ck_assert_int_eq(halo_fut_join(halo_ratelimit_acquire(&rl)), 0);
	halo_ratelimit_close(&rl);
}
END_TEST
#endif

Suite *limit_suite(void)
{
	Suite *s = suite_create("limit");
	TCase *tc = tcase_create("limit");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(10));
	tcase_add_test(tc, test_sem_grants_in_request_order);
	tcase_add_test(
		tc, test_sem_cancelled_acquire_leaves_queue_without_losing_permit);
	tcase_add_test(tc, test_map_never_exceeds_k_in_flight);
	tcase_add_test(
		tc,
		test_map_results_in_input_order_and_each_in_completion_order);
	tcase_add_test(tc,
		       test_map_failure_stops_starting_and_cancels_in_flight);
	tcase_add_test(tc, test_ratelimit_spaces_acquires_at_the_rate);
	tcase_add_test(tc,
		       test_ratelimit_cancel_keeps_fifo_and_close_cancels_rest);
	suite_add_tcase(s, tc);
#ifdef HALO_FAULT
	tc = tcase_create("enomem");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_checked_fixture(tc, tu_fault_reset, tu_fault_reset);
	tcase_set_timeout(tc, tu_timeout(5));
	tcase_add_test(
	    tc, test_ratelimit_without_memory_for_its_timer_fails_the_queue);
	suite_add_tcase(s, tc);
#endif
	return s;
}
