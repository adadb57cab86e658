/* Loop groups: a million messages ping-ponged in order, calls and their
 * outcomes, cancellation across loops, backpressure, stop in the middle of
 * traffic, messages to a stopped loop, pinning and the leak sum; each over
 * MSG_RING and over the eventfd fallback. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>

#include "tests/util.h"

/* The doorbell the tcase runs with: 0 (MSG_RING) or HALO_FEAT_MSG_RING
 * switched off (the eventfd fallback). */
static unsigned feat_off;
static int fds_before;

static void setup_msg_ring(void)
{
	feat_off = 0;
	fds_before = tu_count_fds();
}

static void setup_fallback(void)
{
	feat_off = HALO_FEAT_MSG_RING;
	fds_before = tu_count_fds();
}

static void teardown(void)
{
	ck_assert_int_eq(tu_count_fds(), fds_before);
}

static halo_group_opts opts2(halo_group_init_fn init, void *arg)
{
	halo_group_opts o = {.count = 2, .init = init, .arg = arg};

	o.loop.features_off = feat_off;
	return o;
}

static void sem_wait_s(sem_t *s, int seconds)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += tu_timeout(seconds);
	ck_assert_int_eq(sem_timedwait(s, &ts), 0);
}

static int64_t take(halo_fut *f)
{
	int64_t r = halo_fut_result(f);

	halo_fut_release(f);
	return r;
}

/* --- one million messages, ping-ponged in order --- */

#define PP_N 1000000

static struct pp {
	uint64_t sent, echoed;		      /* loop 0 */
	int waiting0;			      /* a room future is pending */
	_Alignas(64) uint64_t got, echo_next; /* loop 1 */
	int waiting1;
	_Atomic int bad;
	sem_t done;
} pp;

static void ping_pump(halo_loop *l);
static void echo_pump(halo_loop *l);

/* No ck_assert on the message path: each passing one is a write to
 * Check's log, which would dominate the test's time. */
static void ping_room(halo_fut *f, void *arg)
{
	if (take(f) != 0)
		pp.bad++;
	pp.waiting0 = 0;
	ping_pump(arg);
}

static void echo_room(halo_fut *f, void *arg)
{
	if (take(f) != 0)
		pp.bad++;
	pp.waiting1 = 0;
	echo_pump(arg);
}

static void on_echo(halo_loop *l, void *arg)
{
	(void)l;
	if ((uint64_t)(uintptr_t)arg != pp.echoed)
		pp.bad++;
	if (++pp.echoed == PP_N)
		sem_post(&pp.done);
}

static void echo_pump(halo_loop *l)
{
	while (pp.echo_next < pp.got) {
		int r = halo_group_post(l, 0, on_echo,
					(void *)(uintptr_t)pp.echo_next);

		if (r == -EAGAIN) {
			if (!pp.waiting1) {
				pp.waiting1 = 1;
				halo_fut_on_done(halo_group_room(l, 0),
						 echo_room, l);
			}
			return;
		}
		if (r != 0)
			pp.bad++;
		pp.echo_next++;
	}
}

static void on_ping(halo_loop *l, void *arg)
{
	if ((uint64_t)(uintptr_t)arg != pp.got)
		pp.bad++;
	pp.got++;
	if (!pp.waiting1)
		echo_pump(l);
}

static void ping_pump(halo_loop *l)
{
	while (pp.sent < PP_N) {
		int r =
		    halo_group_post(l, 1, on_ping, (void *)(uintptr_t)pp.sent);

		if (r == -EAGAIN) {
			pp.waiting0 = 1;
			halo_fut_on_done(halo_group_room(l, 1), ping_room, l);
			return;
		}
		if (r != 0)
			pp.bad++;
		pp.sent++;
	}
}

static int pp_init(halo_group *g, halo_loop *l, unsigned i, void *arg)
{
	(void)g;
	(void)arg;
	if (i == 0)
		ping_pump(l);
	return 0;
}

