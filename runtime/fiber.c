/* Fibers: stackful tasks switched by runtime/ctx.S. A fiber always switches
 * to and from the loop's scheduler context (whatever stack is running the
 * tick), never directly to another fiber, so a suspended fiber is resumed by
 * exactly one thing: a waiter, a yield, a cancel, or the end of a drain.
 *
 * Every op whose first SQE is prepared while a fiber runs is owned by that
 * fiber (linked on fb->owned) until its last CQE. The kernel may write into
 * such an op's buffer, which may lie on the fiber's stack, so a cancelled
 * fiber cancels its owned ops and stays suspended ("drains") until they end,
 * and a fiber that returns with owned ops in flight cancels them and drains
 * before its future completes and its stack goes back to the cache. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ctx.h"
#include "internal.h"

#ifdef HALO_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

/* ThreadSanitizer follows each fiber as a context of its own, told of every
 * switch just before it happens; without that it takes the switch in
 * ctx.S for a thread that jumped stacks and reports nonsense. */
#if defined(__SANITIZE_THREAD__)
#define HALO_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HALO_TSAN 1
#endif
#endif
#ifdef HALO_TSAN
#include <sanitizer/tsan_interface.h>
#define TSAN_SWITCH(to) __tsan_switch_to_fiber((to), 0)
#else
#define TSAN_SWITCH(to) ((void)0)
#endif

#define STACK_CACHE_MAX 1024


struct halo_fiber {
	struct halo_fut fut;
	/* What a wake and a switch touch, in the cache line after the
	 * future's head (with its tail: refs, state, kind). */
	halo_task run; /* resumes the fiber from the ready queue */
	void *sp;
	int64_t wake;	 /* what the suspension point returns */
	uint8_t started, done, cancel_pending;
	uint8_t draining; /* suspended until owned is empty */
	uint8_t exiting;  /* fn returned; draining before the end */
	uint8_t retry_queued;
	uint8_t parked; /* in halo_fiber_park(), not unparked yet */
	char *stack; /* lowest usable byte; the guard page lies below */
	size_t stack_size;
	halo_fiber_fn fn;
	void *arg;
	halo_waiter wait;
	halo_fut *awaiting;
	halo_op *owned; /* ops it started that the kernel still holds */
	halo_task retry; /* re-asks cancels that found no SQE, next tick */
	void *asan_fake;
#ifdef HALO_TSAN
	void *tsan_fiber; /* this fiber's context */
	void *tsan_back;  /* the scheduler's, to switch back to */
#endif
};

static size_t page_size(void)
{
	static size_t ps;

	if (!ps)
		ps = (size_t)sysconf(_SC_PAGESIZE);
	return ps;
}

static char *stack_get(halo_loop *loop, size_t size)
{
	size_t guard = page_size();
	char *base;

	if (size == loop->opts.fiber_stack_size && loop->stack_cache) {
		char *s = loop->stack_cache;
		loop->stack_cache = *(void **)s;
		loop->stack_cache_n--;
#ifdef HALO_ASAN
		/* Frames of the last fiber never returned; clear their
		 * redzones before new frames overlay them. */
		ASAN_UNPOISON_MEMORY_REGION(s, size);
#endif
		return s;
	}
	if (halo__fault(HALO_FAULT_STACK))
		return NULL;
	base = mmap(NULL, size + guard, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1,
		    0);
	if (base == MAP_FAILED)
		return NULL;
	if (mprotect(base, guard, PROT_NONE) < 0) {
		munmap(base, size + guard);
		return NULL;
	}
	loop->stats.pool_allocs++;
	return base + guard;
}

static void stack_put(halo_loop *loop, char *s, size_t size)
{
	if (size == loop->opts.fiber_stack_size &&
	    loop->stack_cache_n < STACK_CACHE_MAX) {
		*(void **)s = loop->stack_cache;
		loop->stack_cache = s;
		loop->stack_cache_n++;
		return;
	}
	munmap(s - page_size(), size + page_size());
}

/* A fiber still suspended at loop close owns its stack; nothing will resume
 * it, so unmap the stack here (the fiber itself goes with the pools). */
