/* laurel dashboard (see dashboard.h). One libevent loop: a one-second timer takes the census of
 * the layer (synchronous, bounded by the layer's short timeouts set by the caller: a shard that
 * is down fails at once, or at once during its reconnection backoff) and starts a scrape of
 * every endpoint on evhttp's client (asynchronous, 900 ms timeout); when the last scrape is in,
 * the round becomes one sample of the history. The page asks for the samples it lacks. */
#include "tool/dashboard.h"
#include "common/buf.h"
#include "common/layer_census.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/util.h"
#include "tool/embedded.h"
#include "tool/scrape.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <math.h>
#include <netdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define TICK_MS 1000
#define SCRAPE_TIMEOUT_MS 900
/* Percentiles are taken over the bucket deltas of the last few seconds: one second holds too
 * few requests on a quiet deployment to say much. */
#define PERCENTILE_WINDOW 5
/* Queue names remembered for the history; past this, the names no sample uses any more are
 * forgotten (process channels of interfaces that are gone). */
#define NAMES_MAX 2048

struct endpoint {
	char *url;
	char *host;
	int port;
	char *path;
	char hosthdr[300];
	struct evhttp_connection *conn;
	struct dashboard *d;
	bool busy; /* a scrape is under way */
	bool up;
	bool had; /* prev holds the scrape before this one */
	char error[160];
	enum evhttp_request_error fault;
	bool faulted;
	struct scrape_figures now, prev;
};

struct queue_depth {
	uint32_t name; /* index into dashboard.names */
	int64_t depth;
};

/* One second of the deployment. NAN where there is nothing to say (no endpoint answered). */
struct sample {
	int64_t t_ms; /* unix time */
	double conn_http, conn_ws;
	double ws_in, ws_out, http, worker, worker_failed; /* per second */
	double p50, p90, p99, consumer_p99;		   /* seconds */
	double layer_msgs, full;			   /* per second, from the census */
	double interfaces, processes;
	double shards_up, endpoints_up;
	double lat[SCRAPE_BUCKETS],
		cons[SCRAPE_BUCKETS]; /* this second's bucket deltas (not cumulative) */
	struct queue_depth *q;
	size_t nq;
};

struct dashboard {
	struct event_base *base;
	struct evdns_base *dns;
	struct evhttp *http;
	char *unix_path;
	struct event *tick, *sigint, *sigterm;
	struct laurel_layer *layer;
	struct endpoint *eps;
	size_t neps;
	size_t pending; /* scrapes of this round not yet in */
	struct layer_census census, prev_census;
	bool have_census, have_prev_census;
	int64_t round_ms, prev_round_ms; /* monotonic */
	struct sample *ring;
	size_t cap, head, n; /* ring[head] is the oldest of n */
	char **names;
	size_t nnames;
};

/* --- Scraping ------------------------------------------------------------------------------ */

static void finish_round(struct dashboard *d);

static void scrape_error(enum evhttp_request_error e, void *arg)
{
	struct endpoint *ep = arg;
	ep->fault = e;
	ep->faulted = true;
}

static void mark_down(struct endpoint *ep, const char *why)
{
	ep->up = false;
	ep->had = false;
	snprintf(ep->error, sizeof(ep->error), "%s", why);
}

static void scraped(struct evhttp_request *req, void *arg)
{
	struct endpoint *ep = arg;
	struct dashboard *d = ep->d;
	int code = req ? evhttp_request_get_response_code(req) : 0;
	if (code == 200) {
		struct evbuffer *in = evhttp_request_get_input_buffer(req);
		size_t len = evbuffer_get_length(in);
		const char *text = (const char *)evbuffer_pullup(in, -1);
		ep->prev = ep->now;
		ep->had = ep->up;
		scrape_parse(text ? text : "", len, &ep->now);
		ep->up = true;
		ep->error[0] = '\0';
	} else if (code) {
		char why[64];
		snprintf(why, sizeof(why), "HTTP %d", code);
		mark_down(ep, why);
	} else {
		mark_down(ep, ep->faulted && ep->fault == EVREQ_HTTP_TIMEOUT
				      ? "no answer within 0.9 s"
				      : "connection refused or closed");
	}
	ep->busy = false;
	if (d->pending && --d->pending == 0)
		finish_round(d);
}

