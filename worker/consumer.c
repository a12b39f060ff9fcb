/* The consumer context: held sends, replies in the exact SPEC §4 shapes, groups, the channel
 * session, websocket consumers, and the default routes. */
#include "worker/consumer.h"
#include "worker/stats.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/response.h"
#include "common/util.h"
#include "common/json.h"

#define FULL_RETRY_MS 50

static int consumer_null(struct laurel_ctx *ctx)
{
	return 0;
}

static int consumer_accept(struct laurel_ctx *ctx)
{
	return laurel_ws_accept(ctx);
}

const struct laurel_route consumer_default_routes[] = {
	LAUREL_ROUTE("websocket.connect", consumer_accept),
	LAUREL_ROUTE("websocket.receive", consumer_null),
	LAUREL_ROUTE("websocket.disconnect", consumer_null),
	LAUREL_ROUTES_END,
};

void consumer_ctx_init(struct laurel_ctx *ctx, struct laurel_layer *layer, const char *channel,
		       const struct laurel_msg *msg, const struct laurel_msg *kwargs)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->layer = layer;
	ctx->channel = channel;
	ctx->msg = msg;
	ctx->kwargs = kwargs;
	ctx->full_wait_ms = CONSUMER_FULL_WAIT_MS;
	const char *reply = laurel_msg_get_text(msg, "reply_channel", NULL);
	if (reply && laurel_valid_channel(reply))
		ctx->reply_channel = reply;
}

static void drop_held(struct laurel_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nheld; i++)
		laurel_msg_free(ctx->held[i].msg);
	free(ctx->held);
	ctx->held = NULL;
	ctx->nheld = ctx->cap = 0;
}

void consumer_ctx_fini(struct laurel_ctx *ctx)
{
	drop_held(ctx);
	laurel_msg_free(ctx->session);
	free(ctx->session_was);
	laurel_msg_free(ctx->json_holder);
	for (size_t i = 0; i < ctx->nbuilders; i++)
		laurel_builder_free(ctx->builders[i]);
	free(ctx->builders);
	ctx->builders = NULL;
	ctx->nbuilders = 0;
	for (size_t i = 0; i < ctx->nparsed; i++)
		laurel_msg_free(ctx->parsed[i]);
	free(ctx->parsed);
	ctx->parsed = NULL;
	ctx->nparsed = 0;
	ctx->session = NULL;
	ctx->session_was = NULL;
	ctx->json_holder = NULL;
	ctx->json = NULL;
}

void consumer_discard(struct laurel_ctx *ctx)
{
	drop_held(ctx);
	laurel_msg_free(ctx->session);
	free(ctx->session_was);
	ctx->session = NULL;
	ctx->session_was = NULL;
	ctx->session_delete = false;
}

/* --- Reading --------------------------------------------------------------------------------- */

const struct laurel_msg *laurel_ctx_message(const struct laurel_ctx *ctx)
{
	return ctx->msg;
}

const char *laurel_ctx_channel(const struct laurel_ctx *ctx)
{
	return ctx->channel;
}

const char *laurel_ctx_reply_channel(const struct laurel_ctx *ctx)
{
	return ctx->reply_channel;
}

const struct laurel_value *laurel_ctx_kwargs(const struct laurel_ctx *ctx)
{
	static struct laurel_value empty = {.type = LAUREL_MAP};
	return ctx->kwargs ? laurel_msg_croot(ctx->kwargs) : &empty;
}

const char *laurel_ctx_kwarg(const struct laurel_ctx *ctx, const char *name)
{
	if (!ctx->kwargs)
		return NULL;
	return laurel_msg_get_text(ctx->kwargs, name, NULL);
}

int laurel_ctx_error(struct laurel_ctx *ctx, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ctx->error, sizeof(ctx->error), fmt, ap);
	va_end(ap);
	return err;
}

const char *laurel_ctx_error_text(const struct laurel_ctx *ctx)
{
	return ctx->error;
}

/* Application lines of error and warning level, limited per format (worker/consumer.h). */
#define APP_LOG_SLOTS 16
static _Thread_local struct app_log_slot {
	const char *fmt;
	struct log_limit lim;
} app_log[APP_LOG_SLOTS];

