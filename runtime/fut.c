/* Futures: allocation from the loop's pools, completion, waiters, reference
 * counts, cancellation and the leak report. Completing a future never runs
 * user code: it queues the future on the ready queue, and its waiters run
 * when the loop gets to it. */
#include <stdio.h>
#include <string.h>

#include "internal.h"


void *halo__fut_alloc(halo_loop *loop, size_t size, uint8_t kind,
		      const char *file, int line)
{
	return halo__fut_alloc_zero(loop, size, size, kind, file, line);
}


size_t halo__fut_size(const halo_fut *f)
{
	switch (f->kind) {
	case FUT_OP:
		return sizeof(struct halo_op);
	case FUT_TIMER:
		return halo__timer_size(f->loop);
	default:
		return sizeof(struct halo__promise);
	}
}

void halo__fut_free(halo_fut *f)
{
	halo_loop *loop = f->loop;

	assert(f->refs == 0);
	loop->stats.live_futures--;
	if (unlikely(f->flags & FUT_OWNED_MSG) && f->errmsg != halo_fut_msg_lost)
		halo_mem_free(loop, f->errmsg, strlen(f->errmsg) + 1);
	if (likely(f->kind == FUT_OP)) {
		halo__op_slot_put(loop, (halo_op *)f);
		return;
	}
	f->task.fn = NULL; /* a free slot is no future for the leak scan */
	if (f->kind == FUT_FIBER)
		halo__fiber_free(f);
	else
		halo__pool_put(loop, f, halo__fut_size(f));
}

void halo__fut_queue(halo_fut *f)
{
	if (f->flags & FUT_QUEUED)
		return;
	f->flags |= FUT_QUEUED;
	f->refs++; /* the ready queue's reference */
	halo__ready_push(f->loop, &f->task);
}


/* Pop one waiter at a time from the future itself, so that a waiter that
 * removes another waiter of the same future (or adds one) stays correct. */
void halo__run_waiters(halo_task *t)
{
	halo_fut *f = (halo_fut *)t;
	halo_waiter *w;

	f->flags &= (uint8_t)~FUT_QUEUED;
	while ((w = f->waiters)) {
		f->waiters = w->next;
		w->next = NULL;
		if (unlikely(f->loop->stall))
			halo__stall_callback(f->loop, (const void *)w->fn);
		w->fn(f, w->arg);
	}
	halo__fut_unref(f);
}


halo_fut *halo_fut_new_at(halo_loop *loop, const char *file, int line)
{
	return halo__fut_alloc(loop, sizeof(struct halo__promise), FUT_USER,
			       file, line);
}

const char halo_fut_msg_lost[] = "out of memory for the error message";

/* The error counts more than its message: a message that cannot be copied
 * leaves the error standing, and says it was lost rather than vanish. */
static void set_msg(halo_fut *f, const char *msg)
{
	if (f->flags & FUT_OWNED_MSG) {
		if (f->errmsg != halo_fut_msg_lost)
			halo_mem_free(f->loop, f->errmsg,
				      strlen(f->errmsg) + 1);
		f->flags &= (uint8_t)~FUT_OWNED_MSG;
	}
	if (!msg)
		return;
	f->errmsg = halo_mem_strdup(f->loop, msg);
	if (!f->errmsg)
		f->errmsg = (char *)halo_fut_msg_lost;
	f->flags |= FUT_OWNED_MSG;
}

/* A timer (a delayed future) completed by hand leaves the heap first, or
 * its expiry would complete it a second time. */
static void settle(halo_fut *f)
{
	if (f->kind == FUT_TIMER)
		halo__timer_cancel((struct halo__timer *)f);
}

int halo_fut_resolve(halo_fut *f, int64_t result, void *value)
{
	if (!halo__fut_pending(f))
		return -EALREADY;
	settle(f);
	f->value = value;
	halo__fut_complete(f, HALO_FUT_OK, result);
	return 0;
}

int halo_fut_fail(halo_fut *f, int err, const char *msg)
{
	if (err >= 0)
		return -EINVAL;
	if (!halo__fut_pending(f))
		return -EALREADY;
	settle(f);
	set_msg(f, msg);
	halo__fut_complete(f, HALO_FUT_ERROR, err);
	return 0;
}

halo_fut *halo_fut_ready_at(halo_loop *loop, int64_t result, void *value,
			    const char *file, int line)
{
	halo_fut *f = halo_fut_new_at(loop, file, line);

	if (f)
		halo_fut_resolve(f, result, value);
	return f;
}

halo_fut *halo_fut_failed_at(halo_loop *loop, int err, const char *msg,
			     const char *file, int line)
{
	halo_fut *f = halo_fut_new_at(loop, file, line);

	if (f)
		halo_fut_fail(f, err < 0 ? err : -EINVAL, msg);
	return f;
}

/* A delayed future is a timer that carries its outcome in the fields it
 * leaves unused while pending; halo__timers_expire() completes it so. */
