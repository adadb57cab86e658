/* halo_saga: reserve, charge, ship. A failed step compensates the done ones
 * in reverse order; compensations retry, abort or recover forward; async
 * steps overlap; timeouts and cancels leave nothing in flight. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "tests/util.h"

TU_LOOP_PIPE_FIXTURE(loop, pfd)

#define MS 1000000ull

/* The order being processed, and what happened to it. */
struct order {
	int fail_at;		   /* step index that fails, -1 none */
	uint64_t step_ms;	   /* how long each step takes */
	unsigned comp_fails;	   /* compensation attempts that fail first */
	unsigned comp_attempts[8]; /* per step */
	int undone[8], undone_n;   /* steps whose compensation succeeded */
	int abort_at;		   /* step whose compensation aborts, -1 */
	int continue_at;	   /* step whose compensation continues, -1 */
	int64_t seen_reserve;	   /* charge saw reserve's result */
	int64_t seen_ship;	   /* notify saw ship's result */
};

static halo_fut *step_at(halo_saga *sg, struct order *o, int i)
{
	halo_loop *l = halo_saga_loop(sg);

	if (o->fail_at == i)
		return halo_fut_delayed_failed(l, o->step_ms * MS, -EIO,
					       "carrier down");
	return halo_fut_delayed(l, o->step_ms * MS, 100 + i, o);
}

static halo_fut *reserve(halo_saga *sg, void *ctx)
{
	return step_at(sg, ctx, 0);
}

static halo_fut *charge(halo_saga *sg, void *ctx)
{
	struct order *o = ctx;

	ck_assert_int_eq(
	    halo_saga_effect(sg, "reserve", &o->seen_reserve, NULL), 0);
	ck_assert_int_eq(halo_saga_effect(sg, "ship", NULL, NULL), -EAGAIN);
	ck_assert_int_eq(halo_saga_effect(sg, "nope", NULL, NULL), -ENOENT);
	return step_at(sg, ctx, 1);
}

static halo_fut *ship(halo_saga *sg, void *ctx)
{
	ck_assert_ptr_eq(halo_saga_value(sg, "charge"), ctx);
	return step_at(sg, ctx, 2);
}

static halo_fut *notify(halo_saga *sg, void *ctx)
{
	struct order *o = ctx;

	ck_assert_int_eq(halo_saga_effect(sg, "ship", &o->seen_ship, NULL), 0);
	return step_at(sg, ctx, 3);
}

/* Every compensation: fails comp_fails times, may ask abort or continue. */
static halo_fut *undo(halo_saga *sg, void *ctx, int i)
{
	struct order *o = ctx;
	halo_loop *l = halo_saga_loop(sg);
	const char *failed;
	int err;

	ck_assert_int_eq(halo_saga_failure(sg, &failed, &err), o->fail_at);
	ck_assert_int_eq(err, -EIO);
	if (++o->comp_attempts[i] <= o->comp_fails)
		return halo_fut_delayed_failed(l, 1 * MS, -EAGAIN,
					       "ledger busy");
	if (o->abort_at == i)
		ck_assert_int_eq(halo_saga_abort(sg), 0);
	if (o->continue_at == i) {
		ck_assert_int_eq(halo_saga_continue(sg, 99, NULL), 0);
		return halo_fut_ready(l, 0, NULL);
	}
	o->undone[o->undone_n++] = i;
	return halo_fut_delayed(l, 1 * MS, 0, NULL);
}

static halo_fut *unreserve(halo_saga *sg, void *ctx)
{
	return undo(sg, ctx, 0);
}

static halo_fut *refund(halo_saga *sg, void *ctx)
{
	return undo(sg, ctx, 1);
}

static halo_fut *unship(halo_saga *sg, void *ctx)
{
	return undo(sg, ctx, 2);
}

