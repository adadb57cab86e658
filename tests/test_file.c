/* File operations: each op on real files in a temp dir, the short read and
 * write helpers, O_DIRECT reads into aligned buffers, fixed files. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/util.h"

static halo_loop loop;
static char *dir;
static int fds_before;

static void setup(void)
{
	fds_before = tu_count_fds();
	tu_loop_init(&loop, NULL);
	dir = tu_tmpdir();
}

static void teardown(void)
{
	tu_loop_close(&loop);
	tu_rmdir(dir);
	ck_assert_int_eq(tu_count_fds(), fds_before);
}

static int open_tmp(const char *name, int flags)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, flags | O_CREAT | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	return fd;
}

START_TEST(test_openat_write_read_close_roundtrip)
{
	char path[512], buf[16] = { 0 };
	int64_t fd;

	snprintf(path, sizeof(path), "%s/a", dir);
	fd = halo_fut_join(halo_openat(&loop, AT_FDCWD, path,
				       O_RDWR | O_CREAT | O_CLOEXEC, 0600));
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(halo_fut_join(halo_write(&loop, (int)fd, "hello", 5, 0)),
			 5);
	ck_assert_int_eq(halo_fut_join(halo_read(&loop, (int)fd, buf, 16, 0)), 5);
	ck_assert_str_eq(buf, "hello");
	ck_assert_int_eq(halo_fut_join(halo_close(&loop, (int)fd)), 0);
	ck_assert_int_eq(halo_fut_join(halo_openat(&loop, AT_FDCWD,
						   "/nonexistent/x", O_RDONLY,
						   0)),
			 -ENOENT);
}
END_TEST

START_TEST(test_writev_readv_copy_iovecs_before_submit)
{
	int fd = open_tmp("v", O_RDWR);
	char a[] = "abc", b[] = "defg", out1[3], out2[4];
	halo_fut *w, *r;

	{
		/* The iovec array dies before the tick submits it. */
		struct iovec iov[2] = { { a, 3 }, { b, 4 } };
		w = halo_writev(&loop, fd, iov, 2, 0);
		memset(iov, 0, sizeof(iov));
	}
	ck_assert_int_eq(halo_fut_join(w), 7);
	{
		struct iovec iov[2] = { { out1, 3 }, { out2, 4 } };
		r = halo_readv(&loop, fd, iov, 2, 0);
		memset(iov, 0, sizeof(iov));
	}
	ck_assert_int_eq(halo_fut_join(r), 7);
	ck_assert_int_eq(memcmp(out1, "abc", 3), 0);
	ck_assert_int_eq(memcmp(out2, "defg", 4), 0);
	close(fd);
}
END_TEST

START_TEST(test_writev_many_iovecs_uses_loop_memory)
{
	int fd = open_tmp("many", O_RDWR);
	struct iovec iov[40];
	char bytes[40], back[40];

	for (int i = 0; i < 40; i++) {
		bytes[i] = (char)('A' + i % 26);
		iov[i].iov_base = &bytes[i];
		iov[i].iov_len = 1;
	}
	ck_assert_int_eq(halo_fut_join(halo_writev(&loop, fd, iov, 40, 0)), 40);
	ck_assert_int_eq(pread(fd, back, 40, 0), 40);
	ck_assert_int_eq(memcmp(back, bytes, 40), 0);
	ck_assert_int_eq(halo_fut_join(halo_writev(&loop, fd, iov, 0, 0)),
			 -EINVAL);
	close(fd);
}
END_TEST

START_TEST(test_fsync_and_fdatasync_complete)
{
	int fd = open_tmp("s", O_RDWR);

	ck_assert_int_eq(halo_fut_join(halo_write(&loop, fd, "x", 1, 0)), 1);
	ck_assert_int_eq(halo_fut_join(halo_fsync(&loop, fd)), 0);
	ck_assert_int_eq(halo_fut_join(halo_fdatasync(&loop, fd)), 0);
	ck_assert_int_eq(halo_fut_join(halo_fsync(&loop, 9999)), -EBADF);
	close(fd);
}
END_TEST

START_TEST(test_statx_and_fallocate)
{
	int fd = open_tmp("st", O_RDWR);
	struct statx stx;
	char path[512];

	ck_assert_int_eq(halo_fut_join(halo_fallocate(&loop, fd, 0, 0, 65536)),
			 0);
	snprintf(path, sizeof(path), "%s/st", dir);
	ck_assert_int_eq(halo_fut_join(halo_statx(&loop, AT_FDCWD, path, 0,
						  STATX_SIZE, &stx)),
			 0);
	ck_assert_uint_eq(stx.stx_size, 65536);
	close(fd);
}
END_TEST

