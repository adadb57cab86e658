/* Semaphore, bounded map and rate limiter. The semaphore and the limiter
 * share a FIFO of requests from the loop's pool; each request holds a
 * reference to its future until it is granted or cancelled. */
#include <errno.h>
#include <string.h>

#include "limit.h"

#include "../runtime/loop.h"
#include "../runtime/pool.h"
#include "../runtime/timer.h"

struct halo_limit_req {
	struct halo_limit_req *prev, *next;
	halo_limit_queue *q;
	halo_fut *f;
};

static void q_unlink(struct halo_limit_req *r)
{
	halo_limit_queue *q = r->q;

	if (r->prev)
		r->prev->next = r->next;
	else
		q->head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	else
		q->tail = r->prev;
	q->n--;
}

static void req_cancel(halo_fut *f, void *arg)
{
	struct halo_limit_req *r = arg;
	halo_loop *loop = halo_fut_loop(f);

	q_unlink(r);
	halo_fut_cancelled(f);
	halo_fut_release(f);
	halo_mem_free(loop, r, sizeof(*r));
}

/* A pending future queued at the tail of q, or NULL. */
static halo_fut *q_push(halo_loop *loop, halo_limit_queue *q,
			const char *file, int line)
{
	struct halo_limit_req *r = halo_mem_alloc(loop, sizeof(*r));
	halo_fut *f;

	if (!r)
		return NULL;
	f = halo_fut_new_at(loop, file, line);
	if (!f) {
		halo_mem_free(loop, r, sizeof(*r));
		return NULL;
	}
	r->q = q;
	r->f = halo_fut_ref(f);
	r->next = NULL;
	r->prev = q->tail;
	if (q->tail)
		q->tail->next = r;
	else
		q->head = r;
	q->tail = r;
	q->n++;
	halo_fut_set_cancel(f, req_cancel, r);
	return f;
}

/* Complete the head request: OK (granted, err 0), CANCELLED (-ECANCELED)
 * or failed with err. */
static void q_pop(halo_loop *loop, halo_limit_queue *q, int err)
{
	struct halo_limit_req *r = q->head;
	halo_fut *f = r->f;

	q_unlink(r);
	if (!err)
		halo_fut_resolve(f, 0, NULL);
	else if (err == -ECANCELED)
		halo_fut_cancelled(f);
	else
		halo_fut_fail(f, err, NULL);
	halo_fut_release(f);
	halo_mem_free(loop, r, sizeof(*r));
}

static halo_fut *done_now(halo_loop *loop, const char *file, int line)
{
	halo_fut *f = halo_fut_new_at(loop, file, line);

	if (f)
		halo_fut_resolve(f, 0, NULL);
	return f;
}

void halo_sem_init(halo_sem *sem, halo_loop *loop, int64_t permits)
{
	memset(sem, 0, sizeof(*sem));
	sem->loop = loop;
	sem->permits = permits;
}

bool halo_sem_try_acquire(halo_sem *sem)
{
	if (sem->q.head || sem->permits <= 0)
		return false;
	sem->permits--;
	return true;
}

halo_fut *halo_sem_acquire_at(halo_sem *sem, const char *file, int line)
{
	halo_fut *f;

	if (sem->q.head || sem->permits <= 0)
		return q_push(sem->loop, &sem->q, file, line);
	f = done_now(sem->loop, file, line);
	if (f)
		sem->permits--;
	return f;
}

void halo_sem_release(halo_sem *sem)
{
	if (sem->q.head)
		q_pop(sem->loop, &sem->q, 0);
	else
		sem->permits++;
}

size_t halo_sem_waiting(const halo_sem *sem)
{
	return sem->q.n;
}

void halo_sem_close(halo_sem *sem)
{
	while (sem->q.head)
		q_pop(sem->loop, &sem->q, -ECANCELED);
}

/* --- bounded map --- */

enum { UNDECIDED, DECIDED_ERR, DECIDED_CANCEL };

struct mslot;

struct mst {
	halo_loop *loop;
	halo_fut *out;
	void *const *inputs;
	halo_map_fn fn;
	halo_map_opts o;
	size_t n, k, next, inflight, size;
	int outcome, err;
	struct mslot {
		halo_waiter w;
		struct mst *st;
		halo_fut *f;
		size_t idx;
	} slots[];
};

static void map_finish(struct mst *st)
{
	halo_fut *out = st->out;

	if (st->outcome == DECIDED_CANCEL)
		halo_fut_cancelled(out);
	else if (st->outcome == DECIDED_ERR)
		halo_fut_fail(out, st->err, NULL);
	else
		halo_fut_resolve(out, (int64_t)st->n, st->o.results);
	halo_mem_free(st->loop, st, st->size);
	halo_fut_release(out);
}

static void map_stop(struct mst *st, int outcome, int err, bool cancel)
{
	if (st->outcome != UNDECIDED)
		return;
	st->outcome = outcome;
	st->err = err;
	if (!cancel)
		return;
	for (size_t i = 0; i < st->k; i++)
		if (st->slots[i].f)
			halo_fut_cancel(st->slots[i].f);
}

static void map_item_done(halo_fut *f, void *arg);

static void map_start(struct mst *st, struct mslot *s)
{
	size_t idx = st->next++;
	halo_fut *f = st->fn(st->loop, st->inputs ? st->inputs[idx] : NULL,
			     idx);

	if (!f) {
		if (st->o.results)
			st->o.results[idx] = -ENOMEM;
		map_stop(st, DECIDED_ERR, -ENOMEM, st->o.cancel_on_error);
		return;
	}
	s->f = f;
	s->idx = idx;
	st->inflight++;
	halo_fut_add_waiter(f, &s->w);
}

