/* The asgi.delay service (worker/delay.h) on the in-memory layer: what a delay message must hold
 * (and the bad ones dropped and counted), the content delivered as it was to its channel once
 * due and not before, the earliest first, the next due time, more due messages than one batch, a
 * full channel, the counters, and the service running in a thread of its own until it is told
 * to stop. */
#include "tests/lib/test.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "common/util.h"
#include "laurel/layer.h"
#include "worker/delay.h"
#include "worker/stats.h"

static struct laurel_layer *layer;

/* {channel, delay, content: {text}}; a NULL channel, a negative delay or a NULL text leaves
 * that key out. */
static struct laurel_msg *delay_msg(const char *channel, int64_t delay, const char *text)
{
	struct laurel_msg *m = laurel_msg_new();
	if (channel)
		laurel_msg_set_text(m, "channel", channel);
	if (delay >= 0)
		laurel_msg_set_int(m, "delay", delay);
	if (text) {
		struct laurel_value *c = laurel_map_put(m, laurel_msg_root(m), "content");
		laurel_value_set_map(m, c, 1);
		laurel_value_set_text(m, laurel_map_put(m, c, "text"), text, strlen(text));
	}
	return m;
}

static int accept_msg(struct delay *d, struct laurel_msg *m)
{
	int rc = delay_accept(d, m);
	laurel_msg_free(m);
	return rc;
}

/* The "text" values of the messages waiting on channel, joined with ',' ("" if none). */
static const char *texts(const char *channel)
{
	static char out[4096];
	struct laurel_received r;
	size_t n = 0;
	out[0] = '\0';
	while (test_take(layer, channel, &r)) {
		const char *t = laurel_msg_get_text(r.msg, "text", NULL);
		n += (size_t)snprintf(out + n, sizeof(out) - n, "%s%s", n ? "," : "", t ? t : "?");
		laurel_received_fini(&r);
	}
	return out;
}

static void test_new(void)
{
	struct delay *d = NULL;
	char err[256] = "";
	const char *url = "memory://";
	struct laurel_layer_options o = {.urls = &url, .nurls = 1};
	CHECK_EQ(delay_new(&d, &o, err, sizeof(err)), -EINVAL);
	CHECK(d == NULL);
	CHECK(strstr(err, "needs a Redis layer") != NULL);
	delay_free(NULL);

	delay_new_shared(&d, layer);
	CHECK(delay_layer(d) == layer);
	delay_free(d); /* the layer is borrowed: it stays */
	struct laurel_msg *m = delay_msg(NULL, -1, NULL);
	laurel_msg_set_text(m, "text", "here");
	CHECK_EQ(laurel_layer_send(layer, "still.there", m), 0);
	laurel_msg_free(m);
	CHECK_STR(texts("still.there"), "here");
}

