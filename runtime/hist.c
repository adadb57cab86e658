/* Latency histograms, log-linear as in HdrHistogram: below 16 ns one bucket
 * per nanosecond, then for each power of two 2^k (k >= 4) 16 buckets of
 * width 2^(k-4). A value's bucket is found with one count-leading-zeros and
 * a shift; the bucket's upper bound overstates it by at most 1/16.
 *
 * Ops are stamped when the enter that submits them is made (one clock read
 * for the whole SQ, and the opcode read from the SQE the kernel is about to
 * consume), and measured when their first CQE is reaped, against the time
 * that enter returned (one clock read for the whole batch). The same two
 * clock reads give the tick's busy time: from one enter's return to the
 * next enter, the loop runs without the kernel. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "hist.h"
#include "internal.h"

#define SUB_BITS 4
#define SUB	 (1u << SUB_BITS)
#define TOP_BITS 40 /* values from 2^40 ns on share the last bucket */
#define BUCKETS	 (SUB * (TOP_BITS - SUB_BITS + 1))

/* The op's stamp fits the slot class it had without one (257-320 bytes):
 * histograms cost no memory per op. */
_Static_assert(sizeof(struct halo_op) <= 320, "halo_op outgrew its pool class");

struct hist {
	uint64_t count, sum, min, max;
	uint64_t b[BUCKETS];
};

struct halo__hist {
	struct hist *h[HALO_HIST_N]; /* made on first sample */
	uint64_t reap_ns; /* the last enter's return; 0 before the first */
	uint64_t lost;	  /* samples without memory for their histogram */
};

/* clang-format off */
static const char *const op_names[] = {
	"nop", "readv", "writev", "fsync", "read_fixed", "write_fixed",
	"poll_add", "poll_remove", "sync_file_range", "sendmsg", "recvmsg",
	"timeout", "timeout_remove", "accept", "async_cancel", "link_timeout",
	"connect", "fallocate", "openat", "close", "files_update", "statx",
	"read", "write", "fadvise", "madvise", "send", "recv", "openat2",
	"epoll_ctl", "splice", "provide_buffers", "remove_buffers", "tee",
	"shutdown", "renameat", "unlinkat", "mkdirat", "symlinkat", "linkat",
	"msg_ring", "fsetxattr", "setxattr", "fgetxattr", "getxattr", "socket",
	"uring_cmd", "send_zc", "sendmsg_zc", "read_multishot", "waitid",
	"futex_wait", "futex_wake", "futex_waitv", "fixed_fd_install",
	"ftruncate", "bind", "listen", "recv_zc", "epoll_wait", "readv_fixed",
	"writev_fixed", "pipe",
};
/* clang-format on */

static inline unsigned bucket_of(uint64_t v)
{
	unsigned msb, shift;

	if (v < SUB)
		return (unsigned)v;
	msb = 63u - (unsigned)__builtin_clzll(v);
	if (msb >= TOP_BITS)
		return BUCKETS - 1;
	shift = msb - SUB_BITS;
	return (shift + 1) * SUB + (unsigned)(v >> shift) - SUB;
}

static inline uint64_t bucket_low(unsigned i)
{
	unsigned shift;

	if (i < SUB)
		return i;
	shift = i / SUB - 1;
	return (uint64_t)(i % SUB + SUB) << shift;
}

static inline uint64_t bucket_high(unsigned i)
{
	if (i < SUB)
		return i;
	return bucket_low(i) + (1ull << (i / SUB - 1)) - 1;
}

int halo__hist_init(halo_loop *loop)
{
	if (!loop->opts.hist)
		return 0;
	loop->hist = halo_mem_zalloc(loop, sizeof(*loop->hist));
	return loop->hist ? 0 : -ENOMEM;
}

void halo__hist_close(halo_loop *loop)
{
	struct halo__hist *hs = loop->hist;

	if (!hs)
		return;
	for (unsigned i = 0; i < HALO_HIST_N; i++)
		halo_mem_free(loop, hs->h[i], sizeof(struct hist));
	halo_mem_free(loop, hs, sizeof(*hs));
	loop->hist = NULL;
}

