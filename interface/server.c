/* laurel-interface's HTTP server (see server.h): listeners, start, drain and stop. The modules of
 * a connection are conn.c, request.c, asgi_ws.c and reply.c. */
#include "interface/metrics.h"
#include "interface/server.h"
#include "interface/deflate.h"
#include "interface/asgi_ws.h"
#include "interface/conn.h"
#include "interface/outbox.h"
#include "interface/reply.h"
#include "interface/websocket.h"
#include "common/layer.h"
#include "common/layer_async.h"
#include "common/log.h"

#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define ANNOUNCE_TTL 30

/* Disconnect messages that may wait for a full channel or a shard that is down (outbox.h): about
 * 300 bytes each. */
#define CONTROL_OUTBOX_MAX 100000

static void on_layer_reset(const char *desc, void *arg);

static int listen_tcp(struct server *s, char *err, size_t errlen)
{
	const struct server_config *cfg = s->cfg;
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	char port[16];
	snprintf(port, sizeof(port), "%d", cfg->port);
	int rc = getaddrinfo(cfg->bind, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve --bind %s: %s", cfg->bind, gai_strerror(rc));
		return -1;
	}
	unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC;
	if (cfg->reuse_port)
		flags |= LEV_OPT_REUSEABLE_PORT;
	struct evconnlistener *l = evconnlistener_new_bind(s->base, conn_accept, s, flags, 1024,
							   res->ai_addr, (int)res->ai_addrlen);
	int e = errno;
	freeaddrinfo(res);
	if (!l) {
		snprintf(err, errlen, "cannot listen on %s port %d: %s", cfg->bind, cfg->port,
			 strerror(e));
		return -1;
	}
	s->listeners[s->nlisteners++] = l;
	return 0;
}

static int listen_unix(struct server *s, char *err, size_t errlen)
{
	const char *path = s->cfg->unix_socket;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "unix socket path too long: %s", path);
		return -1;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	struct stat st;
	if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path); /* a stale socket from an earlier run */
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    chmod(path, (mode_t)s->cfg->unix_socket_mode) < 0 || listen(fd, 1024) < 0) {
		snprintf(err, errlen, "cannot listen on unix socket %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	struct evconnlistener *l =
		evconnlistener_new(s->base, conn_accept, s, LEV_OPT_CLOSE_ON_FREE, -1, fd);
	s->listeners[s->nlisteners++] = l;
	return 0;
}

static int listen_fd(struct server *s, char *err, size_t errlen)
{
	int fd = s->cfg->fd;
	int type = 0;
	socklen_t len = sizeof(type);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM) {
		snprintf(err, errlen, "--fd %d is not a stream socket", fd);
		return -1;
	}
	evutil_make_socket_nonblocking(fd);
	if (listen(fd, 1024) < 0) {
		snprintf(err, errlen, "--fd %d cannot listen: %s", fd, strerror(errno));
		return -1;
	}
	struct evconnlistener *l =
		evconnlistener_new(s->base, conn_accept, s, LEV_OPT_CLOSE_ON_FREE, -1, fd);
	s->listeners[s->nlisteners++] = l;
	return 0;
}

bool server_parse_on_off(const char *value, bool *on)
{
	if (strcmp(value, "on") != 0 && strcmp(value, "off") != 0)
		return false;
	*on = value[1] == 'n';
	return true;
}

int server_new(struct server **out, struct event_base *base, const struct server_config *cfg,
	       char *err, size_t errlen)
{
	struct server *s = xcalloc(1, sizeof(*s));
	s->base = base;
	s->output_cap = cfg->max_output_total;
	if (!s->output_cap) {
		/* An eighth of the RAM, and at least 64 MiB. */
		long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
		s->output_cap = pages > 0 && size > 0 ? (size_t)pages * (size_t)size / 8 : 0;
		if (s->output_cap < ((size_t)64 << 20))
			s->output_cap = (size_t)64 << 20;
	}
	s->output_check = event_new(base, -1, 0, conn_check_output_total, s);
	s->cfg = cfg;
	s->limits.max_uri = cfg->max_uri;
	s->limits.max_header_bytes = cfg->max_header_bytes;
	s->limits.max_headers = (size_t)cfg->max_headers;
	s->limits.max_body = cfg->max_body;
	s->ws_cfg.max_message = cfg->ws_max_message;
	s->ws_cfg.compress_threshold = cfg->ws_compression_threshold;
	s->ws_cfg.compress_level = cfg->ws_compression_level ? cfg->ws_compression_level : 3;
	util_rng_init(&s->rng);
	char letters[10];
	util_rng_letters(&s->rng, letters, sizeof(letters));
	snprintf(s->prefix, sizeof(s->prefix), "laurel.response.%.10s!", letters);

	if (cfg->access_log) {
		if (strcmp(cfg->access_log, "-") == 0) {
			s->access = stdout;
		} else {
			s->access = fopen(cfg->access_log, "a");
			if (!s->access) {
				snprintf(err, errlen, "cannot open access log %s: %s",
					 cfg->access_log, strerror(errno));
				goto fail;
			}
		}
	}
	struct laurel_layer_options lo = layer_flags_options(&cfg->layer);
	/* --ws-max-message is the one limit: the layer takes a message of that payload. */
	lo.max_message = cfg->ws_max_message + LAUREL_MESSAGE_ENVELOPE > LAUREL_MAX_MESSAGE_DEFAULT
				 ? cfg->ws_max_message + LAUREL_MESSAGE_ENVELOPE
				 : LAUREL_MAX_MESSAGE_DEFAULT;
	if (cfg->shared_layer)
		layer_async_new_shared(&s->layer, base, cfg->shared_layer);
	else if (layer_check_options(&lo, err, errlen) < 0 ||
		 layer_async_new(&s->layer, base, &lo, err, errlen) < 0)
		goto fail;
	if (cfg->tcp && listen_tcp(s, err, errlen) < 0)
		goto fail;
	if (cfg->unix_socket && listen_unix(s, err, errlen) < 0)
		goto fail;
	if (cfg->fd >= 0 && listen_fd(s, err, errlen) < 0)
		goto fail;
	if (s->nlisteners == 0) {
		snprintf(err, errlen, "nothing to listen on");
		goto fail;
	}
	outbox_new(&s->outbox, base, s->layer,
		   cfg->max_pending_disconnects > 0 ? (size_t)cfg->max_pending_disconnects
						    : CONTROL_OUTBOX_MAX);
	layer_async_on_reset(s->layer, on_layer_reset, s);
	layer_async_listen(s->layer, s->prefix, reply_on_message, s);
	layer_async_announce(s->layer, s->prefix, ANNOUNCE_TTL);
	if (cfg->metrics && metrics_start(s, cfg->metrics, err, errlen) < 0)
		goto fail;
	*out = s;
	return 0;
fail:
	server_free(s);
	return -1;
}

