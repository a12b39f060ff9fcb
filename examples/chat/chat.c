/* The chat example: rooms, join and leave announcements, the list of users online, refused
 * duplicate names. Every piece of state lives in the channel layer, so any number of interface
 * and worker processes serve it (docs/examples.md has the whole design).
 *
 *   GET /chat/<room>/                        the page (static/index.html, compiled in)
 *   WebSocket /chat/<room>/ws?username=NAME  the room
 *
 * Frames to the browser, each a JSON text frame, each event with the users online in the room:
 *   {"type": "join",    "user": U, "users": [...]}
 *   {"type": "leave",   "user": U, "users": [...]}
 *   {"type": "message", "user": U, "text": T, "users": [...]}
 *   {"type": "error",   "reason": R}   (a refused connection is then closed: 4001 name taken,
 *                                       4002 bad name; a bad frame is only answered)
 * Frames from the browser: {"text": T}.
 * With a history for the room's group (--group-history 'chat-*=200/600') the room's frames come
 * in laurel's envelope with offsets, and a page that comes back recovers what it missed
 * (join_room; the page uses clients/js).
 *
 * Layer state, per room R and user U:
 *   group chat-R           the reply channels of the connections in the room (every event)
 *   group chat-R.name.U    the reply channel that holds the name U (the claim: 0 or 1 member)
 *   group chat-R.users     the users online, as members named "user.U" (the roster)
 *   channel session        {"user": U} of each connection
 * A consumer can only add the reply channel of the message it handles to a group, so the roster
 * is kept by the consumer of the internal channel "chat.roster", which gets a message whose
 * reply channel is "user.U" (a name nothing ever reads): adding "its reply channel" to the roster
 * adds the user. It checks the claim before it changes the roster, so join and leave messages
 * that cross (a reconnect) leave the roster right. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "example.h"
#include "laurel/consumer.h"
#include "laurel/layer.h" /* laurel_strv_free */
#include "laurel/routing.h"

#define NAME_MAX_LEN 24
#define TEXT_MAX 2000
#define ROSTER_CHANNEL "chat.roster"
#define USER_PREFIX "user."

#define CLOSE_NAME_TAKEN 4001
#define CLOSE_BAD_NAME 4002

extern const char chat_page[];
extern const size_t chat_page_len;

/* The room's groups, templates on the keyword argument room (from the path of the WebSocket's
 * messages, from the field room of a roster message). */
#define ROOM_GROUP "chat-{room}"
#define ROSTER_GROUP "chat-{room}.users"

/* The claim of user in the room: "chat-R.name.U". U is not a keyword argument of the WebSocket's
 * messages (it comes from the query string, then the session), so it is added here. */
static int claim_group(struct laurel_ctx *ctx, const char *user, char *out, size_t size)
{
	int rc = laurel_ctx_group_name(ctx, ROOM_GROUP, out, size);
	if (rc)
		return rc;
	size_t len = strlen(out);
	snprintf(out + len, size - len, ".name.%s", user);
	return 0;
}

static int send_error(struct laurel_ctx *ctx, const char *reason)
{
	struct laurel_builder *b = laurel_ctx_builder(ctx);
	laurel_build_map(b, NULL);
	laurel_build_text(b, "type", "error");
	laurel_build_text(b, "reason", reason);
	laurel_build_end(b);
	return laurel_reply_json(ctx, laurel_build_done(b));
}

/* Accepts the handshake so that the browser can read why, says why, and closes. */
static int refuse(struct laurel_ctx *ctx, int code, const char *reason)
{
	int rc = laurel_ws_accept(ctx);
	if (!rc)
		rc = send_error(ctx, reason);
	if (!rc)
		rc = laurel_ws_close(ctx, code);
	return rc;
}

/* Ends the event that b holds (an open map) with the users online in the room, in the order they
 * joined, and sends it to the room. */
static int send_room(struct laurel_ctx *ctx, struct laurel_builder *b)
{
	char group[LAUREL_NAME_MAX + 1], **members;
	size_t n;
	int rc = laurel_ctx_group_name(ctx, ROSTER_GROUP, group, sizeof(group));
	if (!rc)
		rc = laurel_group_members(ctx, group, &members, &n);
	if (rc)
		return rc;
	laurel_build_list(b, "users");
	for (size_t i = 0; i < n; i++)
		if (strncmp(members[i], USER_PREFIX, strlen(USER_PREFIX)) == 0)
			laurel_build_text(b, NULL, members[i] + strlen(USER_PREFIX));
	laurel_build_end(b);
	laurel_build_end(b);
	laurel_strv_free(members);
	rc = laurel_ctx_group_name(ctx, ROOM_GROUP, group, sizeof(group));
	return rc ? rc : laurel_group_send_json(ctx, group, laurel_build_done(b));
}

