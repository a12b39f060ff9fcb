/* The laurel consumer API: the C functions an application's consumers call (docs/protocol.md §6).
 *
 * A consumer is a function that the worker calls with a context for one message:
 *
 *	static int hello(struct laurel_ctx *ctx)
 *	{
 *		static const struct laurel_header h[] = {{"Content-Type", "text/plain"}};
 *		return laurel_reply_http(ctx, 200, h, 1, "hello", 5, false);
 *	}
 *
 * It returns 0 when it is done, LAUREL_CONSUME_LATER to have the message handed to a consumer
 * again later, or a negative errno when it failed (the worker logs it, with the message from
 * laurel_ctx_error if the consumer set one).
 *
 * Held sends. Everything a consumer sends — replies, laurel_send, laurel_group_send — is held
 * in the context and sent only after the consumer returns 0, in the order it was sent (a full
 * channel is retried for up to 2 s, then that message is dropped with a warning). A consumer that
 * fails, or asks to be consumed later, sends nothing. Group membership changes, group queries and
 * session loads happen at once; a session change is saved with the held sends.
 *
 * Ownership. Everything a consumer gets from the context (the message, names, keyword arguments,
 * the session) is borrowed and valid until the consumer returns. Everything it passes in
 * (messages, strings, bodies) is copied before the call returns: the caller keeps ownership.
 *
 * Errors. Functions return 0 or a negative errno:
 *   -EINVAL   a bad channel or group name, or a bad argument (a status outside 100..999, a
 *             close code other than 1000 or 3000..4999); nothing was held
 *   -ENOENT   the message has no reply channel (for replies, groups and the session)
 *   -ENOTCONN, -EPROTO, -EMSGSIZE   from the channel layer (include/laurel/layer.h), for the
 *             calls that happen at once
 * None of them calls back.
 *
 * Concurrency. A worker — one laurel-worker process, or one thread of laurel runserver
 * --workers N — runs one consumer at a time, to its end. Many workers run at once: the processes
 * of a pool and of other hosts, and runserver's threads, which share one address space. So:
 *   - a context, and everything borrowed from it, is used by the thread running the consumer
 *     only, and only until the consumer returns;
 *   - the application data a worker's init hook made (laurel_ctx_app_data, routing.h) belongs to
 *     that worker: it is never used by two consumers at once, so it needs no lock;
 *   - anything else an application shares — its own static or global variables — is shared by
 *     runserver's threads and needs a lock or an atomic; between processes and hosts nothing is
 *     shared but the channel layer (groups, sessions) and what the application keeps itself
 *     (a database);
 *   - the messages of one connection may run in several workers at once, in any order, unless
 *     its route asks for enforce_ordering (LAUREL_ROUTE_ORDERED, strict_ordering).
 * Every function here may be called from any number of workers at once, each on its own context.
 *
 * The protocol these messages follow, their fields and the rules of the channel layer are
 * described in laurel's docs/protocol.md (installed with the documentation).
 */
#ifndef LAUREL_CONSUMER_H
#define LAUREL_CONSUMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "laurel/layer.h" /* LAUREL_NAME_MAX, laurel_strv_free, the layer errors */
#include "laurel/message.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The version of the application API: the routing table, the context functions and the structs
 * below. An application records the version it was built against (LAUREL_APP in routing.h) and
 * laurel-worker refuses one built against another version. */
#define LAUREL_API_VERSION 2

/* A consumer's return value asking for the message to be consumed again later (docs/protocol.md §6): it is
 * sent back to its channel with "__retries__" incremented, at most 10 times, then dropped. */
#define LAUREL_CONSUME_LATER 2

/* Most consume-later re-queues of one message. */
#define LAUREL_MAX_RETRIES 10

struct laurel_ctx;

typedef int (*laurel_consumer_fn)(struct laurel_ctx *ctx);

/* --- The message ----------------------------------------------------------------------------
 * The message as received (read it with the getters of message.h), the channel it came on (a
 * process channel by its full name), and its reply channel (NULL if it has none). */
const struct laurel_msg *laurel_ctx_message(const struct laurel_ctx *ctx);
const char *laurel_ctx_channel(const struct laurel_ctx *ctx);
const char *laurel_ctx_reply_channel(const struct laurel_ctx *ctx);

