/* The WebSocket glue of laurel-interface: a connection's WebSocket between the client (through
 * the protocol code of websocket.h, whose API is ws_*) and the channel layer's websocket.connect,
 * .receive and .disconnect channels. */
#ifndef LAUREL_INTERFACE_ASGI_WS_H
#define LAUREL_INTERFACE_ASGI_WS_H

#include <stdbool.h>

#include "interface/conn.h"
#include "interface/websocket.h"
#include "interface/http1.h"

struct laurel_msg;

/* Checks a WebSocket handshake (RFC 6455 §4.2.1) and picks the subprotocol. Returns 0 or the
 * status to refuse it with. */
int asgi_ws_check(struct conn *c, const struct http1_request *h);
/* The handshake's request is complete: sends websocket.connect and waits for the answer. */
void asgi_ws_connect(struct conn *c);
/* --websocket_connect_timeout passed: 403 if the application had the connect, 503 if the layer
 * never took it (its channel stayed full, or the layer was down). */
void asgi_ws_expired(struct conn *c);
/* Refuses the handshake with 403, logging why. */
void asgi_ws_reject(struct conn *c, const char *why);
/* A reply for the WebSocket (accept, text, bytes, close). */
void asgi_ws_reply(struct conn *c, const struct laurel_msg *m);
/* Feeds what the client sent to the protocol code. */
void asgi_ws_read(struct conn *c);
/* Sends websocket.disconnect with code (once). */
void asgi_ws_disconnect(struct conn *c, int code);
/* The code websocket.disconnect reports: what the client sent, else what we sent, else 1006. */
int asgi_ws_code(const struct conn *c);
/* Before writing: a client that has not read what it was sent, beyond --ws-max-output, is closed
 * (1013). Returns false if it was. */
bool asgi_ws_check_output(struct conn *c);
/* Sends the data message m to the open WebSocket c (after asgi_ws_check_output) and counts it.
 * m may go to many connections; asgi_ws_message_fini counts what it cost and frees it. */
void asgi_ws_send(struct conn *c, struct ws_message *m);
void asgi_ws_message_fini(struct server *s, struct ws_message *m);
/* Closes the WebSocket with code now (the close frame goes out; the connection closes once
 * the client answers or WS_CLOSE_WAIT_MS passes). */
void asgi_ws_close_now(struct conn *c, int code);
/* Arms the keep-alive timer for the next thing to look at; asgi_ws_tick is its expiry. */
void asgi_ws_arm(struct conn *c);
void asgi_ws_tick(struct conn *c);
/* Frees the websocket.receive and .connect messages waiting to be sent again (at the server's
 * end). */
void asgi_ws_free_retries(struct server *s);

#endif