static void scrape(struct dashboard *d, struct endpoint *ep)
{
	if (!ep->conn) {
		ep->conn = evhttp_connection_base_new(d->base, d->dns, ep->host,
						      (unsigned short)ep->port);
		struct timeval tv = {0, SCRAPE_TIMEOUT_MS * 1000};
		evhttp_connection_set_timeout_tv(ep->conn, &tv);
		evhttp_connection_set_retries(ep->conn, 0);
	}
	struct evhttp_request *req = evhttp_request_new(scraped, ep);
	evhttp_request_set_error_cb(req, scrape_error);
	ep->faulted = false;
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Host", ep->hosthdr);
	evhttp_add_header(h, "Accept", "text/plain");
	if (evhttp_make_request(ep->conn, req, EVHTTP_REQ_GET, ep->path) < 0) {
		/* The request is freed by libevent on failure. */
		mark_down(ep, "the request could not be made");
		return;
	}
	ep->busy = true;
	d->pending++;
}

/* --- Samples ------------------------------------------------------------------------------ */

static uint32_t intern(struct dashboard *d, const char *name);

static struct sample *ring_at(struct dashboard *d, size_t i)
{
	return &d->ring[(d->head + i) % d->cap];
}

static void finish_round(struct dashboard *d)
{
	struct sample s = {.t_ms = (int64_t)(util_wall_time() * 1000)};
	double dt = d->prev_round_ms ? (double)(d->round_ms - d->prev_round_ms) / 1000 : 0;
	bool any = false, any_rate = false;
	double ws_in = 0, ws_out = 0, http = 0, worker = 0, failed = 0;
	for (size_t i = 0; i < d->neps; i++) {
		struct endpoint *ep = &d->eps[i];
		if (!ep->up)
			continue;
		any = true;
		s.endpoints_up++;
		const struct scrape_figures *f = &ep->now, *p = &ep->prev;
		s.conn_http += f->conn_http;
		s.conn_ws += f->conn_ws;
		s.processes += f->processes;
		if (!ep->had || dt <= 0)
			continue;
		any_rate = true;
		ws_in += scrape_increase(f->ws_in, p->ws_in);
		ws_out += scrape_increase(f->ws_out, p->ws_out);
		http += scrape_increase(f->http_responses, p->http_responses);
		worker += scrape_increase(f->wmsgs, p->wmsgs);
		failed += scrape_increase(f->wfailed, p->wfailed);
		scrape_bucket_deltas(s.lat, f->latency, p->latency);
		scrape_bucket_deltas(s.cons, f->consumer, p->consumer);
	}
	if (!any) {
		s.conn_http = s.conn_ws = s.processes = NAN;
	}
	s.ws_in = any_rate ? ws_in / dt : NAN;
	s.ws_out = any_rate ? ws_out / dt : NAN;
	s.http = any_rate ? http / dt : NAN;
	s.worker = any_rate ? worker / dt : NAN;
	s.worker_failed = any_rate ? failed / dt : NAN;
	/* Percentiles over this second and the PERCENTILE_WINDOW - 1 before it. */
	double lat[SCRAPE_BUCKETS], cons[SCRAPE_BUCKETS];
	memcpy(lat, s.lat, sizeof(lat));
	memcpy(cons, s.cons, sizeof(cons));
	for (size_t k = 1; k < PERCENTILE_WINDOW && k <= d->n; k++) {
		const struct sample *o = ring_at(d, d->n - k);
		for (int i = 0; i < SCRAPE_BUCKETS; i++) {
			lat[i] += o->lat[i];
			cons[i] += o->cons[i];
		}
	}
	s.p50 = scrape_quantile(lat, 0.5);
	s.p90 = scrape_quantile(lat, 0.9);
	s.p99 = scrape_quantile(lat, 0.99);
	s.consumer_p99 = scrape_quantile(cons, 0.99);

	const struct layer_census *c = &d->census;
	s.layer_msgs = s.full = NAN;
	s.interfaces = s.shards_up = NAN;
	if (d->have_census) {
		s.shards_up = (double)c->shards_up;
		if (c->shards_up) {
			s.interfaces = (double)c->interfaces;
			s.q = xcalloc(c->nchannels + 1, sizeof(*s.q));
			for (size_t i = 0; i < c->nchannels; i++)
				if (c->channels[i].queued > 0) {
					s.q[s.nq].name = intern(d, c->channels[i].name);
					s.q[s.nq++].depth = c->channels[i].queued;
				}
		}
		/* A rate only between two censuses of the same shards: a shard that comes or
		 * goes moves the sums by its counters, not by traffic. */
		const struct layer_census *p = &d->prev_census;
		if (d->have_prev_census && dt > 0 && p->shards_up == c->shards_up && c->shards_up) {
			s.layer_msgs = fmax(0, (double)(c->messages - p->messages)) / dt;
			s.full = fmax(0, (double)(c->full - p->full)) / dt;
		}
	}
	if (d->n == d->cap) {
		free(ring_at(d, 0)->q);
		d->head = (d->head + 1) % d->cap;
		d->n--;
	}
	*ring_at(d, d->n) = s;
	d->n++;
}

