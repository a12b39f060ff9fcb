/* The Redis backend of the channel layer: a synchronous hiredis client that keeps asgi_redis 1.4.3's
 * key layout (SPEC §3) so Python Channels 1 peers share the same Redis, sharded over several
 * servers by the CRC-32 rule.
 *
 * Round trips: a send is one EVALSHA (capacity check, body, queue, TTLs and statistics in one
 * script). A receive of ready messages is one EVALSHA per shard that pops, reads and deletes up to
 * max bodies. When nothing is ready it blocks in BLPOP — on every shard that can hold one of the
 * channels at once, so an empty shard never stalls the others — and cancels the other shards'
 * BLPOPs with CLIENT UNBLOCK when one answers. A group send is one ZRANGE on the group's shard,
 * then one script call per shard that holds members, pipelined.
 *
 * When a server goes away, or answers with an error that means it cannot serve us now (READONLY,
 * LOADING, NOAUTH, NOPERM, ... — layer_error_kind), calls that need it fail at once with -ENOTCONN,
 * the connection is dropped and made again on a later call after a backoff (100 ms doubling to
 * 2 s), and the outage is logged once when it starts and once when a command succeeds again. A
 * receive treats every error reply so: it never asks again at once. */
#include "common/layer.h"
#include "common/layer_census.h"
#include "common/redis_layout.h"
#include "common/codec.h"
#include "common/sentinel.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define STATS_CHANNEL_TTL 3600
#define STATS_GLOBAL_TTL 86400


struct shard {
	struct layer_endpoint ep;
	redisContext *c;    /* commands, and BLPOP */
	redisContext *ctl;  /* only to CLIENT UNBLOCK c, made when first needed */
	long long client_id;
	int64_t retry_at;   /* no new connection attempt before this (monotonic ms) */
	int backoff_ms;
	struct layer_outage outage;
	bool blocked;	    /* a BLPOP is outstanding on c */
	bool long_timeout;  /* c's read timeout was raised for a BLPOP */
	struct sentinel *sentinel; /* a redis+sentinel:// shard's watcher, else NULL */
	uint64_t master_gen;	   /* the sentinel generation c was made for */
};

struct held {
	char *queue; /* queue name without the key prefix */
	char *payload;
	size_t len;
};

struct redis_layer {
	struct laurel_layer base;
	struct shard *shards;
	size_t nshards;
	struct util_rng rng;
	size_t rr; /* round-robin shard for normal channels */
	struct layer_batch *batch; /* per shard: the sends being put together */
	struct held *held;
	size_t nheld;
	size_t prefixlen;
	bool drained; /* the last receive left nothing in its queues */
	int watch_fd; /* laurel_layer_watch_fd, or -1 */
	char **live;	 /* live interface prefixes, as last read (presence) */
	int64_t live_at; /* when (monotonic ms); 0: never */
	uint64_t live_gen; /* counts the reads that found an interface gone */
	struct swept *swept; /* PRESENCE_SLOTS, made on first use */
	bool woken;   /* watch_fd was readable during this receive */
	bool scan_untyped; /* a server refused SCAN ... TYPE (Redis 5): filter by name only */
	/* A command written ahead of the next pipeline on that shard (a group send's history
	 * append, ahead of the member read): pipeline() reads its reply into ahead_reply first. */
	struct shard *ahead_shard;
	redisReply *ahead_reply;
};

static const struct layer_ops redis_ops;

/* A group whose members were all checked against the live interfaces (presence, below). */
struct swept {
	char group[LAUREL_NAME_MAX + 1];
	int64_t at;   /* monotonic ms */
	uint64_t gen; /* live_gen then */
};

/* --- Connections ----------------------------------------------------------------------------- */

static struct timeval ms_tv(int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	return tv;
}

static void drop_connection(struct shard *s)
{
	redisFree(s->c);
	s->c = NULL;
	redisFree(s->ctl);
	s->ctl = NULL;
	s->blocked = false;
	s->long_timeout = false;
}

/* Marks the shard unusable after a failure, logging once per outage. */
static int shard_failed(struct shard *s, const char *what)
{
	drop_connection(s);
	if (s->sentinel)
		sentinel_suspect(s->sentinel); /* a failover, maybe: ask the sentinels now */
	layer_outage_begin(&s->outage, s->ep.desc, what);
	s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : BACKOFF_MIN_MS;
	if (s->backoff_ms > BACKOFF_MAX_MS)
		s->backoff_ms = BACKOFF_MAX_MS;
	s->retry_at = util_now_ms() + s->backoff_ms;
	return layer_fail(-ENOTCONN, "cannot reach %s: %s", s->ep.desc, what);
}

/* An established connection broke: allow one immediate reconnection attempt. */
static int connection_lost(struct shard *s)
{
	char what[256];
	snprintf(what, sizeof(what), "%s", s->c && s->c->errstr[0] ? s->c->errstr : "connection lost");
	int rc = shard_failed(s, what);
	s->retry_at = util_now_ms();
	return rc;
}

/* A command succeeded: the shard serves again. */
static void shard_ok(struct shard *s)
{
	s->backoff_ms = 0;
	layer_outage_end(&s->outage, s->ep.desc);
}

/* Looks at a reply: an error that means the server cannot serve us now is an outage (the reply
 * is freed, NULL returned, *rc = -ENOTCONN). The outage ends only with a command that writes
 * (shard_ok after a receive or a send): a replica answers reads. */
static redisReply *checked(struct shard *s, redisReply *r, int *rc)
{
	if (r && r->type == REDIS_REPLY_ERROR && layer_error_kind(r->str) != LAYER_ERR_OTHER) {
		char what[256];
		snprintf(what, sizeof(what), "%s", r->str);
		freeReplyObject(r);
		*rc = shard_failed(s, what);
		return NULL;
	}
	return r;
}

/* A new connection to the shard's server (for a Sentinel shard, its master as last learned;
 * the first time, waiting up to the connect timeout for the sentinels to name one). NULL with
 * the reason in why. */
static redisContext *open_context(struct redis_layer *L, struct shard *s, char *why,
				  size_t whylen)
{
	struct timeval tv = ms_tv(L->base.cfg.connect_timeout_ms);
	redisContext *c;
	if (s->sentinel) {
		char host[256];
		int port;
		if (sentinel_master(s->sentinel, host, sizeof(host), &port, &s->master_gen, NULL,
				    0) < 0) {
			sentinel_wait(s->sentinel, L->base.cfg.connect_timeout_ms);
			if (sentinel_master(s->sentinel, host, sizeof(host), &port, &s->master_gen,
					    why, whylen) < 0)
				return NULL;
		}
		c = redisConnectWithTimeout(host, port, tv);
	} else {
		c = s->ep.host ? redisConnectWithTimeout(s->ep.host, s->ep.port, tv)
			       : redisConnectUnixWithTimeout(s->ep.path, tv);
	}
	if (!c || c->err) {
		snprintf(why, whylen, "%s", c ? c->errstr : "out of memory");
		redisFree(c);
		return NULL;
	}
	return c;
}

/* A Sentinel shard's new connection must reach a master (the sentinels may still name the old
 * one, now a replica). Returns NULL or the reason. */
static const char *check_role(struct shard *s, redisContext *c)
{
	static _Thread_local char why[256];
	if (!s->sentinel)
		return NULL;
	redisReply *r = redisCommand(c, "ROLE");
	if (!r) {
		snprintf(why, sizeof(why), "ROLE failed: %s", c->errstr);
		return why;
	}
	const char *role = layer_role(r);
	bool master = strcmp(role, "master") == 0;
	if (!master)
		snprintf(why, sizeof(why), "ROLE says %s, not master", role);
	freeReplyObject(r);
	return master ? NULL : why;
}

/* A Sentinel shard whose master changed since its connection was made drops it. */
static void follow_master(struct shard *s)
{
	if (s->sentinel && s->c && sentinel_gen(s->sentinel) != s->master_gen) {
		drop_connection(s);
		s->retry_at = 0;
		s->backoff_ms = 0;
	}
}

static redisReply *ctx_command(redisContext *c, int argc, const char **argv, const size_t *lens)
{
	return redisCommandArgv(c, argc, argv, lens);
}

/* Authenticates and selects the database on a new context. Returns NULL or an error text,
 * "<command> failed: <the server's error>". */
static const char *setup_context(struct redis_layer *L, struct shard *s, redisContext *c)
{
	static char why[256];
	redisReply *r;
	if (s->ep.password) {
		if (s->ep.user)
			r = redisCommand(c, "AUTH %s %s", s->ep.user, s->ep.password);
		else
			r = redisCommand(c, "AUTH %s", s->ep.password);
		if (!r || r->type == REDIS_REPLY_ERROR) {
			snprintf(why, sizeof(why), "AUTH failed: %s",
				 r ? r->str : c->errstr);
			freeReplyObject(r);
			return why;
		}
		freeReplyObject(r);
	}
	if (s->ep.db) {
		r = redisCommand(c, "SELECT %d", s->ep.db);
		if (!r || r->type == REDIS_REPLY_ERROR) {
			snprintf(why, sizeof(why), "SELECT %d failed: %s", s->ep.db,
				 r ? r->str : c->errstr);
			freeReplyObject(r);
			return why;
		}
		freeReplyObject(r);
	}
	redisSetTimeout(c, ms_tv(L->base.cfg.command_timeout_ms));
	redisEnableKeepAlive(c);
	return NULL;
}

/* Returns 0, or the failure (the shard is then down). */
static int load_script(struct shard *s, enum script_id id)
{
	redisReply *r = redisCommand(s->c, "SCRIPT LOAD %s", layer_script_source(id));
	if (!r)
		return connection_lost(s);
	if (r->type != REDIS_REPLY_STRING) {
		char what[256];
		snprintf(what, sizeof(what), "SCRIPT LOAD: %s",
			 r->type == REDIS_REPLY_ERROR ? r->str : "an unexpected reply");
		freeReplyObject(r);
		return shard_failed(s, what);
	}
	freeReplyObject(r);
	return 0;
}

/* Makes sure the shard has a working connection. Fails fast during the backoff. */
static int shard_connect(struct redis_layer *L, struct shard *s)
{
	follow_master(s);
	if (s->c)
		return 0;
	int64_t now = util_now_ms();
	if (now < s->retry_at) {
		s->outage.refused++;
		return layer_fail(-ENOTCONN, "cannot reach %s (next attempt in %lld ms)",
				  s->ep.desc, (long long)(s->retry_at - now));
	}
	char what[256];
	redisContext *c = open_context(L, s, what, sizeof(what));
	if (!c)
		return shard_failed(s, what);
	const char *why = setup_context(L, s, c);
	if (!why)
		why = check_role(s, c);
	if (why) {
		redisFree(c);
		return shard_failed(s, why);
	}
	s->c = c;
	/* The id lets another connection cancel a BLPOP on this one: needed to wait on several
	 * shards, or on one and a watched descriptor. */
	{
		redisReply *r = redisCommand(c, "CLIENT ID");
		if (!r)
			return connection_lost(s);
		/* Without a password, NOAUTH comes here. A user that may not run CLIENT just
		 * waits out its BLPOP timeouts instead of cancelling them. */
		if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOPERM", 6) != 0 &&
		    layer_error_kind(r->str) != LAYER_ERR_OTHER) {
			snprintf(what, sizeof(what), "%s", r->str);
			freeReplyObject(r);
			return shard_failed(s, what);
		}
		s->client_id = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
		freeReplyObject(r);
	}
	/* The outage ends with the first command that works, not here: a replica or a user
	 * without permissions accepts the connection and refuses the commands. */
	return 0;
}

/* Runs one command. Returns the reply (caller frees) or NULL with the error recorded in *rc. */
static redisReply *shard_command(struct redis_layer *L, struct shard *s, int *rc, int argc,
				 const char **argv, const size_t *lens)
{
	*rc = shard_connect(L, s);
	if (*rc < 0)
		return NULL;
	redisReply *r = ctx_command(s->c, argc, argv, lens);
	if (!r) {
		*rc = connection_lost(s);
		return NULL;
	}
	return checked(s, r, rc);
}

static int reply_error(struct shard *s, redisReply *r, const char *what)
{
	int rc = layer_fail(-EPROTO, "%s answered %s with %s%.*s", s->ep.desc, what,
			    r->type == REDIS_REPLY_ERROR ? "" : "an unexpected reply ",
			    r->type == REDIS_REPLY_ERROR ? (int)r->len : 0,
			    r->type == REDIS_REPLY_ERROR ? r->str : "");
	return rc;
}