/* The keyword arguments: the named groups of the route's filters (and of the prefixes of the
 * includes it was found through), as a map from name to text, or to nil for a group that did not
 * take part in the match. laurel_ctx_kwarg returns one as a C string, or NULL if it is missing or
 * nil. */
const struct laurel_value *laurel_ctx_kwargs(const struct laurel_ctx *ctx);
const char *laurel_ctx_kwarg(const struct laurel_ctx *ctx, const char *name);

/* Records why the consumer failed, for the worker's log line, and returns err (a negative errno)
 * so that a consumer can write: return laurel_ctx_error(ctx, -EINVAL, "no room %s", room); */
int laurel_ctx_error(struct laurel_ctx *ctx, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The reason last recorded by laurel_ctx_error (or by a call that records one: laurel_ctx_json,
 * laurel_json_parse, laurel_ctx_group_name, ...), "" if none: to answer a client with it. */
const char *laurel_ctx_error_text(const struct laurel_ctx *ctx);

/* Writes a line to the worker's log, at a level of <syslog.h>'s meaning: LAUREL_LOG_ERROR,
 * LAUREL_LOG_WARN (shown by default), LAUREL_LOG_INFO (-v 1), LAUREL_LOG_DEBUG (-v 2). The line names
 * the channel and reply channel of the message. Errors and warnings with the same format are
 * written at most once every 10 s per worker, the next line saying how many were held back, so
 * that a database outage does not flood the log. */
#define LAUREL_LOG_ERROR 0
#define LAUREL_LOG_WARN 1
#define LAUREL_LOG_INFO 2
#define LAUREL_LOG_DEBUG 3
void laurel_ctx_log(const struct laurel_ctx *ctx, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The data the application's init hook made for this worker (struct laurel_app in routing.h), or
 * NULL without one. Its own to the worker: see Concurrency above. */
void *laurel_ctx_app_data(const struct laurel_ctx *ctx);

/* Expands a group name template as a WebSocket consumer's groups are expanded: each "{name}" is
 * replaced by the keyword argument name. The result goes to buf (size bytes; LAUREL_NAME_MAX + 1
 * is always enough). Returns 0, or -EINVAL with the reason recorded as with laurel_ctx_error (so a
 * consumer may just return it): a keyword argument missing, or a result that is not a valid group
 * name (too long, or a character a group name may not hold), or one that does not fit in buf. */
int laurel_ctx_group_name(struct laurel_ctx *ctx, const char *tmpl, char *buf, size_t size);

/* --- Replies (held) --------------------------------------------------------------------------
 * On the message's reply channel (docs/protocol.md §4); -ENOENT without one. */

/* Any message, copied. */
int laurel_reply(struct laurel_ctx *ctx, const struct laurel_msg *msg);
/* A WebSocket frame: {text: str} or {bytes: bin}. */
int laurel_reply_text(struct laurel_ctx *ctx, const char *text, size_t len);
int laurel_reply_bytes(struct laurel_ctx *ctx, const void *data, size_t len);

/* One response header. Name and value are NUL-terminated and sent as bytes, as given. */
struct laurel_header {
	const char *name;
	const char *value;
};
/* An HTTP response: {status, headers: [[bin, bin]...], content: bin, more_content}. With more
 * true, the body continues in laurel_reply_chunk calls; the last one has more false. */
int laurel_reply_http(struct laurel_ctx *ctx, int status, const struct laurel_header *headers,
		      size_t nheaders, const void *body, size_t len, bool more);
/* A further body chunk of a streamed response: {content: bin, more_content}. */
int laurel_reply_chunk(struct laurel_ctx *ctx, const void *body, size_t len, bool more);

/* WebSocket handshake and close, from any consumer of the connection.
 * accept: {accept: true}, answers the handshake (101).
 * reject: {close: true}, what Channels 1 sends to refuse a connection: before it was accepted the
 * client gets HTTP 403 (the interface logs WSREJECT); after, it is closed with 1000.
 * close: {close: code}, or {close: true} for code 0 (1000): ends an accepted connection. The code
 * is 1000 or one for applications, 3000..4999 (the codes a server's application may send, as
 * Daphne 1.4 allows them; the interface sends the others itself: 1001 on shutdown, 1009, ...). */
int laurel_ws_accept(struct laurel_ctx *ctx);
int laurel_ws_reject(struct laurel_ctx *ctx);
int laurel_ws_close(struct laurel_ctx *ctx, int code);

/* --- Channels and groups ---------------------------------------------------------------------
 * laurel_send and laurel_group_send are held; the names are checked at once (-EINVAL). */
int laurel_send(struct laurel_ctx *ctx, const char *channel, const struct laurel_msg *msg);
int laurel_group_send(struct laurel_ctx *ctx, const char *group, const struct laurel_msg *msg);
/* Sends msg to channel delay_ms (0 .. ten years) from now, through the asgi.delay service (SPEC
 * §4: {channel, delay, content} on "asgi.delay"), which laurel-worker --delay and laurel
 * runserver run. Held like laurel_send. -EINVAL for a bad name or delay. */
int laurel_send_later(struct laurel_ctx *ctx, const char *channel, const struct laurel_msg *msg,
		      int64_t delay_ms);

/* Add the message's reply channel to a group, or discard it; at once. */
int laurel_group_add(struct laurel_ctx *ctx, const char *group);
int laurel_group_discard(struct laurel_ctx *ctx, const char *group);
/* The number of live members, and the members as a NULL-terminated array that the caller frees
 * with laurel_strv_free (layer.h); n may be NULL. At once. */
int laurel_group_count(struct laurel_ctx *ctx, const char *group, size_t *n);
int laurel_group_members(struct laurel_ctx *ctx, const char *group, char ***members, size_t *n);

/* Joins the message's connection to a group with a history (--group-history, docs/recovery.md)
 * and sends it the group's messages it missed. epoch and offset are what the client says it has
 * seen (from the connect's query, or a first frame); epoch NULL or "" for a client that has seen
 * nothing: then it only joins. Through the connection's laurel interface, the client gets the
 * missed messages (each in its envelope, in order), then the status frame
 *   {"group": G, "epoch": E, "offset": T, "recovered": true}
 * and then the live messages after T: no gap and no duplicate at the seam, even for messages
 * sent to the group while this runs. When what it missed is no longer all kept (another epoch:
 * the history was lost; or trimmed away) it gets the status with "recovered": false and the
 * history's current epoch and offset, and should reload its state; the call then returns
 * LAUREL_HISTORY_LOST (laurel/layer.h). At once (not held). Do not also add the connection to
 * the group with laurel_group_add. Returns 0, LAUREL_HISTORY_LOST, -EINVAL (bad name, no
 * history rule matches the group, a bad epoch), -ENOTSUP (the reply channel is not a laurel
 * interface's: Daphne cannot take the envelopes), or a layer error. */
int laurel_group_recover(struct laurel_ctx *ctx, const char *group, const char *epoch,
			 uint64_t offset);

/* --- Channel session -------------------------------------------------------------------------
 * Per-connection state (docs/protocol.md §6), a map kept in the channel layer under the reply channel and
 * shared by every worker that handles a message of the connection. laurel_session loads it on the
 * first call (an empty map if there is none) and sets *out to it; change it with the message.h
 * setters on laurel_msg_root(*out). When the consumer returns 0 it is saved if it changed (and
 * then expires group_expiry seconds later). laurel_session_delete forgets it, also at return. */
int laurel_session(struct laurel_ctx *ctx, struct laurel_msg **out);
int laurel_session_delete(struct laurel_ctx *ctx);

/* --- WebSocket consumers ---------------------------------------------------------------------
 * The route_class of Channels: one route (LAUREL_ROUTE_WS in routing.h) handles
 * websocket.connect, websocket.receive and websocket.disconnect.
 *
 * groups is a NULL-terminated list of group names (LAUREL_GROUPS("room-{room}", "all")), in which
 * "{name}" is replaced by the keyword argument name (a missing one fails the message; consumers
 * expand the same templates with laurel_ctx_group_name): the connection is added to each before
 * connect runs and discarded from each before disconnect runs. A NULL connect accepts the connection; a
 * connect given here must accept (laurel_ws_accept) or refuse it itself. NULL receive and
 * disconnect do nothing. */
struct laurel_stream;

struct laurel_ws_consumer {
	laurel_consumer_fn connect;
	laurel_consumer_fn receive;
	laurel_consumer_fn disconnect;
	const char *const *groups;
	/* enforce_ordering (Channels' strict_ordering): the connection's messages run in their
	 * "order", connect first, whichever worker takes them; an early one waits until its
	 * predecessors ran (docs/worker.md). */
	bool strict_ordering;
	/* Makes this consumer a demultiplexer (Channels' WebsocketDemultiplexer): frames
	 * {"stream": S, "payload": {...}} go to the receive of the stream consumer named S, which
	 * reads the payload with laurel_ctx_json; its JSON replies and group sends are wrapped the
	 * same way. connect accepts (this consumer's connect if set, else an accept), then runs
	 * every stream consumer's connect; disconnect runs every stream consumer's disconnect, then
	 * this one's. Each stream consumer's groups are joined and left as its own. A frame that is
	 * not JSON, not of that shape, or names no stream goes to this consumer's receive if it has
	 * one, else it fails the message (logged, nothing sent). Ends with {NULL, NULL}; the
	 * streams' own streams and strict_ordering are ignored. */
	const struct laurel_stream *streams;
};

/* A NULL-terminated list of group name templates, for struct laurel_ws_consumer's groups. */
#define LAUREL_GROUPS(...) ((const char *const[]){__VA_ARGS__, NULL})

struct laurel_stream {
	const char *name;
	const struct laurel_ws_consumer *consumer;
};
/* LAUREL_STREAMS({"chat", &chat_ws}, {"news", &news_ws}) */
#define LAUREL_STREAMS(...) ((const struct laurel_stream[]){__VA_ARGS__, {NULL, NULL}})

/* --- JSON (Channels' JsonWebsocketConsumer) ---------------------------------------------------
 * JSON values are laurel values (message.h): objects are maps (key order kept), arrays lists,
 * strings text, integers int, other numbers double, true/false bool, null nil. Bytes, and
 * doubles that are not finite, have no JSON form.
 *
 * laurel_ctx_json sets *out to the message's JSON content: inside a stream consumer of a
 * demultiplexer, the frame's payload; otherwise the message's "text" parsed (once; any JSON value).
 * Borrowed until the consumer returns. Returns 0, -ENOENT when there is no text (a connect, a
 * disconnect, a bytes frame), or -EBADMSG when the text is not JSON (the reason is recorded as
 * with laurel_ctx_error, so a consumer may just return the error). */
int laurel_ctx_json(struct laurel_ctx *ctx, const struct laurel_value **out);
/* Parses text[0..len) as JSON (any value, as laurel_ctx_json: an HTTP request's body, say) and
 * sets *out to it, borrowed until the consumer returns. Returns 0, or -EBADMSG when it is not JSON
 * (nested deeper than 32, an integer beyond 64 bits), the reason recorded as with
 * laurel_ctx_error. Of duplicate keys the last value is kept, as Python's json and
 * laurel_ctx_json do, unless flags has LAUREL_JSON_UNIQUE_KEYS: then they are refused. */
#define LAUREL_JSON_UNIQUE_KEYS 1u
int laurel_json_parse(struct laurel_ctx *ctx, const void *text, size_t len, unsigned flags,
		      const struct laurel_value **out);
/* The stream the running consumer serves in a demultiplexer, or NULL outside one. */
const char *laurel_ctx_stream(const struct laurel_ctx *ctx);

/* A value builder (message.h) that lives until the consumer returns: no laurel_builder_free.
 * Each call gives a new one. */
struct laurel_builder *laurel_ctx_builder(struct laurel_ctx *ctx);

/* A JSON text frame, {text: JSON}, held: on the reply channel, or sent to a group. Inside a
 * stream consumer the value is wrapped as {"stream": S, "payload": value}. -EINVAL for a value
 * without a JSON form, or NULL (what laurel_build_done gives for a builder misused; the reason is
 * recorded as with laurel_ctx_error): nothing is held. The other reply and send functions are never wrapped.
 * Inside a stream consumer, laurel_ws_accept holds nothing: the demultiplexer accepts. */
int laurel_reply_json(struct laurel_ctx *ctx, const struct laurel_value *value);
int laurel_group_send_json(struct laurel_ctx *ctx, const char *group,
			   const struct laurel_value *value);

/* v as compact JSON text in a new NUL-terminated buffer (*out, caller frees with free(); len may
 * be NULL). Returns 0 or -EINVAL for a value without a JSON form. */
int laurel_json_dump(const struct laurel_value *v, char **out, size_t *len);

#ifdef __cplusplus
}
#endif

#endif
