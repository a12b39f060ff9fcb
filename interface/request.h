/* An HTTP request's life on a connection: the parser callbacks build the http.request (or the
 * WebSocket's websocket.connect) message, the request and its body go to the channel layer, the
 * replies become the response, and the end is logged and told to the application. */
#ifndef LAUREL_INTERFACE_REQUEST_H
#define LAUREL_INTERFACE_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/layer_async.h"
#include "interface/conn.h"
#include "interface/http1.h"

struct laurel_msg;

/* What a layer send's callback gets (owned by the callback): the server and the request id,
 * never the connection, which may be gone. */
struct request_ref {
	struct server *srv;
	uint64_t id;
};

/* In a send's callback: frees the struct request_ref (arg) and returns the connection of its
 * request if that request is still waiting for replies, else NULL. */
struct conn *request_ref_take(void *arg);

/* The parser callbacks of every connection (owner: the struct conn). */
extern const struct http1_callbacks request_parser_callbacks;

/* Sends m (borrowed) to channel for c's request; cb (may be NULL) gets a struct request_ref.
 * Returns layer_async_send's result (cb is not called on failure). */
int request_send(struct conn *c, const char *channel, struct laurel_msg *m, layer_async_done_cb cb);
/* Tells a streaming application that no more body will come ({closed: true}). */
void request_body_closed(struct conn *c);
/* Sends http.disconnect (unless --no-http-disconnect or nothing was sent). */
void request_disconnect(struct conn *c);
/* Starts the response from the first reply message: its head is appended to head_out. Returns
 * 0, or -1 when the reply is unusable (answered with 500). */
int request_response_start(struct conn *c, const struct laurel_msg *m, bool more,
			   struct buf *head_out);
/* Writes what head holds and a piece of the body, framed as the response needs. */
void request_response_body(struct conn *c, struct buf *head, const void *data, size_t len);
/* Frees a request and what it holds (nothing is sent or logged). */
void request_free(struct request *r);
/* The response is complete (or abandoned): log, tell the application, and either wait for the
 * next request on the connection or close it (request_settle). Inside the parser's callbacks
 * (c->parsing) the request is only marked finished, and settled by conn_read once http1_feed has
 * returned, so no callback ever finds its request freed. */
void request_finish(struct conn *c);
/* Frees c's finished request and keeps the connection for the next request or closes it (which
 * may free c). */
void request_settle(struct conn *c);

#endif
