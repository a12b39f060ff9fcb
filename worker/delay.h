/* The asgi.delay service (SPEC §4): a message {channel, delay: ms, content: map} sent to
 * asgi.delay is delivered as content to channel delay milliseconds later.
 *
 * Due messages wait in the layer's scheduled messages (laurel_layer_schedule: on Redis, the sorted
 * set "asgi::delay" on the first server). They survive a restart of the service, and several
 * services may share them: taking due ones is atomic, so each message goes out once. The service
 * blocks on asgi.delay until the next due time, and looks at the schedule at least once a second
 * when idle, so entries another service stored before it stopped are not stranded. */
#ifndef LAUREL_WORKER_DELAY_H
#define LAUREL_WORKER_DELAY_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "laurel/layer.h"

#define DELAY_CHANNEL "asgi.delay"

struct delay;

/* Makes the service for a layer (its options are copied; it must be a Redis layer). Does not
 * connect yet. Returns 0, or -EINVAL with a sentence in err. */
int delay_new(struct delay **out, const struct laurel_layer_options *o, char *err, size_t errlen);
/* The same on a layer that the caller owns and shares (the development server's memory layer,
 * used by several threads). */
void delay_new_shared(struct delay **out, struct laurel_layer *layer);
void delay_free(struct delay *d);
/* Counts what it accepts and sends into p (worker/stats.h; NULL: nowhere). */
struct wstats_proc;
void delay_set_stats(struct delay *d, struct wstats_proc *p);
/* The service's layer, borrowed (to watch a descriptor with laurel_layer_watch_fd). */
struct laurel_layer *delay_layer(struct delay *d);

/* Checks one message received on asgi.delay and stores it. Returns 0, -EINVAL for a bad message
 * (logged as a warning and dropped), or the layer's error (logged). */
int delay_accept(struct delay *d, const struct laurel_msg *msg);

/* Sends every stored message that is due at now_ms (Unix time in ms) and sets *next_ms to the due
 * time of the next one (-1 if none). Returns the number sent, or a negative errno (logged). */
int delay_deliver(struct delay *d, int64_t now_ms, int64_t *next_ms);

/* Runs the service until *stop becomes non-zero (checked after each wait: at once when the
 * layer watches a descriptor the stop handler writes to, else within a second). Returns 0. */
int delay_run(struct delay *d, volatile sig_atomic_t *stop);

/* Unix time in milliseconds. */
int64_t delay_now_ms(void);

#endif