/* A message to the roster keeper on behalf of user "user.U". */
static int send_roster(struct laurel_ctx *ctx, const char *event, const char *room,
		       const char *user)
{
	char channel[100];
	snprintf(channel, sizeof(channel), USER_PREFIX "%s", user);
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_text(m, "reply_channel", channel);
	laurel_msg_set_text(m, "event", event);
	laurel_msg_set_text(m, "room", room);
	laurel_msg_set_text(m, "user", user);
	int rc = laurel_send(ctx, ROSTER_CHANNEL, m);
	laurel_msg_free(m);
	return rc;
}

/* Joins the room's group. A page that comes back says what it has seen (?epoch=E&offset=N, as
 * clients/js sends it): with a history for the room's group (--group-history 'chat-*=200/600')
 * it gets what it missed, then a status frame (docs/recovery.md). Without a rule for the
 * group, or without a position, it only joins. */
static int join_room(struct laurel_ctx *ctx, const char *group)
{
	const struct laurel_msg *m = laurel_ctx_message(ctx);
	char *epoch = example_query_param(m, "epoch");
	char *offset = example_query_param(m, "offset");
	int rc;
	if (epoch && *epoch) {
		rc = laurel_group_recover(ctx, group, epoch,
					  offset ? strtoull(offset, NULL, 10) : 0);
		if (rc == LAUREL_HISTORY_LOST) /* the page was told to reload: nothing wrong */
			rc = 0;
		else if (rc == -EINVAL || rc == -ENOTSUP) /* no history here, or a Daphne */
			rc = laurel_group_add(ctx, group);
	} else {
		rc = laurel_group_add(ctx, group);
	}
	free(epoch);
	free(offset);
	return rc;
}

static int chat_connect(struct laurel_ctx *ctx)
{
	const char *room = laurel_ctx_kwarg(ctx, "room");
	char *user = example_query_param(laurel_ctx_message(ctx), "username");
	char group[LAUREL_NAME_MAX + 1];
	size_t n = 0;
	int rc;

	if (!example_valid_name(user, NAME_MAX_LEN)) {
		free(user);
		return refuse(ctx, CLOSE_BAD_NAME,
			      "bad username: use 1 to 24 letters, digits, - or _");
	}
	/* Claim the name: join its group and look. Two connections that claim it at the same
	 * moment both see 2 and are both refused, never both accepted. */
	rc = claim_group(ctx, user, group, sizeof(group));
	if (!rc)
		rc = laurel_group_add(ctx, group);
	if (!rc)
		rc = laurel_group_count(ctx, group, &n);
	if (!rc && n > 1) {
		rc = laurel_group_discard(ctx, group);
		free(user);
		return rc ? rc : refuse(ctx, CLOSE_NAME_TAKEN, "username taken");
	}

	struct laurel_msg *session;
	if (!rc)
		rc = laurel_session(ctx, &session);
	if (!rc) {
		laurel_msg_set_text(session, "user", user);
		rc = laurel_ctx_group_name(ctx, ROOM_GROUP, group, sizeof(group));
	}
	if (!rc)
		rc = join_room(ctx, group);
	if (!rc)
		rc = laurel_ws_accept(ctx);
	/* The roster keeper adds the user and announces the join to the room, this connection
	 * included: after the accept, since the held sends go out in order. */
	if (!rc)
		rc = send_roster(ctx, "join", room, user);
	free(user);
	return rc;
}

static int chat_receive(struct laurel_ctx *ctx)
{
	struct laurel_msg *session;
	const struct laurel_value *in;
	const char *user, *text = NULL;
	size_t len = 0;
	int rc = laurel_session(ctx, &session);
	if (rc)
		return rc;
	user = laurel_msg_get_text(session, "user", NULL);
	if (!user)
		return send_error(ctx, "not in a room");
	if (laurel_ctx_json(ctx, &in) == 0)
		text = example_text(laurel_map_get(in, "text"), &len);
	if (!text || len == 0 || len > TEXT_MAX)
		return send_error(ctx, "send {\"text\": \"...\"} with 1 to 2000 bytes of text");

	struct laurel_builder *b = laurel_ctx_builder(ctx);
	laurel_build_map(b, NULL);
	laurel_build_text(b, "type", "message");
	laurel_build_text(b, "user", user);
	laurel_build_textn(b, "text", text, len);
	return send_room(ctx, b);
}

static int chat_disconnect(struct laurel_ctx *ctx)
{
	struct laurel_msg *session;
	int rc = laurel_session(ctx, &session);
	if (rc)
		return rc;
	const char *user = laurel_msg_get_text(session, "user", NULL);
	if (user) {
		char group[LAUREL_NAME_MAX + 1];
		size_t n = 0;
		rc = laurel_ctx_group_name(ctx, ROOM_GROUP, group, sizeof(group));
		if (!rc)
			rc = laurel_group_discard(ctx, group);
		if (!rc)
			rc = claim_group(ctx, user, group, sizeof(group));
		if (!rc)
			rc = laurel_group_discard(ctx, group);
		if (!rc)
			rc = laurel_group_count(ctx, group, &n);
		if (!rc && n == 0)
			rc = send_roster(ctx, "leave", laurel_ctx_kwarg(ctx, "room"), user);
	}
	if (!rc)
		rc = laurel_session_delete(ctx);
	return rc;
}

