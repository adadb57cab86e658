/* The HTTP example server's connection handling (examples/http/server.c) on
 * a loop in this process, driven by plain client sockets on 127.0.0.1. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "examples/http/server.c"
#include "tests/util.h"

static halo_loop loop;
static httpd *srv;
static int lfd, port, fds_before;

static void start_with(uint64_t idle_ms, unsigned max_conns)
{
	httpd_opts o = { .idle_ns = idle_ms * 1000000ull,
			 .max_conns = max_conns };
	int err = 0;

	srv = httpd_start(&loop, lfd, &o, &err);
	ck_assert_msg(srv != NULL, "httpd_start: %d", err);
}

static void setup(void)
{
	fds_before = tu_count_fds();
	tu_loop_init(&loop, NULL);
	lfd = halo_net_listen("127.0.0.1", 0, NULL);
	ck_assert_int_ge(lfd, 0);
	port = halo_net_local_port(lfd);
	srv = NULL;
}

static void teardown(void)
{
	if (srv)
		httpd_stop(srv);
	close(lfd);
	tu_loop_close(&loop);
	ck_assert_int_eq(tu_count_fds(), fds_before);
}

static int client(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
	return fd;
}

/* Drive the loop and read until want bytes came, EOF, or ms passed.
 * Returns the bytes read; *eof says whether the server closed. */
static size_t collect(int fd, char *buf, size_t cap, size_t want, int ms,
		      int *eof)
{
	uint64_t end = halo_now_ns() + (uint64_t)ms * 1000000ull;
	size_t got = 0;

	*eof = 0;
	while (halo_now_ns() < end && (got < want || !want)) {
		ssize_t n;
		halo_loop_run_nowait(&loop);
		n = read(fd, buf + got, cap - 1 - got);
		if (n == 0) {
			*eof = 1;
			break;
		}
		if (n > 0)
			got += (size_t)n;
		else
			usleep(200);
	}
	buf[got] = 0;
	return got;
}

static int count(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

START_TEST(test_get_root_answers_hello_and_keeps_alive)
{
	static char buf[4096];
	const char *req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	int fd, eof;

	start_with(10000, 100);
	fd = client();
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
		collect(fd, buf, sizeof(buf), 1, 2000, &eof);
		while (!strstr(buf, "hello, world!\n") && !eof)
			collect(fd, buf + strlen(buf),
				sizeof(buf) - strlen(buf), 1, 2000, &eof);
		ck_assert_msg(strstr(buf, "HTTP/1.1 200 OK\r\n"), "%s", buf);
		ck_assert(strstr(buf, "Content-Length: 14\r\n"));
		ck_assert(!eof);
		memset(buf, 0, sizeof(buf));
	}
	close(fd);
}
END_TEST

START_TEST(test_pipelined_requests_answered_in_order_in_one_send)
{
	static char buf[8192];
	const char *req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
			  "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
			  "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	uint64_t sqes;
	halo_stats st;
	int fd, eof;
	char *a, *b;

	start_with(10000, 100);
	fd = client();
	for (int i = 0; i < 20; i++)
		halo_loop_run_nowait(&loop); /* accepted, recv armed */
	halo_loop_stats(&loop, &st);
	sqes = st.sqes_submitted;
	ck_assert_int_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	collect(fd, buf, sizeof(buf), 1, 2000, &eof);
	for (int i = 0; i < 50 && count(buf, "HTTP/1.1") < 3; i++)
		collect(fd, buf + strlen(buf), sizeof(buf) - strlen(buf), 1,
			100, &eof);
	ck_assert_int_eq(count(buf, "HTTP/1.1 "), 3);
	a = strstr(buf, "404");
	b = strstr(buf, "200");
	ck_assert(a && b && b < a);
	ck_assert(strstr(a, "200"));
	halo_loop_stats(&loop, &st);
	/* One send for the three answers (plus nothing else on the wire). */
	ck_assert_uint_le(st.sqes_submitted - sqes, 2);
	close(fd);
}
END_TEST

