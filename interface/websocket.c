#include "interface/websocket.h"
#include "common/util.h"

#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

/* wslay's context is about 8.6 KiB, most of an idle connection's memory: it is made when the
 * first bytes arrive or a control frame must go out, and freed again once the connection is
 * quiet (when the keepalive ping has gone out) and wslay holds nothing: no partial frame or
 * message, nothing queued, no close under way. */
struct ws {
	wslay_event_context_ptr ctx; /* NULL while dormant */
	const struct ws_config *cfg;
	bool in_message;     /* a fragmented message has started and not ended */
	bool data_fed;	     /* the current ws_feed saw a data frame */
	bool failed;	     /* the reader hit a fatal error */
	bool protocol_error; /* a close frame with a bad payload was received */
	bool paused;	     /* the owner takes no more messages in this ws_feed */
	uint8_t deflate_bits; /* permessage-deflate's window, 0 when not negotiated */
	int16_t forced_code; /* the close code we sent ourselves, bypassing wslay */
	const struct ws_callbacks *cb;
	void *owner;
	const uint8_t *in; /* the bytes ws_feed is reading */
	size_t inlen;
	/* Frame boundaries, so a control frame reaches wslay whole (wslay checks a close
	 * frame's reason per read, and a reason split across reads fails its UTF-8 check). */
	struct buf pending;  /* bytes held back: the start of a control frame, or frames not read
			      * yet because the owner paused (ws_pause) */
	uint64_t skip;	     /* payload bytes of the current data frame still to pass */
	uint64_t wire_out;   /* data payload bytes written (ws_wire_out) */
};

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
		       void *user)
{
	struct ws *w = user;
	if (w->inlen == 0) {
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	size_t n = len < w->inlen ? len : w->inlen;
	memcpy(buf, w->in, n);
	w->in += n;
	w->inlen -= n;
	return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
		       void *user)
{
	struct ws *w = user;
	if (w->cb->write(w->owner, data, len) < 0) {
		wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
		return -1;
	}
	return (ssize_t)len;
}

static void on_frame_start(wslay_event_context_ptr ctx,
			   const struct wslay_event_on_frame_recv_start_arg *arg, void *user)
{
	struct ws *w = user;
	if (w->cb->on_activity)
		w->cb->on_activity(w->owner);
}

static bool valid_close_code(int code)
{
	return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
	       (code >= 3000 && code <= 4999);
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
		   void *user)
{
	struct ws *w = user;
	if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME) {
		bool text = arg->opcode == WSLAY_TEXT_FRAME;
		const uint8_t *msg = arg->msg;
		size_t len = arg->msg_length;
		struct buf inflated;
		buf_init(&inflated);
		int code = 0;
		if (arg->rsv & ~WSLAY_RSV1_BIT) {
			code = WSLAY_CODE_PROTOCOL_ERROR;
		} else if (arg->rsv & WSLAY_RSV1_BIT) {
			/* wslay lets RSV1 through only where permessage-deflate was negotiated, and
			 * only on a message's first frame. */
			int rc = deflate_inflate(&inflated, msg, len, w->cfg->max_message);
			if (rc == DEFLATE_TOO_BIG)
				code = WSLAY_CODE_MESSAGE_TOO_BIG;
			else if (rc)
				code = WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA;
			msg = (const uint8_t *)inflated.data;
			len = inflated.len;
		} else if (len > w->cfg->max_message) {
			code = WSLAY_CODE_MESSAGE_TOO_BIG; /* see wire_limit */
		}
		if (!code && text && !ws_valid_utf8(msg, len))
			code = WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA;
		if (code) {
			wslay_event_queue_close(ctx, (uint16_t)code, NULL, 0);
			wslay_event_shutdown_read(ctx);
		} else {
			if ((arg->rsv & WSLAY_RSV1_BIT) && w->cb->on_compressed)
				w->cb->on_compressed(w->owner, arg->msg_length);
			w->cb->on_message(w->owner, text, msg, len);
		}
		buf_fini(&inflated);
	} else if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
		/* wslay answers a close with the same code; a code that may not be sent on the
		 * wire, or a reason that is not UTF-8, is a protocol error instead. */
		int code = arg->status_code;
		bool bad = arg->msg_length == 1 || (arg->msg_length >= 2 && !valid_close_code(code)) ||
			   (arg->msg_length > 2 && !ws_valid_utf8(arg->msg + 2, arg->msg_length - 2));
		if (bad)
			w->protocol_error = true;
	}
}

static const struct wslay_event_callbacks callbacks = {
	.recv_callback = recv_cb,
	.send_callback = send_cb,
	.on_frame_recv_start_callback = on_frame_start,
	.on_msg_recv_callback = on_msg,
};

