/* Layer-wide figures (see layer_census.h): what the backend found, folded into bounded labels,
 * and their Prometheus text form. */
#include "common/layer_census.h"
#include "common/layer.h"
#include "common/metrics.h"
#include "common/util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void layer_census_add(struct layer_census *c, enum layer_census_figure f, const char *name,
		      size_t len, int64_t value)
{
	/* "a!xyz" and "a?xyz" are counted under "a!" and "a?": the random part would make the
	 * label values unbounded. */
	for (size_t i = 0; i < len; i++)
		if (name[i] == '!' || name[i] == '?') {
			len = i + 1;
			break;
		}
	if (len >= sizeof(((struct layer_census_entry *)0)->name))
		len = sizeof(((struct layer_census_entry *)0)->name) - 1;
	bool group = f == CENSUS_MEMBERS;
	struct layer_census_entry **v = group ? &c->groups : &c->channels;
	size_t *n = group ? &c->ngroups : &c->nchannels;
	size_t *cap = group ? &c->groups_cap : &c->channels_cap;
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 64;
		*v = xrealloc(*v, *cap * sizeof(**v));
	}
	struct layer_census_entry *e = &(*v)[(*n)++];
	memset(e, 0, sizeof(*e));
	memcpy(e->name, name, len);
	e->name[len] = '\0';
	switch (f) {
	case CENSUS_QUEUED:
	case CENSUS_MEMBERS:
		e->queued = value;
		break;
	case CENSUS_MESSAGES:
		e->messages = value;
		break;
	case CENSUS_FULL:
		e->full = value;
		break;
	}
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct layer_census_entry *)a)->name,
		      ((const struct layer_census_entry *)b)->name);
}

