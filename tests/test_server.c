/* The connection layer on a loop in this process, driven by non-blocking
 * client sockets on 127.0.0.1: both styles serve, each deadline fires in
 * each state, the cap and an EMFILE storm are survived, a slow peer slows
 * only itself, pipelined requests are all answered, and a stop returns
 * within its drain deadline. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/util.h"

#define MS 1000000ull

static halo_loop loop;
static halo_server *srv;
static int fds_before;

static void setup(void)
{
	fds_before = tu_count_fds();
	tu_loop_init(&loop, NULL);
	srv = NULL;
}

static void stop_server(uint64_t drain_ns)
{
	halo_fut *f = halo_server_stop(srv, drain_ns);

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(halo_fut_join(f), 0);
	ck_assert_int_eq(halo_server_free(srv), 0);
	srv = NULL;
}

static void teardown(void)
{
	if (srv)
		stop_server(0);
	tu_loop_close(&loop);
	ck_assert_int_eq(tu_count_fds(), fds_before);
}

static void start(halo_server_opts *o)
{
	int err = 0;

	o->host = "127.0.0.1";
	srv = halo_server_start(&loop, o, &err);
	ck_assert_msg(srv != NULL, "halo_server_start: %d", err);
}

static int client(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)halo_server_port(srv)),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
	return fd;
}

/* A small receive buffer makes a non-reading client stall a sender
 * quickly. */
static int slow_client(void)
{
	int fd = client(), small = 4096;

	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	return fd;
}

/* Client writes: the server may have closed the socket (no SIGPIPE). */
static ssize_t tx(int fd, const void *buf, size_t len)
{
	return send(fd, buf, len, MSG_NOSIGNAL);
}

static void run_ms(uint64_t ms)
{
	uint64_t end = halo_now_ns() + ms * MS;

	while (halo_now_ns() < end) {
		halo_loop_run_nowait(&loop);
		usleep(100);
	}
}

/* Drive the loop and read until want bytes came, EOF/error, or ms passed.
 * Returns the byte count, or -errno for a reset; *eof is set at EOF. */
static ssize_t collect(int fd, char *buf, size_t want, uint64_t ms, int *eof)
{
	uint64_t end = halo_now_ns() + ms * MS;
	size_t got = 0;

	*eof = 0;
	while (got < want && halo_now_ns() < end) {
		ssize_t n;

		halo_loop_run_nowait(&loop);
		n = read(fd, buf + got, want - got);
		if (n == 0) {
			*eof = 1;
			break;
		}
		if (n > 0) {
			got += (size_t)n;
		} else if (errno != EAGAIN) {
			/* A reset ends the connection as an EOF does: the
			 * server closed with bytes of ours still unread. */
			*eof = 1;
			return -errno;
		} else {
			usleep(100);
		}
	}
	return (ssize_t)got;
}

/* Run the loop until the server has n connections open. */
static void until_open(unsigned n, uint64_t ms)
{
	uint64_t end = halo_now_ns() + ms * MS;
	halo_server_stats st;

	do {
		halo_loop_run_nowait(&loop);
		halo_server_stats_get(srv, &st);
		if (st.open == n)
			return;
		usleep(100);
	} while (halo_now_ns() < end);
	ck_abort_msg("%u connections open after %llu ms, not %u", st.open,
		     (unsigned long long)ms, n);
}

static void until_closed(uint64_t ms)
{
	until_open(0, ms);
}

/* The fiber-style echo server: the whole of it. */
static int64_t echo(halo_conn *c, void *arg)
{
	char buf[4096];
	ssize_t n;

	(void)arg;
	while ((n = halo_conn_read(c, buf, sizeof(buf))) > 0)
		if (halo_conn_write(c, buf, (size_t)n) < 0)
			break;
	return 0;
}

/* Callback style: a line protocol, "PING\n" answered "PONG\n". */
static size_t on_lines(halo_conn *c, const char *data, size_t len, void *arg)
{
	size_t used = 0;

	(void)arg;
	while (len - used >= 5) {
		if (memcmp(data + used, "PING\n", 5) != 0) {
			halo_conn_close(c);
			return used;
		}
		halo_conn_write(c, "PONG\n", 5);
		used += 5;
	}
	return used;
}

static const halo_conn_cbs line_cbs = {.on_data = on_lines};

/* Callback style: any line is a request, answered "OK\n". */
static size_t on_any_line(halo_conn *c, const char *data, size_t len,
			  void *arg)
{
	const char *nl = memchr(data, '\n', len);

	(void)arg;
	if (!nl)
		return 0;
	halo_conn_write(c, "OK\n", 3);
	return (size_t)(nl - data) + 1;
}

static const halo_conn_cbs any_line_cbs = {.on_data = on_any_line};

