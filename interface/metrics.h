/* laurel-interface --metrics ADDR: GET /metrics (Prometheus text format), /healthz (liveness: the
 * event loop answers) and /readyz (readiness: every shard reachable and the reply path proven by
 * a probe message this process sends to its own reply channel every PROBE_MS and hears back) on
 * a listener of their own (libevent's evhttp), and the counting helpers the rest of the
 * interface calls. docs/operations.md lists every metric. */
#ifndef LAUREL_INTERFACE_METRICS_H
#define LAUREL_INTERFACE_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "interface/conn.h"

struct laurel_msg;

/* The probe's period, and how old the last probe heard back may be for /readyz to say ready. */
#define METRICS_PROBE_MS 500
#define METRICS_READY_MS 1500

/* Starts the listener on addr ("host:port", "[v6]:port", or a unix socket path starting with
 * '/'). Returns 0, or -1 with a sentence in err. */
int metrics_start(struct server *s, const char *addr, char *err, size_t errlen);
/* Stops it (NULL metrics: nothing). */
void metrics_stop(struct server *s);
/* The reply path heard a probe (a message on this process's channel "<prefix>probe"). */
void metrics_probe_heard(struct server *s, const struct laurel_msg *m);
/* Whether a reply channel's local part is the probe's. */
bool metrics_is_probe(const char *channel);

/* Counting, from the places things happen. */
void metrics_response_started(struct server *s, const struct request *r);
void metrics_request_done(struct server *s, const struct request *r);
void metrics_ws_closed(struct server *s, int code);

#endif
