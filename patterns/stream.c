/* Streams. Every stage has an output ring of at most its window of items
 * and a pump that moves items: take from upstream while the window allows,
 * start work, push finished items into the ring. Pumps are re-entrancy safe
 * (a nested kick only asks the running pump for another pass) and never run
 * on a fiber's stack: a kick from a fiber is posted to the ready queue, so
 * that work a stage starts is never owned by a fiber that only consumes the
 * stream (cancelling that fiber would cancel the stage's operations).
 *
 * A stage ends when its input is exhausted and nothing of its own is pending
 * (futures it waits on, a fiber, a timer's wait); a failing stage ends only
 * once its upstream has ended too, so the end of the tail means the whole
 * chain is idle. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "stream.h"

#include "../runtime/fiber.h"
#include "../runtime/loop.h"
#include "../runtime/pool.h"
#include "../runtime/timer.h"

enum kind {
	K_RANGE,
	K_ARRAY,
	K_GEN,
	K_CHAN,
	K_MAP,
	K_FLAT,
	K_FILTER,
	K_PASS,
	K_TAKE,
	K_BATCH,
	K_UNBATCH,
	K_EACH,
	K_COLLECT,
};

static const char *const kind_name[] = {
    "range",	"array",    "generate",	    "chan", "map",
    "flat_map", "filter",   "buffer_ahead", "take", "batch",
    "unbatch",	"for_each", "collect",
};

enum { SL_FREE, SL_RUN, SL_DONE };

struct node {
	struct node *next;
	halo_stream_item it;
};

/* A slot of work in flight (map, flat_map, for_each); for flat_map also
 * the handle its inner work emits through. */
struct halo_stream_emitter {
	halo_waiter w;
	halo_stream *s;
	halo_fut *f;
	halo_stream_item in;
	halo_stream_item out;	  /* ordered map: the result waiting its turn */
	struct node *head, *tail; /* ordered flat_map: emitted, not moved */
	halo_fut *space_f; /* emit_wait: resolved when the stage has room */
	halo_fut *timer;   /* timeout_ns */
	halo_waiter tw;
	uint32_t next_free;
	uint8_t state;
	bool has_out, has_permit, timed_out;
};

typedef struct halo_stream_emitter slot;

struct halo_stream {
	halo_loop *loop;
	halo_stream *up, *down;
	enum kind kind;
	bool ordered, skip;
	char name[32];
	halo_stream_opts o;
	halo_stream_stats st;
	halo_stream_item *ring;
	uint32_t cap, head, n;
	bool started, ended, failing, cut_up, closed, user_cancel, pumping,
	    again, fresh, took;
	halo_post kick_post, fin_post; /* need no memory to post */
	int err;
	uint64_t err_idx;
	char err_stage[32];
	char err_msg[96];
	uint64_t in_n;	  /* items taken from upstream */
	uint32_t pending; /* futures and waits of this stage not done yet */
	uint64_t busy_t0;
	halo_fut *next_f, *close_f;
	halo_stream_item cur;
	union {
		halo_stream_map_fn map;
		halo_stream_flat_fn flat;
		halo_stream_filter_fn filter;
		halo_stream_gen_fn gen;
		halo_stream_each_fn each;
	} fn;
	void *arg;
	/* map, flat_map, for_each */
	slot *slots;
	uint32_t slots_n, free_head, c, inflight;
	uint64_t window, held, seq_head, seq_next;
	uint32_t head_i, next_i;	/* seq_head, seq_next modulo slots_n */
	struct node *ov_head, *ov_tail; /* unordered flat_map overflow */
	uint64_t queued;		/* flat_map: items in lists */
	halo_sem *budget;
	bool has_permit;
	halo_fut *acq;
	halo_waiter acq_w;
	/* sources */
	int64_t range_next;
	uint64_t left;
	void *const *arr;
	halo_fut *fiber, *space_f;
	halo_waiter fiber_w;
	bool src_done;
	halo_chan *chan;
	halo_fut *recv_f;
	halo_waiter recv_w;
	halo_chan_msg recv_msg;
	/* take */
	uint64_t take_left;
	/* batch, unbatch */
	size_t batch_n;
	uint64_t max_delay, batches;
	halo_batch *bat;
	size_t bat_pos;
	halo_fut *timer;
	halo_waiter timer_w;
	bool timer_fired;
	/* sinks */
	halo_fut *out;
	uint64_t count;
	halo_stream_item *coll;
	size_t coll_cap;
};

static void kick(halo_stream *s);
static void stage_fail(halo_stream *s, int err, uint64_t idx, const char *stage,
		       const char *msg);

/* --- the output ring --- */

/* Wrap by comparison: a division per item costs more than the rest of a
 * push. */
static inline void ring_push(halo_stream *s, halo_stream_item it)
{
	uint32_t i = s->head + s->n;

	if (i >= s->cap)
		i -= s->cap;
	s->ring[i] = it;
	s->n++;
	s->st.out++;
	if (s->n > s->st.queued_max)
		s->st.queued_max = s->n;
}

static halo_stream_item ring_pop(halo_stream *s)
{
	halo_stream_item it = s->ring[s->head];

	if (++s->head == s->cap)
		s->head = 0;
	s->n--;
	if (s->held)
		s->held--;
	return it;
}

static void drop_item(halo_stream *s, const halo_stream_item *it)
{
	if (s->o.drop)
		s->o.drop(it, s->o.drop_arg);
}

static void drop_ring(halo_stream *s)
{
	while (s->n) {
		halo_stream_item it = ring_pop(s);
		drop_item(s, &it);
	}
}

static void deliver_next(halo_stream *s);

/* The consumer of s may have something to do. */
static void wake_down(halo_stream *s, halo_stream *down)
{
	if (down)
		kick(down);
	else if (s->next_f)
		deliver_next(s);
}