START_TEST(test_fiber_echo_serves_several_clients)
{
	halo_server_opts o = {.fiber = echo};
	char buf[64];
	int fd[3], eof;
	halo_server_stats st;

	start(&o);
	for (int i = 0; i < 3; i++)
		fd[i] = client();
	for (int i = 0; i < 3; i++) {
		char msg[16];
		int n = snprintf(msg, sizeof(msg), "hello %d", i);

		ck_assert_int_eq(tx(fd[i], msg, (size_t)n), n);
		ck_assert_int_eq(collect(fd[i], buf, (size_t)n, 2000, &eof), n);
		ck_assert(memcmp(buf, msg, (size_t)n) == 0);
	}
	for (int i = 0; i < 3; i++)
		close(fd[i]);
	until_closed(2000);
	halo_server_stats_get(srv, &st);
	ck_assert_uint_eq(st.accepted, 3);
	ck_assert_uint_eq(st.bytes_in, st.bytes_out);
}
END_TEST

/* Fiber echo without a copy: peek at the held input, write it, consume it
 * in two steps (a partial consume leaves the rest to the next peek). */
static int64_t peek_echo(halo_conn *c, void *arg)
{
	const void *p;
	ssize_t n;
	size_t *max_piece = arg;

	while ((n = halo_conn_peek(c, &p)) > 0) {
		size_t half = (size_t)n / 2;

		if ((size_t)n > *max_piece)
			*max_piece = (size_t)n;
		if (halo_conn_write(c, p, half) < 0)
			break;
		halo_conn_consume(c, half);
		n = halo_conn_peek(c, &p); /* the same bytes' second half */
		if (n <= 0 || halo_conn_write(c, p, (size_t)n) < 0)
			break;
		halo_conn_consume(c, (size_t)n);
	}
	return 0;
}

START_TEST(test_fiber_peek_and_consume_echo_every_byte)
{
	static char out[100000], in[sizeof(out)];
	size_t max_piece = 0;
	halo_server_opts o = {.fiber = peek_echo, .arg = &max_piece,
			      .buf_size = 1024, .ring_bufs = 64, .max_held = 8};
	halo_server_stats st;
	size_t sent = 0, got = 0;
	int fd, eof = 0;

	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = (char)(i * 7 + i / 251);
	start(&o);
	fd = client();
	while (got < sizeof(in) && !eof) {
		ssize_t n;

		if (sent < sizeof(out)) {
			n = tx(fd, out + sent, sizeof(out) - sent);
			if (n > 0)
				sent += (size_t)n;
		}
		n = collect(fd, in + got, sizeof(in) - got, 5, &eof);
		ck_assert_int_ge(n, 0);
		got += (size_t)n;
	}
	ck_assert_uint_eq(got, sizeof(in));
	ck_assert(memcmp(in, out, sizeof(out)) == 0);
	ck_assert_uint_le(max_piece, 1024); /* one buffer at most */
	ck_assert_uint_gt(max_piece, 0);
	close(fd);
	until_closed(2000);
	halo_server_stats_get(srv, &st);
	ck_assert_uint_eq(st.bytes_in, sizeof(out));
	ck_assert_uint_eq(st.bytes_out, sizeof(out));
}
END_TEST

START_TEST(test_callbacks_answer_pipelined_lines_in_order)
{
	halo_server_opts o = {.cbs = &line_cbs};
	char buf[5 * 50];
	int fd, eof;

	start(&o);
	fd = client();
	for (int i = 0; i < 50; i++)
		ck_assert_int_eq(tx(fd, "PING\n", 5), 5);
	ck_assert_int_eq(collect(fd, buf, sizeof(buf), 2000, &eof),
			 (ssize_t)sizeof(buf));
	for (int i = 0; i < 50; i++)
		ck_assert(memcmp(buf + 5 * i, "PONG\n", 5) == 0);
	/* A request split across receives is seen whole. */
	ck_assert_int_eq(tx(fd, "PI", 2), 2);
	run_ms(5);
	ck_assert_int_eq(tx(fd, "NG\n", 3), 3);
	ck_assert_int_eq(collect(fd, buf, 5, 2000, &eof), 5);
	ck_assert(memcmp(buf, "PONG\n", 5) == 0);
	close(fd);
}
END_TEST

/* --- deadlines, one per state --- */

START_TEST(test_idle_deadline_closes_a_silent_reader)
{
	halo_server_opts o = {.fiber = echo, .idle_ns = 50 * MS};
	halo_server_stats st;
	char buf[8];
	int fd, eof;
	uint64_t t0;

	start(&o);
	fd = client();
	t0 = halo_now_ns();
	ck_assert_int_eq(collect(fd, buf, sizeof(buf), 3000, &eof), 0);
	ck_assert(eof);
	ck_assert_uint_lt(halo_now_ns() - t0, 2000 * MS);
	halo_server_stats_get(srv, &st);
	ck_assert_uint_eq(st.timeouts_idle, 1);
	close(fd);
}
END_TEST

