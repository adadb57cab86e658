/* NOP throughput: halo NOP futures against raw liburing NOPs on a ring with
 * the same flags, in the same process, rounds interleaved, at batch sizes 1,
 * 8, 32 and 128. What it measures is halo's per-operation cost: a pooled
 * future, a tagged SQE, the reap that completes it and the release.
 *
 * Where valgrind is installed, it also counts the user-space instructions
 * per NOP of both loops at batch 1 and 32: it runs itself under callgrind
 * ("bench_nop count halo|raw BATCH ITERS") at two iteration counts, so that
 * setup and teardown cancel out of the difference. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>

#include "bench/bench.h"
#include "halo.h"

#define ROUNDS 5

/* One batch of raw liburing NOPs: prepare, submit and wait, reap. */
static unsigned raw_round(struct io_uring *ring, unsigned batch)
{
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;

	for (unsigned i = 0; i < batch; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
		io_uring_prep_nop(sqe);
		io_uring_sqe_set_data64(sqe, i + 1);
	}
	io_uring_submit_and_wait(ring, batch);
	io_uring_for_each_cqe(ring, head, cqe) seen++;
	io_uring_cq_advance(ring, seen);
	return seen;
}

static void raw_init(struct io_uring *ring)
{
	struct io_uring_params p = {0};

	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
		  IORING_SETUP_SUBMIT_ALL;
	if (io_uring_queue_init_params(256, ring, &p) < 0) {
		fprintf(stderr, "raw ring setup failed\n");
		exit(1);
	}
	io_uring_register_ring_fd(ring);
}

/* One batch of halo NOP futures: start, one tick, consume. */
static unsigned halo_round(halo_loop *loop, unsigned batch)
{
	halo_fut *f[128];

	for (unsigned i = 0; i < batch; i++)
		f[i] = halo_nop(loop);
	halo_loop_run_once(loop);
	for (unsigned i = 0; i < batch; i++) {
		if (!halo_fut_is_done(f[i]))
			halo_fut_wait(f[i]);
		halo_fut_release(f[i]);
	}
	return batch;
}

static unsigned features_off; /* for the feature on/off rows */

static void halo_init(halo_loop *loop)
{
	halo_loop_opts o = {.max_inflight =
				    getenv("CQ") ? atoi(getenv("CQ")) : 0,
			    .features_off = features_off};

	if (halo_loop_init(loop, &o) < 0) {
		fprintf(stderr, "halo: %s\n", halo_loop_error(loop));
		exit(1);
	}
}

static double raw_nops(unsigned batch, double secs)
{
	struct io_uring ring;
	uint64_t n = 0, t0, deadline;

	raw_init(&ring);
	t0 = bench_now_ns();
	deadline = t0 + (uint64_t)(secs * 1e9);
	do {
		for (int k = 0; k < 64; k++)
			n += raw_round(&ring, batch);
	} while (bench_now_ns() < deadline);
	io_uring_queue_exit(&ring);
	return (double)n / ((double)(bench_now_ns() - t0) / 1e9);
}

static double halo_nops(unsigned batch, double secs)
{
	halo_loop loop;
	uint64_t n = 0, t0, deadline;

	halo_init(&loop);
	t0 = bench_now_ns();
	deadline = t0 + (uint64_t)(secs * 1e9);
	do {
		for (int k = 0; k < 64; k++)
			n += halo_round(&loop, batch);
	} while (bench_now_ns() < deadline);
	n = (uint64_t)((double)n / ((double)(bench_now_ns() - t0) / 1e9));
	if (halo_loop_close(&loop) != 0)
		exit(1);
	return (double)n;
}

/* Start 32 pipe reads, let the kernel take them, cancel them all: the
 * cancel path, where CQE_SKIP saves one CQE per cancel. */
static double cqes_per_cancel; /* of the last halo_cancels() */

