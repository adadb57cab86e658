/* An HTTP/1.1 server on one halo loop: GET / answers "hello, world!\n".
 *
 *   http PORT [-t idle_ms] [-m max_conns]
 *
 * Keep-alive and pipelining; a head over 8 KiB gets 431 and a malformed one
 * 400, then the connection closes; a connection without a complete request
 * for idle_ms (default 10000) is closed; beyond max_conns (default 10000)
 * new connections are accepted and closed at once. SIGINT/SIGTERM stop it. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "server.h"

static halo_loop loop;

static void on_signal(halo_fut *f, void *arg)
{
	(void)arg;
	halo_fut_release(f);
	halo_loop_stop(&loop);
}

int main(int argc, char **argv)
{
	halo_loop_opts lo = { .sq_entries = 4096, .max_inflight = 32768 };
	httpd_opts o = { 0 };
	struct signalfd_siginfo si;
	sigset_t mask;
	halo_fut *sig;
	httpd *s;
	int lfd, sfd, err = 0, r, opt;

	if (argc < 2) {
		fprintf(stderr,
			"usage: %s PORT [-t idle_ms] [-m max_conns] "
			"[-b busy_poll_us]\n",
			argv[0]);
		return 2;
	}
	optind = 2;
	while ((opt = getopt(argc, argv, "t:m:b:")) != -1) {
		if (opt == 'b')
			lo.busy_poll_ns = strtoull(optarg, NULL, 10) * 1000ull;
		else if (opt == 't')
			o.idle_ns = strtoull(optarg, NULL, 10) * 1000000ull;
		else if (opt == 'm')
			o.max_conns = (unsigned)strtoul(optarg, NULL, 10);
		else
			return 2;
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	lfd = halo_net_listen(NULL, (uint16_t)atoi(argv[1]),
			      &(halo_listen_opts){ .backlog = 4096 });
	if (sfd < 0 || lfd < 0) {
		fprintf(stderr, "http: listen on %s: %s\n", argv[1],
			strerror(lfd < 0 ? -lfd : errno));
		return 1;
	}
	r = halo_loop_init(&loop, &lo);
	if (r < 0) {
		fprintf(stderr, "http: %s\n", halo_loop_error(&loop));
		return 1;
	}
	s = httpd_start(&loop, lfd, &o, &err);
	if (!s) {
		fprintf(stderr, "http: %s\n", strerror(-err));
		return 1;
	}
	sig = halo_read(&loop, sfd, &si, sizeof(si), -1);
	if (!sig || halo_fut_on_done(sig, on_signal, NULL) < 0)
		return 1;
	halo_fut_consume(sig);
	printf("http: listening on port %d\n", halo_net_local_port(lfd));
	fflush(stdout);
	r = halo_loop_run(&loop);
	if (r < 0)
		fprintf(stderr, "http: loop: %s\n", strerror(-r));
	httpd_stop(s);
	halo_loop_close(&loop);
	close(lfd);
	close(sfd);
	return r < 0 ? 1 : 0;
}
