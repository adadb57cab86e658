/* The test runner: every tests/test_<module>.c contributes one Check suite,
 * listed in the generated suites.h. HALO_SUITE=<module> runs one.
 *
 * Each suite runs in a runner of its own, and after each the process must be
 * as the suite found it: the same open fds, rlimits, signal dispositions and
 * mask, umask, working directory and seccomp mode. Under CK_FORK=no every
 * test runs in this process, and what one suite leaves behind would change
 * the next one's results; a suite that leaves something is a failure. */
#include <check.h>
#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define X(name) Suite *name##_suite(void);
#include "suites.h"
#undef X

#define FDS_MAX 256

struct proc_state {
	int fds[FDS_MAX];
	int fds_n;
	int fds_all; /* fds lists every open fd (else they are not compared) */
	struct rlimit rl[RLIM_NLIMITS];
	struct sigaction sa[NSIG];
	sigset_t mask;
	mode_t umask;
	char cwd[PATH_MAX];
	char seccomp[64];
};

static void read_fds(struct proc_state *st)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	st->fds_n = 0;
	st->fds_all = d != NULL;
	if (!d)
		return;
	while ((e = readdir(d))) {
		int fd = atoi(e->d_name);

		if (e->d_name[0] == '.' || fd == dirfd(d))
			continue;
		if (st->fds_n == FDS_MAX) {
			st->fds_all = 0;
			break;
		}
		st->fds[st->fds_n++] = fd;
	}
	closedir(d);
}

/* The Seccomp and NoNewPrivs lines of /proc/self/status. */
static void read_seccomp(char *out, size_t size)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	size_t n = 0;

	out[0] = '\0';
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "Seccomp:", 8) ||
		    !strncmp(line, "NoNewPrivs:", 11))
			n += (size_t)snprintf(out + n, size - n, "%s", line);
	fclose(f);
}

static void snapshot(struct proc_state *st)
{
	memset(st, 0, sizeof(*st));
	read_fds(st);
	for (int r = 0; r < RLIM_NLIMITS; r++)
		getrlimit(r, &st->rl[r]);
	for (int s = 1; s < NSIG; s++)
		sigaction(s, NULL, &st->sa[s]);
	sigprocmask(SIG_BLOCK, NULL, &st->mask);
	st->umask = umask(0);
	umask(st->umask);
	if (!getcwd(st->cwd, sizeof(st->cwd)))
		st->cwd[0] = '\0';
	read_seccomp(st->seccomp, sizeof(st->seccomp));
}

static int has_fd(const struct proc_state *st, int fd)
{
	for (int i = 0; i < st->fds_n; i++)
		if (st->fds[i] == fd)
			return 1;
	return 0;
}

/* glibc adds the kernel's SA_RESTORER to every action it installs (and does
 * not export the flag): an action put back looks different from the one
 * the process started with. */
#define KERNEL_SA_RESTORER 0x04000000

static int same_action(const struct sigaction *a, const struct sigaction *b)
{
	return a->sa_handler == b->sa_handler &&
	       (a->sa_flags & ~KERNEL_SA_RESTORER) ==
		   (b->sa_flags & ~KERNEL_SA_RESTORER);
}

static const char *rlimit_name(int r)
{
	static const char *const names[] = {
	    [RLIMIT_CPU] = "RLIMIT_CPU",
	    [RLIMIT_FSIZE] = "RLIMIT_FSIZE",
	    [RLIMIT_DATA] = "RLIMIT_DATA",
	    [RLIMIT_STACK] = "RLIMIT_STACK",
	    [RLIMIT_CORE] = "RLIMIT_CORE",
	    [RLIMIT_RSS] = "RLIMIT_RSS",
	    [RLIMIT_NPROC] = "RLIMIT_NPROC",
	    [RLIMIT_NOFILE] = "RLIMIT_NOFILE",
	    [RLIMIT_MEMLOCK] = "RLIMIT_MEMLOCK",
	    [RLIMIT_AS] = "RLIMIT_AS",
	    [RLIMIT_LOCKS] = "RLIMIT_LOCKS",
	    [RLIMIT_SIGPENDING] = "RLIMIT_SIGPENDING",
	    [RLIMIT_MSGQUEUE] = "RLIMIT_MSGQUEUE",
	    [RLIMIT_NICE] = "RLIMIT_NICE",
	    [RLIMIT_RTPRIO] = "RLIMIT_RTPRIO",
	    [RLIMIT_RTTIME] = "RLIMIT_RTTIME",
	};

	if (r < (int)(sizeof(names) / sizeof(names[0])) && names[r])
		return names[r];
	return "an rlimit";
}

