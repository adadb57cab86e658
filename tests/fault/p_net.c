/* Sweep program: TCP over 127.0.0.1 (socket, connect, accept, send, recv,
 * sendmsg, recvmsg, shutdown, close) carrying an HTTP request and response
 * through the parser, multishot accept, multishot recv over a buffer ring. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "prog.h"

static const char request[] = "GET /fault?x=1 HTTP/1.1\r\n"
			      "Host: 127.0.0.1\r\n"
			      "User-Agent: sweep\r\n"
			      "\r\n";

static struct sockaddr_in loopback(int port)
{
	struct sockaddr_in a;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

/* Receive into buf until parse says the message is whole (> 0) or the
 * peer stops; returns parse's verdict or -errno. */
static int recv_until(halo_loop *loop, int fd, char *buf, size_t cap,
		      int (*parse)(const char *, size_t))
{
	size_t len = 0;

	for (;;) {
		int64_t n =
		    prog_join(halo_recv(loop, fd, buf + len, cap - len, 0));
		int r;

		if (n <= 0)
			return n < 0 ? (int)n : -ECONNRESET;
		len += (size_t)n;
		r = parse(buf, len);
		if (r != 0)
			return r;
		if (len == cap)
			return -EMSGSIZE;
	}
}

static int parse_request(const char *buf, size_t len)
{
	halo_http_req req;

	return halo_http_parse(buf, len, &req);
}

/* The response is whole once its head and its 2-byte body are in. */
static int parse_response(const char *buf, size_t len)
{
	const char *end = memmem(buf, len, "\r\n\r\n", 4);

	return end && (size_t)(end + 4 - buf) + 2 <= len ? (int)len : 0;
}

/* The server's side of one exchange over afd. */
static bool serve(halo_loop *loop, int afd)
{
	char buf[512], out[256];
	halo_http_req req;
	int n = recv_until(loop, afd, buf, sizeof(buf), parse_request);

	if (!EXPECT(n, (int)strlen(request)))
		return false;
	EXPECT(halo_http_parse(buf, (size_t)n, &req), n);
	EXPECT(req.method_id, HALO_HTTP_GET);
	EXPECT(req.target.len, strlen("/fault?x=1"));
	n = halo_http_response(out, sizeof(out), 200, "ok", 2, 1);
	return EXPECT(n > 0, 1) &&
	       EXPECT(prog_join(halo_send_all(loop, afd, out, (size_t)n, 0)),
		      n);
}

static void exchange(halo_loop *loop, int cfd, int afd)
{
	char buf[512], a[] = "ab", b[] = "cde", r1[2], r2[3];
	/* Six iovecs: more than the op holds, the copy comes from the heap. */
	struct iovec wiov[6] = {{a, 2}, {b, 3}, {a, 0}, {a, 0}, {a, 0}, {a, 0}};
	struct iovec riov[6] = {{r1, 2}, {r2, 3}, {r1, 0},
				{r1, 0}, {r1, 0}, {r1, 0}};
	struct msghdr wm = {.msg_iov = wiov, .msg_iovlen = 6};
	struct msghdr rm = {.msg_iov = riov, .msg_iovlen = 6};
	halo_fut *f[2];
	int n;

	if (!EXPECT(prog_join(
			halo_send_all(loop, cfd, request, strlen(request), 0)),
		    strlen(request)))
		return;
	if (!serve(loop, afd)) {
		shutdown(afd, SHUT_RDWR); /* the client waits no longer */
		return;
	}
	n = recv_until(loop, cfd, buf, sizeof(buf), parse_response);
	if (!EXPECT(n > 0 ? 0 : n, 0))
		return;
	EXPECT(memcmp(buf, "HTTP/1.1 200 OK\r\n", 17), 0);
	f[0] = halo_sendmsg(loop, cfd, &wm, 0);
	f[1] = halo_recvmsg(loop, afd, &rm, MSG_WAITALL);
	if (GOT(f[0]) && GOT(f[1])) {
		bool sent = EXPECT(halo_fut_wait(f[0]), 5);

		if (EXPECT(halo_fut_wait(f[1]), 5))
			EXPECT(memcmp(r1, "ab", 2) | memcmp(r2, "cde", 3), 0);
		else
			sent = false;
		if (sent &&
		    EXPECT(prog_join(halo_shutdown(loop, cfd, SHUT_WR)), 0))
			EXPECT(prog_join(
				   halo_recv(loop, afd, buf, sizeof(buf), 0)),
			       0);
	}
	prog_drop(f, 2);
}