/* Push an item; the consumer is woken once per pump pass, not per item,
 * so that it drains what came in one go. Outside a pump, kick(s) after. */
static inline void emit(halo_stream *s, halo_stream_item it)
{
	ring_push(s, it);
	s->fresh = true;
}

/* --- busy time and in-flight accounting --- */

static void inflight_inc(halo_stream *s)
{
	if (!s->inflight++)
		s->busy_t0 = halo_now_ns();
	s->pending++;
	if (s->inflight > s->st.inflight_max)
		s->st.inflight_max = s->inflight;
}

static void inflight_dec(halo_stream *s)
{
	s->pending--;
	if (!--s->inflight)
		s->st.busy_ns += halo_now_ns() - s->busy_t0;
}

/* --- upstream --- */

static bool is_lazy(const halo_stream *u)
{
	return u->kind == K_RANGE || u->kind == K_ARRAY;
}

/* 1 if up has an item now, -1 if it ended (its failure becomes ours), 0 if
 * not yet (it will kick us). */
static int up_avail(halo_stream *s)
{
	halo_stream *u = s->up;

	if (u->n)
		return 1;
	if (is_lazy(u) && u->left && !u->failing)
		return 1;
	if (u->ended) {
		if (u->err && !s->failing && !s->cut_up)
			stage_fail(s, u->err, u->err_idx, u->err_stage,
				   u->err_msg[0] ? u->err_msg : NULL);
		return -1;
	}
	/* A stage that stopped at a full ring is kicked after this pass
	 * (took); only the first demand starts it here, and it may end in
	 * that very kick (its first work could not start): then its end,
	 * failure included, is ours now. */
	if (!u->started) {
		kick(u);
		if (!u->n && u->ended)
			return up_avail(s);
	}
	return u->n ? 1 : 0;
}

static bool up_exhausted(const halo_stream *s)
{
	return s->up->ended && !s->up->n;
}

static halo_stream_item range_item(halo_stream *s)
{
	halo_stream_item it;

	it.idx = s->st.out++;
	if (s->arr) {
		it.v = (int64_t)it.idx;
		it.p = s->arr[it.idx];
	} else {
		it.v = s->range_next++;
		it.p = NULL;
	}
	s->left--;
	return it;
}

static halo_stream_item up_take(halo_stream *s)
{
	halo_stream_item it = s->up->n ? ring_pop(s->up) : range_item(s->up);

	it.idx = s->in_n++;
	s->st.in++;
	s->took = true; /* room upstream: it pulls more after this pass */
	return it;
}

/* --- ending --- */

static void post_finalize(halo_stream *s);

static void try_end(halo_stream *s, bool input_done)
{
	if (s->ended || s->pending)
		return;
	if (s->failing) {
		if (s->up && !s->up->ended)
			return;
	} else if (!input_done) {
		return;
	}
	if (s->has_permit) {
		s->has_permit = false;
		halo_sem_release(s->budget);
	}
	s->ended = true;
	if (s->failing)
		drop_ring(s);
	if (s->closed || s->kind == K_EACH || s->kind == K_COLLECT)
		post_finalize(s);
	else
		s->fresh = true;
}

/* --- stage-specific cancellation --- */

static void stop_timer(halo_stream *s)
{
	if (!s->timer)
		return;
	halo_fut_remove_waiter(s->timer, &s->timer_w);
	halo_fut_cancel(s->timer);
	halo_fut_release(s->timer);
	s->timer = NULL;
	s->pending--;
}

static void stage_cancel(halo_stream *s)
{
	if (s->acq) {
		/* Cancelling a queued acquire completes it at once; a granted
		 * one whose waiter has not run yet carries a permit. */
		halo_fut *a = s->acq;

		halo_fut_remove_waiter(a, &s->acq_w);
		halo_fut_cancel(a);
		if (halo_fut_status(a) == HALO_FUT_OK)
			halo_sem_release(s->budget);
		halo_fut_release(a);
		s->acq = NULL;
		s->pending--;
	}
	stop_timer(s);
	for (uint32_t i = 0; i < s->slots_n; i++)
		if (s->slots[i].f)
			halo_fut_cancel(s->slots[i].f);
	if (s->fiber)
		halo_fut_cancel(s->fiber);
	if (s->recv_f)
		halo_fut_cancel(s->recv_f);
}

static void set_str(char *dst, size_t size, const char *src)
{
	snprintf(dst, size, "%s", src ? src : "");
}

/* The first error of s: stop pulling, drop what is buffered, cancel the
 * work in flight and everything upstream; the end comes once all is idle. */
static void stage_fail(halo_stream *s, int err, uint64_t idx, const char *stage,
		       const char *msg)
{
	if (s->failing || s->ended)
		return;
	s->failing = true;
	s->err = err;
	s->err_idx = idx;
	set_str(s->err_stage, sizeof(s->err_stage), stage);
	set_str(s->err_msg, sizeof(s->err_msg), msg);
	drop_ring(s);
	stage_cancel(s);
	if (s->up)
		stage_fail(s->up, -ECANCELED, 0, s->name,
			   "cancelled downstream");
	kick(s);
}

/* --- budget --- */

static void acq_done(halo_fut *f, void *arg)
{
	halo_stream *s = arg;

	s->acq = NULL;
	s->pending--;
	if (halo_fut_status(f) == HALO_FUT_OK) {
		if (s->failing)
			halo_sem_release(s->budget);
		else
			s->has_permit = true;
	}
	halo_fut_release(f);
	kick(s);
}

