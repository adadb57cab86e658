/* halo: a kernel-assisted I/O runtime for Linux. One include for everything. */
#ifndef HALO_H
#define HALO_H

#include "runtime/fiber.h"
#include "runtime/fut.h"
#include "runtime/group.h"
#include "runtime/hist.h"
#include "runtime/loop.h"
#include "runtime/pool.h"
#include "runtime/stall.h"
#include "runtime/timer.h"

#include "io/file.h"
#include "io/http.h"
#include "io/net.h"
#include "io/poll.h"
#include "io/sendring.h"
#include "io/timeout.h"

#include "patterns/aggregate.h"
#include "patterns/groupcommit.h"
#include "patterns/marksweep.h"
#include "patterns/poller.h"
#include "patterns/sockwriter.h"
#include "patterns/gather.h"
#include "patterns/wait.h"
#include "patterns/build.h"
#include "patterns/scope.h"
#include "patterns/limit.h"
#include "patterns/as_completed.h"
#include "patterns/adaptive.h"
#include "patterns/dag.h"
#include "patterns/chan.h"
#include "patterns/stream.h"
#include "patterns/server.h"
#include "patterns/retry.h"
#include "patterns/breaker.h"
#include "patterns/saga.h"
#include "patterns/sparse.h"

#endif