static const halo_saga_step order_steps[] = {
    {.name = "reserve", .run = reserve, .compensate = unreserve},
    {.name = "charge", .run = charge, .compensate = refund},
    {.name = "ship", .run = ship, .compensate = unship},
    {.name = "notify", .run = notify},
};

struct finals {
	int n;
	halo_saga_outcome outcome;
};

static void on_final(halo_saga *sg, const halo_saga_report *rep, void *arg)
{
	struct finals *f = arg;

	(void)sg;
	f->n++;
	f->outcome = rep->outcome;
}

/* fail_at, step_ms, comp_fails, abort_at, continue_at */
#define ORDER(fail, ms, cfails, abort, cont)                                   \
	{                                                                      \
		.fail_at = (fail), .step_ms = (ms), .comp_fails = (cfails),    \
		.abort_at = (abort), .continue_at = (cont)                     \
	}

/* The service engineer's story: reserve, charge through a circuit breaker,
 * ship; shipping fails, the refund is retried with backoff until the
 * ledger takes it, then the stock is released. */
struct shop {
	halo_breaker payments;
	unsigned refund_tries;
	int log[8], log_n;
};

static halo_fut *shop_reserve(halo_saga *sg, void *ctx)
{
	(void)ctx;
	return halo_fut_delayed(halo_saga_loop(sg), 1 * MS, 1, NULL);
}

static halo_fut *shop_release(halo_saga *sg, void *ctx)
{
	struct shop *sh = ctx;

	sh->log[sh->log_n++] = 0;
	return halo_fut_delayed(halo_saga_loop(sg), 1 * MS, 0, NULL);
}

static halo_fut *card_api(halo_loop *l, void *arg)
{
	return halo_fut_delayed(l, 1 * MS, 4200, arg); /* cents charged */
}

static halo_fut *shop_charge(halo_saga *sg, void *ctx)
{
	struct shop *sh = ctx;

	(void)sg;
	return halo_breaker_call(&sh->payments, card_api, sh);
}

static halo_fut *shop_refund(halo_saga *sg, void *ctx)
{
	struct shop *sh = ctx;
	int64_t cents = 0;

	ck_assert_int_eq(halo_saga_effect(sg, "charge", &cents, NULL), 0);
	ck_assert_int_eq(cents, 4200);
	if (++sh->refund_tries < 3)
		return halo_fut_delayed_failed(halo_saga_loop(sg), 1 * MS,
					       -EAGAIN, "ledger busy");
	sh->log[sh->log_n++] = 1;
	return halo_fut_delayed(halo_saga_loop(sg), 1 * MS, 0, NULL);
}

static halo_fut *shop_ship(halo_saga *sg, void *ctx)
{
	(void)ctx;
	return halo_fut_delayed_failed(halo_saga_loop(sg), 1 * MS, -EIO,
				       "carrier down");
}

START_TEST(test_order_saga_with_breaker_and_retried_refund)
{
	static const halo_retry_policy patient = {
	    .max_attempts = 5, .base_delay_ns = 1 * MS, .seed = 3};
	static const halo_saga_step steps[] = {
	    {.name = "reserve",
	     .run = shop_reserve,
	     .compensate = shop_release},
	    {.name = "charge",
	     .run = shop_charge,
	     .compensate = shop_refund,
	     .comp_retry = &patient},
	    {.name = "ship", .run = shop_ship},
	};
	struct shop sh = {0};
	halo_saga_report rep;
	halo_breaker_stats bs;
	halo_fut *s;

	ck_assert_int_eq(halo_breaker_init(&sh.payments, &loop, NULL), 0);
	s = halo_saga_run(&loop, steps, 3, &sh,
			  &(halo_saga_opts){.report = &rep});
	ck_assert_int_eq(halo_fut_join(s), -EIO);
	ck_assert_str_eq(rep.failed_name, "ship");
	ck_assert_int_eq(rep.outcome, HALO_SAGA_COMPENSATED);
	ck_assert_uint_eq(sh.refund_tries, 3);
	ck_assert_int_eq(sh.log_n, 2);
	ck_assert_int_eq(sh.log[0], 1); /* refunded, */
	ck_assert_int_eq(sh.log[1], 0); /* then released */
	halo_breaker_get_stats(&sh.payments, &bs);
	ck_assert_uint_eq(bs.calls, 1);
	ck_assert_uint_eq(bs.successes, 1);
	halo_breaker_close(&sh.payments);
}
END_TEST

