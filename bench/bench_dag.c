/* The DAG's own cost: a random DAG of 10,000 NOP nodes (1 to 5 dependencies
 * each, 3 on average, drawn from the nodes before it), run again and again.
 * A NOP's latency is one trip through the ring, so the critical path (the
 * longest chain of node durations) is what the kernel cannot avoid and the
 * run's time beyond it is the DAG's bookkeeping. Baseline: the same number
 * of NOPs started and joined with nothing in between, in this process.
 * Rounds are interleaved and the medians reported: the cores are shared. */
#include <stdio.h>
#include <stdlib.h>

#include "bench/bench.h"
#include "halo.h"

#define ROUNDS_MAX 64

static halo_fut *nop_node(halo_loop *loop, void *arg, halo_fut *const *deps,
			  size_t deps_n)
{
	(void)arg;
	(void)deps;
	(void)deps_n;
	return halo_nop(loop);
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static halo_dag *build(halo_loop *loop, size_t n, int deps_avg3,
		       char (*names)[12])
{
	halo_dag_opts o = {.max_nodes = n};
	halo_dag *d = halo_dag_new(loop, &o);

	if (!d)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		size_t k = deps_avg3 ? 1 + (size_t)(rand() % 5) : 0;

		snprintf(names[i], sizeof(names[i]), "n%zu", i);
		if (halo_dag_add(d, &(halo_dag_node){.name = names[i],
						     .fn = nop_node}) < 0)
			return NULL;
		for (size_t j = 0; j < k && j < i; j++)
			halo_dag_depend(d, i, (size_t)rand() % i);
	}
	return halo_dag_check(d) ? NULL : d;
}

/* One run: total ns per node and ns per node beyond the critical path. */
static int run_dag(halo_dag *d, size_t n, double *total, double *beyond)
{
	const halo_dag_report *rep;
	uint64_t crit, t;

	if (halo_dag_run(d) < 0)
		return -1;
	rep = halo_dag_get_report(d);
	t = rep->end_ns - rep->start_ns;
	halo_dag_critical_path(d, NULL, 0, &crit);
	*total = (double)t / (double)n;
	*beyond = ((double)t - (double)crit) / (double)n;
	return 0;
}

static double raw_nops(halo_loop *loop, halo_fut **f, size_t n)
{
	uint64_t t0 = halo_now_ns();

	for (size_t i = 0; i < n; i++)
		f[i] = halo_nop(loop);
	for (size_t i = 0; i < n; i++)
		halo_fut_join(f[i]);
	return (double)(halo_now_ns() - t0) / (double)n;
}

int main(void)
{
	enum { N = 10000 };
	static char names[N][12];
	static halo_fut *f[N];
	double tot[ROUNDS_MAX], beyond[ROUNDS_MAX], flat[ROUNDS_MAX],
	    flat_beyond[ROUNDS_MAX], raw[ROUNDS_MAX];
	int rounds = (int)(15 * bench_scale());
	halo_dag *d, *flatd;
	halo_loop loop;
	size_t path_n;
	uint64_t crit;
	halo_stats st0, st1;

	rounds = rounds < 3 ? 3 : rounds > ROUNDS_MAX ? ROUNDS_MAX : rounds;
	bench_pin(0);
	srand(42);
	if (halo_loop_init(&loop, NULL) < 0) {
		fprintf(stderr, "bench_dag: %s\n", halo_loop_error(&loop));
		return 1;
	}
	d = build(&loop, N, 1, names);
	flatd = build(&loop, N, 0, names);
	if (!d || !flatd) {
		fprintf(stderr, "bench_dag: building the DAG failed\n");
		return 1;
	}
	bench_progress("dag", "random DAG of %d NOP nodes, %d rounds", N,
		       rounds);
	/* Warm the pools and the DAG's arrays. */
	run_dag(d, N, &tot[0], &beyond[0]);
	run_dag(flatd, N, &flat[0], &flat_beyond[0]);
	raw_nops(&loop, f, N);
	halo_loop_stats(&loop, &st0);
	for (int r = 0; r < rounds; r++) {
		if (run_dag(d, N, &tot[r], &beyond[r]) ||
		    run_dag(flatd, N, &flat[r], &flat_beyond[r]))
			return 1;
		raw[r] = raw_nops(&loop, f, N);
	}
	halo_loop_stats(&loop, &st1);
	path_n = halo_dag_critical_path(d, NULL, 0, &crit);
	bench_progress("dag", "critical path: %zu nodes, %.3f ms (last round)",
		       path_n, (double)crit / 1e6);
	bench_emit("dag", "random_10k_nops", "beyond_critical_path",
		   median(beyond, rounds), "ns/node", "halo_nop_raw",
		   median(raw, rounds), 0);
	bench_emit("dag", "random_10k_nops", "total", median(tot, rounds),
		   "ns/node", "halo_nop_raw", median(raw, rounds), 0);
	bench_emit("dag", "flat_10k_nops", "total", median(flat, rounds),
		   "ns/node", "halo_nop_raw", median(raw, rounds), 0);
	bench_emit("dag", "random_10k_nops", "heap_allocs_after_warmup",
		   (double)(st1.pool_allocs - st0.pool_allocs), "allocs", NULL,
		   0, 0);
	halo_dag_free(d);
	halo_dag_free(flatd);
	return halo_loop_close(&loop) ? 1 : 0;
}