static void map_item_done(halo_fut *f, void *arg)
{
	struct mslot *s = arg;
	struct mst *st = s->st;
	int64_t r = halo_fut_result(f);

	st->inflight--;
	s->f = NULL;
	if (st->o.results)
		st->o.results[s->idx] = r;
	if (st->o.on_each)
		st->o.on_each(f, s->idx, st->o.arg);
	if (halo_fut_status(f) != HALO_FUT_OK)
		map_stop(st, DECIDED_ERR, r < 0 ? (int)r : -EIO,
			 st->o.cancel_on_error);
	halo_fut_release(f);
	if (st->outcome == UNDECIDED && st->next < st->n)
		map_start(st, s);
	if (!st->inflight && (st->outcome != UNDECIDED || st->next == st->n))
		map_finish(st);
}

static void map_cancel(halo_fut *out, void *arg)
{
	(void)out;
	map_stop(arg, DECIDED_CANCEL, -ECANCELED, true);
}

halo_fut *halo_map_at(halo_loop *loop, void *const *inputs, size_t n,
		      size_t k, halo_map_fn fn, const halo_map_opts *opts,
		      const char *file, int line)
{
	struct mst *st;
	halo_fut *out;
	size_t size;

	if (!k || !fn)
		return NULL;
	if (k > n)
		k = n ? n : 1;
	size = sizeof(*st) + k * sizeof(struct mslot);
	out = halo_fut_new_at(loop, file, line);
	if (!out)
		return NULL;
	st = halo_mem_zalloc(loop, size);
	if (!st) {
		halo_fut_release(out);
		return NULL;
	}
	st->loop = loop;
	st->out = halo_fut_ref(out);
	st->inputs = inputs;
	st->fn = fn;
	if (opts)
		st->o = *opts;
	st->n = n;
	st->k = k;
	st->size = size;
	halo_fut_set_cancel(out, map_cancel, st);
	for (size_t i = 0; i < k; i++) {
		st->slots[i].st = st;
		st->slots[i].w.fn = map_item_done;
		st->slots[i].w.arg = &st->slots[i];
	}
	for (size_t i = 0; i < k && st->next < n; i++) {
		if (st->outcome != UNDECIDED)
			break;
		map_start(st, &st->slots[i]);
	}
	if (!st->inflight)
		map_finish(st);
	return out;
}

/* --- rate limiter --- */

static void refill(halo_ratelimit *rl)
{
	uint64_t now = halo_now_ns();

	rl->tokens += (double)(now - rl->last_ns) * rl->rate / 1e9;
	if (rl->tokens > rl->burst)
		rl->tokens = rl->burst;
	rl->last_ns = now;
}

static void rl_tick(halo_fut *t, void *arg);

/* Sleep until the head of the queue can have its token. */
static void rl_arm(halo_ratelimit *rl)
{
	double need;
	uint64_t wait_ns;

	if (rl->timer || !rl->q.head)
		return;
	need = 1.0 - rl->tokens;
	wait_ns = need > 0 ? (uint64_t)(need * 1e9 / rl->rate) + 1 : 0;
	rl->timer = halo_timer_at(rl->loop, rl->last_ns + wait_ns);
	if (!rl->timer) {
		/* Nothing else would ever wake the queue: fail it rather
		 * than leave its waiters stranded. */
		while (rl->q.head)
			q_pop(rl->loop, &rl->q, -ENOMEM);
		return;
	}
	rl->tw.fn = rl_tick;
	rl->tw.arg = rl;
	halo_fut_add_waiter(rl->timer, &rl->tw);
}

static void rl_grant(halo_ratelimit *rl)
{
	refill(rl);
	/* Tolerate rounding: the timer fires at the token, not after it. */
	while (rl->q.head && rl->tokens >= 1.0 - 1e-6) {
		rl->tokens -= 1.0;
		q_pop(rl->loop, &rl->q, 0);
	}
	rl_arm(rl);
}

static void rl_tick(halo_fut *t, void *arg)
{
	halo_ratelimit *rl = arg;

	rl->timer = NULL;
	halo_fut_release(t);
	rl_grant(rl);
}

int halo_ratelimit_init(halo_ratelimit *rl, halo_loop *loop,
			double rate_per_s, double burst)
{
	if (!(rate_per_s > 0) || !(burst >= 1))
		return -EINVAL;
	memset(rl, 0, sizeof(*rl));
	rl->loop = loop;
	rl->rate = rate_per_s;
	rl->burst = rl->tokens = burst;
	rl->last_ns = halo_now_ns();
	return 0;
}

halo_fut *halo_ratelimit_acquire_at(halo_ratelimit *rl, const char *file,
				    int line)
{
	halo_fut *f;

	refill(rl);
	if (!rl->q.head && rl->tokens >= 1.0) {
		f = done_now(rl->loop, file, line);
		if (f)
			rl->tokens -= 1.0;
		return f;
	}
	f = q_push(rl->loop, &rl->q, file, line);
	if (f)
		rl_arm(rl);
	return f;
}

void halo_ratelimit_close(halo_ratelimit *rl)
{
	while (rl->q.head)
		q_pop(rl->loop, &rl->q, -ECANCELED);
	if (rl->timer) {
		halo_fut_remove_waiter(rl->timer, &rl->tw);
		halo_fut_cancel(rl->timer);
		halo_fut_release(rl->timer);
		rl->timer = NULL;
	}
}
