/* The loop: setup and its fallbacks, the tick's one enter, SQ and CQ
 * pressure, prepare hooks, pools, and a clear error without io_uring. */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/util.h"

TU_LOOP_FIXTURE(loop)

static void wait_all(halo_fut **f, int n)
{
	for (int i = 0; i < n; i++) {
		ck_assert_int_eq(halo_fut_wait(f[i]), 0);
		halo_fut_release(f[i]);
	}
}

START_TEST(test_ring_uses_single_issuer_defer_taskrun)
{
	halo_stats st;

	halo_loop_stats(&loop, &st);
	ck_assert(st.ring_flags & IORING_SETUP_SINGLE_ISSUER);
	ck_assert(st.ring_flags & IORING_SETUP_DEFER_TASKRUN);
	ck_assert(st.ring_flags & IORING_SETUP_SUBMIT_ALL);
}
END_TEST

START_TEST(test_fallback_modes_still_run_io)
{
	static const unsigned modes[] = {
		HALO_SETUP_NO_DEFER_TASKRUN,
		HALO_SETUP_NO_DEFER_TASKRUN | HALO_SETUP_NO_COOP_TASKRUN,
	};
	for (unsigned m = 0; m < 2; m++) {
		halo_loop l;
		halo_loop_opts o = {.setup_flags = modes[m]};
		halo_fut *f[16];
		halo_stats st;

		tu_loop_init(&l, &o);
		halo_loop_stats(&l, &st);
		ck_assert(!(st.ring_flags & IORING_SETUP_DEFER_TASKRUN));
		ck_assert_int_eq(!!(st.ring_flags & IORING_SETUP_COOP_TASKRUN),
				 m == 0);
		for (int i = 0; i < 16; i++)
			f[i] = halo_nop(&l);
		wait_all(f, 16);
		tu_loop_close(&l);
	}
}
END_TEST

START_TEST(test_one_enter_for_a_tick_of_100_ops)
{
	halo_fut *f[100];
	halo_stats a, b;

	halo_loop_stats(&loop, &a);
	for (int i = 0; i < 100; i++)
		f[i] = halo_nop(&loop);
	ck_assert_int_ge(halo_loop_run_once(&loop), 0);
	halo_loop_stats(&loop, &b);
	ck_assert_uint_eq(b.enters - a.enters, 1);
	ck_assert_uint_eq(b.sqes_submitted - a.sqes_submitted, 100);
	ck_assert_uint_eq(b.cqes_reaped - a.cqes_reaped, 100);
	for (int i = 0; i < 100; i++)
		ck_assert(halo_fut_is_done(f[i]));
	wait_all(f, 100);
}
END_TEST

START_TEST(test_tiny_cq_with_10000_nops_loses_nothing)
{
	enum { N = 10000 };
	static halo_fut *f[N];
	halo_loop l;
	halo_loop_opts o = {.sq_entries = 16, .max_inflight = 16};
	halo_stats st;

	tu_loop_init(&l, &o);
	for (int i = 0; i < N; i++) {
		f[i] = halo_nop(&l);
		ck_assert_ptr_nonnull(f[i]);
	}
	ck_assert_int_eq(halo_loop_run(&l), 0);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(halo_fut_status(f[i]), HALO_FUT_OK);
	halo_loop_stats(&l, &st);
	ck_assert_uint_eq(st.cqes_reaped, N);
	ck_assert_uint_eq(st.sqes_submitted, N);
	ck_assert_uint_gt(st.sq_flushes_early, 0);
	ck_assert_uint_gt(st.cq_overflows, 0); /* 32-entry CQ, 10,000 CQEs */
	for (int i = 0; i < N; i++)
		halo_fut_release(f[i]);
	tu_loop_close(&l);
}
END_TEST

struct hook_state {
	int calls;
	halo_fut *started;
};

static int start_nop_hook(halo_loop *l, void *arg)
{
	struct hook_state *hs = arg;

	if (hs->calls++ == 0)
		hs->started = halo_nop(l);
	return 0;
}

