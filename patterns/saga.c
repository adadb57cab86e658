/* Sagas: one state block from the loop's pool with a slot per step. Forward
 * execution runs one group at a time (a synchronous step, or a run of
 * asynchronous ones); compensation walks the slots down from the top, one
 * compensation at a time. A slot's status is the truth about its effect:
 * DONE means in place, and "go forward" always means "from the first slot
 * that is not DONE", which is what makes forward recovery simple. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "saga.h"

#include "../runtime/loop.h"
#include "../runtime/pool.h"
#include "../runtime/timer.h"

enum { S_IDLE, S_RUNNING, S_DONE, S_FAILED, S_COMPENSATED, S_COMP_FAILED };
enum { FORWARD, COMPENSATING };

struct slot {
	halo_fut *f, *timer;
	halo_waiter w, wt;
	struct halo_saga *sg;
	size_t idx;
	int64_t result;
	void *value;
	uint64_t t0;
	uint8_t status;
	bool timed_out;
};

struct halo_saga {
	halo_loop *loop;
	halo_fut *out;
	const halo_saga_step *steps;
	size_t n, size;
	void *ctx;
	halo_saga_opts o;
	halo_saga_report rep;
	uint64_t start_ns;
	int phase;
	size_t g0, g1, running;
	bool failed, cancelled, in_comp, ask_abort, ask_cont;
	size_t comp; /* the step being compensated */
	halo_fut *cf;
	halo_waiter cw;
	uint64_t ct0;
	int64_t cont_result;
	void *cont_value;
	halo_retry_policy comp_policy;
	struct slot slots[];
};

const char *halo_saga_outcome_name(halo_saga_outcome o)
{
	switch (o) {
	case HALO_SAGA_COMMITTED:
		return "committed";
	case HALO_SAGA_COMPENSATED:
		return "compensated";
	case HALO_SAGA_COMP_FAILED:
		return "compensation failed";
	case HALO_SAGA_ABORTED:
		return "aborted";
	}
	return "?";
}

static void trace(struct halo_saga *sg, halo_saga_event_kind kind, size_t i,
		  int64_t result, uint64_t t0)
{
	halo_saga_event ev = {kind, i, sg->steps[i].name, result, 0};

	if (!sg->o.trace)
		return;
	if (kind == HALO_SAGA_STEP_END || kind == HALO_SAGA_COMP_END)
		ev.duration_ns = halo_now_ns() - t0;
	sg->o.trace(sg, &ev, sg->o.trace_arg);
}

/* The failure message: which step failed, why, and what compensating did. */
static void failure_msg(const struct halo_saga *sg, char *buf, size_t len)
{
	const halo_saga_report *rep = &sg->rep;
	char tail[96];

	if (rep->outcome == HALO_SAGA_ABORTED)
		snprintf(tail, sizeof(tail), "compensation aborted at '%s'",
			 sg->steps[rep->aborted_at].name);
	else
		snprintf(tail, sizeof(tail), "%d compensations ran, %d failed",
			 __builtin_popcountll(rep->comp_ran),
			 __builtin_popcountll(rep->comp_failed));
	snprintf(buf, len, "saga: step '%s' failed%s%s; %s", rep->failed_name,
		 rep->msg[0] ? ": " : "", rep->msg, tail);
}

static void finish(struct halo_saga *sg)
{
	halo_saga_report *rep = &sg->rep;
	halo_fut *out = sg->out;
	char msg[256];

	if (sg->phase == FORWARD && !sg->failed)
		rep->outcome = HALO_SAGA_COMMITTED;
	else if (rep->aborted_at != SIZE_MAX)
		rep->outcome = HALO_SAGA_ABORTED;
	else if (rep->comp_failed)
		rep->outcome = HALO_SAGA_COMP_FAILED;
	else
		rep->outcome = HALO_SAGA_COMPENSATED;
	if (sg->start_ns)
		rep->elapsed_ns = halo_now_ns() - sg->start_ns;
	if (sg->o.report)
		*sg->o.report = *rep;
	if (sg->o.on_final)
		sg->o.on_final(sg, rep, sg->o.final_arg);
	if (rep->outcome == HALO_SAGA_COMMITTED) {
		halo_fut_resolve(out, (int64_t)sg->n,
				 sg->slots[sg->n - 1].value);
	} else if (sg->cancelled) {
		halo_fut_cancelled(out);
	} else {
		failure_msg(sg, msg, sizeof(msg));
		halo_fut_fail(out, rep->err, msg);
	}
	halo_mem_free(sg->loop, sg, sg->size);
	halo_fut_release(out);
}

