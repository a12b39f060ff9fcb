/* An HTTP request's life (see request.h): the parser's callbacks build its message and send it,
 * with its body, to the channel layer; the reply becomes the response; the end is logged and
 * told to the application. */
#include "interface/request.h"
#include "interface/asgi_http.h"
#include "interface/asgi_ws.h"
#include "interface/metrics.h"
#include "interface/outbox.h"
#include "interface/reply.h"
#include "interface/static.h"
#include "common/log.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sys/socket.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SEND_BACKLOG 4 /* body chunks in flight before reading from the client pauses */

static void on_request_sent(int status, void *arg)
{
	struct conn *c = request_ref_take(arg);
	if (!c || status == 0 || status == -ECANCELED || c->req->started)
		return;
	c->req->sent = false; /* nothing reached the application */
	if (status == LAUREL_FULL) {
		log_limited(LOG_WARN, "conn %llu: http.request is full", (unsigned long long)c->id);
		conn_respond_error(c, 503, "Request queue full.");
	} else {
		conn_respond_error(c, 503,
				   "Service unavailable: the channel layer is unreachable.");
	}
}

static void on_chunk_sent(int status, void *arg)
{
	struct conn *c = request_ref_take(arg);
	if (!c)
		return;
	c->req->chunks_in_flight--;
	if (status != 0 && status != -ECANCELED && !c->req->started) {
		log_limited(LOG_WARN, "conn %llu: body chunk for %s could not be sent (%s)",
			    (unsigned long long)c->id, c->req->body_channel,
			    status == LAUREL_FULL ? "channel full" : "layer unreachable");
		conn_respond_error(c, 503, "Request body could not be delivered.");
		return;
	}
	if (c->req->chunks_in_flight < SEND_BACKLOG && !c->closing && !http1_done(c->parser))
		conn_pause_reading(c, false);
}

struct conn *request_ref_take(void *arg)
{
	struct request_ref *ref = arg;
	struct conn *c = reply_live(ref->srv, ref->id);
	free(ref);
	return c;
}

int request_send(struct conn *c, const char *channel, struct laurel_msg *m, layer_async_done_cb cb)
{
	struct request_ref *ctx = NULL;
	if (cb) {
		ctx = xmalloc(sizeof(*ctx));
		ctx->srv = c->srv;
		ctx->id = c->req->id;
	}
	int rc = layer_async_send(c->srv->layer, channel, m, cb, ctx);
	if (rc < 0)
		free(ctx);
	return rc;
}

static int send_request(struct conn *c)
{
	struct request *r = c->req;
	if (!layer_async_listening(c->srv->layer, c->srv->prefix)) {
		/* The shard of our reply channel is down: no answer could reach us. */
		laurel_msg_free(r->msg);
		r->msg = NULL;
		log_debug("conn %llu: the reply channel %s is unreachable; answering 503",
			  (unsigned long long)c->id, c->srv->prefix);
		conn_respond_error(c, 503,
				   "Service unavailable: the channel layer is unreachable.");
		return -1;
	}
	int rc = request_send(c, "http.request", r->msg, on_request_sent);
	laurel_msg_free(r->msg);
	r->msg = NULL;
	/* Only a request the layer took may be followed by a closed body or http.disconnect. */
	r->sent = rc == 0;
	if (rc < 0) {
		conn_respond_error(
			c, rc == -EMSGSIZE ? 413 : 503,
			rc == -EMSGSIZE ? "Request too large."
					: "Service unavailable: the channel layer is unreachable.");
		return -1;
	}
	return 0;
}

static int send_chunk(struct conn *c, const char *data, size_t len, bool more)
{
	struct request *r = c->req;
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_bytes(m, "content", data, len);
	laurel_msg_set_bool(m, "more_content", more);
	int rc = request_send(c, r->body_channel, m, on_chunk_sent);
	laurel_msg_free(m);
	if (rc < 0) {
		conn_respond_error(c, 503, "Request body could not be delivered.");
		return -1;
	}
	r->chunks_in_flight++;
	if (r->chunks_in_flight >= SEND_BACKLOG)
		conn_pause_reading(c, true);
	return 0;
}

/* The application is reading a body channel that will get no more chunks. */
void request_body_closed(struct conn *c)
{
	struct request *r = c->req;
	if (!r->streaming || !r->sent || r->body_closed)
		return;
	r->body_closed = true;
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_bool(m, "closed", true);
	layer_async_send(c->srv->layer, r->body_channel, m, NULL, NULL);
	laurel_msg_free(m);
}

void request_disconnect(struct conn *c)
{
	struct request *r = c->req;
	if (c->srv->cfg->no_http_disconnect || !r->sent || r->disconnect_sent)
		return;
	r->disconnect_sent = true;
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_text(m, "reply_channel", r->reply_channel);
	laurel_msg_set_textn(m, "path", r->path ? r->path : "", r->pathlen);
	outbox_send(c->srv->outbox, "http.disconnect", m);
}

