/* permessage-deflate (RFC 7692) for the interface: the negotiation, and one message compressed or
 * inflated at a time. Protocol only: no I/O, no per-connection state. The only module that
 * includes zlib.
 *
 * laurel always answers with server_no_context_takeover and client_no_context_takeover, so every
 * message is compressed on its own, both ways:
 *  - a message for many connections is compressed once (per window size) and the same bytes go to
 *    every member that negotiated compression;
 *  - an idle connection keeps no compression state at all. The deflate and inflate streams are
 *    one per thread (made on first use, reset for each message), not one per connection. */
#ifndef LAUREL_INTERFACE_DEFLATE_H
#define LAUREL_INTERFACE_DEFLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* The longest Sec-WebSocket-Extensions value deflate_negotiate writes, with its NUL. */
#define DEFLATE_RESPONSE_MAX 128
/* Window sizes laurel compresses with: 2^9 .. 2^15 bytes. (zlib cannot make a raw deflate stream
 * with a 256-byte window, so an offer of server_max_window_bits=8 is declined.) */
#define DEFLATE_MIN_BITS 9
#define DEFLATE_MAX_BITS 15
#define DEFLATE_VARIANTS (DEFLATE_MAX_BITS - DEFLATE_MIN_BITS + 1)

/* Looks through the client's Sec-WebSocket-Extensions values (n of them, each a comma-separated
 * list of offers) for the first permessage-deflate offer laurel can honour: its parameters known,
 * none repeated, their values well-formed. Returns the window bits to compress with (9..15), and
 * in *named_bits whether the offer named server_max_window_bits; returns 0 when no offer is
 * acceptable, and the handshake goes on without compression (an offer is declined, never
 * failed). */
int deflate_negotiate(const char *const *values, size_t n, bool *named_bits);
/* The response's Sec-WebSocket-Extensions value for what deflate_negotiate returned, written to
 * resp (DEFLATE_RESPONSE_MAX bytes). server_max_window_bits is named only if the offer named it
 * (clients that did not offer it may refuse it). */
void deflate_response(int bits, bool named_bits, char *resp);

/* Appends data[0..len) compressed as one message (no context kept; the final empty stored block's
 * 00 00 FF FF removed, RFC 7692 §7.2.1) with a window of 2^bits bytes at zlib level (1..9).
 * Returns the bytes appended, or 0 when zlib failed (the message then goes uncompressed). */
size_t deflate_message(struct buf *out, const void *data, size_t len, int bits, int level);

#define DEFLATE_BAD_DATA 1 /* not a valid deflate stream (close 1007) */
#define DEFLATE_TOO_BIG 2  /* would inflate past max (close 1009) */
/* Appends the inflated data[0..len) (one message's payload as received, without the 00 00 FF FF
 * tail, which is added here) to out, stopping as soon as it would exceed max bytes: a small input
 * that inflates to gigabytes costs at most max + 1 bytes of output (in a buffer of at most twice
 * that). A message that does not end between two deflate blocks, or has data after a final
 * block, is bad data. Returns 0, DEFLATE_BAD_DATA or DEFLATE_TOO_BIG (out then holds what was
 * inflated so far). */
int deflate_inflate(struct buf *out, const uint8_t *data, size_t len, size_t max);

/* Frees this thread's streams (at exit, for leak checkers). */
void deflate_thread_cleanup(void);

#endif
