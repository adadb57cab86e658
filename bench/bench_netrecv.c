/* Multishot recv with bundles against without, on one loopback TCP stream:
 * a thread on the other cpu writes 64 KiB chunks as fast as the socket takes
 * them while halo receives into a ring of 4 KiB buffers and gives each back
 * at once. Reported: throughput and bytes per receiver CPU-second, bundles
 * on over off, and the buffers per data CQE (the CQEs bundles save), median
 * of interleaved rounds with the range on stderr.
 *
 * Then incremental rings against plain ones, with small messages: a thread
 * sends 64-byte messages round-robin over 16 connections that share one
 * ring of 1 MiB, either 16 buffers of 64 KiB with HALO_BUFRING_INC or 256
 * of 4 KiB without; the receiver holds the last 128 messages it got (as a
 * server with 128 requests in flight holds their buffers until it answers)
 * and gives back the oldest as each new one comes. Reported: bytes per
 * receiver CPU-second, ring memory not free for new data (buffers out of
 * the ring and the used part of a partly used one; mean over ticks), and
 * bytes received per ring buffer used. */
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench/bench.h"
#include "halo.h"

#define ROUNDS 5
#define RING_N 256
#define BUF_SZ 4096

static volatile int stop_flag;

static void *flood(void *arg)
{
	static char buf[64 << 10];
	int fd = *(int *)arg;

	bench_pin(1);
	memset(buf, 'r', sizeof(buf));
	while (!stop_flag && send(fd, buf, sizeof(buf), MSG_NOSIGNAL) > 0)
		;
	shutdown(fd, SHUT_WR);
	return NULL;
}

struct sink {
	halo_bufring *br;
	uint64_t bytes;
	int ended;
	halo_recv_stats st;
};

static void on_data(halo_recv_ms *h, int res, void *data, uint16_t bid,
		    void *arg)
{
	struct sink *s = arg;

	(void)data;
	if (res <= 0) {
		s->ended = 1;
		return;
	}
	halo_recv_ms_stats(h, &s->st);
	s->bytes += (uint64_t)res;
	halo_bufring_return(s->br, bid);
}

struct result {
	double gbps, bytes_per_cpu_s, bufs_per_cqe;
};

/* --- small messages, incremental rings --- */

#define CONNS  16
#define MSG    64
#define WINDOW 128

struct small {
	halo_bufring *br;
	uint64_t bytes;
	int ended;
	unsigned n;    /* pieces held */
	unsigned head; /* the oldest */
	void *piece[WINDOW];
};

static void small_return_all(struct small *s)
{
	for (; s->n; s->n--, s->head = (s->head + 1) % WINDOW)
		halo_bufring_return_piece(s->br, s->piece[s->head]);
}

static int small_fds[CONNS];

static void *small_flood(void *arg)
{
	char msg[MSG];

	(void)arg;
	bench_pin(1);
	memset(msg, 'm', sizeof(msg));
	while (!stop_flag)
		for (int i = 0; i < CONNS; i++)
			send(small_fds[i], msg, sizeof(msg),
			     MSG_NOSIGNAL | MSG_DONTWAIT);
	for (int i = 0; i < CONNS; i++)
		shutdown(small_fds[i], SHUT_WR);
	return NULL;
}

static void on_small(halo_recv_ms *h, int res, void *data, uint16_t bid,
		     void *arg)
{
	struct small *s = arg;

	(void)h;
	(void)bid;
	if (res <= 0) {
		s->ended++;
		return;
	}
	s->bytes += (uint64_t)res;
	if (s->n == WINDOW) {
		halo_bufring_return_piece(s->br, s->piece[s->head]);
		s->head = (s->head + 1) % WINDOW;
		s->n--;
	}
	s->piece[(s->head + s->n++) % WINDOW] = data;
}

struct small_result {
	double bytes_per_cpu_s, held_kib, bytes_per_buf, ns_per_piece;
};

static struct small_result run_small(int inc, double secs)
{
	halo_loop_opts lo = {.features_off = inc ? 0 : HALO_FEAT_PBUF_INC};
	halo_bufring_opts bo = {.flags = inc ? HALO_BUFRING_INC : 0};
	halo_recv_ms_opts ro = {.max_held = HALO_RECV_MS_UNLIMITED};
	unsigned nbufs = inc ? 16 : 256;
	size_t bsz = inc ? 64 << 10 : 4 << 10;
	int lfd = halo_net_listen("127.0.0.1", 0, NULL), b[CONNS], err = 0;
	struct sockaddr_in sa = {.sin_family = AF_INET};
	static struct small s;
	struct small_result r;
	halo_bufring_stats bs;
	uint64_t t0, c0, deadline, ticks = 0, held = 0, used0, bytes0, pieces0;
	double cpu_ns;
	halo_loop loop;
	pthread_t th;