START_TEST(test_oversized_head_gets_431_and_close)
{
	static char buf[4096], req[12000];
	int fd, eof;

	start_with(10000, 100);
	fd = client();
	strcpy(req, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ");
	memset(req + strlen(req), 'a', 9000);
	strcpy(req + strlen(req), "\r\n\r\n");
	ck_assert_int_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	collect(fd, buf, sizeof(buf), 0, 3000, &eof);
	ck_assert_msg(strstr(buf, "HTTP/1.1 431 "), "%s", buf);
	ck_assert_int_eq(eof, 1);
	close(fd);
}
END_TEST

START_TEST(test_malformed_request_gets_400_and_close)
{
	static char buf[4096];
	const char *req = "GET / HTTP/1.1\nHost: x\n\n";
	int fd, eof;

	start_with(10000, 100);
	fd = client();
	ck_assert_int_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	collect(fd, buf, sizeof(buf), 0, 3000, &eof);
	ck_assert_msg(strstr(buf, "HTTP/1.1 400 "), "%s", buf);
	ck_assert_int_eq(eof, 1);
	close(fd);
}
END_TEST

START_TEST(test_slow_partial_head_is_closed_after_idle_deadline)
{
	static char buf[256];
	uint64_t t0;
	int fd, eof;
	httpd_stats st;

	start_with(150, 100);
	fd = client();
	t0 = halo_now_ns();
	/* A byte every 40 ms never completes a head: no renewal. */
	for (int i = 0; i < 20; i++) {
		if (write(fd, "G", 1) != 1)
			break;
		collect(fd, buf, sizeof(buf), 0, 40, &eof);
		if (eof)
			break;
	}
	if (!eof)
		collect(fd, buf, sizeof(buf), 0, 2000, &eof);
	ck_assert_int_eq(eof, 1);
	ck_assert_uint_ge(halo_now_ns() - t0, 140000000ull);
	httpd_get_stats(srv, &st);
	ck_assert_uint_eq(st.timeouts, 1);
	ck_assert_uint_eq(st.conns, 0);
	close(fd);
}
END_TEST

START_TEST(test_connections_beyond_cap_are_closed_at_once)
{
	static char buf[256];
	int fd[3], eof;
	httpd_stats st;

	start_with(10000, 2);
	for (int i = 0; i < 3; i++) {
		fd[i] = client();
		for (int k = 0; k < 20; k++)
			halo_loop_run_nowait(&loop);
	}
	collect(fd[2], buf, sizeof(buf), 0, 2000, &eof);
	ck_assert_int_eq(eof, 1);
	collect(fd[0], buf, sizeof(buf), 0, 50, &eof);
	ck_assert_int_eq(eof, 0);
	httpd_get_stats(srv, &st);
	ck_assert_uint_eq(st.refused, 1);
	ck_assert_uint_eq(st.conns, 2);
	for (int i = 0; i < 3; i++)
		close(fd[i]);
}
END_TEST

START_TEST(test_stop_after_accept_ended_leaves_no_sweep_behind)
{
	halo_stats st;

	start_with(10000, 0);
	/* A listener shut down ends the multishot accept with an error: the
	 * server then has nothing in flight but its sweep timer. */
	ck_assert_int_eq(shutdown(lfd, SHUT_RDWR), 0);
	for (int i = 0; i < 2000 && srv->acc; i++) {
		halo_loop_run_nowait(&loop);
		usleep(500);
	}
	ck_assert_ptr_null(srv->acc);
	httpd_stop(srv);
	srv = NULL;
	/* The sweep's callback must have run before the server was freed,
	 * not be left on the ready queue pointing at it. */
	halo_loop_stats(&loop, &st);
	ck_assert_uint_eq(st.live_futures, 0);
	halo_loop_run_nowait(&loop);
}
END_TEST

Suite *httpd_suite(void)
{
	Suite *s = suite_create("httpd");
	TCase *tc = tcase_create("httpd");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(20));
	tcase_add_test(tc, test_get_root_answers_hello_and_keeps_alive);
	tcase_add_test(tc, test_pipelined_requests_answered_in_order_in_one_send);
	tcase_add_test(tc, test_oversized_head_gets_431_and_close);
	tcase_add_test(tc, test_malformed_request_gets_400_and_close);
	tcase_add_test(tc, test_slow_partial_head_is_closed_after_idle_deadline);
	tcase_add_test(tc, test_connections_beyond_cap_are_closed_at_once);
	tcase_add_test(tc, test_stop_after_accept_ended_leaves_no_sweep_behind);
	suite_add_tcase(s, tc);
	return s;
}
