/* The Redis backend against real redis-servers: the exact asgi_redis 1.4.3 layout (keys, types,
 * TTLs), compatibility with the Python side in both directions using the captured bytes, shard
 * placement by the CRC-32 rule, a 10,000-member group send, and Redis going away and coming back.
 *
 * argv[1]: the path of channels1-message-catalog.txt. */
#include "common/util.h"
#include "laurel/layer.h"
#include "tests/lib/test.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

/* --- Catalog --------------------------------------------------------------------------------- */

static struct test_vector vectors[32];
static size_t nvectors;


static struct laurel_layer *make_layer(const char *const *urls, size_t n, int capacity)
{
	struct laurel_layer_options o = {.urls = urls, .nurls = n, .capacity = capacity};
	struct laurel_layer *l = NULL;
	char err[256];
	int rc = laurel_layer_new(&l, &o, err, sizeof(err));
	CHECK_EQ(rc, 0);
	if (rc)
		fprintf(stderr, "%s\n", err);
	return l;
}

static redisContext *raw(struct test_redis *r)
{
	redisContext *c = redisConnect("127.0.0.1", r->port);
	if (!c || c->err) {
		fprintf(stderr, "cannot connect to test redis\n");
		exit(2);
	}
	return c;
}

/* --- Layout ---------------------------------------------------------------------------------- */

