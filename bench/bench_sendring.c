/* The send ring with send bundles against the same ring sent with sendmsg
 * (its default path), on one loopback TCP stream while a thread on the
 * other cpu reads and drops the bytes. Two shapes: "flood", writes of SIZE
 * bytes as fast as the ring takes them (the loop runs when it is full), and
 * "tick", 16 writes of SIZE bytes per loop tick (a server's replies).
 * Reported per case: writes per second and bytes per sender CPU-second,
 * bundles over sendmsg, median of interleaved rounds (the order alternates)
 * with the range of the per-round ratio on stderr, and the buffers per send.
 * The _vs_sw rows set the ring (sendmsg path) against the socket writer,
 * which sends the caller's buffers with a future per write, kept to a ring's
 * worth of bytes queued. */
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

#define ROUNDS	 7
#define PER_TICK 16

struct result {
	double writes_per_s;
	double bytes_per_cpu_s;
	double bufs_per_send;
};

/* The socket writer on the same stream: no copy, but a future per write,
 * queued while fewer than a ring's worth of bytes wait. */
static uint64_t sw_writes(halo_sw *sw, const char *msg, size_t size,
			  int is_tick, size_t cap)
{
	halo_sw_stats st;
	uint64_t n = 0;

	for (int i = 0; is_tick ? i < PER_TICK : 1; i++) {
		halo_sw_stats_get(sw, &st);
		if ((st.sends + 1) * size - st.bytes > cap)
			break;
		halo_fut_release(halo_sw_send(sw, msg, size));
		n++;
	}
	return n;
}

enum { SENDMSG, BUNDLE, SOCKWRITER };

static struct result run(halo_loop *loop, size_t size, int is_tick, int mode,
			 double secs)
{
	int lfd = halo_net_listen("127.0.0.1", 0, NULL), a, b, err = 0;
	struct sockaddr_in sa = {.sin_family = AF_INET};
	halo_sendring_opts o = {.flags =
				    mode == BUNDLE ? HALO_SENDRING_BUNDLE : 0};
	static char msg[65536];
	uint64_t writes = 0, t0, c0, deadline;
	halo_sendring_stats st;
	halo_sendring *sr;
	struct result r;
	halo_fut *f;
	pthread_t th;

	sa.sin_port = htons((uint16_t)halo_net_local_port(lfd));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || connect(a, (struct sockaddr *)&sa, sizeof(sa)))
		exit(1);
	b = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	close(lfd);
	halo_sw sw;

	sr = halo_sendring_new(loop, a, 1, &o, &err);
	if (!sr || halo_sw_init(&sw, loop, a, NULL) < 0) {
		fprintf(stderr, "sendring: %d\n", err);
		exit(1);
	}
	memset(msg, 'm', size);
	pthread_create(&th, NULL, bench_drain, &b);
	t0 = bench_now_ns();
	c0 = bench_thread_cpu_ns();
	deadline = t0 + (uint64_t)(secs * 1e9);
	while (bench_now_ns() < deadline) {
		if (mode == SOCKWRITER) {
			writes += sw_writes(&sw, msg, size, is_tick, 64 * 4096);
			halo_loop_run_once(loop);
			continue;
		}
		for (int i = 0; is_tick ? i < PER_TICK : 1; i++) {
			int w = halo_sendring_write(sr, msg, size);

			if (w == -ENOBUFS)
				break;
			if (w < 0) {
				fprintf(stderr, "write: %d (mode %d)\n", w,
					mode);
				exit(1);
			}
			writes++;
		}
		halo_loop_run_once(loop);
	}
	f = halo_sendring_flush(sr);
	if (halo_fut_wait(f) < 0) {
		fprintf(stderr, "flush: %lld (mode %d)\n",
			(long long)halo_fut_result(f), mode);
		exit(1);
	}
	halo_fut_release(f);
	for (;;) {
		halo_sw_stats sst;

		halo_sw_stats_get(&sw, &sst);
		if (sst.bytes == sst.sends * size)
			break;
		halo_loop_run_once(loop);
	}
	r.writes_per_s = (double)writes / ((double)(bench_now_ns() - t0) / 1e9);
	halo_sendring_stats_get(sr, &st);
	if (mode == SOCKWRITER) {
		halo_sw_stats sst;

		halo_sw_stats_get(&sw, &sst);
		st.bytes_out = sst.bytes;
		st.bufs = sst.sends;
		st.sends = sst.syscalls;
	}
	r.bytes_per_cpu_s =
	    (double)st.bytes_out / ((double)(bench_thread_cpu_ns() - c0) / 1e9);
	r.bufs_per_send = (double)st.bufs / (double)(st.sends ? st.sends : 1);
	halo_sendring_close(sr);
	halo_sw_close(&sw);
	shutdown(a, SHUT_WR);
	pthread_join(th, NULL);
	close(a);
	close(b);
	return r;
}

