/* A TCP echo server on halo's connection layer: a fiber per connection
 * writes back what it reads; the layer bounds what each peer holds, closes
 * idle peers and drains on SIGINT/SIGTERM.   echo PORT   (0: any port) */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include "halo.h"

static int64_t echo(halo_conn *c, void *arg)
{
	char buf[8192];
	ssize_t n;

	(void)arg;
	while ((n = halo_conn_read(c, buf, sizeof(buf))) > 0)
		if (halo_conn_write(c, buf, (size_t)n) < 0)
			break;
	return 0;
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
	long port = argc == 2 ? strtol(argv[1], &end, 10) : -1;
	int sfd, err = 0;

	if (port < 0 || port > 65535 || !end || *end || end == argv[1]) {
		fprintf(stderr, "usage: %s PORT  (0: any port)\n", argv[0]);
		return 2;
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd < 0 || halo_loop_init(&loop, &lo) < 0) {
		fprintf(stderr, "echo: %s\n", halo_loop_error(&loop));
		return 1;
	}
	so.port = (uint16_t)port;
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
}
