/* Timers: a 4-ary min-heap keyed by (deadline, creation sequence), so that
 * equal deadlines fire in creation order. A 4-ary heap is half as deep as a
 * binary one and its four children share a cache line or two, which is what
 * matters with a million entries. Each timer future knows its index, so a
 * cancel removes it in O(log n). */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define ARITY 4
#define NOT_IN_HEAP UINT32_MAX

void halo__timers_init(halo_loop *loop)
{
	loop->timers.ent = NULL;
	loop->timers.n = loop->timers.cap = 0;
	loop->timers.seq = 0;
}

void halo__timers_close(halo_loop *loop)
{
	halo_timer_heap *h = &loop->timers;

	if (h->ent)
		halo_mem_free(loop, h->ent, (size_t)h->cap * sizeof(*h->ent));
	h->ent = NULL;
	h->n = h->cap = 0;
}

/* Equal deadlines are rare enough that their tie-break may follow the
 * pointers; keeping seq out of the entry makes it 16 bytes. */
static inline bool before(const struct halo__timer_ent *a,
			  const struct halo__timer_ent *b)
{
	return a->deadline < b->deadline ||
	       (a->deadline == b->deadline &&
		(int32_t)(a->t->seq - b->t->seq) < 0);
}

static inline void place(halo_timer_heap *h, uint32_t i,
			 struct halo__timer_ent e)
{
	h->ent[i] = e;
	e.t->idx = i;
}

static void sift_up(halo_timer_heap *h, uint32_t i)
{
	struct halo__timer_ent e = h->ent[i];

	while (i > 0) {
		uint32_t parent = (i - 1) / ARITY;
		if (!before(&e, &h->ent[parent]))
			break;
		place(h, i, h->ent[parent]);
		i = parent;
	}
	place(h, i, e);
}

static void sift_down(halo_timer_heap *h, uint32_t i)
{
	struct halo__timer_ent e = h->ent[i];

	for (;;) {
		uint32_t first = i * ARITY + 1, best, end;

		if (first >= h->n)
			break;
		end = first + ARITY < h->n ? first + ARITY : h->n;
		best = first;
		for (uint32_t c = first + 1; c < end; c++)
			if (before(&h->ent[c], &h->ent[best]))
				best = c;
		if (!before(&h->ent[best], &e))
			break;
		place(h, i, h->ent[best]);
		i = best;
	}
	place(h, i, e);
}

static int grow(halo_loop *loop, halo_timer_heap *h)
{
	uint32_t cap = h->cap ? h->cap * 2 : 64;
	struct halo__timer_ent *ent =
		halo_mem_alloc(loop, (size_t)cap * sizeof(*ent));

	if (!ent)
		return -ENOMEM;
	if (h->ent) {
		memcpy(ent, h->ent, (size_t)h->n * sizeof(*ent));
		halo_mem_free(loop, h->ent, (size_t)h->cap * sizeof(*ent));
	}
	h->ent = ent;
	h->cap = cap;
	return 0;
}

static void heap_remove(halo_timer_heap *h, uint32_t i)
{
	struct halo__timer *t = h->ent[i].t;

	t->idx = NOT_IN_HEAP;
	if (--h->n == i)
		return;
	place(h, i, h->ent[h->n]);
	if (i > 0 && before(&h->ent[i], &h->ent[(i - 1) / ARITY]))
		sift_up(h, i);
	else
		sift_down(h, i);
}

halo_fut *halo_timer_at_(halo_loop *loop, uint64_t deadline_ns,
			 const char *file, int line)
{
	halo_timer_heap *h = &loop->timers;
	struct halo__timer *t;
	/* Before the heap grows or a slab is carved, which the caller's
	 * deadline did not wait for either. */
	uint64_t born = unlikely(loop->hist) ? halo_now_ns() : 0;

	if (h->n == h->cap && grow(loop, h) < 0)
		return NULL;
	t = halo__fut_alloc(loop, halo__timer_size(loop), FUT_TIMER, file,
			    line);
	if (!t)
		return NULL;
	t->fut.result = 0; /* the result at expiry; see halo_fut_delayed */
	if (unlikely(born))
		((struct halo__timer_born *)t)->born_ns = born;
	t->seq = (uint32_t)h->seq++;
	h->ent[h->n] = (struct halo__timer_ent){deadline_ns, t};
	t->idx = h->n++;
	sift_up(h, t->idx);
	t->fut.refs++; /* the heap's reference */
	return &t->fut;
}

void halo__timer_cancel(struct halo__timer *t)
{
	if (t->idx == NOT_IN_HEAP)
		return;
	heap_remove(&t->fut.loop->timers, t->idx);
	halo__fut_unref(&t->fut);
}

unsigned halo__timers_expire(halo_loop *loop, uint64_t now)
{
	halo_timer_heap *h = &loop->timers;
	unsigned n = 0;

	while (h->n && h->ent[0].deadline <= now) {
		struct halo__timer *t = h->ent[0].t;
		bool fails = t->fut.flags & FUT_FAILS_AT_EXPIRY;

		if (unlikely(loop->hist))
			halo__hist_timer(
				loop, ((struct halo__timer_born *)t)->born_ns,
				h->ent[0].deadline, now);
		heap_remove(h, 0);
		halo__fut_complete(&t->fut,
				   fails ? HALO_FUT_ERROR : HALO_FUT_OK,
				   t->fut.result);
		halo__fut_unref(&t->fut);
		n++;
	}
	return n;
}

uint32_t halo_timer_pending(const halo_loop *loop)
{
	return loop->timers.n;
}

uint64_t halo_timer_next(const halo_loop *loop)
{
	return loop->timers.n ? loop->timers.ent[0].deadline : UINT64_MAX;
}
