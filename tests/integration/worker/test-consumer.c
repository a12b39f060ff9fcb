/* The consumer API on the in-memory layer, through worker_handle: the reply shapes of SPEC §4,
 * argument errors, sends held until the consumer returns and dropped when it fails, the session
 * saved only when it changed, websocket group templates, and consume-later counting. */
#include "tests/lib/test.h"

#include <errno.h>
#include <stdlib.h>

#include "common/util.h"
#include "laurel/consumer.h"
#include "laurel/layer.h"
#include "laurel/routing.h"
#include "worker/consumer.h"
#include "worker/worker.h"

static int seen_errors[16];
static size_t nseen;

static int recover_other;

static int c_shapes(struct laurel_ctx *ctx)
{
	static const struct laurel_header h[] = {{"X-A", "1"}, {"x-b", ""}};
	laurel_ws_close(ctx, 0);
	laurel_ws_close(ctx, 4001);
	laurel_ws_reject(ctx);
	laurel_reply_http(ctx, 404, h, 2, "no", 2, false);
	/* Argument errors hold nothing. */
	seen_errors[nseen++] = laurel_ws_close(ctx, 999);
	seen_errors[nseen++] = laurel_ws_close(ctx, 1011); /* not an application's code */
	seen_errors[nseen++] = laurel_reply_http(ctx, 99, NULL, 0, NULL, 0, false);
	seen_errors[nseen++] = laurel_send(ctx, "bad name", laurel_ctx_message(ctx));
	seen_errors[nseen++] = laurel_group_send(ctx, "bad!group", laurel_ctx_message(ctx));
	seen_errors[nseen++] = laurel_group_add(ctx, "");
	seen_errors[nseen++] = laurel_group_recover(ctx, "", "0123456789abcdef", 1);
	seen_errors[nseen++] = laurel_group_recover(ctx, "g", "0123456789abcdef0", 1);
	/* Not a laurel interface's reply channel: no envelopes for it. */
	recover_other = laurel_group_recover(ctx, "g", "0123456789abcdef", 1);
	return 0;
}

static int c_noreply(struct laurel_ctx *ctx)
{
	struct laurel_msg *s;
	seen_errors[nseen++] = laurel_reply_text(ctx, "x", 1);
	seen_errors[nseen++] = laurel_session(ctx, &s);
	seen_errors[nseen++] = laurel_group_add(ctx, "g");
	seen_errors[nseen++] = laurel_group_recover(ctx, "g", "0123456789abcdef", 1);
	CHECK(laurel_ctx_reply_channel(ctx) == NULL);
	return 0;
}

static int c_session(struct laurel_ctx *ctx)
{
	struct laurel_msg *s;
	int rc = laurel_session(ctx, &s);
	if (rc)
		return rc;
	int64_t n = 0;
	laurel_msg_get_int(s, "n", &n);
	const char *mode = laurel_msg_get_text(laurel_ctx_message(ctx), "mode", NULL);
	if (strcmp(mode, "inc") == 0)
		laurel_msg_set_int(s, "n", n + 1);
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_int(m, "n", n);
	laurel_reply(ctx, m);
	laurel_msg_free(m);
	if (strcmp(mode, "fail") == 0) {
		laurel_msg_set_int(s, "n", 100);
		return -EIO;
	}
	return 0;
}

static int c_kwargs(struct laurel_ctx *ctx)
{
	const char *room = laurel_ctx_kwarg(ctx, "room");
	CHECK_STR(room, "r7");
	CHECK(laurel_ctx_kwarg(ctx, "nothing") == NULL);
	CHECK_EQ(laurel_ctx_kwargs(ctx)->u.map.len, 1);
	CHECK_STR(laurel_ctx_channel(ctx), "kw.test");
	return laurel_reply_text(ctx, room, strlen(room));
}

