/* The application the worker's integration tests load with --app: the consumers of the captured
 * Daphne 1.4 conversations (hello, echo), a chat with groups and a channel session, a streamed
 * response, and consumers that misbehave on purpose (fail half way, consume later, crash, sleep).
 * Written against the public API only. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "laurel/consumer.h"
#include "laurel/layer.h"
#include "laurel/routing.h"

/* GET /hello: the response of the capture, byte for byte. */
static int hello(struct laurel_ctx *ctx)
{
	static const struct laurel_header h[] = {{"Content-Type", "text/plain"}};
	return laurel_reply_http(ctx, 200, h, 1, "hello", 5, false);
}

/* GET /stream: a response in three messages. */
static int stream(struct laurel_ctx *ctx)
{
	static const struct laurel_header h[] = {{"Content-Type", "text/plain"}};
	int rc = laurel_reply_http(ctx, 200, h, 1, "one,", 4, true);
	if (!rc)
		rc = laurel_reply_chunk(ctx, "two,", 4, true);
	if (!rc)
		rc = laurel_reply_chunk(ctx, "three", 5, false);
	return rc;
}

/* /echo/: frames back as they came. */
static int echo_receive(struct laurel_ctx *ctx)
{
	const struct laurel_msg *m = laurel_ctx_message(ctx);
	size_t len;
	const char *text = laurel_msg_get_text(m, "text", &len);
	if (text)
		return laurel_reply_text(ctx, text, len);
	const void *bytes = laurel_msg_get_bytes(m, "bytes", &len);
	return laurel_reply_bytes(ctx, bytes, len);
}

static const struct laurel_ws_consumer echo = {.receive = echo_receive};

/* /chat/ROOM/?nick=NAME: the nick is kept in the channel session at connect, so a receive
 * handled by another worker process still knows it; frames go to the room's group as
 * "NAME: text". */
static int chat_connect(struct laurel_ctx *ctx)
{
	const struct laurel_msg *m = laurel_ctx_message(ctx);
	size_t len;
	const char *qs = laurel_msg_get_bytes(m, "query_string", &len);
	struct laurel_msg *session;
	int rc = laurel_session(ctx, &session);
	if (rc)
		return rc;
	if (!qs || len < 6 || memcmp(qs, "nick=", 5) != 0)
		return laurel_ws_reject(ctx);
	laurel_msg_set_textn(session, "nick", qs + 5, len - 5);
	laurel_msg_set_text(session, "room", laurel_ctx_kwarg(ctx, "room"));
	return laurel_ws_accept(ctx);
}

static int chat_receive(struct laurel_ctx *ctx)
{
	struct laurel_msg *session;
	int rc = laurel_session(ctx, &session);
	if (rc)
		return rc;
	const char *nick = laurel_msg_get_text(session, "nick", NULL);
	const char *room = laurel_msg_get_text(session, "room", NULL);
	const char *text = laurel_msg_get_text(laurel_ctx_message(ctx), "text", NULL);
	if (!nick || !room || !text)
		return laurel_ctx_error(ctx, -EINVAL, "no session for %s",
					laurel_ctx_reply_channel(ctx));
	char group[128], line[512];
	snprintf(group, sizeof(group), "chat-%s", room);
	snprintf(line, sizeof(line), "%s: %s", nick, text);
	struct laurel_msg *out = laurel_msg_new();
	laurel_msg_set_text(out, "text", line);
	rc = laurel_group_send(ctx, group, out);
	laurel_msg_free(out);
	return rc;
}

static int chat_disconnect(struct laurel_ctx *ctx)
{
	return laurel_session_delete(ctx);
}

static const struct laurel_ws_consumer chat = {
	.connect = chat_connect,
	.receive = chat_receive,
	.disconnect = chat_disconnect,
	.groups = LAUREL_GROUPS("chat-{room}"),
};

/* /ordered/: enforce_ordering; each frame is answered with its order, after a random pause of up
 * to 3 ms so that the worker processes overtake each other. */
static int ordered_receive(struct laurel_ctx *ctx)
{
	int64_t order = -1;
	char text[32];
	laurel_msg_get_int(laurel_ctx_message(ctx), "order", &order);
	struct timespec ts = {.tv_nsec = (rand() % 3000) * 1000L};
	nanosleep(&ts, NULL);
	snprintf(text, sizeof(text), "%lld", (long long)order);
	return laurel_reply_text(ctx, text, strlen(text));
}

static const struct laurel_ws_consumer ordered = {
	.receive = ordered_receive,
	.strict_ordering = true,
};

/* /demux/: a demultiplexer whose "echo" stream answers the payload and whose "room" stream
 * sends it to the group demux-room. */
static int demux_echo(struct laurel_ctx *ctx)
{
	const struct laurel_value *v;
	int rc = laurel_ctx_json(ctx, &v);
	return rc ? rc : laurel_reply_json(ctx, v);
}

