/* A connection layer: a listener and its connections, each served by a
 * fiber of its own or by callbacks, with the parts every server needs built
 * in and bounded.
 * - Accept: multishot; EMFILE, ENFILE, ENOBUFS and ENOMEM back off and
 *   re-arm (counted, logged once); above max_conns a new connection is
 *   accepted and closed at once (counted as refused), so the backlog never
 *   fills with peers nobody answers.
 * - Input: one shared ring of receive buffers; one connection holds at most
 *   max_held of them, then its receive pauses until it consumes (so one
 *   peer that never reads cannot starve the others).
 * - Output: writes are copied into the connection's queue and everything
 *   queued goes out in one send per tick; above max_out a fiber's write
 *   waits and a callback connection is given no more input until the queue
 *   drains, so a slow reader slows only itself.
 * - Deadlines: every connection is always under exactly one: idle (nothing
 *   moves), head (a request started and is not complete), write (queued
 *   bytes that no send moves) or close (a closing connection lingering).
 * - Stop: stop accepting, let requests in flight finish until a drain
 *   deadline, then cancel what is left; the stop's future completes when
 *   every connection is closed and the kernel let go of every buffer. */
#ifndef HALO_PATTERNS_SERVER_H
#define HALO_PATTERNS_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../runtime/api.h"
#include "../runtime/fut.h"
#include "../runtime/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct halo_server halo_server;
typedef struct halo_conn halo_conn;

/* Fiber style: serve connection c; the fiber's return closes c once what
 * was written has been sent. */
typedef int64_t (*halo_conn_fn)(halo_conn *c, void *arg);

/* Callback style. All run from the loop (reap step or ready queue): they
 * may write and close, but must not wait. */
typedef struct halo_conn_cbs {
	/* A new connection; return < 0 to refuse it (closed at once).
	 * Optional. */
	int (*on_open)(halo_conn *c, void *arg);
	/* Input: len > 0 bytes at data. Return how many were consumed; the
	 * rest is kept (copied aside, at most max_in bytes) and handed again,
	 * with what arrives next appended, so that a request that spans
	 * several receives is seen whole. While unconsumed bytes are kept the
	 * head deadline runs. Required. */
	size_t (*on_data)(halo_conn *c, const char *data, size_t len,
			  void *arg);
	/* c is closed and gone after this returns: reason 0 (closed by the
	 * server or the peer at a request boundary) or -errno (-ETIMEDOUT,
	 * -ECONNRESET, -EMSGSIZE for input over max_in, -ESHUTDOWN at the end
	 * of a drain). Optional. */
	void (*on_close)(halo_conn *c, int reason, void *arg);
} halo_conn_cbs;

/* Options; zero means default for every field. */
typedef struct halo_server_opts {
	const char *host;     /* address to bind, NULL: every IPv4 address */
	uint16_t port;	      /* 0: the kernel picks (halo_server_port()) */
	int backlog;	      /* listen backlog, default 4096 */
	int reuseport;	      /* SO_REUSEPORT, for a listener per loop */
	int handoff;	      /* on a loop of a group (runtime/group.h):
				 hand each accepted connection to the least
				 loaded loop that runs a server (one
				 acceptor for all loops) */
	unsigned max_conns;   /* open connections, default 10000 */
	unsigned ring_bufs;   /* receive buffers shared by all connections,
				 a power of two, default 1024 */
	unsigned buf_size;    /* bytes per receive buffer, default 4096 */
	uint16_t bgid;	      /* buffer group of the ring, default 0 */
	unsigned max_held;    /* receive buffers one connection may hold
				 before its receive pauses, default 16 */
	int recv_bundle;      /* receive in bundles (one CQE for several
				 buffers) where the loop has
				 HALO_FEAT_RECV_BUNDLE */
	size_t max_out;	      /* queued output above which writers wait,
				 default 256 KiB */
	size_t max_in;	      /* unconsumed input kept for on_data, default
				 64 KiB; above it the connection closes with
				 -EMSGSIZE */
	uint64_t idle_ns;     /* default 60 s */
	uint64_t head_ns;     /* default 10 s */
	uint64_t write_ns;    /* default 10 s */
	uint64_t close_ns;    /* default 2 s */
	size_t stack_size;    /* fiber style, default 32 KiB (256 KiB under
				 ASan) */
	halo_conn_fn fiber;   /* fiber style, or */
	const halo_conn_cbs *cbs; /* callback style: exactly one of them */
	void *arg;	      /* passed to fiber or callbacks */
	/* An accept error other than running out of fds or memory: accepting
	 * has stopped. Optional; without it the error is printed. */
	void (*on_accept_error)(halo_server *s, int err, void *arg);
} halo_server_opts;

typedef struct halo_server_stats {
	uint64_t accepted;	 /* connections served */
	uint64_t refused;	 /* closed at once: over max_conns or on_open */
	uint64_t accept_backoffs; /* EMFILE/ENFILE/ENOBUFS/ENOMEM pauses */
	uint64_t timeouts_idle;
	uint64_t timeouts_head;
	uint64_t timeouts_write;
	uint64_t timeouts_close;
	uint64_t bytes_in;
	uint64_t bytes_out;
	uint64_t sends;		 /* send operations */
	uint64_t recv_pauses;	 /* receives paused at max_held */
	uint64_t write_waits;	 /* writes that waited (fiber) or input held
				    back (callbacks) above max_out */
	uint64_t handed_off;	 /* passed to another loop (opts.handoff) */
	uint64_t adopted;	 /* accepted elsewhere, served here */
	unsigned open;		 /* connections open now */
	unsigned open_peak;
} halo_server_stats;

