/* A group of loops, one per thread, that run functions on each other.
 *
 * Per ordered pair of loops (i -> j) one struct pair, made by i when it
 * first sends to j: a request ring (i produces, j consumes: posts, calls,
 * cancels) and a reply ring (j produces the replies to i's calls, i
 * consumes). Both are bounded single-producer single-consumer rings: the
 * producer owns the tail, the consumer the head, and the only atomics on the
 * hot path are one release store and one acquire load per side.
 *
 * The kernel only rings the doorbell. A producer that publishes a message
 * swaps the ring's bell flag to 1 and rings only if it was 0; the consumer
 * swaps it back to 0 before it reads the tail. So a burst costs one
 * doorbell, and a message published after the consumer's last read of the
 * tail always finds the flag down and rings. The doorbell is an
 * IORING_OP_MSG_RING SQE (riding the sender's next io_uring_enter, its own
 * CQE skipped on success) that posts a CQE tagged below HALO__UD_RESERVED
 * on the target's ring; reap hands those to halo__group_cqe(). Without
 * MSG_RING it is a write to the target's eventfd, which the target keeps an
 * io_uring read armed on.
 *
 * Stop: the consumer sets CLOSED_BIT in the tail of every request ring it
 * consumes, atomically; a producer publishes with a compare-and-swap of the
 * tail, so a message is either in the ring before the bit (and runs in the
 * final drain) or refused with -ESHUTDOWN, never in between. */
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "group.h"
#include "internal.h"

#define DEFAULT_PAIR_INFLIGHT 256
#define MAX_PAIR_INFLIGHT     65536
#define CLOSED_BIT	      0x80000000u
#define IDX_MASK	      0x7fffffffu

/* Doorbell tags: UD_MARK | kind << 12 | loop index, all below
 * HALO__UD_RESERVED. A bounced send comes back on the sender with the
 * kind's K_BOUNCE bit and the target's index. */
#define UD_MARK (1u << 19)
enum { K_REQ = 1, K_REP = 2, K_ROOM = 3, K_CTRL = 4, K_BOUNCE = 8 };
#define UD(kind, idx) ((uint64_t)(UD_MARK | (unsigned)(kind) << 12 | (idx)))
_Static_assert(UD(15, 4095) < HALO__UD_RESERVED, "doorbell tags overlap ops");
_Static_assert(HALO_GROUP_MAX <= 4096, "loop index must fit in 12 bits");

/* Pending work marks per peer (member.mark). */
enum { M_REQ = 1, M_REP = 2, M_ROOM = 4 };

enum { MSG_POST = 1, MSG_CALL, MSG_CANCEL };

struct call;

struct msg {
	uint8_t kind;
	union {
		halo_group_post_fn post;
		halo_group_call_fn call;
	} fn;
	void *arg;
	struct call *call;
};

struct reply {
	struct call *call;
	int64_t result;
	void *value;
	uint8_t state;
};

union slot {
	struct msg m;
	struct reply r;
};

struct ring {
	_Alignas(64) _Atomic uint32_t tail; /* producer; CLOSED_BIT: consumer */
	uint32_t head_cache;		    /* the producer's view of head */
	_Alignas(64) _Atomic uint32_t head; /* consumer */
	_Alignas(64) _Atomic uint32_t bell; /* rung, not yet drained */
	_Atomic uint32_t want_room;	    /* the producer waits for room */
	union slot *slots;
};

struct roomw {
	struct roomw *next;
	halo_fut *f;
};

struct served;

struct pair {
	struct ring req; /* i -> j */
	struct ring rep; /* j -> i */
	/* i's thread only */
	_Alignas(64) unsigned calls_out;
	uint64_t bell_epoch; /* the SQ epoch of a REQ doorbell not yet sent */
	int bell_queued;
	struct call *calls;
	struct roomw *room;
	/* j's thread only */
	_Alignas(64) struct served *served;
};

/* A call on the caller's side: lives in the caller's pool until its reply
 * is consumed (or its target closed), so that the target may read
 * `cancelled` while it holds the call. */
struct call {
	struct call *next, **pprev;
	halo_fut *f;
	struct member *m;
	unsigned to;
	_Atomic int cancelled;
};

/* A call on the target's side, while fn's future is pending. */
struct served {
	halo_waiter w;
	struct served *next, **pprev;
	struct member *m;
	struct pair *p;
	unsigned src;
	struct call *call; /* the caller's; compared, never read here */
	halo_fut *f;
};

#define STAT_INC(m, field)                                                     \
	atomic_store_explicit(                                                 \
	    &(m)->st.field,                                                    \
	    atomic_load_explicit(&(m)->st.field, memory_order_relaxed) + 1,    \
	    memory_order_relaxed)

struct member {
	halo_loop loop;
	halo_group *g;
	unsigned idx;
	pthread_t thread;
	int started;
	int ring_fd; /* a dup of the loop's ring: valid until join */
	int efd;
	_Atomic int state;
	_Atomic int stop_req;
	_Atomic long load;
	_Atomic(void *) slot[HALO_GROUP_SLOTS];
	struct {
		_Atomic uint64_t posted, received, replies, bells, wakeups,
		    full, bounced;
	} st;
	/* the loop's thread only */
	halo_task drain_task;
	halo_task later_task; /* bounced doorbells, then the final stop */
	int drain_queued, later_queued;
	int scan_all, rearm, closing_done;
	uint8_t *mark;	 /* M_* per peer */
	uint8_t *rebell; /* 1 << kind per peer: bounced doorbells */
	unsigned *pend;
	unsigned pend_n;
	unsigned rebell_n;
	unsigned *rebell_list;
	unsigned served_n; /* calls served and not yet replied */
	unsigned calls_n;  /* own calls not yet replied */
	halo_fut *stop_fut;
	halo_waiter stop_w;
	halo_op *rd; /* the armed eventfd read (fallback) */
	int leaked;
	int err;
};

