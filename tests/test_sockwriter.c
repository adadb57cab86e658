/* Socket writer: one sendmsg per tick's sends, partial writes continued in
 * order, per-send futures, sticky errors. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "runtime/fault.h"
#include "tests/util.h"

TU_LOOP_FIXTURE(loop)

START_TEST(test_small_sends_of_one_tick_make_one_sendmsg)
{
	static char msgs[50][8];
	halo_fut *f[50];
	halo_sw sw;
	halo_sw_stats st;
	char got[400];
	int sv[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	ck_assert_int_eq(halo_sw_init(&sw, &loop, sv[0], NULL), 0);
	for (int i = 0; i < 50; i++) {
		memset(msgs[i], 'a' + i % 26, 8);
		f[i] = halo_sw_send(&sw, msgs[i], 8);
	}
	for (int i = 0; i < 50; i++)
		ck_assert_int_eq(halo_fut_join(f[i]), 8);
	halo_sw_stats_get(&sw, &st);
	ck_assert_uint_eq(st.syscalls, 1);
	ck_assert_int_eq(read(sv[1], got, sizeof(got)), 400);
	for (int i = 0; i < 400; i++)
		ck_assert_int_eq(got[i], 'a' + (i / 8) % 26);
	ck_assert_int_eq(halo_sw_close(&sw), 0);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

struct reader {
	int fd;
	size_t want, got;
	unsigned char *buf;
};

static int64_t read_all(halo_loop *l, void *arg)
{
	struct reader *r = arg;

	while (r->got < r->want) {
		int64_t n = halo_fut_join(halo_read(l, r->fd, r->buf + r->got,
						    r->want - r->got, -1));
		if (n <= 0)
			return n ? n : -EIO;
		r->got += (size_t)n;
	}
	return 0;
}

START_TEST(test_partial_writes_continue_in_order)
{
	enum { N = 300, LEN = 1000 };
	static unsigned char data[N][LEN], out[N * LEN];
	halo_fut *f[N], *rf;
	halo_sw sw;
	halo_sw_stats st;
	struct reader r;
	int sv[2], small = 4096;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	ck_assert_int_eq(halo_sw_init(&sw, &loop, sv[0], NULL), 0);
	for (int i = 0; i < N; i++) {
		for (int j = 0; j < LEN; j++)
			data[i][j] = (unsigned char)(i * 7 + j);
		f[i] = halo_sw_send(&sw, data[i], LEN);
	}
	r.fd = sv[1];
	r.want = sizeof(out);
	r.got = 0;
	r.buf = out;
	rf = halo_spawn(&loop, read_all, &r);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(halo_fut_join(f[i]), LEN);
	ck_assert_int_eq(halo_fut_join(rf), 0);
	ck_assert_int_eq(memcmp(out, data, sizeof(out)), 0);
	halo_sw_stats_get(&sw, &st);
	ck_assert_uint_lt(st.syscalls, N);
	ck_assert_uint_eq(st.bytes, sizeof(out));
	ck_assert_int_eq(halo_sw_close(&sw), 0);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(test_closed_peer_fails_queued_and_later_sends)
{
	halo_sw sw;
	halo_fut *a, *b;
	int sv[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	close(sv[1]);
	ck_assert_int_eq(halo_sw_init(&sw, &loop, sv[0], NULL), 0);
	a = halo_sw_send(&sw, "hello", 5);
	ck_assert_int_eq(halo_fut_join(a), -EPIPE);
	b = halo_sw_send(&sw, "again", 5);
	ck_assert_int_eq(halo_fut_join(b), -EPIPE);
	ck_assert_int_eq(halo_sw_close(&sw), 0);
	close(sv[0]);
}
END_TEST

START_TEST(test_cancelled_queued_send_is_never_written)
{
	halo_sw sw;
	halo_fut *a, *b, *c;
	char got[64];
	int sv[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	ck_assert_int_eq(halo_sw_init(&sw, &loop, sv[0], NULL), 0);
	a = halo_sw_send(&sw, "aaaa", 4);
	b = halo_sw_send(&sw, "bbbb", 4);
	c = halo_sw_send(&sw, "cccc", 4);
	ck_assert_int_eq(halo_fut_cancel(b), 0);
	ck_assert_int_eq(halo_fut_status(b), HALO_FUT_CANCELLED);
	ck_assert_int_eq(halo_fut_join(a), 4);
	ck_assert_int_eq(halo_fut_join(c), 4);
	ck_assert_int_eq(halo_fut_join(b), -ECANCELED);
	/* b's future is done: its buffer is the caller's again, so its
	 * bytes must not reach the socket. */
	ck_assert_int_eq(recv(sv[1], got, sizeof(got), MSG_DONTWAIT), 8);
	ck_assert_int_eq(memcmp(got, "aaaacccc", 8), 0);
	ck_assert_int_eq(halo_sw_close(&sw), 0);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(test_cancel_of_send_in_flight_completes_after_its_bytes)
{
	enum { LEN = 256 * 1024 };
	static unsigned char data[LEN], out[LEN];
	halo_fut *f, *rf;
	halo_sw sw;
	struct reader r;
	int sv[2], small = 4096;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	ck_assert_int_eq(halo_sw_init(&sw, &loop, sv[0], NULL), 0);
	for (int j = 0; j < LEN; j++)
		data[j] = (unsigned char)(j * 13);
	f = halo_sw_send(&sw, data, LEN);
	for (int i = 0; i < 4; i++)
		ck_assert_int_ge(halo_loop_run_nowait(&loop), 0);
	/* The sendmsg holds data now (or a piece of it went out): the
	 * future may not be done while the kernel can still read data. */
	ck_assert_int_eq(halo_fut_cancel(f), 0);
	ck_assert(!halo_fut_is_done(f));
	r.fd = sv[1];
	r.want = LEN;
	r.got = 0;
	r.buf = out;
	rf = halo_spawn(&loop, read_all, &r);
	ck_assert_int_eq(halo_fut_join(f), LEN);
	ck_assert_int_eq(halo_fut_join(rf), 0);
	ck_assert_int_eq(memcmp(out, data, LEN), 0);
	ck_assert_int_eq(halo_sw_close(&sw), 0);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

#ifdef HALO_FAULT
/* No memory for the sendmsg: retrying every tick would spin for as long as
 * memory stays short, and skipping the queued bytes would corrupt the
 * stream. The writer fails as if the socket had: now and for good. */
START_TEST(test_writer_without_memory_for_its_sendmsg_fails_for_good)
{
	halo_fut *f[2], *later;
	halo_sw sw;
	int sv[2];
	char c;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	ck_assert_int_eq(halo_sw_init(&sw, &loop, sv[0], NULL), 0);
	f[0] = halo_sw_send(&sw, "ab", 2);
	f[1] = halo_sw_send(&sw, "cd", 2);
	halo__fault_arm(HALO_FAULT_SLOT, 1, true);
	ck_assert_int_eq(halo_fut_join(f[0]), -ENOMEM);
	ck_assert_int_eq(halo_fut_join(f[1]), -ENOMEM);
	halo__fault_disarm();
	later = halo_sw_send(&sw, "ef", 2);
	ck_assert_int_eq(halo_fut_join(later), -ENOMEM);
	ck_assert_int_eq(halo_sw_close(&sw), 0);
	ck_assert_int_eq(recv(sv[1], &c, 1, MSG_DONTWAIT), -1);
	close(sv[0]);
	close(sv[1]);
}
END_TEST
#endif

Suite *sockwriter_suite(void)
{
	Suite *s = suite_create("sockwriter");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(30));
	tcase_add_test(tc, test_small_sends_of_one_tick_make_one_sendmsg);
	tcase_add_test(tc, test_partial_writes_continue_in_order);
	tcase_add_test(tc, test_closed_peer_fails_queued_and_later_sends);
	tcase_add_test(tc, test_cancelled_queued_send_is_never_written);
	tcase_add_test(tc, test_cancel_of_send_in_flight_completes_after_its_bytes);
	suite_add_tcase(s, tc);
#ifdef HALO_FAULT
	tc = tcase_create("enomem");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_checked_fixture(tc, tu_fault_reset, tu_fault_reset);
	tcase_set_timeout(tc, tu_timeout(5));
	tcase_add_test(
	    tc, test_writer_without_memory_for_its_sendmsg_fails_for_good);
	suite_add_tcase(s, tc);
#endif
	return s;
}