static void free_suspended_stack(void *slot, void *arg)
{
	struct halo_fiber *fb = slot;
	halo_loop *loop = arg;

	if (fb->fut.task.fn != halo__run_waiters || fb->fut.loop != loop ||
	    fb->fut.kind != FUT_FIBER || !fb->stack)
		return;
	munmap(fb->stack - page_size(), fb->stack_size + page_size());
	fb->stack = NULL;
#ifdef HALO_TSAN
	__tsan_destroy_fiber(fb->tsan_fiber);
	fb->tsan_fiber = NULL;
#endif
}

void halo__stacks_close(halo_loop *loop)
{
	halo__pool_each_slot(loop, sizeof(struct halo_fiber),
			     free_suspended_stack, loop);
	while (loop->stack_cache) {
		char *s = loop->stack_cache;
		loop->stack_cache = *(void **)s;
		munmap(s - page_size(), loop->opts.fiber_stack_size + page_size());
	}
	loop->stack_cache_n = 0;
}

void halo__fiber_free(halo_fut *f)
{
	struct halo_fiber *fb = (struct halo_fiber *)f;

	/* A fiber still suspended at loop close owns its stack. */
	if (fb->stack)
		stack_put(f->loop, fb->stack, fb->stack_size);
#ifdef HALO_TSAN
	if (fb->tsan_fiber)
		__tsan_destroy_fiber(fb->tsan_fiber);
#endif
	halo_mem_free(f->loop, fb, sizeof(*fb));
}

static int64_t suspend(struct halo_fiber *fb);

void halo__fiber_own(struct halo_fiber *fb, halo_op *op)
{
	op->owner = fb;
	op->own_pprev = &fb->owned;
	op->own_next = fb->owned;
	if (fb->owned)
		fb->owned->own_pprev = &op->own_next;
	fb->owned = op;
}

static void unlink_owned(halo_op *op)
{
	struct halo_fiber *fb = op->owner;

	*op->own_pprev = op->own_next;
	if (op->own_next)
		op->own_next->own_pprev = op->own_pprev;
	op->owner = NULL;
	if (!fb->owned && fb->draining) {
		/* Reaped outside the fiber: resume it from the ready queue. */
		fb->draining = 0;
		halo__ready_push(fb->fut.loop, &fb->run);
	}
}

void halo__fiber_op_ended(halo_op *op)
{
	unlink_owned(op);
}

static void retry_cancels(halo_task *t);

/* Ask the kernel to cancel every op fb owns. An op whose future is already
 * done may still be held by the kernel (a multishot, an op completed early
 * by its handler): it is cancelled all the same. A cancel that finds the SQ
 * full and the kernel short of room is asked again next tick. */
static void cancel_owned(struct halo_fiber *fb)
{
	halo_loop *loop = fb->fut.loop;
	bool again = false;

	for (halo_op *op = fb->owned; op; op = op->own_next) {
		if (op->fut.flags & FUT_CANCEL_REQ)
			continue;
		op->fut.flags |= FUT_CANCEL_REQ;
		if (halo__op_cancel(op) < 0) {
			op->fut.flags &= (uint8_t)~FUT_CANCEL_REQ;
			again = true;
			continue;
		}
		loop->stats.fiber_op_cancels++;
	}
	if (again && !fb->retry_queued) {
		fb->retry_queued = 1;
		fb->retry.fn = retry_cancels;
		halo__later_push(loop, &fb->retry);
	}
}

static void retry_cancels(halo_task *t)
{
	struct halo_fiber *fb = (struct halo_fiber *)((char *)t -
					offsetof(struct halo_fiber, retry));

	fb->retry_queued = 0;
	if (fb->owned)
		cancel_owned(fb);
}

/* Cancel what fb owns and stay suspended until the kernel has let go of all
 * of it. Runs on fb's stack. */
static void drain(struct halo_fiber *fb)
{
	cancel_owned(fb);
	if (!fb->owned)
		return;
	fb->draining = 1;
	suspend(fb);
}

/* The fiber was cancelled: its wait returns -ECANCELED, but only once the
 * kernel is done with every op it started. */
static int64_t cancelled(struct halo_fiber *fb)
{
	fb->cancel_pending = 0;
	drain(fb);
	return -ECANCELED;
}

int halo_fiber_disown(halo_fut *f)
{
	halo_op *op = (halo_op *)f;

	if (!f || f->kind != FUT_OP)
		return -EINVAL;
	f->flags |= FUT_UNOWNED;
	if (op->owner)
		unlink_owned(op);
	return 0;
}

