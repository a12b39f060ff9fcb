/* The front of the channel layer: option parsing, name validation, the error text, and the
 * encode/decode steps both backends share. Backends get only validated arguments. */
#include "common/layer.h"
#include "common/codec.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char error_text[512];

int layer_fail(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(error_text, sizeof(error_text), fmt, ap);
	va_end(ap);
	return code;
}

void layer_clear_error(void)
{
	error_text[0] = '\0';
}

const char *laurel_layer_error(const struct laurel_layer *layer)
{
	(void)layer;
	return error_text;
}

static bool name_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.';
}

bool laurel_valid_channel(const char *name)
{
	/* ^[a-zA-Z\d\-_.]+((\?|\!)[\d\w\-_.]*)?$ and shorter than 100 characters. */
	size_t i = 0;
	if (!name)
		return false;
	while (name_char((unsigned char)name[i]))
		i++;
	if (i == 0)
		return false;
	if (name[i] == '?' || name[i] == '!') {
		i++;
		while (name_char((unsigned char)name[i]))
			i++;
	}
	return name[i] == '\0' && i < LAUREL_NAME_MAX;
}

bool laurel_valid_group(const char *name)
{
	size_t i = 0;
	if (!name)
		return false;
	while (name_char((unsigned char)name[i]))
		i++;
	return i > 0 && name[i] == '\0' && i < LAUREL_NAME_MAX;
}

size_t layer_queue_len(const char *channel)
{
	const char *bang = strchr(channel, '!');
	return bang ? (size_t)(bang - channel) + 1 : strlen(channel);
}

int layer_capacity_for(const struct layer_config *cfg, const char *channel)
{
	char queue[LAUREL_NAME_MAX + 1];
	size_t n = layer_queue_len(channel);
	if (n > LAUREL_NAME_MAX)
		n = LAUREL_NAME_MAX;
	memcpy(queue, channel, n);
	queue[n] = '\0';
	for (size_t i = 0; i < cfg->ncapacities; i++)
		if (fnmatch(cfg->capacities[i].pattern, queue, 0) == 0)
			return cfg->capacities[i].capacity;
	return cfg->capacity;
}

int layer_encode(const struct layer_config *cfg, const char *channel, const struct laurel_msg *msg,
		 struct buf *out)
{
	size_t start = out->len;
	if (strchr(channel, '!')) {
		codec_encode(msg, LAYER_CHANNEL_KEY, out);
		codec_put_str(out, channel, strlen(channel));
	} else {
		codec_encode(msg, NULL, out);
	}
	if (out->len - start > cfg->max_message) {
		size_t n = out->len - start;
		out->len = start;
		return layer_fail(-EMSGSIZE, "message for %s is %zu bytes, above the limit of %zu",
				  channel, n, cfg->max_message);
	}
	return 0;
}

int layer_decode(const char *queue, size_t queuelen, const void *payload, size_t len,
		 struct laurel_received *r)
{
	struct laurel_msg *m;
	int rc = laurel_msg_decode(payload, len, NULL, &m);
	if (rc < 0)
		return layer_fail(-EPROTO, "undecodable message on %.*s (%zu bytes)", (int)queuelen,
				  queue, len);
	memset(r, 0, sizeof(*r));
	const struct laurel_value *v = laurel_msg_get(m, LAYER_CHANNEL_KEY);
	if (v && v->type == LAUREL_TEXT && v->u.s.len <= LAUREL_NAME_MAX) {
		memcpy(r->channel, v->u.s.ptr, v->u.s.len);
		r->channel[v->u.s.len] = '\0';
	} else {
		if (queuelen > LAUREL_NAME_MAX)
			queuelen = LAUREL_NAME_MAX;
		memcpy(r->channel, queue, queuelen);
		r->channel[queuelen] = '\0';
	}
	laurel_map_remove(laurel_msg_root(m), LAYER_CHANNEL_KEY);
	v = laurel_msg_get(m, LAYER_MULTICAST_KEY);
	if (v && v->type == LAUREL_LIST) {
		r->recipients = xcalloc(v->u.list.len + 1, sizeof(char *));
		for (size_t i = 0; i < v->u.list.len; i++) {
			const struct laurel_value *e = &v->u.list.items[i];
			if (e->type == LAUREL_TEXT)
				r->recipients[r->nrecipients++] = xstrndup(e->u.s.ptr, e->u.s.len);
		}
	}
	laurel_map_remove(laurel_msg_root(m), LAYER_MULTICAST_KEY);
	r->msg = m;
	return 0;
}