START_TEST(test_deadlines_never_fire_early)
{
	halo_server_opts o = {.cbs = &any_line_cbs, .idle_ns = 60 * MS,
			      .head_ns = 120 * MS};
	halo_server_stats st;
	char buf[8];
	int fd, eof;
	uint64_t t0;

	start(&o);
	for (int i = 0; i < 5; i++) {
		/* Idle from the accept, which follows t0. */
		t0 = halo_now_ns();
		fd = client();
		ck_assert_int_eq(collect(fd, buf, sizeof(buf), 3000, &eof), 0);
		ck_assert(eof);
		ck_assert_uint_ge(halo_now_ns() - t0, 60 * MS);
		close(fd);
		/* A head from its first byte, which follows t0. */
		fd = client();
		run_ms(5);
		t0 = halo_now_ns();
		ck_assert_int_eq(write(fd, "a", 1), 1);
		ck_assert_int_eq(collect(fd, buf, sizeof(buf), 3000, &eof), 0);
		ck_assert(eof);
		ck_assert_uint_ge(halo_now_ns() - t0, 120 * MS);
		close(fd);
	}
	until_closed(2000);
	halo_server_stats_get(srv, &st);
	ck_assert_uint_eq(st.timeouts_idle, 5);
	ck_assert_uint_eq(st.timeouts_head, 5);
}
END_TEST

/* A connection that keeps busy past several idle lengths renews its
 * deadline without moving in the lists (the timer files it again at its
 * old key): it must stay open while busy, and close an idle length after
 * its last request, neither before nor long after. */
START_TEST(test_renewed_idle_deadline_is_neither_early_nor_lost)
{
	halo_server_opts o = {.fiber = echo, .idle_ns = 60 * MS};
	halo_server_stats st;
	char buf[8];
	int fd, eof;
	uint64_t t_last = 0, t0;

	start(&o);
	fd = client();
	t0 = halo_now_ns();
	/* 20 pings 15 ms apart: 300 ms, five idle lengths. */
	for (int i = 0; i < 20; i++) {
		t_last = halo_now_ns();
		ck_assert_int_eq(tx(fd, "ping", 4), 4);
		ck_assert_int_eq(collect(fd, buf, 4, 2000, &eof), 4);
		run_ms(15);
	}
	ck_assert_uint_ge(halo_now_ns() - t0, 250 * MS);
	halo_server_stats_get(srv, &st);
	ck_assert_uint_eq(st.timeouts_idle, 0);
	ck_assert_uint_eq(st.open, 1);
	ck_assert_int_eq(collect(fd, buf, sizeof(buf), 3000, &eof), 0);
	ck_assert(eof);
	ck_assert_uint_ge(halo_now_ns() - t_last, 60 * MS);
	ck_assert_uint_lt(halo_now_ns() - t_last, 60 * MS + 500 * MS);
	halo_server_stats_get(srv, &st);
	ck_assert_uint_eq(st.timeouts_idle, 1);
	close(fd);
}
END_TEST

/* Connections accepted in one wave come up for renewal in one timer burst,
 * their renewals in the reverse order of their places in the list: each
 * still closes an idle length after its own last request, none early, none
 * lost, and the burst is filed again in one sorted pass, not a walk of the
 * list per connection. */
START_TEST(test_a_wave_of_renewed_deadlines_closes_each_on_time)
{
	enum { N = 300 };
	halo_server_opts o = {.fiber = echo, .idle_ns = 500 * MS};
	static int fd[N];
	static uint64_t pinged[N], closed[N];
	uint64_t end, worst = 0;
	halo_server_stats st;
	char buf[8];
	int left = N;

	memset(closed, 0, sizeof(closed));
	start(&o);
	for (int i = 0; i < N; i++)
		fd[i] = client();
	until_open(N, 3000);
	/* The last accepted first: later places, earlier renewals. */
	for (int i = N - 1; i >= 0; i--) {
		pinged[i] = halo_now_ns();
		ck_assert_int_eq(tx(fd[i], "p", 1), 1);
		halo_loop_run_nowait(&loop);
	}
	end = halo_now_ns() + 5000 * MS;
	while (left && halo_now_ns() < end) {
		uint64_t t = halo_now_ns();

		halo_loop_run_nowait(&loop);
		if (halo_now_ns() - t > worst)
			worst = halo_now_ns() - t;
		for (int i = 0; i < N; i++) {
			ssize_t n;

			if (closed[i])
				continue;
			n = read(fd[i], buf, sizeof(buf));
			if (n == 0 || (n < 0 && errno != EAGAIN)) {
				closed[i] = halo_now_ns();
				left--;
			}
		}
		usleep(200);
	}
	ck_assert_int_eq(left, 0);
	for (int i = 0; i < N; i++) {
		ck_assert_msg(closed[i] - pinged[i] >= 500 * MS,
			      "connection %d closed %llu ms after its ping", i,
			      (unsigned long long)((closed[i] - pinged[i]) /
						   MS));
		ck_assert_uint_lt(closed[i] - pinged[i], 2500 * MS);
		close(fd[i]);
	}
	halo_server_stats_get(srv, &st);
	ck_assert_uint_eq(st.timeouts_idle, N);
	fprintf(stderr, "server: %d renewed deadlines in one burst, longest tick "
	       "%.2f ms\n", N, (double)worst / 1e6);
}
END_TEST

