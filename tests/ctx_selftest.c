/* The bare context switch, on its own: two contexts ping-pong many times
 * while each keeps callee-saved integer and floating-point values live
 * across the switches, and a deep call on the new stack checks its
 * alignment. Part of the fiber suite natively; built alone with
 * -DCTX_SELFTEST_MAIN for other architectures (make cross-aarch64 runs it
 * under qemu). Returns 0 when every check holds. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "runtime/ctx.h"

#define ROUNDS 100000

static void *main_sp, *peer_sp;
static volatile long peer_rounds;
static int peer_bad;

static int __attribute__((noinline)) aligned_ok(void)
{
	/* A 16-byte-aligned local must really be aligned. */
	long double x __attribute__((aligned(16))) = 1.0L;

	return ((uintptr_t)&x & 15) == 0;
}

static void peer(void *arg)
{
	uint64_t k = (uint64_t)(uintptr_t)arg;
	double d = 0.5;

	if (!aligned_ok())
		peer_bad = 1;
	for (;;) {
		uint64_t before = k;
		double dbefore = d;

		halo__ctx_switch(&peer_sp, main_sp);
		if (k != before || d != dbefore)
			peer_bad = 1;
		k = k * 6364136223846793005ull + 1442695040888963407ull;
		d = d * 1.0000001 + 0.25;
		peer_rounds++;
	}
}

int ctx_selftest(void)
{
	static char stack[64 * 1024] __attribute__((aligned(16)));
	uint64_t a = 12345, b = 678910;
	double x = 3.25, y = -1.5;

	peer_sp = halo__ctx_init(stack, sizeof(stack), peer, (void *)77);
	for (long i = 0; i < ROUNDS; i++) {
		uint64_t a0 = a, b0 = b;
		double x0 = x, y0 = y;

		halo__ctx_switch(&main_sp, peer_sp);
		if (a != a0 || b != b0 || x != x0 || y != y0) {
			fprintf(stderr, "ctx: main lost a register value\n");
			return 1;
		}
		a += i;
		b ^= a;
		x += 0.5;
		y *= -1.0;
	}
	if (peer_bad || peer_rounds != ROUNDS - 1) {
		fprintf(stderr, "ctx: peer bad=%d rounds=%ld\n", peer_bad,
			(long)peer_rounds);
		return 1;
	}
	return 0;
}

#ifdef CTX_SELFTEST_MAIN
int main(void)
{
	int r = ctx_selftest();

	printf("ctx selftest: %s\n", r ? "FAILED" : "ok");
	return r;
}
#endif
