/* Operations: futures completed by a CQE. Each op's user_data is its slot
 * address with the slot's generation in the top 16 bits, so that a late CQE
 * or a cancel aimed at an op can never touch the op that reused the slot.
 * The kernel holds a reference on the op from SQE to final CQE, so the slot
 * (and whatever metadata it carries for the kernel) outlives the operation
 * even if every user reference is gone. */
#include "internal.h"

#define TAG_PTR_MASK ((1ull << 48) - 1)

/* Hand the prepared SQEs to the kernel without waiting, because the SQ is
 * full and the caller needs another entry now. */
static int flush_early(halo_loop *loop)
{
	unsigned n;
	int r;

	if (unlikely(loop->hist))
		halo__hist_submit(loop, true);
	n = halo_uring_flush_sq(&loop->ring);
	loop->sq_epoch++;
	loop->stats.sq_flushes_early++;
	loop->stats.enters++;
	r = halo_uring_enter(&loop->ring, n, 0, 0, NULL);
	halo__sq_limit_update(loop);
	if (r > 0)
		loop->stats.sqes_submitted += (unsigned)r;
	return r;
}

int halo__sq_flush(halo_loop *loop)
{
	return flush_early(loop);
}

struct io_uring_sqe *halo__get_sqe_slow(halo_loop *loop)
{
	/* -EBUSY/-EAGAIN: the kernel is short of room; the SQEs stay queued
	 * and the next enter retries them, but none is free for us now. */
	flush_early(loop);
	return halo_uring_get_sqe(&loop->ring);
}

static inline struct io_uring_sqe *get_sqe(halo_loop *loop)
{
	struct io_uring_sqe *sqe = halo_uring_get_sqe(&loop->ring);

	return likely(sqe) ? sqe : halo__get_sqe_slow(loop);
}

struct io_uring_sqe *halo__loop_sqe(halo_loop *loop)
{
	struct io_uring_sqe *sqe = get_sqe(loop);

	if (unlikely(!sqe))
		return NULL;
	sqe->user_data = 0;
	loop->internal_inflight++;
	return sqe;
}

halo_op *halo__op_start_slow(halo_loop *loop, const char *file, int line,
			     struct io_uring_sqe **sqep)
{
	struct io_uring_sqe *sqe;
	halo_op *op;

	halo__sq_limit_update(loop);
	if (unlikely(halo__fault(HALO_FAULT_SLOT)))
		return NULL;
	op = halo__op_slot_get(loop);
	if (unlikely(!op))
		return NULL;
	sqe = get_sqe(loop);
	if (!sqe) {
		op->fut.flags = FUT_CONSUMED; /* as the slot had it */
		halo__op_slot_put(loop, op);
		return NULL;
	}
	halo__op_fill(loop, op, sqe, file, line);
	if (loop->cur_fiber)
		halo__fiber_own(loop->cur_fiber, op);
	*sqep = sqe;
	return op;
}

int halo__op_pool_refill(halo_loop *loop)
{
	halo_pool *p = &loop->pools.op;
	int r = halo__pool_refill(loop, p);

	if (r < 0)
		return r;
	/* The free list was empty: it holds just the new slab's slots. */
	for (void **slot = p->free; slot; slot = *slot) {
		halo_fut *f = (halo_fut *)slot;

		HALO_UNPOISON(slot, p->slot);
		f->task.fn = halo__run_waiters;
		f->loop = loop;
		f->kind = FUT_OP;
		f->flags = FUT_CONSUMED;
		f->tag = (uint64_t)(uintptr_t)f;
		HALO_POISON((char *)slot + sizeof(void *),
			    p->slot - sizeof(void *));
		HALO_UNPOISON(&f->tag, sizeof(f->tag)); /* see slot_put */
	}
	return 0;
}

struct io_uring_sqe *halo__loop_sqe_nocqe(halo_loop *loop)
{
	struct io_uring_sqe *sqe = get_sqe(loop);

	if (unlikely(!sqe))
		return NULL;
	sqe->user_data = HALO_UD_NOCQE;
	return sqe;
}

/* Everything but a plain success: a cancel asked for or NOPped, an error,
 * or a future some other path completed already. */
