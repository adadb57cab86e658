/* One waiter node per member appends its index to a queue in the order the
 * waiters run, which is the order the futures completed (each index is
 * appended once, so n slots never wrap); next() pops the queue and, when it is empty, waits on a private promise the nodes
 * resolve. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "as_completed.h"
#include "wait.h"

#include "../runtime/pool.h"
#include "../runtime/timer.h"

struct halo__ac_node {
	halo_waiter w;
	halo_as_completed *it;
	size_t idx;
	bool hooked;
};

static size_t mem_size(size_t n)
{
	return n * (sizeof(struct halo__ac_node) + sizeof(size_t));
}

static void push(halo_as_completed *it, size_t idx)
{
	it->ready[it->ready_head + it->ready_n] = idx;
	it->ready_n++;
}

static void on_done(halo_fut *f, void *arg)
{
	struct halo__ac_node *nd = arg;
	halo_as_completed *it = nd->it;

	(void)f;
	nd->hooked = false;
	push(it, nd->idx);
	if (it->wake)
		halo_fut_resolve(it->wake, 0, NULL);
}

int halo_as_completed_init(halo_as_completed *it, halo_loop *loop,
			   halo_fut *const *futs, size_t n,
			   uint64_t deadline_ns)
{
	char *mem = NULL;

	memset(it, 0, sizeof(*it));
	it->loop = loop;
	it->futs = futs;
	it->n = n;
	it->deadline_ns = deadline_ns;
	if (!n)
		return 0;
	mem = halo_mem_alloc(loop, mem_size(n));
	if (!mem)
		return -ENOMEM;
	it->nodes = (struct halo__ac_node *)mem;
	it->ready = (size_t *)(mem + n * sizeof(struct halo__ac_node));
	for (size_t i = 0; i < n; i++) {
		struct halo__ac_node *nd = &it->nodes[i];

		nd->it = it;
		nd->idx = i;
		if (halo_fut_is_done(futs[i])) {
			push(it, i);
			continue;
		}
		nd->hooked = true;
		nd->w.fn = on_done;
		nd->w.arg = nd;
		halo_fut_add_waiter(futs[i], &nd->w);
	}
	return 0;
}

halo_fut *halo_as_completed_next(halo_as_completed *it)
{
	size_t idx;

	if (it->yielded_n == it->n)
		return NULL;
	while (!it->ready_n) {
		halo_fut *wake = halo_fut_new(it->loop);
		halo_wait_result w;

		if (!wake) {
			it->err = -ENOMEM;
			return NULL;
		}
		it->wake = wake;
		w = halo_wait(it->loop, &wake, 1, HALO_ALL_COMPLETED,
			      it->deadline_ns);
		it->wake = NULL;
		if (!halo_fut_is_done(wake))
			halo_fut_cancel(wake);
		halo_fut_release(wake);
		if (w.status && !it->ready_n) {
			it->err = w.status;
			return NULL;
		}
	}
	idx = it->ready[it->ready_head];
	it->ready_head++;
	it->ready_n--;
	it->yielded_n++;
	it->err = 0;
	it->last = idx;
	return it->futs[idx];
}

size_t halo_as_completed_index(const halo_as_completed *it)
{
	return it->yielded_n ? it->last : SIZE_MAX;
}

void halo_as_completed_close(halo_as_completed *it)
{
	if (!it->nodes)
		return;
	for (size_t i = 0; i < it->n; i++)
		if (it->nodes[i].hooked)
			halo_fut_remove_waiter(it->futs[i], &it->nodes[i].w);
	halo_mem_free(it->loop, it->nodes, mem_size(it->n));
	it->nodes = NULL;
	it->ready = NULL;
}