/* enforce_ordering: each receive answers with its order. */
static int c_ordered(struct laurel_ctx *ctx)
{
	int64_t order = -1;
	char text[32];
	laurel_msg_get_int(laurel_ctx_message(ctx), "order", &order);
	snprintf(text, sizeof(text), "%lld", (long long)order);
	if (laurel_msg_get(laurel_ctx_message(ctx), "fail"))
		return laurel_ctx_error(ctx, -EIO, "failing on purpose");
	return laurel_reply_text(ctx, text, strlen(text));
}

static const struct laurel_ws_consumer ws_ordered = {
	.receive = c_ordered,
	.strict_ordering = true,
};

/* JSON: {"got": the parsed text}; {"bytes": true} tries a value without a JSON form. */
static int c_json(struct laurel_ctx *ctx)
{
	const struct laurel_value *v;
	int rc = laurel_ctx_json(ctx, &v);
	if (rc)
		return rc;
	struct laurel_msg *m = laurel_msg_new();
	struct laurel_value *got = laurel_map_put(m, laurel_msg_root(m), "got");
	laurel_value_copy(m, got, v);
	if (laurel_map_get(v, "bytes")) {
		laurel_msg_set_bytes(m, "b", "x", 1);
		seen_errors[nseen++] = laurel_reply_json(ctx, laurel_msg_croot(m));
	} else {
		rc = laurel_reply_json(ctx, laurel_msg_croot(m));
	}
	laurel_msg_free(m);
	return rc;
}

/* A demultiplexer: "echo" answers its payload (and greets on connect), "room" sends it to its
 * group. */
static int s_echo_connect(struct laurel_ctx *ctx)
{
	CHECK_STR(laurel_ctx_stream(ctx), "echo");
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_bool(m, "connected", true);
	int rc = laurel_ws_accept(ctx); /* holds nothing in a stream */
	if (!rc)
		rc = laurel_reply_json(ctx, laurel_msg_croot(m));
	laurel_msg_free(m);
	return rc;
}

static int s_echo_receive(struct laurel_ctx *ctx)
{
	const struct laurel_value *v;
	int rc = laurel_ctx_json(ctx, &v);
	return rc ? rc : laurel_reply_json(ctx, v);
}

static int s_room_receive(struct laurel_ctx *ctx)
{
	const struct laurel_value *v;
	int rc = laurel_ctx_json(ctx, &v);
	return rc ? rc : laurel_group_send_json(ctx, "demux-room", v);
}

static const struct laurel_ws_consumer s_echo = {
	.connect = s_echo_connect,
	.receive = s_echo_receive,
};
static const struct laurel_ws_consumer s_room = {
	.receive = s_room_receive,
	.groups = LAUREL_CHANNELS("demux-room"),
};
static const struct laurel_ws_consumer ws_demux = {
	.streams = LAUREL_STREAMS({"echo", &s_echo}, {"room", &s_room}),
};

/* The application data, group name templates and the ctx's value builders. */
static int app_marker;
static int api_errors[8];
static char api_error_text[256];

