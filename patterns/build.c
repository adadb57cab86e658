/* The two-loop build. A start half that blocks turns the build back into a
 * sequence of waits (the sum of latencies); the loop's blocking_waits
 * counter, read around each start call, names the culprit. A start half
 * that blocks the thread itself (usleep, a blocking read, a long loop) does
 * the same without halo seeing a wait: the clock around each start call
 * names that one, and the loop's stall detector hears of it. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "build.h"
#include "wait.h"

#include "../runtime/loop.h"
#include "../runtime/pool.h"
#include "../runtime/stall.h"

static void add_name(char *list, size_t cap, const char *name)
{
	size_t len = strlen(list);

	if (!name)
		name = "?";
	snprintf(list + len, cap - len, "%s%s", len ? "," : "", name);
}

static uint64_t blocking_waits(halo_loop *loop)
{
	halo_stats st;

	halo_loop_stats(loop, &st);
	return st.blocking_waits;
}

static uint64_t stall_threshold(halo_loop *loop, const halo_build_opts *o)
{
	if (o->stall_ns)
		return o->stall_ns;
	if (halo_stall_threshold(loop))
		return halo_stall_threshold(loop);
	return HALO_BUILD_STALL_NS;
}

/* The start half held the thread: name it in the report, and tell the
 * loop's stall detector. */
static void stalled(halo_loop *loop, halo_build_unit *u, uint64_t ns,
		    unsigned flags, halo_build_report *rep)
{
	char label[128];

	rep->stalled_n++;
	if (ns > rep->stalled_max_ns)
		rep->stalled_max_ns = ns;
	add_name(rep->stalled, sizeof(rep->stalled), u->name);
	snprintf(label, sizeof(label), "build unit %s",
		 u->name ? u->name : "?");
	halo_stall_report(loop, ns, label);
	if (flags & HALO_BUILD_WARN)
		fprintf(stderr,
			"halo: build unit '%s' held the thread for %.1f ms in "
			"its start half (sleep, blocking call or computation); "
			"its latency adds up instead of overlapping\n",
			u->name ? u->name : "?", (double)ns / 1e6);
}

static void start_all(halo_loop *loop, halo_build_unit *u, halo_fut **f,
		      size_t n, const halo_build_opts *o,
		      halo_build_report *rep)
{
	uint64_t threshold = stall_threshold(loop, o);

	for (size_t i = 0; i < n; i++) {
		uint64_t before = blocking_waits(loop);
		uint64_t t0 = halo_now_ns(), ns;

		u[i].err = 0;
		u[i].presented = false;
		f[i] = u[i].start(loop, u[i].arg);
		ns = halo_now_ns() - t0;
		u[i].blocked = blocking_waits(loop) != before;
		if (!f[i])
			u[i].err = -ENOMEM;
		/* A start that waited on halo spent its time driving the
		 * loop, not holding the thread: it is reported as blocked. */
		if (!u[i].blocked && ns >= threshold) {
			u[i].blocked = true;
			stalled(loop, &u[i], ns, o->flags, rep);
		} else if (u[i].blocked && (o->flags & HALO_BUILD_WARN)) {
			fprintf(stderr,
				"halo: build unit '%s' blocked in its start "
				"half; its latency adds up instead of "
				"overlapping\n",
				u[i].name ? u[i].name : "?");
		}
		if (!u[i].blocked)
			continue;
		rep->blocked_n++;
		add_name(rep->blocked, sizeof(rep->blocked), u[i].name);
	}
}

/* The deadline passed: cancel what the build started and is not done, and
 * wait until it is (the kernel let go of the buffers). */
static void miss(halo_loop *loop, halo_build_unit *u, halo_fut **f, size_t n,
		 halo_build_report *rep)
{
	for (size_t i = 0; i < n; i++) {
		if (!f[i] || halo_fut_is_done(f[i]))
			continue;
		u[i].err = -ETIMEDOUT;
		rep->missed_n++;
		add_name(rep->missed, sizeof(rep->missed), u[i].name);
	}
	halo_cancel_all(f, n);
	for (size_t i = 0; i < n; i++)
		if (f[i])
			halo_wait(loop, &f[i], 1, HALO_ALL_COMPLETED, 0);
}