static void step_tcp(halo_loop *loop)
{
	int lfd = halo_net_listen("127.0.0.1", 0, NULL), cfd, afd = -1;
	struct sockaddr_in a;
	halo_fut *f[2];

	if (lfd < 0) {
		errno = -lfd;
		prog_setup_failed("halo_net_listen");
		return;
	}
	cfd = (int)prog_join(
	    halo_socket(loop, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
	if (!EXPECT(cfd >= 0 ? 0 : cfd, 0))
		goto out;
	a = loopback(halo_net_local_port(lfd));
	f[0] = halo_accept(loop, lfd, SOCK_CLOEXEC);
	f[1] = halo_connect(loop, cfd, (struct sockaddr *)&a, sizeof(a));
	if (GOT(f[0]) && GOT(f[1])) {
		int64_t r = halo_fut_wait(f[0]);

		if (EXPECT(r >= 0 ? 0 : r, 0))
			afd = (int)r;
		if (EXPECT(halo_fut_wait(f[1]), 0) && afd >= 0)
			exchange(loop, cfd, afd);
	}
	prog_drop(f, 2);
	if (afd >= 0 && !EXPECT(prog_join(halo_close(loop, afd)), 0))
		close(afd);
	if (!EXPECT(prog_join(halo_close(loop, cfd)), 0))
		close(cfd);
out:
	close(lfd);
}

struct accepted {
	int fds[4];
	int n;
	int err; /* accepting ended with it; the handle is gone */
};

static void on_accept(halo_accept_ms *h, int fd, void *arg)
{
	struct accepted *acc = arg;

	(void)h;
	if (fd < 0)
		acc->err = fd;
	else if (acc->n < 4)
		acc->fds[acc->n++] = fd;
	else
		close(fd);
}

static void step_accept_ms(halo_loop *loop)
{
	int lfd = halo_net_listen("127.0.0.1", 0, NULL), cl[3];
	struct accepted acc = {.n = 0};
	struct sockaddr_in a;
	halo_accept_ms *h;

	if (lfd < 0) {
		errno = -lfd;
		prog_setup_failed("halo_net_listen");
		return;
	}
	a = loopback(halo_net_local_port(lfd));
	h = halo_accept_ms_start(loop, lfd, SOCK_CLOEXEC, on_accept, &acc);
	for (int i = 0; i < 3; i++) {
		cl[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (cl[i] >= 0 &&
		    connect(cl[i], (struct sockaddr *)&a, sizeof(a)) < 0)
			prog_setup_failed("connect");
	}
	if (GOT(h)) {
		for (int t = 0; t < 1000 && acc.n < 3 && !acc.err; t++)
			halo_loop_run_once(loop);
		EXPECT(acc.err, 0);
		EXPECT(acc.n, 3);
		if (!acc.err)
			EXPECT(halo_accept_ms_stop(h), 0);
	}
	for (int i = 0; i < acc.n; i++)
		close(acc.fds[i]);
	for (int i = 0; i < 3; i++)
		if (cl[i] >= 0)
			close(cl[i]);
	close(lfd);
}

struct stream {
	halo_bufring *br;
	size_t got;
	int bad;
	int end; /* 1: EOF, < 0: error; the handle is gone either way */
};

static void on_data(halo_recv_ms *h, int res, void *data, uint16_t bid,
		    void *arg)
{
	struct stream *s = arg;
	const unsigned char *p = data;

	(void)h;
	if (res <= 0) {
		s->end = res == 0 ? 1 : res;
		return;
	}
	for (int i = 0; i < res; i++)
		s->bad |= p[i] != prog_byte(s->got + (size_t)i);
	s->got += (size_t)res;
	halo_bufring_return(s->br, bid);
}

static void step_recv_ms(halo_loop *loop)
{
	static unsigned char src[16384];
	struct stream s = {.got = 0};
	halo_recv_ms *h;
	int sv[2], err = 0;
	size_t sent = 0;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0,
		       sv) < 0) {
		prog_setup_failed("socketpair");
		return;
	}
	for (size_t i = 0; i < sizeof(src); i++)
		src[i] = prog_byte(i);
	s.br = halo_bufring_new(loop, 1, 4, 1024, &err);
	if (!GOT(s.br)) {
		EXPECT(err, -ENOMEM);
		goto out;
	}
	h = halo_recv_ms_start(loop, sv[0], s.br, on_data, &s);
	if (GOT(h)) {
		for (int t = 0; t < 100000 && !s.end; t++) {
			if (sent < sizeof(src)) {
				ssize_t n = write(sv[1], src + sent,
						  sizeof(src) - sent);
				if (n > 0)
					sent += (size_t)n;
				if (sent == sizeof(src))
					shutdown(sv[1], SHUT_WR);
			}
			halo_loop_run_once(loop);
		}
		if (EXPECT(s.end, 1))
			EXPECT(s.got, sizeof(src));
		else if (!s.end)
			EXPECT(halo_recv_ms_stop(h), 0);
		EXPECT(s.bad, 0);
	}
	EXPECT(halo_bufring_free(s.br), 0);
out:
	close(sv[0]);
	close(sv[1]);
}

/* Two buffers, both held by the reader for a while: the recv runs dry
 * (-ENOBUFS) and the buffers' return re-arms it. */
struct holder {
	halo_bufring *br;
	size_t got;
	int bad, end;
	uint16_t held[2];
	int held_n;
};

static void on_held_data(halo_recv_ms *h, int res, void *data, uint16_t bid,
			 void *arg)
{
	struct holder *s = arg;
	const unsigned char *p = data;

	(void)h;
	if (res <= 0) {
		s->end = res == 0 ? 1 : res;
		return;
	}
	for (int i = 0; i < res; i++)
		s->bad |= p[i] != prog_byte(s->got + (size_t)i);
	s->got += (size_t)res;
	if (s->held_n < 2)
		s->held[s->held_n++] = bid;
	else
		halo_bufring_return(s->br, bid);
}

static void step_starved(halo_loop *loop)
{
	static unsigned char src[8192];
	struct holder s = {.got = 0};
	halo_recv_ms *h;
	int sv[2], err = 0;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		prog_setup_failed("socketpair");
		return;
	}
	for (size_t i = 0; i < sizeof(src); i++)
		src[i] = prog_byte(i);
	s.br = halo_bufring_new(loop, 2, 2, 512, &err);
	if (!GOT(s.br))
		goto out;
	h = halo_recv_ms_start(loop, sv[0], s.br, on_held_data, &s);
	if (GOT(h)) {
		if (write(sv[1], src, sizeof(src)) != (ssize_t)sizeof(src))
			prog_setup_failed("write");
		shutdown(sv[1], SHUT_WR);
		for (int t = 0; t < 10000 && !s.end; t++) {
			halo_loop_run_once(loop);
			while (s.held_n)
				halo_bufring_return(s.br, s.held[--s.held_n]);
		}
		if (EXPECT(s.end, 1))
			EXPECT(s.got, sizeof(src));
		else if (!s.end)
			EXPECT(halo_recv_ms_stop(h), 0);
		EXPECT(s.bad, 0);
	}
	while (s.held_n)
		halo_bufring_return(s.br, s.held[--s.held_n]);
	EXPECT(halo_bufring_free(s.br), 0);
out:
	close(sv[0]);
	close(sv[1]);
}