/* Queue names by index, so that a sample stores numbers. */
static uint32_t intern(struct dashboard *d, const char *name)
{
	for (size_t i = 0; i < d->nnames; i++)
		if (strcmp(d->names[i], name) == 0)
			return (uint32_t)i;
	if (d->nnames == NAMES_MAX) {
		/* Forget the names no sample holds any more, renumbering the rest. */
		uint32_t *map = xmalloc(NAMES_MAX * sizeof(*map));
		bool *used = xcalloc(NAMES_MAX, sizeof(*used));
		for (size_t k = 0; k < d->n; k++)
			for (size_t j = 0; j < ring_at(d, k)->nq; j++)
				used[ring_at(d, k)->q[j].name] = true;
		size_t kept = 0;
		for (size_t i = 0; i < d->nnames; i++) {
			if (used[i]) {
				map[i] = (uint32_t)kept;
				d->names[kept++] = d->names[i];
			} else {
				free(d->names[i]);
			}
		}
		d->nnames = kept;
		for (size_t k = 0; k < d->n; k++)
			for (size_t j = 0; j < ring_at(d, k)->nq; j++)
				ring_at(d, k)->q[j].name = map[ring_at(d, k)->q[j].name];
		free(map);
		free(used);
		if (d->nnames == NAMES_MAX) /* every name in use: the history keeps them */
			return (uint32_t)(NAMES_MAX - 1);
	}
	d->names[d->nnames] = xstrdup(name);
	return (uint32_t)d->nnames++;
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
	struct dashboard *d = arg;
	if (d->pending) {
		/* A scrape still out after a whole second (its timeout did not fire): close the
		 * round without it. */
		for (size_t i = 0; i < d->neps; i++)
			if (d->eps[i].busy) {
				mark_down(&d->eps[i], "no answer within 1 s");
				evhttp_connection_free(d->eps[i].conn);
				d->eps[i].conn = NULL;
				d->eps[i].busy = false;
			}
		d->pending = 0;
		finish_round(d);
	}
	layer_census_fini(&d->prev_census);
	d->prev_census = d->census;
	d->have_prev_census = d->have_census;
	memset(&d->census, 0, sizeof(d->census));
	struct layer_census_options o = {0};
	d->have_census = layer_census_take(d->layer, &o, &d->census) == 0;
	d->prev_round_ms = d->round_ms;
	d->round_ms = util_now_ms();
	for (size_t i = 0; i < d->neps; i++)
		scrape(d, &d->eps[i]);
	if (!d->pending)
		finish_round(d);
}

/* --- JSON ---------------------------------------------------------------------------------- */

