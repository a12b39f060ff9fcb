/* laurel-interface's HTTP server (see server.h). */
#include "interface/server.h"
#include "interface/http1.h"
#include "interface/outbox.h"
#include "interface/websocket.h"
#include "common/buf.h"
#include "common/layer.h"
#include "common/layer_async.h"
#include "common/log.h"
#include "common/util.h"
#include "laurel/layer.h"
#include "laurel/message.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define ANNOUNCE_TTL 30
#define SEND_BACKLOG 4 /* body chunks in flight before reading from the client pauses */
/* Disconnect messages that may wait for a full channel or a shard that is down (outbox.h): about
 * 300 bytes each. */
#define CONTROL_OUTBOX_MAX 100000

struct conn;

struct request {
	uint64_t id;
	char reply_channel[LAUREL_NAME_MAX + 1];
	struct laurel_msg *msg; /* the http.request, until it is sent */
	char *target;		/* the raw request target, for the access log */
	char *path;		/* decoded, for http.disconnect (may hold a NUL: see pathlen) */
	size_t pathlen;
	char method[24];
	bool head;
	int version_minor;
	bool keep_alive;
	/* body */
	struct buf body;
	bool streaming;
	char body_channel[LAUREL_NAME_MAX + 1];
	int chunks_in_flight;
	bool sent; /* http.request handed to the layer */
	bool body_done;	  /* the last body chunk was sent */
	bool body_closed; /* {closed: true} was sent on the body channel */
	bool websocket; /* an upgrade: the request lives as long as the WebSocket */
	bool local;	/* answered by the interface itself (static files) */
	char *if_modified_since;
	int64_t start_ms;
	/* response */
	bool started;
	bool chunked;
	bool no_body;
	bool finished;
	int status;
	uint64_t bytes;
};

struct conn {
	struct server *srv;
	uint64_t id;
	struct bufferevent *bev;
	struct http1_parser *parser;
	struct request *req;
	struct event *timer;
	bool has_addrs;
	char client_host[INET6_ADDRSTRLEN];
	int client_port;
	char server_host[INET6_ADDRSTRLEN];
	int server_port;
	bool closing; /* close once the output is written */
	bool reading_paused;
	/* WebSocket */
	enum { MODE_HTTP, MODE_WS_CONNECTING, MODE_WS_OPEN } mode;
	struct ws *ws;
	char ws_accept[32];
	char *ws_protocol;
	int64_t order;
	int64_t opened_ms, last_recv_ms, ping_sent_ms, close_sent_ms;
	bool disconnected; /* websocket.disconnect sent */
	int receives_in_flight; /* websocket.receive sends not yet answered by the layer */
	struct conn *prev, *next;
};

/* Requests waiting for replies, by id: a chained hash table. */
struct slot {
	uint64_t id;
	struct conn *conn;
	struct slot *next;
};

struct server {
	struct event_base *base;
	const struct server_config *cfg;
	struct http1_limits limits;
	struct layer_async *layer;
	struct outbox *outbox; /* websocket.disconnect, http.disconnect */
	struct evconnlistener *listeners[3];
	size_t nlisteners;
	char prefix[LAUREL_NAME_MAX + 1]; /* "laurel.response.AbCdEfGhIj!" */
	struct util_rng rng;
	uint64_t next_conn, next_request;
	struct conn *conns;
	size_t nconns;
	struct slot **slots;
	size_t nslots, nslotbuckets;
	FILE *access;
	bool draining;
	bool drained;
	struct event *drain_timer;
	char date[64];
	time_t date_at;
};

static void conn_close(struct conn *c);
static void conn_read(struct bufferevent *bev, void *arg);
static void request_finish(struct conn *c);
static void ws_connect(struct conn *c);
static void ws_reply(struct conn *c, const struct laurel_msg *m);
static void ws_arm(struct conn *c);
static void ws_tick(struct conn *c);
static void ws_disconnect(struct conn *c, int code);
static int ws_code(const struct conn *c);
static uint64_t local_id(const char *channel);
static void on_layer_reset(const char *desc, void *arg);

/* --- Request table --------------------------------------------------------------------------- */

static void slots_grow(struct server *s)
{
	size_t n = s->nslotbuckets ? s->nslotbuckets * 2 : 1024;
	struct slot **b = xcalloc(n, sizeof(*b));
	for (size_t i = 0; i < s->nslotbuckets; i++) {
		struct slot *sl = s->slots[i], *next;
		for (; sl; sl = next) {
			next = sl->next;
			sl->next = b[sl->id & (n - 1)];
			b[sl->id & (n - 1)] = sl;
		}
	}
	free(s->slots);
	s->slots = b;
	s->nslotbuckets = n;
}

static void slot_add(struct server *s, uint64_t id, struct conn *c)
{
	if (s->nslots >= s->nslotbuckets)
		slots_grow(s);
	struct slot *sl = xmalloc(sizeof(*sl));
	sl->id = id;
	sl->conn = c;
	sl->next = s->slots[id & (s->nslotbuckets - 1)];
	s->slots[id & (s->nslotbuckets - 1)] = sl;
	s->nslots++;
}

static struct conn *slot_find(struct server *s, uint64_t id)
{
	if (!s->nslotbuckets)
		return NULL;
	for (struct slot *sl = s->slots[id & (s->nslotbuckets - 1)]; sl; sl = sl->next)
		if (sl->id == id)
			return sl->conn;
	return NULL;
}

static void slot_del(struct server *s, uint64_t id)
{
	if (!s->nslotbuckets)
		return;
	struct slot **p = &s->slots[id & (s->nslotbuckets - 1)];
	for (; *p; p = &(*p)->next) {
		if ((*p)->id == id) {
			struct slot *sl = *p;
			*p = sl->next;
			free(sl);
			s->nslots--;
			return;
		}
	}
}

/* --- Small helpers --------------------------------------------------------------------------- */

