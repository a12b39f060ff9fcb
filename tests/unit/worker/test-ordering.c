/* enforce_ordering (worker/ordering.h) on the in-memory layer: the wait channel's name and its
 * limits, messages refused (no order, no reply channel, a turn that has passed), messages in
 * order run at once, early ones parked with their original channel and moved back when their
 * predecessor is done, gaps, a failed predecessor, held sends out before the next turn, more
 * waiting messages than one release batch, and a waiting message with no channel to go back to. */
#include "tests/lib/test.h"

#include <errno.h>
#include <stdlib.h>

#include "common/util.h"
#include "laurel/layer.h"
#include "worker/consumer.h"
#include "worker/ordering.h"

static struct laurel_layer *layer;

static struct laurel_msg *ordered(const char *reply, int64_t order)
{
	struct laurel_msg *m = laurel_msg_new();
	if (reply)
		laurel_msg_set_text(m, "reply_channel", reply);
	if (order >= 0)
		laurel_msg_set_int(m, "order", order);
	return m;
}

/* ordering_begin on a fresh context for m on channel; the context is finished unless keep is
 * given (then the caller runs ordering_done and consumer_ctx_fini). Frees m unless kept. */
static enum ordering_verdict begin(const char *channel, struct laurel_msg *m, int64_t *order,
				   struct laurel_ctx *keep)
{
	struct laurel_ctx local, *ctx = keep ? keep : &local;
	consumer_ctx_init(ctx, layer, channel, m, NULL);
	ctx->full_wait_ms = 0;
	enum ordering_verdict v = ordering_begin(ctx, order);
	if (!keep) {
		consumer_ctx_fini(ctx);
		laurel_msg_free(m);
	}
	return v;
}

/* Runs one message through begin and, if it is its turn, done: the worker's path for a consumer
 * that sends nothing. */
static enum ordering_verdict run(const char *channel, const char *reply, int64_t order)
{
	struct laurel_ctx ctx;
	struct laurel_msg *m = ordered(reply, order);
	int64_t got = -1;
	enum ordering_verdict v = begin(channel, m, &got, &ctx);
	if (v == ORDERING_RUN) {
		CHECK_EQ(got, order);
		ordering_done(&ctx, got);
	}
	consumer_ctx_fini(&ctx);
	laurel_msg_free(m);
	return v;
}

/* The next order recorded in reply's session (-1 if none). */
static int64_t next_order(const char *reply)
{
	struct laurel_msg *s = NULL;
	int64_t next = -1;
	if (laurel_layer_session_load(layer, reply, &s) == 0)
		laurel_msg_get_int(s, ORDERING_SESSION_KEY, &next);
	laurel_msg_free(s);
	return next;
}

/* Takes every message waiting on channel (a process channel "x!" for replies), in order: their
 * "order" values (or -1) into orders, and whether any still had "original_channel". Returns how
 * many. */
static size_t drain(const char *channel, int64_t *orders, size_t max, bool *had_original)
{
	struct laurel_received r;
	size_t n = 0;
	if (had_original)
		*had_original = false;
	while (test_take(layer, channel, &r)) {
		int64_t o = -1;
		laurel_msg_get_int(r.msg, "order", &o);
		if (n < max)
			orders[n] = o;
		n++;
		if (had_original && laurel_msg_get(r.msg, ORDERING_ORIGINAL_KEY))
			*had_original = true;
		laurel_received_fini(&r);
	}
	return n;
}

static void test_wait_channel(void)
{
	char wait[LAUREL_NAME_MAX + 1];
	CHECK_EQ(ordering_wait_channel("daphne.response.AbCdEfGhIj!kLmN", wait), 0);
	CHECK_STR(wait, "__wait__.daphne.response.AbCdEfGhIj?kLmN");
	/* A single-reader channel name keeps its '?'; a plain name is only prefixed. */
	CHECK_EQ(ordering_wait_channel("http.response?xy", wait), 0);
	CHECK_STR(wait, "__wait__.http.response?xy");
	CHECK_EQ(ordering_wait_channel("plain.reply", wait), 0);
	CHECK_STR(wait, "__wait__.plain.reply");

	/* The prefix is 9 characters: a reply channel of 90 fits in a name, 91 does not. */
	char name[LAUREL_NAME_MAX + 1];
	memset(name, 'a', 91);
	name[90] = '\0';
	CHECK_EQ(ordering_wait_channel(name, wait), 0);
	CHECK_EQ(strlen(wait), 99);
	name[90] = 'a';
	name[91] = '\0';
	CHECK_EQ(ordering_wait_channel(name, wait), -EINVAL);
	/* What is not a channel name does not make one. */
	CHECK_EQ(ordering_wait_channel("bad name!x", wait), -EINVAL);
}

