/* Send ring. Buffers are numbered by a sequence that only grows: [head,
 * tail) are queued (with bundles: in the kernel's buffer ring, in that
 * order), tail is the open buffer that writes fill, and the rest is free.
 * One send at a time: the kernel empties a bundle's buffers from its ring's
 * head, which is always ours, so each CQE's byte count (a bundle posts one
 * per round, with F_MORE but the last) says how far head moves. The prepare
 * hook closes the open buffer and starts a send if none is in flight, so
 * the writes of a tick leave together in that tick's io_uring_enter; the
 * last CQE of a send starts the next one for what is left. */
#include "sendring.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "internal.h"

#define DEFAULT_NBUFS	 64
#define DEFAULT_BUF_SIZE 4096

struct sr_waiter {
	halo_fut *fut;
	uint64_t target; /* flush: bytes_out to reach */
	size_t need;	 /* room to wait for; 0: a flush */
};

struct halo_sendring {
	halo_loop *loop;
	halo_hook hook;
	int fd;
	uint16_t bgid;
	bool is_bundle;
	bool is_closing; /* closed with a send in flight: its CQE frees */
	int err;	 /* sticky: a send failed */
	struct io_uring_buf_ring *ring;
	size_t ring_bytes;
	char *mem;
	size_t buf_size;
	unsigned nbufs, mask;
	uint32_t *len; /* per buffer: the bytes queued in it */
	uint64_t head, tail;
	size_t head_off; /* sendmsg path: bytes of head already sent */
	size_t fill;	 /* bytes in the open buffer */
	halo_op *op;	 /* the send in flight */
	struct msghdr msg;
	struct iovec *iov;
	unsigned iov_max;
	struct sr_waiter *w;
	size_t w_n, w_cap;
	halo_sendring_stats st;
};

static char *buf_at(const halo_sendring *sr, uint64_t seq)
{
	return sr->mem + (size_t)(seq & sr->mask) * sr->buf_size;
}

size_t halo_sendring_room(const halo_sendring *sr)
{
	if (sr->err)
		return 0;
	return (size_t)(sr->nbufs - (sr->tail - sr->head)) * sr->buf_size -
	       sr->fill;
}

/* Queue the open buffer: with bundles, put it in the kernel's ring, where a
 * send in flight that has not picked its buffers yet also finds it. */
static void post(halo_sendring *sr)
{
	unsigned slot = (unsigned)(sr->tail & sr->mask);

	sr->len[slot] = (uint32_t)sr->fill;
	if (sr->is_bundle) {
		io_uring_buf_ring_add(sr->ring, buf_at(sr, sr->tail),
				      (unsigned)sr->fill, (unsigned short)slot,
				      (int)sr->mask, 0);
		io_uring_buf_ring_advance(sr->ring, 1);
	}
	sr->tail++;
	sr->fill = 0;
}

static void waiter_done(halo_sendring *sr, size_t i, int64_t res)
{
	halo_fut *f = sr->w[i].fut;

	sr->w[i] = sr->w[--sr->w_n];
	if (res == -ECANCELED)
		halo_fut_cancelled(f);
	else if (res < 0)
		halo_fut_fail(f, (int)res, "send ring failed");
	else
		halo_fut_resolve(f, res, NULL);
	halo_fut_release(f);
}

/* Complete the waiters whose condition holds (all of them with res < 0). */
static void wake(halo_sendring *sr, int res)
{
	size_t i = 0;

	while (i < sr->w_n) {
		struct sr_waiter *w = &sr->w[i];
		size_t room = halo_sendring_room(sr);

		if (res < 0)
			waiter_done(sr, i, res);
		else if (!w->need && sr->st.bytes_out >= w->target)
			waiter_done(sr, i, (int64_t)sr->st.bytes_out);
		else if (w->need && room >= w->need)
			waiter_done(sr, i, (int64_t)room);
		else
			i++;
	}
}

/* A send failed: nothing more goes out, queued bytes are dropped. With
 * bundles the dropped buffers stay in the kernel's ring until close. */
