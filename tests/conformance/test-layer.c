/* One conformance suite for every channel layer backend, through the public API only.
 *
 *   test-layer memory          the in-memory layer ("memory://"), one object shared by all threads
 *   test-layer redis           one redis-server started here
 *   test-layer redis-sharded   three redis-servers started here, used as shards
 *
 * A Redis layer object serves one thread, so threaded cases open one per thread there; the memory
 * layer is shared, which is the point of it.
 */
#include "laurel/layer.h"
#include "laurel/message.h"
#include "tests/lib/test.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static const char *urls[3];
static size_t nurls;
static bool memory;

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Opens a layer on the backend under test with the given options (NULL: defaults), flushed. */
static struct laurel_layer *open_layer(const struct laurel_layer_options *opts)
{
	struct laurel_layer_options o = {0};
	struct laurel_layer *l = NULL;
	char err[256];
	if (opts)
		o = *opts;
	o.urls = urls;
	o.nurls = nurls;
	int rc = laurel_layer_new(&l, &o, err, sizeof(err));
	CHECK_EQ(rc, 0);
	if (rc != 0) {
		fprintf(stderr, "laurel_layer_new: %s\n", err);
		exit(1);
	}
	rc = laurel_layer_flush(l);
	CHECK_EQ(rc, 0);
	if (rc != 0)
		fprintf(stderr, "flush: %s\n", laurel_layer_error(l));
	return l;
}

/* A layer for another thread: the same object for memory, a new one (same options) for Redis. */
static struct laurel_layer *peer_layer(struct laurel_layer *l, const struct laurel_layer_options *o)
{
	struct laurel_layer *p = NULL;
	struct laurel_layer_options opts = {0};
	char err[256];
	if (memory)
		return l;
	if (o)
		opts = *o;
	opts.urls = urls;
	opts.nurls = nurls;
	int rc = laurel_layer_new(&p, &opts, err, sizeof(err));
	CHECK_EQ(rc, 0);
	if (rc != 0) {
		fprintf(stderr, "laurel_layer_new: %s\n", err);
		exit(1);
	}
	return p;
}

static void peer_free(struct laurel_layer *l, struct laurel_layer *p)
{
	if (p != l)
		laurel_layer_free(p);
}

static struct laurel_msg *msg_n(int64_t n)
{
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_int(m, "n", n);
	return m;
}

static int64_t get_n(const struct laurel_msg *m)
{
	int64_t n = -1;
	if (!m || laurel_msg_get_int(m, "n", &n) != 0)
		return -1;
	return n;
}

static int send_n(struct laurel_layer *l, const char *channel, int64_t n)
{
	struct laurel_msg *m = msg_n(n);
	int rc = laurel_layer_send(l, channel, m);
	laurel_msg_free(m);
	return rc;
}

/* Receives on one channel without waiting. */
static size_t recv_now(struct laurel_layer *l, const char *channel, struct laurel_received *out,
		       size_t max)
{
	size_t got = 99;
	int rc = laurel_layer_receive(l, &channel, 1, 0, out, max, &got);
	CHECK_EQ(rc, 0);
	if (rc != 0) {
		fprintf(stderr, "receive on %s: %s\n", channel, laurel_layer_error(l));
		return 0;
	}
	return got;
}

/* Receives everything ready on channel (up to max, several calls, waiting briefly between them so
 * every shard is seen) into out. */
static size_t drain(struct laurel_layer *l, const char *channel, struct laurel_received *out,
		    size_t max)
{
	size_t total = 0;
	int empty = 0;
	while (total < max && empty < (nurls > 1 ? 2 : 1)) {
		size_t got = 0;
		int rc = laurel_layer_receive(l, &channel, 1, empty ? 100 : 0, out + total,
					      max - total, &got);
		CHECK_EQ(rc, 0);
		if (rc != 0)
			break;
		empty = got ? 0 : empty + 1;
		total += got;
	}
	return total;
}

static void fini_all(struct laurel_received *r, size_t n)
{
	for (size_t i = 0; i < n; i++)
		laurel_received_fini(&r[i]);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_int64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static bool strv_has(char **v, const char *s)
{
	for (; v && *v; v++)
		if (strcmp(*v, s) == 0)
			return true;
	return false;
}

/* --- Messages -------------------------------------------------------------------------------- */

static struct laurel_msg *every_type(void)
{
	static char big[70000];
	struct laurel_msg *m = laurel_msg_new();
	struct laurel_value *root = laurel_msg_root(m);
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)(i * 7);
	laurel_msg_set_text(m, "text", "h\xc3\xa9llo");
	laurel_msg_set_text(m, "empty", "");
	laurel_msg_set_bytes(m, "bytes", "\0\1\2\xff", 4);
	laurel_msg_set_bytes(m, "big", big, sizeof(big));
	laurel_msg_set_int(m, "small", 7);
	laurel_msg_set_int(m, "negative", -1234567890123LL);
	laurel_msg_set_int(m, "max", INT64_MAX);
	laurel_msg_set_int(m, "min", INT64_MIN);
	laurel_msg_set_double(m, "double", -3.25e100);
	laurel_msg_set_bool(m, "yes", true);
	laurel_msg_set_bool(m, "no", false);
	laurel_msg_set_nil(m, "nil");
	struct laurel_value *list = laurel_map_put(m, root, "headers");
	laurel_value_set_list(m, list, 2);
	struct laurel_value *pair = laurel_list_push(m, list);
	laurel_value_set_list(m, pair, 2);
	laurel_value_set_bytes(m, laurel_list_push(m, pair), "host", 4);
	laurel_value_set_bytes(m, laurel_list_push(m, pair), "example.com", 11);
	laurel_value_set_text(m, laurel_list_push(m, list), "mixed", 5);
	laurel_value_set_int(laurel_list_push(m, list), 42);
	struct laurel_value *map = laurel_map_put(m, root, "map");
	laurel_value_set_map(m, map, 2);
	laurel_value_set_double(laurel_map_put(m, map, "pi"), 3.5);
	struct laurel_value *inner = laurel_map_put(m, map, "inner");
	laurel_value_set_map(m, inner, 1);
	laurel_value_set_nil(laurel_map_put(m, inner, "deep"));
	laurel_value_set_list(m, laurel_map_put(m, root, "empty_list"), 0);
	laurel_value_set_map(m, laurel_map_put(m, root, "empty_map"), 0);
	return m;
}

static void test_round_trip(void)
{
	struct laurel_layer *l = open_layer(NULL);
	struct laurel_msg *m = every_type();
	struct laurel_received r[2];
	const char *chans[] = {"rt.normal", "rt.single?abc", "rt.proc!local"};
	const char *queues[] = {"rt.normal", "rt.single?abc", "rt.proc!"};

	for (size_t i = 0; i < ARRAY_SIZE(chans); i++) {
		CHECK_EQ(laurel_layer_send(l, chans[i], m), 0);
		size_t got = drain(l, queues[i], r, 2);
		CHECK_EQ(got, 1);
		if (got < 1)
			continue;
		CHECK_STR(r[0].channel, chans[i]);
		CHECK(r[0].msg != NULL);
		CHECK(laurel_value_equal(laurel_msg_croot(r[0].msg), laurel_msg_croot(m)));
		CHECK(laurel_msg_get(r[0].msg, "__asgi_channel__") == NULL);
		CHECK_EQ(r[0].nrecipients, 0);
		fini_all(r, got);
	}
	laurel_msg_free(m);
	laurel_layer_free(l);
}

/* Sends 100 messages and checks they come back in order (on sharded normal channels only as a
 * set: sends go round-robin over the shards, so only each shard's queue is FIFO). */
static void check_fifo(struct laurel_layer *l, const char *const *send_to, size_t nsend,
		       const char *queue, bool ordered)
{
	enum { N = 100 };
	struct laurel_received r[N + 1];
	int64_t got_n[N];
	for (int i = 0; i < N; i++)
		CHECK_EQ(send_n(l, send_to[i % nsend], i), 0);
	size_t got = drain(l, queue, r, N + 1);
	CHECK_EQ(got, N);
	for (size_t i = 0; i < got && i < N; i++) {
		got_n[i] = get_n(r[i].msg);
		if (got_n[i] >= 0)
			CHECK_STR(r[i].channel, send_to[got_n[i] % (int64_t)nsend]);
	}
	if (!ordered)
		qsort(got_n, got < N ? got : N, sizeof(got_n[0]), cmp_int64);
	for (size_t i = 0; i < got && i < N; i++)
		CHECK_EQ(got_n[i], i);
	fini_all(r, got);
}

static void test_fifo(void)
{
	struct laurel_layer_options o = {.capacity = 200};
	struct laurel_layer *l = open_layer(&o);
	const char *normal[] = {"fifo.normal"};
	const char *single[] = {"fifo.single?xyz"};
	const char *proc[] = {"fifo.proc!a", "fifo.proc!b"};
	check_fifo(l, normal, 1, "fifo.normal", nurls == 1);
	check_fifo(l, single, 1, "fifo.single?xyz", true);
	check_fifo(l, proc, 2, "fifo.proc!", true);
	laurel_layer_free(l);
}

static void test_timeouts(void)
{
	struct laurel_layer *l = open_layer(NULL);
	const char *chans[] = {"to.a", "to.b?x", "to.c!"};
	struct laurel_received r[1];
	size_t got = 99;

	int64_t t0 = now_ms();
	CHECK_EQ(laurel_layer_receive(l, chans, 3, 0, r, 1, &got), 0);
	int64_t t1 = now_ms();
	CHECK_EQ(got, 0);
	CHECK_INT(t1 - t0, <, 50);

	got = 99;
	CHECK_EQ(laurel_layer_receive(l, chans, 3, 200, r, 1, &got), 0);
	int64_t t2 = now_ms();
	CHECK_EQ(got, 0);
	CHECK_INT(t2 - t1, >=, 190);
	CHECK_INT(t2 - t1, <, 500);
	laurel_layer_free(l);
}