static void test_layout(struct test_redis *r)
{
	const char *url = r->url;
	struct laurel_layer *l = make_layer(&url, 1, 0);
	CHECK_EQ(laurel_layer_flush(l), 0);

	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_text(m, "text", "hi");
	CHECK_EQ(laurel_layer_send(l, "layout.test", m), 0);
	CHECK_STR(test_redis_cmd(r, "TYPE asgi:layout.test"), "list");
	CHECK_STR(test_redis_cmd(r, "TTL asgi:layout.test"), "61");
	const char *bodykey = test_redis_cmd(r, "LINDEX asgi:layout.test 0");
	char key[64];
	snprintf(key, sizeof(key), "%s", bodykey);
	CHECK_EQ(strlen(key), 5 + 32);
	CHECK(strncmp(key, "asgi:", 5) == 0);
	for (size_t i = 5; i < strlen(key); i++)
		CHECK((key[i] >= '0' && key[i] <= '9') || (key[i] >= 'a' && key[i] <= 'f'));
	CHECK_STR(test_redis_cmd(r, "TYPE %s", key), "string");
	CHECK_STR(test_redis_cmd(r, "TTL %s", key), "60");
	CHECK_STR(test_redis_cmd(r, "GET asgi-meta:layout.test:messages_count"), "1");
	CHECK_STR(test_redis_cmd(r, "TTL asgi-meta:layout.test:messages_count"), "3600");
	CHECK_STR(test_redis_cmd(r, "GET asgi-meta:#global#:messages_count"), "1");
	CHECK_STR(test_redis_cmd(r, "TTL asgi-meta:#global#:messages_count"), "86400");

	/* Process channel: queue on "a!", stats on "a!". */
	CHECK_EQ(laurel_layer_send(l, "proc.x!abc", m), 0);
	CHECK_STR(test_redis_cmd(r, "TYPE asgi:proc.x!"), "list");
	CHECK_STR(test_redis_cmd(r, "GET asgi-meta:proc.x!:messages_count"), "1");

	/* Group: zset at asgi::group:NAME, score = now, group_expiry TTL. */
	double before = util_wall_time();
	CHECK_EQ(laurel_layer_group_add(l, "room", "proc.x!abc"), 0);
	CHECK_STR(test_redis_cmd(r, "TYPE asgi::group:room"), "zset");
	CHECK_STR(test_redis_cmd(r, "TTL asgi::group:room"), "86400");
	double score = atof(test_redis_cmd(r, "ZSCORE asgi::group:room proc.x!abc"));
	CHECK(score >= before - 1 && score <= util_wall_time() + 1);

	/* Full channel: the error and the counters. */
	laurel_layer_free(l);
	l = make_layer(&url, 1, 2);
	CHECK_EQ(laurel_layer_send(l, "full.test", m), 0);
	CHECK_EQ(laurel_layer_send(l, "full.test", m), 0);
	CHECK_EQ(laurel_layer_send(l, "full.test", m), LAUREL_FULL);
	CHECK_STR(test_redis_cmd(r, "LLEN asgi:full.test"), "2");
	CHECK_STR(test_redis_cmd(r, "GET asgi-meta:full.test:channel_full_count"), "1");
	CHECK_STR(test_redis_cmd(r, "GET asgi-meta:#global#:channel_full_count"), "1");

	/* The server forgetting the scripts (SCRIPT FLUSH) is recovered from. */
	test_redis_cmd(r, "SCRIPT FLUSH");
	CHECK_EQ(laurel_layer_send(l, "after.flush", m), 0);
	CHECK_STR(test_redis_cmd(r, "LLEN asgi:after.flush"), "1");

	/* A group history's layout (docs/layer.md), and its append recovering from SCRIPT FLUSH
	 * too (it is written ahead of the member read). */
	const struct laurel_history_rule rule = {"hroom*", 3, 600};
	struct laurel_layer_options ho = {.urls = &url, .nurls = 1, .histories = &rule,
					  .nhistories = 1};
	struct laurel_layer *h = NULL;
	CHECK_EQ(laurel_layer_new(&h, &ho, NULL, 0), 0);
	struct laurel_history_pos pos;
	CHECK_EQ(laurel_layer_group_add(h, "hroom", "proc.x!abc"), 0);
	CHECK_EQ(laurel_layer_group_publish(h, "hroom", m, NULL, &pos), 0);
	CHECK_EQ(pos.offset, 1);
	CHECK_STR(test_redis_cmd(r, "TYPE asgi::history:hroom"), "hash");
	CHECK_STR(test_redis_cmd(r, "HGET asgi::history:hroom epoch"), pos.epoch);
	CHECK_STR(test_redis_cmd(r, "HGET asgi::history:hroom offset"), "1");
	CHECK_STR(test_redis_cmd(r, "TYPE asgi::history-log:hroom"), "list");
	CHECK_STR(test_redis_cmd(r, "TTL asgi::history-log:hroom"), "600");
	CHECK_STR(test_redis_cmd(r, "TTL asgi::history:hroom"), "600");
	test_redis_cmd(r, "SCRIPT FLUSH");
	for (int i = 2; i <= 5; i++) {
		CHECK_EQ(laurel_layer_group_publish(h, "hroom", m, NULL, &pos), 0);
		CHECK_EQ(pos.offset, (uint64_t)i);
	}
	CHECK_STR(test_redis_cmd(r, "LLEN asgi::history-log:hroom"), "3");
	CHECK_STR(test_redis_cmd(r, "LLEN asgi:proc.x!"), "6"); /* the send above and 5 */
	laurel_layer_free(h);

	/* flush removes everything under both prefixes. */
	CHECK_EQ(laurel_layer_flush(l), 0);
	CHECK_STR(test_redis_cmd(r, "DBSIZE"), "0");
	laurel_msg_free(m);
	laurel_layer_free(l);
}

/* --- The Python side ------------------------------------------------------------------------- */

static void python_sends(redisContext *c, const char *queue, const struct test_vector *v)
{
	const char *body = "asgi:0123456789abcdef0123456789abcdef";
	CHECK_EQ(test_asgi_send(c, body, queue, v->bytes, v->len), 0);
}

/* What asgi_redis's receive does: LPOP the queue, GET and DEL the body. */
static void python_receives(redisContext *c, const char *queue, const struct test_vector *expect)
{
	redisReply *k = redisCommand(c, "LPOP %s", queue);
	CHECK(k && k->type == REDIS_REPLY_STRING);
	if (!k || k->type != REDIS_REPLY_STRING) {
		freeReplyObject(k);
		return;
	}
	redisReply *b = redisCommand(c, "GET %b", k->str, k->len);
	CHECK(b && b->type == REDIS_REPLY_STRING);
	if (b && b->type == REDIS_REPLY_STRING)
		CHECK_MEM(b->str, b->len, expect->bytes, expect->len);
	freeReplyObject(redisCommand(c, "DEL %b", k->str, k->len));
	freeReplyObject(b);
	freeReplyObject(k);
}

