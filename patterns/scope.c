/* Scopes keep their children in a growing array from the loop's pool and
 * join them with halo_wait; a child added while the scope is being joined
 * (a child fiber spawning its own work) is picked up by the next round. */
#include <errno.h>
#include <string.h>

#include "scope.h"
#include "wait.h"

#include "../runtime/loop.h"
#include "../runtime/pool.h"

int halo_scope_init(halo_scope *scope, halo_loop *loop,
		    const halo_scope_opts *opts)
{
	memset(scope, 0, sizeof(*scope));
	scope->loop = loop;
	scope->flags = opts ? opts->flags : 0;
	return 0;
}

int halo_scope_init_child(halo_scope *scope, halo_scope *parent,
			  const halo_scope_opts *opts)
{
	halo_scope_init(scope, parent->loop, opts);
	scope->parent = parent;
	scope->next_sibling = parent->children;
	parent->children = scope;
	scope->cancelled = parent->cancelled;
	return 0;
}

static int grow(halo_scope *s)
{
	size_t cap = s->kids_cap ? s->kids_cap * 2 : 8;
	halo_fut **k = halo_mem_alloc(s->loop, cap * sizeof(*k));

	if (!k)
		return -ENOMEM;
	if (s->kids_n)
		memcpy(k, s->kids, s->kids_n * sizeof(*k));
	if (s->kids)
		halo_mem_free(s->loop, s->kids, s->kids_cap * sizeof(*k));
	s->kids = k;
	s->kids_cap = cap;
	return 0;
}

int halo_scope_adopt(halo_scope *scope, halo_fut *f)
{
	if (!f)
		return -EINVAL;
	if (scope->kids_n == scope->kids_cap && grow(scope) < 0)
		return -ENOMEM;
	scope->kids[scope->kids_n++] = f;
	if (scope->cancelled)
		halo_fut_cancel(f);
	return 0;
}

int halo_scope_add(halo_scope *scope, halo_fut *f)
{
	int r;

	if (!f)
		return -EINVAL;
	halo_fut_ref(f);
	r = halo_scope_adopt(scope, f);
	if (r < 0)
		halo_fut_release(f);
	return r;
}

halo_fut *halo_scope_spawn(halo_scope *scope, halo_fiber_fn fn, void *arg)
{
	halo_fut *f = halo_spawn(scope->loop, fn, arg);

	if (!f)
		return NULL;
	if (halo_scope_adopt(scope, f) < 0) {
		halo_fut_cancel(f);
		halo_fut_detach(f);
		return NULL;
	}
	return f;
}

void halo_scope_cancel(halo_scope *scope)
{
	scope->cancelled = true;
	halo_cancel_all(scope->kids, scope->kids_n);
	for (halo_scope *c = scope->children; c; c = c->next_sibling)
		halo_scope_cancel(c);
}

/* No memory to watch the children together: the scope fails with -ENOMEM,
 * cancels them unless HALO_SCOPE_KEEP_GOING (as a failed child would), and
 * waits for them one at a time with halo_fut_wait, which needs no memory.
 * The array is read again after each wait: a child may add children, and
 * move it, meanwhile. */
static int join_one_by_one(halo_scope *s)
{
	if (!s->err)
		s->err = -ENOMEM;
	if (!(s->flags & HALO_SCOPE_KEEP_GOING))
		halo_scope_cancel(s);
	for (size_t i = 0; i < s->kids_n; i++) {
		halo_fut *f;

		while (!halo_fut_is_done(f = s->kids[i])) {
			int64_t r = halo_fut_wait(f);

			if (halo_fut_is_done(f))
				break;
			if (r != -ECANCELED)
				return (int)r;
			halo_scope_cancel(s); /* the joining fiber was */
		}
	}
	return s->err;
}

static int join(halo_scope *s)
{
	for (;;) {
		size_t n = s->kids_n;
		unsigned mode = (s->flags & HALO_SCOPE_KEEP_GOING) ||
						s->cancelled
					? HALO_ALL_COMPLETED
					: HALO_FIRST_ERROR;
		halo_wait_result w = halo_wait(s->loop, s->kids, n, mode, 0);

		if (w.status == -ECANCELED) {
			/* The fiber joining us was cancelled: so are we. The
			 * next round waits for the children to be done. */
			halo_scope_cancel(s);
			continue;
		}
		if (w.status == -ENOMEM)
			return join_one_by_one(s);
		if (w.status)
			return w.status;
		if (w.first_error != SIZE_MAX && !s->err) {
			s->err = halo_fut_error(s->kids[w.first_error]);
			if (!(s->flags & HALO_SCOPE_KEEP_GOING))
				halo_scope_cancel(s);
		}
		if (w.done_n == n && s->kids_n == n)
			break;
	}
	if (s->err)
		return s->err;
	return s->cancelled ? -ECANCELED : 0;
}

int halo_scope_join(halo_scope *s)
{
	int r;

	s->busy++;
	r = join(s);
	s->busy--;
	return r;
}

static void unlink_from_parent(halo_scope *s)
{
	halo_scope **pp;

	if (!s->parent)
		return;
	for (pp = &s->parent->children; *pp; pp = &(*pp)->next_sibling) {
		if (*pp == s) {
			*pp = s->next_sibling;
			break;
		}
	}
	s->parent = NULL;
	s->next_sibling = NULL;
}

/* Close the child scopes still open. One that some fiber is joining or
 * closing right now is that fiber's to finish: closing it here too would
 * free its children under it. It is only cut loose from s. */
static void close_children(halo_scope *s)
{
	while (s->children) {
		halo_scope *c = s->children;

		if (c->busy)
			unlink_from_parent(c);
		else
			halo_scope_close(c);
	}
}

int halo_scope_close(halo_scope *s)
{
	int r;

	s->busy++;
	r = join(s);
	close_children(s);
	for (size_t i = 0; i < s->kids_n; i++) {
		/* Only a join that could not wait (-EDEADLK in a callback) can
		 * leave a child running; it is cancelled and let go rather
		 * than leaked. */
		if (!halo_fut_is_done(s->kids[i]))
			halo_fut_cancel(s->kids[i]);
		halo_fut_release(s->kids[i]);
	}
	if (s->kids)
		halo_mem_free(s->loop, s->kids, s->kids_cap * sizeof(*s->kids));
	s->kids = NULL;
	s->kids_n = s->kids_cap = 0;
	unlink_from_parent(s);
	s->busy--;
	return r;
}
