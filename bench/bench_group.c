/* Messages between loops of a group (runtime/group.h), against what a
 * program without it would write, in the same process, rounds interleaved:
 * - round trip: one message in flight, loop 0 -> loop 1 -> loop 0;
 * - throughput: loop 0 posts as fast as the pair's bound lets it, loop 1
 *   runs them;
 * over MSG_RING and over the eventfd fallback; the baselines are two plain
 * threads with a mutex-protected bounded queue and an eventfd as the
 * wakeup (rung only when the queue was empty, as the group rings once per
 * batch), and a pipe carrying the messages themselves. Threads are pinned
 * to two CPUs. With more CPUs, an all-to-all case: every loop posts to
 * every other, total messages per second. The CPU count is recorded. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "bench/bench.h"
#include "halo.h"

#define ROUNDS 5
#define QCAP   256

static double secs;
static int cpu_a, cpu_b;

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(double), cmp);
	return v[n / 2];
}

/* --- halo: round trip and throughput --- */

static struct hb {
	uint64_t n, t0, t1, deadline;
	int waiting, stop;
	sem_t done;
} hb;

static void rt_ping(halo_loop *l, void *arg);

static void rt_pong(halo_loop *l, void *arg)
{
	(void)arg;
	hb.n++;
	if ((hb.n & 255) == 0 && bench_now_ns() >= hb.deadline) {
		hb.t1 = bench_now_ns();
		sem_post(&hb.done);
		return;
	}
	halo_group_post(l, 1, rt_ping, NULL);
}

static void rt_ping(halo_loop *l, void *arg)
{
	(void)arg;
	halo_group_post(l, 0, rt_pong, NULL);
}

static int rt_init(halo_group *g, halo_loop *l, unsigned i, void *arg)
{
	(void)g;
	(void)arg;
	if (i == 0) {
		hb.t0 = bench_now_ns();
		hb.deadline = hb.t0 + (uint64_t)(secs * 1e9);
		halo_group_post(l, 1, rt_ping, NULL);
	}
	return 0;
}

static void tp_msg(halo_loop *l, void *arg)
{
	(void)l;
	(void)arg;
	hb.n++;
}

static void tp_end(halo_loop *l, void *arg)
{
	(void)l;
	(void)arg;
	hb.t1 = bench_now_ns();
	sem_post(&hb.done);
}

static void tp_pump(halo_loop *l);

static void tp_room(halo_fut *f, void *arg)
{
	halo_fut_join(f);
	hb.waiting = 0;
	tp_pump(arg);
}

/* The end mark goes after the last message, once there is room (the
 * doorbells this loop rang leave in its next io_uring_enter: spinning here
 * would keep them from going). */
static void tp_finish(halo_fut *f, void *arg)
{
	halo_loop *l = arg;

	if (f)
		halo_fut_join(f);
	if (halo_group_post(l, 1, tp_end, NULL) == -EAGAIN)
		halo_fut_on_done(halo_group_room(l, 1), tp_finish, l);
}

static void tp_pump(halo_loop *l)
{
	for (uint64_t k = 0; !hb.stop; k++) {
		if ((k & 127) == 0 && bench_now_ns() >= hb.deadline) {
			hb.stop = 1;
			tp_finish(NULL, l);
			return;
		}
		if (halo_group_post(l, 1, tp_msg, NULL) == -EAGAIN) {
			hb.waiting = 1;
			halo_fut_on_done(halo_group_room(l, 1), tp_room, l);
			return;
		}
	}
}

static int tp_init(halo_group *g, halo_loop *l, unsigned i, void *arg)
{
	(void)g;
	(void)arg;
	if (i == 0) {
		hb.t0 = bench_now_ns();
		hb.deadline = hb.t0 + (uint64_t)(secs * 1e9);
		tp_pump(l);
	}
	return 0;
}

