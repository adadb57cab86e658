/* Sweep program: the stall detector and the latency histograms, each on a
 * loop of its own (their state is allocated at init, histograms at their
 * first sample). */
#include <errno.h>
#include <stdio.h>

#include "prog.h"

static void spin(uint64_t ns)
{
	uint64_t end = halo_now_ns() + ns;

	while (halo_now_ns() < end)
		;
}

static void spin_post(void *arg)
{
	(void)arg;
	spin(2 * MS);
}

static int64_t spin_fiber(halo_loop *l, void *arg)
{
	(void)arg;
	spin(2 * MS);
	return halo_yield(l);
}

static void count_stall(halo_loop *l, const halo_stall *s, void *arg)
{
	char buf[128];

	(void)l;
	halo_stall_format(s, buf, sizeof(buf));
	(*(int *)arg)++;
}

static void step_stall(halo_loop *unused)
{
	halo_loop l;
	halo_loop_opts o = {.stall_ns = 1 * MS, .stall_fn = count_stall};
	int n = 0, want = 0;
	halo_fut *f;

	(void)unused;
	o.stall_arg = &n;
	if (!EXPECT(halo_loop_init(&l, &o), 0))
		return;
	if (EXPECT(halo_loop_post(&l, spin_post, NULL), 0))
		want++;
	f = halo_spawn(&l, spin_fiber, NULL);
	if (GOT(f)) {
		if (EXPECT(halo_fut_wait(f), 0))
			want++;
		halo_fut_release(f);
	}
	EXPECT(halo_loop_run(&l), 0);
	/* At least: a preempted thread may stall more. */
	if (n < want)
		prog_wrong("stall reports", __LINE__);
	EXPECT(halo_stall_report(&l, 5 * MS, "section"), 0);
	EXPECT(halo_loop_close(&l), 0);
}

static void step_hist(halo_loop *unused)
{
	halo_loop l;
	halo_loop_opts o = {.hist = 1};
	halo_hist_summary s;
	halo_fut *f;
	FILE *out;
	int done = 0;

	(void)unused;
	if (!EXPECT(halo_loop_init(&l, &o), 0))
		return;
	for (int i = 0; i < 20; i++) {
		f = halo_nop(&l);
		if (!GOT(f))
			continue;
		if (EXPECT(halo_fut_wait(f), 0))
			done++;
		halo_fut_release(f);
	}
	f = halo_timer_after(&l, 1 * MS);
	if (GOT(f)) {
		EXPECT(halo_fut_wait(f), 0);
		halo_fut_release(f);
	}
	EXPECT(halo_hist_get(&l, IORING_OP_NOP, &s), 0);
	/* A histogram without memory loses its samples, counted. */
	if (s.count != (uint64_t)done && !prog_faulted())
		prog_wrong("nop samples", __LINE__);
	out = fopen("/dev/null", "w");
	if (out) {
		if (halo_hist_dump(&l, out) < 1)
			prog_wrong("dump", __LINE__);
		fclose(out);
	}
	halo_hist_reset(&l);
	EXPECT(halo_loop_close(&l), 0);
}

int main(int argc, char **argv)
{
	static const struct prog_step steps[] = {
	    {"stall", step_stall},
	    {"hist", step_hist},
	};

	return prog_run(argc, argv, steps, sizeof(steps) / sizeof(steps[0]));
}
