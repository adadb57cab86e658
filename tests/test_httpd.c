/* The HTTP example server (examples/http/server.c) on a loop in this
 * process, driven by plain client sockets on 127.0.0.1; and the example
 * binary itself, run as a child, for its arguments and its signals. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "examples/http/server.c"
#include "tests/util.h"

#define MS 1000000ull

extern char **environ;

static const char get[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
static const char ok[] = "HTTP/1.1 200 OK\r\n"
			 "Content-Type: text/plain\r\n"
			 "Content-Length: 14\r\n"
			 "Connection: keep-alive\r\n\r\n"
			 "hello, world!\n";

static halo_loop loop;
static httpd h;
static bool started;
static int lfd, port, fds_before;

static void start_opts(halo_server_opts *o)
{
	int err = httpd_start(&h, &loop, lfd, o);

	ck_assert_msg(err == 0, "httpd_start: %d", err);
	started = true;
}

static void start_with(uint64_t idle_ms, unsigned max_conns)
{
	halo_server_opts o = {.idle_ns = idle_ms * MS, .max_conns = max_conns};

	start_opts(&o);
}

static struct sigaction old_pipe;

static void setup(void)
{
	/* A write to a closed peer is EPIPE; restored in teardown, so that
	 * CK_FORK=no leaves the process as it found it. */
	struct sigaction ign = {.sa_handler = SIG_IGN};

	sigaction(SIGPIPE, &ign, &old_pipe);
	fds_before = tu_count_fds();
	tu_loop_init(&loop, NULL);
	lfd = halo_net_listen("127.0.0.1", 0, NULL);
	ck_assert_int_ge(lfd, 0);
	port = halo_net_local_port(lfd);
	started = false;
}

static void teardown(void)
{
	if (started)
		ck_assert_int_eq(httpd_stop(&h, 0), 0);
	close(lfd);
	tu_loop_close(&loop);
	sigaction(SIGPIPE, &old_pipe, NULL);
	ck_assert_int_eq(tu_count_fds(), fds_before);
}

/* A client socket; rcvbuf > 0 sets a small receive buffer before the
 * connect, so that the window it advertises stays small. */
static int client_rcvbuf(int rcvbuf)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	if (rcvbuf)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
	return fd;
}

static int client(void)
{
	return client_rcvbuf(0);
}

/* Write all of buf, driving the loop while the socket is full. */
static void send_all(int fd, const char *buf, size_t len)
{
	uint64_t end = halo_now_ns() + 10000 * MS;
	size_t off = 0;

	while (off < len) {
		ssize_t n = write(fd, buf + off, len - off);

		if (n > 0)
			off += (size_t)n;
		else
			ck_assert_int_eq(errno, EAGAIN);
		halo_loop_run_nowait(&loop);
		ck_assert_msg(halo_now_ns() < end, "sent %zu of %zu", off,
			      len);
	}
}

static void send_str(int fd, const char *s)
{
	send_all(fd, s, strlen(s));
}

/* Drive the loop and read until want bytes came, EOF, or ms passed.
 * Returns the bytes read; *eof says whether the server closed. */
