/* The kernel's newer network fast paths, each run with the feature forced on
 * and forced off (the loop's features_off): multishot recv bundles with
 * messages larger than one buffer and buffers given back out of order, and
 * zero-copy sends (halo_send_zc, the socket writer's zc_min) whose buffer is
 * reused only after the notification. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/util.h"

TU_FDS_FIXTURE(loop)

static void run_until_idle(void)
{
	for (int i = 0; i < 10000 && loop.stats.inflight; i++)
		halo_loop_run_once(&loop);
}

/* --- recv bundles --- */

#define RING_N 64
#define BUF_SZ 4096

struct bstream {
	halo_bufring *br;
	size_t got;
	size_t bad_at;
	int ended;
	unsigned held;
	unsigned calls;
	unsigned short_calls; /* calls with less than a full buffer */
	uint16_t hold[RING_N];
	halo_recv_stats st;
};

static void bstream_cb(halo_recv_ms *h, int res, void *data, uint16_t bid,
		       void *arg)
{
	struct bstream *s = arg;
	const unsigned char *p = data;

	if (res <= 0) {
		s->ended = res == 0 ? 1 : res;
		return;
	}
	halo_recv_ms_stats(h, &s->st);
	ck_assert_ptr_eq(data, halo_bufring_buf(s->br, bid));
	ck_assert_int_le(res, BUF_SZ);
	for (int i = 0; i < res; i++)
		if (p[i] != tu_pattern_at(s->got + (size_t)i) && !s->bad_at)
			s->bad_at = s->got + (size_t)i + 1;
	s->got += (size_t)res;
	s->calls++;
	s->short_calls += res < BUF_SZ;
	ck_assert_uint_lt(s->held, RING_N);
	s->hold[s->held++] = bid;
}

/* Give back every other held buffer, newest first, then the rest: the ring
 * gets its buffers in an order unlike the one it handed them out in, so a
 * later bundle's buffers are not consecutive ids. */
static void bstream_return_shuffled(struct bstream *s)
{
	for (unsigned i = s->held; i-- > 0;)
		if (i % 2)
			halo_bufring_return(s->br, s->hold[i]);
	for (unsigned i = 0; i < s->held; i++)
		if (!(i % 2))
			halo_bufring_return(s->br, s->hold[i]);
	s->held = 0;
}

START_TEST(test_recv_bundles_deliver_big_messages_in_order)
{
	size_t len = 8u << 20, msg = 3 * BUF_SZ + 1000, sent = 0;
	unsigned char *src = malloc(len);
	struct bstream s = {0};
	halo_recv_ms_opts ro = {.max_held = 32, .flags = HALO_RECV_MS_BUNDLE};
	halo_recv_ms *h;
	int a, b, err = 0, tick = 0;
	bool bundles;

	tu_loop_with(&loop, HALO_FEAT_RECV_BUNDLE, _i);
	bundles = halo_loop_features(&loop) & HALO_FEAT_RECV_BUNDLE;
	for (size_t i = 0; i < len; i++)
		src[i] = tu_pattern_at(i);
	tu_tcp_pair(&a, &b, 0);
	ck_assert_int_eq(fcntl(a, F_SETFL, O_NONBLOCK), 0);
	s.br = halo_bufring_new(&loop, 5, RING_N, BUF_SZ, &err);
	ck_assert_msg(s.br != NULL, "bufring: %d", err);
	h = halo_recv_ms_start_opts(&loop, b, s.br, bstream_cb, &s, &ro, &err);
	ck_assert_msg(h != NULL, "recv: %d", err);
	for (int guard = 0; !s.ended && guard < 10000000; guard++) {
		/* Messages of 3.2 buffers, written whole where the socket
		 * takes them. */
		if (sent < len) {
			size_t n = len - sent < msg ? len - sent : msg;
			ssize_t w = write(a, src + sent, n);

			if (w > 0)
				sent += (size_t)w;
			if (sent == len)
				shutdown(a, SHUT_WR);
		}
		halo_loop_run_nowait(&loop);
		/* Hold buffers across some ticks, so that recvs pause at
		 * max_held and meet a ring that ran short. */
		if (++tick % 3 == 0 || s.held >= 40)
			bstream_return_shuffled(&s);
	}
	bstream_return_shuffled(&s);
	ck_assert_int_eq(s.ended, 1);
	ck_assert_uint_eq(s.got, len);
	ck_assert_msg(s.bad_at == 0, "byte %zu out of order", s.bad_at - 1);
	ck_assert_int_eq(s.st.is_bundle, bundles);
	if (bundles)
		ck_assert_msg(s.st.bufs > s.st.cqes + s.st.cqes / 2,
			      "bundles: %llu buffers in %llu CQEs",
			      (unsigned long long)s.st.bufs,
			      (unsigned long long)s.st.cqes);
	else
		ck_assert_uint_eq(s.st.bufs, s.st.cqes);
	/* max_held counts buffers: the byte cap (or a pause's cancel) keeps a
	 * bundle from taking past it by more than the socket held. */
	ck_assert_uint_le(s.st.held_peak, RING_N);
	ck_assert_uint_eq(s.st.max_held, 32);
	run_until_idle();
	ck_assert_uint_eq(halo_bufring_avail(s.br), RING_N);
	ck_assert_int_eq(halo_bufring_free(s.br), 0);
	close(a);
	close(b);
	free(src);
	tu_loop_close(&loop);
}
END_TEST

