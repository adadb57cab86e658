/* Socket writer: the small sends of one tick go out as ONE sendmsg with an
 * iovec per send. A partial write continues with the rest, in order; each
 * send's future completes when all of its bytes are written. */
#ifndef HALO_PATTERNS_SOCKWRITER_H
#define HALO_PATTERNS_SOCKWRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "../runtime/api.h"
#include "../runtime/fut.h"
#include "../runtime/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct halo_sw_opts {
	unsigned max_iov; /* iovecs per sendmsg, default 64 (at most 1024) */
	size_t zc_min;	  /* a sendmsg of at least this many bytes goes
			     zero-copy (halo_sendmsg_zc: its sends complete at
			     the kernel's notification); 0: never, the
			     default, as zero-copy never won on loopback here
			     (README). A socket that refuses zero-copy (a Unix
			     socket) gets the same bytes as a plain sendmsg,
			     and the writer stays plain from then on */
} halo_sw_opts;

typedef struct halo_sw_stats {
	uint64_t sends;	     /* halo_sw_send() calls accepted */
	uint64_t syscalls;   /* sendmsg operations */
	uint64_t partial;    /* sendmsg results shorter than asked */
	uint64_t bytes;	     /* bytes written */
	uint64_t zc;	     /* sendmsg operations that went zero-copy */
	uint64_t zc_refused; /* zero-copy sendmsgs the socket refused (sent
				again plain; at most 1: the writer stays
				plain after it) */
} halo_sw_stats;

struct halo__sw_send {
	const char *buf;
	size_t len;
	halo_fut *fut;
};

/* Caller-allocated; treat the fields as private. */
typedef struct halo_sw {
	halo_loop *loop;
	halo_hook hook;
	int fd;
	unsigned max_iov;
	size_t zc_min;
	struct halo__sw_send *q; /* ring of sends, grown by doubling */
	size_t head, n, cap;
	size_t head_off; /* bytes of the front send already written */
	int inflight;	 /* sends in the sendmsg in flight, 0 if none */
	int err;	 /* sticky: the socket failed */
	bool is_zc;	 /* the sendmsg in flight is zero-copy */
	struct iovec *iov;
	halo_fut *op;
	halo_waiter op_w;
	halo_sw_stats stats;
} halo_sw;

/* Set up sw for the connected socket fd (the caller's; never closed here).
 * Returns 0, -EINVAL or -ENOMEM. */
HALO_API int halo_sw_init(halo_sw *sw, halo_loop *loop, int fd,
			  const halo_sw_opts *opts);

/* Fail queued sends with -ECANCELED and free the queue. Returns 0, or -EBUSY
 * while a sendmsg is in flight (wait for the futures first). */
HALO_API int halo_sw_close(halo_sw *sw);

/* Queue len bytes of buf after every earlier send. Not copied: buf must stay
 * valid until the future is done. The result is len, or the socket's -errno
 * (after an error every queued and later send fails with it; -ENOMEM when
 * there was no memory for a sendmsg counts as such an error). Cancelling a
 * send no sendmsg has taken yet removes it (CANCELLED, nothing written); one
 * the kernel may be reading completes once its bytes are written. Caller owns
 * a reference; NULL on exhaustion or len 0. */
HALO_API halo_fut *halo_sw_send_at(halo_sw *sw, const void *buf, size_t len,
				   const char *file, int line);
#define halo_sw_send(sw, buf, len)                                             \
	halo_sw_send_at((sw), (buf), (len), __FILE__, __LINE__)

/* Copy the counters to out. */
HALO_API void halo_sw_stats_get(const halo_sw *sw, halo_sw_stats *out);

#ifdef __cplusplus
}
#endif
#endif