struct ws *ws_new(const struct ws_config *cfg, int deflate_bits, const struct ws_callbacks *cb,
		  void *owner)
{
	struct ws *w = xcalloc(1, sizeof(*w));
	w->cb = cb;
	w->owner = owner;
	w->cfg = cfg;
	w->deflate_bits = deflate_bits >= DEFLATE_MIN_BITS && deflate_bits <= DEFLATE_MAX_BITS
				  ? (uint8_t)deflate_bits
				  : 0;
	buf_init(&w->pending);
	return w;
}

/* The largest message wslay takes. With deflate, a client compresses every message, and data
 * that does not compress comes out a little longer (about 5 bytes per 16 KiB block): wslay
 * allows for that, and on_msg applies the limit itself, to the inflated size. */
static size_t wire_limit(const struct ws *w)
{
	size_t max = w->cfg->max_message;
	return w->deflate_bits ? max + (max >> 8) + 64 : max;
}

/* Makes wslay's context if the connection is dormant. Returns false when out of memory. */
static bool wake(struct ws *w)
{
	if (w->ctx)
		return true;
	if (wslay_event_context_server_init(&w->ctx, &callbacks, w) != 0) {
		w->ctx = NULL;
		w->failed = true;
		return false;
	}
	wslay_event_config_set_max_recv_msg_length(w->ctx, wire_limit(w));
	if (w->deflate_bits)
		wslay_event_config_set_allowed_rsv_bits(w->ctx, WSLAY_RSV1_BIT);
	return true;
}

/* Frees wslay's context when it holds nothing that matters. */
static void doze(struct ws *w)
{
	if (w->ctx && !w->failed && !w->forced_code && !w->skip && !w->pending.len &&
	    !w->in_message && !wslay_event_get_close_sent(w->ctx) &&
	    !wslay_event_get_close_received(w->ctx) && wslay_event_get_read_enabled(w->ctx) &&
	    !wslay_event_want_write(w->ctx) && wslay_event_get_queued_msg_count(w->ctx) == 0) {
		wslay_event_context_free(w->ctx);
		w->ctx = NULL;
	}
}

void ws_free(struct ws *w)
{
	if (!w)
		return;
	if (w->ctx)
		wslay_event_context_free(w->ctx);
	buf_fini(&w->pending);
	free(w);
}

static void flush(struct ws *w)
{
	if (w->ctx && !w->failed && wslay_event_want_write(w->ctx) &&
	    wslay_event_send(w->ctx) != 0)
		w->failed = true;
}

/* Fails the connection with 1002, written here: for frame-level errors wslay queues a close
 * without a status code, which is not what RFC 6455 asks for. */
static void fail_protocol(struct ws *w)
{
	if (!wslay_event_get_close_sent(w->ctx) && !w->forced_code) {
		static const uint8_t frame[4] = {0x88, 2, 0x03, 0xEA};
		w->cb->write(w->owner, frame, sizeof(frame));
		w->forced_code = WSLAY_CODE_PROTOCOL_ERROR;
	}
	w->failed = true;
	wslay_event_shutdown_read(w->ctx);
}

static int feed_wslay(struct ws *w, const uint8_t *data, size_t len)
{
	w->in = data;
	w->inlen = len;
	int rc = wslay_event_get_read_enabled(w->ctx) ? wslay_event_recv(w->ctx) : 0;
	w->in = NULL;
	w->inlen = 0;
	if (rc != 0 || w->protocol_error) {
		fail_protocol(w);
		return -1;
	}
	return 0;
}

/* The length of the frame header at p (n bytes available), or 0 if incomplete; sets *payload. */
static size_t frame_header(const uint8_t *p, size_t n, uint64_t *payload)
{
	if (n < 2)
		return 0;
	size_t h = 2 + ((p[1] & 0x80) ? 4 : 0);
	uint64_t len = p[1] & 0x7f;
	size_t ext = len == 126 ? 2 : len == 127 ? 8 : 0;
	if (n < h + ext)
		return 0;
	if (ext) {
		len = 0;
		for (size_t i = 0; i < ext; i++)
			len = (len << 8) | p[2 + i];
	}
	*payload = len;
	return h + ext;
}

/* Feeds whole frames from p[0..avail) and returns how many bytes were used; stops at an
 * incomplete header or control frame, and after the start of a data frame (w->skip is then the
 * rest of its payload, passed through as it arrives). */
