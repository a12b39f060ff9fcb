/* The worker loop: batches of messages from the layer, checked, routed, consumed, flushed. */
#include "worker/worker.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/util.h"
#include "routing/routing.h"
#include "worker/consumer.h"
#include "worker/ordering.h"
#include "worker/stats.h"

#define DEFAULT_BATCH 8
#define MAX_BATCH 1000
/* A blocking receive returns this often so that a stop request is noticed. */
#define RECEIVE_WAIT_MS 1000
/* The longest a reply waits for the rest of its batch. */
#define BATCH_HOLD_MS 5
/* How soon messages carried for a full channel of the worker's own are tried again. */
#define CARRY_RETRY_MS 20

struct worker {
	struct laurel_layer *layer;
	bool shared_layer; /* borrowed from worker_options.shared_layer */
	struct routing *routing;
	const char **channels; /* NULL-terminated, borrowed from the routing */
	size_t nchannels;
	size_t batch;
	int full_wait_ms;
	void *app_data;
	struct consumer_outbox outbox; /* replies of the batch in hand */
	bool layer_down; /* for one warning per outage */
	/* Counting (worker_options.stats): this process's record, the channels' entries in the
	 * name table (by index in channels), and the routes' as they are first matched. */
	struct wstats *stats;
	struct wstats_proc *me;
	int *channel_idx;
	struct route_idx {
		const struct laurel_route *route;
		int idx;
	} *route_idx;
	size_t nroute_idx;
};

static void name_route(void *arg, const struct laurel_route *r);
static int route_index(struct worker *w, const struct laurel_route *r);

int worker_new(struct worker **out, const struct worker_options *o, char *err, size_t errlen)
{
	struct worker *w = xcalloc(1, sizeof(*w));
	int rc;
	w->batch = o->batch ? o->batch : DEFAULT_BATCH;
	if (w->batch > MAX_BATCH)
		w->batch = MAX_BATCH;
	w->full_wait_ms = o->full_wait_ms > 0 ? o->full_wait_ms : CONSUMER_FULL_WAIT_MS;
	w->app_data = o->app_data;
	if ((rc = routing_new(&w->routing, o->routes, consumer_default_routes, err, errlen)))
		goto fail;
	w->channels = routing_select(w->routing, o->only, o->nonly, o->exclude, o->nexclude,
				     &w->nchannels);
	w->outbox.own = (const char *const *)w->channels;
	w->outbox.nown = w->nchannels;
	if (w->nchannels == 0) {
		snprintf(err, errlen,
			 "no channel to listen on: --only-channels and --exclude-channels leave "
			 "none of the routing's channels");
		rc = -EINVAL;
		goto fail;
	}
	if (o->stats && o->stats_proc) {
		w->stats = o->stats;
		w->me = o->stats_proc;
		w->outbox.stats = w->me;
		w->channel_idx = xcalloc(w->nchannels, sizeof(*w->channel_idx));
		for (size_t i = 0; i < w->nchannels; i++)
			w->channel_idx[i] = wstats_name(w->stats->channels, w->channels[i]);
		/* Every route is a label from the start (at 0), so that the first messages show
		 * in a rate. */
		routing_each_route(w->routing, name_route, w);
	}
	if (o->shared_layer) {
		w->layer = o->shared_layer;
		w->shared_layer = true;
	} else if ((rc = laurel_layer_new(&w->layer, &o->layer, err, errlen))) {
		goto fail;
	}
	*out = w;
	return 0;
fail:
	worker_free(w);
	return rc;
}

void worker_free(struct worker *w)
{
	if (!w)
		return;
	if (!w->shared_layer)
		laurel_layer_free(w->layer);
	consumer_outbox_fini(&w->outbox);
	free(w->channels);
	free(w->channel_idx);
	free(w->route_idx);
	routing_free(w->routing);
	free(w);
}

const char *const *worker_channels(const struct worker *w, size_t *n)
{
	if (n)
		*n = w->nchannels;
	return w->channels;
}

struct laurel_layer *worker_layer(struct worker *w)
{
	return w->layer;
}

/* --- Checking messages ------------------------------------------------------------------------
 * The fields of the ASGI 1 messages (SPEC §4) that consumers rely on. Optional fields may also be
 * nil (client and server are nil on a unix socket). */

struct field_rule {
	const char *channel;
	const char *field;
	enum laurel_type type;
	bool required;
};

