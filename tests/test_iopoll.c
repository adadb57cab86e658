/* The polled ring (opts.iopoll): O_DIRECT reads and writes on a real file,
 * the fallback to the main ring where the device has no poll queues (this
 * machine's virtio disk), switching it off, cancellation before and after
 * submission, and closing the loop with polled ops in flight. The polled
 * path proper runs only where the temp dir's device polls. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "runtime/internal.h"
#include "tests/util.h"

#define BS   4096
#define NBLK 16

static halo_loop loop;
static char *dir;
static int fds_before;
static int fd;	  /* the data file, O_DIRECT */
static char *src; /* what block i holds: src + i * BS */

static char pattern(int blk, int i)
{
	return (char)(blk * 31 + i * 7 + 1);
}

/* A file of NBLK blocks of real data on disk (a hole would be read without
 * any device I/O, and so without the device refusing it). */
static void setup(void)
{
	char path[512];
	int wfd;

	fds_before = tu_count_fds();
	dir = tu_tmpdir();
	src = malloc(NBLK * BS);
	for (int b = 0; b < NBLK; b++)
		for (int i = 0; i < BS; i++)
			src[b * BS + i] = pattern(b, i);
	snprintf(path, sizeof(path), "%s/data", dir);
	wfd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	ck_assert_int_ge(wfd, 0);
	ck_assert_int_eq(pwrite(wfd, src, NBLK * BS, 0), NBLK * BS);
	ck_assert_int_eq(fsync(wfd), 0);
	close(wfd);
	fd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
}

static void teardown(void)
{
	if (fd >= 0)
		close(fd);
	free(src);
	tu_rmdir(dir);
	ck_assert_int_eq(tu_count_fds(), fds_before);
}

static void init_polled(unsigned features_off)
{
	halo_loop_opts o = {.iopoll = 1, .features_off = features_off};

	tu_loop_init(&loop, &o);
}

/* Whether the temp dir's block device has poll queues
 * (/sys/dev/block/M:m/queue/io_poll, or its parent's for a partition). */
static int dir_device_polls(void)
{
	char path[256];
	struct stat st;
	FILE *f;
	int v = 0;

	if (stat(dir, &st) < 0)
		return 0;
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/queue/io_poll",
		 major(st.st_dev), minor(st.st_dev));
	f = fopen(path, "r");
	if (!f) {
		snprintf(path, sizeof(path),
			 "/sys/dev/block/%u:%u/../queue/io_poll",
			 major(st.st_dev), minor(st.st_dev));
		f = fopen(path, "r");
	}
	if (!f)
		return 0;
	if (fscanf(f, "%d", &v) != 1)
		v = 0;
	fclose(f);
	return v == 1;
}

static bool no_direct_here(void)
{
	if (fd >= 0)
		return false;
	printf("note: the temp dir refuses O_DIRECT; iopoll test skipped\n");
	return true;
}

static uint64_t retries(void)
{
	halo_stats st;

	halo_loop_stats(&loop, &st);
	return st.iopoll_retries;
}

START_TEST(test_direct_reads_return_the_data_and_fall_back_where_refused)
{
	char *buf[NBLK];
	halo_fut *f[NBLK];
	int on_at_init;

	if (no_direct_here())
		return;
	init_polled(0);
	on_at_init = (halo_loop_features(&loop) & HALO_FEAT_IOPOLL) != 0;
	/* All in one tick: every one goes to the polled ring at once, and
	 * every one must come back, refused or not. */
	for (int b = 0; b < NBLK; b++) {
		buf[b] = halo_buf_alloc_aligned(BS, BS);
		f[b] = halo_read_direct(&loop, fd, buf[b], BS, (int64_t)b * BS);
		ck_assert_ptr_nonnull(f[b]);
	}
	for (int b = 0; b < NBLK; b++) {
		ck_assert_int_eq(halo_fut_join(f[b]), BS);
		ck_assert_int_eq(memcmp(buf[b], src + b * BS, BS), 0);
	}
	if (!on_at_init) {
		/* HALO_FEATURES_OFF: never on the polled ring. */
		ck_assert_uint_eq(retries(), 0);
	} else if (dir_device_polls()) {
		ck_assert_uint_eq(retries(), 0);
		ck_assert(halo_loop_features(&loop) & HALO_FEAT_IOPOLL);
	} else {
		/* Refused by the device: each op ran again on the main ring,
		 * and the loop stopped trying. */
		ck_assert_uint_eq(retries(), NBLK);
		ck_assert(!(halo_loop_features(&loop) & HALO_FEAT_IOPOLL));
		memset(buf[0], 0, BS);
		ck_assert_int_eq(
		    halo_fut_join(halo_read_direct(&loop, fd, buf[0], BS, 0)),
		    BS);
		ck_assert_int_eq(memcmp(buf[0], src, BS), 0);
		ck_assert_uint_eq(retries(), NBLK);
	}
	for (int b = 0; b < NBLK; b++)
		halo_buf_free(buf[b]);
	tu_loop_close(&loop);
}
END_TEST

