/* Sweep program: the connection layer, fiber style and callback style,
 * with clients over 127.0.0.1 and a drained stop. The stop needs no memory,
 * so a server that meets none at its stop still stops and is freed. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "prog.h"

static int64_t echo_fiber(halo_conn *c, void *arg)
{
	char buf[512];
	ssize_t n;

	(void)arg;
	while ((n = halo_conn_read(c, buf, sizeof(buf))) > 0)
		if (halo_conn_write(c, buf, (size_t)n) < 0)
			break;
	return 0;
}

static size_t echo_data(halo_conn *c, const char *data, size_t len, void *arg)
{
	(void)arg;
	if (halo_conn_write(c, data, len) < 0)
		halo_conn_close(c);
	return len;
}

static const halo_conn_cbs echo_cbs = {.on_data = echo_data};

/* A client's exchange: what it sends comes back. Every wait has a
 * deadline: a server that drops a connection for want of memory closes
 * it, so a deadline that passes means a lost wake-up, unless memory stays
 * short for good. */
static void client(halo_loop *loop, int port, int i)
{
	struct sockaddr_in a;
	char msg[64], back[64];
	int fd, n = snprintf(msg, sizeof(msg), "hello %d from the sweep", i);
	size_t got = 0;
	int64_t r;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		prog_setup_failed("connect");
		goto out;
	}
	if (!EXPECT(prog_join(halo_send_all(loop, fd, msg, (size_t)n, 0)), n))
		goto out;
	while (got < (size_t)n) {
		halo_fut *f =
		    halo_recv(loop, fd, back + got, sizeof(back) - got, 0);

		if (f && halo_deadline_after(f, 2000 * MS) < 0)
			halo_fut_cancel(f);
		r = prog_join(f);
		if (r == -ETIMEDOUT && !prog_persistent())
			prog_wrong("the server never answered", __LINE__);
		if (r == 0)
			r = -ECONNRESET; /* the server dropped us */
		if (!EXPECT(r > 0 ? 0 : r, 0))
			goto out;
		got += (size_t)r;
	}
	EXPECT(memcmp(back, msg, (size_t)n), 0);
out:
	if (fd >= 0)
		close(fd);
}

static void serve(halo_loop *loop, halo_server_opts *o)
{
	halo_server *s;
	int err = 0;
	halo_fut *stop;

	o->host = "127.0.0.1";
	o->ring_bufs = 16;
	o->buf_size = 512;
	s = halo_server_start(loop, o, &err);
	if (!GOT(s)) {
		EXPECT(err, -ENOMEM);
		return;
	}
	for (int i = 0; i < 3; i++)
		client(loop, halo_server_port(s), i);
	/* A stop needs no memory: a server short of it must still stop and
	 * be freed. */
	stop = halo_server_stop(s, 50 * MS);
	if (!stop) {
		prog_wrong("the stop needed memory", __LINE__);
		return;
	}
	EXPECT(halo_fut_join(stop), 0);
	EXPECT(halo_server_free(s), 0);
}

static void step_fibers(halo_loop *loop)
{
	halo_server_opts o = {.fiber = echo_fiber};

	serve(loop, &o);
}

static void step_callbacks(halo_loop *loop)
{
	halo_server_opts o = {.cbs = &echo_cbs};

	serve(loop, &o);
}

int main(int argc, char **argv)
{
	static const struct prog_step steps[] = {
	    {"fibers", step_fibers},
	    {"callbacks", step_callbacks},
	};

	return prog_run(argc, argv, steps, sizeof(steps) / sizeof(steps[0]));
}
