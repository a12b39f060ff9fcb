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
 * see it as they see their own changes.
 *
 * The request body is parsed with laurel_json_parse (duplicate keys refused), the replies are
 * built with the value builder, and the database is opened once per worker (common/store.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "example.h"
#include "laurel/consumer.h"
#include "laurel/routing.h"
#include "store.h"

static int db_error(struct laurel_ctx *ctx, struct store *st)
{
	laurel_ctx_log(ctx, LAUREL_LOG_ERROR, "httpapi: %s", store_error(st));
	return example_reply_http_error(ctx, 500, "database error");
}

static int list(struct laurel_ctx *ctx)
{
	char *room = example_query_param(laurel_ctx_message(ctx), "room");
	struct store *st = laurel_ctx_app_data(ctx);
	struct laurel_builder *b = laurel_ctx_builder(ctx);
	int rc;
	if (room && !example_valid_name(room, STORE_ROOM_MAX))
		rc = example_reply_http_error(ctx, 400, "bad room name");
	else if (store_list(st, room, b, NULL))
		rc = db_error(ctx, st);
	else
		rc = example_reply_http_json(ctx, 200, laurel_build_done(b), NULL, 0);
	free(room);
	return rc;
}

/* The fields of the body but room, as the map store_check_data checks. */
static const struct laurel_value *body_data(struct laurel_ctx *ctx, const struct laurel_value *in)
{
	struct laurel_builder *b = laurel_ctx_builder(ctx);
	laurel_build_map(b, NULL);
	for (size_t i = 0; i < in->u.map.len; i++)
		if (strcmp(in->u.map.items[i].key.ptr, "room") != 0)
			laurel_build_value(b, in->u.map.items[i].key.ptr, &in->u.map.items[i].value);
	laurel_build_end(b);
	return laurel_build_done(b);
}

static int create(struct laurel_ctx *ctx)
{
	const struct laurel_msg *m = laurel_ctx_message(ctx);
	size_t len;
	const char *body = laurel_msg_get_bytes(m, "body", &len);
	if (laurel_msg_get(m, "body_channel"))
		return example_reply_http_error(ctx, 413, "body too large");

	/* Duplicate keys refused: which "room" would be meant? */
	const struct laurel_value *in;
	if (laurel_json_parse(ctx, body ? body : "", body ? len : 0, LAUREL_JSON_UNIQUE_KEYS, &in))
		return example_reply_http_error(ctx, 400, laurel_ctx_error_text(ctx));
	if (in->type != LAUREL_MAP)
		return example_reply_http_error(ctx, 400, "the body must be a JSON object");
	const struct laurel_value *data = body_data(ctx, in);
	const char *room = example_text(laurel_map_get(in, "room"), NULL);
	const char *bad = NULL;
	if (!room || !example_valid_name(room, STORE_ROOM_MAX))
		bad = "room must be 1 to 32 letters, digits, - or _";
	else
		bad = store_check_data(data, true);

	struct store *st = laurel_ctx_app_data(ctx);
	struct store_row row;
	int rc;
	if (bad)
		rc = example_reply_http_error(ctx, 400, bad);
	else if (store_create(st, room, example_text(laurel_map_get(data, "author"), NULL),
			      example_text(laurel_map_get(data, "text"), NULL), &row))
		rc = db_error(ctx, st);
	else
		rc = 0;
	if (bad || rc)
		return rc;

	char location[64], group[LAUREL_NAME_MAX + 1];
	snprintf(location, sizeof(location), "/api/messages/%lld", (long long)row.pk);
	const struct laurel_header h[] = {{"Location", location}};
	struct laurel_builder *b = laurel_ctx_builder(ctx);
	store_build_change(b, "create", &row);
	store_group(row.room, group, sizeof(group));
	rc = laurel_group_send_json(ctx, group, laurel_build_done(b));
	if (rc)
		return rc;
	b = laurel_ctx_builder(ctx);
	store_build_row(b, NULL, &row, true);
	return example_reply_http_json(ctx, 201, laurel_build_done(b), h, 1);
}

static int detail(struct laurel_ctx *ctx)
{
	struct store *st = laurel_ctx_app_data(ctx);
	struct store_row row;
	int rc = store_get(st, strtoll(laurel_ctx_kwarg(ctx, "pk"), NULL, 10), NULL, &row);
	if (rc < 0)
		return db_error(ctx, st);
	if (rc == STORE_NOT_FOUND)
		return example_reply_http_error(ctx, 404, "no such message");
	struct laurel_builder *b = laurel_ctx_builder(ctx);
	store_build_row(b, NULL, &row, true);
	return example_reply_http_json(ctx, 200, laurel_build_done(b), NULL, 0);
}

static int not_allowed(struct laurel_ctx *ctx, const char *allow)
{
	const struct laurel_header h[] = {{"Allow", allow}};
	struct laurel_builder *b = laurel_ctx_builder(ctx);
	laurel_build_map(b, NULL);
	laurel_build_text(b, "error", "method not allowed");
	laurel_build_end(b);
	return example_reply_http_json(ctx, 405, laurel_build_done(b), h, 1);
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

LAUREL_APP("httpapi", routes, .init = store_app_init, .fini = store_app_fini,
	   .options = STORE_OPTIONS);