/* Returns ns per round trip (rt) or messages per second. */
static double halo_run(int rt, int msg_ring)
{
	static int cpus[2];
	halo_group_opts o = {.count = 2,
			     .init = rt ? rt_init : tp_init,
			     .cpus = cpus,
			     .cpus_n = 2};
	halo_group *g;

	cpus[0] = cpu_a;
	cpus[1] = cpu_b;
	memset(&hb, 0, sizeof(hb));
	sem_init(&hb.done, 0, 0);
	o.loop.features_off = msg_ring ? 0 : HALO_FEAT_MSG_RING;
	if (halo_group_start(&g, &o) < 0) {
		fprintf(stderr, "bench_group: group start failed\n");
		exit(1);
	}
	if (halo_group_uses_msg_ring(g) != msg_ring) {
		fprintf(stderr, "bench_group: no MSG_RING here\n");
		exit(1);
	}
	sem_wait(&hb.done);
	if (halo_group_stop(g) != 0)
		exit(1);
	sem_destroy(&hb.done);
	if (rt)
		return (double)(hb.t1 - hb.t0) / (double)hb.n;
	return (double)hb.n / ((double)(hb.t1 - hb.t0) / 1e9);
}

/* --- baseline 1: a mutex-protected bounded queue and an eventfd --- */

struct mq {
	pthread_mutex_t mu;
	pthread_cond_t room;
	uint64_t q[QCAP];
	unsigned head, n;
	int efd;
};

static void mq_init(struct mq *q)
{
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->room, NULL);
	q->head = q->n = 0;
	q->efd = eventfd(0, EFD_CLOEXEC);
}

static void mq_fini(struct mq *q)
{
	close(q->efd);
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->room);
}

/* Wake the consumer only when the queue was empty: one eventfd write per
 * batch, like the group's doorbell. */
static void mq_push(struct mq *q, uint64_t v)
{
	uint64_t one = 1;
	int was_empty;

	pthread_mutex_lock(&q->mu);
	while (q->n == QCAP)
		pthread_cond_wait(&q->room, &q->mu);
	q->q[(q->head + q->n) % QCAP] = v;
	was_empty = q->n++ == 0;
	pthread_mutex_unlock(&q->mu);
	if (was_empty && write(q->efd, &one, sizeof(one)) < 0)
		exit(1);
}

/* Take everything queued into out (blocks in read until there is some). */
static unsigned mq_pop(struct mq *q, uint64_t *out)
{
	uint64_t cnt;
	unsigned n = 0;

	for (;;) {
		pthread_mutex_lock(&q->mu);
		while (q->n) {
			out[n++] = q->q[q->head];
			q->head = (q->head + 1) % QCAP;
			q->n--;
		}
		pthread_cond_signal(&q->room);
		pthread_mutex_unlock(&q->mu);
		if (n)
			return n;
		if (read(q->efd, &cnt, sizeof(cnt)) < 0)
			exit(1);
	}
}

/* --- baseline 2: a pipe carrying the messages --- */

struct chan {
	int kind; /* 0: mutex queue + eventfd, 1: pipe */
	struct mq mq;
	int fd[2];
};

static void chan_init(struct chan *c, int kind)
{
	c->kind = kind;
	if (kind == 0)
		mq_init(&c->mq);
	else if (pipe(c->fd) < 0)
		exit(1);
}

static void chan_fini(struct chan *c)
{
	if (c->kind == 0) {
		mq_fini(&c->mq);
	} else {
		close(c->fd[0]);
		close(c->fd[1]);
	}
}

static void chan_send(struct chan *c, uint64_t v)
{
	if (c->kind == 0)
		mq_push(&c->mq, v);
	else if (write(c->fd[1], &v, sizeof(v)) != sizeof(v))
		exit(1);
}

static unsigned chan_recv(struct chan *c, uint64_t *out)
{
	ssize_t r;

	if (c->kind == 0)
		return mq_pop(&c->mq, out);
	r = read(c->fd[0], out, QCAP * sizeof(uint64_t));
	if (r <= 0)
		exit(1);
	return (unsigned)(r / (ssize_t)sizeof(uint64_t));
}