static void test_python_compat(struct test_redis *r)
{
	const char *url = r->url;
	struct laurel_layer *l = make_layer(&url, 1, 0);
	redisContext *c = raw(r);
	CHECK_EQ(laurel_layer_flush(l), 0);
	CHECK_INT(nvectors, >=, 7);

	/* Daphne 1.4 put this http.request on Redis; laurel receives it. */
	python_sends(c, "asgi:http.request", &vectors[0]);
	struct laurel_received got[4];
	size_t n;
	const char *chans[] = {"http.request"};
	CHECK_EQ(laurel_layer_receive(l, chans, 1, 1000, got, 4, &n), 0);
	CHECK_EQ(n, 1);
	if (n == 1) {
		CHECK_STR(got[0].channel, "http.request");
		CHECK_STR(laurel_msg_get_text(got[0].msg, "reply_channel", NULL),
			  "daphne.response.JSKQQYqLSQ!XsBxGbfRTX");
		/* laurel re-sends it unchanged: the Python reader sees the captured bytes. */
		CHECK_EQ(laurel_layer_send(l, "http.request", got[0].msg), 0);
		python_receives(c, "asgi:http.request", &vectors[0]);
		laurel_received_fini(&got[0]);
	}

	/* A Channels 1 worker's reply on a Daphne process channel; laurel, as the interface, reads
	 * it back with the full channel name. */
	python_sends(c, "asgi:daphne.response.JSKQQYqLSQ!", &vectors[1]);
	const char *proc[] = {"daphne.response.JSKQQYqLSQ!"};
	CHECK_EQ(laurel_layer_receive(l, proc, 1, 1000, got, 4, &n), 0);
	CHECK_EQ(n, 1);
	if (n == 1) {
		CHECK_STR(got[0].channel, "daphne.response.JSKQQYqLSQ!XsBxGbfRTX");
		CHECK(laurel_msg_get(got[0].msg, "__asgi_channel__") == NULL);
		int64_t status = 0;
		CHECK_EQ(laurel_msg_get_int(got[0].msg, "status", &status), 0);
		CHECK_EQ(status, 200);
		/* laurel, as a worker, sends the same reply: Daphne would read the captured bytes. */
		CHECK_EQ(laurel_layer_send(l, got[0].channel, got[0].msg), 0);
		python_receives(c, "asgi:daphne.response.JSKQQYqLSQ!", &vectors[1]);
		laurel_received_fini(&got[0]);
	}

	/* Every captured message goes through laurel and comes out byte for byte. */
	for (size_t i = 0; i < nvectors; i++) {
		struct laurel_msg *m;
		CHECK_EQ(laurel_msg_decode(vectors[i].bytes, vectors[i].len, NULL, &m), 0);
		if (!m)
			continue;
		const char *target = "vector.test";
		const struct laurel_value *ch = laurel_msg_get(m, "__asgi_channel__");
		char name[128];
		if (ch && ch->type == LAUREL_TEXT) {
			snprintf(name, sizeof(name), "%s", ch->u.s.ptr);
			target = name;
		}
		CHECK_EQ(laurel_layer_send(l, target, m), 0);
		char queue[160];
		snprintf(queue, sizeof(queue), "asgi:%.*s", (int)(strchr(target, '!') ?
								   strchr(target, '!') - target + 1 :
								   (long)strlen(target)),
			 target);
		python_receives(c, queue, &vectors[i]);
		laurel_msg_free(m);
	}
	redisFree(c);
	laurel_layer_free(l);
}

/* --- Sharding -------------------------------------------------------------------------------- */

static size_t expected_shard(const char *name, size_t len, size_t n)
{
	return ((util_crc32(name, len) & 0xfff) * n) / 4096;
}

/* A send whose answer does not come in time (the server is busy in a long script) fails with
 * -EIO, not -ENOTCONN: the server carries it out afterwards, once, and a caller that retries only
 * -ENOTCONN (as the worker does) does not send it twice. The same for a batch. */
