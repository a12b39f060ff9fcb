/* The translation between HTTP/1.1 and ASGI messages (SPEC §4), with every check on the way: a
 * parsed request head becomes http.request or websocket.connect; the first reply message becomes
 * the response head. No I/O and no connection state, so it is unit-tested and fuzzed alone. */
#ifndef LAUREL_INTERFACE_ASGI_HTTP_H
#define LAUREL_INTERFACE_ASGI_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"
#include "interface/http1.h"
#include "laurel/message.h"

/* A request's target, checked and split. */
struct asgi_http_target {
	struct buf path;   /* percent-decoded, valid UTF-8 (may hold NUL bytes) */
	const char *query; /* the query string, in the head's target (borrowed), no '?' */
	size_t querylen;
	const char *authority; /* absolute-form: host[:port] of the target (borrowed), else NULL */
	size_t authoritylen;
	bool websocket; /* an Upgrade to websocket */
};

/* Checks the head's target and Host (RFC 9112 §3.2) and decodes the path into t (which must be
 * released with asgi_http_target_fini whatever the result). Returns 0, or 400 for a target that
 * is not origin-form, absolute-form or "*" for OPTIONS, has bytes outside visible ASCII, a path
 * that is not UTF-8 once decoded, an HTTP/1.1 request without exactly one Host, or a Host (an
 * absolute-form target's authority) that is not host[:port]. The message's Host is then the
 * target's authority (§3.2.2). */
int asgi_http_target(const struct http1_request *h, struct asgi_http_target *t);
void asgi_http_target_fini(struct asgi_http_target *t);
/* True if s (n bytes) is host[:port] as RFC 3986 has it: a reg-name or IPv4 address, or an IPv6
 * literal in brackets, then an optional port of at most 65535; no userinfo. Empty: empty_ok (a
 * Host header may be empty, RFC 9110 §7.2). */
bool asgi_http_authority_ok(const char *s, size_t n, bool empty_ok);

/* Where the connection comes from and goes to. has_addrs false: a unix socket (client and
 * server are nil). */
struct asgi_http_peer {
	bool has_addrs;
	const char *client_host;
	int client_port;
	const char *server_host;
	int server_port;
};

struct asgi_http_options {
	bool proxy_headers;    /* take client and scheme from X-Forwarded-For, -Port and -Proto */
	const char *root_path; /* NULL: "" */
};

/* The message for a checked request (owned by the caller): websocket.connect for a WebSocket
 * handshake, else http.request with an empty body, in Daphne's field order, answering on
 * reply_channel. */
struct laurel_msg *asgi_http_message(const struct http1_request *h,
				     const struct asgi_http_target *t,
				     const struct asgi_http_peer *peer,
				     const struct asgi_http_options *o, const char *reply_channel);

/* The first header named name (names are lower case), or NULL. */
const struct http1_header *asgi_http_header(const struct http1_request *h, const char *name);

/* A response being started. In: what the request said; out: how the body is framed. */
struct asgi_http_response {
	bool head_request; /* HEAD: no body is sent */
	int version_minor; /* of the request */
	bool keep_alive;   /* in: the request allows it; out: the response keeps the connection */
	bool more;	   /* more reply messages follow this one (more_content) */
	const char *date;  /* the Date value to add when the application sent none */
	int status;	   /* out */
	bool chunked;	   /* out: the body is sent with chunked coding */
	bool no_body;	   /* out: the response has no body (HEAD, 1xx, 204, 304) */
	size_t dropped_headers; /* out: malformed header pairs left out */
	int64_t content_length; /* out: the application's Content-Length (-1: none, or no body),
				 * which the rest of a streamed body must match */
	const char *error;	/* out: why -1 was returned */
};

/* Appends to head the status line and headers for the first reply message m: the application's
 * headers that are a valid token and value (Transfer-Encoding and Connection are laurel's),
 * Date and Server unless given, and Content-Length, chunked coding or a close to frame the body.
 * Returns 0, or -1 (head untouched, r->error says why) when m has no integer status in
 * 100..999, or its Content-Length is malformed, given twice, or (a whole response) not the
 * content's length. */
int asgi_http_response_head(const struct laurel_msg *m, struct asgi_http_response *r,
			    struct buf *head);

#endif
