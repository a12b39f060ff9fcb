/* The control-message outbox (see outbox.h). */
#include "interface/outbox.h"
#include "common/layer_async.h"
#include "common/log.h"
#include "common/util.h"
#include "laurel/layer.h"

#include <errno.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* A full channel is being read (the application drains it at its own pace): look again soon.
 * A shard that is down: back off as the layer does. */
#define FULL_MIN_MS 20
#define FULL_MAX_MS 200
#define DOWN_MIN_MS 100
#define DOWN_MAX_MS 2000
/* The most messages of one channel sent in one round: one script call's worth. */
#define ROUND_MAX 256

struct entry {
	struct outbox *o;
	struct lane *lane;
	struct laurel_msg *msg;
	bool in_flight;
	struct entry *prev, *next;
};

/* The messages of one channel, in order, and its backoff. */
struct lane {
	char channel[LAUREL_NAME_MAX + 1];
	struct entry *head, *tail;
	size_t in_flight;
	int backoff_ms;
	int64_t retry_at; /* monotonic ms; 0: now */
};

struct outbox {
	struct event_base *base;
	struct layer_async *layer;
	size_t max, pending;
	uint64_t dropped;
	struct lane *lanes;
	size_t nlanes;
	struct event *timer, *empty_ev;
	void (*empty_cb)(void *arg);
	void *empty_arg;
	bool freeing;
};

static void pump(struct outbox *o);

static struct lane *lane_of(struct outbox *o, const char *channel)
{
	for (size_t i = 0; i < o->nlanes; i++)
		if (strcmp(o->lanes[i].channel, channel) == 0)
			return &o->lanes[i];
	/* A handful of channels at most: the array never moves once entries point into it. */
	return NULL;
}

static void entry_unlink(struct entry *e)
{
	struct lane *l = e->lane;
	if (e->prev)
		e->prev->next = e->next;
	else
		l->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		l->tail = e->prev;
}

static void entry_free(struct entry *e)
{
	struct outbox *o = e->o;
	entry_unlink(e);
	laurel_msg_free(e->msg);
	free(e);
	o->pending--;
	if (o->pending == 0 && o->empty_cb)
		event_active(o->empty_ev, EV_TIMEOUT, 0);
}

static void arm(struct outbox *o)
{
	int64_t next = INT64_MAX, now = util_now_ms();
	for (size_t i = 0; i < o->nlanes; i++) {
		struct lane *l = &o->lanes[i];
		if (l->head && !l->head->in_flight && l->retry_at && l->retry_at < next)
			next = l->retry_at;
	}
	if (next == INT64_MAX)
		return;
	int64_t ms = next > now ? next - now : 0;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(o->timer, &tv);
}

static void lane_backoff(struct lane *l, bool full)
{
	int min = full ? FULL_MIN_MS : DOWN_MIN_MS, max = full ? FULL_MAX_MS : DOWN_MAX_MS;
	l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 : min;
	if (l->backoff_ms < min)
		l->backoff_ms = min;
	if (l->backoff_ms > max)
		l->backoff_ms = max;
	l->retry_at = util_now_ms() + l->backoff_ms;
}

/* After an answer: once the lane has none in flight, send the rest now, or arm its retry. */
static void settled(struct outbox *o, struct lane *l)
{
	if (l->in_flight)
		return;
	if (l->retry_at)
		arm(o);
	else
		pump(o);
}

static void on_sent(int status, void *arg)
{
	struct entry *e = arg;
	struct outbox *o = e->o;
	struct lane *l = e->lane;
	e->in_flight = false;
	l->in_flight--;
	if (status == -ECANCELED || o->freeing)
		return; /* outbox_free takes it */
	if (status == 0) {
		entry_free(e);
		l->backoff_ms = 0; /* the channel takes messages: a failure after this retries soon */
		settled(o, l);
		return;
	}
	if (status != LAUREL_FULL && status != -ENOTCONN) {
		/* The server answered something a retry would get again (-EPROTO): dropping it is
		 * better than holding every later message of the channel behind it. */
		o->dropped++;
		layer_async_count_dropped(o->layer, 1);
		log_limited(LOG_ERROR, "a %s was refused by the channel layer (%d); dropped",
			    l->channel, status);
		entry_free(e);
		settled(o, l);
		return;
	}
	/* Full, or the shard went away: this one and the later ones of its channel wait. */
	if (!l->retry_at)
		lane_backoff(l, status == LAUREL_FULL);
	if (l->in_flight == 0)
		arm(o);
}

