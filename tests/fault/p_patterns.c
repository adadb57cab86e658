/* Sweep program: gather, race, the two-loop build, scopes (nested, failing,
 * keep-going, cancelled), the semaphore, the bounded map, the rate limiter
 * and as_completed. */
#include <errno.h>
#include <string.h>

#include "prog.h"

static halo_fut *timer_ms(halo_loop *loop, uint64_t ms)
{
	return halo_timer_after(loop, ms * MS);
}

static void step_gather(halo_loop *loop)
{
	halo_fut *f[4], *g, *fail;
	int64_t results[4];
	halo_gather_opts go = {.results = results};
	size_t winner = 7, made = 0;
	halo_race_opts ro = {.winner = &winner};

	for (int i = 0; i < 4; i++)
		made += GOT(f[i] = i % 2 ? halo_nop(loop) : timer_ms(loop, 1));
	if (made == 4) {
		g = halo_gather(loop, f, 4, &go);
		if (GOT(g) && EXPECT(halo_fut_join(g), 4))
			EXPECT(results[0] | results[1] | results[2] |
				   results[3],
			       0);
	}
	prog_drop(f, 4);

	f[0] = timer_ms(loop, 1);
	f[1] = timer_ms(loop, 10000);
	f[2] = timer_ms(loop, 10000);
	if (GOT(f[0]) && GOT(f[1]) && GOT(f[2])) {
		g = halo_race_with(loop, f, 3, &ro);
		if (GOT(g) && EXPECT(halo_fut_join(g), 0)) {
			EXPECT(winner, 0);
			EXPECT(halo_fut_status(f[1]), HALO_FUT_CANCELLED);
		}
	}
	prog_drop(f, 3);

	/* A failing child cancels the others; the gather waits for them. */
	f[0] = timer_ms(loop, 10000);
	fail = halo_fut_new(loop);
	f[1] = fail;
	go = (halo_gather_opts){.cancel_on_error = true};
	if (GOT(f[0]) && GOT(fail)) {
		g = halo_gather(loop, f, 2, &go);
		if (GOT(g)) {
			halo_fut_fail(fail, -EPROTO, "no");
			EXPECT(halo_fut_join(g), -EPROTO);
			EXPECT(halo_fut_status(f[0]), HALO_FUT_CANCELLED);
		}
	}
	prog_drop(f, 2);
}

static halo_fut *unit_start(halo_loop *loop, void *arg)
{
	return timer_ms(loop, (uint64_t)(uintptr_t)arg);
}

static int unit_present(halo_loop *loop, void *arg, halo_fut *f)
{
	(void)loop;
	(void)arg;
	return (int)halo_fut_result(f);
}

static void step_build(halo_loop *loop)
{
	halo_build_unit u[3];
	halo_build_report rep;
	halo_build_opts o = {.deadline_ns = 0};

	for (int i = 0; i < 3; i++)
		u[i] = (halo_build_unit){.name = "unit",
					 .start = unit_start,
					 .present = unit_present,
					 .arg = (void *)(uintptr_t)(i + 1)};
	rep = halo_build(loop, u, 3, NULL);
	EXPECT(rep.status, 0);
	EXPECT(rep.blocked_n, 0);
	/* One unit misses the deadline and is cancelled. */
	u[2].arg = (void *)(uintptr_t)10000;
	o.deadline_ns = halo_now_ns() + 30 * MS;
	rep = halo_build(loop, u, 3, &o);
	if (EXPECT(rep.status, -ETIMEDOUT) && EXPECT(rep.missed_n, 1))
		EXPECT(u[2].err, -ETIMEDOUT);
}

struct job {
	uint64_t ms;
	int64_t ret;
};

static int64_t job_fiber(halo_loop *l, void *arg)
{
	struct job *j = arg;
	int r = halo_sleep(l, j->ms * MS);

	return r < 0 ? r : j->ret;
}

static halo_scope parent;
static struct job nested_jobs[2] = {{1, 1}, {2, 2}};

/* A fiber of the parent that runs a child scope of its own. */
static int64_t nested_fiber(halo_loop *l, void *arg)
{
	halo_scope child;

	(void)l;
	(void)arg;
	halo_scope_init_child(&child, &parent, NULL);
	for (int i = 0; i < 2; i++)
		if (!halo_scope_spawn(&child, job_fiber, &nested_jobs[i]))
			halo_scope_cancel(&child);
	return halo_scope_close(&child);
}

/* A spawn that fails fails the scope, as the caller's error handling
 * would: the others are cancelled. */
static void spawn(halo_scope *s, halo_fiber_fn fn, void *arg)
{
	if (!GOT(halo_scope_spawn(s, fn, arg)))
		halo_scope_cancel(s);
}