struct waker {
	struct laurel_layer *l;
	const char *channel;
	_Atomic int64_t received_at;
	size_t got;
	int rc;
	int64_t n;
};

static void *wake_reader(void *arg)
{
	struct waker *w = arg;
	struct laurel_received r[1];
	w->rc = laurel_layer_receive(w->l, &w->channel, 1, 5000, r, 1, &w->got);
	atomic_store(&w->received_at, now_ms());
	if (w->rc == 0 && w->got == 1) {
		w->n = get_n(r[0].msg);
		laurel_received_fini(&r[0]);
	}
	return NULL;
}

static void test_wake(void)
{
	struct laurel_layer *l = open_layer(NULL);
	const char *chans[] = {"wake.normal", "wake.single?abc", "wake.proc!"};
	const char *send_to[] = {"wake.normal", "wake.single?abc", "wake.proc!conn"};

	for (size_t i = 0; i < ARRAY_SIZE(chans); i++) {
		struct waker w = {.l = peer_layer(l, NULL), .channel = chans[i], .n = -1};
		pthread_t t;
		pthread_create(&t, NULL, wake_reader, &w);
		sleep_ms(150); /* let it block */
		int64_t sent_at = now_ms();
		CHECK_EQ(send_n(l, send_to[i], 7), 0);
		pthread_join(t, NULL);
		CHECK_EQ(w.rc, 0);
		CHECK_EQ(w.got, 1);
		CHECK_EQ(w.n, 7);
		CHECK_INT(atomic_load(&w.received_at) - sent_at, <, 100);
		peer_free(l, w.l);
	}
	laurel_layer_free(l);
}

struct pipe_writer {
	int fd;
	int after_ms;
};

static void *write_later(void *arg)
{
	struct pipe_writer *w = arg;
	sleep_ms(w->after_ms);
	CHECK_EQ(write(w->fd, "x", 1), 1);
	return NULL;
}

/* A receive blocked for long returns at once when the watched descriptor becomes readable, and
 * no message is lost by the cancelled wait. */
static void test_watch_fd(void)
{
	struct laurel_layer *l = open_layer(NULL);
	int fds[2];
	CHECK_EQ(pipe(fds), 0);
	if (memory) {
		CHECK_EQ(laurel_layer_watch_fd(l, fds[0]), -ENOTSUP);
		CHECK(strstr(laurel_layer_error(l), "memory") != NULL);
		goto out;
	}
	CHECK_EQ(laurel_layer_watch_fd(l, -7), -EINVAL);
	CHECK_EQ(laurel_layer_watch_fd(l, fds[0]), 0);
	const char *chans[] = {"watch.a", "watch.proc!"};
	for (int round = 0; round < 2; round++) {
		struct laurel_received r[4];
		size_t got = 9;
		struct pipe_writer w = {fds[1], 200};
		pthread_t t;
		pthread_create(&t, NULL, write_later, &w);
		int64_t start = now_ms();
		/* round 0: one channel (one shard's BLPOP); round 1: two (several shards). */
		CHECK_EQ(laurel_layer_receive(l, chans, (size_t)round + 1, 10000, r, 4, &got), 0);
		int64_t took = now_ms() - start;
		pthread_join(t, NULL);
		CHECK_EQ(got, 0);
		CHECK_INT(took, >=, 150);
		CHECK_INT(took, <, 2000);
		/* Still readable: a blocking receive returns at once. */
		start = now_ms();
		CHECK_EQ(laurel_layer_receive(l, chans, 2, 5000, r, 4, &got), 0);
		CHECK_EQ(got, 0);
		CHECK_INT(now_ms() - start, <, 1000);
		char c;
		CHECK_EQ(read(fds[0], &c, 1), 1);
		/* Messages sent after the cancelled waits arrive, once each. */
		CHECK_EQ(send_n(l, "watch.a", 1), 0);
		CHECK_EQ(send_n(l, "watch.proc!z", 2), 0);
		size_t total = 0;
		int64_t sum = 0;
		for (int tries = 0; tries < 10 && total < 2; tries++) {
			CHECK_EQ(laurel_layer_receive(l, chans, 2, 500, r, 4, &got), 0);
			for (size_t i = 0; i < got; i++)
				sum += get_n(r[i].msg);
			total += got;
			fini_all(r, got);
		}
		CHECK_EQ(total, 2);
		CHECK_EQ(sum, 3);
	}
	/* Not watching any more: the full timeout again. */
	CHECK_EQ(laurel_layer_watch_fd(l, -1), 0);
	CHECK_EQ(write(fds[1], "x", 1), 1);
	{
		struct laurel_received r[1];
		size_t got = 9;
		int64_t start = now_ms();
		CHECK_EQ(laurel_layer_receive(l, chans, 1, 300, r, 1, &got), 0);
		CHECK_EQ(got, 0);
		CHECK_INT(now_ms() - start, >=, 250);
	}
out:
	close(fds[0]);
	close(fds[1]);
	laurel_layer_free(l);
}

static void test_receive_many(void)
{
	struct laurel_layer *l = open_layer(NULL);
	struct laurel_received r[10];
	const char *single = "many.single?abc";
	const char *proc = "many.proc!";

	/* One queue on one server: all five at once, in order. */
	for (int i = 0; i < 5; i++)
		CHECK_EQ(send_n(l, single, i), 0);
	size_t got = recv_now(l, single, r, 10);
	CHECK_EQ(got, 5);
	for (size_t i = 0; i < got; i++)
		CHECK_EQ(get_n(r[i].msg), i);
	fini_all(r, got);

	for (int i = 0; i < 5; i++)
		CHECK_EQ(send_n(l, i % 2 ? "many.proc!x" : "many.proc!y", i), 0);
	got = recv_now(l, proc, r, 3);
	CHECK_EQ(got, 3);
	for (size_t i = 0; i < got; i++) {
		CHECK_EQ(get_n(r[i].msg), i);
		CHECK_STR(r[i].channel, i % 2 ? "many.proc!x" : "many.proc!y");
	}
	fini_all(r, got);
	got = recv_now(l, proc, r, 10);
	CHECK_EQ(got, 2);
	fini_all(r, got);

	/* Several channels in one call. */
	const char *chans[] = {"many.a", "many.b?c", "many.c!"};
	CHECK_EQ(send_n(l, "many.a", 1), 0);
	CHECK_EQ(send_n(l, "many.b?c", 2), 0);
	CHECK_EQ(send_n(l, "many.c!d", 3), 0);
	got = 0;
	size_t total = 0;
	int64_t sum = 0;
	for (int i = 0; i < 5 && total < 3; i++) {
		CHECK_EQ(laurel_layer_receive(l, chans, 3, 100, r, 10, &got), 0);
		if (nurls == 1 && i == 0)
			CHECK_EQ(got, 3);
		for (size_t k = 0; k < got; k++)
			sum += get_n(r[k].msg);
		total += got;
		fini_all(r, got);
	}
	CHECK_EQ(total, 3);
	CHECK_EQ(sum, 6);

	/* A normal channel: on shards they may come from several calls. */
	for (int i = 0; i < 5; i++)
		CHECK_EQ(send_n(l, "many.normal", i), 0);
	got = recv_now(l, "many.normal", r, 10);
	CHECK_INT(got, >=, 1);
	if (nurls == 1)
		CHECK_EQ(got, 5);
	fini_all(r, got);
	size_t more = drain(l, "many.normal", r, 10);
	CHECK_EQ(got + more, 5);
	fini_all(r, more);
	laurel_layer_free(l);
}

/* --- At most once, with competing readers ---------------------------------------------------- */

enum { AMO_MESSAGES = 2000, AMO_READERS = 4 };

struct amo {
	atomic_int seen[AMO_MESSAGES];
	atomic_int total;
	atomic_int exited;
	atomic_int stalls;
	atomic_int errors;
	atomic_int bad;
};

struct amo_reader {
	struct amo *amo;
	struct laurel_layer *l;
	size_t max;
	int count;
};

static void *amo_read(void *arg)
{
	struct amo_reader *rd = arg;
	struct amo *amo = rd->amo;
	const char *chans[] = {"amo.a", "amo.b"};
	struct laurel_received r[10];
	bool stop = false;
	while (!stop) {
		size_t got = 0;
		int rc = laurel_layer_receive(rd->l, chans, 2, 3000, r, rd->max, &got);
		if (rc != 0) {
			fprintf(stderr, "amo receive: %d %s\n", rc, laurel_layer_error(rd->l));
			atomic_fetch_add(&amo->errors, 1);
			break;
		}
		if (got == 0 && atomic_load(&amo->total) < AMO_MESSAGES)
			atomic_fetch_add(&amo->stalls, 1);
		for (size_t i = 0; i < got; i++) {
			int64_t n = get_n(r[i].msg);
			if (laurel_msg_get(r[i].msg, "stop")) {
				stop = true;
			} else if (n >= 0 && n < AMO_MESSAGES) {
				atomic_fetch_add(&amo->seen[n], 1);
				atomic_fetch_add(&amo->total, 1);
				rd->count++;
			} else {
				atomic_fetch_add(&amo->bad, 1);
			}
			laurel_received_fini(&r[i]);
		}
	}
	atomic_fetch_add(&amo->exited, 1);
	return NULL;
}

