/* aux_loadgen: a closed-loop echo load client for the echo benchmarks.
 *
 *   aux_loadgen -p PORT -c CONNS -d SECONDS [-s SIZE] [-n INFLIGHT] [-C CPU]
 *
 * Opens CONNS TCP connections to 127.0.0.1:PORT, then each connection keeps
 * INFLIGHT (default 1: ping-pong) SIZE-byte messages outstanding: it sends a
 * message whenever fewer than INFLIGHT have come back whole, and a message's
 * latency runs from its first byte sent to its last byte echoed. Every
 * message has different content, so a stale, short or reordered echo is
 * caught; a wrong byte is a hard error (exit 1). One thread, epoll, nonblocking
 * sockets. The first 0.3 s after setup are a warm-up that is not counted.
 * Prints one line:
 *   reqs=N secs=T rps=R p50_us=X p99_us=Y p999_us=Z errors=E
 * and exits 0 if there were no errors. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench/bench.h"

#define WARMUP_NS 300000000ull
#define MAX_EVENTS 256

/* Latency histogram, log-linear: values below 2^SUB_BITS ns have a bucket
 * each, above that every power of two is split into 2^SUB_BITS buckets
 * (relative error < 1/32). 2^44 ns is over four hours. */
#define SUB_BITS 5
#define SUB_N (1u << SUB_BITS)
#define HIST_N ((44 - SUB_BITS + 1) * SUB_N)

struct hist {
	uint64_t count[HIST_N];
	uint64_t total;
};

/* Message k of a connection lives in slot k % inflight from its send until
 * its echo is complete; the send of message k + inflight starts after that. */
struct conn {
	int fd;
	int idx;
	uint64_t seq_sent; /* messages started */
	uint64_t seq_recv; /* messages echoed whole */
	size_t sent;	   /* bytes of message seq_sent - 1 sent */
	size_t recvd;	   /* bytes of message seq_recv echoed */
	bool wants_out;
	uint64_t *start_ns;  /* per slot */
	unsigned char *msg; /* inflight slots of size bytes */
};

static size_t msg_size = 64;
static unsigned inflight = 1;
static struct hist hist;
static uint64_t errors;
static int live_n;

static unsigned hist_index(uint64_t v)
{
	unsigned msb, idx;

	if (v < SUB_N)
		return (unsigned)v;
	msb = 63u - (unsigned)__builtin_clzll(v);
	idx = (msb - SUB_BITS + 1) * SUB_N +
	      (unsigned)((v >> (msb - SUB_BITS)) - SUB_N);
	return idx < HIST_N ? idx : HIST_N - 1;
}

/* The middle of bucket idx, in ns. */
static double hist_value(unsigned idx)
{
	unsigned group = idx / SUB_N, sub = idx % SUB_N;
	uint64_t low, width;

	if (group == 0)
		return idx;
	low = (uint64_t)(SUB_N + sub) << (group - 1);
	width = 1ull << (group - 1);
	return (double)low + (double)width / 2;
}

static void hist_add(struct hist *h, uint64_t v)
{
	h->count[hist_index(v)]++;
	h->total++;
}

static double hist_quantile_us(const struct hist *h, double q)
{
	uint64_t want, seen = 0;

	if (!h->total)
		return 0;
	want = (uint64_t)(q * (double)h->total);
	if (want < h->total && (double)want < q * (double)h->total)
		want++;
	if (want < 1)
		want = 1;
	for (unsigned i = 0; i < HIST_N; i++) {
		seen += h->count[i];
		if (seen >= want)
			return hist_value(i) / 1000.0;
	}
	return hist_value(HIST_N - 1) / 1000.0;
}

/* Content depends on connection and sequence number, so that an echo of any
 * earlier message, or another connection's, differs from the expected one. */
static void fill_msg(struct conn *c, uint64_t seq)
{
	unsigned char *m = c->msg + (seq % inflight) * msg_size;
	uint64_t x = ((uint64_t)c->idx << 40) ^ seq;

	for (size_t i = 0; i < msg_size; i++) {
		if (i % 8 == 0) {
			x += 0x9e3779b97f4a7c15ull;
			x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
			x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
			x ^= x >> 31;
		}
		m[i] = (unsigned char)(x >> (i % 8 * 8));
	}
}

