/* Internal to patterns/: a pattern future completed from a callback must not
 * leave the tick that runs the callback blocked in its io_uring_enter, or a
 * loop-driving halo_fut_wait() on it sleeps until some unrelated completion.
 * Not installed as API. */
#ifndef HALO_PATTERNS_WAKE_H
#define HALO_PATTERNS_WAKE_H

#include "../runtime/loop.h"

/* Make the current (or next) tick skip blocking once: a one-shot prepare
 * hook that reports work and removes itself. Returns 0 or -ENOMEM. */
int halo__wake_tick(halo_loop *loop);

#endif