static const char *http_date(struct server *s)
{
	time_t now = time(NULL);
	if (now != s->date_at) {
		struct tm tm;
		gmtime_r(&now, &tm);
		strftime(s->date, sizeof(s->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
		s->date_at = now;
	}
	return s->date;
}

static void runserver_log(struct conn *c, const char *method, const char *target, int status)
{
	static const struct {
		const char *from, *to;
	} ws[] = {{"WSCONNECTING", "HANDSHAKING"},
		  {"WSCONNECT", "CONNECT"},
		  {"WSREJECT", "REJECT"},
		  {"WSDISCONNECT", "DISCONNECT"}};
	char when[64], peer[96];
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y/%m/%d %H:%M:%S", &tm);
	if (c->has_addrs)
		snprintf(peer, sizeof(peer), "%s:%d", c->client_host, c->client_port);
	else
		snprintf(peer, sizeof(peer), "unix");
	for (size_t i = 0; i < ARRAY_SIZE(ws); i++) {
		if (strcmp(method, ws[i].from) == 0) {
			fprintf(c->srv->access, "[%s] WebSocket %s %s [%s]\n", when, ws[i].to,
				target ? target : "-", peer);
			fflush(c->srv->access);
			return;
		}
	}
	double took = c->req ? (double)(util_now_ms() - c->req->start_ms) / 1000.0 : 0;
	fprintf(c->srv->access, "[%s] HTTP %s %s %d [%.2f, %s]\n", when, method,
		target ? target : "-", status, took, peer);
	fflush(c->srv->access);
}

static void access_log(struct conn *c, const char *method, const char *target, int status,
		       uint64_t size)
{
	FILE *f = c->srv->access;
	if (!f)
		return;
	if (c->srv->cfg->runserver_log) {
		runserver_log(c, method, target, status);
		return;
	}
	char when[64];
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(when, sizeof(when), "%d/%b/%Y:%H:%M:%S", &tm);
	if (status)
		fprintf(f, "%s - - [%s] \"%s %s\" %d %llu\n", c->has_addrs ? c->client_host : "unix",
			when, method, target ? target : "-", status, (unsigned long long)size);
	else
		fprintf(f, "%s - - [%s] \"%s %s\" - -\n", c->has_addrs ? c->client_host : "unix", when,
			method, target ? target : "-");
	fflush(f);
}

static void set_timer(struct conn *c, int seconds)
{
	struct timeval tv = {seconds, 0};
	evtimer_add(c->timer, &tv);
}

static void pause_reading(struct conn *c, bool pause)
{
	if (pause == c->reading_paused)
		return;
	c->reading_paused = pause;
	if (pause)
		bufferevent_disable(c->bev, EV_READ);
	else
		bufferevent_enable(c->bev, EV_READ);
}

/* Writes a whole small response and closes the connection after it. */
static void respond_error(struct conn *c, int status, const char *body)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	char text[256];
	if (!body)
		body = http1_reason(status);
	int n = snprintf(text, sizeof(text), "%s\n", body);
	evbuffer_add_printf(out,
			    "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
			    "Content-Length: %d\r\nDate: %s\r\nServer: laurel\r\n%sConnection: close\r\n\r\n",
			    status, http1_reason(status), n, http_date(c->srv),
			    status == 426 ? "Sec-WebSocket-Version: 13\r\n" : "");
	struct request *r = c->req;
	if (!(r && r->head))
		evbuffer_add(out, text, (size_t)n);
	if (r) {
		r->started = true;
		r->status = status;
		r->bytes = r->head ? 0 : (uint64_t)n;
		r->keep_alive = false;
		request_finish(c);
	} else {
		access_log(c, "-", "-", status, (uint64_t)n);
		c->closing = true;
		pause_reading(c, true);
		if (evbuffer_get_length(out) == 0)
			conn_close(c);
	}
}

/* --- Sending to the layer -------------------------------------------------------------------- */

static void *id_arg(uint64_t id)
{
	return (void *)(uintptr_t)id;
}

/* The request id a layer callback was given, if its connection is still waiting for it. */
static struct conn *live(struct server *s, void *arg)
{
	uint64_t id = (uint64_t)(uintptr_t)arg;
	struct conn *c = slot_find(s, id);
	return c && c->req && c->req->id == id && !c->req->finished ? c : NULL;
}

struct send_ctx {
	struct server *srv;
	uint64_t id;
};

static void on_request_sent(int status, void *arg)
{
	struct send_ctx *ctx = arg;
	struct server *s = ctx->srv;
	struct conn *c = live(s, id_arg(ctx->id));
	free(ctx);
	if (!c || status == 0 || c->req->started)
		return;
	if (status == LAUREL_FULL) {
		log_limited(LOG_WARN, "conn %llu: http.request is full", (unsigned long long)c->id);
		respond_error(c, 503, "Request queue full.");
	} else if (status != -ECANCELED) {
		respond_error(c, 503, "Service unavailable: the channel layer is unreachable.");
	}
}

static void on_chunk_sent(int status, void *arg)
{
	struct send_ctx *ctx = arg;
	struct conn *c = live(ctx->srv, id_arg(ctx->id));
	free(ctx);
	if (!c)
		return;
	c->req->chunks_in_flight--;
	if (status != 0 && status != -ECANCELED && !c->req->started) {
		log_limited(LOG_WARN, "conn %llu: body chunk for %s could not be sent (%s)",
			 (unsigned long long)c->id, c->req->body_channel,
			 status == LAUREL_FULL ? "channel full" : "layer unreachable");
		respond_error(c, 503, "Request body could not be delivered.");
		return;
	}
	if (c->req->chunks_in_flight < SEND_BACKLOG && !c->closing && !http1_done(c->parser))
		pause_reading(c, false);
}

static int send_on(struct conn *c, const char *channel, struct laurel_msg *m,
		   layer_async_done_cb cb)
{
	struct send_ctx *ctx = NULL;
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
		respond_error(c, 503, "Service unavailable: the channel layer is unreachable.");
		return -1;
	}
	int rc = send_on(c, "http.request", r->msg, on_request_sent);
	laurel_msg_free(r->msg);
	r->msg = NULL;
	r->sent = true;
	if (rc < 0) {
		respond_error(c, rc == -EMSGSIZE ? 413 : 503,
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
	int rc = send_on(c, r->body_channel, m, on_chunk_sent);
	laurel_msg_free(m);
	if (rc < 0) {
		respond_error(c, 503, "Request body could not be delivered.");
		return -1;
	}
	r->chunks_in_flight++;
	if (r->chunks_in_flight >= SEND_BACKLOG)
		pause_reading(c, true);
	return 0;
}

/* The application is reading a body channel that will get no more chunks. */
static void send_body_closed(struct conn *c)
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

static void send_disconnect(struct conn *c)
{
	struct request *r = c->req;
	if (c->srv->cfg->no_http_disconnect || !r->sent)
		return;
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_text(m, "reply_channel", r->reply_channel);
	laurel_msg_set_textn(m, "path", r->path ? r->path : "", r->pathlen);
	outbox_send(c->srv->outbox, "http.disconnect", m);
}

/* --- Parsing requests ------------------------------------------------------------------------ */

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Percent-decodes the path into out; false if it is not valid UTF-8 afterwards. */
static bool decode_path(const char *p, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '%' && i + 2 < n && hexval(p[i + 1]) >= 0 && hexval(p[i + 2]) >= 0) {
			buf_append_byte(out, (unsigned char)(hexval(p[i + 1]) * 16 + hexval(p[i + 2])));
			i += 2;
		} else {
			buf_append_byte(out, (unsigned char)p[i]);
		}
	}
	return ws_valid_utf8((const uint8_t *)out->data, out->len);
}

static const struct http1_header *header(const struct http1_request *h, const char *name)
{
	for (size_t i = 0; i < h->nheaders; i++)
		if (strcmp(h->headers[i].name, name) == 0)
			return &h->headers[i];
	return NULL;
}

static void put_addr(struct laurel_msg *m, const char *key, const char *host, int port, bool have)
{
	struct laurel_value *v = laurel_map_put(m, laurel_msg_root(m), key);
	if (!have)
		return; /* nil on a unix socket */
	laurel_value_set_list(m, v, 2);
	laurel_value_set_text(m, laurel_list_push(m, v), host, strlen(host));
	laurel_value_set_int(laurel_list_push(m, v), port);
}

