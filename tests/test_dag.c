/* Dependency DAGs: each node starts when its last dependency is done, a
 * failure skips only its dependents (or, fail-fast, cancels everything down
 * to the kernel), cycles and unknown names are refused before anything
 * starts, and concurrency follows a fixed cap or an adaptive limit. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/util.h"

TU_LOOP_PIPE_FIXTURE(loop, pipe_fds)

#define MS 1000000ull

/* Timing margins widen under the sanitizers, as tu_timeout() does. */
static uint64_t slack(uint64_t ns)
{
	return ns * (uint64_t)tu_timeout(1);
}

struct res {
	uint64_t ms; /* latency of the simulated load */
	int err;     /* fail with this after ms, if set */
	const char *msg;
	int started;	  /* attempts started */
	int fail_first;	  /* fail this many attempts at once first */
	size_t deps_n;	  /* what the last start saw */
	const char *dep0; /* value of deps[0] */
	char buf[8];
};

static halo_fut *load(halo_loop *l, void *arg, halo_fut *const *deps,
		      size_t deps_n)
{
	struct res *r = arg;

	r->started++;
	r->deps_n = deps_n;
	r->dep0 = deps_n ? halo_fut_value(deps[0]) : NULL;
	if (r->started <= r->fail_first)
		return halo_fut_failed(l, -EAGAIN, "busy, try again");
	if (r->err)
		return halo_fut_delayed_failed(l, r->ms * MS, r->err, r->msg);
	return halo_fut_delayed(l, r->ms * MS, (int64_t)r->ms, (void *)r->msg);
}

static halo_fut *read_pipe(halo_loop *l, void *arg, halo_fut *const *deps,
			   size_t deps_n)
{
	struct res *r = arg;

	(void)deps;
	(void)deps_n;
	r->started++;
	return halo_read(l, pipe_fds[0], r->buf, sizeof(r->buf), -1);
}

static halo_fut *no_memory(halo_loop *l, void *arg, halo_fut *const *deps,
			   size_t deps_n)
{
	(void)l;
	(void)deps;
	(void)deps_n;
	((struct res *)arg)->started++;
	return NULL;
}

/* The user story: a -> b, a -> c -> d, c -> e -> f. Each res's msg doubles
 * as the value its future resolves with: its own name. */
enum { A, B, C, D, E, F, STORY_N };

static void story(struct res *r, halo_dag_node *t)
{
	static const char *const names[STORY_N] = {"a", "b", "c",
						   "d", "e", "f"};
	static const char *const deps[STORY_N] = {NULL, "a", "a",
						  "c",	"c", "e"};
	/* b is the slow sibling: d and e must not wait for it. */
	static const uint64_t ms[STORY_N] = {30, 60, 30, 40, 35, 45};

	for (int i = 0; i < STORY_N; i++) {
		r[i] = (struct res){.ms = ms[i], .msg = names[i]};
		t[i] = (halo_dag_node){.name = names[i],
				       .fn = load,
				       .deps = deps[i],
				       .arg = &r[i]};
	}
}

START_TEST(test_dag_node_starts_the_moment_its_last_dependency_is_done)
{
	static const int parent[STORY_N] = {-1, A, A, C, C, E};
	struct res r[STORY_N];
	halo_dag_node t[STORY_N];
	halo_dag *d = halo_dag_new(&loop, NULL);
	const halo_dag_report *rep;
	size_t path[8];
	uint64_t crit, total;

	story(r, t);
	ck_assert_int_eq(halo_dag_add_table(d, t, STORY_N), 0);
	ck_assert_int_eq(halo_dag_run(d), 0);
	rep = halo_dag_get_report(d);
	ck_assert_int_eq(rep->status, 0);
	ck_assert_uint_eq(rep->ok_n, STORY_N);
	for (int i = 0; i < STORY_N; i++) {
		const halo_dag_node_report *n = &rep->nodes[i];

		ck_assert_int_eq(n->state, HALO_DAG_OK);
		ck_assert_int_eq(r[i].started, 1);
		ck_assert_int_eq(n->result, (int64_t)r[i].ms);
		ck_assert_ptr_eq(n->value, (void *)r[i].msg);
		if (parent[i] < 0)
			continue;
		/* Its dependency's value reached it, and it started within
		 * 2 ms of that dependency's end. */
		ck_assert_uint_eq(r[i].deps_n, 1);
		ck_assert_str_eq(r[i].dep0, rep->nodes[parent[i]].name);
		ck_assert_uint_ge(n->start_ns, rep->nodes[parent[i]].end_ns);
		ck_assert_uint_lt(n->start_ns - rep->nodes[parent[i]].end_ns,
				  slack(2 * MS));
	}
	/* Not level by level: d started before its slow uncle b was done. */
	ck_assert_uint_lt(rep->nodes[D].start_ns, rep->nodes[B].end_ns);

	ck_assert_uint_eq(halo_dag_critical_path(d, path, 8, &crit), 4);
	ck_assert_uint_eq(path[0], A);
	ck_assert_uint_eq(path[1], C);
	ck_assert_uint_eq(path[2], E);
	ck_assert_uint_eq(path[3], F);
	total = rep->end_ns - rep->start_ns;
	ck_assert_uint_ge(crit, (30 + 30 + 35 + 45) * MS);
	ck_assert_uint_ge(total, crit);
	ck_assert_msg(total - crit <= crit / 20 + slack(MS),
		      "total %llu ns, critical path %llu ns",
		      (unsigned long long)total, (unsigned long long)crit);
	ck_assert_int_eq(halo_dag_free(d), 0);
}
END_TEST

