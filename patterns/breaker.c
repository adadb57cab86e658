/* Circuit breaker: a ring of one byte per call in the window, a running
 * count of failures in it, and an epoch that tells an outcome from before a
 * state change apart from one that may move the state. Everything runs on
 * the loop's thread, so "exactly N probes" is a counter, not a race. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "breaker.h"

#include "../runtime/loop.h"
#include "../runtime/pool.h"

#define MS 1000000ull

const char *halo_breaker_state_name(halo_breaker_state s)
{
	switch (s) {
	case HALO_BREAKER_CLOSED:
		return "closed";
	case HALO_BREAKER_OPEN:
		return "open";
	case HALO_BREAKER_HALF_OPEN:
		return "half-open";
	}
	return "?";
}

int halo_breaker_init(halo_breaker *br, halo_loop *loop,
		      const halo_breaker_opts *opts)
{
	halo_breaker_opts o = opts ? *opts : (halo_breaker_opts){0};

	if (!o.window)
		o.window = 100;
	if (!o.min_calls)
		o.min_calls = 10;
	if (o.min_calls > o.window)
		o.min_calls = o.window;
	if (o.failure_ratio == 0)
		o.failure_ratio = 0.5;
	if (!o.open_ns)
		o.open_ns = 5000 * MS;
	if (!o.probes)
		o.probes = 1;
	if (!(o.failure_ratio > 0 && o.failure_ratio <= 1) ||
	    o.probes > o.window)
		return -EINVAL;
	memset(br, 0, sizeof(*br));
	br->ring = halo_mem_zalloc(loop, o.window);
	if (!br->ring)
		return -ENOMEM;
	br->loop = loop;
	br->o = o;
	return 0;
}

void halo_breaker_close(halo_breaker *br)
{
	if (br->ring)
		halo_mem_free(br->loop, br->ring, br->o.window);
	br->ring = NULL;
}

static void move_to(halo_breaker *br, halo_breaker_state to)
{
	halo_breaker_state from = br->state;

	br->state = to;
	br->epoch++;
	br->head = br->n = br->bad = 0;
	memset(br->ring, 0, br->o.window);
	br->probes_out = br->probes_done = br->probes_bad = 0;
	if (to == HALO_BREAKER_OPEN) {
		br->opened_at = halo_now_ns();
		br->st.opened++;
	}
	if (from != to && br->o.on_change)
		br->o.on_change(br, from, to, br->o.on_change_arg);
}

static void end_open_period(halo_breaker *br)
{
	if (br->state == HALO_BREAKER_OPEN &&
	    halo_now_ns() - br->opened_at >= br->o.open_ns)
		move_to(br, HALO_BREAKER_HALF_OPEN);
}

halo_breaker_state halo_breaker_state_now(halo_breaker *br)
{
	end_open_period(br);
	return br->state;
}

void halo_breaker_force(halo_breaker *br, halo_breaker_state to)
{
	move_to(br, to);
}

int halo_breaker_acquire(halo_breaker *br, halo_breaker_permit *permit)
{
	end_open_period(br);
	switch (br->state) {
	case HALO_BREAKER_CLOSED:
		permit->is_probe = false;
		break;
	case HALO_BREAKER_HALF_OPEN:
		if (br->probes_out >= br->o.probes)
			goto refuse;
		br->probes_out++;
		permit->is_probe = true;
		break;
	default:
		goto refuse;
	}
	permit->epoch = br->epoch;
	/* the clock is read only when someone asks how long calls take */
	permit->start_ns = br->o.slow_call_ns ? halo_now_ns() : 0;
	br->st.calls++;
	return 0;
refuse:
	br->st.rejected++;
	return -EAGAIN;
}

static bool is_failure(const halo_breaker *br, int err)
{
	if (br->o.is_failure)
		return br->o.is_failure(err, br->o.is_failure_arg);
	return err != -ECANCELED;
}

static bool too_bad(const halo_breaker *br, uint32_t bad, uint32_t n)
{
	return (double)bad >= br->o.failure_ratio * (double)n;
}

static void push(halo_breaker *br, bool bad)
{
	if (br->n == br->o.window)
		br->bad -= br->ring[br->head];
	else
		br->n++;
	br->ring[br->head] = bad;
	br->bad += bad;
	br->head = (br->head + 1) % br->o.window;
}

/* An admitted call that says nothing about the dependency (cancelled, or
 * never made): a probe gives its place to another. */
static void forget(halo_breaker *br, const halo_breaker_permit *permit)
{
	br->st.ignored++;
	if (permit->epoch == br->epoch && permit->is_probe)
		br->probes_out--;
}

