/* Latency histograms: timers and operations of known delay land in the
 * right buckets, percentiles are ordered, the JSON dump is one object per
 * line, and a loop without histograms says so. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/util.h"

#define MS 1000000ull

static void open_loop(halo_loop *l)
{
	halo_loop_opts o = {.hist = 1};

	tu_loop_init(l, &o);
}

START_TEST(test_hist_timers_of_1_10_100ms_land_in_their_buckets)
{
	static const uint64_t delay[3] = {1 * MS, 10 * MS, 100 * MS};
	halo_loop l;
	halo_fut *f[5];
	halo_hist_summary s;

	open_loop(&l);
	for (int k = 0; k < 3; k++) {
		uint64_t d = delay[k], n;

		halo_hist_reset(&l);
		for (int i = 0; i < 5; i++)
			f[i] = halo_timer_after(&l, d);
		for (int i = 0; i < 5; i++) {
			ck_assert_int_eq(halo_fut_wait(f[i]), 0);
			halo_fut_release(f[i]);
		}
		/* Never early; late by less than 4x the delay plus 20 ms
		 * even on a busy machine. */
		n = halo_hist_count_range(&l, HALO_HIST_TIMER, d / 2,
					  5 * d + 20 * MS);
		ck_assert_msg(n == 5,
			      "%d timers of %" PRIu64 " ns in range, "
			      "min %" PRIu64 " max %" PRIu64,
			      (int)n, d,
			      halo_hist_percentile(&l, HALO_HIST_TIMER, 0),
			      halo_hist_percentile(&l, HALO_HIST_TIMER, 100));
		ck_assert_uint_eq(
		    halo_hist_count_range(&l, HALO_HIST_TIMER, 0, d / 2), 0);
		ck_assert_int_eq(halo_hist_get(&l, HALO_HIST_TIMER, &s), 0);
		ck_assert_uint_eq(s.count, 5);
		ck_assert_uint_ge(s.min_ns, d);
		ck_assert_uint_ge(s.p50_ns, d);
		ck_assert_uint_le(s.p50_ns, s.p99_ns);
		ck_assert_uint_le(s.p99_ns, s.p999_ns);
		ck_assert_uint_le(s.p999_ns, s.max_ns);
		ck_assert_uint_eq(s.p999_ns, s.max_ns);
		ck_assert_int_eq(halo_hist_get(&l, HALO_HIST_TIMER_LAG, &s), 0);
		ck_assert_uint_eq(s.count, 5);
	}
	tu_loop_close(&l);
}
END_TEST

/* A read of an empty pipe that a 10 ms deadline cancels: its latency, from
 * the enter that submitted it to its CQE, is the deadline's. */
START_TEST(test_hist_op_latency_of_a_read_cut_by_a_10ms_deadline)
{
	halo_loop l;
	int p[2];
	char buf[8];
	halo_fut *f;
	halo_hist_summary s;

	ck_assert_int_eq(pipe(p), 0);
	open_loop(&l);
	f = halo_read(&l, p[0], buf, sizeof(buf), -1);
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(halo_deadline_after(f, 10 * MS), 0);
	ck_assert_int_eq(halo_fut_wait(f), -ETIMEDOUT);
	halo_fut_release(f);
	for (int i = 0; i < 100; i++) {
		f = halo_nop(&l);
		ck_assert_int_eq(halo_fut_wait(f), 0);
		halo_fut_release(f);
	}

	ck_assert_uint_eq(
	    halo_hist_count_range(&l, IORING_OP_READ, 5 * MS, 50 * MS), 1);
	ck_assert_int_eq(halo_hist_get(&l, IORING_OP_NOP, &s), 0);
	ck_assert_uint_eq(s.count, 100);
	ck_assert_uint_lt(s.p50_ns, 5 * MS);
	ck_assert_int_eq(halo_hist_get(&l, HALO_HIST_TICK, &s), 0);
	ck_assert_uint_gt(s.count, 100);
	/* The 10 ms the tick slept in the kernel are not its busy time. */
	ck_assert_uint_lt(s.p50_ns, 5 * MS);
	ck_assert_str_eq(halo_hist_name(IORING_OP_READ), "read");
	ck_assert_str_eq(halo_hist_name(HALO_HIST_TICK), "tick");
	ck_assert_ptr_null(halo_hist_name(HALO_HIST_N));

	halo_hist_reset(&l);
	ck_assert_int_eq(halo_hist_get(&l, IORING_OP_NOP, &s), 0);
	ck_assert_uint_eq(s.count, 0);
	tu_loop_close(&l);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(test_hist_dump_is_json_lines_with_stats_first)
{
	halo_loop l;
	char *text = NULL, *line, *save;
	size_t len = 0;
	FILE *out;
	int n, lines = 0, nop = 0;
	halo_fut *f;

	open_loop(&l);
	for (int i = 0; i < 10; i++) {
		f = halo_nop(&l);
		ck_assert_int_eq(halo_fut_wait(f), 0);
		halo_fut_release(f);
	}
	out = open_memstream(&text, &len);
	ck_assert_ptr_nonnull(out);
	n = halo_hist_dump(&l, out);
	fclose(out);
	ck_assert_int_ge(n, 3); /* stats, nop, tick */
	ck_assert(strncmp(text, "{\"type\":\"stats\",\"ticks\":", 24) == 0);
	for (line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		lines++;
		ck_assert_int_eq(line[0], '{');
		ck_assert_int_eq(line[strlen(line) - 1], '}');
		if (strstr(line, "\"name\":\"nop\",\"count\":10,"))
			nop++;
	}
	ck_assert_int_eq(lines, n);
	ck_assert_int_eq(nop, 1);
	free(text);
	tu_loop_close(&l);
}
END_TEST

START_TEST(test_hist_off_by_default)
{
	halo_loop l;
	halo_hist_summary s;
	FILE *out = fopen("/dev/null", "w");

	tu_loop_init(&l, NULL);
	ck_assert_int_eq(halo_hist_get(&l, HALO_HIST_TICK, &s), -ENOENT);
	ck_assert_int_eq(halo_hist_get(&l, HALO_HIST_N, &s), -EINVAL);
	ck_assert_uint_eq(halo_hist_percentile(&l, HALO_HIST_TICK, 99), 0);
	ck_assert_int_eq(halo_hist_dump(&l, out), 1);
	fclose(out);
	tu_loop_close(&l);
}
END_TEST

Suite *hist_suite(void)
{
	Suite *s = suite_create("hist");
	TCase *tc = tcase_create("hist");

	tcase_set_timeout(tc, tu_timeout(10));
	tcase_add_test(tc,
		       test_hist_timers_of_1_10_100ms_land_in_their_buckets);
	tcase_add_test(tc,
		       test_hist_op_latency_of_a_read_cut_by_a_10ms_deadline);
	tcase_add_test(tc, test_hist_dump_is_json_lines_with_stats_first);
	tcase_add_test(tc, test_hist_off_by_default);
	suite_add_tcase(s, tc);
	return s;
}
