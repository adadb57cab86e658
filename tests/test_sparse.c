/* Sparse tasks: outcomes by event and by timeout, duplicate and late
 * events, heartbeats, durability across close and SIGKILL, a torn tail, a
 * corrupt record, a full disk, compaction, a store of the user's, and the
 * status-poller variant. */
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

#define MS  1000000ull
#define SEC (1000 * MS)

static halo_loop loop;
static char *dir;
static char path[512];
static int fds_before;

static void setup(void)
{
	fds_before = tu_count_fds();
	tu_loop_init(&loop, NULL);
	dir = tu_tmpdir();
	snprintf(path, sizeof(path), "%s/tasks.journal", dir);
}

static void teardown(void)
{
	halo_stats st;

	halo_loop_stats(&loop, &st);
	ck_assert_uint_eq(st.live_fibers, 0);
	tu_loop_close(&loop);
	tu_rmdir(dir);
	ck_assert_int_eq(tu_count_fds(), fds_before);
}

/* What the callbacks saw. */
struct seen {
	int alerts, done_ok, done_failed, late, submits;
	uint8_t alerted[4096], done[4096];
	int64_t last_result;
	halo_sparse_outcome late_outcome;
};

static halo_fut *submit_ready(halo_sparse *s, uint64_t id, const void *payload,
			      size_t len, void *arg)
{
	struct seen *w = arg;

	(void)payload;
	(void)len;
	w->submits++;
	return halo_fut_ready(halo_sparse_loop(s), (int64_t)id, NULL);
}

static void on_alert(halo_sparse *s, uint64_t id, void *arg)
{
	struct seen *w = arg;

	(void)s;
	w->alerts++;
	if (id < 4096)
		w->alerted[id]++;
}

static void on_done(halo_sparse *s, uint64_t id, halo_sparse_outcome o,
		    int64_t result, void *arg)
{
	struct seen *w = arg;

	(void)s;
	if (o == HALO_SPARSE_OK)
		w->done_ok++;
	else
		w->done_failed++;
	if (id < 4096)
		w->done[id]++;
	w->last_result = result;
}

static void on_late(halo_sparse *s, uint64_t id, halo_sparse_outcome o,
		    int64_t result, void *arg)
{
	struct seen *w = arg;

	(void)s;
	(void)id;
	(void)result;
	w->late++;
	w->late_outcome = o;
}

static halo_sparse_opts opts_for(struct seen *w)
{
	halo_sparse_opts o = {.path = path,
			      .submit_fn = submit_ready,
			      .alert_fn = on_alert,
			      .done_fn = on_done,
			      .late_fn = on_late,
			      .arg = w};
	return o;
}

static void open_ok(halo_sparse *s, const halo_sparse_opts *o)
{
	int r = halo_sparse_open(s, &loop, o);

	ck_assert_msg(r == 0, "open: %d %s", r, halo_sparse_error(s));
}

/* Wait until every record is durable, then close. */
static void close_ok(halo_sparse *s)
{
	ck_assert_int_eq(halo_fut_join(halo_sparse_flush(s)), 0);
	ck_assert_int_eq(halo_sparse_inflight(s), 0);
	ck_assert_int_eq(halo_sparse_close(s), 0);
}

/* Drive the loop in 1 ms slices until cond holds: a bare run_once loop
 * could block on a monitor's far deadline after the awaited callback ran. */
#define RUN_UNTIL(l, cond)                                                     \
	do {                                                                   \
		while (!(cond))                                                \
			halo_fut_join(halo_timer_after((l), MS));              \
	} while (0)

static void run_for(uint64_t ns)
{
	halo_fut_join(halo_timer_after(&loop, ns));
}

static int64_t submit_wait(halo_sparse *s, uint64_t id, uint64_t timeout,
			   const void *payload, size_t len)
{
	halo_fut *f;
	int r = halo_sparse_submit(s, id, timeout, payload, len, &f);

	if (r < 0)
		return r;
	return halo_fut_join(f);
}

START_TEST(test_crc32c_matches_the_castagnoli_check_value)
{
	ck_assert_uint_eq(halo_crc32c(0, "123456789", 9), 0xE3069283u);
	ck_assert_uint_eq(halo_crc32c(halo_crc32c(0, "1234", 4), "56789", 5),
			  0xE3069283u);
	ck_assert_uint_eq(halo_crc32c(0, "", 0), 0);
}
END_TEST

