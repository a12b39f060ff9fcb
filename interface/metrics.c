/* laurel-interface's metrics and health endpoints (see metrics.h). */
#include "interface/metrics.h"
#include "common/layer_async.h"
#include "common/log.h"
#include "common/metrics_http.h"
#include "interface/outbox.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct iface_metrics {
	struct metrics_http *http;
	struct event *probe_timer;
	int64_t probe_seq;
	int64_t probe_heard_ms; /* when a probe last came back (monotonic), 0: never */
	int64_t started_ms;
};

static const int close_codes[IFACE_CLOSE_CODES - 1] = {1000, 1001, 1002, 1006, 1008,
						       1009, 1011, 1012, 1013};

void metrics_ws_closed(struct server *s, int code)
{
	size_t i = 0;
	while (i < IFACE_CLOSE_CODES - 1 && close_codes[i] != code)
		i++;
	s->counters.ws_closes[i]++;
}

void metrics_response_started(struct server *s, const struct request *r)
{
	metrics_observe(&s->counters.latency, (double)(util_now_us() - r->start_us) / 1e6);
}

void metrics_request_done(struct server *s, const struct request *r)
{
	int cls = r->status >= 100 && r->status < 600 ? r->status / 100 : 0;
	s->counters.responses[cls]++;
}

bool metrics_is_probe(const char *channel)
{
	const char *bang = strchr(channel, '!');
	return bang && strcmp(bang + 1, "probe") == 0;
}

void metrics_probe_heard(struct server *s, const struct laurel_msg *m)
{
	if (s->metrics)
		s->metrics->probe_heard_ms = util_now_ms();
}

static void probe(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	struct iface_metrics *mt = s->metrics;
	char channel[LAUREL_NAME_MAX + 16];
	snprintf(channel, sizeof(channel), "%sprobe", s->prefix);
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_int(m, "laurel_probe", ++mt->probe_seq);
	layer_async_send(s->layer, channel, m, NULL, NULL); /* a refusal: not ready */
	laurel_msg_free(m);
}

/* Not ready: why, else NULL. */
static const char *not_ready(struct server *s)
{
	struct layer_async_stats st;
	layer_async_stats(s->layer, &st);
	if (s->draining)
		return "draining";
	if (st.shards_up < st.shards)
		return "a shard of the channel layer is unreachable";
	int64_t now = util_now_ms();
	int64_t heard = s->metrics->probe_heard_ms;
	if (!heard && now - s->metrics->started_ms < METRICS_READY_MS)
		return "starting: the reply path is not proven yet";
	if (now - heard > METRICS_READY_MS)
		return "the reply path is not working: no probe came back on this process's reply "
		       "channel";
	return NULL;
}

#define COUNTER(name, help, value)                                                                \
	do {                                                                                       \
		metrics_family(b, name, "counter", help);                                          \
		metrics_sample_u64(b, name, NULL, value);                                          \
	} while (0)
#define GAUGE(name, help, value)                                                                  \
	do {                                                                                       \
		metrics_family(b, name, "gauge", help);                                            \
		metrics_sample(b, name, NULL, (double)(value));                                    \
	} while (0)