struct halo_group {
	halo_group_opts o;
	unsigned n, cap;
	int msg_ring;
	int *cpus;
	unsigned cpus_n;
	struct member **m;
	_Atomic(struct pair *) *pairs; /* [src * n + dst] */
	/* control: start-up handshake and the stop doorbell */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned phase1_n, init_n;
	int phase1_err, init_err, go;
	struct io_uring ctl;
	int has_ctl;
	pthread_mutex_t ctl_mu;
	_Atomic int stop_asked;
};

/* A pair its consumer closed before its producer made it. */
static struct pair closed_pair;
#define SENTINEL (&closed_pair)

static __thread struct member *self __attribute__((tls_model("initial-exec")));

static void queue_drain(struct member *m);
static void advance_stop(struct member *m);

/* --- rings --- */

static int ring_push(struct ring *r, unsigned cap, const union slot *s)
{
	uint32_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);

	if (t & CLOSED_BIT)
		return -ESHUTDOWN;
	if (((t - r->head_cache) & IDX_MASK) >= cap) {
		r->head_cache =
		    atomic_load_explicit(&r->head, memory_order_acquire);
		if (((t - r->head_cache) & IDX_MASK) >= cap)
			return -EAGAIN;
	}
	r->slots[t & (cap - 1)] = *s;
	/* Fails only if the consumer closed the ring meanwhile: then the
	 * message was never published. */
	if (!atomic_compare_exchange_strong(&r->tail, &t, (t + 1) & IDX_MASK))
		return -ESHUTDOWN;
	return 0;
}

static bool ring_full(struct ring *r, unsigned cap)
{
	uint32_t t =
	    atomic_load_explicit(&r->tail, memory_order_relaxed) & IDX_MASK;

	if (((t - r->head_cache) & IDX_MASK) < cap)
		return false;
	r->head_cache = atomic_load_explicit(&r->head, memory_order_seq_cst);
	return ((t - r->head_cache) & IDX_MASK) >= cap;
}

static bool ring_closed(struct ring *r)
{
	return atomic_load_explicit(&r->tail, memory_order_acquire) &
	       CLOSED_BIT;
}

/* True when the producer should ring: the consumer drained since the last
 * ring. Ordered after the tail's publication (see the file comment). */
static bool ring_should_bell(struct ring *r)
{
	return atomic_exchange(&r->bell, 1) == 0;
}

static struct pair *pair_get(halo_group *g, unsigned src, unsigned dst)
{
	return atomic_load_explicit(&g->pairs[src * g->n + dst],
				    memory_order_acquire);
}

static struct pair *pair_make(halo_group *g, unsigned src, unsigned dst)
{
	struct pair *p = pair_get(g, src, dst), *expect = NULL;
	size_t size;

	if (p)
		return p;
	size = sizeof(*p) + 2 * (size_t)g->cap * sizeof(union slot);
	p = aligned_alloc(64, (size + 63) & ~(size_t)63);
	if (!p)
		return NULL;
	memset(p, 0, size);
	p->req.slots = (union slot *)(p + 1);
	p->rep.slots = p->req.slots + g->cap;
	if (!atomic_compare_exchange_strong(&g->pairs[src * g->n + dst],
					    &expect, p)) {
		free(p);
		return expect; /* the consumer closed it first */
	}
	return p;
}

/* --- doorbells --- */

static int member_state(const struct member *m)
{
	return atomic_load_explicit(&m->state, memory_order_acquire);
}

static void bell(struct member *m, unsigned to, unsigned kind)
{
	halo_group *g = m->g;
	struct member *t = g->m[to];

	if (member_state(t) == HALO_GROUP_CLOSED)
		return;
	STAT_INC(m, bells);
	if (g->msg_ring) {
		struct io_uring_sqe *sqe = halo_uring_get_sqe(&m->loop.ring);

		if (!sqe)
			sqe = halo__get_sqe_slow(&m->loop);
		if (!sqe) {
			/* The ring failed: ring once more next tick. */
			halo__group_cqe(&m->loop, UD(kind | K_BOUNCE, to),
					-EAGAIN);
			return;
		}
		halo_uring_prep_msg_ring_data(sqe, t->ring_fd, 0,
					      UD(kind, m->idx));
		sqe->flags = IOSQE_CQE_SKIP_SUCCESS;
		sqe->user_data = UD(kind | K_BOUNCE, to);
	} else {
		uint64_t one = 1;

		/* EAGAIN only if the counter would overflow: it is rung. */
		if (write(t->efd, &one, sizeof(one)) < 0)
			(void)0;
	}
}

/* From a thread that may own no loop: the control ring, under a lock. */
static void ctl_bell(halo_group *g, unsigned to)
{
	struct member *t = g->m[to];

	if (!g->msg_ring) {
		uint64_t one = 1;

		if (write(t->efd, &one, sizeof(one)) < 0)
			(void)0;
		return;
	}
	pthread_mutex_lock(&g->ctl_mu);
	for (int tries = 0; tries < 1000; tries++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&g->ctl);
		struct io_uring_cqe *cqe;
		int res;

		if (!sqe)
			break;
		halo_uring_prep_msg_ring_data(sqe, t->ring_fd, 0,
					      UD(K_CTRL, to));
		if (io_uring_submit_and_wait(&g->ctl, 1) < 0 ||
		    io_uring_wait_cqe(&g->ctl, &cqe) < 0)
			break;
		res = cqe->res;
		io_uring_cqe_seen(&g->ctl, cqe);
		/* A full CQ on a ring that cannot overflow: the loop reaps
		 * soon; try again. */
		if (res != -EOVERFLOW && res != -EAGAIN && res != -ENOMEM)
			break;
		usleep(1000);
	}
	pthread_mutex_unlock(&g->ctl_mu);
}

