/* The send ring against a real 127.0.0.1 peer, each test run with send
 * bundles asked for and forced off (_i == 0: the sendmsg path) or on where
 * the kernel has them (_i == 1): order across many buffers, backpressure of
 * a full ring, a peer reset mid-send, close with a send in flight. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/util.h"

TU_FDS_FIXTURE(loop)

/* What the peer has read, checked against the pattern as it comes. */
struct peer {
	int fd;
	size_t got;
	size_t bad_at; /* 1 + offset of the first wrong byte, 0 if none */
};

static void peer_read(struct peer *p, int flags)
{
	unsigned char in[65536];
	ssize_t n = recv(p->fd, in, sizeof(in), flags);

	for (ssize_t i = 0; i < n; i++)
		if (in[i] != tu_pattern_at(p->got + (size_t)i) && !p->bad_at)
			p->bad_at = p->got + (size_t)i + 1;
	if (n > 0)
		p->got += (size_t)n;
}

static void sr_new(halo_sendring **sr, int fd, unsigned nbufs, size_t bsz)
{
	halo_sendring_opts o = {
	    .nbufs = nbufs, .buf_size = bsz, .flags = HALO_SENDRING_BUNDLE};
	halo_sendring_stats st;
	int err = 0;

	*sr = halo_sendring_new(&loop, fd, 3, &o, &err);
	ck_assert_msg(*sr != NULL, "halo_sendring_new: %d", err);
	halo_sendring_stats_get(*sr, &st);
	ck_assert_int_eq(st.is_bundle, (halo_loop_features(&loop) &
					HALO_FEAT_SEND_BUNDLE) != 0);
}

/* 2 MiB in writes of 1 to 3000 bytes through a ring of 16 buffers of 1 KiB:
 * writes span buffers, the ring fills over and over (refused writes wait
 * for room), and the peer reads every byte in order. With bundles a send
 * empties several buffers. */
START_TEST(test_writes_spanning_many_buffers_arrive_in_order)
{
	size_t total = 2u << 20, off = 0;
	unsigned char chunk[3000];
	halo_sendring_stats st;
	halo_sendring *sr;
	struct peer p = {0};
	halo_fut *f;
	int a;

	tu_loop_with(&loop, HALO_FEAT_SEND_BUNDLE, _i);
	tu_tcp_pair(&a, &p.fd, 0);
	sr_new(&sr, a, 16, 1024);
	srand(7);
	while (off < total) {
		size_t n = 1 + (size_t)rand() % sizeof(chunk);
		int r;

		if (n > total - off)
			n = total - off;
		for (size_t i = 0; i < n; i++)
			chunk[i] = tu_pattern_at(off + i);
		r = halo_sendring_write(sr, chunk, n);
		if (r == -ENOBUFS) {
			f = halo_sendring_wait_room(sr, n);
			ck_assert_ptr_nonnull(f);
			while (!halo_fut_is_done(f)) {
				halo_loop_run_nowait(&loop);
				peer_read(&p, MSG_DONTWAIT);
			}
			ck_assert_int_ge(halo_fut_result(f), (int64_t)n);
			halo_fut_release(f);
			continue;
		}
		ck_assert_int_eq(r, (int)n);
		off += n;
		if (rand() % 4 == 0)
			halo_loop_run_nowait(&loop);
	}
	f = halo_sendring_flush(sr);
	ck_assert_ptr_nonnull(f);
	while (!halo_fut_is_done(f)) {
		halo_loop_run_nowait(&loop);
		peer_read(&p, MSG_DONTWAIT);
	}
	ck_assert_int_eq(halo_fut_result(f), (int64_t)total);
	halo_fut_release(f);
	while (p.got < total)
		peer_read(&p, 0);
	ck_assert_uint_eq(p.got, total);
	ck_assert_uint_eq(p.bad_at, 0);
	halo_sendring_stats_get(sr, &st);
	ck_assert_uint_eq(st.bytes_in, total);
	ck_assert_uint_eq(st.bytes_out, total);
	ck_assert_uint_gt(st.refused, 0);
	ck_assert_uint_gt(st.bufs, st.sends); /* sends carry several */
	ck_assert_uint_eq(halo_sendring_close(sr), 0);
	close(a);
	close(p.fd);
	tu_loop_close(&loop);
}
END_TEST