START_TEST(test_million_messages_ping_pong_in_order_none_lost)
{
	halo_group_opts o = opts2(pp_init, NULL);
	halo_group_stats st0, st1;
	halo_group *g;

	memset(&pp, 0, sizeof(pp));
	sem_init(&pp.done, 0, 0);
	ck_assert_int_eq(halo_group_start(&g, &o), 0);
	ck_assert_int_eq(halo_group_uses_msg_ring(g), feat_off == 0);
	sem_wait_s(&pp.done, 60);
	halo_group_stats_get(g, 0, &st0);
	halo_group_stats_get(g, 1, &st1);
	ck_assert_int_eq(halo_group_stop(g), 0);
	ck_assert_int_eq(pp.bad, 0);
	ck_assert_uint_eq(pp.got, PP_N);
	ck_assert_uint_eq(pp.echoed, PP_N);
	ck_assert_uint_eq(st0.posted, PP_N);
	ck_assert_uint_eq(st1.received, PP_N);
	/* One doorbell per batch, not per message. */
	ck_assert_uint_lt(st0.bells, PP_N);
	ck_assert_uint_lt(st1.bells, PP_N);
	sem_destroy(&pp.done);
}
END_TEST

/* --- calls --- */

static struct calls {
	halo_group *g;
	int64_t ready, delayed, failed, null, self, bad_index;
	int failed_state;
	void *value;
	int ran_on, ran_on_self;
	pthread_t caller, callee;
} cl;

static int marker;

static halo_fut *fn_ready(halo_loop *l, void *arg)
{
	cl.ran_on = halo_group_index(l);
	cl.callee = pthread_self();
	return halo_fut_ready(l, 42, arg);
}

static halo_fut *fn_delayed(halo_loop *l, void *arg)
{
	(void)arg;
	return halo_fut_delayed(l, 1000000, 7, NULL);
}

static halo_fut *fn_failed(halo_loop *l, void *arg)
{
	(void)arg;
	return halo_fut_failed(l, -EPROTO, "bad");
}

static halo_fut *fn_null(halo_loop *l, void *arg)
{
	(void)l;
	(void)arg;
	return NULL;
}

static halo_fut *fn_self(halo_loop *l, void *arg)
{
	(void)arg;
	cl.ran_on_self = halo_group_index(l);
	return halo_fut_ready(l, 5, NULL);
}

static int calls_init(halo_group *g, halo_loop *l, unsigned i, void *arg)
{
	halo_fut *f;

	(void)arg;
	if (i != 0)
		return 0;
	cl.g = g;
	cl.caller = pthread_self();
	f = halo_group_call(l, 1, fn_ready, &marker);
	cl.ready = halo_fut_wait(f);
	cl.value = halo_fut_value(f);
	halo_fut_release(f);
	cl.delayed = halo_fut_join(halo_group_call(l, 1, fn_delayed, NULL));
	f = halo_group_call(l, 1, fn_failed, NULL);
	cl.failed = halo_fut_wait(f);
	cl.failed_state = halo_fut_status(f);
	halo_fut_release(f);
	cl.null = halo_fut_join(halo_group_call(l, 1, fn_null, NULL));
	cl.self = halo_fut_join(halo_group_call(l, 0, fn_self, NULL));
	cl.bad_index = halo_fut_join(halo_group_call(l, 2, fn_ready, NULL));
	return 0;
}

START_TEST(test_call_completes_with_the_outcome_of_fn_on_the_target)
{
	halo_group_opts o = opts2(calls_init, NULL);
	halo_group *g;

	memset(&cl, 0, sizeof(cl));
	ck_assert_int_eq(halo_group_start(&g, &o), 0);
	ck_assert_int_eq(halo_group_stop(g), 0);
	ck_assert_int_eq(cl.ready, 42);
	ck_assert_ptr_eq(cl.value, &marker);
	ck_assert_int_eq(cl.ran_on, 1);
	ck_assert(!pthread_equal(cl.caller, cl.callee));
	ck_assert_int_eq(cl.delayed, 7);
	ck_assert_int_eq(cl.failed, -EPROTO);
	ck_assert_int_eq(cl.failed_state, HALO_FUT_ERROR);
	ck_assert_int_eq(cl.null, -ENOMEM);
	ck_assert_int_eq(cl.self, 5);
	ck_assert_int_eq(cl.ran_on_self, 0);
	ck_assert_int_eq(cl.bad_index, -EINVAL);
}
END_TEST

/* Histograms stamp each SQE as it leaves; the group's doorbells carry
 * reserved tags, which name no op (a loop with histograms on took one for
 * an op pointer and crashed). */
