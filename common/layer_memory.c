/* The in-memory channel layer: one process, any number of threads sharing one layer object.
 *
 * It keeps the Redis backend's semantics (SPEC §2–3) by doing the same things on the same names:
 * messages are stored encoded (layer_encode) on the queue of their channel ("a!" for "a!b") and
 * decoded (layer_decode) when popped, so a message is copied between threads and reads back exactly
 * as it would from Redis. One mutex guards everything; encoding and decoding happen outside it
 * where they can.
 *
 * Blocking receivers never poll. Each one registers a watch on every queue it reads, with its own
 * condition variable. A push wakes one watcher of that queue that is not already woken; a receiver
 * that leaves while one of its queues still holds messages passes the wake-up on to another
 * watcher of that queue, so no message waits while a reader sleeps and one push wakes one thread.
 */
#include "common/layer.h"
#include "common/buf.h"
#include "common/codec.h"
#include "common/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Per-channel counters live an hour after their last change, as the Redis keys do. */
#define STATS_TTL_MS (3600 * 1000LL)
/* Tables are swept for dead entries when they reach twice their size after the last sweep. */
#define SWEEP_MIN 64

/* A chained hash table keyed by name. Nodes never move, so pointers to them stay valid until
 * they are deleted. */
struct node {
	struct node *next;
	uint32_t hash;
	uint32_t keylen;
	union {
		void *p;
		int64_t i;
	} v;
	char key[]; /* NUL-terminated */
};

struct table {
	struct node **buckets;
	size_t nbuckets; /* a power of two */
	size_t len;
	size_t sweep_at;
};

/* Iterates over every node; n may be deleted in the body. */
#define table_each(t, b, n, tmp)                                                                   \
	for (size_t b = 0; b < (t)->nbuckets; b++)                                                 \
		for ((n) = (t)->buckets[b]; (n) && ((tmp) = (n)->next, 1); (n) = (tmp))

/* One queued message: its encoded bytes. */
struct item {
	struct item *next;
	int64_t sent_ms;
	size_t len;
	char data[];
};

struct waiter {
	pthread_cond_t cond;
	bool woken;
};

/* One blocked receiver's interest in one queue. */
struct watch {
	struct watch *prev, *next;
	struct waiter *w;
	struct queue *q;
};

/* A queue exists while it holds messages or has watchers. */
struct queue {
	struct node *node;
	struct item *head, *tail;
	size_t len;
	struct watch *watch_head, *watch_tail;
};

struct group {
	struct node *node;
	struct table members; /* channel -> v.i = monotonic ms of the last add */
	int64_t last_add_ms;
};

/* A group's history (docs/recovery.md): a ring of its last messages, encoded. */
struct history {
	struct node *node;
	char epoch[LAUREL_EPOCH_LEN + 1];
	uint64_t top; /* offset of the newest */
	struct buf *ring;
	size_t cap, start, len;
	int64_t last_ms; /* monotonic: when the newest came */
	int64_t ttl_ms;
};

struct counters {
	int64_t messages_count;
	int64_t channel_full_count;
	int64_t touched_ms;
};

/* The channels of one process prefix that a group send reaches with one multicast message. */
struct recipients {
	const char **names;
	size_t n, cap;
};

/* A scheduled entry (laurel_layer_schedule). */
struct scheduled {
	int64_t due_ms;
	size_t len;
	char *member;
};

struct layer_memory {
	struct laurel_layer base;
	pthread_mutex_t lock;
	pthread_condattr_t condattr;
	struct util_rng rng;
	struct table queues;	 /* queue name -> struct queue */
	struct table groups;	 /* group name -> struct group */
	struct table histories;	 /* group name -> struct history */
	struct table interfaces; /* process prefix -> v.i = deadline, monotonic ms */
	struct table stats;	 /* queue name -> struct counters */
	struct table kv;	 /* key -> struct kv_value */
	struct scheduled *sched; /* sorted by due time, then by arrival */
	size_t nsched, schedcap;
	int64_t messages_count;
	int64_t channel_full_count;
};

static uint32_t hash(const char *key, size_t len)
{
	/* FNV-1a: names are short, and this is cheap and spreads them well enough. */
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)key[i];
		h *= 16777619u;
	}
	return h;
}

static void table_init(struct table *t)
{
	t->nbuckets = 16;
	t->buckets = xcalloc(t->nbuckets, sizeof(*t->buckets));
	t->len = 0;
	t->sweep_at = SWEEP_MIN;
}

/* Frees the nodes; their values must have been freed already. */
static void table_clear(struct table *t)
{
	struct node *n, *tmp;
	table_each(t, b, n, tmp)
	{
		free(n);
	}
	memset(t->buckets, 0, t->nbuckets * sizeof(*t->buckets));
	t->len = 0;
	t->sweep_at = SWEEP_MIN;
}

static void table_fini(struct table *t)
{
	table_clear(t);
	free(t->buckets);
	t->buckets = NULL;
	t->nbuckets = 0;
}

static struct node *table_find(const struct table *t, const char *key, size_t len)
{
	uint32_t h = hash(key, len);
	for (struct node *n = t->buckets[h & (t->nbuckets - 1)]; n; n = n->next)
		if (n->hash == h && n->keylen == len && memcmp(n->key, key, len) == 0)
			return n;
	return NULL;
}