/* A stop from inside the callback, in the middle of a bundle: no call after
 * it, and the bundle's other buffers go back to the ring. */
struct stopper {
	halo_bufring *br;
	int calls;
	uint16_t bid;
};

static void stop_cb(halo_recv_ms *h, int res, void *data, uint16_t bid,
		    void *arg)
{
	struct stopper *s = arg;

	(void)data;
	ck_assert_int_gt(res, 0);
	ck_assert_int_eq(s->calls, 0);
	s->calls++;
	s->bid = bid;
	ck_assert_int_eq(halo_recv_ms_stop(h), 0);
}

START_TEST(test_stop_inside_a_bundle_gives_the_rest_back)
{
	static unsigned char buf[10 * BUF_SZ];
	halo_recv_ms_opts ro = {.flags = HALO_RECV_MS_BUNDLE,
				.max_held = HALO_RECV_MS_UNLIMITED};
	struct stopper s = {0};
	int a, b, err = 0;

	tu_loop_with(&loop, HALO_FEAT_RECV_BUNDLE, _i);
	tu_tcp_pair(&a, &b, 0);
	s.br = halo_bufring_new(&loop, 6, 16, BUF_SZ, &err);
	ck_assert_ptr_nonnull(s.br);
	/* The data is there before the recv is armed: one bundle takes it. */
	ck_assert_int_eq(write(a, buf, sizeof(buf)), (int)sizeof(buf));
	usleep(10000);
	ck_assert_ptr_nonnull(
	    halo_recv_ms_start_opts(&loop, b, s.br, stop_cb, &s, &ro, &err));
	for (int i = 0; i < 100 && !s.calls; i++)
		halo_loop_run_once(&loop);
	run_until_idle();
	ck_assert_int_eq(s.calls, 1);
	ck_assert_uint_eq(halo_bufring_avail(s.br), 15);
	halo_bufring_return(s.br, s.bid);
	ck_assert_uint_eq(halo_bufring_avail(s.br), 16);
	ck_assert_int_eq(halo_bufring_free(s.br), 0);
	close(a);
	close(b);
	tu_loop_close(&loop);
}
END_TEST

START_TEST(test_recv_ms_unknown_flag_is_einval)
{
	halo_recv_ms_opts ro = {.flags = 1u << 7};
	halo_bufring *br;
	int a, b, err = 0;

	tu_loop_with(&loop, HALO_FEAT_RECV_BUNDLE, _i);
	tu_tcp_pair(&a, &b, 0);
	br = halo_bufring_new(&loop, 6, 4, BUF_SZ, &err);
	ck_assert_ptr_nonnull(br);
	ck_assert_ptr_null(
	    halo_recv_ms_start_opts(&loop, b, br, stop_cb, NULL, &ro, &err));
	ck_assert_int_eq(err, -EINVAL);
	ck_assert_int_eq(halo_bufring_free(br), 0);
	close(a);
	close(b);
	tu_loop_close(&loop);
}
END_TEST

/* --- ring buffers on huge pages --- */

