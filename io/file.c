/* File and descriptor operations as futures: prepare one SQE tagged with a
 * pooled op; the reaper completes the future from the CQE. Helpers that must
 * finish a transfer (read_full, write_all, and send_all in net.c) resubmit
 * the remainder from their CQE handler, so no fiber is needed. */
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "file.h"
#include "internal.h"

/* A future that is already ERROR with err, for start calls whose arguments
 * are wrong: the caller gets -errno through the usual path. */
static halo_fut *fail_now(halo_loop *loop, int err, const char *file, int line)
{
	halo_op *op = halo__op_new(loop, file, line);

	if (!op)
		return NULL;
	halo__fut_complete(&op->fut, HALO_FUT_ERROR, err);
	return &op->fut;
}

void halo__io_plain_cqe(halo_op *op, int32_t res, uint32_t flags)
{
	if (!(flags & IORING_CQE_F_MORE))
		io_finish(op, res);
}

/* halo_nop_at when the op's start takes the slow path: apart, so that the
 * common case makes no call and needs no stack frame (NOPs measure the
 * per-operation cost of halo in bench_nop). */
static __attribute__((noinline)) halo_fut *nop_slow(halo_loop *loop,
						    const char *file, int line)
{
	struct io_uring_sqe *sqe;
	halo_op *op = halo__op_start_slow(loop, file, line, &sqe);

	if (!op)
		return NULL;
	io_uring_prep_nop(sqe);
	return &op->fut;
}

halo_fut *halo_nop_at(halo_loop *loop, const char *file, int line)
{
	struct io_uring_sqe *sqe;
	halo_op *op = halo__op_start_fast(loop, file, line, &sqe);

	if (unlikely(!op))
		return nop_slow(loop, file, line);
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
	op = io_op_start(loop, file, line, &sqe);
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
	op = io_op_start(loop, file, line, &sqe);
	if (!op)
		return NULL;
	io_uring_prep_write(sqe, fd, buf, (unsigned)len, (__u64)off);
	return &op->fut;
}

void halo__io_iov_free_cqe(halo_op *op, int32_t res, uint32_t flags)
{
	if (flags & IORING_CQE_F_MORE)
		return;
	if (op->ctx) {
		halo_mem_free(op->fut.loop, op->ctx,
			      (op->aux & IO_AUX_OWN_MASK) *
				      sizeof(struct iovec));
		op->ctx = NULL;
	}
	io_finish(op, res);
}

/* Copy iov into op (the kernel reads the array at submit, after the caller
 * has returned): into op->meta when it fits, else into loop memory that the
 * CQE handler frees. Returns the copy or NULL. */
struct iovec *halo__io_iov_copy(halo_op *op, const struct iovec *iov, int n,
				struct iovec *room, size_t room_n)
{
	struct iovec *dst;

	if ((size_t)n <= room_n) {
		dst = room;
	} else {
		dst = halo_mem_alloc(op->fut.loop, (size_t)n * sizeof(*iov));
		if (!dst)
			return NULL;
		op->ctx = dst;
		op->aux = (op->aux & ~IO_AUX_OWN_MASK) | (uint32_t)n;
		op->on_cqe = halo__io_iov_free_cqe;
	}
	memcpy(dst, iov, (size_t)n * sizeof(*iov));
	return dst;
}

static halo_fut *rwv(halo_loop *loop, bool is_write, int fd,
		     const struct iovec *iov, int n, int64_t off,
		     const char *file, int line)
{
	struct io_uring_sqe *sqe;
	struct iovec *copy;
	halo_op *op;

	if (n <= 0 || n > IOV_MAX || !iov)
		return fail_now(loop, -EINVAL, file, line);
	op = halo__op_new(loop, file, line);
	if (!op)
		return NULL;
	copy = halo__io_iov_copy(op, iov, n, op->meta.iov,
				 HALO_OP_META / sizeof(*iov));
	if (!copy) {
		halo__op_abort(op);
		return NULL;
	}
	sqe = halo__op_sqe(op);
	if (!sqe) {
		if (op->ctx)
			halo_mem_free(loop, op->ctx, (size_t)n * sizeof(*iov));
		halo__op_abort(op);
		return NULL;
	}
	if (is_write)
		io_uring_prep_writev(sqe, fd, copy, (unsigned)n, (__u64)off);
	else
		io_uring_prep_readv(sqe, fd, copy, (unsigned)n, (__u64)off);
	return &op->fut;
}

halo_fut *halo_readv_at(halo_loop *loop, int fd, const struct iovec *iov,
			int iovcnt, int64_t off, const char *file, int line)
{
	return rwv(loop, false, fd, iov, iovcnt, off, file, line);
}