static void write_metrics(struct server *s, struct buf *b)
{
	const struct iface_counters *c = &s->counters;
	struct layer_async_stats st;
	layer_async_stats(s->layer, &st);
	static const char *const kinds[] = {"http", "websocket"}, *const dirs[] = {"in", "out"},
				  *const results[] = {"accepted", "refused"};
	metrics_by_label(b, "laurel_interface_connections", "gauge",
			 "Open client connections, by kind.", "kind", kinds,
			 (uint64_t[]){s->nconns - c->ws_open, c->ws_open}, 2);
	COUNTER("laurel_interface_connections_accepted_total", "Client connections accepted.",
		c->accepted);
	COUNTER("laurel_interface_connections_closed_total", "Client connections closed.",
		c->closed);
	static const char *const cls[6] = {"1xx", "2xx", "3xx", "4xx", "5xx", "other"};
	metrics_by_label(b, "laurel_interface_http_responses_total", "counter",
			 "HTTP responses sent, by status class.", "code", cls,
			 (uint64_t[]){c->responses[1], c->responses[2], c->responses[3],
				      c->responses[4], c->responses[5], c->responses[0]},
			 6);
	metrics_family(b, "laurel_interface_http_request_duration_seconds", "histogram",
		       "Time from a request's arrival to the start of its response.");
	metrics_histogram(b, "laurel_interface_http_request_duration_seconds", NULL, &c->latency);
	metrics_by_label(b, "laurel_interface_websocket_messages_total", "counter",
			 "WebSocket messages, by direction (in: from clients).", "direction", dirs,
			 (uint64_t[]){c->ws_in, c->ws_out}, 2);
	metrics_by_label(b, "laurel_interface_websocket_payload_bytes_total", "counter",
			 "WebSocket message payload bytes, by direction.", "direction", dirs,
			 (uint64_t[]){c->ws_in_bytes, c->ws_out_bytes}, 2);
	metrics_by_label(b, "laurel_interface_websocket_wire_bytes_total", "counter",
			 "WebSocket message payload bytes as on the wire, after compression "
			 "(payload_bytes counts them inflated), by direction.",
			 "direction", dirs, (uint64_t[]){c->ws_wire_in_bytes, c->ws_wire_out_bytes},
			 2);
	metrics_by_label(b, "laurel_interface_websocket_compressed_messages_total", "counter",
			 "WebSocket messages that went or came compressed (permessage-deflate), by "
			 "direction.",
			 "direction", dirs, (uint64_t[]){c->ws_compressed_in, c->ws_compressed_out}, 2);
	COUNTER("laurel_interface_websocket_compressions_total",
		"Messages run through deflate: once per broadcast (per window size), however many "
		"members it goes to (sent plain when it did not shrink).",
		c->ws_compressions);
	COUNTER("laurel_interface_websocket_compression_handshakes_total",
		"WebSocket handshakes that agreed on permessage-deflate.", c->ws_deflate_agreed);
	char codes[IFACE_CLOSE_CODES][8];
	const char *code_names[IFACE_CLOSE_CODES];
	for (size_t i = 0; i < IFACE_CLOSE_CODES; i++) {
		if (i < IFACE_CLOSE_CODES - 1)
			snprintf(codes[i], sizeof(codes[i]), "%d", close_codes[i]);
		else
			snprintf(codes[i], sizeof(codes[i]), "other");
		code_names[i] = codes[i];
	}
	metrics_by_label(b, "laurel_interface_websocket_closes_total", "counter",
			 "WebSocket connections ended, by the close code websocket.disconnect "
			 "reports.",
			 "code", code_names, c->ws_closes, IFACE_CLOSE_CODES);
	metrics_by_label(b, "laurel_interface_websocket_handshakes_total", "counter",
			 "WebSocket handshakes, by result.", "result", results,
			 (uint64_t[]){c->handshakes_accepted, c->handshakes_refused}, 2);
	GAUGE("laurel_interface_output_buffered_bytes",
	      "Bytes waiting for slow clients, all connections together.", s->output_total);
	COUNTER("laurel_interface_slow_readers_closed_total",
		"Connections closed because their client did not read what it was sent.",
		c->slow_readers);
	static const char *const sends[] = {"ok", "full", "unreachable", "too_big", "other"};
	metrics_by_label(b, "laurel_interface_layer_sends_total", "counter",
			 "Messages sent to the channel layer, by result.", "result", sends,
			 (uint64_t[]){st.sends_ok, st.sends_full, st.sends_unreachable,
				      st.sends_too_big, st.sends_other},
			 5);
	metrics_family(b, "laurel_interface_layer_round_trip_seconds", "histogram",
		       "Time from writing a command to Redis to its answer.");
	metrics_histogram(b, "laurel_interface_layer_round_trip_seconds", NULL, &st.round_trip);
	GAUGE("laurel_interface_layer_shards", "Shards of the channel layer.", st.shards);
	GAUGE("laurel_interface_layer_shards_up",
	      "Shards whose command connection works now.", st.shards_up);
	COUNTER("laurel_interface_layer_outages_total", "Shard outages begun.", st.outages);
	metrics_family(b, "laurel_interface_layer_outage_seconds_total", "counter",
		       "Total length of the shards' outages, the ongoing ones so far included.");
	metrics_sample(b, "laurel_interface_layer_outage_seconds_total", NULL, st.outage_seconds);
	GAUGE("laurel_interface_reply_reader_up",
	      "1 if the reader of this process's reply channel is listening.",
	      layer_async_listening(s->layer, s->prefix) ? 1 : 0);
	GAUGE("laurel_interface_outbox_messages",
	      "Control messages (disconnects) waiting in the outbox.", outbox_pending(s->outbox));
	COUNTER("laurel_interface_outbox_dropped_total",
		"Control messages dropped because the outbox was full.",
		outbox_dropped(s->outbox));
	GAUGE("laurel_interface_ready", "1 if /readyz says ready.", not_ready(s) ? 0 : 1);
}

static int serve(void *arg, const char *uri, size_t n, struct buf *body, const char **type)
{
	struct server *s = arg;
	if (n == 8 && memcmp(uri, "/metrics", 8) == 0) {
		write_metrics(s, body);
		if (s->cfg->metrics_more)
			s->cfg->metrics_more(s->cfg->metrics_more_arg, body);
		*type = "text/plain; version=0.0.4; charset=utf-8";
		return 200;
	}
	if (n == 8 && memcmp(uri, "/healthz", 8) == 0) {
		buf_append_str(body, "{\"alive\": true}\n");
		*type = "application/json";
		return 200;
	}
	if (n == 7 && memcmp(uri, "/readyz", 7) == 0) {
		const char *why = not_ready(s);
		if (why)
			buf_printf(body, "{\"ready\": false, \"reason\": \"%s\"}\n", why);
		else
			buf_append_str(body, "{\"ready\": true}\n");
		*type = "application/json";
		return why ? 503 : 200;
	}
	buf_append_str(body, "/metrics, /healthz or /readyz\n");
	return 404;
}

int metrics_start(struct server *s, const char *addr, char *err, size_t errlen)
{
	struct iface_metrics *mt = xcalloc(1, sizeof(*mt));
	s->metrics = mt;
	mt->started_ms = util_now_ms();
	if (!(mt->http = metrics_http_new(s->base, addr, serve, s, err, errlen)))
		return -1;
	mt->probe_timer = event_new(s->base, -1, EV_PERSIST, probe, s);
	struct timeval tv = {0, METRICS_PROBE_MS * 1000};
	event_add(mt->probe_timer, &tv);
	probe(-1, 0, s);
	return 0;
}

void metrics_stop(struct server *s)
{
	struct iface_metrics *mt = s->metrics;
	if (!mt)
		return;
	if (mt->probe_timer)
		event_free(mt->probe_timer);
	metrics_http_free(mt->http);
	free(mt);
	s->metrics = NULL;
}
