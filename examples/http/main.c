/* An HTTP/1.1 server on halo loops (server.h says what it answers).
 *   http PORT [-t idle_ms] [-m max_conns] [-b busy_poll_us] [-j N] [-a] [-B]
 * PORT 0: the kernel picks one (printed). A connection idle, or with a head
 * still incomplete, for idle_ms (default 10000) is closed; beyond max_conns
 * (default 10000) connections are accepted and closed at once; -b spins
 * busy_poll_us after the last I/O before sleeping. -j N serves on a group
 * of N loops, one per CPU (runtime/group.h): each listens on the port with
 * SO_REUSEPORT, or with -a one accepts and hands each connection to the
 * least loaded loop; max_conns is then per loop. -B receives in bundles
 * (off by default: requests of one buffer gain nothing from them, and the
 * bench measured 0.91-0.93x requests/s with them on). SIGINT/SIGTERM drain for
 * up to a second, then exit 0; bad arguments print usage and exit 2. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "server.h"

#define MS 1000000ull

/* s as a decimal number in min..max, or -1. */
static long long number(const char *s, long long min, long long max)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (*s < '0' || *s > '9' || *end || errno || v < min || v > max)
		return -1;
	return v;
}

/* -j N: one httpd per loop of the group. */
struct app {
	halo_server_opts so;
	int *lfd;	    /* per loop; HTTPD_PEER: a peer of the acceptor */
	httpd *h;	    /* per loop, each its loop's */
	halo_fut **stopped; /* per loop: its server drained and freed */
};

static int app_init(halo_group *g, halo_loop *loop, unsigned i, void *arg)
{
	struct app *a = arg;

	(void)g;
	return httpd_start(&a->h[i], loop, a->lfd[i], &a->so);
}

static void app_stopped(halo_fut *f, void *arg)
{
	struct app *a = arg;
	unsigned i;

	halo_fut_join(f);
	halo_group_self(&i);
	halo_server_free(a->h[i].srv);
	halo_fut_resolve(a->stopped[i], 0, NULL);
}

/* The group waits for each loop's drain before it closes the loop
 * (httpd_stop() drives the loop, which a stop callback may not). */
static halo_fut *app_stop(halo_group *g, halo_loop *loop, unsigned i,
			  void *arg)
{
	struct app *a = arg;

	(void)g;
	a->stopped[i] = halo_fut_new(loop);
	halo_fut_on_done(halo_server_stop(a->h[i].srv, 1000 * MS),
			 app_stopped, a);
	return a->stopped[i];
}

static int serve_group(const halo_loop_opts *lo, const halo_server_opts *so,
		       long long port, unsigned j, int handoff, int sfd)
{
	halo_listen_opts llo = {.backlog = 4096, .reuseport = !handoff};
	halo_group_opts go = {.count = j, .init = app_init,
			      .on_stop = app_stop, .loop = *lo};
	struct app a = {.so = *so};
	struct signalfd_siginfo si;
	halo_group *g;
	int r, real_port;

	a.so.handoff = handoff;
	go.arg = &a;
	a.lfd = calloc(j, sizeof(int));
	a.h = calloc(j, sizeof(*a.h));
	a.stopped = calloc(j, sizeof(*a.stopped));
	if (!a.lfd || !a.h || !a.stopped)
		return 1;
	/* The first listener learns the port (0: the kernel's pick); with
	 * reuseport every loop binds one of its own to it. */
	a.lfd[0] = halo_net_listen(NULL, (uint16_t)port, &llo);
	real_port = a.lfd[0] < 0 ? a.lfd[0] : halo_net_local_port(a.lfd[0]);
	for (unsigned i = 1; i < j; i++)
		a.lfd[i] = handoff || real_port < 0
				   ? HTTPD_PEER
				   : halo_net_listen(NULL, (uint16_t)real_port,
						     &llo);
	if (real_port < 0 || (r = halo_group_start(&g, &go)) < 0) {
		fprintf(stderr, "http: port %lld: %s\n", port,
			strerror(real_port < 0 ? -real_port : -r));
		return 1;
	}
	printf("http: listening on port %d with %u loops (%s)\n", real_port,
	       j, handoff ? "one acceptor" : "reuseport");
	fflush(stdout);
	/* Serve until a signal; the loops run on threads of their own. */
	while (read(sfd, &si, sizeof(si)) < 0)
		;
	r = halo_group_stop(g);
	for (unsigned i = 0; i < j; i++)
		if (a.lfd[i] >= 0)
			close(a.lfd[i]);
	free(a.lfd);
	free(a.h);
	free(a.stopped);
	close(sfd);
	return r ? 1 : 0;
}

int main(int argc, char **argv)
{
	halo_loop_opts lo = {.sq_entries = 4096, .max_inflight = 32768};
	halo_server_opts so = {.idle_ns = 10000 * MS, .head_ns = 10000 * MS,
			       .ring_bufs = 4096};
	long long port = argc > 1 ? number(argv[1], 0, 65535) : -1, v;
	struct signalfd_siginfo si;
	halo_loop loop;
	sigset_t mask;
	int opt, sfd, err, handoff = 0;
	long long j = 1;
	httpd h;

	if (port < 0)
		goto usage;
	optind = 2;
	opterr = 0;
	while ((opt = getopt(argc, argv, "t:m:b:j:aB")) != -1) {
		if (opt == 'B') {
			so.recv_bundle = 1;
			continue;
		}
		if (opt == 'a') {
			handoff = 1;
			continue;
		}
		v = opt == '?' ? -1 : number(optarg, opt != 'b', 0xffffffffll);
		if (v < 0)
			goto usage;
		if (opt == 'j')
			j = v <= HALO_GROUP_MAX ? v : -1;
		else if (opt == 't')
			so.idle_ns = so.head_ns = (uint64_t)v * MS;
		else if (opt == 'm')
			so.max_conns = (unsigned)v;
		else
			lo.busy_poll_ns = (uint64_t)v * 1000;
	}
	if (optind != argc || j < 1)
		goto usage;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd >= 0 && j > 1)
		return serve_group(&lo, &so, port, (unsigned)j, handoff, sfd);
	if (sfd < 0 || halo_loop_init(&loop, &lo) < 0) {
		fprintf(stderr, "http: %s\n",
			sfd < 0 ? strerror(errno) : halo_loop_error(&loop));
		return 1;
	}
	so.port = (uint16_t)port;
	if ((err = httpd_start(&h, &loop, -1, &so)) < 0) {
		fprintf(stderr, "http: port %lld: %s\n", port, strerror(-err));
		return 1;
	}
	printf("http: listening on port %d\n", halo_server_port(h.srv));
	fflush(stdout);
	/* Serve until a signal: waiting here drives the loop. */
	halo_fut_join(halo_read(&loop, sfd, &si, sizeof(si), -1));
	err = httpd_stop(&h, 1000 * MS);
	close(sfd);
	return err < 0 || halo_loop_close(&loop) ? 1 : 0;
usage:
	fprintf(stderr, "usage: %s PORT [-t idle_ms] [-m max_conns] "
		"[-b busy_poll_us] [-j loops] [-a] [-B]\n", argv[0]);
	return 2;
}