START_TEST(test_dag_failed_node_skips_its_dependents_and_others_go_on)
{
	struct res r[STORY_N];
	halo_dag_node t[STORY_N];
	halo_dag *d = halo_dag_new(&loop, NULL);
	const halo_dag_report *rep;
	char table[2048];
	halo_fut *run;

	story(r, t);
	r[C].err = -EIO;
	r[C].msg = "db down";
	ck_assert_int_eq(halo_dag_add_table(d, t, STORY_N), 0);
	run = halo_dag_start(d);
	ck_assert_int_eq(halo_fut_wait(run), -EIO);
	ck_assert_str_eq(halo_fut_error_msg(run), "c: db down");
	halo_fut_release(run);

	rep = halo_dag_get_report(d);
	ck_assert_int_eq(rep->status, -EIO);
	ck_assert_uint_eq(rep->failed, C);
	ck_assert_uint_eq(rep->ok_n, 2);
	ck_assert_uint_eq(rep->failed_n, 1);
	ck_assert_uint_eq(rep->skipped_n, 3);
	ck_assert_int_eq(rep->nodes[B].state, HALO_DAG_OK);
	ck_assert_int_eq(r[B].started, 1);
	ck_assert_int_eq(rep->nodes[C].state, HALO_DAG_FAILED);
	ck_assert_int_eq(rep->nodes[C].err, -EIO);
	ck_assert_str_eq(rep->nodes[C].msg, "db down");
	for (int i = D; i <= F; i++) {
		ck_assert_int_eq(r[i].started, 0);
		ck_assert_int_eq(rep->nodes[i].state, HALO_DAG_SKIPPED);
		ck_assert_str_eq(rep->nodes[i].cause, "c");
		ck_assert_uint_eq(rep->nodes[i].start_ns, 0);
	}
	ck_assert_int_gt(halo_dag_format(d, table, sizeof(table)), 0);
	ck_assert_ptr_nonnull(strstr(table, "db down"));
	ck_assert_ptr_nonnull(strstr(table, "skipped: 'c' failed"));
	ck_assert_int_eq(halo_dag_free(d), 0);
}
END_TEST

START_TEST(test_dag_logs_each_event_and_prints_the_table_to_a_file)
{
	struct res r[STORY_N];
	halo_dag_node t[STORY_N];
	char *logbuf = NULL, *table = NULL;
	size_t loglen = 0, tablelen = 0;
	int lines = 0;
	FILE *log = open_memstream(&logbuf, &loglen);
	FILE *out = open_memstream(&table, &tablelen);
	halo_dag_opts o = {.log = log};
	halo_dag *d = halo_dag_new(&loop, &o);

	story(r, t);
	r[C].err = -EIO;
	r[C].msg = "db down";
	ck_assert_int_eq(halo_dag_add_table(d, t, STORY_N), 0);
	ck_assert_int_eq(halo_dag_run(d), -EIO);
	ck_assert_int_eq(halo_dag_print(d, out), 0);
	fclose(log);
	fclose(out);
	/* a, b, c start and end; d, e, f are skipped: 9 lines. */
	ck_assert_ptr_nonnull(strstr(logbuf, " c failed -5 "));
	ck_assert_ptr_nonnull(strstr(logbuf, "db down"));
	ck_assert_ptr_nonnull(strstr(logbuf, " f skipped ('c' failed)"));
	for (char *p = logbuf; *p; p++)
		lines += *p == '\n';
	ck_assert_int_eq(lines, 9);
	ck_assert_ptr_nonnull(strstr(table, "critical path: a -> b"));
	ck_assert_ptr_nonnull(strstr(table, "run: status -5, 2 ok, 1 failed, "
					    "3 skipped, 0 cancelled"));
	free(logbuf);
	free(table);
	ck_assert_int_eq(halo_dag_free(d), 0);
}
END_TEST

