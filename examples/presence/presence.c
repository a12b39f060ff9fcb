/* The presence example: how many are in the room, live. Every page of a room shows the number of
 * connections in it, pushed to all of them on every join and leave. Written against the public
 * headers alone, in one file: it builds out of the tree with
 *
 *	cc $(pkg-config --cflags laurel) -shared -fPIC -fvisibility=hidden -o libpresence.so presence.c
 *
 *   GET /presence/<room>/          the page
 *   GET /presence/<room>/count     {"room": R, "count": N}
 *   WebSocket /presence/<room>/ws  the room: frames {"type": "presence", "room": R, "count": N,
 *                                  "event": "join" | "leave" | "settle"}
 *
 * The connections of a room are the members of the group "presence.<room>", which the WebSocket
 * consumer joins before connect and leaves before disconnect runs (its groups): a connection
 * that goes away without a word is still counted out, by the interface's disconnect, or by the
 * layer's presence when an interface dies. Each join and leave counts the group and sends the
 * count to it. Two events at the same moment, counted by two workers, may reach the pages in the
 * other order, so each one also asks for a recount settle-ms later (laurel_send_later, through the
 * asgi.delay service), which sends the count as it is then: the pages settle on the truth.
 *
 * Options (--app-option NAME=VALUE):
 *   max-per-room  connections a room takes, 0 for no limit; one more is refused (HTTP 403)
 *   settle-ms     the delay of the recount, 0 for none
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "laurel/consumer.h"
#include "laurel/routing.h"

#define ROOM_GROUP "presence.{room}"
#define SETTLE_CHANNEL "presence.settle"

/* Each worker's settings, parsed once by init. */
struct presence {
	long max_per_room;
	long settle_ms;
};

static int number_option(struct laurel_app_env *env, const char *name, long max, long *out)
{
	const char *v = laurel_app_option(env, name);
	char *end;
	errno = 0;
	long n = strtol(v, &end, 10);
	if (!*v || *end || errno || n < 0 || n > max)
		return laurel_app_error(env, -EINVAL, "%s must be a whole number from 0 to %ld, not \"%s\"",
					name, max, v);
	*out = n;
	return 0;
}

static int presence_init(struct laurel_app_env *env, void **data)
{
	struct presence p;
	int rc = number_option(env, "max-per-room", 1000000, &p.max_per_room);
	if (!rc)
		rc = number_option(env, "settle-ms", 60000, &p.settle_ms);
	if (rc)
		return rc;
	struct presence *d = malloc(sizeof(*d));
	if (!d)
		return -ENOMEM;
	*d = p;
	*data = d;
	return 0;
}

static void presence_fini(void *data)
{
	free(data);
}

/* Counts the room's group and sends the count to it. */
static int announce(struct laurel_ctx *ctx, const char *room, const char *group, const char *event)
{
	size_t n;
	int rc = laurel_group_count(ctx, group, &n);
	if (rc)
		return laurel_ctx_error(ctx, rc, "cannot count %s: %s", group, strerror(-rc));
	struct laurel_builder *b = laurel_ctx_builder(ctx);
	laurel_build_map(b, NULL);
	laurel_build_text(b, "type", "presence");
	laurel_build_text(b, "room", room);
	laurel_build_int(b, "count", (int64_t)n);
	laurel_build_text(b, "event", event);
	laurel_build_end(b);
	return laurel_group_send_json(ctx, group, laurel_build_done(b));
}

/* The recount, settle-ms after an event. */
static int ask_settle(struct laurel_ctx *ctx, const char *room)
{
	const struct presence *p = laurel_ctx_app_data(ctx);
	if (!p->settle_ms)
		return 0;
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_text(m, "room", room);
	int rc = laurel_send_later(ctx, SETTLE_CHANNEL, m, p->settle_ms);
	laurel_msg_free(m);
	return rc;
}