static void fiber_main(void *arg) __attribute__((noreturn));

static void fiber_main(void *arg)
{
	struct halo_fiber *fb = arg;
	halo_loop *loop = fb->fut.loop;
	int64_t r;

#ifdef HALO_ASAN
	__sanitizer_finish_switch_fiber(NULL, &loop->sched_stack_bottom,
					&loop->sched_stack_size);
#endif
	r = fb->fn(loop, fb->arg);
	if (fb->owned) {
		/* Ops it never waited for may still write into this stack. */
		loop->stats.fiber_exit_drains++;
		fb->exiting = 1;
		drain(fb);
	}
	fb->done = 1;
	loop->stats.live_fibers--;
	if (fb->fut.flags & FUT_CANCEL_REQ)
		halo__fut_complete(&fb->fut, HALO_FUT_CANCELLED, -ECANCELED);
	else
		halo__fut_complete(&fb->fut,
				   r < 0 ? HALO_FUT_ERROR : HALO_FUT_OK, r);
	if (fb->fut.state != HALO_FUT_OK) {
		fb->fut.value = NULL;
	} else if (fb->fut.flags & FUT_OWNED_MSG) {
		halo_mem_free(loop, fb->fut.errmsg, strlen(fb->fut.errmsg) + 1);
		fb->fut.flags &= (uint8_t)~FUT_OWNED_MSG;
	}
#ifdef HALO_ASAN
	__sanitizer_start_switch_fiber(NULL, loop->sched_stack_bottom,
				       loop->sched_stack_size);
#endif
	TSAN_SWITCH(fb->tsan_back);
	halo__ctx_switch(&fb->sp, loop->sched_sp);
	abort(); /* a finished fiber is never resumed */
}

static int start(struct halo_fiber *fb)
{
	fb->stack = stack_get(fb->fut.loop, fb->stack_size);
	if (!fb->stack)
		return -ENOMEM;
	fb->sp = halo__ctx_init(fb->stack, fb->stack_size, fiber_main, fb);
	fb->started = 1;
#ifdef HALO_TSAN
	fb->tsan_fiber = __tsan_create_fiber(0);
#endif
	return 0;
}

/* Switch from the scheduler context into fb until it suspends or ends. */
static void resume(struct halo_fiber *fb)
{
	halo_loop *loop = fb->fut.loop;
	struct halo_fiber *back;
	uint64_t t0 = 0;

	assert(!loop->cur_fiber);
	if (!fb->started) {
		int r;
		if (fb->fut.flags & FUT_CANCEL_REQ) {
			loop->stats.live_fibers--;
			halo__fut_complete(&fb->fut, HALO_FUT_CANCELLED,
					   -ECANCELED);
			halo__fut_unref(&fb->fut);
			return;
		}
		r = start(fb);
		if (r < 0) {
			loop->stats.live_fibers--;
			halo__fut_complete(&fb->fut, HALO_FUT_ERROR, r);
			halo__fut_unref(&fb->fut);
			return;
		}
	}
	loop->cur_fiber = fb;
	halo__sq_limit_update(loop);
	if (unlikely(loop->stall))
		t0 = halo__stall_slice_in(loop);
#ifdef HALO_ASAN
	__sanitizer_start_switch_fiber(&loop->sched_fake_stack, fb->stack,
				       fb->stack_size);
#endif
#ifdef HALO_TSAN
	fb->tsan_back = __tsan_get_current_fiber();
#endif
	TSAN_SWITCH(fb->tsan_fiber);
	halo__ctx_switch(&loop->sched_sp, fb->sp);
#ifdef HALO_ASAN
	__sanitizer_finish_switch_fiber(loop->sched_fake_stack, NULL, NULL);
#endif
	/* Whoever switched back: fb, or a fiber that a yield of fb handed the
	 * CPU to directly. */
	back = loop->cur_fiber;
	if (unlikely(loop->stall))
		halo__stall_slice_out(loop, &back->fut, t0);
	loop->cur_fiber = NULL;
	halo__sq_limit_update(loop);
	if (back->done) {
		stack_put(loop, back->stack, back->stack_size);
		back->stack = NULL;
#ifdef HALO_TSAN
		__tsan_destroy_fiber(back->tsan_fiber);
		back->tsan_fiber = NULL;
#endif
		halo__fut_unref(&back->fut); /* the running fiber's reference */
	}
}

