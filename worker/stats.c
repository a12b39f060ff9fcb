/* A worker's counters and their Prometheus families (see stats.h). */
#include "worker/stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/util.h"

static const double batch_bounds[WSTATS_BATCH_BUCKETS] = {1,  2,   4,   8,   16,  32,
							  64, 128, 256, 512, 1000};

struct wstats *wstats_new(size_t nprocs, bool shared)
{
	size_t size = sizeof(struct wstats) + nprocs * sizeof(struct wstats_proc);
	struct wstats *t;
	if (shared) {
		t = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (t == MAP_FAILED)
			return NULL;
	} else {
		t = xcalloc(1, size);
	}
	t->nprocs = nprocs;
	t->shared = shared;
	pthread_mutex_init(&t->lock, NULL);
	return t;
}

void wstats_free(struct wstats *t)
{
	if (!t)
		return;
	pthread_mutex_destroy(&t->lock);
	if (t->shared)
		munmap(t, sizeof(struct wstats) + t->nprocs * sizeof(struct wstats_proc));
	else
		free(t);
}

struct wstats_proc *wstats_claim(struct wstats *t, int slot)
{
	for (size_t i = 0; i < t->nprocs; i++)
		if (t->procs[i].pid == 0) {
			struct wstats_proc *p = &t->procs[i];
			memset(p, 0, sizeof(*p));
			p->pid = -1; /* taken; the parent writes the pid after fork */
			p->slot = slot;
			return p;
		}
	return NULL;
}

static void add(struct wstats_proc *a, const struct wstats_proc *b)
{
	for (size_t i = 0; i < WSTATS_NAMES; i++) {
		for (size_t r = 0; r < WSTATS_RESULTS; r++) {
			a->channel[i][r] += b->channel[i][r];
			a->route[i][r] += b->route[i][r];
		}
		metrics_histogram_add(&a->run[i], &b->run[i]);
	}
	for (size_t i = 0; i < WSTATS_BATCH_BUCKETS; i++)
		a->batch[i] += b->batch[i];
	a->batches += b->batches;
	a->batch_messages += b->batch_messages;
	a->receive_errors += b->receive_errors;
	for (size_t k = 0; k < 2; k++) {
		a->held_ok[k] += b->held_ok[k];
		a->held_dropped[k] += b->held_dropped[k];
	}
	a->held_waited += b->held_waited;
	a->delayed_accepted += b->delayed_accepted;
	a->delayed_sent += b->delayed_sent;
	a->delayed_rejected += b->delayed_rejected;
}

void wstats_retire(struct wstats *t, struct wstats_proc *p)
{
	pthread_mutex_lock(&t->lock);
	add(&t->retired, p);
	memset(p, 0, sizeof(*p));
	pthread_mutex_unlock(&t->lock);
}

int wstats_name(struct wstats_name *table, const char *name)
{
	for (int i = 0; i < WSTATS_NAMES - 1; i++) {
		uint32_t st = __atomic_load_n(&table[i].state, __ATOMIC_ACQUIRE);
		if (st == 2 && strcmp(table[i].name, name) == 0)
			return i;
		if (st != 0)
			continue;
		uint32_t free_ = 0;
		if (__atomic_compare_exchange_n(&table[i].state, &free_, 1, false, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE)) {
			snprintf(table[i].name, sizeof(table[i].name), "%s", name);
			__atomic_store_n(&table[i].state, 2, __ATOMIC_RELEASE);
			return i;
		}
		if (__atomic_load_n(&table[i].state, __ATOMIC_ACQUIRE) == 2 &&
		    strcmp(table[i].name, name) == 0)
			return i;
	}
	return WSTATS_NAMES - 1;
}

void wstats_batch(struct wstats_proc *p, size_t n)
{
	size_t i = 0;
	while (i < WSTATS_BATCH_BUCKETS - 1 && batch_bounds[i] < (double)n)
		i++;
	if ((double)n <= batch_bounds[i])
		p->batch[i]++;
	p->batches++;
	p->batch_messages += n;
}

/* --- Reading ----------------------------------------------------------------------------------
 * The records are read while their owners write them: a figure may be one message behind
 * another, never torn (aligned 64-bit words). */

static bool live(const struct wstats_proc *p)
{
	return p->pid > 0;
}

