/* The asynchronous Redis client (see layer_async.h). One command connection per shard for sends
 * and the registry; one connection per listened channel and shard, dedicated to its BLPOP loop.
 *
 * Scripts: every new connection queues SCRIPT LOAD for each script before anything else, so the
 * EVALSHA calls queued behind it always find them; a NOSCRIPT (someone ran SCRIPT FLUSH) loads
 * them again and resends the same command.
 *
 * Outages: a connection that breaks, or whose server answers an error that means it cannot serve
 * us now (layer_error_kind; on a listening connection, any error), is dropped and made again after
 * a backoff. A shard's outage starts with the first connection that fails and ends when every
 * connection that failed has had a command answered again — not when it merely reconnects, since
 * a replica or a user without permissions accepts connections and refuses commands. */
#include "common/layer_async.h"
#include "common/layer.h"
#include "common/redis_layout.h"
#include "common/log.h"
#include "common/sentinel.h"
#include "common/util.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define BATCH 64

struct layer_async;

/* One connection with its reconnect timer. */
struct conn {
	struct layer_async *a;
	size_t shard;
	redisAsyncContext *ac;
	bool connected;
	bool failing; /* failed since its last answered command: counted in shard.nfailing */
	int backoff_ms;
	struct event *timer; /* reconnect after backoff, or give up a slow connect */
	void (*on_up)(struct conn *c);
	struct listener *listener; /* NULL for a command connection */
	uint64_t master_gen;	   /* a Sentinel shard's: the master it was made for */
	/* A listener's: its last pop found nothing ready, and how many direct entries BLPOP has
	 * handed over one by one since (see on_blpop). */
	bool idle;
	unsigned direct_run;
};

/* Local mode: messages a receiving thread took, waiting for the event loop. */
struct inbox {
	pthread_mutex_t lock;
	struct laurel_received *items;
	size_t n, cap;
	int efd;
	struct event *ev;
	pthread_t thread;
	bool running;
	volatile bool stop;
};

struct listener {
	struct layer_async *a;
	struct inbox *inbox; /* local mode */
	char channel[LAUREL_NAME_MAX + 1];
	char key[LAUREL_NAME_MAX + 80];
	layer_async_message_cb cb;
	void *arg;
	struct conn *conns; /* one per shard the channel can be on */
	size_t nconns;
};

struct announcement {
	char prefix[LAUREL_NAME_MAX + 1];
	int ttl_s;
	struct event *timer;
	struct layer_async *a;
};

struct batch_cb;

/* The most sends in one script call; a full batch goes out at once. */
#define SEND_BATCH_MAX 256

struct shard {
	struct layer_endpoint ep;
	struct conn cmd;
	struct layer_outage outage;
	size_t nfailing; /* connections of this shard that failed and have not worked since */
	bool marked;	 /* the markers of the announcements were set here (layer_async_on_reset) */
	/* Sends waiting for the end of the loop iteration, to go out in one send_many script call,
	 * and whom to tell of each. */
	struct layer_batch queued;
	struct batch_cb *cbs;
	size_t capcbs;
	struct sentinel *sentinel; /* a redis+sentinel:// shard's watcher, else NULL */
	struct event *master_ev;   /* its descriptor: the master changed */
};

/* Local mode: a send's callback, fired from the loop. */
struct deferred {
	struct layer_async *a;
	struct event *ev;
	layer_async_done_cb cb;
	void *arg;
	int status;
	struct deferred *prev, *next;
};

struct layer_async {
	struct event_base *base;
	struct laurel_layer *shared; /* local mode: the in-memory layer */
	struct deferred *deferred;
	struct layer_config cfg;
	struct shard *shards;
	size_t nshards;
	size_t rr;
	struct util_rng rng;
	struct listener **listeners;
	size_t nlisteners;
	struct announcement **announcements;
	size_t nannouncements;
	layer_async_reset_cb on_reset;
	void *reset_arg;
	struct event *flush_ev; /* sends the queued sends, once per loop iteration */
	bool flush_armed;
	uint64_t dropped_pending, dropped_sending; /* layer_async_count_dropped */
	bool freeing;
	struct layer_async_stats stats; /* sends and round trips (the rest is added when read) */
};

/* One send of a batch: whom to tell. */
struct batch_cb {
	layer_async_done_cb cb;
	void *arg;
};

/* A command in flight: its callback, and the formatted command for a NOSCRIPT resend. */
struct pending {
	struct layer_async *a;
	size_t shard;
	layer_async_done_cb cb;
	void *arg;
	char *cmd;
	size_t cmdlen;
	bool retried;
	char channel[LAUREL_NAME_MAX + 1];
	struct batch_cb *batch; /* a send_many: one callback per message, in order */
	size_t nbatch;
	int64_t sent_us; /* when it was handed to hiredis (monotonic) */
};

static void conn_start(struct conn *c);

/* --- Outage logging -------------------------------------------------------------------------- */

static void conn_failing(struct conn *c, const char *why)
{
	struct shard *s = &c->a->shards[c->shard];
	if (c->a->freeing)
		return;
	if (!c->failing) {
		c->failing = true;
		s->nfailing++;
	}
	if (s->sentinel)
		sentinel_suspect(s->sentinel); /* a failover, maybe: ask the sentinels now */
	layer_outage_begin(&s->outage, s->ep.desc, why);
}

/* A command on c was answered (with anything but an outage): c works again. */
static void conn_ok(struct conn *c)
{
	struct shard *s = &c->a->shards[c->shard];
	c->backoff_ms = 0;
	if (c->failing) {
		c->failing = false;
		if (--s->nfailing == 0)
			layer_outage_end(&s->outage, s->ep.desc);
	}
}

/* A call refused at once because the shard is down. */
static int refuse(struct layer_async *a, size_t sh)
{
	a->shards[sh].outage.refused++;
	return layer_fail(-ENOTCONN, "cannot reach %s", a->shards[sh].ep.desc);
}

/* --- Connections ----------------------------------------------------------------------------- */

static void schedule(struct conn *c, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(c->timer, &tv);
}

