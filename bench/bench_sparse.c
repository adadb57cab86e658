/* Sparse tasks: durable submits per second from 64 concurrent submitters,
 * through the journal (group commit) against the same submitters on a store
 * that makes each record durable with its own fdatasync, rounds interleaved
 * in one process and one directory; outcome events per second; memory per
 * pending task with 1,000,000 pending; the replay time of a journal of
 * 1,000,000 records. */
#include <errno.h>
#include <fcntl.h>
#include <jemalloc/jemalloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "halo.h"

#define SUBMITTERS   64
#define PAYLOAD	     64
#define SEC	     1000000000ull
#define LONG_TIMEOUT (3600 * SEC)

static const char *dir = "/var/tmp";
static char path[256];

static void die(const char *what, int err)
{
	fprintf(stderr, "bench_sparse: %s: %s\n", what,
		strerror(err < 0 ? -err : err));
	exit(1);
}

/* ---- the baseline store: one pwrite and one fdatasync per record ---- */

struct sync_store {
	halo_loop *loop;
	halo_sparse *s;
	int fd;
	off_t off;
	size_t unreported;
	int posted;
};

static void sync_report(void *arg)
{
	struct sync_store *st = arg;
	size_t n = st->unreported;

	st->unreported = 0;
	st->posted = 0;
	halo_sparse_durable(st->s, n, 0);
}

static int sync_attach(void *store, halo_sparse *s)
{
	((struct sync_store *)store)->s = s;
	return 0;
}

static int sync_replay(void *store,
		       int (*fn)(void *ctx, const halo_sparse_rec *rec),
		       void *ctx, char *err, size_t errlen)
{
	(void)store;
	(void)fn;
	(void)ctx;
	(void)err;
	(void)errlen;
	return 0;
}

static int sync_append(void *store, const halo_sparse_rec *rec)
{
	struct sync_store *st = store;
	char buf[36 + PAYLOAD];
	size_t len = 36 + rec->len;

	memset(buf, 0, 36);
	memcpy(buf + 8, &rec->id, 8);
	memcpy(buf + 16, &rec->deadline, 8);
	memcpy(buf + 36, rec->payload, rec->len);
	if (pwrite(st->fd, buf, len, st->off) != (ssize_t)len ||
	    fdatasync(st->fd) < 0)
		return -errno;
	st->off += (off_t)len;
	st->unreported++;
	if (!st->posted && halo_loop_post(st->loop, sync_report, st) == 0)
		st->posted = 1;
	return 0;
}

static size_t sync_inflight(void *store)
{
	return ((struct sync_store *)store)->unreported;
}

static const halo_sparse_store_ops sync_ops = {
    .attach = sync_attach,
    .replay = sync_replay,
    .append = sync_append,
    .inflight = sync_inflight,
};

/* ---- durable submits from 64 fibers ---- */

struct submitter {
	halo_sparse *s;
	uint64_t next_id, deadline, done;
};

static int64_t submitter(halo_loop *l, void *arg)
{
	struct submitter *w = arg;
	char payload[PAYLOAD];
	halo_fut *f;

	(void)l;
	memset(payload, 'p', sizeof(payload));
	while (halo_now_ns() < w->deadline) {
		int r = halo_sparse_submit(w->s, w->next_id, LONG_TIMEOUT,
					   payload, sizeof(payload), &f);

		if (r < 0 || halo_fut_join(f) < 0)
			return -EIO;
		w->next_id += SUBMITTERS;
		w->done++;
	}
	return 0;
}

static void open_sparse(halo_loop *loop, halo_sparse *s,
			const halo_sparse_opts *o)
{
	int r = halo_sparse_open(s, loop, o);

	if (r < 0)
		die(halo_sparse_error(s), r);
}

static void close_sparse(halo_sparse *s)
{
	halo_fut_join(halo_sparse_flush(s));
	if (halo_sparse_close(s) < 0)
		die("sparse close", EBUSY);
}

