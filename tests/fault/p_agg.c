/* Sweep program: request aggregation with synchronous and asynchronous
 * batches, growth of the key table, the cache, max_delay and close. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "prog.h"

/* The answer for key k: twice k; keys ending in 13 fail, in 42 are never
 * answered (-ENOENT). */
static int64_t answer(uint64_t k)
{
	if (k % 100 == 13)
		return -EIO;
	if (k % 100 == 42)
		return -ENOENT;
	return (int64_t)k * 2;
}

static void answer_all(halo_agg_batch *b, const uint64_t *keys, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int64_t a = answer(keys[i]);

		if (a == -EIO)
			halo_agg_batch_fail(b, keys[i], -EIO, "bad key");
		else if (a >= 0)
			halo_agg_batch_resolve(b, keys[i], a, NULL);
	}
}

static int sync_batch(halo_agg *agg, const uint64_t *keys, size_t n,
		      halo_agg_batch *b, void *arg)
{
	(void)agg;
	(*(int *)arg)++;
	answer_all(b, keys, n);
	halo_agg_batch_done(b);
	return 0;
}

/* Loads of keys[0..n) (each twice: the second shares the first's
 * future), then every answer checked. */
static void load_and_check(halo_agg *agg, const uint64_t *keys, size_t n)
{
	halo_fut **f = calloc(2 * n, sizeof(*f));

	if (!f) {
		prog_setup_failed("calloc");
		return;
	}
	for (size_t i = 0; i < 2 * n; i++)
		GOT(f[i] = halo_agg_load(agg, keys[i % n]));
	for (size_t i = 0; i < 2 * n; i++)
		if (f[i])
			EXPECT(halo_fut_wait(f[i]), answer(keys[i % n]));
	prog_drop(f, 2 * n);
	free(f);
}

static void step_sync(halo_loop *loop)
{
	enum { N = 300 }; /* more than the initial 256 entries */
	static uint64_t keys[N];
	halo_agg agg;
	halo_agg_opts o = {.max_batch = 100};
	int calls = 0;

	for (size_t i = 0; i < N; i++)
		keys[i] = i * 7919;
	if (!EXPECT(halo_agg_init(&agg, loop, &o, sync_batch, &calls), 0))
		return;
	load_and_check(&agg, keys, N);
	halo_agg_close(&agg);
}

/* An asynchronous batch: a NOP goes out, the keys are answered when it
 * comes back. */
struct pending {
	halo_agg_batch *b;
	uint64_t keys[16];
	size_t n;
};

static void nop_back(halo_fut *f, void *arg)
{
	struct pending *p = arg;

	halo_fut_release(f);
	answer_all(p->b, p->keys, p->n);
	halo_agg_batch_done(p->b);
	free(p);
}

static int async_batch(halo_agg *agg, const uint64_t *keys, size_t n,
		       halo_agg_batch *b, void *arg)
{
	struct pending *p = malloc(sizeof(*p));
	halo_fut *nop = halo_nop(halo_agg_batch_agg(b)->loop);
	int r;

	(void)agg;
	(void)arg;
	if (!p || !nop || n > 16) {
		free(p);
		prog_drop(&nop, 1);
		return -ENOMEM; /* the batch's keys fail with it */
	}
	p->b = b;
	p->n = n;
	memcpy(p->keys, keys, n * sizeof(*keys));
	r = halo_fut_on_done(nop, nop_back, p);
	if (r < 0) {
		free(p);
		prog_drop(&nop, 1);
	}
	return r;
}

static void step_async(halo_loop *loop)
{
	enum { N = 50 };
	uint64_t keys[N];
	halo_agg agg;
	halo_agg_opts o = {.max_batch = 10, .max_inflight = 2};

	for (size_t i = 0; i < N; i++)
		keys[i] = 1000 + i;
	if (!EXPECT(halo_agg_init(&agg, loop, &o, async_batch, NULL), 0))
		return;
	load_and_check(&agg, keys, N);
	halo_agg_close(&agg);
}

static void step_cache(halo_loop *loop)
{
	halo_agg agg;
	halo_agg_opts o = {.cache = true, .max_delay_ns = 1 * MS};
	int calls = 0;
	bool cached;

	if (!EXPECT(halo_agg_init(&agg, loop, &o, sync_batch, &calls), 0))
		return;
	cached = EXPECT(prog_join(halo_agg_load(&agg, 5)), 10);
	cached |= EXPECT(prog_join(halo_agg_load(&agg, 5)), 10);
	EXPECT(prog_join(halo_agg_load(&agg, 113)), -EIO);
	EXPECT(halo_agg_invalidate(&agg, 5), cached);
	EXPECT(prog_join(halo_agg_load(&agg, 5)), 10);
	halo_agg_clear(&agg);
	EXPECT(prog_join(halo_agg_load(&agg, 6)), 12);
	halo_agg_close(&agg);
}

/* A load cancelled while queued; a later load of the key gets a future
 * of its own and the answer. */
static void step_cancelled(halo_loop *loop)
{
	halo_agg agg;
	halo_fut *a, *b;
	int calls = 0;

	if (!EXPECT(halo_agg_init(&agg, loop, NULL, sync_batch, &calls), 0))
		return;
	a = halo_agg_load(&agg, 21);
	if (GOT(a)) {
		EXPECT(halo_fut_cancel(a), 0);
		EXPECT(halo_fut_join(a), -ECANCELED);
		b = halo_agg_load(&agg, 21);
		EXPECT(prog_join(b), 42);
	}
	halo_agg_close(&agg);
}

static void step_close(halo_loop *loop)
{
	halo_agg agg;
	halo_fut *f[3];
	int calls = 0;

	if (!EXPECT(halo_agg_init(&agg, loop, NULL, sync_batch, &calls), 0))
		return;
	for (int i = 0; i < 3; i++)
		GOT(f[i] = halo_agg_load(&agg, (uint64_t)i));
	halo_agg_close(&agg);
	for (int i = 0; i < 3; i++)
		if (f[i])
			EXPECT(halo_fut_join(f[i]), -ECANCELED);
}

int main(int argc, char **argv)
{
	static const struct prog_step steps[] = {
	    {"sync", step_sync},   {"async", step_async},
	    {"cache", step_cache}, {"cancelled", step_cancelled},
	    {"close", step_close},
	};

	return prog_run(argc, argv, steps, sizeof(steps) / sizeof(steps[0]));
}
