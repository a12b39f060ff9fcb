/* The laurel channel layer client (docs/protocol.md §2–3): named channels and groups, over Redis (compatible
 * with asgi_redis 1.4, sharded over several servers) or in memory (one process, several threads).
 *
 * Any C program can use it — a worker, a cron job, a background task — to send to a channel or to
 * a group, exactly as laurel's own processes do.
 *
 * Return values: 0 on success; LAUREL_FULL (positive) when the channel is at capacity; otherwise a
 * negative errno:
 *   -EINVAL     a bad channel or group name, or a bad argument (nothing was sent anywhere)
 *   -EMSGSIZE   the encoded message is larger than the configured maximum
 *   -ENOTCONN   the backend (a Redis server) is unreachable, or answers that it cannot serve
 *               now (READONLY, LOADING, NOAUTH, NOPERM, OOM, ...); the client reconnects by
 *               itself, with backoff, on later calls, so the caller just retries later
 *   -EIO        the command was sent but its answer never came (the connection broke, or the
 *               server took longer than command_timeout_ms): it may or may not have been carried
 *               out, so a send is not retried (a retry could deliver the message twice)
 *   -EPROTO     the backend answered something unexpected
 * laurel_layer_error() then describes the last failure in a sentence.
 *
 * Threads: a Redis layer object is used by one thread at a time (make one per thread). A memory
 * layer object is shared by all the threads of a process, and every call on it is thread-safe;
 * it is the only way two threads see the same channels.
 *
 * Nothing here calls back; every call is synchronous. The interface server uses the asynchronous
 * Redis client in common/ instead.
 */
#ifndef LAUREL_LAYER_H
#define LAUREL_LAYER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "laurel/message.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LAUREL_FULL 1

/* Channel and group names are shorter than this (docs/protocol.md §2). */
#define LAUREL_NAME_MAX 100

/* A capacity override: channels whose name (up to and including '!') matches the fnmatch glob
 * get this capacity. The first matching pattern wins. In a glob '?' matches any one character:
 * write "[?]" for the '?' of a single-reader channel name.
 *
 * Capacity is counted per queue: a normal channel sharded over N Redis servers holds up to
 * N x capacity messages (as with asgi_redis); process and '?' channels live on one shard. */
struct laurel_capacity {
	const char *pattern;
	int capacity;
};

/* A group history rule (docs/recovery.md): a group whose name matches the fnmatch glob keeps its
 * last `size` messages (1 to 100,000) until `ttl_s` seconds (1 to a year) after the last one. The
 * first matching rule wins. Every process of a deployment must be given the same rules. */
struct laurel_history_rule {
	const char *pattern;
	int size;
	int ttl_s;
};

struct laurel_layer_options {
	/* "memory://" for the in-memory backend, or one or more Redis URLs (several = shards, the
	 * same list in the same order in every process):
	 *   redis://[[user]:password@]host[:port][/db]     (host may be [ipv6])
	 *   unix:///path/to/redis.sock[?db=N]
	 * NULL / 0 means one URL, "redis://127.0.0.1:6379". */
	const char *const *urls;
	size_t nurls;
	const char *prefix;	   /* key prefix; default "asgi:" */
	const char *stats_prefix;  /* default "asgi-meta:" */
	int expiry;		   /* seconds an unread message lives; default 60 */
	int group_expiry;	   /* seconds a group membership lives; default 86400 */
	int capacity;		   /* default per-channel capacity; default 100 */
	const struct laurel_capacity *capacities; /* overrides, copied */
	size_t ncapacities;
	const struct laurel_history_rule *histories; /* group histories, copied */
	size_t nhistories;
	size_t max_message;	   /* largest encoded message accepted by send; default
				    * LAUREL_MAX_MESSAGE_DEFAULT */
	int connect_timeout_ms;	   /* default 2000 */
	int command_timeout_ms;	   /* a Redis reply later than this fails the call; default 5000 */
};

/* Room for a message's fields around its largest payload (reply channel, path, order, keys). */
#define LAUREL_MESSAGE_ENVELOPE (64 * 1024)
/* The default message limit: a 1 MiB payload (a WebSocket message at the interface's default
 * --ws-max-message, or an echo of it) and its envelope. */