START_TEST(test_dag_cycle_is_refused_naming_its_nodes)
{
	struct res r[4] = {{.ms = 1}, {.ms = 1}, {.ms = 1}, {.ms = 1}};
	halo_dag_node t[4] = {
	    {.name = "a", .fn = load, .deps = "c", .arg = &r[0]},
	    {.name = "b", .fn = load, .deps = "a", .arg = &r[1]},
	    {.name = "c", .fn = load, .deps = "b", .arg = &r[2]},
	    {.name = "x", .fn = load, .arg = &r[3]},
	};
	halo_dag *d = halo_dag_new(&loop, NULL);
	halo_fut *run;

	ck_assert_int_eq(halo_dag_add_table(d, t, 4), 0);
	ck_assert_int_eq(halo_dag_check(d), -ELOOP);
	ck_assert_str_eq(halo_dag_error(d), "cycle: a -> b -> c -> a");
	run = halo_dag_start(d);
	ck_assert_int_eq(halo_fut_join(run), -ELOOP);
	ck_assert_int_eq(halo_dag_run(d), -ELOOP);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(r[i].started, 0);
	ck_assert_int_eq(halo_dag_free(d), 0);
}
END_TEST

START_TEST(test_dag_unknown_dependency_is_refused)
{
	struct res r[2] = {{.ms = 1}, {.ms = 1}};
	halo_dag_node t[2] = {
	    {.name = "c", .fn = load, .arg = &r[0]},
	    {.name = "d", .fn = load, .deps = "c, nope", .arg = &r[1]},
	};
	halo_dag *d = halo_dag_new(&loop, NULL);

	ck_assert_int_eq(halo_dag_add_table(d, t, 2), 0);
	ck_assert_int_eq(halo_dag_run(d), -ENOENT);
	ck_assert_str_eq(halo_dag_error(d),
			 "node 'd' depends on unknown 'nope'");
	ck_assert_int_eq(r[0].started + r[1].started, 0);
	ck_assert_int_eq(halo_dag_free(d), 0);

	/* A name used twice is refused as well. */
	d = halo_dag_new(&loop, NULL);
	t[1].name = "c";
	t[1].deps = NULL;
	ck_assert_int_eq(halo_dag_add_table(d, t, 2), 0);
	ck_assert_int_eq(halo_dag_check(d), -EEXIST);
	ck_assert_ptr_nonnull(strstr(halo_dag_error(d), "'c'"));
	ck_assert_int_eq(halo_dag_free(d), 0);
}
END_TEST

START_TEST(test_dag_fail_fast_cancels_in_flight_io_down_to_the_kernel)
{
	struct res r[3] = {{0}, {.ms = 10, .err = -ECONNRESET}, {.ms = 1}};
	halo_dag_node t[3] = {
	    {.name = "stuck", .fn = read_pipe, .arg = &r[0]},
	    {.name = "bad", .fn = load, .arg = &r[1]},
	    {.name = "after", .fn = load, .deps = "stuck", .arg = &r[2]},
	};
	halo_dag_opts o = {.flags = HALO_DAG_FAIL_FAST};
	halo_dag *d = halo_dag_new(&loop, &o);
	const halo_dag_report *rep;
	uint64_t t0 = halo_now_ns();

	ck_assert_int_eq(halo_dag_add_table(d, t, 3), 0);
	ck_assert_int_eq(halo_dag_run(d), -ECONNRESET);
	ck_assert_uint_lt(halo_now_ns() - t0, slack(500 * MS));
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	rep = halo_dag_get_report(d);
	ck_assert_uint_eq(rep->failed, 1);
	ck_assert_int_eq(rep->nodes[0].state, HALO_DAG_CANCELLED);
	ck_assert_int_eq(rep->nodes[0].err, -ECANCELED);
	ck_assert_int_eq(rep->nodes[1].state, HALO_DAG_FAILED);
	ck_assert_int_eq(rep->nodes[2].state, HALO_DAG_CANCELLED);
	ck_assert_int_eq(r[2].started, 0);
	ck_assert_uint_eq(rep->cancelled_n, 2);
	ck_assert_int_eq(halo_dag_free(d), 0);
}
END_TEST

