#include "bench.h"

#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static FILE *out_file(void)
{
	static FILE *f;
	const char *path;

	if (f)
		return f;
	path = getenv("HALO_BENCH_OUT");
	f = fopen(path ? path : "bench/results.jsonl", "a");
	if (!f) {
		perror("bench: results file");
		exit(1);
	}
	return f;
}

void bench_emit(const char *bench, const char *case_name, const char *metric,
		double value, const char *unit, const char *baseline,
		double baseline_value, int higher_is_better)
{
	FILE *f = out_file();

	fprintf(f, "{\"bench\":\"%s\",\"case\":\"%s\",\"metric\":\"%s\","
		   "\"value\":%.6g,\"unit\":\"%s\"",
		bench, case_name, metric, value, unit);
	if (baseline && baseline_value > 0 && value > 0) {
		double ratio = higher_is_better ? value / baseline_value
						: baseline_value / value;
		fprintf(f, ",\"baseline\":\"%s\",\"baseline_value\":%.6g,"
			   "\"ratio\":%.4f",
			baseline, baseline_value, ratio);
	}
	fprintf(f, "}\n");
	fflush(f);
	fprintf(stderr, "  [%s] %-28s %-18s %12.4g %s", bench, case_name,
		metric, value, unit);
	if (baseline && baseline_value > 0 && value > 0)
		fprintf(stderr, "   vs %s %.4g  ratio %.2f", baseline,
			baseline_value,
			higher_is_better ? value / baseline_value
					 : baseline_value / value);
	fprintf(stderr, "\n");
}

void bench_progress(const char *bench, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "[%s] ", bench);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
}

uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void bench_pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	(void)sched_setaffinity(0, sizeof(set), &set);
}

double bench_scale(void)
{
	const char *s = getenv("HALO_BENCH_SCALE");
	double v = s ? atof(s) : 1.0;

	return v > 0 ? v : 1.0;
}

uint64_t bench_thread_cpu_ns(void)
{
	struct rusage ru;

	getrusage(RUSAGE_THREAD, &ru);
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) *
		   1000000000ull +
	       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
}

void *bench_drain(void *arg)
{
	static char buf[1 << 20];
	int fd = *(int *)arg;

	bench_pin(1);
	while (recv(fd, buf, sizeof(buf), 0) > 0)
		;
	return NULL;
}
