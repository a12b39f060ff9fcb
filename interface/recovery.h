/* A WebSocket's recoveries under way (docs/recovery.md). laurel_group_recover in a worker sends
 * on the connection's reply channel, in this order: a hold for the group, then — once it has
 * joined the group and read its history — the missed messages in one or more batches, the last
 * one final. The connection's reply channel and the group's multicasts share this interface's
 * one queue, so between the hold and the final batch every live message of the group for this
 * connection arrives here and is kept. Then the missed messages go out, the status frame
 * {"group","epoch","offset","recovered"}, and the kept live messages newer than what was
 * recovered, in offset order: no gap, no duplicate at the seam.
 *
 * Limits: a hold keeps at most RECOVERY_HOLD_MAX_BYTES of envelopes; past that the connection
 * is closed with 1013 (try again later). A hold whose batch has not come within
 * RECOVERY_HOLD_MAX_MS (the worker died, the layer failed) ends when the next live message
 * comes: status "recovered": false, then what was kept. A connection with no recovery under way
 * costs one NULL pointer. */
#ifndef LAUREL_INTERFACE_RECOVERY_H
#define LAUREL_INTERFACE_RECOVERY_H

#include <stddef.h>
#include <stdint.h>

#include "interface/conn.h"
#include "interface/envelope.h"

/* The control message's key (worker/consumer.c sends it). */
#define RECOVERY_KEY "__laurel_recovery__"
#define RECOVERY_HOLD_MAX_BYTES ((size_t)4 << 20)
#define RECOVERY_HOLD_MAX_MS 10000

/* Whether m is a hold (the others are batches). */
bool recovery_is_hold(const struct laurel_value *ctl);
/* A control message (ctl: its RECOVERY_KEY value) for the open WebSocket c; a batch's
 * messages are m's "messages". */
void recovery_control(struct conn *c, const struct laurel_msg *m, const struct laurel_value *ctl);
/* Sends the envelope env[0..len) of a message of k's group to c, or keeps it while a recovery
 * of that group is under way. m: env as a message for many connections (reply.c), or NULL. */
struct ws_message;
void recovery_deliver(struct conn *c, const struct envelope_key *k, const char *env, size_t len,
		      struct ws_message *m);
void recovery_free_all(struct conn *c);

#endif