static const char busy_script[] =
	"local t0 = redis.call('TIME') "
	"while true do local t = redis.call('TIME') "
	"if (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) > tonumber(ARGV[1]) then break end end "
	"return 1";

static void busy_server(redisContext *c, int us)
{
	char n[16];
	snprintf(n, sizeof(n), "%d", us);
	redisAppendCommand(c, "EVAL %s 0 %s", busy_script, n);
	int done = 0;
	while (!done && redisBufferWrite(c, &done) == REDIS_OK)
		;
	usleep(50000); /* the server is inside the script */
}

static void busy_done(redisContext *c)
{
	void *reply = NULL;
	CHECK_EQ(redisGetReply(c, &reply), REDIS_OK);
	freeReplyObject(reply);
}

static void test_answer_lost(struct test_redis *r)
{
	const char *url = r->url;
	struct laurel_layer_options o = {.urls = &url, .nurls = 1, .command_timeout_ms = 200};
	struct laurel_layer *l = NULL;
	CHECK_EQ(laurel_layer_new(&l, &o, NULL, 0), 0);
	CHECK_EQ(laurel_layer_flush(l), 0);
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_int(m, "n", 1);
	CHECK_EQ(laurel_layer_send(l, "lost.warmup", m), 0); /* connected, scripts loaded */
	redisContext *c = raw(r);
	busy_server(c, 700000);
	CHECK_EQ(laurel_layer_send(l, "lost.one", m), -EIO);
	CHECK(strstr(laurel_layer_error(l), "may have been carried out") != NULL);
	busy_done(c);
	struct laurel_outgoing items[3] = {{"lost.warmup", m, 0}, {"lost.warmup", m, 0},
					   {"lost.warmup", m, 0}};
	CHECK_EQ(laurel_layer_send_many(l, items, 3), 0); /* connected again, script loaded */
	busy_server(c, 700000);
	items[0].channel = items[1].channel = "lost.many";
	items[2].channel = "lost.other?x";
	CHECK_EQ(laurel_layer_send_many(l, items, 3), -EIO);
	for (int i = 0; i < 3; i++)
		CHECK_EQ(items[i].result, -EIO);
	busy_done(c);
	redisFree(c);
	int64_t deadline = util_now_ms() + 3000;
	while (atoi(test_redis_cmd(r, "LLEN asgi:lost.many")) < 2 && util_now_ms() < deadline)
		usleep(20000);
	CHECK_STR(test_redis_cmd(r, "LLEN asgi:lost.one"), "1");
	CHECK_STR(test_redis_cmd(r, "LLEN asgi:lost.many"), "2");
	CHECK_STR(test_redis_cmd(r, "LLEN asgi:lost.other?x"), "1");
	CHECK_EQ(laurel_layer_send(l, "lost.one", m), 0); /* and it works again */
	CHECK_STR(test_redis_cmd(r, "LLEN asgi:lost.one"), "2");
	laurel_msg_free(m);
	laurel_layer_free(l);
}