static void record(halo_loop *loop, unsigned which, uint64_t v)
{
	struct halo__hist *hs = loop->hist;
	struct hist *h = hs->h[which];

	if (unlikely(!h)) {
		/* Once per kind: bounded, and gone after warm-up. */
		h = hs->h[which] = halo_mem_zalloc(loop, sizeof(*h));
		if (!h) {
			hs->lost++;
			return;
		}
		h->min = UINT64_MAX;
	}
	h->count++;
	h->sum += v;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
	h->b[bucket_of(v)]++;
}

void halo__hist_submit(halo_loop *loop, bool early)
{
	struct halo__hist *hs = loop->hist;
	struct io_uring_sq *sq = &loop->ring.sq;
	uint64_t now = halo_now_ns();

	/* The loop ran from the last enter's return to now without the
	 * kernel: the ready queue, prepare hooks, reaping, timers. */
	if (hs->reap_ns && !early)
		record(loop, HALO_HIST_TICK, now - hs->reap_ns);
	/* The SQEs prepared since the last flush: those this enter hands over
	 * (earlier ones were stamped by the enter that first offered them). */
	for (unsigned i = sq->sqe_head; i != sq->sqe_tail; i++) {
		const struct io_uring_sqe *sqe = &sq->sqes[i & sq->ring_mask];
		uint64_t ud = sqe->user_data;
		halo_op *op = (halo_op *)(uintptr_t)(ud & ((1ull << 48) - 1));

		/* Reserved tags (the group's among them) are no op's. */
		if (ud < HALO__UD_RESERVED || halo__op_tag(op) != ud)
			continue;
		op->hist_ns = now;
		op->hist_opcode = sqe->opcode;
		op->hist_armed = 1;
	}
}

void halo__hist_entered(halo_loop *loop)
{
	loop->hist->reap_ns = halo_now_ns();
}

void halo__hist_cqe(halo_loop *loop, halo_op *op)
{
	uint64_t at = loop->hist->reap_ns;

	if (!op->hist_armed)
		return;
	op->hist_armed = 0;
	if (op->hist_opcode < HALO_HIST_OPS)
		record(loop, op->hist_opcode,
		       at > op->hist_ns ? at - op->hist_ns : 0);
}

void halo__hist_timer(halo_loop *loop, uint64_t born_ns, uint64_t deadline,
		      uint64_t now)
{
	if (born_ns)
		record(loop, HALO_HIST_TIMER, now - born_ns);
	record(loop, HALO_HIST_TIMER_LAG, now > deadline ? now - deadline : 0);
}

static const struct hist *get(const halo_loop *loop, unsigned which)
{
	if (!loop->hist || which >= HALO_HIST_N)
		return NULL;
	return loop->hist->h[which];
}

static uint64_t at_pct(const struct hist *h, double pct)
{
	uint64_t want, seen = 0;

	if (!h || !h->count)
		return 0;
	if (pct >= 100)
		return h->max;
	if (pct < 0)
		pct = 0;
	want = (uint64_t)((double)h->count * pct / 100.0 + 0.5);
	if (want < 1)
		want = 1;
	for (unsigned i = 0; i < BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= want)
			return bucket_high(i) < h->max ? bucket_high(i)
						       : h->max;
	}
	return h->max;
}

uint64_t halo_hist_percentile(const halo_loop *loop, unsigned which, double pct)
{
	return at_pct(get(loop, which), pct);
}

int halo_hist_get(const halo_loop *loop, unsigned which, halo_hist_summary *out)
{
	const struct hist *h;

	if (which >= HALO_HIST_N)
		return -EINVAL;
	if (!loop->hist)
		return -ENOENT;
	memset(out, 0, sizeof(*out));
	h = get(loop, which);
	if (!h || !h->count)
		return 0;
	out->count = h->count;
	out->min_ns = h->min;
	out->max_ns = h->max;
	out->mean_ns = h->sum / h->count;
	out->p50_ns = at_pct(h, 50);
	out->p99_ns = at_pct(h, 99);
	out->p999_ns = at_pct(h, 99.9);
	return 0;
}