/* Runs one command; when it fails, *sent says whether the whole command had been written, so
 * that the server may have carried it out (a command cut short is discarded with the
 * connection). */
static redisReply *command_sent(redisContext *c, int argc, const char **argv, const size_t *lens,
				bool *sent)
{
	*sent = false;
	if (redisAppendCommandArgv(c, argc, argv, lens) != REDIS_OK)
		return NULL;
	int done = 0;
	while (!done)
		if (redisBufferWrite(c, &done) != REDIS_OK)
			return NULL;
	*sent = true;
	void *r = NULL;
	if (redisGetReply(c, &r) != REDIS_OK)
		return NULL;
	return r;
}

/* EVALSHA, loading the script again if the server lost it (SCRIPT FLUSH). argv[0..2] are left
 * free for the command, the script's hash and the key count; the caller fills the rest. */
static redisReply *shard_script(struct redis_layer *L, struct shard *s, int *rc, enum script_id id,
				size_t nkeys, size_t argc, const char **argv, size_t *lens)
{
	*rc = shard_connect(L, s);
	if (*rc < 0)
		return NULL;
	char numkeys[24];
	snprintf(numkeys, sizeof(numkeys), "%zu", nkeys);
	const char **args = xmalloc(argc * sizeof(*args));
	memcpy(args, argv, argc * sizeof(*args));
	args[0] = "EVALSHA";
	lens[0] = 7;
	lens[1] = 40;
	args[2] = numkeys;
	lens[2] = strlen(numkeys);
	redisReply *r = NULL;
	for (int attempt = 0; attempt < 2; attempt++) {
		args[1] = layer_script_sha(id);
		bool sent = false;
		r = command_sent(s->c, (int)argc, args, lens, &sent);
		if (!r) {
			/* The server closing the connection means it went away (a restart): the
			 * command most likely died with it. A timeout or a reset mid-answer may
			 * come after it was carried out. */
			if (sent && s->c->err == REDIS_ERR_EOF)
				sent = false;
			*rc = connection_lost(s);
			if (sent)
				*rc = layer_fail(-EIO,
						 "%s: no answer after the command was sent (the "
						 "connection broke or timed out); it may have been "
						 "carried out",
						 s->ep.desc);
			break;
		}
		if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0 &&
		    attempt == 0) {
			freeReplyObject(r);
			r = NULL;
			*rc = load_script(s, id);
			if (*rc < 0)
				break;
			continue;
		}
		r = checked(s, r, rc);
		break;
	}
	free(args);
	return r;
}

/* --- Placement ------------------------------------------------------------------------------- */

static size_t shard_of(const struct redis_layer *L, const char *name, size_t len)
{
	return layer_shard_of(L->nshards, name, len);
}

static size_t channel_home(const struct redis_layer *L, const char *channel)
{
	return layer_channel_home(L->nshards, channel);
}

static size_t send_shard(struct redis_layer *L, const char *channel)
{
	size_t home = channel_home(L, channel);
	if (home != SIZE_MAX)
		return home;
	return L->rr++ % L->nshards;
}

/* --- Send ------------------------------------------------------------------------------------ */

/* Sends several messages: one script call per shard that has any. */
static void redis_send_many(struct laurel_layer *base, struct laurel_outgoing *items, size_t n)
{
	struct redis_layer *L = (struct redis_layer *)base;
	const struct layer_config *cfg = &base->cfg;
	size_t one, *shard = n == 1 ? &one : xmalloc(n * sizeof(*shard));
	for (size_t i = 0; i < n; i++) {
		shard[i] = SIZE_MAX;
		if (items[i].result)
			continue;
		struct buf payload;
		buf_init(&payload);
		int rc = layer_encode(cfg, items[i].channel, items[i].msg, &payload);
		if (rc < 0) {
			items[i].result = rc;
			buf_fini(&payload);
			continue;
		}
		char hex[32];
		util_rng_hex(&L->rng, hex, 32);
		shard[i] = send_shard(L, items[i].channel);
		layer_batch_add(&L->batch[shard[i]], cfg, items[i].channel, hex, &payload);
	}
	for (size_t sh = 0; sh < L->nshards; sh++) {
		struct layer_batch *b = &L->batch[sh];
		if (b->n == 0)
			continue;
		const char **argv;
		size_t *lens;
		size_t argc = layer_batch_command(b, cfg, &argv, &lens);
		int rc;
		struct shard *s = &L->shards[sh];
		redisReply *r = shard_script(L, s, &rc, SCRIPT_SEND_MANY, 0, argc, argv, lens);
		if (r && (r->type != REDIS_REPLY_ARRAY || r->elements != b->n)) {
			rc = reply_error(s, r, "a send");
			freeReplyObject(r);
			r = NULL;
		} else if (r) {
			shard_ok(s);
		}
		for (size_t i = 0, k = 0; i < n; i++) {
			if (shard[i] != sh)
				continue;
			const redisReply *e = r ? r->element[k++] : NULL;
			if (!r)
				items[i].result = rc;
			else if (e->type != REDIS_REPLY_INTEGER || e->integer != 1)
				items[i].result =
					layer_fail(LAUREL_FULL, "channel %s is full", items[i].channel);
		}
		freeReplyObject(r);
		layer_batch_clear(b);
	}
	if (shard != &one)
		free(shard);
}

static int redis_send(struct laurel_layer *base, const char *channel, const struct laurel_msg *msg)
{
	struct laurel_outgoing it = {.channel = channel, .msg = msg};
	redis_send_many(base, &it, 1);
	return it.result;
}

/* --- Receive --------------------------------------------------------------------------------- */

/* Channels of one receive, as queue key names, per shard. */
struct plan {
	const char ***keys; /* keys[shard][i] */
	size_t *nkeys;
	char **owned;	    /* the key strings */
	size_t nowned;
};

static void plan_init(struct redis_layer *L, struct plan *p, const char *const *channels,
		      size_t nchannels)
{
	const char *prefix = L->base.cfg.prefix;
	p->keys = xcalloc(L->nshards, sizeof(*p->keys));
	p->nkeys = xcalloc(L->nshards, sizeof(*p->nkeys));
	p->owned = xcalloc(nchannels, sizeof(char *));
	p->nowned = 0;
	for (size_t i = 0; i < L->nshards; i++)
		p->keys[i] = xcalloc(nchannels, sizeof(char *));
	for (size_t i = 0; i < nchannels; i++) {
		size_t n = strlen(prefix) + strlen(channels[i]) + 1;
		char *k = xmalloc(n);
		snprintf(k, n, "%s%s", prefix, channels[i]);
		/* The same channel named twice is popped once. */
		bool dup = false;
		for (size_t j = 0; j < p->nowned; j++)
			if (strcmp(p->owned[j], k) == 0)
				dup = true;
		if (dup) {
			free(k);
			continue;
		}
		p->owned[p->nowned++] = k;
		size_t home = channel_home(L, channels[i]);
		for (size_t sh = 0; sh < L->nshards; sh++)
			if (home == SIZE_MAX || home == sh)
				p->keys[sh][p->nkeys[sh]++] = k;
	}
}

static void plan_fini(struct redis_layer *L, struct plan *p)
{
	for (size_t i = 0; i < p->nowned; i++)
		free(p->owned[i]);
	for (size_t i = 0; i < L->nshards; i++)
		free(p->keys[i]);
	free(p->owned);
	free(p->keys);
	free(p->nkeys);
}

static void shuffle(struct redis_layer *L, const char **v, size_t n)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = util_rng_below(&L->rng, i);
		const char *t = v[i - 1];
		v[i - 1] = v[j];
		v[j] = t;
	}
}

/* Decodes one popped payload into out[*got]; undecodable ones are logged and skipped. */
static void deliver(struct redis_layer *L, const char *queuekey, size_t keylen, const char *payload,
		    size_t len, struct laurel_received *out, size_t *got)
{
	const char *queue = queuekey + L->prefixlen;
	size_t qlen = keylen - L->prefixlen;
	if (layer_decode(queue, qlen, payload, len, &out[*got]) == 0)
		(*got)++;
	else
		log_warn("dropped a message on %.*s that does not decode (%zu bytes)", (int)qlen,
			 queue, len);
}

static void take_held(struct redis_layer *L, struct plan *p, struct laurel_received *out,
		      size_t max, size_t *got)
{
	size_t w = 0;
	for (size_t i = 0; i < L->nheld; i++) {
		struct held *h = &L->held[i];
		bool wanted = false;
		for (size_t j = 0; j < p->nowned && !wanted; j++)
			wanted = strcmp(p->owned[j] + L->prefixlen, h->queue) == 0;
		if (wanted && *got < max) {
			size_t qn = strlen(h->queue);
			if (layer_decode(h->queue, qn, h->payload, h->len, &out[*got]) == 0)
				(*got)++;
			free(h->queue);
			free(h->payload);
		} else {
			L->held[w++] = *h;
		}
	}
	L->nheld = w;
}

static void hold(struct redis_layer *L, const char *queuekey, size_t keylen, const char *payload,
		 size_t len)
{
	L->held = xrealloc(L->held, (L->nheld + 1) * sizeof(*L->held));
	struct held *h = &L->held[L->nheld++];
	h->queue = xstrndup(queuekey + L->prefixlen, keylen - L->prefixlen);
	h->payload = xmalloc(len);
	memcpy(h->payload, payload, len);
	h->len = len;
}

/* Pops whatever is ready on one shard, up to max - *got messages; first reads and deletes the
 * body key a BLPOP popped (popped: [queue key, body key]) if given, which is held for the next
 * receive when the batch is already full. Returns 0 or an error. */
static int pop_ready(struct redis_layer *L, size_t sh, struct plan *p, redisReply *popped,
		     struct laurel_received *out, size_t max, size_t *got)
{
	size_t n = p->nkeys[sh];
	if (n == 0 || (*got >= max && !popped))
		return 0;
	const char **argv = xcalloc(n + 6, sizeof(char *));
	size_t *lens = xcalloc(n + 6, sizeof(size_t));
	shuffle(L, p->keys[sh], n);
	char smax[24];
	size_t want = *got < max ? max - *got : 0;
	if (popped && want)
		want--; /* the popped one counts */
	snprintf(smax, sizeof(smax), "%zu", want);
	for (size_t i = 0; i < n; i++) {
		argv[3 + i] = p->keys[sh][i];
		lens[3 + i] = strlen(argv[3 + i]);
	}
	size_t argc = 3 + n;
	argv[argc] = smax;
	lens[argc++] = strlen(smax);
	if (popped) {
		argv[argc] = popped->element[1]->str;
		lens[argc++] = popped->element[1]->len;
		argv[argc] = popped->element[0]->str;
		lens[argc++] = popped->element[0]->len;
	}
	int rc;
	struct shard *s = &L->shards[sh];
	redisReply *r = shard_script(L, s, &rc, SCRIPT_POP, n, argc, argv, lens);
	free(argv);
	free(lens);
	if (!r)
		return rc;
	if (r->type != REDIS_REPLY_ARRAY) {
		/* Asking again at once would get the same answer: back off as for an outage. */
		char what[256];
		snprintf(what, sizeof(what), "a receive: %s",
			 r->type == REDIS_REPLY_ERROR ? r->str : "an unexpected reply");
		freeReplyObject(r);
		return shard_failed(s, what);
	}
	shard_ok(s);
	L->drained = r->elements > 0 && r->element[0]->type == REDIS_REPLY_INTEGER &&
		     r->element[0]->integer == 0;
	for (size_t i = 1; i + 1 < r->elements; i += 2) {
		redisReply *k = r->element[i], *b = r->element[i + 1];
		const char *payload = b->str;
		size_t len = b->len;
		if (layer_direct_entry(b->str, b->len, L->base.cfg.expiry, &payload, &len) < 0)
			continue; /* expired unread, as a body key would have */
		if (*got < max)
			deliver(L, k->str, k->len, payload, len, out, got);
		else
			hold(L, k->str, k->len, payload, len);
	}
	freeReplyObject(r);
	return 0;
}

/* Sends a BLPOP on shard sh. polled: the caller waits for the answer with poll() (its own
 * timeout), so the socket's read timeout need not change — two system calls fewer each way. */