START_TEST(test_third_step_fails_and_compensations_run_2_then_1)
{
	struct order o = ORDER(2, 1, 0, -1, -1);
	struct finals fin = {0};
	halo_saga_report rep;
	halo_saga_opts opts = {
	    .report = &rep, .on_final = on_final, .final_arg = &fin};
	halo_fut *s = halo_saga_run(&loop, order_steps, 3, &o, &opts);

	ck_assert_int_eq(halo_fut_wait(s), -EIO);
	ck_assert_int_eq(o.undone_n, 2);
	ck_assert_int_eq(o.undone[0], 1); /* refund first */
	ck_assert_int_eq(o.undone[1], 0); /* then unreserve */
	ck_assert_int_eq(rep.outcome, HALO_SAGA_COMPENSATED);
	ck_assert_uint_eq(rep.failed_step, 2);
	ck_assert_str_eq(rep.failed_name, "ship");
	ck_assert_int_eq(rep.err, -EIO);
	ck_assert_str_eq(rep.msg, "carrier down");
	ck_assert_uint_eq(rep.comp_n, 2);
	ck_assert_uint_eq(rep.comp_order[0], 1);
	ck_assert_uint_eq(rep.comp_order[1], 0);
	ck_assert_uint_eq(rep.comp_ran, 0x3);
	ck_assert_uint_eq(rep.comp_ok, 0x3);
	ck_assert_uint_eq(rep.comp_failed, 0);
	ck_assert_ptr_nonnull(strstr(halo_fut_error_msg(s), "'ship'"));
	ck_assert_ptr_nonnull(strstr(halo_fut_error_msg(s), "carrier down"));
	ck_assert_int_eq(fin.n, 1);
	ck_assert_int_eq(fin.outcome, HALO_SAGA_COMPENSATED);
	halo_fut_release(s);
}
END_TEST

struct tracelog {
	halo_saga_event ev[32];
	uint64_t at[32];
	int n;
};

static void tracer(halo_saga *sg, const halo_saga_event *ev, void *arg)
{
	struct tracelog *t = arg;

	(void)sg;
	ck_assert_int_lt(t->n, 32);
	t->at[t->n] = halo_now_ns();
	t->ev[t->n++] = *ev;
}

START_TEST(test_committed_saga_passes_effects_by_name_and_traces_each_step)
{
	struct order o = ORDER(-1, 5, 0, -1, -1);
	struct tracelog tl = {0};
	struct finals fin = {0};
	halo_saga_opts opts = {.trace = tracer,
			       .trace_arg = &tl,
			       .on_final = on_final,
			       .final_arg = &fin};
	halo_fut *s = halo_saga_run(&loop, order_steps, 4, &o, &opts);

	ck_assert_int_eq(halo_fut_wait(s), 4);
	ck_assert_ptr_eq(halo_fut_value(s), &o); /* the last step's value */
	ck_assert_int_eq(o.seen_reserve, 100);
	ck_assert_int_eq(o.seen_ship, 102);
	ck_assert_int_eq(tl.n, 8);
	for (int i = 0; i < 4; i++) {
		halo_saga_event *a = &tl.ev[2 * i], *b = &tl.ev[2 * i + 1];
		ck_assert_int_eq(a->kind, HALO_SAGA_STEP_START);
		ck_assert_int_eq(b->kind, HALO_SAGA_STEP_END);
		ck_assert_uint_eq(a->step, (size_t)i);
		ck_assert_str_eq(b->name, order_steps[i].name);
		ck_assert_int_eq(b->result, 100 + i);
		ck_assert_uint_ge(b->duration_ns, 4 * MS);
	}
	ck_assert_int_eq(fin.n, 1);
	ck_assert_int_eq(fin.outcome, HALO_SAGA_COMMITTED);
	ck_assert_int_eq(o.undone_n, 0);
	halo_fut_release(s);
}
END_TEST

