/* One worker: receives messages from the channels its routing names, checks them, runs the
 * routed consumer and flushes what it held (SPEC §6). Single-threaded; one per process (or per
 * thread, with a layer of its own). */
#ifndef LAUREL_WORKER_WORKER_H
#define LAUREL_WORKER_WORKER_H

#include <signal.h>
#include <stddef.h>

#include "laurel/layer.h"
#include "laurel/routing.h"

struct worker_options {
	struct laurel_layer_options layer; /* copied by laurel_layer_new */
	/* Instead of making a layer from the options: use this one, borrowed (an in-memory layer
	 * shared by the threads of the development server). */
	struct laurel_layer *shared_layer;
	const struct laurel_route *routes; /* borrowed; must outlive the worker */
	void *app_data; /* what the application's init made (worker/app.h), for its consumers */
	const char *const *only;	   /* channel globs to keep (none: all) */
	size_t nonly;
	const char *const *exclude; /* channel globs to leave out */
	size_t nexclude;
	size_t batch;	  /* messages taken per receive; default 8 */
	int full_wait_ms; /* retry a full channel; default 2000 */
	/* Where to count (worker/stats.h): the table and this worker's record; NULL: nowhere. */
	struct wstats *stats;
	struct wstats_proc *stats_proc;
};

struct worker;
struct wstats;
struct wstats_proc;

/* Loads the routing (with the default routes below it) and makes the layer (which connects on
 * first use). Returns 0, or -EINVAL with a sentence in err: a bad route, no channel left to listen
 * on after the globs, or a bad layer option. */
int worker_new(struct worker **out, const struct worker_options *o, char *err, size_t errlen);
void worker_free(struct worker *w);

/* The channels the worker listens on. Borrowed. */
const char *const *worker_channels(const struct worker *w, size_t *n);
/* Its layer, borrowed (for tests and tools that share it). */
struct laurel_layer *worker_layer(struct worker *w);

/* What became of one message. */
enum worker_outcome {
	WORKER_DONE = 0, /* the consumer returned 0 and its sends were flushed */
	WORKER_LATER,	 /* re-queued for later */
	WORKER_DROPPED,	 /* malformed, no route, consumer error, or too many retries */
	WORKER_WAITING,	 /* enforce_ordering: came early, parked on the wait channel */
};

/* Handles one message received on channel (msg borrowed). Every problem is logged with the
 * channel and the reply channel; nothing is returned as an error. */
enum worker_outcome worker_handle(struct worker *w, const char *channel,
				  const struct laurel_msg *msg);

/* Receives and handles messages until *stop becomes non-zero (checked at least once a second and
 * after each batch; the messages already taken are finished first). A layer that is unreachable
 * is retried with its own backoff. Returns 0. */
int worker_run(struct worker *w, volatile sig_atomic_t *stop);

#endif
