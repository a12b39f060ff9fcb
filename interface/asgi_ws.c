/* The WebSocket glue (see asgi_ws.h): a connection's WebSocket between the client, through the
 * protocol code of websocket.h, and the channel layer's websocket.* channels. */
#include "interface/asgi_ws.h"
#include "interface/deflate.h"
#include "interface/envelope.h"
#include "interface/recovery.h"
#include "interface/asgi_http.h"
#include "interface/conn.h"
#include "interface/metrics.h"
#include "interface/outbox.h"
#include "interface/reply.h"
#include "interface/request.h"
#include "interface/websocket.h"
#include "common/log.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool in_list(const struct option_list *l, const char *s, size_t n)
{
	for (size_t i = 0; i < l->n; i++)
		if (strlen(l->v[i]) == n && strncmp(l->v[i], s, n) == 0)
			return true;
	return false;
}

/* Checks a WebSocket handshake (RFC 6455 §4.2.1) and picks the subprotocol. Returns 0 or the
 * status to refuse it with. */
int asgi_ws_check(struct conn *c, const struct http1_request *h)
{
	const struct server_config *cfg = c->srv->cfg;
	const struct http1_header *ver = asgi_http_header(h, "sec-websocket-version");
	const struct http1_header *key = asgi_http_header(h, "sec-websocket-key");
	const struct http1_header *origin = asgi_http_header(h, "origin");
	const struct http1_header *proto = asgi_http_header(h, "sec-websocket-protocol");
	if (strcmp(h->method, "GET") != 0 || !key || key->valuelen != 24)
		return 400;
	if (!ver || strcmp(ver->value, "13") != 0)
		return 426;
	if (cfg->allowed_origins.n &&
	    (!origin || !in_list(&cfg->allowed_origins, origin->value, origin->valuelen))) {
		log_info("conn %llu: WebSocket from origin %s refused", (unsigned long long)c->id,
			 origin ? origin->value : "(none)");
		return 403;
	}
	ws_accept_key(key->value, key->valuelen, c->ws_accept);
	c->ws_deflate = 0;
	c->ws_deflate_named = false;
	if (cfg->ws_compression) {
		const char *offers[8];
		size_t n = 0;
		for (size_t i = 0; i < h->nheaders && n < 8; i++)
			if (strcmp(h->headers[i].name, "sec-websocket-extensions") == 0)
				offers[n++] = h->headers[i].value;
		bool named;
		c->ws_deflate = (unsigned)deflate_negotiate(offers, n, &named) & 0xf;
		c->ws_deflate_named = named;
	}
	free(c->ws_protocol);
	c->ws_protocol = NULL;
	for (const char *p = proto ? proto->value : ""; *p;) {
		p += strspn(p, " ,\t");
		size_t n = strcspn(p, " ,\t");
		if (n && in_list(&cfg->ws_protocols, p, n)) {
			c->ws_protocol = xstrndup(p, n);
			break;
		}
		p += n;
	}
	return 0;
}

#define WS_CLOSE_WAIT_MS 5000 /* after our close frame, how long the client has to answer */

static int64_t ms_now(void)
{
	return util_now_ms();
}

/* The code websocket.disconnect reports: what the client sent, else what we sent, else 1006. */
int asgi_ws_code(const struct conn *c)
{
	if (c->closed_for_output)
		return 1013;
	if (!c->ws)
		return 1006;
	if (ws_close_received(c->ws))
		return ws_close_code_received(c->ws);
	if (ws_close_sent(c->ws))
		return ws_close_code_sent(c->ws);
	return 1006;
}

