/* Patterns: fan-out latency overhead and memory per pending future, and the
 * cost of gather over NOP futures against the raw NOP loop (halo futures
 * waited one by one) and raw liburing NOPs, all in this process. */
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "bench/bench.h"
#include "halo.h"

#define MS 1000000ull

static long rss_bytes(void)
{
	long pages = 0, res = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f)
		return 0;
	if (fscanf(f, "%ld %ld", &pages, &res) != 2)
		res = 0;
	fclose(f);
	return res * sysconf(_SC_PAGESIZE);
}

/* 10,000 timers of 1..50 ms gathered: the time past the longest timer. */
static void fanout_overhead(halo_loop *loop, size_t n, int rounds)
{
	halo_fut **f = calloc(n, sizeof(*f));
	double best = 1e18, sum = 0;

	for (int r = 0; r < rounds; r++) {
		uint64_t t0 = halo_now_ns(), last = 0, end;
		halo_gather_opts o = {.adopt = true};
		halo_fut *g;

		for (size_t i = 0; i < n; i++) {
			uint64_t d = t0 + (1 + (uint64_t)(rand() % 50)) * MS;
			if (d > last)
				last = d;
			f[i] = halo_timer_at(loop, d);
		}
		g = halo_gather(loop, f, n, &o);
		halo_fut_join(g);
		end = halo_now_ns();
		sum += (double)(end - last);
		if ((double)(end - last) < best)
			best = (double)(end - last);
	}
	bench_emit("patterns", "fanout_10k_timers", "overhead_mean",
		   sum / rounds / 1e6, "ms", NULL, 0, 0);
	bench_emit("patterns", "fanout_10k_timers", "overhead_best", best / 1e6,
		   "ms", NULL, 0, 0);
	free(f);
}

/* Memory per pending timer future (and with a gather over them), from RSS
 * deltas on a fresh loop so that the pools grow from nothing. */
static void pending_memory(size_t n)
{
	halo_loop loop;
	halo_fut **f = calloc(n, sizeof(*f));
	halo_loop_opts lo = {0};
	long r0, r1, r2;
	uint64_t t0;
	halo_gather_opts o = {.adopt = true};
	halo_fut *g;

	if (halo_loop_init(&loop, &lo) < 0)
		return;
	for (size_t i = 0; i < n; i++) /* fault the array in first */
		f[i] = NULL;
	r0 = rss_bytes();
	t0 = halo_now_ns() + 2000 * MS;
	for (size_t i = 0; i < n; i++)
		f[i] = halo_timer_at(&loop, t0 + (i % 50) * MS);
	r1 = rss_bytes();
	g = halo_gather(&loop, f, n, &o);
	r2 = rss_bytes();
	bench_emit("patterns", "pending_1m_timers", "bytes_per_timer",
		   (double)(r1 - r0) / (double)n, "B", NULL, 0, 0);
	bench_emit("patterns", "pending_1m_timers", "bytes_per_gathered",
		   (double)(r2 - r0) / (double)n, "B", NULL, 0, 0);
	halo_fut_cancel(g);
	halo_fut_join(g);
	halo_loop_close(&loop);
	free(f);
}

static double gather_nops(halo_loop *loop, size_t total, size_t batch)
{
	halo_fut *f[512];
	halo_gather_opts o = {.adopt = true};
	uint64_t t0 = halo_now_ns();

	for (size_t done = 0; done < total; done += batch) {
		for (size_t i = 0; i < batch; i++)
			f[i] = halo_nop(loop);
		halo_fut_join(halo_gather(loop, f, batch, &o));
	}
	return (double)(halo_now_ns() - t0) / (double)total;
}

static double raw_halo_nops(halo_loop *loop, size_t total, size_t batch)
{
	halo_fut *f[512];
	uint64_t t0 = halo_now_ns();

	for (size_t done = 0; done < total; done += batch) {
		for (size_t i = 0; i < batch; i++)
			f[i] = halo_nop(loop);
		for (size_t i = 0; i < batch; i++)
			halo_fut_join(f[i]);
	}
	return (double)(halo_now_ns() - t0) / (double)total;
}

static double raw_uring_nops(size_t total, size_t batch)
{
	struct io_uring ring;
	struct io_uring_cqe *cqe;
	uint64_t t0;

	if (io_uring_queue_init((unsigned)batch, &ring, 0) < 0)
		return 0;
	t0 = halo_now_ns();
	for (size_t done = 0; done < total; done += batch) {
		unsigned head, seen = 0;

		for (size_t i = 0; i < batch; i++)
			io_uring_prep_nop(io_uring_get_sqe(&ring));
		io_uring_submit_and_wait(&ring, (unsigned)batch);
		while (seen < batch) {
			unsigned got = 0;
			io_uring_for_each_cqe(&ring, head, cqe) got++;
			io_uring_cq_advance(&ring, got);
			seen += got;
			if (seen < batch)
				io_uring_wait_cqe(&ring, &cqe);
		}
	}
	io_uring_queue_exit(&ring);
	return (double)(halo_now_ns() - t0) / (double)total;
}

static void gather_overhead(halo_loop *loop, size_t total, size_t batch)
{
	char name[48];
	double g, raw, uring;

	gather_nops(loop, total / 10, batch); /* warm the pools */
	raw_halo_nops(loop, total / 10, batch);
	/* Interleaved, best of three: the machine's cores are shared. */
	g = raw = uring = 1e18;
	for (int r = 0; r < 3; r++) {
		double x = gather_nops(loop, total, batch);
		double y = raw_halo_nops(loop, total, batch);
		double z = raw_uring_nops(total, batch);
		g = x < g ? x : g;
		raw = y < raw ? y : raw;
		uring = z < uring ? z : uring;
	}
	snprintf(name, sizeof(name), "gather_nops_batch%zu", batch);
	bench_emit("patterns", name, "ns_per_future", g, "ns", "halo_nop_raw",
		   raw, 0);
	bench_emit("patterns", name, "gather_overhead", g - raw, "ns", NULL, 0,
		   0);
	bench_emit("patterns", name, "ns_per_future_vs_liburing", g, "ns",
		   "liburing_nop", uring, 0);
}

int main(void)
{
	halo_loop loop;
	double scale = bench_scale();
	size_t nops = (size_t)(1000000 * scale);
	size_t pend = (size_t)(1000000 * scale);

	bench_pin(0);
	srand(42);
	if (halo_loop_init(&loop, NULL) < 0) {
		fprintf(stderr, "bench_patterns: %s\n", halo_loop_error(&loop));
		return 1;
	}
	bench_progress("patterns", "fan-out of 10,000 timers");
	fanout_overhead(&loop, 10000, 5);
	bench_progress("patterns", "gather over %zu NOPs", nops);
	gather_overhead(&loop, nops - nops % 256, 256);
	gather_overhead(&loop, nops - nops % 128, 128);
	halo_loop_close(&loop);
	bench_progress("patterns", "memory of %zu pending timers", pend);
	pending_memory(pend);
	return 0;
}