void laurel_ctx_log(const struct laurel_ctx *ctx, int level, const char *fmt, ...)
{
	if (level < LOG_ERROR)
		level = LOG_ERROR;
	if (level > LOG_DEBUG)
		level = LOG_DEBUG;
	if (level > log_level || !fmt)
		return;
	char text[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	const char *ch = ctx->channel ? ctx->channel : "(none)";
	const char *reply = ctx->reply_channel ? ctx->reply_channel : "(none)";
	if (level > LOG_WARN) {
		log_write(level, 0, "channel %s, reply channel %s: %s", ch, reply, text);
		return;
	}
	struct app_log_slot *slot = &app_log[((uintptr_t)fmt >> 3) % APP_LOG_SLOTS];
	if (slot->fmt != fmt) {
		slot->fmt = fmt;
		memset(&slot->lim, 0, sizeof(slot->lim));
	}
	log_write_limited(&slot->lim, level, "channel %s, reply channel %s: %s", ch, reply, text);
}

void *laurel_ctx_app_data(const struct laurel_ctx *ctx)
{
	return ctx->app_data;
}

struct laurel_builder *laurel_ctx_builder(struct laurel_ctx *ctx)
{
	ctx->builders = xrealloc(ctx->builders, (ctx->nbuilders + 1) * sizeof(*ctx->builders));
	return ctx->builders[ctx->nbuilders++] = laurel_builder_new();
}

/* --- Holding --------------------------------------------------------------------------------- */

/* Takes msg (owned) onto the held list. */
static int hold(struct laurel_ctx *ctx, bool group, const char *name, struct laurel_msg *msg)
{
	if (ctx->nheld == ctx->cap) {
		ctx->cap = ctx->cap ? 2 * ctx->cap : 4;
		ctx->held = xrealloc(ctx->held, ctx->cap * sizeof(*ctx->held));
	}
	struct consumer_held *h = &ctx->held[ctx->nheld++];
	h->group = group;
	snprintf(h->name, sizeof(h->name), "%s", name);
	h->msg = msg;
	return 0;
}

int laurel_send(struct laurel_ctx *ctx, const char *channel, const struct laurel_msg *msg)
{
	if (!channel || !msg || !laurel_valid_channel(channel))
		return -EINVAL;
	return hold(ctx, false, channel, laurel_msg_clone(msg));
}

int laurel_send_later(struct laurel_ctx *ctx, const char *channel, const struct laurel_msg *msg,
		      int64_t delay_ms)
{
	if (!channel || !msg || !laurel_valid_channel(channel) || delay_ms < 0 ||
	    delay_ms > INT64_C(10) * 365 * 86400 * 1000)
		return -EINVAL;
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_text(m, "channel", channel);
	laurel_msg_set_int(m, "delay", delay_ms);
	laurel_value_copy(m, laurel_map_put(m, laurel_msg_root(m), "content"), laurel_msg_croot(msg));
	return hold(ctx, false, "asgi.delay", m);
}

int laurel_group_send(struct laurel_ctx *ctx, const char *group, const struct laurel_msg *msg)
{
	if (!group || !msg || !laurel_valid_group(group))
		return -EINVAL;
	return hold(ctx, true, group, laurel_msg_clone(msg));
}

/* --- Replies --------------------------------------------------------------------------------- */

static int reply_owned(struct laurel_ctx *ctx, struct laurel_msg *m)
{
	if (!ctx->reply_channel) {
		laurel_msg_free(m);
		return -ENOENT;
	}
	return hold(ctx, false, ctx->reply_channel, m);
}

int laurel_reply(struct laurel_ctx *ctx, const struct laurel_msg *msg)
{
	if (!msg)
		return -EINVAL;
	return reply_owned(ctx, laurel_msg_clone(msg));
}

int laurel_reply_text(struct laurel_ctx *ctx, const char *text, size_t len)
{
	if (!text && len)
		return -EINVAL;
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_textn(m, "text", text ? text : "", len);
	return reply_owned(ctx, m);
}

int laurel_reply_bytes(struct laurel_ctx *ctx, const void *data, size_t len)
{
	if (!data && len)
		return -EINVAL;
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_bytes(m, "bytes", data ? data : "", len);
	return reply_owned(ctx, m);
}

int laurel_reply_http(struct laurel_ctx *ctx, int status, const struct laurel_header *headers,
		      size_t nheaders, const void *body, size_t len, bool more)
{
	if (status < 100 || status > 999 || (!headers && nheaders) || (!body && len))
		return -EINVAL;
	for (size_t i = 0; i < nheaders; i++)
		if (!headers[i].name || !headers[i].value)
			return -EINVAL;
	struct laurel_msg *m = response_start(status, headers, nheaders, body, len, more);
	return reply_owned(ctx, m);
}

int laurel_reply_chunk(struct laurel_ctx *ctx, const void *body, size_t len, bool more)
{
	if (!body && len)
		return -EINVAL;
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_bytes(m, "content", body ? body : "", len);
	laurel_msg_set_bool(m, "more_content", more);
	return reply_owned(ctx, m);
}

static int reply_bool(struct laurel_ctx *ctx, const char *key, bool b)
{
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_bool(m, key, b);
	return reply_owned(ctx, m);
}

int laurel_ws_accept(struct laurel_ctx *ctx)
{
	if (ctx->stream)
		return 0; /* the demultiplexer accepted */
	int rc = reply_bool(ctx, "accept", true);
	if (rc == 0)
		ctx->accepted = true;
	return rc;
}

int laurel_ws_reject(struct laurel_ctx *ctx)
{
	return reply_bool(ctx, "close", true);
}

int laurel_ws_close(struct laurel_ctx *ctx, int code)
{
	if (code == 0)
		return reply_bool(ctx, "close", true);
	if (code != 1000 && (code < 3000 || code > 4999))
		return -EINVAL;
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_int(m, "close", code);
	return reply_owned(ctx, m);
}

/* --- JSON ---------------------------------------------------------------------------------- */

int laurel_ctx_json(struct laurel_ctx *ctx, const struct laurel_value **out)
{
	if (!out)
		return -EINVAL;
	if (!ctx->json) {
		size_t len;
		const char *text = laurel_msg_get_text(ctx->msg, "text", &len);
		if (!text || ctx->stream)
			return laurel_ctx_error(ctx, -ENOENT, "the message has no text frame");
		if (!ctx->json_holder) {
			char why[200];
			ctx->json_holder = laurel_msg_new();
			struct laurel_value *slot = laurel_map_put(
				ctx->json_holder, laurel_msg_root(ctx->json_holder), "json");
			if (json_parse(text, len, JSON_POLICY_STRICT, ctx->json_holder, slot, why,
				       sizeof(why)))
				return laurel_ctx_error(ctx, -EBADMSG, "the text frame is %s", why);
			ctx->json = slot;
		}
		if (!ctx->json)
			return -EBADMSG;
	}
	*out = ctx->json;
	return 0;
}

int laurel_json_parse(struct laurel_ctx *ctx, const void *text, size_t len, unsigned flags,
		      const struct laurel_value **out)
{
	if (!out || (!text && len))
		return laurel_ctx_error(ctx, -EINVAL, "laurel_json_parse: no text or no result");
	char why[200];
	struct laurel_msg *m = laurel_msg_new();
	struct laurel_value *slot = laurel_map_put(m, laurel_msg_root(m), "json");
	if (json_parse_unique(text ? text : "", len, JSON_POLICY_STRICT,
			      (flags & LAUREL_JSON_UNIQUE_KEYS) != 0, m, slot, why, sizeof(why))) {
		laurel_msg_free(m);
		return laurel_ctx_error(ctx, -EBADMSG, "the text is %s", why);
	}
	ctx->parsed = xrealloc(ctx->parsed, (ctx->nparsed + 1) * sizeof(*ctx->parsed));
	ctx->parsed[ctx->nparsed++] = m;
	*out = slot;
	return 0;
}

const char *laurel_ctx_stream(const struct laurel_ctx *ctx)
{
	return ctx->stream;
}

/* The JSON text frame for value, wrapped in the running stream, as a new message. */
static int json_frame(struct laurel_ctx *ctx, const struct laurel_value *value,
		      struct laurel_msg **out)
{
	char *text;
	size_t len;
	if (!value) {
		/* Most likely what laurel_build_done gave for a builder misused: say why. */
		for (size_t i = ctx->nbuilders; i-- > 0;)
			if (*laurel_build_error(ctx->builders[i]))
				return laurel_ctx_error(ctx, -EINVAL, "no JSON value to send: %s",
							laurel_build_error(ctx->builders[i]));
		return laurel_ctx_error(ctx, -EINVAL, "no JSON value to send (NULL)");
	}
	int rc = json_dump(value, JSON_POLICY_STRICT, ctx->stream, &text, &len);
	if (rc)
		return laurel_ctx_error(ctx, rc,
					"the value has no JSON form (bytes, a double that is not "
					"finite, or text that is not UTF-8)");
	*out = laurel_msg_new();
	laurel_msg_set_textn(*out, "text", text, len);
	free(text);
	return 0;
}

int laurel_reply_json(struct laurel_ctx *ctx, const struct laurel_value *value)
{
	struct laurel_msg *m;
	int rc = json_frame(ctx, value, &m);
	return rc ? rc : reply_owned(ctx, m);
}

int laurel_group_send_json(struct laurel_ctx *ctx, const char *group,
			   const struct laurel_value *value)
{
	if (!group || !laurel_valid_group(group))
		return -EINVAL;
	struct laurel_msg *m;
	int rc = json_frame(ctx, value, &m);
	return rc ? rc : hold(ctx, true, group, m);
}

/* --- Groups (at once) ------------------------------------------------------------------------ */

int laurel_group_add(struct laurel_ctx *ctx, const char *group)
{
	if (!group || !laurel_valid_group(group))
		return -EINVAL;
	if (!ctx->reply_channel)
		return -ENOENT;
	return laurel_layer_group_add(ctx->layer, group, ctx->reply_channel);
}

/* --- Recovery (docs/recovery.md; the interface's side is interface/recovery.h) --------------- */

#define RECOVERY_KEY "__laurel_recovery__"
#define RECOVERY_CHUNK_BYTES (256 * 1024)

/* A recovery control message: a hold (top NULL), or a batch's head. */
static struct laurel_msg *recovery_msg(const char *group, const struct laurel_history_pos *top,
				       bool recovered, bool final)
{
	struct laurel_msg *m = laurel_msg_new();
	struct laurel_value *ctl = laurel_map_put(m, laurel_msg_root(m), RECOVERY_KEY);
	laurel_value_set_map(m, ctl, 6);
	laurel_value_set_text(m, laurel_map_put(m, ctl, "group"), group, strlen(group));
	if (!top) {
		laurel_value_set_bool(laurel_map_put(m, ctl, "hold"), true);
		return m;
	}
	laurel_value_set_text(m, laurel_map_put(m, ctl, "epoch"), top->epoch, strlen(top->epoch));
	laurel_value_set_int(laurel_map_put(m, ctl, "offset"), (int64_t)top->offset);
	laurel_value_set_bool(laurel_map_put(m, ctl, "recovered"), recovered);
	laurel_value_set_bool(laurel_map_put(m, ctl, "final"), final);
	return m;
}

/* Sends one batch: entries v[0..n) (text or bytes ones), final or not. */
static int recovery_batch(struct laurel_ctx *ctx, const char *group,
			  const struct laurel_history_pos *top, bool recovered, bool final,
			  const struct laurel_history_entry *v, size_t n)
{
	struct laurel_msg *m = recovery_msg(group, top, recovered, final);
	struct laurel_value *list = laurel_map_put(m, laurel_msg_root(m), "messages");
	laurel_value_set_list(m, list, n);
	for (size_t i = 0; i < n; i++) {
		const struct laurel_value *t = laurel_msg_get(v[i].msg, "text");
		const struct laurel_value *b = laurel_msg_get(v[i].msg, "bytes");
		const struct laurel_value *x = t && t->type == LAUREL_TEXT ? t : b;
		if (!x || (x->type != LAUREL_TEXT && x->type != LAUREL_BYTES))
			continue;
		struct laurel_value *e = laurel_list_push(m, list);
		laurel_value_set_list(m, e, 2);
		laurel_value_set_int(laurel_list_push(m, e), (int64_t)v[i].offset);
		laurel_value_copy(m, laurel_list_push(m, e), x);
	}
	int rc = laurel_layer_send(ctx->layer, ctx->reply_channel, m);
	laurel_msg_free(m);
	return rc == LAUREL_FULL ? -EAGAIN : rc;
}

int laurel_group_recover(struct laurel_ctx *ctx, const char *group, const char *epoch,
			 uint64_t offset)
{
	if (!group || !laurel_valid_group(group))
		return -EINVAL;
	if (!ctx->reply_channel)
		return -ENOENT;
	if (!epoch || !*epoch)
		return laurel_layer_group_add(ctx->layer, group, ctx->reply_channel);
	if (strlen(epoch) > LAUREL_EPOCH_LEN)
		return -EINVAL;
	if (strncmp(ctx->reply_channel, "laurel.response.", 16) != 0)
		return -ENOTSUP;
	/* The hold goes first, then the join: every live message the connection gets from now
	 * on reaches its interface after the hold, which keeps them until the batch. */
	struct laurel_msg *hold = recovery_msg(group, NULL, false, false);
	int rc = laurel_layer_send(ctx->layer, ctx->reply_channel, hold);
	laurel_msg_free(hold);
	if (rc == LAUREL_FULL)
		return -EAGAIN;
	if (rc < 0)
		return rc;
	if ((rc = laurel_layer_group_add(ctx->layer, group, ctx->reply_channel)) < 0)
		return rc;
	struct laurel_history_entry *v = NULL;
	struct laurel_history_pos top;
	size_t n = 0;
	rc = laurel_layer_group_history(ctx->layer, group, epoch, offset, &v, &n, &top);
	if (rc < 0)
		return rc;
	bool recovered = rc == 0;
	/* In batches of about RECOVERY_CHUNK_BYTES, the last one final. */
	size_t start = 0, bytes = 0;
	int src = 0;
	for (size_t i = 0; i < n && src == 0; i++) {
		size_t len = 0;
		if (!laurel_msg_get_text(v[i].msg, "text", &len))
			laurel_msg_get_bytes(v[i].msg, "bytes", &len);
		bytes += len + 16;
		if (bytes >= RECOVERY_CHUNK_BYTES && i + 1 < n) {
			src = recovery_batch(ctx, group, &top, recovered, false, v + start,
					     i + 1 - start);
			start = i + 1;
			bytes = 0;
		}
	}
	if (src == 0)
		src = recovery_batch(ctx, group, &top, recovered, true, v + start, n - start);
	laurel_history_entries_free(v, n);
	if (src < 0)
		return src;
	return recovered ? 0 : LAUREL_HISTORY_LOST;
}

int laurel_group_discard(struct laurel_ctx *ctx, const char *group)
{
	if (!group || !laurel_valid_group(group))
		return -EINVAL;
	if (!ctx->reply_channel)
		return -ENOENT;
	return laurel_layer_group_discard(ctx->layer, group, ctx->reply_channel);
}

int laurel_group_count(struct laurel_ctx *ctx, const char *group, size_t *n)
{
	if (!group || !n || !laurel_valid_group(group))
		return -EINVAL;
	return laurel_layer_group_count(ctx->layer, group, n);
}

int laurel_group_members(struct laurel_ctx *ctx, const char *group, char ***members, size_t *n)
{
	if (!group || !members || !laurel_valid_group(group))
		return -EINVAL;
	return laurel_layer_group_members(ctx->layer, group, members, n);
}

/* --- Session --------------------------------------------------------------------------------- */

int laurel_session(struct laurel_ctx *ctx, struct laurel_msg **out)
{
	if (!out)
		return -EINVAL;
	if (!ctx->reply_channel)
		return -ENOENT;
	if (!ctx->session) {
		struct laurel_msg *s = NULL;
		int rc = laurel_layer_session_load(ctx->layer, ctx->reply_channel, &s);
		if (rc) {
			laurel_msg_free(s); /* the layer may leave an empty map there */
			return rc < 0 ? rc : -EPROTO;
		}
		ctx->session = s;
		laurel_msg_encode(s, &ctx->session_was, &ctx->session_was_len);
	}
	ctx->session_delete = false;
	*out = ctx->session;
	return 0;
}

int laurel_session_delete(struct laurel_ctx *ctx)
{
	if (!ctx->reply_channel)
		return -ENOENT;
	ctx->session_delete = true;
	return 0;
}

/* --- Running --------------------------------------------------------------------------------- */

int laurel_ctx_group_name(struct laurel_ctx *ctx, const char *tmpl, char *out, size_t size)
{
	if (!tmpl || !out || !size)
		return laurel_ctx_error(ctx, -EINVAL, "laurel_ctx_group_name: no template or buffer");
	struct buf b;
	int rc = 0;
	buf_init(&b);
	for (const char *p = tmpl; *p; p++) {
		const char *close = *p == '{' ? strchr(p, '}') : NULL;
		if (!close) {
			buf_append_byte(&b, (unsigned char)*p);
			continue;
		}
		char name[128];
		snprintf(name, sizeof(name), "%.*s", (int)(close - p - 1), p + 1);
		const char *v = laurel_ctx_kwarg(ctx, name);
		if (!v) {
			rc = laurel_ctx_error(ctx, -EINVAL,
					      "group \"%s\" needs the keyword argument \"%s\"",
					      tmpl, name);
			goto out;
		}
		buf_append_str(&b, v);
		p = close;
	}
	if (b.len >= size || !laurel_valid_group(b.data ? b.data : "")) {
		rc = laurel_ctx_error(ctx, -EINVAL,
				      "group \"%s\" expands to an invalid name \"%s\"", tmpl,
				      b.data ? b.data : "");
		goto out;
	}
	memcpy(out, b.data, b.len + 1);
out:
	buf_fini(&b);
	return rc;
}

static int ws_groups(struct laurel_ctx *ctx, const struct laurel_ws_consumer *ws, bool join)
{
	for (size_t i = 0; ws->groups && ws->groups[i]; i++) {
		char name[LAUREL_NAME_MAX + 1];
		int rc = laurel_ctx_group_name(ctx, ws->groups[i], name, sizeof(name));
		if (rc)
			return rc;
		rc = join ? laurel_group_add(ctx, name) : laurel_group_discard(ctx, name);
		if (rc)
			return laurel_ctx_error(ctx, rc, "cannot %s group %s: %s",
						join ? "join" : "leave", name,
						laurel_layer_error(ctx->layer));
	}
	return 0;
}

/* Runs fn of a demultiplexer's stream consumer, in its stream. */
static int run_stream(struct laurel_ctx *ctx, const struct laurel_stream *st, laurel_consumer_fn fn,
		      const struct laurel_value *payload)
{
	if (!fn)
		return 0;
	const struct laurel_value *json = ctx->json;
	ctx->stream = st->name;
	ctx->json = payload;
	int rc = fn(ctx);
	ctx->stream = NULL;
	ctx->json = json;
	if (rc == LAUREL_CONSUME_LATER)
		return laurel_ctx_error(ctx, -EINVAL,
					"stream \"%s\": a stream consumer cannot consume later",
					st->name);
	return rc;
}

static int demux_receive(struct laurel_ctx *ctx, const struct laurel_ws_consumer *ws)
{
	const struct laurel_value *frame, *stream = NULL, *payload = NULL;
	int rc = laurel_ctx_json(ctx, &frame);
	if (rc == 0) {
		stream = laurel_map_get(frame, "stream");
		payload = laurel_map_get(frame, "payload");
	}
	if (stream && stream->type == LAUREL_TEXT && payload && payload->type == LAUREL_MAP)
		for (const struct laurel_stream *st = ws->streams; st->name; st++)
			if (strcmp(st->name, stream->u.s.ptr) == 0)
				return run_stream(ctx, st, st->consumer->receive, payload);
	if (ws->receive) {
		ctx->error[0] = '\0';
		return ws->receive(ctx);
	}
	if (rc == -ENOENT)
		return laurel_ctx_error(ctx, -EBADMSG, "a bytes frame to a demultiplexer");
	if (rc)
		return rc;
	if (!stream || stream->type != LAUREL_TEXT || !payload || payload->type != LAUREL_MAP)
		return laurel_ctx_error(ctx, -EBADMSG,
					"the frame is not {\"stream\": text, \"payload\": object}");
	return laurel_ctx_error(ctx, -EBADMSG, "no stream \"%.64s\"", stream->u.s.ptr);
}

static int run_demux(struct laurel_ctx *ctx, const struct laurel_ws_consumer *ws)
{
	int rc;
	const struct laurel_stream *st;
	if (strcmp(ctx->channel, "websocket.connect") == 0) {
		if ((rc = ws_groups(ctx, ws, true)))
			return rc;
		if ((rc = ws->connect ? ws->connect(ctx) : laurel_ws_accept(ctx)))
			return rc;
		for (st = ws->streams; st->name; st++)
			if ((rc = ws_groups(ctx, st->consumer, true)) ||
			    (rc = run_stream(ctx, st, st->consumer->connect, NULL)))
				return rc;
		return 0;
	}
	if (strcmp(ctx->channel, "websocket.receive") == 0)
		return demux_receive(ctx, ws);
	for (st = ws->streams; st->name; st++)
		if ((rc = ws_groups(ctx, st->consumer, false)) ||
		    (rc = run_stream(ctx, st, st->consumer->disconnect, NULL)))
			return rc;
	if ((rc = ws_groups(ctx, ws, false)))
		return rc;
	return ws->disconnect ? ws->disconnect(ctx) : 0;
}

static int run_ws(struct laurel_ctx *ctx, const struct laurel_ws_consumer *ws)
{
	int rc;
	if (ws->streams)
		return run_demux(ctx, ws);
	if (strcmp(ctx->channel, "websocket.connect") == 0) {
		if ((rc = ws_groups(ctx, ws, true)))
			return rc;
		return ws->connect ? ws->connect(ctx) : laurel_ws_accept(ctx);
	}
	if (strcmp(ctx->channel, "websocket.receive") == 0)
		return ws->receive ? ws->receive(ctx) : 0;
	if ((rc = ws_groups(ctx, ws, false)))
		return rc;
	return ws->disconnect ? ws->disconnect(ctx) : 0;
}

int consumer_run(struct laurel_ctx *ctx, const struct laurel_route *route)
{
	if (route->kind == LAUREL_ROUTE_WEBSOCKET)
		return run_ws(ctx, route->ws);
	return route->consumer(ctx);
}

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Sends to a channel, retrying a full one until wait_ms has passed. */
int consumer_send_patiently(struct laurel_layer *layer, const char *channel,
			    const struct laurel_msg *m, int wait_ms)
{
	int64_t deadline = util_now_ms() + wait_ms;
	for (;;) {
		int rc = laurel_layer_send(layer, channel, m);
		/* A full channel, or a Redis that is coming back (the layer retries the connection
		 * after its backoff), is worth waiting for a little. */
		if ((rc != LAUREL_FULL && rc != -ENOTCONN) || util_now_ms() >= deadline)
			return rc;
		sleep_ms(FULL_RETRY_MS);
	}
}

static const char *reply_name(const struct laurel_ctx *ctx)
{
	return ctx->reply_channel ? ctx->reply_channel : "none";
}

void consumer_save_session(struct laurel_ctx *ctx)
{
	int rc = 0;
	if (ctx->session_delete) {
		rc = laurel_layer_session_delete(ctx->layer, ctx->reply_channel);
	} else if (ctx->session) {
		char *now;
		size_t len;
		laurel_msg_encode(ctx->session, &now, &len);
		if (len != ctx->session_was_len || memcmp(now, ctx->session_was, len) != 0)
			rc = laurel_layer_session_save(ctx->layer, ctx->reply_channel,
						       ctx->session);
		free(now);
	}
	if (rc)
		log_error("channel %s, reply channel %s: cannot save the session: %s", ctx->channel,
			  reply_name(ctx), laurel_layer_error(ctx->layer));
}

size_t consumer_flush(struct laurel_ctx *ctx)
{
	consumer_save_session(ctx);
	return consumer_send_held(ctx);
}

void consumer_outbox_add(struct consumer_outbox *ob, const char *channel, struct laurel_msg *msg,
			 const char *origin)
{
	if (ob->n == ob->cap) {
		ob->cap = ob->cap ? 2 * ob->cap : 16;
		ob->items = xrealloc(ob->items, ob->cap * sizeof(*ob->items));
	}
	struct consumer_out *o = &ob->items[ob->n++];
	snprintf(o->channel, sizeof(o->channel), "%s", channel);
	o->msg = msg;
	o->origin = xstrdup(origin);
	o->full_since = 0;
}

static void outbox_add(struct consumer_outbox *ob, const struct laurel_ctx *ctx,
		       struct consumer_held *h)
{
	char origin[2 * LAUREL_NAME_MAX + 64];
	snprintf(origin, sizeof(origin), "channel %s, reply channel %s", ctx->channel,
		 reply_name(ctx));
	consumer_outbox_add(ob, h->name, h->msg, origin);
	h->msg = NULL;
}

static void outbox_clear(struct consumer_outbox *ob)
{
	for (size_t i = 0; i < ob->n; i++) {
		laurel_msg_free(ob->items[i].msg);
		free(ob->items[i].origin);
	}
	ob->n = 0;
}

void consumer_outbox_fini(struct consumer_outbox *ob)
{
	outbox_clear(ob);
	free(ob->items);
	ob->items = NULL;
	ob->cap = 0;
}

static bool is_own(const struct consumer_outbox *ob, const char *channel)
{
	for (size_t i = 0; i < ob->nown; i++)
		if (strcmp(ob->own[i], channel) == 0)
			return true;
	return false;
}

/* Whether o, refused by a full channel, waits for the next flush rather than here. */
static bool carry(const struct consumer_outbox *ob, struct consumer_out *o, size_t carried,
		  int64_t now)
{
	if (carried >= CONSUMER_CARRY_MAX || !is_own(ob, o->channel))
		return false;
	if (!o->full_since)
		o->full_since = now;
	return now - o->full_since < CONSUMER_CARRY_MS;
}

size_t consumer_outbox_flush(struct laurel_layer *layer, struct consumer_outbox *ob,
			     int full_wait_ms)
{
	if (ob->n == 0)
		return 0;
	struct laurel_outgoing *items = xmalloc(ob->n * sizeof(*items));
	for (size_t i = 0; i < ob->n; i++)
		items[i] = (struct laurel_outgoing){.channel = ob->items[i].channel,
						    .msg = ob->items[i].msg};
	laurel_layer_send_many(layer, items, ob->n);
	int64_t now = util_now_ms();
	size_t dropped = 0, kept = 0;
	for (size_t i = 0; i < ob->n; i++) {
		struct consumer_out *o = &ob->items[i];
		int rc = items[i].result;
		if (rc == LAUREL_FULL && carry(ob, o, kept, now)) {
			ob->items[kept++] = *o;
			continue;
		}
		/* A full channel, or a Redis coming back, is worth waiting for a little (in order,
		 * one at a time: the rest of the batch went out already). */
		if (rc == LAUREL_FULL || rc == -ENOTCONN) {
			if (ob->stats)
				ob->stats->held_waited++;
			rc = consumer_send_patiently(layer, o->channel, o->msg, full_wait_ms);
		}
		if (ob->stats) {
			if (rc == 0)
				ob->stats->held_ok[0]++;
			else
				ob->stats->held_dropped[0]++;
		}
		if (rc == LAUREL_FULL) {
			dropped++;
			log_limited(LOG_WARN, "%s: %s stayed full for %lld ms; message dropped",
				    o->origin, o->channel,
				    (long long)(o->full_since ? util_now_ms() - o->full_since
							      : full_wait_ms));
		} else if (rc != 0) {
			dropped++;
			log_error("%s: cannot send to channel %s: %s", o->origin, o->channel,
				  laurel_layer_error(layer));
		}
		laurel_msg_free(o->msg);
		free(o->origin);
	}
	free(items);
	ob->n = kept;
	if (ob->stats)
		ob->stats->held_carried = kept;
	return dropped;
}

size_t consumer_send_held(struct laurel_ctx *ctx)
{
	struct consumer_outbox local = {0};
	struct consumer_outbox *ob = ctx->outbox ? ctx->outbox : &local;
	size_t dropped = 0;
	for (size_t i = 0; i < ctx->nheld; i++) {
		struct consumer_held *h = &ctx->held[i];
		if (!h->group) {
			outbox_add(ob, ctx, h);
			continue;
		}
		dropped += consumer_outbox_flush(ctx->layer, ob, ctx->full_wait_ms);
		int rc = laurel_layer_group_send(ctx->layer, h->name, h->msg, NULL);
		/* A shard refused at once (down, or failing over: nothing was written) is worth
		 * waiting for a little, as a channel send is. */
		if (rc == -ENOTCONN && ob->stats)
			ob->stats->held_waited++;
		for (int64_t until = util_now_ms() + ctx->full_wait_ms;
		     rc == -ENOTCONN && util_now_ms() < until;) {
			sleep_ms(FULL_RETRY_MS);
			rc = laurel_layer_group_send(ctx->layer, h->name, h->msg, NULL);
		}
		if (ob->stats && rc == 0)
			ob->stats->held_ok[1]++;
		else if (ob->stats)
			ob->stats->held_dropped[1]++;
		if (rc == 0)
			continue;
		dropped++;
		log_error("channel %s, reply channel %s: cannot send to group %s: %s", ctx->channel,
			  reply_name(ctx), h->name, laurel_layer_error(ctx->layer));
	}
	if (ob == &local) {
		dropped += consumer_outbox_flush(ctx->layer, ob, ctx->full_wait_ms);
		consumer_outbox_fini(ob);
	}
	drop_held(ctx);
	return dropped;
}

int consumer_requeue(struct laurel_ctx *ctx)
{
	int64_t retries = 0;
	laurel_msg_get_int(ctx->msg, "__retries__", &retries);
	drop_held(ctx);
	if (retries + 1 > LAUREL_MAX_RETRIES) {
		log_warn("channel %s, reply channel %s: consumed later %d times; message dropped",
			 ctx->channel, reply_name(ctx), LAUREL_MAX_RETRIES);
		return 1;
	}
	struct laurel_msg *m = laurel_msg_clone(ctx->msg);
	laurel_msg_set_int(m, "__retries__", retries + 1);
	int rc = consumer_send_patiently(ctx->layer, ctx->channel, m, ctx->full_wait_ms);
	laurel_msg_free(m);
	if (rc == LAUREL_FULL) {
		log_warn(
			"channel %s, reply channel %s: the channel stayed full; message to consume "
			"later dropped",
			ctx->channel, reply_name(ctx));
		return 1;
	}
	if (rc < 0)
		log_error("channel %s, reply channel %s: cannot re-queue the message: %s",
			  ctx->channel, reply_name(ctx), laurel_layer_error(ctx->layer));
	return rc;
}
