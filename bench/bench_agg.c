/* Aggregators: group commit against one fdatasync per record; request
 * aggregation's io_uring_enter calls and SQEs per 1,000 requests against one
 * operation per request; marker-and-sweeper readiness over 9,000 mostly idle
 * socketpairs against a plain epoll loop on the same sockets. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench/bench.h"
#include "halo.h"

static halo_loop loop;

static void die(const char *what, int err)
{
	fprintf(stderr, "bench_agg: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

/* ---- group commit ---- */

#define GC_WRITERS 64
#define REC_LEN 128

struct gc_writer {
	halo_gc *gc;
	uint64_t deadline;
	uint64_t done;
};

static int64_t gc_writer(halo_loop *l, void *arg)
{
	struct gc_writer *w = arg;
	char rec[REC_LEN];

	(void)l;
	memset(rec, 'r', sizeof(rec));
	while (halo_now_ns() < w->deadline) {
		if (halo_fut_join(halo_gc_append(w->gc, rec, sizeof(rec))) < 0)
			return -EIO;
		w->done++;
	}
	return 0;
}

static int open_file(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);

	if (fd < 0)
		die(path, errno);
	return fd;
}

static void bench_groupcommit(double secs)
{
	static struct gc_writer w[GC_WRITERS];
	const char *path = "/var/tmp/halo_bench_gc.log";
	halo_fut *fib[GC_WRITERS];
	halo_gc gc;
	halo_gc_stats st;
	uint64_t t0, t1, records = 0, base_n = 0;
	char rec[REC_LEN];
	double halo_rate, base_rate;
	int fd = open_file(path);

	if (halo_gc_init(&gc, &loop, fd, NULL) < 0)
		die("gc init", EINVAL);
	t0 = halo_now_ns();
	for (int i = 0; i < GC_WRITERS; i++) {
		w[i].gc = &gc;
		w[i].deadline = t0 + (uint64_t)(secs * 1e9);
		fib[i] = halo_spawn(&loop, gc_writer, &w[i]);
	}
	for (int i = 0; i < GC_WRITERS; i++) {
		halo_fut_join(fib[i]);
		records += w[i].done;
	}
	t1 = halo_now_ns();
	halo_gc_stats_get(&gc, &st);
	halo_gc_close(&gc);
	close(fd);
	halo_rate = (double)records * 1e9 / (double)(t1 - t0);

	/* Baseline right after, same file system: write + fdatasync per
	 * record. */
	fd = open_file(path);
	memset(rec, 'r', sizeof(rec));
	t0 = bench_now_ns();
	do {
		if (pwrite(fd, rec, sizeof(rec), (off_t)(base_n * REC_LEN)) !=
			    REC_LEN ||
		    fdatasync(fd) < 0)
			die("baseline write", errno);
		base_n++;
	} while (bench_now_ns() - t0 < (uint64_t)(secs * 1e9));
	t1 = bench_now_ns();
	close(fd);
	unlink(path);
	base_rate = (double)base_n * 1e9 / (double)(t1 - t0);

	bench_emit("agg", "groupcommit_64_appenders", "records_per_s",
		   halo_rate, "rec/s", "fdatasync_per_record", base_rate, 1);
	bench_emit("agg", "groupcommit_64_appenders", "fdatasyncs_per_record",
		   (double)st.fdatasyncs / (double)records, "sync/rec",
		   "fdatasync_per_record", 1.0, 0);
}

/* ---- request aggregation ---- */

#define AGG_FIBERS 100
#define AGG_PER_FIBER 200

struct nop_batch {
	halo_agg_batch *b;
	const uint64_t *keys;
	size_t n;
};

static void nop_done(halo_fut *f, void *arg)
{
	struct nop_batch *nb = arg;

	halo_fut_release(f);
	for (size_t i = 0; i < nb->n; i++)
		halo_agg_batch_resolve(nb->b, nb->keys[i], 1, NULL);
	halo_agg_batch_done(nb->b);
	halo_mem_free(&loop, nb, sizeof(*nb));
}

static int nop_batch_fn(halo_agg *agg, const uint64_t *keys, size_t n,
			halo_agg_batch *b, void *arg)
{
	struct nop_batch *nb = halo_mem_alloc(&loop, sizeof(*nb));
	halo_fut *f;

	(void)agg;
	(void)arg;
	if (!nb)
		return -ENOMEM;
	f = halo_nop(&loop);
	if (!f) {
		halo_mem_free(&loop, nb, sizeof(*nb));
		return -ENOMEM;
	}
	nb->b = b;
	nb->keys = keys;
	nb->n = n;
	halo_fut_on_done(f, nop_done, nb);
	return 0;
}

static int use_agg;
static halo_agg agg;

static int64_t agg_client(halo_loop *l, void *arg)
{
	uint64_t base = (uint64_t)(uintptr_t)arg * 1000000ull;

	for (int i = 0; i < AGG_PER_FIBER; i++) {
		halo_fut *f = use_agg ? halo_agg_load(&agg, base + (uint64_t)i)
				      : halo_nop(l);

		if (halo_fut_join(f) < 0)
			return -EIO;
	}
	return 0;
}

static void run_clients(double *enters_per_k, double *sqes_per_k)
{
	halo_fut *fib[AGG_FIBERS];
	halo_stats s0, s1;
	double reqs = (double)AGG_FIBERS * AGG_PER_FIBER;

	halo_loop_stats(&loop, &s0);
	for (int i = 0; i < AGG_FIBERS; i++)
		fib[i] = halo_spawn(&loop, agg_client, (void *)(uintptr_t)i);
	for (int i = 0; i < AGG_FIBERS; i++)
		halo_fut_join(fib[i]);
	halo_loop_stats(&loop, &s1);
	*enters_per_k = (double)(s1.enters - s0.enters) * 1000.0 / reqs;
	*sqes_per_k =
		(double)(s1.sqes_submitted - s0.sqes_submitted) * 1000.0 / reqs;
}