static void table_grow(struct table *t)
{
	size_t nb = t->nbuckets * 2;
	struct node **buckets = xcalloc(nb, sizeof(*buckets));
	struct node *n, *tmp;
	table_each(t, b, n, tmp)
	{
		n->next = buckets[n->hash & (nb - 1)];
		buckets[n->hash & (nb - 1)] = n;
	}
	free(t->buckets);
	t->buckets = buckets;
	t->nbuckets = nb;
}

/* Adds key, which must not be there, with a zero value. */
static struct node *table_add(struct table *t, const char *key, size_t len)
{
	if (t->len >= t->nbuckets)
		table_grow(t);
	struct node *n = xmalloc(sizeof(*n) + len + 1);
	n->hash = hash(key, len);
	n->keylen = (uint32_t)len;
	n->v.i = 0;
	memcpy(n->key, key, len);
	n->key[len] = '\0';
	struct node **head = &t->buckets[n->hash & (t->nbuckets - 1)];
	n->next = *head;
	*head = n;
	t->len++;
	return n;
}

static void table_del(struct table *t, struct node *n)
{
	struct node **p = &t->buckets[n->hash & (t->nbuckets - 1)];
	while (*p != n)
		p = &(*p)->next;
	*p = n->next;
	t->len--;
	free(n);
}

/* True when t has grown enough since its last sweep that a new entry should sweep it first. */
static bool table_needs_sweep(const struct table *t)
{
	return t->len >= t->sweep_at;
}

static void table_swept(struct table *t)
{
	t->sweep_at = t->len * 2 > SWEEP_MIN ? t->len * 2 : SWEEP_MIN;
}

static char **strv_new(size_t n)
{
	return xcalloc(n + 1, sizeof(char *));
}

/* --- Queues ---------------------------------------------------------------------------------- */

static int64_t expiry_ms(const struct layer_memory *m)
{
	return (int64_t)m->base.cfg.expiry * 1000;
}

static struct item *item_new(const char *data, size_t len)
{
	struct item *it = xmalloc(sizeof(*it) + len);
	it->next = NULL;
	it->sent_ms = 0;
	it->len = len;
	memcpy(it->data, data, len);
	return it;
}

/* Drops expired messages. Every message lives the same time, so they are all at the head. */
static void queue_trim(const struct layer_memory *m, struct queue *q, int64_t now)
{
	while (q->head && now - q->head->sent_ms >= expiry_ms(m)) {
		struct item *it = q->head;
		q->head = it->next;
		if (!q->head)
			q->tail = NULL;
		q->len--;
		free(it);
	}
}

static void queue_free_items(struct queue *q)
{
	while (q->head) {
		struct item *it = q->head;
		q->head = it->next;
		free(it);
	}
	q->tail = NULL;
	q->len = 0;
}

static void queue_drop(struct layer_memory *m, struct queue *q)
{
	queue_free_items(q);
	table_del(&m->queues, q->node);
	free(q);
}

/* Trims q and drops it if it is left with neither messages nor watchers. Returns q, or NULL if it
 * was dropped. */
static struct queue *queue_settle(struct layer_memory *m, struct queue *q, int64_t now)
{
	queue_trim(m, q, now);
	if (q->head || q->watch_head)
		return q;
	queue_drop(m, q);
	return NULL;
}

static struct queue *queue_find(struct layer_memory *m, const char *name, size_t len, int64_t now)
{
	struct node *n = table_find(&m->queues, name, len);
	return n ? queue_settle(m, n->v.p, now) : NULL;
}

static struct queue *queue_get(struct layer_memory *m, const char *name, size_t len, int64_t now)
{
	struct queue *q = queue_find(m, name, len, now);
	if (q)
		return q;
	if (table_needs_sweep(&m->queues)) {
		/* Queues nobody reads would otherwise keep their expired messages forever. */
		struct node *n, *tmp;
		table_each(&m->queues, b, n, tmp)
		{
			queue_settle(m, n->v.p, now);
		}
		table_swept(&m->queues);
	}
	q = xcalloc(1, sizeof(*q));
	q->node = table_add(&m->queues, name, len);
	q->node->v.p = q;
	return q;
}

static void wake_one(struct queue *q)
{
	for (struct watch *x = q->watch_head; x; x = x->next) {
		if (!x->w->woken) {
			x->w->woken = true;
			pthread_cond_signal(&x->w->cond);
			return;
		}
	}
}

/* --- Statistics ------------------------------------------------------------------------------ */

static bool counters_live(const struct counters *c, int64_t now)
{
	return now - c->touched_ms < STATS_TTL_MS;
}

static struct counters *counters_get(struct layer_memory *m, const char *queue, size_t len,
				     int64_t now)
{
	struct node *n = table_find(&m->stats, queue, len);
	struct counters *c;
	if (!n) {
		if (table_needs_sweep(&m->stats)) {
			struct node *tmp;
			table_each(&m->stats, b, n, tmp)
			{
				if (!counters_live(n->v.p, now)) {
					free(n->v.p);
					table_del(&m->stats, n);
				}
			}
			table_swept(&m->stats);
		}
		n = table_add(&m->stats, queue, len);
		n->v.p = xcalloc(1, sizeof(struct counters));
	}
	c = n->v.p;
	if (!counters_live(c, now))
		memset(c, 0, sizeof(*c));
	c->touched_ms = now;
	return c;
}