static int append_blpop(struct redis_layer *L, size_t sh, struct plan *p, double seconds,
			bool polled)
{
	struct shard *s = &L->shards[sh];
	size_t n = p->nkeys[sh];
	const char **argv = xcalloc(n + 2, sizeof(char *));
	size_t *lens = xcalloc(n + 2, sizeof(size_t));
	char tmo[32];
	snprintf(tmo, sizeof(tmo), "%.3f", seconds);
	shuffle(L, p->keys[sh], n);
	argv[0] = "BLPOP";
	lens[0] = 5;
	for (size_t i = 0; i < n; i++) {
		argv[1 + i] = p->keys[sh][i];
		lens[1 + i] = strlen(argv[1 + i]);
	}
	argv[1 + n] = tmo;
	lens[1 + n] = strlen(tmo);
	int rc = redisAppendCommandArgv(s->c, (int)n + 2, argv, lens) == REDIS_OK ? 0 : -1;
	free(argv);
	free(lens);
	if (rc < 0)
		return connection_lost(s);
	/* A finite BLPOP answers within its own timeout; the socket waits a little longer. A wait
	 * forever relies on TCP keepalive to notice a dead server. */
	if (!polled) {
		struct timeval tv = {0, 0};
		if (seconds > 0)
			tv = ms_tv((int)(seconds * 1000) + L->base.cfg.command_timeout_ms);
		redisSetTimeout(s->c, tv);
		s->long_timeout = true;
	}
	int done = 0;
	while (!done)
		if (redisBufferWrite(s->c, &done) != REDIS_OK)
			return connection_lost(s);
	s->blocked = true;
	return 0;
}

/* Reads the reply of an outstanding BLPOP on shard sh; a popped body key is read and deleted,
 * with whatever else is ready up to max, in one more round trip. */
static int finish_blpop(struct redis_layer *L, size_t sh, struct plan *p,
			struct laurel_received *out, size_t max, size_t *got)
{
	struct shard *s = &L->shards[sh];
	redisReply *r = NULL;
	int ok = redisGetReply(s->c, (void **)&r);
	s->blocked = false;
	if (ok != REDIS_OK)
		return connection_lost(s);
	if (s->long_timeout)
		redisSetTimeout(s->c, ms_tv(L->base.cfg.command_timeout_ms));
	s->long_timeout = false;
	int rc = 0;
	if (r->type == REDIS_REPLY_ERROR) {
		/* Whatever the error, asking again at once would get it again. */
		char what[256];
		snprintf(what, sizeof(what), "BLPOP: %s", r->str);
		freeReplyObject(r);
		return shard_failed(s, what);
	}
	shard_ok(s);
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
		const redisReply *k = r->element[0], *b = r->element[1];
		const char *payload;
		size_t len;
		int d = layer_direct_entry(b->str, b->len, L->base.cfg.expiry, &payload, &len);
		if (d == 0) {
			rc = pop_ready(L, sh, p, r, out, max, got);
		} else {
			/* A direct entry is the message itself: no body key to read. */
			if (d > 0 && *got < max)
				deliver(L, k->str, k->len, payload, len, out, got);
			else if (d > 0)
				hold(L, k->str, k->len, payload, len);
			rc = pop_ready(L, sh, p, NULL, out, max, got);
		}
	}
	freeReplyObject(r);
	return rc;
}

/* Cancels the outstanding BLPOP on s from its control connection; what it may have popped in
 * the meantime is delivered or held. */
static int cancel_blpop(struct redis_layer *L, size_t sh, struct plan *p,
			struct laurel_received *out, size_t max, size_t *got)
{
	struct shard *s = &L->shards[sh];
	if (s->client_id < 0) /* a server without CLIENT ID / UNBLOCK (before Redis 5) */
		return finish_blpop(L, sh, p, out, max, got);
	if (!s->ctl) {
		char why[256];
		s->ctl = open_context(L, s, why, sizeof(why));
		if (!s->ctl || setup_context(L, s, s->ctl)) {
			redisFree(s->ctl);
			s->ctl = NULL;
			return connection_lost(s);
		}
	}
	/* The server may not have run the BLPOP yet (it came on another connection), and then
	 * there is nothing to unblock: try again until it either answers or is unblocked. */
	int64_t give_up = util_now_ms() + L->base.cfg.command_timeout_ms;
	for (int wait_ms = 1;; wait_ms = wait_ms < 16 ? wait_ms * 2 : 16) {
		redisReply *r = redisCommand(s->ctl, "CLIENT UNBLOCK %lld", s->client_id);
		if (!r)
			return connection_lost(s);
		bool unblocked = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
		freeReplyObject(r);
		if (unblocked)
			break;
		struct pollfd pfd = {.fd = s->c->fd, .events = POLLIN};
		if (poll(&pfd, 1, wait_ms) > 0 || util_now_ms() >= give_up)
			break; /* it answered by itself (or the read below times out) */
	}
	return finish_blpop(L, sh, p, out, max, got);
}

/* True if the watched descriptor is readable now. */
static bool watch_ready(struct redis_layer *L)
{
	if (L->watch_fd < 0)
		return false;
	struct pollfd pfd = {.fd = L->watch_fd, .events = POLLIN};
	return poll(&pfd, 1, 0) > 0;
}

/* A Sentinel shard whose sentinels named a new master: its connection (to the old one) goes,
 * and the next attempt is now. */
static void master_moved(struct shard *s)
{
	sentinel_ack(s->sentinel);
	follow_master(s);
	if (!s->c) {
		s->retry_at = 0;
		s->backoff_ms = 0;
	}
}

/* Adds the descriptors of the plan's Sentinel shards to pfd (at most max), their shards to
 * which[]. Returns how many. */
static size_t sentinel_fds(struct redis_layer *L, const struct plan *p, struct pollfd *pfd,
			   size_t *which, size_t max)
{
	size_t n = 0;
	for (size_t sh = 0; sh < L->nshards && n < max; sh++) {
		if (!p->nkeys[sh] || !L->shards[sh].sentinel)
			continue;
		pfd[n] = (struct pollfd){.fd = sentinel_fd(L->shards[sh].sentinel), .events = POLLIN};
		which[n++] = sh;
	}
	return n;
}

/* Sleeps ms, or until the watched descriptor is readable (then returns true), or until a
 * Sentinel shard of the plan has a new master (then returns false, its next attempt due). */
static bool sleep_watching(struct redis_layer *L, const struct plan *p, int64_t ms)
{
	struct pollfd pfd[65];
	size_t which[64], n = 0;
	if (L->watch_fd >= 0)
		pfd[n++] = (struct pollfd){.fd = L->watch_fd, .events = POLLIN};
	size_t first = n;
	n += sentinel_fds(L, p, pfd + n, which, 64);
	if (n == 0) {
		struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
		nanosleep(&ts, NULL);
		return false;
	}
	if (poll(pfd, n, (int)ms) <= 0)
		return false;
	for (size_t i = first; i < n; i++)
		if (pfd[i].revents)
			master_moved(&L->shards[which[i - first]]);
	return first && pfd[0].revents;
}

/* Blocks until a message arrives on any shard of the plan, the time runs out, or the watched
 * descriptor is readable. */
static int wait_any(struct redis_layer *L, struct plan *p, int timeout_ms,
		    struct laurel_received *out, size_t max, size_t *got)
{
	double seconds = timeout_ms < 0 ? 0 : timeout_ms / 1000.0;
	if (timeout_ms > 0 && seconds < 0.001)
		seconds = 0.001;
	size_t active[64], nactive = 0, used = 0;
	int rc = 0;
	for (size_t sh = 0; sh < L->nshards; sh++)
		used += p->nkeys[sh] > 0;
	/* One shard and nothing else to watch: a plain blocking read. Else poll(). A Sentinel
	 * shard's watcher is watched too: a new master ends the BLPOP on the old one at once. */
	bool polled = used > 1 || L->watch_fd >= 0;
	for (size_t sh = 0; sh < L->nshards && !polled; sh++)
		polled = p->nkeys[sh] && L->shards[sh].sentinel;
	for (size_t sh = 0; sh < L->nshards && nactive < ARRAY_SIZE(active); sh++) {
		if (!p->nkeys[sh])
			continue;
		if (shard_connect(L, &L->shards[sh]) < 0)
			continue;
		if (append_blpop(L, sh, p, seconds, polled) == 0)
			active[nactive++] = sh;
	}
	if (nactive == 0)
		return -ENOTCONN; /* the error text is already recorded */
	if (!polled)
		return finish_blpop(L, active[0], p, out, max, got);

	struct pollfd pfd[129];
	size_t which[64];
	for (size_t i = 0; i < nactive; i++) {
		pfd[i].fd = L->shards[active[i]].c->fd;
		pfd[i].events = POLLIN;
		pfd[i].revents = 0;
	}
	size_t npfd = nactive;
	if (L->watch_fd >= 0)
		pfd[npfd++] = (struct pollfd){.fd = L->watch_fd, .events = POLLIN};
	size_t sfirst = npfd;
	npfd += sentinel_fds(L, p, pfd + npfd, which, 64);
	int slack = timeout_ms < 0 ? -1 : timeout_ms + L->base.cfg.command_timeout_ms;
	int n;
	do
		n = poll(pfd, npfd, slack);
	while (n < 0 && errno == EINTR && !watch_ready(L));
	if (L->watch_fd >= 0 && (n < 0 ? watch_ready(L) : pfd[nactive].revents != 0))
		L->woken = true;
	/* Read the first shard that answered, then cancel and collect the others; a master that
	 * changed is followed after (what a BLPOP popped is read whole first). */
	for (size_t i = 0; i < nactive; i++) {
		struct shard *s = &L->shards[active[i]];
		if (!s->blocked)
			continue;
		int r;
		if (pfd[i].revents)
			r = finish_blpop(L, active[i], p, out, max, got);
		else
			r = cancel_blpop(L, active[i], p, out, max, got);
		if (r < 0)
			rc = r;
	}
	for (size_t i = sfirst; n > 0 && i < npfd; i++)
		if (pfd[i].revents)
			master_moved(&L->shards[which[i - sfirst]]);
	return *got ? 0 : rc;
}

/* Waits for a shard of the plan to be reachable again, up to deadline (-1: none). Returns 0 when
 * one is connected, else the failure. */
static int wait_reachable(struct redis_layer *L, struct plan *p, int64_t deadline)
{
	for (;;) {
		int rc = -ENOTCONN;
		int64_t next = INT64_MAX;
		for (size_t sh = 0; sh < L->nshards; sh++) {
			if (!p->nkeys[sh])
				continue;
			struct shard *s = &L->shards[sh];
			if (s->c || util_now_ms() >= s->retry_at)
				rc = shard_connect(L, s);
			if (rc == 0)
				return 0;
			if (s->retry_at < next)
				next = s->retry_at;
		}
		int64_t now = util_now_ms();
		if (deadline >= 0 && now >= deadline)
			return rc;
		/* Sleep until the next attempt, or to the caller's deadline if that comes first: a
		 * receive with a timeout waits it out, as it would with Redis up. */
		if (deadline >= 0 && next > deadline)
			next = deadline;
		if (next > now && sleep_watching(L, p, next - now)) {
			L->woken = true;
			return rc;
		}
	}
}

