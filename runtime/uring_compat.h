/* Everything that differs between the liburing we build against (Debian's
 * 2.3) and the kernel we run on (6.x) lives here: constants 2.3's headers
 * lack, helpers written against the raw SQE, and the one io_uring_enter call
 * the loop makes. Nothing else in halo spells a raw io_uring constant that
 * liburing 2.3 does not have. */
#ifndef HALO_URING_COMPAT_H
#define HALO_URING_COMPAT_H

#include <errno.h>
#include <liburing.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "loop.h"

/* Setup flags and features newer than liburing 2.3. */
#ifndef IORING_SETUP_NO_SQARRAY
#define IORING_SETUP_NO_SQARRAY (1U << 16)
#endif
#ifndef IORING_FEAT_REG_REG_RING
#define IORING_FEAT_REG_REG_RING (1U << 13)
#endif
/* io_uring_getevents_arg's pad became min_wait_usec in 6.12, announced by
 * this feature bit. */
#ifndef IORING_FEAT_MIN_TIMEOUT
#define IORING_FEAT_MIN_TIMEOUT (1U << 15)
#endif
/* sq_flags: task work is pending (COOP_TASKRUN | TASKRUN_FLAG). */
#ifndef IORING_SQ_TASKRUN
#define IORING_SQ_TASKRUN (1U << 2)
#endif
/* CQE flags. */
#ifndef IORING_CQE_F_SOCK_NONEMPTY
#define IORING_CQE_F_SOCK_NONEMPTY (1U << 2)
#endif
#ifndef IORING_CQE_F_NOTIF
#define IORING_CQE_F_NOTIF (1U << 3)
#endif
/* recv/send ioprio flags. */
#ifndef IORING_RECV_MULTISHOT
#define IORING_RECV_MULTISHOT (1U << 1)
#endif
/* Cancel flags (kernel 6.0+). */
#ifndef IORING_ASYNC_CANCEL_FD
#define IORING_ASYNC_CANCEL_FD (1U << 1)
#endif
#ifndef IORING_ASYNC_CANCEL_ANY
#define IORING_ASYNC_CANCEL_ANY (1U << 2)
#endif
/* Registered ring fd in io_uring_enter (kernel 5.18). liburing keeps the
 * "ring fd is registered" bit in int_flags as its private INT_FLAG_REG_RING. */
#ifndef IORING_ENTER_REGISTERED_RING
#define IORING_ENTER_REGISTERED_RING (1U << 4)
#endif
#define HALO_LIBURING_INT_FLAG_REG_RING 1

/* Receive/send bundles (6.10): with IOSQE_BUFFER_SELECT, one recv CQE covers
 * several consecutive ring buffers (its buffer id is the first's, res spans
 * them); the kernel says it has them in the setup's features word. */
#ifndef IORING_RECVSEND_BUNDLE
#define IORING_RECVSEND_BUNDLE (1U << 4)
#endif
#ifndef IORING_FEAT_RECVSEND_BUNDLE
#define IORING_FEAT_RECVSEND_BUNDLE (1U << 14)
#endif
/* Incremental buffer consumption (6.12): a buffer ring registered with
 * IOU_PBUF_RING_INC hands out a buffer piece by piece; a CQE with
 * IORING_CQE_F_BUF_MORE leaves the rest of its buffer in the ring. */
/* io_uring_buf_reg.flags, which liburing 2.3 spells pad. */
#define HALO_IOU_PBUF_RING_MMAP 1u
#define HALO_IOU_PBUF_RING_INC 2u
#ifndef IORING_CQE_F_BUF_MORE
#define IORING_CQE_F_BUF_MORE (1U << 4)
#endif

/* The network features the kernel of ring has, as HALO_FEAT_* bits: bundles
 * from the setup's features word, SEND_ZC from the opcode probe, INC from
 * registering a one-entry ring with the flag (and dropping it again; bgid
 * 65535, before any user ring exists). */
static inline unsigned halo_uring_probe_net(struct io_uring *ring)
{
	struct io_uring_buf_reg reg;
	struct io_uring_probe *probe;
	unsigned f = 0;

	if (ring->features & IORING_FEAT_RECVSEND_BUNDLE)
		f |= HALO_FEAT_RECV_BUNDLE | HALO_FEAT_SEND_BUNDLE;
	probe = io_uring_get_probe_ring(ring);
	if (probe) {
		if (io_uring_opcode_supported(probe, IORING_OP_SEND_ZC))
			f |= HALO_FEAT_SEND_ZC;
		io_uring_free_probe(probe);
	}
	memset(&reg, 0, sizeof(reg));
	reg.ring_entries = 1;
	reg.bgid = 65535;
	reg.pad = HALO_IOU_PBUF_RING_MMAP | HALO_IOU_PBUF_RING_INC; /* flags */
	if (io_uring_register_buf_ring(ring, &reg, 0) == 0) {
		f |= HALO_FEAT_PBUF_INC;
		io_uring_unregister_buf_ring(ring, 65535);
	}
	return f;
}

