/* laurel dashboard: a live page of the whole deployment (docs/operations.md, "Dashboard").
 *
 * Once a second it takes a census of the channel layer (common/layer_census.h) and scrapes the
 * Prometheus endpoints it was given (an interface's or a worker pool's /metrics), keeps the last
 * history_s seconds of derived figures (rates, latency percentiles, queue depths, what is up),
 * and serves them on one evhttp listener: GET / (the page, compiled into the program),
 * GET /api/state[?since=UNIX_MS] (JSON) and GET /metrics (the last census, as `laurel stats
 * --prometheus` prints it). One thread, one event loop. */
#ifndef LAUREL_TOOL_DASHBOARD_H
#define LAUREL_TOOL_DASHBOARD_H

#include <stddef.h>

#include "laurel/layer.h"

struct dashboard_options {
	const char *listen;  /* host:port, [ipv6]:port or /unix/socket/path */
	char *const *scrape; /* http://host[:port][/path] (default path /metrics) */
	size_t nscrape;
	int history_s; /* seconds of history kept (one sample a second) */
};

/* Checks every --scrape URL. Returns 0, or -1 with a message in err. */
int dashboard_check(const struct dashboard_options *o, char *err, size_t errlen);

/* Serves until SIGINT or SIGTERM, taking censuses of layer (borrowed). Returns 0 then, or -1
 * with a message in err when it cannot start (the address does not parse or cannot be bound). */
int dashboard_run(struct laurel_layer *layer, const struct dashboard_options *o, char *err,
		  size_t errlen);

#endif
