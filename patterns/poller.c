/* Rolling poller window. Waiting ids form one FIFO; a cycle takes the front
 * `window` of them out, asks about them in one call, and puts the unfinished
 * ones back at the tail. A timer starts each cycle; a per-id timer enforces
 * the deadline without scanning the queue. */
#include "poller.h"

#include <errno.h>
#include <string.h>

#include "../runtime/pool.h"
#include "../runtime/timer.h"

#define DEFAULT_WINDOW 100
#define DEFAULT_INTERVAL 1000000ull

struct halo__poll_item {
	struct halo__poll_item *prev, *next;
	halo_poller *p;
	uint64_t id;
	halo_fut *fut;	    /* our reference; the caller holds another */
	halo_fut *deadline; /* deadline timer, or NULL */
	halo_waiter deadline_w;
	uint8_t in_window;
	uint8_t gone; /* timed out or cancelled while in an async cycle */
	int gone_err;
};

static void unlink_item(halo_poller *p, struct halo__poll_item *it)
{
	if (it->prev)
		it->prev->next = it->next;
	else
		p->head = it->next;
	if (it->next)
		it->next->prev = it->prev;
	else
		p->tail = it->prev;
	it->prev = it->next = NULL;
}

static void push_back(halo_poller *p, struct halo__poll_item *it)
{
	it->next = NULL;
	it->prev = p->tail;
	if (p->tail)
		p->tail->next = it;
	else
		p->head = it;
	p->tail = it;
}

/* Drop it: complete its future unless done, stop its deadline timer. */
static void drop(halo_poller *p, struct halo__poll_item *it)
{
	if (it->deadline) {
		halo_fut_remove_waiter(it->deadline, &it->deadline_w);
		halo_fut_cancel(it->deadline);
		halo_fut_release(it->deadline);
	}
	halo_fut_release(it->fut);
	p->n--;
	halo_mem_free(p->loop, it, sizeof(*it));
}

static void fail_item(halo_poller *p, struct halo__poll_item *it, int err)
{
	if (err == -ECANCELED)
		halo_fut_cancelled(it->fut);
	else
		halo_fut_fail(it->fut, err,
			      err == -ETIMEDOUT ? "poll deadline passed" : NULL);
	drop(p, it);
}

static void run_cycle(halo_poller *p);

static void timer_fired(halo_fut *f, void *arg)
{
	halo_poller *p = arg;

	p->timer = NULL;
	halo_fut_release(f);
	run_cycle(p);
}

/* Arm the timer of the next cycle: no sooner than interval after the last
 * start, nor sooner than the rate limit allows for the polls it made. */
static void schedule(halo_poller *p)
{
	uint64_t at = p->last_start + p->opts.interval_ns;

	if (p->timer || p->in_cycle || !p->head)
		return;
	if (p->opts.rate > 0) {
		uint64_t gap = (uint64_t)((double)p->last_polls * 1e9 /
					  p->opts.rate);

		if (p->last_start + gap > at)
			at = p->last_start + gap;
	}
	p->timer = halo_timer_at(p->loop, at);
	if (!p->timer) {
		/* Nothing else would ever start a cycle: fail the waiting
		 * ids rather than leave them stranded. */
		while (p->head) {
			struct halo__poll_item *it = p->head;

			unlink_item(p, it);
			fail_item(p, it, -ENOMEM);
		}
		return;
	}
	p->timer_w.fn = timer_fired;
	p->timer_w.arg = p;
	halo_fut_add_waiter(p->timer, &p->timer_w);
}

static void finish_cycle(halo_poller *p, int err)
{
	if (err < 0)
		p->stats.failed_cycles++;
	for (size_t i = 0; i < p->win_n; i++) {
		struct halo__poll_item *it = p->win[i];
		halo_poller_report *r = &p->out[i];

		it->in_window = 0;
		if (it->gone) {
			fail_item(p, it, it->gone_err);
		} else if (err >= 0 && r->done > 0) {
			halo_fut_resolve(it->fut, r->result, r->value);
			p->stats.finished++;
			drop(p, it);
		} else if (err >= 0 && r->done < 0) {
			fail_item(p, it, r->result < 0 ? (int)r->result : -EIO);
			p->stats.finished++;
		} else {
			push_back(p, it);
		}
	}
	p->win_n = 0;
	p->in_cycle = 0;
	schedule(p);
}

static void run_cycle(halo_poller *p)
{
	int r;

	p->win_n = 0;
	while (p->head && p->win_n < p->opts.window) {
		struct halo__poll_item *it = p->head;

		unlink_item(p, it);
		it->in_window = 1;
		p->ids[p->win_n] = it->id;
		p->win[p->win_n++] = it;
	}
	if (!p->win_n)
		return;
	memset(p->out, 0, p->win_n * sizeof(*p->out));
	p->last_start = halo_now_ns();
	p->last_polls = p->win_n;
	p->stats.cycles++;
	p->stats.polls += p->win_n;
	if (p->win_n > p->stats.max_call)
		p->stats.max_call = p->win_n;
	p->in_cycle = 1;
	r = p->fn(p, p->ids, p->win_n, p->out, p->arg);
	if (r != HALO_POLLER_ASYNC)
		finish_cycle(p, r < 0 ? r : 0);
}