const char *wstats_not_ready(const struct wstats *t, int64_t now_ms, char *buf, size_t size)
{
	if (t->stopping)
		return "stopping";
	int want = t->processes > 0 ? t->processes : 1, receiving = 0, down = 0;
	for (size_t i = 0; i < t->nprocs; i++) {
		const struct wstats_proc *p = &t->procs[i];
		if (!live(p))
			continue;
		int64_t turned = p->turned_ms;
		if (p->layer_down)
			down++;
		else if (turned && now_ms - turned <= WSTATS_READY_MS)
			receiving++;
	}
	if (receiving >= want)
		return NULL;
	if (down)
		snprintf(buf, size,
			 "%d of %d worker processes are receiving: the channel layer is "
			 "unreachable",
			 receiving, want);
	else
		snprintf(buf, size,
			 "%d of %d worker processes are receiving (starting, restarting, or a "
			 "consumer running longer than %d s)",
			 receiving, want, WSTATS_READY_MS / 1000);
	return buf;
}

/* Label values of a name table: entries with one name are summed under the first. */
static int canonical(const struct wstats_name *table, int i)
{
	if (i == WSTATS_NAMES - 1 || table[i].state != 2)
		return i;
	for (int j = 0; j < i; j++)
		if (table[j].state == 2 && strcmp(table[j].name, table[i].name) == 0)
			return j;
	return i;
}

static const char *name_of(const struct wstats_name *table, int i)
{
	return i == WSTATS_NAMES - 1 ? "other" : table[i].name;
}

/* A label value: a route's name is the C expression its table names ("&chat_ws" for a
 * WebSocket consumer); the '&' goes. Quotes and backslashes are escaped. */
static void label_value(char *out, size_t size, const char *name)
{
	if (name[0] == '&')
		name++;
	size_t o = 0;
	for (; *name && o + 3 < size; name++) {
		if (*name == '"' || *name == '\\')
			out[o++] = '\\';
		out[o++] = *name == '\n' ? ' ' : *name;
	}
	out[o] = '\0';
}

static const char *const result_names[WSTATS_RESULTS] = {"ok", "failed", "consume_later",
							 "dropped", "waiting"};

/* Whether entry i of a table is written as a label of its own (a ready name seen first, or
 * "other"), and whether j belongs to it. */
static bool leads(const struct wstats_name *table, int i)
{
	return i == WSTATS_NAMES - 1 || (table[i].state == 2 && canonical(table, i) == i);
}

static bool belongs(const struct wstats_name *table, int j, int i)
{
	if (i == WSTATS_NAMES - 1)
		return j == i;
	return j != WSTATS_NAMES - 1 && table[j].state == 2 && canonical(table, j) == i;
}

static void by_name_and_result(struct buf *out, const char *metric, const char *label,
			       const struct wstats_name *table,
			       const uint64_t (*counts)[WSTATS_RESULTS])
{
	for (int i = 0; i < WSTATS_NAMES; i++) {
		if (!leads(table, i))
			continue;
		uint64_t sum[WSTATS_RESULTS] = {0};
		bool any = false;
		for (int j = i; j < WSTATS_NAMES; j++)
			if (belongs(table, j, i))
				for (int r = 0; r < WSTATS_RESULTS; r++) {
					sum[r] += counts[j][r];
					any |= counts[j][r] != 0;
				}
		if (i == WSTATS_NAMES - 1 && !any)
			continue;
		char v[2 * LAUREL_NAME_MAX + 8], l[2 * LAUREL_NAME_MAX + 64];
		label_value(v, sizeof(v), name_of(table, i));
		for (int r = 0; r < WSTATS_RESULTS; r++) {
			snprintf(l, sizeof(l), "%s=\"%s\",result=\"%s\"", label, v, result_names[r]);
			metrics_sample_u64(out, metric, l, sum[r]);
		}
	}
}

#define COUNTER(name, help, value)                                                                \
	do {                                                                                       \
		metrics_family(out, name, "counter", help);                                        \
		metrics_sample_u64(out, name, NULL, value);                                        \
	} while (0)
#define GAUGE(name, help, value)                                                                  \
	do {                                                                                       \
		metrics_family(out, name, "gauge", help);                                          \
		metrics_sample(out, name, NULL, (double)(value));                                  \
	} while (0)

