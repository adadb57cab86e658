/* The two-loop build: overlap, blocking start halves named, failures and
 * deadlines per unit. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "tests/util.h"

TU_LOOP_PIPE_FIXTURE(loop, pipe_fds)

#define MS 1000000ull

struct feat {
	uint64_t ms;
	int presented;
	char buf[8];
};

static halo_fut *start_timer(halo_loop *l, void *arg)
{
	struct feat *ft = arg;

	return halo_timer_after(l, ft->ms * MS);
}

static halo_fut *start_blocking(halo_loop *l, void *arg)
{
	struct feat *ft = arg;

	halo_sleep(l, 1 * MS); /* the mistake halo names */
	return halo_timer_after(l, ft->ms * MS);
}

/* The mistake halo could not see before it timed start halves: the thread
 * sleeps, no halo future is waited on. */
static halo_fut *start_sleeping(halo_loop *l, void *arg)
{
	struct feat *ft = arg;

	usleep(60 * 1000);
	return halo_timer_after(l, ft->ms * MS);
}

static halo_fut *start_failing(halo_loop *l, void *arg)
{
	halo_fut *p = halo_fut_new(l);

	(void)arg;
	halo_fut_fail(p, -ENOENT, "no such feature");
	return p;
}

static halo_fut *start_denied(halo_loop *l, void *arg)
{
	(void)arg;
	return halo_fut_failed(l, -EACCES, "token expired for tenant 42");
}

static halo_fut *start_out_of_memory(halo_loop *l, void *arg)
{
	(void)l;
	(void)arg;
	return NULL;
}

static halo_fut *start_late_failure(halo_loop *l, void *arg)
{
	struct feat *ft = arg;

	return halo_fut_delayed_failed(l, ft->ms * MS, -ECONNRESET,
				       "upstream reset");
}

static halo_fut *start_pipe_read(halo_loop *l, void *arg)
{
	struct feat *ft = arg;

	return halo_read(l, pipe_fds[0], ft->buf, sizeof(ft->buf), -1);
}

static int present(halo_loop *l, void *arg, halo_fut *f)
{
	struct feat *ft = arg;

	(void)l;
	ft->presented++;
	return (int)halo_fut_result(f);
}

START_TEST(test_build_takes_the_slowest_unit_not_the_sum)
{
	struct feat ft[3] = {{.ms = 50}, {.ms = 80}, {.ms = 120}};
	halo_build_unit u[3] = {
		{"user", start_timer, present, &ft[0], 0, 0, 0},
		{"ads", start_timer, present, &ft[1], 0, 0, 0},
		{"feed", start_timer, present, &ft[2], 0, 0, 0},
	};
	uint64_t t0 = halo_now_ns();
	halo_build_report rep = halo_build(&loop, u, 3, NULL);

	ck_assert_uint_lt(halo_now_ns() - t0, 200 * MS);
	ck_assert_int_eq(rep.status, 0);
	ck_assert_uint_eq(rep.blocked_n, 0);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(ft[i].presented, 1);
		ck_assert(u[i].presented);
	}
}
END_TEST

START_TEST(test_build_names_a_blocking_start_half)
{
	struct feat ft[3] = {{.ms = 5}, {.ms = 5}, {.ms = 5}};
	halo_build_unit u[3] = {
		{"profile", start_timer, present, &ft[0], 0, 0, 0},
		{"recommendations", start_blocking, present, &ft[1], 0, 0, 0},
		{"cart", start_timer, present, &ft[2], 0, 0, 0},
	};
	halo_build_report rep = halo_build(&loop, u, 3, NULL);

	ck_assert_int_eq(rep.status, 0);
	ck_assert_uint_eq(rep.blocked_n, 1);
	ck_assert_str_eq(rep.blocked, "recommendations");
	ck_assert(u[1].blocked && !u[0].blocked && !u[2].blocked);
	ck_assert_int_eq(ft[1].presented, 1);
}
END_TEST

START_TEST(test_build_names_a_start_half_that_sleeps)
{
	struct feat ft[3] = {{.ms = 5}, {.ms = 5}, {.ms = 5}};
	halo_build_unit u[3] = {
		{"profile", start_timer, present, &ft[0], 0, 0, 0},
		{"pricing", start_sleeping, present, &ft[1], 0, 0, 0},
		{"cart", start_timer, present, &ft[2], 0, 0, 0},
	};
	/* 40 ms against the 60 ms sleep: a start half that loses its CPU
	 * for more than the default 10 ms on a loaded machine would be
	 * named too. */
	halo_build_opts o = {.stall_ns = 40 * MS};
	halo_build_report rep = halo_build(&loop, u, 3, &o);

	ck_assert_int_eq(rep.status, 0);
	ck_assert_uint_eq(rep.stalled_n, 1);
	ck_assert_str_eq(rep.stalled, "pricing");
	ck_assert_uint_eq(rep.blocked_n, 1);
	ck_assert_str_eq(rep.blocked, "pricing");
	ck_assert(u[1].blocked && !u[0].blocked && !u[2].blocked);
	ck_assert_uint_ge(rep.stalled_max_ns, 60 * MS);
	ck_assert_int_eq(ft[1].presented, 1);
}
END_TEST