static int c_api(struct laurel_ctx *ctx)
{
	char g[LAUREL_NAME_MAX + 1], small[8];
	size_t k = 0;
	CHECK(laurel_ctx_app_data(ctx) == &app_marker);
	CHECK_EQ(laurel_ctx_group_name(ctx, "room-{room}.{room}", g, sizeof(g)), 0);
	CHECK_STR(g, "room-r7.r7");
	api_errors[k++] = laurel_ctx_group_name(ctx, "room-{nope}", g, sizeof(g));
	api_errors[k++] = laurel_ctx_group_name(ctx, "room-{room}", small, 6);
	api_errors[k++] = laurel_ctx_group_name(ctx, "bad!{room}", g, sizeof(g));
	struct laurel_builder *b = laurel_ctx_builder(ctx);
	laurel_build_map(b, NULL);
	laurel_build_text(b, "room", laurel_ctx_kwarg(ctx, "room"));
	laurel_build_list(b, "n");
	laurel_build_int(b, NULL, 1);
	laurel_build_double(b, NULL, 0.5);
	laurel_build_end(b);
	laurel_build_end(b);
	CHECK_EQ(laurel_reply_json(ctx, laurel_build_done(b)), 0);
	/* A misused builder: nothing held, the reason recorded. */
	struct laurel_builder *bad = laurel_ctx_builder(ctx);
	laurel_build_map(bad, NULL);
	laurel_build_int(bad, NULL, 1);
	api_errors[k++] = laurel_reply_json(ctx, laurel_build_done(bad));
	snprintf(api_error_text, sizeof(api_error_text), "%s", laurel_ctx_error_text(ctx));
	/* A body parsed, read with the map getters. */
	const struct laurel_value *v;
	int64_t i = 0;
	CHECK_EQ(laurel_json_parse(ctx, "{\"a\": 1, \"t\": \"x\", \"a\": 2}", 26, 0, &v), 0);
	CHECK_EQ(laurel_map_get_int(v, "a", &i), 0);
	CHECK_EQ(i, 2); /* the last of a duplicate key, as Python */
	CHECK(laurel_map_get_text(v, "a", NULL) == NULL);
	CHECK_STR(laurel_map_get_text(v, "t", NULL), "x");
	CHECK_EQ(laurel_map_get_int(v, "t", &i), -EINVAL);
	CHECK_EQ(laurel_map_get_int(v, "none", &i), -ENOENT);
	CHECK_EQ(laurel_map_get_int(NULL, "a", &i), -ENOENT);
	CHECK_EQ(laurel_json_parse(ctx, "{\"a\": 1, \"a\": 2}", 16, LAUREL_JSON_UNIQUE_KEYS, &v),
		 -EBADMSG);
	CHECK(strstr(laurel_ctx_error_text(ctx), "duplicate") != NULL);
	CHECK_EQ(laurel_json_parse(ctx, "{\"a\": ", 6, 0, &v), -EBADMSG);
	CHECK(strstr(laurel_ctx_error_text(ctx), "not JSON") != NULL);
	CHECK_EQ(laurel_json_parse(ctx, "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
				   67, 0, &v),
		 -EBADMSG);
	return 0;
}

static const struct laurel_ws_consumer ws_bad_template = {
	.groups = LAUREL_GROUPS("room-{missing}"),
};
static const struct laurel_ws_consumer ws_rooms = {
	.groups = LAUREL_GROUPS("room-{room}", "everyone"),
};

static const struct laurel_route routes[] = {
	LAUREL_ROUTE("shapes", c_shapes),
	LAUREL_ROUTE("noreply", c_noreply),
	LAUREL_ROUTE("session", c_session),
	LAUREL_ROUTE("kw.test", c_kwargs, LAUREL_FILTER("path", "^/(?P<room>r[0-9])")),
	LAUREL_ROUTE_ORDERED("ord.fn", c_ordered),
	LAUREL_ROUTE("json.in", c_json),
	LAUREL_ROUTE("api.test", c_api, LAUREL_FILTER("path", "^/(?P<room>r[0-9])")),
	LAUREL_ROUTE_WS(&ws_ordered, LAUREL_FILTER("path", "^/ordered/$")),
	LAUREL_ROUTE_WS(&ws_demux, LAUREL_FILTER("path", "^/demux/$")),
	LAUREL_ROUTE_WS(&ws_bad_template, LAUREL_FILTER("path", "^/bad/$")),
	LAUREL_ROUTE_WS(&ws_rooms, LAUREL_FILTER("path", "^/(?P<room>[a-z]+)/$")),
	LAUREL_ROUTES_END,
};

static struct laurel_msg *msg(const char *reply, const char *path)
{
	struct laurel_msg *m = laurel_msg_new();
	if (reply)
		laurel_msg_set_text(m, "reply_channel", reply);
	if (path)
		laurel_msg_set_text(m, "path", path);
	return m;
}

static struct worker *w;

static enum worker_outcome handle(const char *channel, struct laurel_msg *m)
{
	enum worker_outcome o = worker_handle(w, channel, m);
	laurel_msg_free(m);
	return o;
}

/* The next message on channel as compact text ending with the full channel it was sent to
 * (" to='a!b'"), or "(none)". */