static void json_str(struct buf *b, const char *s)
{
	buf_append_byte(b, '"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			buf_printf(b, "\\%c", ch);
		else if (ch < 0x20)
			buf_printf(b, "\\u%04x", ch);
		else
			buf_append_byte(b, ch);
	}
	buf_append_byte(b, '"');
}

static void json_num(struct buf *b, double v)
{
	if (isfinite(v))
		buf_printf(b, "%.6g", v);
	else
		buf_append_str(b, "null");
}

/* One series of the samples from index first on: "name":[v,...]. */
static void json_series(struct buf *b, struct dashboard *d, size_t first, const char *name,
			size_t offset)
{
	buf_printf(b, "\"%s\":[", name);
	for (size_t i = first; i < d->n; i++) {
		if (i > first)
			buf_append_byte(b, ',');
		json_num(b, *(const double *)((const char *)ring_at(d, i) + offset));
	}
	buf_append_byte(b, ']');
}

static void write_state(struct dashboard *d, int64_t since, struct buf *b)
{
	size_t first = 0;
	while (first < d->n && ring_at(d, first)->t_ms <= since)
		first++;
	const struct layer_census *c = &d->census;
	buf_printf(b, "{\"now\":%lld,\"interval_ms\":%d,\"history\":%zu,\"layer\":{\"ok\":%s,",
		   (long long)(util_wall_time() * 1000), TICK_MS, d->cap,
		   d->have_census ? "true" : "false");
	buf_printf(b,
		   "\"interfaces\":%lld,\"messages\":%lld,\"full\":%lld,"
		   "\"control_dropped\":%lld,\"channels_seen\":%zu,\"census_ms\":",
		   (long long)c->interfaces, (long long)c->messages, (long long)c->full,
		   (long long)c->control_dropped, c->channels_seen);
	json_num(b, c->seconds * 1000);
	buf_append_str(b, ",\"shards\":[");
	for (size_t i = 0; i < c->nshards; i++) {
		buf_printf(b, "%s{\"url\":", i ? "," : "");
		json_str(b, c->shards[i].url);
		buf_printf(b, ",\"up\":%s,\"error\":", c->shards[i].up ? "true" : "false");
		json_str(b, c->shards[i].error ? c->shards[i].error : "");
		buf_append_byte(b, '}');
	}
	buf_append_str(b, "],\"channels\":[");
	for (size_t i = 0; i < c->nchannels; i++) {
		const struct layer_census_entry *e = &c->channels[i];
		buf_printf(b, "%s{\"name\":", i ? "," : "");
		json_str(b, e->name);
		buf_printf(b, ",\"queued\":%lld,\"messages\":%lld,\"full\":%lld}",
			   (long long)e->queued, (long long)e->messages, (long long)e->full);
	}
	buf_append_str(b, "]},\"endpoints\":[");
	for (size_t i = 0; i < d->neps; i++) {
		const struct endpoint *ep = &d->eps[i];
		const char *kind = ep->now.interface && ep->now.worker ? "interface+worker"
				   : ep->now.interface		       ? "interface"
				   : ep->now.worker		       ? "worker"
								       : "unknown";
		buf_printf(b, "%s{\"url\":", i ? "," : "");
		json_str(b, ep->url);
		buf_printf(b, ",\"up\":%s,\"kind\":\"%s\",\"ready\":", ep->up ? "true" : "false",
			   ep->up ? kind : "unknown");
		json_num(b, ep->up && ep->now.ready >= 0 ? ep->now.ready : NAN);
		buf_append_str(b, ",\"error\":");
		json_str(b, ep->error);
		buf_append_byte(b, '}');
	}
	buf_append_str(b, "],\"series\":{\"t\":[");
	for (size_t i = first; i < d->n; i++)
		buf_printf(b, "%s%lld", i > first ? "," : "", (long long)ring_at(d, i)->t_ms);
	buf_append_str(b, "],");
#define SERIES(field) json_series(b, d, first, #field, offsetof(struct sample, field))
	SERIES(conn_http);
	buf_append_byte(b, ',');
	SERIES(conn_ws);
	buf_append_byte(b, ',');
	SERIES(ws_in);
	buf_append_byte(b, ',');
	SERIES(ws_out);
	buf_append_byte(b, ',');
	SERIES(http);
	buf_append_byte(b, ',');
	SERIES(worker);
	buf_append_byte(b, ',');
	SERIES(worker_failed);
	buf_append_byte(b, ',');
	SERIES(p50);
	buf_append_byte(b, ',');
	SERIES(p90);
	buf_append_byte(b, ',');
	SERIES(p99);
	buf_append_byte(b, ',');
	SERIES(consumer_p99);
	buf_append_byte(b, ',');
	SERIES(layer_msgs);
	buf_append_byte(b, ',');
	SERIES(full);
	buf_append_byte(b, ',');
	SERIES(interfaces);
	buf_append_byte(b, ',');
	SERIES(processes);
	buf_append_byte(b, ',');
	SERIES(shards_up);
	buf_append_byte(b, ',');
	SERIES(endpoints_up);
#undef SERIES
	/* Queue depths: one array per channel that had messages waiting in these samples, 0
	 * where it had none. */
	buf_append_str(b, "},\"queues\":{");
	bool *seen = xcalloc(d->nnames + 1, sizeof(*seen));
	for (size_t i = first; i < d->n; i++)
		for (size_t j = 0; j < ring_at(d, i)->nq; j++)
			seen[ring_at(d, i)->q[j].name] = true;
	bool comma = false;
	for (size_t k = 0; k < d->nnames; k++) {
		if (!seen[k])
			continue;
		buf_append_str(b, comma ? "," : "");
		comma = true;
		json_str(b, d->names[k]);
		buf_append_str(b, ":[");
		for (size_t i = first; i < d->n; i++) {
			const struct sample *s = ring_at(d, i);
			int64_t depth = 0;
			for (size_t j = 0; j < s->nq; j++)
				if (s->q[j].name == k)
					depth = s->q[j].depth;
			buf_printf(b, "%s%lld", i > first ? "," : "", (long long)depth);
		}
		buf_append_byte(b, ']');
	}
	free(seen);
	buf_append_str(b, "}}\n");
}

