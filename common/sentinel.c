/* Redis Sentinel discovery (see sentinel.h). */
#include "common/sentinel.h"
#include "common/log.h"
#include "common/redis_layout.h"
#include "common/util.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

struct sentinel {
	const struct layer_endpoint *ep;
	int connect_ms, command_ms;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t known_cond;
	/* under mu */
	char host[256];
	int port;
	uint64_t gen;
	char error[256];
	bool stop;
	bool failing_over;	/* a sentinel selected a replica to promote: no writes to the old */
	int64_t failover_ms;	/* when (monotonic) */
	/* the watcher's own */
	size_t first;	 /* the sentinel to ask first: the one that answered last */
	bool failing;	 /* no sentinel answered the last time: logged once */
	int64_t asked_ms; /* when the sentinels were last asked */
	int wake;	 /* eventfd: suspect, or stop */
	int notify;	 /* eventfd: the master changed */
	redisContext *subs[LAYER_SENTINELS_MAX]; /* a subscription on each sentinel, or NULL */
};

static struct timeval ms_tv(int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	return tv;
}

static void describe(char *out, size_t size, const struct layer_hostport *h)
{
	snprintf(out, size, strchr(h->host, ':') ? "[%s]:%d" : "%s:%d", h->host, h->port);
}

/* A connection to sentinel i, authenticated. NULL with the reason in why. */
static redisContext *open_sentinel(const struct layer_endpoint *ep, size_t i, int connect_ms,
				   int command_ms, char *why, size_t whylen)
{
	const struct layer_hostport *h = &ep->sentinels[i];
	char at[300];
	describe(at, sizeof(at), h);
	redisContext *c = redisConnectWithTimeout(h->host, h->port, ms_tv(connect_ms));
	if (!c || c->err) {
		snprintf(why, whylen, "sentinel %s: %s", at, c ? c->errstr : "out of memory");
		redisFree(c);
		return NULL;
	}
	redisSetTimeout(c, ms_tv(command_ms));
	if (ep->sentinel_password) {
		redisReply *r = ep->sentinel_user ? redisCommand(c, "AUTH %s %s", ep->sentinel_user,
								 ep->sentinel_password)
						  : redisCommand(c, "AUTH %s", ep->sentinel_password);
		if (!r || r->type == REDIS_REPLY_ERROR) {
			snprintf(why, whylen, "sentinel %s: AUTH failed: %s", at,
				 r ? r->str : c->errstr);
			freeReplyObject(r);
			redisFree(c);
			return NULL;
		}
		freeReplyObject(r);
	}
	return c;
}

static int parse_port(const char *s, int *port)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v < 1 || v > 65535)
		return -1;
	*port = (int)v;
	return 0;
}

/* Asks sentinel i for the master. 0 with host and port, else -1 with why. */
static int ask_one(const struct layer_endpoint *ep, size_t i, int connect_ms, int command_ms,
		   char *host, size_t hostlen, int *port, char *why, size_t whylen)
{
	redisContext *c = open_sentinel(ep, i, connect_ms, command_ms, why, whylen);
	if (!c)
		return -1;
	char at[300];
	describe(at, sizeof(at), &ep->sentinels[i]);
	redisReply *r = redisCommand(c, "SENTINEL get-master-addr-by-name %s", ep->master_name);
	int rc = -1;
	if (!r)
		snprintf(why, whylen, "sentinel %s: %s", at, c->errstr);
	else if (r->type == REDIS_REPLY_ERROR)
		snprintf(why, whylen, "sentinel %s: %s", at, r->str);
	else if (r->type == REDIS_REPLY_NIL)
		snprintf(why, whylen, "sentinel %s does not monitor a master named \"%s\"", at,
			 ep->master_name);
	else if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		 r->element[0]->type != REDIS_REPLY_STRING ||
		 r->element[1]->type != REDIS_REPLY_STRING ||
		 r->element[0]->len >= hostlen || parse_port(r->element[1]->str, port) < 0)
		snprintf(why, whylen, "sentinel %s: an unexpected answer", at);
	else {
		snprintf(host, hostlen, "%s", r->element[0]->str);
		rc = 0;
	}
	freeReplyObject(r);
	redisFree(c);
	return rc;
}

