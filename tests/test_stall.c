/* The stall detector: a callback, a fiber slice and a prepare hook that hold
 * the thread past the threshold are each reported once, with their origin;
 * short ones and a detector that is off report nothing. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "tests/util.h"

#define MS 1000000ull

/* Every report is counted in n; those of 15 ms or more in long_n, and
 * the longest one is kept. The tests' stalls last 20 ms or more and are
 * asserted through long_n: on a loaded 2-core machine a short slice that
 * loses its CPU for a few ms is a real stall too, and may be reported
 * besides. */
struct seen {
	int n;
	int long_n;
	halo_stall last; /* the longest report */
	char symbol[64];
	char file[256];
	char label[64];
	char text[256];
};

static void collect(halo_loop *l, const halo_stall *s, void *arg)
{
	struct seen *seen = arg;

	(void)l;
	seen->n++;
	if (s->duration_ns >= 15 * MS)
		seen->long_n++;
	if (seen->n > 1 && s->duration_ns < seen->last.duration_ns)
		return;
	seen->last = *s;
	/* The report's strings live for the call only. */
	snprintf(seen->symbol, sizeof(seen->symbol), "%s",
		 s->symbol ? s->symbol : "");
	snprintf(seen->file, sizeof(seen->file), "%s", s->file ? s->file : "");
	snprintf(seen->label, sizeof(seen->label), "%s",
		 s->label ? s->label : "");
	halo_stall_format(s, seen->text, sizeof(seen->text));
}

static void open_loop(halo_loop *l, struct seen *seen, uint64_t stall_ns)
{
	halo_loop_opts o = {
	    .stall_ns = stall_ns, .stall_fn = collect, .stall_arg = seen};

	memset(seen, 0, sizeof(*seen));
	tu_loop_init(l, &o);
}

static void spin(uint64_t ns)
{
	uint64_t end = halo_now_ns() + ns;

	while (halo_now_ns() < end)
		;
}

/* Exported (and the runner linked with -rdynamic), so that dladdr() finds
 * its name, as it would in a shared library. */
HALO_API void stall_test_sleepy_cb(void *arg);
HALO_API void stall_test_sleepy_cb(void *arg)
{
	(void)arg;
	usleep(20 * 1000);
}

static void quick_cb(void *arg)
{
	(*(int *)arg)++;
}

START_TEST(test_stall_callback_sleeping_20ms_is_reported_once_by_name)
{
	halo_loop l;
	struct seen seen;
	halo_stats st;
	int quick = 0;

	open_loop(&l, &seen, 5 * MS);
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(halo_loop_post(&l, quick_cb, &quick), 0);
	ck_assert_int_eq(halo_loop_post(&l, stall_test_sleepy_cb, NULL), 0);
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(halo_loop_post(&l, quick_cb, &quick), 0);
	ck_assert_int_eq(halo_loop_run(&l), 0);

	ck_assert_int_eq(quick, 20);
	ck_assert_int_eq(seen.long_n, 1);
	ck_assert_int_eq(seen.last.kind, HALO_STALL_CALLBACK);
	ck_assert_ptr_eq(seen.last.fn, (const void *)stall_test_sleepy_cb);
	ck_assert_str_eq(seen.symbol, "stall_test_sleepy_cb");
	ck_assert_ptr_nonnull(
	    strstr(seen.text, "callback stall_test_sleepy_cb (halo_tests+0x"));
	ck_assert_uint_ge(seen.last.duration_ns, 20 * MS);
	ck_assert_uint_lt(seen.last.duration_ns, 10000 * MS);
	halo_loop_stats(&l, &st);
	ck_assert_uint_eq(st.stalls, (uint64_t)seen.n);
	ck_assert_uint_eq(st.stall_max_ns, seen.last.duration_ns);
	tu_loop_close(&l);
}
END_TEST

static void sleep_80ms_cb(void *arg)
{
	(void)arg;
	usleep(80 * 1000);
}

/* A threshold of many jiffies is read with the coarse clock: the duration
 * is then right within a jiffy (4 ms at HZ=250, 10 ms at HZ=100). */