START_TEST(test_prepare_hook_sqes_ride_the_same_enter)
{
	struct hook_state hs = {0};
	halo_hook h;
	halo_fut *n = halo_nop(&loop);
	halo_stats a, b;

	halo_loop_prepare_add(&loop, &h, start_nop_hook, &hs);
	halo_loop_stats(&loop, &a);
	halo_loop_run_once(&loop);
	halo_loop_stats(&loop, &b);
	ck_assert_int_eq(hs.calls, 1);
	ck_assert_uint_eq(b.enters - a.enters, 1);
	ck_assert_uint_eq(b.sqes_submitted - a.sqes_submitted, 2);
	ck_assert(halo_fut_is_done(hs.started));
	halo_loop_prepare_remove(&loop, &h);
	halo_loop_run_once(&loop);
	ck_assert_int_eq(hs.calls, 1);
	halo_fut_release(hs.started);
	halo_fut_release(n);
}
END_TEST

struct pair_hooks {
	halo_hook a, b;
	int a_calls, b_calls;
};

static int removes_next_hook(halo_loop *l, void *arg)
{
	struct pair_hooks *p = arg;

	p->a_calls++;
	halo_loop_prepare_remove(l, &p->b);
	/* What a user who frees the removed hook leaves behind. */
	memset(&p->b, 0, sizeof(p->b));
	return 0;
}

static int counts_calls(halo_loop *l, void *arg)
{
	(void)l;
	((struct pair_hooks *)arg)->b_calls++;
	return 0;
}

/* A hook that removes the hook after it, in the same pass: the removed
 * one does not run, not even this once, and the loop never follows its
 * (here cleared, as if freed) links. */
START_TEST(test_prepare_hook_removing_the_next_hook_stops_it_at_once)
{
	struct pair_hooks p = {0};

	halo_loop_prepare_add(&loop, &p.a, removes_next_hook, &p);
	halo_loop_prepare_add(&loop, &p.b, counts_calls, &p);
	ck_assert_int_ge(halo_loop_run_once(&loop), 0);
	ck_assert_int_eq(p.a_calls, 1);
	ck_assert_int_eq(p.b_calls, 0);
	ck_assert_int_ge(halo_loop_run_once(&loop), 0);
	ck_assert_int_eq(p.a_calls, 2);
	ck_assert_int_eq(p.b_calls, 0);
	halo_loop_prepare_remove(&loop, &p.a);
}
END_TEST

static void write_byte(halo_fut *f, void *arg)
{
	(void)f;
	ck_assert_int_eq(write(*(int *)arg, "x", 1), 1);
}

/* Wait for a read that a timer makes possible after ms; returns the
 * number of io_uring_enter calls the wait took. */
static uint64_t enters_for_late_read(uint64_t busy_poll_ns, unsigned ms)
{
	halo_loop l;
	halo_loop_opts o = {.busy_poll_ns = busy_poll_ns};
	int p[2];
	char c;
	halo_fut *r, *t;
	halo_stats a, b;

	tu_loop_init(&l, &o);
	ck_assert_int_eq(pipe(p), 0);
	r = halo_read(&l, p[0], &c, 1, -1);
	t = halo_timer_after(&l, (uint64_t)ms * 1000000ull);
	halo_fut_on_done(t, write_byte, &p[1]);
	halo_loop_stats(&l, &a);
	ck_assert_int_eq(halo_fut_wait(r), 1);
	halo_loop_stats(&l, &b);
	halo_fut_release(r);
	halo_fut_release(t);
	tu_loop_close(&l);
	close(p[0]);
	close(p[1]);
	return b.enters - a.enters;
}

START_TEST(test_busy_poll_spins_for_its_window_then_sleeps)
{
	/* Without busy polling the wait sleeps in the kernel: a few enters. */
	uint64_t sleeping = enters_for_late_read(0, 60);
	/* With a 10 ms window it spins (enters without waiting) for about
	 * 10 ms after the read was submitted, then sleeps until the timer.
	 * 10 ms, not less: on a loaded 2-core machine the thread can lose
	 * its CPU for a few ms, and a 2 ms window then saw 3 enters. */
	uint64_t polling = enters_for_late_read(10000000, 60);

	ck_assert_uint_lt(sleeping, 10);
	ck_assert_uint_gt(polling, 20);
	/* Spinning through all 60 ms would take ~6x the enters of 10 ms. */
	ck_assert_uint_lt(polling, enters_for_late_read(60000000, 60) / 2);
}
END_TEST

static int posted;
static void post_fn(void *arg)
{
	posted += *(int *)arg;
}

