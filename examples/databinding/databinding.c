/* The live data binding example (Channels 1's WebsocketDemultiplexer + WebsocketBinding).
 *
 * A WebSocket on /demultiplex/<room>/ carries JSON frames {"stream": S, "payload": P}. The
 * "messages" stream binds the rows of the SQLite table of common/store.c: a payload
 * {"action": "create" | "update" | "delete", "pk": N, "data": {"text", "author"}} changes the
 * table, and every change is broadcast to the room's group "binding-<room>" as
 * {"stream": "messages", "payload": {"action", "pk", "data", "model"}}. A frame that cannot be
 * carried out is answered, to its sender only, with
 * {"stream": S, "payload": {"action": A, "error": REASON}} (stream and action null when unknown).
 *
 * The routes name no HTTP channel, so a worker running this application shares a layer with one
 * running the HTTP API example (which serves the same rows) without taking its requests.
 *
 * Each worker opens the database once (the init hook of common/store.c) and reaches it with
 * laurel_ctx_app_data; nothing else is kept between messages: the room comes from the path of
 * each message, the rows from the database, the members from the layer. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "example.h"
#include "laurel/consumer.h"
#include "laurel/routing.h"
#include "store.h"

static int reply_error(struct laurel_ctx *ctx, const char *stream, const char *action,
		       const char *reason)
{
	struct laurel_builder *b = laurel_ctx_builder(ctx);
	laurel_build_map(b, NULL);
	if (stream)
		laurel_build_text(b, "stream", stream);
	else
		laurel_build_nil(b, "stream");
	laurel_build_map(b, "payload");
	if (action)
		laurel_build_text(b, "action", action);
	else
		laurel_build_nil(b, "action");
	laurel_build_text(b, "error", reason);
	laurel_build_end(b);
	laurel_build_end(b);
	return laurel_reply_json(ctx, laurel_build_done(b));
}

static int messages_stream(struct laurel_ctx *ctx, const struct laurel_value *payload)
{
	const char *action = example_text(laurel_map_get(payload, "action"), NULL);
	const struct laurel_value *data = laurel_map_get(payload, "data");
	const struct laurel_value *pk = laurel_map_get(payload, "pk");
	const char *room = laurel_ctx_kwarg(ctx, "room");
	const char *bad = NULL;
	bool create = false;

	if (!action)
		return reply_error(ctx, STORE_STREAM, NULL, "payload.action must be a string");
	if (strcmp(action, "create") == 0)
		create = true;
	else if (strcmp(action, "update") != 0 && strcmp(action, "delete") != 0)
		return reply_error(ctx, STORE_STREAM, action,
				   "unknown action (create, update or delete)");
	if (!create && (!pk || pk->type != LAUREL_INT || pk->u.i <= 0))
		return reply_error(ctx, STORE_STREAM, action, "pk must be a positive integer");
	if (strcmp(action, "delete") != 0 && (bad = store_check_data(data, create)))
		return reply_error(ctx, STORE_STREAM, action, bad);

	struct store *st = laurel_ctx_app_data(ctx);
	const char *text = example_text(laurel_map_get(data, "text"), NULL);
	const char *author = example_text(laurel_map_get(data, "author"), NULL);
	struct store_row row;
	int rc;
	if (create)
		rc = store_create(st, room, author, text, &row);
	else if (strcmp(action, "update") == 0)
		rc = store_update(st, pk->u.i, room, text, author, &row);
	else
		rc = store_delete(st, pk->u.i, room, &row);
	if (rc < 0) {
		/* A failed consumer sends nothing, so the client would not hear of it: answer it,
		 * and tell the operator in the worker's log. */
		laurel_ctx_log(ctx, LAUREL_LOG_ERROR, "databinding: room %s: %s", room,
			       store_error(st));
		return reply_error(ctx, STORE_STREAM, action, "database error");
	}
	if (rc == STORE_NOT_FOUND)
		return reply_error(ctx, STORE_STREAM, action, "no such pk in this room");

	char group[LAUREL_NAME_MAX + 1];
	struct laurel_builder *b = laurel_ctx_builder(ctx);
	rc = laurel_ctx_group_name(ctx, STORE_GROUP, group, sizeof(group));
	if (rc)
		return rc;
	store_build_change(b, action, &row);
	return laurel_group_send_json(ctx, group, laurel_build_done(b));
}

static int binding_receive(struct laurel_ctx *ctx)
{
	const struct laurel_value *frame;
	int rc = laurel_ctx_json(ctx, &frame);
	if (rc == -ENOENT)
		return reply_error(ctx, NULL, NULL, "expected a JSON text frame");
	if (rc) /* "the text frame is not JSON: ... at offset N" */
		return reply_error(ctx, NULL, NULL, laurel_ctx_error_text(ctx));

	const char *stream = example_text(laurel_map_get(frame, "stream"), NULL);
	const struct laurel_value *payload = laurel_map_get(frame, "payload");
	if (!stream || !payload || payload->type != LAUREL_MAP)
		return reply_error(ctx, NULL, NULL,
				   "expected {\"stream\": string, \"payload\": object}");
	if (strcmp(stream, STORE_STREAM) != 0)
		return reply_error(ctx, stream, NULL, "unknown stream");
	return messages_stream(ctx, payload);
}

static const struct laurel_ws_consumer binding = {
	.receive = binding_receive,
	.groups = LAUREL_GROUPS(STORE_GROUP), /* joined on connect, left on disconnect */
};

static const struct laurel_route routes[] = {
	LAUREL_ROUTE_WS(&binding,
			LAUREL_FILTER("path", "^/demultiplex/(?P<room>[A-Za-z0-9_-]{1,32})/$")),
	LAUREL_ROUTES_END,
};

LAUREL_APP("databinding", routes, .init = store_app_init, .fini = store_app_fini,
	   .options = STORE_OPTIONS);
