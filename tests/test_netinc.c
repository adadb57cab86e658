/* Incremental buffer rings (HALO_BUFRING_INC), each test run with
 * HALO_FEAT_PBUF_INC forced off (_i == 0: a plain ring, every piece a whole
 * buffer) and on where the kernel has it (_i == 1): many small messages in
 * one large buffer, a small ring wrapped many times with pieces given back
 * out of order, two connections sharing a ring, EOF and errors with pieces
 * out, and the checks that keep a piece from being credited twice. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/util.h"

TU_FDS_FIXTURE(loop)

static unsigned char pattern_at(size_t i, unsigned seed)
{
	return tu_pattern_at(i) ^ (unsigned char)seed;
}

static halo_bufring *inc_ring(uint16_t bgid, unsigned n, size_t sz, bool on)
{
	halo_bufring_opts bo = {.flags = HALO_BUFRING_INC};
	halo_bufring *br;
	int err = 0;

	br = halo_bufring_new_opts(&loop, bgid, n, sz, &bo, &err);
	ck_assert_msg(br != NULL, "bufring: %d", err);
	ck_assert_int_eq(halo_bufring_is_inc(br), on);
	return br;
}

/* A receiver that checks every piece against its stream's pattern, and
 * holds pieces (ptr, len, stream offset) until told to give them back. */
#define HOLD_MAX 512

struct held {
	unsigned char *p;
	int len;
	size_t at;
};

struct rx {
	halo_bufring *br;
	unsigned seed;
	size_t got;
	size_t bad_at;
	int ended;
	int keep; /* hold pieces rather than give each back at once */
	unsigned held_n;
	struct held held[HOLD_MAX];
	struct rx *other; /* a stream sharing the ring */
	int id;
	int *last;	 /* per bid: the stream its last piece went to */
	unsigned shared; /* pieces that continue another stream's buffer */
	unsigned overlaps;
	halo_recv_stats st;
};

static bool overlaps_held(const struct rx *r, const unsigned char *p, int len)
{
	for (unsigned i = 0; r && i < r->held_n; i++)
		if (p < r->held[i].p + r->held[i].len && r->held[i].p < p + len)
			return true;
	return false;
}

static void rx_cb(halo_recv_ms *h, int res, void *data, uint16_t bid, void *arg)
{
	struct rx *r = arg;
	unsigned char *p = data, *buf = halo_bufring_buf(r->br, bid);
	size_t sz = halo_bufring_buf_size(r->br);

	if (res <= 0) {
		r->ended = res == 0 ? 1 : res;
		return;
	}
	halo_recv_ms_stats(h, &r->st);
	/* The piece lies in its buffer and in no piece still held: a buffer
	 * is never handed out again while a piece of it is out. */
	ck_assert(p >= buf && p + res <= buf + sz);
	if (!halo_bufring_is_inc(r->br))
		ck_assert_ptr_eq(p, buf);
	if (overlaps_held(r, p, res) || overlaps_held(r->other, p, res))
		r->overlaps++;
	if (r->last) {
		r->shared += p != buf && r->last[bid] != r->id;
		r->last[bid] = r->id;
	}
	for (int i = 0; i < res; i++)
		if (p[i] != pattern_at(r->got + (size_t)i, r->seed) &&
		    !r->bad_at)
			r->bad_at = r->got + (size_t)i + 1;
	if (r->keep) {
		ck_assert_uint_lt(r->held_n, HOLD_MAX);
		r->held[r->held_n++] =
		    (struct held){.p = p, .len = res, .at = r->got};
	} else {
		ck_assert_int_eq(halo_bufring_return_piece(r->br, data), 0);
	}
	r->got += (size_t)res;
}

/* Give back every other held piece, newest first, then the rest, after
 * checking that each still holds what arrived in it. */