static void mark(struct member *m, unsigned peer, unsigned bits)
{
	if (!m->mark[peer])
		m->pend[m->pend_n++] = peer;
	m->mark[peer] |= (uint8_t)bits;
	queue_drain(m);
}

static void run_later(halo_task *t);

static void queue_later(struct member *m)
{
	if (m->later_queued)
		return;
	m->later_queued = 1;
	m->later_task.fn = run_later;
	halo__later_push(&m->loop, &m->later_task);
}

void halo__group_cqe(halo_loop *loop, uint64_t ud, int32_t res)
{
	struct member *m = self;
	unsigned kind = (unsigned)(ud >> 12) & 15, idx = ud & 4095;

	assert(m && &m->loop == loop && idx < m->g->n);
	(void)loop;
	if (kind & K_BOUNCE) {
		/* Our MSG_RING failed. A full target CQ or a short kernel
		 * rings again after this tick's I/O; a target that closed
		 * needs no doorbell. */
		STAT_INC(m, bounced);
		if (res == -EBADFD || res == -EBADF ||
		    member_state(m->g->m[idx]) == HALO_GROUP_CLOSED)
			return;
		if (!m->rebell[idx])
			m->rebell_list[m->rebell_n++] = idx;
		m->rebell[idx] |= (uint8_t)(1u << (kind & 7));
		queue_later(m);
		return;
	}
	STAT_INC(m, wakeups);
	switch (kind) {
	case K_REQ:
		mark(m, idx, M_REQ);
		break;
	case K_REP:
		mark(m, idx, M_REP);
		break;
	case K_ROOM:
		mark(m, idx, M_ROOM);
		break;
	default:
		m->scan_all = 1;
		queue_drain(m);
	}
}

/* --- the fallback doorbell: an eventfd read --- */

static int efd_arm(struct member *m);

static void efd_on_cqe(halo_op *op, int32_t res, uint32_t flags)
{
	struct member *m = op->ctx;

	(void)flags;
	halo__op_finish(op, res);
	halo_fut_release(&op->fut);
	if (m->rd == op)
		m->rd = NULL;
	STAT_INC(m, wakeups);
	m->scan_all = 1;
	m->rearm = 1;
	queue_drain(m);
}

static int efd_arm(struct member *m)
{
	halo_op *op = halo__op_new(&m->loop, __FILE__, __LINE__);
	struct io_uring_sqe *sqe;

	if (!op)
		return -ENOMEM;
	op->fut.flags |= FUT_UNOWNED | FUT_CONSUMED;
	op->on_cqe = efd_on_cqe;
	op->ctx = m;
	sqe = halo__op_sqe(op);
	if (!sqe) {
		halo__op_abort(op);
		return -EBUSY;
	}
	io_uring_prep_read(sqe, m->efd, op->meta.bytes, sizeof(uint64_t), 0);
	m->rd = op;
	return 0;
}

/* --- the target side: running messages, replying --- */

static void reply(struct member *m, unsigned src, struct pair *p,
		  struct call *c, uint8_t state, int64_t result, void *value)
{
	union slot s = {.r = {c, result, value, state}};
	int r = ring_push(&p->rep, m->g->cap, &s);

	/* The caller keeps at most cap calls to us awaiting a reply. */
	assert(r == 0);
	(void)r;
	if (ring_should_bell(&p->rep))
		bell(m, src, K_REP);
}

static void served_done(halo_fut *f, void *arg)
{
	struct served *s = arg;
	struct member *m = s->m;

	reply(m, s->src, s->p, s->call, (uint8_t)halo_fut_status(f),
	      halo_fut_result(f), f->value);
	*s->pprev = s->next;
	if (s->next)
		s->next->pprev = s->pprev;
	halo_mem_free(&m->loop, s, sizeof(*s));
	halo_fut_release(f);
	m->served_n--;
	advance_stop(m);
}

static void serve_call(struct member *m, unsigned src, struct pair *p,
		       const struct msg *msg)
{
	struct served *s;
	halo_fut *f;

	if (atomic_load_explicit(&msg->call->cancelled, memory_order_acquire)) {
		reply(m, src, p, msg->call, HALO_FUT_CANCELLED, -ECANCELED,
		      NULL);
		return;
	}
	s = halo_mem_alloc(&m->loop, sizeof(*s));
	f = s ? msg->fn.call(&m->loop, msg->arg) : NULL;
	if (!f) {
		if (s)
			halo_mem_free(&m->loop, s, sizeof(*s));
		reply(m, src, p, msg->call, HALO_FUT_ERROR, -ENOMEM, NULL);
		return;
	}
	s->m = m;
	s->p = p;
	s->src = src;
	s->call = msg->call;
	s->f = f;
	s->next = p->served;
	s->pprev = &p->served;
	if (p->served)
		p->served->pprev = &s->next;
	p->served = s;
	m->served_n++;
	s->w.fn = served_done;
	s->w.arg = s;
	halo_fut_add_waiter(f, &s->w);
}

/* The caller cancelled: messages of a pair run in order, so a served call
 * with this caller pointer is the one the cancel is for (a later call that
 * reused the pointer was sent after this cancel). */