void laurel_received_fini(struct laurel_received *r)
{
	if (!r)
		return;
	laurel_msg_free(r->msg);
	laurel_strv_free(r->recipients);
	memset(r, 0, sizeof(*r));
}

void laurel_strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

void layer_config_fini(struct layer_config *cfg)
{
	free(cfg->prefix);
	free(cfg->stats_prefix);
	for (size_t i = 0; i < cfg->ncapacities; i++)
		free((char *)cfg->capacities[i].pattern);
	free(cfg->capacities);
	for (size_t i = 0; i < cfg->nhistories; i++)
		free((char *)cfg->histories[i].pattern);
	free(cfg->histories);
	memset(cfg, 0, sizeof(*cfg));
}

static bool valid_prefix(const char *p)
{
	/* Key prefixes end up in Redis KEYS patterns for flush: keep them to plain characters. */
	if (!*p || strlen(p) > 64)
		return false;
	for (; *p; p++)
		if (*p == '*' || *p == '?' || *p == '[' || *p == ']' || *p == '\\' ||
		    (unsigned char)*p <= ' ')
			return false;
	return true;
}

int layer_config_init(struct layer_config *cfg, const struct laurel_layer_options *opts, char *err,
		      size_t errlen)
{
	struct laurel_layer_options o = {0};
	if (opts)
		o = *opts;
	memset(cfg, 0, sizeof(*cfg));
#define BAD(...)                                                                                   \
	do {                                                                                       \
		if (errlen)                                                                        \
			snprintf(err, errlen, __VA_ARGS__);                                        \
		layer_config_fini(cfg);                                                            \
		return -EINVAL;                                                                    \
	} while (0)
	cfg->prefix = xstrdup(o.prefix ? o.prefix : LAYER_DEFAULT_PREFIX);
	cfg->stats_prefix = xstrdup(o.stats_prefix ? o.stats_prefix : "asgi-meta:");
	cfg->expiry = o.expiry ? o.expiry : LAYER_DEFAULT_EXPIRY;
	cfg->group_expiry = o.group_expiry ? o.group_expiry : LAYER_DEFAULT_GROUP_EXPIRY;
	cfg->capacity = o.capacity ? o.capacity : LAYER_DEFAULT_CAPACITY;
	cfg->max_message = o.max_message ? o.max_message : LAUREL_MAX_MESSAGE_DEFAULT;
	cfg->connect_timeout_ms = o.connect_timeout_ms ? o.connect_timeout_ms : 2000;
	cfg->command_timeout_ms = o.command_timeout_ms ? o.command_timeout_ms : 5000;
	if (!valid_prefix(cfg->prefix))
		BAD("bad key prefix \"%s\": 1 to 64 characters, no spaces or glob characters",
		    o.prefix);
	if (!valid_prefix(cfg->stats_prefix))
		BAD("bad statistics prefix \"%s\": 1 to 64 characters, no spaces or glob characters",
		    o.stats_prefix);
	if (cfg->expiry < 1)
		BAD("expiry must be at least 1 second (got %d)", o.expiry);
	if (cfg->group_expiry < 1)
		BAD("group expiry must be at least 1 second (got %d)", o.group_expiry);
	if (cfg->capacity < 1)
		BAD("capacity must be at least 1 (got %d)", o.capacity);
	if (cfg->connect_timeout_ms < 1 || cfg->command_timeout_ms < 1)
		BAD("timeouts must be positive");
	if (o.ncapacities) {
		cfg->capacities = xcalloc(o.ncapacities, sizeof(*cfg->capacities));
		for (size_t i = 0; i < o.ncapacities; i++) {
			if (!o.capacities[i].pattern || o.capacities[i].capacity < 1)
				BAD("capacity override %zu needs a pattern and a capacity of at least 1",
				    i + 1);
			cfg->capacities[i].pattern = xstrdup(o.capacities[i].pattern);
			cfg->capacities[i].capacity = o.capacities[i].capacity;
			cfg->ncapacities++;
		}
	}
	if (o.nhistories) {
		cfg->histories = xcalloc(o.nhistories, sizeof(*cfg->histories));
		for (size_t i = 0; i < o.nhistories; i++) {
			const struct laurel_history_rule *h = &o.histories[i];
			if (!h->pattern || !*h->pattern || strlen(h->pattern) >= LAUREL_NAME_MAX)
				BAD("history rule %zu needs a group pattern (1 to %d characters)",
				    i + 1, LAUREL_NAME_MAX - 1);
			if (h->size < 1 || h->size > LAYER_HISTORY_SIZE_MAX)
				BAD("history rule %s: size %d is not between 1 and %d", h->pattern,
				    h->size, LAYER_HISTORY_SIZE_MAX);
			if (h->ttl_s < 1 || h->ttl_s > 366 * 86400)
				BAD("history rule %s: lifetime %d s is not between 1 s and a year",
				    h->pattern, h->ttl_s);
			cfg->histories[i] = *h;
			cfg->histories[i].pattern = xstrdup(h->pattern);
			cfg->nhistories++;
		}
	}
#undef BAD
	return 0;
}