static void op_finish_slow(halo_op *op, int32_t res)
{
	halo_fut *f = &op->fut;

	if (!halo__fut_pending(f))
		return;
	if (f->flags & FUT_NOPPED)
		halo__fut_complete(f, HALO_FUT_CANCELLED, -ECANCELED);
	else if (res == -ECANCELED && (f->flags & FUT_CANCEL_REQ))
		halo__fut_complete(f, HALO_FUT_CANCELLED, -ECANCELED);
	else if (res < 0)
		halo__fut_complete(f, HALO_FUT_ERROR, res);
	else
		halo__fut_complete(f, HALO_FUT_OK, res);
}

/* state and flags side by side, so that the common case (pending, nobody
 * cancelled it) is one 16-bit load and one test. */
_Static_assert(offsetof(halo_fut, flags) == offsetof(halo_fut, state) + 1,
	       "state and flags must be adjacent");
_Static_assert(HALO_FUT_PENDING == 0, "pending must be 0");
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define STATE_FLAGS(state, flags) ((uint16_t)((state) | (flags) << 8))
#else
#define STATE_FLAGS(state, flags) ((uint16_t)((state) << 8 | (flags)))
#endif

static inline void op_finish(halo_op *op, int32_t res)
{
	halo_fut *f = &op->fut;
	uint16_t sf;

	memcpy(&sf, &f->state, sizeof(sf));
	if (likely(!(sf & STATE_FLAGS(0xff, FUT_NOPPED | FUT_CANCEL_REQ)) &&
		   res >= 0)) {
		f->state = HALO_FUT_OK;
		f->result = res;
		if (f->waiters)
			halo__fut_queue(f);
		return;
	}
	op_finish_slow(op, res);
}

void halo__op_finish(halo_op *op, int32_t res)
{
	op_finish(op, res);
}

void halo__op_abort(halo_op *op)
{
	assert(op->kernel_refs == 0);
	op->fut.flags |= FUT_CONSUMED;
	halo__fut_unref(&op->fut);
}

int halo__op_cancel(halo_op *op)
{
	halo_loop *loop = op->fut.loop;
	struct io_uring_sqe *sqe;

	if (op->kernel_refs == 0) {
		halo__fut_complete(&op->fut, HALO_FUT_CANCELLED, -ECANCELED);
		return 0;
	}
	if (op->sqe && op->sq_epoch == (unlikely(op->fut.flags & FUT_IOPOLL)
					    ? loop->iopoll->sq_epoch
					    : loop->sq_epoch)) {
		/* Still in our half of the SQ: the kernel has not seen it, so
		 * turn it into a NOP that keeps the tag and the link flags; the
		 * future completes as CANCELLED on the NOP's CQE and the buffer
		 * is never touched. */
		uint8_t keep = op->sqe->flags &
			       (IOSQE_IO_LINK | IOSQE_IO_HARDLINK | IOSQE_IO_DRAIN);
		uint64_t ud = op->sqe->user_data;

		io_uring_prep_nop(op->sqe);
		op->sqe->flags = keep;
		op->sqe->user_data = ud;
		op->fut.flags |= FUT_NOPPED;
		return 0;
	}
	if (op->fut.flags & FUT_IOPOLL) {
		/* On the polled ring, and the kernel has it: ASYNC_CANCEL is
		 * refused there (-EINVAL), and one sent on the main ring does
		 * not find it. Nothing to ask, then: a polled op is a device
		 * transfer that ends in microseconds, and the future completes
		 * on its CQE (with its result: the cancel came too late), never
		 * before the kernel let go of the buffer. */
		return 0;
	}
	sqe = halo__loop_sqe_nocqe(loop);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_cancel64(sqe, halo__op_tag(op), 0);
	halo__skip_success(loop, sqe);
	return 0;
}

/* A CQE of an op with a handler, or one with F_MORE: returns whether it
 * was the op's last. Out of line, so that the common case of reap_op keeps
 * only the two tests that lead here. */
