/* laurel-interface's connections. struct server (owned by server.c) and struct conn / struct
 * request are shared by the modules of a connection: conn.c (accept, read, write, timer, close),
 * request.c (an HTTP request's life), asgi_ws.c (the WebSocket glue) and reply.c (the reply
 * path). Everything runs on the server's one event loop. */
#ifndef LAUREL_INTERFACE_CONN_H
#define LAUREL_INTERFACE_CONN_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/uio.h>
#include <time.h>

#include <event2/util.h>

#include "common/buf.h"
#include "common/metrics.h"
#include "common/util.h"
#include "interface/http1.h"
#include "interface/server.h"
#include "interface/websocket.h"
#include "laurel/layer.h"

struct bufferevent;
struct evconnlistener;
struct layer_async;
struct outbox;
struct sockaddr;
struct ws;
struct ws_receive;
struct ws_connecting;

struct request {
	uint64_t id;
	char reply_channel[LAUREL_NAME_MAX + 1];
	struct laurel_msg *msg; /* the http.request until it is sent; websocket.connect until taken */
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
	bool sent;	  /* http.request handed to the layer */
	bool body_done;	  /* the last body chunk was sent */
	bool body_closed; /* {closed: true} was sent on the body channel */
	bool disconnect_sent; /* http.disconnect went (at the client's FIN, or at the end) */
	bool websocket;	  /* an upgrade: the request lives as long as the WebSocket */
	bool local;	  /* answered by the interface itself (static files) */
	char *if_modified_since;
	int64_t start_us; /* monotonic */
	/* response */
	bool started;
	bool chunked;
	bool no_body;
	int64_t length; /* the application's Content-Length, -1 if none */
	bool overrun;	/* the body went past it: the rest is dropped */
	bool finished;
	int status;
	uint64_t bytes;
};

struct recovery;

struct conn {
	struct server *srv;
	uint64_t id;
	struct bufferevent *bev;
	struct http1_parser *parser;
	struct request *req;
	struct event *timer;
	char client_host[INET6_ADDRSTRLEN];
	/* Flags, as bits in the padding after client_host (an idle socket's memory counts). */
	bool has_addrs : 1;
	bool closing : 1; /* close once the output is written */
	/* The client sent FIN (half-closed): its complete requests are still answered, in order,
	 * then the connection closes. Reading is never resumed. */
	bool read_eof : 1;
	/* Input may still be on its way when we close (an answer before the request was read
	 * whole, a bad request, unparsed pipelined requests): after the output, shut down the write
	 * side and read and drop the input until the client closes, LINGER_IDLE_MS passes with
	 * nothing, or LINGER_TIME_MS in all (nginx's lingering close). A plain close would reset
	 * the connection, and the client could lose the answer. */
	bool linger : 1;
	bool lingering : 1;
	/* Inside http1_feed: a request finished by a parser callback (a synchronous failure
	 * answered at once) is freed only once the parser has returned (finish_pending). */
	bool parsing : 1;
	bool finish_pending : 1;
	bool reading_paused : 1;
	bool disconnected : 1;	    /* websocket.disconnect sent */
	bool closed_for_output : 1; /* closed by --max-output-total (websocket.disconnect: 1013) */
	bool output_tracked : 1;    /* its output counts in the server's total (conn_track_output) */
	/* permessage-deflate's window (9..15) agreed in the handshake, 0 for none (deflate.h) */
	unsigned ws_deflate : 4;
	bool ws_deflate_named : 1; /* the offer named server_max_window_bits: so does the answer */
	int client_port;
	char server_host[INET6_ADDRSTRLEN];
	int server_port;
	/* WebSocket */
	enum { MODE_HTTP, MODE_WS_CONNECTING, MODE_WS_OPEN } mode;
	int receives_in_flight; /* websocket.receive sends not yet answered by the layer */
	struct ws *ws;
	char ws_accept[32];
	char *ws_protocol;
	int64_t order;
	int64_t opened_ms, last_recv_ms, ping_sent_ms, close_sent_ms;
	int64_t linger_until; /* see linger */
	struct recovery *recovery; /* group recoveries under way (recovery.h), usually NULL */
	struct conn *prev, *next;
};

