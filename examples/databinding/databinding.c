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
 * Nothing is kept in the worker between messages: the room comes from the path of each message,
 * the rows from the database, the members from the layer. */
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
	return example_reply_json(ctx, json_pack("{s:s?, s:{s:s?, s:s}}", "stream", stream,
						 "payload", "action", action, "error", reason));
}

/* A pk must be a positive JSON integer. */
static int get_pk(const json_t *payload, int64_t *pk)
{
	const json_t *v = json_object_get(payload, "pk");
	if (!json_is_integer(v) || json_integer_value(v) <= 0)
		return -EINVAL;
	*pk = json_integer_value(v);
	return 0;
}

static int messages_stream(struct laurel_ctx *ctx, const char *room, const json_t *payload)
{
	const char *action = json_string_value(json_object_get(payload, "action"));
	const json_t *data = json_object_get(payload, "data");
	const char *bad = NULL;
	int64_t pk = 0;
	int create = 0;

	if (!action)
		return reply_error(ctx, STORE_STREAM, NULL, "payload.action must be a string");
	if (strcmp(action, "create") == 0)
		create = 1;
	else if (strcmp(action, "update") != 0 && strcmp(action, "delete") != 0)
		return reply_error(ctx, STORE_STREAM, action,
				   "unknown action (create, update or delete)");
	if (!create && get_pk(payload, &pk))
		return reply_error(ctx, STORE_STREAM, action, "pk must be a positive integer");
	if (strcmp(action, "delete") != 0 && (bad = store_check_data(data, create)))
		return reply_error(ctx, STORE_STREAM, action, bad);

	struct store *st;
	char err[300];
	json_t *row = NULL;
	int rc = store_open(&st, err, sizeof(err));
	if (rc) {
		/* A failed consumer sends nothing, so the client would not hear of it: answer it,
		 * and tell the operator on stderr (the worker's log). */
		fprintf(stderr, "databinding: room %s: %s\n", room, err);
		return reply_error(ctx, STORE_STREAM, action, "database unavailable");
	}
	if (create) {
		rc = store_create(st, room, json_string_value(json_object_get(data, "author")),
				  json_string_value(json_object_get(data, "text")), &row);
	} else if (strcmp(action, "update") == 0) {
		rc = store_update(st, pk, room, data, &row);
	} else {
		rc = store_delete(st, pk, room, &row);
	}
	if (rc < 0) {
		fprintf(stderr, "databinding: room %s: %s\n", room, store_error(st));
		store_close(st);
		return reply_error(ctx, STORE_STREAM, action, "database error");
	}
	store_close(st);
	if (rc == STORE_NOT_FOUND)
		return reply_error(ctx, STORE_STREAM, action, "no such pk in this room");

	char group[100];
	store_group(room, group, sizeof(group));
	json_t *frame = store_change_frame(action, row);
	json_decref(row);
	return example_group_send_json(ctx, group, frame);
}

static int binding_receive(struct laurel_ctx *ctx)
{
	const struct laurel_msg *m = laurel_ctx_message(ctx);
	const char *room = laurel_ctx_kwarg(ctx, "room");
	size_t len;
	const char *text = laurel_msg_get_text(m, "text", &len);
	if (!text)
		return reply_error(ctx, NULL, NULL, "expected a JSON text frame");

	json_error_t jerr;
	json_t *frame = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	const char *stream = json_string_value(json_object_get(frame, "stream"));
	const json_t *payload = json_object_get(frame, "payload");
	int rc;
	if (!frame) {
		char reason[200];
		snprintf(reason, sizeof(reason), "bad JSON at column %d: %s", jerr.column,
			 jerr.text);
		rc = reply_error(ctx, NULL, NULL, reason);
	} else if (!stream || !json_is_object(payload)) {
		rc = reply_error(ctx, NULL, NULL,
				 "expected {\"stream\": string, \"payload\": object}");
	} else if (strcmp(stream, STORE_STREAM) == 0) {
		rc = messages_stream(ctx, room, payload);
	} else {
		rc = reply_error(ctx, stream, NULL, "unknown stream");
	}
	json_decref(frame);
	return rc;
}

static const struct laurel_ws_consumer binding = {
	.receive = binding_receive,
	.groups = LAUREL_CHANNELS("binding-{room}"), /* joined on connect, left on disconnect */
};

static const struct laurel_route routes[] = {
	LAUREL_ROUTE_WS(&binding,
			LAUREL_FILTER("path", "^/demultiplex/(?P<room>[A-Za-z0-9_-]{1,32})/$")),
	LAUREL_ROUTES_END,
};

LAUREL_APP("databinding", routes);
