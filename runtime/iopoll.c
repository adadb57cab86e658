/* The polled ring: a second io_uring set up with IORING_SETUP_IOPOLL, for
 * O_DIRECT reads and writes on devices with poll queues. No interrupt
 * announces its completions; the tick finds them by entering it with
 * GETEVENTS, one non-blocking pass per tick, and never sleeps in the main
 * ring while it has ops in flight (loop.c). The ring is made at the first
 * direct op, so that a loop with the option on pays nothing until it is
 * used; where it cannot be made, or the device refuses polled I/O
 * (io/file.c), the loop switches the feature off and the main ring runs
 * the ops. */
#include "internal.h"

static int iopoll_open(halo_loop *loop)
{
	struct halo__iopoll *p = halo_mem_zalloc(loop, sizeof(*p));
	int r;

	if (!p)
		return -ENOMEM;
	r = halo_uring_setup_iopoll(loop->opts.sq_entries, &p->ring);
	if (r < 0) {
		halo_mem_free(loop, p, sizeof(*p));
		return r;
	}
	loop->iopoll = p;
	return 0;
}

/* Hand the polled SQ to the kernel now: it is full and a direct op needs
 * an entry. Without GETEVENTS: submitting is all that is asked. */
static void flush_early(halo_loop *loop, struct halo__iopoll *p)
{
	unsigned n = halo_uring_flush_sq(&p->ring);
	int r;

	p->sq_epoch++;
	loop->stats.sq_flushes_early++;
	loop->stats.enters++;
	r = halo_uring_enter(&p->ring, n, 0, 0, NULL);
	if (r > 0)
		loop->stats.sqes_submitted += (unsigned)r;
}

struct io_uring_sqe *halo__iopoll_sqe(halo_op *op)
{
	halo_loop *loop = op->fut.loop;
	struct io_uring_sqe *sqe;
	struct halo__iopoll *p;

	if (!(loop->features & HALO_FEAT_IOPOLL))
		return NULL;
	if (unlikely(!loop->iopoll) && iopoll_open(loop) < 0) {
		/* No memory or no locked memory for a second ring: the main
		 * ring does the work, as without the option. */
		halo__iopoll_off(loop);
		return NULL;
	}
	p = loop->iopoll;
	sqe = halo_uring_get_sqe(&p->ring);
	if (unlikely(!sqe)) {
		flush_early(loop, p);
		sqe = halo_uring_get_sqe(&p->ring);
		if (!sqe)
			return NULL;
	}
	sqe->user_data = halo__op_tag(op);
	op->sqe = sqe;
	op->sq_epoch = p->sq_epoch;
	op->fut.flags |= FUT_IOPOLL;
	if (op->kernel_refs++ == 0 && loop->cur_fiber &&
	    !(op->fut.flags & FUT_UNOWNED))
		halo__fiber_own(loop->cur_fiber, op);
	op->fut.refs++;
	loop->stats.inflight++;
	p->inflight++;
	return sqe;
}

void halo__iopoll_unqueue(halo_op *op, struct io_uring_sqe *sqe)
{
	halo_loop *loop = op->fut.loop;

	assert(op->kernel_refs > 1 && (op->fut.flags & FUT_IOPOLL));
	/* Dropping the SQE from the ring is not possible once the tail moved
	 * past it; a NOP tagged HALO_UD_NOCQE costs one empty CQE. */
	io_uring_prep_nop(sqe);
	sqe->user_data = HALO_UD_NOCQE;
	op->fut.flags &= (uint8_t)~FUT_IOPOLL;
	op->kernel_refs--;
	op->fut.refs--;
	loop->stats.inflight--;
	loop->iopoll->inflight--;
}

int halo__iopoll_enter(halo_loop *loop)
{
	struct halo__iopoll *p = loop->iopoll;
	unsigned n = halo_uring_flush_sq(&p->ring);
	int r;

	p->sq_epoch++;
	loop->stats.enters++;
	/* min_complete 0: the kernel polls once (BLK_POLL_ONESHOT) and returns;
	 * with 1 it would spin in the kernel until a completion or a
	 * reschedule, deaf to the main ring, sockets and timers meanwhile. */
	r = halo_uring_enter(&p->ring, n, 0, IORING_ENTER_GETEVENTS, NULL);
	if (r >= 0) {
		loop->stats.sqes_submitted += (unsigned)r;
		return r;
	}
	switch (r) {
	case -EINTR:  /* a signal: the next tick polls again */
	case -EAGAIN: /* kernel short of memory for requests: retry */
	case -EBUSY:  /* CQ backlog: reap, and the next tick retries */
		return 0;
	case -EBADR: /* NODROP could not save a CQE: counted, as on the
		      * main ring, not an end of the loop */
		loop->stats.cq_overflows++;
		return 0;
	default:
		return r;
	}
}

void halo__iopoll_close(halo_loop *loop)
{
	if (!loop->iopoll)
		return;
	io_uring_queue_exit(&loop->iopoll->ring);
	halo_mem_free(loop, loop->iopoll, sizeof(*loop->iopoll));
	loop->iopoll = NULL;
}
