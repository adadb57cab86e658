/* The connection layer. Each connection holds the ring buffers its
 * multishot recv handed it (linked through the server's bid_next), a carry
 * buffer for input a callback left unconsumed, and an output queue that the
 * prepare hook sends with one send per tick. Deadlines live on four lists,
 * one per kind, each sorted by key: a connection is filed at its due time
 * (now + that kind's length, so nearly always at the tail), and moves only
 * when a new deadline comes before its key; a later one (a renewal, idle
 * after a write) is noted in the connection and the timer files it again
 * when the key comes. One loop timer at the earliest head serves them all.
 * An idle deadline renewed by the kernel's word (bytes in, a send done)
 * counts from halo_loop_event_now(), one clock read per batch of
 * completions; one over output user code queued, or that user code sets,
 * counts from halo_loop_now(), one read per callback that asks. */
#include "server.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../io/file.h"
#include "../io/net.h"
#include "../runtime/fiber.h"
#include "../runtime/group.h"
#include "../runtime/pool.h"
#include "../runtime/timer.h"

#define NO_BID 0xffffu
#define OUT_MIN 4096u
#define OUT_KEEP 16384u /* an emptied queue larger than this is freed */
#define BACKOFF_MIN_NS 10000000ull
#define BACKOFF_MAX_NS 1000000000ull

#if defined(__SANITIZE_ADDRESS__)
#define DEFAULT_STACK (256u * 1024u)
#else
#define DEFAULT_STACK (32u * 1024u)
#endif

enum { DL_IDLE, DL_HEAD, DL_WRITE, DL_CLOSE, DL_N, DL_NONE = DL_N };

struct dl_list {
	halo_conn *head, *tail;
};

struct halo_conn {
	/* Bytes 0-191: what every request touches (receive, read, write,
	 * send, its completion), three cache lines that are cold again by
	 * the time a connection's next request comes when there are many. */
	halo_server *srv;
	halo_conn *dirty_next; /* waiting for the flush hook */
	uint64_t key;	       /* its place in list dl: at or before due */
	uint64_t due;	       /* when the deadline of its kind comes */
	char *out, *out_old;   /* out_old: moved while the kernel read it */
	size_t out_off, out_len, out_cap;
	/* close(2) starts once no send is in flight: they share a slot, which
	 * keeps a connection in 256 bytes (jemalloc's next class is 320). */
	union {
		halo_fut *send;
		halo_fut *close_op;
	};
	union {
		halo_waiter send_w;
		halo_waiter close_w;
	};
	halo_fut *wake; /* the fiber parked on c, if one is */
	size_t carry_len;
	int fd;
	int rerr;		   /* the receive's error, 0 */
	uint32_t in_off;	   /* bytes of in_head already consumed */
	uint16_t in_head, in_tail; /* held ring buffers, oldest first */
	int reason;		   /* why it closes: 0 or -errno */
	uint8_t dl;		   /* the list it sits on, or DL_NONE */
	uint8_t kind;		   /* the deadline it is under, or DL_NONE */
	uint8_t eof, closing, forced, dirty, delivering, fiber_done, finished;
	uint8_t reading; /* its fiber waits for input, not for the queue */
	/* The rest: opening, closing, deadline moves, callbacks' carry. */
	halo_recv_ms *rh;
	halo_conn *prev, *next;	      /* every open connection */
	halo_conn *dl_prev, *dl_next; /* its deadline list */
	halo_conn *zombie_next;	      /* on the server's zombies */
	char *carry;		      /* unconsumed input, max_in bytes */
	size_t out_old_cap;
	halo_fut *fiber;
	halo_waiter fiber_w;
	void *data;
};
_Static_assert(sizeof(struct halo_conn) <= 256, "one connection, 256 bytes");

struct halo_server {
	halo_loop *loop;
	halo_server_opts o;
	int lfd, own_lfd;
	halo_bufring *br;
	uint16_t *bid_next;
	uint32_t *bid_len;
	halo_accept_ms *acc;
	halo_fut *backoff;
	halo_waiter backoff_w;
	uint64_t backoff_ns;
	int logged;
	halo_conn *conns;
	struct dl_list dl[DL_N];
	uint64_t dl_ns[DL_N];
	halo_fut *timer;
	halo_waiter timer_w;
	uint64_t timer_at;
	halo_conn *dirty;
	halo_hook hook;
	halo_server_stats st;
	int stopping;
	halo_fut *drain;
	halo_waiter drain_w;
	halo_fut *stopped;
	unsigned closing_n; /* close(2) ops in flight, and zombies */
	halo_conn *zombies; /* closed without a close op (no memory for
			       one): the flush hook frees them */
	halo_group *group;  /* the loop's group, if any: load, hand-off */
	unsigned gidx;
};

static void conn_close(halo_conn *c, int reason, bool force);
static void try_finish(halo_conn *c);
static void deliver(halo_conn *c, bool progress);
static void start_accept(halo_server *s);
static void check_stopped(halo_server *s);
static void conn_free(halo_conn *c);

static bool is_fiber_style(const halo_server *s)
{
	return s->o.fiber != NULL;
}

static size_t queued(const halo_conn *c)
{
	return c->out_len - c->out_off;
}

/* --- deadlines --- */

static void on_timer(halo_fut *f, void *arg);

static void arm_timer(halo_server *s, uint64_t at)
{
	if (s->timer && s->timer_at <= at)
		return;
	if (s->timer) {
		halo_fut_remove_waiter(s->timer, &s->timer_w);
		halo_fut_cancel(s->timer);
		halo_fut_release(s->timer);
	}
	s->timer = halo_timer_at(s->loop, at);
	if (!s->timer)
		return; /* out of memory: the next arm tries again */
	s->timer_at = at;
	s->timer_w.fn = on_timer;
	s->timer_w.arg = s;
	halo_fut_add_waiter(s->timer, &s->timer_w);
}

