/* Deadlines on I/O futures. A deadline never abandons a buffer: when it
 * passes, halo asks the kernel to cancel the operation and the future ends
 * with -ETIMEDOUT only when the kernel's CQE for it has arrived. */
#ifndef HALO_IO_TIMEOUT_H
#define HALO_IO_TIMEOUT_H

#include <stdint.h>

#include "../runtime/api.h"
#include "../runtime/fut.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Give the I/O future f (from io/: read, recv, accept, the full/all
 * helpers, ...) a deadline at deadline_ns on CLOCK_MONOTONIC (halo_now_ns()).
 * If f's SQE is the last one prepared this tick, an IORING_OP_LINK_TIMEOUT
 * rides with it (no extra system call); otherwise a loop timer issues the
 * cancel. If the deadline passes first, f ends ERROR with -ETIMEDOUT after
 * the kernel let go of its buffer; if the operation completes first, its
 * result stands. Returns 0, -EINVAL if f is not an I/O operation, -EALREADY
 * if f is done, -EBUSY if f already has a deadline, -ENOMEM. */
HALO_API int halo_deadline(halo_fut *f, uint64_t deadline_ns);

/* halo_deadline() ns nanoseconds from now. */
#define halo_deadline_after(f, ns) halo_deadline((f), halo_now_ns() + (ns))

/* Like halo_deadline() but always through a loop timer, never a linked
 * timeout (for tests and for operations whose SQE must stay unlinked). */
HALO_API int halo_deadline_timer(halo_fut *f, uint64_t deadline_ns);

#ifdef __cplusplus
}
#endif
#endif
