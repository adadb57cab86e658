/* Socket writer: one sendmsg per tick's sends, partial writes continued in
 * order, per-send futures, sticky errors. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
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

Suite *sockwriter_suite(void)
{
	Suite *s = suite_create("sockwriter");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(30));
	tcase_add_test(tc, test_small_sends_of_one_tick_make_one_sendmsg);
	tcase_add_test(tc, test_partial_writes_continue_in_order);
	tcase_add_test(tc, test_closed_peer_fails_queued_and_later_sends);
	suite_add_tcase(s, tc);
	return s;
}
