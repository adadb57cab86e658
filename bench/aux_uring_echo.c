/* aux_uring_echo: the raw-liburing baseline of the echo benchmark.
 *
 *   aux_uring_echo PORT [CPU]
 *
 * One thread, one ring (SINGLE_ISSUER | DEFER_TASKRUN where the kernel has
 * them), a multishot accept, and per connection a multishot recv that picks
 * its buffers from a provided-buffer ring. Each received buffer is sent back
 * and returned to the buffer ring when its send completes; a connection has
 * at most one send in flight, so that echoed bytes keep their order. The loop
 * makes one io_uring_submit_and_wait per iteration. Exits on SIGINT/SIGTERM.
 */
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench/bench.h"

#define RING_ENTRIES 4096
#define BUF_GROUP 0
#define BUF_N 4096 /* a power of two, at most 32768 */
#define BUF_SIZE 4096

/* user_data: a connection pointer with the operation in its low bits. */
enum { OP_ACCEPT, OP_RECV, OP_SEND, OP_SIGNAL, OP_MASK = 3 };

struct conn {
	int fd;
	int inflight; /* armed recv + send in flight */
	bool recv_armed;
	bool sending;
	bool closing;
	bool stalled; /* the recv ran out of buffers: re-arm it */
	int head, tail; /* queue of buffer ids to send, -1 if empty */
	unsigned send_off;
	struct conn *next_stalled;
};

static struct io_uring ring;
static struct io_uring_buf_ring *br;
static char *buf_mem;
static unsigned buf_len[BUF_N];
static int buf_next[BUF_N];
static int buf_returned; /* added to the ring since the last advance */
static struct conn *stalled;
static int lfd;

static struct io_uring_sqe *get_sqe(void)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

	/* A full SQ is flushed early; the kernel consumes it on submit. */
	if (!sqe) {
		io_uring_submit(&ring);
		sqe = io_uring_get_sqe(&ring);
	}
	if (!sqe) {
		fprintf(stderr, "uring_echo: no SQE after submit\n");
		exit(1);
	}
	return sqe;
}

static void *tag(struct conn *c, int op)
{
	return (void *)((uintptr_t)c | (uintptr_t)op);
}

static void arm_accept(void)
{
	struct io_uring_sqe *sqe = get_sqe();

	io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data(sqe, tag(NULL, OP_ACCEPT));
}

static void arm_recv(struct conn *c)
{
	struct io_uring_sqe *sqe = get_sqe();

	io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BUF_GROUP;
	io_uring_sqe_set_data(sqe, tag(c, OP_RECV));
	c->recv_armed = true;
	c->inflight++;
}

static void arm_send(struct conn *c)
{
	struct io_uring_sqe *sqe = get_sqe();
	int bid = c->head;

	io_uring_prep_send(sqe, c->fd, buf_mem + (size_t)bid * BUF_SIZE +
			   c->send_off, buf_len[bid] - c->send_off,
			   MSG_NOSIGNAL);
	io_uring_sqe_set_data(sqe, tag(c, OP_SEND));
	c->sending = true;
	c->inflight++;
}

static void return_buf(int bid)
{
	io_uring_buf_ring_add(br, buf_mem + (size_t)bid * BUF_SIZE, BUF_SIZE,
			      (unsigned short)bid, io_uring_buf_ring_mask(BUF_N),
			      buf_returned);
	buf_returned++;
}

static void enqueue(struct conn *c, int bid, unsigned len)
{
	buf_len[bid] = len;
	buf_next[bid] = -1;
	if (c->tail >= 0)
		buf_next[c->tail] = bid;
	else
		c->head = bid;
	c->tail = bid;
}

static void dequeue(struct conn *c)
{
	int bid = c->head;

	c->head = buf_next[bid];
	if (c->head < 0)
		c->tail = -1;
	c->send_off = 0;
	return_buf(bid);
}

/* Close once the kernel holds nothing of the connection. shutdown() ends an
 * armed multishot recv with a final CQE, which then lands here again. */
static void conn_close(struct conn *c)
{
	if (!c->closing) {
		c->closing = true;
		shutdown(c->fd, SHUT_RDWR);
	}
	if (c->inflight || c->stalled)
		return;
	while (c->head >= 0)
		dequeue(c);
	close(c->fd);
	free(c);
}

static void on_accept(struct io_uring_cqe *cqe)
{
	struct conn *c;
	int one = 1;

	if (!(cqe->flags & IORING_CQE_F_MORE))
		arm_accept();
	if (cqe->res < 0) {
		if (cqe->res != -ECONNABORTED && cqe->res != -EINTR)
			fprintf(stderr, "uring_echo: accept: %s\n",
				strerror(-cqe->res));
		return;
	}
	setsockopt(cqe->res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(cqe->res);
		return;
	}
	c->fd = cqe->res;
	c->head = c->tail = -1;
	arm_recv(c);
}

