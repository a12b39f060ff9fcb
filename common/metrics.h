/* Prometheus metrics: plain counters that their owner increments (one thread each: the
 * interface's loop, a worker process), a fixed-bucket histogram, and the text exposition format
 * (version 0.0.4) they are served in. Names follow Prometheus' conventions: base units (seconds,
 * bytes), counters end in _total, and label values come from small fixed sets. */
#ifndef LAUREL_COMMON_METRICS_H
#define LAUREL_COMMON_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* Latency buckets, in seconds: 100 µs to 10 s. */
#define METRICS_BUCKETS 16
extern const double metrics_bucket_bounds[METRICS_BUCKETS];

struct metrics_histogram {
	uint64_t buckets[METRICS_BUCKETS]; /* not cumulative: each holds its own range */
	uint64_t count;
	double sum; /* seconds */
};
void metrics_observe(struct metrics_histogram *h, double seconds);
/* Adds b into a (a pool's parent summing its children). */
void metrics_histogram_add(struct metrics_histogram *a, const struct metrics_histogram *b);

/* "# HELP" and "# TYPE" lines of a family; type is "counter", "gauge" or "histogram". */
void metrics_family(struct buf *out, const char *name, const char *type, const char *help);
/* One sample: name{labels} value. labels may be NULL or "" (none), else 'k="v",k2="v2"'. */
void metrics_sample(struct buf *out, const char *name, const char *labels, double value);
void metrics_sample_u64(struct buf *out, const char *name, const char *labels, uint64_t value);
/* A whole family of n samples that differ by one label: label="values[i]" counts[i]. */
void metrics_by_label(struct buf *out, const char *name, const char *type, const char *help,
		      const char *label, const char *const *values, const uint64_t *counts,
		      size_t n);
/* A histogram's _bucket (cumulative, with +Inf), _sum and _count samples. */
void metrics_histogram(struct buf *out, const char *name, const char *labels,
		       const struct metrics_histogram *h);

/* The same for a histogram with bounds of its own (not seconds: sizes): buckets[i] counts the
 * values above bounds[i - 1] up to bounds[i]; count and sum are over every value. */
void metrics_histogram_bounds(struct buf *out, const char *name, const char *labels,
			      const double *bounds, const uint64_t *buckets, size_t n,
			      uint64_t count, double sum);

#endif
