/* Resilience patterns: what retry, the circuit breaker and a saga add per
 * step over the bare futures they wrap (NOP futures, so that the kernel's
 * part is the same on both sides). Rounds of the pattern and of its
 * baseline are interleaved, and the medians are reported: the machine's
 * cores are shared. */
#include <stdio.h>
#include <stdlib.h>

#include "bench/bench.h"
#include "halo.h"

#define BATCH	   64
#define SAGA_STEPS 8
#define ROUNDS	   7

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return v[n / 2];
}

/* Baseline: width NOPs started, then joined, in waves of `steps`. */
static double bare_nops(halo_loop *loop, size_t total, int width, int steps)
{
	halo_fut *f[BATCH * SAGA_STEPS];
	uint64_t t0 = halo_now_ns();

	for (size_t done = 0; done < total;
	     done += (size_t)width * (size_t)steps) {
		for (int s = 0; s < steps; s++) {
			for (int i = 0; i < width; i++)
				f[i] = halo_nop(loop);
			for (int i = 0; i < width; i++)
				halo_fut_join(f[i]);
		}
	}
	return (double)(halo_now_ns() - t0) / (double)total;
}

static halo_fut *nop_attempt(halo_loop *loop, void *arg, unsigned attempt)
{
	(void)arg;
	(void)attempt;
	return halo_nop(loop);
}

static double retry_nops(halo_loop *loop, size_t total)
{
	halo_retry_policy p = {.seed = 1};
	halo_fut *f[BATCH];
	uint64_t t0 = halo_now_ns();

	for (size_t done = 0; done < total; done += BATCH) {
		for (int i = 0; i < BATCH; i++)
			f[i] = halo_retry(loop, &p, nop_attempt, NULL, NULL);
		for (int i = 0; i < BATCH; i++)
			halo_fut_join(f[i]);
	}
	return (double)(halo_now_ns() - t0) / (double)total;
}

static halo_fut *nop_call(halo_loop *loop, void *arg)
{
	(void)arg;
	return halo_nop(loop);
}

static double breaker_nops(halo_breaker *br, size_t total)
{
	halo_fut *f[BATCH];
	uint64_t t0 = halo_now_ns();

	for (size_t done = 0; done < total; done += BATCH) {
		for (int i = 0; i < BATCH; i++)
			f[i] = halo_breaker_call(br, nop_call, NULL);
		for (int i = 0; i < BATCH; i++)
			halo_fut_join(f[i]);
	}
	return (double)(halo_now_ns() - t0) / (double)total;
}

/* The manual API alone: acquire and record, no future. */
static double breaker_permits(halo_breaker *br, size_t total)
{
	halo_breaker_permit pm;
	uint64_t t0 = halo_now_ns();

	for (size_t i = 0; i < total; i++)
		if (halo_breaker_acquire(br, &pm) == 0)
			halo_breaker_record(br, &pm, 0);
	return (double)(halo_now_ns() - t0) / (double)total;
}

static halo_fut *nop_step(halo_saga *sg, void *ctx)
{
	(void)ctx;
	return halo_nop(halo_saga_loop(sg));
}

static halo_fut *nop_undo(halo_saga *sg, void *ctx)
{
	(void)ctx;
	return halo_nop(halo_saga_loop(sg));
}

/* BATCH sagas of SAGA_STEPS NOP steps at once; per step. */
static double saga_nops(halo_loop *loop, const halo_saga_step *steps,
			size_t total)
{
	halo_fut *f[BATCH];
	uint64_t t0 = halo_now_ns();

	for (size_t done = 0; done < total; done += BATCH * SAGA_STEPS) {
		for (int i = 0; i < BATCH; i++)
			f[i] =
			    halo_saga_run(loop, steps, SAGA_STEPS, NULL, NULL);
		for (int i = 0; i < BATCH; i++)
			halo_fut_join(f[i]);
	}
	return (double)(halo_now_ns() - t0) / (double)total;
}

static void emit_pair(const char *name, double *x, double *base,
		      const char *base_name)
{
	double mx = median(x, ROUNDS), mb = median(base, ROUNDS);

	bench_emit("resil", name, "ns_per_step", mx, "ns", base_name, mb, 0);
	bench_emit("resil", name, "overhead_per_step", mx - mb, "ns", NULL, 0,
		   0);
}

int main(void)
{
	halo_loop loop;
	halo_breaker br;
	halo_saga_step seq[SAGA_STEPS], par[SAGA_STEPS];
	double scale = bench_scale();
	size_t total = (size_t)(200000 * scale);
	double a[ROUNDS], b[ROUNDS], c[ROUNDS], d[ROUNDS], e[ROUNDS], g[ROUNDS],
	    h[ROUNDS], k[ROUNDS];

	total -= total % (BATCH * SAGA_STEPS);
	if (total == 0)
		total = BATCH * SAGA_STEPS;
	bench_pin(0);
	if (halo_loop_init(&loop, NULL) < 0) {
		fprintf(stderr, "bench_resil: %s\n", halo_loop_error(&loop));
		return 1;
	}
	if (halo_breaker_init(&br, &loop, NULL) < 0)
		return 1;
	for (int i = 0; i < SAGA_STEPS; i++) {
		static const char *names[SAGA_STEPS] = {"s0", "s1", "s2", "s3",
							"s4", "s5", "s6", "s7"};
		seq[i] = (halo_saga_step){
		    .name = names[i], .run = nop_step, .compensate = nop_undo};
		par[i] = seq[i];
		par[i].flags = HALO_SAGA_ASYNC;
	}
	bench_progress("resil",
		       "retry, breaker and saga over %zu NOPs, "
		       "%d rounds",
		       total, ROUNDS);
	/* warm the pools */
	retry_nops(&loop, total / 10);
	breaker_nops(&br, total / 10);
	saga_nops(&loop, seq, total / 10 + BATCH * SAGA_STEPS);
	bare_nops(&loop, total / 10, BATCH, 1);
	for (int r = 0; r < ROUNDS; r++) {
		a[r] = retry_nops(&loop, total);
		b[r] = bare_nops(&loop, total, BATCH, 1);
		c[r] = breaker_nops(&br, total);
		d[r] = saga_nops(&loop, seq, total);
		e[r] = bare_nops(&loop, total, BATCH, SAGA_STEPS);
		g[r] = saga_nops(&loop, par, total);
		k[r] = bare_nops(&loop, total, BATCH * SAGA_STEPS, 1);
		h[r] = breaker_permits(&br, total);
	}
	emit_pair("retry_nop_first_try", a, b, "halo_nop_bare");
	emit_pair("breaker_call_nop", c, b, "halo_nop_bare");
	emit_pair("saga_8_sync_nop_steps", d, e, "halo_nop_bare_8_waves");
	emit_pair("saga_8_async_nop_steps", g, k, "halo_nop_bare_512_wide");
	bench_emit("resil", "breaker_acquire_record", "ns_per_call",
		   median(h, ROUNDS), "ns", NULL, 0, 0);
	halo_breaker_close(&br);
	halo_loop_close(&loop);
	return 0;
}