START_TEST(test_post_runs_later_not_inline)
{
	int three = 3;

	posted = 0;
	ck_assert_int_eq(halo_loop_post(&loop, post_fn, &three), 0);
	ck_assert_int_eq(posted, 0);
	ck_assert_int_eq(halo_loop_run(&loop), 0);
	ck_assert_int_eq(posted, 3);
}
END_TEST

struct requeue {
	halo_loop *loop;
	halo_post post;
	int runs;
};

static void requeue_fn(void *arg)
{
	struct requeue *r = arg;

	/* Queued again from its own fn: allowed, and runs on a later pass. */
	if (++r->runs < 3)
		ck_assert_int_eq(halo_loop_post_embedded(r->loop, &r->post,
							 requeue_fn, r),
				 0);
}

START_TEST(test_embedded_post_needs_no_memory_and_runs_once_per_queueing)
{
	struct requeue r = {.loop = &loop};
	halo_stats before, after;

	halo_post_init(&r.post);
	halo_loop_stats(&loop, &before);
	ck_assert_int_eq(halo_loop_post_embedded(&loop, &r.post, requeue_fn,
						 &r),
			 0);
	ck_assert(halo_post_is_queued(&r.post));
	/* A second post of the same object while queued is refused. */
	ck_assert_int_eq(halo_loop_post_embedded(&loop, &r.post, requeue_fn,
						 &r),
			 -EBUSY);
	ck_assert_int_eq(r.runs, 0);
	ck_assert_int_eq(halo_loop_run(&loop), 0);
	ck_assert_int_eq(r.runs, 3);
	ck_assert(!halo_post_is_queued(&r.post));
	halo_loop_stats(&loop, &after);
	ck_assert_uint_eq(after.pool_allocs, before.pool_allocs);
}
END_TEST

static void stop_fn(void *arg)
{
	halo_loop_stop(arg);
}

START_TEST(test_stop_returns_from_run)
{
	halo_fut *t = halo_timer_after(&loop, 60ull * 1000000000ull);

	halo_loop_post(&loop, stop_fn, &loop);
	ck_assert_int_eq(halo_loop_run(&loop), 0);
	ck_assert(!halo_fut_is_done(t));
	halo_fut_cancel(t);
	halo_fut_release(t);
}
END_TEST

START_TEST(test_no_heap_allocation_per_op_after_warmup)
{
	halo_fut *f[64];
	halo_stats a, b;

	for (int i = 0; i < 64; i++)
		f[i] = halo_nop(&loop);
	wait_all(f, 64);
	halo_loop_stats(&loop, &a);
	for (int round = 0; round < 1000; round++) {
		for (int i = 0; i < 64; i++)
			f[i] = halo_nop(&loop);
		wait_all(f, 64);
	}
	halo_loop_run(&loop); /* the last wake-up still holds a reference */
	halo_loop_stats(&loop, &b);
	ck_assert_uint_eq(b.pool_allocs, a.pool_allocs);
	ck_assert_uint_eq(b.live_futures, 0);
}
END_TEST

START_TEST(test_pool_memory_sizes_and_alignment)
{
	void *p[6];
	size_t sizes[6] = {1, 64, 100, 1000, 2048, 100000};

	for (int i = 0; i < 6; i++) {
		p[i] = halo_mem_alloc(&loop, sizes[i]);
		ck_assert_ptr_nonnull(p[i]);
		ck_assert_uint_eq((uintptr_t)p[i] % 16, 0);
		memset(p[i], 0xab, sizes[i]);
	}
	for (int i = 0; i < 6; i++)
		halo_mem_free(&loop, p[i], sizes[i]);
	ck_assert_ptr_eq(halo_mem_alloc(&loop, 100), p[2]); /* LIFO reuse */
	halo_mem_free(&loop, p[2], 100);
}
END_TEST

START_TEST(test_invalid_options_are_einval)
{
	halo_loop l;
	halo_loop_opts o = {.fiber_stack_size = 100};

	ck_assert_int_eq(halo_loop_init(&l, &o), -EINVAL);
}
END_TEST