/* Take c off the list it sits on. */
static void dl_unfile(halo_conn *c)
{
	struct dl_list *l;

	if (c->dl == DL_NONE)
		return;
	l = &c->srv->dl[c->dl];
	if (c->dl_prev)
		c->dl_prev->dl_next = c->dl_next;
	else
		l->head = c->dl_next;
	if (c->dl_next)
		c->dl_next->dl_prev = c->dl_prev;
	else
		l->tail = c->dl_prev;
	c->dl_prev = c->dl_next = NULL;
	c->dl = DL_NONE;
}

/* c is under no deadline any more. */
static void dl_unlink(halo_conn *c)
{
	dl_unfile(c);
	c->kind = DL_NONE;
}

/* Put c on list k at key, in its sorted place, looked for walking back
 * from p (a list entry or NULL); returns the entry c went after (NULL: the
 * head), where a smaller key's walk can go on. */
static halo_conn *dl_place(halo_conn *c, unsigned k, uint64_t key,
			   halo_conn *p)
{
	struct dl_list *l = &c->srv->dl[k];

	while (p && p->key > key)
		p = p->dl_prev;
	c->dl_prev = p;
	c->dl_next = p ? p->dl_next : l->head;
	if (c->dl_next)
		c->dl_next->dl_prev = c;
	else
		l->tail = c;
	if (p)
		p->dl_next = c;
	else
		l->head = c;
	c->key = key;
	c->dl = (uint8_t)k;
	return p;
}

/* Put c on list k at key: looked for from the tail, where nearly every key
 * lands (a list takes now + its kind's length). */
static void dl_file(halo_conn *c, unsigned k, uint64_t key)
{
	dl_place(c, k, key, c->srv->dl[k].tail);
}

/* Put c under deadline kind, due at due. c moves only when due comes before
 * its place (key) in the lists; a later deadline (a renewal, or idle after
 * a write) is only noted, and the timer files c again when it reaches the
 * key. So a connection that keeps busy costs no list work per event, and
 * no deadline is missed: every key is at or before its due time. */
static void dl_set(halo_conn *c, unsigned kind, uint64_t due)
{
	c->kind = (uint8_t)kind;
	c->due = due;
	if (c->dl != DL_NONE && c->key <= due)
		return;
	dl_unfile(c);
	dl_file(c, kind, due);
	arm_timer(c->srv, due);
}

/* Put c under deadline kind, counted from at: the time of a completion
 * that moves it (halo_loop_event_now), or 0 when user code moves it. */
static void dl_arm(halo_conn *c, unsigned kind, uint64_t at)
{
	halo_server *s = c->srv;

	/* The close deadline reads the clock itself: a close often comes at
	 * the end of a callback's or a fiber's work, which the tick's cached
	 * time predates by however long that work ran, and a close deadline
	 * cut short by it would force out output the peer was still taking.
	 * Once per connection, off the per-request path. */
	if (!at)
		at = kind == DL_CLOSE ? halo_now_ns() : halo_loop_now(s->loop);
	dl_set(c, kind, at + s->dl_ns[kind]);
}

/* The deadline for what c is doing now; progress says bytes moved, which
 * renews an idle or write deadline (a head deadline runs from the request's
 * first byte, whatever arrives after). at: as for dl_arm. */
static void dl_update(halo_conn *c, bool progress, uint64_t at)
{
	if (c->closing)
		return;
	if (queued(c)) {
		if (c->kind != DL_WRITE || progress)
			dl_arm(c, DL_WRITE, at);
	} else if (c->carry_len) {
		if (c->kind != DL_HEAD)
			dl_arm(c, DL_HEAD, at);
	} else if (c->kind != DL_IDLE || progress) {
		dl_arm(c, DL_IDLE, at);
	}
}

static void expire(halo_conn *c)
{
	halo_server *s = c->srv;
	unsigned kind = c->kind;

	dl_unlink(c);
	switch (kind) {
	case DL_IDLE:
		s->st.timeouts_idle++;
		break;
	case DL_HEAD:
		s->st.timeouts_head++;
		break;
	case DL_WRITE:
		s->st.timeouts_write++;
		break;
	default:
		s->st.timeouts_close++;
		break;
	}
	conn_close(c, -ETIMEDOUT, true);
}

/* Sort a chain linked through dl_next by due, earliest first: a merge
 * sort, O(n log n) and no memory. */
static halo_conn *sort_by_due(halo_conn *h)
{
	halo_conn *a, *b, *slow = h, *fast, head, *t = &head;

	if (!h || !h->dl_next)
		return h;
	for (fast = h->dl_next; fast && fast->dl_next;
	     fast = fast->dl_next->dl_next)
		slow = slow->dl_next;
	b = sort_by_due(slow->dl_next);
	slow->dl_next = NULL;
	a = sort_by_due(h);
	while (a && b) {
		halo_conn **min = a->due <= b->due ? &a : &b;

		t->dl_next = *min;
		t = *min;
		*min = (*min)->dl_next;
	}
	t->dl_next = a ? a : b;
	return head.dl_next;
}

/* File a chain sorted by due on list k, each at its due: one walk back
 * from the tail for the whole chain, latest first, so that a burst of n
 * renewed connections costs n log n (the sort) plus the part of the list
 * they pass, not n walks of it. */
static void dl_file_chain(halo_server *s, unsigned k, halo_conn *h)
{
	halo_conn *c, *p = s->dl[k].tail, *last = NULL, *prev;

	for (c = h; c; c = c->dl_next) {
		c->dl_prev = last;
		last = c;
	}
	for (c = last; c; c = prev) {
		prev = c->dl_prev;
		p = dl_place(c, k, c->due, p);
	}
}

