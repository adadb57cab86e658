/* Allocation fault injection, for tests and the fault sweep (make faultsweep).
 * Built only with make FAULT=1 (-DHALO_FAULT, its own build directory); in
 * every other build each hook below is the constant false and the library
 * pays nothing. Not installed.
 *
 * Every allocation the library makes is counted in one of four kinds, and
 * the Nth of a kind can be made to fail as it would when memory runs out:
 *   heap    each halo_mem_alloc/zalloc/strdup call (the library's and the
 *           user's), and each malloc, calloc, realloc or posix_memalign in a
 *           library source (fault_libc.h turns them into hooks)
 *   slot    each pool slot a future takes: halo_fut_new, every operation,
 *           timer and fiber; failing one is what an empty pool whose refill
 *           fails looks like to the caller
 *   refill  each slab a pool carves (where a pool really goes to the heap)
 *   stack   each fiber stack mmap (a stack from the cache never fails)
 *
 * The environment sets it up at start:
 *   HALO_FAULT_KIND=heap|slot|refill|stack|any  (any: one count over all)
 *   HALO_FAULT_NTH=N    fail the Nth allocation of that kind (1-based)
 *   HALO_FAULT_NTH=N+   fail the Nth and every later one: memory stays short
 *   HALO_FAULT_COUNTS=path  at exit, write "heap=.. slot=.. refill=..
 *                       stack=.. failed=.." there (how the sweep learns how
 *                       many points a program has)
 *   HALO_FAULT_TRACE=1  print a stack trace at each injected failure */
#ifndef HALO_FAULT_H
#define HALO_FAULT_H

#include <stdbool.h>
#include <stdint.h>

enum halo_fault_kind {
	HALO_FAULT_HEAP,
	HALO_FAULT_SLOT,
	HALO_FAULT_REFILL,
	HALO_FAULT_STACK,
	HALO_FAULT_KINDS,
	HALO_FAULT_ANY = HALO_FAULT_KINDS,
};

#ifdef HALO_FAULT

/* Count one allocation of kind; true means fail it. */
bool halo__fault(enum halo_fault_kind kind);

/* Fail the nth allocation of kind (or HALO_FAULT_ANY) counted from now
 * (nth 1: the next one), and with persist every one after it too. */
void halo__fault_arm(enum halo_fault_kind kind, uint64_t nth, bool persist);

/* Fail nothing more. The counts go on. */
void halo__fault_disarm(void);

/* Disarm and count from zero again (tests that share a process). */
void halo__fault_reset(void);

/* Allocations of kind (or all, for HALO_FAULT_ANY) counted so far. */
uint64_t halo__fault_count(enum halo_fault_kind kind);

/* Allocations failed on purpose so far. */
uint64_t halo__fault_failed(void);

#else

static inline bool halo__fault(enum halo_fault_kind kind)
{
	(void)kind;
	return false;
}

#endif
#endif