const struct laurel_history_rule *layer_history_for(const struct layer_config *cfg,
						   const char *group)
{
	for (size_t i = 0; i < cfg->nhistories; i++)
		if (fnmatch(cfg->histories[i].pattern, group, 0) == 0)
			return &cfg->histories[i];
	return NULL;
}

int layer_history_parse(char *spec, struct laurel_history_rule *r, char *err, size_t errlen)
{
	char *eq = strrchr(spec, '=');
	char *slash = eq ? strchr(eq, '/') : NULL;
	char *end1 = NULL, *end2 = NULL;
	long size = 0, ttl = 0;
	if (eq && slash) {
		size = strtol(eq + 1, &end1, 10);
		ttl = strtol(slash + 1, &end2, 10);
	}
	if (!eq || eq == spec || !slash || end1 != slash || end1 == eq + 1 || !end2 || *end2 ||
	    end2 == slash + 1) {
		if (errlen)
			snprintf(err, errlen,
				 "bad history rule \"%s\": write GROUP-PATTERN=SIZE/SECONDS, e.g. "
				 "'chat-*=200/600' (the last 200 messages, kept 600 s after the last "
				 "one)",
				 spec);
		return -EINVAL;
	}
	if (size < 1 || size > LAYER_HISTORY_SIZE_MAX || ttl < 1 || ttl > 366 * 86400) {
		if (errlen)
			snprintf(err, errlen,
				 "bad history rule \"%s\": the size must be 1 to %d messages and the "
				 "lifetime 1 to 31622400 seconds",
				 spec, LAYER_HISTORY_SIZE_MAX);
		return -EINVAL;
	}
	*eq = '\0';
	r->pattern = spec;
	r->size = (int)size;
	r->ttl_s = (int)ttl;
	return 0;
}