static void put_headers(struct laurel_msg *m, const struct http1_request *h)
{
	struct laurel_value *hv = laurel_map_put(m, laurel_msg_root(m), "headers");
	laurel_value_set_list(m, hv, h->nheaders);
	for (size_t i = 0; i < h->nheaders; i++) {
		const struct http1_header *hd = &h->headers[i];
		if (memchr(hd->name, '_', hd->namelen))
			continue; /* Daphne drops them: they could spoof CGI-style variables */
		struct laurel_value *pair = laurel_list_push(m, hv);
		laurel_value_set_list(m, pair, 2);
		laurel_value_set_bytes(m, laurel_list_push(m, pair), hd->name, hd->namelen);
		laurel_value_set_bytes(m, laurel_list_push(m, pair), hd->value, hd->valuelen);
	}
}

static bool in_list(const struct option_list *l, const char *s, size_t n)
{
	for (size_t i = 0; i < l->n; i++)
		if (strlen(l->v[i]) == n && strncmp(l->v[i], s, n) == 0)
			return true;
	return false;
}

/* Checks a WebSocket handshake (RFC 6455 §4.2.1) and picks the subprotocol. Returns 0 or the
 * status to refuse it with. */
static int ws_check(struct conn *c, const struct http1_request *h)
{
	const struct server_config *cfg = c->srv->cfg;
	const struct http1_header *ver = header(h, "sec-websocket-version");
	const struct http1_header *key = header(h, "sec-websocket-key");
	const struct http1_header *origin = header(h, "origin");
	const struct http1_header *proto = header(h, "sec-websocket-protocol");
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

static int on_head(void *owner, struct http1_request *h)
{
	struct conn *c = owner;
	struct server *s = c->srv;
	const struct server_config *cfg = s->cfg;
	const char *t = h->target.data ? h->target.data : "";
	size_t tlen = h->target.len;

	for (size_t i = 0; i < tlen; i++)
		if ((unsigned char)t[i] >= 0x80 || (unsigned char)t[i] <= 0x20)
			return 400;
	if (h->version_minor >= 1) {
		/* RFC 9112 §3.2: exactly one Host in an HTTP/1.1 request. */
		size_t hosts = 0;
		for (size_t i = 0; i < h->nheaders; i++)
			hosts += strcmp(h->headers[i].name, "host") == 0;
		if (hosts != 1)
			return 400;
	}
	/* origin-form, or absolute-form (http://host/path) from a proxy */
	const char *path = t;
	size_t scheme_len = tlen >= 7 && strncasecmp(t, "http://", 7) == 0	? 7
			    : tlen >= 8 && strncasecmp(t, "https://", 8) == 0 ? 8
									     : 0;
	if (scheme_len) {
		const char *slash = memchr(t + scheme_len, '/', tlen - scheme_len);
		path = slash ? slash : "/";
	} else if (!(tlen == 1 && t[0] == '*' && strcmp(h->method, "OPTIONS") == 0) &&
		   (tlen == 0 || t[0] != '/')) {
		return 400;
	}
	size_t plen = strlen(path);
	const char *q = memchr(path, '?', plen);
	size_t pathlen = q ? (size_t)(q - path) : plen;
	struct buf decoded;
	buf_init(&decoded);
	if (!decode_path(path, pathlen, &decoded)) {
		buf_fini(&decoded);
		return 400;
	}

	const struct http1_header *up = header(h, "upgrade");
	bool websocket = h->upgrade && up && strcasestr(up->value, "websocket");
	if (websocket) {
		int status = ws_check(c, h);
		if (status) {
			buf_fini(&decoded);
			return status;
		}
	}

	struct request *r = xcalloc(1, sizeof(*r));
	c->req = r;
	r->websocket = websocket;
	r->id = ++s->next_request;
	/* The prefix is 27 characters, so the name always fits. */
	int wrote = snprintf(r->reply_channel, sizeof(r->reply_channel), "%.40sq%llu", s->prefix,
			 (unsigned long long)r->id);
	(void)wrote;
	r->target = xstrndup(t, tlen);
	r->path = xmalloc(decoded.len + 1);
	memcpy(r->path, decoded.data ? decoded.data : "", decoded.len);
	r->path[decoded.len] = '\0';
	r->pathlen = decoded.len;
	snprintf(r->method, sizeof(r->method), "%s", h->method);
	r->head = h->head;
	r->start_ms = util_now_ms();
	r->version_minor = h->version_minor;
	r->keep_alive = h->keep_alive && !s->draining;
	buf_init(&r->body);
	slot_add(s, r->id, c);

	const char *scheme = "http";
	const char *client_host = c->client_host;
	int client_port = c->client_port;
	char fwd_host[INET6_ADDRSTRLEN];
	if (cfg->proxy_headers) {
		const struct http1_header *xff = header(h, "x-forwarded-for");
		const struct http1_header *xfp = header(h, "x-forwarded-port");
		const struct http1_header *xproto = header(h, "x-forwarded-proto");
		if (xff && xff->valuelen) {
			size_t n = strcspn(xff->value, ", ");
			snprintf(fwd_host, sizeof(fwd_host), "%.*s", (int)n, xff->value);
			client_host = fwd_host;
			client_port = xfp ? atoi(xfp->value) : 0;
		}
		if (xproto && strcasecmp(xproto->value, "https") == 0)
			scheme = "https";
	}

	struct laurel_msg *m = laurel_msg_new();
	r->msg = m;
	if (websocket) {
		/* websocket.connect, in Daphne's field order */
		laurel_msg_set_textn(m, "path", decoded.data ? decoded.data : "", decoded.len);
		put_headers(m, h);
		laurel_msg_set_bytes(m, "query_string", q ? q + 1 : "", q ? plen - pathlen - 1 : 0);
		put_addr(m, "client", client_host, client_port,
			 c->has_addrs || client_host == fwd_host);
		put_addr(m, "server", c->server_host, c->server_port, c->has_addrs);
		laurel_msg_set_text(m, "reply_channel", r->reply_channel);
		laurel_msg_set_int(m, "order", 0);
		buf_fini(&decoded);
		return 0;
	}
	laurel_msg_set_text(m, "reply_channel", r->reply_channel);
	char version[8];
	snprintf(version, sizeof(version), "%d.%d", h->version_major, h->version_minor);
	laurel_msg_set_text(m, "http_version", version);
	laurel_msg_set_text(m, "method", h->method);
	laurel_msg_set_textn(m, "path", decoded.data ? decoded.data : "", decoded.len);
	laurel_msg_set_text(m, "root_path", cfg->root_path ? cfg->root_path : "");
	laurel_msg_set_text(m, "scheme", scheme);
	laurel_msg_set_bytes(m, "query_string", q ? q + 1 : "", q ? plen - pathlen - 1 : 0);
	put_headers(m, h);
	laurel_msg_set_bytes(m, "body", "", 0);
	if (cfg->nstatics) {
		const struct http1_header *ims = header(h, "if-modified-since");
		if (ims)
			r->if_modified_since = xstrdup(ims->value);
	}
	put_addr(m, "client", client_host, client_port, c->has_addrs || client_host == fwd_host);
	put_addr(m, "server", c->server_host, c->server_port, c->has_addrs);
	buf_fini(&decoded);

	if (h->expect_continue)
		evbuffer_add_printf(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n");
	set_timer(c, cfg->http_timeout);
	return 0;
}

static int on_body(void *owner, const char *data, size_t len)
{
	struct conn *c = owner;
	struct request *r = c->req;
	size_t chunk = c->srv->cfg->body_chunk;
	if (r->sent && !r->streaming)
		return 0;
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
	if (r->started)
		return 0; /* already answered (an error while reading the body) */
	if (r->websocket) {
		ws_connect(c);
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
					r->path, r->if_modified_since, http_date(c->srv),
					r->keep_alive, &probe, &status, &bytes);
		if (r->local) {
			evbuffer_add(bufferevent_get_output(c->bev), probe.data, probe.len);
			r->status = status;
			r->bytes = bytes;
			r->started = true;
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

static const struct http1_callbacks parser_callbacks = {
	.on_head = on_head,
	.on_body = on_body,
	.on_complete = on_complete,
};

/* --- Responses ------------------------------------------------------------------------------- */

static bool header_token(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch <= 0x20 || ch >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", ch))
			return false;
	}
	return true;
}

static bool header_value_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
			return false;
	return true;
}

static bool bytes_eq(const struct laurel_value *v, const char *name)
{
	return v->type == LAUREL_BYTES && v->u.s.len == strlen(name) &&
	       strncasecmp(v->u.s.ptr, name, v->u.s.len) == 0;
}

/* Writes the parts to the client in order: straight to the socket when nothing waits before them
 * (no buffer copy, and no write-readiness round through epoll), the rest through the
 * bufferevent, which writes it once the socket is writable and reports errors. */
static int conn_output(struct conn *c, struct iovec *iov, int n)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	if (evbuffer_get_length(out) == 0) {
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
		ssize_t sent = sendmsg(bufferevent_getfd(c->bev), &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		for (int i = 0; i < n && sent > 0; i++) {
			size_t k = (size_t)sent < iov[i].iov_len ? (size_t)sent : iov[i].iov_len;
			iov[i].iov_base = (char *)iov[i].iov_base + k;
			iov[i].iov_len -= k;
			sent -= (ssize_t)k;
		}
	}
	int rc = 0;
	for (int i = 0; i < n; i++)
		if (iov[i].iov_len && evbuffer_add(out, iov[i].iov_base, iov[i].iov_len) < 0)
			rc = -1;
	return rc;
}

/* Starts the response from the first reply message: its head is appended to head. Returns 0,
 * or -1 when the reply is unusable (answered with 500). */
static int response_start(struct conn *c, const struct laurel_msg *m, bool more, struct buf *head_out)
{
	struct request *r = c->req;
	int64_t status;
	if (laurel_msg_get_int(m, "status", &status) < 0 || status < 100 || status > 999) {
		log_limited(LOG_WARN, "conn %llu: reply on %s has no valid status; answering 500",
			 (unsigned long long)c->id, r->reply_channel);
		respond_error(c, 500, "The application sent an invalid response.");
		return -1;
	}
	const struct laurel_value *hv = laurel_msg_get(m, "headers");
	struct buf head;
	buf_init(&head);
	const char *reason = http1_reason((int)status);
	buf_printf(&head, "HTTP/1.1 %d %s\r\n", (int)status, reason[0] ? reason : "Unknown");
	bool has_length = false, has_date = false, has_server = false;
	if (hv && hv->type == LAUREL_LIST) {
		for (size_t i = 0; i < hv->u.list.len; i++) {
			const struct laurel_value *pair = &hv->u.list.items[i];
			if (pair->type != LAUREL_LIST || pair->u.list.len != 2)
				continue;
			const struct laurel_value *n = &pair->u.list.items[0];
			const struct laurel_value *v = &pair->u.list.items[1];
			if ((n->type != LAUREL_BYTES && n->type != LAUREL_TEXT) ||
			    (v->type != LAUREL_BYTES && v->type != LAUREL_TEXT) ||
			    !header_token(n->u.s.ptr, n->u.s.len) ||
			    !header_value_ok(v->u.s.ptr, v->u.s.len)) {
				log_limited(LOG_WARN, "conn %llu: dropped a malformed response header from %s",
					 (unsigned long long)c->id, r->reply_channel);
				continue;
			}
			struct laurel_value nb = *n;
			nb.type = LAUREL_BYTES;
			if (bytes_eq(&nb, "transfer-encoding"))
				continue; /* laurel frames the body itself */
			if (bytes_eq(&nb, "content-length"))
				has_length = true;
			if (bytes_eq(&nb, "date"))
				has_date = true;
			if (bytes_eq(&nb, "server"))
				has_server = true;
			if (bytes_eq(&nb, "connection")) {
				if (v->u.s.len == 5 && strncasecmp(v->u.s.ptr, "close", 5) == 0)
					r->keep_alive = false;
				continue;
			}
			buf_append(&head, n->u.s.ptr, n->u.s.len);
			buf_append(&head, ": ", 2);
			buf_append(&head, v->u.s.ptr, v->u.s.len);
			buf_append(&head, "\r\n", 2);
		}
	}
	if (!has_date)
		buf_printf(&head, "Date: %s\r\n", http_date(c->srv));
	if (!has_server)
		buf_printf(&head, "Server: laurel\r\n");
	r->no_body = r->head || status < 200 || status == 204 || status == 304;
	if (!has_length && !r->no_body) {
		if (!more) {
			size_t len = 0;
			laurel_msg_get_bytes(m, "content", &len);
			buf_printf(&head, "Content-Length: %zu\r\n", len);
		} else if (r->version_minor >= 1) {
			r->chunked = true;
			buf_printf(&head, "Transfer-Encoding: chunked\r\n");
		} else {
			r->keep_alive = false; /* HTTP/1.0: the end of the body is the close */
		}
	}
	if (!r->keep_alive)
		buf_printf(&head, "Connection: close\r\n");
	else if (r->version_minor == 0)
		buf_printf(&head, "Connection: keep-alive\r\n");
	buf_append(&head, "\r\n", 2);
	buf_append(head_out, head.data, head.len);
	buf_fini(&head);
	r->started = true;
	r->status = (int)status;
	return 0;
}

/* Writes what head holds (the response head, if this reply started the response) and a piece of
 * the body, framed as the response needs, in one system call when the socket takes it all. */
static void response_body(struct conn *c, struct buf *head, const void *data, size_t len)
{
	struct request *r = c->req;
	if (r->no_body)
		len = 0;
	if (len && r->chunked)
		buf_printf(head, "%zx\r\n", len);
	struct iovec iov[3] = {{head->data, head->len},
			       {(void *)data, len},
			       {(char *)"\r\n", len && r->chunked ? 2 : 0}};
	if (head->len + len)
		conn_output(c, iov, 3);
	r->bytes += len;
}

/* --- WebSocket ------------------------------------------------------------------------------ */

#define WS_CLOSE_WAIT_MS 5000 /* after our close frame, how long the client has to answer */

static int64_t ms_now(void)
{
	return util_now_ms();
}

/* The code websocket.disconnect reports: what the client sent, else what we sent, else 1006. */
static int ws_code(const struct conn *c)
{
	if (!c->ws)
		return 1006;
	if (ws_close_received(c->ws))
		return ws_close_code_received(c->ws);
	if (ws_close_sent(c->ws))
		return ws_close_code_sent(c->ws);
	return 1006;
}

static void ws_disconnect(struct conn *c, int code)
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
	access_log(c, "WSDISCONNECT", r->path, 0, 0);
}

#define WS_RECEIVE_BACKLOG 16 /* websocket.receive in flight before reading from the client pauses */

static void on_receive_sent(int status, void *arg)
{
	struct send_ctx *ctx = arg;
	struct conn *c = live(ctx->srv, id_arg(ctx->id));
	free(ctx);
	if (!c)
		return;
	/* Inbound backpressure: a client that sends faster than the layer takes is not read. */
	if (--c->receives_in_flight < WS_RECEIVE_BACKLOG && c->mode == MODE_WS_OPEN && !c->closing)
		pause_reading(c, false);
	if (status == 0 || status == -ECANCELED || !c->ws)
		return;
	log_limited(LOG_WARN, "conn %llu: websocket.receive %s; closing %s", (unsigned long long)c->id,
		 status == LAUREL_FULL ? "is full" : "could not be sent", c->req->reply_channel);
	ws_close(c->ws, status == LAUREL_FULL ? 1013 : 1011);
	c->close_sent_ms = ms_now();
	ws_arm(c);
}

static void ws_on_message(void *owner, bool text, const uint8_t *data, size_t len)
{
	struct conn *c = owner;
	struct request *r = c->req;
	if (ws_close_sent(c->ws))
		return; /* RFC 6455 §5.5.1: after our close, data from the client is discarded */
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_text(m, "reply_channel", r->reply_channel);
	laurel_msg_set_textn(m, "path", r->path ? r->path : "", r->pathlen);
	laurel_msg_set_int(m, "order", ++c->order);
	if (text)
		laurel_msg_set_textn(m, "text", (const char *)data, len);
	else
		laurel_msg_set_bytes(m, "bytes", data, len);
	int rc = send_on(c, "websocket.receive", m, on_receive_sent);
	laurel_msg_free(m);
	if (rc == 0 && ++c->receives_in_flight >= WS_RECEIVE_BACKLOG)
		pause_reading(c, true);
	if (rc < 0) {
		log_limited(LOG_WARN, "conn %llu: websocket.receive not sent: %s", (unsigned long long)c->id,
			 laurel_layer_error(NULL));
		ws_close(c->ws, rc == -EMSGSIZE ? 1009 : 1011);
		c->close_sent_ms = ms_now();
		ws_arm(c);
	}
}

static void ws_on_activity(void *owner)
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
static int ws_write(void *owner, const void *data, size_t len)
{
	struct iovec iov = {(void *)data, len};
	return conn_output(owner, &iov, 1);
}

static const struct ws_callbacks ws_callbacks = {
	.on_message = ws_on_message,
	.on_activity = ws_on_activity,
	.write = ws_write,
};

/* Before writing to a WebSocket: a client that has not read what it was already sent, beyond
 * --ws-max-output, is closed instead of being buffered for. Returns false if it was closed. */
static bool ws_check_output(struct conn *c)
{
	size_t n = evbuffer_get_length(bufferevent_get_output(c->bev));
	if (c->closing)
		return false;
	if (n <= c->srv->cfg->ws_max_output)
		return true;
	log_limited(LOG_WARN, "conn %llu: WebSocket client reads too slowly (%zu bytes waiting); closing (1013)",
		 (unsigned long long)c->id, n);
	ws_close(c->ws, 1013);
	c->close_sent_ms = ms_now();
	c->closing = true;
	ws_arm(c);
	return false;
}

/* The next time the keep-alive timer must look at the connection. */
static void ws_arm(struct conn *c)
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

static void ws_tick(struct conn *c)
{
	const struct server_config *cfg = c->srv->cfg;
	int64_t now = ms_now();
	if (c->close_sent_ms) {
		if (now - c->close_sent_ms >= WS_CLOSE_WAIT_MS) {
			log_debug("conn %llu: no close answer; dropping", (unsigned long long)c->id);
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
			log_info("conn %llu: no pong within %d s; closing", (unsigned long long)c->id,
				 cfg->ping_timeout);
			conn_close(c);
			return;
		}
	} else if (now - c->last_recv_ms >= (int64_t)cfg->ping_interval * 1000) {
		ws_ping(c->ws);
		c->ping_sent_ms = now;
	}
	ws_arm(c);
}

static void ws_accept_now(struct conn *c)
{
	struct request *r = c->req;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	evbuffer_add_printf(out,
			    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
			    "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s%sServer: laurel\r\n\r\n",
			    c->ws_accept, c->ws_protocol ? "Sec-WebSocket-Protocol: " : "",
			    c->ws_protocol ? c->ws_protocol : "", c->ws_protocol ? "\r\n" : "");
	c->mode = MODE_WS_OPEN;
	c->ws = ws_new(c->srv->cfg->ws_max_message, &ws_callbacks, c);
	/* The HTTP parser has no more work on this connection: free its memory (an idle WebSocket
	 * should cost as little as possible). */
	http1_free(c->parser);
	c->parser = NULL;
	c->opened_ms = c->last_recv_ms = ms_now();
	r->started = true;
	r->status = 101;
	access_log(c, "WSCONNECT", r->path, 0, 0);
	evtimer_del(c->timer);
	ws_arm(c);
	pause_reading(c, false);
	/* Frames the client sent early wait in the input buffer: read them from the loop. */
	if (evbuffer_get_length(bufferevent_get_input(c->bev)))
		bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

static void ws_reject(struct conn *c, const char *why)
{
	access_log(c, "WSREJECT", c->req->path, 0, 0);
	log_info("conn %llu: WebSocket %s rejected: %s", (unsigned long long)c->id, c->req->path,
		 why);
	respond_error(c, 403, "WebSocket connection rejected.");
}

static void on_connect_sent(int status, void *arg)
{
	struct send_ctx *ctx = arg;
	struct conn *c = live(ctx->srv, id_arg(ctx->id));
	free(ctx);
	if (!c || status == 0 || status == -ECANCELED || c->mode != MODE_WS_CONNECTING)
		return;
	c->req->sent = false; /* nothing reached the application */
	log_limited(LOG_WARN, "conn %llu: websocket.connect %s", (unsigned long long)c->id,
		 status == LAUREL_FULL ? "is full" : "could not be sent");
	respond_error(c, 503, status == LAUREL_FULL ? "Connection queue full."
						    : "Service unavailable: the channel layer is unreachable.");
}

static void ws_connect(struct conn *c)
{
	struct request *r = c->req;
	c->mode = MODE_WS_CONNECTING;
	pause_reading(c, true);
	access_log(c, "WSCONNECTING", r->path, 0, 0);
	if (!layer_async_listening(c->srv->layer, c->srv->prefix)) {
		log_debug("conn %llu: the reply channel %s is unreachable; answering 503",
			 (unsigned long long)c->id, c->srv->prefix);
		respond_error(c, 503, "Service unavailable: the channel layer is unreachable.");
		return;
	}
	int rc = send_on(c, "websocket.connect", r->msg, on_connect_sent);
	laurel_msg_free(r->msg);
	r->msg = NULL;
	if (rc < 0) {
		respond_error(c, 503, "Service unavailable: the channel layer is unreachable.");
		return;
	}
	r->sent = true;
	set_timer(c, c->srv->cfg->websocket_connect_timeout);
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

static void ws_reply(struct conn *c, const struct laurel_msg *m)
{
	const struct laurel_value *root = laurel_msg_croot(m);
	const struct laurel_value *text = NULL, *bytes = NULL, *close = NULL, *accept = NULL;
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
			ws_reject(c, "the application refused it");
			return;
		}
		if (!yes && !text && !bytes)
			return;
		ws_accept_now(c);
	}
	if (c->mode != MODE_WS_OPEN || c->closing)
		return;
	if ((text || bytes) && !ws_check_output(c))
		return;
	if (text)
		ws_send(c->ws, true, text->u.s.ptr, text->u.s.len);
	else if (bytes)
		ws_send(c->ws, false, bytes->u.s.ptr, bytes->u.s.len);
	if (code && !ws_close_sent(c->ws)) {
		ws_close(c->ws, code);
		c->close_sent_ms = ms_now();
		ws_arm(c);
	}
}

/* --- Replies --------------------------------------------------------------------------------- */

static void on_reply_for(struct server *s, const char *channel, const struct laurel_msg *m)
{
	uint64_t id = local_id(channel);
	struct conn *c = id ? live(s, id_arg(id)) : NULL;
	if (!c) {
		log_debug("reply for %s dropped: its connection is gone", channel);
		return;
	}
	struct request *r = c->req;
	if (r->websocket) {
		ws_reply(c, m);
		return;
	}
	bool more = false;
	laurel_msg_get_bool(m, "more_content", &more);
	struct buf head;
	buf_init(&head);
	if (!r->started && response_start(c, m, more, &head) < 0) {
		buf_fini(&head);
		return;
	}
	size_t len = 0;
	const void *content = laurel_msg_get_bytes(m, "content", &len);
	response_body(c, &head, content, content ? len : 0);
	buf_fini(&head);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) > s->cfg->max_output) {
		log_limited(LOG_WARN, "conn %llu: client reads too slowly (%zu bytes waiting); closing",
			 (unsigned long long)c->id, evbuffer_get_length(bufferevent_get_output(c->bev)));
		r->keep_alive = false;
		request_finish(c);
		return;
	}
	if (!more)
		request_finish(c);
}