static size_t feed_frames(struct ws *w, const uint8_t *p, size_t avail)
{
	size_t used = 0;
	while (used < avail && !w->failed && !w->paused) {
		uint64_t payload = 0;
		size_t hl = frame_header(p + used, avail - used, &payload);
		if (!hl)
			break;
		if (p[used] & 0x08) {
			/* A control frame goes to wslay whole. */
			if (payload > 125) {
				fail_protocol(w);
				break;
			}
			if (avail - used < hl + payload)
				break;
			if (feed_wslay(w, p + used, hl + (size_t)payload) < 0)
				break;
			used += hl + (size_t)payload;
			continue;
		}
		/* A text or binary frame starts a message, which its FIN bit ends (or not); a
		 * continuation with FIN ends it. wslay checks the sequence. */
		if ((p[used] & 0x0f) != 0 || (p[used] & 0x80))
			w->in_message = !(p[used] & 0x80);
		w->data_fed = true;
		size_t have = avail - used - hl;
		size_t n = have < payload ? have : (size_t)payload;
		if (feed_wslay(w, p + used, hl + n) < 0)
			break;
		used += hl + n;
		if (n < payload) {
			w->skip = payload - n;
			break;
		}
	}
	return used;
}

int ws_feed(struct ws *w, const uint8_t *data, size_t len)
{
	bool was_dormant = !w->ctx;
	if ((len || w->pending.len) && !wake(w))
		return -1;
	w->data_fed = false;
	w->paused = false;
	bool again = w->pending.len > 0; /* frames a pause left unread go first */
	while ((len > 0 || again) && !w->failed) {
		again = false;
		if (w->skip) {
			/* Inside a data frame: pass it through as it comes. */
			size_t n = len < w->skip ? len : (size_t)w->skip;
			if (feed_wslay(w, data, n) < 0)
				break;
			w->skip -= n;
			data += n;
			len -= n;
			continue;
		}
		if (w->pending.len) {
			/* Complete the header or control frame held back last time; what is still
			 * incomplete stays held. */
			if (len)
				buf_append(&w->pending, data, len);
			len = 0;
			size_t used = feed_frames(w, (const uint8_t *)w->pending.data, w->pending.len);
			buf_consume(&w->pending, used);
			continue;
		}
		size_t used = feed_frames(w, data, len);
		data += used;
		len -= used;
		if (!w->skip && len && !w->failed) {
			/* an incomplete header or control frame, or what a pause left */
			buf_append(&w->pending, data, len);
			len = 0;
		}
	}
	flush(w);
	/* Only control frames (the pong to our keepalive ping) on a dormant connection: back to
	 * sleep. A connection that sends data stays awake until it is quiet for a ping interval. */
	if (was_dormant && !w->data_fed)
		doze(w);
	return w->failed ? -1 : 0;
}

void ws_pause(struct ws *w)
{
	w->paused = true;
}

bool ws_has_pending(const struct ws *w)
{
	return w->pending.len > 0;
}

void ws_message_init(struct ws_message *m, const struct ws_config *cfg, bool text,
		     const void *data, size_t len)
{
	memset(m, 0, sizeof(*m));
	m->cfg = cfg;
	m->text = text;
	m->data = data;
	m->len = len;
	buf_init(&m->plain);
	for (int i = 0; i < DEFLATE_VARIANTS; i++)
		buf_init(&m->deflated[i]);
}

void ws_message_fini(struct ws_message *m)
{
	buf_fini(&m->plain);
	for (int i = 0; i < DEFLATE_VARIANTS; i++)
		buf_fini(&m->deflated[i]);
}

/* The frame m goes out as on a connection with window bits (0: no compression), made on first
 * use; *payload is its payload length. */
static const struct buf *message_frame(struct ws_message *m, int bits, size_t *payload)
{
	if (bits && m->len >= m->cfg->compress_threshold) {
		int i = bits - DEFLATE_MIN_BITS;
		struct buf *d = &m->deflated[i];
		if (!(m->tried & (1u << i))) {
			m->tried |= (uint16_t)(1u << i);
			m->compressions++;
			/* The header is written after the payload is known: room for the longest
			 * header first, then the header is moved into place. */
			buf_reserve(d, 10);
			d->len = 10;
			size_t n = deflate_message(d, m->data, m->len, bits, m->cfg->compress_level);
			if (n == 0 || n >= m->len) {
				buf_fini(d); /* zlib failed, or it did not pay: plain */
			} else {
				struct buf h;
				buf_init(&h);
				ws_frame_header(&h, m->text, true, n);
				memcpy(d->data + 10 - h.len, h.data, h.len);
				memmove(d->data, d->data + 10 - h.len, h.len + n);
				d->len = h.len + n;
				d->data[d->len] = '\0';
				buf_fini(&h);
			}
		}
		if (d->len) {
			m->sent_compressed++;
			unsigned char l7 = (unsigned char)d->data[1] & 0x7f;
			*payload = d->len - (l7 == 127 ? 10 : l7 == 126 ? 4 : 2);
			return d;
		}
	}
	if (!m->plain.len)
		ws_frame(&m->plain, m->text, m->data, m->len);
	*payload = m->len;
	return &m->plain;
}