static void test_at_most_once(void)
{
	struct laurel_layer_options o = {.capacity = 3 * AMO_MESSAGES};
	struct laurel_layer *l = open_layer(&o);
	struct amo *amo = calloc(1, sizeof(*amo));
	struct amo_reader rd[AMO_READERS];
	pthread_t t[AMO_READERS];

	for (int i = 0; i < AMO_READERS; i++) {
		/* Half take one message per call, half up to ten. */
		rd[i] = (struct amo_reader){amo, peer_layer(l, &o), i % 2 ? 10 : 1, 0};
		pthread_create(&t[i], NULL, amo_read, &rd[i]);
	}
	int failed_sends = 0;
	for (int i = 0; i < AMO_MESSAGES; i++)
		failed_sends += send_n(l, i % 2 ? "amo.b" : "amo.a", i) != 0;
	CHECK_EQ(failed_sends, 0);
	int64_t deadline = now_ms() + 30000;
	while (atomic_load(&amo->total) < AMO_MESSAGES && now_ms() < deadline)
		sleep_ms(10);
	/* Stop the readers: one stop each, repeated until all are gone (a reader may take two). */
	struct laurel_msg *stop = laurel_msg_new();
	laurel_msg_set_bool(stop, "stop", true);
	for (int i = 0; i < AMO_READERS; i++)
		CHECK_EQ(laurel_layer_send(l, i % 2 ? "amo.b" : "amo.a", stop), 0);
	deadline = now_ms() + 10000;
	while (atomic_load(&amo->exited) < AMO_READERS && now_ms() < deadline) {
		sleep_ms(20);
		laurel_layer_send(l, "amo.a", stop);
	}
	laurel_msg_free(stop);
	for (int i = 0; i < AMO_READERS; i++) {
		pthread_join(t[i], NULL);
		peer_free(l, rd[i].l);
	}
	int missing = 0, twice = 0;
	for (int i = 0; i < AMO_MESSAGES; i++) {
		missing += atomic_load(&amo->seen[i]) == 0;
		twice += atomic_load(&amo->seen[i]) > 1;
	}
	CHECK_EQ(atomic_load(&amo->total), AMO_MESSAGES);
	CHECK_EQ(missing, 0);
	CHECK_EQ(twice, 0);
	CHECK_EQ(atomic_load(&amo->stalls), 0);
	CHECK_EQ(atomic_load(&amo->errors), 0);
	CHECK_EQ(atomic_load(&amo->bad), 0);
	printf("  readers got %d %d %d %d\n", rd[0].count, rd[1].count, rd[2].count, rd[3].count);
	free(amo);
	laurel_layer_free(l);
}

/* --- Names ----------------------------------------------------------------------------------- */

static void test_process_channels(void)
{
	struct laurel_layer *l = open_layer(NULL);
	struct laurel_received r[10];
	size_t got = 99;
	CHECK_EQ(send_n(l, "pc.daphne!x", 1), 0);
	CHECK_EQ(send_n(l, "pc.daphne!y", 2), 0);
	/* The queue is the prefix: nothing is on a queue named after the full channel. */
	const char *full = "pc.daphne!x";
	CHECK_EQ(laurel_layer_receive(l, &full, 1, 0, r, 10, &got), -EINVAL);
	CHECK_EQ(got, 0);
	CHECK_EQ(recv_now(l, "pc.daphne", r, 10), 0);
	got = recv_now(l, "pc.daphne!", r, 10);
	CHECK_EQ(got, 2);
	if (got == 2) {
		CHECK_STR(r[0].channel, "pc.daphne!x");
		CHECK_EQ(get_n(r[0].msg), 1);
		CHECK_STR(r[1].channel, "pc.daphne!y");
		CHECK_EQ(get_n(r[1].msg), 2);
		CHECK(laurel_msg_get(r[0].msg, "__asgi_channel__") == NULL);
	}
	fini_all(r, got);
	/* The prefix itself is a channel too. */
	CHECK_EQ(send_n(l, "pc.daphne!", 3), 0);
	got = recv_now(l, "pc.daphne!", r, 10);
	CHECK_EQ(got, 1);
	if (got == 1)
		CHECK_STR(r[0].channel, "pc.daphne!");
	fini_all(r, got);
	laurel_layer_free(l);
}

static void test_new_channel(void)
{
	enum { N = 1000 };
	struct laurel_layer *l = open_layer(NULL);
	char **names = calloc(N, sizeof(*names));
	char out[LAUREL_NAME_MAX + 1];
	int bad = 0;
	for (int i = 0; i < N; i++) {
		memset(out, 0, sizeof(out));
		CHECK_EQ(laurel_layer_new_channel(l, "nc.test?", out), 0);
		names[i] = strdup(out);
		bad += !laurel_valid_channel(out) || strncmp(out, "nc.test?", 8) != 0 ||
		       strlen(out) != 8 + 12;
		for (int k = 8; k < 20; k++)
			bad += !((out[k] >= 'a' && out[k] <= 'z') ||
				 (out[k] >= 'A' && out[k] <= 'Z'));
	}
	CHECK_EQ(bad, 0);
	qsort(names, N, sizeof(*names), cmp_str);
	int dups = 0;
	for (int i = 1; i < N; i++)
		dups += strcmp(names[i - 1], names[i]) == 0;
	CHECK_EQ(dups, 0);
	for (int i = 0; i < N; i++)
		free(names[i]);
	free(names);

	CHECK_EQ(laurel_layer_new_channel(l, "nc.proc!", out), 0);
	CHECK(laurel_valid_channel(out));
	CHECK_EQ(strlen(out), 8 + 12);
	CHECK_EQ(strncmp(out, "nc.proc!", 8), 0);

	/* A new name is usable at once. */
	CHECK_EQ(laurel_layer_new_channel(l, "nc.body?", out), 0);
	CHECK_EQ(send_n(l, out, 5), 0);
	struct laurel_received r[2];
	size_t got = recv_now(l, out, r, 2);
	CHECK_EQ(got, 1);
	if (got == 1) {
		CHECK_STR(r[0].channel, out);
		CHECK_EQ(get_n(r[0].msg), 5);
	}
	fini_all(r, got);

	CHECK_EQ(laurel_layer_new_channel(l, "nc.noend", out), -EINVAL);
	CHECK_EQ(laurel_layer_new_channel(l, "bad name?", out), -EINVAL);
	char longp[LAUREL_NAME_MAX];
	memset(longp, 'x', sizeof(longp));
	longp[90] = '?';
	longp[91] = '\0';
	CHECK_EQ(laurel_layer_new_channel(l, longp, out), -EINVAL);
	laurel_layer_free(l);
}

static void test_bad_names(void)
{
	struct laurel_layer *l = open_layer(NULL);
	struct laurel_msg *m = msg_n(1);
	char name[LAUREL_NAME_MAX + 2];

	CHECK(laurel_valid_channel("http.request"));
	CHECK(laurel_valid_channel("http.response?AbC_12-x.y"));
	CHECK(laurel_valid_channel("daphne.response.abc!def"));
	CHECK(laurel_valid_channel("daphne.response.abc!"));
	CHECK(laurel_valid_channel("a?"));
	CHECK(!laurel_valid_channel(""));
	CHECK(!laurel_valid_channel(NULL));
	CHECK(!laurel_valid_channel("has space"));
	CHECK(!laurel_valid_channel("a?b?c"));
	CHECK(!laurel_valid_channel("a!b!c"));
	CHECK(!laurel_valid_channel("a?b!c"));
	CHECK(!laurel_valid_channel("?abc"));
	CHECK(!laurel_valid_channel("caf\xc3\xa9"));
	CHECK(!laurel_valid_channel("tab\there"));
	CHECK(laurel_valid_group("chat.room-1_x"));
	CHECK(!laurel_valid_group("room?x"));
	CHECK(!laurel_valid_group("room!x"));
	CHECK(!laurel_valid_group(""));

	memset(name, 'x', sizeof(name));
	name[LAUREL_NAME_MAX - 1] = '\0'; /* 99 characters: allowed */
	CHECK(laurel_valid_channel(name));
	CHECK(laurel_valid_group(name));
	CHECK_EQ(laurel_layer_send(l, name, m), 0);
	name[LAUREL_NAME_MAX - 1] = 'x';
	name[LAUREL_NAME_MAX] = '\0'; /* 100: too long */
	CHECK(!laurel_valid_channel(name));
	CHECK(!laurel_valid_group(name));
	CHECK_EQ(laurel_layer_send(l, name, m), -EINVAL);
	CHECK(laurel_layer_error(l)[0] != '\0');

	const char *bad[] = {"has space", "", "a?b?c", "a!b!c", "new\nline", "semi;colon"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct laurel_received r[1];
		size_t got = 99;
		CHECK_EQ(laurel_layer_send(l, bad[i], m), -EINVAL);
		CHECK_EQ(laurel_layer_receive(l, &bad[i], 1, 0, r, 1, &got), -EINVAL);
		CHECK_EQ(got, 0);
		CHECK_EQ(laurel_layer_group_add(l, "good", bad[i]), -EINVAL);
		CHECK_EQ(laurel_layer_group_add(l, bad[i], "good"), -EINVAL);
	}
	CHECK_EQ(laurel_layer_group_add(l, "group?x", "good"), -EINVAL);
	CHECK_EQ(laurel_layer_group_add(l, "group!x", "good"), -EINVAL);
	CHECK_EQ(laurel_layer_group_send(l, "bad group", m, NULL), -EINVAL);
	CHECK_EQ(laurel_layer_stats(l, "bad name", &(struct laurel_stats){0}), -EINVAL);
	CHECK_EQ(laurel_layer_announce(l, "not.a.prefix", 10), -EINVAL);
	CHECK_EQ(laurel_layer_announce(l, "a.prefix!", 0), -EINVAL);
	CHECK_EQ(laurel_layer_send(l, "ok.channel", NULL), -EINVAL);

	/* Bad arguments. */
	const char *ok = "ok.channel";
	struct laurel_received r[1];
	size_t got = 99;
	CHECK_EQ(laurel_layer_receive(l, &ok, 1, 0, r, 0, &got), -EINVAL);
	CHECK_EQ(laurel_layer_receive(l, &ok, 0, 0, r, 1, &got), -EINVAL);

	/* Nothing was sent by any of that. */
	size_t n = 99;
	CHECK_EQ(laurel_layer_group_count(l, "good", &n), 0);
	CHECK_EQ(n, 0);
	struct laurel_stats st;
	CHECK_EQ(laurel_layer_stats(l, NULL, &st), 0);
	CHECK_EQ(st.messages_count, 1);
	laurel_msg_free(m);
	laurel_layer_free(l);
}