/* The local request id in a reply channel name, or 0. */
static uint64_t local_id(const char *channel)
{
	const char *local = strchr(channel, '!');
	unsigned long long id = 0;
	if (!local || local[1] != 'q' || sscanf(local + 2, "%llu", &id) != 1)
		return 0;
	return id;
}

static void on_reply(struct laurel_received *rcv, void *arg)
{
	struct server *s = arg;
	if (!rcv->nrecipients) {
		on_reply_for(s, rcv->channel, rcv->msg);
		return;
	}
	/* A group message for many local connections: a plain text or bytes message is framed
	 * once and the same bytes go to every open WebSocket among them. */
	const struct laurel_value *root = laurel_msg_croot(rcv->msg);
	const struct laurel_value *text = laurel_msg_get(rcv->msg, "text");
	const struct laurel_value *bytes = laurel_msg_get(rcv->msg, "bytes");
	bool simple = root->u.map.len == 1 && ((text && text->type == LAUREL_TEXT) ||
					       (bytes && bytes->type == LAUREL_BYTES));
	struct buf frame;
	buf_init(&frame);
	if (simple)
		ws_frame(&frame, text != NULL, text ? text->u.s.ptr : bytes->u.s.ptr,
			 text ? text->u.s.len : bytes->u.s.len);
	for (size_t i = 0; i < rcv->nrecipients; i++) {
		struct conn *c = live(s, id_arg(local_id(rcv->recipients[i])));
		if (simple && c && c->mode == MODE_WS_OPEN && !c->closing) {
			if (ws_check_output(c))
				ws_send_framed(c->ws, frame.data, frame.len);
		} else {
			on_reply_for(s, rcv->recipients[i], rcv->msg);
		}
	}
	buf_fini(&frame);
}