START_TEST(test_calls_between_loops_that_keep_histograms)
{
	halo_group_opts o = opts2(calls_init, NULL);
	halo_group *g;

	memset(&cl, 0, sizeof(cl));
	o.loop.hist = 1;
	ck_assert_int_eq(halo_group_start(&g, &o), 0);
	ck_assert_int_eq(halo_group_stop(g), 0);
	ck_assert_int_eq(cl.ready, 42);
	ck_assert_int_eq(cl.delayed, 7);
	ck_assert_int_eq(cl.ran_on, 1);
}
END_TEST

/* --- cancellation across loops --- */

static struct cx {
	halo_fut *hung; /* loop 1's */
	_Atomic int target_cancelled;
	int64_t by_target, by_caller;
	int by_target_state, by_caller_state;
	int waited_ms, pending_before;
	_Atomic int started;
} cx;

static void cancel_hung(halo_fut *t, void *arg)
{
	(void)arg;
	take(t);
	halo_fut_cancel(cx.hung);
}

/* fn's future is cancelled on the target, by the target. */
static halo_fut *fn_cancelled_there(halo_loop *l, void *arg)
{
	(void)arg;
	cx.hung = halo_fut_new(l);
	halo_fut_on_done(halo_fut_delayed(l, 2000000, 0, NULL), cancel_hung,
			 NULL);
	return cx.hung;
}

static void on_target_cancel(halo_fut *f, void *arg)
{
	(void)arg;
	cx.target_cancelled = 1;
	halo_fut_cancelled(f);
}

/* fn's future only ends when someone cancels it. */
static halo_fut *fn_until_cancelled(halo_loop *l, void *arg)
{
	halo_fut *f = halo_fut_new(l);

	(void)arg;
	halo_fut_set_cancel(f, on_target_cancel, NULL);
	cx.started = 1;
	return f;
}

static int cancel_init(halo_group *g, halo_loop *l, unsigned i, void *arg)
{
	halo_fut *f;

	(void)g;
	(void)arg;
	if (i != 0)
		return 0;
	f = halo_group_call(l, 1, fn_cancelled_there, NULL);
	cx.by_target = halo_fut_wait(f);
	cx.by_target_state = halo_fut_status(f);
	halo_fut_release(f);

	f = halo_group_call(l, 1, fn_until_cancelled, NULL);
	/* A call cancelled before it ran never runs: wait until it runs. */
	while (!cx.started && cx.waited_ms++ < 10000)
		halo_sleep(l, 1000000);
	cx.pending_before = !halo_fut_is_done(f);
	halo_fut_cancel(f);
	cx.by_caller_state = halo_fut_status(f); /* at once */
	cx.by_caller = take(f);
	while (!cx.target_cancelled && cx.waited_ms < 10000) {
		halo_sleep(l, 1000000);
		cx.waited_ms++;
	}
	return 0;
}

START_TEST(test_call_whose_target_is_cancelled)
{
	halo_group_opts o = opts2(cancel_init, NULL);
	halo_group *g;

	memset(&cx, 0, sizeof(cx));
	ck_assert_int_eq(halo_group_start(&g, &o), 0);
	ck_assert_int_eq(halo_group_stop(g), 0);
	/* Cancelled where it runs: the caller sees CANCELLED. */
	ck_assert_int_eq(cx.by_target, -ECANCELED);
	ck_assert_int_eq(cx.by_target_state, HALO_FUT_CANCELLED);
	/* Cancelled by the caller: CANCELLED at once, and the target's
	 * future is cancelled too. */
	ck_assert_int_eq(cx.pending_before, 1);
	ck_assert_int_eq(cx.by_caller_state, HALO_FUT_CANCELLED);
	ck_assert_int_eq(cx.by_caller, -ECANCELED);
	ck_assert_int_eq(cx.target_cancelled, 1);
}
END_TEST

/* --- backpressure --- */

static struct bp {
	sem_t hold;
	int posts[6];
	int64_t call_full, room, posts_ran, call_after;
	int room_pending;
	int ran;
} bp;

static void bp_msg(halo_loop *l, void *arg)
{
	(void)l;
	(void)arg;
	bp.ran++;
}

static halo_fut *bp_count(halo_loop *l, void *arg)
{
	(void)arg;
	return halo_fut_ready(l, bp.ran, NULL);
}