/* On this machine's ext4 the kernel does not mark direct writes as polled
 * bios: the device's interrupt ends them, but only a poll of the ring posts
 * their CQEs. A tick that slept in the main ring would hang here. */
START_TEST(test_direct_writes_then_reads_round_trip)
{
	char *w = halo_buf_alloc_aligned(NBLK * BS, BS);
	char *r = halo_buf_alloc_aligned(NBLK * BS, BS);
	halo_fut *f[NBLK];

	if (no_direct_here()) {
		halo_buf_free(w);
		halo_buf_free(r);
		return;
	}
	init_polled(0);
	for (int i = 0; i < NBLK * BS; i++)
		w[i] = (char)(i * 5 + 3);
	for (int b = 0; b < NBLK; b++)
		f[b] = halo_write_direct(&loop, fd, w + b * BS, BS,
					 (int64_t)b * BS);
	for (int b = 0; b < NBLK; b++)
		ck_assert_int_eq(halo_fut_join(f[b]), BS);
	for (int b = 0; b < NBLK; b++)
		f[b] = halo_read_direct(&loop, fd, r + b * BS, BS,
					(int64_t)b * BS);
	for (int b = 0; b < NBLK; b++)
		ck_assert_int_eq(halo_fut_join(f[b]), BS);
	ck_assert_int_eq(memcmp(w, r, NBLK * BS), 0);
	halo_buf_free(w);
	halo_buf_free(r);
	tu_loop_close(&loop);
}
END_TEST

/* Switched off by option or by HALO_FEATURES_OFF: the loop never makes the
 * polled ring and nothing is retried. */
START_TEST(test_iopoll_switched_off_runs_direct_ops_on_the_main_ring)
{
	const char *old = getenv("HALO_FEATURES_OFF");
	char *saved = old ? strdup(old) : NULL;
	char *buf = halo_buf_alloc_aligned(BS, BS);

	if (no_direct_here()) {
		free(saved);
		halo_buf_free(buf);
		return;
	}
	for (int how = 0; how < 2; how++) {
		if (how == 1)
			setenv("HALO_FEATURES_OFF", "min_wait,iopoll", 1);
		init_polled(how == 0 ? HALO_FEAT_IOPOLL : 0);
		ck_assert(!(halo_loop_features(&loop) & HALO_FEAT_IOPOLL));
		ck_assert_int_eq(
		    halo_fut_join(halo_read_direct(&loop, fd, buf, BS, BS)),
		    BS);
		ck_assert_int_eq(memcmp(buf, src + BS, BS), 0);
		ck_assert_uint_eq(retries(), 0);
		ck_assert_ptr_null(loop.iopoll);
		tu_loop_close(&loop);
	}
	if (saved)
		setenv("HALO_FEATURES_OFF", saved, 1);
	else
		unsetenv("HALO_FEATURES_OFF");
	free(saved);
	halo_buf_free(buf);
}
END_TEST

/* Cancelled in the tick that started it: the SQE is still ours, becomes a
 * NOP, and the device never touches the buffer. */
