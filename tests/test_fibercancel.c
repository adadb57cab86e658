/* Fiber cancellation reaches the kernel: on every path that cancels a fiber
 * (a direct cancel, gather, race, scope, wait with CANCEL_REST, the build
 * deadline, and a fiber that returns without awaiting its read), no
 * operation the fiber started is in flight once its future is done, and a
 * later fiber that gets the recycled stack is untouched when data arrives
 * for the cancelled read. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/util.h"

TU_LOOP_PIPE_FIXTURE(loop, p)

/* The README's reader: its buffer lives on the fiber's stack. */
static int64_t reader(halo_loop *l, void *arg)
{
	char buf[64];

	return halo_fut_join(halo_read(l, *(int *)arg, buf, sizeof(buf), -1));
}

static int64_t fail_soon(halo_loop *l, void *arg)
{
	(void)arg;
	halo_sleep(l, 1000000);
	return -EIO;
}

static int64_t win_soon(halo_loop *l, void *arg)
{
	(void)arg;
	halo_sleep(l, 1000000);
	return 7;
}

#define AREA 8192

struct victim {
	halo_fut *go;
	int filled;
};

/* Covers the top of its stack with a pattern, waits, and checks it. */
static int64_t victim(halo_loop *l, void *arg)
{
	struct victim *v = arg;
	volatile unsigned char area[AREA];

	(void)l;
	for (size_t i = 0; i < AREA; i++)
		area[i] = 0x5a;
	v->filled = 1;
	halo_fut_wait(v->go);
	for (size_t i = 0; i < AREA; i++)
		if (area[i] != 0x5a)
			return -EBADMSG;
	return 0;
}

/* After a cancel path: nothing in flight; a new fiber on the recycled stack
 * keeps its memory when bytes arrive on the pipe the cancelled read was
 * on, and the bytes are still in the pipe (no read consumed them). */
static void assert_stack_safe(void)
{
	struct victim v = {halo_fut_new(&loop), 0};
	halo_fut *f;
	char got[16] = {0};

	ck_assert_uint_eq(tu_inflight(&loop), 0);
	f = halo_spawn(&loop, victim, &v);
	while (!v.filled)
		halo_loop_run_nowait(&loop);
	ck_assert_int_eq(write(p[1], "overwrite!", 10), 10);
	for (int i = 0; i < 5; i++)
		halo_loop_run_nowait(&loop);
	halo_fut_resolve(v.go, 0, NULL);
	ck_assert_int_eq(halo_fut_join(f), 0);
	halo_fut_release(v.go);
	ck_assert_int_eq(read(p[0], got, sizeof(got)), 10);
	ck_assert_str_eq(got, "overwrite!");
}

static void settle(void)
{
	for (int i = 0; i < 3; i++)
		halo_loop_run_nowait(&loop);
}

START_TEST(test_cancelled_reader_never_writes_recycled_stack)
{
	halo_fut *r = halo_spawn(&loop, reader, &p[0]);
	halo_stats st;

	settle();
	ck_assert_uint_eq(tu_inflight(&loop), 1);
	ck_assert_int_eq(halo_fut_cancel(r), 0);
	ck_assert_int_eq(halo_fut_join(r), -ECANCELED);
	halo_loop_stats(&loop, &st);
	ck_assert_uint_eq(st.inflight, 0);
	ck_assert_uint_eq(st.fiber_op_cancels, 1);
	assert_stack_safe();
}
END_TEST

START_TEST(test_gather_cancel_on_error_confirms_reader)
{
	halo_fut *kids[2] = {halo_spawn(&loop, reader, &p[0]),
			     halo_spawn(&loop, fail_soon, NULL)};
	halo_gather_opts o = {.cancel_on_error = true};
	halo_fut *g = halo_gather(&loop, kids, 2, &o);

	ck_assert_int_eq(halo_fut_join(g), -EIO);
	ck_assert_int_eq(halo_fut_status(kids[0]), HALO_FUT_CANCELLED);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	halo_fut_release(kids[0]);
	halo_fut_release(kids[1]);
	assert_stack_safe();
}
END_TEST

