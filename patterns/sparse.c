/* Sparse tasks. Tasks live in a slot array; an open-addressing hash of slot
 * indices finds them by id, a binary min-heap of slot indices orders the
 * pending ones by deadline, and ONE loop timer is armed at the heap's top.
 * Records for the store are tracked in a FIFO ring, in append order, so that
 * the store's durability reports (n records, ok or not) map back to tasks
 * without a future per record. The journal store is in sparse_journal.c. */
#include "sparse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../runtime/pool.h"
#include "../runtime/timer.h"

#define NONE		       UINT32_MAX
#define DEFAULT_MAX_PENDING    (1u << 20)
#define DEFAULT_KEEP_DONE      65536u
#define DEFAULT_MAX_PAYLOAD    65536u
#define HARD_MAX_PAYLOAD       (16u << 20)
#define DEFAULT_COMPACT_FACTOR 4u
#define DEFAULT_COMPACT_MIN    4096u

enum { ST_FREE, ST_SUBMITTING, ST_PENDING, ST_FINISHING, ST_DONE };
#define F_POLLED 1

struct halo__sparse_task {
	uint64_t id;
	uint64_t deadline; /* CLOCK_MONOTONIC ns */
	uint32_t heap;	   /* index in the heap; next free slot when free */
	uint8_t state, outcome;
	uint16_t flags;
};
_Static_assert(sizeof(struct halo__sparse_task) == 24, "task slot grew");

struct halo__sparse_rec {
	int64_t result;
	halo_fut *fut; /* SUBMIT: the submitter's; FINISH: *durable */
	void *payload; /* SUBMIT: copy for the submit function */
	uint32_t slot, len;
	uint8_t type, outcome;
};

/* A submit function's future being waited on. */
struct submit_run {
	halo_waiter w;
	halo_sparse *s;
	halo_fut *caller, *work;
	uint64_t id;
	struct submit_run *next, *prev;
};

/* A halo_sparse_flush() waiting for records up to target. */
struct halo__sparse_flush {
	halo_fut *fut;
	uint64_t target;
	struct halo__sparse_flush *next;
};

/* A task in the poller. */
struct halo__sparse_poll {
	halo_waiter w;
	halo_sparse *s;
	halo_fut *fut;
	uint64_t id;
	struct halo__sparse_poll *next, *prev;
};

static struct submit_run *runs_of(halo_sparse *s)
{
	return (struct submit_run *)s->runs;
}

static int64_t wall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t to_wall(uint64_t mono)
{
	return (int64_t)mono - (int64_t)halo_now_ns() + wall_now();
}

/* A stored (wall-clock) deadline on the monotonic clock, during a replay:
 * one clock offset for the whole store. */
static uint64_t replay_mono(const halo_sparse *s, int64_t wall)
{
	int64_t left = wall - s->replay_wall;

	return s->replay_mono + (left > 0 ? (uint64_t)left : 0);
}

static struct halo__sparse_task *T(halo_sparse *s, uint32_t slot)
{
	return &s->task[slot];
}

/* --- the hash: slot + 1 per entry, 0 empty, linear probing --- */

static uint32_t home(const halo_sparse *s, uint64_t id)
{
	/* Fibonacci hashing: the product's top bits. */
	return (uint32_t)((id * 0x9E3779B97F4A7C15ull) >>
			  (64 - __builtin_ctz(s->hash_cap)));
}

static uint32_t find(const halo_sparse *s, uint64_t id)
{
	uint32_t mask = s->hash_cap - 1;

	if (!s->hash_cap)
		return NONE;
	for (uint32_t i = home(s, id); s->hash[i]; i = (i + 1) & mask)
		if (s->task[s->hash[i] - 1].id == id)
			return s->hash[i] - 1;
	return NONE;
}

static void hash_put(halo_sparse *s, uint32_t slot)
{
	uint32_t mask = s->hash_cap - 1, i = home(s, s->task[slot].id);

	while (s->hash[i])
		i = (i + 1) & mask;
	s->hash[i] = slot + 1;
}

static int hash_room(halo_sparse *s)
{
	uint32_t old_cap = s->hash_cap, *old = s->hash;
	uint32_t cap = old_cap ? old_cap * 2 : 1024;

	if ((uint64_t)(s->used + 1) * 2 <= old_cap)
		return 0;
	s->hash = calloc(cap, sizeof(*s->hash));
	if (!s->hash) {
		s->hash = old;
		return -ENOMEM;
	}
	s->hash_cap = cap;
	for (uint32_t i = 0; i < old_cap; i++)
		if (old[i])
			hash_put(s, old[i] - 1);
	free(old);
	return 0;
}

/* Backward-shift deletion: later entries of the probe run move up, so that
 * no tombstones accumulate over a million submits and completions. */
