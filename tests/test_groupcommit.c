/* Group commit: batching (far fewer fdatasyncs than records), per-appender
 * order in the file, a failed batch fails exactly its own futures, and
 * durability of every completed record across SIGKILL. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/util.h"

static halo_loop loop;
static char *dir;

static void setup(void)
{
	tu_loop_init(&loop, NULL);
	dir = tu_tmpdir();
}

static void teardown(void)
{
	tu_loop_close(&loop);
	tu_rmdir(dir);
}

#define REC_MAGIC 0x52454331u

struct rec {
	uint32_t magic, writer, seq, sum;
	uint8_t payload[48];
};

static uint32_t rec_sum(const struct rec *r)
{
	uint32_t s = r->writer * 2654435761u ^ r->seq;

	for (size_t i = 0; i < sizeof(r->payload); i++)
		s = s * 31 + r->payload[i];
	return s;
}

static void rec_make(struct rec *r, uint32_t writer, uint32_t seq)
{
	r->magic = REC_MAGIC;
	r->writer = writer;
	r->seq = seq;
	for (size_t i = 0; i < sizeof(r->payload); i++)
		r->payload[i] = (uint8_t)(writer + seq + i);
	r->sum = rec_sum(r);
}

static int rec_ok(const struct rec *r)
{
	return r->magic == REC_MAGIC && r->sum == rec_sum(r);
}

static int open_log(const char *name)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(fd, 0);
	return fd;
}

#define WRITERS 64
#define PER_WRITER 40

struct writer_arg {
	halo_gc *gc;
	uint32_t id;
	int failures;
};

static int64_t writer_fiber(halo_loop *l, void *arg)
{
	struct writer_arg *w = arg;

	(void)l;
	for (uint32_t seq = 0; seq < PER_WRITER; seq++) {
		struct rec r;

		rec_make(&r, w->id, seq);
		if (halo_fut_join(halo_gc_append(w->gc, &r, sizeof(r))) < 0)
			w->failures++;
	}
	return 0;
}

START_TEST(test_64_appenders_share_fdatasyncs_and_keep_their_order)
{
	static struct writer_arg wa[WRITERS];
	halo_fut *fib[WRITERS];
	halo_gc gc;
	halo_gc_stats st;
	int fd = open_log("gc.log");
	uint32_t next_seq[WRITERS] = {0};
	struct rec r;
	ssize_t n;
	off_t off = 0;
	int records = 0;

	ck_assert_int_eq(halo_gc_init(&gc, &loop, fd, NULL), 0);
	for (int i = 0; i < WRITERS; i++) {
		wa[i].gc = &gc;
		wa[i].id = (uint32_t)i;
		fib[i] = halo_spawn(&loop, writer_fiber, &wa[i]);
	}
	for (int i = 0; i < WRITERS; i++) {
		ck_assert_int_eq(halo_fut_join(fib[i]), 0);
		ck_assert_int_eq(wa[i].failures, 0);
	}
	halo_gc_stats_get(&gc, &st);
	ck_assert_uint_eq(st.appends, WRITERS * PER_WRITER);
	ck_assert_uint_eq(st.fdatasyncs, st.batches);
	ck_assert_uint_le(st.fdatasyncs, WRITERS * PER_WRITER / 8);
	ck_assert_uint_gt(st.max_records, 1);
	while ((n = pread(fd, &r, sizeof(r), off)) == sizeof(r)) {
		ck_assert(rec_ok(&r));
		ck_assert_uint_lt(r.writer, WRITERS);
		ck_assert_uint_eq(r.seq, next_seq[r.writer]);
		next_seq[r.writer]++;
		off += (off_t)sizeof(r);
		records++;
	}
	ck_assert_int_eq(n, 0);
	ck_assert_int_eq(records, WRITERS * PER_WRITER);
	ck_assert_int_eq(halo_gc_close(&gc), 0);
	close(fd);
}
END_TEST

static halo_fut *append_rec(halo_gc *gc, uint32_t writer, uint32_t seq)
{
	struct rec r;

	rec_make(&r, writer, seq);
	return halo_gc_append(gc, &r, sizeof(r));
}

/* The child: its own loop and log, under a 4096-byte file size limit that
 * it lifts after the second batch (an rlimit must not outlive the test). */
