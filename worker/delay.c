/* The asgi.delay service. This is the one place outside common/ that talks to Redis with
 * hiredis directly: the layer API has no sorted set. docs/worker.md proposes the layer calls that
 * would replace the three commands here (add, next due, take due). */
#include "worker/delay.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/layer.h"
#include "common/log.h"
#include "common/util.h"
#include "worker/consumer.h"

#define ID_LEN 16
#define TAKE_BATCH 64
#define RECEIVE_BATCH 64
/* The longest wait between two looks at the stop flag. */
#define STOP_CHECK_MS 1000

/* Takes up to ARGV[2] members due at ARGV[1], atomically, so that two services never both send
 * one. */
static const char take_script[] =
	"local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])\n"
	"if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end\n"
	"return due\n";

struct delay {
	struct laurel_layer *layer;
	struct layer_endpoint ep;
	redisContext *c;
	char key[128];
	int connect_timeout_ms;
	int command_timeout_ms;
	int64_t retry_at; /* monotonic ms before which no reconnect is tried */
	int backoff_ms;
	bool down;
	struct util_rng rng;
};

int64_t delay_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int delay_new(struct delay **out, const struct laurel_layer_options *o, char *err, size_t errlen)
{
	struct delay *d = xcalloc(1, sizeof(*d));
	const char *url = o->nurls ? o->urls[0] : "redis://127.0.0.1:6379";
	int rc;
	if ((rc = laurel_layer_new(&d->layer, o, err, errlen)))
		goto fail;
	if (strncmp(url, "memory:", 7) == 0) {
		snprintf(err, errlen, "the delay service needs a Redis layer, not %s", url);
		rc = -EINVAL;
		goto fail;
	}
	if ((rc = layer_endpoint_parse(&d->ep, url, err, errlen)))
		goto fail;
	snprintf(d->key, sizeof(d->key), "%s:delay", o->prefix ? o->prefix : "asgi:");
	d->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 2000;
	d->command_timeout_ms = o->command_timeout_ms > 0 ? o->command_timeout_ms : 5000;
	util_rng_init(&d->rng);
	*out = d;
	return 0;
fail:
	delay_free(d);
	return rc;
}

void delay_free(struct delay *d)
{
	if (!d)
		return;
	if (d->c)
		redisFree(d->c);
	layer_endpoint_fini(&d->ep);
	laurel_layer_free(d->layer);
	free(d);
}

static struct timeval tv_of(int ms)
{
	return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
}

static void disconnect(struct delay *d, const char *why)
{
	if (!d->down)
		log_warn("delay service: Redis %s: %s", d->ep.desc, why);
	d->down = true;
	if (d->c)
		redisFree(d->c);
	d->c = NULL;
	d->backoff_ms = d->backoff_ms ? d->backoff_ms * 2 : 100;
	if (d->backoff_ms > 5000)
		d->backoff_ms = 5000;
	d->retry_at = util_now_ms() + d->backoff_ms;
}

static int connect_store(struct delay *d)
{
	if (d->c)
		return 0;
	if (util_now_ms() < d->retry_at)
		return -ENOTCONN;
	struct timeval tv = tv_of(d->connect_timeout_ms);
	redisContext *c = d->ep.host ? redisConnectWithTimeout(d->ep.host, d->ep.port, tv)
				     : redisConnectUnixWithTimeout(d->ep.path, tv);
	if (!c || c->err) {
		char why[256];
		snprintf(why, sizeof(why), "cannot connect: %s", c ? c->errstr : "out of memory");
		if (c)
			redisFree(c);
		disconnect(d, why);
		return -ENOTCONN;
	}
	d->c = c;
	redisSetTimeout(c, tv_of(d->command_timeout_ms));
	redisReply *r = NULL;
	if (d->ep.password)
		r = d->ep.user ? redisCommand(c, "AUTH %s %s", d->ep.user, d->ep.password)
			       : redisCommand(c, "AUTH %s", d->ep.password);
	if (!r && d->ep.password) {
		disconnect(d, "AUTH failed");
		return -ENOTCONN;
	}
	bool bad = r && r->type == REDIS_REPLY_ERROR;
	freeReplyObject(r);
	r = NULL;
	if (!bad && d->ep.db) {
		r = redisCommand(c, "SELECT %d", d->ep.db);
		bad = !r || r->type == REDIS_REPLY_ERROR;
		freeReplyObject(r);
	}
	if (bad) {
		disconnect(d, "AUTH or SELECT failed");
		return -ENOTCONN;
	}
	if (d->down)
		log_info("delay service: Redis %s is back", d->ep.desc);
	d->down = false;
	d->backoff_ms = 0;
	return 0;
}