static void test_sharding(struct test_redis *rs)
{
	const char *urls[3] = {rs[0].url, rs[1].url, rs[2].url};
	struct laurel_layer *l = make_layer(urls, 3, 1000);
	CHECK_EQ(laurel_layer_flush(l), 0);
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_text(m, "text", "x");
	int hits[3] = {0};
	for (int i = 0; i < 60; i++) {
		char chan[64], qname[64];
		snprintf(chan, sizeof(chan), "iface%d.response!local%d", i, i);
		snprintf(qname, sizeof(qname), "iface%d.response!", i);
		CHECK_EQ(laurel_layer_send(l, chan, m), 0);
		size_t sh = expected_shard(qname, strlen(qname), 3);
		hits[sh]++;
		CHECK_STR(test_redis_cmd(&rs[sh], "LLEN asgi:%s", qname), "1");
		for (size_t o = 0; o < 3; o++)
			if (o != sh)
				CHECK_STR(test_redis_cmd(&rs[o], "EXISTS asgi:%s", qname), "0");

		char single[64];
		snprintf(single, sizeof(single), "reply%d?abc", i);
		CHECK_EQ(laurel_layer_send(l, single, m), 0);
		sh = expected_shard(single, strlen(single), 3);
		CHECK_STR(test_redis_cmd(&rs[sh], "LLEN asgi:%s", single), "1");

		char group[32];
		snprintf(group, sizeof(group), "group%d", i);
		CHECK_EQ(laurel_layer_group_add(l, group, chan), 0);
		sh = expected_shard(group, strlen(group), 3);
		CHECK_STR(test_redis_cmd(&rs[sh], "ZCARD asgi::group:%s", group), "1");
	}
	for (int i = 0; i < 3; i++)
		CHECK_INT(hits[i], >, 0);

	/* Normal channels go round-robin: 30 sends put 10 on each shard. */
	for (int i = 0; i < 30; i++)
		CHECK_EQ(laurel_layer_send(l, "spread", m), 0);
	for (int i = 0; i < 3; i++)
		CHECK_STR(test_redis_cmd(&rs[i], "LLEN asgi:spread"), "10");
	/* And a receiver gets all 30 without stalling on any shard. */
	int64_t t0 = util_now_ms();
	size_t total = 0;
	const char *spread[] = {"spread"};
	while (total < 30 && util_now_ms() - t0 < 5000) {
		struct laurel_received got[8];
		size_t n = 0;
		CHECK_EQ(laurel_layer_receive(l, spread, 1, 1000, got, 8, &n), 0);
		for (size_t i = 0; i < n; i++)
			laurel_received_fini(&got[i]);
		total += n;
	}
	CHECK_EQ(total, 30);
	CHECK_INT(util_now_ms() - t0, <, 1000);
	laurel_msg_free(m);
	laurel_layer_free(l);
}

struct waiter {
	const char *const *urls;
	int64_t woke_at;
	size_t got;
	char channel[LAUREL_NAME_MAX + 1];
};

static void *wait_thread(void *arg)
{
	struct waiter *w = arg;
	struct laurel_layer *l = make_layer(w->urls, 3, 0);
	const char *chans[] = {"blocked.work", "solo?abcdef"};
	struct laurel_received got[1];
	laurel_layer_receive(l, chans, 2, 5000, got, 1, &w->got);
	w->woke_at = util_now_ms();
	if (w->got) {
		snprintf(w->channel, sizeof(w->channel), "%s", got[0].channel);
		laurel_received_fini(&got[0]);
	}
	laurel_layer_free(l);
	return NULL;
}

/* A blocked receive over three shards wakes at once for a message on any of them, and a
 * message popped by a cancelled BLPOP is not lost. */
static void test_sharded_blocking(struct test_redis *rs)
{
	const char *urls[3] = {rs[0].url, rs[1].url, rs[2].url};
	struct laurel_layer *l = make_layer(urls, 3, 0);
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_int(m, "n", 1);
	for (int round = 0; round < 6; round++) {
		struct waiter w = {.urls = urls};
		pthread_t t;
		pthread_create(&t, NULL, wait_thread, &w);
		usleep(150 * 1000);
		int64_t sent = util_now_ms();
		CHECK_EQ(laurel_layer_send(l, round % 2 ? "solo?abcdef" : "blocked.work", m), 0);
		pthread_join(t, NULL);
		CHECK_EQ(w.got, 1);
		CHECK_INT(w.woke_at - sent, <, 300);
		CHECK_STR(w.channel, round % 2 ? "solo?abcdef" : "blocked.work");
	}
	/* Nothing left behind anywhere. */
	for (int i = 0; i < 3; i++)
		CHECK_STR(test_redis_cmd(&rs[i], "LLEN asgi:blocked.work"), "0");
	laurel_msg_free(m);
	laurel_layer_free(l);
}

/* --- Big groups ------------------------------------------------------------------------------ */

