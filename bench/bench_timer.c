/* Timers: insert 1,000,000 timers with random deadlines over 1 ms, let them
 * all expire through the loop, and cancel 1,000,000; ns per timer. The loop
 * holds them in a 4-ary heap and sleeps in io_uring_enter until the nearest
 * one, so the figure is the heap and the future, not system calls. */
#include <stdio.h>
#include <stdlib.h>

#include "bench/bench.h"
#include "halo.h"

int main(void)
{
	long n = (long)(1000000 * bench_scale());
	halo_fut **f = malloc((size_t)n * sizeof(*f));
	double ins = 1e18, exp = 1e18, can = 1e18;

	bench_pin(0);
	bench_progress("timer", "insert + expire and insert + cancel, %ld "
				"timers, best of 3", n);
	for (int r = 0; r < 3; r++) {
		halo_loop loop;
		uint64_t base, t0, t1, t2;

		halo_loop_init(&loop, NULL);
		srand(1);
		base = halo_now_ns();
		t0 = bench_now_ns();
		for (long i = 0; i < n; i++)
			f[i] = halo_timer_at(&loop,
					     base + (uint64_t)(rand() % 1000000));
		t1 = bench_now_ns();
		while (halo_now_ns() < base + 1000000)
			;
		halo_loop_run(&loop);
		for (long i = 0; i < n; i++)
			halo_fut_release(f[i]);
		t2 = bench_now_ns();
		if ((double)(t1 - t0) / n < ins)
			ins = (double)(t1 - t0) / n;
		if ((double)(t2 - t1) / n < exp)
			exp = (double)(t2 - t1) / n;

		for (long i = 0; i < n; i++)
			f[i] = halo_timer_at(&loop,
					     base + 3600000000000ull + (uint64_t)rand());
		t0 = bench_now_ns();
		for (long i = 0; i < n; i++) {
			halo_fut_cancel(f[i]);
			halo_fut_release(f[i]);
		}
		t1 = bench_now_ns();
		if ((double)(t1 - t0) / n < can)
			can = (double)(t1 - t0) / n;
		halo_loop_close(&loop);
	}
	bench_emit("timer", "insert_1M", "ns_per_timer", ins, "ns", NULL, 0, 0);
	bench_emit("timer", "expire_1M", "ns_per_timer", exp, "ns", NULL, 0, 0);
	bench_emit("timer", "cancel_1M", "ns_per_timer", can, "ns", NULL, 0, 0);
	free(f);
	return 0;
}