/* --- Sending --------------------------------------------------------------------------------- */

/* Queues it on the queue named queue[0..len) unless that is full, and wakes one reader. Returns 0
 * (it is then owned by the queue) or LAUREL_FULL (it is still the caller's). */
static int push(struct layer_memory *m, const char *queue, size_t len, struct item *it, int64_t now)
{
	char name[LAUREL_NAME_MAX + 1];
	if (len > LAUREL_NAME_MAX)
		len = LAUREL_NAME_MAX;
	memcpy(name, queue, len);
	name[len] = '\0';
	int capacity = layer_capacity_for(&m->base.cfg, name);
	struct queue *q = queue_find(m, name, len, now);
	struct counters *c = counters_get(m, name, len, now);
	if ((q ? (int64_t)q->len : 0) >= capacity) {
		c->channel_full_count++;
		m->channel_full_count++;
		return LAUREL_FULL;
	}
	if (!q)
		q = queue_get(m, name, len, now);
	it->sent_ms = now;
	it->next = NULL;
	if (q->tail)
		q->tail->next = it;
	else
		q->head = it;
	q->tail = it;
	q->len++;
	c->messages_count++;
	m->messages_count++;
	wake_one(q);
	return 0;
}

static int op_send(struct laurel_layer *l, const char *channel, const struct laurel_msg *msg)
{
	struct layer_memory *m = (struct layer_memory *)l;
	struct buf b;
	buf_init(&b);
	int rc = layer_encode(&l->cfg, channel, msg, &b);
	if (rc < 0) {
		buf_fini(&b);
		return rc;
	}
	struct item *it = item_new(b.data, b.len);
	buf_fini(&b);
	pthread_mutex_lock(&m->lock);
	rc = push(m, channel, layer_queue_len(channel), it, util_now_ms());
	pthread_mutex_unlock(&m->lock);
	if (rc == LAUREL_FULL)
		free(it);
	return rc;
}

/* As Redis does: once a queue is full, later messages for it are not tried, so that a retry of
 * the failed ones in order keeps the order. */
static void op_send_many(struct laurel_layer *l, struct laurel_outgoing *items, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (items[i].result)
			continue;
		const char *ch = items[i].channel;
		size_t qlen = layer_queue_len(ch);
		bool blocked = false;
		for (size_t k = 0; k < i && !blocked; k++)
			blocked = items[k].result == LAUREL_FULL &&
				  layer_queue_len(items[k].channel) == qlen &&
				  memcmp(items[k].channel, ch, qlen) == 0;
		items[i].result = blocked ? layer_fail(LAUREL_FULL, "channel %s is full", ch)
					  : op_send(l, ch, items[i].msg);
	}
}

/* --- Receiving ------------------------------------------------------------------------------- */

/* Pops up to max messages, one per channel per round, in the given channel order. Records in
 * from[] the index of the channel each came from. */
static size_t take(struct layer_memory *m, const char *const *channels, const size_t *order,
		   size_t nchannels, struct item **items, size_t *from, size_t max)
{
	int64_t now = util_now_ms();
	size_t n = 0;
	bool progress = true;
	while (n < max && progress) {
		progress = false;
		for (size_t i = 0; i < nchannels && n < max; i++) {
			const char *ch = channels[order[i]];
			struct queue *q = queue_find(m, ch, layer_queue_len(ch), now);
			if (!q || !q->head)
				continue;
			struct item *it = q->head;
			q->head = it->next;
			if (!q->head)
				q->tail = NULL;
			q->len--;
			items[n] = it;
			from[n] = order[i];
			n++;
			progress = true;
			queue_settle(m, q, now);
		}
	}
	return n;
}

static void watch_all(struct layer_memory *m, const char *const *channels, size_t nchannels,
		      struct waiter *w, struct watch *watches)
{
	int64_t now = util_now_ms();
	for (size_t i = 0; i < nchannels; i++) {
		struct queue *q = queue_get(m, channels[i], layer_queue_len(channels[i]), now);
		struct watch *x = &watches[i];
		x->w = w;
		x->q = q;
		x->next = NULL;
		x->prev = q->watch_tail;
		if (q->watch_tail)
			q->watch_tail->next = x;
		else
			q->watch_head = x;
		q->watch_tail = x;
	}
}

static void unwatch_all(struct layer_memory *m, const char *const *channels, size_t nchannels,
			struct watch *watches)
{
	int64_t now = util_now_ms();
	for (size_t i = 0; i < nchannels; i++) {
		struct watch *x = &watches[i];
		struct queue *q = x->q;
		if (x->prev)
			x->prev->next = x->next;
		else
			q->watch_head = x->next;
		if (x->next)
			x->next->prev = x->prev;
		else
			q->watch_tail = x->prev;
	}
	/* Looked up again by name: a channel named twice shares one queue, which may be dropped. */
	for (size_t i = 0; i < nchannels; i++) {
		struct queue *q = queue_find(m, channels[i], layer_queue_len(channels[i]), now);
		if (q && q->head)
			wake_one(q);
	}
}