START_TEST(test_cancel_before_submit_never_touches_buffer)
{
	char *buf = halo_buf_alloc_aligned(BS, BS);
	halo_fut *f;

	if (no_direct_here()) {
		halo_buf_free(buf);
		return;
	}
	init_polled(0);
	memset(buf, 0xAA, BS);
	f = halo_read_direct(&loop, fd, buf, BS, 0);
	ck_assert_int_eq(halo_fut_cancel(f), 0);
	ck_assert_int_eq(halo_fut_wait(f), -ECANCELED);
	ck_assert_int_eq(halo_fut_status(f), HALO_FUT_CANCELLED);
	halo_fut_release(f);
	for (int i = 0; i < BS; i++)
		ck_assert_int_eq((unsigned char)buf[i], 0xAA);
	ck_assert_uint_eq(retries(), 0);
	halo_buf_free(buf);
	tu_loop_close(&loop);
}
END_TEST

/* Cancelled while the kernel holds it on the polled ring (submitted, its
 * CQE not reaped): no ASYNC_CANCEL can reach it, so the future waits for its
 * CQE. Refused by the device: CANCELLED, not retried, buffer untouched;
 * done by a polling device: OK with the data. */
START_TEST(test_cancel_in_kernel_waits_for_the_polled_cqe)
{
	char *buf = halo_buf_alloc_aligned(BS, BS);
	halo_fut *f;
	int64_t res;

	if (no_direct_here()) {
		halo_buf_free(buf);
		return;
	}
	init_polled(0);
	if (!(halo_loop_features(&loop) & HALO_FEAT_IOPOLL)) {
		printf("note: iopoll switched off; in-kernel cancel test "
		       "skipped\n");
		halo_buf_free(buf);
		tu_loop_close(&loop);
		return;
	}
	memset(buf, 0xAA, BS);
	f = halo_read_direct(&loop, fd, buf, BS, 2 * BS);
	ck_assert_ptr_nonnull(loop.iopoll);
	ck_assert_int_ge(halo__iopoll_enter(&loop), 1); /* submitted only */
	ck_assert_int_eq(halo_fut_cancel(f), 0);
	ck_assert(halo_fut_status(f) == HALO_FUT_PENDING);
	res = halo_fut_wait(f);
	if (dir_device_polls()) {
		ck_assert_int_eq(res, BS);
		ck_assert_int_eq(memcmp(buf, src + 2 * BS, BS), 0);
	} else {
		ck_assert_int_eq(res, -ECANCELED);
		ck_assert(halo_fut_status(f) == HALO_FUT_CANCELLED);
		for (int i = 0; i < BS; i++)
			ck_assert_int_eq((unsigned char)buf[i], 0xAA);
		ck_assert_uint_eq(retries(), 0);
		ck_assert(!(halo_loop_features(&loop) & HALO_FEAT_IOPOLL));
	}
	halo_fut_release(f);
	halo_buf_free(buf);
	tu_loop_close(&loop);
}
END_TEST

/* Cancelled once the kernel has them: a polled op cannot be cancelled, a
 * refused one is not retried, a retried one is cancelled on the main ring.
 * Whatever happened, a future is either CANCELLED with its buffer
 * untouched, or OK with the file's bytes, and never an error. */
START_TEST(test_cancel_after_submit_is_cancelled_or_done_never_torn)
{
	char *buf[NBLK];
	halo_fut *f[NBLK];

	if (no_direct_here())
		return;
	init_polled(0);
	for (int b = 0; b < NBLK; b++) {
		buf[b] = halo_buf_alloc_aligned(BS, BS);
		memset(buf[b], 0xAA, BS);
		f[b] = halo_read_direct(&loop, fd, buf[b], BS, (int64_t)b * BS);
	}
	ck_assert_int_ge(halo_loop_run_nowait(&loop), 0);
	for (int b = 0; b < NBLK; b++) {
		int r = halo_fut_cancel(f[b]);
		ck_assert(r == 0 || r == -EALREADY);
	}
	for (int b = 0; b < NBLK; b++) {
		int64_t res = halo_fut_wait(f[b]);

		if (halo_fut_status(f[b]) == HALO_FUT_CANCELLED) {
			ck_assert_int_eq(res, -ECANCELED);
			for (int i = 0; i < BS; i++)
				ck_assert_int_eq((unsigned char)buf[b][i],
						 0xAA);
		} else {
			ck_assert_int_eq(res, BS);
			ck_assert_int_eq(memcmp(buf[b], src + b * BS, BS), 0);
		}
		halo_fut_release(f[b]);
	}
	for (int b = 0; b < NBLK; b++)
		halo_buf_free(buf[b]);
	tu_loop_close(&loop);
}
END_TEST