static void set_out(int ep, struct conn *c, bool on)
{
	struct epoll_event ev = {
		.events = EPOLLIN | (on ? EPOLLOUT : 0),
		.data.ptr = c,
	};

	if (c->wants_out == on)
		return;
	c->wants_out = on;
	if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
		perror("loadgen: epoll_ctl");
		exit(1);
	}
}

static void drop(int ep, struct conn *c, const char *why)
{
	fprintf(stderr, "loadgen: connection %d: %s\n", c->idx, why);
	errors++;
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	live_n--;
}

/* Send what is left of the message being sent, and start new ones while
 * fewer than inflight are outstanding (up to measure_to); 0, or -1 if the
 * connection was dropped. */
static int push(int ep, struct conn *c, uint64_t measure_to)
{
	for (;;) {
		unsigned char *m;
		ssize_t n;

		if (c->sent == msg_size || c->seq_sent == c->seq_recv) {
			uint64_t now;

			if (c->seq_sent - c->seq_recv >= inflight)
				break;
			now = bench_now_ns();
			if (now >= measure_to)
				break;
			fill_msg(c, c->seq_sent);
			c->start_ns[c->seq_sent % inflight] = now;
			c->seq_sent++;
			c->sent = 0;
		}
		m = c->msg + ((c->seq_sent - 1) % inflight) * msg_size;
		n = send(c->fd, m + c->sent, msg_size - c->sent, MSG_NOSIGNAL);
		if (n < 0 && errno == EAGAIN) {
			set_out(ep, c, true);
			return 0;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			drop(ep, c, n < 0 ? strerror(errno) : "send returned 0");
			return -1;
		}
		c->sent += (size_t)n;
	}
	set_out(ep, c, false);
	return 0;
}

/* Read what arrived and check it byte by byte; each completed message
 * counts in *done and makes room for the next send. One recv per readiness:
 * level-triggered epoll reports whatever arrives later, so a recv that would
 * only say EAGAIN is never made. */
static void pull(int ep, struct conn *c, uint64_t measure_from,
		 uint64_t measure_to, uint64_t *done)
{
	static unsigned char rx[65536];
	size_t want = (c->seq_sent - c->seq_recv - 1) * msg_size + c->sent -
		      c->recvd;
	size_t off = 0;
	bool freed = false;
	ssize_t n;

	if (c->seq_sent == c->seq_recv)
		want = 0;
	do
		n = recv(c->fd, rx, sizeof(rx), 0);
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN)
		return;
	if (n <= 0) {
		drop(ep, c, n < 0 ? strerror(errno) : "closed by server");
		return;
	}
	if ((size_t)n > want) {
		fprintf(stderr, "loadgen: connection %d: %zd bytes echoed, "
			"%zu outstanding\n", c->idx, n, want);
		exit(1);
	}
	while (off < (size_t)n) {
		unsigned char *m = c->msg + (c->seq_recv % inflight) * msg_size;
		size_t k = msg_size - c->recvd;
		uint64_t now;

		if (k > (size_t)n - off)
			k = (size_t)n - off;
		if (memcmp(rx + off, m + c->recvd, k) != 0) {
			fprintf(stderr, "loadgen: connection %d message %llu: "
				"echo differs from what was sent\n",
				c->idx, (unsigned long long)c->seq_recv);
			exit(1);
		}
		off += k;
		c->recvd += k;
		if (c->recvd < msg_size)
			break;
		now = bench_now_ns();
		if (now >= measure_from && now < measure_to) {
			hist_add(&hist, now - c->start_ns[c->seq_recv % inflight]);
			(*done)++;
		}
		c->seq_recv++;
		c->recvd = 0;
		freed = true;
	}
	if (freed)
		push(ep, c, measure_to);
}

