/* libFuzzer driver for the WebSocket frame input path (interface/websocket.c over wslay): the
 * input is fed to ws_feed whole, and again cut into pieces at points the input chooses, with
 * server sends, pings and closes mixed in. Checks, aborting on a mismatch:
 *  - every text message delivered is valid UTF-8 and no message exceeds the size limit;
 *  - the messages delivered do not depend on how TCP cut the bytes;
 *  - after ws_feed returns -1 (or the close handshake finished) nothing more is delivered;
 *  - everything the server writes parses as unmasked frames with no RSV bits but RSV1 on a
 *    compressed data frame.
 *
 * With permessage-deflate negotiated (chosen by byte 0), frames with RSV1 are inflated: each
 * message delivered is still within the limit and valid, and the server's compressed frames
 * inflate back to what was sent.
 *
 * Input layout: byte 0 picks the message limit and whether deflate was negotiated, byte 1 seeds
 * the cut points and actions; the rest is what the client sends. */
#include "interface/websocket.h"
#include "common/buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_KEEP 64

struct sink {
	struct buf out;
	struct buf msgs; /* each message as: 1 byte text flag, 8 bytes length, the bytes */
	size_t nmsgs;
	size_t max_message;
	bool stopped; /* ws_feed returned -1 or the handshake is finished */
};

static void on_message(void *owner, bool text, const uint8_t *d, size_t len)
{
	struct sink *s = owner;
	if (s->stopped)
		abort(); /* delivered after the connection was given up */
	if (len > s->max_message)
		abort();
	if (text && !ws_valid_utf8(d, len))
		abort();
	uint8_t h[9];
	h[0] = text;
	for (int i = 0; i < 8; i++)
		h[1 + i] = (uint8_t)((uint64_t)len >> (8 * i));
	buf_append(&s->msgs, h, 9);
	buf_append(&s->msgs, d, len);
	s->nmsgs++;
}

static int on_write(void *owner, const void *d, size_t len)
{
	struct sink *s = owner;
	buf_append(&s->out, d, len);
	return 0;
}

static const struct ws_callbacks callbacks = {.on_message = on_message, .write = on_write};

/* What the server sends in the cut run: long and repetitive enough to go compressed. */
static const char srv_msg[] = "server message, server message, server message, server message.";

/* The server's output must be well-formed frames (a partial last frame is not possible: the
 * write callback gets whole frames); a compressed one inflates back to srv_msg. */
static void check_output(const struct buf *out, bool deflate)
{
	const uint8_t *p = (const uint8_t *)out->data;
	size_t n = out->len, off = 0;
	while (off < n) {
		bool rsv1 = p[off] & 0x40;
		if (n - off < 2 || (p[off] & 0x30) || (p[off + 1] & 0x80))
			abort();
		if (rsv1 && (!deflate || (p[off] & 0x08)))
			abort();
		uint64_t len = p[off + 1] & 0x7f;
		size_t hl = 2;
		if (len == 126) {
			if (n - off < 4)
				abort();
			len = (uint64_t)p[off + 2] << 8 | p[off + 3];
			hl = 4;
		} else if (len == 127) {
			if (n - off < 10)
				abort();
			len = 0;
			for (int i = 0; i < 8; i++)
				len = len << 8 | p[off + 2 + i];
			hl = 10;
		}
		int op = p[off] & 0x0f;
		if (op >= 8 && (len > 125 || !(p[off] & 0x80)))
			abort(); /* a control frame we sent must be valid */
		if (len > n - off - hl)
			abort();
		if (rsv1) {
			struct buf back;
			buf_init(&back);
			if (deflate_inflate(&back, p + off + hl, (size_t)len, 1 << 20) != 0 ||
			    back.len != sizeof(srv_msg) - 1 || memcmp(back.data, srv_msg, back.len))
				abort();
			buf_fini(&back);
		}
		off += hl + (size_t)len;
	}
}

static uint32_t next(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

/* Feeds body to a fresh ws. cut: if non-zero, pieces of 1..(cut*4) bytes, and actions, chosen by
 * the generator seeded with seed. */
static void feed(const uint8_t *body, size_t n, size_t max, bool deflate, unsigned cut,
		 uint32_t seed, struct sink *s)
{
	memset(s, 0, sizeof(*s));
	buf_init(&s->out);
	buf_init(&s->msgs);
	s->max_message = max;
	struct ws_config cfg = {max, 16, 6};
	struct ws *w = ws_new(&cfg, deflate ? DEFLATE_MAX_BITS : 0, &callbacks, s);
	if (!w)
		abort();
	uint32_t x = seed | 1;
	size_t off = 0;
	while (off < n && !s->stopped) {
		size_t k = n - off;
		if (cut) {
			size_t piece = 1 + next(&x) % (cut * 4);
			if (piece < k)
				k = piece;
			switch (next(&x) % 16) {
			case 0:
				ws_send(w, next(&x) & 1, srv_msg, sizeof(srv_msg) - 1);
				break;
			case 1:
				ws_ping(w);
				break;
			default:
				break;
			}
		}
		if (ws_feed(w, body + off, k) < 0 || ws_finished(w))
			s->stopped = true;
		off += k;
	}
	if (s->stopped && ws_feed(w, (const uint8_t *)"\x81\x80\0\0\0\0", 6) != -1 &&
	    !ws_finished(w))
		abort(); /* once given up, it stays given up */
	if (cut && (seed & 0x100))
		ws_close(w, 1000 + (int)(seed % 4));
	check_output(&s->out, deflate);
	ws_free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	static const size_t limits[] = {125, 126, 1000, 65535, 65536, 1 << 20};
	size_t nlimits = sizeof(limits) / sizeof(limits[0]);
	size_t max = limits[data[0] % nlimits];
	bool deflate = (data[0] / nlimits) & 1;
	uint32_t seed = (uint32_t)data[1] * 2654435761u + (uint32_t)size;
	const uint8_t *body = data + 2;
	size_t n = size - 2;

	struct sink whole, cut;
	feed(body, n, max, deflate, 0, seed, &whole);
	feed(body, n, max, deflate, 1 + data[1] % 8, seed, &cut);
	/* The same messages, however the bytes were cut (the cut run may stop earlier only if
	 * it was given up for a reason the whole run would have seen too). */
	if (whole.nmsgs != cut.nmsgs || whole.msgs.len != cut.msgs.len ||
	    (whole.msgs.len && memcmp(whole.msgs.data, cut.msgs.data, whole.msgs.len) != 0))
		abort();
	buf_fini(&whole.out);
	buf_fini(&whole.msgs);
	buf_fini(&cut.out);
	buf_fini(&cut.msgs);
	return 0;
}