START_TEST(test_race_loser_is_confirmed_before_the_race_ends)
{
	halo_fut *kids[2] = {halo_spawn(&loop, reader, &p[0]),
			     halo_spawn(&loop, win_soon, NULL)};
	halo_fut *r = halo_race(&loop, kids, 2);

	ck_assert_int_eq(halo_fut_join(r), 7);
	ck_assert(halo_fut_is_done(kids[0]));
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	halo_fut_release(kids[0]);
	halo_fut_release(kids[1]);
	assert_stack_safe();
}
END_TEST

START_TEST(test_scope_cancel_confirms_every_reader)
{
	halo_scope s;

	halo_scope_init(&s, &loop, NULL);
	ck_assert_ptr_nonnull(halo_scope_spawn(&s, reader, &p[0]));
	ck_assert_ptr_nonnull(halo_scope_spawn(&s, reader, &p[0]));
	settle();
	ck_assert_uint_eq(tu_inflight(&loop), 2);
	halo_scope_cancel(&s);
	ck_assert_int_eq(halo_scope_close(&s), -ECANCELED);
	assert_stack_safe();
}
END_TEST

START_TEST(test_wait_cancel_rest_at_deadline_confirms_reader)
{
	halo_fut *f = halo_spawn(&loop, reader, &p[0]);
	halo_wait_result w =
		halo_wait(&loop, &f, 1, HALO_ALL_COMPLETED | HALO_WAIT_CANCEL_REST,
			  halo_now_ns() + 20000000ull);

	ck_assert_int_eq(w.status, -ETIMEDOUT);
	ck_assert_int_eq(halo_fut_status(f), HALO_FUT_CANCELLED);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	halo_fut_release(f);
	assert_stack_safe();
}
END_TEST

static halo_fut *start_reader(halo_loop *l, void *arg)
{
	return halo_spawn(l, reader, arg);
}

static int present_any(halo_loop *l, void *arg, halo_fut *f)
{
	(void)l;
	(void)arg;
	return (int)halo_fut_result(f);
}

START_TEST(test_build_deadline_confirms_reader)
{
	halo_build_unit u = {.name = "slow", .start = start_reader,
			     .present = present_any, .arg = &p[0]};
	halo_build_opts o = {.deadline_ns = halo_now_ns() + 20000000ull};
	halo_build_report rep = halo_build(&loop, &u, 1, &o);

	ck_assert_uint_eq(rep.missed_n, 1);
	ck_assert_int_eq(u.err, -ETIMEDOUT);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	halo_build_report_release(&loop, &rep);
	assert_stack_safe();
}
END_TEST

static int64_t read_and_return(halo_loop *l, void *arg)
{
	char buf[64];

	halo_fut_detach(halo_read(l, *(int *)arg, buf, sizeof(buf), -1));
	return 5;
}

START_TEST(test_fiber_returning_without_awaiting_its_read_is_held)
{
	halo_fut *f = halo_spawn(&loop, read_and_return, &p[0]);
	halo_stats st;

	ck_assert_int_eq(halo_fut_join(f), 5);
	halo_loop_stats(&loop, &st);
	ck_assert_uint_eq(st.inflight, 0);
	ck_assert_uint_eq(st.fiber_exit_drains, 1);
	ck_assert_uint_eq(st.fiber_op_cancels, 1);
	assert_stack_safe();
}
END_TEST

/* The wait that returns -ECANCELED returns when the kernel is done. */
struct seen {
	int fd;
	int64_t r;
	uint64_t inflight;
};

static int64_t reader_records(halo_loop *l, void *arg)
{
	struct seen *s = arg;
	char buf[64];
	halo_fut *rd = halo_read(l, s->fd, buf, sizeof(buf), -1);

	s->r = halo_fut_wait(rd);
	s->inflight = tu_inflight(l);
	halo_fut_release(rd);
	return s->r;
}

START_TEST(test_cancelled_wait_returns_after_kernel_confirmed)
{
	struct seen s = {p[0], 0, 99};
	halo_fut *f = halo_spawn(&loop, reader_records, &s);

	settle();
	halo_fut_cancel(f);
	ck_assert_int_eq(halo_fut_join(f), -ECANCELED);
	ck_assert_int_eq(s.r, -ECANCELED);
	ck_assert_uint_eq(s.inflight, 0);
}
END_TEST

