/* The asgi.delay service (SPEC §4): a message {channel, delay: ms, content: map} sent to
 * asgi.delay is delivered as content to channel delay milliseconds later.
 *
 * Due messages wait in a Redis sorted set, prefix + ":delay" ("asgi::delay", on the first
 * server of the layer): score = due time (Unix time in ms), member = 16 hex digits of a unique id
 * followed by the msgpack map {channel, content}. They survive a restart of the service, and
 * several services may share the set: taking due members is one atomic script, so each message
 * goes out once. The service blocks on asgi.delay until the next due time (no fixed timer). */
#ifndef LAUREL_WORKER_DELAY_H
#define LAUREL_WORKER_DELAY_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "laurel/layer.h"

#define DELAY_CHANNEL "asgi.delay"

struct delay;

/* Makes the service for a layer (its options are copied; the sorted set lives on urls[0], which
 * must be a Redis URL). Does not connect yet. Returns 0, or -EINVAL with a sentence in err. */
int delay_new(struct delay **out, const struct laurel_layer_options *o, char *err, size_t errlen);
void delay_free(struct delay *d);

/* Checks one message received on asgi.delay and stores it. Returns 0, -EINVAL for a bad message
 * (logged as a warning and dropped), or -ENOTCONN / -EPROTO when Redis failed (logged). */
int delay_accept(struct delay *d, const struct laurel_msg *msg);

/* Sends every stored message that is due at now_ms (Unix time in ms) and sets *next_ms to the due
 * time of the next one (-1 if none). Returns the number sent, or a negative errno (logged). */
int delay_deliver(struct delay *d, int64_t now_ms, int64_t *next_ms);

/* Runs the service until *stop becomes non-zero (checked at least once a second). Returns 0. */
int delay_run(struct delay *d, volatile sig_atomic_t *stop);

/* Unix time in milliseconds. */
int64_t delay_now_ms(void);

#endif
