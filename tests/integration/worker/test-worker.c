/* laurel-worker against a real redis-server, driven the way Daphne 1.4 drives a Channels 1
 * worker: messages are put on Redis with asgi_redis's own send script and the captured bytes,
 * and replies are read back from the Daphne process queue (asgi:daphne.response.XXXX!) the way
 * Daphne reads them, then compared with the captured replies byte for byte.
 *
 * argv: laurel-worker, the test application, an application with a wrong API version, one with
 * a bad route, and channels1-message-catalog.txt. */
#include "tests/lib/test.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/util.h"
#include "laurel/layer.h"
#include "laurel/message.h"
#include "tests/lib/proc.h"

static const char *worker_path, *app_path, *badabi_path, *badroute_path;
static struct test_redis redis;
static redisContext *rc;
static struct util_rng rng;

/* --- Catalog --------------------------------------------------------------------------------- */

static struct test_vector vectors[32];
static size_t nvectors;

enum {
	V_HTTP_REQUEST = 0,
	V_HTTP_RESPONSE = 1,
	V_WS_CONNECT = 3,
	V_WS_ACCEPT = 4,
	V_WS_RECEIVE_TEXT = 5,
	V_WS_SEND_TEXT = 6,
	V_WS_DISCONNECT = 7,
	V_WS_RECEIVE_BYTES = 8,
	V_WS_SEND_BYTES = 9,
};


/* --- Processes ------------------------------------------------------------------------------- */

/* Starts laurel-worker with args (NULL-terminated), stdout and stderr to TMP/name.log. */
static void start(struct proc *p, const char *name, const char *const *args)
{
	size_t nargs = 0;
	while (args[nargs])
		nargs++;
	const char **argv = xcalloc(nargs + 2, sizeof(*argv));
	argv[0] = worker_path;
	memcpy(argv + 1, args, nargs * sizeof(*argv));
	proc_start(p, name, argv);
	free(argv);
}

