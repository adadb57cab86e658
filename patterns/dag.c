/* Dependency DAGs. The graph is checked once into arrays (dependencies and
 * dependents of every node, a topological order); a run then touches only
 * embedded waiters and those arrays, so after the first run of a DAG a
 * node costs no allocation beyond the future its start function makes.
 *
 * Every entry from the loop (a node's future, a timer, a permit granted by
 * a shared limiter, a cancel) raises d->busy while it changes state, and
 * the last one out starts what became ready: a start function that fails at
 * once, or a limiter that grants a permit from inside our own release,
 * never re-enters the scheduler halfway through a change. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dag.h"

#include "../runtime/loop.h"
#include "../runtime/pool.h"
#include "../runtime/timer.h"

#define NONE UINT32_MAX
#define MS   1000000ull

enum { STOP_NONE, STOP_FAIL_FAST, STOP_CANCEL, STOP_TIMEOUT };

struct dnode {
	struct halo_dag *d;
	halo_dag_fn fn;
	void *arg;
	const char *deps;
	uint64_t timeout_ns;
	const halo_retry_policy *retry;
	halo_backoff *bo;	 /* from the first retry on */
	uint32_t dep_off, dep_n; /* into d->deps and d->depf */
	uint32_t out_off, out_n; /* into d->outs */
	uint32_t next_ready;
	halo_fut *f;	 /* the current or last attempt */
	halo_fut *timer; /* the attempt's timeout, or the retry's backoff */
	halo_waiter w, tw;
	uint64_t attempt_ns;
	bool timed_out, backing_off;
};

struct edge {
	uint32_t node, dep;
};

struct halo_dag {
	halo_loop *loop;
	halo_dag_opts o;
	struct dnode *nodes;
	halo_dag_node_report *reps;
	size_t n, nodes_cap, reps_cap;
	struct edge *edges;
	size_t edges_n, edges_cap;

	/* The checked graph, one block: E = every dependency. */
	bool checked;
	void *graph;
	size_t graph_size;
	halo_fut **depf;   /* E: the futures handed to a start function */
	uint64_t *dist;	   /* n: critical path lengths */
	uint32_t *link;	   /* n: critical path links */
	uint32_t *pending; /* n: dependencies not OK yet; dense, since a
			      node's end touches its dependents' at random */
	uint32_t *deps;	   /* E: node i's dependencies at dep_off */
	uint32_t *outs;	   /* E: node i's dependents at out_off */
	uint32_t *order;   /* n: a topological order */
	uint32_t *stack;   /* n: skip worklist; cycle search */

	/* The run. */
	halo_fut *out;
	halo_fut *deadline;
	halo_waiter dw;
	halo_adaptive_waiter aw;
	uint32_t ready_head, ready_tail;
	size_t done_n, held_n, granted;
	int busy, stop;
	bool running;
	halo_dag_report rep;
	char error[256];
	char msg[256];
};

/* --- building --- */

static int grow(halo_loop *loop, void **p, size_t *cap, size_t elem,
		size_t need)
{
	size_t ncap = *cap ? *cap : 16;
	void *np;

	if (need <= *cap)
		return 0;
	while (ncap < need)
		ncap *= 2;
	np = halo_mem_zalloc(loop, ncap * elem);
	if (!np)
		return -ENOMEM;
	if (*p) {
		memcpy(np, *p, *cap * elem);
		halo_mem_free(loop, *p, *cap * elem);
	}
	*p = np;
	*cap = ncap;
	return 0;
}

static void drop_graph(struct halo_dag *d)
{
	if (d->graph)
		halo_mem_free(d->loop, d->graph, d->graph_size);
	d->graph = NULL;
	d->checked = false;
}

halo_dag *halo_dag_new(halo_loop *loop, const halo_dag_opts *opts)
{
	struct halo_dag *d = halo_mem_zalloc(loop, sizeof(*d));

	if (!d)
		return NULL;
	d->loop = loop;
	if (opts)
		d->o = *opts;
	if (!d->o.max_nodes)
		d->o.max_nodes = 65536;
	if (!d->o.max_edges)
		d->o.max_edges = 16 * d->o.max_nodes;
	if (d->o.max_nodes >= NONE)
		d->o.max_nodes = NONE - 1;
	if (d->o.max_edges >= NONE)
		d->o.max_edges = NONE - 1;
	d->rep.failed = SIZE_MAX;
	return d;
}