/* An incremental ring of 2 buffers: the reader holds every piece, more
 * than the ring's first piece records, so that they grow; a failed growth
 * ends the recv with -ENOMEM. (Where the kernel lacks the feature, a plain
 * ring, and each buffer goes back at once.) */
struct pieces {
	halo_bufring *br;
	size_t got;
	int bad, end;
	void *held[32];
	int held_n;
};

static void on_piece(halo_recv_ms *h, int res, void *data, uint16_t bid,
		     void *arg)
{
	struct pieces *s = arg;
	const unsigned char *p = data;

	(void)h;
	(void)bid;
	if (res <= 0) {
		s->end = res == 0 ? 1 : res;
		return;
	}
	for (int i = 0; i < res; i++)
		s->bad |= p[i] != prog_byte(s->got + (size_t)i);
	s->got += (size_t)res;
	if (s->held_n < 32 && halo_bufring_is_inc(s->br))
		s->held[s->held_n++] = data;
	else
		EXPECT(halo_bufring_return_piece(s->br, data), 0);
}

static void step_inc(halo_loop *loop)
{
	static unsigned char src[24 * 64];
	halo_bufring_opts bo = {.flags = HALO_BUFRING_INC};
	halo_recv_ms_opts ro = {.max_held = HALO_RECV_MS_UNLIMITED};
	struct pieces s = {.got = 0};
	halo_recv_ms *h;
	int sv[2], err = 0;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		prog_setup_failed("socketpair");
		return;
	}
	for (size_t i = 0; i < sizeof(src); i++)
		src[i] = prog_byte(i);
	s.br = halo_bufring_new_opts(loop, 3, 2, 4096, &bo, &err);
	if (!GOT(s.br)) {
		EXPECT(err, -ENOMEM);
		goto out;
	}
	h = halo_recv_ms_start_opts(loop, sv[0], s.br, on_piece, &s, &ro, &err);
	if (GOT(h)) {
		/* One message a tick: a piece each where pieces are used. */
		for (size_t i = 0; i < sizeof(src) / 64 && !s.end; i++) {
			if (write(sv[1], src + i * 64, 64) != 64)
				prog_setup_failed("write");
			for (int t = 0;
			     t < 1000 && s.got < (i + 1) * 64 && !s.end; t++)
				halo_loop_run_once(loop);
		}
		shutdown(sv[1], SHUT_WR);
		for (int t = 0; t < 10000 && !s.end; t++)
			halo_loop_run_once(loop);
		if (EXPECT(s.end, 1))
			EXPECT(s.got, sizeof(src));
		EXPECT(s.bad, 0);
	}
	while (s.held_n)
		EXPECT(halo_bufring_return_piece(s.br, s.held[--s.held_n]), 0);
	EXPECT(halo_bufring_free(s.br), 0);
