/* laurel-worker --metrics ADDR: GET /metrics (every laurel_worker_* family of the pool's
 * processes, summed), /healthz (liveness: the supervisor's loop turns) and /readyz (readiness:
 * every worker process received from the layer within WSTATS_READY_MS) on a listener bound by
 * the supervisor before it forks (so a bad address fails at start) and served by a process of
 * the pool's own, which reads the shared table (worker/stats.h); without a supervisor, by a
 * thread of the one worker process. docs/operations.md lists every metric. */
#ifndef LAUREL_WORKER_METRICS_H
#define LAUREL_WORKER_METRICS_H

#include <stdbool.h>
#include <stddef.h>

struct wstats;
struct worker_metrics;

/* Listens on addr (see common/metrics_http.h), on an event loop of its own that nothing runs
 * yet. supervised: /healthz checks the supervisor's heartbeat (wstats.supervisor_ms). Returns
 * NULL with a sentence in err. */
struct worker_metrics *worker_metrics_new(const char *addr, struct wstats *t, bool supervised,
					  char *err, size_t errlen);
/* Serves on a thread, with every signal blocked (a worker without a supervisor, which never
 * forks). Returns 0, or -1 with a sentence in err. */
int worker_metrics_thread(struct worker_metrics *m, char *err, size_t errlen);
/* Serves in this process until SIGTERM or SIGINT: the pool's metrics process, forked by the
 * supervisor (which stays one thread, so that every fork is safe). Returns an exit status. */
int worker_metrics_serve(struct worker_metrics *m);
/* Stops the thread and the listener; NULL: nothing. */
void worker_metrics_stop(struct worker_metrics *m);
/* In a forked child: closes the inherited listening socket (nothing else is touched). */
void worker_metrics_forked(struct worker_metrics *m);

#endif
