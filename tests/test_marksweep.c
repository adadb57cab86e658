/* Marker and sweeper: dedup, batches, budget, re-marks while sweeping, holds,
 * and readiness from multishot polls on real sockets. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/util.h"

TU_LOOP_FIXTURE(loop)

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


#define NPAIRS 1000

struct pairs {
	halo_marksweep ms;
	int rd[NPAIRS], wr[NPAIRS];
	int idx_of_fd[NPAIRS * 4 + 64];
	char buf[NPAIRS];
	int swept[NPAIRS], reads[NPAIRS], bad;
	int reads_left;
	uint64_t enters_at_pass, sqes_at_pass;
	unsigned submitted_in_pass;
	int passes_checked;
};

struct read_arg {
	struct pairs *p;
	int i;
};

static void read_done(halo_fut *f, void *arg)
{
	struct read_arg *ra = arg;
	struct pairs *p = ra->p;
	int i = ra->i;

	if (halo_fut_result(f) != 1)
		p->bad++;
	halo_fut_release(f);
	p->reads[i]++;
	p->reads_left--;
	ck_assert_int_eq(halo_marksweep_release(&p->ms, (uint32_t)p->rd[i]),
			 0);
	free(ra);
}

static int pairs_sweep(halo_marksweep *ms, const uint32_t *ids, size_t n,
		       void *arg)
{
	struct pairs *p = arg;
	halo_stats st;

	halo_loop_stats(&loop, &st);
	p->enters_at_pass = st.enters;
	p->sqes_at_pass = st.sqes_submitted;
	for (size_t k = 0; k < n; k++) {
		int i = p->idx_of_fd[ids[k]];
		struct read_arg *ra = malloc(sizeof(*ra));
		halo_fut *f = halo_read(&loop, p->rd[i], &p->buf[i], 1, -1);

		ck_assert_ptr_nonnull(f);
		p->swept[i]++;
		ra->p = p;
		ra->i = i;
		ck_assert_int_eq(halo_fut_on_done(f, read_done, ra), 0);
		ck_assert_int_eq(halo_marksweep_hold(ms, ids[k]), 0);
		p->submitted_in_pass++;
	}
	return 0;
}

/* Run ticks until every write was read; check after each tick that what
 * the sweeper submitted left in that tick's single enter. */
static void drain_pairs(struct pairs *p)
{
	for (int t = 0; t < 1000000 && p->reads_left > 0; t++) {
		halo_stats st;

		/* nowait: the polls stay in flight, so a blocking tick after
		 * the last read would wait forever. */
		p->submitted_in_pass = 0;
		ck_assert_int_ge(halo_loop_run_nowait(&loop), 0);
		if (!p->submitted_in_pass)
			continue;
		halo_loop_stats(&loop, &st);
		ck_assert_uint_eq(st.enters, p->enters_at_pass + 1);
		ck_assert_uint_ge(st.sqes_submitted - p->sqes_at_pass,
				  p->submitted_in_pass);
		p->passes_checked++;
	}
	ck_assert_int_eq(p->reads_left, 0);
}

START_TEST(test_thousand_socketpairs_each_swept_and_read_once_per_write)
{
	static struct pairs p;
	halo_marksweep_opts o = {.batch = 64, .budget = 256};
	struct rlimit rl;
	int fds_before;

	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < 4 * NPAIRS + 64 && rl.rlim_max >= 4 * NPAIRS + 64) {
		rl.rlim_cur = 4 * NPAIRS + 64;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	memset(&p, 0, sizeof(p));
	fds_before = tu_count_fds();
	o.capacity = NPAIRS * 4 + 64;
	ck_assert_int_eq(halo_marksweep_init(&p.ms, &loop, &o, pairs_sweep, &p),
			 0);
	for (int i = 0; i < NPAIRS; i++) {
		int sv[2];

		ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
		ck_assert_int_lt(sv[0], (int)o.capacity);
		p.rd[i] = sv[0];
		p.wr[i] = sv[1];
		p.idx_of_fd[sv[0]] = i;
		ck_assert_int_eq(halo_marksweep_watch(&p.ms, sv[0], POLLIN), 0);
	}
	ck_assert_int_eq(halo_marksweep_watch(&p.ms, p.rd[0], POLLIN), -EBUSY);
	halo_loop_run_nowait(&loop); /* the polls are armed */
	for (int round = 1; round <= 2; round++) {
		for (int i = 0; i < NPAIRS; i++)
			ck_assert_int_eq(write(p.wr[i], "x", 1), 1);
		p.reads_left = NPAIRS;
		drain_pairs(&p);
		for (int i = 0; i < NPAIRS; i++) {
			ck_assert_int_eq(p.swept[i], round);
			ck_assert_int_eq(p.reads[i], round);
		}
	}
	ck_assert_int_eq(p.bad, 0);
	ck_assert_int_gt(p.passes_checked, 0);
	ck_assert_int_eq(halo_marksweep_unwatch(&p.ms, p.rd[0]), 0);
	ck_assert_int_eq(halo_marksweep_unwatch(&p.ms, p.rd[0]), -ENOENT);
	halo_marksweep_close(&p.ms);
	for (int i = 0; i < NPAIRS; i++) {
		close(p.rd[i]);
		close(p.wr[i]);
	}
	halo_loop_run_nowait(&loop);
	ck_assert_int_eq(tu_count_fds(), fds_before);
}
END_TEST

struct closer {
	halo_marksweep ms;
	int calls;
};

static int close_in_handler(halo_marksweep *ms, const uint32_t *ids,
			    size_t n, void *arg)
{
	struct closer *c = arg;

	(void)ids;
	(void)n;
	c->calls++;
	halo_marksweep_close(ms);
	return 0;
}

START_TEST(test_handler_may_close_the_sweeper)
{
	static struct closer c;
	halo_marksweep_opts o = {.capacity = 64, .batch = 2};

	memset(&c, 0, sizeof(c));
	ck_assert_int_eq(
		halo_marksweep_init(&c.ms, &loop, &o, close_in_handler, &c), 0);
	for (uint32_t id = 0; id < 8; id++)
		ck_assert_int_eq(halo_marksweep_mark(&c.ms, id), 0);
	halo_loop_run_nowait(&loop);
	halo_loop_run_nowait(&loop);
	ck_assert_int_eq(c.calls, 1);
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
	tcase_add_test(tc, test_handler_may_close_the_sweeper);
	tcase_add_test(tc,
		       test_thousand_socketpairs_each_swept_and_read_once_per_write);
	suite_add_tcase(s, tc);
	return s;
}