START_TEST(test_bad_input_is_einval_and_duplicate_submit_eexist)
{
	static struct seen w;
	halo_sparse s;
	halo_sparse_opts o = opts_for(&w), bad = o;
	char big[70000] = {0};
	halo_fut *f;

	bad.path = NULL;
	ck_assert_int_eq(halo_sparse_open(&s, &loop, &bad), -EINVAL);
	ck_assert_ptr_nonnull(strstr(halo_sparse_error(&s), "path"));
	ck_assert_int_eq(halo_sparse_open(&s, &loop, NULL), -EINVAL);
	o.max_pending = 2;
	open_ok(&s, &o);
	ck_assert_int_eq(halo_sparse_submit(&s, 1, 0, NULL, 0, &f), -EINVAL);
	ck_assert_int_eq(halo_sparse_submit(&s, 1, SEC, NULL, 0, NULL),
			 -EINVAL);
	ck_assert_int_eq(halo_sparse_submit(&s, 1, SEC, NULL, 5, &f), -EINVAL);
	ck_assert_int_eq(halo_sparse_submit(&s, 1, SEC, big, sizeof(big), &f),
			 -EINVAL);
	ck_assert_int_eq(
	    halo_sparse_complete(&s, 1, HALO_SPARSE_TIMEOUT, 0, NULL), -EINVAL);
	ck_assert_int_eq(halo_sparse_heartbeat(&s, 1, 0), -EINVAL);
	ck_assert_int_eq(submit_wait(&s, 1, 10 * SEC, "a", 1), 1);
	ck_assert_int_eq(halo_sparse_submit(&s, 1, SEC, NULL, 0, &f), -EEXIST);
	ck_assert_int_eq(submit_wait(&s, 2, 10 * SEC, NULL, 0), 2);
	ck_assert_int_eq(halo_sparse_submit(&s, 3, SEC, NULL, 0, &f), -EAGAIN);
	ck_assert_int_eq(halo_sparse_complete(&s, 1, HALO_SPARSE_OK, 0, NULL),
			 0);
	/* Finished and remembered: still a duplicate id. */
	ck_assert_int_eq(halo_sparse_submit(&s, 1, SEC, NULL, 0, &f), -EEXIST);
	close_ok(&s);
	ck_assert_int_eq(w.done_ok, 1);
}
END_TEST

START_TEST(test_thousand_tasks_half_by_events_half_by_timeouts)
{
	enum { N = 1000 };
	static struct seen w;
	static halo_fut *f[N];
	halo_sparse s;
	halo_sparse_opts o;
	halo_sparse_stats st;
	halo_stats ls;

	memset(&w, 0, sizeof(w));
	o = opts_for(&w);
	open_ok(&s, &o);
	for (int i = 0; i < N; i++) {
		uint64_t t = i % 2 ? (20 + (uint64_t)(i % 31)) * MS : 30 * SEC;

		ck_assert_int_eq(halo_sparse_submit(&s, (uint64_t)i, t, &i,
						    sizeof(i), &f[i]),
				 0);
	}
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(halo_fut_join(f[i]), i);
	ck_assert_int_eq(w.submits, N);
	for (int i = 0; i < N; i += 2)
		ck_assert_int_eq(halo_sparse_complete(&s, (uint64_t)i,
						      HALO_SPARSE_OK, i, NULL),
				 0);
	RUN_UNTIL(&loop, w.alerts >= N / 2 && w.done_ok >= N / 2);
	run_for(60 * MS); /* nothing more comes */
	ck_assert_int_eq(w.alerts, N / 2);
	ck_assert_int_eq(w.done_ok, N / 2);
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(w.alerted[i], i % 2);
		ck_assert_int_eq(w.done[i], !(i % 2));
	}
	halo_sparse_stats_get(&s, &st);
	ck_assert_uint_eq(st.pending, 0);
	ck_assert_uint_eq(st.timeouts, N / 2);
	ck_assert_uint_eq(st.completed, N / 2);
	halo_loop_stats(&loop, &ls);
	ck_assert_uint_eq(ls.live_fibers, 0);
	/* One loop timer at most, never one per task. */
	ck_assert_uint_le(halo_timer_pending(&loop), 1);
	close_ok(&s);
}
END_TEST

