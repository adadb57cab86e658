/* Channels: FIFO, waiting on full and empty, close, cancellation, credit. */
#include <errno.h>

#include "tests/util.h"

TU_LOOP_FIXTURE(loop)

START_TEST(test_try_calls_are_fifo_and_respect_the_credit)
{
	halo_chan ch;
	halo_chan_opts o = {.cap = 3};
	halo_chan_msg m;

	ck_assert_int_eq(halo_chan_init(&ch, &loop, &o), 0);
	ck_assert_uint_eq(halo_chan_space(&ch), 3);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(halo_chan_try_send(&ch, i, &ch), 0);
	ck_assert_uint_eq(halo_chan_space(&ch), 0);
	ck_assert_int_eq(halo_chan_try_send(&ch, 9, NULL), -EAGAIN);
	ck_assert_uint_eq(halo_chan_len(&ch), 3);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(halo_chan_try_recv(&ch, &m), 1);
		ck_assert_int_eq(m.v, i);
		ck_assert_ptr_eq(m.p, &ch);
	}
	ck_assert_int_eq(halo_chan_try_recv(&ch, &m), -EAGAIN);
	halo_chan_close(&ch);
	ck_assert_int_eq(halo_chan_try_recv(&ch, &m), 0);
	ck_assert_int_eq(halo_chan_try_send(&ch, 1, NULL), -EPIPE);
	halo_chan_destroy(&ch, NULL, NULL);
}
END_TEST

START_TEST(test_send_waits_while_full_and_keeps_order)
{
	halo_chan ch;
	halo_chan_opts o = {.cap = 1};
	halo_chan_msg m;
	halo_fut *a, *b;

	ck_assert_int_eq(halo_chan_init(&ch, &loop, &o), 0);
	ck_assert_int_eq(halo_fut_join(halo_chan_send(&ch, 1, NULL)), 0);
	a = halo_chan_send(&ch, 2, NULL);
	b = halo_chan_send(&ch, 3, NULL);
	ck_assert(!halo_fut_is_done(a));
	/* A try_send may not jump the queue of blocked senders. */
	ck_assert_int_eq(halo_chan_try_send(&ch, 4, NULL), -EAGAIN);
	ck_assert_int_eq(halo_chan_try_recv(&ch, &m), 1);
	ck_assert_int_eq(m.v, 1);
	ck_assert_int_eq(halo_fut_join(a), 0);
	ck_assert(!halo_fut_is_done(b));
	ck_assert_int_eq(halo_chan_try_recv(&ch, &m), 1);
	ck_assert_int_eq(m.v, 2);
	ck_assert_int_eq(halo_chan_try_recv(&ch, &m), 1);
	ck_assert_int_eq(m.v, 3);
	ck_assert_int_eq(halo_fut_join(b), 0);
	halo_chan_destroy(&ch, NULL, NULL);
}
END_TEST

START_TEST(test_recv_waits_while_empty_and_gets_the_end_on_close)
{
	halo_chan ch;
	halo_chan_msg m1, m2;
	halo_fut *r1, *r2;

	ck_assert_int_eq(halo_chan_init(&ch, &loop, NULL), 0);
	r1 = halo_chan_recv(&ch, &m1);
	r2 = halo_chan_recv(&ch, &m2);
	ck_assert(!halo_fut_is_done(r1));
	ck_assert_int_eq(halo_chan_try_send(&ch, 42, &m1), 0);
	ck_assert_uint_eq(halo_chan_len(&ch), 0); /* handed over directly */
	ck_assert_int_eq(halo_fut_wait(r1), 1);
	ck_assert_int_eq(m1.v, 42);
	ck_assert_ptr_eq(halo_fut_value(r1), &m1);
	halo_chan_close(&ch);
	ck_assert_int_eq(halo_fut_wait(r2), 0);
	halo_fut_release(r1);
	halo_fut_release(r2);
	halo_chan_destroy(&ch, NULL, NULL);
}
END_TEST

START_TEST(test_close_fails_blocked_senders_and_receivers_drain_first)
{
	halo_chan ch;
	halo_chan_opts o = {.cap = 2};
	halo_chan_msg m;
	halo_fut *s;

	ck_assert_int_eq(halo_chan_init(&ch, &loop, &o), 0);
	halo_chan_try_send(&ch, 1, NULL);
	halo_chan_try_send(&ch, 2, NULL);
	s = halo_chan_send(&ch, 3, NULL);
	halo_chan_close(&ch);
	ck_assert_int_eq(halo_fut_join(s), -EPIPE);
	ck_assert_int_eq(halo_fut_join(halo_chan_recv(&ch, &m)), 1);
	ck_assert_int_eq(m.v, 1);
	ck_assert_int_eq(halo_fut_join(halo_chan_recv(&ch, &m)), 1);
	ck_assert_int_eq(m.v, 2);
	ck_assert_int_eq(halo_fut_join(halo_chan_recv(&ch, &m)), 0);
	halo_chan_destroy(&ch, NULL, NULL);
}
END_TEST