/* --- Expiry and capacity --------------------------------------------------------------------- */

static void test_expiry(void)
{
	const struct laurel_capacity caps[] = {{"exp.cap*", 2}};
	struct laurel_layer_options o = {
		.expiry = 2, .group_expiry = 2, .capacities = caps, .ncapacities = 1};
	struct laurel_layer *l = open_layer(&o);
	struct laurel_received r[10];
	char **v = NULL;
	size_t n = 0, got;

	CHECK_EQ(send_n(l, "exp.old", 1), 0);
	CHECK_EQ(send_n(l, "exp.cap?x", 1), 0);
	CHECK_EQ(send_n(l, "exp.cap?x", 2), 0);
	CHECK_EQ(send_n(l, "exp.cap?x", 3), LAUREL_FULL);
	CHECK_EQ(laurel_layer_group_add(l, "exp.group", "exp.member.old"), 0);
	CHECK_EQ(laurel_layer_announce(l, "exp.iface!", 1), 0);
	CHECK_EQ(laurel_layer_interfaces(l, &v, &n), 0);
	CHECK_EQ(n, 1);
	CHECK(strv_has(v, "exp.iface!"));
	laurel_strv_free(v);

	sleep_ms(2500);
	/* The old message is gone; one sent now is delivered alone. */
	CHECK_EQ(send_n(l, "exp.old", 2), 0);
	got = recv_now(l, "exp.old", r, 10);
	CHECK_EQ(got, 1);
	if (got >= 1)
		CHECK_EQ(get_n(r[0].msg), 2);
	fini_all(r, got);
	CHECK_EQ(recv_now(l, "exp.old", r, 10), 0);

	/* The old membership and the announcement are gone too. */
	CHECK_EQ(laurel_layer_group_add(l, "exp.group", "exp.member.new"), 0);
	CHECK_EQ(laurel_layer_group_members(l, "exp.group", &v, &n), 0);
	CHECK_EQ(n, 1);
	if (n == 1)
		CHECK_STR(v[0], "exp.member.new");
	laurel_strv_free(v);
	CHECK_EQ(laurel_layer_group_count(l, "exp.group", &n), 0);
	CHECK_EQ(n, 1);
	CHECK_EQ(laurel_layer_interfaces(l, &v, &n), 0);
	CHECK_EQ(n, 0);
	CHECK(!strv_has(v, "exp.iface!"));
	laurel_strv_free(v);

	/* Expired messages stop counting toward capacity (on Redis once the queue key expired,
	 * expiry + 1 seconds after the last push). */
	sleep_ms(1200);
	CHECK_EQ(send_n(l, "exp.cap?x", 4), 0);
	got = recv_now(l, "exp.cap?x", r, 10);
	CHECK_EQ(got, 1);
	if (got >= 1)
		CHECK_EQ(get_n(r[0].msg), 4);
	fini_all(r, got);
	laurel_layer_free(l);
}

/* Sends until the channel is full; returns how many were accepted. */
static int fill(struct laurel_layer *l, const char *channel, int limit)
{
	int sent = 0;
	for (int i = 0; i < limit; i++) {
		int rc = send_n(l, channel, i);
		if (rc == LAUREL_FULL)
			return sent;
		CHECK_EQ(rc, 0);
		if (rc != 0)
			return sent;
		sent++;
	}
	return sent;
}

static void test_capacity(void)
{
	const struct laurel_capacity caps[] = {
		{"cap.small*", 2}, {"cap.pr!", 1}, {"cap.*", 5}, {"cap.other*", 9}};
	struct laurel_layer_options o = {.capacity = 3, .capacities = caps, .ncapacities = 4};
	struct laurel_layer *l = open_layer(&o);
	struct laurel_received r[10];

	/* Single-reader channels live on one shard: exact. */
	CHECK_EQ(fill(l, "default?x", 10), 3);
	CHECK_EQ(fill(l, "cap.small?x", 10), 2);
	CHECK_EQ(fill(l, "cap.other?x", 10), 5); /* "cap.*" comes first */
	/* Process channels share the prefix's capacity, and match patterns by the prefix. */
	CHECK_EQ(send_n(l, "cap.pr!a", 1), 0);
	CHECK_EQ(send_n(l, "cap.pr!b", 2), LAUREL_FULL);
	CHECK_EQ(send_n(l, "cap.pr!", 3), LAUREL_FULL);
	CHECK_EQ(send_n(l, "cap.proc!a", 1), 0);
	CHECK_EQ(send_n(l, "cap.proc!b", 2), 0);
	CHECK_EQ(fill(l, "cap.proc!c", 10), 3);
	CHECK_EQ(send_n(l, "cap.proc!d", 9), LAUREL_FULL);

	/* Room again once one is read. */
	size_t got = recv_now(l, "cap.small?x", r, 1);
	CHECK_EQ(got, 1);
	fini_all(r, got);
	CHECK_EQ(send_n(l, "cap.small?x", 7), 0);
	CHECK_EQ(send_n(l, "cap.small?x", 8), LAUREL_FULL);

	/* A normal channel: exact on one server; on shards each shard's queue has the capacity. */
	int sent = fill(l, "cap.normal", 40);
	if (nurls == 1)
		CHECK_EQ(sent, 5);
	CHECK_INT(sent, >=, 5);
	CHECK_INT(sent, <=, 5 * (int)nurls);
	laurel_layer_free(l);
}

/* --- Several sends in one call ------------------------------------------------------------- */

static void test_send_many(void)
{
	struct laurel_layer_options o = {.capacity = 200, .max_message = 4096};
	const struct laurel_capacity caps[] = {{"many.tiny?*", 2}};
	o.capacities = caps;
	o.ncapacities = 1;
	struct laurel_layer *l = open_layer(&o);
	enum { PER = 60 };
	struct laurel_outgoing items[3 * PER + 8];
	struct laurel_msg *msgs[ARRAY_SIZE(items)];
	char big[5000];
	memset(big, 'x', sizeof(big));
	size_t n = 0;
	/* Interleaved: a process channel (two locals), a single-reader one and a normal one. */
	for (int i = 0; i < PER; i++) {
		const char *to[] = {i % 2 ? "many.proc!a" : "many.proc!b", "many.single?q",
				    "many.normal"};
		for (size_t k = 0; k < 3; k++) {
			msgs[n] = msg_n(i);
			items[n] = (struct laurel_outgoing){.channel = to[k], .msg = msgs[n]};
			n++;
		}
	}
	size_t bad_name = n, no_msg = n + 1, too_big = n + 2, tiny = n + 3;
	msgs[n] = msg_n(0);
	items[n] = (struct laurel_outgoing){.channel = "bad name!", .msg = msgs[n]};
	n++;
	msgs[n] = NULL;
	items[n] = (struct laurel_outgoing){.channel = "many.single?q", .msg = NULL};
	n++;
	msgs[n] = msg_n(0);
	laurel_msg_set_bytes(msgs[n], "big", big, sizeof(big));
	items[n] = (struct laurel_outgoing){.channel = "many.single?q", .msg = msgs[n]};
	n++;
	for (int i = 0; i < 3; i++, n++) { /* capacity 2: the third is refused */
		msgs[n] = msg_n(100 + i);
		items[n] = (struct laurel_outgoing){.channel = "many.tiny?x", .msg = msgs[n]};
	}
	int rc = laurel_layer_send_many(l, items, n);
	CHECK_EQ(rc, -EINVAL); /* the first failure */
	CHECK_EQ(items[bad_name].result, -EINVAL);
	CHECK_EQ(items[no_msg].result, -EINVAL);
	CHECK_EQ(items[too_big].result, -EMSGSIZE);
	CHECK_EQ(items[tiny].result, 0);
	CHECK_EQ(items[tiny + 1].result, 0);
	CHECK_EQ(items[tiny + 2].result, LAUREL_FULL);
	for (size_t i = 0; i < 3 * PER; i++)
		CHECK_EQ(items[i].result, 0);
	struct laurel_stats st;
	CHECK_EQ(laurel_layer_stats(l, "many.single?q", &st), 0);
	CHECK_EQ(st.messages_count, PER);
	CHECK_EQ(st.messages_pending, PER);
	CHECK_EQ(laurel_layer_stats(l, "many.proc!a", &st), 0);
	CHECK_EQ(st.messages_count, PER);
	CHECK_EQ(laurel_layer_stats(l, "many.tiny?x", &st), 0);
	CHECK_EQ(st.messages_count, 2);
	CHECK_EQ(st.channel_full_count, 1);
	CHECK_EQ(laurel_layer_stats(l, NULL, &st), 0);
	CHECK_EQ(st.messages_count, 3 * PER + 2);
	CHECK_EQ(st.channel_full_count, 1);

	/* Order kept per process and single-reader channel; everything arrived once. */
	static struct laurel_received r[3 * PER];
	const char *proc = "many.proc!";
	size_t got = drain(l, proc, r, ARRAY_SIZE(r));
	CHECK_EQ(got, PER);
	int64_t last_a = -1, last_b = -1;
	for (size_t i = 0; i < got; i++) {
		int64_t v = get_n(r[i].msg);
		bool a = strcmp(r[i].channel, "many.proc!a") == 0;
		CHECK(a || strcmp(r[i].channel, "many.proc!b") == 0);
		CHECK_INT(v, >, a ? last_a : last_b);
		CHECK_EQ(v % 2, a ? 1 : 0);
		if (a)
			last_a = v;
		else
			last_b = v;
	}
	fini_all(r, got);
	got = drain(l, "many.single?q", r, ARRAY_SIZE(r));
	CHECK_EQ(got, PER);
	for (size_t i = 0; i < got; i++)
		CHECK_EQ(get_n(r[i].msg), (int64_t)i);
	fini_all(r, got);
	got = drain(l, "many.normal", r, ARRAY_SIZE(r));
	CHECK_EQ(got, PER);
	int64_t seen[PER];
	for (size_t i = 0; i < got && i < PER; i++)
		seen[i] = get_n(r[i].msg);
	qsort(seen, got < PER ? got : PER, sizeof(seen[0]), cmp_int64);
	for (size_t i = 0; i < got && i < PER; i++)
		CHECK_EQ(seen[i], (int64_t)i);
	fini_all(r, got);
	got = drain(l, "many.tiny?x", r, ARRAY_SIZE(r));
	CHECK_EQ(got, 2);
	fini_all(r, got);

	/* Nothing to send is fine; all good returns 0. */
	CHECK_EQ(laurel_layer_send_many(l, items, 0), 0);
	CHECK_EQ(laurel_layer_send_many(l, items, 3), 0);
	for (size_t i = 0; i < n; i++)
		laurel_msg_free(msgs[i]);
	laurel_layer_free(l);
}

