/* HTTP/1.1 ⇄ ASGI messages (see asgi_http.h). */
#include "interface/asgi_http.h"
#include "interface/websocket.h"

#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* --- Requests -------------------------------------------------------------------------------- */

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Percent-decodes the path into out; false if it is not valid UTF-8 afterwards. */
static bool decode_path(const char *p, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '%' && i + 2 < n && hexval(p[i + 1]) >= 0 && hexval(p[i + 2]) >= 0) {
			buf_append_byte(out,
					(unsigned char)(hexval(p[i + 1]) * 16 + hexval(p[i + 2])));
			i += 2;
		} else {
			buf_append_byte(out, (unsigned char)p[i]);
		}
	}
	return ws_valid_utf8((const uint8_t *)out->data, out->len);
}

const struct http1_header *asgi_http_header(const struct http1_request *h, const char *name)
{
	for (size_t i = 0; i < h->nheaders; i++)
		if (strcmp(h->headers[i].name, name) == 0)
			return &h->headers[i];
	return NULL;
}

static bool hexdig(char ch)
{
	return hexval(ch) >= 0;
}

bool asgi_http_authority_ok(const char *s, size_t n, bool empty_ok)
{
	if (n == 0)
		return empty_ok;
	size_t i = 0;
	if (s[0] == '[') {
		/* IP-literal: an IPv6 address (hex digits, colons, dots for an embedded IPv4) */
		for (i = 1; i < n && s[i] != ']'; i++)
			if (!hexdig(s[i]) && s[i] != ':' && s[i] != '.')
				return false;
		if (i == n || i == 1)
			return false;
		i++;
	} else {
		/* reg-name or IPv4address: unreserved, pct-encoded, sub-delims */
		for (; i < n && s[i] != ':'; i++) {
			unsigned char ch = (unsigned char)s[i];
			if (ch == '%') {
				if (i + 2 >= n || !hexdig(s[i + 1]) || !hexdig(s[i + 2]))
					return false;
				i += 2;
			} else if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
				     (ch >= '0' && ch <= '9') || strchr("-._~!$&'()*+,;=", ch))) {
				return false;
			}
		}
		if (i == 0)
			return false;
	}
	if (i == n)
		return true;
	if (s[i] != ':')
		return false;
	/* port: at most 5 digits, at most 65535 (empty is allowed: RFC 3986 §3.2.3) */
	long port = 0;
	size_t digits = 0;
	for (i++; i < n; i++, digits++) {
		if (s[i] < '0' || s[i] > '9' || digits == 5)
			return false;
		port = port * 10 + (s[i] - '0');
	}
	return port <= 65535;
}

int asgi_http_target(const struct http1_request *h, struct asgi_http_target *t)
{
	memset(t, 0, sizeof(*t));
	buf_init(&t->path);
	const char *s = h->target.data ? h->target.data : "";
	size_t tlen = h->target.len;
	for (size_t i = 0; i < tlen; i++)
		if ((unsigned char)s[i] >= 0x80 || (unsigned char)s[i] <= 0x20)
			return 400;
	if (h->version_minor >= 1) {
		/* RFC 9112 §3.2: exactly one Host in an HTTP/1.1 request. */
		size_t hosts = 0;
		for (size_t i = 0; i < h->nheaders; i++)
			hosts += strcmp(h->headers[i].name, "host") == 0;
		if (hosts != 1)
			return 400;
	}
	/* origin-form, or absolute-form (http://host/path) from a proxy */
	const char *path = s, *end = s + tlen;
	size_t scheme_len = tlen >= 7 && strncasecmp(s, "http://", 7) == 0    ? 7
			    : tlen >= 8 && strncasecmp(s, "https://", 8) == 0 ? 8
									      : 0;
	if (scheme_len) {
		/* RFC 9112 §3.2.2: the target's authority is the host, whatever Host says. */
		const char *a = s + scheme_len, *e = a;
		while (e < end && *e != '/' && *e != '?')
			e++;
		if (!asgi_http_authority_ok(a, (size_t)(e - a), false))
			return 400;
		t->authority = a;
		t->authoritylen = (size_t)(e - a);
		path = e;
	} else if (!(tlen == 1 && s[0] == '*' && strcmp(h->method, "OPTIONS") == 0) &&
		   (tlen == 0 || s[0] != '/')) {
		return 400;
	} else {
		const struct http1_header *host = asgi_http_header(h, "host");
		if (host && !asgi_http_authority_ok(host->value, host->valuelen, true))
			return 400;
	}
	const char *q = memchr(path, '?', (size_t)(end - path));
	size_t pathlen = (size_t)((q ? q : end) - path);
	if (pathlen == 0 && !decode_path("/", 1, &t->path))
		return 400;
	if (pathlen && !decode_path(path, pathlen, &t->path))
		return 400;
	t->query = q ? q + 1 : "";
	t->querylen = q ? (size_t)(end - q - 1) : 0;
	const struct http1_header *up = asgi_http_header(h, "upgrade");
	t->websocket = h->upgrade && up && strcasestr(up->value, "websocket");
	return 0;
}

