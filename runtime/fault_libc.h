/* make FAULT=1 force-includes this header into every library source except
 * the pools and fault.c (-include, see the Makefile): the library's own
 * malloc, calloc, realloc and posix_memalign calls become fault points of
 * kind heap, in every module and without a hook at each call site. The
 * system headers come first so that their declarations stay as they are.
 * Not installed. */
#ifndef HALO_FAULT_LIBC_H
#define HALO_FAULT_LIBC_H

#include <stddef.h>
#include <stdlib.h>

void *halo__fault_malloc(size_t n);
void *halo__fault_calloc(size_t n, size_t size);
void *halo__fault_realloc(void *p, size_t n);
int halo__fault_posix_memalign(void **p, size_t align, size_t n);

#define malloc(n)		    halo__fault_malloc(n)
#define calloc(n, size)		    halo__fault_calloc(n, size)
#define realloc(p, n)		    halo__fault_realloc(p, n)
#define posix_memalign(p, align, n) halo__fault_posix_memalign(p, align, n)

#endif
