/* Layer-wide figures of a Redis channel layer, as one collection ("census") of every shard:
 * queue depths per channel, asgi_redis' statistics counters (global and per channel), laurel's
 * control_dropped counter, the live interfaces, optionally group member counts, and which shards
 * answered. `laurel stats --prometheus` prints one in the Prometheus text format; `laurel
 * dashboard` takes one a second.
 *
 * Channels are found by SCAN over the layer's keys on every shard (a queue key is a list named
 * PREFIX + channel; a statistics key STATS_PREFIX + channel + ":messages_count" or
 * ":channel_full_count"). Label values stay bounded: a process channel "name!xyz" is counted
 * under "name!" (its queue), a single-reader channel "name?xyz" under "name?", and past
 * max_labels distinct values the rest is summed under LAYER_CENSUS_OTHER. Normal channels, which
 * live on every shard, and the global counters are summed across the shards that answered. */
#ifndef LAUREL_COMMON_LAYER_CENSUS_H
#define LAUREL_COMMON_LAYER_CENSUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "laurel/layer.h"
#include "common/buf.h"

/* The label value of what is past the cap: not a valid channel or group name, so it cannot be
 * mistaken for one. */
#define LAYER_CENSUS_OTHER "(other)"
#define LAYER_CENSUS_LABELS_DEFAULT 200

struct layer_census_options {
	/* A Redis glob (*, ?, [...]) of group names whose live member counts are wanted; NULL for
	 * none. Members older than group_expiry are not counted; members of a vanished interface
	 * are, until the group is next read (docs/layer.md, presence). */
	const char *groups;
	size_t max_labels; /* distinct channel (and group) values; 0: LAYER_CENSUS_LABELS_DEFAULT */
};

/* A channel's (or a group's) figures. */
struct layer_census_entry {
	char name[LAUREL_NAME_MAX + 16];
	int64_t queued;	  /* messages waiting on its queue(s); for a group: live members */
	int64_t messages; /* messages_count (asgi_redis; expires an hour after its last change) */
	int64_t full;	  /* channel_full_count */
};

struct layer_census_shard {
	char *url;   /* without passwords */
	bool up;     /* every command of the census answered */
	char *error; /* why not, else NULL */
};

struct layer_census {
	int64_t messages;	 /* global messages_count, summed over the shards that answered */
	int64_t full;		 /* global channel_full_count */
	int64_t control_dropped; /* laurel's global control_dropped */
	int64_t interfaces;	 /* live laurel interfaces (the registry) */
	int64_t delayed;	 /* messages the delay service holds (asgi.delay) */
	int64_t delayed_first_ms; /* when the earliest of them is due (wall clock, ms); 0: none */
	int64_t now_ms;		  /* the wall clock when the census began (ms) */
	/* sorted by name, LAYER_CENSUS_OTHER (if any) last */
	struct layer_census_entry *channels;
	size_t nchannels;
	size_t channels_seen; /* distinct channel values before the cap */
	bool groups_asked;    /* options' groups was given */
	struct layer_census_entry *groups;
	size_t ngroups;
	size_t groups_seen;
	struct layer_census_shard *shards;
	size_t nshards, shards_up;
	double seconds;			 /* how long the census took */
	size_t channels_cap, groups_cap; /* while it is taken */
};

/* Takes a census of layer (a Redis layer; -ENOTSUP for the memory layer). A shard that fails is
 * marked down in out->shards and the census goes on with the others; returns 0 then too.
 * Returns -EINVAL for a bad groups pattern. out is caller-owned: layer_census_fini frees what it
 * holds (also after a failure). */
int layer_census_take(struct laurel_layer *layer, const struct layer_census_options *o,
		      struct layer_census *out);
void layer_census_fini(struct layer_census *c);

/* Appends c in the Prometheus text format (0.0.4): the laurel_layer_* families (docs/tool.md). */
void layer_census_prometheus(const struct layer_census *c, struct buf *out);

/* For backends: adds value to the figure (queued, messages or full) of the channel or group name
 * (name[0..len)), folding process and single-reader channel names to their "name!"/"name?"
 * part. */
enum layer_census_figure { CENSUS_QUEUED, CENSUS_MESSAGES, CENSUS_FULL, CENSUS_MEMBERS };
void layer_census_add(struct layer_census *c, enum layer_census_figure f, const char *name,
		      size_t len, int64_t value);

#endif