START_TEST(test_tracer_sees_compensations_in_reverse_order)
{
	struct order o = ORDER(2, 1, 0, -1, -1);
	struct tracelog tl = {0};
	halo_saga_opts opts = {.trace = tracer, .trace_arg = &tl};
	halo_fut *s = halo_saga_run(&loop, order_steps, 3, &o, &opts);
	/* start/end of the 3 steps, then of refund and of unreserve */
	halo_saga_event_kind kinds[] = {
	    HALO_SAGA_STEP_START, HALO_SAGA_STEP_END,	HALO_SAGA_STEP_START,
	    HALO_SAGA_STEP_END,	  HALO_SAGA_STEP_START, HALO_SAGA_STEP_END,
	    HALO_SAGA_COMP_START, HALO_SAGA_COMP_END,	HALO_SAGA_COMP_START,
	    HALO_SAGA_COMP_END};
	size_t steps[] = {0, 0, 1, 1, 2, 2, 1, 1, 0, 0};

	ck_assert_int_eq(halo_fut_join(s), -EIO);
	ck_assert_int_eq(tl.n, 10);
	for (int i = 0; i < 10; i++) {
		ck_assert_int_eq(tl.ev[i].kind, kinds[i]);
		ck_assert_uint_eq(tl.ev[i].step, steps[i]);
	}
	ck_assert_int_eq(tl.ev[5].result, -EIO);
	ck_assert_uint_ge(tl.ev[7].duration_ns, 1 * MS);
}
END_TEST

START_TEST(test_compensation_that_fails_twice_succeeds_under_retry)
{
	halo_retry_policy pol = {.max_attempts = 5, .base_delay_ns = 1 * MS};
	halo_saga_step steps[3];
	struct order o = ORDER(2, 1, 2, -1, -1);
	halo_saga_report rep;
	halo_saga_opts opts = {.report = &rep};
	halo_fut *s;

	memcpy(steps, order_steps, sizeof(steps));
	steps[0].comp_retry = &pol;
	steps[1].comp_retry = &pol;
	s = halo_saga_run(&loop, steps, 3, &o, &opts);
	ck_assert_int_eq(halo_fut_wait(s), -EIO);
	ck_assert_uint_eq(o.comp_attempts[1], 3);
	ck_assert_uint_eq(o.comp_attempts[0], 3);
	ck_assert_int_eq(rep.outcome, HALO_SAGA_COMPENSATED);
	ck_assert_uint_eq(rep.comp_ok, 0x3);
	halo_fut_release(s);
}
END_TEST

START_TEST(test_compensation_without_retry_fails_and_the_rest_go_on)
{
	struct order o = ORDER(2, 1, 1, -1, -1);
	halo_saga_report rep;
	halo_saga_opts opts = {.report = &rep};
	halo_fut *s = halo_saga_run(&loop, order_steps, 3, &o, &opts);

	ck_assert_int_eq(halo_fut_wait(s), -EIO);
	ck_assert_int_eq(rep.outcome, HALO_SAGA_COMP_FAILED);
	ck_assert_uint_eq(rep.comp_ran, 0x3);
	ck_assert_uint_eq(rep.comp_failed, 0x3);
	ck_assert_ptr_nonnull(strstr(halo_fut_error_msg(s), "2 failed"));
	halo_fut_release(s);
}
END_TEST

