/* laurel-test-responder: plays a Python Channels 1.1 worker (asgi_redis 1.4.3) at the Redis level,
 * to test laurel-interface from the other side. It deliberately does not use laurel's channel
 * layer: it issues the same raw commands asgi_redis does (BLPOP on the queues, GET and DEL of the
 * body key, EVALSHA of lua_chansend then of lua_incrstatcounters), and only borrows laurel's
 * msgpack codec, which the unit tests check against the captured bytes.
 *
 * Usage: laurel-test-responder --port REDIS_PORT [--host H] [--count N] [--record FILE]
 *                              [--disconnects] [--full-timeout MS] [-v]
 *        laurel-test-responder --selftest CATALOG
 *
 * Prints "ready" on stdout once connected, then answers http.request messages one at a time
 * until SIGTERM/SIGINT (exit 0) or until N requests were handled (--count; exit 0).
 * --disconnects also pops asgi:http.disconnect (recorded, never answered).
 * --websocket also serves websocket.connect / receive / disconnect, as a Channels 1 consumer:
 *   connect: path /ws/reject -> {close: true}; /ws/refuse -> {accept: false}; /ws/never -> no
 *   answer; /ws/implicit -> {text: "welcome"} (accepts implicitly); /ws/group/NAME -> ZADD the
 *   reply channel to group NAME (as asgi_redis group_add), then {accept: true}; else {accept: true}.
 *   receive: text "close:N" -> {close: N}; "close" -> {close: true}; "both" -> {text, bytes} (must
 *   be dropped); "order" -> the message's order as text; "broadcast:G:TEXT" -> TEXT to every
 *   member of group G, one send per member (as Channels 1 did); anything else is echoed as it
 *   came (text or bytes). disconnect: recorded only.
 * --full-timeout: how long a send retries a full channel (default 2000 ms, as Channels 1 does).
 * -v: debug logging (one line per request).
 * --selftest: encodes the /hello reply for "daphne.response.JSKQQYqLSQ!XsBxGbfRTX" and compares
 * it with the second hex line of the message catalog; exit 0 if identical, 1 otherwise.
 *
 * Replies by request `path` (first message {status, headers, content, more_content}, further
 * chunks {content, more_content}; a process channel "a!b" gets "__asgi_channel__" last):
 *   /hello          200 [Content-Type: text/plain] "hello"
 *   /echo           200 [Content-Type: application/octet-stream] body (+ body_channel chunks)
 *   /stream         200 [Content-Type: text/plain] "part1" more; "part2" more; "part3" end
 *   /status/NNN     NNN [] ""
 *   /headers        200 [Content-Type: text/plain] "name: value\n" per request header, in order
 *   /big?n=N        200 [Content-Type: text/plain] N bytes 'x' in 64 KiB messages; with &cl=1
 *                   also a Content-Length header
 *   /slow?ms=N      like /hello after N ms
 *   /never          no reply
 *   /body-channel   200 [Content-Type: text/plain] "<total bytes> <crc32 as %08x>" of body plus
 *                   the body_channel chunks; no reply if a chunk says {closed: true}
 *   /length?cl=N    200 [Content-Length: N] "hello"; &stream=1: "part1" "part2" "part3" as
 *                   three messages; &bad=1: Content-Length "5x"; &twice=1: the header twice
 *   /reply-twice    the /hello reply, then a stray {status: 500, headers: [], content: "stray",
 *                   more_content: false} on the same channel
 *   /header-case    200 [X-Custom-Header: Value, content-type: text/plain] "ok"
 *   anything else   404 [Content-Type: text/plain] "not found"
 * Only /echo and /body-channel read the body_channel.
 *
 * --record FILE appends one line per received http.request (and http.disconnect), flushed:
 *   {"channel":CH,"k1":V1,"k2":V2,...}
 * where CH is the channel received on (text), followed by every top-level key of the message in
 * wire order. No whitespace outside strings. Values:
 *   text    "..."   `"` as \", `\` as \\, bytes 0x00-0x1f and 0x7f as \u00XX (lowercase hex), all
 *                   other bytes (UTF-8 included) as they are
 *   bytes   b"..."  0x20-0x7e as they are except `"` as \" and `\` as \\; every other byte as
 *                   \xNN (lowercase hex)
 *   int     decimal, e.g. -12
 *   double  printf %.17g, plus ".0" when that has no '.', 'e', "inf" or "nan" (so 1.0 != 1)
 *   bool    true / false
 *   nil     null
 *   list    [V,V,...]
 *   map     {"key":V,...} (keys as text)
 * e.g. {"channel":"http.request","reply_channel":"laurel.response.AbCdEfGhIj!q1",...,
 *       "query_string":b"a=1","headers":[[b"host",b"127.0.0.1:8000"]],"body":b"",
 *       "client":["127.0.0.1",54321],"server":["127.0.0.1",8000]}
 *
 * Redis errors and bad messages are logged to stderr and skipped; a lost connection is reopened.
 */
#include "common/buf.h"
#include "common/log.h"
#include "common/response.h"
#include "common/util.h"
#include "laurel/message.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define PREFIX "asgi:"
#define STATS_PREFIX "asgi-meta:"
#define EXPIRY "60"
#define CAPACITY "100"
#define BLPOP_TIMEOUT "5"
#define CHUNK_SIZE 65536
#define BIG_MAX 10000000L
/* How long a body_channel reader waits for the next chunk before giving up (the message expiry). */
#define BODY_WAIT_MS 60000