static void hash_del(halo_sparse *s, uint32_t slot)
{
	uint32_t mask = s->hash_cap - 1, i = home(s, s->task[slot].id);

	while (s->hash[i] != slot + 1)
		i = (i + 1) & mask;
	for (uint32_t j = (i + 1) & mask; s->hash[j]; j = (j + 1) & mask) {
		uint32_t k = home(s, s->task[s->hash[j] - 1].id);

		if (((j - k) & mask) >= ((j - i) & mask)) {
			s->hash[i] = s->hash[j];
			i = j;
		}
	}
	s->hash[i] = 0;
}

/* --- slots --- */

static uint32_t slot_new(halo_sparse *s, uint64_t id)
{
	uint32_t slot;

	if (hash_room(s) < 0)
		return NONE;
	if (s->free_slot != NONE) {
		slot = s->free_slot;
		s->free_slot = s->task[slot].heap;
	} else {
		if (s->task_n == s->task_cap) {
			uint32_t cap = s->task_cap ? s->task_cap * 2 : 1024;
			void *p = realloc(s->task, cap * sizeof(*s->task));

			if (!p)
				return NONE;
			s->task = p;
			s->task_cap = cap;
		}
		slot = s->task_n++;
	}
	memset(&s->task[slot], 0, sizeof(s->task[slot]));
	s->task[slot].id = id;
	s->task[slot].heap = NONE;
	hash_put(s, slot);
	s->used++;
	return slot;
}

static void slot_free(halo_sparse *s, uint32_t slot)
{
	hash_del(s, slot);
	s->task[slot].state = ST_FREE;
	s->task[slot].heap = s->free_slot;
	s->free_slot = slot;
	s->used--;
}

/* --- the deadline heap --- */

static int earlier(halo_sparse *s, uint32_t a, uint32_t b)
{
	return s->task[s->heap[a]].deadline < s->task[s->heap[b]].deadline;
}

static void heap_swap(halo_sparse *s, uint32_t a, uint32_t b)
{
	uint32_t t = s->heap[a];

	s->heap[a] = s->heap[b];
	s->heap[b] = t;
	s->task[s->heap[a]].heap = a;
	s->task[s->heap[b]].heap = b;
}

