/* A client connection: accepting it, reading (into the HTTP parser or the WebSocket), writing,
 * its timer, small error responses, the access log, and closing (see conn.h). */
#include "interface/conn.h"
#include "interface/metrics.h"
#include "interface/recovery.h"
#include "interface/asgi_ws.h"
#include "interface/reply.h"
#include "interface/request.h"
#include "interface/websocket.h"
#include "common/log.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define LINGER_TIME_MS 5000 /* a lingering close lasts at most this long */
#define LINGER_IDLE_MS 2000 /* or until the client sends nothing for this long */

const char *conn_date(struct server *s)
{
	time_t now = time(NULL);
	if (now != s->date_at) {
		struct tm tm;
		gmtime_r(&now, &tm);
		strftime(s->date, sizeof(s->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
		s->date_at = now;
	}
	return s->date;
}

static void runserver_log(struct conn *c, const char *method, const char *target, int status)
{
	static const struct {
		const char *from, *to;
	} ws[] = {{"WSCONNECTING", "HANDSHAKING"},
		  {"WSCONNECT", "CONNECT"},
		  {"WSREJECT", "REJECT"},
		  {"WSDISCONNECT", "DISCONNECT"}};
	char when[64], peer[96];
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y/%m/%d %H:%M:%S", &tm);
	if (c->has_addrs)
		snprintf(peer, sizeof(peer), "%s:%d", c->client_host, c->client_port);
	else
		snprintf(peer, sizeof(peer), "unix");
	for (size_t i = 0; i < ARRAY_SIZE(ws); i++) {
		if (strcmp(method, ws[i].from) == 0) {
			fprintf(c->srv->access, "[%s] WebSocket %s %s [%s]\n", when, ws[i].to,
				target ? target : "-", peer);
			fflush(c->srv->access);
			return;
		}
	}
	double took = c->req ? (double)(util_now_us() - c->req->start_us) / 1e6 : 0;
	fprintf(c->srv->access, "[%s] HTTP %s %s %d [%.2f, %s]\n", when, method,
		target ? target : "-", status, took, peer);
	fflush(c->srv->access);
}

void conn_access_log(struct conn *c, const char *method, const char *target, int status,
		     uint64_t size)
{
	FILE *f = c->srv->access;
	if (!f)
		return;
	if (c->srv->cfg->runserver_log) {
		runserver_log(c, method, target, status);
		return;
	}
	char when[64];
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(when, sizeof(when), "%d/%b/%Y:%H:%M:%S", &tm);
	if (status)
		fprintf(f, "%s - - [%s] \"%s %s\" %d %llu\n",
			c->has_addrs ? c->client_host : "unix", when, method, target ? target : "-",
			status, (unsigned long long)size);
	else if (size)
		fprintf(f, "%s - - [%s] \"%s %s\" - %llu\n", c->has_addrs ? c->client_host : "unix",
			when, method, target ? target : "-", (unsigned long long)size);
	else
		fprintf(f, "%s - - [%s] \"%s %s\" - -\n", c->has_addrs ? c->client_host : "unix",
			when, method, target ? target : "-");
	fflush(f);
}

void conn_set_timer(struct conn *c, int seconds)
{
	struct timeval tv = {seconds, 0};
	evtimer_add(c->timer, &tv);
}

void conn_pause_reading(struct conn *c, bool pause)
{
	if (pause == c->reading_paused)
		return;
	c->reading_paused = pause;
	if (pause)
		bufferevent_disable(c->bev, EV_READ);
	else if (!c->read_eof)
		bufferevent_enable(c->bev, EV_READ);
}

bool conn_unread(struct conn *c)
{
	return evbuffer_get_length(bufferevent_get_input(c->bev)) > 0 ||
	       (c->parser && (c->req ? !http1_done(c->parser) : http1_busy(c->parser)));
}

static void conn_linger_arm(struct conn *c)
{
	int64_t left = c->linger_until - util_now_ms();
	if (left > LINGER_IDLE_MS)
		left = LINGER_IDLE_MS;
	if (left < 0)
		left = 0;
	struct timeval tv = {left / 1000, (left % 1000) * 1000};
	evtimer_add(c->timer, &tv);
}

/* The output is written: close, or first linger (see struct conn). */
static void conn_done_writing(struct conn *c)
{
	if (!c->linger || c->read_eof || c->mode != MODE_HTTP) {
		conn_close(c);
		return;
	}
	if (shutdown(bufferevent_getfd(c->bev), SHUT_WR) < 0) {
		conn_close(c);
		return;
	}
	c->lingering = true;
	c->linger_until = util_now_ms() + LINGER_TIME_MS;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	evbuffer_drain(in, evbuffer_get_length(in));
	c->reading_paused = false;
	bufferevent_enable(c->bev, EV_READ);
	conn_linger_arm(c);
}

void conn_end(struct conn *c)
{
	c->closing = true;
	conn_pause_reading(c, true);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		conn_done_writing(c);
}

/* Writes a whole small response and closes the connection after it. */
void conn_respond_error(struct conn *c, int status, const char *body)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	char text[256];
	if (!body)
		body = http1_reason(status);
	int n = snprintf(text, sizeof(text), "%s\n", body);
	evbuffer_add_printf(
		out,
		"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
		"Content-Length: %d\r\nDate: %s\r\nServer: laurel\r\n%sConnection: close\r\n\r\n",
		status, http1_reason(status), n, conn_date(c->srv),
		status == 426 ? "Sec-WebSocket-Version: 13\r\n" : "");
	struct request *r = c->req;
	if (!(r && r->head))
		evbuffer_add(out, text, (size_t)n);
	if (r) {
		if (r->websocket && c->mode == MODE_WS_CONNECTING)
			c->srv->counters.handshakes_refused++;
		if (!r->started)
			metrics_response_started(c->srv, r);
		r->started = true;
		r->status = status;
		r->bytes = r->head ? 0 : (uint64_t)n;
		r->keep_alive = false;
		request_finish(c);
	} else {
		conn_access_log(c, "-", "-", status, (uint64_t)n);
		c->linger = true; /* a bad or slow request: the client may still be sending */
		conn_end(c);
	}
}

/* Keeps the server's total of buffered output; once it passes the cap, the check runs from the
 * loop (never from inside whatever wrote). */
static void output_changed(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct conn *c = arg;
	struct server *s = c->srv;
	s->output_total += info->n_added;
	s->output_total -= info->n_deleted;
	if (info->n_added && s->output_total > s->output_cap)
		event_active(s->output_check, EV_TIMEOUT, 0);
}

void conn_track_output(struct conn *c)
{
	if (c->output_tracked)
		return;
	/* Made the first time output waits (an idle connection pays nothing for it). Bytes
	 * already there are counted now, every change after by the callback. */
	struct evbuffer *out = bufferevent_get_output(c->bev);
	if (!evbuffer_add_cb(out, output_changed, c))
		return;
	c->output_tracked = true;
	c->srv->output_total += evbuffer_get_length(out);
	if (c->srv->output_total > c->srv->output_cap)
		event_active(c->srv->output_check, EV_TIMEOUT, 0);
}

/* Writes the parts to the client in order: straight to the socket when nothing waits before them
 * (no buffer copy, and no write-readiness round through epoll), the rest through the
 * bufferevent, which writes it once the socket is writable and reports errors. */
int conn_output(struct conn *c, struct iovec *iov, int n)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	if (evbuffer_get_length(out) == 0) {
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
		ssize_t sent = sendmsg(bufferevent_getfd(c->bev), &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		for (int i = 0; i < n && sent > 0; i++) {
			size_t k = (size_t)sent < iov[i].iov_len ? (size_t)sent : iov[i].iov_len;
			iov[i].iov_base = (char *)iov[i].iov_base + k;
			iov[i].iov_len -= k;
			sent -= (ssize_t)k;
		}
	}
	int rc = 0;
	for (int i = 0; i < n; i++)
		if (iov[i].iov_len && evbuffer_add(out, iov[i].iov_base, iov[i].iov_len) < 0)
			rc = -1;
	if (!c->output_tracked && evbuffer_get_length(out))
		conn_track_output(c);
	return rc;
}

void conn_close(struct conn *c)
{
	struct server *s = c->srv;
	s->counters.closed++;
	if (c->mode == MODE_WS_OPEN) {
		s->counters.ws_open--;
		metrics_ws_closed(s, asgi_ws_code(c));
	}
	if (c->req) {
		struct request *r = c->req;
		if (!r->finished && r->websocket) {
			r->finished = true;
			asgi_ws_disconnect(c, asgi_ws_code(c));
			reply_del(s, r->id);
		} else if (!r->finished) {
			/* The client went away: the application hears of it. */
			if (!r->body_done)
				request_body_closed(c);
			r->keep_alive = false;
			r->finished = true;
			request_disconnect(c);
			reply_del(s, r->id);
		}
		request_free(r);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nconns--;
	/* Freeing the buffer does not report what it held: take it off the server's total. */
	struct evbuffer *out = bufferevent_get_output(c->bev);
	evbuffer_drain(out, evbuffer_get_length(out));
	event_free(c->timer);
	ws_free(c->ws);
	recovery_free_all(c);
	free(c->ws_protocol);
	http1_free(c->parser);
	bufferevent_free(c->bev);
	free(c);
	if (s->draining && s->nconns == 0)
		server_drained(s);
}

static void conn_read(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	if (c->lingering) {
		evbuffer_drain(in, evbuffer_get_length(in));
		if (util_now_ms() >= c->linger_until)
			conn_close(c);
		else
			conn_linger_arm(c);
		return;
	}
	if (c->mode == MODE_WS_OPEN) {
		asgi_ws_read(c);
		return;
	}
	if (c->mode == MODE_WS_CONNECTING)
		return; /* frames wait until the application accepts */
	while (!c->closing && !http1_done(c->parser) && evbuffer_get_length(in)) {
		struct evbuffer_iovec v[4];
		int n = evbuffer_peek(in, -1, NULL, v, 4);
		size_t total = 0;
		bool stop = false;
		for (int i = 0; i < n && !stop; i++) {
			int status = 0;
			c->parsing = true;
			ssize_t k = http1_feed(c->parser, v[i].iov_base, v[i].iov_len, &status);
			c->parsing = false;
			if (c->finish_pending) {
				/* A callback answered at once (the layer refused the request or a
				 * body chunk): the request is freed now that the parser is out. */
				c->finish_pending = false;
				request_settle(c); /* may free c */
				return;
			}
			if (k < 0) {
				log_info("conn %llu: bad request (%d): %s",
					 (unsigned long long)c->id, status, http1_error(c->parser));
				evbuffer_drain(in, evbuffer_get_length(in));
				c->linger = true; /* the client may still be sending */
				if (c->req && c->req->started) {
					c->req->keep_alive = false;
					c->closing = true;
					request_finish(c);
					return;
				}
				conn_respond_error(c, status, NULL);
				return;
			}
			total += (size_t)k;
			if ((size_t)k < v[i].iov_len || http1_done(c->parser))
				stop = true;
			if (c->closing || (c->req && c->req->finished))
				break;
		}
		if (c->closing)
			return;
		evbuffer_drain(in, total);
		if (c->req && c->req->local && !c->req->finished) {
			request_finish(c); /* may read the next pipelined request */
			return;
		}
		if (stop)
			break;
	}
	if (c->read_eof && !c->closing && !(c->req && http1_done(c->parser))) {
		/* Half-closed, and what is left is no whole request. */
		if (c->req)
			conn_close(c); /* its body never came: the client is gone */
		else
			conn_end(c);
	}
}

static void conn_write(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	if (c->closing && !c->lingering && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		conn_done_writing(c);
}

/* The client sent FIN. An HTTP client may half-close once it has sent its requests (RFC 9112
 * §9.6): whatever it sent whole is still answered. True if the connection lives on. */
static bool conn_half_closed(struct conn *c)
{
	if (c->mode != MODE_HTTP || c->lingering)
		return false;
	if (c->closing) {
		/* The last answer is being written; then the connection ends. */
		c->read_eof = true;
		return evbuffer_get_length(bufferevent_get_output(c->bev)) > 0;
	}
	bool answering = c->req && !c->req->finished && http1_done(c->parser);
	bool pending = !c->req && evbuffer_get_length(bufferevent_get_input(c->bev)) > 0;
	if (!answering && !pending)
		return false;
	c->read_eof = true;
	log_debug("conn %llu: the client half-closed; answering what it sent",
		  (unsigned long long)c->id);
	/* A FIN cannot tell a half-close from a client that is gone (as a long poll's page that
	 * was left): the application hears http.disconnect now, as Daphne's and Go's handlers
	 * do, and whatever it still answers is written. */
	if (answering)
		request_disconnect(c);
	return true;
}

static void conn_event(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && conn_half_closed(c))
		return;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		if (c->req && !c->req->finished)
			log_debug("conn %llu: client went away during %s %s",
				  (unsigned long long)c->id, c->req->method, c->req->target);
		conn_close(c);
	}
}

static void conn_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct request *r = c->req;
	if (c->lingering) {
		conn_close(c);
		return;
	}
	if (c->mode == MODE_WS_OPEN) {
		asgi_ws_tick(c);
		return;
	}
	if (c->mode == MODE_WS_CONNECTING) {
		asgi_ws_expired(c);
		return;
	}
	if (!r) {
		/* Idle, or a head that never completed (slow client). */
		if (http1_busy(c->parser)) {
			log_info("conn %llu: request head not received in %d s; closing",
				 (unsigned long long)c->id, c->srv->cfg->header_timeout);
			conn_respond_error(c, 408, NULL);
		} else {
			conn_close(c);
		}
		return;
	}
	if (r->started) {
		log_limited(
			LOG_WARN, "conn %llu: response to %s %s not finished within %d s; closing",
			(unsigned long long)c->id, r->method, r->target, c->srv->cfg->http_timeout);
		r->keep_alive = false;
		c->closing = true;
		request_finish(c);
		return;
	}
	if (!http1_done(c->parser)) {
		/* The client, not the application, is late: its body did not come in time. */
		log_info("conn %llu: body of %s %s not received within %d s; answering 408",
			 (unsigned long long)c->id, r->method, r->target,
			 c->srv->cfg->http_timeout);
		conn_respond_error(c, 408, NULL);
		return;
	}
	log_limited(LOG_WARN, "conn %llu: no response to %s %s within %d s",
		    (unsigned long long)c->id, r->method, r->target, c->srv->cfg->http_timeout);
	conn_respond_error(c, 503, "Worker server failed to respond within time limit.");
}