/* The asgi_redis 1.4.3 scripts, byte for byte: redis-py sends EVALSHA of their SHA-1. */
static const char chansend_lua[] =
	"\n        if redis.call('llen', KEYS[2]) >= tonumber(ARGV[3]) then\n"
	"            return redis.error_reply(\"full\")\n"
	"        end\n"
	"        redis.call('set', KEYS[1], ARGV[1])\n"
	"        redis.call('expire', KEYS[1], ARGV[2])\n"
	"        redis.call('rpush', KEYS[2], KEYS[1])\n"
	"        redis.call('expire', KEYS[2], ARGV[2] + 1)\n"
	"    ";
static const char chansend_sha[] = "ea89127ce896fc394c6a899ef4fdb420368083f5";
static const char incrstat_lua[] = "\n        redis.call('incr', KEYS[1])\n"
				   "        redis.call('expire', KEYS[1], ARGV[1])\n"
				   "        redis.call('incr', KEYS[2])\n"
				   "        redis.call('expire', KEYS[2], ARGV[2])\n"
				   "\n    ";
static const char incrstat_sha[] = "1971b7f446a4f92f93ccdb9ff63410b4dfe1d0f6";

static const char hello_channel[] = "daphne.response.JSKQQYqLSQ!XsBxGbfRTX";

struct responder {
	const char *host;
	int port;
	redisContext *c;
	FILE *record;
	bool disconnects;
	bool websocket;
	long full_timeout_ms;
	struct util_rng rng;
};

