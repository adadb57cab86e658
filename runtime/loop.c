/* The loop and its tick:
 *   1. run the ready queue (bounded)   2. prepare hooks
 *   3. ONE io_uring_enter: submit this tick's SQEs, wait for a CQE unless work
 *      is ready, at most until the nearest timer   4. reap   5. expire timers
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define DEFAULT_SQ 256
#define DEFAULT_INFLIGHT 1024
#define DEFAULT_BUDGET 4096
#ifdef HALO_ASAN
#define DEFAULT_STACK (256u * 1024u)
#else
#define DEFAULT_STACK (64u * 1024u)
#endif

uint64_t halo_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t halo_loop_now(halo_loop *loop)
{
	if (!loop->now_valid) {
		loop->now_ns = halo_now_ns();
		loop->now_valid = 1;
	}
	return loop->now_ns;
}

uint64_t halo_loop_event_now(halo_loop *loop)
{
	if (!loop->event_valid) {
		loop->event_ns = halo_now_ns();
		loop->event_valid = 1;
	}
	return loop->event_ns;
}

void halo__loop_error(halo_loop *loop, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(loop->error, sizeof(loop->error), fmt, ap);
	va_end(ap);
	/* A cut explanation hides the advice at its end (what to allow). */
	assert(n >= 0 && (size_t)n < sizeof(loop->error));
	(void)n;
}

/* Set a fixed explanation. msg must be a string literal, so that its size is
 * known here: one that does not fit in loop->error fails the build instead
 * of being cut at run time. */
#define set_error(loop, msg)                                                   \
	do {                                                                   \
		_Static_assert(sizeof(msg) <= sizeof((loop)->error),           \
			       "halo_loop.error is too small for: " msg);      \
		halo__loop_error(loop, "%s", msg);                             \
	} while (0)

const char *halo_loop_error(const halo_loop *loop)
{
	return loop->error;
}

