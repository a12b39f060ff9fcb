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
 *   channel session        {"user": U, "room": R} of each connection
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
#define ROOM_MAX_LEN 32
#define TEXT_MAX 2000
#define ROSTER_CHANNEL "chat.roster"
#define USER_PREFIX "user."

#define CLOSE_NAME_TAKEN 4001
#define CLOSE_BAD_NAME 4002

extern const char chat_page[];
extern const size_t chat_page_len;

/* Group names; every one fits in 100 bytes with the name limits above. */
static void room_group(char *out, size_t size, const char *room)
{
	snprintf(out, size, "chat-%s", room);
}

static void claim_group(char *out, size_t size, const char *room, const char *user)
{
	snprintf(out, size, "chat-%s.name.%s", room, user);
}

static void roster_group(char *out, size_t size, const char *room)
{
	snprintf(out, size, "chat-%s.users", room);
}

/* The users online in room, in the order they joined, as a JSON array; NULL on a layer error. */
static json_t *users_online(struct laurel_ctx *ctx, const char *room, int *rc)
{
	char group[100], **members;
	size_t n;
	roster_group(group, sizeof(group), room);
	*rc = laurel_group_members(ctx, group, &members, &n);
	if (*rc)
		return NULL;
	json_t *users = json_array();
	for (size_t i = 0; i < n; i++)
		if (strncmp(members[i], USER_PREFIX, strlen(USER_PREFIX)) == 0)
			json_array_append_new(users, json_string(members[i] + strlen(USER_PREFIX)));
	laurel_strv_free(members);
	return users;
}

static int send_error(struct laurel_ctx *ctx, const char *reason)
{
	return example_reply_json(ctx, json_pack("{s:s, s:s}", "type", "error", "reason", reason));
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
	char group[100];
	size_t n = 0;
	int rc;

	if (!example_valid_name(user, NAME_MAX_LEN)) {
		free(user);
		return refuse(ctx, CLOSE_BAD_NAME,
			      "bad username: use 1 to 24 letters, digits, - or _");
	}
	/* Claim the name: join its group and look. Two connections that claim it at the same
	 * moment both see 2 and are both refused, never both accepted. */
	claim_group(group, sizeof(group), room, user);
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
		laurel_msg_set_text(session, "room", room);
		room_group(group, sizeof(group), room);
		rc = join_room(ctx, group);
	}
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
	int rc = laurel_session(ctx, &session);
	if (rc)
		return rc;
	const char *user = laurel_msg_get_text(session, "user", NULL);
	const char *room = laurel_msg_get_text(session, "room", NULL);
	if (!user || !room)
		return send_error(ctx, "not in a room");

	size_t len;
	const char *frame = laurel_msg_get_text(laurel_ctx_message(ctx), "text", &len);
	json_t *in = frame ? json_loadb(frame, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
	const char *text = json_string_value(json_object_get(in, "text"));
	size_t tlen = json_string_length(json_object_get(in, "text"));
	if (!text || tlen == 0 || tlen > TEXT_MAX) {
		json_decref(in);
		return send_error(ctx, "send {\"text\": \"...\"} with 1 to 2000 bytes of text");
	}

	json_t *users = users_online(ctx, room, &rc);
	if (users) {
		char group[100];
		room_group(group, sizeof(group), room);
		rc = example_group_send_json(ctx, group,
					     json_pack("{s:s, s:s, s:s, s:o}", "type", "message",
						       "user", user, "text", text, "users", users));
	}
	json_decref(in);
	return rc;
}

static int chat_disconnect(struct laurel_ctx *ctx)
{
	struct laurel_msg *session;
	int rc = laurel_session(ctx, &session);
	if (rc)
		return rc;
	const char *user = laurel_msg_get_text(session, "user", NULL);
	const char *room = laurel_msg_get_text(session, "room", NULL);
	if (user && room) {
		char group[100];
		size_t n = 0;
		room_group(group, sizeof(group), room);
		rc = laurel_group_discard(ctx, group);
		claim_group(group, sizeof(group), room, user);
		if (!rc)
			rc = laurel_group_discard(ctx, group);
		if (!rc)
			rc = laurel_group_count(ctx, group, &n);
		if (!rc && n == 0)
			rc = send_roster(ctx, "leave", room, user);
	}
	if (!rc)
		rc = laurel_session_delete(ctx);
	return rc;
}

/* chat.roster: {reply_channel: "user.U", event: "join" | "leave", room: R, user: U}. */
static int roster(struct laurel_ctx *ctx)
{
	const struct laurel_msg *m = laurel_ctx_message(ctx);
	const char *event = laurel_msg_get_text(m, "event", NULL);
	const char *room = laurel_msg_get_text(m, "room", NULL);
	const char *user = laurel_msg_get_text(m, "user", NULL);
	const char *reply = laurel_ctx_reply_channel(ctx);
	int join = event && strcmp(event, "join") == 0;
	if (!event || (!join && strcmp(event, "leave") != 0) ||
	    !example_valid_name(room, ROOM_MAX_LEN) || !example_valid_name(user, NAME_MAX_LEN) ||
	    !reply || strncmp(reply, USER_PREFIX, strlen(USER_PREFIX)) != 0 ||
	    strcmp(reply + strlen(USER_PREFIX), user) != 0)
		return laurel_ctx_error(ctx, -EINVAL, "malformed roster message");

	char group[100];
	size_t n = 0;
	claim_group(group, sizeof(group), room, user);
	int rc = laurel_group_count(ctx, group, &n);
	if (rc)
		return rc;
	/* A join whose connection has already gone, or a leave of a name that was taken again in
	 * the meantime: the other message of the pair tells the room. */
	if (join != (n > 0))
		return 0;
	roster_group(group, sizeof(group), room);
	rc = join ? laurel_group_add(ctx, group) : laurel_group_discard(ctx, group);
	if (rc)
		return rc;
	json_t *users = users_online(ctx, room, &rc);
	if (!users)
		return rc;
	room_group(group, sizeof(group), room);
	return example_group_send_json(
		ctx, group,
		json_pack("{s:s, s:s, s:o}", "type", event, "user", user, "users", users));
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

static const struct laurel_ws_consumer chat = {
	.connect = chat_connect,
	.receive = chat_receive,
	.disconnect = chat_disconnect,
};

#define ROOM "(?P<room>[A-Za-z0-9_-]{1,32})"
#define GET LAUREL_FILTER("method", "^(?:GET|HEAD)$")

static const struct laurel_route routes[] = {
	LAUREL_ROUTE_WS(&chat, LAUREL_FILTER("path", "^/chat/" ROOM "/ws$")),
	LAUREL_ROUTE("http.request", page, LAUREL_FILTER("path", "^/chat/" ROOM "/$") GET),
	LAUREL_ROUTE("http.request", to_room, LAUREL_FILTER("path", "^/(?:chat/?)?$") GET),
	LAUREL_ROUTE("http.request", to_room, LAUREL_FILTER("path", "^/chat/" ROOM "$") GET),
	LAUREL_ROUTE(ROSTER_CHANNEL, roster),
	LAUREL_ROUTE("http.request", not_found),
	LAUREL_ROUTES_END,
};

LAUREL_APP("chat", routes);