static int redis_receive(struct laurel_layer *base, const char *const *channels, size_t nchannels,
			 int timeout_ms, struct laurel_received *out, size_t max, size_t *got)
{
	struct redis_layer *L = (struct redis_layer *)base;
	struct plan p;
	int rc = 0, last = 0;
	int64_t deadline = timeout_ms < 0 ? -1 : util_now_ms() + timeout_ms;
	plan_init(L, &p, channels, nchannels);
	take_held(L, &p, out, max, got);
	L->woken = false;
	size_t used = 0;
	for (size_t sh = 0; sh < L->nshards; sh++)
		used += p.nkeys[sh] > 0;
	/* A reader that drained its queue last time goes straight to BLPOP on a single shard:
	 * BLPOP answers at once when something is ready, and the script that follows it takes the
	 * rest of a batch, so this saves a round trip per message when the reader keeps up. */
	bool try_ready = !(*got == 0 && timeout_ms != 0 && used == 1 && L->drained);
	for (;;) {
		size_t reachable = 0;
		if (try_ready) {
			/* Whatever is ready, on every shard, starting at a different one each time. */
			size_t start = L->nshards > 1 ? util_rng_below(&L->rng, L->nshards) : 0;
			for (size_t i = 0; i < L->nshards && *got < max; i++) {
				size_t sh = (start + i) % L->nshards;
				if (!p.nkeys[sh])
					continue;
				rc = pop_ready(L, sh, &p, NULL, out, max, got);
				if (rc < 0)
					last = rc;
				else
					reachable++;
			}
		} else {
			reachable = 1; /* wait_any finds out */
		}
		try_ready = true;
		if (*got > 0 || timeout_ms == 0)
			break;
		int64_t now = util_now_ms();
		if (deadline >= 0 && now >= deadline)
			break;
		if (reachable == 0) {
			/* Every shard is down: wait for one to come back instead of spinning. */
			rc = wait_reachable(L, &p, deadline);
			if (rc < 0 || L->woken) {
				last = rc;
				break;
			}
			continue;
		}
		rc = wait_any(L, &p, deadline < 0 ? -1 : (int)(deadline - now), out, max, got);
		if (rc < 0)
			last = rc;
		if (*got > 0 || L->woken)
			break;
		L->drained = true;
		if (rc < 0 && deadline >= 0 && util_now_ms() >= deadline)
			break;
	}
	plan_fini(L, &p);
	if (*got > 0) {
		layer_clear_error();
		return 0;
	}
	if (last < 0) {
		/* Report the failure, unless a reachable shard simply had nothing. */
		for (size_t sh = 0; sh < L->nshards; sh++)
			if (L->shards[sh].c)
				return 0;
		return last;
	}
	return 0;
}

/* --- Channels and groups --------------------------------------------------------------------- */

static int redis_new_channel(struct laurel_layer *base, const char *pattern, char *out)
{
	struct redis_layer *L = (struct redis_layer *)base;
	size_t n = strlen(pattern);
	for (int attempt = 0; attempt < 100; attempt++) {
		memcpy(out, pattern, n);
		util_rng_letters(&L->rng, out + n, 12);
		out[n + 12] = '\0';
		if (pattern[n - 1] == '!')
			return 0; /* a local part of a process channel has no key of its own */
		int rc;
		struct shard *s = &L->shards[shard_of(L, out, n + 12)];
		char key[256];
		snprintf(key, sizeof(key), "%s%s", base->cfg.prefix, out);
		const char *argv[2] = {"EXISTS", key};
		size_t lens[2] = {6, strlen(key)};
		redisReply *r = shard_command(L, s, &rc, 2, argv, lens);
		if (!r)
			return rc;
		bool exists = r->type == REDIS_REPLY_INTEGER && r->integer > 0;
		if (r->type != REDIS_REPLY_INTEGER)
			rc = reply_error(s, r, "EXISTS");
		freeReplyObject(r);
		if (rc < 0)
			return rc;
		if (!exists)
			return 0;
	}
	return layer_fail(-EPROTO, "could not find an unused channel name for %s", pattern);
}

static void group_key(const struct redis_layer *L, const char *group, char *key, size_t n)
{
	snprintf(key, n, "%s:group:%s", L->base.cfg.prefix, group);
}

static struct shard *group_shard(struct redis_layer *L, const char *group)
{
	return &L->shards[shard_of(L, group, strlen(group))];
}

/* Runs a pipeline of printf-style commands on s; replies go to out[0..n). */
static int pipeline(struct redis_layer *L, struct shard *s, redisReply **out, size_t n)
{
	if (L->ahead_shard == s) {
		L->ahead_shard = NULL;
		if (redisGetReply(s->c, (void **)&L->ahead_reply) != REDIS_OK) {
			L->ahead_reply = NULL;
			return connection_lost(s);
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (redisGetReply(s->c, (void **)&out[i]) != REDIS_OK) {
			for (size_t j = 0; j < i; j++)
				freeReplyObject(out[j]);
			return connection_lost(s);
		}
	}
	for (size_t i = 0; i < n; i++)
		if (out[i]->type == REDIS_REPLY_ERROR) {
			int rc = reply_error(s, out[i], "a command");
			if (layer_error_kind(out[i]->str) != LAYER_ERR_OTHER)
				rc = shard_failed(s, out[i]->str);
			for (size_t j = 0; j < n; j++)
				freeReplyObject(out[j]);
			return rc;
		}
	shard_ok(s);
	return 0;
}

static int redis_group_add(struct laurel_layer *base, const char *group, const char *channel)
{
	struct redis_layer *L = (struct redis_layer *)base;
	struct shard *s = group_shard(L, group);
	char key[160], score[32];
	int rc = shard_connect(L, s);
	if (rc < 0)
		return rc;
	group_key(L, group, key, sizeof(key));
	snprintf(score, sizeof(score), "%.6f", util_wall_time());
	redisAppendCommand(s->c, "ZADD %s %s %s", key, score, channel);
	redisAppendCommand(s->c, "EXPIRE %s %d", key, base->cfg.group_expiry);
	redisReply *r[2];
	rc = pipeline(L, s, r, 2);
	if (rc < 0)
		return rc;
	freeReplyObject(r[0]);
	freeReplyObject(r[1]);
	return 0;
}

static int redis_group_discard(struct laurel_layer *base, const char *group, const char *channel)
{
	struct redis_layer *L = (struct redis_layer *)base;
	struct shard *s = group_shard(L, group);
	char key[160];
	group_key(L, group, key, sizeof(key));
	int rc = shard_connect(L, s);
	if (rc < 0)
		return rc;
	redisAppendCommand(s->c, "ZREM %s %s", key, channel);
	redisReply *r;
	rc = pipeline(L, s, &r, 1);
	if (rc < 0)
		return rc;
	freeReplyObject(r);
	return 0;
}

static int redis_interfaces(struct laurel_layer *base, char ***prefixes, size_t *n);
static struct shard *kv_shard(struct redis_layer *L, const char *key, char *full, size_t n);

/* Presence: a member of a laurel interface ("laurel.response.AbCdEfGhIj!q7") whose interface no
 * longer announces itself is a connection that died with its process (kill -9, a crash): its
 * websocket.disconnect never comes. Such members are left out and removed (with their sessions)
 * by whoever reads the group first. A member added less than PRESENCE_GRACE_S ago is kept: its
 * interface's first announcement may not have reached Redis yet. Members of other processes
 * (Daphne) keep asgi_redis's rules.
 *
 * Checking every member on every read would make a count of a 10,000-member group cost 10,000
 * strings instead of one ZCARD. So a process remembers which groups it checked (a direct-mapped
 * table of PRESENCE_SLOTS): while no interface has gone since, and for at most PRESENCE_SWEEP_MS,
 * a read is the plain ZCARD / ZRANGE; an interface found gone, or the time, makes the next read
 * of each group check it again. */
#define PRESENCE_PREFIX "laurel.response."
#define PRESENCE_GRACE_S 30
#define PRESENCE_CACHE_MS 1000
#define PRESENCE_SWEEP_MS 30000
#define PRESENCE_SLOTS 1024

static bool laurel_member(const char *m)
{
	size_t n = strlen(PRESENCE_PREFIX);
	return strncmp(m, PRESENCE_PREFIX, n) == 0 && strlen(m) > n + 11 && m[n + 10] == '!';
}

static bool has_prefix(char **v, const char *p, size_t plen)
{
	for (; v && *v; v++)
		if (strlen(*v) == plen && strncmp(*v, p, plen) == 0)
			return true;
	return false;
}

/* Reads the live interfaces again when the last read is older than PRESENCE_CACHE_MS; one that
 * was live and is not any more bumps live_gen. Returns 0, or -1 if they cannot be known now. */
static int refresh_live(struct redis_layer *L)
{
	int64_t now = util_now_ms();
	if (L->live_at && now - L->live_at < PRESENCE_CACHE_MS)
		return 0;
	char **v;
	size_t n;
	if (redis_interfaces(&L->base, &v, &n) < 0)
		return -1;
	for (char **p = L->live; p && *p; p++)
		if (!has_prefix(v, *p, strlen(*p))) {
			L->live_gen++;
			break;
		}
	laurel_strv_free(L->live);
	L->live = v;
	L->live_at = now;
	return 0;
}

static struct swept *swept_slot(struct redis_layer *L, const char *group)
{
	if (!L->swept)
		L->swept = xcalloc(PRESENCE_SLOTS, sizeof(*L->swept));
	return &L->swept[util_crc32(group, strlen(group)) % PRESENCE_SLOTS];
}

/* Whether group was checked recently enough that a plain read is right. */
static bool recently_swept(struct redis_layer *L, const char *group)
{
	if (refresh_live(L) < 0)
		return true; /* nothing can be checked now: read as asgi_redis does */
	struct swept *w = swept_slot(L, group);
	return strcmp(w->group, group) == 0 && w->gen == L->live_gen &&
	       util_now_ms() - w->at < PRESENCE_SWEEP_MS;
}

/* Prunes expired memberships and, checked: reads the group's count (n) or members (out, may be
 * NULL for a count). */
/* Connects group's shard and queues the pruning of its expired memberships (asgi_redis's rule):
 * the first reply of the pipeline that follows. */
static int group_prune(struct redis_layer *L, const char *group, struct shard **s, char *key,
		       size_t keysize)
{
	*s = group_shard(L, group);
	group_key(L, group, key, keysize);
	int rc = shard_connect(L, *s);
	if (rc < 0)
		return rc;
	long long cutoff = (long long)util_wall_time() - L->base.cfg.group_expiry;
	redisAppendCommand((*s)->c, "ZREMRANGEBYSCORE %s 0 %lld", key, cutoff);
	return 0;
}

static int group_plain(struct redis_layer *L, const char *group, size_t *n, redisReply **out)
{
	struct shard *s;
	char key[160];
	int rc = group_prune(L, group, &s, key, sizeof(key));
	if (rc < 0)
		return rc;
	if (out)
		redisAppendCommand(s->c, "ZRANGE %s 0 -1", key);
	else
		redisAppendCommand(s->c, "ZCARD %s", key);
	redisReply *r[2];
	rc = pipeline(L, s, r, 2);
	if (rc < 0)
		return rc;
	freeReplyObject(r[0]);
	if (out) {
		*out = r[1];
		*n = r[1]->type == REDIS_REPLY_ARRAY ? r[1]->elements : 0;
	} else {
		*n = r[1]->type == REDIS_REPLY_INTEGER ? (size_t)r[1]->integer : 0;
		freeReplyObject(r[1]);
	}
	return 0;
}

/* Reads every member, checking those older than the grace period: the live members are returned
 * (NULL-terminated, caller frees); the others are removed from the group, and their sessions
 * forgotten, in one round trip. */
static int group_sweep(struct redis_layer *L, const char *group, char ***members, size_t *n)
{
	struct shard *s;
	char key[160];
	int rc = group_prune(L, group, &s, key, sizeof(key));
	if (rc < 0)
		return rc;
	long long old = (long long)util_wall_time() - PRESENCE_GRACE_S;
	redisAppendCommand(s->c, "ZRANGEBYSCORE %s -inf (%lld", key, old);
	redisAppendCommand(s->c, "ZRANGEBYSCORE %s %lld +inf", key, old);
	redisReply *r[3];
	rc = pipeline(L, s, r, 3);
	if (rc < 0)
		return rc;
	size_t nold = r[1]->type == REDIS_REPLY_ARRAY ? r[1]->elements : 0;
	size_t nyoung = r[2]->type == REDIS_REPLY_ARRAY ? r[2]->elements : 0;
	char **v = xcalloc(nold + nyoung + 1, sizeof(char *));
	const char **dead = xcalloc(nold + 2, sizeof(char *));
	size_t ndead = 0;
	*n = 0;
	bool known = refresh_live(L) == 0;
	for (size_t i = 0; i < nold; i++) {
		const redisReply *e = r[1]->element[i];
		if (e->type != REDIS_REPLY_STRING)
			continue;
		if (known && laurel_member(e->str) &&
		    !has_prefix(L->live, e->str, (size_t)(strchr(e->str, '!') - e->str) + 1)) {
			dead[2 + ndead++] = e->str;
			continue;
		}
		v[(*n)++] = xstrndup(e->str, e->len);
	}
	/* A young member of an interface that is not live (yet, or any more) is kept, but the group
	 * must be checked again once it is old. */
	bool pending = false;
	for (size_t i = 0; i < nyoung; i++) {
		const redisReply *e = r[2]->element[i];
		if (e->type != REDIS_REPLY_STRING)
			continue;
		if (known && laurel_member(e->str) &&
		    !has_prefix(L->live, e->str, (size_t)(strchr(e->str, '!') - e->str) + 1))
			pending = true;
		v[(*n)++] = xstrndup(e->str, e->len);
	}
	if (ndead) {
		dead[0] = "ZREM";
		dead[1] = key;
		int zrc;
		redisReply *z = shard_command(L, s, &zrc, (int)ndead + 2, dead, NULL);
		freeReplyObject(z);
		/* Their sessions, one DEL per shard. */
		char (*skeys)[256] = xcalloc(ndead, sizeof(*skeys));
		const char **argv = xcalloc(ndead + 1, sizeof(char *));
		for (size_t sh = 0; sh < L->nshards; sh++) {
			size_t k = 0;
			argv[k++] = "DEL";
			for (size_t i = 0; i < ndead; i++) {
				char name[LAUREL_NAME_MAX + 16];
				snprintf(name, sizeof(name), "session:%s", dead[2 + i]);
				if (kv_shard(L, name, skeys[i], sizeof(skeys[i])) == &L->shards[sh])
					argv[k++] = skeys[i];
			}
			if (k == 1)
				continue;
			int crc;
			redisReply *d = shard_command(L, &L->shards[sh], &crc, (int)k, argv, NULL);
			freeReplyObject(d);
		}
		log_limited(LOG_INFO,
			    "group %s: removed %zu members of laurel interfaces that are no longer "
			    "live (first: %s)",
			    group, ndead, dead[2]);
		free(argv);
		free(skeys);
	}
	free(dead);
	for (size_t i = 0; i < 3; i++)
		freeReplyObject(r[i]);
	if (known && !pending) {
		struct swept *w = swept_slot(L, group);
		snprintf(w->group, sizeof(w->group), "%s", group);
		w->at = util_now_ms();
		w->gen = L->live_gen;
	}
	*members = v;
	return 0;
}

static int redis_group_members(struct laurel_layer *base, const char *group, char ***members,
			       size_t *n)
{
	struct redis_layer *L = (struct redis_layer *)base;
	if (!recently_swept(L, group))
		return group_sweep(L, group, members, n);
	redisReply *r;
	int rc = group_plain(L, group, n, &r);
	if (rc < 0)
		return rc;
	char **v = xcalloc(*n + 1, sizeof(char *));
	size_t k = 0;
	for (size_t i = 0; i < *n; i++)
		if (r->element[i]->type == REDIS_REPLY_STRING)
			v[k++] = xstrndup(r->element[i]->str, r->element[i]->len);
	*n = k;
	freeReplyObject(r);
	*members = v;
	return 0;
}

static int redis_group_count(struct laurel_layer *base, const char *group, size_t *n)
{
	struct redis_layer *L = (struct redis_layer *)base;
	if (recently_swept(L, group))
		return group_plain(L, group, n, NULL);
	char **v;
	int rc = group_sweep(L, group, &v, n);
	if (rc == 0)
		laurel_strv_free(v);
	return rc;
}

struct shard_batch {
	const char **argv;
	size_t *lens;
	size_t argc;
	char **owned; /* capacity strings */
	size_t nowned;
	size_t nbuckets; /* multicast messages gathered by the caller */
	bool sent;
};

/* A group send's members on one live interface, and their multicast message. */
struct bucket {
	const char *first;
	size_t n;
	struct buf payload;
};

static void history_keys(const struct redis_layer *L, const char *group, char *meta, char *log,
			 size_t n)
{
	snprintf(meta, n, "%s:history:%s", L->base.cfg.prefix, group);
	snprintf(log, n, "%s:history-log:%s", L->base.cfg.prefix, group);
}

/* A history append (script_history_add) and the strings its arguments point to. */
struct history_call {
	char meta[160], log[160], size[16], ttl[16], epoch[LAUREL_EPOCH_LEN + 1];
	const char *argv[9];
	size_t lens[9];
	struct shard *s;
};

/* Writes the append of plain to the group's history on the group's shard, ahead of the member
 * read that follows on the same connection: one round trip for both. */
static int history_write(struct redis_layer *L, const char *group,
			 const struct laurel_history_rule *rule, const struct buf *plain,
			 struct history_call *h)
{
	history_keys(L, group, h->meta, h->log, sizeof(h->meta));
	snprintf(h->size, sizeof(h->size), "%d", rule->size);
	snprintf(h->ttl, sizeof(h->ttl), "%d", rule->ttl_s);
	util_rng_hex(&L->rng, h->epoch, LAUREL_EPOCH_LEN);
	h->epoch[LAUREL_EPOCH_LEN] = '\0';
	const char *argv[] = {"EVALSHA", layer_script_sha(SCRIPT_HISTORY_ADD), "2", h->meta, h->log,
			      plain->data, h->size, h->ttl, h->epoch};
	size_t lens[] = {7, 40, 1, strlen(h->meta), strlen(h->log), plain->len, strlen(h->size),
			 strlen(h->ttl), LAUREL_EPOCH_LEN};
	memcpy(h->argv, argv, sizeof(argv));
	memcpy(h->lens, lens, sizeof(lens));
	h->s = group_shard(L, group);
	int rc = shard_connect(L, h->s);
	if (rc < 0)
		return rc;
	redisAppendCommandArgv(h->s->c, 9, h->argv, h->lens);
	L->ahead_shard = h->s;
	L->ahead_reply = NULL;
	return 0;
}

/* Takes the append's answer (read by the member read's pipeline; run again through
 * shard_script if the server had lost the script) and sets pos. */
static int history_read(struct redis_layer *L, struct history_call *h,
			struct laurel_history_pos *pos)
{
	struct shard *s = h->s;
	redisReply *r = L->ahead_reply;
	L->ahead_reply = NULL;
	if (L->ahead_shard == s) { /* the member read never read it: its answer is unread */
		L->ahead_shard = NULL;
		drop_connection(s);
		return layer_fail(-EIO, "%s: no answer to a history append (the connection broke); "
					"it may have been carried out",
				  s->ep.desc);
	}
	if (!r)
		return layer_fail(-EIO, "%s: no answer to a history append", s->ep.desc);
	int rc;
	if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
		freeReplyObject(r);
		r = shard_script(L, s, &rc, SCRIPT_HISTORY_ADD, 2, 9, h->argv, h->lens);
		if (!r)
			return rc;
	} else if (!(r = checked(s, r, &rc))) {
		return rc;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len != LAUREL_EPOCH_LEN ||
	    r->element[1]->type != REDIS_REPLY_INTEGER) {
		rc = reply_error(s, r, "a history append");
		freeReplyObject(r);
		return rc < 0 ? rc : -EPROTO;
	}
	memcpy(pos->epoch, r->element[0]->str, LAUREL_EPOCH_LEN);
	pos->epoch[LAUREL_EPOCH_LEN] = '\0';
	pos->offset = (uint64_t)r->element[1]->integer;
	freeReplyObject(r);
	return 0;
}