	memset(&s, 0, sizeof(s));
	if (halo_loop_init(&loop, &lo) < 0 || lfd < 0)
		exit(1);
	sa.sin_port = htons((uint16_t)halo_net_local_port(lfd));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s.br = halo_bufring_new_opts(&loop, 2, nbufs, bsz, &bo, &err);
	if (!s.br || halo_bufring_is_inc(s.br) != inc) {
		fprintf(stderr, "netrecv: ring %d\n", err);
		exit(1);
	}
	for (int i = 0; i < CONNS; i++) {
		small_fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (connect(small_fds[i], (struct sockaddr *)&sa, sizeof(sa)))
			exit(1);
		b[i] = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (!halo_recv_ms_start_opts(&loop, b[i], s.br, on_small, &s,
					     &ro, &err)) {
			fprintf(stderr, "netrecv: %d\n", err);
			exit(1);
		}
	}
	close(lfd);
	stop_flag = 0;
	pthread_create(&th, NULL, small_flood, NULL);
	t0 = bench_now_ns();
	c0 = bench_thread_cpu_ns();
	deadline = t0 + (uint64_t)(secs * 1e9);
	halo_bufring_stats_get(s.br, &bs);
	used0 = bs.bufs_used;
	pieces0 = bs.pieces;
	bytes0 = s.bytes;
	while (bench_now_ns() < deadline) {
		halo_loop_run_once(&loop);
		halo_bufring_stats_get(s.br, &bs);
		held += nbufs * bsz - bs.bytes_free;
		ticks++;
	}
	cpu_ns = (double)(bench_thread_cpu_ns() - c0);
	halo_bufring_stats_get(s.br, &bs);
	r.ns_per_piece = cpu_ns / (double)(bs.pieces - pieces0 + 1);
	r.bytes_per_cpu_s = (double)(s.bytes - bytes0) / (cpu_ns / 1e9);
	r.held_kib = ticks ? (double)held / (double)ticks / 1024.0 : 0;
	r.bytes_per_buf =
	    bs.bufs_used > used0
		? (double)(s.bytes - bytes0) / (double)(bs.bufs_used - used0)
		: 0;
	stop_flag = 1;
	small_return_all(&s);
	while (s.ended < CONNS) {
		halo_loop_run_once(&loop);
		small_return_all(&s);
	}
	pthread_join(th, NULL);
	halo_bufring_free(s.br);
	for (int i = 0; i < CONNS; i++) {
		close(small_fds[i]);
		close(b[i]);
	}
	if (halo_loop_close(&loop))
		exit(1);
	return r;
}

static struct result run(int bundle, double secs)
{
	halo_loop_opts lo = {.features_off =
				 bundle ? 0 : HALO_FEAT_RECV_BUNDLE};
	halo_recv_ms_opts ro = {.flags = HALO_RECV_MS_BUNDLE};
	int lfd = halo_net_listen("127.0.0.1", 0, NULL), a, b, err = 0;
	struct sockaddr_in sa = {.sin_family = AF_INET};
	struct sink s = {0};
	uint64_t t0, c0, deadline;
	struct result r;
	halo_recv_ms *h;
	halo_loop loop;
	pthread_t th;

	if (halo_loop_init(&loop, &lo) < 0)
		exit(1);
	sa.sin_port = htons((uint16_t)halo_net_local_port(lfd));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || connect(a, (struct sockaddr *)&sa, sizeof(sa)))
		exit(1);
	b = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	close(lfd);
	s.br = halo_bufring_new(&loop, 1, RING_N, BUF_SZ, &err);
	h = s.br ? halo_recv_ms_start_opts(&loop, b, s.br, on_data, &s, &ro,
					   &err)
		 : NULL;
	if (!h) {
		fprintf(stderr, "netrecv: %d\n", err);
		exit(1);
	}
	stop_flag = 0;
	pthread_create(&th, NULL, flood, &a);
	t0 = bench_now_ns();
	c0 = bench_thread_cpu_ns();
	deadline = t0 + (uint64_t)(secs * 1e9);
	while (bench_now_ns() < deadline)
		halo_loop_run_once(&loop);
	r.gbps = (double)s.bytes / (double)(bench_now_ns() - t0);
	r.bytes_per_cpu_s =
	    (double)s.bytes / ((double)(bench_thread_cpu_ns() - c0) / 1e9);
	r.bufs_per_cqe = s.st.cqes ? (double)s.st.bufs / (double)s.st.cqes : 0;
	stop_flag = 1;
	while (!s.ended)
		halo_loop_run_once(&loop);
	pthread_join(th, NULL);
	halo_bufring_free(s.br);
	close(a);
	close(b);
	if (halo_loop_close(&loop))
		exit(1);
	return r;
}

static int cmp(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return a < b ? -1 : a > b;
}

/* Incremental rings on over off, small messages: the rows of the second
 * part (see the top of the file). */