/* 80000 buffers of 16 bytes through a ring of 16: the kernel's 16-bit ring
 * tail (and its head) wrap past 65535 while sends are in flight, and the
 * buffer ids still follow head; every byte arrives, in order. */
START_TEST(test_ring_tail_wraps_past_16_bits)
{
	size_t total = 80000u * 16, off = 0;
	unsigned char chunk[16];
	halo_sendring_stats st;
	halo_sendring *sr;
	struct peer p = {0};
	halo_fut *fl;
	int a;

	tu_loop_with(&loop, HALO_FEAT_SEND_BUNDLE, _i);
	tu_tcp_pair(&a, &p.fd, 0);
	sr_new(&sr, a, 16, 16);
	while (off < total) {
		int r;

		for (size_t i = 0; i < sizeof(chunk); i++)
			chunk[i] = tu_pattern_at(off + i);
		r = halo_sendring_write(sr, chunk, sizeof(chunk));
		if (r == -ENOBUFS) {
			halo_loop_run_nowait(&loop);
			peer_read(&p, MSG_DONTWAIT);
			continue;
		}
		ck_assert_int_eq(r, (int)sizeof(chunk));
		off += sizeof(chunk);
	}
	fl = halo_sendring_flush(sr);
	while (!halo_fut_is_done(fl)) {
		halo_loop_run_nowait(&loop);
		peer_read(&p, MSG_DONTWAIT);
	}
	ck_assert_int_eq(halo_fut_result(fl), (int64_t)total);
	halo_fut_release(fl);
	while (p.got < total)
		peer_read(&p, 0);
	ck_assert_uint_eq(p.got, total);
	ck_assert_uint_eq(p.bad_at, 0);
	halo_sendring_stats_get(sr, &st);
	ck_assert_uint_eq(st.bufs, 80000);
	ck_assert_uint_eq(halo_sendring_close(sr), 0);
	close(a);
	close(p.fd);
	tu_loop_close(&loop);
}
END_TEST

/* 1024 buffers of 64 bytes queued at once: more than the kernel takes in
 * one bundle (it imports a few hundred at a time) and as many iovecs as a
 * sendmsg takes. Every byte arrives, in order, over several sends or one. */
START_TEST(test_a_thousand_small_buffers_in_one_flush)
{
	unsigned char chunk[64];
	halo_sendring_stats st;
	halo_sendring *sr;
	struct peer p = {0};
	halo_fut *fl;
	int a;

	tu_loop_with(&loop, HALO_FEAT_SEND_BUNDLE, _i);
	tu_tcp_pair(&a, &p.fd, 0);
	sr_new(&sr, a, 1024, 64);
	for (size_t k = 0; k < 1024; k++) {
		for (size_t i = 0; i < sizeof(chunk); i++)
			chunk[i] = tu_pattern_at(k * sizeof(chunk) + i);
		ck_assert_int_eq(halo_sendring_write(sr, chunk, sizeof(chunk)),
				 (int)sizeof(chunk));
	}
	ck_assert_uint_eq(halo_sendring_room(sr), 0);
	fl = halo_sendring_flush(sr);
	ck_assert_int_eq(halo_fut_wait(fl), 64 << 10);
	halo_fut_release(fl);
	while (p.got < (64u << 10))
		peer_read(&p, 0);
	ck_assert_uint_eq(p.got, 64u << 10);
	ck_assert_uint_eq(p.bad_at, 0);
	halo_sendring_stats_get(sr, &st);
	ck_assert_uint_eq(st.bufs, 1024);
	ck_assert_uint_eq(halo_sendring_room(sr), 64u << 10);
	ck_assert_uint_eq(halo_sendring_close(sr), 0);
	close(a);
	close(p.fd);
	tu_loop_close(&loop);
}
END_TEST

static void *drain(void *arg)
{
	struct peer *p = arg;

	while (p->got < (64u << 12))
		peer_read(p, 0);
	return NULL;
}

