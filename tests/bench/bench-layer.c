/* Channel layer round trips against the floor of any Redis-mediated design: a raw RPUSH/BLPOP
 * ping-pong between two hiredis clients on the same Redis. Prints numbers, asserts nothing.
 *
 * Usage: bench-layer [REDIS_URL]   (without one, starts its own redis-server on a free port) */
#include "common/util.h"
#include "laurel/layer.h"
#include "tests/lib/test.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdlib.h>

#define ROUNDS 5
#define SECONDS 2

static int port;
static const char *url;
static volatile int stop;

static void *raw_echo(void *arg)
{
	redisContext *c = redisConnect("127.0.0.1", port);
	while (!stop) {
		redisReply *r = redisCommand(c, "BLPOP bench:ping 0.2");
		if (r && r->type == REDIS_REPLY_ARRAY)
			freeReplyObject(redisCommand(c, "RPUSH bench:pong %b", r->element[1]->str,
						     r->element[1]->len));
		freeReplyObject(r);
	}
	redisFree(c);
	return NULL;
}

static double raw_round_trips(void)
{
	stop = 0;
	pthread_t t;
	pthread_create(&t, NULL, raw_echo, NULL);
	redisContext *c = redisConnect("127.0.0.1", port);
	const char payload[] = "0123456789012345678901234567890123456789012345678901234567890123";
	int64_t t0 = util_now_ms(), n = 0;
	while (util_now_ms() - t0 < SECONDS * 1000) {
		freeReplyObject(redisCommand(c, "RPUSH bench:ping %s", payload));
		freeReplyObject(redisCommand(c, "BLPOP bench:pong 0"));
		n++;
	}
	double rate = n * 1000.0 / (double)(util_now_ms() - t0);
	stop = 1;
	pthread_join(t, NULL);
	freeReplyObject(redisCommand(c, "DEL bench:ping bench:pong"));
	redisFree(c);
	return rate;
}

static struct laurel_layer *layer(void)
{
	struct laurel_layer_options o = {.urls = &url, .nurls = 1};
	struct laurel_layer *l = NULL;
	if (laurel_layer_new(&l, &o, NULL, 0) < 0) {
		fprintf(stderr, "bench: bad layer URL\n");
		exit(2);
	}
	return l;
}

static void *layer_echo(void *arg)
{
	struct laurel_layer *l = layer();
	const char *chans[] = {"bench.ping"};
	while (!stop) {
		struct laurel_received r;
		size_t got = 0;
		laurel_layer_receive(l, chans, 1, 200, &r, 1, &got);
		if (got) {
			laurel_layer_send(l, "bench.pong?reply", r.msg);
			laurel_received_fini(&r);
		}
	}
	laurel_layer_free(l);
	return NULL;
}

static double layer_round_trips(void)
{
	stop = 0;
	pthread_t t;
	pthread_create(&t, NULL, layer_echo, NULL);
	struct laurel_layer *l = layer();
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_text(m, "reply_channel", "bench.pong?reply");
	laurel_msg_set_text(m, "text", "0123456789012345678901234567890123456789");
	const char *chans[] = {"bench.pong?reply"};
	int64_t t0 = util_now_ms(), n = 0;
	while (util_now_ms() - t0 < SECONDS * 1000) {
		laurel_layer_send(l, "bench.ping", m);
		struct laurel_received r;
		size_t got = 0;
		laurel_layer_receive(l, chans, 1, -1, &r, 1, &got);
		if (got)
			laurel_received_fini(&r);
		n++;
	}
	double rate = n * 1000.0 / (double)(util_now_ms() - t0);
	stop = 1;
	pthread_join(t, NULL);
	laurel_msg_free(m);
	laurel_layer_flush(l);
	laurel_layer_free(l);
	return rate;
}

