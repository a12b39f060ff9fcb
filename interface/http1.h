/* HTTP/1.x request parsing with limits (RFC 9112), on llhttp. Protocol only: no I/O, so it is unit
 * tested and fuzzed on byte buffers. The only module that includes llhttp.h.
 *
 * The parser stops after each complete request (http1_feed returns what it consumed), so the
 * owner answers requests in order and resumes with http1_next. Smuggling shapes are refused, never
 * forwarded: Content-Length together with Transfer-Encoding, several differing Content-Lengths,
 * a Transfer-Encoding whose last coding is not chunked, bad chunk sizes, bare CR or LF. */
#ifndef LAUREL_INTERFACE_HTTP1_H
#define LAUREL_INTERFACE_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/buf.h"

struct http1_limits {
	size_t max_uri;		 /* request target bytes; above: 414 */
	size_t max_header_bytes; /* all header names and values; above: 431 */
	size_t max_headers;	 /* header lines; above: 431 */
	size_t max_body;	 /* request body bytes; above: 413 */
};

struct http1_header {
	char *name; /* lower-cased, NUL-terminated */
	size_t namelen;
	char *value; /* as received (leading and trailing spaces removed), NUL-terminated */
	size_t valuelen;
};

/* The head of the request being parsed; valid from on_head until http1_next. */
struct http1_request {
	char method[24];
	int version_major, version_minor;
	struct buf target; /* the raw request target */
	struct http1_header *headers;
	size_t nheaders;
	int64_t content_length; /* -1 when there is none */
	bool chunked;
	bool keep_alive;      /* the connection may stay open after this request */
	bool expect_continue; /* "Expect: 100-continue" */
	bool upgrade;	      /* an Upgrade request (Connection: upgrade) */
	bool head;	      /* HEAD: the response has no body */
};

/* What the parser tells its owner. Each returns 0 to go on, or an HTTP status (>= 400) to stop
 * parsing and answer with it. */
struct http1_callbacks {
	int (*on_head)(void *owner, struct http1_request *req);
	int (*on_body)(void *owner, const char *data, size_t len);
	int (*on_complete)(void *owner);
};

struct http1_parser;

/* Borrowed: limits and callbacks must outlive the parser. */
struct http1_parser *http1_new(const struct http1_limits *limits, const struct http1_callbacks *cb,
			       void *owner);
void http1_free(struct http1_parser *p);

/* Feeds bytes. Returns how many were consumed: all of them, or fewer when a request completed
 * (on_complete ran) — feed the rest after http1_next. Returns -1 when the input must be refused,
 * with *status set to the HTTP status to answer (400, 413, 414, 431, 501, or a status a callback
 * returned); the connection must then be closed after the answer. */
ssize_t http1_feed(struct http1_parser *p, const char *data, size_t len, int *status);
/* True between on_complete and http1_next. */
bool http1_done(const struct http1_parser *p);
/* Ready for the next request on the connection; frees the previous one's head. */
void http1_next(struct http1_parser *p);
/* The request being parsed (after on_head), or NULL. */
struct http1_request *http1_request(struct http1_parser *p);
/* True if bytes of a next request have started arriving or a request is half parsed. */
bool http1_busy(const struct http1_parser *p);
/* A short description of the last parse error, for logs. */
const char *http1_error(const struct http1_parser *p);

/* The reason phrase of a status code ("OK", "Not Found"); "" for unknown codes. */
const char *http1_reason(int status);

#endif
