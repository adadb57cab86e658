/* Streams: the cost per item of map(64) over NOP futures against halo_map
 * over the same inputs and the raw NOP loop, in this process and
 * interleaved; memory of a long source into a slower sink; the paginated
 * scraper's time over its ideal. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "bench/bench.h"
#include "halo.h"

#define MS     1000000ull
#define K      64
#define ROUNDS 5

static halo_fut *nop_item(halo_loop *loop, const halo_stream_item *in,
			  void *arg)
{
	(void)in;
	(void)arg;
	return halo_nop(loop);
}

static halo_fut *nop_input(halo_loop *loop, void *input, size_t idx)
{
	(void)input;
	(void)idx;
	return halo_nop(loop);
}

static uint64_t sink_n;

static halo_fut *count_item(halo_loop *loop, const halo_stream_item *it,
			    void *arg)
{
	(void)loop;
	(void)it;
	(void)arg;
	sink_n++;
	return NULL;
}

static double stream_nops(halo_loop *loop, size_t n, unsigned flags)
{
	halo_stream_opts o = {.flags = flags};
	uint64_t t0 = halo_now_ns();
	halo_stream *s;

	s = halo_stream_map(halo_stream_range(loop, 0, n, NULL), K, nop_item,
			    NULL, &o);
	sink_n = 0;
	halo_fut_join(halo_stream_for_each(s, 1, count_item, NULL, NULL));
	if (sink_n != n)
		fprintf(stderr, "bench_stream: %llu items of %zu\n",
			(unsigned long long)sink_n, n);
	return (double)(halo_now_ns() - t0) / (double)n;
}

static double map_nops(halo_loop *loop, size_t n)
{
	uint64_t t0 = halo_now_ns();

	halo_fut_join(halo_map(loop, NULL, n, K, nop_input, NULL));
	return (double)(halo_now_ns() - t0) / (double)n;
}

static double raw_nops(halo_loop *loop, size_t n)
{
	halo_fut *f[K];
	uint64_t t0 = halo_now_ns();

	for (size_t done = 0; done < n; done += K) {
		for (size_t i = 0; i < K; i++)
			f[i] = halo_nop(loop);
		for (size_t i = 0; i < K; i++)
			halo_fut_join(f[i]);
	}
	return (double)(halo_now_ns() - t0) / (double)n;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_d);
	return v[n / 2];
}

static void map_overhead(halo_loop *loop, size_t n)
{
	double so[ROUNDS], su[ROUNDS], m[ROUNDS], r[ROUNDS];
	double mso, msu, mm, mr;

	stream_nops(loop, n / 10, 0); /* warm the pools */
	map_nops(loop, n / 10);
	for (int i = 0; i < ROUNDS; i++) {
		so[i] = stream_nops(loop, n, 0);
		su[i] = stream_nops(loop, n, HALO_UNORDERED);
		m[i] = map_nops(loop, n);
		r[i] = raw_nops(loop, n);
	}
	mso = median(so, ROUNDS);
	msu = median(su, ROUNDS);
	mm = median(m, ROUNDS);
	mr = median(r, ROUNDS);
	bench_emit("stream", "map64_nops_ordered", "ns_per_item", mso, "ns",
		   "halo_map", mm, 0);
	bench_emit("stream", "map64_nops_unordered", "ns_per_item", msu, "ns",
		   "halo_map", mm, 0);
	bench_emit("stream", "map64_nops_unordered", "ns_per_item_vs_raw", msu,
		   "ns", "halo_nop_raw", mr, 0);
}

static long rss_bytes(void)
{
	long pages = 0, res = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f)
		return 0;
	if (fscanf(f, "%ld %ld", &pages, &res) != 2)
		res = 0;
	fclose(f);
	return res * sysconf(_SC_PAGESIZE);
}

static uint64_t slow_n, slow_total;
static long rss_first, rss_max;

/* A sink slower than the source: a little work per item. */
static halo_fut *slow_item(halo_loop *loop, const halo_stream_item *it,
			   void *arg)
{
	volatile uint64_t x = (uint64_t)it->v;

	(void)loop;
	(void)arg;
	for (int i = 0; i < 100; i++)
		x = x * 31 + 7;
	/* Sample the resident set ten times along the way. */
	if (++slow_n % (slow_total / 10 + 1) == 0) {
		long r = rss_bytes();

		if (!rss_first)
			rss_first = r;
		rss_max = r > rss_max ? r : rss_max;
	}
	return NULL;
}

