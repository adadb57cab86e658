/* One-shot prepare hook: reporting work keeps the tick's enter from
 * blocking; run_hooks() reads the next hook before calling this one, so it
 * may unlink and free itself. */
#include <errno.h>

#include "wake.h"

#include "../runtime/pool.h"

static int wake_once(halo_loop *loop, void *arg)
{
	halo_hook *h = arg;

	halo_loop_prepare_remove(loop, h);
	halo_mem_free(loop, h, sizeof(*h));
	return 1;
}

int halo__wake_tick(halo_loop *loop)
{
	halo_hook *h = halo_mem_alloc(loop, sizeof(*h));

	if (!h)
		return -ENOMEM;
	halo_loop_prepare_add(loop, h, wake_once, h);
	return 0;
}