static void *drain_n(void *arg)
{
	struct peer *p = arg;

	while (p->got < (1024u << 8)) {
		size_t before = p->got;

		peer_read(p, 0);
		if (p->got == before)
			break; /* EOF or error: the test sees the shortfall */
		usleep(200); /* a slow reader keeps every send partial */
	}
	return NULL;
}

/* 1024 buffers of 256 bytes queued at once, more than one bundle round
 * takes, to a slow reader behind a small send buffer: every round stops
 * short and goes on after the socket drains, and the next round starts
 * where the last one ended. Every byte arrives once, in order. */
START_TEST(test_rounds_after_partial_sends_neither_repeat_nor_skip)
{
	unsigned char chunk[256];
	int a, small = 4096;
	halo_sendring_stats st;
	halo_sendring *sr;
	struct peer p = {0};
	halo_fut *fl;
	pthread_t th;

	tu_loop_with(&loop, HALO_FEAT_SEND_BUNDLE, _i);
	tu_tcp_pair(&a, &p.fd, 0);
	setsockopt(a, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(p.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	sr_new(&sr, a, 1024, 256);
	for (size_t k = 0; k < 1024; k++) {
		for (size_t i = 0; i < sizeof(chunk); i++)
			chunk[i] = tu_pattern_at(k * sizeof(chunk) + i);
		ck_assert_int_eq(halo_sendring_write(sr, chunk, sizeof(chunk)),
				 (int)sizeof(chunk));
	}
	ck_assert_int_eq(pthread_create(&th, NULL, drain_n, &p), 0);
	fl = halo_sendring_flush(sr);
	ck_assert_int_eq(halo_fut_wait(fl), 1024 << 8);
	halo_fut_release(fl);
	shutdown(a, SHUT_WR); /* bytes sent twice would show past the end */
	pthread_join(th, NULL);
	{
		unsigned char extra[16];

		ck_assert_int_eq(recv(p.fd, extra, sizeof(extra), 0), 0);
	}
	ck_assert_uint_eq(p.got, 1024u << 8);
	ck_assert_uint_eq(p.bad_at, 0);
	halo_sendring_stats_get(sr, &st);
	ck_assert_uint_eq(st.bufs, 1024);
	ck_assert_uint_eq(halo_sendring_close(sr), 0);
	close(a);
	close(p.fd);
	tu_loop_close(&loop);
}
END_TEST

/* A small send buffer makes every send partial; the rest goes out from the
 * partial send's CQE, so a wait on the flush drives the loop to the end
 * instead of finding nothing in flight (-EDEADLK) between two sends. */
START_TEST(test_flush_wait_rides_partial_sends_to_the_end)
{
	unsigned char chunk[4096];
	int a, small = 4096;
	halo_sendring_stats st;
	halo_sendring *sr;
	struct peer p = {0};
	halo_fut *fl;
	pthread_t th;

	tu_loop_with(&loop, HALO_FEAT_SEND_BUNDLE, _i);
	tu_tcp_pair(&a, &p.fd, 0);
	setsockopt(a, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	sr_new(&sr, a, 64, 4096);
	for (size_t k = 0; k < 64; k++) {
		for (size_t i = 0; i < sizeof(chunk); i++)
			chunk[i] = tu_pattern_at(k * sizeof(chunk) + i);
		ck_assert_int_eq(halo_sendring_write(sr, chunk, sizeof(chunk)),
				 (int)sizeof(chunk));
	}
	ck_assert_int_eq(pthread_create(&th, NULL, drain, &p), 0);
	fl = halo_sendring_flush(sr);
	ck_assert_int_eq(halo_fut_wait(fl), 64 << 12);
	halo_fut_release(fl);
	pthread_join(th, NULL);
	ck_assert_uint_eq(p.got, 64u << 12);
	ck_assert_uint_eq(p.bad_at, 0);
	halo_sendring_stats_get(sr, &st);
	if (!st.is_bundle) /* a bundle sends with MSG_WAITALL: one send */
		ck_assert_uint_gt(st.sends, 1);
	ck_assert_uint_eq(halo_sendring_close(sr), 0);
	close(a);
	close(p.fd);
	tu_loop_close(&loop);
}
END_TEST

/* A full ring refuses a write whole (nothing copied), a write larger than
 * the ring never fits, and once the sends make room the refused bytes go
 * in: the peer reads exactly what was accepted, in order. */
START_TEST(test_full_ring_refuses_writes_and_loses_nothing)
{
	unsigned char chunk[300];
	halo_fut *room, *fl;
	halo_sendring *sr;
	struct peer p = {0};
	size_t off = 0;
	int a;

	tu_loop_with(&loop, HALO_FEAT_SEND_BUNDLE, _i);
	tu_tcp_pair(&a, &p.fd, 0);
	sr_new(&sr, a, 4, 256);
	ck_assert_uint_eq(halo_sendring_room(sr), 1024);
	for (int k = 0; k < 3; k++) {
		for (size_t i = 0; i < 300; i++)
			chunk[i] = tu_pattern_at(off + i);
		ck_assert_int_eq(halo_sendring_write(sr, chunk, 300), 300);
		off += 300;
	}
	for (size_t i = 0; i < 300; i++)
		chunk[i] = tu_pattern_at(off + i);
	ck_assert_int_eq(halo_sendring_write(sr, chunk, 300), -ENOBUFS);
	ck_assert_uint_eq(halo_sendring_room(sr), 124);
	ck_assert_int_eq(halo_sendring_write(sr, chunk, 2000), -EMSGSIZE);
	ck_assert_ptr_null(halo_sendring_wait_room(sr, 2000));
	room = halo_sendring_wait_room(sr, 300);
	ck_assert_ptr_nonnull(room);
	ck_assert(!halo_fut_is_done(room));
	while (!halo_fut_is_done(room))
		halo_loop_run_once(&loop);
	ck_assert_int_ge(halo_fut_result(room), 300);
	halo_fut_release(room);
	ck_assert_int_eq(halo_sendring_write(sr, chunk, 300), 300);
	off += 300;
	fl = halo_sendring_flush(sr);
	ck_assert_int_eq(halo_fut_wait(fl), (int64_t)off);
	halo_fut_release(fl);
	while (p.got < off)
		peer_read(&p, 0);
	ck_assert_uint_eq(p.got, off);
	ck_assert_uint_eq(p.bad_at, 0);
	ck_assert_uint_eq(halo_sendring_close(sr), 0);
	close(a);
	close(p.fd);
	tu_loop_close(&loop);
}
END_TEST

/* The peer stops reading, so a send stays in flight; then it resets the
 * connection. The failure reaches the flush once, later writes get the
 * same error at once, no further send is made, and close frees it all. */
START_TEST(test_peer_reset_mid_send_fails_once_and_frees)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	unsigned char chunk[4096];
	halo_sendring_stats st;
	halo_sendring *sr;
	int a, b, small = 4096;
	halo_fut *fl;
	int64_t r;

	tu_loop_with(&loop, HALO_FEAT_SEND_BUNDLE, _i);
	tu_tcp_pair(&a, &b, 0);
	setsockopt(a, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(b, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	sr_new(&sr, a, 64, 4096);
	memset(chunk, 'x', sizeof(chunk));
	for (int i = 0; i < 200 && halo_sendring_write(sr, chunk, 4096) > 0;
	     i++)
		halo_loop_run_nowait(&loop);
	for (int i = 0; i < 50; i++)
		halo_loop_run_nowait(&loop);
	ck_assert_uint_gt(tu_inflight(&loop), 0); /* stuck on a full socket */
	fl = halo_sendring_flush(sr);
	ck_assert_ptr_nonnull(fl);
	ck_assert_int_eq(setsockopt(b, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)),
			 0);
	close(b);
	r = halo_fut_wait(fl);
	ck_assert_msg(r == -ECONNRESET || r == -EPIPE, "flush: %lld",
		      (long long)r);
	halo_fut_release(fl);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	halo_sendring_stats_get(sr, &st);
	ck_assert_int_eq(halo_sendring_write(sr, chunk, 10), (int)r);
	ck_assert_uint_eq(halo_sendring_room(sr), 0);
	fl = halo_sendring_flush(sr);
	ck_assert_int_eq(halo_fut_wait(fl), r);
	halo_fut_release(fl);
	for (int i = 0; i < 5; i++)
		halo_loop_run_nowait(&loop);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	{
		halo_sendring_stats st2;

		halo_sendring_stats_get(sr, &st2);
		ck_assert_uint_eq(st2.sends, st.sends); /* nothing more */
	}
	ck_assert_uint_gt(halo_sendring_close(sr), 0);
	close(a);
	tu_loop_close(&loop);
}
END_TEST

/* Close with a send in flight on a full socket: the queued bytes are
 * dropped, waiters end cancelled, and the memory is freed at that send's
 * last CQE (the sanitizer build would see a use after free or a leak). */
START_TEST(test_close_with_a_send_in_flight)
{
	unsigned char chunk[4096];
	halo_sendring *sr;
	halo_fut *fl;
	int a, b, small = 4096;

	tu_loop_with(&loop, HALO_FEAT_SEND_BUNDLE, _i);
	tu_tcp_pair(&a, &b, 0);
	setsockopt(a, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(b, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	sr_new(&sr, a, 32, 4096);
	memset(chunk, 'y', sizeof(chunk));
	for (int i = 0; i < 100 && halo_sendring_write(sr, chunk, 4096) > 0;
	     i++)
		halo_loop_run_nowait(&loop);
	for (int i = 0; i < 50; i++)
		halo_loop_run_nowait(&loop);
	ck_assert_uint_gt(tu_inflight(&loop), 0);
	fl = halo_sendring_flush(sr);
	ck_assert_uint_gt(halo_sendring_close(sr), 0);
	ck_assert_int_eq(halo_fut_status(fl), HALO_FUT_CANCELLED);
	halo_fut_release(fl);
	for (int i = 0; i < 1000 && tu_inflight(&loop); i++)
		halo_loop_run_once(&loop);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	close(a);
	close(b);
	tu_loop_close(&loop);
}
END_TEST

struct writer {
	halo_sendring *sr;
	int64_t wait_res;
};

/* Writes the whole ring full from a fiber, then waits for its flush. */
static int64_t writer_fiber(halo_loop *l, void *arg)
{
	struct writer *w = arg;
	unsigned char chunk[4096];
	halo_fut *fl;

	(void)l;
	for (size_t k = 0; k < 32; k++) {
		for (size_t i = 0; i < sizeof(chunk); i++)
			chunk[i] = tu_pattern_at(k * sizeof(chunk) + i);
		if (halo_sendring_write(w->sr, chunk, sizeof(chunk)) < 0)
			return -EIO;
	}
	fl = halo_sendring_flush(w->sr);
	w->wait_res = halo_fut_wait(fl);
	halo_fut_release(fl);
	return 0;
}

/* A fiber that wrote into the ring is cancelled while its flush waits on a
 * peer that does not read: the ring's send is no fiber's (it was started
 * by the loop and outlives the writer), so the fiber ends at once, its
 * bytes still go out in order once the peer reads, and nothing leaks. */
START_TEST(test_cancelled_writer_fiber_leaves_the_ring_sending)
{
	int a, small = 4096;
	struct writer w = {0};
	struct peer p = {0};
	halo_fut *fb, *fl;
	pthread_t th;

	tu_loop_with(&loop, HALO_FEAT_SEND_BUNDLE, _i);
	tu_tcp_pair(&a, &p.fd, 0);
	setsockopt(a, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(p.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	sr_new(&w.sr, a, 32, 4096);
	fb = halo_spawn(&loop, writer_fiber, &w);
	ck_assert_ptr_nonnull(fb);
	for (int i = 0; i < 50; i++)
		halo_loop_run_nowait(&loop);
	ck_assert(!halo_fut_is_done(fb));
	ck_assert_uint_gt(tu_inflight(&loop), 0); /* the ring's send */
	halo_fut_cancel(fb);
	for (int i = 0; i < 1000 && !halo_fut_is_done(fb); i++)
		halo_loop_run_nowait(&loop);
	ck_assert_int_eq(halo_fut_status(fb), HALO_FUT_CANCELLED);
	ck_assert_int_eq(w.wait_res, -ECANCELED);
	halo_fut_release(fb);
	ck_assert_uint_gt(tu_inflight(&loop), 0); /* still sending */
	ck_assert_int_eq(pthread_create(&th, NULL, drain_n, &p), 0);
	fl = halo_sendring_flush(w.sr);
	ck_assert_int_eq(halo_fut_wait(fl), 32 << 12);
	halo_fut_release(fl);
	shutdown(a, SHUT_WR);
	pthread_join(th, NULL);
	ck_assert_uint_eq(p.got, 32u << 12);
	ck_assert_uint_eq(p.bad_at, 0);
	ck_assert_uint_eq(halo_sendring_close(w.sr), 0);
	close(a);
	close(p.fd);
	tu_loop_close(&loop);
}
END_TEST

/* A ring closed with a send in flight that the loop's close reaps. */
START_TEST(test_loop_close_reaps_a_closed_ring)
{
	unsigned char chunk[4096];
	halo_sendring *sr;
	int a, b, small = 4096;

	tu_loop_with(&loop, HALO_FEAT_SEND_BUNDLE, _i);
	tu_tcp_pair(&a, &b, 0);
	setsockopt(a, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	sr_new(&sr, a, 8, 4096);
	memset(chunk, 'z', sizeof(chunk));
	while (halo_sendring_write(sr, chunk, 4096) > 0)
		halo_loop_run_nowait(&loop);
	halo_sendring_close(sr);
	tu_loop_close(&loop);
	close(a);
	close(b);
}
END_TEST

START_TEST(test_bad_options_are_einval_and_bundles_are_opt_in)
{
	halo_sendring_opts o = {.nbufs = 3};
	int err = 0, a, b;

	tu_loop_with(&loop, HALO_FEAT_SEND_BUNDLE, _i);
	tu_tcp_pair(&a, &b, 0);
	ck_assert_ptr_null(halo_sendring_new(&loop, a, 3, &o, &err));
	ck_assert_int_eq(err, -EINVAL);
	o.nbufs = 4;
	o.flags = 1u << 9;
	ck_assert_ptr_null(halo_sendring_new(&loop, a, 3, &o, &err));
	ck_assert_int_eq(err, -EINVAL);
	ck_assert_ptr_null(halo_sendring_new(&loop, -1, 3, NULL, &err));
	ck_assert_int_eq(err, -EINVAL);
	{
		/* Bundles only when asked for. */
		halo_sendring *sr = halo_sendring_new(&loop, a, 3, NULL, &err);
		halo_sendring_stats st;

		ck_assert_ptr_nonnull(sr);
		halo_sendring_stats_get(sr, &st);
		ck_assert_int_eq(st.is_bundle, 0);
		ck_assert_uint_eq(halo_sendring_close(sr), 0);
	}
	close(a);
	close(b);
	tu_loop_close(&loop);
}
END_TEST

Suite *sendring_suite(void)
{
	Suite *s = suite_create("sendring");
	TCase *tc = tcase_create("sendring");

	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(
	    tc, test_writes_spanning_many_buffers_arrive_in_order, 0, 2);
	tcase_add_loop_test(tc, test_full_ring_refuses_writes_and_loses_nothing,
			    0, 2);
	tcase_add_loop_test(tc, test_peer_reset_mid_send_fails_once_and_frees,
			    0, 2);
	tcase_add_loop_test(tc, test_a_thousand_small_buffers_in_one_flush, 0,
			    2);
	tcase_add_loop_test(tc, test_flush_wait_rides_partial_sends_to_the_end,
			    0, 2);
	tcase_add_loop_test(
	    tc, test_rounds_after_partial_sends_neither_repeat_nor_skip, 0, 2);
	tcase_add_loop_test(tc, test_ring_tail_wraps_past_16_bits, 0, 2);
	tcase_add_loop_test(tc, test_close_with_a_send_in_flight, 0, 2);
	tcase_add_loop_test(
	    tc, test_cancelled_writer_fiber_leaves_the_ring_sending, 0, 2);
	tcase_add_loop_test(tc, test_loop_close_reaps_a_closed_ring, 0, 2);
	tcase_add_loop_test(
	    tc, test_bad_options_are_einval_and_bundles_are_opt_in, 0, 2);
	suite_add_tcase(s, tc);
	return s;
}