/* Each list head whose key has come is either due (expire it) or was
 * renewed since it was filed (file it again at its due time). The renewed
 * ones go first, all together: connections filed in one burst (a wave of
 * accepts) come up in one burst, and their renewals are in no order. */
static void on_timer(halo_fut *f, void *arg)
{
	halo_server *s = arg;
	uint64_t now = halo_now_ns(), next = UINT64_MAX;
	halo_conn *renewed[DL_N] = {NULL};

	halo_fut_release(f);
	s->timer = NULL;
	/* No user code runs in this pass: nothing else moves the chains. */
	for (unsigned k = 0; k < DL_N; k++) {
		halo_conn *c, *nx;

		for (c = s->dl[k].head; c && c->key <= now; c = nx) {
			nx = c->dl_next;
			if (c->due > now) {
				dl_unfile(c);
				c->dl_next = renewed[c->kind];
				renewed[c->kind] = c;
			}
		}
	}
	for (unsigned k = 0; k < DL_N; k++)
		if (renewed[k])
			dl_file_chain(s, k, sort_by_due(renewed[k]));
	/* Expiring runs on_close, which may renew others: those are filed
	 * again one by one, as before. */
	for (unsigned k = 0; k < DL_N; k++) {
		halo_conn *c;

		while ((c = s->dl[k].head) && c->key <= now) {
			if (c->due <= now) {
				expire(c);
			} else {
				dl_unfile(c);
				dl_file(c, c->kind, c->due);
			}
		}
	}
	for (unsigned k = 0; k < DL_N; k++)
		if (s->dl[k].head && s->dl[k].head->key < next)
			next = s->dl[k].head->key;
	if (next != UINT64_MAX)
		arm_timer(s, next);
}

/* --- output --- */

static void mark_dirty(halo_conn *c)
{
	if (c->dirty || c->finished)
		return;
	c->dirty = 1;
	c->dirty_next = c->srv->dirty;
	c->srv->dirty = c;
}

/* Make room for n more bytes. The bytes a send in flight reads must not
 * move: growing then copies into a new buffer and keeps the old one until
 * the send completes. */
static int out_reserve(halo_conn *c, size_t n)
{
	halo_loop *loop = c->srv->loop;
	size_t q = queued(c), cap;
	char *nb;

	if (c->out_len + n <= c->out_cap)
		return 0;
	if (!c->send && q + n <= c->out_cap) {
		memmove(c->out, c->out + c->out_off, q);
		c->out_off = 0;
		c->out_len = q;
		return 0;
	}
	for (cap = c->out_cap ? c->out_cap : OUT_MIN; cap < q + n; cap *= 2)
		;
	nb = halo_mem_alloc(loop, cap);
	if (!nb)
		return -ENOMEM;
	if (q)
		memcpy(nb, c->out + c->out_off, q);
	if (c->send && !c->out_old) {
		/* The send in flight reads this one: keep it until then. */
		c->out_old = c->out;
		c->out_old_cap = c->out_cap;
	} else if (c->out) {
		halo_mem_free(loop, c->out, c->out_cap);
	}
	c->out = nb;
	c->out_cap = cap;
	c->out_off = 0;
	c->out_len = q;
	return 0;
}

static void out_free(halo_conn *c)
{
	halo_loop *loop = c->srv->loop;

	if (c->out)
		halo_mem_free(loop, c->out, c->out_cap);
	c->out = NULL;
	c->out_cap = c->out_off = c->out_len = 0;
}

static void wake_fiber(halo_conn *c)
{
	if (c->wake)
		halo_fiber_unpark(c->wake, 0);
}

static void on_sent(halo_fut *f, void *arg)
{
	halo_conn *c = arg;
	halo_server *s = c->srv;
	int64_t r = halo_fut_result(f);

	halo_fut_release(f);
	c->send = NULL;
	if (c->out_old) {
		halo_mem_free(s->loop, c->out_old, c->out_old_cap);
		c->out_old = NULL;
	}
	if (r > 0) {
		s->st.bytes_out += (uint64_t)r;
		c->out_off += (size_t)r;
	}
	if (r <= 0 || c->forced || c->out_off == c->out_len) {
		/* Sent, or never to be: a failed send means the peer is
		 * gone, a forced close drops what is left. */
		c->out_off = c->out_len = 0;
		if (c->out_cap > OUT_KEEP)
			out_free(c);
	}
	if (r <= 0 && !c->closing)
		conn_close(c, r < 0 ? (int)r : -EPIPE, true);
	if (queued(c) && !c->forced)
		mark_dirty(c);
	/* From the send's completion, no earlier than it whatever ran
	 * since; but a deadline over output still queued counts from now,
	 * as that output may have been written after the reap. */
	dl_update(c, r > 0, queued(c) ? 0 : halo_loop_event_now(s->loop));
	/* A fiber waiting for input gains nothing from a send: waking it
	 * would cost two stack switches per request for a read that finds
	 * nothing. Only a stop, which ends an idle read once the queue is
	 * out, concerns it. */
	if (queued(c) < s->o.max_out &&
	    (!c->reading || (s->stopping && !queued(c))))
		wake_fiber(c);
	if (!is_fiber_style(s) && queued(c) <= s->o.max_out / 2)
		deliver(c, false);
	if (c->closing)
		try_finish(c);
}

static void start_send(halo_conn *c)
{
	halo_server *s = c->srv;
	halo_fut *f;

	if (c->send || !queued(c) || c->forced || c->finished)
		return;
	f = halo_send(s->loop, c->fd, c->out + c->out_off, queued(c),
		      MSG_NOSIGNAL);
	if (!f) {
		mark_dirty(c); /* out of slots: next tick */
		return;
	}
	s->st.sends++;
	c->send = f;
	c->send_w.fn = on_sent;
	c->send_w.arg = c;
	halo_fut_add_waiter(f, &c->send_w);
}