/* Runs a command; NULL (and the connection dropped, logged) when Redis failed. */
static redisReply *command(struct delay *d, int argc, const char **argv, const size_t *lens)
{
	if (connect_store(d))
		return NULL;
	redisReply *r = redisCommandArgv(d->c, argc, argv, lens);
	if (!r) {
		disconnect(d, d->c->errstr);
		return NULL;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		log_error("delay service: Redis %s answered: %s", d->ep.desc, r->str);
		freeReplyObject(r);
		return NULL;
	}
	return r;
}

int delay_accept(struct delay *d, const struct laurel_msg *msg)
{
	const char *channel = laurel_msg_get_text(msg, "channel", NULL);
	const struct laurel_value *content = laurel_msg_get(msg, "content");
	int64_t delay = -1;
	const char *why = NULL;
	if (!channel)
		why = "no text \"channel\"";
	else if (!laurel_valid_channel(channel))
		why = "\"channel\" is not a valid channel name";
	else if (laurel_msg_get_int(msg, "delay", &delay))
		why = "no integer \"delay\"";
	else if (delay < 0)
		why = "a negative \"delay\"";
	else if (delay > INT64_C(10) * 365 * 86400 * 1000)
		why = "a \"delay\" of more than ten years";
	else if (!content || content->type != LAUREL_MAP)
		why = "no map \"content\"";
	if (why) {
		log_warn("channel %s, to channel %s: bad delay message (%s); dropped",
			 DELAY_CHANNEL,
			 channel && laurel_valid_channel(channel) ? channel : "(invalid)", why);
		return -EINVAL;
	}
	struct laurel_msg *stored = laurel_msg_new();
	laurel_msg_set_text(stored, "channel", channel);
	laurel_value_copy(stored, laurel_map_put(stored, laurel_msg_root(stored), "content"),
			  content);
	char *data;
	size_t len;
	laurel_msg_encode(stored, &data, &len);
	laurel_msg_free(stored);
	char *member = xmalloc(ID_LEN + len);
	util_rng_hex(&d->rng, member, ID_LEN);
	memcpy(member + ID_LEN, data, len);
	free(data);
	char score[32];
	snprintf(score, sizeof(score), "%lld", (long long)(delay_now_ms() + delay));
	const char *argv[] = {"ZADD", d->key, score, member};
	size_t lens[] = {4, strlen(d->key), strlen(score), ID_LEN + len};
	redisReply *r = command(d, 4, argv, lens);
	free(member);
	if (!r) {
		log_error("channel %s, to channel %s: cannot store the delayed message; dropped",
			  DELAY_CHANNEL, channel);
		return -ENOTCONN;
	}
	freeReplyObject(r);
	log_debug("channel %s, to channel %s: stored, due in %lld ms", DELAY_CHANNEL, channel,
		  (long long)delay);
	return 0;
}

