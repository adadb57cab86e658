/* HTTP/1.1 connections on halo: a multishot recv per connection over one
 * shared buffer ring, so an idle connection holds no receive buffer; bytes
 * are parsed in place in the ring buffer and only a partial head is copied
 * aside. Every complete request of a read is answered into one pending
 * buffer, sent with one send_all; one send per connection is in flight at a
 * time, so responses keep their order. A periodic sweep closes connections
 * whose deadline (renewed by each complete request) has passed. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server.h"

#define BUF_N 4096
#define BUF_SIZE 4096
#define ACC_CAP (HALO_HTTP_MAX_HEAD + BUF_SIZE)
#define OUT_MIN 512
#define OUT_MAX (1u << 20) /* a client that pipelines but never reads */
#define BODY "hello, world!\n"

struct conn {
	struct conn *prev, *next; /* by deadline: oldest first */
	httpd *s;
	halo_recv_ms *rh;
	halo_fut *send;
	halo_waiter sent;
	char *acc; /* a partial head, ACC_CAP bytes, or NULL */
	char *out; /* being sent */
	char *pend; /* answers waiting for the send in flight */
	uint32_t acc_len, out_cap, pend_len, pend_cap;
	uint64_t deadline;
	uint64_t skip; /* request body bytes still to discard */
	int fd;
	uint8_t recv_done, closing, in_list;
};

struct httpd {
	halo_loop *loop;
	httpd_opts o;
	halo_bufring *br;
	halo_accept_ms *acc;
	halo_fut *sweep;
	struct conn *head, *tail;
	httpd_stats st;
	int stopping;
	int lfd;
	char ok_ka[160], ok_close[160], head_ka[160], head_close[160];
	char nf_ka[160], nf_close[160], e400[160], e431[160];
	int ok_ka_n, ok_close_n, head_ka_n, head_close_n, nf_ka_n, nf_close_n,
		e400_n, e431_n;
};

static void list_del(httpd *s, struct conn *c)
{
	if (!c->in_list)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		s->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		s->tail = c->prev;
	c->prev = c->next = NULL;
	c->in_list = 0;
}

static void list_add_tail(httpd *s, struct conn *c)
{
	c->next = NULL;
	c->prev = s->tail;
	if (s->tail)
		s->tail->next = c;
	else
		s->head = c;
	s->tail = c;
	c->in_list = 1;
}

static void renew(struct conn *c)
{
	httpd *s = c->s;

	c->deadline = halo_now_ns() + s->o.idle_ns;
	if (c->in_list && s->tail != c) {
		list_del(s, c);
		list_add_tail(s, c);
	}
}

static void conn_free(struct conn *c)
{
	httpd *s = c->s;

	list_del(s, c);
	if (c->acc)
		halo_mem_free(s->loop, c->acc, ACC_CAP);
	if (c->out)
		halo_mem_free(s->loop, c->out, c->out_cap);
	if (c->pend)
		halo_mem_free(s->loop, c->pend, c->pend_cap);
	halo_fut_detach(halo_close(s->loop, c->fd));
	s->st.conns--;
	halo_mem_free(s->loop, c, sizeof(*c));
}

/* Stop receiving; the connection goes when its last send is done. */
static void conn_close(struct conn *c)
{
	c->closing = 1;
	list_del(c->s, c);
	if (!c->recv_done) {
		c->recv_done = 1;
		halo_recv_ms_stop(c->rh);
	}
	if (!c->send)
		conn_free(c);
}

static void flush(struct conn *c);

static void on_sent(halo_fut *f, void *arg)
{
	struct conn *c = arg;
	int64_t r = halo_fut_result(f);

	halo_fut_release(f);
	c->send = NULL;
	if (r < 0) {
		c->pend_len = 0;
		conn_close(c);
		return;
	}
	if (c->pend_len)
		flush(c);
	else if (c->closing)
		conn_free(c);
}

/* Send the pending answers: swap the buffers, one send for all of them. */
static void flush(struct conn *c)
{
	httpd *s = c->s;
	char *b = c->out;
	uint32_t cap = c->out_cap;

	if (c->send || !c->pend_len)
		return;
	c->out = c->pend;
	c->out_cap = c->pend_cap;
	c->pend = b;
	c->pend_cap = cap;
	c->send = halo_send_all(s->loop, c->fd, c->out, c->pend_len, 0);
	c->pend_len = 0;
	if (!c->send) {
		conn_close(c);
		return;
	}
	halo_fut_consume(c->send);
	c->sent.fn = on_sent;
	c->sent.arg = c;
	halo_fut_add_waiter(c->send, &c->sent);
}

