/* The echo example: every WebSocket frame sent on a path under /echo/ comes back as it was sent
 * (text as text, bytes as bytes), except that a text frame "later:TEXT" comes back as TEXT one
 * second later, through the asgi.delay service. GET /hello answers "hello"; other requests get a
 * 404. A WebSocket elsewhere is accepted by the worker's default route and its frames are
 * dropped. */
#include "laurel/consumer.h"
#include "laurel/routing.h"

#include <string.h>

static int hello(struct laurel_ctx *ctx)
{
	static const struct laurel_header h[] = {{"Content-Type", "text/plain; charset=utf-8"}};
	return laurel_reply_http(ctx, 200, h, 1, "hello", 5, false);
}

static int echo_receive(struct laurel_ctx *ctx)
{
	const struct laurel_msg *m = laurel_ctx_message(ctx);
	size_t len;
	const char *text = laurel_msg_get_text(m, "text", &len);
	if (text && len >= 6 && memcmp(text, "later:", 6) == 0) {
		struct laurel_msg *out = laurel_msg_new();
		laurel_msg_set_textn(out, "text", text + 6, len - 6);
		int rc = laurel_send_later(ctx, laurel_ctx_reply_channel(ctx), out, 1000);
		laurel_msg_free(out);
		return rc;
	}
	if (text)
		return laurel_reply_text(ctx, text, len);
	/* The worker checked that a websocket.receive holds exactly one of text and bytes. */
	const void *bytes = laurel_msg_get_bytes(m, "bytes", &len);
	return laurel_reply_bytes(ctx, bytes, len);
}

/* Any other request: without an answer the client would wait for the interface's timeout. */
static int not_found(struct laurel_ctx *ctx)
{
	static const struct laurel_header h[] = {{"Content-Type", "text/plain; charset=utf-8"}};
	return laurel_reply_http(ctx, 404, h, 1, "not found\n", 10, false);
}

static const struct laurel_ws_consumer echo = {.receive = echo_receive};

static const struct laurel_route routes[] = {
	LAUREL_ROUTE("http.request", hello,
		     LAUREL_FILTER("path", "^/hello$") LAUREL_FILTER("method", "^(?:GET|HEAD)$")),
	LAUREL_ROUTE_WS(&echo, LAUREL_FILTER("path", "^/echo/")),
	LAUREL_ROUTE("http.request", not_found),
	LAUREL_ROUTES_END,
};

LAUREL_APP("echo", routes);
