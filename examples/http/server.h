/* The HTTP/1.1 example server's request handling, apart from main() so that
 * tests can run it on their own loop. It is a callback of halo's connection
 * layer (patterns/server.h), which owns sockets, buffers, deadlines, the cap
 * and the drain: GET / answers "hello, world!\n", anything else 404, a HEAD
 * the head alone; keep-alive, pipelined requests answered in order; a head
 * over HALO_HTTP_MAX_HEAD gets 431 and a malformed one (an invalid Host too)
 * 400, then the connection closes once the answer is out. */
#ifndef HALO_EXAMPLE_HTTPD_H
#define HALO_EXAMPLE_HTTPD_H

#include <stdint.h>

#include "halo.h"

#define HTTPD_KINDS 6 /* answers: 200 and 404 to GET and HEAD, 400, 431 */

/* A server: the caller's memory, filled by httpd_start(). */
typedef struct httpd {
	halo_server *srv;  /* the connection layer's: port, counters */
	uint64_t requests; /* answered, 400 and 431 aside */
	uint64_t bad;	   /* answered 400 or 431 */
	/* The answers, made once, by kind and keep-alive. */
	char ans[HTTPD_KINDS][2][160];
	int ans_n[HTTPD_KINDS][2];
} httpd;

/* httpd_start()'s lfd for a server that only serves the connections an
 * acceptor of its loop group hands it (halo_server_start_peer()). */
#define HTTPD_PEER (-2)

/* Serve HTTP on loop: on the listening socket lfd (which stays the caller's)
 * or, with lfd -1, on opts->host and opts->port (HTTPD_PEER: above). opts sets the deadlines, the
 * cap and the buffers (its cbs and arg are the server's own). h must stay
 * valid until httpd_stop() returns 0. Returns 0 or -errno. */
int httpd_start(httpd *h, halo_loop *loop, int lfd,
		const halo_server_opts *opts);

/* Stop accepting, let requests in flight finish for up to drain_ns, then
 * close what is left. Drives the loop until every connection is closed:
 * call it on the loop's thread, outside any callback. Returns 0, or -errno
 * with h left serving. */
int httpd_stop(httpd *h, uint64_t drain_ns);

#endif