static int add_one(struct halo_dag *d, const halo_dag_node *nd)
{
	struct dnode *n;

	if (!nd->name || !nd->fn)
		return -EINVAL;
	if (d->n >= d->o.max_nodes)
		return -ENOSPC;
	if (grow(d->loop, (void **)&d->nodes, &d->nodes_cap, sizeof(*d->nodes),
		 d->n + 1) ||
	    grow(d->loop, (void **)&d->reps, &d->reps_cap, sizeof(*d->reps),
		 d->n + 1))
		return -ENOMEM;
	n = &d->nodes[d->n];
	memset(n, 0, sizeof(*n));
	n->fn = nd->fn;
	n->arg = nd->arg;
	n->deps = nd->deps;
	n->timeout_ns = nd->timeout_ns;
	n->retry = nd->retry;
	if (!n->timeout_ns && nd->retry)
		n->timeout_ns = nd->retry->attempt_timeout_ns;
	memset(&d->reps[d->n], 0, sizeof(d->reps[0]));
	d->reps[d->n].name = nd->name;
	d->rep.nodes = d->reps;
	d->rep.nodes_n = ++d->n;
	return (int)(d->n - 1);
}

int halo_dag_add(halo_dag *d, const halo_dag_node *node)
{
	if (d->running)
		return -EBUSY;
	drop_graph(d);
	return add_one(d, node);
}

int halo_dag_add_table(halo_dag *d, const halo_dag_node *nodes, size_t n)
{
	size_t first = d->n;

	if (d->running)
		return -EBUSY;
	if (d->n + n > d->o.max_nodes)
		return -ENOSPC;
	drop_graph(d);
	for (size_t i = 0; i < n; i++) {
		int r = add_one(d, &nodes[i]);

		if (r < 0) {
			d->n = d->rep.nodes_n = first;
			return r;
		}
	}
	return (int)first;
}

int halo_dag_depend(halo_dag *d, size_t node, size_t dep)
{
	if (d->running)
		return -EBUSY;
	if (node >= d->n || dep >= d->n)
		return -EINVAL;
	if (d->edges_n >= d->o.max_edges)
		return -ENOSPC;
	if (grow(d->loop, (void **)&d->edges, &d->edges_cap, sizeof(*d->edges),
		 d->edges_n + 1))
		return -ENOMEM;
	drop_graph(d);
	d->edges[d->edges_n++] = (struct edge){(uint32_t)node, (uint32_t)dep};
	return 0;
}

/* --- checking: names, edges, cycles --- */

static uint64_t hash(const char *s, size_t len)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return h;
}

struct names {
	uint32_t *slot;
	size_t mask;
};

static int lookup(const struct halo_dag *d, const struct names *nm,
		  const char *s, size_t len)
{
	for (size_t h = hash(s, len) & nm->mask;; h = (h + 1) & nm->mask) {
		uint32_t i = nm->slot[h];

		if (i == NONE)
			return -1;
		if (!strncmp(d->reps[i].name, s, len) && !d->reps[i].name[len])
			return (int)i;
	}
}

static int index_names(struct halo_dag *d, struct names *nm)
{
	for (uint32_t i = 0; i < d->n; i++) {
		const char *s = d->reps[i].name;
		size_t len = strlen(s), h = hash(s, len) & nm->mask;

		if (lookup(d, nm, s, len) >= 0) {
			snprintf(d->error, sizeof(d->error),
				 "two nodes are called '%s'", s);
			return -EEXIST;
		}
		while (nm->slot[h] != NONE)
			h = (h + 1) & nm->mask;
		nm->slot[h] = i;
	}
	return 0;
}

static bool is_sep(char c)
{
	return c == ',' || c == ' ' || c == '\t' || c == '\n';
}

/* Resolve node i's named dependencies: count them, or write them to out. */
static int resolve(struct halo_dag *d, const struct names *nm, uint32_t i,
		   uint32_t *out, uint32_t *count)
{
	const char *s = d->nodes[i].deps;

	*count = 0;
	while (s && *s) {
		size_t len = 0;
		int j;

		while (is_sep(*s))
			s++;
		while (s[len] && !is_sep(s[len]))
			len++;
		if (!len)
			break;
		j = lookup(d, nm, s, len);
		if (j < 0) {
			snprintf(d->error, sizeof(d->error),
				 "node '%s' depends on unknown '%.*s'",
				 d->reps[i].name, (int)len, s);
			return -ENOENT;
		}
		if (out)
			out[*count] = (uint32_t)j;
		(*count)++;
		s += len;
	}
	return 0;
}

static int alloc_graph(struct halo_dag *d, size_t e)
{
	size_t n = d->n;
	char *p;

	d->graph_size = e * sizeof(halo_fut *) + n * sizeof(uint64_t) +
			(2 * e + 4 * n) * sizeof(uint32_t);
	d->graph = halo_mem_zalloc(d->loop, d->graph_size);
	if (!d->graph)
		return -ENOMEM;
	p = d->graph;
	d->depf = (halo_fut **)p;
	p += e * sizeof(halo_fut *);
	d->dist = (uint64_t *)p;
	p += n * sizeof(uint64_t);
	d->deps = (uint32_t *)p;
	d->outs = d->deps + e;
	d->order = d->outs + e;
	d->stack = d->order + n;
	d->link = d->stack + n;
	d->pending = d->link + n;
	return 0;
}