int laurel_layer_new(struct laurel_layer **out, const struct laurel_layer_options *opts, char *err,
		     size_t errlen)
{
	static const char *const default_urls[] = {LAYER_DEFAULT_URL};
	struct layer_config cfg;
	const char *const *urls = opts && opts->nurls ? opts->urls : default_urls;
	size_t nurls = opts && opts->nurls ? opts->nurls : 1;
	if (errlen)
		err[0] = '\0';
	int rc = layer_config_init(&cfg, opts, err, errlen);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < nurls; i++) {
		if (!urls[i]) {
			if (errlen)
				snprintf(err, errlen, "layer URL %zu is missing", i + 1);
			layer_config_fini(&cfg);
			return -EINVAL;
		}
	}
	if (strcmp(urls[0], "memory://") == 0) {
		if (nurls > 1) {
			if (errlen)
				snprintf(err, errlen, "memory:// cannot be combined with other layer URLs");
			layer_config_fini(&cfg);
			return -EINVAL;
		}
		return layer_memory_new(out, &cfg);
	}
	rc = layer_redis_new(out, &cfg, urls, nurls, err, errlen);
	if (rc < 0)
		layer_config_fini(&cfg);
	return rc;
}

void laurel_layer_free(struct laurel_layer *layer)
{
	if (layer)
		layer->ops->free(layer);
}

#define CHECK_CHANNEL(name)                                                                        \
	do {                                                                                       \
		if (!laurel_valid_channel(name))                                                   \
			return layer_fail(-EINVAL, "invalid channel name \"%.120s\"",              \
					  (name) ? (name) : "(null)");                             \
	} while (0)
#define CHECK_GROUP(name)                                                                          \
	do {                                                                                       \
		if (!laurel_valid_group(name))                                                     \
			return layer_fail(-EINVAL, "invalid group name \"%.120s\"",                \
					  (name) ? (name) : "(null)");                             \
	} while (0)

int laurel_layer_check(struct laurel_layer *layer)
{
	layer_clear_error();
	return layer->ops->check ? layer->ops->check(layer) : 0;
}

int layer_check_options(const struct laurel_layer_options *opts, char *err, size_t errlen)
{
	struct laurel_layer *l;
	int rc = laurel_layer_new(&l, opts, err, errlen);
	if (rc < 0)
		return rc;
	rc = laurel_layer_check(l);
	if (rc < 0 && errlen)
		snprintf(err, errlen, "%s", laurel_layer_error(l));
	laurel_layer_free(l);
	return rc;
}

int laurel_layer_send(struct laurel_layer *layer, const char *channel, const struct laurel_msg *msg)
{
	layer_clear_error();
	CHECK_CHANNEL(channel);
	if (!msg)
		return layer_fail(-EINVAL, "no message to send on %s", channel);
	return layer->ops->send(layer, channel, msg);
}

int laurel_layer_send_many(struct laurel_layer *layer, struct laurel_outgoing *items, size_t n)
{
	layer_clear_error();
	size_t valid = 0;
	for (size_t i = 0; i < n; i++) {
		struct laurel_outgoing *it = &items[i];
		if (!laurel_valid_channel(it->channel))
			it->result = layer_fail(-EINVAL, "invalid channel name \"%.120s\"",
						it->channel ? it->channel : "(null)");
		else if (!it->msg)
			it->result = layer_fail(-EINVAL, "no message to send on %s", it->channel);
		else
			it->result = 0, valid++;
	}
	if (valid)
		layer->ops->send_many(layer, items, n);
	for (size_t i = 0; i < n; i++)
		if (items[i].result)
			return items[i].result;
	return 0;
}

int laurel_layer_receive(struct laurel_layer *layer, const char *const *channels, size_t nchannels,
			 int timeout_ms, struct laurel_received *out, size_t max, size_t *got)
{
	layer_clear_error();
	*got = 0;
	if (max < 1 || nchannels < 1)
		return layer_fail(-EINVAL, "receive needs at least one channel and room for one message");
	for (size_t i = 0; i < nchannels; i++) {
		CHECK_CHANNEL(channels[i]);
		const char *bang = strchr(channels[i], '!');
		if (bang && bang[1])
			return layer_fail(-EINVAL,
					  "receive on the process channel prefix \"%.*s\", not on \"%s\"",
					  (int)(bang - channels[i] + 1), channels[i], channels[i]);
	}
	if (timeout_ms < -1)
		timeout_ms = -1;
	return layer->ops->receive(layer, channels, nchannels, timeout_ms, out, max, got);
}