static int bp_init(halo_group *g, halo_loop *l, unsigned i, void *arg)
{
	halo_fut *room;

	(void)g;
	(void)arg;
	if (i == 1) { /* loop 1 takes nothing until loop 0 lets it */
		sem_wait(&bp.hold);
		return 0;
	}
	for (int k = 0; k < 5; k++)
		bp.posts[k] = halo_group_post(l, 1, bp_msg, NULL);
	bp.call_full = halo_fut_join(halo_group_call(l, 1, bp_count, NULL));
	room = halo_group_room(l, 1);
	halo_sleep(l, 5000000);
	bp.room_pending = !halo_fut_is_done(room);
	sem_post(&bp.hold);
	bp.room = halo_fut_join(room);
	bp.posts[5] = halo_group_post(l, 1, bp_msg, NULL);
	/* Calls run after the posts sent before them. */
	bp.call_after = halo_fut_join(halo_group_call(l, 1, bp_count, NULL));
	return 0;
}

START_TEST(test_in_flight_bounded_post_eagain_then_room)
{
	halo_group_opts o = opts2(bp_init, NULL);
	halo_group *g;

	memset(&bp, 0, sizeof(bp));
	sem_init(&bp.hold, 0, 0);
	o.pair_inflight = 3; /* rounded up to 4 */
	ck_assert_int_eq(halo_group_start(&g, &o), 0);
	ck_assert_int_eq(halo_group_stop(g), 0);
	for (int k = 0; k < 4; k++)
		ck_assert_int_eq(bp.posts[k], 0);
	ck_assert_int_eq(bp.posts[4], -EAGAIN);
	ck_assert_int_eq(bp.call_full, -EAGAIN);
	ck_assert_int_eq(bp.room_pending, 1);
	ck_assert_int_eq(bp.room, 0);
	ck_assert_int_eq(bp.posts[5], 0);
	ck_assert_int_eq(bp.call_after, 5);
	sem_destroy(&bp.hold);
}
END_TEST

/* --- stop in the middle of traffic --- */

static struct mt {
	uint64_t accepted, calls, calls_ok, calls_shut, calls_other;
	_Atomic uint64_t ran;
	_Atomic int ran_after_close;
	int refused, waiting, ended, bad;
	sem_t busy;
} mt;

static void mt_pump(halo_loop *l);

static void mt_msg(halo_loop *l, void *arg)
{
	(void)l;
	(void)arg;
	if (halo_group_state(halo_group_self(NULL), 1) == HALO_GROUP_CLOSED)
		mt.ran_after_close++;
	if (++mt.ran == 20000)
		sem_post(&mt.busy);
}

static halo_fut *mt_fn(halo_loop *l, void *arg)
{
	mt_msg(l, arg);
	return halo_fut_ready(l, 1, NULL);
}

static void mt_call_done(halo_fut *f, void *arg)
{
	int64_t r = take(f);

	(void)arg;
	if (r == 1)
		mt.calls_ok++;
	else if (r == -ESHUTDOWN)
		mt.calls_shut++;
	else
		mt.calls_other++;
}

static void mt_room(halo_fut *f, void *arg)
{
	int64_t r = take(f);

	mt.waiting = 0;
	if (r == -ESHUTDOWN) {
		mt.ended = 1;
		return;
	}
	mt_pump(arg);
}

static void mt_pump(halo_loop *l)
{
	while (!mt.ended) {
		int r;

		if (mt.accepted % 16 == 15) {
			halo_fut *f = halo_group_call(l, 1, mt_fn, NULL);

			r = halo_fut_is_done(f) ? (int)halo_fut_result(f) : 0;
			if (r == 0) {
				mt.calls++;
				halo_fut_on_done(f, mt_call_done, NULL);
			} else {
				halo_fut_release(f);
			}
		} else {
			r = halo_group_post(l, 1, mt_msg, NULL);
		}
		if (r == -EAGAIN) {
			mt.waiting = 1;
			halo_fut_on_done(halo_group_room(l, 1), mt_room, l);
			return;
		}
		if (r == -ESHUTDOWN) {
			mt.refused++;
			mt.ended = 1;
			return;
		}
		if (r != 0)
			mt.bad++;
		mt.accepted++;
	}
}

static int mt_init(halo_group *g, halo_loop *l, unsigned i, void *arg)
{
	(void)g;
	(void)arg;
	if (i == 0)
		mt_pump(l);
	return 0;
}