/* --- Scheduled messages ---------------------------------------------------------------------- */

static int schedule_n(struct laurel_layer *l, const char *channel, int64_t n, int64_t due)
{
	struct laurel_msg *m = msg_n(n);
	int rc = laurel_layer_schedule(l, channel, m, due);
	laurel_msg_free(m);
	return rc;
}

struct taker {
	struct laurel_layer *l;
	int64_t taken[400];
	size_t n;
	int rc;
};

static void *take_all(void *arg)
{
	struct taker *t = arg;
	struct laurel_due d[7];
	for (;;) {
		size_t got = 0;
		int64_t next;
		t->rc |= laurel_layer_take_due(t->l, 5000, d, ARRAY_SIZE(d), &got, &next);
		for (size_t i = 0; i < got; i++) {
			if (t->n < ARRAY_SIZE(t->taken))
				t->taken[t->n++] = get_n(d[i].msg);
			laurel_msg_free(d[i].msg);
		}
		if (got == 0)
			return NULL;
	}
}

static void test_schedule(void)
{
	struct laurel_layer *l = open_layer(NULL);
	struct laurel_due d[10];
	size_t got = 99;
	int64_t next = 0;

	CHECK_EQ(laurel_layer_take_due(l, 1000, d, 10, &got, &next), 0);
	CHECK_EQ(got, 0);
	CHECK_EQ(next, -1);
	CHECK_EQ(schedule_n(l, "later.b", 2, 2000), 0);
	CHECK_EQ(schedule_n(l, "later.a", 1, 1000), 0);
	CHECK_EQ(schedule_n(l, "later.a", 1, 1000), 0); /* the same message twice: both kept */
	CHECK_EQ(schedule_n(l, "later.proc!x", 3, 3000), 0);
	CHECK_EQ(schedule_n(l, "later.c", 9, 900000), 0);
	CHECK_EQ(schedule_n(l, "bad name", 1, 10), -EINVAL);
	CHECK_EQ(laurel_layer_schedule(l, "later.a", NULL, 10), -EINVAL);
	CHECK_EQ(schedule_n(l, "later.a", 1, -5), -EINVAL);
	CHECK_EQ(laurel_layer_take_due(l, 1000, d, 0, &got, &next), -EINVAL);

	/* Not due yet: nothing, and when the next one is. */
	CHECK_EQ(laurel_layer_take_due(l, 999, d, 10, &got, &next), 0);
	CHECK_EQ(got, 0);
	CHECK_EQ(next, 1000);
	/* max limits a take; earliest first. */
	CHECK_EQ(laurel_layer_take_due(l, 2500, d, 1, &got, &next), 0);
	CHECK_EQ(got, 1);
	CHECK_STR(d[0].channel, "later.a");
	CHECK_EQ(get_n(d[0].msg), 1);
	CHECK_EQ(d[0].due_ms, 1000);
	CHECK_EQ(next, 1000);
	laurel_msg_free(d[0].msg);
	CHECK_EQ(laurel_layer_take_due(l, 3000, d, 10, &got, &next), 0);
	CHECK_EQ(got, 3);
	if (got == 3) {
		CHECK_STR(d[0].channel, "later.a");
		CHECK_STR(d[1].channel, "later.b");
		CHECK_EQ(get_n(d[1].msg), 2);
		CHECK_STR(d[2].channel, "later.proc!x");
		CHECK_EQ(d[2].due_ms, 3000);
	}
	CHECK_EQ(next, 900000);
	for (size_t i = 0; i < got; i++)
		laurel_msg_free(d[i].msg);

	/* Flush forgets them. */
	CHECK_EQ(laurel_layer_flush(l), 0);
	CHECK_EQ(laurel_layer_take_due(l, INT64_C(1) << 50, d, 10, &got, &next), 0);
	CHECK_EQ(got, 0);
	CHECK_EQ(next, -1);

	/* Two takers at once: every message exactly once. */
	enum { N = 300 };
	for (int i = 0; i < N; i++)
		CHECK_EQ(schedule_n(l, "later.race", i, 1000 + i % 17), 0);
	struct taker t[2] = {{.l = peer_layer(l, NULL)}, {.l = peer_layer(l, NULL)}};
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, take_all, &t[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	CHECK_EQ(t[0].rc | t[1].rc, 0);
	CHECK_EQ(t[0].n + t[1].n, (size_t)N);
	static int64_t all[2 * ARRAY_SIZE(t[0].taken)];
	size_t na = 0;
	for (int k = 0; k < 2; k++)
		for (size_t i = 0; i < t[k].n; i++)
			all[na++] = t[k].taken[i];
	qsort(all, na, sizeof(all[0]), cmp_int64);
	for (size_t i = 0; i < na; i++)
		CHECK_EQ(all[i], (int64_t)i);
	for (int i = 0; i < 2; i++)
		peer_free(l, t[i].l);
	laurel_layer_free(l);
}

/* --- Groups ---------------------------------------------------------------------------------- */

static void test_groups(void)
{
	struct laurel_layer *l = open_layer(NULL);
	struct laurel_msg *m = msg_n(11);
	struct laurel_received r[10];
	char **v = NULL;
	size_t n = 99, delivered = 99, got;

	CHECK_EQ(laurel_layer_group_count(l, "grp.none", &n), 0);
	CHECK_EQ(n, 0);
	CHECK_EQ(laurel_layer_group_members(l, "grp.none", &v, &n), 0);
	CHECK_EQ(n, 0);
	CHECK(!v || !v[0]);
	laurel_strv_free(v);
	CHECK_EQ(laurel_layer_group_send(l, "grp.none", m, &delivered), 0);
	CHECK_EQ(delivered, 0);

	CHECK_EQ(laurel_layer_group_add(l, "grp", "grp.a"), 0);
	CHECK_EQ(laurel_layer_group_add(l, "grp", "grp.a"), 0);
	CHECK_EQ(laurel_layer_group_count(l, "grp", &n), 0);
	CHECK_EQ(n, 1);
	CHECK_EQ(laurel_layer_group_add(l, "grp", "grp.b?x"), 0);
	CHECK_EQ(laurel_layer_group_add(l, "grp", "grp.proc!c"), 0);
	CHECK_EQ(laurel_layer_group_count(l, "grp", &n), 0);
	CHECK_EQ(n, 3);
	CHECK_EQ(laurel_layer_group_members(l, "grp", &v, &n), 0);
	CHECK_EQ(n, 3);
	if (n == 3) {
		CHECK(v[3] == NULL);
		qsort(v, n, sizeof(*v), cmp_str);
		CHECK_STR(v[0], "grp.a");
		CHECK_STR(v[1], "grp.b?x");
		CHECK_STR(v[2], "grp.proc!c");
	}
	laurel_strv_free(v);
	CHECK_EQ(laurel_layer_group_members(l, "grp", &v, NULL), 0);
	laurel_strv_free(v);

	CHECK_EQ(laurel_layer_group_send(l, "grp", m, &delivered), 0);
	CHECK_EQ(delivered, 3);
	const char *queues[] = {"grp.a", "grp.b?x", "grp.proc!"};
	const char *names[] = {"grp.a", "grp.b?x", "grp.proc!c"};
	for (size_t i = 0; i < 3; i++) {
		got = drain(l, queues[i], r, 10);
		CHECK_EQ(got, 1);
		if (got == 1) {
			CHECK_STR(r[0].channel, names[i]);
			CHECK_EQ(get_n(r[0].msg), 11);
			CHECK_EQ(r[0].nrecipients, 0);
		}
		fini_all(r, got);
	}

	CHECK_EQ(laurel_layer_group_discard(l, "grp", "grp.a"), 0);
	CHECK_EQ(laurel_layer_group_discard(l, "grp", "grp.never"), 0);
	CHECK_EQ(laurel_layer_group_discard(l, "grp.none", "grp.a"), 0);
	CHECK_EQ(laurel_layer_group_count(l, "grp", &n), 0);
	CHECK_EQ(n, 2);
	CHECK_EQ(laurel_layer_group_send(l, "grp", m, NULL), 0);
	CHECK_EQ(drain(l, "grp.a", r, 10), 0);
	got = drain(l, "grp.b?x", r, 10);
	CHECK_EQ(got, 1);
	fini_all(r, got);
	got = drain(l, "grp.proc!", r, 10);
	CHECK_EQ(got, 1);
	fini_all(r, got);
	CHECK_EQ(laurel_layer_group_discard(l, "grp", "grp.b?x"), 0);
	CHECK_EQ(laurel_layer_group_discard(l, "grp", "grp.proc!c"), 0);
	CHECK_EQ(laurel_layer_group_count(l, "grp", &n), 0);
	CHECK_EQ(n, 0);

	/* One channel in several groups. */
	CHECK_EQ(laurel_layer_group_add(l, "grp.x", "grp.shared"), 0);
	CHECK_EQ(laurel_layer_group_add(l, "grp.y", "grp.shared"), 0);
	CHECK_EQ(laurel_layer_group_send(l, "grp.x", m, &delivered), 0);
	CHECK_EQ(delivered, 1);
	CHECK_EQ(laurel_layer_group_send(l, "grp.y", m, &delivered), 0);
	CHECK_EQ(delivered, 1);
	got = drain(l, "grp.shared", r, 10);
	CHECK_EQ(got, 2);
	fini_all(r, got);
	laurel_msg_free(m);
	laurel_layer_free(l);
}

static void test_group_full(void)
{
	const struct laurel_capacity caps[] = {{"gfull.a?x", 1}};
	struct laurel_layer_options o = {.capacities = caps, .ncapacities = 1};
	struct laurel_layer *l = open_layer(&o);
	struct laurel_msg *m = msg_n(2);
	struct laurel_received r[10];
	size_t delivered = 99, got;

	CHECK_EQ(send_n(l, "gfull.a?x", 1), 0);
	CHECK_EQ(laurel_layer_group_add(l, "gfull", "gfull.a?x"), 0);
	CHECK_EQ(laurel_layer_group_add(l, "gfull", "gfull.b"), 0);
	CHECK_EQ(laurel_layer_group_send(l, "gfull", m, &delivered), 0);
	CHECK_EQ(delivered, 1);
	got = drain(l, "gfull.a?x", r, 10);
	CHECK_EQ(got, 1);
	if (got == 1)
		CHECK_EQ(get_n(r[0].msg), 1);
	fini_all(r, got);
	got = drain(l, "gfull.b", r, 10);
	CHECK_EQ(got, 1);
	if (got == 1)
		CHECK_EQ(get_n(r[0].msg), 2);
	fini_all(r, got);
	struct laurel_stats st;
	CHECK_EQ(laurel_layer_stats(l, "gfull.a?x", &st), 0);
	CHECK_EQ(st.channel_full_count, 1);
	laurel_msg_free(m);
	laurel_layer_free(l);
}

static void test_multicast(void)
{
	struct laurel_layer *l = open_layer(NULL);
	struct laurel_msg *m = msg_n(5);
	struct laurel_received r[10];
	char **v = NULL;
	size_t n = 0, delivered = 0, got;

	laurel_msg_set_text(m, "text", "hello all");
	CHECK_EQ(laurel_layer_announce(l, "mc.proc!", 30), 0);
	CHECK_EQ(laurel_layer_announce(l, "mc.proc!", 30), 0);
	CHECK_EQ(laurel_layer_announce(l, "mc.idle!", 30), 0);
	CHECK_EQ(laurel_layer_interfaces(l, &v, &n), 0);
	CHECK_EQ(n, 2);
	CHECK(strv_has(v, "mc.proc!"));
	CHECK(strv_has(v, "mc.idle!"));
	laurel_strv_free(v);
	CHECK_EQ(laurel_layer_interfaces(l, &v, NULL), 0);
	laurel_strv_free(v);

	CHECK_EQ(laurel_layer_group_add(l, "mc", "mc.proc!a"), 0);
	CHECK_EQ(laurel_layer_group_add(l, "mc", "mc.proc!b"), 0);
	CHECK_EQ(laurel_layer_group_add(l, "mc", "other.x"), 0);
	CHECK_EQ(laurel_layer_group_add(l, "mc", "mc.foreign!z"), 0);
	CHECK_EQ(laurel_layer_group_send(l, "mc", m, &delivered), 0);
	CHECK_EQ(delivered, 4);

	got = drain(l, "mc.proc!", r, 10);
	CHECK_EQ(got, 1);
	if (got == 1) {
		CHECK_STR(r[0].channel, "mc.proc!");
		CHECK_EQ(r[0].nrecipients, 2);
		if (r[0].nrecipients == 2) {
			qsort(r[0].recipients, 2, sizeof(char *), cmp_str);
			CHECK_STR(r[0].recipients[0], "mc.proc!a");
			CHECK_STR(r[0].recipients[1], "mc.proc!b");
		}
		CHECK(laurel_value_equal(laurel_msg_croot(r[0].msg), laurel_msg_croot(m)));
	}
	fini_all(r, got);
	got = drain(l, "other.x", r, 10);
	CHECK_EQ(got, 1);
	if (got == 1) {
		CHECK_STR(r[0].channel, "other.x");
		CHECK_EQ(r[0].nrecipients, 0);
		CHECK(laurel_value_equal(laurel_msg_croot(r[0].msg), laurel_msg_croot(m)));
	}
	fini_all(r, got);
	got = drain(l, "mc.foreign!", r, 10);
	CHECK_EQ(got, 1);
	if (got == 1) {
		CHECK_STR(r[0].channel, "mc.foreign!z");
		CHECK_EQ(r[0].nrecipients, 0);
	}
	fini_all(r, got);
	CHECK_EQ(drain(l, "mc.idle!", r, 10), 0);

	/* Withdrawn: one message per member again. */
	CHECK_EQ(laurel_layer_withdraw(l, "mc.proc!"), 0);
	CHECK_EQ(laurel_layer_withdraw(l, "mc.never!"), 0);
	CHECK_EQ(laurel_layer_interfaces(l, &v, &n), 0);
	CHECK_EQ(n, 1);
	CHECK(!strv_has(v, "mc.proc!"));
	laurel_strv_free(v);
	CHECK_EQ(laurel_layer_group_send(l, "mc", m, &delivered), 0);
	CHECK_EQ(delivered, 4);
	got = drain(l, "mc.proc!", r, 10);
	CHECK_EQ(got, 2);
	if (got == 2) {
		char *chans[] = {r[0].channel, r[1].channel};
		qsort(chans, 2, sizeof(char *), cmp_str);
		CHECK_STR(chans[0], "mc.proc!a");
		CHECK_STR(chans[1], "mc.proc!b");
		CHECK_EQ(r[0].nrecipients, 0);
		CHECK_EQ(r[1].nrecipients, 0);
	}
	fini_all(r, got);
	got = drain(l, "other.x", r, 10);
	CHECK_EQ(got, 1);
	fini_all(r, got);
	got = drain(l, "mc.foreign!", r, 10);
	CHECK_EQ(got, 1);
	fini_all(r, got);
	laurel_msg_free(m);
	laurel_layer_free(l);
}

/* --- Group history (docs/recovery.md) -------------------------------------------------------- */

/* The history key of a received multicast message: its group, epoch and offset. */
static bool history_of(const struct laurel_msg *m, char *group, char *epoch, int64_t *offset)
{
	const struct laurel_value *h = laurel_msg_get(m, "__laurel_history__");
	if (!h || h->type != LAUREL_LIST || h->u.list.len != 3)
		return false;
	const struct laurel_value *g = &h->u.list.items[0], *e = &h->u.list.items[1],
				 *o = &h->u.list.items[2];
	if (g->type != LAUREL_TEXT || e->type != LAUREL_TEXT || o->type != LAUREL_INT)
		return false;
	snprintf(group, LAUREL_NAME_MAX + 1, "%.*s", (int)g->u.s.len, g->u.s.ptr);
	snprintf(epoch, LAUREL_EPOCH_LEN + 1, "%.*s", (int)e->u.s.len, e->u.s.ptr);
	*offset = o->u.i;
	return true;
}

static bool is_epoch(const char *e)
{
	if (strlen(e) != LAUREL_EPOCH_LEN)
		return false;
	for (; *e; e++)
		if (!((*e >= '0' && *e <= '9') || (*e >= 'a' && *e <= 'f')))
			return false;
	return true;
}

static void test_history(void)
{
	const struct laurel_history_rule rules[] = {{"hist.*", 5, 2}, {"hlong.*", 1000, 600}};
	struct laurel_layer_options o = {.histories = rules, .nhistories = 2};
	struct laurel_layer *l = open_layer(&o);
	struct laurel_received r[20];
	struct laurel_history_pos pos, top;
	struct laurel_history_entry *v = NULL;
	size_t n = 0, delivered = 0, got;
	char epoch[LAUREL_EPOCH_LEN + 1] = "", group[LAUREL_NAME_MAX + 1];

	CHECK_EQ(laurel_layer_announce(l, "hi.proc!", 30), 0);
	CHECK_EQ(laurel_layer_group_add(l, "hist.a", "hi.proc!a"), 0);
	CHECK_EQ(laurel_layer_group_add(l, "hist.a", "hi.proc!b"), 0);
	CHECK_EQ(laurel_layer_group_add(l, "hist.a", "hi.plain"), 0);
	CHECK_EQ(laurel_layer_group_add(l, "hist.a", "hi.foreign!z"), 0);

	/* Offsets go up by one per group send, in one epoch. */
	for (int i = 1; i <= 7; i++) {
		struct laurel_msg *m = msg_n(i);
		CHECK_EQ(laurel_layer_group_publish(l, "hist.a", m, &delivered, &pos), 0);
		CHECK_EQ(delivered, 4);
		CHECK_EQ(pos.offset, (uint64_t)i);
		CHECK(is_epoch(pos.epoch));
		if (i == 1)
			memcpy(epoch, pos.epoch, sizeof(epoch));
		CHECK_STR(pos.epoch, epoch);
		laurel_msg_free(m);
	}
	/* The interface's multicast carries [group, epoch, offset]; other members get the
	 * message unchanged (a Daphne refuses unknown keys). */
	got = drain(l, "hi.proc!", r, 20);
	CHECK_EQ(got, 7);
	for (size_t i = 0; i < got; i++) {
		int64_t off = -1;
		char e[LAUREL_EPOCH_LEN + 1] = "";
		CHECK_EQ(r[i].nrecipients, 2);
		CHECK(history_of(r[i].msg, group, e, &off));
		CHECK_STR(group, "hist.a");
		CHECK_STR(e, epoch);
		CHECK_EQ(off, get_n(r[i].msg));
		CHECK_EQ(laurel_msg_croot(r[i].msg)->u.map.len, 2); /* n, the history */
	}
	fini_all(r, got);
	const char *others[] = {"hi.plain", "hi.foreign!"};
	for (size_t k = 0; k < 2; k++) {
		got = drain(l, others[k], r, 20);
		CHECK_EQ(got, 7);
		for (size_t i = 0; i < got; i++)
			CHECK(!laurel_msg_get(r[i].msg, "__laurel_history__"));
		fini_all(r, got);
	}

	/* Trimmed to its size: 3..7 are kept. */
	CHECK_EQ(laurel_layer_group_history(l, "hist.a", NULL, 0, &v, &n, &top), 0);
	CHECK_EQ(n, 5);
	CHECK_STR(top.epoch, epoch);
	CHECK_EQ(top.offset, 7);
	CHECK_EQ(top.first, 3);
	for (size_t i = 0; i < n; i++) {
		CHECK_EQ(v[i].offset, 3 + i);
		CHECK_EQ(get_n(v[i].msg), (int64_t)(3 + i));
		CHECK(!laurel_msg_get(v[i].msg, "__laurel_history__"));
	}
	laurel_history_entries_free(v, n);
	/* A client that saw up to 4 gets 5, 6, 7; one up to date gets nothing. */
	CHECK_EQ(laurel_layer_group_history(l, "hist.a", epoch, 4, &v, &n, &top), 0);
	CHECK_EQ(n, 3);
	if (n == 3)
		CHECK_EQ(v[0].offset * 100 + v[2].offset, 507);
	laurel_history_entries_free(v, n);
	CHECK_EQ(laurel_layer_group_history(l, "hist.a", epoch, 7, &v, &n, &top), 0);
	CHECK_EQ(n, 0);
	CHECK_EQ(laurel_layer_group_history(l, "hist.a", epoch, 2, &v, &n, &top), 0);
	CHECK_EQ(n, 5);
	laurel_history_entries_free(v, n);
	/* Lost: 2 is gone, 8 was never sent, another epoch. */
	CHECK_EQ(laurel_layer_group_history(l, "hist.a", epoch, 1, &v, &n, &top), LAUREL_HISTORY_LOST);
	CHECK_EQ(n, 0);
	CHECK(v == NULL);
	CHECK_EQ(laurel_layer_group_history(l, "hist.a", epoch, 8, &v, &n, &top), LAUREL_HISTORY_LOST);
	CHECK_EQ(laurel_layer_group_history(l, "hist.a", "0123456789abcdef", 7, &v, &n, &top),
		 LAUREL_HISTORY_LOST);
	CHECK_EQ(top.offset, 7);

	/* No rule, no history; a message may not bring its own history key. */
	struct laurel_msg *m = msg_n(1);
	CHECK_EQ(laurel_layer_group_history(l, "plain.g", NULL, 0, &v, &n, &top), -EINVAL);
	CHECK_EQ(laurel_layer_group_add(l, "plain.g", "hi.proc!a"), 0);
	CHECK_EQ(laurel_layer_group_publish(l, "plain.g", m, &delivered, &pos), 0);
	CHECK_EQ(delivered, 1);
	CHECK_STR(pos.epoch, "");
	CHECK_EQ(pos.offset, 0);
	got = drain(l, "hi.proc!", r, 20);
	CHECK_EQ(got, 1);
	if (got == 1)
		CHECK(!laurel_msg_get(r[0].msg, "__laurel_history__"));
	fini_all(r, got);
	laurel_msg_set_int(m, "__laurel_history__", 1);
	CHECK_EQ(laurel_layer_group_publish(l, "hist.a", m, &delivered, &pos), -EINVAL);
	laurel_msg_free(m);

	/* A group with no member still keeps what is sent to it. */
	m = msg_n(42);
	CHECK_EQ(laurel_layer_group_publish(l, "hlong.empty", m, &delivered, &pos), 0);
	CHECK_EQ(delivered, 0);
	CHECK_EQ(pos.offset, 1);
	laurel_msg_free(m);

	/* It expires 2 s after the last message; a new one starts a new epoch at 1. */
	sleep_ms(2300);
	CHECK_EQ(laurel_layer_group_history(l, "hist.a", NULL, 0, &v, &n, &top), 0);
	CHECK_EQ(n, 0);
	CHECK_STR(top.epoch, "");
	CHECK_EQ(laurel_layer_group_history(l, "hist.a", epoch, 7, &v, &n, &top), LAUREL_HISTORY_LOST);
	m = msg_n(8);
	CHECK_EQ(laurel_layer_group_publish(l, "hist.a", m, &delivered, &pos), 0);
	CHECK_EQ(pos.offset, 1);
	CHECK(is_epoch(pos.epoch) && strcmp(pos.epoch, epoch) != 0);
	memcpy(epoch, pos.epoch, sizeof(epoch));
	/* Lost with the server's data (a flush, a restart without persistence): a new epoch. */
	CHECK_EQ(laurel_layer_flush(l), 0);
	CHECK_EQ(laurel_layer_group_publish(l, "hist.a", m, &delivered, &pos), 0);
	CHECK_EQ(pos.offset, 1);
	CHECK(is_epoch(pos.epoch) && strcmp(pos.epoch, epoch) != 0);
	laurel_msg_free(m);
	drain(l, "hi.proc!", r, 20);
	laurel_layer_free(l);
}

static void test_history_options(void)
{
	struct laurel_layer *l = NULL;
	char err[256];
	const char *u[] = {"memory://"};
	const struct laurel_history_rule bad[][1] = {
		{{"", 5, 5}}, {{"g*", 0, 5}}, {{"g*", 100001, 5}}, {{"g*", 5, 0}}, {{NULL, 5, 5}}};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct laurel_layer_options o = {.urls = u, .nurls = 1, .histories = bad[i],
						 .nhistories = 1};
		err[0] = '\0';
		CHECK_EQ(laurel_layer_new(&l, &o, err, sizeof(err)), -EINVAL);
		CHECK(strstr(err, "history rule") != NULL);
	}
}

