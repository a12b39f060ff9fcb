/* laurel-worker --metrics ADDR: GET /metrics (every laurel_worker_* family of the pool's
 * processes, summed), /healthz (liveness: the supervisor's loop turns) and /readyz (readiness:
 * every worker process received from the layer within WSTATS_READY_MS) on a listener served by a
 * thread of the supervisor (or of the one worker process, without a supervisor). The thread only
 * reads the shared table (worker/stats.h); it never logs, so a fork while it runs finds no lock
 * of its held in the child. docs/operations.md lists every metric. */
#ifndef LAUREL_WORKER_METRICS_H
#define LAUREL_WORKER_METRICS_H

#include <stdbool.h>
#include <stddef.h>

struct wstats;
struct worker_metrics;

/* Listens on addr (see common/metrics_http.h) and starts the thread, with every signal blocked.
 * supervised: /healthz checks the supervisor's heartbeat (wstats.supervisor_ms). Returns NULL
 * with a sentence in err. */
struct worker_metrics *worker_metrics_start(const char *addr, struct wstats *t, bool supervised,
					    char *err, size_t errlen);
/* Stops the thread and the listener; NULL: nothing. */
void worker_metrics_stop(struct worker_metrics *m);
/* In a forked child: closes the inherited listening socket (nothing else is touched). */
void worker_metrics_forked(struct worker_metrics *m);

#endif