static void on_signal(int sig)
{
	(void)sig;
	_exit(0);
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* --- Redis ----------------------------------------------------------------------------------- */

/* Connects, retrying every 200 ms (a test may restart Redis); logs once per outage. */
static void connect_redis(struct responder *r)
{
	bool logged = false;
	while (!r->c) {
		redisContext *c = redisConnect(r->host, r->port);
		if (c && !c->err) {
			r->c = c;
			if (logged)
				log_warn("reconnected to redis %s:%d", r->host, r->port);
			break;
		}
		if (!logged)
			log_error("connect to redis %s:%d: %s (retrying)", r->host, r->port,
				  c ? c->errstr : "out of memory");
		logged = true;
		redisFree(c);
		sleep_ms(200);
	}
}

/* Runs one command, reconnecting first if the connection was lost. Returns the reply (caller
 * frees) or NULL after a connection error, which is logged. */
static redisReply *command(struct responder *r, int argc, const char **argv, const size_t *lens)
{
	connect_redis(r);
	redisReply *reply = redisCommandArgv(r->c, argc, argv, lens);
	if (!reply) {
		log_error("redis %s: %s", argv[0], r->c->errstr);
		redisFree(r->c);
		r->c = NULL;
	}
	return reply;
}

/* redis-py's Script.__call__: EVALSHA, and on NOSCRIPT load the script and EVALSHA again. */
static redisReply *run_script(struct responder *r, const char *lua, const char *sha, int nkeys,
			      const char **keys, int nargs, const char **args,
			      const size_t *arglens)
{
	const char *argv[16];
	size_t lens[16];
	char nk[16];
	int argc = 0;
	snprintf(nk, sizeof(nk), "%d", nkeys);
	argv[argc] = "EVALSHA";
	lens[argc++] = 7;
	argv[argc] = sha;
	lens[argc++] = strlen(sha);
	argv[argc] = nk;
	lens[argc++] = strlen(nk);
	for (int i = 0; i < nkeys; i++) {
		argv[argc] = keys[i];
		lens[argc++] = strlen(keys[i]);
	}
	for (int i = 0; i < nargs; i++) {
		argv[argc] = args[i];
		lens[argc++] = arglens ? arglens[i] : strlen(args[i]);
	}
	redisReply *reply = command(r, argc, argv, lens);
	if (reply && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
		freeReplyObject(reply);
		const char *load[] = {"SCRIPT", "LOAD", lua};
		size_t loadlens[] = {6, 4, strlen(lua)};
		reply = command(r, 3, load, loadlens);
		if (!reply)
			return NULL;
		if (reply->type == REDIS_REPLY_ERROR) {
			log_error("SCRIPT LOAD: %s", reply->str);
			return reply;
		}
		freeReplyObject(reply);
		reply = command(r, argc, argv, lens);
	}
	return reply;
}

static void incr_stat(struct responder *r, const char *queue_channel, const char *counter)
{
	char key[320], global[128];
	snprintf(key, sizeof(key), STATS_PREFIX "%s:%s", queue_channel, counter);
	snprintf(global, sizeof(global), STATS_PREFIX "#global#:%s", counter);
	const char *keys[] = {key, global};
	const char *args[] = {"3600", "86400"};
	redisReply *reply = run_script(r, incrstat_lua, incrstat_sha, 2, keys, 2, args, NULL);
	if (reply && reply->type == REDIS_REPLY_ERROR)
		log_error("incrstatcounters %s: %s", key, reply->str);
	freeReplyObject(reply);
}

/* The channel whose queue holds a message for channel: up to and including '!'. */
static void queue_channel_of(const char *channel, char *out, size_t size)
{
	const char *bang = strchr(channel, '!');
	size_t n = bang ? (size_t)(bang - channel) + 1 : strlen(channel);
	if (n >= size)
		n = size - 1;
	memcpy(out, channel, n);
	out[n] = '\0';
}

/* The payload asgi_redis sends to channel: for a process channel, m gets "__asgi_channel__"
 * as its last key. */
static void encode_for_channel(struct laurel_msg *m, const char *channel, char **data, size_t *len)
{
	if (strchr(channel, '!'))
		laurel_msg_set_text(m, "__asgi_channel__", channel);
	laurel_msg_encode(m, data, len);
}

/* asgi_redis send(): one lua_chansend, then the stats script; a full channel is retried for
 * full_timeout_ms (Channels 1 flushes a consumer's sends that way). Frees m. */
static int send_msg(struct responder *r, const char *channel, struct laurel_msg *m)
{
	char queue[256], qkey[272], bodykey[64];
	char *data;
	size_t len;
	int ret = -1;
	encode_for_channel(m, channel, &data, &len);
	laurel_msg_free(m);
	queue_channel_of(channel, queue, sizeof(queue));
	snprintf(qkey, sizeof(qkey), PREFIX "%s", queue);
	int64_t deadline = util_now_ms() + r->full_timeout_ms;
	for (;;) {
		/* uuid.uuid4().hex */
		char hex[33];
		util_rng_hex(&r->rng, hex, 32);
		hex[12] = '4';
		hex[16] = "89ab"[util_rng_below(&r->rng, 4)];
		hex[32] = '\0';
		snprintf(bodykey, sizeof(bodykey), PREFIX "%s", hex);
		const char *keys[] = {bodykey, qkey};
		const char *args[] = {data, EXPIRY, CAPACITY};
		size_t arglens[] = {len, strlen(EXPIRY), strlen(CAPACITY)};
		redisReply *reply =
			run_script(r, chansend_lua, chansend_sha, 2, keys, 3, args, arglens);
		if (!reply)
			break;
		if (reply->type != REDIS_REPLY_ERROR) {
			freeReplyObject(reply);
			incr_stat(r, queue, "messages_count");
			ret = 0;
			break;
		}
		/* Redis 7 sends the script's "full" as "ERR full"; redis-py strips the code. */
		const char *err = reply->str;
		if (strncmp(err, "ERR ", 4) == 0)
			err += 4;
		bool full = strcmp(err, "full") == 0;
		if (!full)
			log_error("send to %s: %s", channel, reply->str);
		freeReplyObject(reply);
		if (!full)
			break;
		incr_stat(r, queue, "channel_full_count");
		if (util_now_ms() >= deadline) {
			log_error("send to %s: channel full for %ld ms, message dropped", channel,
				  r->full_timeout_ms);
			break;
		}
		sleep_ms(5);
	}
	free(data);
	return ret;
}

/* asgi_redis receive() for normal and single-reader channels: BLPOP (list order shuffled), then
 * GET and DEL of the body key; an expired body is skipped. Returns 1 with *out and the channel in
 * chan, 0 when the BLPOP timed out, -1 on an error (logged). */
static int receive(struct responder *r, const char **channels, int n, char *chan, size_t chansize,
		   struct laurel_msg **out)
{
	const char *argv[8];
	size_t lens[8];
	char names[8][256];
	int argc = 0;
	argv[argc] = "BLPOP";
	lens[argc++] = 5;
	for (int i = 0; i < n; i++)
		snprintf(names[i], sizeof(names[i]), PREFIX "%s", channels[i]);
	for (int i = n - 1; i > 0; i--) {
		int j = (int)util_rng_below(&r->rng, (uint64_t)i + 1);
		char tmp[256];
		memcpy(tmp, names[i], sizeof(tmp));
		memcpy(names[i], names[j], sizeof(tmp));
		memcpy(names[j], tmp, sizeof(tmp));
	}
	for (int i = 0; i < n; i++) {
		argv[argc] = names[i];
		lens[argc++] = strlen(names[i]);
	}
	argv[argc] = BLPOP_TIMEOUT;
	lens[argc++] = strlen(BLPOP_TIMEOUT);

	redisReply *reply = command(r, argc, argv, lens);
	if (!reply)
		return -1;
	if (reply->type == REDIS_REPLY_NIL) {
		freeReplyObject(reply);
		return 0;
	}
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
	    reply->element[0]->type != REDIS_REPLY_STRING ||
	    reply->element[1]->type != REDIS_REPLY_STRING) {
		log_error("BLPOP: unexpected reply type %d%s%s", reply->type,
			  reply->type == REDIS_REPLY_ERROR ? ": " : "",
			  reply->type == REDIS_REPLY_ERROR ? reply->str : "");
		freeReplyObject(reply);
		return -1;
	}
	const char *list = reply->element[0]->str;
	size_t plen = strlen(PREFIX);
	snprintf(chan, chansize, "%s", strncmp(list, PREFIX, plen) == 0 ? list + plen : list);
	char *bodykey = xstrndup(reply->element[1]->str, reply->element[1]->len);
	freeReplyObject(reply);

	const char *get[] = {"GET", bodykey};
	size_t getlens[] = {3, strlen(bodykey)};
	redisReply *body = command(r, 2, get, getlens);
	const char *del[] = {"DEL", bodykey};
	redisReply *delreply = command(r, 2, del, getlens);
	freeReplyObject(delreply);
	int ret = -1;
	if (!body) {
		/* logged by command() */
	} else if (body->type == REDIS_REPLY_NIL) {
		log_warn("message %s on %s expired", bodykey, chan);
		ret = 0;
	} else if (body->type != REDIS_REPLY_STRING) {
		log_error("GET %s: unexpected reply type %d", bodykey, body->type);
	} else {
		struct laurel_msg *m;
		int err = laurel_msg_decode(body->str, body->len, NULL, &m);
		if (err < 0) {
			log_errno(LOG_ERROR, err, "bad message %s on %s (%zu bytes)", bodykey, chan,
				  (size_t)body->len);
		} else {
			const char *full = laurel_msg_get_text(m, "__asgi_channel__", NULL);
			if (full) {
				snprintf(chan, chansize, "%s", full);
				laurel_map_remove(laurel_msg_root(m), "__asgi_channel__");
			}
			*out = m;
			ret = 1;
		}
	}
	freeReplyObject(body);
	free(bodykey);
	return ret;
}