static void rx_return_shuffled(struct rx *r)
{
	for (int pass = 0; pass < 2; pass++) {
		for (unsigned k = 0; k < r->held_n; k++) {
			unsigned i = pass ? k : r->held_n - 1 - k;
			struct held *hd = &r->held[i];

			if ((i % 2) != (pass ? 0u : 1u))
				continue;
			for (int j = 0; j < hd->len; j++)
				ck_assert_msg(
				    hd->p[j] ==
					pattern_at(hd->at + (size_t)j, r->seed),
				    "held byte %zu overwritten",
				    hd->at + (size_t)j);
			ck_assert_int_eq(
			    halo_bufring_return_piece(r->br, hd->p), 0);
		}
	}
	r->held_n = 0;
}

/* Give back about half the held pieces (every other, newest first) and
 * keep the rest for a later round, so that pieces of a buffer come back
 * across ticks while the kernel goes on. */
static void rx_return_half(struct rx *r)
{
	unsigned kept = 0;

	for (unsigned i = r->held_n; i-- > 0;) {
		struct held *hd = &r->held[i];

		if (i % 2 == 0)
			continue;
		for (int j = 0; j < hd->len; j++)
			ck_assert_msg(
			    hd->p[j] == pattern_at(hd->at + (size_t)j, r->seed),
			    "held byte %zu overwritten", hd->at + (size_t)j);
		ck_assert_int_eq(halo_bufring_return_piece(r->br, hd->p), 0);
	}
	for (unsigned i = 0; i < r->held_n; i += 2)
		r->held[kept++] = r->held[i];
	r->held_n = kept;
}

static void run_until_idle(void)
{
	for (int i = 0; i < 10000 && tu_inflight(&loop); i++)
		halo_loop_run_once(&loop);
}

/* Send len bytes of r's pattern to fd in messages of msg bytes (or sizes
 * that vary up to msg with vary), one message a tick. */
static size_t send_some(int fd, size_t sent, size_t len, size_t msg,
			unsigned seed, bool vary)
{
	unsigned char buf[4096];
	size_t n = vary ? 1 + (sent * 7919) % msg : msg;
	ssize_t w;

	if (sent >= len)
		return sent;
	if (n > len - sent)
		n = len - sent;
	for (size_t i = 0; i < n; i++)
		buf[i] = pattern_at(sent + i, seed);
	w = write(fd, buf, n);
	if (w > 0)
		sent += (size_t)w;
	if (sent == len)
		shutdown(fd, SHUT_WR);
	return sent;
}

START_TEST(test_small_messages_share_one_large_buffer)
{
	size_t len = 4000 * 64, sent = 0;
	struct rx r = {.seed = 3};
	halo_bufring_stats bs;
	halo_recv_ms *h;
	int a, b, err = 0;
	bool on = tu_loop_with(&loop, HALO_FEAT_PBUF_INC, _i);

	tu_tcp_pair(&a, &b, O_NONBLOCK);
	r.br = inc_ring(7, 8, 64 << 10, on);
	h = halo_recv_ms_start_opts(&loop, b, r.br, rx_cb, &r, NULL, &err);
	ck_assert_msg(h != NULL, "recv: %d", err);
	for (int guard = 0; !r.ended && guard < 1000000; guard++) {
		sent = send_some(a, sent, len, 64, r.seed, false);
		halo_loop_run_nowait(&loop);
	}
	ck_assert_int_eq(r.ended, 1);
	ck_assert_uint_eq(r.got, len);
	ck_assert_msg(r.bad_at == 0, "byte %zu out of order", r.bad_at - 1);
	halo_bufring_stats_get(r.br, &bs);
	ck_assert_int_eq(bs.is_inc, on);
	ck_assert_uint_eq(bs.pieces_out, 0);
	ck_assert_uint_eq(bs.pieces, r.st.cqes);
	if (on) {
		/* 256 KiB in 64 KiB buffers: the buffers filled, not one per
		 * message or per recv. */
		ck_assert_uint_le(bs.bufs_used, len / (64 << 10));
		ck_assert_uint_gt(bs.pieces, 8 * bs.bufs_used);
		/* The partly used buffer is in the ring, its used part not
		 * free. */
		ck_assert_uint_eq(bs.bytes_free,
				  (8 + bs.bufs_used) * (64u << 10) - len);
	} else {
		ck_assert_uint_eq(bs.bufs_used, bs.pieces);
		ck_assert_uint_eq(bs.bytes_free, 8 * (64u << 10));
	}
	run_until_idle();
	ck_assert_uint_eq(halo_bufring_avail(r.br), 8);
	ck_assert_int_eq(halo_bufring_free(r.br), 0);
	close(a);
	close(b);
	tu_loop_close(&loop);
}
END_TEST

