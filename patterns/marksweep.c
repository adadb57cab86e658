/* Marker and sweeper. Each id has a few state bits; the ring of marked ids
 * holds each id at most once, so it never needs more than capacity slots and
 * a mark never allocates. */
#include "marksweep.h"

#include <errno.h>
#include <string.h>

#include "../io/poll.h"
#include "../runtime/pool.h"

#define MS_MARKED 0x01u	  /* in the queue */
#define MS_SWEEPING 0x02u /* in a handler call, or held after it */
#define MS_REMARK 0x04u	  /* marked while sweeping: sweep again after */
#define MS_HELD 0x08u	  /* the handler kept it for async work */

#define DEFAULT_BATCH 64
#define DEFAULT_BUDGET 4096

static void enqueue(halo_marksweep *ms, uint32_t id)
{
	uint32_t tail = ms->head + ms->count;

	if (tail >= ms->cap)
		tail -= ms->cap;
	ms->queue[tail] = id;
	ms->count++;
	ms->state[id] |= MS_MARKED;
}

static void end_sweep(halo_marksweep *ms, uint32_t id)
{
	uint8_t s = ms->state[id];

	ms->state[id] = (uint8_t)(s & ~(MS_SWEEPING | MS_HELD | MS_REMARK));
	if (s & MS_REMARK)
		enqueue(ms, id);
}

/* One handler call with up to n ids from the front of the queue. */
static uint32_t sweep_pass(halo_marksweep *ms, uint32_t n)
{
	uint32_t i;

	if (n > ms->count)
		n = ms->count;
	for (i = 0; i < n; i++) {
		uint32_t id = ms->queue[ms->head];

		if (++ms->head == ms->cap)
			ms->head = 0;
		ms->count--;
		ms->state[id] = (uint8_t)((ms->state[id] & ~MS_MARKED) |
					  MS_SWEEPING);
		ms->pass[i] = id;
	}
	ms->stats.swept += n;
	ms->stats.passes++;
	if (n > ms->stats.max_pass)
		ms->stats.max_pass = n;
	ms->in_pass = 1;
	ms->fn(ms, ms->pass, n, ms->arg);
	if (!ms->loop)
		return n; /* the handler closed ms: state and pass are gone */
	ms->in_pass = 0;
	/* Marks that arrived during the call re-queue the id now, after the
	 * handler has seen it, so that it is never in two sweeps at once. */
	for (i = 0; i < n; i++)
		if (!(ms->state[ms->pass[i]] & MS_HELD))
			end_sweep(ms, ms->pass[i]);
	return n;
}

struct halo__ms_watch {
	halo_marksweep *ms;
	halo_poll_ms *h;
	uint64_t rearms; /* of ended or stopped polls */
};

static void watch_close(halo_marksweep *ms)
{
	if (!ms->watch)
		return;
	for (uint32_t fd = 0; fd < ms->cap; fd++)
		halo_marksweep_unwatch(ms, (int)fd);
	halo_mem_free(ms->loop, ms->watch,
		      (size_t)ms->cap * sizeof(*ms->watch));
	ms->watch = NULL;
}

/* A poll CQE (from the reap step): mark the fd. An error ends the poll; the
 * fd is marked too, so that the handler's next operation meets the error. */
static void on_ready(halo_poll_ms *h, int revents, void *arg)
{
	struct halo__ms_watch *w = arg;
	halo_marksweep *ms = w->ms;

	ms->stats.events++;
	if (revents < 0) {
		w->rearms += halo_poll_ms_rearms(h);
		w->h = NULL;
	}
	halo_marksweep_mark(ms, (uint32_t)(w - ms->watch));
}

int halo_marksweep_watch(halo_marksweep *ms, int fd, unsigned events)
{
	struct halo__ms_watch *w;

	if (fd < 0 || (uint32_t)fd >= ms->cap)
		return -EINVAL;
	if (!ms->watch) {
		ms->watch = halo_mem_zalloc(ms->loop, (size_t)ms->cap *
							      sizeof(*ms->watch));
		if (!ms->watch)
			return -ENOMEM;
	}
	w = &ms->watch[fd];
	if (w->h)
		return -EBUSY;
	w->ms = ms;
	w->h = halo_poll_ms_start(ms->loop, fd, events, on_ready, w);
	return w->h ? 0 : -ENOMEM;
}