int laurel_layer_new_channel(struct laurel_layer *layer, const char *pattern, char *out)
{
	layer_clear_error();
	size_t n = pattern ? strlen(pattern) : 0;
	if (n < 2 || (pattern[n - 1] != '?' && pattern[n - 1] != '!') || n + 12 >= LAUREL_NAME_MAX ||
	    !laurel_valid_channel(pattern))
		return layer_fail(-EINVAL,
				  "new_channel needs a name ending in '?' or '!' with room for 12 "
				  "more characters, not \"%.120s\"",
				  pattern ? pattern : "(null)");
	return layer->ops->new_channel(layer, pattern, out);
}

int laurel_layer_group_add(struct laurel_layer *layer, const char *group, const char *channel)
{
	layer_clear_error();
	CHECK_GROUP(group);
	CHECK_CHANNEL(channel);
	return layer->ops->group_add(layer, group, channel);
}

int laurel_layer_group_discard(struct laurel_layer *layer, const char *group, const char *channel)
{
	layer_clear_error();
	CHECK_GROUP(group);
	CHECK_CHANNEL(channel);
	return layer->ops->group_discard(layer, group, channel);
}

int laurel_layer_group_members(struct laurel_layer *layer, const char *group, char ***members,
			       size_t *n)
{
	size_t dummy;
	layer_clear_error();
	*members = NULL;
	CHECK_GROUP(group);
	return layer->ops->group_members(layer, group, members, n ? n : &dummy);
}

int laurel_layer_group_count(struct laurel_layer *layer, const char *group, size_t *n)
{
	layer_clear_error();
	*n = 0;
	CHECK_GROUP(group);
	return layer->ops->group_count(layer, group, n);
}

int laurel_layer_group_publish(struct laurel_layer *layer, const char *group,
			       const struct laurel_msg *msg, size_t *delivered,
			       struct laurel_history_pos *pos)
{
	size_t dummy;
	struct laurel_history_pos p;
	layer_clear_error();
	if (!delivered)
		delivered = &dummy;
	if (!pos)
		pos = &p;
	*delivered = 0;
	memset(pos, 0, sizeof(*pos));
	CHECK_GROUP(group);
	if (!msg)
		return layer_fail(-EINVAL, "no message to send to group %s", group);
	if (laurel_msg_get(msg, LAYER_HISTORY_KEY))
		return layer_fail(-EINVAL, "a message for group %s may not carry the key %s", group,
				  LAYER_HISTORY_KEY);
	return layer->ops->group_send(layer, group, msg, delivered,
				      layer_history_for(&layer->cfg, group), pos);
}

int laurel_layer_group_send(struct laurel_layer *layer, const char *group,
			    const struct laurel_msg *msg, size_t *delivered)
{
	return laurel_layer_group_publish(layer, group, msg, delivered, NULL);
}

int layer_history_rules_parse(struct layer_history_rules *out, char *const *v, size_t n, char *err,
			      size_t errlen)
{
	memset(out, 0, sizeof(*out));
	size_t total = 1;
	for (size_t i = 0; i < n; i++)
		total += strlen(v[i]) + 1;
	out->text = xcalloc(total, 1);
	out->v = xcalloc(total / 2 + 1, sizeof(*out->v));
	char *w = out->text;
	for (size_t i = 0; i < n; i++) {
		strcpy(w, v[i]);
		char *save = NULL;
		for (char *tok = strtok_r(w, " ,\t\n", &save); tok;
		     tok = strtok_r(NULL, " ,\t\n", &save)) {
			if (layer_history_parse(tok, &out->v[out->n], err, errlen) < 0) {
				layer_history_rules_free(out);
				return -EINVAL;
			}
			out->n++;
		}
		w += strlen(v[i]) + 1;
	}
	return 0;
}

