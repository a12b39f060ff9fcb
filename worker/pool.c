/* The supervisor: signals are blocked and taken synchronously with sigtimedwait, so the loop has
 * no handler races; the only timer is the next pending restart. */
#include "worker/pool.h"

#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "worker/stats.h"

struct child {
	pid_t pid;
	int slot;
	int64_t started;
	bool retiring; /* replaced on SIGHUP: its exit is expected */
	struct wstats_proc *stats;
};

struct slot {
	int64_t restart_at; /* 0: nothing pending */
	int backoff_ms;
};

struct pool {
	const struct pool_options *o;
	sigset_t oldmask;
	struct child *children;
	size_t nchildren;
	struct slot *slots;
	int replacing; /* the slot being replaced after SIGHUP, or -1 */
	bool stopping;
	pid_t helper;		   /* 0: not running */
	int64_t helper_restart_at; /* 0: nothing pending */
};

#define HELPER_RESTART_MS 1000

static void on_sigchld(int sig)
{
}

/* A new child's first steps. A child outlives no pool: if the supervisor dies (even by
 * SIGKILL), its children get SIGTERM and finish the message in hand, instead of running old code
 * as orphans nobody sends SIGHUP to. */
static void in_child(struct pool *p, pid_t parent)
{
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != parent)
		_exit(0);
	signal(SIGCHLD, SIG_DFL);
	sigprocmask(SIG_SETMASK, &p->oldmask, NULL);
}

static void count_running(struct pool *p)
{
	if (p->o->stats) {
		p->o->stats->running = (int)p->nchildren;
		p->o->stats->stopping = p->stopping;
	}
}

static int spawn(struct pool *p, int slot)
{
	pid_t parent = getpid();
	struct wstats_proc *rec = p->o->stats ? wstats_claim(p->o->stats, slot) : NULL;
	pid_t pid = fork();
	if (pid < 0) {
		int err = errno;
		log_errno(LOG_ERROR, err, "cannot start a worker process");
		if (rec)
			rec->pid = 0;
		return -err;
	}
	if (pid == 0) {
		in_child(p, parent);
		exit(p->o->child(p->o->arg, slot, rec));
	}
	if (rec)
		__atomic_store_n(&rec->pid, (int32_t)pid, __ATOMIC_RELEASE);
	struct child *c = &p->children[p->nchildren++];
	c->pid = pid;
	c->slot = slot;
	c->started = util_now_ms();
	c->retiring = false;
	c->stats = rec;
	count_running(p);
	log_info("worker process %d started (slot %d)", (int)pid, slot);
	return 0;
}

static void spawn_helper(struct pool *p)
{
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		log_errno(LOG_ERROR, errno, "cannot start the metrics process");
		p->helper_restart_at = util_now_ms() + HELPER_RESTART_MS;
		return;
	}
	if (pid == 0) {
		in_child(p, parent);
		exit(p->o->helper(p->o->arg));
	}
	p->helper = pid;
	p->helper_restart_at = 0;
}

static void describe(int status, char *out, size_t size)
{
	if (WIFSIGNALED(status))
		snprintf(out, size, "was killed by signal %d (%s)%s", WTERMSIG(status),
			 strsignal(WTERMSIG(status)), WCOREDUMP(status) ? ", core dumped" : "");
	else
		snprintf(out, size, "exited with status %d", WEXITSTATUS(status));
}

static void reaped(struct pool *p, size_t i, int status)
{
	struct child c = p->children[i];
	p->children[i] = p->children[--p->nchildren];
	if (c.stats)
		wstats_retire(p->o->stats, c.stats);
	count_running(p);
	char how[128];
	describe(status, how, sizeof(how));
	if (p->stopping || c.retiring) {
		log_info("worker process %d (slot %d) %s", (int)c.pid, c.slot, how);
		return;
	}
	struct slot *s = &p->slots[c.slot];
	int64_t now = util_now_ms();
	if (p->o->stats)
		p->o->stats->restarts++;
	if (now - c.started >= p->o->stable_ms)
		s->backoff_ms = p->o->backoff_min_ms;
	log_error("worker process %d (slot %d) %s; starting another in %d ms", (int)c.pid, c.slot,
		  how, s->backoff_ms);
	s->restart_at = now + s->backoff_ms;
	s->backoff_ms *= 2;
	if (s->backoff_ms > p->o->backoff_max_ms)
		s->backoff_ms = p->o->backoff_max_ms;
}

static void reap(struct pool *p)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid == p->helper) {
			p->helper = 0;
			if (!p->stopping) {
				char how[128];
				describe(status, how, sizeof(how));
				log_error("the metrics process %d %s; starting another in %d ms",
					  (int)pid, how, HELPER_RESTART_MS);
				p->helper_restart_at = util_now_ms() + HELPER_RESTART_MS;
			}
			continue;
		}
		for (size_t i = 0; i < p->nchildren; i++)
			if (p->children[i].pid == pid) {
				reaped(p, i, status);
				break;
			}
	}
}

static bool slot_retiring(const struct pool *p, int slot)
{
	for (size_t i = 0; i < p->nchildren; i++)
		if (p->children[i].slot == slot && p->children[i].retiring)
			return true;
	return false;
}