halo_fut *halo_writev_at(halo_loop *loop, int fd, const struct iovec *iov,
			 int iovcnt, int64_t off, const char *file, int line)
{
	return rwv(loop, true, fd, iov, iovcnt, off, file, line);
}

/* State of a transfer that must complete, in op->meta. */
struct rw_all {
	uint64_t len;
	uint64_t done;
	int64_t off; /* -1: the file position (and sockets) */
	int fd;
	uint8_t opcode; /* IORING_OP_READ, _WRITE, _SEND or _SEND_ZC */
	int msg_flags;
	int32_t zc_res; /* SEND_ZC: a piece's byte count, until notified */
};

static void rw_all_prep(halo_op *op, struct io_uring_sqe *sqe)
{
	struct rw_all *s = (struct rw_all *)&op->meta;
	char *p = (char *)op->ctx + s->done;
	uint64_t left = s->len - s->done;
	__u64 off = s->off < 0 ? (__u64)-1 : (__u64)(s->off + (int64_t)s->done);
	unsigned n = left > UINT32_MAX ? UINT32_MAX : (unsigned)left;

	switch (s->opcode) {
	case IORING_OP_READ:
		io_uring_prep_read(sqe, s->fd, p, n, off);
		break;
	case IORING_OP_WRITE:
		io_uring_prep_write(sqe, s->fd, p, n, off);
		break;
	case IORING_OP_SEND_ZC:
		/* MSG_WAITALL: the kernel finishes the piece itself, so that
		 * a payload usually costs one notification, not one per
		 * short send. */
		io_uring_prep_send_zc(sqe, s->fd, p, n,
				      s->msg_flags | MSG_WAITALL, 0);
		break;
	default:
		io_uring_prep_send(sqe, s->fd, p, n, s->msg_flags);
		break;
	}
	io_apply_fixed(op, sqe);
}

static void rw_all_cqe(halo_op *op, int32_t res, uint32_t flags)
{
	struct rw_all *s = (struct rw_all *)&op->meta;
	struct io_uring_sqe *sqe;

	if (s->opcode == IORING_OP_SEND_ZC) {
		/* The piece's count comes first, with F_MORE when a
		 * notification follows; the next piece, or the completion,
		 * waits for it: only then is the buffer free. */
		if (!(flags & IORING_CQE_F_NOTIF)) {
			s->zc_res = res;
			if (flags & IORING_CQE_F_MORE)
				return;
		}
		res = s->zc_res;
	}
	if (!halo__fut_pending(&op->fut))
		return;
	if (res == -EOPNOTSUPP && s->opcode == IORING_OP_SEND_ZC &&
	    !(op->fut.flags & FUT_NOPPED)) {
		/* A socket whose protocol takes no zero-copy sends (Unix
		 * sockets): the piece went nowhere; it and the rest go as
		 * plain sends. */
		s->opcode = IORING_OP_SEND;
		goto next;
	}
	if (res < 0 || (op->fut.flags & FUT_NOPPED)) {
		io_finish(op, res);
		return;
	}
	s->done += (uint64_t)res;
	if (s->done == s->len || (res == 0 && s->opcode == IORING_OP_READ)) {
		halo__fut_complete(&op->fut, HALO_FUT_OK, (int64_t)s->done);
		return;
	}
	if (res == 0) {
		io_finish(op, -EIO); /* a write that makes no progress */
		return;
	}
next:
	if ((op->fut.flags & FUT_CANCEL_REQ) || (op->aux & IO_AUX_EXPIRED)) {
		/* Asked to stop between two pieces: nothing is in flight. */
		io_finish(op, -ECANCELED);
		return;
	}
	sqe = halo__op_sqe(op);
	if (!sqe) {
		io_finish(op, -EBUSY);
		return;
	}
	rw_all_prep(op, sqe);
}

halo_fut *halo__io_rw_all(halo_loop *loop, uint8_t opcode, int fd, void *buf,
			  size_t len, int64_t off, int msg_flags,
			  const char *file, int line)
{
	struct io_uring_sqe *sqe;
	struct rw_all *s;
	halo_op *op = io_op_start(loop, file, line, &sqe);

	if (!op)
		return NULL;
	s = (struct rw_all *)&op->meta;
	s->len = len;
	s->done = 0;
	s->off = off;
	s->fd = fd;
	s->opcode = opcode;
	s->msg_flags = msg_flags;
	op->ctx = buf;
	op->on_cqe = rw_all_cqe;
	if (len == 0) {
		io_uring_prep_nop(sqe);
		return &op->fut;
	}
	rw_all_prep(op, sqe);
	return &op->fut;
}

