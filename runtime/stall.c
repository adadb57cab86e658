/* The stall detector. The loop calls in here only behind one
 * `if (unlikely(loop->stall))` per callback, fiber switch and hook, so that
 * a loop without a threshold pays one predicted branch.
 *
 * Time is cut into segments, each with one origin: a ready task (refined to
 * the user callback it calls: a waiter, a posted function), a prepare hook.
 * Segments of one tick follow each other with only a queue pop between
 * them, so the end of one is the start of the next: one clock read per
 * callback. Fiber slices are measured on their own (switch-in to
 * switch-out) and subtracted from the segment that resumed them, so that a
 * fiber computing for 20 ms is reported once, as the fiber.
 *
 * The clock: CLOCK_MONOTONIC costs about 60 ns a read on a KVM guest
 * (kvm-clock), which is four times an empty callback. CLOCK_MONOTONIC_COARSE
 * costs 4-9 ns but moves in jiffies (4 ms at HZ=250): a duration read with
 * it is off by up to one jiffy either way. So thresholds of at least
 * COARSE_MIN jiffies use the coarse clock (reported durations are then
 * within a jiffy), shorter ones the precise clock. */
#include <dlfcn.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define COARSE_MIN 4

struct halo__stall {
	uint64_t threshold;
	clockid_t clock;
	halo_stall_fn fn;
	void *arg;
	uint64_t mark;	      /* start of the current segment */
	uint64_t tick;	      /* loop->stats.ticks when mark was taken */
	uint64_t nested;      /* fiber slices inside the current segment */
	uint64_t slice_start; /* switch-in of the running fiber */
	const void *origin;   /* the current segment's function */
	int kind;	      /* the current segment's HALO_STALL_* */
	int in_segment;
	int named; /* a user callback of the segment's task ran */
};

static inline uint64_t now_ns(const struct halo__stall *s)
{
	struct timespec ts;

	clock_gettime(s->clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static clockid_t pick_clock(uint64_t threshold)
{
	struct timespec res;

	if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) == 0 &&
	    threshold >= COARSE_MIN * ((uint64_t)res.tv_sec * 1000000000ull +
				       (uint64_t)res.tv_nsec))
		return CLOCK_MONOTONIC_COARSE;
	return CLOCK_MONOTONIC;
}