static int on_head(void *owner, struct http1_request *h)
{
	struct conn *c = owner;
	struct server *s = c->srv;
	const struct server_config *cfg = s->cfg;
	struct asgi_http_target t;
	int status = asgi_http_target(h, &t);
	if (!status && t.websocket)
		status = asgi_ws_check(c, h);
	if (status) {
		asgi_http_target_fini(&t);
		return status;
	}

	struct request *r = xcalloc(1, sizeof(*r));
	c->req = r;
	r->websocket = t.websocket;
	r->id = ++s->next_request;
	/* The prefix is 27 characters, so the name always fits. */
	int wrote = snprintf(r->reply_channel, sizeof(r->reply_channel), "%.40sq%llu", s->prefix,
			     (unsigned long long)r->id);
	(void)wrote;
	r->target = xstrndup(h->target.data ? h->target.data : "", h->target.len);
	r->path = xmalloc(t.path.len + 1);
	memcpy(r->path, t.path.data ? t.path.data : "", t.path.len);
	r->path[t.path.len] = '\0';
	r->pathlen = t.path.len;
	snprintf(r->method, sizeof(r->method), "%s", h->method);
	r->head = h->head;
	r->length = -1;
	r->start_us = util_now_us();
	r->version_minor = h->version_minor;
	r->keep_alive = h->keep_alive && !s->draining;
	buf_init(&r->body);
	reply_add(s, r->id, c);

	struct asgi_http_peer peer = {.has_addrs = c->has_addrs,
				      .client_host = c->client_host,
				      .client_port = c->client_port,
				      .server_host = c->server_host,
				      .server_port = c->server_port};
	struct asgi_http_options o = {.proxy_headers = cfg->proxy_headers,
				      .root_path = cfg->root_path};
	r->msg = asgi_http_message(h, &t, &peer, &o, r->reply_channel);
	asgi_http_target_fini(&t);
	if (r->websocket)
		return 0;
	if (cfg->nstatics) {
		const struct http1_header *ims = asgi_http_header(h, "if-modified-since");
		if (ims)
			r->if_modified_since = xstrdup(ims->value);
	}
	if (h->expect_continue)
		evbuffer_add_printf(bufferevent_get_output(c->bev),
				    "HTTP/1.1 100 Continue\r\n\r\n");
	conn_set_timer(c, cfg->http_timeout);
	return 0;
}

static int on_body(void *owner, const char *data, size_t len)
{
	struct conn *c = owner;
	struct request *r = c->req;
	size_t chunk = c->srv->cfg->body_chunk;
	if (r->finished || (r->sent && !r->streaming))
		return 0; /* answered already: the rest of the body is read and dropped */
	buf_append(&r->body, data, len);
	if (!r->streaming && r->body.len > chunk) {
		/* A large body: the request goes now with its first part, the rest follows in
		 * chunks on a body channel (SPEC §4). */
		r->streaming = true;
		char letters[12];
		util_rng_letters(&c->srv->rng, letters, sizeof(letters));
		snprintf(r->body_channel, sizeof(r->body_channel), "http.request.body?%.12s",
			 letters);
		laurel_msg_set_bytes(r->msg, "body", r->body.data, chunk);
		laurel_msg_set_text(r->msg, "body_channel", r->body_channel);
		buf_consume(&r->body, chunk);
		if (send_request(c) < 0)
			return 0; /* answered already */
	}
	while (r->streaming && r->body.len >= chunk) {
		if (send_chunk(c, r->body.data, chunk, true) < 0)
			return 0;
		buf_consume(&r->body, chunk);
	}
	return 0;
}

static int on_complete(void *owner)
{
	struct conn *c = owner;
	struct request *r = c->req;
	if (r->started || r->finished)
		return 0; /* already answered (an error while reading the body) */
	if (r->websocket) {
		asgi_ws_connect(c);
		return 0;
	}
	if (r->streaming) {
		if (send_chunk(c, r->body.data ? r->body.data : "", r->body.len, false) == 0)
			r->body_done = true;
		buf_reset(&r->body);
		return 0;
	}
	if (c->srv->cfg->nstatics) {
		/* Answered by the interface after the parser returns (see conn_read). */
		struct buf probe;
		buf_init(&probe);
		int status;
		uint64_t bytes;
		r->local = static_serve(c->srv->cfg->statics, c->srv->cfg->nstatics, r->method,
					r->path, r->pathlen, r->if_modified_since, conn_date(c->srv),
					r->keep_alive, &probe, &status, &bytes);
		if (r->local) {
			evbuffer_add(bufferevent_get_output(c->bev), probe.data, probe.len);
			conn_track_output(c);
			r->status = status;
			r->bytes = bytes;
			r->started = true;
			metrics_response_started(c->srv, r);
		}
		buf_fini(&probe);
		if (r->local)
			return 0;
	}
	laurel_msg_set_bytes(r->msg, "body", r->body.data ? r->body.data : "", r->body.len);
	buf_fini(&r->body);
	send_request(c);
	return 0;
}