void layer_history_rules_free(struct layer_history_rules *r)
{
	free(r->v);
	free(r->text);
	memset(r, 0, sizeof(*r));
}

int layer_flags_parse(struct layer_flags *f, char *err, size_t errlen)
{
	return layer_history_rules_parse(&f->history, f->group_history.v, f->group_history.n, err,
					 errlen);
}

struct laurel_layer_options layer_flags_options(const struct layer_flags *f)
{
	return (struct laurel_layer_options){
		.urls = (const char *const *)f->urls.v,
		.nurls = f->urls.n,
		.prefix = f->prefix,
		.expiry = f->expiry,
		.group_expiry = f->group_expiry,
		.capacity = f->capacity,
		.histories = f->history.v,
		.nhistories = f->history.n,
	};
}

void layer_flags_fini(struct layer_flags *f)
{
	layer_history_rules_free(&f->history);
}

struct laurel_msg *layer_history_tag(const struct laurel_msg *msg, const char *group,
				     const struct laurel_history_pos *pos)
{
	struct laurel_msg *c = laurel_msg_clone(msg);
	struct laurel_value *v = laurel_map_put(c, laurel_msg_root(c), LAYER_HISTORY_KEY);
	laurel_value_set_list(c, v, 3);
	laurel_value_set_text(c, laurel_list_push(c, v), group, strlen(group));
	laurel_value_set_text(c, laurel_list_push(c, v), pos->epoch, strlen(pos->epoch));
	laurel_value_set_int(laurel_list_push(c, v), (int64_t)pos->offset);
	return c;
}

void laurel_history_entries_free(struct laurel_history_entry *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		laurel_msg_free(v[i].msg);
	free(v);
}

int laurel_layer_group_history(struct laurel_layer *layer, const char *group, const char *epoch,
			       uint64_t after, struct laurel_history_entry **out, size_t *n,
			       struct laurel_history_pos *top)
{
	struct laurel_history_pos p;
	layer_clear_error();
	*out = NULL;
	*n = 0;
	if (!top)
		top = &p;
	memset(top, 0, sizeof(*top));
	CHECK_GROUP(group);
	const struct laurel_history_rule *rule = layer_history_for(&layer->cfg, group);
	if (!rule)
		return layer_fail(-EINVAL, "group %s has no history: no history rule matches it",
				  group);
	uint64_t first = 0;
	int rc = layer->ops->group_history(layer, group, rule, after, out, n, top, &first);
	top->first = first;
	if (rc < 0 || !epoch)
		return rc;
	if (strcmp(epoch, top->epoch) != 0 || after > top->offset || after + 1 < first) {
		laurel_history_entries_free(*out, *n);
		*out = NULL;
		*n = 0;
		if (strcmp(epoch, top->epoch) != 0)
			layer_fail(LAUREL_HISTORY_LOST,
				   "group %s: epoch %.20s is not the history's (now \"%s\")", group,
				   epoch, top->epoch);
		else if (after > top->offset)
			layer_fail(LAUREL_HISTORY_LOST,
				   "group %s: offset %llu is past the last one (%llu)", group,
				   (unsigned long long)after, (unsigned long long)top->offset);
		else
			layer_fail(LAUREL_HISTORY_LOST,
				   "group %s: messages after %llu are no longer kept (the history "
				   "begins at %llu)",
				   group, (unsigned long long)after, (unsigned long long)first);
		return LAUREL_HISTORY_LOST;
	}
	return 0;
}