/* Starts the replacement of slot: a new child first, then SIGTERM to the old ones. */
static void replace_slot(struct pool *p, int slot)
{
	size_t before = p->nchildren;
	for (size_t i = 0; i < before; i++)
		if (p->children[i].slot == slot)
			p->children[i].retiring = true;
	if (p->slots[slot].restart_at == 0 && spawn(p, slot) < 0)
		p->slots[slot].restart_at = util_now_ms() + p->o->backoff_min_ms;
	for (size_t i = 0; i < p->nchildren; i++)
		if (p->children[i].slot == slot && p->children[i].retiring)
			kill(p->children[i].pid, SIGTERM);
}

/* Moves the SIGHUP replacement on to the next slot once the old child of this one is gone. */
static void advance_replacement(struct pool *p)
{
	while (p->replacing >= 0 && !slot_retiring(p, p->replacing)) {
		if (++p->replacing >= p->o->processes) {
			log_info("every worker process was replaced");
			p->replacing = -1;
			break;
		}
		replace_slot(p, p->replacing);
	}
}

static void on_signal(struct pool *p, int sig)
{
	if (sig == SIGTERM || sig == SIGINT) {
		if (!p->stopping)
			log_info("stopping %zu worker processes", p->nchildren);
		p->stopping = true;
		count_running(p);
		for (size_t i = 0; i < p->nchildren; i++)
			kill(p->children[i].pid, SIGTERM);
		if (p->helper)
			kill(p->helper, SIGTERM);
	} else if (sig == SIGHUP && !p->stopping) {
		if (p->replacing >= 0) {
			log_warn("SIGHUP: the worker processes are already being replaced");
			return;
		}
		if (p->o->reload && p->o->reload(p->o->arg) != 0) {
			log_error("SIGHUP: the application cannot be loaded; keeping the running "
				  "worker processes");
			return;
		}
		log_info("SIGHUP: replacing the worker processes one by one");
		p->replacing = 0;
		replace_slot(p, 0);
	}
}

int pool_run(const struct pool_options *opts)
{
	struct pool_options o = *opts;
	if (!o.backoff_min_ms)
		o.backoff_min_ms = 100;
	if (!o.backoff_max_ms)
		o.backoff_max_ms = 5000;
	if (!o.stable_ms)
		o.stable_ms = 10000;
	struct pool p = {.o = &o, .replacing = -1};
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGCHLD);
	struct sigaction sa = {.sa_handler = on_sigchld}, old_chld;
	sigemptyset(&sa.sa_mask);
	if (sigprocmask(SIG_BLOCK, &set, &p.oldmask) < 0)
		return -errno;
	/* SIGCHLD must not be ignored, or it would not be queued for sigtimedwait. */
	sigaction(SIGCHLD, &sa, &old_chld);
	p.children = xcalloc((size_t)o.processes * 2 + 1, sizeof(*p.children));
	if (o.stats)
		o.stats->processes = o.processes;
	p.slots = xcalloc((size_t)o.processes, sizeof(*p.slots));
	int rc = 0;
	if (o.helper)
		spawn_helper(&p);
	for (int i = 0; i < o.processes; i++) {
		p.slots[i].backoff_ms = o.backoff_min_ms;
		if ((rc = spawn(&p, i)) < 0 && i == 0)
			goto out;
		if (rc < 0)
			p.slots[i].restart_at = util_now_ms() + o.backoff_min_ms;
	}
	rc = 0;
	while (!p.stopping || p.nchildren > 0 || p.helper) {
		int64_t now = util_now_ms(), wait = 1000;
		if (o.stats)
			__atomic_store_n(&o.stats->supervisor_ms, now, __ATOMIC_RELAXED);
		for (int i = 0; i < o.processes && !p.stopping; i++)
			if (p.slots[i].restart_at && p.slots[i].restart_at - now < wait)
				wait = p.slots[i].restart_at - now;
		if (p.helper_restart_at && !p.stopping && p.helper_restart_at - now < wait)
			wait = p.helper_restart_at - now;
		if (wait < 0)
			wait = 0;
		struct timespec ts = {.tv_sec = wait / 1000,
				      .tv_nsec = (long)(wait % 1000) * 1000000L};
		siginfo_t info;
		int sig = sigtimedwait(&set, &info, &ts);
		if (sig > 0 && sig != SIGCHLD)
			on_signal(&p, sig);
		reap(&p);
		now = util_now_ms();
		for (int i = 0; i < o.processes && !p.stopping; i++)
			if (p.slots[i].restart_at && p.slots[i].restart_at <= now) {
				p.slots[i].restart_at = 0;
				if (spawn(&p, i) < 0)
					p.slots[i].restart_at = now + p.slots[i].backoff_ms;
			}
		if (p.helper_restart_at && !p.stopping && p.helper_restart_at <= now)
			spawn_helper(&p);
		if (!p.stopping)
			advance_replacement(&p);
	}
out:
	if (rc < 0 && p.helper) {
		kill(p.helper, SIGTERM);
		waitpid(p.helper, NULL, 0);
	}
	if (rc < 0)
		for (size_t i = 0; i < p.nchildren; i++)
			kill(p.children[i].pid, SIGTERM);
	while (rc < 0 && p.nchildren > 0 && waitpid(p.children[p.nchildren - 1].pid, NULL, 0) > 0)
		p.nchildren--;
	free(p.children);
	free(p.slots);
	sigaction(SIGCHLD, &old_chld, NULL);
	sigprocmask(SIG_SETMASK, &p.oldmask, NULL);
	return rc;
}