static void shuffle(struct util_rng *rng, size_t *order, size_t n)
{
	for (size_t i = 0; i < n; i++)
		order[i] = i;
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)util_rng_below(rng, i);
		size_t t = order[i - 1];
		order[i - 1] = order[j];
		order[j] = t;
	}
}

static void deadline_after(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

static int op_receive(struct laurel_layer *l, const char *const *channels, size_t nchannels,
		      int timeout_ms, struct laurel_received *out, size_t max, size_t *got)
{
	struct layer_memory *m = (struct layer_memory *)l;
	struct item **items = xcalloc(max, sizeof(*items));
	size_t *from = xcalloc(max, sizeof(*from));
	size_t *order = xcalloc(nchannels, sizeof(*order));
	struct watch *watches = NULL;
	struct waiter w;
	struct timespec deadline;
	size_t n;

	if (timeout_ms > 0)
		deadline_after(&deadline, timeout_ms);
	pthread_mutex_lock(&m->lock);
	shuffle(&m->rng, order, nchannels);
	for (;;) {
		n = take(m, channels, order, nchannels, items, from, max);
		if (n > 0 || timeout_ms == 0)
			break;
		if (!watches) {
			pthread_cond_init(&w.cond, &m->condattr);
			watches = xcalloc(nchannels, sizeof(*watches));
			watch_all(m, channels, nchannels, &w, watches);
		}
		w.woken = false;
		if (timeout_ms < 0) {
			pthread_cond_wait(&w.cond, &m->lock);
		} else if (pthread_cond_timedwait(&w.cond, &m->lock, &deadline) == ETIMEDOUT) {
			n = take(m, channels, order, nchannels, items, from, max);
			break;
		}
	}
	if (watches)
		unwatch_all(m, channels, nchannels, watches);
	pthread_mutex_unlock(&m->lock);
	if (watches) {
		pthread_cond_destroy(&w.cond);
		free(watches);
	}

	/* Our own encodings always decode; should one not, it is dropped and the others kept. */
	int rc = 0;
	*got = 0;
	for (size_t i = 0; i < n; i++) {
		const char *ch = channels[from[i]];
		int r = layer_decode(ch, layer_queue_len(ch), items[i]->data, items[i]->len,
				     &out[*got]);
		if (r == 0)
			(*got)++;
		else
			rc = r;
		free(items[i]);
	}
	free(items);
	free(from);
	free(order);
	return *got > 0 ? 0 : rc;
}

static int op_new_channel(struct laurel_layer *l, const char *pattern, char *out)
{
	struct layer_memory *m = (struct layer_memory *)l;
	size_t n = strlen(pattern);
	if (n + 12 > LAUREL_NAME_MAX - 1)
		return layer_fail(-EINVAL, "no room for 12 more characters after \"%s\"", pattern);
	memcpy(out, pattern, n);
	out[n + 12] = '\0';
	pthread_mutex_lock(&m->lock);
	int64_t now = util_now_ms();
	do
		util_rng_letters(&m->rng, out + n, 12);
	while (queue_find(m, out, n + 12, now));
	pthread_mutex_unlock(&m->lock);
	return 0;
}

/* --- Groups ---------------------------------------------------------------------------------- */

static int64_t group_expiry_ms(const struct layer_memory *m)
{
	return (int64_t)m->base.cfg.group_expiry * 1000;
}

static void group_drop(struct layer_memory *m, struct group *g)
{
	table_fini(&g->members);
	table_del(&m->groups, g->node);
	free(g);
}

/* Drops expired members, and the group if none is left. Returns g or NULL. */
static struct group *group_settle(struct layer_memory *m, struct group *g, int64_t now)
{
	int64_t ge = group_expiry_ms(m);
	if (now - g->last_add_ms >= ge) {
		group_drop(m, g);
		return NULL;
	}
	struct node *n, *tmp;
	table_each(&g->members, b, n, tmp)
	{
		if (now - n->v.i >= ge)
			table_del(&g->members, n);
	}
	if (g->members.len == 0) {
		group_drop(m, g);
		return NULL;
	}
	return g;
}

static struct group *group_find(struct layer_memory *m, const char *name, int64_t now)
{
	struct node *n = table_find(&m->groups, name, strlen(name));
	return n ? group_settle(m, n->v.p, now) : NULL;
}

static int op_group_add(struct laurel_layer *l, const char *group, const char *channel)
{
	struct layer_memory *m = (struct layer_memory *)l;
	pthread_mutex_lock(&m->lock);
	int64_t now = util_now_ms();
	struct group *g = group_find(m, group, now);
	if (!g) {
		if (table_needs_sweep(&m->groups)) {
			/* Groups nobody touches again would otherwise stay forever. */
			struct node *n, *tmp;
			table_each(&m->groups, b, n, tmp)
			{
				group_settle(m, n->v.p, now);
			}
			table_swept(&m->groups);
		}
		g = xcalloc(1, sizeof(*g));
		table_init(&g->members);
		g->node = table_add(&m->groups, group, strlen(group));
		g->node->v.p = g;
	}
	size_t len = strlen(channel);
	struct node *n = table_find(&g->members, channel, len);
	if (!n)
		n = table_add(&g->members, channel, len);
	n->v.i = now;
	g->last_add_ms = now;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static int op_group_discard(struct laurel_layer *l, const char *group, const char *channel)
{
	struct layer_memory *m = (struct layer_memory *)l;
	pthread_mutex_lock(&m->lock);
	int64_t now = util_now_ms();
	struct group *g = group_find(m, group, now);
	if (g) {
		struct node *n = table_find(&g->members, channel, strlen(channel));
		if (n)
			table_del(&g->members, n);
		if (g->members.len == 0)
			group_drop(m, g);
	}
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static int op_group_members(struct laurel_layer *l, const char *group, char ***members, size_t *n)
{
	struct layer_memory *m = (struct layer_memory *)l;
	pthread_mutex_lock(&m->lock);
	struct group *g = group_find(m, group, util_now_ms());
	size_t count = 0;
	char **v = strv_new(g ? g->members.len : 0);
	if (g) {
		struct node *x, *tmp;
		table_each(&g->members, b, x, tmp)
		{
			v[count++] = xstrndup(x->key, x->keylen);
		}
	}
	pthread_mutex_unlock(&m->lock);
	*members = v;
	*n = count;
	return 0;
}

static int op_group_count(struct laurel_layer *l, const char *group, size_t *n)
{
	struct layer_memory *m = (struct layer_memory *)l;
	pthread_mutex_lock(&m->lock);
	struct group *g = group_find(m, group, util_now_ms());
	*n = g ? g->members.len : 0;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static bool announced(struct layer_memory *m, const char *prefix, size_t len, int64_t now)
{
	struct node *n = table_find(&m->interfaces, prefix, len);
	if (!n)
		return false;
	if (n->v.i > now)
		return true;
	table_del(&m->interfaces, n);
	return false;
}

/* Sends to one member; plain is msg encoded without a channel key. Returns 1 if it was queued. */
static size_t send_member(struct layer_memory *m, const char *channel, size_t len,
			  const struct laurel_msg *msg, const struct buf *plain, int64_t now)
{
	size_t qlen = layer_queue_len(channel);
	struct item *it;
	if (qlen < len || channel[qlen - 1] == '!') {
		struct buf b;
		buf_init(&b);
		if (layer_encode(&m->base.cfg, channel, msg, &b) < 0) {
			buf_fini(&b);
			return 0;
		}
		it = item_new(b.data, b.len);
		buf_fini(&b);
	} else {
		it = item_new(plain->data, plain->len);
	}
	if (push(m, channel, qlen, it, now) == 0)
		return 1;
	free(it);
	return 0;
}

/* One message on the process queue prefix for all of r's channels. Returns how many it reached. */
static size_t send_multicast(struct layer_memory *m, const char *prefix, size_t len,
			     const struct recipients *r, const struct laurel_msg *msg,
			     const struct buf *plain, int64_t now)
{
	struct buf b;
	size_t sent = 0;
	buf_init(&b);
	codec_encode(msg, LAYER_MULTICAST_KEY, &b);
	codec_put_array_header(&b, r->n);
	for (size_t i = 0; i < r->n; i++)
		codec_put_str(&b, r->names[i], strlen(r->names[i]));
	if (b.len > m->base.cfg.max_message) {
		/* Too many recipients for one message: reach them one by one instead. */
		for (size_t i = 0; i < r->n; i++)
			sent += send_member(m, r->names[i], strlen(r->names[i]), msg, plain, now);
	} else {
		struct item *it = item_new(b.data, b.len);
		if (push(m, prefix, len, it, now) == 0)
			sent = r->n;
		else
			free(it);
	}
	buf_fini(&b);
	return sent;
}

/* --- Group histories ------------------------------------------------------------------------- */

static void history_drop(struct layer_memory *m, struct history *h)
{
	for (size_t i = 0; i < h->len; i++)
		buf_fini(&h->ring[(h->start + i) % h->cap]);
	free(h->ring);
	table_del(&m->histories, h->node);
	free(h);
}

/* The group's history, or NULL if it has none (never had, or it expired). */
static struct history *history_find(struct layer_memory *m, const char *group, int64_t now)
{
	struct node *n = table_find(&m->histories, group, strlen(group));
	if (!n)
		return NULL;
	struct history *h = n->v.p;
	if (now - h->last_ms >= h->ttl_ms) {
		history_drop(m, h);
		return NULL;
	}
	return h;
}

/* Appends the encoded message to the group's history (made anew, with a new epoch, if it has
 * none) and sets pos to its place. */
static void history_append(struct layer_memory *m, const char *group,
			   const struct laurel_history_rule *rule, const struct buf *plain,
			   int64_t now, struct laurel_history_pos *pos)
{
	struct history *h = history_find(m, group, now);
	if (!h) {
		if (table_needs_sweep(&m->histories)) {
			struct node *n, *tmp;
			table_each(&m->histories, b, n, tmp)
			{
				struct history *x = n->v.p;
				if (now - x->last_ms >= x->ttl_ms)
					history_drop(m, x);
			}
			table_swept(&m->histories);
		}
		h = xcalloc(1, sizeof(*h));
		h->node = table_add(&m->histories, group, strlen(group));
		h->node->v.p = h;
		util_rng_hex(&m->rng, h->epoch, LAUREL_EPOCH_LEN);
		h->epoch[LAUREL_EPOCH_LEN] = '\0';
	}
	size_t size = (size_t)rule->size;
	if (h->cap != size) { /* new, or the rule changed: keep the newest that fit */
		struct buf *ring = xcalloc(size, sizeof(*ring));
		size_t keep = h->len < size ? h->len : size;
		for (size_t i = 0; i < h->len; i++) {
			struct buf *b = &h->ring[(h->start + i) % h->cap];
			if (i < h->len - keep)
				buf_fini(b);
			else
				ring[i - (h->len - keep)] = *b;
		}
		free(h->ring);
		h->ring = ring;
		h->cap = size;
		h->start = 0;
		h->len = keep;
	}
	if (h->len == h->cap) {
		buf_fini(&h->ring[h->start]);
		h->start = (h->start + 1) % h->cap;
		h->len--;
	}
	struct buf *b = &h->ring[(h->start + h->len) % h->cap];
	buf_init(b);
	buf_append(b, plain->data, plain->len);
	h->len++;
	h->top++;
	h->last_ms = now;
	h->ttl_ms = (int64_t)rule->ttl_s * 1000;
	memcpy(pos->epoch, h->epoch, sizeof(pos->epoch));
	pos->offset = h->top;
}

static int op_group_history(struct laurel_layer *l, const char *group,
			    const struct laurel_history_rule *rule, uint64_t after,
			    struct laurel_history_entry **out, size_t *n,
			    struct laurel_history_pos *top, uint64_t *first)
{
	struct layer_memory *m = (struct layer_memory *)l;
	(void)rule;
	int rc = 0;
	pthread_mutex_lock(&m->lock);
	struct history *h = history_find(m, group, util_now_ms());
	if (!h) {
		*first = 1;
		pthread_mutex_unlock(&m->lock);
		return 0;
	}
	memcpy(top->epoch, h->epoch, sizeof(top->epoch));
	top->offset = h->top;
	*first = h->top - h->len + 1;
	uint64_t from = after + 1 > *first ? after + 1 : *first;
	if (from <= h->top) {
		size_t k = (size_t)(h->top - from + 1);
		*out = xcalloc(k, sizeof(**out));
		for (uint64_t o = from; o <= h->top; o++) {
			const struct buf *b = &h->ring[(h->start + (o - *first)) % h->cap];
			struct laurel_msg *msg;
			if (laurel_msg_decode(b->data, b->len, NULL, &msg) < 0) {
				rc = layer_fail(-EPROTO, "group %s: undecodable history entry %llu",
						group, (unsigned long long)o);
				break;
			}
			(*out)[*n].offset = o;
			(*out)[(*n)++].msg = msg;
		}
	}
	pthread_mutex_unlock(&m->lock);
	if (rc < 0) {
		laurel_history_entries_free(*out, *n);
		*out = NULL;
		*n = 0;
	}
	return rc;
}

static int op_group_send(struct laurel_layer *l, const char *group, const struct laurel_msg *msg,
			 size_t *delivered, const struct laurel_history_rule *rule,
			 struct laurel_history_pos *pos)
{
	struct layer_memory *m = (struct layer_memory *)l;
	struct buf plain;
	size_t sent = 0;
	buf_init(&plain);
	int rc = layer_encode(&l->cfg, group, msg, &plain);
	if (rc < 0) {
		buf_fini(&plain);
		return rc;
	}
	pthread_mutex_lock(&m->lock);
	int64_t now = util_now_ms();
	struct laurel_msg *tagged = NULL;
	if (rule) {
		history_append(m, group, rule, &plain, now, pos);
		tagged = layer_history_tag(msg, group, pos);
	}
	struct group *g = group_find(m, group, now);
	if (g) {
		struct table multi; /* process prefix -> struct recipients */
		struct node *n, *tmp;
		table_init(&multi);
		table_each(&g->members, b, n, tmp)
		{
			size_t qlen = layer_queue_len(n->key);
			if (qlen < n->keylen && announced(m, n->key, qlen, now)) {
				struct node *x = table_find(&multi, n->key, qlen);
				if (!x) {
					x = table_add(&multi, n->key, qlen);
					x->v.p = xcalloc(1, sizeof(struct recipients));
				}
				struct recipients *r = x->v.p;
				if (r->n == r->cap) {
					r->cap = r->cap ? r->cap * 2 : 8;
					r->names = xrealloc(r->names, r->cap * sizeof(*r->names));
				}
				r->names[r->n++] = n->key;
			} else {
				sent += send_member(m, n->key, n->keylen, msg, &plain, now);
			}
		}
		table_each(&multi, b, n, tmp)
		{
			struct recipients *r = n->v.p;
			sent += send_multicast(m, n->key, n->keylen, r, tagged ? tagged : msg,
					       &plain, now);
			free(r->names);
			free(r);
		}
		table_fini(&multi);
	}
	pthread_mutex_unlock(&m->lock);
	laurel_msg_free(tagged);
	buf_fini(&plain);
	*delivered = sent;
	return 0;
}

/* --- Interfaces ------------------------------------------------------------------------------ */

static int op_announce(struct laurel_layer *l, const char *prefix, int ttl_s)
{
	struct layer_memory *m = (struct layer_memory *)l;
	size_t len = strlen(prefix);
	pthread_mutex_lock(&m->lock);
	int64_t now = util_now_ms();
	struct node *n = table_find(&m->interfaces, prefix, len);
	if (!n) {
		if (table_needs_sweep(&m->interfaces)) {
			struct node *tmp;
			table_each(&m->interfaces, b, n, tmp)
			{
				if (n->v.i <= now)
					table_del(&m->interfaces, n);
			}
			table_swept(&m->interfaces);
		}
		n = table_add(&m->interfaces, prefix, len);
	}
	n->v.i = now + (int64_t)ttl_s * 1000;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static int op_withdraw(struct laurel_layer *l, const char *prefix)
{
	struct layer_memory *m = (struct layer_memory *)l;
	pthread_mutex_lock(&m->lock);
	struct node *n = table_find(&m->interfaces, prefix, strlen(prefix));
	if (n)
		table_del(&m->interfaces, n);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static int op_interfaces(struct laurel_layer *l, char ***prefixes, size_t *count)
{
	struct layer_memory *m = (struct layer_memory *)l;
	struct node *n, *tmp;
	size_t i = 0;
	pthread_mutex_lock(&m->lock);
	int64_t now = util_now_ms();
	char **v = strv_new(m->interfaces.len);
	table_each(&m->interfaces, b, n, tmp)
	{
		if (n->v.i > now)
			v[i++] = xstrndup(n->key, n->keylen);
		else
			table_del(&m->interfaces, n);
	}
	pthread_mutex_unlock(&m->lock);
	*prefixes = v;
	*count = i;
	return 0;
}

/* --- Key-value (sessions) ------------------------------------------------------------------- */

struct kv_value {
	int64_t deadline_ms;
	size_t len;
	char data[];
};

static void kv_sweep(struct layer_memory *m, int64_t now)
{
	struct node *n, *tmp;
	table_each(&m->kv, b, n, tmp)
	{
		struct kv_value *v = n->v.p;
		if (v->deadline_ms <= now) {
			free(v);
			table_del(&m->kv, n);
		}
	}
	table_swept(&m->kv);
}

static int op_kv_get(struct laurel_layer *l, const char *key, char **data, size_t *len)
{
	struct layer_memory *m = (struct layer_memory *)l;
	*data = NULL;
	*len = 0;
	pthread_mutex_lock(&m->lock);
	struct node *n = table_find(&m->kv, key, strlen(key));
	if (n) {
		struct kv_value *v = n->v.p;
		if (v->deadline_ms > util_now_ms()) {
			*data = xmalloc(v->len + 1);
			memcpy(*data, v->data, v->len);
			*len = v->len;
		} else {
			free(v);
			table_del(&m->kv, n);
		}
	}
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static int op_kv_set(struct laurel_layer *l, const char *key, const void *data, size_t len,
		     int ttl_s)
{
	struct layer_memory *m = (struct layer_memory *)l;
	struct kv_value *v = xmalloc(sizeof(*v) + len);
	v->len = len;
	memcpy(v->data, data, len);
	pthread_mutex_lock(&m->lock);
	int64_t now = util_now_ms();
	v->deadline_ms = now + (int64_t)ttl_s * 1000;
	struct node *n = table_find(&m->kv, key, strlen(key));
	if (n) {
		free(n->v.p);
	} else {
		if (table_needs_sweep(&m->kv))
			kv_sweep(m, now);
		n = table_add(&m->kv, key, strlen(key));
	}
	n->v.p = v;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static int op_kv_del(struct laurel_layer *l, const char *key)
{
	struct layer_memory *m = (struct layer_memory *)l;
	pthread_mutex_lock(&m->lock);
	struct node *n = table_find(&m->kv, key, strlen(key));
	if (n) {
		free(n->v.p);
		table_del(&m->kv, n);
	}
	pthread_mutex_unlock(&m->lock);
	return 0;
}

/* --- Flush, statistics, lifetime ------------------------------------------------------------- */

static void clear_all(struct layer_memory *m)
{
	struct node *n, *tmp;
	table_each(&m->queues, b, n, tmp)
	{
		struct queue *q = n->v.p;
		/* A queue with blocked receivers stays, empty: they hold pointers to it. */
		queue_free_items(q);
		if (!q->watch_head)
			queue_drop(m, q);
	}
	table_each(&m->groups, b, n, tmp)
	{
		group_drop(m, n->v.p);
	}
	table_each(&m->histories, b, n, tmp)
	{
		history_drop(m, n->v.p);
	}
	table_each(&m->stats, b, n, tmp)
	{
		free(n->v.p);
	}
	table_clear(&m->stats);
	table_each(&m->kv, b, n, tmp)
	{
		free(n->v.p);
	}
	table_clear(&m->kv);
	table_clear(&m->interfaces);
	for (size_t i = 0; i < m->nsched; i++)
		free(m->sched[i].member);
	m->nsched = 0;
	m->messages_count = 0;
	m->channel_full_count = 0;
}

static int op_watch_fd(struct laurel_layer *l, int fd)
{
	(void)l;
	(void)fd;
	return layer_fail(-ENOTSUP, "the memory layer cannot watch a descriptor; stop its threads "
				    "from the program that owns them");
}

static int op_schedule(struct laurel_layer *l, const void *member, size_t len, int64_t due_ms)
{
	struct layer_memory *m = (struct layer_memory *)l;
	char *copy = xmalloc(len);
	memcpy(copy, member, len);
	pthread_mutex_lock(&m->lock);
	if (m->nsched == m->schedcap) {
		m->schedcap = m->schedcap ? 2 * m->schedcap : 16;
		m->sched = xrealloc(m->sched, m->schedcap * sizeof(*m->sched));
	}
	/* After every entry due at the same time or earlier: equal times keep their arrival order. */
	size_t lo = 0, hi = m->nsched;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (m->sched[mid].due_ms <= due_ms)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < m->nsched)
		memmove(&m->sched[lo + 1], &m->sched[lo], (m->nsched - lo) * sizeof(*m->sched));
	m->sched[lo] = (struct scheduled){due_ms, len, copy};
	m->nsched++;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static int op_take_due(struct laurel_layer *l, int64_t now_ms, size_t max,
		       void (*take_fn)(void *arg, const char *member, size_t len, int64_t due_ms),
		       void *arg, int64_t *next_ms)
{
	struct layer_memory *m = (struct layer_memory *)l;
	pthread_mutex_lock(&m->lock);
	size_t n = 0;
	while (n < m->nsched && n < max && m->sched[n].due_ms <= now_ms)
		n++;
	struct scheduled *taken = xmalloc((n ? n : 1) * sizeof(*taken));
	if (n) {
		memcpy(taken, m->sched, n * sizeof(*taken));
		memmove(m->sched, m->sched + n, (m->nsched - n) * sizeof(*m->sched));
		m->nsched -= n;
	}
	*next_ms = m->nsched ? m->sched[0].due_ms : -1;
	pthread_mutex_unlock(&m->lock);
	for (size_t i = 0; i < n; i++) {
		take_fn(arg, taken[i].member, taken[i].len, taken[i].due_ms);
		free(taken[i].member);
	}
	free(taken);
	return 0;
}

static int op_flush(struct laurel_layer *l)
{
	struct layer_memory *m = (struct layer_memory *)l;
	pthread_mutex_lock(&m->lock);
	clear_all(m);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static int op_stats(struct laurel_layer *l, const char *channel, struct laurel_stats *out)
{
	struct layer_memory *m = (struct layer_memory *)l;
	pthread_mutex_lock(&m->lock);
	if (!channel) {
		out->messages_count = m->messages_count;
		out->channel_full_count = m->channel_full_count;
		out->messages_pending = -1;
		out->messages_max_age = -1;
	} else {
		int64_t now = util_now_ms();
		size_t len = layer_queue_len(channel);
		struct node *n = table_find(&m->stats, channel, len);
		struct counters *c = n ? n->v.p : NULL;
		struct queue *q = queue_find(m, channel, len, now);
		bool live = c && counters_live(c, now);
		out->messages_count = live ? c->messages_count : 0;
		out->channel_full_count = live ? c->channel_full_count : 0;
		out->messages_pending = q ? (int64_t)q->len : 0;
		out->messages_max_age = q && q->head ? (now - q->head->sent_ms) / 1000 : 0;
	}
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static void op_free(struct laurel_layer *l)
{
	struct layer_memory *m = (struct layer_memory *)l;
	clear_all(m);
	table_fini(&m->queues);
	table_fini(&m->groups);
	table_fini(&m->histories);
	table_fini(&m->interfaces);
	table_fini(&m->stats);
	table_fini(&m->kv);
	free(m->sched);
	pthread_condattr_destroy(&m->condattr);
	pthread_mutex_destroy(&m->lock);
	layer_config_fini(&m->base.cfg);
	free(m);
}

static const struct layer_ops memory_ops = {
	.name = "memory",
	.send = op_send,
	.receive = op_receive,
	.new_channel = op_new_channel,
	.group_add = op_group_add,
	.group_discard = op_group_discard,
	.group_members = op_group_members,
	.group_count = op_group_count,
	.group_send = op_group_send,
	.group_history = op_group_history,
	.announce = op_announce,
	.withdraw = op_withdraw,
	.interfaces = op_interfaces,
	.kv_get = op_kv_get,
	.kv_set = op_kv_set,
	.kv_del = op_kv_del,
	.send_many = op_send_many,
	.watch_fd = op_watch_fd,
	.schedule = op_schedule,
	.take_due = op_take_due,
	.flush = op_flush,
	.stats = op_stats,
	.free = op_free,
};

int layer_memory_new(struct laurel_layer **out, struct layer_config *cfg)
{
	struct layer_memory *m = xcalloc(1, sizeof(*m));
	m->base.ops = &memory_ops;
	m->base.cfg = *cfg;
	memset(cfg, 0, sizeof(*cfg));
	pthread_mutex_init(&m->lock, NULL);
	pthread_condattr_init(&m->condattr);
	pthread_condattr_setclock(&m->condattr, CLOCK_MONOTONIC);
	util_rng_init(&m->rng);
	table_init(&m->queues);
	table_init(&m->groups);
	table_init(&m->histories);
	table_init(&m->interfaces);
	table_init(&m->stats);
	table_init(&m->kv);
	*out = &m->base;
	return 0;
}
