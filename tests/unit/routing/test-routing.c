/* Routing: filters with re.match semantics, named groups as keyword arguments, bytes fields,
 * include prefixes, first match, the worker's default routes, bad tables reported at load time
 * naming the route, and the channel set with --only-channels / --exclude-channels. */
#include "tests/lib/test.h"

#include <errno.h>
#include <stdlib.h>

#include "laurel/routing.h"
#include "routing/routing.h"
#include "worker/consumer.h"
#include "common/util.h"

static int c_hello(struct laurel_ctx *ctx)
{
	return 0;
}
static int c_room(struct laurel_ctx *ctx)
{
	return 0;
}
static int c_any_http(struct laurel_ctx *ctx)
{
	return 0;
}
static int c_inner(struct laurel_ctx *ctx)
{
	return 0;
}
static int c_deep(struct laurel_ctx *ctx)
{
	return 0;
}
static int c_bytes(struct laurel_ctx *ctx)
{
	return 0;
}
static int c_multi(struct laurel_ctx *ctx)
{
	return 0;
}

static const struct laurel_ws_consumer ws_chat = {.groups = LAUREL_CHANNELS("chat-{room}")};

static const struct laurel_route deep[] = {
	LAUREL_ROUTE("http.request", c_deep, LAUREL_FILTER("path", "^/(?P<leaf>[a-z]+)$")),
	LAUREL_ROUTES_END,
};

static const struct laurel_route api[] = {
	LAUREL_ROUTE("http.request", c_inner,
		     LAUREL_FILTER("path", "^/v(?P<version>\\d+)/items$")
			     LAUREL_FILTER("method", "^GET$")),
	LAUREL_INCLUDE(deep, LAUREL_FILTER("path", "^/deep")),
	LAUREL_ROUTES_END,
};

static const struct laurel_route routes[] = {
	LAUREL_ROUTE("http.request", c_hello, LAUREL_FILTER("path", "^/hello")),
	LAUREL_ROUTE("http.request", c_room,
		     LAUREL_FILTER("path", "^/room/(?P<room>\\w+)/(?P<opt>x)?")),
	LAUREL_INCLUDE(api, LAUREL_FILTER("path", "^/api(?P<tenant>-[a-z]+)?")),
	LAUREL_ROUTE("http.request", c_bytes, LAUREL_FILTER("query_string", "^id=(?P<id>\\d+)")),
	LAUREL_ROUTE_WS(&ws_chat, LAUREL_FILTER("path", "^/chat/(?P<room>[a-z0-9]+)/$")),
	LAUREL_ROUTE_CHANNELS(LAUREL_CHANNELS("custom.a", "custom.b"), c_multi),
	LAUREL_ROUTE("http.request", c_any_http),
	LAUREL_ROUTES_END,
};

static const struct laurel_route first[] = {
	LAUREL_ROUTE("http.request", c_hello, LAUREL_FILTER("path", "^/a")),
	LAUREL_ROUTE("http.request", c_room, LAUREL_FILTER("path", "^/a/b")),
	LAUREL_ROUTES_END,
};

static const struct laurel_route defaults_t[] = {
	LAUREL_ROUTE("websocket.receive", c_hello, LAUREL_FILTER("path", "^/echo/$")),
	LAUREL_ROUTES_END,
};

static const struct laurel_route paren[] = {
	LAUREL_ROUTE("http.request", c_hello),
	LAUREL_ROUTE("http.request", c_room, LAUREL_FILTER("path", "^/(?P<room>\\w+")),
	LAUREL_ROUTES_END,
};

static const struct laurel_route positional[] = {
	LAUREL_ROUTE("http.request", c_room, LAUREL_FILTER("path", "^/(\\w+)/$")),
	LAUREL_ROUTES_END,
};

static const struct laurel_route inner[] = {
	LAUREL_ROUTE("http.request", c_hello),
	LAUREL_ROUTE("bad channel", c_inner),
	LAUREL_ROUTES_END,
};

static const struct laurel_route outer[] = {
	LAUREL_ROUTE("http.request", c_hello),
	LAUREL_INCLUDE(inner, LAUREL_FILTER("path", "^/x")),
	LAUREL_ROUTES_END,
};

static const struct laurel_route bad_prefix[] = {
	LAUREL_INCLUDE(inner, LAUREL_FILTER("path", "^[x")),
	LAUREL_ROUTES_END,
};

static const struct laurel_route nofn[] = {
	{.kind = LAUREL_ROUTE_CONSUMER, .name = "x", .channels = LAUREL_CHANNELS("http.request")},
	LAUREL_ROUTES_END,
};

