/* Sweep program: sparse tasks on their journal (submits, events, timeouts,
 * a heartbeat, close and replay) and on a store that fails records. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "prog.h"

enum { TASKS = 20 };

static int alerts, dones;

static void on_alert(halo_sparse *s, uint64_t id, void *arg)
{
	(void)s;
	(void)id;
	(void)arg;
	alerts++;
}

static void on_done(halo_sparse *s, uint64_t id, halo_sparse_outcome o,
		    int64_t result, void *arg)
{
	(void)s;
	(void)id;
	(void)o;
	(void)result;
	(void)arg;
	dones++;
}

static halo_fut *start(halo_sparse *s, uint64_t id, const void *payload,
		       size_t len, void *arg)
{
	(void)payload;
	(void)len;
	(void)arg;
	return halo_fut_ready(halo_sparse_loop(s), (int64_t)id, NULL);
}

/* Drain the records, then close (a failed flush allocation must not keep
 * the sparse open: run the loop until nothing is in flight). */
static void close_all(halo_loop *loop, halo_sparse *s)
{
	prog_join(halo_sparse_flush(s));
	while (halo_sparse_close(s) == -EBUSY)
		halo_loop_run_once(loop);
}

static void settle(halo_loop *loop, int want_alerts, int want_dones)
{
	for (int i = 0; i < 500 && (alerts < want_alerts || dones < want_dones);
	     i++)
		if (prog_join(halo_timer_after(loop, MS)) < 0)
			halo_loop_run_once(loop);
}

static void step_journal(halo_loop *loop)
{
	char dir[] = "/tmp/halo-fault-sparse-XXXXXX", path[64];
	halo_sparse_opts o = {.submit_fn = start,
			      .alert_fn = on_alert,
			      .done_fn = on_done,
			      .compact_min = 8,
			      .compact_factor = 2};
	halo_fut *f[TASKS] = {0};
	bool started[TASKS] = {0};
	halo_sparse s;
	int ok = 0;

	if (!mkdtemp(dir)) {
		prog_setup_failed("mkdtemp");
		return;
	}
	snprintf(path, sizeof(path), "%s/j", dir);
	o.path = path;
	alerts = dones = 0;
	if (!EXPECT(halo_sparse_open(&s, loop, &o), 0))
		goto out;
	for (int i = 0; i < TASKS; i++) {
		uint64_t t = i % 2 ? 2 * MS : 10000 * MS;

		if (EXPECT(
			halo_sparse_submit(&s, (uint64_t)i, t, "pay", 3, &f[i]),
			0))
			ok += started[i] = EXPECT(halo_fut_wait(f[i]), i);
	}
	prog_drop(f, TASKS);
	/* Even ones end by events, but 2, which only beats; odd ones time
	 * out. */
	for (int i = 0; i < TASKS; i += 2)
		if (i != 2 && started[i])
			EXPECT(halo_sparse_complete(&s, (uint64_t)i,
						    HALO_SPARSE_OK, 0, NULL),
			       0);
	if (started[2])
		EXPECT(halo_sparse_heartbeat(&s, 2, 10000 * MS), 0);
	settle(loop, TASKS / 2, TASKS / 2 - 1);
	if (!prog_faulted() && ok == TASKS) {
		EXPECT(alerts, TASKS / 2);
		EXPECT(dones, TASKS / 2 - 1);
	}
	close_all(loop, &s);
	if (!EXPECT(halo_sparse_open(&s, loop, &o), 0))
		goto out;
	if (!prog_faulted())
		EXPECT(halo_sparse_pending(&s), 1);
	close_all(loop, &s);
out:
	unlink(path);
	rmdir(dir);
}

int main(int argc, char **argv)
{
	static const struct prog_step steps[] = {
	    {"journal", step_journal},
	};

	return prog_run(argc, argv, steps, sizeof(steps) / sizeof(steps[0]));
}
