/* Gather and race share one shape: a promise, one waiter node per child
 * from the loop's pool, and a decision (OK, ERROR, CANCELLED) that is made
 * once and published only when no child that was told to stop is still
 * running. */
#include <errno.h>
#include <string.h>

#include "gather.h"


#include "../runtime/pool.h"

enum { UNDECIDED, DECIDED_OK, DECIDED_ERR, DECIDED_CANCEL };
enum { GATHER, RACE };

struct gst;

struct gnode {
	halo_waiter w;
	struct gst *st;
	halo_fut *f;
	size_t idx;
	bool hooked;
};

struct gst {
	halo_loop *loop;
	halo_fut *out;
	size_t n, pending_n, size;
	int kind, outcome;
	bool cancel_on_error, stopping;
	int err;
	size_t fail_idx; /* the child whose failure is err, SIZE_MAX if none */
	int64_t *results;
	size_t *winner, *failed;
	int64_t win_result;
	void *win_value;
	struct gnode nodes[];
};

/* Publish the decision, then let go of the children: the failed child is
 * still held while its message is copied into out. */
static void finish(struct gst *st)
{
	halo_fut *out = st->out;
	const char *msg = NULL;

	switch (st->outcome) {
	case DECIDED_OK:
		halo_fut_resolve(out, st->win_result, st->win_value);
		break;
	case DECIDED_CANCEL:
		halo_fut_cancelled(out);
		break;
	default:
		if (st->fail_idx < st->n)
			msg = halo_fut_error_msg(st->nodes[st->fail_idx].f);
		if (st->failed)
			*st->failed = st->fail_idx;
		halo_fut_fail(out, st->err < 0 ? st->err : -EIO, msg);
	}
	for (size_t i = 0; i < st->n; i++) {
		struct gnode *nd = &st->nodes[i];
		if (nd->hooked)
			halo_fut_remove_waiter(nd->f, &nd->w);
		halo_fut_release(nd->f);
	}
	halo_mem_free(st->loop, st, st->size);
	halo_fut_release(out);
}

static void stop_rest(struct gst *st)
{
	st->stopping = true;
	for (size_t i = 0; i < st->n; i++)
		if (st->nodes[i].hooked)
			halo_fut_cancel(st->nodes[i].f);
}

static void keep_error(struct gst *st, struct gnode *nd, int64_t r)
{
	st->err = r < 0 ? (int)r : -EIO;
	st->fail_idx = nd->idx;
}

static void on_child(halo_fut *f, void *arg)
{
	struct gnode *nd = arg;
	struct gst *st = nd->st;
	bool ok = halo_fut_status(f) == HALO_FUT_OK;
	int64_t r = halo_fut_result(f);

	nd->hooked = false;
	st->pending_n--;
	if (st->results)
		st->results[nd->idx] = r;
	if (st->kind == GATHER && !ok && st->outcome == UNDECIDED) {
		st->outcome = DECIDED_ERR;
		keep_error(st, nd, r);
		if (!st->cancel_on_error) {
			finish(st);
			return;
		}
		stop_rest(st);
	} else if (st->kind == RACE && st->outcome == UNDECIDED) {
		if (ok) {
			st->outcome = DECIDED_OK;
			st->win_result = r;
			st->win_value = halo_fut_value(f);
			if (st->winner)
				*st->winner = nd->idx;
			stop_rest(st);
		} else {
			keep_error(st, nd, r);
		}
	}
	if (st->pending_n)
		return;
	if (st->outcome == UNDECIDED) {
		if (st->kind == GATHER) {
			st->outcome = DECIDED_OK;
			st->win_result = (int64_t)st->n;
			st->win_value = st->results;
		} else {
			st->outcome = DECIDED_ERR;
		}
	}
	finish(st);
}

static void on_cancel(halo_fut *out, void *arg)
{
	struct gst *st = arg;

	(void)out;
	if (st->outcome != UNDECIDED)
		return; /* the decision stands; it completes when confirmed */
	st->outcome = DECIDED_CANCEL;
	stop_rest(st);
}

static halo_fut *start(halo_loop *loop, halo_fut *const *futs, size_t n,
		       int kind, bool cancel_on_error, bool adopt,
		       int64_t *results, size_t *winner, size_t *failed,
		       const char *file, int line)
{
	size_t size = sizeof(struct gst) + n * sizeof(struct gnode);
	struct gst *st;
	halo_fut *out = halo_fut_new_at(loop, file, line);

	if (!out)
		return NULL;
	if (winner)
		*winner = SIZE_MAX;
	if (failed)
		*failed = SIZE_MAX;
	if (n == 0) {
		if (kind == GATHER)
			halo_fut_resolve(out, 0, results);
		else
			halo_fut_fail(out, -ENOENT, "race of no futures");
		return out;
	}
	st = halo_mem_alloc(loop, size);
	if (!st) {
		halo_fut_release(out);
		return NULL;
	}
	memset(st, 0, sizeof(*st));
	st->loop = loop;
	st->out = halo_fut_ref(out); /* a caller's early release is safe */
	st->n = st->pending_n = n;
	st->size = size;
	st->kind = kind;
	st->cancel_on_error = cancel_on_error;
	st->results = results;
	st->winner = winner;
	st->failed = failed;
	st->err = -EIO;
	st->fail_idx = SIZE_MAX;
	halo_fut_set_cancel(out, on_cancel, st);
	for (size_t i = 0; i < n; i++) {
		struct gnode *nd = &st->nodes[i];

		nd->st = st;
		nd->idx = i;
		nd->f = adopt ? futs[i] : halo_fut_ref(futs[i]);
		nd->hooked = true;
		nd->w.fn = on_child;
		nd->w.arg = nd;
		halo_fut_add_waiter(futs[i], &nd->w);
	}
	return out;
}

halo_fut *halo_gather_at(halo_loop *loop, halo_fut *const *futs, size_t n,
			 const halo_gather_opts *opts, const char *file,
			 int line)
{
	halo_gather_opts o = opts ? *opts : (halo_gather_opts){0};

	return start(loop, futs, n, GATHER, o.cancel_on_error, o.adopt,
		     o.results, NULL, o.failed, file, line);
}

int64_t *halo_gather_results(halo_fut *g)
{
	return halo_fut_value(g);
}

halo_fut *halo_race_at(halo_loop *loop, halo_fut *const *futs, size_t n,
		       const halo_race_opts *opts, const char *file, int line)
{
	halo_race_opts o = opts ? *opts : (halo_race_opts){0};

	return start(loop, futs, n, RACE, true, o.adopt, NULL, o.winner,
		     o.failed, file, line);
}