static void test_refused(void)
{
	int64_t order = -1;
	/* No order, an order that is not an integer, no reply channel. */
	CHECK_EQ(begin("websocket.receive", ordered("rf!a", -1), &order, NULL), ORDERING_DROP);
	struct laurel_msg *m = ordered("rf!a", -1);
	laurel_msg_set_text(m, "order", "1");
	CHECK_EQ(begin("websocket.receive", m, &order, NULL), ORDERING_DROP);
	CHECK_EQ(begin("websocket.receive", ordered(NULL, 0), &order, NULL), ORDERING_DROP);
	/* A reply channel too long for its wait channel. */
	char name[LAUREL_NAME_MAX + 1];
	memset(name, 'r', 95);
	name[95] = '\0';
	CHECK_EQ(begin("websocket.receive", ordered(name, 3), &order, NULL), ORDERING_DROP);
	/* Nothing was recorded or parked for any of them. */
	CHECK_EQ(next_order("rf!a"), -1);
	CHECK_EQ(drain("__wait__.rf?a", NULL, 0, NULL), 0);
}

static void test_in_order(void)
{
	/* The connect is order 0: it runs first, and each next one runs at once. */
	CHECK_EQ(next_order("io!a"), -1);
	for (int64_t i = 0; i < 5; i++) {
		CHECK_EQ(run(i == 0 ? "websocket.connect" : "websocket.receive", "io!a", i),
			 ORDERING_RUN);
		CHECK_EQ(next_order("io!a"), i + 1);
	}
	CHECK_EQ(drain("__wait__.io?a", NULL, 0, NULL), 0);
	/* A turn that has passed never comes again: duplicates are dropped. */
	CHECK_EQ(run("websocket.receive", "io!a", 4), ORDERING_DROP);
	CHECK_EQ(run("websocket.receive", "io!a", 0), ORDERING_DROP);
	CHECK_EQ(next_order("io!a"), 5);
	/* Another connection keeps its own order. */
	CHECK_EQ(run("websocket.connect", "io!b", 0), ORDERING_RUN);
	CHECK_EQ(next_order("io!b"), 1);
	CHECK_EQ(next_order("io!a"), 5);
}

static void test_early(void)
{
	int64_t orders[8];
	bool original;
	/* 2 and 1 come before the connect: both wait, with the channel they came on. */
	CHECK_EQ(run("websocket.receive", "er!a", 2), ORDERING_WAITED);
	CHECK_EQ(run("websocket.receive", "er!a", 1), ORDERING_WAITED);
	CHECK_EQ(next_order("er!a"), -1);
	CHECK_EQ(run("websocket.connect", "er!a", 0), ORDERING_RUN);
	/* The connect's done moved both back to websocket.receive, as they came and without the
	 * bookkeeping key; the wait channel is empty. */
	CHECK_EQ(drain("__wait__.er?a", orders, 8, NULL), 0);
	CHECK_EQ(drain("websocket.receive", orders, 8, &original), 2);
	CHECK_EQ(orders[0], 2);
	CHECK_EQ(orders[1], 1);
	CHECK(!original);

	/* They come round again: 2 waits once more, 1 runs and releases it, then 2 runs. */
	CHECK_EQ(run("websocket.receive", "er!a", 2), ORDERING_WAITED);
	CHECK_EQ(run("websocket.receive", "er!a", 1), ORDERING_RUN);
	CHECK_EQ(next_order("er!a"), 2);
	CHECK_EQ(drain("websocket.receive", orders, 8, NULL), 1);
	CHECK_EQ(orders[0], 2);
	CHECK_EQ(run("websocket.receive", "er!a", 2), ORDERING_RUN);
	CHECK_EQ(next_order("er!a"), 3);

	/* A parked message keeps its original channel while it waits. */
	CHECK_EQ(run("websocket.disconnect", "er!a", 4), ORDERING_WAITED);
	struct laurel_received r = {0};
	CHECK(test_take(layer, "__wait__.er?a", &r));
	if (r.msg) {
		CHECK_STR(laurel_msg_get_text(r.msg, ORDERING_ORIGINAL_KEY, NULL),
			  "websocket.disconnect");
		int64_t o = -1;
		laurel_msg_get_int(r.msg, "order", &o);
		CHECK_EQ(o, 4);
		laurel_received_fini(&r);
	}
}