static const struct laurel_ws_consumer ws_plain = {0};
static const struct laurel_ws_consumer ws_dup_streams = {
	.streams = LAUREL_STREAMS({"a", &ws_plain}, {"a", &ws_plain}),
};
static const struct laurel_ws_consumer ws_no_consumer = {
	.streams = LAUREL_STREAMS({"a", &ws_plain}, {"b", NULL}),
};
static const struct laurel_route dup_streams[] = {
	LAUREL_ROUTE_WS(&ws_dup_streams),
	LAUREL_ROUTES_END,
};
static const struct laurel_route no_consumer[] = {
	LAUREL_ROUTE_WS(&ws_no_consumer),
	LAUREL_ROUTES_END,
};

static const struct laurel_route twice[] = {
	LAUREL_ROUTE("http.request", c_hello,
		     LAUREL_FILTER("path", "^/") LAUREL_FILTER("path", "^/a")),
	LAUREL_ROUTES_END,
};

static const struct laurel_route loop_outer[] = {
	LAUREL_INCLUDE(loop_outer),
	LAUREL_ROUTES_END,
};

static const struct laurel_route python_t[] = {
	LAUREL_ROUTE("http.request", c_hello, LAUREL_FILTER("path", "^/end\\Z")),
	LAUREL_ROUTE("http.request", c_room, LAUREL_FILTER("path", "^/(?P<a>[a-z])(?P=a)$")),
	LAUREL_ROUTES_END,
};

static struct laurel_msg *http(const char *path, const char *method, const char *qs)
{
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_text(m, "reply_channel", "daphne.response.AAAAAAAAAA!BBBBBBBBBB");
	if (path)
		laurel_msg_set_text(m, "path", path);
	if (method)
		laurel_msg_set_text(m, "method", method);
	laurel_msg_set_bytes(m, "query_string", qs ? qs : "", qs ? strlen(qs) : 0);
	return m;
}

/* The route name that message m on channel matches ("-" for none), and its kwargs as
 * "k=v,k=(nil)" in a static buffer. */
static char kwbuf[512];
static const char *route_of(struct routing *r, const char *channel, struct laurel_msg *m)
{
	struct routing_match rm;
	static char name[128];
	kwbuf[0] = '\0';
	int rc = routing_match(r, channel, m, &rm);
	laurel_msg_free(m);
	if (rc == ROUTING_NONE)
		return "-";
	snprintf(name, sizeof(name), "%s", routing_route_name(rm.route));
	const struct laurel_value *root = laurel_msg_croot(rm.kwargs);
	size_t n = 0;
	for (size_t i = 0; i < root->u.map.len; i++) {
		const struct laurel_entry *e = &root->u.map.items[i];
		n += (size_t)snprintf(kwbuf + n, sizeof(kwbuf) - n, "%s%s=%s", i ? "," : "",
				      e->key.ptr,
				      e->value.type == LAUREL_TEXT ? e->value.u.s.ptr : "(nil)");
	}
	routing_match_fini(&rm);
	return name;
}

static void test_filters(struct routing *r)
{
	/* re.match: anchored at the start, not at the end. */
	CHECK_STR(route_of(r, "http.request", http("/hello", "GET", NULL)), "c_hello");
	CHECK_STR(route_of(r, "http.request", http("/hello/world", "GET", NULL)), "c_hello");
	CHECK_STR(route_of(r, "http.request", http("/x/hello", "GET", NULL)), "c_any_http");
	/* A missing field or a field of another type does not match. */
	struct laurel_msg *m = http(NULL, "GET", NULL);
	CHECK_STR(route_of(r, "http.request", m), "c_any_http");
	m = http(NULL, "GET", NULL);
	laurel_msg_set_int(m, "path", 5);
	CHECK_STR(route_of(r, "http.request", m), "c_any_http");
	/* Bytes are read as ASCII; non-ASCII bytes never match. */
	CHECK_STR(route_of(r, "http.request", http("/z", "GET", "id=42&x")), "c_bytes");
	CHECK_STR(kwbuf, "id=42");
	m = http("/z", "GET", NULL);
	laurel_msg_set_bytes(m, "query_string", "id=4\xff", 5);
	CHECK_STR(route_of(r, "http.request", m), "c_any_http");
	m = http("/z", "GET", NULL);
	laurel_msg_set_bytes(m, "query_string", "id=\xc3\xa9", 5);
	CHECK_STR(route_of(r, "http.request", m), "c_any_http");
	/* The channel must be one of the route's. */
	CHECK_STR(route_of(r, "http.disconnect", http("/hello", NULL, NULL)), "-");
	CHECK_STR(route_of(r, "custom.b", http("/hello", NULL, NULL)), "c_multi");
	CHECK_STR(route_of(r, "custom.a", laurel_msg_new()), "c_multi");
	/* Unicode classes as in Python 3: \w matches é in text. */
	CHECK_STR(route_of(r, "http.request", http("/room/caf\xc3\xa9/", "GET", NULL)), "c_room");
	CHECK_STR(kwbuf, "room=caf\xc3\xa9,opt=(nil)");
	/* Invalid UTF-8 in text does not match (and does not fail). */
	CHECK_STR(route_of(r, "http.request", http("/room/\xff/", "GET", NULL)), "c_any_http");
}