START_TEST(test_stop_mid_traffic_loses_nothing_runs_nothing_after_close)
{
	halo_group_opts o = opts2(mt_init, NULL);
	halo_group *g;

	memset(&mt, 0, sizeof(mt));
	sem_init(&mt.busy, 0, 0);
	ck_assert_int_eq(halo_group_start(&g, &o), 0);
	sem_wait_s(&mt.busy, 30);
	ck_assert_int_eq(halo_group_stop(g), 0);
	/* Every message the sender had accepted ran, once; none later. */
	ck_assert_uint_eq(mt.accepted, mt.ran);
	ck_assert_int_eq(mt.ran_after_close, 0);
	ck_assert_int_eq(mt.ended, 1);
	ck_assert_uint_eq(mt.calls, mt.calls_ok + mt.calls_shut);
	ck_assert_uint_eq(mt.calls_other, 0);
	ck_assert_int_eq(mt.bad, 0);
	ck_assert_uint_gt(mt.calls_ok, 0);
	sem_destroy(&mt.busy);
}
END_TEST

/* --- messages to a loop that stopped --- */

static struct sd {
	halo_fut *hung, *stop;
	int post, room_state;
	int64_t call, room, hung_res;
	int polls;
} sd;

static halo_fut *fn_forever(halo_loop *l, void *arg)
{
	(void)arg;
	return halo_fut_new(l); /* ends when the stop cancels it */
}

static void sd_poll(halo_fut *t, void *arg)
{
	halo_loop *l = arg;

	take(t);
	if (halo_group_state(halo_group_self(NULL), 1) != HALO_GROUP_CLOSED &&
	    ++sd.polls < 10000) {
		halo_fut_on_done(halo_fut_delayed(l, 1000000, 0, NULL), sd_poll,
				 l);
		return;
	}
	sd.post = halo_group_post(l, 1, bp_msg, NULL);
	sd.call = take(halo_group_call(l, 1, fn_ready, NULL));
	sd.room = take(halo_group_room(l, 1));
	sd.hung_res = halo_fut_is_done(sd.hung) ? halo_fut_result(sd.hung) : 1;
	halo_fut_release(sd.hung);
	halo_fut_resolve(sd.stop, 0, NULL);
}

/* Loop 0 stays up until loop 1 has closed, then sends to it. */
static halo_fut *sd_on_stop(halo_group *g, halo_loop *l, unsigned i, void *arg)
{
	(void)g;
	(void)arg;
	if (i != 0)
		return NULL;
	sd.stop = halo_fut_new(l);
	halo_fut_on_done(halo_fut_delayed(l, 1000000, 0, NULL), sd_poll, l);
	return sd.stop;
}

static int sd_init(halo_group *g, halo_loop *l, unsigned i, void *arg)
{
	(void)g;
	(void)arg;
	if (i == 0)
		sd.hung = halo_group_call(l, 1, fn_forever, NULL);
	return 0;
}

START_TEST(test_message_to_stopped_loop_fails_eshutdown_at_sender)
{
	halo_group_opts o = opts2(sd_init, NULL);
	halo_group *g;

	memset(&sd, 0, sizeof(sd));
	o.on_stop = sd_on_stop;
	ck_assert_int_eq(halo_group_start(&g, &o), 0);
	ck_assert_int_eq(halo_group_stop(g), 0);
	ck_assert_int_lt(sd.polls, 10000);
	ck_assert_int_eq(sd.post, -ESHUTDOWN);
	ck_assert_int_eq(sd.call, -ESHUTDOWN);
	ck_assert_int_eq(sd.room, -ESHUTDOWN);
	/* The call it still served when it stopped was cancelled there. */
	ck_assert_int_eq(sd.hung_res, -ECANCELED);
}
END_TEST

/* --- threads, CPUs, self, the leak sum --- */

static struct th {
	halo_group *self[2];
	unsigned idx[2];
	int index_of[2];
	int cpu_ok[2];
	pthread_t tid[2];
} th;

static int th_init(halo_group *g, halo_loop *l, unsigned i, void *arg)
{
	const int *cpus = arg;
	cpu_set_t set;

	th.self[i] = halo_group_self(&th.idx[i]);
	th.index_of[i] = halo_group_index(l);
	th.tid[i] = pthread_self();
	CPU_ZERO(&set);
	pthread_getaffinity_np(pthread_self(), sizeof(set), &set);
	th.cpu_ok[i] = CPU_COUNT(&set) == 1 && CPU_ISSET(cpus[i], &set) &&
		       sched_getcpu() == cpus[i] && th.self[i] == g;
	/* A future nobody consumes: reported by this loop's close. */
	(void)halo_fut_new(l);
	return 0;
}