/* --- Record lines ---------------------------------------------------------------------------- */

static void render_text(struct buf *b, const char *s, size_t len)
{
	buf_append_byte(b, '"');
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			buf_append_byte(b, '\\');
			buf_append_byte(b, c);
		} else if (c < 0x20 || c == 0x7f) {
			buf_printf(b, "\\u%04x", c);
		} else {
			buf_append_byte(b, c);
		}
	}
	buf_append_byte(b, '"');
}

static void render_bytes(struct buf *b, const char *s, size_t len)
{
	buf_append_str(b, "b\"");
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			buf_append_byte(b, '\\');
			buf_append_byte(b, c);
		} else if (c < 0x20 || c > 0x7e) {
			buf_printf(b, "\\x%02x", c);
		} else {
			buf_append_byte(b, c);
		}
	}
	buf_append_byte(b, '"');
}

static void render_value(struct buf *b, const struct laurel_value *v)
{
	char num[64];
	switch (v->type) {
	case LAUREL_NIL:
		buf_append_str(b, "null");
		break;
	case LAUREL_BOOL:
		buf_append_str(b, v->u.b ? "true" : "false");
		break;
	case LAUREL_INT:
		buf_printf(b, "%" PRId64, v->u.i);
		break;
	case LAUREL_DOUBLE:
		snprintf(num, sizeof(num), "%.17g", v->u.d);
		buf_append_str(b, num);
		if (!strpbrk(num, ".e") && !strstr(num, "inf") && !strstr(num, "nan"))
			buf_append_str(b, ".0");
		break;
	case LAUREL_TEXT:
		render_text(b, v->u.s.ptr, v->u.s.len);
		break;
	case LAUREL_BYTES:
		render_bytes(b, v->u.s.ptr, v->u.s.len);
		break;
	case LAUREL_LIST:
		buf_append_byte(b, '[');
		for (size_t i = 0; i < v->u.list.len; i++) {
			if (i)
				buf_append_byte(b, ',');
			render_value(b, &v->u.list.items[i]);
		}
		buf_append_byte(b, ']');
		break;
	case LAUREL_MAP:
		buf_append_byte(b, '{');
		for (size_t i = 0; i < v->u.map.len; i++) {
			if (i)
				buf_append_byte(b, ',');
			render_text(b, v->u.map.items[i].key.ptr, v->u.map.items[i].key.len);
			buf_append_byte(b, ':');
			render_value(b, &v->u.map.items[i].value);
		}
		buf_append_byte(b, '}');
		break;
	}
}

/* One record line (with its newline) for message m received on channel. */
static void render_record(struct buf *b, const char *channel, const struct laurel_msg *m)
{
	const struct laurel_value *root = laurel_msg_croot(m);
	buf_append_str(b, "{\"channel\":");
	render_text(b, channel, strlen(channel));
	for (size_t i = 0; i < root->u.map.len; i++) {
		buf_append_byte(b, ',');
		render_text(b, root->u.map.items[i].key.ptr, root->u.map.items[i].key.len);
		buf_append_byte(b, ':');
		render_value(b, &root->u.map.items[i].value);
	}
	buf_append_str(b, "}\n");
}

static void record(struct responder *r, const char *channel, const struct laurel_msg *m)
{
	if (!r->record)
		return;
	struct buf b;
	buf_init(&b);
	render_record(&b, channel, m);
	if (fwrite(b.data, 1, b.len, r->record) != b.len || fflush(r->record) != 0)
		log_errno(LOG_ERROR, errno, "write record file");
	buf_fini(&b);
}

/* --- Replies --------------------------------------------------------------------------------- */

static struct laurel_msg *chunk_msg(const void *content, size_t len, bool more)
{
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_bytes(m, "content", content, len);
	laurel_msg_set_bool(m, "more_content", more);
	return m;
}

static const struct laurel_header text_plain[] = {{"Content-Type", "text/plain"}};

static struct laurel_msg *hello_msg(void)
{
	return response_start(200, text_plain, 1, "hello", 5, false);
}

static void reply_text(struct responder *r, const char *channel, int64_t status, const char *s,
		       size_t len)
{
	send_msg(r, channel, response_start(status, text_plain, 1, s, len, false));
}