/* Makes the clients' descriptor readable: the master changed (or must not be used). */
static void bump(struct sentinel *s)
{
	uint64_t one = 1;
	if (write(s->notify, &one, sizeof(one)) < 0) {
		/* an eventfd at its maximum is still readable */
	}
}

/* Takes a master's address learned from a sentinel. */
static void learn(struct sentinel *s, const char *host, int port, const char *how)
{
	pthread_mutex_lock(&s->mu);
	bool changed = s->gen == 0 || strcmp(s->host, host) != 0 || s->port != port;
	char was[300];
	snprintf(was, sizeof(was), s->gen ? (strchr(s->host, ':') ? "[%s]:%d" : "%s:%d") : "%s",
		 s->gen ? s->host : "none", s->port);
	bool first = s->gen == 0;
	if (changed) {
		snprintf(s->host, sizeof(s->host), "%s", host);
		s->port = port;
		s->gen++;
		s->failing_over = false;
		pthread_cond_broadcast(&s->known_cond);
	}
	s->error[0] = '\0';
	pthread_mutex_unlock(&s->mu);
	if (!changed)
		return;
	bump(s);
	if (first)
		log_info("%s: master %s is %s:%d", s->ep->desc, s->ep->master_name, host, port);
	else
		log_warn("%s: master %s is now %s:%d (was %s; %s)", s->ep->desc,
			 s->ep->master_name, host, port, was, how);
}

static void asking_failed(struct sentinel *s, const char *why)
{
	pthread_mutex_lock(&s->mu);
	snprintf(s->error, sizeof(s->error), "%s", why);
	pthread_mutex_unlock(&s->mu);
	if (!s->failing)
		log_warn("%s: no sentinel named the master: %s; asking again with backoff",
			 s->ep->desc, why);
	s->failing = true;
}

/* Asks the sentinels in turn, the last one that answered first. Returns 0 when one answered. */
static int ask(struct sentinel *s)
{
	const struct layer_endpoint *ep = s->ep;
	char why[512] = "", host[256];
	int port;
	s->asked_ms = util_now_ms();
	for (size_t k = 0; k < ep->nsentinels; k++) {
		size_t i = (s->first + k) % ep->nsentinels;
		if (ask_one(ep, i, s->connect_ms, s->command_ms, host, sizeof(host), &port, why,
			    sizeof(why)) == 0) {
			s->first = i;
			if (s->failing)
				log_warn("%s: sentinels answer again", ep->desc);
			s->failing = false;
			learn(s, host, port, "asked");
			return 0;
		}
	}
	asking_failed(s, why);
	return -1;
}

/* What the watcher subscribes to on every sentinel: the end of a failover, its point of no
 * return (a replica selected for promotion: the old master must take no more writes, or they are
 * lost when it follows the new one), and its aborts. Only the sentinel leading a failover
 * publishes its steps, hence a subscription on each. */
static const char subscribe_cmd[] = "SUBSCRIBE +switch-master +selected-slave +failover-end";
static const char psubscribe_cmd[] = "PSUBSCRIBE -failover-abort-*";

/* Subscribes on every sentinel that has no subscription yet. Returns how many there are. */
static size_t subscribe_all(struct sentinel *s)
{
	const struct layer_endpoint *ep = s->ep;
	char why[512];
	size_t n = 0;
	for (size_t i = 0; i < ep->nsentinels; i++) {
		if (s->subs[i]) {
			n++;
			continue;
		}
		redisContext *c = open_sentinel(ep, i, s->connect_ms, s->command_ms, why,
						sizeof(why));
		if (!c)
			continue;
		redisAppendCommand(c, subscribe_cmd);
		redisAppendCommand(c, psubscribe_cmd);
		bool ok = true;
		for (int k = 0; k < 4 && ok; k++) { /* three SUBSCRIBE answers, one PSUBSCRIBE */
			redisReply *r = NULL;
			ok = redisGetReply(c, (void **)&r) == REDIS_OK && r &&
			     r->type == REDIS_REPLY_ARRAY;
			freeReplyObject(r);
		}
		if (!ok) {
			redisFree(c);
			continue;
		}
		s->subs[i] = c;
		n++;
	}
	return n;
}

