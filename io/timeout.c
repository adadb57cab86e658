/* Deadlines: a linked timeout when the op's SQE is the last one in our half
 * of the SQ (a LINK_TIMEOUT must directly follow the SQE it guards), else a
 * loop timer that issues the cancel. Either way the op's own CQE completes
 * it, and io_finish() turns the deadline's cancel into -ETIMEDOUT. */
#include "internal.h"
#include "timeout.h"

static bool is_last_sqe(halo_loop *loop, halo_op *op)
{
	struct io_uring_sq *sq = &loop->ring.sq;

	if (!op->sqe || op->sq_epoch != loop->sq_epoch)
		return false;
	return op->sqe == &sq->sqes[(sq->sqe_tail - 1) & sq->ring_mask] &&
	       sq->sqe_tail != sq->sqe_head;
}

static int link_timeout(halo_op *op, uint64_t deadline_ns)
{
	halo_loop *loop = op->fut.loop;
	struct io_uring_sqe *tsqe;

	op->ts.tv_sec = (long long)(deadline_ns / 1000000000ull);
	op->ts.tv_nsec = (long long)(deadline_ns % 1000000000ull);
	op->sqe->flags |= IOSQE_IO_LINK;
	tsqe = halo__loop_sqe(loop);
	if (!tsqe) {
		op->sqe->flags &= (uint8_t)~IOSQE_IO_LINK;
		return -EBUSY;
	}
	/* The kernel reads op->ts at submit, so it lives in the op. */
	io_uring_prep_link_timeout(tsqe, &op->ts, IORING_TIMEOUT_ABS);
	op->aux |= IO_AUX_DEADLINE;
	op->on_cqe = halo__io_plain_cqe;
	return 0;
}

struct deadline {
	halo_waiter on_op;
	halo_waiter on_timer;
	halo_op *op;
	halo_fut *timer;
	int waiting;
};

static void deadline_put(struct deadline *d)
{
	halo_loop *loop = d->op->fut.loop;

	if (--d->waiting)
		return;
	halo_fut_release(d->timer);
	halo_fut_release(&d->op->fut);
	halo_mem_free(loop, d, sizeof(*d));
}

static void op_done(halo_fut *f, void *arg)
{
	struct deadline *d = arg;

	(void)f;
	if (halo__fut_pending(d->timer))
		halo_fut_cancel(d->timer);
	deadline_put(d);
}

static void timer_done(halo_fut *t, void *arg)
{
	struct deadline *d = arg;
	halo_op *op = d->op;

	if (t->state == HALO_FUT_OK && halo__fut_pending(&op->fut) &&
	    !(op->fut.flags & FUT_CANCEL_REQ)) {
		op->aux |= IO_AUX_EXPIRED;
		if (op->kernel_refs)
			halo__op_cancel(op);
		else
			halo__fut_complete(&op->fut, HALO_FUT_ERROR,
					   -ETIMEDOUT);
	}
	deadline_put(d);
}

static int timer_deadline(halo_op *op, uint64_t deadline_ns)
{
	halo_loop *loop = op->fut.loop;
	struct deadline *d = halo_mem_alloc(loop, sizeof(*d));

	if (!d)
		return -ENOMEM;
	d->timer = halo_timer_at_(loop, deadline_ns, __FILE__, __LINE__);
	if (!d->timer) {
		halo_mem_free(loop, d, sizeof(*d));
		return -ENOMEM;
	}
	halo_fut_consume(d->timer);
	d->op = op;
	d->waiting = 2;
	halo_fut_ref(&op->fut);
	if (!op->on_cqe)
		op->on_cqe = halo__io_plain_cqe;
	op->aux |= IO_AUX_TIMED;
	d->on_op.fn = op_done;
	d->on_op.arg = d;
	d->on_timer.fn = timer_done;
	d->on_timer.arg = d;
	halo_fut_add_waiter(&op->fut, &d->on_op);
	halo_fut_add_waiter(d->timer, &d->on_timer);
	return 0;
}

static int check(halo_fut *f)
{
	halo_op *op = (halo_op *)f;

	if (!f || f->kind != FUT_OP)
		return -EINVAL;
	if (!halo__fut_pending(f))
		return -EALREADY;
	if (op->aux & (IO_AUX_DEADLINE | IO_AUX_TIMED))
		return -EBUSY;
	return 0;
}

int halo_deadline(halo_fut *f, uint64_t deadline_ns)
{
	halo_op *op = (halo_op *)f;
	halo_loop *loop;
	int r = check(f);

	if (r)
		return r;
	loop = f->loop;
	/* A linked timeout needs the op's SQE last and a free SQE right after
	 * it (an early flush would send the op unlinked), and only guards
	 * ops that end with their first CQE. */
	if (!op->on_cqe && !(f->flags & FUT_NOPPED) && is_last_sqe(loop, op) &&
	    io_uring_sq_space_left(&loop->ring) > 0 &&
	    link_timeout(op, deadline_ns) == 0)
		return 0;
	return timer_deadline(op, deadline_ns);
}

int halo_deadline_timer(halo_fut *f, uint64_t deadline_ns)
{
	int r = check(f);

	return r ? r : timer_deadline((halo_op *)f, deadline_ns);
}