/* Switch from fb back to the scheduler; returns what the resumer left in
 * fb->wake. */
/* Back on fb's stack after a switch. ASan must learn the scheduler's stack
 * bounds when the scheduler switched here, and nothing when another fiber
 * did (switch_direct). */
static inline void switched_in(struct halo_fiber *fb)
{
#ifdef HALO_ASAN
	halo_loop *loop = fb->fut.loop;

	if (loop->asan_from_fiber) {
		loop->asan_from_fiber = 0;
		__sanitizer_finish_switch_fiber(fb->asan_fake, NULL, NULL);
	} else {
		__sanitizer_finish_switch_fiber(fb->asan_fake,
						&loop->sched_stack_bottom,
						&loop->sched_stack_size);
	}
#else
	(void)fb;
#endif
}

static int64_t suspend(struct halo_fiber *fb)
{
	halo_loop *loop = fb->fut.loop;

#ifdef HALO_ASAN
	__sanitizer_start_switch_fiber(&fb->asan_fake, loop->sched_stack_bottom,
				       loop->sched_stack_size);
#endif
	TSAN_SWITCH(fb->tsan_back);
	halo__ctx_switch(&fb->sp, loop->sched_sp);
	switched_in(fb);
	return fb->wake;
}

/* Hand the CPU from the running fiber fb straight to next, a started fiber
 * taken off the ready queue: one stack switch instead of two through the
 * scheduler. When next suspends or ends it returns to the scheduler, which
 * finds it in loop->cur_fiber. */
static void switch_direct(struct halo_fiber *fb, struct halo_fiber *next)
{
	halo_loop *loop = fb->fut.loop;

	if (unlikely(loop->stall))
		halo__stall_slice_switch(loop, &fb->fut);
	loop->cur_fiber = next;
#ifdef HALO_ASAN
	loop->asan_from_fiber = 1;
	__sanitizer_start_switch_fiber(&fb->asan_fake, next->stack,
				       next->stack_size);
#endif
#ifdef HALO_TSAN
	next->tsan_back = fb->tsan_back; /* next returns to the scheduler */
#endif
	TSAN_SWITCH(next->tsan_fiber);
	halo__ctx_switch(&fb->sp, next->sp);
	switched_in(fb);
}

static void run_task(halo_task *t)
{
	resume((struct halo_fiber *)((char *)t -
				     offsetof(struct halo_fiber, run)));
}

/* The fiber a ready task resumes, or NULL if the task is something else. */
static inline struct halo_fiber *fiber_of_task(halo_task *t)
{
	if (t->fn != run_task)
		return NULL;
	return (struct halo_fiber *)((char *)t -
				     offsetof(struct halo_fiber, run));
}

halo_fut *halo_spawn_at(halo_loop *loop, halo_fiber_fn fn, void *arg,
			const halo_fiber_opts *opts, const char *file, int line)
{
	struct halo_fiber *fb;
	size_t size = loop->opts.fiber_stack_size;

	if (!fn)
		return NULL;
	if (opts && opts->stack_size) {
		size = (opts->stack_size + page_size() - 1) & ~(page_size() - 1);
		if (size < 16384)
			size = 16384;
	}
	fb = halo__fut_alloc(loop, sizeof(*fb), FUT_FIBER, file, line);
	if (!fb)
		return NULL;
	fb->fn = fn;
	fb->arg = arg;
	fb->stack_size = size;
	fb->run.fn = run_task;
	fb->fut.refs++; /* held by the fiber until it has run to the end */
	loop->stats.live_fibers++;
	halo__ready_push(loop, &fb->run);
	return &fb->fut;
}

static void wake_waiter(halo_fut *f, void *arg)
{
	struct halo_fiber *fb = arg;

	(void)f;
	fb->wake = 0;
	resume(fb);
}

int64_t halo__fiber_wait(halo_loop *loop, halo_fut *f)
{
	struct halo_fiber *fb = loop->cur_fiber;
	int64_t r;

	if (fb->cancel_pending)
		return cancelled(fb);
	f->refs++;
	fb->awaiting = f;
	fb->wait.fn = wake_waiter;
	fb->wait.arg = fb;
	halo_fut_add_waiter(f, &fb->wait);
	r = suspend(fb);
	fb->awaiting = NULL;
	if (r == 0)
		r = halo_fut_result(f);
	halo__fut_unref(f);
	return r;
}

