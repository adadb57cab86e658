/* Dependency DAGs: load many resources where some need others first. Each
 * node starts the moment its last dependency is done (not level by level),
 * a failed node skips only its dependents while independent branches go on
 * (or, with HALO_DAG_FAIL_FAST, everything in flight is cancelled and the
 * run ends once the kernel confirmed), and the report says per node what
 * happened, when, and which failure skipped it.
 *
 * Build a DAG with halo_dag_new(), halo_dag_add() or halo_dag_add_table()
 * and halo_dag_depend(); run it with halo_dag_run() (in a fiber or on the
 * loop's thread outside callbacks) or halo_dag_start() (a future to await,
 * race or cancel); read the report; halo_dag_free(). Cycles and unknown
 * dependencies are refused before anything starts. A DAG can be run again
 * once its run is done; each run replaces the report. */
#ifndef HALO_PATTERNS_DAG_H
#define HALO_PATTERNS_DAG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../runtime/api.h"
#include "../runtime/fut.h"
#include "adaptive.h"
#include "retry.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct halo_dag halo_dag;

/* Start a node's work without waiting: deps[0..deps_n) are its
 * dependencies' futures, all OK, in the order the node named them (named
 * ones first, then those of halo_dag_depend(); read them with
 * halo_fut_result() and halo_fut_value(); the DAG owns them). Return a
 * future the DAG owns; halo_fut_failed(loop, -errno, msg) for a start that
 * fails at once; NULL fails the node with -ENOMEM (exhaustion is not
 * retried). Called from halo_dag_start() and from the loop's callbacks:
 * never block. */
typedef halo_fut *(*halo_dag_fn)(halo_loop *loop, void *arg,
				 halo_fut *const *deps, size_t deps_n);

/* One node, as halo_dag_add() and a table row take it. */
typedef struct halo_dag_node {
	const char *name; /* unique, required; borrowed until the DAG is
			     freed */
	halo_dag_fn fn;
	/* Names of the dependencies, separated by commas or spaces
	 * ("a, c"); NULL or "" for none. Resolved when the DAG is checked,
	 * so a table may name nodes of later rows. Borrowed until the DAG
	 * is freed. */
	const char *deps;
	void *arg;
	uint64_t timeout_ns; /* per attempt; past it the attempt is
				cancelled and fails with -ETIMEDOUT once
				done; 0: the policy's attempt_timeout_ns,
				or none */
	/* Retries (patterns/retry.h), borrowed until the DAG is freed; NULL:
	 * one attempt. Used: max_attempts, the delays (base, cap, jitter,
	 * seed or rng), retry_if, attempt_timeout_ns, and timeout_ns, which
	 * counts from the node's start: no retry starts whose delay would
	 * end past it (the node fails with -ETIMEDOUT). An attempt cancelled
	 * other than by its timeout is never retried. The node keeps its
	 * concurrency permit while it backs off, and each attempt is a
	 * sample for an adaptive limiter. */
	const halo_retry_policy *retry;
} halo_dag_node;

/* A table row without timeout or retry; designated, so that -Wextra's
 * missing-field-initializers stays quiet:
 * HALO_DAG_NODE("prices", load_prices, "cart, user", &ctx). */
#define HALO_DAG_NODE(name_, fn_, deps_, arg_)                                 \
	{                                                                      \
		.name = (name_), .fn = (fn_), .deps = (deps_), .arg = (arg_)   \
	}

typedef enum halo_dag_state {
	HALO_DAG_WAITING = 0, /* not started (dependencies or a permit) */
	HALO_DAG_RUNNING,     /* an attempt in flight or backing off */
	HALO_DAG_OK,
	HALO_DAG_FAILED,
	HALO_DAG_SKIPPED,   /* an ancestor failed: see cause */
	HALO_DAG_CANCELLED, /* fail-fast, the run's timeout or a cancel */
} halo_dag_state;

/* What one node did in the last run. */
typedef struct halo_dag_node_report {
	const char *name;
	halo_dag_state state;
	int64_t result;	   /* its future's result (-errno if it failed) */
	void *value;	   /* its future's value if OK */
	int err;	   /* 0, or the -errno it failed or was cancelled
			      with (-ETIMEDOUT for its timeout) */
	const char *msg;   /* its future's error message (copied), or NULL */
	const char *cause; /* SKIPPED: the name of the failed ancestor */
	uint32_t attempts; /* attempts started */
	uint64_t start_ns, end_ns; /* CLOCK_MONOTONIC; 0 if never */
} halo_dag_node_report;

typedef struct halo_dag_report {
	int status;    /* 0; the first failure's -errno (by time);
			  -ETIMEDOUT (the run's timeout); -ECANCELED */
	size_t failed; /* index of the first failed node, SIZE_MAX */
	size_t ok_n, failed_n, skipped_n, cancelled_n;
	uint64_t start_ns, end_ns;
	size_t nodes_n;
	const halo_dag_node_report *nodes; /* nodes[i]: node i (add order) */
} halo_dag_report;

/* Called at every change of a node's state (and at each retry, state
 * RUNNING with attempts > 1), from the loop's callbacks or from
 * halo_dag_start(): for logs and metrics. Read, do not change, the DAG. */
typedef void (*halo_dag_event_fn)(const halo_dag *d, size_t node,
				  const halo_dag_node_report *r, void *arg);

/* flags */
/* The first failure stops the run: its dependents are skipped as usual,
 * every other node not done is cancelled (running ones down to the
 * kernel), and the run ends when all of them are done. */