out:
	close(sv[0]);
	close(sv[1]);
}

/* An accept with a deadline that passes, then one the kernel completes. */
static void step_accept_deadline(halo_loop *loop)
{
	int lfd = halo_net_listen("127.0.0.1", 0, NULL), cfd;
	struct sockaddr_in a;
	halo_fut *f;
	int64_t r;

	if (lfd < 0) {
		errno = -lfd;
		prog_setup_failed("halo_net_listen");
		return;
	}
	f = halo_accept(loop, lfd, SOCK_CLOEXEC);
	if (GOT(f) && EXPECT(halo_deadline_after(f, 1 * MS), 0))
		EXPECT(halo_fut_wait(f), -ETIMEDOUT);
	prog_drop(&f, 1);
	a = loopback(halo_net_local_port(lfd));
	cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (cfd < 0 || connect(cfd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		prog_setup_failed("connect");
	} else {
		f = halo_accept(loop, lfd, SOCK_CLOEXEC);
		if (GOT(f) && EXPECT(halo_deadline_after(f, 10000 * MS), 0)) {
			r = halo_fut_wait(f);
			if (EXPECT(r >= 0 ? 0 : r, 0))
				close((int)r);
		}
		prog_drop(&f, 1);
	}
	if (cfd >= 0)
		close(cfd);
	close(lfd);
}

int main(int argc, char **argv)
{
	static const struct prog_step steps[] = {
	    {"tcp", step_tcp},
	    {"accept_ms", step_accept_ms},
	    {"recv_ms", step_recv_ms},
	    {"starved", step_starved},
	    {"inc", step_inc},
	    {"accept_deadline", step_accept_deadline},
	};

	return prog_run(argc, argv, steps, sizeof(steps) / sizeof(steps[0]));
}