static double halo_cancels(double secs)
{
	halo_stats st;
	halo_loop loop;
	halo_fut *f[32];
	char buf[32];
	uint64_t n = 0, t0, deadline;
	int p[2];

	if (pipe(p) < 0)
		exit(1);
	halo_init(&loop);
	t0 = bench_now_ns();
	deadline = t0 + (uint64_t)(secs * 1e9);
	do {
		for (int i = 0; i < 32; i++)
			f[i] = halo_read(&loop, p[0], &buf[i], 1, -1);
		halo_loop_run_nowait(&loop);
		for (int i = 0; i < 32; i++)
			halo_fut_cancel(f[i]);
		for (int i = 0; i < 32; i++)
			if (halo_fut_join(f[i]) != -ECANCELED)
				exit(1);
		n += 32;
	} while (bench_now_ns() < deadline);
	halo_loop_stats(&loop, &st);
	cqes_per_cancel = (double)st.cqes_reaped / (double)n;
	n = (uint64_t)((double)n / ((double)(bench_now_ns() - t0) / 1e9));
	if (halo_loop_close(&loop) != 0)
		exit(1);
	close(p[0]);
	close(p[1]);
	return (double)n;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Each ring feature's gain: the same loop with it on and off, rounds
 * interleaved; the ratio is on over off. */
static void feature_rows(double secs)
{
	double on[ROUNDS], off[ROUNDS];

	bench_progress("nop", "no_sqarray on/off at batch 32, cqe_skip "
			      "on/off on 32 cancels");
	for (int r = 0; r < ROUNDS; r++) {
		/* Alternate which goes first: the second run of a pair
		 * tends to be the faster one on this machine. */
		features_off = r & 1 ? 0 : HALO_FEAT_NO_SQARRAY;
		(r & 1 ? on : off)[r] = halo_nops(32, secs);
		features_off = r & 1 ? HALO_FEAT_NO_SQARRAY : 0;
		(r & 1 ? off : on)[r] = halo_nops(32, secs);
	}
	features_off = 0;
	qsort(on, ROUNDS, sizeof(double), cmp);
	qsort(off, ROUNDS, sizeof(double), cmp);
	bench_emit("nop", "batch32_no_sqarray", "nops_per_s", on[ROUNDS / 2],
		   "op/s", "no_sqarray_off", off[ROUNDS / 2], 1);
	double cqes_on = 0, cqes_off = 0;

	for (int r = 0; r < ROUNDS; r++) {
		features_off = r & 1 ? 0 : HALO_FEAT_CQE_SKIP;
		(r & 1 ? on : off)[r] = halo_cancels(secs);
		*(r & 1 ? &cqes_on : &cqes_off) = cqes_per_cancel;
		features_off = r & 1 ? HALO_FEAT_CQE_SKIP : 0;
		(r & 1 ? off : on)[r] = halo_cancels(secs);
		*(r & 1 ? &cqes_off : &cqes_on) = cqes_per_cancel;
	}
	features_off = 0;
	qsort(on, ROUNDS, sizeof(double), cmp);
	qsort(off, ROUNDS, sizeof(double), cmp);
	bench_emit("nop", "cancel32_cqe_skip", "cancels_per_s",
		   on[ROUNDS / 2], "op/s", "cqe_skip_off", off[ROUNDS / 2], 1);
	bench_emit("nop", "cancel32_cqe_skip", "cqes_per_cancel", cqes_on,
		   "cqe", "cqe_skip_off", cqes_off, 0);
}

/* Count mode: a fixed number of operations, for callgrind. */
static int count_main(const char *who, unsigned batch, unsigned long ops)
{
	if (batch < 1 || batch > 128)
		return 2;
	if (!strcmp(who, "raw")) {
		struct io_uring ring;

		raw_init(&ring);
		for (unsigned long n = 0; n < ops;)
			n += raw_round(&ring, batch);
		io_uring_queue_exit(&ring);
	} else {
		halo_loop loop;

		halo_init(&loop);
		for (unsigned long n = 0; n < ops;)
			n += halo_round(&loop, batch);
		if (halo_loop_close(&loop) != 0)
			return 1;
	}
	return 0;
}

/* Instructions callgrind counted for "count who batch ops", or -1. */
static double callgrind_ir(const char *self, const char *who, unsigned batch,
			   unsigned long ops)
{
	char cmd[1024], line[512];
	double ir = -1;
	FILE *f;

	snprintf(cmd, sizeof(cmd),
		 "valgrind --tool=callgrind --callgrind-out-file=/dev/null "
		 "%s count %s %u %lu 2>&1",
		 self, who, batch, ops);
	f = popen(cmd, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char *p = strstr(line, "Collected : ");
		if (p) {
			ir = strtod(p + 12, NULL);
		}
	}
	if (pclose(f) != 0)
		return -1;
	return ir;
}

/* User-space instructions per NOP: the difference between two runs, so
 * that what does not scale with the operations (setup, exit) drops out. */
static double ir_per_op(const char *self, const char *who, unsigned batch)
{
	unsigned long lo = 20000, hi = 120000;
	double a = callgrind_ir(self, who, batch, lo);
	double b = callgrind_ir(self, who, batch, hi);

	if (a < 0 || b < 0)
		return -1;
	return (b - a) / (double)(hi - lo);
}

static void count_instructions(const char *self)
{
	static const unsigned batches[] = {1, 32};

	if (system("valgrind --version >/dev/null 2>&1") != 0) {
		fprintf(stderr, "bench_nop: note: valgrind is missing; no "
				"instruction counts\n");
		return;
	}
	for (unsigned b = 0; b < 2; b++) {
		char name[32];
		double h, r;

		bench_progress("nop", "batch %u: instructions per op under "
				      "callgrind", batches[b]);
		h = ir_per_op(self, "halo", batches[b]);
		r = ir_per_op(self, "raw", batches[b]);
		if (h < 0 || r < 0) {
			fprintf(stderr, "bench_nop: callgrind run failed\n");
			return;
		}
		snprintf(name, sizeof(name), "batch%u", batches[b]);
		bench_emit("nop", name, "instr_per_op", h, "instr", "liburing",
			   r, 0);
	}
}

int main(int argc, char **argv)
{
	static const unsigned batches[] = {1, 8, 32, 128};
	double secs = 0.4 * bench_scale();

	if (argc == 5 && !strcmp(argv[1], "count"))
		return count_main(argv[2], (unsigned)atoi(argv[3]),
				  strtoul(argv[4], NULL, 10));

	bench_pin(0);
	for (unsigned b = 0; b < 4; b++) {
		double raw[ROUNDS], hal[ROUNDS];
		char name[32];

		bench_progress("nop", "batch %u: %d interleaved rounds of %.1fs",
			       batches[b], ROUNDS, secs);
		for (int r = 0; r < ROUNDS; r++) {
			raw[r] = raw_nops(batches[b], secs);
			hal[r] = halo_nops(batches[b], secs);
		}
		qsort(raw, ROUNDS, sizeof(double), cmp);
		qsort(hal, ROUNDS, sizeof(double), cmp);
		snprintf(name, sizeof(name), "batch%u", batches[b]);
		bench_emit("nop", name, "nops_per_s", hal[ROUNDS / 2], "op/s",
			   "liburing", raw[ROUNDS / 2], 1);
	}
	feature_rows(secs);
	count_instructions(argv[0]);
	return 0;
}