static struct th {
	struct chan to1, to0;
	int rt;
} th;

/* The far side: echoes (round trip) or counts until the end mark. */
static void *far_side(void *arg)
{
	uint64_t buf[QCAP];

	(void)arg;
	bench_pin(cpu_b);
	for (;;) {
		unsigned n = chan_recv(&th.to1, buf);

		for (unsigned i = 0; i < n; i++) {
			if (buf[i] == UINT64_MAX) {
				chan_send(&th.to0, UINT64_MAX);
				return NULL;
			}
			if (th.rt)
				chan_send(&th.to0, buf[i]);
		}
	}
}

static double thread_run(int rt, int kind)
{
	uint64_t buf[QCAP], n = 0, t0, deadline;
	pthread_t t;
	double r;

	th.rt = rt;
	chan_init(&th.to1, kind);
	chan_init(&th.to0, kind);
	pthread_create(&t, NULL, far_side, NULL);
	bench_pin(cpu_a);
	t0 = bench_now_ns();
	deadline = t0 + (uint64_t)(secs * 1e9);
	if (rt) {
		do {
			for (int k = 0; k < 256; k++, n++) {
				chan_send(&th.to1, n);
				chan_recv(&th.to0, buf);
			}
		} while (bench_now_ns() < deadline);
		r = (double)(bench_now_ns() - t0) / (double)n;
		chan_send(&th.to1, UINT64_MAX);
		chan_recv(&th.to0, buf);
	} else {
		do {
			for (int k = 0; k < 1024; k++, n++)
				chan_send(&th.to1, n);
		} while (bench_now_ns() < deadline);
		chan_send(&th.to1, UINT64_MAX);
		for (;;) { /* the end mark comes back once all ran */
			unsigned m = chan_recv(&th.to0, buf);

			if (m && buf[m - 1] == UINT64_MAX)
				break;
		}
		r = (double)n / ((double)(bench_now_ns() - t0) / 1e9);
	}
	pthread_join(t, NULL);
	chan_fini(&th.to1);
	chan_fini(&th.to0);
	return r;
}

/* --- all to all, one loop per CPU --- */

static struct a2a {
	uint64_t deadline;
	unsigned n;
	struct {
		_Alignas(64) uint64_t v; /* per loop: no shared counter */
	} ran[256];
	_Atomic unsigned ended;
	sem_t done;
	uint64_t t0, t1;
} aa;

static void aa_msg(halo_loop *l, void *arg)
{
	(void)arg;
	aa.ran[halo_group_index(l)].v++;
}

static void aa_pump(halo_loop *l);

static void aa_room(halo_fut *f, void *arg)
{
	halo_fut_join(f);
	aa_pump(arg);
}

static void aa_pump(halo_loop *l)
{
	unsigned me = (unsigned)halo_group_index(l);

	for (uint64_t k = 0;; k++) {
		unsigned to = (unsigned)((me + 1 + k % (aa.n - 1)) % aa.n);

		if ((k & 127) == 0 && bench_now_ns() >= aa.deadline) {
			if (++aa.ended == aa.n) {
				aa.t1 = bench_now_ns();
				sem_post(&aa.done);
			}
			return;
		}
		if (halo_group_post(l, to, aa_msg, NULL) == -EAGAIN) {
			halo_fut_on_done(halo_group_room(l, to), aa_room, l);
			return;
		}
	}
}

static int aa_init(halo_group *g, halo_loop *l, unsigned i, void *arg)
{
	(void)g;
	(void)i;
	(void)arg;
	aa_pump(l);
	return 0;
}