/* Step 2 of the tick: everything a connection queued this tick leaves in
 * one send, in this tick's io_uring_enter. */
static int flush_hook(halo_loop *loop, void *arg)
{
	halo_server *s = arg;
	halo_conn *c = s->dirty;

	(void)loop;
	if (s->stopping)
		check_stopped(s);
	s->dirty = NULL;
	while (c) {
		halo_conn *next = c->dirty_next;

		c->dirty = 0;
		start_send(c);
		c = next;
	}
	while ((c = s->zombies)) {
		s->zombies = c->zombie_next;
		s->closing_n--;
		s->st.open--;
		conn_free(c);
		check_stopped(s);
	}
	return s->dirty != NULL;
}

/* --- input --- */

static void in_pop(halo_conn *c)
{
	halo_server *s = c->srv;
	uint16_t bid = c->in_head;

	c->in_head = s->bid_next[bid];
	if (c->in_head == NO_BID)
		c->in_tail = NO_BID;
	c->in_off = 0;
	halo_bufring_return(s->br, bid);
}

static void in_drop(halo_conn *c)
{
	while (c->in_head != NO_BID)
		in_pop(c);
}

static void recv_stop(halo_conn *c)
{
	if (c->rh) {
		halo_recv_ms_stop(c->rh);
		c->rh = NULL;
	}
	in_drop(c);
}

static bool is_idle(const halo_conn *c)
{
	return c->in_head == NO_BID && !c->carry_len && !queued(c);
}

/* Append held input to carry, as much as fits (one buffer's worth if one). */
static void carry_fill(halo_conn *c, bool one)
{
	halo_server *s = c->srv;

	while (c->in_head != NO_BID && c->carry_len < s->o.max_in) {
		uint16_t bid = c->in_head;
		size_t n = s->bid_len[bid] - c->in_off;

		if (n > s->o.max_in - c->carry_len)
			n = s->o.max_in - c->carry_len;
		memcpy(c->carry + c->carry_len,
		       (char *)halo_bufring_buf(s->br, bid) + c->in_off, n);
		c->carry_len += n;
		c->in_off += (uint32_t)n;
		if (c->in_off == s->bid_len[bid])
			in_pop(c);
		if (one)
			break;
	}
}

/* Callback style: hand what is held to on_data until it stops consuming,
 * the output queue is over max_out, or c closes. Input is parsed in place
 * in the ring buffer; only what a callback leaves is copied aside. The
 * deadline is set once, at the end, for what c is doing then: progress says
 * bytes came in. */
static void deliver(halo_conn *c, bool progress)
{
	halo_server *s = c->srv;
	void *arg = s->o.arg;

	if (c->delivering || c->closing)
		return;
	c->delivering = 1;
	while (!c->closing) {
		const char *data;
		size_t len, used;
		bool in_carry = c->carry_len != 0;

		if (queued(c) > s->o.max_out) {
			s->st.write_waits++;
			break; /* on_sent delivers again */
		}
		if (in_carry) {
			data = c->carry;
			len = c->carry_len;
		} else if (c->in_head != NO_BID) {
			data = (char *)halo_bufring_buf(s->br, c->in_head) +
			       c->in_off;
			len = s->bid_len[c->in_head] - c->in_off;
		} else {
			break;
		}
		used = s->o.cbs->on_data(c, data, len, arg);
		if (c->closing)
			break; /* it closed c: the held input is gone */
		if (used > len)
			used = len;
		if (in_carry) {
			memmove(c->carry, c->carry + used, len - used);
			c->carry_len -= used;
		} else {
			c->in_off += (uint32_t)used;
			if (c->in_off == s->bid_len[c->in_head])
				in_pop(c);
		}
		if (used)
			continue;
		/* A partial request: gather it in carry with what follows. */
		if (!c->carry && !(c->carry = halo_mem_alloc(s->loop,
							      s->o.max_in))) {
			conn_close(c, -ENOMEM, true);
			break;
		}
		if (!in_carry) {
			carry_fill(c, true); /* the rest of this buffer */
			if (c->in_head == NO_BID)
				break; /* wait for more */
		} else if (c->in_head == NO_BID) {
			break;
		}
		if (c->carry_len == s->o.max_in) {
			conn_close(c, -EMSGSIZE, true);
			break;
		}
		carry_fill(c, false);
	}
	c->delivering = 0;
	if (c->closing)
		return;
	dl_update(c, progress, 0); /* after on_data's work */
	if (c->in_head == NO_BID && (c->eof || c->rerr)) {
		/* The peer is done; so are we once the output is out. */
		conn_close(c, c->rerr, c->rerr != 0);
	} else if (s->stopping && is_idle(c)) {
		conn_close(c, 0, false);
	}
}

static void on_recv(halo_recv_ms *h, int res, void *data, uint16_t bid,
		    void *arg)
{
	halo_conn *c = arg;
	halo_server *s = c->srv;

	(void)h;
	(void)data;
	if (res <= 0) {
		c->rh = NULL; /* the handle is gone */
		if (res == 0)
			c->eof = 1;
		else
			c->rerr = res;
	} else {
		s->st.bytes_in += (uint64_t)res;
		s->bid_len[bid] = (uint32_t)res;
		s->bid_next[bid] = NO_BID;
		if (c->in_tail != NO_BID)
			s->bid_next[c->in_tail] = bid;
		else
			c->in_head = bid;
		c->in_tail = bid;
	}
	if (is_fiber_style(s)) {
		if (res > 0)
			dl_update(c, true, queued(c) ? 0 :
					halo_loop_event_now(s->loop));
		wake_fiber(c);
	} else {
		deliver(c, res > 0);
	}
}

