/* An HTTP/1.1 server on one halo loop (server.h says what it answers).
 *   http PORT [-t idle_ms] [-m max_conns] [-b busy_poll_us] [-B]
 * PORT 0: the kernel picks one (printed). A connection idle, or with a head
 * still incomplete, for idle_ms (default 10000) is closed; beyond max_conns
 * (default 10000) connections are accepted and closed at once; -b spins
 * busy_poll_us after the last I/O before sleeping; -B receives in bundles
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

int main(int argc, char **argv)
{
	halo_loop_opts lo = {.sq_entries = 4096, .max_inflight = 32768};
	halo_server_opts so = {.idle_ns = 10000 * MS, .head_ns = 10000 * MS,
			       .ring_bufs = 4096};
	long long port = argc > 1 ? number(argv[1], 0, 65535) : -1, v;
	struct signalfd_siginfo si;
	halo_loop loop;
	sigset_t mask;
	int opt, sfd, err;
	httpd h;

	if (port < 0)
		goto usage;
	optind = 2;
	opterr = 0;
	while ((opt = getopt(argc, argv, "t:m:b:B")) != -1) {
		if (opt == 'B') {
			so.recv_bundle = 1;
			continue;
		}
		v = opt == '?' ? -1 : number(optarg, opt != 'b', 0xffffffffll);
		if (v < 0)
			goto usage;
		if (opt == 't')
			so.idle_ns = so.head_ns = (uint64_t)v * MS;
		else if (opt == 'm')
			so.max_conns = (unsigned)v;
		else
			lo.busy_poll_ns = (uint64_t)v * 1000;
	}
	if (optind != argc)
		goto usage;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
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
		"[-b busy_poll_us] [-B]\n", argv[0]);
	return 2;
}