void halo_breaker_record(halo_breaker *br, const halo_breaker_permit *permit,
			 int64_t err)
{
	bool current = permit->epoch == br->epoch;
	bool slow = br->o.slow_call_ns &&
		    halo_now_ns() - permit->start_ns > br->o.slow_call_ns;
	bool failed = err < 0 && is_failure(br, (int)err);
	bool bad = failed || slow;

	if (err < 0 && !failed) {
		forget(br, permit);
		return;
	}
	br->st.failures += failed;
	br->st.slow += slow;
	br->st.successes += !bad;
	if (!current)
		return;
	if (br->state == HALO_BREAKER_CLOSED) {
		push(br, bad);
		if (br->n >= br->o.min_calls && too_bad(br, br->bad, br->n))
			move_to(br, HALO_BREAKER_OPEN);
	} else if (br->state == HALO_BREAKER_HALF_OPEN && permit->is_probe) {
		br->probes_done++;
		br->probes_bad += bad;
		if (br->probes_done < br->o.probes)
			return;
		move_to(br, too_bad(br, br->probes_bad, br->probes_done)
				? HALO_BREAKER_OPEN
				: HALO_BREAKER_CLOSED);
	}
}

void halo_breaker_get_stats(const halo_breaker *br, halo_breaker_stats *out)
{
	*out = br->st;
	out->window_n = br->n;
	out->window_bad = br->bad;
	out->state = br->state;
}

struct bcall {
	halo_waiter w;
	halo_breaker *br;
	halo_breaker_permit pm;
	halo_fut *in, *out;
};

static void on_call_done(halo_fut *in, void *arg)
{
	struct bcall *c = arg;
	halo_fut *out = c->out;
	halo_fut_state s = halo_fut_status(in);
	int64_t r = halo_fut_result(in);

	halo_breaker_record(c->br, &c->pm, s == HALO_FUT_OK ? 0 : r);
	if (s == HALO_FUT_OK)
		halo_fut_resolve(out, r, halo_fut_value(in));
	else if (s == HALO_FUT_CANCELLED)
		halo_fut_cancelled(out);
	else
		halo_fut_fail(out, (int)r, halo_fut_error_msg(in));
	halo_fut_release(in);
	halo_mem_free(c->br->loop, c, sizeof(*c));
	halo_fut_release(out);
}

static void on_call_cancel(halo_fut *out, void *arg)
{
	struct bcall *c = arg;

	(void)out;
	halo_fut_cancel(c->in);
}

static halo_fut *refuse(halo_breaker *br, const char *file, int line)
{
	char msg[160];
	const char *name = br->o.name ? br->o.name : "";
	const char *sp = br->o.name ? " " : "";

	if (br->state == HALO_BREAKER_OPEN) {
		uint64_t left = br->opened_at + br->o.open_ns - halo_now_ns();
		snprintf(msg, sizeof(msg),
			 "circuit breaker%s%s is open: calls refused for "
			 "another %llu ms",
			 sp, name, (unsigned long long)(left / MS + 1));
	} else {
		snprintf(msg, sizeof(msg),
			 "circuit breaker%s%s is half-open: its %u probe "
			 "calls are taken",
			 sp, name, br->o.probes);
	}
	return halo_fut_failed_at(br->loop, -EAGAIN, msg, file, line);
}

halo_fut *halo_breaker_call_at(halo_breaker *br, halo_breaker_fn fn, void *arg,
			       const char *file, int line)
{
	halo_breaker_permit pm;
	struct bcall *c;
	halo_fut *out;

	if (halo_breaker_acquire(br, &pm) < 0)
		return refuse(br, file, line);
	out = halo_fut_new_at(br->loop, file, line);
	c = out ? halo_mem_alloc(br->loop, sizeof(*c)) : NULL;
	if (!c)
		goto nomem;
	c->in = fn(br->loop, arg);
	if (!c->in) {
		halo_mem_free(br->loop, c, sizeof(*c));
		forget(br, &pm);
		halo_fut_fail(out, -ENOMEM,
			      "breaker: the call could not start");
		return out;
	}
	c->br = br;
	c->pm = pm;
	c->out = halo_fut_ref(out);
	c->w.fn = on_call_done;
	c->w.arg = c;
	halo_fut_set_cancel(out, on_call_cancel, c);
	halo_fut_add_waiter(c->in, &c->w);
	return out;
nomem:
	forget(br, &pm);
	halo_fut_release(out);
	return NULL;
}
