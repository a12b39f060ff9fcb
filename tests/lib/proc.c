#include "tests/lib/proc.h"
#include "common/util.h"
#include "tests/lib/test.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char tmpdir[256];

void h_init(const char *name)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/laurel-%s-XXXXXX", name);
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		exit(2);
	}
	signal(SIGPIPE, SIG_IGN);
}

const char *h_tmp(void)
{
	return tmpdir;
}

void h_cleanup(void)
{
	if (!tmpdir[0])
		return;
	if (test_failures) {
		fprintf(stderr, "logs kept in %s\n", tmpdir);
		return;
	}
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
}

void h_sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* --- Processes ------------------------------------------------------------------------------- */

void proc_start(struct proc *p, const char *name, const char *const *argv)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", name);
	snprintf(p->log, sizeof(p->log), "%s/%s.log", tmpdir, name);
	p->pid = fork();
	if (p->pid < 0) {
		perror("fork");
		exit(2);
	}
	if (p->pid == 0) {
		int fd = open(p->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		unsetenv("LAUREL_LAYER");
		unsetenv("LAUREL_BIND");
		unsetenv("LAUREL_PORT");
		unsetenv("LAUREL_UNIX_SOCKET");
		unsetenv("LAUREL_APP");
		execv(argv[0], (char *const *)argv);
		perror("exec");
		_exit(127);
	}
}

int proc_stop(struct proc *p, int sig, int timeout_ms)
{
	if (p->pid <= 0)
		return 0;
	if (sig)
		kill(p->pid, sig);
	int64_t deadline = util_now_ms() + timeout_ms;
	int status;
	for (;;) {
		pid_t r = waitpid(p->pid, &status, WNOHANG);
		if (r == p->pid)
			break;
		if (util_now_ms() > deadline) {
			fprintf(stderr, "%s still running after %d ms: killed\n", p->name,
				timeout_ms);
			kill(p->pid, SIGKILL);
			waitpid(p->pid, &status, 0);
			p->pid = 0;
			return -1;
		}
		h_sleep_ms(5);
	}
	p->pid = 0;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void procs_stop_checked(struct proc **procs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (procs[i]->pid > 0 && test_failures)
			proc_dump(procs[i]);
		if (procs[i]->pid > 0)
			CHECK_EQ(proc_stop(procs[i], SIGTERM, 15000), 0);
	}
}

bool proc_alive(struct proc *p)
{
	int status;
	if (p->pid <= 0)
		return false;
	if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
		p->pid = 0;
		return false;
	}
	return true;
}

char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	struct stat st;
	if (!f || fstat(fileno(f), &st) < 0) {
		if (f)
			fclose(f);
		return xstrdup("");
	}
	char *s = xmalloc((size_t)st.st_size + 1);
	size_t n = fread(s, 1, (size_t)st.st_size, f);
	s[n] = '\0';
	fclose(f);
	return s;
}

bool file_wait(const char *path, const char *needle, int timeout_ms)
{
	int64_t deadline = util_now_ms() + timeout_ms;
	for (;;) {
		char *s = slurp(path);
		bool found = strstr(s, needle) != NULL;
		free(s);
		if (found)
			return true;
		if (util_now_ms() > deadline)
			return false;
		h_sleep_ms(5);
	}
}

void proc_dump(struct proc *p)
{
	char *s = slurp(p->log);
	size_t n = strlen(s);
	fprintf(stderr, "--- %s (last 3000 bytes) ---\n%s\n---\n", p->log,
		n > 3000 ? s + n - 3000 : s);
	free(s);
}
