/* The frame of the fault sweep's programs: steps, the verdict, clean-up
 * helpers. See prog.h. */
#include "prog.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fault.h"

static const char *step_name = "init";
static int wrong_n, nomem_n, setup_n;

bool prog_faulted(void)
{
#ifdef HALO_FAULT
	return halo__fault_failed() > 0;
#else
	return false;
#endif
}

bool prog_expect(int64_t got, int64_t want, const char *what, int line)
{
	if (got == want)
		return true;
	/* -EDEADLK means a future that nothing will ever complete: a lost
	 * wake-up, not an allocation that failed cleanly. */
	if (got < 0 && got != -EDEADLK && prog_faulted()) {
		nomem_n++;
		fprintf(stderr, "fault: %s:%d: %s = %s\n", step_name, line,
			what, strerror((int)-got));
		return false;
	}
	wrong_n++;
	fprintf(stderr, "WRONG: %s:%d: %s = %lld (%s), want %lld\n", step_name,
		line, what, (long long)got, got < 0 ? strerror((int)-got) : "-",
		(long long)want);
	return false;
}

bool prog_got(bool ok, const char *what, int line)
{
	if (ok)
		return true;
	if (prog_faulted()) {
		nomem_n++;
		fprintf(stderr, "fault: %s:%d: %s is NULL\n", step_name, line,
			what);
	} else {
		wrong_n++;
		fprintf(stderr,
			"WRONG: %s:%d: %s is NULL with nothing failed\n",
			step_name, line, what);
	}
	return false;
}

void prog_wrong(const char *what, int line)
{
	wrong_n++;
	fprintf(stderr, "WRONG: %s:%d: %s\n", step_name, line, what);
}

bool prog_persistent(void)
{
	const char *nth = getenv("HALO_FAULT_NTH");

	return nth && *nth && nth[strlen(nth) - 1] == '+';
}

void prog_setup_failed(const char *what)
{
	setup_n++;
	fprintf(stderr, "setup: %s: %s: %s\n", step_name, what,
		strerror(errno));
}

int64_t prog_join(halo_fut *f)
{
	return f ? halo_fut_join(f) : -ENOMEM;
}

void prog_drop(halo_fut **f, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (f[i] && !halo_fut_is_done(f[i]))
			halo_fut_cancel(f[i]);
	for (size_t i = 0; i < n; i++) {
		if (!f[i])
			continue;
		if (!halo_fut_is_done(f[i]))
			halo_fut_wait(f[i]);
		halo_fut_release(f[i]);
		f[i] = NULL;
	}
}

/* What a step must leave behind: nothing running, no future alive. */
static void check_quiet(halo_loop *loop, const halo_stats *before)
{
	halo_stats st;

	for (int i = 0; i < 100 && halo_loop_run_nowait(loop) > 0; i++)
		;
	halo_loop_stats(loop, &st);
	if (st.live_futures != before->live_futures || st.inflight ||
	    st.live_fibers != before->live_fibers) {
		wrong_n++;
		fprintf(stderr,
			"WRONG: %s left %lld futures, %llu operations, %lld "
			"fibers behind\n",
			step_name,
			(long long)(st.live_futures - before->live_futures),
			(unsigned long long)st.inflight,
			(long long)(st.live_fibers - before->live_fibers));
	}
}

int prog_run(int argc, char **argv, const struct prog_step *steps, size_t n)
{
	halo_loop loop;
	int leaked, r = halo_loop_init(&loop, NULL);

	if (r < 0) {
		fprintf(stderr, "setup: halo_loop_init: %s\n",
			halo_loop_error(&loop));
		return PROG_SETUP;
	}
	for (size_t i = 0; i < n; i++) {
		halo_stats before;

		if (argc > 1 && strcmp(argv[1], steps[i].name) != 0)
			continue;
		step_name = steps[i].name;
		halo_loop_stats(&loop, &before);
		steps[i].fn(&loop);
		check_quiet(&loop, &before);
	}
	step_name = "close";
	leaked = halo_loop_close(&loop);
	if (leaked)
		return PROG_LEAK;
	if (wrong_n)
		return PROG_WRONG;
	if (setup_n)
		return PROG_SETUP;
	return nomem_n ? PROG_NOMEM : PROG_OK;
}