static void fail(halo_sendring *sr, int err)
{
	sr->err = err;
	sr->head = sr->tail;
	sr->head_off = 0;
	sr->fill = 0;
	wake(sr, err);
}

static void ring_free(halo_sendring *sr)
{
	if (sr->is_bundle)
		io_uring_unregister_buf_ring(&sr->loop->ring, sr->bgid);
	if (sr->ring)
		munmap(sr->ring, sr->ring_bytes);
	free(sr->mem);
	free(sr->len);
	free(sr->iov);
	free(sr->w);
	free(sr);
}

/* Move head past res bytes the socket took. A bundle takes whole buffers
 * (the kernel sends with MSG_WAITALL and retries short sends itself); one
 * that ends inside a buffer failed after part of it, and the kernel has
 * counted that buffer as used: the rest of it cannot be sent in order. */
static int consume(halo_sendring *sr, size_t res)
{
	sr->st.bytes_out += res;
	while (res) {
		size_t left = sr->len[sr->head & sr->mask] - sr->head_off;

		if (res < left) {
			if (sr->is_bundle)
				return -EPIPE;
			sr->head_off += res;
			return 0;
		}
		res -= left;
		sr->head++;
		sr->head_off = 0;
		sr->st.bufs++;
	}
	return 0;
}

static void issue(halo_sendring *sr);

/* What one CQE of the send says: bytes taken, or the socket's error. */
static void sent_bytes(halo_sendring *sr, int32_t res, uint32_t flags,
		       bool more)
{
	int r;

	if (sr->err || sr->is_closing)
		return;
	if (res == -ENOBUFS && sr->is_bundle) {
		/* A bundle that went on (F_MORE) and found the ring empty:
		 * it took everything; the next send takes what comes. */
		return;
	}
	if (res < 0 || (res == 0 && !more)) {
		fail(sr, res < 0 ? res : -EPIPE);
		return;
	}
	assert(!sr->is_bundle || !res ||
	       ((flags & IORING_CQE_F_BUFFER) &&
		(flags >> IORING_CQE_BUFFER_SHIFT) == (sr->head & sr->mask)));
	(void)flags;
	r = consume(sr, (size_t)res);
	if (r < 0)
		fail(sr, r);
	else
		wake(sr, 0);
}

/* A bundle send goes on by itself while the ring has buffers: each round
 * posts a CQE with F_MORE, and only the one without ends the request (6.10
 * and later). */
static void sent_cqe(halo_op *op, int32_t res, uint32_t flags)
{
	halo_sendring *sr = op->ctx;
	bool more = flags & IORING_CQE_F_MORE;

	sent_bytes(sr, res, flags, more);
	if (more)
		return;
	if (halo__fut_pending(&op->fut))
		halo__op_finish(op, res);
	halo_fut_release(&op->fut);
	sr->op = NULL;
	if (sr->is_closing) {
		ring_free(sr);
		return;
	}
	/* Send the rest now rather than from the next tick's hook: a loop
	 * that sees no work in flight and nothing ready would stop (or a
	 * wait give up) with bytes still queued. */
	if (!sr->err && !sr->loop->closing) {
		if (sr->fill)
			post(sr);
		if (sr->head != sr->tail)
			issue(sr);
	}
}

static void prep_sendmsg(halo_sendring *sr, struct io_uring_sqe *sqe)
{
	unsigned n = 0;

	for (uint64_t s = sr->head; s != sr->tail && n < sr->iov_max; s++) {
		size_t off = s == sr->head ? sr->head_off : 0;

		sr->iov[n].iov_base = buf_at(sr, s) + off;
		sr->iov[n].iov_len = sr->len[s & sr->mask] - off;
		n++;
	}
	memset(&sr->msg, 0, sizeof(sr->msg));
	sr->msg.msg_iov = sr->iov;
	sr->msg.msg_iovlen = n;
	io_uring_prep_sendmsg(sqe, sr->fd, &sr->msg, MSG_NOSIGNAL);
}