START_TEST(test_head_deadline_closes_a_slowloris_that_trickles)
{
	halo_server_opts o = {.cbs = &any_line_cbs, .idle_ns = 80 * MS,
			      .head_ns = 150 * MS};
	halo_server_stats st;
	char buf[8];
	int fd, eof = 0;
	uint64_t t0 = halo_now_ns();

	start(&o);
	fd = client();
	/* One byte every 30 ms renews idleness but never ends the
	 * request. */
	for (int i = 0; i < 40 && !eof; i++) {
		/* Closed is an EOF, or a reset when a byte came in after the
		 * receive stopped; a write after that is EPIPE, no SIGPIPE. */
		if (send(fd, "a", 1, MSG_NOSIGNAL) < 0 ||
		    collect(fd, buf, sizeof(buf), 30, &eof) < 0)
			eof = 1;
	}
	ck_assert(eof);
	ck_assert_uint_lt(halo_now_ns() - t0, 1100 * MS);
	halo_server_stats_get(srv, &st);
	ck_assert_uint_eq(st.timeouts_head, 1);
	ck_assert_uint_eq(st.timeouts_idle, 0);
	close(fd);
}
END_TEST

struct flood {
	ssize_t last;
};

/* Writes until the peer stops reading long enough for a deadline. */
static int64_t flood(halo_conn *c, void *arg)
{
	struct flood *f = arg;
	static char chunk[65536];

	for (;;) {
		f->last = halo_conn_write(c, chunk, sizeof(chunk));
		if (f->last < 0)
			return 0;
	}
}

START_TEST(test_write_deadline_closes_a_stuck_send)
{
	struct flood fl = {0};
	halo_server_opts o = {.fiber = flood, .arg = &fl,
			      .write_ns = 100 * MS, .idle_ns = 10000 * MS};
	halo_server_stats st;
	int fd;

	start(&o);
	fd = slow_client();
	until_closed(3000);
	halo_server_stats_get(srv, &st);
	ck_assert_uint_eq(st.timeouts_write, 1);
	ck_assert_int_eq(fl.last, -ETIMEDOUT);
	ck_assert_uint_le(st.bytes_out, 64ull << 20);
	close(fd);
}
END_TEST

/* Callback style: answer with more than the peer will read, then close. */
static size_t reply_big_then_close(halo_conn *c, const char *d, size_t len,
				   void *arg)
{
	static char big[4 << 20];

	(void)d;
	(void)arg;
	halo_conn_write(c, big, sizeof(big));
	halo_conn_close(c);
	return len;
}

static int closed_reason;

static void note_close(halo_conn *c, int reason, void *arg)
{
	(void)c;
	(void)arg;
	closed_reason = reason;
}

START_TEST(test_close_deadline_ends_a_closing_connection_stuck_sending)
{
	static const halo_conn_cbs cbs = {.on_data = reply_big_then_close,
					  .on_close = note_close};
	halo_server_opts o = {.cbs = &cbs, .close_ns = 100 * MS,
			      .write_ns = 10000 * MS};
	halo_server_stats st;
	int fd;

	start(&o);
	fd = slow_client();
	closed_reason = 1;
	ck_assert_int_eq(tx(fd, "x", 1), 1);
	until_closed(3000);
	halo_server_stats_get(srv, &st);
	ck_assert_uint_eq(st.timeouts_close, 1);
	ck_assert_int_eq(closed_reason, -ETIMEDOUT);
	close(fd);
}
END_TEST

/* A deadline counts from when it is set, however long the tick ran before:
 * a callback that computes for a while and then closes must still get its
 * whole close length, not one shortened by the time the tick spent (a
 * clock read before the work, by another connection's event). */
static uint64_t slow_closed_at, slow_close_set_at;

static size_t work_then_close(halo_conn *c, const char *d, size_t len,
			      void *arg)
{
	static char big[4 << 20];
	uint64_t until;

	(void)arg;
	if (d[0] != 's') {
		halo_conn_write(c, "ok", 2);
		return len;
	}
	until = halo_now_ns() + 250 * MS; /* the work */
	while (halo_now_ns() < until)
		;
	halo_conn_write(c, big, sizeof(big));
	slow_close_set_at = halo_now_ns();
	halo_conn_close(c);
	return len;
}

static void note_slow_close(halo_conn *c, int reason, void *arg)
{
	(void)c;
	(void)arg;
	if (reason == -ETIMEDOUT)
		slow_closed_at = halo_now_ns();
}