static void bench_inc(double secs)
{
	double e[2][ROUNDS], m[2][ROUNDS], u[2][ROUNDS], c[2][ROUNDS];

	bench_progress("netrecv",
		       "%d connections, %d-byte messages, %d held, one 1 MiB "
		       "ring: 16 x 64 KiB incremental against 256 x 4 KiB, "
		       "%d rounds",
		       CONNS, MSG, WINDOW, ROUNDS);
	for (int i = 0; i < ROUNDS; i++) {
		for (int on = 1; on >= 0; on--) {
			struct small_result r = run_small(on, secs);

			e[on][i] = r.bytes_per_cpu_s;
			m[on][i] = r.held_kib;
			u[on][i] = r.bytes_per_buf;
			c[on][i] = r.ns_per_piece;
		}
	}
	for (int on = 0; on < 2; on++) {
		qsort(e[on], ROUNDS, sizeof(double), cmp);
		qsort(m[on], ROUNDS, sizeof(double), cmp);
		qsort(u[on], ROUNDS, sizeof(double), cmp);
		qsort(c[on], ROUNDS, sizeof(double), cmp);
		bench_progress("netrecv",
			       "  inc %s: %.3g..%.3g B/cpu-s, ring held "
			       "%.0f..%.0f KiB, %.0f..%.0f bytes/buffer, "
			       "%.0f..%.0f cpu-ns/piece",
			       on ? "on" : "off", e[on][0], e[on][ROUNDS - 1],
			       m[on][0], m[on][ROUNDS - 1], u[on][0],
			       u[on][ROUNDS - 1], c[on][0], c[on][ROUNDS - 1]);
	}
	bench_emit("netrecv", "recv_inc_on_over_off", "bytes_per_cpu_s",
		   e[1][ROUNDS / 2], "B/cpu-s", "plain_4k", e[0][ROUNDS / 2],
		   1);
	bench_emit("netrecv", "recv_inc_on_over_off", "ring_held",
		   m[1][ROUNDS / 2], "KiB", "plain_4k", m[0][ROUNDS / 2], 0);
	bench_emit("netrecv", "recv_inc_on_over_off", "cpu_per_piece",
		   c[1][ROUNDS / 2], "ns", "plain_4k", c[0][ROUNDS / 2], 0);
	bench_emit("netrecv", "recv_inc_on_over_off", "bytes_per_buffer",
		   u[1][ROUNDS / 2], "B/buf", "plain_4k", u[0][ROUNDS / 2], 1);
}

int main(void)
{
	double secs = 0.5 * bench_scale();
	double t[2][ROUNDS], e[2][ROUNDS], q[2][ROUNDS];
	halo_loop probe;
	unsigned feats;

	bench_pin(0);
	if (halo_loop_init(&probe, NULL) < 0)
		return 1;
	feats = halo_loop_features(&probe);
	halo_loop_close(&probe);
	if (feats & HALO_FEAT_PBUF_INC)
		bench_inc(secs);
	else
		fprintf(stderr, "netrecv: no incremental rings on this "
				"kernel: skipped\n");
	if (!(feats & HALO_FEAT_RECV_BUNDLE)) {
		fprintf(stderr,
			"netrecv: no recv bundles on this kernel: skipped\n");
		return 0;
	}
	bench_progress("netrecv",
		       "one TCP stream into %d x %d-byte buffers, "
		       "bundles on and off, %d rounds",
		       RING_N, BUF_SZ, ROUNDS);
	for (int i = 0; i < ROUNDS; i++) {
		for (int on = 1; on >= 0; on--) {
			struct result r = run(on, secs);

			t[on][i] = r.gbps;
			e[on][i] = r.bytes_per_cpu_s;
			q[on][i] = r.bufs_per_cqe;
		}
	}
	for (int on = 0; on < 2; on++) {
		qsort(t[on], ROUNDS, sizeof(double), cmp);
		qsort(e[on], ROUNDS, sizeof(double), cmp);
		qsort(q[on], ROUNDS, sizeof(double), cmp);
		bench_progress("netrecv",
			       "  bundles %s: %.2f..%.2f GB/s, "
			       "%.3g..%.3g B/cpu-s, %.1f..%.1f buffers/CQE",
			       on ? "on" : "off", t[on][0], t[on][ROUNDS - 1],
			       e[on][0], e[on][ROUNDS - 1], q[on][0],
			       q[on][ROUNDS - 1]);
	}
	bench_emit("netrecv", "recv_bundle_on_over_off", "throughput",
		   t[1][ROUNDS / 2], "GB/s", "bundle_off", t[0][ROUNDS / 2], 1);
	bench_emit("netrecv", "recv_bundle_on_over_off", "bytes_per_cpu_s",
		   e[1][ROUNDS / 2], "B/cpu-s", "bundle_off", e[0][ROUNDS / 2],
		   1);
	bench_emit("netrecv", "recv_bundle_on_over_off", "buffers_per_cqe",
		   q[1][ROUNDS / 2], "buf/CQE", "bundle_off", q[0][ROUNDS / 2],
		   1);
	return 0;
}
