/* Retry: one state block from the loop's pool per retry, one attempt and at
 * most one timer at a time. The timer is either the backoff sleep or the
 * nearer of the attempt's timeout and the overall deadline; whoever stops an
 * attempt records why and waits for the attempt's future before deciding. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "retry.h"

#include "../runtime/loop.h"
#include "../runtime/pool.h"
#include "../runtime/timer.h"

#define MS 1000000ull

enum { IN_ATTEMPT, IN_BACKOFF, STOPPING };
enum { WHY_NONE, WHY_ATTEMPT_TIMEOUT, WHY_DEADLINE, WHY_CANCEL };

struct rst {
	halo_loop *loop;
	halo_fut *out, *att, *timer;
	halo_waiter w_att, w_timer;
	halo_retry_fn fn;
	void *arg;
	halo_retry_report *report;
	halo_backoff bo;
	uint64_t start_ns, deadline_ns; /* deadline 0: none */
	unsigned attempts;
	int phase, why;
	int last_err;
	char last_msg[128];
};

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void halo_backoff_init(halo_backoff *b, const halo_retry_policy *policy)
{
	memset(b, 0, sizeof(*b));
	if (policy)
		b->p = *policy;
	if (!b->p.max_attempts)
		b->p.max_attempts = 3;
	if (!b->p.base_delay_ns)
		b->p.base_delay_ns = 100 * MS;
	if (!b->p.max_delay_ns)
		b->p.max_delay_ns = 30000 * MS;
	b->state = b->p.seed ? b->p.seed : halo_now_ns() ^ (uintptr_t)b;
	b->prev_ns = b->p.base_delay_ns;
}

static uint64_t uniform(halo_backoff *b, uint64_t lo, uint64_t hi)
{
	uint64_t r = b->p.rng ? b->p.rng(b->p.rng_arg) : splitmix(&b->state);

	if (hi <= lo)
		return lo;
	if (hi - lo == UINT64_MAX)
		return r;
	return lo + r % (hi - lo + 1);
}

static uint64_t exponential(uint64_t base, uint64_t cap, unsigned n)
{
	unsigned shift = n - 1;

	if (shift >= 63 || base > (cap >> shift))
		return cap;
	return base << shift;
}

uint64_t halo_backoff_next(halo_backoff *b)
{
	uint64_t base = b->p.base_delay_ns, cap = b->p.max_delay_ns, d, hi;

	b->n++;
	switch (b->p.jitter) {
	case HALO_JITTER_DECORRELATED:
		if (base > cap)
			base = cap;
		hi = b->prev_ns > cap / 3 ? cap : b->prev_ns * 3;
		d = uniform(b, base, hi);
		b->prev_ns = d;
		return d;
	case HALO_JITTER_NONE:
		return exponential(base, cap, b->n);
	default:
		return uniform(b, 0, exponential(base, cap, b->n));
	}
}

static bool default_pred(int err, const char *msg, void *arg)
{
	(void)msg;
	(void)arg;
	return err != -ECANCELED;
}

static void on_attempt(halo_fut *f, void *arg);
static void on_timer(halo_fut *f, void *arg);

static void drop_timer(struct rst *st)
{
	if (!st->timer)
		return;
	halo_fut_remove_waiter(st->timer, &st->w_timer);
	halo_fut_cancel(st->timer);
	halo_fut_release(st->timer);
	st->timer = NULL;
}

static void arm_timer(struct rst *st, uint64_t at)
{
	st->timer = halo_timer_at(st->loop, at);
	if (!st->timer)
		return; /* no memory: the attempt just runs untimed */
	st->w_timer.fn = on_timer;
	st->w_timer.arg = st;
	halo_fut_add_waiter(st->timer, &st->w_timer);
}

static void finish(struct rst *st, halo_fut_state how, int64_t res, void *value,
		   const char *msg)
{
	halo_fut *out = st->out;

	drop_timer(st);
	if (st->report) {
		st->report->attempts = st->attempts;
		st->report->last_err = st->last_err;
		memcpy(st->report->last_msg, st->last_msg,
		       sizeof(st->last_msg));
		st->report->elapsed_ns = halo_now_ns() - st->start_ns;
	}
	if (how == HALO_FUT_OK)
		halo_fut_resolve(out, res, value);
	else if (how == HALO_FUT_CANCELLED)
		halo_fut_cancelled(out);
	else
		halo_fut_fail(out, (int)res, msg);
	halo_mem_free(st->loop, st, sizeof(*st));
	halo_fut_release(out);
}

static void fail_deadline(struct rst *st)
{
	char msg[200];

	snprintf(msg, sizeof(msg),
		 "retry: deadline passed after %u attempts; last error %d%s%s",
		 st->attempts, st->last_err, st->last_msg[0] ? ": " : "",
		 st->last_msg);
	finish(st, HALO_FUT_ERROR, -ETIMEDOUT, NULL, msg);
}

/* The timer of an attempt: the nearer of its timeout and the deadline. */
static void arm_attempt_timer(struct rst *st)
{
	uint64_t at = 0;

	if (st->bo.p.attempt_timeout_ns)
		at = halo_now_ns() + st->bo.p.attempt_timeout_ns;
	if (st->deadline_ns && (!at || st->deadline_ns <= at))
		at = st->deadline_ns;
	if (at)
		arm_timer(st, at);
}