static int read_sysctl(const char *path)
{
	FILE *f = fopen(path, "r");
	int v = -1;

	if (!f)
		return -1;
	if (fscanf(f, "%d", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

/* Say why io_uring_setup failed in words an operator can act on. */
static void explain_setup_error(halo_loop *loop, int err)
{
	int disabled = read_sysctl("/proc/sys/kernel/io_uring_disabled");

	switch (err) {
	case -EPERM:
		if (disabled == 2)
			set_error(loop, "io_uring is disabled by the "
					"kernel.io_uring_disabled sysctl (=2)");
		else if (disabled == 1)
			set_error(loop,
				  "io_uring is restricted by the "
				  "kernel.io_uring_disabled sysctl (=1) and "
				  "this process is not in "
				  "kernel.io_uring_group");
		else
			set_error(loop,
				  "io_uring_setup was refused (EPERM): a "
				  "seccomp profile (a container runtime's "
				  "default) blocks io_uring; allow "
				  "io_uring_setup, io_uring_enter and "
				  "io_uring_register");
		break;
	case -ENOSYS:
		set_error(loop, "io_uring_setup does not exist (ENOSYS): the "
				"kernel lacks CONFIG_IO_URING or a seccomp "
				"filter hides the system call");
		break;
	case -ENOMEM:
		set_error(loop, "no memory for the io_uring rings (ENOMEM): "
				"raise the locked-memory limit (ulimit -l) or "
				"shrink sq_entries/max_inflight");
		break;
	case -EMFILE:
	case -ENFILE:
		set_error(loop, "out of file descriptors for the ring");
		break;
	default:
		halo__loop_error(loop, "io_uring_setup failed: %s",
				 strerror(-err));
	}
}

static unsigned round_pow2(unsigned v)
{
	unsigned p = 1;

	while (p < v)
		p <<= 1;
	return p;
}

/* Try the fastest ring mode first and step down where the kernel refuses
 * (EINVAL): SINGLE_ISSUER|DEFER_TASKRUN (6.1), then COOP_TASKRUN (5.19),
 * then no flags. */
static int setup_ring(halo_loop *loop)
{
	static const unsigned modes[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
		0,
	};
	unsigned cq = round_pow2(loop->opts.max_inflight);
	int r = -EINVAL;

	if (cq < 2 * loop->opts.sq_entries)
		cq = 2 * round_pow2(loop->opts.sq_entries);
	for (unsigned i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		struct io_uring_params p;

		if (i == 0 && (loop->opts.setup_flags &
			       HALO_SETUP_NO_DEFER_TASKRUN))
			continue;
		if (i == 1 && (loop->opts.setup_flags &
			       HALO_SETUP_NO_COOP_TASKRUN))
			continue;
		memset(&p, 0, sizeof(p));
		p.flags = modes[i] | IORING_SETUP_SUBMIT_ALL |
			  IORING_SETUP_CQSIZE;
		p.cq_entries = cq;
		r = -EINVAL;
		if (!(loop->opts.features_off & HALO_FEAT_NO_SQARRAY)) {
			/* 6.6: no SQ index array, one indirection less per
			 * SQE in the kernel; -EINVAL before 6.6. */
			p.flags |= IORING_SETUP_NO_SQARRAY;
			r = halo_uring_init_raw(loop->opts.sq_entries,
						&loop->ring, &p);
			if (r == -EINVAL) {
				memset(&p, 0, sizeof(p));
				p.flags = modes[i] | IORING_SETUP_SUBMIT_ALL |
					  IORING_SETUP_CQSIZE;
				p.cq_entries = cq;
			}
		}
		if (r == -EINVAL)
			r = io_uring_queue_init_params(loop->opts.sq_entries,
						       &loop->ring, &p);
		if (r == -EINVAL && i + 1 < sizeof(modes) / sizeof(modes[0]))
			continue;
		if (r < 0)
			break;
		if (!(p.features & IORING_FEAT_EXT_ARG) ||
		    !(p.features & IORING_FEAT_NODROP)) {
			io_uring_queue_exit(&loop->ring);
			set_error(loop, "the kernel's io_uring lacks "
					"EXT_ARG or NODROP (needs "
					"Linux 5.11 or newer)");
			return -ENOSYS;
		}
		loop->stats.ring_flags = p.flags;
		loop->ring_features = p.features;
		/* Optional: saves an fget/fput per enter where it works. */
		(void)io_uring_register_ring_fd(&loop->ring);
		return 0;
	}
	explain_setup_error(loop, r);
	return r;
}

static const char *const feature_names[] = {
	"recv_bundle", "pbuf_inc", "send_bundle", "send_zc", "cqe_skip",
	"no_sqarray", "min_wait", "fixed_bufs", "iopoll", "msg_ring",
	"huge_bufs",
};

const char *halo_feature_name(unsigned bit)
{
	for (unsigned i = 0; i < sizeof(feature_names) / sizeof(*feature_names);
	     i++)
		if (bit == 1u << i)
			return feature_names[i];
	return NULL;
}

unsigned halo_loop_features(const halo_loop *loop)
{
	return loop->features;
}

/* HALO_FEATURES_OFF="all" or "name,name": features to leave unused. An
 * unknown name is ignored, so that a list written for a newer halo still
 * runs. */
static unsigned features_off_env(void)
{
	const char *s = getenv("HALO_FEATURES_OFF");
	unsigned off = 0;

	if (!s)
		return 0;
	while (*s) {
		size_t n = strcspn(s, ",");

		if (n == 3 && !strncmp(s, "all", 3))
			off |= HALO_FEAT_ALL;
		for (unsigned i = 0;
		     i < sizeof(feature_names) / sizeof(*feature_names); i++)
			if (strlen(feature_names[i]) == n &&
			    !strncmp(s, feature_names[i], n))
				off |= 1u << i;
		s += n;
		if (*s == ',')
			s++;
	}
	return off;
}

/* Transparent huge pages that madvise(MADV_HUGEPAGE) can ask for: the
 * kernel has them and they are not switched off ("never"). */
static bool thp_usable(void)
{
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	char mode[64] = "";
	bool ok;

	if (!f)
		return false;
	ok = fgets(mode, sizeof(mode), f) && !strstr(mode, "[never]");
	fclose(f);
	return ok;
}

/* Features the kernel has, found by the probes; what the user switched off
 * is masked out afterwards, so every user of a feature reads one bit. */
static unsigned probe_features(halo_loop *loop)
{
	struct io_uring_probe *p = io_uring_get_probe_ring(&loop->ring);
	unsigned f = 0;

	if (p && io_uring_opcode_supported(p, HALO_IORING_OP_MSG_RING))
		f |= HALO_FEAT_MSG_RING;
	if (p)
		io_uring_free_probe(p);
	if (loop->ring_features & IORING_FEAT_CQE_SKIP)
		f |= HALO_FEAT_CQE_SKIP;
	if (loop->stats.ring_flags & IORING_SETUP_NO_SQARRAY)
		f |= HALO_FEAT_NO_SQARRAY;
	if (loop->ring_features & IORING_FEAT_MIN_TIMEOUT)
		f |= HALO_FEAT_MIN_WAIT;
	/* Registered buffers are 5.1; updating a sparse table (what
	 * halo_bufs_* uses) came with resource tags, 5.13. */
	if (loop->ring_features & IORING_FEAT_RSRC_TAGS)
		f |= HALO_FEAT_FIXED_BUFS;
	/* IOPOLL rings are 5.1, older than halo's floor: whether they work
	 * depends on the device, learnt from the first direct op (file.c). */
	if (loop->opts.iopoll)
		f |= HALO_FEAT_IOPOLL;
	f |= halo_uring_probe_net(&loop->ring);
	if (thp_usable())
		f |= HALO_FEAT_HUGE_BUFS;
	return f;
}

int halo_loop_init(halo_loop *loop, const halo_loop_opts *opts)
{
	int r;

	memset(loop, 0, sizeof(*loop));
	if (opts)
		loop->opts = *opts;
	if (!loop->opts.sq_entries)
		loop->opts.sq_entries = DEFAULT_SQ;
	if (!loop->opts.max_inflight)
		loop->opts.max_inflight = DEFAULT_INFLIGHT;
	if (!loop->opts.ready_budget)
		loop->opts.ready_budget = DEFAULT_BUDGET;
	if (!loop->opts.fiber_stack_size)
		loop->opts.fiber_stack_size = DEFAULT_STACK;
	if (loop->opts.sq_entries > 32768 || loop->opts.fiber_stack_size < 16384) {
		set_error(loop, "invalid options");
		return -EINVAL;
	}
	/* Known before the ring is set up: some features are setup flags. */
	loop->opts.features_off |= features_off_env();
	if (!loop->opts.min_wait_us && getenv("HALO_MIN_WAIT_US"))
		loop->opts.min_wait_us =
			(unsigned)strtoul(getenv("HALO_MIN_WAIT_US"), NULL, 10);
	loop->owner = pthread_self();
	loop->ready_tail = &loop->ready_head;
	loop->later_tail = &loop->later_head;
	halo__pools_init(loop);
	r = setup_ring(loop);
	if (r < 0) {
		halo__pools_close(loop);
		return r;
	}
	halo__timers_init(loop);
	loop->features = probe_features(loop) & ~loop->opts.features_off;
	if (halo__stall_init(loop) < 0 || halo__hist_init(loop) < 0) {
		halo__stall_close(loop);
		io_uring_queue_exit(&loop->ring);
		halo__pools_close(loop);
		set_error(loop, "no memory for the stall detector or the "
				"histograms");
		return -ENOMEM;
	}
	return 0;
}

void halo__ready_push(halo_loop *loop, halo_task *t)
{
	t->next = NULL;
	*loop->ready_tail = t;
	loop->ready_tail = &t->next;
}

void halo__later_push(halo_loop *loop, halo_task *t)
{
	t->next = NULL;
	*loop->later_tail = t;
	loop->later_tail = &t->next;
}

void halo_post_init(halo_post *p)
{
	memset(p, 0, sizeof(*p));
}

static void run_embedded(halo_task *t)
{
	halo_post *p = (halo_post *)t;

	p->is_queued = 0;
	p->fn(p->arg);
}

int halo_loop_post_embedded(halo_loop *loop, halo_post *p,
			    void (*fn)(void *arg), void *arg)
{
	if (p->is_queued)
		return -EBUSY;
	p->task.fn = run_embedded;
	p->fn = fn;
	p->arg = arg;
	p->is_queued = 1;
	halo__ready_push(loop, &p->task);
	return 0;
}

int halo_post_is_queued(const halo_post *p)
{
	return p->is_queued;
}

/* An allocated post: the embedded one, plus the loop to free it to. */
struct post {
	halo_post post;
	halo_loop *loop;
};

static void run_post(halo_task *t);

/* The user function a ready task runs, for the stall detector: a posted
 * function's own, else the task's. */
static const void *task_origin(halo_task *t)
{
	if (t->fn == run_post || t->fn == run_embedded)
		return (const void *)((halo_post *)t)->fn;
	return (const void *)t->fn;
}

/* Step 1. Yields queued in the last tick go first, then everything ready,
 * up to the budget; what is left waits for the next tick. */
static void run_ready(halo_loop *loop)
{
	unsigned budget = loop->opts.ready_budget;
	halo_task *t;

	if (loop->later_head) {
		*loop->later_tail = loop->ready_head;
		if (!loop->ready_head)
			loop->ready_tail = loop->later_tail;
		loop->ready_head = loop->later_head;
		loop->later_head = NULL;
		loop->later_tail = &loop->later_head;
	}
	loop->in_callback++;
	while (budget-- && (t = loop->ready_head)) {
		loop->ready_head = t->next;
		if (!loop->ready_head)
			loop->ready_tail = &loop->ready_head;
		if (unlikely(loop->stall))
			halo__stall_task(loop, t, task_origin(t));
		else
			t->fn(t);
		loop->now_valid = 0; /* as after an on_cqe (op.c) */
	}
	loop->in_callback--;
}

/* Step 2. */
static int run_hooks(halo_loop *loop)
{
	int busy = 0;
	halo_hook *h;

	/* The next hook is kept in the loop, not here: a hook may remove
	 * (and free) any hook, the one after it included. */
	loop->in_callback++;
	for (h = loop->hooks; h; h = loop->hook_next) {
		loop->hook_next = h->next;
		if (unlikely(loop->stall) ? halo__stall_hook(loop, h) > 0
					  : h->fn(loop, h->arg) > 0)
			busy = 1;
	}
	loop->in_callback--;
	return busy;
}

/* SQEs the kernel has not consumed yet (liburing's io_uring_sq_ready
 * without its SQPOLL branch; a halo ring never uses SQPOLL). */
static inline unsigned sq_unconsumed(const halo_loop *loop)
{
	const struct io_uring_sq *sq = &loop->ring.sq;

	return sq->sqe_tail - IO_URING_READ_ONCE(*sq->khead);
}

/* Ops the main ring's enter can wait for: the polled ring's are counted in
 * stats.inflight too, but only a poll of their own ring finds them. */
static inline uint64_t main_inflight(const halo_loop *loop)
{
	return loop->stats.inflight -
	       (unlikely(loop->iopoll != NULL) ? loop->iopoll->inflight : 0);
}

static bool has_work(const halo_loop *loop)
{
	return loop->ready_head || loop->later_head || loop->stats.inflight ||
	       loop->timers.n || loop->hooks_busy || sq_unconsumed(loop);
}

/* Busy polling: spin (enter without waiting) for busy_poll_ns after the
 * last submission or completion, then sleep in the kernel as usual. */
static bool busy_polling(halo_loop *loop, unsigned to_submit)
{
	uint64_t now = halo_now_ns();

	if (to_submit)
		loop->busy_until_ns = now + loop->opts.busy_poll_ns;
	return now < loop->busy_until_ns;
}

/* Step 3 for the polled ring, when the loop has one: submit its SQEs, make
 * one poll pass and reap what it found. While it has ops in flight the tick
 * must not sleep in the main ring (no interrupt would wake it for them), so
 * it spins: one poll pass per tick, a core busy until the last polled op
 * ended, which is the price IOPOLL asks everywhere (fio --hipri pays it
 * too). Returns 1 while polled ops are in flight (the caller then enters
 * the main ring without waiting, and only for its own work), 0 when there
 * are none, -errno if the ring failed. */
static int iopoll_tick(halo_loop *loop)
{
	int r;

	if (!halo__iopoll_busy(loop))
		return 0;
	r = halo__iopoll_enter(loop);
	if (r < 0)
		return r;
	halo__reap_iopoll(loop);
	return 1;
}

static int tick(halo_loop *loop, bool may_block)
{
	unsigned to_submit;
	int r;

	loop->stats.ticks++;
	loop->woken = 0;
	loop->now_valid = 0;
	if (loop->ready_head || loop->later_head)
		run_ready(loop);
	loop->hooks_busy = loop->hooks ? run_hooks(loop) : 0;

	to_submit = sq_unconsumed(loop);
	if (to_submit || loop->stats.inflight || loop->internal_inflight ||
	    loop->cq_overflowed || loop->timers.n) {
		bool ready = !may_block || loop->stopping || loop->woken ||
			     loop->ready_head || loop->later_head ||
			     loop->hooks_busy;
		uint64_t timeout = UINT64_MAX;
		unsigned wait_nr = 0;
		bool io = to_submit || loop->stats.inflight ||
			  loop->internal_inflight || loop->cq_overflowed;

		if (!ready) {
			wait_nr = 1;
			if (loop->timers.n) {
				uint64_t now = halo_now_ns();
				uint64_t next = halo_timer_next(loop);

				loop->now_ns = now; /* until the enter */
				loop->now_valid = 1;
				timeout = next > now ? next - now : 0;
				if (!timeout)
					wait_nr = 0;
			}
			if (io && wait_nr && loop->opts.busy_poll_ns &&
			    busy_polling(loop, to_submit))
				wait_nr = 0; /* no sleep, no wakeup to pay for */
		}
		if (unlikely(loop->iopoll != NULL) &&
		    (r = iopoll_tick(loop)) != 0) {
			if (r < 0)
				return r;
			wait_nr = 0; /* spin: see iopoll_tick */
			io = to_submit || main_inflight(loop) ||
			     loop->internal_inflight || loop->cq_overflowed;
		}
		/* Only timers and ready work: nothing for the kernel to do. */
		if (io || wait_nr) {
			r = halo__enter(loop, wait_nr, timeout);
			loop->now_valid = 0; /* it may have slept */
			if (r < 0)
				return r;
			if (halo__reap(loop) && loop->opts.busy_poll_ns)
				loop->busy_until_ns =
					halo_now_ns() + loop->opts.busy_poll_ns;
		}
		if (loop->timers.n) {
			halo__timers_expire(loop, halo_loop_now(loop));
		}
	}
	/* What runs between ticks (top-level code) is a phase of its own. */
	loop->now_valid = 0;
	return has_work(loop) ? 1 : 0;
}

int halo_loop_run_once(halo_loop *loop)
{
	return tick(loop, true);
}

int halo_loop_run_nowait(halo_loop *loop)
{
	return tick(loop, false);
}

int halo_loop_run(halo_loop *loop)
{
	int r = 0;

	if (!pthread_equal(loop->owner, pthread_self()))
		return -EPERM;
	if (loop->in_callback || loop->cur_fiber)
		return -EDEADLK;
	while (!loop->stopping) {
		r = halo_loop_run_once(loop);
		if (r <= 0)
			break;
	}
	loop->stopping = 0;
	return r < 0 ? r : 0;
}

void halo_loop_stop(halo_loop *loop)
{
	loop->stopping = 1;
}

void halo_loop_stats(const halo_loop *loop, halo_stats *out)
{
	*out = loop->stats;
}

void halo_loop_prepare_add(halo_loop *loop, halo_hook *hook, halo_hook_fn fn,
			   void *arg)
{
	halo_hook **pp = &loop->hooks;

	hook->fn = fn;
	hook->arg = arg;
	hook->next = NULL;
	hook->prev = NULL;
	while (*pp) {
		hook->prev = *pp;
		pp = &(*pp)->next;
	}
	*pp = hook;
}

void halo_loop_prepare_remove(halo_loop *loop, halo_hook *hook)
{
	if (hook->prev)
		hook->prev->next = hook->next;
	else if (loop->hooks == hook)
		loop->hooks = hook->next;
	else
		return;
	if (loop->hook_next == hook)
		loop->hook_next = hook->next;
	if (hook->next)
		hook->next->prev = hook->prev;
	hook->next = hook->prev = NULL;
}

static void run_post(halo_task *t)
{
	struct post *p = (struct post *)t;
	void (*fn)(void *) = p->post.fn;
	void *arg = p->post.arg;

	halo_mem_free(p->loop, p, sizeof(*p));
	fn(arg);
}

int halo_loop_post(halo_loop *loop, void (*fn)(void *arg), void *arg)
{
	struct post *p = halo_mem_alloc(loop, sizeof(*p));

	if (!p)
		return -ENOMEM;
	p->post.task.fn = run_post;
	p->post.fn = fn;
	p->post.arg = arg;
	p->loop = loop;
	halo__ready_push(loop, &p->post.task);
	return 0;
}

int halo_loop_in_fiber(const halo_loop *loop)
{
	return loop->cur_fiber != NULL;
}

/* Ask the kernel to cancel everything and reap until it has let go of every
 * buffer, so that no operation writes into memory after close returns.
 * Bounded: a request the kernel cannot cancel (a regular file read in an
 * io-wq worker) still finishes on its own within the wait. */
static void drain_kernel(halo_loop *loop)
{
	uint64_t give_up = halo_now_ns() + 10ull * 1000000000ull;

	while ((loop->stats.inflight || loop->internal_inflight) &&
	       halo_now_ns() < give_up) {
		bool polled = loop->iopoll && halo__iopoll_busy(loop);
		struct io_uring_sqe *sqe;

		if (main_inflight(loop)) {
			sqe = halo__loop_sqe_nocqe(loop);
			if (sqe) {
				io_uring_prep_cancel64(sqe, 0,
						       IORING_ASYNC_CANCEL_ANY);
				halo__skip_success(loop, sqe);
			}
		}
		/* Polled ops cannot be cancelled; they end by themselves,
		 * found by polling, so the main ring must not sleep then. */
		if (polled && halo__iopoll_enter(loop) < 0)
			break;
		if ((main_inflight(loop) || loop->internal_inflight) &&
		    halo__enter(loop, polled ? 0 : 1, 100000000ull) < 0)
			break;
		halo__reap(loop);
		if (polled)
			halo__reap_iopoll(loop);
	}
}

int halo_loop_close(halo_loop *loop)
{
	int leaked;

	loop->closing = 1;
	drain_kernel(loop);
	leaked = halo__loop_report_leaks(loop);
	halo__timers_close(loop);
	halo__stacks_close(loop);
	halo__stall_close(loop);
	halo__hist_close(loop);
	halo__iopoll_close(loop);
	io_uring_queue_exit(&loop->ring);
	halo__pools_close(loop);
	return leaked;
}