struct stall_seen {
	int n;
	int kind;
	char label[64];
};

static void on_stall(halo_loop *l, const halo_stall *s, void *arg)
{
	struct stall_seen *seen = arg;

	(void)l;
	seen->n++;
	seen->kind = s->kind;
	snprintf(seen->label, sizeof(seen->label), "%s",
		 s->label ? s->label : "");
}

/* With the loop's stall detector on, its threshold applies and its hook
 * hears of the unit by name. */
START_TEST(test_build_sleeping_start_half_reaches_the_stall_hook)
{
	struct stall_seen seen = {0};
	halo_loop_opts o = {.stall_ns = 20 * MS, .stall_fn = on_stall,
			    .stall_arg = &seen};
	halo_loop l;
	struct feat ft[2] = {{.ms = 5}, {.ms = 5}};
	halo_build_unit u[2] = {
		{"profile", start_timer, present, &ft[0], 0, 0, 0},
		{"pricing", start_sleeping, present, &ft[1], 0, 0, 0},
	};
	halo_build_report rep;
	halo_stats st;

	tu_loop_init(&l, &o);
	rep = halo_build(&l, u, 2, NULL);
	ck_assert_int_eq(rep.status, 0);
	ck_assert_uint_eq(rep.stalled_n, 1);
	ck_assert_int_eq(seen.n, 1);
	ck_assert_int_eq(seen.kind, HALO_STALL_SECTION);
	ck_assert_str_eq(seen.label, "build unit pricing");
	halo_loop_stats(&l, &st);
	ck_assert_uint_eq(st.stalls, 1);
	tu_loop_close(&l);
}
END_TEST

START_TEST(test_build_failed_unit_does_not_stop_the_others)
{
	struct feat ft[3] = {{.ms = 10}, {0}, {.ms = 20}};
	halo_build_unit u[3] = {
		{"a", start_timer, present, &ft[0], 0, 0, 0},
		{"b", start_failing, present, &ft[1], 0, 0, 0},
		{"c", start_timer, present, &ft[2], 0, 0, 0},
	};
	halo_build_report rep = halo_build(&loop, u, 3, NULL);

	ck_assert_int_eq(rep.status, -ENOENT);
	ck_assert_uint_eq(rep.failed_n, 1);
	ck_assert_int_eq(u[1].err, -ENOENT);
	ck_assert(!u[1].presented);
	ck_assert_int_eq(ft[0].presented, 1);
	ck_assert_int_eq(ft[2].presented, 1);
	halo_build_report_release(&loop, &rep);

	memset(ft, 0, sizeof(ft));
	rep = halo_build(&loop, u, 3,
			 &(halo_build_opts){.flags = HALO_BUILD_PRESENT_FAILED});
	ck_assert_int_eq(ft[1].presented, 1);
	halo_build_report_release(&loop, &rep);
}
END_TEST

START_TEST(test_build_deadline_cancels_what_missed_it)
{
	struct feat ft[3] = {{.ms = 5}, {0}, {.ms = 10}};
	halo_build_unit u[3] = {
		{"fast", start_timer, present, &ft[0], 0, 0, 0},
		{"stuck", start_pipe_read, present, &ft[1], 0, 0, 0},
		{"ok", start_timer, present, &ft[2], 0, 0, 0},
	};
	halo_build_opts o = {.deadline_ns = halo_now_ns() + 40 * MS};
	halo_build_report rep = halo_build(&loop, u, 3, &o);
	halo_stats st;

	ck_assert_int_eq(rep.status, -ETIMEDOUT);
	ck_assert_uint_eq(rep.missed_n, 1);
	ck_assert_str_eq(rep.missed, "stuck");
	ck_assert_int_eq(u[1].err, -ETIMEDOUT);
	ck_assert_int_eq(ft[0].presented, 1);
	ck_assert_int_eq(ft[2].presented, 1);
	ck_assert_int_eq(ft[1].presented, 0);
	halo_loop_stats(&loop, &st);
	ck_assert_uint_eq(st.inflight, 0);
	halo_build_report_release(&loop, &rep);
}
END_TEST