START_TEST(test_duplicate_and_late_events_are_counted_and_reported)
{
	static struct seen w;
	halo_sparse s;
	halo_sparse_opts o;
	halo_sparse_stats st;
	halo_fut *d;

	memset(&w, 0, sizeof(w));
	o = opts_for(&w);
	open_ok(&s, &o);
	ck_assert_int_eq(submit_wait(&s, 1, 30 * SEC, NULL, 0), 1);
	ck_assert_int_eq(submit_wait(&s, 2, 20 * MS, NULL, 0), 2);
	ck_assert_int_eq(halo_sparse_complete(&s, 1, HALO_SPARSE_OK, 7, &d), 0);
	ck_assert_int_eq(halo_sparse_complete(&s, 1, HALO_SPARSE_OK, 7, NULL),
			 HALO_SPARSE_DUPLICATE);
	ck_assert_int_eq(halo_fut_join(d), 0);
	ck_assert_int_eq(w.done_ok, 1);
	ck_assert_int_eq(w.last_result, 7);
	ck_assert_int_eq(
	    halo_sparse_complete(&s, 1, HALO_SPARSE_FAILED, -5, NULL),
	    HALO_SPARSE_DUPLICATE);
	RUN_UNTIL(&loop, w.alerts);
	ck_assert_int_eq(halo_sparse_complete(&s, 2, HALO_SPARSE_OK, 0, NULL),
			 HALO_SPARSE_LATE);
	ck_assert_int_eq(w.late, 1);
	ck_assert_int_eq(w.late_outcome, HALO_SPARSE_OK);
	ck_assert_int_eq(halo_sparse_complete(&s, 99, HALO_SPARSE_OK, 0, NULL),
			 -ENOENT);
	halo_sparse_stats_get(&s, &st);
	ck_assert_uint_eq(st.duplicates, 2);
	ck_assert_uint_eq(st.late, 1);
	ck_assert_uint_eq(st.unknown, 1);
	ck_assert_int_eq(w.done_ok + w.done_failed, 1);
	close_ok(&s);
}
END_TEST

START_TEST(test_heartbeat_extends_the_deadline_across_reopen)
{
	static struct seen w;
	halo_sparse s;
	halo_sparse_opts o;
	uint64_t left = 0;

	memset(&w, 0, sizeof(w));
	o = opts_for(&w);
	open_ok(&s, &o);
	ck_assert_int_eq(submit_wait(&s, 1, 30 * MS, NULL, 0), 1);
	ck_assert_int_eq(halo_sparse_heartbeat(&s, 1, 20 * SEC), 0);
	ck_assert_int_eq(halo_sparse_heartbeat(&s, 2, SEC), -ENOENT);
	run_for(100 * MS);
	ck_assert_int_eq(w.alerts, 0);
	close_ok(&s);
	open_ok(&s, &o);
	ck_assert_int_eq(halo_sparse_lookup(&s, 1, NULL, &left), 1);
	ck_assert_uint_gt(left, 10 * SEC);
	ck_assert_uint_le(left, 20 * SEC);
	close_ok(&s);
}
END_TEST

START_TEST(test_reopen_rearms_pending_fires_overdue_and_forgets_nothing)
{
	static struct seen w;
	halo_sparse s;
	halo_sparse_opts o;
	halo_sparse_outcome out;
	uint64_t left;

	memset(&w, 0, sizeof(w));
	o = opts_for(&w);
	open_ok(&s, &o);
	ck_assert_int_eq(submit_wait(&s, 1, 30 * SEC, "long", 4), 1);
	ck_assert_int_eq(submit_wait(&s, 2, 80 * MS, "short", 5), 2);
	ck_assert_int_eq(submit_wait(&s, 3, 30 * SEC, "done", 4), 3);
	ck_assert_int_eq(
	    halo_sparse_complete(&s, 3, HALO_SPARSE_FAILED, -9, NULL), 0);
	close_ok(&s);
	ck_assert_int_eq(w.alerts, 0);
	run_for(150 * MS); /* task 2 falls due while nothing runs */
	memset(&w, 0, sizeof(w));
	open_ok(&s, &o);
	ck_assert_int_eq(w.alerts, 0); /* never from inside open */
	ck_assert_int_eq(halo_sparse_lookup(&s, 1, NULL, &left), 1);
	ck_assert_uint_gt(left, 20 * SEC);
	ck_assert_int_eq(halo_sparse_lookup(&s, 3, &out, NULL), 0);
	ck_assert_int_eq(out, HALO_SPARSE_FAILED);
	RUN_UNTIL(&loop, w.alerts);
	ck_assert_int_eq(w.alerted[2], 1);
	ck_assert_int_eq(halo_sparse_complete(&s, 3, HALO_SPARSE_OK, 0, NULL),
			 HALO_SPARSE_DUPLICATE);
	ck_assert_int_eq(halo_sparse_pending(&s), 1);
	ck_assert_int_eq(w.submits, 0); /* submit functions ran before */
	close_ok(&s);
	/* And a third open alerts for nothing already alerted. */
	memset(&w, 0, sizeof(w));
	open_ok(&s, &o);
	run_for(30 * MS);
	ck_assert_int_eq(w.alerts, 0);
	ck_assert_int_eq(halo_sparse_pending(&s), 1);
	close_ok(&s);
}
END_TEST

/* --- SIGKILL in the middle of a stream --- */

struct report {
	uint8_t kind; /* 'S' submit acknowledged, 'C' outcome durable */
	uint64_t id;
	int64_t deadline; /* 'S': CLOCK_REALTIME ns */
} __attribute__((packed));