static void failed_write_child(void *arg)
{
	enum { A = 10, B = 100, C = 10 };
	halo_fut *fa[A], *fb[B], *fc[C];
	halo_loop l;
	halo_gc gc;
	struct rlimit old, lim = {.rlim_cur = 4096};
	char path[512];
	int fd;

	(void)arg;
	snprintf(path, sizeof(path), "%s/fail.log", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	TU_CHILD_ASSERT(fd >= 0);
	signal(SIGXFSZ, SIG_IGN);
	TU_CHILD_ASSERT(getrlimit(RLIMIT_FSIZE, &old) == 0);
	lim.rlim_max = old.rlim_max;
	TU_CHILD_ASSERT(halo_loop_init(&l, NULL) == 0);
	TU_CHILD_ASSERT(halo_gc_init(&gc, &l, fd, NULL) == 0);
	TU_CHILD_ASSERT(setrlimit(RLIMIT_FSIZE, &lim) == 0);
	for (int i = 0; i < A; i++)
		fa[i] = append_rec(&gc, 0, (uint32_t)i);
	for (int i = 0; i < A; i++)
		TU_CHILD_ASSERT_INT_EQ(halo_fut_join(fa[i]), i * 64);
	/* 6400 bytes from offset 640 cross the 4096-byte file size limit. */
	for (int i = 0; i < B; i++)
		fb[i] = append_rec(&gc, 1, (uint32_t)i);
	for (int i = 0; i < B; i++)
		TU_CHILD_ASSERT_INT_EQ(halo_fut_join(fb[i]), -EFBIG);
	/* The short write up to the limit was cut back off. */
	{
		struct stat st;

		TU_CHILD_ASSERT(fstat(fd, &st) == 0);
		TU_CHILD_ASSERT_INT_EQ(st.st_size, A * 64);
		TU_CHILD_ASSERT_INT_EQ(halo_gc_durable(&gc), A * 64);
	}
	TU_CHILD_ASSERT(setrlimit(RLIMIT_FSIZE, &old) == 0);
	for (int i = 0; i < C; i++)
		fc[i] = append_rec(&gc, 2, (uint32_t)i);
	for (int i = 0; i < C; i++)
		TU_CHILD_ASSERT_INT_EQ(halo_fut_join(fc[i]), 640 + i * 64);
	TU_CHILD_ASSERT_INT_EQ(halo_gc_close(&gc), 0);
	TU_CHILD_ASSERT_INT_EQ(halo_loop_close(&l), 0);
	close(fd);
}

START_TEST(test_failed_write_fails_exactly_its_batch)
{
	tu_assert_child_ok(tu_run_in_child(failed_write_child, NULL));
}
END_TEST

/* The child: its own loop (a ring never crosses a fork), 8 appenders,
 * each completed record's id reported on the pipe. */
static int64_t crash_writer(halo_loop *l, void *arg)
{
	struct writer_arg *w = arg;
	int pipe_fd = w->failures;

	(void)l;
	for (uint32_t seq = 0;; seq++) {
		struct rec r;
		uint32_t id[2] = {w->id, seq};

		rec_make(&r, w->id, seq);
		if (halo_fut_join(halo_gc_append(w->gc, &r, sizeof(r))) < 0)
			_exit(3);
		if (write(pipe_fd, id, sizeof(id)) != sizeof(id))
			_exit(4);
	}
	return 0;
}

static void crash_child(int fd, int pipe_fd)
{
	static halo_loop child_loop;
	static struct writer_arg wa[8];
	halo_gc gc;

	if (halo_loop_init(&child_loop, NULL) < 0 ||
	    halo_gc_init(&gc, &child_loop, fd, NULL) < 0)
		_exit(2);
	for (int i = 0; i < 8; i++) {
		wa[i].gc = &gc;
		wa[i].id = (uint32_t)i;
		wa[i].failures = pipe_fd;
		halo_fut_detach(halo_spawn(&child_loop, crash_writer, &wa[i]));
	}
	halo_loop_run(&child_loop);
	_exit(5);
}

START_TEST(test_completed_records_survive_sigkill_of_the_writer)
{
	enum { REPORTS = 2000 };
	static uint32_t got[REPORTS][2];
	static uint8_t on_disk[8][1 << 16];
	int fd = open_log("crash.log");
	int pfd[2];
	pid_t pid;
	size_t have = 0;
	struct rec r;
	off_t off = 0;
	int status;

	ck_assert_int_eq(pipe(pfd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(pfd[0]);
		crash_child(fd, pfd[1]);
	}
	close(pfd[1]);
	while (have < sizeof(got)) {
		ssize_t n = read(pfd[0], (char *)got + have, sizeof(got) - have);

		ck_assert_int_gt(n, 0);
		have += (size_t)n;
	}
	kill(pid, SIGKILL);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status));
	close(pfd[0]);
	/* Every record before a torn tail is intact; a record whose future
	 * completed must be among them. */
	while (pread(fd, &r, sizeof(r), off) == sizeof(r) && rec_ok(&r)) {
		if (r.writer < 8 && r.seq < (1u << 16))
			on_disk[r.writer][r.seq] = 1;
		off += (off_t)sizeof(r);
	}
	for (int i = 0; i < REPORTS; i++) {
		ck_assert_uint_lt(got[i][0], 8);
		ck_assert_uint_lt(got[i][1], 1u << 16);
		ck_assert_msg(on_disk[got[i][0]][got[i][1]],
			      "record %u/%u completed but is not on disk",
			      got[i][0], got[i][1]);
	}
	close(fd);
}
END_TEST

