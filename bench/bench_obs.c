/* What seeing inside the loop costs: NOP throughput (batch 1 and 32) and
 * posted-callback throughput with the stall detector on (thresholds 5 ms,
 * read with CLOCK_MONOTONIC, and 50 ms, read with the coarse clock; never
 * reached) and with histograms on, each against the same loop with
 * both off, in the same process, rounds interleaved, medians reported with
 * the range in the progress lines. The ratio is on / off: 0.97 means 3%
 * slower. The NOP case has no ready-queue callbacks (futures without
 * waiters): it is the 3% budget; the callback case shows the
 * detector's cost per callback, where it reads the clock once. Rates are
 * per second of the thread's CPU time (CLOCK_THREAD_CPUTIME_ID, which
 * counts the kernel's io_uring work done in this thread too): on a shared
 * machine, time other processes take the CPU for is not this loop's cost. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench/bench.h"
#include "halo.h"

#define ROUNDS 11

enum mode { OFF, STALL, STALL_COARSE, HIST };

static uint64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void quiet(halo_loop *loop, const halo_stall *s, void *arg)
{
	(void)loop;
	(void)arg;
	fprintf(stderr, "  (preempted: %.1f ms stall)\n",
		(double)s->duration_ns / 1e6);
}

static void init(halo_loop *loop, enum mode m)
{
	halo_loop_opts o = {.stall_fn = quiet};

	if (m == STALL)
		o.stall_ns = 5000000;
	if (m == STALL_COARSE)
		o.stall_ns = 50000000;
	if (m == HIST)
		o.hist = 1;
	if (halo_loop_init(loop, &o) < 0) {
		fprintf(stderr, "halo: %s\n", halo_loop_error(loop));
		exit(1);
	}
}

/* A stall here is the machine taking the CPU away (the detector measures
 * wall time, as a user's would): it is printed, not an error. */
static void done(halo_loop *loop)
{
	if (halo_loop_close(loop) != 0) {
		fprintf(stderr, "obs: futures leaked\n");
		exit(1);
	}
}

static double nops(enum mode m, unsigned batch, double secs)
{
	halo_loop loop;
	halo_fut *f[32];
	uint64_t n = 0, t0, c0, deadline;
	double rate;

	init(&loop, m);
	t0 = bench_now_ns();
	c0 = cpu_ns();
	deadline = t0 + (uint64_t)(secs * 1e9);
	do {
		for (int k = 0; k < 64; k++) {
			for (unsigned i = 0; i < batch; i++)
				f[i] = halo_nop(&loop);
			halo_loop_run_once(&loop);
			for (unsigned i = 0; i < batch; i++) {
				if (!halo_fut_is_done(f[i]))
					halo_fut_wait(f[i]);
				halo_fut_release(f[i]);
			}
			n += batch;
		}
	} while (bench_now_ns() < deadline);
	rate = (double)n / ((double)(cpu_ns() - c0) / 1e9);
	done(&loop);
	return rate;
}

static void empty_cb(void *arg)
{
	(*(uint64_t *)arg)++;
}

static double posts(enum mode m, double secs)
{
	halo_loop loop;
	uint64_t n = 0, t0, c0, deadline;
	double rate;

	init(&loop, m);
	t0 = bench_now_ns();
	c0 = cpu_ns();
	deadline = t0 + (uint64_t)(secs * 1e9);
	do {
		for (int k = 0; k < 64; k++) {
			for (int i = 0; i < 64; i++)
				halo_loop_post(&loop, empty_cb, &n);
			halo_loop_run_once(&loop);
		}
	} while (bench_now_ns() < deadline);
	rate = (double)n / ((double)(cpu_ns() - c0) / 1e9);
	done(&loop);
	return rate;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* One case: rounds of (off, on) interleaved, in alternating order so that
 * neither always runs second. */
static void run_case(const char *name, const char *metric, const char *unit,
		     enum mode on, unsigned batch, double secs)
{
	double off_v[ROUNDS], on_v[ROUNDS];

	bench_progress("obs", "%s: %d interleaved rounds of %.1fs", name,
		       ROUNDS, secs);
	for (int r = 0; r < ROUNDS; r++) {
		for (int j = 0; j < 2; j++) {
			enum mode m = (j ^ (r & 1)) ? on : OFF;
			double v =
			    batch ? nops(m, batch, secs) : posts(m, secs);

			if (m == OFF)
				off_v[r] = v;
			else
				on_v[r] = v;
		}
	}
	qsort(off_v, ROUNDS, sizeof(double), cmp);
	qsort(on_v, ROUNDS, sizeof(double), cmp);
	bench_progress("obs", "%s: off %.4g [%.4g..%.4g], on %.4g [%.4g..%.4g]",
		       name, off_v[ROUNDS / 2], off_v[0], off_v[ROUNDS - 1],
		       on_v[ROUNDS / 2], on_v[0], on_v[ROUNDS - 1]);
	bench_emit("obs", name, metric, on_v[ROUNDS / 2], unit, "obs_off",
		   off_v[ROUNDS / 2], 1);
}

int main(void)
{
	double secs = 0.3 * bench_scale();

	bench_pin(0);
	run_case("nop_batch1_stall", "nops_per_s", "op/s", STALL, 1, secs);
	run_case("nop_batch32_stall", "nops_per_s", "op/s", STALL, 32, secs);
	run_case("nop_batch32_stall50", "nops_per_s", "op/s", STALL_COARSE, 32,
		 secs);
	run_case("post64_stall", "callbacks_per_s", "cb/s", STALL, 0, secs);
	run_case("post64_stall50", "callbacks_per_s", "cb/s", STALL_COARSE, 0,
		 secs);
	run_case("nop_batch1_hist", "nops_per_s", "op/s", HIST, 1, secs);
	run_case("nop_batch32_hist", "nops_per_s", "op/s", HIST, 32, secs);
	return 0;
}