halo_fut *halo_read_full_at(halo_loop *loop, int fd, void *buf, size_t len,
			    int64_t off, const char *file, int line)
{
	return halo__io_rw_all(loop, IORING_OP_READ, fd, buf, len, off, 0,
			       file, line);
}

halo_fut *halo_write_all_at(halo_loop *loop, int fd, const void *buf,
			    size_t len, int64_t off, const char *file, int line)
{
	return halo__io_rw_all(loop, IORING_OP_WRITE, fd, (void *)buf, len, off,
			       0, file, line);
}

halo_fut *halo_fsync_at(halo_loop *loop, int fd, const char *file, int line)
{
	struct io_uring_sqe *sqe;
	halo_op *op = io_op_start(loop, file, line, &sqe);

	if (!op)
		return NULL;
	io_uring_prep_fsync(sqe, fd, 0);
	return &op->fut;
}

halo_fut *halo_fdatasync_at(halo_loop *loop, int fd, const char *file,
			    int line)
{
	struct io_uring_sqe *sqe;
	halo_op *op = io_op_start(loop, file, line, &sqe);

	if (!op)
		return NULL;
	io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
	return &op->fut;
}

/* A path the kernel copies at submit: into op->meta if it fits. */
static const char *keep_path(halo_op *op, const char *path)
{
	size_t n = strlen(path);

	if (n >= HALO_OP_META)
		return path;
	memcpy(op->meta.bytes, path, n + 1);
	return (const char *)op->meta.bytes;
}

halo_fut *halo_openat_at(halo_loop *loop, int dfd, const char *path,
			 int flags, unsigned mode, const char *file, int line)
{
	struct io_uring_sqe *sqe;
	halo_op *op = io_op_start(loop, file, line, &sqe);

	if (!op)
		return NULL;
	io_uring_prep_openat(sqe, dfd, keep_path(op, path), flags, mode);
	return &op->fut;
}

halo_fut *halo_close_at(halo_loop *loop, int fd, const char *file, int line)
{
	struct io_uring_sqe *sqe;
	halo_op *op = io_op_start(loop, file, line, &sqe);

	if (!op)
		return NULL;
	io_uring_prep_close(sqe, fd);
	/* No fiber owns a close: it touches no memory of the fiber's, and
	 * cancelling it at the fiber's end (a NOP before submission) would
	 * leave the fd open for good. */
	halo_fiber_disown(&op->fut);
	return &op->fut;
}

halo_fut *halo_statx_at(halo_loop *loop, int dfd, const char *path, int flags,
			unsigned mask, struct statx *out, const char *file,
			int line)
{
	struct io_uring_sqe *sqe;
	halo_op *op = io_op_start(loop, file, line, &sqe);

	if (!op)
		return NULL;
	io_uring_prep_statx(sqe, dfd, keep_path(op, path), flags, mask, out);
	return &op->fut;
}

halo_fut *halo_fallocate_at(halo_loop *loop, int fd, int mode, int64_t off,
			    int64_t len, const char *file, int line)
{
	struct io_uring_sqe *sqe;
	halo_op *op = io_op_start(loop, file, line, &sqe);

	if (!op)
		return NULL;
	io_uring_prep_fallocate(sqe, fd, mode, (__u64)off, (__u64)len);
	return &op->fut;
}

int halo_files_register(halo_loop *loop, const int *fds, unsigned n)
{
	return io_uring_register_files(&loop->ring, fds, n);
}

int halo_files_update(halo_loop *loop, unsigned off, const int *fds,
		      unsigned n)
{
	int r = io_uring_register_files_update(&loop->ring, off, (int *)fds, n);

	return r < 0 ? r : 0;
}

int halo_files_unregister(halo_loop *loop)
{
	return io_uring_unregister_files(&loop->ring);
}

/* A direct read or write, in op->meta: what it takes to run it again on
 * the main ring when the polled ring refuses it. */
struct direct_rw {
	void *buf;
	int64_t off;
	uint32_t len;
	int fd;
	uint8_t opcode; /* IORING_OP_READ or _WRITE */
};

static void direct_prep(halo_op *op, struct io_uring_sqe *sqe)
{
	struct direct_rw *d = (struct direct_rw *)&op->meta;

	io_uring_prep_rw(d->opcode, sqe, d->fd, d->buf, d->len, (__u64)d->off);
}

/* The polled ring refused because of the file, not the device: a file
 * without O_DIRECT says -EOPNOTSUPP there as well. */
static bool is_buffered(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl >= 0 && !(fl & O_DIRECT);
}

