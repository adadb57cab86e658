/* Random 4 KiB reads from a 1 GiB file at queue depth 1 and 32, from the
 * page cache and with O_DIRECT: halo read futures against fio's io_uring
 * engine, and against a raw liburing loop in this process (same ring flags,
 * same offsets generator), on the same file in the same run. fio busy-polls
 * the completion queue, so the O_DIRECT cases also run halo with
 * busy_poll_ns set (and with registered buffers), against the same fio
 * figure; rounds interleave all of them. Rows with a ring feature on over
 * off follow (fixed buffers, min-wait), and whether the device can do
 * IOPOLL at all; where it can, halo's polled ring (opts.iopoll) against
 * fio's polled mode (--hipri). The file is made once (real data,
 * not fallocated holes, so O_DIRECT reads reach the device) at
 * $HALO_BENCH_FILE or /var/tmp/halo-bench-file.dat and reused; it is never
 * in the source tree. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/bench.h"
#include "halo.h"

#define FILE_SIZE (1ull << 30)
#define BS 4096
#define MAX_QD 32

static const char *path;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_off(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (rng % (FILE_SIZE / BS)) * BS;
}

static int make_file(void)
{
	struct stat st;
	char *buf;
	int fd;

	if (stat(path, &st) == 0 && (uint64_t)st.st_size == FILE_SIZE)
		return 0;
	bench_progress("file", "creating %s (1 GiB)", path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	buf = malloc(1 << 20);
	for (uint64_t off = 0; off < FILE_SIZE; off += 1 << 20) {
		for (size_t i = 0; i < (1 << 20) / 8; i++)
			((uint64_t *)buf)[i] = off + i * 0x9e3779b97f4a7c15ull;
		if (pwrite(fd, buf, 1 << 20, (off_t)off) != 1 << 20) {
			free(buf);
			close(fd);
			unlink(path);
			return -EIO;
		}
	}
	free(buf);
	fsync(fd);
	close(fd);
	return 0;
}

/* Pull the whole file into the page cache. */
static void warm_cache(void)
{
	char *buf = malloc(1 << 20);
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	while (fd >= 0 && read(fd, buf, 1 << 20) > 0)
		;
	if (fd >= 0)
		close(fd);
	free(buf);
}

struct slot {
	halo_waiter w;
	halo_fut *f;
	char *buf;
	int idx;
};

static halo_loop loop;
static int rfd;
static uint64_t done_n, stop_at;
static halo_bufs bufs; /* registered buffers: slot i is slot i's buffer */
static int use_fixed;
static int use_direct; /* halo_read_direct(): the polled ring, if on */
static uint64_t last_retries; /* iopoll_retries of the last halo run */

static void start(struct slot *s);

static void on_read(halo_fut *f, void *arg)
{
	struct slot *s = arg;

	if (halo_fut_result(f) != BS) {
		fprintf(stderr, "bench_file: read: %lld\n",
			(long long)halo_fut_result(f));
		exit(1);
	}
	halo_fut_release(f);
	s->f = NULL;
	done_n++;
	if (halo_now_ns() < stop_at)
		start(s);
}

static void start(struct slot *s)
{
	if (use_fixed)
		s->f = halo_read_fixed(&bufs, (unsigned)s->idx, rfd, s->buf,
				       BS, (int64_t)next_off());
	else if (use_direct)
		s->f = halo_read_direct(&loop, rfd, s->buf, BS,
					(int64_t)next_off());
	else
		s->f = halo_read(&loop, rfd, s->buf, BS, (int64_t)next_off());
	if (!s->f) {
		fprintf(stderr, "bench_file: out of memory\n");
		exit(1);
	}
	s->w.fn = on_read;
	s->w.arg = s;
	halo_fut_add_waiter(s->f, &s->w);
}

static double halo_iops_opts(int qd, int direct, double secs,
			     const halo_loop_opts *lo);

static double halo_iops(int qd, int direct, double secs)
{
	return halo_iops_opts(qd, direct, secs, NULL);
}