#define LAUREL_MAX_MESSAGE_DEFAULT ((size_t)(1024 * 1024 + LAUREL_MESSAGE_ENVELOPE))

struct laurel_layer;

/* Creates a layer. Does not connect yet: the first call that needs a server does, so a layer can be
 * made while Redis is down. Returns 0, or -EINVAL with a message in err (errlen bytes, may be 0)
 * for a bad URL or option. */
int laurel_layer_new(struct laurel_layer **out, const struct laurel_layer_options *opts, char *err,
		     size_t errlen);
/* Checks now that every Redis server accepts this client's credentials and the commands laurel
 * needs, in ways that change nothing: for a program to refuse to start with a configuration
 * that cannot work. Returns 0 — also when a server is unreachable or not ready (LOADING, a
 * read-only replica): an outage the client rides out — or -EACCES when a server refused the
 * credentials or a command (NOAUTH, WRONGPASS, NOPERM), laurel_layer_error naming the server and
 * its error. Always 0 for the memory layer. Later the same refusals are outages like the others
 * (a changed password, a changed ACL): calls fail with -ENOTCONN while they last. */
int laurel_layer_check(struct laurel_layer *layer);

/* Closes connections and frees. NULL is a no-op. */
void laurel_layer_free(struct laurel_layer *layer);

/* The last failure of a layer call made by this thread, as a sentence ("" if none). Kept per
 * thread, so threads sharing a memory layer each see their own. Borrowed until the next call. */
const char *laurel_layer_error(const struct laurel_layer *layer);

/* Name checks (docs/protocol.md §2), usable without a layer. */
bool laurel_valid_channel(const char *name);
bool laurel_valid_group(const char *name);

/* Sends msg (borrowed) on channel. For a process channel "a!b" the message is stored on "a!" with
 * "__asgi_channel__" set to "a!b", as asgi_redis does. Returns 0, LAUREL_FULL, or an error. */
int laurel_layer_send(struct laurel_layer *layer, const char *channel, const struct laurel_msg *msg);

/* One message of laurel_layer_send_many. */
struct laurel_outgoing {
	const char *channel;
	const struct laurel_msg *msg; /* borrowed */
	int result;		      /* set by send_many: what laurel_layer_send would return */
};

/* Sends items[0..n) as n calls of laurel_layer_send would, in that order, but in one round trip
 * per Redis server for the lot (one script call each, atomic). Messages to one process or
 * single-reader channel arrive in the order given. Every item gets its result; an item that fails
 * (a bad name, too big, a server down) does not stop the others, except that once a channel is
 * found full, the later items for the same channel are not tried (LAUREL_FULL too): retrying the
 * failed items in order then keeps the order. Returns 0 when every item was sent, else the
 * result of the first that was not (laurel_layer_error describes the last failure). */
int laurel_layer_send_many(struct laurel_layer *layer, struct laurel_outgoing *items, size_t n);

/* One received message. Caller-owned; release with laurel_received_fini. */
struct laurel_received {
	char channel[LAUREL_NAME_MAX + 1]; /* the channel it was sent to (full name for "a!b") */
	struct laurel_msg *msg;
	/* A multicast group message (docs/protocol.md §3) for several local channels of one process channel:
	 * channel is then the process channel "a!", and these are the full names it is for. */
	char **recipients;
	size_t nrecipients;
};
void laurel_received_fini(struct laurel_received *r);

/* Receives up to max messages (max >= 1) from any of the channels, into out[0..*got). Process
 * channels are named by their prefix ("a!"), and deliver every "a!*" message. Waits up to
 * timeout_ms for the first message (0: do not wait; -1: wait forever), blocking in the backend —
 * never polling on a timer. Returns 0 with *got possibly 0 on timeout, or an error (*got is then
 * 0). Each message is delivered to exactly one receiver, at most once; the order of the channels
 * does not matter (they are tried in a fresh random order on each call so none starves). */
int laurel_layer_receive(struct laurel_layer *layer, const char *const *channels, size_t nchannels,
			 int timeout_ms, struct laurel_received *out, size_t max, size_t *got);

