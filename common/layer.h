/* Internals of the channel layer: the backend table and the helpers both backends share.
 * The public contract is include/laurel/layer.h. */
#ifndef LAUREL_COMMON_LAYER_H
#define LAUREL_COMMON_LAYER_H

#include "laurel/layer.h"
#include "common/buf.h"
#include "common/options.h"

/* The message key that carries the full name of a process channel (asgi_redis). */
#define LAYER_CHANNEL_KEY "__asgi_channel__"
/* The message key that carries the local recipients of a multicast group message (laurel). */
#define LAYER_MULTICAST_KEY "__laurel_multicast__"
/* The message key of a multicast group message with a history: [group, epoch, offset]. */
#define LAYER_HISTORY_KEY "__laurel_history__"

/* Validated options with defaults applied; owns its strings. */
struct layer_config {
	char *prefix;
	char *stats_prefix;
	int expiry;
	int group_expiry;
	int capacity;
	struct laurel_capacity *capacities; /* patterns owned */
	size_t ncapacities;
	struct laurel_history_rule *histories; /* patterns owned */
	size_t nhistories;
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
	/* rule: the group's history rule, or NULL; pos is then set (never NULL) */
	int (*group_send)(struct laurel_layer *l, const char *group, const struct laurel_msg *msg,
			  size_t *delivered, const struct laurel_history_rule *rule,
			  struct laurel_history_pos *pos);
	/* Reads the history (rule matches group): the current position into *top, the first
	 * offset still kept into *first (top->offset + 1 when none is), and the entries after
	 * `after` into *out. */
	int (*group_history)(struct laurel_layer *l, const char *group,
			     const struct laurel_history_rule *rule, uint64_t after,
			     struct laurel_history_entry **out, size_t *n,
			     struct laurel_history_pos *top, uint64_t *first);
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
#define LAYER_HISTORY_SIZE_MAX 100000

/* The layer's defaults: layer_config_init and laurel_layer_new apply them to options left 0 or
 * NULL, and every program's options (LAYER_OPTIONS) show them. */
#define LAYER_DEFAULT_URL "redis://127.0.0.1:6379"
#define LAYER_DEFAULT_PREFIX "asgi:"
#define LAYER_DEFAULT_EXPIRY 60
#define LAYER_DEFAULT_GROUP_EXPIRY 86400
#define LAYER_DEFAULT_CAPACITY 100
#define LAYER_EXPIRY_MAX (365 * 86400)
#define LAYER_CAPACITY_MAX 1000000000
#define LAYER_STR_(x) #x
#define LAYER_STR(x) LAYER_STR_(x)

/* clang-format off */
/* The forms of a Redis --layer URL, for help texts. */
#define LAYER_URL_FORMS                                                                            \
	"redis://[[user]:password@]host[:port][/db], unix:///path[?db=N], or a Sentinel-monitored " \
	"master redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/NAME[?db=N"       \
	"&sentinel_password=P] (docs/layer.md)"

/* The channel layer's rows of a program's option table (common/options.h), the same in every
 * program. They fill the struct layer_flags the program's config embeds as its member layer:
 * F(layer.name) is the offset of its field name. full says what the program does with a
 * message for a channel that is full. LAYER_TUNING_OPTIONS are the rows without --layer, for a
 * program whose --layer differs (laurel runserver: memory:// by default). */
#define LAYER_OPTIONS(F, full)                                                                     \
	{"layer", 0, OPTION_URLS, F(layer.urls), 0, 0, LAYER_DEFAULT_URL, "LAUREL_LAYER", "URL",   \
	 "Redis server of the channel layer: " LAYER_URL_FORMS ". Repeat it for shards, listed "  \
	 "in the same order everywhere."},                                                         \
	LAYER_TUNING_OPTIONS(F, full)
#define LAYER_TUNING_OPTIONS(F, full)                                                              \
	{"prefix", 0, OPTION_STRING, F(layer.prefix), 1, 0, LAYER_DEFAULT_PREFIX, NULL, "PREFIX",  \
	 "Prefix of the layer's Redis keys."},                                                     \
	{"expiry", 0, OPTION_INT, F(layer.expiry), 1, LAYER_EXPIRY_MAX,                            \
	 LAYER_STR(LAYER_DEFAULT_EXPIRY), NULL, "SECONDS",                                         \
	 "How long a sent message waits to be read."},                                             \
	{"group-expiry", 0, OPTION_INT, F(layer.group_expiry), 1, LAYER_EXPIRY_MAX,                \
	 LAYER_STR(LAYER_DEFAULT_GROUP_EXPIRY), NULL, "SECONDS",                                   \
	 "How long a group membership and a channel session live; older members are dropped."},   \
	{"capacity", 0, OPTION_INT, F(layer.capacity), 1, LAYER_CAPACITY_MAX,                      \
	 LAYER_STR(LAYER_DEFAULT_CAPACITY), NULL, "N", "Messages a channel holds; " full}
/* The --group-history row (F as for LAYER_OPTIONS). */
#define LAYER_HISTORY_OPTION(F)                                                                    \
	{"group-history", 0, OPTION_LIST, F(layer.group_history), 0, 0, NULL,                      \
	 "LAUREL_GROUP_HISTORY", "PATTERN=SIZE/SECONDS", LAYER_HISTORY_HELP}
/* clang-format on */
/* The --group-history option's help, the same in every program. */
#define LAYER_HISTORY_HELP                                                                         \
	"Groups whose name matches the glob PATTERN keep their last SIZE messages, for SECONDS "  \
	"after the last one, with offsets a reconnecting client recovers from "                   \
	"(docs/recovery.md). Repeat it for several; the first match wins. Give every program "    \
	"the same rules."
/* The history rule of a group, or NULL. */
const struct laurel_history_rule *layer_history_for(const struct layer_config *cfg,
						   const char *group);
/* Parses "PATTERN=SIZE/SECONDS" (the --history option) into *r (r->pattern points into spec's
 * copy, which the caller keeps). Returns 0, or -EINVAL with a sentence in err. */
/* A copy of msg with LAYER_HISTORY_KEY: [group, epoch, offset] (caller frees). */
struct laurel_msg *layer_history_tag(const struct laurel_msg *msg, const char *group,
				     const struct laurel_history_pos *pos);
int layer_history_parse(char *spec, struct laurel_history_rule *r, char *err, size_t errlen);
/* The --group-history values v[0..n) (each one rule, or several separated by spaces or
 * commas, as an environment variable gives them) into *rules (*nrules of them). Both the rules
 * and the pattern strings they point into are kept in *store; free it with
 * layer_history_rules_free. Returns 0, or -EINVAL with a sentence in err. */
struct layer_history_rules {
	struct laurel_history_rule *v;
	size_t n;
	char *text;
};
int layer_history_rules_parse(struct layer_history_rules *out, char *const *v, size_t n, char *err,
			      size_t errlen);
void layer_history_rules_free(struct layer_history_rules *r);

/* A program's channel layer options, as LAYER_OPTIONS (or LAYER_TUNING_OPTIONS and its own
 * --layer) and LAYER_HISTORY_OPTION fill them; every program's config embeds one as its member
 * layer. The option values belong to the program's table (options_free); history, the
 * --group-history rules, is layer_flags_parse's (layer_flags_fini). */
struct layer_flags {
	struct option_list urls;
	char *prefix;
	int expiry;
	int group_expiry;
	int capacity;
	struct option_list group_history;
	struct layer_history_rules history;
};
/* Parses f->group_history into f->history (as layer_history_rules_parse). Returns 0, or -EINVAL
 * with a sentence in err. */
int layer_flags_parse(struct layer_flags *f, char *err, size_t errlen);
/* The layer options f gives (its URLs, prefix, expiries, capacity and history rules, borrowed
 * from f); the others are 0, the layer's defaults. */
struct laurel_layer_options layer_flags_options(const struct layer_flags *f);
/* Frees f->history. */
void layer_flags_fini(struct layer_flags *f);

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
