/* Sweep program: marker and sweeper (marks, holds, a watched pipe) and the
 * rolling poller (synchronous and asynchronous cycles, deadlines). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "prog.h"

enum { IDS = 64 };

struct sweeper {
	int swept[IDS];
	int rfd;       /* the watched pipe's read end */
	uint32_t held; /* an id held for later, or IDS */
};

static int on_sweep(halo_marksweep *ms, const uint32_t *ids, size_t n,
		    void *arg)
{
	struct sweeper *sw = arg;
	char c;

	for (size_t i = 0; i < n; i++) {
		sw->swept[ids[i]]++;
		if ((int)ids[i] == sw->rfd)
			while (read(sw->rfd, &c, 1) == 1)
				;
		if (ids[i] == 7 && sw->held == IDS &&
		    halo_marksweep_hold(ms, 7) == 0)
			sw->held = 7;
	}
	return 0;
}

static void step_marksweep(halo_loop *loop)
{
	halo_marksweep_opts o = {.capacity = IDS, .batch = 4};
	struct sweeper sw = {.held = IDS};
	halo_marksweep ms;
	int p[2];

	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
		prog_setup_failed("pipe2");
		return;
	}
	if (p[0] >= IDS) {
		errno = EMFILE;
		prog_setup_failed("pipe fd above the id range");
		goto out;
	}
	sw.rfd = p[0];
	if (!EXPECT(halo_marksweep_init(&ms, loop, &o, on_sweep, &sw), 0))
		goto out;
	for (uint32_t id = 0; id < 10; id++)
		EXPECT(halo_marksweep_mark(&ms, id), 0);
	EXPECT(halo_marksweep_mark(&ms, 3), 0); /* counted once */
	halo_loop_run_nowait(loop);
	EXPECT(sw.swept[3], 1);
	EXPECT(sw.held, 7);
	EXPECT(halo_marksweep_mark(&ms, 7), 0); /* swept after release */
	EXPECT(halo_marksweep_release(&ms, 7), 0);
	halo_loop_run_nowait(loop);
	EXPECT(sw.swept[7], 2);
	if (EXPECT(halo_marksweep_watch(&ms, p[0], POLLIN), 0)) {
		int before = sw.swept[p[0]];

		/* The poll's CQE marks in the reap step; the sweep comes in
		 * the next tick's prepare step. */
		if (write(p[1], "x", 1) == 1)
			for (int t = 0; t < 100 && sw.swept[p[0]] == before &&
					!halo_marksweep_is_marked(&ms, p[0]);
			     t++)
				halo_loop_run_once(loop);
		halo_loop_run_nowait(loop);
		EXPECT(sw.swept[p[0]], before + 1);
		EXPECT(halo_marksweep_unwatch(&ms, p[0]), 0);
	}
	halo_marksweep_close(&ms);
out:
	close(p[0]);
	close(p[1]);
}

/* Id k finishes on its (k % 3 + 1)-th poll with 3 * k; id 7 fails; ids at
 * or above 100 never finish. */
struct poll_state {
	int polled[16];
	halo_poller_report *out;
	size_t n;
	halo_fut *later; /* an asynchronous cycle's timer */
	halo_waiter w;
	halo_poller *p;
	halo_loop *loop;
};

static void report(struct poll_state *s, const uint64_t *ids, size_t n,
		   halo_poller_report *out)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t k = ids[i];

		if (k >= 100 || ++s->polled[k] < (int)(k % 3 + 1))
			continue;
		if (k == 7)
			out[i] = (halo_poller_report){-1, -EPROTO, NULL};
		else
			out[i] = (halo_poller_report){1, (int64_t)k * 3, NULL};
	}
}

static int poll_now(halo_poller *p, const uint64_t *ids, size_t n,
		    halo_poller_report *out, void *arg)
{
	(void)p;
	report(arg, ids, n, out);
	return 0;
}

static void answer_later(halo_fut *t, void *arg)
{
	struct poll_state *s = arg;

	halo_fut_release(t);
	s->later = NULL;
	EXPECT(halo_poller_reported(s->p, 0), 0);
}