START_TEST(test_dag_run_timeout_cancels_what_runs_and_what_waits)
{
	struct res r[3] = {{.ms = 5}, {0}, {.ms = 1}};
	halo_dag_node t[3] = {
	    HALO_DAG_NODE("quick", load, NULL, &r[0]),
	    HALO_DAG_NODE("stuck", read_pipe, "quick", &r[1]),
	    HALO_DAG_NODE("never", load, "stuck", &r[2]),
	};
	halo_dag_opts o = {.timeout_ns = 30 * MS};
	halo_dag *d = halo_dag_new(&loop, &o);
	const halo_dag_report *rep;
	halo_fut *run;

	ck_assert_int_eq(halo_dag_add_table(d, t, 3), 0);
	run = halo_dag_start(d);
	ck_assert_int_eq(halo_dag_free(d), -EBUSY);
	ck_assert_int_eq(halo_dag_add(d, &t[0]), -EBUSY);
	ck_assert_int_eq(halo_fut_join(halo_dag_start(d)), -EBUSY);
	ck_assert_int_eq(halo_fut_wait(run), -ETIMEDOUT);
	ck_assert_str_eq(halo_fut_error_msg(run), "the run's timeout passed");
	halo_fut_release(run);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	rep = halo_dag_get_report(d);
	ck_assert_int_eq(rep->status, -ETIMEDOUT);
	ck_assert_int_eq(rep->nodes[0].state, HALO_DAG_OK);
	ck_assert_int_eq(rep->nodes[1].state, HALO_DAG_CANCELLED);
	ck_assert_int_eq(rep->nodes[1].err, -ETIMEDOUT);
	ck_assert_int_eq(rep->nodes[2].state, HALO_DAG_CANCELLED);
	ck_assert_int_eq(r[2].started, 0);
	ck_assert_uint_ge(rep->end_ns - rep->start_ns, 30 * MS);
	ck_assert_int_eq(halo_dag_free(d), 0);
}
END_TEST

static bool not_denied(int err, const char *msg, void *arg)
{
	(void)msg;
	(void)arg;
	return err != -EACCES;
}

START_TEST(test_dag_node_timeout_and_retry)
{
	struct res r[6] = {{.ms = 5, .fail_first = 2},
			   {0},
			   {0},
			   {0},
			   {.ms = 1, .err = -EACCES, .msg = "denied"},
			   {.ms = 1, .err = -EAGAIN}};
	halo_retry_policy thrice = {.max_attempts = 3,
				    .base_delay_ns = 2 * MS,
				    .jitter = HALO_JITTER_NONE};
	halo_retry_policy twice = {.max_attempts = 2,
				   .base_delay_ns = 1 * MS,
				   .attempt_timeout_ns = 10 * MS};
	halo_retry_policy picky = {.max_attempts = 5, .retry_if = not_denied};
	halo_retry_policy short_budget = {.max_attempts = 10,
					  .base_delay_ns = 20 * MS,
					  .jitter = HALO_JITTER_NONE,
					  .timeout_ns = 50 * MS};
	halo_dag_node t[6] = {
	    {.name = "flaky", .fn = load, .arg = &r[0], .retry = &thrice},
	    {.name = "slow",
	     .fn = read_pipe,
	     .arg = &r[1],
	     .timeout_ns = 20 * MS},
	    {.name = "slow_retried",
	     .fn = read_pipe,
	     .arg = &r[2],
	     .retry = &twice},
	    {.name = "oom", .fn = no_memory, .arg = &r[3], .retry = &picky},
	    {.name = "denied", .fn = load, .arg = &r[4], .retry = &picky},
	    {.name = "budget",
	     .fn = load,
	     .arg = &r[5],
	     .retry = &short_budget},
	};
	halo_dag *d = halo_dag_new(&loop, NULL);
	const halo_dag_report *rep;

	ck_assert_int_eq(halo_dag_add_table(d, t, 6), 0);
	ck_assert_int_eq(halo_dag_run(d), -ENOMEM); /* the first to fail */
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	rep = halo_dag_get_report(d);
	ck_assert_int_eq(rep->nodes[0].state, HALO_DAG_OK);
	ck_assert_uint_eq(rep->nodes[0].attempts, 3);
	ck_assert_int_eq(r[0].started, 3);
	/* 2 ms, then 4 ms of backoff (no jitter) */
	ck_assert_uint_ge(rep->nodes[0].end_ns - rep->nodes[0].start_ns,
			  (2 + 4 + 5) * MS);
	ck_assert_int_eq(rep->nodes[1].state, HALO_DAG_FAILED);
	ck_assert_int_eq(rep->nodes[1].err, -ETIMEDOUT);
	ck_assert_uint_ge(rep->nodes[1].end_ns - rep->nodes[1].start_ns,
			  20 * MS);
	/* The policy's attempt timeout applies, and a timeout is retried. */
	ck_assert_int_eq(rep->nodes[2].err, -ETIMEDOUT);
	ck_assert_uint_eq(rep->nodes[2].attempts, 2);
	/* NULL from the start function: -ENOMEM, never retried. */
	ck_assert_uint_eq(rep->failed, 3);
	ck_assert_int_eq(rep->nodes[3].state, HALO_DAG_FAILED);
	ck_assert_int_eq(rep->nodes[3].err, -ENOMEM);
	ck_assert_uint_eq(rep->nodes[3].attempts, 1);
	/* retry_if refused -EACCES: one attempt, its message kept. */
	ck_assert_int_eq(rep->nodes[4].err, -EACCES);
	ck_assert_uint_eq(rep->nodes[4].attempts, 1);
	ck_assert_str_eq(rep->nodes[4].msg, "denied");
	/* Delays of 20, 40 ms against a 50 ms budget: the second would end
	 * past it, so the node fails after 2 attempts with -ETIMEDOUT. */
	ck_assert_int_eq(rep->nodes[5].err, -ETIMEDOUT);
	ck_assert_uint_eq(rep->nodes[5].attempts, 2);
	ck_assert_uint_lt(rep->nodes[5].end_ns - rep->nodes[5].start_ns,
			  50 * MS);
	ck_assert_int_eq(halo_dag_free(d), 0);
}
END_TEST