/* --- connection life --- */

static void conn_free(halo_conn *c)
{
	halo_server *s = c->srv;

	if (s->group)
		halo_group_load_add(s->group, s->gidx, -1);
	out_free(c);
	if (c->carry)
		halo_mem_free(s->loop, c->carry, s->o.max_in);
	if (c->fiber)
		halo_fut_release(c->fiber);
	halo_mem_free(s->loop, c, sizeof(*c));
}

static void check_stopped(halo_server *s)
{
	if (!s->stopping || s->conns || s->closing_n || s->acc || s->backoff ||
	    halo_fut_is_done(s->stopped))
		return;
	/* Stopped recvs may still have a CQE to come: ring_idle looks again
	 * once the ring is theirs no more. */
	if (halo_bufring_handles(s->br))
		return;
	if (s->drain) {
		halo_fut_remove_waiter(s->drain, &s->drain_w);
		halo_fut_cancel(s->drain);
		halo_fut_release(s->drain);
		s->drain = NULL;
	}
	if (s->timer) {
		halo_fut_remove_waiter(s->timer, &s->timer_w);
		halo_fut_cancel(s->timer);
		halo_fut_release(s->timer);
		s->timer = NULL;
	}
	halo_fut_resolve(s->stopped, 0, NULL);
}

/* The last stopped recv let go of the ring: the stop may be over. */
static void ring_idle(halo_bufring *br, void *arg)
{
	halo_server *s = arg;

	(void)br;
	if (s->stopping)
		check_stopped(s);
}

static void on_closed(halo_fut *f, void *arg)
{
	halo_conn *c = arg;
	halo_server *s = c->srv;

	halo_fut_release(f);
	s->closing_n--;
	s->st.open--;
	conn_free(c);
	check_stopped(s);
}

/* Close c for good once nothing of it is in flight: its fiber ended, no
 * send is in the kernel, and (unless forced) its output was sent. */
static void try_finish(halo_conn *c)
{
	halo_server *s = c->srv;

	if (c->finished || (c->fiber && !c->fiber_done) || c->send)
		return;
	if (queued(c) && !c->forced) {
		mark_dirty(c);
		return;
	}
	c->finished = 1;
	dl_unlink(c);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (s->o.cbs && s->o.cbs->on_close)
		s->o.cbs->on_close(c, c->reason, s->o.arg);
	c->close_op = halo_close(s->loop, c->fd);
	if (!c->close_op) {
		/* No memory for the close op: close here, but leave c to the
		 * flush hook to free, as on_closed would later: the caller
		 * (on_sent, conn_close, deliver) still looks at c, and c may
		 * still be on the dirty list. */
		close(c->fd);
		s->closing_n++;
		c->zombie_next = s->zombies;
		s->zombies = c;
		return;
	}
	s->closing_n++;
	c->close_w.fn = on_closed;
	c->close_w.arg = c;
	halo_fut_add_waiter(c->close_op, &c->close_w);
}

/* Stop taking input; send what is queued under the close deadline (unless
 * forced: then cancel the send and the fiber), then close. */
static void conn_close(halo_conn *c, int reason, bool force)
{
	if (c->finished)
		return;
	if (!c->closing) {
		c->closing = 1;
		c->reason = reason;
		recv_stop(c);
		c->carry_len = 0;
		dl_arm(c, DL_CLOSE, 0);
	}
	if (force && !c->forced) {
		c->forced = 1;
		if (!c->reason)
			c->reason = reason; /* a clean close that timed out */
		if (c->send)
			halo_fut_cancel(c->send); /* on_sent drops the rest */
		else
			c->out_off = c->out_len = 0;
		if (c->fiber && !c->fiber_done)
			halo_fut_cancel(c->fiber);
	}
	wake_fiber(c);
	try_finish(c);
}

static void on_fiber_done(halo_fut *f, void *arg)
{
	halo_conn *c = arg;

	(void)f;
	c->fiber_done = 1;
	halo_fut_consume(f);
	conn_close(c, c->closing ? c->reason : 0, false);
}

static int64_t conn_fiber(halo_loop *loop, void *arg)
{
	halo_conn *c = arg;

	(void)loop;
	return c->srv->o.fiber(c, c->srv->o.arg);
}

static void conn_open(halo_server *s, int fd)
{
	halo_recv_ms_opts ro = {
		.max_held = s->o.max_held,
		.flags = s->o.recv_bundle ? HALO_RECV_MS_BUNDLE : 0,
	};
	int one = 1, err = 0;
	halo_conn *c;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c = halo_mem_zalloc(s->loop, sizeof(*c));
	if (!c) {
		close(fd);
		s->st.refused++;
		return;
	}
	c->srv = s;
	c->fd = fd;
	c->in_head = c->in_tail = NO_BID;
	c->dl = c->kind = DL_NONE;
	c->rh = halo_recv_ms_start_opts(s->loop, fd, s->br, on_recv, c, &ro,
					&err);
	if (c->rh && is_fiber_style(s)) {
		halo_fiber_opts fo = {.stack_size = s->o.stack_size};

		c->fiber = halo_spawn_opts(s->loop, conn_fiber, c, &fo);
		if (!c->fiber) {
			halo_recv_ms_stop(c->rh);
			c->rh = NULL;
		}
	}
	if (!c->rh) {
		close(fd);
		halo_mem_free(s->loop, c, sizeof(*c));
		s->st.refused++;
		return;
	}
	if (c->fiber) {
		c->fiber_w.fn = on_fiber_done;
		c->fiber_w.arg = c;
		halo_fut_add_waiter(c->fiber, &c->fiber_w);
	}
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->st.accepted++;
	if (s->group)
		halo_group_load_add(s->group, s->gidx, 1);
	if (++s->st.open > s->st.open_peak)
		s->st.open_peak = s->st.open;
	dl_arm(c, DL_IDLE, 0);
	if (s->o.cbs && s->o.cbs->on_open && s->o.cbs->on_open(c, s->o.arg) < 0) {
		s->st.refused++;
		conn_close(c, -ECONNREFUSED, true);
	}
}