static int redis_group_history(struct laurel_layer *base, const char *group,
			       const struct laurel_history_rule *rule, uint64_t after,
			       struct laurel_history_entry **out, size_t *n,
			       struct laurel_history_pos *top, uint64_t *first)
{
	struct redis_layer *L = (struct redis_layer *)base;
	(void)rule;
	char meta[160], log[160], safter[24];
	history_keys(L, group, meta, log, sizeof(meta));
	snprintf(safter, sizeof(safter), "%llu", (unsigned long long)after);
	const char *argv[] = {NULL, NULL, NULL, meta, log, safter};
	size_t lens[] = {0, 0, 0, strlen(meta), strlen(log), strlen(safter)};
	int rc;
	struct shard *s = group_shard(L, group);
	redisReply *r = shard_script(L, s, &rc, SCRIPT_HISTORY_READ, 2, 6, argv, lens);
	if (!r)
		return rc;
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[1]->type != REDIS_REPLY_INTEGER ||
	    r->element[2]->type != REDIS_REPLY_INTEGER || r->element[0]->len > LAUREL_EPOCH_LEN) {
		rc = reply_error(s, r, "a history read");
		freeReplyObject(r);
		return rc < 0 ? rc : -EPROTO;
	}
	memcpy(top->epoch, r->element[0]->str, r->element[0]->len);
	top->epoch[r->element[0]->len] = '\0';
	top->offset = (uint64_t)r->element[1]->integer;
	*first = (uint64_t)r->element[2]->integer;
	size_t k = r->elements - 3;
	uint64_t from = after + 1 > *first ? after + 1 : *first;
	if (k)
		*out = xcalloc(k, sizeof(**out));
	for (size_t i = 0; i < k; i++) {
		const redisReply *e = r->element[3 + i];
		struct laurel_msg *msg;
		if (e->type != REDIS_REPLY_STRING ||
		    laurel_msg_decode(e->str, e->len, NULL, &msg) < 0) {
			rc = layer_fail(-EPROTO, "group %s: undecodable history entry %llu", group,
					(unsigned long long)(from + i));
			laurel_history_entries_free(*out, *n);
			*out = NULL;
			*n = 0;
			break;
		}
		(*out)[*n].offset = from + i;
		(*out)[(*n)++].msg = msg;
	}
	freeReplyObject(r);
	return rc < 0 ? rc : 0;
}