static double all_to_all(unsigned n)
{
	halo_group_opts o = {.count = n, .init = aa_init};
	halo_group *g;
	uint64_t ran = 0;

	memset(&aa, 0, sizeof(aa));
	sem_init(&aa.done, 0, 0);
	aa.n = n;
	aa.t0 = bench_now_ns();
	aa.deadline = aa.t0 + (uint64_t)(secs * 1e9);
	if (halo_group_start(&g, &o) < 0 || (sem_wait(&aa.done), 0) ||
	    halo_group_stop(g) != 0)
		exit(1);
	sem_destroy(&aa.done);
	for (unsigned i = 0; i < n; i++)
		ran += aa.ran[i].v;
	return (double)ran / ((double)(aa.t1 - aa.t0) / 1e9);
}

int main(void)
{
	cpu_set_t set;
	int ncpu = 0, has_msg_ring;
	halo_loop probe;

	secs = 0.5 * bench_scale();
	sched_getaffinity(0, sizeof(set), &set);
	ncpu = CPU_COUNT(&set);
	cpu_a = -1;
	for (int c = 0; c < CPU_SETSIZE; c++) {
		if (!CPU_ISSET(c, &set))
			continue;
		if (cpu_a < 0)
			cpu_a = c;
		else if (cpu_b <= cpu_a) /* the second usable CPU */
			cpu_b = c;
	}
	if (ncpu < 2)
		cpu_b = cpu_a;
	if (halo_loop_init(&probe, NULL) < 0)
		return 1;
	has_msg_ring = !!(halo_loop_features(&probe) & HALO_FEAT_MSG_RING);
	halo_loop_close(&probe);
	bench_emit("group", "machine", "cpus", ncpu, "cpus", NULL, 0, 1);

	for (int rt = 1; rt >= 0; rt--) {
		double mr[ROUNDS], ev[ROUNDS], mq[ROUNDS], pp[ROUNDS];
		const char *what = rt ? "round trip" : "throughput";
		const char *metric = rt ? "ns_per_round_trip" : "msgs_per_s";
		const char *unit = rt ? "ns" : "msg/s";

		bench_progress("group",
			       "%s: %d interleaved rounds of %.1fs, "
			       "CPUs %d and %d of %d",
			       what, ROUNDS, secs, cpu_a, cpu_b, ncpu);
		for (int r = 0; r < ROUNDS; r++) {
			mr[r] = has_msg_ring ? halo_run(rt, 1) : 0;
			ev[r] = halo_run(rt, 0);
			mq[r] = thread_run(rt, 0);
			pp[r] = thread_run(rt, 1);
		}
		double m_mq = median(mq, ROUNDS), m_pp = median(pp, ROUNDS);
		double m_ev = median(ev, ROUNDS);
		const char *c_mr = rt ? "rtt_msg_ring" : "tput_msg_ring";
		const char *c_ev = rt ? "rtt_eventfd" : "tput_eventfd";
		const char *c_mq = rt ? "rtt_mutex_queue" : "tput_mutex_queue";
		const char *c_pp = rt ? "rtt_pipe" : "tput_pipe";

		if (has_msg_ring) {
			double m_mr = median(mr, ROUNDS);

			bench_emit("group", c_mr, metric, m_mr, unit,
				   "mutex_queue_eventfd", m_mq, !rt);
			bench_emit("group", c_mr, metric, m_mr, unit, "pipe",
				   m_pp, !rt);
		}
		bench_emit("group", c_ev, metric, m_ev, unit,
			   "mutex_queue_eventfd", m_mq, !rt);
		bench_emit("group", c_mq, metric, m_mq, unit, NULL, 0, !rt);
		bench_emit("group", c_pp, metric, m_pp, unit, NULL, 0, !rt);
	}
	if (ncpu > 2 && ncpu <= 256) {
		double v[3];
		char name[32];

		for (int r = 0; r < 3; r++)
			v[r] = all_to_all((unsigned)ncpu);
		snprintf(name, sizeof(name), "all_to_all_%d", ncpu);
		bench_emit("group", name, "msgs_per_s", median(v, 3), "msg/s",
			   NULL, 0, 1);
	}
	return 0;
}