static const struct field_rule rules[] = {
	{"http.request", "reply_channel", LAUREL_TEXT, true},
	{"http.request", "method", LAUREL_TEXT, true},
	{"http.request", "path", LAUREL_TEXT, true},
	{"http.request", "http_version", LAUREL_TEXT, false},
	{"http.request", "scheme", LAUREL_TEXT, false},
	{"http.request", "root_path", LAUREL_TEXT, false},
	{"http.request", "query_string", LAUREL_BYTES, false},
	{"http.request", "headers", LAUREL_LIST, false},
	{"http.request", "body", LAUREL_BYTES, false},
	{"http.request", "body_channel", LAUREL_TEXT, false},
	{"http.request", "client", LAUREL_LIST, false},
	{"http.request", "server", LAUREL_LIST, false},
	{"http.disconnect", "reply_channel", LAUREL_TEXT, true},
	{"http.disconnect", "path", LAUREL_TEXT, false},
	{"websocket.connect", "reply_channel", LAUREL_TEXT, true},
	{"websocket.connect", "path", LAUREL_TEXT, true},
	{"websocket.connect", "headers", LAUREL_LIST, false},
	{"websocket.connect", "query_string", LAUREL_BYTES, false},
	{"websocket.connect", "order", LAUREL_INT, false},
	{"websocket.connect", "client", LAUREL_LIST, false},
	{"websocket.connect", "server", LAUREL_LIST, false},
	{"websocket.receive", "reply_channel", LAUREL_TEXT, true},
	{"websocket.receive", "path", LAUREL_TEXT, true},
	{"websocket.receive", "order", LAUREL_INT, false},
	{"websocket.receive", "text", LAUREL_TEXT, false},
	{"websocket.receive", "bytes", LAUREL_BYTES, false},
	{"websocket.disconnect", "reply_channel", LAUREL_TEXT, true},
	{"websocket.disconnect", "path", LAUREL_TEXT, true},
	{"websocket.disconnect", "code", LAUREL_INT, false},
	{"websocket.disconnect", "order", LAUREL_INT, false},
};

static bool headers_ok(const struct laurel_value *h)
{
	for (size_t i = 0; i < h->u.list.len; i++) {
		const struct laurel_value *pair = &h->u.list.items[i];
		if (pair->type != LAUREL_LIST || pair->u.list.len != 2 ||
		    pair->u.list.items[0].type != LAUREL_BYTES ||
		    pair->u.list.items[1].type != LAUREL_BYTES)
			return false;
	}
	return true;
}

/* Returns true if msg has the fields its channel needs; else says why. */
static bool check_message(const char *channel, const struct laurel_msg *msg, char *why, size_t size)
{
	const struct laurel_value *v = laurel_msg_get(msg, "reply_channel");
	if (v && v->type != LAUREL_NIL &&
	    (v->type != LAUREL_TEXT || !laurel_valid_channel(v->u.s.ptr))) {
		snprintf(why, size, "reply_channel is not a valid channel name");
		return false;
	}
	for (size_t i = 0; i < ARRAY_SIZE(rules); i++) {
		const struct field_rule *r = &rules[i];
		if (strcmp(r->channel, channel) != 0)
			continue;
		v = laurel_msg_get(msg, r->field);
		if (!v || (v->type == LAUREL_NIL && !r->required)) {
			if (!r->required)
				continue;
			snprintf(why, size, "missing field \"%s\"", r->field);
			return false;
		}
		if (v->type != r->type) {
			snprintf(why, size, "field \"%s\" is %s, not %s", r->field,
				 laurel_type_name(v->type), laurel_type_name(r->type));
			return false;
		}
		if (strcmp(r->field, "headers") == 0 && !headers_ok(v)) {
			snprintf(why, size, "field \"headers\" is not a list of [bytes, bytes]");
			return false;
		}
	}
	if (strcmp(channel, "websocket.receive") == 0) {
		const struct laurel_value *t = laurel_msg_get(msg, "text");
		const struct laurel_value *b = laurel_msg_get(msg, "bytes");
		bool has_t = t && t->type != LAUREL_NIL, has_b = b && b->type != LAUREL_NIL;
		if (has_t == has_b) {
			snprintf(why, size, "%s",
				 has_t ? "both text and bytes" : "no text or bytes");
			return false;
		}
	}
	return true;
}

/* The reply channel for log lines: a name that passed the checks, else a placeholder. */
static const char *reply_for_log(const struct laurel_msg *msg)
{
	const char *reply = laurel_msg_get_text(msg, "reply_channel", NULL);
	if (!reply)
		return "none";
	return laurel_valid_channel(reply) ? reply : "(invalid)";
}

static void name_route(void *arg, const struct laurel_route *r)
{
	route_index(arg, r);
}

/* --- Handling -------------------------------------------------------------------------------- */

static int channel_index(struct worker *w, const char *channel)
{
	for (size_t i = 0; i < w->nchannels; i++)
		if (w->channels[i] == channel || strcmp(w->channels[i], channel) == 0)
			return w->channel_idx[i];
	return wstats_name(w->stats->channels, channel);
}