static int connect_one(int port)
{
	struct sockaddr_in sa = {
		.sin_family = AF_INET,
		.sin_port = htons((uint16_t)port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	struct timeval tv = { .tv_sec = 5 };
	int one = 1, fd;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	/* On Linux SO_SNDTIMEO bounds a blocking connect too. */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
	    fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void raise_nofile(int conns)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 ||
	    rl.rlim_cur >= (rlim_t)conns + 16)
		return;
	rl.rlim_cur = rl.rlim_max < (rlim_t)conns + 16 ? rl.rlim_max
						       : (rlim_t)conns + 16;
	setrlimit(RLIMIT_NOFILE, &rl);
}

static void usage(void)
{
	fprintf(stderr, "usage: aux_loadgen -p PORT -c CONNS -d SECONDS "
			"[-s SIZE] [-n INFLIGHT] [-C CPU]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int port = 0, conns = 1, cpu = -1, opt, ep;
	double secs = 0;
	uint64_t t0, measure_from, measure_to, done = 0, end;
	struct epoll_event events[MAX_EVENTS];
	struct conn *cs;

	while ((opt = getopt(argc, argv, "p:c:d:s:n:C:")) != -1) {
		switch (opt) {
		case 'p': port = atoi(optarg); break;
		case 'c': conns = atoi(optarg); break;
		case 'd': secs = atof(optarg); break;
		case 's': msg_size = (size_t)atol(optarg); break;
		case 'n': inflight = (unsigned)atoi(optarg); break;
		case 'C': cpu = atoi(optarg); break;
		default: usage();
		}
	}
	if (port <= 0 || port > 65535 || conns <= 0 || conns > 100000 ||
	    secs <= 0 || secs > 3600 || msg_size == 0 || msg_size > (1u << 24) ||
	    inflight == 0 || inflight > 64)
		usage();
	if (cpu >= 0)
		bench_pin(cpu);
	raise_nofile(conns);

	ep = epoll_create1(EPOLL_CLOEXEC);
	cs = calloc((size_t)conns, sizeof(*cs));
	if (ep < 0 || !cs) {
		perror("loadgen: setup");
		return 1;
	}
	for (int i = 0; i < conns; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &cs[i] };

		cs[i].idx = i;
		cs[i].msg = malloc(msg_size * inflight);
		cs[i].start_ns = calloc(inflight, sizeof(uint64_t));
		cs[i].fd = connect_one(port);
		if (!cs[i].msg || !cs[i].start_ns || cs[i].fd < 0 ||
		    epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev) < 0) {
			fprintf(stderr, "loadgen: connection %d to 127.0.0.1:%d: "
				"%s\n", i, port, strerror(errno));
			return 1;
		}
	}

	live_n = conns;
	t0 = bench_now_ns();
	measure_from = t0 + WARMUP_NS;
	measure_to = measure_from + (uint64_t)(secs * 1e9);
	for (int i = 0; i < conns; i++)
		push(ep, &cs[i], measure_to);

	for (;;) {
		uint64_t now = bench_now_ns();
		int n, timeout_ms;

		if (now >= measure_to)
			break;
		timeout_ms = (int)((measure_to - now) / 1000000) + 1;
		if (timeout_ms > 100)
			timeout_ms = 100;
		n = epoll_wait(ep, events, MAX_EVENTS, timeout_ms);
		if (n < 0 && errno != EINTR) {
			perror("loadgen: epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			struct conn *c = events[i].data.ptr;

			if (c->fd >= 0 && (events[i].events & EPOLLOUT))
				push(ep, c, measure_to);
			if (c->fd >= 0 &&
			    (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
				pull(ep, c, measure_from, measure_to, &done);
		}
		if (!live_n) {
			fprintf(stderr, "loadgen: every connection is gone\n");
			break;
		}
	}
	end = bench_now_ns();
	if (end > measure_to)
		end = measure_to;
	secs = end > measure_from ? (double)(end - measure_from) / 1e9 : 0;

	printf("reqs=%llu secs=%.3f rps=%.1f p50_us=%.1f p99_us=%.1f "
	       "p999_us=%.1f errors=%llu\n",
	       (unsigned long long)done, secs, secs > 0 ? (double)done / secs : 0,
	       hist_quantile_us(&hist, 0.50), hist_quantile_us(&hist, 0.99),
	       hist_quantile_us(&hist, 0.999), (unsigned long long)errors);
	for (int i = 0; i < conns; i++) {
		if (cs[i].fd >= 0)
			close(cs[i].fd);
		free(cs[i].msg);
		free(cs[i].start_ns);
	}
	free(cs);
	close(ep);
	return errors ? 1 : 0;
}
