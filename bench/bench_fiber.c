/* Fiber costs: the bare context switch (halo's hand-written stack switch,
 * one direction; baseline: glibc swapcontext in the same process), a yield
 * (fiber -> loop -> next fiber: two switches plus the scheduling),
 * spawn+join of a fiber that returns at once, and of a fiber that waits on
 * one NOP (the op is owned by the fiber: linked at submit, unlinked at its
 * CQE). */
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>

#include "bench/bench.h"
#include "halo.h"
#include "runtime/ctx.h"

static long yields;

static int64_t yielder(halo_loop *loop, void *arg)
{
	(void)arg;
	for (long i = 0; i < yields; i++)
		halo_yield(loop);
	return 0;
}

static double halo_switch_ns(long n)
{
	halo_loop loop;
	halo_fut *a, *b;
	uint64_t t0, dt;

	halo_loop_init(&loop, NULL);
	yields = n;
	a = halo_spawn(&loop, yielder, NULL);
	b = halo_spawn(&loop, yielder, NULL);
	t0 = bench_now_ns();
	halo_fut_join(a);
	halo_fut_join(b);
	dt = bench_now_ns() - t0;
	halo_loop_close(&loop);
	return (double)dt / (2.0 * (double)n);
}

static ucontext_t uc_main, uc_a;
static long uc_n;

static void uc_body(void)
{
	for (;;)
		swapcontext(&uc_a, &uc_main);
}

static double ucontext_switch_ns(long n)
{
	static char stack[64 * 1024];
	uint64_t t0;

	getcontext(&uc_a);
	uc_a.uc_stack.ss_sp = stack;
	uc_a.uc_stack.ss_size = sizeof(stack);
	uc_a.uc_link = NULL;
	makecontext(&uc_a, uc_body, 0);
	uc_n = n;
	t0 = bench_now_ns();
	for (long i = 0; i < uc_n; i++)
		swapcontext(&uc_main, &uc_a); /* two switches: there and back */
	return (double)(bench_now_ns() - t0) / (2.0 * (double)n);
}

static int64_t ret0(halo_loop *loop, void *arg)
{
	(void)loop;
	(void)arg;
	return 0;
}

static double spawn_join_ns(long n)
{
	halo_loop loop;
	uint64_t t0, dt;

	halo_loop_init(&loop, NULL);
	halo_fut_join(halo_spawn(&loop, ret0, NULL)); /* warm the stack pool */
	t0 = bench_now_ns();
	for (long i = 0; i < n; i++)
		halo_fut_join(halo_spawn(&loop, ret0, NULL));
	dt = bench_now_ns() - t0;
	halo_loop_close(&loop);
	return (double)dt / (double)n;
}

static int64_t one_nop(halo_loop *loop, void *arg)
{
	(void)arg;
	return halo_fut_join(halo_nop(loop));
}

/* Spawn fibers running body 256 at a time, then join them. */
static double spawn256_join256(long n, halo_fiber_fn body)
{
	enum { B = 256 };
	halo_loop loop;
	halo_fut *f[B];
	uint64_t t0, dt;

	halo_loop_init(&loop, NULL);
	t0 = bench_now_ns();
	for (long i = 0; i < n; i += B) {
		for (int k = 0; k < B; k++)
			f[k] = halo_spawn(&loop, body, NULL);
		for (int k = 0; k < B; k++)
			halo_fut_join(f[k]);
	}
	dt = bench_now_ns() - t0;
	halo_loop_close(&loop);
	return (double)dt / (double)n;
}

static double spawn_nop_join_ns(long n)
{
	return spawn256_join256(n, one_nop);
}

static double spawn_batch_join_ns(long n)
{
	return spawn256_join256(n, ret0);
}

static void *raw_main_sp, *raw_peer_sp;

static void raw_peer(void *arg)
{
	(void)arg;
	for (;;)
		halo__ctx_switch(&raw_peer_sp, raw_main_sp);
}

static double raw_switch_ns(long n)
{
	static char stack[64 * 1024] __attribute__((aligned(16)));
	uint64_t t0;

	raw_peer_sp = halo__ctx_init(stack, sizeof(stack), raw_peer, NULL);
	t0 = bench_now_ns();
	for (long i = 0; i < n; i++)
		halo__ctx_switch(&raw_main_sp, raw_peer_sp);
	return (double)(bench_now_ns() - t0) / (2.0 * (double)n);
}

static double best(double (*fn)(long), long n)
{
	double b = 1e18;

	for (int r = 0; r < 5; r++) {
		double v = fn(n);
		if (v < b)
			b = v;
	}
	return b;
}

int main(void)
{
	long n = (long)(2000000 * bench_scale());

	bench_pin(0);
	bench_progress("fiber", "context switch: %ld round trips", n);
	bench_emit("fiber", "context_switch", "ns_per_switch",
		   best(raw_switch_ns, n), "ns", "swapcontext",
		   best(ucontext_switch_ns, n), 0);
	bench_progress("fiber", "yield: 2 fibers x %ld yields", n);
	bench_emit("fiber", "yield", "ns_per_yield", best(halo_switch_ns, n),
		   "ns", NULL, 0, 0);
	bench_progress("fiber", "spawn+join: %ld fibers", n / 2);
	bench_emit("fiber", "spawn_join", "ns_per_fiber",
		   best(spawn_join_ns, n / 2), "ns", NULL, 0, 0);
	bench_emit("fiber", "spawn256_join256", "ns_per_fiber",
		   best(spawn_batch_join_ns, n / 2), "ns", NULL, 0, 0);
	bench_progress("fiber", "spawn+nop+join: %ld fibers", n / 4);
	bench_emit("fiber", "spawn256_nop_join256", "ns_per_fiber",
		   best(spawn_nop_join_ns, n / 4), "ns", NULL, 0, 0);
	return 0;
}
