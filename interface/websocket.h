/* WebSocket (RFC 6455) for the interface: the handshake key, framing, and a wslay-based frame
 * reader. Protocol only: no I/O; bytes go out through the write callback, so it is unit tested
 * and fuzzed on byte buffers. The only module that includes wslay.
 *
 * Data frames from the server are framed here (ws_frame) rather than queued in wslay, so a
 * message for many connections is framed once and the same bytes are written to each. wslay reads
 * the client's frames, answers pings, and runs the close handshake. permessage-deflate (RFC 7692)
 * is done here with deflate.h: RSV1 is allowed on a connection that negotiated it, and its
 * compressed messages are inflated before on_message. */
#ifndef LAUREL_INTERFACE_WEBSOCKET_H
#define LAUREL_INTERFACE_WEBSOCKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "interface/deflate.h"

#define WS_TEXT 1
#define WS_BINARY 2

struct ws_callbacks {
	/* A whole message from the client (inflated if it came compressed; text already checked to
	 * be UTF-8). */
	void (*on_message)(void *owner, bool text, const uint8_t *data, size_t len);
	/* Optional: the message on_message is about to deliver came compressed, wire_len bytes. */
	void (*on_compressed)(void *owner, size_t wire_len);
	/* Any frame arrived (for keep-alive). */
	void (*on_activity)(void *owner);
	/* Appends bytes to the connection's output; returns 0, or -1 to stop. */
	int (*write)(void *owner, const void *data, size_t len);
};

/* Settings shared by the connections of a server; borrowed by every ws made with them. */
struct ws_config {
	size_t max_message;	      /* largest message accepted, inflated (above: close 1009) */
	size_t compress_threshold;    /* messages shorter than this go uncompressed */
	int compress_level;	      /* zlib level, 1..9 */
};

struct ws;

/* deflate_bits: the window (9..15) negotiated for permessage-deflate (deflate.h), 0 for none.
 * With it, messages from the client may come compressed (RSV1) and messages to it go compressed
 * from cfg->compress_threshold bytes on. */
struct ws *ws_new(const struct ws_config *cfg, int deflate_bits, const struct ws_callbacks *cb,
		  void *owner);
void ws_free(struct ws *w);

/* Reads frames from data[0..len) (after the frames a pause left unread; len may be 0 to read just
 * those). Returns 0, or -1 when the connection must be dropped now. */
int ws_feed(struct ws *w, const uint8_t *data, size_t len);
/* From on_message: deliver no more messages in this ws_feed. The frames after this message are
 * kept unparsed (ws_has_pending) for the next ws_feed, which the owner makes once it can take
 * messages again — and until then it reads nothing more from the client. */
void ws_pause(struct ws *w);
bool ws_has_pending(const struct ws *w);
/* One data message to send, framed at most once for each kind of connection it goes to: plain,
 * and compressed for each window size negotiated. A message for many connections is made once
 * and sent to each (ws_send_message); the counts say what it cost. Caller-owned; data is
 * borrowed until ws_message_fini. */
struct ws_message {
	const struct ws_config *cfg;
	bool text;
	const void *data;
	size_t len;
	struct buf plain;			   /* the plain frame, once made */
	struct buf deflated[DEFLATE_VARIANTS];	   /* the compressed frame per window size */
	uint16_t tried;				   /* bit i: deflated[i] made (empty: did not pay) */
	/* What it cost, for the caller's counters: */
	unsigned compressions;	   /* times compressed (at most one per window size) */
	size_t sent_compressed;	   /* sends that went compressed */
	uint64_t wire_payload;	   /* payload bytes written, over all sends (after compression) */
};

void ws_message_init(struct ws_message *m, const struct ws_config *cfg, bool text,
		     const void *data, size_t len);
void ws_message_fini(struct ws_message *m);
/* Sends m on w, compressed if w negotiated it and compression pays. Returns 0, or -1 once a
 * close was sent. */
int ws_send_message(struct ws *w, struct ws_message *m);
/* Sends one message (ws_message for one connection). Same returns. */
int ws_send(struct ws *w, bool text, const void *data, size_t len);
/* Data payload bytes written to the client so far, as on the wire (after compression). */
uint64_t ws_wire_out(const struct ws *w);
/* The window negotiated for permessage-deflate, 0 for none. */
int ws_deflate_bits(const struct ws *w);
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
/* Appends a frame header only (FIN set, RSV1 when compressed) for a payload of len bytes. */
void ws_frame_header(struct buf *out, bool text, bool compressed, uint64_t len);
/* Sec-WebSocket-Accept for a Sec-WebSocket-Key: out holds 29 bytes. */
void ws_accept_key(const char *key, size_t keylen, char *out);
/* RFC 3629 UTF-8 check. */
bool ws_valid_utf8(const uint8_t *s, size_t n);

#endif
