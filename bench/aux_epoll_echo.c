/* aux_epoll_echo: the epoll baseline of the echo benchmark.
 *
 *   aux_epoll_echo PORT [CPU]
 *
 * One thread, level-triggered epoll, nonblocking sockets on 127.0.0.1:PORT.
 * A readable connection is read until drained and every chunk is written back
 * at once; what the socket does not take waits in a per-connection pending
 * buffer, and the connection is not read again until that buffer has drained
 * (so a client that does not read cannot make the server buffer without
 * bound). Exits on SIGINT or SIGTERM. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench/bench.h"

#define MAX_EVENTS 256

struct conn {
	int fd;
	char *pending;
	size_t pending_off;
	size_t pending_len;
	size_t pending_cap;
};

/* Tags for the two fds that are not connections. */
static char listen_tag, signal_tag;
static char rx[65536];

static int listen_on(int port)
{
	struct sockaddr_in sa = {
		.sin_family = AF_INET,
		.sin_port = htons((uint16_t)port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	int one = 1, fd;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, SOMAXCONN) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void conn_close(int ep, struct conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->pending);
	free(c);
}

static int watch(int ep, struct conn *c, int op, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	return epoll_ctl(ep, op, c->fd, &ev);
}

/* Keep the bytes the socket did not take. */
static int keep_pending(struct conn *c, const char *p, size_t n)
{
	if (c->pending_cap < n) {
		char *np = realloc(c->pending, n);

		if (!np)
			return -ENOMEM;
		c->pending = np;
		c->pending_cap = n;
	}
	memcpy(c->pending, p, n);
	c->pending_off = 0;
	c->pending_len = n;
	return 0;
}

/* Write p fully if the socket takes it; returns bytes not written or -errno. */
static ssize_t write_some(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			break;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return (ssize_t)n;
}

/* Drain the pending buffer; 1 if it emptied, 0 if not yet, -errno. */
static int flush_pending(struct conn *c)
{
	ssize_t left = write_some(c->fd, c->pending + c->pending_off,
				  c->pending_len);

	if (left < 0)
		return (int)left;
	c->pending_off += c->pending_len - (size_t)left;
	c->pending_len = (size_t)left;
	return left == 0;
}

/* Echo until the socket is drained; 0 or -errno (-ECONNRESET at EOF) to
 * close. A short read already says the socket is empty: the recv that would
 * return EAGAIN is skipped, level triggering reports what arrives later. */
static int on_readable(int ep, struct conn *c)
{
	for (;;) {
		ssize_t n = recv(c->fd, rx, sizeof(rx), 0), left;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ECONNRESET;
		left = write_some(c->fd, rx, (size_t)n);
		if (left < 0)
			return (int)left;
		if (left > 0) {
			if (keep_pending(c, rx + n - left, (size_t)left) < 0)
				return -ENOMEM;
			return watch(ep, c, EPOLL_CTL_MOD, EPOLLOUT) < 0 ? -errno
									: 0;
		}
		if ((size_t)n < sizeof(rx))
			return 0;
	}
}

static int on_writable(int ep, struct conn *c)
{
	int res = flush_pending(c);

	if (res <= 0)
		return res;
	if (watch(ep, c, EPOLL_CTL_MOD, EPOLLIN) < 0)
		return -errno;
	return on_readable(ep, c);
}

static void on_accept(int ep, int lfd)
{
	for (int i = 0; i < 1024; i++) {
		int one = 1, fd = accept4(lfd, NULL, NULL,
					  SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct conn *c;

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR &&
			    errno != ECONNABORTED)
				perror("epoll_echo: accept4");
			return;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		if (watch(ep, c, EPOLL_CTL_ADD, EPOLLIN) < 0) {
			close(fd);
			free(c);
		}
	}
}

int main(int argc, char **argv)
{
	struct epoll_event events[MAX_EVENTS], ev;
	int port, lfd, sfd, ep;
	sigset_t mask;

	if (argc < 2 || (port = atoi(argv[1])) <= 0 || port > 65535) {
		fprintf(stderr, "usage: aux_epoll_echo PORT [CPU]\n");
		return 2;
	}
	if (argc > 2)
		bench_pin(atoi(argv[2]));

	/* Signals arrive through a signalfd in the epoll set, so that one that
	 * comes between two epoll_wait calls is not missed. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	lfd = listen_on(port);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (sfd < 0 || lfd < 0 || ep < 0) {
		fprintf(stderr, "epoll_echo: setup on 127.0.0.1:%d: %s\n", port,
			strerror(errno));
		return 1;
	}
	ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = &listen_tag };
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = &signal_tag };
	epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);

	for (;;) {
		int n = epoll_wait(ep, events, MAX_EVENTS, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			perror("epoll_echo: epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			void *tag = events[i].data.ptr;
			struct conn *c = tag;
			int res;

			if (tag == &signal_tag)
				return 0;
			if (tag == &listen_tag) {
				on_accept(ep, lfd);
				continue;
			}
			if (c->pending_len)
				res = on_writable(ep, c);
			else
				res = on_readable(ep, c);
			if (res < 0)
				conn_close(ep, c);
		}
	}
}