/* --- connections across a group of loops --- */

/* On the loop the acceptor chose: the acceptor reserved a unit of load
 * for the connection, which conn_open() now counts for real. */
static void adopt_msg(halo_loop *loop, void *arg)
{
	int fd = (int)(intptr_t)arg;
	unsigned idx;
	halo_group *g = halo_group_self(&idx);
	halo_server *s = halo_group_slot(g, idx, HALO_GROUP_SLOT_SERVER);

	(void)loop;
	halo_group_load_add(g, idx, -1);
	if (halo_server_adopt(s, fd) < 0)
		close(fd);
}

/* Pass fd to the least loaded loop of the group that serves; true if it
 * went (else it is served here). */
static bool hand_off(halo_server *s, int fd)
{
	halo_group *g = s->group;
	unsigned k = halo_group_least_loaded(g);

	if (k == s->gidx || !halo_group_slot(g, k, HALO_GROUP_SLOT_SERVER))
		return false;
	halo_group_load_add(g, k, 1);
	if (halo_group_post(s->loop, k, adopt_msg, (void *)(intptr_t)fd) < 0) {
		/* That pair is full or the loop stops: serve here. */
		halo_group_load_add(g, k, -1);
		return false;
	}
	s->st.handed_off++;
	return true;
}

int halo_server_adopt(halo_server *s, int fd)
{
	if (!s || fd < 0)
		return -EINVAL;
	if (s->stopping)
		return -ESHUTDOWN;
	if (s->st.open >= s->o.max_conns) {
		s->st.refused++;
		return -ECONNREFUSED;
	}
	s->st.adopted++;
	conn_open(s, fd);
	return 0;
}

/* --- accept --- */

static void on_backoff(halo_fut *f, void *arg)
{
	halo_server *s = arg;

	halo_fut_release(f);
	s->backoff = NULL;
	if (s->stopping)
		check_stopped(s);
	else
		start_accept(s);
}

static bool is_transient(int err)
{
	return err == -EMFILE || err == -ENFILE || err == -ENOBUFS ||
	       err == -ENOMEM;
}

static void accept_failed(halo_server *s, int err)
{
	s->acc = NULL;
	if (s->stopping) {
		check_stopped(s);
		return;
	}
	if (is_transient(err) || err == -EBUSY) {
		s->st.accept_backoffs++;
		if (!s->logged) {
			fprintf(stderr,
				"halo server: accept: %s; backing off and "
				"retrying (logged once)\n",
				strerror(-err));
			s->logged = 1;
		}
		s->backoff = halo_timer_after(s->loop, s->backoff_ns);
		if (s->backoff_ns < BACKOFF_MAX_NS)
			s->backoff_ns *= 2;
		if (s->backoff) {
			s->backoff_w.fn = on_backoff;
			s->backoff_w.arg = s;
			halo_fut_add_waiter(s->backoff, &s->backoff_w);
			return;
		}
	}
	if (s->o.on_accept_error)
		s->o.on_accept_error(s, err, s->o.arg);
	else
		fprintf(stderr, "halo server: accept stopped: %s\n",
			strerror(-err));
}

static void on_accept(halo_accept_ms *h, int fd, void *arg)
{
	halo_server *s = arg;

	(void)h;
	if (fd < 0) {
		accept_failed(s, fd);
		return;
	}
	s->backoff_ns = BACKOFF_MIN_NS;
	if (s->stopping) {
		close(fd);
		return;
	}
	if (s->o.handoff && s->group && hand_off(s, fd))
		return;
	if (s->st.open >= s->o.max_conns) {
		/* Above the cap: answer at once with a close rather than
		 * leave the peer in the backlog. */
		close(fd);
		s->st.refused++;
		return;
	}
	conn_open(s, fd);
}

static void start_accept(halo_server *s)
{
	s->acc = halo_accept_ms_start(s->loop, s->lfd, SOCK_CLOEXEC, on_accept,
				      s);
	if (!s->acc)
		accept_failed(s, -ENOMEM);
}

/* --- the server --- */

static int check_opts(halo_server_opts *o)
{
	if (!o->fiber == !o->cbs || (o->cbs && !o->cbs->on_data))
		return -EINVAL;
	if (!o->max_conns)
		o->max_conns = 10000;
	if (!o->ring_bufs)
		o->ring_bufs = 1024;
	if (!o->buf_size)
		o->buf_size = 4096;
	if (!o->max_held)
		o->max_held = 16;
	if (!o->max_out)
		o->max_out = 256 * 1024;
	if (!o->max_in)
		o->max_in = 64 * 1024;
	if (!o->idle_ns)
		o->idle_ns = 60ull * 1000000000ull;
	if (!o->head_ns)
		o->head_ns = 10ull * 1000000000ull;
	if (!o->write_ns)
		o->write_ns = 10ull * 1000000000ull;
	if (!o->close_ns)
		o->close_ns = 2ull * 1000000000ull;
	if (!o->stack_size)
		o->stack_size = DEFAULT_STACK;
	if (!o->backlog)
		o->backlog = 4096;
	if ((o->ring_bufs & (o->ring_bufs - 1)) || o->ring_bufs > 32768 ||
	    o->max_held > o->ring_bufs || o->max_in < o->buf_size)
		return -EINVAL;
	return 0;
}

