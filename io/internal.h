/* Internals shared by the files of io/: how an op starts, how it finishes,
 * and the bits of op->aux that io/ reserves for deadlines and fixed files.
 * Not part of the public API. */
#ifndef HALO_IO_INTERNAL_H
#define HALO_IO_INTERNAL_H

#include "../runtime/internal.h"

/* op->aux: the low 16 bits belong to the op's own code, the high bits to
 * io/ as a whole. */
#define IO_AUX_DEADLINE (1u << 31) /* a linked timeout rides with the SQE */
#define IO_AUX_EXPIRED (1u << 30)  /* the deadline timer fired */
#define IO_AUX_FIXED (1u << 29)	   /* fd is an index into registered files */
#define IO_AUX_TIMED (1u << 28)	   /* a deadline timer watches the op */
#define IO_AUX_OWN_MASK 0xffffu

/* Start an op with one SQE; returns the op and its SQE, or NULL with
 * nothing started. Always inlined: it is the whole start path of every
 * one-SQE op. */
static inline __attribute__((always_inline)) halo_op *
io_op_start(halo_loop *loop, const char *file, int line,
	    struct io_uring_sqe **sqe)
{
	return halo__op_start(loop, file, line, sqe);
}

/* True when the op's deadline is what ended it: a cancel nobody asked for
 * (linked timeout) or one the deadline timer issued. */
static inline bool io_timed_out(const halo_op *op, int32_t res)
{
	if (op->fut.flags & FUT_CANCEL_REQ)
		return false;
	if (op->aux & IO_AUX_EXPIRED)
		return res == -ECANCELED || (op->fut.flags & FUT_NOPPED);
	return (op->aux & IO_AUX_DEADLINE) && res == -ECANCELED;
}

/* Complete op from its final CQE, turning a deadline's cancel into
 * -ETIMEDOUT. */
static inline void io_finish(halo_op *op, int32_t res)
{
	if (!halo__fut_pending(&op->fut))
		return;
	if (unlikely(io_timed_out(op, res)))
		halo__fut_complete(&op->fut, HALO_FUT_ERROR, -ETIMEDOUT);
	else
		halo__op_finish(op, res);
}

/* The on_cqe of single-shot ops that carry a deadline. */
void halo__io_plain_cqe(halo_op *op, int32_t res, uint32_t flags);

/* Copy an iovec array into op: into room (room_n entries inside op->meta)
 * when it fits, else into loop memory that the CQE handler frees (it sets
 * op->on_cqe, op->ctx and the own bits of op->aux). NULL when out of memory. */
struct iovec *halo__io_iov_copy(halo_op *op, const struct iovec *iov, int n,
				struct iovec *room, size_t room_n);

/* The CQE handler that frees such a copy, then finishes the op. */
void halo__io_iov_free_cqe(halo_op *op, int32_t res, uint32_t flags);

/* Start a transfer that resubmits until len bytes moved (file.c). */
halo_fut *halo__io_rw_all(halo_loop *loop, uint8_t opcode, int fd, void *buf,
			  size_t len, int64_t off, int msg_flags,
			  const char *file, int line);

static inline void io_apply_fixed(halo_op *op, struct io_uring_sqe *sqe)
{
	if (op->aux & IO_AUX_FIXED)
		sqe->flags |= IOSQE_FIXED_FILE;
}

#endif