static void conn_lost(struct conn *c, const char *why)
{
	c->ac = NULL;
	c->connected = false;
	if (c->a->freeing)
		return;
	conn_failing(c, why);
	c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : BACKOFF_MIN_MS;
	if (c->backoff_ms > BACKOFF_MAX_MS)
		c->backoff_ms = BACKOFF_MAX_MS;
	schedule(c, c->backoff_ms);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	struct conn *c = ac->data;
	if (!c)
		return;
	evtimer_del(c->timer);
	if (status != REDIS_OK) {
		/* hiredis frees the context after this returns. */
		conn_lost(c, ac->errstr[0] ? ac->errstr : "connection failed");
		return;
	}
	/* The backoff and the outage end with the first command answered (conn_ok). */
	c->connected = true;
	if (c->on_up)
		c->on_up(c);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	struct conn *c = ac->data;
	if (!c)
		return;
	conn_lost(c, ac->errstr[0] ? ac->errstr : "connection closed");
}

static void conn_fail(struct conn *c, const char *why);

static void on_setup_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	redisReply *r = reply;
	struct conn *c = ac->data;
	if (!r || r->type != REDIS_REPLY_ERROR || !c)
		return;
	char why[256];
	snprintf(why, sizeof(why), "%s: %s", (const char *)privdata, r->str);
	if (layer_error_kind(r->str) != LAYER_ERR_OTHER)
		conn_fail(c, why);
	else
		log_error("%s: %s", c->a->shards[c->shard].ep.desc, why);
}

static void queue_script_loads(redisAsyncContext *ac)
{
	for (int i = 0; i < SCRIPT_COUNT; i++)
		redisAsyncCommand(ac, on_setup_reply, "SCRIPT LOAD", "SCRIPT LOAD %s",
				  layer_script_source((enum script_id)i));
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	if (c->ac && !c->connected) {
		/* The connect took too long: give up on it (no hiredis callback is running). */
		redisAsyncContext *ac = c->ac;
		ac->data = NULL;
		c->ac = NULL;
		redisAsyncFree(ac);
		conn_lost(c, "connect timed out");
		return;
	}
	if (!c->ac)
		conn_start(c);
}

/* --- hiredis on libevent ---------------------------------------------------------------------
 * hiredis's own libevent adapter re-adds a one-shot read event after every reply and adds and
 * removes a write event around every command: four epoll_ctl calls per command. Here the read
 * event is persistent, and a command is written at the end of the loop iteration that made it,
 * together with the others made in that iteration (one write); only a socket that does not take
 * everything, or a connect still under way, waits for a write event. */
struct hiredis_events {
	redisAsyncContext *ac;
	struct event *rev, *wev, *flush;
	bool reading, writing, flushing;
};

/* The events whose hiredis_write runs now: an addWrite from inside it means the socket is full. */
static _Thread_local struct hiredis_events *in_write;

static void hiredis_read(evutil_socket_t fd, short what, void *arg)
{
	struct hiredis_events *e = arg;
	redisAsyncHandleRead(e->ac); /* may free e */
}

static void hiredis_write(evutil_socket_t fd, short what, void *arg)
{
	struct hiredis_events *e = arg;
	e->writing = false;
	e->flushing = false;
	in_write = e;
	redisAsyncHandleWrite(e->ac); /* may free e */
	in_write = NULL;
}

static void hiredis_add_read(void *data)
{
	struct hiredis_events *e = data;
	if (!e->reading)
		event_add(e->rev, NULL);
	e->reading = true;
}

static void hiredis_del_read(void *data)
{
	struct hiredis_events *e = data;
	if (e->reading)
		event_del(e->rev);
	e->reading = false;
}

static void hiredis_add_write(void *data)
{
	struct hiredis_events *e = data;
	if (in_write == e || !(e->ac->c.flags & REDIS_CONNECTED)) {
		/* The socket is full, or still connecting: wait until it is writable. */
		if (!e->writing)
			event_add(e->wev, NULL);
		e->writing = true;
	} else if (!e->writing && !e->flushing) {
		e->flushing = true;
		event_active(e->flush, EV_WRITE, 0);
	}
}

static void hiredis_del_write(void *data)
{
	struct hiredis_events *e = data;
	if (e->writing)
		event_del(e->wev);
	e->writing = false;
}

static void hiredis_cleanup(void *data)
{
	struct hiredis_events *e = data;
	if (in_write == e)
		in_write = NULL;
	event_free(e->rev);
	event_free(e->wev);
	event_free(e->flush);
	free(e);
}

static void hiredis_attach(redisAsyncContext *ac, struct event_base *base)
{
	struct hiredis_events *e = xcalloc(1, sizeof(*e));
	e->ac = ac;
	e->rev = event_new(base, ac->c.fd, EV_READ | EV_PERSIST, hiredis_read, e);
	e->wev = event_new(base, ac->c.fd, EV_WRITE, hiredis_write, e);
	e->flush = event_new(base, -1, 0, hiredis_write, e);
	ac->ev.data = e;
	ac->ev.addRead = hiredis_add_read;
	ac->ev.delRead = hiredis_del_read;
	ac->ev.addWrite = hiredis_add_write;
	ac->ev.delWrite = hiredis_del_write;
	ac->ev.cleanup = hiredis_cleanup;
	/* As hiredis's adapter: wait for the connect (writable) and for data. */
	hiredis_add_read(e);
	hiredis_add_write(e);
}

/* A Sentinel shard's new connection must reach a master: the sentinels may still name the old
 * one, now a replica. */
static void on_role(redisAsyncContext *ac, void *reply, void *privdata)
{
	redisReply *r = reply;
	struct conn *c = ac->data;
	if (!r || !c)
		return;
	const char *role = layer_role(r);
	if (strcmp(role, "master") == 0)
		return;
	char why[256];
	snprintf(why, sizeof(why), "ROLE says %s, not master", role);
	conn_fail(c, why);
}

static void conn_start(struct conn *c)
{
	struct layer_async *a = c->a;
	struct shard *sh = &a->shards[c->shard];
	struct layer_endpoint *ep = &sh->ep;
	redisAsyncContext *ac;
	if (sh->sentinel) {
		char host[256], why[300];
		int port;
		if (sentinel_master(sh->sentinel, host, sizeof(host), &port, &c->master_gen, why,
				    sizeof(why)) < 0) {
			/* Tried again after the backoff, or at once when the sentinels answer. */
			conn_lost(c, why);
			return;
		}
		ac = redisAsyncConnect(host, port);
	} else {
		ac = ep->host ? redisAsyncConnect(ep->host, ep->port)
			      : redisAsyncConnectUnix(ep->path);
	}
	if (!ac || ac->err) {
		char why[256];
		snprintf(why, sizeof(why), "%s", ac ? ac->errstr : "out of memory");
		if (ac)
			redisAsyncFree(ac);
		conn_lost(c, why);
		return;
	}
	ac->data = c;
	hiredis_attach(ac, a->base);
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	if (ep->password) {
		if (ep->user)
			redisAsyncCommand(ac, on_setup_reply, "AUTH", "AUTH %s %s", ep->user,
					  ep->password);
		else
			redisAsyncCommand(ac, on_setup_reply, "AUTH", "AUTH %s", ep->password);
	}
	if (ep->db)
		redisAsyncCommand(ac, on_setup_reply, "SELECT", "SELECT %d", ep->db);
	if (sh->sentinel)
		redisAsyncCommand(ac, on_role, NULL, "ROLE");
	queue_script_loads(ac);
	c->ac = ac;
	c->connected = false;
	schedule(c, a->cfg.connect_timeout_ms);
}