/* Makes a blocking laurel_layer_receive (and laurel_layer_take_due's callers' receive) also
 * watch fd, a descriptor the caller owns (-1: stop watching): once fd is readable, a receive
 * returns at once with what it already has, possibly nothing, without waiting for its timeout.
 * The layer never reads or closes fd. The use: a program writes a byte to a pipe from its SIGTERM
 * handler, and its worker loop, blocked in receive, stops at once. Returns 0, or -ENOTSUP for
 * the memory layer (its threads are stopped by the program that owns them). */
int laurel_layer_watch_fd(struct laurel_layer *layer, int fd);

/* Makes a new unique single-reader channel name from pattern, which must end in '?' or '!'
 * ("http.request.body?" -> "http.request.body?AbCdEfGhIjKl"), checked to be unused. out must
 * hold LAUREL_NAME_MAX + 1 bytes. */
int laurel_layer_new_channel(struct laurel_layer *layer, const char *pattern, char *out);

/* Groups (docs/protocol.md §3). Adding is idempotent and refreshes the membership's time. */
int laurel_layer_group_add(struct laurel_layer *layer, const char *group, const char *channel);
int laurel_layer_group_discard(struct laurel_layer *layer, const char *group, const char *channel);
/* The live members (expired ones are dropped first), as a NULL-terminated array of strings that
 * the caller frees with laurel_strv_free. *n may be NULL. Presence (Redis): a member that is a
 * connection of a laurel interface no longer announced as live (killed, crashed), added more
 * than 30 s ago, is left out, removed from the group and its session deleted — by whichever call
 * reads the group first (members, count, group send); the work is bounded by the group's size.
 * Members of other processes (Daphne) keep asgi_redis's expiry rules. */
int laurel_layer_group_members(struct laurel_layer *layer, const char *group, char ***members,
			       size_t *n);
int laurel_layer_group_count(struct laurel_layer *layer, const char *group, size_t *n);
/* Sends msg to every live member; members whose channel is full are skipped silently. Members
 * that are local channels of a live laurel interface ("a!x", "a!y" with "a!" announced) get one
 * multicast message per interface. *delivered (may be NULL) counts the member channels reached. */
int laurel_layer_group_send(struct laurel_layer *layer, const char *group,
			    const struct laurel_msg *msg, size_t *delivered);
void laurel_strv_free(char **v);

/* Group history (docs/recovery.md). A group that matches a history rule numbers its messages:
 * each group send appends the message to the group's history and gives it the next offset
 * (1, 2, 3, ...). The epoch names one unbroken history: it is made anew when the history is lost
 * (it expired, or Redis lost it), and offsets then start again at 1. A multicast message to a
 * laurel interface carries "__laurel_history__": [group, epoch, offset]; members on other
 * processes (Daphne) get the message unchanged. */
#define LAUREL_EPOCH_LEN 16 /* an epoch is 16 lowercase hex digits */
/* Returned by laurel_layer_group_history: what was asked for is no longer all there. */
#define LAUREL_HISTORY_LOST 2

struct laurel_history_pos {
	char epoch[LAUREL_EPOCH_LEN + 1]; /* "" when the group has no history now */
	uint64_t offset;		  /* of the last message; 0 with epoch "" */
	uint64_t first; /* laurel_layer_group_history: the oldest offset kept (offset + 1: none) */
};

/* laurel_layer_group_send that also tells where the message went in the group's history: *pos
 * (may be NULL) is its epoch and offset, or epoch "" and offset 0 for a group without a history
 * rule. */
int laurel_layer_group_publish(struct laurel_layer *layer, const char *group,
			       const struct laurel_msg *msg, size_t *delivered,
			       struct laurel_history_pos *pos);

/* One message of a group's history. */
struct laurel_history_entry {
	uint64_t offset;
	struct laurel_msg *msg; /* caller-owned */
};
void laurel_history_entries_free(struct laurel_history_entry *v, size_t n);

