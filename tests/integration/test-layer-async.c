/* The asynchronous Redis client against a real redis-server: listening without polling, sending
 * with callbacks, multicast to an announced interface, direct entries (and asgi_redis's body keys
 * beside them), capacity, cancellation, and Redis going away and coming back under a running
 * event loop. */
#include "common/buf.h"
#include "common/codec.h"
#include "common/layer_async.h"
#include "common/util.h"
#include "laurel/layer.h"
#include "tests/lib/test.h"

#include <errno.h>
#include <pthread.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct event_base *base;

struct inbox {
	size_t count;
	size_t recipients;
	int64_t last_n;
	bool in_order;
	char last_channel[LAUREL_NAME_MAX + 1];
	size_t stop_at;
};

static void on_message(struct laurel_received *r, void *arg)
{
	struct inbox *in = arg;
	int64_t n = -1;
	laurel_msg_get_int(r->msg, "n", &n);
	if (n != in->last_n + 1 && r->nrecipients == 0)
		in->in_order = false;
	in->last_n = n;
	in->count++;
	in->recipients += r->nrecipients;
	snprintf(in->last_channel, sizeof(in->last_channel), "%s", r->channel);
	if (in->count >= in->stop_at)
		event_base_loopbreak(base);
}

struct results {
	size_t ok, full, notconn, canceled, other;
	size_t expected;
};

static void on_done(int status, void *arg)
{
	struct results *res = arg;
	if (status == 0)
		res->ok++;
	else if (status == LAUREL_FULL)
		res->full++;
	else if (status == -ENOTCONN)
		res->notconn++;
	else if (status == -ECANCELED)
		res->canceled++;
	else
		res->other++;
	if (res->ok + res->full + res->notconn + res->canceled + res->other >= res->expected)
		event_base_loopbreak(base);
}

static void on_run_timeout(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(base);
}

/* Runs the loop for ms, or until a callback breaks it; its timer goes with it (a loopexit left
 * pending would cut a later run short). */
static void run_for(int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	struct event *t = evtimer_new(base, on_run_timeout, NULL);
	evtimer_add(t, &tv);
	event_base_dispatch(base);
	event_free(t);
}

static struct laurel_layer *sync_layer(struct test_redis *r)
{
	const char *url = r->url;
	struct laurel_layer_options o = {.urls = &url, .nurls = 1, .capacity = 10000};
	struct laurel_layer *l = NULL;
	CHECK_EQ(laurel_layer_new(&l, &o, NULL, 0), 0);
	return l;
}

static long long commands_processed(struct test_redis *r)
{
	const char *info = test_redis_cmd(r, "INFO stats");
	const char *p = strstr(info, "total_commands_processed:");
	return p ? atoll(p + strlen("total_commands_processed:")) : -1;
}

static long long evalsha_calls(struct test_redis *r)
{
	const char *info = test_redis_cmd(r, "INFO commandstats");
	const char *p = strstr(info, "cmdstat_evalsha:calls=");
	return p ? atoll(p + strlen("cmdstat_evalsha:calls=")) : 0;
}

struct local_sender {
	struct laurel_layer *l;
	int n;
};

static void *local_send_thread(void *arg)
{
	struct local_sender *ls = arg;
	struct laurel_msg *m = laurel_msg_new();
	for (int i = 0; i < ls->n; i++) {
		char chan[64];
		snprintf(chan, sizeof(chan), "iface.local!c%d", i);
		laurel_msg_set_int(m, "n", i);
		while (laurel_layer_send(ls->l, chan, m) == LAUREL_FULL)
			usleep(1000);
	}
	laurel_msg_free(m);
	return NULL;
}

/* Direct entries (docs/layer.md): a send to the process queue of an announced interface is pushed
 * as the message itself, with no body key; one to a prefix nobody announced keeps asgi_redis's
 * body key, and so does a Python peer's send to a live interface. The reader takes all of them in
 * order and skips a direct entry older than the expiry, as a body key would have expired. */
