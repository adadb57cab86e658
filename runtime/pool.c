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

#ifdef HALO_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define SLAB_BYTES (64u * 1024u)

struct slab {
	struct slab *next;
	size_t size;
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
	for (int i = 0; i < HALO_POOL_CLASSES; i++)
		ps->cls[i].slot = 64u << i;
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
		UNPOISON(s, s->size);
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

static int class_of(size_t size)
{
	int c = 0;

	while ((64u << c) < size)
		c++;
	return c;
}

/* Carve a new slab into slots. The slab header takes the first slot. */
static int refill(halo_loop *loop, halo_pool *p)
{
	size_t bytes = SLAB_BYTES;
	char *mem;
	struct slab *s;

	if (bytes < 8u * p->slot)
		bytes = 8u * p->slot;
	mem = heap_alloc(loop, bytes);
	if (!mem)
		return -ENOMEM;
	s = (struct slab *)mem;
	s->size = bytes;
	s->next = loop->pools.slabs;
	loop->pools.slabs = s;
	for (size_t off = bytes - p->slot; off >= p->slot; off -= p->slot) {
		void **slot = (void **)(mem + off);
		*slot = p->free;
		p->free = slot;
		POISON((char *)slot + sizeof(void *), p->slot - sizeof(void *));
		p->free_n++;
	}
	return 0;
}

void *halo_mem_alloc(halo_loop *loop, size_t size)
{
	halo_pool *p;
	void **slot;

	if (size == 0)
		size = 1;
	if (size > HALO_POOL_MAX)
		return heap_alloc(loop, size);
	p = &loop->pools.cls[class_of(size)];
	if (unlikely(!p->free) && refill(loop, p) < 0)
		return NULL;
	slot = p->free;
	UNPOISON(slot, p->slot);
	p->free = *slot;
	p->free_n--;
	return slot;
}

void halo_mem_free(halo_loop *loop, void *ptr, size_t size)
{
	halo_pool *p;
	void **slot = ptr;

	if (!ptr)
		return;
	if (size == 0)
		size = 1;
	if (size > HALO_POOL_MAX) {
		heap_free(loop, ptr, size);
		return;
	}
	p = &loop->pools.cls[class_of(size)];
	*slot = p->free;
	p->free = slot;
	p->free_n++;
	POISON((char *)slot + sizeof(void *), p->slot - sizeof(void *));
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