START_TEST(test_close_deadline_counts_from_the_close_after_long_work)
{
	static const halo_conn_cbs cbs = {.on_data = work_then_close,
					  .on_close = note_slow_close};
	halo_server_opts o = {.cbs = &cbs, .close_ns = 400 * MS,
			      .write_ns = 10000 * MS};
	halo_server_stats st;
	char buf[2];
	int fast, slow, eof;

	start(&o);
	fast = client();
	slow = slow_client();
	until_open(2, 2000);
	slow_closed_at = slow_close_set_at = 0;
	/* Both requests reach the server in the same reap, the fast first. */
	ck_assert_int_eq(tx(fast, "f", 1), 1);
	ck_assert_int_eq(tx(slow, "s", 1), 1);
	usleep(20000);
	ck_assert_int_eq(collect(fast, buf, 2, 3000, &eof), 2);
	close(fast);
	until_closed(3000);
	halo_server_stats_get(srv, &st);
	ck_assert_uint_eq(st.timeouts_close, 1);
	ck_assert_uint_gt(slow_closed_at, 0);
	ck_assert_msg(slow_closed_at - slow_close_set_at >= 400 * MS,
		      "closed %llu ms after the close, before its 400 ms",
		      (unsigned long long)((slow_closed_at - slow_close_set_at) /
					   MS));
	close(slow);
}
END_TEST

/* The same for an idle deadline set after another connection's work in
 * the same reap: a, w and b arrive together; a's reply reads the clock, w
 * computes for 250 ms, and b's idle deadline (b gets no reply) must count
 * from b's own request, not from the time a read before w's work. */
static halo_conn *idle_b;
static uint64_t idle_b_served_at, idle_b_closed_at;

static size_t work_or_reply(halo_conn *c, const char *d, size_t len,
			    void *arg)
{
	(void)arg;
	if (d[0] == 'w') {
		uint64_t until = halo_now_ns() + 250 * MS;

		while (halo_now_ns() < until)
			;
		return len;
	}
	if (d[0] == 'b') { /* no reply: the idle deadline runs from here */
		idle_b = c;
		idle_b_served_at = halo_now_ns();
		return len;
	}
	halo_conn_write(c, "ok", 2);
	return len;
}

static void note_idle_b(halo_conn *c, int reason, void *arg)
{
	(void)arg;
	if (c == idle_b && reason == -ETIMEDOUT)
		idle_b_closed_at = halo_now_ns();
}

START_TEST(test_idle_deadline_counts_from_its_own_request_after_long_work)
{
	static const halo_conn_cbs cbs = {.on_data = work_or_reply,
					  .on_close = note_idle_b};
	halo_server_opts o = {.cbs = &cbs, .idle_ns = 400 * MS};
	int a, w, b;

	start(&o);
	a = client();
	w = client();
	b = client();
	until_open(3, 2000);
	idle_b = NULL;
	idle_b_served_at = idle_b_closed_at = 0;
	ck_assert_int_eq(tx(a, "a", 1), 1);
	ck_assert_int_eq(tx(w, "w", 1), 1);
	ck_assert_int_eq(tx(b, "b", 1), 1);
	usleep(20000);
	until_closed(3000);
	ck_assert_uint_gt(idle_b_served_at, 0);
	ck_assert_uint_gt(idle_b_closed_at, 0);
	ck_assert_msg(idle_b_closed_at - idle_b_served_at >= 400 * MS,
		      "idle-closed %llu ms after its request, before its 400 ms",
		      (unsigned long long)((idle_b_closed_at -
					    idle_b_served_at) / MS));
	close(a);
	close(w);
	close(b);
}
END_TEST

/* The same deadlines with callbacks: idle while nothing moves, write while
 * a reply no send moves sits in the queue. */
static size_t reply_big(halo_conn *c, const char *d, size_t len, void *arg)
{
	static char big[4 << 20];

	(void)d;
	(void)arg;
	halo_conn_write(c, big, sizeof(big));
	return len;
}

START_TEST(test_callback_idle_and_write_deadlines)
{
	static const halo_conn_cbs cbs = {.on_data = reply_big,
					  .on_close = note_close};
	halo_server_opts o = {.cbs = &cbs, .idle_ns = 60 * MS,
			      .write_ns = 100 * MS};
	halo_server_stats st;
	int quiet, stuck;

	start(&o);
	quiet = client();
	stuck = slow_client();
	ck_assert_int_eq(tx(stuck, "x", 1), 1);
	until_closed(3000);
	halo_server_stats_get(srv, &st);
	ck_assert_uint_eq(st.timeouts_idle, 1);
	ck_assert_uint_eq(st.timeouts_write, 1);
	ck_assert_int_eq(closed_reason, -ETIMEDOUT);
	close(quiet);
	close(stuck);
}
END_TEST

/* --- the cap and accept errors --- */

