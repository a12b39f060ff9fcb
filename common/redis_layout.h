/* The Redis layout of the channel layer, shared by its two Redis clients (the synchronous one,
 * layer_redis.c, and the asynchronous one on libevent, layer_async.c): shard placement by the
 * CRC-32 rule, the layer's URLs, the Lua scripts and their SHA-1s, the send script's argument
 * builder, and how Redis error replies are taken (with the outage log both clients write). The
 * key layout itself is docs/protocol.md §3 (asgi_redis 1.4.3). */
#ifndef LAUREL_COMMON_REDIS_LAYOUT_H
#define LAUREL_COMMON_REDIS_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/layer.h"

/* A Redis server of the layer, from its URL. */
struct layer_hostport {
	char *host;
	int port;
};
struct layer_endpoint {
	char *desc; /* the URL without its passwords, for messages */
	char *host; /* NULL for a unix socket, and for a Sentinel shard (asked for each time) */
	char *path;
	int port;
	int db;
	char *user;	/* of the Redis servers (for a Sentinel shard: of its masters) */
	char *password;
	/* redis+sentinel:// only: the master's name, the sentinels to ask, and their credentials */
	char *master_name;
	struct layer_hostport *sentinels;
	size_t nsentinels;
	char *sentinel_user;
	char *sentinel_password;
};
#define LAYER_SENTINEL_PORT 26379
#define LAYER_SENTINELS_MAX 16
/* Parses redis://[[user]:password@]host[:port][/db], unix:///path[?db=N], or
 * redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/MASTER_NAME[?db=N
 * [&sentinel_user=U][&sentinel_password=P]] (sentinel port 26379 by default; an IPv6 address in
 * brackets). Returns 0 or -EINVAL with a message in err. */
int layer_endpoint_parse(struct layer_endpoint *e, const char *url, char *err, size_t errlen);
void layer_endpoint_fini(struct layer_endpoint *e);

/* The shard of a name by the CRC-32 rule (docs/protocol.md §3), and the shard a channel's queue lives on:
 * SIZE_MAX for a normal channel, which may be on any shard. */
size_t layer_shard_of(size_t nshards, const char *name, size_t len);
size_t layer_channel_home(size_t nshards, const char *channel);

/* How an error reply from Redis is taken. */
enum layer_error_kind {
	LAYER_ERR_OTHER,  /* about this one command: the call fails with -EPROTO */
	LAYER_ERR_OUTAGE, /* the server cannot serve us now (READONLY, LOADING, MASTERDOWN, OOM,
			   * BUSY, MISCONF, ...): handled like a lost connection */
	LAYER_ERR_DENIED, /* credentials or permissions (NOAUTH, WRONGPASS, NOPERM): an outage too,
			   * and fatal when a program starts (laurel_layer_check) */
};
enum layer_error_kind layer_error_kind(const char *err);

/* One server's outage, as both clients log it: one warning when it starts, naming the cause, and
 * one line when it ends, with its length and the requests refused meanwhile. Not thread-safe:
 * each client object has its own. */
struct layer_outage {
	bool down;
	bool named;	   /* the server's own error has been logged */
	int64_t since_ms;  /* monotonic */
	uint64_t refused;  /* calls failed at once while down */
	uint64_t count;	   /* outages so far (metrics) */
	int64_t total_ms;  /* the length of those that ended */
};
/* Starts an outage of the server desc; during one, logs only a first error from the server
 * itself after a broken connection. */
void layer_outage_begin(struct layer_outage *o, const char *desc, const char *why);
/* Ends it, if there is one. */
void layer_outage_end(struct layer_outage *o, const char *desc);

/* What a ROLE answer says ("master", "slave", "sentinel"), the error's text, or "an unexpected
 * answer": a Sentinel shard's new connection must reach a master. */
struct redisReply;
const char *layer_role(const struct redisReply *r);

/* Key names both clients use: PREFIX:interfaces (laurel's interface registry, a zset) and the
 * global statistics counters STATS_PREFIX#global#:NAME (asgi_redis's, and laurel's
 * control_dropped). */
void layer_key_interfaces(const struct layer_config *cfg, char *out, size_t size);
void layer_key_global(const struct layer_config *cfg, const char *counter, char *out, size_t size);

/* The Lua scripts of the Redis layout, shared by the synchronous and asynchronous clients. */
enum script_id {
	SCRIPT_POP,
	SCRIPT_GROUP_SEND,
	SCRIPT_FLUSH,
	SCRIPT_TAKE_DUE,
	SCRIPT_SEND_MANY,
	SCRIPT_HISTORY_ADD,
	SCRIPT_HISTORY_READ,
	SCRIPT_COUNT
};
const char *layer_script_source(enum script_id id);
const char *layer_script_sha(enum script_id id); /* 40 hex digits */

/* A direct entry: a message pushed whole onto the process queue of a live laurel interface
 * ("\0" + unix ms of the send in decimal + "\0" + the payload) instead of a body key, so that
 * its reader needs no GET and DEL (docs/layer.md). Only laurel interfaces read such queues, and
 * a body key never starts with a NUL. Returns 0 if entry[0..len) is not one (payload untouched),
 * 1 with *payload and *plen set to the message, -1 if it is malformed or older than expiry_s
 * (it expired, as its body key would have). */
int layer_direct_entry(const char *entry, size_t len, int expiry_s, const char **payload,
		       size_t *plen);
/* Whether entry[0..len) is a well-formed direct entry; *sent_ms its send time if so. */
bool layer_direct_entry_time(const char *entry, size_t len, int64_t *sent_ms);

/* Messages bound for one shard, as the arguments of the send_many script: what the synchronous
 * and the asynchronous client both send. */
struct layer_batch_item {
	char body[128];
	char queue[LAUREL_NAME_MAX + 1];
	char capacity[16];
	struct buf payload;
};
struct layer_batch {
	struct layer_batch_item *items;
	size_t n, cap;
	char expiry[16], glmsgs[128], glfull[128], registry[96], now[24];
	const char **argv; /* the last layer_batch_command */
	size_t *lens;
	size_t argcap;
};
/* Appends a message for channel: payload (encoded; taken over, left empty) under a new body key
 * named with hex (32 random hex digits). */
void layer_batch_add(struct layer_batch *b, const struct layer_config *cfg, const char *channel,
		     const char *hex, struct buf *payload);
/* The EVALSHA command for the batch. argv and lens belong to b and hold until it changes.
 * Returns argc. The script answers one integer per message: 1 sent, else full. */
size_t layer_batch_command(struct layer_batch *b, const struct layer_config *cfg,
			   const char ***argv, size_t **lens);
/* Empties b (freeing the payloads); fini also frees its memory. */
void layer_batch_clear(struct layer_batch *b);
void layer_batch_fini(struct layer_batch *b);

#endif