void asgi_http_target_fini(struct asgi_http_target *t)
{
	buf_fini(&t->path);
}

static void put_addr(struct laurel_msg *m, const char *key, const char *host, int port, bool have)
{
	struct laurel_value *v = laurel_map_put(m, laurel_msg_root(m), key);
	if (!have)
		return; /* nil on a unix socket */
	laurel_value_set_list(m, v, 2);
	laurel_value_set_text(m, laurel_list_push(m, v), host, strlen(host));
	laurel_value_set_int(laurel_list_push(m, v), port);
}

static void put_headers(struct laurel_msg *m, const struct http1_request *h,
			const struct asgi_http_target *t)
{
	struct laurel_value *hv = laurel_map_put(m, laurel_msg_root(m), "headers");
	laurel_value_set_list(m, hv, h->nheaders);
	for (size_t i = 0; i < h->nheaders; i++) {
		const struct http1_header *hd = &h->headers[i];
		if (memchr(hd->name, '_', hd->namelen))
			continue; /* Daphne drops them: they could spoof CGI-style variables */
		struct laurel_value *pair = laurel_list_push(m, hv);
		laurel_value_set_list(m, pair, 2);
		laurel_value_set_bytes(m, laurel_list_push(m, pair), hd->name, hd->namelen);
		if (t->authority && strcmp(hd->name, "host") == 0)
			laurel_value_set_bytes(m, laurel_list_push(m, pair), t->authority,
					       t->authoritylen);
		else
			laurel_value_set_bytes(m, laurel_list_push(m, pair), hd->value,
					       hd->valuelen);
	}
}

struct laurel_msg *asgi_http_message(const struct http1_request *h,
				     const struct asgi_http_target *t,
				     const struct asgi_http_peer *peer,
				     const struct asgi_http_options *o, const char *reply_channel)
{
	const char *scheme = "http";
	const char *client_host = peer->client_host;
	int client_port = peer->client_port;
	bool client_known = peer->has_addrs;
	char fwd_host[INET6_ADDRSTRLEN];
	if (o->proxy_headers) {
		const struct http1_header *xff = asgi_http_header(h, "x-forwarded-for");
		const struct http1_header *xfp = asgi_http_header(h, "x-forwarded-port");
		const struct http1_header *xproto = asgi_http_header(h, "x-forwarded-proto");
		if (xff && xff->valuelen) {
			size_t n = strcspn(xff->value, ", ");
			snprintf(fwd_host, sizeof(fwd_host), "%.*s", (int)n, xff->value);
			client_host = fwd_host;
			client_port = xfp ? atoi(xfp->value) : 0;
			client_known = true;
		}
		if (xproto && strcasecmp(xproto->value, "https") == 0)
			scheme = "https";
	}
	const char *path = t->path.data ? t->path.data : "";
	struct laurel_msg *m = laurel_msg_new();
	if (t->websocket) {
		/* websocket.connect, in Daphne's field order */
		laurel_msg_set_textn(m, "path", path, t->path.len);
		put_headers(m, h, t);
		laurel_msg_set_bytes(m, "query_string", t->query, t->querylen);
		put_addr(m, "client", client_host, client_port, client_known);
		put_addr(m, "server", peer->server_host, peer->server_port, peer->has_addrs);
		laurel_msg_set_text(m, "reply_channel", reply_channel);
		laurel_msg_set_int(m, "order", 0);
		return m;
	}
	laurel_msg_set_text(m, "reply_channel", reply_channel);
	char version[8];
	snprintf(version, sizeof(version), "%d.%d", h->version_major, h->version_minor);
	laurel_msg_set_text(m, "http_version", version);
	laurel_msg_set_text(m, "method", h->method);
	laurel_msg_set_textn(m, "path", path, t->path.len);
	laurel_msg_set_text(m, "root_path", o->root_path ? o->root_path : "");
	laurel_msg_set_text(m, "scheme", scheme);
	laurel_msg_set_bytes(m, "query_string", t->query, t->querylen);
	put_headers(m, h, t);
	laurel_msg_set_bytes(m, "body", "", 0);
	put_addr(m, "client", client_host, client_port, client_known);
	put_addr(m, "server", peer->server_host, peer->server_port, peer->has_addrs);
	return m;
}