static int report_fd;

static void report(uint8_t kind, uint64_t id, int64_t deadline)
{
	struct report r = {kind, id, deadline};

	if (write(report_fd, &r, sizeof(r)) != sizeof(r))
		_exit(4);
}

static void child_done(halo_sparse *s, uint64_t id, halo_sparse_outcome o,
		       int64_t result, void *arg)
{
	(void)s;
	(void)o;
	(void)result;
	(void)arg;
	report('C', id, 0);
}

static int64_t wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* 32 submits in flight at a time, each acknowledged on the pipe once its
 * future is done; every third task completed by an event soon after. */
static void crash_child(void)
{
	static halo_loop cl;
	static halo_fut *f[32];
	static int64_t dl[32];
	halo_sparse s;
	halo_sparse_opts o = {.path = path, .done_fn = child_done};

	if (halo_loop_init(&cl, NULL) < 0 || halo_sparse_open(&s, &cl, &o) < 0)
		_exit(2);
	for (uint64_t base = 1;; base += 32) {
		for (uint64_t i = 0; i < 32; i++) {
			uint64_t t = (20 + (base + i) % 40) * SEC;

			dl[i] = wall_ns() + (int64_t)t;
			if (halo_sparse_submit(&s, base + i, t, &base, 8,
					       &f[i]) < 0)
				_exit(3);
		}
		for (uint64_t i = 0; i < 32; i++) {
			if (halo_fut_join(f[i]) < 0)
				_exit(5);
			report('S', base + i, dl[i]);
		}
		for (uint64_t i = 0; i < 32; i += 3)
			halo_sparse_complete(&s, base + i, HALO_SPARSE_OK, 1,
					     NULL);
	}
}

START_TEST(test_sigkill_mid_stream_loses_no_acknowledged_submit)
{
	enum { REPORTS = 3000 };
	static struct report got[REPORTS];
	static uint8_t acked[1 << 16], finished[1 << 16];
	static int64_t deadline[1 << 16];
	static struct seen w;
	halo_sparse s;
	halo_sparse_opts o;
	int pfd[2], status;
	size_t have = 0;
	pid_t pid;
	int n_acked = 0, n_fin = 0;

	ck_assert_int_eq(pipe(pfd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(pfd[0]);
		report_fd = pfd[1];
		crash_child();
	}
	close(pfd[1]);
	while (have < sizeof(got)) {
		ssize_t n =
		    read(pfd[0], (char *)got + have, sizeof(got) - have);

		ck_assert_int_gt(n, 0);
		have += (size_t)n;
	}
	kill(pid, SIGKILL);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status));
	close(pfd[0]);
	for (int i = 0; i < REPORTS; i++) {
		ck_assert_uint_lt(got[i].id, 1 << 16);
		if (got[i].kind == 'S') {
			acked[got[i].id] = 1;
			deadline[got[i].id] = got[i].deadline;
			n_acked++;
		} else {
			ck_assert_int_eq(got[i].kind, 'C');
			finished[got[i].id] = 1;
			n_fin++;
		}
	}
	ck_assert_int_gt(n_acked, 1000);
	ck_assert_int_gt(n_fin, 100);
	memset(&w, 0, sizeof(w));
	o = opts_for(&w);
	open_ok(&s, &o);
	for (uint64_t id = 1; id < (1 << 16); id++) {
		halo_sparse_outcome out;
		uint64_t left;
		int r;

		if (!acked[id])
			continue;
		r = halo_sparse_lookup(&s, id, &out, &left);
		ck_assert_msg(r >= 0, "acknowledged task %lu lost",
			      (unsigned long)id);
		if (finished[id]) {
			ck_assert_int_eq(r, 0);
			ck_assert_int_eq(out, HALO_SPARSE_OK);
		} else if (r == 1) {
			int64_t want = deadline[id] - wall_ns();

			/* Its remaining time, within a wide margin. */
			ck_assert_int_lt(llabs((int64_t)left - want),
					 (long long)(2 * SEC));
		}
	}
	run_for(30 * MS);
	ck_assert_int_eq(w.alerts, 0);
	ck_assert_int_eq(w.submits, 0);
	close_ok(&s);
}
END_TEST

/* --- the file --- */

static off_t file_size(void)
{
	struct stat st;

	ck_assert_int_eq(stat(path, &st), 0);
	return st.st_size;
}

/* Ten tasks with 100-byte payloads: records of 136 bytes. */
static void write_ten(halo_sparse *s, const halo_sparse_opts *o)
{
	char payload[100];

	open_ok(s, o);
	for (int i = 1; i <= 10; i++) {
		memset(payload, 'a' + i, sizeof(payload));
		ck_assert_int_eq(submit_wait(s, (uint64_t)i, 30 * SEC, payload,
					     sizeof(payload)),
				 i);
	}
	close_ok(s);
	ck_assert_int_eq(file_size(), 10 * 136);
}