/* True if s may start one more item as far as the shared budget goes. */
static bool permit(halo_stream *s)
{
	if (!s->budget || s->has_permit)
		return true;
	if (s->acq)
		return false;
	if (halo_sem_try_acquire(s->budget)) {
		s->has_permit = true;
		return true;
	}
	s->acq = halo_sem_acquire(s->budget);
	if (!s->acq)
		return false;
	s->pending++;
	s->acq_w.fn = acq_done;
	s->acq_w.arg = s;
	halo_fut_add_waiter(s->acq, &s->acq_w);
	return false;
}

/* --- map, flat_map, for_each --- */

static void item_done(halo_fut *f, void *arg);
static void posted_kick(void *arg);

/* One pump pass for all the items that completed in this tick: the pass
 * runs from the ready queue after their callbacks, so a tick's completions
 * start their successors and reach the consumer in one go. */
static void kick_later(halo_stream *s)
{
	halo_loop_post_embedded(s->loop, &s->kick_post, posted_kick, s);
}

static slot *slot_get(halo_stream *s)
{
	slot *sl;

	if (s->ordered) {
		sl = &s->slots[s->next_i];
		s->seq_next++;
		if (++s->next_i == s->slots_n)
			s->next_i = 0;
		return sl;
	}
	sl = &s->slots[s->free_head];
	s->free_head = sl->next_free;
	return sl;
}

static void slot_put(halo_stream *s, slot *sl)
{
	sl->state = SL_FREE;
	sl->has_out = false;
	if (!s->ordered) {
		sl->next_free = s->free_head;
		s->free_head = (uint32_t)(sl - s->slots);
	}
}

/* A failed item: the end of the stream, or skipped. */
static void item_failed(halo_stream *s, slot *sl, int err, const char *msg)
{
	if (s->failing)
		return;
	if (!s->skip) {
		stage_fail(s, err, sl->in.idx, s->name, msg);
		return;
	}
	s->st.failed++;
	if (s->o.on_fail)
		s->o.on_fail(s, &sl->in, err, msg, s->o.fail_arg);
}

static void timeout_fired(halo_fut *t, void *arg)
{
	slot *sl = arg;

	sl->timer = NULL;
	if (halo_fut_status(t) == HALO_FUT_OK && sl->f) {
		sl->timed_out = true;
		halo_fut_cancel(sl->f);
	}
	halo_fut_release(t);
}

/* A timer that cancels the work if it outlives timeout_ns; without memory
 * for it the item just runs without a deadline. */
static void arm_timeout(halo_stream *s, slot *sl)
{
	sl->timer = halo_timer_after(s->loop, s->o.timeout_ns);
	if (!sl->timer)
		return;
	sl->tw.fn = timeout_fired;
	sl->tw.arg = sl;
	halo_fut_add_waiter(sl->timer, &sl->tw);
}

static void disarm_timeout(slot *sl)
{
	if (!sl->timer)
		return;
	halo_fut_remove_waiter(sl->timer, &sl->tw);
	halo_fut_cancel(sl->timer);
	halo_fut_release(sl->timer);
	sl->timer = NULL;
}

static void map_start(halo_stream *s, halo_stream_item in)
{
	slot *sl = slot_get(s);
	halo_fut *f;

	sl->in = in;
	sl->state = SL_RUN;
	sl->has_permit = s->budget != NULL;
	s->has_permit = false;
	if (s->kind == K_FLAT)
		f = s->fn.flat(sl, &sl->in, s->arg);
	else if (s->kind == K_EACH)
		f = s->fn.each(s->loop, &sl->in, s->arg);
	else
		f = s->fn.map(s->loop, &sl->in, s->arg);
	if (!f) {
		if (sl->has_permit)
			halo_sem_release(s->budget);
		if (s->kind == K_EACH) {
			s->count++;
			s->held--;
		} else {
			item_failed(s, sl, -ENOMEM,
				    "work function returned NULL");
			if (s->kind == K_MAP)
				s->held--;
		}
		if (s->ordered)
			sl->state = SL_DONE;
		else
			slot_put(s, sl);
		return;
	}
	sl->f = f;
	inflight_inc(s);
	halo_fut_add_waiter(f, &sl->w);
	if (s->o.timeout_ns)
		arm_timeout(s, sl);
}

static void item_done(halo_fut *f, void *arg)
{
	slot *sl = arg;
	halo_stream *s = sl->s;
	bool ok = halo_fut_status(f) == HALO_FUT_OK;
	int64_t r = halo_fut_result(f);
	void *value = halo_fut_value(f);

	sl->f = NULL;
	disarm_timeout(sl);
	inflight_dec(s);
	if (sl->has_permit) {
		sl->has_permit = false;
		halo_sem_release(s->budget);
	}
	if (!ok && sl->timed_out)
		item_failed(s, sl, -ETIMEDOUT, "timed out");
	else if (!ok)
		item_failed(s, sl, r < 0 ? (int)r : -EIO,
			    halo_fut_error_msg(f));
	sl->timed_out = false;
	halo_fut_release(f);
	if (s->kind == K_EACH) {
		s->count += ok;
		s->held--;
		slot_put(s, sl);
	} else if (s->kind == K_FLAT) {
		if (s->ordered)
			sl->state = SL_DONE;
		else
			slot_put(s, sl);
	} else if (!ok || s->failing) {
		halo_stream_item it = {r, value, sl->in.idx};
		if (ok)
			drop_item(s, &it);
		s->held--;
		if (s->ordered)
			sl->state = SL_DONE;
		else
			slot_put(s, sl);
	} else if (s->ordered) {
		sl->out = (halo_stream_item){r, value, sl->in.idx};
		sl->has_out = true;
		sl->state = SL_DONE;
	} else {
		halo_stream_item it = {r, value, sl->in.idx};
		slot_put(s, sl);
		emit(s, it);
	}
	kick_later(s);
}

