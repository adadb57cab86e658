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

/* Hook the nodes, wait on the helper, unhook whatever did not run. */
static int wait_on(halo_loop *loop, struct wctx *c, halo_fut *const *futs,
		   uint64_t deadline_ns)
{
	halo_fut *timer = NULL;
	int64_t r;

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
		struct wnode *nd = &c->nodes[i];

		nd->ctx = c;
		nd->idx = i;
		nd->f = futs[i];
		nd->hooked = true;
		nd->w.fn = on_child;
		nd->w.arg = nd;
		halo_fut_add_waiter(futs[i], &nd->w);
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

halo_wait_result halo_wait(halo_loop *loop, halo_fut *const *futs, size_t n,
			   unsigned mode, uint64_t deadline_ns)
{
	struct wctx head = {.mode = mode, .n = n, .first = SIZE_MAX,
			    .first_error = SIZE_MAX};
	halo_wait_result res = {0};

	tally(&head, futs);
	if (!is_met(&head)) {
		if (deadline_ns && deadline_ns <= halo_now_ns()) {
			res.status = -ETIMEDOUT;
		} else {
			size_t size = sizeof(head) + n * sizeof(struct wnode);
			struct wctx *c = halo_mem_alloc(loop, size);

			if (!c) {
				res.status = -ENOMEM;
			} else {
				/* Completion order is what counts: recount. */
				*c = head;
				c->done_n = 0;
				c->first = c->first_error = SIZE_MAX;
				c->timer = NULL;
				res.status = wait_on(loop, c, futs, deadline_ns);
				settle(&head, c);
				if (is_met(&head))
					res.status = 0;
				else if (res.status == 0)
					res.status = -EDEADLK;
				halo_mem_free(loop, c, size);
			}
		}
	}
	res.done_n = head.done_n;
	res.first = head.first;
	res.first_error = head.first_error;
	if ((mode & HALO_WAIT_CANCEL_REST) && res.done_n < n) {
		halo_wait_result all;

		res.cancelled_n = halo_cancel_all(futs, n);
		all = halo_wait(loop, futs, n, HALO_ALL_COMPLETED, 0);
		if (all.status && !res.status)
			res.status = all.status;
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