/* Fill the dependency lists (named ones first, then halo_dag_depend()'s)
 * and the dependent lists. */
static int connect_edges(struct halo_dag *d, const struct names *nm)
{
	size_t e = 0;
	uint32_t cnt;
	int r;

	for (uint32_t i = 0; i < d->n; i++) {
		r = resolve(d, nm, i, NULL, &cnt);
		if (r)
			return r;
		d->nodes[i].dep_n = cnt;
		d->nodes[i].out_n = 0;
		e += cnt;
	}
	for (size_t k = 0; k < d->edges_n; k++)
		d->nodes[d->edges[k].node].dep_n++;
	e += d->edges_n;
	if (e > d->o.max_edges) {
		snprintf(d->error, sizeof(d->error),
			 "%zu dependencies, more than max_edges (%zu)", e,
			 d->o.max_edges);
		return -ENOSPC;
	}
	if (alloc_graph(d, e))
		return -ENOMEM;
	for (uint32_t i = 0, off = 0; i < d->n; i++) {
		struct dnode *n = &d->nodes[i];

		n->dep_off = off;
		off += n->dep_n;
		resolve(d, nm, i, &d->deps[n->dep_off], &d->pending[i]);
	}
	for (size_t k = 0; k < d->edges_n; k++) {
		struct dnode *n = &d->nodes[d->edges[k].node];

		d->deps[n->dep_off + d->pending[d->edges[k].node]++] =
		    d->edges[k].dep;
	}
	for (uint32_t i = 0; i < d->n; i++)
		for (uint32_t k = 0; k < d->nodes[i].dep_n; k++)
			d->nodes[d->deps[d->nodes[i].dep_off + k]].out_n++;
	for (uint32_t i = 0, off = 0; i < d->n; i++) {
		d->nodes[i].out_off = off;
		off += d->nodes[i].out_n;
		d->nodes[i].out_n = 0;
	}
	for (uint32_t i = 0; i < d->n; i++) {
		struct dnode *n = &d->nodes[i];

		for (uint32_t k = 0; k < n->dep_n; k++) {
			struct dnode *dep = &d->nodes[d->deps[n->dep_off + k]];

			d->outs[dep->out_off + dep->out_n++] = i;
		}
	}
	return 0;
}

/* Name one cycle among the nodes Kahn's algorithm could not order: each
 * of them still waits on one of them, so walking "depends on" from any of
 * them comes back to a node already seen. */
static void name_cycle(struct halo_dag *d, size_t ordered)
{
	uint32_t *walk = d->order + ordered, *seen = d->stack;
	size_t len = 0, k, at;
	uint32_t v = NONE;
	int w;

	for (uint32_t i = 0; i < d->n; i++) {
		seen[i] = NONE;
		if (d->pending[i] && v == NONE)
			v = i;
	}
	while (seen[v] == NONE) {
		struct dnode *n = &d->nodes[v];

		seen[v] = (uint32_t)len;
		walk[len++] = v;
		for (k = 0; k < n->dep_n; k++)
			if (d->pending[d->deps[n->dep_off + k]])
				break;
		v = d->deps[n->dep_off + k];
	}
	/* walk[seen[v]] needs walk[+1] ... needs walk[len-1] needs v: print
	 * with arrows from dependency to dependent. */
	w = snprintf(d->error, sizeof(d->error), "cycle: %s", d->reps[v].name);
	for (at = len;
	     at-- > seen[v] && w >= 0 && (size_t)w < sizeof(d->error);)
		w += snprintf(d->error + w, sizeof(d->error) - (size_t)w,
			      " -> %s", d->reps[walk[at]].name);
}

static int order(struct halo_dag *d)
{
	size_t head = 0, tail = 0;

	for (uint32_t i = 0; i < d->n; i++) {
		d->pending[i] = d->nodes[i].dep_n;
		if (!d->pending[i])
			d->order[tail++] = i;
	}
	while (head < tail) {
		struct dnode *n = &d->nodes[d->order[head++]];

		for (uint32_t k = 0; k < n->out_n; k++) {
			uint32_t j = d->outs[n->out_off + k];

			if (!--d->pending[j])
				d->order[tail++] = j;
		}
	}
	if (tail == d->n)
		return 0;
	name_cycle(d, tail);
	return -ELOOP;
}

int halo_dag_check(halo_dag *d)
{
	struct names nm;
	size_t size;
	int r;

	if (d->checked)
		return 0;
	if (d->running)
		return -EBUSY;
	d->error[0] = 0;
	for (nm.mask = 15; nm.mask < 2 * d->n; nm.mask = nm.mask * 2 + 1)
		;
	size = (nm.mask + 1) * sizeof(uint32_t);
	nm.slot = halo_mem_alloc(d->loop, size);
	if (!nm.slot)
		return -ENOMEM;
	memset(nm.slot, 0xff, size);
	r = index_names(d, &nm);
	if (!r)
		r = connect_edges(d, &nm);
	if (!r)
		r = order(d);
	halo_mem_free(d->loop, nm.slot, size);
	if (r) {
		drop_graph(d);
		return r;
	}
	d->checked = true;
	return 0;
}