static int redis_group_send(struct laurel_layer *base, const char *group,
			    const struct laurel_msg *msg, size_t *delivered,
			    const struct laurel_history_rule *rule, struct laurel_history_pos *pos)
{
	struct redis_layer *L = (struct redis_layer *)base;
	const struct layer_config *cfg = &base->cfg;
	char **members = NULL;
	size_t nm;
	struct laurel_msg *tagged = NULL;
	struct buf plain, uni, multi;
	buf_init(&plain);
	buf_init(&uni);
	buf_init(&multi);
	codec_encode(msg, NULL, &plain);
	int rc = 0;
	if (plain.len > cfg->max_message) {
		rc = layer_fail(-EMSGSIZE, "message for group %s is %zu bytes, above the limit of %zu",
				group, plain.len, cfg->max_message);
		goto out;
	}
	/* With a history, the message is kept before anyone gets it, so that it has its offset
	 * and a reader of the history never misses one a member was sent. */
	struct history_call hc;
	if (rule && (rc = history_write(L, group, rule, &plain, &hc)) < 0)
		goto out;
	rc = redis_group_members(base, group, &members, &nm);
	if (rule) {
		int hrc = history_read(L, &hc, pos);
		if (rc == 0 && hrc < 0)
			rc = hrc;
		if (rc == 0)
			tagged = layer_history_tag(msg, group, pos);
	}
	if (rc < 0)
		goto out;
	if (nm == 0)
		goto out;
	codec_encode(msg, LAYER_CHANNEL_KEY, &uni);
	codec_encode(tagged ? tagged : msg, LAYER_MULTICAST_KEY, &multi);
	char registry[96], glmsgs[128], glfull[128], expiry[16], now[32], basekey[128];
	layer_key_interfaces(cfg, registry, sizeof(registry));
	layer_key_global(cfg, "messages_count", glmsgs, sizeof(glmsgs));
	layer_key_global(cfg, "channel_full_count", glfull, sizeof(glfull));
	snprintf(expiry, sizeof(expiry), "%d", cfg->expiry);
	snprintf(now, sizeof(now), "%.3f", util_wall_time());

	/* The members on interfaces this process knows to be live (its presence cache, at most a
	 * second old) are gathered here, one multicast message per interface, so that the script
	 * only pushes it: Redis does not loop over them. The others go to the script one by one,
	 * which still gathers those of an interface that became live since. */
	refresh_live(L);
	size_t nlive = 0;
	for (char **p = L->live; p && *p; p++)
		nlive++;
	struct bucket *bk = xcalloc(nlive ? nlive : 1, sizeof(*bk));
	int *which = xmalloc(nm * sizeof(*which));
	for (size_t i = 0; i < nm; i++) {
		which[i] = -1;
		const char *m = members[i], *bang = strchr(m, '!');
		if (!bang || !laurel_valid_channel(m))
			continue;
		size_t plen = (size_t)(bang - m) + 1;
		for (size_t j = 0; j < nlive; j++)
			if (strncmp(L->live[j], m, plen) == 0 && L->live[j][plen] == '\0') {
				which[i] = (int)j;
				if (bk[j].n++ == 0)
					bk[j].first = m;
				break;
			}
	}
	for (size_t j = 0; j < nlive; j++)
		if (bk[j].n) {
			buf_init(&bk[j].payload);
			buf_append(&bk[j].payload, multi.data, multi.len);
			codec_put_array_header(&bk[j].payload, bk[j].n);
		}
	for (size_t i = 0; i < nm; i++)
		if (which[i] >= 0)
			codec_put_str(&bk[which[i]].payload, members[i], strlen(members[i]));

	struct shard_batch *b = xcalloc(L->nshards, sizeof(*b));
	/* argv[3..14]: the fixed part; then bucket quads, then member, capacity pairs. */
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < (pass ? nm : nlive); i++) {
			const char *m = pass ? members[i] : bk[i].first;
			if (pass ? which[i] >= 0 || !laurel_valid_channel(m) : bk[i].n == 0)
				continue;
			size_t sh = send_shard(L, m);
			struct shard_batch *sb = &b[sh];
			if (!sb->argv) {
				size_t room = 15 + 2 * nm + 4 * nlive;
				sb->argv = xcalloc(room, sizeof(char *));
				sb->lens = xcalloc(room, sizeof(size_t));
				sb->owned = xcalloc(nm + 2 * nlive + 2, sizeof(char *));
				char hex[24];
				util_rng_hex(&L->rng, hex, 24);
				snprintf(basekey, sizeof(basekey), "%s%.24s", cfg->prefix, hex);
				const char *fixed[] = {registry,	 glmsgs, glfull,   expiry,
						       xstrdup(basekey), plain.data, uni.data, multi.data,
						       now,		 cfg->prefix, cfg->stats_prefix, "0"};
				size_t flens[] = {0, 0, 0, 0, 0, plain.len, uni.len, multi.len, 0, 0, 0, 0};
				sb->owned[sb->nowned++] = (char *)fixed[4];
				for (size_t k = 0; k < ARRAY_SIZE(fixed); k++) {
					sb->argv[3 + k] = fixed[k];
					sb->lens[3 + k] = flens[k] ? flens[k] : strlen(fixed[k]);
				}
				sb->argc = 3 + ARRAY_SIZE(fixed);
			}
			char num[24];
			snprintf(num, sizeof(num), "%d", layer_capacity_for(cfg, m));
			char *capdup = xstrdup(num);
			sb->owned[sb->nowned++] = capdup;
			if (pass == 0) {
				size_t plen = (size_t)(strchr(m, '!') - m) + 1;
				snprintf(num, sizeof(num), "%zu", bk[i].n);
				char *ndup = xstrdup(num);
				sb->owned[sb->nowned++] = ndup;
				sb->nbuckets++;
				sb->argv[sb->argc] = m;
				sb->lens[sb->argc++] = plen;
				sb->argv[sb->argc] = capdup;
				sb->lens[sb->argc++] = strlen(capdup);
				sb->argv[sb->argc] = bk[i].payload.data;
				sb->lens[sb->argc++] = bk[i].payload.len;
				sb->argv[sb->argc] = ndup;
				sb->lens[sb->argc++] = strlen(ndup);
			} else {
				sb->argv[sb->argc] = m;
				sb->lens[sb->argc++] = strlen(m);
				sb->argv[sb->argc] = capdup;
				sb->lens[sb->argc++] = strlen(capdup);
			}
		}
	for (size_t sh = 0; sh < L->nshards; sh++)
		if (b[sh].argv && b[sh].nbuckets) {
			char num[24];
			snprintf(num, sizeof(num), "%zu", b[sh].nbuckets);
			char *ndup = xstrdup(num);
			b[sh].owned[b[sh].nowned++] = ndup;
			b[sh].argv[14] = ndup;
			b[sh].lens[14] = strlen(ndup);
		}
	/* One script call per shard, all written before any reply is read. */
	for (size_t sh = 0; sh < L->nshards; sh++) {
		struct shard_batch *sb = &b[sh];
		struct shard *s = &L->shards[sh];
		if (!sb->argv)
			continue;
		int crc = shard_connect(L, s);
		if (crc < 0) {
			rc = crc;
			continue;
		}
		sb->argv[0] = "EVALSHA";
		sb->lens[0] = 7;
		sb->argv[1] = layer_script_sha(SCRIPT_GROUP_SEND);
		sb->lens[1] = 40;
		sb->argv[2] = "3";
		sb->lens[2] = 1;
		redisAppendCommandArgv(s->c, (int)sb->argc, sb->argv, sb->lens);
		sb->sent = true;
	}
	for (size_t sh = 0; sh < L->nshards; sh++) {
		struct shard_batch *sb = &b[sh];
		struct shard *s = &L->shards[sh];
		if (sb->sent) {
			redisReply *r = NULL;
			if (redisGetReply(s->c, (void **)&r) != REDIS_OK) {
				rc = connection_lost(s);
			} else if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
				freeReplyObject(r);
				int lrc;
				r = shard_script(L, s, &lrc, SCRIPT_GROUP_SEND, 3, sb->argc, sb->argv,
						 sb->lens);
				if (!r)
					rc = lrc;
			} else {
				int crc;
				r = checked(s, r, &crc);
				if (!r)
					rc = crc;
			}
			if (r && r->type == REDIS_REPLY_INTEGER)
				*delivered += (size_t)r->integer;
			else if (r)
				rc = reply_error(s, r, "a group send");
			freeReplyObject(r);
		}
		for (size_t k = 0; k < sb->nowned; k++)
			free(sb->owned[k]);
		free(sb->owned);
		free(sb->argv);
		free(sb->lens);
	}
	free(b);
	for (size_t j = 0; j < nlive; j++)
		if (bk[j].n)
			buf_fini(&bk[j].payload);
	free(bk);
	free(which);
out:
	buf_fini(&plain);
	buf_fini(&uni);
	buf_fini(&multi);
	laurel_msg_free(tagged);
	laurel_strv_free(members);
	return rc < 0 ? rc : 0;
}

/* --- Interface registry ---------------------------------------------------------------------- */

static int redis_announce(struct laurel_layer *base, const char *prefix, int ttl_s)
{
	struct redis_layer *L = (struct redis_layer *)base;
	struct shard *s = &L->shards[shard_of(L, prefix, strlen(prefix))];
	int rc = shard_connect(L, s);
	if (rc < 0)
		return rc;
	char key[96];
	layer_key_interfaces(&base->cfg, key, sizeof(key));
	double now = util_wall_time();
	redisAppendCommand(s->c, "ZADD %s %.3f %s", key, now + ttl_s, prefix);
	redisAppendCommand(s->c, "ZREMRANGEBYSCORE %s -inf (%.3f", key, now);
	redisAppendCommand(s->c, "EXPIRE %s %d", key, base->cfg.group_expiry);
	redisReply *r[3];
	rc = pipeline(L, s, r, 3);
	if (rc < 0)
		return rc;
	for (int i = 0; i < 3; i++)
		freeReplyObject(r[i]);
	return 0;
}

static int redis_withdraw(struct laurel_layer *base, const char *prefix)
{
	struct redis_layer *L = (struct redis_layer *)base;
	struct shard *s = &L->shards[shard_of(L, prefix, strlen(prefix))];
	int rc = shard_connect(L, s);
	if (rc < 0)
		return rc;
	char key[96];
	layer_key_interfaces(&base->cfg, key, sizeof(key));
	redisAppendCommand(s->c, "ZREM %s %s", key, prefix);
	redisReply *r;
	rc = pipeline(L, s, &r, 1);
	if (rc < 0)
		return rc;
	freeReplyObject(r);
	L->live_at = 0; /* this process's own view is read again before its next group send */
	return 0;
}

static int redis_interfaces(struct laurel_layer *base, char ***prefixes, size_t *n)
{
	struct redis_layer *L = (struct redis_layer *)base;
	size_t cap = 16, count = 0;
	char **v = xcalloc(cap, sizeof(char *));
	char key[96];
	layer_key_interfaces(&base->cfg, key, sizeof(key));
	for (size_t sh = 0; sh < L->nshards; sh++) {
		struct shard *s = &L->shards[sh];
		int rc = shard_connect(L, s);
		if (rc < 0) {
			laurel_strv_free(v);
			return rc;
		}
		redisAppendCommand(s->c, "ZRANGEBYSCORE %s %.3f +inf", key, util_wall_time());
		redisReply *r;
		rc = pipeline(L, s, &r, 1);
		if (rc < 0) {
			laurel_strv_free(v);
			return rc;
		}
		for (size_t i = 0; i < r->elements; i++) {
			if (count + 2 > cap) {
				cap *= 2;
				v = xrealloc(v, cap * sizeof(char *));
			}
			v[count++] = xstrndup(r->element[i]->str, r->element[i]->len);
			v[count] = NULL;
		}
		freeReplyObject(r);
	}
	*prefixes = v;
	*n = count;
	return 0;
}

/* --- Key-value (sessions) ------------------------------------------------------------------- */

/* Keys live at prefix + ":" + key ("asgi::session:..."), on the shard of key. */
static struct shard *kv_shard(struct redis_layer *L, const char *key, char *full, size_t n)
{
	snprintf(full, n, "%s:%s", L->base.cfg.prefix, key);
	return &L->shards[shard_of(L, key, strlen(key))];
}

static int redis_kv_get(struct laurel_layer *base, const char *key, char **data, size_t *len)
{
	struct redis_layer *L = (struct redis_layer *)base;
	char full[256];
	struct shard *s = kv_shard(L, key, full, sizeof(full));
	const char *argv[2] = {"GET", full};
	size_t lens[2] = {3, strlen(full)};
	int rc;
	redisReply *r = shard_command(L, s, &rc, 2, argv, lens);
	if (!r)
		return rc;
	*data = NULL;
	*len = 0;
	if (r->type == REDIS_REPLY_STRING) {
		*data = xmalloc(r->len + 1);
		memcpy(*data, r->str, r->len);
		*len = r->len;
	} else if (r->type != REDIS_REPLY_NIL) {
		rc = reply_error(s, r, "GET");
	}
	freeReplyObject(r);
	return rc < 0 ? rc : 0;
}

static int redis_kv_set(struct laurel_layer *base, const char *key, const void *data, size_t len,
			int ttl_s)
{
	struct redis_layer *L = (struct redis_layer *)base;
	char full[256], ttl[16];
	struct shard *s = kv_shard(L, key, full, sizeof(full));
	snprintf(ttl, sizeof(ttl), "%d", ttl_s);
	const char *argv[5] = {"SET", full, data, "EX", ttl};
	size_t lens[5] = {3, strlen(full), len, 2, strlen(ttl)};
	int rc;
	redisReply *r = shard_command(L, s, &rc, 5, argv, lens);
	if (!r)
		return rc;
	if (r->type == REDIS_REPLY_ERROR)
		rc = reply_error(s, r, "SET");
	freeReplyObject(r);
	return rc < 0 ? rc : 0;
}

static int redis_kv_del(struct laurel_layer *base, const char *key)
{
	struct redis_layer *L = (struct redis_layer *)base;
	char full[256];
	struct shard *s = kv_shard(L, key, full, sizeof(full));
	const char *argv[2] = {"DEL", full};
	size_t lens[2] = {3, strlen(full)};
	int rc;
	redisReply *r = shard_command(L, s, &rc, 2, argv, lens);
	if (!r)
		return rc;
	freeReplyObject(r);
	return 0;
}

/* --- Scheduled messages --------------------------------------------------------------------- */

/* Entries taken per script call: unpack() in the script has a limit of a few thousand. */
#define TAKE_DUE_MAX 1000

static void schedule_key(const struct redis_layer *L, char *key, size_t size)
{
	snprintf(key, size, "%s:delay", L->base.cfg.prefix);
}

static int redis_schedule(struct laurel_layer *base, const void *member, size_t len, int64_t due_ms)
{
	struct redis_layer *L = (struct redis_layer *)base;
	char key[128], score[32];
	schedule_key(L, key, sizeof(key));
	snprintf(score, sizeof(score), "%lld", (long long)due_ms);
	const char *argv[] = {"ZADD", key, score, member};
	size_t lens[] = {4, strlen(key), strlen(score), len};
	int rc;
	struct shard *s = &L->shards[0];
	redisReply *r = shard_command(L, s, &rc, 4, argv, lens);
	if (!r)
		return rc;
	rc = r->type == REDIS_REPLY_INTEGER ? 0 : reply_error(s, r, "ZADD");
	freeReplyObject(r);
	return rc;
}

static int64_t score_ms(const redisReply *r)
{
	if (r->type == REDIS_REPLY_STRING)
		return (int64_t)strtod(r->str, NULL);
	if (r->type == REDIS_REPLY_INTEGER)
		return r->integer;
	return -1;
}