/* The value of name in a query string ("a=1&n=5"), as a number; def if absent or not a number. */
static long query_long(const struct laurel_msg *m, const char *name, long def)
{
	size_t qlen;
	const char *q = laurel_msg_get_bytes(m, "query_string", &qlen);
	size_t nlen = strlen(name);
	if (!q)
		return def;
	const char *end = q + qlen;
	for (const char *p = q; p < end;) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *seg_end = amp ? amp : end;
		if ((size_t)(seg_end - p) > nlen && memcmp(p, name, nlen) == 0 && p[nlen] == '=') {
			char num[32];
			size_t n = (size_t)(seg_end - p) - nlen - 1;
			if (n == 0 || n >= sizeof(num))
				return def;
			memcpy(num, p + nlen + 1, n);
			num[n] = '\0';
			char *e;
			errno = 0;
			long v = strtol(num, &e, 10);
			return (*e || errno) ? def : v;
		}
		p = amp ? amp + 1 : end;
	}
	return def;
}

/* Reads the chunks of a body_channel into body. Returns 0 at the end of the body, 1 if the client
 * went away ({closed: true}), -1 on a timeout or error (logged). */
static int read_body_channel(struct responder *r, const char *name, struct buf *body)
{
	int64_t deadline = util_now_ms() + BODY_WAIT_MS;
	for (;;) {
		char chan[256];
		struct laurel_msg *m = NULL;
		int ret = receive(r, &name, 1, chan, sizeof(chan), &m);
		if (ret < 0)
			return -1;
		if (ret == 0) {
			if (util_now_ms() >= deadline) {
				log_error("body channel %s: no chunk for %d ms", name,
					  BODY_WAIT_MS);
				return -1;
			}
			continue;
		}
		deadline = util_now_ms() + BODY_WAIT_MS;
		bool closed = false, more = false;
		size_t len;
		const void *content = laurel_msg_get_bytes(m, "content", &len);
		laurel_msg_get_bool(m, "closed", &closed);
		laurel_msg_get_bool(m, "more_content", &more);
		if (content)
			buf_append(body, content, len);
		laurel_msg_free(m);
		if (closed)
			return 1;
		if (!more)
			return 0;
	}
}

/* The request body: the body field, plus the body_channel chunks if there is one. */
static int full_body(struct responder *r, const struct laurel_msg *m, struct buf *body)
{
	size_t len;
	const void *p = laurel_msg_get_bytes(m, "body", &len);
	if (p)
		buf_append(body, p, len);
	const char *bc = laurel_msg_get_text(m, "body_channel", NULL);
	if (!bc)
		return 0;
	return read_body_channel(r, bc, body);
}

static void reply_big(struct responder *r, const char *channel, const struct laurel_msg *m)
{
	long n = query_long(m, "n", 0);
	if (n < 0 || n > BIG_MAX) {
		reply_text(r, channel, 400, "bad n", 5);
		return;
	}
	char *x = xmalloc(CHUNK_SIZE);
	memset(x, 'x', CHUNK_SIZE);
	char cl[32];
	snprintf(cl, sizeof(cl), "%ld", n);
	struct laurel_header h[] = {{"Content-Type", "text/plain"}, {"Content-Length", cl}};
	size_t first = n < CHUNK_SIZE ? (size_t)n : CHUNK_SIZE;
	size_t left = (size_t)n - first;
	size_t nh = query_long(m, "cl", 0) ? 2 : 1;
	int ret = send_msg(r, channel, response_start(200, h, nh, x, first, left > 0));
	while (ret == 0 && left > 0) {
		size_t k = left < CHUNK_SIZE ? left : CHUNK_SIZE;
		left -= k;
		ret = send_msg(r, channel, chunk_msg(x, k, left > 0));
	}
	free(x);
}