static int route_index(struct worker *w, const struct laurel_route *r)
{
	for (size_t i = 0; i < w->nroute_idx; i++)
		if (w->route_idx[i].route == r)
			return w->route_idx[i].idx;
	w->route_idx = xrealloc(w->route_idx, (w->nroute_idx + 1) * sizeof(*w->route_idx));
	struct route_idx *ri = &w->route_idx[w->nroute_idx++];
	ri->route = r;
	ri->idx = wstats_name(w->stats->routes, routing_route_name(r));
	return ri->idx;
}

/* Counts what became of a message (route: NULL if none matched). */
static void count(struct worker *w, const char *channel, const struct laurel_route *route,
		  enum wstats_result result)
{
	if (!w->me)
		return;
	w->me->channel[channel_index(w, channel)][result]++;
	if (route)
		w->me->route[route_index(w, route)][result]++;
}

/* Handles one message; its channel sends wait in w->outbox. */
static enum worker_outcome handle(struct worker *w, const char *channel,
				  const struct laurel_msg *msg)
{
	char why[256];
	if (!check_message(channel, msg, why, sizeof(why))) {
		log_warn("channel %s, reply channel %s: malformed message (%s); dropped", channel,
			 reply_for_log(msg), why);
		count(w, channel, NULL, WSTATS_DROPPED);
		return WORKER_DROPPED;
	}
	struct routing_match m;
	if (routing_match(w->routing, channel, msg, &m) == ROUTING_NONE) {
		const char *reply = laurel_msg_get_text(msg, "reply_channel", NULL);
		if (strcmp(channel, "http.request") == 0 && reply) {
			/* Nobody will answer it: say so now rather than let the client wait for
			 * the interface's timeout. */
			struct laurel_msg *r = laurel_msg_new();
			laurel_msg_set_int(r, "status", 404);
			struct laurel_value *h = laurel_map_put(r, laurel_msg_root(r), "headers");
			laurel_value_set_list(r, h, 1);
			struct laurel_value *pair = laurel_list_push(r, h);
			laurel_value_set_list(r, pair, 2);
			laurel_value_set_bytes(r, laurel_list_push(r, pair), "Content-Type", 12);
			laurel_value_set_bytes(r, laurel_list_push(r, pair), "text/plain", 10);
			laurel_msg_set_bytes(r, "content", "Not Found\n", 10);
			laurel_msg_set_bool(r, "more_content", false);
			int rc = laurel_layer_send(w->layer, reply, r);
			laurel_msg_free(r);
			log_warn("channel %s, reply channel %s: no route matches; answered 404%s",
				 channel, reply, rc == 0 ? "" : " (not sent)");
			count(w, channel, NULL, WSTATS_DROPPED);
			return WORKER_DROPPED;
		}
		log_warn("channel %s, reply channel %s: no route matches; dropped", channel,
			 reply_for_log(msg));
		count(w, channel, NULL, WSTATS_DROPPED);
		return WORKER_DROPPED;
	}
	struct laurel_ctx ctx;
	enum worker_outcome outcome = WORKER_DONE;
	consumer_ctx_init(&ctx, w->layer, channel, msg, m.kwargs);
	ctx.full_wait_ms = w->full_wait_ms;
	ctx.app_data = w->app_data;
	ctx.outbox = &w->outbox;
	log_debug("channel %s, reply channel %s: consumer %s", channel, reply_for_log(msg),
		  routing_route_name(m.route));
	bool ordered = (m.route->flags & LAUREL_ORDERED) ||
		       (m.route->kind == LAUREL_ROUTE_WEBSOCKET && m.route->ws->strict_ordering);
	int64_t order = 0;
	if (ordered) {
		enum ordering_verdict v = ordering_begin(&ctx, &order);
		if (v != ORDERING_RUN) {
			outcome = v == ORDERING_WAITED ? WORKER_WAITING : WORKER_DROPPED;
			count(w, channel, m.route,
			      v == ORDERING_WAITED ? WSTATS_WAITING : WSTATS_DROPPED);
			goto out;
		}
	}
	int64_t started = w->me ? util_now_us() : 0;
	int rc = consumer_run(&ctx, m.route);
	if (w->me)
		metrics_observe(&w->me->run[route_index(w, m.route)],
				(double)(util_now_us() - started) / 1e6);
	if (rc == 0) {
		count(w, channel, m.route, WSTATS_OK);
		if (ordered)
			ordering_done(&ctx, order);
		else
			consumer_flush(&ctx);
	} else if (rc == LAUREL_CONSUME_LATER || rc == -ENOTCONN) {
		/* A consumer that failed because the layer refused its calls at once (a shard
		 * down, or failing over under Sentinel) had nothing carried out in Redis: its
		 * message goes back on its channel, as consume-later, instead of being lost. */
		if (rc == -ENOTCONN)
			log_limited(LOG_WARN,
				    "channel %s, reply channel %s: the channel layer was unreachable "
				    "(%s); message queued again",
				    channel, reply_for_log(msg), laurel_layer_error(w->layer));
		outcome = consumer_requeue(&ctx) == 0 ? WORKER_LATER : WORKER_DROPPED;
		count(w, channel, m.route, outcome == WORKER_LATER ? WSTATS_LATER : WSTATS_DROPPED);
		if (ordered && outcome == WORKER_DROPPED) {
			consumer_discard(&ctx);
			ordering_done(&ctx, order);
		}
	} else {
		if (rc > 0)
			snprintf(ctx.error, sizeof(ctx.error), "unknown return value %d", rc);
		else if (!ctx.error[0])
			snprintf(ctx.error, sizeof(ctx.error), "%s", strerror(-rc));
		/* A failed websocket.connect is a refused handshake: the client hears 403 now
		 * instead of waiting out the interface's connect timeout ({close: true} is
		 * Channels 1's own refusal, which Daphne understands too). */
		bool refuse = strcmp(channel, "websocket.connect") == 0 &&
			      laurel_msg_get_text(msg, "reply_channel", NULL);
		log_error("channel %s, reply channel %s: consumer %s failed: %s; message dropped, "
			  "%s",
			  channel, reply_for_log(msg), routing_route_name(m.route),
			  ctx.error, refuse ? "the handshake refused (403)" : "nothing sent");
		outcome = WORKER_DROPPED;
		count(w, channel, m.route, WSTATS_FAILED);
		consumer_discard(&ctx);
		if (ordered) {
			/* A failed message must not hold its successors up for ever. */
			ordering_done(&ctx, order);
		}
		if (refuse) {
			struct laurel_msg *deny = laurel_msg_new();
			laurel_msg_set_bool(deny, "close", true);
			consumer_send_patiently(w->layer, laurel_msg_get_text(msg, "reply_channel", NULL),
						deny, w->full_wait_ms);
			laurel_msg_free(deny);
		}
	}
out:
	consumer_ctx_fini(&ctx);
	routing_match_fini(&m);
	return outcome;
}