static void heap_up(halo_sparse *s, uint32_t i)
{
	while (i && earlier(s, i, (i - 1) / 2)) {
		heap_swap(s, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void heap_down(halo_sparse *s, uint32_t i)
{
	for (;;) {
		uint32_t l = 2 * i + 1, m = i;

		if (l < s->heap_n && earlier(s, l, m))
			m = l;
		if (l + 1 < s->heap_n && earlier(s, l + 1, m))
			m = l + 1;
		if (m == i)
			return;
		heap_swap(s, i, m);
		i = m;
	}
}

/* Room for need entries. submit() reserves one per live task, so that a
 * task becoming pending again (durable submit, refused outcome) always has
 * its place. */
static int heap_reserve(halo_sparse *s, uint64_t need)
{
	uint32_t cap = s->heap_cap ? s->heap_cap : 1024;
	void *p;

	if (need <= s->heap_cap)
		return 0;
	while (cap < need)
		cap *= 2;
	p = realloc(s->heap, cap * sizeof(*s->heap));
	if (!p)
		return -ENOMEM;
	s->heap = p;
	s->heap_cap = cap;
	return 0;
}

static int heap_room(halo_sparse *s)
{
	return heap_reserve(s, (uint64_t)s->heap_n + 1);
}

/* Room was made beforehand (heap_reserve), so this cannot fail. */
static void heap_push(halo_sparse *s, uint32_t slot)
{
	s->heap[s->heap_n] = slot;
	s->task[slot].heap = s->heap_n;
	heap_up(s, s->heap_n++);
}

static void heap_del(halo_sparse *s, uint32_t slot)
{
	uint32_t i = s->task[slot].heap;

	s->task[slot].heap = NONE;
	if (i != --s->heap_n) {
		s->heap[i] = s->heap[s->heap_n];
		s->task[s->heap[i]].heap = i;
		heap_up(s, i);
		heap_down(s, s->task[s->heap[i]].heap);
	}
}

/* --- finished ids, remembered FIFO up to keep_done --- */

static void remember_done(halo_sparse *s, uint32_t slot)
{
	size_t keep = s->opts.keep_done;

	if (s->done_n == keep) {
		uint32_t old = s->done_ring[s->done_head];

		s->done_head = (uint32_t)((s->done_head + 1) % keep);
		s->done_n--;
		/* A stale entry (the slot was reused) is skipped. */
		if (s->task[old].state == ST_DONE)
			slot_free(s, old);
	}
	s->done_ring[(s->done_head + s->done_n) % keep] = slot;
	s->done_n++;
	s->task[slot].state = ST_DONE;
}

/* --- the one timer --- */

static void timer_fired(halo_fut *f, void *arg);

static void disarm(halo_sparse *s)
{
	if (!s->timer)
		return;
	halo_fut_remove_waiter(s->timer, &s->timer_w);
	halo_fut_cancel(s->timer);
	halo_fut_release(s->timer);
	s->timer = NULL;
}

/* Keep the timer at or before the earliest deadline. A timer armed earlier
 * than needed (the task it was for finished) fires and re-arms. */
static void arm(halo_sparse *s)
{
	uint64_t at;

	if (!s->heap_n)
		return;
	at = s->task[s->heap[0]].deadline;
	if (s->timer && s->timer_at <= at)
		return;
	disarm(s);
	s->timer = halo_timer_at(s->loop, at);
	if (!s->timer) {
		s->stats.timer_errors++; /* retried by the next arm() */
		return;
	}
	s->timer_at = at;
	s->timer_w.fn = timer_fired;
	s->timer_w.arg = s;
	halo_fut_add_waiter(s->timer, &s->timer_w);
}

/* --- records in flight --- */

static int ring_room(halo_sparse *s)
{
	size_t cap = s->ring_cap ? s->ring_cap * 2 : 256;
	struct halo__sparse_rec *p;

	if (s->ring_n < s->ring_cap)
		return 0;
	p = malloc(cap * sizeof(*p));
	if (!p)
		return -ENOMEM;
	for (size_t i = 0; i < s->ring_n; i++)
		p[i] = s->ring[(s->ring_head + i) % s->ring_cap];
	free(s->ring);
	s->ring = p;
	s->ring_cap = cap;
	s->ring_head = 0;
	return 0;
}

/* Hand rec to the store and remember what to do once it is durable. */
static int append(halo_sparse *s, const halo_sparse_rec *rec,
		  const struct halo__sparse_rec *track)
{
	int r = ring_room(s);

	if (r < 0)
		return r;
	r = s->ops->append(s->store, rec);
	if (r < 0) {
		s->stats.record_errors++;
		return r;
	}
	s->ring[(s->ring_head + s->ring_n++) % s->ring_cap] = *track;
	s->store_records++;
	s->appended++;
	return 0;
}

static int append_finish(halo_sparse *s, uint32_t slot, uint8_t outcome,
			 int64_t result, halo_fut *durable)
{
	halo_sparse_rec rec = {.type = HALO_SPARSE_REC_FINISH,
			       .outcome = outcome,
			       .id = s->task[slot].id,
			       .result = result};
	struct halo__sparse_rec tr = {.result = result,
				      .fut = durable,
				      .slot = slot,
				      .type = HALO_SPARSE_REC_FINISH,
				      .outcome = outcome};

	return append(s, &rec, &tr);
}

/* A pending task gets its outcome: off the heap, FINISH to the store. */
static int finish(halo_sparse *s, uint32_t slot, uint8_t outcome,
		  int64_t result, halo_fut *durable)
{
	struct halo__sparse_task *t = T(s, slot);
	int r;

	heap_del(s, slot);
	t->state = ST_FINISHING;
	t->outcome = outcome;
	s->n_pend--;
	s->n_fin++;
	r = append_finish(s, slot, outcome, result, durable);
	if (r < 0 && outcome != HALO_SPARSE_TIMEOUT) {
		t->state = ST_PENDING;
		s->n_fin--;
		s->n_pend++;
		heap_push(s, slot); /* its heap entry was just freed */
	}
	return r;
}

static void timer_fired(halo_fut *f, void *arg)
{
	halo_sparse *s = arg;
	uint64_t now = halo_now_ns();

	halo_fut_release(f);
	s->timer = NULL;
	while (s->heap_n && s->task[s->heap[0]].deadline <= now) {
		uint32_t slot = s->heap[0];
		uint64_t id = s->task[slot].id;

		/* A timeout the store refused still stands here: the alert
		 * runs, and after a restart it runs again (at least once). */
		if (finish(s, slot, HALO_SPARSE_TIMEOUT, 0, NULL) < 0) {
			s->n_fin--;
			remember_done(s, slot);
		}
		s->stats.timeouts++;
		if (s->opts.alert_fn)
			s->opts.alert_fn(s, id, s->opts.arg);
	}
	arm(s);
}

/* --- the submit function --- */

static void run_unlink(halo_sparse *s, struct submit_run *run)
{
	if (run->prev)
		run->prev->next = run->next;
	else
		s->runs = run->next;
	if (run->next)
		run->next->prev = run->prev;
	s->submits_running--;
	halo_mem_free(s->loop, run, sizeof(*run));
}

static void fail_pending(halo_sparse *s, uint64_t id, int err)
{
	uint32_t slot = find(s, id);

	if (slot != NONE && s->task[slot].state == ST_PENDING)
		(void)finish(s, slot, HALO_SPARSE_FAILED, err, NULL);
}

static void work_done(halo_fut *f, void *arg)
{
	struct submit_run *run = arg;
	halo_sparse *s = run->s;
	int64_t r = halo_fut_result(f);

	if (r < 0) {
		halo_fut_fail(run->caller, (int)r, halo_fut_error_msg(f));
		fail_pending(s, run->id, (int)r);
	} else {
		halo_fut_resolve(run->caller, r, halo_fut_value(f));
	}
	halo_fut_release(f);
	halo_fut_release(run->caller);
	run_unlink(s, run);
	arm(s);
}

static void start_work(halo_sparse *s, uint32_t slot, halo_fut *caller,
		       void *payload, uint32_t len)
{
	uint64_t id = s->task[slot].id;
	struct submit_run *run;
	halo_fut *work;

	if (!s->opts.submit_fn) {
		halo_fut_resolve(caller, 0, NULL);
		halo_fut_release(caller);
		return;
	}
	run = halo_mem_zalloc(s->loop, sizeof(*run));
	work = run ? s->opts.submit_fn(s, id, payload, len, s->opts.arg) : NULL;
	if (!work) {
		if (run)
			halo_mem_free(s->loop, run, sizeof(*run));
		halo_fut_fail(caller, -ENOMEM,
			      "sparse: the submit function returned no future");
		halo_fut_release(caller);
		fail_pending(s, id, -ENOMEM);
		return;
	}
	run->s = s;
	run->caller = caller;
	run->work = work;
	run->id = id;
	run->next = runs_of(s);
	if (run->next)
		run->next->prev = run;
	s->runs = run;
	s->submits_running++;
	run->w.fn = work_done;
	run->w.arg = run;
	halo_fut_add_waiter(work, &run->w);
}

/* --- durability reports --- */

static void poll_feed(halo_sparse *s);

static void submit_durable(halo_sparse *s, struct halo__sparse_rec *e, int err)
{
	struct halo__sparse_task *t = T(s, e->slot);

	s->n_sub--;
	if (err < 0) {
		slot_free(s, e->slot);
		halo_fut_fail(e->fut, err,
			      "sparse: the task's record could not be made "
			      "durable; the task was not submitted");
		halo_fut_release(e->fut);
	} else {
		t->state = ST_PENDING;
		s->n_pend++;
		heap_push(s, e->slot);
		start_work(s, e->slot, e->fut, e->payload, e->len);
	}
	if (e->payload)
		halo_mem_free(s->loop, e->payload, e->len);
}

static void finish_durable(halo_sparse *s, struct halo__sparse_rec *e, int err)
{
	struct halo__sparse_task *t = T(s, e->slot);
	uint64_t id = t->id;

	s->n_fin--;
	if (err < 0 && e->outcome != HALO_SPARSE_TIMEOUT) {
		/* The outcome did not stick: the task is pending again, and
		 * its monitor watches it as before. */
		t->state = ST_PENDING;
		s->n_pend++;
		heap_push(s, e->slot);
		if (e->fut) {
			halo_fut_fail(e->fut, err,
				      "sparse: the outcome could not be made "
				      "durable; the task is pending again");
			halo_fut_release(e->fut);
		}
		return;
	}
	remember_done(s, e->slot);
	if (e->fut) {
		if (err < 0)
			halo_fut_fail(e->fut, err, NULL);
		else
			halo_fut_resolve(e->fut, 0, NULL);
		halo_fut_release(e->fut);
	}
	if (e->outcome == HALO_SPARSE_TIMEOUT)
		return;
	s->stats.completed++;
	if (s->opts.done_fn)
		s->opts.done_fn(s, id, (halo_sparse_outcome)e->outcome,
				e->result, s->opts.arg);
}

static int live_of(void *ctx, uint64_t id, int64_t *deadline)
{
	halo_sparse *s = ctx;
	uint32_t slot = find(s, id);

	if (slot == NONE || (s->task[slot].state != ST_PENDING &&
			     s->task[slot].state != ST_FINISHING))
		return 0;
	*deadline = to_wall(s->task[slot].deadline);
	return 1;
}

static void maybe_compact(halo_sparse *s)
{
	uint64_t live = s->n_pend + s->n_fin + s->n_sub;
	int r;

	if (!s->ops->compact || s->opts.compact_factor == UINT32_MAX ||
	    s->store_records <= s->opts.compact_min ||
	    s->store_records <= (uint64_t)s->opts.compact_factor * live)
		return;
	r = s->ops->compact(s->store, live_of, s);
	if (r == -EBUSY)
		return;
	if (r < 0) {
		s->stats.compact_errors++;
		/* Not again before the store has grown by half. */
		s->store_records -= s->store_records / 3;
		return;
	}
	s->stats.compactions++;
	s->store_records = (uint64_t)r + s->ring_n;
}

/* Complete the flushes whose records are all reported (all, on close). */
static void flushes_done(halo_sparse *s, int closing)
{
	struct halo__sparse_flush **pp = &s->flushes;

	while (*pp) {
		struct halo__sparse_flush *fl = *pp;

		if (!closing && fl->target > s->reported) {
			pp = &fl->next;
			continue;
		}
		*pp = fl->next;
		if (closing)
			halo_fut_cancelled(fl->fut);
		else
			halo_fut_resolve(fl->fut, 0, NULL);
		halo_fut_release(fl->fut);
		halo_mem_free(s->loop, fl, sizeof(*fl));
	}
}

halo_fut *halo_sparse_flush_at(halo_sparse *s, const char *file, int line)
{
	struct halo__sparse_flush *fl;
	halo_fut *f = halo_fut_new_at(s->loop, file, line);

	if (!f)
		return NULL;
	if (!s->ring_n) {
		halo_fut_resolve(f, 0, NULL);
		return f;
	}
	fl = halo_mem_alloc(s->loop, sizeof(*fl));
	if (!fl) {
		halo_fut_release(f);
		return NULL;
	}
	fl->fut = halo_fut_ref(f);
	fl->target = s->appended;
	fl->next = s->flushes;
	s->flushes = fl;
	return f;
}

void halo_sparse_durable(halo_sparse *s, size_t n, int err)
{
	while (n-- && s->ring_n) {
		struct halo__sparse_rec e = s->ring[s->ring_head];

		s->ring_head = (s->ring_head + 1) % s->ring_cap;
		s->ring_n--;
		s->reported++;
		if (err < 0) {
			s->stats.record_errors++;
			s->store_records--;
		}
		if (e.type == HALO_SPARSE_REC_SUBMIT)
			submit_durable(s, &e, err);
		else if (e.type == HALO_SPARSE_REC_FINISH)
			finish_durable(s, &e, err);
	}
	/* A burst of submits grew the ring; do not keep it at its peak. */
	if (!s->ring_n && s->ring_cap > 4096) {
		free(s->ring);
		s->ring = NULL;
		s->ring_cap = 0;
		s->ring_head = 0;
	}
	arm(s);
	poll_feed(s);
	maybe_compact(s);
	flushes_done(s, 0);
}

/* --- replay --- */

static int replay_rec(void *ctx, const halo_sparse_rec *rec)
{
	halo_sparse *s = ctx;
	uint32_t slot = find(s, rec->id);
	struct halo__sparse_task *t;

	s->stats.replayed++;
	s->store_records++;
	switch (rec->type) {
	case HALO_SPARSE_REC_SUBMIT:
		if (slot == NONE) {
			slot = slot_new(s, rec->id);
			if (slot == NONE)
				return -ENOMEM;
		}
		t = T(s, slot);
		t->deadline = replay_mono(s, rec->deadline);
		if (t->state == ST_PENDING) {
			heap_up(s, t->heap);
			heap_down(s, t->heap);
			return 0;
		}
		if (heap_room(s) < 0)
			return -ENOMEM;
		t->state = ST_PENDING; /* a DONE one was submitted again */
		s->n_pend++;
		heap_push(s, slot);
		return 0;
	case HALO_SPARSE_REC_HEARTBEAT:
		if (slot != NONE && s->task[slot].state == ST_PENDING) {
			t = T(s, slot);
			t->deadline = replay_mono(s, rec->deadline);
			heap_up(s, t->heap);
			heap_down(s, t->heap);
		}
		return 0;
	case HALO_SPARSE_REC_FINISH:
		if (slot != NONE && s->task[slot].state == ST_PENDING) {
			heap_del(s, slot);
			s->n_pend--;
			s->task[slot].outcome = rec->outcome;
			remember_done(s, slot);
		}
		return 0;
	}
	return -EBADMSG;
}

/* --- the status poller --- */

static void poll_done(halo_fut *f, void *arg);

static void poll_add(halo_sparse *s, uint32_t slot)
{
	struct halo__sparse_poll *pe = halo_mem_zalloc(s->loop, sizeof(*pe));

	if (!pe)
		return;
	pe->fut = halo_poller_add(&s->poller, s->task[slot].id, 0);
	if (!pe->fut) {
		halo_mem_free(s->loop, pe, sizeof(*pe));
		return;
	}
	pe->s = s;
	pe->id = s->task[slot].id;
	pe->next = s->polled;
	if (pe->next)
		pe->next->prev = pe;
	s->polled = pe;
	s->polled_n++;
	s->task[slot].flags |= F_POLLED;
	pe->w.fn = poll_done;
	pe->w.arg = pe;
	halo_fut_add_waiter(pe->fut, &pe->w);
}

/* Fill the poller up to max_polled with pending tasks not in it, walking
 * the slots round from where the last walk stopped. */
static void poll_feed(halo_sparse *s)
{
	uint32_t seen = 0;

	if (!s->has_poller)
		return;
	while (s->polled_n < s->opts.poll.max_polled &&
	       s->n_pend > s->polled_n && seen++ < s->task_n) {
		uint32_t slot = s->poll_cursor++ % s->task_n;

		if (s->task[slot].state == ST_PENDING &&
		    !(s->task[slot].flags & F_POLLED))
			poll_add(s, slot);
	}
}

static void poll_unlink(halo_sparse *s, struct halo__sparse_poll *pe)
{
	uint32_t slot = find(s, pe->id);

	if (slot != NONE)
		s->task[slot].flags &= (uint16_t)~F_POLLED;
	if (pe->prev)
		pe->prev->next = pe->next;
	else
		s->polled = pe->next;
	if (pe->next)
		pe->next->prev = pe->prev;
	s->polled_n--;
	halo_mem_free(s->loop, pe, sizeof(*pe));
}

static void poll_done(halo_fut *f, void *arg)
{
	struct halo__sparse_poll *pe = arg;
	halo_sparse *s = pe->s;
	halo_fut_state st = halo_fut_status(f);
	int64_t r = halo_fut_result(f);
	uint64_t id = pe->id;

	halo_fut_release(f);
	poll_unlink(s, pe);
	/* CANCELLED: polled once, unfinished, rotated out for others. */
	if (st == HALO_FUT_OK)
		(void)halo_sparse_complete(s, id, HALO_SPARSE_OK, r, NULL);
	else if (st == HALO_FUT_ERROR)
		(void)halo_sparse_complete(s, id, HALO_SPARSE_FAILED, r, NULL);
	poll_feed(s);
}

/* Polled and unfinished tasks leave the poller after one poll (their
 * futures cancelled while in the window), so that every pending task gets
 * its turn however many there are. */
static void rotate(halo_sparse *s, const uint64_t *ids,
		   const halo_poller_report *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (out[i].done)
			continue;
		for (struct halo__sparse_poll *pe = s->polled; pe;
		     pe = pe->next)
			if (pe->id == ids[i]) {
				halo_fut_cancel(pe->fut);
				break;
			}
	}
}

static int poll_wrap(halo_poller *p, const uint64_t *ids, size_t n,
		     halo_poller_report *out, void *arg)
{
	halo_sparse *s = arg;
	int r = s->opts.poll.fn(p, ids, n, out, s->opts.poll.arg);

	s->stats.polls += n;
	if (r == HALO_POLLER_ASYNC) {
		s->poll_ids = ids;
		s->poll_out = out;
		s->poll_n = n;
	} else if (r >= 0) {
		rotate(s, ids, out, n);
	}
	return r;
}

int halo_sparse_polled(halo_sparse *s, int err)
{
	if (!s->has_poller || !s->poll_out)
		return -EINVAL;
	if (!err)
		rotate(s, s->poll_ids, s->poll_out, s->poll_n);
	s->poll_out = NULL;
	return halo_poller_reported(&s->poller, err);
}

static void poll_close(halo_sparse *s)
{
	if (!s->has_poller)
		return;
	while (s->polled) {
		struct halo__sparse_poll *pe = s->polled;

		halo_fut_remove_waiter(pe->fut, &pe->w);
		halo_fut_release(pe->fut);
		poll_unlink(s, pe);
	}
	halo_poller_close(&s->poller);
	s->has_poller = 0;
}

/* --- open and close --- */

static void free_tables(halo_sparse *s)
{
	free(s->task);
	free(s->hash);
	free(s->heap);
	free(s->done_ring);
	free(s->ring);
	s->task = NULL;
	s->hash = NULL;
	s->heap = NULL;
	s->done_ring = NULL;
	s->ring = NULL;
}

static int set_opts(halo_sparse *s, const halo_sparse_opts *opts)
{
	halo_sparse_opts *o = &s->opts;

	if (!opts || (!opts->path == !opts->store_ops) ||
	    (opts->store_ops &&
	     (!opts->store_ops->replay || !opts->store_ops->append ||
	      !opts->store_ops->inflight)))
		return -EINVAL;
	*o = *opts;
	if (!o->max_pending)
		o->max_pending = DEFAULT_MAX_PENDING;
	if (!o->keep_done)
		o->keep_done = DEFAULT_KEEP_DONE;
	if (!o->max_payload)
		o->max_payload = DEFAULT_MAX_PAYLOAD;
	if (!o->compact_factor)
		o->compact_factor = DEFAULT_COMPACT_FACTOR;
	if (!o->compact_min)
		o->compact_min = DEFAULT_COMPACT_MIN;
	if (o->max_payload > HARD_MAX_PAYLOAD || o->max_pending >= NONE / 2 ||
	    o->keep_done >= NONE / 2)
		return -EINVAL;
	if (o->poll.fn && !o->poll.max_polled)
		o->poll.max_polled =
		    o->poll.poller.window ? o->poll.poller.window : 100;
	return 0;
}

int halo_sparse_open(halo_sparse *s, halo_loop *loop,
		     const halo_sparse_opts *opts)
{
	int r;

	memset(s, 0, sizeof(*s));
	s->free_slot = NONE;
	if (!loop || set_opts(s, opts) < 0) {
		snprintf(s->error, sizeof(s->error),
			 "sparse: bad options (give exactly one of path and "
			 "store_ops, with replay, append and inflight)");
		return -EINVAL;
	}
	s->loop = loop;
	s->done_ring = malloc(s->opts.keep_done * sizeof(*s->done_ring));
	if (!s->done_ring) {
		r = -ENOMEM;
		goto fail;
	}
	if (s->opts.path) {
		r = halo__sparse_journal_setup(&s->journal, loop, s->opts.path,
					       s->error, sizeof(s->error));
		if (r < 0)
			goto fail;
		s->ops = &halo_sparse_journal_ops;
		s->store = &s->journal;
	} else {
		s->ops = s->opts.store_ops;
		s->store = s->opts.store;
	}
	r = s->ops->attach ? s->ops->attach(s->store, s) : 0;
	if (r < 0) {
		if (s->opts.path)
			halo_sparse_journal_ops.detach(s->store);
		goto fail;
	}
	s->replay_mono = halo_now_ns();
	s->replay_wall = wall_now();
	r = s->ops->replay(s->store, replay_rec, s, s->error, sizeof(s->error));
	if (r < 0) {
		if (r == -ENOMEM && !s->error[0])
			snprintf(s->error, sizeof(s->error),
				 "sparse: out of memory replaying the store");
		if (s->ops->detach)
			s->ops->detach(s->store);
		goto fail;
	}
	if (s->opts.path)
		s->stats.torn_bytes = s->journal.torn_bytes;
	if (s->opts.poll.fn) {
		r = halo_poller_init(&s->poller, loop, &s->opts.poll.poller,
				     poll_wrap, s);
		if (r < 0) {
			if (s->ops->detach)
				s->ops->detach(s->store);
			goto fail;
		}
		s->has_poller = 1;
	}
	arm(s);
	poll_feed(s);
	return 0;
fail:
	free_tables(s);
	if (!s->error[0])
		snprintf(s->error, sizeof(s->error), "sparse: open failed: %s",
			 strerror(-r));
	s->loop = NULL;
	return r;
}

const char *halo_sparse_error(const halo_sparse *s)
{
	return s->error;
}

int halo_sparse_close(halo_sparse *s)
{
	if (!s->loop)
		return 0;
	if (s->ring_n || s->ops->inflight(s->store))
		return -EBUSY;
	disarm(s);
	poll_close(s);
	flushes_done(s, 1);
	while (s->runs) {
		struct submit_run *run = runs_of(s);

		halo_fut_remove_waiter(run->work, &run->w);
		halo_fut_detach(run->work);
		halo_fut_cancelled(run->caller);
		halo_fut_release(run->caller);
		run_unlink(s, run);
	}
	if (s->ops->detach)
		s->ops->detach(s->store);
	free_tables(s);
	memset(s, 0, sizeof(*s));
	return 0;
}

/* --- the calls --- */

int halo_sparse_submit_at(halo_sparse *s, uint64_t id, uint64_t timeout_ns,
			  const void *payload, size_t len, halo_fut **fut,
			  const char *file, int line)
{
	struct halo__sparse_rec tr = {.type = HALO_SPARSE_REC_SUBMIT};
	halo_sparse_rec rec = {.type = HALO_SPARSE_REC_SUBMIT, .id = id};
	uint64_t now = halo_now_ns();
	halo_fut *f;
	int r;

	if (!s->loop || !fut || !timeout_ns || timeout_ns > INT64_MAX / 2 ||
	    len > s->opts.max_payload || (len && !payload))
		return -EINVAL;
	if (find(s, id) != NONE)
		return -EEXIST;
	if (s->n_sub + s->n_pend + s->n_fin >= s->opts.max_pending)
		return -EAGAIN;
	if (heap_reserve(s, s->n_sub + s->n_pend + s->n_fin + 1) < 0)
		return -ENOMEM;
	tr.slot = slot_new(s, id);
	if (tr.slot == NONE)
		return -ENOMEM;
	f = halo_fut_new_at(s->loop, file, line);
	if (f && len && s->opts.submit_fn) {
		tr.payload = halo_mem_alloc(s->loop, len);
		if (!tr.payload) {
			halo_fut_release(f);
			f = NULL;
		} else {
			memcpy(tr.payload, payload, len);
			tr.len = (uint32_t)len;
		}
	}
	if (!f) {
		slot_free(s, tr.slot);
		return -ENOMEM;
	}
	s->task[tr.slot].deadline = now + timeout_ns;
	s->task[tr.slot].state = ST_SUBMITTING;
	tr.fut = f;
	rec.deadline = wall_now() + (int64_t)timeout_ns;
	rec.payload = payload;
	rec.len = (uint32_t)len;
	r = append(s, &rec, &tr);
	if (r < 0) {
		if (tr.payload)
			halo_mem_free(s->loop, tr.payload, tr.len);
		halo_fut_release(f);
		slot_free(s, tr.slot);
		return r;
	}
	s->n_sub++;
	s->stats.submitted++;
	*fut = halo_fut_ref(f);
	return 0;
}

int halo_sparse_complete(halo_sparse *s, uint64_t id,
			 halo_sparse_outcome outcome, int64_t result,
			 halo_fut **durable)
{
	uint32_t slot;
	halo_fut *f = NULL;
	int r;

	if (!s->loop ||
	    (outcome != HALO_SPARSE_OK && outcome != HALO_SPARSE_FAILED))
		return -EINVAL;
	slot = find(s, id);
	if (slot == NONE || s->task[slot].state == ST_SUBMITTING) {
		s->stats.unknown++;
		return -ENOENT;
	}
	if (s->task[slot].state != ST_PENDING) {
		if (s->task[slot].outcome != HALO_SPARSE_TIMEOUT) {
			s->stats.duplicates++;
			return HALO_SPARSE_DUPLICATE;
		}
		s->stats.late++;
		if (s->opts.late_fn)
			s->opts.late_fn(s, id, outcome, result, s->opts.arg);
		return HALO_SPARSE_LATE;
	}
	if (durable) {
		f = halo_fut_new(s->loop);
		if (!f)
			return -ENOMEM;
	}
	r = finish(s, slot, (uint8_t)outcome, result, f);
	if (r < 0) {
		halo_fut_release(f);
		return r;
	}
	if (durable)
		*durable = halo_fut_ref(f);
	return 0;
}

int halo_sparse_heartbeat(halo_sparse *s, uint64_t id, uint64_t extend_ns)
{
	halo_sparse_rec rec = {.type = HALO_SPARSE_REC_HEARTBEAT, .id = id};
	struct halo__sparse_rec tr = {.type = HALO_SPARSE_REC_HEARTBEAT};
	struct halo__sparse_task *t;
	uint64_t at = halo_now_ns() + extend_ns;
	uint32_t slot;
	int r;

	if (!s->loop || !extend_ns || extend_ns > INT64_MAX / 2)
		return -EINVAL;
	slot = find(s, id);
	if (slot == NONE || s->task[slot].state != ST_PENDING)
		return -ENOENT;
	t = T(s, slot);
	if (at <= t->deadline)
		at = t->deadline;
	rec.deadline = to_wall(at);
	tr.slot = slot;
	r = append(s, &rec, &tr);
	if (r < 0)
		return r;
	/* Later only: the armed timer may fire early and re-arm. */
	t->deadline = at;
	heap_down(s, t->heap);
	s->stats.heartbeats++;
	return 0;
}

int halo_sparse_lookup(const halo_sparse *s, uint64_t id,
		       halo_sparse_outcome *outcome, uint64_t *left_ns)
{
	uint32_t slot = s->loop ? find(s, id) : NONE;
	const struct halo__sparse_task *t;
	uint64_t now = halo_now_ns();

	if (slot == NONE || s->task[slot].state == ST_SUBMITTING)
		return -ENOENT;
	t = &s->task[slot];
	if (t->state == ST_PENDING) {
		if (left_ns)
			*left_ns = t->deadline > now ? t->deadline - now : 0;
		return 1;
	}
	if (outcome)
		*outcome = (halo_sparse_outcome)t->outcome;
	return 0;
}

size_t halo_sparse_inflight(const halo_sparse *s)
{
	return s->ring_n;
}

halo_loop *halo_sparse_loop(const halo_sparse *s)
{
	return s->loop;
}

size_t halo_sparse_pending(const halo_sparse *s)
{
	return s->n_sub + s->n_pend;
}

void halo_sparse_stats_get(const halo_sparse *s, halo_sparse_stats *out)
{
	*out = s->stats;
	out->pending = s->n_sub + s->n_pend;
	out->records = s->store_records;
	if (s->opts.path)
		out->compact_errors += s->journal.dir_sync_errors;
	out->bytes = (uint64_t)s->task_cap * sizeof(*s->task) +
		     (uint64_t)s->hash_cap * sizeof(*s->hash) +
		     (uint64_t)s->heap_cap * sizeof(*s->heap) +
		     (uint64_t)s->opts.keep_done * sizeof(*s->done_ring) +
		     (uint64_t)s->ring_cap * sizeof(*s->ring);
}