static void issue(halo_sendring *sr)
{
	halo_op *op = halo__op_new(sr->loop, __FILE__, __LINE__);
	struct io_uring_sqe *sqe;

	if (!op) {
		/* As the socket writer: retrying every tick would spin while
		 * memory stays short; the stream is failed for good. */
		fail(sr, -ENOMEM);
		return;
	}
	halo_fut_consume(&op->fut);
	op->fut.flags |= FUT_UNOWNED; /* the ring outlives any fiber */
	op->ctx = sr;
	op->on_cqe = sent_cqe;
	sqe = halo__op_sqe(op);
	if (!sqe) {
		halo__op_abort(op);
		fail(sr, -EBUSY);
		return;
	}
	if (sr->is_bundle) {
		io_uring_prep_send(sqe, sr->fd, NULL, 0, MSG_NOSIGNAL);
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = sr->bgid;
		sqe->ioprio |= IORING_RECVSEND_BUNDLE;
	} else {
		prep_sendmsg(sr, sqe);
	}
	sr->op = op;
	sr->st.sends++;
}

static int flush_hook(halo_loop *loop, void *arg)
{
	halo_sendring *sr = arg;

	(void)loop;
	if (sr->err)
		return 0;
	if (sr->fill)
		post(sr);
	if (!sr->op && sr->head != sr->tail)
		issue(sr);
	return 0;
}

static int ring_setup(halo_sendring *sr)
{
	struct io_uring_buf_reg reg;
	int r;

	/* Page aligned, as the kernel wants; liburing 2.3 has no
	 * io_uring_setup_buf_ring. The ring starts empty: buffers enter it
	 * only once they hold bytes to send. */
	sr->ring_bytes = sr->nbufs * sizeof(struct io_uring_buf);
	sr->ring = mmap(NULL, sr->ring_bytes, PROT_READ | PROT_WRITE,
			MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (sr->ring == MAP_FAILED) {
		sr->ring = NULL;
		return -ENOMEM;
	}
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)sr->ring;
	reg.ring_entries = sr->nbufs;
	reg.bgid = sr->bgid;
	r = io_uring_register_buf_ring(&sr->loop->ring, &reg, 0);
	if (r < 0)
		return r;
	io_uring_buf_ring_init(sr->ring);
	return 0;
}

halo_sendring *halo_sendring_new(halo_loop *loop, int fd, uint16_t bgid,
				 const halo_sendring_opts *opts, int *err)
{
	halo_sendring_opts o = opts ? *opts : (halo_sendring_opts){0};
	halo_sendring *sr;
	int r = -EINVAL;

	o.nbufs = o.nbufs ? o.nbufs : DEFAULT_NBUFS;
	o.buf_size = o.buf_size ? o.buf_size : DEFAULT_BUF_SIZE;
	if (fd < 0 || o.nbufs > 32768 || (o.nbufs & (o.nbufs - 1)) ||
	    o.buf_size > UINT32_MAX ||
	    (o.flags & ~(unsigned)HALO_SENDRING_BUNDLE))
		goto fail;
	r = -ENOMEM;
	sr = calloc(1, sizeof(*sr));
	if (!sr)
		goto fail;
	sr->loop = loop;
	sr->fd = fd;
	sr->bgid = bgid;
	sr->nbufs = o.nbufs;
	sr->mask = o.nbufs - 1;
	sr->buf_size = o.buf_size;
	sr->iov_max = o.nbufs < IOV_MAX ? o.nbufs : IOV_MAX;
	sr->len = calloc(o.nbufs, sizeof(*sr->len));
	if (!sr->len || posix_memalign((void **)&sr->mem, 4096,
				       (size_t)o.nbufs * o.buf_size))
		goto fail_sr;
	if ((loop->features & HALO_FEAT_SEND_BUNDLE) &&
	    (o.flags & HALO_SENDRING_BUNDLE)) {
		r = ring_setup(sr);
		if (r < 0)
			goto fail_sr;
		sr->is_bundle = true;
	} else {
		sr->iov = calloc(sr->iov_max, sizeof(*sr->iov));
		if (!sr->iov)
			goto fail_sr;
	}
	sr->st.is_bundle = sr->is_bundle;
	halo_loop_prepare_add(loop, &sr->hook, flush_hook, sr);
	return sr;
fail_sr:
	ring_free(sr);
fail:
	if (err)
		*err = r;
	return NULL;
}