/* The server answered that it cannot serve us: drop the connection as if it had broken (commands
 * waiting on it complete with -ENOTCONN) and make it again after the backoff. Safe inside a
 * hiredis callback of c (hiredis then frees the context once the callback returns). */
static void conn_fail(struct conn *c, const char *why)
{
	redisAsyncContext *ac = c->ac;
	if (!ac)
		return;
	ac->data = NULL; /* no on_disconnect: conn_lost is called here */
	conn_lost(c, why);
	redisAsyncFree(ac);
}

/* A Sentinel shard's connections made for an older master go, and are made again at once (a
 * listener's BLPOP is re-issued on the new master); those waiting out a backoff try now. */
static void follow_master(struct conn *c, uint64_t gen)
{
	if (c->ac && c->master_gen == gen)
		return;
	if (c->ac) {
		redisAsyncContext *ac = c->ac;
		ac->data = NULL;
		c->ac = NULL;
		c->connected = false;
		redisAsyncFree(ac); /* its commands complete with -ENOTCONN */
	}
	c->backoff_ms = 0;
	evtimer_del(c->timer);
	schedule(c, 0);
}

static void on_master_moved(evutil_socket_t fd, short what, void *arg)
{
	struct shard *s = arg;
	struct layer_async *a = NULL;
	sentinel_ack(s->sentinel);
	uint64_t gen = sentinel_gen(s->sentinel);
	a = s->cmd.a;
	size_t sh = (size_t)(s - a->shards);
	follow_master(&s->cmd, gen);
	/* A failover under way (no master named): only the command connection, which writes,
	 * goes now. The readers' BLPOPs stay until the switch: a message one of them takes
	 * meanwhile is still read whole (its pop script goes on the reader's own connection). */
	char host[256];
	int port;
	if (sentinel_master(s->sentinel, host, sizeof(host), &port, NULL, NULL, 0) < 0)
		return;
	for (size_t i = 0; i < a->nlisteners; i++) {
		struct listener *l = a->listeners[i];
		for (size_t k = 0; k < l->nconns; k++)
			if (l->conns[k].shard == sh && l->conns[k].timer)
				follow_master(&l->conns[k], gen);
	}
}

static void conn_init(struct layer_async *a, struct conn *c, size_t shard, void (*on_up)(struct conn *),
		      struct listener *l)
{
	c->a = a;
	c->shard = shard;
	c->on_up = on_up;
	c->listener = l;
	c->timer = evtimer_new(a->base, on_timer, c);
}

static void conn_fini(struct conn *c)
{
	if (c->ac) {
		redisAsyncContext *ac = c->ac;
		c->ac = NULL;
		redisAsyncFree(ac);
	}
	if (c->timer)
		event_free(c->timer);
	c->timer = NULL;
}

/* --- Commands -------------------------------------------------------------------------------- */

/* A send's result, for metrics. */
static void count_send(struct layer_async *a, int status)
{
	struct layer_async_stats *st = &a->stats;
	if (status == 0)
		st->sends_ok++;
	else if (status == LAUREL_FULL)
		st->sends_full++;
	else if (status == -ENOTCONN)
		st->sends_unreachable++;
	else if (status == -EMSGSIZE)
		st->sends_too_big++;
	else if (status != -ECANCELED)
		st->sends_other++;
}

/* Calls back and frees. For a batch, r (may be NULL) holds one status per message: 1 sent. */
static void complete_reply(struct pending *p, int status, const redisReply *r)
{
	if (r && !p->a->freeing)
		metrics_observe(&p->a->stats.round_trip, (util_now_us() - p->sent_us) / 1e6);
	if (p->cb)
		p->cb(status, p->arg);
	for (size_t i = 0; i < p->nbatch; i++) {
		int st = status;
		if (status == 0)
			st = r && r->type == REDIS_REPLY_ARRAY && i < r->elements &&
					     r->element[i]->type == REDIS_REPLY_INTEGER &&
					     r->element[i]->integer == 1
				     ? 0
				     : LAUREL_FULL;
		count_send(p->a, st);
		if (p->batch[i].cb)
			p->batch[i].cb(st, p->batch[i].arg);
	}
	free(p->batch);
	free(p->cmd);
	free(p);
}

static void complete(struct pending *p, int status)
{
	complete_reply(p, status, NULL);
}

static void on_command_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct pending *p = privdata;
	redisReply *r = reply;
	struct shard *s = &p->a->shards[p->shard];
	if (!r) {
		if (!p->a->freeing)
			s->outage.refused += p->nbatch ? p->nbatch : 1;
		complete(p, p->a->freeing ? -ECANCELED : -ENOTCONN);
		return;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		if (strncmp(r->str, "NOSCRIPT", 8) == 0 && !p->retried) {
			p->retried = true;
			queue_script_loads(ac);
			if (redisAsyncFormattedCommand(ac, on_command_reply, p, p->cmd, p->cmdlen) ==
			    REDIS_OK)
				return;
		}
		if (layer_error_kind(r->str) != LAYER_ERR_OTHER) {
			char why[256];
			snprintf(why, sizeof(why), "%s", r->str);
			s->outage.refused += p->nbatch ? p->nbatch : 1;
			complete(p, -ENOTCONN);
			conn_fail(&s->cmd, why);
			return;
		}
		conn_ok(&s->cmd);
		if (strstr(r->str, "full")) {
			complete(p, LAUREL_FULL);
			return;
		}
		log_warn("%s: command failed: %s", s->ep.desc, r->str);
		complete(p, -EPROTO);
		return;
	}
	conn_ok(&s->cmd);
	if (p->nbatch && (r->type != REDIS_REPLY_ARRAY || r->elements != p->nbatch)) {
		log_warn("%s: a send of %zu messages answered something unexpected", s->ep.desc,
			 p->nbatch);
		complete(p, -EPROTO);
		return;
	}
	complete_reply(p, 0, r);
}

