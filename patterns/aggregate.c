/* Request aggregation. Each distinct key has one entry in an open-addressing
 * table (linear probing, deletion by backward shift, so no tombstones pile
 * up); a queued or in-flight key owns one future that every load of the key
 * shares. The prepare hook cuts the queue into batches. */
#include "aggregate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/pool.h"
#include "../runtime/timer.h"

#define DEFAULT_BATCH 128
#define DEFAULT_INFLIGHT 16
#define INITIAL_CAP 256

enum { ENT_FREE, ENT_QUEUED, ENT_INFLIGHT, ENT_CACHED };

struct halo__agg_ent {
	uint64_t key;
	halo_fut *fut; /* queued or in flight: the shared future (our ref) */
	int64_t result;
	void *value;
	halo_agg_batch *batch;
	uint32_t next; /* queue or free list link: index + 1 */
	uint8_t state;
	uint8_t stale; /* invalidated while in flight: do not cache */
};

struct halo_agg_batch {
	halo_agg *agg;
	size_t n;
	uint64_t keys[];
};

static uint32_t hash_key(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdull;
	k ^= k >> 33;
	k *= 0xc4ceb9fe1a85ec53ull;
	k ^= k >> 33;
	return (uint32_t)k;
}

/* The table slot that holds key, or the free slot where it would go. */
static uint32_t find_slot(const halo_agg *agg, uint64_t key)
{
	uint32_t i = hash_key(key) & agg->table_mask;

	while (agg->table[i] && agg->ent[agg->table[i] - 1].key != key)
		i = (i + 1) & agg->table_mask;
	return i;
}

static struct halo__agg_ent *lookup(const halo_agg *agg, uint64_t key)
{
	uint32_t i = find_slot(agg, key);

	return agg->table[i] ? &agg->ent[agg->table[i] - 1] : NULL;
}

/* Double the entry slots and the table (amortized: a load never allocates
 * otherwise). Both allocations come first, so that a failure leaves the
 * aggregator exactly as it was: a table that kept its size while the entry
 * count doubled would fill up, and find_slot would probe it forever. */
static int grow(halo_agg *agg)
{
	uint32_t cap = agg->ent_cap ? agg->ent_cap * 2 : INITIAL_CAP;
	uint32_t *table = calloc((size_t)cap * 2, sizeof(*table));
	struct halo__agg_ent *ent;

	if (!table)
		return -ENOMEM;
	ent = realloc(agg->ent, cap * sizeof(*ent));
	if (!ent) {
		free(table);
		return -ENOMEM;
	}
	memset(ent + agg->ent_cap, 0, (cap - agg->ent_cap) * sizeof(*ent));
	for (uint32_t e = cap; e > agg->ent_cap; e--) {
		ent[e - 1].next = agg->free_head;
		agg->free_head = e;
	}
	free(agg->table);
	agg->ent = ent;
	agg->ent_cap = cap;
	agg->table = table;
	agg->table_mask = cap * 2 - 1;
	for (uint32_t e = 0; e < cap; e++)
		if (ent[e].state != ENT_FREE)
			table[find_slot(agg, ent[e].key)] = e + 1;
	return 0;
}

static struct halo__agg_ent *insert(halo_agg *agg, uint64_t key)
{
	struct halo__agg_ent *e;
	uint32_t idx;

	if (!agg->free_head && grow(agg) < 0)
		return NULL;
	idx = agg->free_head;
	e = &agg->ent[idx - 1];
	agg->free_head = e->next;
	memset(e, 0, sizeof(*e));
	e->key = key;
	agg->table[find_slot(agg, key)] = idx;
	agg->ent_n++;
	return e;
}

static void erase(halo_agg *agg, struct halo__agg_ent *e)
{
	uint32_t mask = agg->table_mask;
	uint32_t i = find_slot(agg, e->key), j = i;

	/* Backward shift: pull later members of the probe run into the hole
	 * unless their home slot lies cyclically after the hole. */
	for (;;) {
		uint32_t home;

		j = (j + 1) & mask;
		if (!agg->table[j])
			break;
		home = hash_key(agg->ent[agg->table[j] - 1].key) & mask;
		if (((j - home) & mask) >= ((j - i) & mask)) {
			agg->table[i] = agg->table[j];
			i = j;
		}
	}
	agg->table[i] = 0;
	e->state = ENT_FREE;
	e->fut = NULL;
	e->next = agg->free_head;
	agg->free_head = (uint32_t)(e - agg->ent) + 1;
	agg->ent_n--;
}

/* Complete e's shared future and either keep the result or drop e. */
static void finish(halo_agg *agg, struct halo__agg_ent *e, int err,
		   const char *msg, int64_t result, void *value)
{
	halo_fut *f = e->fut;

	if (err)
		halo_fut_fail(f, err, msg);
	else
		halo_fut_resolve(f, result, value);
	if (!err && agg->opts.cache && !e->stale && !agg->closing) {
		e->state = ENT_CACHED;
		e->fut = NULL;
		e->batch = NULL;
		e->result = result;
		e->value = value;
	} else {
		erase(agg, e);
	}
	halo_fut_release(f);
}