static void start_attempt(struct rst *st)
{
	st->attempts++;
	st->phase = IN_ATTEMPT;
	st->why = WHY_NONE;
	st->att = st->fn(st->loop, st->arg, st->attempts);
	if (!st->att) {
		st->last_err = -ENOMEM;
		snprintf(st->last_msg, sizeof(st->last_msg),
			 "retry: attempt %u could not start", st->attempts);
		finish(st, HALO_FUT_ERROR, -ENOMEM, NULL, st->last_msg);
		return;
	}
	if (st->why == WHY_CANCEL) /* fn cancelled the retry itself */
		halo_fut_cancel(st->att);
	else
		arm_attempt_timer(st);
	st->w_att.fn = on_attempt;
	st->w_att.arg = st;
	halo_fut_add_waiter(st->att, &st->w_att);
}

static void keep_error(struct rst *st, int err, const char *msg)
{
	st->last_err = err;
	if (msg)
		snprintf(st->last_msg, sizeof(st->last_msg), "%s", msg);
	else
		st->last_msg[0] = '\0';
}

/* An attempt failed with err (already recorded): retry after a delay, or
 * give up. */
static void after_failure(struct rst *st)
{
	halo_retry_pred pred =
	    st->bo.p.retry_if ? st->bo.p.retry_if : default_pred;
	uint64_t delay, now;

	if (st->attempts >= st->bo.p.max_attempts ||
	    !pred(st->last_err, st->last_msg[0] ? st->last_msg : NULL,
		  st->bo.p.retry_if_arg)) {
		finish(st, HALO_FUT_ERROR, st->last_err, NULL,
		       st->last_msg[0] ? st->last_msg : NULL);
		return;
	}
	delay = halo_backoff_next(&st->bo);
	now = halo_now_ns();
	if (st->deadline_ns && now + delay >= st->deadline_ns) {
		fail_deadline(st);
		return;
	}
	st->phase = IN_BACKOFF;
	arm_timer(st, now + delay);
	if (!st->timer)
		start_attempt(st); /* no timer memory: retry without a pause */
}

static void on_attempt(halo_fut *f, void *arg)
{
	struct rst *st = arg;
	halo_fut_state s = halo_fut_status(f);
	int64_t r = halo_fut_result(f);
	void *value = halo_fut_value(f);
	int why = st->why;

	st->att = NULL;
	drop_timer(st);
	if (s == HALO_FUT_OK) {
		halo_fut_release(f);
		finish(st, HALO_FUT_OK, r, value, NULL);
		return;
	}
	if (why == WHY_ATTEMPT_TIMEOUT) {
		char msg[64];
		snprintf(msg, sizeof(msg), "retry: attempt %u timed out",
			 st->attempts);
		keep_error(st, -ETIMEDOUT, msg);
	} else if (why == WHY_NONE || s != HALO_FUT_CANCELLED) {
		/* an attempt we cancelled says nothing about the service */
		keep_error(st, r < 0 ? (int)r : -EIO, halo_fut_error_msg(f));
	}
	halo_fut_release(f);
	if (why == WHY_CANCEL)
		finish(st, HALO_FUT_CANCELLED, -ECANCELED, NULL, NULL);
	else if (why == WHY_DEADLINE)
		fail_deadline(st);
	else
		after_failure(st);
}

static void on_timer(halo_fut *f, void *arg)
{
	struct rst *st = arg;

	(void)f;
	halo_fut_release(st->timer);
	st->timer = NULL;
	if (st->phase == IN_BACKOFF) {
		start_attempt(st);
		return;
	}
	if (st->phase != IN_ATTEMPT)
		return;
	st->phase = STOPPING;
	st->why = st->deadline_ns && halo_now_ns() >= st->deadline_ns
		      ? WHY_DEADLINE
		      : WHY_ATTEMPT_TIMEOUT;
	halo_fut_cancel(st->att);
}

static void on_cancel(halo_fut *out, void *arg)
{
	struct rst *st = arg;

	(void)out;
	if (st->phase == IN_BACKOFF) {
		finish(st, HALO_FUT_CANCELLED, -ECANCELED, NULL, NULL);
		return;
	}
	/* The attempt's completion finishes the retry: it must be done
	 * before the retry's future says so. */
	st->why = WHY_CANCEL;
	st->phase = STOPPING;
	drop_timer(st);
	if (st->att) /* else fn is still starting it: start_attempt cancels */
		halo_fut_cancel(st->att);
}

halo_fut *halo_retry_at(halo_loop *loop, const halo_retry_policy *policy,
			halo_retry_fn fn, void *arg, halo_retry_report *report,
			const char *file, int line)
{
	halo_fut *out;
	struct rst *st;

	if (!fn)
		return halo_fut_failed_at(loop, -EINVAL, "retry: no function",
					  file, line);
	out = halo_fut_new_at(loop, file, line);
	if (!out)
		return NULL;
	st = halo_mem_alloc(loop, sizeof(*st));
	if (!st) {
		halo_fut_release(out);
		return NULL;
	}
	memset(st, 0, sizeof(*st));
	st->loop = loop;
	st->out = halo_fut_ref(out); /* a caller's early release is safe */
	st->fn = fn;
	st->arg = arg;
	st->report = report;
	halo_backoff_init(&st->bo, policy);
	if (report || st->bo.p.timeout_ns)
		st->start_ns = halo_now_ns();
	if (st->bo.p.timeout_ns)
		st->deadline_ns = st->start_ns + st->bo.p.timeout_ns;
	if (report)
		memset(report, 0, sizeof(*report));
	halo_fut_set_cancel(out, on_cancel, st);
	start_attempt(st);
	return out;
}