/* Sends one stored member (ID + {channel, content}). */
static void send_member(struct delay *d, const char *member, size_t len)
{
	struct laurel_msg *stored = NULL;
	const char *channel;
	const struct laurel_value *content;
	if (len <= ID_LEN || laurel_msg_decode(member + ID_LEN, len - ID_LEN, NULL, &stored) ||
	    !(channel = laurel_msg_get_text(stored, "channel", NULL)) ||
	    !(content = laurel_msg_get(stored, "content")) || content->type != LAUREL_MAP) {
		log_error("delay service: a stored member of %s does not decode; dropped", d->key);
		laurel_msg_free(stored);
		return;
	}
	struct laurel_msg *m = laurel_msg_new();
	laurel_value_copy(m, laurel_msg_root(m), content);
	int rc = consumer_send_patiently(d->layer, channel, m, CONSUMER_FULL_WAIT_MS);
	if (rc == LAUREL_FULL)
		log_warn("channel %s stayed full for %d ms; delayed message dropped", channel,
			 CONSUMER_FULL_WAIT_MS);
	else if (rc)
		log_error("channel %s: cannot send the delayed message: %s; dropped", channel,
			  laurel_layer_error(d->layer));
	else
		log_debug("channel %s: delayed message sent", channel);
	laurel_msg_free(m);
	laurel_msg_free(stored);
}

int delay_deliver(struct delay *d, int64_t now_ms, int64_t *next_ms)
{
	char now[32], max[16];
	int sent = 0;
	*next_ms = -1;
	snprintf(now, sizeof(now), "%lld", (long long)now_ms);
	snprintf(max, sizeof(max), "%d", TAKE_BATCH);
	for (;;) {
		const char *argv[] = {"EVAL", take_script, "1", d->key, now, max};
		size_t lens[6];
		for (size_t i = 0; i < 6; i++)
			lens[i] = strlen(argv[i]);
		redisReply *r = command(d, 6, argv, lens);
		if (!r)
			return -ENOTCONN;
		size_t n = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
		for (size_t i = 0; i < n; i++)
			if (r->element[i]->type == REDIS_REPLY_STRING) {
				send_member(d, r->element[i]->str, r->element[i]->len);
				sent++;
			}
		freeReplyObject(r);
		if (n < TAKE_BATCH)
			break;
	}
	const char *argv[] = {"ZRANGE", d->key, "0", "0", "WITHSCORES"};
	size_t lens[5];
	for (size_t i = 0; i < 5; i++)
		lens[i] = strlen(argv[i]);
	redisReply *r = command(d, 5, argv, lens);
	if (!r)
		return -ENOTCONN;
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[1]->str)
		*next_ms = (int64_t)strtod(r->element[1]->str, NULL);
	freeReplyObject(r);
	return sent;
}

int delay_run(struct delay *d, volatile sig_atomic_t *stop)
{
	struct laurel_received *got = xcalloc(RECEIVE_BATCH, sizeof(*got));
	const char *chans[] = {DELAY_CHANNEL};
	bool layer_down = false;
	while (!*stop) {
		int64_t next = -1;
		int wait = STOP_CHECK_MS;
		if (delay_deliver(d, delay_now_ms(), &next) < 0) {
			wait = 100; /* Redis is down: the store backs off by itself */
		} else if (next >= 0) {
			int64_t until = next - delay_now_ms();
			if (until < wait)
				wait = until < 0 ? 0 : (int)until;
		}
		size_t n = 0;
		int rc = laurel_layer_receive(d->layer, chans, 1, wait, got, RECEIVE_BATCH, &n);
		if (rc < 0) {
			if (!layer_down)
				log_warn("cannot receive from %s: %s", DELAY_CHANNEL,
					 laurel_layer_error(d->layer));
			layer_down = true;
			struct timespec ts = {.tv_nsec = 100 * 1000000L};
			nanosleep(&ts, NULL);
			continue;
		}
		if (layer_down)
			log_info("receiving from %s again", DELAY_CHANNEL);
		layer_down = false;
		for (size_t i = 0; i < n; i++) {
			delay_accept(d, got[i].msg);
			laurel_received_fini(&got[i]);
		}
	}
	free(got);
	return 0;
}