/* --- HTTP ---------------------------------------------------------------------------------- */

static void reply(struct evhttp_request *req, int code, const char *reason, const char *type,
		  const void *data, size_t len)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	/* Everything the page needs is served from here: no script, style or image from
	 * elsewhere. */
	evhttp_add_header(h, "Content-Security-Policy",
			  "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'");
	struct evbuffer *b = evbuffer_new();
	evbuffer_add(b, data, len);
	evhttp_send_reply(req, code, reason, b);
	evbuffer_free(b);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct dashboard *d = arg;
	const char *uri = evhttp_request_get_uri(req);
	const char *qs = strchr(uri, '?');
	size_t n = qs ? (size_t)(qs - uri) : strlen(uri);
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		reply(req, 405, "Method Not Allowed", "text/plain", "GET only\n", 9);
		return;
	}
	if (n == 10 && memcmp(uri, "/api/state", 10) == 0) {
		int64_t since = 0;
		const char *s = qs ? strstr(qs, "since=") : NULL;
		if (s)
			since = strtoll(s + 6, NULL, 10);
		struct buf b;
		buf_init(&b);
		write_state(d, since, &b);
		reply(req, 200, "OK", "application/json", b.data, b.len);
		buf_fini(&b);
		return;
	}
	if (n == 8 && memcmp(uri, "/metrics", 8) == 0) {
		struct buf b;
		buf_init(&b);
		if (d->have_census)
			layer_census_prometheus(&d->census, &b);
		reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8",
		      b.data ? b.data : "", b.len);
		buf_fini(&b);
		return;
	}
	for (unsigned i = 0; i < embedded_files_count; i++) {
		const struct embedded_file *f = &embedded_files[i];
		if (strlen(f->path) == n && memcmp(uri, f->path, n) == 0) {
			reply(req, 200, "OK", f->type, f->data, f->len);
			return;
		}
	}
	reply(req, 404, "Not Found", "text/plain", "not found\n", 10);
}