static void test_bad(struct delay *d, struct wstats_proc *st)
{
	int64_t next = 0;
	struct laurel_msg *m;
	CHECK_EQ(accept_msg(d, delay_msg(NULL, 10, "x")), -EINVAL);	  /* no channel */
	CHECK_EQ(accept_msg(d, delay_msg("bad name", 10, "x")), -EINVAL); /* not a channel */
	m = delay_msg(NULL, 10, "x");
	laurel_msg_set_int(m, "channel", 7);
	CHECK_EQ(accept_msg(d, m), -EINVAL);			       /* channel not text */
	CHECK_EQ(accept_msg(d, delay_msg("to.ch", -1, "x")), -EINVAL); /* no delay */
	m = delay_msg("to.ch", -1, "x");
	laurel_msg_set_text(m, "delay", "10");
	CHECK_EQ(accept_msg(d, m), -EINVAL); /* delay not an integer */
	m = delay_msg("to.ch", -1, "x");
	laurel_msg_set_double(m, "delay", 1.5);
	CHECK_EQ(accept_msg(d, m), -EINVAL); /* nor a float */
	m = delay_msg("to.ch", -1, "x");
	laurel_msg_set_int(m, "delay", -1);
	CHECK_EQ(accept_msg(d, m), -EINVAL); /* negative */
	int64_t ten_years = INT64_C(10) * 365 * 86400 * 1000;
	CHECK_EQ(accept_msg(d, delay_msg("to.ch", ten_years + 1, "x")), -EINVAL);
	CHECK_EQ(accept_msg(d, delay_msg("to.ch", 10, NULL)), -EINVAL); /* no content */
	m = delay_msg("to.ch", 10, NULL);
	laurel_msg_set_text(m, "content", "not a map");
	CHECK_EQ(accept_msg(d, m), -EINVAL);
	CHECK_EQ(st->delayed_rejected, 10);
	CHECK_EQ(st->delayed_accepted, 0);
	/* None of them was stored. */
	CHECK_EQ(delay_deliver(d, delay_now_ms() + 2 * ten_years, &next), 0);
	CHECK_EQ(next, -1);

	/* Ten years exactly is taken; an empty content map too. */
	CHECK_EQ(accept_msg(d, delay_msg("far.ch", ten_years, "far")), 0);
	m = delay_msg("far.ch", 0, NULL);
	laurel_value_set_map(m, laurel_map_put(m, laurel_msg_root(m), "content"), 0);
	CHECK_EQ(accept_msg(d, m), 0);
	CHECK_EQ(st->delayed_accepted, 2);
	CHECK_EQ(delay_deliver(d, delay_now_ms() + 2 * ten_years, &next), 2);
	CHECK_EQ(next, -1);
	CHECK_STR(texts("far.ch"), "?,far");
	st->delayed_accepted = st->delayed_sent = 0;
}

static void test_due(struct delay *d, struct wstats_proc *st)
{
	int64_t next = 0;
	int64_t t0 = delay_now_ms();
	CHECK_EQ(accept_msg(d, delay_msg("due.ch", 5000, "later")), 0);
	CHECK_EQ(accept_msg(d, delay_msg("due.ch", 2000, "sooner")), 0);
	CHECK_EQ(accept_msg(d, delay_msg("due.now", 0, "now")), 0);
	int64_t t1 = delay_now_ms();
	CHECK_EQ(st->delayed_accepted, 3);

	/* Due at once: only the one with no delay, and the next due time is the sooner one's. */
	CHECK_EQ(delay_deliver(d, t1, &next), 1);
	CHECK_STR(texts("due.now"), "now");
	CHECK_STR(texts("due.ch"), "");
	CHECK_INT(next, >=, t0 + 2000);
	CHECK_INT(next, <=, t1 + 2000);
	/* Just before it: nothing. */
	CHECK_EQ(delay_deliver(d, next - 1, &next), 0);
	CHECK_INT(next, <=, t1 + 2000);
	/* Once both are due they go out together, the earliest first, with their content only. */
	CHECK_EQ(delay_deliver(d, t1 + 5000, &next), 2);
	CHECK_EQ(next, -1);
	struct laurel_received r = {0};
	CHECK(test_take(layer, "due.ch", &r));
	if (r.msg) {
		CHECK_STR(laurel_msg_get_text(r.msg, "text", NULL), "sooner");
		CHECK_EQ(laurel_msg_croot(r.msg)->u.map.len, 1);
		laurel_received_fini(&r);
	}
	CHECK_STR(texts("due.ch"), "later");
	CHECK_EQ(st->delayed_sent, 3);
	/* Taken once: nothing is left to send again. */
	CHECK_EQ(delay_deliver(d, t1 + 10000, &next), 0);
	CHECK_EQ(next, -1);
}