static void batch_free(halo_agg_batch *b)
{
	halo_agg *agg = b->agg;

	agg->inflight--;
	halo_mem_free(agg->loop, b, sizeof(*b) + b->n * sizeof(uint64_t));
}

/* Fail the keys of b that are still unanswered; returns how many. */
static int fail_rest(halo_agg_batch *b, int err, const char *msg)
{
	halo_agg *agg = b->agg;
	int n = 0;

	for (size_t i = 0; i < b->n; i++) {
		struct halo__agg_ent *e = lookup(agg, b->keys[i]);

		if (e && e->state == ENT_INFLIGHT && e->batch == b) {
			finish(agg, e, err, msg, 0, NULL);
			n++;
		}
	}
	return n;
}

/* Take the oldest queued key off the queue. */
static struct halo__agg_ent *dequeue(halo_agg *agg)
{
	struct halo__agg_ent *e = &agg->ent[agg->pend_head - 1];

	agg->pend_head = e->next;
	if (!agg->pend_head)
		agg->pend_tail = 0;
	agg->pend_n--;
	e->next = 0;
	return e;
}

/* No memory for the batch: its keys fail now. Leaving them queued for a
 * later tick would retry without end for as long as memory stays short. */
static void fail_unbatched(halo_agg *agg, size_t n)
{
	for (size_t i = 0; i < n; i++)
		finish(agg, dequeue(agg), -ENOMEM,
		       "out of memory for the batch", 0, NULL);
}

static void dispatch(halo_agg *agg, size_t n)
{
	halo_agg_batch *b = halo_mem_alloc(agg->loop,
					   sizeof(*b) + n * sizeof(uint64_t));
	int r;

	if (!b) {
		fail_unbatched(agg, n);
		return;
	}
	b->agg = agg;
	b->n = n;
	for (size_t i = 0; i < n; i++) {
		struct halo__agg_ent *e = dequeue(agg);

		e->state = ENT_INFLIGHT;
		e->batch = b;
		b->keys[i] = e->key;
	}
	agg->pend_since = agg->opts.max_delay_ns ? halo_now_ns() : 0;
	agg->inflight++;
	agg->stats.batches++;
	agg->stats.keys_asked += n;
	if (n > agg->stats.max_batch_n)
		agg->stats.max_batch_n = n;
	if (agg->inflight > agg->stats.inflight_max)
		agg->stats.inflight_max = agg->inflight;
	r = agg->fn(agg, b->keys, n, b, agg->arg);
	if (r < 0) {
		fail_rest(b, r, "batch function failed");
		batch_free(b);
	}
}

static void timer_fired(halo_fut *f, void *arg)
{
	halo_agg *agg = arg;

	agg->timer = NULL;
	halo_fut_release(f);
}

/* Be woken at deadline. Returns 0, or -ENOMEM without a timer. */
static int arm_timer(halo_agg *agg, uint64_t deadline)
{
	if (agg->timer)
		return 0;
	agg->timer = halo_timer_at(agg->loop, deadline);
	if (!agg->timer)
		return -ENOMEM;
	agg->timer_w.fn = timer_fired;
	agg->timer_w.arg = agg;
	halo_fut_add_waiter(agg->timer, &agg->timer_w);
	return 0;
}

static int flush_hook(halo_loop *loop, void *arg)
{
	halo_agg *agg = arg;

	(void)loop;
	while (agg->pend_n && agg->inflight < agg->opts.max_inflight) {
		size_t n = agg->pend_n;

		if (n > agg->opts.max_batch)
			n = agg->opts.max_batch;
		if (n < agg->opts.max_batch && agg->opts.max_delay_ns) {
			uint64_t due = agg->pend_since + agg->opts.max_delay_ns;

			/* Without a timer nothing would come back for the
			 * keys: send the partial batch now instead. */
			if (halo_now_ns() < due && arm_timer(agg, due) == 0)
				break;
		}
		dispatch(agg, n);
	}
	return 0;
}

int halo_agg_init(halo_agg *agg, halo_loop *loop, const halo_agg_opts *opts,
		  halo_agg_batch_fn fn, void *arg)
{
	memset(agg, 0, sizeof(*agg));
	if (!fn)
		return -EINVAL;
	if (opts)
		agg->opts = *opts;
	if (!agg->opts.max_batch)
		agg->opts.max_batch = DEFAULT_BATCH;
	if (!agg->opts.max_inflight)
		agg->opts.max_inflight = DEFAULT_INFLIGHT;
	if (!agg->opts.missing_err)
		agg->opts.missing_err = -ENOENT;
	if (agg->opts.missing_err > 0)
		return -EINVAL;
	agg->loop = loop;
	agg->fn = fn;
	agg->arg = arg;
	if (grow(agg) < 0)
		return -ENOMEM;
	halo_loop_prepare_add(loop, &agg->hook, flush_hook, agg);
	return 0;
}

