/* WebSocket (RFC 6455) for the interface: the handshake key, framing, and a wslay-based frame
 * reader. Protocol only: no I/O; bytes go out through the write callback, so it is unit tested
 * and fuzzed on byte buffers. The only module that includes wslay.
 *
 * Data frames from the server are framed here (ws_frame) rather than queued in wslay, so a
 * message for many connections is framed once and the same bytes are written to each. wslay reads
 * the client's frames, answers pings, and runs the close handshake. */
#ifndef LAUREL_INTERFACE_WEBSOCKET_H
#define LAUREL_INTERFACE_WEBSOCKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define WS_TEXT 1
#define WS_BINARY 2

struct ws_callbacks {
	/* A whole message from the client (text already checked to be UTF-8). */
	void (*on_message)(void *owner, bool text, const uint8_t *data, size_t len);
	/* Any frame arrived (for keep-alive). */
	void (*on_activity)(void *owner);
	/* Appends bytes to the connection's output; returns 0, or -1 to stop. */
	int (*write)(void *owner, const void *data, size_t len);
};

struct ws;

/* max_message: largest message accepted (above: close 1009). */
struct ws *ws_new(size_t max_message, const struct ws_callbacks *cb, void *owner);
void ws_free(struct ws *w);

/* Reads frames from data[0..len) (after the frames a pause left unread; len may be 0 to read just
 * those). Returns 0, or -1 when the connection must be dropped now. */
int ws_feed(struct ws *w, const uint8_t *data, size_t len);
/* From on_message: deliver no more messages in this ws_feed. The frames after this message are
 * kept unparsed (ws_has_pending) for the next ws_feed, which the owner makes once it can take
 * messages again — and until then it reads nothing more from the client. */
void ws_pause(struct ws *w);
bool ws_has_pending(const struct ws *w);
/* Sends one message framed here. Returns 0, or -1 once a close was sent. */
int ws_send(struct ws *w, bool text, const void *data, size_t len);
/* Writes pre-framed bytes (from ws_frame). Same returns as ws_send. */
int ws_send_framed(struct ws *w, const void *frame, size_t len);
/* Starts the close handshake with code (1000..4999). Idempotent. */
void ws_close(struct ws *w, int code);
/* Sends a ping. */
void ws_ping(struct ws *w);

bool ws_close_sent(const struct ws *w);
bool ws_close_received(const struct ws *w);
/* The close code the client sent (1005 if none, 1006 if no close frame came). */
int ws_close_code_received(const struct ws *w);
int ws_close_code_sent(const struct ws *w);
/* True when both sides are done (close sent, and received or the reader failed). */
bool ws_finished(const struct ws *w);
/* True while wslay's context is freed (a quiet connection; see websocket.c). For tests. */
bool ws_dormant(const struct ws *w);

/* Appends one unmasked server frame (FIN set) to out. */
void ws_frame(struct buf *out, bool text, const void *data, size_t len);
/* Sec-WebSocket-Accept for a Sec-WebSocket-Key: out holds 29 bytes. */
void ws_accept_key(const char *key, size_t keylen, char *out);
/* RFC 3629 UTF-8 check. */
bool ws_valid_utf8(const uint8_t *s, size_t n);

#endif