static int queue(struct conn *c, const char *p, int n)
{
	httpd *s = c->s;

	if (c->pend_len + (uint32_t)n > c->pend_cap) {
		uint32_t cap = c->pend_cap ? c->pend_cap : OUT_MIN;
		char *nb;
		while (cap < c->pend_len + (uint32_t)n)
			cap *= 2;
		if (cap > OUT_MAX)
			return -ENOBUFS;
		nb = halo_mem_alloc(s->loop, cap);
		if (!nb)
			return -ENOMEM;
		if (c->pend) {
			memcpy(nb, c->pend, c->pend_len);
			halo_mem_free(s->loop, c->pend, c->pend_cap);
		}
		c->pend = nb;
		c->pend_cap = cap;
	}
	memcpy(c->pend + c->pend_len, p, (size_t)n);
	c->pend_len += (uint32_t)n;
	return 0;
}

/* Answer every complete request at the start of buf; returns the bytes
 * consumed, or -1 after queueing a final error answer. */
static long serve(struct conn *c, const char *buf, size_t len)
{
	httpd *s = c->s;
	size_t used = 0;

	while (used < len && !c->closing) {
		halo_http_req req;
		int n, ka, r;
		const char *a;
		int an;

		if (c->skip) {
			size_t k = len - used < c->skip ? len - used : c->skip;
			used += k;
			c->skip -= k;
			continue;
		}
		n = halo_http_parse(buf + used, len - used, &req);
		if (n == 0)
			break;
		if (n < 0) {
			s->st.bad++;
			if (n == -EMSGSIZE)
				queue(c, s->e431, s->e431_n);
			else
				queue(c, s->e400, s->e400_n);
			return -1;
		}
		used += (size_t)n;
		c->skip = req.content_length;
		s->st.requests++;
		ka = req.keep_alive;
		if (req.target.len == 1 && req.target.ptr[0] == '/' &&
		    req.method_id == HALO_HTTP_GET) {
			a = ka ? s->ok_ka : s->ok_close;
			an = ka ? s->ok_ka_n : s->ok_close_n;
		} else if (req.target.len == 1 && req.target.ptr[0] == '/' &&
			   req.method_id == HALO_HTTP_HEAD) {
			a = ka ? s->head_ka : s->head_close;
			an = ka ? s->head_ka_n : s->head_close_n;
		} else {
			a = ka ? s->nf_ka : s->nf_close;
			an = ka ? s->nf_ka_n : s->nf_close_n;
		}
		r = queue(c, a, an);
		if (r < 0 || !ka)
			return -1;
		renew(c);
	}
	return (long)used;
}

static void on_data(halo_recv_ms *h, int res, void *data, uint16_t bid,
		    void *arg)
{
	struct conn *c = arg;
	httpd *s = c->s;
	long used;

	(void)h;
	if (res <= 0) {
		c->recv_done = 1;
		conn_close(c);
		return;
	}
	if (c->closing) {
		halo_bufring_return(s->br, bid);
		return;
	}
	if (!c->acc_len) {
		/* The common case: whole requests, parsed in the ring buffer. */
		used = serve(c, data, (size_t)res);
		if (used >= 0 && used < res) {
			if (!c->acc)
				c->acc = halo_mem_alloc(s->loop, ACC_CAP);
			if (!c->acc) {
				used = -1;
			} else {
				c->acc_len = (uint32_t)(res - used);
				memcpy(c->acc, (char *)data + used, c->acc_len);
			}
		}
		halo_bufring_return(s->br, bid);
	} else {
		memcpy(c->acc + c->acc_len, data, (size_t)res);
		c->acc_len += (uint32_t)res;
		halo_bufring_return(s->br, bid);
		used = serve(c, c->acc, c->acc_len);
		if (used > 0) {
			memmove(c->acc, c->acc + used, c->acc_len - (size_t)used);
			c->acc_len -= (uint32_t)used;
		}
	}
	if (c->acc && !c->acc_len) {
		halo_mem_free(s->loop, c->acc, ACC_CAP);
		c->acc = NULL;
	}
	flush(c);
	if (used < 0)
		conn_close(c);
}

