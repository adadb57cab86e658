/* halo_wait: one waiter node per future, all from the loop's pool, feed a
 * private helper promise that the caller waits on; an optional timer fails
 * the helper at the deadline. The nodes are unhooked before they are freed,
 * so a future that finishes later never touches freed memory. */
#include <errno.h>
#include <stdbool.h>

#include "wait.h"

#include "../runtime/loop.h"
#include "../runtime/pool.h"
#include "../runtime/timer.h"

struct wctx;

struct wnode {
	halo_waiter w;
	struct wctx *ctx;
	halo_fut *f;
	size_t idx;
	bool hooked;
};

struct wctx {
	halo_fut *helper;
	unsigned mode;
	size_t n, done_n, first, first_error;
	halo_waiter tw;
	halo_fut *timer;
	struct wnode nodes[];
};

static bool is_met(const struct wctx *c)
{
	switch (c->mode & HALO_WAIT_MODE_MASK) {
	case HALO_FIRST_COMPLETED:
		return c->done_n > 0 || c->n == 0;
	case HALO_FIRST_ERROR:
		return c->first_error != SIZE_MAX || c->done_n == c->n;
	default:
		return c->done_n == c->n;
	}
}

static void note_done(struct wctx *c, const halo_fut *f, size_t idx)
{
	c->done_n++;
	if (c->first == SIZE_MAX)
		c->first = idx;
	if (c->first_error == SIZE_MAX && halo_fut_status(f) != HALO_FUT_OK)
		c->first_error = idx;
}

static void on_child(halo_fut *f, void *arg)
{
	struct wnode *nd = arg;
	struct wctx *c = nd->ctx;

	nd->hooked = false;
	note_done(c, f, nd->idx);
	if (is_met(c))
		halo_fut_resolve(c->helper, 0, NULL);
}

static void on_deadline(halo_fut *f, void *arg)
{
	struct wctx *c = arg;

	(void)f;
	c->timer = NULL; /* the waiter ran; wait_on() still releases it */
	halo_fut_fail(c->helper, -ETIMEDOUT, NULL);
}

/* Hook the nodes, wait on the helper, unhook whatever did not run. The
 * nodes are filled before anything can fail: settle() reads them whatever
 * this returns. */
static int wait_on(halo_loop *loop, struct wctx *c, halo_fut *const *futs,
		   uint64_t deadline_ns)
{
	halo_fut *timer = NULL;
	int64_t r;

	for (size_t i = 0; i < c->n; i++) {
		struct wnode *nd = &c->nodes[i];

		nd->ctx = c;
		nd->idx = i;
		nd->f = futs[i];
		nd->hooked = false;
		nd->w.fn = on_child;
		nd->w.arg = nd;
	}
	c->helper = halo_fut_new(loop);
	if (!c->helper)
		return -ENOMEM;
	if (deadline_ns) {
		timer = halo_timer_at(loop, deadline_ns);
		if (!timer) {
			halo_fut_release(c->helper);
			return -ENOMEM;
		}
		c->timer = timer;
		c->tw.fn = on_deadline;
		c->tw.arg = c;
		halo_fut_add_waiter(timer, &c->tw);
	}
	for (size_t i = 0; i < c->n; i++) {
		c->nodes[i].hooked = true;
		halo_fut_add_waiter(futs[i], &c->nodes[i].w);
	}
	r = halo_fut_wait(c->helper);
	for (size_t i = 0; i < c->n; i++)
		if (c->nodes[i].hooked)
			halo_fut_remove_waiter(c->nodes[i].f, &c->nodes[i].w);
	if (timer) {
		if (c->timer)
			halo_fut_remove_waiter(timer, &c->tw);
		halo_fut_cancel(timer);
		halo_fut_release(timer);
	}
	halo_fut_release(c->helper);
	return r < 0 ? (int)r : 0;
}

/* The waiters counted only futures that were pending when they were hooked;
 * start from a tally of those already done, in index order. */
static void tally(struct wctx *c, halo_fut *const *futs)
{
	for (size_t i = 0; i < c->n; i++)
		if (halo_fut_is_done(futs[i]))
			note_done(c, futs[i], i);
}

