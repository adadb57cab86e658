/* Request aggregation: one batch call per tick, duplicates collapsed,
 * per-key results matched by key, cache and invalidation, in-flight bound,
 * max_delay, async batches riding the tick's single enter. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fault.h"
#include "tests/util.h"

TU_LOOP_FIXTURE(loop)

struct sync_ctx {
	int calls;
	size_t max_n;
	size_t total;
	int dup_seen;
};

/* Answers in reverse order, by key: results are matched by key, not by
 * position. key % 100 == 13 fails, key % 100 == 42 is never answered. */
static int sync_batch(halo_agg *agg, const uint64_t *keys, size_t n,
		      halo_agg_batch *b, void *arg)
{
	struct sync_ctx *c = arg;

	(void)agg;
	c->calls++;
	c->total += n;
	if (n > c->max_n)
		c->max_n = n;
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n && j < i + 4; j++)
			if (keys[i] == keys[j])
				c->dup_seen++;
	for (size_t i = n; i-- > 0;) {
		uint64_t k = keys[i];

		if (k % 100 == 13)
			ck_assert_int_eq(halo_agg_batch_fail(b, k, -EIO, "bad"),
					 0);
		else if (k % 100 != 42)
			ck_assert_int_eq(halo_agg_batch_resolve(
						 b, k, (int64_t)k * 2, NULL),
					 0);
	}
	ck_assert_int_eq(halo_agg_batch_resolve(b, 1u << 30, 0, NULL), -ENOENT);
	halo_agg_batch_done(b);
	return 0;
}

START_TEST(test_ten_thousand_loads_in_one_tick_make_one_call_per_max_batch)
{
	enum { N = 10000, DISTINCT = 2500, MAXB = 100 };
	static halo_fut *f[N];
	struct sync_ctx c = {0};
	halo_agg agg;
	halo_agg_opts o = {.max_batch = MAXB};
	halo_agg_stats st;

	ck_assert_int_eq(halo_agg_init(&agg, &loop, &o, sync_batch, &c), 0);
	for (int i = 0; i < N; i++) {
		f[i] = halo_agg_load(&agg, (uint64_t)(i % DISTINCT) * 7919);
		ck_assert_ptr_nonnull(f[i]);
	}
	ck_assert_int_eq(c.calls, 0); /* nothing runs inside load */
	halo_loop_run_nowait(&loop);
	ck_assert_int_eq(c.calls, (DISTINCT + MAXB - 1) / MAXB);
	ck_assert_uint_eq(c.total, DISTINCT);
	ck_assert_uint_le(c.max_n, MAXB);
	for (int i = 0; i < N; i++) {
		uint64_t k = (uint64_t)(i % DISTINCT) * 7919;
		int64_t r = halo_fut_wait(f[i]);

		if (k % 100 == 13) {
			ck_assert_int_eq(r, -EIO);
			ck_assert_str_eq(halo_fut_error_msg(f[i]), "bad");
		} else if (k % 100 == 42) {
			ck_assert_int_eq(r, -ENOENT);
		} else {
			ck_assert_int_eq(r, (int64_t)k * 2);
		}
		halo_fut_release(f[i]);
	}
	halo_agg_stats_get(&agg, &st);
	ck_assert_uint_eq(st.loads, N);
	ck_assert_uint_eq(st.dedup_hits, N - DISTINCT);
	halo_agg_close(&agg);
}
END_TEST