static int64_t run_in_fiber(halo_loop *l, void *arg)
{
	(void)l;
	return halo_dag_run(arg);
}

START_TEST(test_dag_runs_in_a_fiber_and_a_cancelled_fiber_stops_it)
{
	struct res r[STORY_N], stuck = {0};
	halo_dag_node t[STORY_N];
	halo_dag *d = halo_dag_new(&loop, NULL);
	halo_fut *fb;

	story(r, t);
	ck_assert_int_eq(halo_dag_add_table(d, t, STORY_N), 0);
	ck_assert_int_eq(halo_fut_join(halo_spawn(&loop, run_in_fiber, d)), 0);
	ck_assert_uint_eq(halo_dag_get_report(d)->ok_n, STORY_N);

	/* The same DAG again, with a node that never ends: cancelling the
	 * fiber cancels the run, and the kernel let go when it returns. */
	ck_assert_int_ge(halo_dag_add(d, &(halo_dag_node){.name = "stuck",
							  .fn = read_pipe,
							  .deps = "f",
							  .arg = &stuck}),
			 0);
	fb = halo_spawn(&loop, run_in_fiber, d);
	halo_sleep(&loop, 200 * MS);
	ck_assert_int_eq(stuck.started, 1);
	halo_fut_cancel(fb);
	ck_assert_int_eq(halo_fut_join(fb), -ECANCELED);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	ck_assert_int_eq(halo_dag_get_report(d)->status, -ECANCELED);
	ck_assert_int_eq(halo_dag_get_report(d)->nodes[STORY_N].state,
			 HALO_DAG_CANCELLED);
	ck_assert_int_eq(halo_dag_free(d), 0);
}
END_TEST

struct cb_run {
	halo_dag *d;
	int r;
};

static void run_from_callback(void *arg)
{
	struct cb_run *c = arg;

	c->r = halo_dag_run(c->d);
}

START_TEST(test_dag_run_from_a_callback_is_edeadlk_and_leaves_nothing)
{
	struct res r[2] = {{.ms = 50}, {.ms = 1}};
	halo_dag_node t[2] = {
	    HALO_DAG_NODE("slow", load, NULL, &r[0]),
	    HALO_DAG_NODE("next", load, "slow", &r[1]),
	};
	struct cb_run c = {.d = halo_dag_new(&loop, NULL), .r = 1};

	ck_assert_int_eq(halo_dag_add_table(c.d, t, 2), 0);
	ck_assert_int_eq(halo_loop_post(&loop, run_from_callback, &c), 0);
	ck_assert_int_eq(halo_sleep(&loop, 5 * MS), 0);
	ck_assert_int_eq(c.r, -EDEADLK);
	ck_assert_int_eq(halo_dag_get_report(c.d)->status, -ECANCELED);
	ck_assert_int_eq(r[1].started, 0);
	ck_assert_int_eq(halo_dag_free(c.d), 0);
}
END_TEST

START_TEST(test_dag_future_can_be_raced_and_loses_cleanly)
{
	struct res r[2] = {{0}, {.ms = 1000}};
	halo_dag_node t[2] = {
	    {.name = "stuck", .fn = read_pipe, .arg = &r[0]},
	    {.name = "slow", .fn = load, .arg = &r[1]},
	};
	halo_dag *d = halo_dag_new(&loop, NULL);
	halo_fut *both[2];
	size_t winner;
	halo_race_opts ro = {.winner = &winner, .adopt = true};

	ck_assert_int_eq(halo_dag_add_table(d, t, 2), 0);
	both[0] = halo_dag_start(d);
	both[1] = halo_timer_after(&loop, 20 * MS);
	ck_assert_int_eq(halo_fut_join(halo_race_with(&loop, both, 2, &ro)), 0);
	ck_assert_uint_eq(winner, 1);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	ck_assert_int_eq(halo_dag_get_report(d)->status, -ECANCELED);
	ck_assert_uint_eq(halo_dag_get_report(d)->cancelled_n, 2);
	ck_assert_int_eq(halo_dag_free(d), 0);
}
END_TEST