/* --- Start and stop ------------------------------------------------------------------------ */

static int parse_scrape(struct endpoint *ep, const char *url, char *err, size_t errlen)
{
	struct evhttp_uri *u = evhttp_uri_parse(url);
	const char *scheme = u ? evhttp_uri_get_scheme(u) : NULL;
	const char *host = u ? evhttp_uri_get_host(u) : NULL;
	int rc = -1;
	if (!u || !scheme || strcmp(scheme, "http") != 0)
		snprintf(err, errlen,
			 "bad --scrape URL \"%s\": give http://HOST:PORT[/PATH] (an interface's or "
			 "a worker pool's --metrics address)",
			 url);
	else if (!host || !*host)
		snprintf(err, errlen, "bad --scrape URL \"%s\": no host", url);
	else if (evhttp_uri_get_userinfo(u) || evhttp_uri_get_fragment(u))
		snprintf(err, errlen, "bad --scrape URL \"%s\": no user or fragment, please", url);
	else
		rc = 0;
	if (rc == 0 && ep) {
		int port = evhttp_uri_get_port(u);
		const char *path = evhttp_uri_get_path(u), *query = evhttp_uri_get_query(u);
		ep->url = xstrdup(url);
		ep->host = xstrdup(host);
		ep->port = port > 0 ? port : 80;
		struct buf p;
		buf_init(&p);
		buf_append_str(&p, path && *path ? path : "/metrics");
		if (query)
			buf_printf(&p, "?%s", query);
		ep->path = xstrdup(p.data);
		buf_fini(&p);
		snprintf(ep->hosthdr, sizeof(ep->hosthdr), strchr(host, ':') ? "[%s]:%d" : "%s:%d",
			 host, ep->port);
		ep->now.ready = ep->prev.ready = -1;
	}
	evhttp_uri_free(u);
	return rc;
}

int dashboard_check(const struct dashboard_options *o, char *err, size_t errlen)
{
	for (size_t i = 0; i < o->nscrape; i++)
		if (parse_scrape(NULL, o->scrape[i], err, errlen) < 0)
			return -1;
	if (!o->listen || !*o->listen) {
		snprintf(err, errlen,
			 "dashboard needs --listen ADDR (host:port or a unix socket "
			 "path)");
		return -1;
	}
	return 0;
}