static halo_server *start(halo_loop *loop, int lfd, int own,
			  const halo_server_opts *opts, int *err)
{
	halo_server *s;
	int r = -EINVAL;

	if (!opts)
		goto fail;
	s = halo_mem_zalloc(loop, sizeof(*s));
	r = -ENOMEM;
	if (!s)
		goto fail;
	s->o = *opts;
	r = check_opts(&s->o);
	if (r < 0)
		goto fail_s;
	s->loop = loop;
	s->lfd = lfd;
	s->own_lfd = own;
	s->backoff_ns = BACKOFF_MIN_NS;
	s->dl_ns[DL_IDLE] = s->o.idle_ns;
	s->dl_ns[DL_HEAD] = s->o.head_ns;
	s->dl_ns[DL_WRITE] = s->o.write_ns;
	s->dl_ns[DL_CLOSE] = s->o.close_ns;
	r = -ENOMEM;
	s->bid_next = halo_mem_alloc(loop, s->o.ring_bufs * sizeof(uint16_t));
	s->bid_len = halo_mem_alloc(loop, s->o.ring_bufs * sizeof(uint32_t));
	if (!s->bid_next || !s->bid_len)
		goto fail_arrays;
	s->br = halo_bufring_new(loop, s->o.bgid, s->o.ring_bufs,
				 s->o.buf_size, &r);
	if (!s->br)
		goto fail_arrays;
	halo_bufring_on_idle(s->br, ring_idle, s);
	/* Made now, so that a stop never needs memory: a server short of it
	 * must still be able to stop and be freed. */
	s->stopped = halo_fut_new(loop);
	if (!s->stopped)
		goto fail_ring;
	halo_fut_consume(s->stopped); /* the server's own reference */
	if (lfd >= 0) {
		s->acc = halo_accept_ms_start(loop, lfd, SOCK_CLOEXEC,
					      on_accept, s);
		if (!s->acc) {
			r = -ENOMEM;
			goto fail_stopped;
		}
	}
	halo_loop_prepare_add(loop, &s->hook, flush_hook, s);
	s->group = halo_group_self(&s->gidx);
	if (s->group && halo_group_index(loop) == (int)s->gidx)
		halo_group_set_slot(loop, HALO_GROUP_SLOT_SERVER, s);
	else
		s->group = NULL;
	return s;
fail_stopped:
	halo_fut_release(s->stopped);
fail_ring:
	halo_bufring_free(s->br);
fail_arrays:
	if (s->bid_next)
		halo_mem_free(loop, s->bid_next,
			      s->o.ring_bufs * sizeof(uint16_t));
	if (s->bid_len)
		halo_mem_free(loop, s->bid_len,
			      s->o.ring_bufs * sizeof(uint32_t));
fail_s:
	halo_mem_free(loop, s, sizeof(*s));
fail:
	if (own && lfd >= 0)
		close(lfd);
	if (err)
		*err = r;
	return NULL;
}

halo_server *halo_server_start(halo_loop *loop, const halo_server_opts *opts,
			       int *err)
{
	halo_listen_opts lo = {0};
	int lfd;

	if (!opts) {
		if (err)
			*err = -EINVAL;
		return NULL;
	}
	lo.backlog = opts->backlog ? opts->backlog : 4096;
	lo.reuseport = opts->reuseport;
	lfd = halo_net_listen(opts->host, opts->port, &lo);
	if (lfd < 0) {
		if (err)
			*err = lfd;
		return NULL;
	}
	return start(loop, lfd, 1, opts, err);
}

halo_server *halo_server_start_fd(halo_loop *loop, int lfd,
				  const halo_server_opts *opts, int *err)
{
	if (lfd < 0) {
		if (err)
			*err = -EBADF;
		return NULL;
	}
	return start(loop, lfd, 0, opts, err);
}

halo_server *halo_server_start_peer(halo_loop *loop,
				   const halo_server_opts *opts, int *err)
{
	return start(loop, -1, 0, opts, err);
}

int halo_server_port(const halo_server *s)
{
	return halo_net_local_port(s->lfd);
}

static void on_drain_end(halo_fut *f, void *arg)
{
	halo_server *s = arg;
	halo_conn *c, *next;

	halo_fut_release(f);
	s->drain = NULL;
	for (c = s->conns; c; c = next) {
		next = c->next;
		conn_close(c, -ESHUTDOWN, true);
	}
	check_stopped(s);
}

halo_fut *halo_server_stop(halo_server *s, uint64_t drain_ns)
{
	halo_conn *c, *next;

	if (s->stopping)
		return halo_fut_ref(s->stopped);
	s->stopping = 1;
	if (s->acc) {
		halo_accept_ms_stop(s->acc);
		s->acc = NULL;
	}
	if (s->backoff)
		halo_fut_cancel(s->backoff);
	if (s->own_lfd) {
		close(s->lfd);
		s->own_lfd = 0;
	}
	s->drain = halo_timer_after(s->loop, drain_ns);
	if (s->drain) {
		s->drain_w.fn = on_drain_end;
		s->drain_w.arg = s;
		halo_fut_add_waiter(s->drain, &s->drain_w);
	}
	for (c = s->conns; c; c = next) {
		next = c->next;
		if (!s->drain)
			conn_close(c, -ESHUTDOWN, true);
		else if (is_fiber_style(s))
			wake_fiber(c); /* an idle fiber's read ends */
		else if (is_idle(c))
			conn_close(c, 0, false);
	}
	check_stopped(s);
	return halo_fut_ref(s->stopped);
}

