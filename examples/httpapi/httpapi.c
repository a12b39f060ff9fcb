/* The HTTP API example: a JSON endpoint on the rows of the data-binding example (common/store.c),
 * routed on method and path.
 *
 *   GET  /api/messages[?room=R]   200, the rows (of one room), oldest first
 *   POST /api/messages            201 and Location, the new row; body {"room", "text", "author"?}
 *   GET  /api/messages/<pk>       200, the row; 404 if there is none
 *
 * Another method on those paths is a 405 with Allow, a body that is not a JSON object of the
 * right fields a 400, any other path a 404; every answer is application/json. A row created here
 * is also broadcast to the room's data-binding group, so the WebSockets on /demultiplex/<room>/
 * see it as they see their own changes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "example.h"
#include "laurel/consumer.h"
#include "laurel/routing.h"
#include "store.h"

/* Opens the store, or answers 500 and returns NULL. */
static struct store *open_store(struct laurel_ctx *ctx, int *rc)
{
	struct store *st;
	char err[300];
	if (store_open(&st, err, sizeof(err)) == 0)
		return st;
	fprintf(stderr, "httpapi: %s\n", err);
	*rc = example_reply_http_error(ctx, 500, "database unavailable");
	return NULL;
}

static int db_error(struct laurel_ctx *ctx, struct store *st)
{
	fprintf(stderr, "httpapi: %s\n", store_error(st));
	store_close(st);
	return example_reply_http_error(ctx, 500, "database error");
}

static int list(struct laurel_ctx *ctx)
{
	char *room = example_query_param(laurel_ctx_message(ctx), "room");
	int rc = 0;
	if (room && !example_valid_name(room, STORE_ROOM_MAX)) {
		free(room);
		return example_reply_http_error(ctx, 400, "bad room name");
	}
	struct store *st = open_store(ctx, &rc);
	json_t *rows;
	if (st) {
		if (store_list(st, room, &rows)) {
			rc = db_error(ctx, st);
		} else {
			store_close(st);
			rc = example_reply_http_json(ctx, 200, rows, NULL, 0);
		}
	}
	free(room);
	return rc;
}

static int create(struct laurel_ctx *ctx)
{
	const struct laurel_msg *m = laurel_ctx_message(ctx);
	size_t len;
	const char *body = laurel_msg_get_bytes(m, "body", &len);
	if (laurel_msg_get(m, "body_channel"))
		return example_reply_http_error(ctx, 413, "body too large");

	json_error_t jerr;
	json_t *in = json_loadb(body ? body : "", body ? len : 0, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(in)) {
		char reason[200];
		if (in)
			snprintf(reason, sizeof(reason), "the body must be a JSON object");
		else
			snprintf(reason, sizeof(reason), "bad JSON at line %d, column %d: %s",
				 jerr.line, jerr.column, jerr.text);
		json_decref(in);
		return example_reply_http_error(ctx, 400, reason);
	}
	json_t *data = json_deep_copy(in);
	const char *room = json_string_value(json_object_get(in, "room"));
	const char *bad = NULL;
	json_object_del(data, "room");
	if (!room || !example_valid_name(room, STORE_ROOM_MAX))
		bad = "room must be 1 to 32 letters, digits, - or _";
	else
		bad = store_check_data(data, 1);
	json_decref(data);
	if (bad) {
		json_decref(in);
		return example_reply_http_error(ctx, 400, bad);
	}

	int rc = 0;
	json_t *row;
	struct store *st = open_store(ctx, &rc);
	if (!st)
		goto out;
	if (store_create(st, room, json_string_value(json_object_get(in, "author")),
			 json_string_value(json_object_get(in, "text")), &row)) {
		rc = db_error(ctx, st);
		goto out;
	}
	store_close(st);

	char location[64], group[100];
	snprintf(location, sizeof(location), "/api/messages/%lld",
		 (long long)json_integer_value(json_object_get(row, "pk")));
	const struct laurel_header h[] = {{"Location", location}};
	store_group(room, group, sizeof(group));
	rc = example_group_send_json(ctx, group, store_change_frame("create", row));
	if (!rc)
		rc = example_reply_http_json(ctx, 201, row, h, 1);
	else
		json_decref(row);
out:
	json_decref(in);
	return rc;
}

static int detail(struct laurel_ctx *ctx)
{
	const char *pk = laurel_ctx_kwarg(ctx, "pk");
	int rc = 0;
	struct store *st = open_store(ctx, &rc);
	json_t *row;
	if (!st)
		return rc;
	rc = store_get(st, strtoll(pk, NULL, 10), NULL, &row);
	if (rc < 0)
		return db_error(ctx, st);
	store_close(st);
	if (rc == STORE_NOT_FOUND)
		return example_reply_http_error(ctx, 404, "no such message");
	return example_reply_http_json(ctx, 200, row, NULL, 0);
}

static int not_allowed(struct laurel_ctx *ctx, const char *allow)
{
	const struct laurel_header h[] = {{"Allow", allow}};
	return example_reply_http_json(ctx, 405, json_pack("{s:s}", "error", "method not allowed"),
				       h, 1);
}

static int list_not_allowed(struct laurel_ctx *ctx)
{
	return not_allowed(ctx, "GET, HEAD, POST");
}

static int detail_not_allowed(struct laurel_ctx *ctx)
{
	return not_allowed(ctx, "GET, HEAD");
}

static int not_found(struct laurel_ctx *ctx)
{
	return example_reply_http_error(ctx, 404, "not found");
}

#define GET LAUREL_FILTER("method", "^(?:GET|HEAD)$")

static const struct laurel_route api[] = {
	LAUREL_ROUTE("http.request", list, LAUREL_FILTER("path", "^$") GET),
	LAUREL_ROUTE("http.request", create,
		     LAUREL_FILTER("path", "^$") LAUREL_FILTER("method", "^POST$")),
	LAUREL_ROUTE("http.request", list_not_allowed, LAUREL_FILTER("path", "^$")),
	LAUREL_ROUTE("http.request", detail, LAUREL_FILTER("path", "^/(?P<pk>[0-9]{1,18})$") GET),
	LAUREL_ROUTE("http.request", detail_not_allowed,
		     LAUREL_FILTER("path", "^/(?P<pk>[0-9]{1,18})$")),
	LAUREL_ROUTES_END,
};

static const struct laurel_route routes[] = {
	LAUREL_INCLUDE(api, LAUREL_FILTER("path", "^/api/messages")),
	LAUREL_ROUTE("http.request", not_found),
	LAUREL_ROUTES_END,
};

LAUREL_APP("httpapi", routes);