static int bind_listener(struct dashboard *d, const char *addr, char *err, size_t errlen)
{
	if (addr[0] == '/') {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		if (strlen(addr) >= sizeof(sa.sun_path)) {
			snprintf(err, errlen, "--listen: socket path too long: %s", addr);
			return -1;
		}
		strcpy(sa.sun_path, addr);
		unlink(addr);
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    listen(fd, 64) < 0 || !evhttp_accept_socket_with_handle(d->http, fd)) {
			snprintf(err, errlen, "--listen: cannot listen on %s: %s", addr,
				 strerror(errno));
			if (fd >= 0)
				close(fd);
			return -1;
		}
		d->unix_path = xstrdup(addr);
		return 0;
	}
	const char *colon = strrchr(addr, ':');
	char host[256];
	char *end;
	long port = colon ? strtol(colon + 1, &end, 10) : -1;
	if (!colon || colon == addr || !colon[1] || *end || port < 0 || port > 65535 ||
	    (size_t)(colon - addr) >= sizeof(host)) {
		snprintf(err, errlen,
			 "--listen: bad address \"%s\": give HOST:PORT, [IPV6]:PORT or a unix "
			 "socket path starting with /",
			 addr);
		return -1;
	}
	size_t hl = (size_t)(colon - addr);
	if (addr[0] == '[' && hl >= 2 && addr[hl - 1] == ']')
		snprintf(host, sizeof(host), "%.*s", (int)hl - 2, addr + 1);
	else
		snprintf(host, sizeof(host), "%.*s", (int)hl, addr);
	/* Resolved and bound here rather than by evhttp, so that the message says what failed. */
	char service[8];
	snprintf(service, sizeof(service), "%ld", port);
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
			*res = NULL;
	int gai = getaddrinfo(host, service, &hints, &res);
	if (gai != 0) {
		snprintf(err, errlen, "--listen: cannot resolve %s: %s", host, gai_strerror(gai));
		return -1;
	}
	int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int on = 1;
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 64) < 0 ||
	    !evhttp_accept_socket_with_handle(d->http, fd)) {
		snprintf(err, errlen, "--listen: cannot listen on %s: %s", addr, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	return 0;
}

/* libevent's own diagnostics (a failed connection of a scrape, ...) go to laurel's log: the
 * page says what is down, so they are debug detail. */
static void libevent_log(int severity, const char *msg)
{
	log_debug("libevent: %s", msg);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	event_base_loopbreak(arg);
}

static void dashboard_free(struct dashboard *d)
{
	for (size_t i = 0; i < d->neps; i++) {
		struct endpoint *ep = &d->eps[i];
		if (ep->conn)
			evhttp_connection_free(ep->conn);
		free(ep->url);
		free(ep->host);
		free(ep->path);
	}
	free(d->eps);
	if (d->http)
		evhttp_free(d->http);
	if (d->unix_path) {
		unlink(d->unix_path);
		free(d->unix_path);
	}
	if (d->tick)
		event_free(d->tick);
	if (d->sigint)
		event_free(d->sigint);
	if (d->sigterm)
		event_free(d->sigterm);
	if (d->dns)
		evdns_base_free(d->dns, 0);
	if (d->base)
		event_base_free(d->base);
	for (size_t i = 0; i < d->n; i++)
		free(ring_at(d, i)->q);
	free(d->ring);
	for (size_t i = 0; i < d->nnames; i++)
		free(d->names[i]);
	free(d->names);
	layer_census_fini(&d->census);
	layer_census_fini(&d->prev_census);
}

int dashboard_run(struct laurel_layer *layer, const struct dashboard_options *o, char *err,
		  size_t errlen)
{
	struct dashboard d = {.layer = layer};
	int rc = -1;
	if (dashboard_check(o, err, errlen) < 0)
		return -1;
	event_set_log_callback(libevent_log);
	d.base = event_base_new();
	/* Names in --scrape are resolved without blocking the loop (no nameserver: numbers
	 * only). */
	d.dns = evdns_base_new(d.base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (!d.dns)
		d.dns = evdns_base_new(d.base, 0);
	d.http = evhttp_new(d.base);
	evhttp_set_allowed_methods(d.http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST);
	evhttp_set_gencb(d.http, on_request, &d);
	d.eps = xcalloc(o->nscrape + 1, sizeof(*d.eps));
	for (size_t i = 0; i < o->nscrape; i++) {
		d.eps[i].d = &d;
		if (parse_scrape(&d.eps[d.neps++], o->scrape[i], err, errlen) < 0)
			goto fail;
	}
	if (bind_listener(&d, o->listen, err, errlen) < 0)
		goto fail;
	d.cap = (size_t)o->history_s;
	d.ring = xcalloc(d.cap, sizeof(*d.ring));
	d.names = xcalloc(NAMES_MAX, sizeof(*d.names));
	signal(SIGPIPE, SIG_IGN);
	d.sigint = evsignal_new(d.base, SIGINT, on_signal, d.base);
	d.sigterm = evsignal_new(d.base, SIGTERM, on_signal, d.base);
	event_add(d.sigint, NULL);
	event_add(d.sigterm, NULL);
	d.tick = event_new(d.base, -1, EV_PERSIST, tick, &d);
	struct timeval tv = {TICK_MS / 1000, (TICK_MS % 1000) * 1000};
	event_add(d.tick, &tv);
	fprintf(stderr, "laurel: dashboard on %s%s%s\n", o->listen[0] == '/' ? "unix:" : "http://",
		o->listen, o->listen[0] == '/' ? "" : "/");
	tick(-1, 0, &d); /* the first sample at once */
	event_base_dispatch(d.base);
	rc = 0;
fail:
	dashboard_free(&d);
	return rc;
}
