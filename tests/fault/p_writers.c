/* Sweep program: group commit to a file and the socket writer. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "prog.h"

enum { RECS = 80, REC = 100 }; /* past the first 64 records and 4 KiB */

static void step_groupcommit(halo_loop *loop)
{
	char path[] = "/tmp/halo-fault-gc-XXXXXX";
	static unsigned char rec[RECS][REC], back[REC];
	halo_fut *f[RECS];
	halo_gc gc;
	int fd = mkstemp(path);

	if (fd < 0) {
		prog_setup_failed("mkstemp");
		return;
	}
	unlink(path);
	if (!EXPECT(halo_gc_init(&gc, loop, fd, NULL), 0))
		goto out;
	/* Three ticks of appends: batches gather while one is in flight. */
	for (int i = 0; i < RECS; i++) {
		memset(rec[i], 'a' + i % 26, REC);
		GOT(f[i] = halo_gc_append(&gc, rec[i], REC));
		if (i % 15 == 14)
			halo_loop_run_nowait(loop);
	}
	for (int i = 0; i < RECS; i++) {
		int64_t off;

		if (!f[i])
			continue;
		off = halo_fut_wait(f[i]);
		if (EXPECT(off >= 0 ? 0 : off, 0) &&
		    EXPECT(pread(fd, back, REC, off), REC))
			EXPECT(memcmp(back, rec[i], REC), 0);
	}
	prog_drop(f, RECS);
	EXPECT(halo_gc_close(&gc), 0);
out:
	close(fd);
}

static void step_sockwriter(halo_loop *loop)
{
	static unsigned char data[RECS * REC], got[sizeof(data)];
	halo_fut *f[RECS];
	size_t len = 0, total = 0;
	halo_sw sw;
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		prog_setup_failed("socketpair");
		return;
	}
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = prog_byte(i);
	if (!EXPECT(halo_sw_init(&sw, loop, sv[0], NULL), 0))
		goto out;
	/* Sends of 1..79 bytes, back to back; a failed one leaves a gap that
	 * the reader skips. */
	for (int i = 0; i < RECS; i++) {
		size_t n = (size_t)(i * 37 % 79 + 1);

		if (!GOT(f[i] = halo_sw_send(&sw, data + len, n)))
			n = 0;
		len += n;
	}
	for (int i = 0; i < RECS; i++) {
		int64_t r = f[i] ? halo_fut_wait(f[i]) : 0;

		if (!f[i] || !EXPECT(r, i * 37 % 79 + 1))
			continue;
		total += (size_t)r;
	}
	prog_drop(f, RECS);
	EXPECT(halo_sw_close(&sw), 0);
	shutdown(sv[0], SHUT_WR);
	for (size_t n = 0; n < total;) {
		ssize_t r = read(sv[1], got + n, sizeof(got) - n);

		if (r <= 0)
			break;
		n += (size_t)r;
	}
	/* Without failures the bytes arrive as sent. */
	if (total == len)
		EXPECT(memcmp(got, data, len), 0);
out:
	close(sv[0]);
	close(sv[1]);
}

int main(int argc, char **argv)
{
	static const struct prog_step steps[] = {
	    {"groupcommit", step_groupcommit},
	    {"sockwriter", step_sockwriter},
	};

	return prog_run(argc, argv, steps, sizeof(steps) / sizeof(steps[0]));
}