/* Close while polled ops are queued, in the kernel, or being retried: it
 * waits for every one, frees both rings, and reports no leak. */
START_TEST(test_close_with_direct_ops_in_flight)
{
	char *buf = halo_buf_alloc_aligned(NBLK * BS, BS);

	if (no_direct_here()) {
		halo_buf_free(buf);
		return;
	}
	for (int ticks = 0; ticks < 3; ticks++) {
		init_polled(0);
		for (int b = 0; b < NBLK; b++) {
			halo_fut *f =
			    b & 1 ? halo_write_direct(&loop, fd, src + b * BS,
						      BS, (int64_t)b * BS)
				  : halo_read_direct(&loop, fd, buf + b * BS,
						     BS, (int64_t)b * BS);
			ck_assert_ptr_nonnull(f);
			halo_fut_detach(f);
		}
		for (int t = 0; t < ticks; t++)
			ck_assert_int_ge(halo_loop_run_nowait(&loop), 0);
		ck_assert_int_eq(halo_loop_close(&loop), 0);
	}
	halo_buf_free(buf);
}
END_TEST

/* A fiber reads into its own stack, once waiting for the data, once
 * returning with the reads in flight: its stack is reused only after the
 * kernel let go of them. */
static int64_t fiber_reads(halo_loop *l, void *arg)
{
	char buf[4][BS] __attribute__((aligned(BS)));
	int wait = *(int *)arg;

	for (int b = 0; b < 4; b++) {
		halo_fut *f = halo_read_direct(l, fd, buf[b], BS,
					       (int64_t)b * BS);

		if (!f)
			return -ENOMEM;
		if (!wait) {
			halo_fut_detach(f);
			continue;
		}
		if (halo_fut_wait(f) != BS)
			return -EIO;
		if (memcmp(buf[b], src + b * BS, BS))
			return -EILSEQ;
		halo_fut_release(f);
	}
	if (!wait)
		halo_yield(l); /* let the reads reach the kernel */
	return 0;
}

START_TEST(test_fiber_stack_outlives_its_direct_reads)
{
	if (no_direct_here())
		return;
	for (int wait = 1; wait >= 0; wait--) {
		halo_fut *fb;
		halo_stats st;

		init_polled(0);
		fb = halo_spawn(&loop, fiber_reads, &wait);
		ck_assert_ptr_nonnull(fb);
		ck_assert_int_eq(halo_fut_join(fb), 0);
		halo_loop_stats(&loop, &st);
		ck_assert_uint_eq(st.inflight, 0);
		tu_loop_close(&loop);
	}
}
END_TEST

/* More direct ops in one tick than either polled queue holds: a 4-entry SQ
 * (flushed early, without GETEVENTS, each time it fills) and an 8-entry CQ.
 * The writes are given time to end before the first poll pass, which then
 * completes more of them than the CQ holds: the kernel keeps the rest
 * (NODROP) and a later pass flushes them. Every op still completes, once,
 * with its data. Writes first (this disk runs them on the polled ring),
 * then reads (which it refuses, so they all go back to the main ring). */