static void test_batches(struct delay *d, struct wstats_proc *st)
{
	/* 150 due (more than two batches of 64) go out in one call, in due order. */
	enum { N = 150 };
	int64_t next = 0;
	char text[16];
	st->delayed_sent = 0;
	for (int i = N - 1; i >= 0; i--) {
		snprintf(text, sizeof(text), "%d", i);
		CHECK_EQ(accept_msg(d, delay_msg(i % 2 ? "odd.ch" : "even.ch", i, text)), 0);
	}
	CHECK_EQ(delay_deliver(d, delay_now_ms() + N, &next), N);
	CHECK_EQ(next, -1);
	CHECK_EQ(st->delayed_sent, N);
	const char *odd = texts("odd.ch");
	CHECK(strncmp(odd, "1,3,5,7,", 8) == 0);
	CHECK(strlen(odd) > 0 && strcmp(odd + strlen(odd) - 7, "147,149") == 0);
	const char *even = texts("even.ch");
	CHECK(strncmp(even, "0,2,4,", 6) == 0);
}

static void test_full(struct delay *d, struct wstats_proc *st)
{
	/* The channel holds 2 (its capacity): the third is retried for the consumer API's full
	 * wait, then dropped, and not counted as sent. */
	int64_t next = 0;
	st->delayed_sent = 0;
	static const char *const abc[] = {"a", "b", "c"};
	for (int i = 0; i < 3; i++)
		CHECK_EQ(accept_msg(d, delay_msg("small.ch", 0, abc[i])), 0);
	int64_t t0 = util_now_ms();
	CHECK_EQ(delay_deliver(d, delay_now_ms(), &next), 2);
	CHECK_INT(util_now_ms() - t0, >=, 1000);
	CHECK_EQ(st->delayed_sent, 2);
	CHECK_STR(texts("small.ch"), "a,b");
}

struct runner {
	struct delay *d;
	volatile sig_atomic_t stop;
	int rc;
};

static void *run_thread(void *arg)
{
	struct runner *r = arg;
	r->rc = delay_run(r->d, &r->stop);
	return NULL;
}

static void test_run(struct delay *d)
{
	/* Stopped before it starts: returns at once. */
	volatile sig_atomic_t stop = 1;
	CHECK_EQ(delay_run(d, &stop), 0);

	/* In a thread: a message sent to asgi.delay comes out on its channel when due. */
	struct runner r = {.d = d};
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, run_thread, &r), 0);
	struct laurel_msg *m = delay_msg("run.ch", 300, "ran");
	int64_t t0 = delay_now_ms();
	CHECK_EQ(laurel_layer_send(layer, DELAY_CHANNEL, m), 0);
	laurel_msg_free(m);
	const char *chans[] = {"run.ch"};
	struct laurel_received got;
	size_t n = 0;
	CHECK_EQ(laurel_layer_receive(layer, chans, 1, 5000, &got, 1, &n), 0);
	CHECK_EQ(n, 1);
	if (n) {
		CHECK_INT(delay_now_ms() - t0, >=, 300);
		CHECK_STR(laurel_msg_get_text(got.msg, "text", NULL), "ran");
		laurel_received_fini(&got);
	}
	int64_t s0 = util_now_ms();
	r.stop = 1;
	pthread_join(t, NULL);
	CHECK_EQ(r.rc, 0);
	CHECK_INT(util_now_ms() - s0, <=, 3000); /* the stop flag is seen within a second or so */
}

int main(void)
{
	static const struct laurel_capacity caps[] = {{.pattern = "small.ch", .capacity = 2}};
	layer = test_memory_layer(caps, 1);
	CHECK_INT(delay_now_ms() / 1000 - (int64_t)time(NULL), <=, 1);
	test_new();
	struct delay *d;
	struct wstats_proc st = {0};
	delay_new_shared(&d, layer);
	delay_set_stats(d, &st);
	CHECK(st.delay);
	test_bad(d, &st);
	test_due(d, &st);
	test_batches(d, &st);
	test_full(d, &st);
	delay_set_stats(d, NULL);
	test_run(d);
	delay_free(d);
	laurel_layer_free(layer);
	return test_done();
}
