/* Sweep program: file I/O, pipes with deadlines, one-shot and multishot
 * poll, NOPs. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "prog.h"

enum { CHUNK = 4096, IOVS = 10, PIECE = 100 };

static void step_file(halo_loop *loop)
{
	char dir[] = "/tmp/halo-fault-XXXXXX", path[64];
	static unsigned char out[CHUNK + IOVS * PIECE], in[sizeof(out)];
	struct iovec iov[IOVS];
	struct statx stx;
	void *aligned;
	bool whole;
	int fd;

	if (!mkdtemp(dir)) {
		prog_setup_failed("mkdtemp");
		return;
	}
	snprintf(path, sizeof(path), "%s/f", dir);
	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = prog_byte(i);
	fd = (int)prog_join(
	    halo_openat(loop, AT_FDCWD, path, O_CREAT | O_RDWR, 0600));
	if (!EXPECT(fd >= 0 ? 0 : fd, 0))
		goto out;
	whole = EXPECT(prog_join(halo_write(loop, fd, out, CHUNK, 0)), CHUNK);
	/* More iovecs than fit in the op: the copy comes from the heap. */
	for (int i = 0; i < IOVS; i++)
		iov[i] = (struct iovec){out + CHUNK + i * PIECE, PIECE};
	whole &= EXPECT(prog_join(halo_writev(loop, fd, iov, IOVS, CHUNK)),
			IOVS * PIECE);
	if (!whole)
		goto shut;
	EXPECT(prog_join(halo_fsync(loop, fd)), 0);
	EXPECT(prog_join(halo_fdatasync(loop, fd)), 0);
	memset(in, 0, sizeof(in));
	if (EXPECT(prog_join(halo_read_full(loop, fd, in, CHUNK, 0)), CHUNK))
		EXPECT(memcmp(in, out, CHUNK), 0);
	for (int i = 0; i < IOVS; i++)
		iov[i] = (struct iovec){in + CHUNK + i * PIECE, PIECE};
	if (EXPECT(prog_join(halo_readv(loop, fd, iov, IOVS, CHUNK)),
		   IOVS * PIECE))
		EXPECT(memcmp(in + CHUNK, out + CHUNK, IOVS * PIECE), 0);
	if (EXPECT(prog_join(
		       halo_statx(loop, AT_FDCWD, path, 0, STATX_SIZE, &stx)),
		   0))
		EXPECT(stx.stx_size, sizeof(out));
shut:
	EXPECT(prog_join(halo_fallocate(loop, fd, 0, 0, 2 * CHUNK)), 0);
	if (!EXPECT(prog_join(halo_close(loop, fd)), 0))
		close(fd);
out:
	aligned = halo_buf_alloc_aligned(CHUNK, CHUNK);
	if (GOT(aligned))
		halo_buf_free(aligned);
	unlink(path);
	rmdir(dir);
}

struct watch {
	int events;
	int err; /* the poll ended with it; the handle is gone */
};

static void count_event(halo_poll_ms *h, int revents, void *arg)
{
	struct watch *w = arg;

	(void)h;
	if (revents > 0)
		w->events++;
	else
		w->err = revents;
}