static void unsubscribe_all(struct sentinel *s)
{
	for (size_t i = 0; i < LAYER_SENTINELS_MAX; i++) {
		redisFree(s->subs[i]);
		s->subs[i] = NULL;
	}
}

/* Whether the event's payload is about our master: "<type> <name> <ip> <port> @ <master> ..."
 * (the master's name after the '@') or "master <name> ..." */
static bool about_us(const struct sentinel *s, const char *payload)
{
	char a[32], b[160], c[256], d[16], at[4], name[160];
	int n = sscanf(payload, "%31s %159s %255s %15s %3s %159s", a, b, c, d, at, name);
	if (n >= 2 && strcmp(a, "master") == 0)
		return strcmp(b, s->ep->master_name) == 0;
	return n == 6 && strcmp(at, "@") == 0 && strcmp(name, s->ep->master_name) == 0;
}

/* A failover of our master passed the point of no return (or ended without a switch). */
static void failing_over(struct sentinel *s, bool yes, const char *why)
{
	pthread_mutex_lock(&s->mu);
	bool was = s->failing_over;
	s->failing_over = yes;
	if (yes)
		s->failover_ms = util_now_ms();
	if (was != yes)
		s->gen++; /* the clients drop their connections to the old master now */
	pthread_mutex_unlock(&s->mu);
	if (was == yes)
		return;
	bump(s);
	if (yes)
		log_warn("%s: master %s is being failed over (%s): no more writes to it until the "
			 "sentinels name the new one",
			 s->ep->desc, s->ep->master_name, why);
	else
		log_warn("%s: failover of %s ended without a switch (%s): back to the same master",
			 s->ep->desc, s->ep->master_name, why);
}

/* A message on a subscription: ["message", channel, payload] or ["pmessage", pattern,
 * channel, payload]. "+switch-master" says "<name> <old ip> <old port> <new ip> <new port>". */
static void heard(struct sentinel *s, const redisReply *r)
{
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING)
		return;
	bool pm = strcmp(r->element[0]->str, "pmessage") == 0;
	if ((!pm && strcmp(r->element[0]->str, "message") != 0) || r->elements != (pm ? 4u : 3u))
		return;
	const redisReply *ch = r->element[pm ? 2 : 1], *pl = r->element[pm ? 3 : 2];
	if (ch->type != REDIS_REPLY_STRING || pl->type != REDIS_REPLY_STRING)
		return;
	if (strcmp(ch->str, "+switch-master") == 0) {
		char name[160], oldhost[256], newhost[256], newport[16];
		int oldport, port;
		if (sscanf(pl->str, "%159s %255s %d %255s %15s", name, oldhost, &oldport, newhost,
			   newport) == 5 &&
		    strcmp(name, s->ep->master_name) == 0 && parse_port(newport, &port) == 0)
			learn(s, newhost, port, "+switch-master");
	} else if (strcmp(ch->str, "+selected-slave") == 0) {
		if (about_us(s, pl->str))
			failing_over(s, true, "+selected-slave");
	} else if (about_us(s, pl->str)) { /* +failover-end, -failover-abort-* */
		bool still;
		pthread_mutex_lock(&s->mu);
		still = s->failing_over;
		pthread_mutex_unlock(&s->mu);
		if (still) {
			failing_over(s, false, ch->str);
			s->asked_ms = 0; /* ask at once where the master is */
		}
	}
}

/* Reads what sentinel i's subscription has; false if it broke. */
static bool read_sub(struct sentinel *s, size_t i)
{
	redisContext *c = s->subs[i];
	if (redisBufferRead(c) != REDIS_OK)
		return false;
	for (;;) {
		void *reply = NULL;
		if (redisGetReplyFromReader(c, &reply) != REDIS_OK)
			return false;
		if (!reply)
			return true;
		heard(s, reply);
		freeReplyObject(reply);
	}
}

static bool stopping(struct sentinel *s)
{
	pthread_mutex_lock(&s->mu);
	bool stop = s->stop;
	pthread_mutex_unlock(&s->mu);
	return stop;
}

