/* Sweep program: the loop, futures, timers, fibers and halo_wait. */
#include <errno.h>
#include <string.h>

#include "prog.h"

static void count_cb(halo_fut *f, void *arg)
{
	(void)f;
	(*(int *)arg)++;
}

static void count_post(void *arg)
{
	(*(int *)arg)++;
}

static void step_promise(halo_loop *loop)
{
	halo_fut *f = halo_fut_new(loop);
	int called = 0;
	const char *msg;

	if (GOT(f)) {
		if (EXPECT(halo_fut_on_done(f, count_cb, &called), 0)) {
			EXPECT(halo_fut_resolve(f, 5, NULL), 0);
			EXPECT(halo_fut_wait(f), 5);
			halo_loop_run_nowait(loop);
			EXPECT(called, 1);
		}
		halo_fut_release(f);
	}
	f = halo_fut_new(loop);
	if (GOT(f)) {
		EXPECT(halo_fut_fail(f, -EIO, "disk on fire"), 0);
		EXPECT(halo_fut_error(f), -EIO);
		msg = halo_fut_error_msg(f);
		if (prog_got(msg != halo_fut_msg_lost, "message copy",
			     __LINE__))
			EXPECT(strcmp(msg, "disk on fire"), 0);
		halo_fut_release(f);
	}
	called = 0;
	if (EXPECT(halo_loop_post(loop, count_post, &called), 0)) {
		halo_loop_run_nowait(loop);
		EXPECT(called, 1);
	}
}

static void step_timers(halo_loop *loop)
{
	enum { N = 100 }; /* more than the heap's first 64 entries */
	halo_fut *t[N], *c;
	halo_wait_result w;
	size_t made = 0;

	for (int i = 0; i < N; i++) {
		t[i] = halo_timer_after(loop, (uint64_t)(5 - i % 5) * MS);
		made += GOT(t[i]);
	}
	if (made == N) {
		w = halo_wait(loop, t, N, HALO_ALL_COMPLETED, 0);
		if (EXPECT(w.status, 0))
			EXPECT(w.done_n, N);
	}
	prog_drop(t, N);
	c = halo_timer_after(loop, 10000 * MS);
	if (GOT(c)) {
		EXPECT(halo_fut_cancel(c), 0);
		EXPECT(halo_fut_join(c), -ECANCELED);
	}
	EXPECT(halo_sleep(loop, 1 * MS), 0);
}

static int64_t leaf(halo_loop *l, void *arg)
{
	(void)l;
	return (int64_t)(uintptr_t)arg;
}

/* Sleeps, yields, waits on a promise, a child fiber and a timer, then
 * returns 10 * its index. */
static int64_t worker(halo_loop *l, void *arg)
{
	int64_t idx = (int64_t)(uintptr_t)arg, r;
	halo_fut *p, *child;

	r = halo_sleep(l, 1 * MS);
	if (r < 0)
		return r;
	r = halo_yield(l);
	if (r < 0)
		return r;
	p = halo_fut_new(l);
	if (!p)
		return -ENOMEM;
	halo_fut_resolve(p, idx, NULL);
	r = halo_fut_join(p);
	child = halo_spawn(l, leaf, (void *)(uintptr_t)(idx * 9));
	if (!child)
		return -ENOMEM;
	r += halo_fut_join(child);
	return r;
}

static int64_t sleeper(halo_loop *l, void *arg)
{
	(void)arg;
	return halo_sleep(l, 10000 * MS);
}

static void step_fibers(halo_loop *loop)
{
	halo_fut *f[4], *s;

	for (int i = 0; i < 4; i++)
		f[i] = halo_spawn(loop, worker, (void *)(uintptr_t)i);
	for (int i = 0; i < 4; i++)
		if (GOT(f[i]))
			EXPECT(halo_fut_wait(f[i]), 10 * i);
	prog_drop(f, 4);
	s = halo_spawn(loop, sleeper, NULL);
	if (GOT(s)) {
		halo_loop_run_nowait(loop);
		EXPECT(halo_fut_cancel(s), 0);
		EXPECT(halo_fut_join(s), -ECANCELED);
	}
}

/* arg is a reference to the promise to fail, which this drops. */
static void fail_later(halo_fut *t, void *arg)
{
	(void)t;
	halo_fut_fail(arg, -EPROTO, "bad answer");
	halo_fut_release(arg);
}