static void next_comp(struct halo_saga *sg);
static void go_forward(struct halo_saga *sg);

static void record_failure(struct halo_saga *sg, size_t i, int err,
			   const char *msg)
{
	halo_saga_report *rep = &sg->rep;

	sg->failed = true;
	rep->failed_step = i;
	rep->failed_name = sg->steps[i].name;
	rep->err = err < 0 ? err : -EIO;
	snprintf(rep->msg, sizeof(rep->msg), "%s", msg ? msg : "");
	/* the rest of the group is stopped, and waited for */
	for (size_t j = sg->g0; j < sg->g1; j++)
		if (sg->slots[j].status == S_RUNNING)
			halo_fut_cancel(sg->slots[j].f);
}

static void step_failed(struct halo_saga *sg, size_t i, int err,
			const char *msg)
{
	struct slot *s = &sg->slots[i];

	s->status = S_FAILED;
	trace(sg, HALO_SAGA_STEP_END, i, err, s->t0);
	if (!sg->failed)
		record_failure(sg, i, err, msg);
}

static void group_member_done(struct halo_saga *sg)
{
	if (--sg->running)
		return;
	if (sg->failed) {
		sg->phase = COMPENSATING;
		sg->comp = sg->n;
		next_comp(sg);
	} else {
		go_forward(sg);
	}
}

static void drop_timer(struct slot *s)
{
	if (!s->timer)
		return;
	halo_fut_remove_waiter(s->timer, &s->wt);
	halo_fut_cancel(s->timer);
	halo_fut_release(s->timer);
	s->timer = NULL;
}

static void on_step(halo_fut *f, void *arg)
{
	struct slot *s = arg;
	struct halo_saga *sg = s->sg;
	int64_t r = halo_fut_result(f);

	drop_timer(s);
	s->f = NULL;
	if (halo_fut_status(f) == HALO_FUT_OK) {
		s->status = S_DONE;
		s->result = r;
		s->value = halo_fut_value(f);
		trace(sg, HALO_SAGA_STEP_END, s->idx, r, s->t0);
	} else if (s->timed_out) {
		step_failed(sg, s->idx, -ETIMEDOUT, "step timed out");
	} else {
		step_failed(sg, s->idx, (int)r, halo_fut_error_msg(f));
	}
	halo_fut_release(f);
	group_member_done(sg);
}

static void on_step_timer(halo_fut *t, void *arg)
{
	struct slot *s = arg;

	halo_fut_release(t);
	s->timer = NULL;
	s->timed_out = true;
	halo_fut_cancel(s->f);
}

static void start_step(struct halo_saga *sg, size_t i)
{
	const halo_saga_step *st = &sg->steps[i];
	struct slot *s = &sg->slots[i];
	uint64_t tmo = st->timeout_ns ? st->timeout_ns : sg->o.step_timeout_ns;

	s->t0 = tmo || sg->o.trace ? halo_now_ns() : 0;
	s->timed_out = false;
	trace(sg, HALO_SAGA_STEP_START, i, 0, 0);
	s->f = st->run(sg, sg->ctx);
	if (!s->f) {
		step_failed(sg, i, -ENOMEM, "step could not start");
		return;
	}
	s->status = S_RUNNING;
	sg->running++;
	if (sg->failed) /* the saga was cancelled while run was starting it */
		halo_fut_cancel(s->f);
	if (tmo) {
		s->timer = halo_timer_at(sg->loop, s->t0 + tmo);
		if (s->timer) {
			s->wt.fn = on_step_timer;
			s->wt.arg = s;
			halo_fut_add_waiter(s->timer, &s->wt);
		}
	}
	s->w.fn = on_step;
	s->w.arg = s;
	halo_fut_add_waiter(s->f, &s->w);
}