/* The response is complete (or abandoned): log, tell the application, and either wait for the
 * next request on the connection or close it. */
static void request_finish(struct conn *c)
{
	struct request *r = c->req;
	struct server *s = c->srv;
	if (r->finished)
		return;
	r->finished = true;
	if (r->chunked)
		conn_output(c, (struct iovec[]){{(char *)"0\r\n\r\n", 5}}, 1);
	if (r->websocket) {
		ws_disconnect(c, ws_code(c));
	} else {
		if (r->status)
			access_log(c, r->method, r->target, r->status, r->bytes);
		if (!r->body_done)
			send_body_closed(c);
		send_disconnect(c);
	}
	slot_del(s, r->id);
	/* A response that ends before its request body was read ends the connection too. */
	bool keep = r->keep_alive && !s->draining && !c->closing && c->parser && http1_done(c->parser);
	laurel_msg_free(r->msg);
	buf_fini(&r->body);
	free(r->target);
	free(r->path);
	free(r->if_modified_since);
	free(r);
	c->req = NULL;
	evtimer_del(c->timer);
	if (!keep) {
		c->closing = true;
		pause_reading(c, true);
		if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
			conn_close(c);
		return;
	}
	http1_next(c->parser);
	set_timer(c, s->cfg->header_timeout);
	pause_reading(c, false);
	/* Pipelined requests may already be waiting in the input buffer: read them from the loop,
	 * not from inside whatever finished this response. */
	if (evbuffer_get_length(bufferevent_get_input(c->bev)))
		bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

/* --- Connections ----------------------------------------------------------------------------- */

static void on_flushed(int status, void *arg)
{
	struct server *s = arg;
	event_base_loopexit(s->base, NULL);
}

static void outbox_empty(void *arg)
{
	struct server *s = arg;
	layer_async_barrier(s->layer, on_flushed, s);
}

/* The last connection is gone: leave once the messages about them (disconnects) are out, all
 * accepted by the layer — or at the drain timeout. */
static void drained(struct server *s)
{
	if (s->drained)
		return;
	s->drained = true;
	outbox_on_empty(s->outbox, outbox_empty, s);
}

static void conn_close(struct conn *c)
{
	struct server *s = c->srv;
	if (c->req) {
		struct request *r = c->req;
		if (!r->finished && r->websocket) {
			r->finished = true;
			ws_disconnect(c, ws_code(c));
			slot_del(s, r->id);
		} else if (!r->finished) {
			/* The client went away: the application hears of it. */
			if (!r->body_done)
				send_body_closed(c);
			r->keep_alive = false;
			r->finished = true;
			send_disconnect(c);
			slot_del(s, r->id);
		}
		laurel_msg_free(r->msg);
		buf_fini(&r->body);
		free(r->target);
		free(r->path);
		free(r->if_modified_since);
		free(r);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nconns--;
	event_free(c->timer);
	ws_free(c->ws);
	free(c->ws_protocol);
	http1_free(c->parser);
	bufferevent_free(c->bev);
	free(c);
	if (s->draining && s->nconns == 0)
		drained(s);
}

static void ws_read(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	int rc = 0;
	while (rc == 0 && evbuffer_get_length(in) && !ws_finished(c->ws)) {
		struct evbuffer_iovec v[4];
		int n = evbuffer_peek(in, -1, NULL, v, 4);
		size_t total = 0;
		for (int i = 0; i < n && rc == 0; i++) {
			rc = ws_feed(c->ws, v[i].iov_base, v[i].iov_len);
			total += v[i].iov_len;
		}
		evbuffer_drain(in, total);
	}
	if (rc < 0 || ws_finished(c->ws)) {
		/* The close handshake is done, or the client broke the protocol (wslay has
		 * queued the close frame with its code): close once it is written. */
		c->closing = true;
		pause_reading(c, true);
		if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
			conn_close(c);
		return;
	}
	if (ws_close_sent(c->ws) && !c->close_sent_ms) {
		c->close_sent_ms = ms_now();
		ws_arm(c);
	}
}

static void conn_read(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	if (c->mode == MODE_WS_OPEN) {
		ws_read(c);
		return;
	}
	if (c->mode == MODE_WS_CONNECTING)
		return; /* frames wait until the application accepts */
	while (!c->closing && !http1_done(c->parser) && evbuffer_get_length(in)) {
		struct evbuffer_iovec v[4];
		int n = evbuffer_peek(in, -1, NULL, v, 4);
		size_t total = 0;
		bool stop = false;
		for (int i = 0; i < n && !stop; i++) {
			int status = 0;
			ssize_t k = http1_feed(c->parser, v[i].iov_base, v[i].iov_len, &status);
			if (k < 0) {
				log_info("conn %llu: bad request (%d): %s", (unsigned long long)c->id,
					 status, http1_error(c->parser));
				evbuffer_drain(in, evbuffer_get_length(in));
				if (c->req && c->req->started) {
					c->req->keep_alive = false;
					c->closing = true;
					request_finish(c);
					return;
				}
				respond_error(c, status, NULL);
				return;
			}
			total += (size_t)k;
			if ((size_t)k < v[i].iov_len || http1_done(c->parser))
				stop = true;
			if (c->closing || (c->req && c->req->finished))
				break;
		}
		if (c->closing)
			return;
		evbuffer_drain(in, total);
		if (c->req && c->req->local && !c->req->finished) {
			request_finish(c); /* may read the next pipelined request */
			return;
		}
		if (stop)
			break;
	}
}

static void conn_write(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	if (c->closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		conn_close(c);
}

static void conn_event(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		if (c->req && !c->req->finished)
			log_debug("conn %llu: client went away during %s %s",
				  (unsigned long long)c->id, c->req->method, c->req->target);
		conn_close(c);
	}
}

static void conn_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct request *r = c->req;
	if (c->mode == MODE_WS_OPEN) {
		ws_tick(c);
		return;
	}
	if (c->mode == MODE_WS_CONNECTING) {
		char why[64];
		snprintf(why, sizeof(why), "no answer within %d s",
			 c->srv->cfg->websocket_connect_timeout);
		ws_reject(c, why);
		return;
	}
	if (!r) {
		/* Idle, or a head that never completed (slow client). */
		if (http1_busy(c->parser)) {
			log_info("conn %llu: request head not received in %d s; closing",
				 (unsigned long long)c->id, c->srv->cfg->header_timeout);
			respond_error(c, 408, NULL);
		} else {
			conn_close(c);
		}
		return;
	}
	if (r->started) {
		log_limited(LOG_WARN, "conn %llu: response to %s %s not finished within %d s; closing",
			 (unsigned long long)c->id, r->method, r->target, c->srv->cfg->http_timeout);
		r->keep_alive = false;
		c->closing = true;
		request_finish(c);
		return;
	}
	log_limited(LOG_WARN, "conn %llu: no response to %s %s within %d s", (unsigned long long)c->id,
		 r->method, r->target, c->srv->cfg->http_timeout);
	respond_error(c, 503, "Worker server failed to respond within time limit.");
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
		      void *arg)
{
	struct server *s = arg;
	if (s->draining || s->nconns >= (size_t)s->cfg->max_connections) {
		static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
					   "Connection: close\r\n\r\n";
		if (write(fd, busy, sizeof(busy) - 1) < 0)
			log_debug("could not refuse a connection politely");
		evutil_closesocket(fd);
		log_debug("connection refused: %zu open (limit %d)", s->nconns,
			  s->cfg->max_connections);
		return;
	}
	struct conn *c = xcalloc(1, sizeof(*c));
	c->srv = s;
	c->id = ++s->next_conn;
	if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
		struct sockaddr_storage local;
		socklen_t len = sizeof(local);
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->has_addrs = true;
		if (sa->sa_family == AF_INET) {
			struct sockaddr_in *in = (struct sockaddr_in *)sa;
			inet_ntop(AF_INET, &in->sin_addr, c->client_host, sizeof(c->client_host));
			c->client_port = ntohs(in->sin_port);
		} else {
			struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
			inet_ntop(AF_INET6, &in6->sin6_addr, c->client_host, sizeof(c->client_host));
			c->client_port = ntohs(in6->sin6_port);
		}
		if (getsockname(fd, (struct sockaddr *)&local, &len) == 0) {
			if (local.ss_family == AF_INET) {
				struct sockaddr_in *in = (struct sockaddr_in *)&local;
				inet_ntop(AF_INET, &in->sin_addr, c->server_host,
					  sizeof(c->server_host));
				c->server_port = ntohs(in->sin_port);
			} else {
				struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&local;
				inet_ntop(AF_INET6, &in6->sin6_addr, c->server_host,
					  sizeof(c->server_host));
				c->server_port = ntohs(in6->sin6_port);
			}
		}
	}
	(void)salen;
	c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
	c->parser = http1_new(&s->limits, &parser_callbacks, c);
	c->timer = evtimer_new(s->base, conn_timeout, c);
	bufferevent_setcb(c->bev, conn_read, conn_write, conn_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->nconns++;
	set_timer(c, s->cfg->header_timeout);
}

/* --- Listeners ------------------------------------------------------------------------------- */

static int listen_tcp(struct server *s, char *err, size_t errlen)
{
	const struct server_config *cfg = s->cfg;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	char port[16];
	snprintf(port, sizeof(port), "%d", cfg->port);
	int rc = getaddrinfo(cfg->bind, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve --bind %s: %s", cfg->bind, gai_strerror(rc));
		return -1;
	}
	unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC;
	if (cfg->reuse_port)
		flags |= LEV_OPT_REUSEABLE_PORT;
	struct evconnlistener *l = evconnlistener_new_bind(s->base, on_accept, s, flags, 1024,
							   res->ai_addr, (int)res->ai_addrlen);
	int e = errno;
	freeaddrinfo(res);
	if (!l) {
		snprintf(err, errlen, "cannot listen on %s port %d: %s", cfg->bind, cfg->port,
			 strerror(e));
		return -1;
	}
	s->listeners[s->nlisteners++] = l;
	return 0;
}

static int listen_unix(struct server *s, char *err, size_t errlen)
{
	const char *path = s->cfg->unix_socket;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "unix socket path too long: %s", path);
		return -1;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	struct stat st;
	if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path); /* a stale socket from an earlier run */
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    chmod(path, (mode_t)s->cfg->unix_socket_mode) < 0 || listen(fd, 1024) < 0) {
		snprintf(err, errlen, "cannot listen on unix socket %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	struct evconnlistener *l =
		evconnlistener_new(s->base, on_accept, s, LEV_OPT_CLOSE_ON_FREE, -1, fd);
	s->listeners[s->nlisteners++] = l;
	return 0;
}

static int listen_fd(struct server *s, char *err, size_t errlen)
{
	int fd = s->cfg->fd;
	int type = 0;
	socklen_t len = sizeof(type);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM) {
		snprintf(err, errlen, "--fd %d is not a stream socket", fd);
		return -1;
	}
	evutil_make_socket_nonblocking(fd);
	if (listen(fd, 1024) < 0) {
		snprintf(err, errlen, "--fd %d cannot listen: %s", fd, strerror(errno));
		return -1;
	}
	struct evconnlistener *l =
		evconnlistener_new(s->base, on_accept, s, LEV_OPT_CLOSE_ON_FREE, -1, fd);
	s->listeners[s->nlisteners++] = l;
	return 0;
}

