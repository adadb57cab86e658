/* Socket writer. One sendmsg at a time keeps the byte order of the queue;
 * the prepare hook starts the next one, so the sends made during a tick
 * leave together in that tick's io_uring_enter. */
#include "sockwriter.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../io/net.h"
#include "../runtime/pool.h"

#define DEFAULT_IOV 64
#define MAX_IOV 1024

static struct halo__sw_send *at(halo_sw *sw, size_t i)
{
	return &sw->q[(sw->head + i) & (sw->cap - 1)];
}

static void pop(halo_sw *sw, int64_t res, int err)
{
	struct halo__sw_send *s = at(sw, 0);

	if (err)
		halo_fut_fail(s->fut, err, "socket write failed");
	else
		halo_fut_resolve(s->fut, res, NULL);
	halo_fut_release(s->fut);
	sw->head = (sw->head + 1) & (sw->cap - 1);
	sw->n--;
	sw->head_off = 0;
}

/* Cancel hook of a send: a send no sendmsg has touched leaves the queue and
 * ends CANCELLED; one the kernel may still read (in the sendmsg in flight,
 * or partly written) is not abandoned: it completes when its bytes are out. */
static void send_cancel(halo_fut *f, void *arg)
{
	halo_sw *sw = arg;
	size_t i;

	for (i = 0; i < sw->n && at(sw, i)->fut != f; i++)
		;
	if (i == sw->n) {
		halo_fut_cancelled(f);
		return;
	}
	if (i < (size_t)sw->inflight || (i == 0 && sw->head_off))
		return;
	for (; i + 1 < sw->n; i++)
		*at(sw, i) = *at(sw, i + 1);
	sw->n--;
	halo_fut_cancelled(f);
	halo_fut_release(f);
}

static void sent(halo_fut *f, void *arg)
{
	halo_sw *sw = arg;
	int64_t r = halo_fut_result(f);

	halo_fut_release(f);
	sw->op = NULL;
	sw->inflight = 0;
	if (sw->is_zc && (r == -EOPNOTSUPP || r == -EINVAL)) {
		/* A socket whose protocol takes no zero-copy sends (Unix
		 * sockets: -EOPNOTSUPP; -EINVAL on some kernels). A failed
		 * SENDMSG_ZC sent nothing, and the queue is as it was: the
		 * hook sends the same bytes again as a plain sendmsg, and this
		 * writer never asks for zero-copy again. A real -EINVAL fails
		 * the plain one too, and with it the stream. */
		sw->is_zc = false;
		sw->zc_min = 0;
		sw->stats.zc--;
		sw->stats.zc_refused++;
		return;
	}
	if (r <= 0) {
		sw->err = r < 0 ? (int)r : -EPIPE;
		while (sw->n)
			pop(sw, 0, sw->err);
		return;
	}
	sw->stats.bytes += (uint64_t)r;
	/* Complete the sends the kernel took whole; a partial one stays at
	 * the front with its offset, and the hook sends the rest. */
	while (r > 0) {
		struct halo__sw_send *s = at(sw, 0);
		size_t left = s->len - sw->head_off;

		if ((size_t)r < left) {
			sw->head_off += (size_t)r;
			sw->stats.partial++;
			break;
		}
		r -= (int64_t)left;
		pop(sw, (int64_t)s->len, 0);
	}
}

