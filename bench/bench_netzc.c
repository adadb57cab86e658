/* Zero-copy send against a copying send on a loopback TCP connection: halo
 * keeps 4 sends of SIZE bytes in flight (halo_send_zc, whose future waits for
 * the notification, against halo_send) while a thread on the other cpu reads
 * and drops the bytes. Reported per size: throughput and bytes per sender
 * CPU-second, zero-copy over copy, median of interleaved rounds with the
 * range. The size where the ratio passes 1 is the threshold above which
 * zero-copy pays on this machine (on loopback the kernel copies the pages at
 * the receiving socket anyway). The send_all_zc rows do the same for
 * halo_send_all, one at a time, on a loop whose send_zc_min sends every one
 * zero-copy against a loop without it: they set the default threshold. */
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
#define DEPTH  4

struct result {
	double gbps;
	double bytes_per_cpu_s;
};

static struct result run(halo_loop *loop, size_t size, int zc, double secs,
			 int is_all)
{
	int lfd = halo_net_listen("127.0.0.1", 0, NULL), a, b;
	struct sockaddr_in sa = {.sin_family = AF_INET};
	char *bufs = aligned_alloc(4096, DEPTH * ((size + 4095) & ~4095ul));
	halo_fut *f[DEPTH] = {0};
	uint64_t bytes = 0, t0, c0, deadline;
	struct result r;
	pthread_t th;

	sa.sin_port = htons((uint16_t)halo_net_local_port(lfd));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || !bufs || connect(a, (struct sockaddr *)&sa, sizeof(sa)))
		exit(1);
	b = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	close(lfd);
	memset(bufs, 'z', DEPTH * ((size + 4095) & ~4095ul));
	pthread_create(&th, NULL, bench_drain, &b);
	t0 = bench_now_ns();
	c0 = bench_thread_cpu_ns();
	deadline = t0 + (uint64_t)(secs * 1e9);
	for (;;) {
		bool go = bench_now_ns() < deadline, busy = false;

		for (int i = 0; i < (is_all ? 1 : DEPTH); i++) {
			char *p = bufs + i * ((size + 4095) & ~4095ul);

			if (f[i] && !halo_fut_is_done(f[i])) {
				busy = true;
				continue;
			}
			if (f[i]) {
				int64_t res = halo_fut_result(f[i]);

				halo_fut_release(f[i]);
				f[i] = NULL;
				if (res < 0) {
					fprintf(stderr, "send: %lld\n",
						(long long)res);
					exit(1);
				}
				bytes += (uint64_t)res;
			}
			if (!go)
				continue;
			if (is_all)
				f[i] = halo_send_all(loop, a, p, size, 0);
			else if (zc)
				f[i] = halo_send_zc(loop, a, p, size,
						    MSG_NOSIGNAL);
			else
				f[i] = halo_send(loop, a, p, size,
						 MSG_NOSIGNAL);
			busy = true;
		}
		if (!busy)
			break;
		halo_loop_run_once(loop);
	}
	r.gbps = (double)bytes / ((double)(bench_now_ns() - t0));
	r.bytes_per_cpu_s =
	    (double)bytes / ((double)(bench_thread_cpu_ns() - c0) / 1e9);
	shutdown(a, SHUT_WR);
	pthread_join(th, NULL);
	close(a);
	close(b);
	free(bufs);
	return r;
}

static int cmp(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return a < b ? -1 : a > b;
}

int main(void)
{
	static const size_t sizes[] = {1024, 4096, 16384, 65536, 262144};
	double secs = 0.4 * bench_scale();
	halo_loop_opts zo = {.send_zc_min = 1};
	halo_loop loop, zloop;

	bench_pin(0);
	if (halo_loop_init(&loop, NULL) < 0) {
		fprintf(stderr, "halo: %s\n", halo_loop_error(&loop));
		return 1;
	}
	if (!(halo_loop_features(&loop) & HALO_FEAT_SEND_ZC)) {
		fprintf(stderr, "netzc: no SEND_ZC on this kernel: skipped\n");
		return halo_loop_close(&loop) ? 1 : 0;
	}
	if (halo_loop_init(&zloop, &zo) < 0) {
		fprintf(stderr, "halo: %s\n", halo_loop_error(&zloop));
		return 1;
	}
	for (size_t k = 0; k < 2 * sizeof(sizes) / sizeof(*sizes); k++) {
		int is_all = k >= sizeof(sizes) / sizeof(*sizes);
		size_t size = sizes[k % (sizeof(sizes) / sizeof(*sizes))];
		double tz[ROUNDS], tc[ROUNDS], ez[ROUNDS], ec[ROUNDS];
		double rt[ROUNDS], re[ROUNDS];
		char name[64];

		if (is_all)
			bench_progress("netzc", "%zu-byte send_all, one at a "
				       "time", size);
		else
			bench_progress("netzc", "%zu-byte sends, %d in flight",
				       size, DEPTH);
		for (int i = 0; i < ROUNDS; i++) {
			struct result c = run(&loop, size, 0, secs, is_all);
			struct result z = run(is_all ? &zloop : &loop, size, 1,
					      secs, is_all);

			tc[i] = c.gbps;
			tz[i] = z.gbps;
			ec[i] = c.bytes_per_cpu_s;
			ez[i] = z.bytes_per_cpu_s;
			rt[i] = z.gbps / c.gbps;
			re[i] = z.bytes_per_cpu_s / c.bytes_per_cpu_s;
		}
		qsort(tz, ROUNDS, sizeof(double), cmp);
		qsort(tc, ROUNDS, sizeof(double), cmp);
		qsort(ez, ROUNDS, sizeof(double), cmp);
		qsort(ec, ROUNDS, sizeof(double), cmp);
		qsort(rt, ROUNDS, sizeof(double), cmp);
		qsort(re, ROUNDS, sizeof(double), cmp);
		snprintf(name, sizeof(name), "%s_%zu",
			 is_all ? "send_all_zc" : "send_zc", size);
		bench_emit("netzc", name, "throughput", tz[ROUNDS / 2], "GB/s",
			   is_all ? "send_all" : "send", tc[ROUNDS / 2], 1);
		bench_emit("netzc", name, "bytes_per_cpu_s", ez[ROUNDS / 2],
			   "B/cpu-s", is_all ? "send_all" : "send",
			   ec[ROUNDS / 2], 1);
		bench_progress("netzc",
			       "  zc/copy per round: throughput %.2f..%.2f, "
			       "per cpu-s %.2f..%.2f",
			       rt[0], rt[ROUNDS - 1], re[0], re[ROUNDS - 1]);
	}
	int leaked = halo_loop_close(&zloop);

	leaked |= halo_loop_close(&loop);
	return leaked ? 1 : 0;
}
