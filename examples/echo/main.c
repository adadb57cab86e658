/* A TCP echo server on one halo loop: multishot accept, multishot recv over
 * a provided buffer ring, and send_all of each received buffer straight back
 * (no copy); the buffer returns to the ring when its send completes. Sends of
 * one connection go one at a time, in order: a send parked by the kernel on
 * a full socket must not be overtaken by the next one. A connection holds at
 * most CONN_BUFS buffers: a client that sends but never reads has its
 * receive paused once that many wait for their echo, so it cannot take the
 * shared ring from the others. SIGINT/SIGTERM arrive through a signalfd
 * read, so the loop wakes and exits cleanly.
 *
 *   echo PORT        (port 0 picks one and prints it) */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "halo.h"

#define BUF_N 4096 /* a power of two */
#define BUF_SIZE 4096
#define CONN_BUFS 16 /* buffers one connection may hold: 64 KiB */
#define NO_BID 0xffff

struct conn {
	struct conn *prev, *next;
	halo_recv_ms *rh;
	halo_waiter sent;
	int fd;
	int sending;	  /* a send is in flight */
	int recv_done;	  /* the multishot recv ended */
	uint16_t head, tail; /* queued buffers, linked through bid_next */
};

static halo_loop loop;
static halo_bufring *br;
static struct conn *conns;
static uint16_t bid_next[BUF_N];
static uint32_t bid_len[BUF_N];

static void conn_free(struct conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	halo_fut_detach(halo_close(&loop, c->fd));
	halo_mem_free(&loop, c, sizeof(*c));
}

static void send_next(struct conn *c);

static void on_sent(halo_fut *f, void *arg)
{
	struct conn *c = arg;
	uint16_t bid = c->head;
	int64_t r = halo_fut_result(f);

	halo_fut_release(f);
	c->sending = 0;
	c->head = bid_next[bid];
	if (c->head == NO_BID)
		c->tail = NO_BID;
	if (r < 0 && !c->recv_done) {
		/* The peer is gone: stop receiving before the returns below
		 * could resume a paused recv. */
		halo_recv_ms_stop(c->rh);
		c->recv_done = 1;
	}
	halo_bufring_return(br, bid);
	if (r < 0) {
		while (c->head != NO_BID) {
			bid = c->head;
			c->head = bid_next[bid];
			halo_bufring_return(br, bid);
		}
		c->tail = NO_BID;
	}
	if (c->head != NO_BID)
		send_next(c);
	else if (c->recv_done)
		conn_free(c);
}

static void send_next(struct conn *c)
{
	uint16_t bid = c->head;
	halo_fut *f = halo_send_all(&loop, c->fd, halo_bufring_buf(br, bid),
				    bid_len[bid], 0);

	if (!f) {
		fprintf(stderr, "echo: out of memory\n");
		exit(1);
	}
	halo_fut_consume(f);
	c->sending = 1;
	c->sent.fn = on_sent;
	c->sent.arg = c;
	halo_fut_add_waiter(f, &c->sent);
}

static void on_data(halo_recv_ms *h, int res, void *data, uint16_t bid,
		    void *arg)
{
	struct conn *c = arg;

	(void)h;
	(void)data;
	if (res <= 0) {
		c->recv_done = 1;
		if (!c->sending)
			conn_free(c);
		return;
	}
	bid_len[bid] = (uint32_t)res;
	bid_next[bid] = NO_BID;
	if (c->tail != NO_BID)
		bid_next[c->tail] = bid;
	else
		c->head = bid;
	c->tail = bid;
	if (!c->sending)
		send_next(c);
}

static void on_accept(halo_accept_ms *h, int fd, void *arg)
{
	halo_recv_ms_opts ro = { .max_held = CONN_BUFS };
	struct conn *c;
	int one = 1;

	(void)h;
	(void)arg;
	if (fd < 0) {
		fprintf(stderr, "echo: accept: %s\n", strerror(-fd));
		halo_loop_stop(&loop);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c = halo_mem_zalloc(&loop, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->fd = fd;
	c->head = c->tail = NO_BID;
	c->rh = halo_recv_ms_start_opts(&loop, fd, br, on_data, c, &ro, NULL);
	if (!c->rh) {
		close(fd);
		halo_mem_free(&loop, c, sizeof(*c));
		return;
	}
	c->next = conns;
	if (conns)
		conns->prev = c;
	conns = c;
}

static void on_signal(halo_fut *f, void *arg)
{
	(void)arg;
	halo_fut_release(f);
	halo_loop_stop(&loop);
}

int main(int argc, char **argv)
{
	halo_loop_opts lo = { .sq_entries = 4096, .max_inflight = 16384 };
	struct signalfd_siginfo si;
	halo_accept_ms *acc;
	sigset_t mask;
	halo_fut *sig;
	int lfd, sfd, err = 0, r;

	if (argc < 2) {
		fprintf(stderr, "usage: %s PORT\n", argv[0]);
		return 2;
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	lfd = halo_net_listen(NULL, (uint16_t)atoi(argv[1]),
			      &(halo_listen_opts){ .backlog = 4096 });
	if (sfd < 0 || lfd < 0) {
		fprintf(stderr, "echo: listen on %s: %s\n", argv[1],
			strerror(lfd < 0 ? -lfd : errno));
		return 1;
	}
	r = halo_loop_init(&loop, &lo);
	if (r < 0) {
		fprintf(stderr, "echo: %s\n", halo_loop_error(&loop));
		return 1;
	}
	br = halo_bufring_new(&loop, 0, BUF_N, BUF_SIZE, &err);
	if (!br) {
		fprintf(stderr, "echo: buffer ring: %s\n", strerror(-err));
		return 1;
	}
	acc = halo_accept_ms_start(&loop, lfd, SOCK_CLOEXEC, on_accept, NULL);
	sig = halo_read(&loop, sfd, &si, sizeof(si), -1);
	if (!acc || !sig || halo_fut_on_done(sig, on_signal, NULL) < 0) {
		fprintf(stderr, "echo: out of memory\n");
		return 1;
	}
	halo_fut_consume(sig);
	printf("echo: listening on port %d\n", halo_net_local_port(lfd));
	fflush(stdout);
	r = halo_loop_run(&loop);
	if (r < 0)
		fprintf(stderr, "echo: loop: %s\n", strerror(-r));
	for (struct conn *c = conns; c; c = c->next)
		close(c->fd);
	halo_loop_close(&loop);
	halo_bufring_free(br);
	close(lfd);
	close(sfd);
	return r < 0 ? 1 : 0;
}
