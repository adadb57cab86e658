/* Futures: states, results, waiters, cancellation, waiting contexts, leaks. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/fault.h"
#include "runtime/internal.h"
#include "tests/util.h"

TU_LOOP_FIXTURE(loop)

START_TEST(test_promise_resolves_once)
{
	halo_fut *f = halo_fut_new(&loop);
	int v;

	ck_assert_int_eq(halo_fut_status(f), HALO_FUT_PENDING);
	ck_assert(!halo_fut_is_done(f));
	ck_assert_int_eq(halo_fut_result(f), -EAGAIN);
	ck_assert_int_eq(halo_fut_resolve(f, 42, &v), 0);
	ck_assert_int_eq(halo_fut_status(f), HALO_FUT_OK);
	ck_assert_int_eq(halo_fut_resolve(f, 7, NULL), -EALREADY);
	ck_assert_int_eq(halo_fut_fail(f, -EIO, "late"), -EALREADY);
	ck_assert_int_eq(halo_fut_cancel(f), -EALREADY);
	ck_assert_int_eq(halo_fut_result(f), 42);
	ck_assert_ptr_eq(halo_fut_value(f), &v);
	ck_assert_int_eq(halo_fut_error(f), 0);
	halo_fut_release(f);
}
END_TEST

START_TEST(test_promise_fails_with_message)
{
	halo_fut *f = halo_fut_new(&loop);

	ck_assert_int_eq(halo_fut_fail(f, 5, "positive"), -EINVAL);
	ck_assert_int_eq(halo_fut_fail(f, -ENOENT, "no such user"), 0);
	ck_assert_int_eq(halo_fut_status(f), HALO_FUT_ERROR);
	ck_assert_int_eq(halo_fut_error(f), -ENOENT);
	ck_assert_int_eq(halo_fut_result(f), -ENOENT);
	ck_assert_str_eq(halo_fut_error_msg(f), "no such user");
	ck_assert_ptr_null(halo_fut_value(f));
	halo_fut_release(f);
}
END_TEST

#ifdef HALO_FAULT
/* The error matters more than its message: without memory for the copy the
 * future still fails with err, and says that the message was lost. */
START_TEST(test_fail_without_memory_for_the_message_still_fails)
{
	halo_fut *f = halo_fut_new(&loop);

	halo__fault_arm(HALO_FAULT_HEAP, 1, false);
	ck_assert_int_eq(halo_fut_fail(f, -ENOSPC, "disk full"), 0);
	ck_assert_uint_eq(halo__fault_failed(), 1);
	ck_assert_int_eq(halo_fut_status(f), HALO_FUT_ERROR);
	ck_assert_int_eq(halo_fut_error(f), -ENOSPC);
	ck_assert_ptr_eq(halo_fut_error_msg(f), halo_fut_msg_lost);
	ck_assert_str_eq(halo_fut_error_msg(f),
			 "out of memory for the error message");
	halo_fut_release(f); /* frees nothing that was not allocated */
	f = halo_fut_new(&loop);
	ck_assert_int_eq(halo_fut_fail(f, -ENOSPC, "disk full"), 0);
	ck_assert_str_eq(halo_fut_error_msg(f), "disk full");
	halo_fut_release(f);
}
END_TEST
#endif

START_TEST(test_promise_cancel_without_hook)
{
	halo_fut *f = halo_fut_new(&loop);

	ck_assert_int_eq(halo_fut_cancel(f), 0);
	ck_assert_int_eq(halo_fut_status(f), HALO_FUT_CANCELLED);
	ck_assert_int_eq(halo_fut_result(f), -ECANCELED);
	ck_assert_int_eq(halo_fut_error(f), -ECANCELED);
	ck_assert_int_eq(halo_fut_resolve(f, 1, NULL), -EALREADY);
	halo_fut_release(f);
}
END_TEST

static int hook_calls;
static void cancel_hook(halo_fut *f, void *arg)
{
	(void)arg;
	hook_calls++;
	halo_fut_cancelled(f);
}

START_TEST(test_promise_cancel_calls_hook_once)
{
	halo_fut *f = halo_fut_new(&loop);

	hook_calls = 0;
	halo_fut_set_cancel(f, cancel_hook, NULL);
	ck_assert_int_eq(halo_fut_cancel(f), 0);
	ck_assert_int_eq(halo_fut_cancel(f), -EALREADY);
	ck_assert_int_eq(hook_calls, 1);
	ck_assert_int_eq(halo_fut_status(f), HALO_FUT_CANCELLED);
	halo_fut_release(f);
}
END_TEST