void asgi_ws_disconnect(struct conn *c, int code)
{
	struct request *r = c->req;
	if (c->disconnected || !r || !r->sent)
		return;
	c->disconnected = true;
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_text(m, "reply_channel", r->reply_channel);
	laurel_msg_set_int(m, "code", code);
	laurel_msg_set_textn(m, "path", r->path ? r->path : "", r->pathlen);
	laurel_msg_set_int(m, "order", c->order + 1);
	/* Never dropped while the process lives: a lost disconnect leaves a ghost in every group
	 * the connection joined. */
	outbox_send(c->srv->outbox, "websocket.disconnect", m);
	/* The size field: the message bytes sent to the client as on the wire (compressed). */
	conn_access_log(c, "WSDISCONNECT", r->path, 0, c->ws ? ws_wire_out(c->ws) : 0);
}

/* Inbound flow, in order: the frames of one read are parsed into websocket.receive messages, at
 * most WS_RECEIVE_BACKLOG of them, which the layer sends in one batch; the frames after them stay
 * unparsed until the layer has taken every one (so a later batch never overtakes a refused
 * message). Meanwhile reading from the client goes on until WS_UNPARSED_MAX bytes wait. */
#define WS_RECEIVE_BACKLOG 16
#define WS_UNPARSED_MAX 65536
/* A websocket.receive refused because the channel is full is sent again every WS_RETRY_MS, for
 * WS_FULL_WAIT_MS (Channels 1 retried a full channel for 2 s too); then the connection closes
 * with 1013. Refused messages wait in one list for the whole server, in the order they were
 * refused (a batch's callbacks come in order), so a connection's messages go again in order. */
#define WS_FULL_WAIT_MS 2000
#define WS_RETRY_MS 25
/* One refused because the layer is unreachable (its shard down, or failing over to a new
 * master) is sent again the same way for up to WS_DOWN_WAIT_MS, then the connection closes with
 * 1011: a Sentinel failover (a few seconds) holds the client's frames instead of closing it. A
 * message whose answer was lost with the connection may then arrive twice (same order field). */
#define WS_DOWN_WAIT_MS 10000

/* A websocket.receive until the layer took it: the message is kept to be sent again. */
struct ws_receive {
	struct server *srv;
	uint64_t id; /* the connection's request */
	struct laurel_msg *msg;
	int64_t first_ms; /* first sent (the unreachable layer's window counts from here) */
	int64_t full_ms;  /* first found full, or 0 (the full channel's window counts from here) */
	struct ws_receive *next; /* in srv->ws_retrying while waiting */
};

static void receive_free(struct ws_receive *rx)
{
	laurel_msg_free(rx->msg);
	free(rx);
}

static void connecting_unlink(struct ws_connecting *w);
static void connecting_free(struct ws_connecting *w);

void asgi_ws_free_retries(struct server *s)
{
	while (s->ws_retrying) {
		struct ws_receive *rx = s->ws_retrying;
		s->ws_retrying = rx->next;
		receive_free(rx);
	}
	s->ws_retrying_tail = NULL;
	while (s->ws_connecting) {
		struct ws_connecting *w = s->ws_connecting;
		connecting_unlink(w);
		connecting_free(w);
	}
	if (s->ws_retry_timer)
		event_free(s->ws_retry_timer);
	s->ws_retry_timer = NULL;
}

static void on_receive_sent(int status, void *arg);

static void receive_retry(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	struct ws_receive *rx = s->ws_retrying;
	s->ws_retrying = s->ws_retrying_tail = NULL;
	while (rx) {
		struct ws_receive *next = rx->next;
		rx->next = NULL;
		struct conn *c = reply_live(s, rx->id);
		int rc = c && c->ws ? layer_async_send(s->layer, "websocket.receive", rx->msg,
						       on_receive_sent, rx)
				    : -ECANCELED;
		if (rc < 0)
			on_receive_sent(rc, rx); /* frees it */
		rx = next;
	}
}

static void receive_later(struct server *s, struct ws_receive *rx)
{
	rx->next = NULL;
	if (s->ws_retrying_tail)
		s->ws_retrying_tail->next = rx;
	else
		s->ws_retrying = rx;
	s->ws_retrying_tail = rx;
	if (!s->ws_retry_timer)
		s->ws_retry_timer = evtimer_new(s->base, receive_retry, s);
	if (!evtimer_pending(s->ws_retry_timer, NULL)) {
		struct timeval tv = {0, WS_RETRY_MS * 1000};
		evtimer_add(s->ws_retry_timer, &tv);
	}
}