static int cmp(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return a < b ? -1 : a > b;
}

static double median(double *v)
{
	qsort(v, ROUNDS, sizeof(double), cmp);
	return v[ROUNDS / 2];
}

int main(void)
{
	static const size_t sizes[] = {64, 1024};
	double secs = 0.3 * bench_scale();
	halo_loop loop;

	bench_pin(0);
	if (halo_loop_init(&loop, NULL) < 0) {
		fprintf(stderr, "halo: %s\n", halo_loop_error(&loop));
		return 1;
	}
	if (!(halo_loop_features(&loop) & HALO_FEAT_SEND_BUNDLE)) {
		fprintf(stderr, "sendring: no send bundles here: skipped\n");
		return halo_loop_close(&loop) ? 1 : 0;
	}
	for (int tick = 0; tick < 2; tick++) {
		for (size_t k = 0; k < sizeof(sizes) / sizeof(*sizes); k++) {
			double won[ROUNDS], woff[ROUNDS], eon[ROUNDS];
			double eoff[ROUNDS], rw[ROUNDS], re[ROUNDS];
			double bon[ROUNDS], boff[ROUNDS], wsw[ROUNDS];
			double esw[ROUNDS], rsw[ROUNDS];
			char name[64];

			snprintf(name, sizeof(name), "%s_%zu",
				 tick ? "tick" : "flood", sizes[k]);
			bench_progress("sendring", "%s: %zu-byte writes%s",
				       name, sizes[k],
				       tick ? ", 16 per tick" : "");
			for (int i = 0; i < ROUNDS; i++) {
				struct result x, y, z;

				if (i % 2) {
					y = run(&loop, sizes[k], tick, SENDMSG,
						secs);
					x = run(&loop, sizes[k], tick, BUNDLE,
						secs);
				} else {
					x = run(&loop, sizes[k], tick, BUNDLE,
						secs);
					y = run(&loop, sizes[k], tick, SENDMSG,
						secs);
				}
				z = run(&loop, sizes[k], tick, SOCKWRITER,
					secs);
				wsw[i] = z.writes_per_s;
				esw[i] = z.bytes_per_cpu_s;
				rsw[i] = y.writes_per_s / z.writes_per_s;
				won[i] = x.writes_per_s;
				woff[i] = y.writes_per_s;
				eon[i] = x.bytes_per_cpu_s;
				eoff[i] = y.bytes_per_cpu_s;
				bon[i] = x.bufs_per_send;
				boff[i] = y.bufs_per_send;
				rw[i] = x.writes_per_s / y.writes_per_s;
				re[i] = x.bytes_per_cpu_s / y.bytes_per_cpu_s;
			}
			bench_emit("sendring", name, "writes_per_s",
				   median(won), "writes/s", "sendmsg",
				   median(woff), 1);
			bench_emit("sendring", name, "bytes_per_cpu_s",
				   median(eon), "B/cpu-s", "sendmsg",
				   median(eoff), 1);
			/* The ring itself (its default sendmsg path)
			 * against the socket writer. */
			snprintf(name, sizeof(name), "%s_%zu_vs_sw",
				 tick ? "tick" : "flood", sizes[k]);
			bench_emit("sendring", name, "writes_per_s",
				   median(woff), "writes/s", "sockwriter",
				   median(wsw), 1);
			bench_emit("sendring", name, "bytes_per_cpu_s",
				   median(eoff), "B/cpu-s", "sockwriter",
				   median(esw), 1);
			median(rsw);
			median(rw);
			median(re);
			bench_progress("sendring",
				       "  ring/sockwriter per round: writes/s "
				       "%.2f..%.2f (median %.2f)",
				       rsw[0], rsw[ROUNDS - 1],
				       rsw[ROUNDS / 2]);
			bench_progress("sendring",
				       "  bundle/sendmsg per round: writes/s "
				       "%.2f..%.2f (median %.2f), per cpu-s "
				       "%.2f..%.2f (median %.2f); buffers per "
				       "send %.1f vs %.1f",
				       rw[0], rw[ROUNDS - 1], rw[ROUNDS / 2],
				       re[0], re[ROUNDS - 1], re[ROUNDS / 2],
				       median(bon), median(boff));
		}
	}
	return halo_loop_close(&loop) ? 1 : 0;
}
