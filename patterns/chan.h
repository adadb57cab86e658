/* Channels: a bounded multi-producer, multi-consumer queue of items (an
 * int64_t and a void *) on one loop. A send waits while the channel is full,
 * a receive waits while it is empty; waiters are served strictly in arrival
 * order. Use it from fibers (wait on the futures), from callbacks (the try
 * calls and halo_fut_on_done) or as a push source with credit: try_send
 * refuses with -EAGAIN when the credit, halo_chan_space(), is used up. */
#ifndef HALO_PATTERNS_CHAN_H
#define HALO_PATTERNS_CHAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../runtime/api.h"
#include "../runtime/fut.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One message. */
typedef struct halo_chan_msg {
	int64_t v;
	void *p;
} halo_chan_msg;

typedef struct halo_chan_opts {
	size_t cap;	    /* buffered messages, default 64 */
	size_t max_waiters; /* blocked sends plus receives at a time, default
			       1024; beyond it send/recv fail with -EAGAIN */
} halo_chan_opts;

struct halo__chan_wait;

/* Caller-embedded; treat the fields as private. */
typedef struct halo_chan {
	halo_loop *loop;
	halo_chan_msg *buf;
	size_t cap, head, n, max_waiters, waiters_n;
	struct halo__chan_wait *send_head, *send_tail;
	struct halo__chan_wait *recv_head, *recv_tail;
	bool closed;
} halo_chan;

/* Set up ch on loop; allocates the buffer now. Returns 0 or -ENOMEM. */
HALO_API int halo_chan_init(halo_chan *ch, halo_loop *loop,
			    const halo_chan_opts *opts);

/* Queue (v, p) if there is room, handing it straight to the oldest waiting
 * receiver if there is one. Returns 0, -EAGAIN when full, -EPIPE once
 * closed (the caller keeps p). */
HALO_API int halo_chan_try_send(halo_chan *ch, int64_t v, void *p);

/* A future that completes OK (result 0) once (v, p) is queued or handed to
 * a receiver, waiting while the channel is full; ERROR -EPIPE if the channel
 * is closed first (p stays the caller's), -EAGAIN at once if max_waiters are
 * waiting. Cancel it while pending to withdraw the message. Caller owns a
 * reference; NULL on exhaustion. */
HALO_API halo_fut *halo_chan_send_at(halo_chan *ch, int64_t v, void *p,
				     const char *file, int line);
#define halo_chan_send(ch, v, p)                                               \
	halo_chan_send_at((ch), (v), (p), __FILE__, __LINE__)

/* Take the oldest message into *out. Returns 1, 0 if the channel is closed
 * and drained, -EAGAIN if it is empty. */
HALO_API int halo_chan_try_recv(halo_chan *ch, halo_chan_msg *out);

/* A future that completes OK with result 1 (and value out->p) once a
 * message is in *out, or OK with result 0 when the channel is closed and
 * drained. out must stay valid until the future is done. Cancel it while
 * pending to stop waiting. Caller owns a reference; NULL on exhaustion. */
HALO_API halo_fut *halo_chan_recv_at(halo_chan *ch, halo_chan_msg *out,
				     const char *file, int line);
#define halo_chan_recv(ch, out)                                                \
	halo_chan_recv_at((ch), (out), __FILE__, __LINE__)

/* Messages buffered now. */
HALO_API size_t halo_chan_len(const halo_chan *ch);

/* Credit: how many try_send calls would succeed now. */
HALO_API size_t halo_chan_space(const halo_chan *ch);

/* No more sends: blocked senders fail with -EPIPE, receivers drain what is
 * buffered and then get 0. Idempotent. */
HALO_API void halo_chan_close(halo_chan *ch);

/* Close, cancel every waiter and free the buffer. Messages still buffered
 * are passed to drop (may be NULL) so their p can be freed. */
HALO_API void halo_chan_destroy(halo_chan *ch,
				void (*drop)(halo_chan_msg *m, void *arg),
				void *arg);

#ifdef __cplusplus
}
#endif
#endif
