/* Deadlines on I/O futures: linked timeouts and timer-issued cancels both
 * end the future with -ETIMEDOUT only after the kernel's CQE; an operation
 * that completes first keeps its result. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/util.h"

#define MS 1000000ull

static halo_loop loop;
static int fds_before;
static int sv[2];

static void setup(void)
{
	fds_before = tu_count_fds();
	tu_loop_init(&loop, NULL);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
}

static void teardown(void)
{
	close(sv[0]);
	close(sv[1]);
	tu_loop_close(&loop);
	ck_assert_int_eq(tu_count_fds(), fds_before);
}

static void expect_timeout(halo_fut *f, uint64_t t0, uint64_t ms)
{
	ck_assert_int_eq(halo_fut_wait(f), -ETIMEDOUT);
	ck_assert_int_eq(halo_fut_status(f), HALO_FUT_ERROR);
	ck_assert_uint_ge(halo_now_ns() - t0, ms * MS - MS);
	/* The kernel's CQE has arrived: it holds nothing any more. */
	ck_assert_uint_eq(loop.stats.inflight, 0);
	halo_fut_release(f);
}

START_TEST(test_recv_deadline_on_silent_socket_times_out_linked)
{
	char buf[8];
	uint64_t t0 = halo_now_ns();
	halo_fut *f = halo_recv(&loop, sv[0], buf, sizeof(buf), 0);
	uint64_t enters;

	ck_assert_int_eq(halo_deadline(f, t0 + 50 * MS), 0);
	enters = loop.stats.enters;
	expect_timeout(f, t0, 50);
	(void)enters;
}
END_TEST

START_TEST(test_recv_deadline_on_silent_socket_times_out_by_timer)
{
	char buf[8];
	uint64_t t0 = halo_now_ns();
	halo_fut *f = halo_recv(&loop, sv[0], buf, sizeof(buf), 0);

	ck_assert_int_eq(halo_deadline_timer(f, t0 + 50 * MS), 0);
	expect_timeout(f, t0, 50);
}
END_TEST

START_TEST(test_deadline_after_submit_uses_timer)
{
	char buf[8];
	uint64_t t0 = halo_now_ns();
	halo_fut *f = halo_recv(&loop, sv[0], buf, sizeof(buf), 0);
	halo_fut *n;

	halo_loop_run_nowait(&loop); /* submitted: no link possible */
	ck_assert_int_eq(halo_deadline(f, t0 + 30 * MS), 0);
	expect_timeout(f, t0, 30);
	/* Not the last SQE: a NOP was prepared after it. */
	f = halo_recv(&loop, sv[0], buf, sizeof(buf), 0);
	n = halo_nop(&loop);
	t0 = halo_now_ns();
	ck_assert_int_eq(halo_deadline(f, t0 + 30 * MS), 0);
	expect_timeout(f, t0, 30);
	ck_assert_int_eq(halo_fut_join(n), 0);
}
END_TEST

START_TEST(test_op_that_completes_first_keeps_its_result)
{
	char buf[8] = { 0 };
	halo_fut *f, *g;

	ck_assert_int_eq(write(sv[1], "hi", 2), 2);
	f = halo_recv(&loop, sv[0], buf, sizeof(buf), 0);
	ck_assert_int_eq(halo_deadline_after(f, 5000 * MS), 0);
	ck_assert_int_eq(halo_fut_join(f), 2);
	ck_assert_int_eq(write(sv[1], "yo", 2), 2);
	g = halo_recv(&loop, sv[0], buf, sizeof(buf), 0);
	ck_assert_int_eq(halo_deadline_timer(g, halo_now_ns() + 5000 * MS), 0);
	ck_assert_int_eq(halo_fut_join(g), 2);
	ck_assert_uint_eq(loop.stats.inflight, 0);
	halo_loop_run_nowait(&loop); /* the deadline's waiter drops the timer */
	ck_assert_uint_eq(halo_timer_pending(&loop), 0);
}
END_TEST

START_TEST(test_deadline_argument_errors)
{
	halo_fut *u = halo_fut_new(&loop), *n;
	char buf[4];

	ck_assert_int_eq(halo_deadline(u, halo_now_ns()), -EINVAL);
	halo_fut_release(u);
	n = halo_nop(&loop);
	halo_fut_wait(n);
	ck_assert_int_eq(halo_deadline(n, halo_now_ns()), -EALREADY);
	halo_fut_release(n);
	n = halo_recv(&loop, sv[0], buf, sizeof(buf), 0);
	ck_assert_int_eq(halo_deadline_after(n, 10 * MS), 0);
	ck_assert_int_eq(halo_deadline_after(n, 10 * MS), -EBUSY);
	ck_assert_int_eq(halo_fut_join(n), -ETIMEDOUT);
}
END_TEST

START_TEST(test_read_full_deadline_stops_resubmitting)
{
	char buf[16];
	uint64_t t0 = halo_now_ns();
	halo_fut *f = halo_read_full(&loop, sv[0], buf, sizeof(buf), -1);

	ck_assert_int_eq(halo_deadline(f, t0 + 50 * MS), 0);
	ck_assert_int_eq(write(sv[1], "part", 4), 4);
	expect_timeout(f, t0, 50);
}
END_TEST

START_TEST(test_accept_deadline_times_out_without_fd_leak)
{
	int lfd = halo_net_listen("127.0.0.1", 0, NULL);
	int before = tu_count_fds();
	uint64_t t0 = halo_now_ns();
	halo_fut *a = halo_accept(&loop, lfd, SOCK_CLOEXEC);

	ck_assert_int_eq(halo_deadline(a, t0 + 20 * MS), 0);
	expect_timeout(a, t0, 20);
	ck_assert_int_eq(tu_count_fds(), before);
	close(lfd);
}
END_TEST

START_TEST(test_user_cancel_beats_deadline)
{
	char buf[8];
	halo_fut *f = halo_recv(&loop, sv[0], buf, sizeof(buf), 0);

	ck_assert_int_eq(halo_deadline_after(f, 5000 * MS), 0);
	halo_loop_run_nowait(&loop);
	ck_assert_int_eq(halo_fut_cancel(f), 0);
	ck_assert_int_eq(halo_fut_join(f), -ECANCELED);
	ck_assert_uint_eq(loop.stats.inflight, 0);
}
END_TEST

Suite *timeout_suite(void)
{
	Suite *s = suite_create("timeout");
	TCase *tc = tcase_create("timeout");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(20));
	tcase_add_test(tc, test_recv_deadline_on_silent_socket_times_out_linked);
	tcase_add_test(tc, test_recv_deadline_on_silent_socket_times_out_by_timer);
	tcase_add_test(tc, test_deadline_after_submit_uses_timer);
	tcase_add_test(tc, test_op_that_completes_first_keeps_its_result);
	tcase_add_test(tc, test_deadline_argument_errors);
	tcase_add_test(tc, test_read_full_deadline_stops_resubmitting);
	tcase_add_test(tc, test_accept_deadline_times_out_without_fd_leak);
	tcase_add_test(tc, test_user_cancel_beats_deadline);
	suite_add_tcase(s, tc);
	return s;
}
