/* Internals shared by runtime/ and io/: the layout of futures and operations
 * and the calls that turn an SQE/CQE pair into a future. Not installed. */
#ifndef HALO_INTERNAL_H
#define HALO_INTERNAL_H

#include <assert.h>
#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "fault.h"
#include "fiber.h"
#include "fut.h"
#include "loop.h"
#include "pool.h"
#include "timer.h"
#include "uring_compat.h"

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#if defined(__SANITIZE_ADDRESS__)
#define HALO_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HALO_ASAN 1
#endif
#endif

/* fut->flags */
enum {
	FUT_CONSUMED = 1u << 0,	 /* waited, read, detached, or its last user
				    reference released */
	FUT_QUEUED = 1u << 1,	 /* its task is on the ready queue */
	FUT_CANCEL_REQ = 1u << 2, /* someone asked for cancellation */
	FUT_NOPPED = 1u << 3,	 /* cancelled before submission: SQE became NOP */
	FUT_OWNED_MSG = 1u << 4, /* errmsg is loop memory (or the static
				    halo_fut_msg_lost, never freed) */
	FUT_UNOWNED = 1u << 5,	 /* an op no fiber owns (multishot handles,
				    halo_fiber_disown) */
	FUT_FAILS_AT_EXPIRY = 1u << 6, /* a delayed failure: its timer
					  completes it as ERROR */
	FUT_IOPOLL = 1u << 7, /* an op whose SQE is on the polled ring */
};

/* fut->kind; an op's is 0, so that halo_fut_release tests "an op with no
 * message to free" with flags and kind at once. */
enum {
	FUT_OP = 0, /* an io_uring operation (struct halo_op) */
	FUT_USER,   /* completed by user code (halo_fut_new) */
	FUT_TIMER,
	FUT_FIBER,
};

struct halo_fut {
	halo_task task; /* runs the waiters from the ready queue */
	halo_loop *loop;
	halo_waiter *waiters;
	void *value; /* beside waiters: a new future zeroes both at once */
	int64_t result;
	const char *file;
	char *errmsg;
	uint32_t refs;	/* every reference: user code's and internal ones */
	uint32_t urefs; /* those user code holds (halo_fut_ref/release) */
	/* An op's user_data: the slot's address, written once when the op
	 * pool carves the slot, and in the top 16 bits gen, which bumps at
	 * each reuse of the slot (halo__op_tag). */
	union {
		uint64_t tag;
		struct {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
			uint16_t tag_addr[3];
			uint16_t gen;
#else
			uint16_t gen;
			uint16_t tag_addr[3];
#endif
		};
	};
	uint8_t state;
	uint8_t flags;
	uint8_t kind;
	uint8_t _pad;
	int32_t line;
};

/* A user-completed future with an optional cancel hook. */
struct halo__promise {
	struct halo_fut fut;
	halo_fut_cancel_fn cancel;
	void *cancel_arg;
};

/* A timer: a future with its place in the heap. */
struct halo__timer {
	struct halo_fut fut;
	uint32_t idx; /* position in the heap, UINT32_MAX when not in it */
	uint32_t seq; /* creation order, for equal deadlines */
};

/* A timer of a loop that keeps histograms, with its creation time: only
 * such loops pay the 8 bytes (a larger pool class) per timer. */
struct halo__timer_born {
	struct halo__timer t;
	uint64_t born_ns;
};

static inline size_t halo__timer_size(const halo_loop *loop)
{
	return loop->hist ? sizeof(struct halo__timer_born)
			  : sizeof(struct halo__timer);
}

struct halo__timer_ent {
	uint64_t deadline;
	struct halo__timer *t;
};

typedef struct halo_op halo_op;

/* Called for every CQE tagged with op. Without one, the op completes with
 * the CQE's res (see halo__op_finish). Multishot handlers look at
 * IORING_CQE_F_MORE; the op's kernel reference is dropped by the reaper when
 * a CQE without F_MORE arrives, after the handler ran. */
typedef void (*halo_op_cqe_fn)(halo_op *op, int32_t res, uint32_t flags);

#define HALO_OP_META 128