/* Start the group at the first step whose effect is not in place. */
static void go_forward(struct halo_saga *sg)
{
	size_t i = 0, end;

	while (i < sg->n && sg->slots[i].status == S_DONE)
		i++;
	if (i == sg->n) {
		finish(sg);
		return;
	}
	end = i + 1;
	if (sg->steps[i].flags & HALO_SAGA_ASYNC)
		while (end < sg->n && (sg->steps[end].flags & HALO_SAGA_ASYNC))
			end++;
	sg->g0 = i;
	sg->g1 = end;
	/* Held while starting, so that a step whose start fails (or that
	 * cancels the saga) cannot end the group before its siblings
	 * started. */
	sg->running = 1;
	for (size_t j = i; j < end && !sg->failed; j++)
		if (sg->slots[j].status != S_DONE)
			start_step(sg, j);
	group_member_done(sg);
}

static void on_comp(halo_fut *f, void *arg);

static halo_fut *comp_attempt(halo_loop *loop, void *arg, unsigned attempt)
{
	struct halo_saga *sg = arg;

	(void)loop;
	(void)attempt;
	return sg->steps[sg->comp].compensate(sg, sg->ctx);
}

static void start_comp(struct halo_saga *sg, size_t i)
{
	const halo_saga_step *st = &sg->steps[i];
	halo_saga_report *rep = &sg->rep;

	sg->comp = i;
	sg->in_comp = true;
	sg->ask_abort = sg->ask_cont = false;
	rep->comp_ran |= 1ull << i;
	if (rep->comp_n < HALO_SAGA_MAX_STEPS) /* a recovered saga may
						  compensate twice */
		rep->comp_order[rep->comp_n++] = (uint8_t)i;
	sg->ct0 = sg->o.trace ? halo_now_ns() : 0;
	trace(sg, HALO_SAGA_COMP_START, i, 0, 0);
	if (st->comp_retry) {
		sg->comp_policy = *st->comp_retry;
		sg->cf = halo_retry(sg->loop, &sg->comp_policy, comp_attempt,
				    sg, NULL);
	} else {
		sg->cf = st->compensate(sg, sg->ctx);
	}
	if (!sg->cf)
		sg->cf = halo_fut_failed(sg->loop, -ENOMEM,
					 "compensation could not start");
	if (!sg->cf) { /* nothing left to report it with */
		sg->in_comp = false;
		sg->slots[i].status = S_COMP_FAILED;
		rep->comp_failed |= 1ull << i;
		next_comp(sg);
		return;
	}
	sg->cw.fn = on_comp;
	sg->cw.arg = sg;
	halo_fut_add_waiter(sg->cf, &sg->cw);
}

static void recover(struct halo_saga *sg)
{
	struct slot *s = &sg->slots[sg->rep.failed_step];

	sg->rep.recovered_at = sg->comp;
	s->status = S_DONE;
	s->result = sg->cont_result;
	s->value = sg->cont_value;
	sg->failed = false;
	sg->phase = FORWARD;
	go_forward(sg);
}

static void on_comp(halo_fut *f, void *arg)
{
	struct halo_saga *sg = arg;
	size_t i = sg->comp;
	bool ok = halo_fut_status(f) == HALO_FUT_OK;
	int64_t r = halo_fut_result(f);

	sg->cf = NULL;
	sg->in_comp = false;
	halo_fut_release(f);
	trace(sg, HALO_SAGA_COMP_END, i, r, sg->ct0);
	if (ok)
		sg->rep.comp_ok |= 1ull << i;
	else
		sg->rep.comp_failed |= 1ull << i;
	if (sg->ask_cont && !sg->cancelled) {
		recover(sg); /* its step keeps its effect: it stays DONE */
		return;
	}
	sg->slots[i].status = ok ? S_COMPENSATED : S_COMP_FAILED;
	if (sg->ask_abort) {
		sg->rep.aborted_at = i;
		finish(sg);
		return;
	}
	next_comp(sg);
}

static void next_comp(struct halo_saga *sg)
{
	size_t i = sg->comp;

	while (i-- > 0) {
		if (sg->slots[i].status == S_DONE && sg->steps[i].compensate) {
			start_comp(sg, i);
			return;
		}
	}
	finish(sg);
}

