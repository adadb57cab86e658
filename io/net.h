/* Sockets as futures: socket, accept, connect, recv, send, sendmsg, recvmsg,
 * shutdown; multishot accept and multishot recv over a provided buffer ring,
 * with their lifecycle (re-arming, buffer starvation, stop) owned by halo.
 * Results are what the kernel's CQE says: bytes, an fd, 0, or -errno. Start
 * calls return NULL only when out of memory or when the ring failed. */
#ifndef HALO_IO_NET_H
#define HALO_IO_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../runtime/api.h"
#include "../runtime/fut.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Options of halo_net_listen(); zero means default. */
typedef struct halo_listen_opts {
	int backlog;	/* listen(2) backlog, default SOMAXCONN */
	int reuseport;	/* set SO_REUSEPORT (several loops, one port) */
	int nonblock;	/* make the listening fd O_NONBLOCK */
} halo_listen_opts;

/* Create a TCP socket bound to host:port (host NULL: any IPv4 address; an
 * IPv6 literal makes an IPv6 socket) with SO_REUSEADDR, and listen. A
 * synchronous setup call. Returns the fd (the caller owns it) or -errno. */
HALO_API int halo_net_listen(const char *host, uint16_t port,
			     const halo_listen_opts *opts);

/* The local port fd is bound to (after binding port 0), or -errno. */
HALO_API int halo_net_local_port(int fd);

/* socket(2) through the ring. The result is the new fd or -errno. */
HALO_API halo_fut *halo_socket_at(halo_loop *loop, int domain, int type,
				  int protocol, const char *file, int line);
#define halo_socket(loop, d, t, p)                                             \
	halo_socket_at((loop), (d), (t), (p), __FILE__, __LINE__)

/* Accept one connection on the listening fd (flags: SOCK_NONBLOCK,
 * SOCK_CLOEXEC). The result is the new fd (the caller owns it) or -errno. If
 * the accept is cancelled and the kernel accepted a connection anyway, halo
 * closes that fd and the future ends CANCELLED: no fd leaks. With a
 * deadline, an accept the kernel completed first keeps its result (the fd is
 * the caller's), as for any operation under halo_deadline(). */
HALO_API halo_fut *halo_accept_at(halo_loop *loop, int fd, int flags,
				  const char *file, int line);
#define halo_accept(loop, fd, flags)                                           \
	halo_accept_at((loop), (fd), (flags), __FILE__, __LINE__)

/* Connect fd to addr (copied). Result 0 or -errno. If cancelled and the
 * kernel connected anyway, the future ends CANCELLED and fd (still the
 * caller's) is connected: close it. */
HALO_API halo_fut *halo_connect_at(halo_loop *loop, int fd,
				   const struct sockaddr *addr,
				   socklen_t addrlen, const char *file,
				   int line);
#define halo_connect(loop, fd, addr, len)                                      \
	halo_connect_at((loop), (fd), (addr), (len), __FILE__, __LINE__)

/* Receive up to len bytes into buf (flags: MSG_*). The result is the byte
 * count, 0 at EOF, or -errno; buf must stay valid until done. */
HALO_API halo_fut *halo_recv_at(halo_loop *loop, int fd, void *buf,
				size_t len, int flags, const char *file,
				int line);
#define halo_recv(loop, fd, buf, len, flags)                                   \
	halo_recv_at((loop), (fd), (buf), (len), (flags), __FILE__, __LINE__)

/* Send up to len bytes of buf. The result is the byte count or -errno; buf
 * must stay valid until done. */
HALO_API halo_fut *halo_send_at(halo_loop *loop, int fd, const void *buf,
				size_t len, int flags, const char *file,
				int line);
#define halo_send(loop, fd, buf, len, flags)                                   \
	halo_send_at((loop), (fd), (buf), (len), (flags), __FILE__, __LINE__)

/* Zero-copy send (SEND_ZC) of up to len bytes of buf: the kernel sends from
 * buf's pages instead of copying them. The result is the byte count or
 * -errno, and the future completes only once the kernel's notification says
 * it let go of buf: then, and not at the byte count, buf may be reused.
 * Without HALO_FEAT_SEND_ZC it is a plain send (same contract). On loopback
 * the kernel copies anyway and zero-copy costs more (see README); it pays
 * for large sends to a real NIC. */
