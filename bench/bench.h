/* Shared by every benchmark: a progress line per case on stderr and one JSON
 * object per case in $HALO_BENCH_OUT (default bench/results.jsonl), with keys
 * bench, case, metric, value, unit and, where a baseline ran in the same
 * process, baseline, baseline_value and ratio (halo / baseline, oriented so
 * that > 1 means halo is better). */
#ifndef HALO_BENCH_H
#define HALO_BENCH_H

#include <stdint.h>

/* Record one result. baseline may be NULL (no baseline ran). higher_is_better
 * orients the ratio: for a time per op, ratio = baseline_value / value. */
void bench_emit(const char *bench, const char *case_name, const char *metric,
		double value, const char *unit, const char *baseline,
		double baseline_value, int higher_is_better);

/* Print "[bench] case ..." to stderr so a person sees progress. */
void bench_progress(const char *bench, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* CLOCK_MONOTONIC in ns. */
uint64_t bench_now_ns(void);

/* Pin the calling thread to cpu (ignored if it fails). */
void bench_pin(int cpu);

/* Scale factor for quick runs: $HALO_BENCH_SCALE (default 1.0). */
double bench_scale(void);

/* CPU time (user + system) of the calling thread, in ns. */
uint64_t bench_thread_cpu_ns(void);

/* A reader thread's body: pinned to CPU 1, it reads the socket *(int *)arg
 * until EOF or an error, and throws the bytes away. */
void *bench_drain(void *arg);

#endif
