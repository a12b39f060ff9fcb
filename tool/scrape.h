/* What the dashboard reads from a Prometheus endpoint: the text exposition format (0.0.4) parsed
 * into the few figures it shows, and the arithmetic on them (counter increases, histogram
 * quantiles). No I/O, so it is tested on byte buffers. */
#ifndef LAUREL_TOOL_SCRAPE_H
#define LAUREL_TOOL_SCRAPE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/metrics.h"

/* Histogram buckets as laurel writes them: metrics_bucket_bounds, then +Inf. */
#define SCRAPE_BUCKETS (METRICS_BUCKETS + 1)

/* What one scrape of an endpoint said: the figures the page shows, summed over the label values
 * it does not break down (a worker's channels and routes, an interface's status classes).
 * Counters are cumulative, as scraped. A histogram whose bounds are not metrics_bucket_bounds
 * is not read. */
struct scrape_figures {
	bool interface, worker; /* laurel_interface_* / laurel_worker_* metrics seen */
	double conn_http, conn_ws;
	double http_responses, ws_in, ws_out, sends_full;
	double latency[SCRAPE_BUCKETS]; /* cumulative, like the _bucket samples */
	double ready; /* laurel_interface_ready or laurel_worker_ready; -1: absent */
	double processes, restarts;
	double wmsgs, wfailed; /* worker messages, and those failed or dropped */
	double consumer[SCRAPE_BUCKETS];
};

/* Reads text[0..len): "name{labels} value [timestamp]" lines, escapes in label values honoured;
 * comments, unknown metrics and lines that do not parse are passed over. Fills f whole. */
void scrape_parse(const char *text, size_t len, struct scrape_figures *f);

/* A counter's increase from prev to now; a counter that went back (its process restarted)
 * counts from 0, as Prometheus' increase() does. */
double scrape_increase(double now, double prev);
/* Adds to out[i] the increase of bucket i alone, from two sets of cumulative buckets. */
void scrape_bucket_deltas(double *out, const double *now, const double *prev);
/* The q-quantile (0..1) of a histogram given as per-bucket counts (not cumulative), in
 * seconds, interpolated linearly inside its bucket as Prometheus' histogram_quantile does; the
 * highest finite bound if it falls in +Inf; NAN if the histogram is empty. */
double scrape_quantile(const double *buckets, double q);

#endif