int halo_poller_reported(halo_poller *p, int err)
{
	if (!p->in_cycle)
		return -EINVAL;
	finish_cycle(p, err);
	return 0;
}

static void item_gone(halo_poller *p, struct halo__poll_item *it, int err)
{
	if (it->in_window) {
		it->gone = 1;
		it->gone_err = err;
		return;
	}
	unlink_item(p, it);
	fail_item(p, it, err);
}

static void deadline_fired(halo_fut *f, void *arg)
{
	struct halo__poll_item *it = arg;
	halo_poller *p = it->p;

	halo_fut_release(f);
	it->deadline = NULL;
	p->stats.timeouts++;
	item_gone(p, it, -ETIMEDOUT);
}

static void cancel_item(halo_fut *f, void *arg)
{
	struct halo__poll_item *it = arg;

	(void)f;
	if (!it->gone)
		item_gone(it->p, it, -ECANCELED);
}

int halo_poller_init(halo_poller *p, halo_loop *loop,
		     const halo_poller_opts *opts, halo_poller_fn fn, void *arg)
{
	memset(p, 0, sizeof(*p));
	if (!fn)
		return -EINVAL;
	if (opts)
		p->opts = *opts;
	if (!p->opts.window)
		p->opts.window = DEFAULT_WINDOW;
	if (!p->opts.interval_ns)
		p->opts.interval_ns = DEFAULT_INTERVAL;
	if (p->opts.rate < 0)
		return -EINVAL;
	p->loop = loop;
	p->fn = fn;
	p->arg = arg;
	p->win = halo_mem_alloc(loop, p->opts.window * sizeof(*p->win));
	p->ids = halo_mem_alloc(loop, p->opts.window * sizeof(*p->ids));
	p->out = halo_mem_alloc(loop, p->opts.window * sizeof(*p->out));
	if (!p->win || !p->ids || !p->out) {
		halo_poller_close(p);
		return -ENOMEM;
	}
	return 0;
}

void halo_poller_close(halo_poller *p)
{
	halo_loop *loop = p->loop;

	if (!loop)
		return;
	if (p->timer) {
		halo_fut_remove_waiter(p->timer, &p->timer_w);
		halo_fut_cancel(p->timer);
		halo_fut_release(p->timer);
		p->timer = NULL;
	}
	for (size_t i = 0; i < p->win_n; i++)
		fail_item(p, p->win[i], -ECANCELED);
	p->win_n = 0;
	while (p->head) {
		struct halo__poll_item *it = p->head;

		unlink_item(p, it);
		fail_item(p, it, -ECANCELED);
	}
	if (p->win)
		halo_mem_free(loop, p->win, p->opts.window * sizeof(*p->win));
	if (p->ids)
		halo_mem_free(loop, p->ids, p->opts.window * sizeof(*p->ids));
	if (p->out)
		halo_mem_free(loop, p->out, p->opts.window * sizeof(*p->out));
	memset(p, 0, sizeof(*p));
}

halo_fut *halo_poller_add_at(halo_poller *p, uint64_t id, uint64_t deadline_ns,
			     const char *file, int line)
{
	struct halo__poll_item *it = halo_mem_zalloc(p->loop, sizeof(*it));
	halo_fut *f;

	if (!it)
		return NULL;
	it->fut = halo_fut_new_at(p->loop, file, line);
	if (!it->fut) {
		halo_mem_free(p->loop, it, sizeof(*it));
		return NULL;
	}
	if (deadline_ns) {
		it->deadline = halo_timer_at(p->loop, deadline_ns);
		if (!it->deadline) {
			halo_fut_release(it->fut);
			halo_mem_free(p->loop, it, sizeof(*it));
			return NULL;
		}
		it->deadline_w.fn = deadline_fired;
		it->deadline_w.arg = it;
		halo_fut_add_waiter(it->deadline, &it->deadline_w);
	}
	it->p = p;
	it->id = id;
	halo_fut_set_cancel(it->fut, cancel_item, it);
	f = halo_fut_ref(it->fut); /* before schedule(), which may drop it */
	push_back(p, it);
	p->n++;
	schedule(p);
	return f;
}

int halo_poller_remove(halo_poller *p, uint64_t id)
{
	for (struct halo__poll_item *it = p->head; it; it = it->next)
		if (it->id == id)
			return halo_fut_cancel(it->fut);
	for (size_t i = 0; i < p->win_n; i++)
		if (p->win[i]->id == id && !p->win[i]->gone)
			return halo_fut_cancel(p->win[i]->fut);
	return -ENOENT;
}

size_t halo_poller_size(const halo_poller *p)
{
	return p->n;
}

void halo_poller_stats_get(const halo_poller *p, halo_poller_stats *out)
{
	*out = p->stats;
}