/* A polled ring (IORING_SETUP_IOPOLL, 5.1): its reads and writes complete
 * without an interrupt, and only an io_uring_enter with GETEVENTS finds them
 * (the kernel polls the device's completion queue in that call). It accepts
 * only O_DIRECT reads and writes on a block device with poll queues (NVMe
 * with poll_queues > 0: /sys/block/<dev>/queue/io_poll reads 1); anywhere
 * else the op's CQE says -EOPNOTSUPP, and ASYNC_CANCEL is refused on it
 * (-EINVAL). The kernel has had the flag since 5.1, so setting the ring up
 * is the whole probe; whether a device polls is learnt from the first op.
 * SINGLE_ISSUER (6.0) is tried first, plain IOPOLL after -EINVAL; no
 * DEFER_TASKRUN, which the main ring's tick has no use for here. Returns 0
 * or -errno (-ENOMEM: the locked-memory limit, as for the main ring). */
static inline int halo_uring_setup_iopoll(unsigned entries,
					  struct io_uring *ring)
{
	static const unsigned modes[] = {
		IORING_SETUP_IOPOLL | IORING_SETUP_SINGLE_ISSUER,
		IORING_SETUP_IOPOLL,
	};
	int r = -EINVAL;

	for (unsigned i = 0; i < 2 && r == -EINVAL; i++) {
		struct io_uring_params p;

		memset(&p, 0, sizeof(p));
		p.flags = modes[i] | IORING_SETUP_SUBMIT_ALL;
		r = io_uring_queue_init_params(entries, ring, &p);
	}
	if (r == 0)
		(void)io_uring_register_ring_fd(ring);
	return r;
}

/* Make the SQEs prepared so far visible to the kernel; returns how many the
 * kernel has not consumed yet. liburing 2.3 keeps this step private. */
static inline unsigned halo_uring_flush_sq(struct io_uring *ring)
{
	struct io_uring_sq *sq = &ring->sq;
	unsigned tail = sq->sqe_tail;

	if (sq->sqe_head != tail) {
		sq->sqe_head = tail;
		io_uring_smp_store_release(sq->ktail, tail);
	}
	return tail - IO_URING_READ_ONCE(*sq->khead);
}

/* liburing's io_uring_get_sqe without the SQE128 and SQPOLL branches, which
 * a halo ring never uses (the loop sets neither flag). */
static inline struct io_uring_sqe *halo_uring_get_sqe(struct io_uring *ring)
{
	struct io_uring_sq *sq = &ring->sq;
	unsigned tail = sq->sqe_tail;

	if (tail - IO_URING_READ_ONCE(*sq->khead) >= sq->ring_entries)
		return NULL;
	sq->sqe_tail = tail + 1;
	return &sq->sqes[tail & sq->ring_mask];
}

/* Set up ring as io_uring_queue_init_params does, for flags liburing 2.3
 * cannot set up. With IORING_SETUP_NO_SQARRAY (6.6) the kernel has no SQ
 * index array and reports sq_off.array as 0: 2.3's queue_init would then
 * write its identity array over the SQ ring's head and tail. Its
 * io_uring_queue_mmap() writes nothing, and halo never reads sq.array (it
 * publishes the tail itself, halo_uring_flush_sq), so setup + mmap is the
 * whole job. Returns 0 or -errno (-EINVAL from a kernel without the flag). */
static inline int halo_uring_init_raw(unsigned entries, struct io_uring *ring,
				      struct io_uring_params *p)
{
	int fd = (int)syscall(__NR_io_uring_setup, entries, p);
	int r;

	if (fd < 0)
		return -errno;
	if (!(p->features & IORING_FEAT_SINGLE_MMAP)) {
		/* 2.3 sizes the SQ ring from sq_off.array, which is 0 here;
		 * only the single mapping (5.4) covers both rings whole. */
		close(fd);
		return -EINVAL;
	}
	r = io_uring_queue_mmap(fd, p, ring);
	if (r < 0) {
		close(fd);
		return r;
	}
	ring->features = p->features;
	return 0;
}