/* --- Flush and statistics -------------------------------------------------------------------- */

static void test_flush(void)
{
	struct laurel_layer *l = open_layer(NULL);
	struct laurel_received r[10];
	struct laurel_stats st;
	char **v = NULL;
	size_t n = 99, got = 99;

	CHECK_EQ(send_n(l, "fl.a", 1), 0);
	CHECK_EQ(send_n(l, "fl.b?x", 1), 0);
	CHECK_EQ(send_n(l, "fl.p!x", 1), 0);
	CHECK_EQ(laurel_layer_group_add(l, "fl.group", "fl.a"), 0);
	CHECK_EQ(laurel_layer_announce(l, "fl.p!", 30), 0);
	CHECK_EQ(laurel_layer_flush(l), 0);

	const char *chans[] = {"fl.a", "fl.b?x", "fl.p!"};
	CHECK_EQ(laurel_layer_receive(l, chans, 3, 100, r, 10, &got), 0);
	CHECK_EQ(got, 0);
	CHECK_EQ(laurel_layer_group_count(l, "fl.group", &n), 0);
	CHECK_EQ(n, 0);
	CHECK_EQ(laurel_layer_interfaces(l, &v, &n), 0);
	CHECK_EQ(n, 0);
	laurel_strv_free(v);
	CHECK_EQ(laurel_layer_stats(l, NULL, &st), 0);
	CHECK_EQ(st.messages_count, 0);
	CHECK_EQ(st.channel_full_count, 0);
	CHECK_EQ(laurel_layer_stats(l, "fl.a", &st), 0);
	CHECK_EQ(st.messages_count, 0);
	CHECK_EQ(st.messages_pending, 0);

	/* Usable after a flush. */
	CHECK_EQ(send_n(l, "fl.a", 2), 0);
	got = recv_now(l, "fl.a", r, 10);
	CHECK_EQ(got, 1);
	fini_all(r, got);
	laurel_layer_free(l);
}