HALO_API halo_fut *halo_send_zc_at(halo_loop *loop, int fd, const void *buf,
				   size_t len, int flags, const char *file,
				   int line);
#define halo_send_zc(loop, fd, buf, len, flags)                                \
	halo_send_zc_at((loop), (fd), (buf), (len), (flags), __FILE__, __LINE__)

/* Send all len bytes, resubmitting the remainder after partial sends, with
 * MSG_NOSIGNAL added to flags (a closed peer gives -EPIPE, not SIGPIPE). The
 * result is len or -errno; buf must stay valid until done. At or above the
 * loop's send_zc_min (halo_loop_opts; 0, the default, is never) and with
 * HALO_FEAT_SEND_ZC, the pieces go zero-copy (SEND_ZC, MSG_WAITALL) and the
 * future completes only after the kernel's last notification, when buf may
 * be reused; a socket that takes no zero-copy sends (a Unix socket) gets
 * plain ones, after one refused attempt per call. */
HALO_API halo_fut *halo_send_all_at(halo_loop *loop, int fd, const void *buf,
				    size_t len, int flags, const char *file,
				    int line);
#define halo_send_all(loop, fd, buf, len, flags)                               \
	halo_send_all_at((loop), (fd), (buf), (len), (flags), __FILE__,       \
			 __LINE__)

/* sendmsg(2)/recvmsg(2). The msghdr and its iovec array are copied into the
 * operation (more than 4 iovecs go to loop memory, freed at completion); the
 * data buffers, msg_name and msg_control must stay valid until done. For
 * recvmsg, msg itself must also stay valid: msg_namelen, msg_controllen and
 * msg_flags are written back to it at completion. Result: bytes or -errno. */
HALO_API halo_fut *halo_sendmsg_at(halo_loop *loop, int fd,
				   const struct msghdr *msg, int flags,
				   const char *file, int line);
#define halo_sendmsg(loop, fd, msg, flags)                                     \
	halo_sendmsg_at((loop), (fd), (msg), (flags), __FILE__, __LINE__)
HALO_API halo_fut *halo_recvmsg_at(halo_loop *loop, int fd,
				   struct msghdr *msg, int flags,
				   const char *file, int line);
#define halo_recvmsg(loop, fd, msg, flags)                                     \
	halo_recvmsg_at((loop), (fd), (msg), (flags), __FILE__, __LINE__)

/* sendmsg(2) as a zero-copy send (SENDMSG_ZC), as halo_sendmsg() copies
 * its metadata: the result is the byte count or -errno, and the future
 * completes only at the kernel's notification, once it let go of the data
 * buffers, which may be reused then. Without HALO_FEAT_SEND_ZC it is
 * halo_sendmsg() (same contract). */
HALO_API halo_fut *halo_sendmsg_zc_at(halo_loop *loop, int fd,
				      const struct msghdr *msg, int flags,
				      const char *file, int line);
#define halo_sendmsg_zc(loop, fd, msg, flags)                                  \
	halo_sendmsg_zc_at((loop), (fd), (msg), (flags), __FILE__, __LINE__)

/* shutdown(2) with how = SHUT_RD, SHUT_WR or SHUT_RDWR. Result 0 or -errno.
 * (Close a socket with halo_close() from io/file.h.) */
HALO_API halo_fut *halo_shutdown_at(halo_loop *loop, int fd, int how,
				    const char *file, int line);
#define halo_shutdown(loop, fd, how)                                           \
	halo_shutdown_at((loop), (fd), (how), __FILE__, __LINE__)

/* --- provided buffer rings --- */

typedef struct halo_bufring halo_bufring;

/* Create a ring of nbufs (a power of two, <= 32768) buffers of buf_size
 * bytes each, registered with the kernel as buffer group bgid, and fill it.
 * Multishot recvs pick buffers from it. Returns the ring (owned by the
 * caller, free with halo_bufring_free()) or NULL with *err set to -errno. */
HALO_API halo_bufring *halo_bufring_new(halo_loop *loop, uint16_t bgid,
					unsigned nbufs, size_t buf_size,
					int *err);