static int redis_take_due(struct laurel_layer *base, int64_t now_ms, size_t max,
			  void (*take)(void *arg, const char *member, size_t len, int64_t due_ms),
			  void *arg, int64_t *next_ms)
{
	struct redis_layer *L = (struct redis_layer *)base;
	char key[128], now[32], smax[16];
	schedule_key(L, key, sizeof(key));
	snprintf(now, sizeof(now), "%lld", (long long)now_ms);
	snprintf(smax, sizeof(smax), "%zu", max < TAKE_DUE_MAX ? max : (size_t)TAKE_DUE_MAX);
	const char *argv[] = {NULL, NULL, NULL, key, now, smax};
	size_t lens[] = {0, 0, 0, strlen(key), strlen(now), strlen(smax)};
	int rc;
	struct shard *s = &L->shards[0];
	redisReply *r = shard_script(L, s, &rc, SCRIPT_TAKE_DUE, 1, 6, argv, lens);
	if (!r)
		return rc;
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 || r->elements % 2 == 0) {
		rc = reply_error(s, r, "taking due messages");
		freeReplyObject(r);
		return rc;
	}
	*next_ms = score_ms(r->element[0]);
	for (size_t i = 1; i + 1 < r->elements; i += 2)
		if (r->element[i]->type == REDIS_REPLY_STRING)
			take(arg, r->element[i]->str, r->element[i]->len,
			     score_ms(r->element[i + 1]));
	freeReplyObject(r);
	return 0;
}

static int redis_watch_fd(struct laurel_layer *base, int fd)
{
	((struct redis_layer *)base)->watch_fd = fd;
	return 0;
}

/* --- Flush and statistics -------------------------------------------------------------------- */

static int redis_flush(struct laurel_layer *base)
{
	struct redis_layer *L = (struct redis_layer *)base;
	char p1[80], p2[80];
	snprintf(p1, sizeof(p1), "%s*", base->cfg.prefix);
	snprintf(p2, sizeof(p2), "%s*", base->cfg.stats_prefix);
	int rc = 0;
	for (size_t sh = 0; sh < L->nshards; sh++) {
		const char *argv[5] = {NULL, NULL, NULL, p1, p2};
		size_t lens[5] = {0, 0, 0, strlen(p1), strlen(p2)};
		int src;
		redisReply *r = shard_script(L, &L->shards[sh], &src, SCRIPT_FLUSH, 0, 5, argv, lens);
		if (!r) {
			rc = src;
			continue;
		}
		if (r->type == REDIS_REPLY_ERROR)
			rc = reply_error(&L->shards[sh], r, "a flush");
		freeReplyObject(r);
	}
	for (size_t i = 0; i < L->nheld; i++) {
		free(L->held[i].queue);
		free(L->held[i].payload);
	}
	L->nheld = 0;
	return rc;
}

static long long reply_ll(redisReply *r)
{
	if (r->type == REDIS_REPLY_INTEGER)
		return r->integer;
	if (r->type == REDIS_REPLY_STRING)
		return strtoll(r->str, NULL, 10);
	return 0;
}

static int redis_stats(struct laurel_layer *base, const char *channel, struct laurel_stats *out)
{
	struct redis_layer *L = (struct redis_layer *)base;
	const struct layer_config *cfg = &base->cfg;
	char name[LAUREL_NAME_MAX + 16];
	size_t home = SIZE_MAX;
	if (channel) {
		size_t q = layer_queue_len(channel);
		snprintf(name, sizeof(name), "%.*s", (int)q, channel);
		home = channel_home(L, channel);
		out->messages_pending = 0;
		out->messages_max_age = 0;
	} else {
		snprintf(name, sizeof(name), "#global#");
	}
	for (size_t sh = 0; sh < L->nshards; sh++) {
		if (home != SIZE_MAX && home != sh)
			continue;
		struct shard *s = &L->shards[sh];
		int rc = shard_connect(L, s);
		if (rc < 0)
			return rc;
		redisAppendCommand(s->c, "GET %s%s:messages_count", cfg->stats_prefix, name);
		redisAppendCommand(s->c, "GET %s%s:channel_full_count", cfg->stats_prefix, name);
		size_t n;
		if (channel) {
			redisAppendCommand(s->c, "LLEN %s%s", cfg->prefix, name);
			redisAppendCommand(s->c, "LINDEX %s%s 0", cfg->prefix, name);
			n = 4;
		} else {
			char dropped[LAUREL_NAME_MAX + 64];
			layer_key_global(cfg, "control_dropped", dropped, sizeof(dropped));
			redisAppendCommand(s->c, "GET %s", dropped);
			n = 3;
		}
		redisReply *r[4];
		rc = pipeline(L, s, r, n);
		if (rc < 0)
			return rc;
		out->messages_count += reply_ll(r[0]);
		out->channel_full_count += reply_ll(r[1]);
		if (!channel)
			out->control_dropped += reply_ll(r[2]);
		if (channel) {
			out->messages_pending += reply_ll(r[2]);
			int64_t sent;
			if (r[3]->type == REDIS_REPLY_STRING &&
			    layer_direct_entry_time(r[3]->str, r[3]->len, &sent)) {
				/* A direct entry carries the time it was sent. */
				int64_t age = ((int64_t)(util_wall_time() * 1000) - sent) / 1000;
				if (age <= cfg->expiry && age > out->messages_max_age)
					out->messages_max_age = age;
			} else if (r[3]->type == REDIS_REPLY_STRING) {
				redisAppendCommand(s->c, "TTL %b", r[3]->str, r[3]->len);
				redisReply *t;
				if (pipeline(L, s, &t, 1) == 0) {
					long long ttl = reply_ll(t);
					if (ttl >= 0 && cfg->expiry - ttl > out->messages_max_age)
						out->messages_max_age = cfg->expiry - ttl;
					freeReplyObject(t);
				}
			}
		}
		for (size_t i = 0; i < n; i++)
			freeReplyObject(r[i]);
	}
	return 0;
}

/* --- Layer-wide figures (layer_census.h) ----------------------------------------------------- */

/* s with Redis glob characters escaped, for a MATCH pattern that must take it literally. */
static void glob_escape(const char *s, char *out, size_t size)
{
	size_t n = 0;
	for (; *s && n + 3 < size; s++) {
		if (strchr("*?[]\\^", *s))
			out[n++] = '\\';
		out[n++] = *s;
	}
	out[n] = '\0';
}

/* Calls page(L, s, keys, arg) with each page of SCAN 0 MATCH pattern [TYPE type] on s. */
static int scan_keys(struct redis_layer *L, struct shard *s, const char *pattern, const char *type,
		     int (*page)(struct redis_layer *L, struct shard *s, const redisReply *keys,
				 void *arg),
		     void *arg)
{
	char cursor[32] = "0";
	do {
		bool typed = type && !L->scan_untyped;
		redisReply *r = typed ? redisCommand(s->c, "SCAN %s MATCH %s COUNT 1000 TYPE %s",
						     cursor, pattern, type)
				      : redisCommand(s->c, "SCAN %s MATCH %s COUNT 1000", cursor,
						     pattern);
		int rc = 0;
		if (!r)
			return connection_lost(s);
		if (!(r = checked(s, r, &rc)))
			return rc;
		if (typed && r->type == REDIS_REPLY_ERROR) {
			/* Redis 5 has no TYPE filter: start over without it. */
			freeReplyObject(r);
			L->scan_untyped = true;
			snprintf(cursor, sizeof(cursor), "0");
			continue;
		}
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->type != REDIS_REPLY_STRING ||
		    r->element[1]->type != REDIS_REPLY_ARRAY) {
			rc = reply_error(s, r, "SCAN");
			freeReplyObject(r);
			return rc;
		}
		snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
		rc = page(L, s, r->element[1], arg);
		freeReplyObject(r);
		if (rc < 0)
			return rc;
	} while (strcmp(cursor, "0") != 0);
	return 0;
}

/* Reads n pipelined replies; an error reply (a key of another type) counts as NULL. */
static int census_replies(struct shard *s, redisReply **out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (redisGetReply(s->c, (void **)&out[i]) != REDIS_OK) {
			for (size_t j = 0; j < i; j++)
				freeReplyObject(out[j]);
			return connection_lost(s);
		}
	}
	for (size_t i = 0; i < n; i++)
		if (out[i]->type == REDIS_REPLY_ERROR &&
		    layer_error_kind(out[i]->str) != LAYER_ERR_OTHER) {
			int rc = shard_failed(s, out[i]->str);
			for (size_t j = 0; j < n; j++)
				freeReplyObject(out[j]);
			return rc;
		}
	return 0;
}

static bool body_key(const char *name, size_t len)
{
	if (len != 32)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
			return false;
	return true;
}

/* A channel's queue is a list PREFIX + name, name a valid channel name (laurel's own keys,
 * PREFIX + ":...", are not). Without SCAN's TYPE filter the message bodies, PREFIX + 32 hex
 * digits, are passed over by name and anything else not a list by LLEN's error. */
static int queue_page(struct redis_layer *L, struct shard *s, const redisReply *keys, void *arg)
{
	struct layer_census *c = arg;
	const redisReply **found = xmalloc((keys->elements + 1) * sizeof(*found));
	size_t n = 0;
	for (size_t i = 0; i < keys->elements; i++) {
		const redisReply *k = keys->element[i];
		if (k->type != REDIS_REPLY_STRING || k->len <= L->prefixlen ||
		    k->len - L->prefixlen >= LAUREL_NAME_MAX)
			continue;
		char name[LAUREL_NAME_MAX];
		size_t len = k->len - L->prefixlen;
		memcpy(name, k->str + L->prefixlen, len);
		name[len] = '\0';
		if (!laurel_valid_channel(name) || (L->scan_untyped && body_key(name, len)))
			continue;
		redisAppendCommand(s->c, "LLEN %b", k->str, k->len);
		found[n++] = k;
	}
	redisReply **r = xmalloc((n + 1) * sizeof(*r));
	int rc = census_replies(s, r, n);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (r[i]->type == REDIS_REPLY_INTEGER && r[i]->integer > 0)
			layer_census_add(c, CENSUS_QUEUED, found[i]->str + L->prefixlen,
					 found[i]->len - L->prefixlen, r[i]->integer);
		freeReplyObject(r[i]);
	}
	free(r);
	free(found);
	return rc;
}

/* Statistics keys STATS_PREFIX + channel + ":messages_count" / ":channel_full_count". */
static int stats_page(struct redis_layer *L, struct shard *s, const redisReply *keys, void *arg)
{
	struct layer_census *c = arg;
	size_t plen = strlen(L->base.cfg.stats_prefix);
	const char **argv = xmalloc((keys->elements + 1) * sizeof(*argv));
	size_t *lens = xmalloc((keys->elements + 1) * sizeof(*lens));
	const redisReply **found = xmalloc((keys->elements + 1) * sizeof(*found));
	size_t n = 0;
	argv[0] = "MGET";
	lens[0] = 4;
	for (size_t i = 0; i < keys->elements; i++) {
		const redisReply *k = keys->element[i];
		const char *colon = k->type == REDIS_REPLY_STRING ? strrchr(k->str, ':') : NULL;
		if (!colon || (size_t)(colon - k->str) <= plen ||
		    (size_t)(colon - k->str) - plen >= LAUREL_NAME_MAX ||
		    (strcmp(colon, ":messages_count") != 0 &&
		     strcmp(colon, ":channel_full_count") != 0))
			continue;
		char name[LAUREL_NAME_MAX];
		size_t len = (size_t)(colon - k->str) - plen;
		memcpy(name, k->str + plen, len);
		name[len] = '\0';
		if (!laurel_valid_channel(name)) /* #global# and foreign keys */
			continue;
		argv[n + 1] = k->str;
		lens[n + 1] = k->len;
		found[n++] = k;
	}
	int rc = 0;
	if (n) {
		redisAppendCommandArgv(s->c, (int)n + 1, argv, lens);
		redisReply *r;
		rc = census_replies(s, &r, 1);
		if (rc == 0) {
			for (size_t i = 0; i < n && r->type == REDIS_REPLY_ARRAY && i < r->elements;
			     i++) {
				const char *colon = strrchr(found[i]->str, ':');
				layer_census_add(c,
						 colon[1] == 'm' ? CENSUS_MESSAGES : CENSUS_FULL,
						 found[i]->str + plen,
						 (size_t)(colon - found[i]->str) - plen,
						 reply_ll(r->element[i]));
			}
			freeReplyObject(r);
		}
	}
	free(found);
	free(lens);
	free(argv);
	return rc;
}

