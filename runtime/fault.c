/* Allocation fault injection (see fault.h). Only make FAULT=1 compiles the
 * body; the counters are atomic so that loops on several threads share one
 * count, which keeps a sweep point the same point from run to run. */
#include "fault.h"

#ifdef HALO_FAULT

#include "fault_libc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define HAVE_SANITIZER_TRACE 1
#else
#include <execinfo.h>
#endif

static const char *const kind_names[HALO_FAULT_KINDS + 1] = {
    "heap", "slot", "refill", "stack", "any",
};

static struct {
	uint64_t count[HALO_FAULT_KINDS + 1]; /* the last one: all kinds */
	uint64_t failed;
	uint64_t nth; /* 0: disarmed; else the count that fails */
	int kind;
	bool persist;
	bool trace;
	const char *counts_path;
} fault;

static uint64_t add(uint64_t *p)
{
	return __atomic_add_fetch(p, 1, __ATOMIC_RELAXED);
}

static void trace(int kind, uint64_t n)
{
	char msg[96];
	int len = snprintf(msg, sizeof(msg),
			   "halo fault: failing %s allocation #%llu\n",
			   kind_names[kind], (unsigned long long)n);

	if (write(STDERR_FILENO, msg, (size_t)len) < 0)
		return;
#ifdef HAVE_SANITIZER_TRACE
	__sanitizer_print_stack_trace();
#else
	void *pcs[32];
	backtrace_symbols_fd(pcs, backtrace(pcs, 32), STDERR_FILENO);
#endif
}

bool halo__fault(enum halo_fault_kind kind)
{
	uint64_t n = add(&fault.count[kind]);
	uint64_t all = add(&fault.count[HALO_FAULT_ANY]);
	uint64_t nth = __atomic_load_n(&fault.nth, __ATOMIC_RELAXED);

	if (!nth)
		return false;
	if (fault.kind == HALO_FAULT_ANY)
		n = all;
	else if (fault.kind != (int)kind)
		return false;
	if (n != nth && !(fault.persist && n > nth))
		return false;
	add(&fault.failed);
	if (fault.trace)
		trace(kind, n);
	return true;
}

void halo__fault_arm(enum halo_fault_kind kind, uint64_t nth, bool persist)
{
	fault.kind = kind;
	fault.persist = persist;
	__atomic_store_n(&fault.nth,
			 __atomic_load_n(&fault.count[kind], __ATOMIC_RELAXED) +
			     nth,
			 __ATOMIC_RELAXED);
}

void halo__fault_disarm(void)
{
	__atomic_store_n(&fault.nth, 0, __ATOMIC_RELAXED);
}

void halo__fault_reset(void)
{
	halo__fault_disarm();
	for (int k = 0; k <= HALO_FAULT_KINDS; k++)
		__atomic_store_n(&fault.count[k], 0, __ATOMIC_RELAXED);
	__atomic_store_n(&fault.failed, 0, __ATOMIC_RELAXED);
}

uint64_t halo__fault_count(enum halo_fault_kind kind)
{
	return __atomic_load_n(&fault.count[kind], __ATOMIC_RELAXED);
}

uint64_t halo__fault_failed(void)
{
	return __atomic_load_n(&fault.failed, __ATOMIC_RELAXED);
}

static int kind_of(const char *s)
{
	for (int k = 0; k <= HALO_FAULT_KINDS; k++)
		if (strcmp(s, kind_names[k]) == 0)
			return k;
	return -1;
}

static void bad_env(const char *what)
{
	fprintf(stderr, "halo fault: ignoring %s (see runtime/fault.h)\n",
		what);
}

/* Read the environment before main: the first allocations of a program
 * count too. */
__attribute__((constructor)) static void fault_from_env(void)
{
	const char *kind = getenv("HALO_FAULT_KIND");
	const char *nth = getenv("HALO_FAULT_NTH");
	char *end;
	unsigned long long n;
	int k;

	fault.counts_path = getenv("HALO_FAULT_COUNTS");
	fault.trace = getenv("HALO_FAULT_TRACE") != NULL;
	if (!kind && !nth)
		return;
	k = kind ? kind_of(kind) : HALO_FAULT_ANY;
	if (k < 0 || !nth) {
		bad_env("HALO_FAULT_KIND/HALO_FAULT_NTH");
		return;
	}
	errno = 0;
	n = strtoull(nth, &end, 10);
	if (errno || n == 0 || (*end && strcmp(end, "+") != 0)) {
		bad_env("HALO_FAULT_NTH");
		return;
	}
	halo__fault_arm((enum halo_fault_kind)k, n, *end == '+');
}

__attribute__((destructor)) static void fault_counts_out(void)
{
	char line[160];
	int fd, len;

	if (!fault.counts_path)
		return;
	len = snprintf(line, sizeof(line),
		       "heap=%llu slot=%llu refill=%llu stack=%llu "
		       "failed=%llu\n",
		       (unsigned long long)halo__fault_count(HALO_FAULT_HEAP),
		       (unsigned long long)halo__fault_count(HALO_FAULT_SLOT),
		       (unsigned long long)halo__fault_count(HALO_FAULT_REFILL),
		       (unsigned long long)halo__fault_count(HALO_FAULT_STACK),
		       (unsigned long long)halo__fault_failed());
	fd = open(fault.counts_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		  0644);
	if (fd < 0)
		return;
	if (write(fd, line, (size_t)len) != len)
		bad_env("HALO_FAULT_COUNTS (short write)");
	close(fd);
}

/* The library's raw allocations, under the macros of fault_libc.h. The
 * parentheses keep those macros from expanding here. */
void *halo__fault_malloc(size_t n)
{
	return halo__fault(HALO_FAULT_HEAP) ? NULL : (malloc)(n);
}

void *halo__fault_calloc(size_t n, size_t size)
{
	return halo__fault(HALO_FAULT_HEAP) ? NULL : (calloc)(n, size);
}

void *halo__fault_realloc(void *p, size_t n)
{
	return halo__fault(HALO_FAULT_HEAP) ? NULL : (realloc)(p, n);
}

int halo__fault_posix_memalign(void **p, size_t align, size_t n)
{
	return halo__fault(HALO_FAULT_HEAP) ? ENOMEM
					    : (posix_memalign)(p, align, n);
}

#else

/* ISO C wants a translation unit to declare something. */
typedef int halo__fault_off;

#endif