static halo_fut *delayed(halo_loop *loop, uint64_t delay_ns, const char *file,
			 int line)
{
	uint64_t now = halo_now_ns();
	uint64_t at = delay_ns > UINT64_MAX - now ? UINT64_MAX : now + delay_ns;

	return halo_timer_at_(loop, at, file, line);
}

halo_fut *halo_fut_delayed_at(halo_loop *loop, uint64_t delay_ns,
			      int64_t result, void *value, const char *file,
			      int line)
{
	halo_fut *f = delayed(loop, delay_ns, file, line);

	if (f) {
		f->result = result;
		f->value = value;
	}
	return f;
}

halo_fut *halo_fut_delayed_failed_at(halo_loop *loop, uint64_t delay_ns,
				     int err, const char *msg, const char *file,
				     int line)
{
	halo_fut *f = delayed(loop, delay_ns, file, line);

	if (f) {
		f->result = err < 0 ? err : -EINVAL;
		f->flags |= FUT_FAILS_AT_EXPIRY;
		set_msg(f, msg);
	}
	return f;
}

int halo_fut_cancelled(halo_fut *f)
{
	if (!halo__fut_pending(f))
		return -EALREADY;
	if (f->kind == FUT_TIMER)
		halo__timer_cancel((struct halo__timer *)f);
	halo__fut_complete(f, HALO_FUT_CANCELLED, -ECANCELED);
	return 0;
}

void halo_fut_set_cancel(halo_fut *f, halo_fut_cancel_fn fn, void *arg)
{
	struct halo__promise *p = (struct halo__promise *)f;

	assert(f->kind == FUT_USER);
	p->cancel = fn;
	p->cancel_arg = arg;
}

int halo_fut_cancel(halo_fut *f)
{
	if (!halo__fut_pending(f))
		return -EALREADY;
	if (f->flags & FUT_CANCEL_REQ)
		return 0;
	f->flags |= FUT_CANCEL_REQ;
	switch (f->kind) {
	case FUT_OP: {
		int r = halo__op_cancel((halo_op *)f);
		if (r < 0) /* no SQE for the cancel: a later call may retry */
			f->flags &= (uint8_t)~FUT_CANCEL_REQ;
		return r;
	}
	case FUT_FIBER:
		halo__fiber_cancel(f);
		return 0;
	case FUT_USER: {
		struct halo__promise *p = (struct halo__promise *)f;
		if (p->cancel) {
			p->cancel(f, p->cancel_arg);
			return 0;
		}
		return halo_fut_cancelled(f);
	}
	default:
		return halo_fut_cancelled(f);
	}
}

halo_fut_state halo_fut_status(const halo_fut *f)
{
	return (halo_fut_state)f->state;
}

bool halo_fut_is_done(const halo_fut *f)
{
	return f->state != HALO_FUT_PENDING;
}

int64_t halo_fut_result(halo_fut *f)
{
	f->flags |= FUT_CONSUMED;
	switch (f->state) {
	case HALO_FUT_PENDING:
		return -EAGAIN;
	case HALO_FUT_CANCELLED:
		return -ECANCELED;
	default:
		return f->result;
	}
}

void *halo_fut_value(halo_fut *f)
{
	f->flags |= FUT_CONSUMED;
	return f->state == HALO_FUT_OK ? f->value : NULL;
}

int halo_fut_error(halo_fut *f)
{
	f->flags |= FUT_CONSUMED;
	if (f->state == HALO_FUT_ERROR)
		return (int)f->result;
	if (f->state == HALO_FUT_CANCELLED)
		return -ECANCELED;
	return 0;
}

const char *halo_fut_error_msg(const halo_fut *f)
{
	/* A pending delayed failure holds its message already. */
	if (f->state != HALO_FUT_ERROR || !(f->flags & FUT_OWNED_MSG))
		return NULL;
	return f->errmsg;
}

static void wake_driver(halo_fut *f, void *arg)
{
	(void)arg;
	f->loop->woken = 1;
}

int64_t halo_fut_wait(halo_fut *f)
{
	halo_loop *loop = f->loop;
	halo_waiter w;
	int64_t r;

	f->flags |= FUT_CONSUMED;
	if (!halo__fut_pending(f))
		return halo_fut_result(f);
	if (!pthread_equal(loop->owner, pthread_self()))
		return -EPERM;
	if (loop->cur_fiber) {
		loop->stats.blocking_waits++;
		return halo__fiber_wait(loop, f);
	}
	if (loop->in_callback)
		return -EDEADLK;
	loop->stats.blocking_waits++;
	halo_fut_ref(f);
	/* f may be completed by a callback in step 1; its waiter then tells
	 * the tick not to park in io_uring_enter, so the caller sees it now. */
	w.fn = wake_driver;
	w.arg = NULL;
	halo_fut_add_waiter(f, &w);
	while (halo__fut_pending(f)) {
		r = halo_loop_run_once(loop);
		if (r < 0)
			goto out;
		if (r == 0 && halo__fut_pending(f)) {
			r = -EDEADLK; /* nothing left that could complete f */
			goto out;
		}
	}
	r = halo_fut_result(f);
out:
	halo_fut_remove_waiter(f, &w);
	halo_fut_release(f);
	return r;
}