static void present(halo_loop *loop, halo_build_unit *u, halo_fut *f,
		    unsigned flags)
{
	if (!u->err && f)
		u->err = halo_fut_error(f);
	if (!f || (u->err && (u->err == -ETIMEDOUT ||
			      !(flags & HALO_BUILD_PRESENT_FAILED))))
		return;
	u->presented = true;
	if (u->present) {
		int r = u->present(loop, u->arg, f);
		if (r < 0 && !u->err)
			u->err = r;
	}
}

/* The message of a failed unit whose error is its future's; a unit that
 * missed the deadline, was interrupted or failed in present has none. */
static const char *unit_msg(const halo_build_unit *u, halo_fut *f)
{
	if (!u->err || !f || halo_fut_error(f) != u->err)
		return NULL;
	return halo_fut_error_msg(f);
}

/* One block of loop memory for the list and the copied messages, so that
 * the report outlives the futures it was made from and is freed in one
 * call. */
static void list_failures(halo_loop *loop, halo_build_unit *u, halo_fut **f,
			  size_t n, halo_build_report *rep)
{
	size_t size = rep->failed_n * sizeof(halo_build_failure);
	halo_build_failure *fl;
	char *text;
	size_t k = 0;

	if (!rep->failed_n)
		return;
	for (size_t i = 0; i < n; i++) {
		const char *m = unit_msg(&u[i], f[i]);

		if (m)
			size += strlen(m) + 1;
	}
	fl = halo_mem_alloc(loop, size);
	if (!fl)
		return;
	text = (char *)(fl + rep->failed_n);
	for (size_t i = 0; i < n; i++) {
		const char *m = unit_msg(&u[i], f[i]);

		if (!u[i].err)
			continue;
		fl[k] = (halo_build_failure){i, u[i].name, u[i].err, NULL};
		if (m) {
			size_t len = strlen(m) + 1;

			memcpy(text, m, len);
			fl[k].msg = text;
			text += len;
		}
		k++;
	}
	rep->failures = fl;
	rep->failures_size = size;
}

halo_build_report halo_build(halo_loop *loop, halo_build_unit *units,
			     size_t n, const halo_build_opts *opts)
{
	halo_build_opts o = opts ? *opts : (halo_build_opts){0};
	halo_build_report rep = {0};
	size_t size = n * sizeof(halo_fut *);
	halo_fut **f;
	bool missed = false;

	if (!n)
		return rep;
	f = halo_mem_zalloc(loop, size);
	if (!f) {
		rep.status = -ENOMEM;
		return rep;
	}
	start_all(loop, units, f, n, &o, &rep);
	for (size_t i = 0; i < n; i++) {
		if (f[i] && !missed) {
			halo_wait_result w = halo_wait(loop, &f[i], 1,
						       HALO_ALL_COMPLETED,
						       o.deadline_ns);
			if (w.status == -ETIMEDOUT) {
				missed = true;
				miss(loop, units, f, n, &rep);
			} else if (w.status) {
				/* Interrupted (fiber cancelled, -EDEADLK):
				 * stop everything, leave nothing running. */
				missed = true;
				halo_cancel_all(f, n);
				for (size_t j = 0; j < n; j++)
					if (f[j] && !halo_fut_is_done(f[j])) {
						units[j].err = w.status;
						halo_wait(loop, &f[j], 1,
							  HALO_ALL_COMPLETED,
							  0);
					}
			}
		}
		present(loop, &units[i], f[i], o.flags);
	}
	for (size_t i = 0; i < n; i++) {
		if (units[i].err) {
			rep.failed_n++;
			if (!rep.status)
				rep.status = units[i].err;
		}
	}
	list_failures(loop, units, f, n, &rep);
	for (size_t i = 0; i < n; i++)
		halo_fut_release(f[i]);
	halo_mem_free(loop, f, size);
	return rep;
}

void halo_build_report_release(halo_loop *loop, halo_build_report *rep)
{
	if (!rep->failures)
		return;
	halo_mem_free(loop, rep->failures, rep->failures_size);
	rep->failures = NULL;
	rep->failures_size = 0;
}