/* Running nodes counted from the event hook. */
struct gauge {
	int now, peak, events;
};

static void count_running(const halo_dag *d, size_t node,
			  const halo_dag_node_report *r, void *arg)
{
	struct gauge *g = arg;

	(void)d;
	(void)node;
	g->events++;
	if (r->state == HALO_DAG_RUNNING && r->attempts == 1)
		g->now++;
	else if (r->state != HALO_DAG_RUNNING && r->start_ns)
		g->now--;
	if (g->now > g->peak)
		g->peak = g->now;
}

START_TEST(test_dag_fixed_cap_bounds_the_nodes_running)
{
	struct res r[10];
	struct gauge g = {0};
	halo_dag_opts o = {
	    .concurrency = 2, .on_event = count_running, .event_arg = &g};
	halo_dag *d = halo_dag_new(&loop, &o);
	char name[10][4];

	for (int i = 0; i < 10; i++) {
		r[i] = (struct res){.ms = 10};
		snprintf(name[i], sizeof(name[i]), "n%d", i);
		ck_assert_int_eq(
		    halo_dag_add(d, &(halo_dag_node){.name = name[i],
						     .fn = load,
						     .arg = &r[i]}),
		    i);
	}
	ck_assert_int_eq(halo_dag_run(d), 0);
	ck_assert_int_eq(g.peak, 2);
	ck_assert_int_eq(g.now, 0);
	ck_assert_int_eq(g.events, 20);
	ck_assert_uint_ge(halo_dag_get_report(d)->end_ns -
			      halo_dag_get_report(d)->start_ns,
			  50 * MS);
	ck_assert_int_eq(halo_dag_free(d), 0);
}
END_TEST

/* A backend whose latency grows with the requests it has in flight: base
 * latency x (1 + inflight / DOUBLE_AT), twice the base at DOUBLE_AT. */
#define DOUBLE_AT 8
#define BASE_MS	  4
#define CALLS	  400

struct backend {
	halo_adaptive *lim;
	uint32_t peak_limit;
	int calls, late_calls; /* late: the second half of the run */
	uint64_t late_limit_sum;
};

static halo_fut *call_backend(halo_loop *l, void *arg, halo_fut *const *deps,
			      size_t deps_n)
{
	struct backend *b = arg;
	uint32_t inflight = halo_adaptive_inflight(b->lim);
	uint64_t lat = BASE_MS * MS * (DOUBLE_AT + inflight) / DOUBLE_AT;

	(void)deps;
	(void)deps_n;
	if (halo_adaptive_limit(b->lim) > b->peak_limit)
		b->peak_limit = halo_adaptive_limit(b->lim);
	if (++b->calls > CALLS / 2) {
		b->late_calls++;
		b->late_limit_sum += halo_adaptive_limit(b->lim);
	}
	return halo_fut_delayed(l, lat, 0, NULL);
}

START_TEST(test_dag_adaptive_limit_settles_below_where_latency_doubles)
{
	halo_adaptive lim;
	halo_adaptive_opts ao = {.initial = 1};
	struct backend b = {.lim = &lim};
	halo_dag_opts o = {.limiter = &lim, .max_nodes = CALLS};
	halo_dag *d = halo_dag_new(&loop, &o);
	static char names[CALLS][8];

	ck_assert_int_eq(halo_adaptive_init(&lim, &ao), 0);
	for (int i = 0; i < CALLS; i++) {
		snprintf(names[i], sizeof(names[i]), "r%d", i);
		ck_assert_int_eq(
		    halo_dag_add(d, &(halo_dag_node){.name = names[i],
						     .fn = call_backend,
						     .arg = &b}),
		    i);
	}
	ck_assert_int_eq(halo_dag_add(d, &(halo_dag_node){.name = "one_more",
							  .fn = call_backend,
							  .arg = &b}),
			 -ENOSPC);
	ck_assert_int_eq(halo_dag_run(d), 0);
	/* It went parallel while latency held, and settled (the mean limit
	 * of the run's second half, and the last) below the concurrency
	 * where the backend's latency doubles. */
	ck_assert_uint_ge(b.peak_limit, 3);
	ck_assert_uint_lt(halo_adaptive_limit(&lim), DOUBLE_AT);
	ck_assert_uint_lt(b.late_limit_sum,
			  (uint64_t)(DOUBLE_AT - 1) * (uint64_t)b.late_calls);
	/* A window may probe the doubling point, never past it. */
	ck_assert_uint_le(b.peak_limit, DOUBLE_AT);
	ck_assert_uint_eq(halo_adaptive_inflight(&lim), 0);
	ck_assert_uint_gt(halo_adaptive_baseline(&lim), BASE_MS * MS);
	ck_assert_int_eq(halo_dag_free(d), 0);
}
END_TEST