START_TEST(test_torn_tail_is_cut_off_and_the_rest_kept)
{
	static struct seen w;
	halo_sparse s;
	halo_sparse_opts o;
	halo_sparse_stats st;
	static const char zeros[100];
	int fd;

	memset(&w, 0, sizeof(w));
	o = opts_for(&w);
	write_ten(&s, &o);
	ck_assert_int_eq(truncate(path, 10 * 136 - 7), 0);
	open_ok(&s, &o);
	halo_sparse_stats_get(&s, &st);
	ck_assert_uint_eq(st.torn_bytes, 136 - 7);
	ck_assert_uint_eq(st.pending, 9);
	ck_assert_int_eq(halo_sparse_lookup(&s, 10, NULL, NULL), -ENOENT);
	ck_assert_int_eq(file_size(), 9 * 136);
	/* Appends continue where the good records end. */
	ck_assert_int_eq(submit_wait(&s, 11, 30 * SEC, NULL, 0), 11);
	close_ok(&s);
	/* A zero-filled tail (the file grew, its data never came). */
	fd = open(path, O_WRONLY | O_APPEND);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, zeros, sizeof(zeros)), sizeof(zeros));
	close(fd);
	open_ok(&s, &o);
	halo_sparse_stats_get(&s, &st);
	ck_assert_uint_eq(st.torn_bytes, sizeof(zeros));
	ck_assert_uint_eq(st.pending, 10);
	close_ok(&s);
}
END_TEST

START_TEST(test_flipped_byte_in_the_middle_fails_open_naming_the_offset)
{
	static struct seen w;
	halo_sparse s;
	halo_sparse_opts o;
	char want[64];
	uint8_t b;
	int fd;

	memset(&w, 0, sizeof(w));
	o = opts_for(&w);
	write_ten(&s, &o);
	fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, &b, 1, 3 * 136 + 50), 1);
	b ^= 0x10;
	ck_assert_int_eq(pwrite(fd, &b, 1, 3 * 136 + 50), 1);
	close(fd);
	ck_assert_int_eq(halo_sparse_open(&s, &loop, &o), -EBADMSG);
	snprintf(want, sizeof(want), "offset %d", 3 * 136);
	ck_assert_msg(strstr(halo_sparse_error(&s), want), "message: %s",
		      halo_sparse_error(&s));
	ck_assert_ptr_nonnull(strstr(halo_sparse_error(&s), "checksum"));
	ck_assert_int_eq(file_size(), 10 * 136); /* nothing was cut */
}
END_TEST

/* The child: a 10-task journal, then a file size limit below one more
 * record; SIGXFSZ ignored (an rlimit and a disposition must not outlive
 * the test, hence the child). */
static void full_disk_child(void *arg)
{
	static struct seen w;
	halo_loop l;
	halo_sparse s;
	halo_sparse_opts o = opts_for(&w);
	struct rlimit old, lim;
	char payload[100] = {0};
	struct stat st;
	halo_fut *f;

	(void)arg;
	signal(SIGXFSZ, SIG_IGN);
	TU_CHILD_ASSERT(halo_loop_init(&l, NULL) == 0);
	TU_CHILD_ASSERT(halo_sparse_open(&s, &l, &o) == 0);
	for (int i = 1; i <= 10; i++) {
		TU_CHILD_ASSERT_INT_EQ(halo_sparse_submit(&s, (uint64_t)i,
							  30 * SEC, payload,
							  100, &f),
				       0);
		TU_CHILD_ASSERT_INT_EQ(halo_fut_join(f), i);
	}
	TU_CHILD_ASSERT(getrlimit(RLIMIT_FSIZE, &old) == 0);
	lim.rlim_cur = 10 * 136 + 50;
	lim.rlim_max = old.rlim_max;
	TU_CHILD_ASSERT(setrlimit(RLIMIT_FSIZE, &lim) == 0);
	TU_CHILD_ASSERT(
	    halo_sparse_submit(&s, 11, 30 * SEC, payload, 100, &f) == 0);
	TU_CHILD_ASSERT_INT_EQ(halo_fut_join(f), -EFBIG);
	TU_CHILD_ASSERT(stat(path, &st) == 0);
	TU_CHILD_ASSERT_INT_EQ(st.st_size, 10 * 136);
	TU_CHILD_ASSERT_INT_EQ(halo_sparse_lookup(&s, 11, NULL, NULL), -ENOENT);
	TU_CHILD_ASSERT(setrlimit(RLIMIT_FSIZE, &old) == 0);
	TU_CHILD_ASSERT(
	    halo_sparse_submit(&s, 12, 30 * SEC, payload, 100, &f) == 0);
	TU_CHILD_ASSERT_INT_EQ(halo_fut_join(f), 12);
	TU_CHILD_ASSERT_INT_EQ(halo_fut_join(halo_sparse_flush(&s)), 0);
	TU_CHILD_ASSERT_INT_EQ(halo_sparse_close(&s), 0);
	/* Reopened: 11 never existed, nothing half-written is left. */
	TU_CHILD_ASSERT(halo_sparse_open(&s, &l, &o) == 0);
	TU_CHILD_ASSERT_INT_EQ(halo_sparse_pending(&s), 11);
	TU_CHILD_ASSERT_INT_EQ(halo_sparse_lookup(&s, 11, NULL, NULL), -ENOENT);
	TU_CHILD_ASSERT_INT_EQ(s.stats.torn_bytes, 0);
	TU_CHILD_ASSERT_INT_EQ(halo_sparse_close(&s), 0);
	TU_CHILD_ASSERT_INT_EQ(halo_loop_close(&l), 0);
}