int64_t halo_fut_join(halo_fut *f)
{
	int64_t r = halo_fut_wait(f);

	halo_fut_release(f);
	return r;
}

struct on_done {
	halo_waiter w;
	halo_fut_cb cb;
	void *arg;
};

static void on_done_fire(halo_fut *f, void *arg)
{
	struct on_done *d = arg;
	halo_fut_cb cb = d->cb;
	void *cb_arg = d->arg;

	halo_mem_free(f->loop, d, sizeof(*d));
	if (unlikely(f->loop->stall))
		halo__stall_origin(f->loop, (const void *)cb);
	cb(f, cb_arg);
}

int halo_fut_on_done(halo_fut *f, halo_fut_cb cb, void *arg)
{
	struct on_done *d = halo_mem_alloc(f->loop, sizeof(*d));

	if (!d)
		return -ENOMEM;
	d->cb = cb;
	d->arg = arg;
	d->w.fn = on_done_fire;
	d->w.arg = d;
	halo_fut_add_waiter(f, &d->w);
	return 0;
}

void halo_fut_add_waiter(halo_fut *f, halo_waiter *w)
{
	halo_waiter **pp = &f->waiters;

	while (*pp)
		pp = &(*pp)->next;
	w->next = NULL;
	*pp = w;
	if (!halo__fut_pending(f))
		halo__fut_queue(f);
}

bool halo_fut_remove_waiter(halo_fut *f, halo_waiter *w)
{
	for (halo_waiter **pp = &f->waiters; *pp; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			w->next = NULL;
			return true;
		}
	}
	return false;
}

halo_fut *halo_fut_ref(halo_fut *f)
{
	f->refs++;
	f->urefs++;
	return f;
}

/* Only the last user reference gives up interest: a producer that lets go
 * of its reference after handing f to a consumer must not hide that the
 * consumer never looked at f. Internal references never count. */
_Static_assert(offsetof(halo_fut, kind) == offsetof(halo_fut, flags) + 1,
	       "flags and kind must be adjacent");
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define FLAGS_KIND(flags, kind) ((uint16_t)((flags) | (kind) << 8))
#else
#define FLAGS_KIND(flags, kind) ((uint16_t)((flags) << 8 | (kind)))
#endif

void halo_fut_release(halo_fut *f)
{
	uint16_t fk;

	if (!f)
		return;
	assert(f->urefs > 0 && f->refs >= f->urefs);
	/* flags and kind read before the store to flags below: a 16-bit load
	 * right after a byte store into it would wait for the store to reach
	 * the cache (no store forwarding across the two). */
	memcpy(&fk, &f->flags, sizeof(fk));
	if (likely(--f->urefs == 0))
		f->flags |= FUT_CONSUMED;
	if (--f->refs)
		return;
	/* The last reference of a plain op: halo__fut_free's common case,
	 * inline, since releasing a done op is the end of every operation. */
	if (likely(!(fk & FLAGS_KIND(FUT_OWNED_MSG, 0xff)))) {
		f->loop->stats.live_futures--;
		halo__op_slot_put(f->loop, (halo_op *)f);
		return;
	}
	halo__fut_free(f);
}

void halo_fut_detach(halo_fut *f)
{
	if (!f)
		return;
	f->flags |= FUT_CONSUMED;
	halo_fut_release(f);
}

void halo_fut_consume(halo_fut *f)
{
	f->flags |= FUT_CONSUMED;
}

halo_loop *halo_fut_loop(const halo_fut *f)
{
	return f->loop;
}

const char *halo_fut_origin(const halo_fut *f, int *line)
{
	if (line)
		*line = f->line;
	return f->file;
}

static const char *state_name(uint8_t s)
{
	static const char *names[] = {"pending", "ok", "error", "cancelled"};
	return s < 4 ? names[s] : "?";
}

struct leak_scan {
	halo_loop *loop;
	int n;
};

/* Live futures are found by scanning the pools at close rather than kept
 * on a list, which would cost two pointer updates per operation. */
static void leak_check(void *slot, void *arg)
{
	struct leak_scan *ls = arg;
	halo_fut *f = slot;

	if (f->task.fn != halo__run_waiters || f->loop != ls->loop ||
	    (f->flags & FUT_CONSUMED))
		return;
	ls->n++;
	fprintf(stderr,
		"halo: leaked future created at %s:%d (%s, never waited, read "
		"or detached)\n",
		f->file ? f->file : "?", f->line, state_name(f->state));
}

int halo__loop_report_leaks(halo_loop *loop)
{
	struct leak_scan ls = {loop, 0};

	halo__pool_each_slot(loop, sizeof(halo_fut), leak_check, &ls);
	return ls.n;
}