uint64_t halo_hist_count_range(const halo_loop *loop, unsigned which,
			       uint64_t lo_ns, uint64_t hi_ns)
{
	const struct hist *h = get(loop, which);
	uint64_t n = 0;

	if (!h)
		return 0;
	for (unsigned i = 0; i < BUCKETS; i++) {
		uint64_t low = bucket_low(i);

		if (low >= lo_ns && low < hi_ns)
			n += h->b[i];
	}
	return n;
}

const char *halo_hist_name(unsigned which)
{
	static __thread char name[16];

	switch (which) {
	case HALO_HIST_TICK:
		return "tick";
	case HALO_HIST_TIMER:
		return "timer";
	case HALO_HIST_TIMER_LAG:
		return "timer_lag";
	}
	if (which >= HALO_HIST_OPS)
		return NULL;
	if (which < sizeof(op_names) / sizeof(*op_names))
		return op_names[which];
	snprintf(name, sizeof(name), "op%u", which);
	return name;
}

void halo_hist_reset(halo_loop *loop)
{
	if (!loop->hist)
		return;
	for (unsigned i = 0; i < HALO_HIST_N; i++) {
		struct hist *h = loop->hist->h[i];

		if (h) {
			memset(h, 0, sizeof(*h));
			h->min = UINT64_MAX;
		}
	}
}

static void dump_stats(const halo_loop *loop, FILE *out)
{
	const halo_stats *s = &loop->stats;

	fprintf(out,
		"{\"type\":\"stats\",\"ticks\":%" PRIu64 ",\"enters\":%" PRIu64
		",\"sqes_submitted\":%" PRIu64 ",\"cqes_reaped\":%" PRIu64
		",\"sq_flushes_early\":%" PRIu64 ",\"cq_overflows\":%" PRIu64
		",\"stale_cqes\":%" PRIu64 ",\"live_futures\":%" PRIu64
		",\"live_fibers\":%" PRIu64 ",\"pool_allocs\":%" PRIu64
		",\"blocking_waits\":%" PRIu64 ",\"inflight\":%" PRIu64
		",\"fiber_op_cancels\":%" PRIu64
		",\"fiber_exit_drains\":%" PRIu64 ",\"stalls\":%" PRIu64
		",\"stall_max_ns\":%" PRIu64 ",\"hist_lost\":%" PRIu64 "}\n",
		s->ticks, s->enters, s->sqes_submitted, s->cqes_reaped,
		s->sq_flushes_early, s->cq_overflows, s->stale_cqes,
		s->live_futures, s->live_fibers, s->pool_allocs,
		s->blocking_waits, s->inflight, s->fiber_op_cancels,
		s->fiber_exit_drains, s->stalls, s->stall_max_ns,
		loop->hist ? loop->hist->lost : 0);
}

static void dump_hist(const halo_loop *loop, unsigned which, FILE *out)
{
	const struct hist *h = get(loop, which);
	halo_hist_summary s;
	bool first = true;

	halo_hist_get(loop, which, &s);
	fprintf(out,
		"{\"type\":\"hist\",\"name\":\"%s\",\"count\":%" PRIu64
		",\"min_ns\":%" PRIu64 ",\"p50_ns\":%" PRIu64
		",\"p99_ns\":%" PRIu64 ",\"p999_ns\":%" PRIu64
		",\"max_ns\":%" PRIu64 ",\"mean_ns\":%" PRIu64 ",\"buckets\":[",
		halo_hist_name(which), s.count, s.min_ns, s.p50_ns, s.p99_ns,
		s.p999_ns, s.max_ns, s.mean_ns);
	for (unsigned i = 0; i < BUCKETS; i++) {
		if (!h->b[i])
			continue;
		fprintf(out, "%s[%" PRIu64 ",%" PRIu64 "]", first ? "" : ",",
			bucket_high(i), h->b[i]);
		first = false;
	}
	fprintf(out, "]}\n");
}

int halo_hist_dump(const halo_loop *loop, FILE *out)
{
	int lines = 1;

	dump_stats(loop, out);
	for (unsigned i = 0; loop->hist && i < HALO_HIST_N; i++) {
		const struct hist *h = get(loop, i);

		if (!h || !h->count)
			continue;
		dump_hist(loop, i, out);
		lines++;
	}
	if (fflush(out) != 0 || ferror(out))
		return -EIO;
	return lines;
}