struct batch_log {
	size_t records[16];
	int err[16];
	int n;
	halo_gc *gc;
	int move_to_fd; /* >= 0: reopen there after the first batch */
};

static void on_batch(halo_gc *gc, size_t records, int err, void *arg)
{
	struct batch_log *l = arg;

	ck_assert_ptr_eq(gc, l->gc);
	ck_assert_int_lt(l->n, 16);
	l->records[l->n] = records;
	l->err[l->n++] = err;
	if (l->move_to_fd >= 0) {
		ck_assert_int_eq(halo_gc_reopen(gc, l->move_to_fd, 0), 0);
		l->move_to_fd = -1;
	}
}

START_TEST(test_quiet_appends_report_batches_and_reopen_moves_the_rest)
{
	struct batch_log bl = {.move_to_fd = -1};
	halo_gc_opts o = {.on_batch = on_batch, .arg = &bl};
	int fd = open_log("a.log"), fd2 = open_log("b.log");
	halo_gc gc;
	struct rec r;
	halo_fut *f;
	struct stat st;

	bl.gc = &gc;
	ck_assert_int_eq(halo_gc_init(&gc, &loop, fd, &o), 0);
	ck_assert_int_eq(halo_gc_append_quiet(&gc, &r, 0), -EINVAL);
	rec_make(&r, 0, 0);
	ck_assert_int_eq(halo_gc_append_quiet(&gc, &r, sizeof(r)), 0);
	ck_assert_int_eq(halo_gc_append_quiet(&gc, &r, sizeof(r)), 0);
	f = halo_gc_append(&gc, &r, sizeof(r));
	ck_assert_int_eq(halo_fut_join(f), 2 * (int)sizeof(r));
	while (bl.n < 1)
		halo_loop_run_once(&loop);
	ck_assert_uint_eq(bl.records[0], 3);
	ck_assert_int_eq(bl.err[0], 0);
	ck_assert_int_eq(halo_gc_durable(&gc), 3 * (int)sizeof(r));
	/* Gathered while a batch is in flight, then moved to b.log. */
	ck_assert_int_eq(halo_gc_append_quiet(&gc, &r, sizeof(r)), 0);
	halo_loop_run_nowait(&loop);
	ck_assert_int_eq(halo_gc_reopen(&gc, fd2, 0), -EBUSY);
	bl.move_to_fd = fd2;
	ck_assert_int_eq(halo_gc_append_quiet(&gc, &r, sizeof(r)), 0);
	while (bl.n < 3)
		halo_loop_run_once(&loop);
	ck_assert_uint_eq(bl.records[1], 1);
	ck_assert_uint_eq(bl.records[2], 1);
	ck_assert_int_eq(fstat(fd, &st), 0);
	ck_assert_int_eq(st.st_size, 4 * (int)sizeof(r));
	ck_assert_int_eq(fstat(fd2, &st), 0);
	ck_assert_int_eq(st.st_size, sizeof(r));
	ck_assert_int_eq(halo_gc_close(&gc), 0);
	close(fd);
	close(fd2);
}
END_TEST

Suite *groupcommit_suite(void)
{
	Suite *s = suite_create("groupcommit");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(60));
	tcase_add_test(tc, test_64_appenders_share_fdatasyncs_and_keep_their_order);
	tcase_add_test(tc, test_failed_write_fails_exactly_its_batch);
	tcase_add_test(tc, test_completed_records_survive_sigkill_of_the_writer);
	tcase_add_test(tc,
		       test_quiet_appends_report_batches_and_reopen_moves_the_rest);
	suite_add_tcase(s, tc);
	return s;
}
