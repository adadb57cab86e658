/* File and descriptor operations as futures: prepare one SQE tagged with a
 * pooled op; the reaper completes the future from the CQE. */
#include "file.h"

#include "../runtime/internal.h"

/* Start an op with one SQE; returns the op and its SQE, or NULL with nothing
 * started. */
static halo_op *op_start(halo_loop *loop, const char *file, int line,
			 struct io_uring_sqe **sqe)
{
	halo_op *op = halo__op_new(loop, file, line);

	if (!op)
		return NULL;
	*sqe = halo__op_sqe(op);
	if (!*sqe) {
		halo__op_abort(op);
		return NULL;
	}
	return op;
}

halo_fut *halo_nop_at(halo_loop *loop, const char *file, int line)
{
	struct io_uring_sqe *sqe;
	halo_op *op = op_start(loop, file, line, &sqe);

	if (!op)
		return NULL;
	io_uring_prep_nop(sqe);
	return &op->fut;
}

halo_fut *halo_read_at(halo_loop *loop, int fd, void *buf, size_t len,
		       int64_t off, const char *file, int line)
{
	struct io_uring_sqe *sqe;
	halo_op *op;

	if (len > UINT32_MAX)
		len = UINT32_MAX;
	op = op_start(loop, file, line, &sqe);
	if (!op)
		return NULL;
	io_uring_prep_read(sqe, fd, buf, (unsigned)len, (__u64)off);
	return &op->fut;
}

halo_fut *halo_write_at(halo_loop *loop, int fd, const void *buf, size_t len,
			int64_t off, const char *file, int line)
{
	struct io_uring_sqe *sqe;
	halo_op *op;

	if (len > UINT32_MAX)
		len = UINT32_MAX;
	op = op_start(loop, file, line, &sqe);
	if (!op)
		return NULL;
	io_uring_prep_write(sqe, fd, buf, (unsigned)len, (__u64)off);
	return &op->fut;
}