/* The layer answered a websocket.receive (or it could not be sent at all). */
static void on_receive_sent(int status, void *arg)
{
	struct ws_receive *rx = arg;
	struct conn *c = reply_live(rx->srv, rx->id);
	if (!c || !c->ws) {
		receive_free(rx);
		return;
	}
	int64_t now = util_now_ms();
	if (status == LAUREL_FULL && !rx->full_ms)
		rx->full_ms = now;
	if (!ws_close_sent(c->ws) &&
	    ((status == LAUREL_FULL && now - rx->full_ms < WS_FULL_WAIT_MS) ||
	     (status == -ENOTCONN && now - rx->first_ms < WS_DOWN_WAIT_MS))) {
		/* Still in flight: the frames behind it stay unread meanwhile. */
		receive_later(c->srv, rx);
		return;
	}
	receive_free(rx);
	/* Inbound backpressure: a client that sends faster than the layer takes is not read. */
	if (--c->receives_in_flight == 0 && c->mode == MODE_WS_OPEN && !c->closing) {
		conn_pause_reading(c, false);
		/* Frames left unparsed by the pause wait in the ws reader or the input buffer. */
		if (ws_has_pending(c->ws) || evbuffer_get_length(bufferevent_get_input(c->bev)))
			bufferevent_trigger(c->bev, EV_READ,
					    BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
	}
	if (status == 0 || status == -ECANCELED)
		return;
	log_limited(LOG_WARN, "conn %llu: websocket.receive %s; closing %s",
		    (unsigned long long)c->id,
		    status == LAUREL_FULL	? "stayed full for 2 s"
		    : status == -EMSGSIZE ? "is too large"
		    : status == -ENOTCONN ? "found the layer unreachable for 10 s"
					    : "could not be sent",
		    c->req->reply_channel);
	ws_close(c->ws, status == LAUREL_FULL ? 1013 : status == -EMSGSIZE ? 1009 : 1011);
	c->close_sent_ms = ms_now();
	asgi_ws_arm(c);
}

static void on_message(void *owner, bool text, const uint8_t *data, size_t len)
{
	struct conn *c = owner;
	struct request *r = c->req;
	size_t wire = c->srv->ws_inflated_wire; /* 0: it came plain */
	c->srv->ws_inflated_wire = 0;
	if (ws_close_sent(c->ws))
		return; /* RFC 6455 §5.5.1: after our close, data from the client is discarded */
	c->srv->counters.ws_in++;
	c->srv->counters.ws_in_bytes += len;
	c->srv->counters.ws_wire_in_bytes += wire ? wire : len;
	if (wire)
		c->srv->counters.ws_compressed_in++;
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_text(m, "reply_channel", r->reply_channel);
	laurel_msg_set_textn(m, "path", r->path ? r->path : "", r->pathlen);
	laurel_msg_set_int(m, "order", ++c->order);
	if (text)
		laurel_msg_set_textn(m, "text", (const char *)data, len);
	else
		laurel_msg_set_bytes(m, "bytes", data, len);
	struct ws_receive *rx = xcalloc(1, sizeof(*rx));
	rx->srv = c->srv;
	rx->id = r->id;
	rx->msg = m;
	rx->first_ms = util_now_ms();
	int rc = layer_async_send(c->srv->layer, "websocket.receive", m, on_receive_sent, rx);
	if (rc == -ENOTCONN) {
		receive_later(c->srv, rx); /* the shard is down: in flight until it is back */
		rc = 0;
	}
	if (rc < 0) {
		receive_free(rx);
		log_limited(LOG_WARN, "conn %llu: websocket.receive not sent: %s",
			    (unsigned long long)c->id, laurel_layer_error(NULL));
		ws_close(c->ws, rc == -EMSGSIZE ? 1009 : 1011);
		c->close_sent_ms = ms_now();
		asgi_ws_arm(c);
		return;
	}
	if (++c->receives_in_flight >= WS_RECEIVE_BACKLOG)
		ws_pause(c->ws); /* the frames after this one wait (see WS_RECEIVE_BACKLOG) */
}

/* Comes just before on_message for a message that came compressed. */
static void on_compressed(void *owner, size_t wire_len)
{
	struct conn *c = owner;
	c->srv->ws_inflated_wire = wire_len ? wire_len : 1;
}

static void on_activity(void *owner)
{
	struct conn *c = owner;
	c->last_recv_ms = ms_now();
	c->ping_sent_ms = 0;
}

/* WebSocket output: written to the socket at once when nothing is waiting before it (the usual
 * case, and the one that matters for a broadcast to thousands: no buffer allocation and no
 * write-readiness round through epoll per connection); what the socket does not take waits in
 * the bufferevent, which writes it when the socket is writable. Errors are left to the
 * bufferevent to find and report. */
static int output(void *owner, const void *data, size_t len)
{
	struct iovec iov = {(void *)data, len};
	return conn_output(owner, &iov, 1);
}

void asgi_ws_send(struct conn *c, struct ws_message *m)
{
	if (ws_send_message(c->ws, m) == 0) {
		c->srv->counters.ws_out++;
		c->srv->counters.ws_out_bytes += m->len;
	}
}

void asgi_ws_message_fini(struct server *s, struct ws_message *m)
{
	s->counters.ws_compressions += m->compressions;
	s->counters.ws_compressed_out += m->sent_compressed;
	s->counters.ws_wire_out_bytes += m->wire_payload;
	ws_message_fini(m);
}

static const struct ws_callbacks callbacks = {
	.on_message = on_message,
	.on_compressed = on_compressed,
	.on_activity = on_activity,
	.write = output,
};

/* Before writing to a WebSocket: a client that has not read what it was already sent, beyond
 * --ws-max-output, is closed instead of being buffered for. Returns false if it was closed. */
bool asgi_ws_check_output(struct conn *c)
{
	size_t n = evbuffer_get_length(bufferevent_get_output(c->bev));
	if (c->closing)
		return false;
	if (n <= c->srv->cfg->ws_max_output)
		return true;
	log_limited(
		LOG_WARN,
		"conn %llu: WebSocket client reads too slowly (%zu bytes waiting); closing (1013)",
		(unsigned long long)c->id, n);
	c->srv->counters.slow_readers++;
	asgi_ws_close_now(c, 1013);
	return false;
}

void asgi_ws_close_now(struct conn *c, int code)
{
	if (!ws_close_sent(c->ws))
		ws_close(c->ws, code);
	c->close_sent_ms = ms_now();
	c->closing = true;
	asgi_ws_arm(c);
}

/* The next time the keep-alive timer must look at the connection. */
void asgi_ws_arm(struct conn *c)
{
	const struct server_config *cfg = c->srv->cfg;
	int64_t next;
	if (c->close_sent_ms)
		next = c->close_sent_ms + WS_CLOSE_WAIT_MS;
	else if (c->ping_sent_ms)
		next = c->ping_sent_ms + (int64_t)cfg->ping_timeout * 1000;
	else
		next = c->last_recv_ms + (int64_t)cfg->ping_interval * 1000;
	if (cfg->websocket_timeout >= 0 && !c->close_sent_ms) {
		int64_t end = c->opened_ms + (int64_t)cfg->websocket_timeout * 1000;
		if (end < next)
			next = end;
	}
	int64_t delay = next - ms_now();
	if (delay < 0)
		delay = 0;
	struct timeval tv = {delay / 1000, (delay % 1000) * 1000};
	evtimer_add(c->timer, &tv);
}

void asgi_ws_tick(struct conn *c)
{
	const struct server_config *cfg = c->srv->cfg;
	int64_t now = ms_now();
	if (c->close_sent_ms) {
		if (now - c->close_sent_ms >= WS_CLOSE_WAIT_MS) {
			log_debug("conn %llu: no close answer; dropping",
				  (unsigned long long)c->id);
			conn_close(c);
			return;
		}
	} else if (cfg->websocket_timeout >= 0 &&
		   now - c->opened_ms >= (int64_t)cfg->websocket_timeout * 1000) {
		log_info("conn %llu: WebSocket reached --websocket_timeout; closing",
			 (unsigned long long)c->id);
		ws_close(c->ws, 1000);
		c->close_sent_ms = now;
	} else if (c->ping_sent_ms) {
		if (now - c->ping_sent_ms >= (int64_t)cfg->ping_timeout * 1000) {
			log_info("conn %llu: no pong within %d s; closing",
				 (unsigned long long)c->id, cfg->ping_timeout);
			conn_close(c);
			return;
		}
	} else if (now - c->last_recv_ms >= (int64_t)cfg->ping_interval * 1000) {
		ws_ping(c->ws);
		c->ping_sent_ms = now;
	}
	asgi_ws_arm(c);
}

static void accept_now(struct conn *c)
{
	struct request *r = c->req;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	char ext[DEFLATE_RESPONSE_MAX];
	if (c->ws_deflate)
		deflate_response(c->ws_deflate, c->ws_deflate_named, ext);
	evbuffer_add_printf(
		out,
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
		"Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s%s%s%s%sServer: laurel\r\n\r\n",
		c->ws_accept, c->ws_protocol ? "Sec-WebSocket-Protocol: " : "",
		c->ws_protocol ? c->ws_protocol : "", c->ws_protocol ? "\r\n" : "",
		c->ws_deflate ? "Sec-WebSocket-Extensions: " : "",
		c->ws_deflate ? ext : "", c->ws_deflate ? "\r\n" : "");
	c->mode = MODE_WS_OPEN;
	c->srv->counters.ws_open++;
	c->srv->counters.handshakes_accepted++;
	if (c->ws_deflate)
		c->srv->counters.ws_deflate_agreed++;
	c->ws = ws_new(&c->srv->ws_cfg, c->ws_deflate, &callbacks, c);
	/* The HTTP parser has no more work on this connection: free its memory (an idle WebSocket
	 * should cost as little as possible). */
	http1_free(c->parser);
	c->parser = NULL;
	c->opened_ms = c->last_recv_ms = ms_now();
	r->started = true;
	r->status = 101;
	conn_access_log(c, "WSCONNECT", r->path, 0, 0);
	evtimer_del(c->timer);
	asgi_ws_arm(c);
	conn_pause_reading(c, false);
	/* Frames the client sent early wait in the input buffer: read them from the loop. */
	if (evbuffer_get_length(bufferevent_get_input(c->bev)))
		bufferevent_trigger(c->bev, EV_READ,
				    BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

void asgi_ws_reject(struct conn *c, const char *why)
{
	conn_access_log(c, "WSREJECT", c->req->path, 0, 0);
	log_info("conn %llu: WebSocket %s rejected: %s", (unsigned long long)c->id, c->req->path,
		 why);
	conn_respond_error(c, 403, "WebSocket connection rejected.");
}

/* websocket.connect goes again, with backoff, when its channel was full (20 ms doubling to
 * 200 ms) or its shard down or refusing (100 ms doubling to 2 s), until the layer takes it or
 * --websocket_connect_timeout passes (503 then, see asgi_ws_expired): the client waits for the
 * layer as it waits for the application. Until the layer has taken it the request keeps the
 * message (r->msg). A client that goes away while its connect was refused as full causes no
 * websocket.disconnect; one whose connect may have gone in (a connection that broke before the
 * answer came) does, so the application never keeps a ghost. Such a connect is sent again: the
 * application may see it twice. */
#define CONNECT_FULL_FIRST_MS 20
#define CONNECT_FULL_MAX_MS 200
#define CONNECT_DOWN_FIRST_MS 100
#define CONNECT_DOWN_MAX_MS 2000

struct ws_connecting {
	struct server *srv;
	uint64_t id; /* the connection's request */
	int delay_ms;
	int last; /* the last refusal: LAUREL_FULL or -ENOTCONN */
	struct event *ev;
	struct ws_connecting *prev, *next; /* in srv->ws_connecting while waiting */
};

static void connecting_unlink(struct ws_connecting *w)
{
	struct server *s = w->srv;
	if (w->prev)
		w->prev->next = w->next;
	else if (s->ws_connecting == w)
		s->ws_connecting = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->prev = w->next = NULL;
}

static void connecting_free(struct ws_connecting *w)
{
	if (w->ev)
		event_free(w->ev);
	free(w);
}

static void on_connect_sent(int status, void *arg);

static void connect_again(evutil_socket_t fd, short what, void *arg)
{
	struct ws_connecting *w = arg;
	connecting_unlink(w);
	struct conn *c = reply_live(w->srv, w->id);
	if (!c || c->mode != MODE_WS_CONNECTING || !c->req->msg) {
		connecting_free(w);
		return;
	}
	int rc = layer_async_send(c->srv->layer, "websocket.connect", c->req->msg,
				  on_connect_sent, w);
	if (rc < 0) {
		on_connect_sent(rc, w);
		return;
	}
	c->req->sent = true;
}

static int next_delay(int delay, int first, int max)
{
	if (delay < first)
		return first;
	return delay * 2 < max ? delay * 2 : max;
}

/* The layer answered a websocket.connect (or it could not be sent at all). */
static void on_connect_sent(int status, void *arg)
{
	struct ws_connecting *w = arg;
	struct conn *c = reply_live(w->srv, w->id);
	if (!c || status == -ECANCELED || !c->req->websocket) {
		connecting_free(w);
		return;
	}
	struct request *r = c->req;
	if (status == 0) {
		laurel_msg_free(r->msg);
		r->msg = NULL;
		if (w->last)
			log_debug("conn %llu: websocket.connect taken after a wait",
				  (unsigned long long)c->id);
		connecting_free(w);
		return;
	}
	if (c->mode != MODE_WS_CONNECTING) {
		connecting_free(w);
		return;
	}
	/* A full channel refused it for sure; after a broken connection it may have gone in
	 * (r->sent stays: a disconnect then follows it, and a ghost is never left). */
	if (status == LAUREL_FULL)
		r->sent = false;
	if (status == LAUREL_FULL || status == -ENOTCONN) {
		bool full = status == LAUREL_FULL;
		if (w->last != status)
			w->delay_ms = 0;
		w->last = status;
		w->delay_ms = full ? next_delay(w->delay_ms, CONNECT_FULL_FIRST_MS, CONNECT_FULL_MAX_MS)
				   : next_delay(w->delay_ms, CONNECT_DOWN_FIRST_MS, CONNECT_DOWN_MAX_MS);
		if (!w->ev)
			w->ev = evtimer_new(c->srv->base, connect_again, w);
		struct timeval tv = {w->delay_ms / 1000, (w->delay_ms % 1000) * 1000};
		evtimer_add(w->ev, &tv);
		w->next = c->srv->ws_connecting;
		if (w->next)
			w->next->prev = w;
		c->srv->ws_connecting = w;
		return;
	}
	connecting_free(w);
	log_limited(LOG_WARN, "conn %llu: websocket.connect %s", (unsigned long long)c->id,
		    status == -EMSGSIZE ? "is too large" : "could not be sent");
	conn_respond_error(c, 503, "Service unavailable: the channel layer is unreachable.");
}

void asgi_ws_expired(struct conn *c)
{
	char why[64];
	if (!c->req->msg) {
		snprintf(why, sizeof(why), "no answer within %d s",
			 c->srv->cfg->websocket_connect_timeout);
		asgi_ws_reject(c, why);
		return;
	}
	/* The layer never took the connect: the channel stayed full, or the layer down. The
	 * retry (if one waits) finds the connection gone or answered and ends itself. */
	bool full = false;
	for (struct ws_connecting *w = c->srv->ws_connecting; w; w = w->next)
		if (w->id == c->req->id) {
			full = w->last == LAUREL_FULL;
			break;
		}
	log_limited(LOG_WARN, "conn %llu: websocket.connect not taken within %d s (%s); 503",
		    (unsigned long long)c->id, c->srv->cfg->websocket_connect_timeout,
		    full ? "the channel stayed full" : "the channel layer is unreachable");
	conn_access_log(c, "WSREJECT", c->req->path, 0, 0);
	conn_respond_error(c, 503,
			   full ? "Connection queue full."
				: "Service unavailable: the channel layer is unreachable.");
}

void asgi_ws_connect(struct conn *c)
{
	struct request *r = c->req;
	c->mode = MODE_WS_CONNECTING;
	conn_pause_reading(c, true);
	conn_access_log(c, "WSCONNECTING", r->path, 0, 0);
	if (!layer_async_listening(c->srv->layer, c->srv->prefix)) {
		log_debug("conn %llu: the reply channel %s is unreachable; answering 503",
			  (unsigned long long)c->id, c->srv->prefix);
		conn_respond_error(c, 503,
				   "Service unavailable: the channel layer is unreachable.");
		return;
	}
	struct ws_connecting *w = xcalloc(1, sizeof(*w));
	w->srv = c->srv;
	w->id = r->id;
	conn_set_timer(c, c->srv->cfg->websocket_connect_timeout);
	/* r->msg stays until the layer has taken it (see on_connect_sent). */
	int rc = layer_async_send(c->srv->layer, "websocket.connect", r->msg, on_connect_sent, w);
	if (rc < 0) {
		on_connect_sent(rc, w);
		return;
	}
	r->sent = true;
}

static int close_code_of(const struct laurel_value *v)
{
	if (!v)
		return 0;
	if (v->type == LAUREL_BOOL)
		return v->u.b ? 1000 : 0;
	if (v->type == LAUREL_INT)
		return v->u.i == 1000 || (v->u.i >= 3000 && v->u.i <= 4999) ? (int)v->u.i : 1000;
	return 0;
}

void asgi_ws_reply(struct conn *c, const struct laurel_msg *m)
{
	const struct laurel_value *ctl = laurel_msg_get(m, RECOVERY_KEY);
	if (ctl) {
		/* A recovery (recovery.h): a hold accepts nothing but takes effect at once, also
		 * while the handshake is still open (the connect consumer recovers before it
		 * accepts, and a live message may accept it first); a batch of missed messages
		 * accepts a handshake still open, as any text would. */
		bool hold = recovery_is_hold(ctl);
		if (!hold && c->mode == MODE_WS_CONNECTING)
			accept_now(c);
		if ((hold || c->mode != MODE_WS_CONNECTING) && !c->closing)
			recovery_control(c, m, ctl);
		return;
	}
	const struct laurel_value *root = laurel_msg_croot(m);
	const struct laurel_value *text = NULL, *bytes = NULL, *close = NULL, *accept = NULL,
				  *history = NULL;
	for (size_t i = 0; i < root->u.map.len; i++) {
		const struct laurel_entry *e = &root->u.map.items[i];
		const char *k = e->key.ptr;
		if (strcmp(k, "text") == 0 && e->value.type == LAUREL_TEXT)
			text = &e->value;
		else if (strcmp(k, "bytes") == 0 && e->value.type == LAUREL_BYTES)
			bytes = &e->value;
		else if (strcmp(k, "close") == 0)
			close = &e->value;
		else if (strcmp(k, "accept") == 0 && e->value.type == LAUREL_BOOL)
			accept = &e->value;
		else if (strcmp(k, ENVELOPE_KEY) == 0)
			history = &e->value;
		else
			log_limited(LOG_WARN, "conn %llu: dropped key \"%s\" (%s) of a reply on %s",
				    (unsigned long long)c->id, k, laurel_type_name(e->value.type),
				    c->req->reply_channel);
	}
	if (text && bytes) {
		log_limited(LOG_WARN, "conn %llu: reply on %s has both text and bytes; dropped",
			    (unsigned long long)c->id, c->req->reply_channel);
		return;
	}
	int code = close_code_of(close);
	if (c->mode == MODE_WS_CONNECTING) {
		bool yes = accept && accept->u.b;
		if ((accept && !accept->u.b) || (code && !yes && !text && !bytes)) {
			asgi_ws_reject(c, "the application refused it");
			return;
		}
		if (!yes && !text && !bytes)
			return;
		accept_now(c);
	}
	if (c->mode != MODE_WS_OPEN || c->closing)
		return;
	if ((text || bytes) && !asgi_ws_check_output(c))
		return;
	struct buf env;
	buf_init(&env);
	struct envelope_key k;
	if (history && (text || bytes) && envelope_parse(history, &k)) {
		envelope_build_parts(&env, k.group, k.glen, k.epoch, k.elen, k.offset, text, bytes);
		recovery_deliver(c, &k, env.data, env.len, NULL);
	} else if (text || bytes) {
		if (history)
			log_limited(LOG_WARN,
				    "conn %llu: a reply on %s has a malformed %s; sent without it",
				    (unsigned long long)c->id, c->req->reply_channel, ENVELOPE_KEY);
		struct ws_message out;
		ws_message_init(&out, &c->srv->ws_cfg, text != NULL,
				text ? text->u.s.ptr : bytes->u.s.ptr,
				text ? text->u.s.len : bytes->u.s.len);
		asgi_ws_send(c, &out);
		asgi_ws_message_fini(c->srv, &out);
	}
	buf_fini(&env);
	if (code && !ws_close_sent(c->ws)) {
		ws_close(c->ws, code);
		c->close_sent_ms = ms_now();
		asgi_ws_arm(c);
	}
}

void asgi_ws_read(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	int rc = 0;
	/* Nothing is parsed while messages are in flight (see WS_RECEIVE_BACKLOG;
	 * on_receive_sent comes back here); frames a pause left unparsed go first. */
	if (c->receives_in_flight) {
		if (evbuffer_get_length(in) > WS_UNPARSED_MAX)
			conn_pause_reading(c, true);
		return;
	}
	if (ws_has_pending(c->ws) && !ws_finished(c->ws))
		rc = ws_feed(c->ws, NULL, 0);
	while (rc == 0 && evbuffer_get_length(in) && !ws_finished(c->ws) &&
	       c->receives_in_flight < WS_RECEIVE_BACKLOG) {
		struct evbuffer_iovec v[4];
		int n = evbuffer_peek(in, -1, NULL, v, 4);
		size_t total = 0;
		for (int i = 0; i < n && rc == 0 && c->receives_in_flight < WS_RECEIVE_BACKLOG;
		     i++) {
			rc = ws_feed(c->ws, v[i].iov_base, v[i].iov_len);
			total += v[i].iov_len;
		}
		evbuffer_drain(in, total);
	}
	if (rc < 0 || ws_finished(c->ws)) {
		/* The close handshake is done, or the client broke the protocol (wslay has
		 * queued the close frame with its code): close once it is written. */
		c->closing = true;
		conn_pause_reading(c, true);
		if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
			conn_close(c);
		return;
	}
	if (ws_close_sent(c->ws) && !c->close_sent_ms) {
		c->close_sent_ms = ms_now();
		asgi_ws_arm(c);
	}
}