static void test_big_group(struct test_redis *r)
{
	const char *url = r->url;
	struct laurel_capacity caps[] = {{"foreign.response.*", 1000}};
	struct laurel_layer_options o = {.urls = &url, .nurls = 1, .capacities = caps,
					 .ncapacities = 1};
	struct laurel_layer *l;
	CHECK_EQ(laurel_layer_new(&l, &o, NULL, 0), 0);
	CHECK_EQ(laurel_layer_flush(l), 0);
	CHECK_EQ(laurel_layer_announce(l, "laurel.response.AAAAAAAAAA!", 30), 0);
	CHECK_EQ(laurel_layer_announce(l, "laurel.response.BBBBBBBBBB!", 30), 0);
	char **ifs;
	size_t nifs;
	CHECK_EQ(laurel_layer_interfaces(l, &ifs, &nifs), 0);
	CHECK_EQ(nifs, 2);
	laurel_strv_free(ifs);

	/* 10,000 members on two laurel interfaces, plus 100 on a foreign (Daphne) process. */
	redisContext *c = raw(r);
	for (int i = 0; i < 10000; i++)
		redisAppendCommand(c, "ZADD asgi::group:big %f laurel.response.%s!c%d",
				   util_wall_time(), i % 2 ? "AAAAAAAAAA" : "BBBBBBBBBB", i);
	for (int i = 0; i < 100; i++)
		redisAppendCommand(c, "ZADD asgi::group:big %f foreign.response.XXXXXXXXXX!d%d",
				   util_wall_time(), i);
	for (int i = 0; i < 10100; i++) {
		redisReply *rep;
		if (redisGetReply(c, (void **)&rep) == REDIS_OK)
			freeReplyObject(rep);
	}
	size_t count = 0;
	CHECK_EQ(laurel_layer_group_count(l, "big", &count), 0);
	CHECK_EQ(count, 10100);

	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_text(m, "text", "hello everyone");
	size_t delivered = 0;
	int64_t t0 = util_now_ms();
	CHECK_EQ(laurel_layer_group_send(l, "big", m, &delivered), 0);
	int64_t took = util_now_ms() - t0;
	printf("group send to 10,100 members: %lld ms\n", (long long)took);
	CHECK_EQ(delivered, 10100);
	/* O(interfaces) queue entries for laurel members, one each for the foreign ones. */
	CHECK_STR(test_redis_cmd(r, "LLEN asgi:laurel.response.AAAAAAAAAA!"), "1");
	CHECK_STR(test_redis_cmd(r, "LLEN asgi:laurel.response.BBBBBBBBBB!"), "1");
	CHECK_STR(test_redis_cmd(r, "LLEN asgi:foreign.response.XXXXXXXXXX!"), "100");
	CHECK_STR(test_redis_cmd(r, "GET asgi-meta:#global#:messages_count"), "102");

	const char *chans[] = {"laurel.response.AAAAAAAAAA!"};
	struct laurel_received got[2];
	size_t n;
	CHECK_EQ(laurel_layer_receive(l, chans, 1, 1000, got, 2, &n), 0);
	CHECK_EQ(n, 1);
	if (n == 1) {
		CHECK_EQ(got[0].nrecipients, 5000);
		CHECK_STR(got[0].channel, "laurel.response.AAAAAAAAAA!");
		CHECK_STR(got[0].recipients[0], "laurel.response.AAAAAAAAAA!c1");
		CHECK_STR(laurel_msg_get_text(got[0].msg, "text", NULL), "hello everyone");
		CHECK(laurel_msg_get(got[0].msg, "__laurel_multicast__") == NULL);
		laurel_received_fini(&got[0]);
	}
	/* A foreign member's message is the ordinary asgi_redis form. */
	const char *foreign[] = {"foreign.response.XXXXXXXXXX!"};
	CHECK_EQ(laurel_layer_receive(l, foreign, 1, 1000, got, 1, &n), 0);
	CHECK_EQ(n, 1);
	if (n == 1) {
		CHECK(strncmp(got[0].channel, "foreign.response.XXXXXXXXXX!d", 29) == 0);
		CHECK_EQ(got[0].nrecipients, 0);
		laurel_received_fini(&got[0]);
	}
	/* When an interface withdraws, its members get one message each again. */
	CHECK_EQ(laurel_layer_withdraw(l, "laurel.response.BBBBBBBBBB!"), 0);
	test_redis_cmd(r, "DEL asgi:laurel.response.BBBBBBBBBB!");
	struct laurel_capacity caps2[] = {{"laurel.response.*", 10000}};
	o.capacities = caps2;
	struct laurel_layer *l2;
	CHECK_EQ(laurel_layer_new(&l2, &o, NULL, 0), 0);
	CHECK_EQ(laurel_layer_group_send(l2, "big", m, &delivered), 0);
	CHECK_STR(test_redis_cmd(r, "LLEN asgi:laurel.response.BBBBBBBBBB!"), "5000");
	laurel_layer_free(l2);
	redisFree(c);
	laurel_msg_free(m);
	laurel_layer_free(l);
}