START_TEST(test_loops_pinned_know_themselves_leaks_summed)
{
	static int cpus[2];
	halo_group_opts o = opts2(th_init, cpus);
	halo_group *g;
	cpu_set_t set;
	int n = 0;

	memset(&th, 0, sizeof(th));
	ck_assert_int_eq(sched_getaffinity(0, sizeof(set), &set), 0);
	for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
		if (CPU_ISSET(c, &set))
			cpus[n++] = c;
	if (n == 1)
		cpus[1] = cpus[0];
	o.cpus = cpus;
	o.cpus_n = 2;
	ck_assert_int_eq(halo_group_start(&g, &o), 0);
	ck_assert_uint_eq(halo_group_size(g), 2);
	ck_assert_ptr_null(halo_group_self(NULL));
	ck_assert_int_eq(halo_group_index(NULL), -1);
	ck_assert_int_eq(halo_group_stop(g), 2);
	for (int i = 0; i < 2; i++) {
		ck_assert_uint_eq(th.idx[i], i);
		ck_assert_int_eq(th.index_of[i], i);
		ck_assert_int_eq(th.cpu_ok[i], 1);
	}
	ck_assert(!pthread_equal(th.tid[0], th.tid[1]));
}
END_TEST

static int failing_init(halo_group *g, halo_loop *l, unsigned i, void *arg)
{
	(void)g;
	(void)l;
	(void)arg;
	return i == 1 ? -EIO : 0;
}

START_TEST(test_failed_init_fails_start_and_stops_every_loop)
{
	halo_group_opts o = opts2(failing_init, NULL);
	static const int bad_cpu[1] = {-1};
	halo_group *g = (halo_group *)&o;

	ck_assert_int_eq(halo_group_start(&g, &o), -EIO);
	ck_assert_ptr_null(g);
	o.cpus = bad_cpu;
	o.cpus_n = 1;
	ck_assert_int_eq(halo_group_start(&g, &o), -EINVAL);
	o.cpus = NULL;
	o.pair_inflight = 1u << 20;
	ck_assert_int_eq(halo_group_start(&g, &o), -EINVAL);
}
END_TEST

/* --- a server over two loops --- */

#define SV_CLIENTS 32

static struct sv {
	int lfd[2];
	int handoff;
	halo_server *s[2];
	halo_fut *stopped[2];
	halo_server_stats st[2];
} sv;

static size_t sv_echo(halo_conn *c, const char *d, size_t n, void *arg)
{
	(void)arg;
	halo_conn_write(c, d, n);
	return n;
}

static const halo_conn_cbs sv_cbs = {.on_data = sv_echo};

static int sv_init(halo_group *g, halo_loop *l, unsigned i, void *arg)
{
	halo_server_opts so = {.cbs = &sv_cbs, .ring_bufs = 64};
	int err = 0;

	(void)g;
	(void)arg;
	if (sv.handoff) {
		so.handoff = 1;
		sv.s[i] = i == 0 ? halo_server_start_fd(l, sv.lfd[0], &so, &err)
				 : halo_server_start_peer(l, &so, &err);
	} else {
		sv.s[i] = halo_server_start_fd(l, sv.lfd[i], &so, &err);
	}
	return sv.s[i] ? 0 : err;
}

static void sv_stopped(halo_fut *f, void *arg)
{
	unsigned i = (unsigned)(uintptr_t)arg;

	take(f);
	halo_server_stats_get(sv.s[i], &sv.st[i]);
	halo_server_free(sv.s[i]);
	halo_fut_resolve(sv.stopped[i], 0, NULL);
}

/* The group waits for the server's drain, then frees it on its loop. */
static halo_fut *sv_on_stop(halo_group *g, halo_loop *l, unsigned i, void *arg)
{
	(void)g;
	(void)arg;
	sv.stopped[i] = halo_fut_new(l);
	halo_fut_on_done(halo_server_stop(sv.s[i], 100000000ull), sv_stopped,
			 (void *)(uintptr_t)i);
	return sv.stopped[i];
}

static int sv_client(int port, int k)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	char out[16], in[16];
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int n = snprintf(out, sizeof(out), "ping %d", k), got = 0;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(write(fd, out, (size_t)n), n);
	while (got < n) {
		ssize_t r = read(fd, in + got, (size_t)(n - got));

		ck_assert_int_gt(r, 0);
		got += (int)r;
	}
	ck_assert(!memcmp(in, out, (size_t)n));
	return fd;
}