/* Ordered map: hand out the finished head of the window. */
static void map_deliver(halo_stream *s)
{
	while (s->seq_head < s->seq_next) {
		slot *sl = &s->slots[s->head_i];

		if (sl->state != SL_DONE)
			break;
		s->seq_head++;
		if (++s->head_i == s->slots_n)
			s->head_i = 0;
		if (sl->has_out) {
			halo_stream_item it = sl->out;
			slot_put(s, sl);
			emit(s, it);
		} else {
			slot_put(s, sl);
		}
	}
}

static void node_free(halo_stream *s, struct node *nd)
{
	halo_mem_free(s->loop, nd, sizeof(*nd));
}

/* flat_map: move emitted items into the ring while it has room. */
static void flat_deliver(halo_stream *s)
{
	struct node *nd;

	if (!s->ordered) {
		while (s->n < s->cap && (nd = s->ov_head)) {
			halo_stream_item it = nd->it;
			s->ov_head = nd->next;
			if (!s->ov_head)
				s->ov_tail = NULL;
			s->queued--;
			node_free(s, nd);
			emit(s, it);
		}
		return;
	}
	while (s->seq_head < s->seq_next) {
		slot *sl = &s->slots[s->head_i];

		while (s->n < s->cap && (nd = sl->head)) {
			halo_stream_item it = nd->it;
			sl->head = nd->next;
			if (!sl->head)
				sl->tail = NULL;
			s->queued--;
			node_free(s, nd);
			emit(s, it);
		}
		if (sl->head || sl->state != SL_DONE)
			break;
		s->seq_head++;
		if (++s->head_i == s->slots_n)
			s->head_i = 0;
		slot_put(s, sl);
	}
}

/* Wake the inner works waiting in emit_wait once there is room, or the
 * stage is failing (their emit then says so). */
static void flat_wake_emitters(halo_stream *s)
{
	if (!s->failing && s->queued + s->n >= s->window)
		return;
	for (uint32_t i = 0; i < s->slots_n; i++)
		if (s->slots[i].space_f)
			halo_fut_resolve(s->slots[i].space_f, 0, NULL);
}

static void flat_drop_lists(halo_stream *s)
{
	struct node *nd;

	for (uint32_t i = 0; i <= s->slots_n; i++) {
		struct node **head =
		    i < s->slots_n ? &s->slots[i].head : &s->ov_head;
		while ((nd = *head)) {
			*head = nd->next;
			drop_item(s, &nd->it);
			node_free(s, nd);
		}
		if (i < s->slots_n)
			s->slots[i].tail = NULL;
	}
	s->ov_tail = NULL;
	s->queued = 0;
}

int halo_stream_emit(halo_stream_emitter *em, int64_t v, void *p)
{
	halo_stream *s = em->s;
	struct node *nd;

	if (em->state != SL_RUN || s->failing)
		return -ECANCELED;
	nd = halo_mem_alloc(s->loop, sizeof(*nd));
	if (!nd)
		return -ENOMEM;
	nd->next = NULL;
	nd->it = (halo_stream_item){v, p, em->in.idx};
	if (s->ordered) {
		if (em->tail)
			em->tail->next = nd;
		else
			em->head = nd;
		em->tail = nd;
	} else {
		if (s->ov_tail)
			s->ov_tail->next = nd;
		else
			s->ov_head = nd;
		s->ov_tail = nd;
	}
	s->queued++;
	if (s->queued + s->n > s->st.queued_max)
		s->st.queued_max = s->queued + s->n;
	kick(s);
	return 0;
}

int halo_stream_emit_wait(halo_stream_emitter *em, int64_t v, void *p)
{
	halo_stream *s = em->s;

	while (em->state == SL_RUN && !s->failing &&
	       s->queued + s->n >= s->window) {
		halo_fut *f = halo_fut_new(s->loop);
		int64_t r;

		if (!f)
			return -ENOMEM;
		em->space_f = f;
		r = halo_fut_wait(f);
		em->space_f = NULL;
		halo_fut_release(f);
		if (r < 0)
			return (int)r;
	}
	return halo_stream_emit(em, v, p);
}

static bool work_room(halo_stream *s)
{
	if (s->inflight >= s->c)
		return false;
	if (s->kind == K_FLAT) {
		if (s->ordered && s->seq_next - s->seq_head >= s->slots_n)
			return false;
		return s->queued + s->n < s->window;
	}
	return s->held < s->window;
}

static void map_pump(halo_stream *s)
{
	while (!s->failing && work_room(s)) {
		int r = up_avail(s);

		if (r <= 0 || !permit(s))
			break;
		s->held++;
		map_start(s, up_take(s));
	}
	if (s->kind == K_FLAT) {
		flat_deliver(s);
		flat_wake_emitters(s);
	} else if (s->ordered)
		map_deliver(s);
	try_end(s, up_exhausted(s) && !s->inflight &&
		       s->seq_head == s->seq_next && !s->queued);
}

/* --- sources --- */

/* A range or array feeding a stage makes its items as they are taken,
 * with no buffer in between; as the tail it fills its ring. */
static void range_pump(halo_stream *s)
{
	while (!s->failing && !s->down && s->left && s->n < s->cap) {
		halo_stream_item it = range_item(s);

		s->st.out--; /* emit counts it */
		emit(s, it);
	}
	try_end(s, !s->left);
}

static void gen_done(halo_fut *f, void *arg)
{
	halo_stream *s = arg;
	int64_t r = halo_fut_result(f);

	s->fiber = NULL;
	s->pending--;
	s->src_done = true;
	if (r < 0)
		stage_fail(s, (int)r, s->st.out, s->name,
			   halo_fut_error_msg(f));
	halo_fut_release(f);
	kick(s);
}

static int64_t gen_body(halo_loop *loop, void *arg)
{
	halo_stream *s = arg;

	(void)loop;
	return s->fn.gen(s, s->arg);
}