START_TEST(test_stall_long_threshold_reports_within_a_jiffy)
{
	halo_loop l;
	struct seen seen;

	open_loop(&l, &seen, 50 * MS);
	ck_assert_int_eq(halo_loop_post(&l, sleep_80ms_cb, NULL), 0);
	ck_assert_int_eq(halo_loop_run(&l), 0);
	ck_assert_int_eq(seen.long_n, 1);
	ck_assert_ptr_eq(seen.last.fn, (const void *)sleep_80ms_cb);
	ck_assert_uint_ge(seen.last.duration_ns, 70 * MS);
	tu_loop_close(&l);
}
END_TEST

static void sleepy_waiter(halo_fut *f, void *arg)
{
	(void)f;
	(void)arg;
	usleep(20 * 1000);
}

static void quick_waiter(halo_fut *f, void *arg)
{
	(void)f;
	(*(int *)arg)++;
}

/* Three callbacks of one future run in one ready task: the report names the
 * slow one, not the task. */
START_TEST(test_stall_names_the_slow_waiter_among_several)
{
	halo_loop l;
	struct seen seen;
	halo_fut *f;
	int quick = 0;

	open_loop(&l, &seen, 5 * MS);
	f = halo_fut_new(&l);
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(halo_fut_on_done(f, quick_waiter, &quick), 0);
	ck_assert_int_eq(halo_fut_on_done(f, sleepy_waiter, NULL), 0);
	ck_assert_int_eq(halo_fut_on_done(f, quick_waiter, &quick), 0);
	ck_assert_int_eq(halo_fut_resolve(f, 1, NULL), 0);
	ck_assert_int_eq(halo_loop_run(&l), 0);
	halo_fut_release(f);

	ck_assert_int_eq(quick, 2);
	ck_assert_int_eq(seen.long_n, 1);
	ck_assert_ptr_eq(seen.last.fn, (const void *)sleepy_waiter);
	ck_assert_uint_ge(seen.last.duration_ns, 20 * MS);
	/* A static function has no dynamic symbol: the report names the
	 * object and the offset that addr2line resolves. */
	ck_assert_ptr_nonnull(strstr(seen.text, "callback (halo_tests+0x"));
	tu_loop_close(&l);
}
END_TEST

static int64_t computing_fiber(halo_loop *l, void *arg)
{
	(void)arg;
	ck_assert_int_eq(halo_yield(l), 0);
	spin(20 * MS);
	ck_assert_int_eq(halo_yield(l), 0);
	return 7;
}

START_TEST(test_stall_fiber_computing_20ms_is_reported_once_with_spawn_site)
{
	halo_loop l;
	struct seen seen;
	halo_fut *f;
	int line;

	open_loop(&l, &seen, 5 * MS);
	line = __LINE__ + 1;
	f = halo_spawn(&l, computing_fiber, NULL);
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(halo_fut_wait(f), 7);
	halo_fut_release(f);

	ck_assert_int_eq(seen.long_n, 1);
	ck_assert_int_eq(seen.last.kind, HALO_STALL_FIBER);
	ck_assert_str_eq(seen.file, __FILE__);
	ck_assert_int_eq(seen.last.line, line);
	ck_assert_uint_ge(seen.last.duration_ns, 20 * MS);
	ck_assert_uint_lt(seen.last.duration_ns, 10000 * MS);
	tu_loop_close(&l);
}
END_TEST

/* Two fibers handing the CPU to each other straight from halo_yield: the
 * slow slice is charged to the fiber that ran it. */
static int64_t yielding_fiber(halo_loop *l, void *arg)
{
	for (int i = 0; i < 3; i++) {
		if (arg && i == 1)
			spin(60 * MS);
		ck_assert_int_eq(halo_yield(l), 0);
	}
	return 0;
}

START_TEST(test_stall_direct_switch_charges_the_right_fiber)
{
	halo_loop l;
	struct seen seen;
	halo_fut *quick, *slow;
	int slow_line;

	/* 25 ms against a 60 ms slice: a quick slice that loses its CPU
	 * for a few ms on a loaded machine must not count as a stall. */
	open_loop(&l, &seen, 25 * MS);
	quick = halo_spawn(&l, yielding_fiber, NULL);
	slow_line = __LINE__ + 1;
	slow = halo_spawn(&l, yielding_fiber, &seen);
	ck_assert_int_eq(halo_fut_wait(quick), 0);
	ck_assert_int_eq(halo_fut_wait(slow), 0);
	halo_fut_release(quick);
	halo_fut_release(slow);

	ck_assert_int_eq(seen.long_n, 1);
	ck_assert_int_eq(seen.last.kind, HALO_STALL_FIBER);
	ck_assert_int_eq(seen.last.line, slow_line);
	tu_loop_close(&l);
}
END_TEST