static void step_pipe(halo_loop *loop)
{
	static unsigned char big[100000], back[sizeof(big)];
	char c;
	int p[2];
	struct watch w = {0, 0};
	halo_fut *rd, *wr[2];
	halo_poll_ms *h;

	if (pipe2(p, O_CLOEXEC) < 0) {
		prog_setup_failed("pipe2");
		return;
	}
	/* Deadlines on an empty pipe, by linked timeout and by loop timer. */
	rd = halo_read(loop, p[0], &c, 1, -1);
	if (GOT(rd) && EXPECT(halo_deadline_after(rd, 2 * MS), 0))
		EXPECT(halo_fut_wait(rd), -ETIMEDOUT);
	prog_drop(&rd, 1);
	rd = halo_read(loop, p[0], &c, 1, -1);
	if (GOT(rd) &&
	    EXPECT(halo_deadline_timer(rd, halo_now_ns() + 2 * MS), 0))
		EXPECT(halo_fut_wait(rd), -ETIMEDOUT);
	prog_drop(&rd, 1);
	/* More than the pipe holds: the write needs the reader. */
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = prog_byte(i);
	wr[0] = halo_write_all(loop, p[1], big, sizeof(big), -1);
	wr[1] = halo_read_full(loop, p[0], back, sizeof(back), -1);
	if (GOT(wr[0]) && GOT(wr[1])) {
		EXPECT(halo_fut_wait(wr[0]), sizeof(big));
		if (EXPECT(halo_fut_wait(wr[1]), sizeof(back)))
			EXPECT(memcmp(big, back, sizeof(big)), 0);
	}
	prog_drop(wr, 2);
	/* One-shot poll, then a multishot poll that sees three writes. */
	if (write(p[1], "x", 1) == 1) {
		EXPECT(prog_join(halo_poll(loop, p[0], POLLIN)), POLLIN);
		EXPECT(read(p[0], &c, 1), 1);
	}
	h = halo_poll_ms_start(loop, p[0], POLLIN, count_event, &w);
	if (GOT(h)) {
		for (int i = 0; i < 3 && !w.err; i++) {
			if (write(p[1], "y", 1) != 1)
				break;
			for (int t = 0; t < 100 && w.events <= i && !w.err; t++)
				halo_loop_run_once(loop);
			EXPECT(read(p[0], &c, 1), 1);
		}
		if (EXPECT(w.err, 0)) {
			EXPECT(w.events, 3);
			EXPECT(halo_poll_ms_stop(h), 0);
		}
	}
	close(p[0]);
	close(p[1]);
}

static void step_nop(halo_loop *loop)
{
	halo_fut *f[20];
	size_t made = 0;

	for (int i = 0; i < 20; i++)
		made += GOT(f[i] = halo_nop(loop));
	if (made == 20) {
		halo_wait_result w =
		    halo_wait(loop, f, 20, HALO_ALL_COMPLETED, 0);
		EXPECT(w.status, 0);
	}
	prog_drop(f, 20);
}

/* Registered files: a read and a write through fixed-file indexes, one
 * read with a deadline. */
static void step_fixed(halo_loop *loop)
{
	int p[2], fds[2];
	char c = 0;
	halo_fut *rd, *wr;

	if (pipe2(p, O_CLOEXEC) < 0) {
		prog_setup_failed("pipe2");
		return;
	}
	fds[0] = p[0];
	fds[1] = p[1];
	if (!EXPECT(halo_files_register(loop, fds, 2), 0))
		goto out;
	rd = halo_read(loop, 0, &c, 1, -1);
	wr = halo_write(loop, 1, "z", 1, -1);
	if (GOT(rd) && GOT(wr) && EXPECT(halo_files_use_fixed(rd), 0) &&
	    EXPECT(halo_files_use_fixed(wr), 0)) {
		EXPECT(halo_fut_wait(wr), 1);
		if (EXPECT(halo_fut_wait(rd), 1))
			EXPECT(c, 'z');
	}
	prog_drop(&rd, 1);
	prog_drop(&wr, 1);
	rd = halo_read(loop, 0, &c, 1, -1);
	if (GOT(rd) && EXPECT(halo_files_use_fixed(rd), 0) &&
	    EXPECT(halo_deadline_after(rd, 1 * MS), 0))
		EXPECT(halo_fut_wait(rd), -ETIMEDOUT);
	prog_drop(&rd, 1);
	EXPECT(halo_files_unregister(loop), 0);
out:
	close(p[0]);
	close(p[1]);
}

int main(int argc, char **argv)
{
	static const struct prog_step steps[] = {
	    {"file", step_file},
	    {"pipe", step_pipe},
	    {"nop", step_nop},
	    {"fixed", step_fixed},
	};

	return prog_run(argc, argv, steps, sizeof(steps) / sizeof(steps[0]));
}