int ws_send_message(struct ws *w, struct ws_message *m)
{
	flush(w); /* control frames wslay queued go first */
	if (w->failed || ws_close_sent(w))
		return -1;
	size_t payload;
	const struct buf *f = message_frame(m, w->deflate_bits, &payload);
	m->wire_payload += payload;
	w->wire_out += payload;
	return w->cb->write(w->owner, f->data, f->len);
}

int ws_send(struct ws *w, bool text, const void *data, size_t len)
{
	struct ws_message m;
	ws_message_init(&m, w->cfg, text, data, len);
	int rc = ws_send_message(w, &m);
	ws_message_fini(&m);
	return rc;
}

uint64_t ws_wire_out(const struct ws *w)
{
	return w->wire_out;
}

int ws_deflate_bits(const struct ws *w)
{
	return w->deflate_bits;
}

void ws_close(struct ws *w, int code)
{
	if (!wake(w))
		return;
	if (!wslay_event_get_close_sent(w->ctx))
		wslay_event_queue_close(w->ctx, (uint16_t)code, NULL, 0);
	flush(w);
}

void ws_ping(struct ws *w)
{
	struct wslay_event_msg m = {WSLAY_PING, (const uint8_t *)"laurel", 6};
	if (!wake(w))
		return;
	if (!wslay_event_get_close_sent(w->ctx))
		wslay_event_queue_msg(w->ctx, &m);
	flush(w);
	/* The connection was quiet for the ping interval: a good moment to give the memory back. */
	doze(w);
}

bool ws_close_sent(const struct ws *w)
{
	return w->forced_code || (w->ctx && wslay_event_get_close_sent(w->ctx));
}

bool ws_close_received(const struct ws *w)
{
	return w->ctx && wslay_event_get_close_received(w->ctx);
}

int ws_close_code_received(const struct ws *w)
{
	return w->ctx ? wslay_event_get_status_code_received(w->ctx) : WSLAY_CODE_ABNORMAL_CLOSURE;
}

int ws_close_code_sent(const struct ws *w)
{
	if (w->forced_code)
		return w->forced_code;
	return w->ctx ? wslay_event_get_status_code_sent(w->ctx) : WSLAY_CODE_ABNORMAL_CLOSURE;
}

bool ws_finished(const struct ws *w)
{
	return w->failed || (w->ctx && wslay_event_get_close_sent(w->ctx) &&
			     (wslay_event_get_close_received(w->ctx) ||
			      !wslay_event_get_read_enabled(w->ctx)));
}

bool ws_dormant(const struct ws *w)
{
	return !w->ctx;
}

void ws_frame_header(struct buf *out, bool text, bool compressed, uint64_t len)
{
	unsigned char h[10];
	size_t n = 0;
	h[n++] = (unsigned char)(0x80 | (compressed ? 0x40 : 0) | (text ? WS_TEXT : WS_BINARY));
	if (len < 126) {
		h[n++] = (unsigned char)len;
	} else if (len < 65536) {
		h[n++] = 126;
		h[n++] = (unsigned char)(len >> 8);
		h[n++] = (unsigned char)len;
	} else {
		h[n++] = 127;
		for (int i = 7; i >= 0; i--)
			h[n++] = (unsigned char)(len >> (8 * i));
	}
	buf_append(out, h, n);
}

void ws_frame(struct buf *out, bool text, const void *data, size_t len)
{
	buf_reserve(out, 10 + len);
	ws_frame_header(out, text, false, len);
	buf_append(out, data, len);
}

void ws_accept_key(const char *key, size_t keylen, char *out)
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	char joined[128];
	unsigned char digest[20];
	if (keylen > sizeof(joined) - sizeof(guid))
		keylen = sizeof(joined) - sizeof(guid);
	memcpy(joined, key, keylen);
	memcpy(joined + keylen, guid, sizeof(guid) - 1);
	util_sha1(joined, keylen + sizeof(guid) - 1, digest);
	util_base64_encode(digest, 20, out);
}

bool ws_valid_utf8(const uint8_t *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		uint8_t ch = s[i];
		size_t len;
		uint32_t cp;
		if (ch < 0x80) {
			i++;
			continue;
		} else if ((ch & 0xE0) == 0xC0) {
			len = 2;
			cp = ch & 0x1F;
		} else if ((ch & 0xF0) == 0xE0) {
			len = 3;
			cp = ch & 0x0F;
		} else if ((ch & 0xF8) == 0xF0) {
			len = 4;
			cp = ch & 0x07;
		} else {
			return false;
		}
		if (i + len > n)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
		    cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += len;
	}
	return true;
}