/* --- Outage ---------------------------------------------------------------------------------- */

static void test_outage(struct test_redis *r)
{
	const char *url = r->url;
	struct laurel_layer *l = make_layer(&url, 1, 0);
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_text(m, "text", "x");
	CHECK_EQ(laurel_layer_send(l, "outage", m), 0);

	test_redis_stop(r, 1);
	int64_t t0 = util_now_ms();
	CHECK_EQ(laurel_layer_send(l, "outage", m), -ENOTCONN);
	CHECK(strstr(laurel_layer_error(l), "127.0.0.1") != NULL);
	/* During the backoff further calls fail at once without trying. */
	for (int i = 0; i < 100; i++)
		CHECK_EQ(laurel_layer_send(l, "outage", m), -ENOTCONN);
	CHECK_INT(util_now_ms() - t0, <, 500);
	/* A blocking receive while Redis is down waits out its timeout, without spinning, and
	 * reports the failure. */
	struct timespec c0, c1;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
	t0 = util_now_ms();
	const char *chans[] = {"outage"};
	struct laurel_received got[1];
	size_t n = 5;
	CHECK_EQ(laurel_layer_receive(l, chans, 1, 700, got, 1, &n), -ENOTCONN);
	CHECK_EQ(n, 0);
	int64_t waited = util_now_ms() - t0;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
	double cpu_ms = (c1.tv_sec - c0.tv_sec) * 1e3 + (c1.tv_nsec - c0.tv_nsec) / 1e6;
	CHECK_INT(waited, >=, 600);
	CHECK_INT(waited, <, 2000);
	CHECK_INT(cpu_ms, <, 100);

	/* Redis comes back: the same client recovers by itself within the backoff. */
	CHECK_EQ(test_redis_restart(r), 0);
	t0 = util_now_ms();
	int rc;
	while ((rc = laurel_layer_send(l, "outage", m)) != 0 && util_now_ms() - t0 < 8000)
		usleep(50 * 1000);
	CHECK_EQ(rc, 0);
	printf("recovered %lld ms after Redis came back\n", (long long)(util_now_ms() - t0));
	CHECK_EQ(laurel_layer_receive(l, chans, 1, 1000, got, 1, &n), 0);
	CHECK_EQ(n, 1);
	if (n)
		laurel_received_fini(&got[0]);

	/* A receive blocked in BLPOP when Redis dies returns an error and recovers too. */
	test_redis_stop(r, 1);
	CHECK_EQ(laurel_layer_receive(l, chans, 1, 300, got, 1, &n), -ENOTCONN);
	CHECK_EQ(test_redis_restart(r), 0);
	t0 = util_now_ms();
	while ((rc = laurel_layer_receive(l, chans, 1, 100, got, 1, &n)) != 0 &&
	       util_now_ms() - t0 < 8000)
		;
	CHECK_EQ(rc, 0);
	laurel_msg_free(m);
	laurel_layer_free(l);
}

/* A group history across a Redis restart without persistence: the history is lost, so the next
 * message starts a new epoch at 1 and a client of the old epoch is told it lost it; a group send
 * while Redis is down fails cleanly (its history append and member read shared a round trip). */
