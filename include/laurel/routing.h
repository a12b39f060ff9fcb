/* laurel routing tables (SPEC §6): which consumer handles which message.
 *
 * A routing is a static array of routes ended by LAUREL_ROUTES_END:
 *
 *	static const struct laurel_route chat[] = {
 *		LAUREL_ROUTE_WS(&room_ws, LAUREL_FILTER("path", "^/(?P<room>[a-z0-9]+)/$")),
 *		LAUREL_ROUTES_END,
 *	};
 *	static const struct laurel_route routes[] = {
 *		LAUREL_ROUTE("http.request", hello, LAUREL_FILTER("path", "^/hello$")
 *			     LAUREL_FILTER("method", "^GET$")),
 *		LAUREL_INCLUDE(chat, LAUREL_FILTER("path", "^/chat")),
 *		LAUREL_ROUTES_END,
 *	};
 *	LAUREL_APP("chat", routes);
 *
 * Matching, as Channels 1 did it: a route matches a message when the message came on one of the
 * route's channels and every filter matches. A filter is a regular expression in Python's syntax
 * (PCRE2, with Unicode classes: \w, \d match as in Python 3) on one field of the message, matched
 * from the start of the value but not necessarily to its end (Python's re.match: write $ to
 * anchor the end). A text field is matched as is, a bytes field only when it is ASCII; a missing
 * field, or one of another type, does not match. Named groups (?P<name>...) become the consumer's
 * keyword arguments; groups without a name are refused when the routing is loaded (write (?:...)).
 *
 * An include matches its prefix filters the same way, then tries its routes with each filtered
 * field cut to what follows the part its prefix matched (the consumer still sees the whole
 * message). The first matching route wins, in table order, depth first. Below the application's
 * routes the worker adds Channels' defaults: websocket.connect accepts the connection,
 * websocket.receive and websocket.disconnect do nothing.
 *
 * Patterns, names and channels are checked when the routing is loaded; a bad one stops the
 * worker with a message naming the route.
 */
#ifndef LAUREL_ROUTING_H
#define LAUREL_ROUTING_H

#include <stddef.h>
#include <stdint.h>

#include "laurel/consumer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A filter: a regular expression on a message field. A table of them ends with {NULL, NULL}. */
struct laurel_filter {
	const char *field;
	const char *pattern;
};

enum laurel_route_kind {
	LAUREL_ROUTE_END = 0,	   /* ends a table */
	LAUREL_ROUTE_CONSUMER = 1, /* channels -> consumer */
	LAUREL_ROUTE_WEBSOCKET,	   /* websocket.connect/receive/disconnect -> ws */
	LAUREL_ROUTE_INCLUDE,	   /* filters are prefixes; then routes */
};

struct laurel_route {
	enum laurel_route_kind kind;
	const char *name;		     /* for messages: the consumer's name */
	const char *const *channels;	     /* CONSUMER: NULL-terminated, at least one */
	laurel_consumer_fn consumer;	     /* CONSUMER */
	const struct laurel_ws_consumer *ws; /* WEBSOCKET */
	const struct laurel_route *routes;   /* INCLUDE: ends with LAUREL_ROUTES_END */
	const struct laurel_filter *filters; /* may be NULL; else ends with {NULL, NULL} */
	unsigned flags;			     /* LAUREL_ORDERED */
};

/* Route flag: enforce_ordering for a CONSUMER route (docs/worker.md). The messages of one
 * connection (by reply channel) run in their "order" field, whichever worker takes them; an early
 * one waits until its predecessors ran. A message without an integer order fails. For a
 * LAUREL_ROUTE_WS route set strict_ordering in the struct laurel_ws_consumer instead. */
#define LAUREL_ORDERED 1u

/* The table-building macros. Filters are written one after the other, without commas:
 * LAUREL_ROUTE("http.request", fn, LAUREL_FILTER("path", "^/a") LAUREL_FILTER("method", "^GET")) */
#define LAUREL_FILTER(field, pattern) {(field), (pattern)},
#define LAUREL_FILTERS_(...) ((const struct laurel_filter[]){__VA_ARGS__{NULL, NULL}})
#define LAUREL_CHANNELS(...) ((const char *const[]){__VA_ARGS__, NULL})

#define LAUREL_ROUTE(channel, fn, ...)                                                             \
	{                                                                                          \
		.kind = LAUREL_ROUTE_CONSUMER, .name = #fn, .channels = LAUREL_CHANNELS(channel),  \
		.consumer = (fn), .filters = LAUREL_FILTERS_(__VA_ARGS__)                          \
	}
/* As LAUREL_ROUTE, with enforce_ordering. */
#define LAUREL_ROUTE_ORDERED(channel, fn, ...)                                                     \
	{                                                                                          \
		.kind = LAUREL_ROUTE_CONSUMER, .name = #fn, .channels = LAUREL_CHANNELS(channel),  \
		.consumer = (fn), .filters = LAUREL_FILTERS_(__VA_ARGS__), .flags = LAUREL_ORDERED \
	}
/* channels is a LAUREL_CHANNELS("a", "b") list. */
#define LAUREL_ROUTE_CHANNELS(channels_, fn, ...)                                                  \
	{                                                                                          \
		.kind = LAUREL_ROUTE_CONSUMER, .name = #fn, .channels = (channels_),               \
		.consumer = (fn), .filters = LAUREL_FILTERS_(__VA_ARGS__)                          \
	}
/* ws points to a struct laurel_ws_consumer. */
#define LAUREL_ROUTE_WS(ws_, ...)                                                                  \
	{                                                                                          \
		.kind = LAUREL_ROUTE_WEBSOCKET, .name = #ws_, .ws = (ws_),                         \
		.filters = LAUREL_FILTERS_(__VA_ARGS__)                                            \
	}
#define LAUREL_INCLUDE(routes_, ...)                                                               \
	{                                                                                          \
		.kind = LAUREL_ROUTE_INCLUDE, .name = #routes_, .routes = (routes_),               \
		.filters = LAUREL_FILTERS_(__VA_ARGS__)                                            \
	}
#define LAUREL_ROUTES_END                                                                          \
	{                                                                                          \
		.kind = LAUREL_ROUTE_END                                                           \
	}

/* --- Applications ----------------------------------------------------------------------------
 * A shared object loaded with laurel-worker --app exports one struct laurel_app named
 * "laurel_app"; LAUREL_APP defines it. The worker reads api_version first and refuses the
 * application unless it equals its own LAUREL_API_VERSION and the struct sizes agree. The same
 * routes can be linked into a program directly instead. */
struct laurel_app {
	uint32_t api_version; /* LAUREL_API_VERSION; always the first field */
	uint32_t route_size;  /* sizeof(struct laurel_route) */
	uint32_t ws_size;     /* sizeof(struct laurel_ws_consumer) */
	const char *name;
	const struct laurel_route *routes;
};

#define LAUREL_APP_SYMBOL "laurel_app"
#define LAUREL_APP(name_, routes_)                                                                 \
	__attribute__((visibility("default"))) const struct laurel_app laurel_app = {              \
		LAUREL_API_VERSION, sizeof(struct laurel_route),                                   \
		sizeof(struct laurel_ws_consumer), (name_), (routes_)}

#ifdef __cplusplus
}
#endif

#endif
