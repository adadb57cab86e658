/* Structured concurrency: a scope owns the futures started inside it, and
 * leaving it (halo_scope_close) waits until every one of them is done,
 * cancelling first if the scope was cancelled or a child failed. A scope can
 * be nested in another; cancelling the parent cancels the child scopes, and
 * a fiber inside sees its current wait return -ECANCELED. */
#ifndef HALO_PATTERNS_SCOPE_H
#define HALO_PATTERNS_SCOPE_H

#include <stdbool.h>
#include <stddef.h>

#include "../runtime/api.h"
#include "../runtime/fiber.h"
#include "../runtime/fut.h"

#ifdef __cplusplus
extern "C" {
#endif

/* flags */
#define HALO_SCOPE_KEEP_GOING (1u << 0) /* a failed child does not cancel
					   the others */

typedef struct halo_scope_opts {
	unsigned flags;
} halo_scope_opts;

/* Caller-embedded; treat the fields as private. */
typedef struct halo_scope {
	halo_loop *loop;
	struct halo_scope *parent, *children, *next_sibling;
	halo_fut **kids;
	size_t kids_n, kids_cap;
	int err;
	unsigned flags;
	unsigned busy; /* joins and closes in progress */
	bool cancelled;
} halo_scope;

/* Set up an empty scope on loop. Returns 0 (opts may be NULL). */
HALO_API int halo_scope_init(halo_scope *scope, halo_loop *loop,
			     const halo_scope_opts *opts);

/* Set up scope nested in parent (same loop): cancelling parent cancels it,
 * and parent's close closes it if it is still open. A cancelled parent
 * makes a cancelled child. Returns 0. */
HALO_API int halo_scope_init_child(halo_scope *scope, halo_scope *parent,
				   const halo_scope_opts *opts);

/* Register f: the scope takes its own reference (the caller keeps
 * theirs). In a cancelled scope f is cancelled at once. Returns 0 or
 * -ENOMEM (then f was not registered). */
HALO_API int halo_scope_add(halo_scope *scope, halo_fut *f);

/* Register f and take over the caller's reference. Returns 0 or -ENOMEM
 * (then the caller still owns f). */
HALO_API int halo_scope_adopt(halo_scope *scope, halo_fut *f);

/* Spawn fn(loop, arg) as a fiber owned by the scope. Returns the fiber's
 * future, borrowed (valid until the scope is closed), or NULL. */
HALO_API halo_fut *halo_scope_spawn(halo_scope *scope, halo_fiber_fn fn,
				    void *arg);

/* Cancel every child and every child scope; later additions are cancelled
 * as they come. Close still waits for them to be done. */
HALO_API void halo_scope_cancel(halo_scope *scope);

/* Wait until every child is done (children added meanwhile included),
 * cancelling the rest at the first failure unless HALO_SCOPE_KEEP_GOING.
 * Returns 0, the first child error, -ECANCELED if the scope was cancelled,
 * -ENOMEM if there was no memory to watch the children (the scope fails as
 * for a failed child, and they are still waited for, one at a time), or
 * -EDEADLK if called from a callback. Works in a fiber and on the loop's
 * thread outside callbacks. */
HALO_API int halo_scope_join(halo_scope *scope);

/* Join, close still-open child scopes, release every child and detach from
 * the parent. A child scope that a fiber is joining or closing meanwhile is
 * left to that fiber, detached. Returns what halo_scope_join returned. */
HALO_API int halo_scope_close(halo_scope *scope);

#ifdef __cplusplus
}
#endif
#endif