START_TEST(test_abort_stops_compensating)
{
	struct order o = ORDER(2, 1, 0, 1, -1);
	struct finals fin = {0};
	halo_saga_report rep;
	halo_saga_opts opts = {
	    .report = &rep, .on_final = on_final, .final_arg = &fin};
	halo_fut *s = halo_saga_run(&loop, order_steps, 3, &o, &opts);

	ck_assert_int_eq(halo_fut_wait(s), -EIO);
	ck_assert_int_eq(rep.outcome, HALO_SAGA_ABORTED);
	ck_assert_uint_eq(rep.aborted_at, 1);
	ck_assert_uint_eq(rep.comp_ran, 0x2); /* unreserve never ran */
	ck_assert_uint_eq(o.comp_attempts[0], 0);
	ck_assert_ptr_nonnull(strstr(halo_fut_error_msg(s), "aborted"));
	ck_assert_int_eq(fin.outcome, HALO_SAGA_ABORTED);
	halo_fut_release(s);
}
END_TEST

START_TEST(test_continue_recovers_forward_with_a_substitute)
{
	struct order o = ORDER(2, 1, 0, -1, 1);
	halo_saga_report rep;
	halo_saga_opts opts = {.report = &rep};
	halo_fut *s = halo_saga_run(&loop, order_steps, 4, &o, &opts);

	ck_assert_int_eq(halo_fut_wait(s), 4);
	ck_assert_int_eq(rep.outcome, HALO_SAGA_COMMITTED);
	ck_assert_uint_eq(rep.recovered_at, 1);
	ck_assert_uint_eq(rep.failed_step, 2);
	ck_assert_int_eq(o.seen_ship, 99); /* notify saw the substitute */
	ck_assert_uint_eq(o.comp_attempts[0], 0);
	ck_assert_int_eq(o.undone_n, 0);
	halo_fut_release(s);
}
END_TEST

static halo_fut *slow_step(halo_saga *sg, void *ctx)
{
	(void)ctx;
	return halo_fut_delayed(halo_saga_loop(sg), 100 * MS, 1, NULL);
}

static halo_fut *after_step(halo_saga *sg, void *ctx)
{
	(void)ctx;
	for (int i = 0; i < 3; i++) {
		const char *n[] = {"a", "b", "c"};
		ck_assert_int_eq(halo_saga_effect(sg, n[i], NULL, NULL), 0);
	}
	return halo_fut_ready(halo_saga_loop(sg), 2, NULL);
}

START_TEST(test_async_steps_overlap_and_the_next_sync_step_waits)
{
	static const halo_saga_step steps[] = {
	    {.name = "a", .run = slow_step, .flags = HALO_SAGA_ASYNC},
	    {.name = "b", .run = slow_step, .flags = HALO_SAGA_ASYNC},
	    {.name = "c", .run = slow_step, .flags = HALO_SAGA_ASYNC},
	    {.name = "d", .run = after_step},
	};
	struct tracelog tl = {0};
	halo_saga_opts opts = {.trace = tracer, .trace_arg = &tl};
	uint64_t t0 = halo_now_ns(), last_start = 0, first_end = UINT64_MAX;
	halo_fut *s = halo_saga_run(&loop, steps, 4, NULL, &opts);

	ck_assert_int_eq(halo_fut_wait(s), 4);
	ck_assert_uint_lt(halo_now_ns() - t0, 250 * MS); /* not 300 ms */
	for (int i = 0; i < tl.n; i++) {
		if (tl.ev[i].step == 3)
			continue;
		if (tl.ev[i].kind == HALO_SAGA_STEP_START &&
		    tl.at[i] > last_start)
			last_start = tl.at[i];
		if (tl.ev[i].kind == HALO_SAGA_STEP_END && tl.at[i] < first_end)
			first_end = tl.at[i];
	}
	ck_assert_uint_lt(last_start, first_end); /* all three at once */
	ck_assert_int_eq(tl.ev[6].kind, HALO_SAGA_STEP_START);
	ck_assert_uint_eq(tl.ev[6].step, 3);
	halo_fut_release(s);
}
END_TEST