static void cancel_served(struct pair *p, const struct call *c)
{
	for (struct served *s = p->served; s; s = s->next)
		if (s->call == c) {
			halo_fut_cancel(s->f);
			return;
		}
}

static void drain_req(struct member *m, unsigned src)
{
	halo_group *g = m->g;
	struct pair *p = pair_get(g, src, m->idx);
	struct ring *r;
	uint32_t h, t;

	if (!p || p == SENTINEL)
		return;
	r = &p->req;
	atomic_store(&r->bell, 0);
	t = atomic_load(&r->tail) & IDX_MASK;
	h = atomic_load_explicit(&r->head, memory_order_relaxed);
	while (h != t) {
		struct msg msg = r->slots[h & (g->cap - 1)].m;

		h = (h + 1) & IDX_MASK;
		atomic_store_explicit(&r->head, h, memory_order_release);
		STAT_INC(m, received);
		switch (msg.kind) {
		case MSG_POST:
			msg.fn.post(&m->loop, msg.arg);
			break;
		case MSG_CALL:
			serve_call(m, src, p, &msg);
			break;
		case MSG_CANCEL:
			cancel_served(p, msg.call);
			break;
		}
	}
	/* Room: the producer raised want_room, then looked at head; we
	 * stored head, then look at want_room (both sequentially
	 * consistent): one of the two sees the other. */
	atomic_store(&r->head, h);
	if (atomic_load(&r->want_room) && atomic_exchange(&r->want_room, 0))
		bell(m, src, K_ROOM);
}

/* --- the caller side: replies, room --- */

static void call_free(struct member *m, struct pair *p, struct call *c)
{
	*c->pprev = c->next;
	if (c->next)
		c->next->pprev = c->pprev;
	p->calls_out--;
	m->calls_n--;
	halo__fut_unref(c->f);
	halo_mem_free(&m->loop, c, sizeof(*c));
}

static void check_room(struct member *m, unsigned to);

static void drain_rep(struct member *m, unsigned dst)
{
	halo_group *g = m->g;
	struct pair *p = pair_get(g, m->idx, dst);
	struct ring *r;
	uint32_t h, t;
	bool any = false;

	if (!p || p == SENTINEL)
		return;
	r = &p->rep;
	atomic_store(&r->bell, 0);
	t = atomic_load(&r->tail) & IDX_MASK;
	h = atomic_load_explicit(&r->head, memory_order_relaxed);
	while (h != t) {
		struct reply rep = r->slots[h & (g->cap - 1)].r;
		struct call *c = rep.call;

		h = (h + 1) & IDX_MASK;
		atomic_store_explicit(&r->head, h, memory_order_release);
		STAT_INC(m, replies);
		any = true;
		if (!atomic_load_explicit(&c->cancelled,
					  memory_order_relaxed) &&
		    halo__fut_pending(c->f)) {
			if (rep.state == HALO_FUT_OK)
				halo_fut_resolve(c->f, rep.result, rep.value);
			else if (rep.state == HALO_FUT_CANCELLED)
				halo_fut_cancelled(c->f);
			else
				halo_fut_fail(c->f, (int)rep.result, NULL);
		}
		call_free(m, p, c);
	}
	if (any && p->room)
		check_room(m, dst);
}

static void room_finish(struct member *m, struct pair *p, int err)
{
	struct roomw *w;

	while ((w = p->room)) {
		p->room = w->next;
		if (halo__fut_pending(w->f)) {
			if (err)
				halo_fut_fail(w->f, err, NULL);
			else
				halo_fut_resolve(w->f, 0, NULL);
		}
		halo__fut_unref(w->f);
		halo_mem_free(&m->loop, w, sizeof(*w));
	}
}

static bool has_room(struct member *m, struct pair *p)
{
	return p->calls_out < m->g->cap && !ring_full(&p->req, m->g->cap);
}

static void check_room(struct member *m, unsigned to)
{
	struct pair *p = pair_get(m->g, m->idx, to);

	if (!p || p == SENTINEL || !p->room)
		return;
	if (ring_closed(&p->req) ||
	    member_state(m->g->m[to]) == HALO_GROUP_CLOSED) {
		room_finish(m, p, -ESHUTDOWN);
		return;
	}
	if (has_room(m, p)) {
		room_finish(m, p, 0);
		return;
	}
	atomic_store(&p->req.want_room, 1);
	if (has_room(m, p))
		room_finish(m, p, 0);
}

/* The target closed: what it replied before is in the reply ring (its
 * state was stored after), the rest never comes. */
static void peer_closed(struct member *m, unsigned to)
{
	struct pair *p = pair_get(m->g, m->idx, to);

	if (!p || p == SENTINEL)
		return;
	drain_rep(m, to);
	while (p->calls) {
		struct call *c = p->calls;

		if (!atomic_load_explicit(&c->cancelled,
					  memory_order_relaxed) &&
		    halo__fut_pending(c->f))
			halo_fut_fail(c->f, -ESHUTDOWN, NULL);
		call_free(m, p, c);
	}
	room_finish(m, p, -ESHUTDOWN);
}

/* --- the member's tasks --- */

static void begin_stop(struct member *m);