static void test_gap(void)
{
	int64_t orders[8];
	CHECK_EQ(run("websocket.connect", "gp!a", 0), ORDERING_RUN);
	/* 3 waits for 1 and 2: each done releases it, and it waits again until its turn. */
	CHECK_EQ(run("websocket.receive", "gp!a", 3), ORDERING_WAITED);
	CHECK_EQ(run("websocket.receive", "gp!a", 1), ORDERING_RUN);
	CHECK_EQ(drain("websocket.receive", orders, 8, NULL), 1);
	CHECK_EQ(orders[0], 3);
	CHECK_EQ(run("websocket.receive", "gp!a", 3), ORDERING_WAITED);
	/* A message that is never handed in holds its successors for good. */
	CHECK_EQ(drain("websocket.receive", orders, 8, NULL), 0);
	CHECK_EQ(next_order("gp!a"), 2);
	/* Its turn, once done (even after a failure: the worker calls done then too), lets the
	 * next one run. */
	CHECK_EQ(run("websocket.receive", "gp!a", 2), ORDERING_RUN);
	CHECK_EQ(drain("websocket.receive", orders, 8, NULL), 1);
	CHECK_EQ(run("websocket.receive", "gp!a", 3), ORDERING_RUN);
	CHECK_EQ(next_order("gp!a"), 4);
}

static void test_held_sends(void)
{
	int64_t orders[4];
	CHECK_EQ(run("websocket.connect", "hs!a", 0), ORDERING_RUN);
	CHECK_EQ(run("websocket.receive", "hs!a", 2), ORDERING_WAITED);
	/* Order 1 replies; done sends the reply, records 2, then releases 2. */
	struct laurel_ctx ctx;
	struct laurel_msg *m = ordered("hs!a", 1);
	int64_t order = -1;
	CHECK_EQ(begin("websocket.receive", m, &order, &ctx), ORDERING_RUN);
	CHECK_EQ(laurel_reply_text(&ctx, "one", 3), 0);
	CHECK_EQ(drain("hs!", orders, 4, NULL), 0); /* held until done */
	ordering_done(&ctx, order);
	consumer_ctx_fini(&ctx);
	laurel_msg_free(m);
	struct laurel_received r = {0};
	CHECK(test_take(layer, "hs!", &r));
	if (r.msg) {
		CHECK_STR(r.channel, "hs!a");
		CHECK_STR(laurel_msg_get_text(r.msg, "text", NULL), "one");
		laurel_received_fini(&r);
	}
	CHECK_EQ(next_order("hs!a"), 2);
	CHECK_EQ(drain("websocket.receive", orders, 4, NULL), 1);
	CHECK_EQ(orders[0], 2);

	/* A failed message: what it held is dropped (consumer_discard), its turn still ends. */
	m = ordered("hs!a", 2);
	CHECK_EQ(begin("websocket.receive", m, &order, &ctx), ORDERING_RUN);
	CHECK_EQ(laurel_reply_text(&ctx, "two", 3), 0);
	consumer_discard(&ctx);
	ordering_done(&ctx, order);
	consumer_ctx_fini(&ctx);
	laurel_msg_free(m);
	CHECK_EQ(drain("hs!", orders, 4, NULL), 0);
	CHECK_EQ(next_order("hs!a"), 3);
}

static void test_many_waiting(void)
{
	/* More than one release batch (16) waits: all of them go back, in the order they came. */
	enum { N = 40 };
	int64_t orders[N + 1];
	for (int64_t i = N; i >= 1; i--)
		CHECK_EQ(run("websocket.receive", "mw!a", i), ORDERING_WAITED);
	CHECK_EQ(run("websocket.connect", "mw!a", 0), ORDERING_RUN);
	CHECK_EQ(drain("__wait__.mw?a", orders, N, NULL), 0);
	size_t n = drain("websocket.receive", orders, N + 1, NULL);
	CHECK_EQ(n, N);
	int in_order = 1;
	for (size_t i = 0; i < n && i < N; i++)
		if (orders[i] != N - (int64_t)i)
			in_order = 0;
	CHECK(in_order);
}

static void test_no_original(void)
{
	/* A message on the wait channel without (or with a bad) original channel is dropped when
	 * released, and the others still go back. */
	struct laurel_msg *m = ordered("no!a", 5);
	CHECK_EQ(laurel_layer_send(layer, "__wait__.no?a", m), 0);
	laurel_msg_set_text(m, ORDERING_ORIGINAL_KEY, "bad name");
	CHECK_EQ(laurel_layer_send(layer, "__wait__.no?a", m), 0);
	laurel_msg_free(m);
	CHECK_EQ(run("websocket.receive", "no!a", 3), ORDERING_WAITED);
	CHECK_EQ(run("websocket.connect", "no!a", 0), ORDERING_RUN);
	int64_t orders[4];
	CHECK_EQ(drain("__wait__.no?a", orders, 4, NULL), 0);
	CHECK_EQ(drain("websocket.receive", orders, 4, NULL), 1);
	CHECK_EQ(orders[0], 3);
}

int main(void)
{
	layer = test_memory_layer(NULL, 0);
	test_wait_channel();
	test_refused();
	test_in_order();
	test_early();
	test_gap();
	test_held_sends();
	test_many_waiting();
	test_no_original();
	laurel_layer_free(layer);
	return test_done();
}