START_TEST(test_full_disk_fails_the_submit_with_efbig_leaving_no_half_record)
{
	tu_assert_child_ok(tu_run_in_child(full_disk_child, NULL));
}
END_TEST

START_TEST(test_compaction_keeps_live_tasks_and_shrinks_the_file)
{
	enum { N = 3000 };
	static struct seen w;
	static halo_fut *f[N];
	halo_sparse s;
	halo_sparse_opts o;
	halo_sparse_stats st;
	uint64_t left;
	off_t before;

	memset(&w, 0, sizeof(w));
	o = opts_for(&w);
	o.compact_min = 500;
	o.compact_factor = 2;
	open_ok(&s, &o);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(halo_sparse_submit(&s, (uint64_t)i, 30 * SEC,
						    "payload", 7, &f[i]),
				 0);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(halo_fut_join(f[i]), i);
	ck_assert_int_eq(halo_sparse_heartbeat(&s, 7, 50 * SEC), 0);
	before = file_size();
	for (int i = 0; i < N; i++)
		if (i % 100 != 7)
			ck_assert_int_eq(halo_sparse_complete(&s, (uint64_t)i,
							      HALO_SPARSE_OK, 0,
							      NULL),
					 0);
	RUN_UNTIL(&loop, w.done_ok >= N - N / 100);
	halo_sparse_stats_get(&s, &st);
	ck_assert_uint_ge(st.compactions, 1);
	ck_assert_uint_eq(st.compact_errors, 0);
	ck_assert_int_lt(file_size(), before);
	close_ok(&s);
	ck_assert_int_eq(access(path, F_OK), 0);
	open_ok(&s, &o);
	ck_assert_int_eq(halo_sparse_pending(&s), N / 100);
	ck_assert_int_eq(halo_sparse_lookup(&s, 7, NULL, &left), 1);
	ck_assert_uint_gt(left, 40 * SEC); /* the heartbeat's deadline */
	ck_assert_int_eq(halo_sparse_lookup(&s, 107, NULL, &left), 1);
	ck_assert_uint_le(left, 30 * SEC);
	close_ok(&s);
}
END_TEST

/* --- a store of the user's: records in memory --- */

struct mem_store {
	halo_sparse *s;
	halo_sparse_rec rec[256];
	char payload[256][16];
	size_t n, unreported;
	int fail_next; /* report the next batch failed with this */
	int posted;
};

static void mem_report(void *arg)
{
	struct mem_store *m = arg;
	size_t n = m->unreported;
	int err = m->fail_next;

	m->posted = 0;
	m->unreported = 0;
	m->fail_next = 0;
	if (err)
		m->n -= n; /* the failed records never made it */
	halo_sparse_durable(m->s, n, err);
}

static int mem_attach(void *store, halo_sparse *s)
{
	((struct mem_store *)store)->s = s;
	return 0;
}

static int mem_replay(void *store,
		      int (*fn)(void *ctx, const halo_sparse_rec *rec),
		      void *ctx, char *err, size_t errlen)
{
	struct mem_store *m = store;

	(void)err;
	(void)errlen;
	for (size_t i = 0; i < m->n; i++) {
		int r = fn(ctx, &m->rec[i]);

		if (r < 0)
			return r;
	}
	return 0;
}

static int mem_append(void *store, const halo_sparse_rec *rec)
{
	struct mem_store *m = store;

	if (m->n == 256 || rec->len > 16)
		return -ENOSPC;
	m->rec[m->n] = *rec;
	memcpy(m->payload[m->n], rec->payload ? rec->payload : "", rec->len);
	m->rec[m->n].payload = m->payload[m->n];
	m->n++;
	m->unreported++;
	if (!m->posted && halo_loop_post(&loop, mem_report, m) == 0)
		m->posted = 1;
	return 0;
}

