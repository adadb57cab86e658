/* Poll: POLL_ADD one-shot as a future, and multishot POLL_ADD whose op is
 * the handle itself (state in op->meta), so a watch costs one pooled slot. */
#include <poll.h>

#include "internal.h"
#include "poll.h"

halo_fut *halo_poll_at(halo_loop *loop, int fd, unsigned events,
		       const char *file, int line)
{
	struct io_uring_sqe *sqe;
	halo_op *op = io_op_start(loop, file, line, &sqe);

	if (!op)
		return NULL;
	io_uring_prep_poll_add(sqe, fd, events);
	return &op->fut;
}

enum { MS_STOPPED = 1, MS_ENDED = 2 };

struct poll_ms {
	halo_poll_ms_cb cb;
	void *arg;
	uint64_t rearms;
	int fd;
	unsigned events;
	unsigned state;
};

static inline struct poll_ms *ms_of(halo_op *op)
{
	return (struct poll_ms *)&op->meta;
}

static bool arm(halo_op *op)
{
	struct poll_ms *s = ms_of(op);
	struct io_uring_sqe *sqe = halo__op_sqe(op);

	if (!sqe)
		return false;
	io_uring_prep_poll_multishot(sqe, s->fd, s->events);
	io_apply_fixed(op, sqe);
	return true;
}

/* The handle is over: complete its future and drop halo's reference; the
 * reaper drops the kernel's. */
static void end(halo_op *op, int32_t res)
{
	ms_of(op)->state |= MS_ENDED;
	halo__op_finish(op, res);
	halo_fut_release(&op->fut);
}

static void poll_ms_cqe(halo_op *op, int32_t res, uint32_t flags)
{
	struct poll_ms *s = ms_of(op);
	halo_loop *loop = op->fut.loop;
	bool more = flags & IORING_CQE_F_MORE;

	if (s->state & (MS_STOPPED | MS_ENDED)) {
		if (!more && !(s->state & MS_ENDED))
			end(op, res);
		return;
	}
	if (res < 0) {
		if (more)
			return;
		s->state |= MS_ENDED;
		if (!loop->closing) {
			loop->in_callback++;
			s->cb((halo_poll_ms *)op, res, s->arg);
			loop->in_callback--;
		}
		end(op, res);
		return;
	}
	if (!more) {
		/* The kernel ended the multishot; re-arm before handing out
		 * the event so that no readiness change goes unwatched. */
		if (loop->closing || !arm(op)) {
			end(op, loop->closing ? -ECANCELED : -EBUSY);
			return;
		}
		s->rearms++;
	}
	loop->in_callback++;
	s->cb((halo_poll_ms *)op, res, s->arg);
	loop->in_callback--;
}

halo_poll_ms *halo_poll_ms_start(halo_loop *loop, int fd, unsigned events,
				 halo_poll_ms_cb cb, void *arg)
{
	halo_op *op = halo__op_new(loop, __FILE__, __LINE__);
	struct poll_ms *s;

	if (!op)
		return NULL;
	s = ms_of(op);
	s->cb = cb;
	s->arg = arg;
	s->rearms = 0;
	s->fd = fd;
	s->events = events;
	s->state = 0;
	op->on_cqe = poll_ms_cqe;
	halo_fut_consume(&op->fut);
	op->fut.flags |= FUT_UNOWNED; /* a handle outlives its fiber */
	if (!arm(op)) {
		halo__op_abort(op);
		return NULL;
	}
	return (halo_poll_ms *)op;
}

int halo_poll_ms_stop(halo_poll_ms *h)
{
	halo_op *op = (halo_op *)h;
	struct poll_ms *s = ms_of(op);

	if (s->state & (MS_STOPPED | MS_ENDED))
		return -EALREADY;
	s->state |= MS_STOPPED;
	halo_fut_cancel(&op->fut);
	return 0;
}

uint64_t halo_poll_ms_rearms(const halo_poll_ms *h)
{
	return ms_of((halo_op *)h)->rearms;
}
