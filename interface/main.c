/* laurel-interface: terminates HTTP/1.1 and turns every request into a message on the channel
 * layer (SPEC §4–5). Flags follow Daphne 1.4's where Daphne had them. */
#include "interface/server.h"
#include "common/layer.h"
#include "common/log.h"
#include "common/options.h"
#include "common/util.h"

#include <event2/event.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef LAUREL_VERSION
#define LAUREL_VERSION "0.1.0"
#endif

struct config {
	struct server_config server;
	char *ws_compression; /* "on" or "off" */
	char *user;
	char *group;
	bool help;
	bool version;
};

#define S(field) offsetof(struct config, server.field)
#define C(field) offsetof(struct config, field)
#define YEAR (365LL * 86400)

static const struct option opts[] = {
	{"bind", 'b', OPTION_STRING, S(bind), 1, 0, "127.0.0.1", "LAUREL_BIND", "ADDRESS",
	 "Address to listen on (IPv4 or IPv6)."},
	{"port", 'p', OPTION_INT, S(port), 0, 65535, "8000", "LAUREL_PORT", "PORT",
	 "TCP port to listen on (0: any free port)."},
	{"unix-socket", 'u', OPTION_STRING, S(unix_socket), 1, 0, NULL, "LAUREL_UNIX_SOCKET", "PATH",
	 "Listen on this unix socket (instead of TCP unless -b or -p is also given)."},
	{"unix-socket-mode", 0, OPTION_MODE, S(unix_socket_mode), 0, 0777, "660", NULL, "MODE",
	 "Permissions of the unix socket, in octal."},
	{"fd", 0, OPTION_INT, S(fd), -1, 65535, "-1", NULL, "N",
	 "Listen on this inherited socket (socket activation, supervisors)."},
	{"reuse-port", 0, OPTION_FLAG, S(reuse_port), 0, 0, NULL, NULL, NULL,
	 "Let several processes listen on the same port (SO_REUSEPORT)."},
	{"http-timeout", 't', OPTION_INT, S(http_timeout), 1, 86400, "120", NULL, "SECONDS",
	 "Answer 503 when the application has not responded within this time."},
	{"root-path", 0, OPTION_STRING, S(root_path), 0, 0, "", NULL, "PATH",
	 "The root_path of every request (where the application is mounted)."},
	{"proxy-headers", 0, OPTION_FLAG, S(proxy_headers), 0, 0, NULL, NULL, NULL,
	 "Take the client address, port and scheme from X-Forwarded-For, -Port and -Proto "
	 "(only behind a proxy you trust)."},
	{"access-log", 0, OPTION_STRING, S(access_log), 1, 0, NULL, NULL, "FILE",
	 "Write an access log line per request to FILE (- for stdout)."},
	{"metrics", 0, OPTION_STRING, S(metrics), 1, 0, NULL, "LAUREL_METRICS", "ADDR",
	 "Serve /metrics (Prometheus), /healthz and /readyz on ADDR: host:port, [ipv6]:port or a "
	 "unix socket /path (docs/operations.md). Off by default."},
	{"verbosity", 'v', OPTION_VERBOSITY, S(verbosity), 0, 2, "1", NULL, "N",
	 OPTION_VERBOSITY_HELP},
	{"no-http-disconnect", 0, OPTION_FLAG, S(no_http_disconnect), 0, 0, NULL, NULL, NULL,
	 "Do not send http.disconnect (most applications never read it)."},
	{"max-connections", 0, OPTION_INT, S(max_connections), 1, 10000000, "100000", NULL, "N",
	 "Open connections at most; more are answered 503 and closed."},
	{"max-uri", 0, OPTION_SIZE, S(max_uri), 64, 1 << 20, "8k", NULL, "BYTES",
	 "Longest request target; longer: 414."},
	{"max-header-size", 0, OPTION_SIZE, S(max_header_bytes), 256, 1 << 24, "32k", NULL, "BYTES",
	 "Largest request head (names and values); larger: 431."},
	{"max-headers", 0, OPTION_INT, S(max_headers), 1, 10000, "100", NULL, "N",
	 "Most header lines in a request; more: 431."},
	{"max-body", 0, OPTION_SIZE, S(max_body), 0, 1LL << 40, "100M", NULL, "BYTES",
	 "Largest request body; larger: 413."},
	{"body-chunk", 0, OPTION_SIZE, S(body_chunk), 1024, 1LL << 30, "512k", NULL, "BYTES",
	 "Bodies larger than this go to the application in chunks of this size on a body_channel."},
	{"header-timeout", 0, OPTION_INT, S(header_timeout), 1, 3600, "15", NULL, "SECONDS",
	 "Close a connection that has not sent a whole request head within this time (slow "
	 "clients), or that stays idle between requests this long."},
	{"drain-timeout", 0, OPTION_INT, S(drain_timeout), 0, 3600, "10", NULL, "SECONDS",
	 "On SIGTERM or SIGINT, how long requests in flight may take to finish."},
	{"max-pending-disconnects", 0, OPTION_INT, S(max_pending_disconnects), 1, 100000000,
	 "100000", NULL, "N",
	 "Disconnect messages that may wait for a full channel or an unreachable Redis (about "
	 "300 bytes each); more are dropped, logged, and counted in `laurel stats`."},
	{"max-output", 0, OPTION_SIZE, S(max_output), 65536, 1LL << 34, "16M", NULL, "BYTES",
	 "Response bytes waiting for a slow client before its connection is closed."},
	{"websocket_timeout", 0, OPTION_INT, S(websocket_timeout), -1, YEAR, "86400", NULL,
	 "SECONDS", "Close a WebSocket after this long (-1: never)."},
	{"websocket_connect_timeout", 0, OPTION_INT, S(websocket_connect_timeout), 1, 3600, "5",
	 NULL, "SECONDS",
	 "Reject a WebSocket handshake the application has not answered within this time (403), "
	 "or whose websocket.connect the layer has not taken by then (full or down: 503)."},
	{"ping-interval", 0, OPTION_INT, S(ping_interval), 1, 86400, "20", NULL, "SECONDS",
	 "Ping a WebSocket client that has sent nothing for this long."},
	{"ping-timeout", 0, OPTION_INT, S(ping_timeout), 1, 86400, "30", NULL, "SECONDS",
	 "Close a WebSocket whose client has not answered a ping within this time."},
	{"ws-protocol", 0, OPTION_LIST, S(ws_protocols), 0, 0, NULL, NULL, "NAME",
	 "A WebSocket subprotocol to accept (repeat for several); the first of the client's list "
	 "that is accepted is chosen."},
	{"allowed-origins", 0, OPTION_LIST, S(allowed_origins), 0, 0, NULL, NULL, "ORIGIN",
	 "Accept WebSocket handshakes only from this Origin (repeat for several; others get "
	 "403). Without it every origin is accepted."},
	{"ws-max-message", 0, OPTION_SIZE, S(ws_max_message), 125, 1LL << 31, "1M", NULL, "BYTES",
	 "Largest WebSocket message from a client; larger: close 1009."},
	{"ws-compression", 0, OPTION_STRING, C(ws_compression), 2, 0, "on", "LAUREL_WS_COMPRESSION",
	 "on|off",
	 "permessage-deflate (RFC 7692) for clients that offer it: messages from the threshold on "
	 "go compressed, a broadcast compressed once for all its members."},
	{"ws-compression-threshold", 0, OPTION_SIZE, S(ws_compression_threshold), 0, 1LL << 31,
	 WS_COMPRESSION_THRESHOLD, NULL, "BYTES",
	 "Messages shorter than this go uncompressed (compressing them does not pay)."},
	{"ws-compression-level", 0, OPTION_INT, S(ws_compression_level), 1, 9,
	 WS_COMPRESSION_LEVEL, NULL, "N", "zlib compression level, 1 (fastest) to 9 (smallest)."},
	{"max-output-total", 0, OPTION_SIZE, S(max_output_total), 0, 1LL << 40, "0", NULL, "BYTES",
	 "Output waiting for slow clients, all connections together; past it the connections "
	 "holding the most are closed first (WebSockets: code 1013). 0: an eighth of the RAM."},
	{"ws-max-output", 0, OPTION_SIZE, S(ws_max_output), 4096, 1LL << 34, "4M", NULL, "BYTES",
	 "Bytes waiting for a slow WebSocket client before it is closed (1013)."},
	LAYER_OPTIONS(S, "http.request beyond it: 503 \"Request queue full.\""),
	{"user", 0, OPTION_STRING, C(user), 1, 0, NULL, "LAUREL_USER", "USER",
	 "Once the sockets are bound, run as this user (a name or number; its group too, unless "
	 "--group). Started as root without it, laurel-interface warns."},
	{"group", 0, OPTION_STRING, C(group), 1, 0, NULL, "LAUREL_GROUP", "GROUP",
	 "Once the sockets are bound, run as this group (a name or number)."},
	{"help", 'h', OPTION_FLAG, C(help), 0, 0, NULL, NULL, NULL, "Show this help."},
	{"version", 0, OPTION_FLAG, C(version), 0, 0, NULL, NULL, NULL, "Print the version."},
};