/* Submits per second for secs; baseline: the one-fdatasync store. */
static double run_submits(halo_loop *loop, double secs, int baseline,
			  double *syncs_per_submit)
{
	static struct submitter w[SUBMITTERS];
	struct sync_store st = {.loop = loop};
	halo_sparse_opts o = {0};
	halo_fut *fib[SUBMITTERS];
	halo_sparse s;
	halo_gc_stats gs;
	uint64_t t0, total = 0;

	unlink(path);
	if (baseline) {
		st.fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
		if (st.fd < 0)
			die(path, errno);
		o.store_ops = &sync_ops;
		o.store = &st;
	} else {
		o.path = path;
	}
	open_sparse(loop, &s, &o);
	t0 = halo_now_ns();
	for (int i = 0; i < SUBMITTERS; i++) {
		w[i].s = &s;
		w[i].next_id = (uint64_t)i;
		w[i].done = 0;
		w[i].deadline = t0 + (uint64_t)(secs * 1e9);
		fib[i] = halo_spawn(loop, submitter, &w[i]);
	}
	for (int i = 0; i < SUBMITTERS; i++) {
		if (halo_fut_join(fib[i]) < 0)
			die("submitter", EIO);
		total += w[i].done;
	}
	t0 = halo_now_ns() - t0;
	if (!baseline) {
		halo_gc_stats_get(&s.journal.gc, &gs);
		*syncs_per_submit = (double)gs.fdatasyncs / (double)total;
	}
	close_sparse(&s);
	if (baseline)
		close(st.fd);
	unlink(path);
	return (double)total * 1e9 / (double)t0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void bench_submits(halo_loop *loop, double secs, int rounds)
{
	double h[16], b[16], syncs = 0, ratio;

	for (int r = 0; r < rounds; r++) {
		h[r] = run_submits(loop, secs, 0, &syncs);
		b[r] = run_submits(loop, secs, 1, NULL);
		bench_progress("sparse",
			       "round %d: journal %.0f/s, fdatasync "
			       "per task %.0f/s",
			       r, h[r], b[r]);
	}
	qsort(h, (size_t)rounds, sizeof(double), cmp_double);
	qsort(b, (size_t)rounds, sizeof(double), cmp_double);
	ratio = h[rounds / 2] / b[rounds / 2];
	bench_emit("sparse", "submit_64_submitters", "submits_per_s",
		   h[rounds / 2], "sub/s", "fdatasync_per_task", b[rounds / 2],
		   1);
	bench_emit("sparse", "submit_64_submitters", "submits_per_s_min", h[0],
		   "sub/s", NULL, 0, 1);
	bench_emit("sparse", "submit_64_submitters", "submits_per_s_max",
		   h[rounds - 1], "sub/s", NULL, 0, 1);
	bench_emit("sparse", "submit_64_submitters", "baseline_per_s_min", b[0],
		   "sub/s", NULL, 0, 1);
	bench_emit("sparse", "submit_64_submitters", "baseline_per_s_max",
		   b[rounds - 1], "sub/s", NULL, 0, 1);
	bench_emit("sparse", "submit_64_submitters", "fdatasyncs_per_submit",
		   syncs, "sync/sub", NULL, 0, 0);
	bench_progress("sparse", "submits: median ratio %.1fx (target 20x)",
		       ratio);
}

/* ---- events ---- */

static uint64_t done_n;

static void count_done(halo_sparse *s, uint64_t id, halo_sparse_outcome o,
		       int64_t result, void *arg)
{
	(void)s;
	(void)id;
	(void)o;
	(void)result;
	(void)arg;
	done_n++;
}

/* Submit n tasks in waves that each end with every record durable. */
static void submit_many(halo_sparse *s, uint64_t first, uint64_t n,
			const void *payload, size_t len)
{
	enum { WAVE = 8192 };
	static halo_fut *f[WAVE];

	for (uint64_t done = 0; done < n;) {
		uint64_t k = n - done < WAVE ? n - done : WAVE;

		for (uint64_t i = 0; i < k; i++) {
			int r = halo_sparse_submit(s, first + done + i,
						   LONG_TIMEOUT, payload, len,
						   &f[i]);

			if (r < 0)
				die("submit", r);
		}
		for (uint64_t i = 0; i < k; i++)
			if (halo_fut_join(f[i]) < 0)
				die("submit durable", EIO);
		done += k;
	}
}

static void bench_events(halo_loop *loop, uint64_t n)
{
	halo_sparse_opts o = {.path = path, .done_fn = count_done};
	halo_sparse s;
	double best = 0, rates[3];

	unlink(path);
	open_sparse(loop, &s, &o);
	for (int r = 0; r < 3; r++) {
		uint64_t t0, base = (uint64_t)r * n;

		submit_many(&s, base, n, "p", 1);
		done_n = 0;
		t0 = halo_now_ns();
		for (uint64_t i = 0; i < n; i++)
			if (halo_sparse_complete(&s, base + i, HALO_SPARSE_OK,
						 0, NULL) != 0)
				die("complete", EINVAL);
		halo_fut_join(halo_sparse_flush(&s));
		rates[r] = (double)n * 1e9 / (double)(halo_now_ns() - t0);
		if (done_n != n)
			die("events not all durable", EIO);
		if (rates[r] > best)
			best = rates[r];
	}
	qsort(rates, 3, sizeof(double), cmp_double);
	bench_emit("sparse", "events_durable", "events_per_s", rates[1], "ev/s",
		   NULL, 0, 1);
	bench_emit("sparse", "events_durable", "events_per_s_min", rates[0],
		   "ev/s", NULL, 0, 1);
	bench_emit("sparse", "events_durable", "events_per_s_max", rates[2],
		   "ev/s", NULL, 0, 1);
	close_sparse(&s);
	unlink(path);
}

/* ---- memory at 1,000,000 pending, then the replay of that journal ---- */

static size_t allocated(void)
{
	uint64_t epoch = 1;
	size_t sz = sizeof(epoch), v = 0, vsz = sizeof(v);

	mallctl("epoch", &epoch, &sz, &epoch, sz);
	if (mallctl("stats.allocated", &v, &vsz, NULL, 0) != 0)
		return 0;
	return v;
}

static void bench_memory_and_replay(uint64_t n)
{
	halo_loop loop;
	halo_sparse_opts o = {.path = path};
	halo_sparse s;
	halo_sparse_stats st;
	size_t a0, a1;
	uint64_t t0, replay_ns;
	char payload[16] = "payload-16bytes";
	int r;

	unlink(path);
	if ((r = halo_loop_init(&loop, NULL)) < 0)
		die(halo_loop_error(&loop), r);
	a0 = allocated();
	open_sparse(&loop, &s, &o);
	submit_many(&s, 0, n, payload, sizeof(payload));
	a1 = allocated();
	halo_sparse_stats_get(&s, &st);
	if (st.pending != n)
		die("pending", EIO);
	bench_emit("sparse", "pending_1m", "table_bytes_per_task",
		   (double)st.bytes / (double)n, "B", NULL, 0, 0);
	bench_emit("sparse", "pending_1m", "heap_bytes_per_task",
		   (double)(a1 - a0) / (double)n, "B", NULL, 0, 0);
	bench_progress("sparse",
		       "%lu pending: tables %.1f B/task, jemalloc "
		       "allocated %.1f B/task (gc buffers and pools "
		       "included)",
		       (unsigned long)n, (double)st.bytes / (double)n,
		       (double)(a1 - a0) / (double)n);
	close_sparse(&s);

	t0 = halo_now_ns();
	open_sparse(&loop, &s, &o);
	replay_ns = halo_now_ns() - t0;
	halo_sparse_stats_get(&s, &st);
	if (st.replayed != n || st.pending != n)
		die("replay count", EIO);
	bench_emit("sparse", "replay_1m_records", "open_ms",
		   (double)replay_ns / 1e6, "ms", NULL, 0, 0);
	bench_emit("sparse", "replay_1m_records", "records_per_s",
		   (double)n * 1e9 / (double)replay_ns, "rec/s", NULL, 0, 1);
	close_sparse(&s);
	halo_loop_close(&loop);
	unlink(path);
}

int main(void)
{
	double scale = bench_scale();
	halo_loop loop;
	int r = halo_loop_init(&loop, NULL);
	int rounds = 5;
	uint64_t million = (uint64_t)(1000000 * (scale < 1 ? scale : 1));

	if (r < 0)
		die(halo_loop_error(&loop), r);
	snprintf(path, sizeof(path), "%s/halo_bench_sparse.%d", dir,
		 (int)getpid());
	bench_progress("sparse", "durable submits, 64 submitters: journal vs "
				 "fdatasync per task");
	bench_submits(&loop, 1.0 * scale, rounds);
	bench_progress("sparse", "events: outcomes made durable");
	bench_events(&loop, (uint64_t)(100000 * scale));
	r = halo_loop_close(&loop);
	bench_progress("sparse", "memory and replay at %lu pending",
		       (unsigned long)million);
	bench_memory_and_replay(million);
	return r ? 1 : 0;
}
