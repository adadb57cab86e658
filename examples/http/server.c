/* HTTP/1.1 as a callback of the connection layer: on_data parses every
 * complete request in place (in the ring buffer, or in the layer's carry
 * buffer when a head spans receives) and queues its answer; the layer sends
 * all the answers of one call in one send and bounds what a peer holds. The
 * only state of a connection is the count of body bytes still to skip, kept
 * in its user pointer: an idle connection costs the layer's bytes alone. */
#include <errno.h>

#include "io/http.h"
#include "server.h"

#define BODY "hello, world!\n"
#define NOT_FOUND "not found\n"

/* The answer to a HEAD follows the answer to its GET. */
enum { OK, HEAD_OK, MISSING, HEAD_MISSING, BAD, TOO_BIG, KINDS };
_Static_assert(KINDS == HTTPD_KINDS, "an answer of each kind");

static const struct {
	int status;
	const char *body; /* NULL: the head alone, announcing len bytes */
	size_t len;
} kinds[KINDS] = {
	[OK] = {200, BODY, sizeof(BODY) - 1},
	[HEAD_OK] = {200, NULL, sizeof(BODY) - 1},
	[MISSING] = {404, NOT_FOUND, sizeof(NOT_FOUND) - 1},
	[HEAD_MISSING] = {404, NULL, sizeof(NOT_FOUND) - 1},
	[BAD] = {400, NULL, 0},
	[TOO_BIG] = {431, NULL, 0},
};

/* Queue an answer; without keep-alive (or without memory for it) the
 * connection closes once what is queued is out, or when the close deadline
 * says it never will be. */
static void answer(halo_conn *c, httpd *h, int kind, bool keep_alive)
{
	if (halo_conn_write(c, h->ans[kind][keep_alive],
			    (size_t)h->ans_n[kind][keep_alive]) < 0 ||
	    !keep_alive)
		halo_conn_close(c);
}

/* Answer the complete requests at data and return the bytes they took; a
 * partial head is left to the layer, which hands it again with what
 * follows. */
static size_t on_data(halo_conn *c, const char *data, size_t len, void *arg)
{
	httpd *h = arg;
	uint64_t skip = (uintptr_t)halo_conn_data(c);
	size_t used = 0;

	while (used < len) {
		halo_http_req req;
		bool head, hello;
		int n;

		if (skip) {
			size_t k = len - used < skip ? len - used : skip;

			used += k;
			skip -= k;
			continue;
		}
		n = halo_http_parse(data + used, len - used, &req);
		if (n == 0)
			break;
		/* RFC 9112 3.2: 400 for an invalid Host as for a missing
		 * one (which the parser refuses in HTTP/1.1). */
		if (n > 0 && req.host.ptr &&
		    !halo_http_host_valid(req.host.ptr, req.host.len))
			n = -EBADMSG;
		if (n < 0) {
			h->bad++;
			answer(c, h, n == -EMSGSIZE ? TOO_BIG : BAD, false);
			return len;
		}
		used += (size_t)n;
		skip = req.content_length;
		h->requests++;
		head = req.method_id == HALO_HTTP_HEAD;
		hello = req.target.len == 1 && req.target.ptr[0] == '/' &&
			(head || req.method_id == HALO_HTTP_GET);
		answer(c, h, (hello ? OK : MISSING) + head, req.keep_alive);
		if (!req.keep_alive)
			return len;
	}
	halo_conn_set_data(c, (void *)(uintptr_t)skip);
	return used;
}

int httpd_start(httpd *h, halo_loop *loop, int lfd,
		const halo_server_opts *opts)
{
	static const halo_conn_cbs cbs = {.on_data = on_data};
	halo_server_opts o = *opts;
	int err = 0;

	h->requests = h->bad = 0;
	for (int k = 0; k < KINDS; k++)
		for (int ka = 0; ka < 2; ka++)
			h->ans_n[k][ka] = halo_http_response(
				h->ans[k][ka], sizeof(h->ans[k][ka]),
				kinds[k].status, kinds[k].body, kinds[k].len,
				ka);
	o.cbs = &cbs;
	o.arg = h;
	if (lfd == HTTPD_PEER)
		h->srv = halo_server_start_peer(loop, &o, &err);
	else
		h->srv = lfd < 0 ? halo_server_start(loop, &o, &err)
				 : halo_server_start_fd(loop, lfd, &o, &err);
	return h->srv ? 0 : err;
}

int httpd_stop(httpd *h, uint64_t drain_ns)
{
	halo_fut *f = halo_server_stop(h->srv, drain_ns);
	int r = f ? (int)halo_fut_join(f) : -ENOMEM;

	return r < 0 ? r : halo_server_free(h->srv);
}
