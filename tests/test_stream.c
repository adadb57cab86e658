/* Streams: the paginated scraper first, then bounds, order, errors,
 * cancellation with real I/O, batching, backpressure and the sinks. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/util.h"

TU_LOOP_FIXTURE(loop)

#define MS 1000000ull

/* --- the scraper: page(n) -> container ids, container(id) -> items --- */

struct scrape {
	uint64_t page_ns, container_ns;
	int per_page;
	int inflight, peak; /* calls in flight, pages and containers */
};

static struct scrape sc;

struct page_job {
	halo_stream_emitter *em;
	int64_t page;
};

static struct page_job pages[64];

static void call_done(halo_fut *f, void *arg)
{
	(void)f;
	(void)arg;
	sc.inflight--;
}

static void call_started(halo_fut *f)
{
	if (++sc.inflight > sc.peak)
		sc.peak = sc.inflight;
	halo_fut_on_done(f, call_done, NULL);
}

/* A page fetch as a fiber: wait for the "response", then emit its ids. */
static int64_t page_fiber(halo_loop *l, void *arg)
{
	struct page_job *j = arg;
	int r = halo_sleep(l, sc.page_ns);

	if (r < 0)
		return r;
	for (int k = 0; k < sc.per_page; k++)
		if (halo_stream_emit(j->em, j->page * sc.per_page + k, NULL))
			return -ECANCELED;
	return 0;
}

static halo_fut *fetch_page(halo_stream_emitter *em, const halo_stream_item *in,
			    void *arg)
{
	struct page_job *j = &pages[in->v];
	halo_fut *f;

	(void)arg;
	j->em = em;
	j->page = in->v;
	f = halo_spawn(&loop, page_fiber, j);
	if (f)
		call_started(f);
	return f;
}

static halo_fut *fetch_container(halo_loop *l, const halo_stream_item *in,
				 void *arg)
{
	halo_fut *f = halo_fut_delayed(l, sc.container_ns, in->v * 10, NULL);

	(void)arg;
	if (f)
		call_started(f);
	return f;
}