static void on_cancel(halo_fut *out, void *arg)
{
	struct halo_saga *sg = arg;

	(void)out;
	if (sg->cancelled)
		return;
	sg->cancelled = true;
	if (sg->phase != FORWARD || sg->failed)
		return; /* compensations run to their end */
	for (size_t j = sg->g0; j < sg->g1; j++) {
		if (sg->slots[j].status == S_RUNNING) {
			record_failure(sg, j, -ECANCELED, "saga cancelled");
			return;
		}
	}
	/* a step's run cancelled the saga before any step of the group was
	 * running: blame the first one, which start_step then cancels */
	record_failure(sg, sg->g0, -ECANCELED, "saga cancelled");
}

halo_fut *halo_saga_run_at(halo_loop *loop, const halo_saga_step *steps,
			   size_t n, void *ctx, const halo_saga_opts *opts,
			   const char *file, int line)
{
	size_t size = sizeof(struct halo_saga) + n * sizeof(struct slot);
	struct halo_saga *sg;
	halo_fut *out;

	if (!steps || n == 0 || n > HALO_SAGA_MAX_STEPS)
		return halo_fut_failed_at(loop, -EINVAL, "saga: 1 to 64 steps",
					  file, line);
	for (size_t i = 0; i < n; i++)
		if (!steps[i].name || !steps[i].run)
			return halo_fut_failed_at(
			    loop, -EINVAL,
			    "saga: a step without a name or a run function",
			    file, line);
	out = halo_fut_new_at(loop, file, line);
	if (!out)
		return NULL;
	sg = halo_mem_zalloc(loop, size);
	if (!sg) {
		halo_fut_release(out);
		return NULL;
	}
	sg->loop = loop;
	sg->out = halo_fut_ref(out); /* a caller's early release is safe */
	sg->steps = steps;
	sg->n = n;
	sg->size = size;
	sg->ctx = ctx;
	if (opts)
		sg->o = *opts;
	if (sg->o.report || sg->o.on_final)
		sg->start_ns = halo_now_ns();
	sg->rep.failed_step = sg->rep.aborted_at = sg->rep.recovered_at =
	    SIZE_MAX;
	for (size_t i = 0; i < n; i++) {
		sg->slots[i].sg = sg;
		sg->slots[i].idx = i;
	}
	halo_fut_set_cancel(out, on_cancel, sg);
	go_forward(sg);
	return out;
}

static int find(const halo_saga *sg, const char *name)
{
	for (size_t i = 0; i < sg->n; i++)
		if (!strcmp(sg->steps[i].name, name))
			return (int)i;
	return -1;
}

int halo_saga_effect(const halo_saga *sg, const char *name, int64_t *result,
		     void **value)
{
	int i = find(sg, name);

	if (i < 0)
		return -ENOENT;
	if (sg->slots[i].status != S_DONE)
		return -EAGAIN;
	if (result)
		*result = sg->slots[i].result;
	if (value)
		*value = sg->slots[i].value;
	return 0;
}

void *halo_saga_value(const halo_saga *sg, const char *name)
{
	void *v = NULL;

	halo_saga_effect(sg, name, NULL, &v);
	return v;
}

int halo_saga_failure(const halo_saga *sg, const char **name, int *err)
{
	if (sg->rep.failed_step == SIZE_MAX)
		return -1;
	if (name)
		*name = sg->rep.failed_name;
	if (err)
		*err = sg->rep.err;
	return (int)sg->rep.failed_step;
}

int halo_saga_abort(halo_saga *sg)
{
	if (!sg->in_comp)
		return -EINVAL;
	sg->ask_abort = true;
	return 0;
}

int halo_saga_continue(halo_saga *sg, int64_t result, void *value)
{
	if (!sg->in_comp)
		return -EINVAL;
	if (sg->rep.recovered_at != SIZE_MAX)
		return -EALREADY;
	sg->ask_cont = true;
	sg->cont_result = result;
	sg->cont_value = value;
	return 0;
}

halo_loop *halo_saga_loop(const halo_saga *sg)
{
	return sg->loop;
}