static void on_recv(struct conn *c, struct io_uring_cqe *cqe)
{
	bool more = cqe->flags & IORING_CQE_F_MORE;

	if (!more) {
		c->recv_armed = false;
		c->inflight--;
	}
	if (cqe->res > 0) {
		if (c->closing) {
			return_buf((int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
		} else {
			enqueue(c, (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT),
				(unsigned)cqe->res);
			if (!c->sending)
				arm_send(c);
		}
	}
	if (more || c->closing) {
		if (c->closing)
			conn_close(c);
		return;
	}
	if (cqe->res == -ENOBUFS) {
		/* Every buffer is queued for sending; re-arm when sends have
		 * returned some. */
		c->stalled = true;
		c->next_stalled = stalled;
		stalled = c;
	} else if (cqe->res > 0) {
		arm_recv(c);
	} else {
		conn_close(c);
	}
}

static void on_send(struct conn *c, struct io_uring_cqe *cqe)
{
	c->sending = false;
	c->inflight--;
	if (cqe->res < 0 || c->closing) {
		conn_close(c);
		return;
	}
	c->send_off += (unsigned)cqe->res;
	if (c->send_off == buf_len[c->head])
		dequeue(c);
	if (c->head >= 0)
		arm_send(c);
}

static void rearm_stalled(void)
{
	while (stalled) {
		struct conn *c = stalled;

		stalled = c->next_stalled;
		c->stalled = false;
		if (c->closing)
			conn_close(c);
		else
			arm_recv(c);
	}
}

static int setup_ring(void)
{
	struct io_uring_params p = {
		.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
	};
	int res = io_uring_queue_init_params(RING_ENTRIES, &ring, &p);

	/* Kernels before 6.1 reject DEFER_TASKRUN with EINVAL. */
	if (res == -EINVAL) {
		memset(&p, 0, sizeof(p));
		res = io_uring_queue_init_params(RING_ENTRIES, &ring, &p);
		if (!res)
			fprintf(stderr, "uring_echo: no DEFER_TASKRUN, plain ring\n");
	}
	return res;
}

/* liburing 2.3 has no io_uring_setup_buf_ring: the ring is page-aligned
 * memory that the kernel maps once it is registered. */
static int setup_buffers(void)
{
	struct io_uring_buf_reg reg = { .ring_entries = BUF_N, .bgid = BUF_GROUP };
	size_t ring_size = BUF_N * sizeof(struct io_uring_buf);
	int res;

	if (posix_memalign((void **)&br, 4096, ring_size) ||
	    posix_memalign((void **)&buf_mem, 4096, (size_t)BUF_N * BUF_SIZE))
		return -ENOMEM;
	memset(br, 0, ring_size);
	io_uring_buf_ring_init(br);
	reg.ring_addr = (uintptr_t)br;
	res = io_uring_register_buf_ring(&ring, &reg, 0);
	if (res)
		return res;
	for (int i = 0; i < BUF_N; i++)
		return_buf(i);
	io_uring_buf_ring_advance(br, buf_returned);
	buf_returned = 0;
	return 0;
}

static int listen_on(int port)
{
	struct sockaddr_in sa = {
		.sin_family = AF_INET,
		.sin_port = htons((uint16_t)port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, SOMAXCONN) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

int main(int argc, char **argv)
{
	struct io_uring_sqe *sqe;
	sigset_t mask;
	int port, sfd, res;

	if (argc < 2 || (port = atoi(argv[1])) <= 0 || port > 65535) {
		fprintf(stderr, "usage: aux_uring_echo PORT [CPU]\n");
		return 2;
	}
	if (argc > 2)
		bench_pin(atoi(argv[2]));

	/* A poll on a signalfd ends the wait in io_uring_enter, so a signal
	 * between two iterations is not missed. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0) {
		perror("uring_echo: signalfd");
		return 1;
	}
	lfd = listen_on(port);
	if (lfd < 0) {
		fprintf(stderr, "uring_echo: listen on 127.0.0.1:%d: %s\n", port,
			strerror(-lfd));
		return 1;
	}
	res = setup_ring();
	if (!res)
		res = setup_buffers();
	if (res) {
		fprintf(stderr, "uring_echo: io_uring setup: %s\n",
			strerror(-res));
		return 1;
	}
	arm_accept();
	sqe = get_sqe();
	io_uring_prep_poll_add(sqe, sfd, POLLIN);
	io_uring_sqe_set_data(sqe, tag(NULL, OP_SIGNAL));

	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;

		res = io_uring_submit_and_wait(&ring, 1);
		/* EINTR: a signal other than ours (which is blocked) or a
		 * debugger; EBUSY/EAGAIN: CQ overflow backlog, reap and go on. */
		if (res < 0 && res != -EINTR && res != -EBUSY &&
		    res != -EAGAIN) {
			fprintf(stderr, "uring_echo: submit_and_wait: %s\n",
				strerror(-res));
			return 1;
		}
		io_uring_for_each_cqe(&ring, head, cqe) {
			struct conn *c = (struct conn *)(uintptr_t)(
				cqe->user_data & ~(uint64_t)OP_MASK);

			seen++;
			switch (cqe->user_data & OP_MASK) {
			case OP_ACCEPT: on_accept(cqe); break;
			case OP_RECV: on_recv(c, cqe); break;
			case OP_SEND: on_send(c, cqe); break;
			case OP_SIGNAL: return 0;
			}
		}
		io_uring_cq_advance(&ring, seen);
		if (buf_returned) {
			io_uring_buf_ring_advance(br, buf_returned);
			buf_returned = 0;
		}
		rearm_stalled();
	}
}