static halo_fut *ready_item(halo_loop *loop, const halo_stream_item *in,
			    void *arg)
{
	(void)arg;
	return halo_fut_ready(loop, in->v, NULL);
}

static void memory(halo_loop *loop, size_t n, size_t buffered)
{
	halo_stream_opts big = {.buffer = buffered};
	halo_stream *s;
	halo_stream_item it;
	long r0, r1;

	/* Flat: a long source into a slower sink. */
	slow_n = 0;
	slow_total = n;
	s = halo_stream_map(halo_stream_range(loop, 0, n, NULL), K, ready_item,
			    NULL, NULL);
	halo_fut_join(halo_stream_for_each(s, 1, slow_item, NULL, NULL));
	bench_emit("stream", "source_into_slow_sink", "rss_growth",
		   (double)(rss_max - rss_first), "B", NULL, 0, 0);
	/* What one buffered item costs: fill a source's buffer, stop. */
	r0 = rss_bytes();
	s = halo_stream_range(loop, 0, buffered + 1, &big);
	halo_stream_pull(s, &it);
	r1 = rss_bytes();
	bench_emit("stream", "buffered_items", "bytes_per_item",
		   (double)(r1 - r0) / (double)buffered, "B", NULL, 0, 0);
	halo_stream_close(s);
}

/* The scraper: pages in sequence, containers unordered with 9 at once. */
struct page {
	halo_stream_emitter *em;
	int64_t page;
};
static struct page pages[16];
static halo_loop *bl;
#define PAGES	 5
#define PER_PAGE 4
#define PAGE_NS	 (4 * MS)
#define CONT_NS	 (2 * MS)

static void page_done(halo_fut *f, void *arg)
{
	struct page *p = arg;

	(void)f;
	for (int k = 0; k < PER_PAGE; k++)
		halo_stream_emit(p->em, p->page * PER_PAGE + k, NULL);
}

static halo_fut *fetch_page(halo_stream_emitter *em, const halo_stream_item *in,
			    void *arg)
{
	halo_fut *f = halo_timer_after(bl, PAGE_NS);

	(void)arg;
	pages[in->v].em = em;
	pages[in->v].page = in->v;
	halo_fut_on_done(f, page_done, &pages[in->v]);
	return f;
}

static halo_fut *fetch_container(halo_loop *loop, const halo_stream_item *in,
				 void *arg)
{
	(void)arg;
	return halo_fut_delayed(loop, CONT_NS, in->v, NULL);
}

static void scraper(halo_loop *loop, int rounds)
{
	halo_stream_opts u = {.flags = HALO_UNORDERED};
	double t[16], ideal = (double)(PAGES * PAGE_NS + CONT_NS);

	bl = loop;
	for (int r = 0; r < rounds; r++) {
		uint64_t t0 = halo_now_ns();
		halo_stream *s;
		halo_stream_item it;

		s = halo_stream_flat_map(
		    halo_stream_range(loop, 0, PAGES, NULL), 1, fetch_page,
		    NULL, &u);
		s = halo_stream_map(s, 9, fetch_container, NULL, &u);
		while (halo_stream_pull(s, &it) == 1)
			;
		t[r] = (double)(halo_now_ns() - t0);
		halo_stream_close(s);
	}
	bench_emit("stream", "scraper_5x4_pages4ms_items2ms", "time_over_ideal",
		   median(t, rounds) / ideal, "x", NULL, 0, 0);
}

int main(void)
{
	halo_loop loop;
	double scale = bench_scale();
	size_t n = (size_t)(1000000 * scale);
	size_t big = (size_t)(10000000 * scale);

	n -= n % K;
	bench_pin(0);
	if (halo_loop_init(&loop, NULL) < 0) {
		fprintf(stderr, "bench_stream: %s\n", halo_loop_error(&loop));
		return 1;
	}
	bench_progress("stream", "map(%d) over %zu NOPs, %d rounds", K, n,
		       ROUNDS);
	map_overhead(&loop, n);
	bench_progress("stream", "%zu items into a slower sink", big);
	memory(&loop, big, (size_t)(1000000 * scale));
	bench_progress("stream", "scraper");
	scraper(&loop, 9);
	halo_loop_close(&loop);
	return 0;
}
