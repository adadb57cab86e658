/* File and descriptor I/O as futures. Every call starts one operation that
 * leaves in the tick's io_uring_enter; the future's result is what the
 * kernel's CQE says: a byte count (or 0) on success, -errno on failure.
 * Start calls return NULL only when the loop is out of memory or its ring
 * failed; then nothing was started. Metadata the kernel reads at submit time
 * (iovec arrays, short paths) is copied into the operation, so only data
 * buffers have to outlive the call. */
#ifndef HALO_IO_FILE_H
#define HALO_IO_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "../runtime/api.h"
#include "../runtime/fut.h"

#ifdef __cplusplus
extern "C" {
#endif

struct statx;

/* A no-op that completes with result 0 after one trip through the ring. */
HALO_API halo_fut *halo_nop_at(halo_loop *loop, const char *file, int line);
#define halo_nop(loop) halo_nop_at((loop), __FILE__, __LINE__)

/* Read up to len bytes at offset off (-1: the file position) from fd. The
 * result is the byte count or -errno; buf must stay valid until the future is
 * done, cancelled or not. */
HALO_API halo_fut *halo_read_at(halo_loop *loop, int fd, void *buf,
				size_t len, int64_t off, const char *file,
				int line);
#define halo_read(loop, fd, buf, len, off)                                     \
	halo_read_at((loop), (fd), (buf), (len), (off), __FILE__, __LINE__)

/* Write up to len bytes of buf at offset off (-1: the file position). The
 * result is the byte count or -errno; buf must stay valid until done. */
HALO_API halo_fut *halo_write_at(halo_loop *loop, int fd, const void *buf,
				 size_t len, int64_t off, const char *file,
				 int line);
#define halo_write(loop, fd, buf, len, off)                                    \
	halo_write_at((loop), (fd), (buf), (len), (off), __FILE__, __LINE__)

/* Vectored read/write of iovcnt buffers at off (-1: the file position; use
 * -1 on sockets and pipes). The iovec array is copied (up to 8 entries into
 * the op itself, more into loop memory freed at completion; at most IOV_MAX);
 * the buffers it points to must stay valid until the future is done. The
 * result is the byte count or -errno (-EINVAL for a bad iovcnt). */
HALO_API halo_fut *halo_readv_at(halo_loop *loop, int fd,
				 const struct iovec *iov, int iovcnt,
				 int64_t off, const char *file, int line);
#define halo_readv(loop, fd, iov, n, off)                                      \
	halo_readv_at((loop), (fd), (iov), (n), (off), __FILE__, __LINE__)
HALO_API halo_fut *halo_writev_at(halo_loop *loop, int fd,
				  const struct iovec *iov, int iovcnt,
				  int64_t off, const char *file, int line);
#define halo_writev(loop, fd, iov, n, off)                                     \
	halo_writev_at((loop), (fd), (iov), (n), (off), __FILE__, __LINE__)

/* Read exactly len bytes (fewer only at end of file): short reads are
 * resubmitted for the remainder from the CQE handler. The result is the total
 * read (< len means EOF) or -errno; buf must stay valid until done. */
HALO_API halo_fut *halo_read_full_at(halo_loop *loop, int fd, void *buf,
				     size_t len, int64_t off,
				     const char *file, int line);
#define halo_read_full(loop, fd, buf, len, off)                                \
	halo_read_full_at((loop), (fd), (buf), (len), (off), __FILE__, __LINE__)

/* Write all len bytes, resubmitting the remainder after short writes. The
 * result is len or -errno (bytes written before an error are not reported);
 * buf must stay valid until done. */
HALO_API halo_fut *halo_write_all_at(halo_loop *loop, int fd, const void *buf,
				     size_t len, int64_t off,
				     const char *file, int line);
#define halo_write_all(loop, fd, buf, len, off)                                \
	halo_write_all_at((loop), (fd), (buf), (len), (off), __FILE__, __LINE__)

/* Flush fd's data and metadata (fsync) or only what is needed to read the
 * data back (fdatasync). Result 0 or -errno. */
HALO_API halo_fut *halo_fsync_at(halo_loop *loop, int fd, const char *file,
				 int line);
#define halo_fsync(loop, fd) halo_fsync_at((loop), (fd), __FILE__, __LINE__)
HALO_API halo_fut *halo_fdatasync_at(halo_loop *loop, int fd,
				     const char *file, int line);
#define halo_fdatasync(loop, fd)                                               \
	halo_fdatasync_at((loop), (fd), __FILE__, __LINE__)

/* openat(2): the result is the new fd or -errno. A path shorter than 128
 * bytes is copied; a longer one must stay valid until the future is done. */
HALO_API halo_fut *halo_openat_at(halo_loop *loop, int dfd, const char *path,
				  int flags, unsigned mode, const char *file,
				  int line);
#define halo_openat(loop, dfd, path, flags, mode)                              \
	halo_openat_at((loop), (dfd), (path), (flags), (mode), __FILE__,       \
		       __LINE__)

/* close(2) of fd. Result 0 or -errno. */
HALO_API halo_fut *halo_close_at(halo_loop *loop, int fd, const char *file,
				 int line);
#define halo_close(loop, fd) halo_close_at((loop), (fd), __FILE__, __LINE__)

/* statx(2) into out (which must stay valid until done). The path is copied
 * as for halo_openat(). Result 0 or -errno. */
HALO_API halo_fut *halo_statx_at(halo_loop *loop, int dfd, const char *path,
				 int flags, unsigned mask, struct statx *out,
				 const char *file, int line);
#define halo_statx(loop, dfd, path, flags, mask, out)                          \
	halo_statx_at((loop), (dfd), (path), (flags), (mask), (out), __FILE__, \
		      __LINE__)

/* fallocate(2): mode (0 or FALLOC_FL_*) over len bytes at off. Result 0 or
 * -errno. */
HALO_API halo_fut *halo_fallocate_at(halo_loop *loop, int fd, int mode,
				     int64_t off, int64_t len,
				     const char *file, int line);
#define halo_fallocate(loop, fd, mode, off, len)                               \
	halo_fallocate_at((loop), (fd), (mode), (off), (len), __FILE__,        \
			  __LINE__)

/* Register fds as the loop's fixed-file table (index i stands for fds[i]; -1
 * leaves a slot empty). Fixed files skip the per-operation fd lookup and
 * reference count. Returns 0 or -errno (-EBUSY if a table is registered). */
HALO_API int halo_files_register(halo_loop *loop, const int *fds, unsigned n);

/* Replace n slots starting at index off. Returns 0 or -errno. */
HALO_API int halo_files_update(halo_loop *loop, unsigned off, const int *fds,
			       unsigned n);

/* Drop the fixed-file table. Returns 0 or -errno. */
HALO_API int halo_files_unregister(halo_loop *loop);

/* Make the operation f, started in this tick, address the registered file
 * whose index was passed as its fd (IOSQE_FIXED_FILE); helpers that resubmit
 * keep the flag. Works for read, write, readv, writev, the full/all helpers,
 * the direct ops, fsync, fallocate, recv, send and poll. The table belongs
 * to the main ring: a direct op on the polled ring moves to the main ring
 * and runs there unpolled. Returns 0, or -EALREADY if f's SQE has already
 * gone to the kernel, -EINVAL if f is not an I/O operation, -EBUSY if the
 * main ring failed. On an error f is unchanged: it runs with its fd as a
 * plain descriptor unless cancelled, so call this right after the start
 * call and cancel f if it fails. */
HALO_API int halo_files_use_fixed(halo_fut *f);

/* Registered (fixed) buffers: memory the kernel maps and pins once, so
 * that READ_FIXED/WRITE_FIXED skip the per-operation page lookup and pin.
 * A table of at most HALO_BUFS_MAX slots per loop (the kernel allows one
 * table per ring); caller-allocated. Where the kernel lacks the feature or
 * HALO_FEAT_FIXED_BUFS is switched off, the same calls work with plain
 * reads and writes. */
#define HALO_BUFS_MAX 16384

typedef struct halo_bufs {
	halo_loop *loop;
	struct halo__buf_slot *slot;
	unsigned n;
	int registered; /* the kernel holds the table (HALO_FEAT_FIXED_BUFS) */
} halo_bufs;

/* Set up an empty table of n slots (1..HALO_BUFS_MAX) for loop. Returns 0,
 * -EINVAL for a bad n, -EBUSY if loop has a table already, -ENOMEM or
 * another -errno from the kernel (-ENOMEM also for the locked-memory limit:
 * registered buffers count against ulimit -l). */
HALO_API int halo_bufs_init(halo_bufs *b, halo_loop *loop, unsigned n);

/* Register buf (len bytes, up to 1 GiB) as slot idx, replacing what the
 * slot held; buf NULL and len 0 empty the slot. The memory must stay valid
 * until the slot is replaced, emptied or the table closed. Returns 0,
 * -EINVAL for a bad slot or buffer, -EBUSY while an operation on the slot
 * is in flight, or -errno from the kernel. */
HALO_API int halo_bufs_set(halo_bufs *b, unsigned idx, void *buf, size_t len);

/* Unregister the table. Returns 0, or -EBUSY while any operation on a slot
 * is in flight (the table stays). Call before halo_loop_close(). */
HALO_API int halo_bufs_close(halo_bufs *b);

/* Read (write) len bytes at file offset off into (from) buf, which must lie
 * inside the buffer registered as slot idx. The result is the byte count or
 * -errno; a bad slot or a buffer outside it completes with -EINVAL. The
 * slot cannot be replaced until the future is done. */
HALO_API halo_fut *halo_read_fixed_at(halo_bufs *b, unsigned idx, int fd,
				      void *buf, size_t len, int64_t off,
				      const char *file, int line);
#define halo_read_fixed(b, idx, fd, buf, len, off)                             \
	halo_read_fixed_at((b), (idx), (fd), (buf), (len), (off), __FILE__,    \
			   __LINE__)
HALO_API halo_fut *halo_write_fixed_at(halo_bufs *b, unsigned idx, int fd,
				       const void *buf, size_t len,
				       int64_t off, const char *file,
				       int line);
#define halo_write_fixed(b, idx, fd, buf, len, off)                            \
	halo_write_fixed_at((b), (idx), (fd), (buf), (len), (off), __FILE__,   \
			    __LINE__)

/* An O_DIRECT read (write) of len bytes at off into (from) buf, as
 * halo_read() (halo_write()) does, on the loop's polled ring when it has
 * one: with opts.iopoll set, the first direct op sets up a second ring with
 * IORING_SETUP_IOPOLL, whose completions the tick finds by polling the
 * device instead of waiting for its interrupt (a core spins while polled
 * ops are in flight; see README). That needs a block device with poll
 * queues (NVMe with poll_queues, /sys/block/<dev>/queue/io_poll = 1). Where
 * the device refuses (-EOPNOTSUPP) the op runs again on the main ring,
 * transparently, and the loop sends later direct ops there too
 * (HALO_FEAT_IOPOLL goes off; halo_stats.iopoll_retries counts such ops);
 * so does a loop whose polled ring cannot be set up, or without the option
 * or the feature. fd must be open with O_DIRECT, and buf, len and off block
 * aligned (halo_buf_alloc_aligned()); a file without O_DIRECT works, at the
 * cost of the retry, and leaves the feature on. The result is the byte
 * count or -errno; buf must stay valid until the future is done. A polled
 * op the kernel already holds cannot be cancelled: halo_fut_cancel()
 * returns 0 and the future completes with the op's own result, once the
 * device is done with buf; only if the device refuses the op (no byte
 * moved) does it end CANCELLED (ERROR -ETIMEDOUT for a deadline) instead of
 * running again on the main ring. A registered file (fd an index, then
 * halo_files_use_fixed()) is the main ring's: the op runs there, unpolled. */
HALO_API halo_fut *halo_read_direct_at(halo_loop *loop, int fd, void *buf,
				       size_t len, int64_t off,
				       const char *file, int line);
#define halo_read_direct(loop, fd, buf, len, off)                              \
	halo_read_direct_at((loop), (fd), (buf), (len), (off), __FILE__,       \
			    __LINE__)
HALO_API halo_fut *halo_write_direct_at(halo_loop *loop, int fd,
					const void *buf, size_t len,
					int64_t off, const char *file,
					int line);
#define halo_write_direct(loop, fd, buf, len, off)                             \
	halo_write_direct_at((loop), (fd), (buf), (len), (off), __FILE__,      \
			     __LINE__)

/* Allocate size bytes aligned to align (a power of two, at least the device's
 * logical block size, 4096 is safe) for O_DIRECT I/O: with O_DIRECT, buffer
 * address, length and file offset must all be block aligned or the kernel
 * answers -EINVAL. The buffer is zeroed. Free with halo_buf_free(). NULL on
 * failure. */
HALO_API void *halo_buf_alloc_aligned(size_t size, size_t align);
HALO_API void halo_buf_free(void *p);

#ifdef __cplusplus
}
#endif
#endif