/* --- Lifecycle ------------------------------------------------------------------------------- */

int server_new(struct server **out, struct event_base *base, const struct server_config *cfg,
	       char *err, size_t errlen)
{
	struct server *s = xcalloc(1, sizeof(*s));
	s->base = base;
	s->cfg = cfg;
	s->limits.max_uri = cfg->max_uri;
	s->limits.max_header_bytes = cfg->max_header_bytes;
	s->limits.max_headers = (size_t)cfg->max_headers;
	s->limits.max_body = cfg->max_body;
	util_rng_init(&s->rng);
	char letters[10];
	util_rng_letters(&s->rng, letters, sizeof(letters));
	snprintf(s->prefix, sizeof(s->prefix), "laurel.response.%.10s!", letters);

	if (cfg->access_log) {
		if (strcmp(cfg->access_log, "-") == 0) {
			s->access = stdout;
		} else {
			s->access = fopen(cfg->access_log, "a");
			if (!s->access) {
				snprintf(err, errlen, "cannot open access log %s: %s", cfg->access_log,
					 strerror(errno));
				goto fail;
			}
		}
	}
	struct laurel_layer_options lo = {
		.urls = (const char *const *)cfg->layers.v,
		.nurls = cfg->layers.n,
		.prefix = cfg->prefix,
		.expiry = cfg->expiry,
		.group_expiry = cfg->group_expiry,
		.capacity = cfg->capacity,
	};
	if (cfg->shared_layer)
		layer_async_new_shared(&s->layer, base, cfg->shared_layer);
	else if (layer_check_options(&lo, err, errlen) < 0 ||
		 layer_async_new(&s->layer, base, &lo, err, errlen) < 0)
		goto fail;
	if (cfg->tcp && listen_tcp(s, err, errlen) < 0)
		goto fail;
	if (cfg->unix_socket && listen_unix(s, err, errlen) < 0)
		goto fail;
	if (cfg->fd >= 0 && listen_fd(s, err, errlen) < 0)
		goto fail;
	if (s->nlisteners == 0) {
		snprintf(err, errlen, "nothing to listen on");
		goto fail;
	}
	outbox_new(&s->outbox, base, s->layer,
		   cfg->max_pending_disconnects > 0 ? (size_t)cfg->max_pending_disconnects
						    : CONTROL_OUTBOX_MAX);
	layer_async_on_reset(s->layer, on_layer_reset, s);
	layer_async_listen(s->layer, s->prefix, on_reply, s);
	layer_async_announce(s->layer, s->prefix, ANNOUNCE_TTL);
	*out = s;
	return 0;
fail:
	server_free(s);
	return -1;
}