static void step_scope(halo_loop *loop)
{
	static struct job ok[3] = {{1, 1}, {2, 2}, {3, 3}};
	static struct job mixed[2] = {{10000, 1}, {1, -EPROTO}};
	halo_scope_opts keep = {.flags = HALO_SCOPE_KEEP_GOING};
	halo_scope s;
	halo_fut *t;

	halo_scope_init(&parent, loop, NULL);
	for (int i = 0; i < 3; i++)
		spawn(&parent, job_fiber, &ok[i]);
	spawn(&parent, nested_fiber, NULL);
	t = timer_ms(loop, 1);
	if (GOT(t) && !EXPECT(halo_scope_add(&parent, t), 0))
		halo_fut_cancel(t);
	halo_fut_release(t);
	EXPECT(halo_scope_close(&parent), 0);

	/* A failure cancels the sibling that would sleep for ten seconds. */
	halo_scope_init(&s, loop, NULL);
	for (int i = 0; i < 2; i++)
		spawn(&s, job_fiber, &mixed[i]);
	EXPECT(halo_scope_close(&s), -EPROTO);

	halo_scope_init(&s, loop, &keep);
	spawn(&s, job_fiber, &ok[0]);
	spawn(&s, job_fiber, &mixed[1]);
	EXPECT(halo_scope_close(&s), -EPROTO);

	halo_scope_init(&s, loop, NULL);
	spawn(&s, job_fiber, &mixed[0]);
	halo_scope_cancel(&s);
	EXPECT(halo_scope_close(&s), -ECANCELED);
}

struct sem_user {
	halo_sem *sem;
	int *inside, *most;
};

static int64_t sem_fiber(halo_loop *l, void *arg)
{
	struct sem_user *u = arg;
	halo_fut *p = halo_sem_acquire(u->sem);
	int64_t r;

	if (!p)
		return -ENOMEM;
	r = halo_fut_join(p);
	if (r < 0)
		return r;
	if (++*u->inside > *u->most)
		*u->most = *u->inside;
	r = halo_sleep(l, 1 * MS);
	--*u->inside;
	halo_sem_release(u->sem);
	return r;
}

static halo_fut *map_item(halo_loop *loop, void *input, size_t idx)
{
	(void)input;
	return timer_ms(loop, 1 + idx % 2);
}

static void step_limit(halo_loop *loop)
{
	halo_sem sem;
	halo_ratelimit rl;
	int inside = 0, most = 0;
	struct sem_user u = {&sem, &inside, &most};
	halo_fut *f[5], *m;
	int64_t results[6];
	halo_map_opts mo = {.results = results};

	halo_sem_init(&sem, loop, 2);
	for (int i = 0; i < 5; i++)
		f[i] = halo_spawn(loop, sem_fiber, &u);
	for (int i = 0; i < 5; i++)
		if (GOT(f[i]))
			EXPECT(halo_fut_wait(f[i]), 0);
	prog_drop(f, 5);
	EXPECT(most <= 2, 1);
	/* A queued acquire cancelled, then one that the release grants. */
	if (halo_sem_try_acquire(&sem) && halo_sem_try_acquire(&sem)) {
		f[0] = halo_sem_acquire(&sem);
		f[1] = halo_sem_acquire(&sem);
		if (GOT(f[0]) && GOT(f[1])) {
			EXPECT(halo_fut_cancel(f[0]), 0);
			EXPECT(halo_fut_join(f[0]), -ECANCELED);
			f[0] = NULL;
			halo_sem_release(&sem);
			EXPECT(halo_fut_wait(f[1]), 0);
		}
		prog_drop(f, 2);
	} else {
		EXPECT(sem.permits, 2); /* both permits should be back */
	}
	halo_sem_close(&sem);

	m = halo_map(loop, NULL, 6, 2, map_item, &mo);
	if (GOT(m))
		EXPECT(halo_fut_join(m), 6);

	/* 1000 tokens a second, burst 2: the last two wait a millisecond. */
	EXPECT(halo_ratelimit_init(&rl, loop, 1000, 2), 0);
	for (int i = 0; i < 4; i++)
		f[i] = halo_ratelimit_acquire(&rl);
	for (int i = 0; i < 4; i++)
		if (GOT(f[i]))
			EXPECT(halo_fut_wait(f[i]), 0);
	prog_drop(f, 4);
	halo_ratelimit_close(&rl);
}

static void step_as_completed(halo_loop *loop)
{
	halo_fut *f[4];
	halo_as_completed it;
	size_t made = 0, seen = 0;
	halo_fut *g;

	for (int i = 0; i < 4; i++)
		made += GOT(f[i] = timer_ms(loop, (uint64_t)(4 - i)));
	if (made == 4 &&
	    EXPECT(halo_as_completed_init(&it, loop, f, 4, 0), 0)) {
		while ((g = halo_as_completed_next(&it))) {
			EXPECT(halo_fut_result(g), 0);
			seen++;
		}
		EXPECT(it.err, 0);
		if (!it.err)
			EXPECT(seen, 4);
		halo_as_completed_close(&it);
	}
	prog_drop(f, 4);
}

static halo_fut *failed_promise(halo_loop *loop, int err)
{
	halo_fut *f = halo_fut_new(loop);

	if (f)
		halo_fut_fail(f, err, "refused");
	return f;
}