static void direct_cqe(halo_op *op, int32_t res, uint32_t flags)
{
	struct direct_rw *d = (struct direct_rw *)&op->meta;
	halo_loop *loop = op->fut.loop;
	struct io_uring_sqe *sqe;

	(void)flags;
	if (res != -EOPNOTSUPP || !(op->fut.flags & FUT_IOPOLL) ||
	    (op->fut.flags & FUT_NOPPED)) {
		io_finish(op, res);
		return;
	}
	/* The device (or the file) cannot do polled I/O. The block layer
	 * refuses a polled bio before it reaches the device, so no byte
	 * moved; a direct I/O that failed halfway would be retried whole,
	 * which rewrites the same bytes at the same offset. */
	op->fut.flags &= (uint8_t)~FUT_IOPOLL;
	if (!is_buffered(d->fd))
		halo__iopoll_off(loop);
	if ((op->fut.flags & FUT_CANCEL_REQ) || (op->aux & IO_AUX_EXPIRED) ||
	    loop->closing) {
		/* Nothing in flight and nothing done: stop here. */
		io_finish(op, -ECANCELED);
		return;
	}
	sqe = halo__op_sqe(op);
	if (!sqe) {
		io_finish(op, -EBUSY);
		return;
	}
	direct_prep(op, sqe);
	loop->stats.iopoll_retries++;
}

/* A direct op on the polled ring told to use a registered file. The kernel
 * keeps a file table per ring and halo registers only the main ring's: on
 * the polled ring the index would be looked up as a plain fd, some other
 * file or none. The op moves to the main ring instead, unpolled, as a
 * direct op the device refuses to poll does. */
static int direct_to_main(halo_op *op)
{
	struct io_uring_sqe *polled = op->sqe, *sqe;

	assert(op->on_cqe == direct_cqe);
	/* The main ring's SQE first: if there is none, nothing changed. */
	sqe = halo__op_sqe(op);
	if (!sqe)
		return -EBUSY;
	halo__iopoll_unqueue(op, polled);
	direct_prep(op, sqe);
	return 0;
}

int halo_files_use_fixed(halo_fut *f)
{
	halo_op *op = (halo_op *)f;
	uint64_t epoch;
	int r;

	if (f->kind != FUT_OP)
		return -EINVAL;
	epoch = (f->flags & FUT_IOPOLL) ? f->loop->iopoll->sq_epoch
					: f->loop->sq_epoch;
	if (!op->sqe || op->sq_epoch != epoch || !halo__fut_pending(f))
		return -EALREADY;
	if ((f->flags & FUT_IOPOLL) && !(f->flags & FUT_NOPPED)) {
		r = direct_to_main(op);
		if (r < 0)
			return r;
	}
	op->sqe->flags |= IOSQE_FIXED_FILE;
	op->aux |= IO_AUX_FIXED;
	return 0;
}

static halo_fut *rw_direct(halo_loop *loop, uint8_t opcode, int fd, void *buf,
			   size_t len, int64_t off, const char *file, int line)
{
	struct io_uring_sqe *sqe;
	struct direct_rw *d;
	halo_op *op;

	if (len > UINT32_MAX)
		len = UINT32_MAX;
	if (!(loop->features & HALO_FEAT_IOPOLL)) {
		op = io_op_start(loop, file, line, &sqe);
		if (!op)
			return NULL;
		io_uring_prep_rw(opcode, sqe, fd, buf, (unsigned)len,
				 (__u64)off);
		return &op->fut;
	}
	op = halo__op_new(loop, file, line);
	if (!op)
		return NULL;
	d = (struct direct_rw *)&op->meta;
	d->buf = buf;
	d->off = off;
	d->len = (uint32_t)len;
	d->fd = fd;
	d->opcode = opcode;
	sqe = halo__iopoll_sqe(op);
	if (sqe) {
		op->on_cqe = direct_cqe;
	} else {
		sqe = halo__op_sqe(op);
		if (!sqe) {
			halo__op_abort(op);
			return NULL;
		}
	}
	direct_prep(op, sqe);
	return &op->fut;
}

halo_fut *halo_read_direct_at(halo_loop *loop, int fd, void *buf, size_t len,
			      int64_t off, const char *file, int line)
{
	return rw_direct(loop, IORING_OP_READ, fd, buf, len, off, file, line);
}

halo_fut *halo_write_direct_at(halo_loop *loop, int fd, const void *buf,
			       size_t len, int64_t off, const char *file,
			       int line)
{
	return rw_direct(loop, IORING_OP_WRITE, fd, (void *)buf, len, off, file,
			 line);
}