/* While a shard is known to be down, commands fail at once rather than queue behind a connect
 * attempt that will most likely fail too. */
static bool shard_usable(const struct layer_async *a, size_t sh)
{
	const struct conn *c = &a->shards[sh].cmd;
	return c->ac && (c->connected || !a->shards[sh].outage.down);
}

/* Sends a command on a shard's command connection; takes cmd (from redisFormatCommandArgv), and
 * batch (the callbacks of a send_many) when it succeeds. */
static int submit_raw(struct layer_async *a, size_t sh, char *cmd, size_t len,
		      layer_async_done_cb cb, void *arg, struct batch_cb *batch, size_t nbatch)
{
	struct conn *c = &a->shards[sh].cmd;
	if (!shard_usable(a, sh)) {
		free(cmd);
		return refuse(a, sh);
	}
	struct pending *p = xcalloc(1, sizeof(*p));
	p->a = a;
	p->shard = sh;
	p->cb = cb;
	p->arg = arg;
	p->cmd = cmd;
	p->cmdlen = len;
	p->batch = batch;
	p->nbatch = nbatch;
	p->sent_us = util_now_us();
	if (redisAsyncFormattedCommand(c->ac, on_command_reply, p, cmd, len) != REDIS_OK) {
		free(cmd);
		free(p);
		return layer_fail(-ENOTCONN, "cannot reach %s", a->shards[sh].ep.desc);
	}
	return 0;
}

static void defer(struct layer_async *a, layer_async_done_cb cb, void *arg, int status);

/* Sends the shard's queued sends in one send_many script call. A failure reaches their callbacks
 * from the loop, never from inside the caller. */
static void flush_shard(struct layer_async *a, size_t sh)
{
	struct shard *s = &a->shards[sh];
	size_t n = s->queued.n;
	if (n == 0)
		return;
	const char **argv;
	size_t *lens;
	size_t argc = layer_batch_command(&s->queued, &a->cfg, &argv, &lens);
	char *cmd = NULL;
	int len = redisFormatCommandArgv(&cmd, (int)argc, argv, lens);
	layer_batch_clear(&s->queued);
	struct batch_cb *cbs = s->cbs; /* the pending command takes them */
	s->cbs = NULL;
	s->capcbs = 0;
	int rc = len < 0 ? -ENOMEM : submit_raw(a, sh, cmd, (size_t)len, NULL, NULL, cbs, n);
	if (rc < 0) {
		for (size_t i = 0; i < n; i++)
			count_send(a, rc);
		for (size_t i = 0; i < n; i++)
			if (cbs[i].cb)
				defer(a, cbs[i].cb, cbs[i].arg, rc);
		free(cbs);
	}
}

static void flush_all(evutil_socket_t fd, short what, void *arg)
{
	struct layer_async *a = arg;
	a->flush_armed = false;
	for (size_t sh = 0; sh < a->nshards; sh++)
		flush_shard(a, sh);
}

/* Any other command goes after the sends queued before it. */
static int submit(struct layer_async *a, size_t sh, char *cmd, size_t len, layer_async_done_cb cb,
		  void *arg)
{
	flush_shard(a, sh);
	return submit_raw(a, sh, cmd, len, cb, arg, NULL, 0);
}

static int submit_argv(struct layer_async *a, size_t sh, int argc, const char **argv,
		       const size_t *lens, layer_async_done_cb cb, void *arg)
{
	char *cmd = NULL;
	int len = redisFormatCommandArgv(&cmd, argc, argv, lens);
	if (len < 0)
		return layer_fail(-ENOMEM, "cannot format a Redis command");
	return submit(a, sh, cmd, (size_t)len, cb, arg);
}

/* --- Local mode ----------------------------------------------------------------------------- */

static void deferred_unlink(struct deferred *d)
{
	struct layer_async *a = d->a;
	if (d->prev)
		d->prev->next = d->next;
	else
		a->deferred = d->next;
	if (d->next)
		d->next->prev = d->prev;
	event_free(d->ev);
}

static void deferred_fire(evutil_socket_t fd, short what, void *arg)
{
	struct deferred *d = arg;
	deferred_unlink(d);
	d->cb(d->status, d->arg);
	free(d);
}

/* Fires cb(status, arg) from the loop, soon: callbacks never run inside the call. */
static void defer(struct layer_async *a, layer_async_done_cb cb, void *arg, int status)
{
	if (!cb)
		return;
	struct deferred *d = xcalloc(1, sizeof(*d));
	d->a = a;
	d->cb = cb;
	d->arg = arg;
	d->status = status;
	d->ev = evtimer_new(a->base, deferred_fire, d);
	d->next = a->deferred;
	if (a->deferred)
		a->deferred->prev = d;
	a->deferred = d;
	struct timeval now = {0, 0};
	evtimer_add(d->ev, &now);
}

static int local_send(struct layer_async *a, const char *channel, const struct laurel_msg *msg,
		      layer_async_done_cb cb, void *arg)
{
	int rc = laurel_layer_send(a->shared, channel, msg);
	count_send(a, rc);
	if (rc < 0 && rc != -ENOTCONN && rc != -EPROTO)
		return rc; /* refused before anything happened: no callback */
	defer(a, cb, arg, rc);
	return 0;
}

static void *inbox_thread(void *arg)
{
	struct listener *l = arg;
	struct inbox *in = l->inbox;
	const char *chans[1] = {l->channel};
	struct laurel_received got[BATCH];
	while (!in->stop) {
		size_t n = 0;
		int rc = laurel_layer_receive(l->a->shared, chans, 1, -1, got, BATCH, &n);
		if (rc < 0)
			break;
		pthread_mutex_lock(&in->lock);
		for (size_t i = 0; i < n; i++) {
			if (in->stop) {
				laurel_received_fini(&got[i]);
				continue;
			}
			if (in->n == in->cap) {
				in->cap = in->cap ? in->cap * 2 : 64;
				in->items = xrealloc(in->items, in->cap * sizeof(*in->items));
			}
			in->items[in->n++] = got[i];
		}
		pthread_mutex_unlock(&in->lock);
		uint64_t one = 1;
		if (n && write(in->efd, &one, sizeof(one)) < 0)
			log_warn("cannot wake the event loop for %s", l->channel);
	}
	return NULL;
}