static void gen_pump(halo_stream *s)
{
	if (!s->fiber && !s->src_done && !s->failing) {
		s->fiber = halo_spawn(s->loop, gen_body, s);
		if (!s->fiber) {
			s->src_done = true;
			stage_fail(s, -ENOMEM, s->st.out, s->name,
				   "no fiber for the generator");
		} else {
			s->pending++;
			s->fiber_w.fn = gen_done;
			s->fiber_w.arg = s;
			halo_fut_add_waiter(s->fiber, &s->fiber_w);
		}
	}
	if (s->space_f && s->n < s->cap)
		halo_fut_resolve(s->space_f, 0, NULL);
	try_end(s, s->src_done);
}

int halo_stream_yield(halo_stream *s, int64_t v, void *p)
{
	if (s->kind != K_GEN)
		return -EINVAL;
	while (s->n >= s->cap && !s->failing) {
		halo_fut *f = halo_fut_new(s->loop);
		int64_t r;

		if (!f)
			return -ENOMEM;
		s->space_f = f;
		r = halo_fut_wait(f);
		s->space_f = NULL;
		halo_fut_release(f);
		if (r < 0)
			return (int)r;
	}
	if (s->failing)
		return -ECANCELED;
	emit(s, (halo_stream_item){v, p, s->st.out});
	kick(s);
	return 0;
}

static void recv_done(halo_fut *f, void *arg)
{
	halo_stream *s = arg;
	bool ok = halo_fut_status(f) == HALO_FUT_OK;
	int64_t r = halo_fut_result(f);

	s->recv_f = NULL;
	s->pending--;
	halo_fut_release(f);
	if (ok && r == 1) {
		halo_stream_item it = {s->recv_msg.v, s->recv_msg.p, s->st.out};
		if (s->failing)
			drop_item(s, &it);
		else
			emit(s, it);
	} else if (ok) {
		s->src_done = true;
	}
	kick(s);
}

static void chan_pump(halo_stream *s)
{
	halo_chan_msg m;

	while (!s->failing && !s->src_done && !s->recv_f && s->n < s->cap) {
		int r = halo_chan_try_recv(s->chan, &m);

		if (r == 1) {
			emit(s, (halo_stream_item){m.v, m.p, s->st.out});
			continue;
		}
		if (r == 0) {
			s->src_done = true;
			break;
		}
		s->recv_f = halo_chan_recv(s->chan, &s->recv_msg);
		if (!s->recv_f)
			break;
		s->pending++;
		s->recv_w.fn = recv_done;
		s->recv_w.arg = s;
		halo_fut_add_waiter(s->recv_f, &s->recv_w);
	}
	try_end(s, s->src_done);
}

/* --- filter, buffer_ahead, take --- */

static void pass_pump(halo_stream *s)
{
	while (!s->failing && s->n < s->cap) {
		halo_stream_item it;

		if (s->kind == K_TAKE && !s->take_left)
			break;
		if (up_avail(s) <= 0)
			break;
		it = up_take(s);
		if (s->kind == K_FILTER && !s->fn.filter(&it, s->arg))
			continue;
		if (s->kind == K_TAKE)
			s->take_left--;
		emit(s, it);
	}
	if (s->kind == K_TAKE && !s->take_left && !s->cut_up && !s->failing) {
		s->cut_up = true;
		stage_fail(s->up, -ECANCELED, 0, s->name, "take: enough items");
	}
	try_end(s, s->cut_up ? s->up->ended : up_exhausted(s));
}

/* --- batch, unbatch --- */

static void timer_done(halo_fut *f, void *arg)
{
	halo_stream *s = arg;

	s->timer = NULL;
	s->pending--;
	s->timer_fired = halo_fut_status(f) == HALO_FUT_OK;
	halo_fut_release(f);
	kick(s);
}

static void batch_pump(halo_stream *s)
{
	while (!s->failing) {
		halo_batch *b = s->bat;

		if (b &&
		    (b->n == s->batch_n || s->timer_fired || up_exhausted(s))) {
			if (s->n >= s->cap)
				break;
			stop_timer(s);
			s->timer_fired = false;
			s->bat = NULL;
			emit(s, (halo_stream_item){(int64_t)b->n, b,
						   s->batches++});
			continue;
		}
		if (up_avail(s) <= 0)
			break;
		if (!b) {
			b = halo_mem_alloc(
			    s->loop,
			    sizeof(*b) + s->batch_n * sizeof(b->items[0]));
			if (!b) {
				stage_fail(s, -ENOMEM, s->in_n, s->name,
					   "no memory for a batch");
				break;
			}
			b->n = 0;
			b->cap = s->batch_n;
			s->bat = b;
			if (s->max_delay) {
				s->timer =
				    halo_timer_after(s->loop, s->max_delay);
				if (s->timer) {
					s->pending++;
					s->timer_w.fn = timer_done;
					s->timer_w.arg = s;
					halo_fut_add_waiter(s->timer,
							    &s->timer_w);
				}
			}
		}
		b->items[b->n++] = up_take(s);
	}
	try_end(s, up_exhausted(s) && !s->bat);
}

void halo_stream_batch_free(halo_loop *loop, halo_batch *b)
{
	if (b)
		halo_mem_free(loop, b,
			      sizeof(*b) + b->cap * sizeof(b->items[0]));
}

static void drop_batch(halo_stream *s, halo_batch *b, size_t from)
{
	for (size_t i = from; i < b->n; i++)
		drop_item(s, &b->items[i]);
	halo_stream_batch_free(s->loop, b);
}