/* What the interface counts for its metrics (interface/metrics.c), on its one thread. */
#define IFACE_CLOSE_CODES 10 /* 1000, 1001, 1002, 1006, 1008, 1009, 1011, 1012 or 1013, other */
struct iface_counters {
	uint64_t accepted, closed;
	uint64_t responses[6]; /* by status class: [1] 1xx ... [5] 5xx, [0] anything else */
	struct metrics_histogram latency; /* request received -> response started */
	uint64_t ws_in, ws_in_bytes, ws_out, ws_out_bytes;
	/* permessage-deflate: handshakes that agreed on it; messages compressed (once per multicast
	 * and window size); messages that went or came compressed; data payload bytes as on the
	 * wire (after compression; ws_*_bytes count them inflated) */
	uint64_t ws_deflate_agreed, ws_compressions;
	uint64_t ws_compressed_in, ws_compressed_out;
	uint64_t ws_wire_in_bytes, ws_wire_out_bytes;
	uint64_t ws_closes[IFACE_CLOSE_CODES];
	uint64_t handshakes_accepted, handshakes_refused;
	uint64_t slow_readers; /* closed for not reading (per connection, or the server's total) */
	size_t ws_open;
};
struct iface_metrics;

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
	/* websocket.receive refused as full, to send again (asgi_ws.c), oldest first */
	struct ws_receive *ws_retrying, *ws_retrying_tail;
	struct event *ws_retry_timer;
	/* websocket.connect refused (full, down), waiting to go again (asgi_ws.c) */
	struct ws_connecting *ws_connecting;
	/* Output buffered for slow clients, all connections (see --max-output-total). */
	size_t output_total, output_cap;
	struct event *output_check; /* closes the largest buffers once the total is above the cap */
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
	struct iface_counters counters; /* --metrics (interface/metrics.c); always counted */
	struct ws_config ws_cfg;	/* every WebSocket's settings (websocket.h) */
	/* The message on_message is about to get came compressed, this many bytes (0: plain;
	 * asgi_ws.c) */
	size_t ws_inflated_wire;
	struct iface_metrics *metrics;	/* the --metrics listener and the reply-path probe */
};

/* The Date header's value now (formatted once a second). */
const char *conn_date(struct server *s);
/* Writes an access log line (when --access-log is on): method and target, status (0: none yet,
 * as for WebSocket events) and body size (WebSocket events: the bytes sent, 0 printed as -). */
void conn_access_log(struct conn *c, const char *method, const char *target, int status,
		     uint64_t size);
/* (Re)arms the connection's one timer. */
void conn_set_timer(struct conn *c, int seconds);
/* Stops or resumes reading from the client (idempotent). */
void conn_pause_reading(struct conn *c, bool pause);
/* Writes a whole small error response (body NULL: the reason phrase) and closes the connection
 * after it; finishes the request in hand, if any. */
void conn_respond_error(struct conn *c, int status, const char *body);
/* Writes the parts in order: straight to the socket when nothing waits before them, the rest
 * through the bufferevent. Returns 0, or -1 if buffering failed. */
int conn_output(struct conn *c, struct iovec *iov, int n);
/* Ends the connection once the output is written (lingering if c->linger is set). */
void conn_end(struct conn *c);
/* True if the client may still be sending: a request not read whole, or unparsed input. */
bool conn_unread(struct conn *c);
/* Counts the connection's output in the server's total from now on (--max-output-total); called
 * when output starts waiting in the bufferevent. */
void conn_track_output(struct conn *c);
/* Closes and frees the connection now, telling the application (disconnects) first. */
void conn_close(struct conn *c);
/* The listeners' callback. */
void conn_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
		 void *arg);

/* Past --max-output-total: closes the connections holding the most output until the total is
 * back under nine tenths of it (the output_check event's callback). */
void conn_check_output_total(evutil_socket_t fd, short what, void *arg);

/* server.c: the last connection of a draining server is gone. */
void server_drained(struct server *s);

#endif