enum worker_outcome worker_handle(struct worker *w, const char *channel,
				  const struct laurel_msg *msg)
{
	enum worker_outcome outcome = handle(w, channel, msg);
	consumer_outbox_flush(w->layer, &w->outbox, w->full_wait_ms);
	return outcome;
}

int worker_run(struct worker *w, volatile sig_atomic_t *stop)
{
	struct laurel_received *got = xcalloc(w->batch, sizeof(*got));
	while (!*stop) {
		size_t n = 0;
		/* Messages carried for a full channel of our own are tried again soon. */
		int wait = consumer_outbox_carried(&w->outbox) ? CARRY_RETRY_MS : RECEIVE_WAIT_MS;
		int rc = laurel_layer_receive(w->layer, w->channels, w->nchannels, wait, got,
					      w->batch, &n);
		if (rc < 0) {
			if (w->me) {
				w->me->receive_errors++;
				w->me->layer_down = true;
			}
			/* An outage is logged by the layer, once; anything else here. */
			if (!w->layer_down && rc != -ENOTCONN)
				log_warn("cannot receive: %s", laurel_layer_error(w->layer));
			w->layer_down = true;
			/* The layer backs off by itself when Redis is down; this only keeps an
			 * unexpected error from spinning. */
			struct timespec ts = {.tv_nsec = 100 * 1000000L};
			nanosleep(&ts, NULL);
			continue;
		}
		if (w->layer_down)
			log_debug("receiving again");
		w->layer_down = false;
		if (w->me) {
			w->me->turned_ms = util_now_ms();
			w->me->layer_down = false;
			if (n)
				wstats_batch(w->me, n);
		}
		/* The batch's replies go out together, in one round trip, once it is handled — or
		 * as soon as it has taken BATCH_HOLD_MS, so that a slow consumer does not hold the
		 * replies of the messages before it. */
		int64_t since = util_now_ms();
		for (size_t i = 0; i < n; i++) {
			handle(w, got[i].channel, got[i].msg);
			laurel_received_fini(&got[i]);
			if (i + 1 < n && util_now_ms() - since >= BATCH_HOLD_MS) {
				consumer_outbox_flush(w->layer, &w->outbox, w->full_wait_ms);
				since = util_now_ms();
			}
		}
		consumer_outbox_flush(w->layer, &w->outbox, w->full_wait_ms);
	}
	/* Stopping: what is still carried is waited for like any other full channel now (other
	 * workers may read it). */
	w->outbox.nown = 0;
	consumer_outbox_flush(w->layer, &w->outbox, w->full_wait_ms);
	free(got);
	return 0;
}