static void on_accept(halo_accept_ms *h, int fd, void *arg)
{
	httpd *s = arg;
	struct conn *c;
	int one = 1;

	(void)h;
	if (fd < 0) {
		/* -EMFILE and the like end the multishot: start another one
		 * at the next sweep rather than spin on the error. */
		s->acc = NULL;
		return;
	}
	s->st.accepted++;
	if (s->st.conns >= s->o.max_conns || s->stopping) {
		s->st.refused++;
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c = halo_mem_zalloc(s->loop, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->s = s;
	c->fd = fd;
	c->rh = halo_recv_ms_start(s->loop, fd, s->br, on_data, c);
	if (!c->rh) {
		close(fd);
		halo_mem_free(s->loop, c, sizeof(*c));
		return;
	}
	s->st.conns++;
	c->deadline = halo_now_ns() + s->o.idle_ns;
	list_add_tail(s, c);
}

static void arm_sweep(httpd *s);

static void on_sweep(halo_fut *f, void *arg)
{
	httpd *s = arg;
	uint64_t now = halo_now_ns();

	halo_fut_release(f);
	s->sweep = NULL;
	if (s->stopping)
		return;
	while (s->head && s->head->deadline <= now) {
		struct conn *c = s->head;
		s->st.timeouts++;
		if (c->send)
			halo_fut_cancel(c->send);
		conn_close(c);
	}
	if (!s->acc)
		s->acc = halo_accept_ms_start(s->loop, s->lfd, SOCK_CLOEXEC,
					      on_accept, s);
	arm_sweep(s);
}

static void arm_sweep(httpd *s)
{
	uint64_t period = s->o.idle_ns / 8;

	if (period < 10000000ull)
		period = 10000000ull;
	if (period > 1000000000ull)
		period = 1000000000ull;
	s->sweep = halo_timer_after(s->loop, period);
	if (!s->sweep)
		return;
	halo_fut_consume(s->sweep);
	halo_fut_on_done(s->sweep, on_sweep, s);
}

static int fmt(char *out, int status, const char *body, size_t n, int ka)
{
	return halo_http_response(out, 160, status, body, n, ka);
}

httpd *httpd_start(halo_loop *loop, int lfd, const httpd_opts *opts, int *err)
{
	httpd *s = calloc(1, sizeof(*s));
	static const char nf[] = "not found\n";

	if (!s) {
		*err = -ENOMEM;
		return NULL;
	}
	s->loop = loop;
	s->o = opts ? *opts : (httpd_opts){ 0 };
	if (!s->o.idle_ns)
		s->o.idle_ns = 10000000000ull;
	if (!s->o.max_conns)
		s->o.max_conns = 10000;
	s->ok_ka_n = fmt(s->ok_ka, 200, BODY, sizeof(BODY) - 1, 1);
	s->ok_close_n = fmt(s->ok_close, 200, BODY, sizeof(BODY) - 1, 0);
	s->head_ka_n = fmt(s->head_ka, 200, NULL, sizeof(BODY) - 1, 1);
	s->head_close_n = fmt(s->head_close, 200, NULL, sizeof(BODY) - 1, 0);
	s->nf_ka_n = fmt(s->nf_ka, 404, nf, sizeof(nf) - 1, 1);
	s->nf_close_n = fmt(s->nf_close, 404, nf, sizeof(nf) - 1, 0);
	s->e400_n = fmt(s->e400, 400, NULL, 0, 0);
	s->e431_n = fmt(s->e431, 431, NULL, 0, 0);
	if (s->ok_ka_n < 0 || s->e431_n < 0 || s->nf_close_n < 0) {
		*err = -EINVAL;
		free(s);
		return NULL;
	}
	s->br = halo_bufring_new(loop, s->o.bgid, BUF_N, BUF_SIZE, err);
	if (!s->br) {
		free(s);
		return NULL;
	}
	s->lfd = lfd;
	s->acc = halo_accept_ms_start(loop, lfd, SOCK_CLOEXEC, on_accept, s);
	if (!s->acc) {
		*err = -ENOMEM;
		halo_bufring_free(s->br);
		free(s);
		return NULL;
	}
	arm_sweep(s);
	return s;
}

void httpd_stop(httpd *s)
{
	s->stopping = 1;
	if (s->acc)
		halo_accept_ms_stop(s->acc);
	s->acc = NULL;
	if (s->sweep)
		halo_fut_cancel(s->sweep);
	while (s->head) {
		struct conn *c = s->head;
		if (c->send)
			halo_fut_cancel(c->send);
		conn_close(c);
	}
	/* Let the kernel hand back every recv and send before the ring goes,
	 * and let the cancelled sweep's callback run: it points at s. */
	for (int i = 0; i < 1000 && (s->st.conns || s->sweep); i++)
		halo_loop_run_once(s->loop);
	for (int i = 0; i < 1000; i++) {
		halo_stats st;
		halo_loop_stats(s->loop, &st);
		if (!st.inflight)
			break;
		halo_loop_run_once(s->loop);
	}
	halo_bufring_free(s->br);
	free(s);
}

void httpd_get_stats(const httpd *s, httpd_stats *out)
{
	*out = s->st;
}