static void test_stats(void)
{
	const struct laurel_capacity caps[] = {{"st.full?x", 1}};
	struct laurel_layer_options o = {.capacities = caps, .ncapacities = 1};
	struct laurel_layer *l = open_layer(&o);
	struct laurel_received r[10];
	struct laurel_stats st;

	CHECK_EQ(laurel_layer_stats(l, NULL, &st), 0);
	CHECK_EQ(st.messages_count, 0);
	CHECK_EQ(st.channel_full_count, 0);
	CHECK_EQ(st.messages_pending, -1);
	CHECK_EQ(st.messages_max_age, -1);
	CHECK_EQ(laurel_layer_stats(l, "st.empty", &st), 0);
	CHECK_EQ(st.messages_count, 0);
	CHECK_EQ(st.channel_full_count, 0);
	CHECK_EQ(st.messages_pending, 0);
	CHECK_EQ(st.messages_max_age, 0);

	for (int i = 0; i < 3; i++)
		CHECK_EQ(send_n(l, "st.a?x", i), 0);
	CHECK_EQ(send_n(l, "st.full?x", 1), 0);
	CHECK_EQ(send_n(l, "st.full?x", 2), LAUREL_FULL);
	CHECK_EQ(send_n(l, "st.p!x", 1), 0);
	CHECK_EQ(send_n(l, "st.p!y", 2), 0);

	CHECK_EQ(laurel_layer_stats(l, NULL, &st), 0);
	CHECK_EQ(st.messages_count, 6);
	CHECK_EQ(st.channel_full_count, 1);
	CHECK_EQ(laurel_layer_stats(l, "st.a?x", &st), 0);
	CHECK_EQ(st.messages_count, 3);
	CHECK_EQ(st.channel_full_count, 0);
	CHECK_EQ(st.messages_pending, 3);
	CHECK_INT(st.messages_max_age, >=, 0);
	CHECK_INT(st.messages_max_age, <=, 1);
	CHECK_EQ(laurel_layer_stats(l, "st.full?x", &st), 0);
	CHECK_EQ(st.messages_count, 1);
	CHECK_EQ(st.channel_full_count, 1);
	CHECK_EQ(st.messages_pending, 1);
	/* Process channels are counted on their prefix. */
	CHECK_EQ(laurel_layer_stats(l, "st.p!", &st), 0);
	CHECK_EQ(st.messages_count, 2);
	CHECK_EQ(st.messages_pending, 2);
	CHECK_EQ(laurel_layer_stats(l, "st.p!y", &st), 0);
	CHECK_EQ(st.messages_count, 2);
	CHECK_EQ(st.messages_pending, 2);

	sleep_ms(1300);
	CHECK_EQ(laurel_layer_stats(l, "st.a?x", &st), 0);
	CHECK_INT(st.messages_max_age, >=, 1);
	CHECK_INT(st.messages_max_age, <=, 2);
	size_t got = recv_now(l, "st.a?x", r, 1);
	CHECK_EQ(got, 1);
	fini_all(r, got);
	CHECK_EQ(laurel_layer_stats(l, "st.a?x", &st), 0);
	CHECK_EQ(st.messages_count, 3);
	CHECK_EQ(st.messages_pending, 2);
	CHECK_EQ(laurel_layer_stats(l, NULL, &st), 0);
	CHECK_EQ(st.messages_count, 6);
	laurel_layer_free(l);
}