/* A shard came back without its data: the groups these WebSockets joined and their sessions are
 * gone, so they would stay open but deaf. Close them with 1012 (service restart): clients
 * reconnect, and their connect consumers join the groups again. */
static void on_layer_reset(const char *desc, void *arg)
{
	struct server *s = arg;
	size_t n = 0;
	for (struct conn *c = s->conns; c; c = c->next) {
		if (c->mode != MODE_WS_OPEN || c->close_sent_ms || !c->ws)
			continue;
		ws_close(c->ws, 1012);
		c->close_sent_ms = util_now_ms();
		asgi_ws_arm(c);
		n++;
	}
	log_warn("closing %zu WebSockets with 1012 (service restart) after %s lost its data", n,
		 desc);
}

static void on_flushed(int status, void *arg)
{
	struct server *s = arg;
	event_base_loopexit(s->base, NULL);
}

static void outbox_empty(void *arg)
{
	struct server *s = arg;
	layer_async_barrier(s->layer, on_flushed, s);
}

/* The last connection is gone: leave once the messages about them (disconnects) are out, all
 * accepted by the layer — or at the drain timeout. */
void server_drained(struct server *s)
{
	if (s->drained)
		return;
	s->drained = true;
	outbox_on_empty(s->outbox, outbox_empty, s);
}

static void drain_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	if (s->nconns)
		log_warn("drain timeout: closing %zu connections still open", s->nconns);
	if (outbox_pending(s->outbox))
		log_warn("drain timeout: %zu disconnect messages not accepted by the channel layer",
			 outbox_pending(s->outbox));
	event_base_loopexit(s->base, NULL);
}

void server_drain(struct server *s)
{
	if (s->draining)
		return;
	s->draining = true;
	/* Closed, not paused: new connections are refused at once (or go to another process on
	 * the same port) instead of waiting in the kernel's queue. */
	for (size_t i = 0; i < s->nlisteners; i++)
		evconnlistener_free(s->listeners[i]);
	s->nlisteners = 0;
	if (s->cfg->unix_socket)
		unlink(s->cfg->unix_socket);
	log_info("draining: %zu connections open", s->nconns);
	layer_async_withdraw(s->layer, s->prefix, NULL, NULL);
	struct conn *c = s->conns, *next;
	for (; c; c = next) {
		next = c->next;
		if (!c->req) {
			conn_close(c);
		} else if (c->mode == MODE_WS_OPEN) {
			ws_close(c->ws, 1001);
			c->close_sent_ms = util_now_ms();
			asgi_ws_arm(c);
		} else if (c->mode == MODE_WS_CONNECTING) {
			conn_respond_error(c, 503, "Server shutting down.");
		} else {
			c->req->keep_alive = false;
		}
	}
	s->drain_timer = evtimer_new(s->base, drain_timeout, s);
	struct timeval tv = {s->cfg->drain_timeout, 0};
	evtimer_add(s->drain_timer, &tv);
	if (s->nconns == 0)
		server_drained(s);
}

void server_free(struct server *s)
{
	if (!s)
		return;
	while (s->conns)
		conn_close(s->conns);
	for (size_t i = 0; i < s->nlisteners; i++)
		evconnlistener_free(s->listeners[i]);
	if (s->cfg->unix_socket && s->nlisteners)
		unlink(s->cfg->unix_socket);
	if (s->drain_timer)
		event_free(s->drain_timer);
	if (s->output_check)
		event_free(s->output_check);
	metrics_stop(s); /* before the layer: its probe sends on it */
	layer_async_free(s->layer);
	outbox_free(s->outbox); /* after the layer: its callbacks were cancelled */
	asgi_ws_free_retries(s);
	if (s->access && s->access != stdout)
		fclose(s->access);
	reply_free_all(s);
	deflate_thread_cleanup(); /* this thread's compression streams, if it made any */
	free(s);
}

const char *server_channel(const struct server *s)
{
	return s->prefix;
}