static void test_direct(struct test_redis *r, struct layer_async *a, struct laurel_layer *l)
{
	const char *queue = "asgi:iface.direct.QWERTYUIOP!";
	redisContext *c = redisConnect("127.0.0.1", r->port);
	CHECK(c && !c->err);
	struct laurel_msg *m = laurel_msg_new();

	/* Nobody announced the prefix: asgi_redis's layout, a body key on the queue. */
	laurel_msg_set_int(m, "n", 0);
	CHECK_EQ(laurel_layer_send(l, "iface.direct.QWERTYUIOP!a", m), 0);
	redisReply *e = redisCommand(c, "LINDEX %s 0", queue);
	CHECK(e && e->type == REDIS_REPLY_STRING && e->len == 37 && !memcmp(e->str, "asgi:", 5));
	if (e && e->type == REDIS_REPLY_STRING)
		CHECK_STR(test_redis_cmd(r, "EXISTS %s", e->str), "1");
	freeReplyObject(e);

	/* Announced: the message itself, after a NUL and the time it was sent. */
	CHECK_EQ(layer_async_announce(a, "iface.direct.QWERTYUIOP!", 30), 0);
	run_for(300);
	laurel_msg_set_int(m, "n", 1);
	long long keys = atoll(test_redis_cmd(r, "DBSIZE"));
	CHECK_EQ(laurel_layer_send(l, "iface.direct.QWERTYUIOP!b", m), 0);
	CHECK_EQ(atoll(test_redis_cmd(r, "DBSIZE")), keys); /* no body key, no new key at all */
	e = redisCommand(c, "LINDEX %s 1", queue);
	CHECK(e && e->type == REDIS_REPLY_STRING && e->len > 16 && e->str[0] == '\0');
	char *nul = e && e->len > 1 ? memchr(e->str + 1, '\0', e->len - 1) : NULL;
	CHECK(nul != NULL);
	long long sent = e ? atoll(e->str + 1) : 0;
	CHECK_INT(llabs(sent - (long long)(util_wall_time() * 1000)), <, 5000);

	/* A Python peer's send to the live interface (its own script, a body key). */
	laurel_msg_set_int(m, "n", 2);
	laurel_msg_set_text(m, "__asgi_channel__", "iface.direct.QWERTYUIOP!c");
	struct buf b;
	buf_init(&b);
	codec_encode(m, NULL, &b);
	CHECK_EQ(test_asgi_send(c, "asgi:0123456789abcdef0123456789abcdef", queue, b.data, b.len), 0);
	buf_fini(&b);
	laurel_map_remove(laurel_msg_root(m), "__asgi_channel__");

	/* A direct entry sent 61 s ago (the expiry is 60 s): skipped. Then one more, current. */
	if (e && nul) {
		size_t plen = e->len - (size_t)(nul + 1 - e->str);
		char *old = xmalloc(plen + 32);
		int h = snprintf(old, 32, "%c%lld", 0, sent - 61000);
		memcpy(old + h, nul, plen + 1);
		freeReplyObject(redisCommand(c, "RPUSH %s %b", queue, old, (size_t)h + 1 + plen));
		free(old);
	}
	/* The age of the oldest message, from a direct entry's own time (it has no TTL). */
	if (e && nul) {
		char aged[40];
		int h = snprintf(aged, sizeof(aged), "%c%lld%c%c", 0, sent - 7000, 0, 0x80);
		freeReplyObject(redisCommand(c, "RPUSH asgi:iface.age.X! %b", aged, (size_t)h));
		struct laurel_stats st;
		CHECK_EQ(laurel_layer_stats(l, "iface.age.X!", &st), 0);
		CHECK_EQ(st.messages_pending, 1);
		CHECK_INT(st.messages_max_age, >=, 6);
		CHECK_INT(st.messages_max_age, <=, 9);
	}
	freeReplyObject(e);
	laurel_msg_set_int(m, "n", 3);
	CHECK_EQ(laurel_layer_send(l, "iface.direct.QWERTYUIOP!d", m), 0);
	CHECK_STR(test_redis_cmd(r, "LLEN %s", queue), "5");

	static struct inbox in; /* the listener outlives this function */
	in = (struct inbox){.last_n = -1, .in_order = true, .stop_at = 4};
	CHECK_EQ(layer_async_listen(a, "iface.direct.QWERTYUIOP!", on_message, &in), 0);
	run_for(3000);
	CHECK_EQ(in.count, 4);
	CHECK(in.in_order);
	CHECK_EQ(in.last_n, 3);
	CHECK_STR(in.last_channel, "iface.direct.QWERTYUIOP!d");
	CHECK_STR(test_redis_cmd(r, "LLEN %s", queue), "0");
	CHECK_STR(test_redis_cmd(r, "KEYS asgi:0123456789abcdef*"), "");

	/* A single direct entry wakes the idle listener at once (BLPOP hands it over whole). */
	in.stop_at = in.count + 1;
	int64_t t0 = util_now_ms();
	laurel_msg_set_int(m, "n", 4);
	CHECK_EQ(laurel_layer_send(l, "iface.direct.QWERTYUIOP!e", m), 0);
	run_for(2000);
	CHECK_EQ(in.count, 5);
	CHECK_INT(util_now_ms() - t0, <, 100);
	CHECK_STR(in.last_channel, "iface.direct.QWERTYUIOP!e");

	/* A group send gathers the members of an interface the sender knows to be live (its view
	 * is at most a second old) into one multicast message, which the script only pushes:
	 * directly while the interface is announced, with a body key once it is not (withdrawn
	 * within that second: still one message, which such an interface could still read). */
	for (int i = 0; i < 3; i++) {
		char chan[64];
		snprintf(chan, sizeof(chan), "iface.direct.QWERTYUIOP!g%d", i);
		CHECK_EQ(laurel_layer_group_add(l, "direct-room", chan), 0);
	}
	usleep(1100 * 1000); /* the sender's view of the live interfaces is read again */
	size_t delivered = 0, recipients = in.recipients;
	in.stop_at = in.count + 1;
	CHECK_EQ(laurel_layer_group_send(l, "direct-room", m, &delivered), 0);
	CHECK_EQ(delivered, 3);
	run_for(2000);
	CHECK_EQ(in.count, 6);
	CHECK_EQ(in.recipients - recipients, 3);
	struct results wd = {.expected = 1};
	CHECK_EQ(layer_async_withdraw(a, "iface.direct.QWERTYUIOP!", on_done, &wd), 0);
	run_for(500);
	CHECK_EQ(wd.ok, 1);
	in.stop_at = in.count + 1;
	CHECK_EQ(laurel_layer_group_send(l, "direct-room", m, &delivered), 0);
	CHECK_EQ(delivered, 3);
	run_for(2000);
	CHECK_EQ(in.count, 7); /* one message, not three */
	CHECK_EQ(in.recipients - recipients, 6);
	laurel_msg_free(m);
	redisFree(c);
}