static double halo_iops_opts(int qd, int direct, double secs,
			     const halo_loop_opts *lo)
{
	struct slot slots[MAX_QD];
	uint64_t t0;

	rfd = open(path, O_RDONLY | O_CLOEXEC | (direct ? O_DIRECT : 0));
	if (rfd < 0)
		return -1;
	if (halo_loop_init(&loop, lo) < 0) {
		fprintf(stderr, "halo: %s\n", halo_loop_error(&loop));
		exit(1);
	}
	for (int i = 0; i < qd; i++) {
		slots[i].buf = halo_buf_alloc_aligned(BS, 4096);
		slots[i].idx = i;
	}
	if (use_fixed) {
		if (halo_bufs_init(&bufs, &loop, MAX_QD) < 0)
			exit(1);
		for (int i = 0; i < qd; i++)
			if (halo_bufs_set(&bufs, (unsigned)i, slots[i].buf,
					  BS) < 0)
				exit(1);
	}
	done_n = 0;
	t0 = halo_now_ns();
	stop_at = t0 + (uint64_t)(secs * 1e9);
	for (int i = 0; i < qd; i++)
		start(&slots[i]);
	while (halo_loop_run_once(&loop) > 0)
		;
	t0 = halo_now_ns() - t0;
	last_retries = loop.stats.iopoll_retries;
	if (use_fixed && halo_bufs_close(&bufs) < 0)
		exit(1);
	halo_loop_close(&loop);
	for (int i = 0; i < qd; i++)
		halo_buf_free(slots[i].buf);
	close(rfd);
	return (double)done_n / ((double)t0 / 1e9);
}

/* The same job written directly on liburing: refill each slot the moment
 * its CQE is seen, one submit_and_wait per batch of completions. */
static double raw_iops(int qd, int direct, double secs)
{
	struct io_uring ring;
	struct io_uring_params p = {0};
	char *bufs[MAX_QD] = {0};
	uint64_t done = 0, t0, stop;
	int fd = open(path, O_RDONLY | O_CLOEXEC | (direct ? O_DIRECT : 0));

	if (fd < 0)
		return -1;
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	if (io_uring_queue_init_params(64, &ring, &p) < 0) {
		close(fd);
		return -1;
	}
	for (int i = 0; i < qd; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

		bufs[i] = halo_buf_alloc_aligned(BS, 4096);
		io_uring_prep_read(sqe, fd, bufs[i], BS, next_off());
		io_uring_sqe_set_data64(sqe, (uint64_t)i);
	}
	t0 = halo_now_ns();
	stop = t0 + (uint64_t)(secs * 1e9);
	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;
		int live = halo_now_ns() < stop;

		if (io_uring_submit_and_wait(&ring, 1) < 0)
			break;
		io_uring_for_each_cqe(&ring, head, cqe)
		{
			int i = (int)cqe->user_data;

			if (cqe->res != BS) {
				fprintf(stderr, "bench_file: raw read: %d\n",
					cqe->res);
				exit(1);
			}
			n++;
			done++;
			if (live) {
				struct io_uring_sqe *sqe =
					io_uring_get_sqe(&ring);
				io_uring_prep_read(sqe, fd, bufs[i], BS,
						   next_off());
				io_uring_sqe_set_data64(sqe, (uint64_t)i);
			} else {
				qd--;
			}
		}
		io_uring_cq_advance(&ring, n);
		if (qd == 0)
			break;
	}
	t0 = halo_now_ns() - t0;
	io_uring_queue_exit(&ring);
	for (int i = 0; i < MAX_QD && bufs[i]; i++)
		halo_buf_free(bufs[i]);
	close(fd);
	return (double)done / ((double)t0 / 1e9);
}