/* Gather that adopts its children, a race that every child loses, a
 * cancelled gather. */
static void step_gather_more(halo_loop *loop)
{
	halo_fut *f[3], *g;
	halo_gather_opts adopt = {.adopt = true};

	f[0] = halo_nop(loop);
	f[1] = timer_ms(loop, 1);
	if (GOT(f[0]) && GOT(f[1])) {
		g = halo_gather(loop, f, 2, &adopt);
		if (GOT(g)) {
			f[0] = f[1] = NULL; /* the gather's now */
			EXPECT(halo_fut_join(g), 2);
		}
	}
	prog_drop(f, 2);

	f[0] = failed_promise(loop, -EIO);
	f[1] = failed_promise(loop, -EPROTO);
	if (GOT(f[0]) && GOT(f[1])) {
		g = halo_race(loop, f, 2);
		if (GOT(g))
			EXPECT(halo_fut_join(g), -EPROTO);
	}
	prog_drop(f, 2);

	for (int i = 0; i < 3; i++)
		f[i] = timer_ms(loop, 10000);
	if (GOT(f[0]) && GOT(f[1]) && GOT(f[2])) {
		g = halo_gather(loop, f, 3, NULL);
		if (GOT(g)) {
			EXPECT(halo_fut_cancel(g), 0);
			EXPECT(halo_fut_join(g), -ECANCELED);
			EXPECT(halo_fut_status(f[2]), HALO_FUT_CANCELLED);
		}
	}
	prog_drop(f, 3);
}

static halo_fut *failing_start(halo_loop *loop, void *arg)
{
	(void)arg;
	return failed_promise(loop, -EACCES);
}

static int count_present(halo_loop *loop, void *arg, halo_fut *f)
{
	(void)loop;
	(void)f;
	(*(int *)arg)++;
	return 0;
}

/* A unit that fails, presented too (HALO_BUILD_PRESENT_FAILED), inside a
 * fiber; returns how many units were presented through count_present. */
static int64_t build_fiber(halo_loop *l, void *arg)
{
	int presented = 0;
	halo_build_unit u[2] = {
	    {.name = "ok",
	     .start = unit_start,
	     .present = unit_present,
	     .arg = (void *)(uintptr_t)1},
	    {.name = "bad",
	     .start = failing_start,
	     .present = count_present,
	     .arg = &presented},
	};
	halo_build_opts o = {.flags = HALO_BUILD_PRESENT_FAILED};
	halo_build_report rep = halo_build(l, u, 2, &o);

	(void)arg;
	if (rep.status != -EACCES)
		return rep.status < 0 ? rep.status : -EINVAL;
	return presented;
}

static void step_build_more(halo_loop *loop)
{
	halo_fut *f = halo_spawn(loop, build_fiber, NULL);

	if (GOT(f))
		EXPECT(halo_fut_join(f), 1);
}

static void count_each(halo_fut *f, size_t idx, void *arg)
{
	(void)f;
	(void)idx;
	(*(int *)arg)++;
}

static halo_fut *map_fail_third(halo_loop *loop, void *input, size_t idx)
{
	(void)input;
	return idx == 2 ? failed_promise(loop, -EPIPE) : timer_ms(loop, 10000);
}

/* A map that stops at its first failure and cancels what runs; an
 * as_completed whose deadline passes. */
static void step_limit_more(halo_loop *loop)
{
	int each = 0;
	halo_map_opts mo = {
	    .on_each = count_each, .arg = &each, .cancel_on_error = true};
	halo_fut *m = halo_map(loop, NULL, 6, 3, map_fail_third, &mo);
	halo_fut *f[2];
	halo_as_completed it;

	if (GOT(m) && EXPECT(halo_fut_join(m), -EPIPE))
		EXPECT(each, 3);
	f[0] = timer_ms(loop, 1);
	f[1] = timer_ms(loop, 10000);
	if (GOT(f[0]) && GOT(f[1]) &&
	    EXPECT(halo_as_completed_init(&it, loop, f, 2,
					  halo_now_ns() + 30 * MS),
		   0)) {
		if (GOT(halo_as_completed_next(&it)) &&
		    EXPECT(halo_as_completed_index(&it), 0) &&
		    EXPECT(halo_as_completed_next(&it) == NULL, 1))
			EXPECT(it.err, -ETIMEDOUT);
		halo_as_completed_close(&it);
	}
	prog_drop(f, 2);
}

int main(int argc, char **argv)
{
	static const struct prog_step steps[] = {
	    {"gather", step_gather},
	    {"build", step_build},
	    {"scope", step_scope},
	    {"limit", step_limit},
	    {"as_completed", step_as_completed},
	    {"gather_more", step_gather_more},
	    {"build_more", step_build_more},
	    {"limit_more", step_limit_more},
	};

	return prog_run(argc, argv, steps, sizeof(steps) / sizeof(steps[0]));
}