const char *halo_dag_error(const halo_dag *d)
{
	return d->error;
}

/* --- running --- */

static void pump(struct halo_dag *d);

static void enter(struct halo_dag *d)
{
	d->busy++;
}

static void leave(struct halo_dag *d)
{
	if (!--d->busy)
		pump(d);
}

static void log_event(struct halo_dag *d, size_t i)
{
	const halo_dag_node_report *r = &d->reps[i];
	uint64_t t = halo_now_ns() - d->rep.start_ns;

	fprintf(d->o.log, "halo dag: %8.3f ms %s %s", (double)t / 1e6, r->name,
		halo_dag_state_name(r->state));
	if (r->state == HALO_DAG_RUNNING && r->attempts > 1)
		fprintf(d->o.log, " (attempt %u)", r->attempts);
	if (r->err)
		fprintf(d->o.log, " %d (%s)", r->err, strerror(-r->err));
	if (r->msg)
		fprintf(d->o.log, ": %s", r->msg);
	if (r->cause)
		fprintf(d->o.log, " ('%s' failed)", r->cause);
	fputc('\n', d->o.log);
}

static void event(struct halo_dag *d, size_t i)
{
	if (d->o.log)
		log_event(d, i);
	if (d->o.on_event)
		d->o.on_event(d, i, &d->reps[i], d->o.event_arg);
}

static void push_ready(struct halo_dag *d, uint32_t i)
{
	d->nodes[i].next_ready = NONE;
	if (d->ready_head == NONE)
		d->ready_head = i;
	else
		d->nodes[d->ready_tail].next_ready = i;
	d->ready_tail = i;
}

static uint32_t pop_ready(struct halo_dag *d)
{
	uint32_t i = d->ready_head;

	d->ready_head = d->nodes[i].next_ready;
	return i;
}

static void on_grant(halo_adaptive_waiter *w)
{
	struct halo_dag *d = w->arg;

	enter(d);
	d->granted++;
	leave(d);
}

static bool take_permit(struct halo_dag *d)
{
	if (!d->granted && d->o.limiter && !d->aw.queued &&
	    !halo_adaptive_try_acquire(d->o.limiter))
		halo_adaptive_wait(d->o.limiter, &d->aw); /* may grant now */
	if (d->granted) {
		d->granted--;
		d->held_n++;
		return true;
	}
	if (d->o.limiter) {
		if (d->aw.queued)
			return false;
		d->held_n++; /* taken by try_acquire above */
		return true;
	}
	if (d->o.concurrency && d->held_n >= d->o.concurrency)
		return false;
	d->held_n++;
	return true;
}

static void put_permit(struct halo_dag *d)
{
	d->held_n--;
	if (d->o.limiter)
		halo_adaptive_release(d->o.limiter);
}

static void sample(struct halo_dag *d, struct dnode *n,
		   halo_adaptive_outcome oc)
{
	if (d->o.limiter)
		halo_adaptive_sample(d->o.limiter,
				     halo_now_ns() - n->attempt_ns, oc);
}

static void stop(struct halo_dag *d, int why);

/* Mark every node that waits, through any path, on node i as skipped. */
static void skip_dependents(struct halo_dag *d, uint32_t i)
{
	size_t sp = 0;

	d->stack[sp++] = i;
	while (sp) {
		struct dnode *n = &d->nodes[d->stack[--sp]];

		for (uint32_t k = 0; k < n->out_n; k++) {
			uint32_t j = d->outs[n->out_off + k];
			halo_dag_node_report *r = &d->reps[j];

			if (r->state != HALO_DAG_WAITING)
				continue;
			r->state = HALO_DAG_SKIPPED;
			r->cause = d->reps[i].name;
			d->done_n++;
			event(d, j);
			d->stack[sp++] = j;
		}
	}
}