static void unbatch_pump(halo_stream *s)
{
	while (!s->failing && s->n < s->cap) {
		halo_batch *b = s->bat;

		if (b && s->bat_pos < b->n) {
			halo_stream_item it = b->items[s->bat_pos++];
			emit(s, it);
			continue;
		}
		if (b) {
			halo_stream_batch_free(s->loop, b);
			s->bat = NULL;
		}
		if (up_avail(s) <= 0)
			break;
		s->bat = up_take(s).p;
		s->bat_pos = 0;
	}
	try_end(s, up_exhausted(s) && !s->bat);
}

/* --- collect --- */

static void collect_pump(halo_stream *s)
{
	while (!s->failing && up_avail(s) > 0) {
		halo_stream_item it = up_take(s);

		if (s->count == s->coll_cap) {
			drop_item(s, &it);
			stage_fail(s, -ENOBUFS, it.idx, s->name,
				   "more items than room");
			break;
		}
		s->coll[s->count++] = it;
	}
	try_end(s, up_exhausted(s));
}

/* --- the pump and kicks --- */

static void pump(halo_stream *s)
{
	s->started = true;
	if (s->failing && s->kind != K_GEN) {
		if (s->kind == K_FLAT) {
			flat_drop_lists(s);
			flat_wake_emitters(s);
		}
		try_end(s, true);
		return;
	}
	switch (s->kind) {
	case K_RANGE:
	case K_ARRAY:
		range_pump(s);
		break;
	case K_GEN:
		gen_pump(s);
		break;
	case K_CHAN:
		chan_pump(s);
		break;
	case K_MAP:
	case K_FLAT:
	case K_EACH:
		map_pump(s);
		break;
	case K_FILTER:
	case K_PASS:
	case K_TAKE:
		pass_pump(s);
		break;
	case K_BATCH:
		batch_pump(s);
		break;
	case K_UNBATCH:
		unbatch_pump(s);
		break;
	case K_COLLECT:
		collect_pump(s);
		break;
	}
}

static void posted_kick(void *arg)
{
	kick(arg);
}

static void kick(halo_stream *s)
{
	if (s->loop->cur_fiber) {
		halo_loop_post_embedded(s->loop, &s->kick_post, posted_kick, s);
		return;
	}
	if (s->pumping) {
		s->again = true;
		return;
	}
	s->pumping = true;
	do {
		s->again = false;
		pump(s);
		if (s->took) {
			s->took = false;
			if (!is_lazy(s->up) || !s->up->left)
				kick(s->up);
		}
		if (s->fresh) {
			s->fresh = false;
			wake_down(s, s->down);
		}
	} while (s->again);
	s->pumping = false;
}

/* --- construction --- */

static halo_stream *stage_new(halo_loop *loop, halo_stream *up, enum kind kind,
			      size_t cap, const halo_stream_opts *opts)
{
	halo_stream *s;

	if (up && up->down) /* a stream has one consumer */
		return NULL;
	s = halo_mem_zalloc(loop, sizeof(*s));
	if (!s)
		goto fail;
	if (opts)
		s->o = *opts;
	s->loop = loop;
	s->up = up;
	s->kind = kind;
	s->ordered = !(s->o.flags & HALO_UNORDERED);
	s->skip = s->o.flags & HALO_STREAM_SKIP;
	set_str(s->name, sizeof(s->name),
		s->o.name ? s->o.name : kind_name[kind]);
	s->o.name = NULL;
	if (cap) {
		s->ring = halo_mem_alloc(loop, cap * sizeof(*s->ring));
		if (!s->ring) {
			halo_mem_free(loop, s, sizeof(*s));
			goto fail;
		}
		s->cap = (uint32_t)cap;
	}
	if (up)
		up->down = s;
	return s;
fail:
	halo_stream_close(up);
	return NULL;
}

static void stage_free(halo_stream *s)
{
	drop_ring(s);
	if (s->kind == K_FLAT)
		flat_drop_lists(s);
	for (uint32_t i = 0; i < s->slots_n; i++)
		if (s->slots[i].has_out)
			drop_item(s, &s->slots[i].out);
	if (s->bat)
		drop_batch(s, s->bat, s->kind == K_UNBATCH ? s->bat_pos : 0);
	if (s->slots)
		halo_mem_free(s->loop, s->slots,
			      s->slots_n * sizeof(*s->slots));
	if (s->ring)
		halo_mem_free(s->loop, s->ring, s->cap * sizeof(*s->ring));
	halo_mem_free(s->loop, s, sizeof(*s));
}

static size_t src_cap(const halo_stream_opts *o)
{
	return o && o->buffer ? o->buffer : 16;
}

halo_stream *halo_stream_range(halo_loop *loop, int64_t start, uint64_t n,
			       const halo_stream_opts *opts)
{
	halo_stream *s = stage_new(loop, NULL, K_RANGE, src_cap(opts), opts);

	if (s) {
		s->range_next = start;
		s->left = n;
	}
	return s;
}

halo_stream *halo_stream_array(halo_loop *loop, void *const *ptrs, size_t n,
			       const halo_stream_opts *opts)
{
	halo_stream *s = stage_new(loop, NULL, K_ARRAY, src_cap(opts), opts);

	if (s) {
		s->arr = ptrs;
		s->left = n;
	}
	return s;
}

halo_stream *halo_stream_generate(halo_loop *loop, halo_stream_gen_fn fn,
				  void *arg, const halo_stream_opts *opts)
{
	halo_stream *s;

	if (!fn)
		return NULL;
	s = stage_new(loop, NULL, K_GEN, src_cap(opts), opts);
	if (s) {
		s->fn.gen = fn;
		s->arg = arg;
	}
	return s;
}

halo_stream *halo_stream_from_chan(halo_chan *ch, const halo_stream_opts *opts)
{
	halo_stream *s = stage_new(ch->loop, NULL, K_CHAN, src_cap(opts), opts);

	if (s)
		s->chan = ch;
	return s;
}