START_TEST(test_cap_refuses_above_and_accept_goes_on)
{
	halo_server_opts o = {.fiber = echo, .max_conns = 2};
	halo_server_stats st;
	char buf[8];
	int a, b, c, d, eof;

	start(&o);
	a = client();
	b = client();
	until_open(2, 2000);
	c = client();
	ck_assert_int_le(collect(c, buf, sizeof(buf), 2000, &eof), 0);
	halo_server_stats_get(srv, &st);
	ck_assert_uint_eq(st.refused, 1);
	ck_assert_uint_eq(st.open, 2);
	close(a);
	until_open(1, 2000);
	d = client();
	ck_assert_int_eq(tx(d, "hi", 2), 2);
	ck_assert_int_eq(collect(d, buf, 2, 2000, &eof), 2);
	ck_assert(memcmp(buf, "hi", 2) == 0);
	close(b);
	close(c);
	close(d);
	until_open(0, 2000);
}
END_TEST


START_TEST(test_emfile_storm_is_survived_and_service_resumes)
{
	halo_server_opts o = {.fiber = echo};
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct rlimit old, low;
	halo_server_stats st;
	int fd[40], n, d, eof;
	char buf[4];

	start(&o);
	a.sin_port = htons((uint16_t)halo_server_port(srv));
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	low.rlim_cur = (rlim_t)tu_count_fds() + 30;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
	/* 25 clients leave the server 5 fds: the rest hit EMFILE. */
	for (n = 0; n < 25; n++) {
		fd[n] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd[n] < 0)
			break;
		ck_assert_int_eq(connect(fd[n], (struct sockaddr *)&a,
					 sizeof(a)), 0);
	}
	/* Every client holds its fd before the server accepts any: had the
	 * loop run in between, a client's socket() could meet the limit
	 * first and the server never see EMFILE. */
	ck_assert_int_eq(n, 25);
	run_ms(50);
	halo_server_stats_get(srv, &st);
	ck_assert_uint_ge(st.accept_backoffs, 1);
	ck_assert_uint_lt(st.accepted, (uint64_t)n);
	for (int i = 0; i < n; i++)
		close(fd[i]);
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
	/* Every client that waited in the backlog is served (and sees its
	 * EOF), and a new one is echoed. */
	for (uint64_t end = halo_now_ns() + 5000 * MS;
	     st.accepted < (uint64_t)n && halo_now_ns() < end;) {
		run_ms(5);
		halo_server_stats_get(srv, &st);
	}
	ck_assert_uint_eq(st.accepted, (uint64_t)n);
	d = client();
	ck_assert_int_eq(tx(d, "ok", 2), 2);
	ck_assert_int_eq(collect(d, buf, 2, 3000, &eof), 2);
	close(d);
	until_closed(3000);
}
END_TEST

START_TEST(test_a_client_that_never_reads_does_not_stall_pingers)
{
	halo_server_opts o = {.fiber = echo, .ring_bufs = 256};
	static char chunk[65536];
	halo_server_stats st;
	uint64_t worst = 0, held_max;
	int greedy, p[10], eof;
	char c;

	start(&o);
	greedy = slow_client();
	for (int i = 0; i < 10; i++)
		p[i] = client();
	for (int round = 0; round < 10; round++) {
		uint64_t next = halo_now_ns() + 200 * MS;

		for (int i = 0; i < 10; i++) {
			uint64_t t0 = halo_now_ns(), dt;

			ck_assert_int_eq(tx(p[i], "p", 1), 1);
			ck_assert_int_eq(collect(p[i], &c, 1, 2000, &eof), 1);
			dt = halo_now_ns() - t0;
			if (dt > worst)
				worst = dt;
		}
		while (halo_now_ns() < next) {
			if (tx(greedy, chunk, sizeof(chunk)) < 0)
				usleep(100);
			halo_loop_run_nowait(&loop);
		}
	}
	halo_server_stats_get(srv, &st);
	fprintf(stderr, "server: worst ping %.1f ms with a non-reading peer, "
		"%llu receive pauses\n", (double)worst / 1e6,
		(unsigned long long)st.recv_pauses);
	ck_assert_uint_lt(worst, 500 * MS);
	ck_assert_uint_ge(st.recv_pauses, 1);
	/* What the greedy peer holds: its queue, its held buffers (with the
	 * documented overshoot) and one read of its fiber. */
	held_max = 256 * 1024 + (16 + 64) * 4096 + 4096;
	ck_assert_uint_le(st.bytes_in - st.bytes_out, held_max);
	close(greedy);
	for (int i = 0; i < 10; i++)
		close(p[i]);
	until_closed(3000);
}
END_TEST