static int sleepy_hook(halo_loop *l, void *arg)
{
	int *calls = arg;

	(void)l;
	if (++*calls == 2)
		usleep(20 * 1000);
	return *calls < 3;
}

START_TEST(test_stall_prepare_hook_is_reported)
{
	halo_loop l;
	struct seen seen;
	halo_hook hook;
	int calls = 0;

	open_loop(&l, &seen, 5 * MS);
	halo_loop_prepare_add(&l, &hook, sleepy_hook, &calls);
	while (calls < 3)
		ck_assert_int_ge(halo_loop_run_once(&l), 0);
	halo_loop_prepare_remove(&l, &hook);

	ck_assert_int_eq(seen.long_n, 1);
	ck_assert_int_eq(seen.last.kind, HALO_STALL_PREPARE);
	ck_assert_ptr_eq(seen.last.fn, (const void *)sleepy_hook);
	tu_loop_close(&l);
}
END_TEST

START_TEST(test_stall_short_callbacks_and_waits_report_nothing)
{
	halo_loop l;
	struct seen seen;
	int quick = 0;

	open_loop(&l, &seen, 50 * MS);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(halo_loop_post(&l, quick_cb, &quick), 0);
	/* The loop sleeping in the kernel for a timer holds no thread. */
	ck_assert_int_eq(halo_sleep(&l, 100 * MS), 0);
	ck_assert_int_eq(halo_loop_run(&l), 0);
	ck_assert_int_eq(quick, 100);
	ck_assert_int_eq(seen.n, 0);
	tu_loop_close(&l);
}
END_TEST

START_TEST(test_stall_off_by_default)
{
	halo_loop l;
	halo_stats st;

	tu_loop_init(&l, NULL);
	ck_assert_uint_eq(halo_stall_threshold(&l), 0);
	ck_assert_int_eq(halo_loop_post(&l, stall_test_sleepy_cb, NULL), 0);
	ck_assert_int_eq(halo_loop_run(&l), 0);
	halo_loop_stats(&l, &st);
	ck_assert_uint_eq(st.stalls, 0);
	ck_assert_int_eq(halo_stall_report(&l, 1, "x"), -ENOENT);
	tu_loop_close(&l);
}
END_TEST

START_TEST(test_stall_report_and_format)
{
	halo_loop l;
	struct seen seen;
	char buf[128];

	open_loop(&l, &seen, 5 * MS);
	ck_assert_uint_eq(halo_stall_threshold(&l), 5 * MS);
	ck_assert_int_eq(halo_stall_report(&l, 7 * MS, "section a"), 0);
	ck_assert_int_eq(seen.n, 1);
	ck_assert_int_eq(seen.last.kind, HALO_STALL_SECTION);
	ck_assert_str_eq(seen.label, "section a");
	halo_stall_format(&seen.last, buf, sizeof(buf));
	ck_assert_str_eq(buf, "section a");
	seen.last =
	    (halo_stall){.kind = HALO_STALL_FIBER, .file = "f.c", .line = 12};
	halo_stall_format(&seen.last, buf, sizeof(buf));
	ck_assert_str_eq(buf, "fiber spawned at f.c:12");
	tu_loop_close(&l);
}
END_TEST

Suite *stall_suite(void)
{
	Suite *s = suite_create("stall");
	TCase *tc = tcase_create("stall");

	tcase_set_timeout(tc, tu_timeout(10));
	tcase_add_test(
	    tc, test_stall_callback_sleeping_20ms_is_reported_once_by_name);
	tcase_add_test(tc, test_stall_names_the_slow_waiter_among_several);
	tcase_add_test(tc, test_stall_long_threshold_reports_within_a_jiffy);
	tcase_add_test(
	    tc,
	    test_stall_fiber_computing_20ms_is_reported_once_with_spawn_site);
	tcase_add_test(tc, test_stall_direct_switch_charges_the_right_fiber);
	tcase_add_test(tc, test_stall_prepare_hook_is_reported);
	tcase_add_test(tc, test_stall_short_callbacks_and_waits_report_nothing);
	tcase_add_test(tc, test_stall_off_by_default);
	tcase_add_test(tc, test_stall_report_and_format);
	suite_add_tcase(s, tc);
	return s;
}