START_TEST(test_cancelled_send_withdraws_its_message)
{
	halo_chan ch;
	halo_chan_opts o = {.cap = 1};
	halo_chan_msg m;
	halo_fut *a, *b;

	ck_assert_int_eq(halo_chan_init(&ch, &loop, &o), 0);
	halo_chan_try_send(&ch, 1, NULL);
	a = halo_chan_send(&ch, 2, NULL);
	b = halo_chan_send(&ch, 3, NULL);
	ck_assert_int_eq(halo_fut_cancel(a), 0);
	ck_assert_int_eq(halo_fut_join(a), -ECANCELED);
	ck_assert_int_eq(halo_chan_try_recv(&ch, &m), 1);
	ck_assert_int_eq(halo_chan_try_recv(&ch, &m), 1);
	ck_assert_int_eq(m.v, 3);
	ck_assert_int_eq(halo_fut_join(b), 0);
	halo_chan_destroy(&ch, NULL, NULL);
}
END_TEST

START_TEST(test_waiters_are_bounded)
{
	halo_chan ch;
	halo_chan_opts o = {.cap = 1, .max_waiters = 2};
	halo_chan_msg m[3];
	halo_fut *r[3];

	ck_assert_int_eq(halo_chan_init(&ch, &loop, &o), 0);
	for (int i = 0; i < 3; i++)
		r[i] = halo_chan_recv(&ch, &m[i]);
	ck_assert_int_eq(halo_fut_wait(r[2]), -EAGAIN);
	halo_chan_destroy(&ch, NULL, NULL);
	for (int i = 0; i < 3; i++)
		halo_fut_join(r[i]);
}
END_TEST

static halo_chan pp;

static int64_t ping(halo_loop *l, void *arg)
{
	halo_chan_msg m;
	int64_t sum = 0;

	(void)l;
	(void)arg;
	while (halo_fut_join(halo_chan_recv(&pp, &m)) == 1)
		sum += m.v;
	return sum;
}

static int64_t pong(halo_loop *l, void *arg)
{
	(void)l;
	(void)arg;
	for (int i = 1; i <= 1000; i++)
		if (halo_fut_join(halo_chan_send(&pp, i, NULL)) < 0)
			return -EPIPE;
	halo_chan_close(&pp);
	return 0;
}

START_TEST(test_fibers_pass_a_thousand_messages_through_four_slots)
{
	halo_chan_opts o = {.cap = 4};
	halo_fut *c1, *c2, *p;

	ck_assert_int_eq(halo_chan_init(&pp, &loop, &o), 0);
	c1 = halo_spawn(&loop, ping, NULL);
	c2 = halo_spawn(&loop, ping, NULL);
	p = halo_spawn(&loop, pong, NULL);
	ck_assert_int_eq(halo_fut_join(p), 0);
	ck_assert_int_eq(halo_fut_join(c1) + halo_fut_join(c2), 500500);
	halo_chan_destroy(&pp, NULL, NULL);
}
END_TEST

static int dropped;
static void count_drop(halo_chan_msg *m, void *arg)
{
	(void)m;
	(void)arg;
	dropped++;
}

START_TEST(test_destroy_hands_buffered_messages_to_drop)
{
	halo_chan ch;

	dropped = 0;
	ck_assert_int_eq(halo_chan_init(&ch, &loop, NULL), 0);
	halo_chan_try_send(&ch, 1, NULL);
	halo_chan_try_send(&ch, 2, NULL);
	halo_chan_destroy(&ch, count_drop, NULL);
	ck_assert_int_eq(dropped, 2);
}
END_TEST

Suite *chan_suite(void)
{
	Suite *s = suite_create("chan");
	TCase *tc = tcase_create("chan");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(10));
	tcase_add_test(tc, test_try_calls_are_fifo_and_respect_the_credit);
	tcase_add_test(tc, test_send_waits_while_full_and_keeps_order);
	tcase_add_test(tc,
		       test_recv_waits_while_empty_and_gets_the_end_on_close);
	tcase_add_test(
	    tc, test_close_fails_blocked_senders_and_receivers_drain_first);
	tcase_add_test(tc, test_cancelled_send_withdraws_its_message);
	tcase_add_test(tc, test_waiters_are_bounded);
	tcase_add_test(tc,
		       test_fibers_pass_a_thousand_messages_through_four_slots);
	tcase_add_test(tc, test_destroy_hands_buffered_messages_to_drop);
	suite_add_tcase(s, tc);
	return s;
}