static int room_connect(struct laurel_ctx *ctx)
{
	const struct presence *p = laurel_ctx_app_data(ctx);
	const char *room = laurel_ctx_kwarg(ctx, "room");
	char group[LAUREL_NAME_MAX + 1];
	int rc = laurel_ctx_group_name(ctx, ROOM_GROUP, group, sizeof(group));
	if (rc)
		return rc;
	if (p->max_per_room) {
		/* This connection is a member already: more than the limit means one too many.
		 * Two that come at the same moment may both be refused, never both let in. */
		size_t n;
		rc = laurel_group_count(ctx, group, &n);
		if (rc)
			return laurel_ctx_error(ctx, rc, "cannot count %s", group);
		if (n > (size_t)p->max_per_room) {
			/* Its disconnect will come too: the session tells it not to announce a
			 * leave of someone who never was in. */
			struct laurel_msg *session;
			rc = laurel_group_discard(ctx, group);
			if (!rc)
				rc = laurel_session(ctx, &session);
			if (!rc)
				laurel_msg_set_bool(session, "refused", true);
			return rc ? rc : laurel_ws_reject(ctx);
		}
	}
	rc = laurel_ws_accept(ctx);
	if (!rc)
		rc = announce(ctx, room, group, "join");
	if (!rc)
		rc = ask_settle(ctx, room);
	return rc;
}

static int room_disconnect(struct laurel_ctx *ctx)
{
	const char *room = laurel_ctx_kwarg(ctx, "room");
	char group[LAUREL_NAME_MAX + 1];
	struct laurel_msg *session;
	bool refused = false;
	int rc = laurel_ctx_group_name(ctx, ROOM_GROUP, group, sizeof(group));
	if (!rc && ((const struct presence *)laurel_ctx_app_data(ctx))->max_per_room) {
		/* Only a room with a limit refuses anyone: only there is a session to look at. */
		rc = laurel_session(ctx, &session);
		if (!rc && laurel_msg_get_bool(session, "refused", &refused) == 0 && refused)
			return laurel_session_delete(ctx);
	}
	if (!rc)
		rc = announce(ctx, room, group, "leave");
	if (!rc)
		rc = ask_settle(ctx, room);
	return rc;
}

/* presence.settle: {room: R}, from ask_settle. */
static int settle(struct laurel_ctx *ctx)
{
	const char *room = laurel_msg_get_text(laurel_ctx_message(ctx), "room", NULL);
	char group[LAUREL_NAME_MAX + 1];
	if (!room || snprintf(group, sizeof(group), "presence.%s", room) >= (int)sizeof(group) ||
	    !laurel_valid_group(group))
		return laurel_ctx_error(ctx, -EINVAL, "a settle message without a valid room");
	return announce(ctx, room, group, "settle");
}

static int count(struct laurel_ctx *ctx)
{
	static const struct laurel_header h[] = {{"Content-Type", "application/json"},
						 {"Cache-Control", "no-cache"}};
	char group[LAUREL_NAME_MAX + 1];
	size_t n;
	int rc = laurel_ctx_group_name(ctx, ROOM_GROUP, group, sizeof(group));
	if (!rc)
		rc = laurel_group_count(ctx, group, &n);
	if (rc)
		return rc;
	struct laurel_builder *b = laurel_ctx_builder(ctx);
	laurel_build_map(b, NULL);
	laurel_build_text(b, "room", laurel_ctx_kwarg(ctx, "room"));
	laurel_build_int(b, "count", (int64_t)n);
	laurel_build_end(b);
	char *body;
	size_t len;
	rc = laurel_json_dump(laurel_build_done(b), &body, &len);
	if (rc)
		return rc;
	rc = laurel_reply_http(ctx, 200, h, 2, body, len, false);
	free(body);
	return rc;
}