/* A ring of 4 small buffers takes 1 MiB in pieces of varying size, held
 * across ticks and given back out of order: every byte arrives in order,
 * no piece is handed out over one still held, and a held piece is never
 * overwritten. */
START_TEST(test_small_ring_wraps_with_pieces_returned_out_of_order)
{
	size_t len = 1u << 20, sent = 0;
	halo_recv_ms_opts ro = {.max_held = 4};
	struct rx r = {.seed = 5, .keep = 1};
	halo_bufring_stats bs;
	halo_recv_ms *h;
	int a, b, err = 0, tick = 0;
	bool on = tu_loop_with(&loop, HALO_FEAT_PBUF_INC, _i);

	tu_tcp_pair(&a, &b, O_NONBLOCK);
	r.br = inc_ring(8, 4, 4096, on);
	h = halo_recv_ms_start_opts(&loop, b, r.br, rx_cb, &r, &ro, &err);
	ck_assert_msg(h != NULL, "recv: %d", err);
	for (int guard = 0; !r.ended && guard < 10000000; guard++) {
		/* Up to 24 KiB a tick: more than the ring holds, so that it
		 * wraps while pieces are out. */
		for (int k = 0; k < 8; k++)
			sent = send_some(a, sent, len, 3000, r.seed, true);
		halo_loop_run_nowait(&loop);
		if (++tick % 3 == 0 || r.held_n >= HOLD_MAX / 2)
			rx_return_half(&r);
	}
	rx_return_shuffled(&r);
	ck_assert_int_eq(r.ended, 1);
	ck_assert_uint_eq(r.got, len);
	ck_assert_msg(r.bad_at == 0, "byte %zu out of order", r.bad_at - 1);
	ck_assert_uint_eq(r.overlaps, 0);
	halo_bufring_stats_get(r.br, &bs);
	ck_assert_uint_gt(bs.bufs_used, 4 * 16); /* wrapped many times */
	ck_assert_uint_eq(bs.pieces_out, 0);
	run_until_idle();
	ck_assert_uint_eq(halo_bufring_avail(r.br), 4);
	ck_assert_int_eq(halo_bufring_free(r.br), 0);
	close(a);
	close(b);
	tu_loop_close(&loop);
}
END_TEST

/* Two connections on one incremental ring: with the feature on, pieces of
 * one buffer go to both; each stream arrives whole and in order, and
 * neither is handed memory the other still holds. */