/* Ops it never waited on are cancelled with the one it waits on. */
static int64_t two_reads(halo_loop *l, void *arg)
{
	int *fds = arg;
	char a[8], b[8];
	halo_fut *x = halo_read(l, fds[0], a, sizeof(a), -1);
	halo_fut *y = halo_read(l, fds[1], b, sizeof(b), -1);
	int64_t r = halo_fut_wait(x);

	halo_fut_release(x);
	halo_fut_release(y);
	return r;
}

START_TEST(test_cancel_reaches_every_op_the_fiber_started)
{
	int q[2];
	int fds[2];
	halo_fut *f;

	ck_assert_int_eq(pipe(q), 0);
	fds[0] = p[0];
	fds[1] = q[0];
	f = halo_spawn(&loop, two_reads, fds);
	settle();
	ck_assert_uint_eq(tu_inflight(&loop), 2);
	halo_fut_cancel(f);
	ck_assert_int_eq(halo_fut_join(f), -ECANCELED);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	close(q[0]);
	close(q[1]);
}
END_TEST

/* A future the fiber did not start stays alive for its other waiters. */
static int64_t wait_on(halo_loop *l, void *arg)
{
	(void)l;
	return halo_fut_wait(arg);
}

START_TEST(test_shared_future_survives_a_cancelled_waiter)
{
	char buf[16] = {0};
	halo_fut *rd = halo_read(&loop, p[0], buf, sizeof(buf), -1);
	halo_fut *a = halo_spawn(&loop, wait_on, rd);
	halo_fut *b = halo_spawn(&loop, wait_on, rd);

	settle();
	halo_fut_cancel(a);
	ck_assert_int_eq(halo_fut_join(a), -ECANCELED);
	ck_assert(!halo_fut_is_done(rd));
	ck_assert_uint_eq(tu_inflight(&loop), 1);
	ck_assert_int_eq(write(p[1], "shared", 6), 6);
	ck_assert_int_eq(halo_fut_join(b), 6);
	ck_assert_int_eq(halo_fut_join(rd), 6);
	ck_assert_str_eq(buf, "shared");
}
END_TEST

struct self {
	halo_fut *me;
	int fd;
};

static int64_t cancel_self_then_read(halo_loop *l, void *arg)
{
	struct self *s = arg;
	char buf[8];
	halo_fut *rd;
	int64_t r;

	while (!s->me)
		halo_yield(l);
	rd = halo_read(l, s->fd, buf, sizeof(buf), -1);
	halo_fut_cancel(s->me);
	r = halo_fut_wait(rd); /* the request interrupts this wait */
	ck_assert_uint_eq(tu_inflight(l), 0);
	ck_assert_int_eq(halo_fut_status(rd), HALO_FUT_CANCELLED);
	halo_fut_release(rd);
	return r;
}

START_TEST(test_running_fiber_cancelled_cancels_its_ops_at_next_wait)
{
	struct self s = {NULL, p[0]};
	halo_fut *f = halo_spawn(&loop, cancel_self_then_read, &s);

	s.me = f;
	ck_assert_int_eq(halo_fut_join(f), -ECANCELED);
}
END_TEST

struct heapbuf {
	int fd;
	char *buf;
	halo_fut *rd;
};

static int64_t start_disowned(halo_loop *l, void *arg)
{
	struct heapbuf *h = arg;

	h->rd = halo_read(l, h->fd, h->buf, 16, -1);
	ck_assert_int_eq(halo_fiber_disown(h->rd), 0);
	return 0;
}

START_TEST(test_disowned_op_outlives_its_fiber)
{
	struct heapbuf h = {p[0], calloc(1, 16), NULL};
	halo_stats st;

	ck_assert_int_eq(halo_fut_join(halo_spawn(&loop, start_disowned, &h)),
			 0);
	halo_loop_stats(&loop, &st);
	ck_assert_uint_eq(st.inflight, 1);
	ck_assert_uint_eq(st.fiber_exit_drains, 0);
	ck_assert_int_eq(write(p[1], "later", 5), 5);
	ck_assert_int_eq(halo_fut_join(h.rd), 5);
	ck_assert_str_eq(h.buf, "later");
	free(h.buf);
	h.rd = halo_fut_new(&loop);
	ck_assert_int_eq(halo_fiber_disown(h.rd), -EINVAL);
	halo_fut_release(h.rd);
}
END_TEST

static void on_poll(halo_poll_ms *h, int revents, void *arg)
{
	(void)h;
	*(int *)arg = revents;
}