static halo_stream *work_stage(halo_stream *up, enum kind kind, unsigned c,
			       const halo_stream_opts *opts)
{
	size_t buffer = opts && opts->buffer ? opts->buffer : c;
	size_t window = kind == K_FLAT ? buffer : c + buffer;
	size_t cap = kind == K_EACH ? 0 : window;
	uint32_t slots_n;
	halo_stream *s;

	if (!up)
		return NULL;
	if (!c) {
		halo_stream_close(up);
		return NULL;
	}
	if (kind == K_EACH) {
		window = c;
		cap = 0;
	}
	s = stage_new(up->loop, up, kind, cap, opts);
	if (!s)
		return NULL;
	if (kind == K_EACH)
		s->ordered = false;
	/* Ordered map: finished items wait in their slot for the head. */
	slots_n = (uint32_t)(kind == K_MAP && s->ordered ? window : c);
	s->slots = halo_mem_zalloc(s->loop, slots_n * sizeof(*s->slots));
	if (!s->slots) {
		halo_stream_close(s);
		return NULL;
	}
	s->slots_n = slots_n;
	for (uint32_t i = 0; i < slots_n; i++) {
		s->slots[i].s = s;
		s->slots[i].w.fn = item_done;
		s->slots[i].w.arg = &s->slots[i];
		s->slots[i].next_free = i + 1;
	}
	s->c = c;
	s->window = window;
	s->budget = s->o.budget;
	return s;
}

halo_stream *halo_stream_map(halo_stream *up, unsigned concurrency,
			     halo_stream_map_fn fn, void *arg,
			     const halo_stream_opts *opts)
{
	halo_stream *s = fn ? work_stage(up, K_MAP, concurrency, opts) : NULL;

	if (s) {
		s->fn.map = fn;
		s->arg = arg;
	} else if (!fn) {
		halo_stream_close(up);
	}
	return s;
}

halo_stream *halo_stream_flat_map(halo_stream *up, unsigned concurrency,
				  halo_stream_flat_fn fn, void *arg,
				  const halo_stream_opts *opts)
{
	halo_stream *s = fn ? work_stage(up, K_FLAT, concurrency, opts) : NULL;

	if (s) {
		s->fn.flat = fn;
		s->arg = arg;
	} else if (!fn) {
		halo_stream_close(up);
	}
	return s;
}

static halo_stream *simple_stage(halo_stream *up, enum kind kind, size_t cap,
				 const halo_stream_opts *opts)
{
	if (!up)
		return NULL;
	return stage_new(up->loop, up, kind, cap, opts);
}

halo_stream *halo_stream_filter(halo_stream *up, halo_stream_filter_fn fn,
				void *arg, const halo_stream_opts *opts)
{
	halo_stream *s;

	if (!fn) {
		halo_stream_close(up);
		return NULL;
	}
	s = simple_stage(up, K_FILTER, opts && opts->buffer ? opts->buffer : 1,
			 opts);
	if (s) {
		s->fn.filter = fn;
		s->arg = arg;
	}
	return s;
}

halo_stream *halo_stream_buffer_ahead(halo_stream *up, size_t n)
{
	return simple_stage(up, K_PASS, n ? n : 1, NULL);
}

halo_stream *halo_stream_take(halo_stream *up, uint64_t n)
{
	halo_stream *s = simple_stage(up, K_TAKE, 1, NULL);

	if (s)
		s->take_left = n;
	return s;
}

halo_stream *halo_stream_batch(halo_stream *up, size_t n, uint64_t max_delay_ns,
			       const halo_stream_opts *opts)
{
	halo_stream *s;

	if (!n) {
		halo_stream_close(up);
		return NULL;
	}
	s = simple_stage(up, K_BATCH, opts && opts->buffer ? opts->buffer : 1,
			 opts);
	if (s) {
		s->batch_n = n;
		s->max_delay = max_delay_ns;
	}
	return s;
}

halo_stream *halo_stream_unbatch(halo_stream *up, const halo_stream_opts *opts)
{
	return simple_stage(up, K_UNBATCH,
			    opts && opts->buffer ? opts->buffer : 1, opts);
}

/* --- the end of a chain --- */

static bool chain_busy(halo_stream *s)
{
	for (halo_stream *x = s; x; x = x->up)
		if (x->pumping || halo_post_is_queued(&x->kick_post) || x->pending)
			return true;
	return false;
}

static void fmt_err(const halo_stream *s, char *buf, size_t size)
{
	snprintf(buf, size, "stage '%s' item %llu: %s", s->err_stage,
		 (unsigned long long)s->err_idx,
		 s->err_msg[0] ? s->err_msg : strerror(-s->err));
}

/* Complete f with how s ended. */
static void end_fut(halo_stream *s, halo_fut *f, int64_t ok_result)
{
	char msg[192];

	if (s->user_cancel)
		halo_fut_cancelled(f);
	else if (s->failing && s->err) {
		fmt_err(s, msg, sizeof(msg));
		halo_fut_fail(f, s->err, msg);
	} else {
		halo_fut_resolve(f, ok_result, s->coll);
	}
}

static void free_chain(halo_stream *s)
{
	while (s) {
		halo_stream *up = s->up;
		stage_free(s);
		s = up;
	}
}

static void finalize(void *arg)
{
	halo_stream *s = arg;

	if (chain_busy(s)) {
		post_finalize(s);
		return;
	}
	if (s->out) {
		end_fut(s, s->out, (int64_t)s->count);
		halo_fut_release(s->out);
		s->out = NULL;
	}
	if (s->next_f) {
		halo_fut_cancelled(s->next_f);
		halo_fut_release(s->next_f);
		s->next_f = NULL;
	}
	if (s->close_f) {
		halo_fut_resolve(s->close_f, 0, NULL);
		halo_fut_release(s->close_f);
	}
	free_chain(s);
}