START_TEST(test_more_ops_than_the_polled_rings_hold)
{
	enum { N = 64 };
	halo_loop_opts o = {.iopoll = 1, .sq_entries = 4};
	char *w = halo_buf_alloc_aligned(N * BS, BS);
	char *r = halo_buf_alloc_aligned(N * BS, BS);
	halo_fut *f[N];
	halo_stats st;
	unsigned overflowed = 0;

	if (no_direct_here()) {
		halo_buf_free(w);
		halo_buf_free(r);
		return;
	}
	tu_loop_init(&loop, &o);
	for (int i = 0; i < N * BS; i++)
		w[i] = (char)(i * 11 + 5);
	for (int b = 0; b < N; b++) {
		f[b] = halo_write_direct(&loop, fd, w + b * BS, BS,
					 (int64_t)b * BS);
		ck_assert_ptr_nonnull(f[b]);
	}
	if (loop.iopoll) {
		usleep(200 * 1000);
		ck_assert_int_ge(halo__iopoll_enter(&loop), 0);
		overflowed = IO_URING_READ_ONCE(*loop.iopoll->ring.sq.kflags) &
			     IORING_SQ_CQ_OVERFLOW;
	}
	for (int b = 0; b < N; b++)
		ck_assert_int_eq(halo_fut_join(f[b]), BS);
	if (loop.iopoll && !overflowed)
		printf("note: the polled CQ did not overflow this run\n");
	memset(r, 0, N * BS);
	for (int b = 0; b < N; b++) {
		f[b] = halo_read_direct(&loop, fd, r + b * BS, BS,
					(int64_t)b * BS);
		ck_assert_ptr_nonnull(f[b]);
	}
	for (int b = 0; b < N; b++)
		ck_assert_int_eq(halo_fut_join(f[b]), BS);
	ck_assert_int_eq(memcmp(w, r, N * BS), 0);
	halo_loop_stats(&loop, &st);
	ck_assert_uint_eq(st.inflight, 0);
	if (loop.iopoll)
		ck_assert_uint_eq(loop.iopoll->inflight, 0);
	halo_buf_free(w);
	halo_buf_free(r);
	tu_loop_close(&loop);
}
END_TEST

/* A direct op told to use a registered file (halo_files_use_fixed) reads
 * and writes that file, polled ring or not (_i == 0: iopoll forced off;
 * 1: on where the kernel has it). The polled ring has no file table: were
 * the index taken as a plain fd there, these ops would hit the decoy file
 * that the index names as a plain fd. */
START_TEST(test_direct_ops_on_a_registered_file_use_that_file)
{
	char *w = halo_buf_alloc_aligned(BS, BS), *r;
	char *decoy_src = halo_buf_alloc_aligned(2 * BS, BS), path[512];
	int decoy, *table;
	struct stat st;
	halo_fut *f;

	if (no_direct_here()) {
		halo_buf_free(w);
		halo_buf_free(decoy_src);
		return;
	}
	r = halo_buf_alloc_aligned(BS, BS);
	snprintf(path, sizeof(path), "%s/decoy", dir);
	decoy = open(path, O_RDWR | O_CREAT | O_DIRECT | O_CLOEXEC, 0600);
	ck_assert_int_ge(decoy, 0);
	memset(decoy_src, 0x55, 2 * BS);
	ck_assert_int_eq(pwrite(decoy, decoy_src, 2 * BS, 0), 2 * BS);
	table = malloc((size_t)(decoy + 1) * sizeof(*table));
	for (int i = 0; i < decoy; i++)
		table[i] = -1;
	table[decoy] = fd; /* index decoy stands for the data file */
	init_polled(_i ? 0 : HALO_FEAT_IOPOLL);
	ck_assert_int_eq(halo_files_register(&loop, table, (unsigned)decoy + 1),
			 0);
	memset(w, 0x3C, BS);
	f = halo_write_direct(&loop, decoy, w, BS, 3 * BS);
	if (halo_loop_features(&loop) & HALO_FEAT_IOPOLL)
		ck_assert(f->flags & FUT_IOPOLL); /* the case at stake */
	ck_assert_int_eq(halo_files_use_fixed(f), 0);
	ck_assert(!(f->flags & FUT_IOPOLL));
	ck_assert_int_eq(halo_fut_join(f), BS);
	/* Moved and then cancelled before submission: never written. */
	memset(r, 0x77, BS);
	f = halo_write_direct(&loop, decoy, r, BS, 4 * BS);
	ck_assert_int_eq(halo_files_use_fixed(f), 0);
	ck_assert_int_eq(halo_fut_cancel(f), 0);
	ck_assert_int_eq(halo_fut_join(f), -ECANCELED);
	f = halo_read_direct(&loop, decoy, r, BS, 3 * BS);
	ck_assert_int_eq(halo_files_use_fixed(f), 0);
	ck_assert_int_eq(halo_fut_join(f), BS);
	ck_assert_int_eq(memcmp(r, w, BS), 0);
	f = halo_read_direct(&loop, decoy, r, BS, 5 * BS);
	ck_assert_int_eq(halo_files_use_fixed(f), 0);
	ck_assert_int_eq(halo_fut_join(f), BS);
	ck_assert_int_eq(memcmp(r, src + 5 * BS, BS), 0);
	/* The data file has the write; the decoy is as it was. */
	ck_assert_int_eq(pread(fd, r, BS, 3 * BS), BS);
	ck_assert_int_eq(memcmp(r, w, BS), 0);
	ck_assert_int_eq(pread(fd, r, BS, 4 * BS), BS);
	ck_assert_int_eq(memcmp(r, src + 4 * BS, BS), 0);
	ck_assert_uint_eq(retries(), 0);
	ck_assert_int_eq(fstat(decoy, &st), 0);
	ck_assert_int_eq(st.st_size, 2 * BS);
	ck_assert_int_eq(pread(decoy, r, BS, 0), BS);
	ck_assert_int_eq(memcmp(r, decoy_src, BS), 0);
	if (loop.iopoll)
		ck_assert_uint_eq(loop.iopoll->inflight, 0);
	ck_assert_int_eq(halo_files_unregister(&loop), 0);
	tu_loop_close(&loop);
	close(decoy);
	free(table);
	halo_buf_free(decoy_src);
	halo_buf_free(w);
	halo_buf_free(r);
}
END_TEST