void wstats_write(struct wstats *t, struct buf *out, int64_t now_ms)
{
	/* One sum of every record, live and retired. */
	struct wstats_proc *all = xcalloc(1, sizeof(*all));
	pthread_mutex_lock(&t->lock);
	add(all, &t->retired);
	int live_n = 0, delay_n = 0;
	uint64_t carried = 0;
	for (size_t i = 0; i < t->nprocs; i++) {
		const struct wstats_proc *p = &t->procs[i];
		if (!live(p))
			continue;
		live_n++;
		delay_n += p->delay;
		carried += p->held_carried;
		add(all, p);
	}
	pthread_mutex_unlock(&t->lock);
	GAUGE("laurel_worker_processes", "Worker processes running (threads, in runserver).",
	      live_n);
	COUNTER("laurel_worker_process_restarts_total",
		"Worker processes that died unexpectedly and were started again.", t->restarts);
	metrics_family(out, "laurel_worker_messages_total", "counter",
		       "Messages taken off the channels, by channel and by what became of them.");
	by_name_and_result(out, "laurel_worker_messages_total", "channel", t->channels,
			   (const uint64_t(*)[WSTATS_RESULTS])all->channel);
	metrics_family(out, "laurel_worker_route_messages_total", "counter",
		       "Messages a route matched, by route (its consumer) and result.");
	by_name_and_result(out, "laurel_worker_route_messages_total", "route", t->routes,
			   (const uint64_t(*)[WSTATS_RESULTS])all->route);
	metrics_family(out, "laurel_worker_consumer_seconds", "histogram",
		       "How long a route's consumer ran (its session load included).");
	for (int i = 0; i < WSTATS_NAMES; i++) {
		if (!leads(t->routes, i))
			continue;
		struct metrics_histogram h = {0};
		for (int j = i; j < WSTATS_NAMES; j++)
			if (belongs(t->routes, j, i))
				metrics_histogram_add(&h, &all->run[j]);
		if (i == WSTATS_NAMES - 1 && h.count == 0)
			continue;
		char v[2 * LAUREL_NAME_MAX + 8], l[2 * LAUREL_NAME_MAX + 32];
		label_value(v, sizeof(v), name_of(t->routes, i));
		snprintf(l, sizeof(l), "route=\"%s\"", v);
		metrics_histogram(out, "laurel_worker_consumer_seconds", l, &h);
	}
	metrics_family(out, "laurel_worker_batch_messages", "histogram",
		       "Messages taken off the layer in one receive.");
	metrics_histogram_bounds(out, "laurel_worker_batch_messages", NULL, batch_bounds,
				 all->batch, WSTATS_BATCH_BUCKETS, all->batches,
				 (double)all->batch_messages);
	static const char *const kinds[2] = {"channel", "group"};
	metrics_family(out, "laurel_worker_held_sends_total", "counter",
		       "Consumers' sends, made once the consumer returned, by target kind and "
		       "result.");
	for (int k = 0; k < 2; k++) {
		char l[64];
		snprintf(l, sizeof(l), "kind=\"%s\",result=\"ok\"", kinds[k]);
		metrics_sample_u64(out, "laurel_worker_held_sends_total", l, all->held_ok[k]);
		snprintf(l, sizeof(l), "kind=\"%s\",result=\"dropped\"", kinds[k]);
		metrics_sample_u64(out, "laurel_worker_held_sends_total", l, all->held_dropped[k]);
	}
	COUNTER("laurel_worker_held_sends_waited_total",
		"Held sends that waited for a full channel or an unreachable server.",
		all->held_waited);
	GAUGE("laurel_worker_held_sends_carried",
	      "Held sends kept for the next flush (a full channel the process reads itself).",
	      carried);
	COUNTER("laurel_worker_receive_errors_total",
		"Receives from the channel layer that failed (an outage counts each retry).",
		all->receive_errors);
	if (delay_n || all->delayed_accepted || all->delayed_sent) {
		COUNTER("laurel_worker_delayed_accepted_total",
			"Messages asgi.delay accepted to send later.", all->delayed_accepted);
		COUNTER("laurel_worker_delayed_rejected_total",
			"Messages asgi.delay refused (malformed).", all->delayed_rejected);
		COUNTER("laurel_worker_delayed_sent_total",
			"Delayed messages sent to their channel when due.", all->delayed_sent);
	}
	char why[256];
	GAUGE("laurel_worker_ready", "1 if /readyz says ready.",
	      wstats_not_ready(t, now_ms, why, sizeof(why)) ? 0 : 1);
	free(all);
}