struct halo_op {
	struct halo_fut fut;
	halo_op_cqe_fn on_cqe;
	struct io_uring_sqe *sqe; /* its main SQE while sq_epoch is current */
	uint64_t sq_epoch;
	uint32_t kernel_refs; /* SQEs tagged with this op not yet ended */
	uint32_t aux;	      /* free for the op's own use */
	void *ctx;	      /* free for the op's own use */
	/* The fiber that started the op, while the kernel holds it: the
	 * fiber's stack is not reused before the op ends (fiber.c). */
	struct halo_fiber *owner;
	struct halo_op *own_next, **own_pprev;
	struct __kernel_timespec ts;
	union {
		struct iovec iov[HALO_OP_META / sizeof(struct iovec)];
		struct msghdr msg;
		struct sockaddr_storage addr;
		uint64_t u64[HALO_OP_META / 8];
		unsigned char bytes[HALO_OP_META];
	} meta;
	/* Written only with histograms on (hist.c): when the enter that
	 * submitted the op was made, its opcode, and whether its first CQE is
	 * still to be measured. */
	uint64_t hist_ns;
	uint8_t hist_opcode;
	uint8_t hist_armed;
};

/* --- futures (fut.c) --- */
void *halo__fut_alloc(halo_loop *loop, size_t size, uint8_t kind,
		      const char *file, int line);
void halo__run_waiters(halo_task *t);
void halo__fut_free(halo_fut *f);
void halo__fut_queue(halo_fut *f);

/* Complete a pending future; its waiters run later from the ready queue. */
static inline void halo__fut_complete(halo_fut *f, uint8_t state,
				      int64_t result)
{
	assert(f->state == HALO_FUT_PENDING);
	f->state = state;
	f->result = result;
	if (f->waiters)
		halo__fut_queue(f);
}

/* Drop an internal reference (ready queue, kernel, timer heap, a fiber's
 * wait), taken with f->refs++, without consuming f. */
static inline void halo__fut_unref(halo_fut *f)
{
	assert(f->refs > 0);
	if (--f->refs == 0)
		halo__fut_free(f);
}
size_t halo__fut_size(const halo_fut *f);
int halo__loop_report_leaks(halo_loop *loop);

static inline bool halo__fut_pending(const halo_fut *f)
{
	return f->state == HALO_FUT_PENDING;
}