static void inbox_ready(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;
	struct inbox *in = l->inbox;
	uint64_t count;
	if (read(in->efd, &count, sizeof(count)) < 0)
		return;
	pthread_mutex_lock(&in->lock);
	struct laurel_received *items = in->items;
	size_t n = in->n;
	in->items = NULL;
	in->n = in->cap = 0;
	pthread_mutex_unlock(&in->lock);
	for (size_t i = 0; i < n; i++) {
		if (!l->a->freeing)
			l->cb(&items[i], l->arg);
		laurel_received_fini(&items[i]);
	}
	free(items);
}

static void local_listen(struct layer_async *a, struct listener *l)
{
	struct inbox *in = xcalloc(1, sizeof(*in));
	l->inbox = in;
	pthread_mutex_init(&in->lock, NULL);
	in->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	in->ev = event_new(a->base, in->efd, EV_READ | EV_PERSIST, inbox_ready, l);
	event_add(in->ev, NULL);
	in->running = pthread_create(&in->thread, NULL, inbox_thread, l) == 0;
}

static void local_unlisten(struct layer_async *a, struct listener *l)
{
	struct inbox *in = l->inbox;
	in->stop = true;
	if (in->running) {
		/* Wake the thread from its blocking receive with a message on its own channel. */
		struct laurel_msg *wake = laurel_msg_new();
		laurel_msg_set_bool(wake, "__laurel_wake__", true);
		laurel_layer_send(a->shared, l->channel, wake);
		laurel_msg_free(wake);
		pthread_join(in->thread, NULL);
	}
	for (size_t i = 0; i < in->n; i++)
		laurel_received_fini(&in->items[i]);
	free(in->items);
	event_free(in->ev);
	close(in->efd);
	pthread_mutex_destroy(&in->lock);
	free(in);
}

int layer_async_send(struct layer_async *a, const char *channel, const struct laurel_msg *msg,
		     layer_async_done_cb cb, void *arg)
{
	const struct layer_config *cfg = &a->cfg;
	if (!laurel_valid_channel(channel))
		return layer_fail(-EINVAL, "invalid channel name \"%.120s\"", channel);
	if (a->freeing)
		return layer_fail(-ECANCELED, "the layer client is being freed");
	if (a->shared)
		return local_send(a, channel, msg, cb, arg);
	struct buf payload;
	buf_init(&payload);
	int rc = layer_encode(cfg, channel, msg, &payload);
	if (rc < 0) {
		buf_fini(&payload);
		count_send(a, rc);
		return rc;
	}
	size_t home = layer_channel_home(a->nshards, channel);
	size_t sh = home != SIZE_MAX ? home : a->rr++ % a->nshards;
	if (!shard_usable(a, sh)) {
		buf_fini(&payload);
		count_send(a, -ENOTCONN);
		return refuse(a, sh);
	}
	/* Queued until the loop has run the other callbacks of this iteration: the sends they
	 * make go out with it in one script call. */
	struct shard *s = &a->shards[sh];
	if (s->queued.n == s->capcbs) {
		s->capcbs = s->capcbs ? 2 * s->capcbs : 16;
		s->cbs = xrealloc(s->cbs, s->capcbs * sizeof(*s->cbs));
	}
	s->cbs[s->queued.n] = (struct batch_cb){cb, arg};
	char hex[32];
	util_rng_hex(&a->rng, hex, 32);
	layer_batch_add(&s->queued, cfg, channel, hex, &payload);
	if (s->queued.n >= SEND_BATCH_MAX) {
		flush_shard(a, sh);
	} else if (!a->flush_armed) {
		a->flush_armed = true;
		event_active(a->flush_ev, EV_TIMEOUT, 0);
	}
	return 0;
}

/* --- Listening ------------------------------------------------------------------------------- */

static void listen_pop(struct conn *c, redisReply *popped);

/* Hands one popped message to the listener: k is its queue key, b its body or direct entry. */
static void deliver(struct conn *c, const redisReply *k, const redisReply *b)
{
	struct listener *l = c->listener;
	size_t prefixlen = strlen(c->a->cfg.prefix);
	const char *payload = b->str;
	size_t len = b->len;
	if (layer_direct_entry(b->str, b->len, c->a->cfg.expiry, &payload, &len) < 0)
		return; /* expired unread, as a body key would have */
	struct laurel_received rcv;
	if (k->len < prefixlen ||
	    layer_decode(k->str + prefixlen, k->len - prefixlen, payload, len, &rcv) < 0) {
		log_warn("dropped a message on %s that does not decode (%zu bytes)", l->channel,
			 len);
		return;
	}
	l->cb(&rcv, l->arg);
	laurel_received_fini(&rcv);
}

static void on_blpop(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct conn *c = privdata;
	redisReply *r = reply;
	if (!r || c->a->freeing || !c->ac)
		return; /* the connection went away; on_disconnect takes over */
	if (r->type == REDIS_REPLY_ERROR) {
		/* Whatever the error, asking again at once would get it again. */
		char why[256];
		snprintf(why, sizeof(why), "BLPOP: %s", r->str);
		conn_fail(c, why);
		return;
	}
	conn_ok(c);
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
		/* A direct entry is the message itself: it goes to the application before anything
		 * else is asked; a body key is read (with whatever else is ready) first. */
		if (r->element[1]->len && r->element[1]->str[0] == '\0') {
			deliver(c, r->element[0], r->element[1]);
			if (c->a->freeing || !c->ac)
				return;
			/* When the queue was idle, block again at once: one message at a time
			 * costs Redis a BLPOP instead of a script call. Every 8th time, and
			 * whenever a pop found more, a script call takes a batch instead, so a
			 * burst is not read one round trip per message. */
			if (c->idle && ++c->direct_run % 8 != 0)
				redisAsyncCommand(c->ac, on_blpop, c, "BLPOP %s 0", c->listener->key);
			else
				listen_pop(c, NULL);
		} else {
			listen_pop(c, r);
		}
		return;
	}
	/* A timeout (nil): block again. */
	redisAsyncCommand(c->ac, on_blpop, c, "BLPOP %s 0", c->listener->key);
}

static void on_pop(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct conn *c = privdata;
	struct listener *l = c->listener;
	redisReply *r = reply;
	if (!r || c->a->freeing || !c->ac)
		return;
	if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
		queue_script_loads(ac);
		listen_pop(c, NULL);
		return;
	}
	if (r->type != REDIS_REPLY_ARRAY) {
		char why[256];
		snprintf(why, sizeof(why), "receive on %s: %s", l->channel,
			 r->type == REDIS_REPLY_ERROR ? r->str : "an unexpected reply");
		conn_fail(c, why);
		return;
	}
	conn_ok(c);
	long long left = 0;
	c->idle = r->elements <= 1;
	if (!c->idle)
		c->direct_run = 0;
	if (r->elements > 0) {
		if (r->element[0]->type == REDIS_REPLY_INTEGER)
			left = r->element[0]->integer;
		for (size_t i = 1; i + 1 < r->elements; i += 2) {
			deliver(c, r->element[i], r->element[i + 1]);
			if (c->a->freeing || !c->ac)
				return;
		}
	}
	/* More waiting: take the next batch at once; else block. */
	if (left > 0)
		listen_pop(c, NULL);
	else
		redisAsyncCommand(c->ac, on_blpop, c, "BLPOP %s 0", l->key);
}