static void run_drain(halo_task *t)
{
	struct member *m =
	    (struct member *)((char *)t - offsetof(struct member, drain_task));
	halo_group *g = m->g;

	m->drain_queued = 0;
	if (m->rearm && member_state(m) != HALO_GROUP_CLOSED) {
		m->rearm = 0;
		if (efd_arm(m) < 0) {
			m->rearm = 1;
			queue_later(m);
		}
	}
	if (atomic_load_explicit(&m->stop_req, memory_order_acquire) &&
	    member_state(m) == HALO_GROUP_RUNNING)
		begin_stop(m);
	if (m->scan_all) {
		m->scan_all = 0;
		for (unsigned k = 0; k < g->n; k++) {
			struct pair *p = pair_get(g, m->idx, k);

			mark(m, k, M_REQ | M_REP | M_ROOM);
			if (p && p != SENTINEL && (p->calls || p->room) &&
			    member_state(g->m[k]) == HALO_GROUP_CLOSED)
				peer_closed(m, k);
		}
	}
	while (m->pend_n) {
		unsigned k = m->pend[--m->pend_n];
		unsigned bits = m->mark[k];

		m->mark[k] = 0;
		if (bits & M_REQ)
			drain_req(m, k);
		if (bits & M_REP)
			drain_rep(m, k);
		if (bits & M_ROOM)
			check_room(m, k);
	}
	advance_stop(m);
}

static void queue_drain(struct member *m)
{
	if (m->drain_queued)
		return;
	m->drain_queued = 1;
	m->drain_task.fn = run_drain;
	halo__ready_push(&m->loop, &m->drain_task);
}

static void run_later(halo_task *t)
{
	struct member *m =
	    (struct member *)((char *)t - offsetof(struct member, later_task));

	m->later_queued = 0;
	if (m->rearm)
		queue_drain(m);
	while (m->rebell_n) {
		unsigned k = m->rebell_list[--m->rebell_n];
		unsigned kinds = m->rebell[k];

		m->rebell[k] = 0;
		for (unsigned kind = K_REQ; kind <= K_CTRL; kind++)
			if (kinds & (1u << kind))
				bell(m, k, kind);
	}
	if (member_state(m) == HALO_GROUP_CLOSED && !m->closing_done) {
		/* One more pass of the ready queue after CLOSED: what the
		 * last completions queued runs, then the loop returns. */
		m->closing_done = 1;
		queue_later(m);
	} else if (m->closing_done) {
		halo_loop_stop(&m->loop);
	}
}

/* --- stop --- */

static void stop_fut_done(halo_fut *f, void *arg)
{
	struct member *m = arg;

	halo_fut_consume(f);
	halo_fut_release(f);
	m->stop_fut = NULL;
	advance_stop(m);
}

static void begin_stop(struct member *m)
{
	halo_group *g = m->g;
	halo_fut *f = NULL;

	atomic_store_explicit(&m->state, HALO_GROUP_STOPPING,
			      memory_order_release);
	if (g->o.on_stop)
		f = g->o.on_stop(g, &m->loop, m->idx, g->o.arg);
	if (f) {
		m->stop_fut = f;
		m->stop_w.fn = stop_fut_done;
		m->stop_w.arg = m;
		halo_fut_add_waiter(f, &m->stop_w);
	}
}

static void close_incoming(struct member *m)
{
	halo_group *g = m->g;

	for (unsigned src = 0; src < g->n; src++) {
		_Atomic(struct pair *) *slot = &g->pairs[src * g->n + m->idx];
		struct pair *p = NULL;

		if (atomic_compare_exchange_strong(slot, &p, SENTINEL))
			continue;
		if (p != SENTINEL)
			atomic_fetch_or(&p->req.tail, CLOSED_BIT);
	}
}

static void advance_stop(struct member *m)
{
	halo_group *g = m->g;
	int state = member_state(m);

	if (state == HALO_GROUP_STOPPING && !m->stop_fut) {
		close_incoming(m);
		atomic_store_explicit(&m->state, HALO_GROUP_DRAINING,
				      memory_order_release);
		/* What was published before the close runs now; the calls
		 * still served are asked to end. */
		for (unsigned src = 0; src < g->n; src++)
			drain_req(m, src);
		for (unsigned src = 0; src < g->n; src++) {
			struct pair *p = pair_get(g, src, m->idx);

			if (!p || p == SENTINEL)
				continue;
			for (struct served *s = p->served; s; s = s->next)
				halo_fut_cancel(s->f);
		}
		state = HALO_GROUP_DRAINING;
	}
	if (state != HALO_GROUP_DRAINING || m->served_n || m->calls_n)
		return;
	atomic_store_explicit(&m->state, HALO_GROUP_CLOSED,
			      memory_order_release);
	for (unsigned k = 0; k < g->n; k++) {
		struct pair *p = pair_get(g, m->idx, k);

		if (p && p != SENTINEL)
			room_finish(m, p, -ESHUTDOWN);
		if (k != m->idx && member_state(g->m[k]) != HALO_GROUP_CLOSED)
			bell(m, k, K_CTRL); /* its calls to us may wait */
	}
	if (g->msg_ring)
		m->loop.stats.inflight--; /* the doorbell stops listening */
	else if (m->rd)
		halo_fut_cancel(&m->rd->fut);
	queue_later(m);
}

/* --- sending --- */

static struct member *sender(halo_loop *from, unsigned to)
{
	struct member *m = self;

	if (!m || &m->loop != from || to >= m->g->n)
		return NULL;
	return m;
}

/* A MSG_RING doorbell leaves with the tick's io_uring_enter, after the
 * callback that rang it: the target idles while a long burst fills the
 * ring. Once a quarter of the ring waits behind an unsent doorbell, send
 * it now (one extra enter per such burst), so that the target drains
 * while this loop still produces. */
static void early_bell(struct member *m, struct pair *p)
{
	uint32_t t;

	if (p->bell_epoch != m->loop.sq_epoch) {
		p->bell_queued = 0; /* it left with an enter */
		return;
	}
	t = atomic_load_explicit(&p->req.tail, memory_order_relaxed);
	if (((t - p->req.head_cache) & IDX_MASK) < m->g->cap / 4)
		return;
	p->bell_queued = 0;
	halo__sq_flush(&m->loop);
}

