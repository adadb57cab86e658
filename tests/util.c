#include "util.h"

#include "runtime/fault.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int tu_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the DIR's own fd */
}

char *tu_tmpdir(void)
{
	char tmpl[] = "/tmp/halo-test-XXXXXX";
	char *p = mkdtemp(tmpl);

	ck_assert_ptr_nonnull(p);
	return strdup(p);
}

static int rm_one(const char *path, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void tu_rmdir(char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(path);
}

void tu_loop_init(halo_loop *loop, const halo_loop_opts *opts)
{
	int r = halo_loop_init(loop, opts);

	ck_assert_msg(r == 0, "halo_loop_init: %d (%s)", r,
		      halo_loop_error(loop));
}

bool tu_loop_with(halo_loop *loop, unsigned feat, int on)
{
	halo_loop_opts o = {.features_off = on ? 0 : feat};

	tu_loop_init(loop, &o);
	if (!on)
		ck_assert_uint_eq(halo_loop_features(loop) & feat, 0);
	return (halo_loop_features(loop) & feat) == feat;
}

void tu_loop_close(halo_loop *loop)
{
	int leaked = halo_loop_close(loop);

	ck_assert_int_eq(leaked, 0);
}

int tu_timeout(int seconds)
{
#if defined(__SANITIZE_ADDRESS__)
	return seconds * 4;
#else
	return seconds;
#endif
}

int64_t tu_sleeper(halo_loop *l, void *arg)
{
	struct tu_job *j = arg;
	int r = halo_sleep(l, j->ms * 1000000ull);

	j->got = r;
	return r < 0 ? r : j->ret;
}

uint64_t tu_inflight(halo_loop *loop)
{
	halo_stats st;

	halo_loop_stats(loop, &st);
	return st.inflight;
}

void tu_tcp_pair(int *a, int *b, int a_flags)
{
	int lfd = halo_net_listen("127.0.0.1", 0, NULL);
	struct sockaddr_in sa;

	ck_assert_int_ge(lfd, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)halo_net_local_port(lfd));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	*a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(*a, 0);
	ck_assert_int_eq(connect(*a, (struct sockaddr *)&sa, sizeof(sa)), 0);
	*b = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	ck_assert_int_ge(*b, 0);
	close(lfd);
	if (a_flags)
		ck_assert_int_eq(fcntl(*a, F_SETFL, a_flags), 0);
}

unsigned char tu_pattern_at(size_t i)
{
	return (unsigned char)((i * 131) ^ (i >> 10) ^ (i >> 17));
}

int tu_run_in_child(void (*fn)(void *arg), void *arg)
{
	pid_t pid, r;
	int status;

	/* Buffered output would be written twice, once by each process. */
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		fn(arg);
		_exit(0); /* not exit(): no atexit handlers of the runner's */
	}
	do
		r = waitpid(pid, &status, 0);
	while (r < 0 && errno == EINTR);
	ck_assert_int_eq(r, pid);
	return status;
}

void tu_child_fail(const char *file, int line, const char *what, int64_t a,
		   int64_t b)
{
	if (a != b)
		fprintf(stderr,
			"%s:%d: in the child: %s failed (%" PRId64
			" != %" PRId64 ")\n",
			file, line, what, a, b);
	else
		fprintf(stderr, "%s:%d: in the child: %s failed\n", file, line,
			what);
	_exit(1);
}

void tu_fault_reset(void)
{
#ifdef HALO_FAULT
	halo__fault_reset();
#endif
}
