/* Sweep program: streams (sources, map, filter, batch, take, flat_map,
 * buffer_ahead, for_each, collect, a failing stage). Streams post their
 * kicks and their end with an embedded post, which needs no memory, so even
 * a persistent shortage ends every chain. */
#include <errno.h>
#include <string.h>

#include "prog.h"

static halo_fut *twice_later(halo_loop *loop, const halo_stream_item *in,
			     void *arg)
{
	(void)arg;
	return halo_fut_delayed(loop, (uint64_t)(in->v % 3) * MS / 2, in->v * 2,
				NULL);
}

static bool fourth(const halo_stream_item *in, void *arg)
{
	(void)arg;
	return in->v % 4 == 0;
}

/* range -> map -> filter -> batch -> unbatch -> take -> collect */
static void step_stream(halo_loop *loop)
{
	halo_stream_item out[8];
	halo_stream *s = halo_stream_range(loop, 0, 40, NULL);
	halo_fut *f;

	s = halo_stream_map(s, 4, twice_later, NULL, NULL);
	s = halo_stream_filter(s, fourth, NULL, NULL);
	s = halo_stream_batch(s, 3, 0, NULL);
	s = halo_stream_unbatch(s, NULL);
	s = halo_stream_take(s, 5);
	if (!GOT(s))
		return;
	f = halo_stream_collect(s, out, 8); /* takes s, even on failure */
	if (GOT(f) && EXPECT(halo_fut_join(f), 5))
		for (int i = 0; i < 5; i++)
			EXPECT(out[i].v, 4 * i);
}

static int64_t gen_ten(halo_stream *self, void *arg)
{
	(void)arg;
	for (int i = 0; i < 10; i++) {
		int r = halo_stream_yield(self, i, NULL);

		if (r < 0)
			return r;
	}
	return 0;
}

static halo_fut *each_later(halo_loop *loop, const halo_stream_item *it,
			    void *arg)
{
	*(int64_t *)arg += it->v;
	return it->v % 2 ? halo_fut_delayed(loop, 0, 0, NULL) : NULL;
}

/* arg is the loop. */
static halo_fut *three_each(halo_stream_emitter *em, const halo_stream_item *in,
			    void *arg)
{
	halo_loop *loop = arg;
	int r = 0;

	for (int j = 0; j < 3 && r == 0; j++)
		r = halo_stream_emit(em, in->v * 10 + j, NULL);
	return r ? halo_fut_failed(loop, r, NULL)
		 : halo_fut_ready(loop, 0, NULL);
}

static halo_fut *fail_third(halo_loop *loop, const halo_stream_item *in,
			    void *arg)
{
	(void)arg;
	if (in->v == 3)
		return halo_fut_delayed_failed(loop, MS, -EPROTO, "third");
	return halo_fut_delayed(loop, 0, in->v, NULL);
}

/* A generator, buffered ahead, consumed by for_each; flat_map into
 * collect; a stage that fails ends the stream with its error. */
static void step_stream_more(halo_loop *loop)
{
	halo_stream_item out[16];
	halo_stream *s = halo_stream_generate(loop, gen_ten, NULL, NULL);
	halo_fut *f;
	int64_t sum = 0;

	s = halo_stream_buffer_ahead(s, 4);
	if (GOT(s)) {
		f = halo_stream_for_each(s, 2, each_later, &sum, NULL);
		if (GOT(f) && EXPECT(halo_fut_join(f), 10))
			EXPECT(sum, 45);
	}

	s = halo_stream_range(loop, 1, 3, NULL);
	s = halo_stream_flat_map(s, 2, three_each, loop, NULL);
	if (GOT(s)) {
		f = halo_stream_collect(s, out, 16);
		if (GOT(f) && EXPECT(halo_fut_join(f), 9))
			EXPECT(out[8].v, 32);
	}

	s = halo_stream_range(loop, 0, 10, NULL);
	s = halo_stream_map(s, 2, fail_third, NULL, NULL);
	if (GOT(s)) {
		halo_stream_item it;
		int64_t r, n = 0;

		while ((r = halo_stream_pull(s, &it)) == 1)
			n++;
		EXPECT(r, -EPROTO);
		EXPECT(n <= 3, 1);
		EXPECT(halo_stream_close(s), 0);
	}
}

int main(int argc, char **argv)
{
	static const struct prog_step steps[] = {
	    {"stream", step_stream},
	    {"stream_more", step_stream_more},
	};

	return prog_run(argc, argv, steps, sizeof(steps) / sizeof(steps[0]));
}