static void node_end(struct halo_dag *d, uint32_t i, halo_dag_state state,
		     int err)
{
	struct dnode *n = &d->nodes[i];
	halo_dag_node_report *r = &d->reps[i];

	r->state = state;
	r->err = err;
	r->end_ns = halo_now_ns();
	r->result = err;
	if (n->f) {
		const char *m;

		r->result = halo_fut_result(n->f);
		if (state == HALO_DAG_OK)
			r->value = halo_fut_value(n->f);
		else if ((m = halo_fut_error_msg(n->f)))
			r->msg = halo_mem_strdup(d->loop, m);
	}
	d->done_n++;
	event(d, i);
	/* After the event: a shared limiter may hand the permit to another
	 * run at once, and observers should see this node end first. */
	put_permit(d);
	if (state == HALO_DAG_OK) {
		for (uint32_t k = 0; k < n->out_n; k++) {
			uint32_t j = d->outs[n->out_off + k];

			if (!--d->pending[j] && !d->stop &&
			    d->reps[j].state == HALO_DAG_WAITING)
				push_ready(d, j);
		}
		return;
	}
	if (state != HALO_DAG_FAILED)
		return;
	if (d->rep.failed == SIZE_MAX)
		d->rep.failed = i;
	skip_dependents(d, i);
	if (d->o.flags & HALO_DAG_FAIL_FAST)
		stop(d, STOP_FAIL_FAST);
}

static void attempt(struct halo_dag *d, uint32_t i);

/* Whether the node's policy wants another attempt after err. */
static bool may_retry(const struct halo_dag *d, uint32_t i, int err)
{
	const struct dnode *n = &d->nodes[i];
	const halo_retry_policy *p = n->retry;
	unsigned most = p && p->max_attempts ? p->max_attempts : 3;

	if (!p || d->stop || d->reps[i].attempts >= most)
		return false;
	if (p->retry_if)
		return p->retry_if(err, n->f ? halo_fut_error_msg(n->f) : NULL,
				   p->retry_if_arg);
	return err != -ECANCELED;
}

/* Back off as the policy says, then attempt again; a delay that would end
 * past the policy's timeout ends the node with -ETIMEDOUT instead. The
 * backoff state is allocated at a node's first retry ever (a failure
 * path) and kept for its later runs. */
static void retry_later(struct halo_dag *d, uint32_t i)
{
	struct dnode *n = &d->nodes[i];
	const halo_dag_node_report *r = &d->reps[i];
	uint64_t delay = MS, now = halo_now_ns();
	bool fresh = !n->bo;

	if (fresh)
		n->bo = halo_mem_alloc(d->loop, sizeof(*n->bo));
	if (n->bo) {
		if (fresh || r->attempts == 1)
			halo_backoff_init(n->bo, n->retry);
		delay = halo_backoff_next(n->bo);
	}
	if (n->retry->timeout_ns &&
	    now + delay >= r->start_ns + n->retry->timeout_ns) {
		node_end(d, i, HALO_DAG_FAILED, -ETIMEDOUT);
		return;
	}
	n->timer = halo_timer_after(d->loop, delay);
	if (!n->timer) {
		attempt(d, i); /* no timer memory: retry without a pause */
		return;
	}
	n->backing_off = true;
	halo_fut_add_waiter(n->timer, &n->tw);
}

static void drop_timer(struct dnode *n)
{
	if (!n->timer)
		return;
	halo_fut_remove_waiter(n->timer, &n->tw);
	halo_fut_cancel(n->timer);
	halo_fut_release(n->timer);
	n->timer = NULL;
}

static int stop_err(const struct halo_dag *d)
{
	return d->stop == STOP_TIMEOUT ? -ETIMEDOUT : -ECANCELED;
}

/* An attempt is done: OK ends the node; a timeout or an error retries
 * while attempts remain and the run goes on; a cancel we did not ask for
 * is a failure, one we asked for (stop) a cancellation. */
static void on_attempt(halo_fut *f, void *arg)
{
	struct dnode *n = arg;
	struct halo_dag *d = n->d;
	uint32_t i = (uint32_t)(n - d->nodes);
	halo_fut_state st = halo_fut_status(f);
	int err = halo_fut_error(f);

	enter(d);
	drop_timer(n);
	if (st == HALO_FUT_OK) {
		sample(d, n, HALO_ADAPTIVE_OK);
		node_end(d, i, HALO_DAG_OK, 0);
	} else if (n->timed_out || st == HALO_FUT_ERROR) {
		if (n->timed_out)
			err = -ETIMEDOUT;
		sample(d, n, HALO_ADAPTIVE_DROPPED);
		if (may_retry(d, i, err))
			retry_later(d, i);
		else
			node_end(d, i, HALO_DAG_FAILED, err);
	} else {
		sample(d, n, HALO_ADAPTIVE_IGNORE);
		node_end(d, i, d->stop ? HALO_DAG_CANCELLED : HALO_DAG_FAILED,
			 d->stop ? stop_err(d) : err);
	}
	leave(d);
}

static void on_timer(halo_fut *t, void *arg)
{
	struct dnode *n = arg;
	struct halo_dag *d = n->d;
	bool fired = halo_fut_status(t) == HALO_FUT_OK;

	enter(d);
	halo_fut_release(t);
	n->timer = NULL;
	if (n->backing_off) {
		n->backing_off = false;
		if (fired && !d->stop)
			attempt(d, (uint32_t)(n - d->nodes));
		else
			node_end(d, (uint32_t)(n - d->nodes),
				 HALO_DAG_CANCELLED, stop_err(d));
	} else if (fired && halo_fut_cancel(n->f) == 0) {
		n->timed_out = true;
	}
	leave(d);
}