/* A shard came back without its data: the groups these WebSockets joined and their sessions are
 * gone, so they would stay open but deaf. Close them with 1012 (service restart): clients
 * reconnect, and their connect consumers join the groups again. */
static void on_layer_reset(const char *desc, void *arg)
{
	struct server *s = arg;
	size_t n = 0;
	for (struct conn *c = s->conns; c; c = c->next) {
		if (c->mode != MODE_WS_OPEN || c->close_sent_ms || !c->ws)
			continue;
		ws_close(c->ws, 1012);
		c->close_sent_ms = ms_now();
		ws_arm(c);
		n++;
	}
	log_warn("closing %zu WebSockets with 1012 (service restart) after %s lost its data", n,
		 desc);
}

static void drain_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	if (s->nconns)
		log_warn("drain timeout: closing %zu connections still open", s->nconns);
	if (outbox_pending(s->outbox))
		log_warn("drain timeout: %zu disconnect messages not accepted by the channel layer",
			 outbox_pending(s->outbox));
	event_base_loopexit(s->base, NULL);
}

void server_drain(struct server *s)
{
	if (s->draining)
		return;
	s->draining = true;
	/* Closed, not paused: new connections are refused at once (or go to another process on
	 * the same port) instead of waiting in the kernel's queue. */
	for (size_t i = 0; i < s->nlisteners; i++)
		evconnlistener_free(s->listeners[i]);
	s->nlisteners = 0;
	if (s->cfg->unix_socket)
		unlink(s->cfg->unix_socket);
	log_info("draining: %zu connections open", s->nconns);
	layer_async_withdraw(s->layer, s->prefix, NULL, NULL);
	struct conn *c = s->conns, *next;
	for (; c; c = next) {
		next = c->next;
		if (!c->req) {
			conn_close(c);
		} else if (c->mode == MODE_WS_OPEN) {
			ws_close(c->ws, 1001);
			c->close_sent_ms = ms_now();
			ws_arm(c);
		} else if (c->mode == MODE_WS_CONNECTING) {
			respond_error(c, 503, "Server shutting down.");
		} else {
			c->req->keep_alive = false;
		}
	}
	s->drain_timer = evtimer_new(s->base, drain_timeout, s);
	struct timeval tv = {s->cfg->drain_timeout, 0};
	evtimer_add(s->drain_timer, &tv);
	if (s->nconns == 0)
		drained(s);
}

void server_free(struct server *s)
{
	if (!s)
		return;
	while (s->conns)
		conn_close(s->conns);
	for (size_t i = 0; i < s->nlisteners; i++)
		evconnlistener_free(s->listeners[i]);
	if (s->cfg->unix_socket && s->nlisteners)
		unlink(s->cfg->unix_socket);
	if (s->drain_timer)
		event_free(s->drain_timer);
	layer_async_free(s->layer);
	outbox_free(s->outbox); /* after the layer: its callbacks were cancelled */
	if (s->access && s->access != stdout)
		fclose(s->access);
	for (size_t i = 0; i < s->nslotbuckets; i++) {
		struct slot *sl = s->slots[i], *next;
		for (; sl; sl = next) {
			next = sl->next;
			free(sl);
		}
	}
	free(s->slots);
	free(s);
}

const char *server_channel(const struct server *s)
{
	return s->prefix;
}
