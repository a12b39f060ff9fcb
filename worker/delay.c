/* The asgi.delay service, on the layer's scheduled messages (laurel_layer_schedule and
 * laurel_layer_take_due). */
#include "worker/delay.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/layer.h"
#include "common/log.h"
#include "common/util.h"
#include "worker/consumer.h"
#include "worker/stats.h"

#define TAKE_BATCH 64
#define RECEIVE_BATCH 64
/* The longest wait between two looks at the stop flag when no descriptor is watched. */
#define STOP_CHECK_MS 1000

struct delay {
	struct laurel_layer *layer;
	bool down;   /* the layer failed; logged once */
	bool shared; /* the layer is borrowed */
	struct wstats_proc *stats; /* may be NULL */
};

void delay_set_stats(struct delay *d, struct wstats_proc *p)
{
	d->stats = p;
	if (p)
		p->delay = true;
}

int64_t delay_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int delay_new(struct delay **out, const struct laurel_layer_options *o, char *err, size_t errlen)
{
	const char *url = o->nurls ? o->urls[0] : LAYER_DEFAULT_URL;
	if (strncmp(url, "memory:", 7) == 0) {
		snprintf(err, errlen,
			 "the delay service needs a Redis layer, not %s (a memory layer lives and "
			 "dies with one process)",
			 url);
		return -EINVAL;
	}
	struct delay *d = xcalloc(1, sizeof(*d));
	int rc = laurel_layer_new(&d->layer, o, err, errlen);
	if (rc) {
		free(d);
		return rc;
	}
	*out = d;
	return 0;
}

void delay_new_shared(struct delay **out, struct laurel_layer *layer)
{
	struct delay *d = xcalloc(1, sizeof(*d));
	d->layer = layer;
	d->shared = true;
	*out = d;
}

void delay_free(struct delay *d)
{
	if (!d)
		return;
	if (!d->shared)
		laurel_layer_free(d->layer);
	free(d);
}

struct laurel_layer *delay_layer(struct delay *d)
{
	return d->layer;
}

static void layer_failed(struct delay *d, const char *what, int rc)
{
	/* An outage (-ENOTCONN) is logged by the layer, once; anything else here. */
	if (!d->down && rc != -ENOTCONN)
		log_warn("delay service: cannot %s: %s", what, laurel_layer_error(d->layer));
	d->down = true;
}

static void layer_ok(struct delay *d)
{
	if (d->down)
		log_debug("delay service: the layer answers again");
	d->down = false;
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
		if (d->stats)
			d->stats->delayed_rejected++;
		return -EINVAL;
	}
	struct laurel_msg *m = laurel_msg_new();
	laurel_value_copy(m, laurel_msg_root(m), content);
	int rc = laurel_layer_schedule(d->layer, channel, m, delay_now_ms() + delay);
	laurel_msg_free(m);
	if (rc) {
		log_error("channel %s, to channel %s: cannot store the delayed message: %s; dropped",
			  DELAY_CHANNEL, channel, laurel_layer_error(d->layer));
		return rc;
	}
	if (d->stats)
		d->stats->delayed_accepted++;
	log_debug("channel %s, to channel %s: stored, due in %lld ms", DELAY_CHANNEL, channel,
		  (long long)delay);
	return 0;
}

int delay_deliver(struct delay *d, int64_t now_ms, int64_t *next_ms)
{
	struct laurel_due due[TAKE_BATCH];
	struct consumer_outbox ob = {0};
	int sent = 0;
	for (;;) {
		size_t got = 0;
		int rc = laurel_layer_take_due(d->layer, now_ms, due, TAKE_BATCH, &got, next_ms);
		if (rc) {
			layer_failed(d, "take due messages", rc);
			consumer_outbox_fini(&ob);
			return -ENOTCONN;
		}
		layer_ok(d);
		/* One pipelined send for the lot. */
		for (size_t i = 0; i < got; i++)
			consumer_outbox_add(&ob, due[i].channel, due[i].msg, "delay service");
		sent += (int)got - (int)consumer_outbox_flush(d->layer, &ob, CONSUMER_FULL_WAIT_MS);
		if (got > 0)
			log_debug("delay service: %zu delayed messages sent", got);
		if (got < TAKE_BATCH)
			break;
	}
	consumer_outbox_fini(&ob);
	if (d->stats)
		d->stats->delayed_sent += (uint64_t)sent;
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
			wait = 100; /* Redis is down: the layer backs off by itself */
		} else if (next >= 0) {
			int64_t until = next - delay_now_ms();
			if (until < wait)
				wait = until < 0 ? 0 : (int)until;
		}
		size_t n = 0;
		int rc = laurel_layer_receive(d->layer, chans, 1, wait, got, RECEIVE_BATCH, &n);
		if (rc < 0 && d->stats) {
			d->stats->receive_errors++;
			d->stats->layer_down = true;
		} else if (d->stats) {
			d->stats->turned_ms = util_now_ms();
			d->stats->layer_down = false;
		}
		if (rc < 0) {
			if (!layer_down && rc != -ENOTCONN)
				log_warn("cannot receive from %s: %s", DELAY_CHANNEL,
					 laurel_layer_error(d->layer));
			layer_down = true;
			struct timespec ts = {.tv_nsec = 100 * 1000000L};
			nanosleep(&ts, NULL);
			continue;
		}
		if (layer_down)
			log_debug("receiving from %s again", DELAY_CHANNEL);
		layer_down = false;
		for (size_t i = 0; i < n; i++) {
			delay_accept(d, got[i].msg);
			laurel_received_fini(&got[i]);
		}
	}
	free(got);
	return 0;
}