START_TEST(test_read_full_finishes_short_reads_from_pipe)
{
	int p[2];
	char buf[10] = { 0 };
	halo_fut *f;

	ck_assert_int_eq(pipe(p), 0);
	f = halo_read_full(&loop, p[0], buf, 10, -1);
	ck_assert_int_eq(write(p[1], "0123", 4), 4);
	for (int i = 0; i < 5; i++)
		halo_loop_run_nowait(&loop);
	ck_assert(!halo_fut_is_done(f)); /* 4 of 10: resubmitted */
	ck_assert_int_eq(write(p[1], "456", 3), 3);
	halo_loop_run_nowait(&loop);
	ck_assert_int_eq(write(p[1], "789", 3), 3);
	ck_assert_int_eq(halo_fut_join(f), 10);
	ck_assert_int_eq(memcmp(buf, "0123456789", 10), 0);
	/* EOF: a short total. */
	f = halo_read_full(&loop, p[0], buf, 10, -1);
	ck_assert_int_eq(write(p[1], "ab", 2), 2);
	close(p[1]);
	ck_assert_int_eq(halo_fut_join(f), 2);
	close(p[0]);
}
END_TEST

START_TEST(test_write_all_finishes_short_writes_to_pipe)
{
	int p[2];
	size_t len = 1 << 20;
	char *src = malloc(len), *dst = malloc(len);
	halo_fut *f;
	size_t got = 0;

	ck_assert_int_eq(pipe(p), 0);
	for (size_t i = 0; i < len; i++)
		src[i] = (char)(i * 7);
	f = halo_write_all(&loop, p[1], src, len, -1);
	while (got < len) {
		ssize_t n;
		halo_loop_run_nowait(&loop);
		n = read(p[0], dst + got, len - got);
		ck_assert_int_gt(n, 0);
		got += (size_t)n;
	}
	ck_assert_int_eq(halo_fut_join(f), (int64_t)len);
	ck_assert_int_eq(memcmp(src, dst, len), 0);
	close(p[0]);
	close(p[1]);
	free(src);
	free(dst);
}
END_TEST

START_TEST(test_write_all_then_read_full_large_file)
{
	int fd = open_tmp("big", O_RDWR);
	size_t len = 3u << 20;
	char *src = malloc(len), *dst = malloc(len);

	for (size_t i = 0; i < len; i++)
		src[i] = (char)(i ^ (i >> 9));
	ck_assert_int_eq(halo_fut_join(halo_write_all(&loop, fd, src, len, 4096)),
			 (int64_t)len);
	ck_assert_int_eq(halo_fut_join(halo_read_full(&loop, fd, dst, len, 4096)),
			 (int64_t)len);
	ck_assert_int_eq(memcmp(src, dst, len), 0);
	close(fd);
	free(src);
	free(dst);
}
END_TEST

/* O_DIRECT needs a real block filesystem: tmpfs refuses it. */
static int open_direct(char *path, size_t n)
{
	const char *cands[] = { "/var/tmp", "build", "." };

	for (size_t i = 0; i < sizeof(cands) / sizeof(cands[0]); i++) {
		int fd;
		snprintf(path, n, "%s/halo-direct-XXXXXX", cands[i]);
		fd = mkostemp(path, O_CLOEXEC);
		if (fd < 0)
			continue;
		close(fd);
		fd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
		if (fd >= 0)
			return fd;
		unlink(path);
	}
	return -1;
}

START_TEST(test_odirect_read_into_aligned_buffer)
{
	char path[512];
	int fd = open_direct(path, sizeof(path));
	char *buf, *src;
	int wfd;

	if (fd < 0) {
		printf("note: no filesystem here accepts O_DIRECT; skipped\n");
		return;
	}
	src = malloc(8192);
	for (int i = 0; i < 8192; i++)
		src[i] = (char)(i * 13);
	wfd = open(path, O_WRONLY | O_CLOEXEC);
	ck_assert_int_eq(pwrite(wfd, src, 8192, 0), 8192);
	ck_assert_int_eq(fsync(wfd), 0);
	close(wfd);
	buf = halo_buf_alloc_aligned(4096, 4096);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq((uintptr_t)buf % 4096, 0);
	ck_assert_int_eq(halo_fut_join(halo_read(&loop, fd, buf, 4096, 4096)),
			 4096);
	ck_assert_int_eq(memcmp(buf, src + 4096, 4096), 0);
	halo_buf_free(buf);
	close(fd);
	unlink(path);
	free(src);
}
END_TEST

START_TEST(test_fixed_files_read_and_write_by_index)
{
	int fd = open_tmp("fx", O_RDWR);
	int fds[2] = { -1, fd };
	char buf[8] = { 0 };
	halo_fut *f;

	ck_assert_int_eq(halo_files_register(&loop, fds, 2), 0);
	ck_assert_int_eq(halo_files_register(&loop, fds, 2), -EBUSY);
	f = halo_write(&loop, 1, "fixed", 5, 0);
	ck_assert_int_eq(halo_files_use_fixed(f), 0);
	ck_assert_int_eq(halo_fut_join(f), 5);
	f = halo_read_full(&loop, 1, buf, 5, 0);
	ck_assert_int_eq(halo_files_use_fixed(f), 0);
	ck_assert_int_eq(halo_fut_join(f), 5);
	ck_assert_str_eq(buf, "fixed");
	f = halo_nop(&loop);
	halo_fut_wait(f);
	ck_assert_int_eq(halo_files_use_fixed(f), -EALREADY);
	halo_fut_release(f);
	ck_assert_int_eq(halo_files_unregister(&loop), 0);
	close(fd);
}
END_TEST

