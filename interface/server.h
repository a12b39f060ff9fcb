/* laurel-interface's server: listeners, HTTP/1.1 connections, and the reply path, on one
 * libevent loop. Every request becomes an http.request message on the channel layer (SPEC §4);
 * replies arrive on this process's channel "laurel.response.<10 letters>!" through one blocking
 * reader, and connections are found by the local part of the reply channel, never by pointer. */
#ifndef LAUREL_INTERFACE_SERVER_H
#define LAUREL_INTERFACE_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "common/layer.h"
#include "common/options.h"
#include "interface/static.h"

struct event_base;
struct laurel_layer;

struct server_config {
	/* listeners */
	char *bind;
	int port;
	char *unix_socket;
	int unix_socket_mode;
	int fd;
	bool reuse_port;
	/* behaviour */
	int http_timeout;
	char *root_path;
	bool proxy_headers;
	char *access_log;
	int verbosity;
	bool no_http_disconnect;
	int max_connections;
	size_t max_uri;
	size_t max_header_bytes;
	int max_headers;
	size_t max_body;
	size_t body_chunk;
	int header_timeout;
	int drain_timeout;
	int max_pending_disconnects; /* 0: CONTROL_OUTBOX_MAX */
	size_t max_output;
	/* WebSocket */
	int websocket_timeout;
	int websocket_connect_timeout;
	int ping_interval;
	int ping_timeout;
	struct option_list ws_protocols;
	struct option_list allowed_origins;
	size_t ws_max_message;
	size_t ws_max_output;
	/* permessage-deflate: offered by the client, accepted unless off. The defaults (strings for
	 * the option tables), measured with bench-deflate (docs/interface.md). */
#define WS_COMPRESSION_THRESHOLD "128"
#define WS_COMPRESSION_LEVEL "3"
	bool ws_compression;
	size_t ws_compression_threshold; /* shorter messages go uncompressed */
	int ws_compression_level;	 /* zlib level 1..9 */
	size_t max_output_total; /* all connections' buffered output; 0: an eighth of the RAM */
	/* operations */
	char *metrics; /* --metrics ADDR, or NULL */
	/* More families for /metrics, written after the interface's (runserver: its worker
	 * threads'); NULL: none. */
	void (*metrics_more)(void *arg, struct buf *out);
	void *metrics_more_arg;
	/* channel layer (no --group-history: the interface sends to no group) */
	struct layer_flags layer;
	/* development (laurel runserver) */
	struct static_mount *statics;
	size_t nstatics;
	bool runserver_log; /* access lines in Channels' runserver style */
	struct laurel_layer *shared_layer; /* an in-memory layer shared with worker threads */
	/* set by main from which flags were given */
	bool tcp;
};

struct server;

/* --ws-compression's value: sets *on from "on" or "off". Returns false for anything else. */
bool server_parse_on_off(const char *value, bool *on);

/* Creates the server: opens the listeners, connects the channel layer (in the background), and
 * announces the process channel. Returns 0, or -1 with a sentence in err. */
int server_new(struct server **out, struct event_base *base, const struct server_config *cfg,
	       char *err, size_t errlen);
/* Stops accepting, lets requests in flight finish up to the drain timeout, then leaves the event
 * loop. Idempotent. */
void server_drain(struct server *s);
/* Closes everything. NULL is a no-op. */
void server_free(struct server *s);
/* The process channel prefix ("laurel.response.AbCdEfGhIj!"). */
const char *server_channel(const struct server *s);

#endif
