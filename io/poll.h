/* Readiness as futures: one-shot poll and multishot poll with a callback per
 * event. Multishot poll is the base of marker-and-sweeper readiness: each
 * event marks an fd, a sweeper acts on the marks later. */
#ifndef HALO_IO_POLL_H
#define HALO_IO_POLL_H

#include <stdint.h>

#include "../runtime/api.h"
#include "../runtime/fut.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Wait until fd is ready for any of events (POLLIN, POLLOUT, ...). The
 * result is the revents mask (> 0) or -errno. */
HALO_API halo_fut *halo_poll_at(halo_loop *loop, int fd, unsigned events,
				const char *file, int line);
#define halo_poll(loop, fd, events)                                            \
	halo_poll_at((loop), (fd), (events), __FILE__, __LINE__)

typedef struct halo_poll_ms halo_poll_ms;

/* Called once per readiness event with its revents mask (> 0), or once with
 * a -errno when the poll ended on an error (the handle is gone after that
 * call returns). Runs from the loop's reap step: it may start operations,
 * mark, and call halo_poll_ms_stop(), but must not wait. */
typedef void (*halo_poll_ms_cb)(halo_poll_ms *h, int revents, void *arg);

/* Watch fd for events with one multishot POLL_ADD until stopped. When the
 * kernel ends the multishot (no IORING_CQE_F_MORE, e.g. after CQ overflow)
 * halo re-arms it before the event is handed out, so that no readiness
 * change goes unwatched. Returns a handle owned by halo, or NULL when out of
 * memory. */
HALO_API halo_poll_ms *halo_poll_ms_start(halo_loop *loop, int fd,
					  unsigned events, halo_poll_ms_cb cb,
					  void *arg);

/* Stop watching: no callback runs after this returns; the handle is freed
 * once the kernel has let go of it (do not use it after this call). Returns
 * 0, or -EALREADY if the poll already ended. */
HALO_API int halo_poll_ms_stop(halo_poll_ms *h);

/* How many times halo re-armed h after the kernel ended it. */
HALO_API uint64_t halo_poll_ms_rearms(const halo_poll_ms *h);

#ifdef __cplusplus
}
#endif
#endif