static char rbuf[16];
static halo_fut *hang_read(halo_saga *sg, void *ctx)
{
	return halo_read(halo_saga_loop(sg), *(int *)ctx, rbuf, sizeof(rbuf),
			 -1);
}

static halo_fut *fail_soon(halo_saga *sg, void *ctx)
{
	(void)ctx;
	return halo_fut_delayed_failed(halo_saga_loop(sg), 10 * MS, -EIO,
				       "declined");
}

static int comp_calls;
static halo_fut *count_comp(halo_saga *sg, void *ctx)
{
	(void)ctx;
	comp_calls++;
	return halo_fut_ready(halo_saga_loop(sg), 0, NULL);
}

START_TEST(test_failure_in_an_async_group_cancels_its_siblings)
{
	static const halo_saga_step steps[] = {
	    {.name = "ok",
	     .run = slow_step,
	     .compensate = count_comp,
	     .flags = HALO_SAGA_ASYNC},
	    {.name = "read",
	     .run = hang_read,
	     .compensate = count_comp,
	     .flags = HALO_SAGA_ASYNC},
	    {.name = "bad", .run = fail_soon, .flags = HALO_SAGA_ASYNC},
	};
	halo_saga_report rep;
	halo_saga_opts opts = {.report = &rep};
	halo_fut *s;

	comp_calls = 0;
	/* "ok" takes 100 ms and is cancelled too: a delayed future ends
	 * CANCELLED, so nothing is compensated */
	s = halo_saga_run(&loop, steps, 3, &pfd[0], &opts);
	ck_assert_int_eq(halo_fut_wait(s), -EIO);
	ck_assert_str_eq(rep.failed_name, "bad");
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	ck_assert_int_eq(comp_calls, 0);
	ck_assert_uint_eq(rep.comp_ran, 0);
	halo_fut_release(s);
}
END_TEST

START_TEST(test_step_timeout_fails_the_step_with_etimedout)
{
	static const halo_saga_step steps[] = {
	    {.name = "first",
	     .run = slow_step,
	     .compensate = count_comp,
	     .timeout_ns = 1000 * MS},
	    {.name = "read", .run = hang_read, .timeout_ns = 30 * MS},
	};
	halo_saga_report rep;
	halo_saga_opts opts = {.report = &rep};
	halo_fut *s;

	comp_calls = 0;
	s = halo_saga_run(&loop, steps, 2, &pfd[0], &opts);
	ck_assert_int_eq(halo_fut_wait(s), -ETIMEDOUT);
	ck_assert_str_eq(rep.failed_name, "read");
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	ck_assert_int_eq(comp_calls, 1);
	ck_assert_int_eq(rep.outcome, HALO_SAGA_COMPENSATED);
	halo_fut_release(s);
}
END_TEST

static void cancel_cb(halo_fut *t, void *arg)
{
	(void)t;
	halo_fut_cancel(arg);
}

START_TEST(test_cancelled_saga_compensates_and_ends_cancelled)
{
	static const halo_saga_step steps[] = {
	    {.name = "first", .run = slow_step, .compensate = count_comp},
	    {.name = "read", .run = hang_read, .compensate = count_comp},
	};
	halo_saga_report rep;
	halo_saga_opts opts = {.report = &rep};
	halo_fut *s, *t;

	comp_calls = 0;
	s = halo_saga_run(&loop, steps, 2, &pfd[0], &opts);
	t = halo_timer_after(&loop, 150 * MS);
	halo_fut_on_done(t, cancel_cb, s);
	ck_assert_int_eq(halo_fut_wait(s), -ECANCELED);
	ck_assert_int_eq(halo_fut_status(s), HALO_FUT_CANCELLED);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	ck_assert_int_eq(comp_calls, 1);
	ck_assert_str_eq(rep.failed_name, "read");
	ck_assert_int_eq(rep.err, -ECANCELED);
	halo_fut_release(s);
	halo_fut_release(t);
}
END_TEST