/* The busiest first: those keep their own label when there are too many. */
static int by_weight(const void *a, const void *b)
{
	const struct layer_census_entry *x = a, *y = b;
	if (x->queued != y->queued)
		return x->queued > y->queued ? -1 : 1;
	if (x->messages != y->messages)
		return x->messages > y->messages ? -1 : 1;
	if (x->full != y->full)
		return x->full > y->full ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* Merges the entries of one name, then sums everything past max into LAYER_CENSUS_OTHER. */
static void fold(struct layer_census_entry *v, size_t *n, size_t *seen, size_t max)
{
	if (*n == 0)
		return;
	qsort(v, *n, sizeof(*v), by_name);
	size_t k = 0;
	for (size_t i = 1; i < *n; i++) {
		if (strcmp(v[i].name, v[k].name) == 0) {
			v[k].queued += v[i].queued;
			v[k].messages += v[i].messages;
			v[k].full += v[i].full;
		} else {
			v[++k] = v[i];
		}
	}
	*n = k + 1;
	*seen = *n;
	if (*n <= max)
		return;
	qsort(v, *n, sizeof(*v), by_weight);
	struct layer_census_entry other = {.name = LAYER_CENSUS_OTHER};
	for (size_t i = max; i < *n; i++) {
		other.queued += v[i].queued;
		other.messages += v[i].messages;
		other.full += v[i].full;
	}
	qsort(v, max, sizeof(*v), by_name);
	v[max] = other;
	*n = max + 1;
}

static bool valid_glob(const char *p)
{
	size_t len = strlen(p);
	if (len == 0 || len >= LAUREL_NAME_MAX)
		return false;
	for (; *p; p++)
		if (!strchr("*?[]^-_.\\", *p) && !(*p >= 'a' && *p <= 'z') &&
		    !(*p >= 'A' && *p <= 'Z') && !(*p >= '0' && *p <= '9'))
			return false;
	return true;
}

int layer_census_take(struct laurel_layer *layer, const struct layer_census_options *o,
		      struct layer_census *out)
{
	memset(out, 0, sizeof(*out));
	if (o->groups && !valid_glob(o->groups))
		return layer_fail(-EINVAL,
				  "bad group pattern \"%.*s\": use group-name characters and the "
				  "glob characters * ? [ ] ^ \\",
				  LAUREL_NAME_MAX, o->groups);
	if (!layer->ops->census)
		return layer_fail(-ENOTSUP, "the %s layer has no layer-wide figures",
				  layer->ops->name);
	out->groups_asked = o->groups != NULL;
	int64_t t0 = util_now_us();
	out->now_ms = (int64_t)(util_wall_time() * 1000);
	int rc = layer->ops->census(layer, o->groups, out);
	if (rc < 0)
		return rc;
	size_t max = o->max_labels ? o->max_labels : LAYER_CENSUS_LABELS_DEFAULT;
	fold(out->channels, &out->nchannels, &out->channels_seen, max);
	fold(out->groups, &out->ngroups, &out->groups_seen, max);
	for (size_t i = 0; i < out->nshards; i++)
		out->shards_up += out->shards[i].up;
	out->seconds = (double)(util_now_us() - t0) / 1e6;
	return 0;
}

void layer_census_fini(struct layer_census *c)
{
	free(c->channels);
	free(c->groups);
	for (size_t i = 0; i < c->nshards; i++) {
		free(c->shards[i].url);
		free(c->shards[i].error);
	}
	free(c->shards);
	memset(c, 0, sizeof(*c));
}

/* A label value in the text format: backslash, double quote and line feed escaped. */
static void label(char *out, size_t size, const char *key, const char *value)
{
	size_t n = (size_t)snprintf(out, size, "%s=\"", key);
	for (; *value && n + 4 < size; value++) {
		if (*value == '\\' || *value == '"' || *value == '\n')
			out[n++] = '\\';
		out[n++] = *value == '\n' ? 'n' : *value;
	}
	snprintf(out + n, size - n, "\"");
}

static void scalar(struct buf *b, const char *name, const char *type, const char *help,
		   double value)
{
	metrics_family(b, name, type, help);
	metrics_sample(b, name, NULL, value);
}

enum field { F_QUEUED, F_MESSAGES, F_FULL };

static void per_entry(struct buf *b, const char *name, const char *type, const char *help,
		      const char *key, const struct layer_census_entry *v, size_t n, enum field f)
{
	metrics_family(b, name, type, help);
	for (size_t i = 0; i < n; i++) {
		char l[LAUREL_NAME_MAX * 2 + 32];
		label(l, sizeof(l), key, v[i].name);
		metrics_sample(b, name, l,
			       (double)(f == F_QUEUED	  ? v[i].queued
					: f == F_MESSAGES ? v[i].messages
							  : v[i].full));
	}
}

void layer_census_prometheus(const struct layer_census *c, struct buf *b)
{
	scalar(b, "laurel_layer_shards", "gauge", "Shards (Redis servers) of the channel layer.",
	       (double)c->nshards);
	scalar(b, "laurel_layer_shards_up", "gauge", "Shards that answered the last census.",
	       (double)c->shards_up);
	metrics_family(b, "laurel_layer_shard_up", "gauge",
		       "1 if the shard answered the last census, else 0.");
	for (size_t i = 0; i < c->nshards; i++) {
		char l[1024], u[960];
		label(u, sizeof(u), "url", c->shards[i].url);
		snprintf(l, sizeof(l), "shard=\"%zu\",%s", i, u);
		metrics_sample(b, "laurel_layer_shard_up", l, c->shards[i].up ? 1 : 0);
	}
	scalar(b, "laurel_layer_interfaces", "gauge", "Live laurel interface processes.",
	       (double)c->interfaces);
	scalar(b, "laurel_layer_delayed_messages", "gauge",
	       "Messages the delay service holds until they are due (asgi.delay).",
	       (double)c->delayed);
	scalar(b, "laurel_layer_delayed_overdue_seconds", "gauge",
	       "How long the earliest delayed message is past its time (0: none is; more than "
	       "a second: no delay service is taking them).",
	       c->delayed_first_ms && c->delayed_first_ms < c->now_ms
		       ? (double)(c->now_ms - c->delayed_first_ms) / 1e3
		       : 0.0);
	scalar(b, "laurel_layer_messages_total", "counter",
	       "Messages sent on the layer (asgi_redis messages_count; expires a day after its "
	       "last change).",
	       (double)c->messages);
	scalar(b, "laurel_layer_sends_full_total", "counter",
	       "Sends refused because the channel was full (asgi_redis channel_full_count).",
	       (double)c->full);
	scalar(b, "laurel_layer_control_dropped_total", "counter",
	       "Disconnect messages that interfaces had to drop.", (double)c->control_dropped);
	scalar(b, "laurel_layer_channels", "gauge",
	       "Distinct channel label values found (before the cap; past it the rest is "
	       "channel=\"" LAYER_CENSUS_OTHER "\").",
	       (double)c->channels_seen);
	per_entry(b, "laurel_layer_channel_queued_messages", "gauge",
		  "Messages waiting on the channel's queues now.", "channel", c->channels,
		  c->nchannels, F_QUEUED);
	per_entry(b, "laurel_layer_channel_messages_total", "counter",
		  "Messages sent to the channel (asgi_redis messages_count; expires an hour after "
		  "its last change).",
		  "channel", c->channels, c->nchannels, F_MESSAGES);
	per_entry(b, "laurel_layer_channel_sends_full_total", "counter",
		  "Sends to the channel refused because it was full (asgi_redis "
		  "channel_full_count).",
		  "channel", c->channels, c->nchannels, F_FULL);
	if (c->groups_asked) {
		scalar(b, "laurel_layer_groups", "gauge",
		       "Groups matching the pattern asked for (before the cap).",
		       (double)c->groups_seen);
		per_entry(b, "laurel_layer_group_members", "gauge",
			  "Live members of the group (within group_expiry).", "group", c->groups,
			  c->ngroups, F_QUEUED);
	}
	scalar(b, "laurel_layer_census_duration_seconds", "gauge",
	       "How long the collection of these figures took.", c->seconds);
}
