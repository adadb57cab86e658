/* Sweep program: channels, retry with backoff, the circuit breaker and
 * sagas. (Streams are in p_stream.c.) */
#include <errno.h>
#include <string.h>

#include "prog.h"

/* --- channels --- */

static int64_t producer(halo_loop *l, void *arg)
{
	halo_chan *ch = arg;
	int64_t r = 0;

	(void)l;
	for (int i = 0; i < 8 && r >= 0; i++)
		r = prog_join(halo_chan_send(ch, i, NULL));
	halo_chan_close(ch);
	return r;
}

/* The producer's end closes the channel, also when its fiber could not
 * start (no memory for its stack). */
static void producer_ended(halo_fut *f, void *arg)
{
	(void)f;
	halo_chan_close(arg);
}

static void step_chan(halo_loop *loop)
{
	halo_chan_opts o = {.cap = 2};
	halo_waiter ended = {.fn = producer_ended};
	halo_chan_msg m;
	halo_chan ch;
	halo_fut *f;
	int64_t sum = 0, r;

	if (!EXPECT(halo_chan_init(&ch, loop, &o), 0))
		return;
	ended.arg = &ch;
	f = halo_spawn(loop, producer, &ch);
	if (GOT(f))
		halo_fut_add_waiter(f, &ended);
	else
		halo_chan_close(&ch);
	while ((r = prog_join(halo_chan_recv(&ch, &m))) == 1)
		sum += m.v;
	if (!EXPECT(r, 0))
		halo_chan_close(&ch); /* the producer waits no longer */
	if (f && EXPECT(halo_fut_wait(f), 0) && !r)
		EXPECT(sum, 28);
	if (f)
		halo_fut_remove_waiter(f, &ended);
	prog_drop(&f, 1);
	halo_chan_destroy(&ch, NULL, NULL);
}

/* --- retry, breaker, saga --- */

static halo_fut *flaky(halo_loop *loop, void *arg, unsigned attempt)
{
	(void)arg;
	if (attempt < 3)
		return halo_fut_delayed_failed(loop, 0, -EAGAIN, "busy");
	return halo_fut_delayed(loop, 0, 42, NULL);
}

static void step_retry(halo_loop *loop)
{
	halo_retry_policy p = {.max_attempts = 5,
			       .base_delay_ns = MS / 2,
			       .jitter = HALO_JITTER_NONE};
	halo_retry_report rep;
	halo_fut *f = halo_retry(loop, &p, flaky, NULL, &rep);

	if (GOT(f) && EXPECT(halo_fut_join(f), 42))
		EXPECT(rep.attempts, 3);
}

static halo_fut *call_failing(halo_loop *loop, void *arg)
{
	(void)arg;
	return halo_fut_delayed_failed(loop, 0, -EIO, "down");
}

static halo_fut *call_ok(halo_loop *loop, void *arg)
{
	(void)arg;
	return halo_fut_delayed(loop, 0, 7, NULL);
}

static void step_breaker(halo_loop *loop)
{
	halo_breaker_opts o = {.window = 4,
			       .min_calls = 2,
			       .failure_ratio = 0.5,
			       .open_ns = 2 * MS};
	halo_breaker br;

	if (!EXPECT(halo_breaker_init(&br, loop, &o), 0))
		return;
	EXPECT(prog_join(halo_breaker_call(&br, call_failing, NULL)), -EIO);
	EXPECT(prog_join(halo_breaker_call(&br, call_failing, NULL)), -EIO);
	if (halo_breaker_state_now(&br) == HALO_BREAKER_OPEN) {
		EXPECT(prog_join(halo_breaker_call(&br, call_ok, NULL)),
		       -EAGAIN);
		EXPECT(halo_sleep(loop, 3 * MS), 0);
		if (EXPECT(prog_join(halo_breaker_call(&br, call_ok, NULL)), 7))
			EXPECT(halo_breaker_state_now(&br),
			       HALO_BREAKER_CLOSED);
	} else {
		/* Only a call that failed for want of memory is not
		 * counted against the dependency. */
		prog_got(false, "the breaker opening", __LINE__);
	}
	halo_breaker_close(&br);
}

static halo_fut *step_ok(halo_saga *sg, void *ctx)
{
	(void)ctx;
	return halo_fut_delayed(halo_saga_loop(sg), MS / 2, 1, NULL);
}

static halo_fut *step_fails(halo_saga *sg, void *ctx)
{
	(void)ctx;
	return halo_fut_delayed_failed(halo_saga_loop(sg), 0, -EIO, "no");
}

static halo_fut *undo(halo_saga *sg, void *ctx)
{
	(*(int *)ctx)++;
	return halo_fut_ready(halo_saga_loop(sg), 0, NULL);
}

static void step_saga(halo_loop *loop)
{
	const halo_saga_step steps[] = {
	    {.name = "reserve", .run = step_ok, .compensate = undo},
	    {.name = "charge",
	     .run = step_ok,
	     .compensate = undo,
	     .flags = HALO_SAGA_ASYNC},
	    {.name = "notify", .run = step_ok, .flags = HALO_SAGA_ASYNC},
	    {.name = "ship", .run = step_fails, .compensate = undo},
	};
	halo_saga_report rep;
	halo_saga_opts o = {.report = &rep};
	int undone = 0;
	halo_fut *f = halo_saga_run(loop, steps, 4, &undone, &o);

	if (GOT(f) && EXPECT(halo_fut_join(f), -EIO)) {
		/* A compensation without memory fails for good. */
		if (rep.outcome != HALO_SAGA_COMP_FAILED ||
		    prog_got(false, "a compensation", __LINE__))
			EXPECT(rep.outcome, HALO_SAGA_COMPENSATED);
		if (rep.outcome == HALO_SAGA_COMPENSATED)
			EXPECT(undone, 2);
	}
	f = halo_saga_run(loop, steps, 3, &undone, &o);
	if (GOT(f))
		EXPECT(halo_fut_join(f), 3);
}

int main(int argc, char **argv)
{
	static const struct prog_step steps[] = {
	    {"chan", step_chan},
	    {"retry", step_retry},
	    {"breaker", step_breaker},
	    {"saga", step_saga},
	};

	return prog_run(argc, argv, steps, sizeof(steps) / sizeof(steps[0]));
}
