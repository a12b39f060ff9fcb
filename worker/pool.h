/* A pre-fork pool: a supervisor process that keeps N worker processes running. A child that dies
 * while the pool runs (a crash, even a segfault in a consumer, or any exit) is logged with its
 * exit status or signal and replaced after a backoff that grows while children keep dying young;
 * the other children keep running. */
#ifndef LAUREL_WORKER_POOL_H
#define LAUREL_WORKER_POOL_H

struct wstats;
struct wstats_proc;

struct pool_options {
	int processes; /* >= 1 */
	/* Runs in each new child (signals as at the start of pool_run: default, unblocked);
	 * returns the child's exit status. slot is in [0, processes); stats is the child's record
	 * in the pool's table (NULL without one). */
	int (*child)(void *arg, int slot, struct wstats_proc *stats);
	/* Runs in the supervisor on SIGHUP; 0 lets the children be replaced one by one (a new
	 * one is started for a slot, then the old one gets SIGTERM and is waited for before the
	 * next slot). NULL: SIGHUP replaces them without a check. */
	int (*reload)(void *arg);
	void *arg;
	int backoff_min_ms; /* first restart delay; default 100 */
	int backoff_max_ms; /* default 5000 */
	int stable_ms;	    /* a child that lived this long resets the backoff; default 10000 */
	/* Where the children count (worker/stats.h), mapped shared and sized for 2 * processes +
	 * 1 records; the pool claims one per child and retires it when the child is reaped, and
	 * keeps the table's process counts. NULL: no counting. */
	struct wstats *stats;
	/* A helper process (the metrics server), started before the children and started again
	 * a second after it dies; it gets SIGTERM with them. Returns its exit status. NULL: none.
	 * The supervisor stays one thread, so every fork is safe. */
	int (*helper)(void *arg);
};

/* Starts the children and supervises them until SIGTERM or SIGINT, which is passed on to every
 * child; then waits for them all and returns 0. Returns -errno if it cannot start (the signal
 * mask or the first fork failed). Blocks SIGTERM, SIGINT, SIGHUP and SIGCHLD in the calling
 * process while it runs, and restores the mask before returning. Not reentrant. */
int pool_run(const struct pool_options *o);

#endif