static __attribute__((noinline)) bool
reap_handler(halo_loop *loop, halo_op *op, const struct io_uring_cqe *cqe,
	     unsigned pending, bool polled)
{
	uint32_t flags = cqe->flags;

	if (!op->on_cqe)
		return !(flags & IORING_CQE_F_MORE);
	/* stats.inflight lost the whole batch at once (reap_range): while
	 * user code runs, which may read it or start polled ops, the batch's
	 * CQEs not handled yet, this one included, count again. */
	loop->stats.inflight += pending;
	if (polled)
		loop->iopoll->inflight += pending;
	op->on_cqe(op, cqe->res, flags);
	loop->stats.inflight -= pending;
	if (polled)
		loop->iopoll->inflight -= pending;
	/* User code may have run for a while: halo_loop_now() reads the
	 * clock again, so that no deadline set after it counts from a time
	 * before it. */
	loop->now_valid = 0;
	return !(flags & IORING_CQE_F_MORE);
}

/* The last CQE of an SQE of op, which a fiber owns. */
static __attribute__((noinline)) void owned_op_cqe(halo_op *op)
{
	if (--op->kernel_refs == 0)
		halo__fiber_op_ended(op);
}

/* One CQE of op: complete it on its last CQE (or hand every CQE to its
 * on_cqe), then drop the kernel's reference. Returns whether it was the
 * last; the caller takes the op off stats.inflight (and the polled ring's
 * count) then. */
static inline __attribute__((always_inline)) bool
reap_op(halo_loop *loop, halo_op *op, const struct io_uring_cqe *cqe,
	unsigned pending, bool polled)
{
	/* Two tests for the common case: no handler, the op's only CQE. */
	if (likely(!op->on_cqe && !(cqe->flags & IORING_CQE_F_MORE)))
		op_finish(op, cqe->res);
	else if (!reap_handler(loop, op, cqe, pending, polled))
		return false;
	/* The op's last CQE: the kernel lets go of it. An op no fiber owns
	 * (the common case) needs no test of what is left. */
	if (unlikely(op->owner != NULL))
		owned_op_cqe(op);
	else
		op->kernel_refs--;
	halo__fut_unref(&op->fut);
	return true;
}

/* ring's CQEs from head to tail; hist and polled are constants in each
 * instance, so that the main ring's loop without histograms tests nothing
 * for them per CQE. The polled ring's SQEs are never stamped for the
 * histograms. */
static inline __attribute__((always_inline)) void
reap_range(halo_loop *loop, struct io_uring *ring, unsigned head,
	   unsigned tail, bool hist, bool polled)
{
	const struct io_uring_cqe *cqes = ring->cq.cqes;
	const struct io_uring_cqe *ring_end = cqes + ring->cq.ring_entries;
	const struct io_uring_cqe *cqe = &cqes[head & ring->cq.ring_mask];
	const struct io_uring_cqe *end = cqe + (tail - head);
	size_t wrapped = 0;

	/* At most two runs of adjacent CQEs, each walked with a pointer: up
	 * to the ring's end, then from its start. */
	if (unlikely(end > ring_end)) {
		wrapped = (size_t)(end - ring_end);
		end = ring_end;
	}
	/* Every CQE is taken to end an op: stats.inflight loses them all at
	 * once, and those that end none give theirs back (reap_handler puts
	 * back the rest of the batch while a handler's user code runs). */
	loop->stats.inflight -= tail - head;
	if (polled)
		loop->iopoll->inflight -= tail - head;
	for (;;) {
		for (; cqe != end; cqe++) {
			uint64_t ud = cqe->user_data;
			halo_op *op;

			if (unlikely(ud < HALO__UD_RESERVED)) {
				if (ud == 0)
					loop->internal_inflight--;
				else if (ud != HALO_UD_NOCQE)
					halo__group_cqe(loop, ud, cqe->res);
				goto kept;
			}
			op = (halo_op *)(uintptr_t)(ud & TAG_PTR_MASK);
			if (unlikely(op->fut.tag != ud)) {
				loop->stats.stale_cqes++;
				goto kept;
			}
			if (hist)
				halo__hist_cqe(loop, op);
			if (likely(reap_op(loop, op, cqe,
					   (unsigned)(end - cqe + wrapped),
					   polled)))
				continue;
kept:
			loop->stats.inflight++;
			if (polled)
				loop->iopoll->inflight++;
		}
		if (likely(!wrapped))
			break;
		cqe = cqes;
		end = cqes + wrapped;
		wrapped = 0;
	}
}