static void handle_request(struct responder *r, const struct laurel_msg *m)
{
	const char *channel = laurel_msg_get_text(m, "reply_channel", NULL);
	const char *path = laurel_msg_get_text(m, "path", NULL);
	if (!channel || !path) {
		log_error("http.request without reply_channel or path: ignored");
		return;
	}
	log_debug("%s %s", channel, path);
	if (strcmp(path, "/hello") == 0) {
		send_msg(r, channel, hello_msg());
	} else if (strcmp(path, "/echo") == 0) {
		static const struct laurel_header h[] = {
			{"Content-Type", "application/octet-stream"}};
		struct buf body;
		buf_init(&body);
		if (full_body(r, m, &body) == 0)
			send_msg(r, channel, response_start(200, h, 1, body.data, body.len, false));
		buf_fini(&body);
	} else if (strcmp(path, "/stream") == 0) {
		if (!send_msg(r, channel, response_start(200, text_plain, 1, "part1", 5, true)) &&
		    send_msg(r, channel, chunk_msg("part2", 5, true)) == 0)
			send_msg(r, channel, chunk_msg("part3", 5, false));
	} else if (strncmp(path, "/status/", 8) == 0) {
		char *e;
		long status = strtol(path + 8, &e, 10);
		if (*e || e == path + 8 || status < 100 || status > 999)
			reply_text(r, channel, 404, "not found", 9);
		else
			send_msg(r, channel, response_start(status, NULL, 0, "", 0, false));
	} else if (strcmp(path, "/headers") == 0) {
		struct buf out;
		buf_init(&out);
		const struct laurel_value *hs = laurel_msg_get(m, "headers");
		for (size_t i = 0; hs && hs->type == LAUREL_LIST && i < hs->u.list.len; i++) {
			const struct laurel_value *pair = &hs->u.list.items[i];
			if (pair->type != LAUREL_LIST || pair->u.list.len != 2)
				continue;
			const struct laurel_value *k = &pair->u.list.items[0];
			const struct laurel_value *v = &pair->u.list.items[1];
			buf_append(&out, k->u.s.ptr, k->type == LAUREL_BYTES ? k->u.s.len : 0);
			buf_append_str(&out, ": ");
			buf_append(&out, v->u.s.ptr, v->type == LAUREL_BYTES ? v->u.s.len : 0);
			buf_append_byte(&out, '\n');
		}
		reply_text(r, channel, 200, out.data ? out.data : "", out.len);
		buf_fini(&out);
	} else if (strcmp(path, "/big") == 0) {
		reply_big(r, channel, m);
	} else if (strcmp(path, "/slow") == 0) {
		long ms = query_long(m, "ms", 0);
		if (ms > 0)
			sleep_ms(ms);
		send_msg(r, channel, hello_msg());
	} else if (strcmp(path, "/never") == 0) {
		/* No reply: the interface's timeout answers. */
	} else if (strcmp(path, "/body-channel") == 0) {
		struct buf body;
		buf_init(&body);
		int ret = full_body(r, m, &body);
		if (ret == 0) {
			char out[64];
			int n = snprintf(out, sizeof(out), "%zu %08" PRIx32, body.len,
					 util_crc32(body.data ? body.data : "", body.len));
			reply_text(r, channel, 200, out, (size_t)n);
		} else if (ret == 1) {
			log_warn("%s: client went away while sending its body", channel);
		}
		buf_fini(&body);
	} else if (strcmp(path, "/reply-twice") == 0) {
		if (send_msg(r, channel, hello_msg()) == 0)
			send_msg(r, channel, response_start(500, NULL, 0, "stray", 5, false));
	} else if (strcmp(path, "/length") == 0) {
		/* An application's own Content-Length: cl=N on "hello" (stream=1: on "part1",
		 * "part2", "part3" in three messages); bad=1: "5x"; twice=1: two of them. */
		char cl[32];
		snprintf(cl, sizeof(cl), query_long(m, "bad", 0) ? "5x" : "%ld",
			 query_long(m, "cl", 5));
		struct laurel_header h[] = {{"Content-Length", cl}, {"Content-Length", cl}};
		size_t nh = query_long(m, "twice", 0) ? 2 : 1;
		if (!query_long(m, "stream", 0))
			send_msg(r, channel, response_start(200, h, nh, "hello", 5, false));
		else if (send_msg(r, channel, response_start(200, h, nh, "part1", 5, true)) == 0 &&
			 send_msg(r, channel, chunk_msg("part2", 5, true)) == 0)
			send_msg(r, channel, chunk_msg("part3", 5, false));
	} else if (strcmp(path, "/header-case") == 0) {
		static const struct laurel_header h[] = {{"X-Custom-Header", "Value"},
							 {"content-type", "text/plain"}};
		send_msg(r, channel, response_start(200, h, 2, "ok", 2, false));
	} else {
		reply_text(r, channel, 404, "not found", 9);
	}
}

/* --- WebSocket consumer ---------------------------------------------------------------------- */

static void group_add(struct responder *r, const char *group, const char *channel)
{
	char key[256], score[32];
	snprintf(key, sizeof(key), "asgi::group:%s", group);
	snprintf(score, sizeof(score), "%.6f", util_wall_time());
	const char *argv[4] = {"ZADD", key, score, channel};
	size_t lens[4] = {4, strlen(key), strlen(score), strlen(channel)};
	freeReplyObject(command(r, 4, argv, lens));
	const char *ex[3] = {"EXPIRE", key, "86400"};
	size_t exl[3] = {6, strlen(key), 5};
	freeReplyObject(command(r, 3, ex, exl));
}

static struct laurel_msg *text_msg(const char *key, const char *s, size_t n)
{
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_textn(m, key, s, n);
	return m;
}

static void handle_connect(struct responder *r, const struct laurel_msg *m)
{
	const char *path = laurel_msg_get_text(m, "path", NULL);
	const char *reply = laurel_msg_get_text(m, "reply_channel", NULL);
	if (!path || !reply)
		return;
	struct laurel_msg *out = laurel_msg_new();
	if (strcmp(path, "/ws/reject") == 0) {
		laurel_msg_set_bool(out, "close", true);
	} else if (strcmp(path, "/ws/refuse") == 0) {
		laurel_msg_set_bool(out, "accept", false);
	} else if (strcmp(path, "/ws/never") == 0) {
		laurel_msg_free(out);
		return;
	} else if (strcmp(path, "/ws/implicit") == 0) {
		laurel_msg_set_text(out, "text", "welcome");
	} else {
		if (strncmp(path, "/ws/group/", 10) == 0)
			group_add(r, path + 10, reply);
		laurel_msg_set_bool(out, "accept", true);
	}
	send_msg(r, reply, out);
}

static void broadcast(struct responder *r, const char *group, const char *text, size_t n)
{
	char key[256];
	snprintf(key, sizeof(key), "asgi::group:%s", group);
	const char *argv[4] = {"ZRANGE", key, "0", "-1"};
	size_t lens[4] = {6, strlen(key), 1, 2};
	redisReply *rep = command(r, 4, argv, lens);
	if (!rep)
		return;
	for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++)
		send_msg(r, rep->element[i]->str, text_msg("text", text, n));
	freeReplyObject(rep);
}

