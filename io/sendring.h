/* A send ring: a connection's outgoing bytes, copied into a small ring of
 * buffers that halo sends in order with at most one send in flight. By
 * default the queued buffers go out with one sendmsg and an iovec; with
 * HALO_SENDRING_BUNDLE and send bundles (HALO_FEAT_SEND_BUNDLE, 6.10) they
 * are a provided buffer ring and each send is one IORING_OP_SEND that takes
 * as many of them as are queued when it runs, without an iovec. Same API and
 * guarantees either way: bytes leave in the order they were written, memory is
 * bounded by the ring, and a full ring refuses a write instead of growing. */
#ifndef HALO_IO_SENDRING_H
#define HALO_IO_SENDRING_H

#include <stddef.h>
#include <stdint.h>

#include "../runtime/api.h"
#include "../runtime/fut.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct halo_sendring halo_sendring;

/* Options of halo_sendring_new(); zero means default. */
typedef struct halo_sendring_opts {
	unsigned nbufs;	 /* buffers, a power of two <= 32768, default 64 */
	size_t buf_size; /* bytes per buffer, default 4096 */
	unsigned flags;	 /* HALO_SENDRING_* */
} halo_sendring_opts;

/* flags: send with bundles where the loop has them (HALO_FEAT_SEND_BUNDLE);
 * a bundle in flight also takes the buffers written while it runs. Off by
 * default: on loopback here bundles measured level with the sendmsg path
 * (0.89-1.08x writes per second in floods, README), which already sends
 * every queued buffer in one call. */
#define HALO_SENDRING_BUNDLE (1u << 0)

/* Counters of a send ring, read with halo_sendring_stats(). */
typedef struct halo_sendring_stats {
	uint64_t writes;    /* halo_sendring_write() calls that copied */
	uint64_t refused;   /* writes refused for want of room (-ENOBUFS) */
	uint64_t bytes_in;  /* bytes written into the ring */
	uint64_t bytes_out; /* bytes the socket took */
	uint64_t sends;	    /* send operations (bundle or sendmsg) */
	uint64_t bufs;	    /* buffers they emptied */
	int is_bundle;	    /* sending with bundles */
} halo_sendring_stats;

/* Create a send ring of opts->nbufs buffers of opts->buf_size bytes for the
 * connected socket fd (the caller's; never closed here). With bundles, the
 * buffers are registered as provided buffer group bgid, which must be unused
 * on the loop (the sendmsg path ignores it). Returns the ring, owned by the
 * caller until halo_sendring_close(), or NULL with *err (if not NULL) set to
 * -EINVAL (bad options, fd < 0), -ENOMEM or -errno from registering. */
HALO_API halo_sendring *halo_sendring_new(halo_loop *loop, int fd,
					  uint16_t bgid,
					  const halo_sendring_opts *opts,
					  int *err);

/* Copy all len bytes of data into the ring, after every earlier write, or
 * none: the caller's buffer is free again when the call returns. The bytes
 * go out from the tick's prepare step (the writes of one tick share
 * buffers and a send). Returns len; -ENOBUFS when the ring lacks the room
 * now (nothing copied: wait with halo_sendring_wait_room() and write again);
 * -EMSGSIZE when len exceeds what the empty ring holds; or the socket's
 * -errno after a send failed (sticky: the ring sends nothing more, and what
 * was queued is dropped). */
HALO_API int halo_sendring_write(halo_sendring *sr, const void *data,
				 size_t len);

/* Bytes a write could take now. */
HALO_API size_t halo_sendring_room(const halo_sendring *sr);

/* A future that completes when at least need bytes of room are free (with
 * the room), or with the socket's -errno once a send failed; -ECANCELED if
 * the ring is closed first. Cancelling it completes it CANCELLED. The caller
 * owns a reference; NULL when out of memory or need exceeds the ring. */
HALO_API halo_fut *halo_sendring_wait_room_at(halo_sendring *sr, size_t need,
					      const char *file, int line);
#define halo_sendring_wait_room(sr, need)                                      \
	halo_sendring_wait_room_at((sr), (need), __FILE__, __LINE__)

/* A future that completes when every byte written so far has gone to the
 * socket, with the ring's total of bytes sent, or with the socket's -errno
 * once a send failed; -ECANCELED if the ring is closed first. The caller
 * owns a reference; NULL when out of memory. */
HALO_API halo_fut *halo_sendring_flush_at(halo_sendring *sr, const char *file,
					  int line);
#define halo_sendring_flush(sr) halo_sendring_flush_at((sr), __FILE__, __LINE__)

/* Close the ring: queued bytes not yet given to the kernel are dropped,
 * waiting futures end with -ECANCELED, and a send in flight is cancelled.
 * The memory is freed, and with bundles the buffer group unregistered, once
 * the kernel let go of it (at once, or at that send's last CQE); do not use
 * sr afterwards. Close every ring before halo_loop_close(). Returns the
 * bytes dropped (0 after a completed flush). */
HALO_API size_t halo_sendring_close(halo_sendring *sr);

/* Copy sr's counters to out. */
HALO_API void halo_sendring_stats_get(const halo_sendring *sr,
				      halo_sendring_stats *out);

#ifdef __cplusplus
}
#endif
#endif
