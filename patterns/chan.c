/* Bounded MPMC channel on one loop. Blocked senders hold their message in
 * their wait record; a receive that frees a slot pulls the oldest blocked
 * sender's message in, so FIFO order holds across the buffer and the queue. */
#include <errno.h>
#include <string.h>

#include "chan.h"

#include "../runtime/pool.h"

struct halo__chan_wait {
	struct halo__chan_wait *prev, *next;
	halo_chan *ch;
	halo_fut *f;
	halo_chan_msg msg;  /* a sender's message */
	halo_chan_msg *out; /* a receiver's slot */
	bool is_send;
};

typedef struct halo__chan_wait cwait;

int halo_chan_init(halo_chan *ch, halo_loop *loop, const halo_chan_opts *opts)
{
	memset(ch, 0, sizeof(*ch));
	ch->loop = loop;
	ch->cap = opts && opts->cap ? opts->cap : 64;
	ch->max_waiters = opts && opts->max_waiters ? opts->max_waiters : 1024;
	ch->buf = halo_mem_alloc(loop, ch->cap * sizeof(*ch->buf));
	return ch->buf ? 0 : -ENOMEM;
}

static void w_unlink(cwait *w)
{
	halo_chan *ch = w->ch;
	cwait **head = w->is_send ? &ch->send_head : &ch->recv_head;
	cwait **tail = w->is_send ? &ch->send_tail : &ch->recv_tail;

	if (w->prev)
		w->prev->next = w->next;
	else
		*head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		*tail = w->prev;
	ch->waiters_n--;
}

/* Complete and free the wait record w (already unlinked). */
static void w_finish(cwait *w, int state, int64_t res, void *value)
{
	halo_fut *f = w->f;

	if (state == HALO_FUT_OK)
		halo_fut_resolve(f, res, value);
	else if (state == HALO_FUT_ERROR)
		halo_fut_fail(f, (int)res, NULL);
	else
		halo_fut_cancelled(f);
	halo_fut_release(f);
	halo_mem_free(w->ch->loop, w, sizeof(*w));
}

static void w_cancel(halo_fut *f, void *arg)
{
	cwait *w = arg;

	(void)f;
	w_unlink(w);
	w_finish(w, HALO_FUT_CANCELLED, -ECANCELED, NULL);
}

static cwait *w_push(halo_chan *ch, bool is_send, const char *file, int line)
{
	cwait *w = halo_mem_zalloc(ch->loop, sizeof(*w));
	cwait **head, **tail;

	if (!w)
		return NULL;
	w->f = halo_fut_new_at(ch->loop, file, line);
	if (!w->f) {
		halo_mem_free(ch->loop, w, sizeof(*w));
		return NULL;
	}
	halo_fut_ref(w->f);
	w->ch = ch;
	w->is_send = is_send;
	head = is_send ? &ch->send_head : &ch->recv_head;
	tail = is_send ? &ch->send_tail : &ch->recv_tail;
	w->prev = *tail;
	if (*tail)
		(*tail)->next = w;
	else
		*head = w;
	*tail = w;
	ch->waiters_n++;
	halo_fut_set_cancel(w->f, w_cancel, w);
	return w;
}

static void buf_push(halo_chan *ch, int64_t v, void *p)
{
	halo_chan_msg *m = &ch->buf[(ch->head + ch->n) % ch->cap];

	m->v = v;
	m->p = p;
	ch->n++;
}

int halo_chan_try_send(halo_chan *ch, int64_t v, void *p)
{
	cwait *r = ch->recv_head;

	if (ch->closed)
		return -EPIPE;
	if (r) { /* the buffer is empty when receivers wait */
		w_unlink(r);
		r->out->v = v;
		r->out->p = p;
		w_finish(r, HALO_FUT_OK, 1, p);
		return 0;
	}
	if (ch->n == ch->cap || ch->send_head)
		return -EAGAIN;
	buf_push(ch, v, p);
	return 0;
}

halo_fut *halo_chan_send_at(halo_chan *ch, int64_t v, void *p, const char *file,
			    int line)
{
	int r = halo_chan_try_send(ch, v, p);
	cwait *w;

	if (r == 0)
		return halo_fut_ready_at(ch->loop, 0, NULL, file, line);
	if (r != -EAGAIN || ch->waiters_n >= ch->max_waiters)
		return halo_fut_failed_at(ch->loop, r, NULL, file, line);
	w = w_push(ch, true, file, line);
	if (!w)
		return NULL;
	w->msg.v = v;
	w->msg.p = p;
	return w->f;
}

int halo_chan_try_recv(halo_chan *ch, halo_chan_msg *out)
{
	cwait *s;

	if (!ch->n) {
		if (ch->closed)
			return 0;
		return -EAGAIN;
	}
	*out = ch->buf[ch->head];
	ch->head = (ch->head + 1) % ch->cap;
	ch->n--;
	s = ch->send_head;
	if (s) {
		w_unlink(s);
		buf_push(ch, s->msg.v, s->msg.p);
		w_finish(s, HALO_FUT_OK, 0, NULL);
	}
	return 1;
}

halo_fut *halo_chan_recv_at(halo_chan *ch, halo_chan_msg *out, const char *file,
			    int line)
{
	int r = halo_chan_try_recv(ch, out);
	cwait *w;

	if (r >= 0)
		return halo_fut_ready_at(ch->loop, r, r ? out->p : NULL, file,
					 line);
	if (ch->waiters_n >= ch->max_waiters)
		return halo_fut_failed_at(ch->loop, -EAGAIN, NULL, file, line);
	w = w_push(ch, false, file, line);
	if (!w)
		return NULL;
	w->out = out;
	return w->f;
}

size_t halo_chan_len(const halo_chan *ch)
{
	return ch->n;
}

size_t halo_chan_space(const halo_chan *ch)
{
	if (ch->closed || ch->send_head)
		return 0;
	return ch->cap - ch->n;
}

void halo_chan_close(halo_chan *ch)
{
	cwait *w;

	ch->closed = true;
	while ((w = ch->send_head)) {
		w_unlink(w);
		w_finish(w, HALO_FUT_ERROR, -EPIPE, NULL);
	}
	/* Receivers wait only on an empty channel: they get the end now. */
	while ((w = ch->recv_head)) {
		w_unlink(w);
		w_finish(w, HALO_FUT_OK, 0, NULL);
	}
}

void halo_chan_destroy(halo_chan *ch, void (*drop)(halo_chan_msg *m, void *arg),
		       void *arg)
{
	halo_chan_msg m;

	if (!ch->buf)
		return;
	halo_chan_close(ch);
	while (halo_chan_try_recv(ch, &m) == 1)
		if (drop)
			drop(&m, arg);
	halo_mem_free(ch->loop, ch->buf, ch->cap * sizeof(*ch->buf));
	ch->buf = NULL;
}