static void bench_aggregate(void)
{
	halo_agg_opts o = {.max_batch = 128};
	double e_agg, s_agg, e_base, s_base;

	if (halo_agg_init(&agg, &loop, &o, nop_batch_fn, NULL) < 0)
		die("agg init", EINVAL);
	use_agg = 1;
	run_clients(&e_agg, &s_agg);
	use_agg = 0;
	run_clients(&e_base, &s_base);
	halo_agg_close(&agg);
	bench_emit("agg", "dataloader_100_clients", "enters_per_1k_req", e_agg,
		   "enters", "nop_per_request", e_base, 0);
	bench_emit("agg", "dataloader_100_clients", "sqes_per_1k_req", s_agg,
		   "sqes", "nop_per_request", s_base, 0);
}

/* ---- readiness: marker and sweeper against epoll ---- */

#define PAIRS 9000
#define ACTIVE 100

static int rd[PAIRS], wr[PAIRS];
static int round_left;
static halo_marksweep ms;

/* The handler reads each ready socket at once (nonblocking), as the epoll
 * loop does; the marks came from multishot poll CQEs reaped in batches. */
static int sweep(halo_marksweep *m, const uint32_t *ids, size_t n, void *arg)
{
	char c;

	(void)m;
	(void)arg;
	for (size_t i = 0; i < n; i++)
		if (read((int)ids[i], &c, 1) == 1)
			round_left--;
	if (round_left <= 0)
		halo_loop_stop(&loop);
	return 0;
}

static void pick(int *which, unsigned *rng)
{
	for (int i = 0; i < ACTIVE; i++) {
		*rng = *rng * 1103515245u + 12345u;
		/* Distinct pairs per round: stride through disjoint slices. */
		which[i] = (int)(i * (PAIRS / ACTIVE) +
				 (*rng >> 8) % (PAIRS / ACTIVE));
	}
}

static double run_halo(int rounds)
{
	int which[ACTIVE];
	unsigned rng = 7;
	uint64_t t0 = bench_now_ns();

	for (int r = 0; r < rounds; r++) {
		pick(which, &rng);
		for (int i = 0; i < ACTIVE; i++)
			if (write(wr[which[i]], "x", 1) != 1)
				die("write", errno);
		round_left = ACTIVE;
		halo_loop_run(&loop);
	}
	return (double)rounds * ACTIVE * 1e9 / (double)(bench_now_ns() - t0);
}

static double run_epoll(int ep, int rounds)
{
	struct epoll_event ev[256];
	int which[ACTIVE];
	unsigned rng = 7;
	uint64_t t0 = bench_now_ns();
	char c;

	for (int r = 0; r < rounds; r++) {
		int left = ACTIVE;

		pick(which, &rng);
		for (int i = 0; i < ACTIVE; i++)
			if (write(wr[which[i]], "x", 1) != 1)
				die("write", errno);
		while (left > 0) {
			int n = epoll_wait(ep, ev, 256, -1);

			for (int i = 0; i < n; i++)
				if (read(ev[i].data.fd, &c, 1) == 1)
					left--;
		}
	}
	return (double)rounds * ACTIVE * 1e9 / (double)(bench_now_ns() - t0);
}

static void bench_readiness(int rounds)
{
	struct rlimit rl;
	halo_marksweep_opts o = {.capacity = PAIRS * 2 + 256, .batch = 64};
	double h, e;
	int ep;

	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	for (int i = 0; i < PAIRS; i++) {
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
			die("socketpair (raise ulimit -n)", errno);
		if (sv[0] >= (int)o.capacity)
			die("fd beyond capacity", EMFILE);
		rd[i] = sv[0];
		wr[i] = sv[1];
	}
	ep = epoll_create1(0);
	for (int i = 0; i < PAIRS; i++) {
		struct epoll_event ev = {.events = EPOLLIN, .data.fd = rd[i]};

		epoll_ctl(ep, EPOLL_CTL_ADD, rd[i], &ev);
	}
	/* epoll first, then halo: a watch armed during the epoll rounds
	 * would queue marks for bytes that epoll reads. */
	run_epoll(ep, rounds / 10);
	e = run_epoll(ep, rounds);
	if (halo_marksweep_init(&ms, &loop, &o, sweep, NULL) < 0)
		die("marksweep init", ENOMEM);
	for (int i = 0; i < PAIRS; i++)
		if (halo_marksweep_watch(&ms, rd[i], POLLIN) < 0)
			die("watch", ENOMEM);
	halo_loop_run_nowait(&loop);
	run_halo(rounds / 10);
	h = run_halo(rounds);
	bench_emit("agg", "readiness_9000_pairs_1pct", "events_per_s", h,
		   "ev/s", "epoll_loop", e, 1);
	halo_marksweep_close(&ms);
	close(ep);
	for (int i = 0; i < PAIRS; i++) {
		close(rd[i]);
		close(wr[i]);
	}
}

int main(void)
{
	double scale = bench_scale();
	int r = halo_loop_init(&loop, NULL);

	if (r < 0)
		die(halo_loop_error(&loop), r);
	bench_progress("agg", "group commit, 64 appenders vs fdatasync per record");
	bench_groupcommit(3.0 * scale);
	bench_progress("agg", "aggregation: enters and SQEs per 1,000 requests");
	bench_aggregate();
	bench_progress("agg", "readiness: marksweep vs epoll, 9,000 pairs");
	bench_readiness((int)(2000 * scale));
	r = halo_loop_close(&loop);
	return r ? 1 : 0;
}