/* --- loop (loop.c) --- */
void halo__ready_push(halo_loop *loop, halo_task *t);
void halo__later_push(halo_loop *loop, halo_task *t);
void halo__loop_error(halo_loop *loop, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* --- operations (op.c) --- */

/* Hand the SQEs prepared so far to the kernel now, before the tick's
 * enter (counted as an early flush). Returns what the enter returned. */
int halo__sq_flush(halo_loop *loop);

/* Get an SQE after flushing a full SQ to the kernel (counted). */
struct io_uring_sqe *halo__get_sqe_slow(halo_loop *loop);

/* An SQE whose CQE the reaper ignores (linked timeouts): counted in
 * loop->internal_inflight until its CQE, so that close waits for it. */
struct io_uring_sqe *halo__loop_sqe(halo_loop *loop);

/* user_data of internal SQEs that are not counted (halo__loop_sqe_nocqe);
 * no op slot is at address 1. */
#define HALO_UD_NOCQE 1ull

/* An SQE whose success nobody reads and that refers to no memory of ours
 * (cancels): with HALO_FEAT_CQE_SKIP its success posts no CQE at all. Not
 * counted: a failure's CQE (tagged HALO_UD_NOCQE) is just ignored, and
 * close need not wait for it. */
struct io_uring_sqe *halo__loop_sqe_nocqe(halo_loop *loop);

/* Mark such an SQE so that its success posts no CQE, where the kernel can
 * (HALO_FEAT_CQE_SKIP). After the prep helper, which clears sqe->flags. */
static inline void halo__skip_success(halo_loop *loop,
				      struct io_uring_sqe *sqe)
{
	if (loop->features & HALO_FEAT_CQE_SKIP)
		sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

/* Complete op from a CQE res: OK if res >= 0, CANCELLED if res is -ECANCELED
 * and cancellation was asked for, ERROR otherwise. */
void halo__op_finish(halo_op *op, int32_t res);

/* Fail a start call after halo__op_new: completes nothing, frees the op. */
void halo__op_abort(halo_op *op);

/* user_data of op (slot pointer | generation << 48). */
static inline uint64_t halo__op_tag(const halo_op *op)
{
	return op->fut.tag;
}

/* Cancel hook of op futures (fut.c calls it). */
int halo__op_cancel(halo_op *op);

/* user_data below this is never an op's (op slots are heap addresses,
 * far above the first MiB): 0 tags internal SQEs, the rest loop groups'
 * doorbells (group.c). */
#define HALO__UD_RESERVED (1ull << 20)

/* A CQE whose user_data is a group's reserved tag (group.c). */
void halo__group_cqe(halo_loop *loop, uint64_t ud, int32_t res);

/* Reap every CQE that is ready on the main ring (the polled ring's, which
 * the loop must have); returns how many. */
unsigned halo__reap(halo_loop *loop);
unsigned halo__reap_iopoll(halo_loop *loop);

/* Hand the SQ to the kernel; wait for wait_nr CQEs or until timeout_ns
 * (UINT64_MAX: no timeout). Returns >= 0 or -errno for a ring failure. */
int halo__enter(halo_loop *loop, unsigned wait_nr, uint64_t timeout_ns);

/* --- the polled ring (iopoll.c) --- */

/* A second ring set up with IORING_SETUP_IOPOLL (loop.opts.iopoll), made at
 * the first direct op and closed by halo_loop_close(). Its ops are counted
 * in loop->stats.inflight too; inflight here says how many of them the
 * main ring's enter would wait for in vain. */
struct halo__iopoll {
	struct io_uring ring;
	uint64_t sq_epoch; /* bumps each time its SQ is handed over */
	uint64_t inflight; /* its ops whose last CQE is not reaped yet */
};

/* An SQE on the polled ring, tagged with op as halo__op_sqe() tags one on
 * the main ring (op gains a kernel reference and FUT_IOPOLL). Sets the ring
 * up at the first call. NULL, with nothing changed, when the loop has no
 * polled ring to offer (option off, feature off or switched off, setup
 * failed, SQ full and the kernel short of room): use the main ring then. */
struct io_uring_sqe *halo__iopoll_sqe(halo_op *op);

/* Take back op's SQE from the polled ring, whose kernel has not seen it
 * (op->sq_epoch is the ring's): it becomes a NOP whose CQE is ignored, and
 * op loses the kernel reference and FUT_IOPOLL that halo__iopoll_sqe()
 * gave it. sqe is that polled SQE; op must hold another kernel reference
 * already (an SQE on the main ring), so that it stays owned and alive. */
void halo__iopoll_unqueue(halo_op *op, struct io_uring_sqe *sqe);

/* Submit the polled ring's SQEs and make one pass over the device's poll
 * queues: never sleeps. Returns >= 0, or -errno if the ring failed. */
int halo__iopoll_enter(halo_loop *loop);

/* Close the polled ring, if made; after every op on it ended. */
void halo__iopoll_close(halo_loop *loop);

/* The polled ring has SQEs to submit or ops in flight: the tick must not
 * sleep in the main ring, and must enter the polled one. */
static inline bool halo__iopoll_busy(const halo_loop *loop)
{
	const struct halo__iopoll *p = loop->iopoll;

	return p && (p->inflight ||
		     p->ring.sq.sqe_tail != IO_URING_READ_ONCE(*p->ring.sq.khead));
}

/* The device refused polled I/O: new direct ops go to the main ring, and
 * halo_loop_features() stops reporting HALO_FEAT_IOPOLL. */
static inline void halo__iopoll_off(halo_loop *loop)
{
	loop->features &= ~HALO_FEAT_IOPOLL;
}

/* --- timers (timer.c) --- */
void halo__timers_init(halo_loop *loop);
void halo__timers_close(halo_loop *loop);
unsigned halo__timers_expire(halo_loop *loop, uint64_t now);
void halo__timer_cancel(struct halo__timer *t);

/* --- fibers (fiber.c) --- */
struct halo_fiber;
int64_t halo__fiber_wait(halo_loop *loop, halo_fut *f);
void halo__fiber_cancel(halo_fut *f);
void halo__fiber_free(halo_fut *f);
void halo__stacks_close(halo_loop *loop);
/* op's first SQE was prepared inside a fiber: the fiber owns it until its
 * last CQE. */
void halo__fiber_own(struct halo_fiber *fb, halo_op *op);
/* The kernel let go of an owned op (its last CQE was reaped). */
void halo__fiber_op_ended(halo_op *op);

/* --- stall detector (stall.c): each call sits behind
 * if (unlikely(loop->stall)), which is NULL when the detector is off --- */
int halo__stall_init(halo_loop *loop);
void halo__stall_close(halo_loop *loop);
/* Run the ready task t, measured; origin is the function it runs for the
 * user (a posted function), else t->fn. */
void halo__stall_task(halo_loop *loop, halo_task *t, const void *origin);
/* The running task calls the user callback fn now: it is the origin of
 * what follows. */
void halo__stall_callback(halo_loop *loop, const void *fn);
/* The callback that runs now is a wrapper of fn: name fn instead. */
void halo__stall_origin(halo_loop *loop, const void *fn);
/* Run the prepare hook h, measured; returns what h returned. */
int halo__stall_hook(halo_loop *loop, halo_hook *h);
/* A fiber is switched in; returns the time. */
uint64_t halo__stall_slice_in(halo_loop *loop);
/* The fiber of from hands the CPU straight to another fiber. */
void halo__stall_slice_switch(halo_loop *loop, halo_fut *from);
/* Back on the scheduler from the fiber of fiber, switched in at t0. */
void halo__stall_slice_out(halo_loop *loop, halo_fut *fiber, uint64_t t0);

/* --- histograms (hist.c): each call sits behind
 * if (unlikely(loop->hist)), which is NULL when they are off --- */
int halo__hist_init(halo_loop *loop);
void halo__hist_close(halo_loop *loop);
/* Before the SQ is flushed to the kernel: stamp the ops it submits; early
 * is true for a flush of a full SQ in the middle of a tick. */
void halo__hist_submit(halo_loop *loop, bool early);
/* After the tick's io_uring_enter returned. */
void halo__hist_entered(halo_loop *loop);
/* A CQE of op was reaped. */
void halo__hist_cqe(halo_loop *loop, halo_op *op);
/* A timer created at born_ns (0: unknown) with deadline expired at now. */
void halo__hist_timer(halo_loop *loop, uint64_t born_ns, uint64_t deadline,
		      uint64_t now);

/* --- pools (pool.c) --- */
int halo__pools_init(halo_loop *loop);
void halo__pools_close(halo_loop *loop);
int halo__pool_refill(halo_loop *loop, halo_pool *p);
/* Call fn on every slot (live or free) of every slab whose slots are at
 * least min_slot bytes; slabs are zeroed when carved, so never-used slots
 * read as zero. */
void halo__pool_each_slot(halo_loop *loop, size_t min_slot,
			  void (*fn)(void *slot, void *arg), void *arg);

#ifdef HALO_ASAN
#include <sanitizer/asan_interface.h>
#define HALO_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define HALO_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define HALO_POISON(p, n) ((void)(p), (void)(n))
#define HALO_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* Classes: every 16 bytes up to 256, then every 64 bytes up to 2048. */
static inline halo_pool *halo__pool_of(halo_loop *loop, size_t size)
{
	if (size <= 256)
		return &loop->pools.cls[(size + 15) / 16 - 1];
	return &loop->pools.cls[16 + (size - 256 + 63) / 64 - 1];
}

/* The hot path of halo_mem_alloc for 0 < size <= HALO_POOL_MAX. */
static inline void *halo__pool_get(halo_loop *loop, size_t size)
{
	halo_pool *p = halo__pool_of(loop, size);
	void **slot;

	if (unlikely(!p->free) && halo__pool_refill(loop, p) < 0)
		return NULL;
	slot = p->free;
	HALO_UNPOISON(slot, p->slot);
	p->free = *slot;
	return slot;
}

static inline void halo__pool_put(halo_loop *loop, void *ptr, size_t size)
{
	halo_pool *p = halo__pool_of(loop, size);
	void **slot = ptr;

	*slot = p->free;
	p->free = slot;
	HALO_POISON((char *)slot + sizeof(void *), p->slot - sizeof(void *));
}

/* The same as halo__fut_alloc, zeroing only the first zero bytes past the
 * header (the rest is the caller's); inline, for the operation hot path. */
static inline void *halo__fut_alloc_zero(halo_loop *loop, size_t size,
					 size_t zero, uint8_t kind,
					 const char *file, int line)
{
	halo_fut *f;

	if (unlikely(halo__fault(HALO_FAULT_SLOT)))
		return NULL;
	f = halo__pool_get(loop, size);
	if (unlikely(!f))
		return NULL;
	/* Field by field: a memset of the whole header costs more. task.next
	 * is set when queued, result at completion, errmsg with its flag. */
	f->task.fn = halo__run_waiters;
	f->loop = loop;
	f->waiters = NULL;
	f->value = NULL;
	f->file = file;
	f->refs = 1;
	f->urefs = 1;
	f->state = HALO_FUT_PENDING;
	f->flags = 0;
	f->line = line;
	f->kind = kind;
	if (zero > sizeof(*f))
		memset(f + 1, 0, zero - sizeof(*f));
	loop->stats.live_futures++;
	return f;
}

/* Ops have a pool of their own (loop->pools.op), whose slots hold nothing
 * but ops: a free slot keeps what every op of the loop has alike (loop,
 * task.fn, kind, the address half of its tag), written once when the slot
 * is carved (halo__op_pool_refill), and FUT_CONSUMED, which every future has
 * by the time it is freed and which keeps free slots out of the leak
 * report. The free list overwrites only task.next. */
int halo__op_pool_refill(halo_loop *loop);

static inline halo_op *halo__op_slot_get(halo_loop *loop)
{
	halo_pool *p = &loop->pools.op;
	void **slot;

	if (unlikely(!p->free) && halo__op_pool_refill(loop) < 0)
		return NULL;
	slot = p->free;
	HALO_UNPOISON(slot, p->slot);
	p->free = *slot;
	return (halo_op *)slot;
}

/* Free op's slot; its future is consumed and has no reference left. */
static inline void halo__op_slot_put(halo_loop *loop, halo_op *op)
{
	halo_pool *p = &loop->pools.op;
	void **slot = (void **)op;

	assert(op->fut.flags & FUT_CONSUMED);
	op->fut.gen++; /* a late tag for the old life never matches again */
	*slot = p->free;
	p->free = slot;
	HALO_POISON((char *)slot + sizeof(void *), p->slot - sizeof(void *));
	/* A late CQE of the slot's last life reads the tag to find it
	 * stale (reap_range): that read is of live memory. */
	HALO_UNPOISON(&op->fut.tag, sizeof(op->fut.tag));
}

/* A new pending op future; the caller owns one reference. */
static inline halo_op *halo__op_new(halo_loop *loop, const char *file,
				    int line)
{
	/* meta and ts are written by the start calls that use them: zeroing
	 * them for every op would be the costliest stores of the hot path. */
	halo_op *op;

	if (unlikely(halo__fault(HALO_FAULT_SLOT)))
		return NULL;
	op = halo__op_slot_get(loop);
	if (likely(op)) {
		op->fut.waiters = NULL;
		op->fut.value = NULL;
		op->fut.file = file;
		op->fut.refs = 1;
		op->fut.urefs = 1;
		op->fut.state = HALO_FUT_PENDING;
		op->fut.flags = 0;
		op->fut.line = line;
		loop->stats.live_futures++;
		op->on_cqe = NULL;
		op->sqe = NULL;
		op->sq_epoch = 0;
		op->kernel_refs = 0;
		op->aux = 0;
		op->ctx = NULL;
		op->owner = NULL;
	}
	return op;
}

/* An SQE tagged with op (user_data carries the slot and its generation);
 * the op gains a kernel reference. A full SQ is flushed first (counted).
 * Returns NULL only if the ring failed; then the op holds no new reference. */
static inline struct io_uring_sqe *halo__op_sqe(halo_op *op)
{
	halo_loop *loop = op->fut.loop;
	struct io_uring_sqe *sqe = halo_uring_get_sqe(&loop->ring);

	if (unlikely(!sqe)) {
		sqe = halo__get_sqe_slow(loop);
		if (!sqe)
			return NULL;
	}
	sqe->user_data = halo__op_tag(op);
	op->sqe = sqe;
	op->sq_epoch = loop->sq_epoch;
	if (op->kernel_refs++ == 0 && loop->cur_fiber &&
	    !(op->fut.flags & FUT_UNOWNED))
		halo__fiber_own(loop->cur_fiber, op);
	op->fut.refs++;
	loop->stats.inflight++;
	return sqe;
}

/* kernel_refs and aux with one store of an immediate (the compiler would
 * rather load the pair from memory). */
_Static_assert(offsetof(halo_op, aux) == offsetof(halo_op, kernel_refs) + 4,
	       "kernel_refs and aux must be adjacent");
static inline void halo__op_refs_aux(halo_op *op, uint32_t refs, uint32_t aux)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	uint64_t v = (uint64_t)aux << 32 | refs;
#else
	uint64_t v = (uint64_t)refs << 32 | aux;
#endif

	memcpy(&op->kernel_refs, &v, sizeof(v));
}

/* Fill a fresh op (its slot taken from the op pool, its SQE got) as
 * halo__op_new then halo__op_sqe would, each field written once. */
static inline __attribute__((always_inline)) void
halo__op_fill(halo_loop *loop, halo_op *op, struct io_uring_sqe *sqe,
	      const char *file, int line)
{
	op->fut.waiters = NULL;
	op->fut.value = NULL;
	op->fut.file = file;
	op->fut.refs = 2; /* the caller's and the kernel's */
	op->fut.urefs = 1;
	op->fut.state = HALO_FUT_PENDING;
	op->fut.flags = 0;
	op->fut.line = line;
	op->on_cqe = NULL;
	op->sqe = sqe;
	op->sq_epoch = loop->sq_epoch;
	halo__op_refs_aux(op, 1, 0);
	op->ctx = NULL;
	op->owner = NULL;
	sqe->user_data = halo__op_tag(op);
	loop->stats.live_futures++;
	loop->stats.inflight++;
}

/* Set loop->sq_limit: the kernel's SQ head as of now plus the ring's size,
 * or the tail itself while a fiber runs, so that every op a fiber starts
 * takes the slow path that records its owner. The head only moves forward,
 * so an old limit is only too cautious: refreshing it after each enter and
 * on each slow start is enough. */
static inline void halo__sq_limit_update(halo_loop *loop)
{
	const struct io_uring_sq *sq = &loop->ring.sq;

	loop->sq_limit = loop->cur_fiber ? sq->sqe_tail
					 : IO_URING_READ_ONCE(*sq->khead) +
						   sq->ring_entries;
}

/* Fault builds take the slow path, which asks the fault injector once. */
#ifdef HALO_FAULT
#define HALO_FAULT_BUILD 1
#else
#define HALO_FAULT_BUILD 0
#endif

/* The start path when the pool is empty, the SQ full or a fiber runs. */
halo_op *halo__op_start_slow(halo_loop *loop, const char *file, int line,
			     struct io_uring_sqe **sqep);

/* The common case of halo__op_start alone: a free slot, room in the SQ
 * below loop->sq_limit, no fiber to own the op. NULL, with nothing done,
 * when it does not apply: then halo__op_start_slow. */
static inline __attribute__((always_inline)) halo_op *
halo__op_start_fast(halo_loop *loop, const char *file, int line,
		    struct io_uring_sqe **sqep)
{
	halo_pool *p = &loop->pools.op;
	struct io_uring_sq *sq = &loop->ring.sq;
	unsigned tail = sq->sqe_tail;
	struct io_uring_sqe *sqe;
	halo_op *op = p->free;

	/* One compare for room in the SQ and no fiber running (sq_limit). */
	if (unlikely(!op || (int)(tail - loop->sq_limit) >= 0 ||
		     HALO_FAULT_BUILD))
		return NULL;
	HALO_UNPOISON(op, p->slot);
	p->free = *(void **)op;
	sq->sqe_tail = tail + 1;
	sqe = &sq->sqes[tail & sq->ring_mask];
	halo__op_fill(loop, op, sqe, file, line);
	*sqep = sqe;
	return op;
}

/* The whole start path of a one-SQE op: a pending op future (the caller
 * owns one reference) with its SQE tagged, or NULL with nothing started.
 * The common case calls nothing, so that it needs no saved registers. */
static inline __attribute__((always_inline)) halo_op *
halo__op_start(halo_loop *loop, const char *file, int line,
	       struct io_uring_sqe **sqep)
{
	halo_op *op = halo__op_start_fast(loop, file, line, sqep);

	if (unlikely(!op))
		return halo__op_start_slow(loop, file, line, sqep);
	return op;
}

#endif