/* The polled path itself: only on a device with poll queues. */
START_TEST(test_polled_reads_on_a_device_with_poll_queues)
{
	char *buf[NBLK];
	halo_fut *f[NBLK];

	if (no_direct_here())
		return;
	if (!dir_device_polls()) {
		printf("note: %s is on a device without poll queues "
		       "(queue/io_poll = 0); the polled-path test is skipped, "
		       "the fallback tests ran\n",
		       dir);
		return;
	}
	init_polled(0);
	if (!(halo_loop_features(&loop) & HALO_FEAT_IOPOLL)) {
		printf("note: iopoll switched off (HALO_FEATURES_OFF); "
		       "polled-path test skipped\n");
		tu_loop_close(&loop);
		return;
	}
	for (int b = 0; b < NBLK; b++) {
		buf[b] = halo_buf_alloc_aligned(BS, BS);
		f[b] = halo_read_direct(&loop, fd, buf[b], BS, (int64_t)b * BS);
	}
	for (int b = 0; b < NBLK; b++) {
		ck_assert_int_eq(halo_fut_join(f[b]), BS);
		ck_assert_int_eq(memcmp(buf[b], src + b * BS, BS), 0);
		halo_buf_free(buf[b]);
	}
	ck_assert_uint_eq(retries(), 0);
	ck_assert(halo_loop_features(&loop) & HALO_FEAT_IOPOLL);
	ck_assert_ptr_nonnull(loop.iopoll);
	tu_loop_close(&loop);
}
END_TEST

Suite *iopoll_suite(void)
{
	Suite *s = suite_create("iopoll");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(20));
	tcase_add_test(
	    tc, test_direct_reads_return_the_data_and_fall_back_where_refused);
	tcase_add_test(tc, test_direct_writes_then_reads_round_trip);
	tcase_add_test(
	    tc, test_iopoll_switched_off_runs_direct_ops_on_the_main_ring);
	tcase_add_test(tc, test_cancel_before_submit_never_touches_buffer);
	tcase_add_test(tc, test_cancel_in_kernel_waits_for_the_polled_cqe);
	tcase_add_test(
	    tc, test_cancel_after_submit_is_cancelled_or_done_never_torn);
	tcase_add_test(tc, test_close_with_direct_ops_in_flight);
	tcase_add_test(tc, test_fiber_stack_outlives_its_direct_reads);
	tcase_add_test(tc, test_more_ops_than_the_polled_rings_hold);
	tcase_add_test(tc, test_polled_reads_on_a_device_with_poll_queues);
	tcase_add_loop_test(
	    tc, test_direct_ops_on_a_registered_file_use_that_file, 0, 2);
	suite_add_tcase(s, tc);
	return s;
}