static void attempt(struct halo_dag *d, uint32_t i)
{
	struct dnode *n = &d->nodes[i];
	halo_dag_node_report *r = &d->reps[i];
	halo_fut *f;

	for (uint32_t k = 0; k < n->dep_n; k++)
		d->depf[n->dep_off + k] = d->nodes[d->deps[n->dep_off + k]].f;
	halo_fut_release(n->f);
	n->f = NULL;
	n->timed_out = false;
	r->attempts++;
	n->attempt_ns = r->attempts > 1 ? halo_now_ns() : r->start_ns;
	event(d, i);
	f = n->fn(d->loop, n->arg, &d->depf[n->dep_off], n->dep_n);
	if (!f) {
		node_end(d, i, HALO_DAG_FAILED, -ENOMEM);
		return;
	}
	n->f = f;
	if (n->timeout_ns) {
		n->timer = halo_timer_after(d->loop, n->timeout_ns);
		if (n->timer)
			halo_fut_add_waiter(n->timer, &n->tw);
	}
	halo_fut_add_waiter(f, &n->w);
}

static void start_node(struct halo_dag *d, uint32_t i)
{
	halo_dag_node_report *r = &d->reps[i];

	r->state = HALO_DAG_RUNNING;
	r->start_ns = halo_now_ns();
	attempt(d, i);
}

static void finish(struct halo_dag *d);

static void pump(struct halo_dag *d)
{
	d->busy++;
	while (d->ready_head != NONE && !d->stop && take_permit(d))
		start_node(d, pop_ready(d));
	/* A permit granted after the queue emptied goes back. */
	while (d->granted) {
		d->granted--;
		halo_adaptive_release(d->o.limiter);
	}
	d->busy--;
	if (d->running && d->done_n == d->n && !d->busy)
		finish(d);
}

/* Stop the run: nothing new starts, what waits is cancelled now, what runs
 * is asked to cancel and ends in its own callback. */
static void stop(struct halo_dag *d, int why)
{
	if (d->stop)
		return;
	d->stop = why;
	d->ready_head = NONE;
	if (d->o.limiter && d->aw.queued)
		halo_adaptive_cancel_wait(d->o.limiter, &d->aw);
	for (uint32_t i = 0; i < d->n; i++) {
		struct dnode *n = &d->nodes[i];
		halo_dag_node_report *r = &d->reps[i];

		if (r->state == HALO_DAG_WAITING) {
			r->state = HALO_DAG_CANCELLED;
			r->err = stop_err(d);
			d->done_n++;
			event(d, i);
		} else if (r->state == HALO_DAG_RUNNING) {
			if (n->backing_off)
				halo_fut_cancel(n->timer);
			else if (n->f)
				halo_fut_cancel(n->f);
		}
	}
}

static void on_run_cancel(halo_fut *out, void *arg)
{
	struct halo_dag *d = arg;

	(void)out;
	enter(d);
	stop(d, STOP_CANCEL);
	leave(d);
}

static void on_deadline(halo_fut *t, void *arg)
{
	struct halo_dag *d = arg;
	bool fired = halo_fut_status(t) == HALO_FUT_OK;

	enter(d);
	halo_fut_release(t);
	d->deadline = NULL;
	if (fired)
		stop(d, STOP_TIMEOUT);
	leave(d);
}

static void finish(struct halo_dag *d)
{
	halo_dag_report *rep = &d->rep;
	halo_fut *out = d->out;

	d->running = false;
	d->out = NULL;
	if (d->deadline) {
		halo_fut_remove_waiter(d->deadline, &d->dw);
		halo_fut_cancel(d->deadline);
		halo_fut_release(d->deadline);
		d->deadline = NULL;
	}
	rep->end_ns = halo_now_ns();
	for (size_t i = 0; i < d->n; i++) {
		switch (d->reps[i].state) {
		case HALO_DAG_OK:
			rep->ok_n++;
			break;
		case HALO_DAG_FAILED:
			rep->failed_n++;
			break;
		case HALO_DAG_SKIPPED:
			rep->skipped_n++;
			break;
		default:
			rep->cancelled_n++;
		}
	}
	if (d->stop == STOP_CANCEL)
		rep->status = -ECANCELED;
	else if (rep->failed != SIZE_MAX)
		rep->status = d->reps[rep->failed].err;
	else if (d->stop == STOP_TIMEOUT)
		rep->status = -ETIMEDOUT;
	if (d->stop == STOP_CANCEL) {
		halo_fut_cancelled(out);
	} else if (rep->status) {
		const halo_dag_node_report *r = NULL;

		if (rep->failed != SIZE_MAX)
			r = &d->reps[rep->failed];
		if (r)
			snprintf(d->msg, sizeof(d->msg), "%s: %s", r->name,
				 r->msg ? r->msg : strerror(-r->err));
		else
			snprintf(d->msg, sizeof(d->msg),
				 "the run's timeout passed");
		halo_fut_fail(out, rep->status, d->msg);
	} else {
		halo_fut_resolve(out, (int64_t)rep->ok_n, d);
	}
	halo_fut_release(out);
}

