/* Prometheus text exposition (see metrics.h). */
#include "common/metrics.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>

const double metrics_bucket_bounds[METRICS_BUCKETS] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
	0.05,	0.1,	 0.25,	 0.5,	1,	2.5,   5,    10};

void metrics_observe(struct metrics_histogram *h, double seconds)
{
	size_t lo = 0, hi = METRICS_BUCKETS;
	while (lo < hi) { /* the first bound >= seconds */
		size_t mid = (lo + hi) / 2;
		if (metrics_bucket_bounds[mid] < seconds)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < METRICS_BUCKETS)
		h->buckets[lo]++;
	h->count++;
	h->sum += seconds;
}

void metrics_histogram_add(struct metrics_histogram *a, const struct metrics_histogram *b)
{
	for (size_t i = 0; i < METRICS_BUCKETS; i++)
		a->buckets[i] += b->buckets[i];
	a->count += b->count;
	a->sum += b->sum;
}

void metrics_family(struct buf *out, const char *name, const char *type, const char *help)
{
	buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void labelled(struct buf *out, const char *name, const char *labels, const char *extra)
{
	buf_append_str(out, name);
	bool any = labels && *labels;
	if (any || extra) {
		buf_append_byte(out, '{');
		if (any)
			buf_append_str(out, labels);
		if (extra) {
			if (any)
				buf_append_byte(out, ',');
			buf_append_str(out, extra);
		}
		buf_append_byte(out, '}');
	}
}

void metrics_sample(struct buf *out, const char *name, const char *labels, double value)
{
	labelled(out, name, labels, NULL);
	buf_printf(out, " %.17g\n", value);
}

void metrics_sample_u64(struct buf *out, const char *name, const char *labels, uint64_t value)
{
	labelled(out, name, labels, NULL);
	buf_printf(out, " %" PRIu64 "\n", value);
}

void metrics_by_label(struct buf *out, const char *name, const char *type, const char *help,
		      const char *label, const char *const *values, const uint64_t *counts,
		      size_t n)
{
	metrics_family(out, name, type, help);
	for (size_t i = 0; i < n; i++) {
		char l[128];
		snprintf(l, sizeof(l), "%s=\"%s\"", label, values[i]);
		metrics_sample_u64(out, name, l, counts[i]);
	}
}

void metrics_histogram_bounds(struct buf *out, const char *name, const char *labels,
			      const double *bounds, const uint64_t *buckets, size_t n,
			      uint64_t count, double sum)
{
	char bucket[256], le[48];
	snprintf(bucket, sizeof(bucket), "%s_bucket", name);
	uint64_t cum = 0;
	for (size_t i = 0; i < n; i++) {
		cum += buckets[i];
		snprintf(le, sizeof(le), "le=\"%g\"", bounds[i]);
		labelled(out, bucket, labels, le);
		buf_printf(out, " %" PRIu64 "\n", cum);
	}
	labelled(out, bucket, labels, "le=\"+Inf\"");
	buf_printf(out, " %" PRIu64 "\n", count);
	char s[256];
	snprintf(s, sizeof(s), "%s_sum", name);
	metrics_sample(out, s, labels, sum);
	snprintf(s, sizeof(s), "%s_count", name);
	metrics_sample_u64(out, s, labels, count);
}

void metrics_histogram(struct buf *out, const char *name, const char *labels,
		       const struct metrics_histogram *h)
{
	metrics_histogram_bounds(out, name, labels, metrics_bucket_bounds, h->buckets,
				 METRICS_BUCKETS, h->count, h->sum);
}