static void test_kwargs(struct routing *r)
{
	CHECK_STR(route_of(r, "http.request", http("/room/lobby/x", "GET", NULL)), "c_room");
	CHECK_STR(kwbuf, "room=lobby,opt=x");
	CHECK_STR(route_of(r, "http.request", http("/room/lobby/", "GET", NULL)), "c_room");
	CHECK_STR(kwbuf, "room=lobby,opt=(nil)");
	CHECK_STR(route_of(r, "http.request", http("/hello", "GET", NULL)), "c_hello");
	CHECK_STR(kwbuf, "");
	CHECK_STR(route_of(r, "websocket.connect", http("/chat/r1/", NULL, NULL)), "ws_chat");
	CHECK_STR(kwbuf, "room=r1");
	CHECK_STR(route_of(r, "websocket.receive", http("/chat/r1/", NULL, NULL)), "ws_chat");
	CHECK_STR(route_of(r, "websocket.disconnect", http("/chat/r1/", NULL, NULL)), "ws_chat");
}

static void test_include(struct routing *r)
{
	/* The prefix is cut before the inner routes; its groups are kwargs too. */
	CHECK_STR(route_of(r, "http.request", http("/api/v2/items", "GET", NULL)), "c_inner");
	CHECK_STR(kwbuf, "tenant=(nil),version=2");
	CHECK_STR(route_of(r, "http.request", http("/api-acme/v3/items", "GET", NULL)), "c_inner");
	CHECK_STR(kwbuf, "tenant=-acme,version=3");
	/* Inner filters on other fields see the whole value. */
	CHECK_STR(route_of(r, "http.request", http("/api/v2/items", "POST", NULL)), "c_any_http");
	/* The inner pattern is anchored at the cut, so the uncut path does not match it. */
	CHECK_STR(route_of(r, "http.request", http("/api/api/v2/items", "GET", NULL)),
		  "c_any_http");
	/* Nested includes cut again; kwargs from a failed include are not kept. */
	CHECK_STR(route_of(r, "http.request", http("/api-x/deep/leaf", "GET", NULL)), "c_deep");
	CHECK_STR(kwbuf, "tenant=-x,leaf=leaf");
	CHECK_STR(route_of(r, "http.request", http("/api-x/deep/Leaf", "GET", NULL)), "c_any_http");
	CHECK_STR(kwbuf, "");
}

static void test_first_match(void)
{
	struct routing *r;
	char err[256];
	CHECK_EQ(routing_new(&r, first, NULL, err, sizeof(err)), 0);
	CHECK_STR(route_of(r, "http.request", http("/a/b", "GET", NULL)), "c_hello");
	CHECK_STR(route_of(r, "http.request", http("/b", "GET", NULL)), "-");
	routing_free(r);
}

static void test_defaults(void)
{
	struct routing *r;
	char err[256];
	CHECK_EQ(routing_new(&r, defaults_t, consumer_default_routes, err, sizeof(err)), 0);
	CHECK_STR(route_of(r, "websocket.receive", http("/echo/", NULL, NULL)), "c_hello");
	CHECK_STR(route_of(r, "websocket.receive", http("/other/", NULL, NULL)), "consumer_null");
	CHECK_STR(route_of(r, "websocket.connect", http("/other/", NULL, NULL)), "consumer_accept");
	CHECK_STR(route_of(r, "websocket.disconnect", http("/other/", NULL, NULL)),
		  "consumer_null");
	CHECK_STR(route_of(r, "http.request", http("/echo/", NULL, NULL)), "-");
	size_t n;
	const char *const *ch = routing_channels(r, &n);
	CHECK_EQ(n, 3);
	CHECK_STR(ch[0], "websocket.receive");
	CHECK_STR(ch[1], "websocket.connect");
	CHECK_STR(ch[2], "websocket.disconnect");
	CHECK(ch[3] == NULL);
	routing_free(r);

	/* No application routes at all: the defaults alone. */
	CHECK_EQ(routing_new(&r, NULL, consumer_default_routes, err, sizeof(err)), 0);
	CHECK_STR(route_of(r, "websocket.connect", http("/", NULL, NULL)), "consumer_accept");
	routing_free(r);
}

