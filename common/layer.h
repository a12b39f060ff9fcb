/* Internals of the channel layer: the backend table and the helpers both backends share.
 * The public contract is include/laurel/layer.h. */
#ifndef LAUREL_COMMON_LAYER_H
#define LAUREL_COMMON_LAYER_H

#include "laurel/layer.h"
#include "common/buf.h"

/* The message key that carries the full name of a process channel (asgi_redis). */
#define LAYER_CHANNEL_KEY "__asgi_channel__"
/* The message key that carries the local recipients of a multicast group message (laurel). */
#define LAYER_MULTICAST_KEY "__laurel_multicast__"

/* Validated options with defaults applied; owns its strings. */
struct layer_config {
	char *prefix;
	char *stats_prefix;
	int expiry;
	int group_expiry;
	int capacity;
	struct laurel_capacity *capacities; /* patterns owned */
	size_t ncapacities;
	size_t max_message;
	int connect_timeout_ms;
	int command_timeout_ms;
};

struct layer_census;

/* Every operation gets arguments already validated by layer.c (names checked, max >= 1, ...). */
struct layer_ops {
	const char *name;
	int (*send)(struct laurel_layer *l, const char *channel, const struct laurel_msg *msg);
	int (*receive)(struct laurel_layer *l, const char *const *channels, size_t nchannels,
		       int timeout_ms, struct laurel_received *out, size_t max, size_t *got);
	int (*new_channel)(struct laurel_layer *l, const char *pattern, char *out);
	int (*group_add)(struct laurel_layer *l, const char *group, const char *channel);
	int (*group_discard)(struct laurel_layer *l, const char *group, const char *channel);
	int (*group_members)(struct laurel_layer *l, const char *group, char ***members,
			     size_t *n);
	int (*group_count)(struct laurel_layer *l, const char *group, size_t *n);
	int (*group_send)(struct laurel_layer *l, const char *group, const struct laurel_msg *msg,
			  size_t *delivered);
	int (*announce)(struct laurel_layer *l, const char *prefix, int ttl_s);
	int (*withdraw)(struct laurel_layer *l, const char *prefix);
	int (*interfaces)(struct laurel_layer *l, char ***prefixes, size_t *n);
	/* A small key-value store (sessions). get sets *data (malloc'ed, caller frees) or NULL. */
	int (*kv_get)(struct laurel_layer *l, const char *key, char **data, size_t *len);
	int (*kv_set)(struct laurel_layer *l, const char *key, const void *data, size_t len,
		      int ttl_s);
	int (*kv_del)(struct laurel_layer *l, const char *key);
	/* Sends the items whose result is 0 (the others failed the checks), setting each result. */
	void (*send_many)(struct laurel_layer *l, struct laurel_outgoing *items, size_t n);
	int (*watch_fd)(struct laurel_layer *l, int fd);
	/* Scheduled messages: member is the stored entry (opaque bytes, unique). */
	int (*schedule)(struct laurel_layer *l, const void *member, size_t len, int64_t due_ms);
	/* Calls take(arg, member, len, due) for each entry taken, earliest first. */
	int (*take_due)(struct laurel_layer *l, int64_t now_ms, size_t max,
			void (*take)(void *arg, const char *member, size_t len, int64_t due_ms),
			void *arg, int64_t *next_ms);
	int (*flush)(struct laurel_layer *l);
	int (*stats)(struct laurel_layer *l, const char *channel, struct laurel_stats *out);
	int (*check)(struct laurel_layer *l); /* may be NULL: nothing to check */
	/* Layer-wide figures (common/layer_census.h), every shard; NULL: none. groups may be
	 * NULL. Fills out's shards, counters and (with layer_census_add) its entries. */
	int (*census)(struct laurel_layer *l, const char *groups, struct layer_census *out);
	void (*free)(struct laurel_layer *l);
};

/* Backends embed this as their first member. */
struct laurel_layer {
	const struct layer_ops *ops;
	struct layer_config cfg;
};

/* Records a failure for laurel_layer_error (per thread) and returns code. */
int layer_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void layer_clear_error(void);

/* The queue a channel's messages go on: the name up to and including '!' for a process channel,
 * else the whole name. Returns its length. */
size_t layer_queue_len(const char *channel);
/* The capacity of channel, from the overrides or the default. */
int layer_capacity_for(const struct layer_config *cfg, const char *channel);

/* Encodes msg for channel into out (appending): for a process channel "a!b", with
 * __asgi_channel__ = "a!b" added as the last key (replacing one already there). Returns 0, or
 * -EMSGSIZE (recorded) if it is larger than cfg->max_message. */
int layer_encode(const struct layer_config *cfg, const char *channel, const struct laurel_msg *msg,
		 struct buf *out);
/* Fills r from a payload popped off queue (the channel or process prefix it was queued on):
 * decodes it, takes the channel from __asgi_channel__ if present and a multicast recipient list
 * from __laurel_multicast__, removing both keys. Returns 0 or -EPROTO (recorded) for a payload
 * that does not decode; r is then untouched. */
int layer_decode(const char *queue, size_t queuelen, const void *payload, size_t len,
		 struct laurel_received *r);

/* Applies defaults to opts and validates them. Returns 0, or -EINVAL with a message in err. */
int layer_config_init(struct layer_config *cfg, const struct laurel_layer_options *opts, char *err,
		      size_t errlen);

/* The start-up check of a program (laurel_layer_check) on a layer made for it from opts and
 * freed again. Returns 0, -EINVAL (bad options) or -EACCES, with a message in err. */
int layer_check_options(const struct laurel_layer_options *opts, char *err, size_t errlen);

/* Backend constructors; cfg is moved into the new layer (zeroed on success). */
int layer_memory_new(struct laurel_layer **out, struct layer_config *cfg);
int layer_redis_new(struct laurel_layer **out, struct layer_config *cfg, const char *const *urls,
		    size_t nurls, char *err, size_t errlen);
void layer_config_fini(struct layer_config *cfg);

#endif