static int send_msg(struct member *m, unsigned to, const struct msg *msg,
		    struct pair **pp)
{
	struct pair *p;
	union slot s;
	int r;

	if (member_state(m) == HALO_GROUP_CLOSED)
		return -ESHUTDOWN;
	p = pair_make(m->g, m->idx, to);
	if (!p)
		return -ENOMEM;
	if (p == SENTINEL)
		return -ESHUTDOWN;
	if (msg->kind == MSG_CALL && p->calls_out >= m->g->cap) {
		STAT_INC(m, full);
		return -EAGAIN;
	}
	s.m = *msg;
	r = ring_push(&p->req, m->g->cap, &s);
	if (r < 0) {
		if (r == -EAGAIN)
			STAT_INC(m, full);
		return r;
	}
	STAT_INC(m, posted);
	if (ring_should_bell(&p->req)) {
		bell(m, to, K_REQ);
		p->bell_queued = m->g->msg_ring;
		p->bell_epoch = m->loop.sq_epoch;
	} else if (p->bell_queued) {
		early_bell(m, p);
	}
	if (pp)
		*pp = p;
	return 0;
}

int halo_group_post(halo_loop *from, unsigned to, halo_group_post_fn fn,
		    void *arg)
{
	struct member *m = sender(from, to);
	struct msg msg = {.kind = MSG_POST, .fn.post = fn, .arg = arg};

	if (!m || !fn)
		return -EINVAL;
	return send_msg(m, to, &msg, NULL);
}

static void call_cancel(halo_fut *f, void *arg)
{
	struct call *c = arg;
	struct msg msg = {.kind = MSG_CANCEL, .call = c};

	atomic_store_explicit(&c->cancelled, 1, memory_order_release);
	halo_fut_cancelled(f);
	/* Best effort: with the pair full the target still finds the flag
	 * before it runs fn. */
	(void)send_msg(c->m, c->to, &msg, NULL);
}

halo_fut *halo_group_call_at(halo_loop *from, unsigned to,
			     halo_group_call_fn fn, void *arg, const char *file,
			     int line)
{
	struct member *m = sender(from, to);
	struct msg msg = {.kind = MSG_CALL, .fn.call = fn, .arg = arg};
	struct pair *p;
	struct call *c;
	halo_fut *f;
	int r;

	if (!from)
		return NULL;
	f = halo_fut_new_at(from, file, line);
	if (!f)
		return NULL;
	if (!m || !fn) {
		halo_fut_fail(f, -EINVAL, NULL);
		return f;
	}
	c = halo_mem_alloc(from, sizeof(*c));
	if (!c) {
		halo_fut_release(f);
		return NULL;
	}
	c->f = f;
	c->m = m;
	c->to = to;
	atomic_init(&c->cancelled, 0);
	msg.call = c;
	r = send_msg(m, to, &msg, &p);
	if (r < 0) {
		halo_mem_free(from, c, sizeof(*c));
		halo_fut_fail(f, r, NULL);
		return f;
	}
	f->refs++; /* the call's, until its reply */
	c->next = p->calls;
	c->pprev = &p->calls;
	if (p->calls)
		p->calls->pprev = &c->next;
	p->calls = c;
	p->calls_out++;
	m->calls_n++;
	halo_fut_set_cancel(f, call_cancel, c);
	return f;
}

halo_fut *halo_group_room(halo_loop *from, unsigned to)
{
	struct member *m = sender(from, to);
	struct roomw *w;
	struct pair *p;
	halo_fut *f = from ? halo_fut_new(from) : NULL;

	if (!f)
		return NULL;
	if (!m) {
		halo_fut_fail(f, -EINVAL, NULL);
		return f;
	}
	p = pair_make(m->g, m->idx, to);
	if (p == SENTINEL || member_state(m) == HALO_GROUP_CLOSED) {
		halo_fut_fail(f, -ESHUTDOWN, NULL);
		return f;
	}
	w = p ? halo_mem_alloc(from, sizeof(*w)) : NULL;
	if (!w) {
		halo_fut_release(f);
		return NULL;
	}
	w->f = f;
	f->refs++;
	w->next = p->room;
	p->room = w;
	check_room(m, to);
	return f;
}

/* --- start, stop, join --- */

static void member_close(struct member *m)
{
	m->leaked = halo_loop_close(&m->loop);
}

/* Start-up handshake: every loop's ring exists before any loop may be
 * sent to, and the group picks one doorbell for all. */
static int phase1_done(struct member *m, int err)
{
	halo_group *g = m->g;
	int go;

	pthread_mutex_lock(&g->mu);
	if (err && !g->phase1_err)
		g->phase1_err = err;
	g->phase1_n++;
	pthread_cond_broadcast(&g->cv);
	while (!g->go)
		pthread_cond_wait(&g->cv, &g->mu);
	go = g->go;
	pthread_mutex_unlock(&g->mu);
	return go;
}

static void init_done(struct member *m, int err)
{
	halo_group *g = m->g;

	pthread_mutex_lock(&g->mu);
	if (err && !g->init_err)
		g->init_err = err;
	g->init_n++;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
}