/* Options of halo_bufring_new_opts(); zero means default.
 *
 * flags: HALO_BUFRING_INC asks for incremental consumption where the loop
 * has it (HALO_FEAT_PBUF_INC, Linux 6.12): the kernel then fills a buffer
 * piece by piece, each recv's data starting where the buffer's previous
 * piece ended, so that one large buffer (say 64 KiB) takes many small
 * messages instead of one buffer each. A callback then gets a piece: data
 * points into buffer bid, not at its start, and res bytes of it are the
 * callback's. Pieces of one buffer may go to different recvs sharing the
 * ring. Give each piece back with halo_bufring_return_piece(br, data); the
 * buffer goes back to the kernel only when the kernel is done with it and
 * every piece of it came back, so a piece stays valid, unchanged, until its
 * own return. halo records each piece out in a pool that grows, a few
 * times while the loop warms up; if it cannot grow, the recv whose piece it
 * was ends with -ENOMEM (that piece is lost). Without the feature (old
 * kernel, or forced off) the ring is a plain one: every piece is a whole
 * buffer, and the same calls work.
 *
 * On such a ring (feature on or off), max_held counts pieces, not buffers:
 * each piece pins at most its buffer, so a recv still pins at most
 * max_held buffers, and a buffer a piece pins serves other recvs meanwhile
 * (the kernel goes on filling its rest). With the feature on, the 6.17 byte
 * cap is not used: it counts bytes, not pieces, and the CQE that ends a
 * capped recv may be posted after later CQEs of other recvs, while halo
 * finds where a piece starts by the order of the buffer's CQEs. A recv
 * then pauses with a cancel, as on earlier kernels, and its overshoot is
 * the pieces the kernel received in the tick that reached the limit. Bundles (HALO_RECV_MS_BUNDLE) are refused with
 * -EINVAL on such a ring, feature on or off: the kernel's bundle path dropped
 * BUF_MORE after a retry until mid-2026, which would hand a buffer back to the
 * ring while the kernel still fills it, and one CQE of a 64 KiB buffer already
 * covers what a bundle would. */
typedef struct halo_bufring_opts {
	unsigned flags;
} halo_bufring_opts;

#define HALO_BUFRING_INC (1u << 0)

/* halo_bufring_new() with options (NULL: defaults). The same results, and
 * -EINVAL for an unknown flag. */
HALO_API halo_bufring *halo_bufring_new_opts(halo_loop *loop, uint16_t bgid,
					     unsigned nbufs, size_t buf_size,
					     const halo_bufring_opts *opts,
					     int *err);

/* 1 if the kernel consumes br's buffers incrementally (HALO_BUFRING_INC
 * asked and HALO_FEAT_PBUF_INC active), else 0. */
HALO_API int halo_bufring_is_inc(const halo_bufring *br);

/* Give back the piece that starts at data (the data pointer a callback got;
 * on a plain ring the buffer's start, the same as halo_bufring_return()).
 * Returns 0, or -EINVAL if no piece that starts there is out: returned
 * already, or never handed out; nothing changes then, so a piece cannot be
 * credited twice. Valid when halo_bufring_return() is. */
HALO_API int halo_bufring_return_piece(halo_bufring *br, const void *data);

/* Counters of a ring, read with halo_bufring_stats_get(). */
typedef struct halo_bufring_stats {
	unsigned avail;	     /* buffers in the ring (a partly used one too) */
	int is_inc;	     /* incremental consumption active */
	uint64_t pieces_out; /* pieces (buffers) handed out, not back yet */
	uint64_t pieces;     /* pieces handed out in all */
	uint64_t bufs_used;  /* buffers the kernel took off the ring in all
				(< pieces when it used them piece by piece) */
	size_t bytes_free;   /* room for new data: the buffers in the ring,
				less what the kernel used of a partly used one */
} halo_bufring_stats;

/* Copy br's counters to out. */
HALO_API void halo_bufring_stats_get(const halo_bufring *br,
				     halo_bufring_stats *out);

/* The memory of buffer bid. */
HALO_API void *halo_bufring_buf(const halo_bufring *br, uint16_t bid);

/* Size of every buffer of br. */
HALO_API size_t halo_bufring_buf_size(const halo_bufring *br);

/* Give buffer bid back to the ring (exactly once per buffer handed to a
 * callback), and so back to the multishot recv that handed it out: the ring
 * knows which one did. On an incremental ring it gives back bid's oldest
 * piece out, which is the right one when pieces come back in the order they
 * came; otherwise use halo_bufring_return_piece(). The return may resume that
 * recv if it had paused at its limit (see halo_recv_ms_opts), or one that
 * stopped for want of buffers (-ENOBUFS); either re-arms in the tick's next
 * submit. Valid after the handle ended too, until halo_loop_close(). */
