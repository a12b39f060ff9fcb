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
#include "worker/worker.h"

static int seen_errors[16];
static size_t nseen;

static int c_shapes(struct laurel_ctx *ctx)
{
	static const struct laurel_header h[] = {{"X-A", "1"}, {"x-b", ""}};
	laurel_ws_close(ctx, 0);
	laurel_ws_close(ctx, 4001);
	laurel_ws_reject(ctx);
	laurel_reply_http(ctx, 404, h, 2, "no", 2, false);
	/* Argument errors hold nothing. */
	seen_errors[nseen++] = laurel_ws_close(ctx, 999);
	seen_errors[nseen++] = laurel_reply_http(ctx, 99, NULL, 0, NULL, 0, false);
	seen_errors[nseen++] = laurel_send(ctx, "bad name", laurel_ctx_message(ctx));
	seen_errors[nseen++] = laurel_group_send(ctx, "bad!group", laurel_ctx_message(ctx));
	seen_errors[nseen++] = laurel_group_add(ctx, "");
	return 0;
}

static int c_noreply(struct laurel_ctx *ctx)
{
	struct laurel_msg *s;
	seen_errors[nseen++] = laurel_reply_text(ctx, "x", 1);
	seen_errors[nseen++] = laurel_session(ctx, &s);
	seen_errors[nseen++] = laurel_group_add(ctx, "g");
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

static const struct laurel_ws_consumer ws_bad_template = {
	.groups = LAUREL_CHANNELS("room-{missing}"),
};
static const struct laurel_ws_consumer ws_rooms = {
	.groups = LAUREL_CHANNELS("room-{room}", "everyone"),
};

static const struct laurel_route routes[] = {
	LAUREL_ROUTE("shapes", c_shapes),
	LAUREL_ROUTE("noreply", c_noreply),
	LAUREL_ROUTE("session", c_session),
	LAUREL_ROUTE("kw.test", c_kwargs, LAUREL_FILTER("path", "^/(?P<room>r[0-9])")),
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

int main(void)
{
	const char *url = "memory://";
	struct worker_options o = {.layer = {.urls = &url, .nurls = 1}, .routes = routes};
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
	CHECK_STR(next("out!"), "accept=F to='out!a'");
	CHECK_STR(next("out!"), "status=404 headers=[b'X-A',b'1'][b'x-b',b''] content=b'no' "
				"more_content=F to='out!a'");
	CHECK_STR(next("out!"), "(none)");
	CHECK_EQ(nseen, 5);
	for (size_t i = 0; i < 5; i++)
		CHECK_EQ(seen_errors[i], -EINVAL);

	nseen = 0;
	CHECK_EQ(handle("noreply", msg(NULL, NULL)), WORKER_DONE);
	CHECK_EQ(nseen, 3);
	for (size_t i = 0; i < 3; i++)
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
	CHECK_EQ(handle("websocket.connect", msg("ws!c", "/bad/")), WORKER_DROPPED);
	CHECK_STR(next("ws!"), "(none)");
	/* Default route: a receive on an unrouted path does nothing. */
	m = msg("ws!d", "/x/y");
	laurel_msg_set_text(m, "text", "hi");
	CHECK_EQ(handle("websocket.receive", m), WORKER_DONE);
	CHECK_EQ(handle("websocket.connect", msg("ws!d", "/x/y")), WORKER_DONE);
	CHECK_STR(next("ws!"), "accept=T to='ws!d'");

	worker_free(w);
	return test_done();
}