START_TEST(test_100k_pipelined_requests_with_a_late_reader_all_answered)
{
	halo_server_opts o = {.cbs = &line_cbs};
	enum { N = 100000 };
	static char in[65536];
	size_t sent = 0, got = 0;
	uint64_t t0, end;
	halo_server_stats st;
	int fd;

	start(&o);
	fd = client();
	t0 = halo_now_ns();
	end = t0 + 30000 * MS;
	while (got < 5ull * N && halo_now_ns() < end) {
		ssize_t n;

		while (sent < 5ull * N && tx(fd, "PING\n", 5) == 5)
			sent += 5;
		halo_loop_run_nowait(&loop);
		if (halo_now_ns() - t0 < 300 * MS)
			continue; /* the reader starts late */
		n = read(fd, in, sizeof(in));
		ck_assert_msg(n != 0, "server closed after %zu bytes", got);
		ck_assert_msg(n > 0 || errno == EAGAIN, "read: %s",
			      strerror(errno));
		if (n > 0) {
			for (ssize_t i = 0; i < n; i++)
				ck_assert_int_eq(in[i], "PONG\n"[(got + i) % 5]);
			got += (size_t)n;
		}
	}
	ck_assert_uint_eq(got, 5ull * N);
	/* The peer may read the last bytes before the loop reaped the
	 * completion of the send that carried them. */
	for (end = halo_now_ns() + 2000 * MS; halo_now_ns() < end;) {
		halo_server_stats_get(srv, &st);
		if (st.bytes_out == 5ull * N)
			break;
		run_ms(1);
	}
	ck_assert_uint_eq(st.bytes_out, 5ull * N);
	close(fd);
	until_closed(3000);
}
END_TEST

START_TEST(test_stop_with_stuck_clients_returns_within_its_drain)
{
	struct flood fl = {0};
	halo_server_opts o = {.fiber = flood, .arg = &fl};
	halo_fut *f;
	uint64_t t0;
	int fd[3];

	start(&o);
	for (int i = 0; i < 3; i++)
		fd[i] = slow_client();
	run_ms(100);
	t0 = halo_now_ns();
	f = halo_server_stop(srv, 200 * MS);
	ck_assert_int_eq(halo_fut_join(f), 0);
	ck_assert_uint_ge(halo_now_ns() - t0, 150 * MS);
	ck_assert_uint_lt(halo_now_ns() - t0, 1500 * MS);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	ck_assert_int_eq(halo_server_free(srv), 0);
	srv = NULL;
	for (int i = 0; i < 3; i++)
		close(fd[i]);
}
END_TEST

START_TEST(test_stop_closes_idle_at_once_and_lets_a_request_finish)
{
	halo_server_opts o = {.cbs = &line_cbs};
	char buf[8];
	int idle, busy, eof;
	halo_fut *f;
	uint64_t t0;

	start(&o);
	idle = client();
	busy = client();
	ck_assert_int_eq(tx(busy, "PI", 2), 2);
	until_open(2, 2000);
	run_ms(10);
	t0 = halo_now_ns();
	f = halo_server_stop(srv, 5000 * MS);
	ck_assert_int_le(collect(idle, buf, sizeof(buf), 2000, &eof), 0);
	ck_assert_uint_lt(halo_now_ns() - t0, 1000 * MS);
	ck_assert(!halo_fut_is_done(f));
	ck_assert_int_eq(tx(busy, "NG\n", 3), 3);
	ck_assert_int_eq(collect(busy, buf, 5, 2000, &eof), 5);
	ck_assert(memcmp(buf, "PONG\n", 5) == 0);
	ck_assert_int_eq(halo_fut_join(f), 0);
	ck_assert_uint_lt(halo_now_ns() - t0, 3000 * MS);
	ck_assert_int_eq(halo_server_free(srv), 0);
	srv = NULL;
	close(idle);
	close(busy);
}
END_TEST

/* A fiber that stops the server and returns at once: the close(2) of the
 * idle connection it started belongs to the connection, not to the fiber,
 * so the fiber's end must not cancel it (the fd would stay open for good). */
static int64_t stop_and_return(halo_loop *l, void *arg)
{
	(void)l;
	*(halo_fut **)arg = halo_server_stop(srv, 5000 * MS);
	return 0;
}

START_TEST(test_stop_from_a_fiber_that_returns_still_closes_idle)
{
	halo_server_opts o = {.cbs = &line_cbs};
	halo_fut *stopped = NULL, *fb;
	char buf[8];
	int idle, eof;

	start(&o);
	idle = client();
	until_open(1, 2000);
	fb = halo_spawn(&loop, stop_and_return, &stopped);
	ck_assert_int_eq(halo_fut_join(fb), 0);
	ck_assert_int_le(collect(idle, buf, sizeof(buf), 2000, &eof), 0);
	ck_assert_int_eq(eof, 1);
	ck_assert_int_eq(halo_fut_join(stopped), 0);
	ck_assert_int_eq(halo_server_free(srv), 0);
	srv = NULL;
	close(idle);
}
END_TEST

