/* The AIMD concurrency limit. Decisions are made per window, not per
 * sample: one slow request among many says little, and a window at least
 * as long as the limit spans about one round of the requests in flight.
 * A window counts only requests that began in it. */
#include <errno.h>
#include <string.h>

#include "../runtime/loop.h"
#include "../runtime/pool.h"

#include "adaptive.h"

static uint32_t whole(const halo_adaptive *a)
{
	return (uint32_t)a->limit;
}

int halo_adaptive_init(halo_adaptive *a, const halo_adaptive_opts *opts)
{
	halo_adaptive_opts o = opts ? *opts : (halo_adaptive_opts){0};

	if (!o.min)
		o.min = 1;
	if (!o.max)
		o.max = 1024;
	if (!o.initial)
		o.initial = 4 < o.min ? o.min : 4 > o.max ? o.max : 4;
	if (!o.window)
		o.window = 8;
	if (o.tolerance == 0)
		o.tolerance = 1.5;
	if (o.backoff == 0)
		o.backoff = 0.8;
	if (o.min > o.max || o.initial < o.min || o.initial > o.max ||
	    o.backoff <= 0 || o.backoff >= 1 || o.tolerance <= 1)
		return -EINVAL;
	memset(a, 0, sizeof(*a));
	a->o = o;
	a->limit = o.initial;
	return 0;
}

static void grant(halo_adaptive *a)
{
	while (a->head && a->inflight < whole(a)) {
		halo_adaptive_waiter *w = a->head;

		a->head = w->next;
		if (!a->head)
			a->tail = NULL;
		a->waiting_n--;
		w->next = NULL;
		w->queued = false;
		a->inflight++;
		if (a->inflight > a->peak)
			a->peak = a->inflight;
		w->fn(w);
	}
}

bool halo_adaptive_try_acquire(halo_adaptive *a)
{
	if (a->head || a->inflight >= whole(a))
		return false;
	a->inflight++;
	if (a->inflight > a->peak)
		a->peak = a->inflight;
	return true;
}

void halo_adaptive_wait(halo_adaptive *a, halo_adaptive_waiter *w)
{
	w->next = NULL;
	w->queued = true;
	if (a->tail)
		a->tail->next = w;
	else
		a->head = w;
	a->tail = w;
	a->waiting_n++;
	grant(a);
}

bool halo_adaptive_cancel_wait(halo_adaptive *a, halo_adaptive_waiter *w)
{
	halo_adaptive_waiter **pp = &a->head, *prev = NULL;

	if (!w->queued)
		return false;
	while (*pp && *pp != w) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	if (!*pp)
		return false;
	*pp = w->next;
	if (a->tail == w)
		a->tail = prev;
	a->waiting_n--;
	w->next = NULL;
	w->queued = false;
	return true;
}

void halo_adaptive_release(halo_adaptive *a)
{
	if (a->inflight)
		a->inflight--;
	grant(a);
}

static void clamp(halo_adaptive *a)
{
	if (a->limit < a->o.min)
		a->limit = a->o.min;
	if (a->limit > a->o.max)
		a->limit = a->o.max;
}

/* End of a window: decrease on failures or climbing latency; increase only
 * if the window used at least half the limit, so that a lightly loaded
 * caller does not inflate a limit it never tested. */
static void decide(halo_adaptive *a)
{
	uint64_t mean = a->samples ? a->sum_ns / a->samples : 0;
	bool healthy = a->samples > 0;

	if (a->dropped || (healthy && (double)mean > (double)a->baseline_ns *
							 a->o.tolerance)) {
		a->limit *= a->o.backoff;
		a->decreases++;
	} else if ((double)a->peak * 2 >= a->limit) {
		a->limit += 1;
		a->increases++;
	}
	clamp(a);
	a->sum_ns = 0;
	a->samples = 0;
	a->dropped = 0;
	a->peak = a->inflight;
	a->window_ns = halo_now_ns();
}

void halo_adaptive_sample(halo_adaptive *a, uint64_t latency_ns,
			  halo_adaptive_outcome outcome)
{
	uint32_t len = whole(a) > a->o.window ? whole(a) : a->o.window;

	/* A request that began before this window ran under an older limit:
	 * counting it would judge the new limit by the old one's latency and
	 * overshoot by a window each time. */
	if (outcome == HALO_ADAPTIVE_IGNORE ||
	    halo_now_ns() - latency_ns < a->window_ns)
		return;
	if (outcome == HALO_ADAPTIVE_DROPPED) {
		a->dropped++;
	} else {
		a->sum_ns += latency_ns;
		a->samples++;
		if (!a->baseline_ns || latency_ns < a->baseline_ns)
			a->baseline_ns = latency_ns;
	}
	if (a->samples + a->dropped < len)
		return;
	decide(a);
	grant(a);
}

uint32_t halo_adaptive_limit(const halo_adaptive *a)
{
	return whole(a);
}

uint32_t halo_adaptive_inflight(const halo_adaptive *a)
{
	return a->inflight;
}

uint64_t halo_adaptive_baseline(const halo_adaptive *a)
{
	return a->baseline_ns;
}

/* The future form: a waiter in loop memory that resolves its future. */
struct req {
	halo_adaptive_waiter w;
	halo_adaptive *a;
	halo_fut *f;
};

static void req_done(struct req *r, bool granted)
{
	halo_fut *f = r->f;

	if (granted)
		halo_fut_resolve(f, 0, NULL);
	else
		halo_fut_cancelled(f);
	halo_mem_free(halo_fut_loop(f), r, sizeof(*r));
	halo_fut_release(f);
}

static void req_grant(halo_adaptive_waiter *w)
{
	req_done(w->arg, true);
}

static void req_cancel(halo_fut *f, void *arg)
{
	struct req *r = arg;

	(void)f;
	halo_adaptive_cancel_wait(r->a, &r->w);
	req_done(r, false);
}

halo_fut *halo_adaptive_acquire_at(halo_adaptive *a, halo_loop *loop,
				   const char *file, int line)
{
	halo_fut *f = halo_fut_new_at(loop, file, line);
	struct req *r;

	if (!f)
		return NULL;
	if (halo_adaptive_try_acquire(a)) {
		halo_fut_resolve(f, 0, NULL);
		return f;
	}
	r = halo_mem_alloc(loop, sizeof(*r));
	if (!r) {
		halo_fut_release(f);
		return NULL;
	}
	r->w = (halo_adaptive_waiter){.fn = req_grant, .arg = r};
	r->a = a;
	r->f = halo_fut_ref(f);
	halo_fut_set_cancel(f, req_cancel, r);
	halo_adaptive_wait(a, &r->w);
	return f;
}