/* One script call: the body BLPOP popped (if any) and up to a batch of what else is ready. */
static void listen_pop(struct conn *c, redisReply *popped)
{
	struct listener *l = c->listener;
	char max[16];
	snprintf(max, sizeof(max), "%d", popped ? BATCH - 1 : BATCH);
	const char *argv[7] = {"EVALSHA", layer_script_sha(SCRIPT_POP), "1", l->key, max};
	size_t lens[7];
	int argc = 5;
	if (popped) {
		argv[argc++] = popped->element[1]->str;
		argv[argc++] = popped->element[0]->str;
	}
	for (int i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	if (popped) {
		lens[5] = popped->element[1]->len;
		lens[6] = popped->element[0]->len;
	}
	redisAsyncCommandArgv(c->ac, on_pop, c, argc, argv, lens);
}

static void listener_up(struct conn *c)
{
	/* Take what queued up while we were away, then block. */
	listen_pop(c, NULL);
}

int layer_async_listen(struct layer_async *a, const char *channel, layer_async_message_cb cb,
		       void *arg)
{
	const char *bang = strchr(channel ? channel : "", '!');
	if (!laurel_valid_channel(channel) || (bang && bang[1]))
		return layer_fail(-EINVAL, "cannot listen on \"%.120s\"", channel ? channel : "");
	struct listener *l = xcalloc(1, sizeof(*l));
	l->a = a;
	snprintf(l->channel, sizeof(l->channel), "%s", channel);
	snprintf(l->key, sizeof(l->key), "%s%s", a->cfg.prefix, channel);
	l->cb = cb;
	l->arg = arg;
	if (a->shared) {
		local_listen(a, l);
		a->listeners = xrealloc(a->listeners, (a->nlisteners + 1) * sizeof(*a->listeners));
		a->listeners[a->nlisteners++] = l;
		return 0;
	}
	size_t home = layer_channel_home(a->nshards, channel);
	l->nconns = home == SIZE_MAX ? a->nshards : 1;
	l->conns = xcalloc(l->nconns, sizeof(*l->conns));
	for (size_t i = 0; i < l->nconns; i++) {
		conn_init(a, &l->conns[i], home == SIZE_MAX ? i : home, listener_up, l);
		conn_start(&l->conns[i]);
	}
	a->listeners = xrealloc(a->listeners, (a->nlisteners + 1) * sizeof(*a->listeners));
	a->listeners[a->nlisteners++] = l;
	return 0;
}

/* --- Registry -------------------------------------------------------------------------------- */

static int registry_command(struct layer_async *a, const char *prefix, const char *what,
			    int ttl_s, layer_async_done_cb cb, void *arg)
{
	if (a->shared) {
		int rc = strcmp(what, "ZADD") == 0 ? laurel_layer_announce(a->shared, prefix, ttl_s)
						    : laurel_layer_withdraw(a->shared, prefix);
		if (rc < 0)
			return rc;
		defer(a, cb, arg, 0);
		return 0;
	}
	size_t sh = layer_shard_of(a->nshards, prefix, strlen(prefix));
	char key[96], score[32];
	layer_key_interfaces(&a->cfg, key, sizeof(key));
	snprintf(score, sizeof(score), "%.3f", util_wall_time() + ttl_s);
	if (strcmp(what, "ZADD") == 0) {
		const char *argv[4] = {"ZADD", key, score, prefix};
		size_t lens[4] = {4, strlen(key), strlen(score), strlen(prefix)};
		int rc = submit_argv(a, sh, 4, argv, lens, cb, arg);
		if (rc < 0)
			return rc;
		/* As laurel_layer_announce: the entries of interfaces that died go, and the key
		 * expires when no interface renews it any more. Best effort, pipelined. */
		char past[40], ttl[24];
		snprintf(past, sizeof(past), "(%.3f", util_wall_time());
		snprintf(ttl, sizeof(ttl), "%d", a->cfg.group_expiry);
		const char *prune[4] = {"ZREMRANGEBYSCORE", key, "-inf", past};
		size_t plens[4] = {16, strlen(key), 4, strlen(past)};
		const char *expire[3] = {"EXPIRE", key, ttl};
		size_t elens[3] = {6, strlen(key), strlen(ttl)};
		submit_argv(a, sh, 4, prune, plens, NULL, NULL);
		submit_argv(a, sh, 3, expire, elens, NULL, NULL);
		return 0;
	}
	const char *argv[3] = {"ZREM", key, prefix};
	size_t lens[3] = {4, strlen(key), strlen(prefix)};
	return submit_argv(a, sh, 3, argv, lens, cb, arg);
}

static void marker_key(const struct layer_async *a, const struct announcement *an, char *key,
		       size_t size)
{
	snprintf(key, size, "%s:alive:%s", a->cfg.prefix, an->prefix);
}

static void on_marked(int status, void *arg)
{
	struct shard *s = arg;
	if (status == 0)
		s->marked = true;
}

/* Sets the announcements' markers on shard sh. */
static void mark(struct layer_async *a, size_t sh)
{
	char ttl[16];
	snprintf(ttl, sizeof(ttl), "%d", a->cfg.group_expiry);
	for (size_t i = 0; i < a->nannouncements; i++) {
		char key[LAUREL_NAME_MAX + 96];
		marker_key(a, a->announcements[i], key, sizeof(key));
		const char *argv[5] = {"SET", key, "1", "EX", ttl};
		size_t lens[5] = {3, strlen(key), 1, 2, strlen(ttl)};
		submit_argv(a, sh, 5, argv, lens, on_marked, &a->shards[sh]);
	}
}

static void on_marker_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct conn *c = privdata;
	struct layer_async *a = c->a;
	redisReply *r = reply;
	if (!r || a->freeing || r->type != REDIS_REPLY_INTEGER)
		return; /* asked again at the next reconnection */
	if (r->integer == 0 && a->on_reset) {
		/* Said once per loss: no more checks until the markers are set again. */
		a->shards[c->shard].marked = false;
		log_warn("%s came back without its data (restarted empty, or flushed): the groups "
			 "and sessions it held are gone",
			 a->shards[c->shard].ep.desc);
		a->on_reset(a->shards[c->shard].ep.desc, a->reset_arg);
	}
	mark(a, c->shard);
}