START_TEST(test_build_report_shows_a_unit_that_failed_at_start)
{
	struct feat ft[3] = {{.ms = 10}, {0}, {.ms = 20}};
	halo_build_unit u[3] = {
		{"profile", start_timer, present, &ft[0], 0, 0, 0},
		{"billing", start_denied, present, &ft[1], 0, 0, 0},
		{"cart", start_timer, present, &ft[2], 0, 0, 0},
	};
	halo_build_report rep = halo_build(&loop, u, 3, NULL);
	halo_fut *churn[8];

	/* Recycle the pool slots the units' futures had: the report's
	 * message must not live in them. */
	for (int i = 0; i < 8; i++)
		churn[i] = halo_fut_failed(&loop, -EIO, "something else");
	for (int i = 0; i < 8; i++)
		halo_fut_detach(churn[i]);
	ck_assert_int_eq(rep.status, -EACCES);
	ck_assert_uint_eq(rep.failed_n, 1);
	ck_assert_int_eq(u[1].err, -EACCES); /* not hidden as -ENOMEM */
	ck_assert(!u[1].presented);
	ck_assert_int_eq(ft[0].presented, 1);
	ck_assert_int_eq(ft[2].presented, 1);
	ck_assert_ptr_nonnull(rep.failures);
	ck_assert_uint_eq(rep.failures[0].unit, 1);
	ck_assert_str_eq(rep.failures[0].name, "billing");
	ck_assert_int_eq(rep.failures[0].err, -EACCES);
	ck_assert_str_eq(rep.failures[0].msg, "token expired for tenant 42");
	halo_build_report_release(&loop, &rep);
	ck_assert_ptr_null(rep.failures);
	halo_build_report_release(&loop, &rep); /* a second call is harmless */
}
END_TEST

START_TEST(test_build_report_lists_every_failed_unit_in_order)
{
	struct feat ft[4] = {{.ms = 5}, {.ms = 10}, {0}, {0}};
	halo_build_unit u[4] = {
		{"search", start_timer, present, &ft[0], 0, 0, 0},
		{"reviews", start_late_failure, present, &ft[1], 0, 0, 0},
		{"stock", start_pipe_read, present, &ft[2], 0, 0, 0},
		{"pricing", start_denied, present, &ft[3], 0, 0, 0},
	};
	halo_build_opts o = {.deadline_ns = halo_now_ns() + 60 * MS};
	halo_build_report rep = halo_build(&loop, u, 4, &o);

	ck_assert_int_eq(rep.status, -ECONNRESET);
	ck_assert_uint_eq(rep.failed_n, 3);
	ck_assert_ptr_nonnull(rep.failures);
	ck_assert_str_eq(rep.failures[0].name, "reviews");
	ck_assert_int_eq(rep.failures[0].err, -ECONNRESET);
	ck_assert_str_eq(rep.failures[0].msg, "upstream reset");
	ck_assert_str_eq(rep.failures[1].name, "stock");
	ck_assert_int_eq(rep.failures[1].err, -ETIMEDOUT);
	ck_assert_ptr_null(rep.failures[1].msg); /* missed: no message */
	ck_assert_uint_eq(rep.failures[2].unit, 3);
	ck_assert_str_eq(rep.failures[2].msg, "token expired for tenant 42");
	ck_assert_int_eq(ft[0].presented, 1);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	halo_build_report_release(&loop, &rep);
}
END_TEST

START_TEST(test_build_null_start_is_still_enomem_without_message)
{
	halo_build_unit u[2] = {
		{"a", start_out_of_memory, present, NULL, 0, 0, 0},
		{"b", start_failing, present, NULL, 0, 0, 0},
	};
	halo_build_report rep = halo_build(&loop, u, 2, NULL);

	ck_assert_int_eq(rep.status, -ENOMEM);
	ck_assert_uint_eq(rep.failed_n, 2);
	ck_assert_int_eq(rep.failures[0].err, -ENOMEM);
	ck_assert_ptr_null(rep.failures[0].msg);
	ck_assert_str_eq(rep.failures[1].msg, "no such feature");
	halo_build_report_release(&loop, &rep);
}
END_TEST

START_TEST(test_build_without_failures_has_no_list)
{
	struct feat ft = {.ms = 1};
	halo_build_unit u = {"only", start_timer, present, &ft, 0, 0, 0};
	halo_build_report rep = halo_build(&loop, &u, 1, NULL);

	ck_assert_int_eq(rep.status, 0);
	ck_assert_ptr_null(rep.failures);
	halo_build_report_release(&loop, &rep);
}
END_TEST

Suite *build_suite(void)
{
	Suite *s = suite_create("build");
	TCase *tc = tcase_create("build");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(10));
	tcase_add_test(tc, test_build_takes_the_slowest_unit_not_the_sum);
	tcase_add_test(tc, test_build_names_a_blocking_start_half);
	tcase_add_test(tc, test_build_names_a_start_half_that_sleeps);
	tcase_add_test(tc, test_build_sleeping_start_half_reaches_the_stall_hook);
	tcase_add_test(tc, test_build_failed_unit_does_not_stop_the_others);
	tcase_add_test(tc, test_build_deadline_cancels_what_missed_it);
	tcase_add_test(tc, test_build_report_shows_a_unit_that_failed_at_start);
	tcase_add_test(tc, test_build_report_lists_every_failed_unit_in_order);
	tcase_add_test(tc,
		       test_build_null_start_is_still_enomem_without_message);
	tcase_add_test(tc, test_build_without_failures_has_no_list);
	suite_add_tcase(s, tc);
	return s;
}