static const char *only;

/* Runs one case, unless another was asked for on the command line. */
/* Sessions: per-connection state kept by reply channel, seen by every client of the layer,
 * replaced whole on save, gone after group_expiry or delete, and wiped by flush. */
static void test_sessions(void)
{
	struct laurel_layer_options o = {.group_expiry = 1};
	struct laurel_layer *l = open_layer(&o);
	struct laurel_layer *peer = peer_layer(l, &o);
	const char *reply = "daphne.response.AbCdEfGhIj!conn1";
	struct laurel_msg *s = NULL;

	CHECK_EQ(laurel_layer_session_load(l, reply, &s), 0);
	CHECK(s != NULL);
	if (s)
		CHECK_EQ(laurel_msg_croot(s)->u.map.len, 0);
	laurel_msg_free(s);

	s = laurel_msg_new();
	laurel_msg_set_text(s, "username", "ann");
	laurel_msg_set_int(s, "__channels_next_order", 3);
	CHECK_EQ(laurel_layer_session_save(l, reply, s), 0);
	laurel_msg_free(s);
	s = NULL;
	CHECK_EQ(laurel_layer_session_load(peer, reply, &s), 0);
	int64_t order = 0;
	CHECK_STR(s ? laurel_msg_get_text(s, "username", NULL) : NULL, "ann");
	CHECK_EQ(s ? laurel_msg_get_int(s, "__channels_next_order", &order) : -1, 0);
	CHECK_EQ(order, 3);
	laurel_msg_free(s);

	/* Another connection's session is separate. */
	CHECK_EQ(laurel_layer_session_load(l, "daphne.response.AbCdEfGhIj!conn2", &s), 0);
	CHECK_EQ(s ? laurel_msg_croot(s)->u.map.len : 99, 0);
	laurel_msg_free(s);

	s = laurel_msg_new();
	CHECK_EQ(laurel_layer_session_save(l, "bad name", s), -EINVAL);
	laurel_msg_free(s);
	s = NULL;
	CHECK_EQ(laurel_layer_session_delete(l, reply), 0);
	CHECK_EQ(laurel_layer_session_load(l, reply, &s), 0);
	CHECK_EQ(s ? laurel_msg_croot(s)->u.map.len : 99, 0);
	laurel_msg_free(s);

	/* Expiry after group_expiry. */
	s = laurel_msg_new();
	laurel_msg_set_bool(s, "joined", true);
	CHECK_EQ(laurel_layer_session_save(l, reply, s), 0);
	laurel_msg_free(s);
	sleep_ms(1500);
	CHECK_EQ(laurel_layer_session_load(l, reply, &s), 0);
	CHECK_EQ(s ? laurel_msg_croot(s)->u.map.len : 99, 0);
	laurel_msg_free(s);

	/* Flush removes sessions. */
	s = laurel_msg_new();
	laurel_msg_set_bool(s, "joined", true);
	CHECK_EQ(laurel_layer_session_save(l, reply, s), 0);
	laurel_msg_free(s);
	CHECK_EQ(laurel_layer_flush(l), 0);
	CHECK_EQ(laurel_layer_session_load(l, reply, &s), 0);
	CHECK_EQ(s ? laurel_msg_croot(s)->u.map.len : 99, 0);
	laurel_msg_free(s);
	if (peer != l)
		laurel_layer_free(peer);
	laurel_layer_free(l);
}

static void run(const char *name, void (*fn)(void))
{
	if (only && strcmp(only, name) != 0)
		return;
	int before = test_failures;
	int64_t t0 = now_ms();
	printf("# %s\n", name);
	fflush(stdout);
	fn();
	printf("# %s: %s (%" PRId64 " ms)\n", name, test_failures == before ? "ok" : "FAILED",
	       now_ms() - t0);
	fflush(stdout);
}

static struct test_redis servers[3];
static size_t nservers;

/* A crash must not leave redis-servers behind. */
static void on_fatal(int sig)
{
	for (size_t i = 0; i < nservers; i++)
		if (servers[i].pid > 0)
			kill(servers[i].pid, SIGKILL);
	signal(sig, SIG_DFL);
	raise(sig);
}

int main(int argc, char **argv)
{
	const char *backend = argc > 1 ? argv[1] : "memory";
	only = argc > 2 ? argv[2] : NULL;

	if (strcmp(backend, "memory") == 0) {
		memory = true;
		urls[0] = "memory://";
		nurls = 1;
	} else if (strcmp(backend, "redis") == 0) {
		nservers = 1;
	} else if (strcmp(backend, "redis-sharded") == 0) {
		nservers = 3;
	} else {
		fprintf(stderr, "usage: %s memory|redis|redis-sharded [case]\n", argv[0]);
		return 2;
	}
	const int fatal[] = {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGINT, SIGTERM};
	for (size_t i = 0; i < ARRAY_SIZE(fatal); i++)
		signal(fatal[i], on_fatal);
	for (size_t i = 0; i < nservers; i++) {
		if (test_redis_start(&servers[i]) < 0) {
			for (size_t k = 0; k <= i; k++)
				test_redis_cleanup(&servers[k]);
			return 1;
		}
		urls[i] = servers[i].url;
		nurls = i + 1;
	}

	run("round trip", test_round_trip);
	run("fifo", test_fifo);
	run("timeouts", test_timeouts);
	run("wake", test_wake);
	run("watch fd", test_watch_fd);
	run("receive many", test_receive_many);
	run("at most once", test_at_most_once);
	run("process channels", test_process_channels);
	run("new channel", test_new_channel);
	run("bad names", test_bad_names);
	run("expiry", test_expiry);
	run("capacity", test_capacity);
	run("send many", test_send_many);
	run("schedule", test_schedule);
	run("groups", test_groups);
	run("group full", test_group_full);
	run("multicast", test_multicast);
	run("history", test_history);
	run("history options", test_history_options);
	run("flush", test_flush);
	run("stats", test_stats);
	run("sessions", test_sessions);

	for (size_t i = 0; i < nservers; i++)
		test_redis_cleanup(&servers[i]);
	return test_done();
}
