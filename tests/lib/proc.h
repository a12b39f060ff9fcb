/* Child processes of a test program: a temporary directory for their logs (and whatever else the
 * test keeps there), processes started with their output in a log there, stopped with a deadline,
 * and waiting for a file to hold a text. Everything polls with a deadline; nothing sleeps for a
 * fixed time to wait for an event. */
#ifndef LAUREL_TESTS_LIB_PROC_H
#define LAUREL_TESTS_LIB_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* A temporary directory for this program's logs, record files and sockets. */
void h_init(const char *name);
const char *h_tmp(void);
/* Removes the temporary directory (unless the test failed, so the logs stay for a look). */
void h_cleanup(void);
void h_sleep_ms(int ms);

struct proc {
	pid_t pid;
	char name[64];
	char log[512];
};

/* Starts argv[0] with argv (NULL-terminated); stdout and stderr go to TMP/name.log. */
void proc_start(struct proc *p, const char *name, const char *const *argv);
/* Sends sig (if non-zero) and waits up to timeout_ms; SIGKILL after that. Returns the exit status,
 * 128 + signal, or -1 when it had to be killed. 0 if it was not running. */
int proc_stop(struct proc *p, int sig, int timeout_ms);
/* At the end of a test: SIGTERM to each (started) process, which must exit 0 within 15 s; their
 * logs are printed first if a check failed. */
void procs_stop_checked(struct proc **procs, size_t n);
/* True while the process runs. */
bool proc_alive(struct proc *p);
/* The whole file, NUL-terminated, malloc'd ("" if missing). */
char *slurp(const char *path);
/* Waits until the file holds needle; true if it does before the deadline. */
bool file_wait(const char *path, const char *needle, int timeout_ms);
/* Prints the tail of a process log on stderr (after a failure). */
void proc_dump(struct proc *p);

#endif
