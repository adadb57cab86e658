/* Poll: one-shot readiness as a future, multishot poll with a callback per
 * event, stop, and re-arming after the kernel ends the multishot. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/util.h"

static halo_loop loop;
static int fds_before;

static void setup(void)
{
	fds_before = tu_count_fds();
	tu_loop_init(&loop, NULL);
}

static void teardown(void)
{
	tu_loop_close(&loop);
	ck_assert_int_eq(tu_count_fds(), fds_before);
}

START_TEST(test_poll_completes_with_revents_when_readable)
{
	int p[2];
	halo_fut *f;

	ck_assert_int_eq(pipe(p), 0);
	f = halo_poll(&loop, p[0], POLLIN);
	for (int i = 0; i < 3; i++)
		halo_loop_run_nowait(&loop);
	ck_assert(!halo_fut_is_done(f));
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	ck_assert_int_eq(halo_fut_join(f) & POLLIN, POLLIN);
	f = halo_poll(&loop, p[1], POLLOUT);
	ck_assert_int_eq(halo_fut_join(f) & POLLOUT, POLLOUT);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(test_poll_cancel_ends_cancelled)
{
	int p[2];
	halo_fut *f;

	ck_assert_int_eq(pipe(p), 0);
	f = halo_poll(&loop, p[0], POLLIN);
	halo_loop_run_nowait(&loop);
	ck_assert_int_eq(halo_fut_cancel(f), 0);
	ck_assert_int_eq(halo_fut_join(f), -ECANCELED);
	ck_assert_uint_eq(loop.stats.inflight, 0);
	close(p[0]);
	close(p[1]);
}
END_TEST

struct counter {
	int events;
	int last;
	int fd;
	int drain;
	halo_poll_ms *h;
	int stop_at;
};

static void count_cb(halo_poll_ms *h, int revents, void *arg)
{
	struct counter *c = arg;
	char buf[64];

	(void)h;
	c->last = revents;
	if (revents < 0)
		return;
	c->events++;
	if (c->drain)
		while (read(c->fd, buf, sizeof(buf)) > 0)
			;
	if (c->stop_at && c->events == c->stop_at)
		ck_assert_int_eq(halo_poll_ms_stop(h), 0);
}

START_TEST(test_poll_multishot_calls_back_per_event_until_stopped)
{
	int sv[2];
	struct counter c = { 0 };

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv),
			 0);
	c.fd = sv[0];
	c.drain = 1;
	c.h = halo_poll_ms_start(&loop, sv[0], POLLIN, count_cb, &c);
	ck_assert_ptr_nonnull(c.h);
	for (int i = 1; i <= 5; i++) {
		ck_assert_int_eq(write(sv[1], "e", 1), 1);
		for (int k = 0; k < 100 && c.events < i; k++)
			halo_loop_run_once(&loop);
		ck_assert_int_eq(c.events, i);
	}
	ck_assert_int_eq(halo_poll_ms_stop(c.h), 0);
	ck_assert_int_eq(write(sv[1], "e", 1), 1);
	while (loop.stats.inflight)
		halo_loop_run_once(&loop);
	ck_assert_int_eq(c.events, 5);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* What a multishot handler reads of stats.inflight while the loop reaps:
 * its own poll and a pending read, though the CQEs of the batch that come
 * after its own (a NOP's, here) are not handled yet. */
static uint64_t seen_inflight;

static void stats_cb(halo_poll_ms *h, int revents, void *arg)
{
	halo_stats st;
	char buf[8];

	(void)h;
	if (revents < 0)
		return;
	while (read(*(int *)arg, buf, sizeof(buf)) > 0)
		;
	halo_loop_stats(&loop, &st);
	seen_inflight = st.inflight;
}