static void sv_run(int handoff)
{
	halo_group_opts o = opts2(sv_init, NULL);
	halo_listen_opts lo = {.reuseport = !handoff};
	halo_group *g;
	int port, fds[SV_CLIENTS];

	memset(&sv, 0, sizeof(sv));
	sv.handoff = handoff;
	o.on_stop = sv_on_stop;
	sv.lfd[0] = halo_net_listen("127.0.0.1", 0, &lo);
	ck_assert_int_ge(sv.lfd[0], 0);
	port = halo_net_local_port(sv.lfd[0]);
	sv.lfd[1] =
	    handoff ? -1 : halo_net_listen("127.0.0.1", (uint16_t)port, &lo);
	ck_assert_int_eq(halo_group_start(&g, &o), 0);
	for (int k = 0; k < SV_CLIENTS; k++)
		fds[k] = sv_client(port, k);
	for (int k = 0; k < SV_CLIENTS; k++)
		close(fds[k]);
	ck_assert_int_eq(halo_group_stop(g), 0);
	close(sv.lfd[0]);
	if (sv.lfd[1] >= 0)
		close(sv.lfd[1]);
}

START_TEST(test_server_j2_reuseport_spreads_connections)
{
	sv_run(0);
	ck_assert_uint_eq(sv.st[0].accepted + sv.st[1].accepted, SV_CLIENTS);
	/* The kernel hashes 32 connections over two listeners. */
	ck_assert_uint_gt(sv.st[0].accepted, 0);
	ck_assert_uint_gt(sv.st[1].accepted, 0);
}
END_TEST

START_TEST(test_server_j2_acceptor_hands_to_least_loaded)
{
	sv_run(1);
	ck_assert_uint_eq(sv.st[0].accepted + sv.st[1].accepted, SV_CLIENTS);
	ck_assert_uint_eq(sv.st[1].adopted, sv.st[0].handed_off);
	ck_assert_uint_eq(sv.st[1].accepted, sv.st[1].adopted);
	/* Clients stay connected, so the least loaded loop alternates. */
	ck_assert_uint_ge(sv.st[0].accepted, SV_CLIENTS / 2 - 4);
	ck_assert_uint_ge(sv.st[1].accepted, SV_CLIENTS / 2 - 4);
}
END_TEST

static int kernel_has_msg_ring(void)
{
	halo_loop l;
	int has;

	if (halo_loop_init(&l, NULL) < 0)
		return 0;
	has = (halo_loop_features(&l) & HALO_FEAT_MSG_RING) != 0;
	halo_loop_close(&l);
	return has;
}

static void add_tests(TCase *tc)
{
	tcase_add_test(tc, test_million_messages_ping_pong_in_order_none_lost);
	tcase_add_test(
	    tc, test_call_completes_with_the_outcome_of_fn_on_the_target);
	tcase_add_test(tc, test_calls_between_loops_that_keep_histograms);
	tcase_add_test(tc, test_call_whose_target_is_cancelled);
	tcase_add_test(tc, test_in_flight_bounded_post_eagain_then_room);
	tcase_add_test(
	    tc, test_stop_mid_traffic_loses_nothing_runs_nothing_after_close);
	tcase_add_test(tc,
		       test_message_to_stopped_loop_fails_eshutdown_at_sender);
	tcase_add_test(tc, test_server_j2_reuseport_spreads_connections);
	tcase_add_test(tc, test_server_j2_acceptor_hands_to_least_loaded);
}

Suite *group_suite(void)
{
	Suite *s = suite_create("group");
	TCase *tc;

	if (kernel_has_msg_ring()) {
		tc = tcase_create("msg_ring");
		tcase_add_checked_fixture(tc, setup_msg_ring, teardown);
		tcase_set_timeout(tc, tu_timeout(60));
		add_tests(tc);
		tcase_add_test(tc,
			       test_loops_pinned_know_themselves_leaks_summed);
		tcase_add_test(
		    tc, test_failed_init_fails_start_and_stops_every_loop);
		suite_add_tcase(s, tc);
	} else {
		printf("group: the kernel lacks IORING_OP_MSG_RING; only the "
		       "eventfd fallback is tested\n");
	}
	tc = tcase_create("fallback");
	tcase_add_checked_fixture(tc, setup_fallback, teardown);
	tcase_set_timeout(tc, tu_timeout(60));
	add_tests(tc);
	suite_add_tcase(s, tc);
	return s;
}
