/* laurel routing tables (docs/protocol.md §6): which consumer handles which message.
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
 * LAUREL_ROUTE("http.request", fn, LAUREL_FILTER("path", "^/a") LAUREL_FILTER("method", "^GET"))
 * A route without filters leaves the macro's variadic part empty, which C23 and GNU C allow (gcc
 * and clang in their default modes; -std=c11 -pedantic warns: use -std=gnu11 or -std=c2x). */
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
 * A shared object loaded with laurel-worker --app (or laurel runserver --app) exports one struct
 * laurel_app named "laurel_app"; LAUREL_APP defines it:
 *
 *	LAUREL_APP("chat", routes);
 *	LAUREL_APP("presence", routes, .init = presence_init, .fini = presence_fini,
 *		   .options = LAUREL_APP_OPTIONS({"db", "presence.db", "the SQLite file"}));
 *
 * The worker reads api_version first and refuses the application unless it equals its own
 * LAUREL_API_VERSION and the struct sizes agree. The same routes can be linked into a program
 * directly instead.
 *
 * Lifecycle. init, if set, runs once for each worker — each laurel-worker process, each thread of
 * laurel runserver --workers — before it takes its first message, and may set *data to anything
 * the application keeps for that worker (a database connection, a cache): its consumers reach it
 * with laurel_ctx_app_data. fini, if set, runs once with that pointer after the worker took its
 * last message (also when a later init of the same program failed). init and fini may run on
 * another thread than the worker's consumers, never at the same time as them. init returns 0, or
 * a negative errno with the reason recorded by laurel_app_error: laurel-worker then logs it and the
 * process exits (its supervisor starts it again after a backoff); laurel runserver stops.
 *
 * Options. An application declares its options (name, default, help); the operator sets them with
 * --app-option NAME=VALUE (repeatable) or the environment variable LAUREL_APP_OPTIONS (NAME=VALUE
 * pairs separated by spaces), and laurel-worker --app PATH --help lists them. A name the application does
 * not declare is refused before anything starts. init reads them with laurel_app_option. */
struct laurel_app_option {
	const char *name; /* letters, digits, '-', '_', '.' */
	const char *def;  /* the value when none is given; may be NULL */
	const char *help; /* one sentence, for --help */
};
/* LAUREL_APP_OPTIONS({"db", "chat.db", "the SQLite file"}, {"history", "50", "..."}) */
#define LAUREL_APP_OPTIONS(...)                                                                    \
	((const struct laurel_app_option[]){__VA_ARGS__, {NULL, NULL, NULL}})

/* What init gets: the options, and room for its error. Valid during the init call only. */
struct laurel_app_env;

/* The value of an option: the one given last, else its default (NULL if it has none, or if the
 * application did not declare the name). */
const char *laurel_app_option(const struct laurel_app_env *env, const char *name);
/* Which worker this is: 0, 1, ... among the threads of laurel runserver; the process's slot in a
 * laurel-worker pool (0 without one). For naming things, not for sharing them. */
int laurel_app_worker(const struct laurel_app_env *env);
/* Records why init failed, for the log line, and returns err (a negative errno):
 * return laurel_app_error(env, -EIO, "cannot open %s: %s", path, sqlite3_errstr(rc)); */
int laurel_app_error(struct laurel_app_env *env, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

typedef int (*laurel_app_init_fn)(struct laurel_app_env *env, void **data);
typedef void (*laurel_app_fini_fn)(void *data);

struct laurel_app {
	uint32_t api_version; /* LAUREL_API_VERSION; always the first field */
	uint32_t route_size;  /* sizeof(struct laurel_route) */
	uint32_t ws_size;     /* sizeof(struct laurel_ws_consumer) */
	uint32_t app_size;    /* sizeof(struct laurel_app) */
	const char *name;
	const struct laurel_route *routes;
	laurel_app_init_fn init;		   /* may be NULL */
	laurel_app_fini_fn fini;		   /* may be NULL */
	const struct laurel_app_option *options; /* may be NULL; else ends with {NULL, ...} */
};

#define LAUREL_APP_SYMBOL "laurel_app"
/* LAUREL_APP(name, routes[, .init = fn, .fini = fn, .options = LAUREL_APP_OPTIONS(...)]): the
 * routes and the optional fields go to the variadic part, so that LAUREL_APP(name, routes) is
 * valid ISO C. */
#define LAUREL_APP(name_, ...)                                                                     \
	__attribute__((visibility("default"))) const struct laurel_app laurel_app = {              \
		.api_version = LAUREL_API_VERSION,                                                 \
		.route_size = sizeof(struct laurel_route),                                         \
		.ws_size = sizeof(struct laurel_ws_consumer),                                      \
		.app_size = sizeof(struct laurel_app),                                             \
		.name = (name_),                                                                   \
		.routes = __VA_ARGS__}

#ifdef __cplusplus
}
#endif

#endif