/* Report what the suite changed, put back what can be put back (so that the
 * next suite starts clean), and return the number of changes. */
static int restore(const char *suite, const struct proc_state *was)
{
	struct proc_state now;
	int n = 0;

	snapshot(&now);
	for (int i = 0; was->fds_all && now.fds_all && i < now.fds_n; i++) {
		char path[64], target[256];
		int fd = now.fds[i];
		ssize_t len;

		if (has_fd(was, fd))
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		len = readlink(path, target, sizeof(target) - 1);
		if (len < 0)
			len = 0;
		target[len] = '\0';
		fprintf(stderr, "%s: left fd %d open (%s)\n", suite, fd,
			target);
		close(fd);
		n++;
	}
	for (int r = 0; r < RLIM_NLIMITS; r++) {
		if (!memcmp(&now.rl[r], &was->rl[r], sizeof(now.rl[r])))
			continue;
		fprintf(stderr, "%s: changed %s\n", suite, rlimit_name(r));
		setrlimit(r, &was->rl[r]);
		n++;
	}
	for (int s = 1; s < NSIG; s++) {
		if (same_action(&now.sa[s], &was->sa[s]))
			continue;
		fprintf(stderr, "%s: changed the action of signal %d (%s)\n",
			suite, s, strsignal(s));
		sigaction(s, &was->sa[s], NULL);
		n++;
	}
	if (memcmp(&now.mask, &was->mask, sizeof(now.mask))) {
		fprintf(stderr, "%s: changed the signal mask\n", suite);
		sigprocmask(SIG_SETMASK, &was->mask, NULL);
		n++;
	}
	if (now.umask != was->umask) {
		fprintf(stderr, "%s: changed the umask\n", suite);
		umask(was->umask);
		n++;
	}
	if (strcmp(now.cwd, was->cwd)) {
		fprintf(stderr, "%s: left the cwd at %s\n", suite, now.cwd);
		if (chdir(was->cwd) < 0)
			perror("chdir");
		n++;
	}
	if (strcmp(now.seccomp, was->seccomp)) {
		fprintf(stderr, "%s: installed a seccomp filter (for good)\n",
			suite);
		n++;
	}
	return n;
}

static int run_suite(const char *name, Suite *s, int *run, int *failed)
{
	struct proc_state st;
	SRunner *sr;
	int leaks;

	snapshot(&st);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	*run += srunner_ntests_run(sr);
	*failed += srunner_ntests_failed(sr);
	srunner_free(sr);
	leaks = restore(name, &st);
	if (leaks)
		fprintf(stderr,
			"%s: the suite changed the process (above); "
			"under CK_FORK=no the next suites would inherit "
			"that\n",
			name);
	return leaks;
}

/* The suites may open thousands of fds (bursts of connections, socket
 * pairs); raise the soft limit once, here, rather than in a test where
 * the raise would outlive it under CK_FORK=no. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(void)
{
	const char *only = getenv("HALO_SUITE");
	int suites = 0, run = 0, failed = 0, leaked = 0;

	raise_nofile();
#define X(name)                                                                \
	if (!only || strcmp(only, #name) == 0) {                               \
		leaked += run_suite(#name, name##_suite(), &run, &failed) > 0; \
		suites++;                                                      \
	}
#include "suites.h"
#undef X
	if (!suites) {
		fprintf(stderr, "no suite named %s\n", only);
		return 2;
	}
	printf("halo: %d suites, %d changed the process\n", suites, leaked);
	/* Last, in the form CI reads: "N passed, N failed". */
	printf("checks: %d passed, %d failed\n", run - failed, failed);
	return failed || leaked ? 1 : 0;
}