/* Reads the messages of group's history after offset `after`, oldest first, into *out (n of them,
 * caller frees with laurel_history_entries_free), and where the history stands into *top (may be
 * NULL). With epoch NULL, whatever the epoch (after 0: the whole history). With an epoch, the
 * caller says it has seen everything up to `after` in that epoch: returns 0 with exactly the
 * messages it missed (none if it is up to date), or LAUREL_HISTORY_LOST (and nothing in *out)
 * when the epoch is not the current one, or messages after `after` are no longer kept, or
 * `after` is past the last offset. -EINVAL if no history rule matches the group. */
int laurel_layer_group_history(struct laurel_layer *layer, const char *group, const char *epoch,
			       uint64_t after, struct laurel_history_entry **out, size_t *n,
			       struct laurel_history_pos *top);

/* Live laurel interfaces (docs/protocol.md §3, multicast). An interface announces its process channel
 * prefix ("laurel.response.AbCdEfGhIj!") and renews it before ttl_s runs out; withdraw removes
 * it at shutdown. See docs/layer.md for the layout. */
int laurel_layer_announce(struct laurel_layer *layer, const char *process_prefix, int ttl_s);
int laurel_layer_withdraw(struct laurel_layer *layer, const char *process_prefix);
/* The announced, unexpired process prefixes, as for group_members. */
int laurel_layer_interfaces(struct laurel_layer *layer, char ***prefixes, size_t *n);

/* Per-connection state (channel_session, docs/protocol.md §6): a map kept in the layer under the
 * connection's reply channel, so whichever worker handles a connection's next message sees it.
 * It expires group_expiry seconds after the last save. load sets *out to the session (an empty map
 * if there is none; caller frees); save stores session (borrowed) whole. */
int laurel_layer_session_load(struct laurel_layer *layer, const char *reply_channel,
			      struct laurel_msg **out);
int laurel_layer_session_save(struct laurel_layer *layer, const char *reply_channel,
			      const struct laurel_msg *session);
int laurel_layer_session_delete(struct laurel_layer *layer, const char *reply_channel);

/* Scheduled messages (the asgi.delay service, docs/protocol.md §4), kept in the layer so that they survive a
 * restart of the process that scheduled them. On Redis they live in one sorted set,
 * prefix + ":delay" ("asgi::delay") on the first server: member = 16 random hex digits followed by
 * the msgpack map {channel, content}, score = due time in unix milliseconds.
 *
 * schedule stores msg (borrowed) for channel, due at due_ms (unix time, milliseconds). */
int laurel_layer_schedule(struct laurel_layer *layer, const char *channel,
			  const struct laurel_msg *msg, int64_t due_ms);

/* One message taken by laurel_layer_take_due. Caller-owned: free msg with laurel_msg_free. */
struct laurel_due {
	char channel[LAUREL_NAME_MAX + 1];
	struct laurel_msg *msg;
	int64_t due_ms;
};
/* Removes and returns up to max (>= 1) messages due at now_ms or earlier, earliest first, into
 * out[0..*got). Taking is atomic: two processes never both get one message. *next_ms is set to the
 * due time of the earliest message left, or -1 if none is left. A stored entry that does not
 * decode is dropped and logged. Returns 0 or an error (*got is then 0). */
int laurel_layer_take_due(struct laurel_layer *layer, int64_t now_ms, struct laurel_due *out,
			  size_t max, size_t *got, int64_t *next_ms);

/* Deletes every message, queue, group, announcement, session and counter of this layer (all
 * shards). */
int laurel_layer_flush(struct laurel_layer *layer);

struct laurel_stats {
	int64_t messages_count;	    /* messages sent (counters expire after an hour per channel) */
	int64_t channel_full_count; /* sends refused because the channel was full */
	int64_t messages_pending;   /* per channel only: queued now (-1 for global) */
	int64_t messages_max_age;   /* per channel only: age in seconds of the oldest queued (-1) */
	/* global only (-1 per channel): control messages (disconnects) that interfaces dropped —
	 * over their outbox limit, or refused by the server — since the counter was created (it
	 * expires a day after its last change) */
	int64_t control_dropped;
};
/* Global statistics (channel NULL) or one channel's. */
int laurel_layer_stats(struct laurel_layer *layer, const char *channel, struct laurel_stats *out);

#ifdef __cplusplus
}
#endif

#endif