/* Whether the mapping that holds addr asks for huge pages (VmFlags "hg",
 * what madvise(MADV_HUGEPAGE) sets): known at once, unlike whether the
 * kernel found a huge page to give. */
static int mapping_wants_huge(const void *addr)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	int in = 0, hg = -1;

	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			in = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
			continue;
		}
		if (in && !strncmp(line, "VmFlags:", 8)) {
			hg = strstr(line, " hg") != NULL;
			break;
		}
	}
	fclose(f);
	ck_assert_int_ge(hg, 0);
	return hg;
}

/* A ring of 2 MiB or more asks for huge pages where the feature is on,
 * none where it is off. Buffers are whole and writable either way. */
START_TEST(test_bufring_memory_on_huge_pages)
{
	halo_bufring *big, *small;
	int err = 0;
	int on;

	tu_loop_with(&loop, HALO_FEAT_HUGE_BUFS, _i);
	on = (halo_loop_features(&loop) & HALO_FEAT_HUGE_BUFS) != 0;
	big = halo_bufring_new(&loop, 8, 1024, 4096, &err);
	small = halo_bufring_new(&loop, 9, 16, 4096, &err);
	ck_assert_ptr_nonnull(big);
	ck_assert_ptr_nonnull(small);
	memset(halo_bufring_buf(big, 0), 1, 4096);
	memset(halo_bufring_buf(big, 1023), 1, 4096);
	ck_assert_int_eq(mapping_wants_huge(halo_bufring_buf(big, 0)), on);
	ck_assert_int_eq(mapping_wants_huge(halo_bufring_buf(big, 1023)), on);
	if (!on) /* on, the allocator may place it in a region asked before */
		ck_assert_int_eq(
		    mapping_wants_huge(halo_bufring_buf(small, 0)), 0);
	ck_assert_int_eq(halo_bufring_free(big), 0);
	ck_assert_int_eq(halo_bufring_free(small), 0);
	tu_loop_close(&loop);
}
END_TEST

/* --- zero-copy send --- */

/* The future of a zero-copy send completes only once the kernel let go of
 * the buffer: when it is seen done, the kernel holds nothing of the send (a
 * future done at the byte count would be seen while the notification is
 * still to come: on loopback it waits for the peer's ACK). The buffer is
 * then overwritten at once and the peer still reads what was sent. */
START_TEST(test_send_zc_buffer_reused_only_after_notification)
{
	size_t len = 256u << 10;
	unsigned char *buf = malloc(len), *in = malloc(len);
	int a, b;

	tu_loop_with(&loop, HALO_FEAT_SEND_ZC, _i);
	tu_tcp_pair(&a, &b, 0);
	for (int round = 0; round < 4; round++) {
		uint64_t cqes0 = loop.stats.cqes_reaped;
		size_t got = 0;
		halo_fut *f;
		ssize_t n;

		for (size_t i = 0; i < len; i++)
			buf[i] = tu_pattern_at(i + (size_t)round * 7);
		f = halo_send_zc(&loop, a, buf, len,
				 MSG_NOSIGNAL | MSG_WAITALL);
		ck_assert_ptr_nonnull(f);
		for (int i = 0; i < 1000000 && !halo_fut_is_done(f); i++) {
			halo_loop_run_nowait(&loop);
			n = recv(b, in + got, len - got, MSG_DONTWAIT);
			if (n > 0)
				got += (size_t)n;
		}
		ck_assert(halo_fut_is_done(f));
		ck_assert_uint_eq(tu_inflight(&loop), 0);
		ck_assert_int_eq(halo_fut_result(f), (int64_t)len);
		if (halo_loop_features(&loop) & HALO_FEAT_SEND_ZC)
			ck_assert_uint_ge(loop.stats.cqes_reaped - cqes0, 2);
		halo_fut_release(f);
		memset(buf, 0xee, len); /* the kernel let go: reuse it */
		while (got < len) {
			n = recv(b, in + got, len - got, 0);
			ck_assert_int_gt(n, 0);
			got += (size_t)n;
		}
		for (size_t i = 0; i < len; i++)
			if (in[i] != tu_pattern_at(i + (size_t)round * 7))
				ck_abort_msg("round %d: byte %zu differs",
					     round, i);
	}
	close(a);
	close(b);
	free(buf);
	free(in);
	tu_loop_close(&loop);
}
END_TEST