/* The same client over a shared in-memory layer (the development server). */
static void test_local(void)
{
	const char *mem = "memory://";
	struct laurel_layer_options o = {.urls = &mem, .nurls = 1};
	struct laurel_layer *shared = NULL;
	CHECK_EQ(laurel_layer_new(&shared, &o, NULL, 0), 0);
	struct layer_async *a = NULL;
	CHECK_EQ(layer_async_new_shared(&a, base, shared), 0);
	CHECK_EQ(layer_async_connected(a), 1);

	struct inbox in = {.last_n = -1, .in_order = true, .stop_at = 2000};
	CHECK_EQ(layer_async_listen(a, "iface.local!", on_message, &in), 0);
	struct local_sender ls = {.l = shared, .n = 2000};
	pthread_t t;
	pthread_create(&t, NULL, local_send_thread, &ls);
	run_for(5000);
	pthread_join(t, NULL);
	CHECK_EQ(in.count, 2000);
	CHECK(in.in_order);

	struct results res = {.expected = 10};
	struct laurel_msg *m = laurel_msg_new();
	for (int i = 0; i < 10; i++) {
		laurel_msg_set_int(m, "n", i);
		CHECK_EQ(layer_async_send(a, "local.work", m, on_done, &res), 0);
	}
	/* Callbacks never fire inside the call. */
	CHECK_EQ(res.ok, 0);
	run_for(1000);
	CHECK_EQ(res.ok, 10);
	const char *work[] = {"local.work"};
	struct laurel_received got[16];
	size_t n = 0;
	CHECK_EQ(laurel_layer_receive(shared, work, 1, 0, got, 16, &n), 0);
	CHECK_EQ(n, 10);
	for (size_t i = 0; i < n; i++)
		laurel_received_fini(&got[i]);

	CHECK_EQ(layer_async_announce(a, "iface.local!", 30), 0);
	char **ifs;
	size_t nifs;
	CHECK_EQ(laurel_layer_interfaces(shared, &ifs, &nifs), 0);
	CHECK_EQ(nifs, 1);
	laurel_strv_free(ifs);

	struct results canc = {.expected = 1000};
	CHECK_EQ(layer_async_send(a, "local.work", m, on_done, &canc), 0);
	layer_async_free(a);
	CHECK_EQ(canc.canceled, 1);
	laurel_msg_free(m);
	laurel_layer_free(shared);
}