static const char page_html[] =
	"<!doctype html>\n"
	"<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
	"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
	"<title>presence</title>\n"
	"<style>body{font:16px system-ui,sans-serif;margin:3em auto;max-width:30em;color:#222}"
	"#count{font-size:4em;font-weight:600;margin:.2em 0}#state{color:#777}"
	"#log{color:#555;font-size:.9em;padding-left:1.2em}</style></head>\n"
	"<body><h1 id=\"room\"></h1>\n"
	"<div id=\"count\">&ndash;</div><div>here now <span id=\"state\">connecting</span></div>\n"
	"<ul id=\"log\"></ul>\n"
	"<script>\n"
	"const room = location.pathname.split('/')[2];\n"
	"document.getElementById('room').textContent = room;\n"
	"const count = document.getElementById('count'), state = document.getElementById('state');\n"
	"const log = document.getElementById('log');\n"
	"let delay = 500;\n"
	"function connect() {\n"
	"  const ws = new WebSocket(location.href.replace(/^http/, 'ws') + 'ws');\n"
	"  ws.onopen = () => { state.textContent = ''; delay = 500; };\n"
	"  ws.onmessage = (e) => {\n"
	"    const m = JSON.parse(e.data);\n"
	"    if (m.type !== 'presence') return;\n"
	"    count.textContent = m.count;\n"
	"    if (m.event === 'settle') return;\n"
	"    const li = document.createElement('li');\n"
	"    li.textContent = new Date().toLocaleTimeString() + ' ' + m.event + ': ' + m.count;\n"
	"    log.prepend(li);\n"
	"    while (log.children.length > 10) log.lastChild.remove();\n"
	"  };\n"
	"  ws.onclose = () => {\n"
	"    state.textContent = 'reconnecting';\n"
	"    setTimeout(connect, delay);\n"
	"    delay = Math.min(delay * 2, 10000);\n"
	"  };\n"
	"}\n"
	"connect();\n"
	"</script></body></html>\n";

static int page(struct laurel_ctx *ctx)
{
	static const struct laurel_header h[] = {{"Content-Type", "text/html; charset=utf-8"},
						 {"Cache-Control", "no-cache"}};
	return laurel_reply_http(ctx, 200, h, 2, page_html, sizeof(page_html) - 1, false);
}

/* /presence/ and /presence/<room> lead to the room's page, whose URL ends in '/'. */
static int to_room(struct laurel_ctx *ctx)
{
	const char *room = laurel_ctx_kwarg(ctx, "room");
	char location[64];
	snprintf(location, sizeof(location), "/presence/%s/", room ? room : "lobby");
	const struct laurel_header h[] = {{"Location", location},
					  {"Content-Type", "text/plain; charset=utf-8"}};
	return laurel_reply_http(ctx, 302, h, 2, location, strlen(location), false);
}

static int not_found(struct laurel_ctx *ctx)
{
	static const struct laurel_header h[] = {{"Content-Type", "text/plain; charset=utf-8"}};
	return laurel_reply_http(ctx, 404, h, 1, "not found\n", 10, false);
}

static const struct laurel_ws_consumer room_ws = {
	.connect = room_connect,
	.disconnect = room_disconnect,
	.groups = LAUREL_GROUPS(ROOM_GROUP),
};

#define ROOM "(?P<room>[a-z0-9_-]{1,32})"
#define GET LAUREL_FILTER("method", "^(?:GET|HEAD)$")

static const struct laurel_route routes[] = {
	LAUREL_ROUTE_WS(&room_ws, LAUREL_FILTER("path", "^/presence/" ROOM "/ws$")),
	LAUREL_ROUTE("http.request", page, LAUREL_FILTER("path", "^/presence/" ROOM "/$") GET),
	LAUREL_ROUTE("http.request", count, LAUREL_FILTER("path", "^/presence/" ROOM "/count$") GET),
	LAUREL_ROUTE("http.request", to_room, LAUREL_FILTER("path", "^/(?:presence/?)?$") GET),
	LAUREL_ROUTE("http.request", to_room, LAUREL_FILTER("path", "^/presence/" ROOM "$") GET),
	LAUREL_ROUTE(SETTLE_CHANNEL, settle),
	LAUREL_ROUTE("http.request", not_found),
	LAUREL_ROUTES_END,
};

LAUREL_APP("presence", routes, .init = presence_init, .fini = presence_fini,
	   .options = LAUREL_APP_OPTIONS(
		   {"max-per-room", "0", "Connections a room takes (0: no limit); one more is refused."},
		   {"settle-ms", "250",
		    "A recount this long after each join or leave, so that pages settle on the "
		    "true count when two events cross (0: none)."}));