static void post_finalize(halo_stream *s)
{
	halo_loop_post_embedded(s->loop, &s->fin_post, finalize, s);
}

static void sink_cancel(halo_fut *f, void *arg)
{
	halo_stream *s = arg;

	(void)f;
	s->user_cancel = true;
	stage_fail(s, -ECANCELED, s->in_n, s->name, "cancelled");
}

static halo_fut *sink_start(halo_stream *s, const char *file, int line)
{
	halo_fut *f = halo_fut_new_at(s->loop, file, line);

	if (!f) {
		halo_stream_close(s);
		return NULL;
	}
	s->out = halo_fut_ref(f);
	halo_fut_set_cancel(f, sink_cancel, s);
	/* Start from the ready queue, never inside this call. */
	halo_loop_post_embedded(s->loop, &s->kick_post, posted_kick, s);
	return f;
}

halo_fut *halo_stream_for_each(halo_stream *up, unsigned concurrency,
			       halo_stream_each_fn fn, void *arg,
			       const halo_stream_opts *opts)
{
	halo_stream *s;

	if (!fn) {
		halo_stream_close(up);
		return NULL;
	}
	s = work_stage(up, K_EACH, concurrency, opts);
	if (!s)
		return NULL;
	s->fn.each = fn;
	s->arg = arg;
	return sink_start(s, __FILE__, __LINE__);
}

halo_fut *halo_stream_collect(halo_stream *up, halo_stream_item *out,
			      size_t cap)
{
	halo_stream *s = simple_stage(up, K_COLLECT, 0, NULL);

	if (!s)
		return NULL;
	s->coll = out;
	s->coll_cap = cap;
	return sink_start(s, __FILE__, __LINE__);
}

/* --- pulling from the tail --- */

static void deliver_next(halo_stream *s)
{
	halo_fut *f = s->next_f;

	if (s->n) {
		s->cur = ring_pop(s);
		s->next_f = NULL;
		halo_fut_resolve(f, 1, s->cur.p);
		halo_fut_release(f);
		kick(s);
		return;
	}
	if (!s->ended || s->closed)
		return;
	s->next_f = NULL;
	end_fut(s, f, 0);
	halo_fut_release(f);
}

static void next_cancel(halo_fut *f, void *arg)
{
	halo_stream *s = arg;

	(void)f;
	halo_stream_cancel(s);
}

halo_fut *halo_stream_next(halo_stream *s)
{
	halo_fut *f;

	if (s->next_f || s->down || s->closed)
		return halo_fut_failed(s->loop, -EBUSY, "one next() at a time");
	if (!s->n && !s->ended)
		kick(s);
	if (s->n) {
		s->cur = ring_pop(s);
		kick(s);
		return halo_fut_ready(s->loop, 1, s->cur.p);
	}
	f = halo_fut_new(s->loop);
	if (!f)
		return NULL;
	if (s->ended) {
		end_fut(s, f, 0);
		return f;
	}
	s->next_f = halo_fut_ref(f);
	halo_fut_set_cancel(f, next_cancel, s);
	return f;
}

halo_stream_item halo_stream_current(const halo_stream *s)
{
	return s->cur;
}

int halo_stream_pull(halo_stream *s, halo_stream_item *out)
{
	halo_fut *f;
	int64_t r;

	if (!s->n && !s->ended && !s->next_f && !s->down)
		kick(s);
	if (s->n && !s->next_f && !s->down) {
		*out = s->cur = ring_pop(s);
		kick(s);
		return 1;
	}
	f = halo_stream_next(s);
	if (!f)
		return -ENOMEM;
	r = halo_fut_join(f);
	if (r == 1)
		*out = s->cur;
	return (int)r;
}

void halo_stream_cancel(halo_stream *s)
{
	if (!s || s->ended || s->down)
		return;
	s->user_cancel = true;
	stage_fail(s, -ECANCELED, s->in_n, s->name, "cancelled");
}

int halo_stream_close(halo_stream *s)
{
	halo_fut *f;
	int64_t r;

	if (!s || s->down) /* a stage's input belongs to the stage */
		return -EINVAL;
	s->closed = true;
	if (!s->ended) {
		s->user_cancel = true;
		stage_fail(s, -ECANCELED, s->in_n, s->name, "closed");
	}
	if (s->ended && !halo_post_is_queued(&s->fin_post) &&
	    !s->loop->cur_fiber &&
	    !chain_busy(s)) {
		finalize(s);
		return 0;
	}
	if (s->ended)
		post_finalize(s);
	/* Wait for the kernel to let go of what was cancelled, where waiting
	 * is possible; from a callback the chain is freed later. */
	f = halo_fut_new(s->loop);
	if (!f)
		return -EINPROGRESS;
	s->close_f = halo_fut_ref(f);
	r = halo_fut_wait(f);
	halo_fut_release(f);
	return r < 0 ? -EINPROGRESS : 0;
}

/* --- observing --- */

const char *halo_stream_name(const halo_stream *s)
{
	return s->name;
}

halo_stream *halo_stream_upstream(const halo_stream *s)
{
	return s->up;
}

void halo_stream_stats_get(const halo_stream *s, halo_stream_stats *out)
{
	*out = s->st;
	out->inflight = s->inflight;
	out->queued = s->n + s->queued;
	if (s->inflight)
		out->busy_ns += halo_now_ns() - s->busy_t0;
}

int halo_stream_error_get(const halo_stream *s, halo_stream_error *out)
{
	memset(out, 0, sizeof(*out));
	if (!s->failing || s->user_cancel)
		return 0;
	out->err = s->err;
	out->index = s->err_idx;
	out->stage = s->err_stage;
	out->msg = s->err_msg[0] ? s->err_msg : NULL;
	return out->err;
}