int main(void)
{
	struct test_redis r;
	if (test_redis_start(&r) < 0)
		return 1;
	base = event_base_new();
	const char *url = r.url;
	struct laurel_layer_options o = {.urls = &url, .nurls = 1, .capacity = 10000};
	struct layer_async *a = NULL;
	char err[256];
	CHECK_EQ(layer_async_new(&a, base, &o, err, sizeof(err)), 0);
	struct laurel_layer *l = sync_layer(&r);

	/* Listening on a process channel: 1000 messages from another client, in order. */
	struct inbox in = {.last_n = -1, .in_order = true, .stop_at = 1000};
	CHECK_EQ(layer_async_listen(a, "iface.response.ABCDEFGHIJ!", on_message, &in), 0);
	CHECK_EQ(layer_async_listen(a, "bad name", on_message, &in), -EINVAL);
	CHECK_EQ(layer_async_listen(a, "iface.response.X!local", on_message, &in), -EINVAL);
	run_for(200);
	struct laurel_msg *m = laurel_msg_new();
	for (int i = 0; i < 1000; i++) {
		char chan[64];
		snprintf(chan, sizeof(chan), "iface.response.ABCDEFGHIJ!c%d", i);
		laurel_msg_set_int(m, "n", i);
		CHECK_EQ(laurel_layer_send(l, chan, m), 0);
	}
	run_for(5000);
	CHECK_EQ(in.count, 1000);
	CHECK(in.in_order);
	CHECK_STR(in.last_channel, "iface.response.ABCDEFGHIJ!c999");

	/* An idle listener sends no commands at all: it sits in BLPOP. */
	long long before = commands_processed(&r);
	run_for(1000);
	long long after = commands_processed(&r);
	CHECK_INT(after - before, <=, 2); /* the two INFO commands themselves */

	/* A single message wakes it at once. */
	in.stop_at = in.count + 1;
	int64_t t0 = util_now_ms();
	laurel_msg_set_int(m, "n", 1000);
	CHECK_EQ(laurel_layer_send(l, "iface.response.ABCDEFGHIJ!late", m), 0);
	run_for(2000);
	CHECK_EQ(in.count, 1001);
	CHECK_INT(util_now_ms() - t0, <, 100);

	/* Sending with callbacks: 500 messages, then read back with the synchronous client. The
	 * sends of one loop iteration go out together: one script call per 256 messages. */
	struct results res = {.expected = 500};
	long long calls = evalsha_calls(&r);
	for (int i = 0; i < 500; i++) {
		laurel_msg_set_int(m, "n", i);
		CHECK_EQ(layer_async_send(a, "async.work", m, on_done, &res), 0);
	}
	run_for(5000);
	CHECK_EQ(res.ok, 500);
	CHECK_EQ(evalsha_calls(&r) - calls, 2);
	size_t total = 0;
	const char *work[] = {"async.work"};
	for (;;) {
		struct laurel_received got[100];
		size_t n = 0;
		CHECK_EQ(laurel_layer_receive(l, work, 1, 0, got, 100, &n), 0);
		for (size_t i = 0; i < n; i++) {
			int64_t v = -1;
			laurel_msg_get_int(got[i].msg, "n", &v);
			CHECK_EQ(v, (int64_t)(total + i));
			laurel_received_fini(&got[i]);
		}
		total += n;
		if (n == 0)
			break;
	}
	CHECK_EQ(total, 500);
	CHECK_EQ(layer_async_send(a, "bad name", m, on_done, &res), -EINVAL);

	/* Capacity: a full channel answers LAUREL_FULL through the callback. */
	struct laurel_capacity caps[] = {{"tiny", 2}};
	struct laurel_layer_options o2 = o;
	o2.capacities = caps;
	o2.ncapacities = 1;
	struct layer_async *a2;
	CHECK_EQ(layer_async_new(&a2, base, &o2, NULL, 0), 0);
	struct results full = {.expected = 3};
	for (int i = 0; i < 3; i++)
		CHECK_EQ(layer_async_send(a2, "tiny", m, on_done, &full), 0);
	run_for(3000);
	CHECK_EQ(full.ok, 2);
	CHECK_EQ(full.full, 1);

	/* Freeing with commands in flight: each callback fires once, with -ECANCELED. */
	struct results canc = {.expected = 1000};
	for (int i = 0; i < 10; i++)
		CHECK_EQ(layer_async_send(a2, "cancel.me", m, on_done, &canc), 0);
	layer_async_free(a2);
	CHECK_EQ(canc.canceled, 10);
	CHECK_EQ(canc.ok + canc.other, 0);

	/* Multicast: an announced interface gets one message for all its members in a group. */
	CHECK_EQ(layer_async_announce(a, "iface.response.ABCDEFGHIJ!", 30), 0);
	run_for(200);
	char **ifs;
	size_t nifs;
	CHECK_EQ(laurel_layer_interfaces(l, &ifs, &nifs), 0);
	CHECK_EQ(nifs, 1);
	if (nifs)
		CHECK_STR(ifs[0], "iface.response.ABCDEFGHIJ!");
	laurel_strv_free(ifs);
	for (int i = 0; i < 50; i++) {
		char chan[64];
		snprintf(chan, sizeof(chan), "iface.response.ABCDEFGHIJ!m%d", i);
		CHECK_EQ(laurel_layer_group_add(l, "async-room", chan), 0);
	}
	size_t before_count = in.count;
	in.stop_at = in.count + 1;
	size_t delivered = 0;
	CHECK_EQ(laurel_layer_group_send(l, "async-room", m, &delivered), 0);
	CHECK_EQ(delivered, 50);
	run_for(2000);
	CHECK_EQ(in.count - before_count, 1);
	CHECK_EQ(in.recipients, 50);
	struct results wd = {.expected = 1};
	CHECK_EQ(layer_async_withdraw(a, "iface.response.ABCDEFGHIJ!", on_done, &wd), 0);
	run_for(2000);
	CHECK_EQ(wd.ok, 1);
	CHECK_EQ(laurel_layer_interfaces(l, &ifs, &nifs), 0);
	CHECK_EQ(nifs, 0);
	laurel_strv_free(ifs);

	test_direct(&r, a, l);

	/* Redis goes away under the running loop: sends fail at once, and when it is back the
	 * listener resumes by itself and the announcement-free client sends again. */
	test_redis_stop(&r, 1);
	run_for(300);
	CHECK_EQ(layer_async_connected(a), 0);
	CHECK_EQ(layer_async_send(a, "async.work", m, on_done, &res), -ENOTCONN);
	CHECK_EQ(test_redis_restart(&r), 0);
	t0 = util_now_ms();
	while (layer_async_connected(a) == 0 && util_now_ms() - t0 < 8000)
		run_for(50);
	CHECK_EQ(layer_async_connected(a), 1);
	printf("reconnected %lld ms after Redis came back\n", (long long)(util_now_ms() - t0));
	/* The listener connection has its own backoff; the wait below covers it. */
	struct laurel_layer *l3 = sync_layer(&r);
	in.stop_at = in.count + 1;
	before_count = in.count;
	laurel_msg_set_int(m, "n", 0);
	int rc = -1;
	t0 = util_now_ms();
	while ((rc = laurel_layer_send(l3, "iface.response.ABCDEFGHIJ!again", m)) != 0 &&
	       util_now_ms() - t0 < 5000)
		usleep(50000);
	CHECK_EQ(rc, 0);
	run_for(8000);
	CHECK_EQ(in.count - before_count, 1);
	struct results again = {.expected = 1};
	CHECK_EQ(layer_async_send(a, "async.work", m, on_done, &again), 0);
	run_for(2000);
	CHECK_EQ(again.ok, 1);

	laurel_layer_free(l3);
	laurel_msg_free(m);
	laurel_layer_free(l);
	layer_async_free(a);
	test_local();
	event_base_free(base);
	test_redis_cleanup(&r);
	return test_done();
}