struct pollwatch {
	int fd;
	int got;
	halo_poll_ms *h;
};

static int64_t start_poll(halo_loop *l, void *arg)
{
	struct pollwatch *w = arg;

	w->h = halo_poll_ms_start(l, w->fd, POLLIN, on_poll, &w->got);
	return w->h ? 0 : -ENOMEM;
}

START_TEST(test_multishot_handle_outlives_its_fiber)
{
	struct pollwatch w = {p[0], 0, NULL};

	ck_assert_int_eq(halo_fut_join(halo_spawn(&loop, start_poll, &w)), 0);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	while (!w.got)
		halo_loop_run_once(&loop);
	ck_assert(w.got & POLLIN);
	halo_poll_ms_stop(w.h);
	while (tu_inflight(&loop))
		halo_loop_run_once(&loop);
}
END_TEST

static int64_t close_and_return(halo_loop *l, void *arg)
{
	halo_fut_detach(halo_close(l, *(int *)arg));
	return 0;
}

START_TEST(test_detached_close_outlives_its_fiber)
{
	int q[2];

	ck_assert_int_eq(pipe(q), 0);
	ck_assert_int_eq(halo_fut_join(halo_spawn(&loop, close_and_return,
						  &q[0])), 0);
	while (tu_inflight(&loop))
		halo_loop_run_once(&loop);
	errno = 0;
	ck_assert_int_eq(fcntl(q[0], F_GETFD), -1);
	ck_assert_int_eq(errno, EBADF);
	close(q[1]);
}
END_TEST

static int64_t fail_with_msg(halo_loop *l, void *arg)
{
	(void)arg;
	return halo_fiber_fail(l, -EPROTO, "bad header");
}

static int64_t return_ptr(halo_loop *l, void *arg)
{
	ck_assert_int_eq(halo_fiber_set_value(l, arg), 0);
	return 1;
}

START_TEST(test_fiber_ends_with_message_or_pointer)
{
	static int thing;
	halo_fut *e = halo_spawn(&loop, fail_with_msg, NULL);
	halo_fut *v = halo_spawn(&loop, return_ptr, &thing);

	ck_assert_int_eq(halo_fut_wait(e), -EPROTO);
	ck_assert_int_eq(halo_fut_status(e), HALO_FUT_ERROR);
	ck_assert_str_eq(halo_fut_error_msg(e), "bad header");
	ck_assert_int_eq(halo_fut_wait(v), 1);
	ck_assert_ptr_eq(halo_fut_value(v), &thing);
	halo_fut_release(e);
	halo_fut_release(v);
	ck_assert_int_eq(halo_fiber_fail(&loop, -EIO, "x"), -EPERM);
	ck_assert_int_eq(halo_fiber_set_value(&loop, NULL), -EPERM);
}
END_TEST

Suite *fibercancel_suite(void)
{
	Suite *s = suite_create("fibercancel");
	TCase *tc = tcase_create("paths");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(10));
	tcase_add_test(tc, test_cancelled_reader_never_writes_recycled_stack);
	tcase_add_test(tc, test_gather_cancel_on_error_confirms_reader);
	tcase_add_test(tc, test_race_loser_is_confirmed_before_the_race_ends);
	tcase_add_test(tc, test_scope_cancel_confirms_every_reader);
	tcase_add_test(tc, test_wait_cancel_rest_at_deadline_confirms_reader);
	tcase_add_test(tc, test_build_deadline_confirms_reader);
	tcase_add_test(tc, test_fiber_returning_without_awaiting_its_read_is_held);
	tcase_add_test(tc, test_cancelled_wait_returns_after_kernel_confirmed);
	tcase_add_test(tc, test_cancel_reaches_every_op_the_fiber_started);
	tcase_add_test(tc, test_shared_future_survives_a_cancelled_waiter);
	tcase_add_test(tc, test_running_fiber_cancelled_cancels_its_ops_at_next_wait);
	tcase_add_test(tc, test_disowned_op_outlives_its_fiber);
	tcase_add_test(tc, test_multishot_handle_outlives_its_fiber);
	tcase_add_test(tc, test_detached_close_outlives_its_fiber);
	tcase_add_test(tc, test_fiber_ends_with_message_or_pointer);
	suite_add_tcase(s, tc);
	return s;
}