static void *member_main(void *arg)
{
	struct member *m = arg;
	halo_group *g = m->g;
	int r = halo_loop_init(&m->loop, &g->o.loop);
	int inited = r == 0;

	if (inited) {
		m->ring_fd = dup(m->loop.ring.ring_fd);
		if (m->ring_fd < 0)
			r = -errno;
	}
	if (phase1_done(m, r) < 0) {
		if (inited)
			member_close(m);
		return NULL;
	}
	self = m;
	if (g->msg_ring)
		m->loop.stats.inflight++; /* MSG_RING CQEs may come any time */
	else
		r = efd_arm(m);
	if (!r && g->o.init)
		r = g->o.init(g, &m->loop, m->idx, g->o.arg);
	init_done(m, r);
	while (member_state(m) != HALO_GROUP_CLOSED) {
		/* Only when the doorbell could not be armed does the loop run
		 * out of work before it closed: look at the stop flag. */
		if (atomic_load(&m->stop_req) && !m->drain_queued)
			queue_drain(m);
		r = halo_loop_run(&m->loop);
		if (r < 0) {
			m->err = r;
			break;
		}
	}
	if (member_state(m) != HALO_GROUP_CLOSED && g->msg_ring)
		m->loop.stats.inflight--;
	member_close(m);
	self = NULL;
	return NULL;
}

static int cpu_list(halo_group *g, const halo_group_opts *o)
{
	cpu_set_t set;

	if (o->cpus) {
		if (!o->cpus_n)
			return -EINVAL;
		g->cpus = calloc(o->cpus_n, sizeof(int));
		if (!g->cpus)
			return -ENOMEM;
		for (unsigned i = 0; i < o->cpus_n; i++) {
			if (o->cpus[i] < 0 || o->cpus[i] >= CPU_SETSIZE)
				return -EINVAL;
			g->cpus[i] = o->cpus[i];
		}
		g->cpus_n = o->cpus_n;
		return 0;
	}
	if (sched_getaffinity(0, sizeof(set), &set) < 0)
		return -errno;
	g->cpus = calloc((size_t)CPU_COUNT(&set), sizeof(int));
	if (!g->cpus)
		return -ENOMEM;
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &set))
			g->cpus[g->cpus_n++] = c;
	return 0;
}

static unsigned round_pow2(unsigned v)
{
	unsigned p = 1;

	while (p < v)
		p <<= 1;
	return p;
}

static void group_free(halo_group *g)
{
	if (g->pairs) {
		for (size_t i = 0; i < (size_t)g->n * g->n; i++) {
			struct pair *p = atomic_load(&g->pairs[i]);

			if (p && p != SENTINEL)
				free(p);
		}
		free(g->pairs);
	}
	for (unsigned i = 0; g->m && i < g->n; i++) {
		struct member *m = g->m[i];

		if (!m)
			continue;
		if (m->ring_fd >= 0)
			close(m->ring_fd);
		if (m->efd >= 0)
			close(m->efd);
		free(m->mark);
		free(m->rebell);
		free(m->pend);
		free(m->rebell_list);
		free(m);
	}
	if (g->has_ctl)
		io_uring_queue_exit(&g->ctl);
	pthread_mutex_destroy(&g->mu);
	pthread_mutex_destroy(&g->ctl_mu);
	pthread_cond_destroy(&g->cv);
	free(g->m);
	free(g->cpus);
	free(g);
}

static struct member *member_new(halo_group *g, unsigned idx)
{
	struct member *m = aligned_alloc(64, (sizeof(*m) + 63) & ~(size_t)63);

	if (!m)
		return NULL;
	memset(m, 0, sizeof(*m));
	m->g = g;
	m->idx = idx;
	m->ring_fd = -1;
	m->efd = -1;
	m->mark = calloc(g->n, 1);
	m->rebell = calloc(g->n, 1);
	m->pend = calloc(g->n, sizeof(unsigned));
	m->rebell_list = calloc(g->n, sizeof(unsigned));
	if (!m->mark || !m->rebell || !m->pend || !m->rebell_list) {
		free(m->mark);
		free(m->rebell);
		free(m->pend);
		free(m->rebell_list);
		free(m);
		return NULL;
	}
	return m;
}

/* After every loop's phase 1: one doorbell for all (MSG_RING only if every
 * loop has it), its resources, then go (1) or give up (-1). */
static int decide(halo_group *g, unsigned started)
{
	int go = 1;

	pthread_mutex_lock(&g->mu);
	while (g->phase1_n < started)
		pthread_cond_wait(&g->cv, &g->mu);
	if (g->phase1_err || started < g->n)
		go = -1;
	g->msg_ring = 1;
	for (unsigned i = 0; go > 0 && i < g->n; i++)
		if (!(halo_loop_features(&g->m[i]->loop) & HALO_FEAT_MSG_RING))
			g->msg_ring = 0;
	if (go > 0 && g->msg_ring) {
		if (io_uring_queue_init(8, &g->ctl, 0) < 0)
			go = -1;
		else
			g->has_ctl = 1;
	}
	for (unsigned i = 0; go > 0 && !g->msg_ring && i < g->n; i++) {
		g->m[i]->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (g->m[i]->efd < 0)
			go = -1;
	}
	g->go = go;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
	return go;
}