static size_t mem_inflight(void *store)
{
	return ((struct mem_store *)store)->unreported;
}

static const halo_sparse_store_ops mem_ops = {
    .attach = mem_attach,
    .replay = mem_replay,
    .append = mem_append,
    .inflight = mem_inflight,
};

START_TEST(test_a_user_store_gets_the_records_and_replays_them)
{
	static struct mem_store m;
	static struct seen w;
	halo_sparse s;
	halo_sparse_opts o;
	halo_fut *f, *d;

	memset(&m, 0, sizeof(m));
	memset(&w, 0, sizeof(w));
	o = opts_for(&w);
	o.path = NULL;
	o.store_ops = &mem_ops;
	o.store = &m;
	open_ok(&s, &o);
	ck_assert_int_eq(submit_wait(&s, 1, 30 * SEC, "one", 3), 1);
	ck_assert_int_eq(submit_wait(&s, 2, 30 * SEC, "two", 3), 2);
	ck_assert_int_eq(submit_wait(&s, 3, 20 * MS, "three", 5), 3);
	ck_assert_uint_eq(m.n, 3);
	ck_assert_int_eq(m.rec[1].type, HALO_SPARSE_REC_SUBMIT);
	ck_assert_int_eq(memcmp(m.rec[1].payload, "two", 3), 0);
	/* The store fails a submit: the task is gone. */
	ck_assert_int_eq(halo_sparse_submit(&s, 4, SEC, NULL, 0, &f), 0);
	m.fail_next = -EIO;
	ck_assert_int_eq(halo_fut_join(f), -EIO);
	ck_assert_int_eq(halo_sparse_lookup(&s, 4, NULL, NULL), -ENOENT);
	/* ... and an outcome: the task is pending again. */
	ck_assert_int_eq(halo_sparse_complete(&s, 1, HALO_SPARSE_OK, 0, &d), 0);
	m.fail_next = -EIO;
	ck_assert_int_eq(halo_fut_join(d), -EIO);
	ck_assert_int_eq(halo_sparse_lookup(&s, 1, NULL, NULL), 1);
	ck_assert_int_eq(w.done_ok, 0);
	ck_assert_int_eq(halo_sparse_complete(&s, 2, HALO_SPARSE_OK, 0, &d), 0);
	ck_assert_int_eq(halo_fut_join(d), 0);
	RUN_UNTIL(&loop, w.alerts);
	close_ok(&s);
	ck_assert_uint_eq(m.n, 5); /* 3 submits, 2's outcome, 3's timeout */
	memset(&w, 0, sizeof(w));
	open_ok(&s, &o);
	ck_assert_int_eq(halo_sparse_pending(&s), 1);
	ck_assert_int_eq(halo_sparse_lookup(&s, 1, NULL, NULL), 1);
	ck_assert_int_eq(halo_sparse_lookup(&s, 2, NULL, NULL), 0);
	ck_assert_int_eq(halo_sparse_lookup(&s, 3, NULL, NULL), 0);
	run_for(30 * MS);
	ck_assert_int_eq(w.alerts, 0);
	close_ok(&s);
}
END_TEST

/* --- the status-poller variant --- */

struct remote {
	uint8_t polls[600];
	int calls;
	size_t max_n;
};

/* id % 3 == 0: done OK on its second poll; 1: failed on its first; 2:
 * never finishes. */
static int remote_poll(halo_poller *p, const uint64_t *ids, size_t n,
		       halo_poller_report *out, void *arg)
{
	struct remote *r = arg;

	(void)p;
	r->calls++;
	if (n > r->max_n)
		r->max_n = n;
	for (size_t i = 0; i < n; i++) {
		uint64_t id = ids[i];

		ck_assert_uint_lt(id, 600);
		r->polls[id]++;
		if (id % 3 == 0 && r->polls[id] >= 2) {
			out[i].done = 1;
			out[i].result = (int64_t)id;
		} else if (id % 3 == 1) {
			out[i].done = -1;
			out[i].result = -EPROTO;
		}
	}
	return 0;
}

