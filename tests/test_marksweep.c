/* Marker and sweeper: dedup, batches, budget, re-marks while sweeping, holds,
 * and readiness from multishot polls on real sockets. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/util.h"

static halo_loop loop;

static void setup(void)
{
	tu_loop_init(&loop, NULL);
}

static void teardown(void)
{
	tu_loop_close(&loop);
}

#define NIDS 1000

struct churn {
	halo_marksweep ms;
	uint64_t seq;
	uint64_t last_mark[NIDS];
	uint64_t last_sweep[NIDS];
	int active[NIDS];
	uint32_t held[NIDS];
	uint32_t held_n;
	size_t max_pass;
	int overlap;
	int churning;
	unsigned rng;
};

static unsigned next_rand(unsigned *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 8;
}

static void release_held(void *arg)
{
	struct churn *c = arg;

	for (uint32_t i = 0; i < c->held_n; i++) {
		c->active[c->held[i]] = 0;
		ck_assert_int_eq(halo_marksweep_release(&c->ms, c->held[i]),
				 0);
	}
	c->held_n = 0;
}

static int churn_sweep(halo_marksweep *ms, const uint32_t *ids, size_t n,
		       void *arg)
{
	struct churn *c = arg;

	if (n > c->max_pass)
		c->max_pass = n;
	for (size_t i = 0; i < n; i++) {
		uint32_t id = ids[i];

		if (c->active[id])
			c->overlap++;
		c->last_sweep[id] = ++c->seq;
		/* Every 7th id is re-marked by its own handler, every 5th is
		 * held for "async work" finished on the next pass. */
		if (c->churning && id % 7 == 0) {
			c->last_mark[id] = ++c->seq;
			halo_marksweep_mark(ms, id);
		}
		if (id % 5 == 0 && c->held_n < NIDS) {
			c->active[id] = 1;
			ck_assert_int_eq(halo_marksweep_hold(ms, id), 0);
			if (c->held_n == 0)
				halo_loop_post(&loop, release_held, c);
			c->held[c->held_n++] = id;
		}
	}
	return 0;
}

START_TEST(test_million_marks_dedup_batches_and_lose_no_id)
{
	static struct churn c;
	halo_marksweep_opts o = {.capacity = NIDS, .batch = 1000,
				 .budget = 3000};
	halo_marksweep_stats st;
	int marked_once = 0;

	memset(&c, 0, sizeof(c));
	c.rng = 1;
	c.churning = 1;
	ck_assert_int_eq(halo_marksweep_init(&c.ms, &loop, &o, churn_sweep, &c),
			 0);
	for (int round = 0; round < 100; round++) {
		for (int i = 0; i < 10000; i++) {
			uint32_t id = next_rand(&c.rng) % NIDS;

			c.last_mark[id] = ++c.seq;
			ck_assert_int_eq(halo_marksweep_mark(&c.ms, id), 0);
		}
		halo_loop_run_nowait(&loop);
	}
	c.churning = 0;
	for (int i = 0; i < 100 && (halo_marksweep_pending(&c.ms) || c.held_n);
	     i++)
		halo_loop_run_nowait(&loop);
	ck_assert_int_eq(halo_marksweep_pending(&c.ms), 0);
	ck_assert_int_eq(c.held_n, 0);
	for (int id = 0; id < NIDS; id++) {
		if (!c.last_mark[id])
			continue;
		marked_once++;
		ck_assert_msg(c.last_sweep[id] > c.last_mark[id],
			      "id %d marked at %llu, last swept at %llu", id,
			      (unsigned long long)c.last_mark[id],
			      (unsigned long long)c.last_sweep[id]);
	}
	ck_assert_int_eq(marked_once, NIDS);
	ck_assert_int_eq(c.overlap, 0);
	ck_assert_uint_le(c.max_pass, 1000);
	halo_marksweep_stats_get(&c.ms, &st);
	ck_assert_uint_ge(st.marks, 1000000);
	ck_assert_uint_le(st.max_pass, 1000);
	/* Dedup: far fewer ids swept than marks made. */
	ck_assert_uint_lt(st.swept, st.marks / 3);
	ck_assert_uint_gt(st.dedups, 0);
	halo_marksweep_close(&c.ms);
}
END_TEST

static int count_sweep(halo_marksweep *ms, const uint32_t *ids, size_t n,
		       void *arg)
{
	size_t *total = arg;

	(void)ms;
	(void)ids;
	*total += n;
	return 0;
}

START_TEST(test_budget_bounds_ids_per_tick)
{
	halo_marksweep ms;
	halo_marksweep_opts o = {.capacity = 100, .batch = 8, .budget = 20};
	size_t total = 0;

	ck_assert_int_eq(halo_marksweep_init(&ms, &loop, &o, count_sweep,
					     &total),
			 0);
	for (uint32_t id = 0; id < 100; id++)
		halo_marksweep_mark(&ms, id);
	ck_assert_int_eq(halo_marksweep_mark(&ms, 100), -EINVAL);
	ck_assert(halo_marksweep_is_marked(&ms, 5));
	ck_assert_int_eq(halo_loop_run_nowait(&loop), 1);
	ck_assert_uint_eq(total, 20);
	for (int i = 0; i < 4; i++)
		halo_loop_run_nowait(&loop);
	ck_assert_uint_eq(total, 100);
	ck_assert(!halo_marksweep_is_marked(&ms, 5));
	ck_assert_int_eq(halo_marksweep_hold(&ms, 5), -EINVAL);
	halo_marksweep_close(&ms);
}
END_TEST

Suite *marksweep_suite(void)
{
	Suite *s = suite_create("marksweep");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(30));
	tcase_add_test(tc, test_million_marks_dedup_batches_and_lose_no_id);
	tcase_add_test(tc, test_budget_bounds_ids_per_tick);
	suite_add_tcase(s, tc);
	return s;
}
