/* Scopes: close waits for every child, cancellation reaches children, child
 * scopes and fibers waiting inside, a failure cancels the siblings. */
#include <errno.h>
#include <unistd.h>

#include "runtime/fault.h"
#include "tests/util.h"

TU_LOOP_PIPE_FIXTURE(loop, pipe_fds)

#define MS 1000000ull

START_TEST(test_scope_close_waits_for_every_child)
{
	halo_scope s;
	struct tu_job j[3] = {{10, 1, 0}, {20, 2, 0}, {30, 3, 0}};
	halo_fut *f[3], *t = halo_timer_after(&loop, 15 * MS);

	halo_scope_init(&s, &loop, NULL);
	for (int i = 0; i < 3; i++)
		f[i] = halo_scope_spawn(&s, tu_sleeper, &j[i]);
	ck_assert_int_eq(halo_scope_add(&s, t), 0);
	halo_fut_release(t);
	ck_assert_int_eq(halo_scope_close(&s), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(j[i].got, 0);
	(void)f;
}
END_TEST

START_TEST(test_leaving_a_cancelled_scope_cancels_children)
{
	halo_scope s;
	char buf[8];
	struct tu_job j = {1000, 1, 0};
	halo_fut *rd;
	uint64_t t0 = halo_now_ns();

	halo_scope_init(&s, &loop, NULL);
	rd = halo_read(&loop, pipe_fds[0], buf, sizeof(buf), -1);
	ck_assert_int_eq(halo_scope_add(&s, rd), 0);
	halo_scope_spawn(&s, tu_sleeper, &j);
	halo_loop_run_nowait(&loop);
	ck_assert_uint_eq(tu_inflight(&loop), 1);
	halo_scope_cancel(&s);
	ck_assert_int_eq(halo_scope_close(&s), -ECANCELED);
	ck_assert_int_eq(halo_fut_status(rd), HALO_FUT_CANCELLED);
	ck_assert_int_eq(j.got, -ECANCELED); /* its wait was interrupted */
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	ck_assert_uint_lt(halo_now_ns() - t0, 500 * MS);
	halo_fut_release(rd);
}
END_TEST

static int64_t failer(halo_loop *l, void *arg)
{
	(void)arg;
	halo_sleep(l, 10 * MS);
	return -EPROTO;
}

START_TEST(test_failed_child_cancels_its_siblings)
{
	halo_scope s;
	struct tu_job j = {1000, 1, 0};
	uint64_t t0 = halo_now_ns();

	halo_scope_init(&s, &loop, NULL);
	halo_scope_spawn(&s, tu_sleeper, &j);
	halo_scope_spawn(&s, failer, NULL);
	ck_assert_int_eq(halo_scope_close(&s), -EPROTO);
	ck_assert_int_eq(j.got, -ECANCELED);
	ck_assert_uint_lt(halo_now_ns() - t0, 500 * MS);
}
END_TEST

START_TEST(test_keep_going_scope_lets_siblings_finish)
{
	halo_scope s;
	struct tu_job j = {40, 1, 7};
	halo_scope_opts o = {.flags = HALO_SCOPE_KEEP_GOING};

	halo_scope_init(&s, &loop, &o);
	halo_scope_spawn(&s, tu_sleeper, &j);
	halo_scope_spawn(&s, failer, NULL);
	ck_assert_int_eq(halo_scope_close(&s), -EPROTO);
	ck_assert_int_eq(j.got, 0);
}
END_TEST

static halo_scope parent;
static char nested_buf[8];
static struct tu_job nested_job = {1000, 1, 0};
static int64_t nested_result;

/* A fiber of the parent that opens a child scope with real I/O and a
 * tu_sleeper, and waits inside it. */
static int64_t nested(halo_loop *l, void *arg)
{
	halo_scope child;
	halo_fut *rd;
	int r;

	(void)arg;
	halo_scope_init_child(&child, &parent, NULL);
	rd = halo_read(l, pipe_fds[0], nested_buf, sizeof(nested_buf), -1);
	halo_scope_adopt(&child, rd);
	halo_scope_spawn(&child, tu_sleeper, &nested_job);
	r = halo_scope_close(&child);
	nested_result = r;
	return r;
}

static void cancel_parent(halo_fut *t, void *arg)
{
	(void)t;
	halo_scope_cancel(arg);
}

START_TEST(test_cancelling_parent_reaches_nested_scope_and_its_io)
{
	halo_fut *t = halo_timer_after(&loop, 20 * MS);
	uint64_t t0 = halo_now_ns();

	halo_scope_init(&parent, &loop, NULL);
	halo_scope_spawn(&parent, nested, NULL);
	halo_fut_on_done(t, cancel_parent, &parent);
	ck_assert_int_eq(halo_scope_close(&parent), -ECANCELED);
	ck_assert_int_eq(nested_result, -ECANCELED);
	ck_assert_int_eq(nested_job.got, -ECANCELED);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	ck_assert_ptr_null(parent.children);
	ck_assert_uint_lt(halo_now_ns() - t0, 500 * MS);
	halo_fut_release(t);
}
END_TEST

static int64_t spawner(halo_loop *l, void *arg)
{
	halo_scope *s = arg;
	static struct tu_job late = {30, 5, 1};

	halo_sleep(l, 5 * MS);
	halo_scope_spawn(s, tu_sleeper, &late); /* added while being joined */
	return 0;
}

START_TEST(test_children_added_during_join_are_waited_for)
{
	halo_scope s;
	halo_fut *late;

	halo_scope_init(&s, &loop, NULL);
	halo_scope_spawn(&s, spawner, &s);
	ck_assert_int_eq(halo_scope_join(&s), 0);
	ck_assert_uint_eq(s.kids_n, 2);
	late = s.kids[1];
	ck_assert_int_eq(halo_fut_status(late), HALO_FUT_OK);
	ck_assert_int_eq(halo_scope_close(&s), 0);
}
END_TEST

/* A fiber of the parent that closes a child scope with one sleeper. */
static int64_t nested_sleep(halo_loop *l, void *arg)
{
	halo_scope child;

	(void)l;
	(void)arg;
	halo_scope_init_child(&child, &parent, NULL);
	halo_scope_spawn(&child, tu_sleeper, &nested_job);
	nested_result = halo_scope_close(&child);
	return nested_result;
}

static void close_parent(halo_fut *t, void *arg)
{
	(void)t;
	ck_assert_int_eq(halo_scope_close(arg), -EDEADLK);
}

/* Closed from a callback, a scope cannot wait: it cancels and lets go of
 * its children, and leaves a child scope that a fiber is closing to that
 * fiber, which finishes it on its own. */
START_TEST(test_close_from_a_callback_leaves_a_nested_close_to_its_fiber)
{
	halo_fut *t, *f;

	nested_job.ms = 1000;
	halo_scope_init(&parent, &loop, NULL);
	f = halo_scope_spawn(&parent, nested_sleep, NULL);
	halo_fut_ref(f);
	t = halo_timer_after(&loop, 5 * MS);
	ck_assert_int_eq(halo_fut_on_done(t, close_parent, &parent), 0);
	ck_assert_int_eq(halo_fut_join(t), 0);
	ck_assert_int_eq(halo_fut_join(f), -ECANCELED);
	ck_assert_int_eq(nested_result, -ECANCELED);
	ck_assert_int_eq(nested_job.got, -ECANCELED);
	ck_assert_ptr_null(parent.children);
}
END_TEST

#ifdef HALO_FAULT
/* The join finds no memory for its waiters: the scope fails with -ENOMEM,
 * and close still keeps its promise that every child is done when it
 * returns (cancelled first, as for a failed child). */
START_TEST(test_close_after_a_join_without_memory_waits_for_every_child)
{
	halo_scope s;
	struct tu_job j[2] = {{1000, 1, 7}, {1000, 2, 7}};
	uint64_t t0 = halo_now_ns();

	halo_scope_init(&s, &loop, NULL);
	for (int i = 0; i < 2; i++)
		ck_assert_ptr_nonnull(halo_scope_spawn(&s, tu_sleeper, &j[i]));
	halo_loop_run_nowait(&loop);		    /* both sleep now */
	halo__fault_arm(HALO_FAULT_SLOT, 1, false); /* the wait's helper */
	ck_assert_int_eq(halo_scope_close(&s), -ENOMEM);
	ck_assert_uint_eq(halo__fault_failed(), 1);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(j[i].got, -ECANCELED); /* ran to its end */
	ck_assert_uint_lt(halo_now_ns() - t0, 500 * MS);
}
END_TEST

/* A child scope that its fiber is closing when the parent's join runs out
 * of memory is closed by that fiber alone, after the parent cancelled it. */
START_TEST(test_parent_join_without_memory_leaves_nested_close_to_its_fiber)
{
	struct tu_job j = {1000, 1, 7};
	uint64_t t0 = halo_now_ns();

	nested_job.ms = 200;
	halo_scope_init(&parent, &loop, NULL);
	ck_assert_ptr_nonnull(halo_scope_spawn(&parent, nested_sleep, NULL));
	ck_assert_ptr_nonnull(halo_scope_spawn(&parent, tu_sleeper, &j));
	/* Let nested() open its scope and block in closing it. */
	ck_assert_int_eq(halo_fut_join(halo_timer_after(&loop, 5 * MS)), 0);
	ck_assert_ptr_nonnull(parent.children);
	halo__fault_arm(HALO_FAULT_SLOT, 1, false);
	ck_assert_int_eq(halo_scope_close(&parent), -ENOMEM);
	ck_assert_int_eq(nested_result, -ECANCELED);
	ck_assert_int_eq(nested_job.got, -ECANCELED);
	ck_assert_int_eq(j.got, -ECANCELED);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	ck_assert_ptr_null(parent.children);
	ck_assert_uint_lt(halo_now_ns() - t0, 500 * MS);
}
END_TEST
#endif

Suite *scope_suite(void)
{
	Suite *s = suite_create("scope");
	TCase *tc = tcase_create("scope");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(10));
	tcase_add_test(tc, test_scope_close_waits_for_every_child);
	tcase_add_test(tc, test_leaving_a_cancelled_scope_cancels_children);
	tcase_add_test(tc, test_failed_child_cancels_its_siblings);
	tcase_add_test(tc, test_keep_going_scope_lets_siblings_finish);
	tcase_add_test(tc,
		       test_cancelling_parent_reaches_nested_scope_and_its_io);
	tcase_add_test(tc, test_children_added_during_join_are_waited_for);
	tcase_add_test(
	    tc, test_close_from_a_callback_leaves_a_nested_close_to_its_fiber);
	suite_add_tcase(s, tc);
#ifdef HALO_FAULT
	tc = tcase_create("enomem");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_checked_fixture(tc, tu_fault_reset, tu_fault_reset);
	tcase_set_timeout(tc, tu_timeout(5));
	tcase_add_test(
	    tc, test_close_after_a_join_without_memory_waits_for_every_child);
	tcase_add_test(
	    tc,
	    test_parent_join_without_memory_leaves_nested_close_to_its_fiber);
	suite_add_tcase(s, tc);
#endif
	return s;
}