static void drain(int fd)
{
	uint64_t v;
	if (read(fd, &v, sizeof(v)) < 0) {
		/* nothing to take */
	}
}

/* Waits up to ms for the wake descriptor. Returns true if woken. */
static bool nap(struct sentinel *s, int ms)
{
	struct pollfd p = {.fd = s->wake, .events = POLLIN};
	if (poll(&p, 1, ms) > 0) {
		drain(s->wake);
		return true;
	}
	return false;
}

/* A failover that never ends (the leader died with it) stops pausing after this long. */
#define SENTINEL_FAILOVER_MAX_MS 15000

static void *watch(void *arg)
{
	struct sentinel *s = arg;
	const struct layer_endpoint *ep = s->ep;
	int backoff = 0;
	while (!stopping(s)) {
		/* Subscribe first, then ask: a switch between the two is not missed. */
		size_t nsubs = subscribe_all(s);
		if (ask(s) < 0 || nsubs == 0) {
			backoff = backoff ? (backoff * 2 > 2000 ? 2000 : backoff * 2) : 100;
			nap(s, backoff);
			continue;
		}
		backoff = 0;
		while (!stopping(s)) {
			int64_t now = util_now_ms();
			pthread_mutex_lock(&s->mu);
			bool stuck = s->failing_over && now - s->failover_ms > SENTINEL_FAILOVER_MAX_MS;
			pthread_mutex_unlock(&s->mu);
			if (stuck) {
				failing_over(s, false, "no switch heard within 15 s");
				s->asked_ms = 0;
			}
			int64_t due = s->asked_ms + SENTINEL_REFRESH_MS - now;
			struct pollfd p[LAYER_SENTINELS_MAX + 1];
			size_t which[LAYER_SENTINELS_MAX], np = 0;
			for (size_t i = 0; i < ep->nsentinels; i++)
				if (s->subs[i]) {
					p[np] = (struct pollfd){.fd = s->subs[i]->fd, .events = POLLIN};
					which[np++] = i;
				}
			p[np] = (struct pollfd){.fd = s->wake, .events = POLLIN};
			int n = poll(p, np + 1, due > 0 ? (int)due : 0);
			if (n < 0)
				continue;
			if (p[np].revents) {
				drain(s->wake);
				if (stopping(s))
					break;
				/* Suspected: ask again, not more often than every 100 ms. */
				int64_t since = util_now_ms() - s->asked_ms;
				if (since < SENTINEL_SUSPECT_MIN_MS)
					nap(s, (int)(SENTINEL_SUSPECT_MIN_MS - since));
				if (ask(s) < 0)
					break;
				continue;
			}
			if (n == 0) {
				/* Every few seconds: ask, and subscribe where a subscription broke. */
				if (ask(s) < 0)
					break;
				subscribe_all(s);
				continue;
			}
			for (size_t k = 0; k < np; k++)
				if (p[k].revents && !read_sub(s, which[k])) {
					redisFree(s->subs[which[k]]);
					s->subs[which[k]] = NULL;
				}
		}
	}
	unsubscribe_all(s);
	return NULL;
}

void sentinel_new(struct sentinel **out, const struct layer_endpoint *ep, int connect_ms,
		  int command_ms)
{
	struct sentinel *s = xcalloc(1, sizeof(*s));
	s->ep = ep;
	s->connect_ms = connect_ms;
	s->command_ms = command_ms;
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->known_cond, &ca);
	pthread_condattr_destroy(&ca);
	snprintf(s->error, sizeof(s->error), "no sentinel asked yet");
	s->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	s->notify = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int rc = s->wake < 0 || s->notify < 0 ? errno : pthread_create(&s->thread, NULL, watch, s);
	if (rc) {
		/* As out of memory (util.h): not recoverable. */
		log_error("cannot start the sentinel watcher of %s: %s", ep->desc, strerror(rc));
		abort();
	}
	*out = s;
}