START_TEST(test_cache_serves_hits_until_invalidated_and_never_caches_errors)
{
	struct sync_ctx c = {0};
	halo_agg agg;
	halo_agg_opts o = {.cache = true};

	ck_assert_int_eq(halo_agg_init(&agg, &loop, &o, sync_batch, &c), 0);
	ck_assert_int_eq(halo_fut_join(halo_agg_load(&agg, 5)), 10);
	ck_assert_int_eq(halo_fut_join(halo_agg_load(&agg, 113)), -EIO);
	ck_assert_int_eq(c.calls, 2);
	ck_assert_int_eq(halo_fut_join(halo_agg_load(&agg, 5)), 10);
	ck_assert_int_eq(c.calls, 2);
	ck_assert_int_eq(halo_fut_join(halo_agg_load(&agg, 113)), -EIO);
	ck_assert_int_eq(c.calls, 3);
	ck_assert_int_eq(halo_agg_invalidate(&agg, 5), 1);
	ck_assert_int_eq(halo_fut_join(halo_agg_load(&agg, 5)), 10);
	ck_assert_int_eq(c.calls, 4);
	halo_agg_clear(&agg);
	ck_assert_int_eq(halo_fut_join(halo_agg_load(&agg, 5)), 10);
	ck_assert_int_eq(c.calls, 5);
	halo_agg_close(&agg);
}
END_TEST

/* An async batch: one NOP per batch, keys answered when it completes. */
struct async_ctx {
	int calls;
	int inflight, max_inflight;
	halo_agg_batch *b[64];
	uint64_t *keys[64];
	size_t n[64];
};

struct slot_arg {
	struct async_ctx *c;
	int slot;
};

static void async_nop_done(halo_fut *f, void *arg)
{
	struct slot_arg *sa = arg;
	struct async_ctx *c = sa->c;
	int s = sa->slot;

	ck_assert_int_eq(halo_fut_result(f), 0);
	halo_fut_release(f);
	for (size_t i = 0; i < c->n[s]; i++)
		halo_agg_batch_resolve(c->b[s], c->keys[s][i],
				       (int64_t)c->keys[s][i] + 1, NULL);
	halo_agg_batch_done(c->b[s]);
	c->inflight--;
	free(sa);
}

static int async_batch(halo_agg *agg, const uint64_t *keys, size_t n,
		       halo_agg_batch *b, void *arg)
{
	struct async_ctx *c = arg;
	int s = c->calls++ % 64;
	struct slot_arg *sa = malloc(sizeof(*sa));
	halo_fut *nop = halo_nop(&loop);

	(void)agg;
	ck_assert_ptr_nonnull(nop);
	c->b[s] = b;
	c->keys[s] = (uint64_t *)keys;
	c->n[s] = n;
	if (++c->inflight > c->max_inflight)
		c->max_inflight = c->inflight;
	sa->c = c;
	sa->slot = s;
	ck_assert_int_eq(halo_fut_on_done(nop, async_nop_done, sa), 0);
	return 0;
}

START_TEST(test_async_batches_respect_max_inflight_and_share_the_enter)
{
	enum { N = 1000 };
	static halo_fut *f[N];
	struct async_ctx c = {0};
	halo_agg agg;
	halo_agg_opts o = {.max_batch = 50, .max_inflight = 4};
	halo_stats s0, s1;

	ck_assert_int_eq(halo_agg_init(&agg, &loop, &o, async_batch, &c), 0);
	for (int i = 0; i < N; i++)
		f[i] = halo_agg_load(&agg, (uint64_t)i);
	halo_loop_stats(&loop, &s0);
	halo_loop_run_nowait(&loop);
	halo_loop_stats(&loop, &s1);
	/* Four batches, four NOPs, one enter. */
	ck_assert_int_eq(c.calls, 4);
	ck_assert_uint_eq(s1.enters - s0.enters, 1);
	ck_assert_uint_eq(s1.sqes_submitted - s0.sqes_submitted, 4);
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(halo_fut_wait(f[i]), i + 1);
		halo_fut_release(f[i]);
	}
	ck_assert_int_eq(c.calls, N / 50);
	ck_assert_int_le(c.max_inflight, 4);
	halo_agg_close(&agg);
}
END_TEST