/* halo_send_all at or above the loop's send_zc_min goes zero-copy: its
 * future completes only after the last notification (nothing in flight when
 * it is seen done), the buffer is then overwritten, and the peer still reads
 * the whole payload intact. Below the threshold it is a plain send. */
START_TEST(test_send_all_zc_completes_after_notification)
{
	size_t len = 4u << 20, got = 0, small = 1000;
	unsigned char *buf = malloc(len), *in = malloc(len);
	halo_loop_opts o = {.send_zc_min = 64u << 10};
	uint64_t cqes0;
	halo_fut *f;
	ssize_t n;
	int a, b;

	if (!_i)
		o.features_off = HALO_FEAT_SEND_ZC;
	tu_loop_init(&loop, &o);
	tu_tcp_pair(&a, &b, 0);
	for (size_t i = 0; i < len; i++)
		buf[i] = tu_pattern_at(i);
	cqes0 = loop.stats.cqes_reaped;
	f = halo_send_all(&loop, a, buf, len, 0);
	ck_assert_ptr_nonnull(f);
	for (int i = 0; i < 10000000 && !halo_fut_is_done(f); i++) {
		halo_loop_run_nowait(&loop);
		n = recv(b, in + got, len - got, MSG_DONTWAIT);
		if (n > 0)
			got += (size_t)n;
	}
	ck_assert(halo_fut_is_done(f));
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	ck_assert_int_eq(halo_fut_result(f), (int64_t)len);
	if (halo_loop_features(&loop) & HALO_FEAT_SEND_ZC)
		ck_assert_uint_ge(loop.stats.cqes_reaped - cqes0, 2);
	halo_fut_release(f);
	memset(buf, 0xee, len); /* the kernel let go: reuse it */
	while (got < len) {
		n = recv(b, in + got, len - got, 0);
		ck_assert_int_gt(n, 0);
		got += (size_t)n;
	}
	for (size_t i = 0; i < len; i++)
		if (in[i] != tu_pattern_at(i))
			ck_abort_msg("byte %zu differs", i);
	/* Below the threshold: one plain send, one CQE. */
	memset(buf, 'q', small);
	cqes0 = loop.stats.cqes_reaped;
	f = halo_send_all(&loop, a, buf, small, 0);
	ck_assert_int_eq(halo_fut_wait(f), (int64_t)small);
	halo_fut_release(f);
	ck_assert_uint_eq(loop.stats.cqes_reaped - cqes0, 1);
	for (got = 0; got < small; got += (size_t)n) {
		n = recv(b, in, small - got, 0);
		ck_assert_int_gt(n, 0);
	}
	close(a);
	close(b);
	free(buf);
	free(in);
	tu_loop_close(&loop);
}
END_TEST

/* send_zc_min applies to every socket halo_send_all is given, but only some
 * protocols take zero-copy sends (TCP and UDP; not Unix sockets, where
 * SEND_ZC fails with -EOPNOTSUPP): such a socket gets plain sends, and the
 * whole payload arrives. */