HALO_API void halo_bufring_return(halo_bufring *br, uint16_t bid);

/* Buffers in the ring now (as far as halo knows). */
HALO_API unsigned halo_bufring_avail(const halo_bufring *br);

/* How many times a multishot recv on br paused at its max_held. */
HALO_API uint64_t halo_bufring_pauses(const halo_bufring *br);

/* Multishot recvs that may still touch br: not ended, with CQEs still to
 * come after a stop, or with buffers not given back. */
HALO_API unsigned halo_bufring_handles(const halo_bufring *br);

/* Call fn(br, arg) each time halo_bufring_handles(br) drops to 0, so that
 * whoever waits to free the ring (a server's stop) learns it without
 * polling. It runs from the loop (the reap of a recv's last CQE, or the
 * call that gave back its last buffer); fn may free br. NULL fn: none. */
HALO_API void halo_bufring_on_idle(halo_bufring *br,
				   void (*fn)(halo_bufring *br, void *arg),
				   void *arg);

/* Unregister and free br. Every multishot recv on it must be over first
 * (halo_bufring_handles() == 0: stopped, its last CQE reaped, its buffers
 * given back), or the loop closing or closed. Returns 0, -EBUSY (then br is
 * untouched) or -errno from unregistering. */
HALO_API int halo_bufring_free(halo_bufring *br);

/* --- multishot accept and recv --- */

typedef struct halo_accept_ms halo_accept_ms;

/* Called with each accepted fd (>= 0; the callback owns it), or once with a
 * -errno when accepting ended (e.g. -EMFILE; the handle is gone after the
 * call; start a new one to go on). Runs from the loop's reap step: it may
 * start operations and stop handles, but must not wait. */
typedef void (*halo_accept_ms_cb)(halo_accept_ms *h, int fd, void *arg);

/* Accept connections on the listening fd with one multishot ACCEPT until
 * stopped; re-armed whenever the kernel ends it. flags as for halo_accept().
 * Returns a handle owned by halo or NULL when out of memory. */
HALO_API halo_accept_ms *halo_accept_ms_start(halo_loop *loop, int fd,
					      int flags, halo_accept_ms_cb cb,
					      void *arg);

/* Stop accepting: no callback after this returns; connections the kernel
 * accepted meanwhile are closed. Do not use h afterwards. Returns 0 or
 * -EALREADY if it already ended. */
HALO_API int halo_accept_ms_stop(halo_accept_ms *h);

typedef struct halo_recv_ms halo_recv_ms;

/* Called for each piece of data: res > 0 bytes at data, which is buffer bid
 * of the ring (with bundles, one call per buffer of the bundle, in order; on
 * an incremental ring a piece of bid, see halo_bufring_opts);
 * the handle holds the buffer until the callback's owner gives it back with
 * halo_bufring_return() (now or later). res == 0: the peer
 * closed (EOF); res < 0: -errno (e.g. -ECONNRESET). After a call with
 * res <= 0 the handle is gone: make no call on h, but give back the buffers
 * it handed out, which stay valid (halo keeps the handle's count alive until
 * the last one is back). Runs from the loop's reap step: it may start
 * operations and stop handles, but must not wait. */
typedef void (*halo_recv_ms_cb)(halo_recv_ms *h, int res, void *data,
				uint16_t bid, void *arg);

#define HALO_RECV_MS_HELD_DEFAULT 16u
#define HALO_RECV_MS_UNLIMITED	  (~0u)