void sentinel_free(struct sentinel *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->stop = true;
	pthread_mutex_unlock(&s->mu);
	uint64_t one = 1;
	if (write(s->wake, &one, sizeof(one)) < 0) {
		/* already readable */
	}
	pthread_join(s->thread, NULL);
	close(s->wake);
	close(s->notify);
	pthread_cond_destroy(&s->known_cond);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

int sentinel_master(struct sentinel *s, char *host, size_t hostlen, int *port, uint64_t *gen,
		    char *err, size_t errlen)
{
	pthread_mutex_lock(&s->mu);
	int rc = 0;
	if (s->gen == 0) {
		rc = -EAGAIN;
		if (errlen)
			snprintf(err, errlen, "no master known yet: %s", s->error);
	} else if (s->failing_over) {
		rc = -EAGAIN;
		if (errlen)
			snprintf(err, errlen, "the sentinels are failing %s over",
				 s->ep->master_name);
	} else {
		snprintf(host, hostlen, "%s", s->host);
		*port = s->port;
	}
	if (gen)
		*gen = s->gen;
	pthread_mutex_unlock(&s->mu);
	return rc;
}

void sentinel_wait(struct sentinel *s, int timeout_ms)
{
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&s->mu);
	while (s->gen == 0 && !s->stop)
		if (pthread_cond_timedwait(&s->known_cond, &s->mu, &until) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&s->mu);
}

uint64_t sentinel_gen(struct sentinel *s)
{
	pthread_mutex_lock(&s->mu);
	uint64_t gen = s->gen;
	pthread_mutex_unlock(&s->mu);
	return gen;
}

void sentinel_suspect(struct sentinel *s)
{
	uint64_t one = 1;
	if (write(s->wake, &one, sizeof(one)) < 0) {
		/* already readable */
	}
}

int sentinel_fd(const struct sentinel *s)
{
	return s->notify;
}

void sentinel_ack(struct sentinel *s)
{
	drain(s->notify);
}

static const redisReply *field(const redisReply *r, const char *name)
{
	for (size_t i = 0; i + 1 < r->elements; i += 2)
		if (r->element[i]->type == REDIS_REPLY_STRING &&
		    strcmp(r->element[i]->str, name) == 0 &&
		    r->element[i + 1]->type == REDIS_REPLY_STRING)
			return r->element[i + 1];
	return NULL;
}

int sentinel_report(const struct layer_endpoint *ep, int timeout_ms, struct sentinel_report *out,
		    char *err, size_t errlen)
{
	/* Every sentinel is asked: right after a failover they disagree for a moment, and the one
	 * with the highest configuration epoch knows best. */
	char why[512] = "no sentinel";
	bool any = false;
	for (size_t i = 0; i < ep->nsentinels; i++) {
		redisContext *c = open_sentinel(ep, i, timeout_ms, timeout_ms, why, sizeof(why));
		if (!c)
			continue;
		struct sentinel_report r = {0};
		describe(r.sentinel, sizeof(r.sentinel), &ep->sentinels[i]);
		redisReply *rep = redisCommand(c, "SENTINEL MASTER %s", ep->master_name);
		const redisReply *ip = NULL, *port = NULL, *epoch = NULL, *since = NULL;
		if (rep && rep->type == REDIS_REPLY_ARRAY) {
			ip = field(rep, "ip");
			port = field(rep, "port");
			epoch = field(rep, "config-epoch");
			since = field(rep, "role-reported-time");
		}
		if (ip && port && parse_port(port->str, &r.port) == 0) {
			snprintf(r.host, sizeof(r.host), "%s", ip->str);
			r.config_epoch = epoch ? atoll(epoch->str) : -1;
			r.master_for_ms = since ? atoll(since->str) : -1;
			if (!any || r.config_epoch > out->config_epoch)
				*out = r;
			any = true;
		} else {
			snprintf(why, sizeof(why), "sentinel %s: %s", r.sentinel,
				 !rep ? c->errstr
				 : rep->type == REDIS_REPLY_ERROR ? rep->str
								  : "an unexpected answer");
		}
		freeReplyObject(rep);
		redisFree(c);
	}
	if (any)
		return 0;
	if (errlen)
		snprintf(err, errlen, "%s", why);
	return -ENOTCONN;
}