START_TEST(test_poll_multishot_handler_sees_exact_inflight)
{
	int sv[2], p[2];
	char b;
	halo_poll_ms *h;
	halo_fut *rd, *nop;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv),
			 0);
	ck_assert_int_eq(pipe(p), 0);
	rd = halo_read(&loop, p[0], &b, 1, -1);
	h = halo_poll_ms_start(&loop, sv[0], POLLIN, stats_cb, &sv[0]);
	ck_assert_ptr_nonnull(h);
	halo_loop_run_nowait(&loop); /* both armed */
	ck_assert_int_eq(write(sv[1], "e", 1), 1);
	nop = halo_nop(&loop);	     /* its CQE follows the poll's */
	seen_inflight = 0;
	for (int k = 0; k < 100 && !seen_inflight; k++)
		halo_loop_run_once(&loop);
	/* The read, the poll, and the NOP if its CQE was still to come. */
	ck_assert_uint_ge(seen_inflight, 2);
	ck_assert_uint_le(seen_inflight, 3);
	ck_assert_int_eq(halo_fut_join(nop), 0);
	ck_assert_int_eq(halo_poll_ms_stop(h), 0);
	ck_assert_int_eq(write(p[1], "r", 1), 1);
	ck_assert_int_eq(halo_fut_join(rd), 1);
	while (loop.stats.inflight)
		halo_loop_run_once(&loop);
	close(sv[0]);
	close(sv[1]);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(test_poll_multishot_stop_inside_callback)
{
	int sv[2];
	struct counter c = { 0 };

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv),
			 0);
	c.fd = sv[0];
	c.drain = 1;
	c.stop_at = 1;
	c.h = halo_poll_ms_start(&loop, sv[0], POLLIN, count_cb, &c);
	ck_assert_int_eq(write(sv[1], "e", 1), 1);
	while (loop.stats.inflight)
		halo_loop_run_once(&loop);
	ck_assert_int_eq(c.events, 1);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(test_poll_multishot_stop_before_submit)
{
	int p[2];
	struct counter c = { 0 };
	halo_poll_ms *h;

	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(write(p[1], "e", 1), 1);
	h = halo_poll_ms_start(&loop, p[0], POLLIN, count_cb, &c);
	ck_assert_int_eq(halo_poll_ms_stop(h), 0);
	while (loop.stats.inflight)
		halo_loop_run_once(&loop);
	ck_assert_int_eq(c.events, 0);
	close(p[0]);
	close(p[1]);
}
END_TEST

/* A small CQ overflows with 64 polls firing at once; older kernels end a
 * multishot they cannot post to, and halo re-arms it. Every poll must keep
 * reporting new data afterwards. */
START_TEST(test_poll_multishot_keeps_reporting_after_cq_overflow)
{
	enum { N = 64 };
	halo_loop_opts o = { .sq_entries = 16, .max_inflight = 16 };
	int p[N][2];
	struct counter c[N];
	halo_poll_ms *h[N];
	uint64_t rearms = 0;

	tu_loop_close(&loop);
	tu_loop_init(&loop, &o);
	memset(c, 0, sizeof(c));
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(pipe2(p[i], O_NONBLOCK), 0);
		c[i].fd = p[i][0];
		h[i] = halo_poll_ms_start(&loop, p[i][0], POLLIN, count_cb,
					  &c[i]);
		ck_assert_ptr_nonnull(h[i]);
	}
	halo_loop_run_nowait(&loop);
	/* Level-triggered and never drained: every tick may bring events. */
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(write(p[i][1], "e", 1), 1);
	for (int round = 0; round < 50; round++)
		halo_loop_run_nowait(&loop);
	for (int i = 0; i < N; i++) {
		ck_assert_int_ge(c[i].events, 1);
		rearms += halo_poll_ms_rearms(h[i]);
	}
	/* Drain and write again: re-armed polls still see new data. */
	for (int i = 0; i < N; i++) {
		char b;
		ck_assert_int_eq(read(p[i][0], &b, 1), 1);
		c[i].events = 0;
		c[i].drain = 1;
	}
	halo_loop_run_nowait(&loop);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(write(p[i][1], "f", 1), 1);
	for (int round = 0; round < 200; round++) {
		int missing = 0;
		halo_loop_run_nowait(&loop);
		for (int i = 0; i < N; i++)
			missing += c[i].events == 0;
		if (!missing)
			break;
	}
	for (int i = 0; i < N; i++)
		ck_assert_int_ge(c[i].events, 1);
	for (int i = 0; i < N; i++)
		halo_poll_ms_stop(h[i]);
	while (loop.stats.inflight)
		halo_loop_run_once(&loop);
	for (int i = 0; i < N; i++) {
		close(p[i][0]);
		close(p[i][1]);
	}
	/* Whether the kernel ended a multishot (re-armed) or kept it across
	 * the overflow depends on its version; either way no event is lost. */
	(void)rearms;
}
END_TEST

Suite *poll_suite(void)
{
	Suite *s = suite_create("poll");
	TCase *tc = tcase_create("poll");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(20));
	tcase_add_test(tc, test_poll_completes_with_revents_when_readable);
	tcase_add_test(tc, test_poll_cancel_ends_cancelled);
	tcase_add_test(tc, test_poll_multishot_calls_back_per_event_until_stopped);
	tcase_add_test(tc, test_poll_multishot_stop_inside_callback);
	tcase_add_test(tc, test_poll_multishot_handler_sees_exact_inflight);
	tcase_add_test(tc, test_poll_multishot_stop_before_submit);
	tcase_add_test(tc, test_poll_multishot_keeps_reporting_after_cq_overflow);
	suite_add_tcase(s, tc);
	return s;
}