int halo_server_free(halo_server *s)
{
	halo_loop *loop = s->loop;

	if (!s->stopping || !halo_fut_is_done(s->stopped))
		return -EBUSY;
	halo_loop_prepare_remove(loop, &s->hook);
	if (s->group && halo_group_slot(s->group, s->gidx,
					HALO_GROUP_SLOT_SERVER) == s)
		halo_group_set_slot(loop, HALO_GROUP_SLOT_SERVER, NULL);
	halo_fut_release(s->stopped);
	halo_bufring_free(s->br);
	halo_mem_free(loop, s->bid_next, s->o.ring_bufs * sizeof(uint16_t));
	halo_mem_free(loop, s->bid_len, s->o.ring_bufs * sizeof(uint32_t));
	halo_mem_free(loop, s, sizeof(*s));
	return 0;
}

void halo_server_stats_get(const halo_server *s, halo_server_stats *out)
{
	*out = s->st;
	out->recv_pauses = halo_bufring_pauses(s->br);
}

/* --- the connection calls --- */

/* Suspend c's fiber until something changes for c. */
static int fiber_wait(halo_conn *c)
{
	int64_t r = halo_fiber_park(c->srv->loop, &c->wake);

	return r < 0 ? (int)r : 0;
}

static int closed_err(const halo_conn *c)
{
	if (c->reason)
		return c->reason;
	return c->srv->stopping ? -ESHUTDOWN : -EPIPE;
}

/* Fiber style: wait until c holds input. Returns 1 when it does, 0 at the
 * peer's end of stream, or -errno. */
static int await_input(halo_conn *c)
{
	halo_server *s = c->srv;

	for (;;) {
		int r;

		if (c->in_head != NO_BID)
			return 1;
		if (c->closing)
			return closed_err(c);
		if (c->eof)
			return 0;
		if (c->rerr)
			return c->rerr;
		if (s->stopping && !queued(c))
			return -ESHUTDOWN;
		c->reading = 1;
		r = fiber_wait(c);
		c->reading = 0;
		if (r < 0)
			return c->closing ? closed_err(c) : r;
	}
}

ssize_t halo_conn_read(halo_conn *c, void *buf, size_t len)
{
	halo_server *s = c->srv;
	size_t n = 0;
	int r;

	if (!is_fiber_style(s) || !halo_loop_in_fiber(s->loop))
		return -EPERM;
	if (!len)
		return 0;
	r = await_input(c);
	if (r <= 0)
		return r;
	while (n < len && c->in_head != NO_BID) {
		uint16_t bid = c->in_head;
		size_t k = s->bid_len[bid] - c->in_off;

		if (k > len - n)
			k = len - n;
		memcpy((char *)buf + n,
		       (char *)halo_bufring_buf(s->br, bid) + c->in_off, k);
		n += k;
		c->in_off += (uint32_t)k;
		if (c->in_off == s->bid_len[bid])
			in_pop(c);
	}
	return (ssize_t)n;
}

ssize_t halo_conn_peek(halo_conn *c, const void **data)
{
	halo_server *s = c->srv;
	int r;

	if (!is_fiber_style(s) || !halo_loop_in_fiber(s->loop))
		return -EPERM;
	r = await_input(c);
	if (r <= 0)
		return r;
	*data = (char *)halo_bufring_buf(s->br, c->in_head) + c->in_off;
	return (ssize_t)(s->bid_len[c->in_head] - c->in_off);
}

void halo_conn_consume(halo_conn *c, size_t n)
{
	halo_server *s = c->srv;

	if (!is_fiber_style(s))
		return;
	while (n && c->in_head != NO_BID) {
		size_t k = s->bid_len[c->in_head] - c->in_off;

		if (k > n)
			k = n;
		c->in_off += (uint32_t)k;
		n -= k;
		if (c->in_off == s->bid_len[c->in_head])
			in_pop(c);
	}
}

ssize_t halo_conn_write(halo_conn *c, const void *buf, size_t len)
{
	halo_server *s = c->srv;
	bool in_fiber = is_fiber_style(s) && halo_loop_in_fiber(s->loop);
	size_t done = 0;

	while (done < len) {
		size_t n = len - done;
		int r;

		if (c->closing)
			return closed_err(c);
		if (in_fiber && queued(c) >= s->o.max_out) {
			s->st.write_waits++;
			r = fiber_wait(c);
			if (r < 0)
				return c->closing ? closed_err(c) : r;
			continue;
		}
		if (in_fiber && n > s->o.max_out - queued(c))
			n = s->o.max_out - queued(c);
		r = out_reserve(c, n);
		if (r < 0)
			return r;
		memcpy(c->out + c->out_len, (const char *)buf + done, n);
		c->out_len += n;
		done += n;
		mark_dirty(c);
		if (!c->delivering)
			dl_update(c, false, 0); /* else deliver() does */
	}
	return (ssize_t)len;
}

int halo_conn_flush(halo_conn *c)
{
	halo_server *s = c->srv;

	if (!is_fiber_style(s) || !halo_loop_in_fiber(s->loop))
		return -EPERM;
	while (queued(c)) {
		int r;

		if (c->closing && c->forced)
			return closed_err(c);
		r = fiber_wait(c);
		if (r < 0)
			return c->closing ? closed_err(c) : r;
	}
	return 0;
}

void halo_conn_close(halo_conn *c)
{
	conn_close(c, 0, false);
}

int halo_conn_fd(const halo_conn *c)
{
	return c->fd;
}

void *halo_conn_data(const halo_conn *c)
{
	return c->data;
}

void halo_conn_set_data(halo_conn *c, void *data)
{
	c->data = data;
}

halo_server *halo_conn_server(const halo_conn *c)
{
	return c->srv;
}

halo_loop *halo_conn_loop(const halo_conn *c)
{
	return c->srv->loop;
}