static int count_of(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* Waits up to timeout_ms until p's log holds needle at least times times. */
static bool log_has_n(struct proc *p, const char *needle, int times, int timeout_ms)
{
	int64_t deadline = util_now_ms() + timeout_ms;
	for (;;) {
		char *s = slurp(p->log);
		int n = count_of(s, needle);
		free(s);
		if (n >= times)
			return true;
		if (util_now_ms() > deadline)
			return false;
		h_sleep_ms(20);
	}
}

#define CHECK_LOG(p, needle, timeout_ms)                                                           \
	do {                                                                                       \
		test_checks++;                                                                     \
		if (!log_has_n((p), (needle), 1, (timeout_ms))) {                                  \
			char *_s = slurp((p)->log);                                                \
			test_fail(__FILE__, __LINE__, "%s has no \"%s\":\n%s", (p)->log, (needle), \
				  _s);                                                             \
			free(_s);                                                                  \
		}                                                                                  \
	} while (0)

/* Runs laurel-worker to completion (10 s at most); returns its status, output in *out. */
static int run_sync(const char *name, const char *const *args, char **out)
{
	struct proc p;
	start(&p, name, args);
	int status = proc_stop(&p, 0, 10000);
	*out = slurp(p.log);
	return status;
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* --- Redis, the way Daphne uses it ----------------------------------------------------------- */

/* asgi_redis 1.4's send: a body key asgi:<uuid4 hex> and the queue asgi:<channel>. */
static void inject_raw(const char *channel, const void *bytes, size_t len)
{
	char body[6 + 32] = "asgi:";
	util_rng_hex(&rng, body + 5, 32);
	body[37] = '\0';
	char queue[LAUREL_NAME_MAX + 6];
	snprintf(queue, sizeof(queue), "asgi:%s", channel);
	CHECK_EQ(test_asgi_send(rc, body, queue, bytes, len), 0);
}

static void inject(const char *channel, const struct laurel_msg *m)
{
	char *data;
	size_t len;
	laurel_msg_encode(m, &data, &len);
	inject_raw(channel, data, len);
	free(data);
}

/* Daphne's read of its process queue: pop a body key, GET and DEL the body. Waits up to
 * timeout_ms; returns the decoded message (NULL if none came) and its raw bytes in *raw. */
static struct laurel_msg *await_reply(const char *queue, int timeout_ms, char **raw, size_t *rawlen)
{
	redisReply *k = redisCommand(rc, "BLPOP asgi:%s %.3f", queue, timeout_ms / 1000.0);
	struct laurel_msg *m = NULL;
	if (raw)
		*raw = NULL;
	if (k && k->type == REDIS_REPLY_ARRAY && k->elements == 2) {
		redisReply *b = redisCommand(rc, "GET %b", k->element[1]->str, k->element[1]->len);
		if (b && b->type == REDIS_REPLY_STRING) {
			if (laurel_msg_decode(b->str, b->len, NULL, &m) < 0)
				m = NULL;
			if (raw) {
				*raw = xmalloc(b->len + 1);
				memcpy(*raw, b->str, b->len);
				*rawlen = b->len;
			}
		}
		freeReplyObject(b);
		freeReplyObject(redisCommand(rc, "DEL %b", k->element[1]->str, k->element[1]->len));
	}
	freeReplyObject(k);
	return m;
}

static long long llen(const char *queue)
{
	return atoll(test_redis_cmd(&redis, "LLEN asgi:%s", queue));
}

/* A message of the shape Daphne sends on the websocket.* and test channels. */
static struct laurel_msg *msg_with_reply(const char *reply, const char *path)
{
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_text(m, "reply_channel", reply);
	if (path)
		laurel_msg_set_text(m, "path", path);
	return m;
}

/* --- Tests ----------------------------------------------------------------------------------- */

static void test_command_line(void)
{
	char *out;
	CHECK_EQ(run_sync("help", ARGS("--help"), &out), 0);
	CHECK(strstr(out, "Usage: laurel-worker --app PATH") != NULL);
	CHECK(strstr(out, "--only-channels GLOB") != NULL);
	CHECK(strstr(out, "-n, --processes N") != NULL);
	CHECK(strstr(out, "Environment: LAUREL_LAYER.") != NULL);
	CHECK(strstr(out, "Default: redis://127.0.0.1:6379.") != NULL);
	CHECK(strstr(out, "Exit status:") != NULL);
	free(out);

	CHECK_EQ(run_sync("noapp", ARGS("--layer", redis.url), &out), 2);
	CHECK_STR(out, "laurel-worker: --app PATH is required (see laurel-worker --help)\n");
	free(out);

	CHECK_EQ(run_sync("badopt", ARGS("--app", app_path, "--processes", "x"), &out), 2);
	CHECK_STR(out, "laurel-worker: --processes must be a whole number from 0 to 1024, not "
		       "\"x\"\n");
	free(out);

	CHECK_EQ(run_sync("badabi", ARGS("--app", badabi_path), &out), 2);
	CHECK(strstr(out, "was built against laurel API version 999, but this laurel-worker "
			  "speaks version 2: rebuild the application") != NULL);
	CHECK_EQ(strncmp(out, "laurel-worker: ", 15), 0);
	free(out);

	CHECK_EQ(run_sync("badroute", ARGS("--app", badroute_path), &out), 2);
	CHECK(strstr(out, ": route 1 (room): filter on \"path\": bad pattern "
			  "\"^/room/(?P<name>[a-z+)/$\" at offset") != NULL);
	free(out);

	CHECK_EQ(run_sync("nofile", ARGS("--app", "/nonexistent/app.so"), &out), 2);
	CHECK(strstr(out, "laurel-worker: cannot load the application: /nonexistent/app.so") !=
	      NULL);
	free(out);

	CHECK_EQ(run_sync("nochan", ARGS("--app", app_path, "--only-channels", "nothing.*"), &out),
		 2);
	CHECK(strstr(out, "no channel to listen on") != NULL);
	free(out);
}

/* The captured conversations: what Daphne 1.4 sent, and what a Channels worker answered. */
static void test_captures(struct proc *pool)
{
	const char *queue = "daphne.response.JSKQQYqLSQ!";
	char *raw;
	size_t len = 0;
	struct laurel_msg *m;

	inject_raw("http.request", vectors[V_HTTP_REQUEST].bytes, vectors[V_HTTP_REQUEST].len);
	m = await_reply(queue, 5000, &raw, &len);
	CHECK(m != NULL);
	if (raw)
		CHECK_MEM(raw, len, vectors[V_HTTP_RESPONSE].bytes, vectors[V_HTTP_RESPONSE].len);
	free(raw);
	laurel_msg_free(m);

	struct {
		int in, out;
	} pairs[] = {{V_WS_CONNECT, V_WS_ACCEPT},
		     {V_WS_RECEIVE_TEXT, V_WS_SEND_TEXT},
		     {V_WS_RECEIVE_BYTES, V_WS_SEND_BYTES}};
	const char *queues[] = {queue, queue, "daphne.response.nXirOTSZmz!"};
	const char *channels[] = {"websocket.connect", "websocket.receive", "websocket.receive"};
	for (size_t i = 0; i < ARRAY_SIZE(pairs); i++) {
		inject_raw(channels[i], vectors[pairs[i].in].bytes, vectors[pairs[i].in].len);
		m = await_reply(queues[i], 5000, &raw, &len);
		CHECK(m != NULL);
		if (raw)
			CHECK_MEM(raw, len, vectors[pairs[i].out].bytes, vectors[pairs[i].out].len);
		free(raw);
		laurel_msg_free(m);
	}
	/* The disconnect of /echo/ has nothing to answer. */
	inject_raw("websocket.disconnect", vectors[V_WS_DISCONNECT].bytes,
		   vectors[V_WS_DISCONNECT].len);
	m = await_reply(queue, 300, NULL, NULL);
	CHECK(m == NULL);
	laurel_msg_free(m);
	CHECK_EQ(llen("websocket.disconnect"), 0);
}

/* A streamed response: three messages, in order. */
static void test_stream(void)
{
	const char *queue = "daphne.response.StreamTest!";
	struct laurel_msg *req = msg_with_reply("daphne.response.StreamTest!one", "/stream");
	laurel_msg_set_text(req, "method", "GET");
	inject("http.request", req);
	laurel_msg_free(req);
	const char *want[] = {"one,", "two,", "three"};
	for (int i = 0; i < 3; i++) {
		struct laurel_msg *m = await_reply(queue, 5000, NULL, NULL);
		CHECK(m != NULL);
		if (!m)
			break;
		int64_t status = 0;
		bool more = true;
		size_t len = 0;
		const char *content = laurel_msg_get_bytes(m, "content", &len);
		CHECK_EQ(laurel_msg_get_int(m, "status", &status), i == 0 ? 0 : -ENOENT);
		if (i == 0)
			CHECK_EQ(status, 200);
		CHECK_EQ(laurel_msg_get_bool(m, "more_content", &more), 0);
		CHECK_EQ(more, i < 2);
		CHECK_MEM(content, len, want[i], strlen(want[i]));
		CHECK_STR(laurel_msg_get_text(m, "__asgi_channel__", NULL),
			  "daphne.response.StreamTest!one");
		laurel_msg_free(m);
	}
}

static void ws_message(const char *channel, const char *reply, const char *path, const char *qs,
		       const char *text)
{
	struct laurel_msg *m = msg_with_reply(reply, path);
	if (qs)
		laurel_msg_set_bytes(m, "query_string", qs, strlen(qs));
	if (text)
		laurel_msg_set_text(m, "text", text);
	laurel_msg_set_int(m, "order", 0);
	inject(channel, m);
	laurel_msg_free(m);
}

/* Collects n replies from queue into "channel=key:value" lines (sorted by arrival). */
static void collect(const char *queue, int n, const char *key, char *out, size_t size)
{
	size_t len = 0;
	out[0] = '\0';
	for (int i = 0; i < n; i++) {
		struct laurel_msg *m = await_reply(queue, 5000, NULL, NULL);
		if (!m) {
			len += (size_t)snprintf(out + len, size - len, "(none)\n");
			continue;
		}
		const struct laurel_value *v = laurel_msg_get(m, key);
		char val[128] = "(missing)";
		if (v && v->type == LAUREL_TEXT)
			snprintf(val, sizeof(val), "%s", v->u.s.ptr);
		else if (v && v->type == LAUREL_BOOL)
			snprintf(val, sizeof(val), "%s", v->u.b ? "true" : "false");
		const char *ch = laurel_msg_get_text(m, "__asgi_channel__", NULL);
		len += (size_t)snprintf(out + len, size - len, "%s=%s:%s\n", ch ? ch : "?", key,
					val);
		laurel_msg_free(m);
	}
}

static bool has_line(const char *lines, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = lines; (p = strstr(p, line)); p += n)
		if ((p == lines || p[-1] == '\n') && p[n] == '\n')
			return true;
	return false;
}

/* laurel_ctx_log: lines name the message's channels; information lines all come (with -v),
 * a warning repeated at once is written once. */
static void test_app_log(void)
{
	struct proc w;
	start(&w, "applog",
	      ARGS("--layer", redis.url, "--app", app_path, "--processes", "0", "--only-channels",
		   "test.log", "-v"));
	for (int i = 0; i < 5; i++) {
		struct laurel_msg *m = laurel_msg_new();
		laurel_msg_set_text(m, "reply_channel", "daphne.response.LogTest!a");
		laurel_msg_set_text(m, "text", "hello");
		inject("test.log", m);
		laurel_msg_free(m);
	}
	test_checks++;
	if (!log_has_n(&w, "channel test.log, reply channel daphne.response.LogTest!a: testapp "
			   "heard hello",
		       5, 5000))
		test_fail(__FILE__, __LINE__, "five information lines");
	CHECK_LOG(&w, "laurel-worker warning: channel test.log, reply channel "
		      "daphne.response.LogTest!a: testapp says hello",
		  0);
	CHECK(!log_has_n(&w, "testapp says hello", 2, 200));
	CHECK_EQ(proc_stop(&w, SIGTERM, 5000), 0);
}

/* Chat: groups joined on connect and left on disconnect, and a channel session written by the
 * worker that handled websocket.connect and read by another process that handles
 * websocket.receive (each listens only on its channels). */
static void test_chat_sessions(void)
{
	struct proc a, b;
	start(&a, "chat-connect",
	      ARGS("--layer", redis.url, "--app", app_path, "--processes", "0", "--only-channels",
		   "websocket.connect"));
	start(&b, "chat-rest",
	      ARGS("--layer", redis.url, "--app", app_path, "--processes", "0", "--only-channels",
		   "websocket.*", "--exclude-channels", "websocket.connect"));
	const char *queue = "daphne.response.ChatTestAb!";
	char got[1024];

	ws_message("websocket.connect", "daphne.response.ChatTestAb!ann", "/chat/room1/",
		   "nick=ann", NULL);
	ws_message("websocket.connect", "daphne.response.ChatTestAb!bob", "/chat/room1/",
		   "nick=bob", NULL);
	ws_message("websocket.connect", "daphne.response.ChatTestAb!cy", "/chat/room1/", "nick=cy",
		   NULL);
	collect(queue, 3, "accept", got, sizeof(got));
	CHECK(has_line(got, "daphne.response.ChatTestAb!ann=accept:true"));
	CHECK(has_line(got, "daphne.response.ChatTestAb!bob=accept:true"));
	CHECK(has_line(got, "daphne.response.ChatTestAb!cy=accept:true"));
	CHECK_STR(test_redis_cmd(&redis, "ZCARD asgi::group:chat-room1"), "3");

	/* The nick is only in the session: the receive carries no query string. */
	ws_message("websocket.receive", "daphne.response.ChatTestAb!bob", "/chat/room1/", NULL,
		   "hi all");
	collect(queue, 3, "text", got, sizeof(got));
	CHECK(has_line(got, "daphne.response.ChatTestAb!ann=text:bob: hi all"));
	CHECK(has_line(got, "daphne.response.ChatTestAb!bob=text:bob: hi all"));
	CHECK(has_line(got, "daphne.response.ChatTestAb!cy=text:bob: hi all"));

	/* Disconnect leaves the group and deletes the session: a later frame from the same
	 * channel finds none, fails, and sends nothing. */
	struct laurel_msg *m = msg_with_reply("daphne.response.ChatTestAb!ann", "/chat/room1/");
	laurel_msg_set_int(m, "code", 1000);
	inject("websocket.disconnect", m);
	laurel_msg_free(m);
	int64_t deadline = util_now_ms() + 3000;
	while (strcmp(test_redis_cmd(&redis, "ZCARD asgi::group:chat-room1"), "2") != 0 &&
	       util_now_ms() < deadline)
		h_sleep_ms(10);
	CHECK_STR(test_redis_cmd(&redis, "ZCARD asgi::group:chat-room1"), "2");
	ws_message("websocket.receive", "daphne.response.ChatTestAb!ann", "/chat/room1/", NULL,
		   "ghost");
	CHECK_LOG(&b, "consumer chat failed: no session for daphne.response.ChatTestAb!ann", 3000);
	CHECK_EQ(llen(queue), 0);

	/* A connect without a nick is denied with {close: true}. */
	ws_message("websocket.connect", "daphne.response.ChatTestAb!nonick", "/chat/room2/", NULL,
		   NULL);
	collect(queue, 1, "close", got, sizeof(got));
	CHECK_STR(got, "daphne.response.ChatTestAb!nonick=close:true\n");

	CHECK_EQ(proc_stop(&a, SIGTERM, 5000), 0);
	CHECK_EQ(proc_stop(&b, SIGTERM, 5000), 0);
}

/* A consumer that sends and then fails sends nothing. */
static void test_held_sends(struct proc *pool)
{
	struct laurel_msg *m = msg_with_reply("daphne.response.HeldTestAb!x", NULL);
	inject("test.fail", m);
	laurel_msg_free(m);
	CHECK_LOG(pool,
		  "channel test.fail, reply channel daphne.response.HeldTestAb!x: consumer "
		  "fail_half_way failed: failing on purpose; message dropped, nothing sent",
		  5000);
	CHECK_EQ(llen("daphne.response.HeldTestAb!"), 0);
	CHECK_EQ(llen("test.sink"), 0);
}

static void test_consume_later(struct proc *pool)
{
	struct laurel_msg *m = msg_with_reply("daphne.response.LaterTest!a", NULL);
	inject("test.later", m);
	laurel_msg_free(m);
	m = await_reply("daphne.response.LaterTest!", 5000, NULL, NULL);
	CHECK(m != NULL);
	int64_t retries = -1;
	if (m)
		CHECK_EQ(laurel_msg_get_int(m, "retries", &retries), 0);
	CHECK_EQ(retries, 3);
	laurel_msg_free(m);

	m = msg_with_reply("daphne.response.LaterTest!b", NULL);
	inject("test.always-later", m);
	laurel_msg_free(m);
	CHECK_LOG(pool,
		  "channel test.always-later, reply channel daphne.response.LaterTest!b: consumed "
		  "later 10 times; message dropped",
		  5000);
	CHECK_EQ(llen("test.always-later"), 0);
	CHECK_EQ(llen("daphne.response.LaterTest!"), 0);
}

/* Malformed messages, unknown routes and undecodable bytes are logged and dropped, and the
 * worker keeps answering. */
static void test_bad_messages(struct proc *pool)
{
	inject_raw("http.request", "\xc1\xc1\xc1", 3);
	CHECK_LOG(pool, "does not decode", 5000);

	struct laurel_msg *m = msg_with_reply("daphne.response.BadMsgTest!a", NULL);
	laurel_msg_set_text(m, "method", "GET");
	inject("http.request", m);
	laurel_msg_free(m);
	CHECK_LOG(pool,
		  "channel http.request, reply channel daphne.response.BadMsgTest!a: malformed "
		  "message (missing field \"path\"); dropped",
		  5000);

	m = msg_with_reply("daphne.response.BadMsgTest!b", "/hello");
	laurel_msg_set_bytes(m, "method", "GET", 3);
	inject("http.request", m);
	laurel_msg_free(m);
	CHECK_LOG(pool,
		  "reply channel daphne.response.BadMsgTest!b: malformed message (field "
		  "\"method\" is bytes, not text); dropped",
		  5000);

	m = msg_with_reply("daphne.response.BadMsgTest!c", "/echo/");
	laurel_msg_set_text(m, "text", "t");
	laurel_msg_set_bytes(m, "bytes", "b", 1);
	inject("websocket.receive", m);
	laurel_msg_free(m);
	CHECK_LOG(pool,
		  "reply channel daphne.response.BadMsgTest!c: malformed message (both text "
		  "and bytes); dropped",
		  5000);

	m = msg_with_reply("not a channel", "/hello");
	laurel_msg_set_text(m, "method", "GET");
	inject("http.request", m);
	laurel_msg_free(m);
	CHECK_LOG(pool,
		  "reply channel (invalid): malformed message (reply_channel is not a valid "
		  "channel name); dropped",
		  5000);

	m = msg_with_reply("daphne.response.BadMsgTest!d", "/nope");
	laurel_msg_set_text(m, "method", "GET");
	inject("http.request", m);
	laurel_msg_free(m);
	/* An HTTP request no route matches is answered 404 at once. */
	m = await_reply("daphne.response.BadMsgTest!", 5000, NULL, NULL);
	int64_t notfound = 0;
	CHECK(m != NULL);
	if (m)
		laurel_msg_get_int(m, "status", &notfound);
	CHECK_EQ(notfound, 404);
	laurel_msg_free(m);
	CHECK_LOG(pool,
		  "channel http.request, reply channel daphne.response.BadMsgTest!d: no route "
		  "matches; answered 404",
		  5000);

	CHECK_EQ(llen("daphne.response.BadMsgTest!"), 0);
	m = msg_with_reply("daphne.response.BadMsgTest!e", "/hello");
	laurel_msg_set_text(m, "method", "GET");
	inject("http.request", m);
	laurel_msg_free(m);
	m = await_reply("daphne.response.BadMsgTest!", 5000, NULL, NULL);
	int64_t status = 0;
	CHECK(m != NULL);
	if (m)
		laurel_msg_get_int(m, "status", &status);
	CHECK_EQ(status, 200);
	laurel_msg_free(m);
}

/* enforce_ordering across 4 worker processes: a connection's 50 frames injected in a random
 * order (the connect among them), and another's in order; the replies of each must come out
 * accept, 1, 2, ..., 50. */
static void test_ordering(struct proc *pool)
{
	const char *queues[] = {"daphne.response.OrderShuf!", "daphne.response.OrderStrt!"};
	const char *replies[] = {"daphne.response.OrderShuf!a", "daphne.response.OrderStrt!b"};
	enum { N = 50 };
	int perm[N + 1];
	for (int i = 0; i <= N; i++)
		perm[i] = i;
	for (int i = N; i > 0; i--) {
		int j = (int)util_rng_below(&rng, (uint64_t)i + 1), t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	for (int i = 0; i <= N; i++)
		for (int c = 0; c < 2; c++) {
			int order = c == 0 ? perm[i] : i;
			struct laurel_msg *m = msg_with_reply(replies[c], "/ordered/");
			laurel_msg_set_int(m, "order", order);
			if (order > 0) {
				char text[32];
				snprintf(text, sizeof(text), "frame %d", order);
				laurel_msg_set_text(m, "text", text);
			}
			inject(order == 0 ? "websocket.connect" : "websocket.receive", m);
			laurel_msg_free(m);
		}
	for (int c = 0; c < 2; c++) {
		int last = 0, ok = 1;
		struct laurel_msg *m = await_reply(queues[c], 20000, NULL, NULL);
		bool accept = false;
		CHECK(m && laurel_msg_get_bool(m, "accept", &accept) == 0 && accept);
		laurel_msg_free(m);
		for (int i = 1; i <= N && ok; i++) {
			m = await_reply(queues[c], 20000, NULL, NULL);
			const char *t = m ? laurel_msg_get_text(m, "text", NULL) : NULL;
			int got = t ? atoi(t) : -1;
			if (got != last + 1) {
				test_fail(__FILE__, __LINE__,
					  "connection %d: reply %d is %s after %d", c, i,
					  t ? t : "(none)", last);
				ok = 0;
			}
			test_checks++;
			last = got;
			laurel_msg_free(m);
		}
		CHECK_EQ(last, N);
		CHECK_EQ(llen(queues[c]), 0);
	}
	CHECK_EQ(llen("__wait__.daphne.response.OrderShuf?a"), 0);
	CHECK_EQ(llen("websocket.receive"), 0);
}

/* A demultiplexer over Redis: frames routed by stream, answers and group sends wrapped. */
static void test_demux(void)
{
	const char *queue = "daphne.response.DemuxTestA!";
	struct laurel_msg *m;
	ws_message("websocket.connect", "daphne.response.DemuxTestA!a", "/demux/", NULL, NULL);
	ws_message("websocket.connect", "daphne.response.DemuxTestA!b", "/demux/", NULL, NULL);
	char got[1024];
	collect(queue, 2, "accept", got, sizeof(got));
	CHECK(has_line(got, "daphne.response.DemuxTestA!a=accept:true"));
	CHECK(has_line(got, "daphne.response.DemuxTestA!b=accept:true"));
	ws_message("websocket.receive", "daphne.response.DemuxTestA!a", "/demux/", NULL,
		   "{\"stream\":\"echo\",\"payload\":{\"n\":1}}");
	m = await_reply(queue, 5000, NULL, NULL);
	CHECK(m != NULL);
	if (m)
		CHECK_STR(laurel_msg_get_text(m, "text", NULL),
			  "{\"stream\":\"echo\",\"payload\":{\"n\":1}}");
	laurel_msg_free(m);
	ws_message("websocket.receive", "daphne.response.DemuxTestA!b", "/demux/", NULL,
		   "{\"stream\":\"room\",\"payload\":{\"hi\":\"all\"}}");
	collect(queue, 2, "text", got, sizeof(got));
	CHECK(has_line(got, "daphne.response.DemuxTestA!a=text:{\"stream\":\"room\",\"payload\":"
			    "{\"hi\":\"all\"}}"));
	CHECK(has_line(got, "daphne.response.DemuxTestA!b=text:{\"stream\":\"room\",\"payload\":"
			    "{\"hi\":\"all\"}}"));
	ws_message("websocket.receive", "daphne.response.DemuxTestA!b", "/demux/", NULL, "{oops");
	m = await_reply(queue, 300, NULL, NULL);
	CHECK(m == NULL);
	laurel_msg_free(m);
}

/* --- asgi.delay ------------------------------------------------------------------------------ */

static void inject_delay(const char *channel, int64_t delay, const char *tag)
{
	struct laurel_msg *m = laurel_msg_new();
	if (channel)
		laurel_msg_set_text(m, "channel", channel);
	laurel_msg_set_int(m, "delay", delay);
	struct laurel_value *c = laurel_map_put(m, laurel_msg_root(m), "content");
	laurel_value_set_map(m, c, 1);
	laurel_value_set_text(m, laurel_map_put(m, c, "text"), tag, strlen(tag));
	inject("asgi.delay", m);
	laurel_msg_free(m);
}

/* The next delayed message on queue: its text, and when it came (ms since t0). */
static const char *await_delayed(const char *queue, int64_t t0, int64_t *at)
{
	static char text[64];
	struct laurel_msg *m = await_reply(queue, 5000, NULL, NULL);
	*at = util_now_ms() - t0;
	const char *t = m ? laurel_msg_get_text(m, "text", NULL) : NULL;
	snprintf(text, sizeof(text), "%s", t ? t : "(none)");
	laurel_msg_free(m);
	return text;
}

static void test_delay(void)
{
	const char *queue = "daphne.response.DelayTestA!";
	const char *to = "daphne.response.DelayTestA!x";
	struct proc d;
	int64_t at;
	start(&d, "delay", ARGS("--layer", redis.url, "--delay", "--processes", "0", "-v"));
	CHECK_LOG(&d, "delay service running", 5000);

	/* On time. */
	int64_t t0 = util_now_ms();
	inject_delay(to, 600, "600");
	inject_delay(to, 150, "150");
	inject_delay(to, 0, "0");
	inject_delay(to, 300, "300");
	const char *want[] = {"0", "150", "300", "600"};
	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		CHECK_STR(await_delayed(queue, t0, &at), want[i]);
		CHECK_INT(at, >=, atoi(want[i]));
		/* On time, with room for a loaded machine (the sanitizer build, a busy CI). */
		CHECK_INT(at, <=, atoi(want[i]) + 400);
	}

	/* Killed and started again: what fell due meanwhile goes out at once, the rest on time. */
	t0 = util_now_ms();
	inject_delay(to, 500, "a");
	inject_delay(to, 2500, "b");
	int64_t deadline = util_now_ms() + 2000;
	while (atoi(test_redis_cmd(&redis, "ZCARD asgi::delay")) < 2 && util_now_ms() < deadline)
		h_sleep_ms(5);
	CHECK_STR(test_redis_cmd(&redis, "ZCARD asgi::delay"), "2");
	CHECK_EQ(proc_stop(&d, SIGKILL, 5000), 128 + SIGKILL);
	inject_delay(to, 100, "c"); /* waits on asgi.delay while nobody reads it */
	h_sleep_ms(1200);
	int64_t restart = util_now_ms() - t0;
	start(&d, "delay2", ARGS("--layer", redis.url, "--delay", "--processes", "0", "-v"));
	char first[2][64];
	for (int i = 0; i < 2; i++) {
		snprintf(first[i], sizeof(first[i]), "%s", await_delayed(queue, t0, &at));
		CHECK_INT(at - restart, <, 1500); /* a process start on a loaded machine */
	}
	CHECK((strcmp(first[0], "a") == 0 && strcmp(first[1], "c") == 0) ||
	      (strcmp(first[0], "c") == 0 && strcmp(first[1], "a") == 0));
	CHECK_STR(await_delayed(queue, t0, &at), "b");
	CHECK_INT(at, >=, 2500);
	CHECK_INT(at, <=, 2900);

	/* Bad messages are dropped with a line each. */
	inject_delay(NULL, 10, "x");
	inject_delay("not a channel", 10, "x");
	inject_delay(to, -5, "x");
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_text(m, "channel", to);
	laurel_msg_set_int(m, "delay", 10);
	inject("asgi.delay", m);
	laurel_msg_free(m);
	CHECK_LOG(&d, "to channel (invalid): bad delay message (no text \"channel\"); dropped",
		  3000);
	CHECK_LOG(&d,
		  "to channel (invalid): bad delay message (\"channel\" is not a valid channel "
		  "name); dropped",
		  3000);
	CHECK_LOG(&d,
		  "to channel daphne.response.DelayTestA!x: bad delay message (a negative "
		  "\"delay\"); dropped",
		  3000);
	CHECK_LOG(&d, "bad delay message (no map \"content\"); dropped", 3000);
	m = await_reply(queue, 200, NULL, NULL);
	CHECK(m == NULL);
	laurel_msg_free(m);
	CHECK_STR(test_redis_cmd(&redis, "ZCARD asgi::delay"), "0");

	/* SIGTERM while idle: at once (the layer watches the stop handler's pipe). */
	int64_t t1 = util_now_ms();
	CHECK_EQ(proc_stop(&d, SIGTERM, 5000), 0);
	CHECK_INT(util_now_ms() - t1, <, 500);
}

/* Messages already waiting are taken in batches and the batch's replies go out together
 * (pipelined): every reply arrives once, in order on each reply channel. Then SIGTERM while idle
 * stops the worker at once, not at its next look at the stop flag. */
static void test_batch_replies(void)
{
	enum { N = 60, LOCALS = 3 };
	const char *queue = "daphne.response.BatchTest!";
	for (int i = 0; i < N; i++) {
		char reply[64];
		snprintf(reply, sizeof(reply), "%s%c", queue, 'a' + i % LOCALS);
		struct laurel_msg *m = msg_with_reply(reply, NULL);
		laurel_msg_set_int(m, "n", i);
		inject("test.twice", m);
		laurel_msg_free(m);
	}
	struct proc w;
	start(&w, "batch", ARGS("--layer", redis.url, "--app", app_path, "--processes", "0",
				"--only-channels", "test.*"));
	int64_t next[LOCALS], part[LOCALS];
	for (int k = 0; k < LOCALS; k++)
		next[k] = k, part[k] = 1;
	int got = 0;
	for (; got < 2 * N; got++) {
		char *raw = NULL;
		size_t rawlen = 0;
		struct laurel_msg *m = await_reply(queue, 5000, &raw, &rawlen);
		free(raw);
		if (!m)
			break;
		const char *ch = laurel_msg_get_text(m, "__asgi_channel__", NULL);
		int64_t n = -1, p = -1;
		laurel_msg_get_int(m, "n", &n);
		laurel_msg_get_int(m, "part", &p);
		int k = ch && strlen(ch) == strlen(queue) + 1 ? ch[strlen(queue)] - 'a' : -1;
		CHECK(k >= 0 && k < LOCALS);
		if (k >= 0 && k < LOCALS) {
			CHECK_EQ(n, next[k]);
			CHECK_EQ(p, part[k]);
			if (++part[k] > 2)
				part[k] = 1, next[k] += LOCALS;
		}
		laurel_msg_free(m);
	}
	CHECK_EQ(got, 2 * N);
	CHECK_EQ(llen(queue), 0);
	h_sleep_ms(300); /* idle, blocked in Redis */
	int64_t t0 = util_now_ms();
	CHECK_EQ(proc_stop(&w, SIGTERM, 5000), 0);
	CHECK_INT(util_now_ms() - t0, <, 500);
}

/* A consumer segfaults: the supervisor logs it and starts another process; the pool keeps
 * answering. */
static void test_crash(struct proc *pool)
{
	CHECK(log_has_n(pool, "started (slot", 4, 5000));
	struct laurel_msg *m = msg_with_reply("daphne.response.CrashTest!a", NULL);
	inject("test.crash", m);
	laurel_msg_free(m);
	/* Under AddressSanitizer the SEGV is reported and the process exits with status 1 (or is
	 * aborted, with ASAN_OPTIONS=abort_on_error=1 as scripts/test sets). */
	test_checks++;
	bool logged = false;
	for (int64_t t = util_now_ms(); !logged && util_now_ms() - t < 20000;)
		logged = log_has_n(pool, "was killed by signal 11", 1, 50) ||
			 /* ASan reports the SEGV, then exits 1, or aborts with abort_on_error */
			 log_has_n(pool, "was killed by signal 6", 1, 50) ||
			 log_has_n(pool, ") exited with status 1; starting another in 100 ms", 1, 50);
	if (!logged)
		test_fail(__FILE__, __LINE__, "no crash logged in %s", pool->log);
	CHECK(log_has_n(pool, "started (slot", 5, 5000));

	for (int i = 0; i < 8; i++) {
		m = msg_with_reply("daphne.response.CrashTest!b", NULL);
		inject("test.pid", m);
		laurel_msg_free(m);
	}
	for (int i = 0; i < 8; i++) {
		m = await_reply("daphne.response.CrashTest!", 5000, NULL, NULL);
		int64_t pid = 0;
		CHECK(m != NULL);
		if (m)
			CHECK_EQ(laurel_msg_get_int(m, "pid", &pid), 0);
		CHECK(pid > 0);
		laurel_msg_free(m);
	}
}

/* SIGHUP replaces the processes one by one; the pool keeps answering. */
static void test_sighup(struct proc *pool)
{
	kill(pool->pid, SIGHUP);
	CHECK_LOG(pool, "every worker process was replaced", 15000);
	struct laurel_msg *m = msg_with_reply("daphne.response.HupTestAb!a", "/hello");
	laurel_msg_set_text(m, "method", "GET");
	inject("http.request", m);
	laurel_msg_free(m);
	m = await_reply("daphne.response.HupTestAb!", 5000, NULL, NULL);
	CHECK(m != NULL);
	laurel_msg_free(m);
}

/* SIGTERM while a consumer runs: it finishes and its reply goes out, then everything exits 0. */
static void test_sigterm(struct proc *pool)
{
	struct laurel_msg *m = msg_with_reply("daphne.response.TermTestAb!a", NULL);
	inject("test.slow", m);
	laurel_msg_free(m);
	int64_t deadline = util_now_ms() + 3000;
	while (llen("test.slow") > 0 && util_now_ms() < deadline)
		h_sleep_ms(5);
	CHECK_EQ(llen("test.slow"), 0);
	h_sleep_ms(100);
	int64_t t0 = util_now_ms();
	kill(pool->pid, SIGTERM);
	m = await_reply("daphne.response.TermTestAb!", 5000, NULL, NULL);
	CHECK(m != NULL);
	if (m)
		CHECK_STR(laurel_msg_get_text(m, "text", NULL), "slow done");
	laurel_msg_free(m);
	CHECK_EQ(proc_stop(pool, 0, 10000), 0);
	CHECK_INT(util_now_ms() - t0, <, 5000);
	CHECK_LOG(pool, "stopping 4 worker processes", 0);
	CHECK_LOG(pool, "laurel-worker info: stopped", 0);
}

/* Under the sanitizers, every process of the test (the pool's children write to the pool's log)
 * must have run clean; the deliberate segfault is the only report allowed. */
static void check_sanitizers(const char *name)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/%s.log", h_tmp(), name);
	char *s = slurp(path);
	int before = test_failures;
	CHECK_EQ(count_of(s, "runtime error:"), 0);
	CHECK_EQ(count_of(s, "LeakSanitizer"), 0);
	CHECK_EQ(count_of(s, "ERROR: AddressSanitizer"),
		 count_of(s, "ERROR: AddressSanitizer: SEGV"));
	if (test_failures > before)
		fprintf(stderr, "%s:\n%s\n", path, s);
	free(s);
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: %s WORKER APP BADABI BADROUTE CATALOG\n", argv[0]);
		return 2;
	}
	worker_path = argv[1];
	app_path = argv[2];
	badabi_path = argv[3];
	badroute_path = argv[4];
	nvectors = test_load_vectors(argv[5], vectors, ARRAY_SIZE(vectors));
	util_rng_init(&rng);
	if (nvectors < 10) {
		fprintf(stderr, "%s: only %zu vectors\n", argv[5], nvectors);
		return 2;
	}
	h_init("test-worker");
	if (test_redis_start(&redis) < 0)
		return 2;
	rc = redisConnect("127.0.0.1", redis.port);
	if (!rc || rc->err) {
		fprintf(stderr, "cannot connect to the test redis\n");
		return 2;
	}

	test_command_line();
	test_chat_sessions();
	test_app_log();
	test_delay();
	test_batch_replies();

	struct proc pool;
	start(&pool, "pool",
	      ARGS("--layer", redis.url, "--app", app_path, "--processes", "4", "-v"));
	test_captures(&pool);
	test_stream();
	test_ordering(&pool);
	test_demux();
	test_held_sends(&pool);
	test_consume_later(&pool);
	test_bad_messages(&pool);
	test_crash(&pool);
	test_sighup(&pool);
	test_sigterm(&pool);

	const char *logs[] = {"chat-connect", "chat-rest", "pool", "delay", "delay2"};
	for (size_t i = 0; i < ARRAY_SIZE(logs); i++)
		check_sanitizers(logs[i]);
	redisFree(rc);
	test_redis_cleanup(&redis);
	test_free_vectors(vectors, nvectors);
	h_cleanup();
	return test_done();
}