/* Loads a one-route table that must be refused, and returns the message. */
static const char *refused(const struct laurel_route *table)
{
	static char err[512];
	struct routing *r = NULL;
	err[0] = '\0';
	CHECK_EQ(routing_new(&r, table, consumer_default_routes, err, sizeof(err)), -EINVAL);
	CHECK(r == NULL);
	return err;
}

static void test_bad(void)
{
	CHECK_STR(refused(paren), "route 2 (c_room): filter on \"path\": bad pattern "
				  "\"^/(?P<room>\\w+\" at offset 14: missing closing parenthesis");
	CHECK_STR(refused(positional),
		  "route 1 (c_room): filter on \"path\": pattern \"^/(\\w+)/$\" has groups "
		  "without a name; only named groups (?P<name>...) are allowed (write (?:...) for "
		  "the others)");
	CHECK_STR(refused(outer), "route 2.2 (c_inner): invalid channel name \"bad channel\"");
	CHECK_STR(refused(bad_prefix), "route 1 (inner): filter on \"path\": bad pattern \"^[x\" "
				       "at offset 3: missing terminating ] for character class");
	CHECK_STR(refused(nofn), "route 1 (x): no consumer");
	CHECK_STR(refused(twice), "route 1 (c_hello): two filters on \"path\"");
	CHECK_STR(refused(dup_streams), "route 1 (ws_dup_streams): two streams \"a\"");
	CHECK_STR(refused(no_consumer), "route 1 (ws_no_consumer): stream 2 has no name or no "
					"consumer");
	CHECK_STR(refused(loop_outer),
		  "route 1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1 (loop_outer): includes nested deeper "
		  "than 16");
}

static void test_python_syntax(void)
{
	/* \Z is Python's very end: it does not accept a final newline. */
	struct routing *r;
	char err[256];
	CHECK_EQ(routing_new(&r, python_t, NULL, err, sizeof(err)), 0);
	CHECK_STR(route_of(r, "http.request", http("/end", "GET", NULL)), "c_hello");
	CHECK_STR(route_of(r, "http.request", http("/end\n", "GET", NULL)), "-");
	CHECK_STR(route_of(r, "http.request", http("/aa", "GET", NULL)), "c_room");
	CHECK_STR(kwbuf, "a=a");
	CHECK_STR(route_of(r, "http.request", http("/ab", "GET", NULL)), "-");
	routing_free(r);
}

static void test_channel_sets(struct routing *r)
{
	size_t n;
	const char *const *ch = routing_channels(r, &n);
	const char *want[] = {"http.request",	      "websocket.connect", "websocket.receive",
			      "websocket.disconnect", "custom.a",	   "custom.b"};
	CHECK_EQ(n, ARRAY_SIZE(want));
	for (size_t i = 0; i < n && i < ARRAY_SIZE(want); i++)
		CHECK_STR(ch[i], want[i]);

	const char *only[] = {"websocket.*", "custom.b"};
	const char *excl[] = {"*.receive"};
	const char **sel = routing_select(r, only, 2, excl, 1, &n);
	CHECK_EQ(n, 3);
	CHECK_STR(sel[0], "websocket.connect");
	CHECK_STR(sel[1], "websocket.disconnect");
	CHECK_STR(sel[2], "custom.b");
	CHECK(sel[3] == NULL);
	free(sel);
	sel = routing_select(r, NULL, 0, excl, 1, &n);
	CHECK_EQ(n, 5);
	free(sel);
	const char *none[] = {"nothing.*"};
	sel = routing_select(r, none, 1, NULL, 0, &n);
	CHECK_EQ(n, 0);
	CHECK(sel[0] == NULL);
	free(sel);
}

int main(void)
{
	struct routing *r = NULL;
	char err[512] = "";
	int rc = routing_new(&r, routes, consumer_default_routes, err, sizeof(err));
	CHECK_EQ(rc, 0);
	if (rc) {
		fprintf(stderr, "%s\n", err);
		return test_done();
	}
	test_filters(r);
	test_kwargs(r);
	test_include(r);
	test_channel_sets(r);
	routing_free(r);
	test_first_match();
	test_defaults();
	test_bad();
	test_python_syntax();
	return test_done();
}