int halo_marksweep_unwatch(halo_marksweep *ms, int fd)
{
	struct halo__ms_watch *w;

	if (!ms->watch || fd < 0 || (uint32_t)fd >= ms->cap ||
	    !ms->watch[fd].h)
		return -ENOENT;
	w = &ms->watch[fd];
	w->rearms += halo_poll_ms_rearms(w->h);
	halo_poll_ms_stop(w->h);
	w->h = NULL;
	return 0;
}

static int sweep_hook(halo_loop *loop, void *arg)
{
	halo_marksweep *ms = arg;
	uint32_t left = ms->budget;

	(void)loop;
	while (left && ms->count)
		left -= sweep_pass(ms, left < ms->batch ? left : ms->batch);
	return ms->count > 0;
}

int halo_marksweep_init(halo_marksweep *ms, halo_loop *loop,
			const halo_marksweep_opts *opts, halo_marksweep_fn fn,
			void *arg)
{
	memset(ms, 0, sizeof(*ms));
	if (!opts || !opts->capacity || !fn)
		return -EINVAL;
	ms->loop = loop;
	ms->fn = fn;
	ms->arg = arg;
	ms->cap = opts->capacity;
	ms->batch = opts->batch ? opts->batch : DEFAULT_BATCH;
	ms->budget = opts->budget ? opts->budget : DEFAULT_BUDGET;
	if (ms->batch > ms->budget)
		ms->batch = ms->budget;
	ms->state = halo_mem_zalloc(loop, ms->cap);
	ms->queue = halo_mem_alloc(loop, (size_t)ms->cap * sizeof(uint32_t));
	ms->pass = halo_mem_alloc(loop, (size_t)ms->batch * sizeof(uint32_t));
	if (!ms->state || !ms->queue || !ms->pass) {
		halo_marksweep_close(ms);
		return -ENOMEM;
	}
	halo_loop_prepare_add(loop, &ms->hook, sweep_hook, ms);
	return 0;
}

void halo_marksweep_close(halo_marksweep *ms)
{
	halo_loop *loop = ms->loop;

	if (!loop)
		return;
	watch_close(ms);
	if (ms->hook.fn)
		halo_loop_prepare_remove(loop, &ms->hook);
	if (ms->state)
		halo_mem_free(loop, ms->state, ms->cap);
	if (ms->queue)
		halo_mem_free(loop, ms->queue,
			      (size_t)ms->cap * sizeof(uint32_t));
	if (ms->pass)
		halo_mem_free(loop, ms->pass,
			      (size_t)ms->batch * sizeof(uint32_t));
	memset(ms, 0, sizeof(*ms));
}

int halo_marksweep_mark(halo_marksweep *ms, uint32_t id)
{
	uint8_t s;

	if (id >= ms->cap)
		return -EINVAL;
	s = ms->state[id];
	ms->stats.marks++;
	if (s & (MS_MARKED | MS_REMARK)) {
		ms->stats.dedups++;
	} else if (s & MS_SWEEPING) {
		ms->state[id] = (uint8_t)(s | MS_REMARK);
	} else {
		enqueue(ms, id);
	}
	return 0;
}

int halo_marksweep_hold(halo_marksweep *ms, uint32_t id)
{
	if (id >= ms->cap || !ms->in_pass ||
	    !(ms->state[id] & MS_SWEEPING))
		return -EINVAL;
	ms->state[id] |= MS_HELD;
	return 0;
}

int halo_marksweep_release(halo_marksweep *ms, uint32_t id)
{
	if (id >= ms->cap || !(ms->state[id] & MS_HELD))
		return -EINVAL;
	end_sweep(ms, id);
	return 0;
}

int halo_marksweep_is_marked(const halo_marksweep *ms, uint32_t id)
{
	return id < ms->cap && (ms->state[id] & (MS_MARKED | MS_REMARK));
}

uint32_t halo_marksweep_pending(const halo_marksweep *ms)
{
	return ms->count;
}

void halo_marksweep_stats_get(const halo_marksweep *ms,
			      halo_marksweep_stats *out)
{
	*out = ms->stats;
	out->rearms = 0;
	for (uint32_t fd = 0; ms->watch && fd < ms->cap; fd++) {
		out->rearms += ms->watch[fd].rearms;
		if (ms->watch[fd].h)
			out->rearms += halo_poll_ms_rearms(ms->watch[fd].h);
	}
}