static int demux_room(struct laurel_ctx *ctx)
{
	const struct laurel_value *v;
	int rc = laurel_ctx_json(ctx, &v);
	return rc ? rc : laurel_group_send_json(ctx, "demux-room", v);
}

static const struct laurel_ws_consumer demux_echo_ws = {.receive = demux_echo};
static const struct laurel_ws_consumer demux_room_ws = {
	.receive = demux_room,
	.groups = LAUREL_GROUPS("demux-room"),
};
static const struct laurel_ws_consumer demux = {
	.streams = LAUREL_STREAMS({"echo", &demux_echo_ws}, {"room", &demux_room_ws}),
};

/* test.fail: sends, then fails: nothing may come out. */
static int fail_half_way(struct laurel_ctx *ctx)
{
	laurel_reply_text(ctx, "must not be sent", 16);
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_text(m, "text", "must not be sent either");
	laurel_send(ctx, "test.sink", m);
	laurel_msg_free(m);
	return laurel_ctx_error(ctx, -EIO, "failing on purpose");
}

/* test.later: consumed later until the third retry, then answers with the count. */
static int later(struct laurel_ctx *ctx)
{
	int64_t retries = 0;
	laurel_msg_get_int(laurel_ctx_message(ctx), "__retries__", &retries);
	if (retries < 3)
		return LAUREL_CONSUME_LATER;
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_int(m, "retries", retries);
	int rc = laurel_reply(ctx, m);
	laurel_msg_free(m);
	return rc;
}

static int always_later(struct laurel_ctx *ctx)
{
	return LAUREL_CONSUME_LATER;
}

/* test.crash: a segfault inside a consumer. */
static int crash(struct laurel_ctx *ctx)
{
	raise(SIGSEGV);
	return 0;
}

/* test.pid: which process answered. */
static int pid(struct laurel_ctx *ctx)
{
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_int(m, "pid", getpid());
	int rc = laurel_reply(ctx, m);
	laurel_msg_free(m);
	return rc;
}