START_TEST(test_max_delay_collects_keys_across_ticks)
{
	struct sync_ctx c = {0};
	halo_agg agg;
	halo_agg_opts o = {.max_batch = 10, .max_delay_ns = 200000000ull};
	halo_fut *f[3];

	ck_assert_int_eq(halo_agg_init(&agg, &loop, &o, sync_batch, &c), 0);
	for (int i = 0; i < 3; i++) {
		f[i] = halo_agg_load(&agg, (uint64_t)i + 1);
		halo_loop_run_nowait(&loop);
	}
	ck_assert_int_eq(c.calls, 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(halo_fut_join(f[i]), 2 * (i + 1));
	ck_assert_int_eq(c.calls, 1);
	halo_agg_close(&agg);
}
END_TEST

static int failing_batch(halo_agg *agg, const uint64_t *keys, size_t n,
			 halo_agg_batch *b, void *arg)
{
	(void)agg;
	(void)keys;
	(void)n;
	(void)arg;
	halo_agg_batch_resolve(b, 1, 100, NULL);
	return -EPIPE;
}

START_TEST(test_failed_batch_fails_only_its_unanswered_keys)
{
	halo_agg agg;
	halo_fut *a, *b, *pending;

	ck_assert_int_eq(halo_agg_init(&agg, &loop, NULL, failing_batch, NULL),
			 0);
	a = halo_agg_load(&agg, 1);
	b = halo_agg_load(&agg, 2);
	ck_assert_int_eq(halo_fut_join(a), 100);
	ck_assert_int_eq(halo_fut_join(b), -EPIPE);
	pending = halo_agg_load(&agg, 3);
	halo_agg_close(&agg);
	ck_assert_int_eq(halo_fut_join(pending), -ECANCELED);
}
END_TEST

START_TEST(test_load_after_a_cancelled_load_of_the_same_key_gets_a_live_future)
{
	struct sync_ctx c = {0};
	halo_agg agg;
	halo_fut *a, *b;

	ck_assert_int_eq(halo_agg_init(&agg, &loop, NULL, sync_batch, &c), 0);
	a = halo_agg_load(&agg, 5);
	ck_assert_int_eq(halo_fut_cancel(a), 0);
	ck_assert_int_eq(halo_fut_join(a), -ECANCELED);
	/* The key is still queued; a new caller must not inherit the first
	 * caller's cancellation. */
	b = halo_agg_load(&agg, 5);
	ck_assert_ptr_nonnull(b);
	ck_assert(!halo_fut_is_done(b));
	ck_assert_int_eq(halo_fut_join(b), 10);
	ck_assert_int_eq(c.calls, 1);
	halo_agg_close(&agg);
}
END_TEST

#ifdef HALO_FAULT
/* The entry slots grow, the new table cannot be had: the load fails and
 * the aggregator stays as it was, so later loads of new keys still find a
 * free table slot instead of probing a full table forever. */
START_TEST(test_load_that_cannot_grow_the_table_fails_and_later_loads_work)
{
	enum { FIRST = 256, MORE = 600 }; /* 256: the initial entry slots */
	static halo_fut *f[FIRST + MORE];
	struct sync_ctx c = {0};
	halo_agg agg;

	ck_assert_int_eq(halo_agg_init(&agg, &loop, NULL, sync_batch, &c), 0);
	for (int i = 0; i < FIRST; i++)
		ck_assert_ptr_nonnull(f[i] = halo_agg_load(&agg, (uint64_t)i));
	/* Growing takes two heap allocations, entries and table: fail each. */
	for (int nth = 1; nth <= 2; nth++) {
		halo__fault_arm(HALO_FAULT_HEAP, (uint64_t)nth, false);
		ck_assert_ptr_null(halo_agg_load(&agg, FIRST));
		ck_assert_uint_eq(halo__fault_failed(), (uint64_t)nth);
	}
	for (int i = FIRST; i < FIRST + MORE; i++)
		ck_assert_ptr_nonnull(f[i] = halo_agg_load(&agg, (uint64_t)i));
	for (int i = 0; i < FIRST + MORE; i++) {
		int64_t want = i % 100 == 13   ? -EIO
			       : i % 100 == 42 ? -ENOENT
					       : 2 * i;

		ck_assert_int_eq(halo_fut_join(f[i]), want);
	}
	halo_agg_close(&agg);
}
END_TEST

/* No memory for a batch: its keys fail with -ENOMEM in the same tick, and
 * the tick returns; nothing retries in a loop while memory stays short. */
START_TEST(test_batch_without_memory_fails_its_keys_and_the_tick_returns)
{
	struct sync_ctx c = {0};
	halo_agg agg;
	halo_agg_opts o = {.max_batch = 2};
	halo_fut *f[5];

	ck_assert_int_eq(halo_agg_init(&agg, &loop, &o, sync_batch, &c), 0);
	for (int i = 0; i < 5; i++)
		f[i] = halo_agg_load(&agg, (uint64_t)i + 1);
	halo__fault_arm(HALO_FAULT_HEAP, 1, true);
	ck_assert_int_ge(halo_loop_run_once(&loop), 0);
	halo__fault_disarm();
	ck_assert_int_eq(c.calls, 0);
	for (int i = 0; i < 5; i++) {
		ck_assert_int_eq(halo_fut_status(f[i]), HALO_FUT_ERROR);
		ck_assert_int_eq(halo_fut_join(f[i]), -ENOMEM);
	}
	ck_assert_int_eq(halo_fut_join(halo_agg_load(&agg, 3)), 6);
	ck_assert_int_eq(c.calls, 1);
	halo_agg_close(&agg);
}
END_TEST

/* max_delay waits for a batch to fill, woken by a timer; without memory
 * for the timer the partial batch goes now instead of waiting for good. */
START_TEST(test_delay_without_memory_for_its_timer_sends_the_batch_now)
{
	struct sync_ctx c = {0};
	halo_agg agg;
	halo_agg_opts o = {.max_batch = 10, .max_delay_ns = 200000000ull};
	halo_fut *f;
	uint64_t t0 = halo_now_ns();

	ck_assert_int_eq(halo_agg_init(&agg, &loop, &o, sync_batch, &c), 0);
	f = halo_agg_load(&agg, 4);
	halo__fault_arm(HALO_FAULT_SLOT, 1, false); /* the delay's timer */
	ck_assert_int_eq(halo_fut_join(f), 8);
	ck_assert_uint_eq(halo__fault_failed(), 1);
	ck_assert_uint_lt(halo_now_ns() - t0, 100000000ull);
	halo_agg_close(&agg);
}
END_TEST
#endif

Suite *aggregate_suite(void)
{
	Suite *s = suite_create("aggregate");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(30));
	tcase_add_test(tc,
		       test_ten_thousand_loads_in_one_tick_make_one_call_per_max_batch);
	tcase_add_test(tc,
		       test_cache_serves_hits_until_invalidated_and_never_caches_errors);
	tcase_add_test(tc,
		       test_async_batches_respect_max_inflight_and_share_the_enter);
	tcase_add_test(tc, test_max_delay_collects_keys_across_ticks);
	tcase_add_test(tc, test_failed_batch_fails_only_its_unanswered_keys);
	tcase_add_test(
		tc,
		test_load_after_a_cancelled_load_of_the_same_key_gets_a_live_future);
	suite_add_tcase(s, tc);
#ifdef HALO_FAULT
	tc = tcase_create("enomem");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_checked_fixture(tc, tu_fault_reset, tu_fault_reset);
	tcase_set_timeout(tc, tu_timeout(5));
	tcase_add_test(
	    tc,
	    test_load_that_cannot_grow_the_table_fails_and_later_loads_work);
	tcase_add_test(
	    tc, test_batch_without_memory_fails_its_keys_and_the_tick_returns);
	tcase_add_test(
	    tc, test_delay_without_memory_for_its_timer_sends_the_batch_now);
	suite_add_tcase(s, tc);
#endif
	return s;
}