const struct http1_callbacks request_parser_callbacks = {
	.on_head = on_head,
	.on_body = on_body,
	.on_complete = on_complete,
};

int request_response_start(struct conn *c, const struct laurel_msg *m, bool more,
			   struct buf *head_out)
{
	struct request *r = c->req;
	/* Answered before the request was read whole: the connection ends after this response. */
	struct asgi_http_response resp = {.head_request = r->head,
					  .version_minor = r->version_minor,
					  .keep_alive = r->keep_alive && http1_done(c->parser),
					  .more = more,
					  .date = conn_date(c->srv)};
	if (asgi_http_response_head(m, &resp, head_out) < 0) {
		log_limited(LOG_WARN, "conn %llu: reply on %s has %s; answering 500",
			    (unsigned long long)c->id, r->reply_channel, resp.error);
		conn_respond_error(c, 500, "The application sent an invalid response.");
		return -1;
	}
	if (resp.dropped_headers)
		log_limited(LOG_WARN, "conn %llu: dropped %zu malformed response headers from %s",
			    (unsigned long long)c->id, resp.dropped_headers, r->reply_channel);
	r->keep_alive = resp.keep_alive;
	r->chunked = resp.chunked;
	r->no_body = resp.no_body;
	r->length = resp.content_length;
	r->started = true;
	r->status = resp.status;
	metrics_response_started(c->srv, r);
	return 0;
}

/* Writes what head holds (the response head, if this reply started the response) and a piece of
 * the body, framed as the response needs, in one system call when the socket takes it all. */
void request_response_body(struct conn *c, struct buf *head, const void *data, size_t len)
{
	struct request *r = c->req;
	if (r->no_body || r->overrun)
		len = 0;
	if (r->length >= 0 && r->bytes + len > (uint64_t)r->length) {
		log_limited(LOG_WARN,
			    "conn %llu: response body on %s is longer than its Content-Length "
			    "(%lld); the rest is dropped and the connection closed",
			    (unsigned long long)c->id, r->reply_channel, (long long)r->length);
		len = (size_t)((uint64_t)r->length - r->bytes);
		r->overrun = true;
		r->keep_alive = false;
	}
	if (len && r->chunked)
		buf_printf(head, "%zx\r\n", len);
	struct iovec iov[3] = {{head->data, head->len},
			       {(void *)data, len},
			       {(char *)"\r\n", len && r->chunked ? 2 : 0}};
	if (head->len + len)
		conn_output(c, iov, 3);
	r->bytes += len;
}

/* The response is complete (or abandoned): log, tell the application, and either wait for the
 * next request on the connection or close it. */
void request_free(struct request *r)
{
	laurel_msg_free(r->msg);
	buf_fini(&r->body);
	free(r->target);
	free(r->path);
	free(r->if_modified_since);
	free(r);
}

void request_finish(struct conn *c)
{
	struct request *r = c->req;
	struct server *s = c->srv;
	if (r->finished)
		return;
	r->finished = true;
	if (r->chunked)
		conn_output(c, (struct iovec[]){{(char *)"0\r\n\r\n", 5}}, 1);
	if (r->websocket) {
		asgi_ws_disconnect(c, asgi_ws_code(c));
	} else {
		if (r->status) {
			conn_access_log(c, r->method, r->target, r->status, r->bytes);
			metrics_request_done(s, r);
		}
		if (!r->body_done)
			request_body_closed(c);
		request_disconnect(c);
	}
	reply_del(s, r->id);
	if (c->parsing) {
		c->finish_pending = true; /* conn_read settles it when http1_feed returns */
		return;
	}
	request_settle(c);
}

void request_settle(struct conn *c)
{
	struct request *r = c->req;
	struct server *s = c->srv;
	/* A response that ends before its request body was read ends the connection too. */
	bool keep =
		r->keep_alive && !s->draining && !c->closing && c->parser && http1_done(c->parser);
	request_free(r);
	c->req = NULL;
	evtimer_del(c->timer);
	if (!keep) {
		if (conn_unread(c))
			c->linger = true;
		conn_end(c);
		return;
	}
	http1_next(c->parser);
	bool pending = evbuffer_get_length(bufferevent_get_input(c->bev)) > 0;
	if (c->read_eof && !pending) {
		conn_end(c); /* half-closed, and every request it sent is answered */
		return;
	}
	conn_set_timer(c, s->cfg->header_timeout);
	conn_pause_reading(c, false);
	/* Pipelined requests may already be waiting in the input buffer: read them from the loop,
	 * not from inside whatever finished this response. */
	if (pending)
		bufferevent_trigger(c->bev, EV_READ,
				    BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}