static int cb_calls;
static void count_cb(halo_fut *f, void *arg)
{
	(void)f;
	(void)arg;
	cb_calls++;
}

START_TEST(test_callbacks_run_from_ready_queue_not_inline)
{
	halo_fut *f = halo_fut_new(&loop);

	cb_calls = 0;
	ck_assert_int_eq(halo_fut_on_done(f, count_cb, NULL), 0);
	ck_assert_int_eq(halo_fut_on_done(f, count_cb, NULL), 0);
	halo_fut_resolve(f, 1, NULL);
	ck_assert_int_eq(cb_calls, 0);
	ck_assert_int_eq(halo_loop_run(&loop), 0);
	ck_assert_int_eq(cb_calls, 2);
	/* A waiter added after completion runs on the next pass, too. */
	ck_assert_int_eq(halo_fut_on_done(f, count_cb, NULL), 0);
	ck_assert_int_eq(cb_calls, 2);
	halo_loop_run(&loop);
	ck_assert_int_eq(cb_calls, 3);
	halo_fut_release(f);
}
END_TEST

static int64_t deadlk_result;
static void wait_in_cb(halo_fut *f, void *arg)
{
	(void)f;
	deadlk_result = halo_fut_wait(arg);
}

START_TEST(test_wait_in_callback_is_edeadlk)
{
	halo_fut *a = halo_fut_new(&loop), *b = halo_fut_new(&loop);

	deadlk_result = 0;
	halo_fut_on_done(a, wait_in_cb, b);
	halo_fut_resolve(a, 0, NULL);
	halo_loop_run(&loop);
	ck_assert_int_eq(deadlk_result, -EDEADLK);
	ck_assert(!halo_fut_is_done(b));
	halo_fut_cancel(b);
	halo_fut_release(a);
	halo_fut_release(b);
}
END_TEST

START_TEST(test_wait_drives_loop_on_owner_thread)
{
	halo_fut *n = halo_nop(&loop);

	ck_assert_ptr_nonnull(n);
	ck_assert_int_eq(halo_fut_wait(n), 0);
	ck_assert_int_eq(halo_fut_status(n), HALO_FUT_OK);
	halo_fut_release(n);
}
END_TEST

START_TEST(test_wait_on_orphan_promise_is_edeadlk)
{
	halo_fut *f = halo_fut_new(&loop);

	ck_assert_int_eq(halo_fut_wait(f), -EDEADLK);
	halo_fut_cancel(f);
	halo_fut_release(f);
}
END_TEST