/* Run the scraper over n pages; returns the wall time, checks every item. */
static uint64_t scrape(int n, unsigned page_c, unsigned cont_c,
		       halo_sem *budget)
{
	halo_stream_opts po = {
	    .name = "pages", .flags = HALO_UNORDERED, .budget = budget};
	halo_stream_opts co = {
	    .name = "containers", .flags = HALO_UNORDERED, .budget = budget};
	halo_stream *ids, *items;
	halo_stream_item it;
	uint64_t t0 = halo_now_ns(), sum = 0;
	int got = 0, r;

	ids =
	    halo_stream_flat_map(halo_stream_range(&loop, 0, (uint64_t)n, NULL),
				 page_c, fetch_page, NULL, &po);
	items = halo_stream_map(ids, cont_c, fetch_container, NULL, &co);
	ck_assert_ptr_nonnull(items);
	while ((r = halo_stream_pull(items, &it)) == 1) {
		sum += (uint64_t)it.v;
		got++;
	}
	ck_assert_int_eq(r, 0);
	t0 = halo_now_ns() - t0;
	ck_assert_int_eq(got, n * sc.per_page);
	ck_assert_uint_eq(sum, 10ull * (uint64_t)(got * (got - 1) / 2));
	halo_stream_close(items);
	return t0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

START_TEST(test_scraper_takes_pages_times_latency_plus_one_container)
{
	uint64_t t[3], ideal;

	memset(&sc, 0, sizeof(sc));
	sc.page_ns = 100 * MS;
	sc.container_ns = 50 * MS;
	sc.per_page = 3;
	ideal = 3 * sc.page_ns + sc.container_ns;
	for (int i = 0; i < 3; i++)
		t[i] = scrape(3, 1, 9, NULL);
	qsort(t, 3, sizeof(t[0]), cmp_u64);
	ck_assert_uint_ge(t[1], ideal);
	ck_assert_msg(
	    t[1] <= ideal + ideal / 10, "median %llu ms, ideal %llu ms",
	    (unsigned long long)(t[1] / MS), (unsigned long long)(ideal / MS));
	ck_assert_int_eq(sc.inflight, 0);
}
END_TEST

START_TEST(test_shared_budget_caps_pages_and_containers_together)
{
	halo_sem budget;

	memset(&sc, 0, sizeof(sc));
	sc.page_ns = 10 * MS;
	sc.container_ns = 15 * MS;
	sc.per_page = 6;
	halo_sem_init(&budget, &loop, 4);
	scrape(6, 3, 9, &budget);
	ck_assert_int_le(sc.peak, 4);
	ck_assert_int_eq(sc.peak, 4);
	ck_assert_int_eq(sc.inflight, 0);
	for (int i = 0; i < 4; i++) /* every permit came back */
		ck_assert(halo_sem_try_acquire(&budget));
	ck_assert(!halo_sem_try_acquire(&budget));
}
END_TEST

/* The same scraper with the cursor dependency: a generator fetches page
 * n + 1 only after page n, yielding ids as each page arrives. */
static int64_t page_walker(halo_stream *self, void *arg)
{
	int n = (int)(intptr_t)arg;

	for (int p = 0; p < n; p++) {
		int r = halo_sleep(&loop, sc.page_ns);

		if (r < 0)
			return r;
		for (int k = 0; k < sc.per_page; k++)
			if (halo_stream_yield(self, p * sc.per_page + k, NULL))
				return -ECANCELED;
	}
	return 0;
}

START_TEST(test_scraper_with_a_generator_of_dependent_pages)
{
	halo_stream_opts co = {.flags = HALO_UNORDERED};
	halo_stream *s;
	halo_stream_item it;
	uint64_t t0, ideal, el;
	int got = 0;

	memset(&sc, 0, sizeof(sc));
	sc.page_ns = 80 * MS;
	sc.container_ns = 60 * MS;
	sc.per_page = 4;
	ideal = 3 * sc.page_ns + sc.container_ns;
	t0 = halo_now_ns();
	s = halo_stream_generate(&loop, page_walker, (void *)(intptr_t)3, NULL);
	s = halo_stream_map(s, 9, fetch_container, NULL, &co);
	while (halo_stream_pull(s, &it) == 1)
		got++;
	el = halo_now_ns() - t0;
	ck_assert_int_eq(got, 12);
	ck_assert_uint_ge(el, ideal);
	ck_assert_msg(el <= ideal + ideal / 5, "%llu ms, ideal %llu ms",
		      (unsigned long long)(el / MS),
		      (unsigned long long)(ideal / MS));
	halo_stream_close(s);
}
END_TEST

/* --- order --- */

static halo_fut *random_double(halo_loop *l, const halo_stream_item *in,
			       void *arg)
{
	(void)arg;
	return halo_fut_delayed(l, (uint64_t)(rand() % 4000) * 1000, in->v * 2,
				NULL);
}

START_TEST(test_ordered_map_keeps_input_order_under_random_latency)
{
	halo_stream *s;
	halo_stream_item it;
	int64_t i = 0;

	srand(7);
	s = halo_stream_map(halo_stream_range(&loop, 0, 300, NULL), 16,
			    random_double, NULL, NULL);
	while (halo_stream_pull(s, &it) == 1) {
		ck_assert_int_eq(it.v, 2 * i);
		ck_assert_uint_eq(it.idx, (uint64_t)i);
		i++;
	}
	ck_assert_int_eq(i, 300);
	halo_stream_close(s);
}
END_TEST

/* --- ending early --- */

static int gen_calls, gen_exit;

static int64_t counter_gen(halo_stream *self, void *arg)
{
	(void)arg;
	for (int64_t i = 0;; i++) {
		int r = halo_stream_yield(self, i, NULL);

		gen_calls++;
		if (r < 0) {
			gen_exit = r;
			return 0;
		}
	}
}

START_TEST(test_generator_stops_when_take_has_ten_and_leaks_nothing)
{
	halo_stream *s;
	halo_stream_item it;
	halo_stats st;
	int got = 0;

	gen_calls = gen_exit = 0;
	s = halo_stream_take(
	    halo_stream_generate(&loop, counter_gen, NULL, NULL), 10);
	while (halo_stream_pull(s, &it) == 1)
		ck_assert_int_eq(it.v, got++);
	ck_assert_int_eq(got, 10);
	/* The end came after the generator was cancelled and returned. */
	ck_assert_int_eq(gen_exit, -ECANCELED);
	halo_loop_stats(&loop, &st);
	ck_assert_uint_eq(st.live_fibers, 0);
	ck_assert_int_le(gen_calls, 10 + 16 + 2); /* bounded by the buffer */
	halo_stream_close(s);
}
END_TEST

START_TEST(test_closing_a_consumer_after_ten_items_releases_the_generator)
{
	halo_stream *s;
	halo_stream_item it;
	halo_stats st;

	gen_calls = gen_exit = 0;
	s = halo_stream_map(
	    halo_stream_generate(&loop, counter_gen, NULL, NULL), 4,
	    random_double, NULL, NULL);
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(halo_stream_pull(s, &it), 1);
	halo_stream_close(s);
	halo_loop_run(&loop);
	ck_assert_int_eq(gen_exit, -ECANCELED);
	halo_loop_stats(&loop, &st);
	ck_assert_uint_eq(st.live_fibers, 0);
	ck_assert_uint_eq(st.live_futures, 0);
}
END_TEST

/* --- errors --- */

static halo_fut *fail_seven(halo_loop *l, const halo_stream_item *in, void *arg)
{
	(void)arg;
	if (in->v == 7)
		return halo_fut_delayed_failed(l, 2 * MS, -EIO, "disk on fire");
	return halo_fut_delayed(l, (uint64_t)(in->v % 3) * MS, in->v, NULL);
}

START_TEST(test_failing_item_names_its_stage_and_index)
{
	halo_stream_opts o = {.name = "fetch"};
	halo_stream_error e;
	halo_stream *s;
	halo_fut *f;
	int64_t r, n = 0;

	s = halo_stream_map(halo_stream_range(&loop, 0, 20, NULL), 4,
			    fail_seven, NULL, &o);
	s = halo_stream_map(s, 2, random_double, NULL, NULL);
	while ((f = halo_stream_next(s)) && (r = halo_fut_wait(f)) == 1) {
		ck_assert_int_eq(halo_stream_current(s).v, 2 * n++);
		halo_fut_release(f);
	}
	ck_assert_int_eq(r, -EIO);
	ck_assert_int_le(n, 7);
	ck_assert_ptr_nonnull(strstr(halo_fut_error_msg(f),
				     "stage 'fetch' item 7: disk on fire"));
	halo_fut_release(f);
	ck_assert_int_eq(halo_stream_error_get(s, &e), -EIO);
	ck_assert_str_eq(e.stage, "fetch");
	ck_assert_uint_eq(e.index, 7);
	ck_assert_str_eq(e.msg, "disk on fire");
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	halo_stream_close(s);
}
END_TEST

static uint64_t failed_idx[4];
static int failed_n;

static void on_fail(halo_stream *s, const halo_stream_item *in, int err,
		    const char *msg, void *arg)
{
	(void)arg;
	ck_assert_str_eq(halo_stream_name(s), "fetch");
	ck_assert_int_eq(err, -EIO);
	ck_assert_str_eq(msg, "disk on fire");
	failed_idx[failed_n++] = in->idx;
}

START_TEST(test_skip_collects_failed_items_and_goes_on)
{
	halo_stream_opts o = {.name = "fetch",
			      .flags = HALO_STREAM_SKIP | HALO_UNORDERED,
			      .on_fail = on_fail};
	halo_stream_stats st;
	halo_stream *s;
	halo_stream_item it;
	int n = 0;

	failed_n = 0;
	s = halo_stream_map(halo_stream_range(&loop, 0, 20, NULL), 4,
			    fail_seven, NULL, &o);
	while (halo_stream_pull(s, &it) == 1) {
		ck_assert_int_ne(it.v, 7);
		n++;
	}
	ck_assert_int_eq(n, 19);
	ck_assert_int_eq(failed_n, 1);
	ck_assert_uint_eq(failed_idx[0], 7);
	halo_stream_stats_get(s, &st);
	ck_assert_uint_eq(st.failed, 1);
	ck_assert_uint_eq(st.in, 20);
	ck_assert_uint_eq(st.out, 19);
	halo_stream_close(s);
}
END_TEST

/* --- cancellation with real I/O --- */

static int pipe_fd;
static char pipe_buf[16][8];

static halo_fut *read_pipe(halo_loop *l, const halo_stream_item *in, void *arg)
{
	(void)arg;
	return halo_read(l, pipe_fd, pipe_buf[in->v], 8, -1);
}

START_TEST(test_cancel_reports_the_end_once_the_kernel_let_go)
{
	int fds[2];
	halo_stream *s;
	halo_fut *f, *t;

	ck_assert_int_eq(pipe(fds), 0);
	pipe_fd = fds[0];
	s = halo_stream_map(halo_stream_range(&loop, 0, 16, NULL), 8, read_pipe,
			    NULL, NULL);
	s = halo_stream_filter(s, NULL, NULL, NULL); /* NULL fn: no stage */
	ck_assert_ptr_null(s);
	s = halo_stream_map(halo_stream_range(&loop, 0, 16, NULL), 8, read_pipe,
			    NULL, NULL);
	s = halo_stream_buffer_ahead(s, 4);
	f = halo_stream_next(s);
	t = halo_timer_after(&loop, 20 * MS);
	ck_assert_int_eq(halo_fut_join(t), 0);
	ck_assert_uint_eq(tu_inflight(&loop), 8);
	ck_assert_int_eq(halo_fut_cancel(f), 0);
	ck_assert_int_eq(halo_fut_wait(f), -ECANCELED);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	halo_fut_release(f);
	halo_stream_close(s);
	close(fds[0]);
	close(fds[1]);
}
END_TEST

/* A consumer fiber that is cancelled closes its stream on the way out. */
static int64_t pipe_consumer(halo_loop *l, void *arg)
{
	halo_stream *s = arg;
	halo_stream_item it;
	int r = halo_stream_pull(s, &it);

	(void)l;
	halo_stream_close(s);
	return r;
}

START_TEST(test_cancelling_the_consumer_fiber_cancels_the_chain)
{
	int fds[2];
	halo_stream *s;
	halo_fut *fib, *t;

	ck_assert_int_eq(pipe(fds), 0);
	pipe_fd = fds[0];
	s = halo_stream_map(halo_stream_range(&loop, 0, 16, NULL), 8, read_pipe,
			    NULL, NULL);
	fib = halo_spawn(&loop, pipe_consumer, s);
	t = halo_timer_after(&loop, 20 * MS);
	ck_assert_int_eq(halo_fut_join(t), 0);
	/* The reads belong to the stream, not to the consumer fiber. */
	ck_assert_uint_eq(tu_inflight(&loop), 8);
	halo_fut_cancel(fib);
	ck_assert_int_eq(halo_fut_join(fib), -ECANCELED);
	halo_loop_run(&loop);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	close(fds[0]);
	close(fds[1]);
}
END_TEST

/* --- batching --- */

static int64_t timed_gen(halo_stream *self, void *arg)
{
	(void)arg;
	for (int i = 0; i < 30; i++) {
		/* Bursts and gaps: 10 at once, then one every 15 ms. */
		if (i >= 10 && halo_sleep(&loop, 15 * MS) < 0)
			return -ECANCELED;
		if (halo_stream_yield(self, (int64_t)halo_now_ns(), NULL))
			return -ECANCELED;
	}
	return 0;
}

START_TEST(test_batch_is_at_most_n_and_never_waits_past_max_delay)
{
	halo_stream *s;
	halo_stream_item it;
	size_t total = 0, full = 0;
	uint64_t max_wait = 0;

	s = halo_stream_batch(
	    halo_stream_generate(&loop, timed_gen, NULL, NULL), 4, 40 * MS,
	    NULL);
	while (halo_stream_pull(s, &it) == 1) {
		halo_batch *b = it.p;
		uint64_t wait = halo_now_ns() - (uint64_t)b->items[0].v;

		ck_assert_uint_ge(b->n, 1);
		ck_assert_uint_le(b->n, 4);
		ck_assert_int_eq(it.v, (int64_t)b->n);
		max_wait = wait > max_wait ? wait : max_wait;
		full += b->n == 4;
		total += b->n;
		halo_stream_batch_free(&loop, b);
	}
	ck_assert_uint_eq(total, 30);
	ck_assert_uint_ge(full, 2); /* the burst made full batches */
	ck_assert_msg(max_wait <= 40 * MS + 15 * MS, "waited %llu ms",
		      (unsigned long long)(max_wait / MS));
	ck_assert_msg(max_wait >= 25 * MS, "partial batches went out early");
	halo_stream_close(s);
}
END_TEST

/* A batch chain: an API that takes 10 at once (slow), then a quick write.
 * The stats show the API stage as the bottleneck and the write stage
 * mostly idle; the window before the API stays full. */
static halo_fut *api_call(halo_loop *l, const halo_stream_item *in, void *arg)
{
	(void)arg;
	return halo_fut_delayed(l, 8 * MS, in->v, in->p);
}

static halo_fut *write_call(halo_loop *l, const halo_stream_item *in, void *arg)
{
	(void)arg;
	return halo_fut_delayed(l, 1 * MS, in->v, in->p);
}

START_TEST(test_batch_chain_stats_show_the_bottleneck)
{
	halo_stream_opts api_o = {.name = "api"}, wr_o = {.name = "write"};
	halo_stream_stats api, wr, bat;
	halo_stream *s, *b, *a;
	halo_stream_item it;
	uint64_t t0 = halo_now_ns(), wall;
	int64_t n = 0;

	b = halo_stream_batch(halo_stream_range(&loop, 0, 300, NULL), 10,
			      5 * MS, NULL);
	a = halo_stream_map(b, 2, api_call, NULL, &api_o);
	s = halo_stream_map(a, 2, write_call, NULL, &wr_o);
	s = halo_stream_unbatch(s, NULL);
	while (halo_stream_pull(s, &it) == 1)
		ck_assert_int_eq(it.v, n++);
	wall = halo_now_ns() - t0;
	ck_assert_int_eq(n, 300);
	halo_stream_stats_get(a, &api);
	halo_stream_stats_get(halo_stream_upstream(s), &wr);
	halo_stream_stats_get(b, &bat);
	ck_assert_str_eq(halo_stream_name(a), "api");
	ck_assert_uint_eq(api.in, 30);
	ck_assert_uint_le(api.inflight_max, 2);
	ck_assert_uint_eq(api.inflight_max, 2);
	ck_assert_msg(api.busy_ns * 10 >= wall * 8, "api busy %llu of %llu",
		      (unsigned long long)api.busy_ns,
		      (unsigned long long)wall);
	ck_assert_uint_lt(wr.busy_ns * 2, api.busy_ns);
	ck_assert_uint_eq(bat.queued_max, 1); /* batches wait for the API */
	halo_stream_close(s);
}
END_TEST

/* --- backpressure --- */

static halo_fut *instant(halo_loop *l, const halo_stream_item *in, void *arg)
{
	(void)arg;
	return halo_fut_ready(l, in->v, NULL);
}

START_TEST(test_slow_consumer_stops_the_source)
{
	halo_stream_opts so = {.buffer = 8};
	halo_stream *src, *s;
	halo_stream_stats st;
	halo_stream_item it;

	src = halo_stream_range(&loop, 0, 1000000, &so);
	s = halo_stream_map(src, 4, instant, NULL, NULL);
	for (int i = 0; i < 50; i++) {
		ck_assert_int_eq(halo_stream_pull(s, &it), 1);
		ck_assert_int_eq(it.v, i);
		ck_assert_int_eq(halo_sleep(&loop, MS / 4), 0);
	}
	halo_stream_stats_get(src, &st);
	/* 50 taken + the map's window (4 + 4) + the source's buffer (8). */
	ck_assert_uint_le(st.out, 50 + 8 + 8);
	ck_assert_uint_le(st.queued_max, 8);
	halo_stream_close(s);
}
END_TEST

/* futures-rs #2047: work that finished while the consumer was away is not
 * stuck, and its budget permits are back for others at once. */
START_TEST(test_finished_work_frees_budget_while_consumer_sleeps)
{
	halo_stream_opts o = {.budget = NULL, .flags = HALO_UNORDERED};
	halo_stream_stats st;
	halo_stream *s;
	halo_stream_item it;
	halo_sem budget;
	halo_fut *other;
	uint64_t t0;

	memset(&sc, 0, sizeof(sc));
	sc.container_ns = 20 * MS;
	halo_sem_init(&budget, &loop, 2);
	o.budget = &budget;
	s = halo_stream_map(halo_stream_range(&loop, 0, 100, NULL), 2,
			    fetch_container, NULL, &o);
	ck_assert_int_eq(halo_stream_pull(s, &it), 1);
	/* The consumer is busy elsewhere; another user of the budget asks. */
	t0 = halo_now_ns();
	other = halo_sem_acquire(&budget);
	ck_assert_int_eq(halo_fut_wait(other), 0);
	ck_assert_uint_le(halo_now_ns() - t0, 20 * MS + 15 * MS);
	/* One permit left for the stage: it refills its window one by one. */
	ck_assert_int_eq(halo_sleep(&loop, 150 * MS), 0);
	halo_stream_stats_get(s, &st);
	ck_assert_uint_eq(st.inflight, 0); /* nothing stuck in flight */
	ck_assert_uint_eq(st.queued, 4);   /* the window, 2 + 2, is full */
	halo_sem_release(&budget);
	halo_fut_release(other);
	halo_stream_close(s);
	ck_assert_int_eq(sc.inflight, 0);
}
END_TEST

/* --- sinks and sources --- */

static int each_inflight, each_peak, each_n;

static void each_done(halo_fut *f, void *arg)
{
	(void)f;
	(void)arg;
	each_inflight--;
}

static halo_fut *each_fn(halo_loop *l, const halo_stream_item *it, void *arg)
{
	halo_fut *t;

	(void)arg;
	each_n++;
	if (it->v % 2) /* odd items are handled at once */
		return NULL;
	t = halo_timer_after(l, MS);
	if (++each_inflight > each_peak)
		each_peak = each_inflight;
	halo_fut_on_done(t, each_done, NULL);
	return t;
}

START_TEST(test_for_each_runs_at_most_concurrency_and_counts_items)
{
	halo_fut *f;

	each_inflight = each_peak = each_n = 0;
	f = halo_stream_for_each(halo_stream_range(&loop, 0, 100, NULL), 4,
				 each_fn, NULL, NULL);
	ck_assert_int_eq(each_n, 0); /* nothing runs inside the call */
	ck_assert_int_eq(halo_fut_join(f), 100);
	ck_assert_int_eq(each_n, 100);
	ck_assert_int_eq(each_peak, 4);
	ck_assert_int_eq(each_inflight, 0);
}
END_TEST

static halo_fut *read_pipe_each(halo_loop *l, const halo_stream_item *it,
				void *arg)
{
	return read_pipe(l, it, arg);
}

START_TEST(test_cancelling_for_each_drains_before_it_completes)
{
	int fds[2];
	halo_fut *f, *t;

	ck_assert_int_eq(pipe(fds), 0);
	pipe_fd = fds[0];
	f = halo_stream_for_each(halo_stream_range(&loop, 0, 16, NULL), 8,
				 read_pipe_each, NULL, NULL);
	t = halo_timer_after(&loop, 20 * MS);
	ck_assert_int_eq(halo_fut_join(t), 0);
	ck_assert_uint_eq(tu_inflight(&loop), 8);
	halo_fut_cancel(f);
	ck_assert_int_eq(halo_fut_join(f), -ECANCELED);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	close(fds[0]);
	close(fds[1]);
}
END_TEST

static bool is_even(const halo_stream_item *in, void *arg)
{
	(void)arg;
	return in->v % 2 == 0;
}

START_TEST(test_collect_filters_and_refuses_overflow)
{
	halo_stream_item out[4];
	halo_fut *f;

	f = halo_stream_collect(
	    halo_stream_filter(halo_stream_range(&loop, 0, 7, NULL), is_even,
			       NULL, NULL),
	    out, 4);
	ck_assert_int_eq(halo_fut_join(f), 4);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(out[i].v, 2 * i);
	f = halo_stream_collect(halo_stream_range(&loop, 0, 9, NULL), out, 4);
	ck_assert_int_eq(halo_fut_wait(f), -ENOBUFS);
	ck_assert_ptr_nonnull(
	    strstr(halo_fut_error_msg(f), "'collect' item 4"));
	halo_fut_release(f);
}
END_TEST

struct producer {
	halo_chan *ch;
	int n;
};

static int64_t chan_producer(halo_loop *l, void *arg)
{
	struct producer *p = arg;

	(void)l;
	for (int i = 0; i < p->n; i++)
		if (halo_fut_join(halo_chan_send(p->ch, i, NULL)) < 0)
			return -EPIPE;
	halo_chan_close(p->ch);
	return 0;
}

START_TEST(test_stream_from_a_channel_through_map_batch_and_unbatch)
{
	halo_chan ch;
	halo_chan_opts co = {.cap = 3};
	struct producer p = {&ch, 50};
	halo_stream *s;
	halo_stream_item it;
	halo_fut *prod;
	int64_t n = 0;

	ck_assert_int_eq(halo_chan_init(&ch, &loop, &co), 0);
	prod = halo_spawn(&loop, chan_producer, &p);
	s = halo_stream_map(halo_stream_from_chan(&ch, NULL), 3, random_double,
			    NULL, NULL);
	s = halo_stream_unbatch(halo_stream_batch(s, 7, MS, NULL), NULL);
	while (halo_stream_pull(s, &it) == 1)
		ck_assert_int_eq(it.v, 2 * n++);
	ck_assert_int_eq(n, 50);
	ck_assert_int_eq(halo_fut_join(prod), 0);
	halo_stream_close(s);
	halo_chan_destroy(&ch, NULL, NULL);
}
END_TEST

/* --- timeouts --- */

/* Item 3 reads a pipe that never gets data; the others are quick. */
static halo_fut *quick_or_stuck(halo_loop *l, const halo_stream_item *in,
				void *arg)
{
	if (in->v == 3)
		return read_pipe(l, in, arg);
	return halo_fut_delayed(l, MS, in->v, NULL);
}

START_TEST(test_timeout_cancels_stuck_work_and_names_it)
{
	halo_stream_opts o = {.name = "fetch", .timeout_ns = 30 * MS};
	halo_stream_error e;
	halo_stream *s;
	halo_stream_item it;
	int fds[2], r, n = 0;
	uint64_t t0 = halo_now_ns();

	ck_assert_int_eq(pipe(fds), 0);
	pipe_fd = fds[0];
	s = halo_stream_map(halo_stream_range(&loop, 0, 10, NULL), 4,
			    quick_or_stuck, NULL, &o);
	while ((r = halo_stream_pull(s, &it)) == 1)
		n++;
	ck_assert_int_eq(r, -ETIMEDOUT);
	ck_assert_int_eq(n, 3); /* ordered: 0, 1, 2 came before */
	ck_assert_uint_ge(halo_now_ns() - t0, 30 * MS);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	ck_assert_int_eq(halo_stream_error_get(s, &e), -ETIMEDOUT);
	ck_assert_uint_eq(e.index, 3);
	ck_assert_str_eq(e.stage, "fetch");
	halo_stream_close(s);
	close(fds[0]);
	close(fds[1]);
}
END_TEST

/* A slow consumer does not make finished work time out: the clock runs
 * only while the work does (the futures-rs #2047 symptom). */
START_TEST(test_timeout_never_counts_time_spent_in_the_buffer)
{
	halo_stream_opts o = {.timeout_ns = 20 * MS, .buffer = 16};
	halo_stream *s;
	halo_stream_item it;
	int n = 0, r;

	s = halo_stream_map(halo_stream_range(&loop, 0, 20, NULL), 4,
			    random_double, NULL, &o);
	while ((r = halo_stream_pull(s, &it)) == 1) {
		ck_assert_int_eq(it.v, 2 * n++);
		ck_assert_int_eq(halo_sleep(&loop, 10 * MS), 0);
	}
	ck_assert_int_eq(r, 0);
	ck_assert_int_eq(n, 20);
	halo_stream_close(s);
}
END_TEST

/* --- flat_map order --- */

struct inner {
	halo_stream_emitter *em;
	int64_t base;
};

static struct inner inners[32];

static int64_t inner_fiber(halo_loop *l, void *arg)
{
	struct inner *in = arg;

	/* Emit while running, with random pauses between the items. */
	for (int k = 0; k < 3; k++) {
		if (halo_sleep(l, (uint64_t)(rand() % 3000) * 1000) < 0)
			return -ECANCELED;
		if (halo_stream_emit(in->em, in->base * 3 + k, NULL))
			return -ECANCELED;
	}
	return 0;
}

static halo_fut *expand(halo_stream_emitter *em, const halo_stream_item *in,
			void *arg)
{
	struct inner *x = &inners[in->v];

	(void)arg;
	x->em = em;
	x->base = in->v;
	return halo_spawn(&loop, inner_fiber, x);
}

START_TEST(test_ordered_flat_map_keeps_each_inputs_items_together)
{
	halo_stream_opts o = {.buffer = 4};
	halo_stream_stats st;
	halo_stream *s;
	halo_stream_item it;
	int64_t n = 0;

	srand(3);
	s = halo_stream_flat_map(halo_stream_range(&loop, 0, 30, NULL), 5,
				 expand, NULL, &o);
	while (halo_stream_pull(s, &it) == 1) {
		ck_assert_int_eq(it.v, n);
		ck_assert_uint_eq(it.idx, (uint64_t)(n / 3));
		n++;
	}
	ck_assert_int_eq(n, 90);
	halo_stream_stats_get(s, &st);
	ck_assert_uint_le(st.inflight_max, 5);
	ck_assert_uint_ge(st.inflight_max, 2); /* inner work overlapped */
	halo_stream_close(s);
}
END_TEST

/* Inner work that produces without end stays within the stage's bound
 * when it emits with emit_wait. */
static int64_t endless_inner(halo_loop *l, void *arg)
{
	struct inner *in = arg;

	(void)l;
	for (int64_t k = 0;; k++)
		if (halo_stream_emit_wait(in->em, in->base * 1000 + k, NULL))
			return 0;
}

static halo_fut *expand_endless(halo_stream_emitter *em,
				const halo_stream_item *in, void *arg)
{
	struct inner *x = &inners[in->v];

	(void)arg;
	x->em = em;
	x->base = in->v;
	return halo_spawn(&loop, endless_inner, x);
}

START_TEST(test_emit_wait_bounds_endless_inner_work)
{
	halo_stream_opts o = {.buffer = 4, .flags = HALO_UNORDERED};
	halo_stream_stats st;
	halo_stream *s, *fm;
	halo_stream_item it;
	halo_stats ls;

	fm = halo_stream_flat_map(halo_stream_range(&loop, 0, 3, NULL), 2,
				  expand_endless, NULL, &o);
	s = halo_stream_take(fm, 200);
	for (int i = 0; i < 200; i++) {
		ck_assert_int_eq(halo_stream_pull(s, &it), 1);
		ck_assert_int_lt(it.v % 1000, 1000);
		halo_stream_stats_get(fm, &st);
		ck_assert_uint_le(st.queued, 4);
	}
	ck_assert_int_eq(halo_stream_pull(s, &it), 0);
	halo_stream_stats_get(fm, &st);
	ck_assert_uint_le(st.queued_max, 4);
	halo_loop_stats(&loop, &ls);
	ck_assert_uint_eq(ls.live_fibers, 0);
	halo_stream_close(s);
}
END_TEST

START_TEST(test_close_mid_stream_returns_once_everything_is_released)
{
	int fds[2];
	halo_stream *s;
	halo_fut *f;
	halo_stats st;

	ck_assert_int_eq(pipe(fds), 0);
	pipe_fd = fds[0];
	s = halo_stream_map(halo_stream_range(&loop, 0, 16, NULL), 8, read_pipe,
			    NULL, NULL);
	f = halo_stream_next(s);
	ck_assert_int_eq(halo_sleep(&loop, 20 * MS), 0);
	ck_assert_uint_eq(tu_inflight(&loop), 8);
	ck_assert_int_eq(halo_stream_close(s), 0);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	ck_assert_int_eq(halo_fut_status(f), HALO_FUT_CANCELLED);
	halo_fut_release(f);
	halo_loop_stats(&loop, &st);
	ck_assert_uint_eq(st.live_futures, 0);
	close(fds[0]);
	close(fds[1]);
}
END_TEST

/* Callback style: each next() future's callback asks for the next one. */
static halo_stream *cb_stream;
static int64_t cb_sum, cb_end = -1;

static void on_item(halo_fut *f, void *arg)
{
	int64_t r = halo_fut_result(f);

	(void)arg;
	halo_fut_release(f);
	if (r != 1) {
		cb_end = r;
		return;
	}
	cb_sum += halo_stream_current(cb_stream).v;
	f = halo_stream_next(cb_stream);
	ck_assert_ptr_nonnull(f);
	halo_fut_on_done(f, on_item, NULL);
}

START_TEST(test_callback_consumer_chains_next_futures)
{
	cb_sum = 0;
	cb_end = -1;
	cb_stream = halo_stream_map(halo_stream_range(&loop, 1, 100, NULL), 8,
				    random_double, NULL, NULL);
	halo_fut_on_done(halo_stream_next(cb_stream), on_item, NULL);
	halo_loop_run(&loop);
	ck_assert_int_eq(cb_end, 0);
	ck_assert_int_eq(cb_sum, 2 * 5050);
	ck_assert_int_eq(halo_stream_close(cb_stream), 0);
}
END_TEST

Suite *stream_suite(void)
{
	Suite *s = suite_create("stream");
	TCase *tc = tcase_create("stream");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(20));
	tcase_add_test(
	    tc, test_scraper_takes_pages_times_latency_plus_one_container);
	tcase_add_test(tc,
		       test_shared_budget_caps_pages_and_containers_together);
	tcase_add_test(tc, test_scraper_with_a_generator_of_dependent_pages);
	tcase_add_test(tc,
		       test_ordered_map_keeps_input_order_under_random_latency);
	tcase_add_test(
	    tc, test_generator_stops_when_take_has_ten_and_leaks_nothing);
	tcase_add_test(
	    tc, test_closing_a_consumer_after_ten_items_releases_the_generator);
	tcase_add_test(tc, test_failing_item_names_its_stage_and_index);
	tcase_add_test(tc, test_skip_collects_failed_items_and_goes_on);
	tcase_add_test(tc, test_cancel_reports_the_end_once_the_kernel_let_go);
	tcase_add_test(tc,
		       test_cancelling_the_consumer_fiber_cancels_the_chain);
	tcase_add_test(tc,
		       test_batch_is_at_most_n_and_never_waits_past_max_delay);
	tcase_add_test(tc, test_batch_chain_stats_show_the_bottleneck);
	tcase_add_test(tc, test_slow_consumer_stops_the_source);
	tcase_add_test(tc,
		       test_finished_work_frees_budget_while_consumer_sleeps);
	tcase_add_test(tc,
		       test_for_each_runs_at_most_concurrency_and_counts_items);
	tcase_add_test(tc, test_cancelling_for_each_drains_before_it_completes);
	tcase_add_test(tc, test_collect_filters_and_refuses_overflow);
	tcase_add_test(
	    tc, test_stream_from_a_channel_through_map_batch_and_unbatch);
	tcase_add_test(tc, test_timeout_cancels_stuck_work_and_names_it);
	tcase_add_test(tc, test_timeout_never_counts_time_spent_in_the_buffer);
	tcase_add_test(tc,
		       test_ordered_flat_map_keeps_each_inputs_items_together);
	tcase_add_test(tc, test_emit_wait_bounds_endless_inner_work);
	tcase_add_test(tc, test_callback_consumer_chains_next_futures);
	tcase_add_test(
	    tc, test_close_mid_stream_returns_once_everything_is_released);
	suite_add_tcase(s, tc);
	return s;
}