/* --- Responses ------------------------------------------------------------------------------- */

static bool header_token(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch <= 0x20 || ch >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", ch))
			return false;
	}
	return true;
}

static bool header_value_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
			return false;
	return true;
}

static bool name_is(const struct laurel_value *v, const char *name)
{
	return v->u.s.len == strlen(name) && strncasecmp(v->u.s.ptr, name, v->u.s.len) == 0;
}

int asgi_http_response_head(const struct laurel_msg *m, struct asgi_http_response *r,
			    struct buf *head)
{
	int64_t status;
	r->dropped_headers = 0;
	r->content_length = -1;
	r->error = NULL;
	if (laurel_msg_get_int(m, "status", &status) < 0 || status < 100 || status > 999) {
		r->error = "no valid status";
		return -1;
	}
	size_t mark = head->len;
	const struct laurel_value *hv = laurel_msg_get(m, "headers");
	const char *reason = http1_reason((int)status);
	buf_printf(head, "HTTP/1.1 %d %s\r\n", (int)status, reason[0] ? reason : "Unknown");
	bool has_length = false, has_date = false, has_server = false;
	if (hv && hv->type == LAUREL_LIST) {
		for (size_t i = 0; i < hv->u.list.len; i++) {
			const struct laurel_value *pair = &hv->u.list.items[i];
			if (pair->type != LAUREL_LIST || pair->u.list.len != 2)
				continue;
			const struct laurel_value *n = &pair->u.list.items[0];
			const struct laurel_value *v = &pair->u.list.items[1];
			if ((n->type != LAUREL_BYTES && n->type != LAUREL_TEXT) ||
			    (v->type != LAUREL_BYTES && v->type != LAUREL_TEXT) ||
			    !header_token(n->u.s.ptr, n->u.s.len) ||
			    !header_value_ok(v->u.s.ptr, v->u.s.len)) {
				r->dropped_headers++;
				continue;
			}
			if (name_is(n, "transfer-encoding"))
				continue; /* laurel frames the body itself */
			if (name_is(n, "content-length")) {
				/* Never passed on unchecked: a wrong length desynchronises every
				 * later response on the connection (and a proxy in front). */
				int64_t v64 = 0;
				size_t k = 0;
				for (; k < v->u.s.len && k < 18; k++) {
					char ch = v->u.s.ptr[k];
					if (ch < '0' || ch > '9')
						break;
					v64 = v64 * 10 + (ch - '0');
				}
				if (has_length || k == 0 || k != v->u.s.len) {
					head->len = mark;
					r->error = has_length ? "two Content-Length headers"
							      : "a malformed Content-Length";
					return -1;
				}
				has_length = true;
				r->content_length = v64;
			}
			if (name_is(n, "date"))
				has_date = true;
			if (name_is(n, "server"))
				has_server = true;
			if (name_is(n, "connection")) {
				if (v->u.s.len == 5 && strncasecmp(v->u.s.ptr, "close", 5) == 0)
					r->keep_alive = false;
				continue;
			}
			buf_append(head, n->u.s.ptr, n->u.s.len);
			buf_append(head, ": ", 2);
			buf_append(head, v->u.s.ptr, v->u.s.len);
			buf_append(head, "\r\n", 2);
		}
	}
	if (!has_date)
		buf_printf(head, "Date: %s\r\n", r->date);
	if (!has_server)
		buf_printf(head, "Server: laurel\r\n");
	r->chunked = false;
	r->no_body = r->head_request || status < 200 || status == 204 || status == 304;
	if (has_length && !r->no_body && !r->more) {
		size_t len = 0;
		laurel_msg_get_bytes(m, "content", &len);
		if ((uint64_t)r->content_length != len) {
			head->len = mark;
			r->error = "a Content-Length that does not match its content";
			return -1;
		}
	}
	if (r->no_body)
		r->content_length = -1; /* the length of a body that is not sent: not checked */
	if (!has_length && !r->no_body) {
		if (!r->more) {
			size_t len = 0;
			laurel_msg_get_bytes(m, "content", &len);
			buf_printf(head, "Content-Length: %zu\r\n", len);
		} else if (r->version_minor >= 1) {
			r->chunked = true;
			buf_printf(head, "Transfer-Encoding: chunked\r\n");
		} else {
			r->keep_alive = false; /* HTTP/1.0: the end of the body is the close */
		}
	}
	if (!r->keep_alive)
		buf_printf(head, "Connection: close\r\n");
	else if (r->version_minor == 0)
		buf_printf(head, "Connection: keep-alive\r\n");
	buf_append(head, "\r\n", 2);
	r->status = (int)status;
	return 0;
}
