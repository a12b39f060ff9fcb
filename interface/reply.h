/* The reply path of laurel-interface: requests waiting for replies are found by the local id in
 * their reply channel ("laurel.response.AbCdEfGhIj!q17" → 17), never by pointer, so a reply for a
 * connection that is gone is dropped (with a debug line). */
#ifndef LAUREL_INTERFACE_REPLY_H
#define LAUREL_INTERFACE_REPLY_H

#include <stdint.h>

#include "interface/conn.h"

struct laurel_received;

/* Registers / forgets request id as waiting on connection c. */
void reply_add(struct server *s, uint64_t id, struct conn *c);
void reply_del(struct server *s, uint64_t id);
/* The connection of request id if it is still waiting for replies (unfinished), or NULL: what a
 * layer callback given the id uses. */
struct conn *reply_live(struct server *s, uint64_t id);
/* The layer listener's callback for this process's channel (arg: the server): a reply goes to
 * its request; a group message for several local connections is framed once for all of them. */
void reply_on_message(struct laurel_received *rcv, void *arg);
/* Frees the table. */
void reply_free_all(struct server *s);

#endif