START_TEST(test_status_poller_feeds_outcomes_and_rotates_every_task)
{
	enum { N = 600 };
	static struct seen w;
	static struct remote rm;
	static halo_fut *f[N];
	halo_sparse s;
	halo_sparse_opts o;
	halo_sparse_stats st;

	memset(&w, 0, sizeof(w));
	memset(&rm, 0, sizeof(rm));
	o = opts_for(&w);
	o.poll.fn = remote_poll;
	o.poll.arg = &rm;
	o.poll.poller.window = 20;
	o.poll.poller.interval_ns = 200000;
	open_ok(&s, &o);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(halo_sparse_submit(&s, (uint64_t)i, 400 * MS,
						    NULL, 0, &f[i]),
				 0);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(halo_fut_join(f[i]), i);
	RUN_UNTIL(&loop,
		  w.alerts >= N / 3 && w.done_ok + w.done_failed >= 2 * N / 3);
	ck_assert_int_eq(w.done_ok, N / 3);
	ck_assert_int_eq(w.done_failed, N / 3);
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(w.alerted[i], i % 3 == 2);
		ck_assert_uint_ge(rm.polls[i], i % 3 == 1 ? 1 : 2);
	}
	ck_assert_uint_le(rm.max_n, 20);
	halo_sparse_stats_get(&s, &st);
	ck_assert_uint_gt(st.polls, N);
	close_ok(&s);
}
END_TEST

/* The asynchronous poll: answers from a posted callback, even ids done. */
struct async_remote {
	halo_sparse *s;
	const uint64_t *ids;
	halo_poller_report *out;
	size_t n;
	int calls, outstanding;
};

static void async_answer(void *arg)
{
	struct async_remote *r = arg;

	r->outstanding = 0;
	for (size_t i = 0; i < r->n; i++)
		if (r->ids[i] % 2 == 0) {
			r->out[i].done = 1;
			r->out[i].result = (int64_t)r->ids[i];
		}
	ck_assert_int_eq(halo_sparse_polled(r->s, 0), 0);
}

static int async_poll(halo_poller *p, const uint64_t *ids, size_t n,
		      halo_poller_report *out, void *arg)
{
	struct async_remote *r = arg;

	(void)p;
	r->calls++;
	r->ids = ids;
	r->out = out;
	r->n = n;
	r->outstanding = 1;
	ck_assert_int_eq(halo_loop_post(&loop, async_answer, r), 0);
	return HALO_POLLER_ASYNC;
}

START_TEST(test_status_poller_with_an_asynchronous_poll)
{
	enum { N = 60 };
	static struct seen w;
	static struct async_remote rm;
	static halo_fut *f[N];
	halo_sparse s;
	halo_sparse_opts o;

	memset(&w, 0, sizeof(w));
	memset(&rm, 0, sizeof(rm));
	rm.s = &s;
	o = opts_for(&w);
	o.poll.fn = async_poll;
	o.poll.arg = &rm;
	o.poll.poller.window = 8;
	o.poll.poller.interval_ns = 100000;
	open_ok(&s, &o);
	ck_assert_int_eq(halo_sparse_polled(&s, 0), -EINVAL);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(halo_sparse_submit(&s, (uint64_t)i, 200 * MS,
						    NULL, 0, &f[i]),
				 0);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(halo_fut_join(f[i]), i);
	RUN_UNTIL(&loop, w.alerts >= N / 2 && w.done_ok >= N / 2);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(w.alerted[i], i % 2);
	ck_assert_int_gt(rm.calls, N / 8);
	/* No answer may come after close. */
	RUN_UNTIL(&loop, !rm.outstanding && !halo_sparse_inflight(&s));
	close_ok(&s);
}
END_TEST

Suite *sparse_suite(void)
{
	Suite *s = suite_create("sparse");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(60));
	tcase_add_test(tc, test_crc32c_matches_the_castagnoli_check_value);
	tcase_add_test(tc,
		       test_bad_input_is_einval_and_duplicate_submit_eexist);
	tcase_add_test(tc, test_thousand_tasks_half_by_events_half_by_timeouts);
	tcase_add_test(tc,
		       test_duplicate_and_late_events_are_counted_and_reported);
	tcase_add_test(tc, test_heartbeat_extends_the_deadline_across_reopen);
	tcase_add_test(
	    tc, test_reopen_rearms_pending_fires_overdue_and_forgets_nothing);
	tcase_add_test(tc,
		       test_sigkill_mid_stream_loses_no_acknowledged_submit);
	tcase_add_test(tc, test_torn_tail_is_cut_off_and_the_rest_kept);
	tcase_add_test(
	    tc, test_flipped_byte_in_the_middle_fails_open_naming_the_offset);
	tcase_add_test(
	    tc,
	    test_full_disk_fails_the_submit_with_efbig_leaving_no_half_record);
	tcase_add_test(tc,
		       test_compaction_keeps_live_tasks_and_shrinks_the_file);
	tcase_add_test(tc, test_a_user_store_gets_the_records_and_replays_them);
	tcase_add_test(
	    tc, test_status_poller_feeds_outcomes_and_rotates_every_task);
	tcase_add_test(tc, test_status_poller_with_an_asynchronous_poll);
	suite_add_tcase(s, tc);
	return s;
}
