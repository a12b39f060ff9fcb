/* tool/scrape.c: the Prometheus text format as the dashboard reads it, and its arithmetic. */
#include "tool/scrape.h"
#include "common/buf.h"
#include "common/metrics.h"
#include "common/util.h"
#include "tests/lib/test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_NEAR(a, b)                                                                           \
	do {                                                                                       \
		double _a = (a), _b = (b);                                                         \
		test_checks++;                                                                     \
		if (!(fabs(_a - _b) <= 1e-9 * fmax(1, fabs(_b))))                                  \
			test_fail(__FILE__, __LINE__, "%s == %s: %.17g vs %.17g", #a, #b, _a, _b); \
	} while (0)

/* An interface's and a worker pool's exposition, as laurel writes them, with what else a text
 * exposition may hold: comments, timestamps, escaped label values, labels in another order,
 * unknown metrics, special values. */
static const char sample[] =
	"# HELP laurel_interface_connections Open client connections, by kind.\n"
	"# TYPE laurel_interface_connections gauge\n"
	"laurel_interface_connections{kind=\"http\"} 5\n"
	"laurel_interface_connections{kind=\"websocket\"} 3 1700000000000\n"
	"laurel_interface_http_responses_total{code=\"2xx\"} 100\n"
	"laurel_interface_http_responses_total{code=\"4xx\"} 7\n"
	"laurel_interface_websocket_messages_total{direction=\"in\"} 40\n"
	"laurel_interface_websocket_messages_total{direction=\"out\"} 41\n"
	"laurel_interface_layer_sends_total{result=\"full\"} 2\n"
	"laurel_interface_layer_sends_total{result=\"ok\"} 900\n"
	"laurel_interface_http_request_duration_seconds_bucket{le=\"0.0001\"} 1\n"
	"laurel_interface_http_request_duration_seconds_bucket{le=\"0.001\"} 50\n"
	"laurel_interface_http_request_duration_seconds_bucket{le=\"+Inf\"} 107\n"
	"laurel_interface_http_request_duration_seconds_bucket{le=\"0.3\"} 99\n" /* not ours */
	"laurel_interface_ready 1\n"
	"laurel_worker_processes 4\n"
	"laurel_worker_process_restarts_total 1\n"
	"laurel_worker_messages_total{channel=\"http.request\",result=\"ok\"} 10\n"
	"laurel_worker_messages_total{result=\"failed\",channel=\"a\\\"b\\\\c\\n\"} 2\n"
	"laurel_worker_messages_total{channel=\"x\",result=\"dropped\"} 1\n"
	"laurel_worker_messages_total{channel=\"x\",result=\"consume_later\"} 3\n"
	"laurel_worker_consumer_seconds_bucket{route=\"a\",le=\"0.01\"} 2\n"
	"laurel_worker_consumer_seconds_bucket{le=\"0.01\",route=\"b\"} 3\n"
	"laurel_worker_ready 0\n"
	"something_else{kind=\"http\"} 99\n"
	"laurel_interface_connections{kind=\"http\"} NaN_not_a_number\n"
	"laurel_interface_connections{kind=\"http\" 77\n"
	"   \n"
	"laurel_worker_processes +Inf";

static int bucket(double bound)
{
	for (int i = 0; i < METRICS_BUCKETS; i++)
		if (metrics_bucket_bounds[i] == bound)
			return i;
	return -1;
}

static void test_parse(void)
{
	struct scrape_figures f;
	scrape_parse(sample, strlen(sample), &f);
	CHECK(f.interface);
	CHECK(f.worker);
	CHECK_NEAR(f.conn_http, 5);
	CHECK_NEAR(f.conn_ws, 3);
	CHECK_NEAR(f.http_responses, 107);
	CHECK_NEAR(f.ws_in, 40);
	CHECK_NEAR(f.ws_out, 41);
	CHECK_NEAR(f.sends_full, 2);
	CHECK_NEAR(f.latency[bucket(0.0001)], 1);
	CHECK_NEAR(f.latency[bucket(0.001)], 50);
	CHECK_NEAR(f.latency[METRICS_BUCKETS], 107);
	CHECK_NEAR(f.ready, 0);	   /* the lower of the two */
	CHECK(isinf(f.processes)); /* 4, then +Inf on the last line, which has no newline */
	CHECK_NEAR(f.restarts, 1);
	CHECK_NEAR(f.wmsgs, 16);
	CHECK_NEAR(f.wfailed, 3);
	CHECK_NEAR(f.consumer[bucket(0.01)], 5);

	struct scrape_figures empty;
	scrape_parse("", 0, &empty);
	CHECK(!empty.interface && !empty.worker);
	CHECK_NEAR(empty.ready, -1);

	/* Every prefix of the text parses without reading past it (the buffer is copied to an
	 * allocation of exactly that size, so a sanitizer sees an overrun). */
	size_t len = strlen(sample);
	for (size_t n = 0; n <= len; n++) {
		char *cut = xmalloc(n ? n : 1);
		memcpy(cut, sample, n);
		scrape_parse(cut, n, &f);
		free(cut);
	}
	/* And so does garbage: every byte value, braces and quotes left open. */
	const char *odd[] = {
		"{",	"a{",	   "a{b",	    "a{b=\"", "a{b=\"\\", "a{b=\"c\\\"}", "a{}",
		"a{} ", "a 1 2 3", "a{le=\"x\"} 1", "#",      "\n\n\n",	  "a{b=\"c\"}} 1"};
	for (size_t i = 0; i < ARRAY_SIZE(odd); i++) {
		size_t n = strlen(odd[i]);
		char *cut = xmalloc(n ? n : 1);
		memcpy(cut, odd[i], n);
		scrape_parse(cut, n, &f);
		free(cut);
	}
	unsigned char all[256];
	for (int i = 0; i < 256; i++)
		all[i] = (unsigned char)i;
	scrape_parse((const char *)all, sizeof(all), &f);
}

/* What laurel writes is what the dashboard reads: a histogram filled through metrics_observe
 * and written by metrics_histogram comes back bucket for bucket. */
static void test_round_trip(void)
{
	struct metrics_histogram h = {0};
	double values[] = {0.00005, 0.0003, 0.0003, 0.002, 0.04, 0.7, 3, 20};
	for (size_t i = 0; i < ARRAY_SIZE(values); i++)
		metrics_observe(&h, values[i]);
	struct buf b;
	buf_init(&b);
	metrics_family(&b, "laurel_interface_http_request_duration_seconds", "histogram", "x");
	metrics_histogram(&b, "laurel_interface_http_request_duration_seconds", NULL, &h);
	struct scrape_figures f;
	scrape_parse(b.data, b.len, &f);
	uint64_t cum = 0;
	for (int i = 0; i < METRICS_BUCKETS; i++) {
		cum += h.buckets[i];
		CHECK_NEAR(f.latency[i], (double)cum);
	}
	CHECK_NEAR(f.latency[METRICS_BUCKETS], (double)ARRAY_SIZE(values));
	buf_fini(&b);
}

static void test_arithmetic(void)
{
	CHECK_NEAR(scrape_increase(10, 4), 6);
	CHECK_NEAR(scrape_increase(3, 50), 3); /* restarted: counts from 0 */

	/* Cumulative 10, 30, 30 (+Inf) then 15, 60, 61: per bucket 5, 25, 1. */
	double prev[SCRAPE_BUCKETS] = {0}, now[SCRAPE_BUCKETS] = {0}, d[SCRAPE_BUCKETS] = {0};
	for (int i = 0; i < SCRAPE_BUCKETS; i++) {
		prev[i] = i == 0 ? 10 : 30;
		now[i] = i == 0 ? 15 : i < METRICS_BUCKETS ? 60 : 61;
	}
	scrape_bucket_deltas(d, now, prev);
	CHECK_NEAR(d[0], 5);
	CHECK_NEAR(d[1], 25);
	for (int i = 2; i < METRICS_BUCKETS; i++)
		CHECK_NEAR(d[i], 0);
	CHECK_NEAR(d[METRICS_BUCKETS], 1);

	/* 100 observations spread evenly in (0.001, 0.0025]: quantiles interpolate inside it. */
	double b[SCRAPE_BUCKETS] = {0};
	b[bucket(0.0025)] = 100;
	CHECK_NEAR(scrape_quantile(b, 0.5), 0.001 + 0.0015 * 0.5);
	CHECK_NEAR(scrape_quantile(b, 0.99), 0.001 + 0.0015 * 0.99);
	/* 90 in the first bucket, 10 in the second: p50 in the first, p99 in the second. */
	memset(b, 0, sizeof(b));
	b[0] = 90;
	b[1] = 10;
	CHECK_NEAR(scrape_quantile(b, 0.5), 0.0001 * 50 / 90);
	CHECK_NEAR(scrape_quantile(b, 0.99), 0.0001 + 0.00015 * 9 / 10);
	/* Past the last bound: the highest bound. Empty: NAN. */
	memset(b, 0, sizeof(b));
	b[METRICS_BUCKETS] = 4;
	CHECK_NEAR(scrape_quantile(b, 0.5), 10);
	memset(b, 0, sizeof(b));
	CHECK(isnan(scrape_quantile(b, 0.5)));
}

int main(void)
{
	test_parse();
	test_round_trip();
	test_arithmetic();
	return test_done();
}