void conn_check_output_total(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	if (s->output_total <= s->output_cap)
		return;
	size_t was = s->output_total, closed = 0, largest = 0;
	while (s->output_total > s->output_cap / 10 * 9) {
		struct conn *big = NULL;
		size_t most = 0;
		for (struct conn *c = s->conns; c; c = c->next) {
			size_t n = evbuffer_get_length(bufferevent_get_output(c->bev));
			if (n > most) {
				most = n;
				big = c;
			}
		}
		if (!big)
			break;
		if (!largest)
			largest = most;
		closed++;
		/* Its buffered output is dropped, so there is no close frame to send after it:
		 * the application hears 1013 in websocket.disconnect. */
		big->closed_for_output = true;
		s->counters.slow_readers++;
		conn_close(big);
	}
	log_warn("output buffered for slow clients reached %zu bytes (--max-output-total %zu): "
		 "closed %zu connection%s holding the most (the largest %zu bytes)",
		 was, s->output_cap, closed, closed == 1 ? "" : "s", largest);
}

void conn_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
		 void *arg)
{
	struct server *s = arg;
	if (s->draining || s->nconns >= (size_t)s->cfg->max_connections) {
		static const char busy[] =
			"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
			"Connection: close\r\n\r\n";
		if (write(fd, busy, sizeof(busy) - 1) < 0)
			log_debug("could not refuse a connection politely");
		evutil_closesocket(fd);
		log_debug("connection refused: %zu open (limit %d)", s->nconns,
			  s->cfg->max_connections);
		return;
	}
	struct conn *c = xcalloc(1, sizeof(*c));
	c->srv = s;
	c->id = ++s->next_conn;
	if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
		struct sockaddr_storage local;
		socklen_t len = sizeof(local);
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->has_addrs = true;
		if (sa->sa_family == AF_INET) {
			struct sockaddr_in *in = (struct sockaddr_in *)sa;
			inet_ntop(AF_INET, &in->sin_addr, c->client_host, sizeof(c->client_host));
			c->client_port = ntohs(in->sin_port);
		} else {
			struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
			inet_ntop(AF_INET6, &in6->sin6_addr, c->client_host,
				  sizeof(c->client_host));
			c->client_port = ntohs(in6->sin6_port);
		}
		if (getsockname(fd, (struct sockaddr *)&local, &len) == 0) {
			if (local.ss_family == AF_INET) {
				struct sockaddr_in *in = (struct sockaddr_in *)&local;
				inet_ntop(AF_INET, &in->sin_addr, c->server_host,
					  sizeof(c->server_host));
				c->server_port = ntohs(in->sin_port);
			} else {
				struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&local;
				inet_ntop(AF_INET6, &in6->sin6_addr, c->server_host,
					  sizeof(c->server_host));
				c->server_port = ntohs(in6->sin6_port);
			}
		}
	}
	(void)salen;
	c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
	c->parser = http1_new(&s->limits, &request_parser_callbacks, c);
	c->timer = evtimer_new(s->base, conn_timeout, c);
	bufferevent_setcb(c->bev, conn_read, conn_write, conn_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->nconns++;
	s->counters.accepted++;
	conn_set_timer(c, s->cfg->header_timeout);
}