#define HALO_DAG_FAIL_FAST (1u << 0)

typedef struct halo_dag_opts {
	size_t max_nodes;     /* bound on nodes; default 65536 */
	size_t max_edges;     /* bound on dependencies in all; default
				 16 x max_nodes */
	uint32_t concurrency; /* nodes running at once; 0: no cap */
	/* An adaptive limit instead of the fixed cap; may be shared by
	 * several DAGs and other users (same loop). Each attempt's latency
	 * and outcome is sampled into it. Must outlive the DAG's runs. */
	halo_adaptive *limiter;
	uint64_t timeout_ns; /* for the whole run, from its start: what
				is running is cancelled (-ETIMEDOUT);
				0: none */
	unsigned flags;
	halo_dag_event_fn on_event; /* may be NULL */
	void *event_arg;
	FILE *log; /* one line per node event, if set */
} halo_dag_opts;

/* A new empty DAG on loop (opts copied; NULL: defaults), from the loop's
 * memory. NULL on exhaustion. */
HALO_API halo_dag *halo_dag_new(halo_loop *loop, const halo_dag_opts *opts);

/* Add a node (copied; its strings borrowed). Returns its index, or
 * -EINVAL (no name or fn), -ENOSPC (max_nodes), -EBUSY (a run is in
 * progress), -ENOMEM. */
HALO_API int halo_dag_add(halo_dag *d, const halo_dag_node *node);

/* Add n nodes in one call, the table form. Returns the index of the first,
 * or an error as halo_dag_add() (then none of them was added). */
HALO_API int halo_dag_add_table(halo_dag *d, const halo_dag_node *nodes,
				size_t n);

/* Make node depend on dep (indices from halo_dag_add()), after the
 * dependencies it names. Returns 0, -EINVAL (bad index), -ENOSPC
 * (max_edges), -EBUSY, -ENOMEM. */
HALO_API int halo_dag_depend(halo_dag *d, size_t node, size_t dep);

/* Resolve names and check the graph without running it. Returns 0,
 * -ENOENT (an unknown dependency), -ELOOP (a cycle), -EEXIST (a name used
 * twice), -ENOSPC (named and indexed dependencies exceed max_edges),
 * -ENOMEM; halo_dag_error() names the nodes. Also done by start. */
HALO_API int halo_dag_check(halo_dag *d);

/* The explanation of the last refusal, e.g. "cycle: a -> b -> c -> a"
 * (x -> y: y depends on x), or "". */
HALO_API const char *halo_dag_error(const halo_dag *d);

/* Start a run and return its future (caller owns a reference): OK with
 * result ok_n and value d once every node is OK; ERROR with the first
 * failure's -errno and a message naming the node ("c: db down"), once
 * every node is done; CANCELLED if cancelled (what runs is cancelled and
 * waited for: the future completes after the kernel let go). A graph that
 * halo_dag_check() refuses gives a failed future with its error and
 * message, and nothing starts; so does -EBUSY if a run is in progress. NULL
 * on exhaustion. Called in a fiber, the I/O of the nodes it starts at once
 * belongs to that fiber (see fiber.h): ending or cancelling the fiber
 * cancels them. */
HALO_API halo_fut *halo_dag_start_at(halo_dag *d, const char *file, int line);
#define halo_dag_start(d) halo_dag_start_at((d), __FILE__, __LINE__)

/* Start a run and wait for it: in a fiber it suspends, on the loop's
 * thread outside callbacks it drives the loop. If the wait is interrupted
 * (the fiber is cancelled) the run is cancelled and waited for. Returns 0,
 * the report's status (or the refusal's error), -ENOMEM, or -EDEADLK from
 * a plain callback: use halo_dag_start() there (the run started is
 * cancelled, and halo_dag_free() refuses until it is done). */
HALO_API int halo_dag_run(halo_dag *d);

/* The report of the last run (valid until the next run or
 * halo_dag_free()). Before any run, every node is WAITING. */
HALO_API const halo_dag_report *halo_dag_get_report(const halo_dag *d);

/* Index of the node called name, or -ENOENT. */
HALO_API int halo_dag_find(const halo_dag *d, const char *name);

/* The critical path of the last run: the chain of dependencies whose
 * summed node durations (end - start) is longest. Writes up to cap node
 * indices to path (first to last; path may be NULL), sets *len_ns (may be
 * NULL) to that sum, and returns the number of nodes on the chain. Nodes
 * that never started count 0. 0 before a checked graph ran. */
HALO_API size_t halo_dag_critical_path(const halo_dag *d, size_t *path,
				       size_t cap, uint64_t *len_ns);

/* Print the report as a table (one row per node: state, attempts, start
 * and end in ms since the run's start, duration, error and message or
 * cause) and the critical path. halo_dag_print() returns 0 or -EIO;
 * halo_dag_format() writes at most len bytes, always terminated when len
 * > 0, and returns the length the whole table needs, as snprintf. */
HALO_API int halo_dag_print(const halo_dag *d, FILE *out);
HALO_API int halo_dag_format(const halo_dag *d, char *buf, size_t len);

/* The name of a state ("ok", "skipped", ...). */
HALO_API const char *halo_dag_state_name(halo_dag_state s);

/* Free d and what its runs hold. Returns 0, or -EBUSY if a run is in
 * progress (then nothing is freed). */
HALO_API int halo_dag_free(halo_dag *d);

#ifdef __cplusplus
}
#endif
#endif