static size_t collect(int fd, char *buf, size_t cap, size_t want, int ms,
		      int *eof)
{
	uint64_t end = halo_now_ns() + (uint64_t)ms * MS;
	size_t got = 0;

	*eof = 0;
	while (halo_now_ns() < end && (got < want || !want)) {
		ssize_t n;

		halo_loop_run_nowait(&loop);
		n = read(fd, buf + got, cap - 1 - got);
		/* Closed: an EOF, or a reset when input was still unread. */
		if (n == 0 || (n < 0 && errno != EAGAIN)) {
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

/* Drive the loop until the server has n connections open. */
static void until_open(unsigned n, uint64_t ms)
{
	uint64_t end = halo_now_ns() + ms * MS;
	halo_server_stats st;

	do {
		halo_loop_run_nowait(&loop);
		halo_server_stats_get(h.srv, &st);
		if (st.open == n)
			return;
		usleep(100);
	} while (halo_now_ns() < end);
	ck_abort_msg("%u connections open after %llu ms, not %u", st.open,
		     (unsigned long long)ms, n);
}

static int count(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

/* One request on a fresh connection; the whole answer until EOF or
 * 300 ms of quiet is in buf. Returns whether the server closed. */
static int ask(const char *req, char *buf, size_t cap)
{
	int fd = client(), eof;

	send_str(fd, req);
	collect(fd, buf, cap, 0, 300, &eof);
	close(fd);
	return eof;
}

START_TEST(test_get_root_answers_hello_and_keeps_alive)
{
	static char buf[4096];
	int fd, eof;

	start_with(10000, 100);
	fd = client();
	for (int i = 0; i < 3; i++) {
		send_str(fd, get);
		collect(fd, buf, sizeof(buf), strlen(ok), 2000, &eof);
		ck_assert_str_eq(buf, ok);
		ck_assert(!eof);
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
	halo_server_stats cs;
	halo_stats st;
	int fd, eof;
	char *a, *b;

	start_with(10000, 100);
	fd = client();
	until_open(1, 2000);
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
	halo_server_stats_get(h.srv, &cs);
	ck_assert_uint_eq(cs.sends, 1);
	ck_assert_uint_eq(h.requests, 3);
	close(fd);
}
END_TEST

START_TEST(test_head_404_and_bodies_keep_todays_answers)
{
	static char buf[4096];
	static const char head[] = "HTTP/1.1 200 OK\r\n"
				   "Content-Type: text/plain\r\n"
				   "Content-Length: 14\r\n"
				   "Connection: keep-alive\r\n\r\n";
	static const char nf[] = "HTTP/1.1 404 Not Found\r\n"
				 "Content-Type: text/plain\r\n"
				 "Content-Length: 10\r\n"
				 "Connection: keep-alive\r\n\r\n"
				 "not found\n";
	const size_t nf_head_n = strlen(nf) - strlen("not found\n");
	int fd, eof;

	start_with(10000, 100);
	fd = client();
	send_str(fd, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
	collect(fd, buf, sizeof(buf), strlen(head), 2000, &eof);
	ck_assert_str_eq(buf, head);
	send_str(fd, "GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n");
	collect(fd, buf, sizeof(buf), strlen(nf), 2000, &eof);
	ck_assert_str_eq(buf, nf);
	/* A HEAD gets no body, a 404 neither: the next answer follows
	 * the head at once. */
	send_str(fd, "HEAD /index.html HTTP/1.1\r\nHost: x\r\n\r\n");
	send_str(fd, get);
	collect(fd, buf, sizeof(buf), nf_head_n + strlen(ok), 2000, &eof);
	ck_assert(strncmp(buf, nf, nf_head_n) == 0);
	ck_assert_str_eq(buf + nf_head_n, ok);
	/* POST / is no GET: 404, and its body, split over two receives,
	 * is skipped rather than taken for the next request. */
	send_str(fd, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
		     "\r\nGET /x");
	collect(fd, buf, sizeof(buf), strlen(nf), 2000, &eof);
	ck_assert_str_eq(buf, nf);
	send_str(fd, "yzwv");
	send_str(fd, get);
	collect(fd, buf, sizeof(buf), strlen(ok), 2000, &eof);
	ck_assert_str_eq(buf, ok);
	ck_assert(!eof);
	/* HTTP/1.0 without keep-alive: answered, then closed. */
	send_str(fd, "GET / HTTP/1.0\r\n\r\n");
	collect(fd, buf, sizeof(buf), 0, 2000, &eof);
	ck_assert_msg(strstr(buf, "HTTP/1.1 200 OK\r\n"), "%s", buf);
	ck_assert(strstr(buf, "Connection: close\r\n"));
	ck_assert(strstr(buf, "hello, world!\n"));
	ck_assert_int_eq(eof, 1);
	ck_assert_uint_eq(h.requests, 7);
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
	send_str(fd, req);
	collect(fd, buf, sizeof(buf), 0, 3000, &eof);
	ck_assert_msg(strstr(buf, "HTTP/1.1 431 "), "%s", buf);
	ck_assert_int_eq(eof, 1);
	ck_assert_uint_eq(h.bad, 1);
	close(fd);
}
END_TEST

START_TEST(test_malformed_request_gets_400_and_close)
{
	static char buf[4096];
	int fd, eof;

	start_with(10000, 100);
	fd = client();
	send_str(fd, "GET / HTTP/1.1\nHost: x\n\n");
	collect(fd, buf, sizeof(buf), 0, 3000, &eof);
	ck_assert_msg(strstr(buf, "HTTP/1.1 400 "), "%s", buf);
	ck_assert_int_eq(eof, 1);
	close(fd);
}
END_TEST

START_TEST(test_invalid_or_missing_host_gets_400_and_close)
{
	static const char *const reqs[] = {
		"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\x80\r\n\r\n",
		"GET / HTTP/1.1\r\nHost:\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.0\r\nHost: [::1\r\n\r\n",
	};
	static char buf[4096];

	start_with(10000, 100);
	for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		ck_assert_msg(ask(reqs[i], buf, sizeof(buf)), "%zu: no close",
			      i);
		ck_assert_msg(!strncmp(buf, "HTTP/1.1 400 Bad Request\r\n", 26),
			      "%zu: %s", i, buf);
	}
	ck_assert_uint_eq(h.bad, sizeof(reqs) / sizeof(reqs[0]));
	ck_assert_uint_eq(h.requests, 0);
}
END_TEST

START_TEST(test_valid_hosts_get_200)
{
	static const char *const reqs[] = {
		"GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost:  example.com \r\n\r\n",
	};
	static char buf[4096];
	int fd, eof;

	start_with(10000, 100);
	fd = client();
	for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		send_str(fd, reqs[i]);
		collect(fd, buf, sizeof(buf), strlen(ok), 2000, &eof);
		ck_assert_msg(strcmp(buf, ok) == 0, "%zu: %s", i, buf);
	}
	/* HTTP/1.0 may leave Host out. */
	ck_assert(ask("GET / HTTP/1.0\r\n\r\n", buf, sizeof(buf)));
	ck_assert_msg(strstr(buf, "HTTP/1.1 200 OK\r\n"), "%s", buf);
	ck_assert_uint_eq(h.bad, 0);
	close(fd);
}
END_TEST

START_TEST(test_slowloris_is_closed_by_the_head_deadline)
{
	halo_server_opts o = {.idle_ns = 10000 * MS, .head_ns = 300 * MS};
	static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: yes";
	static char buf[256];
	halo_server_stats st;
	uint64_t t0;
	int fd, eof = 0;

	start_opts(&o);
	fd = client();
	t0 = halo_now_ns();
	/* A byte every 50 ms keeps bytes moving but never ends the head. */
	for (size_t i = 0; i < sizeof(req) - 1 && !eof; i++) {
		if (write(fd, req + i, 1) != 1)
			break;
		collect(fd, buf, sizeof(buf), 0, 50, &eof);
	}
	if (!eof)
		collect(fd, buf, sizeof(buf), 0, 2000, &eof);
	ck_assert_int_eq(eof, 1);
	ck_assert_uint_ge(halo_now_ns() - t0, 250 * MS);
	ck_assert_uint_lt(halo_now_ns() - t0, 1500 * MS);
	until_open(0, 2000);
	halo_server_stats_get(h.srv, &st);
	ck_assert_uint_eq(st.timeouts_head, 1);
	ck_assert_uint_eq(st.timeouts_idle, 0);
	close(fd);
}
END_TEST

START_TEST(test_silent_connection_is_closed_by_the_idle_deadline)
{
	static char buf[4096];
	halo_server_stats st;
	uint64_t t0;
	int fd, eof;

	start_with(150, 100);
	fd = client();
	send_str(fd, get);
	collect(fd, buf, sizeof(buf), strlen(ok), 2000, &eof);
	ck_assert_str_eq(buf, ok);
	t0 = halo_now_ns();
	collect(fd, buf, sizeof(buf), 0, 3000, &eof);
	ck_assert_int_eq(eof, 1);
	ck_assert_uint_ge(halo_now_ns() - t0, 100 * MS);
	until_open(0, 2000);
	halo_server_stats_get(h.srv, &st);
	ck_assert_uint_eq(st.timeouts_idle, 1);
	close(fd);
}
END_TEST

START_TEST(test_connections_beyond_cap_are_closed_at_once)
{
	static char buf[256];
	halo_server_stats st;
	int fd[3], eof;

	start_with(10000, 2);
	fd[0] = client();
	fd[1] = client();
	until_open(2, 2000);
	fd[2] = client();
	collect(fd[2], buf, sizeof(buf), 0, 2000, &eof);
	ck_assert_int_eq(eof, 1);
	collect(fd[0], buf, sizeof(buf), 0, 50, &eof);
	ck_assert_int_eq(eof, 0);
	halo_server_stats_get(h.srv, &st);
	ck_assert_uint_eq(st.refused, 1);
	ck_assert_uint_eq(st.open, 2);
	for (int i = 0; i < 3; i++)
		close(fd[i]);
}
END_TEST

static int accept_err;

static void note_accept_error(halo_server *s, int err, void *arg)
{
	(void)s;
	(void)arg;
	accept_err = err;
}

START_TEST(test_stop_after_accept_ended_leaves_nothing_behind)
{
	halo_server_opts o = {.on_accept_error = note_accept_error};
	halo_stats st;

	start_opts(&o);
	/* A listener shut down ends the multishot accept with an error. */
	ck_assert_int_eq(shutdown(lfd, SHUT_RDWR), 0);
	for (int i = 0; i < 4000 && !accept_err; i++) {
		halo_loop_run_nowait(&loop);
		usleep(500);
	}
	ck_assert_int_lt(accept_err, 0);
	ck_assert_int_eq(httpd_stop(&h, 1000 * MS), 0);
	started = false;
	halo_loop_stats(&loop, &st);
	ck_assert_uint_eq(st.live_futures, 0);
	ck_assert_uint_eq(st.inflight, 0);
}
END_TEST

START_TEST(test_100k_pipelined_gets_with_a_late_reader_answered)
{
	enum { N = 100000 };
	static char reqs[N * (sizeof(get) - 1)], in[65536];
	const size_t ok_n = strlen(ok);
	size_t sent = 0, got = 0;
	halo_server_stats st;
	uint64_t t0, end;
	int fd;

	for (size_t i = 0; i < N; i++)
		memcpy(reqs + i * (sizeof(get) - 1), get, sizeof(get) - 1);
	start_with(30000, 100);
	fd = client();
	t0 = halo_now_ns();
	end = t0 + 60000 * MS;
	while (got < ok_n * N && halo_now_ns() < end) {
		ssize_t n = 0;

		if (sent < sizeof(reqs))
			n = write(fd, reqs + sent, sizeof(reqs) - sent);
		if (n < 0 && errno != EAGAIN)
			ck_abort_msg("write: %s", strerror(errno));
		if (n > 0)
			sent += (size_t)n;
		halo_loop_run_nowait(&loop);
		if (halo_now_ns() - t0 < 300 * MS)
			continue; /* the reader starts late */
		n = read(fd, in, sizeof(in));
		if (n == 0 || (n < 0 && errno != EAGAIN))
			ck_abort_msg("after %zu bytes: %s", got,
				     n ? strerror(errno) : "closed");
		for (ssize_t i = 0; i < n; i++, got++)
			if (in[i] != ok[got % ok_n])
				ck_abort_msg("byte %zu of the answers", got);
	}
	ck_assert_uint_eq(got, ok_n * N);
	ck_assert_uint_eq(h.requests, N);
	halo_server_stats_get(h.srv, &st);
	/* The queue filled while nobody read: input waited, nobody reset. */
	ck_assert_uint_ge(st.write_waits, 1);
	ck_assert_uint_eq(st.open, 1);
	close(fd);
	until_open(0, 3000);
}
END_TEST

enum { STUCK = 20, STUCK_GETS = 2000 };

/* STUCK clients that pipeline more GETs than their sockets hold, then a
 * bad request, and never read: each connection closes with a send stuck
 * on a full socket. Returns when every bad request was answered. */
static void stuck_clients(int *fd)
{
	static char reqs[STUCK_GETS * (sizeof(get) - 1) + 32];
	size_t n = 0;
	uint64_t end = halo_now_ns() + 10000 * MS;
	int sndbuf = 16384;

	/* Accepted sockets inherit the listener's send buffer, set and so
	 * not autotuned: about 32 KiB, where loopback would grow to MiBs. */
	ck_assert_int_eq(setsockopt(lfd, SOL_SOCKET, SO_SNDBUF, &sndbuf,
				    sizeof(sndbuf)), 0);
	for (int i = 0; i < STUCK_GETS; i++, n += sizeof(get) - 1)
		memcpy(reqs + n, get, sizeof(get) - 1);
	memcpy(reqs + n, "BAD\r\n\r\n", 7);
	n += 7;
	for (int i = 0; i < STUCK; i++) {
		fd[i] = client_rcvbuf(4096);
		send_all(fd[i], reqs, n);
	}
	while (h.bad < STUCK && halo_now_ns() < end) {
		halo_loop_run_nowait(&loop);
		usleep(100);
	}
	ck_assert_uint_eq(h.bad, STUCK);
	ck_assert_uint_eq(h.requests, STUCK * STUCK_GETS);
}

START_TEST(test_stuck_clients_meet_the_close_deadline)
{
	halo_server_opts o = {.close_ns = 200 * MS};
	halo_server_stats st;
	int fd[STUCK];

	start_opts(&o);
	stuck_clients(fd);
	until_open(0, 3000);
	halo_server_stats_get(h.srv, &st);
	ck_assert_uint_eq(st.timeouts_close, STUCK);
	/* Much of the answers stayed unsent: the sends were stuck. */
	ck_assert_uint_lt(st.bytes_out, (uint64_t)STUCK * STUCK_GETS *
						strlen(ok));
	for (int i = 0; i < STUCK; i++)
		close(fd[i]);
}
END_TEST

START_TEST(test_stop_with_stuck_clients_returns_within_its_drain)
{
	int fd[STUCK];
	uint64_t t0;

	start_with(10000, 100);
	stuck_clients(fd);
	t0 = halo_now_ns();
	ck_assert_int_eq(httpd_stop(&h, 200 * MS), 0);
	started = false;
	ck_assert_uint_ge(halo_now_ns() - t0, 150 * MS);
	ck_assert_uint_lt(halo_now_ns() - t0, 1500 * MS);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	for (int i = 0; i < STUCK; i++)
		close(fd[i]);
}
END_TEST

/* --- the example binary, as a child --- */

struct child {
	pid_t pid;
	int out, err; /* its stdout and stderr, read ends */
};

static void spawn_example(struct child *c, const char *name,
			  const char *const *args)
{
	const char *build = getenv("HALO_BUILD");
	char path[512], *argv[8];
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t sa;
	sigset_t dfl;
	int out[2], err[2], n = 0;

	snprintf(path, sizeof(path), "%s/examples/%s",
		 build ? build : "build/rel", name);
	argv[n++] = path;
	while (*args && n < 7)
		argv[n++] = (char *)*args++;
	argv[n] = NULL;
	ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(err, O_CLOEXEC), 0);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	posix_spawn_file_actions_adddup2(&fa, err[1], 2);
	/* As a shell would start it: SIGPIPE as the default, not ignored
	 * as in this test. */
	posix_spawnattr_init(&sa);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	posix_spawnattr_setsigdefault(&sa, &dfl);
	posix_spawnattr_setflags(&sa, POSIX_SPAWN_SETSIGDEF);
	ck_assert_int_eq(posix_spawn(&c->pid, path, &fa, &sa, argv, environ),
			 0);
	posix_spawnattr_destroy(&sa);
	posix_spawn_file_actions_destroy(&fa);
	close(out[1]);
	close(err[1]);
	c->out = out[0];
	c->err = err[0];
}

/* Wait up to ms for the child; returns its exit status, or -1 if it was
 * killed by a signal (or killed here after ms). */
static int reap(struct child *c, int ms)
{
	int status = 0;

	for (int i = 0; i < ms && waitpid(c->pid, &status, WNOHANG) == 0; i++)
		usleep(1000);
	if (waitpid(c->pid, &status, WNOHANG) == 0) {
		kill(c->pid, SIGKILL);
		waitpid(c->pid, &status, 0);
		return -1;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Read fd until EOF or ms; NUL-terminated. */
static void slurp(int fd, char *buf, size_t cap, int ms)
{
	size_t got = 0;
	struct pollfd p = {.fd = fd, .events = POLLIN};
	ssize_t n;

	while (got < cap - 1 && poll(&p, 1, ms) == 1 &&
	       (n = read(fd, buf + got, cap - 1 - got)) > 0)
		got += (size_t)n;
	buf[got] = 0;
}

static void child_close(struct child *c)
{
	close(c->out);
	close(c->err);
}

START_TEST(test_echo_binary_prints_usage_and_serves)
{
	static const char *const bad[][3] = {
		{"--help"}, {NULL}, {"70000"}, {"7x"}, {"0", "1"},
	};
	static const char *const good[] = {"0", NULL};
	char buf[512];
	struct child c;
	int port = 0;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		spawn_example(&c, "echo", bad[i]);
		ck_assert_int_eq(reap(&c, tu_timeout(3) * 1000), 2);
		slurp(c.err, buf, sizeof(buf), 100);
		ck_assert_msg(strstr(buf, "usage: "), "case %zu: %s", i, buf);
		child_close(&c);
	}
	/* Serves, then drains and exits 0 on SIGTERM. */
	spawn_example(&c, "echo", good);
	slurp(c.out, buf, sizeof(buf), tu_timeout(3) * 1000);
	ck_assert_int_eq(sscanf(buf, "echo: listening on port %d", &port), 1);
	{
		struct sockaddr_in a = {.sin_family = AF_INET,
					.sin_port = htons((uint16_t)port),
					.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		char got[5] = {0};

		ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)),
				 0);
		ck_assert_int_eq(send(fd, "ping", 4, MSG_NOSIGNAL), 4);
		ck_assert_int_eq(recv(fd, got, 4, MSG_WAITALL), 4);
		ck_assert_str_eq(got, "ping");
		close(fd);
	}
	kill(c.pid, SIGTERM);
	ck_assert_int_eq(reap(&c, tu_timeout(5) * 1000), 0);
	child_close(&c);
}
END_TEST

START_TEST(test_binary_prints_usage_and_exits_2_for_bad_arguments)
{
	static const char *const cases[][4] = {
		{"--help"}, {"-h"},	     {NULL},	     {"http"},
		{"70000"},  {"-1"},	     {"80x"},	     {"0", "-x"},
		{"0", "extra"}, {"0", "--help"}, {"0", "-t"}, {"0", "-m", "5x"},
	};
	char buf[512];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct child c;
		int rc;

		spawn_example(&c, "http", cases[i]);
		rc = reap(&c, tu_timeout(3) * 1000);
		slurp(c.err, buf, sizeof(buf), 100);
		ck_assert_msg(rc == 2, "case %zu (%s): exit %d", i,
			      cases[i][0] ? cases[i][0] : "", rc);
		ck_assert_msg(strstr(buf, "usage: "), "case %zu: %s", i, buf);
		slurp(c.out, buf, sizeof(buf), 0);
		ck_assert_msg(!strstr(buf, "listening"), "case %zu: %s", i,
			      buf);
		child_close(&c);
	}
}
END_TEST

START_TEST(test_binary_serves_then_drains_and_exits_0_on_sigterm)
{
	static const char *const args[] = {"0", "-t", "5000", NULL};
	char buf[512];
	struct child c;
	int fd, eof;

	spawn_example(&c, "http", args);
	slurp(c.out, buf, sizeof(buf), tu_timeout(3) * 1000);
	ck_assert_msg(sscanf(buf, "http: listening on port %d", &port) == 1,
		      "%s", buf);
	fd = client();
	send_str(fd, get);
	collect(fd, buf, sizeof(buf), strlen(ok), 3000, &eof);
	ck_assert_str_eq(buf, ok);
	ck_assert_int_eq(kill(c.pid, SIGTERM), 0);
	/* The idle keep-alive connection is closed at once by the drain. */
	collect(fd, buf, sizeof(buf), 0, 3000, &eof);
	ck_assert_int_eq(eof, 1);
	ck_assert_int_eq(reap(&c, tu_timeout(3) * 1000), 0);
	close(fd);
	child_close(&c);
}
END_TEST

Suite *httpd_suite(void)
{
	Suite *s = suite_create("httpd");
	TCase *tc = tcase_create("httpd");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(30));
	tcase_add_test(tc, test_get_root_answers_hello_and_keeps_alive);
	tcase_add_test(tc,
		       test_pipelined_requests_answered_in_order_in_one_send);
	tcase_add_test(tc, test_head_404_and_bodies_keep_todays_answers);
	tcase_add_test(tc, test_oversized_head_gets_431_and_close);
	tcase_add_test(tc, test_malformed_request_gets_400_and_close);
	tcase_add_test(tc, test_invalid_or_missing_host_gets_400_and_close);
	tcase_add_test(tc, test_valid_hosts_get_200);
	tcase_add_test(tc, test_slowloris_is_closed_by_the_head_deadline);
	tcase_add_test(tc,
		       test_silent_connection_is_closed_by_the_idle_deadline);
	tcase_add_test(tc, test_connections_beyond_cap_are_closed_at_once);
	tcase_add_test(tc, test_stop_after_accept_ended_leaves_nothing_behind);
	tcase_add_test(tc,
		       test_100k_pipelined_gets_with_a_late_reader_answered);
	tcase_add_test(tc, test_stuck_clients_meet_the_close_deadline);
	tcase_add_test(tc,
		       test_stop_with_stuck_clients_returns_within_its_drain);
	tcase_add_test(tc,
		       test_binary_prints_usage_and_exits_2_for_bad_arguments);
	tcase_add_test(tc, test_echo_binary_prints_usage_and_serves);
	tcase_add_test(tc,
		       test_binary_serves_then_drains_and_exits_0_on_sigterm);
	suite_add_tcase(s, tc);
	return s;
}
