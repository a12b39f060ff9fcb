/* enforce_ordering (SPEC §6), as Channels 1.1 did it: the next order a connection expects lives
 * in its channel session under "__channels_next_order" (0 at first: websocket.connect runs
 * first); a message that comes early waits on the connection's wait channel "__wait__." + reply
 * channel (with '!' replaced by '?'), carrying "original_channel", and every message there goes
 * back onto its channel each time one of the connection's messages has run. */
#ifndef LAUREL_WORKER_ORDERING_H
#define LAUREL_WORKER_ORDERING_H

#include <stdint.h>

#include "worker/consumer.h"

#define ORDERING_SESSION_KEY "__channels_next_order"
#define ORDERING_WAIT_PREFIX "__wait__."
#define ORDERING_ORIGINAL_KEY "original_channel"

/* The wait channel of a reply channel, into out (LAUREL_NAME_MAX + 1 bytes). Returns 0, or
 * -EINVAL when the name would be too long. */
int ordering_wait_channel(const char *reply_channel, char *out);

enum ordering_verdict {
	ORDERING_RUN,	 /* its turn: run the consumer, then ordering_done */
	ORDERING_WAITED, /* early: parked on the wait channel */
	ORDERING_DROP,	 /* no order or reply channel, already past, or a layer failure (logged) */
};

/* Before the consumer runs: reads the message's order and the connection's next order (loading
 * ctx's session). Sets *order. */
enum ordering_verdict ordering_begin(struct laurel_ctx *ctx, int64_t *order);

/* After the message of order ran (or failed for good: a failed message does not hold up the
 * connection): records order + 1 as the next one in ctx's session and saves it (after the held
 * sends went out, so the successor's replies come after this one's), then moves the waiting
 * messages back onto their channels. Drops what ctx held that was not sent yet. */
void ordering_done(struct laurel_ctx *ctx, int64_t order);

#endif