static void step_wait(halo_loop *loop)
{
	halo_fut *f[3];
	halo_wait_result w;
	size_t made = 0;

	/* quick timer, slow timer, a promise that fails after 2 ms */
	f[0] = halo_timer_after(loop, 1 * MS);
	f[1] = halo_timer_after(loop, 10000 * MS);
	f[2] = halo_fut_new(loop);
	for (int i = 0; i < 3; i++)
		made += GOT(f[i]);
	if (made == 3) {
		halo_fut *t = halo_timer_after(loop, 2 * MS);

		halo_fut_ref(f[2]);
		if (!GOT(t) ||
		    !EXPECT(halo_fut_on_done(t, fail_later, f[2]), 0)) {
			halo_fut_release(f[2]);
		} else {
			w = halo_wait(loop, f, 3, HALO_FIRST_COMPLETED, 0);
			if (EXPECT(w.status, 0))
				EXPECT(w.first, 0);
			w = halo_wait(loop, f, 3, HALO_FIRST_ERROR, 0);
			if (EXPECT(w.status, 0))
				EXPECT(w.first_error, 2);
			w = halo_wait(loop, &f[1], 1, HALO_ALL_COMPLETED,
				      halo_now_ns() + 2 * MS);
			EXPECT(w.status, -ETIMEDOUT);
			w = halo_wait(loop, f, 3,
				      HALO_ALL_COMPLETED |
					  HALO_WAIT_CANCEL_REST,
				      halo_now_ns() + 1 * MS);
			EXPECT(w.status, -ETIMEDOUT);
			EXPECT(halo_fut_status(f[1]), HALO_FUT_CANCELLED);
			EXPECT(halo_fut_error(f[2]), -EPROTO);
		}
		prog_drop(&t, 1);
	}
	prog_drop(f, 3);
}

/* halo_wait from inside a fiber: it suspends, the loop runs on. */
static int64_t waiting_fiber(halo_loop *l, void *arg)
{
	halo_fut *t[2];
	halo_wait_result w;
	int64_t r = 0;

	(void)arg;
	t[0] = halo_timer_after(l, 1 * MS);
	t[1] = halo_timer_after(l, 2 * MS);
	if (t[0] && t[1]) {
		w = halo_wait(l, t, 2, HALO_ALL_COMPLETED, 0);
		r = w.status ? w.status : (int64_t)w.done_n;
	} else {
		r = -ENOMEM;
	}
	prog_drop(t, 2);
	return r;
}

static void step_wait_in_fiber(halo_loop *loop)
{
	halo_fut *f = halo_spawn(loop, waiting_fiber, NULL);

	if (GOT(f))
		EXPECT(halo_fut_join(f), 2);
}

/* Yields n times, each time giving the others their turn. */
static int64_t yielder(halo_loop *l, void *arg)
{
	int64_t n = (int64_t)(uintptr_t)arg;

	for (int64_t i = 0; i < n; i++) {
		int r = halo_yield(l);

		if (r < 0)
			return r;
	}
	return n;
}

/* Fibers with stacks of their own size (not from the loop's cache), run
 * to the end by halo_loop_run. */
static void step_run(halo_loop *loop)
{
	halo_fiber_opts big = {.stack_size = 512 * 1024};
	halo_fut *f[3];

	f[0] = halo_spawn_opts(loop, yielder, (void *)(uintptr_t)5, &big);
	f[1] = halo_spawn(loop, yielder, (void *)(uintptr_t)7);
	f[2] = halo_spawn_opts(loop, worker, (void *)(uintptr_t)3, &big);
	EXPECT(halo_loop_run(loop), 0);
	if (GOT(f[0]))
		EXPECT(halo_fut_result(f[0]), 5);
	if (GOT(f[1]))
		EXPECT(halo_fut_result(f[1]), 7);
	if (GOT(f[2]))
		EXPECT(halo_fut_result(f[2]), 30);
	prog_drop(f, 3);
}

/* A fiber cancelled while it waits on a scope of its own. */
static int64_t scoped(halo_loop *l, void *arg)
{
	halo_scope s;
	int r;

	(void)arg;
	halo_scope_init(&s, l, NULL);
	for (int i = 0; i < 3; i++)
		if (!halo_scope_spawn(&s, sleeper, NULL))
			halo_scope_cancel(&s);
	r = halo_scope_close(&s);
	return r;
}

static void step_cancel_scoped(halo_loop *loop)
{
	halo_fut *f = halo_spawn(loop, scoped, NULL);

	if (!GOT(f))
		return;
	EXPECT(halo_sleep(loop, 1 * MS), 0);
	EXPECT(halo_fut_cancel(f), 0);
	EXPECT(halo_fut_join(f), -ECANCELED);
}

int main(int argc, char **argv)
{
	static const struct prog_step steps[] = {
	    {"promise", step_promise},
	    {"timers", step_timers},
	    {"fibers", step_fibers},
	    {"wait", step_wait},
	    {"wait_in_fiber", step_wait_in_fiber},
	    {"run", step_run},
	    {"cancel_scoped", step_cancel_scoped},
	};

	return prog_run(argc, argv, steps, sizeof(steps) / sizeof(steps[0]));
}
