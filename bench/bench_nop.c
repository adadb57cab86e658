/* NOP throughput: halo NOP futures against raw liburing NOPs on a ring with
 * the same flags, in the same process, rounds interleaved, at batch sizes 1,
 * 8, 32 and 128. What it measures is halo's per-operation cost: a pooled
 * future, a tagged SQE, the reap that completes it and the release. */
#include <stdio.h>
#include <stdlib.h>

#include "bench/bench.h"
#include "halo.h"

#define ROUNDS 5

static double raw_nops(unsigned batch, double secs)
{
	struct io_uring ring;
	struct io_uring_params p = {0};
	uint64_t n = 0, t0, deadline;

	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
		  IORING_SETUP_SUBMIT_ALL;
	if (io_uring_queue_init_params(256, &ring, &p) < 0) {
		fprintf(stderr, "raw ring setup failed\n");
		exit(1);
	}
	io_uring_register_ring_fd(&ring);
	t0 = bench_now_ns();
	deadline = t0 + (uint64_t)(secs * 1e9);
	do {
		for (int k = 0; k < 64; k++) {
			struct io_uring_cqe *cqe;
			unsigned head, seen = 0;

			for (unsigned i = 0; i < batch; i++) {
				struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
				io_uring_prep_nop(sqe);
				io_uring_sqe_set_data64(sqe, i + 1);
			}
			io_uring_submit_and_wait(&ring, batch);
			io_uring_for_each_cqe(&ring, head, cqe) seen++;
			io_uring_cq_advance(&ring, seen);
			n += seen;
		}
	} while (bench_now_ns() < deadline);
	io_uring_queue_exit(&ring);
	return (double)n / ((double)(bench_now_ns() - t0) / 1e9);
}

static double halo_nops(unsigned batch, double secs)
{
	halo_loop loop;
	halo_fut *f[128];
	uint64_t n = 0, t0, deadline;

	halo_loop_opts o = {.max_inflight = getenv("CQ") ? atoi(getenv("CQ")) : 0};
	if (halo_loop_init(&loop, &o) < 0) {
		fprintf(stderr, "halo: %s\n", halo_loop_error(&loop));
		exit(1);
	}
	t0 = bench_now_ns();
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
	n = (uint64_t)((double)n / ((double)(bench_now_ns() - t0) / 1e9));
	if (halo_loop_close(&loop) != 0)
		exit(1);
	return (double)n;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(void)
{
	static const unsigned batches[] = {1, 8, 32, 128};
	double secs = 0.4 * bench_scale();

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
	return 0;
}