START_TEST(test_send_all_zc_min_on_a_unix_socket_still_sends)
{
	static unsigned char buf[256 << 10], in[sizeof(buf)];
	halo_loop_opts o = {.send_zc_min = 1};
	size_t got = 0;
	halo_fut *f;
	int sv[2];
	ssize_t n;

	if (!_i)
		o.features_off = HALO_FEAT_SEND_ZC;
	tu_loop_init(&loop, &o);
	ck_assert_int_eq(
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = tu_pattern_at(i);
	f = halo_send_all(&loop, sv[0], buf, sizeof(buf), 0);
	ck_assert_ptr_nonnull(f);
	for (int i = 0; i < 10000000 && !halo_fut_is_done(f); i++) {
		halo_loop_run_nowait(&loop);
		n = recv(sv[1], in + got, sizeof(in) - got, MSG_DONTWAIT);
		if (n > 0)
			got += (size_t)n;
	}
	ck_assert_int_eq(halo_fut_result(f), (int64_t)sizeof(buf));
	halo_fut_release(f);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	while (got < sizeof(in)) {
		n = recv(sv[1], in + got, sizeof(in) - got, 0);
		ck_assert_int_gt(n, 0);
		got += (size_t)n;
	}
	ck_assert_int_eq(memcmp(in, buf, sizeof(buf)), 0);
	close(sv[0]);
	close(sv[1]);
	tu_loop_close(&loop);
}
END_TEST

/* A zero-copy send_all to a peer that reset the connection fails with the
 * socket's error, and only after the kernel let go (nothing in flight). */
START_TEST(test_send_all_zc_to_a_reset_peer_fails_cleanly)
{
	static unsigned char buf[256 << 10];
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	halo_loop_opts o = {.send_zc_min = 1};
	int a, b;
	halo_fut *f;
	int64_t r = 0;

	if (!_i)
		o.features_off = HALO_FEAT_SEND_ZC;
	tu_loop_init(&loop, &o);
	tu_tcp_pair(&a, &b, 0);
	ck_assert_int_eq(setsockopt(b, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)),
			 0);
	close(b);
	usleep(10000);
	for (int i = 0; i < 4 && r >= 0; i++) {
		f = halo_send_all(&loop, a, buf, sizeof(buf), 0);
		ck_assert_ptr_nonnull(f);
		r = halo_fut_wait(f);
		ck_assert_uint_eq(tu_inflight(&loop), 0);
		halo_fut_release(f);
	}
	ck_assert_msg(r == -ECONNRESET || r == -EPIPE, "result %lld",
		      (long long)r);
	close(a);
	tu_loop_close(&loop);
}
END_TEST

/* A zero-copy send to a peer that reset the connection fails, and still
 * completes only after the kernel let go (nothing left in flight). */
START_TEST(test_send_zc_to_a_reset_peer_fails_cleanly)
{
	static unsigned char buf[64 << 10];
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	int a, b;
	halo_fut *f;
	int64_t r = 0;

	tu_loop_with(&loop, HALO_FEAT_SEND_ZC, _i);
	tu_tcp_pair(&a, &b, 0);
	ck_assert_int_eq(setsockopt(b, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)),
			 0);
	close(b);
	usleep(10000);
	/* The first send may still be taken; the reset shows by the next. */
	for (int i = 0; i < 4 && r >= 0; i++) {
		f = halo_send_zc(&loop, a, buf, sizeof(buf), MSG_NOSIGNAL);
		ck_assert_ptr_nonnull(f);
		r = halo_fut_wait(f);
		ck_assert_uint_eq(tu_inflight(&loop), 0);
		halo_fut_release(f);
	}
	ck_assert_msg(r == -ECONNRESET || r == -EPIPE, "result %lld",
		      (long long)r);
	close(a);
	tu_loop_close(&loop);
}
END_TEST

/* A socket writer with zc_min sends its batches zero-copy where the loop
 * can: every send's future completes only once the kernel let go of its
 * buffer, which is then overwritten, and the peer reads every byte. */
START_TEST(test_sockwriter_zero_copy_batches_complete_after_notification)
{
	enum { N = 16, SZ = 48 << 10 };
	unsigned char *bufs = malloc((size_t)N * SZ),
		      *in = malloc((size_t)N * SZ);
	halo_sw_opts so = {.zc_min = 1};
	halo_fut *f[N];
	halo_sw_stats st;
	size_t got = 0;
	halo_sw sw;
	int a, b, done = 0;

	tu_loop_with(&loop, HALO_FEAT_SEND_ZC, _i);
	tu_tcp_pair(&a, &b, 0);
	for (size_t i = 0; i < (size_t)N * SZ; i++)
		bufs[i] = tu_pattern_at(i);
	ck_assert_int_eq(halo_sw_init(&sw, &loop, a, &so), 0);
	for (int i = 0; i < N; i++) {
		f[i] = halo_sw_send(&sw, bufs + (size_t)i * SZ, SZ);
		ck_assert_ptr_nonnull(f[i]);
	}
	for (int k = 0; k < 1000000 && done < N; k++) {
		ssize_t n;

		halo_loop_run_nowait(&loop);
		for (int i = 0; i < N; i++) {
			if (!f[i] || !halo_fut_is_done(f[i]))
				continue;
			ck_assert_int_eq(halo_fut_result(f[i]), SZ);
			halo_fut_release(f[i]);
			f[i] = NULL;
			/* Done: the kernel let go of it. */
			memset(bufs + (size_t)i * SZ, 0xee, SZ);
			done++;
		}
		n = recv(b, in + got, (size_t)N * SZ - got, MSG_DONTWAIT);
		if (n > 0)
			got += (size_t)n;
	}
	ck_assert_int_eq(done, N);
	while (got < (size_t)N * SZ) {
		ssize_t n = recv(b, in + got, (size_t)N * SZ - got, 0);

		ck_assert_int_gt(n, 0);
		got += (size_t)n;
	}
	for (size_t i = 0; i < (size_t)N * SZ; i++)
		if (in[i] != tu_pattern_at(i))
			ck_abort_msg("byte %zu differs", i);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	halo_sw_stats_get(&sw, &st);
	if (halo_loop_features(&loop) & HALO_FEAT_SEND_ZC)
		ck_assert_uint_gt(st.zc, 0);
	else
		ck_assert_uint_eq(st.zc, 0);
	ck_assert_uint_eq(st.bytes, (uint64_t)N * SZ);
	ck_assert_int_eq(halo_sw_close(&sw), 0);
	close(a);
	close(b);
	free(bufs);
	free(in);
	tu_loop_close(&loop);
}
END_TEST