static int check_prefix(const char *prefix)
{
	size_t n = prefix ? strlen(prefix) : 0;
	if (n < 2 || prefix[n - 1] != '!' || !laurel_valid_channel(prefix))
		return layer_fail(-EINVAL, "not a process channel prefix (\"name!\"): \"%.120s\"",
				  prefix ? prefix : "(null)");
	return 0;
}

int laurel_layer_announce(struct laurel_layer *layer, const char *process_prefix, int ttl_s)
{
	layer_clear_error();
	int rc = check_prefix(process_prefix);
	if (rc < 0)
		return rc;
	if (ttl_s < 1)
		return layer_fail(-EINVAL, "announce needs a ttl of at least 1 second");
	return layer->ops->announce(layer, process_prefix, ttl_s);
}

int laurel_layer_withdraw(struct laurel_layer *layer, const char *process_prefix)
{
	layer_clear_error();
	int rc = check_prefix(process_prefix);
	if (rc < 0)
		return rc;
	return layer->ops->withdraw(layer, process_prefix);
}

int laurel_layer_interfaces(struct laurel_layer *layer, char ***prefixes, size_t *n)
{
	size_t dummy;
	layer_clear_error();
	*prefixes = NULL;
	return layer->ops->interfaces(layer, prefixes, n ? n : &dummy);
}

int laurel_layer_watch_fd(struct laurel_layer *layer, int fd)
{
	layer_clear_error();
	if (fd < -1)
		return layer_fail(-EINVAL, "watch_fd needs a descriptor or -1, not %d", fd);
	return layer->ops->watch_fd(layer, fd);
}

/* Scheduled entries: 16 random hex digits (so equal messages stay distinct members), then the
 * msgpack map {channel, content}. */
#define SCHEDULE_ID_LEN 16

int laurel_layer_schedule(struct laurel_layer *layer, const char *channel,
			  const struct laurel_msg *msg, int64_t due_ms)
{
	static _Thread_local struct util_rng rng;
	static _Thread_local bool seeded;
	layer_clear_error();
	CHECK_CHANNEL(channel);
	if (!msg)
		return layer_fail(-EINVAL, "no message to schedule for %s", channel);
	if (due_ms < 0)
		return layer_fail(-EINVAL, "a due time before 1970 (%lld ms)", (long long)due_ms);
	struct laurel_msg *stored = laurel_msg_new();
	laurel_msg_set_text(stored, "channel", channel);
	laurel_value_copy(stored, laurel_map_put(stored, laurel_msg_root(stored), "content"),
			  laurel_msg_croot(msg));
	char *data;
	size_t len;
	laurel_msg_encode(stored, &data, &len);
	laurel_msg_free(stored);
	if (len > layer->cfg.max_message) {
		free(data);
		return layer_fail(-EMSGSIZE, "a message of %zu bytes for %s is larger than %zu",
				  len, channel, layer->cfg.max_message);
	}
	if (!seeded) {
		util_rng_init(&rng);
		seeded = true;
	}
	char *member = xmalloc(SCHEDULE_ID_LEN + len);
	util_rng_hex(&rng, member, SCHEDULE_ID_LEN);
	memcpy(member + SCHEDULE_ID_LEN, data, len);
	free(data);
	int rc = layer->ops->schedule(layer, member, SCHEDULE_ID_LEN + len, due_ms);
	free(member);
	return rc;
}

struct take_state {
	struct laurel_due *out;
	size_t got;
};

static void take_one(void *arg, const char *member, size_t len, int64_t due_ms)
{
	struct take_state *st = arg;
	struct laurel_msg *stored = NULL;
	const char *channel;
	const struct laurel_value *content;
	if (len <= SCHEDULE_ID_LEN ||
	    laurel_msg_decode(member + SCHEDULE_ID_LEN, len - SCHEDULE_ID_LEN, NULL, &stored) ||
	    !(channel = laurel_msg_get_text(stored, "channel", NULL)) ||
	    !laurel_valid_channel(channel) || !(content = laurel_msg_get(stored, "content")) ||
	    content->type != LAUREL_MAP) {
		log_warn("dropped a scheduled message that does not decode (%zu bytes)", len);
		laurel_msg_free(stored);
		return;
	}
	struct laurel_due *d = &st->out[st->got++];
	snprintf(d->channel, sizeof(d->channel), "%s", channel);
	d->msg = laurel_msg_new();
	laurel_value_copy(d->msg, laurel_msg_root(d->msg), content);
	d->due_ms = due_ms;
	laurel_msg_free(stored);
}