/* Forget the last run: its futures, messages and report. */
static void reset(struct halo_dag *d)
{
	for (uint32_t i = 0; i < d->n; i++) {
		struct dnode *n = &d->nodes[i];
		halo_dag_node_report *r = &d->reps[i];
		const char *name = r->name;

		halo_fut_release(n->f);
		n->f = NULL;
		n->timer = NULL;
		n->timed_out = n->backing_off = false;
		n->d = d;
		if (d->checked)
			d->pending[i] = n->dep_n;
		n->w = (halo_waiter){.fn = on_attempt, .arg = n};
		n->tw = (halo_waiter){.fn = on_timer, .arg = n};
		if (r->msg)
			halo_mem_free(d->loop, (void *)r->msg,
				      strlen(r->msg) + 1);
		memset(r, 0, sizeof(*r));
		r->name = name;
	}
	memset(&d->rep, 0, sizeof(d->rep));
	d->rep.failed = SIZE_MAX;
	d->rep.nodes = d->reps;
	d->rep.nodes_n = d->n;
	d->ready_head = NONE;
	d->done_n = d->held_n = d->granted = 0;
	d->stop = STOP_NONE;
	d->aw = (halo_adaptive_waiter){.fn = on_grant, .arg = d};
}

halo_fut *halo_dag_start_at(halo_dag *d, const char *file, int line)
{
	halo_fut *out;
	int r;

	if (d->running)
		return halo_fut_failed_at(
		    d->loop, -EBUSY, "this DAG is running already", file, line);
	r = halo_dag_check(d);
	if (r)
		return halo_fut_failed_at(
		    d->loop, r, d->error[0] ? d->error : NULL, file, line);
	out = halo_fut_new_at(d->loop, file, line);
	if (!out)
		return NULL;
	reset(d);
	d->rep.start_ns = halo_now_ns();
	if (d->o.timeout_ns) {
		d->deadline = halo_timer_after(d->loop, d->o.timeout_ns);
		if (!d->deadline) {
			halo_fut_release(out);
			return NULL;
		}
		d->dw = (halo_waiter){.fn = on_deadline, .arg = d};
		halo_fut_add_waiter(d->deadline, &d->dw);
	}
	d->out = halo_fut_ref(out);
	halo_fut_set_cancel(out, on_run_cancel, d);
	d->running = true;
	enter(d);
	for (uint32_t i = 0; i < d->n; i++)
		if (!d->nodes[i].dep_n)
			push_ready(d, i);
	leave(d);
	return out;
}

int halo_dag_run(halo_dag *d)
{
	halo_fut *f = halo_dag_start(d);
	int64_t r;

	if (!f)
		return -ENOMEM;
	r = halo_fut_wait(f);
	if (!halo_fut_is_done(f)) {
		halo_fut_cancel(f);
		halo_fut_wait(f);
		if (!halo_fut_is_done(f)) {
			halo_fut_detach(f);
			return (int)r;
		}
	} else if (r >= 0) {
		r = 0;
	}
	halo_fut_release(f);
	return (int)r;
}

const halo_dag_report *halo_dag_get_report(const halo_dag *d)
{
	return &d->rep;
}

int halo_dag_find(const halo_dag *d, const char *name)
{
	for (size_t i = 0; i < d->n; i++)
		if (!strcmp(d->reps[i].name, name))
			return (int)i;
	return -ENOENT;
}

