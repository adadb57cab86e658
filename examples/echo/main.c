/* A TCP echo server on halo's connection layer: a fiber per connection
 * writes back what it reads; the layer bounds what each peer holds, closes
 * idle peers and drains on SIGINT/SIGTERM.
 *   echo PORT [-j N] [-a] [-c]   (PORT 0: any port)
 * -j N serves on a group of N loops, one per CPU (runtime/group.h): each
 * loop listens on the port with SO_REUSEPORT, or with -a one loop accepts
 * and hands each connection to the least loaded loop. -c serves with
 * callbacks instead of a fiber per connection. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include "halo.h"

/* Writes back what arrives, straight from the receive buffer: peek instead
 * of a read into a buffer of its own saves a copy and the stack it needs. */
static int64_t echo(halo_conn *c, void *arg)
{
	const void *data;
	ssize_t n;

	(void)arg;
	while ((n = halo_conn_peek(c, &data)) > 0) {
		if (halo_conn_write(c, data, (size_t)n) < 0)
			break;
		halo_conn_consume(c, (size_t)n);
	}
	return 0;
}

/* Callback style (-c): write back what arrived, all of it consumed. */
static size_t echo_data(halo_conn *c, const char *data, size_t len, void *arg)
{
	(void)arg;
	halo_conn_write(c, data, len);
	return len;
}

static const halo_conn_cbs echo_cbs = {.on_data = echo_data};

/* -j N: one server per loop of the group. */
struct app {
	halo_server_opts so;
	int handoff;
	int *lfd;		 /* per loop; -1: a peer of the acceptor */
	halo_server **srv;	 /* per loop, each its loop's */
	halo_fut **stopped;	 /* per loop: its server drained and freed */
};

static int app_init(halo_group *g, halo_loop *loop, unsigned i, void *arg)
{
	struct app *a = arg;
	int err = 0;

	(void)g;
	a->srv[i] = a->lfd[i] >= 0
			    ? halo_server_start_fd(loop, a->lfd[i], &a->so, &err)
			    : halo_server_start_peer(loop, &a->so, &err);
	return a->srv[i] ? 0 : err;
}

static void app_stopped(halo_fut *f, void *arg)
{
	struct app *a = arg;
	unsigned i;

	halo_fut_join(f);
	halo_group_self(&i);
	halo_server_free(a->srv[i]);
	halo_fut_resolve(a->stopped[i], 0, NULL);
}

/* The group waits for each loop's drain before it closes the loop. */
static halo_fut *app_stop(halo_group *g, halo_loop *loop, unsigned i,
			  void *arg)
{
	struct app *a = arg;

	(void)g;
	a->stopped[i] = halo_fut_new(loop);
	halo_fut_on_done(halo_server_stop(a->srv[i], 1000000000ull),
			 app_stopped, a);
	return a->stopped[i];
}

static int serve_group(long port, unsigned j, int handoff, int cbs, int sfd)
{
	halo_listen_opts lo = {.backlog = 4096, .reuseport = !handoff};
	halo_group_opts go = {.count = j, .init = app_init,
			      .on_stop = app_stop};
	struct app a = {.so = {.fiber = cbs ? NULL : echo,
			       .cbs = cbs ? &echo_cbs : NULL,
			       .ring_bufs = 4096, .recv_bundle = 1,
			       .handoff = handoff}};
	struct signalfd_siginfo si;
	halo_group *g;
	int r, real_port;

	go.loop = (halo_loop_opts){.sq_entries = 4096, .max_inflight = 16384};
	go.arg = &a;
	a.lfd = calloc(j, sizeof(int));
	a.srv = calloc(j, sizeof(*a.srv));
	a.stopped = calloc(j, sizeof(*a.stopped));
	if (!a.lfd || !a.srv || !a.stopped)
		return 1;
	/* The first listener learns the port (0: the kernel's pick); with
	 * reuseport every loop binds one of its own to it. */
	a.lfd[0] = halo_net_listen(NULL, (uint16_t)port, &lo);
	real_port = a.lfd[0] < 0 ? a.lfd[0] : halo_net_local_port(a.lfd[0]);
	for (unsigned i = 1; i < j; i++)
		a.lfd[i] = handoff || real_port < 0
				   ? -1
				   : halo_net_listen(NULL, (uint16_t)real_port,
						     &lo);
	if (real_port < 0 || (r = halo_group_start(&g, &go)) < 0) {
		fprintf(stderr, "echo: port %ld: %s\n", port,
			strerror(real_port < 0 ? -real_port : -r));
		return 1;
	}
	dprintf(1, "echo: listening on port %d with %u loops (%s)\n",
		real_port, j, handoff ? "one acceptor" : "reuseport");
	/* Serve until a signal; the loops run on threads of their own. */
	while (read(sfd, &si, sizeof(si)) < 0)
		;
	r = halo_group_stop(g);
	for (unsigned i = 0; i < j; i++)
		if (a.lfd[i] >= 0)
			close(a.lfd[i]);
	free(a.lfd);
	free(a.srv);
	free(a.stopped);
	return r ? 1 : 0;
}

int main(int argc, char **argv)
{
	halo_loop_opts lo = {.sq_entries = 4096, .max_inflight = 16384};
	halo_server_opts so = {.fiber = echo, .ring_bufs = 4096, .recv_bundle = 1};
	struct signalfd_siginfo si;
	halo_loop loop;
	halo_server *s;
	sigset_t mask;
	char *end = NULL;
	long port = argc >= 2 ? strtol(argv[1], &end, 10) : -1, j = 1;
	int sfd, err = 0, handoff = 0, cbs = 0, opt;

	if (port < 0 || port > 65535 || !end || *end || end == argv[1])
		goto usage;
	optind = 2;
	while ((opt = getopt(argc, argv, "j:ac")) != -1) {
		if (opt == 'a' || opt == 'c') {
			*(opt == 'a' ? &handoff : &cbs) = 1;
			continue;
		}
		j = opt == 'j' ? strtol(optarg, &end, 10) : -1;
		if (j < 1 || j > HALO_GROUP_MAX || *end)
			goto usage;
	}
	if (optind != argc)
		goto usage;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd >= 0 && j > 1)
		return serve_group(port, (unsigned)j, handoff, cbs, sfd);
	if (sfd < 0 || halo_loop_init(&loop, &lo) < 0) {
		fprintf(stderr, "echo: %s\n", halo_loop_error(&loop));
		return 1;
	}
	so.port = (uint16_t)port;
	if (cbs) {
		so.fiber = NULL;
		so.cbs = &echo_cbs;
	}
	if (!(s = halo_server_start(&loop, &so, &err))) {
		fprintf(stderr, "echo: port %ld: %s\n", port, strerror(-err));
		return 1;
	}
	dprintf(1, "echo: listening on port %d\n", halo_server_port(s));
	/* Serve until a signal: waiting here drives the loop. */
	halo_fut_join(halo_read(&loop, sfd, &si, sizeof(si), -1));
	halo_fut_join(halo_server_stop(s, 1000000000ull));
	halo_server_free(s);
	return halo_loop_close(&loop) ? 1 : 0;
usage:
	fprintf(stderr,
		"usage: %s PORT [-j loops] [-a] [-c]  (PORT 0: any port)\n",
		argv[0]);
	return 2;
}