static const char *next(const char *channel)
{
	static char out[512];
	struct laurel_received r;
	size_t got = 0;
	const char *chans[] = {channel};
	laurel_layer_receive(worker_layer(w), chans, 1, 0, &r, 1, &got);
	if (!got)
		return "(none)";
	const struct laurel_value *root = laurel_msg_croot(r.msg);
	size_t n = 0;
	for (size_t i = 0; i < root->u.map.len; i++) {
		const struct laurel_entry *e = &root->u.map.items[i];
		const struct laurel_value *v = &e->value;
		n += (size_t)snprintf(out + n, sizeof(out) - n, "%s%s=", i ? " " : "", e->key.ptr);
		switch (v->type) {
		case LAUREL_BOOL:
			n += (size_t)snprintf(out + n, sizeof(out) - n, "%s", v->u.b ? "T" : "F");
			break;
		case LAUREL_INT:
			n += (size_t)snprintf(out + n, sizeof(out) - n, "%lld", (long long)v->u.i);
			break;
		case LAUREL_TEXT:
			n += (size_t)snprintf(out + n, sizeof(out) - n, "'%s'", v->u.s.ptr);
			break;
		case LAUREL_BYTES:
			n += (size_t)snprintf(out + n, sizeof(out) - n, "b'%s'", v->u.s.ptr);
			break;
		case LAUREL_LIST:
			for (size_t j = 0; j < v->u.list.len; j++) {
				const struct laurel_value *p = &v->u.list.items[j];
				n += (size_t)snprintf(out + n, sizeof(out) - n, "[b'%s',b'%s']",
						      p->u.list.items[0].u.s.ptr,
						      p->u.list.items[1].u.s.ptr);
			}
			break;
		default:
			n += (size_t)snprintf(out + n, sizeof(out) - n, "?");
		}
	}
	snprintf(out + n, sizeof(out) - n, " to='%s'", r.channel);
	laurel_received_fini(&r);
	return out;
}

/* Handles whatever waits on the channels, until nothing does. Returns how many were handled. */
static int pump(void)
{
	const char *chans[] = {"websocket.connect", "websocket.receive", "websocket.disconnect",
			       "ord.fn"};
	int handled = 0;
	for (;;) {
		struct laurel_received r;
		size_t got = 0;
		laurel_layer_receive(worker_layer(w), chans, ARRAY_SIZE(chans), 0, &r, 1, &got);
		if (!got)
			return handled;
		worker_handle(w, r.channel, r.msg);
		laurel_received_fini(&r);
		handled++;
	}
}

static struct laurel_msg *ordered_msg(const char *reply, int64_t order, const char *text)
{
	struct laurel_msg *m = msg(reply, "/ordered/");
	laurel_msg_set_int(m, "order", order);
	if (text)
		laurel_msg_set_text(m, "text", text);
	return m;
}