const char *halo_dag_state_name(halo_dag_state s)
{
	static const char *const names[] = {
	    "waiting", "running", "ok", "failed", "skipped", "cancelled",
	};

	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

static uint64_t duration(const halo_dag_node_report *r)
{
	return r->start_ns && r->end_ns > r->start_ns ? r->end_ns - r->start_ns
						      : 0;
}

size_t halo_dag_critical_path(const halo_dag *d, size_t *path, size_t cap,
			      uint64_t *len_ns)
{
	uint32_t *link = d->link, end = NONE;
	size_t len = 0;

	if (len_ns)
		*len_ns = 0;
	if (!d->checked || !d->n)
		return 0;
	for (size_t k = 0; k < d->n; k++) {
		uint32_t v = d->order[k];
		const struct dnode *n = &d->nodes[v];
		uint64_t best = 0;

		link[v] = NONE;
		for (uint32_t e = 0; e < n->dep_n; e++) {
			uint32_t u = d->deps[n->dep_off + e];

			if (link[v] == NONE || d->dist[u] > best) {
				best = d->dist[u];
				link[v] = u;
			}
		}
		d->dist[v] = best + duration(&d->reps[v]);
		if (end == NONE || d->dist[v] > d->dist[end])
			end = v;
	}
	if (len_ns)
		*len_ns = d->dist[end];
	for (uint32_t v = end; v != NONE; v = link[v])
		len++;
	for (uint32_t v = end, k = (uint32_t)len; v != NONE; v = link[v])
		if (path && --k < cap)
			path[k] = v;
	return len;
}

/* --- the printed report --- */

struct sink {
	FILE *f;
	char *buf;
	size_t len, pos;
	int err;
};

static void put(struct sink *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void put(struct sink *s, const char *fmt, ...)
{
	va_list ap;
	int w;

	va_start(ap, fmt);
	if (s->f) {
		if (vfprintf(s->f, fmt, ap) < 0)
			s->err = -EIO;
	} else {
		size_t room = s->pos < s->len ? s->len - s->pos : 0;

		w = vsnprintf(room ? s->buf + s->pos : NULL, room, fmt, ap);
		if (w > 0)
			s->pos += (size_t)w;
	}
	va_end(ap);
}

static double ms_since(uint64_t t, uint64_t t0)
{
	return t ? (double)(int64_t)(t - t0) / 1e6 : 0;
}

static void render(const struct halo_dag *d, struct sink *s)
{
	const halo_dag_report *rep = &d->rep;
	int wn = 4;
	size_t path[64], len;
	uint64_t crit;

	for (size_t i = 0; i < d->n; i++) {
		int l = (int)strlen(d->reps[i].name);

		wn = l > wn ? (l < 32 ? l : 32) : wn;
	}
	put(s, "%-*s  %-9s %5s %10s %10s %10s  %s\n", wn, "node", "state",
	    "tries", "start_ms", "end_ms", "dur_ms", "detail");
	for (size_t i = 0; i < d->n; i++) {
		const halo_dag_node_report *r = &d->reps[i];

		put(s, "%-*.*s  %-9s %5u %10.3f %10.3f %10.3f  ", wn, wn,
		    r->name, halo_dag_state_name(r->state), r->attempts,
		    ms_since(r->start_ns, rep->start_ns),
		    ms_since(r->end_ns, rep->start_ns),
		    (double)duration(r) / 1e6);
		if (r->state == HALO_DAG_SKIPPED)
			put(s, "skipped: '%s' failed", r->cause);
		else if (r->err)
			put(s, "%d (%s)%s%s", r->err, strerror(-r->err),
			    r->msg ? ": " : "", r->msg ? r->msg : "");
		else if (r->state == HALO_DAG_OK)
			put(s, "result %lld", (long long)r->result);
		put(s, "\n");
	}
	put(s,
	    "run: status %d, %zu ok, %zu failed, %zu skipped, %zu cancelled, "
	    "%.3f ms\n",
	    rep->status, rep->ok_n, rep->failed_n, rep->skipped_n,
	    rep->cancelled_n,
	    rep->end_ns ? (double)(rep->end_ns - rep->start_ns) / 1e6 : 0.0);
	len = halo_dag_critical_path(d, path, 64, &crit);
	put(s, "critical path:");
	for (size_t k = 0; k < len && k < 64; k++)
		put(s, "%s%s", k ? " -> " : " ", d->reps[path[k]].name);
	put(s, "%s (%.3f ms)\n", len > 64 ? " ..." : "", (double)crit / 1e6);
}

int halo_dag_print(const halo_dag *d, FILE *out)
{
	struct sink s = {.f = out};

	render(d, &s);
	return s.err;
}

int halo_dag_format(const halo_dag *d, char *buf, size_t len)
{
	struct sink s = {.buf = buf, .len = len};

	if (len)
		buf[0] = 0;
	render(d, &s);
	return (int)s.pos;
}

int halo_dag_free(halo_dag *d)
{
	halo_loop *loop;

	if (!d)
		return 0;
	if (d->running)
		return -EBUSY;
	loop = d->loop;
	reset(d);
	drop_graph(d);
	for (size_t i = 0; i < d->n; i++)
		if (d->nodes[i].bo)
			halo_mem_free(loop, d->nodes[i].bo,
				      sizeof(*d->nodes[i].bo));
	if (d->nodes)
		halo_mem_free(loop, d->nodes, d->nodes_cap * sizeof(*d->nodes));
	if (d->reps)
		halo_mem_free(loop, d->reps, d->reps_cap * sizeof(*d->reps));
	if (d->edges)
		halo_mem_free(loop, d->edges, d->edges_cap * sizeof(*d->edges));
	halo_mem_free(loop, d, sizeof(*d));
	return 0;
}
