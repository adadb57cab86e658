/* Per-loop memory: size-class pools of fixed slots, refilled in slabs from a
 * jemalloc arena that belongs to the loop. After warm-up an operation takes
 * and returns slots without touching the heap; halo_stats.pool_allocs counts
 * the times a pool had to go to the heap. */
#ifndef HALO_POOL_H
#define HALO_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "api.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct halo_loop halo_loop;

#define HALO_POOL_CLASSES 44 /* 16..256 by 16, then ..2048 by 64 */
#define HALO_POOL_MAX 2048

typedef struct halo_pool {
	void *free;
	uint32_t slot;
} halo_pool;

typedef struct halo_pools {
	halo_pool cls[HALO_POOL_CLASSES];
	halo_pool op; /* operations only (runtime/internal.h) */
	void *slabs;	/* chain of slabs, freed at loop close */
	unsigned arena; /* jemalloc arena index */
	int has_arena;
} halo_pools;

/* Allocate size bytes from loop's pools (sizes above HALO_POOL_MAX come from
 * the loop's arena). 16-byte aligned. Returns NULL on
 * exhaustion. Free with halo_mem_free() and the same size. */
HALO_API void *halo_mem_alloc(halo_loop *loop, size_t size);

/* Return memory from halo_mem_alloc(); size must be the size asked for. */
HALO_API void halo_mem_free(halo_loop *loop, void *p, size_t size);

/* Allocate and zero. */
HALO_API void *halo_mem_zalloc(halo_loop *loop, size_t size);

/* Copy a string into loop memory; free with halo_mem_free(p, strlen(p)+1). */
HALO_API char *halo_mem_strdup(halo_loop *loop, const char *s);

#ifdef __cplusplus
}
#endif
#endif