/* The table on loop l, used by fixed reads and writes of a file and a pipe;
 * an unregistration or replacement while a read is in flight is refused. */
static void fixed_bufs_roundtrip(halo_loop *l, int want_kernel_table)
{
	char *out = halo_buf_alloc_aligned(8192, 4096);
	char *in = halo_buf_alloc_aligned(8192, 4096);
	int fd = open_tmp(want_kernel_table ? "fb1" : "fb0", O_RDWR);
	halo_bufs b, b2;
	int p[2];
	halo_fut *f;

	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(halo_bufs_init(&b, l, 0), -EINVAL);
	ck_assert_int_eq(halo_bufs_init(&b, l, 4), 0);
	ck_assert_int_eq(b.registered, want_kernel_table);
	if (want_kernel_table)
		ck_assert_int_eq(halo_bufs_init(&b2, l, 4), -EBUSY);
	ck_assert_int_eq(halo_bufs_set(&b, 4, out, 8192), -EINVAL);
	ck_assert_int_eq(halo_bufs_set(&b, 1, out, 8192), 0);
	ck_assert_int_eq(halo_bufs_set(&b, 2, in, 8192), 0);
	for (int i = 0; i < 8192; i++)
		out[i] = (char)(i * 7);

	f = halo_write_fixed(&b, 1, fd, out + 4096, 4096, 0);
	ck_assert_int_eq(halo_fut_join(f), 4096);
	f = halo_read_fixed(&b, 2, fd, in, 4096, 0);
	ck_assert_int_eq(halo_fut_join(f), 4096);
	ck_assert_int_eq(memcmp(in, out + 4096, 4096), 0);

	/* Outside the slot's buffer, an empty slot, no such slot. */
	f = halo_read_fixed(&b, 2, fd, in + 4096, 8192, 0);
	ck_assert_int_eq(halo_fut_join(f), -EINVAL);
	f = halo_read_fixed(&b, 0, fd, in, 16, 0);
	ck_assert_int_eq(halo_fut_join(f), -EINVAL);
	f = halo_read_fixed(&b, 9, fd, in, 16, 0);
	ck_assert_int_eq(halo_fut_join(f), -EINVAL);

	/* In flight: the slot and the table stay until the read is done. */
	f = halo_read_fixed(&b, 2, p[0], in, 16, -1);
	ck_assert_int_ge(halo_loop_run_nowait(l), 0);
	ck_assert_int_eq(halo_bufs_set(&b, 2, out, 8192), -EBUSY);
	ck_assert_int_eq(halo_bufs_close(&b), -EBUSY);
	ck_assert_int_eq(write(p[1], "fixed", 5), 5);
	ck_assert_int_eq(halo_fut_join(f), 5);
	ck_assert_int_eq(memcmp(in, "fixed", 5), 0);
	ck_assert_int_eq(halo_bufs_set(&b, 2, NULL, 0), 0);
	f = halo_read_fixed(&b, 2, fd, in, 16, 0);
	ck_assert_int_eq(halo_fut_join(f), -EINVAL);
	ck_assert_int_eq(halo_bufs_close(&b), 0);
	/* A new table after the old one is gone. */
	ck_assert_int_eq(halo_bufs_init(&b, l, 1), 0);
	ck_assert_int_eq(halo_bufs_close(&b), 0);
	close(p[0]);
	close(p[1]);
	close(fd);
	halo_buf_free(out);
	halo_buf_free(in);
}

START_TEST(test_fixed_buffers_register_use_and_unregister)
{
	halo_loop off;
	halo_loop_opts o = {.features_off = HALO_FEAT_FIXED_BUFS};

	fixed_bufs_roundtrip(&loop, (halo_loop_features(&loop) &
				     HALO_FEAT_FIXED_BUFS) != 0);
	tu_loop_init(&off, &o);
	fixed_bufs_roundtrip(&off, 0);
	tu_loop_close(&off);
}
END_TEST

Suite *file_suite(void)
{
	Suite *s = suite_create("file");
	TCase *tc = tcase_create("file");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, tu_timeout(20));
	tcase_add_test(tc, test_openat_write_read_close_roundtrip);
	tcase_add_test(tc, test_writev_readv_copy_iovecs_before_submit);
	tcase_add_test(tc, test_writev_many_iovecs_uses_loop_memory);
	tcase_add_test(tc, test_fsync_and_fdatasync_complete);
	tcase_add_test(tc, test_statx_and_fallocate);
	tcase_add_test(tc, test_read_full_finishes_short_reads_from_pipe);
	tcase_add_test(tc, test_write_all_finishes_short_writes_to_pipe);
	tcase_add_test(tc, test_write_all_then_read_full_large_file);
	tcase_add_test(tc, test_odirect_read_into_aligned_buffer);
	tcase_add_test(tc, test_fixed_files_read_and_write_by_index);
	tcase_add_test(tc, test_fixed_buffers_register_use_and_unregister);
	suite_add_tcase(s, tc);
	return s;
}