static void cycles(halo_server_opts *o, int n)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fds = tu_count_fds();
	halo_server_stats st;

	start(o);
	a.sin_port = htons((uint16_t)halo_server_port(srv));
	for (int i = 0; i < n; i += 100) {
		int fd[100];

		for (int k = 0; k < 100; k++) {
			fd[k] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
			ck_assert_int_eq(connect(fd[k], (struct sockaddr *)&a,
						 sizeof(a)), 0);
		}
		for (int k = 0; k < 100; k++)
			close(fd[k]);
		halo_loop_run_nowait(&loop);
	}
	for (uint64_t end = halo_now_ns() + 20000 * MS; halo_now_ns() < end;) {
		halo_server_stats_get(srv, &st);
		if (st.accepted == (uint64_t)n && !st.open)
			break;
		halo_loop_run_nowait(&loop);
		usleep(50);
	}
	halo_server_stats_get(srv, &st);
	ck_assert_uint_eq(st.accepted, (uint64_t)n);
	ck_assert_uint_eq(st.open, 0);
	ck_assert_int_eq(tu_count_fds(), fds + 1); /* the listener */
}

START_TEST(test_10k_connect_close_cycles_leave_fds_as_they_were)
{
	halo_server_opts o = {.fiber = echo};

	cycles(&o, 5000);
	stop_server(0);
	o = (halo_server_opts){.cbs = &line_cbs};
	cycles(&o, 5000);
}
END_TEST

static long rss_kib(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fscanf(f, "%ld %ld", &pages, &rss), 2);
	fclose(f);
	return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static long idle_conn_bytes(halo_server_opts *o, int n)
{
	int *fd = calloc((size_t)n, sizeof(int));
	long before;

	start(o);
	run_ms(10);
	before = rss_kib();
	for (int i = 0; i < n; i++)
		fd[i] = client();
	until_open((unsigned)n, 5000);
	run_ms(20);
	long per = (rss_kib() - before) * 1024 / n;
	for (int i = 0; i < n; i++)
		close(fd[i]);
	free(fd);
	until_closed(5000);
	stop_server(0);
	/* A fresh loop, so that the next style's figure is not served
	 * from these pools. */
	tu_loop_close(&loop);
	tu_loop_init(&loop, NULL);
	return per;
}

START_TEST(test_memory_per_idle_connection_is_bounded)
{
	halo_server_opts fo = {.fiber = echo}, co = {.cbs = &line_cbs};
	long cb = idle_conn_bytes(&co, 500);
	long fiber = idle_conn_bytes(&fo, 500);

	fprintf(stderr, "server: memory per idle connection: fiber %ld B, "
		"callbacks %ld B\n", fiber, cb);
	/* A touched page or two of a 32 KiB stack, against a few hundred
	 * bytes; wide margins (ASan's stacks are 256 KiB). */
	ck_assert_int_lt(fiber, tu_timeout(1) * 64 * 1024);
	ck_assert_int_lt(cb, tu_timeout(1) * 8 * 1024);
}
END_TEST

Suite *server_suite(void)
{
	Suite *s = suite_create("server");
	TCase *tc = tcase_create("serve");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(60));
	tcase_add_test(tc, test_fiber_echo_serves_several_clients);
	tcase_add_test(tc, test_fiber_peek_and_consume_echo_every_byte);
	tcase_add_test(tc, test_callbacks_answer_pipelined_lines_in_order);
	tcase_add_test(tc, test_idle_deadline_closes_a_silent_reader);
	tcase_add_test(tc, test_deadlines_never_fire_early);
	tcase_add_test(tc, test_renewed_idle_deadline_is_neither_early_nor_lost);
	tcase_add_test(tc, test_a_wave_of_renewed_deadlines_closes_each_on_time);
	tcase_add_test(tc, test_head_deadline_closes_a_slowloris_that_trickles);
	tcase_add_test(tc, test_write_deadline_closes_a_stuck_send);
	tcase_add_test(tc, test_close_deadline_ends_a_closing_connection_stuck_sending);
	tcase_add_test(tc, test_close_deadline_counts_from_the_close_after_long_work);
	tcase_add_test(tc, test_idle_deadline_counts_from_its_own_request_after_long_work);
	tcase_add_test(tc, test_callback_idle_and_write_deadlines);
	tcase_add_test(tc, test_cap_refuses_above_and_accept_goes_on);
	tcase_add_test(tc, test_emfile_storm_is_survived_and_service_resumes);
	tcase_add_test(tc, test_a_client_that_never_reads_does_not_stall_pingers);
	tcase_add_test(tc, test_100k_pipelined_requests_with_a_late_reader_all_answered);
	tcase_add_test(tc, test_stop_with_stuck_clients_returns_within_its_drain);
	tcase_add_test(tc, test_stop_closes_idle_at_once_and_lets_a_request_finish);
	tcase_add_test(tc, test_stop_from_a_fiber_that_returns_still_closes_idle);
	tcase_add_test(tc, test_10k_connect_close_cycles_leave_fds_as_they_were);
	tcase_add_test(tc, test_memory_per_idle_connection_is_bounded);
	suite_add_tcase(s, tc);
	return s;
}