/* Sends what may go now: per channel, everything from the head once its backoff is over (the
 * sends of one loop pass go out in one script call). */
static void pump(struct outbox *o)
{
	int64_t now = util_now_ms();
	for (size_t i = 0; i < o->nlanes; i++) {
		struct lane *l = &o->lanes[i];
		if (l->retry_at && now < l->retry_at)
			continue;
		if (l->in_flight)
			continue; /* a retry waits for every answer, so the order is kept */
		l->retry_at = 0;
		size_t n = 0;
		for (struct entry *e = l->head; e && n < ROUND_MAX; e = e->next, n++) {
			int rc = layer_async_send(o->layer, l->channel, e->msg, on_sent, e);
			if (rc < 0) {
				lane_backoff(l, false);
				break;
			}
			e->in_flight = true;
			l->in_flight++;
		}
	}
	arm(o);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	pump(arg);
}

static void on_empty(evutil_socket_t fd, short what, void *arg)
{
	struct outbox *o = arg;
	void (*cb)(void *) = o->empty_cb;
	if (!cb || o->pending)
		return;
	o->empty_cb = NULL;
	cb(o->empty_arg);
}

void outbox_new(struct outbox **out, struct event_base *base, struct layer_async *layer,
		size_t max)
{
	struct outbox *o = xcalloc(1, sizeof(*o));
	o->base = base;
	o->layer = layer;
	o->max = max;
	o->lanes = xcalloc(8, sizeof(*o->lanes));
	o->timer = evtimer_new(base, on_timer, o);
	o->empty_ev = event_new(base, -1, 0, on_empty, o);
	*out = o;
}

void outbox_free(struct outbox *o)
{
	if (!o)
		return;
	o->freeing = true;
	if (o->pending)
		log_warn("%zu control messages (disconnects) never reached the channel layer",
			 o->pending);
	for (size_t i = 0; i < o->nlanes; i++)
		while (o->lanes[i].head) {
			o->dropped++;
			entry_free(o->lanes[i].head);
		}
	event_free(o->timer);
	event_free(o->empty_ev);
	free(o->lanes);
	free(o);
}

int outbox_send(struct outbox *o, const char *channel, struct laurel_msg *msg)
{
	if (!laurel_valid_channel(channel)) {
		laurel_msg_free(msg);
		return -EINVAL;
	}
	if (o->pending >= o->max) {
		o->dropped++;
		layer_async_count_dropped(o->layer, 1);
		laurel_msg_free(msg);
		log_limited(LOG_ERROR,
			    "outbox full (%zu control messages wait): a %s was dropped; %llu dropped "
			    "since the start",
			    o->pending, channel, (unsigned long long)o->dropped);
		return -ENOBUFS;
	}
	struct lane *l = lane_of(o, channel);
	if (!l) {
		if (o->nlanes == 8) {
			laurel_msg_free(msg);
			return -EINVAL; /* only a few control channels exist */
		}
		l = &o->lanes[o->nlanes++];
		snprintf(l->channel, sizeof(l->channel), "%s", channel);
	}
	struct entry *e = xcalloc(1, sizeof(*e));
	e->o = o;
	e->lane = l;
	e->msg = msg;
	e->prev = l->tail;
	if (l->tail)
		l->tail->next = e;
	else
		l->head = e;
	l->tail = e;
	o->pending++;
	/* Straight out when nothing of its channel waits: the usual case. */
	if (l->head == e && !l->retry_at) {
		int rc = layer_async_send(o->layer, channel, msg, on_sent, e);
		if (rc == -EMSGSIZE || rc == -EINVAL) {
			entry_free(e);
			return rc;
		}
		if (rc < 0) {
			lane_backoff(l, false);
			arm(o);
		} else {
			e->in_flight = true;
			l->in_flight++;
		}
	} else if (!l->in_flight && !l->retry_at) {
		pump(o);
	}
	return 0;
}

size_t outbox_pending(const struct outbox *o)
{
	return o->pending;
}

uint64_t outbox_dropped(const struct outbox *o)
{
	return o->dropped;
}

void outbox_on_empty(struct outbox *o, void (*cb)(void *arg), void *arg)
{
	o->empty_cb = cb;
	o->empty_arg = arg;
	if (o->pending == 0)
		event_active(o->empty_ev, EV_TIMEOUT, 0);
}