/* After a reconnection, first thing: is the marker still there? */
static void check_marker(struct conn *c)
{
	struct layer_async *a = c->a;
	if (!a->on_reset || !a->nannouncements || !a->shards[c->shard].marked)
		return;
	char key[LAUREL_NAME_MAX + 96];
	marker_key(a, a->announcements[0], key, sizeof(key));
	const char *argv[2] = {"EXISTS", key};
	size_t lens[2] = {6, strlen(key)};
	redisAsyncCommandArgv(c->ac, on_marker_reply, c, 2, argv, lens);
}

void layer_async_on_reset(struct layer_async *a, layer_async_reset_cb cb, void *arg)
{
	a->on_reset = cb;
	a->reset_arg = arg;
}

static void send_dropped(struct layer_async *a);

static void on_dropped_counted(int status, void *arg)
{
	struct layer_async *a = arg;
	if (status == -ECANCELED)
		return;
	if (status < 0)
		a->dropped_pending += a->dropped_sending;
	a->dropped_sending = 0;
	if (status == 0)
		send_dropped(a); /* what was dropped meanwhile */
}

/* Adds what was dropped to the layer-wide counter, one INCRBY at a time, when shard 0 is up. */
static void send_dropped(struct layer_async *a)
{
	if (a->shared || !a->dropped_pending || a->dropped_sending || !shard_usable(a, 0))
		return;
	char key[LAUREL_NAME_MAX + 64], n[24];
	layer_key_global(&a->cfg, "control_dropped", key, sizeof(key));
	snprintf(n, sizeof(n), "%llu", (unsigned long long)a->dropped_pending);
	const char *argv[3] = {"INCRBY", key, n};
	size_t lens[3] = {6, strlen(key), strlen(n)};
	a->dropped_sending = a->dropped_pending;
	a->dropped_pending = 0;
	if (submit_argv(a, 0, 3, argv, lens, on_dropped_counted, a) < 0) {
		a->dropped_pending += a->dropped_sending;
		a->dropped_sending = 0;
		return;
	}
	/* Kept as long as asgi_redis' global counters. */
	const char *ex[3] = {"EXPIRE", key, "86400"};
	size_t exlens[3] = {6, strlen(key), 5};
	submit_argv(a, 0, 3, ex, exlens, NULL, NULL);
}

void layer_async_count_dropped(struct layer_async *a, uint64_t n)
{
	a->dropped_pending += n;
	send_dropped(a);
}

static void renew(evutil_socket_t fd, short what, void *arg)
{
	struct announcement *an = arg;
	struct layer_async *a = an->a;
	send_dropped(a);
	for (size_t sh = 0; sh < a->nshards && a->on_reset; sh++)
		mark(a, sh);
	int rc = registry_command(an->a, an->prefix, "ZADD", an->ttl_s, NULL, NULL);
	if (rc < 0)
		log_debug("could not renew the announcement of %s: %s", an->prefix,
			  laurel_layer_error(NULL));
	int every = an->ttl_s * 1000 / 3;
	struct timeval tv = {every / 1000, (every % 1000) * 1000};
	evtimer_add(an->timer, &tv);
}

int layer_async_announce(struct layer_async *a, const char *prefix, int ttl_s)
{
	size_t n = prefix ? strlen(prefix) : 0;
	if (n < 2 || prefix[n - 1] != '!' || !laurel_valid_channel(prefix) || ttl_s < 1)
		return layer_fail(-EINVAL, "cannot announce \"%.120s\"", prefix ? prefix : "");
	struct announcement *an = xcalloc(1, sizeof(*an));
	snprintf(an->prefix, sizeof(an->prefix), "%s", prefix);
	an->ttl_s = ttl_s;
	an->a = a;
	an->timer = evtimer_new(a->base, renew, an);
	a->announcements =
		xrealloc(a->announcements, (a->nannouncements + 1) * sizeof(*a->announcements));
	a->announcements[a->nannouncements++] = an;
	/* The first ZADD is queued on the connection (or goes out when it comes up). */
	renew(-1, 0, an);
	return 0;
}

int layer_async_withdraw(struct layer_async *a, const char *prefix, layer_async_done_cb cb,
			 void *arg)
{
	for (size_t i = 0; i < a->nannouncements; i++) {
		struct announcement *an = a->announcements[i];
		if (strcmp(an->prefix, prefix) == 0) {
			char key[LAUREL_NAME_MAX + 96];
			marker_key(a, an, key, sizeof(key));
			for (size_t sh = 0; sh < a->nshards && a->on_reset; sh++) {
				const char *argv[2] = {"DEL", key};
				size_t lens[2] = {3, strlen(key)};
				submit_argv(a, sh, 2, argv, lens, NULL, NULL);
			}
			event_free(an->timer);
			free(an);
			a->announcements[i] = a->announcements[--a->nannouncements];
			return registry_command(a, prefix, "ZREM", 0, cb, arg);
		}
	}
	return layer_fail(-EINVAL, "%.120s was not announced", prefix ? prefix : "");
}

/* A command connection that comes back first looks whether its server kept its data, then
 * renews the announcements on its shard at once. */
static void command_up(struct conn *c)
{
	struct layer_async *a = c->a;
	check_marker(c);
	for (size_t i = 0; i < a->nannouncements; i++) {
		struct announcement *an = a->announcements[i];
		if (layer_shard_of(a->nshards, an->prefix, strlen(an->prefix)) == c->shard)
			registry_command(a, an->prefix, "ZADD", an->ttl_s, NULL, NULL);
	}
}

struct barrier {
	layer_async_done_cb cb;
	void *arg;
	size_t waiting;
	bool canceled;
};

static void barrier_step(int status, void *arg)
{
	struct barrier *b = arg;
	if (status == -ECANCELED)
		b->canceled = true;
	if (--b->waiting == 0) {
		b->cb(b->canceled ? -ECANCELED : 0, b->arg);
		free(b);
	}
}

