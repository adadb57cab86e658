/* The HTTP/1.1 example server's connection handling, apart from main() so
 * that tests can run it on their own loop: GET / answers "hello, world!\n",
 * keep-alive, pipelined requests answered in order with one send per batch,
 * 400/431 then close for bad heads, an idle deadline per connection and a
 * connection cap. */
#ifndef HALO_EXAMPLE_HTTPD_H
#define HALO_EXAMPLE_HTTPD_H

#include <stdint.h>

#include "halo.h"
#include "io/http.h"

typedef struct httpd_opts {
	uint64_t idle_ns;  /* close a connection this long without a complete
			      request (slowloris defence), default 10 s */
	unsigned max_conns; /* beyond it, accept and close at once; 10000 */
	uint16_t bgid;	   /* buffer group of the receive ring, default 0 */
} httpd_opts;

typedef struct httpd_stats {
	uint64_t accepted;
	uint64_t refused;   /* closed at once: over the cap */
	uint64_t requests;
	uint64_t timeouts;  /* closed for idleness */
	uint64_t bad;	    /* 400 or 431 */
	unsigned conns;	    /* open now */
} httpd_stats;

typedef struct httpd httpd;

/* Start serving the listening socket lfd on loop. Returns the server or NULL
 * with *err = -errno. */
httpd *httpd_start(halo_loop *loop, int lfd, const httpd_opts *opts,
		   int *err);

/* Stop accepting, close every connection, free the server once the kernel
 * let go of everything; run the loop until halo_loop has no work after. */
void httpd_stop(httpd *s);

void httpd_get_stats(const httpd *s, httpd_stats *out);

#endif