/* Cancelling a fiber cancels the ops it owns and interrupts the wait it is
 * suspended in, or the next one it makes; only once, so that the fiber can
 * still wait for its own clean-up. */
void halo__fiber_cancel(halo_fut *f)
{
	struct halo_fiber *fb = (struct halo_fiber *)f;

	if (!fb->started || fb->done || fb->exiting)
		return; /* resume() sees the request before it starts */
	cancel_owned(fb);
	if (fb->parked) {
		/* As for a future's wait: back once the kernel let go. */
		fb->parked = 0;
		fb->wake = -ECANCELED;
		if (fb->owned)
			fb->draining = 1;
		else
			halo__ready_push(f->loop, &fb->run);
		return;
	}
	if (fb->awaiting &&
	    halo_fut_remove_waiter(fb->awaiting, &fb->wait)) {
		/* A future it did not start stays alive for its other
		 * waiters; the fiber only stops waiting, once its own ops
		 * (the awaited one first of all) have ended. */
		fb->wake = -ECANCELED;
		if (fb->owned)
			fb->draining = 1;
		else
			halo__ready_push(f->loop, &fb->run);
		return;
	}
	fb->cancel_pending = 1;
}

int halo_yield(halo_loop *loop)
{
	struct halo_fiber *fb = loop->cur_fiber, *next;

	if (!fb)
		return -EPERM;
	fb->wake = 0;
	halo__later_push(loop, &fb->run);
	next = loop->ready_head ? fiber_of_task(loop->ready_head) : NULL;
	if (next && next->started && !next->done) {
		/* The next ready task resumes a fiber: go there directly. */
		loop->ready_head = next->run.next;
		if (!loop->ready_head)
			loop->ready_tail = &loop->ready_head;
		switch_direct(fb, next);
	} else {
		suspend(fb);
	}
	if (fb->cancel_pending)
		return (int)cancelled(fb);
	return 0;
}

int halo_sleep(halo_loop *loop, uint64_t ns)
{
	halo_fut *t = halo_timer_after(loop, ns);
	int64_t r;

	if (!t)
		return -ENOMEM;
	r = halo_fut_wait(t);
	if (halo__fut_pending(t))
		halo_fut_cancel(t);
	halo_fut_release(t);
	return r < 0 ? (int)r : 0;
}

int64_t halo_fiber_park(halo_loop *loop, halo_fut **slot)
{
	struct halo_fiber *fb = loop->cur_fiber;
	int64_t r;

	if (!fb)
		return -EPERM;
	if (fb->cancel_pending)
		return cancelled(fb);
	loop->stats.blocking_waits++;
	fb->parked = 1;
	*slot = &fb->fut;
	r = suspend(fb);
	*slot = NULL;
	return r;
}

int halo_fiber_unpark(halo_fut *f, int64_t v)
{
	struct halo_fiber *fb = (struct halo_fiber *)f;

	if (!f || f->kind != FUT_FIBER)
		return -EINVAL;
	if (!fb->parked)
		return -EALREADY;
	fb->parked = 0;
	fb->wake = v;
	halo__ready_push(f->loop, &fb->run);
	return 0;
}

int halo_fiber_cancelled(const halo_loop *loop)
{
	return loop->cur_fiber &&
	       (loop->cur_fiber->fut.flags & FUT_CANCEL_REQ) != 0;
}

int64_t halo_fiber_fail(halo_loop *loop, int err, const char *msg)
{
	struct halo_fiber *fb = loop->cur_fiber;

	if (err >= 0)
		return -EINVAL;
	if (!fb)
		return -EPERM;
	if (fb->fut.flags & FUT_OWNED_MSG) {
		halo_mem_free(loop, fb->fut.errmsg, strlen(fb->fut.errmsg) + 1);
		fb->fut.flags &= (uint8_t)~FUT_OWNED_MSG;
		fb->fut.errmsg = NULL;
	}
	if (msg) {
		fb->fut.errmsg = halo_mem_strdup(loop, msg);
		if (fb->fut.errmsg)
			fb->fut.flags |= FUT_OWNED_MSG;
	}
	return err;
}

int halo_fiber_set_value(halo_loop *loop, void *value)
{
	if (!loop->cur_fiber)
		return -EPERM;
	loop->cur_fiber->fut.value = value;
	return 0;
}