void layer_async_barrier(struct layer_async *a, layer_async_done_cb cb, void *arg)
{
	struct barrier *b = xcalloc(1, sizeof(*b));
	b->cb = cb;
	b->arg = arg;
	b->waiting = 1; /* this call's own step, so cb never runs inside it */
	for (size_t i = 0; i < a->nshards; i++) {
		const char *argv[1] = {"PING"};
		size_t lens[1] = {4};
		b->waiting++;
		if (submit_argv(a, i, 1, argv, lens, barrier_step, b) < 0)
			b->waiting--;
	}
	defer(a, barrier_step, b, 0);
}

bool layer_async_listening(const struct layer_async *a, const char *channel)
{
	for (size_t i = 0; i < a->nlisteners; i++) {
		const struct listener *l = a->listeners[i];
		if (strcmp(l->channel, channel) != 0 || l->inbox)
			continue;
		/* Down means it failed and has not worked since, not "still connecting" at
		 * start. */
		for (size_t k = 0; k < l->nconns; k++)
			if (l->conns[k].failing) {
				/* The caller refuses a request for it: counted in the outage. */
				((struct layer_async *)a)->shards[l->conns[k].shard].outage.refused++;
				return false;
			}
	}
	return true;
}

size_t layer_async_connected(const struct layer_async *a)
{
	if (a->shared)
		return 1;
	size_t n = 0;
	for (size_t i = 0; i < a->nshards; i++)
		n += a->shards[i].cmd.connected;
	return n;
}

/* --- Lifecycle ------------------------------------------------------------------------------- */

int layer_async_new(struct layer_async **out, struct event_base *base,
		    const struct laurel_layer_options *opts, char *err, size_t errlen)
{
	static const char *const default_urls[] = {LAYER_DEFAULT_URL};
	const char *const *urls = opts && opts->nurls ? opts->urls : default_urls;
	size_t nurls = opts && opts->nurls ? opts->nurls : 1;
	if (nurls > 64) {
		if (errlen)
			snprintf(err, errlen, "at most 64 Redis shards (got %zu)", nurls);
		return -EINVAL;
	}
	struct layer_async *a = xcalloc(1, sizeof(*a));
	int rc = layer_config_init(&a->cfg, opts, err, errlen);
	if (rc < 0) {
		free(a);
		return rc;
	}
	a->base = base;
	a->shards = xcalloc(nurls, sizeof(*a->shards));
	a->nshards = nurls;
	util_rng_init(&a->rng);
	for (size_t i = 0; i < nurls; i++) {
		if (!urls[i] || layer_endpoint_parse(&a->shards[i].ep, urls[i], err, errlen) < 0) {
			if (!urls[i] && errlen)
				snprintf(err, errlen, "layer URL %zu is missing", i + 1);
			layer_async_free(a);
			return -EINVAL;
		}
	}
	a->flush_ev = event_new(base, -1, 0, flush_all, a);
	for (size_t i = 0; i < nurls; i++) {
		struct shard *s = &a->shards[i];
		if (!s->ep.master_name)
			continue;
		sentinel_new(&s->sentinel, &s->ep, a->cfg.connect_timeout_ms,
			     a->cfg.command_timeout_ms);
		s->master_ev = event_new(base, sentinel_fd(s->sentinel), EV_READ | EV_PERSIST,
					 on_master_moved, s);
		event_add(s->master_ev, NULL);
	}
	/* The first connections go to a known master, not into a backoff. */
	for (size_t i = 0; i < nurls; i++)
		if (a->shards[i].sentinel)
			sentinel_wait(a->shards[i].sentinel, a->cfg.connect_timeout_ms);
	for (size_t i = 0; i < nurls; i++) {
		conn_init(a, &a->shards[i].cmd, i, command_up, NULL);
		conn_start(&a->shards[i].cmd);
	}
	*out = a;
	return 0;
}

int layer_async_new_shared(struct layer_async **out, struct event_base *base,
			   struct laurel_layer *shared)
{
	struct layer_async *a = xcalloc(1, sizeof(*a));
	a->base = base;
	a->shared = shared;
	a->cfg = shared->cfg;
	/* The config strings belong to the shared layer: copy what layer_config_fini frees. */
	a->cfg.prefix = xstrdup(shared->cfg.prefix);
	a->cfg.stats_prefix = xstrdup(shared->cfg.stats_prefix);
	a->cfg.capacities = NULL;
	a->cfg.ncapacities = 0;
	a->cfg.histories = NULL; /* the interface sends to no group */
	a->cfg.nhistories = 0;
	a->nshards = 0; /* no Redis */
	util_rng_init(&a->rng);
	*out = a;
	return 0;
}

void layer_async_free(struct layer_async *a)
{
	if (!a)
		return;
	a->freeing = true;
	for (size_t i = 0; i < a->nshards; i++) {
		struct shard *s = &a->shards[i];
		for (size_t k = 0; k < s->queued.n; k++)
			if (s->cbs[k].cb)
				s->cbs[k].cb(-ECANCELED, s->cbs[k].arg);
		layer_batch_fini(&s->queued);
		free(s->cbs);
	}
	if (a->flush_ev)
		event_free(a->flush_ev);
	while (a->deferred) {
		struct deferred *d = a->deferred;
		deferred_unlink(d);
		d->cb(-ECANCELED, d->arg);
		free(d);
	}
	for (size_t i = 0; i < a->nlisteners; i++) {
		struct listener *l = a->listeners[i];
		if (l->inbox)
			local_unlisten(a, l);
		for (size_t k = 0; k < l->nconns; k++)
			conn_fini(&l->conns[k]);
		free(l->conns);
		free(l);
	}
	free(a->listeners);
	for (size_t i = 0; i < a->nannouncements; i++) {
		event_free(a->announcements[i]->timer);
		free(a->announcements[i]);
	}
	free(a->announcements);
	for (size_t i = 0; i < a->nshards; i++) {
		conn_fini(&a->shards[i].cmd);
		if (a->shards[i].master_ev)
			event_free(a->shards[i].master_ev);
		sentinel_free(a->shards[i].sentinel);
		layer_endpoint_fini(&a->shards[i].ep);
	}
	free(a->shards);
	layer_config_fini(&a->cfg);
	free(a);
}

void layer_async_stats(const struct layer_async *a, struct layer_async_stats *out)
{
	*out = a->stats;
	int64_t now = util_now_ms();
	out->shards = a->nshards;
	for (size_t i = 0; i < a->nshards; i++) {
		const struct shard *s = &a->shards[i];
		out->outages += s->outage.count;
		out->outage_seconds +=
			(s->outage.total_ms + (s->outage.down ? now - s->outage.since_ms : 0)) / 1e3;
		out->shards_up += shard_usable(a, i);
	}
}