void *halo_buf_alloc_aligned(size_t size, size_t align)
{
	void *p = NULL;

	if (align < sizeof(void *) || (align & (align - 1)))
		return NULL;
	if (posix_memalign(&p, align, size ? size : align))
		return NULL;
	memset(p, 0, size);
	return p;
}

void halo_buf_free(void *p)
{
	free(p);
}

struct halo__buf_slot {
	char *base;
	size_t len;
	uint32_t busy; /* operations in flight on the slot */
};

int halo_bufs_init(halo_bufs *b, halo_loop *loop, unsigned n)
{
	int r;

	memset(b, 0, sizeof(*b));
	if (n == 0 || n > HALO_BUFS_MAX)
		return -EINVAL;
	b->slot = halo_mem_zalloc(loop, (size_t)n * sizeof(*b->slot));
	if (!b->slot)
		return -ENOMEM;
	if (halo_loop_features(loop) & HALO_FEAT_FIXED_BUFS) {
		/* A sparse table: slots are filled one by one (6.x). */
		r = io_uring_register_buffers_sparse(&loop->ring, n);
		if (r < 0) {
			halo_mem_free(loop, b->slot,
				      (size_t)n * sizeof(*b->slot));
			b->slot = NULL;
			return r;
		}
		b->registered = 1;
	}
	b->loop = loop;
	b->n = n;
	return 0;
}

int halo_bufs_set(halo_bufs *b, unsigned idx, void *buf, size_t len)
{
	struct halo__buf_slot *s;

	if (!b->slot || idx >= b->n || (!buf && len) || (buf && !len) ||
	    len > (1u << 30))
		return -EINVAL;
	s = &b->slot[idx];
	if (s->busy)
		return -EBUSY;
	if (b->registered) {
		struct iovec iov = {buf, len};
		int r = io_uring_register_buffers_update_tag(&b->loop->ring,
							     idx, &iov, NULL,
							     1);
		if (r < 0)
			return r;
	}
	s->base = buf;
	s->len = len;
	return 0;
}

int halo_bufs_close(halo_bufs *b)
{
	if (!b->slot)
		return 0;
	for (unsigned i = 0; i < b->n; i++)
		if (b->slot[i].busy)
			return -EBUSY;
	if (b->registered)
		(void)io_uring_unregister_buffers(&b->loop->ring);
	halo_mem_free(b->loop, b->slot, (size_t)b->n * sizeof(*b->slot));
	memset(b, 0, sizeof(*b));
	return 0;
}

static void fixed_cqe(halo_op *op, int32_t res, uint32_t flags)
{
	struct halo__buf_slot *s = op->ctx;

	if (flags & IORING_CQE_F_MORE)
		return;
	s->busy--;
	io_finish(op, res);
}

static halo_fut *rw_fixed(halo_bufs *b, unsigned idx, bool is_write, int fd,
			  void *buf, size_t len, int64_t off, const char *file,
			  int line)
{
	struct io_uring_sqe *sqe;
	struct halo__buf_slot *s;
	halo_op *op;
	char *p = buf;

	if (!b->loop)
		return NULL; /* no table: no loop to make a future on */
	if (idx >= b->n)
		return fail_now(b->loop, -EINVAL, file, line);
	s = &b->slot[idx];
	if (!s->base || p < s->base || len > s->len ||
	    (size_t)(p - s->base) > s->len - len)
		return fail_now(b->loop, -EINVAL, file, line);
	op = io_op_start(b->loop, file, line, &sqe);
	if (!op)
		return NULL;
	if (!b->registered)
		io_uring_prep_rw(is_write ? IORING_OP_WRITE : IORING_OP_READ,
				 sqe, fd, buf, (unsigned)len, (__u64)off);
	else if (is_write)
		io_uring_prep_write_fixed(sqe, fd, buf, (unsigned)len,
					  (__u64)off, (int)idx);
	else
		io_uring_prep_read_fixed(sqe, fd, buf, (unsigned)len,
					 (__u64)off, (int)idx);
	s->busy++;
	op->ctx = s;
	op->on_cqe = fixed_cqe;
	return &op->fut;
}

halo_fut *halo_read_fixed_at(halo_bufs *b, unsigned idx, int fd, void *buf,
			     size_t len, int64_t off, const char *file,
			     int line)
{
	return rw_fixed(b, idx, false, fd, buf, len, off, file, line);
}

halo_fut *halo_write_fixed_at(halo_bufs *b, unsigned idx, int fd,
			      const void *buf, size_t len, int64_t off,
			      const char *file, int line)
{
	return rw_fixed(b, idx, true, fd, (void *)buf, len, off, file, line);
}