void halo_agg_close(halo_agg *agg)
{
	if (!agg->loop)
		return;
	agg->closing = 1;
	halo_loop_prepare_remove(agg->loop, &agg->hook);
	if (agg->timer) {
		halo_fut_remove_waiter(agg->timer, &agg->timer_w);
		halo_fut_cancel(agg->timer);
		halo_fut_release(agg->timer);
	}
	for (uint32_t i = 0; i < agg->ent_cap; i++) {
		struct halo__agg_ent *e = &agg->ent[i];

		if (e->state == ENT_QUEUED || e->state == ENT_INFLIGHT) {
			halo_fut_fail(e->fut, -ECANCELED, "aggregator closed");
			halo_fut_release(e->fut);
		}
	}
	free(agg->ent);
	free(agg->table);
	memset(agg, 0, sizeof(*agg));
}

halo_fut *halo_agg_load_at(halo_agg *agg, uint64_t key, const char *file,
			   int line)
{
	struct halo__agg_ent *e = lookup(agg, key);
	halo_fut *f;

	agg->stats.loads++;
	if (e && e->state == ENT_CACHED) {
		f = halo_fut_new_at(agg->loop, file, line);
		if (f)
			halo_fut_resolve(f, e->result, e->value);
		agg->stats.cache_hits++;
		return f;
	}
	if (e && halo_fut_is_done(e->fut)) {
		/* An earlier loader cancelled the shared future: the key's
		 * answer goes to a fresh one, so that later loaders do not
		 * inherit that cancellation. */
		f = halo_fut_new_at(agg->loop, file, line);
		if (!f)
			return NULL;
		halo_fut_release(e->fut);
		e->fut = f;
		return halo_fut_ref(f);
	}
	if (e) {
		agg->stats.dedup_hits++;
		return halo_fut_ref(e->fut);
	}
	f = halo_fut_new_at(agg->loop, file, line);
	if (!f)
		return NULL;
	e = insert(agg, key);
	if (!e) {
		halo_fut_release(f);
		return NULL;
	}
	e->fut = f;
	e->state = ENT_QUEUED;
	if (agg->pend_tail)
		agg->ent[agg->pend_tail - 1].next = (uint32_t)(e - agg->ent) + 1;
	else
		agg->pend_head = (uint32_t)(e - agg->ent) + 1;
	agg->pend_tail = (uint32_t)(e - agg->ent) + 1;
	if (!agg->pend_n++ && agg->opts.max_delay_ns)
		agg->pend_since = halo_now_ns();
	return halo_fut_ref(f);
}

static struct halo__agg_ent *batch_ent(halo_agg_batch *b, uint64_t key)
{
	struct halo__agg_ent *e = lookup(b->agg, key);

	return e && e->state == ENT_INFLIGHT && e->batch == b ? e : NULL;
}

int halo_agg_batch_resolve(halo_agg_batch *b, uint64_t key, int64_t result,
			   void *value)
{
	struct halo__agg_ent *e = batch_ent(b, key);

	if (!e)
		return -ENOENT;
	finish(b->agg, e, 0, NULL, result, value);
	return 0;
}

int halo_agg_batch_fail(halo_agg_batch *b, uint64_t key, int err,
			const char *msg)
{
	struct halo__agg_ent *e;

	if (err >= 0)
		return -EINVAL;
	e = batch_ent(b, key);
	if (!e)
		return -ENOENT;
	finish(b->agg, e, err, msg, 0, NULL);
	return 0;
}

static void kick(void *arg)
{
	(void)arg;
}

int halo_agg_batch_done(halo_agg_batch *b)
{
	halo_agg *agg = b->agg;
	int n = fail_rest(b, agg->opts.missing_err, "key not answered");

	batch_free(b);
	/* A slot for a waiting batch opened: make sure a tick reaches the
	 * prepare step without blocking first. */
	if (agg->pend_n)
		halo_loop_post(agg->loop, kick, NULL);
	return n;
}

halo_agg *halo_agg_batch_agg(const halo_agg_batch *b)
{
	return b->agg;
}

int halo_agg_invalidate(halo_agg *agg, uint64_t key)
{
	struct halo__agg_ent *e = lookup(agg, key);

	if (!e)
		return 0;
	if (e->state == ENT_CACHED)
		erase(agg, e);
	else
		e->stale = 1;
	return 1;
}

void halo_agg_clear(halo_agg *agg)
{
	for (uint32_t i = 0; i < agg->ent_cap; i++) {
		struct halo__agg_ent *e = &agg->ent[i];

		if (e->state == ENT_CACHED)
			erase(agg, e);
		else if (e->state != ENT_FREE)
			e->stale = 1;
	}
}

void halo_agg_stats_get(const halo_agg *agg, halo_agg_stats *out)
{
	*out = agg->stats;
}