/* enforce_ordering through worker_handle (its parts: tests/unit/worker/test-ordering.c). */
static void test_ordering(void)
{
	/* Receives before the connect wait, then run in order once it ran. */
	CHECK_EQ(handle("websocket.receive", ordered_msg("ord!a", 3, "c")), WORKER_WAITING);
	CHECK_EQ(handle("websocket.receive", ordered_msg("ord!a", 1, "a")), WORKER_WAITING);
	CHECK_EQ(handle("websocket.receive", ordered_msg("ord!a", 2, "b")), WORKER_WAITING);
	CHECK_STR(next("ord!"), "(none)");
	CHECK_EQ(handle("websocket.connect", ordered_msg("ord!a", 0, NULL)), WORKER_DONE);
	CHECK(pump() >= 3);
	CHECK_STR(next("ord!"), "accept=T to='ord!a'");
	CHECK_STR(next("ord!"), "text='1' to='ord!a'");
	CHECK_STR(next("ord!"), "text='2' to='ord!a'");
	CHECK_STR(next("ord!"), "text='3' to='ord!a'");
	CHECK_STR(next("ord!"), "(none)");
	CHECK_STR(next("__wait__.ord?a"), "(none)");
	/* A message whose turn has passed can never run. */
	CHECK_EQ(handle("websocket.receive", ordered_msg("ord!a", 2, "again")), WORKER_DROPPED);
	/* In order, nothing waits. */
	CHECK_EQ(handle("websocket.receive", ordered_msg("ord!a", 4, "d")), WORKER_DONE);
	CHECK_STR(next("ord!"), "text='4' to='ord!a'");
	/* The disconnect is ordered too, and another connection has its own order. */
	CHECK_EQ(handle("websocket.disconnect", ordered_msg("ord!a", 5, NULL)), WORKER_DONE);
	CHECK_EQ(handle("websocket.connect", ordered_msg("ord!b", 0, NULL)), WORKER_DONE);
	CHECK_STR(next("ord!"), "accept=T to='ord!b'");
	/* No order: refused. */
	CHECK_EQ(handle("websocket.receive", msg("ord!b", "/ordered/")), WORKER_DROPPED);

	/* A function route; a failed message does not hold up its successors. */
	for (int64_t i = 3; i >= 0; i--) {
		struct laurel_msg *m = msg("ordfn!a", NULL);
		laurel_msg_set_int(m, "order", i);
		if (i == 1)
			laurel_msg_set_bool(m, "fail", true);
		CHECK_EQ(handle("ord.fn", m), i == 0 ? WORKER_DONE : WORKER_WAITING);
	}
	CHECK(pump() >= 3);
	CHECK_STR(next("ordfn!"), "text='0' to='ordfn!a'");
	CHECK_STR(next("ordfn!"), "text='2' to='ordfn!a'");
	CHECK_STR(next("ordfn!"), "text='3' to='ordfn!a'");
	CHECK_STR(next("ordfn!"), "(none)");
}

static struct laurel_msg *text_msg(const char *reply, const char *path, const char *text)
{
	struct laurel_msg *m = msg(reply, path);
	laurel_msg_set_text(m, "text", text);
	return m;
}

static void test_json(void)
{
	CHECK_EQ(handle("json.in",
			text_msg("js!a", NULL, "{\"a\": [1, 2.5, true, null, \"\u00e9\"]}")),
		 WORKER_DONE);
	CHECK_STR(next("js!"), "text='{\"got\":{\"a\":[1,2.5,true,null,\"\u00e9\"]}}' to='js!a'");
	CHECK_EQ(handle("json.in", text_msg("js!a", NULL, "\"just text\"")), WORKER_DONE);
	CHECK_STR(next("js!"), "text='{\"got\":\"just text\"}' to='js!a'");
	CHECK_EQ(handle("json.in", text_msg("js!a", NULL, "{\"a\": ")), WORKER_DROPPED);
	/* Nesting: 32 levels are taken, 33 are not. */
	for (int depth = 32; depth <= 33; depth++) {
		char deep[2 * 33 + 2];
		memset(deep, '[', (size_t)depth);
		deep[depth] = '1';
		memset(deep + depth + 1, ']', (size_t)depth);
		deep[2 * depth + 1] = '\0';
		CHECK_EQ(handle("json.in", text_msg("js!a", NULL, deep)),
			 depth == 32 ? WORKER_DONE : WORKER_DROPPED);
		if (depth == 32)
			CHECK(strncmp(next("js!"), "text='{\"got\":[[[[", 15) == 0);
	}
	CHECK_EQ(handle("json.in", text_msg("js!a", NULL, "99999999999999999999999")),
		 WORKER_DROPPED);
	CHECK_EQ(handle("json.in", msg("js!a", NULL)), WORKER_DROPPED); /* no text */
	nseen = 0;
	CHECK_EQ(handle("json.in", text_msg("js!a", NULL, "{\"bytes\": 1}")), WORKER_DONE);
	CHECK_EQ(nseen, 1);
	CHECK_EQ(seen_errors[0], -EINVAL);
	CHECK_STR(next("js!"), "(none)");

	struct laurel_msg *m = laurel_msg_new();
	char *out = NULL;
	size_t len = 0;
	laurel_msg_set_text(m, "k", "v");
	laurel_msg_set_double(m, "d", 0.5);
	CHECK_EQ(laurel_json_dump(laurel_msg_croot(m), &out, &len), 0);
	CHECK_STR(out, "{\"k\":\"v\",\"d\":0.5}");
	CHECK_EQ(len, strlen(out));
	free(out);
	laurel_msg_set_textn(m, "bad", "\xff", 1);
	CHECK_EQ(laurel_json_dump(laurel_msg_croot(m), &out, &len), -EINVAL);
	laurel_msg_free(m);
}