static int cmpd(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

#define ROUNDS 3

/* The median of ROUNDS figures (sorts them). */
static double median(double *v)
{
	qsort(v, ROUNDS, sizeof(double), cmpd);
	return v[ROUNDS / 2];
}

static double fio_iops_mode(int qd, int direct, int hipri, double secs)
{
	char cmd[1024], *out = malloc(1 << 20), *p;
	size_t n = 0, r;
	double iops = -1;
	FILE *f;

	snprintf(cmd, sizeof(cmd),
		 "fio --name=x --ioengine=io_uring --rw=randread --bs=4k "
		 "--iodepth=%d --direct=%d --hipri=%d --invalidate=0 "
		 "--filename=%s --size=1g --runtime=%d --time_based "
		 "--output-format=json 2>/dev/null",
		 qd, direct, hipri, path, secs < 1 ? 1 : (int)secs);
	f = popen(cmd, "r");
	if (!f) {
		free(out);
		return -1;
	}
	while ((r = fread(out + n, 1, (1 << 20) - 1 - n, f)) > 0)
		n += r;
	out[n] = 0;
	pclose(f);
	p = strstr(out, "\"read\"");
	if (p)
		p = strstr(p, "\"iops\"");
	if (p && (p = strchr(p, ':')))
		iops = strtod(p + 1, NULL);
	free(out);
	return iops;
}

static double fio_iops(int qd, int direct, double secs)
{
	return fio_iops_mode(qd, direct, 0, secs);
}

/* Whether the file's device completes polled I/O: one O_DIRECT read on an
 * IORING_SETUP_IOPOLL ring. Returns the CQE's res (4096), or -errno
 * (-EOPNOTSUPP: the block device has no poll queues). */
static int iopoll_probe(void)
{
	struct io_uring ring;
	struct io_uring_cqe *cqe;
	char *buf = halo_buf_alloc_aligned(BS, 4096);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECT), r;

	if (fd < 0 || !buf || io_uring_queue_init(4, &ring, IORING_SETUP_IOPOLL)) {
		if (fd >= 0)
			close(fd);
		halo_buf_free(buf);
		return -EINVAL;
	}
	io_uring_prep_read(io_uring_get_sqe(&ring), fd, buf, BS, 0);
	r = io_uring_submit(&ring);
	/* On an IOPOLL ring, waiting is what reaps (it polls the device). */
	if (r >= 0)
		r = io_uring_wait_cqe(&ring, &cqe);
	if (r == 0)
		r = cqe->res;
	io_uring_queue_exit(&ring);
	close(fd);
	halo_buf_free(buf);
	return r;
}

/* Where the device polls: halo's polled ring against fio's polled mode
 * (--hipri: an IOPOLL ring that fio reaps by polling, as halo does), and
 * against halo on the main ring, interleaved, O_DIRECT at depth 32. The
 * loop spins a core while reads are in flight, as fio does. */
static void iopoll_rows(double secs)
{
	halo_loop_opts polled = {.iopoll = 1};
	double on[ROUNDS], off[ROUNDS], fio[ROUNDS];
	int has_fio = system("fio --version >/dev/null 2>&1") == 0;
	uint64_t retries = 0;

	for (int r = 0; r < ROUNDS; r++) {
		use_direct = 1;
		on[r] = halo_iops_opts(32, 1, secs / 2, &polled);
		retries += last_retries;
		use_direct = 0;
		off[r] = halo_iops_opts(32, 1, secs / 2, NULL);
		fio[r] = has_fio ? fio_iops_mode(32, 1, 1, secs / 2) : 0;
		bench_progress("file", "iopoll round %d: polled=%.0f "
				       "plain=%.0f fio_hipri=%.0f retries=%llu",
			       r + 1, on[r], off[r], fio[r],
			       (unsigned long long)last_retries);
	}
	if (retries) {
		/* The probe's ring polled, halo's was refused: no row that
		 * would call the fallback a polled figure. */
		fprintf(stderr, "[file] randread_4k_qd32_direct_iopoll "
				"skipped: the polled ring fell back\n");
		return;
	}
	bench_emit("file", "randread_4k_qd32_direct_iopoll", "iops",
		   median(on), "IO/s", has_fio ? "fio_hipri" : NULL,
		   median(fio), 1);
	bench_emit("file", "randread_4k_qd32_direct_iopoll", "iops",
		   median(on), "IO/s", "iopoll_off", median(off), 1);
}

/* O_DIRECT at depth 32 with each ring feature on over off, interleaved;
 * and whether IOPOLL could run here at all. */
static void feature_rows(double secs)
{
	double on[ROUNDS], off[ROUNDS];
	halo_loop_opts busy = {.busy_poll_ns = 1000000};
	halo_loop_opts mw = {.min_wait_us = 50};
	halo_loop_opts mw_off = {0};
	int ip = iopoll_probe();

	fprintf(stderr, "[file] IOPOLL probe on %s: %d (%s)\n", path, ip,
		ip == BS ? "supported" : strerror(ip < 0 ? -ip : EIO));
	bench_emit("file", "iopoll_supported", "supported", ip == BS, "bool", NULL, 0,
		   1);
	if (ip == BS) {
		iopoll_rows(secs);
	} else {
		fprintf(stderr, "[file] randread_4k_qd32_direct_iopoll skipped: "
				"%s's device has no poll queues "
				"(queue/io_poll = 0), so opts.iopoll would "
				"only measure its fallback\n",
			path);
	}
	/* Which goes first alternates from round to round. */
	for (int r = 0; r < ROUNDS; r++) {
		use_fixed = !(r & 1);
		(use_fixed ? on : off)[r] = halo_iops_opts(32, 1, secs / 2,
							   &busy);
		use_fixed = r & 1;
		(use_fixed ? on : off)[r] = halo_iops_opts(32, 1, secs / 2,
							   &busy);
	}
	use_fixed = 0;
	bench_emit("file", "randread_4k_qd32_direct_fixed_bufs", "iops",
		   median(on), "IO/s", "fixed_bufs_off", median(off), 1);
	for (int r = 0; r < ROUNDS; r++) {
		if (r & 1)
			off[r] = halo_iops_opts(32, 1, secs / 2, &mw_off);
		on[r] = halo_iops_opts(32, 1, secs / 2, &mw);
		if (!(r & 1))
			off[r] = halo_iops_opts(32, 1, secs / 2, &mw_off);
	}
	bench_emit("file", "randread_4k_qd32_direct_min_wait50us", "iops",
		   median(on), "IO/s", "min_wait_off", median(off), 1);
}