/* Reap every CQE ring holds now; returns how many. */
static inline __attribute__((always_inline)) unsigned
reap_ring(halo_loop *loop, struct io_uring *ring, bool polled)
{
	unsigned head = *ring->cq.khead, tail, n;

	/* One acquire load of the tail for the whole batch; liburing's
	 * for_each reloads it per CQE. */
	tail = io_uring_smp_load_acquire(ring->cq.ktail);
	n = tail - head;
	if (n) {
		/* These CQEs may predate halo_loop_event_now()'s last read:
		 * the next call reads the clock again, after the tail load. */
		loop->event_valid = 0;
		if (polled)
			reap_range(loop, ring, head, tail, false, true);
		else if (unlikely(loop->hist))
			reap_range(loop, ring, head, tail, true, false);
		else
			reap_range(loop, ring, head, tail, false, false);
		/* The slots are free for the kernel once we read them all:
		 * publish the tail we stopped at, as io_uring_cq_advance
		 * would after adding n. */
		io_uring_smp_store_release(ring->cq.khead, tail);
		loop->stats.cqes_reaped += n;
	}
	/* The polled ring is entered with GETEVENTS in every tick that has
	 * ops on it, which flushes an overflow; only the main ring's wait
	 * needs to know. */
	if (!polled && unlikely(IO_URING_READ_ONCE(*ring->sq.kflags) &
				IORING_SQ_CQ_OVERFLOW)) {
		/* NODROP kept the extra CQEs in the kernel; the next enter
		 * with GETEVENTS flushes them into the ring. */
		loop->stats.cq_overflows++;
		loop->cq_overflowed = 1;
	}
	return n;
}

unsigned halo__reap(halo_loop *loop)
{
	return reap_ring(loop, &loop->ring, false);
}

unsigned halo__reap_iopoll(halo_loop *loop)
{
	return reap_ring(loop, &loop->iopoll->ring, true);
}

int halo__enter(halo_loop *loop, unsigned wait_nr, uint64_t timeout_ns)
{
	struct __kernel_timespec ts, *tsp = NULL;
	unsigned n;
	int r;

	if (unlikely(loop->hist))
		halo__hist_submit(loop, false);
	n = halo_uring_flush_sq(&loop->ring);
	if (timeout_ns != UINT64_MAX) {
		ts.tv_sec = (long long)(timeout_ns / 1000000000ull);
		ts.tv_nsec = (long long)(timeout_ns % 1000000000ull);
		tsp = &ts;
	}
	loop->sq_epoch++;
	loop->stats.enters++;
	loop->cq_overflowed = 0;
	if (unlikely(loop->opts.min_wait_us) && wait_nr == 1 &&
	    loop->stats.inflight > 1 && (loop->features & HALO_FEAT_MIN_WAIT)) {
		/* Batching: ask for every op in flight, but settle for what
		 * has come after min_wait_us (at least one). */
		unsigned want = loop->stats.inflight < loop->ring.cq.ring_entries
					? (unsigned)loop->stats.inflight
					: loop->ring.cq.ring_entries;

		r = halo_uring_enter_min_wait(&loop->ring, n, want,
					      IORING_ENTER_GETEVENTS, tsp,
					      loop->opts.min_wait_us);
	} else {
		r = halo_uring_enter(&loop->ring, n, wait_nr,
				     IORING_ENTER_GETEVENTS, tsp);
	}
	halo__sq_limit_update(loop);
	if (unlikely(loop->hist))
		halo__hist_entered(loop);
	if (r >= 0) {
		loop->stats.sqes_submitted += (unsigned)r;
		return r;
	}
	switch (r) {
	case -ETIME: /* the wait timed out: a timer is due */
	case -EINTR: /* a signal arrived: the tick goes on */
	case -EAGAIN: /* kernel short of memory for requests: retry */
	case -EBUSY: /* CQ backlog: reap, and the next tick retries */
	case -EBADR: /* NODROP could not save a CQE: counted, go on */
		if (r == -EBADR)
			loop->stats.cq_overflows++;
		return 0;
	default:
		return r;
	}
}