static void test_demux(void)
{
	size_t n = 0;
	CHECK_EQ(handle("websocket.connect", msg("dm!a", "/demux/")), WORKER_DONE);
	CHECK_EQ(handle("websocket.connect", msg("dm!b", "/demux/")), WORKER_DONE);
	CHECK_STR(next("dm!"), "accept=T to='dm!a'");
	CHECK_STR(next("dm!"),
		  "text='{\"stream\":\"echo\",\"payload\":{\"connected\":true}}' to='dm!a'");
	CHECK_STR(next("dm!"), "accept=T to='dm!b'");
	CHECK_STR(next("dm!"),
		  "text='{\"stream\":\"echo\",\"payload\":{\"connected\":true}}' to='dm!b'");
	CHECK_EQ(laurel_layer_group_count(worker_layer(w), "demux-room", &n), 0);
	CHECK_EQ(n, 2);

	CHECK_EQ(handle("websocket.receive",
			text_msg("dm!a", "/demux/",
				 "{\"stream\": \"echo\", \"payload\": {\"x\": [1]}}")),
		 WORKER_DONE);
	CHECK_STR(next("dm!"), "text='{\"stream\":\"echo\",\"payload\":{\"x\":[1]}}' to='dm!a'");
	CHECK_EQ(handle("websocket.receive",
			text_msg("dm!a", "/demux/",
				 "{\"payload\": {\"hi\": \"all\"}, \"stream\": \"room\"}")),
		 WORKER_DONE);
	const char *a = next("dm!");
	bool first_a = strstr(a, "to='dm!a'") != NULL;
	CHECK_STR(a,
		  first_a ? "text='{\"stream\":\"room\",\"payload\":{\"hi\":\"all\"}}' to='dm!a'"
			  : "text='{\"stream\":\"room\",\"payload\":{\"hi\":\"all\"}}' to='dm!b'");
	CHECK_STR(next("dm!"),
		  first_a ? "text='{\"stream\":\"room\",\"payload\":{\"hi\":\"all\"}}' to='dm!b'"
			  : "text='{\"stream\":\"room\",\"payload\":{\"hi\":\"all\"}}' to='dm!a'");
	/* Bad frames: logged and dropped, nothing sent, never a crash. */
	const char *bad[] = {"not json",
			     "[1]",
			     "{\"stream\": \"nope\", \"payload\": {}}",
			     "{\"stream\": \"echo\"}",
			     "{\"stream\": \"echo\", \"payload\": 3}",
			     "{\"stream\": 1, \"payload\": {}}"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		CHECK_EQ(handle("websocket.receive", text_msg("dm!a", "/demux/", bad[i])),
			 WORKER_DROPPED);
	struct laurel_msg *m = msg("dm!a", "/demux/");
	laurel_msg_set_bytes(m, "bytes", "x", 1);
	CHECK_EQ(handle("websocket.receive", m), WORKER_DROPPED);
	CHECK_STR(next("dm!"), "(none)");

	CHECK_EQ(handle("websocket.disconnect", msg("dm!a", "/demux/")), WORKER_DONE);
	CHECK_EQ(laurel_layer_group_count(worker_layer(w), "demux-room", &n), 0);
	CHECK_EQ(n, 1);
}

/* Held sends to a full channel: one the process reads itself is carried to the next flush (in
 * order) rather than waited for — if every reader waited, nobody would read it — while any other
 * channel is waited for, then dropped. */
static void test_carry(void)
{
	const char *url = "memory://";
	struct laurel_layer_options lo = {.urls = &url, .nurls = 1, .capacity = 2};
	struct laurel_layer *L;
	CHECK_EQ(laurel_layer_new(&L, &lo, NULL, 0), 0);
	const char *own[] = {"mine"};
	struct consumer_outbox ob = {.own = own, .nown = 1};
	for (int i = 0; i < 5; i++) {
		struct laurel_msg *m = laurel_msg_new();
		laurel_msg_set_int(m, "i", i);
		consumer_outbox_add(&ob, "mine", m, "test");
	}
	int64_t t = util_now_ms();
	CHECK_EQ(consumer_outbox_flush(L, &ob, 2000), 0);
	CHECK(util_now_ms() - t < 500); /* not waited for */
	CHECK_EQ(consumer_outbox_carried(&ob), 3);
	/* A message made later waits behind the carried ones. */
	struct laurel_msg *m5 = laurel_msg_new();
	laurel_msg_set_int(m5, "i", 5);
	consumer_outbox_add(&ob, "mine", m5, "test");
	int64_t want = 0;
	for (int round = 0; round < 3; round++) {
		struct laurel_received got[2];
		size_t n = 0;
		const char *ch[] = {"mine"};
		CHECK_EQ(laurel_layer_receive(L, ch, 1, 0, got, 2, &n), 0);
		CHECK_EQ(n, 2);
		for (size_t i = 0; i < n; i++) {
			int64_t v = -1;
			laurel_msg_get_int(got[i].msg, "i", &v);
			CHECK_EQ(v, want++);
			laurel_received_fini(&got[i]);
		}
		CHECK_EQ(consumer_outbox_flush(L, &ob, 2000), 0);
	}
	CHECK_EQ(want, 6);
	CHECK_EQ(consumer_outbox_carried(&ob), 0);

	/* Another process's channel is waited for (here 100 ms), then the message is dropped. */
	for (int i = 0; i < 3; i++)
		consumer_outbox_add(&ob, "theirs", laurel_msg_new(), "test");
	t = util_now_ms();
	CHECK_EQ(consumer_outbox_flush(L, &ob, 100), 1);
	CHECK(util_now_ms() - t >= 100);
	CHECK_EQ(consumer_outbox_carried(&ob), 0);
	consumer_outbox_fini(&ob);
	laurel_layer_free(L);
}

int main(void)
{
	test_carry();

	const char *url = "memory://";
	struct worker_options o = {
		.layer = {.urls = &url, .nurls = 1}, .routes = routes, .app_data = &app_marker};
	char err[256];
	int rc = worker_new(&w, &o, err, sizeof(err));
	CHECK_EQ(rc, 0);
	if (rc) {
		fprintf(stderr, "%s\n", err);
		return test_done();
	}

	CHECK_EQ(handle("shapes", msg("out!a", NULL)), WORKER_DONE);
	CHECK_STR(next("out!"), "close=T to='out!a'");
	CHECK_STR(next("out!"), "close=4001 to='out!a'");
	CHECK_STR(next("out!"), "close=T to='out!a'");
	CHECK_STR(next("out!"), "status=404 headers=[b'X-A',b'1'][b'x-b',b''] content=b'no' "
				"more_content=F to='out!a'");
	CHECK_STR(next("out!"), "(none)");
	CHECK_EQ(nseen, 8);
	for (size_t i = 0; i < 8; i++)
		CHECK_EQ(seen_errors[i], -EINVAL);
	CHECK_EQ(recover_other, -ENOTSUP);

	CHECK_EQ(handle("api.test", msg("api!a", "/r7")), WORKER_DONE);
	CHECK_STR(next("api!"), "text='{\"room\":\"r7\",\"n\":[1,0.5]}' to='api!a'");
	CHECK_STR(next("api!"), "(none)");
	for (size_t i = 0; i < 4; i++)
		CHECK_EQ(api_errors[i], -EINVAL);
	CHECK_STR(api_error_text, "no JSON value to send: a value without a key inside a map");

	nseen = 0;
	CHECK_EQ(handle("noreply", msg(NULL, NULL)), WORKER_DONE);
	CHECK_EQ(nseen, 4);
	for (size_t i = 0; i < 4; i++)
		CHECK_EQ(seen_errors[i], -ENOENT);

	/* The session: kept across messages, saved only on success. */
	struct laurel_msg *m = msg("sess!a", NULL);
	laurel_msg_set_text(m, "mode", "inc");
	CHECK_EQ(handle("session", m), WORKER_DONE);
	m = msg("sess!a", NULL);
	laurel_msg_set_text(m, "mode", "inc");
	CHECK_EQ(handle("session", m), WORKER_DONE);
	m = msg("sess!a", NULL);
	laurel_msg_set_text(m, "mode", "fail");
	CHECK_EQ(handle("session", m), WORKER_DROPPED);
	m = msg("sess!a", NULL);
	laurel_msg_set_text(m, "mode", "read");
	CHECK_EQ(handle("session", m), WORKER_DONE);
	CHECK_STR(next("sess!"), "n=0 to='sess!a'");
	CHECK_STR(next("sess!"), "n=1 to='sess!a'");
	CHECK_STR(next("sess!"), "n=2 to='sess!a'");
	CHECK_STR(next("sess!"), "(none)");
	/* Another connection has its own. */
	m = msg("sess!b", NULL);
	laurel_msg_set_text(m, "mode", "read");
	CHECK_EQ(handle("session", m), WORKER_DONE);
	CHECK_STR(next("sess!"), "n=0 to='sess!b'");

	m = msg("kw!a", "/r7/x");
	CHECK_EQ(handle("kw.test", m), WORKER_DONE);
	CHECK_STR(next("kw!"), "text='r7' to='kw!a'");

	/* Websocket groups: joined on connect, left on disconnect; a template naming a missing
	 * keyword argument fails the message. */
	size_t n = 99;
	CHECK_EQ(handle("websocket.connect", msg("ws!a", "/lobby/")), WORKER_DONE);
	CHECK_EQ(handle("websocket.connect", msg("ws!b", "/lobby/")), WORKER_DONE);
	CHECK_STR(next("ws!"), "accept=T to='ws!a'");
	CHECK_STR(next("ws!"), "accept=T to='ws!b'");
	CHECK_EQ(laurel_layer_group_count(worker_layer(w), "room-lobby", &n), 0);
	CHECK_EQ(n, 2);
	CHECK_EQ(laurel_layer_group_count(worker_layer(w), "everyone", &n), 0);
	CHECK_EQ(n, 2);
	m = msg("ws!a", "/lobby/");
	laurel_msg_set_int(m, "code", 1000);
	CHECK_EQ(handle("websocket.disconnect", m), WORKER_DONE);
	CHECK_EQ(laurel_layer_group_count(worker_layer(w), "room-lobby", &n), 0);
	CHECK_EQ(n, 1);
	/* A websocket.connect whose consumer fails is refused at once ({close: true}: a 403),
	 * rather than left to the interface's connect timeout. */
	CHECK_EQ(handle("websocket.connect", msg("ws!c", "/bad/")), WORKER_DROPPED);
	CHECK_STR(next("ws!"), "close=T to='ws!c'");
	CHECK_STR(next("ws!"), "(none)");
	/* Default route: a receive on an unrouted path does nothing. */
	m = msg("ws!d", "/x/y");
	laurel_msg_set_text(m, "text", "hi");
	CHECK_EQ(handle("websocket.receive", m), WORKER_DONE);
	CHECK_EQ(handle("websocket.connect", msg("ws!d", "/x/y")), WORKER_DONE);
	CHECK_STR(next("ws!"), "accept=T to='ws!d'");

	test_ordering();
	test_json();
	test_demux();

	worker_free(w);
	return test_done();
}