/* Bind, listen and start accepting on loop. Returns the server (free it
 * with halo_server_free() after its stop completed) or NULL with *err set
 * to -EINVAL (bad options), -EADDRINUSE and such, or -ENOMEM. */
HALO_API halo_server *halo_server_start(halo_loop *loop,
					const halo_server_opts *opts, int *err);

/* The same on a listening socket the caller made (host, port, backlog and
 * reuseport are ignored); lfd stays the caller's and is not closed. */
HALO_API halo_server *halo_server_start_fd(halo_loop *loop, int lfd,
					   const halo_server_opts *opts,
					   int *err);

/* A server that listens nowhere and serves the connections handed to it:
 * by a handoff server of its group, or by halo_server_adopt(). Returns as
 * halo_server_start().
 *
 * Across a group of loops, each loop starts its own server from the
 * group's init. Either every loop listens on the same port with reuseport
 * set (the kernel spreads connections by a hash of their addresses), or one
 * loop accepts with handoff set and the others run halo_server_start_peer():
 * each connection goes to the loop with the fewest open connections. A
 * server on a group loop publishes itself (HALO_GROUP_SLOT_SERVER) and
 * counts its open connections as the loop's load. */
HALO_API halo_server *halo_server_start_peer(halo_loop *loop,
					     const halo_server_opts *opts,
					     int *err);

/* Serve fd, a connected socket accepted elsewhere, on s (on s's loop's
 * thread); s owns fd from then on. Returns 0, or -ESHUTDOWN (s stops),
 * -ECONNREFUSED (max_conns), -EINVAL: then fd stays the caller's. */
HALO_API int halo_server_adopt(halo_server *s, int fd);

/* The port the server listens on. */
HALO_API int halo_server_port(const halo_server *s);

/* Stop: stop accepting now, close connections as they become idle, and at
 * drain_ns from now close the rest (fibers cancelled, sends cancelled).
 * Returns a future (caller owns a reference) that completes with 0 once
 * every connection is closed and the kernel let go of its buffers; a second
 * call returns a new reference to the same future. Needs no memory: it
 * works, and never returns NULL, even when allocation fails. */
HALO_API halo_fut *halo_server_stop(halo_server *s, uint64_t drain_ns);

/* Free a server whose stop completed. Returns 0, or -EBUSY before that. */
HALO_API int halo_server_free(halo_server *s);

/* Copy the server's counters to out. */
HALO_API void halo_server_stats_get(const halo_server *s,
				    halo_server_stats *out);

/* Fiber style: read up to len bytes into buf, waiting while none have
 * arrived. Returns the byte count, 0 at the peer's end of stream, or -errno:
 * -ETIMEDOUT (a deadline closed c), -ESHUTDOWN (the server stops and c is
 * idle), -ECANCELED, -EPERM outside c's fiber. */
HALO_API ssize_t halo_conn_read(halo_conn *c, void *buf, size_t len);

/* Fiber style: halo_conn_read() without the copy. Waits as it does, then
 * points *data at the oldest input c holds, in the receive buffer itself,
 * and returns how many bytes lie there in one piece (at most one buffer's
 * worth; more may follow), 0 at the peer's end of stream, or -errno as
 * halo_conn_read(). The bytes stay valid, and are seen again by the next
 * peek or read, until halo_conn_consume() lets go of them or c closes. */
HALO_API ssize_t halo_conn_peek(halo_conn *c, const void **data);

/* Fiber style: let go of the first n bytes of c's input (at most what
 * halo_conn_peek() returned); their buffers go back to the ring. */
HALO_API void halo_conn_consume(halo_conn *c, size_t n);

/* Queue len bytes of buf (copied) for sending after everything written
 * before. In c's fiber it waits while more than max_out bytes are queued;
 * in a callback it never waits. Returns len, or -errno: the error that
 * closed c (-EPIPE after a close), -ENOMEM. */
HALO_API ssize_t halo_conn_write(halo_conn *c, const void *buf, size_t len);

/* Fiber style: wait until everything queued has been sent. Returns 0 or
 * -errno as halo_conn_write. */
HALO_API int halo_conn_flush(halo_conn *c);

/* Close c once what is queued has been sent (under the close deadline);
 * no more input is delivered. In callback style on_close follows. */
HALO_API void halo_conn_close(halo_conn *c);

/* The connection's socket (owned by the server; do not close it). */
HALO_API int halo_conn_fd(const halo_conn *c);

/* The connection's user pointer (NULL until set). */
HALO_API void *halo_conn_data(const halo_conn *c);
HALO_API void halo_conn_set_data(halo_conn *c, void *data);

/* The server and loop of c. */
HALO_API halo_server *halo_conn_server(const halo_conn *c);
HALO_API halo_loop *halo_conn_loop(const halo_conn *c);

#ifdef __cplusplus
}
#endif
#endif