int halo_group_start(halo_group **out, const halo_group_opts *opts)
{
	halo_group_opts o = opts ? *opts : (halo_group_opts){0};
	halo_group *g;
	unsigned started = 0;
	int r;

	*out = NULL;
	if (o.count > HALO_GROUP_MAX || o.pair_inflight > MAX_PAIR_INFLIGHT)
		return -EINVAL;
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	pthread_mutex_init(&g->mu, NULL);
	pthread_mutex_init(&g->ctl_mu, NULL);
	pthread_cond_init(&g->cv, NULL);
	g->o = o;
	g->cap = round_pow2(o.pair_inflight ? o.pair_inflight
					    : DEFAULT_PAIR_INFLIGHT);
	r = cpu_list(g, &o);
	if (r < 0)
		goto fail;
	g->n = o.count ? o.count : g->cpus_n;
	r = -EINVAL;
	if (!g->n || g->n > HALO_GROUP_MAX)
		goto fail;
	r = -ENOMEM;
	g->m = calloc(g->n, sizeof(*g->m));
	g->pairs = calloc((size_t)g->n * g->n, sizeof(*g->pairs));
	if (!g->m || !g->pairs)
		goto fail;
	for (unsigned i = 0; i < g->n; i++)
		if (!(g->m[i] = member_new(g, i)))
			goto fail;
	for (; started < g->n; started++) {
		struct member *m = g->m[started];
		pthread_attr_t attr;
		cpu_set_t set;

		pthread_attr_init(&attr);
		if (!o.no_pin && g->cpus_n) {
			CPU_ZERO(&set);
			CPU_SET(g->cpus[started % g->cpus_n], &set);
			pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
		}
		r = -pthread_create(&m->thread, &attr, member_main, m);
		pthread_attr_destroy(&attr);
		if (r < 0)
			break;
		m->started = 1;
	}
	if (decide(g, started) < 0) {
		for (unsigned i = 0; i < started; i++)
			pthread_join(g->m[i]->thread, NULL);
		if (r >= 0)
			r = g->phase1_err ? g->phase1_err : -ENOMEM;
		goto fail;
	}
	pthread_mutex_lock(&g->mu);
	while (g->init_n < g->n)
		pthread_cond_wait(&g->cv, &g->mu);
	r = g->init_err;
	pthread_mutex_unlock(&g->mu);
	if (r < 0) {
		halo_group_stop(g);
		return r;
	}
	*out = g;
	return 0;
fail:
	group_free(g);
	return r;
}

void halo_group_request_stop(halo_group *g)
{
	if (atomic_exchange(&g->stop_asked, 1))
		return;
	for (unsigned i = 0; i < g->n; i++) {
		atomic_store_explicit(&g->m[i]->stop_req, 1,
				      memory_order_release);
		ctl_bell(g, i);
	}
}

int halo_group_join(halo_group *g)
{
	int sum = 0, err = 0;

	if (self && self->g == g)
		return -EDEADLK;
	for (unsigned i = 0; i < g->n; i++) {
		struct member *m = g->m[i];

		pthread_join(m->thread, NULL);
		sum += m->leaked;
		if (m->err && !err)
			err = m->err;
	}
	group_free(g);
	return err ? err : sum;
}

int halo_group_stop(halo_group *g)
{
	if (self && self->g == g)
		return -EDEADLK;
	halo_group_request_stop(g);
	return halo_group_join(g);
}

/* --- queries --- */

halo_group *halo_group_self(unsigned *index)
{
	if (!self)
		return NULL;
	if (index)
		*index = self->idx;
	return self->g;
}

int halo_group_index(const halo_loop *loop)
{
	return self && &self->loop == loop ? (int)self->idx : -1;
}

unsigned halo_group_size(const halo_group *g)
{
	return g->n;
}

int halo_group_uses_msg_ring(const halo_group *g)
{
	return g->msg_ring;
}

int halo_group_state(const halo_group *g, unsigned index)
{
	return index < g->n ? member_state(g->m[index]) : -EINVAL;
}

void halo_group_stats_get(const halo_group *g, unsigned index,
			  halo_group_stats *out)
{
	const struct member *m;

	memset(out, 0, sizeof(*out));
	if (index >= g->n)
		return;
	m = g->m[index];
	out->posted = atomic_load_explicit(&m->st.posted, memory_order_relaxed);
	out->received =
	    atomic_load_explicit(&m->st.received, memory_order_relaxed);
	out->replies =
	    atomic_load_explicit(&m->st.replies, memory_order_relaxed);
	out->bells = atomic_load_explicit(&m->st.bells, memory_order_relaxed);
	out->wakeups =
	    atomic_load_explicit(&m->st.wakeups, memory_order_relaxed);
	out->full = atomic_load_explicit(&m->st.full, memory_order_relaxed);
	out->bounced =
	    atomic_load_explicit(&m->st.bounced, memory_order_relaxed);
}

void halo_group_load_add(halo_group *g, unsigned index, int delta)
{
	if (index < g->n)
		atomic_fetch_add_explicit(&g->m[index]->load, delta,
					  memory_order_relaxed);
}

long halo_group_load(const halo_group *g, unsigned index)
{
	return index < g->n ? atomic_load_explicit(&g->m[index]->load,
						   memory_order_relaxed)
			    : 0;
}

unsigned halo_group_least_loaded(const halo_group *g)
{
	unsigned best = 0;
	long best_load = 0;
	bool found = false;

	for (unsigned i = 0; i < g->n; i++) {
		long l =
		    atomic_load_explicit(&g->m[i]->load, memory_order_relaxed);

		if (member_state(g->m[i]) != HALO_GROUP_RUNNING)
			continue;
		if (!found || l < best_load) {
			best = i;
			best_load = l;
			found = true;
		}
	}
	return best;
}

void halo_group_set_slot(halo_loop *loop, unsigned slot, void *p)
{
	struct member *m = self;

	if (m && &m->loop == loop && slot < HALO_GROUP_SLOTS)
		atomic_store_explicit(&m->slot[slot], p, memory_order_release);
}

void *halo_group_slot(const halo_group *g, unsigned index, unsigned slot)
{
	if (index >= g->n || slot >= HALO_GROUP_SLOTS)
		return NULL;
	return atomic_load_explicit(&g->m[index]->slot[slot],
				    memory_order_acquire);
}
