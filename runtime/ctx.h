/* Stack switching for fibers (runtime/ctx.S) and the first frame of a new
 * context. Internal; kept free of the rest of the runtime so that the switch
 * can be tested on its own (tests/ctx_selftest.c, also under qemu for
 * aarch64). */
#ifndef HALO_CTX_H
#define HALO_CTX_H

#include <stdint.h>
#include <string.h>

/* Save the callee-saved registers and the stack pointer in *save_sp, load
 * the context saved at load_sp and return into it. */
void halo__ctx_switch(void **save_sp, void *load_sp);
void halo__ctx_trampoline(void);

/* Lay out the first frame of a context on stack[0..size) as
 * halo__ctx_switch pops it, so that switching to it "returns" into
 * halo__ctx_trampoline, which calls entry(arg) on an ABI-aligned stack.
 * entry must never return. Returns the context's initial stack pointer. */
static inline void *halo__ctx_init(char *stack, size_t size,
				   void (*entry)(void *), void *arg)
{
	uint64_t *top = (uint64_t *)(((uintptr_t)(stack + size)) & ~15ul);

#if defined(__x86_64__)
	/* Popped: r15 r14 r13 r12 rbx rbp, then the return address. The
	 * return slot sits 8 below a 16-byte boundary: after the ret, rsp is
	 * 16-aligned at the trampoline's call, so entry starts with the ABI's
	 * rsp % 16 == 8 (an aligned SSE spill in any callee depends on it). */
	top[-1] = (uint64_t)(uintptr_t)halo__ctx_trampoline;
	top[-2] = 0;			      /* rbp */
	top[-3] = 0;			      /* rbx */
	top[-4] = (uint64_t)(uintptr_t)arg;   /* r12 */
	top[-5] = (uint64_t)(uintptr_t)entry; /* r13 */
	top[-6] = 0;			      /* r14 */
	top[-7] = 0;			      /* r15 */
	return &top[-7];
#elif defined(__aarch64__)
	/* 176 bytes: x19..x28, x29, x30, d8..d15; sp stays 16-aligned. */
	uint64_t *sp = top - 22;

	memset(sp, 0, 22 * sizeof(uint64_t));
	sp[0] = (uint64_t)(uintptr_t)arg;			/* x19 */
	sp[1] = (uint64_t)(uintptr_t)entry;			/* x20 */
	sp[11] = (uint64_t)(uintptr_t)halo__ctx_trampoline; /* x30 */
	return sp;
#else
#error "halo: fiber context switching is implemented for x86-64 and aarch64"
#endif
}

#endif
