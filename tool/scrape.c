/* The Prometheus text format, read (see scrape.h). */
#include "tool/scrape.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The value of label key in labels (the text between the braces), unescaped into out. */
static bool label_value(const char *labels, size_t len, const char *key, char *out, size_t size)
{
	const char *p = labels, *end = labels + len;
	size_t klen = strlen(key);
	while (p < end) {
		while (p < end && (*p == ',' || *p == ' '))
			p++;
		const char *k = p;
		while (p < end && *p != '=')
			p++;
		bool match = (size_t)(p - k) == klen && memcmp(k, key, klen) == 0;
		if (p + 1 >= end || p[1] != '"')
			return false;
		p += 2;
		size_t n = 0;
		while (p < end && *p != '"') {
			char ch = *p++;
			if (ch == '\\' && p < end) {
				ch = *p++;
				if (ch == 'n')
					ch = '\n';
			}
			if (match && n + 1 < size)
				out[n++] = ch;
		}
		if (p < end)
			p++; /* the closing quote */
		if (match) {
			out[n] = '\0';
			return true;
		}
	}
	return false;
}

static bool label_is(const char *labels, size_t len, const char *key, const char *want)
{
	char v[64];
	return label_value(labels, len, key, v, sizeof(v)) && strcmp(v, want) == 0;
}

/* The bucket index of an "le" value: one of metrics_bucket_bounds, or +Inf; -1 for another
 * bound (a histogram with buckets of its own is not read). */
static int bucket_of(const char *labels, size_t len)
{
	char le[64];
	if (!label_value(labels, len, "le", le, sizeof(le)))
		return -1;
	double b = strtod(le, NULL);
	if (isinf(b))
		return METRICS_BUCKETS;
	for (int i = 0; i < METRICS_BUCKETS; i++)
		if (fabs(b - metrics_bucket_bounds[i]) <= 1e-9 * metrics_bucket_bounds[i])
			return i;
	return -1;
}

static bool is(const char *name, size_t n, const char *want)
{
	return strlen(want) == n && memcmp(name, want, n) == 0;
}

/* Takes one sample line into f. */
static void absorb(struct scrape_figures *f, const char *name, size_t n, const char *labels,
		   size_t ll, double v)
{
	if (n > 17 && memcmp(name, "laurel_interface_", 17) == 0)
		f->interface = true;
	if (n > 14 && memcmp(name, "laurel_worker_", 14) == 0)
		f->worker = true;
	if (is(name, n, "laurel_interface_connections")) {
		if (label_is(labels, ll, "kind", "http"))
			f->conn_http += v;
		else if (label_is(labels, ll, "kind", "websocket"))
			f->conn_ws += v;
	} else if (is(name, n, "laurel_interface_http_responses_total")) {
		f->http_responses += v;
	} else if (is(name, n, "laurel_interface_websocket_messages_total")) {
		if (label_is(labels, ll, "direction", "in"))
			f->ws_in += v;
		else if (label_is(labels, ll, "direction", "out"))
			f->ws_out += v;
	} else if (is(name, n, "laurel_interface_layer_sends_total")) {
		if (label_is(labels, ll, "result", "full"))
			f->sends_full += v;
	} else if (is(name, n, "laurel_interface_http_request_duration_seconds_bucket")) {
		int b = bucket_of(labels, ll);
		if (b >= 0)
			f->latency[b] += v;
	} else if (is(name, n, "laurel_interface_ready") || is(name, n, "laurel_worker_ready")) {
		f->ready = f->ready < 0 ? v : fmin(f->ready, v);
	} else if (is(name, n, "laurel_worker_processes")) {
		f->processes += v;
	} else if (is(name, n, "laurel_worker_process_restarts_total")) {
		f->restarts += v;
	} else if (is(name, n, "laurel_worker_messages_total")) {
		f->wmsgs += v;
		if (label_is(labels, ll, "result", "failed") ||
		    label_is(labels, ll, "result", "dropped"))
			f->wfailed += v;
	} else if (is(name, n, "laurel_worker_consumer_seconds_bucket")) {
		int b = bucket_of(labels, ll); /* summed over the routes */
		if (b >= 0)
			f->consumer[b] += v;
	}
}

void scrape_parse(const char *text, size_t len, struct scrape_figures *f)
{
	memset(f, 0, sizeof(*f));
	f->ready = -1;
	const char *p = text, *end = text + len;
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			eol = end;
		const char *q = p;
		while (q < eol && (*q == '_' || *q == ':' || (*q >= 'a' && *q <= 'z') ||
				   (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9')))
			q++;
		const char *name = p, *labels = "";
		size_t n = (size_t)(q - p), ll = 0;
		if (n && *p != '#' && q < eol) {
			if (*q == '{') {
				labels = q + 1;
				bool quoted = false;
				for (q++; q < eol && (quoted || *q != '}'); q++) {
					if (*q == '\\' && q + 1 < eol)
						q++;
					else if (*q == '"')
						quoted = !quoted;
				}
				if (q == eol) { /* no closing brace: not a sample */
					p = eol < end ? eol + 1 : end;
					continue;
				}
				ll = (size_t)(q - labels);
				q++;
			}
			if (q < eol && *q == ' ') {
				char num[64];
				size_t k = 0;
				for (q++; q < eol && *q != ' ' && k + 1 < sizeof(num); q++)
					num[k++] = *q;
				num[k] = '\0';
				char *e;
				double v = strtod(num, &e);
				if (k && *e == '\0')
					absorb(f, name, n, labels, ll, v);
			}
		}
		p = eol < end ? eol + 1 : end;
	}
}

double scrape_quantile(const double *b, double q)
{
	double total = 0;
	for (int i = 0; i < SCRAPE_BUCKETS; i++)
		total += b[i];
	if (total <= 0)
		return NAN;
	double rank = q * total, cum = 0;
	for (int i = 0; i < METRICS_BUCKETS; i++) {
		if (cum + b[i] >= rank && b[i] > 0) {
			double lo = i ? metrics_bucket_bounds[i - 1] : 0,
			       hi = metrics_bucket_bounds[i];
			return lo + (hi - lo) * (rank - cum) / b[i];
		}
		cum += b[i];
	}
	return metrics_bucket_bounds[METRICS_BUCKETS - 1]; /* in +Inf: the highest known bound */
}

double scrape_increase(double now, double prev)
{
	return now >= prev ? now - prev : now;
}

void scrape_bucket_deltas(double *out, const double *now, const double *prev)
{
	double before = 0, before_prev = 0;
	for (int i = 0; i < SCRAPE_BUCKETS; i++) {
		double own = now[i] - before, own_prev = prev[i] - before_prev;
		before = now[i];
		before_prev = prev[i];
		out[i] += scrape_increase(own, own_prev);
	}
}