/* The same answers, given a tick later from a timer. */
static int poll_later(halo_poller *p, const uint64_t *ids, size_t n,
		      halo_poller_report *out, void *arg)
{
	struct poll_state *s = arg;

	s->later = halo_timer_after(s->loop, 0);
	if (!s->later)
		return -ENOMEM; /* the cycle failed; its ids stay pending */
	report(s, ids, n, out);
	s->w.fn = answer_later;
	s->w.arg = s;
	halo_fut_add_waiter(s->later, &s->w);
	(void)p;
	return HALO_POLLER_ASYNC;
}

static void run_poller(halo_loop *loop, halo_poller_fn fn, struct poll_state *s)
{
	halo_poller_opts o = {.window = 4, .interval_ns = 1 * MS};
	halo_poller p;
	halo_fut *f[10];

	s->p = &p;
	if (!EXPECT(halo_poller_init(&p, loop, &o, fn, s), 0))
		return;
	for (int k = 0; k < 8; k++)
		GOT(f[k] = halo_poller_add(&p, (uint64_t)k, 0));
	GOT(f[8] = halo_poller_add(&p, 100, halo_now_ns() + 3 * MS));
	GOT(f[9] = halo_poller_add(&p, 101, 0));
	for (int k = 0; k < 9; k++)
		if (f[k])
			EXPECT(halo_fut_wait(f[k]), k == 7   ? -EPROTO
						    : k == 8 ? -ETIMEDOUT
							     : 3 * k);
	if (f[9])
		EXPECT(halo_fut_cancel(f[9]), 0);
	prog_drop(f, 10);
	halo_poller_close(&p);
	if (s->later) {
		halo_fut_remove_waiter(s->later, &s->w);
		prog_drop(&s->later, 1);
	}
}

static void step_poller(halo_loop *loop)
{
	struct poll_state s;

	memset(&s, 0, sizeof(s));
	s.loop = loop;
	run_poller(loop, poll_now, &s);
	memset(&s, 0, sizeof(s));
	s.loop = loop;
	run_poller(loop, poll_later, &s);
}

static int close_in_handler(halo_marksweep *ms, const uint32_t *ids, size_t n,
			    void *arg)
{
	(void)ids;
	*(size_t *)arg += n;
	halo_marksweep_close(ms);
	return 0;
}

/* A handler that closes the sweeper; a rate-limited poller whose ids are
 * removed by id. */
static void step_more(halo_loop *loop)
{
	halo_marksweep_opts mo = {.capacity = 8, .batch = 2};
	halo_poller_opts po = {
	    .window = 2, .interval_ns = 1 * MS, .rate = 2000};
	halo_marksweep ms;
	halo_poller p;
	struct poll_state s;
	halo_fut *f[4];
	size_t swept = 0;

	if (EXPECT(
		halo_marksweep_init(&ms, loop, &mo, close_in_handler, &swept),
		0)) {
		for (uint32_t id = 0; id < 5; id++)
			EXPECT(halo_marksweep_mark(&ms, id), 0);
		halo_loop_run_nowait(loop);
		EXPECT(swept, 2);
		halo_marksweep_close(&ms); /* a second close does nothing */
	}
	memset(&s, 0, sizeof(s));
	s.loop = loop;
	if (!EXPECT(halo_poller_init(&p, loop, &po, poll_now, &s), 0))
		return;
	for (int k = 0; k < 4; k++)
		GOT(f[k] = halo_poller_add(&p, (uint64_t)(k ? 100 + k : 4), 0));
	for (int k = 1; k < 4; k++)
		if (f[k])
			EXPECT(halo_poller_remove(&p, (uint64_t)(100 + k)), 0);
	if (f[0])
		EXPECT(halo_fut_wait(f[0]), 12);
	for (int k = 1; k < 4; k++)
		if (f[k])
			EXPECT(halo_fut_wait(f[k]), -ECANCELED);
	prog_drop(f, 4);
	halo_poller_close(&p);
}

int main(int argc, char **argv)
{
	static const struct prog_step steps[] = {
	    {"marksweep", step_marksweep},
	    {"poller", step_poller},
	    {"more", step_more},
	};

	return prog_run(argc, argv, steps, sizeof(steps) / sizeof(steps[0]));
}
