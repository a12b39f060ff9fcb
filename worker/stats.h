/* What a worker counts, in memory its supervisor reads: one record per worker process (or per
 * worker thread of the development server), written by that process alone as it goes, and read
 * whenever /metrics is asked for. A pool's parent maps the whole table shared before it forks, so a
 * child's counts are visible without a message and survive it: when a child is reaped, its
 * record is added into the pool's retired totals and freed for the next child.
 *
 * Label values are bounded: channels and routes come from the routing (WSTATS_NAMES of each, the
 * rest counted under "other"); a connection or a message never becomes a label. */
#ifndef LAUREL_WORKER_STATS_H
#define LAUREL_WORKER_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/buf.h"
#include "common/metrics.h"
#include "laurel/layer.h"

/* Names of each kind (channels, routes) a table labels; the last one is "other". */
#define WSTATS_NAMES 64
/* A process is ready while its receive loop worked this recently (it turns at least once a
 * second when idle). */
#define WSTATS_READY_MS 5000

/* What became of a message. */
enum wstats_result {
	WSTATS_OK,	/* the consumer returned 0 */
	WSTATS_FAILED,	/* the consumer failed */
	WSTATS_LATER,	/* consume-later (or the layer refused the consumer's calls) */
	WSTATS_DROPPED, /* malformed, no route, or re-queued too often */
	WSTATS_WAITING, /* enforce_ordering: came early, parked until its predecessors ran */
	WSTATS_RESULTS
};

#define WSTATS_BATCH_BUCKETS 11 /* 1, 2, 4 ... 512, 1000 messages */

struct wstats_proc {
	int32_t pid; /* 0: a free record */
	int32_t slot;
	int64_t turned_ms; /* monotonic: the last receive that worked; 0: none yet */
	bool layer_down;   /* the last receive failed */
	bool delay;	   /* an asgi.delay service, not an application */
	uint64_t receive_errors;
	uint64_t channel[WSTATS_NAMES][WSTATS_RESULTS];
	uint64_t route[WSTATS_NAMES][WSTATS_RESULTS];
	struct metrics_histogram run[WSTATS_NAMES]; /* consumer run time, by route */
	uint64_t batch[WSTATS_BATCH_BUCKETS], batches, batch_messages;
	/* Held sends (a consumer's sends, flushed after it returned): [0] channels, [1] groups. */
	uint64_t held_ok[2], held_dropped[2];
	uint64_t held_waited; /* a full channel or an unreachable server waited for */
	uint64_t held_carried; /* gauge: kept for the next flush (a full channel of its own) */
	uint64_t delayed_accepted, delayed_sent, delayed_rejected;
};

struct wstats_name {
	uint32_t state; /* 0 free, 1 being written, 2 ready */
	char name[LAUREL_NAME_MAX + 1];
};

struct wstats {
	/* Taken by whoever retires a record and by the reader, in the owning process only (the
	 * children never take it): a scrape never sees a reaped child's counts twice or not at
	 * all, so a counter never seems to go back. */
	pthread_mutex_t lock;
	size_t nprocs;
	bool shared;   /* mapped for a pool (munmap), or allocated (free) */
	int processes; /* configured; 0 for a worker without a supervisor */
	int running;
	uint64_t restarts; /* processes that died unexpectedly */
	bool stopping;
	int64_t supervisor_ms; /* monotonic: the supervisor's loop last turned */
	struct wstats_name channels[WSTATS_NAMES], routes[WSTATS_NAMES];
	struct wstats_proc retired; /* the sums of every reaped process */
	struct wstats_proc procs[];
};

/* A table for up to nprocs processes at once: shared (MAP_SHARED, for a pool about to fork) or
 * private (threads). NULL if it cannot be mapped. */
struct wstats *wstats_new(size_t nprocs, bool shared);
void wstats_free(struct wstats *t);
/* A free record for pid (the parent calls it before fork, and sets pid after); NULL if none. */
struct wstats_proc *wstats_claim(struct wstats *t, int slot);
/* Adds a record into the retired totals and frees it (its process is gone). */
void wstats_retire(struct wstats *t, struct wstats_proc *p);

/* The index of a channel's or a route's name in its table (a new name takes a free entry; when
 * the table is full: the last, "other"). Safe from several processes at once; one name may
 * end up in two entries, which are summed when written. */
int wstats_name(struct wstats_name *table, const char *name);

/* Counting, by the record's owner. */
void wstats_batch(struct wstats_proc *p, size_t n);

/* Why the pool is not ready, else NULL (buf holds the sentence). */
const char *wstats_not_ready(const struct wstats *t, int64_t now_ms, char *buf, size_t size);
/* Every laurel_worker_* family. */
void wstats_write(struct wstats *t, struct buf *out, int64_t now_ms);

#endif