START_TEST(test_dag_runs_share_one_limiter)
{
	halo_adaptive lim;
	halo_adaptive_opts ao = {.initial = 3, .min = 3, .max = 3};
	struct gauge g = {0};
	halo_dag_opts o = {
	    .limiter = &lim, .on_event = count_running, .event_arg = &g};
	halo_dag *d[2] = {halo_dag_new(&loop, &o), halo_dag_new(&loop, &o)};
	struct res r[2][6];
	halo_fut *runs[2];
	static const char *const names[6] = {"a", "b", "c", "d", "e", "f"};

	ck_assert_int_eq(halo_adaptive_init(&lim, &ao), 0);
	for (int k = 0; k < 2; k++)
		for (int i = 0; i < 6; i++) {
			r[k][i] = (struct res){.ms = 5};
			halo_dag_add(d[k], &(halo_dag_node){.name = names[i],
							    .fn = load,
							    .arg = &r[k][i]});
		}
	runs[0] = halo_dag_start(d[0]);
	runs[1] = halo_dag_start(d[1]);
	ck_assert_int_eq(halo_fut_join(runs[0]), 6);
	ck_assert_int_eq(halo_fut_join(runs[1]), 6);
	ck_assert_int_eq(g.peak, 3);
	ck_assert_int_eq(g.now, 0);
	ck_assert_uint_eq(halo_adaptive_inflight(&lim), 0);
	ck_assert_uint_eq(lim.waiting_n, 0);
	ck_assert_int_eq(halo_dag_free(d[0]), 0);
	ck_assert_int_eq(halo_dag_free(d[1]), 0);
}
END_TEST

/* A random DAG with random failures under a cap: whatever happens, a node
 * ran only after every dependency was OK, a skipped node has a dependency
 * that did not succeed and names a failed node, and all is accounted for. */
START_TEST(test_dag_random_graphs_keep_their_invariants)
{
	enum { N = 300 };
	static struct res r[N];
	static char names[N][8];
	static int dep[N][3], dn[N];
	halo_dag_opts o = {.concurrency = 5};
	unsigned seed = 7;

	for (int round = 0; round < 3; round++) {
		halo_dag *d = halo_dag_new(&loop, &o);
		const halo_dag_report *rep;
		size_t ok = 0, failed = 0, skipped = 0;

		for (int i = 0; i < N; i++) {
			r[i] =
			    (struct res){.ms = (uint64_t)(rand_r(&seed) % 3)};
			if (rand_r(&seed) % 20 == 0)
				r[i].err = -EIO;
			snprintf(names[i], sizeof(names[i]), "n%d", i);
			ck_assert_int_eq(
			    halo_dag_add(d, &(halo_dag_node)HALO_DAG_NODE(
						names[i], load, NULL, &r[i])),
			    i);
			dn[i] = i ? rand_r(&seed) % 4 : 0;
			for (int k = 0; k < dn[i]; k++) {
				dep[i][k] = rand_r(&seed) % i;
				ck_assert_int_eq(
				    halo_dag_depend(d, (size_t)i,
						    (size_t)dep[i][k]),
				    0);
			}
		}
		halo_dag_run(d);
		rep = halo_dag_get_report(d);
		for (int i = 0; i < N; i++) {
			const halo_dag_node_report *n = &rep->nodes[i];
			int not_ok = 0;

			for (int k = 0; k < dn[i]; k++) {
				const halo_dag_node_report *p =
				    &rep->nodes[dep[i][k]];

				not_ok += p->state != HALO_DAG_OK;
				if (n->start_ns)
					ck_assert_uint_ge(n->start_ns,
							  p->end_ns);
			}
			ck_assert_int_eq(r[i].started > 0, !not_ok);
			switch (n->state) {
			case HALO_DAG_OK:
				ok++;
				break;
			case HALO_DAG_FAILED:
				failed++;
				ck_assert_int_eq(n->err, -EIO);
				break;
			case HALO_DAG_SKIPPED:
				skipped++;
				ck_assert_int_eq(r[i].started, 0);
				ck_assert_int_eq(
				    rep->nodes[halo_dag_find(d, n->cause)]
					.state,
				    HALO_DAG_FAILED);
				break;
			default:
				ck_abort_msg("node %d ended %s", i,
					     halo_dag_state_name(n->state));
			}
		}
		ck_assert_uint_eq(ok, rep->ok_n);
		ck_assert_uint_eq(failed, rep->failed_n);
		ck_assert_uint_eq(skipped, rep->skipped_n);
		ck_assert_uint_eq(ok + failed + skipped, N);
		ck_assert_int_eq(rep->status, failed ? -EIO : 0);
		ck_assert_int_eq(halo_dag_free(d), 0);
	}
}
END_TEST