static int flush_hook(halo_loop *loop, void *arg)
{
	halo_sw *sw = arg;
	struct msghdr msg;
	unsigned cnt = 0;
	size_t total = 0;
	halo_fut *op;

	if (sw->inflight || !sw->n)
		return 0;
	for (size_t i = 0; i < sw->n && cnt < sw->max_iov; i++, cnt++) {
		struct halo__sw_send *s = at(sw, i);
		size_t off = i ? 0 : sw->head_off;

		sw->iov[cnt].iov_base = (char *)s->buf + off;
		sw->iov[cnt].iov_len = s->len - off;
		total += s->len - off;
	}
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = sw->iov;
	msg.msg_iovlen = cnt;
	if (sw->zc_min && total >= sw->zc_min &&
	    (halo_loop_features(loop) & HALO_FEAT_SEND_ZC)) {
		op = halo_sendmsg_zc(loop, sw->fd, &msg, MSG_NOSIGNAL);
		sw->is_zc = op != NULL;
		sw->stats.zc += op != NULL;
	} else {
		op = halo_sendmsg(loop, sw->fd, &msg, MSG_NOSIGNAL);
		sw->is_zc = false;
	}
	if (!op) {
		/* Retrying every tick would spin for as long as memory stays
		 * short, and dropping the queued sends while later ones go
		 * out would corrupt the stream: fail as a socket error does,
		 * for good. */
		sw->err = -ENOMEM;
		while (sw->n)
			pop(sw, 0, sw->err);
		return 0;
	}
	sw->stats.syscalls++;
	sw->inflight = (int)cnt; /* the sends the kernel may read */
	sw->op = op;
	sw->op_w.fn = sent;
	sw->op_w.arg = sw;
	halo_fut_add_waiter(op, &sw->op_w);
	return 0;
}

int halo_sw_init(halo_sw *sw, halo_loop *loop, int fd, const halo_sw_opts *opts)
{
	memset(sw, 0, sizeof(*sw));
	if (fd < 0)
		return -EINVAL;
	sw->max_iov = opts && opts->max_iov ? opts->max_iov : DEFAULT_IOV;
	sw->zc_min = opts ? opts->zc_min : 0;
	if (sw->max_iov > MAX_IOV)
		sw->max_iov = MAX_IOV;
	sw->loop = loop;
	sw->fd = fd;
	sw->iov = halo_mem_alloc(loop, sw->max_iov * sizeof(*sw->iov));
	if (!sw->iov)
		return -ENOMEM;
	halo_loop_prepare_add(loop, &sw->hook, flush_hook, sw);
	return 0;
}

int halo_sw_close(halo_sw *sw)
{
	if (!sw->loop)
		return 0;
	if (sw->inflight)
		return -EBUSY;
	halo_loop_prepare_remove(sw->loop, &sw->hook);
	while (sw->n)
		pop(sw, 0, -ECANCELED);
	free(sw->q);
	halo_mem_free(sw->loop, sw->iov, sw->max_iov * sizeof(*sw->iov));
	memset(sw, 0, sizeof(*sw));
	return 0;
}

static int grow(halo_sw *sw)
{
	size_t cap = sw->cap ? sw->cap * 2 : 64;
	struct halo__sw_send *q = malloc(cap * sizeof(*q));

	if (!q)
		return -ENOMEM;
	for (size_t i = 0; i < sw->n; i++)
		q[i] = *at(sw, i);
	free(sw->q);
	sw->q = q;
	sw->cap = cap;
	sw->head = 0;
	return 0;
}

halo_fut *halo_sw_send_at(halo_sw *sw, const void *buf, size_t len,
			  const char *file, int line)
{
	struct halo__sw_send *s;
	halo_fut *f;

	if (!len || (sw->n == sw->cap && grow(sw) < 0))
		return NULL;
	f = halo_fut_new_at(sw->loop, file, line);
	if (!f)
		return NULL;
	if (sw->err) {
		halo_fut_fail(f, sw->err, "socket write failed");
		return f;
	}
	s = &sw->q[(sw->head + sw->n) & (sw->cap - 1)];
	s->buf = buf;
	s->len = len;
	s->fut = f;
	sw->n++;
	sw->stats.sends++;
	halo_fut_set_cancel(f, send_cancel, sw);
	return halo_fut_ref(f);
}

void halo_sw_stats_get(const halo_sw *sw, halo_sw_stats *out)
{
	*out = sw->stats;
}