int main(void)
{
	double secs = 4.0 * bench_scale();
	int has_fio = system("fio --version >/dev/null 2>&1") == 0;
	int qds[2] = { 1, 32 };
	int r;

	path = getenv("HALO_BENCH_FILE");
	if (!path)
		path = "/var/tmp/halo-bench-file.dat";
	r = make_file();
	if (r < 0) {
		fprintf(stderr, "bench_file: cannot make %s: %s\n", path,
			strerror(-r));
		return 1;
	}
	if (!has_fio)
		fprintf(stderr, "bench_file: note: fio is missing (make "
				"deps-bench); emitting halo rows only\n");
	bench_pin(0);
	/* Rounds interleave halo, fio and the raw loop (and, with O_DIRECT,
	 * halo busy-polling as fio does, with and without registered
	 * buffers), so that a noisy neighbour hurts them alike; each figure
	 * is its median round. */
	for (int direct = 0; direct <= 1; direct++) {
		if (!direct)
			warm_cache();
		for (int i = 0; i < 2; i++) {
			halo_loop_opts busy = {.busy_poll_ns = 1000000};
			double h[ROUNDS], b[ROUNDS], raw[ROUNDS], hb[ROUNDS],
				hbf[ROUNDS], rs = secs / 2;
			char name[64], bname[96];

			snprintf(name, sizeof(name), "randread_4k_qd%d_%s",
				 qds[i], direct ? "direct" : "pagecache");
			for (int k = 0; k < ROUNDS; k++) {
				h[k] = halo_iops(qds[i], direct, rs);
				if (h[k] < 0)
					break;
				b[k] = has_fio ? fio_iops(qds[i], direct, rs)
					       : 0;
				raw[k] = raw_iops(qds[i], direct, rs);
				hb[k] = hbf[k] = 0;
				if (direct) {
					hb[k] = halo_iops_opts(qds[i], direct,
							       rs, &busy);
					use_fixed = 1;
					hbf[k] = halo_iops_opts(qds[i], direct,
								rs, &busy);
					use_fixed = 0;
				}
				bench_progress("file", "%s round %d: halo=%.0f "
						       "fio=%.0f liburing=%.0f "
						       "busypoll=%.0f "
						       "busypoll_fixed=%.0f",
					       name, k + 1, h[k], b[k], raw[k],
					       hb[k], hbf[k]);
			}
			if (h[0] < 0) {
				fprintf(stderr, "bench_file: %s: O_DIRECT "
						"refused here; skipped\n",
					name);
				continue;
			}
			bench_emit("file", name, "iops", median(h), "IO/s",
				   has_fio ? "fio" : NULL, median(b), 1);
			bench_emit("file", name, "iops", median(h), "IO/s",
				   "liburing", median(raw), 1);
			if (!direct)
				continue;
			/* fio's engine never sleeps: it enters with
			 * min_complete 0 and spins (strace). The same stance
			 * for halo is an option. */
			snprintf(bname, sizeof(bname), "%s_busypoll", name);
			bench_emit("file", bname, "iops", median(hb), "IO/s",
				   has_fio ? "fio" : NULL, median(b), 1);
			snprintf(bname, sizeof(bname), "%s_busypoll_fixed",
				 name);
			bench_emit("file", bname, "iops", median(hbf), "IO/s",
				   has_fio ? "fio" : NULL, median(b), 1);
		}
	}
	feature_rows(secs);
	return 0;
}