static void handle_receive(struct responder *r, const struct laurel_msg *m)
{
	const char *reply = laurel_msg_get_text(m, "reply_channel", NULL);
	size_t n = 0;
	const char *text = laurel_msg_get_text(m, "text", &n);
	if (!reply)
		return;
	if (!text) {
		size_t bn = 0;
		const void *bytes = laurel_msg_get_bytes(m, "bytes", &bn);
		struct laurel_msg *out = laurel_msg_new();
		laurel_msg_set_bytes(out, "bytes", bytes ? bytes : "", bn);
		send_msg(r, reply, out);
		return;
	}
	if (strncmp(text, "close:", 6) == 0) {
		struct laurel_msg *out = laurel_msg_new();
		laurel_msg_set_int(out, "close", atoi(text + 6));
		send_msg(r, reply, out);
	} else if (strcmp(text, "close") == 0) {
		struct laurel_msg *out = laurel_msg_new();
		laurel_msg_set_bool(out, "close", true);
		send_msg(r, reply, out);
	} else if (strcmp(text, "both") == 0) {
		struct laurel_msg *out = text_msg("text", "both", 4);
		laurel_msg_set_bytes(out, "bytes", "both", 4);
		send_msg(r, reply, out);
	} else if (strcmp(text, "order") == 0) {
		int64_t order = -1;
		laurel_msg_get_int(m, "order", &order);
		char s[32];
		int k = snprintf(s, sizeof(s), "%lld", (long long)order);
		send_msg(r, reply, text_msg("text", s, (size_t)k));
	} else if (strncmp(text, "broadcast:", 10) == 0) {
		const char *g = text + 10, *colon = strchr(g, ':');
		if (colon) {
			char group[128];
			snprintf(group, sizeof(group), "%.*s", (int)(colon - g), g);
			broadcast(r, group, colon + 1, n - (size_t)(colon + 1 - text));
		}
	} else {
		send_msg(r, reply, text_msg("text", text, n));
	}
}

static int serve(struct responder *r, long count)
{
	const char *channels[5] = {"http.request"};
	int nchannels = 1;
	if (r->disconnects)
		channels[nchannels++] = "http.disconnect";
	if (r->websocket) {
		channels[nchannels++] = "websocket.connect";
		channels[nchannels++] = "websocket.receive";
		channels[nchannels++] = "websocket.disconnect";
	}
	connect_redis(r);
	redisReply *ping = command(r, 1, (const char *[]){"PING"}, (size_t[]){4});
	freeReplyObject(ping);
	printf("ready\n");
	fflush(stdout);
	long handled = 0;
	while (count <= 0 || handled < count) {
		char chan[256];
		struct laurel_msg *m = NULL;
		int ret = receive(r, channels, nchannels, chan, sizeof(chan), &m);
		if (ret < 0)
			sleep_ms(50); /* don't spin on a persistent error */
		if (ret <= 0)
			continue;
		record(r, chan, m);
		if (strcmp(chan, "http.request") == 0) {
			handle_request(r, m);
			handled++;
		} else if (strcmp(chan, "websocket.connect") == 0) {
			handle_connect(r, m);
		} else if (strcmp(chan, "websocket.receive") == 0) {
			handle_receive(r, m);
		}
		laurel_msg_free(m);
	}
	return 0;
}

/* --- Self test ------------------------------------------------------------------------------- */

/* The nth (1-based) "hex:" line of the catalog, decoded into out. */
static int catalog_hex(const char *path, int nth, struct buf *out)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		log_errno(LOG_ERROR, errno, "open %s", path);
		return -1;
	}
	char *line = NULL;
	size_t cap = 0;
	int seen = 0, ret = -1;
	while (getline(&line, &cap, f) > 0) {
		if (strncmp(line, "hex:", 4) != 0 || ++seen != nth)
			continue;
		char *p = line + 4;
		for (;;) {
			char *e;
			while (*p == ' ' || *p == '\t')
				p++;
			if (*p == '\n' || *p == '\0')
				break;
			unsigned long v = strtoul(p, &e, 16);
			if (e == p || v > 0xff)
				break;
			buf_append_byte(out, (unsigned char)v);
			p = e;
		}
		ret = 0;
		break;
	}
	free(line);
	fclose(f);
	if (ret < 0)
		log_error("%s: no hex line %d", path, nth);
	return ret;
}