/* test.slow: takes 700 ms. */
static int slow(struct laurel_ctx *ctx)
{
	struct timespec ts = {.tv_nsec = 700 * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	return laurel_reply_text(ctx, "slow done", 9);
}

/* test.twice: two replies, {n, part: 1} and {n, part: 2}, n from the message. */
static int twice(struct laurel_ctx *ctx)
{
	int64_t n = -1;
	laurel_msg_get_int(laurel_ctx_message(ctx), "n", &n);
	for (int part = 1; part <= 2; part++) {
		struct laurel_msg *m = laurel_msg_new();
		laurel_msg_set_int(m, "n", n);
		laurel_msg_set_int(m, "part", part);
		int rc = laurel_reply(ctx, m);
		laurel_msg_free(m);
		if (rc)
			return rc;
	}
	return 0;
}

/* /broken/: a connect consumer that fails (as one whose database is down would). */
static int broken_connect(struct laurel_ctx *ctx)
{
	return laurel_ctx_error(ctx, -EIO, "the database is down");
}

static const struct laurel_ws_consumer broken = {
	.connect = broken_connect,
};

/* /nogroup/: a group template whose keyword argument the path does not give. */
static const struct laurel_ws_consumer nogroup = {
	.groups = LAUREL_GROUPS("room-{missing}"),
};

/* /recover/ROOM/?epoch=E&offset=N: joins the group "hist-ROOM" (a group with a history in the
 * tests) and recovers what the client missed since offset N of epoch E (docs/recovery.md). */
static void query_value(const char *qs, size_t len, const char *key, char *out, size_t size)
{
	size_t klen = strlen(key);
	out[0] = '\0';
	for (size_t i = 0; i < len;) {
		size_t end = i;
		while (end < len && qs[end] != '&')
			end++;
		if (end - i > klen && memcmp(qs + i, key, klen) == 0 && qs[i + klen] == '=') {
			size_t n = end - i - klen - 1;
			if (n >= size)
				n = size - 1;
			memcpy(out, qs + i + klen + 1, n);
			out[n] = '\0';
			return;
		}
		i = end + 1;
	}
}

static int recover_connect(struct laurel_ctx *ctx)
{
	const struct laurel_msg *m = laurel_ctx_message(ctx);
	size_t len = 0;
	const char *qs = laurel_msg_get_bytes(m, "query_string", &len);
	char epoch[32], offset[32], group[LAUREL_NAME_MAX];
	query_value(qs ? qs : "", qs ? len : 0, "epoch", epoch, sizeof(epoch));
	query_value(qs ? qs : "", qs ? len : 0, "offset", offset, sizeof(offset));
	snprintf(group, sizeof(group), "hist-%s", laurel_ctx_kwarg(ctx, "room"));
	int rc = laurel_ws_accept(ctx);
	if (!rc)
		rc = laurel_group_recover(ctx, group, epoch, strtoull(offset, NULL, 10));
	return rc == LAUREL_HISTORY_LOST ? 0 : rc;
}

static int recover_disconnect(struct laurel_ctx *ctx)
{
	char group[LAUREL_NAME_MAX];
	snprintf(group, sizeof(group), "hist-%s", laurel_ctx_kwarg(ctx, "room"));
	return laurel_group_discard(ctx, group);
}

static const struct laurel_ws_consumer recover = {.connect = recover_connect,
						  .disconnect = recover_disconnect};

/* The application's lifecycle (routing.h): each worker's init makes its own record, which
 * GET /appdata shows and counts in; fini appends a line to the file of the fini-file option. */
struct appdata {
	char tag[64];
	int worker;
	long messages;
	char fini_file[512];
};

static int app_init(struct laurel_app_env *env, void **data)
{
	const char *fail = laurel_app_option(env, "init-fail");
	if (fail && strcmp(fail, "1") == 0)
		return laurel_app_error(env, -EIO, "asked to fail (init-fail=1)");
	struct appdata *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	snprintf(d->tag, sizeof(d->tag), "%s", laurel_app_option(env, "tag"));
	const char *f = laurel_app_option(env, "fini-file");
	snprintf(d->fini_file, sizeof(d->fini_file), "%s", f ? f : "");
	d->worker = laurel_app_worker(env);
	*data = d;
	return 0;
}

static void app_fini(void *data)
{
	struct appdata *d = data;
	if (d->fini_file[0]) {
		FILE *f = fopen(d->fini_file, "a");
		if (f) {
			fprintf(f, "fini tag=%s worker=%d messages=%ld\n", d->tag, d->worker,
				d->messages);
			fclose(f);
		}
	}
	free(d);
}

static int appdata(struct laurel_ctx *ctx)
{
	static const struct laurel_header h[] = {{"Content-Type", "text/plain"}};
	struct appdata *d = laurel_ctx_app_data(ctx);
	char body[256];
	int n = snprintf(body, sizeof(body), "tag=%s worker=%d messages=%ld pid=%d", d->tag,
			 d->worker, ++d->messages, (int)getpid());
	return laurel_reply_http(ctx, 200, h, 1, body, (size_t)n, false);
}

/* test.log {text}: one information line each time, and a warning that a flood makes one line
 * (laurel_ctx_log's limit). */
static int log_lines(struct laurel_ctx *ctx)
{
	const char *text = laurel_msg_get_text(laurel_ctx_message(ctx), "text", NULL);
	laurel_ctx_log(ctx, LAUREL_LOG_INFO, "testapp heard %s", text ? text : "nothing");
	laurel_ctx_log(ctx, LAUREL_LOG_WARN, "testapp says %s", text ? text : "nothing");
	return 0;
}

static const struct laurel_route http_routes[] = {
	LAUREL_ROUTE("http.request", appdata, LAUREL_FILTER("path", "^/appdata$")),
	LAUREL_ROUTE("http.request", hello, LAUREL_FILTER("path", "^/hello$")),
	LAUREL_ROUTE("http.request", stream,
		     LAUREL_FILTER("path", "^/stream$") LAUREL_FILTER("method", "^GET$")),
	LAUREL_ROUTES_END,
};

static const struct laurel_route routes[] = {
	LAUREL_INCLUDE(http_routes),
	LAUREL_ROUTE_WS(&echo, LAUREL_FILTER("path", "^/echo/$")),
	LAUREL_ROUTE_WS(&chat, LAUREL_FILTER("path", "^/chat/(?P<room>[a-z0-9]+)/$")),
	LAUREL_ROUTE_WS(&ordered, LAUREL_FILTER("path", "^/ordered/$")),
	LAUREL_ROUTE_WS(&demux, LAUREL_FILTER("path", "^/demux/$")),
	LAUREL_ROUTE_WS(&broken, LAUREL_FILTER("path", "^/broken/$")),
	LAUREL_ROUTE_WS(&nogroup, LAUREL_FILTER("path", "^/nogroup/$")),
	LAUREL_ROUTE_WS(&recover, LAUREL_FILTER("path", "^/recover/(?P<room>[a-z0-9]+)/$")),
	LAUREL_ROUTE("test.fail", fail_half_way),
	LAUREL_ROUTE("test.later", later),
	LAUREL_ROUTE("test.always-later", always_later),
	LAUREL_ROUTE("test.crash", crash),
	LAUREL_ROUTE("test.pid", pid),
	LAUREL_ROUTE("test.slow", slow),
	LAUREL_ROUTE("test.twice", twice),
	LAUREL_ROUTE("test.log", log_lines),
	LAUREL_ROUTES_END,
};

LAUREL_APP("testapp", routes, .init = app_init, .fini = app_fini,
	   .options = LAUREL_APP_OPTIONS(
		   {"tag", "none", "A word GET /appdata shows."},
		   {"init-fail", "0", "1: init fails (for the tests of a failing init)."},
		   {"fini-file", NULL, "A file fini appends a line to."}));