int halo_sendring_write(halo_sendring *sr, const void *data, size_t len)
{
	const char *p = data;
	size_t left = len;

	if (sr->err)
		return sr->err;
	if (len > (size_t)sr->nbufs * sr->buf_size || len > INT_MAX)
		return -EMSGSIZE;
	if (len > halo_sendring_room(sr)) {
		sr->st.refused++;
		return -ENOBUFS;
	}
	while (left) {
		size_t n = sr->buf_size - sr->fill;

		if (n > left)
			n = left;
		memcpy(buf_at(sr, sr->tail) + sr->fill, p, n);
		sr->fill += n;
		p += n;
		left -= n;
		/* A full buffer is queued now, so that a send in flight may
		 * still take it. */
		if (sr->fill == sr->buf_size)
			post(sr);
	}
	sr->st.writes++;
	sr->st.bytes_in += len;
	return (int)len;
}

static void waiter_cancel(halo_fut *f, void *arg)
{
	halo_sendring *sr = arg;

	for (size_t i = 0; i < sr->w_n; i++) {
		if (sr->w[i].fut != f)
			continue;
		sr->w[i] = sr->w[--sr->w_n];
		halo_fut_cancelled(f);
		halo_fut_release(f);
		return;
	}
	halo_fut_cancelled(f);
}

static halo_fut *waiter_add(halo_sendring *sr, size_t need, const char *file,
			    int line)
{
	halo_fut *f;

	if (sr->w_n == sr->w_cap) {
		size_t cap = sr->w_cap ? sr->w_cap * 2 : 4;
		struct sr_waiter *w = realloc(sr->w, cap * sizeof(*w));

		if (!w)
			return NULL;
		sr->w = w;
		sr->w_cap = cap;
	}
	f = halo_fut_new_at(sr->loop, file, line);
	if (!f)
		return NULL;
	sr->w[sr->w_n].fut = f;
	sr->w[sr->w_n].need = need;
	sr->w[sr->w_n].target = sr->st.bytes_in;
	sr->w_n++;
	halo_fut_set_cancel(f, waiter_cancel, sr);
	return halo_fut_ref(f);
}

halo_fut *halo_sendring_wait_room_at(halo_sendring *sr, size_t need,
				     const char *file, int line)
{
	size_t room = halo_sendring_room(sr);

	if (!need || need > (size_t)sr->nbufs * sr->buf_size)
		return NULL;
	if (sr->err)
		return halo_fut_failed_at(sr->loop, sr->err, "send ring failed",
					  file, line);
	if (room >= need)
		return halo_fut_ready_at(sr->loop, (int64_t)room, NULL, file,
					 line);
	return waiter_add(sr, need, file, line);
}

halo_fut *halo_sendring_flush_at(halo_sendring *sr, const char *file, int line)
{
	if (sr->err)
		return halo_fut_failed_at(sr->loop, sr->err, "send ring failed",
					  file, line);
	if (sr->st.bytes_out == sr->st.bytes_in)
		return halo_fut_ready_at(sr->loop, (int64_t)sr->st.bytes_out,
					 NULL, file, line);
	return waiter_add(sr, 0, file, line);
}

size_t halo_sendring_close(halo_sendring *sr)
{
	size_t dropped = (size_t)(sr->st.bytes_in - sr->st.bytes_out);

	halo_loop_prepare_remove(sr->loop, &sr->hook);
	while (sr->w_n)
		waiter_done(sr, 0, -ECANCELED);
	if (!sr->op) {
		ring_free(sr);
		return dropped;
	}
	/* The kernel may be reading the buffers: free them at its CQE. */
	sr->is_closing = true;
	halo_fut_cancel(&sr->op->fut);
	return dropped;
}

void halo_sendring_stats_get(const halo_sendring *sr, halo_sendring_stats *out)
{
	*out = sr->st;
}