/* Options of halo_recv_ms_start_opts(); zero means default.
 *
 * max_held bounds what one connection takes from the shared ring: when the
 * handle holds max_held buffers (handed out, not yet given back) it pauses:
 * no multishot recv is armed, so the kernel picks no more buffers for it,
 * and the bytes wait in the socket (TCP then slows the peer). It resumes,
 * re-armed after the paused recv's last CQE so that no byte is lost or
 * reordered, when returns bring it down to max_held / 2. While paused, EOF
 * and errors are seen after the resume, in order after the data. A protocol
 * that must hold more than max_held buffers at once to make progress has to
 * copy data aside or raise the limit.
 *
 * Overshoot: buffers the kernel filled before the pause reached it are
 * delivered, not dropped. On Linux 6.17 and later each recv is armed with a
 * byte cap of the room left (max_held - held whole buffers), so the kernel
 * stops by itself and held passes max_held by at most the number of buffers
 * it filled only partly (bulk senders: 1 in tests). Earlier kernels refuse
 * the cap (halo then goes on without it) and halo cancels the recv at the
 * limit; held then passes max_held by what the kernel received for the
 * socket in the tick that reached it, up to the socket's receive queue (107
 * buffers of 4 KiB in tests on loopback). The ring bounds it in every case:
 * size it above the connections' limits plus that overshoot. Pauses are
 * counted in halo_recv_stats and halo_bufring_pauses().
 *
 * On an incremental ring max_held counts pieces, and no byte cap is used
 * while the kernel consumes incrementally (see halo_bufring_opts).
 *
 * max_held: 0 means HALO_RECV_MS_HELD_DEFAULT, or half the ring if that is
 * fewer (at least 1); HALO_RECV_MS_UNLIMITED never pauses (the ring is the
 * only bound); other values must not exceed the ring's size.
 *
 * flags: HALO_RECV_MS_BUNDLE asks for bundles where the loop has them
 * (HALO_FEAT_RECV_BUNDLE): one CQE then covers every buffer the data in the
 * socket fills, instead of one CQE per buffer. The callback still sees one
 * call per buffer, and max_held counts buffers either way. */
typedef struct halo_recv_ms_opts {
	unsigned max_held;
	unsigned flags;
} halo_recv_ms_opts;

#define HALO_RECV_MS_BUNDLE (1u << 0)

/* Counters of a multishot recv, read with halo_recv_ms_stats(). */
typedef struct halo_recv_stats {
	uint64_t rearms;    /* recvs armed after the first (kernel ended one,
			       also at its byte cap; -ENOBUFS; resume) */
	uint64_t pauses;    /* times it reached max_held and paused */
	unsigned held;	    /* buffers handed out and not given back now */
	unsigned held_peak; /* the most it held at once */
	unsigned max_held;  /* the limit in force */
	int is_paused;	    /* over the limit, waiting for returns */
	int is_capped;	    /* the kernel stops it at the limit by itself
			       (byte cap, Linux 6.17+); 0 until data showed it */
	int is_bundle;	    /* armed with bundles */
	uint64_t cqes;	    /* CQEs that carried data */
	uint64_t bufs;	    /* buffers they filled (> cqes: bundles; < cqes:
			       an incremental ring, where a buffer counts
			       once the kernel is done with it) */
} halo_recv_stats;

/* Receive from fd with one multishot RECV picking buffers from br, until
 * EOF, an error or stop, holding at most opts->max_held buffers (opts NULL:
 * defaults). halo re-arms it when the kernel ends it (without losing or
 * reordering bytes: the new recv is submitted after every CQE of the old one
 * was seen), after -ENOBUFS when a buffer is given back to the ring, and
 * after a pause when its own buffers come back. Returns a handle owned by
 * halo, or NULL with *err (if err is not NULL) set to -EINVAL (bad options,
 * no br or cb), -EBADF (fd < 0), -ENOMEM or -EBUSY (no SQE). */
HALO_API halo_recv_ms *halo_recv_ms_start_opts(halo_loop *loop, int fd,
					       halo_bufring *br,
					       halo_recv_ms_cb cb, void *arg,
					       const halo_recv_ms_opts *opts,
					       int *err);

/* halo_recv_ms_start_opts() with default options. Returns NULL only when
 * out of memory or when the ring failed. */
HALO_API halo_recv_ms *halo_recv_ms_start(halo_loop *loop, int fd,
					  halo_bufring *br, halo_recv_ms_cb cb,
					  void *arg);

/* Stop receiving: no callback after this returns; buffers the kernel filled
 * meanwhile go back to the ring. Works paused or not. Buffers already handed
 * out stay the caller's to give back. Do not use h afterwards. Returns 0 or
 * -EALREADY if it already ended. */
HALO_API int halo_recv_ms_stop(halo_recv_ms *h);

/* How many times h was re-armed (kernel ended it, -ENOBUFS, resume). */
HALO_API uint64_t halo_recv_ms_rearms(const halo_recv_ms *h);

/* Copy h's counters to out; h must not have ended (its callback may call
 * this). */
HALO_API void halo_recv_ms_stats(const halo_recv_ms *h, halo_recv_stats *out);

#ifdef __cplusplus
}
#endif
#endif
