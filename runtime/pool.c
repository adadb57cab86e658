/* Per-loop size-class pools. Slabs come from a jemalloc arena created for
 * the loop (mallocx/sdallocx with MALLOCX_ARENA and no thread cache), so a
 * loop's memory neither contends with other threads nor outlives the loop.
 * Sanitizer builds use libc malloc and poison free slots by hand so that a
 * use after release is reported. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#ifndef HALO_NO_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#define SLAB_BYTES (64u * 1024u)

struct slab {
	struct slab *next;
	size_t size;
	size_t slot;
};

static void *heap_alloc(halo_loop *loop, size_t size)
{
	loop->stats.pool_allocs++;
#ifndef HALO_NO_JEMALLOC
	if (loop->pools.has_arena)
		return mallocx(size, MALLOCX_ARENA(loop->pools.arena) |
					     MALLOCX_TCACHE_NONE |
					     MALLOCX_ALIGN(64));
#endif
	void *p = NULL;
	return posix_memalign(&p, 64, size) == 0 ? p : NULL;
}

static void heap_free(halo_loop *loop, void *p, size_t size)
{
#ifndef HALO_NO_JEMALLOC
	if (loop->pools.has_arena) {
		sdallocx(p, size, MALLOCX_ARENA(loop->pools.arena) |
					  MALLOCX_TCACHE_NONE |
					  MALLOCX_ALIGN(64));
		return;
	}
#endif
	(void)loop;
	(void)size;
	free(p);
}

int halo__pools_init(halo_loop *loop)
{
	halo_pools *ps = &loop->pools;

	memset(ps, 0, sizeof(*ps));
	for (int i = 0; i < 16; i++)
		ps->cls[i].slot = 16u * (unsigned)(i + 1);
	for (int i = 16; i < HALO_POOL_CLASSES; i++)
		ps->cls[i].slot = 256u + 64u * (unsigned)(i - 15);
	ps->op.slot = halo__pool_of(loop, sizeof(struct halo_op))->slot;
#ifndef HALO_NO_JEMALLOC
	size_t sz = sizeof(ps->arena);
	if (mallctl("arenas.create", &ps->arena, &sz, NULL, 0) == 0)
		ps->has_arena = 1;
#endif
	return 0;
}

void halo__pools_close(halo_loop *loop)
{
	halo_pools *ps = &loop->pools;
	struct slab *s = ps->slabs, *next;

	for (; s; s = next) {
		next = s->next;
		HALO_UNPOISON(s, s->size);
		heap_free(loop, s, s->size);
	}
	ps->slabs = NULL;
#ifndef HALO_NO_JEMALLOC
	if (ps->has_arena) {
		char name[64];
		snprintf(name, sizeof(name), "arena.%u.destroy", ps->arena);
		mallctl(name, NULL, NULL, NULL, 0);
		ps->has_arena = 0;
	}
#endif
}

/* The slab header takes the first slot or slots. */
static size_t first_slot(size_t slot)
{
	return (sizeof(struct slab) + slot - 1) / slot;
}

/* Carve a new slab into slots. */
int halo__pool_refill(halo_loop *loop, halo_pool *p)
{
	size_t bytes = SLAB_BYTES;
	char *mem;
	struct slab *s;

	if (bytes < 8u * p->slot)
		bytes = 8u * p->slot;
	if (halo__fault(HALO_FAULT_REFILL))
		return -ENOMEM;
	mem = heap_alloc(loop, bytes);
	if (!mem)
		return -ENOMEM;
	memset(mem, 0, bytes);
	s = (struct slab *)mem;
	s->size = bytes;
	s->slot = p->slot;
	s->next = loop->pools.slabs;
	loop->pools.slabs = s;
	for (size_t i = bytes / p->slot - 1; i >= first_slot(p->slot); i--) {
		void **slot = (void **)(mem + i * p->slot);
		*slot = p->free;
		p->free = slot;
		HALO_POISON((char *)slot + sizeof(void *), p->slot - sizeof(void *));
	}
	return 0;
}

void halo__pool_each_slot(halo_loop *loop, size_t min_slot,
			  void (*fn)(void *slot, void *arg), void *arg)
{
	for (struct slab *s = loop->pools.slabs; s; s = s->next) {
		if (s->slot < min_slot)
			continue;
		HALO_UNPOISON(s, s->size);
		for (size_t i = first_slot(s->slot); (i + 1) * s->slot <= s->size;
		     i++)
			fn((char *)s + i * s->slot, arg);
	}
}

void *halo_mem_alloc(halo_loop *loop, size_t size)
{
	if (halo__fault(HALO_FAULT_HEAP))
		return NULL;
	if (size == 0)
		size = 1;
	if (size > HALO_POOL_MAX)
		return heap_alloc(loop, size);
	return halo__pool_get(loop, size);
}

void halo_mem_free(halo_loop *loop, void *ptr, size_t size)
{
	if (!ptr)
		return;
	if (size == 0)
		size = 1;
	if (size > HALO_POOL_MAX) {
		heap_free(loop, ptr, size);
		return;
	}
	halo__pool_put(loop, ptr, size);
}

void *halo_mem_zalloc(halo_loop *loop, size_t size)
{
	void *p = halo_mem_alloc(loop, size);

	if (p)
		memset(p, 0, size);
	return p;
}

char *halo_mem_strdup(halo_loop *loop, const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = halo_mem_alloc(loop, n);

	if (p)
		memcpy(p, s, n);
	return p;
}