START_TEST(test_two_connections_share_a_ring)
{
	size_t len = 512u << 10, sent[2] = {0, 0};
	halo_recv_ms_opts ro = {.max_held = 8};
	struct rx r[2] = {{.seed = 11, .keep = 1}, {.seed = 77, .keep = 1}};
	int last[16] = {0};
	halo_bufring_stats bs;
	halo_bufring *br;
	int a[2], b[2], err = 0, tick = 0;
	bool on = tu_loop_with(&loop, HALO_FEAT_PBUF_INC, _i);

	br = inc_ring(9, 16, 16 << 10, on);
	for (int k = 0; k < 2; k++) {
		tu_tcp_pair(&a[k], &b[k], O_NONBLOCK);
		r[k].br = br;
		r[k].other = &r[1 - k];
		r[k].id = k;
		r[k].last = last;
		ck_assert_ptr_nonnull(halo_recv_ms_start_opts(
		    &loop, b[k], br, rx_cb, &r[k], &ro, &err));
	}
	for (int guard = 0; !(r[0].ended && r[1].ended) && guard < 10000000;
	     guard++) {
		for (int k = 0; k < 2; k++)
			sent[k] =
			    send_some(a[k], sent[k], len, 700, r[k].seed, true);
		halo_loop_run_nowait(&loop);
		if (++tick % 2 == 0)
			for (int k = 0; k < 2; k++)
				rx_return_half(&r[k]);
	}
	for (int k = 0; k < 2; k++) {
		rx_return_shuffled(&r[k]);
		ck_assert_int_eq(r[k].ended, 1);
		ck_assert_uint_eq(r[k].got, len);
		ck_assert_msg(r[k].bad_at == 0, "stream %d: byte %zu", k,
			      r[k].bad_at - 1);
		ck_assert_uint_eq(r[k].overlaps, 0);
	}
	halo_bufring_stats_get(br, &bs);
	if (on) { /* 1 MiB in 16 KiB buffers, pieces of both streams mixed */
		ck_assert_uint_le(bs.bufs_used, 2 * len / (16 << 10) + 2);
		ck_assert_uint_gt(r[0].shared + r[1].shared, 0);
	}
	run_until_idle();
	ck_assert_uint_eq(halo_bufring_avail(br), 16);
	ck_assert_int_eq(halo_bufring_free(br), 0);
	for (int k = 0; k < 2; k++) {
		close(a[k]);
		close(b[k]);
	}
	tu_loop_close(&loop);
}
END_TEST

/* The stream ends (_i / 2 == 0: EOF; 1: reset) while the receiver holds
 * every piece: they stay valid and intact, the ring refuses to be freed
 * until they are back, and is whole again afterwards. */