START_TEST(test_dag_by_index_and_the_printed_table)
{
	struct res r[3] = {{.ms = 2, .msg = "x"}, {.ms = 2}, {.ms = 2}};
	halo_dag *d = halo_dag_new(&loop, NULL);
	char small[16], table[1024];
	int need;

	ck_assert_int_eq(halo_dag_run(d), 0); /* empty: nothing to do */
	ck_assert_int_eq(halo_dag_add(d, &(halo_dag_node)HALO_DAG_NODE(
					     "x", load, NULL, &r[0])),
			 0);
	ck_assert_int_eq(halo_dag_add(d, &(halo_dag_node)HALO_DAG_NODE(
					     "y", load, NULL, &r[1])),
			 1);
	ck_assert_int_eq(halo_dag_add(d, &(halo_dag_node)HALO_DAG_NODE(
					     "z", load, "y", &r[2])),
			 2);
	ck_assert_int_eq(halo_dag_depend(d, 2, 0), 0);
	ck_assert_int_eq(halo_dag_depend(d, 2, 7), -EINVAL);
	ck_assert_int_eq(halo_dag_add(d, &(halo_dag_node){.name = "nofn"}),
			 -EINVAL);
	ck_assert_int_eq(halo_dag_run(d), 0);
	ck_assert_uint_eq(r[2].deps_n, 2); /* "y" by name, then x by index */
	ck_assert_int_eq(halo_dag_find(d, "z"), 2);
	ck_assert_int_eq(halo_dag_find(d, "w"), -ENOENT);

	need = halo_dag_format(d, table, sizeof(table));
	ck_assert_int_gt(need, 0);
	ck_assert_uint_lt((size_t)need, sizeof(table));
	ck_assert_ptr_nonnull(strstr(table, "critical path:"));
	ck_assert_int_eq(halo_dag_format(d, small, sizeof(small)), need);
	ck_assert_uint_eq(strlen(small), sizeof(small) - 1);
	ck_assert_int_eq(strncmp(small, table, sizeof(small) - 1), 0);

	/* It runs again with a fresh report. */
	ck_assert_int_eq(halo_dag_run(d), 0);
	ck_assert_int_eq(r[2].started, 2);
	ck_assert_uint_eq(halo_dag_get_report(d)->nodes[2].attempts, 1);
	ck_assert_int_eq(halo_dag_free(d), 0);
}
END_TEST

Suite *dag_suite(void)
{
	Suite *s = suite_create("dag");
	TCase *tc = tcase_create("dag");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(10));
	tcase_add_test(
	    tc, test_dag_node_starts_the_moment_its_last_dependency_is_done);
	tcase_add_test(
	    tc, test_dag_failed_node_skips_its_dependents_and_others_go_on);
	tcase_add_test(tc,
		       test_dag_logs_each_event_and_prints_the_table_to_a_file);
	tcase_add_test(tc, test_dag_cycle_is_refused_naming_its_nodes);
	tcase_add_test(tc, test_dag_unknown_dependency_is_refused);
	tcase_add_test(
	    tc, test_dag_fail_fast_cancels_in_flight_io_down_to_the_kernel);
	tcase_add_test(tc,
		       test_dag_run_timeout_cancels_what_runs_and_what_waits);
	tcase_add_test(tc, test_dag_node_timeout_and_retry);
	tcase_add_test(tc,
		       test_dag_runs_in_a_fiber_and_a_cancelled_fiber_stops_it);
	tcase_add_test(tc, test_dag_future_can_be_raced_and_loses_cleanly);
	tcase_add_test(
	    tc, test_dag_run_from_a_callback_is_edeadlk_and_leaves_nothing);
	tcase_add_test(tc, test_dag_fixed_cap_bounds_the_nodes_running);
	tcase_add_test(
	    tc, test_dag_adaptive_limit_settles_below_where_latency_doubles);
	tcase_add_test(tc, test_dag_runs_share_one_limiter);
	tcase_add_test(tc, test_dag_random_graphs_keep_their_invariants);
	tcase_add_test(tc, test_dag_by_index_and_the_printed_table);
	suite_add_tcase(s, tc);
	return s;
}