/* One io_uring_enter: submit to_submit SQEs and wait for wait_nr CQEs, at
 * most ts long (NULL: no limit). Uses the registered ring fd when there is
 * one. Returns what the kernel returned: SQEs consumed, or -errno. */
static inline int halo_uring_enter(struct io_uring *ring, unsigned to_submit,
				   unsigned wait_nr, unsigned flags,
				   struct __kernel_timespec *ts)
{
	struct io_uring_getevents_arg arg;
	void *argp = NULL;
	size_t argsz = 0;
	int fd = ring->ring_fd;
	long ret;

	if (ring->int_flags & HALO_LIBURING_INT_FLAG_REG_RING) {
		fd = ring->enter_ring_fd;
		flags |= IORING_ENTER_REGISTERED_RING;
	}
	if (ts) {
		memset(&arg, 0, sizeof(arg));
		arg.ts = (__u64)(uintptr_t)ts;
		argp = &arg;
		argsz = sizeof(arg);
		flags |= IORING_ENTER_EXT_ARG;
	}
	ret = syscall(__NR_io_uring_enter, fd, to_submit, wait_nr, flags, argp,
		      argsz);
	return ret < 0 ? -errno : (int)ret;
}

/* The same enter with a minimum wait (6.12, IORING_FEAT_MIN_TIMEOUT): the
 * kernel waits up to min_wait_us for wait_nr CQEs, then returns as soon as
 * at least one is there (or ts expires). liburing 2.3 calls the field pad. */
static inline int halo_uring_enter_min_wait(struct io_uring *ring,
					    unsigned to_submit,
					    unsigned wait_nr, unsigned flags,
					    struct __kernel_timespec *ts,
					    unsigned min_wait_us)
{
	struct io_uring_getevents_arg arg;
	int fd = ring->ring_fd;
	long ret;

	if (ring->int_flags & HALO_LIBURING_INT_FLAG_REG_RING) {
		fd = ring->enter_ring_fd;
		flags |= IORING_ENTER_REGISTERED_RING;
	}
	memset(&arg, 0, sizeof(arg));
	arg.ts = (__u64)(uintptr_t)ts;
	arg.pad = min_wait_us; /* min_wait_usec */
	ret = syscall(__NR_io_uring_enter, fd, to_submit, wait_nr,
		      flags | IORING_ENTER_EXT_ARG, &arg, sizeof(arg));
	return ret < 0 ? -errno : (int)ret;
}

/* A byte cap on a multishot recv (kernel 6.17): the kernel ends the
 * multishot, with a CQE without F_MORE, once it received that many bytes,
 * rather than fill buffers until userspace gets to cancel it. The cap is
 * sqe->optlen, which liburing 2.3 spells file_index (the same field);
 * earlier kernels refuse a recv whose file_index is set, with -EINVAL. */
static inline void halo_uring_recv_mshot_cap(struct io_uring_sqe *sqe,
					     __u32 bytes)
{
	sqe->file_index = bytes;
}

/* Multishot read from a provided buffer group (kernel 6.7), which liburing
 * 2.3 has no helper for. */
#ifndef IORING_OP_READ_MULTISHOT
#define IORING_OP_READ_MULTISHOT 49
#endif
static inline void halo_uring_prep_read_multishot(struct io_uring_sqe *sqe,
						  int fd, unsigned nbytes,
						  __u64 offset, int buf_group)
{
	io_uring_prep_rw(IORING_OP_READ_MULTISHOT, sqe, fd, NULL, nbytes,
			 offset);
	sqe->buf_group = buf_group;
	sqe->flags |= IOSQE_BUFFER_SELECT;
}

/* IORING_OP_MSG_RING with IORING_MSG_DATA (kernel 5.18): post a CQE with
 * user_data data and res res on the ring whose fd is fd. The sender's ring
 * gets a CQE of its own for the send (0 or -errno: -EBADFD when fd is no
 * ring, -EOVERFLOW when the target's CQ is full and cannot overflow). The
 * message's fields are spelled here against the raw SQE: addr is the
 * command (IORING_MSG_DATA = 0), off the target's user_data, len its res;
 * msg_ring_flags stays 0 so that the target does get its CQE. */
#define HALO_IORING_OP_MSG_RING 40
static inline void halo_uring_prep_msg_ring_data(struct io_uring_sqe *sqe,
						 int fd, __u32 res, __u64 data)
{
	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = HALO_IORING_OP_MSG_RING;
	sqe->fd = fd;
	sqe->len = res;
	sqe->off = data;
}

#endif