/* The final tally: completion order from the waiters that ran, then any
 * future that finished but whose waiter had not run yet (same tick). */
static void settle(struct wctx *out, const struct wctx *c)
{
	out->done_n = 0;
	out->first = c->first;
	out->first_error = c->first_error;
	for (size_t i = 0; i < c->n; i++) {
		const halo_fut *f = c->nodes[i].f;

		if (!halo_fut_is_done(f))
			continue;
		out->done_n++;
		if (out->first == SIZE_MAX)
			out->first = i;
		if (out->first_error == SIZE_MAX &&
		    halo_fut_status(f) != HALO_FUT_OK)
			out->first_error = i;
	}
}

/* Wait with waiter nodes from the pool; head holds the tally so far and
 * gets the final one. */
static int wait_pooled(halo_loop *loop, struct wctx *head,
		       halo_fut *const *futs, uint64_t deadline_ns)
{
	size_t size = sizeof(*head) + head->n * sizeof(struct wnode);
	struct wctx *c = halo_mem_alloc(loop, size);
	int r;

	if (!c)
		return -ENOMEM;
	/* Completion order is what counts: recount. */
	*c = *head;
	c->done_n = 0;
	c->first = c->first_error = SIZE_MAX;
	c->timer = NULL;
	r = wait_on(loop, c, futs, deadline_ns);
	settle(head, c);
	if (is_met(head))
		r = 0;
	else if (r == 0)
		r = -EDEADLK;
	halo_mem_free(loop, c, size);
	return r;
}

/* Wait for f with halo_fut_wait, whose waiter needs no memory (f ends
 * consumed). Returns 0 once f is done, else why the wait ended. */
static int wait_alone(halo_fut *f)
{
	int64_t r = halo_fut_wait(f);

	return halo_fut_is_done(f) ? 0 : (int)r;
}

/* What HALO_WAIT_CANCEL_REST promises, kept when memory is short (one
 * future at a time, without allocating) and when the waiting fiber is
 * cancelled meanwhile (that interrupts one wait, then waits work again). */
static int wait_rest(halo_loop *loop, halo_fut *const *futs, size_t n)
{
	halo_wait_result w = {.status = -ECANCELED};

	for (int round = 0; round < 2 && w.status == -ECANCELED; round++)
		w = halo_wait(loop, futs, n, HALO_ALL_COMPLETED, 0);
	if (w.status != -ENOMEM && w.status != -ECANCELED)
		return w.status;
	for (size_t i = 0; i < n; i++) {
		int r;

		if (halo_fut_is_done(futs[i]))
			continue;
		r = wait_alone(futs[i]);
		if (r == -ECANCELED)
			r = wait_alone(futs[i]);
		if (r < 0)
			return r;
	}
	return 0;
}

halo_wait_result halo_wait(halo_loop *loop, halo_fut *const *futs, size_t n,
			   unsigned mode, uint64_t deadline_ns)
{
	struct wctx head = {.mode = mode, .n = n, .first = SIZE_MAX,
			    .first_error = SIZE_MAX};
	halo_wait_result res = {0};

	tally(&head, futs);
	if (!is_met(&head)) {
		if (deadline_ns && deadline_ns <= halo_now_ns())
			res.status = -ETIMEDOUT;
		else
			res.status =
			    wait_pooled(loop, &head, futs, deadline_ns);
		/* One future needs no nodes: wait for it all the same. */
		if (res.status == -ENOMEM && n == 1 && !deadline_ns) {
			res.status = wait_alone(futs[0]);
			if (!res.status)
				note_done(&head, futs[0], 0);
		}
	}
	res.done_n = head.done_n;
	res.first = head.first;
	res.first_error = head.first_error;
	if ((mode & HALO_WAIT_CANCEL_REST) && res.done_n < n) {
		int r;

		res.cancelled_n = halo_cancel_all(futs, n);
		r = wait_rest(loop, futs, n);
		if (r && !res.status)
			res.status = r;
	}
	return res;
}

size_t halo_cancel_all(halo_fut *const *futs, size_t n)
{
	size_t made = 0;

	for (size_t i = 0; i < n; i++)
		if (futs[i] && halo_fut_cancel(futs[i]) == 0)
			made++;
	return made;
}