/* chat.roster: {reply_channel: "user.U", event: "join" | "leave", room: R, user: U}, room and user
 * checked by the route. */
static int roster(struct laurel_ctx *ctx)
{
	const struct laurel_msg *m = laurel_ctx_message(ctx);
	const char *event = laurel_msg_get_text(m, "event", NULL);
	const char *user = laurel_ctx_kwarg(ctx, "user");
	const char *reply = laurel_ctx_reply_channel(ctx);
	bool join = event && strcmp(event, "join") == 0;
	if (!event || (!join && strcmp(event, "leave") != 0) || !reply ||
	    strncmp(reply, USER_PREFIX, strlen(USER_PREFIX)) != 0 ||
	    strcmp(reply + strlen(USER_PREFIX), user) != 0)
		return laurel_ctx_error(ctx, -EINVAL, "malformed roster message");

	char group[LAUREL_NAME_MAX + 1];
	size_t n = 0;
	int rc = claim_group(ctx, user, group, sizeof(group));
	if (!rc)
		rc = laurel_group_count(ctx, group, &n);
	if (rc)
		return rc;
	/* A join whose connection has already gone, or a leave of a name that was taken again in
	 * the meantime: the other message of the pair tells the room. */
	if (join != (n > 0))
		return 0;
	rc = laurel_ctx_group_name(ctx, ROSTER_GROUP, group, sizeof(group));
	if (!rc)
		rc = join ? laurel_group_add(ctx, group) : laurel_group_discard(ctx, group);
	if (rc)
		return rc;
	struct laurel_builder *b = laurel_ctx_builder(ctx);
	laurel_build_map(b, NULL);
	laurel_build_text(b, "type", event);
	laurel_build_text(b, "user", user);
	return send_room(ctx, b);
}

static int page(struct laurel_ctx *ctx)
{
	static const struct laurel_header h[] = {{"Content-Type", "text/html; charset=utf-8"},
						 {"Cache-Control", "no-cache"}};
	return laurel_reply_http(ctx, 200, h, 2, chat_page, chat_page_len, false);
}

/* /chat/ and /chat/<room> lead to the page of a room, whose URL ends in '/' so that the page's
 * relative WebSocket URL works. */
static int to_room(struct laurel_ctx *ctx)
{
	const char *room = laurel_ctx_kwarg(ctx, "room");
	char location[64];
	snprintf(location, sizeof(location), "/chat/%s/", room ? room : "lobby");
	const struct laurel_header h[] = {{"Location", location},
					  {"Content-Type", "text/plain; charset=utf-8"}};
	return laurel_reply_http(ctx, 302, h, 2, location, strlen(location), false);
}

static int not_found(struct laurel_ctx *ctx)
{
	static const struct laurel_header h[] = {{"Content-Type", "text/plain; charset=utf-8"}};
	return laurel_reply_http(ctx, 404, h, 1, "not found\n", 10, false);
}

/* strict_ordering: a user's messages reach the room in the order typed, even when two workers
 * take two of them at once (and the connect runs before any of them, the disconnect after). */
static const struct laurel_ws_consumer chat = {
	.connect = chat_connect,
	.receive = chat_receive,
	.disconnect = chat_disconnect,
	.strict_ordering = true,
};

#define ROOM "(?P<room>[A-Za-z0-9_-]{1,32})"
#define USER "(?P<user>[A-Za-z0-9_-]{1,24})"
#define GET LAUREL_FILTER("method", "^(?:GET|HEAD)$")

static const struct laurel_route routes[] = {
	LAUREL_ROUTE_WS(&chat, LAUREL_FILTER("path", "^/chat/" ROOM "/ws$")),
	LAUREL_ROUTE("http.request", page, LAUREL_FILTER("path", "^/chat/" ROOM "/$") GET),
	LAUREL_ROUTE("http.request", to_room, LAUREL_FILTER("path", "^/(?:chat/?)?$") GET),
	LAUREL_ROUTE("http.request", to_room, LAUREL_FILTER("path", "^/chat/" ROOM "$") GET),
	LAUREL_ROUTE(ROSTER_CHANNEL, roster,
		     LAUREL_FILTER("room", "^" ROOM "$") LAUREL_FILTER("user", "^" USER "$")),
	LAUREL_ROUTE("http.request", not_found),
	LAUREL_ROUTES_END,
};

LAUREL_APP("chat", routes);