int laurel_layer_take_due(struct laurel_layer *layer, int64_t now_ms, struct laurel_due *out,
			  size_t max, size_t *got, int64_t *next_ms)
{
	layer_clear_error();
	*got = 0;
	*next_ms = -1;
	if (max < 1)
		return layer_fail(-EINVAL, "take_due needs room for one message");
	struct take_state st = {out, 0};
	int rc = layer->ops->take_due(layer, now_ms, max, take_one, &st, next_ms);
	*got = st.got;
	return rc;
}

int laurel_layer_flush(struct laurel_layer *layer)
{
	layer_clear_error();
	return layer->ops->flush(layer);
}

int laurel_layer_stats(struct laurel_layer *layer, const char *channel, struct laurel_stats *out)
{
	layer_clear_error();
	memset(out, 0, sizeof(*out));
	out->messages_pending = -1;
	out->messages_max_age = -1;
	out->control_dropped = channel ? -1 : 0;
	if (channel)
		CHECK_CHANNEL(channel);
	return layer->ops->stats(layer, channel, out);
}

#define SESSION_KEY_MAX (LAUREL_NAME_MAX + 16)

static int session_key(const char *reply_channel, char *key)
{
	if (!laurel_valid_channel(reply_channel))
		return layer_fail(-EINVAL, "invalid channel name \"%.120s\"",
				  reply_channel ? reply_channel : "(null)");
	snprintf(key, SESSION_KEY_MAX, "session:%s", reply_channel);
	return 0;
}

int laurel_layer_session_load(struct laurel_layer *layer, const char *reply_channel,
			      struct laurel_msg **out)
{
	char key[SESSION_KEY_MAX];
	layer_clear_error();
	*out = NULL;
	int rc = session_key(reply_channel, key);
	if (rc < 0)
		return rc;
	char *data = NULL;
	size_t len = 0;
	rc = layer->ops->kv_get(layer, key, &data, &len);
	if (rc < 0)
		return rc;
	if (!data) {
		*out = laurel_msg_new();
		return 0;
	}
	rc = laurel_msg_decode(data, len, NULL, out);
	free(data);
	if (rc < 0) {
		*out = laurel_msg_new();
		return layer_fail(-EPROTO, "the session of %s does not decode", reply_channel);
	}
	return 0;
}

int laurel_layer_session_save(struct laurel_layer *layer, const char *reply_channel,
			      const struct laurel_msg *session)
{
	char key[SESSION_KEY_MAX];
	layer_clear_error();
	int rc = session_key(reply_channel, key);
	if (rc < 0)
		return rc;
	struct buf b;
	buf_init(&b);
	codec_encode(session, NULL, &b);
	if (b.len > layer->cfg.max_message) {
		rc = layer_fail(-EMSGSIZE, "the session of %s is %zu bytes, above the limit of %zu",
				reply_channel, b.len, layer->cfg.max_message);
	} else {
		rc = layer->ops->kv_set(layer, key, b.data, b.len, layer->cfg.group_expiry);
	}
	buf_fini(&b);
	return rc;
}

int laurel_layer_session_delete(struct laurel_layer *layer, const char *reply_channel)
{
	char key[SESSION_KEY_MAX];
	layer_clear_error();
	int rc = session_key(reply_channel, key);
	if (rc < 0)
		return rc;
	return layer->ops->kv_del(layer, key);
}