START_TEST(test_features_are_named_and_can_be_switched_off)
{
	halo_loop l;
	halo_loop_opts o = {.features_off = HALO_FEAT_ALL};
	unsigned all = 0;

	for (unsigned b = 1; b; b <<= 1) {
		const char *name = halo_feature_name(b);

		ck_assert_int_eq(name != NULL, (b & HALO_FEAT_ALL) != 0);
		if (name)
			all |= b;
	}
	ck_assert_uint_eq(all, HALO_FEAT_ALL);
	ck_assert_str_eq(halo_feature_name(HALO_FEAT_RECV_BUNDLE),
			 "recv_bundle");

	ck_assert_int_eq(halo_loop_init(&l, NULL), 0);
	ck_assert_uint_eq(halo_loop_features(&l) & ~HALO_FEAT_ALL, 0);
	ck_assert_int_eq(halo_loop_close(&l), 0);

	ck_assert_int_eq(halo_loop_init(&l, &o), 0);
	ck_assert_uint_eq(halo_loop_features(&l), 0);
	ck_assert_int_eq(halo_loop_close(&l), 0);

	setenv("HALO_FEATURES_OFF", "nonsense,all", 1);
	ck_assert_int_eq(halo_loop_init(&l, NULL), 0);
	unsetenv("HALO_FEATURES_OFF");
	ck_assert_uint_eq(halo_loop_features(&l), 0);
	ck_assert_int_eq(halo_loop_close(&l), 0);
}
END_TEST

/* A seccomp filter that makes io_uring_setup fail with err, as container
 * runtimes' default profiles do with EPERM. For a child: it lasts as long
 * as the process. */