/* Throughput with batching: 20,000 sends, then receives taking up to 64 at a time. */
static void layer_batch(double *send_rate, double *recv_rate)
{
	struct laurel_layer_options o = {.urls = &url, .nurls = 1, .capacity = 100000};
	struct laurel_layer *l = NULL;
	laurel_layer_new(&l, &o, NULL, 0);
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_text(m, "text", "0123456789012345678901234567890123456789");
	int64_t t0 = util_now_ms();
	for (int i = 0; i < 20000; i++)
		laurel_layer_send(l, "bench.batch", m);
	int64_t t1 = util_now_ms();
	const char *chans[] = {"bench.batch"};
	size_t total = 0;
	struct laurel_received r[64];
	while (total < 20000) {
		size_t got = 0;
		if (laurel_layer_receive(l, chans, 1, 1000, r, 64, &got) < 0 || got == 0)
			break;
		for (size_t i = 0; i < got; i++)
			laurel_received_fini(&r[i]);
		total += got;
	}
	int64_t t2 = util_now_ms();
	*send_rate = 20000 * 1000.0 / (double)(t1 - t0 ? t1 - t0 : 1);
	*recv_rate = (double)total * 1000.0 / (double)(t2 - t1 ? t2 - t1 : 1);
	laurel_msg_free(m);
	laurel_layer_flush(l);
	laurel_layer_free(l);
}

/* Group sends per second to a 10-member group (one laurel interface's connections: one multicast
 * each), to a plain group and to one with a history (docs/recovery.md). */
static double group_sends(bool history)
{
	const struct laurel_history_rule rule = {"hist.*", 200, 600};
	struct laurel_layer_options o = {.urls = &url, .nurls = 1, .capacity = 1000000,
					 .histories = &rule, .nhistories = 1};
	struct laurel_layer *l = NULL;
	laurel_layer_new(&l, &o, NULL, 0);
	const char *group = history ? "hist.room" : "plain.room";
	laurel_layer_announce(l, "bench.iface!", 60);
	for (int i = 0; i < 10; i++) {
		char member[64];
		snprintf(member, sizeof(member), "bench.iface!m%d", i);
		laurel_layer_group_add(l, group, member);
	}
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_text(m, "text", "{\"type\": \"message\", \"user\": \"alice\", "
				       "\"text\": \"hello, room\"}");
	int64_t t0 = util_now_ms(), n = 0;
	while (util_now_ms() - t0 < SECONDS * 1000) {
		laurel_layer_group_send(l, group, m, NULL);
		n++;
	}
	double rate = n * 1000.0 / (double)(util_now_ms() - t0);
	laurel_msg_free(m);
	laurel_layer_flush(l);
	laurel_layer_free(l);
	return rate;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v)
{
	qsort(v, ROUNDS, sizeof(double), cmp);
	return v[ROUNDS / 2];
}

int main(int argc, char **argv)
{
	struct test_redis r = {0};
	char own[128];
	if (argc > 1) {
		url = argv[1];
		if (sscanf(url, "redis://127.0.0.1:%d", &port) != 1) {
			fprintf(stderr, "bench: give a redis://127.0.0.1:PORT URL\n");
			return 2;
		}
	} else {
		if (test_redis_start(&r) < 0)
			return 1;
		port = r.port;
		snprintf(own, sizeof(own), "%s", r.url);
		url = own;
	}
	double raw[ROUNDS], lay[ROUNDS], snd[ROUNDS], rcv[ROUNDS], gp[ROUNDS], gh[ROUNDS];
	for (int i = 0; i < ROUNDS; i++) {
		raw[i] = raw_round_trips();
		lay[i] = layer_round_trips();
		layer_batch(&snd[i], &rcv[i]);
		if (i % 2) { /* alternating which goes first */
			gp[i] = group_sends(false);
			gh[i] = group_sends(true);
		} else {
			gh[i] = group_sends(true);
			gp[i] = group_sends(false);
		}
	}
	double rm = median(raw), lm = median(lay);
	printf("round trips/s (median of %d x %d s, send + blocking receive, two clients):\n", ROUNDS,
	       SECONDS);
	printf("  raw RPUSH/BLPOP   %10.0f\n", rm);
	printf("  laurel layer      %10.0f   (%.2f x raw; each layer hop is a send script and a\n"
	       "                                  BLPOP + pop script, where raw is RPUSH + BLPOP)\n",
	       lm, lm / rm);
	printf("batched, 20,000 messages:\n");
	printf("  send              %10.0f msg/s\n", median(snd));
	printf("  receive (max 64)  %10.0f msg/s\n", median(rcv));
	double gpm = median(gp), ghm = median(gh);
	printf("group sends to 10 members of one interface (one multicast each):\n");
	printf("  plain group       %10.0f /s\n", gpm);
	printf("  with a history    %10.0f /s   (cost %.2f x plain; target <= 1.3)\n", ghm,
	       gpm / ghm);
	if (argc <= 1)
		test_redis_cleanup(&r);
	return 0;
}
