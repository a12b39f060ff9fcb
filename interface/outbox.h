/* The interface's outbox for control messages (websocket.disconnect, http.disconnect): messages
 * that must reach the application even when their channel is full or a Redis shard is down for a
 * while. Each is sent at once when nothing of its channel waits before it, and otherwise kept, in
 * order, and sent again with backoff (100 ms doubling to 2 s per channel) until the layer accepts
 * it. It respects the channel's capacity, like every other send: the excess waits here, not in
 * Redis, so an application that cannot keep up slows its disconnects down instead of losing them.
 *
 * A message the layer refuses for any other reason (an unexpected answer) is dropped and logged,
 * so that it cannot hold the later ones back. Bounded: at most `max` messages wait; past that a new one is dropped, counted, and said in one
 * log line (rate-limited, with the count). What waits here is lost if the process is killed
 * (presence, docs/layer.md, cleans up after that). A message whose send was written but not
 * answered (the connection broke) is sent again: a control message may then arrive twice, never
 * not at all. */
#ifndef LAUREL_INTERFACE_OUTBOX_H
#define LAUREL_INTERFACE_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "laurel/message.h"

struct event_base;
struct layer_async;
struct outbox;

/* layer is borrowed and must outlive the outbox. */
void outbox_new(struct outbox **out, struct event_base *base, struct layer_async *layer,
		size_t max);
/* Frees what still waits (counted as dropped, and logged). NULL is a no-op. */
void outbox_free(struct outbox *o);

/* Sends msg (taken over) on channel, now or later. Returns 0, or -EINVAL / -EMSGSIZE for a
 * message the layer can never take (msg is freed), or -ENOBUFS when the outbox is full (msg is
 * freed and the drop counted). */
int outbox_send(struct outbox *o, const char *channel, struct laurel_msg *msg);

/* Messages waiting or in flight. */
size_t outbox_pending(const struct outbox *o);
/* Messages dropped because the outbox was full, since the start. */
uint64_t outbox_dropped(const struct outbox *o);

/* Calls cb(arg) from the loop once nothing waits (at once if nothing does). One at a time: a
 * second call replaces the first. */
void outbox_on_empty(struct outbox *o, void (*cb)(void *arg), void *arg);

#endif