int halo__stall_init(halo_loop *loop)
{
	struct halo__stall *s;

	if (!loop->opts.stall_ns)
		return 0;
	s = halo_mem_zalloc(loop, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->threshold = loop->opts.stall_ns;
	s->clock = pick_clock(s->threshold);
	s->fn = loop->opts.stall_fn;
	s->arg = loop->opts.stall_arg;
	s->tick = UINT64_MAX;
	loop->stall = s;
	return 0;
}

void halo__stall_close(halo_loop *loop)
{
	halo_mem_free(loop, loop->stall, sizeof(*loop->stall));
	loop->stall = NULL;
}

int halo_stall_format(const halo_stall *s, char *buf, size_t cap)
{
	switch (s->kind) {
	case HALO_STALL_FIBER:
		return snprintf(buf, cap, "fiber spawned at %s:%d",
				s->file ? s->file : "?", s->line);
	case HALO_STALL_SECTION:
		return snprintf(buf, cap, "%s", s->label ? s->label : "?");
	default:
		break;
	}
	if (s->object) {
		const char *base = strrchr(s->object, '/');

		return snprintf(
		    buf, cap, "%s %s%s(%s+0x%" PRIxPTR ")",
		    s->kind == HALO_STALL_PREPARE ? "prepare hook" : "callback",
		    s->symbol ? s->symbol : "", s->symbol ? " " : "",
		    base ? base + 1 : s->object, s->offset);
	}
	return snprintf(
	    buf, cap, "%s %s%s(%p)",
	    s->kind == HALO_STALL_PREPARE ? "prepare hook" : "callback",
	    s->symbol ? s->symbol : "", s->symbol ? " " : "", s->fn);
}

/* Without a hook, one line on stderr, as the leak report does. */
static void print_stall(const halo_stall *s)
{
	char what[256];

	halo_stall_format(s, what, sizeof(what));
	fprintf(stderr, "halo: loop stalled %.1f ms in %s\n",
		(double)s->duration_ns / 1e6, what);
}

static void report(halo_loop *loop, halo_stall *r)
{
	struct halo__stall *s = loop->stall;
	Dl_info info;

	loop->stats.stalls++;
	if (r->duration_ns > loop->stats.stall_max_ns)
		loop->stats.stall_max_ns = r->duration_ns;
	if (r->fn && dladdr(r->fn, &info)) {
		if (info.dli_sname && info.dli_saddr == r->fn)
			r->symbol = info.dli_sname;
		r->object = info.dli_fname;
		r->offset = (uintptr_t)r->fn - (uintptr_t)info.dli_fbase;
	}
	if (s->fn)
		s->fn(loop, r, s->arg);
	else
		print_stall(r);
}

/* Close the current segment at now; returns the time the next one starts
 * (after the hook, whose own time counts for nobody). */
static uint64_t seg_end(halo_loop *loop, struct halo__stall *s)
{
	uint64_t now = now_ns(s), d = now - s->mark;

	d = d > s->nested ? d - s->nested : 0;
	if (unlikely(d >= s->threshold)) {
		halo_stall r = {
		    .duration_ns = d, .kind = s->kind, .fn = s->origin};

		report(loop, &r);
		now = now_ns(s);
	}
	s->mark = now;
	s->nested = 0;
	return now;
}

static void seg_begin(halo_loop *loop, struct halo__stall *s, int kind,
		      const void *origin)
{
	/* The last segment ended this tick: nothing ran since its end. */
	if (s->tick != loop->stats.ticks) {
		s->mark = now_ns(s);
		s->tick = loop->stats.ticks;
	}
	s->nested = 0;
	s->kind = kind;
	s->origin = origin;
	s->in_segment = 1;
	s->named = 0;
}

void halo__stall_task(halo_loop *loop, halo_task *t, const void *origin)
{
	struct halo__stall *s = loop->stall;

	if (s->in_segment) { /* a tick run from inside a callback */
		t->fn(t);
		return;
	}
	seg_begin(loop, s, HALO_STALL_CALLBACK, origin);
	t->fn(t);
	seg_end(loop, s);
	s->in_segment = 0;
}

void halo__stall_callback(halo_loop *loop, const void *fn)
{
	struct halo__stall *s = loop->stall;

	if (!s->in_segment || loop->cur_fiber)
		return;
	/* The task's first callback only names the segment: what ran before
	 * it is the task's own bookkeeping. From the second on, each callback
	 * is a segment of its own (one more clock read). */
	if (s->named)
		seg_end(loop, s);
	s->named = 1;
	s->origin = fn;
}

void halo__stall_origin(halo_loop *loop, const void *fn)
{
	if (loop->stall->in_segment && !loop->cur_fiber)
		loop->stall->origin = fn;
}

int halo__stall_hook(halo_loop *loop, halo_hook *h)
{
	struct halo__stall *s = loop->stall;
	int r;

	if (s->in_segment)
		return h->fn(loop, h->arg);
	seg_begin(loop, s, HALO_STALL_PREPARE, (const void *)h->fn);
	r = h->fn(loop, h->arg);
	seg_end(loop, s);
	s->in_segment = 0;
	return r;
}

uint64_t halo__stall_slice_in(halo_loop *loop)
{
	struct halo__stall *s = loop->stall;

	return s->slice_start = now_ns(s);
}

static uint64_t slice_end(halo_loop *loop, struct halo__stall *s,
			  halo_fut *fiber)
{
	uint64_t now = now_ns(s);

	if (unlikely(now - s->slice_start >= s->threshold)) {
		halo_stall r = {.duration_ns = now - s->slice_start,
				.kind = HALO_STALL_FIBER,
				.file = fiber->file,
				.line = fiber->line};

		report(loop, &r);
		now = now_ns(s);
	}
	return now;
}

void halo__stall_slice_switch(halo_loop *loop, halo_fut *from)
{
	struct halo__stall *s = loop->stall;

	s->slice_start = slice_end(loop, s, from);
}

void halo__stall_slice_out(halo_loop *loop, halo_fut *fiber, uint64_t t0)
{
	struct halo__stall *s = loop->stall;

	s->nested += slice_end(loop, s, fiber) - t0;
}

uint64_t halo_stall_threshold(const halo_loop *loop)
{
	return loop->stall ? loop->stall->threshold : 0;
}

int halo_stall_report(halo_loop *loop, uint64_t duration_ns, const char *label)
{
	halo_stall r = {.duration_ns = duration_ns,
			.kind = HALO_STALL_SECTION,
			.label = label};

	if (!loop->stall)
		return -ENOENT;
	report(loop, &r);
	return 0;
}