static void deny_io_uring(int err)
{
	struct sock_filter f[] = {
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
		     offsetof(struct seccomp_data, nr)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
	    BPF_STMT(BPF_RET | BPF_K,
		     SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = 4, .filter = f};

	TU_CHILD_ASSERT(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
	TU_CHILD_ASSERT(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0);
}

#define IO_URING_DISABLED "/proc/sys/kernel/io_uring_disabled"

/* Make this process read value from kernel.io_uring_disabled: a file bind
 * mounted over the sysctl in a mount namespace of its own (a user namespace
 * too when not root). Returns 0, or -errno where that is not possible. */
static int fake_io_uring_disabled(int value)
{
	char path[] = "/tmp/halo-sysctl-XXXXXX";
	int fd = mkstemp(path), r = -1;

	if (fd < 0)
		return -errno;
	if (dprintf(fd, "%d\n", value) > 0 &&
	    (unshare(CLONE_NEWNS) == 0 ||
	     unshare(CLONE_NEWUSER | CLONE_NEWNS) == 0) &&
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0)
		r = mount(path, IO_URING_DISABLED, NULL, MS_BIND, NULL);
	r = r < 0 ? -errno : 0;
	close(fd);
	unlink(path);
	return r;
}

/* What halo_loop_init() said in a child whose io_uring_setup fails with err,
 * kernel.io_uring_disabled reading as disabled (-1: as it is). */
struct init_failure {
	int err, disabled;
	int faked; /* 0, or why the sysctl could not be faked */
	int r;
	char error[sizeof(((halo_loop *)0)->error)];
};

static void init_failure_child(void *arg)
{
	struct init_failure *x = arg;
	halo_loop l;

	if (x->disabled >= 0)
		x->faked = fake_io_uring_disabled(x->disabled);
	deny_io_uring(x->err);
	x->r = halo_loop_init(&l, NULL);
	memcpy(x->error, halo_loop_error(&l), sizeof(x->error));
}

static int real_io_uring_disabled(void)
{
	FILE *f = fopen(IO_URING_DISABLED, "r");
	int v = 0; /* absent before Linux 6.6: io_uring allowed */

	if (f && fscanf(f, "%d", &v) != 1)
		v = -1;
	if (f)
		fclose(f);
	return v;
}

static int ends_with(const char *s, const char *tail)
{
	size_t n = strlen(s), t = strlen(tail);

	return n >= t && strcmp(s + n - t, tail) == 0;
}

/* Each explanation halo_loop_init() can give when io_uring_setup fails,
 * triggered for real (the errno by a seccomp filter, the sysctl by a bind
 * mount), and read to its last word: none may be cut short. */
START_TEST(test_init_without_io_uring_names_the_cause)
{
	static const struct {
		int err, disabled;
		const char *cause, *tail;
	} cases[] = {
	    {EPERM, 0, "seccomp profile",
	     "io_uring_setup, io_uring_enter and io_uring_register"},
	    {EPERM, 1, "kernel.io_uring_disabled sysctl (=1)",
	     "this process is not in kernel.io_uring_group"},
	    {EPERM, 2, "io_uring is disabled by the",
	     "kernel.io_uring_disabled sysctl (=2)"},
	    {ENOSYS, -1, "CONFIG_IO_URING",
	     "a seccomp filter hides the system call"},
	    {ENOMEM, -1, "(ulimit -l)", "or shrink sq_entries/max_inflight"},
	    {EMFILE, -1, "out of", "file descriptors for the ring"},
	    {ENFILE, -1, "out of", "file descriptors for the ring"},
	    {EIO, -1, "io_uring_setup failed: ", "Input/output error"},
	};
	struct init_failure *x;
	int real = real_io_uring_disabled();

	x = mmap(NULL, sizeof(*x), PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(x, MAP_FAILED);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(x, 0, sizeof(*x));
		x->err = cases[i].err;
		x->disabled = cases[i].disabled;
		tu_assert_child_ok(tu_run_in_child(init_failure_child, x));
		if (x->faked && cases[i].disabled != real) {
			printf("loop: kernel.io_uring_disabled=%d not tested: "
			       "cannot fake the sysctl here (%s)\n",
			       cases[i].disabled, strerror(-x->faked));
			continue;
		}
		ck_assert_int_eq(x->r, -cases[i].err);
		ck_assert_msg(strstr(x->error, cases[i].cause) &&
				  ends_with(x->error, cases[i].tail),
			      "errno %d, io_uring_disabled %d: \"%s\"",
			      cases[i].err, cases[i].disabled, x->error);
	}
	munmap(x, sizeof(*x));
}
END_TEST

/* Cancel n pipe reads the kernel holds; returns the CQEs that took. */
static uint64_t cancel_cqes(halo_loop *l, int n)
{
	halo_fut *f[8];
	halo_stats a, b;
	char buf[8][4];
	int p[2];

	ck_assert_int_eq(pipe(p), 0);
	for (int i = 0; i < n; i++)
		f[i] = halo_read(l, p[0], buf[i], 4, -1);
	ck_assert_int_ge(halo_loop_run_nowait(l), 0);
	ck_assert_uint_eq(tu_inflight(l), (uint64_t)n);
	halo_loop_stats(l, &a);
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(halo_fut_cancel(f[i]), 0);
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(halo_fut_join(f[i]), -ECANCELED);
	halo_loop_stats(l, &b);
	close(p[0]);
	close(p[1]);
	return b.cqes_reaped - a.cqes_reaped;
}

START_TEST(test_cancels_post_no_cqe_with_cqe_skip_and_one_without)
{
	halo_loop l;
	halo_loop_opts o = {.features_off = HALO_FEAT_CQE_SKIP};

	if (halo_loop_features(&loop) & HALO_FEAT_CQE_SKIP)
		ck_assert_uint_eq(cancel_cqes(&loop, 8), 8);
	else
		ck_assert_uint_eq(cancel_cqes(&loop, 8), 16);
	tu_loop_init(&l, &o);
	ck_assert_uint_eq(halo_loop_features(&l) & HALO_FEAT_CQE_SKIP, 0);
	ck_assert_uint_eq(cancel_cqes(&l, 8), 16);
	tu_loop_close(&l);
}
END_TEST

/* Close cancels what the kernel holds with cancel-any SQEs whose success
 * posts no CQE (where the kernel can): it must still see every op end,
 * without waiting out its 10 s bound. */
START_TEST(test_close_drains_reads_with_skipped_cancel_cqes)
{
	halo_loop l;
	char buf[4][4];
	int p[2];
	uint64_t t0;

	ck_assert_int_eq(pipe(p), 0);
	tu_loop_init(&l, NULL);
	for (int i = 0; i < 4; i++)
		halo_fut_detach(halo_read(&l, p[0], buf[i], 4, -1));
	ck_assert_int_ge(halo_loop_run_nowait(&l), 0);
	ck_assert_uint_eq(tu_inflight(&l), 4);
	t0 = halo_now_ns();
	tu_loop_close(&l);
	ck_assert_uint_lt(halo_now_ns() - t0, 5000000000ull);
	close(p[0]);
	close(p[1]);
}
END_TEST

struct now_probe {
	uint64_t a, b;
};

static void read_now_twice(halo_fut *f, void *arg)
{
	struct now_probe *p = arg;
	halo_loop *l = halo_fut_loop(f);
	uint64_t spin;

	halo_fut_release(f);
	p->a = halo_loop_now(l);
	spin = halo_now_ns() + 2000000ull;
	while (halo_now_ns() < spin)
		;
	p->b = halo_loop_now(l);
}

/* halo_loop_now(): one value within a phase of a tick, however long the
 * phase runs, never ahead of the clock, and read again in the next tick. */
START_TEST(test_loop_now_is_read_once_per_phase)
{
	struct now_probe p = {0};
	halo_loop l;
	uint64_t t0, c;

	tu_loop_init(&l, NULL);
	t0 = halo_now_ns();
	halo_fut_on_done(halo_timer_after(&l, 1000000ull), read_now_twice, &p);
	while (!p.a)
		ck_assert_int_ge(halo_loop_run_once(&l), 0);
	ck_assert_uint_eq(p.a, p.b);
	ck_assert_uint_ge(p.a, t0 + 1000000ull);
	ck_assert_uint_le(p.b, halo_now_ns());
	halo_loop_run_nowait(&l);
	c = halo_loop_now(&l);
	ck_assert_uint_ge(c, p.b + 2000000ull);
	ck_assert_uint_le(c, halo_now_ns());
	tu_loop_close(&l);
}
END_TEST

/* halo_loop_event_now(): read once after a reap that found CQEs, no
 * earlier than the completions, and then the same however long user code
 * runs, until CQEs are reaped again; a tick that reaps nothing keeps it. */
START_TEST(test_loop_event_now_holds_from_a_reap_to_the_next)
{
	halo_loop l;
	halo_fut *f;
	uint64_t t0, e, spin;

	tu_loop_init(&l, NULL);
	t0 = halo_now_ns();
	f = halo_nop(&l);
	ck_assert_int_eq(halo_fut_join(f), 0);
	e = halo_loop_event_now(&l);
	ck_assert_uint_ge(e, t0);
	ck_assert_uint_le(e, halo_now_ns());
	spin = halo_now_ns() + 3000000ull;
	while (halo_now_ns() < spin)
		;
	ck_assert_uint_eq(halo_loop_event_now(&l), e);
	halo_loop_run_nowait(&l); /* nothing to reap */
	ck_assert_uint_eq(halo_loop_event_now(&l), e);
	ck_assert_int_eq(halo_fut_join(halo_nop(&l)), 0);
	ck_assert_uint_ge(halo_loop_event_now(&l), e + 3000000ull);
	tu_loop_close(&l);
}
END_TEST

static void nops_through_small_sq(const halo_loop_opts *o, int want_noarr)
{
	halo_loop l;
	halo_stats st;
	halo_fut *f[5];

	tu_loop_init(&l, o);
	halo_loop_stats(&l, &st);
	ck_assert_int_eq((st.ring_flags & (1u << 16)) != 0, want_noarr);
	ck_assert_int_eq((halo_loop_features(&l) & HALO_FEAT_NO_SQARRAY) != 0,
			 want_noarr);
	/* 8 SQ entries, batches of 5: the tail wraps many times. */
	for (int round = 0; round < 400; round++) {
		for (int i = 0; i < 5; i++)
			f[i] = halo_nop(&l);
		wait_all(f, 5);
	}
	halo_loop_stats(&l, &st);
	ck_assert_uint_eq(st.cqes_reaped, 2000);
	tu_loop_close(&l);
}

START_TEST(test_ring_without_sq_array_runs_and_wraps)
{
	halo_loop_opts on = {.sq_entries = 8};
	halo_loop_opts off = {.sq_entries = 8,
			      .features_off = HALO_FEAT_NO_SQARRAY};

	nops_through_small_sq(&on, (halo_loop_features(&loop) &
				    HALO_FEAT_NO_SQARRAY) != 0);
	nops_through_small_sq(&off, 0);
}
END_TEST

/* Two pipe reads; a child writes to the first at once and to the second
 * 500 ms later (a wide margin: the test process may wait for a core).
 * Returns the CQEs the first tick that reaped any took. */
static uint64_t first_tick_cqes(const halo_loop_opts *o)
{
	halo_loop l;
	halo_fut *f[2];
	halo_stats a, b;
	char buf[2][4];
	int p[2][2];
	pid_t pid;

	tu_loop_init(&l, o);
	ck_assert_int_eq(pipe(p[0]), 0);
	ck_assert_int_eq(pipe(p[1]), 0);
	f[0] = halo_read(&l, p[0][0], buf[0], 4, -1);
	f[1] = halo_read(&l, p[1][0], buf[1], 4, -1);
	ck_assert_int_ge(halo_loop_run_nowait(&l), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (write(p[0][1], "a", 1) != 1)
			_exit(1);
		usleep(500000);
		_exit(write(p[1][1], "b", 1) == 1 ? 0 : 1);
	}
	halo_loop_stats(&l, &a);
	do {
		ck_assert_int_ge(halo_loop_run_once(&l), 0);
		halo_loop_stats(&l, &b);
	} while (b.cqes_reaped == a.cqes_reaped);
	ck_assert_int_eq(halo_fut_join(f[0]), 1);
	ck_assert_int_eq(halo_fut_join(f[1]), 1);
	waitpid(pid, NULL, 0);
	for (int i = 0; i < 2; i++) {
		close(p[i][0]);
		close(p[i][1]);
	}
	tu_loop_close(&l);
	return b.cqes_reaped - a.cqes_reaped;
}

START_TEST(test_min_wait_batches_completions_of_one_tick)
{
	halo_loop_opts batched = {.min_wait_us = 2000000};
	halo_loop_opts off = {.min_wait_us = 2000000,
			      .features_off = HALO_FEAT_MIN_WAIT};

	if (halo_loop_features(&loop) & HALO_FEAT_MIN_WAIT)
		ck_assert_uint_eq(first_tick_cqes(&batched), 2);
	else
		ck_assert_uint_eq(first_tick_cqes(&batched), 1);
	ck_assert_uint_eq(first_tick_cqes(&off), 1);
	ck_assert_uint_eq(first_tick_cqes(NULL), 1);
}
END_TEST

Suite *loop_suite(void)
{
	Suite *s = suite_create("loop");
	TCase *tc = tcase_create("loop");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(20));
	tcase_add_test(tc, test_ring_uses_single_issuer_defer_taskrun);
	tcase_add_test(tc, test_one_enter_for_a_tick_of_100_ops);
	tcase_add_test(tc, test_prepare_hook_sqes_ride_the_same_enter);
	tcase_add_test(tc, test_prepare_hook_removing_the_next_hook_stops_it_at_once);
	tcase_add_test(tc, test_post_runs_later_not_inline);
	tcase_add_test(tc,
		       test_embedded_post_needs_no_memory_and_runs_once_per_queueing);
	tcase_add_test(tc, test_stop_returns_from_run);
	tcase_add_test(tc, test_no_heap_allocation_per_op_after_warmup);
	tcase_add_test(tc, test_pool_memory_sizes_and_alignment);
	tcase_add_test(tc, test_cancels_post_no_cqe_with_cqe_skip_and_one_without);
	tcase_add_test(tc, test_close_drains_reads_with_skipped_cancel_cqes);
	tcase_add_test(tc, test_ring_without_sq_array_runs_and_wraps);
	tcase_add_test(tc, test_min_wait_batches_completions_of_one_tick);
	suite_add_tcase(s, tc);

	tc = tcase_create("setup");
	tcase_set_timeout(tc, tu_timeout(20));
	tcase_add_test(tc, test_fallback_modes_still_run_io);
	tcase_add_test(tc, test_busy_poll_spins_for_its_window_then_sleeps);
	tcase_add_test(tc, test_tiny_cq_with_10000_nops_loses_nothing);
	tcase_add_test(tc, test_invalid_options_are_einval);
	tcase_add_test(tc, test_loop_now_is_read_once_per_phase);
	tcase_add_test(tc, test_loop_event_now_holds_from_a_reap_to_the_next);
	tcase_add_test(tc, test_features_are_named_and_can_be_switched_off);
	tcase_add_test(tc, test_init_without_io_uring_names_the_cause);
	suite_add_tcase(s, tc);
	return s;
}