START_TEST(test_end_with_pieces_out_keeps_them_until_returned)
{
	halo_recv_ms_opts ro = {.max_held = HALO_RECV_MS_UNLIMITED};
	struct rx r = {.seed = 9, .keep = 1};
	bool on = tu_loop_with(&loop, HALO_FEAT_PBUF_INC, _i % 2),
	     reset = _i / 2;
	halo_bufring_stats bs;
	size_t sent = 0, len = 6 * 100;
	int a, b, err = 0;

	tu_tcp_pair(&a, &b, O_NONBLOCK);
	r.br = inc_ring(10, 8, 64 << 10, on);
	ck_assert_ptr_nonnull(
	    halo_recv_ms_start_opts(&loop, b, r.br, rx_cb, &r, &ro, &err));
	for (int guard = 0; r.got < len && guard < 100000; guard++) {
		if (sent < len)
			sent = send_some(a, sent, len + 1, 100, r.seed, false);
		halo_loop_run_nowait(&loop);
	}
	ck_assert_uint_eq(r.got, len);
	if (reset) {
		struct linger lg = {.l_onoff = 1, .l_linger = 0};

		ck_assert_int_eq(
		    setsockopt(a, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	} else {
		shutdown(a, SHUT_WR);
	}
	close(a);
	for (int guard = 0; !r.ended && guard < 100000; guard++)
		halo_loop_run_once(&loop);
	ck_assert_int_eq(r.ended, reset ? -ECONNRESET : 1);
	ck_assert_uint_gt(r.held_n, 0);
	halo_bufring_stats_get(r.br, &bs);
	ck_assert_uint_eq(bs.pieces_out, r.held_n);
	ck_assert_int_eq(halo_bufring_free(r.br), -EBUSY);
	ck_assert_uint_eq(halo_bufring_handles(r.br), 1);
	rx_return_shuffled(&r);
	ck_assert_uint_eq(halo_bufring_handles(r.br), 0);
	ck_assert_uint_eq(halo_bufring_avail(r.br), 8);
	ck_assert_int_eq(halo_bufring_free(r.br), 0);
	close(b);
	tu_loop_close(&loop);
}
END_TEST

/* A piece given back twice, a pointer inside no piece, a pointer outside
 * the ring: -EINVAL, and nothing changes. */
START_TEST(test_piece_cannot_be_credited_twice)
{
	struct rx r = {.seed = 1, .keep = 1};
	bool on = tu_loop_with(&loop, HALO_FEAT_PBUF_INC, _i);
	halo_bufring_stats bs;
	size_t sent = 0;
	int a, b, err = 0;

	tu_tcp_pair(&a, &b, O_NONBLOCK);
	r.br = inc_ring(11, 4, 4096, on);
	ck_assert_ptr_nonnull(
	    halo_recv_ms_start_opts(&loop, b, r.br, rx_cb, &r, NULL, &err));
	for (int guard = 0; r.held_n < 2 && guard < 100000; guard++) {
		if (sent < 200 && (sent == 0 || r.got == sent))
			sent = send_some(a, sent, 1000, 100, r.seed, false);
		halo_loop_run_nowait(&loop);
	}
	ck_assert_uint_eq(r.held_n, 2);
	if (on) /* both pieces in one buffer */
		ck_assert_ptr_eq(r.held[1].p, r.held[0].p + 100);
	ck_assert_int_eq(halo_bufring_return_piece(r.br, r.held[0].p), 0);
	ck_assert_int_eq(halo_bufring_return_piece(r.br, r.held[0].p), -EINVAL);
	ck_assert_int_eq(halo_bufring_return_piece(r.br, r.held[1].p + 1),
			 -EINVAL);
	ck_assert_int_eq(halo_bufring_return_piece(r.br, &r), -EINVAL);
	ck_assert_int_eq(halo_bufring_return_piece(r.br, NULL), -EINVAL);
	halo_bufring_stats_get(r.br, &bs);
	ck_assert_uint_eq(bs.pieces_out, 1);
	ck_assert_int_eq(halo_bufring_return_piece(r.br, r.held[1].p), 0);
	ck_assert_int_eq(halo_bufring_return_piece(r.br, r.held[1].p), -EINVAL);
	r.held_n = 0;
	close(a);
	for (int guard = 0; !r.ended && guard < 100000; guard++)
		halo_loop_run_once(&loop);
	ck_assert_int_eq(r.ended, 1);
	ck_assert_int_eq(halo_bufring_free(r.br), 0);
	close(b);
	tu_loop_close(&loop);
}
END_TEST

/* max_held counts pieces on an incremental ring: a receiver that holds
 * every piece pauses, though all of them fit in one buffer, and gets the
 * rest once it gives them back. */
START_TEST(test_max_held_counts_pieces)
{
	size_t len = 64 * 100, sent = 0;
	halo_recv_ms_opts ro = {.max_held = 4};
	struct rx r = {.seed = 2, .keep = 1};
	halo_recv_stats st;
	halo_recv_ms *h;
	int a, b, err = 0;
	bool on = tu_loop_with(&loop, HALO_FEAT_PBUF_INC, _i);

	tu_tcp_pair(&a, &b, O_NONBLOCK);
	r.br = inc_ring(12, 8, 64 << 10, on);
	h = halo_recv_ms_start_opts(&loop, b, r.br, rx_cb, &r, &ro, &err);
	ck_assert_ptr_nonnull(h);
	for (int guard = 0; r.got < len && guard < 100000; guard++) {
		if (sent < len)
			sent = send_some(a, sent, len + 1, 100, r.seed, false);
		halo_loop_run_nowait(&loop);
		halo_recv_ms_stats(h, &st);
		if (st.is_paused && guard % 50 == 0)
			rx_return_shuffled(&r);
	}
	ck_assert_uint_eq(r.got, len);
	ck_assert_msg(r.bad_at == 0, "byte %zu out of order", r.bad_at - 1);
	ck_assert_uint_gt(r.st.pauses, 0);
	if (on) /* the byte cap counts bytes: not used for pieces */
		ck_assert_int_eq(r.st.is_capped, 0);
	rx_return_shuffled(&r);
	close(a);
	for (int guard = 0; !r.ended && guard < 100000; guard++)
		halo_loop_run_once(&loop);
	ck_assert_int_eq(r.ended, 1);
	ck_assert_int_eq(halo_bufring_free(r.br), 0);
	close(b);
	tu_loop_close(&loop);
}
END_TEST

/* The loop closes while pieces are out: no callback, no leaked future;
 * the pieces may still be given back, and the ring freed, afterwards. */
START_TEST(test_loop_close_with_pieces_out)
{
	struct rx r = {.seed = 4, .keep = 1};
	bool on = tu_loop_with(&loop, HALO_FEAT_PBUF_INC, _i);
	size_t sent = 0, len = 4 * 100;
	int a, b, err = 0;

	tu_tcp_pair(&a, &b, O_NONBLOCK);
	r.br = inc_ring(14, 8, 64 << 10, on);
	ck_assert_ptr_nonnull(
	    halo_recv_ms_start_opts(&loop, b, r.br, rx_cb, &r, NULL, &err));
	for (int guard = 0; r.got < len && guard < 100000; guard++) {
		if (sent < len && sent == r.got)
			sent = send_some(a, sent, len + 1, 100, r.seed, false);
		halo_loop_run_nowait(&loop);
	}
	ck_assert_uint_eq(r.held_n, 4);
	ck_assert_int_eq(write(a, "more", 4), 4); /* for a recv in flight */
	tu_loop_close(&loop);
	ck_assert_int_eq(r.ended, 0);
	rx_return_shuffled(&r);
	halo_bufring_free(r.br);
	close(a);
	close(b);
}
END_TEST

/* A recv ends mid-buffer (_i / 2 == 0: EOF; 1: halo_recv_ms_stop()) while
 * its pieces are held; a recv of another connection then picks the same
 * partly used buffer where the first stopped, each piece exactly where its
 * bytes are, the first's pieces intact. Messages of 1 KiB in 4 KiB buffers
 * end a buffer exactly at its end (a last piece without BUF_MORE). */
START_TEST(test_next_recv_continues_a_buffer_another_left)
{
	halo_recv_ms_opts ro = {.max_held = HALO_RECV_MS_UNLIMITED};
	struct rx r1 = {.seed = 21, .keep = 1}, r2 = {.seed = 22, .keep = 1};
	bool on = tu_loop_with(&loop, HALO_FEAT_PBUF_INC, _i % 2),
	     stop = _i / 2;
	halo_recv_ms *h1, *h2;
	size_t s1 = 0, s2 = 0, len1 = 5 * 1024 + 300, len2 = 9 * 1024;
	int a1, b1, a2, b2, err = 0, last[16];

	tu_tcp_pair(&a1, &b1, O_NONBLOCK);
	tu_tcp_pair(&a2, &b2, O_NONBLOCK);
	r1.br = r2.br = inc_ring(14, 16, 4096, on);
	for (int i = 0; i < 16; i++)
		last[i] = -1;
	r1.other = &r2;
	r2.other = &r1;
	r1.last = r2.last = last;
	r2.id = 1;
	h1 = halo_recv_ms_start_opts(&loop, b1, r1.br, rx_cb, &r1, &ro, &err);
	ck_assert_ptr_nonnull(h1);
	for (int guard = 0; r1.got < len1 && guard < 100000; guard++) {
		/* len1 + 1: no shutdown from send_some() */
		if (r1.got == s1 && s1 < len1)
			s1 = send_some(a1, s1, len1 + 1,
				       len1 - s1 < 1024 ? len1 - s1 : 1024,
				       r1.seed, false);
		halo_loop_run_nowait(&loop);
	}
	ck_assert_uint_eq(r1.got, len1);
	if (stop) {
		ck_assert_int_eq(halo_recv_ms_stop(h1), 0);
	} else {
		shutdown(a1, SHUT_WR);
	}
	/* A stop ends the recv at the kernel's next CQE: give it time. */
	for (int guard = 0; guard < (stop ? 2000 : 100000) && !r1.ended;
	     guard++)
		halo_loop_run_nowait(&loop);
	if (!stop)
		ck_assert_int_eq(r1.ended, 1);
	h2 = halo_recv_ms_start_opts(&loop, b2, r2.br, rx_cb, &r2, &ro, &err);
	ck_assert_ptr_nonnull(h2);
	for (int guard = 0; !r2.ended && guard < 100000; guard++) {
		if (r2.got == s2)
			s2 = send_some(a2, s2, len2, 700, r2.seed, false);
		halo_loop_run_nowait(&loop);
		if (r2.held_n >= 6)
			rx_return_shuffled(&r2);
	}
	ck_assert_int_eq(r2.ended, 1);
	ck_assert_uint_eq(r2.got, len2);
	ck_assert_msg(r1.bad_at == 0, "r1 byte %zu", r1.bad_at - 1);
	ck_assert_msg(r2.bad_at == 0, "r2 byte %zu", r2.bad_at - 1);
	ck_assert_uint_eq(r1.overlaps + r2.overlaps, 0);
	/* r2's first piece went on in the buffer r1 left partly used */
	ck_assert_uint_eq(r2.shared, on);
	rx_return_shuffled(&r1);
	rx_return_shuffled(&r2);
	run_until_idle();
	ck_assert_uint_eq(halo_bufring_avail(r1.br), 16);
	ck_assert_int_eq(halo_bufring_free(r1.br), 0);
	close(a1);
	close(b1);
	close(a2);
	close(b2);
	tu_loop_close(&loop);
}
END_TEST

/* Pieces given back in order behind a run of older pieces of the same
 * buffer still held (connections keeping a partial message): a return must
 * not walk past the held ones. 4096 pieces of 8 bytes in one 64 KiB buffer;
 * 1024 returns from the front (nothing older held) against 1024 returns
 * behind 2048 held pieces: the same cost, give or take noise, not 2048
 * times as much. Best of 3 rounds each, as a ratio in the same run. */
#define MANY 4096

struct many {
	halo_bufring *br;
	unsigned n;
	size_t got;
	void *p[MANY];
};

static void many_cb(halo_recv_ms *h, int res, void *data, uint16_t bid,
		    void *arg)
{
	struct many *m = arg;

	(void)h;
	(void)bid;
	if (res <= 0)
		return;
	ck_assert_uint_lt(m->n, MANY);
	m->p[m->n++] = data;
	m->got += (size_t)res;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t return_range(struct many *m, unsigned from, unsigned to)
{
	uint64_t t = now_ns();
	int bad = 0;

	/* no ck_assert in the loop: each one writes to check's pipe */
	for (unsigned i = from; i < to; i++)
		bad |= halo_bufring_return_piece(m->br, m->p[i]);
	t = now_ns() - t;
	ck_assert_int_eq(bad, 0);
	return t;
}

START_TEST(test_return_behind_held_pieces_is_not_a_walk)
{
	halo_recv_ms_opts ro = {.max_held = HALO_RECV_MS_UNLIMITED};
	static struct many m;
	uint64_t front = UINT64_MAX, behind = UINT64_MAX;
	halo_recv_ms *h;
	int a, b, err = 0;

	if (!tu_loop_with(&loop, HALO_FEAT_PBUF_INC, 1)) {
		tu_loop_close(&loop);
		return;
	}
	tu_tcp_pair(&a, &b, O_NONBLOCK);
	m.br = inc_ring(15, 2, 64 << 10, true);
	h = halo_recv_ms_start_opts(&loop, b, m.br, many_cb, &m, &ro, &err);
	ck_assert_ptr_nonnull(h);
	for (int round = 0; round < 3; round++) {
		uint64_t t;

		m.n = 0;
		m.got = 0;
		/* one 8-byte message a tick: a piece each */
		for (size_t sent = 0; m.n < MANY;) {
			static const char msg[8] = "piece...";

			if (m.got == sent) {
				ck_assert_int_eq(write(a, msg, 8), 8);
				sent += 8;
			}
			halo_loop_run_nowait(&loop);
		}
		ck_assert_uint_eq(m.got, 8u * MANY);
		t = return_range(&m, 0, 1024);
		front = t < front ? t : front;
		t = return_range(&m, 3072, 4096);
		behind = t < behind ? t : behind;
		return_range(&m, 1024, 3072);
	}
	ck_assert_msg(behind < 20 * front + 200000,
		      "1024 returns behind 2048 held pieces: %llu ns, "
		      "from the front: %llu ns",
		      (unsigned long long)behind, (unsigned long long)front);
	ck_assert_int_eq(halo_recv_ms_stop(h), 0);
	run_until_idle();
	ck_assert_int_eq(halo_bufring_free(m.br), 0);
	close(a);
	close(b);
	tu_loop_close(&loop);
}
END_TEST

/* Bundles on a ring made incremental are refused, feature on or off; an
 * unknown ring flag too. */
START_TEST(test_bundles_on_an_inc_ring_are_einval)
{
	halo_recv_ms_opts ro = {.flags = HALO_RECV_MS_BUNDLE};
	halo_bufring_opts bo = {.flags = 1u << 5};
	halo_bufring *br;
	int a, b, err = 0;
	bool on = tu_loop_with(&loop, HALO_FEAT_PBUF_INC, _i);

	tu_tcp_pair(&a, &b, O_NONBLOCK);
	ck_assert_ptr_null(
	    halo_bufring_new_opts(&loop, 13, 4, 4096, &bo, &err));
	ck_assert_int_eq(err, -EINVAL);
	br = inc_ring(13, 4, 4096, on);
	ck_assert_ptr_null(
	    halo_recv_ms_start_opts(&loop, b, br, rx_cb, NULL, &ro, &err));
	ck_assert_int_eq(err, -EINVAL);
	ck_assert_int_eq(halo_bufring_free(br), 0);
	close(a);
	close(b);
	tu_loop_close(&loop);
}
END_TEST

Suite *netinc_suite(void)
{
	Suite *s = suite_create("netinc");
	TCase *tc = tcase_create("netinc");

	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_small_messages_share_one_large_buffer, 0,
			    2);
	tcase_add_loop_test(
	    tc, test_small_ring_wraps_with_pieces_returned_out_of_order, 0, 2);
	tcase_add_loop_test(tc, test_two_connections_share_a_ring, 0, 2);
	tcase_add_loop_test(
	    tc, test_end_with_pieces_out_keeps_them_until_returned, 0, 4);
	tcase_add_loop_test(tc, test_piece_cannot_be_credited_twice, 0, 2);
	tcase_add_loop_test(tc, test_max_held_counts_pieces, 0, 2);
	tcase_add_loop_test(tc, test_loop_close_with_pieces_out, 0, 2);
	tcase_add_loop_test(tc, test_bundles_on_an_inc_ring_are_einval, 0, 2);
	tcase_add_loop_test(tc, test_next_recv_continues_a_buffer_another_left,
			    0, 4);
	tcase_add_test(tc, test_return_behind_held_pieces_is_not_a_walk);
	suite_add_tcase(s, tc);
	return s;
}