static int64_t saga_fiber(halo_loop *l, void *arg)
{
	return halo_fut_join(halo_saga_run(l, order_steps, 4, arg, NULL));
}

START_TEST(test_saga_runs_inside_a_fiber)
{
	struct order o = ORDER(-1, 1, 0, -1, -1);

	ck_assert_int_eq(halo_fut_join(halo_spawn(&loop, saga_fiber, &o)), 4);
	ck_assert_int_eq(o.seen_ship, 102);
}
END_TEST

START_TEST(test_bad_definitions_fail_with_einval)
{
	halo_saga_step nameless = {.run = reserve};

	ck_assert_int_eq(
	    halo_fut_join(halo_saga_run(&loop, order_steps, 0, NULL, NULL)),
	    -EINVAL);
	ck_assert_int_eq(
	    halo_fut_join(halo_saga_run(&loop, &nameless, 1, NULL, NULL)),
	    -EINVAL);
}
END_TEST

static halo_fut *nop_step(halo_saga *sg, void *ctx)
{
	(void)ctx;
	return halo_nop(halo_saga_loop(sg));
}

static void saga_round(void)
{
	static const halo_saga_step steps[] = {
	    {.name = "a", .run = nop_step, .compensate = nop_step},
	    {.name = "b", .run = nop_step, .flags = HALO_SAGA_ASYNC},
	    {.name = "c",
	     .run = nop_step,
	     .flags = HALO_SAGA_ASYNC,
	     .timeout_ns = 1000 * MS},
	};
	halo_fut *f[16];

	for (int i = 0; i < 16; i++)
		f[i] = halo_saga_run(&loop, steps, 3, NULL, NULL);
	for (int i = 0; i < 16; i++)
		ck_assert_int_eq(halo_fut_join(f[i]), 3);
}

START_TEST(test_saga_allocates_nothing_after_warm_up)
{
	halo_stats a, b;

	saga_round();
	halo_loop_stats(&loop, &a);
	for (int r = 0; r < 10; r++)
		saga_round();
	halo_loop_stats(&loop, &b);
	ck_assert_uint_eq(b.pool_allocs, a.pool_allocs);
}
END_TEST

Suite *saga_suite(void)
{
	Suite *s = suite_create("saga");
	TCase *tc = tcase_create("saga");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(10));
	tcase_add_test(tc, test_order_saga_with_breaker_and_retried_refund);
	tcase_add_test(tc,
		       test_third_step_fails_and_compensations_run_2_then_1);
	tcase_add_test(
	    tc,
	    test_committed_saga_passes_effects_by_name_and_traces_each_step);
	tcase_add_test(tc,
		       test_compensation_that_fails_twice_succeeds_under_retry);
	tcase_add_test(
	    tc, test_compensation_without_retry_fails_and_the_rest_go_on);
	tcase_add_test(tc, test_abort_stops_compensating);
	tcase_add_test(tc, test_continue_recovers_forward_with_a_substitute);
	tcase_add_test(tc,
		       test_async_steps_overlap_and_the_next_sync_step_waits);
	tcase_add_test(tc, test_failure_in_an_async_group_cancels_its_siblings);
	tcase_add_test(tc, test_step_timeout_fails_the_step_with_etimedout);
	tcase_add_test(tc, test_cancelled_saga_compensates_and_ends_cancelled);
	tcase_add_test(tc, test_saga_runs_inside_a_fiber);
	tcase_add_test(tc, test_bad_definitions_fail_with_einval);
	tcase_add_test(tc, test_saga_allocates_nothing_after_warm_up);
	tcase_add_test(tc, test_tracer_sees_compensations_in_reverse_order);
	suite_add_tcase(s, tc);
	return s;
}