static int group_page(struct redis_layer *L, struct shard *s, const redisReply *keys, void *arg)
{
	struct layer_census *c = arg;
	char gp[LAUREL_NAME_MAX];
	group_key(L, "", gp, sizeof(gp));
	size_t glen = strlen(gp);
	const redisReply **found = xmalloc((keys->elements + 1) * sizeof(*found));
	size_t n = 0;
	double since = util_wall_time() - L->base.cfg.group_expiry;
	for (size_t i = 0; i < keys->elements; i++) {
		const redisReply *k = keys->element[i];
		if (k->type != REDIS_REPLY_STRING || k->len <= glen)
			continue;
		redisAppendCommand(s->c, "ZCOUNT %b %.3f +inf", k->str, k->len, since);
		found[n++] = k;
	}
	redisReply **r = xmalloc((n + 1) * sizeof(*r));
	int rc = census_replies(s, r, n);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (r[i]->type == REDIS_REPLY_INTEGER)
			layer_census_add(c, CENSUS_MEMBERS, found[i]->str + glen,
					 found[i]->len - glen, r[i]->integer);
		freeReplyObject(r[i]);
	}
	free(r);
	free(found);
	return rc;
}

/* One shard's figures into c (a census of its own, merged by the caller only if it is whole). */
static int census_shard(struct redis_layer *L, struct shard *s, const char *groups,
			struct layer_census *c)
{
	const struct layer_config *cfg = &L->base.cfg;
	int rc = shard_connect(L, s);
	if (rc < 0)
		return rc;
	char msgs[LAUREL_NAME_MAX + 64], full[LAUREL_NAME_MAX + 64], dropped[LAUREL_NAME_MAX + 64],
		ifaces[96];
	layer_key_global(cfg, "messages_count", msgs, sizeof(msgs));
	layer_key_global(cfg, "channel_full_count", full, sizeof(full));
	layer_key_global(cfg, "control_dropped", dropped, sizeof(dropped));
	layer_key_interfaces(cfg, ifaces, sizeof(ifaces));
	char delay[128];
	schedule_key(L, delay, sizeof(delay));
	redisAppendCommand(s->c, "MGET %s %s %s", msgs, full, dropped);
	redisAppendCommand(s->c, "ZCOUNT %s %.3f +inf", ifaces, util_wall_time());
	redisAppendCommand(s->c, "ZCARD %s", delay);
	redisAppendCommand(s->c, "ZRANGE %s 0 0 WITHSCORES", delay);
	redisReply *r[4];
	if ((rc = pipeline(L, s, r, 4)) < 0)
		return rc;
	if (r[0]->type == REDIS_REPLY_ARRAY && r[0]->elements == 3) {
		c->messages += reply_ll(r[0]->element[0]);
		c->full += reply_ll(r[0]->element[1]);
		c->control_dropped += reply_ll(r[0]->element[2]);
	}
	c->interfaces += reply_ll(r[1]);
	c->delayed += reply_ll(r[2]);
	if (r[3]->type == REDIS_REPLY_ARRAY && r[3]->elements == 2) {
		int64_t due = score_ms(r[3]->element[1]);
		if (due >= 0 && (c->delayed_first_ms == 0 || due < c->delayed_first_ms))
			c->delayed_first_ms = due;
	}
	for (size_t i = 0; i < 4; i++)
		freeReplyObject(r[i]);
	char esc[256], pattern[512];
	glob_escape(cfg->prefix, esc, sizeof(esc));
	snprintf(pattern, sizeof(pattern), "%s*", esc);
	if ((rc = scan_keys(L, s, pattern, "list", queue_page, c)) < 0)
		return rc;
	glob_escape(cfg->stats_prefix, esc, sizeof(esc));
	snprintf(pattern, sizeof(pattern), "%s*", esc);
	if ((rc = scan_keys(L, s, pattern, NULL, stats_page, c)) < 0)
		return rc;
	if (groups) {
		char gp[LAUREL_NAME_MAX];
		group_key(L, "", gp, sizeof(gp));
		glob_escape(gp, esc, sizeof(esc));
		snprintf(pattern, sizeof(pattern), "%s%s", esc, groups);
		if ((rc = scan_keys(L, s, pattern, NULL, group_page, c)) < 0)
			return rc;
	}
	return 0;
}

static void census_merge(struct layer_census *into, const struct layer_census *c)
{
	into->messages += c->messages;
	into->full += c->full;
	into->control_dropped += c->control_dropped;
	into->interfaces += c->interfaces;
	into->delayed += c->delayed;
	if (c->delayed_first_ms && (!into->delayed_first_ms || c->delayed_first_ms < into->delayed_first_ms))
		into->delayed_first_ms = c->delayed_first_ms;
	for (size_t i = 0; i < c->nchannels; i++) {
		const struct layer_census_entry *e = &c->channels[i];
		const char *name = e->name;
		layer_census_add(into, CENSUS_QUEUED, name, strlen(name), e->queued);
		layer_census_add(into, CENSUS_MESSAGES, name, strlen(name), e->messages);
		layer_census_add(into, CENSUS_FULL, name, strlen(name), e->full);
	}
	for (size_t i = 0; i < c->ngroups; i++)
		layer_census_add(into, CENSUS_MEMBERS, c->groups[i].name, strlen(c->groups[i].name),
				 c->groups[i].queued);
}

static int redis_census(struct laurel_layer *base, const char *groups, struct layer_census *out)
{
	struct redis_layer *L = (struct redis_layer *)base;
	out->shards = xcalloc(L->nshards, sizeof(*out->shards));
	out->nshards = L->nshards;
	for (size_t sh = 0; sh < L->nshards; sh++) {
		struct layer_census_shard *cs = &out->shards[sh];
		struct layer_census c = {0};
		cs->url = xstrdup(L->shards[sh].ep.desc);
		if (census_shard(L, &L->shards[sh], groups, &c) < 0) {
			cs->error = xstrdup(laurel_layer_error(base));
		} else {
			cs->up = true;
			census_merge(out, &c);
		}
		layer_census_fini(&c);
	}
	return 0;
}

/* --- Lifecycle ------------------------------------------------------------------------------- */

static void redis_free(struct laurel_layer *base)
{
	struct redis_layer *L = (struct redis_layer *)base;
	laurel_strv_free(L->live);
	free(L->swept);
	for (size_t i = 0; i < L->nshards; i++) {
		struct shard *s = &L->shards[i];
		drop_connection(s);
		sentinel_free(s->sentinel);
		layer_endpoint_fini(&s->ep);
		if (L->batch)
			layer_batch_fini(&L->batch[i]);
	}
	free(L->batch);
	for (size_t i = 0; i < L->nheld; i++) {
		free(L->held[i].queue);
		free(L->held[i].payload);
	}
	free(L->held);
	free(L->shards);
	layer_config_fini(&base->cfg);
	free(L);
}

int layer_redis_new(struct laurel_layer **out, struct layer_config *cfg, const char *const *urls,
		    size_t nurls, char *err, size_t errlen)
{
	if (nurls > 64) {
		if (errlen)
			snprintf(err, errlen, "at most 64 Redis shards (got %zu)", nurls);
		return -EINVAL;
	}
	struct redis_layer *L = xcalloc(1, sizeof(*L));
	L->base.ops = &redis_ops;
	L->shards = xcalloc(nurls, sizeof(*L->shards));
	L->batch = xcalloc(nurls, sizeof(*L->batch));
	L->nshards = nurls;
	for (size_t i = 0; i < nurls; i++) {
		if (layer_endpoint_parse(&L->shards[i].ep, urls[i], err, errlen) < 0) {
			redis_free(&L->base);
			return -EINVAL;
		}
	}
	for (size_t i = 0; i < nurls; i++)
		if (L->shards[i].ep.master_name)
			sentinel_new(&L->shards[i].sentinel, &L->shards[i].ep,
				     cfg->connect_timeout_ms, cfg->command_timeout_ms);
	L->base.cfg = *cfg;
	memset(cfg, 0, sizeof(*cfg));
	L->prefixlen = strlen(L->base.cfg.prefix);
	util_rng_init(&L->rng);
	L->rr = util_rng_below(&L->rng, nurls);
	L->watch_fd = -1;
	*out = &L->base;
	return 0;
}

/* A start-up check on every server: the credentials, and the commands every laurel program
 * runs directly (SCRIPT LOAD, EVALSHA, BLPOP), in forms that change nothing. Only a refusal
 * (layer_error_kind LAYER_ERR_DENIED) fails it: an unreachable or unready server is an outage
 * the program rides out. */
static int redis_check(struct laurel_layer *base)
{
	struct redis_layer *L = (struct redis_layer *)base;
	const struct layer_config *cfg = &base->cfg;
	for (size_t sh = 0; sh < L->nshards; sh++) {
		struct shard *s = &L->shards[sh];
		char what[256];
		redisContext *c = open_context(L, s, what, sizeof(what));
		if (!c) {
			/* A sentinel that refuses our credentials is a refusal too. */
			const char *auth = strstr(what, "AUTH failed: ");
			if (s->sentinel && auth && layer_error_kind(auth + 13) == LAYER_ERR_DENIED)
				return layer_fail(-EACCES, "%s refused laurel: %s", s->ep.desc,
						  strstr(what, "sentinel ") ? strstr(what, "sentinel ")
									   : what);
			continue;
		}
		const char *why = setup_context(L, s, c);
		if (why) {
			const char *err = strstr(why, "failed: ");
			int rc = 0;
			if (err && layer_error_kind(err + 8) == LAYER_ERR_DENIED)
				rc = layer_fail(-EACCES, "%s refused laurel: %s", s->ep.desc, why);
			redisFree(c);
			if (rc < 0)
				return rc;
			continue;
		}
		char probe[160], expiry[16], glmsgs[128], glfull[128];
		snprintf(probe, sizeof(probe), "%s:laurel-check", cfg->prefix);
		snprintf(expiry, sizeof(expiry), "%d", cfg->expiry);
		layer_key_global(cfg, "messages_count", glmsgs, sizeof(glmsgs));
		layer_key_global(cfg, "channel_full_count", glfull, sizeof(glfull));
		/* send_many with no message does nothing; a BLPOP of 10 ms on a key nobody uses. */
		const char *load[3] = {"SCRIPT", "LOAD", layer_script_source(SCRIPT_SEND_MANY)};
		char registry[96];
		layer_key_interfaces(cfg, registry, sizeof(registry));
		const char *eval[10] = {"EVALSHA", layer_script_sha(SCRIPT_SEND_MANY), "0", expiry,
					cfg->prefix, cfg->stats_prefix, glmsgs, glfull, registry, "0"};
		const char *blpop[3] = {"BLPOP", probe, "0.01"};
		const struct {
			int argc;
			const char **argv;
		} cmds[] = {{3, load}, {10, eval}, {3, blpop}};
		int rc = 0;
		for (size_t i = 0; i < ARRAY_SIZE(cmds) && rc == 0; i++) {
			redisReply *r = redisCommandArgv(c, cmds[i].argc, cmds[i].argv, NULL);
			if (!r)
				break;
			if (r->type == REDIS_REPLY_ERROR && layer_error_kind(r->str) == LAYER_ERR_DENIED)
				rc = layer_fail(-EACCES, "%s refused laurel's %s: %s", s->ep.desc,
						cmds[i].argv[0], r->str);
			freeReplyObject(r);
		}
		redisFree(c);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static const struct layer_ops redis_ops = {
	.check = redis_check,
	.name = "redis",
	.send = redis_send,
	.receive = redis_receive,
	.new_channel = redis_new_channel,
	.group_add = redis_group_add,
	.group_discard = redis_group_discard,
	.group_members = redis_group_members,
	.group_count = redis_group_count,
	.group_send = redis_group_send,
	.group_history = redis_group_history,
	.announce = redis_announce,
	.withdraw = redis_withdraw,
	.interfaces = redis_interfaces,
	.kv_get = redis_kv_get,
	.kv_set = redis_kv_set,
	.kv_del = redis_kv_del,
	.send_many = redis_send_many,
	.watch_fd = redis_watch_fd,
	.schedule = redis_schedule,
	.take_due = redis_take_due,
	.flush = redis_flush,
	.stats = redis_stats,
	.census = redis_census,
	.free = redis_free,
};