static struct server *server;

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	log_info("signal %d: draining", (int)sig);
	server_drain(server);
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: laurel-interface [OPTION]...\n"
		   "Terminates HTTP/1.1 and WebSocket and puts every request, WebSocket connect,\n"
		   "message and disconnect on the channel layer; answers with what the application\n"
		   "sends back on the reply channel.\n\n"
		   "Options:\n");
	options_print(f, opts, ARRAY_SIZE(opts));
	fprintf(f, "\nSignals: SIGTERM and SIGINT stop accepting, let requests in flight finish and\n"
		   "close WebSockets with 1001, within --drain-timeout.\n"
		   "Exit status: 0 after a clean stop, 2 for a bad option, 1 when it cannot start.\n");
}

int main(int argc, char **argv)
{
	struct config cfg = {0};
	bool given[ARRAY_SIZE(opts)];
	char err[512];
	char **pos = xcalloc((size_t)argc + 1, sizeof(char *));
	int npos = 0;
	log_set_program("laurel-interface");
	if (options_parse(opts, ARRAY_SIZE(opts), &cfg, argc, argv, pos, &npos, given, err,
			  sizeof(err)) < 0) {
		fprintf(stderr, "laurel-interface: %s\n", err);
		free(pos);
		options_free(opts, ARRAY_SIZE(opts), &cfg);
		return 2;
	}
	int status = 0;
	if (cfg.help) {
		usage(stdout);
		goto out;
	}
	if (cfg.version) {
		printf("laurel-interface %s\n", LAUREL_VERSION);
		goto out;
	}
	if (npos > 0) {
		fprintf(stderr, "laurel-interface: unexpected argument \"%s\" (see --help)\n", pos[0]);
		status = 2;
		goto out;
	}
	if (!server_parse_on_off(cfg.ws_compression, &cfg.server.ws_compression)) {
		fprintf(stderr, "laurel-interface: --ws-compression takes on or off, not \"%s\"\n",
			cfg.ws_compression);
		status = 2;
		goto out;
	}
	/* TCP unless only a unix socket or an inherited socket was asked for. */
	bool asked_tcp = given[0] || given[1];
	cfg.server.tcp = asked_tcp || (!cfg.server.unix_socket && cfg.server.fd < 0);
	log_level = log_level_for(cfg.server.verbosity);
	signal(SIGPIPE, SIG_IGN);
	struct event_base *base = event_base_new();
	if (server_new(&server, base, &cfg.server, err, sizeof(err)) < 0) {
		fprintf(stderr, "laurel-interface: %s\n", err);
		event_base_free(base);
		status = 1;
		goto out;
	}
	if (util_drop_privileges(cfg.user, cfg.group, err, sizeof(err)) < 0) {
		fprintf(stderr, "laurel-interface: %s\n", err);
		server_free(server);
		event_base_free(base);
		status = 1;
		goto out;
	}
	if (!cfg.user && !cfg.group && geteuid() == 0)
		log_warn("running as root: give --user (and --group) to drop privileges once the "
			 "sockets are bound");
	struct event *term = evsignal_new(base, SIGTERM, on_signal, NULL);
	struct event *intr = evsignal_new(base, SIGINT, on_signal, NULL);
	evsignal_add(term, NULL);
	evsignal_add(intr, NULL);
	log_info("listening; reply channel %s", server_channel(server));
	event_base_dispatch(base);
	event_free(term);
	event_free(intr);
	server_free(server);
	event_base_free(base);
	log_info("stopped");
out:
	options_free(opts, ARRAY_SIZE(opts), &cfg);
	free(pos);
	return status;
}