/* zc_min applies to every socket the writer is given, but a Unix socket
 * refuses zero-copy sends (-EOPNOTSUPP): the writer sends the same batch
 * again as a plain sendmsg and stays plain, so 1 MiB queued in sends of
 * varied sizes reaches the peer byte for byte. Over TCP (_i / 2 == 1) the
 * same writer still goes zero-copy where the loop can. */
START_TEST(test_sockwriter_zc_min_keeps_every_byte_where_zc_is_refused)
{
	enum { LEN = 1 << 20, MAXN = 1024 };
	unsigned char *src = malloc(LEN), *in = malloc(LEN);
	halo_sw_opts so = {.zc_min = 1};
	bool is_tcp = _i / 2,
	     on = tu_loop_with(&loop, HALO_FEAT_SEND_ZC, _i % 2);
	halo_fut *f[MAXN];
	size_t queued = 0, got = 0, len[MAXN];
	halo_sw_stats st;
	halo_sw sw;
	int a, b, n = 0, done = 0;

	if (is_tcp) {
		tu_tcp_pair(&a, &b, 0);
	} else {
		int sv[2];

		ck_assert_int_eq(
		    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		a = sv[0];
		b = sv[1];
	}
	for (size_t i = 0; i < LEN; i++)
		src[i] = tu_pattern_at(i);
	ck_assert_int_eq(halo_sw_init(&sw, &loop, a, &so), 0);
	for (int k = 0; k < 10000000 && (done < n || queued < LEN); k++) {
		ssize_t r;

		/* A few sends a tick, sizes from 1 byte to 40 KiB. */
		for (int j = 0; j < 3 && queued < LEN; j++, n++) {
			size_t want = 1 + ((size_t)n * 7919 * 13) % (40 << 10);

			ck_assert_int_lt(n, MAXN);
			len[n] = want < LEN - queued ? want : LEN - queued;
			f[n] = halo_sw_send(&sw, src + queued, len[n]);
			ck_assert_ptr_nonnull(f[n]);
			queued += len[n];
		}
		halo_loop_run_nowait(&loop);
		for (; done < n && halo_fut_is_done(f[done]); done++) {
			ck_assert_int_eq(halo_fut_result(f[done]),
					 (int64_t)len[done]);
			halo_fut_release(f[done]);
		}
		r = recv(b, in + got, LEN - got, MSG_DONTWAIT);
		if (r > 0)
			got += (size_t)r;
	}
	ck_assert_int_eq(done, n);
	while (got < LEN) {
		ssize_t r = recv(b, in + got, LEN - got, 0);

		ck_assert_int_gt(r, 0);
		got += (size_t)r;
	}
	ck_assert_int_eq(recv(b, in, 1, MSG_DONTWAIT), -1);
	ck_assert_int_eq(memcmp(in, src, LEN), 0);
	ck_assert_uint_eq(tu_inflight(&loop), 0);
	halo_sw_stats_get(&sw, &st);
	ck_assert_uint_eq(st.bytes, LEN);
	ck_assert_uint_eq(st.zc_refused, on && !is_tcp);
	if (is_tcp && on)
		ck_assert_uint_gt(st.zc, 0);
	else
		ck_assert_uint_eq(st.zc, 0);
	ck_assert_int_eq(halo_sw_close(&sw), 0);
	close(a);
	close(b);
	free(src);
	free(in);
	tu_loop_close(&loop);
}
END_TEST

/* --- the connection layer with bundles --- */

static int64_t echo_fiber(halo_conn *c, void *arg)
{
	char buf[8192];
	ssize_t n;

	(void)arg;
	while ((n = halo_conn_read(c, buf, sizeof(buf))) > 0)
		if (halo_conn_write(c, buf, (size_t)n) < 0)
			break;
	return 0;
}

/* The echo server of examples/echo, receiving in bundles or not, echoes 4
 * MiB sent in pieces of 5 buffers and a bit, byte for byte. */
START_TEST(test_server_echo_with_bundles_keeps_every_byte)
{
	size_t len = 4u << 20, sent = 0, got = 0, piece = 5 * BUF_SZ + 123;
	unsigned char *in = malloc(len), *src = malloc(len);
	halo_server_opts so = {.host = "127.0.0.1",
			       .fiber = echo_fiber,
			       .ring_bufs = 256,
			       .recv_bundle = 1};
	halo_server_stats st;
	struct sockaddr_in sa = {.sin_family = AF_INET};
	halo_server *srv;
	int fd, err = 0;

	tu_loop_with(&loop, HALO_FEAT_RECV_BUNDLE, _i);
	for (size_t i = 0; i < len; i++)
		src[i] = tu_pattern_at(i);
	srv = halo_server_start(&loop, &so, &err);
	ck_assert_msg(srv != NULL, "server: %d", err);
	sa.sin_port = htons((uint16_t)halo_server_port(srv));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
	for (int k = 0; k < 10000000 && got < len; k++) {
		ssize_t n;

		if (sent < len) {
			size_t w = len - sent < piece ? len - sent : piece;

			n = send(fd, src + sent, w, MSG_NOSIGNAL);
			if (n > 0)
				sent += (size_t)n;
		}
		halo_loop_run_nowait(&loop);
		n = recv(fd, in + got, len - got, 0);
		if (n > 0)
			got += (size_t)n;
	}
	ck_assert_uint_eq(got, len);
	ck_assert_int_eq(memcmp(in, src, len), 0);
	close(fd);
	halo_server_stats_get(srv, &st);
	ck_assert_uint_eq(st.bytes_in, len);
	ck_assert_int_eq(halo_fut_join(halo_server_stop(srv, 1000000000ull)),
			 0);
	ck_assert_int_eq(halo_server_free(srv), 0);
	free(in);
	free(src);
	tu_loop_close(&loop);
}
END_TEST

Suite *netfast_suite(void)
{
	Suite *s = suite_create("netfast");
	TCase *tc = tcase_create("netfast");

	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_recv_bundles_deliver_big_messages_in_order,
			    0, 2);
	tcase_add_loop_test(tc, test_stop_inside_a_bundle_gives_the_rest_back,
			    0, 2);
	tcase_add_loop_test(tc, test_recv_ms_unknown_flag_is_einval, 0, 2);
	tcase_add_loop_test(tc, test_bufring_memory_on_huge_pages, 0, 2);
	tcase_add_loop_test(
	    tc, test_send_zc_buffer_reused_only_after_notification, 0, 2);
	tcase_add_loop_test(tc, test_send_zc_to_a_reset_peer_fails_cleanly, 0,
			    2);
	tcase_add_loop_test(tc, test_send_all_zc_completes_after_notification,
			    0, 2);
	tcase_add_loop_test(tc, test_send_all_zc_to_a_reset_peer_fails_cleanly,
			    0, 2);
	tcase_add_loop_test(
	    tc, test_send_all_zc_min_on_a_unix_socket_still_sends, 0, 2);
	tcase_add_loop_test(
	    tc, test_sockwriter_zero_copy_batches_complete_after_notification,
	    0, 2);
	tcase_add_loop_test(
	    tc, test_sockwriter_zc_min_keeps_every_byte_where_zc_is_refused, 0,
	    4);
	tcase_add_loop_test(tc, test_server_echo_with_bundles_keeps_every_byte,
			    0, 2);
	suite_add_tcase(s, tc);
	return s;
}