static void test_history_restart(struct test_redis *r)
{
	const char *url = r->url;
	const struct laurel_history_rule rule = {"hr.*", 10, 600};
	struct laurel_layer_options o = {.urls = &url, .nurls = 1, .histories = &rule,
					 .nhistories = 1};
	struct laurel_layer *l = NULL;
	CHECK_EQ(laurel_layer_new(&l, &o, NULL, 0), 0);
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_text(m, "text", "x");
	struct laurel_history_pos pos, top;
	struct laurel_history_entry *v = NULL;
	size_t n = 0;
	CHECK_EQ(laurel_layer_group_add(l, "hr.room", "hr.member"), 0);
	CHECK_EQ(laurel_layer_group_publish(l, "hr.room", m, NULL, &pos), 0);
	CHECK_EQ(laurel_layer_group_publish(l, "hr.room", m, NULL, &pos), 0);
	CHECK_EQ(pos.offset, 2);
	char old[LAUREL_EPOCH_LEN + 1];
	memcpy(old, pos.epoch, sizeof(old));

	test_redis_stop(r, 1);
	CHECK_EQ(laurel_layer_group_publish(l, "hr.room", m, NULL, &pos), -ENOTCONN);
	CHECK_EQ(test_redis_restart(r), 0);
	int64_t t0 = util_now_ms();
	int rc;
	while ((rc = laurel_layer_group_publish(l, "hr.room", m, NULL, &pos)) != 0 &&
	       util_now_ms() - t0 < 8000)
		usleep(50 * 1000);
	CHECK_EQ(rc, 0);
	CHECK_EQ(pos.offset, 1);
	CHECK(strcmp(pos.epoch, old) != 0);
	CHECK_EQ(laurel_layer_group_history(l, "hr.room", old, 2, &v, &n, &top), LAUREL_HISTORY_LOST);
	CHECK_STR(top.epoch, pos.epoch);
	/* The connection is in step: the next calls answer what they asked. */
	CHECK_EQ(laurel_layer_group_publish(l, "hr.room", m, NULL, &pos), 0);
	CHECK_EQ(pos.offset, 2);
	CHECK_EQ(laurel_layer_group_history(l, "hr.room", pos.epoch, 0, &v, &n, &top), 0);
	CHECK_EQ(n, 2);
	laurel_history_entries_free(v, n);
	laurel_msg_free(m);
	laurel_layer_flush(l);
	laurel_layer_free(l);
}

static void test_urls(void)
{
	const char *bad[] = {"http://x", "redis://", "redis://host:0", "redis://host:99999",
			     "redis://host:12/x", "unix://", "unix://rel/path", "redis://[::1"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct laurel_layer_options o = {.urls = &bad[i], .nurls = 1};
		struct laurel_layer *l = NULL;
		char err[256] = "";
		CHECK_EQ(laurel_layer_new(&l, &o, err, sizeof(err)), -EINVAL);
		CHECK(strstr(err, "bad layer URL") != NULL);
	}
	const char *good[] = {"redis://127.0.0.1", "redis://:secret@localhost:6380/2",
			      "redis://user:pw@[::1]:6379/0", "unix:///run/redis.sock?db=3"};
	for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
		struct laurel_layer_options o = {.urls = &good[i], .nurls = 1};
		struct laurel_layer *l = NULL;
		CHECK_EQ(laurel_layer_new(&l, &o, NULL, 0), 0);
		laurel_layer_free(l);
	}
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s CATALOG\n", argv[0]);
		return 2;
	}
	nvectors = test_load_vectors(argv[1], vectors, ARRAY_SIZE(vectors));
	struct test_redis rs[3];
	for (int i = 0; i < 3; i++)
		if (test_redis_start(&rs[i]) < 0)
			return 1;
	test_urls();
	test_layout(&rs[0]);
	test_python_compat(&rs[0]);
	test_answer_lost(&rs[0]);
	test_sharding(rs);
	test_sharded_blocking(rs);
	test_big_group(&rs[1]);
	test_outage(&rs[2]);
	test_history_restart(&rs[2]);
	for (int i = 0; i < 3; i++)
		test_redis_cleanup(&rs[i]);
	test_free_vectors(vectors, nvectors);
	return test_done();
}
