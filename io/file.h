/* File and descriptor I/O as futures. Every call starts one operation that
 * leaves in the tick's io_uring_enter; the future's result is what the
 * kernel's CQE says: a byte count (or 0) on success, -errno on failure. */
#ifndef HALO_IO_FILE_H
#define HALO_IO_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "../runtime/api.h"
#include "../runtime/fut.h"

#ifdef __cplusplus
extern "C" {
#endif

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

#ifdef __cplusplus
}
#endif
#endif