START_TEST(test_cancel_before_submission_never_reads)
{
	int p[2];
	char buf[8] = "xxxxxxx";
	halo_fut *r;

	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(write(p[1], "data", 4), 4);
	r = halo_read(&loop, p[0], buf, sizeof(buf), -1);
	ck_assert_int_eq(halo_fut_cancel(r), 0);
	ck_assert_int_eq(halo_fut_wait(r), -ECANCELED);
	ck_assert_int_eq(halo_fut_status(r), HALO_FUT_CANCELLED);
	ck_assert_str_eq(buf, "xxxxxxx");
	/* The data is still in the pipe for the next reader. */
	ck_assert_int_eq(read(p[0], buf, 4), 4);
	ck_assert_int_eq(memcmp(buf, "data", 4), 0);
	halo_fut_release(r);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(test_cancel_pending_read_never_writes_buffer)
{
	int p[2];
	char buf[8] = "xxxxxxx";
	halo_fut *r;
	halo_stats st;

	ck_assert_int_eq(pipe(p), 0);
	r = halo_read(&loop, p[0], buf, sizeof(buf), -1);
	halo_loop_run_nowait(&loop); /* submitted; parks on the empty pipe */
	halo_loop_stats(&loop, &st);
	ck_assert_uint_eq(st.inflight, 1);
	ck_assert(!halo_fut_is_done(r));
	ck_assert_int_eq(halo_fut_cancel(r), 0);
	ck_assert_int_eq(halo_fut_wait(r), -ECANCELED);
	halo_loop_stats(&loop, &st);
	ck_assert_uint_eq(st.inflight, 0);
	/* Data written after the cancel is not taken by the dead read. */
	ck_assert_int_eq(write(p[1], "late", 4), 4);
	halo_loop_run_nowait(&loop);
	ck_assert_str_eq(buf, "xxxxxxx");
	ck_assert_int_eq(read(p[0], buf, 4), 4);
	ck_assert_int_eq(memcmp(buf, "late", 4), 0);
	halo_fut_release(r);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(test_cancel_after_completion_keeps_result)
{
	int p[2];
	char buf[8] = {0};
	halo_fut *r;

	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(write(p[1], "abc", 3), 3);
	r = halo_read(&loop, p[0], buf, sizeof(buf), -1);
	ck_assert_int_eq(halo_fut_wait(r), 3);
	ck_assert_int_eq(halo_fut_cancel(r), -EALREADY);
	ck_assert_int_eq(halo_fut_status(r), HALO_FUT_OK);
	ck_assert_int_eq(halo_fut_result(r), 3);
	halo_fut_release(r);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(test_stale_cancel_never_hits_recycled_slot)
{
	int p[2];
	char a[4], b[4];
	halo_fut *fa, *fb;
	uint64_t old_tag;
	struct io_uring_sqe *sqe;

	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(write(p[1], "a", 1), 1);
	fa = halo_read(&loop, p[0], a, 1, -1);
	ck_assert_int_eq(halo_fut_wait(fa), 1);
	old_tag = halo__op_tag((halo_op *)fa);
	halo_fut_release(fa);
	halo_loop_run_nowait(&loop); /* drop the ready queue's reference */
	fb = halo_read(&loop, p[0], b, 1, -1); /* same slot, next generation */
	ck_assert_ptr_eq(fb, fa);
	ck_assert_uint_ne(halo__op_tag((halo_op *)fb), old_tag);
	halo_loop_run_nowait(&loop);
	sqe = halo__loop_sqe(&loop); /* a cancel aimed at the old life */
	io_uring_prep_cancel64(sqe, old_tag, 0);
	halo_loop_run_nowait(&loop);
	halo_loop_run_nowait(&loop);
	ck_assert(!halo_fut_is_done(fb));
	ck_assert_int_eq(write(p[1], "b", 1), 1);
	ck_assert_int_eq(halo_fut_wait(fb), 1);
	ck_assert_int_eq(b[0], 'b');
	halo_fut_release(fb);
	close(p[0]);
	close(p[1]);
}
END_TEST

/* A late CQE for a slot that is free, not reused yet: found stale by its
 * tag, which a free slot keeps readable (ASan builds poison the rest). */
START_TEST(test_stale_cqe_for_a_free_slot_is_counted_and_ignored)
{
	halo_fut *fa;
	uint64_t old_tag;
	struct io_uring_sqe *sqe;
	halo_stats st0, st1;

	fa = halo_nop(&loop);
	ck_assert_int_eq(halo_fut_wait(fa), 0);
	old_tag = halo__op_tag((halo_op *)fa);
	halo_fut_release(fa);
	halo_loop_run_nowait(&loop);
	halo_loop_stats(&loop, &st0);
	sqe = halo__loop_sqe_nocqe(&loop);
	io_uring_prep_nop(sqe);
	sqe->user_data = old_tag;
	halo_loop_run_nowait(&loop);
	halo_loop_run_nowait(&loop);
	halo_loop_stats(&loop, &st1);
	ck_assert_uint_eq(st1.stale_cqes - st0.stale_cqes, 1);
	ck_assert_uint_eq(st1.inflight, st0.inflight);
	ck_assert_uint_eq(st1.live_futures, st0.live_futures);
}
END_TEST

START_TEST(test_stale_cqe_never_completes_recycled_slot)
{
	int p[2];
	char b[4];
	halo_fut *fa, *fb;
	uint64_t old_tag;
	struct io_uring_sqe *sqe;
	halo_stats st0, st1;

	ck_assert_int_eq(pipe(p), 0);
	fa = halo_nop(&loop);
	ck_assert_int_eq(halo_fut_wait(fa), 0);
	old_tag = halo__op_tag((halo_op *)fa);
	halo_fut_release(fa);
	halo_loop_run_nowait(&loop);
	fb = halo_read(&loop, p[0], b, 1, -1); /* same slot, next generation */
	ck_assert_ptr_eq(fb, fa);
	ck_assert_uint_ne(halo__op_tag((halo_op *)fb), old_tag);
	halo_loop_stats(&loop, &st0);
	sqe = halo__loop_sqe_nocqe(&loop); /* a CQE tagged for the old life */
	io_uring_prep_nop(sqe);
	sqe->user_data = old_tag;
	halo_loop_run_nowait(&loop);
	halo_loop_run_nowait(&loop);
	halo_loop_stats(&loop, &st1);
	ck_assert_uint_eq(st1.stale_cqes - st0.stale_cqes, 1);
	ck_assert_uint_eq(st1.inflight, st0.inflight); /* fb's, still */
	ck_assert(!halo_fut_is_done(fb));
	ck_assert_int_eq(write(p[1], "b", 1), 1);
	ck_assert_int_eq(halo_fut_wait(fb), 1);
	halo_fut_release(fb);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(test_detach_lets_work_finish)
{
	halo_fut *n = halo_nop(&loop);
	halo_stats st;

	halo_fut_detach(n);
	ck_assert_int_eq(halo_loop_run(&loop), 0);
	halo_loop_stats(&loop, &st);
	ck_assert_uint_eq(st.live_futures, 0);
}
END_TEST

/* Close l with stderr caught: it must report exactly one leaked future,
 * and its report must contain want. */
static void close_reports_one_leak(halo_loop *l, const char *want)
{
	char path[] = "/tmp/halo-leak-XXXXXX";
	int fd = mkstemp(path), saved = dup(2), leaked;
	char text[512] = {0};

	ck_assert_int_ge(fd, 0);
	dup2(fd, 2);
	leaked = halo_loop_close(l);
	dup2(saved, 2);
	close(saved);
	ck_assert_int_eq(leaked, 1);
	ck_assert_int_gt(pread(fd, text, sizeof(text) - 1, 0), 0);
	ck_assert_msg(strstr(text, want), "report '%s' lacks '%s'", text, want);
	close(fd);
	unlink(path);
}

START_TEST(test_leak_report_names_line)
{
	halo_loop l;
	int line;
	char want[64];

	tu_loop_init(&l, NULL);
	halo_fut_release(halo_fut_new(&l)); /* consumed: not a leak */
	line = __LINE__ + 1;
	halo_fut *f = halo_fut_new(&l);
	(void)f;
	snprintf(want, sizeof(want), "test_fut.c:%d", line);
	close_reports_one_leak(&l, want);
}
END_TEST

#define MS 1000000ull

START_TEST(test_ready_future_is_ok_at_once_and_calls_back_later)
{
	int v;
	int line = __LINE__ + 1;
	halo_fut *f = halo_fut_ready(&loop, 42, &v);
	int got_line = 0;

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(halo_fut_status(f), HALO_FUT_OK);
	ck_assert_str_eq(halo_fut_origin(f, &got_line), __FILE__);
	ck_assert_int_eq(got_line, line);
	cb_calls = 0;
	ck_assert_int_eq(halo_fut_on_done(f, count_cb, NULL), 0);
	ck_assert_int_eq(cb_calls, 0); /* from the ready queue, not inline */
	ck_assert_int_eq(halo_fut_wait(f), 42);
	ck_assert_ptr_eq(halo_fut_value(f), &v);
	ck_assert_ptr_null(halo_fut_error_msg(f));
	ck_assert_int_eq(halo_fut_resolve(f, 1, NULL), -EALREADY);
	halo_loop_run(&loop);
	ck_assert_int_eq(cb_calls, 1);
	halo_fut_release(f);
}
END_TEST

START_TEST(test_failed_future_carries_errno_and_copied_message)
{
	char msg[] = "no such user";
	halo_fut *f = halo_fut_failed(&loop, -ENOENT, msg);

	ck_assert_ptr_nonnull(f);
	msg[0] = 'X'; /* the future keeps its own copy */
	ck_assert_int_eq(halo_fut_status(f), HALO_FUT_ERROR);
	ck_assert_int_eq(halo_fut_wait(f), -ENOENT);
	ck_assert_int_eq(halo_fut_error(f), -ENOENT);
	ck_assert_str_eq(halo_fut_error_msg(f), "no such user");
	ck_assert_ptr_null(halo_fut_value(f));
	halo_fut_release(f);
}
END_TEST

START_TEST(test_failed_future_without_message)
{
	halo_fut *f = halo_fut_failed(&loop, -EIO, NULL);

	ck_assert_int_eq(halo_fut_status(f), HALO_FUT_ERROR);
	ck_assert_int_eq(halo_fut_error(f), -EIO);
	ck_assert_ptr_null(halo_fut_error_msg(f));
	halo_fut_release(f);
}
END_TEST

START_TEST(test_failed_future_with_non_errno_fails_einval)
{
	halo_fut *z = halo_fut_failed(&loop, 0, "zero is no error");
	halo_fut *p = halo_fut_failed(&loop, 5, NULL);

	ck_assert_int_eq(halo_fut_status(z), HALO_FUT_ERROR);
	ck_assert_int_eq(halo_fut_error(z), -EINVAL);
	ck_assert_str_eq(halo_fut_error_msg(z), "zero is no error");
	ck_assert_int_eq(halo_fut_error(p), -EINVAL);
	halo_fut_release(z);
	halo_fut_release(p);
}
END_TEST

START_TEST(test_delayed_future_completes_after_its_delay)
{
	int v;
	uint64_t t0 = halo_now_ns();
	halo_fut *f = halo_fut_delayed(&loop, 20 * MS, 7, &v);

	ck_assert_ptr_nonnull(f);
	ck_assert(!halo_fut_is_done(f));
	ck_assert_uint_eq(halo_timer_pending(&loop), 1);
	ck_assert_int_eq(halo_fut_wait(f), 7);
	ck_assert_uint_ge(halo_now_ns() - t0, 20 * MS);
	ck_assert_int_eq(halo_fut_status(f), HALO_FUT_OK);
	ck_assert_ptr_eq(halo_fut_value(f), &v);
	ck_assert_uint_eq(halo_timer_pending(&loop), 0);
	halo_fut_release(f);
}
END_TEST

START_TEST(test_delayed_failure_shows_its_message_only_once_failed)
{
	uint64_t t0 = halo_now_ns();
	halo_fut *f = halo_fut_delayed_failed(&loop, 10 * MS, -ETIMEDOUT,
					      "upstream slow");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(halo_fut_status(f), HALO_FUT_PENDING);
	ck_assert_ptr_null(halo_fut_error_msg(f));
	ck_assert_int_eq(halo_fut_wait(f), -ETIMEDOUT);
	ck_assert_uint_ge(halo_now_ns() - t0, 10 * MS);
	ck_assert_int_eq(halo_fut_status(f), HALO_FUT_ERROR);
	ck_assert_str_eq(halo_fut_error_msg(f), "upstream slow");
	halo_fut_release(f);
}
END_TEST

static int64_t wait_delayed(halo_loop *l, void *arg)
{
	halo_fut *d = halo_fut_delayed_failed(l, 5 * MS, -EPIPE, "pipe gone");
	const char **msg = arg;
	int64_t r;

	if (!d)
		return -ENOMEM;
	r = halo_fut_wait(d);
	*msg = strcmp(halo_fut_error_msg(d), "pipe gone") ? "wrong" : "right";
	halo_fut_release(d);
	return r;
}

START_TEST(test_delayed_future_in_a_fiber)
{
	const char *msg = NULL;
	halo_fut *fb = halo_spawn(&loop, wait_delayed, &msg);

	ck_assert_int_eq(halo_fut_join(fb), -EPIPE);
	ck_assert_str_eq(msg, "right");
}
END_TEST

START_TEST(test_delayed_future_cancelled_before_it_fires)
{
	uint64_t t0 = halo_now_ns();
	halo_fut *ok = halo_fut_delayed(&loop, 1000 * MS, 1, &t0);
	halo_fut *bad;

	bad = halo_fut_delayed_failed(&loop, 1000 * MS, -EIO, "never said");

	ck_assert_uint_eq(halo_timer_pending(&loop), 2);
	ck_assert_int_eq(halo_fut_cancel(ok), 0);
	ck_assert_int_eq(halo_fut_cancel(bad), 0);
	ck_assert_uint_eq(halo_timer_pending(&loop), 0);
	ck_assert_int_eq(halo_fut_wait(ok), -ECANCELED);
	ck_assert_int_eq(halo_fut_wait(bad), -ECANCELED);
	ck_assert_int_eq(halo_fut_status(ok), HALO_FUT_CANCELLED);
	ck_assert_int_eq(halo_fut_status(bad), HALO_FUT_CANCELLED);
	ck_assert_ptr_null(halo_fut_value(ok));
	ck_assert_ptr_null(halo_fut_error_msg(bad));
	ck_assert_int_eq(halo_loop_run(&loop), 0); /* nothing left to fire */
	ck_assert_uint_lt(halo_now_ns() - t0, 500 * MS);
	ck_assert_int_eq(halo_fut_cancel(ok), -EALREADY);
	halo_fut_release(ok);
	halo_fut_release(bad);
}
END_TEST

START_TEST(test_delayed_future_zero_delay_completes_on_next_pass)
{
	halo_fut *f = halo_fut_delayed(&loop, 0, 5, NULL);

	ck_assert(!halo_fut_is_done(f)); /* never inside the call */
	halo_loop_run_nowait(&loop);
	ck_assert_int_eq(halo_fut_status(f), HALO_FUT_OK);
	ck_assert_int_eq(halo_fut_result(f), 5);
	halo_fut_release(f);
}
END_TEST

START_TEST(test_delayed_future_resolved_early_leaves_the_timers)
{
	halo_fut *f = halo_fut_delayed_failed(&loop, 1000 * MS, -EIO, "late");

	ck_assert_int_eq(halo_fut_resolve(f, 3, NULL), 0);
	ck_assert_uint_eq(halo_timer_pending(&loop), 0);
	ck_assert_int_eq(halo_fut_wait(f), 3);
	ck_assert_ptr_null(halo_fut_error_msg(f));
	halo_fut_release(f);
}
END_TEST

START_TEST(test_detached_delayed_future_still_fires_and_frees)
{
	halo_stats st;

	halo_fut_detach(halo_fut_delayed(&loop, 1 * MS, 0, NULL));
	ck_assert_int_eq(halo_loop_run(&loop), 0);
	halo_loop_stats(&loop, &st);
	ck_assert_uint_eq(st.live_futures, 0);
}
END_TEST

/* Close l with stderr silenced (a test that leaks on purpose); returns the
 * number of leaked futures. */
static int close_quietly(halo_loop *l)
{
	int null = open("/dev/null", O_WRONLY), saved = dup(2), leaked;

	dup2(null, 2);
	leaked = halo_loop_close(l);
	dup2(saved, 2);
	close(saved);
	close(null);
	return leaked;
}

/* A consumer that was handed a future and may or may not look at it. */
struct consumer {
	halo_fut *f;
};

static void hand_over(struct consumer *c, halo_fut *f)
{
	c->f = halo_fut_ref(f);
}

/* Ops have a pool of their own whose free slots look like ops: only the
 * one never consumed is reported, not the freed nor the never-used ones. */
START_TEST(test_leaked_op_is_reported_and_free_op_slots_are_not)
{
	enum { N = 40 };
	halo_loop l;
	int line;
	char want[64];
	halo_fut *f[N];
	halo_stats st;

	tu_loop_init(&l, NULL);
	for (int i = 0; i < N - 1; i++)
		f[i] = halo_nop(&l);
	line = __LINE__ + 1;
	f[N - 1] = halo_nop(&l);
	ck_assert_int_eq(halo_loop_run(&l), 0);
	for (int i = 0; i < N - 1; i++) {
		ck_assert_int_eq(halo_fut_status(f[i]), HALO_FUT_OK);
		halo_fut_release(f[i]);
	}
	halo_loop_stats(&l, &st);
	ck_assert_uint_eq(st.live_futures, 1);
	ck_assert_uint_eq(st.inflight, 0);
	snprintf(want, sizeof(want), "test_fut.c:%d (ok", line);
	close_reports_one_leak(&l, want);
}
END_TEST

START_TEST(test_producer_release_does_not_hide_consumer_leak)
{
	halo_loop l;
	struct consumer c;
	halo_fut *f;

	tu_loop_init(&l, NULL);
	f = halo_fut_new(&l);
	hand_over(&c, f);
	halo_fut_resolve(f, 1, NULL);
	halo_fut_release(f); /* the producer is done with it */
	/* The consumer never waits, reads or detaches c.f. */
	ck_assert_int_eq(close_quietly(&l), 1);
}
END_TEST

START_TEST(test_producer_release_with_consumer_waiting_is_no_leak)
{
	halo_loop l;
	struct consumer c;
	halo_fut *f;

	tu_loop_init(&l, NULL);
	f = halo_fut_new(&l);
	hand_over(&c, f);
	halo_fut_resolve(f, 1, NULL);
	halo_fut_release(f);
	ck_assert_int_eq(halo_fut_wait(c.f), 1);
	/* Even without releasing its reference, the consumer looked. */
	ck_assert_int_eq(close_quietly(&l), 0);
}
END_TEST

START_TEST(test_consumer_detach_is_no_leak)
{
	halo_loop l;
	struct consumer c;
	halo_fut *f;

	tu_loop_init(&l, NULL);
	f = halo_fut_new(&l);
	hand_over(&c, f);
	halo_fut_detach(c.f); /* gives up while the producer still holds f */
	halo_fut_resolve(f, 1, NULL);
	halo_fut_release(f);
	ck_assert_int_eq(close_quietly(&l), 0);
}
END_TEST

START_TEST(test_last_user_release_consumes_despite_internal_refs)
{
	halo_loop l;
	struct consumer c;
	halo_fut *t;

	tu_loop_init(&l, NULL);
	t = halo_timer_after(&l, 60ull * 1000000000ull);
	hand_over(&c, t);
	halo_fut_release(t);
	/* Only the timer heap holds it now: an internal reference, which
	 * neither keeps the future unconsumed nor counts as interest. */
	halo_fut_release(c.f);
	ck_assert_uint_eq(halo_timer_pending(&l), 1);
	ck_assert_int_eq(close_quietly(&l), 0);
}
END_TEST

Suite *fut_suite(void)
{
	Suite *s = suite_create("fut");
	TCase *tc = tcase_create("fut");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(10));
	tcase_add_test(tc, test_promise_resolves_once);
	tcase_add_test(tc, test_promise_fails_with_message);
	tcase_add_test(tc, test_promise_cancel_without_hook);
	tcase_add_test(tc, test_promise_cancel_calls_hook_once);
	tcase_add_test(tc, test_callbacks_run_from_ready_queue_not_inline);
	tcase_add_test(tc, test_wait_in_callback_is_edeadlk);
	tcase_add_test(tc, test_wait_drives_loop_on_owner_thread);
	tcase_add_test(tc, test_wait_on_orphan_promise_is_edeadlk);
	tcase_add_test(tc, test_cancel_before_submission_never_reads);
	tcase_add_test(tc, test_cancel_pending_read_never_writes_buffer);
	tcase_add_test(tc, test_cancel_after_completion_keeps_result);
	tcase_add_test(tc, test_stale_cancel_never_hits_recycled_slot);
	tcase_add_test(tc, test_stale_cqe_never_completes_recycled_slot);
	tcase_add_test(tc, test_stale_cqe_for_a_free_slot_is_counted_and_ignored);
	tcase_add_test(tc, test_detach_lets_work_finish);
	tcase_add_test(tc,
		       test_ready_future_is_ok_at_once_and_calls_back_later);
	tcase_add_test(tc, test_failed_future_carries_errno_and_copied_message);
	tcase_add_test(tc, test_failed_future_without_message);
	tcase_add_test(tc, test_failed_future_with_non_errno_fails_einval);
	tcase_add_test(tc, test_delayed_future_completes_after_its_delay);
	tcase_add_test(tc,
		       test_delayed_failure_shows_its_message_only_once_failed);
	tcase_add_test(tc, test_delayed_future_in_a_fiber);
	tcase_add_test(tc, test_delayed_future_cancelled_before_it_fires);
	tcase_add_test(tc,
		       test_delayed_future_zero_delay_completes_on_next_pass);
	tcase_add_test(tc,
		       test_delayed_future_resolved_early_leaves_the_timers);
	tcase_add_test(tc, test_detached_delayed_future_still_fires_and_frees);
	suite_add_tcase(s, tc);

	tc = tcase_create("leaks");
	tcase_add_test(tc, test_leak_report_names_line);
	tcase_add_test(tc, test_leaked_op_is_reported_and_free_op_slots_are_not);
	tcase_add_test(tc, test_producer_release_does_not_hide_consumer_leak);
	tcase_add_test(tc,
		       test_producer_release_with_consumer_waiting_is_no_leak);
	tcase_add_test(tc, test_consumer_detach_is_no_leak);
	tcase_add_test(tc,
		       test_last_user_release_consumes_despite_internal_refs);
	suite_add_tcase(s, tc);
#ifdef HALO_FAULT
	tc = tcase_create("enomem");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_checked_fixture(tc, tu_fault_reset, tu_fault_reset);
	tcase_add_test(tc,
		       test_fail_without_memory_for_the_message_still_fails);
	suite_add_tcase(s, tc);
#endif
	return s;
}