static int selftest(const char *catalog)
{
	int failures = 0;
	char sha[41];

	util_sha1_hex(chansend_lua, strlen(chansend_lua), sha);
	if (strcmp(sha, chansend_sha) != 0) {
		fprintf(stderr, "lua_chansend SHA-1 %s, expected %s\n", sha, chansend_sha);
		failures++;
	}
	util_sha1_hex(incrstat_lua, strlen(incrstat_lua), sha);
	if (strcmp(sha, incrstat_sha) != 0) {
		fprintf(stderr, "lua_incrstatcounters SHA-1 %s, expected %s\n", sha, incrstat_sha);
		failures++;
	}

	struct buf want;
	buf_init(&want);
	if (catalog_hex(catalog, 2, &want) < 0) {
		buf_fini(&want);
		return 1;
	}
	char *data;
	size_t len;
	struct laurel_msg *m = hello_msg();
	encode_for_channel(m, hello_channel, &data, &len);
	laurel_msg_free(m);
	if (len != want.len || memcmp(data, want.data, len) != 0) {
		fprintf(stderr, "/hello reply differs from the catalog (%zu vs %zu bytes)\n", len,
			want.len);
		for (size_t i = 0; i < len; i++)
			fprintf(stderr, "%02x%s", (unsigned char)data[i], i + 1 < len ? " " : "\n");
		failures++;
	} else {
		printf("/hello reply: %zu bytes, identical to the catalog\n", len);
	}
	free(data);

	/* The record line of the captured http.request, checked against its decoded form. */
	static const char want_record[] =
		"{\"channel\":\"http.request\","
		"\"reply_channel\":\"daphne.response.JSKQQYqLSQ!XsBxGbfRTX\","
		"\"http_version\":\"1.1\",\"method\":\"GET\",\"path\":\"/"
		"hello\",\"root_path\":\"\","
		"\"scheme\":\"http\",\"query_string\":b\"\","
		"\"headers\":[[b\"host\",b\"127.0.0.1:8001\"],[b\"user-agent\",b\"curl/7.88.1\"],"
		"[b\"accept\",b\"*/*\"]],\"body\":b\"\",\"client\":[\"127.0.0.1\",57604],"
		"\"server\":[\"127.0.0.1\",8001]}\n";
	buf_reset(&want);
	if (catalog_hex(catalog, 1, &want) < 0 ||
	    laurel_msg_decode(want.data, want.len, NULL, &m) < 0) {
		fprintf(stderr, "cannot decode the first catalog message\n");
		failures++;
	} else {
		struct buf line;
		buf_init(&line);
		render_record(&line, "http.request", m);
		if (strcmp(line.data, want_record) != 0) {
			fprintf(stderr, "record line:\n  got      %s  expected %s", line.data,
				want_record);
			failures++;
		} else {
			printf("record: %s", line.data);
		}
		buf_fini(&line);
		laurel_msg_free(m);
	}

	/* Every type and escape of the record format. */
	m = laurel_msg_new();
	struct laurel_value *root = laurel_msg_root(m);
	laurel_msg_set_textn(m, "t", "a\"\\\n\x7f\xc3\xa9", 7);
	laurel_msg_set_bytes(m, "b", "a\"\\\n\x00\xff", 6);
	laurel_msg_set_int(m, "i", -12);
	laurel_msg_set_double(m, "d", 1.0);
	laurel_msg_set_double(m, "e", 0.5);
	laurel_msg_set_bool(m, "y", true);
	laurel_msg_set_nil(m, "n");
	struct laurel_value *map = laurel_map_put(m, root, "m");
	laurel_value_set_map(m, map, 1);
	laurel_value_set_list(m, laurel_map_put(m, map, "l"), 0);
	static const char want_types[] =
		"{\"channel\":\"x\",\"t\":\"a\\\"\\\\\\u000a\\u007f\xc3\xa9\","
		"\"b\":b\"a\\\"\\\\\\x0a\\x00\\xff\",\"i\":-12,\"d\":1.0,\"e\":0.5,\"y\":true,"
		"\"n\":null,\"m\":{\"l\":[]}}\n";
	struct buf line;
	buf_init(&line);
	render_record(&line, "x", m);
	if (strcmp(line.data, want_types) != 0) {
		fprintf(stderr, "record types:\n  got      %s  expected %s", line.data, want_types);
		failures++;
	}
	buf_fini(&line);
	laurel_msg_free(m);
	buf_fini(&want);
	printf("selftest: %s\n", failures ? "FAILED" : "ok");
	return failures ? 1 : 0;
}

/* --- main ------------------------------------------------------------------------------------ */

static void usage(void)
{
	fprintf(stderr, "usage: laurel-test-responder --port REDIS_PORT [--host H] [--count N] "
			"[--record FILE] [--disconnects] [--websocket] [--full-timeout MS] [-v]\n"
			"       laurel-test-responder --selftest CATALOG\n");
	exit(2);
}

static long parse_long(const char *s, long min, long max)
{
	char *e;
	errno = 0;
	long v = strtol(s, &e, 10);
	if (!*s || *e || errno || v < min || v > max)
		usage();
	return v;
}

int main(int argc, char **argv)
{
	struct responder r = {.host = "127.0.0.1", .full_timeout_ms = 2000};
	const char *record_path = NULL, *catalog = NULL;
	long count = 0;

	log_set_program("laurel-test-responder");
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--websocket") == 0) {
			r.websocket = true;
			continue;
		}
		if (strcmp(a, "--disconnects") == 0) {
			r.disconnects = true;
			continue;
		}
		if (strcmp(a, "-v") == 0) {
			log_level = LOG_DEBUG;
			continue;
		}
		if (!v)
			usage();
		i++;
		if (strcmp(a, "--port") == 0)
			r.port = (int)parse_long(v, 1, 65535);
		else if (strcmp(a, "--host") == 0)
			r.host = v;
		else if (strcmp(a, "--count") == 0)
			count = parse_long(v, 1, 1L << 40);
		else if (strcmp(a, "--record") == 0)
			record_path = v;
		else if (strcmp(a, "--full-timeout") == 0)
			r.full_timeout_ms = parse_long(v, 0, 3600000);
		else if (strcmp(a, "--selftest") == 0)
			catalog = v;
		else
			usage();
	}
	if (catalog)
		return selftest(catalog);
	if (!r.port)
		usage();

	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* A test that dies without stopping us must not leave us running. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	util_rng_init(&r.rng);
	if (record_path) {
		r.record = fopen(record_path, "a");
		if (!r.record) {
			log_errno(LOG_ERROR, errno, "open %s", record_path);
			return 2;
		}
	}
	int ret = serve(&r, count);
	redisFree(r.c);
	if (r.record)
		fclose(r.record);
	return ret;
}
