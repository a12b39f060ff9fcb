/* A metrics endpoint's listener (see metrics_http.h). */
#include "common/metrics_http.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/util.h"

struct metrics_http {
	struct evhttp *http;
	metrics_http_fn fn;
	void *arg;
	char *unix_path;
	int fd; /* the listening socket */
};

static const char *reason(int code)
{
	switch (code) {
	case 200:
		return "OK";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	default:
		return "Service Unavailable";
	}
}

static void reply(struct evhttp_request *req, int code, const char *type, struct buf *body)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "Cache-Control", "no-store");
	struct evbuffer *b = evbuffer_new();
	evbuffer_add(b, body->data ? body->data : "", body->len);
	evhttp_send_reply(req, code, reason(code), b);
	evbuffer_free(b);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct metrics_http *h = arg;
	const char *uri = evhttp_request_get_uri(req);
	const char *q = strchr(uri, '?');
	size_t n = q ? (size_t)(q - uri) : strlen(uri);
	struct buf body;
	buf_init(&body);
	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET &&
	    evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
		buf_append_str(&body, "GET only\n");
		reply(req, 405, "text/plain; charset=utf-8", &body);
	} else {
		const char *type = "text/plain; charset=utf-8";
		int code = h->fn(h->arg, uri, n, &body, &type);
		reply(req, code, type, &body);
	}
	buf_fini(&body);
}

static int bind_unix(struct metrics_http *h, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "--metrics: socket path too long: %s", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	unlink(path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0 ||
	    !evhttp_accept_socket_with_handle(h->http, fd)) {
		snprintf(err, errlen, "--metrics: cannot listen on %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	h->fd = fd;
	h->unix_path = xstrdup(path);
	return 0;
}

static int bind_tcp(struct metrics_http *h, const char *addr, char *err, size_t errlen)
{
	char host[256];
	const char *colon = strrchr(addr, ':');
	long port = colon ? strtol(colon + 1, NULL, 10) : 0;
	size_t hl = colon ? (size_t)(colon - addr) : 0;
	if (hl >= 2 && addr[0] == '[' && addr[hl - 1] == ']') {
		addr++;
		hl -= 2;
	}
	if (!colon || hl == 0 || hl >= sizeof(host) || port < 1 || port > 65535) {
		snprintf(err, errlen, "--metrics: expected host:port, [ipv6]:port or /path.sock, not %s",
			 addr);
		return -1;
	}
	memcpy(host, addr, hl);
	host[hl] = '\0';
	struct evhttp_bound_socket *bs =
		evhttp_bind_socket_with_handle(h->http, host, (ev_uint16_t)port);
	if (!bs) {
		snprintf(err, errlen, "--metrics: cannot listen on %s:%ld: %s", host, port,
			 strerror(errno));
		return -1;
	}
	h->fd = evhttp_bound_socket_get_fd(bs);
	return 0;
}

struct metrics_http *metrics_http_new(struct event_base *base, const char *addr,
				      metrics_http_fn fn, void *arg, char *err, size_t errlen)
{
	struct metrics_http *h = xcalloc(1, sizeof(*h));
	h->fn = fn;
	h->arg = arg;
	h->fd = -1;
	h->http = evhttp_new(base);
	evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
						    EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
	evhttp_set_timeout(h->http, 10);
	evhttp_set_max_headers_size(h->http, 8192);
	evhttp_set_max_body_size(h->http, 4096);
	evhttp_set_gencb(h->http, on_request, h);
	if ((addr[0] == '/' ? bind_unix(h, addr, err, errlen) : bind_tcp(h, addr, err, errlen)) <
	    0) {
		metrics_http_free(h);
		return NULL;
	}
	return h;
}

void metrics_http_free(struct metrics_http *h)
{
	if (!h)
		return;
	if (h->http)
		evhttp_free(h->http);
	if (h->unix_path) {
		unlink(h->unix_path);
		free(h->unix_path);
	}
	free(h);
}

void metrics_http_close_in_child(struct metrics_http *h)
{
	if (h && h->fd >= 0)
		close(h->fd);
}
